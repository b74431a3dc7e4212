/*
 * gemv_q4k.c: the Q4_K matrix-vector product, y[m][n] = x[m][k] . W[n][k]^T.
 *
 * W is Q4_K (144-byte super-blocks of 256 weights, see formats.md), x and y
 * fp32. Every dimension is a constant of the generated code.
 *
 * Work split
 *   A row is cut into "chunks" of 64 weights: chunk g of a row is 32 bytes
 *   of quants (qs[32c .. 32c+31], c = g % 4, of super-block g / 4) whose low
 *   nibbles are sub-block 2c and high nibbles sub-block 2c+1. Lane l of a warp
 *   owns the chunks g = l, l+32, l+64, ... of each of the warp's rows (so c is
 *   a per-lane constant), reads them with two 16-byte loads plus the 16-byte
 *   super-block header, and the 32 lanes' partial sums are combined with a
 *   butterfly of shuffles. A block of `warps` warps owns rows*warps rows and
 *   walks the row groups with a grid stride.
 *
 * Activations in shared memory
 *   x is staged in shared memory, permuted so that lane l's 16-byte reads of
 *   its chunk's x values are consecutive across the warp (no bank conflicts):
 *   float4 i (0..15) of chunk u of batch row r is at ((r*16 + i)*U + u)*16.
 *   Beside it, per chunk and batch row, the negated sums of the chunk's low
 *   and high 32 x values. When x (all m rows) fits the target's shared memory
 *   it is staged once per block; otherwise k is cut into tiles staged in turn.
 *
 * Arithmetic (about 2.5 instructions per weight at m = 1)
 *   A sub-block contributes sum_i (a*q_i - b)*x_i = a*sum(q_i x_i) - b*sum(x_i),
 *   with a = f32(d)*sc and b = f32(dmin)*m computed exactly as the reference
 *   does. A quant q is turned into a float without a conversion instruction:
 *   the nibble is masked into bits 3..6 of a byte and one byte permute puts
 *   that byte under the exponent of 0.5, giving f = 0.5 + q/32 exactly. So
 *   sum(q x) = 32*S - 16*sum(x) with S = sum(f x), and the contribution is
 *   (32a)*S + (16a + b)*(-sum x): two fma per sub-block, the sums of x
 *   precomputed at staging time.
 *
 * Determinism and batch invariance
 *   Every float operation is written with an explicit rounding mode, so ptxas
 *   cannot contract or reorder it. Each output is reduced in the same order
 *   whatever m is: per lane over its chunks in increasing g (tiles only change
 *   when x is staged, not which lane owns a chunk: a lane always owns
 *   g = l mod 32), then the fixed butterfly. So row i of an m > 1 product is
 *   bit-identical to the m = 1 product of that row.
 */
#include <stdio.h>

#include "kernels.h"
#include "ptx.h"

#define Q4K_BLOCK_BYTES 144u
#define CHUNK_SHARED_BYTES 264u /* per chunk and batch row: 64 floats + 2 sums */
#define GRID_CAP 1024u          /* blocks; row groups beyond are walked with a grid stride */

/* Shared memory we allow x to take, per target: under the per-block opt-in
 * maximum (64 KiB on sm_75, 163 KiB on sm_80, 99 KiB on sm_86/89/120,
 * 227 KiB on sm_90/100). */
static uint32_t shared_budget(uint32_t sm) {
  switch (sm) {
  case 75: return 60u * 1024;
  case 80: return 152u * 1024;
  case 90: case 100: return 200u * 1024;
  default: return 92u * 1024;
  }
}

/* Every choice the emitter makes from a spec, in one place. */
typedef struct {
  uint32_t k, n, m, sm;
  uint32_t rows, warps, threads; /* per warp, per block, threads per block */
  uint32_t row_bytes;            /* k / 256 * 144 */
  uint32_t chunks;               /* per row: k / 64 */
  uint32_t tile_chunks;          /* chunks of x staged at a time */
  uint32_t tiles;
  uint32_t groups;               /* row groups of rows*warps rows */
  uint32_t xs_bytes, shared_bytes;
} gemv_plan;

static gemv_plan plan_for(const ptxgen_spec *s) {
  gemv_plan p = {.k = s->k, .n = s->n, .m = s->m, .sm = s->sm};
  p.rows = s->rows ? s->rows : 2;
  p.warps = s->warps ? s->warps : 8;
  p.threads = p.warps * 32;
  p.row_bytes = s->k / 256 * Q4K_BLOCK_BYTES;
  p.chunks = s->k / 64;
  uint32_t fit = shared_budget(s->sm) / (s->m * CHUNK_SHARED_BYTES);
  if (fit >= p.chunks) {
    p.tile_chunks = p.chunks;
  } else {
    /* whole warps' worth of chunks where possible; any size is correct */
    p.tile_chunks = fit >= 32 ? fit & ~31u : fit;
  }
  p.tiles = (p.chunks + p.tile_chunks - 1) / p.tile_chunks;
  uint32_t per_group = p.rows * p.warps;
  p.groups = (s->n + per_group - 1) / per_group;
  p.xs_bytes = s->m * 16 * p.tile_chunks * 16;
  p.shared_bytes = s->m * p.tile_chunks * CHUNK_SHARED_BYTES;
  return p;
}

/* Registers that hold per-lane constants for the whole kernel. */
typedef struct {
  ptx_reg tid, lane, warp, c32;     /* c32 = 32*c, c = lane % 4 (quant chunk in super-block) */
  ptx_reg shift_a, mask_a, mask_c;  /* scale/min unpacking, see emit_scales */
  ptx_reg sel_lo, sel_hi;           /* byte selectors of this lane's two sub-blocks */
  ptx_reg magic_int;                /* 0x4B000000: 2^23 */
  ptx_reg half_exp;                 /* 0x3F000000: 0.5 */
  ptx_reg xs_base, xsum_base;       /* shared addresses */
  ptx_reg W, x, y;                  /* global addresses */
} lane_consts;

static void emit_lane_consts(ptx_builder *b, const gemv_plan *p, lane_consts *L) {
  L->W = ptx_param_u64(b, "W");
  L->x = ptx_param_u64(b, "x");
  L->y = ptx_param_u64(b, "y");
  L->tid = ptx_new(b, PTX_B32);
  L->lane = ptx_new(b, PTX_B32);
  L->warp = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, %%tid.x;", L->tid.s);
  ptx_ins(b, "and.b32 %s, %s, 31;", L->lane.s, L->tid.s);
  ptx_ins(b, "shr.u32 %s, %s, 5;", L->warp.s, L->tid.s);

  ptx_comment(b, "lane constants: c = lane %% 4 is the quant chunk of every super-block this lane reads");
  ptx_reg c = ptx_new(b, PTX_B32), hi = ptx_new(b, PTX_PRED), byte = ptx_new(b, PTX_B32);
  L->c32 = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, 3;", c.s, L->lane.s);
  ptx_ins(b, "shl.b32 %s, %s, 5;", L->c32.s, c.s);
  ptx_ins(b, "setp.ge.u32 %s, %s, 2;", hi.s, c.s);
  /* Sub-blocks j = 2c, 2c+1. For j < 4, sc = s[j] & 63 and m = s[j+4] & 63.
   * For j >= 4, sc = (s[j+4] & 15) | (s[j-4] >> 6) << 4 and
   * m = (s[j+4] >> 4) | (s[j] >> 6) << 4. With words h1 = s[0..3],
   * h2 = s[4..7], h3 = s[8..11], both cases are, bytewise,
   *   sc = ((h1 >> shift_a) & mask_a) | (h3 & mask_c)
   *   m  = ((h2 >> shift_a) & mask_a) | ((h3 >> 4) & mask_c)
   * with (0, 0x3F.., 0) for j < 4 and (2, 0x30.., 0x0F..) for j >= 4; the
   * lane's values are bytes (2c) % 4 and (2c) % 4 + 1 of those words. */
  L->shift_a = ptx_new(b, PTX_B32);
  L->mask_a = ptx_new(b, PTX_B32);
  L->mask_c = ptx_new(b, PTX_B32);
  ptx_ins(b, "selp.b32 %s, 2, 0, %s;", L->shift_a.s, hi.s);
  ptx_ins(b, "selp.b32 %s, 0x30303030, 0x3F3F3F3F, %s;", L->mask_a.s, hi.s);
  ptx_ins(b, "selp.b32 %s, 0x0F0F0F0F, 0, %s;", L->mask_c.s, hi.s);
  /* prmt selector taking byte `byte` of the first operand into byte 0 and
   * bytes 1..3 of 0x4B000000: the float 2^23 + value. */
  L->sel_lo = ptx_new(b, PTX_B32);
  L->sel_hi = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, 1;", byte.s, c.s);
  ptx_ins(b, "shl.b32 %s, %s, 1;", byte.s, byte.s);
  ptx_ins(b, "or.b32 %s, %s, 0x7650;", L->sel_lo.s, byte.s);
  ptx_ins(b, "add.u32 %s, %s, 1;", L->sel_hi.s, L->sel_lo.s);
  L->magic_int = ptx_imm_b32(b, 0x4B000000u);
  L->half_exp = ptx_imm_b32(b, 0x3F000000u);
  L->xs_base = ptx_new(b, PTX_B32);
  L->xsum_base = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, xs;", L->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", L->xsum_base.s, L->xs_base.s, p->xs_bytes);
}

/* Stages tile `tile` (register) of x into shared memory: the permuted values
 * and the negated low/high sums of each chunk. tile_len = chunks in this tile. */
static void emit_stage(ptx_builder *b, const gemv_plan *p, const lane_consts *L, ptx_reg tile,
                       ptx_reg tile_len) {
  ptx_comment(b, "stage x: chunk u of this tile, all %u batch rows (64 floats + 2 sums each)", p->m);
  char loop[32], done[32];
  ptx_label_new(b, "stage", loop);
  ptx_label_new(b, "stage_done", done);
  ptx_reg u = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_reg first = ptx_new(b, PTX_B32);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", first.s, tile.s, p->tile_chunks);
  ptx_ins(b, "mov.u32 %s, %s;", u.s, L->tid.s);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %s;", pr.s, u.s, tile_len.s);
  ptx_ins(b, "@%s bra %s;", pr.s, done);
  ptx_reg g = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), src = ptx_new(b, PTX_B64);
  ptx_reg dst = ptx_new(b, PTX_B32), sdst = ptx_new(b, PTX_B32);
  ptx_ins(b, "add.u32 %s, %s, %s;", g.s, first.s, u.s);
  ptx_ins(b, "mul.wide.u32 %s, %s, 256;", off.s, g.s); /* 64 floats per chunk */
  ptx_ins(b, "add.u64 %s, %s, %s;", src.s, L->x.s, off.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", dst.s, u.s, L->xs_base.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", sdst.s, u.s, L->xsum_base.s);
  for (uint32_t r = 0; r < p->m; r++) {
    ptx_reg v[16][4];
    for (int i = 0; i < 16; i++) {
      for (int j = 0; j < 4; j++) v[i][j] = ptx_new(b, PTX_F32);
      ptx_ins(b, "ld.global.nc.v4.f32 {%s, %s, %s, %s}, [%s+%u];", v[i][0].s, v[i][1].s, v[i][2].s, v[i][3].s,
              src.s, (r * p->k + (uint32_t)i * 4) * 4);
    }
    for (int i = 0; i < 16; i++)
      ptx_ins(b, "st.shared.v4.f32 [%s+%u], {%s, %s, %s, %s};", dst.s, ((r * 16 + (uint32_t)i) * p->tile_chunks) * 16,
              v[i][0].s, v[i][1].s, v[i][2].s, v[i][3].s);
    ptx_reg sum[2];
    for (int h = 0; h < 2; h++) {
      sum[h] = ptx_new(b, PTX_F32);
      ptx_ins(b, "add.rn.f32 %s, %s, %s;", sum[h].s, v[8 * h][0].s, v[8 * h][1].s);
      for (int e = 2; e < 32; e++)
        ptx_ins(b, "add.rn.f32 %s, %s, %s;", sum[h].s, sum[h].s, v[8 * h + e / 4][e % 4].s);
      ptx_ins(b, "neg.f32 %s, %s;", sum[h].s, sum[h].s);
    }
    ptx_ins(b, "st.shared.v2.f32 [%s+%u], {%s, %s};", sdst.s, r * p->tile_chunks * 8, sum[0].s, sum[1].s);
  }
  ptx_ins(b, "add.u32 %s, %s, %u;", u.s, u.s, p->threads);
  ptx_ins(b, "bra.uni %s;", loop);
  ptx_label(b, done);
}

/* Scale and min of the lane's two sub-blocks from a super-block header
 * (words h0 = d | dmin << 16, h1..h3 = the 12 packed bytes). Produces
 * A = 32*f32(d)*sc and E = 16*f32(d)*sc + f32(dmin)*m for each sub-block. */
static void emit_scales(ptx_builder *b, const lane_consts *L, const ptx_reg h[4], ptx_reg A[2], ptx_reg E[2]) {
  ptx_reg dh = ptx_new(b, PTX_B16), mh = ptx_new(b, PTX_B16);
  ptx_reg d = ptx_new(b, PTX_F32), dmin = ptx_new(b, PTX_F32), d32 = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 {%s, %s}, %s;", dh.s, mh.s, h[0].s);
  ptx_ins(b, "cvt.f32.f16 %s, %s;", d.s, dh.s);
  ptx_ins(b, "cvt.f32.f16 %s, %s;", dmin.s, mh.s);
  ptx_ins(b, "mul.rn.f32 %s, %s, 0f42000000;", d32.s, d.s); /* exact: 32*d */
  ptx_reg t = ptx_new(b, PTX_B32), tc = ptx_new(b, PTX_B32), sc = ptx_new(b, PTX_B32);
  ptx_reg t2 = ptx_new(b, PTX_B32), t3 = ptx_new(b, PTX_B32), mn = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.b32 %s, %s, %s;", t.s, h[1].s, L->shift_a.s);
  ptx_ins(b, "and.b32 %s, %s, %s;", t.s, t.s, L->mask_a.s);
  ptx_ins(b, "and.b32 %s, %s, %s;", tc.s, h[3].s, L->mask_c.s);
  ptx_ins(b, "or.b32 %s, %s, %s;", sc.s, t.s, tc.s);
  ptx_ins(b, "shr.b32 %s, %s, %s;", t2.s, h[2].s, L->shift_a.s);
  ptx_ins(b, "and.b32 %s, %s, %s;", t2.s, t2.s, L->mask_a.s);
  ptx_ins(b, "shr.b32 %s, %s, 4;", t3.s, h[3].s);
  ptx_ins(b, "and.b32 %s, %s, %s;", t3.s, t3.s, L->mask_c.s);
  ptx_ins(b, "or.b32 %s, %s, %s;", mn.s, t2.s, t3.s);
  for (int s = 0; s < 2; s++) {
    const ptx_reg sel = s ? L->sel_hi : L->sel_lo;
    ptx_reg bits = ptx_new(b, PTX_B32), scf = ptx_new(b, PTX_F32), mf = ptx_new(b, PTX_F32);
    ptx_reg bm = ptx_new(b, PTX_F32);
    /* 2^23 + value, minus 2^23: the 6-bit value as an exact float */
    ptx_ins(b, "prmt.b32 %s, %s, %s, %s;", bits.s, sc.s, L->magic_int.s, sel.s);
    ptx_ins(b, "mov.b32 %s, %s;", scf.s, bits.s);
    ptx_ins(b, "sub.rn.f32 %s, %s, 0f4B000000;", scf.s, scf.s);
    ptx_ins(b, "prmt.b32 %s, %s, %s, %s;", bits.s, mn.s, L->magic_int.s, sel.s);
    ptx_ins(b, "mov.b32 %s, %s;", mf.s, bits.s);
    ptx_ins(b, "sub.rn.f32 %s, %s, 0f4B000000;", mf.s, mf.s);
    A[s] = ptx_new(b, PTX_F32);
    E[s] = ptx_new(b, PTX_F32);
    ptx_ins(b, "mul.rn.f32 %s, %s, %s;", A[s].s, d32.s, scf.s);  /* = 32 * (f32(d)*sc), exactly */
    ptx_ins(b, "mul.rn.f32 %s, %s, %s;", bm.s, dmin.s, mf.s);
    ptx_ins(b, "fma.rn.f32 %s, %s, 0f3F000000, %s;", E[s].s, A[s].s, bm.s);
  }
}

/* One chunk (64 weights) of each of the warp's rows: loads, dequantization
 * and accumulation into acc[row][batch]. u = chunk within the tile,
 * hdr_off = byte offset of its super-block within a row. */
static void emit_chunk(ptx_builder *b, const gemv_plan *p, const lane_consts *L, const ptx_reg *rowp,
                       ptx_reg u, ptx_reg hdr_off, ptx_reg acc[4][8]) {
  const uint32_t R = p->rows, M = p->m;
  ptx_reg h[4][4], q[4][8];
  ptx_reg qoff = ptx_new(b, PTX_B32), qoff64 = ptx_new(b, PTX_B64), hoff64 = ptx_new(b, PTX_B64);
  ptx_ins(b, "add.u32 %s, %s, %s;", qoff.s, hdr_off.s, L->c32.s);
  ptx_ins(b, "cvt.u64.u32 %s, %s;", qoff64.s, qoff.s);
  ptx_ins(b, "cvt.u64.u32 %s, %s;", hoff64.s, hdr_off.s);
  ptx_comment(b, "load: super-block header and this lane's 32 quant bytes, for each of %u rows", R);
  for (uint32_t r = 0; r < R; r++) {
    ptx_reg ha = ptx_new(b, PTX_B64), qa = ptx_new(b, PTX_B64);
    ptx_ins(b, "add.u64 %s, %s, %s;", ha.s, rowp[r].s, hoff64.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", qa.s, rowp[r].s, qoff64.s);
    for (int i = 0; i < 4; i++) h[r][i] = ptx_new(b, PTX_B32);
    for (int i = 0; i < 8; i++) q[r][i] = ptx_new(b, PTX_B32);
    ptx_ins(b, "ld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s];", h[r][0].s, h[r][1].s, h[r][2].s, h[r][3].s, ha.s);
    ptx_ins(b, "ld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s+16];", q[r][0].s, q[r][1].s, q[r][2].s, q[r][3].s, qa.s);
    ptx_ins(b, "ld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s+32];", q[r][4].s, q[r][5].s, q[r][6].s, q[r][7].s, qa.s);
  }
  ptx_reg A[4][2], E[4][2];
  for (uint32_t r = 0; r < R; r++) {
    ptx_comment(b, "row %u: scales and mins of sub-blocks 2c (low nibbles) and 2c+1 (high nibbles)", r);
    emit_scales(b, L, h[r], A[r], E[r]);
  }
  ptx_reg xs_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", xs_u.s, u.s, L->xs_base.s);
  ptx_reg S[4][8][2];
  for (int w = 0; w < 8; w++) {
    ptx_comment(b, "quant bytes %d..%d: weights 64c+%d.. (low nibbles) and 64c+%d.. (high)", 4 * w, 4 * w + 3,
                4 * w, 32 + 4 * w);
    ptx_reg f[4][2][4];
    for (uint32_t r = 0; r < R; r++) {
      ptx_reg lo = ptx_new(b, PTX_B32), hi = ptx_new(b, PTX_B32);
      /* nibbles into bits 3..6 of each byte */
      ptx_ins(b, "shl.b32 %s, %s, 3;", lo.s, q[r][w].s);
      ptx_ins(b, "and.b32 %s, %s, 0x78787878;", lo.s, lo.s);
      ptx_ins(b, "shr.b32 %s, %s, 1;", hi.s, q[r][w].s);
      ptx_ins(b, "and.b32 %s, %s, 0x78787878;", hi.s, hi.s);
      for (int j = 0; j < 4; j++) {
        /* byte j under the exponent of 0.5: f = 0.5 + q/32 */
        f[r][0][j] = ptx_new(b, PTX_F32);
        f[r][1][j] = ptx_new(b, PTX_F32);
        ptx_ins(b, "prmt.b32 %s, %s, %s, 0x7%d54;", f[r][0][j].s, lo.s, L->half_exp.s, j);
        ptx_ins(b, "prmt.b32 %s, %s, %s, 0x7%d54;", f[r][1][j].s, hi.s, L->half_exp.s, j);
      }
    }
    for (uint32_t m = 0; m < M; m++) {
      ptx_reg xl[4], xh[4];
      for (int j = 0; j < 4; j++) {
        xl[j] = ptx_new(b, PTX_F32);
        xh[j] = ptx_new(b, PTX_F32);
      }
      ptx_ins(b, "ld.shared.v4.f32 {%s, %s, %s, %s}, [%s+%u];", xl[0].s, xl[1].s, xl[2].s, xl[3].s, xs_u.s,
              ((m * 16 + (uint32_t)w) * p->tile_chunks) * 16);
      ptx_ins(b, "ld.shared.v4.f32 {%s, %s, %s, %s}, [%s+%u];", xh[0].s, xh[1].s, xh[2].s, xh[3].s, xs_u.s,
              ((m * 16 + 8 + (uint32_t)w) * p->tile_chunks) * 16);
      for (uint32_t r = 0; r < R; r++) {
        for (int hl = 0; hl < 2; hl++) {
          const ptx_reg *xv = hl ? xh : xl;
          for (int j = 0; j < 4; j++) {
            if (w == 0 && j == 0) {
              S[r][m][hl] = ptx_new(b, PTX_F32);
              ptx_ins(b, "mul.rn.f32 %s, %s, %s;", S[r][m][hl].s, f[r][hl][j].s, xv[j].s);
            } else {
              ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", S[r][m][hl].s, f[r][hl][j].s, xv[j].s, S[r][m][hl].s);
            }
          }
        }
      }
    }
  }
  ptx_comment(b, "fold the chunk into the row sums: acc += 32a*S + (16a+b)*(-sum x), per sub-block");
  ptx_reg xsum_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", xsum_u.s, u.s, L->xsum_base.s);
  for (uint32_t m = 0; m < M; m++) {
    ptx_reg ns[2] = {ptx_new(b, PTX_F32), ptx_new(b, PTX_F32)};
    ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", ns[0].s, ns[1].s, xsum_u.s, m * p->tile_chunks * 8);
    for (uint32_t r = 0; r < R; r++)
      for (int hl = 0; hl < 2; hl++) {
        ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", acc[r][m].s, A[r][hl].s, S[r][m][hl].s, acc[r][m].s);
        ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", acc[r][m].s, E[r][hl].s, ns[hl].s, acc[r][m].s);
      }
  }
}

int q4k_gemv_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  const gemv_plan p = plan_for(spec);
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(p.sm), p.sm);
  snprintf(out->entry, sizeof out->entry, "q4k_gemv_k%u_n%u_m%u", p.k, p.n, p.m);
  static const char *const params[] = {"W", "x", "y"};
  ptx_entry(&b, out->entry, params, 3, 1);
  ptx_comment(&b, "y[%u][%u] = x[%u][%u] . W[%u][%u]^T; %u rows per warp, %u warps per block, "
                  "%u row groups; x staged %u chunks (%u weights) at a time, %u tile(s)",
              p.m, p.n, p.m, p.k, p.n, p.k, p.rows, p.warps, p.groups, p.tile_chunks, p.tile_chunks * 64, p.tiles);

  lane_consts L;
  emit_lane_consts(&b, &p, &L);

  ptx_reg tile = ptx_new(&b, PTX_B32), tile_len = ptx_new(&b, PTX_B32);
  if (p.tiles == 1) {
    ptx_ins(&b, "mov.u32 %s, 0;", tile.s);
    ptx_ins(&b, "mov.u32 %s, %u;", tile_len.s, p.chunks);
    emit_stage(&b, &p, &L, tile, tile_len);
    ptx_ins(&b, "bar.sync 0;");
  }

  ptx_comment(&b, "row groups, grid-stride");
  ptx_reg group = ptx_new(&b, PTX_B32), ncta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  char group_loop[32], group_done[32];
  ptx_label_new(&b, "group", group_loop);
  ptx_label_new(&b, "group_done", group_done);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", group.s);
  ptx_ins(&b, "mov.u32 %s, %%nctaid.x;", ncta.s);
  ptx_label(&b, group_loop);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, group.s, p.groups);
  ptx_ins(&b, "@%s bra %s;", pr.s, group_done);

  ptx_reg row0 = ptx_new(&b, PTX_B32), rowp[4];
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", row0.s, group.s, p.rows * p.warps);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", row0.s, L.warp.s, p.rows, row0.s);
  for (uint32_t r = 0; r < p.rows; r++) {
    /* rows past n read row n-1 and store nothing */
    ptx_reg row = ptx_new(&b, PTX_B32), off = ptx_new(&b, PTX_B64);
    rowp[r] = ptx_new(&b, PTX_B64);
    ptx_ins(&b, "add.u32 %s, %s, %u;", row.s, row0.s, r);
    ptx_ins(&b, "min.u32 %s, %s, %u;", row.s, row.s, p.n - 1);
    ptx_ins(&b, "mul.wide.u32 %s, %s, %u;", off.s, row.s, p.row_bytes);
    ptx_ins(&b, "add.u64 %s, %s, %s;", rowp[r].s, L.W.s, off.s);
  }
  ptx_reg acc[4][8];
  for (uint32_t r = 0; r < p.rows; r++)
    for (uint32_t m = 0; m < p.m; m++) {
      acc[r][m] = ptx_new(&b, PTX_F32);
      ptx_ins(&b, "mov.b32 %s, 0f00000000;", acc[r][m].s);
    }

  char tile_loop[32], tile_done[32], chunk_loop[32], chunk_done[32];
  ptx_label_new(&b, "tile", tile_loop);
  ptx_label_new(&b, "tile_done", tile_done);
  ptx_label_new(&b, "chunk", chunk_loop);
  ptx_label_new(&b, "chunk_done", chunk_done);
  if (p.tiles > 1) {
    ptx_comment(&b, "tiles of k: stage x, then every warp consumes it");
    ptx_ins(&b, "mov.u32 %s, 0;", tile.s);
    ptx_label(&b, tile_loop);
    ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, tile.s, p.tiles);
    ptx_ins(&b, "@%s bra %s;", pr.s, tile_done);
    ptx_reg rest = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", rest.s, tile.s, p.tile_chunks);
    ptx_ins(&b, "sub.u32 %s, %u, %s;", rest.s, p.chunks, rest.s);
    ptx_ins(&b, "min.u32 %s, %s, %u;", tile_len.s, rest.s, p.tile_chunks);
    ptx_ins(&b, "bar.sync 0;");
    emit_stage(&b, &p, &L, tile, tile_len);
    ptx_ins(&b, "bar.sync 0;");
  }
  /* This lane owns the chunks g = lane (mod 32); in this tile, the first is
   * u = (lane - first chunk of the tile) mod 32. */
  ptx_comment(&b, "chunks of this tile owned by this lane: g = lane (mod 32)");
  ptx_reg base = ptx_new(&b, PTX_B32), u = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", base.s, tile.s, p.tile_chunks);
  ptx_ins(&b, "sub.u32 %s, %s, %s;", u.s, L.lane.s, base.s);
  ptx_ins(&b, "and.b32 %s, %s, 31;", u.s, u.s);
  ptx_label(&b, chunk_loop);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %s;", pr.s, u.s, tile_len.s);
  ptx_ins(&b, "@%s bra %s;", pr.s, chunk_done);
  ptx_reg g = ptx_new(&b, PTX_B32), hdr_off = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "add.u32 %s, %s, %s;", g.s, base.s, u.s);
  ptx_ins(&b, "shr.u32 %s, %s, 2;", hdr_off.s, g.s);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", hdr_off.s, hdr_off.s, Q4K_BLOCK_BYTES);
  emit_chunk(&b, &p, &L, rowp, u, hdr_off, acc);
  ptx_ins(&b, "add.u32 %s, %s, 32;", u.s, u.s);
  ptx_ins(&b, "bra.uni %s;", chunk_loop); /* divergent only at the last chunk */
  ptx_label(&b, chunk_done);
  if (p.tiles > 1) {
    ptx_ins(&b, "add.u32 %s, %s, 1;", tile.s, tile.s);
    ptx_ins(&b, "bra.uni %s;", tile_loop);
    ptx_label(&b, tile_done);
  }

  ptx_comment(&b, "sum the 32 lanes (butterfly: every lane ends with the same total) and store");
  for (uint32_t r = 0; r < p.rows; r++)
    for (uint32_t m = 0; m < p.m; m++)
      for (int off = 16; off >= 1; off /= 2) {
        ptx_reg t = ptx_new(&b, PTX_F32);
        ptx_ins(&b, "shfl.sync.bfly.b32 %s, %s, %d, 0x1f, 0xffffffff;", t.s, acc[r][m].s, off);
        ptx_ins(&b, "add.rn.f32 %s, %s, %s;", acc[r][m].s, acc[r][m].s, t.s);
      }
  ptx_reg lane0 = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "setp.eq.u32 %s, %s, 0;", lane0.s, L.lane.s);
  for (uint32_t r = 0; r < p.rows; r++) {
    ptx_reg row = ptx_new(&b, PTX_B32), ok = ptx_new(&b, PTX_PRED), off = ptx_new(&b, PTX_B64);
    ptx_reg ya = ptx_new(&b, PTX_B64);
    ptx_ins(&b, "add.u32 %s, %s, %u;", row.s, row0.s, r);
    ptx_ins(&b, "setp.lt.and.u32 %s, %s, %u, %s;", ok.s, row.s, p.n, lane0.s);
    ptx_ins(&b, "mul.wide.u32 %s, %s, 4;", off.s, row.s);
    ptx_ins(&b, "add.u64 %s, %s, %s;", ya.s, L.y.s, off.s);
    for (uint32_t m = 0; m < p.m; m++)
      ptx_ins(&b, "@%s st.global.f32 [%s+%u], %s;", ok.s, ya.s, m * p.n * 4, acc[r][m].s);
  }
  ptx_ins(&b, "add.u32 %s, %s, %s;", group.s, group.s, ncta.s);
  ptx_ins(&b, "bra.uni %s;", group_loop);
  ptx_label(&b, group_done);
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  uint32_t grid = p.groups < GRID_CAP ? p.groups : GRID_CAP;
  out->geometry = (ptxgen_geometry){{grid, 1, 1}, {p.threads, 1, 1}, p.shared_bytes};
  return PTXGEN_OK;
}
