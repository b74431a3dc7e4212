/*
 * dequant.c: the CPU reference dequantizer for Q4_K.
 *
 * This file defines, bit for bit, what every GPU kernel must produce for a
 * Q4_K weight (layout in docs/formats.md): for weight i of sub-block j,
 *
 *     a = f32(d) * sc_j          rounded to f32
 *     b = f32(dmin) * m_j        rounded to f32
 *     w = a * q - b              a*q rounded to f32, then the subtraction
 *
 * The format defines two roundings in the last line (a*q, then the
 * subtraction). For Q4_K all three products are in fact exact in f32 (an f16
 * significand has 11 bits, a code 6, a quant 4: at most 21 bits), so every
 * weight is the exact d*sc*q - dmin*m rounded once, and a kernel may use an
 * fma for a*q - b without changing a bit (tests/test_ref.c checks this).
 * The product still goes through a volatile float, so this file computes
 * the formula as the format states it whatever the flags (gcc -std=gnu11
 * with -march contracts a*q-b into an fma; gcc rejects
 * `#pragma STDC FP_CONTRACT OFF` as an unknown pragma, an error under
 * -Werror) and stays right if it is ever reused where products do round.
 *
 * A block whose d or dmin is NaN or inf is PTXQ_ERR_INVALID (the blocks
 * before it have been written by then); any other 144 bytes are valid.
 */
#include <math.h>
#include <stdint.h>

#include "ptxq.h"

#define SUB_BLOCKS 8
#define SUB_BLOCK_WEIGHTS 32

static uint16_t read_le16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

/* Scale and min of sub-block j from the 12 packed bytes (formats.md). */
static void unpack_scale_min(const uint8_t *packed, int j, uint8_t *scale, uint8_t *min) {
  if (j < 4) {
    *scale = packed[j] & 63;
    *min = packed[j + 4] & 63;
  } else {
    *scale = (uint8_t)((packed[j + 4] & 0x0F) | ((packed[j - 4] >> 6) << 4));
    *min = (uint8_t)((packed[j + 4] >> 4) | ((packed[j] >> 6) << 4));
  }
}

static float scaled_quant_minus_min(float scale, int quant, float min) {
  volatile float product = scale * (float)quant; /* forces a rounding: no fma */
  return product - min;
}

/* One 144-byte super-block into 256 floats. */
static int dequantize_block(const uint8_t *block, float *out) {
  float d = ptxq_f16_to_f32(read_le16(block));
  float dmin = ptxq_f16_to_f32(read_le16(block + 2));
  const uint8_t *packed = block + 4;
  const uint8_t *qs = block + 16;

  /* Any bytes are a valid block except a non-finite super-scale, which
   * would turn the whole block into NaN/inf without anyone noticing. */
  if (!isfinite(d) || !isfinite(dmin))
    return PTXQ_ERR_INVALID;

  for (int j = 0; j < SUB_BLOCKS; j++) {
    uint8_t sc, m;
    unpack_scale_min(packed, j, &sc, &m);
    float scale = d * (float)sc;
    float min = dmin * (float)m;
    /* Sub-blocks 2c and 2c+1 share the 32 bytes qs[32c..32c+31]: the even
     * one in the low nibbles, the odd one in the high nibbles. */
    const uint8_t *chunk = qs + SUB_BLOCK_WEIGHTS * (j / 2);
    int shift = (j % 2) ? 4 : 0;
    for (int l = 0; l < SUB_BLOCK_WEIGHTS; l++) {
      int q = (chunk[l] >> shift) & 0x0F;
      out[SUB_BLOCK_WEIGHTS * j + l] = scaled_quant_minus_min(scale, q, min);
    }
  }
  return PTXQ_OK;
}

int ptxq_ref_dequantize_q4k(const void *blocks, size_t nblocks, float *out) {
  if (blocks == NULL || out == NULL || nblocks == 0 || nblocks > SIZE_MAX / PTXQ_QK_K)
    return PTXQ_ERR_INVALID;
  const uint8_t *bytes = blocks;
  for (size_t b = 0; b < nblocks; b++) {
    int status = dequantize_block(bytes + b * PTXQ_Q4_K_BLOCK_BYTES, out + b * PTXQ_QK_K);
    if (status != PTXQ_OK)
      return status;
  }
  return PTXQ_OK;
}
