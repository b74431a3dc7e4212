/*
 * quantize.c: the CPU reference quantizer, float -> Q4_K.
 *
 * Tests and benchmarks use it to make Q4_K weights of any shape from random
 * floats; the dequantizer (dequant.c) is what defines the format's values,
 * so this file only has to choose good bytes, and it always chooses the
 * quants for the values the dequantizer will actually produce.
 *
 * Method, per 256-weight super-block:
 *  1. Each 32-weight sub-block gets a real scale s >= 0 and min m >= 0
 *     (w ~ s*q - m, q in 0..15). Starting range [lo, hi] with
 *     lo = min(0, min x) (the min is stored positive and subtracted, so the
 *     grid always reaches down to 0 or below) and hi = max x. For 11
 *     candidate step counts 14.0, 14.2, ..., 16.0 spread over that range,
 *     quantize, then alternate up to three times (until the quants stop
 *     changing): solve the 2x2 weighted least-squares system for (s, m)
 *     given the quants (with s, m clamped to >= 0), and re-quantize to the
 *     nearest grid point. The fit with the smallest weighted squared error
 *     wins (the plain min/max grid is the first candidate, so the search
 *     never does worse than it).
 *  2. The super-block scales are f16: d = f16(max s / 63), dmin =
 *     f16(max m / 63). Each sub-block's 6-bit codes are re-derived from the
 *     rounded d and dmin (round(s/d), round(m/dmin)), and the 3x3
 *     neighbourhood of those codes is tried, keeping the pair whose exactly
 *     dequantized values fit best: rounding the scale and the min
 *     separately is not the best joint choice once both are coarse.
 *  3. Quants are the nearest of the 16 exactly dequantized values, and the
 *     codes are packed per docs/formats.md.
 *
 * Error weights: every weight counts the same (w_i = 1), so the fit
 * minimizes the plain squared error. For a GEMV whose activations are not
 * correlated with the weights' rounding errors, the expected squared output
 * error is proportional to the sum of squared weight errors, which is
 * exactly that objective; weighting by |x| would trade RMS error for a
 * better fit of the largest weights, which this reference has no reason to.
 *
 * Limits: a super-block whose d or dmin would overflow f16 (a fitted scale
 * or min above 63 * 65504, i.e. a sub-block range above about 6e7) is
 * PTXQ_ERR_INVALID (the blocks before it have been written by then). Below
 * a sub-block range of about 0.06, d is a subnormal f16 with fewer
 * significant bits, and where max s / 63 would round to 0 the smallest
 * subnormal 2^-24 is used instead, so tiny data does not collapse to zero:
 * the format cannot resolve steps below 2^-24 (about 6e-8).
 *
 * Measured error (tests/test_ref.c: 16 seeds at each of 256, 512, 768 and
 * 12288 weights; "mean" is over 16 seeds of 12288):
 *  - N(0,1): RMS error / RMS input 0.0700 mean, 0.0759 worst (the plain
 *    min/max grid of step 1 alone gives 0.0725 mean);
 *  - uniform [-1, 1): 0.0536 mean, 0.0567 worst;
 *  - N(0, 1e4^2): as N(0,1); N(0, 1e-12): 0.078 mean, 0.084 worst;
 *  - largest per-weight error in units of (sub-block range / 15), where a
 *    pure 16-level grid would give 0.5: 1.10 worst Gaussian, 0.91 uniform,
 *    1.54 at 1e-6. The excess is the 6-bit rounding of scale and min, and
 *    the least-squares fit clipping an outlier when that lowers the total.
 * Speed: about 200-250 ns per weight at -O2 on one x86 core, so a bench
 * that needs large random Q4_K matrices should quantize once and keep them.
 */
#include <math.h>
#include <stdint.h>

#include "ptxq.h"

#define SUB_BLOCKS 8
#define SUB_BLOCK_WEIGHTS 32
#define MAX_QUANT 15
#define MAX_CODE 63              /* 6-bit scale and min codes */
#define STEP_CANDIDATES 5        /* tries MAX_QUANT + s * STEP_SPACING steps, */
#define STEP_SPACING 0.2         /* s = -STEP_CANDIDATES..STEP_CANDIDATES */
#define REFINEMENTS 3            /* solve / re-quantize rounds per candidate */
#define F16_SMALLEST_SUBNORMAL 0x0001

typedef struct sub_block_fit {
  double scale; /* w ~ scale * q - min */
  double min;
  double error; /* weighted squared error of the fit */
} sub_block_fit;

static double error_weight(float x) {
  (void)x; /* uniform: see the header comment for why */
  return 1.0;
}

/* Nearest grid index clamped to 0..15 (a NaN, from 0 * inf when the scale
 * is tiny, goes to 0). */
static uint8_t nearest_quant(double x, double inverse_scale, double min) {
  double t = (x + min) * inverse_scale;
  if (!(t > 0))
    return 0;
  if (t >= MAX_QUANT)
    return MAX_QUANT;
  return (uint8_t)(t + 0.5);
}

/* Quants of a sub-block for (scale, min) and the weighted squared error
 * of the fit; returns whether any quant changed. */
static int quantize_sub_block(const float *x, const double *wt, double scale, double min,
                              uint8_t *q, double *error) {
  double inverse_scale = scale > 0 ? 1 / scale : 0;
  int changed = 0;
  double sum = 0; /* a local, not *error: q may alias it, forcing reloads */
  for (int i = 0; i < SUB_BLOCK_WEIGHTS; i++) {
    uint8_t quant = nearest_quant(x[i], inverse_scale, min);
    double diff = scale * quant - min - x[i];
    sum += wt[i] * diff * diff;
    changed |= quant != q[i];
    q[i] = quant;
  }
  *error = sum;
  return changed;
}

/* Least-squares (scale, min) for fixed quants, with scale, min >= 0:
 * the model is x ~ scale*q + offset, offset = -min <= 0. */
static void solve_scale_min(const float *x, const double *wt, const uint8_t *q, double *scale,
                            double *min) {
  double sw = 0, sq = 0, sqq = 0, sx = 0, sqx = 0;
  for (int i = 0; i < SUB_BLOCK_WEIGHTS; i++) {
    sw += wt[i];
    sq += wt[i] * q[i];
    sqq += wt[i] * q[i] * q[i];
    sx += wt[i] * x[i];
    sqx += wt[i] * q[i] * x[i];
  }
  double det = sqq * sw - sq * sq;
  double s, offset;
  if (det > 1e-9 * sqq * sw) {
    s = (sw * sqx - sq * sx) / det;
    offset = (sqq * sx - sq * sqx) / det;
  } else { /* all quants equal: only the offset is determined */
    s = 0;
    offset = sx / sw;
  }
  if (offset > 0) { /* the min cannot be negative: best fit through 0 */
    offset = 0;
    s = sqq > 0 ? sqx / sqq : 0;
  }
  if (s < 0) {
    s = 0;
    offset = sx / sw < 0 ? sx / sw : 0;
  }
  *scale = s;
  *min = -offset;
}

static sub_block_fit fit_sub_block(const float *x, const double *wt) {
  double lo = 0, hi = x[0];
  for (int i = 0; i < SUB_BLOCK_WEIGHTS; i++) {
    if (x[i] < lo)
      lo = x[i];
    if (x[i] > hi)
      hi = x[i];
  }
  uint8_t q[SUB_BLOCK_WEIGHTS] = {0};
  sub_block_fit best = {(hi - lo) / MAX_QUANT, -lo, 0};
  quantize_sub_block(x, wt, best.scale, best.min, q, &best.error);
  if (!(hi > lo))
    return best; /* constant data: scale 0 and min -lo is exact */

  for (int step = -STEP_CANDIDATES; step <= STEP_CANDIDATES; step++) {
    double error;
    quantize_sub_block(x, wt, (hi - lo) / (MAX_QUANT + step * STEP_SPACING), -lo, q, &error);
    for (int round = 0; round < REFINEMENTS; round++) {
      double scale, min;
      solve_scale_min(x, wt, q, &scale, &min);
      int changed = quantize_sub_block(x, wt, scale, min, q, &error);
      if (error < best.error)
        best = (sub_block_fit){scale, min, error};
      if (!changed)
        break; /* converged: the next solve would give the same fit */
    }
  }
  return best;
}

/* The 16 values the dequantizer produces for a sub-block (the same
 * operations as dequant.c). */
static void dequantized_values(float scale, float min, double values[MAX_QUANT + 1]) {
  for (int q = 0; q <= MAX_QUANT; q++) {
    volatile float product = scale * (float)q;
    values[q] = (double)(product - min);
  }
}

/* Nearest of the 16 exact values to x (they rise with q, so the rounded
 * guess is off by at most one); its squared error. */
static uint8_t exact_nearest_quant(float x, double inverse_scale, double min,
                                   const double values[MAX_QUANT + 1], double *sq_error) {
  int guess = nearest_quant(x, inverse_scale, min);
  int best = guess;
  double best_diff = fabs(values[guess] - x);
  for (int q = guess - 1; q <= guess + 1; q += 2) {
    if (q < 0 || q > MAX_QUANT)
      continue;
    double diff = fabs(values[q] - x);
    if (diff < best_diff) {
      best = q;
      best_diff = diff;
    }
  }
  *sq_error = best_diff * best_diff;
  return (uint8_t)best;
}

static int code_for(double value, float unit) {
  if (!(unit > 0))
    return 0;
  double code = floor(value / unit + 0.5);
  return code > MAX_CODE ? MAX_CODE : (int)code;
}

/* Chooses the 6-bit codes of one sub-block near round(s/d), round(m/dmin)
 * by the exact error of the resulting values, and writes its quants. */
static void choose_codes(const float *x, const double *wt, sub_block_fit fit, float d, float dmin,
                         uint8_t *scale_code, uint8_t *min_code, uint8_t *quants) {
  int center_scale = code_for(fit.scale, d), center_min = code_for(fit.min, dmin);
  double best_error = INFINITY;
  for (int ds = 0; ds < 3; ds++) {
    for (int dm = 0; dm < 3; dm++) {
      /* 0, -1, +1: the centre first, so it wins ties */
      int sc = center_scale + (ds == 2 ? 1 : -ds), m = center_min + (dm == 2 ? 1 : -dm);
      if (sc < 0 || sc > MAX_CODE || m < 0 || m > MAX_CODE)
        continue;
      float scale = d * (float)sc, min = dmin * (float)m;
      double values[MAX_QUANT + 1], error = 0;
      dequantized_values(scale, min, values);
      double inverse_scale = scale > 0 ? 1 / (double)scale : 0;
      uint8_t q[SUB_BLOCK_WEIGHTS];
      for (int i = 0; i < SUB_BLOCK_WEIGHTS; i++) {
        double sq_error;
        q[i] = exact_nearest_quant(x[i], inverse_scale, min, values, &sq_error);
        error += wt[i] * sq_error;
      }
      if (error < best_error) {
        best_error = error;
        *scale_code = (uint8_t)sc;
        *min_code = (uint8_t)m;
        for (int i = 0; i < SUB_BLOCK_WEIGHTS; i++)
          quants[i] = q[i];
      }
    }
  }
}

/* f16 super-scale for the largest sub-block value; 0 if it overflows f16.
 * Never rounds a positive value down to 0 (see "Limits" above). */
static uint16_t super_scale(double largest, int *overflow) {
  uint16_t h = ptxq_f32_to_f16((float)(largest / MAX_CODE));
  if ((h & 0x7FFF) == 0x7C00)
    *overflow = 1;
  if (h == 0 && largest > 0)
    h = F16_SMALLEST_SUBNORMAL;
  return h;
}

/* Sub-block j's codes into the 12 bytes (the inverse of formats.md's
 * unpacking: codes 4..7 keep their low nibbles in bytes 8..11 and their
 * top 2 bits in the spare top bits of bytes 0..7). */
static void pack_codes(const uint8_t *scale_codes, const uint8_t *min_codes, uint8_t *packed) {
  for (int j = 0; j < 4; j++) {
    packed[j] = (uint8_t)(scale_codes[j] | ((scale_codes[j + 4] >> 4) << 6));
    packed[j + 4] = (uint8_t)(min_codes[j] | ((min_codes[j + 4] >> 4) << 6));
    packed[j + 8] = (uint8_t)((scale_codes[j + 4] & 0x0F) | ((min_codes[j + 4] & 0x0F) << 4));
  }
}

static int quantize_block(const float *x, uint8_t *block) {
  double wt[PTXQ_QK_K];
  sub_block_fit fits[SUB_BLOCKS];
  double largest_scale = 0, largest_min = 0;
  for (int i = 0; i < PTXQ_QK_K; i++)
    wt[i] = error_weight(x[i]);
  for (int j = 0; j < SUB_BLOCKS; j++) {
    fits[j] = fit_sub_block(x + SUB_BLOCK_WEIGHTS * j, wt + SUB_BLOCK_WEIGHTS * j);
    largest_scale = fmax(largest_scale, fits[j].scale);
    largest_min = fmax(largest_min, fits[j].min);
  }

  int overflow = 0;
  uint16_t d16 = super_scale(largest_scale, &overflow);
  uint16_t dmin16 = super_scale(largest_min, &overflow);
  if (overflow)
    return PTXQ_ERR_INVALID;
  float d = ptxq_f16_to_f32(d16), dmin = ptxq_f16_to_f32(dmin16);

  uint8_t scale_codes[SUB_BLOCKS], min_codes[SUB_BLOCKS], quants[PTXQ_QK_K];
  for (int j = 0; j < SUB_BLOCKS; j++)
    choose_codes(x + SUB_BLOCK_WEIGHTS * j, wt + SUB_BLOCK_WEIGHTS * j, fits[j], d, dmin,
                 &scale_codes[j], &min_codes[j], quants + SUB_BLOCK_WEIGHTS * j);

  block[0] = (uint8_t)(d16 & 0xFF);
  block[1] = (uint8_t)(d16 >> 8);
  block[2] = (uint8_t)(dmin16 & 0xFF);
  block[3] = (uint8_t)(dmin16 >> 8);
  pack_codes(scale_codes, min_codes, block + 4);
  /* qs[32c + l]: low nibble weight 64c + l, high nibble weight 64c + 32 + l */
  uint8_t *qs = block + 16;
  for (int c = 0; c < 4; c++)
    for (int l = 0; l < 32; l++)
      qs[32 * c + l] = (uint8_t)(quants[64 * c + l] | (quants[64 * c + 32 + l] << 4));
  return PTXQ_OK;
}

int ptxq_ref_quantize_q4k(const float *in, size_t count, void *blocks) {
  if (in == NULL || blocks == NULL || count == 0 || count % PTXQ_QK_K != 0)
    return PTXQ_ERR_INVALID;
  for (size_t i = 0; i < count; i++)
    if (!isfinite(in[i]))
      return PTXQ_ERR_INVALID; /* checked first, so nothing is written */
  uint8_t *out = blocks;
  for (size_t b = 0; b < count / PTXQ_QK_K; b++) {
    int status = quantize_block(in + b * PTXQ_QK_K, out + b * PTXQ_Q4_K_BLOCK_BYTES);
    if (status != PTXQ_OK)
      return status;
  }
  return PTXQ_OK;
}
