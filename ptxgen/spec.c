/*
 * spec.c: kernel specs and their canonical keys.
 *
 * A key is "<kind>:<name>=<value>,..." with unsigned decimal values, e.g.
 * "q4k_gemv:k=4096,n=14336,m=1,sm=90". Parsing accepts parameters in any
 * order (sm defaults to 90) and refuses anything else with a message naming
 * the offending text; formatting writes the one canonical order, so
 * parse(format(spec)) == spec and equal keys mean byte-identical PTX.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptxgen.h"

#define DEFAULT_SM 90u

const char *ptxgen_ptx_version(uint32_t sm) {
  /* The lowest .version that the target and our instructions need, so that
   * older drivers keep working. */
  switch (sm) {
  case 75: case 80: case 86: case 89: case 90: return "7.8";
  case 100: return "8.6";
  case 120: return "8.7";
  default: return NULL;
  }
}

static int fail(char *msg, size_t cap, const char *fmt, ...) {
  if (msg && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
  }
  return PTXGEN_ERR_SPEC;
}

static const char *kind_name(ptxgen_kind kind) {
  switch (kind) {
  case PTXGEN_KIND_Q4K_GEMV: return "q4k_gemv";
  case PTXGEN_KIND_STREAM_READ: return "stream_read";
  default: return NULL;
  }
}

int ptxgen_spec_validate(const ptxgen_spec *s, char *msg, size_t cap) {
  if (!s) return fail(msg, cap, "no spec given");
  const char *name = kind_name(s->kind);
  if (!name) return fail(msg, cap, "unknown kernel kind %d", (int)s->kind);
  if (!ptxgen_ptx_version(s->sm))
    return fail(msg, cap, "sm=%u is not a supported target (75, 80, 86, 89, 90, 100, 120)", s->sm);
  switch (s->kind) {
  case PTXGEN_KIND_Q4K_GEMV:
    if (s->k == 0) return fail(msg, cap, "k=0: the inner dimension must be a positive multiple of 256");
    if (s->k % 256) return fail(msg, cap, "k=%u is not a multiple of 256 (Q4_K super-blocks hold 256 weights)", s->k);
    if (s->k > PTXGEN_GEMV_MAX_K) return fail(msg, cap, "k=%u exceeds the limit k <= %u", s->k, PTXGEN_GEMV_MAX_K);
    if (s->n == 0) return fail(msg, cap, "n=0: there must be at least one output row");
    if (s->n > PTXGEN_GEMV_MAX_N) return fail(msg, cap, "n=%u exceeds the limit n <= %u", s->n, PTXGEN_GEMV_MAX_N);
    if (s->m == 0 || s->m > PTXGEN_GEMV_MAX_M)
      return fail(msg, cap, "m=%u: the batch must be 1..%u", s->m, PTXGEN_GEMV_MAX_M);
    if (s->rows != 0 && s->rows != 1 && s->rows != 2 && s->rows != 4)
      return fail(msg, cap, "rows=%u: rows per warp must be 1, 2 or 4", s->rows);
    if (s->warps != 0 && s->warps != 4 && s->warps != 8 && s->warps != 16)
      return fail(msg, cap, "warps=%u: warps per block must be 4, 8 or 16", s->warps);
    return PTXGEN_OK;
  case PTXGEN_KIND_STREAM_READ:
    if (s->n == 0) return fail(msg, cap, "n=0: the probe must read at least one 16-byte vector");
    if (s->n > PTXGEN_READ_MAX_N) return fail(msg, cap, "n=%u exceeds the limit n <= %u", s->n, PTXGEN_READ_MAX_N);
    if (s->k || s->m || s->rows || s->warps) return fail(msg, cap, "stream_read takes only n and sm");
    return PTXGEN_OK;
  default:
    return fail(msg, cap, "unknown kernel kind %d", (int)s->kind);
  }
}

int ptxgen_spec_format(const ptxgen_spec *s, char *buf, size_t cap) {
  if (ptxgen_spec_validate(s, NULL, 0) != PTXGEN_OK) return PTXGEN_ERR_SPEC;
  if (s->kind == PTXGEN_KIND_STREAM_READ)
    return snprintf(buf, cap, "stream_read:n=%u,sm=%u", s->n, s->sm);
  char tune[48] = "";
  int t = 0;
  if (s->rows) t += snprintf(tune + t, sizeof tune - (size_t)t, ",rows=%u", s->rows);
  if (s->warps) snprintf(tune + t, sizeof tune - (size_t)t, ",warps=%u", s->warps);
  return snprintf(buf, cap, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u%s", s->k, s->n, s->m, s->sm, tune);
}

/* The parameters a kind accepts, in canonical order; `required` marks those
 * a key must name. */
typedef struct {
  const char *name;
  size_t offset;
  int required;
} param_def;

#define P(field, req) {#field, offsetof(ptxgen_spec, field), req}
static const param_def gemv_params[] = {P(k, 1), P(n, 1), P(m, 1), P(sm, 0), P(rows, 0), P(warps, 0)};
static const param_def read_params[] = {P(n, 1), P(sm, 0)};
#undef P

/* Parses an unsigned decimal of at most 10 digits that fits 32 bits. */
static int parse_u32(const char *p, size_t len, uint32_t *out) {
  if (len == 0 || len > 10) return -1;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (uint64_t)(p[i] - '0');
  }
  if (v > UINT32_MAX) return -1;
  *out = (uint32_t)v;
  return 0;
}

int ptxgen_spec_parse(const char *key, ptxgen_spec *out, char *msg, size_t cap) {
  if (!key || !out) return fail(msg, cap, "no key given");
  const char *colon = strchr(key, ':');
  if (!colon) return fail(msg, cap, "expected '<kind>:<param>=<value>,...' (no ':' found)");
  size_t klen = (size_t)(colon - key);
  ptxgen_spec s = {0};
  const param_def *defs;
  size_t ndefs;
  if (klen == 8 && !memcmp(key, "q4k_gemv", 8)) {
    s.kind = PTXGEN_KIND_Q4K_GEMV;
    defs = gemv_params;
    ndefs = sizeof gemv_params / sizeof *gemv_params;
  } else if (klen == 11 && !memcmp(key, "stream_read", 11)) {
    s.kind = PTXGEN_KIND_STREAM_READ;
    defs = read_params;
    ndefs = sizeof read_params / sizeof *read_params;
  } else {
    return fail(msg, cap, "unknown kernel kind '%.*s' (known: q4k_gemv, stream_read)",
                (int)(klen > 40 ? 40 : klen), key);
  }
  unsigned seen = 0;
  const char *p = colon + 1;
  while (*p) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    int plen = (int)(end - p > 40 ? 40 : end - p);
    if (!eq) return fail(msg, cap, "'%.*s' is not of the form name=value", plen, p);
    size_t nlen = (size_t)(eq - p);
    size_t i = 0;
    while (i < ndefs && !(strlen(defs[i].name) == nlen && !memcmp(defs[i].name, p, nlen))) i++;
    if (i == ndefs) {
      char known[64] = "";
      for (size_t j = 0; j < ndefs; j++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", j ? ", " : "", defs[j].name);
      return fail(msg, cap, "unknown parameter '%.*s' for %.*s (known: %s)", (int)(nlen > 40 ? 40 : nlen), p,
                  (int)klen, key, known);
    }
    if (seen & (1u << i)) return fail(msg, cap, "parameter '%s' given twice", defs[i].name);
    seen |= 1u << i;
    uint32_t v;
    if (parse_u32(eq + 1, (size_t)(end - eq - 1), &v))
      return fail(msg, cap, "%s='%.*s' is not an unsigned 32-bit decimal number", defs[i].name,
                  (int)(end - eq - 1 > 40 ? 40 : end - eq - 1), eq + 1);
    memcpy((char *)&s + defs[i].offset, &v, sizeof v);
    if (!*end) break;
    p = end + 1;
    if (!*p) return fail(msg, cap, "the key ends with ','");
  }
  for (size_t i = 0; i < ndefs; i++)
    if (defs[i].required && !(seen & (1u << i)))
      return fail(msg, cap, "missing parameter '%s'", defs[i].name);
  /* sm is parameter 3 of the GEMV and 1 of the probe */
  int sm_index = s.kind == PTXGEN_KIND_Q4K_GEMV ? 3 : 1;
  if (!(seen & (1u << sm_index))) s.sm = DEFAULT_SM;
  int rc = ptxgen_spec_validate(&s, msg, cap);
  if (rc) return rc;
  *out = s;
  return PTXGEN_OK;
}
