/*
 * rope.c: the CPU reference rotary position embedding (llama.cpp's
 * semantics, in fp64), the per-pair constants it shares with the GPU
 * generator, and the parameter defaults.
 *
 * For token t at position pos and pair i (0 <= i < n_dims/2):
 *   theta_extrap = pos * base^(-2i/n_dims) / ff_i   (ff_i: freq_factors[i], else 1)
 *   theta_interp = freq_scale * theta_extrap
 *   without YaRN (ext_factor == 0): theta = theta_interp, mscale = attn_factor
 *   with YaRN: mix = ext_factor * ramp(i), where ramp is 1 below the dim
 *     where beta_fast rotations fit in n_ctx_orig positions, 0 above the one
 *     where beta_slow rotations fit, linear between;
 *     theta = theta_interp*(1 - mix) + theta_extrap*mix,
 *     mscale = attn_factor * (1 + 0.1*ln(1/freq_scale))
 *   (a, b) -> (a*cos(theta)*mscale - b*sin(theta)*mscale,
 *              a*sin(theta)*mscale + b*cos(theta)*mscale)
 * with the pair (x[2i], x[2i+1]) for PTXQ_ROPE_NORMAL and
 * (x[i], x[i + n_dims/2]) for PTXQ_ROPE_NEOX; dims >= n_dims are copied.
 *
 * Factored form: theta_interp*(1 - mix) + theta_extrap*mix equals
 * theta_extrap * (freq_scale*(1 - mix) + mix), so the reference computes
 * theta = pos * freq_i / ff_i with freq_i = base^(-2i/n_dims) *
 * (freq_scale*(1 - mix) + mix) (mix = 0 without YaRN). freq_i depends on
 * the parameters only, so the GPU generator can bake the very same doubles
 * into its PTX by calling ptxq__rope_pair_constants below, and both sides
 * differ only in how they evaluate pos * freq_i / ff_i, cos and sin. The
 * two forms agree to a few ulps of theta.
 *
 * Shared with the generator (the lead moves this prototype to an internal
 * header):
 *   void ptxq__rope_pair_constants(const ptxq_rope_params *p, uint32_t i,
 *                                  double *freq, double *mscale);
 * p must have passed validation (ptxq_ref_rope's checks); p->freq_factors
 * plays no part.
 *
 * Status of ptxq_ref_rope: PTXQ_ERR_INVALID, with nothing written, for NULL
 * pointers, m outside 1..16, or parameters outside what ptxq.h allows (each
 * check is listed in rope_params_valid). The reference has no context, so
 * there is no detail message beyond the status.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "ptxq.h"

void ptxq__rope_pair_constants(const ptxq_rope_params *p, uint32_t i, double *freq, double *mscale);

#define ROPE_MAX_TOKENS 16 /* ptxq_rope's limit, PTXGEN_ROPE_MAX_M */
#define ROPE_MAX_HEAD_DIM 512
#define ROPE_MAX_HEADS 1024

void ptxq_rope_params_init(ptxq_rope_params *p, ptxq_rope_mode mode, uint32_t head_dim, uint32_t heads,
                           uint32_t kv_heads) {
  if (p == NULL)
    return;
  *p = (ptxq_rope_params){
      .mode = mode,
      .head_dim = head_dim,
      .n_dims = head_dim,
      .heads = heads,
      .kv_heads = kv_heads,
      .base = 10000.0f,
      .freq_scale = 1.0f,
      .freq_factors = 0,
      .ext_factor = 0.0f,
      .attn_factor = 1.0f,
      .beta_fast = 32.0f,
      .beta_slow = 1.0f,
      .n_ctx_orig = 0,
  };
}

static int positive_finite(float v) { return isfinite(v) && v > 0.0f; }

static int rope_params_valid(const ptxq_rope_params *p, const float *freq_factors) {
  if ((int)p->mode != PTXQ_ROPE_NORMAL && (int)p->mode != PTXQ_ROPE_NEOX)
    return 0;
  if (p->head_dim == 0 || p->head_dim % 2 != 0 || p->head_dim > ROPE_MAX_HEAD_DIM)
    return 0;
  if (p->n_dims == 0 || p->n_dims % 2 != 0 || p->n_dims > p->head_dim)
    return 0;
  if (p->heads == 0 || p->heads > ROPE_MAX_HEADS || p->kv_heads == 0 || p->heads % p->kv_heads != 0)
    return 0;
  /* base == 1 would make every pair rotate alike and YaRN's ln(base) zero. */
  if (!positive_finite(p->base) || p->base == 1.0f)
    return 0;
  if (!positive_finite(p->freq_scale))
    return 0;
  if (!isfinite(p->ext_factor) || p->ext_factor < 0.0f || !isfinite(p->attn_factor))
    return 0;
  if (!positive_finite(p->beta_fast) || !positive_finite(p->beta_slow))
    return 0;
  if (p->ext_factor != 0.0f && p->n_ctx_orig == 0)
    return 0;
  if (freq_factors != NULL)
    for (uint32_t i = 0; i < p->n_dims / 2; i++)
      if (!positive_finite(freq_factors[i]))
        return 0;
  return 1;
}

/* The YaRN dim at which a pair makes `rotations` full turns over n_ctx_orig
 * positions (fractional; dims count both members of a pair). */
static double yarn_corr_dim(const ptxq_rope_params *p, double rotations) {
  const double two_pi = 2.0 * 3.141592653589793;
  return (double)p->n_dims * log((double)p->n_ctx_orig / (rotations * two_pi)) /
         (2.0 * log((double)p->base));
}

/* How much of pair i is extrapolated: 1 below the beta_fast dim, 0 above
 * the beta_slow dim, linear between. */
static double yarn_ramp(const ptxq_rope_params *p, uint32_t i) {
  double low = fmax(0.0, floor(yarn_corr_dim(p, p->beta_fast)));
  double high = fmin((double)p->n_dims - 1.0, ceil(yarn_corr_dim(p, p->beta_slow)));
  double y = ((double)i - low) / fmax(0.001, high - low);
  return 1.0 - fmin(1.0, fmax(0.0, y));
}

void ptxq__rope_pair_constants(const ptxq_rope_params *p, uint32_t i, double *freq, double *mscale) {
  double base_freq = pow((double)p->base, -2.0 * (double)i / (double)p->n_dims);
  double freq_scale = (double)p->freq_scale;
  if (p->ext_factor != 0.0f) {
    double mix = yarn_ramp(p, i) * (double)p->ext_factor;
    *freq = base_freq * (freq_scale * (1.0 - mix) + mix);
    *mscale = (double)p->attn_factor * (1.0 + 0.1 * log(1.0 / freq_scale));
  } else {
    *freq = base_freq * freq_scale;
    *mscale = (double)p->attn_factor;
  }
}

/* Rotates `count` head vectors of one token with the per-pair cos/sin. */
static void rotate_heads(const ptxq_rope_params *p, const double *cos_m, const double *sin_m,
                         const float *in, double *out, uint32_t count) {
  uint32_t half = p->n_dims / 2;
  for (uint32_t h = 0; h < count; h++) {
    const float *x = in + (size_t)h * p->head_dim;
    double *y = out + (size_t)h * p->head_dim;
    for (uint32_t i = 0; i < half; i++) {
      uint32_t ia = p->mode == PTXQ_ROPE_NEOX ? i : 2 * i;
      uint32_t ib = p->mode == PTXQ_ROPE_NEOX ? i + half : 2 * i + 1;
      double a = (double)x[ia], b = (double)x[ib];
      y[ia] = a * cos_m[i] - b * sin_m[i];
      y[ib] = a * sin_m[i] + b * cos_m[i];
    }
    for (uint32_t d = p->n_dims; d < p->head_dim; d++)
      y[d] = (double)x[d];
  }
}

int ptxq_ref_rope(const ptxq_rope_params *p, const float *freq_factors, const int32_t *positions,
                  uint32_t m, const float *q, const float *k, double *q_out, double *k_out) {
  if (p == NULL || positions == NULL || q == NULL || k == NULL || q_out == NULL || k_out == NULL)
    return PTXQ_ERR_INVALID;
  if (m == 0 || m > ROPE_MAX_TOKENS || !rope_params_valid(p, freq_factors))
    return PTXQ_ERR_INVALID;

  uint32_t half = p->n_dims / 2;
  double freq[ROPE_MAX_HEAD_DIM / 2], mscale = 1.0;
  for (uint32_t i = 0; i < half; i++)
    ptxq__rope_pair_constants(p, i, &freq[i], &mscale);

  size_t q_token = (size_t)p->heads * p->head_dim, k_token = (size_t)p->kv_heads * p->head_dim;
  double cos_m[ROPE_MAX_HEAD_DIM / 2], sin_m[ROPE_MAX_HEAD_DIM / 2];
  for (uint32_t t = 0; t < m; t++) {
    for (uint32_t i = 0; i < half; i++) {
      double ff = freq_factors != NULL ? (double)freq_factors[i] : 1.0;
      double theta = (double)positions[t] * freq[i] / ff;
      cos_m[i] = cos(theta) * mscale;
      sin_m[i] = sin(theta) * mscale;
    }
    rotate_heads(p, cos_m, sin_m, q + t * q_token, q_out + t * q_token, p->heads);
    rotate_heads(p, cos_m, sin_m, k + t * k_token, k_out + t * k_token, p->kv_heads);
  }
  return PTXQ_OK;
}
