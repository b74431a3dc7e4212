/*
 * gemv_tc.c: the Q4_K GEMV on the tensor cores (q4k_gemv keys with tc=1),
 * y[m][n] = x[m][k] . W[n][k]^T with W in Q4_K as stored, x and y fp32.
 *
 * Why: the FMA kernel (gemv.c) spends m fma per weight, so at m = 8 it is
 * bound by issue, not memory (2.4x its m = 1 time on 14336x4096). Here a
 * warp multiplies 16 rows by 16 weights by 8 batch rows in one mma.sync,
 * and everything per weight (load, dequantize) is paid once for any m <= 8.
 *
 * Exactness
 *   A sub-block of 32 weights contributes a*sum(q x) - b*sum(x) (formats.md).
 *   The mma's A operand is f = 1 + q/16, exact in bf16: the nibble goes into
 *   bits 3..6 of the mantissa under the exponent of 1.0 (0x3F80), one shift
 *   and one lop3 per pair. Its B operand is x cut into three bf16 parts
 *   (hi, mid, lo) whose sum is x exactly: hi is x's top 8 significant bits
 *   (a mask), mid the next 8 of x - hi, lo the rest. Products of bf16 are
 *   exact and the mma sums them in fp32, small parts first. With
 *   C = sum(f x) = sum(x) + sum(q x)/16, the contribution is
 *   (16a)*C - (16a + b)*sum(x): two fma per output, a and b computed by the
 *   FMA kernel's own code (q4k_emit_scales), sum(x) when x is staged.
 *
 * Fragments (PTX ISA, mma.m16n8k16 with .bf16): lane = 4*g + t (g 0..7,
 * t 0..3) holds A rows g and g+8 at k-slots 2t, 2t+1, 2t+8, 2t+9, B column
 * g at those slots, and D rows g, g+8 at columns 2t, 2t+1. A step is 16
 * weights of one sub-block: lane t reads quant bytes 8t..8t+7 of each
 * 32-byte chunk (one 8-byte load per row), and in step s its word s (bytes
 * 8t+4s..8t+4s+3) fills slots 2t, 2t+1, 2t+8, 2t+9 with bytes 0, 2, 1, 3:
 * low nibbles are sub-block 2c of chunk c, high nibbles sub-block 2c+1.
 * x is staged in shared memory already cut and permuted into B fragments,
 * so a lane's B for both steps of a sub-block is one 16-byte load per part,
 * and the lanes of columns past m hold zeros (they load nothing).
 *
 * Work split
 *   A warp owns a tile of 16 rows and the super-blocks j = split (mod
 *   splits) of k; a block of 8 warps holds 8/splits tiles. splits is the
 *   largest of 1, 2, 4, 8 whose blocks still fit one wave of two blocks
 *   per SM of an H100 (264): the fewest warps per tile, so the longest
 *   loops, without a second, partial wave (n = 4096: 8, 256 blocks;
 *   n = 14336: 2, 224 blocks; n = 128256: 1). Never more than the
 *   super-blocks. The warps of a tile add their sums in shared memory,
 *   split 0 first.
 *   x (all m rows) is staged once per block where it fits the shared
 *   memory, else k is cut into tiles staged in turn.
 *
 * Batch invariance: an output's sums run in one order for every m (its
 * split's super-blocks in increasing j, chunks, sub-blocks and mma parts in
 * a fixed order, then the splits in order); splits depends on n and k
 * only, and each column of an mma depends only on its own B column. So row
 * i of a batch is bit-identical to the m = 1 product of that row.
 */
#include <stdio.h>
#include <string.h>

#include "gemv.h"
#include "kernels.h"

#define Q4K_BLOCK_BYTES 144u
#define TC_WARPS 8u
#define TC_THREADS (TC_WARPS * 32u)
#define TC_GRID_CAP 1024u     /* blocks at most; more row groups are walked with a grid stride */
#define TC_WAVE_BLOCKS 264u /* two blocks on each of an H100's 132 SMs */
#define PARTS 3u              /* bf16 parts of x: lo, mid, hi (summed in that order) */
#define STEPS_PER_SB 16u      /* 4 chunks x 2 sub-blocks x 2 steps of 16 weights */
#define STAGE_UNROLL 4u       /* float4s of x a thread loads at once while staging */
#define BF16_ONE_PAIR "0x3F803F80"
#define NIBBLE_PAIR "0x00780078" /* bits 3..6 of each half */
#define LOP_AND_OR "0xEA"        /* lop3 table of (a & b) | c */

typedef struct tc_plan {
  uint32_t k, n, m, sm;
  uint32_t nsb;        /* super-blocks per row */
  uint32_t row_tiles;  /* tiles of 16 rows */
  uint32_t splits;     /* warps sharing a tile */
  uint32_t tpb;        /* tiles per block */
  uint32_t groups;     /* blocks' worth of tiles */
  uint32_t nt;         /* 8-column tiles of the batch */
  uint32_t lanes;      /* lanes holding staged x in an 8-column tile: 4*min(m, 8) */
  uint32_t kt;         /* super-blocks staged at a time */
  uint32_t ktiles;
  uint32_t rec_bytes;  /* one sub-block's one part of one column tile: lanes * 16 (both steps) */
  uint32_t sb_bytes;   /* staged x of one super-block */
  uint32_t sum_cols;   /* 8*nt columns of sums per sub-block */
  uint32_t xs_bytes, xsum_bytes, red_bytes, shared_bytes;
} tc_plan;

static uint32_t shared_budget(uint32_t sm) {
  /* under the per-block opt-in maximum of each target (163 KiB on sm_80,
   * 99 KiB on sm_86/89/120, 227 KiB on sm_90/100) */
  switch (sm) {
  case 80: return 152u * 1024;
  case 90: case 100: return 216u * 1024;
  default: return 92u * 1024;
  }
}

/* Shared memory of an SM, per target (the driver keeps 1 KiB per block). */
static uint32_t sm_shared(uint32_t sm) {
  switch (sm) {
  case 80: return 164u * 1024;
  case 90: case 100: return 228u * 1024;
  default: return 100u * 1024;
  }
}

/* Staged x per super-block and batch size: B fragments of nt column tiles
 * of 4*min(m, 8) lanes, 16 steps, 3 parts, 8 bytes; and 8 sums per column. */
static uint32_t staged_per_sb(uint32_t m) {
  const uint32_t nt = (m + 7) / 8, lanes = 4 * (m < 8 ? m : 8);
  return STEPS_PER_SB * nt * PARTS * lanes * 8 + 8 * (8 * nt) * 4;
}

static uint32_t reduce_bytes(uint32_t m, uint32_t splits) { return splits > 1 ? TC_THREADS * 16 * ((m + 7) / 8) : 0; }

/* The most warps a tile may be split over on a target: a staged tile of k
 * must give each split a super-block even at the largest batch, and splits
 * must not depend on m (it sets the order of the sums). */
static uint32_t max_splits(uint32_t sm) {
  uint32_t s = TC_WARPS;
  while (s > 1 && s * staged_per_sb(PTXGEN_GEMV_MAX_M) + reduce_bytes(PTXGEN_GEMV_MAX_M, s) > shared_budget(sm))
    s /= 2;
  return s;
}

static tc_plan tc_plan_for(const ptxgen_spec *s) {
  tc_plan p = {.k = s->k, .n = s->n, .m = s->m, .sm = s->sm};
  p.nsb = s->k / 256;
  p.row_tiles = (s->n + 15) / 16;
  p.splits = 1;
  const uint32_t most = max_splits(s->sm);
  while (p.splits < most && p.splits * 2 <= p.nsb &&
         (p.row_tiles * p.splits * 2 + TC_WARPS - 1) / TC_WARPS <= TC_WAVE_BLOCKS)
    p.splits *= 2;
  p.tpb = TC_WARPS / p.splits;
  p.groups = (p.row_tiles + p.tpb - 1) / p.tpb;
  p.nt = (s->m + 7) / 8;
  p.lanes = 4 * (s->m < 8 ? s->m : 8);
  p.rec_bytes = p.lanes * 16;
  p.sb_bytes = 8 * p.nt * PARTS * p.rec_bytes;
  p.sum_cols = 8 * p.nt;
  p.red_bytes = reduce_bytes(s->m, p.splits);
  const uint32_t fit = (shared_budget(s->sm) - p.red_bytes) / staged_per_sb(s->m); /* >= splits (max_splits) */
  /* a tile gives every split the same number of super-blocks */
  p.kt = fit >= p.nsb ? p.nsb : fit / p.splits * p.splits;
  p.ktiles = (p.nsb + p.kt - 1) / p.kt;
  p.xs_bytes = p.kt * p.sb_bytes;
  p.xsum_bytes = p.kt * 8 * p.sum_cols * 4;
  p.shared_bytes = p.xs_bytes + p.xsum_bytes + p.red_bytes;
  return p;
}

/* Registers live for the whole kernel. */
typedef struct tc_lane {
  gemv_lane q;           /* tid, lane, warp, c = t (lane % 4), the Q4_K scale constants */
  ptx_reg g, t;          /* lane = 4g + t */
  ptx_reg split, tile;   /* the warp's split and tile within the block */
  ptx_reg xs, xsum, red; /* shared addresses: staged x (+ lane*8), its sums (+ 8t), the reduction */
  ptx_reg W, x, y;
  ptx_reg bvalid[2];     /* this lane holds a column < m in column tile 0, 1 */
  ptx_reg B[2][2][4];    /* B fragments of one part of a chunk: [half][column tile] {step 0: b01, b23, step 1:
                            b01, b23}; zero in lanes of columns past m, which never load them */
  ptx_reg owner[4];      /* lane 4g + c: who decodes chunk c's scales */
  ptx_reg zero;          /* 0.0f */
} tc_lane;

/* One super-block's raw loads for the lane's two rows (g, g+8): the
 * header words h0..h3, then the lane's two quant words of chunks 0..3. */
typedef struct tc_raw {
  ptx_reg h[2][4];
  ptx_reg q[2][4][2];
} tc_raw;

static void new_raw(ptx_builder *b, tc_raw *r) {
  for (int row = 0; row < 2; row++) {
    for (int i = 0; i < 4; i++) r->h[row][i] = ptx_new(b, PTX_B32);
    for (int c = 0; c < 4; c++)
      for (int s = 0; s < 2; s++) r->q[row][c][s] = ptx_new(b, PTX_B32);
  }
}

/* Addresses of super-block j (a register) of rows rowp[0], rowp[1]
 * (pointing at the rows' super-block 0): its header, and the lane's quant
 * bytes 8t.. of chunk 0 (chunk c is 32c further). */
typedef struct tc_addr {
  ptx_reg h[2], q[2];
} tc_addr;

static tc_addr emit_addresses(ptx_builder *b, const tc_lane *L, const ptx_reg rowp[2], ptx_reg j) {
  tc_addr a;
  ptx_reg off = ptx_new(b, PTX_B64), qoff = ptx_new(b, PTX_B64), t8 = ptx_new(b, PTX_B32);
  ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, j.s, Q4K_BLOCK_BYTES);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, 16;", t8.s, L->t.s);
  ptx_reg t64 = gemv_u64_of(b, t8);
  ptx_op3(b, "add.u64", qoff, off, t64);
  for (int r = 0; r < 2; r++) {
    a.h[r] = ptx_new(b, PTX_B64);
    a.q[r] = ptx_new(b, PTX_B64);
    ptx_op3(b, "add.u64", a.h[r], rowp[r], off);
    ptx_op3(b, "add.u64", a.q[r], rowp[r], qoff);
  }
  return a;
}

/* guard: a predicate's name or NULL */
static void emit_load_header(ptx_builder *b, const tc_addr *a, const char *guard, const tc_raw *raw) {
  for (int r = 0; r < 2; r++)
    ptx_ins(b, "%s%s%sld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s];", guard ? "@" : "", guard ? guard : "",
            guard ? " " : "", raw->h[r][0].s, raw->h[r][1].s, raw->h[r][2].s, raw->h[r][3].s, a->h[r].s);
}

static void emit_load_chunk(ptx_builder *b, const tc_addr *a, uint32_t c, const char *guard, const tc_raw *raw) {
  for (int r = 0; r < 2; r++)
    ptx_ins(b, "%s%s%sld.global.nc.v2.u32 {%s, %s}, [%s+%u];", guard ? "@" : "", guard ? guard : "", guard ? " " : "",
            raw->q[r][c][0].s, raw->q[r][c][1].s, a->q[r].s, 32 * c);
}

/* The whole super-block j into raw. */
static void emit_load(ptx_builder *b, const tc_lane *L, const ptx_reg rowp[2], ptx_reg j, const char *guard,
                      const tc_raw *raw) {
  const tc_addr a = emit_addresses(b, L, rowp, j);
  emit_load_header(b, &a, guard, raw);
  for (uint32_t c = 0; c < 4; c++) emit_load_chunk(b, &a, c, guard, raw);
}

/* Row pointers of the warp's rows g and g+8 in row group `group`; rows
 * past n point at row n-1, so that loads through them stay in bounds. */
static void emit_row_pointers(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg group, ptx_reg rowp[2],
                              const ptx_reg *row0) {
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", row0->s, group.s, p->tpb, L->tile.s);
  ptx_ins(b, "shl.b32 %s, %s, 4;", row0->s, row0->s);
  ptx_ins(b, "add.u32 %s, %s, %s;", row0->s, row0->s, L->g.s); /* row g of the tile */
  for (int r = 0; r < 2; r++) {
    ptx_reg row = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64);
    ptx_ins(b, "add.u32 %s, %s, %u;", row.s, row0->s, 8 * r);
    ptx_ins(b, "min.u32 %s, %s, %u;", row.s, row.s, p->n - 1);
    ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, row.s, p->k / 256 * Q4K_BLOCK_BYTES);
    ptx_op3(b, "add.u64", rowp[r], L->W, off);
  }
}

/* Stages super-blocks [t0, t0 + len) of x (t0, len registers) into shared
 * memory as B fragments, and the sums of x per sub-block.
 *
 * Float4 e (0..63) of column r's super-block jl is weights 4e.. of it:
 * chunk e/16, sub-block half (e/8)%2, lane t = (e/2)%4 and step (e%2), so
 * it goes to the record of sub-block e/8 (of the tile) and column tile
 * r/8, lane 4*(r%8) + t, bytes 8*(e%2) of the lane's 16, as the B pairs
 * (x0, x2), (x1, x3) of each part. Thread i takes float4s i, i + 256, ...
 * of the tile, column by column; the 8 float4s of a sub-block are 8
 * consecutive lanes, whose sums a butterfly adds in one fixed order. */
static void emit_stage(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg t0, ptx_reg len) {
  const uint32_t per_col = p->kt * 64, total = p->m * per_col;
  const uint32_t rounds = (total + TC_THREADS - 1) / TC_THREADS;
  ptx_comment(b, "stage x as B fragments: bf16 parts lo, mid, hi of each float, and the sums of each sub-block");
  ptx_reg have_len = ptx_new(b, PTX_B32); /* float4s per column in this tile */
  ptx_ins(b, "shl.b32 %s, %s, 6;", have_len.s, len.s);
  ptx_reg mask = ptx_imm_b32(b, 0xFFFF0000u);
  char loop[32], done[32];
  ptx_label_new(b, "stage", loop);
  ptx_label_new(b, "stage_done", done);
  ptx_reg round = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mov.u32 %s, 0;", round.s);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %u;", pr.s, round.s, rounds);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, done);
  ptx_reg v[STAGE_UNROLL][4], in[STAGE_UNROLL], col[STAGE_UNROLL], e[STAGE_UNROLL];
  for (uint32_t u = 0; u < STAGE_UNROLL; u++) {
    ptx_reg q = ptx_new(b, PTX_B32);
    in[u] = ptx_new(b, PTX_PRED);
    col[u] = ptx_new(b, PTX_B32);
    e[u] = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", q.s, round.s, u);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", q.s, q.s, TC_THREADS, L->q.tid.s);
    ptx_ins(b, "div.u32 %s, %s, %u;", col[u].s, q.s, per_col);
    ptx_ins(b, "rem.u32 %s, %s, %u;", e[u].s, q.s, per_col);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", in[u].s, q.s, total);
    ptx_ins(b, "setp.lt.and.u32 %s, %s, %s, %s;", in[u].s, e[u].s, have_len.s, in[u].s);
    ptx_reg fi = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), src = ptx_new(b, PTX_B64);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", fi.s, col[u].s, p->k / 4, e[u].s); /* float4 index in x */
    ptx_ins(b, "mad.lo.u32 %s, %s, 64, %s;", fi.s, t0.s, fi.s);
    ptx_ins(b, "mul.wide.u32 %s, %s, 16;", off.s, fi.s);
    ptx_op3(b, "add.u64", src, L->x, off);
    for (int i = 0; i < 4; i++) {
      v[u][i] = ptx_new(b, PTX_F32);
      ptx_op1i(b, "mov.b32", v[u][i], "0f00000000");
    }
    ptx_ins(b, "@%s ld.global.v4.f32 {%s, %s, %s, %s}, [%s];", in[u].s, v[u][0].s, v[u][1].s, v[u][2].s, v[u][3].s,
            src.s);
  }
  for (uint32_t u = 0; u < STAGE_UNROLL; u++) {
    /* parts: lo, mid, hi (the mma order); hi = x's top 16 bits, mid the top
     * 16 of x - hi, lo the rest: each subtraction is exact */
    ptx_reg part[PARTS][4], rest[4];
    for (int i = 0; i < 4; i++) {
      ptx_reg top = ptx_new(b, PTX_F32), r1 = ptx_new(b, PTX_F32), top1 = ptx_new(b, PTX_F32);
      rest[i] = ptx_new(b, PTX_F32);
      ptx_op3(b, "and.b32", top, v[u][i], mask);
      ptx_op3(b, "sub.rn.f32", r1, v[u][i], top);
      ptx_op3(b, "and.b32", top1, r1, mask);
      ptx_op3(b, "sub.rn.f32", rest[i], r1, top1);
      part[2][i] = v[u][i];
      part[1][i] = r1;
      part[0][i] = rest[i];
    }
    /* record address: ((sub*nt + col/8)*3 + part)*rec_bytes + (4*(col%8) + t)*16 + step*8 */
    ptx_reg sub = ptx_new(b, PTX_B32), t = ptx_new(b, PTX_B32), a = ptx_new(b, PTX_B32), ln = ptx_new(b, PTX_B32);
    ptx_reg ctile = ptx_new(b, PTX_B32);
    ptx_ins(b, "shr.u32 %s, %s, 3;", sub.s, e[u].s);
    ptx_ins(b, "shr.u32 %s, %s, 3;", ctile.s, col[u].s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", a.s, sub.s, p->nt, ctile.s);
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", a.s, a.s, PARTS * p->rec_bytes);
    ptx_ins(b, "and.b32 %s, %s, 7;", ln.s, col[u].s);
    ptx_ins(b, "shl.b32 %s, %s, 2;", ln.s, ln.s);
    ptx_ins(b, "shr.u32 %s, %s, 1;", t.s, e[u].s);
    ptx_ins(b, "and.b32 %s, %s, 3;", t.s, t.s);
    ptx_ins(b, "add.u32 %s, %s, %s;", ln.s, ln.s, t.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", a.s, ln.s, a.s);
    ptx_ins(b, "and.b32 %s, %s, 1;", t.s, e[u].s); /* the step */
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", a.s, t.s, a.s);
    ptx_ins(b, "add.u32 %s, %s, %s;", a.s, a.s, L->q.xs_base.s);
    for (uint32_t pt = 0; pt < PARTS; pt++) {
      ptx_reg b01 = ptx_new(b, PTX_B32), b23 = ptx_new(b, PTX_B32);
      ptx_op3i(b, "prmt.b32", b01, part[pt][0], part[pt][2], "0x7632"); /* the top halves: bf16 (x0, x2) */
      ptx_op3i(b, "prmt.b32", b23, part[pt][1], part[pt][3], "0x7632");
      ptx_ins(b, "@%s st.shared.v2.b32 [%s+%u], {%s, %s};", in[u].s, a.s, pt * p->rec_bytes, b01.s, b23.s);
    }
    /* the sub-block's sum: 4 values in order, then over the 8 lanes */
    ptx_reg sum = ptx_new(b, PTX_F32), other = ptx_new(b, PTX_F32), lead = ptx_new(b, PTX_PRED);
    ptx_op3(b, "add.rn.f32", sum, v[u][0], v[u][1]);
    ptx_op3(b, "add.rn.f32", sum, sum, v[u][2]);
    ptx_op3(b, "add.rn.f32", sum, sum, v[u][3]);
    for (uint32_t d = 1; d < 8; d *= 2) {
      ptx_shfl(b, "shfl.sync.bfly.b32", other, sum, d);
      ptx_op3(b, "add.rn.f32", sum, sum, other);
    }
    ptx_reg sa = ptx_new(b, PTX_B32), low = ptx_new(b, PTX_B32);
    ptx_ins(b, "and.b32 %s, %s, 7;", low.s, e[u].s);
    ptx_ins(b, "setp.eq.and.u32 %s, %s, 0, %s;", lead.s, low.s, in[u].s);
    ptx_ins(b, "shr.u32 %s, %s, 3;", sa.s, e[u].s); /* sub-block within the tile */
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", sa.s, sa.s, p->sum_cols, col[u].s);
    ptx_ins(b, "shl.b32 %s, %s, 2;", sa.s, sa.s);
    ptx_ins(b, "add.u32 %s, %s, %s;", sa.s, sa.s, L->q.xsum_base.s);
    ptx_ins(b, "@%s st.shared.f32 [%s], %s;", lead.s, sa.s, sum.s);
  }
  ptx_ins(b, "add.u32 %s, %s, %u;", round.s, round.s, STAGE_UNROLL);
  ptx_ins(b, "bra.uni %s;", loop);
  ptx_label(b, done);
}

/* The A fragment register of one row's word for one step: nibbles of bytes
 * (0, 2) or (1, 3), low or high, in bits 3..6 of two bf16 1.0: 1 + q/16. */
static ptx_reg emit_a_pair(ptx_builder *b, ptx_reg word, int high, int odd_bytes) {
  static const char *const shifts[2][2] = {{"shl.b32", "shr.u32"}, {"shr.u32", "shr.u32"}};
  static const char *const amounts[2][2] = {{"3", "5"}, {"1", "9"}};
  ptx_reg s = ptx_new(b, PTX_B32), a = ptx_new(b, PTX_B32);
  ptx_op2i(b, shifts[high][odd_bytes], s, word, amounts[high][odd_bytes]);
  ptx_ins(b, "lop3.b32 %s, %s, " NIBBLE_PAIR ", " BF16_ONE_PAIR ", " LOP_AND_OR ";", a.s, s.s);
  return a;
}

/* One super-block (jl: its index within the staged tile) of the warp's
 * tile into acc[column tile][4]. */
static void emit_superblock(ptx_builder *b, const tc_plan *p, const tc_lane *L, const tc_raw *raw, ptx_reg jl,
                            const tc_addr *next, const char *more, ptx_reg acc[2][4]) {
  ptx_comment(b, "scales of chunk t (sub-blocks 2t, 2t+1) of rows g and g+8; lanes share them below");
  ptx_reg A[2][4], E[2][4];
  for (int r = 0; r < 2; r++) {
    q4k_emit_scales(b, &L->q, raw->h[r], A[r], E[r]);
    for (int s = 0; s < 2; s++) ptx_op2i(b, "mul.rn.f32", A[r][s], A[r][s], "0f3F000000"); /* 16a: exact */
  }
  ptx_comment(b, "each part of raw is loaded again, for the next super-block, once it is used");
  emit_load_header(b, next, more, raw);
  ptx_reg xs_sb = ptx_new(b, PTX_B32), xsum_sb = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xs_sb.s, jl.s, p->sb_bytes, L->xs.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xsum_sb.s, jl.s, 8 * p->sum_cols * 4, L->xsum.s);
  for (uint32_t c = 0; c < 4; c++) {
    ptx_comment(b, "chunk %u: the scale and min of sub-blocks %u, %u from lane 4g+%u", c, 2 * c, 2 * c + 1, c);
    ptx_reg sA[2][2], sE[2][2]; /* [half][row] */
    for (int h = 0; h < 2; h++)
      for (int r = 0; r < 2; r++) {
        sA[h][r] = ptx_new(b, PTX_F32);
        sE[h][r] = ptx_new(b, PTX_F32);
        ptx_ins(b, "shfl.sync.idx.b32 %s, %s, %s, 31, 0xffffffff;", sA[h][r].s, A[r][h].s, L->owner[c].s);
        ptx_ins(b, "shfl.sync.idx.b32 %s, %s, %s, 31, 0xffffffff;", sE[h][r].s, E[r][h].s, L->owner[c].s);
      }
    /* Both sub-blocks of the chunk at once, each step's mma a chain of its
     * own: four independent chains of three (lo, mid, hi), so that one
     * mma's latency hides behind the others'. */
    ptx_comment(b, "sub-blocks %u, %u: C = sum((1 + q/16) x), per step lo + mid + hi parts by mma, steps added", 2 * c,
                2 * c + 1);
    ptx_reg a[2][2][4]; /* [half][step] {a01, a23, a45, a67} */
    for (uint32_t h = 0; h < 2; h++)
      for (uint32_t s = 0; s < 2; s++) {
        a[h][s][0] = emit_a_pair(b, raw->q[0][c][s], (int)h, 0);
        a[h][s][1] = emit_a_pair(b, raw->q[1][c][s], (int)h, 0);
        a[h][s][2] = emit_a_pair(b, raw->q[0][c][s], (int)h, 1);
        a[h][s][3] = emit_a_pair(b, raw->q[1][c][s], (int)h, 1);
      }
    emit_load_chunk(b, next, c, more, raw);
    ptx_reg C[2][2][2][4]; /* [half][step][column tile] */
    for (uint32_t pt = 0; pt < PARTS; pt++) {
      for (uint32_t h = 0; h < 2; h++)
        for (uint32_t t = 0; t < p->nt; t++)
          ptx_ins(b, "@%s ld.shared.v4.b32 {%s, %s, %s, %s}, [%s+%u];", L->bvalid[t].s, L->B[h][t][0].s,
                  L->B[h][t][1].s, L->B[h][t][2].s, L->B[h][t][3].s, xs_sb.s,
                  (((2 * c + h) * p->nt + t) * PARTS + pt) * p->rec_bytes);
      for (uint32_t h = 0; h < 2; h++)
        for (uint32_t s = 0; s < 2; s++)
          for (uint32_t t = 0; t < p->nt; t++) {
            ptx_reg D[4];
            for (int i = 0; i < 4; i++) D[i] = ptx_new(b, PTX_F32);
            const ptx_reg *Cin = pt == 0 ? (const ptx_reg[4]){L->zero, L->zero, L->zero, L->zero} : C[h][s][t];
            ptx_ins(b,
                    "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%s, %s, %s, %s}, {%s, %s, %s, %s}, "
                    "{%s, %s}, {%s, %s, %s, %s};",
                    D[0].s, D[1].s, D[2].s, D[3].s, a[h][s][0].s, a[h][s][1].s, a[h][s][2].s, a[h][s][3].s,
                    L->B[h][t][2 * s].s, L->B[h][t][2 * s + 1].s, Cin[0].s, Cin[1].s, Cin[2].s, Cin[3].s);
            for (int i = 0; i < 4; i++) C[h][s][t][i] = D[i];
          }
    }
    for (uint32_t h = 0; h < 2; h++) {
      const uint32_t sub = 2 * c + h;
      for (uint32_t t = 0; t < p->nt; t++) {
        ptx_reg xsum[2];
        xsum[0] = ptx_new(b, PTX_F32);
        xsum[1] = ptx_new(b, PTX_F32);
        ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", xsum[0].s, xsum[1].s, xsum_sb.s,
                (sub * p->sum_cols + 8 * t) * 4);
        for (int i = 0; i < 4; i++) {
          const int r = i / 2;
          ptx_reg sum = ptx_new(b, PTX_F32);
          ptx_op3(b, "add.rn.f32", sum, C[h][0][t][i], C[h][1][t][i]);
          ptx_op4(b, "fma.rn.f32", acc[t][i], sA[h][r], sum, acc[t][i]);
          ptx_op4(b, "fma.rn.f32", acc[t][i], sE[h][r], xsum[i % 2], acc[t][i]);
        }
      }
    }
  }
}

static void emit_lane_consts(ptx_builder *b, const tc_plan *p, tc_lane *L) {
  L->W = ptx_param_u64(b, "W");
  L->x = ptx_param_u64(b, "x");
  L->y = ptx_param_u64(b, "y");
  gemv_lane *q = &L->q;
  memset(q, 0, sizeof *q);
  gemv_thread_ids(b, q);
  L->t = q->c;
  L->g = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, 2;", L->g.s, q->lane.s);
  L->split = ptx_new(b, PTX_B32);
  L->tile = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, %u;", L->split.s, q->warp.s, p->splits - 1);
  ptx_ins(b, "shr.u32 %s, %s, %u;", L->tile.s, q->warp.s, p->splits == 1 ? 0 : p->splits == 2 ? 1 : p->splits == 4 ? 2 : 3);
  q4k_scale_consts(b, q);
  q->xs_base = ptx_new(b, PTX_B32);
  q->xsum_base = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, xs;", q->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", q->xsum_base.s, q->xs_base.s, p->xs_bytes);
  L->xs = ptx_new(b, PTX_B32);
  L->xsum = ptx_new(b, PTX_B32);
  L->red = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", L->xs.s, q->lane.s, q->xs_base.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", L->xsum.s, L->t.s, q->xsum_base.s); /* columns 2t, 2t+1 */
  ptx_ins(b, "add.u32 %s, %s, %u;", L->red.s, q->xsum_base.s, p->xsum_bytes);
  for (uint32_t t = 0; t < p->nt; t++) {
    const uint32_t cols = p->m - 8 * t < 8 ? p->m - 8 * t : 8;
    L->bvalid[t] = ptx_new(b, PTX_PRED);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", L->bvalid[t].s, q->lane.s, 4 * cols);
    for (uint32_t h = 0; h < 2; h++)
      for (int i = 0; i < 4; i++) {
        L->B[h][t][i] = ptx_new(b, PTX_B32);
        ptx_op1i(b, "mov.b32", L->B[h][t][i], "0");
      }
  }
  for (uint32_t c = 0; c < 4; c++) {
    L->owner[c] = ptx_new(b, PTX_B32);
    ptx_ins(b, "and.b32 %s, %s, 28;", L->owner[c].s, q->lane.s);
    if (c) ptx_ins(b, "add.u32 %s, %s, %u;", L->owner[c].s, L->owner[c].s, c);
  }
  L->zero = ptx_new(b, PTX_F32);
  ptx_op1i(b, "mov.b32", L->zero, "0f00000000");
}

/* The split's super-blocks of the staged tile [t0, t0 + len): j = t0 +
 * split, then every splits-th. raw holds the first one's loads already;
 * while a super-block is computed, each part of raw is loaded again with
 * the next one's once it is used, so that one super-block is always in
 * flight. */
static void emit_superblock_loop(ptx_builder *b, const tc_plan *p, const tc_lane *L, const ptx_reg rowp[2],
                                 ptx_reg t0, ptx_reg len, const tc_raw *raw, ptx_reg acc[2][4]) {
  char loop[32], done[32];
  ptx_label_new(b, "superblock", loop);
  ptx_label_new(b, "superblock_done", done);
  ptx_reg jl = ptx_new(b, PTX_B32), jn = ptx_new(b, PTX_B32), j = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_reg more = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mov.u32 %s, %s;", jl.s, L->split.s);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %s;", pr.s, jl.s, len.s);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, done);
  ptx_ins(b, "add.u32 %s, %s, %u;", jn.s, jl.s, p->splits);
  ptx_ins(b, "setp.lt.u32 %s, %s, %s;", more.s, jn.s, len.s);
  ptx_ins(b, "add.u32 %s, %s, %s;", j.s, t0.s, jn.s);
  const tc_addr next = emit_addresses(b, L, rowp, j);
  emit_superblock(b, p, L, raw, jl, &next, more.s, acc);
  ptx_ins(b, "mov.u32 %s, %s;", jl.s, jn.s);
  ptx_ins(b, "bra.uni %s;", loop);
  ptx_label(b, done);
}

/* The splits' sums added (split 0 first, then 1, ...) and stored by split
 * 0: D element i of column tile t is row g + 8*(i/2), column 8t + 2t' + i%2. */
static void emit_reduce_store(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg row0, ptx_reg acc[2][4]) {
  ptx_reg writer = ptx_new(b, PTX_PRED);
  if (p->splits > 1) {
    ptx_comment(b, "add the %u splits' sums of each tile in order", p->splits);
    ptx_reg slot = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", slot.s, L->q.tid.s, 16 * p->nt, L->red.s);
    for (uint32_t t = 0; t < p->nt; t++)
      ptx_ins(b, "st.shared.v4.f32 [%s+%u], {%s, %s, %s, %s};", slot.s, 16 * t, acc[t][0].s, acc[t][1].s, acc[t][2].s,
              acc[t][3].s);
    ptx_ins(b, "bar.sync 0;");
    ptx_ins(b, "setp.eq.u32 %s, %s, 0;", writer.s, L->split.s);
    char skip[32];
    ptx_label_new(b, "not_writer", skip);
    ptx_ins(b, "@!%s bra %s;", writer.s, skip);
    for (uint32_t s = 1; s < p->splits; s++)
      for (uint32_t t = 0; t < p->nt; t++) {
        ptx_reg o[4];
        for (int i = 0; i < 4; i++) o[i] = ptx_new(b, PTX_F32);
        ptx_ld_v4(b, "ld.shared.v4.f32", o, slot, s * 32 * 16 * p->nt + 16 * t);
        for (int i = 0; i < 4; i++) ptx_op3(b, "add.rn.f32", acc[t][i], acc[t][i], o[i]);
      }
    ptx_label(b, skip);
  } else {
    ptx_ins(b, "setp.eq.u32 %s, %s, %s;", writer.s, L->split.s, L->split.s);
  }
  ptx_comment(b, "store: rows g, g+8 of the tile, columns 2t, 2t+1 of each column tile");
  for (int r = 0; r < 2; r++) {
    ptx_reg row = ptx_new(b, PTX_B32), ok = ptx_new(b, PTX_PRED), ya = ptx_new(b, PTX_B64), off = ptx_new(b, PTX_B64);
    ptx_ins(b, "add.u32 %s, %s, %u;", row.s, row0.s, 8 * r);
    ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, %s;", ok.s, row.s, p->n, writer.s);
    ptx_reg colrow = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", colrow.s, L->t.s, 2 * p->n, row.s); /* column 2t, this row */
    ptx_ins(b, "mul.wide.u32 %s, %s, 4;", off.s, colrow.s);
    ptx_op3(b, "add.u64", ya, L->y, off);
    for (uint32_t t = 0; t < p->nt; t++)
      for (uint32_t i = 0; i < 2; i++) {
        const uint32_t col0 = 8 * t + i; /* plus 2t */
        ptx_reg in = ptx_new(b, PTX_PRED), col = ptx_new(b, PTX_B32);
        ptx_ins(b, "mad.lo.u32 %s, %s, 2, %u;", col.s, L->t.s, col0);
        ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, %s;", in.s, col.s, p->m, ok.s);
        ptx_ins(b, "@%s st.global.f32 [%s+%u], %s;", in.s, ya.s, col0 * p->n * 4, acc[t][2 * r + i].s);
      }
  }
  if (p->splits > 1) ptx_ins(b, "bar.sync 0;"); /* the slots are free again */
}

int q4k_gemv_tc_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  const tc_plan p = tc_plan_for(spec);
  int len = snprintf(out->entry, sizeof out->entry, "q4k_gemv_tc_k%u_n%u_m%u", p.k, p.n, p.m);
  if (len < 0 || (size_t)len >= sizeof out->entry) return PTXGEN_ERR_SPEC;
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(p.sm), p.sm);
  static const char *const params[] = {"W", "x", "y"};
  /* Two blocks per SM where their staged x fits: 16 warps keep more loads
   * in flight than 8. ptxas then holds 128 registers, which one column
   * tile takes without spilling (two spill: m > 8 gets one block). */
  const bool two = p.nt == 1 && 2 * (p.shared_bytes + 1024) <= sm_shared(p.sm);
  ptx_entry_blocks(&b, out->entry, params, 3, 1, TC_THREADS, two ? 2 : 1);
  ptx_comment(&b, "y[%u][%u] = x[%u][%u] . W[%u][%u]^T on the tensor cores: 16-row tiles, %u per block, each "
                  "tile's super-blocks split over %u warps; %u row groups; x staged %u super-blocks at a time "
                  "(%u tile(s)) as bf16 B fragments",
              p.m, p.n, p.m, p.k, p.n, p.k, p.tpb, p.splits, p.groups, p.kt, p.ktiles);
  tc_lane L;
  emit_lane_consts(&b, &p, &L);
  ptx_reg group = ptx_new(&b, PTX_B32), ncta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", group.s);
  ptx_ins(&b, "mov.u32 %s, %%nctaid.x;", ncta.s);
  ptx_reg rowp[2] = {ptx_new(&b, PTX_B64), ptx_new(&b, PTX_B64)}, row0 = ptx_new(&b, PTX_B32);
  tc_raw raw;
  new_raw(&b, &raw);
  ptx_reg t0 = ptx_new(&b, PTX_B32), tlen = ptx_new(&b, PTX_B32);
  ptx_reg have = ptx_new(&b, PTX_PRED);
  if (p.ktiles == 1) {
    /* weights do not depend on earlier kernels: the first loads go out
     * before the wait for them and the staging of x */
    ptx_comment(&b, "preload: the split's first super-block of the block's first row group");
    emit_row_pointers(&b, &p, &L, group, rowp, &row0);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", have.s, group.s, p.groups);
    emit_load(&b, &L, rowp, L.split, have.s, &raw);
  }
  ptx_grid_dependency_sync(&b);
  if (p.ktiles == 1) {
    ptx_ins(&b, "mov.u32 %s, 0;", t0.s);
    ptx_ins(&b, "mov.u32 %s, %u;", tlen.s, p.nsb);
    emit_stage(&b, &p, &L, t0, tlen);
    ptx_ins(&b, "bar.sync 0;");
  }
  ptx_comment(&b, "row groups, grid-stride");
  char group_loop[32], group_done[32];
  ptx_label_new(&b, "group", group_loop);
  ptx_label_new(&b, "group_done", group_done);
  ptx_label(&b, group_loop);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, group.s, p.groups);
  ptx_ins(&b, "@%s bra.uni %s;", pr.s, group_done);
  ptx_reg acc[2][4];
  for (uint32_t t = 0; t < p.nt; t++)
    for (int i = 0; i < 4; i++) {
      acc[t][i] = ptx_new(&b, PTX_F32);
      ptx_op1i(&b, "mov.b32", acc[t][i], "0f00000000");
    }
  if (p.ktiles == 1) {
    emit_superblock_loop(&b, &p, &L, rowp, t0, tlen, &raw, acc);
  } else {
    emit_row_pointers(&b, &p, &L, group, rowp, &row0);
    ptx_comment(&b, "tiles of k: stage x, then every warp consumes it");
    char tile_loop[32], tile_done[32];
    ptx_label_new(&b, "ktile", tile_loop);
    ptx_label_new(&b, "ktile_done", tile_done);
    ptx_ins(&b, "mov.u32 %s, 0;", t0.s);
    ptx_label(&b, tile_loop);
    ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, t0.s, p.nsb);
    ptx_ins(&b, "@%s bra.uni %s;", pr.s, tile_done);
    ptx_ins(&b, "sub.u32 %s, %u, %s;", tlen.s, p.nsb, t0.s);
    ptx_ins(&b, "min.u32 %s, %s, %u;", tlen.s, tlen.s, p.kt);
    ptx_ins(&b, "bar.sync 0;");
    emit_stage(&b, &p, &L, t0, tlen);
    ptx_ins(&b, "bar.sync 0;");
    ptx_reg j = ptx_new(&b, PTX_B32), first = ptx_new(&b, PTX_PRED);
    ptx_ins(&b, "add.u32 %s, %s, %s;", j.s, t0.s, L.split.s);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %s;", first.s, L.split.s, tlen.s);
    emit_load(&b, &L, rowp, j, first.s, &raw);
    emit_superblock_loop(&b, &p, &L, rowp, t0, tlen, &raw, acc);
    ptx_ins(&b, "add.u32 %s, %s, %u;", t0.s, t0.s, p.kt);
    ptx_ins(&b, "bra.uni %s;", tile_loop);
    ptx_label(&b, tile_done);
  }
  emit_reduce_store(&b, &p, &L, row0, acc);
  ptx_ins(&b, "add.u32 %s, %s, %s;", group.s, group.s, ncta.s);
  if (p.ktiles == 1) {
    ptx_comment(&b, "the first super-block of the block's next row group");
    emit_row_pointers(&b, &p, &L, group, rowp, &row0);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", have.s, group.s, p.groups);
    emit_load(&b, &L, rowp, L.split, have.s, &raw);
  }
  ptx_ins(&b, "bra.uni %s;", group_loop);
  ptx_label(&b, group_done);
  ptx_ins(&b, "ret;");
  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  const uint32_t grid = p.groups < TC_GRID_CAP ? p.groups : TC_GRID_CAP;
  out->geometry = (ptxgen_geometry){{grid, 1, 1}, {TC_THREADS, 1, 1}, p.shared_bytes};
  return PTXGEN_OK;
}
