/*
 * gemv_q6k.c: the Q6_K weight format for the GEMV skeleton (gemv.c), and the
 * repacking of Q6_K rows that the kernel reads.
 *
 * Q6_K (formats.md): 210-byte super-blocks of 256 weights: ql[128] (low 4
 * bits), qh[64] (high 2 bits), 16 signed 8-bit scales, d (f16). 210 bytes
 * leave super-blocks only 2-byte aligned, too little for 16-byte loads, so
 * rows are repacked once, at upload, into planes (ptxgen_q6k_repack): per
 * row, all ql, then all qh, then all scales, then all d, padded to 16 bytes.
 * The bytes are the same; only their places change.
 *
 * Chunk part c = 2h + l2 (h, l2 in 0..1) of a super-block is the weights
 * 128h + 32t + 16*l2 + j for t, the quarter, 0..3 and j 0..15. Their bits are
 * in three 16-byte runs: A = ql[64h + 16*l2 ..] (t = 0 low nibbles, t = 2
 * high), B = ql[64h + 32 + 16*l2 ..] (t = 1 low, t = 3 high) and
 * Q = qh[32h + 16*l2 ..] (bits 2t, 2t+1), and their scales are
 * s[8h + l2 + 2t]. x float4 i = 4t + w of the chunk is
 * x[128h + 16*l2 + 32t + 4w ..].
 *
 * Arithmetic: the 6-bit value u = q + 32 is assembled into bits 1..6 of a
 * byte (lo << 1 | hi << 5, four at a time with masks) and one byte permute
 * makes f = 0.5 + u/128 exactly (gemv_bytes_to_floats). Then
 * sum(q x) = 128*S - 96*sum(x) with S = sum(f x), and the quarter adds
 * (128 d s)*S + (-96 d s)*sum(x), both factors exact in f32.
 */
#include <string.h>

#include <stdio.h>

#include "gemv.h"
#include "kernels.h"

#define Q6K_BLOCK_BYTES 210u

uint32_t ptxgen_q6k_row_stride(uint32_t k) { return (k / 256 * Q6K_BLOCK_BYTES + 15) / 16 * 16; }

void ptxgen_q6k_repack(const void *src, uint32_t k, uint32_t n, void *dst) {
  const uint32_t nb = k / 256, stride = ptxgen_q6k_row_stride(k);
  for (uint32_t r = 0; r < n; r++) {
    const unsigned char *in = (const unsigned char *)src + (size_t)r * nb * Q6K_BLOCK_BYTES;
    unsigned char *row = (unsigned char *)dst + (size_t)r * stride;
    for (uint32_t b = 0; b < nb; b++, in += Q6K_BLOCK_BYTES) {
      memcpy(row + b * 128, in, 128);                /* ql */
      memcpy(row + nb * 128 + b * 64, in + 128, 64); /* qh */
      memcpy(row + nb * 192 + b * 16, in + 192, 16); /* scales */
      memcpy(row + nb * 208 + b * 2, in + 208, 2);   /* d */
    }
    memset(row + nb * Q6K_BLOCK_BYTES, 0, stride - nb * Q6K_BLOCK_BYTES);
  }
}

/* Format constants in gemv_lane.fmt[] */
enum { QL_OFF, QH_OFF, SC_OFF, POS0, POS1 };

/* out = outer * (v >> bits) + ((v & (2^bits - 1)) << inner_shift): a Q6_K
 * super-block interleaves its x in two levels, both of this form. */
static void emit_split_offset(ptx_builder *b, ptx_reg v, uint32_t bits, uint32_t outer, uint32_t inner_shift,
                              ptx_reg out) {
  ptx_reg t = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, %u;", t.s, v.s, bits);
  ptx_ins(b, "and.b32 %s, %s, %u;", out.s, v.s, (1u << bits) - 1);
  ptx_ins(b, "shl.b32 %s, %s, %u;", out.s, out.s, inner_shift);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", out.s, t.s, outer, out.s);
}

/* float4 i of a chunk: 32 * (i >> 2) + 4 * (i & 3) */
static void q6k_x_offset(ptx_builder *b, ptx_reg i, ptx_reg out) { emit_split_offset(b, i, 2, 32, 2, out); }

/* chunk part c: 128 * (c >> 1) + 16 * (c & 1) */
static void q6k_x_base(ptx_builder *b, ptx_reg c, ptx_reg out) { emit_split_offset(b, c, 1, 128, 4, out); }

/* Super-blocks of the planes the loads address: the row's, or 8 in a stage
 * of the copy engine's ring (gemv_format.planes). */
static uint32_t planes_nb(const gemv_plan *p) { return p->preload == GEMV_PRELOAD_BULK ? 8 : p->k / 256; }

static void q6k_lane_consts(ptx_builder *b, const gemv_plan *p, gemv_lane *L) {
  const uint32_t nb = planes_nb(p);
  ptx_comment(b, "Q6_K lane constants: part c = 2h + l2 of every super-block");
  for (int i = 0; i <= POS1; i++) L->fmt[i] = ptx_new(b, PTX_B32);
  ptx_reg h = ptx_new(b, PTX_B32), l2 = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, 1;", h.s, L->c.s);
  ptx_ins(b, "and.b32 %s, %s, 1;", l2.s, L->c.s);
  /* ql run A at 64h + 16*l2 within the super-block's 128 ql bytes */
  ptx_ins(b, "shl.b32 %s, %s, 4;", L->fmt[QL_OFF].s, l2.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 64, %s;", L->fmt[QL_OFF].s, h.s, L->fmt[QL_OFF].s);
  /* qh run at 32h + 16*l2 = 16c within the qh plane */
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %u;", L->fmt[QH_OFF].s, L->c.s, nb * 128);
  /* scales 8h .. 8h+7 (a v2 load), within the scales plane */
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %u;", L->fmt[SC_OFF].s, h.s, nb * 192);
  /* scale of quarter t: byte l2 + 2t of those 8: bit 8*l2 (+16) of word t/2 */
  ptx_ins(b, "shl.b32 %s, %s, 3;", L->fmt[POS0].s, l2.s);
  ptx_ins(b, "add.u32 %s, %s, 16;", L->fmt[POS1].s, L->fmt[POS0].s);
}

/* Raw registers per row: ql words A (bytes 0..15 of the lane's run) and B
 * (bytes 32..47), the qh words Q, the scale words SW, and d. */
enum { RAW_A = 0, RAW_B = 4, RAW_Q = 8, RAW_SW = 12, RAW_D = 14, RAW_COUNT = 15 };
static const ptx_type q6k_raw_types[RAW_COUNT] = {PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32,
                                                  PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B32,
                                                  PTX_B32, PTX_B32, PTX_B32, PTX_B32, PTX_B16};

static void q6k_load(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const ptx_reg *rowp, ptx_reg g,
                     const char *guard, const gemv_raw *raw) {
  const uint32_t nb = planes_nb(p);
  char at[24] = "";
  if (guard) snprintf(at, sizeof at, "@%s ", guard);
  const char *space = gemv_weight_space(p); /* W itself, or the copy engine's ring */
  ptx_reg sb = ptx_new(b, PTX_B32), qa = ptx_new(b, PTX_B32), qh = ptx_new(b, PTX_B32);
  ptx_reg sc = ptx_new(b, PTX_B32), dd = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, 2;", sb.s, g.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 128, %s;", qa.s, sb.s, L->fmt[QL_OFF].s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 64, %s;", qh.s, sb.s, L->fmt[QH_OFF].s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", sc.s, sb.s, L->fmt[SC_OFF].s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 2, %u;", dd.s, sb.s, nb * 208);
  ptx_reg off[4] = {qa, qh, sc, dd};
  for (int i = 0; i < 4; i++) off[i] = gemv_weight_offset(b, p, off[i]);
  for (uint32_t r = 0; r < p->load_rows; r++) {
    const ptx_reg *A = &raw->r[r][RAW_A], *B = &raw->r[r][RAW_B], *Q = &raw->r[r][RAW_Q];
    const ptx_reg *SW = &raw->r[r][RAW_SW];
    ptx_reg a[4];
    for (int i = 0; i < 4; i++) a[i] = gemv_weight_addr(b, p, rowp[r], off[i]);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s];", at, space, A[0].s, A[1].s, A[2].s, A[3].s, a[0].s);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s+32];", at, space, B[0].s, B[1].s, B[2].s, B[3].s, a[0].s);
    ptx_ins(b, "%sld.%s.v4.u32 {%s, %s, %s, %s}, [%s];", at, space, Q[0].s, Q[1].s, Q[2].s, Q[3].s, a[1].s);
    ptx_ins(b, "%sld.%s.v2.u32 {%s, %s}, [%s];", at, space, SW[0].s, SW[1].s, a[2].s);
    ptx_ins(b, "%sld.%s.b16 %s, [%s];", at, space, raw->r[r][RAW_D].s, a[3].s);
  }
}

static void q6k_compute(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const gemv_raw *raw, ptx_reg u,
                        ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  const uint32_t R = p->load_rows, M = p->m;
  ptx_reg Aq[GEMV_MAX_LOAD_ROWS][4], Eq[GEMV_MAX_LOAD_ROWS][4]; /* per row and quarter: 128 d s and -96 d s */
  for (uint32_t r = 0; r < R; r++) {
    ptx_comment(b, "row %u: d times the scales of the four quarters", r);
    ptx_reg d = ptx_new(b, PTX_F32);
    ptx_op2(b, "cvt.f32.f16", d, raw->r[r][RAW_D]);
    for (int t = 0; t < 4; t++) {
      ptx_reg si = ptx_new(b, PTX_B32), sf = ptx_new(b, PTX_F32), ds = ptx_new(b, PTX_F32);
      ptx_op3i(b, "bfe.s32", si, raw->r[r][RAW_SW + (t >> 1)], (t & 1) ? L->fmt[POS1] : L->fmt[POS0], "8");
      ptx_op2(b, "cvt.rn.f32.s32", sf, si);
      ptx_op3(b, "mul.rn.f32", ds, d, sf); /* exact: 11 x 8 bits */
      Aq[r][t] = ptx_new(b, PTX_F32);
      Eq[r][t] = ptx_new(b, PTX_F32);
      ptx_op2i(b, "mul.rn.f32", Aq[r][t], ds, "0f43000000"); /* 128 d s */
      ptx_op2i(b, "mul.rn.f32", Eq[r][t], ds, "0fC2C00000"); /* -96 d s */
    }
  }
  ptx_reg xs_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", xs_u.s, u.s, L->xs_base.s);
  /* per quarter t: the ql word, its shift, and the shift of the qh bits */
  static const int lo_shift[4] = {1, 1, -3, -3}, hi_shift[4] = {5, 3, 1, -1};
  ptx_reg S[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M][4];
  for (int w = 0; w < 4; w++) {
    ptx_comment(b, "bytes %d..%d of the runs: weights 128h + 32t + 16*l2 + %d.. for t = 0..3", 4 * w, 4 * w + 3, 4 * w);
    ptx_reg f[GEMV_MAX_LOAD_ROWS][4][4];
    for (uint32_t r = 0; r < R; r++)
      for (int t = 0; t < 4; t++) {
        ptx_reg lo = ptx_new(b, PTX_B32), hi = ptx_new(b, PTX_B32), v = ptx_new(b, PTX_B32);
        const ptx_reg src = raw->r[r][((t & 1) ? RAW_B : RAW_A) + w];
        ptx_op2u(b, lo_shift[t] > 0 ? "shl.b32" : "shr.b32", lo, src,
                 (uint32_t)(lo_shift[t] > 0 ? lo_shift[t] : -lo_shift[t]));
        ptx_op2i(b, "and.b32", lo, lo, "0x1E1E1E1E");
        ptx_op2u(b, hi_shift[t] > 0 ? "shl.b32" : "shr.b32", hi, raw->r[r][RAW_Q + w],
                 (uint32_t)(hi_shift[t] > 0 ? hi_shift[t] : -hi_shift[t]));
        ptx_op2i(b, "and.b32", hi, hi, "0x60606060");
        ptx_op3(b, "or.b32", v, lo, hi); /* u = q + 32 in bits 1..6 */
        gemv_bytes_to_floats(b, L, v, f[r][t]);
      }
    for (uint32_t m = 0; m < M; m++)
      for (int t = 0; t < 4; t++) {
        ptx_reg xv[4];
        for (int j = 0; j < 4; j++) xv[j] = ptx_new(b, PTX_F32);
        ptx_ld_v4(b, "ld.shared.v4.f32", xv, xs_u, ((m * 16 + 4 * (uint32_t)t + (uint32_t)w) * p->xs_stride) * 16);
        for (uint32_t r = 0; r < R; r++)
          for (int j = 0; j < 4; j++) {
            if (w == 0 && j == 0) {
              S[r][m][t] = ptx_new(b, PTX_F32);
              ptx_op3(b, "mul.rn.f32", S[r][m][t], f[r][t][j], xv[j]);
            } else {
              ptx_op4(b, "fma.rn.f32", S[r][m][t], f[r][t][j], xv[j], S[r][m][t]);
            }
          }
      }
  }
  ptx_comment(b, "fold the chunk into the row sums: acc += 128ds*S - 96ds*sum(x), per quarter");
  gemv_fold(b, p, L, u, R, Aq, Eq, S, acc);
}

static const gemv_format q6k_format = {
    .name = "q6k_gemv",
    .sums = 4,
    .row_stride = ptxgen_q6k_row_stride,
    .x_base = q6k_x_base,
    .x_offset = q6k_x_offset,
    .lane_consts = q6k_lane_consts,
    .batch_split_min_weights = 1ull << 24, /* 4096x4096 at m = 16: one kernel 64.9 µs, two of 8 rows 43.5 */
    /* planes as repacked (ptxgen_q6k_repack): ql, qh, scales, d */
    .planes = 4,
    .plane_start = {0, 128, 192, 208},
    .plane_sb_bytes = {128, 64, 16, 2},
    .raw_count = RAW_COUNT,
    .raw_types = q6k_raw_types,
    .load = q6k_load,
    .compute = q6k_compute,
};

int q6k_gemv_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  return spec->tc ? gemv_tc_emit(spec, out) : gemv_emit(spec, &q6k_format, out);
}

uint32_t q6k_gemv_batch_rows(const ptxgen_spec *spec) {
  return spec->tc ? spec->m : gemv_batch_rows(spec, &q6k_format);
}
