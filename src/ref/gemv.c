/*
 * gemv.c: the CPU reference matrix-vector product.
 *
 * y[mi][r] = sum_i W[r][i] * x[mi][i] for a row-major [n][k] weight of type
 * Q4_K, Q6_K, F16 or F32, in double over the dequantized f32 weights, summed
 * in index order. Double accumulation makes this the "true" product of the
 * weights a kernel sees, so a kernel's fp32 result can be judged against it
 * with a tolerance that reflects only the kernel's own rounding.
 *
 * Memory stays bounded whatever the shape: a row is decoded one 256-weight
 * chunk (one K-quant super-block) at a time into a buffer on the stack; F32
 * rows are read in place. F16 weights are read byte by byte (little-endian),
 * so they need no alignment.
 *
 * Status: PTXQ_ERR_INVALID for NULL pointers, a zero size, k % 256 != 0
 * for Q4_K and Q6_K, sizes that overflow size_t, an unknown type, or a
 * K-quant block with a non-finite super-scale (y is then partly written).
 * F16 and F32 weights are used as they are: a NaN or inf there shows up in
 * y, as it would in any product.
 */
#include <stdint.h>

#include "ptxq.h"

static int product_overflows(size_t a, size_t b) { return b != 0 && a > SIZE_MAX / b; }

static int is_k_quant(ptxq_type type) { return type == PTXQ_TYPE_Q4_K || type == PTXQ_TYPE_Q6_K; }

/* Bytes of one row of k weights (k already checked against the type). */
static size_t row_bytes_of(ptxq_type type, uint32_t k) {
  switch (type) {
  case PTXQ_TYPE_F32:
    return (size_t)k * sizeof(float);
  case PTXQ_TYPE_F16:
    return (size_t)k * 2;
  case PTXQ_TYPE_Q4_K:
    return (size_t)(k / PTXQ_QK_K) * PTXQ_Q4_K_BLOCK_BYTES;
  case PTXQ_TYPE_Q6_K:
    return (size_t)(k / PTXQ_QK_K) * PTXQ_Q6_K_BLOCK_BYTES;
  }
  return 0;
}

/* The weights of row r, columns [256*c, 256*c + 256) (fewer at the end of
 * an F32 or F16 row), either in place or decoded into scratch. */
static int row_chunk(ptxq_type type, const void *w, uint32_t k, uint32_t r, uint32_t c,
                     float scratch[PTXQ_QK_K], const float **chunk, uint32_t *len) {
  uint32_t first = c * PTXQ_QK_K;
  *len = (k - first < PTXQ_QK_K) ? k - first : PTXQ_QK_K;
  const uint8_t *row = (const uint8_t *)w + (size_t)r * row_bytes_of(type, k);
  *chunk = scratch;
  switch (type) {
  case PTXQ_TYPE_F32:
    *chunk = (const float *)w + (size_t)r * k + first;
    return PTXQ_OK;
  case PTXQ_TYPE_F16: {
    const uint8_t *halves = row + (size_t)first * 2;
    for (uint32_t i = 0; i < *len; i++)
      scratch[i] = ptxq_f16_to_f32((uint16_t)(halves[2 * i] | (halves[2 * i + 1] << 8)));
    return PTXQ_OK;
  }
  case PTXQ_TYPE_Q4_K:
    return ptxq_ref_dequantize_q4k(row + (size_t)c * PTXQ_Q4_K_BLOCK_BYTES, 1, scratch);
  case PTXQ_TYPE_Q6_K:
    return ptxq_ref_dequantize_q6k(row + (size_t)c * PTXQ_Q6_K_BLOCK_BYTES, 1, scratch);
  }
  return PTXQ_ERR_INVALID;
}

int ptxq_ref_gemv(ptxq_type type, const void *w, uint32_t k, uint32_t n, const float *x,
                  uint32_t m, double *y) {
  if (w == NULL || x == NULL || y == NULL || k == 0 || n == 0 || m == 0)
    return PTXQ_ERR_INVALID;
  if (type != PTXQ_TYPE_F32 && type != PTXQ_TYPE_F16 && !is_k_quant(type))
    return PTXQ_ERR_INVALID;
  if (is_k_quant(type) && k % PTXQ_QK_K != 0)
    return PTXQ_ERR_INVALID;
  /* Every offset below must fit in size_t (only a concern on 32-bit hosts). */
  size_t row_bytes = row_bytes_of(type, k);
  if (product_overflows(row_bytes, n) || product_overflows((size_t)m, k) ||
      product_overflows((size_t)m, n) || product_overflows((size_t)m * k, sizeof(float)) ||
      product_overflows((size_t)m * n, sizeof(double)))
    return PTXQ_ERR_INVALID;

  uint32_t chunks = k / PTXQ_QK_K + (k % PTXQ_QK_K != 0);
  float scratch[PTXQ_QK_K];
  for (uint32_t r = 0; r < n; r++) {
    for (uint32_t mi = 0; mi < m; mi++)
      y[(size_t)mi * n + r] = 0.0;
    for (uint32_t c = 0; c < chunks; c++) {
      const float *chunk;
      uint32_t len;
      int status = row_chunk(type, w, k, r, c, scratch, &chunk, &len);
      if (status != PTXQ_OK)
        return status;
      for (uint32_t mi = 0; mi < m; mi++) {
        const float *xs = x + (size_t)mi * k + (size_t)c * PTXQ_QK_K;
        double sum = y[(size_t)mi * n + r];
        for (uint32_t i = 0; i < len; i++)
          sum += (double)chunk[i] * (double)xs[i];
        y[(size_t)mi * n + r] = sum;
      }
    }
  }
  return PTXQ_OK;
}
