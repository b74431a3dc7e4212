/*
 * test_ref_ops.c: tests of the CPU reference activations (src/ref/act.c)
 * and RoPE (src/ref/rope.c), suite "unit".
 *
 * These references define what the activation and RoPE kernels must
 * compute, so they are held to evidence made outside them:
 *  - constants computed with Python 3.11's math module from the literal
 *    formulas (the script is quoted next to each table), for the
 *    activations, hand-sized RoPE cases and a YaRN case;
 *  - identities that hold whatever the implementation: other closed forms
 *    of the same functions, position 0 is the identity, rotation keeps pair
 *    norms, freq_factors and freq_scale act as exact rescalings of the
 *    position;
 *  - a literal re-computation of RoPE written here (theta_interp and
 *    theta_extrap blended as llama.cpp writes it, not the factored form
 *    src/ref/rope.c uses) on random data, odd shapes and GQA layouts;
 *  - every invalid argument on its own, with the outputs left untouched.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ptxq.h"
#include "rng.h"

/* Shared by src/ref/rope.c with the GPU generator (not in a public header). */
void ptxq__rope_pair_constants(const ptxq_rope_params *p, uint32_t i, double *freq, double *mscale);

/* ---- helpers ------------------------------------------------------------ */

static void fill_gauss(rng *r, float *x, size_t count, double scale) {
  for (size_t i = 0; i < count; i++)
    x[i] = (float)(scale * rng_gauss(r));
}

static int32_t rng_position(rng *r, int32_t limit) {
  return (int32_t)(rng_next(r) % (uint64_t)(2 * (int64_t)limit + 1)) - limit;
}

static void *checked_calloc(size_t count, size_t size) {
  void *p = calloc(count, size);
  cr_assert_not_null(p, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

/* |got - want| <= tol; NaN == NaN, inf == inf of the same sign. */
static void assert_close(double got, double want, double tol, const char *what, size_t index) {
  if (isnan(want)) {
    cr_assert(isnan(got), "%s[%zu] = %.17g, expected NaN", what, index, got);
    return;
  }
  if (isinf(want)) {
    cr_assert_eq(got, want, "%s[%zu] = %.17g, expected %.17g", what, index, got, want);
    return;
  }
  cr_assert(fabs(got - want) <= tol, "%s[%zu] = %.17g, expected %.17g (diff %.3g > tol %.3g)", what,
            index, got, want, fabs(got - want), tol);
}

/* ---- activations ------------------------------------------------------- */

typedef struct act_case {
  ptxq_act act;
  float x;
  double y;
} act_case;

/* From Python 3.11:
 *   silu(x) = x/(1+math.exp(-x))
 *   gelu(x) = 0.5*x*(1+math.tanh(0.7978845608028654*(x+0.044715*x*x*x)))
 *   gelu_erf(x) = 0.5*x*(1+math.erf(x/math.sqrt(2)))
 * printed with repr() for x in 0, 1, -1, 0.5, 2.5, -3, 6. */
static const act_case act_cases[] = {
    {PTXQ_ACT_SILU, 0.0f, 0.0},
    {PTXQ_ACT_SILU, 1.0f, 0.7310585786300049},
    {PTXQ_ACT_SILU, -1.0f, -0.2689414213699951},
    {PTXQ_ACT_SILU, 0.5f, 0.3112296656009273},
    {PTXQ_ACT_SILU, 2.5f, 2.3103545499468914},
    {PTXQ_ACT_SILU, -3.0f, -0.14227761953270035},
    {PTXQ_ACT_SILU, 6.0f, 5.985164261060192},
    {PTXQ_ACT_GELU, 0.0f, 0.0},
    {PTXQ_ACT_GELU, 1.0f, 0.8411919906082768},
    {PTXQ_ACT_GELU, -1.0f, -0.15880800939172324},
    {PTXQ_ACT_GELU, 0.5f, 0.34571400982514394},
    {PTXQ_ACT_GELU, 2.5f, 2.484915733910001},
    {PTXQ_ACT_GELU, -3.0f, -0.0036373920817729943},
    {PTXQ_ACT_GELU, 6.0f, 5.9999999999156035},
    {PTXQ_ACT_GELU_ERF, 0.0f, 0.0},
    {PTXQ_ACT_GELU_ERF, 1.0f, 0.8413447460685429},
    {PTXQ_ACT_GELU_ERF, -1.0f, -0.15865525393145707},
    {PTXQ_ACT_GELU_ERF, 0.5f, 0.34573123063700656},
    {PTXQ_ACT_GELU_ERF, 2.5f, 2.4844758366855597},
    {PTXQ_ACT_GELU_ERF, -3.0f, -0.00404969409489031},
    {PTXQ_ACT_GELU_ERF, 6.0f, 5.999999994080474},
};

Test(act, hand_checked_values) {
  for (size_t c = 0; c < sizeof act_cases / sizeof act_cases[0]; c++) {
    double y = -123.0;
    cr_assert_eq(ptxq_ref_act(act_cases[c].act, &act_cases[c].x, &y, 1), PTXQ_OK);
    /* Python and C call the same kind of libm; allow a few ulps. */
    assert_close(y, act_cases[c].y, 4e-16 * fabs(act_cases[c].y), "act case", c);
  }
}

Test(act, infinities_and_nan_follow_the_formula) {
  const float in[3] = {-INFINITY, INFINITY, NAN};
  const ptxq_act acts[3] = {PTXQ_ACT_GELU, PTXQ_ACT_GELU_ERF, PTXQ_ACT_SILU};
  for (size_t a = 0; a < 3; a++) {
    double y[3];
    cr_assert_eq(ptxq_ref_act(acts[a], in, y, 3), PTXQ_OK);
    /* -inf: -inf * (1 + -1) = -inf * 0 (GELU), -inf / inf (SiLU): NaN. */
    cr_assert(isnan(y[0]), "act %d at -inf gave %g, expected NaN", (int)acts[a], y[0]);
    cr_assert(isinf(y[1]) && y[1] > 0, "act %d at +inf gave %g, expected +inf", (int)acts[a], y[1]);
    cr_assert(isnan(y[2]), "act %d at NaN gave %g, expected NaN", (int)acts[a], y[2]);
  }
  /* Far out but finite, the formula underflows to a (negative) zero, not NaN. */
  const float far[2] = {-1000.0f, 1000.0f};
  double y[2];
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_SILU, far, y, 2), PTXQ_OK);
  cr_assert(y[0] == 0.0 && y[1] == 1000.0, "silu(-1000) = %g, silu(1000) = %g", y[0], y[1]);
}

/* The same functions in other closed forms, equal in exact arithmetic:
 * 0.5*(1 + tanh(z)) = 1/(1 + e^-2z), 1 + erf(z) = erfc(-z),
 * 1/(1 + e^-x) = 0.5*(1 + tanh(x/2)). */
static double gelu_by_sigmoid(double x) {
  return x / (1.0 + exp(-2.0 * 0.7978845608028654 * (x + 0.044715 * x * x * x)));
}
static double gelu_erf_by_erfc(double x) { return 0.5 * x * erfc(-x * 0.7071067811865476); }
static double silu_by_tanh(double x) { return x * 0.5 * (1.0 + tanh(0.5 * x)); }

Test(act, matches_other_closed_forms_on_random_data) {
  enum { count = 1001 };
  float *x = checked_calloc(count, sizeof *x);
  double *y = checked_calloc(count, sizeof *y);
  rng r = {42};
  fill_gauss(&r, x, count, 4.0);
  x[0] = 30.0f;
  x[1] = -30.0f;
  x[2] = 1e-30f;
  x[3] = -1e-30f;
  const struct {
    ptxq_act act;
    double (*other)(double);
  } forms[] = {{PTXQ_ACT_GELU, gelu_by_sigmoid},
               {PTXQ_ACT_GELU_ERF, gelu_erf_by_erfc},
               {PTXQ_ACT_SILU, silu_by_tanh}};
  for (size_t f = 0; f < 3; f++) {
    cr_assert_eq(ptxq_ref_act(forms[f].act, x, y, count), PTXQ_OK);
    for (size_t i = 0; i < count; i++) {
      double want = forms[f].other((double)x[i]);
      /* The literal forms cancel in 1 + tanh / 1 + erf for negative x: an
       * absolute error of a few ulps of |x| on top of a relative one. */
      assert_close(y[i], want, 1e-14 * fabs(want) + 1e-15 * fabs((double)x[i]), "act", i);
    }
  }
  free(x);
  free(y);
}

Test(act, glu_is_activation_of_gate_times_up) {
  enum { count = 777 };
  float *gate = checked_calloc(count, sizeof *gate), *up = checked_calloc(count, sizeof *up);
  double *act = checked_calloc(count, sizeof *act), *y = checked_calloc(count, sizeof *y);
  rng r = {7};
  fill_gauss(&r, gate, count, 3.0);
  fill_gauss(&r, up, count, 2.0);
  const ptxq_act acts[3] = {PTXQ_ACT_SILU, PTXQ_ACT_GELU, PTXQ_ACT_GELU_ERF};
  for (size_t a = 0; a < 3; a++) {
    cr_assert_eq(ptxq_ref_act(acts[a], gate, act, count), PTXQ_OK);
    cr_assert_eq(ptxq_ref_glu(acts[a], gate, up, y, count), PTXQ_OK);
    for (size_t i = 0; i < count; i++)
      cr_assert_eq(y[i], act[i] * (double)up[i], "glu %d [%zu] = %.17g, expected %.17g",
                   (int)acts[a], i, y[i], act[i] * (double)up[i]);
  }
  /* By hand: swiglu(1, 2) = 2*silu(1); geglu(-1, 3) = 3*gelu(-1). */
  const float g[2] = {1.0f, -1.0f}, u[2] = {2.0f, 3.0f};
  double out[2];
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, g, u, out, 1), PTXQ_OK);
  assert_close(out[0], 2.0 * 0.7310585786300049, 1e-15, "swiglu", 0);
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_GELU, g + 1, u + 1, out, 1), PTXQ_OK);
  assert_close(out[0], 3.0 * -0.15880800939172324, 1e-15, "geglu", 0);
  /* An infinite up times a zero activation is NaN, as IEEE says. */
  const float zero = 0.0f, inf = INFINITY;
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, &zero, &inf, out, 1), PTXQ_OK);
  cr_assert(isnan(out[0]), "silu(0) * inf = %g, expected NaN", out[0]);
  free(gate);
  free(up);
  free(act);
  free(y);
}

Test(act, writes_exactly_count_values) {
  float x[5] = {0.25f, -0.5f, 1.5f, 2.0f, -3.0f};
  double y[6];
  for (size_t i = 0; i < 6; i++)
    y[i] = 777.0;
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_SILU, x, y, 5), PTXQ_OK);
  cr_assert_eq(y[5], 777.0, "value past count was overwritten");
  y[3] = 777.0;
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_GELU, x, x, y, 3), PTXQ_OK);
  cr_assert_eq(y[3], 777.0, "glu value past count was overwritten");
}

Test(act, rejects_bad_arguments) {
  float x[2] = {0.5f, -0.5f};
  double y[2] = {777.0, 777.0};
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_SILU, NULL, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_SILU, x, NULL, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_SILU, x, y, 0), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_act((ptxq_act)0, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_act((ptxq_act)4, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_act((ptxq_act)-1, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, NULL, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, x, NULL, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, x, x, NULL, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu(PTXQ_ACT_SILU, x, x, y, 0), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu((ptxq_act)0, x, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_glu((ptxq_act)99, x, x, y, 2), PTXQ_ERR_INVALID);
  cr_assert(y[0] == 777.0 && y[1] == 777.0, "a rejected call wrote its output");
}

/* ---- RoPE: literal re-computation ---------------------------------------- */

/* theta and mscale for pair i at position pos, written the way llama.cpp
 * writes it (theta_interp and theta_extrap blended), independently of
 * src/ref/rope.c's factored form. */
static void literal_angle(const ptxq_rope_params *p, const float *ff, int32_t pos, uint32_t i,
                          double *theta, double *mscale) {
  double nd = p->n_dims, base = p->base;
  double theta_extrap = (double)pos * pow(base, -2.0 * i / nd) / (ff ? (double)ff[i] : 1.0);
  double theta_interp = (double)p->freq_scale * theta_extrap;
  if (p->ext_factor == 0.0f) {
    *theta = theta_interp;
    *mscale = p->attn_factor;
    return;
  }
  const double pi = 3.141592653589793;
  double corr_fast = nd * log(p->n_ctx_orig / (p->beta_fast * 2.0 * pi)) / (2.0 * log(base));
  double corr_slow = nd * log(p->n_ctx_orig / (p->beta_slow * 2.0 * pi)) / (2.0 * log(base));
  double low = floor(corr_fast) < 0.0 ? 0.0 : floor(corr_fast);
  double high = ceil(corr_slow) > nd - 1.0 ? nd - 1.0 : ceil(corr_slow);
  double span = high - low < 0.001 ? 0.001 : high - low;
  double y = (i - low) / span;
  double ramp = 1.0 - (y < 0.0 ? 0.0 : y > 1.0 ? 1.0 : y);
  double mix = ramp * p->ext_factor;
  *theta = theta_interp * (1.0 - mix) + theta_extrap * mix;
  *mscale = p->attn_factor * (1.0 + 0.1 * log(1.0 / p->freq_scale));
}

/* Re-computes one head vector and compares it with the reference's. */
static void check_head_literal(const ptxq_rope_params *p, const float *ff, int32_t pos, const float *x,
                               const double *got, const char *what, size_t head) {
  double want[512];
  for (uint32_t d = 0; d < p->head_dim; d++)
    want[d] = x[d];
  uint32_t half = p->n_dims / 2;
  for (uint32_t i = 0; i < half; i++) {
    double theta, mscale;
    literal_angle(p, ff, pos, i, &theta, &mscale);
    uint32_t ia = p->mode == PTXQ_ROPE_NEOX ? i : 2 * i;
    uint32_t ib = p->mode == PTXQ_ROPE_NEOX ? i + half : 2 * i + 1;
    double c = cos(theta) * mscale, s = sin(theta) * mscale;
    want[ia] = x[ia] * c - x[ib] * s;
    want[ib] = x[ia] * s + x[ib] * c;
  }
  /* The factored and literal thetas differ by a few ulps of theta. */
  double tol = 1e-14 * (1.0 + fabs((double)pos));
  for (uint32_t d = 0; d < p->head_dim; d++) {
    if (d >= p->n_dims)
      cr_assert_eq(got[d], (double)x[d], "%s head %zu dim %u (pass-through) = %.17g, expected %.17g",
                   what, head, d, got[d], (double)x[d]);
    else
      assert_close(got[d], want[d], tol, what, head * p->head_dim + d);
  }
}

/* Runs the reference on random q, k and checks every head of every token
 * against the literal re-computation. */
static void check_rope_literal(const ptxq_rope_params *p, const float *ff, const int32_t *positions,
                               uint32_t m, uint64_t seed) {
  size_t q_count = (size_t)m * p->heads * p->head_dim, k_count = (size_t)m * p->kv_heads * p->head_dim;
  float *q = checked_calloc(q_count, sizeof *q), *k = checked_calloc(k_count, sizeof *k);
  double *q_out = checked_calloc(q_count, sizeof *q_out);
  double *k_out = checked_calloc(k_count, sizeof *k_out);
  rng r = {seed};
  fill_gauss(&r, q, q_count, 1.0);
  fill_gauss(&r, k, k_count, 1.0);
  int status = ptxq_ref_rope(p, ff, positions, m, q, k, q_out, k_out);
  cr_assert_eq(status, PTXQ_OK, "rope mode %d head_dim %u n_dims %u heads %u/%u m %u: status %d",
               (int)p->mode, p->head_dim, p->n_dims, p->heads, p->kv_heads, m, status);
  for (uint32_t t = 0; t < m; t++) {
    for (uint32_t h = 0; h < p->heads; h++) {
      size_t off = ((size_t)t * p->heads + h) * p->head_dim;
      check_head_literal(p, ff, positions[t], q + off, q_out + off, "q", (size_t)t * p->heads + h);
    }
    for (uint32_t h = 0; h < p->kv_heads; h++) {
      size_t off = ((size_t)t * p->kv_heads + h) * p->head_dim;
      check_head_literal(p, ff, positions[t], k + off, k_out + off, "k", (size_t)t * p->kv_heads + h);
    }
  }
  free(q);
  free(k);
  free(q_out);
  free(k_out);
}

/* ---- RoPE -------------------------------------------------------------- */

Test(rope, params_init_sets_the_defaults) {
  ptxq_rope_params p;
  memset(&p, 0xA5, sizeof p);
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 128, 32, 8);
  cr_assert_eq(p.mode, PTXQ_ROPE_NEOX);
  cr_assert_eq(p.head_dim, 128);
  cr_assert_eq(p.n_dims, 128);
  cr_assert_eq(p.heads, 32);
  cr_assert_eq(p.kv_heads, 8);
  cr_assert_eq(p.base, 10000.0f);
  cr_assert_eq(p.freq_scale, 1.0f);
  cr_assert_eq(p.freq_factors, 0);
  cr_assert_eq(p.ext_factor, 0.0f);
  cr_assert_eq(p.attn_factor, 1.0f);
  cr_assert_eq(p.beta_fast, 32.0f);
  cr_assert_eq(p.beta_slow, 1.0f);
  cr_assert_eq(p.n_ctx_orig, 0);
  ptxq_rope_params_init(NULL, PTXQ_ROPE_NORMAL, 64, 1, 1); /* ignored, no crash */
}

Test(rope, position_zero_is_identity_times_attn_factor) {
  const float attn[2] = {1.0f, 0.75f};
  for (int mode = 0; mode <= 2; mode += 2) {
    for (size_t a = 0; a < 2; a++) {
      ptxq_rope_params p;
      ptxq_rope_params_init(&p, (ptxq_rope_mode)mode, 10, 6, 2);
      p.n_dims = 6;
      p.attn_factor = attn[a];
      enum { m = 2, q_count = m * 6 * 10, k_count = m * 2 * 10 };
      float q[q_count], k[k_count];
      double q_out[q_count], k_out[k_count];
      rng r = {100 + a};
      fill_gauss(&r, q, q_count, 1.0);
      fill_gauss(&r, k, k_count, 1.0);
      const int32_t positions[m] = {0, 0};
      cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, m, q, k, q_out, k_out), PTXQ_OK);
      for (size_t i = 0; i < q_count; i++) {
        double want = (size_t)(i % 10) < 6 ? (double)q[i] * attn[a] : (double)q[i];
        cr_assert_eq(q_out[i], want, "mode %d attn %g q[%zu] = %.17g, expected %.17g", mode,
                     (double)attn[a], i, q_out[i], want);
      }
      for (size_t i = 0; i < k_count; i++) {
        double want = (size_t)(i % 10) < 6 ? (double)k[i] * attn[a] : (double)k[i];
        cr_assert_eq(k_out[i], want, "mode %d attn %g k[%zu] = %.17g, expected %.17g", mode,
                     (double)attn[a], i, k_out[i], want);
      }
    }
  }
}

/* Python 3.11 (same script as the YaRN case below, without YaRN):
 *   theta_i = pos * base**(-2*i/n_dims); c, s = math.cos(theta_i), math.sin(theta_i)
 *   (a, b) -> (a*c - b*s, a*s + b*c), pairs (2i, 2i+1) normal, (i, i+n_dims/2) neox
 * position 3, base 10000, head_dim 4 = n_dims: theta_0 = 3, theta_1 = 0.03. */
Test(rope, hand_computed_head_dim_4) {
  static const float q[4] = {1.0f, 2.0f, 3.0f, 4.0f}, k[4] = {-0.5f, 0.25f, 1.5f, -2.0f};
  static const double want_q[2][4] = {
      {-1.27223251272018, -1.8388649851410237, 2.87866810043698, 4.088186635603437},
      {-1.413352520780047, 1.8791180666879925, -2.828857481741469, 4.058191135400942}};
  static const double want_k[2][4] = {
      {0.4597162462852559, -0.318058128180045, 1.5593160510284725, -1.9541068171942315},
      {0.2833162362104219, 0.3098785088422382, -1.555548748930602, -1.9916011924473511}};
  const int32_t pos = 3;
  for (int mi = 0; mi < 2; mi++) {
    ptxq_rope_params p;
    ptxq_rope_params_init(&p, mi == 0 ? PTXQ_ROPE_NORMAL : PTXQ_ROPE_NEOX, 4, 1, 1);
    double q_out[4], k_out[4];
    cr_assert_eq(ptxq_ref_rope(&p, NULL, &pos, 1, q, k, q_out, k_out), PTXQ_OK);
    for (size_t d = 0; d < 4; d++) {
      assert_close(q_out[d], want_q[mi][d], 1e-14, mi == 0 ? "normal q" : "neox q", d);
      assert_close(k_out[d], want_k[mi][d], 1e-14, mi == 0 ? "normal k" : "neox k", d);
    }
  }
}

/* head_dim 8, n_dims 4: the rotated half is the head_dim-4 case above
 * (same Python numbers) and dims 4..7 pass through. head_dim 4, n_dims 2,
 * position -7: only (x0, x1) rotates, by theta = -7 (Python:
 * [2.067875451780883, 0.8508179099678201, 3.0, 4.0] for q = 1, 2, 3, 4). */
Test(rope, dims_past_n_dims_pass_through) {
  static const float q8[8] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f, 6.0f, 7.0f, 8.0f};
  static const double want8[2][8] = {
      {-1.27223251272018, -1.8388649851410237, 2.87866810043698, 4.088186635603437, 5, 6, 7, 8},
      {-1.413352520780047, 1.8791180666879925, -2.828857481741469, 4.058191135400942, 5, 6, 7, 8}};
  const int32_t pos = 3;
  for (int mi = 0; mi < 2; mi++) {
    ptxq_rope_params p;
    ptxq_rope_params_init(&p, mi == 0 ? PTXQ_ROPE_NORMAL : PTXQ_ROPE_NEOX, 8, 1, 1);
    p.n_dims = 4;
    double q_out[8], k_out[8];
    cr_assert_eq(ptxq_ref_rope(&p, NULL, &pos, 1, q8, q8, q_out, k_out), PTXQ_OK);
    for (size_t d = 0; d < 8; d++) {
      assert_close(q_out[d], want8[mi][d], 1e-14, "q", d);
      cr_assert_eq(k_out[d], q_out[d], "k[%zu] differs from q with the same input", d);
    }
  }
  static const float q4[4] = {1.0f, 2.0f, 3.0f, 4.0f};
  static const double want4[4] = {2.067875451780883, 0.8508179099678201, 3.0, 4.0};
  const int32_t neg = -7;
  for (int mode = 0; mode <= 2; mode += 2) { /* with n_dims 2 both layouts pair (x0, x1) */
    ptxq_rope_params p;
    ptxq_rope_params_init(&p, (ptxq_rope_mode)mode, 4, 1, 1);
    p.n_dims = 2;
    double q_out[4], k_out[4];
    cr_assert_eq(ptxq_ref_rope(&p, NULL, &neg, 1, q4, q4, q_out, k_out), PTXQ_OK);
    for (size_t d = 0; d < 4; d++)
      assert_close(q_out[d], want4[d], 1e-14, "n_dims 2 q", d);
  }
}

Test(rope, gqa_and_odd_shapes_match_literal_recomputation) {
  static const struct {
    uint32_t head_dim, n_dims, heads, kv_heads, m;
  } shapes[] = {
      {64, 64, 8, 2, 3},   {128, 128, 32, 8, 1}, {6, 6, 6, 3, 5},   {10, 4, 5, 1, 8},
      {2, 2, 1, 1, 1},     {80, 32, 4, 4, 2},    {512, 512, 2, 1, 2}, {96, 94, 12, 4, 7},
  };
  rng r = {2024};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    for (int mode = 0; mode <= 2; mode += 2) {
      ptxq_rope_params p;
      ptxq_rope_params_init(&p, (ptxq_rope_mode)mode, shapes[s].head_dim, shapes[s].heads,
                            shapes[s].kv_heads);
      p.n_dims = shapes[s].n_dims;
      p.base = s % 2 ? 500000.0f : 10000.0f;
      int32_t positions[8];
      for (uint32_t t = 0; t < shapes[s].m; t++)
        positions[t] = rng_position(&r, 5000);
      check_rope_literal(&p, NULL, positions, shapes[s].m, 31 * s + (uint64_t)mode);
    }
  }
}

/* Token t of a batch is rotated exactly as a single token at positions[t]. */
Test(rope, each_token_uses_its_own_position) {
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 16, 4, 2);
  enum { m = 16, q_token = 4 * 16, k_token = 2 * 16 };
  float q[m * q_token], k[m * k_token];
  double q_out[m * q_token], k_out[m * k_token], q1[q_token], k1[k_token];
  rng r = {5};
  fill_gauss(&r, q, m * q_token, 1.0);
  fill_gauss(&r, k, m * k_token, 1.0);
  const int32_t positions[m] = {0, 1, 17, -3, 4096, 1, -100000, 77, 1 << 20, 2, 77, -1, 65535, 3, 1000003, 9};
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, m, q, k, q_out, k_out), PTXQ_OK);
  for (uint32_t t = 0; t < m; t++) {
    cr_assert_eq(ptxq_ref_rope(&p, NULL, &positions[t], 1, q + t * q_token, k + t * k_token, q1, k1),
                 PTXQ_OK);
    cr_assert(memcmp(q1, q_out + t * q_token, sizeof q1) == 0, "token %u q differs from m=1", t);
    cr_assert(memcmp(k1, k_out + t * k_token, sizeof k1) == 0, "token %u k differs from m=1", t);
  }
}

/* With every freq_factor 2, position 2p gives bit for bit what position p
 * gives without factors: (2p * f) / 2 == p * f exactly in binary floating
 * point. Uneven factors are checked against the literal re-computation. */
Test(rope, freq_factors_divide_theta) {
  enum { head_dim = 32, half = 16, m = 4 };
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, head_dim, 2, 1);
  float ff[half];
  for (size_t i = 0; i < half; i++)
    ff[i] = 2.0f;
  float q[m * 2 * head_dim], k[m * head_dim];
  double q_a[m * 2 * head_dim], k_a[m * head_dim], q_b[m * 2 * head_dim], k_b[m * head_dim];
  rng r = {9};
  fill_gauss(&r, q, m * 2 * head_dim, 1.0);
  fill_gauss(&r, k, m * head_dim, 1.0);
  const int32_t pos[m] = {5, -40, 1234, 3000}, pos2[m] = {10, -80, 2468, 6000};
  cr_assert_eq(ptxq_ref_rope(&p, ff, pos2, m, q, k, q_a, k_a), PTXQ_OK);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, pos, m, q, k, q_b, k_b), PTXQ_OK);
  cr_assert(memcmp(q_a, q_b, sizeof q_a) == 0 && memcmp(k_a, k_b, sizeof k_a) == 0,
            "factors of 2 at twice the position differ from no factors");
  /* Not ignored: the same positions without the factors differ. */
  cr_assert_eq(ptxq_ref_rope(&p, NULL, pos2, m, q, k, q_b, k_b), PTXQ_OK);
  cr_assert(memcmp(q_a, q_b, sizeof q_a) != 0, "freq_factors had no effect");

  /* Llama-3.1-like factors: 1 for high frequencies rising to 8 for low. */
  for (size_t i = 0; i < half; i++)
    ff[i] = (float)(1.0 + 7.0 * (double)i / (half - 1) + 0.01 * rng_unit(&r));
  for (int mode = 0; mode <= 2; mode += 2) {
    p.mode = (ptxq_rope_mode)mode;
    p.n_dims = mode == 0 ? 24 : head_dim; /* with 24, only the first 12 factors count */
    check_rope_literal(&p, ff, pos, m, 77 + (uint64_t)mode);
  }
}

/* freq_scale 0.25 at position 4p gives bit for bit what freq_scale 1 gives at
 * p (all scalings by powers of two are exact); others go to the literal
 * re-computation. */
Test(rope, freq_scale_scales_theta) {
  enum { head_dim = 24, m = 3 };
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NORMAL, head_dim, 3, 3);
  float q[m * 3 * head_dim], k[m * 3 * head_dim];
  double q_a[m * 3 * head_dim], k_a[m * 3 * head_dim], q_b[m * 3 * head_dim], k_b[m * 3 * head_dim];
  rng r = {11};
  fill_gauss(&r, q, m * 3 * head_dim, 1.0);
  fill_gauss(&r, k, m * 3 * head_dim, 1.0);
  const int32_t pos[m] = {7, -250, 999}, pos4[m] = {28, -1000, 3996};
  p.freq_scale = 0.25f;
  cr_assert_eq(ptxq_ref_rope(&p, NULL, pos4, m, q, k, q_a, k_a), PTXQ_OK);
  p.freq_scale = 1.0f;
  cr_assert_eq(ptxq_ref_rope(&p, NULL, pos, m, q, k, q_b, k_b), PTXQ_OK);
  cr_assert(memcmp(q_a, q_b, sizeof q_a) == 0 && memcmp(k_a, k_b, sizeof k_a) == 0,
            "freq_scale 0.25 at 4x the position differs from freq_scale 1");
  const float scales[3] = {0.125f, 0.3f, 2.5f};
  for (size_t s = 0; s < 3; s++) {
    p.freq_scale = scales[s];
    check_rope_literal(&p, NULL, pos, m, 300 + s);
  }
}

/* YaRN, from the Python 3.11 re-computation (literal llama.cpp form):
 *   corr(r) = nd*math.log(nctx/(r*2*math.pi))/(2*math.log(base))
 *   low = max(0, floor(corr(beta_fast))); high = min(nd-1, ceil(corr(beta_slow)))
 *   ramp = 1 - min(1, max(0, (i-low)/max(0.001, high-low))); mix = ramp*ext
 *   theta = fs*te*(1-mix) + te*mix with te = pos*base**(-2*i/nd)
 *   mscale = attn*(1 + 0.1*math.log(1/fs))
 * head_dim = n_dims = 8, base 10000, freq_scale 0.25, ext_factor 0.75,
 * attn_factor 0.5, beta 32/1, n_ctx_orig 4096, position 1000:
 * corr(32) = 1.309, corr(1) = 2.814, so low 1, high 3 and the ramp is
 * 1, 1, 0.5, 0: every regime of the blend shows up. */
Test(rope, yarn_hand_computed) {
  static const float x[8] = {0.5f, -1.25f, 2.0f, 0.75f, -0.375f, 1.5f, -2.5f, 1.0f};
  static const double want[2][8] = {
      {0.5455327373428136, 0.5383866360163618, 1.2128500252269532, -0.08825466671781174,
       0.5841932448419024, 0.6584571591209889, -1.5198909707767922, 0.19948931391483293},
      {0.08637655266647669, -0.28935145961329906, -0.5315771863431198, 0.27286136133143446,
       0.3451784646754433, 1.0733034829738344, -1.743458628405071, 0.6572541386688407}};
  const int32_t pos = 1000;
  for (int mi = 0; mi < 2; mi++) {
    ptxq_rope_params p;
    ptxq_rope_params_init(&p, mi == 0 ? PTXQ_ROPE_NORMAL : PTXQ_ROPE_NEOX, 8, 1, 1);
    p.freq_scale = 0.25f;
    p.ext_factor = 0.75f;
    p.attn_factor = 0.5f;
    p.n_ctx_orig = 4096;
    double q_out[8], k_out[8];
    cr_assert_eq(ptxq_ref_rope(&p, NULL, &pos, 1, x, x, q_out, k_out), PTXQ_OK);
    for (size_t d = 0; d < 8; d++)
      assert_close(q_out[d], want[mi][d], 1e-12, mi == 0 ? "yarn normal" : "yarn neox", d);
  }
}

/* The shared per-pair constants of the YaRN case above, by hand:
 * freq_i = 10^(-i) * (0.25*(1 - mix) + mix) with mix = 0.75, 0.75, 0.375, 0,
 * mscale = 0.5 * (1 + 0.1*ln 4). */
Test(rope, pair_constants_of_yarn_case) {
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 8, 1, 1);
  p.freq_scale = 0.25f;
  p.ext_factor = 0.75f;
  p.attn_factor = 0.5f;
  p.n_ctx_orig = 4096;
  const double want_freq[4] = {0.8125, 0.08125, 0.0053125, 0.00025};
  const double want_mscale = 0.5 * (1.0 + 0.1 * log(4.0));
  for (uint32_t i = 0; i < 4; i++) {
    double freq = -1.0, mscale = -1.0;
    ptxq__rope_pair_constants(&p, i, &freq, &mscale);
    assert_close(freq, want_freq[i], 4e-16 * want_freq[i], "freq", i);
    assert_close(mscale, want_mscale, 4e-16, "mscale", i);
  }
  p.ext_factor = 0.0f; /* without YaRN: base^(-2i/n_dims) * freq_scale, attn_factor */
  for (uint32_t i = 0; i < 4; i++) {
    double freq = -1.0, mscale = -1.0;
    ptxq__rope_pair_constants(&p, i, &freq, &mscale);
    assert_close(freq, 0.25 * pow(10.0, -(double)i), 4e-16 * freq, "plain freq", i);
    cr_assert_eq(mscale, 0.5);
  }
}

Test(rope, yarn_matches_literal_recomputation) {
  static const struct {
    float freq_scale, ext_factor, attn_factor, beta_fast, beta_slow, base;
    uint32_t n_ctx_orig, head_dim, n_dims;
  } cases[] = {
      {0.25f, 1.0f, 1.0f, 32.0f, 1.0f, 10000.0f, 4096, 128, 128},
      {0.125f, 1.0f, 0.9f, 32.0f, 1.0f, 1000000.0f, 8192, 128, 128},
      {0.5f, 0.5f, 1.0f, 16.0f, 2.0f, 10000.0f, 2048, 64, 48},
      {0.1f, 1.0f, 1.0f, 1.0f, 32.0f, 10000.0f, 4096, 64, 64}, /* betas swapped */
      {1.0f, 1.0f, 1.0f, 32.0f, 1.0f, 10000.0f, 3, 8, 8},     /* tiny context: low > high */
      {2.0f, 1.0f, 1.0f, 32.0f, 1.0f, 10000.0f, 1u << 20, 32, 32},
      /* Python: corr(beta_fast) = 17.0005 and 17.9995 in the first two,
       * corr(beta_slow) = 14.9989 in the third: floor() or ceil() sits right
       * at a step, so a slightly wrong 2*pi or log moves low or high and
       * shows. */
      {0.25f, 1.0f, 1.0f, 32.0f, 1.0f, 10000.0f, 2322, 128, 128},
      {0.25f, 1.0f, 1.0f, 32.0f, 1.0f, 10000.0f, 2681, 128, 128},
      {0.25f, 1.0f, 1.0f, 32.0f, 1.0f, 500000.0f, 2947, 64, 64},
  };
  rng r = {4096};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    for (int mode = 0; mode <= 2; mode += 2) {
      ptxq_rope_params p;
      ptxq_rope_params_init(&p, (ptxq_rope_mode)mode, cases[c].head_dim, 4, 2);
      p.n_dims = cases[c].n_dims;
      p.base = cases[c].base;
      p.freq_scale = cases[c].freq_scale;
      p.ext_factor = cases[c].ext_factor;
      p.attn_factor = cases[c].attn_factor;
      p.beta_fast = cases[c].beta_fast;
      p.beta_slow = cases[c].beta_slow;
      p.n_ctx_orig = cases[c].n_ctx_orig;
      int32_t positions[3];
      for (size_t t = 0; t < 3; t++)
        positions[t] = rng_position(&r, 20000);
      check_rope_literal(&p, NULL, positions, 3, 500 + 2 * c + (uint64_t)mode);
    }
  }
}

/* Without YaRN and with attn_factor 1 every pair is rotated: its norm is
 * kept, whatever the position, base, freq_scale or freq_factors. */
Test(rope, rotation_preserves_pair_norms) {
  enum { head_dim = 128, heads = 4, kv_heads = 1, m = 8 };
  rng r = {31337};
  float ff[head_dim / 2];
  for (size_t i = 0; i < head_dim / 2; i++)
    ff[i] = (float)(0.5 + 4.0 * rng_unit(&r));
  float *q = checked_calloc(m * heads * head_dim, sizeof *q);
  float *k = checked_calloc(m * kv_heads * head_dim, sizeof *k);
  double *q_out = checked_calloc(m * heads * head_dim, sizeof *q_out);
  double *k_out = checked_calloc(m * kv_heads * head_dim, sizeof *k_out);
  fill_gauss(&r, q, m * heads * head_dim, 1.0);
  fill_gauss(&r, k, m * kv_heads * head_dim, 1.0);
  int32_t positions[m] = {0, 1, -1, INT32_MAX, INT32_MIN, 1 << 24, -(1 << 24), 0};
  positions[7] = rng_position(&r, 1000000);
  for (int mode = 0; mode <= 2; mode += 2) {
    for (int with_ff = 0; with_ff < 2; with_ff++) {
      ptxq_rope_params p;
      ptxq_rope_params_init(&p, (ptxq_rope_mode)mode, head_dim, heads, kv_heads);
      p.base = 500000.0f;
      p.freq_scale = with_ff ? 1.0f : 0.3f;
      cr_assert_eq(ptxq_ref_rope(&p, with_ff ? ff : NULL, positions, m, q, k, q_out, k_out), PTXQ_OK);
      for (size_t v = 0; v < (size_t)m * heads; v++) {
        for (uint32_t i = 0; i < head_dim / 2; i++) {
          size_t ia = v * head_dim + (mode == 2 ? i : 2 * i);
          size_t ib = v * head_dim + (mode == 2 ? i + head_dim / 2 : 2 * i + 1);
          double before = hypot(q[ia], q[ib]), after = hypot(q_out[ia], q_out[ib]);
          cr_assert(isfinite(after) && fabs(after - before) <= 1e-15 * (1.0 + before),
                    "mode %d ff %d: pair norm %.17g became %.17g (vector %zu pair %u)", mode, with_ff,
                    before, after, v, i);
        }
      }
    }
  }
  free(q);
  free(k);
  free(q_out);
  free(k_out);
}

/* ---- RoPE: invalid arguments ------------------------------------------- */

enum { bad_head_dim = 16, bad_heads = 4, bad_kv_heads = 2 };

/* A valid YaRN configuration; each bad case below changes one thing. */
static void valid_params(ptxq_rope_params *p) {
  ptxq_rope_params_init(p, PTXQ_ROPE_NEOX, bad_head_dim, bad_heads, bad_kv_heads);
  p->n_dims = 8;
  p->freq_scale = 0.25f;
  p->ext_factor = 1.0f;
  p->n_ctx_orig = 4096;
}

typedef struct bad_case {
  const char *what;
  void (*spoil)(ptxq_rope_params *p, float *ff);
} bad_case;

#define BAD(name, body)                                                                            \
  static void spoil_##name(ptxq_rope_params *p, float *ff) {                                     \
    (void)p;                                                                                       \
    (void)ff;                                                                                      \
    body;                                                                                          \
  }
BAD(mode_1, p->mode = (ptxq_rope_mode)1)
BAD(mode_3, p->mode = (ptxq_rope_mode)3)
BAD(mode_negative, p->mode = (ptxq_rope_mode)-1)
BAD(head_dim_0, p->head_dim = 0)
BAD(head_dim_odd, p->head_dim = 15)
BAD(head_dim_514, p->head_dim = 514)
BAD(n_dims_0, p->n_dims = 0)
BAD(n_dims_odd, p->n_dims = 7)
BAD(n_dims_past_head_dim, p->n_dims = bad_head_dim + 2)
BAD(heads_0, p->heads = 0)
BAD(heads_1025, { p->heads = 1025; p->kv_heads = 1; })
BAD(heads_2048, p->heads = 2048)
BAD(kv_heads_0, p->kv_heads = 0)
BAD(kv_heads_not_dividing, p->kv_heads = 3)
BAD(kv_heads_above_heads, p->kv_heads = 8)
BAD(base_nan, p->base = NAN)
BAD(base_inf, p->base = INFINITY)
BAD(base_zero, p->base = 0.0f)
BAD(base_negative, p->base = -10000.0f)
BAD(base_one, p->base = 1.0f)
BAD(freq_scale_nan, p->freq_scale = NAN)
BAD(freq_scale_inf, p->freq_scale = INFINITY)
BAD(freq_scale_zero, p->freq_scale = 0.0f)
BAD(freq_scale_negative, p->freq_scale = -0.5f)
BAD(ext_factor_nan, p->ext_factor = NAN)
BAD(ext_factor_inf, p->ext_factor = INFINITY)
BAD(ext_factor_negative, p->ext_factor = -0.5f)
BAD(attn_factor_nan, p->attn_factor = NAN)
BAD(attn_factor_inf, p->attn_factor = INFINITY)
BAD(attn_factor_minus_inf, p->attn_factor = -INFINITY)
BAD(beta_fast_nan, p->beta_fast = NAN)
BAD(beta_fast_inf, p->beta_fast = INFINITY)
BAD(beta_fast_zero, p->beta_fast = 0.0f)
BAD(beta_fast_negative, p->beta_fast = -32.0f)
BAD(beta_slow_nan, p->beta_slow = NAN)
BAD(beta_slow_inf, p->beta_slow = INFINITY)
BAD(beta_slow_zero, p->beta_slow = 0.0f)
BAD(beta_slow_negative, p->beta_slow = -1.0f)
BAD(yarn_without_n_ctx_orig, p->n_ctx_orig = 0)
BAD(freq_factor_nan, ff[0] = NAN)
BAD(freq_factor_inf, ff[1] = INFINITY)
BAD(freq_factor_zero, ff[2] = 0.0f)
BAD(freq_factor_negative_zero, ff[2] = -0.0f)
BAD(freq_factor_negative_last, ff[3] = -1.0f)

static const bad_case bad_cases[] = {
#define CASE(name) {#name, spoil_##name}
    CASE(mode_1),           CASE(mode_3),           CASE(mode_negative),
    CASE(head_dim_0),       CASE(head_dim_odd),     CASE(head_dim_514),
    CASE(n_dims_0),         CASE(n_dims_odd),       CASE(n_dims_past_head_dim),
    CASE(heads_0),          CASE(heads_1025),       CASE(heads_2048),
    CASE(kv_heads_0),       CASE(kv_heads_not_dividing), CASE(kv_heads_above_heads),
    CASE(base_nan),         CASE(base_inf),         CASE(base_zero),
    CASE(base_negative),    CASE(base_one),         CASE(freq_scale_nan),
    CASE(freq_scale_inf),   CASE(freq_scale_zero),  CASE(freq_scale_negative),
    CASE(ext_factor_nan),   CASE(ext_factor_inf),   CASE(ext_factor_negative),
    CASE(attn_factor_nan),  CASE(attn_factor_inf),  CASE(attn_factor_minus_inf),
    CASE(beta_fast_nan),    CASE(beta_fast_inf),    CASE(beta_fast_zero),
    CASE(beta_fast_negative), CASE(beta_slow_nan),  CASE(beta_slow_inf),
    CASE(beta_slow_zero),   CASE(beta_slow_negative), CASE(yarn_without_n_ctx_orig),
    CASE(freq_factor_nan),  CASE(freq_factor_inf),  CASE(freq_factor_zero),
    CASE(freq_factor_negative_zero), CASE(freq_factor_negative_last),
#undef CASE
};

/* Buffers big enough for any spoiled shape above (heads up to 2048). */
enum { bad_q_cap = 2048 * 514, bad_k_cap = 2048 * 514 };

Test(rope, rejects_each_bad_parameter) {
  float *q = checked_calloc(bad_q_cap, sizeof *q), *k = checked_calloc(bad_k_cap, sizeof *k);
  double *q_out = checked_calloc(bad_q_cap, sizeof *q_out);
  double *k_out = checked_calloc(bad_k_cap, sizeof *k_out);
  rng r = {1};
  fill_gauss(&r, q, bad_q_cap, 1.0);
  fill_gauss(&r, k, bad_k_cap, 1.0);
  const int32_t position = 12;
  /* As many factors as the largest n_dims could read, all valid, so a
   * spoiled n_dims is caught by its own check and never reads past ff. */
  float ff[256];
  for (size_t i = 0; i < 256; i++)
    ff[i] = (float)(1.0 + 0.25 * (double)(i % 7));

  ptxq_rope_params p;
  valid_params(&p);
  cr_assert_eq(ptxq_ref_rope(&p, ff, &position, 1, q, k, q_out, k_out), PTXQ_OK,
               "the unspoiled parameters must be valid");
  for (size_t c = 0; c < sizeof bad_cases / sizeof bad_cases[0]; c++) {
    valid_params(&p);
    float spoiled_ff[256];
    memcpy(spoiled_ff, ff, sizeof ff);
    bad_cases[c].spoil(&p, spoiled_ff);
    for (size_t i = 0; i < 64; i++)
      q_out[i] = k_out[i] = 777.0;
    int status = ptxq_ref_rope(&p, spoiled_ff, &position, 1, q, k, q_out, k_out);
    cr_assert_eq(status, PTXQ_ERR_INVALID, "%s: status %d, expected PTXQ_ERR_INVALID",
                 bad_cases[c].what, status);
    for (size_t i = 0; i < 64; i++)
      cr_assert(q_out[i] == 777.0 && k_out[i] == 777.0, "%s: output written on error",
                bad_cases[c].what);
  }
  /* Only the n_dims/2 factors in use are read: a NaN past them is fine. */
  valid_params(&p);
  ff[p.n_dims / 2] = NAN;
  cr_assert_eq(ptxq_ref_rope(&p, ff, &position, 1, q, k, q_out, k_out), PTXQ_OK,
               "a factor past n_dims/2 was checked");
  free(q);
  free(k);
  free(q_out);
  free(k_out);
}

/* The edges of each range are accepted. */
Test(rope, accepts_the_edges) {
  float *q = checked_calloc(1024 * 512, sizeof *q), *k = checked_calloc(1024 * 512, sizeof *k);
  double *q_out = checked_calloc(1024 * 512, sizeof *q_out);
  double *k_out = checked_calloc(1024 * 512, sizeof *k_out);
  rng r = {3};
  fill_gauss(&r, q, 1024 * 512, 1.0);
  fill_gauss(&r, k, 1024 * 512, 1.0);
  const int32_t position = -5;
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NORMAL, 512, 1024, 1); /* largest head, most heads, MQA */
  cr_assert_eq(ptxq_ref_rope(&p, NULL, &position, 1, q, k, q_out, k_out), PTXQ_OK);
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 2, 1024, 1024);
  p.n_dims = 2;
  p.attn_factor = 0.0f;   /* any finite attn_factor, even 0 or negative */
  p.ext_factor = -0.0f;   /* negative zero is zero: YaRN off, n_ctx_orig unused */
  p.base = 1.0001f;
  p.freq_scale = 1e-30f;
  cr_assert_eq(ptxq_ref_rope(&p, NULL, &position, 1, q, k, q_out, k_out), PTXQ_OK);
  cr_assert_eq(q_out[0], 0.0, "attn_factor 0 must scale to zero");
  p.attn_factor = -2.0f;
  cr_assert_eq(ptxq_ref_rope(&p, NULL, &position, 1, q, k, q_out, k_out), PTXQ_OK);
  free(q);
  free(k);
  free(q_out);
  free(k_out);
}

Test(rope, rejects_bad_pointers_and_token_counts) {
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NORMAL, 4, 2, 1);
  /* room for 17 tokens: one more than ptxq_rope takes */
  float q[17 * 8], k[17 * 4];
  double q_out[17 * 8], k_out[17 * 4];
  rng r = {17};
  fill_gauss(&r, q, 17 * 8, 1.0);
  fill_gauss(&r, k, 17 * 4, 1.0);
  const int32_t positions[17] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17};
  cr_assert_eq(ptxq_ref_rope(NULL, NULL, positions, 1, q, k, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, NULL, 1, q, k, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 1, NULL, k, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 1, q, NULL, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 1, q, k, NULL, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 1, q, k, q_out, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 0, q, k, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 17, q, k, q_out, k_out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 16, q, k, q_out, k_out), PTXQ_OK);
  cr_assert_eq(ptxq_ref_rope(&p, NULL, positions, 9, q, k, q_out, k_out), PTXQ_OK);
}
