/*
 * gemv_q4k.c: the Q4_K weight format for the GEMV skeleton (gemv.c).
 *
 * Q4_K (formats.md): 144-byte super-blocks of 256 weights: d, dmin (f16),
 * 12 bytes of packed 6-bit scales and mins, 128 bytes of 4-bit quants.
 * Rows are used as stored (row r at r * k/256 * 144: 16-byte aligned).
 *
 * Chunk part c (0..3) of a super-block is its quant bytes qs[32c .. 32c+31]:
 * low nibbles are sub-block 2c (weights 64c + 0..31), high nibbles sub-block
 * 2c+1 (weights 64c + 32..63). The lane reads them with two 16-byte loads
 * plus the 16-byte header, and x float4 i of the chunk is x[64c + 4i ..].
 *
 * Arithmetic (about 2.5 instructions per weight at m = 1)
 *   A sub-block contributes sum_i (a*q_i - b)*x_i = a*sum(q_i x_i) - b*sum(x_i),
 *   with a = f32(d)*sc and b = f32(dmin)*m computed exactly as the reference
 *   does. A quant becomes a float without a conversion instruction: the
 *   nibble is masked into bits 3..6 of a byte and one byte permute puts that
 *   byte under the exponent of 0.5, giving f = 0.5 + q/32 exactly. So
 *   sum(q x) = 32*S - 16*sum(x) with S = sum(f x), and the contribution is
 *   (32a)*S - (16a + b)*sum(x): two fma per sub-block, the sums of x
 *   precomputed when x is staged.
 *
 * Integer dot products (idp=1, q4k_idp_compute; an experiment key)
 *   x is staged as integers X = round(x 2^e) per chunk (gemv.c,
 *   gemv_stage_int) and a sub-block's sum of q X is three exact dp4a chains,
 *   one per byte plane of X: 2 masks and 6 dp4a per word of 8 quants, where
 *   the above spends 12 integer instructions and 8 fma. H100, twenty-fifth
 *   session: the decode step at m = 1 1683 -> 1637 µs with every Q4_K
 *   product so, but m = 8 products 19-32% slower (6 dp4a per batch row);
 *   hence not the default. Batches from m = 4 run on the integer tensor
 *   cores with the same bits (gemv_idp_mma.c; key tuning mma=).
 */
#include <stdio.h>

#include "gemv.h"
#include "kernels.h"

/* Format constants in gemv_lane.fmt[] */
enum { C32, SHIFT_A, MASK_A, MASK_C, SEL_LO, SEL_HI, MAGIC_INT };

static uint32_t q4k_row_stride(uint32_t k) { return k / 256 * Q4K_BLOCK_BYTES; }

static void q4k_x_base(ptx_builder *b, ptx_reg c, ptx_reg out) { ptx_ins(b, "shl.b32 %s, %s, 6;", out.s, c.s); }

static void q4k_x_offset(ptx_builder *b, ptx_reg i, ptx_reg out) { ptx_ins(b, "shl.b32 %s, %s, 2;", out.s, i.s); }

void q4k_scale_consts(ptx_builder *b, gemv_lane *L) {
  ptx_comment(b, "Q4_K lane constants: this lane reads quant bytes 32c..32c+31 of every super-block");
  ptx_reg hi = ptx_new(b, PTX_PRED), byte = ptx_new(b, PTX_B32);
  for (int i = 0; i <= MAGIC_INT; i++) L->fmt[i] = ptx_new(b, PTX_B32);
  ptx_ins(b, "shl.b32 %s, %s, 5;", L->fmt[C32].s, L->c.s);
  ptx_ins(b, "setp.ge.u32 %s, %s, 2;", hi.s, L->c.s);
  /* Sub-blocks j = 2c, 2c+1. For j < 4, sc = s[j] & 63 and m = s[j+4] & 63.
   * For j >= 4, sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4 and
   * m = (s[j+4] >> 4) | (s[j] >> 6) << 4. With words h1 = s[0..3],
   * h2 = s[4..7], h3 = s[8..11], both cases are, bytewise,
   *   sc = ((h1 >> shift_a) & mask_a) | (h3 & mask_c)
   *   m  = ((h2 >> shift_a) & mask_a) | ((h3 >> 4) & mask_c)
   * with (0, 0x3F.., 0) for j < 4 and (2, 0x30.., 0x0F..) for j >= 4; the
   * lane's values are bytes (2c) % 4 and (2c) % 4 + 1 of those words. */
  ptx_ins(b, "selp.b32 %s, 2, 0, %s;", L->fmt[SHIFT_A].s, hi.s);
  ptx_ins(b, "selp.b32 %s, 0x30303030, 0x3F3F3F3F, %s;", L->fmt[MASK_A].s, hi.s);
  ptx_ins(b, "selp.b32 %s, 0x0F0F0F0F, 0, %s;", L->fmt[MASK_C].s, hi.s);
  /* prmt selector taking byte `byte` of the first operand into byte 0 and
   * bytes 1..3 of 0x4B000000: the float 2^23 + value. */
  ptx_ins(b, "and.b32 %s, %s, 1;", byte.s, L->c.s);
  ptx_ins(b, "shl.b32 %s, %s, 1;", byte.s, byte.s);
  ptx_ins(b, "or.b32 %s, %s, 0x7650;", L->fmt[SEL_LO].s, byte.s);
  ptx_ins(b, "add.u32 %s, %s, 1;", L->fmt[SEL_HI].s, L->fmt[SEL_LO].s);
  ptx_ins(b, "mov.b32 %s, 0x4B000000;", L->fmt[MAGIC_INT].s);
}

static void q4k_lane_consts(ptx_builder *b, const gemv_plan *p, gemv_lane *L) {
  (void)p;
  q4k_scale_consts(b, L);
}

/* (gemv.h) Also prmt selectors taking the lane's scale bytes as integers
 * (the byte, zeros above). */
enum { SEL_INT_LO = MAGIC_INT + 1, SEL_INT_HI, ZERO };
void q4k_idp_consts(ptx_builder *b, gemv_lane *L) {
  q4k_scale_consts(b, L);
  for (int i = SEL_INT_LO; i <= ZERO; i++) L->fmt[i] = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, 0xF;", L->fmt[SEL_INT_LO].s, L->fmt[SEL_LO].s); /* the byte: (2c) %% 4 */
  ptx_ins(b, "or.b32 %s, %s, 0x4440;", L->fmt[SEL_INT_LO].s, L->fmt[SEL_INT_LO].s);
  ptx_ins(b, "add.u32 %s, %s, 1;", L->fmt[SEL_INT_HI].s, L->fmt[SEL_INT_LO].s);
  ptx_ins(b, "mov.b32 %s, 0;", L->fmt[ZERO].s);
}

static void q4k_idp_lane_consts(ptx_builder *b, const gemv_plan *p, gemv_lane *L) {
  (void)p;
  q4k_idp_consts(b, L);
}

/* Scale and min of the lane's two sub-blocks from a super-block header
 * (words h0 = d | dmin << 16, h1..h3 = the 12 packed bytes). Produces
 * A = 32*f32(d)*sc and E = -(16*f32(d)*sc + f32(dmin)*m) per sub-block. */
void q4k_emit_scale_bytes(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg *sc, ptx_reg *mn) {
  ptx_reg t = ptx_new(b, PTX_B32), tc = ptx_new(b, PTX_B32);
  *sc = ptx_new(b, PTX_B32);
  ptx_reg t2 = ptx_new(b, PTX_B32), t3 = ptx_new(b, PTX_B32);
  *mn = ptx_new(b, PTX_B32);
  ptx_op3(b, "shr.b32", t, h[1], L->fmt[SHIFT_A]);
  ptx_op3(b, "and.b32", t, t, L->fmt[MASK_A]);
  ptx_op3(b, "and.b32", tc, h[3], L->fmt[MASK_C]);
  ptx_op3(b, "or.b32", *sc, t, tc);
  ptx_op3(b, "shr.b32", t2, h[2], L->fmt[SHIFT_A]);
  ptx_op3(b, "and.b32", t2, t2, L->fmt[MASK_A]);
  ptx_op2i(b, "shr.b32", t3, h[3], "4");
  ptx_op3(b, "and.b32", t3, t3, L->fmt[MASK_C]);
  ptx_op3(b, "or.b32", *mn, t2, t3);
}

void q4k_emit_scales(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg A[4], ptx_reg E[4]) {
  ptx_reg dh = ptx_new(b, PTX_B16), mh = ptx_new(b, PTX_B16);
  ptx_reg d = ptx_new(b, PTX_F32), dmin = ptx_new(b, PTX_F32), d32 = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 {%s, %s}, %s;", dh.s, mh.s, h[0].s);
  ptx_op2(b, "cvt.f32.f16", d, dh);
  ptx_op2(b, "cvt.f32.f16", dmin, mh);
  ptx_op2i(b, "mul.rn.f32", d32, d, "0f42000000"); /* exact: 32*d */
  ptx_reg sc, mn;
  q4k_emit_scale_bytes(b, L, h, &sc, &mn);
  for (int s = 0; s < 2; s++) {
    const ptx_reg sel = s ? L->fmt[SEL_HI] : L->fmt[SEL_LO];
    ptx_reg bits = ptx_new(b, PTX_B32), scf = ptx_new(b, PTX_F32), mf = ptx_new(b, PTX_F32);
    ptx_reg bm = ptx_new(b, PTX_F32);
    /* 2^23 + value, minus 2^23: the 6-bit value as an exact float */
    ptx_op4(b, "prmt.b32", bits, sc, L->fmt[MAGIC_INT], sel);
    ptx_op2(b, "mov.b32", scf, bits);
    ptx_op2i(b, "sub.rn.f32", scf, scf, "0f4B000000");
    ptx_op4(b, "prmt.b32", bits, mn, L->fmt[MAGIC_INT], sel);
    ptx_op2(b, "mov.b32", mf, bits);
    ptx_op2i(b, "sub.rn.f32", mf, mf, "0f4B000000");
    A[s] = ptx_new(b, PTX_F32);
    E[s] = ptx_new(b, PTX_F32);
    ptx_op3(b, "mul.rn.f32", A[s], d32, scf); /* = 32 * (f32(d)*sc), exactly */
    ptx_op3(b, "mul.rn.f32", bm, dmin, mf);
    ptx_op2(b, "neg.f32", bm, bm);
    ptx_ins(b, "fma.rn.f32 %s, %s, 0fBF000000, %s;", E[s].s, A[s].s, bm.s); /* -(16 a + b) */
  }
}

/* Raw registers per row: the header words h0..h3, then the quant words q0..q7. */
enum { RAW_H = 0, RAW_Q = 4, RAW_COUNT = 12 };
static const ptx_type q4k_raw_types[RAW_COUNT] = {PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32,
                                                  PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32};

static void q4k_load(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const ptx_reg *rowp, ptx_reg g,
                     const char *guard, const gemv_raw *raw) {
  char at[24] = "";
  if (guard) snprintf(at, sizeof at, "@%s ", guard);
  const char *space = gemv_weight_space(p); /* W itself, or the copy engine's ring */
  ptx_reg hdr_off = ptx_new(b, PTX_B32), qoff = ptx_new(b, PTX_B32);
  ptx_op2i(b, "shr.u32", hdr_off, g, "2");
  ptx_op2u(b, "mul.lo.u32", hdr_off, hdr_off, Q4K_BLOCK_BYTES);
  ptx_op3(b, "add.u32", qoff, hdr_off, L->fmt[C32]);
  ptx_reg qoffw = gemv_weight_offset(b, p, qoff), hoffw = gemv_weight_offset(b, p, hdr_off);
  for (uint32_t r = 0; r < p->load_rows; r++) {
    const ptx_reg *h = &raw->r[r][RAW_H], *q = &raw->r[r][RAW_Q];
    ptx_reg ha = gemv_weight_addr(b, p, rowp[r], hoffw), qa = gemv_weight_addr(b, p, rowp[r], qoffw);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s];", at, space, h[0].s, h[1].s, h[2].s, h[3].s, ha.s);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s+16];", at, space, q[0].s, q[1].s, q[2].s, q[3].s, qa.s);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s+32];", at, space, q[4].s, q[5].s, q[6].s, q[7].s, qa.s);
  }
}

static void q4k_compute(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const gemv_raw *raw, ptx_reg u,
                        ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  const uint32_t R = p->load_rows, M = p->m;
  const ptx_reg(*h)[GEMV_MAX_RAW] = raw->r;
  ptx_reg A[GEMV_MAX_LOAD_ROWS][4], E[GEMV_MAX_LOAD_ROWS][4]; /* sub-blocks 2c, 2c+1 in [0], [1] */
  for (uint32_t r = 0; r < R; r++) {
    ptx_comment(b, "row %u: scales and mins of sub-blocks 2c (low nibbles) and 2c+1 (high nibbles)", r);
    q4k_emit_scales(b, L, &h[r][RAW_H], A[r], E[r]);
  }
  ptx_reg xs_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", xs_u.s, u.s, L->xs_base.s);
  ptx_reg S[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M][4];
  for (int w = 0; w < 8; w++) {
    ptx_comment(b, "quant bytes %d..%d: weights 64c+%d.. (low nibbles) and 64c+%d.. (high)", 4 * w, 4 * w + 3,
                4 * w, 32 + 4 * w);
    ptx_reg f[GEMV_MAX_LOAD_ROWS][2][4];
    for (uint32_t r = 0; r < R; r++) {
      ptx_reg lo = ptx_new(b, PTX_B32), hi = ptx_new(b, PTX_B32);
      /* nibbles into bits 3..6 of each byte: f = 0.5 + q/32 */
      ptx_op2i(b, "shl.b32", lo, raw->r[r][RAW_Q + w], "3");
      ptx_op2i(b, "and.b32", lo, lo, "0x78787878");
      ptx_op2i(b, "shr.b32", hi, raw->r[r][RAW_Q + w], "1");
      ptx_op2i(b, "and.b32", hi, hi, "0x78787878");
      gemv_bytes_to_floats(b, L, lo, f[r][0]);
      gemv_bytes_to_floats(b, L, hi, f[r][1]);
    }
    for (uint32_t m = 0; m < M; m++) {
      ptx_reg xv[2][4];
      for (int hl = 0; hl < 2; hl++) {
        for (int j = 0; j < 4; j++) xv[hl][j] = ptx_new(b, PTX_F32);
        ptx_ld_v4(b, "ld.shared.v4.f32", xv[hl], xs_u, ((m * 16 + 8 * (uint32_t)hl + (uint32_t)w) * p->xs_stride) * 16);
      }
      for (uint32_t r = 0; r < R; r++)
        for (int hl = 0; hl < 2; hl++)
          for (int j = 0; j < 4; j++) {
            if (w == 0 && j == 0) {
              S[r][m][hl] = ptx_new(b, PTX_F32);
              ptx_op3(b, "mul.rn.f32", S[r][m][hl], f[r][hl][j], xv[hl][j]);
            } else {
              ptx_op4(b, "fma.rn.f32", S[r][m][hl], f[r][hl][j], xv[hl][j], S[r][m][hl]);
            }
          }
    }
  }
  ptx_comment(b, "fold the chunk into the row sums: acc += 32a*S - (16a+b)*sum(x), per sub-block");
  gemv_fold(b, p, L, u, R, A, E, S, acc);
}

/* (gemv.h) */
void q4k_idp_row_scales(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg *d, ptx_reg *neg_dmin,
                        ptx_reg sc[2], ptx_reg *sc16, ptx_reg mn16[2]) {
  ptx_reg dh = ptx_new(b, PTX_B16), mh = ptx_new(b, PTX_B16), scb, mnb, mn[2];
  *d = ptx_new(b, PTX_B64);
  *neg_dmin = ptx_new(b, PTX_B64);
  ptx_ins(b, "mov.b32 {%s, %s}, %s;", dh.s, mh.s, h[0].s);
  ptx_ins(b, "cvt.f64.f16 %s, %s;", d->s, dh.s);
  ptx_ins(b, "cvt.f64.f16 %s, %s;", neg_dmin->s, mh.s);
  ptx_ins(b, "neg.f64 %s, %s;", neg_dmin->s, neg_dmin->s);
  q4k_emit_scale_bytes(b, L, h, &scb, &mnb);
  for (int s = 0; s < 2; s++) {
    const ptx_reg sel = s ? L->fmt[SEL_INT_HI] : L->fmt[SEL_INT_LO];
    sc[s] = ptx_new(b, PTX_B32);
    mn[s] = ptx_new(b, PTX_B32);
    ptx_op4(b, "prmt.b32", sc[s], scb, L->fmt[ZERO], sel);
    ptx_op4(b, "prmt.b32", mn[s], mnb, L->fmt[ZERO], sel);
    mn16[s] = ptx_new(b, PTX_B32);
    ptx_op2i(b, "shl.b32", mn16[s], mn[s], "4");
  }
  *sc16 = ptx_new(b, PTX_B32);
  ptx_op2i(b, "shl.b32", *sc16, sc[0], "4");
}

/* Integer dot products (idp=1; gemv.c's gemv_stage_int stages x). For each
 * batch row, sub-block s of the chunk (low nibbles s = 0, high s = 1) and
 * plane p, T[s][p] = sum q' * P_p over its 32 weights, by dp4a: exact, with
 * q' = q for the low nibbles and 16 q for the high ones (masked in place,
 * not shifted). Then IA = sum_p 2^(16-8p) (16 sc0 T[0][p] + sc1 T[1][p])
 * and B = 16 (m0 U0 + m1 U1) are exact integers, 16 times the chunk's (below
 * 2^42 and 2^38, int32 per plane), so d*IA and dmin*B are exact in fp64 (an
 * f16 has 11 significant bits), and the chunk adds (d*IA - dmin*B) * 2^-e/16
 * to the row's fp64 sum: one rounding, then the sum's. */
static void q4k_idp_compute(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const gemv_raw *raw, ptx_reg u,
                            ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  const uint32_t R = p->load_rows, M = p->m;
  ptx_reg sc[GEMV_MAX_LOAD_ROWS][2], dd[GEMV_MAX_LOAD_ROWS], dm[GEMV_MAX_LOAD_ROWS];
  ptx_reg nib[GEMV_MAX_LOAD_ROWS][2][8], sc16[GEMV_MAX_LOAD_ROWS], mn16[GEMV_MAX_LOAD_ROWS][2];
  for (uint32_t r = 0; r < R; r++) {
    ptx_comment(b, "row %u: d, -dmin in fp64; scales and mins of sub-blocks 2c, 2c+1 as integers; the nibbles as bytes", r);
    q4k_idp_row_scales(b, L, &raw->r[r][RAW_H], &dd[r], &dm[r], sc[r], &sc16[r], mn16[r]);
    for (int w = 0; w < 8; w++) {
      nib[r][0][w] = ptx_new(b, PTX_B32);
      nib[r][1][w] = ptx_new(b, PTX_B32);
      ptx_op2i(b, "and.b32", nib[r][0][w], raw->r[r][RAW_Q + w], "0x0F0F0F0F");
      ptx_op2i(b, "and.b32", nib[r][1][w], raw->r[r][RAW_Q + w], "0xF0F0F0F0"); /* 16 q: no shift */
    }
  }
  ptx_reg xs_u = ptx_new(b, PTX_B32), xsum_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", xs_u.s, u.s, L->xs_base.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", xsum_u.s, u.s, L->xsum_base.s);
  static const char *const dp[3] = {"dp4a.u32.s32", "dp4a.u32.u32", "dp4a.u32.u32"};
  for (uint32_t m = 0; m < M; m++) {
    ptx_comment(b, "batch row %u: the chunk's byte planes (unit 4p + q: values 16q..16q+15), U0, U1, 2^-e", m);
    ptx_reg P[3][2][4], us[4], T[GEMV_MAX_LOAD_ROWS][2][3];
    for (int s = 0; s < 2; s++) { /* a sub-block's planes at a time: fewer registers */
      for (int pl = 0; pl < 3; pl++)
        for (int q = 0; q < 2; q++) {
          for (int j = 0; j < 4; j++) P[pl][q][j] = ptx_new(b, PTX_B32);
          ptx_ld_v4(b, "ld.shared.v4.b32", P[pl][q], xs_u,
                    ((m * 16 + 4 * (uint32_t)pl + 2 * (uint32_t)s + (uint32_t)q) * p->xs_stride) * 16);
        }
      for (uint32_t r = 0; r < R; r++)
        for (int pl = 0; pl < 3; pl++) {
          T[r][s][pl] = ptx_new(b, PTX_B32);
          for (int w = 0; w < 8; w++) /* word w: values 4w.. of sub-block s, plane word w%4 of unit 2s + w/4 */
            ptx_ins(b, "%s %s, %s, %s, %s;", dp[pl], T[r][s][pl].s, nib[r][s][w].s, P[pl][w / 4][w % 4].s,
                    w == 0 ? "0" : T[r][s][pl].s);
        }
    }
    for (int j = 0; j < 4; j++) us[j] = ptx_new(b, PTX_B32);
    ptx_ld_v4(b, "ld.shared.v4.b32", us, xsum_u, m * p->tile_chunks * 16);
    ptx_reg scale = ptx_new(b, PTX_B64);
    ptx_ins(b, "mov.b64 %s, {%s, %s};", scale.s, L->fmt[ZERO].s, us[2].s);
    for (uint32_t r = 0; r < R; r++) {
      ptx_reg ia[3];
      for (int pl = 0; pl < 3; pl++) {
        ia[pl] = ptx_new(b, PTX_B32);
        ptx_op3(b, "mul.lo.s32", ia[pl], sc16[r], T[r][0][pl]);
        ptx_op4(b, "mad.lo.s32", ia[pl], sc[r][1], T[r][1][pl], ia[pl]);
      }
      q4k_idp_add_chunk(b, ia, mn16[r], us[0], us[1], dd[r], dm[r], scale, acc[r][m]);
    }
  }
}

/* (gemv.h) IA = 65536 ia0 + 256 ia1 + ia2 and B = mn16_0 U0 + mn16_1 U1 in
 * int64 (exact), then d IA + (-dmin) B with one rounding (the two products
 * are exact in fp64, so the fma's one rounding is the subtraction's), times
 * 2^-e/16 (exact) added to the sum: the fma's one rounding is the add's. */
void q4k_idp_add_chunk(ptx_builder *b, const ptx_reg ia[3], const ptx_reg mn16[2], ptx_reg u0, ptx_reg u1, ptx_reg d,
                       ptx_reg neg_dmin, ptx_reg scale, ptx_reg acc) {
  ptx_reg ia64 = ptx_new(b, PTX_B64), t64 = ptx_new(b, PTX_B64), b64 = ptx_new(b, PTX_B64);
  ptx_ins(b, "mul.wide.s32 %s, %s, 65536;", ia64.s, ia[0].s);
  ptx_ins(b, "mad.wide.s32 %s, %s, 256, %s;", ia64.s, ia[1].s, ia64.s);
  ptx_ins(b, "cvt.s64.s32 %s, %s;", t64.s, ia[2].s);
  ptx_ins(b, "add.s64 %s, %s, %s;", ia64.s, ia64.s, t64.s);
  ptx_ins(b, "mul.wide.s32 %s, %s, %s;", b64.s, mn16[0].s, u0.s);
  ptx_ins(b, "mad.wide.s32 %s, %s, %s, %s;", b64.s, mn16[1].s, u1.s, b64.s);
  ptx_reg fa = ptx_new(b, PTX_B64), fb = ptx_new(b, PTX_B64);
  ptx_ins(b, "cvt.rn.f64.s64 %s, %s;", fa.s, ia64.s);
  ptx_ins(b, "cvt.rn.f64.s64 %s, %s;", fb.s, b64.s);
  ptx_ins(b, "mul.rn.f64 %s, %s, %s;", fb.s, fb.s, neg_dmin.s); /* exact */
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", fa.s, fa.s, d.s, fb.s); /* d IA exact: one rounding */
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", acc.s, fa.s, scale.s, acc.s); /* times a power of two: exact */
}

static const gemv_format q4k_format = {
    .name = "q4k_gemv",
    .sums = 2,
    .row_stride = q4k_row_stride,
    .x_base = q4k_x_base,
    .x_offset = q4k_x_offset,
    .lane_consts = q4k_lane_consts,
    .second_chunk_early = true,
    /* 6144x4096 at m = 16: one kernel 52.2 µs, two of 8 rows 51.0; q, k, v
     * of 4096, 1024, 1024 rows x 4096 (as many weights): 46.3 and 38.5;
     * 4096x4096: 36.8 and 40.2 */
    .batch_split_min_weights = 3ull << 23,
    .planes = 1, /* super-blocks as stored */
    .plane_start = {0},
    .plane_sb_bytes = {Q4K_BLOCK_BYTES},
    .raw_count = RAW_COUNT,
    .raw_types = q4k_raw_types,
    .load = q4k_load,
    .compute = q4k_compute,
};

uint32_t q4k_gemv_batch_rows(const ptxgen_spec *spec) {
  return spec->tc ? spec->m : gemv_batch_rows(spec, &q4k_format);
}

/* The same, with integer dot products: the x staging and arithmetic
 * differ, the loads and everything else are q4k_format's. */
static gemv_format q4k_idp_format(void) {
  gemv_format f = q4k_format;
  f.name = "q4k_gemv_idp";
  f.sums = 4; /* U0, U1, 2^-e's high word, unused: 16 bytes per chunk */
  f.lane_consts = q4k_idp_lane_consts;
  f.compute = q4k_idp_compute;
  f.int_dot = true;
  return f;
}

int q4k_gemv_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  if (spec->tc) return gemv_tc_emit(spec, out);
  if (spec->idp) {
    const gemv_format f = q4k_idp_format();
    return gemv_idp_mma_takes(spec) ? gemv_idp_mma_emit(spec, &f, out) : gemv_emit(spec, &f, out);
  }
  return gemv_emit(spec, &q4k_format, out);
}
