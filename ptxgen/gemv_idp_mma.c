/*
 * gemv_idp_mma.c: the Q4_K GEMV with integer dot products (idp=1) on the
 * integer tensor cores, for batches (spec mma: ptxgen.h). Same bits as the
 * dp4a kernel (gemv_q4k.c, q4k_idp_compute) and tests/idp_model.h.
 *
 * Why: the dp4a kernel spends 6 dp4a per word of 8 quants and batch row,
 * so at m = 8 it is bound by issue (H100, twenty-fifth session: m = 8
 * products 19-32% slower than the fp32 kernel). Here one mma.sync
 * m16n8k32 multiplies a sub-block's 32 quants of 16 rows by one byte plane
 * of 8 batch rows' x: 6 instructions a chunk of 64 weights and 16 rows for
 * any m <= 8.
 *
 * The sums, as the dp4a kernel forms them
 *   x is staged by gemv_stage_int (gemv.c): per chunk of 64 values and
 *   batch row, X = round(x 2^e) in three byte planes, the sub-blocks' sums
 *   U0, U1 of X and 2^-e/16 (a NaN for a non-finite chunk). A sub-block's
 *   T_p = sum q' P_p is exact in s32 whatever the order of its 32 products
 *   (q' = q for low nibbles, 16 q for high ones, masked in place), so an mma
 *   gives the dp4a chain's T_p. The chunk's contribution is then formed
 *   with the dp4a kernel's instructions: IA = sum_p 2^(16-8p) (16 sc0 T_lo,p
 *   + sc1 T_hi,p), B = 16 (m0 U0 + m1 U1), c = (d IA - dmin B) 2^-e/16 in
 *   fp64 (exact products, one rounding).
 *
 * The order of the fp64 sums
 *   The dp4a kernel's lane l adds chunks g = l (mod 32) in increasing g,
 *   then a butterfly adds lanes 16, 8, 4, 2, 1 apart. Here S warps share a
 *   tile of 16 rows (S = 16 on sm_90/100, 8 elsewhere): warp w takes chunks
 *   g = w (mod S), its lanes keep 32/S fp64 sums per output, one for each
 *   class g mod 32 = w + Sa, each in increasing g. The butterfly's first
 *   levels pair exactly those classes (S = 16: w with w + 16; S = 8: w with
 *   w + 16, w + 8 with w + 24, then the two), so the warp adds them itself;
 *   the rest pair warps (S/2 .. 1 apart), which one thread per output adds
 *   from shared memory. Every addition of the dp4a kernel happens here with
 *   the same operands: the same bits.
 *
 * Fragments (PTX ISA, mma.m16n8k32 on 8-bit integers): lane = 4g + t holds
 *   A rows g and g+8 at k-slots 4t..4t+3 (registers 0, 1) and 16+4t..16+4t+3
 *   (registers 2, 3), B column g at the same k-slots, D rows g, g+8 at
 *   columns 2t, 2t+1. A sum over k does not care which weight sits in which
 *   slot as long as A and B agree: lane t takes quant bytes 8t..8t+7 of the
 *   chunk (one 8-byte load a row), so its slots hold weights 8t..8t+7 of
 *   each sub-block, and B is staged so (gemv_stage_int's fragment layout:
 *   a lane's three planes of a sub-block in 24 bytes, 1.5 16-byte loads).
 *   Plane 0 is signed (mma .u8.s8), planes 1 and 2 unsigned (.u8.u8).
 *
 * Work split: a block walks the tiles of 16 rows with a grid stride, x
 *   staged once, whole (3 bytes a value and batch row). sm_90/100: one tile
 *   at a time, 16 warps on it, 128 registers a thread; elsewhere 8 warps a
 *   tile and as many registers as ptxas wants.
 *   Split (sm_90/100, where x does not fit whole: k = 14336 from m = 5): a
 *   cluster of two blocks takes the same tiles, block h staging only the
 *   super-blocks of parity h, which are the chunks of classes w = 4h..4h+3
 *   (S = 8), taken by its 4 warps a tile (4 tiles at a time: 16 warps). The
 *   butterfly's level 4 apart pairs the blocks' classes: each block adds,
 *   for half of the tile's rows, its own stored sums and the other's,
 *   read through the cluster's shared memory after a cluster barrier
 *   (H100, twenty-sixth session: 4096x14336 m = 8 57.0 -> 39.3 µs cold, the
 *   fp32 kernel's 48.4).
 *   Loads: a warp computes rounds of 4 chunks (a loop), and right after each
 *   chunk loads its slot's next one: the next round's, or the next tile's
 *   first chunks (emit_reload).
 */
#include <stdio.h>
#include <string.h>

#include "act_math.h"
#include "gemv.h"
#include "kernels.h"

#define GROUP_WARPS 8u /* chunks between a warp's chunks of a tile (g = w mod 8), but 16 on sm_90/100 */
/* The generator's choice (mma=0): from MMA_MIN_M batch rows, on at least
 * MMA_MIN_N rows (fewer tiles of 16 rows than twice the SMs leave SMs idle).
 * H100 (bench/RESULTS.md), cold µs, dp4a -> mma. Twenty-sixth session:
 * 14336x4096 m = 5 37.5 -> 32.1, m = 8 53.7 -> 34.2; 4096x4096 m = 5 15.4
 * -> 14.7, m = 8 20.3 -> 15.8; 128256x4096 m = 5 226 -> 186, m = 8 357 ->
 * 190; but 1024x4096 m = 8 12.9 -> 14.0 (64 tiles). Twenty-seventh, with 16
 * warps a tile and reloads across tiles: m = 4 14336x4096 28.9 -> 28.8,
 * 4096x14336 33.0 -> 30.4, 128256x4096 205 -> 178, 4096x4096 13.8 ->
 * 14.1; m = 3 loses (14336x4096 24.3 -> 28.6). */
#ifndef MMA_MIN_M
#define MMA_MIN_M 4u
#endif
#define MMA_MIN_N 2048u

typedef struct mma_plan {
  uint32_t k, n, m, sm;
  uint32_t glu;             /* 0, or the gated epilogue (spec glu): a tile is 8 rows of W and U */
  uint32_t segments, seg_n[3], n_total; /* weights in one row space (spec n2, n3; gemv.c's) */
  uint32_t tile_rows;       /* outputs a tile: 16, or 8 with glu */
  uint32_t chunks, tiles;   /* chunks of 64 per row; tiles of tile_rows outputs */
  uint32_t groups;          /* tiles a block works on at once, `classes` warps each */
  uint32_t warps, threads;
  uint32_t units;           /* ceil(tiles / groups), walked with a grid stride */
  uint32_t lane_chunks;     /* chunks a warp takes per tile, at most: ceil(chunks / 8) */
  uint32_t chunk_bytes;     /* staged x per chunk */
  uint32_t xs_bytes;
  uint32_t red_bytes;       /* per group: two buffers of `classes` warps x m x 16 rows, fp64 */
  uint32_t shared_bytes;
  uint32_t row_stride;      /* bytes from one row of W to the next */
  bool cap128;              /* 16 warps an SM at 128 registers a thread (sm_90, sm_100) */
  /* x too large to stage whole: a cluster of two blocks, block h staging the
   * super-blocks of parity h, whose warps take the classes w = 4h..4h+3 */
  bool split;
  uint32_t classes;         /* warps a tile takes in a block: 8, or 4 when split */
  uint32_t chunk_step;      /* shared bytes from a warp's staged chunk to its next */
  uint32_t stride;          /* chunks from a warp's chunk of a tile to its next: 8, or 16 (wide) */
  uint32_t accs;            /* fp64 sums a lane keeps per output: one per class w + stride a, 32 / stride */
  uint32_t slots;           /* chunks a round: 4, fewer where no warp has more (chunks < 3 stride) */
} mma_plan;

static bool plan_for(const ptxgen_spec *s, mma_plan *p) {
  memset(p, 0, sizeof *p);
  p->k = s->k, p->n = s->n, p->m = s->m, p->sm = s->sm;
  p->chunks = s->k / 64;
  p->row_stride = s->k / 256 * Q4K_BLOCK_BYTES;
  p->glu = s->glu;
  p->seg_n[0] = s->n, p->seg_n[1] = s->n2, p->seg_n[2] = s->n3;
  p->segments = s->n3 ? 3 : s->n2 ? 2 : 1;
  p->n_total = s->n + s->n2 + s->n3;
  p->tile_rows = s->glu ? 8 : 16;
  p->tiles = (p->n_total + p->tile_rows - 1) / p->tile_rows;
  p->chunk_bytes = (204 * s->m + 15) / 16 * 16; /* planes 192m, sums 8m, scales 4m */
  p->xs_bytes = p->chunks * p->chunk_bytes;
  const uint32_t budget = gemv_shared_budget(s->sm);
  /* sm_90/100: one tile at a time, 16 warps on it (chunks w mod 16), so 512
   * threads at 128 registers a thread, which ptxas 13.0 keeps without
   * spills there only (20-200 bytes elsewhere). A block's last tile is then
   * a smaller part of its work than with two tiles of 8 warps (H100,
   * twenty-seventh session: 14336x4096 m = 8 34.0 -> 30.3 µs cold with the
   * reloads across tiles, emit_reload). Other targets: 8 warps a tile and
   * as many registers as ptxas wants. */
  p->cap128 = s->sm == 90 || s->sm == 100;
  p->classes = p->cap128 ? 2 * GROUP_WARPS : GROUP_WARPS;
  p->groups = 1;
  p->red_bytes = 2 * p->classes * s->m * 16 * 8;
  p->shared_bytes = p->xs_bytes + p->groups * p->red_bytes;
  if (p->shared_bytes > budget && p->cap128 && (p->chunks / 4) % 2 == 0 && !p->glu) {
    /* Split: half of x a block, four tiles of four warps at a time (16
     * warps), up to the opt-in maximum (227 KiB, 1 KiB of it the driver's) */
    p->split = true;
    p->classes = GROUP_WARPS / 2;
    p->groups = 4;
    p->xs_bytes = p->chunks / 2 * p->chunk_bytes;
    p->red_bytes = 2 * p->classes * s->m * 16 * 8;
    p->shared_bytes = p->xs_bytes + p->groups * p->red_bytes;
    if (p->shared_bytes > 226u * 1024) return false;
  } else if (p->shared_bytes > budget) {
    return false;
  }
  p->stride = p->split ? GROUP_WARPS : p->classes;
  p->accs = 32 / p->stride;
  p->lane_chunks = (p->chunks + p->stride - 1) / p->stride;
  p->slots = p->lane_chunks < 4 ? p->lane_chunks : 4;
  p->chunk_step = (p->split ? 4 : p->stride) * p->chunk_bytes;
  p->warps = p->groups * p->classes;
  p->threads = p->warps * 32;
  p->units = (p->tiles + p->groups - 1) / p->groups;
  return true;
}

bool gemv_idp_mma_takes(const ptxgen_spec *s) {
  if (!s->idp || s->mma == 1 || s->sm < 80 || s->rope || s->m > 8) return false;
  const uint32_t rows = s->n + s->n2 + s->n3;
  if (s->rows || s->warps || s->preload || (s->mma == 0 && (s->m < MMA_MIN_M || rows < MMA_MIN_N))) return false;
  mma_plan p;
  return plan_for(s, &p);
}

/* Registers of one chunk's weights for the lane's two rows (g, g+8): the
 * super-block header (d, dmin, scales) and quant bytes 8t..8t+7. */
typedef struct mma_raw {
  ptx_reg h[2][4], q[2][2];
} mma_raw;

/* Per-lane registers the chunks share. */
typedef struct mma_lane {
  gemv_lane L;          /* tid, lane, warp; c = w % 4 and the Q4_K scale constants in fmt */
  ptx_reg grp, wl;      /* the warp's group, and the warp within it: its class w (chunks w mod 8), or
                         * w - 4h when split (emit_class) */
  ptx_reg gid, tq;      /* lane / 4, lane % 4 */
  ptx_reg zero;
  ptx_reg xw;           /* shared address of the lane's B in chunk w (its i-th chunk: + i*chunk_step) */
  ptx_reg xu, xsh;      /* the same of its columns' sums U0, U1 and of their scales */
  ptx_reg hoff, qoff;   /* byte offsets in a row of the header and quant bytes of chunk w */
  ptx_reg red;          /* shared address of the group's sum buffers */
  ptx_reg bar;          /* the group's named barrier: 1 + group (0 is the block's) */
} mma_lane;

/* The block's rank h in its cluster (split) and the warp's class w: read
 * again where needed, not held across the loops (split keys spilled 16
 * bytes at 128 registers holding them). */
static ptx_reg emit_half(ptx_builder *b) {
  ptx_reg h = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, %%cluster_ctarank;", h.s);
  return h;
}

static ptx_reg emit_class(ptx_builder *b, const mma_plan *p, const mma_lane *M) {
  if (!p->split) return M->wl;
  ptx_reg w = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", w.s, emit_half(b).s, M->wl.s);
  return w;
}

static void new_raw(ptx_builder *b, mma_raw *r) {
  for (int rr = 0; rr < 2; rr++) {
    for (int j = 0; j < 4; j++) r->h[rr][j] = ptx_new(b, PTX_B32);
    for (int j = 0; j < 2; j++) r->q[rr][j] = ptx_new(b, PTX_B32);
  }
}

/* Row pointers of the lane's rows g and g+8 of tile `tile` (rows past the
 * last read the last): rows 16 tile + g, + 8 of the row space (W's, or
 * with n2/n3 the weights' one after the other), or with glu row 8 tile + g
 * of W (the gate) and of U (the up weight). */
static void emit_row_pointers(ptx_builder *b, const mma_plan *p, const mma_lane *M, ptx_reg tile, ptx_reg rowp[2]) {
  for (int rr = 0; rr < 2; rr++) {
    ptx_reg row = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", row.s, tile.s, p->tile_rows, M->gid.s);
    if (rr && !p->glu) ptx_ins(b, "add.u32 %s, %s, 8;", row.s, row.s);
    ptx_ins(b, "min.u32 %s, %s, %u;", row.s, row.s, p->n_total - 1);
    ptx_reg base = rr && p->glu ? M->L.U : M->L.W;
    if (p->segments > 1) base = gemv_segment_select(b, p->segments, p->seg_n, M->L.Ws, row, NULL);
    ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, row.s, p->row_stride);
    ptx_ins(b, "add.u64 %s, %s, %s;", rowp[rr].s, base.s, off.s);
  }
}

/* Loads chunk w + S(4*round + a) of the lane's two rows (S = p->stride:
 * super-block w/4 + S*round + S/4*a, part w % 4) into slot a: wofs =
 * S*144*round bytes (a register), predicated on guard (a predicate name)
 * unless NULL. */
static void emit_load(ptx_builder *b, const mma_plan *p, const mma_lane *M, const ptx_reg rowp[2], ptx_reg wofs,
                      uint32_t a, const char *guard, const mma_raw *r) {
  char at[24] = "";
  if (guard) snprintf(at, sizeof at, "@%s ", guard);
  ptx_reg ho = ptx_new(b, PTX_B32), qo = ptx_new(b, PTX_B32);
  ptx_ins(b, "add.u32 %s, %s, %s;", ho.s, M->hoff.s, wofs.s);
  ptx_ins(b, "add.u32 %s, %s, %s;", qo.s, M->qoff.s, wofs.s);
  for (int rr = 0; rr < 2; rr++) {
    ptx_reg ha = ptx_new(b, PTX_B64), qa = ptx_new(b, PTX_B64), o = ptx_new(b, PTX_B64);
    ptx_ins(b, "cvt.u64.u32 %s, %s;", o.s, ho.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", ha.s, rowp[rr].s, o.s);
    ptx_ins(b, "cvt.u64.u32 %s, %s;", o.s, qo.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", qa.s, rowp[rr].s, o.s);
    ptx_ins(b, "%sld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s+%u];", at, r->h[rr][0].s, r->h[rr][1].s, r->h[rr][2].s,
            r->h[rr][3].s, ha.s, p->stride / 4 * a * Q4K_BLOCK_BYTES);
    ptx_ins(b, "%sld.global.nc.v2.u32 {%s, %s}, [%s+%u];", at, r->q[rr][0].s, r->q[rr][1].s, qa.s,
            p->stride / 4 * a * Q4K_BLOCK_BYTES);
  }
}

/* Whether chunk w + S(4*round + a) + extra exists (S = p->stride): g = w +
 * 4S*round (a register) + Sa + extra < chunks, into a new predicate; NULL
 * where every warp has it (chunks a multiple of 4S and extra 0). */
static const char *emit_exists(ptx_builder *b, const mma_plan *p, ptx_reg g, uint32_t a, uint32_t extra,
                               ptx_reg *pred) {
  if (extra == 0 && p->chunks % (4 * p->stride) == 0) return NULL;
  *pred = ptx_new(b, PTX_PRED);
  const uint32_t ahead = p->stride * a + extra;
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", pred->s, g.s, p->chunks > ahead ? p->chunks - ahead : 0);
  return pred->s;
}

/* Chunk w + 8i of the lane's rows: 6 mma, then the dp4a kernel's fp64
 * contribution of each of the lane's 4 outputs, added to acc[a][v]
 * (v = 2 * (row g+8) + (column 2t+1)). */
static void emit_chunk(ptx_builder *b, const mma_plan *p, const mma_lane *M, const ptx_reg xb[3], const mma_raw *r,
                       uint32_t i, ptx_reg acc[4][4]) {
  const uint32_t m = p->m, xoff = i * p->chunk_step;
  ptx_comment(b, "chunk w + %u round + %u: A = the rows' nibbles (high ones as 16q), B = x's planes",
              4 * p->stride, p->stride * i);
  ptx_reg A[2][4]; /* [sub-block][register]: rows g, g+8 at slots 4t.., then at 16+4t.. */
  for (int s = 0; s < 2; s++)
    for (int j = 0; j < 4; j++) {
      A[s][j] = ptx_new(b, PTX_B32);
      ptx_ins(b, "and.b32 %s, %s, %s;", A[s][j].s, r->q[j % 2][j / 2].s, s ? "0xF0F0F0F0" : "0x0F0F0F0F");
    }
  ptx_reg B01[2][4], B2[4], us[4], sh[2];
  for (int s = 0; s < 2; s++)
    for (int j = 0; j < 4; j++) B01[s][j] = ptx_new(b, PTX_B32);
  for (int j = 0; j < 4; j++) B2[j] = ptx_new(b, PTX_B32), us[j] = ptx_new(b, PTX_B32);
  sh[0] = ptx_new(b, PTX_B32), sh[1] = ptx_new(b, PTX_B32);
  for (int s = 0; s < 2; s++)
    ptx_ins(b, "ld.shared.v4.b32 {%s, %s, %s, %s}, [%s+%u];", B01[s][0].s, B01[s][1].s, B01[s][2].s,
            B01[s][3].s, xb[0].s, xoff + 64 * m * (uint32_t)s);
  ptx_ins(b, "ld.shared.v4.b32 {%s, %s, %s, %s}, [%s+%u];", B2[0].s, B2[1].s, B2[2].s, B2[3].s,
          xb[0].s, xoff + 128 * m);
  ptx_ins(b, "ld.shared.v4.b32 {%s, %s, %s, %s}, [%s+%u];", us[0].s, us[1].s, us[2].s, us[3].s,
          xb[1].s, xoff + 192 * m);
  ptx_ins(b, "ld.shared.v2.b32 {%s, %s}, [%s+%u];", sh[0].s, sh[1].s, xb[2].s, xoff + 200 * m);
  ptx_reg sc[2][2], sc16[2], mn16[2][2], dd[2], dm[2];
  for (int rr = 0; rr < 2; rr++) {
    ptx_comment(b, "row g%s: d, -dmin in fp64; the scales and mins of sub-blocks 2c, 2c+1", rr ? "+8" : "");
    q4k_idp_row_scales(b, &M->L, r->h[rr], &dd[rr], &dm[rr], sc[rr], &sc16[rr], mn16[rr]);
  }
  ptx_comment(b, "per plane p: its two mma, then ia_p = 16 sc0 T_lo,p + sc1 T_hi,p for each output");
  ptx_reg ia[3][4];
  static const char *const types[3] = {"u8.s8", "u8.u8", "u8.u8"};
  for (int pl = 0; pl < 3; pl++) {
    ptx_reg T[2][4];
    for (int s = 0; s < 2; s++) {
      for (int j = 0; j < 4; j++) T[s][j] = ptx_new(b, PTX_B32);
      const ptx_reg b0 = pl < 2 ? B01[s][2 * pl] : B2[2 * s], b1 = pl < 2 ? B01[s][2 * pl + 1] : B2[2 * s + 1];
      const char *z = M->zero.s;
      ptx_ins(b, "mma.sync.aligned.m16n8k32.row.col.s32.%s.s32 {%s, %s, %s, %s}, {%s, %s, %s, %s}, {%s, %s}, "
                 "{%s, %s, %s, %s};",
              types[pl], T[s][0].s, T[s][1].s, T[s][2].s, T[s][3].s, A[s][0].s, A[s][1].s, A[s][2].s, A[s][3].s,
              b0.s, b1.s, z, z, z, z);
    }
    for (int v = 0; v < 4; v++) {
      ia[pl][v] = ptx_new(b, PTX_B32);
      ptx_op3(b, "mul.lo.s32", ia[pl][v], sc16[v / 2], T[0][v]);
      ptx_op4(b, "mad.lo.s32", ia[pl][v], sc[v / 2][1], T[1][v], ia[pl][v]);
    }
  }
  ptx_comment(b, "each output's contribution, as the dp4a kernel forms it; added to the sum of class w + %u",
              p->stride * (i % p->accs));
  ptx_reg scale[2] = {ptx_new(b, PTX_B64), ptx_new(b, PTX_B64)};
  for (int col = 0; col < 2; col++) ptx_ins(b, "mov.b64 %s, {%s, %s};", scale[col].s, M->zero.s, sh[col].s);
  for (int v = 0; v < 4; v++) {
    const int rr = v / 2, col = v % 2;
    const ptx_reg iav[3] = {ia[0][v], ia[1][v], ia[2][v]};
    q4k_idp_add_chunk(b, iav, mn16[rr], us[2 * col], us[2 * col + 1], dd[rr], dm[rr], scale[col], acc[i % p->accs][v]);
  }
}

/* After chunk a of a round, slot a's next load, in flight while the rest of
 * the round computes: the next round's chunk a (wofs: that round's
 * offset), or where this tile has none, the next tile's chunk a (rows
 * rowq; `more`: a next tile exists). Split keys, many rounds a tile, take
 * only the first (fewer registers) and load the next tile's first chunks
 * after the rounds. H100, twenty-seventh session, cold µs at m = 8 against
 * the loads after the round: 14336x4096 31.7 -> 30.3 (16 warps a tile),
 * 4096x14336 (split) 39.3 -> 35.8. */
static void emit_reload(ptx_builder *b, const mma_plan *p, const mma_lane *M, const ptx_reg rowp[2],
                        const ptx_reg rowq[2], ptx_reg more, ptx_reg g, ptx_reg wofs, uint32_t a, const mma_raw *slot) {
  ptx_reg pe;
  if (p->split) {
    emit_load(b, p, M, rowp, wofs, a, emit_exists(b, p, g, a, 4 * p->stride, &pe), slot);
    return;
  }
  ptx_reg here = ptx_new(b, PTX_PRED), guard = ptx_new(b, PTX_PRED), ws = ptx_new(b, PTX_B32);
  ptx_reg rs[2] = {ptx_new(b, PTX_B64), ptx_new(b, PTX_B64)};
  const uint32_t ahead = p->stride * (a + 4); /* the next round's chunk a */
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", here.s, g.s, p->chunks > ahead ? p->chunks - ahead : 0);
  const char *first = emit_exists(b, p, emit_class(b, p, M), a, 0, &pe);
  if (first)
    ptx_ins(b, "and.pred %s, %s, %s;", guard.s, first, more.s);
  else
    ptx_ins(b, "mov.pred %s, %s;", guard.s, more.s);
  ptx_ins(b, "or.pred %s, %s, %s;", guard.s, guard.s, here.s);
  ptx_ins(b, "selp.b32 %s, %s, 0, %s;", ws.s, wofs.s, here.s);
  for (int rr = 0; rr < 2; rr++) ptx_ins(b, "selp.b64 %s, %s, %s, %s;", rs[rr].s, rowp[rr].s, rowq[rr].s, here.s);
  emit_load(b, p, M, rs, ws, a, guard.s, slot);
}

static void emit_lane(ptx_builder *b, const mma_plan *p, const ptxgen_spec *s, mma_lane *M) {
  gemv_lane *L = &M->L;
  memset(M, 0, sizeof *M);
  gemv_load_params(b, s, L);
  gemv_thread_ids(b, L);
  L->xs_base = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, xs;", L->xs_base.s);
  L->xsum_base = L->xs_base;
  M->grp = ptx_new(b, PTX_B32), M->gid = ptx_new(b, PTX_B32);
  M->tq = ptx_new(b, PTX_B32), M->zero = ptx_imm_b32(b, 0), M->wl = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, %u;", M->wl.s, L->warp.s, p->classes - 1);
  ptx_ins(b, "shr.u32 %s, %s, %u;", M->grp.s, L->warp.s, p->classes == 16 ? 4u : p->classes == 8 ? 3u : 2u);
  const ptx_reg gw = emit_class(b, p, M);
  ptx_ins(b, "shr.u32 %s, %s, 2;", M->gid.s, L->lane.s);
  ptx_ins(b, "and.b32 %s, %s, 3;", M->tq.s, L->lane.s);
  ptx_comment(b, "this warp's chunks are w (mod %u): part c = w %% 4 of super-blocks w/4 + %ui", p->stride,
              p->stride / 4);
  ptx_ins(b, "and.b32 %s, %s, 3;", L->c.s, gw.s);
  q4k_idp_consts(b, L);
  M->hoff = ptx_new(b, PTX_B32), M->qoff = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, 2;", M->hoff.s, gw.s);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", M->hoff.s, M->hoff.s, Q4K_BLOCK_BYTES);
  ptx_ins(b, "mad.lo.u32 %s, %s, 32, %s;", M->qoff.s, L->c.s, M->hoff.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", M->qoff.s, M->tq.s, M->qoff.s);
  ptx_ins(b, "add.u32 %s, %s, 16;", M->qoff.s, M->qoff.s); /* quant bytes 32c + 8t.. */
  M->xw = ptx_new(b, PTX_B32);
  /* staged chunk of chunk w: w, or (split) w - 4h */
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", M->xw.s, M->wl.s, p->chunk_bytes, L->xs_base.s);
  ptx_comment(b, "this lane's B of chunk w (lane 4g + t: 16 bytes a part), and the sums of its columns 2t, 2t+1; "
                 "lanes of columns past m read the last column's (not stored; a load that never skips keeps "
                 "ptxas from carrying the registers across the loop)");
  ptx_reg t = ptx_new(b, PTX_B32);
  M->xu = ptx_new(b, PTX_B32), M->xsh = ptx_new(b, PTX_B32);
  ptx_ins(b, "min.u32 %s, %s, %u;", t.s, M->tq.s, (p->m - 1) / 2);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", M->xu.s, t.s, M->xw.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", M->xsh.s, t.s, M->xw.s);
  ptx_ins(b, "min.u32 %s, %s, %u;", t.s, L->lane.s, 4 * p->m - 1);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", M->xw.s, t.s, M->xw.s);
  M->bar = ptx_new(b, PTX_B32);
  ptx_ins(b, "add.u32 %s, %s, 1;", M->bar.s, M->grp.s);
  M->red = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", M->red.s, M->grp.s, p->red_bytes, L->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", M->red.s, M->red.s, p->xs_bytes);
}

/* Every thread of both blocks of the cluster arrives, then waits: the
 * writes to shared memory before it are visible to the other block after. */
static void emit_cluster_barrier(ptx_builder *b) {
  ptx_ins(b, "barrier.cluster.arrive.release.aligned;");
  ptx_ins(b, "barrier.cluster.wait.acquire.aligned;");
}

/* The classes' stored sums of one output, s2[w] for warp w, from the
 * group's buffer at `at` (its [0][column][row]) plus off bytes. */
static void emit_load_classes(ptx_builder *b, const mma_plan *p, ptx_reg at, uint32_t off, ptx_reg s2[]) {
  for (uint32_t w = 0; w < p->classes; w++)
    ptx_ins(b, "ld.shared.f64 %s, [%s+%u];", s2[w].s, at.s, w * p->m * 16 * 8 + off);
}

/* The butterfly's levels between warps, first_half apart down to 1 apart,
 * into s2[0]. */
static void emit_warp_levels(ptx_builder *b, uint32_t first_half, ptx_reg s2[]) {
  for (uint32_t half = first_half; half >= 1; half /= 2)
    for (uint32_t w = 0; w < half; w++) ptx_ins(b, "add.rn.f64 %s, %s, %s;", s2[w].s, s2[w].s, s2[w + half].s);
}

/* The tile's sums: each warp adds its classes (the butterfly's levels 16
 * apart, and 8 apart with 8 warps a tile) and stores them as class w's,
 * then one thread per output adds the warps' (the levels left), rounds to
 * fp32 and stores y (with glu, act(gate) * up). buf: the byte
 * offset of this tile's buffer (0 or red_bytes/2: a tile's writes cannot
 * overtake the last tile's reads, which end before the barrier between). */
static void emit_tile_sums(ptx_builder *b, const mma_plan *p, const mma_lane *M, ptx_reg acc[4][4], ptx_reg tile,
                           ptx_reg buf) {
  const uint32_t m = p->m;
  ptx_comment(b, p->accs == 4 ? "the warp's classes: (w + w+16) + (w+8 + w+24) for each of its outputs, stored at "
                                 "[w][column][row]"
                               : "the warp's classes: w + w+16 for each of its outputs, stored at [w][column][row]");
  ptx_reg red = ptx_new(b, PTX_B32);
  ptx_ins(b, "add.u32 %s, %s, %s;", red.s, M->red.s, buf.s);
  for (int v = 0; v < 4; v++) {
    ptx_reg s1 = ptx_new(b, PTX_B64), s2 = ptx_new(b, PTX_B64), col = ptx_new(b, PTX_B32), at = ptx_new(b, PTX_B32);
    ptx_reg ok = ptx_new(b, PTX_PRED);
    if (p->accs == 4) { /* classes w + 8a: the butterfly's levels 16 and 8 apart */
      ptx_ins(b, "add.rn.f64 %s, %s, %s;", s1.s, acc[0][v].s, acc[2][v].s);
      ptx_ins(b, "add.rn.f64 %s, %s, %s;", s2.s, acc[1][v].s, acc[3][v].s);
      ptx_ins(b, "add.rn.f64 %s, %s, %s;", s1.s, s1.s, s2.s);
    } else { /* classes w + 16a: level 16 apart */
      ptx_ins(b, "add.rn.f64 %s, %s, %s;", s1.s, acc[0][v].s, acc[1][v].s);
    }
    ptx_ins(b, "mad.lo.u32 %s, %s, 2, %u;", col.s, M->tq.s, (uint32_t)(v % 2));
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", ok.s, col.s, m);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", at.s, M->wl.s, m, col.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", at.s, at.s, M->gid.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", at.s, at.s, red.s);
    ptx_ins(b, "@%s st.shared.f64 [%s+%u], %s;", ok.s, at.s, (uint32_t)(v / 2) * 64, s1.s);
  }
  if (p->split) {
    ptx_comment(b, "both blocks' classes stored (this barrier also ends the last tile's reads of the other buffer)");
    emit_cluster_barrier(b);
  } else {
    ptx_ins(b, "bar.sync %s, %u;", M->bar.s, p->classes * 32); /* the group's own barrier */
  }
  char done[32];
  ptx_label_new(b, "sums_done", done);
  ptx_reg q = ptx_new(b, PTX_B32), row = ptx_new(b, PTX_B32), col = ptx_new(b, PTX_B32), at = ptx_new(b, PTX_B32);
  ptx_reg skip = ptx_new(b, PTX_PRED), s2[2 * GROUP_WARPS];
  for (uint32_t w = 0; w < 2 * GROUP_WARPS; w++) s2[w] = ptx_new(b, PTX_B64);
  ptx_ins(b, "mad.lo.u32 %s, %s, 32, %s;", q.s, M->wl.s, M->L.lane.s);
  if (p->split) {
    ptx_comment(b, "thread q < 8m of the group: row 8h + q %% 8, column q / 8; classes 4 apart from the two blocks, "
                   "then 2, 1 apart");
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", skip.s, q.s, 8 * m);
    ptx_ins(b, "@%s bra %s;", skip.s, done);
    ptx_ins(b, "and.b32 %s, %s, 7;", row.s, q.s);
    const ptx_reg half = emit_half(b);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", row.s, half.s, row.s);
    ptx_ins(b, "shr.u32 %s, %s, 3;", col.s, q.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", at.s, col.s, row.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", at.s, at.s, red.s); /* [0][col][row] */
    ptx_reg peer = ptx_new(b, PTX_B32), rat = ptx_new(b, PTX_B32);
    ptx_ins(b, "xor.b32 %s, %s, 1;", peer.s, half.s);
    ptx_ins(b, "mapa.shared::cluster.u32 %s, %s, %s;", rat.s, at.s, peer.s);
    for (uint32_t w = 0; w < 4; w++) {
      ptx_ins(b, "ld.shared.f64 %s, [%s+%u];", s2[w].s, at.s, w * m * 16 * 8);
      ptx_ins(b, "ld.shared::cluster.f64 %s, [%s+%u];", s2[w + 4].s, rat.s, w * m * 16 * 8);
    }
  } else {
    const uint32_t rows = p->tile_rows; /* with glu, rows 8..15 are the up rows of rows 0..7 */
    ptx_comment(b, "thread q < %um of the group: row q %% %u, column q / %u; warps %s2, 1 apart", rows, rows, rows,
                p->classes == 16 ? "8, 4, " : "4, ");
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", skip.s, q.s, rows * m);
    ptx_ins(b, "@%s bra %s;", skip.s, done);
    ptx_ins(b, "and.b32 %s, %s, %u;", row.s, q.s, rows - 1);
    ptx_ins(b, "shr.u32 %s, %s, %u;", col.s, q.s, rows == 16 ? 4u : 3u);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", at.s, col.s, row.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", at.s, at.s, red.s); /* [0][col][row] */
    emit_load_classes(b, p, at, 0, s2);
  }
  /* (split: s2[w] + s2[w+4] is this block's class plus the other's, in
   * either order: the same sum) */
  const uint32_t first_half = p->split ? 4 : p->classes / 2;
  emit_warp_levels(b, first_half, s2);
  ptx_reg yv = ptx_new(b, PTX_F32), grow = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), ya = ptx_new(b, PTX_B64);
  ptx_reg out = ptx_new(b, PTX_PRED);
  ptx_ins(b, "cvt.rn.f32.f64 %s, %s;", yv.s, s2[0].s);
  if (p->glu) { /* act(gate) * up, the arithmetic of the swiglu/geglu kernels (and of gemv.c's glu epilogue) */
    ptx_comment(b, "the up row's sums (row + 8), added the same way; act(gate) * up");
    emit_load_classes(b, p, at, 64, s2);
    emit_warp_levels(b, first_half, s2);
    ptx_reg up = ptx_new(b, PTX_F32);
    ptx_ins(b, "cvt.rn.f32.f64 %s, %s;", up.s, s2[0].s);
    ptx_reg a = emit_activation(b, p->glu == 1 ? PTXGEN_KIND_SWIGLU : PTXGEN_KIND_GEGLU, yv, false);
    ptx_ins(b, "mul.rn.f32 %s, %s, %s;", yv.s, a.s, up.s);
  }
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", grow.s, tile.s, p->tile_rows, row.s);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", out.s, grow.s, p->n_total);
  if (p->segments > 1) { /* y of the row's weight, at its row in it */
    ptx_reg ystride;
    const ptx_reg ybase = gemv_segment_select(b, p->segments, p->seg_n, M->L.ys, grow, &ystride);
    ptx_ins(b, "mul.lo.u32 %s, %s, %s;", ystride.s, ystride.s, col.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", grow.s, grow.s, ystride.s);
    ptx_ins(b, "cvt.u64.u32 %s, %s;", off.s, grow.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", ya.s, ybase.s, off.s);
  } else {
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", grow.s, col.s, p->n, grow.s);
    ptx_ins(b, "mul.wide.u32 %s, %s, 4;", off.s, grow.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", ya.s, M->L.y.s, off.s);
  }
  ptx_ins(b, "@%s st.global.f32 [%s], %s;", out.s, ya.s, yv.s);
  ptx_label(b, done);
}

int gemv_idp_mma_emit(const ptxgen_spec *spec, const gemv_format *f, ptxgen_kernel *out) {
  mma_plan p;
  if (!plan_for(spec, &p)) return PTXGEN_ERR_SPEC;
  if (gemv_entry_name(spec, "q4k_gemv_idp_mma", out) != PTXGEN_OK) return PTXGEN_ERR_SPEC;
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(p.sm), p.sm);
  int param_count;
  const char *const *params = gemv_param_names(spec, &param_count);
  /* cap128: 16 warps an SM, 512 threads (128 registers) */
  if (p.split)
    ptx_entry_cluster(&b, out->entry, params, param_count, 1, p.threads, 2);
  else
    ptx_entry(&b, out->entry, params, param_count, 1, p.threads > 256 ? p.threads : 0);
  ptx_comment(&b, "y[%u][%u] = %sx[%u][%u] . W[%u][%u]^T%s with integer dot products on the tensor cores: "
                  "%u tile(s) of %u outputs a block at a time, %u warps each; x staged %s, %u bytes a chunk",
              p.m, p.n, p.glu == 1 ? "silu(" : p.glu == 2 ? "gelu(" : "", p.m, p.k, p.n, p.k,
              p.glu ? ") * (x . U^T)" : "", p.groups, p.tile_rows, p.classes, p.split ? "half a block" : "whole",
              p.chunk_bytes);
  if (p.segments > 1)
    ptx_comment(&b, "%u weights in one row space: rows [0, %u) of W, then [%u, %u) of W2%s", p.segments, p.seg_n[0],
                p.seg_n[0], p.seg_n[0] + p.seg_n[1], p.segments > 2 ? ", then the rest of W3" : "");
  mma_lane M;
  emit_lane(&b, &p, spec, &M);
  ptx_reg unit = ptx_new(&b, PTX_B32), ncta = ptx_new(&b, PTX_B32), tile = ptx_new(&b, PTX_B32);
  ptx_reg buf = ptx_new(&b, PTX_B32), more = ptx_new(&b, PTX_PRED);
  if (p.split) { /* both blocks of a cluster take the same tiles */
    ptx_ins(&b, "mov.u32 %s, %%clusterid.x;", unit.s);
    ptx_ins(&b, "mov.u32 %s, %%nclusterid.x;", ncta.s);
  } else {
    ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", unit.s);
    ptx_ins(&b, "mov.u32 %s, %%nctaid.x;", ncta.s);
  }
  ptx_ins(&b, "mov.u32 %s, 0;", buf.s);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", tile.s, unit.s, p.groups, M.grp.s);
  mma_raw slots[4];
  for (uint32_t i = 0; i < 4; i++) new_raw(&b, &slots[i]);
  ptx_reg rowp[2] = {ptx_new(&b, PTX_B64), ptx_new(&b, PTX_B64)}, pe;
  ptx_reg wofs = ptx_new(&b, PTX_B32), g = ptx_new(&b, PTX_B32), xb[3];
  for (int j = 0; j < 3; j++) xb[j] = ptx_new(&b, PTX_B32);
  ptx_comment(&b, "the first tile's first 4 chunks: weights never depend on an earlier kernel");
  emit_row_pointers(&b, &p, &M, tile, rowp);
  ptx_ins(&b, "mov.u32 %s, 0;", wofs.s);
  for (uint32_t a = 0; a < p.slots; a++)
    emit_load(&b, &p, &M, rowp, wofs, a, emit_exists(&b, &p, emit_class(&b, &p, &M), a, 0, &pe), &slots[a]);
  ptx_grid_dependency_sync(&b);
  const uint32_t staged = p.split ? p.chunks / 2 : p.chunks;
  gemv_plan sp = {.k = p.k, .n = p.n, .m = p.m, .sm = p.sm, .threads = p.threads, .warps = p.warps,
                  .chunks = p.chunks, .tile_chunks = staged, .tiles = 1, .sums = 4, .xs_stride = staged | 1u};
  ptx_reg tile0 = ptx_imm_b32(&b, 0), tile_len = ptx_imm_b32(&b, staged);
  const ptx_reg half = p.split ? emit_half(&b) : tile0;
  gemv_stage_int(&b, &sp, f, &M.L, tile0, tile_len, p.chunk_bytes, p.split ? &half : NULL);
  ptx_ins(&b, "bar.sync 0;");
  char top[32], round_top[32];
  ptx_label_new(&b, "tile", top);
  ptx_label_new(&b, "round", round_top);
  ptx_label(&b, top);
  ptx_reg next = ptx_new(&b, PTX_B32), next_tile = ptx_new(&b, PTX_B32);
  ptx_reg rowq[2] = {ptx_new(&b, PTX_B64), ptx_new(&b, PTX_B64)};
  ptx_comment(&b, "the next tile (whose rows a slot loads once this tile has no more chunks for it)");
  ptx_ins(&b, "add.u32 %s, %s, %s;", next.s, unit.s, ncta.s);
  ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", more.s, next.s, p.units);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", next_tile.s, next.s, p.groups, M.grp.s);
  if (!p.split) emit_row_pointers(&b, &p, &M, next_tile, rowq);
  ptx_reg acc[4][4];
  for (uint32_t a = 0; a < p.accs; a++)
    for (int v = 0; v < 4; v++) {
      acc[a][v] = ptx_new(&b, PTX_B64);
      ptx_ins(&b, "mov.b64 %s, 0;", acc[a][v].s);
    }
  ptx_comment(&b, "rounds of 4 chunks w + %u round + %ua, chunk a into class a %% %u's sums, each then reloaded",
              4 * p.stride, p.stride, p.accs);
  ptx_ins(&b, "mov.u32 %s, %s;", xb[0].s, M.xw.s);
  ptx_ins(&b, "mov.u32 %s, %s;", xb[1].s, M.xu.s);
  ptx_ins(&b, "mov.u32 %s, %s;", xb[2].s, M.xsh.s);
  ptx_ins(&b, "mov.u32 %s, %s;", g.s, emit_class(&b, &p, &M).s);
#ifdef EXP_UNROLL
  const uint32_t body_copies = (p.lane_chunks + 3) / 4;
#else
  const uint32_t body_copies = 1;
#endif
  ptx_label(&b, round_top);
  for (uint32_t copy = 0; copy < body_copies; copy++) {
  for (uint32_t a = 0; a < p.slots; a++) {
    char skip[32] = "";
    const char *exists = emit_exists(&b, &p, g, a, 0, &pe);
    if (exists) {
      ptx_label_new(&b, "no_chunk", skip);
      ptx_ins(&b, "@!%s bra %s;", exists, skip);
    }
    emit_chunk(&b, &p, &M, xb, &slots[a], a, acc);
    if (skip[0]) ptx_label(&b, skip);
    if (a == 0) ptx_ins(&b, "add.u32 %s, %s, %u;", wofs.s, wofs.s, p.stride * Q4K_BLOCK_BYTES); /* next round */
    emit_reload(&b, &p, &M, rowp, rowq, more, g, wofs, a, &slots[a]);
  }
  ptx_ins(&b, "add.u32 %s, %s, %u;", g.s, g.s, 4 * p.stride);
  for (int j = 0; j < 3; j++) ptx_ins(&b, "add.u32 %s, %s, %u;", xb[j].s, xb[j].s, 4 * p.chunk_step);
  }
  ptx_reg again = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", again.s, g.s, p.chunks);
  ptx_ins(&b, "@%s bra %s;", again.s, round_top);
  if (!p.split) { /* the next tile's first chunks are in flight */
    for (int rr = 0; rr < 2; rr++) ptx_ins(&b, "mov.b64 %s, %s;", rowp[rr].s, rowq[rr].s);
    ptx_ins(&b, "mov.u32 %s, 0;", wofs.s);
  } else {
    ptx_comment(&b, "the next tile's first chunks, in flight while this tile's sums are added");
    emit_row_pointers(&b, &p, &M, next_tile, rowp);
    ptx_ins(&b, "mov.u32 %s, 0;", wofs.s);
    for (uint32_t a = 0; a < p.slots; a++) {
      const char *exists = emit_exists(&b, &p, emit_class(&b, &p, &M), a, 0, &pe);
      ptx_reg both = more; /* (its name outlives the branch below) */
      if (exists) {
        both = ptx_new(&b, PTX_PRED);
        ptx_ins(&b, "and.pred %s, %s, %s;", both.s, exists, more.s);
      }
      emit_load(&b, &p, &M, rowp, wofs, a, both.s, &slots[a]);
    }
  }
  emit_tile_sums(&b, &p, &M, acc, tile, buf);
  ptx_ins(&b, "xor.b32 %s, %s, %u;", buf.s, buf.s, p.red_bytes / 2);
  ptx_ins(&b, "mov.u32 %s, %s;", unit.s, next.s);
  ptx_ins(&b, "mov.u32 %s, %s;", tile.s, next_tile.s);
  ptx_ins(&b, "@%s bra %s;", more.s, top);
  if (p.split) { /* the other block may still read this one's sums */
    ptx_comment(&b, "stay until the other block has read this block's last sums");
    emit_cluster_barrier(&b);
  }
  ptx_ins(&b, "ret;");
  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  const uint32_t clusters = p.units < 1024 ? p.units : 1024, per = p.split ? 2 : 1;
  out->geometry = (ptxgen_geometry){{clusters * per, 1, 1}, {p.threads, 1, 1}, p.shared_bytes, p.split ? 2 : 0};
  return PTXGEN_OK;
}
