/*
 * spec.c: kernel specs and their canonical keys.
 *
 * A key is "<kind>:<name>=<value>,..." e.g. "q4k_gemv:k=4096,n=14336,m=1,sm=90".
 * Values are unsigned decimals, floats (RoPE constants) or a word (RoPE
 * mode). Parsing accepts parameters in any order, fills defaults (sm=90 and
 * the kind's own) and refuses anything else with a message naming the
 * offending text. Formatting writes one canonical order: the parameters that
 * define the shape always, options only when they differ from their
 * defaults, floats in the shortest form that reads back to the same float.
 * So parse(format(spec)) == spec, and equal keys mean byte-identical PTX.
 */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "ptxgen.h"

const char *ptxgen_ptx_version(uint32_t sm) {
  /* The lowest .version that the target and our instructions need, so that
   * older drivers keep working. */
  switch (sm) {
  case 75: case 80: case 86: case 89: return "7.8";
  case 90: return "8.0"; /* the GEMV's copy engine (cp.async.bulk) */
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

/* ---- the parameters of each kind ----------------------------------------- */

typedef enum { P_U32, P_F32, P_MODE, P_GLU, P_ROPE } param_type;
/* SHOWN: always in the canonical key. ROPE: a GEMV's RoPE constant, zero
 * unless rope= is given, and then defaulting as the rope kind's does. */
enum { SHOWN = 1, REQUIRED = 2, ROPE = 4 };

typedef struct {
  const char *name;
  size_t offset;
  param_type type;
  int flags;
  double fallback; /* value when absent (ignored when REQUIRED) */
} param_def;

#define U(f, flags, d) {#f, offsetof(ptxgen_spec, f), P_U32, flags, d}
#define F(f, flags, d) {#f, offsetof(ptxgen_spec, f), P_F32, flags, d}
static const param_def gemv_params[] = {
    U(k, SHOWN | REQUIRED, 0), U(n, SHOWN | REQUIRED, 0), U(m, SHOWN | REQUIRED, 0), U(sm, SHOWN, 90),
    U(rows, 0, 0),             U(warps, 0, 0),            U(preload, 0, 0), U(tc, 0, 0), U(idp, 0, 0), U(mma, 0, 0),
    {"glu", offsetof(ptxgen_spec, glu), P_GLU, 0, 0}, U(n2, 0, 0), U(n3, 0, 0),
    {"rope", offsetof(ptxgen_spec, rope), P_ROPE, 0, 0}, U(head_dim, ROPE, 0), U(n_dims, ROPE, 0),
    F(base, ROPE, 0), F(freq_scale, ROPE, 0), U(freq_factors, ROPE, 0), F(ext_factor, ROPE, 0),
    F(attn_factor, ROPE, 0), F(beta_fast, ROPE, 0), F(beta_slow, ROPE, 0), U(n_ctx_orig, ROPE, 0)};
static const param_def read_params[] = {U(n, SHOWN | REQUIRED, 0), U(sm, SHOWN, 90), U(pdl, 0, 0)};
static const param_def act_params[] = {U(n, SHOWN | REQUIRED, 0), U(m, SHOWN | REQUIRED, 0), U(sm, SHOWN, 90)};
/* n_dims defaults to head_dim (fallback -1 marks that) */
static const param_def rope_params[] = {
    {"mode", offsetof(ptxgen_spec, mode), P_MODE, SHOWN | REQUIRED, 0},
    U(head_dim, SHOWN | REQUIRED, 0), U(n_dims, SHOWN, -1), U(heads, SHOWN | REQUIRED, 0),
    U(kv_heads, SHOWN | REQUIRED, 0), U(m, SHOWN | REQUIRED, 0), U(sm, SHOWN, 90),
    F(base, SHOWN, 10000), F(freq_scale, 0, 1), U(freq_factors, 0, 0), F(ext_factor, 0, 0),
    F(attn_factor, 0, 1), F(beta_fast, 0, 32), F(beta_slow, 0, 1), U(n_ctx_orig, 0, 0)};
#undef U
#undef F

typedef struct {
  ptxgen_kind kind;
  const char *name;
  const param_def *params;
  size_t nparams;
} kind_def;

#define KIND(k, name, params) {k, name, params, sizeof params / sizeof *params}
static const kind_def kind_defs[] = {
    KIND(PTXGEN_KIND_Q4K_GEMV, "q4k_gemv", gemv_params), KIND(PTXGEN_KIND_STREAM_READ, "stream_read", read_params),
    KIND(PTXGEN_KIND_GELU, "gelu", act_params),          KIND(PTXGEN_KIND_GELU_ERF, "gelu_erf", act_params),
    KIND(PTXGEN_KIND_SILU, "silu", act_params),          KIND(PTXGEN_KIND_SWIGLU, "swiglu", act_params),
    KIND(PTXGEN_KIND_GEGLU, "geglu", act_params),        KIND(PTXGEN_KIND_ROPE, "rope", rope_params),
    KIND(PTXGEN_KIND_Q6K_GEMV, "q6k_gemv", gemv_params)};
#undef KIND

static const kind_def *kind_of(ptxgen_kind kind) {
  for (size_t i = 0; i < sizeof kind_defs / sizeof *kind_defs; i++)
    if (kind_defs[i].kind == kind) return &kind_defs[i];
  return NULL;
}

/* The default of a GEMV's RoPE constant when rope= is given: the rope
 * kind's (n_dims: head_dim). */
static double rope_default(const param_def *pd, const ptxgen_spec *s) {
  if (pd->offset == offsetof(ptxgen_spec, n_dims)) return s->head_dim;
  const kind_def *rk = kind_of(PTXGEN_KIND_ROPE);
  for (size_t i = 0; i < rk->nparams; i++)
    if (rk->params[i].offset == pd->offset) return rk->params[i].fallback;
  return 0;
}

/* ---- validation ----------------------------------------------------------- */

static int validate_rope(const ptxgen_spec *s, char *msg, size_t cap);

/* A GEMV's RoPE epilogue: the rope kind's rules for q and k as n/head_dim
 * and n2/head_dim heads, plus what the epilogue needs. */
static int validate_gemv_rope(const ptxgen_spec *s, char *msg, size_t cap) {
  const kind_def *kd = kind_of(s->kind);
  if (s->rope == 0) {
    for (size_t i = 0; i < kd->nparams; i++) {
      uint32_t bits;
      memcpy(&bits, (const char *)s + kd->params[i].offset, sizeof bits);
      if ((kd->params[i].flags & ROPE) && bits != 0)
        return fail(msg, cap, "%s is a RoPE constant: it needs rope=normal or rope=neox", kd->params[i].name);
    }
    return PTXGEN_OK;
  }
  if (s->rope > 2) return fail(msg, cap, "rope=%u: must be 0 (none), 1 (normal) or 2 (neox)", s->rope);
  if (s->n2 == 0) return fail(msg, cap, "rope needs n2: the second weight's rows are the k heads");
  if (s->rows == 1) return fail(msg, cap, "rope with rows=1: a warp's rows must be rotation pairs");
  if (s->head_dim == 0 || s->head_dim % 2 || s->head_dim > PTXGEN_ROPE_MAX_HEAD_DIM)
    return fail(msg, cap, "head_dim=%u: must be even and 2..%u", s->head_dim, PTXGEN_ROPE_MAX_HEAD_DIM);
  if (s->n % s->head_dim || s->n2 % s->head_dim)
    return fail(msg, cap, "n=%u and n2=%u must be whole heads of head_dim=%u rows", s->n, s->n2, s->head_dim);
  ptxgen_spec r = *s;
  r.kind = PTXGEN_KIND_ROPE;
  r.mode = s->rope == 2 ? 2 : 0;
  r.heads = s->n / s->head_dim;
  r.kv_heads = s->n2 / s->head_dim;
  return validate_rope(&r, msg, cap);
}

static int validate_gemv(const ptxgen_spec *s, char *msg, size_t cap) {
  if (s->k == 0) return fail(msg, cap, "k=0: the inner dimension must be a positive multiple of 256");
  if (s->k % 256) return fail(msg, cap, "k=%u is not a multiple of 256 (K-quant super-blocks hold 256 weights)", s->k);
  if (s->k > PTXGEN_GEMV_MAX_K) return fail(msg, cap, "k=%u exceeds the limit k <= %u", s->k, PTXGEN_GEMV_MAX_K);
  if (s->n == 0) return fail(msg, cap, "n=0: there must be at least one output row");
  if (s->n > PTXGEN_GEMV_MAX_N) return fail(msg, cap, "n=%u exceeds the limit n <= %u", s->n, PTXGEN_GEMV_MAX_N);
  if (s->m == 0 || s->m > PTXGEN_GEMV_MAX_M)
    return fail(msg, cap, "m=%u: the batch must be 1..%u", s->m, PTXGEN_GEMV_MAX_M);
  if (s->rows != 0 && s->rows != 1 && s->rows != 2 && s->rows != 4)
    return fail(msg, cap, "rows=%u: rows per warp must be 1, 2 or 4", s->rows);
  if (s->warps != 0 && s->warps != 4 && s->warps != 8 && s->warps != 16)
    return fail(msg, cap, "warps=%u: warps per block must be 4, 8 or 16", s->warps);
  if (s->preload > 4)
    return fail(msg, cap,
                "preload=%u: must be 1 (off), 2 (a chunk ahead), 3 (a row group ahead) or 4 (the copy engine)",
                s->preload);
  if (s->glu > 2) return fail(msg, cap, "glu=%u: must be 0 (none), 1 (swiglu) or 2 (geglu)", s->glu);
  if (s->n3 != 0 && s->n2 == 0) return fail(msg, cap, "n3=%u without n2: the weights come in order", s->n3);
  if (s->n2 != 0 && s->glu != 0) return fail(msg, cap, "n2=%u with glu: a gated product has one weight pair", s->n2);
  if ((uint64_t)s->n + s->n2 + s->n3 > PTXGEN_GEMV_MAX_N)
    return fail(msg, cap, "n+n2+n3=%llu exceeds the limit %u rows", (unsigned long long)s->n + s->n2 + s->n3,
                PTXGEN_GEMV_MAX_N);
  if (s->tc > 1) return fail(msg, cap, "tc=%u: must be 0 (FMA) or 1 (tensor cores)", s->tc);
  if (s->idp > 1) return fail(msg, cap, "idp=%u: must be 0 (fp32 products) or 1 (integer dot products)", s->idp);
  if (s->idp && (s->tc || s->kind != PTXGEN_KIND_Q4K_GEMV))
    return fail(msg, cap, "idp=1 %s: integer dot products exist for the Q4_K FMA kernel only",
                s->tc ? "with tc=1" : "on q6k_gemv");
  if (s->mma > 2) return fail(msg, cap, "mma=%u: must be 1 (dp4a) or 2 (integer tensor cores)", s->mma);
  if (s->mma && !s->idp) return fail(msg, cap, "mma=%u without idp=1: it chooses how integer dot products run", s->mma);
  if (s->mma == 2 && !gemv_idp_mma_takes(s))
    return fail(msg, cap,
                "mma=2: the integer tensor-core kernel needs sm >= 80, m <= 8, no rope, rows, warps or preload, "
                "and x (3 bytes a value, k=%u, m=%u) staged whole in shared memory (sm_90/100 without "
                "glu=: or half in each of a cluster of two blocks, k a multiple of 512)",
                s->k, s->m);
  if (s->tc) {
    if (s->sm < 80) return fail(msg, cap, "tc=1 with sm=%u: mma.sync m16n8k16 on f16 needs sm >= 80", s->sm);
    if (s->rows || s->warps || s->preload)
      return fail(msg, cap, "tc=1 with %s: the FMA kernel's tuning does not apply to it",
                  s->rows ? "rows" : s->warps ? "warps" : "preload");
  }
  if ((s->glu != 0 || s->rope != 0) && s->m > PTXGEN_GEMV_EPILOGUE_MAX_M)
    return fail(msg, cap,
                "m=%u with %s: a GEMV epilogue takes m <= %u (its two rows per warp would spill registers); "
                "run the plain GEMV, then the %s kernel",
                s->m, s->glu ? "glu" : "rope", PTXGEN_GEMV_EPILOGUE_MAX_M, s->glu ? "swiglu or geglu" : "rope");
  int status = validate_gemv_rope(s, msg, cap);
  if (status == PTXGEN_OK && s->tc && s->rope && !ptxgen_gemv_tc_rope_fits(s))
    return fail(msg, cap,
                "tc=1 with rope=%s, head_dim=%u, n_dims=%u: the tensor-core GEMV rotates only neox pairs of whole "
                "heads (n_dims = head_dim, a multiple of 32); run it without rope, then the rope kernel",
                s->rope == 2 ? "neox" : "normal", s->head_dim, s->n_dims);
  return status;
}

/* (ptxgen.h) Its RoPE pairs rows i and i + head_dim/2 of a head, which lie
 * in 16-row tiles head_dim/32 apart (gemv_tc.c). */
bool ptxgen_gemv_tc_rope_fits(const ptxgen_spec *s) {
  return s->rope == 2 && s->n_dims == s->head_dim && s->head_dim % 32 == 0;
}

static int validate_act(const ptxgen_spec *s, char *msg, size_t cap) {
  if (s->n == 0) return fail(msg, cap, "n=0: there must be at least one value per row");
  if (s->n > PTXGEN_ACT_MAX_N) return fail(msg, cap, "n=%u exceeds the limit n <= %u", s->n, PTXGEN_ACT_MAX_N);
  if (s->m == 0 || s->m > PTXGEN_ACT_MAX_M)
    return fail(msg, cap, "m=%u: the batch must be 1..%u", s->m, PTXGEN_ACT_MAX_M);
  return PTXGEN_OK;
}

static int validate_rope(const ptxgen_spec *s, char *msg, size_t cap) {
  if (s->mode != 0 && s->mode != 2) return fail(msg, cap, "mode=%u: must be normal (0) or neox (2)", s->mode);
  if (s->head_dim == 0 || s->head_dim % 2 || s->head_dim > PTXGEN_ROPE_MAX_HEAD_DIM)
    return fail(msg, cap, "head_dim=%u: must be even and 2..%u", s->head_dim, PTXGEN_ROPE_MAX_HEAD_DIM);
  if (s->n_dims == 0 || s->n_dims % 2) return fail(msg, cap, "n_dims=%u: must be even and at least 2", s->n_dims);
  if (s->n_dims > s->head_dim)
    return fail(msg, cap, "n_dims=%u exceeds head_dim=%u: only dims of the head can rotate", s->n_dims, s->head_dim);
  if (s->heads == 0 || s->heads > PTXGEN_ROPE_MAX_HEADS)
    return fail(msg, cap, "heads=%u: must be 1..%u", s->heads, PTXGEN_ROPE_MAX_HEADS);
  if (s->kv_heads == 0 || s->heads % s->kv_heads)
    return fail(msg, cap, "kv_heads=%u does not divide heads=%u (grouped-query attention needs it to)", s->kv_heads,
                s->heads);
  if (s->m == 0 || s->m > PTXGEN_ROPE_MAX_M)
    return fail(msg, cap, "m=%u: the number of tokens must be 1..%u", s->m, PTXGEN_ROPE_MAX_M);
  if (!isfinite(s->base) || s->base <= 0 || s->base == 1)
    return fail(msg, cap, "base=%g: must be a finite number > 0 and != 1", (double)s->base);
  if (!isfinite(s->freq_scale) || s->freq_scale <= 0)
    return fail(msg, cap, "freq_scale=%g: must be finite and > 0", (double)s->freq_scale);
  if (s->freq_factors > 1) return fail(msg, cap, "freq_factors=%u: must be 0 or 1", s->freq_factors);
  if (!isfinite(s->ext_factor) || s->ext_factor < 0)
    return fail(msg, cap, "ext_factor=%g: must be finite and >= 0", (double)s->ext_factor);
  if (!isfinite(s->attn_factor)) return fail(msg, cap, "attn_factor=%g: must be finite", (double)s->attn_factor);
  if (!isfinite(s->beta_fast) || s->beta_fast <= 0)
    return fail(msg, cap, "beta_fast=%g: must be finite and > 0", (double)s->beta_fast);
  if (!isfinite(s->beta_slow) || s->beta_slow <= 0)
    return fail(msg, cap, "beta_slow=%g: must be finite and > 0", (double)s->beta_slow);
  if (s->ext_factor != 0 && s->n_ctx_orig == 0)
    return fail(msg, cap, "ext_factor=%g needs n_ctx_orig (the original context length) > 0", (double)s->ext_factor);
  return PTXGEN_OK;
}

int ptxgen_spec_validate(const ptxgen_spec *s, char *msg, size_t cap) {
  if (!s) return fail(msg, cap, "no spec given");
  const kind_def *kd = kind_of(s->kind);
  if (!kd) return fail(msg, cap, "unknown kernel kind %d", (int)s->kind);
  if (!ptxgen_ptx_version(s->sm))
    return fail(msg, cap, "sm=%u is not a supported target (75, 80, 86, 89, 90, 100, 120)", s->sm);
  /* Fields a kind does not use must be zero, so a spec has one meaning. */
  ptxgen_spec used = {.kind = s->kind};
  for (size_t i = 0; i < kd->nparams; i++)
    memcpy((char *)&used + kd->params[i].offset, (const char *)s + kd->params[i].offset, 4);
  if (memcmp(&used, s, sizeof used))
    return fail(msg, cap, "the spec sets fields that %s does not take", kd->name);
  switch (s->kind) {
  case PTXGEN_KIND_Q4K_GEMV:
  case PTXGEN_KIND_Q6K_GEMV: return validate_gemv(s, msg, cap);
  case PTXGEN_KIND_STREAM_READ:
    if (s->n == 0) return fail(msg, cap, "n=0: the probe must read at least one 16-byte vector");
    if (s->n > PTXGEN_READ_MAX_N) return fail(msg, cap, "n=%u exceeds the limit n <= %u", s->n, PTXGEN_READ_MAX_N);
    if (s->pdl > 1) return fail(msg, cap, "pdl=%u: must be 0 (a kernel alone) or 1 (a kernel of a chain)", s->pdl);
    if (s->pdl && s->sm < 90)
      return fail(msg, cap, "pdl=1 needs sm >= 90 (griddepcontrol), not sm=%u", s->sm);
    return PTXGEN_OK;
  case PTXGEN_KIND_ROPE: return validate_rope(s, msg, cap);
  default: return validate_act(s, msg, cap);
  }
}

/* ---- formatting ----------------------------------------------------------- */

/* Integers as integers, else the shortest %g form that reads back as the
 * same float. */
static void format_float(float v, char *buf, size_t cap) {
  if (v == floorf(v) && fabsf(v) < 1e9f) {
    snprintf(buf, cap, "%.0f", (double)v);
    return;
  }
  for (int prec = 1; prec <= 9; prec++) {
    snprintf(buf, cap, "%.*g", prec, (double)v);
    if (strtof(buf, NULL) == v) return;
  }
}

int ptxgen_spec_format(const ptxgen_spec *s, char *buf, size_t cap) {
  if (ptxgen_spec_validate(s, NULL, 0) != PTXGEN_OK) return PTXGEN_ERR_SPEC;
  const kind_def *kd = kind_of(s->kind);
  char out[512];
  size_t len = (size_t)snprintf(out, sizeof out, "%s:", kd->name);
  int first = 1;
  for (size_t i = 0; i < kd->nparams; i++) {
    const param_def *pd = &kd->params[i];
    const char *field = (const char *)s + pd->offset;
    char value[48];
    if (pd->type == P_F32) {
      float v;
      memcpy(&v, field, sizeof v);
      /* Compared bit for bit: -0 is not its default 0 (ext_factor=-0 is
       * valid), and a key that dropped it would parse back to +0. */
      float fallback = (float)((pd->flags & ROPE) && s->rope ? rope_default(pd, s) : pd->fallback);
      if (!(pd->flags & SHOWN) && memcmp(&v, &fallback, sizeof v) == 0) continue;
      format_float(v, value, sizeof value);
    } else {
      uint32_t v;
      memcpy(&v, field, sizeof v);
      /* (the rope kind's n_dims has the fallback -1, "head_dim", but is SHOWN) */
      double fallback = (pd->flags & ROPE) && s->rope ? rope_default(pd, s) : pd->fallback;
      if (!(pd->flags & SHOWN) && fallback >= 0 && v == (uint32_t)fallback) continue;
      if (pd->type == P_MODE || pd->type == P_ROPE)
        snprintf(value, sizeof value, "%s", v == 2 ? "neox" : "normal");
      else if (pd->type == P_GLU) snprintf(value, sizeof value, "%s", v == 1 ? "swiglu" : "geglu");
      else snprintf(value, sizeof value, "%u", v);
    }
    len += (size_t)snprintf(out + len, sizeof out - len, "%s%s=%s", first ? "" : ",", pd->name, value);
    first = 0;
  }
  return snprintf(buf, cap, "%s", out);
}

/* ---- parsing --------------------------------------------------------------- */

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

static int parse_f32(const char *p, size_t len, float *out) {
  char tmp[64];
  if (len == 0 || len >= sizeof tmp) return -1;
  memcpy(tmp, p, len);
  tmp[len] = 0;
  for (size_t i = 0; i < len; i++) /* plain decimal or exponent notation only: no hex, inf or nan */
    if (!strchr("0123456789.eE+-", tmp[i])) return -1;
  char *end;
  float v = strtof(tmp, &end);
  if (*end || !isfinite(v)) return -1;
  *out = v;
  return 0;
}

static int parse_value(const param_def *pd, const char *p, size_t len, ptxgen_spec *s) {
  char *field = (char *)s + pd->offset;
  if (pd->type == P_F32) {
    float v;
    if (parse_f32(p, len, &v)) return -1;
    memcpy(field, &v, sizeof v);
    return 0;
  }
  uint32_t v;
  if (pd->type == P_MODE) {
    if (len == 6 && !memcmp(p, "normal", 6)) v = 0;
    else if (len == 4 && !memcmp(p, "neox", 4)) v = 2;
    else return -1;
  } else if (pd->type == P_ROPE) {
    if (len == 6 && !memcmp(p, "normal", 6)) v = 1;
    else if (len == 4 && !memcmp(p, "neox", 4)) v = 2;
    else return -1;
  } else if (pd->type == P_GLU) {
    if (len == 6 && !memcmp(p, "swiglu", 6)) v = 1;
    else if (len == 5 && !memcmp(p, "geglu", 5)) v = 2;
    else return -1;
  } else if (parse_u32(p, len, &v)) {
    return -1;
  }
  memcpy(field, &v, sizeof v);
  return 0;
}

static const char *type_words(param_type t) {
  return t == P_F32    ? "a finite decimal number"
         : t == P_MODE || t == P_ROPE ? "normal or neox"
         : t == P_GLU  ? "swiglu or geglu"
                       : "an unsigned 32-bit decimal number";
}

int ptxgen_spec_parse(const char *key, ptxgen_spec *out, char *msg, size_t cap) {
  if (!key || !out) return fail(msg, cap, "no key given");
  const char *colon = strchr(key, ':');
  if (!colon) return fail(msg, cap, "expected '<kind>:<param>=<value>,...' (no ':' found)");
  size_t klen = (size_t)(colon - key);
  const kind_def *kd = NULL;
  for (size_t i = 0; i < sizeof kind_defs / sizeof *kind_defs; i++)
    if (strlen(kind_defs[i].name) == klen && !memcmp(kind_defs[i].name, key, klen)) kd = &kind_defs[i];
  if (!kd)
    return fail(msg, cap, "unknown kernel kind '%.*s' (known: q4k_gemv, q6k_gemv, stream_read, gelu, gelu_erf, silu, "
                          "swiglu, geglu, rope)", (int)(klen > 40 ? 40 : klen), key);
  ptxgen_spec s = {.kind = kd->kind};
  uint32_t seen = 0;
  const char *p = colon + 1;
  while (*p) {
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    const char *eq = memchr(p, '=', (size_t)(end - p));
    int plen = (int)(end - p > 40 ? 40 : end - p);
    if (!eq) return fail(msg, cap, "'%.*s' is not of the form name=value", plen, p);
    size_t nlen = (size_t)(eq - p);
    size_t i = 0;
    while (i < kd->nparams && !(strlen(kd->params[i].name) == nlen && !memcmp(kd->params[i].name, p, nlen))) i++;
    if (i == kd->nparams) {
      char known[256] = "";
      for (size_t j = 0; j < kd->nparams; j++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", j ? ", " : "", kd->params[j].name);
      return fail(msg, cap, "unknown parameter '%.*s' for %s (known: %s)", (int)(nlen > 40 ? 40 : nlen), p, kd->name,
                  known);
    }
    if (seen & (1u << i)) return fail(msg, cap, "parameter '%s' given twice", kd->params[i].name);
    seen |= 1u << i;
    size_t vlen = (size_t)(end - eq - 1);
    if (parse_value(&kd->params[i], eq + 1, vlen, &s))
      return fail(msg, cap, "%s='%.*s' is not %s", kd->params[i].name, (int)(vlen > 40 ? 40 : vlen), eq + 1,
                  type_words(kd->params[i].type));
    if (!*end) break;
    p = end + 1;
    if (!*p) return fail(msg, cap, "the key ends with ','");
  }
  for (size_t i = 0; i < kd->nparams; i++) {
    const param_def *pd = &kd->params[i];
    if (seen & (1u << i)) continue;
    if (pd->flags & REQUIRED) return fail(msg, cap, "missing parameter '%s'", pd->name);
    char *field = (char *)&s + pd->offset;
    if (pd->type == P_F32) {
      float v = (float)pd->fallback;
      memcpy(field, &v, sizeof v);
    } else if (pd->fallback >= 0) {
      uint32_t v = (uint32_t)pd->fallback;
      memcpy(field, &v, sizeof v);
    }
  }
  if (kd->kind == PTXGEN_KIND_ROPE && !(seen & (1u << 2))) s.n_dims = s.head_dim; /* n_dims defaults to head_dim */
  if (s.rope) /* a GEMV's RoPE constants default as the rope kind's */
    for (size_t i = 0; i < kd->nparams; i++) {
      const param_def *pd = &kd->params[i];
      if (!(pd->flags & ROPE) || (seen & (1u << i))) continue;
      char *field = (char *)&s + pd->offset;
      double d = rope_default(pd, &s);
      if (pd->type == P_F32) {
        float v = (float)d;
        memcpy(field, &v, sizeof v);
      } else {
        uint32_t v = (uint32_t)d;
        memcpy(field, &v, sizeof v);
      }
    }
  int rc = ptxgen_spec_validate(&s, msg, cap);
  if (rc) return rc;
  *out = s;
  return PTXGEN_OK;
}
