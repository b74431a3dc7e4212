/*
 * test_ptx.c: suite "ptx", every generated kernel through ptxas.
 *
 * For each spec of the matrix (q4k_gemv: k in {256, 4096, 14336} x n in
 * {1, 777, 4096} x m in 1..8, 11, 13, 16 x every target; q6k_gemv: k as
 * q4k_gemv x n in {1, 777} x m in {1, 3, 8, 9, 11, 13, 14, 16} (past 8 they
 * take one row per warp: two spilled at 11, 13 and 14) x every target; both
 * with glu=swiglu|geglu at k=4096, n=777, m in {1, 8} (the epilogue's
 * limit) x every target; q, k, v of Llama-3-8B as one kernel (n2, n3) at
 * m in {11, 16} x every target; stream_read: n in {1, 1000, 2^24} x every
 * target, and with pdl=1 x the sm_90+ targets; gelu, gelu_erf, silu, swiglu, geglu: n in {1, 3, 14336, 14337} x
 * m in {1, 8, 16} x every target; rope: mode normal and neox x
 * head_dim/n_dims/heads/kv_heads in {128/128/32/8, 128/64/32/8, 64/64/4/4,
 * 2/2/6/3, 512/512/1/1} x m in {1, 8, 16} x every target, plus one key per
 * target with freq_factors and YaRN; q4k_gemv with tc=1: k as q4k_gemv x
 * n as q4k_gemv x m in {1, 3, 8, 9, 16} x every target from sm_80, and
 * gated (glu) at k as q4k_gemv x n in {777, 14336} x m in {1, 3, 5, 8};
 * q6k_gemv with tc=1: k in {256, 2304, 4096, 14336} x n as q4k_gemv x m in
 * {1, 3, 8, 9, 16}, over several weights, gated and with RoPE, from sm_80)
 * the PTX must assemble with no spills
 * and no stack frame in at most 255 registers, its block must fit the
 * register file, define the entry ptxgen_emit names, carry the .version and
 * .target its target needs, and come out byte-identical when emitted twice.
 * Tuned GEMV keys (rows, warps, preload at their extremes) and multi-weight
 * ones (n2, n3), m in {1, 2, 8, 16}, must assemble and fit the register
 * file. Multi-weight keys with RoPE in the epilogue (rope_gemv: both modes,
 * partial rotation, freq_factors, YaRN, rows=4, m in {1, 2, 8}, 8 being the
 * epilogue's limit, with and without n3, sm_80 and sm_90) must also have no
 * spills and no stack frame. One Criterion parameterized test per kind, so
 * the cases spread over the runner's workers. Without ptxas these tests
 * skip.
 *
 * ptxas.c itself is tested here too (log parsing, failure reporting).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <string.h>

#include "../ptxgen/ptxas.h"
#include "ptxgen.h"

#ifndef PTXAS_PATH
#define PTXAS_PATH ""
#endif

static const uint32_t targets[] = {75, 80, 86, 89, 90, 100, 120};
#define TARGET_COUNT (sizeof targets / sizeof targets[0])

typedef struct ptx_case {
  ptxgen_spec spec;
} ptx_case;

/* The ptxas to use: the one meson found at configure time, else a search. */
static const char *find_ptxas(void) {
  static char path[4096];
  if (PTXAS_PATH[0]) return PTXAS_PATH;
  return ptxas_find(path, sizeof path) == 0 ? path : NULL;
}

/* The token after `directive ` on the line that starts with it, or "". */
static void directive_value(const char *ptx, const char *directive, char *out, size_t cap) {
  out[0] = '\0';
  size_t len = strlen(directive);
  for (const char *line = ptx; line; line = strchr(line, '\n'), line = line ? line + 1 : NULL) {
    if (strncmp(line, directive, len) == 0 && line[len] == ' ') {
      const char *value = line + len + 1;
      size_t value_len = strcspn(value, " \t\r\n");
      snprintf(out, cap, "%.*s", (int)(value_len < cap ? value_len : cap - 1), value);
      return;
    }
  }
}

/* Whether ptx defines `.entry <name>` followed by its parameter list. */
static int defines_entry(const char *ptx, const char *name) {
  size_t len = strlen(name);
  for (const char *p = ptx; (p = strstr(p, ".entry ")) != NULL; p++) {
    const char *at = p + strlen(".entry ");
    while (*at == ' ') at++;
    if (strncmp(at, name, len) == 0 && strchr("( \t\r\n", at[len]) && at[len] != '\0') return 1;
  }
  return 0;
}

/* A block must fit one multiprocessor's 65536 registers, allocated per
 * warp in units of 256: else every launch fails ("too many resources"). */
static void check_fits_register_file(const char *key, const ptxgen_kernel *k, const ptxas_report *report) {
  uint32_t threads = k->geometry.block[0] * k->geometry.block[1] * k->geometry.block[2];
  uint32_t per_warp = ((uint32_t)report->registers * 32 + 255) / 256 * 256;
  uint32_t needed = (threads + 31) / 32 * per_warp;
  cr_assert(needed <= 65536, "%s: %u threads x %d registers need %u of 65536 registers: it cannot launch", key,
            threads, report->registers, needed);
}

static void check_kernel(const ptxgen_spec *spec) {
  const char *ptxas = find_ptxas();
  if (!ptxas) cr_skip_test("no ptxas (PTXAS_PATH empty, none in PATH or the CUDA folders)");

  char key[256], msg[256] = "";
  cr_assert_eq(ptxgen_spec_validate(spec, msg, sizeof msg), PTXGEN_OK, "invalid spec: %s", msg);
  int key_len = ptxgen_spec_format(spec, key, sizeof key);
  cr_assert(key_len > 0 && (size_t)key_len < sizeof key, "cannot format the key");

  ptxgen_kernel first, second;
  cr_assert_eq(ptxgen_emit(spec, &first, msg, sizeof msg), PTXGEN_OK, "%s: emit: %s", key, msg);
  cr_assert_eq(ptxgen_emit(spec, &second, msg, sizeof msg), PTXGEN_OK, "%s: emit: %s", key, msg);
  cr_assert_eq(first.ptx_len, strlen(first.ptx), "%s: ptx_len is not strlen(ptx)", key);
  cr_assert(first.ptx_len == second.ptx_len && memcmp(first.ptx, second.ptx, first.ptx_len) == 0,
            "%s: two emits gave different PTX", key);
  cr_assert_str_eq(first.entry, second.entry, "%s: two emits named different entries", key);
  cr_assert(memcmp(&first.geometry, &second.geometry, sizeof first.geometry) == 0,
            "%s: two emits gave different geometry", key);
  ptxgen_kernel_free(&second);

  const ptxgen_geometry *g = &first.geometry;
  cr_assert(g->grid[0] >= 1 && g->grid[1] >= 1 && g->grid[2] >= 1 && g->block[0] >= 1 &&
                g->block[1] >= 1 && g->block[2] >= 1,
            "%s: a zero grid or block dimension", key);
  cr_assert_leq((uint64_t)g->block[0] * g->block[1] * g->block[2], 1024,
                "%s: more than 1024 threads per block", key);
  cr_assert(g->grid[1] <= 65535 && g->grid[2] <= 65535, "%s: grid y/z above 65535", key);

  char version[32], target[32], want_target[32];
  directive_value(first.ptx, ".version", version, sizeof version);
  directive_value(first.ptx, ".target", target, sizeof target);
  const char *want_version = ptxgen_ptx_version(spec->sm);
  cr_assert_not_null(want_version, "%s: no PTX version for sm=%u", key, spec->sm);
  cr_assert_str_eq(version, want_version, "%s: .version %s, want %s", key, version, want_version);
  snprintf(want_target, sizeof want_target, "sm_%u", spec->sm);
  cr_assert(strncmp(target, want_target, strlen(want_target)) == 0 &&
                (target[strlen(want_target)] == '\0' || target[strlen(want_target)] == 'a' ||
                 target[strlen(want_target)] == ','),
            "%s: .target %s, want %s", key, target, want_target);
  cr_assert(defines_entry(first.ptx, first.entry), "%s: the PTX has no .entry %s", key,
            first.entry);

  ptxas_report report;
  cr_assert_eq(ptxas_assemble(ptxas, first.ptx, first.ptx_len, spec->sm, &report, msg, sizeof msg),
               0, "%s: %s", key, msg);
  cr_assert_eq(report.exit_status, 0, "%s: ptxas failed:\n%s", key, report.log);
  cr_assert_str_eq(report.entry, first.entry, "%s: ptxas compiled '%s', emit named '%s'", key,
                   report.entry, first.entry);
  cr_assert_eq(report.spill_stores, 0, "%s: %d bytes of spill stores\n%s", key,
               report.spill_stores, report.log);
  cr_assert_eq(report.spill_loads, 0, "%s: %d bytes of spill loads\n%s", key, report.spill_loads,
               report.log);
  cr_assert_eq(report.stack_bytes, 0, "%s: %d bytes of stack frame\n%s", key, report.stack_bytes,
               report.log);
  cr_assert(report.registers > 0 && report.registers <= 255, "%s: %d registers\n%s", key,
            report.registers, report.log);
  check_fits_register_file(key, &first, &report);
  ptxas_report_free(&report);
  ptxgen_kernel_free(&first);
}

/* Tuned and multi-weight GEMV keys: they must assemble and their block must
 * fit the register file (spills are the tuning's business, not an error). */
static void check_launchable(const ptxgen_spec *spec) {
  const char *ptxas = find_ptxas();
  if (!ptxas) cr_skip_test("no ptxas (PTXAS_PATH empty, none in PATH or the CUDA folders)");
  char key[256], msg[512] = "";
  cr_assert_eq(ptxgen_spec_validate(spec, msg, sizeof msg), PTXGEN_OK, "invalid spec: %s", msg);
  int key_len = ptxgen_spec_format(spec, key, sizeof key);
  cr_assert(key_len > 0 && (size_t)key_len < sizeof key, "cannot format the key");
  ptxgen_kernel k;
  memset(&k, 0, sizeof k);
  cr_assert_eq(ptxgen_emit(spec, &k, msg, sizeof msg), 0, "%s: %s", key, msg);
  ptxas_report report;
  cr_assert_eq(ptxas_assemble(ptxas, k.ptx, k.ptx_len, spec->sm, &report, msg, sizeof msg), 0, "%s: %s", key, msg);
  cr_assert_eq(report.exit_status, 0, "%s: ptxas failed:\n%s", key, report.log);
  check_fits_register_file(key, &k, &report);
  ptxas_report_free(&report);
  ptxgen_kernel_free(&k);
}

static void free_cases(struct criterion_test_params *params) {
  cr_free(params->params);
}

ParameterizedTestParameters(ptx, q4k_gemv) {
  /* Every m up to 8; past it, odd ones and the largest (all of 9..16 take
   * 168 to 209 registers on sm_90, none spills: checked once, too slow to
   * keep in the suite). */
  static const uint32_t ks[] = {256, 4096, 14336}, ns[] = {1, 777, 4096}, ms[] = {1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 16};
  const size_t m_count = sizeof ms / sizeof *ms, count = 3 * 3 * m_count * TARGET_COUNT;
  size_t i = 0;
  /* Workers read the cases from Criterion's shared arena, hence cr_calloc. */
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 3; b++)
      for (size_t c = 0; c < m_count; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          cases[i++].spec = (ptxgen_spec){
              .kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = ks[a], .n = ns[b], .m = ms[c]};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, q4k_gemv) {
  check_kernel(&c->spec);
}

ParameterizedTestParameters(ptx, q6k_gemv) {
  static const uint32_t ks[] = {256, 4096, 14336}, ns[] = {1, 777}, ms[] = {1, 3, 8, 9, 11, 13, 14, 16};
  const size_t m_count = sizeof ms / sizeof *ms, count = 3 * 2 * m_count * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 2; b++)
      for (size_t c = 0; c < m_count; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          cases[i++].spec = (ptxgen_spec){
              .kind = PTXGEN_KIND_Q6K_GEMV, .sm = targets[t], .k = ks[a], .n = ns[b], .m = ms[c]};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, q6k_gemv) {
  check_kernel(&c->spec);
}

/* The tensor-core Q4_K GEMV (tc=1) on the targets that have it (sm >= 80):
 * k in {256, 4096, 14336} x n in {1, 777, 4096} x m in {1, 3, 8, 9, 16}
 * (one column tile and two; two blocks per SM and one). */
ParameterizedTestParameters(ptx, tc_gemv) {
  static const uint32_t ks[] = {256, 4096, 14336}, ns[] = {1, 777, 4096}, ms[] = {1, 3, 8, 9, 16};
  const size_t m_count = sizeof ms / sizeof *ms, count = 3 * 3 * m_count * (TARGET_COUNT - 1);
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 3; b++)
      for (size_t c = 0; c < m_count; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          if (targets[t] >= 80)
            cases[i++].spec = (ptxgen_spec){
                .kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = ks[a], .n = ns[b], .m = ms[c], .tc = 1};
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tc_gemv) {
  check_kernel(&c->spec);
}

/* The tensor-core kernel over several weights (n2, n3): a layer's q, k, v
 * and odd rows, where the weights' own plans differ (blocks of 8 and 16
 * warps, two blocks per SM and one). */
ParameterizedTestParameters(ptx, tc_gemv_multi) {
  static const struct { uint32_t k, n, n2, n3, m; } shapes[] = {
      {4096, 4096, 1024, 1024, 1}, {4096, 4096, 1024, 1024, 8}, {2304, 1001, 77, 0, 13},
      {14336, 777, 4096, 1, 5},    {256, 7, 1, 3, 16}};
  const size_t shape_count = sizeof shapes / sizeof *shapes;
  ptx_case *cases = cr_calloc(shape_count * TARGET_COUNT, sizeof *cases);
  size_t i = 0;
  for (size_t a = 0; a < shape_count; a++)
    for (size_t t = 0; t < TARGET_COUNT; t++)
      if (targets[t] >= 80)
        cases[i++].spec = (ptxgen_spec){.kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = shapes[a].k,
                                        .n = shapes[a].n, .n2 = shapes[a].n2, .n3 = shapes[a].n3, .m = shapes[a].m,
                                        .tc = 1};
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tc_gemv_multi) {
  check_kernel(&c->spec);
}

/* The tensor-core gated kernel (tc=1, glu=swiglu|geglu) up to the
 * epilogue's limit: k in {256, 4096, 14336} x n in {777, 14336} x m in {1,
 * 3, 5, 8} (one split to 8: blocks of 8 warps and of 16). */
ParameterizedTestParameters(ptx, tc_gated_gemv) {
  static const uint32_t ks[] = {256, 4096, 14336}, ns[] = {777, 14336}, ms[] = {1, 3, 5, PTXGEN_GEMV_EPILOGUE_MAX_M};
  const size_t count = 3 * 2 * 4 * 2 * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 2; b++)
      for (size_t c = 0; c < 4; c++)
        for (uint32_t glu = 1; glu <= 2; glu++)
          for (size_t t = 0; t < TARGET_COUNT; t++)
            if (targets[t] >= 80)
              cases[i++].spec = (ptxgen_spec){.kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = ks[a],
                                              .n = ns[b], .m = ms[c], .glu = glu, .tc = 1};
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tc_gated_gemv) {
  check_kernel(&c->spec);
}

/* The tensor-core q/k/v kernel with RoPE in it (neox, n_dims = head_dim):
 * head_dim 32, 64, 128 (1, 2, 4 tiles per half head) x k in {256, 4096,
 * 14336} (one split to 8) x m in {1, 3, 8}, with v of odd rows or none,
 * YaRN and freq_factors on some. */
ParameterizedTestParameters(ptx, tc_rope_gemv) {
  static const uint32_t hds[] = {32, 64, 128}, ks[] = {256, 4096, 14336}, ms[] = {1, 3, PTXGEN_GEMV_EPILOGUE_MAX_M};
  const size_t count = 3 * 3 * 3 * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 3; a++)
    for (size_t b = 0; b < 3; b++)
      for (size_t c = 0; c < 3; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          if (targets[t] >= 80)
            cases[i++].spec = (ptxgen_spec){.kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = ks[b],
                                            .n = 32 * hds[a], .n2 = 8 * hds[a], .n3 = a == 1 ? 0 : 8 * hds[a] - 3,
                                            .m = ms[c], .tc = 1, .rope = 2, .head_dim = hds[a],
                                            .n_dims = hds[a], .base = 500000.0f, .freq_scale = 1.0f,
                                            .ext_factor = c == 1 ? 1.0f : 0.0f, .attn_factor = 1.0f,
                                            .beta_fast = 32.0f, .beta_slow = 1.0f, .n_ctx_orig = 4096,
                                            .freq_factors = b == 1};
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tc_rope_gemv) {
  check_kernel(&c->spec);
}

/* The tensor-core Q6_K GEMV (q6k_gemv, tc=1) on the targets that have it:
 * k in {256, 2304, 4096, 14336} x n in {1, 777, 4096} x m in {1, 3, 8, 9,
 * 16}, and the same kernel over several weights (a layer's q, k, v; odd
 * rows), gated (swiglu, geglu; m 1 and 8) and with RoPE (head_dim 32 and
 * 128; m 1 and 8). */
ParameterizedTestParameters(ptx, tc_q6k_gemv) {
  static const uint32_t ks[] = {256, 2304, 4096, 14336}, ns[] = {1, 777, 4096}, ms[] = {1, 3, 8, 9, 16};
  const size_t count = (4 * 3 * 5 + 2 + 4 + 4) * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t t = 0; t < TARGET_COUNT; t++) {
    if (targets[t] < 80) continue;
    const ptxgen_spec base = {.kind = PTXGEN_KIND_Q6K_GEMV, .sm = targets[t], .tc = 1};
    for (size_t a = 0; a < 4; a++)
      for (size_t b = 0; b < 3; b++)
        for (size_t c = 0; c < 5; c++) {
          cases[i].spec = base;
          cases[i].spec.k = ks[a], cases[i].spec.n = ns[b], cases[i].spec.m = ms[c];
          i++;
        }
    for (uint32_t m = 1; m <= 16; m += 15) {
      cases[i].spec = base;
      cases[i].spec.k = 4096, cases[i].spec.n = 4096, cases[i].spec.n2 = 1024, cases[i].spec.n3 = 1023;
      cases[i++].spec.m = m;
    }
    for (uint32_t glu = 1; glu <= 2; glu++)
      for (uint32_t m = 1; m <= PTXGEN_GEMV_EPILOGUE_MAX_M; m += PTXGEN_GEMV_EPILOGUE_MAX_M - 1) {
        cases[i].spec = base;
        cases[i].spec.k = 4096, cases[i].spec.n = 14336, cases[i].spec.m = m, cases[i].spec.glu = glu;
        i++;
      }
    for (uint32_t hd = 32; hd <= 128; hd *= 4)
      for (uint32_t m = 1; m <= PTXGEN_GEMV_EPILOGUE_MAX_M; m += PTXGEN_GEMV_EPILOGUE_MAX_M - 1) {
        cases[i].spec = base;
        cases[i].spec.k = 4096, cases[i].spec.n = 32 * hd, cases[i].spec.n2 = 8 * hd, cases[i].spec.n3 = 8 * hd;
        cases[i].spec.m = m, cases[i].spec.rope = 2, cases[i].spec.head_dim = hd, cases[i].spec.n_dims = hd;
        cases[i].spec.base = 500000.0f, cases[i].spec.freq_scale = 1.0f, cases[i].spec.attn_factor = 1.0f;
        cases[i].spec.beta_fast = 32.0f, cases[i].spec.beta_slow = 1.0f, cases[i].spec.n_ctx_orig = 4096;
        i++;
      }
  }
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tc_q6k_gemv) {
  check_kernel(&c->spec);
}

/* The gated epilogue (glu=swiglu|geglu) on both weight formats, up to its
 * limit m = 8 (PTXGEN_GEMV_EPILOGUE_MAX_M). */
ParameterizedTestParameters(ptx, gated_gemv) {
  static const ptxgen_kind kinds[] = {PTXGEN_KIND_Q4K_GEMV, PTXGEN_KIND_Q6K_GEMV};
  static const uint32_t ms[] = {1, PTXGEN_GEMV_EPILOGUE_MAX_M};
  size_t count = 2 * 2 * 2 * TARGET_COUNT, i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 2; a++)
    for (uint32_t glu = 1; glu <= 2; glu++)
      for (size_t c = 0; c < 2; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          cases[i++].spec = (ptxgen_spec){.kind = kinds[a], .sm = targets[t], .k = 4096, .n = 777,
                                          .m = ms[c], .glu = glu};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, gated_gemv) {
  check_kernel(&c->spec);
}

/* Keys the runtime does not choose but runs when asked (ptxq_kernel_launch,
 * ptxgen run): every tuning at its extremes, and q, k, v as one kernel. */
ParameterizedTestParameters(ptx, tuned_and_multi_gemv) {
  static const ptxgen_kind kinds[] = {PTXGEN_KIND_Q4K_GEMV, PTXGEN_KIND_Q6K_GEMV};
  static const struct { uint32_t rows, warps, preload, n2, n3; } tunings[] = {
      {0, 16, 0, 0, 0}, {4, 16, 0, 0, 0},       {4, 4, 1, 0, 0},   {1, 16, 2, 0, 0},
      {1, 16, 3, 0, 0}, {0, 0, 0, 1024, 1024}, {0, 16, 0, 77, 0}, {0, 0, 2, 1024, 1024},
      {0, 0, 4, 0, 0},  {1, 16, 4, 0, 0},       {4, 4, 4, 0, 0},   {0, 0, 4, 1024, 1024}};
  static const uint32_t ms[] = {1, 2, 8, 16}, sms[] = {80, 90};
  const size_t count = 2 * (sizeof tunings / sizeof tunings[0]) * 4 * 2;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 2; a++)
    for (size_t t = 0; t < sizeof tunings / sizeof tunings[0]; t++)
      for (size_t c = 0; c < 4; c++)
        for (size_t d = 0; d < 2; d++)
          cases[i++].spec = (ptxgen_spec){.kind = kinds[a], .sm = sms[d], .k = 2304, .n = 999, .m = ms[c],
                                          .rows = tunings[t].rows, .warps = tunings[t].warps,
                                          .preload = tunings[t].preload, .n2 = tunings[t].n2, .n3 = tunings[t].n3};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, tuned_and_multi_gemv) {
  check_launchable(&c->spec);
}

/* The copy engine's ring (preload=4) on every target that has it: plain,
 * gated and multi-weight keys, lanes with different chunk counts (k = 2304:
 * a short last round), x near the shared-memory limit (k = 14336), m up to
 * 16 (where x no longer fits one tile it runs a chunk ahead instead), Q6_K's
 * four planes (k = 2304: its short last round cannot be copied, a chunk
 * ahead instead). No spills, within the register file and the opt-in
 * shared memory. */
ParameterizedTestParameters(ptx, copy_engine_gemv) {
  static const struct { uint32_t q6k, k, m, glu, n2; } shapes[] = {
      {0, 2304, 1, 0, 0}, {0, 4096, 3, 0, 0}, {0, 14336, 1, 0, 0}, {0, 14336, 5, 0, 0}, {0, 4096, 16, 0, 0},
      {0, 4096, 1, 1, 0}, {0, 2304, 8, 2, 0}, {0, 4096, 2, 0, 1024}, {1, 14336, 1, 0, 0}, {1, 4096, 2, 1, 0},
      {1, 2304, 1, 0, 0}};
  static const uint32_t sms[] = {90, 100, 120};
  const size_t shape_count = sizeof shapes / sizeof shapes[0], count = shape_count * 3;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t b = 0; b < shape_count; b++)
    for (size_t d = 0; d < 3; d++)
      cases[i++].spec = (ptxgen_spec){.kind = shapes[b].q6k ? PTXGEN_KIND_Q6K_GEMV : PTXGEN_KIND_Q4K_GEMV,
                                      .sm = sms[d], .k = shapes[b].k, .n = 999,
                                      .m = shapes[b].m, .preload = 4, .glu = shapes[b].glu, .n2 = shapes[b].n2,
                                      .n3 = shapes[b].n2 ? 77 : 0};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, copy_engine_gemv) {
  check_kernel(&c->spec);
}

/* Integer dot products (idp=1) on every target: plain, gated and q/k/v with
 * RoPE, the ring (k = 14336 at m = 1, sm_90+), x in tiles (k = 14336 at m =
 * 8 and more), lanes with different chunk counts (k = 2304), four rows per
 * warp (m = 6 from 4096 rows), m up to 16. No spills. */
ParameterizedTestParameters(ptx, idp_gemv) {
  static const struct { uint32_t k, n, m, glu, n2; } shapes[] = {
      {4096, 4096, 1, 0, 0},  {14336, 4096, 1, 0, 0}, {14336, 999, 8, 0, 0}, {2304, 999, 3, 0, 0},
      {4096, 4097, 6, 0, 0},  {4096, 999, 16, 0, 0},  {4096, 14336, 1, 1, 0}, {4096, 999, 8, 2, 0},
      {4096, 4096, 1, 0, 1024}, {4096, 4096, 4, 0, 1024}};
  const size_t shape_count = sizeof shapes / sizeof shapes[0], count = shape_count * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t b = 0; b < shape_count; b++)
    for (size_t t = 0; t < TARGET_COUNT; t++) {
      char key[200];
      snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u,idp=1%s%s", shapes[b].k, shapes[b].n, shapes[b].m,
               targets[t], shapes[b].glu ? (shapes[b].glu == 1 ? ",glu=swiglu" : ",glu=geglu") : "",
               shapes[b].n2 ? ",n2=1024,n3=1024,rope=neox,head_dim=128,base=500000" : ""); /* q, k, v with RoPE */
      cr_assert_eq(ptxgen_spec_parse(key, &cases[i++].spec, NULL, 0), PTXGEN_OK, "%s", key);
    }
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, idp_gemv) {
  check_kernel(&c->spec);
}

/* idp=1 on the integer tensor cores (mma=2) on every target from sm_80:
 * one tile of 16 warps a block (sm_90/100), warps without a last chunk (k =
 * 2304), fewer chunks than warps (k = 256), long rows at m = 1, odd m; the
 * gated epilogue (glu=: tiles of 8 gate and 8 up rows); several weights in
 * one row space (n2=, n3=: tiles that straddle two weights, each row
 * stored to its own weight's y). No spills (128 registers on sm_90/100:
 * 16 warps an SM). */
ParameterizedTestParameters(ptx, idp_mma_gemv) {
  static const char *const shapes[] = {
      "k=4096,n=4096,m=4",           "k=2304,n=999,m=3",         "k=256,n=17,m=1",
      "k=14336,n=999,m=1",           "k=8192,n=100,m=2",         "k=1024,n=64,m=7",
      "k=4096,n=14336,m=4,glu=swiglu", "k=2304,n=333,m=5,glu=geglu", "k=256,n=17,m=7,glu=swiglu",
      "k=4096,n=4096,n2=1024,n3=1024,m=4", "k=2304,n=129,n2=1024,m=6", "k=256,n=7,n2=1,n3=17,m=5",
      "k=14336,n=1001,n2=1024,m=1"};
  const size_t shape_count = sizeof shapes / sizeof shapes[0];
  size_t i = 0;
  ptx_case *cases = cr_calloc(shape_count * TARGET_COUNT, sizeof *cases);
  for (size_t b = 0; b < shape_count; b++)
    for (size_t t = 0; t < TARGET_COUNT; t++) {
      if (targets[t] < 80) continue;
      char key[200];
      snprintf(key, sizeof key, "q4k_gemv:%s,sm=%u,idp=1,mma=2", shapes[b], targets[t]);
      cr_assert_eq(ptxgen_spec_parse(key, &cases[i++].spec, NULL, 0), PTXGEN_OK, "%s", key);
    }
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, idp_mma_gemv) {
  check_kernel(&c->spec);
}

/* A layer's q, k and v as one kernel at large m, as ptxq_gemv_multi_rope
 * runs it past the epilogue limit (RoPE apart): the default tuning must not
 * spill (Q6_K at one row per warp, as the plain product). */
ParameterizedTestParameters(ptx, multi_gemv_large_m) {
  static const ptxgen_kind kinds[] = {PTXGEN_KIND_Q4K_GEMV, PTXGEN_KIND_Q6K_GEMV};
  static const uint32_t ms[] = {11, 16};
  const size_t count = 2 * 2 * TARGET_COUNT;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 2; a++)
    for (size_t c = 0; c < 2; c++)
      for (size_t t = 0; t < TARGET_COUNT; t++)
        cases[i++].spec = (ptxgen_spec){.kind = kinds[a], .sm = targets[t], .k = 4096, .n = 4096, .m = ms[c],
                                        .n2 = 1024, .n3 = 1024};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, multi_gemv_large_m) {
  check_kernel(&c->spec);
}

/* The default tuning of Q4_K batches of 4 to 8 rows on every target: four
 * rows per warp (from 4096 rows; at m = 4 from 65536) and the copy
 * engine's ring (from 3 x 2^23 weights, sm_90+), where a kernel holds the
 * most registers. k = 2304..3072 and 5120 are where ptxas spilled a rule's
 * first version (sm_120 at m = 8; m = 7 on sm_90), k = 14336 stages x in
 * tiles. n = 4099 and 65537 leave a part-empty last row group. */
ParameterizedTestParameters(ptx, batched_q4k_defaults) {
  static const uint32_t ks[] = {2304, 2816, 3072, 5120, 14336}, ns[] = {4099, 65537};
  const size_t count = TARGET_COUNT * 5 * 5 * 2;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t t = 0; t < TARGET_COUNT; t++)
    for (uint32_t m = 4; m <= 8; m++)
      for (size_t a = 0; a < 5; a++)
        for (size_t b = 0; b < 2; b++)
          cases[i++].spec = (ptxgen_spec){.kind = PTXGEN_KIND_Q4K_GEMV, .sm = targets[t], .k = ks[a], .n = ns[b],
                                          .m = m};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, batched_q4k_defaults) {
  check_kernel(&c->spec);
}

/* RoPE in the epilogue of q, k[, v] (rope=normal|neox): both weight
 * formats, both modes, partial rotation, freq_factors, YaRN, a head whose
 * half is not a power of two, a last row group past n + n2 + n3, rows=4
 * (two rotation pairs per warp), m in {1, 2, 8}, n3 or not, on sm_80 and
 * sm_90. They must assemble with no spills and fit the register file. */
ParameterizedTestParameters(ptx, rope_gemv) {
  static const ptxgen_kind kinds[] = {PTXGEN_KIND_Q4K_GEMV, PTXGEN_KIND_Q6K_GEMV};
  static const struct {
    uint32_t rope, head_dim, n_dims, heads, kv_heads, n3, m, rows, freq_factors, yarn;
  } shapes[] = {
      {2, 128, 128, 8, 2, 256, 1, 0, 0, 0}, /* Llama-3 style q, k, v */
      {1, 128, 128, 8, 2, 0, 2, 0, 0, 0},   /* q, k only */
      {2, 64, 32, 8, 4, 256, 8, 0, 0, 0},   /* half the dims rotated */
      {1, 64, 32, 4, 4, 0, 1, 4, 1, 0},     /* rows=4 (q6k spills at m >= 4 even without RoPE), freq_factors */
      {2, 128, 96, 4, 1, 128, 2, 4, 1, 1},  /* freq_factors and YaRN at once */
      {1, 96, 64, 3, 1, 77, 8, 0, 0, 1},    /* half a head of 48 pairs; YaRN; 365 rows */
  };
  static const uint32_t sms[] = {80, 90};
  const size_t shape_count = sizeof shapes / sizeof shapes[0], count = 2 * shape_count * 2;
  size_t i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < 2; a++)
    for (size_t b = 0; b < shape_count; b++)
      for (size_t d = 0; d < 2; d++) {
        ptxgen_spec s = {.kind = kinds[a], .sm = sms[d], .k = 2304, .n = shapes[b].heads * shapes[b].head_dim,
                         .m = shapes[b].m, .rows = shapes[b].rows, .n2 = shapes[b].kv_heads * shapes[b].head_dim,
                         .n3 = shapes[b].n3, .rope = shapes[b].rope, .head_dim = shapes[b].head_dim,
                         .n_dims = shapes[b].n_dims, .freq_factors = shapes[b].freq_factors, .base = 500000.0f,
                         .freq_scale = 1.0f, .attn_factor = 1.0f, .beta_fast = 32.0f, .beta_slow = 1.0f};
        if (shapes[b].yarn) {
          s.ext_factor = 1.0f;
          s.n_ctx_orig = 4096;
          s.freq_scale = 0.25f;
        }
        cases[i++].spec = s;
      }
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, rope_gemv) {
  check_kernel(&c->spec);
}

/* pdl=1 (a kernel of a dependent chain) on the targets that have griddepcontrol. */
ParameterizedTestParameters(ptx, stream_read) {
  static const uint32_t ns[] = {1, 1000, 1u << 24};
  size_t count = 2 * 3 * TARGET_COUNT, i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (uint32_t pdl = 0; pdl < 2; pdl++)
    for (size_t a = 0; a < 3; a++)
      for (size_t t = 0; t < TARGET_COUNT; t++)
        if (!pdl || targets[t] >= 90)
          cases[i++].spec =
              (ptxgen_spec){.kind = PTXGEN_KIND_STREAM_READ, .sm = targets[t], .n = ns[a], .pdl = pdl};
  return cr_make_param_array(ptx_case, cases, i, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, stream_read) {
  check_kernel(&c->spec);
}

static const ptxgen_kind activation_kinds[] = {PTXGEN_KIND_GELU, PTXGEN_KIND_GELU_ERF, PTXGEN_KIND_SILU,
                                               PTXGEN_KIND_SWIGLU, PTXGEN_KIND_GEGLU};
#define ACTIVATION_KIND_COUNT (sizeof activation_kinds / sizeof activation_kinds[0])

ParameterizedTestParameters(ptx, activations) {
  /* 1 and 3: only the scalar tail; 14336: whole vectors only; 14337: both. */
  static const uint32_t ns[] = {1, 3, 14336, 14337}, ms[] = {1, 8, 16};
  size_t count = ACTIVATION_KIND_COUNT * 4 * 3 * TARGET_COUNT, i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t a = 0; a < ACTIVATION_KIND_COUNT; a++)
    for (size_t b = 0; b < 4; b++)
      for (size_t c = 0; c < 3; c++)
        for (size_t t = 0; t < TARGET_COUNT; t++)
          cases[i++].spec = (ptxgen_spec){
              .kind = activation_kinds[a], .sm = targets[t], .n = ns[b], .m = ms[c]};
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, activations) {
  check_kernel(&c->spec);
}

/* A rope spec with ptxq's defaults for the constants (base 10000, no
 * scaling, no YaRN). */
static ptxgen_spec rope_spec(uint32_t mode, uint32_t head_dim, uint32_t n_dims, uint32_t heads,
                             uint32_t kv_heads, uint32_t m, uint32_t sm) {
  return (ptxgen_spec){.kind = PTXGEN_KIND_ROPE, .sm = sm, .m = m, .mode = mode, .head_dim = head_dim,
                       .n_dims = n_dims, .heads = heads, .kv_heads = kv_heads, .base = 10000.0f,
                       .freq_scale = 1.0f, .attn_factor = 1.0f, .beta_fast = 32.0f, .beta_slow = 1.0f};
}

ParameterizedTestParameters(ptx, rope) {
  /* head_dim, n_dims, heads, kv_heads: Llama-3 8B, half the dims rotated,
   * no GQA, the smallest head with heads not a power of two, the largest,
   * 40 pairs (they do not divide the kernel's 128 threads: a thread's
   * pairs step across vectors). */
  static const uint32_t shapes[][4] = {
      {128, 128, 32, 8}, {128, 64, 32, 8}, {64, 64, 4, 4}, {2, 2, 6, 3}, {512, 512, 1, 1}, {80, 80, 6, 2}};
  static const uint32_t modes[] = {0, 2}, ms[] = {1, 8, 16};
  size_t shape_count = sizeof shapes / sizeof shapes[0];
  size_t count = (2 * shape_count * 3 + 1) * TARGET_COUNT, i = 0;
  ptx_case *cases = cr_calloc(count, sizeof *cases);
  for (size_t t = 0; t < TARGET_COUNT; t++) {
    for (size_t a = 0; a < 2; a++)
      for (size_t b = 0; b < shape_count; b++)
        for (size_t c = 0; c < 3; c++)
          cases[i++].spec = rope_spec(modes[a], shapes[b][0], shapes[b][1], shapes[b][2], shapes[b][3],
                                      ms[c], targets[t]);
    /* Llama-3.1-style freq_factors and YaRN at once (the extra parameter
     * and the blended frequency table). */
    ptxgen_spec yarn = rope_spec(2, 128, 96, 32, 8, 5, targets[t]);
    yarn.freq_factors = 1;
    yarn.ext_factor = 1.0f;
    yarn.n_ctx_orig = 4096;
    yarn.freq_scale = 0.25f;
    cases[i++].spec = yarn;
  }
  return cr_make_param_array(ptx_case, cases, count, free_cases);
}

ParameterizedTest(ptx_case *c, ptx, rope) {
  check_kernel(&c->spec);
}

/* ---- ptxas.c itself ----------------------------------------------------- */

Test(ptx, ptxas_parse_log_takes_the_largest_figures) {
  const char *log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'first_entry' for 'sm_90'\n"
      "ptxas info    : Function properties for first_entry\n"
      "    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n"
      "ptxas info    : Used 40 registers, used 1 barriers, 2048 bytes smem, 360 bytes cmem[0]\n"
      "ptxas info    : Function properties for helper\n"
      "    16 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Compiling entry function 'second_entry' for 'sm_90'\n"
      "ptxas info    : Used 72 registers, used 0 barriers, 512 bytes smem\n";
  ptxas_report report;
  memset(&report, 0x5A, sizeof report);
  ptxas_parse_log(log, &report);
  cr_expect_str_eq(report.entry, "first_entry");
  cr_expect_eq(report.registers, 72);
  cr_expect_eq(report.stack_bytes, 16);
  cr_expect_eq(report.spill_stores, 4);
  cr_expect_eq(report.spill_loads, 12);
  cr_expect_eq(report.shared_bytes, 2048);
}

Test(ptx, ptxas_parse_log_of_an_empty_log_is_zero) {
  ptxas_report report;
  memset(&report, 0x5A, sizeof report);
  ptxas_parse_log("", &report);
  cr_expect_str_eq(report.entry, "");
  cr_expect_eq(report.registers + report.stack_bytes + report.spill_stores + report.spill_loads +
                   report.shared_bytes,
               0);
}

static const char broken_ptx[] =
    ".version 7.8\n"
    ".target sm_80\n"
    ".address_size 64\n"
    "\n"
    ".visible .entry broken(.param .u64 out)\n"
    "{\n"
    "  .reg .b32 %r<2>;\n"
    "  mov.u32 %r1, %tid.x;\n"
    "  not_an_instruction.u32 %r1, %r1;\n"
    "  ret;\n"
    "}\n";

Test(ptx, ptxas_reports_a_failure_with_its_line) {
  const char *ptxas = find_ptxas();
  if (!ptxas) cr_skip_test("no ptxas");
  ptxas_report report;
  char msg[256] = "";
  cr_assert_eq(ptxas_assemble(ptxas, broken_ptx, strlen(broken_ptx), 80, &report, msg, sizeof msg),
               0, "%s", msg);
  cr_expect_neq(report.exit_status, 0, "ptxas accepted broken PTX");
  cr_expect_not_null(strstr(report.log, "line 9"), "the log does not name line 9:\n%s", report.log);
  ptxas_report_free(&report);
}

Test(ptx, ptxas_that_cannot_run_is_an_error) {
  ptxas_report report;
  char msg[256] = "";
  cr_expect_eq(ptxas_assemble("/nonexistent/ptxas", broken_ptx, strlen(broken_ptx), 80, &report,
                              msg, sizeof msg),
               -1);
  cr_expect_neq(msg[0], '\0', "no reason given");
}
