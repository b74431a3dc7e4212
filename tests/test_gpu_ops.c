/*
 * test_gpu_ops.c: suite "gpu", the activation and RoPE ops on a real device.
 *
 * Activations (gelu, gelu_erf, silu, swiglu, geglu) are checked against the
 * fp64 reference (ptxq_ref_act / ptxq_ref_glu) for n in {1, 3, 14336,
 * 14337} x m in {1, 3, 8, 16}, out of place and in place, on inputs uniform in
 * [-20, 20] with special values planted (zeros, tiny, huge, infinities,
 * NaN, the edges of exp's range, the neighbours of sqrt 2 where gelu_erf
 * changes method). A value passes when |y - ref| <= 2e-6 |ref| + 1e-7, or,
 * for a non-finite ref, when y is of the same class (NaN, +inf, -inf).
 * Outputs are poisoned with 0xFF bytes (a NaN no kernel produces) so an
 * unwritten value fails, and guard floats after each buffer must survive.
 *
 * RoPE is checked against ptxq_ref_rope (max abs error <= 2e-6, dims past
 * n_dims bit-identical) for normal and neox layouts, partial rotary, GQA,
 * freq_scale, freq_factors and YaRN, m = 1..16, positions up to 2^20 and
 * negative; ptxq_rope_host_positions must give the same bits as ptxq_rope;
 * rewriting the device positions and repeating the same call must give the
 * new rotation (what a replayed graph relies on).
 *
 * Every bad argument must be refused with a detail naming it; the op cache
 * must keep specs apart; several threads may share a context. The measured
 * errors and the host cost of a call are reported with cr_log_info, which
 * this binary always shows (see the hook below), so they land in meson's
 * testlog.txt.
 *
 * Each test draws a fresh seed (printed in every failure; set
 * PTXQ_TEST_SEED to replay one). Without a GPU every test skips.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <criterion/options.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gpu_common.h"
#include "ptxgen.h"
#include "ptxq.h"

#define GUARD_FLOATS 64u          /* poisoned floats after every output buffer */
#define ACT_REL_TOLERANCE 2e-6
#define ACT_ABS_TOLERANCE 1e-7
#define ROPE_TOLERANCE 2e-6       /* absolute, unit-scale inputs */
#define MAX_M PTXGEN_ROPE_MAX_M /* 16, as PTXGEN_ACT_MAX_M */

/* The error figures are the point of a device run: show info-level logs
 * without --verbose. */
ReportHook(PRE_ALL)(struct criterion_test_set *tests) {
  (void)tests;
  criterion_options.logging_threshold = CRITERION_INFO;
}

/* ---- helpers ------------------------------------------------------------ */

static uint32_t rng_below(rng *r, uint32_t limit) {
  return (uint32_t)(rng_next(r) % limit);
}

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* Uploads count floats followed by GUARD_FLOATS poisoned ones. */
static void upload_guarded(ptxq_ctx *ctx, ptxq_dev dst, const float *values, size_t count) {
  size_t bytes = (count + GUARD_FLOATS) * sizeof(float);
  float *staging = checked_malloc(bytes);
  if (values != NULL) memcpy(staging, values, count * sizeof(float));
  else memset(staging, 0xFF, count * sizeof(float));
  memset(staging + count, 0xFF, GUARD_FLOATS * sizeof(float));
  upload(ctx, dst, staging, bytes);
  free(staging);
}

/* Index of the first guard float (after count values) that changed, or
 * GUARD_FLOATS. */
static size_t first_changed_guard(const float *buffer, size_t count) {
  size_t i = 0;
  while (i < GUARD_FLOATS && bits_of(buffer[count + i]) == POISON_BITS) i++;
  return i;
}

/* ---- activations: the five ops behind one index -------------------------- */

enum { ACT_GELU, ACT_GELU_ERF, ACT_SILU, ACT_SWIGLU, ACT_GEGLU, ACT_KINDS };
static const char *const act_names[ACT_KINDS] = {"gelu", "gelu_erf", "silu", "swiglu", "geglu"};

static bool act_gated(int kind) { return kind == ACT_SWIGLU || kind == ACT_GEGLU; }

/* up is ignored by the unary ops. */
static int act_run(ptxq_ctx *ctx, int kind, ptxq_dev x, ptxq_dev up, ptxq_dev y, uint32_t n,
                   uint32_t m) {
  switch (kind) {
  case ACT_GELU: return ptxq_gelu(ctx, x, y, n, m);
  case ACT_GELU_ERF: return ptxq_gelu_erf(ctx, x, y, n, m);
  case ACT_SILU: return ptxq_silu(ctx, x, y, n, m);
  case ACT_SWIGLU: return ptxq_swiglu(ctx, x, up, y, n, m);
  default: return ptxq_geglu(ctx, x, up, y, n, m);
  }
}

static void act_reference(int kind, const float *x, const float *up, double *ref, size_t count) {
  static const ptxq_act unary[ACT_KINDS] = {PTXQ_ACT_GELU, PTXQ_ACT_GELU_ERF, PTXQ_ACT_SILU,
                                            PTXQ_ACT_SILU, PTXQ_ACT_GELU};
  int status = act_gated(kind) ? ptxq_ref_glu(unary[kind], x, up, ref, count)
                               : ptxq_ref_act(unary[kind], x, ref, count);
  cr_assert_eq(status, PTXQ_OK, "reference %s over %zu values: %s", act_names[kind], count,
               ptxq_strerror(status));
}

/* The values planted among the random inputs: signed zeros, subnormal,
 * tiny and huge values, infinities, NaN, the edges of exp's float range
 * (e^88 is finite, e^89 is not; 87.3365 is where the kernel's 2^t leaves
 * its corrected range) and sqrt 2 with its float neighbours (gelu_erf
 * changes method at |x| = sqrt 2). Returns the count. */
static size_t special_values(float *out) {
  const float root2 = sqrtf(2.0f);
  const float positive[] = {1e-30f, 1e-40f, 1e30f, INFINITY, NAN, 88.0f, 89.0f, 87.3365f,
                            87.3366f, nextafterf(root2, 0.0f), root2, nextafterf(root2, 2.0f)};
  size_t count = 0;
  out[count++] = 0.0f;
  out[count++] = -0.0f;
  for (size_t i = 0; i < sizeof positive / sizeof positive[0]; i++) {
    out[count++] = positive[i];
    out[count++] = -positive[i];
  }
  return count;
}
#define SPECIAL_MAX 32

/* Random inputs in [-20, 20] with the special values planted. A special
 * value in up comes with a gate in [0.5, 20], where act(gate) is clearly
 * nonzero, so that the product's class (inf, NaN) and relative accuracy are
 * well defined. Small arrays, and the first and last 4 values of any (the
 * kernel's scalar tail), get a special value with probability 1/2; a large
 * array also gets every special value once in x (and once in up) at random
 * places. */
static void fill_act_inputs(rng *r, bool gated, float *x, float *up, size_t count) {
  float specials[SPECIAL_MAX];
  size_t nspecial = special_values(specials);
  for (size_t i = 0; i < count; i++) {
    x[i] = rng_uniform(r, -20.0f, 20.0f);
    if (gated) up[i] = rng_uniform(r, -20.0f, 20.0f);
  }
  bool *planted = calloc(count, sizeof *planted);
  cr_assert_not_null(planted);
  const bool small = count < 1024;
  for (size_t i = 0; i < count; i++) {
    bool edge = small || i < 4 || i + 4 >= count;
    if (!edge || (rng_next(r) & 1)) continue;
    float value = specials[rng_below(r, (uint32_t)nspecial)];
    if (gated && (rng_next(r) & 1)) {
      up[i] = value;
      x[i] = rng_uniform(r, 0.5f, 20.0f);
    } else {
      x[i] = value;
    }
    planted[i] = true;
  }
  if (!small) {
    for (int side = 0; side < (gated ? 2 : 1); side++)
      for (size_t s = 0; s < nspecial; s++) {
        size_t i;
        do i = 4 + rng_below(r, (uint32_t)(count - 8));
        while (planted[i]);
        planted[i] = true;
        if (side == 0) {
          x[i] = specials[s];
        } else {
          up[i] = specials[s];
          x[i] = rng_uniform(r, 0.5f, 20.0f);
        }
      }
  }
  free(planted);
}

/* What the tests saw, for the report. */
typedef struct act_stats {
  double max_rel;       /* max |y - ref| / |ref| where |ref| >= 1 */
  double max_abs_small; /* max |y - ref| where |ref| < 1 */
  double worst_share;   /* max |y - ref| / allowance: <= 1 passes */
  float worst_x, worst_up;
  size_t values;
} act_stats;

/* Whether y passes for ref; updates the statistics. */
static bool act_value_ok(float y, double ref, float x, float up, act_stats *st) {
  if (isnan(ref)) return isnan(y);
  if (isinf(ref)) return isinf(y) && (y > 0) == (ref > 0);
  if (!isfinite(y)) return false;
  double diff = fabs((double)y - ref), allowed = ACT_REL_TOLERANCE * fabs(ref) + ACT_ABS_TOLERANCE;
  if (fabs(ref) >= 1.0) st->max_rel = fmax(st->max_rel, diff / fabs(ref));
  else st->max_abs_small = fmax(st->max_abs_small, diff);
  if (diff / allowed > st->worst_share) {
    st->worst_share = diff / allowed;
    st->worst_x = x;
    st->worst_up = up;
  }
  return diff <= allowed;
}

/* "x = 1.5" or "gate = 1.5, up = -2" */
static void describe_input(float x, float up, bool gated, char *buf, size_t cap) {
  if (gated) snprintf(buf, cap, "gate = %.9g, up = %.9g", (double)x, (double)up);
  else snprintf(buf, cap, "x = %.9g", (double)x);
}

typedef enum { OUT_OF_PLACE, IN_PLACE_X, IN_PLACE_UP } act_placement;
static const char *const placement_names[] = {"out of place", "in place (y == x/gate)",
                                              "in place (y == up)"};

/* One run of an op on count = n*m values, checked value by value. */
static void act_check_run(ptxq_ctx *ctx, uint64_t seed, int kind, act_placement placement,
                          uint32_t n, uint32_t m, const float *x, const float *up,
                          const double *ref, ptxq_dev dx, ptxq_dev dup, ptxq_dev dy,
                          act_stats *st) {
  const bool gated = act_gated(kind);
  const size_t count = (size_t)n * m, bytes = (count + GUARD_FLOATS) * sizeof(float);
  upload_guarded(ctx, dx, x, count);
  if (gated) upload_guarded(ctx, dup, up, count);
  ptxq_dev y = dy;
  if (placement == OUT_OF_PLACE) upload_guarded(ctx, dy, NULL, count);
  else y = placement == IN_PLACE_X ? dx : dup;

  int status = act_run(ctx, kind, dx, dup, y, n, m);
  cr_assert_eq(status, PTXQ_OK, "seed %llu %s n=%u m=%u %s: %s", (unsigned long long)seed,
               act_names[kind], n, m, placement_names[placement], ptxq_last_error(ctx));
  float *out = checked_malloc(bytes);
  download(ctx, out, y, bytes);

  for (size_t i = 0; i < count; i++) {
    float u = gated ? up[i] : 0.0f;
    char input[64];
    describe_input(x[i], u, gated, input, sizeof input);
    if (placement == OUT_OF_PLACE)
      cr_assert_neq(bits_of(out[i]), POISON_BITS,
                    "seed %llu %s n=%u m=%u %s: y[%zu] (row %zu, col %zu) was not written",
                    (unsigned long long)seed, act_names[kind], n, m, placement_names[placement], i,
                    i / n, i % n);
    cr_assert(act_value_ok(out[i], ref[i], x[i], u, st),
              "seed %llu %s n=%u m=%u %s: y[%zu] (row %zu, col %zu) = %.9g, want %.17g (%s)",
              (unsigned long long)seed, act_names[kind], n, m, placement_names[placement], i,
              i / n, i % n, (double)out[i], ref[i], input);
  }
  st->values += count;
  size_t guard = first_changed_guard(out, count);
  cr_assert_eq(guard, GUARD_FLOATS,
               "seed %llu %s n=%u m=%u %s: wrote the guard float %zu past the m*n outputs",
               (unsigned long long)seed, act_names[kind], n, m, placement_names[placement], guard);

  /* Out of place, the inputs are read only. */
  if (placement == OUT_OF_PLACE) {
    download(ctx, out, dx, count * sizeof(float));
    cr_assert(memcmp(out, x, count * sizeof(float)) == 0, "seed %llu %s n=%u m=%u: x changed",
              (unsigned long long)seed, act_names[kind], n, m);
    if (gated) {
      download(ctx, out, dup, count * sizeof(float));
      cr_assert(memcmp(out, up, count * sizeof(float)) == 0, "seed %llu %s n=%u m=%u: up changed",
                (unsigned long long)seed, act_names[kind], n, m);
    }
  }
  free(out);
}

ParameterizedTestParameters(gpu, activation_matches_reference) {
  static int kinds[ACT_KINDS] = {ACT_GELU, ACT_GELU_ERF, ACT_SILU, ACT_SWIGLU, ACT_GEGLU};
  return cr_make_param_array(int, kinds, ACT_KINDS);
}

ParameterizedTest(int *kind_param, gpu, activation_matches_reference) {
  const int kind = *kind_param;
  const bool gated = act_gated(kind);
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  static const uint32_t ns[] = {1, 3, 14336, 14337}, ms[] = {1, 3, 8, PTXGEN_ACT_MAX_M};
  const size_t max_count = (size_t)14337 * PTXGEN_ACT_MAX_M, max_bytes = (max_count + GUARD_FLOATS) * sizeof(float);
  float *x = checked_malloc(max_count * sizeof *x), *up = checked_malloc(max_count * sizeof *up);
  double *ref = checked_malloc(max_count * sizeof *ref);
  ptxq_dev dx = device_alloc(ctx, max_bytes), dup = device_alloc(ctx, max_bytes),
           dy = device_alloc(ctx, max_bytes);
  act_stats st = {0};

  for (size_t ni = 0; ni < sizeof ns / sizeof ns[0]; ni++)
    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++) {
      uint32_t n = ns[ni], m = ms[mi];
      size_t count = (size_t)n * m;
      fill_act_inputs(&r, gated, x, up, count);
      act_reference(kind, x, up, ref, count);
      act_check_run(ctx, seed, kind, OUT_OF_PLACE, n, m, x, up, ref, dx, dup, dy, &st);
      act_check_run(ctx, seed, kind, IN_PLACE_X, n, m, x, up, ref, dx, dup, dy, &st);
      if (gated) act_check_run(ctx, seed, kind, IN_PLACE_UP, n, m, x, up, ref, dx, dup, dy, &st);
    }
  char worst[64];
  describe_input(st.worst_x, st.worst_up, gated, worst, sizeof worst);
  cr_log_info("%s: max relative error %.3g (|ref| >= 1); max absolute error %.3g (|ref| < 1); "
              "worst share of the allowance 2e-6|ref| + 1e-7: %.3f at %s; %zu values, seed %llu",
              act_names[kind], st.max_rel, st.max_abs_small, st.worst_share, worst, st.values,
              (unsigned long long)seed);
  free(x);
  free(up);
  free(ref);
  ptxq_close(ctx);
}

/* ---- RoPE ------------------------------------------------------------------ */

typedef struct rope_case {
  int mode; /* PTXQ_ROPE_NORMAL or PTXQ_ROPE_NEOX */
  uint32_t head_dim, n_dims, heads, kv_heads;
  float base, freq_scale;
  int freq_factors; /* 1: a device array of n_dims/2 factors in [1, 8] */
  int yarn;         /* 1: ext_factor 1, attn_factor 1, beta 32/1, n_ctx_orig 4096 */
} rope_case;

#define NORMAL PTXQ_ROPE_NORMAL
#define NEOX PTXQ_ROPE_NEOX
static rope_case rope_cases[] = {
    /* Llama-3: neox, GQA 32/8, base 500000 */
    {NEOX, 128, 128, 32, 8, 500000.0f, 1.0f, 0, 0},
    {NORMAL, 128, 128, 32, 8, 10000.0f, 1.0f, 0, 0},
    /* partial rotary: dims 64..127 pass through */
    {NEOX, 128, 64, 32, 8, 10000.0f, 1.0f, 0, 0},
    {NORMAL, 128, 64, 4, 4, 500000.0f, 1.0f, 0, 0},
    {NEOX, 64, 64, 6, 3, 10000.0f, 1.0f, 0, 0},
    {NORMAL, 64, 64, 6, 3, 10000.0f, 0.25f, 0, 0},
    {NEOX, 2, 2, 4, 4, 10000.0f, 1.0f, 0, 0},
    {NORMAL, 2, 2, 6, 3, 500000.0f, 1.0f, 0, 0},
    {NEOX, 128, 64, 4, 4, 10000.0f, 0.25f, 0, 0},
    /* pair counts that do not divide the kernel's 128 threads, so a thread's
     * later pairs carry into the next head vector (40, 24 and 100 pairs) */
    {NEOX, 80, 80, 6, 2, 10000.0f, 1.0f, 0, 0},
    {NORMAL, 96, 48, 5, 5, 10000.0f, 1.0f, 0, 0},
    {NEOX, 200, 200, 3, 1, 500000.0f, 1.0f, 0, 0},
    /* Llama-3.1 style freq_factors */
    {NEOX, 128, 128, 32, 8, 500000.0f, 1.0f, 1, 0},
    {NORMAL, 128, 64, 4, 4, 10000.0f, 1.0f, 1, 0},
    /* YaRN (freq_scale 0.25), alone and with freq_factors */
    {NEOX, 128, 128, 32, 8, 10000.0f, 0.25f, 0, 1},
    {NORMAL, 64, 64, 6, 3, 500000.0f, 0.25f, 1, 1},
};
#define ROPE_CASES (sizeof rope_cases / sizeof rope_cases[0])

static ptxq_rope_params rope_params_of(const rope_case *c) {
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, (ptxq_rope_mode)c->mode, c->head_dim, c->heads, c->kv_heads);
  p.n_dims = c->n_dims;
  p.base = c->base;
  p.freq_scale = c->freq_scale;
  if (c->yarn) {
    p.ext_factor = 1.0f;
    p.attn_factor = 1.0f;
    p.beta_fast = 32.0f;
    p.beta_slow = 1.0f;
    p.n_ctx_orig = 4096;
  }
  return p;
}

static void describe_case(const rope_case *c, char *buf, size_t cap) {
  snprintf(buf, cap, "%s head_dim=%u n_dims=%u heads=%u/%u base=%g freq_scale=%g%s%s",
           c->mode == NEOX ? "neox" : "normal", c->head_dim, c->n_dims, c->heads, c->kv_heads,
           (double)c->base, (double)c->freq_scale, c->freq_factors ? " freq_factors" : "",
           c->yarn ? " YaRN" : "");
}

/* Random positions in [0, 2^20]; 0, 2^20 - 1, 2^20 and a negative one are
 * planted at random tokens (all four when m == MAX_M, each with
 * probability 1/2 otherwise). */
static void random_positions(rng *r, int32_t *pos, uint32_t m) {
  const int32_t limit = 1 << 20;
  for (uint32_t t = 0; t < m; t++) pos[t] = (int32_t)rng_below(r, (uint32_t)limit + 1);
  uint32_t order[MAX_M];
  for (uint32_t t = 0; t < m; t++) order[t] = t;
  for (uint32_t t = m; t > 1; t--) { /* Fisher-Yates */
    uint32_t j = rng_below(r, t), tmp = order[t - 1];
    order[t - 1] = order[j];
    order[j] = tmp;
  }
  const int32_t planted[4] = {0, limit - 1, limit, -1 - (int32_t)rng_below(r, (uint32_t)limit)};
  for (uint32_t j = 0; j < 4 && j < m; j++)
    if (m == MAX_M || (rng_next(r) & 1)) pos[order[j]] = planted[j];
}

/* Checks one rotated buffer of `vectors` head vectors against the
 * reference: rotated dims within ROPE_TOLERANCE, dims past n_dims
 * bit-identical to the input, the guard untouched. Returns the max abs
 * error over rotated dims. */
static double check_rope_buffer(const char *label, const char *which, const float *out,
                                const double *ref, const float *in, uint32_t vectors,
                                uint32_t per_token, const ptxq_rope_params *p) {
  double max_err = 0.0;
  for (uint32_t v = 0; v < vectors; v++)
    for (uint32_t d = 0; d < p->head_dim; d++) {
      size_t i = (size_t)v * p->head_dim + d;
      if (d >= p->n_dims) {
        cr_assert_eq(bits_of(out[i]), bits_of(in[i]),
                     "%s: %s token %u head %u dim %u (past n_dims) changed: %a -> %a", label, which,
                     v / per_token, v % per_token, d, (double)in[i], (double)out[i]);
        continue;
      }
      double err = fabs((double)out[i] - ref[i]);
      cr_assert(err <= ROPE_TOLERANCE, /* a NaN err fails too */
                "%s: %s token %u head %u dim %u = %.9g, want %.17g (error %.3g)", label, which,
                v / per_token, v % per_token, d, (double)out[i], ref[i], err);
      max_err = fmax(max_err, err);
    }
  size_t guard = first_changed_guard(out, (size_t)vectors * p->head_dim);
  cr_assert_eq(guard, GUARD_FLOATS, "%s: %s: wrote guard float %zu past the m tokens", label, which,
               guard);
  return max_err;
}

typedef struct rope_buffers {
  ptxq_dev q, k, positions, freq_factors;
  size_t q_floats, k_floats; /* for MAX_M tokens */
} rope_buffers;

/* Uploads the first m tokens of q and k (guards after them), runs RoPE with
 * the device positions already in b->positions or with host_positions, and
 * downloads the results. */
static void rope_run(ptxq_ctx *ctx, const char *label, const rope_buffers *b,
                     const ptxq_rope_params *p, uint32_t m, const float *q, const float *k,
                     int32_t *host_positions, float *q_out, float *k_out) {
  size_t q_count = (size_t)m * p->heads * p->head_dim, k_count = (size_t)m * p->kv_heads * p->head_dim;
  upload_guarded(ctx, b->q, q, q_count);
  upload_guarded(ctx, b->k, k, k_count);
  int status;
  if (host_positions == NULL) {
    status = ptxq_rope(ctx, b->q, b->k, b->positions, m, p);
  } else {
    status = ptxq_rope_host_positions(ctx, b->q, b->k, host_positions, m, p);
    /* The caller may reuse its array as soon as the call returns. */
    memset(host_positions, 0x5A, m * sizeof *host_positions);
  }
  cr_assert_eq(status, PTXQ_OK, "%s: %s", label, ptxq_last_error(ctx));
  download(ctx, q_out, b->q, (q_count + GUARD_FLOATS) * sizeof(float));
  download(ctx, k_out, b->k, (k_count + GUARD_FLOATS) * sizeof(float));
}

ParameterizedTestParameters(gpu, rope_matches_reference) {
  return cr_make_param_array(rope_case, rope_cases, ROPE_CASES);
}

ParameterizedTest(rope_case *c, gpu, rope_matches_reference) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  char name[160];
  describe_case(c, name, sizeof name);
  ptxq_rope_params p = rope_params_of(c);

  rope_buffers b = {0};
  b.q_floats = (size_t)MAX_M * c->heads * c->head_dim;
  b.k_floats = (size_t)MAX_M * c->kv_heads * c->head_dim;
  b.q = device_alloc(ctx, (b.q_floats + GUARD_FLOATS) * sizeof(float));
  b.k = device_alloc(ctx, (b.k_floats + GUARD_FLOATS) * sizeof(float));
  b.positions = device_alloc(ctx, MAX_M * sizeof(int32_t));
  float freq_factors[PTXGEN_ROPE_MAX_HEAD_DIM / 2];
  if (c->freq_factors) {
    for (uint32_t i = 0; i < c->n_dims / 2; i++) freq_factors[i] = rng_uniform(&r, 1.0f, 8.0f);
    b.freq_factors = device_alloc(ctx, c->n_dims / 2 * sizeof(float));
    upload(ctx, b.freq_factors, freq_factors, c->n_dims / 2 * sizeof(float));
    p.freq_factors = b.freq_factors;
  }
  const float *ff_host = c->freq_factors ? freq_factors : NULL;

  float *q = checked_malloc(b.q_floats * sizeof *q), *k = checked_malloc(b.k_floats * sizeof *k);
  for (size_t i = 0; i < b.q_floats; i++) q[i] = rng_uniform(&r, -1.0f, 1.0f);
  for (size_t i = 0; i < b.k_floats; i++) k[i] = rng_uniform(&r, -1.0f, 1.0f);
  double *q_ref = checked_malloc(b.q_floats * sizeof *q_ref);
  double *k_ref = checked_malloc(b.k_floats * sizeof *k_ref);
  size_t q_bytes = (b.q_floats + GUARD_FLOATS) * sizeof(float);
  size_t k_bytes = (b.k_floats + GUARD_FLOATS) * sizeof(float);
  float *q_dev = checked_malloc(q_bytes), *k_dev = checked_malloc(k_bytes);
  float *q_host = checked_malloc(q_bytes), *k_host = checked_malloc(k_bytes);
  double max_err = 0.0;

  for (uint32_t m = 1; m <= MAX_M; m++) {
    char label[320];
    int32_t pos[MAX_M], host_pos[MAX_M];
    random_positions(&r, pos, m);
    snprintf(label, sizeof label, "seed %llu %s m=%u positions[0]=%d", (unsigned long long)seed,
             name, m, pos[0]);
    int status = ptxq_ref_rope(&p, ff_host, pos, m, q, k, q_ref, k_ref);
    cr_assert_eq(status, PTXQ_OK, "%s: ptxq_ref_rope: %s", label, ptxq_strerror(status));
    size_t q_count = (size_t)m * c->heads * c->head_dim;
    size_t k_count = (size_t)m * c->kv_heads * c->head_dim;

    /* Positions from device memory. */
    upload(ctx, b.positions, pos, m * sizeof(int32_t));
    rope_run(ctx, label, &b, &p, m, q, k, NULL, q_dev, k_dev);
    max_err = fmax(max_err, check_rope_buffer(label, "q", q_dev, q_ref, q, m * c->heads, c->heads, &p));
    max_err = fmax(max_err, check_rope_buffer(label, "k", k_dev, k_ref, k, m * c->kv_heads,
                                              c->kv_heads, &p));

    /* The same positions from the host: the same bits. */
    memcpy(host_pos, pos, sizeof pos);
    rope_run(ctx, label, &b, &p, m, q, k, host_pos, q_host, k_host);
    cr_assert(memcmp(q_host, q_dev, (q_count + GUARD_FLOATS) * sizeof(float)) == 0,
              "%s: q from ptxq_rope_host_positions differs from ptxq_rope", label);
    cr_assert(memcmp(k_host, k_dev, (k_count + GUARD_FLOATS) * sizeof(float)) == 0,
              "%s: k from ptxq_rope_host_positions differs from ptxq_rope", label);

    /* Replay: the same call after the positions buffer was rewritten. */
    random_positions(&r, pos, m);
    snprintf(label, sizeof label, "seed %llu %s m=%u, replayed with positions[0]=%d",
             (unsigned long long)seed, name, m, pos[0]);
    cr_assert_eq(ptxq_ref_rope(&p, ff_host, pos, m, q, k, q_ref, k_ref), PTXQ_OK);
    upload(ctx, b.positions, pos, m * sizeof(int32_t));
    rope_run(ctx, label, &b, &p, m, q, k, NULL, q_dev, k_dev);
    max_err = fmax(max_err, check_rope_buffer(label, "q", q_dev, q_ref, q, m * c->heads, c->heads, &p));
    max_err = fmax(max_err, check_rope_buffer(label, "k", k_dev, k_ref, k, m * c->kv_heads,
                                              c->kv_heads, &p));
  }
  cr_log_info("rope %s: max abs error %.3g over m = 1..%u (seed %llu)", name, max_err, MAX_M,
              (unsigned long long)seed);
  free(q);
  free(k);
  free(q_ref);
  free(k_ref);
  free(q_dev);
  free(k_dev);
  free(q_host);
  free(k_host);
  ptxq_close(ctx);
}

/* Two host-position calls back to back, the host array rewritten between
 * them and no wait: each rotation must use its own positions (the context
 * buffer is reused in stream order). */
Test(gpu, rope_host_positions_in_stream_order) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t heads = 4, head_dim = 64, m = 5;
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, head_dim, heads, heads);
  size_t count = (size_t)m * heads * head_dim, bytes = count * sizeof(float);
  float *in = checked_malloc(bytes), *out = checked_malloc(bytes);
  for (size_t i = 0; i < count; i++) in[i] = rng_uniform(&r, -1.0f, 1.0f);
  double *q_ref = checked_malloc(count * sizeof *q_ref), *k_ref = checked_malloc(count * sizeof *k_ref);
  ptxq_dev q[2], k[2];
  int32_t pos[2][MAX_M], host[MAX_M];
  for (int call = 0; call < 2; call++) {
    q[call] = device_alloc(ctx, bytes);
    k[call] = device_alloc(ctx, bytes);
    upload(ctx, q[call], in, bytes);
    upload(ctx, k[call], in, bytes);
    random_positions(&r, pos[call], m);
  }
  for (int call = 0; call < 2; call++) {
    memcpy(host, pos[call], sizeof host);
    cr_assert_eq(ptxq_rope_host_positions(ctx, q[call], k[call], host, m, &p), PTXQ_OK, "%s",
                 ptxq_last_error(ctx));
  }
  for (int call = 0; call < 2; call++) {
    cr_assert_eq(ptxq_ref_rope(&p, NULL, pos[call], m, in, in, q_ref, k_ref), PTXQ_OK);
    download(ctx, out, q[call], bytes);
    for (size_t i = 0; i < count; i++)
      cr_assert(fabs((double)out[i] - q_ref[i]) <= ROPE_TOLERANCE,
                "seed %llu call %d: q[%zu] = %.9g, want %.17g", (unsigned long long)seed, call, i,
                (double)out[i], q_ref[i]);
    download(ctx, out, k[call], bytes);
    for (size_t i = 0; i < count; i++)
      cr_assert(fabs((double)out[i] - k_ref[i]) <= ROPE_TOLERANCE,
                "seed %llu call %d: k[%zu] = %.9g, want %.17g", (unsigned long long)seed, call, i,
                (double)out[i], k_ref[i]);
  }
  free(in);
  free(out);
  free(q_ref);
  free(k_ref);
  ptxq_close(ctx);
}

/* ---- bad arguments ------------------------------------------------------------ */

Test(gpu, activations_reject_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  const uint32_t n = 64, m = 2;
  ptxq_dev x = device_alloc(ctx, 4096), up = device_alloc(ctx, 4096), y = device_alloc(ctx, 4096);
  rng r = {fresh_seed()};
  float *fill = random_floats(&r, 1024); /* inputs written: initcheck reads what kernels read */
  upload(ctx, x, fill, 4096);
  upload(ctx, up, fill, 4096);
  free(fill);

  EXPECT_FAIL(NULL, ptxq_gelu(NULL, x, y, n, m), PTXQ_ERR_INVALID, "ctx is NULL");
  EXPECT_FAIL(ctx, ptxq_gelu(ctx, x, y, 0, m), PTXQ_ERR_INVALID, "n=0");
  EXPECT_FAIL(ctx, ptxq_silu(ctx, x, y, PTXGEN_ACT_MAX_N + 1, m), PTXQ_ERR_INVALID, "n=1048577");
  EXPECT_FAIL(ctx, ptxq_gelu_erf(ctx, x, y, n, 0), PTXQ_ERR_INVALID, "m=0");
  EXPECT_FAIL(ctx, ptxq_swiglu(ctx, x, up, y, n, 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_geglu(ctx, x, up, y, n, 17), PTXQ_ERR_INVALID, "ptxq_geglu");
  EXPECT_FAIL(ctx, ptxq_gelu(ctx, 0, y, n, m), PTXQ_ERR_INVALID, "x is a null");
  EXPECT_FAIL(ctx, ptxq_gelu(ctx, x, 0, n, m), PTXQ_ERR_INVALID, "y is a null");
  EXPECT_FAIL(ctx, ptxq_swiglu(ctx, x, 0, y, n, m), PTXQ_ERR_INVALID, "up is a null");
  EXPECT_FAIL(ctx, ptxq_silu(ctx, x + 4, y, n, m), PTXQ_ERR_INVALID, "16-byte aligned");
  EXPECT_FAIL(ctx, ptxq_silu(ctx, x, y + 8, n, m), PTXQ_ERR_INVALID, "16-byte aligned");
  EXPECT_FAIL(ctx, ptxq_swiglu(ctx, x, up + 12, y, n, m), PTXQ_ERR_INVALID, "up=");
  /* Partly overlapping output: one thread would clobber another's input. */
  EXPECT_FAIL(ctx, ptxq_gelu(ctx, x, x + 16, n, m), PTXQ_ERR_INVALID, "partly overlaps x");
  EXPECT_FAIL(ctx, ptxq_swiglu(ctx, x, up, up + 16, n, m), PTXQ_ERR_INVALID, "partly overlaps up");
  EXPECT_FAIL(ctx, ptxq_geglu(ctx, x, x + 32, x, n, m), PTXQ_ERR_INVALID, "partly overlaps up");

  /* After all that, a valid call still runs and the stream is healthy. */
  cr_assert_eq(ptxq_silu(ctx, x, y, n, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_swiglu(ctx, x, x, x, n, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK, "%s", ptxq_last_error(ctx));
  ptxq_close(ctx);
}

Test(gpu, rope_rejects_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_dev q = device_alloc(ctx, 1 << 20), k = device_alloc(ctx, 1 << 20);
  ptxq_dev pos = device_alloc(ctx, 64), ff = device_alloc(ctx, 1024);
  int32_t host_pos[MAX_M] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};
  float ones[64];
  for (int i = 0; i < 64; i++) ones[i] = 1.0f;
  upload(ctx, ff, ones, sizeof ones);
  /* every input written, so that initcheck sees no read of unwritten memory */
  float *qk = checked_malloc(1 << 20);
  for (size_t i = 0; i < (1 << 20) / sizeof(float); i++) qk[i] = 0.5f;
  upload(ctx, q, qk, 1 << 20);
  upload(ctx, k, qk, 1 << 20);
  free(qk);
  upload(ctx, pos, host_pos, sizeof host_pos);
  ptxq_rope_params good, p;
  ptxq_rope_params_init(&good, PTXQ_ROPE_NEOX, 128, 32, 8);

  EXPECT_FAIL(NULL, ptxq_rope(NULL, q, k, pos, 1, &good), PTXQ_ERR_INVALID, "ctx is NULL");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, NULL), PTXQ_ERR_INVALID, "params is NULL");
  EXPECT_FAIL(ctx, ptxq_rope_host_positions(ctx, q, k, host_pos, 1, NULL), PTXQ_ERR_INVALID,
              "params is NULL");
  p = good;
  p.head_dim = 127;
  p.n_dims = 126;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "ptxq_rope: head_dim=127");
  p = good;
  p.n_dims = 256;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "n_dims=256");
  p = good;
  p.n_dims = 63;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "n_dims=63");
  p = good;
  p.kv_heads = 5;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "kv_heads=5");
  p = good;
  p.kv_heads = 0;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "kv_heads=0");
  p = good;
  p.heads = 0;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "heads=0");
  p = good;
  p.mode = (ptxq_rope_mode)1;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "mode=1");
  p = good;
  p.base = 1.0f;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "base=1");
  p = good;
  p.freq_scale = NAN;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "freq_scale=");
  p = good;
  p.ext_factor = 1.0f; /* YaRN without the original context length */
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "n_ctx_orig");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 0, &good), PTXQ_ERR_INVALID, "m=0");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 17, &good), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_rope_host_positions(ctx, q, k, host_pos, 0, &good), PTXQ_ERR_INVALID, "m=0");
  EXPECT_FAIL(ctx, ptxq_rope_host_positions(ctx, q, k, host_pos, 17, &good), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_rope_host_positions(ctx, q, k, NULL, 1, &good), PTXQ_ERR_INVALID,
              "positions is NULL");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, 0, k, pos, 1, &good), PTXQ_ERR_INVALID, "q is a null");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, 0, pos, 1, &good), PTXQ_ERR_INVALID, "k is a null");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, 0, 1, &good), PTXQ_ERR_INVALID, "positions is a null");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q + 8, k, pos, 1, &good), PTXQ_ERR_INVALID, "16-byte aligned");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k + 4, pos, 1, &good), PTXQ_ERR_INVALID, "16-byte aligned");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos + 2, 1, &good), PTXQ_ERR_INVALID, "4-byte aligned");
  p = good;
  p.freq_factors = ff + 2;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "freq_factors=");
  /* Buffers that share bytes with what the kernel rewrites. */
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, q, pos, 1, &good), PTXQ_ERR_INVALID, "overlaps q");
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, k + 256, 1, &good), PTXQ_ERR_INVALID, "overlaps k");
  p = good;
  p.freq_factors = q + 1024;
  EXPECT_FAIL(ctx, ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_ERR_INVALID, "overlaps q");

  /* After all that, a valid call still runs and the stream is healthy. */
  cr_assert_eq(ptxq_rope(ctx, q, k, pos, 1, &good), PTXQ_OK, "%s", ptxq_last_error(ctx));
  p = good;
  p.freq_factors = ff;
  cr_assert_eq(ptxq_rope_host_positions(ctx, q, k, host_pos, MAX_M, &p), PTXQ_OK, "%s",
               ptxq_last_error(ctx)); /* the context's positions buffer holds MAX_M */
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK, "%s", ptxq_last_error(ctx));
  ptxq_close(ctx);
}

/* ---- the op cache ---------------------------------------------------------------- */

/* More distinct specs than the cache has slots, revisited: every call must
 * run its own kernel. Specs differing in one float (base, freq_scale) must
 * not be confused either. */
Test(gpu, op_cache_keeps_specs_apart) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  enum { SPECS = 24, ROUNDS = 3 };
  const size_t max_count = (size_t)SPECS * MAX_M;
  float *x = checked_malloc(max_count * sizeof *x), *y = checked_malloc(max_count * sizeof *y);
  double *ref = checked_malloc(max_count * sizeof *ref);
  for (size_t i = 0; i < max_count; i++) x[i] = rng_uniform(&r, -6.0f, 6.0f);
  ptxq_dev dx = device_alloc(ctx, max_count * sizeof(float));
  ptxq_dev dy = device_alloc(ctx, (max_count + GUARD_FLOATS) * sizeof(float));
  upload(ctx, dx, x, max_count * sizeof(float));
  act_stats st = {0};
  for (int round = 0; round < ROUNDS; round++)
    for (uint32_t s = 0; s < SPECS; s++) {
      int kind = (int)(s % 3); /* gelu, gelu_erf, silu */
      uint32_t n = s + 1, m = s % MAX_M + 1;
      size_t count = (size_t)n * m;
      upload_guarded(ctx, dy, NULL, count);
      cr_assert_eq(act_run(ctx, kind, dx, 0, dy, n, m), PTXQ_OK, "%s n=%u m=%u: %s",
                   act_names[kind], n, m, ptxq_last_error(ctx));
      download(ctx, y, dy, count * sizeof(float));
      act_reference(kind, x, NULL, ref, count);
      for (size_t i = 0; i < count; i++)
        cr_assert(act_value_ok(y[i], ref[i], x[i], 0.0f, &st),
                  "seed %llu round %d %s n=%u m=%u: y[%zu] = %.9g, want %.17g",
                  (unsigned long long)seed, round, act_names[kind], n, m, i, (double)y[i], ref[i]);
    }

  /* RoPE: three specs of one shape that differ only in a float. */
  const uint32_t heads = 2, head_dim = 16, m = 3;
  size_t count = (size_t)m * heads * head_dim, bytes = count * sizeof(float);
  ptxq_rope_params p[3];
  for (int i = 0; i < 3; i++) ptxq_rope_params_init(&p[i], PTXQ_ROPE_NORMAL, head_dim, heads, heads);
  p[1].base = 500000.0f;
  p[2].freq_scale = 0.5f;
  int32_t pos[MAX_M] = {1000, 77777, 5};
  float *in = checked_malloc(bytes), *out = checked_malloc(bytes);
  double *q_ref = checked_malloc(count * sizeof *q_ref), *k_ref = checked_malloc(count * sizeof *k_ref);
  for (size_t i = 0; i < count; i++) in[i] = rng_uniform(&r, -1.0f, 1.0f);
  ptxq_dev q = device_alloc(ctx, bytes), k = device_alloc(ctx, bytes);
  for (int round = 0; round < ROUNDS; round++)
    for (int i = 0; i < 3; i++) {
      upload(ctx, q, in, bytes);
      upload(ctx, k, in, bytes);
      cr_assert_eq(ptxq_rope_host_positions(ctx, q, k, pos, m, &p[i]), PTXQ_OK, "%s",
                   ptxq_last_error(ctx));
      download(ctx, out, q, bytes);
      cr_assert_eq(ptxq_ref_rope(&p[i], NULL, pos, m, in, in, q_ref, k_ref), PTXQ_OK);
      for (size_t j = 0; j < count; j++)
        cr_assert(fabs((double)out[j] - q_ref[j]) <= ROPE_TOLERANCE,
                  "seed %llu round %d spec %d: q[%zu] = %.9g, want %.17g",
                  (unsigned long long)seed, round, i, j, (double)out[j], q_ref[j]);
    }
  free(x);
  free(y);
  free(ref);
  free(in);
  free(out);
  free(q_ref);
  free(k_ref);
  ptxq_close(ctx);
}

/* ---- several threads, one context -------------------------------------------------- */

typedef struct rope_worker {
  ptxq_ctx *ctx;
  const ptxq_rope_params *p;
  const float *in;
  const float *expected; /* q rotated by this worker's positions, computed alone */
  int32_t positions[MAX_M];
  uint32_t m;
  size_t count;
  int failures;
  char message[256];
} rope_worker;

/* Repeats host-position RoPE on its own buffers: the copy of its positions
 * and its launch must never interleave with another thread's. */
static void *run_rope_worker(void *arg) {
  rope_worker *wk = arg;
  size_t bytes = wk->count * sizeof(float);
  float *out = malloc(bytes);
  ptxq_dev q = 0, k = 0;
  if (out == NULL || ptxq_alloc(wk->ctx, bytes, &q) != PTXQ_OK ||
      ptxq_alloc(wk->ctx, bytes, &k) != PTXQ_OK) {
    snprintf(wk->message, sizeof wk->message, "set-up failed: %s", ptxq_last_error(wk->ctx));
    wk->failures++;
    free(out);
    return NULL;
  }
  for (int iteration = 0; iteration < 20 && wk->failures == 0; iteration++) {
    int32_t pos[MAX_M];
    memcpy(pos, wk->positions, sizeof pos);
    int status = ptxq_upload(wk->ctx, q, wk->in, bytes);
    if (status == PTXQ_OK) status = ptxq_upload(wk->ctx, k, wk->in, bytes);
    if (status == PTXQ_OK) status = ptxq_rope_host_positions(wk->ctx, q, k, pos, wk->m, wk->p);
    if (status == PTXQ_OK) status = ptxq_download(wk->ctx, out, q, bytes);
    if (status != PTXQ_OK) {
      snprintf(wk->message, sizeof wk->message, "iteration %d: %s", iteration,
               ptxq_last_error(wk->ctx));
      wk->failures++;
    } else if (memcmp(out, wk->expected, bytes) != 0) {
      snprintf(wk->message, sizeof wk->message,
               "iteration %d: rotated with positions other than its own", iteration);
      wk->failures++;
    }
  }
  free(out);
  return NULL;
}

Test(gpu, threads_share_rope_host_positions) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  enum { THREADS = 6 };
  const uint32_t heads = 8, head_dim = 64, m = 4;
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, head_dim, heads, heads);
  size_t count = (size_t)m * heads * head_dim, bytes = count * sizeof(float);
  float *in = checked_malloc(bytes);
  for (size_t i = 0; i < count; i++) in[i] = rng_uniform(&r, -1.0f, 1.0f);
  ptxq_dev q = device_alloc(ctx, bytes), k = device_alloc(ctx, bytes);

  ptxq_dev dpos = device_alloc(ctx, MAX_M * sizeof(int32_t));

  /* Each worker's expected result, computed before any thread starts. */
  rope_worker workers[THREADS];
  float *expected[THREADS];
  for (int t = 0; t < THREADS; t++) {
    workers[t] = (rope_worker){.ctx = ctx, .p = &p, .in = in, .m = m, .count = count};
    random_positions(&r, workers[t].positions, m);
    expected[t] = checked_malloc(bytes);
    upload(ctx, q, in, bytes);
    upload(ctx, k, in, bytes);
    upload(ctx, dpos, workers[t].positions, m * sizeof(int32_t));
    cr_assert_eq(ptxq_rope(ctx, q, k, dpos, m, &p), PTXQ_OK, "%s", ptxq_last_error(ctx));
    download(ctx, expected[t], q, bytes);
    workers[t].expected = expected[t];
  }
  pthread_t threads[THREADS];
  for (int t = 0; t < THREADS; t++)
    cr_assert_eq(pthread_create(&threads[t], NULL, run_rope_worker, &workers[t]), 0);
  for (int t = 0; t < THREADS; t++) cr_assert_eq(pthread_join(threads[t], NULL), 0);
  for (int t = 0; t < THREADS; t++) {
    cr_assert_eq(workers[t].failures, 0, "seed %llu thread %d: %s", (unsigned long long)seed, t,
                 workers[t].message);
    free(expected[t]);
  }
  free(in);
  ptxq_close(ctx);
}

/* ---- overhead ------------------------------------------------------------------------- */

static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Host time per enqueued op (cuLaunchKernel included), against the
 * by-key path that parses, formats and hashes a key on every call. Only
 * reported; the GPU work is tiny so the queue does not fill. */
Test(gpu, op_call_overhead) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_device_info info;
  cr_assert_eq(ptxq_device_info_get(ctx, &info), PTXQ_OK);
  enum { CALLS = 2000 };
  ptxq_dev x = device_alloc(ctx, 4096), y = device_alloc(ctx, 4096);
  ptxq_dev q = device_alloc(ctx, 4096), k = device_alloc(ctx, 4096), pos = device_alloc(ctx, 64);
  cr_assert_eq(ptxq_upload(ctx, pos, (int32_t[]){7}, sizeof(int32_t)), PTXQ_OK);
  float ones[1024]; /* inputs written: initcheck sees every read */
  for (int i = 0; i < 1024; i++) ones[i] = 1.0f;
  cr_assert_eq(ptxq_upload(ctx, x, ones, sizeof ones), PTXQ_OK);
  cr_assert_eq(ptxq_upload(ctx, q, ones, sizeof ones), PTXQ_OK);
  cr_assert_eq(ptxq_upload(ctx, k, ones, sizeof ones), PTXQ_OK);
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 64, 2, 2);
  char key[128];
  snprintf(key, sizeof key, "silu:n=256,m=1,sm=%u", info.target_sm);
  uint64_t px = x, py = y;
  void *params[] = {&px, &py};
  /* Warm up: build the kernels. */
  cr_assert_eq(ptxq_silu(ctx, x, y, 256, 1), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_kernel_launch(ctx, key, params), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK);

  double t0 = seconds_now();
  for (int i = 0; i < CALLS; i++) cr_assert_eq(ptxq_silu(ctx, x, y, 256, 1), PTXQ_OK);
  double t1 = seconds_now();
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK);
  double t2 = seconds_now();
  for (int i = 0; i < CALLS; i++) cr_assert_eq(ptxq_kernel_launch(ctx, key, params), PTXQ_OK);
  double t3 = seconds_now();
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK);
  double t4 = seconds_now();
  for (int i = 0; i < CALLS; i++) cr_assert_eq(ptxq_rope(ctx, q, k, pos, 1, &p), PTXQ_OK);
  double t5 = seconds_now();
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK);
  cr_log_info("host time per call, %d calls: ptxq_silu %.2f us, ptxq_kernel_launch(\"%s\") %.2f us, "
              "ptxq_rope %.2f us",
              CALLS, (t1 - t0) * 1e6 / CALLS, key, (t3 - t2) * 1e6 / CALLS, (t5 - t4) * 1e6 / CALLS);
  ptxq_close(ctx);
}
