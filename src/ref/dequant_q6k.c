/*
 * dequant_q6k.c: the CPU reference dequantizer for Q6_K.
 *
 * This file defines, bit for bit, what every GPU kernel must produce for a
 * Q6_K weight (layout in docs/formats.md): for a weight with 6-bit quant q
 * (stored as 0..63, used as q - 32 in -32..31) and signed 8-bit scale s,
 *
 *     a = f32(d) * s      rounded to f32
 *     w = a * q           rounded to f32
 *
 * Neither product can in fact round: an f16 significand has 11 bits, |s| <=
 * 128 needs at most 7 and |q| <= 32 at most 5, so d*s*q fits in 23 bits,
 * and its magnitude stays inside the normal f32 range (2^-24 to 65504 *
 * 4096). So every weight is the exact d*s*q, whatever the order of the
 * products (tests/test_ref_q6k.c checks this on random blocks). The product
 * still goes through a volatile float, as in dequant.c, so that this file
 * computes the formula as the format states it whatever the compiler flags.
 *
 * A block whose d is NaN or inf is PTXQ_ERR_INVALID (the blocks before it
 * have been written by then); any other 210 bytes are valid.
 */
#include <math.h>
#include <stdint.h>

#include "ptxq.h"

#define QL_OFFSET 0
#define QH_OFFSET 128
#define SCALES_OFFSET 192
#define D_OFFSET 208
#define HALF_WEIGHTS 128
#define WEIGHTS_PER_SCALE 16

static uint16_t read_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* The stored byte as a two's-complement int8. */
static int signed_scale(uint8_t byte) { return byte < 128 ? byte : byte - 256; }

static float scaled_quant(float scale, int quant) {
  volatile float product = scale * (float)quant; /* forces the f32 rounding the format states */
  return product;
}

/* One 210-byte super-block into 256 floats. */
static int dequantize_block(const uint8_t *block, float *out) {
  float d = ptxq_f16_to_f32(read_le16(block + D_OFFSET));
  if (!isfinite(d)) /* would turn the whole block into NaN/inf unnoticed */
    return PTXQ_ERR_INVALID;

  /* Each half of 128 weights reads 64 low-nibble bytes, 32 high-bit bytes
   * and 8 scales. Within a half, weight 32*g + l (group g in 0..3, l in
   * 0..31) takes its low 4 bits from ql byte l (groups 0, 2) or l + 32
   * (groups 1, 3), low nibble for groups 0, 1 and high nibble for 2, 3,
   * and its top 2 bits from bits 2g..2g+1 of qh byte l; its scale is
   * S[2g + l/16]. */
  for (int h = 0; h < 2; h++) {
    const uint8_t *low = block + QL_OFFSET + 64 * h;
    const uint8_t *high = block + QH_OFFSET + 32 * h;
    const uint8_t *scales = block + SCALES_OFFSET + 8 * h;
    float *half_out = out + HALF_WEIGHTS * h;
    for (int g = 0; g < 4; g++) {
      const uint8_t *low_bytes = low + 32 * (g % 2);
      int nibble_shift = g < 2 ? 0 : 4;
      for (int l = 0; l < 32; l++) {
        int low_bits = (low_bytes[l] >> nibble_shift) & 0x0F;
        int high_bits = (high[l] >> (2 * g)) & 0x03;
        int q = (low_bits | (high_bits << 4)) - 32;
        float scale = d * (float)signed_scale(scales[2 * g + l / WEIGHTS_PER_SCALE]);
        half_out[32 * g + l] = scaled_quant(scale, q);
      }
    }
  }
  return PTXQ_OK;
}

int ptxq_ref_dequantize_q6k(const void *blocks, size_t nblocks, float *out) {
  if (blocks == NULL || out == NULL || nblocks == 0 || nblocks > SIZE_MAX / PTXQ_QK_K ||
      nblocks > SIZE_MAX / PTXQ_Q6_K_BLOCK_BYTES)
    return PTXQ_ERR_INVALID;
  const uint8_t *bytes = blocks;
  for (size_t b = 0; b < nblocks; b++) {
    int status = dequantize_block(bytes + b * PTXQ_Q6_K_BLOCK_BYTES, out + b * PTXQ_QK_K);
    if (status != PTXQ_OK)
      return status;
  }
  return PTXQ_OK;
}
