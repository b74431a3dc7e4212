/*
 * gemv_tc.c: the Q4_K and Q6_K GEMV on the tensor cores (q4k_gemv and
 * q6k_gemv keys with tc=1), y[m][n] = x[m][k] . W[n][k]^T with W in the
 * format's tile layout, x and y fp32. Q6_K differs only in its tiles, its
 * staged x's order and its super-block's arithmetic (below, "Q6_K"); the
 * plans, staging, splits, epilogues and stores are the two formats' alike.
 *
 * Why: the FMA kernel (gemv.c) spends m fma per weight, so at m = 8 it is
 * bound by issue, not memory (2.5x its m = 1 time on 14336x4096). Here a
 * warp multiplies 16 rows by 16 weights by 8 batch rows in one mma.sync,
 * and everything per weight (load, dequantize) is paid once for any m <= 8.
 *
 * Exactness
 *   A super-block contributes d*sum_j sc_j sum(q x) - dmin*sum_j m_j sum_j(x)
 *   (formats.md; j its 8 sub-blocks of 32 weights). Both sums run on the
 *   tensor cores in f16 with fp32 accumulation, every product exact:
 *   - A (weights) is sc_j*q, an integer <= 63*15 = 945, exact in f16. A
 *     nibble masked under the exponent of 1024 (one lop3) is the f16 1024+q,
 *     and one fma.f16x2 with (sc, -1024 sc) gives sc*q exactly (its single
 *     rounding is of an exact, representable result). High nibbles come out
 *     as 1024 + 16q and take (sc/16, -64 sc). So the sub-block scales are in
 *     the weights and the mma chains run over a whole super-block.
 *   - B (x) is each super-block of each batch row scaled by 2^e (exact),
 *     e chosen so that its largest |x| is in [2^14, 2^15), then cut into f16
 *     hi = f16(x 2^e) and lo = f16(x 2^e - hi): hi + lo holds 22 of x's 24
 *     significant bits, and what lo rounds away is below 2^-24 |x| plus
 *     2^-24 of the super-block's largest |x|. The sums of x per sub-block are
 *     added in fp32 (a fixed order) and cut the same way, at 2^(e-6).
 *   - The mins: one m16n8k8 mma per part with A = m_j (exact) and B the
 *     sub-block sums.
 *   The contribution is 2^-e (f32(d) D - 64 f32(dmin) Dmin), in fp32.
 *
 * Fragments (PTX ISA, mma.m16n8k16 with .f16): lane = 4*g + t (g 0..7,
 * t 0..3) holds A rows g and g+8 at k-slots 2t, 2t+1, 2t+8, 2t+9, B column
 * g at those slots, and D rows g, g+8 at columns 2t, 2t+1. A step is 16
 * weights of one sub-block: lane t reads quant bytes 8t..8t+7 of each
 * 32-byte chunk (of both rows in one 16-byte load), and in step s its word s (bytes
 * 8t+4s..8t+4s+3) fills slots 2t, 2t+1, 2t+8, 2t+9 with bytes 0, 2, 1, 3:
 * low nibbles are sub-block 2c of chunk c, high nibbles sub-block 2c+1.
 * Lane t decodes the scales of chunk t (sub-blocks 2t, 2t+1) of its two
 * rows; the other lanes of its row pair take them by shuffle. In the
 * m16n8k8 of the mins, lane t's k-slots 2t, 2t+1 are exactly its own
 * sub-blocks. x is staged in shared memory already cut and permuted into B
 * fragments, so a lane's B for both steps of a sub-block is one 16-byte
 * load per part, and the lanes of columns past m hold zeros (they load
 * nothing).
 *
 * Q6_K
 *   sc*q no longer fits f16 exactly (an int8 scale times q - 32 reaches 4096
 *   and odd values past 2048), so A is q - 32 alone (exact) and a step is
 *   one 16-weight sub-block: per part one mma, lo then hi into one D, whose
 *   sub-block scale is applied in fp32, S = sum_u sc_u D_u in u order; the
 *   contribution is 2^-e f32(d) S. No mins, so no sums of x. x is staged as
 *   for Q4_K, but lane t, step s of a 32-weight record now hold weights
 *   16(2r + s) + 4t.. (emit_stage). The tiles (ptxgen_q6k_tc_tiles) give a
 *   lane its low nibbles in words where two pairs of A sit at bits 0/4 and
 *   8/12 of each half, and its high bits in words where one shift brings a
 *   pair's to bits 4-5 and 8-9: one lop3 per mask, and 1024 + q (or 1024 +
 *   16q) under the f16 exponent, less 1056 (or times 1/16 less 96) is q - 32
 *   (emit_a6). About twice Q4_K's instructions per weight, for 1.46x its
 *   bytes: H100, nineteenth session, m = 1 as fast as the FMA kernel on
 *   4096x14336, m = 8 2.8x faster.
 *
 * Weights: the tile layout (ptxgen_q4k_tc_tiles), where super-block j of
 *   a tile's 16 rows is 2304 contiguous bytes, ordered as the lanes load
 *   them: a warp reads it in 4 + 2 coalesced 16-byte loads per lane
 *   instead of 144-byte pieces of 16 rows (H100, fifteenth session:
 *   128256x4096 m = 1 121 -> 111 µs with the 2304 bytes contiguous).
 *
 * Work split
 *   A warp owns a tile of 16 rows and the super-blocks j = split (mod
 *   splits) of k; a block of 8 warps holds 8/splits tiles. splits is the
 *   largest of 1, 2, 4, 8 whose 8-warp blocks still fit one wave of two
 *   blocks per SM of an H100 (264): the fewest warps per tile, so the
 *   longest loops, without a second, partial wave (n = 4096: 8, 256
 *   blocks; n = 14336: 2, 224 blocks; n = 128256: 1). Never more than the
 *   super-blocks. The warps of a tile add their sums in shared memory,
 *   split 0 first.
 *   x (all m rows) is staged once per block where it fits the shared
 *   memory, else k is cut into tiles staged in turn. Where two blocks'
 *   staged x do not fit an SM (several batch rows, or long rows), the one
 *   block that does takes 16 warps: they share its staged x, and the SM
 *   keeps 16 warps' loads in flight (H100, m = 8: 14336x4096 27.1 -> 22.7
 *   µs, 4096x14336 53.8 -> 37.6; fourteenth session).
 *   Split blocks (tc_plan_split_blocks), where that staging is what costs
 *   (long rows, several batch rows, few tiles per block): a block takes
 *   one split of 8 tiles and stages only that split's super-blocks of x.
 *   Its sums go to partials in the module (.global, zero at load; 512 nt
 *   bytes per warp and task, about 2 MB at most: the splits keep tasks
 *   within about a wave of blocks); the row group's last block to finish,
 *   which a counter in the module finds, adds them in split order and
 *   stores. So a launch must not overlap another of the same module (the
 *   context's one stream orders them; programmatic launch waits before the
 *   sums). H100, sixteenth session: 4096x14336 m = 8 31.2 -> 21.6 µs, m =
 *   1 20.4 -> 19.4.
 *
 * Gated (glu: an FFN's gate W and up U, m <= 8): a block holds W's and
 *   U's warps for each of its tiles (warp = (tile * 2 + weight) * splits +
 *   split; 16 warps where a tile splits 8 ways), each warp as in W's plan
 *   alone, so each product keeps its own bits; no split blocks. W's split
 *   0 adds W's splits, then U's, in order, and stores act(W's) * U's with
 *   the swiglu/geglu kernel's arithmetic: the bits of the two products and
 *   that kernel, in one launch that writes h once (the decode step's FFN).
 *
 * Several weights (n2, n3: a layer's q, k, v): each weight has blocks of
 *   its own, the first blocks for the first weight, with the plan it would
 *   have alone (its splits, so the bits of its own product) and one block
 *   shape for all; the grid is as generated, since blocks belong to
 *   weights by index.
 *
 * RoPE (rope=neox with n_dims = head_dim, a multiple of 32, on q and k):
 *   NeoX rotates rows i and i + head_dim/2 of a head, which lie in tiles
 *   t and t + head_dim/32. So, as the gated kernel pairs W's and U's
 *   tiles, a block holds both tiles of each pair (warp = (pair * 2 + half)
 *   * splits + split), each warp as in the weight's own plan; the first
 *   tile's split 0 adds both tiles' splits in order, rotates each pair with
 *   the rope kernel's instructions and stores both rows: the bits of the
 *   tc=1 product and then the rope kernel, in one launch. v is not paired.
 *
 * Batch invariance: an output's sums run in one order for every m (its
 * split's super-blocks in increasing j; in each, the mma chains in a fixed
 * order and their sum; then the splits in order, in a block or across
 * blocks alike); splits depends on n and k only, a column's scale 2^e on
 * its own x only, and each column of an mma depends only on its own B
 * column. So row i of a batch is bit-identical to the m = 1 product of
 * that row.
 */
#include <stdio.h>
#include <string.h>

#include "act_math.h"
#include "gemv.h"
#include "kernels.h"
#include "rope_math.h"

#define Q6K_BLOCK_BYTES 210u
#define TC_WARPS 8u           /* per block, two blocks per SM; 16 where one block fits (tc_plan_for) */
#define TC_GRID_CAP 1024u     /* blocks at most; more row groups are walked with a grid stride */
#define TC_WAVE_BLOCKS 264u /* two blocks on each of an H100's 132 SMs */
#define PARTS 2u              /* f16 parts of x: lo, hi */
#define STEPS_PER_SB 16u      /* 4 chunks x 2 sub-blocks x 2 steps of 16 weights */
/* Staging tasks (a super-block of one column of x) a warp takes at once:
 * every task's loads go out together, so the warp waits for L2 once per
 * round, not once per task. 8 where x is staged whole; 4 where it is
 * staged in tiles of k, beside loads of the weights (8 spilled 24-32 bytes
 * on the gated and RoPE keys at k = 14336, m = 8). H100, twenty-eighth
 * session, with 2 before (and each task's largest |x| by redux): 14336x4096
 * m = 8 graph-cold 16.07 -> 15.63 µs, the decode step at m = 8 2270 ->
 * 2231. Most of what staging costs (3.2 µs there, against no staging at
 * all) is its arithmetic, which every block repeats for all of x. */
#define STAGE_TASKS_MAX 8u
#define STAGE_TASKS_TILED 4u
#define TILE_SB_BYTES (16u * Q4K_BLOCK_BYTES) /* one super-block of a tile's 16 rows, contiguous */
#define TILE_CHUNK_BYTES 512u /* a chunk's quant bytes of the 16 rows: 16 per lane */
#define TILE_HEADER_BYTES 16u /* d, dmin and the scales of one row */
#define MIN_REC_LANE 8u       /* bytes per lane of a min record: the lo and hi f16 pairs */
/* Q6_K tiles (ptxgen_q6k_tc_tiles): a super-block of 16 rows is 3360 bytes,
 * 6 quant loads of 512 (16 bytes per lane), then each row's 16 scales, then
 * the rows' d in pairs (g, g + 8) */
#define TILE6_SB_BYTES (16u * Q6K_BLOCK_BYTES)
#define TILE6_QUANT_LOADS 6u
#define TILE6_SCALES 3072u
#define TILE6_D 3328u
/* x 2^e has its largest |x| in [2^14, 2^15): e = X_EXP_BIAS - (biased exponent
 * of that |x|), kept within X_EXP_MAX of 0 so that 2^e and 2^-e are normal */
#define X_EXP_BIAS 141
#define X_EXP_MAX 126
#define LOP_AND_OR "0xEA"     /* lop3 table of (a & b) | c */
/* A lane's 16 weight bytes: read once, by this lane alone, so not kept in
 * L1, and fetched into L2 in 256-byte pieces (H100, sixteenth session:
 * 128256x4096 m = 8 112.4 -> 108.1 µs cold, m = 1 109.8 -> 108.4; the gain
 * is L1's, .L2::256B alone changed nothing; the FMA kernel, whose lanes
 * share header bytes through L1, got slower with it) */
#define WEIGHT_LOAD "ld.global.nc.L1::no_allocate.L2::256B.v4.u32"
/* Split blocks pay where they save each warp at least this many eighths
 * of a super-block row of x to stage (tc_plan_split_blocks). */
#define TC_SPLIT_MIN_SAVED8 40u

typedef struct tc_plan {
  uint32_t k, n, m, sm;
  uint32_t nsb;        /* super-blocks per row */
  uint32_t row_tiles;  /* tiles of 16 rows */
  uint32_t splits;     /* warps sharing a tile */
  uint32_t warps;      /* per block */
  uint32_t blocks_per_sm;
  uint32_t tpb;        /* tiles per block */
  uint32_t groups;     /* blocks' worth of tiles */
  uint32_t nt;         /* 8-column tiles of the batch */
  uint32_t lanes;      /* lanes holding staged x in an 8-column tile: 4*min(m, 8) */
  uint32_t kt;         /* super-blocks staged at a time */
  uint32_t ktiles;
  uint32_t rec_bytes;  /* one sub-block's one part of one column tile: lanes * 16 (both steps) */
  uint32_t min_off;    /* where a super-block's min records start in its staged x */
  uint32_t sb_bytes;   /* staged x of one super-block: B records, then min records (lanes * 8 per column tile) */
  uint32_t cols;       /* 8*nt columns of 2^-e per super-block */
  uint32_t xs_bytes, inv_bytes, red_bytes, rope_bytes, shared_bytes;
  uint32_t split_blocks; /* a block takes one split of `warps` tiles (tc_plan_split_blocks) */
  uint32_t tasks;        /* split blocks: row groups x splits, task = group * splits + split */
  uint32_t partial_bytes; /* split blocks: the module's partial sums, 16 * nt bytes per lane and task */
  uint32_t glu;          /* the gated epilogue (spec->glu): 0 none, 1 swiglu, 2 geglu */
  /* RoPE pairs: a tile of a head pairs with the one pair_tiles (head_dim/32)
   * further (0: tiles unpaired); rope_spec gives the rotation's constants */
  uint32_t pair_tiles;
  const ptxgen_spec *rope_spec;
  uint32_t nw;           /* tiles a block holds together: 1, or 2 (W's and U's with glu, a RoPE pair) */
  uint32_t units;        /* what row groups are made of: tiles, or tile pairs */
  uint32_t q6k;          /* W is Q6_K (q6k_gemv), in ptxgen_q6k_tc_tiles' layout; else Q4_K */
  uint32_t tile_sb_bytes; /* one super-block of a tile's 16 rows */
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
 * of 4*min(m, 8) lanes, 16 steps, 2 parts, 8 bytes; min records of those
 * lanes (Q4_K: Q6_K has no mins); and 2^-e of 8*nt columns. */
static uint32_t staged_per_sb(uint32_t m, uint32_t q6k) {
  const uint32_t nt = (m + 7) / 8, lanes = 4 * (m < 8 ? m : 8);
  return STEPS_PER_SB * nt * PARTS * lanes * 8 + (q6k ? 0 : nt * lanes * MIN_REC_LANE) + 8 * nt * 4;
}

/* A slot of 16 bytes per lane and column tile for every warp, where a
 * tile's sums meet: several splits, or W's and U's. */
static uint32_t reduce_bytes(uint32_t m, uint32_t splits, uint32_t warps, uint32_t nw) {
  return splits * nw > 1 ? warps * 32 * 16 * ((m + 7) / 8) : 0;
}

/* The most warps a tile may be split over on a target: a staged tile of k
 * must give each split a super-block even at the largest batch, and splits
 * must not depend on m (it sets the order of the sums). */
static uint32_t max_splits(uint32_t sm, uint32_t q6k) {
  uint32_t s = TC_WARPS;
  while (s > 1 && s * staged_per_sb(PTXGEN_GEMV_MAX_M, q6k) + reduce_bytes(PTXGEN_GEMV_MAX_M, s, TC_WARPS, 1) >
                      shared_budget(sm))
    s /= 2;
  return s;
}

/* x staged kt super-blocks at a time: its tiles of k and the shared
 * memory (red_bytes set). */
static void tc_plan_staging(tc_plan *p, uint32_t kt) {
  p->kt = kt;
  p->ktiles = (p->nsb + p->kt - 1) / p->kt;
  p->xs_bytes = p->kt * p->sb_bytes;
  p->inv_bytes = p->kt * p->cols * 4;
  p->shared_bytes = p->xs_bytes + p->inv_bytes + p->red_bytes + p->rope_bytes;
}

/* Blocks per SM: two where one column tile's registers and two blocks'
 * shared memory fit, else one. */
static uint32_t tc_blocks_per_sm(const tc_plan *p) {
  return p->nt == 1 && 2 * (p->shared_bytes + 1024) <= sm_shared(p->sm) ? 2 : 1;
}

/* Entries of the RoPE table (emit_rope_table; tpb set): 16 rotation
 * pairs of each of the block's tile pairs at each column. */
static uint32_t rope_entries(const tc_plan *p) {
  return p->pair_tiles ? p->tpb * 16 * p->m : 0;
}

/* The block's share of the plan: tiles, reduction, x's tiles of k. */
static void tc_plan_blocks(tc_plan *p, uint32_t warps) {
  p->warps = warps;
  p->tpb = warps / (p->splits * p->nw);
  p->groups = (p->units + p->tpb - 1) / p->tpb;
  p->red_bytes = reduce_bytes(p->m, p->splits, warps, p->nw);
  /* RoPE pairs: (cos, sin) of the block's pairs' 16 rotation pairs i at
   * each column's position (emit_rope_table) */
  p->rope_bytes = rope_entries(p) * 8;
  const uint32_t fit = /* >= splits (max_splits; the RoPE table takes at most 8 KB, at m <= 8) */
      (shared_budget(p->sm) - p->red_bytes - p->rope_bytes) / staged_per_sb(p->m, p->q6k);
  /* a tile gives every split the same number of super-blocks; which tile
   * a super-block is staged in does not change the order of the sums */
  tc_plan_staging(p, fit >= p->nsb ? p->nsb : fit / p->splits * p->splits);
}

/* The split-block plan of p's splits with blocks of `warps` tiles. */
static void tc_plan_split(tc_plan *q, uint32_t warps) {
  q->split_blocks = 1;
  q->warps = q->tpb = warps;
  q->groups = (q->row_tiles + q->tpb - 1) / q->tpb;
  q->tasks = q->groups * q->splits;
  q->red_bytes = 0;
  tc_plan_staging(q, (q->nsb + q->splits - 1) / q->splits); /* one tile of k */
  q->partial_bytes = q->tasks * q->warps * 32 * 16 * q->nt;
}

/* Split blocks: where a tile's super-blocks are split over several warps,
 * a block of the plan above holds every split of its tiles, so it stages
 * all of x for the few tiles it has: at 4096x14336, m = 8, 128 blocks
 * staged 458 KB of x each to multiply 2 tiles. Here a block takes instead
 * one split of TC_WARPS tiles (task = group * splits + split) and stages
 * only that split's super-blocks (j = split mod splits): 8 splits x 16
 * fewer. Its sums go to the module's partials; the group's last block to
 * finish (a counter) adds the splits' sums in split order, as a block of
 * the plan above adds them, so the bits are the same. Taken where the
 * split's x fits and as many blocks per SM as before. */
static void tc_plan_split_blocks(tc_plan *p) {
  /* the gated and RoPE epilogues need both tiles' every split in the block */
  if (p->splits == 1 || p->nw > 1) return;
  tc_plan q = *p;
  tc_plan_split(&q, TC_WARPS);
  /* What a warp stages, in eighths of a super-block row: every split's x
   * for the block's few tiles, or its split's for 8 tiles. Below the
   * threshold the sums' trip through L2 (~2 µs at the end of the kernel)
   * costs more than the staging saved (H100, sixteenth session: 4096x4096
   * m = 1 9.8 -> 11.0 µs, m = 4 11.7 -> 11.0; 4096x14336 m = 1 20.3 ->
   * 19.4, m = 8 31.3 -> 21.6). */
  const uint32_t before8 = p->nsb * p->m * 8 / p->warps, after8 = q.kt * p->m * 8 / q.warps;
  if (before8 < after8 + TC_SPLIT_MIN_SAVED8) return;
  q.blocks_per_sm = tc_blocks_per_sm(&q);
  if (q.shared_bytes > shared_budget(q.sm) || q.blocks_per_sm * q.warps < p->blocks_per_sm * p->warps) return;
  *p = q;
}

/* The plan of one weight (n2 and n3 are ignored; rope set: the weight's
 * tiles in RoPE pairs). */
static tc_plan tc_plan_for(const ptxgen_spec *s) {
  tc_plan p = {.k = s->k, .n = s->n, .m = s->m, .sm = s->sm, .glu = s->glu};
  p.q6k = s->kind == PTXGEN_KIND_Q6K_GEMV;
  p.tile_sb_bytes = p.q6k ? TILE6_SB_BYTES : TILE_SB_BYTES;
  p.nsb = s->k / 256;
  p.row_tiles = (s->n + 15) / 16;
  p.pair_tiles = s->rope ? s->head_dim / 32 : 0;
  p.rope_spec = s->rope ? s : NULL;
  p.nw = s->glu || s->rope ? 2 : 1;
  p.units = p.pair_tiles ? p.row_tiles / 2 : p.row_tiles;
  /* splits from n and k only (they set the order of the sums) */
  p.splits = 1;
  const uint32_t most = max_splits(s->sm, p.q6k);
  while (p.splits < most && p.splits * 2 <= p.nsb &&
         (p.row_tiles * p.splits * 2 + TC_WARPS - 1) / TC_WARPS <= TC_WAVE_BLOCKS)
    p.splits *= 2;
  p.nt = (s->m + 7) / 8;
  p.lanes = 4 * (s->m < 8 ? s->m : 8);
  p.rec_bytes = p.lanes * 16;
  p.min_off = 8 * p.nt * PARTS * p.rec_bytes;
  p.sb_bytes = p.min_off + (p.q6k ? 0 : p.nt * p.lanes * MIN_REC_LANE);
  p.cols = 8 * p.nt;
  /* a block holds every split of its tiles, of W and U with glu, of both
   * tiles of a RoPE pair: 16 warps where those are 8 splits each, one such
   * block per SM */
  const bool wide = p.splits * p.nw > TC_WARPS;
  tc_plan_blocks(&p, wide ? 2 * TC_WARPS : TC_WARPS);
  /* Two blocks per SM where their staged x fits: 16 warps keep more loads
   * in flight than 8. ptxas then holds 128 registers, which one column
   * tile takes without spilling. Where only one fits (x of many batch rows
   * or long rows), that block takes 16 warps instead, at the same 128
   * registers, sharing its staged x; two column tiles (m > 8) need more
   * registers and keep one block of 8 warps. */
  p.blocks_per_sm = wide ? 1 : tc_blocks_per_sm(&p);
  if (p.blocks_per_sm == 1 && p.nt == 1 && !wide) tc_plan_blocks(&p, 2 * TC_WARPS);
  tc_plan_split_blocks(&p);
  return p;
}

/* Bytes of n rows in tiles of 16 (the last padded). */
static uint64_t tile_bytes(uint32_t k, uint32_t n, uint32_t block_bytes) {
  return ((uint64_t)n + 15) / 16 * 16 * (k / 256) * block_bytes;
}

/* Calls place(in, out, r) for super-block j of row r (0..15) of every tile:
 * in its GGUF bytes (a zero block past n), out that tile's super-block j. */
static void each_tile_row(const void *src, uint32_t k, uint32_t n, void *dst, uint32_t block_bytes,
                          void (*place)(const unsigned char *in, unsigned char *out, uint32_t r)) {
  static const unsigned char zero[Q6K_BLOCK_BYTES]; /* the larger block */
  const uint32_t nsb = k / 256, tiles = (n + 15) / 16;
  for (uint32_t tile = 0; tile < tiles; tile++)
    for (uint32_t j = 0; j < nsb; j++) {
      unsigned char *out = (unsigned char *)dst + ((size_t)tile * nsb + j) * 16 * block_bytes;
      for (uint32_t r = 0; r < 16; r++) {
        const uint32_t row = 16 * tile + r;
        place(row < n ? (const unsigned char *)src + ((size_t)row * nsb + j) * block_bytes : zero, out, r);
      }
    }
}

uint64_t ptxgen_q4k_tc_bytes(uint32_t k, uint32_t n) { return tile_bytes(k, n, Q4K_BLOCK_BYTES); }

/* Within a tile's super-block: chunk c's quant bytes first, 512 bytes
 * each, lane 4g + t's 16 at 16 * lane (its bytes 8t.. of row g, then of row
 * g + 8: the words its A fragments take); then the 16 rows' headers. */
static void place_q4k(const unsigned char *in, unsigned char *out, uint32_t r) {
  memcpy(out + 4 * TILE_CHUNK_BYTES + r * TILE_HEADER_BYTES, in, TILE_HEADER_BYTES);
  for (uint32_t c = 0; c < 4; c++)
    for (uint32_t t = 0; t < 4; t++)
      memcpy(out + c * TILE_CHUNK_BYTES + 16 * (4 * (r % 8) + t) + 8 * (r / 8), in + 16 + 32 * c + 8 * t, 8);
}

void ptxgen_q4k_tc_tiles(const void *src, uint32_t k, uint32_t n, void *dst) {
  each_tile_row(src, k, n, dst, Q4K_BLOCK_BYTES, place_q4k);
}

/* The 6-bit quants 0..63 (before the -32) of one GGUF Q6_K super-block,
 * in weight order (formats.md). */
static void q6k_quants(const unsigned char *in, unsigned char q[256]) {
  for (uint32_t h = 0; h < 2; h++) {
    const unsigned char *ql = in + 64 * h, *qh = in + 128 + 32 * h;
    for (uint32_t l = 0; l < 32; l++) {
      q[128 * h + l] = (unsigned char)((ql[l] & 0xF) | ((qh[l] >> 0 & 3) << 4));
      q[128 * h + l + 32] = (unsigned char)((ql[l + 32] & 0xF) | ((qh[l] >> 2 & 3) << 4));
      q[128 * h + l + 64] = (unsigned char)((ql[l] >> 4) | ((qh[l] >> 4 & 3) << 4));
      q[128 * h + l + 96] = (unsigned char)((ql[l + 32] >> 4) | ((qh[l] >> 6 & 3) << 4));
    }
  }
}

/* Where sub-block u's high bits of A pair `odd` sit in a high-bit word
 * (each half holds 8 two-bit fields): fields f and f + 2 for the even and
 * odd pair, f = 0, 1, 4, 5 for u % 4 = 0..3, so that one shift of the word
 * by 2f - 4 brings the even pair's to bits 4-5 and the odd pair's to 8-9
 * of each half (emit_a6). */
static uint32_t q6k_high_field(uint32_t u, uint32_t odd) {
  static const uint32_t f[4] = {0, 1, 4, 5};
  return f[u % 4] + 2 * odd;
}

static void put_le32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> 8 * i);
}

uint64_t ptxgen_q6k_tc_bytes(uint32_t k, uint32_t n) { return tile_bytes(k, n, Q6K_BLOCK_BYTES); }

/* Lane 4g + t takes, of rows g and g + 8 and sub-block u, the quants of
 * weights 16u + 4t + i (i = 0..3): the A pairs (i = 0, 2) (even) and (1,
 * 3) (odd) of k-slots 2t, 2t + 1 and 2t + 8, 2t + 9. Per row, nibble word
 * w (sub-blocks 2w, 2w + 1) holds in each half h (pair element h) the
 * even and odd low nibbles of 2w at bits 0 and 4, of 2w + 1 at 8 and 12;
 * high-bit word v (sub-blocks 4v..4v + 3) the high bits at
 * q6k_high_field. Loads 3H, 3H + 1 are rows g's and g + 8's nibble words
 * 4H..4H + 3, load 3H + 2 their high-bit words 2H, 2H + 1 (H: the half of
 * the super-block). */
static void place_q6k(const unsigned char *in, unsigned char *out, uint32_t r) {
  const uint32_t g = r % 8, rr = r / 8;
  unsigned char q[256];
  q6k_quants(in, q);
  memcpy(out + TILE6_SCALES + 16 * r, in + 192, 16);
  memcpy(out + TILE6_D + 4 * g + 2 * rr, in + 208, 2);
  for (uint32_t t = 0; t < 4; t++) {
    uint32_t nib[8] = {0}, high[4] = {0};
    for (uint32_t u = 0; u < 16; u++)
      for (uint32_t i = 0; i < 4; i++) {
        const uint32_t v = q[16 * u + 4 * t + i], half = i / 2, odd = i % 2;
        nib[u / 2] |= (v & 0xFu) << (16 * half + 8 * (u % 2) + 4 * odd);
        high[u / 4] |= (v >> 4) << (16 * half + 2 * q6k_high_field(u, odd));
      }
    unsigned char *lane = out + 16 * (4 * g + t);
    for (uint32_t H = 0; H < 2; H++)
      for (uint32_t w = 0; w < 4; w++) {
        put_le32(lane + TILE_CHUNK_BYTES * (3 * H + rr) + 4 * w, nib[4 * H + w]);
        if (w < 2) put_le32(lane + TILE_CHUNK_BYTES * (3 * H + 2) + 8 * rr + 4 * w, high[2 * H + w]);
      }
  }
}

void ptxgen_q6k_tc_tiles(const void *src, uint32_t k, uint32_t n, void *dst) {
  each_tile_row(src, k, n, dst, Q6K_BLOCK_BYTES, place_q6k);
}

/* Registers live for the whole kernel. */
typedef struct tc_lane {
  gemv_lane q;           /* tid, lane, warp, c = t (lane % 4), the Q4_K scale constants */
  ptx_reg g, t;          /* lane = 4g + t */
  ptx_reg split, tile;   /* the warp's split and tile within the block */
  ptx_reg weight;        /* glu: 0 for W's warps, 1 for U's (L->W is then U); RoPE: the pair's first or second tile */
  ptx_reg xs, xmin, inv, red; /* shared addresses: staged x (+ lane*16), its min records (+ lane*8), 2^-e (+ 8t),
                                 the reduction */
  ptx_reg rope_tab;      /* RoPE pairs: the shared (cos, sin) table */
  ptx_reg rope_pos[2];   /* RoPE pairs: the positions of this thread's table entries */
  ptx_reg W, x, y;
  ptx_reg bvalid[2];     /* this lane holds a column < m in column tile 0, 1 */
  ptx_reg B[2][2][4];    /* B fragments of one part of a chunk: [half][column tile] {step 0: b01, b23, step 1:
                            b01, b23}; zero in lanes of columns past m, which never load them */
  ptx_reg Bmin[2][PARTS]; /* [column tile][part]: the sums of x of sub-blocks 2t, 2t+1 (zero past m) */
  ptx_reg owner[4];      /* lane 4g + c: who decodes chunk c's scales */
  ptx_reg zero;          /* 0.0f */
  ptx_reg f16_1024, f16_neg1024, f16_sixteenth; /* f16x2 pairs 1024, -1024, 1/16 */
  ptx_reg f16_exp_bytes; /* 0x64646464: bytes that put a byte under the f16 exponent of 1024 */
  ptx_reg sel_pair;      /* prmt selector: the lane's scale bytes 2(t%2), 2(t%2)+1 under 0x64 */
  ptx_reg d_off;         /* Q6_K: from row g's scales to its d (u64) */
  ptx_reg f16_1056, f16_neg96; /* Q6_K: f16x2 pairs 1056, -96 */
} tc_lane;

/* One super-block's raw loads for the lane's two rows (g, g+8). Q4_K:
 * the header words h0..h3, then the lane's two quant words of chunks 0..3.
 * Q6_K: the lane's 6 quant loads of 4 words (ptxgen_q6k_tc_tiles), the
 * rows' 16 scales, and their d as an f16 pair. */
typedef struct tc_raw {
  ptx_reg h[2][4];
  ptx_reg q[2][4][2];
  ptx_reg q6[TILE6_QUANT_LOADS][4];
  ptx_reg sc[2][4];
  ptx_reg d;
} tc_raw;

static void new_raw(ptx_builder *b, const tc_plan *p, tc_raw *r) {
  memset(r, 0, sizeof *r);
  if (p->q6k) {
    for (uint32_t l = 0; l < TILE6_QUANT_LOADS; l++)
      for (int i = 0; i < 4; i++) r->q6[l][i] = ptx_new(b, PTX_B32);
    for (int row = 0; row < 2; row++)
      for (int i = 0; i < 4; i++) r->sc[row][i] = ptx_new(b, PTX_B32);
    r->d = ptx_new(b, PTX_B32);
    return;
  }
  for (int row = 0; row < 2; row++) {
    for (int i = 0; i < 4; i++) r->h[row][i] = ptx_new(b, PTX_B32);
    for (int c = 0; c < 4; c++)
      for (int s = 0; s < 2; s++) r->q[row][c][s] = ptx_new(b, PTX_B32);
  }
}

/* Addresses of super-block j (a register) from the lane's pointers into
 * its tile's super-block 0 (emit_row_pointers): its quant words (chunk c,
 * or Q6_K load c, 512c further) and its rows' headers or scales (row g + 8
 * 128 further); Q6_K: the rows' d. */
typedef struct tc_addr {
  ptx_reg q, h, d;
} tc_addr;

static tc_addr emit_addresses(ptx_builder *b, const tc_plan *p, const tc_lane *L, const ptx_reg rowp[2], ptx_reg j) {
  tc_addr a = {ptx_new(b, PTX_B64), ptx_new(b, PTX_B64), {{0}}};
  ptx_reg off = ptx_new(b, PTX_B64);
  ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, j.s, p->tile_sb_bytes);
  ptx_op3(b, "add.u64", a.q, rowp[0], off);
  ptx_op3(b, "add.u64", a.h, rowp[1], off);
  if (p->q6k) {
    a.d = ptx_new(b, PTX_B64);
    ptx_op3(b, "add.u64", a.d, a.h, L->d_off);
  }
  return a;
}

/* One 16-byte weight load of a lane into d0..d3, at addr + off; guard: a
 * predicate's name or NULL. */
static void emit_weight_v4(ptx_builder *b, const char *guard, ptx_reg d0, ptx_reg d1, ptx_reg d2, ptx_reg d3,
                           ptx_reg addr, uint32_t off) {
  ptx_ins(b, "%s%s%s" WEIGHT_LOAD " {%s, %s, %s, %s}, [%s+%u];", guard ? "@" : "", guard ? guard : "",
          guard ? " " : "", d0.s, d1.s, d2.s, d3.s, addr.s, off);
}

static void emit_load_header(ptx_builder *b, const tc_addr *a, const char *guard, const tc_raw *raw) {
  for (uint32_t r = 0; r < 2; r++)
    emit_weight_v4(b, guard, raw->h[r][0], raw->h[r][1], raw->h[r][2], raw->h[r][3], a->h, 8 * TILE_HEADER_BYTES * r);
}

/* Chunk c of both rows: one 16-byte load (tile layout). */
static void emit_load_chunk(ptx_builder *b, const tc_addr *a, uint32_t c, const char *guard, const tc_raw *raw) {
  emit_weight_v4(b, guard, raw->q[0][c][0], raw->q[0][c][1], raw->q[1][c][0], raw->q[1][c][1], a->q,
                 TILE_CHUNK_BYTES * c);
}

/* Q6_K: the rows' scales (row g + 8's 128 bytes further) and d. */
static void emit_load_scales6(ptx_builder *b, const tc_addr *a, const char *guard, const tc_raw *raw) {
  for (uint32_t r = 0; r < 2; r++)
    emit_weight_v4(b, guard, raw->sc[r][0], raw->sc[r][1], raw->sc[r][2], raw->sc[r][3], a->h, 8 * 16 * r);
  ptx_ins(b, "%s%s%sld.global.nc.L1::no_allocate.b32 %s, [%s];", guard ? "@" : "", guard ? guard : "",
          guard ? " " : "", raw->d.s, a->d.s);
}

/* Q6_K: quant load l (of TILE6_QUANT_LOADS). */
static void emit_load_quant6(ptx_builder *b, const tc_addr *a, uint32_t l, const char *guard, const tc_raw *raw) {
  emit_weight_v4(b, guard, raw->q6[l][0], raw->q6[l][1], raw->q6[l][2], raw->q6[l][3], a->q, TILE_CHUNK_BYTES * l);
}

/* The whole super-block j into raw. */
static void emit_load(ptx_builder *b, const tc_plan *p, const tc_lane *L, const ptx_reg rowp[2], ptx_reg j,
                      const char *guard, const tc_raw *raw) {
  const tc_addr a = emit_addresses(b, p, L, rowp, j);
  if (p->q6k) {
    emit_load_scales6(b, &a, guard, raw);
    for (uint32_t l = 0; l < TILE6_QUANT_LOADS; l++) emit_load_quant6(b, &a, l, guard, raw);
    return;
  }
  emit_load_header(b, &a, guard, raw);
  for (uint32_t c = 0; c < 4; c++) emit_load_chunk(b, &a, c, guard, raw);
}

/* The lane's pointers into super-block 0 of its warp's tile in row group
 * `group` (tile layout: ptxgen_q4k_tc_tiles): rowp[0] at its quant words,
 * rowp[1] at row g's header; and row0 = its row g. Tiles past the last (in
 * the last group) point at the last, so that loads through them stay in
 * bounds; its rows past n are the layout's zero rows. */
static void emit_row_pointers(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg group, ptx_reg rowp[2],
                              const ptx_reg *row0) {
  ptx_reg tile = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), lane = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", tile.s, group.s, p->tpb, L->tile.s);
  if (p->pair_tiles) { /* pair u of the weight: tile (u / pt) * 2pt + u % pt, and pt further for its second */
    ptx_reg head = ptx_new(b, PTX_B32), within = ptx_new(b, PTX_B32);
    ptx_udiv_const(b, head, tile, p->pair_tiles);
    ptx_urem_const(b, within, tile, p->pair_tiles);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", tile.s, head.s, 2 * p->pair_tiles, within.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", tile.s, L->weight.s, p->pair_tiles, tile.s);
  }
  ptx_ins(b, "shl.b32 %s, %s, 4;", row0->s, tile.s);
  ptx_ins(b, "add.u32 %s, %s, %s;", row0->s, row0->s, L->g.s); /* row g of the tile */
  ptx_ins(b, "min.u32 %s, %s, %u;", tile.s, tile.s, p->row_tiles - 1);
  ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, tile.s, p->nsb * p->tile_sb_bytes);
  ptx_op3(b, "add.u64", rowp[1], L->W, off);
  ptx_ins(b, "shl.b32 %s, %s, 4;", lane.s, L->q.lane.s);
  ptx_reg lane64 = gemv_u64_of(b, lane);
  ptx_op3(b, "add.u64", rowp[0], rowp[1], lane64);
  /* row g's header (Q4_K) or scales (Q6_K): 16 bytes per row after the quants */
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %u;", lane.s, L->g.s, p->q6k ? TILE6_SCALES : 4 * TILE_CHUNK_BYTES);
  lane64 = gemv_u64_of(b, lane);
  ptx_op3(b, "add.u64", rowp[1], rowp[1], lane64);
}

/* Stages super-blocks t0 + stride i, i in [0, len), of x (t0, len
 * registers) into shared memory as B fragments in slots i, with each
 * one's min record and 2^-e.
 *
 * A warp stages whole super-blocks of one column (task T = jl*m + col, so
 * that the divisor is a constant; tasks warp, warp + warps, ...), so that
 * it finds their largest |x| by a butterfly. Lane l takes float4s e = l and l + 32: weights 4e.. of the
 * super-block, of chunk e/16, sub-block e/8, lane t = (e/2)%4 and step
 * e%2. So it goes to the record of sub-block e/8 (of the tile) and column
 * tile col/8, lane 4*(col%8) + t, bytes 8*(e%2) of the lane's 16, as the B
 * pairs (x0, x2), (x1, x3) of each part. The 8 float4s of a sub-block are 8
 * consecutive lanes, whose sums a butterfly adds in one fixed order. */
static void emit_stage(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg t0, uint32_t stride,
                       ptx_reg len) {
  ptx_comment(b, "stage x: per super-block and column, scale by 2^e, cut into f16 parts lo, hi as B fragments; "
                 "the sub-blocks' sums likewise, at 2^(e-6)");
  ptx_reg total = ptx_new(b, PTX_B32), task = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", total.s, len.s, p->m);
  ptx_ins(b, "mov.u32 %s, %s;", task.s, L->q.warp.s);
  /* per lane: its record bytes (t, step) and, for float4 e = lane, sub-block lane/8. Q4_K: t = (e/2)%4,
   * step e%2 (a step is 16 weights of a 32-weight sub-block); Q6_K: t = e%4, step (e/4)%2 (a step is a
   * 16-weight sub-block, its own scale's) */
  ptx_reg lane_rec = ptx_new(b, PTX_B32), lsub = ptx_new(b, PTX_B32), tmp = ptx_new(b, PTX_B32);
  if (p->q6k) {
    ptx_ins(b, "and.b32 %s, %s, 3;", tmp.s, L->q.lane.s);
  } else {
    ptx_ins(b, "shr.u32 %s, %s, 1;", tmp.s, L->q.lane.s);
    ptx_ins(b, "and.b32 %s, %s, 3;", tmp.s, tmp.s);
  }
  ptx_ins(b, "shl.b32 %s, %s, 4;", lane_rec.s, tmp.s);
  if (p->q6k) {
    ptx_ins(b, "bfe.u32 %s, %s, 2, 1;", tmp.s, L->q.lane.s);
  } else {
    ptx_ins(b, "and.b32 %s, %s, 1;", tmp.s, L->q.lane.s);
  }
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", lane_rec.s, tmp.s, lane_rec.s);
  ptx_ins(b, "shr.u32 %s, %s, 3;", lsub.s, L->q.lane.s);
  ptx_reg lsub_rec = ptx_new(b, PTX_B32), lsub_min = ptx_new(b, PTX_B32), lead = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", lsub_rec.s, lsub.s, p->nt * PARTS * p->rec_bytes);
  ptx_ins(b, "add.u32 %s, %s, %s;", lsub_rec.s, lsub_rec.s, lane_rec.s);
  if (!p->q6k) { /* the min record of sub-block j is at lane 4*(col%8) + j/2, half j%2 (Q6_K: no mins) */
    ptx_ins(b, "shr.u32 %s, %s, 1;", tmp.s, lsub.s);
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", lsub_min.s, tmp.s, MIN_REC_LANE);
    ptx_ins(b, "and.b32 %s, %s, 1;", tmp.s, lsub.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 2, %s;", lsub_min.s, tmp.s, lsub_min.s);
    ptx_ins(b, "and.b32 %s, %s, 7;", tmp.s, L->q.lane.s);
    ptx_ins(b, "setp.eq.u32 %s, %s, 0;", lead.s, tmp.s);
  }
  /* a round: as many tasks as the warp has (the block stages kt super-blocks at most), up to the most */
  const uint32_t per_warp = (p->kt * p->m + p->warps - 1) / p->warps;
  const uint32_t most = p->ktiles == 1 && !p->split_blocks ? STAGE_TASKS_MAX : STAGE_TASKS_TILED;
  const uint32_t tasks = per_warp < most ? per_warp : most;
  char loop[32], done[32];
  ptx_label_new(b, "stage", loop);
  ptx_label_new(b, "stage_done", done);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %s;", pr.s, task.s, total.s);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, done);
  ptx_reg v[STAGE_TASKS_MAX][2][4], in[STAGE_TASKS_MAX], col[STAGE_TASKS_MAX], jl[STAGE_TASKS_MAX];
  for (uint32_t u = 0; u < tasks; u++) {
    ptx_reg tk = ptx_new(b, PTX_B32);
    in[u] = ptx_new(b, PTX_PRED);
    col[u] = ptx_new(b, PTX_B32);
    jl[u] = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", tk.s, task.s, u * p->warps);
    ptx_ins(b, "setp.lt.u32 %s, %s, %s;", in[u].s, tk.s, total.s);
    ptx_udiv_const(b, jl[u], tk, p->m);
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", col[u].s, jl[u].s, p->m);
    ptx_ins(b, "sub.u32 %s, %s, %s;", col[u].s, tk.s, col[u].s);
    ptx_reg fi = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), src = ptx_new(b, PTX_B64);
    if (stride == 1)
      ptx_ins(b, "add.u32 %s, %s, %s;", fi.s, t0.s, jl[u].s);
    else
      ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", fi.s, jl[u].s, stride, t0.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", fi.s, col[u].s, p->k / 256, fi.s); /* super-block in x */
    ptx_ins(b, "shl.b32 %s, %s, 6;", fi.s, fi.s);
    ptx_ins(b, "add.u32 %s, %s, %s;", fi.s, fi.s, L->q.lane.s); /* float4 index in x */
    ptx_ins(b, "mul.wide.u32 %s, %s, 16;", off.s, fi.s);
    ptx_op3(b, "add.u64", src, L->x, off);
    for (int f = 0; f < 2; f++) {
      for (int i = 0; i < 4; i++) {
        v[u][f][i] = ptx_new(b, PTX_F32);
        ptx_op1i(b, "mov.b32", v[u][f][i], "0f00000000");
      }
      ptx_ins(b, "@%s ld.global.v4.f32 {%s, %s, %s, %s}, [%s+%d];", in[u].s, v[u][f][0].s, v[u][f][1].s,
              v[u][f][2].s, v[u][f][3].s, src.s, 512 * f);
    }
  }
  for (uint32_t u = 0; u < tasks; u++) {
    ptx_comment(b, "2^e from the super-block's largest |x| (as bits: the float order)");
    ptx_reg mx = ptx_new(b, PTX_B32);
    for (int f = 0; f < 2; f++)
      for (int i = 0; i < 4; i++) {
        ptx_reg bits = ptx_new(b, PTX_B32);
        ptx_ins(b, "and.b32 %s, %s, 0x7FFFFFFF;", bits.s, v[u][f][i].s);
        if (f == 0 && i == 0)
          ptx_ins(b, "mov.b32 %s, %s;", mx.s, bits.s);
        else
          ptx_op3(b, "max.u32", mx, mx, bits);
      }
    /* one warp-wide reduction (sm_80+) instead of a butterfly: the same
     * maximum, in one instruction's latency rather than five shuffles' */
    ptx_ins(b, "redux.sync.max.u32 %s, %s, 0xffffffff;", mx.s, mx.s);
    ptx_reg e = ptx_new(b, PTX_B32), sbits = ptx_new(b, PTX_B32), ibits = ptx_new(b, PTX_B32);
    ptx_reg scale = ptx_new(b, PTX_F32), inv = ptx_new(b, PTX_F32);
    ptx_ins(b, "shr.u32 %s, %s, 23;", e.s, mx.s);
    ptx_ins(b, "sub.s32 %s, %d, %s;", e.s, X_EXP_BIAS, e.s);
    ptx_ins(b, "max.s32 %s, %s, %d;", e.s, e.s, -X_EXP_MAX);
    ptx_ins(b, "min.s32 %s, %s, %d;", e.s, e.s, X_EXP_MAX);
    ptx_ins(b, "add.s32 %s, %s, 127;", sbits.s, e.s);
    ptx_ins(b, "shl.b32 %s, %s, 23;", sbits.s, sbits.s);
    ptx_ins(b, "sub.s32 %s, 127, %s;", ibits.s, e.s);
    ptx_ins(b, "shl.b32 %s, %s, 23;", ibits.s, ibits.s);
    ptx_op2(b, "mov.b32", scale, sbits);
    ptx_op2(b, "mov.b32", inv, ibits);
    /* where this task's records go: super-block jl, column tile col/8, lane 4*(col%8) */
    ptx_reg base = ptx_new(b, PTX_B32), c8 = ptx_new(b, PTX_B32), ct = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", base.s, jl[u].s, p->sb_bytes, L->q.xs_base.s);
    ptx_ins(b, "and.b32 %s, %s, 7;", c8.s, col[u].s);
    ptx_ins(b, "shr.u32 %s, %s, 3;", ct.s, col[u].s);
    ptx_reg rec = ptx_new(b, PTX_B32), mrec = ptx_new(b, PTX_B32), first = ptx_new(b, PTX_PRED);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", rec.s, ct.s, PARTS * p->rec_bytes, base.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 64, %s;", rec.s, c8.s, rec.s);
    ptx_ins(b, "add.u32 %s, %s, %s;", rec.s, rec.s, lsub_rec.s);
    if (!p->q6k) {
      ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", mrec.s, ct.s, p->lanes * MIN_REC_LANE, base.s);
      ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", mrec.s, c8.s, 4 * MIN_REC_LANE, mrec.s);
      ptx_ins(b, "add.u32 %s, %s, %s;", mrec.s, mrec.s, lsub_min.s);
    }
    ptx_ins(b, "setp.eq.and.u32 %s, %s, 0, %s;", first.s, L->q.lane.s, in[u].s);
    ptx_reg ia = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", ia.s, jl[u].s, p->cols, col[u].s);
    ptx_ins(b, "shl.b32 %s, %s, 2;", ia.s, ia.s);
    ptx_ins(b, "add.u32 %s, %s, %u;", ia.s, ia.s, p->xs_bytes);
    ptx_ins(b, "add.u32 %s, %s, %s;", ia.s, ia.s, L->q.xs_base.s);
    ptx_ins(b, "@%s st.shared.f32 [%s], %s;", first.s, ia.s, inv.s);
    ptx_reg write = ptx_new(b, PTX_PRED);
    if (!p->q6k) ptx_ins(b, "and.pred %s, %s, %s;", write.s, lead.s, in[u].s);
    for (int f = 0; f < 2; f++) {
      ptx_comment(b, "float4 lane + %d: parts hi = f16(x 2^e), lo = f16(x 2^e - hi)", 32 * f);
      ptx_reg xs[4], hi01 = ptx_new(b, PTX_B32), hi23 = ptx_new(b, PTX_B32);
      for (int i = 0; i < 4; i++) {
        xs[i] = ptx_new(b, PTX_F32);
        ptx_op3(b, "mul.rn.f32", xs[i], v[u][f][i], scale);
      }
      ptx_op3(b, "cvt.rn.f16x2.f32", hi01, xs[2], xs[0]); /* (x0, x2): x0 in the low half */
      ptx_op3(b, "cvt.rn.f16x2.f32", hi23, xs[3], xs[1]);
      ptx_reg h16[4], lo[4];
      for (int i = 0; i < 4; i++) h16[i] = ptx_new(b, PTX_B16);
      ptx_ins(b, "mov.b32 {%s, %s}, %s;", h16[0].s, h16[2].s, hi01.s);
      ptx_ins(b, "mov.b32 {%s, %s}, %s;", h16[1].s, h16[3].s, hi23.s);
      for (int i = 0; i < 4; i++) {
        ptx_reg hf = ptx_new(b, PTX_F32);
        lo[i] = ptx_new(b, PTX_F32);
        ptx_op2(b, "cvt.f32.f16", hf, h16[i]);
        ptx_op3(b, "sub.rn.f32", lo[i], xs[i], hf); /* exact */
      }
      ptx_reg lo01 = ptx_new(b, PTX_B32), lo23 = ptx_new(b, PTX_B32);
      ptx_op3(b, "cvt.rn.f16x2.f32", lo01, lo[2], lo[0]);
      ptx_op3(b, "cvt.rn.f16x2.f32", lo23, lo[3], lo[1]);
      const uint32_t sub_off = 4u * (uint32_t)f * p->nt * PARTS * p->rec_bytes; /* sub-block + 4 */
      ptx_ins(b, "@%s st.shared.v2.b32 [%s+%u], {%s, %s};", in[u].s, rec.s, sub_off, lo01.s, lo23.s);
      ptx_ins(b, "@%s st.shared.v2.b32 [%s+%u], {%s, %s};", in[u].s, rec.s, sub_off + p->rec_bytes, hi01.s,
              hi23.s);
      if (p->q6k) continue; /* no mins */
      ptx_comment(b, "the sub-block's sum: 4 values in order, then over its 8 lanes; at 2^(e-6), cut alike");
      ptx_reg sum = ptx_new(b, PTX_F32), o = ptx_new(b, PTX_F32);
      ptx_op3(b, "add.rn.f32", sum, v[u][f][0], v[u][f][1]);
      ptx_op3(b, "add.rn.f32", sum, sum, v[u][f][2]);
      ptx_op3(b, "add.rn.f32", sum, sum, v[u][f][3]);
      for (uint32_t d = 1; d < 8; d *= 2) {
        ptx_shfl(b, "shfl.sync.bfly.b32", o, sum, d);
        ptx_op3(b, "add.rn.f32", sum, sum, o);
      }
      ptx_op3(b, "mul.rn.f32", sum, sum, scale);
      ptx_op2i(b, "mul.rn.f32", sum, sum, "0f3C800000"); /* 2^-6: |sum| < 2^14 */
      ptx_reg sh = ptx_new(b, PTX_B16), sl = ptx_new(b, PTX_B16), shf = ptx_new(b, PTX_F32), rest = ptx_new(b, PTX_F32);
      ptx_op2(b, "cvt.rn.f16.f32", sh, sum);
      ptx_op2(b, "cvt.f32.f16", shf, sh);
      ptx_op3(b, "sub.rn.f32", rest, sum, shf);
      ptx_op2(b, "cvt.rn.f16.f32", sl, rest);
      const uint32_t min_off = p->min_off + 2u * (uint32_t)f * MIN_REC_LANE; /* sub-block + 4: lane + 2 */
      ptx_ins(b, "@%s st.shared.b16 [%s+%u], %s;", write.s, mrec.s, min_off, sl.s);
      ptx_ins(b, "@%s st.shared.b16 [%s+%u], %s;", write.s, mrec.s, min_off + 4, sh.s);
    }
  }
  ptx_ins(b, "add.u32 %s, %s, %u;", task.s, task.s, tasks * p->warps);
  ptx_ins(b, "bra.uni %s;", loop);
  ptx_label(b, done);
}

/* The A fragment register of one row's word for one step, with the
 * sub-block's scale in it: the nibbles of bytes (0, 2) of word (or of
 * word >> 8 for bytes 1, 3), low or high, under the f16 exponent of 1024
 * (1024 + q, or 1024 + 16q for high nibbles), then one fma.f16x2 with (sc,
 * -1024 sc) or (sc/16, -64 sc): sc*q, exactly. */
static ptx_reg emit_a(ptx_builder *b, const tc_lane *L, ptx_reg word, int high, ptx_reg scale, ptx_reg neg) {
  ptx_reg v = ptx_new(b, PTX_B32), a = ptx_new(b, PTX_B32);
  ptx_ins(b, "lop3.b32 %s, %s, %s, %s, " LOP_AND_OR ";", v.s, word.s, high ? "0x00F000F0" : "0x000F000F",
          L->f16_1024.s);
  ptx_op4(b, "fma.rn.f16x2", a, v, scale, neg);
  return a;
}

/* Lane t's own chunk (sub-blocks 2t, 2t+1) of one row, from its header:
 * the A scale pairs (sc, sc) and (sc'/16, sc'/16) of its low and high
 * nibbles, the mins (m, m') as the m16n8k8's A pair, f32(d) and
 * -64 f32(dmin). */
typedef struct tc_scales {
  ptx_reg low, high, mins, d, neg_dmin64;
} tc_scales;

static tc_scales emit_scales(ptx_builder *b, const tc_lane *L, const ptx_reg h[4]) {
  tc_scales s = {ptx_new(b, PTX_B32), ptx_new(b, PTX_B32), ptx_new(b, PTX_B32), ptx_new(b, PTX_F32),
                 ptx_new(b, PTX_F32)};
  ptx_reg dh = ptx_new(b, PTX_B16), mh = ptx_new(b, PTX_B16), dmin = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 {%s, %s}, %s;", dh.s, mh.s, h[0].s);
  ptx_op2(b, "cvt.f32.f16", s.d, dh);
  ptx_op2(b, "cvt.f32.f16", dmin, mh);
  ptx_op2i(b, "mul.rn.f32", s.neg_dmin64, dmin, "0fC2800000"); /* exact: -64 dmin */
  ptx_reg sc, mn;
  q4k_emit_scale_bytes(b, &L->q, h, &sc, &mn);
  /* the two 6-bit values under 0x64: f16 1024 + v, less 1024: (v, v') exactly */
  ptx_reg pair = ptx_new(b, PTX_B32), hi = ptx_new(b, PTX_B32);
  ptx_op4(b, "prmt.b32", pair, sc, L->f16_exp_bytes, L->sel_pair);
  ptx_op3(b, "sub.rn.f16x2", pair, pair, L->f16_1024);
  ptx_op3i(b, "prmt.b32", s.low, pair, pair, "0x1010");
  ptx_op3i(b, "prmt.b32", hi, pair, pair, "0x3232");
  ptx_op3(b, "mul.rn.f16x2", s.high, hi, L->f16_sixteenth);
  ptx_op4(b, "prmt.b32", s.mins, mn, L->f16_exp_bytes, L->sel_pair);
  ptx_op3(b, "sub.rn.f16x2", s.mins, s.mins, L->f16_1024);
  return s;
}

static void emit_mma16(ptx_builder *b, const ptx_reg D[4], const ptx_reg A[4], ptx_reg b0, ptx_reg b1,
                       const ptx_reg C[4]) {
  ptx_ins(b,
          "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%s, %s, %s, %s}, {%s, %s, %s, %s}, {%s, %s}, "
          "{%s, %s, %s, %s};",
          D[0].s, D[1].s, D[2].s, D[3].s, A[0].s, A[1].s, A[2].s, A[3].s, b0.s, b1.s, C[0].s, C[1].s, C[2].s,
          C[3].s);
}

/* One super-block (jl: its index within the staged tile) of the warp's
 * tile into acc[column tile][4]. */
static void emit_superblock(ptx_builder *b, const tc_plan *p, const tc_lane *L, const tc_raw *raw, ptx_reg jl,
                            const tc_addr *next, const char *more, ptx_reg acc[2][4]) {
  ptx_comment(b, "scales of chunk t (sub-blocks 2t, 2t+1) of rows g and g+8; lanes share them below");
  tc_scales sc[2];
  for (int r = 0; r < 2; r++) sc[r] = emit_scales(b, L, raw->h[r]);
  ptx_comment(b, "each part of raw is loaded again, for the next super-block, once it is used");
  emit_load_header(b, next, more, raw);
  ptx_reg xs_sb = ptx_new(b, PTX_B32), xmin_sb = ptx_new(b, PTX_B32), inv_sb = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xs_sb.s, jl.s, p->sb_bytes, L->xs.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xmin_sb.s, jl.s, p->sb_bytes, L->xmin.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", inv_sb.s, jl.s, p->cols * 4, L->inv.s);
  /* four independent mma chains per column tile, [part][half], each over
   * the super-block's 8 steps of that half: their latencies overlap */
  ptx_reg C[PARTS][2][2][4];
  for (uint32_t c = 0; c < 4; c++) {
    ptx_comment(b, "chunk %u: sub-blocks %u, %u; their scales from lane 4g+%u", c, 2 * c, 2 * c + 1, c);
    ptx_reg S[2][2], N[2][2]; /* [half][row] */
    for (int r = 0; r < 2; r++)
      for (int h = 0; h < 2; h++) {
        S[h][r] = ptx_new(b, PTX_B32);
        N[h][r] = ptx_new(b, PTX_B32);
        ptx_ins(b, "shfl.sync.idx.b32 %s, %s, %s, 31, 0xffffffff;", S[h][r].s, h ? sc[r].high.s : sc[r].low.s,
                L->owner[c].s);
        ptx_op3(b, "mul.rn.f16x2", N[h][r], S[h][r], L->f16_neg1024);
      }
    ptx_reg a[2][2][4]; /* [half][step] {row g bytes 0,2; row g+8 bytes 0,2; row g bytes 1,3; row g+8 bytes 1,3} */
    for (uint32_t s = 0; s < 2; s++) {
      ptx_reg odd[2];
      for (int r = 0; r < 2; r++) {
        odd[r] = ptx_new(b, PTX_B32);
        ptx_op2i(b, "shr.u32", odd[r], raw->q[r][c][s], "8");
      }
      for (uint32_t h = 0; h < 2; h++) {
        a[h][s][0] = emit_a(b, L, raw->q[0][c][s], (int)h, S[h][0], N[h][0]);
        a[h][s][1] = emit_a(b, L, raw->q[1][c][s], (int)h, S[h][1], N[h][1]);
        a[h][s][2] = emit_a(b, L, odd[0], (int)h, S[h][0], N[h][0]);
        a[h][s][3] = emit_a(b, L, odd[1], (int)h, S[h][1], N[h][1]);
      }
    }
    emit_load_chunk(b, next, c, more, raw);
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
            const ptx_reg zero[4] = {L->zero, L->zero, L->zero, L->zero};
            emit_mma16(b, D, a[h][s], L->B[h][t][2 * s], L->B[h][t][2 * s + 1],
                       c == 0 && s == 0 ? zero : C[pt][h][t]);
            for (int i = 0; i < 4; i++) C[pt][h][t][i] = D[i];
          }
    }
  }
  ptx_comment(b, "the mins: sum_j m_j sum_j(x) by one m16n8k8 per part, lo then hi; then the super-block's sum");
  for (uint32_t t = 0; t < p->nt; t++) {
    ptx_ins(b, "@%s ld.shared.v2.b32 {%s, %s}, [%s+%u];", L->bvalid[t].s, L->Bmin[t][0].s, L->Bmin[t][1].s,
            xmin_sb.s, t * p->lanes * MIN_REC_LANE);
    ptx_reg M[4], inv[2];
    for (int i = 0; i < 4; i++) M[i] = ptx_new(b, PTX_F32);
    for (uint32_t pt = 0; pt < PARTS; pt++) {
      const ptx_reg *Cin = pt == 0 ? (const ptx_reg[4]){L->zero, L->zero, L->zero, L->zero} : M;
      ptx_ins(b,
              "mma.sync.aligned.m16n8k8.row.col.f32.f16.f16.f32 {%s, %s, %s, %s}, {%s, %s}, {%s}, "
              "{%s, %s, %s, %s};",
              M[0].s, M[1].s, M[2].s, M[3].s, sc[0].mins.s, sc[1].mins.s, L->Bmin[t][pt].s, Cin[0].s, Cin[1].s,
              Cin[2].s, Cin[3].s);
    }
    inv[0] = ptx_new(b, PTX_F32);
    inv[1] = ptx_new(b, PTX_F32);
    ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", inv[0].s, inv[1].s, inv_sb.s, 32 * t);
    for (int i = 0; i < 4; i++) {
      const int r = i / 2;
      ptx_reg lo = ptx_new(b, PTX_F32), hi = ptx_new(b, PTX_F32), sum = ptx_new(b, PTX_F32);
      ptx_op3(b, "add.rn.f32", lo, C[0][0][t][i], C[0][1][t][i]);
      ptx_op3(b, "add.rn.f32", hi, C[1][0][t][i], C[1][1][t][i]);
      ptx_op3(b, "add.rn.f32", sum, lo, hi);
      ptx_op3(b, "mul.rn.f32", sum, sum, sc[r].d);
      ptx_op4(b, "fma.rn.f32", sum, M[i], sc[r].neg_dmin64, sum);
      ptx_op4(b, "fma.rn.f32", acc[t][i], sum, inv[i % 2], acc[t][i]);
    }
  }
}

/* Q6_K: the A fragment register of one row's pair for sub-block u, q - 32
 * exactly: the pair's low nibbles (at bits 0-3, or 4-7 for the odd pair, of
 * each half of nib) and high bits (bits 4-5, or 8-9, of each half of high,
 * the word already shifted) under the f16 exponent of 1024: 1024 + q, or
 * 1024 + 16q for the odd pair; less 1056, or times 1/16 less 96. */
static ptx_reg emit_a6(ptx_builder *b, const tc_lane *L, ptx_reg nib, ptx_reg high, int odd) {
  ptx_reg v = ptx_new(b, PTX_B32), a = ptx_new(b, PTX_B32);
  ptx_ins(b, "lop3.b32 %s, %s, %s, %s, " LOP_AND_OR ";", v.s, nib.s, odd ? "0x00F000F0" : "0x000F000F",
          L->f16_1024.s);
  ptx_ins(b, "lop3.b32 %s, %s, %s, %s, " LOP_AND_OR ";", v.s, high.s, odd ? "0x03000300" : "0x00300030", v.s);
  if (odd)
    ptx_op4(b, "fma.rn.f16x2", a, v, L->f16_sixteenth, L->f16_neg96); /* (64 + q) - 96 */
  else
    ptx_op3(b, "sub.rn.f16x2", a, v, L->f16_1056); /* (1024 + q) - 1056 */
  return a;
}

/* One Q6_K super-block (jl: its index within the staged tile) of the
 * warp's tile into acc[column tile][4]. Sub-block u is step u % 2 of the
 * staged x's 32-weight record u / 2: per part one mma.m16n8k16 of A = q -
 * 32 (exact in f16) by B, lo then hi into one D; its scale, an int8 not
 * exact in f16 times q, is then applied in fp32: S = sum_u sc_u D_u, in u
 * order; the contribution is 2^-e f32(d) S. */
static void emit_superblock6(ptx_builder *b, const tc_plan *p, const tc_lane *L, const tc_raw *raw, ptx_reg jl,
                             const tc_addr *next, const char *more, ptx_reg acc[2][4]) {
  ptx_comment(b, "this super-block's scales and d; their registers then take the next one's");
  ptx_reg sc[2][4], dpair = ptx_new(b, PTX_B32);
  for (int r = 0; r < 2; r++)
    for (int i = 0; i < 4; i++) {
      sc[r][i] = ptx_new(b, PTX_B32);
      ptx_op2(b, "mov.b32", sc[r][i], raw->sc[r][i]);
    }
  ptx_op2(b, "mov.b32", dpair, raw->d);
  emit_load_scales6(b, next, more, raw);
  ptx_reg xs_sb = ptx_new(b, PTX_B32), inv_sb = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xs_sb.s, jl.s, p->sb_bytes, L->xs.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", inv_sb.s, jl.s, p->cols * 4, L->inv.s);
  static const int high_shift[4] = {-4, -2, 4, 6}; /* 2f - 4, f = q6k_high_field(u, 0) */
  ptx_reg S[2][4];
  for (uint32_t u = 0; u < 16; u++) {
    const uint32_t H = u / 8, s = u % 2;
    if (u == 8)
      for (uint32_t l = 0; l < 3; l++) emit_load_quant6(b, next, l, more, raw);
    if (s == 0) {
      ptx_comment(b, "sub-blocks %u, %u: x's record %u (B of both parts, both steps)", u, u + 1, u / 2);
      for (uint32_t pt = 0; pt < PARTS; pt++)
        for (uint32_t t = 0; t < p->nt; t++)
          ptx_ins(b, "@%s ld.shared.v4.b32 {%s, %s, %s, %s}, [%s+%u];", L->bvalid[t].s, L->B[pt][t][0].s,
                  L->B[pt][t][1].s, L->B[pt][t][2].s, L->B[pt][t][3].s, xs_sb.s,
                  (((u / 2) * p->nt + t) * PARTS + pt) * p->rec_bytes);
    }
    ptx_reg A[4], scale[2];
    for (int r = 0; r < 2; r++) {
      ptx_reg nib = raw->q6[3 * H + (uint32_t)r][(u / 2) % 4], high = ptx_new(b, PTX_B32);
      if (s) {
        ptx_reg shifted = ptx_new(b, PTX_B32);
        ptx_op2i(b, "shr.u32", shifted, nib, "8");
        nib = shifted;
      }
      const ptx_reg hw = raw->q6[3 * H + 2][2 * r + (u / 4) % 2];
      const int sh = high_shift[u % 4];
      ptx_ins(b, "%s.b32 %s, %s, %d;", sh < 0 ? "shl" : "shr", high.s, hw.s, sh < 0 ? -sh : sh);
      A[r] = emit_a6(b, L, nib, high, 0);
      A[2 + r] = emit_a6(b, L, nib, high, 1);
      ptx_reg i32 = ptx_new(b, PTX_B32);
      scale[r] = ptx_new(b, PTX_F32);
      ptx_ins(b, "bfe.s32 %s, %s, %u, 8;", i32.s, sc[r][u / 4].s, 8 * (u % 4));
      ptx_ins(b, "cvt.rn.f32.s32 %s, %s;", scale[r].s, i32.s);
    }
    for (uint32_t t = 0; t < p->nt; t++) {
      ptx_reg D[4], Dlo[4];
      for (int i = 0; i < 4; i++) D[i] = ptx_new(b, PTX_F32), Dlo[i] = ptx_new(b, PTX_F32);
      const ptx_reg zero[4] = {L->zero, L->zero, L->zero, L->zero};
      emit_mma16(b, Dlo, A, L->B[0][t][2 * s], L->B[0][t][2 * s + 1], zero);
      emit_mma16(b, D, A, L->B[1][t][2 * s], L->B[1][t][2 * s + 1], Dlo);
      for (int i = 0; i < 4; i++) {
        if (u == 0) {
          S[t][i] = ptx_new(b, PTX_F32);
          ptx_op3(b, "mul.rn.f32", S[t][i], scale[i / 2], D[i]);
        } else {
          ptx_op4(b, "fma.rn.f32", S[t][i], scale[i / 2], D[i], S[t][i]);
        }
      }
    }
  }
  for (uint32_t l = 3; l < TILE6_QUANT_LOADS; l++) emit_load_quant6(b, next, l, more, raw);
  ptx_comment(b, "the super-block's sum: 2^-e f32(d) S");
  ptx_reg dh[2], d[2];
  for (int r = 0; r < 2; r++) dh[r] = ptx_new(b, PTX_B16), d[r] = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 {%s, %s}, %s;", dh[0].s, dh[1].s, dpair.s);
  for (int r = 0; r < 2; r++) ptx_op2(b, "cvt.f32.f16", d[r], dh[r]);
  for (uint32_t t = 0; t < p->nt; t++) {
    ptx_reg inv[2] = {ptx_new(b, PTX_F32), ptx_new(b, PTX_F32)};
    ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", inv[0].s, inv[1].s, inv_sb.s, 32 * t);
    for (int i = 0; i < 4; i++) {
      ptx_reg sum = ptx_new(b, PTX_F32);
      ptx_op3(b, "mul.rn.f32", sum, S[t][i], d[i / 2]);
      ptx_op4(b, "fma.rn.f32", acc[t][i], sum, inv[i % 2], acc[t][i]);
    }
  }
}

static void emit_lane_consts(ptx_builder *b, const tc_plan *p, tc_lane *L, const char *w_param,
                             const char *y_param) {
  L->W = ptx_param_u64(b, w_param);
  L->x = ptx_param_u64(b, "x");
  L->y = ptx_param_u64(b, y_param);
  gemv_lane *q = &L->q;
  memset(q, 0, sizeof *q);
  gemv_thread_ids(b, q);
  L->t = q->c;
  L->g = ptx_new(b, PTX_B32);
  ptx_ins(b, "shr.u32 %s, %s, 2;", L->g.s, q->lane.s);
  L->split = ptx_new(b, PTX_B32);
  L->tile = ptx_new(b, PTX_B32);
  if (p->split_blocks) {
    ptx_ins(b, "mov.u32 %s, %s;", L->tile.s, q->warp.s); /* the split: the block's task's */
  } else {
    /* warp = (tile * nw + weight) * splits + split */
    ptx_urem_const(b, L->split, q->warp, p->splits);
    ptx_udiv_const(b, L->tile, q->warp, p->splits * p->nw);
  }
  ptx_reg u = {{0}}, pw = {{0}};
  if (p->glu) {
    ptx_comment(b, "warps of weight 1 multiply U instead of W");
    u = ptx_param_u64(b, "U");
    pw = ptx_new(b, PTX_PRED);
  }
  if (p->nw > 1) { /* the warp's weight (glu) or tile (RoPE pair) */
    L->weight = ptx_new(b, PTX_B32);
    ptx_udiv_const(b, L->weight, q->warp, p->splits);
    ptx_ins(b, "and.b32 %s, %s, 1;", L->weight.s, L->weight.s);
  }
  if (p->glu) {
    ptx_ins(b, "setp.ne.u32 %s, %s, 0;", pw.s, L->weight.s);
    ptx_ins(b, "selp.b64 %s, %s, %s, %s;", L->W.s, u.s, L->W.s, pw.s);
  }
  if (p->pair_tiles) {
    q->positions = ptx_param_u64(b, "positions");
    q->ff = ptx_param_u64(b, "freq_factors");
  }
  if (p->q6k) { /* row g's d: TILE6_D + 4g, its scales TILE6_SCALES + 16g */
    ptx_reg off = ptx_new(b, PTX_B32);
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", off.s, L->g.s, 16 - 4);
    ptx_ins(b, "sub.u32 %s, %u, %s;", off.s, TILE6_D - TILE6_SCALES, off.s);
    L->d_off = gemv_u64_of(b, off);
  } else {
    q4k_scale_consts(b, q);
  }
  q->xs_base = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, xs;", q->xs_base.s);
  L->xs = ptx_new(b, PTX_B32);
  L->xmin = ptx_new(b, PTX_B32);
  L->inv = ptx_new(b, PTX_B32);
  L->red = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", L->xs.s, q->lane.s, q->xs_base.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", L->xmin.s, q->lane.s, MIN_REC_LANE, q->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", L->xmin.s, L->xmin.s, p->min_off);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", L->inv.s, L->t.s, q->xs_base.s); /* columns 2t, 2t+1 */
  ptx_ins(b, "add.u32 %s, %s, %u;", L->inv.s, L->inv.s, p->xs_bytes);
  ptx_ins(b, "add.u32 %s, %s, %u;", L->red.s, q->xs_base.s, p->xs_bytes + p->inv_bytes);
  if (p->pair_tiles) {
    L->rope_tab = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", L->rope_tab.s, L->red.s, p->red_bytes);
  }
  for (uint32_t t = 0; t < p->nt; t++) {
    const uint32_t cols = p->m - 8 * t < 8 ? p->m - 8 * t : 8;
    L->bvalid[t] = ptx_new(b, PTX_PRED);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", L->bvalid[t].s, q->lane.s, 4 * cols);
    for (uint32_t h = 0; h < 2; h++)
      for (int i = 0; i < 4; i++) {
        L->B[h][t][i] = ptx_new(b, PTX_B32);
        ptx_op1i(b, "mov.b32", L->B[h][t][i], "0");
      }
    for (uint32_t pt = 0; pt < PARTS; pt++) {
      L->Bmin[t][pt] = ptx_new(b, PTX_B32);
      ptx_op1i(b, "mov.b32", L->Bmin[t][pt], "0");
    }
  }
  for (uint32_t c = 0; c < 4; c++) {
    L->owner[c] = ptx_new(b, PTX_B32);
    ptx_ins(b, "and.b32 %s, %s, 28;", L->owner[c].s, q->lane.s);
    if (c) ptx_ins(b, "add.u32 %s, %s, %u;", L->owner[c].s, L->owner[c].s, c);
  }
  L->zero = ptx_new(b, PTX_F32);
  ptx_op1i(b, "mov.b32", L->zero, "0f00000000");
  L->f16_1024 = ptx_imm_b32(b, 0x64006400u);
  L->f16_neg1024 = ptx_imm_b32(b, 0xE400E400u);
  L->f16_sixteenth = ptx_imm_b32(b, 0x2C002C00u);
  L->f16_exp_bytes = ptx_imm_b32(b, 0x64646464u);
  if (p->q6k) {
    L->f16_1056 = ptx_imm_b32(b, 0x64206420u);
    L->f16_neg96 = ptx_imm_b32(b, 0xD600D600u);
  }
  /* prmt: bytes 2(t%2), 2(t%2)+1 of the first word into bytes 0 and 2, 0x64 (byte 4) into bytes 1, 3 */
  L->sel_pair = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, 1;", L->sel_pair.s, L->t.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 0x202, 0x4140;", L->sel_pair.s, L->sel_pair.s);
}

/* The split's super-blocks in the staged tile: slots i = i0, i0 + step,
 * ... below len, super-block j = base + stride i of the row (i0, base
 * registers). raw holds the first one's loads already; while a super-block
 * is computed, each part of raw is loaded again with the next one's once
 * it is used, so that one super-block is always in flight. */
static void emit_superblock_loop(ptx_builder *b, const tc_plan *p, const tc_lane *L, const ptx_reg rowp[2],
                                 ptx_reg i0, uint32_t step, ptx_reg base, uint32_t stride, ptx_reg len,
                                 const tc_raw *raw, ptx_reg acc[2][4]) {
  char loop[32], done[32];
  ptx_label_new(b, "superblock", loop);
  ptx_label_new(b, "superblock_done", done);
  ptx_reg jl = ptx_new(b, PTX_B32), jn = ptx_new(b, PTX_B32), j = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_reg more = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mov.u32 %s, %s;", jl.s, i0.s);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %s;", pr.s, jl.s, len.s);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, done);
  ptx_ins(b, "add.u32 %s, %s, %u;", jn.s, jl.s, step);
  ptx_ins(b, "setp.lt.u32 %s, %s, %s;", more.s, jn.s, len.s);
  if (stride == 1)
    ptx_ins(b, "add.u32 %s, %s, %s;", j.s, base.s, jn.s);
  else
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", j.s, jn.s, stride, base.s);
  const tc_addr next = emit_addresses(b, p, L, rowp, j);
  if (p->q6k)
    emit_superblock6(b, p, L, raw, jl, &next, more.s, acc);
  else
    emit_superblock(b, p, L, raw, jl, &next, more.s, acc);
  ptx_ins(b, "mov.u32 %s, %s;", jl.s, jn.s);
  ptx_ins(b, "bra.uni %s;", loop);
  ptx_label(b, done);
}

/* D element i of column tile t is row g + 8*(i/2), column 8t + 2t' + i%2:
 * stored where writer holds. */
static void emit_store(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg row0, ptx_reg acc[2][4],
                       ptx_reg writer) {
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
}

/* Where the reduction slot of the lane `warps` warps on from the lane's
 * own holds column tile t's sums. */
static uint32_t slot_offset(const tc_plan *p, uint32_t warps, uint32_t t) {
  return warps * 32 * 16 * p->nt + 16 * t;
}

/* Adds to sums (which hold split 0's, that of warp0 warps on) the slots of
 * splits 1, 2, ... in order. */
static void emit_add_split_slots(ptx_builder *b, const tc_plan *p, ptx_reg slot, uint32_t warp0, ptx_reg sums[2][4]) {
  for (uint32_t s = 1; s < p->splits; s++)
    for (uint32_t t = 0; t < p->nt; t++) {
      ptx_reg o[4];
      for (int i = 0; i < 4; i++) o[i] = ptx_new(b, PTX_F32);
      ptx_ld_v4(b, "ld.shared.v4.f32", o, slot, slot_offset(p, warp0 + s, t));
      for (int i = 0; i < 4; i++) ptx_op3(b, "add.rn.f32", sums[t][i], sums[t][i], o[i]);
    }
}

/* The RoPE table: entry e = (pair slot ps of the block, column col,
 * rotation pair il of the slot's 16) at e = (ps*m + col)*16 + il holds
 * (cos, sin) * mscale of the pair's i at the column's (token's) position,
 * computed with the rope kernel's instructions. Thread tid fills the
 * entries tid, tid + threads, ...: at most 2 (8 slots x 16 x 8 columns
 * over 512 threads, 4 slots over 256). */
static uint32_t rope_table_per_thread(const tc_plan *p) {
  return (rope_entries(p) + p->warps * 32 - 1) / (p->warps * 32);
}

/* The positions of the thread's table entries, loaded once after the
 * wait for earlier grids (they may have written them): the table itself
 * is built per row group (emit_rope_table) without a global load on the
 * way. An entry past the table loads nothing. */
static void emit_rope_positions(ptx_builder *b, const tc_plan *p, tc_lane *L) {
  const uint32_t total = rope_entries(p), threads = p->warps * 32;
  ptx_comment(b, "RoPE: the positions of this thread's (cos, sin) entries (col = e / 16 mod %u)", p->m);
  for (uint32_t k = 0; k < rope_table_per_thread(p); k++) {
    ptx_reg e = ptx_new(b, PTX_B32), col = ptx_new(b, PTX_B32), in = ptx_new(b, PTX_PRED), pa = ptx_new(b, PTX_B64);
    L->rope_pos[k] = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", e.s, L->q.tid.s, k * threads);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", in.s, e.s, total);
    ptx_ins(b, "shr.u32 %s, %s, 4;", col.s, e.s);
    ptx_urem_const(b, col, col, p->m);
    ptx_ins(b, "mul.wide.u32 %s, %s, 4;", pa.s, col.s);
    ptx_op3(b, "add.u64", pa, pa, L->q.positions);
    ptx_ins(b, "mov.u32 %s, 0;", L->rope_pos[k].s);
    ptx_ins(b, "@%s ld.global.s32 %s, [%s];", in.s, L->rope_pos[k].s, pa.s);
  }
}

/* Fills the thread's entries of the RoPE table for row group `group`. The
 * table is read after the reduction's barrier and written again after the
 * barrier that frees the slots. */
static void emit_rope_table(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg group) {
  const ptxgen_spec *s = p->rope_spec;
  const uint32_t total = rope_entries(p), threads = p->warps * 32;
  ptx_comment(b, "RoPE: (cos, sin) of the group's rotation pairs at the tokens' positions, into shared memory");
  for (uint32_t k = 0; k < rope_table_per_thread(p); k++) {
    ptx_reg e = ptx_new(b, PTX_B32), out = ptx_new(b, PTX_PRED), unit = ptx_new(b, PTX_B32), i = ptx_new(b, PTX_B32);
    ptx_reg il = ptx_new(b, PTX_B32), posd = ptx_new(b, PTX_B64), addr = ptx_new(b, PTX_B32), c, sn;
    char skip[32];
    ptx_label_new(b, "rope_entry_done", skip);
    ptx_ins(b, "add.u32 %s, %s, %u;", e.s, L->q.tid.s, k * threads);
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", out.s, e.s, total);
    ptx_ins(b, "@%s bra %s;", out.s, skip);
    ptx_udiv_const(b, unit, e, 16 * p->m); /* the pair slot */
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", unit.s, group.s, p->tpb, unit.s);
    ptx_urem_const(b, i, unit, p->pair_tiles); /* the pair's tile within its half head */
    ptx_ins(b, "and.b32 %s, %s, 15;", il.s, e.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", i.s, i.s, il.s);
    ptx_ins(b, "cvt.rn.f64.s32 %s, %s;", posd.s, L->rope_pos[k].s);
    rope_emit_cos_sin(b, s, i, posd, L->q.ff, &c, &sn);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", addr.s, e.s, L->rope_tab.s);
    ptx_ins(b, "st.shared.v2.f32 [%s], {%s, %s};", addr.s, c.s, sn.s);
    ptx_label(b, skip);
  }
}

/* RoPE (neox) on a pair's sums: x0 (rows g, g+8 of the pair's first tile)
 * and x1 (the same rows pt tiles further, head_dim/2 rows on), rotated in
 * place with the table's (cos, sin) and the rope kernel's instructions. */
static void emit_rope_pairs(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg x0[2][4], ptx_reg x1[2][4]) {
  ptx_comment(b, "RoPE neox: rotate rows (i, i + %u) of each head", p->rope_spec->head_dim / 2);
  for (uint32_t ci = 0; ci < 2; ci++) {
    /* column 2t + ci of column tile 0 (m <= 8: one column tile); a column
     * past m takes the last column's entry: its sums are never stored */
    ptx_reg e = ptx_new(b, PTX_B32), addr = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, 2, %u;", e.s, L->t.s, ci);
    ptx_ins(b, "min.u32 %s, %s, %u;", e.s, e.s, p->m - 1);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", e.s, L->tile.s, p->m, e.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", e.s, e.s, L->g.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", addr.s, e.s, L->rope_tab.s);
    for (uint32_t r = 0; r < 2; r++) {
      ptx_reg c = ptx_new(b, PTX_F32), sn = ptx_new(b, PTX_F32), y0, y1;
      ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", c.s, sn.s, addr.s, 64 * r); /* row g + 8r: 8 entries on */
      rope_emit_rotate(b, x0[0][2 * r + ci], x1[0][2 * r + ci], c, sn, &y0, &y1);
      ptx_op2(b, "mov.b32", x0[0][2 * r + ci], y0);
      ptx_op2(b, "mov.b32", x1[0][2 * r + ci], y1);
    }
  }
}

/* The splits' sums added (split 0 first, then 1, ...) and stored by split
 * 0; with glu, by W's split 0, which adds U's likewise and stores act(W's)
 * * U's, the arithmetic of the swiglu/geglu kernels; with RoPE pairs, by
 * the first tile's split 0, which adds the second tile's likewise, rotates
 * the pairs and stores both tiles. */
static void emit_reduce_store(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg row0, ptx_reg acc[2][4]) {
  ptx_reg writer = ptx_new(b, PTX_PRED), u[2][4];
  if (p->splits * p->nw > 1) {
    ptx_comment(b, "add the %u splits' sums of each tile%s in order", p->splits,
                p->glu ? ", W's and U's," : p->pair_tiles ? " of the pair" : "");
    ptx_reg slot = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", slot.s, L->q.tid.s, 16 * p->nt, L->red.s);
    for (uint32_t t = 0; t < p->nt; t++)
      ptx_ins(b, "st.shared.v4.f32 [%s+%u], {%s, %s, %s, %s};", slot.s, 16 * t, acc[t][0].s, acc[t][1].s, acc[t][2].s,
              acc[t][3].s);
    ptx_ins(b, "bar.sync 0;");
    ptx_ins(b, "setp.eq.u32 %s, %s, 0;", writer.s, L->split.s);
    if (p->nw > 1) ptx_ins(b, "setp.eq.and.u32 %s, %s, 0, %s;", writer.s, L->weight.s, writer.s);
    char skip[32];
    ptx_label_new(b, "not_writer", skip);
    ptx_ins(b, "@!%s bra %s;", writer.s, skip);
    emit_add_split_slots(b, p, slot, 0, acc);
    if (p->nw > 1) {
      ptx_comment(b, "%s splits (warps %u.. on)", p->glu ? "U's" : "the second tile's", p->splits);
      for (uint32_t t = 0; t < p->nt; t++) {
        for (int i = 0; i < 4; i++) u[t][i] = ptx_new(b, PTX_F32);
        ptx_ld_v4(b, "ld.shared.v4.f32", u[t], slot, slot_offset(p, p->splits, t));
      }
      emit_add_split_slots(b, p, slot, p->splits, u);
    }
    if (p->pair_tiles) emit_rope_pairs(b, p, L, acc, u);
    if (p->glu) {
      ptx_comment(b, "%s(W's) * U's", p->glu == 1 ? "silu" : "gelu");
      for (uint32_t t = 0; t < p->nt; t++)
        for (int i = 0; i < 4; i++) {
          ptx_reg a = emit_activation(b, p->glu == 1 ? PTXGEN_KIND_SWIGLU : PTXGEN_KIND_GEGLU, acc[t][i], false);
          ptx_op3(b, "mul.rn.f32", acc[t][i], a, u[t][i]);
        }
    }
    ptx_label(b, skip);
  } else {
    ptx_ins(b, "setp.eq.u32 %s, %s, %s;", writer.s, L->split.s, L->split.s);
  }
  emit_store(b, p, L, row0, acc, writer);
  if (p->pair_tiles) {
    ptx_reg row1 = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", row1.s, row0.s, 16 * p->pair_tiles);
    emit_store(b, p, L, row1, u, writer);
  }
  if (p->splits * p->nw > 1) ptx_ins(b, "bar.sync 0;"); /* the slots are free again */
}

/* Split blocks: the split's sums go to the module's partials (the task's
 * slots, 16 nt bytes per lane); the last of the group's blocks to finish,
 * found by the group's counter (atom.inc wraps it to 0 again for the next
 * launch), adds the splits' sums in split order, as emit_reduce_store
 * does, and stores them. */
static void emit_cross_block_reduce_store(ptx_builder *b, const tc_plan *p, const tc_lane *L, uint32_t seg,
                                          ptx_reg task, ptx_reg group, ptx_reg row0, ptx_reg acc[2][4]) {
  ptx_comment(b, "this split's sums to the partials; the last of the group's %u splits to finish adds them in order",
              p->splits);
  const uint32_t slot_bytes = 16 * p->nt, split_bytes = p->warps * 32 * slot_bytes;
  ptx_reg idx = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), part = ptx_new(b, PTX_B64), slot = ptx_new(b, PTX_B64);
  ptx_ins(b, "mov.u64 %s, tc_partials%u;", part.s, seg);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", idx.s, task.s, p->warps * 32, L->q.tid.s);
  ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, idx.s, slot_bytes);
  ptx_op3(b, "add.u64", slot, part, off);
  for (uint32_t t = 0; t < p->nt; t++)
    ptx_ins(b, "st.global.v4.f32 [%s+%u], {%s, %s, %s, %s};", slot.s, 16 * t, acc[t][0].s, acc[t][1].s, acc[t][2].s,
            acc[t][3].s);
  ptx_ins(b, "fence.acq_rel.gpu;");
  ptx_ins(b, "bar.sync 0;");
  ptx_reg old = ptx_new(b, PTX_B32), cnt = ptx_new(b, PTX_B64), first = ptx_new(b, PTX_PRED);
  ptx_reg last = ptx_new(b, PTX_PRED), any = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mov.u32 %s, 0;", old.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, 0;", first.s, L->q.tid.s);
  ptx_ins(b, "mov.u64 %s, tc_counts%u;", cnt.s, seg);
  ptx_ins(b, "mul.wide.u32 %s, %s, 4;", off.s, group.s);
  ptx_op3(b, "add.u64", cnt, cnt, off);
  ptx_ins(b, "@%s atom.global.inc.u32 %s, [%s], %u;", first.s, old.s, cnt.s, p->splits - 1);
  ptx_ins(b, "setp.eq.and.u32 %s, %s, %u, %s;", last.s, old.s, p->splits - 1, first.s);
  ptx_ins(b, "bar.red.or.pred %s, 0, %s;", any.s, last.s);
  char skip[32];
  ptx_label_new(b, "not_last", skip);
  ptx_ins(b, "@!%s bra.uni %s;", any.s, skip);
  ptx_ins(b, "fence.acq_rel.gpu;");
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", idx.s, group.s, p->splits * p->warps * 32, L->q.tid.s);
  ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, idx.s, slot_bytes);
  ptx_op3(b, "add.u64", slot, part, off);
  for (uint32_t s = 0; s < p->splits; s++)
    for (uint32_t t = 0; t < p->nt; t++) {
      ptx_reg o[4];
      for (int i = 0; i < 4; i++) o[i] = s == 0 ? acc[t][i] : ptx_new(b, PTX_F32);
      ptx_ld_v4(b, "ld.global.cg.v4.f32", o, slot, s * split_bytes + 16 * t); /* L2: other SMs wrote them */
      if (s)
        for (int i = 0; i < 4; i++) ptx_op3(b, "add.rn.f32", acc[t][i], acc[t][i], o[i]);
    }
  ptx_reg writer = ptx_new(b, PTX_PRED);
  ptx_ins(b, "setp.eq.u32 %s, %s, %s;", writer.s, L->q.tid.s, L->q.tid.s);
  emit_store(b, p, L, row0, acc, writer);
  ptx_label(b, skip);
}

/* A segment's first unit of work, its block's index less block0, and the
 * stride of its grid-stride loop: blocks, or the whole grid (blocks = 0). */
static void emit_block_start(ptx_builder *b, ptx_reg first, ptx_reg stride, uint32_t block0, uint32_t blocks) {
  ptx_ins(b, "mov.u32 %s, %%ctaid.x;", first.s);
  if (block0) ptx_ins(b, "sub.u32 %s, %s, %u;", first.s, first.s, block0);
  if (blocks)
    ptx_ins(b, "mov.u32 %s, %u;", stride.s, blocks);
  else
    ptx_ins(b, "mov.u32 %s, %%nctaid.x;", stride.s);
}

/* The head of a loop while counter < limit (an immediate): its label,
 * then the branch to its end (done, named after hint too). */
static void emit_loop_head(ptx_builder *b, const char *hint, ptx_reg counter, uint32_t limit, ptx_reg pr,
                           char loop[32], char done[32]) {
  char done_hint[32];
  snprintf(done_hint, sizeof done_hint, "%s_done", hint);
  ptx_label_new(b, hint, loop);
  ptx_label_new(b, done_hint, done);
  ptx_label(b, loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %u;", pr.s, counter.s, limit);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, done);
}

/* A task's group and split (task = group * splits + split), its row
 * pointers, and the split's first super-block into raw if there is such a
 * task. */
static void emit_task_preload(ptx_builder *b, const tc_plan *p, const tc_lane *L, ptx_reg task, ptx_reg group,
                              ptx_reg have, ptx_reg rowp[2], ptx_reg *row0, const tc_raw *raw) {
  ptx_udiv_const(b, group, task, p->splits);
  ptx_urem_const(b, L->split, task, p->splits);
  emit_row_pointers(b, p, L, group, rowp, row0);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", have.s, task.s, p->tasks);
  emit_load(b, p, L, rowp, L->split, have.s, raw);
}

/* One weight's product with split blocks (tc_plan_split_blocks), by the
 * blocks [block0, block0 + blocks) of the grid (blocks = 0: the whole grid),
 * each walking its tasks with that stride. */
static void emit_segment_split(ptx_builder *b, const tc_plan *p, uint32_t seg, const char *w_param,
                               const char *y_param, uint32_t block0, uint32_t blocks) {
  ptx_comment(b, "y[%u][%u] = x[%u][%u] . W[%u][%u]^T on the tensor cores: 16-row tiles, each tile's super-blocks "
                 "split %u ways; a block takes one split of %u tiles (%u tasks) and stages that split's %u "
                 "super-blocks of x as f16 B fragments",
              p->m, p->n, p->m, p->k, p->n, p->k, p->splits, p->tpb, p->tasks, p->kt);
  tc_lane L;
  emit_lane_consts(b, p, &L, w_param, y_param);
  ptx_reg task = ptx_new(b, PTX_B32), ncta = ptx_new(b, PTX_B32), group = ptx_new(b, PTX_B32);
  ptx_reg pr = ptx_new(b, PTX_PRED), have = ptx_new(b, PTX_PRED), len = ptx_new(b, PTX_B32), zero = ptx_new(b, PTX_B32);
  emit_block_start(b, task, ncta, block0, blocks);
  ptx_ins(b, "mov.u32 %s, 0;", zero.s);
  ptx_reg rowp[2] = {ptx_new(b, PTX_B64), ptx_new(b, PTX_B64)}, row0 = ptx_new(b, PTX_B32);
  tc_raw raw;
  new_raw(b, p, &raw);
  ptx_comment(b, "preload: the split's first super-block of the block's first task");
  emit_task_preload(b, p, &L, task, group, have, rowp, &row0, &raw);
  ptx_grid_dependency_sync(b);
  ptx_comment(b, "tasks, grid-stride");
  char task_loop[32], task_done[32];
  emit_loop_head(b, "task", task, p->tasks, pr, task_loop, task_done);
  ptx_ins(b, "sub.u32 %s, %u, %s;", len.s, p->nsb + p->splits - 1, L.split.s);
  ptx_udiv_const(b, len, len, p->splits); /* the split's super-blocks */
  emit_stage(b, p, &L, L.split, p->splits, len);
  ptx_ins(b, "bar.sync 0;");
  ptx_reg acc[2][4];
  for (uint32_t t = 0; t < p->nt; t++)
    for (int i = 0; i < 4; i++) {
      acc[t][i] = ptx_new(b, PTX_F32);
      ptx_op1i(b, "mov.b32", acc[t][i], "0f00000000");
    }
  emit_superblock_loop(b, p, &L, rowp, zero, 1, L.split, p->splits, len, &raw, acc);
  emit_cross_block_reduce_store(b, p, &L, seg, task, group, row0, acc);
  ptx_ins(b, "add.u32 %s, %s, %s;", task.s, task.s, ncta.s);
  ptx_comment(b, "the first super-block of the block's next task (x is staged again: every warp is past the "
                 "barrier of the sums)");
  emit_task_preload(b, p, &L, task, group, have, rowp, &row0, &raw);
  ptx_ins(b, "bra.uni %s;", task_loop);
  ptx_label(b, task_done);
  ptx_ins(b, "ret;");
}

/* One weight's product (its plan p, its parameters), by the blocks
 * [block0, block0 + blocks) of the grid, each walking its row groups with
 * a stride of `blocks`; blocks = 0: by the whole grid, whatever its size
 * (the runtime fits a one-weight GEMV's grid to one wave). */
static void emit_segment(ptx_builder *b, const tc_plan *p, const char *w_param, const char *y_param, uint32_t block0,
                         uint32_t blocks) {
  ptx_comment(b, "y[%u][%u] = x[%u][%u] . W[%u][%u]^T on the tensor cores: 16-row tiles, %u per block, each "
                 "tile's super-blocks split over %u warps; %u row groups; x staged %u super-blocks at a time "
                 "(%u tile(s)) as f16 B fragments",
              p->m, p->n, p->m, p->k, p->n, p->k, p->tpb, p->splits, p->groups, p->kt, p->ktiles);
  tc_lane L;
  emit_lane_consts(b, p, &L, w_param, y_param);
  ptx_reg group = ptx_new(b, PTX_B32), ncta = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  emit_block_start(b, group, ncta, block0, blocks);
  ptx_reg rowp[2] = {ptx_new(b, PTX_B64), ptx_new(b, PTX_B64)}, row0 = ptx_new(b, PTX_B32);
  tc_raw raw;
  new_raw(b, p, &raw);
  ptx_reg t0 = ptx_new(b, PTX_B32), tlen = ptx_new(b, PTX_B32);
  ptx_reg have = ptx_new(b, PTX_PRED);
  if (p->ktiles == 1) {
    /* weights do not depend on earlier kernels: the first loads go out
     * before the wait for them and the staging of x */
    ptx_comment(b, "preload: the split's first super-block of the block's first row group");
    emit_row_pointers(b, p, &L, group, rowp, &row0);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", have.s, group.s, p->groups);
    emit_load(b, p, &L, rowp, L.split, have.s, &raw);
  }
  ptx_grid_dependency_sync(b);
  if (p->pair_tiles) emit_rope_positions(b, p, &L);
  if (p->ktiles == 1) {
    ptx_ins(b, "mov.u32 %s, 0;", t0.s);
    ptx_ins(b, "mov.u32 %s, %u;", tlen.s, p->nsb);
    emit_stage(b, p, &L, t0, 1, tlen);
    ptx_ins(b, "bar.sync 0;");
  }
  ptx_comment(b, "row groups, grid-stride");
  char group_loop[32], group_done[32];
  emit_loop_head(b, "group", group, p->groups, pr, group_loop, group_done);
  if (p->pair_tiles) emit_rope_table(b, p, &L, group);
  ptx_reg acc[2][4];
  for (uint32_t t = 0; t < p->nt; t++)
    for (int i = 0; i < 4; i++) {
      acc[t][i] = ptx_new(b, PTX_F32);
      ptx_op1i(b, "mov.b32", acc[t][i], "0f00000000");
    }
  if (p->ktiles == 1) {
    emit_superblock_loop(b, p, &L, rowp, L.split, p->splits, t0, 1, tlen, &raw, acc);
  } else {
    emit_row_pointers(b, p, &L, group, rowp, &row0);
    ptx_comment(b, "tiles of k: stage x, then every warp consumes it");
    char tile_loop[32], tile_done[32];
    ptx_ins(b, "mov.u32 %s, 0;", t0.s);
    emit_loop_head(b, "ktile", t0, p->nsb, pr, tile_loop, tile_done);
    ptx_ins(b, "sub.u32 %s, %u, %s;", tlen.s, p->nsb, t0.s);
    ptx_ins(b, "min.u32 %s, %s, %u;", tlen.s, tlen.s, p->kt);
    ptx_ins(b, "bar.sync 0;");
    emit_stage(b, p, &L, t0, 1, tlen);
    ptx_ins(b, "bar.sync 0;");
    ptx_reg j = ptx_new(b, PTX_B32), first = ptx_new(b, PTX_PRED);
    ptx_ins(b, "add.u32 %s, %s, %s;", j.s, t0.s, L.split.s);
    ptx_ins(b, "setp.lt.u32 %s, %s, %s;", first.s, L.split.s, tlen.s);
    emit_load(b, p, &L, rowp, j, first.s, &raw);
    emit_superblock_loop(b, p, &L, rowp, L.split, p->splits, t0, 1, tlen, &raw, acc);
    ptx_ins(b, "add.u32 %s, %s, %u;", t0.s, t0.s, p->kt);
    ptx_ins(b, "bra.uni %s;", tile_loop);
    ptx_label(b, tile_done);
  }
  emit_reduce_store(b, p, &L, row0, acc);
  ptx_ins(b, "add.u32 %s, %s, %s;", group.s, group.s, ncta.s);
  if (p->ktiles == 1) {
    ptx_comment(b, "the first super-block of the block's next row group");
    emit_row_pointers(b, p, &L, group, rowp, &row0);
    ptx_ins(b, "setp.lt.u32 %s, %s, %u;", have.s, group.s, p->groups);
    emit_load(b, p, &L, rowp, L.split, have.s, &raw);
  }
  ptx_ins(b, "bra.uni %s;", group_loop);
  ptx_label(b, group_done);
  ptx_ins(b, "ret;");
}

/* The plans of a key's weights (n, then n2, n3): each its own splits, as
 * for that weight alone, so that each keeps the bits of its own product;
 * one block shape for all: the most warps any plan takes, the fewest
 * blocks per SM (the splits, and so the bits, do not depend on either). */
static uint32_t tc_plan_segments(const ptxgen_spec *spec, tc_plan plans[3]) {
  const uint32_t ns[3] = {spec->n, spec->n2, spec->n3};
  uint32_t count = 0, warps = 0, per_sm = 2;
  for (uint32_t i = 0; i < 3 && ns[i] != 0; i++, count++) {
    ptxgen_spec one = *spec;
    one.n = ns[i];
    one.n2 = one.n3 = 0;
    if (i > 1) one.rope = 0; /* v is not rotated */
    plans[i] = tc_plan_for(&one);
    if (plans[i].rope_spec) plans[i].rope_spec = spec; /* (not the copy's address) */
    if (plans[i].warps > warps) warps = plans[i].warps;
    if (plans[i].blocks_per_sm < per_sm) per_sm = plans[i].blocks_per_sm;
  }
  for (uint32_t i = 0; i < count; i++) {
    if (plans[i].warps != warps) {
      if (plans[i].split_blocks)
        tc_plan_split(&plans[i], warps);
      else
        tc_plan_blocks(&plans[i], warps);
    }
    plans[i].blocks_per_sm = per_sm;
  }
  return count;
}

int gemv_tc_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  tc_plan plans[3];
  const uint32_t count = tc_plan_segments(spec, plans);
  static const char *const glu_names[] = {"", "_swiglu", "_geglu"};
  char rope[32] = "";
  if (spec->rope) snprintf(rope, sizeof rope, "_ropeneox_d%u", spec->head_dim);
  const char *fmt = spec->kind == PTXGEN_KIND_Q6K_GEMV ? "q6k" : "q4k";
  int len = count == 1 ? snprintf(out->entry, sizeof out->entry, "%s_gemv_tc_k%u_n%u_m%u%s", fmt, spec->k, spec->n,
                                  spec->m, glu_names[spec->glu])
                       : snprintf(out->entry, sizeof out->entry, "%s_gemv_tc_k%u_n%u_%u_%u_m%u%s", fmt, spec->k,
                                  spec->n, spec->n2, spec->n3, spec->m, rope);
  if (len < 0 || (size_t)len >= sizeof out->entry) return PTXGEN_ERR_SPEC;
  /* u64 W[, W2[, W3]], x, y[, y2[, y3]][, positions, freq_factors], or
   * u64 W, U, x, y with glu: the order ptxgen.h gives */
  static const char *const w_params[3] = {"W", "W2", "W3"}, *const y_params[3] = {"y", "y2", "y3"};
  const char *params[9];
  uint32_t np = 0, blocks[3], shared = 0, grid = 0;
  for (uint32_t i = 0; i < count; i++) params[np++] = w_params[i];
  if (spec->glu) params[np++] = "U";
  params[np++] = "x";
  for (uint32_t i = 0; i < count; i++) {
    params[np++] = y_params[i];
    const uint32_t units = plans[i].split_blocks ? plans[i].tasks : plans[i].groups;
    blocks[i] = units < TC_GRID_CAP ? units : TC_GRID_CAP;
    if (plans[i].shared_bytes > shared) shared = plans[i].shared_bytes;
  }
  if (spec->rope) params[np++] = "positions", params[np++] = "freq_factors";
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(spec->sm), spec->sm);
  if (spec->rope) rope_emit_freq_table(&b, spec);
  for (uint32_t i = 0; i < count; i++)
    if (plans[i].split_blocks) {
      ptx_decl(&b, "// split blocks of weight %u: their sums, and per row group the splits done (zero at load)", i);
      ptx_decl(&b, ".global .align 16 .b8 tc_partials%u[%u];", i, plans[i].partial_bytes);
      ptx_decl(&b, ".global .align 4 .u32 tc_counts%u[%u];\n", i, plans[i].groups);
    }
  ptx_entry_blocks(&b, out->entry, params, (int)np, 1, plans[0].warps * 32, plans[0].blocks_per_sm);
  char labels[3][32];
  if (count > 1) {
    ptx_comment(&b, "%u weights side by side, each by blocks of its own, as its product alone (this grid, "
                    "not fitted to a wave)", count);
    ptx_reg cta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
    ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", cta.s);
    for (uint32_t i = 0; i < count; i++) ptx_label_new(&b, "weight", labels[i]);
    for (uint32_t i = 0, first = 0; i + 1 < count; i++) {
      first += blocks[i];
      ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", pr.s, cta.s, first);
      ptx_ins(&b, "@%s bra.uni %s;", pr.s, labels[i]);
    }
    ptx_ins(&b, "bra.uni %s;", labels[count - 1]);
  }
  for (uint32_t i = 0; i < count; i++) {
    if (count > 1) ptx_label(&b, labels[i]);
    if (plans[i].split_blocks)
      emit_segment_split(&b, &plans[i], i, w_params[i], y_params[i], grid, count > 1 ? blocks[i] : 0);
    else
      emit_segment(&b, &plans[i], w_params[i], y_params[i], grid, count > 1 ? blocks[i] : 0);
    grid += blocks[i];
  }
  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  out->geometry = (ptxgen_geometry){{grid, 1, 1}, {plans[0].warps * 32, 1, 1}, shared, 0};
  return PTXGEN_OK;
}
