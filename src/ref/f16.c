/*
 * f16.c: exact IEEE binary16 <-> binary32 conversions in portable C.
 *
 * Q4_K stores its super-block scales as binary16; the CPU reference, the
 * quantizer and the tests need conversions that do not depend on the host
 * having _Float16 or F16C instructions. Everything is done on the bit
 * patterns, so the result is the same on every compiler and every flag set.
 *
 * binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits.
 * binary32: 1 sign, 8 exponent (bias 127), 23 mantissa bits.
 */
#include <stdint.h>
#include <string.h>

#include "ptxq.h"

static float float_from_bits(uint32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static uint32_t bits_from_float(float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

/* value >> shift, rounded to nearest with ties to even (1 <= shift <= 31). */
static uint32_t shift_right_round_even(uint32_t value, unsigned shift) {
  uint32_t kept = value >> shift;
  uint32_t dropped = value & ((UINT32_C(1) << shift) - 1);
  uint32_t half = UINT32_C(1) << (shift - 1);
  if (dropped > half || (dropped == half && (kept & 1)))
    kept++;
  return kept;
}

float ptxq_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exponent = (h >> 10) & 0x1F;
  uint32_t mantissa = h & 0x3FF;

  if (exponent == 0x1F) /* inf, or NaN with its payload kept in the top bits */
    return float_from_bits(sign | 0x7F800000 | (mantissa << 13));
  if (exponent != 0) /* normal: rebias the exponent */
    return float_from_bits(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
  if (mantissa == 0)
    return float_from_bits(sign);

  /* Subnormal f16 = mantissa * 2^-24; every one of them is a normal f32.
   * Shift the leading 1 up to the implicit-bit position (bit 10). */
  int32_t unbiased = -14;
  while ((mantissa & 0x400) == 0) {
    mantissa <<= 1;
    unbiased--;
  }
  mantissa &= 0x3FF;
  return float_from_bits(sign | ((uint32_t)(unbiased + 127) << 23) | (mantissa << 13));
}

uint16_t ptxq_f32_to_f16(float f) {
  uint32_t bits = bits_from_float(f);
  uint16_t sign = (uint16_t)((bits >> 16) & 0x8000);
  uint32_t magnitude = bits & 0x7FFFFFFF;

  if (magnitude > 0x7F800000) {
    /* NaN: keep the top payload bits; if they are all zero, set the quiet
     * bit so the result is still a NaN rather than an infinity. */
    uint16_t payload = (uint16_t)((magnitude >> 13) & 0x3FF);
    return (uint16_t)(sign | 0x7C00 | (payload ? payload : 0x200));
  }
  /* 65520 = 65504 + half an ulp: it and everything above round to inf
   * (the tie goes to the even neighbour, which is 2^16 = inf). */
  if (magnitude >= 0x477FF000)
    return (uint16_t)(sign | 0x7C00);
  if (magnitude >= 0x38800000) {
    /* Normal f16 (>= 2^-14). Rebias, then round the 13 dropped mantissa
     * bits; a carry out of the mantissa correctly bumps the exponent. */
    uint32_t rebased = magnitude - ((uint32_t)(127 - 15) << 23);
    return (uint16_t)(sign | shift_right_round_even(rebased, 13));
  }
  /* At most 2^-25 (half the smallest subnormal, a tie that goes to even 0). */
  if (magnitude <= 0x33000000)
    return sign;
  /* Subnormal f16: value = significand * 2^(e-150) and the f16 unit is
   * 2^-24, so the result is significand >> (126 - e), 14 <= shift <= 24. */
  uint32_t exponent = magnitude >> 23;
  uint32_t significand = (magnitude & 0x7FFFFF) | 0x800000;
  return (uint16_t)(sign | shift_right_round_even(significand, 126 - exponent));
}
