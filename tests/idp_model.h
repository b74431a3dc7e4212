/*
 * idp_model.h: a CPU model, bit for bit, of the Q4_K GEMV with integer dot
 * products (key option idp=1: ptxgen.h; gemv.c gemv_stage_int and
 * gemv_q4k.c q4k_idp_compute).
 *
 * Per batch row and chunk g of 64 weights (super-block g/4, part c = g%4:
 * quant bytes 32c.. whose low nibbles multiply x[64g + i] and high nibbles
 * x[64g + 32 + i], i < 32):
 *   - e from the chunk's largest |x| (its float exponent field E: e + 127 =
 *     min(275 - E, 254)), X_i = the low bits of fmaf(x_i, 2^e, 1.5 * 2^23);
 *   - IA = 16 (sc0 sum q_lo X + sc1 sum q_hi X) and B = 16 (m0 U0 + m1 U1),
 *     U the sub-blocks' sums of X: exact integers;
 *   - the chunk's c = (IA d - B dmin) 2^(-e-4) in double (d IA and dmin B
 *     exact, one rounding), a NaN where the chunk's x holds a NaN or an
 *     infinity.
 * Lane l adds its chunks g = l (mod 32) in increasing g in double, the 32
 * lanes are added by the butterfly (16, 8, 4, 2, 1 apart), and y is that
 * sum rounded to float. Header-only, like the other test helpers.
 */
#ifndef PTXQ_TESTS_IDP_MODEL_H
#define PTXQ_TESTS_IDP_MODEL_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "ptxq.h"

static inline uint32_t idp_float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float idp_float_of(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/* Sub-block j's 6-bit scale and min from a Q4_K super-block's 12 packed bytes (formats.md). */
static inline void idp_scale_min(const uint8_t *s, int j, int *sc, int *mn) {
  if (j < 4) {
    *sc = s[j] & 63;
    *mn = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    *mn = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

/* Chunk g of one Q4_K row (`row`: its super-blocks) against the 64 x values at x. */
static inline double idp_chunk(const uint8_t *row, uint32_t g, const float *x) {
  const uint8_t *block = row + (size_t)(g / 4) * 144;
  const uint32_t c = g % 4;
  float amax = 0.0f;
  int nonfinite = 0;
  for (int i = 0; i < 64; i++) {
    if (!isfinite(x[i])) nonfinite = 1;
    else if (fabsf(x[i]) > amax) amax = fabsf(x[i]);
  }
  const uint32_t E = nonfinite ? 255u : idp_float_bits(amax) >> 23;
  const uint32_t eb = 275u - E < 254u ? 275u - E : 254u; /* e + 127 */
  const float up = idp_float_of(eb << 23);
  int32_t X[64];
  for (int i = 0; i < 64; i++) X[i] = (int32_t)(idp_float_bits(fmaf(x[i], up, 12582912.0f)) - 0x4B400000u);
  int sc0, mn0, sc1, mn1;
  idp_scale_min(block + 4, (int)(2 * c), &sc0, &mn0);
  idp_scale_min(block + 4, (int)(2 * c + 1), &sc1, &mn1);
  int64_t lo = 0, hi = 0, u0 = 0, u1 = 0;
  for (int i = 0; i < 32; i++) {
    const uint8_t q = block[16 + 32 * c + (uint32_t)i];
    lo += (int64_t)(q & 15) * X[i];
    hi += (int64_t)(q >> 4) * X[32 + i];
    u0 += X[i];
    u1 += X[32 + i];
  }
  const int64_t ia = 16 * (sc0 * lo + sc1 * hi), b = 16 * (mn0 * u0 + mn1 * u1);
  const double d = ptxq_f16_to_f32((uint16_t)(block[0] | block[1] << 8));
  const double dmin = ptxq_f16_to_f32((uint16_t)(block[2] | block[3] << 8));
  const double scale = nonfinite ? NAN : ldexp(1.0, 123 - (int)eb);
  double contribution = (double)ia * d - (double)b * dmin;
  return contribution * scale;
}

/* y[m][n] = x[m][k] . W[n][k]^T as the idp=1 kernel computes it (W: n rows of k/256 Q4_K super-blocks). */
static inline void idp_q4k_gemv_model(const uint8_t *w, uint32_t k, uint32_t n, const float *x, uint32_t m,
                                      float *y) {
  const uint32_t chunks = k / 64;
  for (uint32_t r = 0; r < m; r++)
    for (uint32_t row = 0; row < n; row++) {
      double lane[32] = {0};
      for (uint32_t g = 0; g < chunks; g++)
        lane[g % 32] += idp_chunk(w + (size_t)row * (k / 256) * 144, g, x + (size_t)r * k + 64 * g);
      for (int off = 16; off >= 1; off /= 2) {
        double next[32];
        for (int l = 0; l < 32; l++) next[l] = lane[l] + lane[l ^ off];
        memcpy(lane, next, sizeof lane);
      }
      y[(size_t)r * n + row] = (float)lane[0];
    }
}

#endif
