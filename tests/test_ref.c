/*
 * test_ref.c: tests of the CPU reference (src/ref/), suite "unit".
 *
 * The reference defines what every GPU kernel must compute, so it is held
 * to independent evidence: f16 against a direct formula for every half and
 * the nearest-value property on random floats; the Q4_K dequantizer
 * against hand-built blocks and the fixture written by the format's own
 * reference implementation (../shared/fixtures); the quantizer against
 * measured error bounds on random data; the GEMV against hand-computed
 * products and the fixture's fp64 products.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "ptxq.h"
#include "idp_model.h"
#include "ref_common.h"

/* ---- helpers ------------------------------------------------------------ */

static float float_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

/* ---- f16 ---------------------------------------------------------------- */

Test(f16, every_finite_half_decodes_to_its_value) {
  for (uint32_t h = 0; h < 65536; h++) {
    if (((h >> 10) & 0x1F) == 0x1F)
      continue;
    float f = ptxq_f16_to_f32((uint16_t)h);
    cr_assert_eq((double)f, half_value((uint16_t)h), "half 0x%04x decoded as %a, expected %a", h,
                 (double)f, half_value((uint16_t)h));
    cr_assert_eq(signbit(f) != 0, (h & 0x8000) != 0, "half 0x%04x lost its sign", h);
  }
}

Test(f16, every_half_round_trips) {
  for (uint32_t h = 0; h < 65536; h++) {
    float f = ptxq_f16_to_f32((uint16_t)h);
    uint16_t back = ptxq_f32_to_f16(f);
    int is_nan = ((h >> 10) & 0x1F) == 0x1F && (h & 0x3FF) != 0;
    if (is_nan) {
      cr_assert(isnan(f), "NaN half 0x%04x decoded as %a", h, (double)f);
      cr_assert((back & 0x7C00) == 0x7C00 && (back & 0x3FF) != 0,
                "NaN half 0x%04x came back as 0x%04x, not a NaN", h, back);
      cr_assert_eq(back & 0x8000, h & 0x8000, "NaN half 0x%04x lost its sign", h);
    } else {
      cr_assert_eq(back, h, "half 0x%04x -> %a -> 0x%04x", h, (double)f, back);
    }
  }
  cr_assert(isinf(ptxq_f16_to_f32(0x7C00)) && ptxq_f16_to_f32(0x7C00) > 0);
  cr_assert(isinf(ptxq_f16_to_f32(0xFC00)) && ptxq_f16_to_f32(0xFC00) < 0);
}

Test(f16, rounding_ties_to_even) {
  static const struct {
    float in;
    uint16_t out;
  } cases[] = {
      {1.0f + 0x1p-11f, 0x3C00},           /* tie between 1 and 1+2^-10: even is 1 */
      {1.0f + 3 * 0x1p-11f, 0x3C02},       /* tie between 0x3C01 and 0x3C02: even 0x3C02 */
      {1.0f + 0x1p-11f + 0x1p-23f, 0x3C01}, /* just above the tie */
      {1.0f + 0x1p-11f - 0x1p-23f, 0x3C00}, /* just below the tie */
      {-(1.0f + 3 * 0x1p-11f), 0xBC02},
      {2049.0f, 0x6800},                   /* 2048 + half ulp (2): even is 2048 */
      {2051.0f, 0x6802},                   /* 2050 + 1: tie, even is 2052 */
      {3 * 0x1p-25f, 0x0002},              /* subnormal tie 1.5 ulp: even is 2 */
      {5 * 0x1p-25f, 0x0002},              /* subnormal tie 2.5 ulp: even is 2 */
      {0x1p-14f - 0x1p-25f, 0x0400},       /* tie between largest subnormal and 2^-14 */
      {0x1p-14f, 0x0400},
      {0.1f, 0x2E66},
      {-0.0f, 0x8000},
      {0.0f, 0x0000},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    uint16_t h = ptxq_f32_to_f16(cases[i].in);
    cr_assert_eq(h, cases[i].out, "f16(%a) = 0x%04x, expected 0x%04x", (double)cases[i].in, h,
                 cases[i].out);
  }
}

Test(f16, overflow_and_underflow) {
  cr_assert_eq(ptxq_f32_to_f16(65504.0f), 0x7BFF);
  cr_assert_eq(ptxq_f32_to_f16(65519.996f), 0x7BFF, "below the halfway point stays finite");
  cr_assert_eq(ptxq_f32_to_f16(65520.0f), 0x7C00, "the tie with 2^16 rounds to inf");
  cr_assert_eq(ptxq_f32_to_f16(1e10f), 0x7C00);
  cr_assert_eq(ptxq_f32_to_f16(-1e10f), 0xFC00);
  cr_assert_eq(ptxq_f32_to_f16(INFINITY), 0x7C00);
  cr_assert_eq(ptxq_f32_to_f16(-INFINITY), 0xFC00);
  cr_assert_eq(ptxq_f32_to_f16(0x1p-24f), 0x0001, "smallest subnormal");
  cr_assert_eq(ptxq_f32_to_f16(0x1p-25f), 0x0000, "half the smallest subnormal ties to 0");
  cr_assert_eq(ptxq_f32_to_f16(float_from_bits(0x33000001)), 0x0001, "just above the tie");
  cr_assert_eq(ptxq_f32_to_f16(-0x1p-26f), 0x8000, "underflow keeps the sign");
  cr_assert_eq(ptxq_f32_to_f16(1e-30f), 0x0000);
  cr_assert_eq(ptxq_f32_to_f16(float_from_bits(0x00000001)), 0x0000, "f32 subnormal");
  uint16_t nan = ptxq_f32_to_f16(NAN);
  cr_assert((nan & 0x7C00) == 0x7C00 && (nan & 0x3FF) != 0, "NaN became 0x%04x", nan);
  /* A NaN whose payload lives only in the low 13 bits must stay a NaN. */
  nan = ptxq_f32_to_f16(float_from_bits(0x7F800001));
  cr_assert((nan & 0x7C00) == 0x7C00 && (nan & 0x3FF) != 0, "NaN became 0x%04x", nan);
}

/* On random floats over the whole f16 range (and below it), the result is
 * the nearest half, ties to the even mantissa. */
Test(f16, nearest_half_on_random_floats) {
  rng r = {42};
  for (int n = 0; n < 1000000; n++) {
    uint32_t exponent = 95 + (uint32_t)(rng_next(&r) % 48); /* 2^-32 .. 2^15 */
    uint32_t bits = (exponent << 23) | (uint32_t)(rng_next(&r) & 0x7FFFFF);
    if (n % 4 == 0)
      bits &= ~UINT32_C(0xFFF); /* many exact ties and near-ties */
    bits |= (uint32_t)(rng_next(&r) & 1) << 31;
    float f = float_from_bits(bits);
    uint16_t h = ptxq_f32_to_f16(f);
    cr_assert_eq(h & 0x8000, (bits >> 16) & 0x8000, "sign of f16(%a)", (double)f);
    uint16_t magnitude = h & 0x7FFF;
    if ((bits & 0x7FFFFFFF) >= 0x477FF000) { /* at or past 65520: overflow */
      cr_assert_eq(magnitude, 0x7C00, "f16(%a) = 0x%04x, expected inf", (double)f, h);
      continue;
    }
    cr_assert(magnitude < 0x7C00, "f16(%a) = 0x%04x is not finite", (double)f, h);
    double error = fabs(fabs((double)f) - half_value(magnitude));
    for (int step = -1; step <= 1; step += 2) {
      int neighbour = magnitude + step;
      if (neighbour < 0 || neighbour >= 0x7C00)
        continue;
      double other = fabs(fabs((double)f) - half_value((uint16_t)neighbour));
      cr_assert(error <= other, "f16(%a) = 0x%04x but 0x%04x is nearer", (double)f, h,
                neighbour);
      cr_assert(error != other || (magnitude & 1) == 0,
                "f16(%a) = 0x%04x: a tie must go to the even neighbour", (double)f, h);
    }
  }
}

/* ---- Q4_K dequantization --------------------------------------------------- */

/* Packed scale bytes whose codes were worked out by hand from formats.md;
 * they use the top 2 bits of bytes 0..7 (codes >= 16 of sub-blocks 4..7). */
static const uint8_t hand_scales[12] = {0xC1, 0x45, 0x91, 0x3F, 0x80, 0x49,
                                        0x5F, 0xFE, 0x21, 0x3F, 0x02, 0xC4};
static const int hand_sc[8] = {1, 5, 17, 63, 49, 31, 34, 4};
static const int hand_m[8] = {0, 9, 31, 62, 34, 19, 16, 60};

static void build_hand_block(uint8_t block[PTXQ_Q4_K_BLOCK_BYTES]) {
  put_le16(block, 0x3800);     /* d = 0.5 */
  put_le16(block + 2, 0x3400); /* dmin = 0.25 */
  memcpy(block + 4, hand_scales, sizeof hand_scales);
  for (int b = 0; b < 128; b++)
    block[16 + b] = (uint8_t)(b * 37 + 11);
}

Test(dequant, hand_built_block) {
  uint8_t block[2 * PTXQ_Q4_K_BLOCK_BYTES];
  build_hand_block(block);
  /* Second block: same codes, negative d and a different dmin. */
  build_hand_block(block + PTXQ_Q4_K_BLOCK_BYTES);
  put_le16(block + PTXQ_Q4_K_BLOCK_BYTES, 0xC000);     /* d = -2 */
  put_le16(block + PTXQ_Q4_K_BLOCK_BYTES + 2, 0x3C00); /* dmin = 1 */
  float out[2 * PTXQ_QK_K];
  cr_assert_eq(ptxq_ref_dequantize_q4k(block, 2, out), PTXQ_OK);

  const double d[2] = {0.5, -2.0}, dmin[2] = {0.25, 1.0};
  for (int b = 0; b < 2; b++) {
    for (int i = 0; i < PTXQ_QK_K; i++) {
      /* weight i -> byte and nibble, the other way round from the code */
      int j = i / 32, l = i % 32;
      uint8_t byte = block[b * PTXQ_Q4_K_BLOCK_BYTES + 16 + 32 * (j / 2) + l];
      int q = (j % 2) ? byte >> 4 : byte & 0x0F;
      double expected = d[b] * hand_sc[j] * q - dmin[b] * hand_m[j]; /* all exact */
      cr_assert_eq((double)out[b * PTXQ_QK_K + i], expected,
                   "block %d weight %d: %.9g, expected %.9g", b, i, (double)out[b * 256 + i],
                   expected);
    }
  }
}

/* Every weight is the exact d*sc*q - dmin*m rounded once to f32: the
 * products cannot round (f16 significand 11 bits, code 6, quant 4), which
 * is what lets a kernel use an fma or any order of the products. The
 * exponents are kept within 2^21 of each other so the double subtraction
 * is exact too and one rounding to float is the whole story. */
Test(dequant, weights_are_the_exact_value_rounded_once) {
  rng r = {11};
  uint8_t block[PTXQ_Q4_K_BLOCK_BYTES];
  float out[PTXQ_QK_K];
  for (int trial = 0; trial < 2000; trial++) {
    for (int b = 0; b < PTXQ_Q4_K_BLOCK_BYTES; b++)
      block[b] = (uint8_t)rng_next(&r);
    if (trial % 2) { /* normal d and dmin */
      put_le16(block, random_half(&r, 5, 25));
      put_le16(block + 2, random_half(&r, 5, 25));
    } else { /* subnormal d */
      put_le16(block, random_half(&r, 0, 0));
      put_le16(block + 2, random_half(&r, 1, 12));
    }
    cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, out), PTXQ_OK);
    double d = ptxq_f16_to_f32((uint16_t)(block[0] | block[1] << 8));
    double dmin = ptxq_f16_to_f32((uint16_t)(block[2] | block[3] << 8));
    for (int i = 0; i < PTXQ_QK_K; i++) {
      int j = i / 32, l = i % 32;
      const uint8_t *s = block + 4;
      int sc = j < 4 ? s[j] & 63 : (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4);
      int m = j < 4 ? s[j + 4] & 63 : (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
      uint8_t byte = block[16 + 32 * (j / 2) + l];
      int q = (j % 2) ? byte >> 4 : byte & 0x0F;
      float expected = (float)(d * sc * q - dmin * m);
      cr_assert_eq(out[i], expected, "trial %d weight %d: %a, expected %a", trial, i,
                   (double)out[i], (double)expected);
    }
  }
}

Test(dequant, rejects_bad_arguments) {
  uint8_t block[PTXQ_Q4_K_BLOCK_BYTES];
  float out[PTXQ_QK_K];
  build_hand_block(block);
  cr_assert_eq(ptxq_ref_dequantize_q4k(NULL, 1, out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q4k(block, 0, out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q4k(block, SIZE_MAX / 100, out), PTXQ_ERR_INVALID,
               "a count whose output size overflows");
  const uint16_t non_finite[] = {0x7C00, 0xFC00, 0x7E00, 0x7C01};
  for (size_t i = 0; i < sizeof non_finite / sizeof non_finite[0]; i++) {
    build_hand_block(block);
    put_le16(block, non_finite[i]);
    cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, out), PTXQ_ERR_INVALID, "d = 0x%04x",
                 non_finite[i]);
    build_hand_block(block);
    put_le16(block + 2, non_finite[i]);
    cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, out), PTXQ_ERR_INVALID, "dmin = 0x%04x",
                 non_finite[i]);
  }
}

/* ---- Q4_K quantization ------------------------------------------------------ */

typedef struct quant_error {
  double rms_ratio;     /* RMS(dequant - x) / RMS(x) */
  double worst_sub;     /* max over sub-blocks of max |error| / (range / 15) */
} quant_error;

/* Quantizes, dequantizes and measures; range of a sub-block is
 * max - min(0, min), the span the grid has to cover. */
static quant_error quantize_and_measure(const float *x, size_t count) {
  uint8_t *blocks = malloc(count / PTXQ_QK_K * PTXQ_Q4_K_BLOCK_BYTES);
  float *y = malloc(count * sizeof *y);
  cr_assert(blocks != NULL && y != NULL);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, count, blocks), PTXQ_OK);
  cr_assert_eq(ptxq_ref_dequantize_q4k(blocks, count / PTXQ_QK_K, y), PTXQ_OK);
  for (size_t b = 0; b < count / PTXQ_QK_K; b++) {
    const uint8_t *block = blocks + b * PTXQ_Q4_K_BLOCK_BYTES;
    float d = ptxq_f16_to_f32((uint16_t)(block[0] | block[1] << 8));
    float dmin = ptxq_f16_to_f32((uint16_t)(block[2] | block[3] << 8));
    cr_assert(isfinite(d) && d >= 0 && isfinite(dmin) && dmin >= 0, "block %zu: d %g dmin %g", b,
              (double)d, (double)dmin);
  }
  quant_error e = {0, 0};
  double error_sq = 0, input_sq = 0;
  for (size_t s = 0; s < count / 32; s++) {
    double lo = 0, hi = x[32 * s], worst = 0;
    for (size_t i = 32 * s; i < 32 * s + 32; i++) {
      double error = (double)y[i] - x[i];
      error_sq += error * error;
      input_sq += (double)x[i] * x[i];
      lo = fmin(lo, x[i]);
      hi = fmax(hi, x[i]);
      worst = fmax(worst, fabs(error));
    }
    if (hi > lo)
      e.worst_sub = fmax(e.worst_sub, worst / ((hi - lo) / 15));
  }
  e.rms_ratio = input_sq > 0 ? sqrt(error_sq / input_sq) : sqrt(error_sq);
  free(blocks);
  free(y);
  return e;
}

typedef enum distribution { GAUSSIAN, UNIFORM } distribution;

static void check_random_data(distribution dist, double magnitude, double rms_bound,
                              double sub_bound, const char *what) {
  static const size_t sizes[] = {256, 512, 768, 4096 * 3};
  double worst_rms = 0, worst_sub = 0;
  for (size_t si = 0; si < sizeof sizes / sizeof sizes[0]; si++) {
    for (uint64_t seed = 1; seed <= 16; seed++) {
      size_t count = sizes[si];
      float *x = malloc(count * sizeof *x);
      cr_assert(x != NULL);
      rng r = {seed * 7919 + si};
      for (size_t i = 0; i < count; i++)
        x[i] = (float)(magnitude * (dist == GAUSSIAN ? rng_gauss(&r) : 2 * rng_unit(&r) - 1));
      quant_error e = quantize_and_measure(x, count);
      free(x);
      cr_assert(e.rms_ratio <= rms_bound, "%s, %zu weights, seed %llu: RMS error ratio %.4f > %.4f",
                what, count, (unsigned long long)seed, e.rms_ratio, rms_bound);
      cr_assert(e.worst_sub <= sub_bound,
                "%s, %zu weights, seed %llu: a sub-block error of %.3f steps > %.3f", what, count,
                (unsigned long long)seed, e.worst_sub, sub_bound);
      worst_rms = fmax(worst_rms, e.rms_ratio);
      worst_sub = fmax(worst_sub, e.worst_sub);
    }
  }
  cr_log_info("quantizer, %s: worst RMS error ratio %.4f, worst sub-block error %.3f steps",
              what, worst_rms, worst_sub);
}

/* Bounds: the measured worst case (src/ref/quantize.c's header) plus about
 * 10% slack. A pure 16-level grid would have a sub-block error of at most
 * 0.5 step and an RMS ratio of ~0.058 (Gaussian); the least-squares fit may
 * clip an outlier when that lowers the total error, and the 6-bit codes
 * move the grid, hence about one step. A packing or nibble-order bug gives
 * errors of many steps, far outside these bounds. */
Test(quantize, gaussian_error_within_measured_bound) {
  check_random_data(GAUSSIAN, 1.0, 0.082, 1.25, "N(0,1)");
}

Test(quantize, uniform_error_within_measured_bound) {
  check_random_data(UNIFORM, 1.0, 0.062, 1.25, "U(-1,1)");
}

Test(quantize, huge_magnitudes) { check_random_data(GAUSSIAN, 1e4, 0.082, 1.25, "N(0,1e4^2)"); }

/* At 1e-6 the super-scale d (about 2e-9) is below the smallest f16
 * subnormal; the quantizer uses that subnormal, so the codes get coarse. */
Test(quantize, tiny_magnitudes) { check_random_data(GAUSSIAN, 1e-6, 0.092, 2.5, "N(0,1e-12)"); }

/* A constant c is w = d*sc*15 with d = f16(c / (15*63)) and sc = 63
 * (or -dmin*m for c < 0): off by at most half an f16 ulp of d, a relative
 * 2^-11, while d is a normal f16. Below that (|c| < ~0.06) d is a
 * subnormal, a multiple of 2^-24 rounded by up to half of that, which the
 * code 63 multiplies: up to 32 * 2^-24 = 2^-19 more. */
Test(quantize, constant_data) {
  static const float values[] = {0.0f, 0.37f, -2.5f, 1e4f, -1e-3f, 3e5f, -7e5f, 1e-6f};
  float x[PTXQ_QK_K], y[PTXQ_QK_K];
  uint8_t block[PTXQ_Q4_K_BLOCK_BYTES];
  double worst = 0;
  for (size_t v = 0; v < sizeof values / sizeof values[0]; v++) {
    for (int i = 0; i < PTXQ_QK_K; i++)
      x[i] = values[v];
    cr_assert_eq(ptxq_ref_quantize_q4k(x, PTXQ_QK_K, block), PTXQ_OK, "constant %g",
                 (double)values[v]);
    cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, y), PTXQ_OK);
    for (int i = 0; i < PTXQ_QK_K; i++) {
      double error = fabs((double)y[i] - values[v]);
      cr_assert(error <= 0x1p-11 * fabs((double)values[v]) + 0x1p-19,
                "constant %g came back as %g at %d", (double)values[v], (double)y[i], i);
      worst = fmax(worst, error / fmax(fabs((double)values[v]), 1e-30));
    }
  }
  cr_log_info("quantizer, constant data: worst relative error %.3g", worst);
}

/* Each sub-block constant, with different values (and signs) per sub-block.
 * The fit takes q = 15 and scale c/15 for a positive constant; its 6-bit
 * code is then off by up to half a code step d/2, so the error is up to
 * 15 * d / 2 with d = (largest scale)/63 = 3/(15*63): 3/126 = 0.0238 for
 * the 3.0 here, plus the f16 rounding of d. */
Test(quantize, constant_sub_blocks) {
  static const float values[8] = {1.5f, -0.75f, 0.01f, 3.0f, -3.0f, 0.2f, 0.0f, 2.9f};
  float x[PTXQ_QK_K], y[PTXQ_QK_K];
  uint8_t block[PTXQ_Q4_K_BLOCK_BYTES];
  for (int i = 0; i < PTXQ_QK_K; i++)
    x[i] = values[i / 32];
  cr_assert_eq(ptxq_ref_quantize_q4k(x, PTXQ_QK_K, block), PTXQ_OK);
  cr_assert_eq(ptxq_ref_dequantize_q4k(block, 1, y), PTXQ_OK);
  double worst = 0;
  for (int i = 0; i < PTXQ_QK_K; i++)
    worst = fmax(worst, fabs((double)y[i] - x[i]));
  cr_log_info("quantizer, constant sub-blocks: max error %.3g (largest value 3)", worst);
  cr_assert(worst <= 3.0 / 126 * 1.01, "max error %g", worst);
}

Test(quantize, deterministic_and_stable) {
  float x[4 * PTXQ_QK_K], y[4 * PTXQ_QK_K];
  uint8_t first[4 * PTXQ_Q4_K_BLOCK_BYTES], second[4 * PTXQ_Q4_K_BLOCK_BYTES];
  rng r = {7};
  for (int i = 0; i < 4 * PTXQ_QK_K; i++)
    x[i] = (float)rng_gauss(&r);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 4 * PTXQ_QK_K, first), PTXQ_OK);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 4 * PTXQ_QK_K, second), PTXQ_OK);
  cr_assert_arr_eq(first, second, sizeof first, "same input, different bytes");
  /* Quantizing already-quantized weights loses (almost) nothing more. */
  cr_assert_eq(ptxq_ref_dequantize_q4k(first, 4, y), PTXQ_OK);
  quant_error e = quantize_and_measure(y, 4 * PTXQ_QK_K);
  cr_assert(e.rms_ratio < 0.01, "re-quantizing Q4_K values: RMS error ratio %.4f", e.rms_ratio);
}

Test(quantize, rejects_bad_input) {
  float x[2 * PTXQ_QK_K];
  uint8_t blocks[2 * PTXQ_Q4_K_BLOCK_BYTES], untouched[sizeof blocks];
  rng r = {3};
  for (int i = 0; i < 2 * PTXQ_QK_K; i++)
    x[i] = (float)rng_gauss(&r);
  memset(untouched, 0xA5, sizeof untouched);

  const float non_finite[] = {NAN, INFINITY, -INFINITY};
  for (size_t v = 0; v < 3; v++) {
    for (int where = 0; where < 2 * PTXQ_QK_K; where += 2 * PTXQ_QK_K - 1) {
      float saved = x[where];
      x[where] = non_finite[v];
      memcpy(blocks, untouched, sizeof blocks);
      cr_assert_eq(ptxq_ref_quantize_q4k(x, 2 * PTXQ_QK_K, blocks), PTXQ_ERR_INVALID,
                   "%g at %d", (double)non_finite[v], where);
      cr_assert_arr_eq(blocks, untouched, sizeof blocks, "output written despite the error");
      x[where] = saved;
    }
  }
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 255, blocks), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 257, blocks), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 0, blocks), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_quantize_q4k(NULL, 256, blocks), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 256, NULL), PTXQ_ERR_INVALID);
  /* A range f16 super-scales cannot express (63 * 65504 per step) */
  x[5] = 1e9f;
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 256, blocks), PTXQ_ERR_INVALID);
  x[5] = -1e9f;
  cr_assert_eq(ptxq_ref_quantize_q4k(x, 256, blocks), PTXQ_ERR_INVALID);
}

/* ---- reference GEMV ------------------------------------------------------------ */

/* A row whose only non-zero sub-block is 5 (sc = 37, m = 20, both using
 * the high bits): even weights q = 3, odd q = 0. Everything else has
 * sc = m = 0, so the random nibbles there must contribute nothing. */
static void build_sparse_row(uint8_t block[PTXQ_Q4_K_BLOCK_BYTES], uint16_t d) {
  rng r = {d};
  for (int b = 0; b < PTXQ_Q4_K_BLOCK_BYTES; b++)
    block[b] = (uint8_t)rng_next(&r);
  put_le16(block, d);
  put_le16(block + 2, 0x3800); /* dmin = 0.5 */
  memset(block + 4, 0, 12);
  block[4 + 1] = 0x80; /* sc5 bits 4-5 = 2 */
  block[4 + 5] = 0x40; /* m5 bits 4-5 = 1 */
  block[4 + 9] = 0x45; /* sc5 bits 0-3 = 5, m5 bits 0-3 = 4 */
  for (int l = 0; l < 32; l++) /* sub-block 5 = high nibbles of qs[64..95] */
    block[16 + 64 + l] = (uint8_t)((l % 2 ? 0x00 : 0x30) | (block[16 + 64 + l] & 0x0F));
}

Test(gemv, hand_built_q4k) {
  uint8_t w[2 * PTXQ_Q4_K_BLOCK_BYTES];
  build_sparse_row(w, 0x4000);                        /* d = 2: 74q - 10 */
  build_sparse_row(w + PTXQ_Q4_K_BLOCK_BYTES, 0xC000); /* d = -2: -74q - 10 */
  float x[2 * PTXQ_QK_K];
  for (int i = 0; i < PTXQ_QK_K; i++) {
    x[i] = 1.0f;
    x[PTXQ_QK_K + i] = 0.5f;
  }
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 2, x, 2, y), PTXQ_OK);
  /* row 0: 16 * (222 - 10) + 16 * (-10) = 3232; row 1: 16 * -232 + 16 * -10 */
  const double expected[4] = {3232, -3872, 1616, -1936};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(y[i], expected[i], "y[%d] = %.17g, expected %.17g", i, y[i], expected[i]);
}

Test(gemv, hand_built_f32) {
  const float w[6] = {1, 2, 3, -4, 0.5f, 8};
  const float x[6] = {1, -1, 2, 0.25f, 4, -3};
  const double expected[4] = {5, 11.5, -0.75, -23};
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F32, w, 3, 2, x, 2, y), PTXQ_OK);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(y[i], expected[i], "y[%d] = %.17g, expected %.17g", i, y[i], expected[i]);
}

/* Odd shapes against a plain double product over the dequantized weights. */
static void check_against_dequantized(ptxq_type type, uint32_t k, uint32_t n, uint32_t m) {
  rng r = {k * 31 + n * 7 + m};
  float *dense = malloc((size_t)n * k * sizeof *dense);
  float *x = malloc((size_t)m * k * sizeof *x);
  double *y = malloc((size_t)m * n * sizeof *y);
  uint8_t *blocks = malloc((size_t)n * k / PTXQ_QK_K * PTXQ_Q4_K_BLOCK_BYTES + 1);
  cr_assert(dense && x && y && blocks);
  for (size_t i = 0; i < (size_t)n * k; i++)
    dense[i] = (float)rng_gauss(&r);
  for (size_t i = 0; i < (size_t)m * k; i++)
    x[i] = (float)(2 * rng_unit(&r) - 1);
  const void *w = dense;
  if (type == PTXQ_TYPE_Q4_K) {
    cr_assert_eq(ptxq_ref_quantize_q4k(dense, (size_t)n * k, blocks), PTXQ_OK);
    cr_assert_eq(ptxq_ref_dequantize_q4k(blocks, (size_t)n * k / PTXQ_QK_K, dense), PTXQ_OK);
    w = blocks;
  }
  cr_assert_eq(ptxq_ref_gemv(type, w, k, n, x, m, y), PTXQ_OK);
  assert_dense_product(type == PTXQ_TYPE_Q4_K ? "Q4_K" : "F32", dense, x, y, k, n, m);
  free(dense);
  free(x);
  free(y);
  free(blocks);
}

Test(gemv, matches_dequantized_product_odd_shapes) {
  check_against_dequantized(PTXQ_TYPE_Q4_K, 256, 1, 1);
  check_against_dequantized(PTXQ_TYPE_Q4_K, 768, 5, 3);
  check_against_dequantized(PTXQ_TYPE_Q4_K, 1280, 7, 8);
  check_against_dequantized(PTXQ_TYPE_Q4_K, 512, 5, 16); /* the kernels' largest batch */
  check_against_dequantized(PTXQ_TYPE_Q4_K, 768, 3, 11);
  check_against_dequantized(PTXQ_TYPE_F32, 300, 7, 2);
  check_against_dequantized(PTXQ_TYPE_F32, 1, 1, 1);
  check_against_dequantized(PTXQ_TYPE_F32, 513, 3, 9);
}

Test(gemv, rejects_bad_arguments) {
  uint8_t w[2 * PTXQ_Q4_K_BLOCK_BYTES];
  build_sparse_row(w, 0x4000);
  build_sparse_row(w + PTXQ_Q4_K_BLOCK_BYTES, 0x4000);
  float x[512] = {0};
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, NULL, 256, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 1, NULL, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 1, x, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 0, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 0, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 1, x, 0, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 100, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 384, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 100, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 128, 1, x, 1, y), PTXQ_OK); /* 256 bytes of w */
  cr_assert_eq(ptxq_ref_gemv((ptxq_type)99, w, 256, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv((ptxq_type)-1, w, 256, 1, x, 1, y), PTXQ_ERR_INVALID);
  put_le16(w + PTXQ_Q4_K_BLOCK_BYTES, 0x7E00); /* NaN d in row 1 */
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 2, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, 256, 1, x, 1, y), PTXQ_OK, "row 0 is fine");
}

/* ---- the shared fixture ------------------------------------------------------------ */

static uint32_t ggml_type_of(const char *name) {
  if (strcmp(name, "q4_K") == 0)
    return PTXQ_TYPE_Q4_K;
  if (strcmp(name, "q6_K") == 0)
    return PTXQ_TYPE_Q6_K;
  if (strcmp(name, "f32") == 0)
    return PTXQ_TYPE_F32;
  return UINT32_MAX;
}

Test(fixture, tensor_table_agrees_with_expected) {
  fixture_gguf gguf;
  fixture_expected expected;
  load_fixture(&gguf, &expected);
  cr_assert_eq(gguf.version, 3);
  cr_assert_eq(expected.count, 6, "expected values for %zu tensors", expected.count);
  for (size_t i = 0; i < expected.count; i++) {
    const fixture_expected_tensor *e = &expected.tensors[i];
    const fixture_tensor *t = fixture_gguf_find(&gguf, e->name);
    cr_assert(t != NULL, "%s is not in the GGUF file", e->name);
    cr_assert_eq(t->type, ggml_type_of(e->type), "%s: type %u vs %s", e->name, t->type, e->type);
    cr_assert_eq(t->dims[0], e->k, "%s: k", e->name);
    cr_assert_eq(t->rows, e->n, "%s: n", e->name);
    cr_assert_eq(t->row_bytes, e->row_bytes, "%s: row_bytes", e->name);
    cr_assert(t->data != NULL, "%s: no data", e->name);
    cr_assert_eq(e->row0_count, 16, "%s: row0_first16", e->name);
    cr_assert_eq(e->y_count, e->n, "%s: %zu y values", e->name, e->y_count);
  }
  fixture_expected_free(&expected);
  fixture_gguf_close(&gguf);
}

/* Dequantized sums, row 0 and W.x for one Q4_K or F32 tensor. */
static void check_fixture_tensor(const fixture_tensor *t, const fixture_expected_tensor *e) {
  size_t count = (size_t)e->n * e->k;
  float *w = malloc(count * sizeof *w);
  float *x = malloc(e->k * sizeof *x);
  double *y = malloc(e->n * sizeof *y);
  cr_assert(w && x && y);
  ptxq_type type = (ptxq_type)t->type;
  if (type == PTXQ_TYPE_Q4_K)
    cr_assert_eq(ptxq_ref_dequantize_q4k(t->data, count / PTXQ_QK_K, w), PTXQ_OK, "%s", e->name);
  else
    memcpy(w, t->data, count * sizeof *w); /* F32, little-endian host */

  assert_fixture_summary(e, w, count);

  for (uint32_t i = 0; i < e->k; i++)
    x[i] = fixture_x(i);
  cr_assert_eq(ptxq_ref_gemv(type, t->data, e->k, e->n, x, 1, y), PTXQ_OK, "%s", e->name);
  double worst = 0, largest = 0;
  for (uint32_t r = 0; r < e->n; r++) {
    worst = fmax(worst, fabs(y[r] - e->y[r]));
    largest = fmax(largest, fabs(e->y[r]));
  }
  cr_assert(worst <= 1e-12 * largest, "%s: max |y - expected| = %.3g, max |expected| = %.3g",
            e->name, worst, largest);
  free(w);
  free(x);
  free(y);
}

Test(fixture, q4k_and_f32_tensors_match_expected) {
  fixture_gguf gguf;
  fixture_expected expected;
  load_fixture(&gguf, &expected);
  int checked = 0;
  for (size_t i = 0; i < expected.count; i++) {
    const fixture_expected_tensor *e = &expected.tensors[i];
    const fixture_tensor *t = fixture_gguf_find(&gguf, e->name);
    cr_assert(t != NULL, "%s is not in the GGUF file", e->name);
    /* Q6_K (blk.0.ffn_down.weight) has no reference yet: a later issue. */
    if (t->type != PTXQ_TYPE_Q4_K && t->type != PTXQ_TYPE_F32)
      continue;
    check_fixture_tensor(t, e);
    checked++;
  }
  cr_assert_eq(checked, 5, "checked %d Q4_K/F32 tensors, the fixture has 5", checked);
  fixture_expected_free(&expected);
  fixture_gguf_close(&gguf);
}

Test(fixture, input_vector_formula) {
  cr_assert_eq(fixture_x(0), -50.0f / 32.0f);
  cr_assert_eq(fixture_x(1), (37.0f - 50.0f) / 32.0f);
  cr_assert_eq(fixture_x(3), (111.0f - 101.0f - 50.0f) / 32.0f);
}

/* The idp=1 kernel's arithmetic (tests/idp_model.h, which the gpu suite
 * holds the kernel to bit for bit) is within the GEMV tolerance of the fp64
 * reference: random Q4_K rows, x whose chunks' magnitudes range over 2^-100
 * .. 2^100 (each chunk's own scale), k from one super-block to 14336, lanes
 * with several chunks and none; and a NaN or an infinity in x makes its
 * batch row's outputs NaN, as fp32 products would (rows of other batch rows
 * stay finite). */
Test(ref, idp_model_is_within_the_tolerance_of_the_fp64_reference) {
  static const struct { uint32_t k, n, m; } shapes[] = {{256, 7, 2}, {2304, 33, 3}, {14336, 5, 1}, {4096, 9, 2}};
  rng r = {2026};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const uint32_t k = shapes[s].k, n = shapes[s].n, m = shapes[s].m;
    size_t count = (size_t)k * n, bytes = 0;
    cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, n, &bytes), PTXQ_OK);
    float *values = malloc(count * sizeof *values), *x = malloc((size_t)m * k * sizeof *x);
    float *y = malloc((size_t)m * n * sizeof *y);
    double *ref = malloc((size_t)m * n * sizeof *ref);
    uint8_t *w = malloc(bytes);
    cr_assert(values && x && y && ref && w);
    for (size_t i = 0; i < count; i += 32) {
      const float scale = rng_uniform(&r, 0.01f, 2.0f), offset = rng_uniform(&r, -0.5f, 0.5f);
      for (size_t j = i; j < i + 32; j++) values[j] = offset + scale * rng_uniform(&r, -1.0f, 1.0f);
    }
    cr_assert_eq(ptxq_ref_quantize_q4k(values, count, w), PTXQ_OK);
    for (size_t c = 0; c < (size_t)m * k / 64; c++) {
      const float magnitude = ldexpf(1.0f, (int)(rng_uniform(&r, -100.0f, 100.0f)));
      for (size_t i = 64 * c; i < 64 * c + 64; i++) x[i] = magnitude * rng_uniform(&r, -1.0f, 1.0f);
    }
    idp_q4k_gemv_model(w, k, n, x, m, y);
    cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, k, n, x, m, ref), PTXQ_OK);
    for (uint32_t b = 0; b < m; b++) { /* each batch row against its own largest |y| */
      double worst = 0, largest = 0;
      for (uint32_t i = 0; i < n; i++) {
        const double got = y[(size_t)b * n + i], want = ref[(size_t)b * n + i];
        cr_assert(isfinite(got), "k=%u n=%u: y[%u][%u] = %g", k, n, b, i, got);
        worst = fmax(worst, fabs(got - want));
        largest = fmax(largest, fabs(want));
      }
      cr_assert(worst <= 1e-5 * largest, "k=%u n=%u row %u: max |y - ref| %.3g against max |ref| %.3g", k, n, b,
                worst, largest);
    }
    x[k / 2] = (s % 2) ? INFINITY : NAN; /* batch row 0 */
    idp_q4k_gemv_model(w, k, n, x, m, y);
    for (uint32_t i = 0; i < n; i++) cr_assert(isnan(y[i]), "k=%u: a non-finite x gives y[0][%u] = %g", k, i, y[i]);
    for (size_t i = n; i < (size_t)m * n; i++) cr_assert(isfinite(y[i]), "k=%u: y[%zu] = %g", k, i, y[i]);
    free(values), free(x), free(y), free(ref), free(w);
  }
}
