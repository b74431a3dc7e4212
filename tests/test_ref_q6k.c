/*
 * test_ref_q6k.c: tests of the CPU reference for Q6_K and F16 weights
 * (src/ref/dequant_q6k.c and the Q6_K / F16 paths of src/ref/gemv.c),
 * suite "unit".
 *
 * Evidence independent of the code under test: a block whose bytes were
 * decoded by hand; blocks built from chosen quants by the inverse mapping
 * (weight -> byte and bits), so a swapped nibble, shift or scale index
 * shows; the exact value d*s*q on random blocks; the fixture's Q6_K tensor,
 * quantized and dequantized by the format's own reference implementation;
 * F16 products against halves decoded straight from the binary16
 * definition.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "ptxq.h"
#include "ref_common.h"

#define Q6K_QL 0
#define Q6K_QH 128
#define Q6K_SCALES 192
#define Q6K_D 208

/* ---- helpers ------------------------------------------------------------ */

/* Where weight i (0..255) of a Q6_K block keeps its bits, worked out from
 * formats.md in the direction opposite to the decoder: half h, position
 * p = 32*g + l in the half; low 4 bits in ql[64h + l + 32*(g odd)], low
 * nibble for g < 2; top 2 bits at bit 2g of qh[32h + l]. */
typedef struct q6k_place {
  int ql_byte, ql_shift, qh_byte, qh_shift;
} q6k_place;

static q6k_place place_of(int i) {
  int h = i / 128, p = i % 128, g = p / 32, l = p % 32;
  return (q6k_place){64 * h + l + 32 * (g % 2), g < 2 ? 0 : 4, 32 * h + l, 2 * g};
}

/* Stored quant (0..63) of weight i. */
static int stored_quant(const uint8_t *block, int i) {
  q6k_place at = place_of(i);
  int low = (block[Q6K_QL + at.ql_byte] >> at.ql_shift) & 0x0F;
  int high = (block[Q6K_QH + at.qh_byte] >> at.qh_shift) & 0x03;
  return low | (high << 4);
}

/* Writes quant q (-32..31) of weight i into a block. */
static void put_quant(uint8_t *block, int i, int q) {
  q6k_place at = place_of(i);
  int stored = q + 32;
  uint8_t *low = &block[Q6K_QL + at.ql_byte];
  uint8_t *high = &block[Q6K_QH + at.qh_byte];
  *low = (uint8_t)((*low & ~(0x0F << at.ql_shift)) | ((stored & 0x0F) << at.ql_shift));
  *high = (uint8_t)((*high & ~(0x03 << at.qh_shift)) | ((stored >> 4) << at.qh_shift));
}

/* Scale s of weight i: one signed byte per 16 consecutive weights. */
static int scale_of(const uint8_t *block, int i) { return (int8_t)block[Q6K_SCALES + i / 16]; }

/* ---- dequantization ------------------------------------------------------ */

/* Bytes decoded by hand (d = 0.5):
 *   ql[0] = 0x3A, ql[32] = 0xF5, qh[0] = 0xD8 = 0b11'01'10'00
 *   weight 0:  low nibble of ql[0] 0xA,  qh bits 0-1 = 0 -> 10 - 32 = -22
 *   weight 32: low nibble of ql[32] 0x5, qh bits 2-3 = 2 -> 37 - 32 = 5
 *   weight 64: high nibble of ql[0] 0x3, qh bits 4-5 = 1 -> 19 - 32 = -13
 *   weight 96: high nibble of ql[32] 0xF, qh bits 6-7 = 3 -> 63 - 32 = 31
 *   second half: ql[64 + 17] = 0x0F, qh[32 + 17] = 0x03 -> weight 145: 31
 * Scales: S[0] = -2 (weights 0-15), S[2] = 127 (32-47), S[4] = -128
 * (64-79), S[6] = 3 (96-111), S[9] = -127 (144-159), the rest 0. Every
 * other quant byte is 0, so the other weights of those groups have q = -32. */
static void build_hand_block(uint8_t block[PTXQ_Q6_K_BLOCK_BYTES]) {
  memset(block, 0, PTXQ_Q6_K_BLOCK_BYTES);
  block[Q6K_QL + 0] = 0x3A;
  block[Q6K_QL + 32] = 0xF5;
  block[Q6K_QH + 0] = 0xD8;
  block[Q6K_QL + 64 + 17] = 0x0F;
  block[Q6K_QH + 32 + 17] = 0x03;
  block[Q6K_SCALES + 0] = 0xFE;
  block[Q6K_SCALES + 2] = 0x7F;
  block[Q6K_SCALES + 4] = 0x80;
  block[Q6K_SCALES + 6] = 0x03;
  block[Q6K_SCALES + 9] = 0x81;
  put_le16(block + Q6K_D, 0x3800);
}

static double hand_block_value(int i) {
  switch (i) {
  case 0: return 0.5 * -2 * -22;   /* 22 */
  case 32: return 0.5 * 127 * 5;   /* 317.5 */
  case 64: return 0.5 * -128 * -13; /* 832 */
  case 96: return 0.5 * 3 * 31;    /* 46.5 */
  case 145: return 0.5 * -127 * 31; /* -1968.5 */
  }
  switch (i / 16) { /* q = -32 */
  case 0: return 32;
  case 2: return -2032;
  case 4: return 2048;
  case 6: return -48;
  case 9: return 2032;
  }
  return 0;
}

Test(q6k_dequant, hand_decoded_block) {
  uint8_t block[PTXQ_Q6_K_BLOCK_BYTES];
  build_hand_block(block);
  float out[PTXQ_QK_K];
  cr_assert_eq(ptxq_ref_dequantize_q6k(block, 1, out), PTXQ_OK);
  for (int i = 0; i < PTXQ_QK_K; i++)
    cr_assert_eq((double)out[i], hand_block_value(i), "weight %d: %.9g, expected %.9g", i,
                 (double)out[i], hand_block_value(i));
}

/* Three blocks built from chosen quants and scales: every weight is
 * d * S[i/16] * q[i]. The quant pattern visits -32..31 at every position
 * class; the scales include -128, -1, 0, 1 and 127. */
Test(q6k_dequant, blocks_built_from_chosen_quants) {
  enum { BLOCKS = 3 };
  static const uint16_t d16[BLOCKS] = {0x3C00, 0xB400, 0x0001}; /* 1, -0.25, 2^-24 */
  static const int8_t edge_scales[5] = {-128, -1, 0, 1, 127};
  uint8_t blocks[BLOCKS * PTXQ_Q6_K_BLOCK_BYTES];
  int quants[BLOCKS][PTXQ_QK_K];
  rng r = {5};
  for (int b = 0; b < BLOCKS; b++) {
    uint8_t *block = blocks + b * PTXQ_Q6_K_BLOCK_BYTES;
    for (int i = 0; i < PTXQ_Q6_K_BLOCK_BYTES; i++) /* put_quant must overwrite it all */
      block[i] = (uint8_t)rng_next(&r);
    for (int i = 0; i < PTXQ_QK_K; i++) {
      quants[b][i] = (i * 7 + b * 13) % 64 - 32;
      put_quant(block, i, quants[b][i]);
    }
    for (int s = 0; s < 16; s++)
      block[Q6K_SCALES + s] = (uint8_t)(s < 5 ? edge_scales[s] : s * 37 + 11);
    put_le16(block + Q6K_D, d16[b]);
  }
  float out[BLOCKS * PTXQ_QK_K];
  cr_assert_eq(ptxq_ref_dequantize_q6k(blocks, BLOCKS, out), PTXQ_OK);
  for (int b = 0; b < BLOCKS; b++) {
    const uint8_t *block = blocks + b * PTXQ_Q6_K_BLOCK_BYTES;
    for (int i = 0; i < PTXQ_QK_K; i++) {
      cr_assert_eq(stored_quant(block, i), quants[b][i] + 32, "encoding of weight %d", i);
      double expected = half_value(d16[b]) * scale_of(block, i) * quants[b][i];
      cr_assert_eq((double)out[b * PTXQ_QK_K + i], expected, "block %d weight %d: %a, expected %a",
                   b, i, (double)out[b * PTXQ_QK_K + i], expected);
    }
  }
}

/* Any finite d, random bytes: every weight is exactly d*s*q (the products
 * cannot round: 11 + 7 + 5 significant bits), equal to the format's float
 * order (f32(d)*s)*q, so a kernel may multiply in any order or fuse. */
Test(q6k_dequant, weights_are_the_exact_product) {
  rng r = {17};
  uint8_t block[PTXQ_Q6_K_BLOCK_BYTES];
  float out[PTXQ_QK_K];
  for (int trial = 0; trial < 3000; trial++) {
    for (int i = 0; i < PTXQ_Q6_K_BLOCK_BYTES; i++)
      block[i] = (uint8_t)rng_next(&r);
    /* all finite exponents, subnormal d included, and the largest half */
    uint16_t d16 = trial == 0 ? 0x7BFF : trial == 1 ? 0xFBFF : random_half(&r, 0, 30);
    put_le16(block + Q6K_D, d16);
    cr_assert_eq(ptxq_ref_dequantize_q6k(block, 1, out), PTXQ_OK, "d = 0x%04x", d16);
    double d = half_value(d16);
    for (int i = 0; i < PTXQ_QK_K; i++) {
      int q = stored_quant(block, i) - 32, s = scale_of(block, i);
      double exact = d * s * q;
      volatile float ds = (float)d * (float)s;
      volatile float float_order = ds * (float)q;
      cr_assert_eq((double)out[i], exact, "trial %d weight %d: %a, exact %a", trial, i,
                   (double)out[i], exact);
      cr_assert_eq(out[i], float_order, "trial %d weight %d", trial, i);
    }
  }
}

Test(q6k_dequant, rejects_bad_arguments) {
  uint8_t block[2 * PTXQ_Q6_K_BLOCK_BYTES];
  float out[2 * PTXQ_QK_K];
  build_hand_block(block);
  build_hand_block(block + PTXQ_Q6_K_BLOCK_BYTES);
  cr_assert_eq(ptxq_ref_dequantize_q6k(NULL, 1, out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q6k(block, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q6k(block, 0, out), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_dequantize_q6k(block, SIZE_MAX / 100, out), PTXQ_ERR_INVALID,
               "a count whose output size overflows");
  const uint16_t non_finite[] = {0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFFFF};
  for (size_t i = 0; i < sizeof non_finite / sizeof non_finite[0]; i++) {
    put_le16(block + PTXQ_Q6_K_BLOCK_BYTES + Q6K_D, non_finite[i]);
    for (int w = 0; w < 2 * PTXQ_QK_K; w++)
      out[w] = -7.0f;
    cr_assert_eq(ptxq_ref_dequantize_q6k(block, 2, out), PTXQ_ERR_INVALID, "d = 0x%04x",
                 non_finite[i]);
    /* the good block before it is written, as documented */
    cr_assert_eq((double)out[32], hand_block_value(32));
    put_le16(block + Q6K_D, non_finite[i]);
    cr_assert_eq(ptxq_ref_dequantize_q6k(block, 1, out), PTXQ_ERR_INVALID, "d = 0x%04x",
                 non_finite[i]);
    build_hand_block(block);
  }
  /* -0 and the largest finite halves are fine */
  put_le16(block + Q6K_D, 0x8000);
  cr_assert_eq(ptxq_ref_dequantize_q6k(block, 1, out), PTXQ_OK);
  cr_assert_eq(out[0], 0.0f);
}

/* ---- GEMV over Q6_K ---------------------------------------------------------- */

/* Row 0: the hand block; row 1: the same bytes with d = -1 (each weight
 * times -2). x row 0 is all 1 (the sum of the hand values), row 1 all 0.25. */
Test(q6k_gemv, hand_built_rows) {
  uint8_t w[2 * PTXQ_Q6_K_BLOCK_BYTES];
  build_hand_block(w);
  build_hand_block(w + PTXQ_Q6_K_BLOCK_BYTES);
  put_le16(w + PTXQ_Q6_K_BLOCK_BYTES + Q6K_D, 0xBC00);
  float x[2 * PTXQ_QK_K];
  for (int i = 0; i < PTXQ_QK_K; i++) {
    x[i] = 1.0f;
    x[PTXQ_QK_K + i] = 0.25f;
  }
  /* (22 + 15*32) + (317.5 - 15*2032) + (832 + 15*2048) + (46.5 - 15*48)
   * + (-1968.5 + 15*2032) = 502 - 30162.5 + 31552 - 673.5 + 28511.5 */
  double row0 = 0;
  for (int i = 0; i < PTXQ_QK_K; i++)
    row0 += hand_block_value(i);
  cr_assert_eq(row0, 29729.5, "the hand sum itself");
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 2, x, 2, y), PTXQ_OK);
  const double expected[4] = {29729.5, -59459, 7432.375, -14864.75};
  for (int i = 0; i < 4; i++)
    cr_assert_eq(y[i], expected[i], "y[%d] = %.17g, expected %.17g", i, y[i], expected[i]);
}

/* Random Q6_K matrices of odd shapes against a plain double product over
 * the dequantized weights. */
static void check_q6k_against_dequantized(uint32_t k, uint32_t n, uint32_t m) {
  rng r = {k * 31 + n * 7 + m};
  size_t nblocks = (size_t)n * k / PTXQ_QK_K;
  uint8_t *w = malloc(nblocks * PTXQ_Q6_K_BLOCK_BYTES);
  float *dense = malloc((size_t)n * k * sizeof *dense);
  float *x = malloc((size_t)m * k * sizeof *x);
  double *y = malloc((size_t)m * n * sizeof *y);
  cr_assert(w && dense && x && y);
  for (size_t i = 0; i < nblocks * PTXQ_Q6_K_BLOCK_BYTES; i++)
    w[i] = (uint8_t)rng_next(&r);
  for (size_t b = 0; b < nblocks; b++)
    put_le16(w + b * PTXQ_Q6_K_BLOCK_BYTES + Q6K_D, random_half(&r, 8, 16));
  for (size_t i = 0; i < (size_t)m * k; i++)
    x[i] = (float)(2 * rng_unit(&r) - 1);
  cr_assert_eq(ptxq_ref_dequantize_q6k(w, nblocks, dense), PTXQ_OK);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, k, n, x, m, y), PTXQ_OK);
  assert_dense_product("Q6_K", dense, x, y, k, n, m);
  free(w);
  free(dense);
  free(x);
  free(y);
}

Test(q6k_gemv, matches_dequantized_product_odd_shapes) {
  check_q6k_against_dequantized(256, 1, 1);
  check_q6k_against_dequantized(768, 5, 3);
  check_q6k_against_dequantized(1280, 7, 8);
  check_q6k_against_dequantized(512, 5, 16); /* the kernels' largest batch */
  check_q6k_against_dequantized(768, 3, 13);
  check_q6k_against_dequantized(2816, 3, 2);
}

Test(q6k_gemv, rejects_bad_arguments) {
  uint8_t w[2 * PTXQ_Q6_K_BLOCK_BYTES];
  build_hand_block(w);
  build_hand_block(w + PTXQ_Q6_K_BLOCK_BYTES);
  float x[512];
  for (int i = 0; i < 512; i++)
    x[i] = 0.5f;
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, NULL, 256, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 1, NULL, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 1, x, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 0, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 0, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 1, x, 0, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 100, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 384, 1, x, 1, y), PTXQ_ERR_INVALID);
  put_le16(w + PTXQ_Q6_K_BLOCK_BYTES + Q6K_D, 0x7E00); /* NaN d in row 1 */
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 2, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, w, 256, 1, x, 1, y), PTXQ_OK, "row 0 is fine");
  cr_assert_eq(y[0], 0.5 * 29729.5);
}

/* ---- GEMV over F16 --------------------------------------------------------------- */

Test(f16_gemv, hand_computed) {
  /* W = [[1, -2, 0.5], [65504, 2^-24, -0]], x = [[1, 0.25, 4], [-1, 2^24, 3]] */
  const uint16_t halves[6] = {0x3C00, 0xC000, 0x3800, 0x7BFF, 0x0001, 0x8000};
  uint8_t w[12];
  for (int i = 0; i < 6; i++)
    put_le16(w + 2 * i, halves[i]);
  const float x[6] = {1, 0.25f, 4, -1, 0x1p24f, 3};
  const double expected[4] = {1 - 0.5 + 2, 65504 + 0x1p-26, -1 - 0x1p25 + 1.5, -65504 + 1};
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 3, 2, x, 2, y), PTXQ_OK);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(y[i], expected[i], "y[%d] = %.17g, expected %.17g", i, y[i], expected[i]);
}

/* Random halves (all finite exponents) of odd shapes, read from a buffer
 * at an odd address, against halves decoded from the binary16 definition. */
static void check_f16_against_definition(uint32_t k, uint32_t n, uint32_t m) {
  rng r = {k * 131 + n * 17 + m};
  size_t count = (size_t)n * k;
  uint8_t *storage = malloc(count * 2 + 1);
  float *dense = malloc(count * sizeof *dense);
  float *x = malloc((size_t)m * k * sizeof *x);
  double *y = malloc((size_t)m * n * sizeof *y);
  cr_assert(storage && dense && x && y);
  uint8_t *w = storage + 1;
  for (size_t i = 0; i < count; i++) {
    uint16_t h = random_half(&r, 0, 30);
    put_le16(w + 2 * i, h);
    dense[i] = (float)half_value(h); /* exact: every half is a float */
  }
  for (size_t i = 0; i < (size_t)m * k; i++)
    x[i] = (float)(2 * rng_unit(&r) - 1);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, k, n, x, m, y), PTXQ_OK);
  assert_dense_product("F16", dense, x, y, k, n, m);
  free(storage);
  free(dense);
  free(x);
  free(y);
}

Test(f16_gemv, matches_definition_odd_shapes) {
  check_f16_against_definition(1, 1, 1);
  check_f16_against_definition(7, 3, 2);
  check_f16_against_definition(255, 2, 1);
  check_f16_against_definition(257, 5, 3);
  check_f16_against_definition(300, 7, 8);
  check_f16_against_definition(1024, 4, 2);
}

/* F16 weights are used as stored: inf and NaN reach y (no silent zero). */
Test(f16_gemv, non_finite_weights_reach_y) {
  uint8_t w[6];
  put_le16(w, 0x3C00);
  put_le16(w + 2, 0x7C00); /* +inf */
  put_le16(w + 4, 0x7E00); /* NaN */
  const float x[1] = {2};
  double y[3];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 1, 3, x, 1, y), PTXQ_OK);
  cr_assert_eq(y[0], 2.0);
  cr_assert(isinf(y[1]) && y[1] > 0, "y[1] = %g", y[1]);
  cr_assert(isnan(y[2]), "y[2] = %g", y[2]);
}

Test(f16_gemv, rejects_bad_arguments) {
  uint8_t w[8] = {0x00, 0x3C, 0x00, 0x40, 0x00, 0x42, 0x00, 0x44};
  float x[4] = {1, 2, 3, 4};
  double y[4];
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, NULL, 4, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 4, 1, NULL, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 4, 1, x, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 0, 1, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 4, 0, x, 1, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 4, 1, x, 0, y), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_F16, w, 4, 1, x, 1, y), PTXQ_OK);
  cr_assert_eq(y[0], 1 + 4 + 9 + 16.0); /* 1, 2, 3, 4 as halves */
}

/* ---- the shared fixture's Q6_K tensor ---------------------------------------------- */

Test(q6k_fixture, ffn_down_matches_expected) {
  const char *name = "blk.0.ffn_down.weight";
  fixture_gguf gguf;
  fixture_expected expected;
  load_fixture(&gguf, &expected);
  const fixture_tensor *t = fixture_gguf_find(&gguf, name);
  const fixture_expected_tensor *e = NULL;
  for (size_t i = 0; i < expected.count; i++)
    if (strcmp(expected.tensors[i].name, name) == 0)
      e = &expected.tensors[i];
  cr_assert(t != NULL && t->data != NULL, "%s is not in the GGUF file", name);
  cr_assert(e != NULL, "%s has no expected values", name);
  cr_assert_eq(t->type, PTXQ_TYPE_Q6_K);
  cr_assert_str_eq(e->type, "q6_K");
  cr_assert_eq(t->dims[0], e->k);
  cr_assert_eq(t->rows, e->n);
  cr_assert_eq(e->row_bytes, (uint64_t)e->k / PTXQ_QK_K * PTXQ_Q6_K_BLOCK_BYTES);
  cr_assert_eq(t->row_bytes, e->row_bytes);
  cr_assert_eq(e->row0_count, 16);
  cr_assert_eq(e->y_count, e->n);

  size_t count = (size_t)e->n * e->k;
  float *w = malloc(count * sizeof *w);
  float *x = malloc(2 * (size_t)e->k * sizeof *x);
  double *y = malloc(2 * (size_t)e->n * sizeof *y);
  cr_assert(w && x && y);
  cr_assert_eq(ptxq_ref_dequantize_q6k(t->data, count / PTXQ_QK_K, w), PTXQ_OK);
  assert_fixture_summary(e, w, count);

  /* m = 2: row 0 of x is the fixture's input, row 1 its negation, whose
   * product must be exactly the negated one. */
  for (uint32_t i = 0; i < e->k; i++) {
    x[i] = fixture_x(i);
    x[e->k + i] = -fixture_x(i);
  }
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q6_K, t->data, e->k, e->n, x, 2, y), PTXQ_OK);
  double worst = 0;
  for (uint32_t r = 0; r < e->n; r++) {
    double error = relative_error(y[r], e->y[r]);
    worst = fmax(worst, error);
    cr_assert(error <= 1e-12, "y[%u] = %.17g, expected %.17g", r, y[r], e->y[r]);
    cr_assert_eq(y[e->n + r], -y[r], "row %u of the negated input", r);
  }
  cr_log_info("Q6_K fixture: worst relative error of y %.3g", worst);
  free(w);
  free(x);
  free(y);
  fixture_expected_free(&expected);
  fixture_gguf_close(&gguf);
}
