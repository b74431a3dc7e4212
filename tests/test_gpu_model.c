/*
 * test_gpu_model.c: suite "gpu", the model-level runtime on a real device:
 * weights from a GGUF file, the Q6_K GEMV, the fused FFN and graph capture.
 *
 * - The shared fixture (tiny-llama-q4km.gguf) loads whole through
 *   ptxq_weights_from_gguf (progress once per tensor, cancel, filter), and
 *   the GEMV of every Q4_K and Q6_K tensor with the fixture's x matches the
 *   expected JSON within 1e-6 (max |y - ref| / max |ref|).
 * - Q6_K GEMV on random Q6_K bytes against the fp64 reference (1e-5),
 *   k in {256, 4096, 14336} x n in {1, 3, 777}, and 4096 x 4096, x m in
 *   1..16, with batch invariance checked bit for bit (past m = 8 the kernel
 *   takes one row per warp, m = 1 two: the bits must not change); and the
 *   tensor-core Q6_K GEMV (a tensor-core context) alike on 8 shapes from
 *   256 x 1 to 4096 x 8193, odd rows and k = 2304 among them.
 * - ptxq_ffn, all three kinds, with gate/up/down types Q4_K/Q4_K/Q6_K (the
 *   fused path) and Q6_K/Q4_K/Q4_K (unfused): against an fp64 composition
 *   of the references (1e-5); bit-identical to the same steps run by hand
 *   through the public ops, to the other path (PTXQ_FFN_UNFUSED=1) and
 *   across batch sizes (m up to 16, where the gated kinds run unfused); in
 *   tensor-core contexts too, Q6_K gate, up and down among them, and in
 *   contexts with integer dot products (PTXQ_GEMV_IDP=1: fused up to m = 8
 *   on the integer tensor cores).
 * - Graphs: a small decode layer (q/k/v GEMVs, RoPE on device positions,
 *   o GEMV, SwiGLU FFN) captured once and replayed with new inputs gives
 *   the bits of direct launches; whatever would build, copy, synchronise,
 *   allocate or free is refused during capture without spoiling it.
 *
 * Outputs are poisoned with 0xFF bytes before each run so an unwritten
 * value fails. Each test draws a fresh seed (printed in failures; set
 * PTXQ_TEST_SEED to replay one). Without a GPU every test skips.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <fnmatch.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "gpu_common.h"
#include "ptxgen.h"
#include "ptxq.h"

#define TOLERANCE 1e-5         /* max |y - ref| / max |ref| */
#define FIXTURE_TOLERANCE 1e-6 /* the same against the fixture's expected y */
#define MAX_M PTXGEN_GEMV_MAX_M /* 16: the largest batch */

/* ---- helpers ------------------------------------------------------------ */


static uint8_t *random_weight(rng *r, ptxq_type type, uint32_t k, uint32_t n, size_t *bytes) {
  return type == PTXQ_TYPE_Q6_K ? random_q6k(r, k, n, bytes) : random_q4k(r, k, n, bytes);
}

/* Index of the first value that is not POISON_BITS, or count. */
static size_t first_unpoisoned(const float *y, size_t count) {
  size_t i = 0;
  uint32_t bits;
  while (i < count && (memcpy(&bits, &y[i], sizeof bits), bits == POISON_BITS)) i++;
  return i;
}

static float *to_floats(const double *values, size_t count) {
  float *out = checked_malloc(count * sizeof *out);
  for (size_t i = 0; i < count; i++) out[i] = (float)values[i];
  return out;
}

/* ---- weights from the fixture -------------------------------------------- */

typedef struct progress_log {
  size_t calls;
  size_t cancel_at; /* return nonzero on this call (1-based); 0 never */
  uint64_t last_done, total;
  bool went_backwards, total_changed;
  char last_tensor[FIXTURE_NAME_MAX];
} progress_log;

static int record_progress(void *user, const char *tensor, uint64_t bytes_done,
                           uint64_t bytes_total) {
  progress_log *log = user;
  log->calls++;
  if (bytes_done < log->last_done || bytes_done > bytes_total) log->went_backwards = true;
  if (log->calls > 1 && bytes_total != log->total) log->total_changed = true;
  log->last_done = bytes_done;
  log->total = bytes_total;
  snprintf(log->last_tensor, sizeof log->last_tensor, "%s", tensor ? tensor : "(null)");
  return log->cancel_at != 0 && log->calls == log->cancel_at;
}

static void open_fixture(fixture_gguf *gguf) {
  char path[512], err[256];
  fixture_path(FIXTURE_GGUF, path, sizeof path);
  cr_assert_eq(fixture_gguf_open(path, gguf, err, sizeof err), 0, "%s", err);
}

static uint64_t tensor_bytes(const fixture_tensor *t) {
  return t->row_bytes * t->rows;
}

/* The names of the fixture's tensors that a filter selects. */
static size_t count_matching(const fixture_gguf *gguf, const char *filter, uint64_t *bytes) {
  size_t count = 0;
  *bytes = 0;
  for (size_t i = 0; i < gguf->tensor_count; i++)
    if (filter == NULL || fnmatch(filter, gguf->tensors[i].name, 0) == 0) {
      count++;
      *bytes += tensor_bytes(&gguf->tensors[i]);
    }
  return count;
}

Test(gpu, fixture_loads_whole_and_matches_expected) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  fixture_gguf gguf;
  open_fixture(&gguf);
  char path[512], err[256];
  fixture_path(FIXTURE_GGUF, path, sizeof path);

  progress_log log = {0};
  ptxq_load_stats stats;
  memset(&stats, 0xA5, sizeof stats);
  EXPECT_OK(ctx, ptxq_weights_from_gguf(ctx, path, NULL, record_progress, &log, &stats));
  uint64_t all_bytes = 0;
  size_t all = count_matching(&gguf, NULL, &all_bytes);
  cr_assert_eq(stats.tensors, all, "uploaded %llu of %zu tensors",
               (unsigned long long)stats.tensors, all);
  cr_assert_eq(stats.skipped, 0);
  cr_assert_eq(stats.bytes, all_bytes);
  cr_assert(stats.seconds >= 0.0 && stats.seconds < 600.0, "seconds=%g", stats.seconds);
  cr_assert_eq(log.calls, all, "progress called %zu times for %zu tensors", log.calls, all);
  cr_assert(!log.went_backwards && !log.total_changed, "progress counts are inconsistent");
  cr_assert_eq(log.last_done, all_bytes);
  cr_assert_eq(log.total, all_bytes);

  /* Each weight as the file describes it. */
  for (size_t i = 0; i < gguf.tensor_count; i++) {
    const fixture_tensor *t = &gguf.tensors[i];
    ptxq_weight_info info;
    EXPECT_OK(ctx, ptxq_weight_info_get(ctx, t->name, &info));
    cr_assert_eq((uint32_t)info.type, t->type, "%s", t->name);
    cr_assert_eq(info.k, t->dims[0], "%s", t->name);
    cr_assert_eq(info.n, t->rows, "%s", t->name);
    cr_assert_eq(info.bytes, tensor_bytes(t), "%s", t->name);
  }

  /* The GEMV of every K-quant tensor with the fixture's x. */
  fixture_expected expected;
  char json[512];
  fixture_path(FIXTURE_EXPECTED, json, sizeof json);
  cr_assert_eq(fixture_expected_load(json, &expected, err, sizeof err), 0, "%s", err);
  size_t checked = 0;
  for (size_t i = 0; i < expected.count; i++) {
    const fixture_expected_tensor *e = &expected.tensors[i];
    if (strcmp(e->type, "q4_K") != 0 && strcmp(e->type, "q6_K") != 0) continue;
    cr_assert_eq(e->y_count, e->n, "%s: %zu expected values for n=%u", e->name, e->y_count, e->n);
    float *x = checked_malloc((size_t)e->k * sizeof *x), *y = checked_malloc((size_t)e->n * 4);
    for (uint32_t j = 0; j < e->k; j++) x[j] = fixture_x(j);
    memset(y, 0xFF, (size_t)e->n * 4);
    EXPECT_OK(ctx, ptxq_gemv_host(ctx, e->name, x, y, 1));
    double error = relative_error(y, e->y, e->n);
    cr_log_info("fixture %s (%s, k=%u n=%u): relative error %.3g", e->name, e->type, e->k, e->n,
                error);
    cr_assert(error <= FIXTURE_TOLERANCE, "%s (%s): relative error %.3g > %g", e->name, e->type,
              error, FIXTURE_TOLERANCE);
    checked++;
    free(x);
    free(y);
  }
  cr_assert_geq(checked, 5, "only %zu K-quant tensors checked (the fixture has 4 Q4_K, 1 Q6_K)",
                checked);
  fixture_expected_free(&expected);
  fixture_gguf_close(&gguf);
  ptxq_close(ctx);
}

Test(gpu, fixture_load_stops_when_the_callback_says_so) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  fixture_gguf gguf;
  open_fixture(&gguf);
  char path[512];
  fixture_path(FIXTURE_GGUF, path, sizeof path);
  cr_assert_geq(gguf.tensor_count, 3);

  for (size_t cancel_at = 1; cancel_at <= 3; cancel_at += 2) {
    progress_log log = {.cancel_at = cancel_at};
    ptxq_load_stats stats;
    EXPECT_FAIL(ctx, ptxq_weights_from_gguf(ctx, path, NULL, record_progress, &log, &stats),
                PTXQ_ERR_CANCELLED, "cancelled");
    cr_assert_eq(log.calls, cancel_at, "the load went on after the callback said stop");
    cr_assert_eq(stats.tensors, cancel_at);
    cr_assert(strstr(ptxq_last_error(ctx), log.last_tensor) != NULL,
              "detail '%s' should name the last tensor '%s'", ptxq_last_error(ctx),
              log.last_tensor);
  }
  /* What was uploaded before the stop stays; nothing after it was. */
  size_t present = 0;
  for (size_t i = 0; i < gguf.tensor_count; i++) {
    ptxq_weight_info info;
    int status = ptxq_weight_info_get(ctx, gguf.tensors[i].name, &info);
    cr_assert(status == PTXQ_OK || status == PTXQ_ERR_NOT_FOUND, "%s", ptxq_last_error(ctx));
    present += status == PTXQ_OK;
  }
  cr_assert_eq(present, 3);
  fixture_gguf_close(&gguf);
  ptxq_close(ctx);
}

Test(gpu, fixture_filter_selects_tensors) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  fixture_gguf gguf;
  open_fixture(&gguf);
  char path[512];
  fixture_path(FIXTURE_GGUF, path, sizeof path);

  const char *filter = "blk.0.ffn_*";
  uint64_t bytes = 0;
  size_t wanted = count_matching(&gguf, filter, &bytes);
  cr_assert_eq(wanted, 3, "the fixture has ffn_gate, ffn_up and ffn_down in block 0");
  progress_log log = {0};
  ptxq_load_stats stats;
  EXPECT_OK(ctx, ptxq_weights_from_gguf(ctx, path, filter, record_progress, &log, &stats));
  cr_assert_eq(stats.tensors, wanted);
  cr_assert_eq(stats.bytes, bytes);
  cr_assert_eq(log.calls, wanted);
  cr_assert_eq(log.total, bytes);
  for (size_t i = 0; i < gguf.tensor_count; i++) {
    const char *name = gguf.tensors[i].name;
    ptxq_weight_info info;
    int want = fnmatch(filter, name, 0) == 0 ? PTXQ_OK : PTXQ_ERR_NOT_FOUND;
    cr_assert_eq(ptxq_weight_info_get(ctx, name, &info), want, "%s", name);
  }

  /* A filter that matches nothing loads nothing and calls nobody. */
  log = (progress_log){0};
  EXPECT_OK(ctx, ptxq_weights_from_gguf(ctx, path, "nothing.*", record_progress, &log, &stats));
  cr_assert_eq(stats.tensors, 0);
  cr_assert_eq(stats.skipped, 0);
  cr_assert_eq(log.calls, 0);
  /* No stats and no callback are fine too. */
  EXPECT_OK(ctx, ptxq_weights_from_gguf(ctx, path, "output_norm.weight", NULL, NULL, NULL));
  ptxq_weight_info info;
  EXPECT_OK(ctx, ptxq_weight_info_get(ctx, "output_norm.weight", &info));
  cr_assert_eq(info.type, PTXQ_TYPE_F32);
  fixture_gguf_close(&gguf);
  ptxq_close(ctx);
}

Test(gpu, gguf_load_errors_pass_through) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_load_stats stats;
  EXPECT_FAIL(ctx, ptxq_weights_from_gguf(ctx, "/nonexistent/model.gguf", NULL, NULL, NULL, &stats),
              PTXQ_ERR_IO, "/nonexistent/model.gguf");
  cr_assert_eq(stats.tensors, 0);
  EXPECT_FAIL(ctx, ptxq_weights_from_gguf(ctx, NULL, NULL, NULL, NULL, &stats), PTXQ_ERR_INVALID,
              "path");

  /* A truncated copy of the fixture is malformed. */
  fixture_gguf gguf;
  open_fixture(&gguf);
  char bad[] = "/tmp/ptxq-truncated-XXXXXX";
  int fd = mkstemp(bad);
  cr_assert_geq(fd, 0);
  size_t keep = gguf.image_size / 2;
  cr_assert_eq(write(fd, gguf.image, keep), (ssize_t)keep);
  close(fd);
  int status = ptxq_weights_from_gguf(ctx, bad, NULL, NULL, NULL, &stats);
  unlink(bad);
  cr_assert_eq(status, PTXQ_ERR_FORMAT, "gave %d: %s", status, ptxq_last_error(ctx));
  cr_assert(strstr(ptxq_last_error(ctx), "byte") != NULL, "detail '%s' should give the offset",
            ptxq_last_error(ctx));
  fixture_gguf_close(&gguf);
  ptxq_close(ctx);
}

/* ---- Q6_K GEMV ------------------------------------------------------------ */

typedef struct gemv_shape {
  uint32_t k, n;
  int tensor_cores; /* the context's ptxq_options.tensor_cores: the tensor-core Q6_K GEMV */
} gemv_shape;

static gemv_shape q6k_shapes[] = {
    {256, 1, 0},   {256, 3, 0},   {256, 777, 0},   {4096, 1, 0}, {4096, 3, 0}, {4096, 777, 0}, {14336, 1, 0},
    {14336, 3, 0}, {14336, 777, 0}, {4096, 4096, 0}, /* whole row groups over many blocks */
    {4096, 8193, 0}, /* n x k >= 2^25: m = 1 takes one row per warp in 16 warps (default_tuning) */
    /* tensor cores: odd rows (a padded tile), k of 1 to 56 super-blocks (2304: an odd number), one split per
     * tile and 8 (4096 rows at k = 4096), split blocks (14336 x 333 at m > 1), two column tiles past m = 8 */
    {256, 1, 1},   {256, 777, 1}, {2304, 1001, 1}, {4096, 3, 1}, {4096, 4096, 1}, {14336, 333, 1},
    {14336, 4096, 1}, {4096, 8193, 1},
};

ParameterizedTestParameters(gpu, q6k_gemv_matches_reference) {
  return cr_make_param_array(gemv_shape, q6k_shapes,
                             sizeof q6k_shapes / sizeof q6k_shapes[0]);
}

/* m = 1..MAX_M through device buffers and the host path, then every row of
 * every m > 1 product against its m = 1 product, bit for bit. */
ParameterizedTest(gemv_shape *shape, gpu, q6k_gemv_matches_reference) {
  SKIP_UNLESS_PARAM_IN_SHARD(shape, q6k_shapes);
  const uint32_t k = shape->k, n = shape->n;
  ptxq_ctx *ctx = shape->tensor_cores ? open_tensor_cores_or_skip() : open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  size_t w_bytes;
  uint8_t *w = random_q6k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w6", PTXQ_TYPE_Q6_K, w, k, n, w_bytes);
  ptxq_weight_info info;
  EXPECT_OK(ctx, ptxq_weight_info_get(ctx, "w6", &info));
  cr_assert_eq(info.bytes, w_bytes, "weight_info reports the GGUF bytes");
  cr_assert_eq(info.type, PTXQ_TYPE_Q6_K);

  float *x = random_floats(&r, (size_t)MAX_M * k);
  double *ref = checked_malloc((size_t)MAX_M * n * sizeof *ref);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, k, n, x, MAX_M, ref), PTXQ_OK);
  const size_t x_row = (size_t)k * 4, y_row = (size_t)n * 4;
  ptxq_dev dx = device_alloc(ctx, MAX_M * x_row), dy = device_alloc(ctx, MAX_M * y_row);
  upload(ctx, dx, x, MAX_M * x_row);
  float *y = checked_malloc(MAX_M * y_row), *y_host = checked_malloc(MAX_M * y_row);
  float *single = checked_malloc(MAX_M * y_row);

  for (uint32_t i = 0; i < MAX_M; i++) {
    poison(ctx, dy, y_row);
    EXPECT_OK(ctx, ptxq_gemv(ctx, "w6", dx + i * x_row, dy, 1));
    download(ctx, single + (size_t)i * n, dy, y_row);
  }
  double worst = 0.0;
  for (uint32_t m = 1; m <= MAX_M; m++) {
    const size_t outputs = (size_t)m * n;
    poison(ctx, dy, MAX_M * y_row);
    EXPECT_OK(ctx, ptxq_gemv(ctx, "w6", dx, dy, m));
    download(ctx, y, dy, MAX_M * y_row);
    double error = relative_error_over(y, ref, outputs, (size_t)MAX_M * n);
    worst = fmax(worst, error);
    cr_assert(error <= TOLERANCE, "seed %llu k=%u n=%u m=%u tc=%d: relative error %.3g > %g",
              (unsigned long long)seed, k, n, m, shape->tensor_cores, error, TOLERANCE);
    cr_assert_eq(first_unpoisoned(y + outputs, (size_t)(MAX_M - m) * n), (size_t)(MAX_M - m) * n,
                 "seed %llu k=%u n=%u m=%u: wrote past the m*n outputs", (unsigned long long)seed,
                 k, n, m);
    for (uint32_t i = 0; i < m; i++)
      cr_assert(memcmp(y + (size_t)i * n, single + (size_t)i * n, y_row) == 0,
                "seed %llu k=%u n=%u tc=%d: row %u of the m=%u product differs from its m=1 product",
                (unsigned long long)seed, k, n, shape->tensor_cores, i, m);
    memset(y_host, 0xFF, MAX_M * y_row);
    EXPECT_OK(ctx, ptxq_gemv_host(ctx, "w6", x, y_host, m));
    cr_assert(memcmp(y_host, y, outputs * 4) == 0,
              "seed %llu k=%u n=%u m=%u: ptxq_gemv_host differs from ptxq_gemv",
              (unsigned long long)seed, k, n, m);
  }
  cr_log_info("q6k_gemv k=%u n=%u tc=%d: worst relative error %.3g over m=1..%u", k, n, shape->tensor_cores, worst,
              MAX_M);
  free(single);
  free(y_host);
  free(y);
  free(ref);
  free(x);
  free(w);
  ptxq_close(ctx);
}

/* Replacing a Q4_K weight by a Q6_K one of the same shape must switch the
 * kernel (and the layout) with it. */
Test(gpu, weight_replaced_by_another_type) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 512, n = 37, m = 2;
  size_t q4_bytes, q6_bytes;
  uint8_t *q4 = random_q4k(&r, k, n, &q4_bytes), *q6 = random_q6k(&r, k, n, &q6_bytes);
  float *x = random_floats(&r, (size_t)m * k), *y = checked_malloc((size_t)m * n * 4);
  double *ref = checked_malloc((size_t)m * n * sizeof *ref);

  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, q4, k, n, q4_bytes);
  EXPECT_OK(ctx, ptxq_gemv_host(ctx, "w", x, y, m));
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, q4, k, n, x, m, ref), PTXQ_OK);
  cr_assert_leq(relative_error(y, ref, (size_t)m * n), TOLERANCE, "seed %llu",
                (unsigned long long)seed);

  upload_weight(ctx, "w", PTXQ_TYPE_Q6_K, q6, k, n, q6_bytes);
  memset(y, 0xFF, (size_t)m * n * 4);
  EXPECT_OK(ctx, ptxq_gemv_host(ctx, "w", x, y, m));
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, q6, k, n, x, m, ref), PTXQ_OK);
  double error = relative_error(y, ref, (size_t)m * n);
  cr_assert(error <= TOLERANCE, "seed %llu: after the Q6_K replacement, relative error %.3g",
            (unsigned long long)seed, error);

  /* F16 weights upload but are not GEMV operands. */
  uint16_t half[256];
  for (size_t i = 0; i < 256; i++) half[i] = ptxq_f32_to_f16(rng_uniform(&r, -1.0f, 1.0f));
  EXPECT_OK(ctx, ptxq_weight_upload(ctx, "h", PTXQ_TYPE_F16, 256, 1, half, sizeof half));
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "h", x, y, 1), PTXQ_ERR_UNSUPPORTED, "F16");
  free(q4);
  free(q6);
  free(x);
  free(y);
  free(ref);
  ptxq_close(ctx);
}

/* ---- fused FFN ------------------------------------------------------------- */

typedef struct ffn_case {
  ptxq_ffn_kind kind;
  ptxq_type gate, up, down;
  uint32_t k, n;
  bool tensor_cores; /* both contexts opened with ptxq_options.tensor_cores */
  bool idp;          /* both contexts opened with PTXQ_GEMV_IDP=1 (integer dot products) */
} ffn_case;

static const char *ffn_kind_name(ptxq_ffn_kind kind) {
  return kind == PTXQ_FFN_GELU ? "gelu" : kind == PTXQ_FFN_SWIGLU ? "swiglu" : "geglu";
}

static const char *type_name(ptxq_type type) {
  return type == PTXQ_TYPE_Q6_K ? "Q6_K" : "Q4_K";
}

ParameterizedTestParameters(gpu, ffn_matches_reference_and_manual_steps) {
  static ffn_case cases[14];
  static const ptxq_ffn_kind kinds[] = {PTXQ_FFN_GELU, PTXQ_FFN_SWIGLU, PTXQ_FFN_GEGLU};
  size_t count = 0;
  for (size_t i = 0; i < 3; i++) {
    /* Same-type gate and up: the fused path for the gated kinds. */
    cases[count++] =
        (ffn_case){kinds[i], PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q6_K, 512, 1536, false, false};
    /* Mixed: the unfused path. */
    cases[count++] =
        (ffn_case){kinds[i], PTXQ_TYPE_Q6_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, 512, 1536, false, false};
  }
  cases[count++] =
      (ffn_case){PTXQ_FFN_SWIGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q6_K, 4096, 14336, false, false};
  /* Tensor cores: Q4_K gate and up take the tensor-core gated kernel up
   * to m = 8, the unfused products past it. 4096 x 1536: a tile's
   * super-blocks split over 8 warps (blocks of 16 warps), and the unfused
   * gate and up products take split blocks at some m; 512 x 1536: 2
   * splits of 2 super-blocks; 4096 x 14336: a Llama-3-8B layer's, 2
   * splits; a Q6_K gate: the unfused path at every m; Q6_K gate and up:
   * the tensor-core gated kernel on Q6_K. */
  cases[count++] =
      (ffn_case){PTXQ_FFN_SWIGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q6_K, 4096, 1536, true, false};
  cases[count++] =
      (ffn_case){PTXQ_FFN_GEGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, 512, 1536, true, false};
  cases[count++] =
      (ffn_case){PTXQ_FFN_SWIGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q6_K, 4096, 14336, true, false};
  cases[count++] =
      (ffn_case){PTXQ_FFN_SWIGLU, PTXQ_TYPE_Q6_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, 512, 1536, true, false};
  cases[count++] =
      (ffn_case){PTXQ_FFN_GEGLU, PTXQ_TYPE_Q6_K, PTXQ_TYPE_Q6_K, PTXQ_TYPE_Q6_K, 2304, 1536, true, false};
  /* Integer dot products: from m = 4 on 2048 rows the Q4_K gated kernel
   * runs on the integer tensor cores and the FFN stays fused up to m = 8
   * (dp4a below; the unfused products past 8). */
  cases[count++] = (ffn_case){PTXQ_FFN_SWIGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q6_K, 2304, 2304, false,
                              true};
  cases[count++] = (ffn_case){PTXQ_FFN_GEGLU, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, PTXQ_TYPE_Q4_K, 4096, 4096, false,
                              true};
  return cr_make_param_array(ffn_case, cases, count);
}

/* y = down . act(gate . x, up . x) in fp64 over the dequantized weights,
 * for MAX_M rows; intermediates pass between the reference calls as floats
 * (their rounding is far below the tolerance). */
static double *ffn_reference(const ffn_case *c, const uint8_t *gate, const uint8_t *up,
                             const uint8_t *down, const float *x) {
  const size_t hidden = (size_t)MAX_M * c->n;
  double *g = checked_malloc(hidden * sizeof *g), *u = checked_malloc(hidden * sizeof *u);
  double *h = checked_malloc(hidden * sizeof *h);
  cr_assert_eq(ptxq_ref_gemv(c->up, up, c->k, c->n, x, MAX_M, u), PTXQ_OK);
  float *uf = to_floats(u, hidden);
  if (c->kind == PTXQ_FFN_GELU) {
    cr_assert_eq(ptxq_ref_act(PTXQ_ACT_GELU, uf, h, hidden), PTXQ_OK);
  } else {
    cr_assert_eq(ptxq_ref_gemv(c->gate, gate, c->k, c->n, x, MAX_M, g), PTXQ_OK);
    float *gf = to_floats(g, hidden);
    ptxq_act act = c->kind == PTXQ_FFN_SWIGLU ? PTXQ_ACT_SILU : PTXQ_ACT_GELU;
    cr_assert_eq(ptxq_ref_glu(act, gf, uf, h, hidden), PTXQ_OK);
    free(gf);
  }
  float *hf = to_floats(h, hidden);
  double *y = checked_malloc((size_t)MAX_M * c->k * sizeof *y);
  cr_assert_eq(ptxq_ref_gemv(c->down, down, c->n, c->k, hf, MAX_M, y), PTXQ_OK);
  free(hf);
  free(uf);
  free(h);
  free(u);
  free(g);
  return y;
}

/* The FFN's steps through the public ops: gemv (gate), gemv (up), the
 * activation, gemv (down). */
static void ffn_by_hand(ptxq_ctx *ctx, const ffn_case *c, ptxq_dev x, ptxq_dev g, ptxq_dev h,
                        ptxq_dev y, uint32_t m) {
  EXPECT_OK(ctx, ptxq_gemv(ctx, "up", x, h, m));
  if (c->kind == PTXQ_FFN_GELU) {
    EXPECT_OK(ctx, ptxq_gelu(ctx, h, h, c->n, m));
  } else {
    EXPECT_OK(ctx, ptxq_gemv(ctx, "gate", x, g, m));
    if (c->kind == PTXQ_FFN_SWIGLU)
      EXPECT_OK(ctx, ptxq_swiglu(ctx, g, h, h, c->n, m));
    else
      EXPECT_OK(ctx, ptxq_geglu(ctx, g, h, h, c->n, m));
  }
  EXPECT_OK(ctx, ptxq_gemv(ctx, "down", h, y, m));
}

/* A context as the case asks: tensor cores or not, integer dot products or not. */
static ptxq_ctx *open_for(const ffn_case *c) {
  if (c->idp) cr_assert_eq(setenv("PTXQ_GEMV_IDP", "1", 1), 0);
  ptxq_ctx *ctx = c->tensor_cores ? open_tensor_cores_or_skip() : open_or_skip(NULL);
  unsetenv("PTXQ_GEMV_IDP");
  return ctx;
}

ParameterizedTest(ffn_case *c, gpu, ffn_matches_reference_and_manual_steps) {
  ptxq_ctx *ctx = open_for(c);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = c->k, n = c->n;
  char label[96];
  snprintf(label, sizeof label, "seed %llu %s %s/%s/%s k=%u n=%u%s%s", (unsigned long long)seed,
           ffn_kind_name(c->kind), type_name(c->gate), type_name(c->up), type_name(c->down), k,
           n, c->tensor_cores ? " tensor cores" : "", c->idp ? " idp" : "");

  size_t gate_bytes = 0, up_bytes, down_bytes;
  uint8_t *gate = c->kind == PTXQ_FFN_GELU ? NULL : random_weight(&r, c->gate, k, n, &gate_bytes);
  uint8_t *up = random_weight(&r, c->up, k, n, &up_bytes);
  uint8_t *down = random_weight(&r, c->down, n, k, &down_bytes);
  if (gate != NULL) upload_weight(ctx, "gate", c->gate, gate, k, n, gate_bytes);
  upload_weight(ctx, "up", c->up, up, k, n, up_bytes);
  upload_weight(ctx, "down", c->down, down, n, k, down_bytes);
  const ptxq_ffn_params params = {c->kind, gate != NULL ? "gate" : NULL, "up", "down"};

  float *x = random_floats(&r, (size_t)MAX_M * k);
  double *ref = ffn_reference(c, gate, up, down, x);
  const size_t row = (size_t)k * 4, all = MAX_M * row;
  ptxq_dev dx = device_alloc(ctx, all), dy = device_alloc(ctx, all);
  ptxq_dev dg = device_alloc(ctx, (size_t)MAX_M * n * 4);
  ptxq_dev dh = device_alloc(ctx, (size_t)MAX_M * n * 4);
  upload(ctx, dx, x, all);
  float *y = checked_malloc(all), *other = checked_malloc(all);

  /* Against the reference, and nothing written past m rows. The last m
   * is MAX_M: y then holds its output for the comparisons below. */
  static const uint32_t ms[] = {1, 2, 5, 8, 12, MAX_M};
  for (size_t i = 0; i < sizeof ms / sizeof ms[0]; i++) {
    const uint32_t m = ms[i];
    poison(ctx, dy, all);
    EXPECT_OK(ctx, ptxq_ffn(ctx, &params, dx, dy, m));
    download(ctx, y, dy, all);
    double error = relative_error(y, ref, (size_t)m * k);
    cr_log_info("ffn %s m=%u: relative error %.3g", label, m, error);
    cr_assert(error <= TOLERANCE, "%s m=%u: relative error %.3g > %g", label, m, error, TOLERANCE);
    cr_assert_eq(first_unpoisoned(y + (size_t)m * k, (size_t)(MAX_M - m) * k),
                 (size_t)(MAX_M - m) * k, "%s m=%u: wrote past the m rows of y", label, m);
  }

  /* The same steps by hand, through the public API: the same bits. y holds
   * the m=MAX_M FFN output from the loop above. */
  poison(ctx, dy, all);
  ffn_by_hand(ctx, c, dx, dg, dh, dy, MAX_M);
  download(ctx, other, dy, all);
  cr_assert(memcmp(y, other, all) == 0, "%s: ptxq_ffn differs from its steps run by hand", label);

  /* Batch invariance: each row of the m=MAX_M call (unfused) and of m=4
   * and m=8 calls (fused for the gated kinds of one type: at m=8 in
   * tensor-core and idp contexts) is its m=1 result. */
  float *single = checked_malloc(all);
  for (uint32_t i = 0; i < MAX_M; i++) {
    poison(ctx, dy, row);
    EXPECT_OK(ctx, ptxq_ffn(ctx, &params, dx + i * row, dy, 1));
    download(ctx, single + (size_t)i * k, dy, row);
  }
  for (uint32_t i = 0; i < MAX_M; i++)
    cr_assert(memcmp(y + (size_t)i * k, single + (size_t)i * k, row) == 0,
              "%s: row %u of the m=%u FFN differs from its m=1 result", label, i, MAX_M);
  static const uint32_t fused_ms[] = {4, 8}; /* fused for the gated kinds of one type (8: tensor cores, idp) */
  for (size_t f = 0; f < sizeof fused_ms / sizeof fused_ms[0]; f++) {
    const uint32_t m = fused_ms[f];
    poison(ctx, dy, all);
    EXPECT_OK(ctx, ptxq_ffn(ctx, &params, dx, dy, m));
    download(ctx, other, dy, m * row);
    for (uint32_t i = 0; i < m; i++)
      cr_assert(memcmp(other + (size_t)i * k, single + (size_t)i * k, row) == 0,
                "%s: row %u of the m=%u FFN differs from its m=1 result", label, i, m);
  }
  free(single);

  /* The other path, in a context opened with PTXQ_FFN_UNFUSED=1: the same
   * bits (for the mixed case both contexts take the unfused path). */
  cr_assert_eq(setenv("PTXQ_FFN_UNFUSED", "1", 1), 0);
  ptxq_ctx *unfused = open_for(c);
  unsetenv("PTXQ_FFN_UNFUSED");
  if (gate != NULL) upload_weight(unfused, "gate", c->gate, gate, k, n, gate_bytes);
  upload_weight(unfused, "up", c->up, up, k, n, up_bytes);
  upload_weight(unfused, "down", c->down, down, n, k, down_bytes);
  ptxq_dev ux = device_alloc(unfused, all), uy = device_alloc(unfused, all);
  upload(unfused, ux, x, all);
  poison(unfused, uy, all);
  EXPECT_OK(unfused, ptxq_ffn(unfused, &params, ux, uy, MAX_M));
  download(unfused, other, uy, all);
  cr_assert(memcmp(y, other, all) == 0, "%s: the unfused path differs from the default one",
            label);
  ptxq_close(unfused);

  free(other);
  free(y);
  free(ref);
  free(x);
  free(down);
  free(up);
  free(gate);
  ptxq_close(ctx);
}

Test(gpu, ffn_rejects_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  const uint32_t k = 256, n = 512;
  size_t b_up, b_gate, b_down, b_odd;
  uint8_t *up = random_q4k(&r, k, n, &b_up), *gate = random_q6k(&r, k, n, &b_gate);
  uint8_t *down = random_q4k(&r, n, k, &b_down), *odd = random_q4k(&r, k, 256, &b_odd);
  upload_weight(ctx, "up", PTXQ_TYPE_Q4_K, up, k, n, b_up);
  upload_weight(ctx, "gate", PTXQ_TYPE_Q6_K, gate, k, n, b_gate);
  upload_weight(ctx, "down", PTXQ_TYPE_Q4_K, down, n, k, b_down);
  upload_weight(ctx, "short", PTXQ_TYPE_Q4_K, odd, k, 256, b_odd); /* n=256 */
  float *norm = random_floats(&r, (size_t)k * n);
  EXPECT_OK(ctx, ptxq_weight_upload(ctx, "f32", PTXQ_TYPE_F32, k, n, norm, (size_t)k * n * 4));
  ptxq_dev dx = device_alloc(ctx, MAX_M * k * 4), dy = device_alloc(ctx, MAX_M * k * 4);
  float *x = random_floats(&r, (size_t)MAX_M * k); /* written: initcheck sees every read */
  upload(ctx, dx, x, (size_t)MAX_M * k * 4);
  free(x);

  ptxq_ffn_params p = {PTXQ_FFN_SWIGLU, "gate", "up", "down"};
  EXPECT_OK(ctx, ptxq_ffn(ctx, &p, dx, dy, 3));
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, NULL, dx, dy, 1), PTXQ_ERR_INVALID, "params");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx, dy, 0), PTXQ_ERR_INVALID, "m=0");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx, dy, 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, 0, dy, 1), PTXQ_ERR_INVALID, "x is");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx, 0, 1), PTXQ_ERR_INVALID, "y is");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx + 4, dy, 1), PTXQ_ERR_INVALID, "16-byte");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx, dy + 8, 1), PTXQ_ERR_INVALID, "16-byte");

  ptxq_ffn_params bad = p;
  bad.kind = (ptxq_ffn_kind)0;
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_INVALID, "kind=0");
  bad = p;
  bad.gate = NULL;
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_INVALID, "gate");
  bad = p;
  bad.down = "nope";
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_NOT_FOUND,
              "no down weight named 'nope'");
  bad = p;
  bad.up = "f32";
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_UNSUPPORTED, "F32");
  bad = p;
  bad.gate = "short"; /* [256][256] against up's [512][256] */
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_INVALID, "same shape");
  bad = (ptxq_ffn_params){PTXQ_FFN_GELU, NULL, "up", "short"}; /* short's k=256, up's n=512 */
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &bad, dx, dy, 1), PTXQ_ERR_INVALID, "down's k");
  EXPECT_FAIL(ctx, ptxq_ffn_prepare(ctx, &bad, 1), PTXQ_ERR_INVALID, "down's k");
  EXPECT_FAIL(ctx, ptxq_ffn_prepare(ctx, &p, 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_OK(ctx, ptxq_ffn_prepare(ctx, &p, 16)); /* gated and mixed types: unfused, at any m */
  EXPECT_FAIL(ctx, ptxq_ffn_prepare(ctx, NULL, 1), PTXQ_ERR_INVALID, "params");

  /* GELU takes no gate: a NULL gate is fine there. */
  p = (ptxq_ffn_params){PTXQ_FFN_GELU, NULL, "up", "down"};
  EXPECT_OK(ctx, ptxq_ffn_prepare(ctx, &p, 2));
  EXPECT_OK(ctx, ptxq_ffn(ctx, &p, dx, dy, 2));
  EXPECT_OK(ctx, ptxq_sync(ctx));
  free(norm);
  free(up);
  free(gate);
  free(down);
  free(odd);
  ptxq_close(ctx);
}

/* ---- graphs ------------------------------------------------------------------- */

/* A decode layer small enough to check quickly: hidden 512, 8 heads of 64
 * (2 KV heads), FFN 1536. */
enum { HIDDEN = 512, HEADS = 8, KV_HEADS = 2, HEAD_DIM = 64, KV = KV_HEADS * HEAD_DIM, FF = 1536 };
#define LAYER_M 2u

typedef struct layer {
  ptxq_dev x, q, k, v, o, y, positions;
  ptxq_rope_params rope;
  ptxq_ffn_params ffn;
} layer;

/* The outputs, in the order they are downloaded and compared. */
typedef struct layer_out {
  float q[LAYER_M * HIDDEN], k[LAYER_M * KV], v[LAYER_M * KV], o[LAYER_M * HIDDEN],
      y[LAYER_M * HIDDEN];
} layer_out;

/* Enqueues the layer; run directly or recorded into a graph. */
static void run_layer(ptxq_ctx *ctx, const layer *L) {
  EXPECT_OK(ctx, ptxq_gemv(ctx, "wq", L->x, L->q, LAYER_M));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "wk", L->x, L->k, LAYER_M));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "wv", L->x, L->v, LAYER_M));
  EXPECT_OK(ctx, ptxq_rope(ctx, L->q, L->k, L->positions, LAYER_M, &L->rope));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "wo", L->q, L->o, LAYER_M));
  EXPECT_OK(ctx, ptxq_ffn(ctx, &L->ffn, L->o, L->y, LAYER_M));
}

static void layer_download(ptxq_ctx *ctx, const layer *L, layer_out *out) {
  download(ctx, out->q, L->q, sizeof out->q);
  download(ctx, out->k, L->k, sizeof out->k);
  download(ctx, out->v, L->v, sizeof out->v);
  download(ctx, out->o, L->o, sizeof out->o);
  download(ctx, out->y, L->y, sizeof out->y);
}

static void layer_poison(ptxq_ctx *ctx, const layer *L) {
  poison(ctx, L->q, LAYER_M * HIDDEN * 4);
  poison(ctx, L->k, LAYER_M * KV * 4);
  poison(ctx, L->v, LAYER_M * KV * 4);
  poison(ctx, L->o, LAYER_M * HIDDEN * 4);
  poison(ctx, L->y, LAYER_M * HIDDEN * 4);
}

static void upload_random(ptxq_ctx *ctx, rng *r, const char *name, ptxq_type type, uint32_t k,
                          uint32_t n) {
  size_t bytes;
  uint8_t *w = random_weight(r, type, k, n, &bytes);
  upload_weight(ctx, name, type, w, k, n, bytes);
  free(w);
}

Test(gpu, graph_replays_a_decode_layer) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  upload_random(ctx, &r, "wq", PTXQ_TYPE_Q4_K, HIDDEN, HIDDEN);
  upload_random(ctx, &r, "wk", PTXQ_TYPE_Q4_K, HIDDEN, KV);
  upload_random(ctx, &r, "wv", PTXQ_TYPE_Q6_K, HIDDEN, KV);
  upload_random(ctx, &r, "wo", PTXQ_TYPE_Q4_K, HIDDEN, HIDDEN);
  upload_random(ctx, &r, "gate", PTXQ_TYPE_Q4_K, HIDDEN, FF);
  upload_random(ctx, &r, "up", PTXQ_TYPE_Q4_K, HIDDEN, FF);
  upload_random(ctx, &r, "down", PTXQ_TYPE_Q6_K, FF, HIDDEN);

  layer L = {
      .x = device_alloc(ctx, LAYER_M * HIDDEN * 4),
      .q = device_alloc(ctx, LAYER_M * HIDDEN * 4),
      .k = device_alloc(ctx, LAYER_M * KV * 4),
      .v = device_alloc(ctx, LAYER_M * KV * 4),
      .o = device_alloc(ctx, LAYER_M * HIDDEN * 4),
      .y = device_alloc(ctx, LAYER_M * HIDDEN * 4),
      .positions = device_alloc(ctx, 64),
      .ffn = {PTXQ_FFN_SWIGLU, "gate", "up", "down"},
  };
  ptxq_rope_params_init(&L.rope, PTXQ_ROPE_NEOX, HEAD_DIM, HEADS, KV_HEADS);

  /* Everything built (and the FFN workspace sized) before capture. */
  static const char *const weights[] = {"wq", "wk", "wv", "wo"};
  for (size_t i = 0; i < 4; i++) EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, weights[i], LAYER_M));
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, LAYER_M, &L.rope));
  EXPECT_OK(ctx, ptxq_ffn_prepare(ctx, &L.ffn, LAYER_M));

  layer_poison(ctx, &L);
  EXPECT_OK(ctx, ptxq_capture_begin(ctx));
  run_layer(ctx, &L);
  ptxq_graph *graph = NULL;
  EXPECT_OK(ctx, ptxq_capture_end(ctx, &graph));
  cr_assert_not_null(graph);

  /* Recorded, not run: the outputs still hold their poison. */
  layer_out *replayed = checked_malloc(sizeof *replayed), *direct = checked_malloc(sizeof *direct);
  layer_download(ctx, &L, replayed);
  cr_assert_eq(first_unpoisoned(replayed->y, LAYER_M * HIDDEN), LAYER_M * HIDDEN,
               "the capture ran the ops instead of recording them");

  float previous_y[LAYER_M * HIDDEN];
  for (int replay = 0; replay < 3; replay++) {
    float x[LAYER_M * HIDDEN];
    for (size_t i = 0; i < LAYER_M * HIDDEN; i++) x[i] = rng_uniform(&r, -1.0f, 1.0f);
    int32_t positions[LAYER_M] = {17 + 1000 * replay, 18 + 1000 * replay};

    upload(ctx, L.x, x, sizeof x);
    upload(ctx, L.positions, positions, sizeof positions);
    layer_poison(ctx, &L);
    EXPECT_OK(ctx, ptxq_graph_launch(ctx, graph));
    layer_download(ctx, &L, replayed);

    upload(ctx, L.x, x, sizeof x);
    upload(ctx, L.positions, positions, sizeof positions);
    layer_poison(ctx, &L);
    run_layer(ctx, &L);
    layer_download(ctx, &L, direct);

    cr_assert_eq(first_unpoisoned(direct->y, LAYER_M * HIDDEN), 0);
    cr_assert(memcmp(replayed->q, direct->q, sizeof direct->q) == 0,
              "seed %llu replay %d: q differs from a direct run", (unsigned long long)seed, replay);
    cr_assert(memcmp(replayed->k, direct->k, sizeof direct->k) == 0,
              "seed %llu replay %d: k differs from a direct run", (unsigned long long)seed, replay);
    cr_assert(memcmp(replayed->v, direct->v, sizeof direct->v) == 0,
              "seed %llu replay %d: v differs from a direct run", (unsigned long long)seed, replay);
    cr_assert(memcmp(replayed->o, direct->o, sizeof direct->o) == 0,
              "seed %llu replay %d: o differs from a direct run", (unsigned long long)seed, replay);
    cr_assert(memcmp(replayed->y, direct->y, sizeof direct->y) == 0,
              "seed %llu replay %d: y differs from a direct run", (unsigned long long)seed, replay);
    if (replay > 0)
      cr_assert(memcmp(previous_y, direct->y, sizeof previous_y) != 0,
                "seed %llu replay %d: new inputs gave the old output", (unsigned long long)seed,
                replay);
    memcpy(previous_y, direct->y, sizeof previous_y);
  }
  ptxq_graph_destroy(ctx, graph);
  free(replayed);
  free(direct);
  ptxq_close(ctx);
}

Test(gpu, capture_refuses_what_it_cannot_record) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 512, n = 3;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  upload_random(ctx, &r, "square", PTXQ_TYPE_Q4_K, 256, 256);
  ptxq_dev dx = device_alloc(ctx, 2 * k * 4), dy = device_alloc(ctx, 2 * n * 4);
  ptxq_dev dq = device_alloc(ctx, 64 * 4), dk = device_alloc(ctx, 64 * 4);
  float x[2 * 512], y[2 * 3], y_graph[2 * 3];
  for (size_t i = 0; i < 2 * k; i++) x[i] = rng_uniform(&r, -1.0f, 1.0f);
  EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "w", 1)); /* m=1 built, m=2 not */
  char path[512];
  fixture_path(FIXTURE_GGUF, path, sizeof path);
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NORMAL, 64, 1, 1);
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, 1, &rope)); /* m=1 built, m=2 not */
  const ptxq_ffn_params ffn = {PTXQ_FFN_GELU, NULL, "square", "square"};
  int32_t positions[1] = {5};

  EXPECT_FAIL(ctx, ptxq_capture_end(ctx, &(ptxq_graph *){NULL}), PTXQ_ERR_CAPTURE, "no capture");
  EXPECT_OK(ctx, ptxq_capture_begin(ctx));
  EXPECT_FAIL(ctx, ptxq_capture_begin(ctx), PTXQ_ERR_CAPTURE, "already");

  EXPECT_OK(ctx, ptxq_gemv(ctx, "w", dx, dy, 1)); /* built: recorded */
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "w", dx, dy, 2), PTXQ_ERR_CAPTURE, "is not built");
  cr_assert(strstr(ptxq_last_error(ctx), "q4k_gemv:k=512,n=3,m=2") != NULL, "'%s'",
            ptxq_last_error(ctx));
  EXPECT_FAIL(ctx, ptxq_gemv_prepare(ctx, "w", 2), PTXQ_ERR_CAPTURE, "prepare");
  ptxq_kernel_info info;
  ptxq_device_info device;
  EXPECT_OK(ctx, ptxq_device_info_get(ctx, &device));
  char key[64];
  snprintf(key, sizeof key, "q4k_gemv:k=512,n=3,m=5,sm=%u", device.target_sm);
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, key, &info), PTXQ_ERR_CAPTURE, "not built");
  EXPECT_FAIL(ctx, ptxq_rope_prepare(ctx, 2, &rope), PTXQ_ERR_CAPTURE, "not built");
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, 1, &rope));
  /* Built, but the copy of host positions cannot be recorded. */
  EXPECT_FAIL(ctx, ptxq_rope_host_positions(ctx, dq, dk, positions, 1, &rope), PTXQ_ERR_CAPTURE,
              "device buffer");
  EXPECT_FAIL(ctx, ptxq_upload(ctx, dx, x, sizeof x), PTXQ_ERR_CAPTURE, "ptxq_upload");
  EXPECT_FAIL(ctx, ptxq_download(ctx, y, dy, sizeof y), PTXQ_ERR_CAPTURE, "ptxq_download");
  EXPECT_FAIL(ctx, ptxq_sync(ctx), PTXQ_ERR_CAPTURE, "ptxq_sync");
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "w", x, y, 1), PTXQ_ERR_CAPTURE, "ptxq_gemv_host");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "w2", PTXQ_TYPE_Q4_K, k, n, w, w_bytes),
              PTXQ_ERR_CAPTURE, "ptxq_weight_upload");
  EXPECT_FAIL(ctx, ptxq_weight_free(ctx, "w"), PTXQ_ERR_CAPTURE, "ptxq_weight_free");
  ptxq_dev extra = 0;
  EXPECT_FAIL(ctx, ptxq_alloc(ctx, 256, &extra), PTXQ_ERR_CAPTURE, "ptxq_alloc");
  EXPECT_FAIL(ctx, ptxq_free(ctx, dx), PTXQ_ERR_CAPTURE, "ptxq_free");
  EXPECT_FAIL(ctx, ptxq_weights_from_gguf(ctx, path, NULL, NULL, NULL, NULL), PTXQ_ERR_CAPTURE,
              "ptxq_weights_from_gguf");
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &ffn, dx, dy, 1), PTXQ_ERR_CAPTURE, "");

  /* None of that spoiled the capture: it ends with the one gemv recorded. */
  ptxq_graph *graph = NULL;
  EXPECT_OK(ctx, ptxq_capture_end(ctx, &graph));
  cr_assert_not_null(graph);
  ptxq_graph *none = NULL;
  EXPECT_FAIL(ctx, ptxq_capture_end(ctx, &none), PTXQ_ERR_CAPTURE, "no capture");
  cr_assert_null(none);

  /* The context works again, the refused free left dx allocated, and the
   * graph computes what the op computes. */
  EXPECT_OK(ctx, ptxq_gemv_host(ctx, "w", x, y, 2)); /* builds m=2 now */
  upload(ctx, dx, x, sizeof x);
  poison(ctx, dy, sizeof y_graph);
  EXPECT_OK(ctx, ptxq_graph_launch(ctx, graph));
  download(ctx, y_graph, dy, sizeof y_graph);
  cr_assert(memcmp(y_graph, y, n * 4) == 0, "seed %llu: the replayed gemv differs from gemv_host",
            (unsigned long long)seed);
  cr_assert_eq(first_unpoisoned(y_graph + n, n), n, "the graph wrote more than its m=1 product");
  double ref[2 * 3];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, k, n, x, 2, ref), PTXQ_OK);
  cr_assert_leq(relative_error(y, ref, 2 * n), TOLERANCE, "seed %llu", (unsigned long long)seed);
  EXPECT_OK(ctx, ptxq_free(ctx, dx));
  EXPECT_FAIL(ctx, ptxq_graph_launch(ctx, NULL), PTXQ_ERR_INVALID, "graph");
  ptxq_graph_destroy(ctx, graph);
  ptxq_graph_destroy(ctx, NULL);
  free(w);
  ptxq_close(ctx);
}

/* The FFN workspace cannot grow during capture, even with every kernel
 * built. */
Test(gpu, capture_refuses_ffn_workspace_growth) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  const uint32_t k = 256, n = 1024;
  upload_random(ctx, &r, "up", PTXQ_TYPE_Q4_K, k, n);
  upload_random(ctx, &r, "down", PTXQ_TYPE_Q6_K, n, k);
  const ptxq_ffn_params p = {PTXQ_FFN_GELU, NULL, "up", "down"};
  ptxq_dev dx = device_alloc(ctx, MAX_M * k * 4), dy = device_alloc(ctx, MAX_M * k * 4);
  ptxq_dev dh = device_alloc(ctx, MAX_M * n * 4);
  float *fill = random_floats(&r, MAX_M * n); /* inputs written: initcheck reads what kernels read */
  upload(ctx, dx, fill, MAX_M * k * 4);
  upload(ctx, dh, fill, MAX_M * n * 4);
  free(fill);
  EXPECT_OK(ctx, ptxq_ffn_prepare(ctx, &p, 1)); /* workspace for m=1 */
  /* The m=MAX_M kernels, built without the FFN. */
  EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "up", MAX_M));
  EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "down", MAX_M));
  EXPECT_OK(ctx, ptxq_gelu(ctx, dh, dh, n, MAX_M));
  EXPECT_OK(ctx, ptxq_sync(ctx));

  EXPECT_OK(ctx, ptxq_capture_begin(ctx));
  EXPECT_OK(ctx, ptxq_ffn(ctx, &p, dx, dy, 1));
  EXPECT_FAIL(ctx, ptxq_ffn(ctx, &p, dx, dy, MAX_M), PTXQ_ERR_CAPTURE, "workspace");
  EXPECT_FAIL(ctx, ptxq_ffn_prepare(ctx, &p, MAX_M), PTXQ_ERR_CAPTURE, "workspace");
  ptxq_graph *graph = NULL;
  EXPECT_OK(ctx, ptxq_capture_end(ctx, &graph));

  /* After capture it grows; the graph (naming the old workspace) still runs. */
  EXPECT_OK(ctx, ptxq_ffn(ctx, &p, dx, dy, MAX_M));
  EXPECT_OK(ctx, ptxq_graph_launch(ctx, graph));
  EXPECT_OK(ctx, ptxq_sync(ctx));
  ptxq_graph_destroy(ctx, graph);
  ptxq_close(ctx);
}

Test(gpu, close_ends_an_open_capture) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  EXPECT_OK(ctx, ptxq_capture_begin(ctx));
  ptxq_close(ctx);
  /* The device is still usable by a new context. */
  ctx = open_or_skip(NULL);
  ptxq_dev dev = device_alloc(ctx, 64);
  float back[16], values[16];
  for (int i = 0; i < 16; i++) values[i] = (float)i;
  upload(ctx, dev, values, sizeof values);
  download(ctx, back, dev, sizeof back);
  cr_assert(memcmp(back, values, sizeof back) == 0);
  ptxq_close(ctx);
}

Test(gpu, rope_prepare_rejects_bad_params) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 64, 8, 2);
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, 3, &p));
  EXPECT_FAIL(ctx, ptxq_rope_prepare(ctx, 3, NULL), PTXQ_ERR_INVALID, "params");
  EXPECT_FAIL(ctx, ptxq_rope_prepare(ctx, 17, &p), PTXQ_ERR_INVALID, "m=17");
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, 16, &p));
  p.head_dim = 63;
  EXPECT_FAIL(ctx, ptxq_rope_prepare(ctx, 1, &p), PTXQ_ERR_INVALID, "head_dim=63");
  ptxq_close(ctx);
}
