/*
 * gemv.c: the quantized matrix-vector product skeleton,
 * y[m][n] = x[m][k] . W[n][k]^T (see gemv.h for the split of work with the
 * weight formats).
 *
 * Work split
 *   A warp computes `rows` rows at a time. The warps of a block walk row
 *   groups of rows*warps rows together with a grid stride (with x in tiles
 *   they must: they stage each tile together). Plain m = 1 products with x
 *   staged once instead have each warp walk tasks of its own (task =
 *   block*warps + warp, stride blocks*warps), so that when the tasks do not
 *   divide evenly the last round's work is spread over every SM instead of
 *   idling whole blocks (warp_tasks_by_default). Within a warp, lane l owns
 *   chunks g = l, l+32, ... of each of its rows and keeps one fp32 sum per
 *   (row, batch row); the 32 lanes' sums are combined by a butterfly of
 *   shuffles.
 *
 * Activations in shared memory
 *   x is staged in shared memory, permuted so that a lane's 16-byte reads of
 *   its chunk's x values are consecutive across the warp (no bank conflicts):
 *   float4 i (0..15) of chunk u of batch row r is at ((r*16 + i)*S + u)*16,
 *   S the tile's chunks made odd, so that staging's stores (16 threads on
 *   the 16 float4s of a chunk) do not conflict either. Beside it, per chunk
 *   and batch row, the sums of groups of those values that the formats need
 *   to fold in quant offsets and mins. When x (all m rows) fits the target's
 *   shared memory it is staged once per block; otherwise k is cut into
 *   tiles staged in turn. Staging reads x coalesced (emit_stage).
 *
 * Loads in flight from the start
 *   With x staged once (one tile), a lane's loads run ahead of its
 *   arithmetic, and the loads of the block's first row group go out before
 *   x is staged and (sm_90+) before the kernel waits for the grids it
 *   depends on: weights never depend on earlier kernels. Where a lane's
 *   chunks of a row group fit its registers (k = 4096: two chunks of two
 *   rows), it loads the whole group at once, and the next group's loads go
 *   out before the current one's sums are reduced and stored: a layer's
 *   q, k, v and o weights are then mostly read while the kernel before is
 *   still finishing. Not all of the first group goes out before the wait,
 *   though: where that would be a large burst (pre_wait_loads), a quarter
 *   or a half of it waits until the kernel before is done, so as not to
 *   queue ahead of that kernel's last loads and stores. Otherwise the
 *   loads run one chunk ahead (for Q4_K, the first group's second chunk
 *   also goes out while x is staged). x itself is read with a plain
 *   coherent load, not .nc: with programmatic launch an earlier kernel may
 *   have written it during this kernel's life.
 *
 * Determinism and batch invariance
 *   Every float operation is written with an explicit rounding mode, so
 *   ptxas cannot contract or reorder it. Each output is reduced in the same
 *   order whatever m is: per lane over its chunks in increasing g (tiles only
 *   change when x is staged, not which lane owns a chunk: a lane always owns
 *   g = l mod 32), then the fixed butterfly. So row i of an m > 1 product is
 *   bit-identical to the m = 1 product of that row.
 *
 * Integer dot products (gemv_format.int_dot, key option idp=1)
 *   x is staged as byte planes of integers under a power-of-two scale per
 *   chunk (gemv_stage_int), a chunk's sums are exact integers, and a lane's
 *   sums are fp64, in the same order, with the butterfly in fp64 and one
 *   rounding to fp32 before the epilogues and stores. tests/idp_model.h
 *   computes the same bits on the CPU.
 */
#include <stdio.h>
#include <string.h>

#include "act_math.h"
#include "gemv.h"
#include "rope_math.h"

#define GRID_CAP 1024u /* blocks at most (the runtime fits the grid to one wave); more groups are walked with a grid stride */
/* Registers a lane may hold loads of a whole row group in (k = 4096: two
 * chunks of two Q4_K or Q6_K rows, or of a gated pair); past that, loads run
 * one chunk ahead. Large batches need the registers for their sums and x:
 * with more than 4 batch rows the budget is smaller (ptxas spills a Q6_K
 * gated m = 8 kernel at 60). */
#define GROUP_PRELOAD_REGS 64u
#define GROUP_PRELOAD_REGS_LARGE_M 48u
/* With more than 4 batch rows a group's arithmetic is long, and a block that
 * walks many groups leaves the memory idle between one group's loads and
 * the next: on the H100, Q4_K 128256x4096 at m = 8 (8016 groups) took
 * 438 µs with whole-group loads against 353 µs one chunk ahead, while
 * 14336x4096 (896 groups) took 49.4 against 52.1. Past this many groups,
 * large batches load one chunk ahead. */
#define GROUP_PRELOAD_MAX_GROUPS_LARGE_M 2048u
#define MAX_LANE_CHUNKS (GROUP_PRELOAD_REGS / 12 + 1) /* the smallest chunk (Q4_K) is 12 registers per row */
/* A chunk's partial sums (S in the formats' compute: load_rows x m x sums
 * registers) are live across all of its arithmetic. Where two rows per warp
 * would need more than this, the default is one: Q6_K (4 sums) past m = 8,
 * where two rows take 242 to 255 registers and spill at m = 11, 13 or 14
 * on sm_80, 90, 100 and 120 (ptxas 13.0; one row: at most 168); Q4_K
 * (2 sums) keeps two rows up to m = 16 (at most 209). One row per warp
 * changes which warp computes a row, not the order of its sums, so the
 * bits stay those of m = 1. */
#define CHUNK_SUMS_REGS 64u

/* Shared memory we allow x to take, per target: under the per-block opt-in
 * maximum (64 KiB on sm_75, 163 KiB on sm_80, 99 KiB on sm_86/89/120,
 * 227 KiB on sm_90/100). */
uint32_t gemv_shared_budget(uint32_t sm) {
  switch (sm) {
  case 75: return 60u * 1024;
  case 80: return 152u * 1024;
  case 90: case 100: return 200u * 1024;
  default: return 92u * 1024;
  }
}

/* Default tuning of a plain product (no glu, n2 or rope) when the key sets
 * none, from ptxq-bench on the H100 (bench/RESULTS.md, eighth session):
 * - m = 1 on a large weight: one row per warp, 16 warps per block. Groups
 *   of 16 rows in blocks of 8 warps (96 registers: 2 blocks per SM) leave
 *   the last round of row groups part-empty (14336 rows: 896 groups over
 *   264 blocks, 3.4 rounds); one row each over 16 warps (1 block per SM)
 *   cuts it finer. Q4_K 14336x4096 graph-cold 14.07 -> 13.47 µs, 128256x4096
 *   cold 107.5 -> 106.0; Q6_K 4096x14336 cold 24.5 -> 22.8, 128256x4096
 *   150.4 -> 148.5. Below LARGE_PRODUCT_WEIGHTS it lost (4096x4096: 9.8 ->
 *   10.1 cold, 4.1 -> 4.4 in a graph).
 * - Q4_K with x staged in tiles (k = 14336 from m = 4 on sm_90), m <= 5:
 *   16 warps of two rows, so each block stages x's tiles once for 32 rows
 *   instead of 16 (Q4_K 4096x14336 m = 8: 63.3 -> 51.0 µs cold). 16 warps
 *   cap a thread at 128 registers: from m = 6 or 7 that spills on some
 *   targets (8 bytes at m = 8 on sm_90, 8-12 at m = 7 on sm_80..120), so
 *   m = 6..8 keep 8 warps.
 * - Q4_K from 4096 rows at m = 5, 6 and 8 (m = 4 from 65536; not where the
 *   item above gives 16 warps): four rows per warp, so each x value loaded
 *   from shared memory serves 4 rows, not 2 (at m = 8 the kernel was bound
 *   by those loads: ncu, eleventh session). 255 registers, 1 block per
 *   SM, no spills on sm_75..100; sm_120 keeps two rows at m = 8 (16 bytes
 *   spilled at k = 2304..2816: `ptxgen check` over k = 256..16384,
 *   thirteenth session). H100 (twelfth session, two runs each,
 *   cold): 4096x14336 m = 6 54.4 -> 39.9 µs, m = 8
 *   63.4 -> 48.1; 128256x4096 m = 8 354 -> 294; 4096x4096 m = 8 19.2 ->
 *   16.8; 14336x4096 about even (cold -2%, graph-cold +1..3%); the decode
 *   step at m = 6 4933 -> 4687 µs, m = 8 6121 -> 5962. It lost with few rows
 *   (1024x4096 m = 8 12.0 -> 15.5: 32 blocks for 132 SMs) and in the decode
 *   step at m = 4 (3499 -> 3570: o's 4096x4096 alone gained, 14.0 -> 12.7),
 *   so m = 4 takes it only from FOUR_ROWS_AT_M4_MIN_N rows (128256x4096
 *   181 -> 170). m = 7 gained as much (4096x14336 58.3 -> 42.9) but spills
 *   at some k (72 bytes at k = 3072 and 5120 on sm_90), so it keeps two.
 * Each changes which warp computes a row, not the order of its sums:
 * every m keeps the bits of m = 1. */
#define LARGE_PRODUCT_WEIGHTS (1ull << 25) /* n x k */
#define TILED_X_WARPS16_MAX_M 5u
#define FOUR_ROWS_MIN_N 4096u
#define FOUR_ROWS_AT_M4_MIN_N 65536u

/* A plain product: one weight, no epilogue. */
static bool is_plain(const ptxgen_spec *s) { return !s->glu && !s->n2 && !s->rope; }

/* The copy engine's ring by default (where the format and target have it,
 * bench/RESULTS.md, ninth session): plain products at m <= 2 with long rows
 * or (Q4_K) many of them, where a block walks many rounds. H100, against a
 * chunk or a group ahead: Q4_K 4096x14336 m = 1 graph-cold 14.7 -> 13.8
 * µs, m = 2 cold 23.3 -> 21.1; Q4_K 128256x4096 m = 1 cold 106.2 -> 104.4,
 * m = 2 120.9 -> 118.1; with the Q6_K down kernels (4096x14336) on it, the
 * decode step at m = 1 1764 -> 1728 µs, though that product alone is no
 * faster (cold 23.0 -> 24.8: what it gains is loading its first rounds while
 * the kernel before finishes). Q6_K 128256x4096 lost (147.6 -> 157.4).
 * Shorter products lost (Q4_K 14336x4096 m = 1 cold 18.1 -> 18.9, 4096x4096
 * 9.8 -> 10.4), and from m = 4, where the arithmetic binds, most shapes
 * lost: the ring adds the weights' bytes to the shared-memory traffic that
 * x already loads (4 bytes per weight and batch row at one row per warp). */
static bool bulk_by_default(const ptxgen_spec *s) {
  const bool many_rows = s->n >= 65536 && s->kind == PTXGEN_KIND_Q4K_GEMV;
  return is_plain(s) && s->m <= 2 && (s->k >= 8192 || many_rows);
}

/* The ring for Q4_K batches of 5 to 8 rows, plain or over several weights
 * (their rows counted together), from RING_BATCH_MIN_WEIGHTS weights, and
 * at m = 4 from FOUR_ROWS_AT_M4_MIN_N rows, wherever x is staged once (the
 * ring needs it). Why: at m = 8 the four-row kernel's warps waited on their
 * own weight loads (ncu: long-scoreboard and load-queue stalls, 0.5 of its
 * 3.1 cycles per instruction); copied into shared memory by the copy
 * engine, the bytes arrive without holding registers or load slots. H100
 * (bench/RESULTS.md, thirteenth session), cold / graph-cold µs, against
 * the loads a chunk or a group ahead: 14336x4096 m = 5 33.9 / 30.7 -> 32.2
 * / 26.7, m = 8 44.9 / 41.6 -> 43.9 / 38.1; 8192x4096 m = 5 21.5 / 18.0 ->
 * 20.5 / 16.4; 128256x4096 m = 8 291.6 -> 275.5, m = 4 171.2 / 167.9 ->
 * 162.0 / 156.5; the decode step (its gate and up run as plain products
 * past m = 4, q/k/v as one) m = 5 4203 -> 3912, m = 8 5952 -> 5638.
 * Left out where it lost: 4096x4096 (m = 8 16.8 / 13.5 -> 17.8 / 14.0), m = 4
 * below 65536 rows (14336x4096 graph-cold 25.1 -> 26.1), the gated kernel
 * (even) and Q6_K (10-25% slower, 128256x4096 from memory too). */
#define RING_BATCH_MIN_WEIGHTS (3ull << 23) /* n x k, every weight's rows */
static bool bulk_batch_by_default(const ptxgen_spec *s) {
  const uint64_t rows = (uint64_t)s->n + s->n2 + s->n3;
  if (s->kind != PTXGEN_KIND_Q4K_GEMV || s->glu || s->rope || rows * s->k < RING_BATCH_MIN_WEIGHTS) return false;
  if (s->m == 4) return rows >= FOUR_ROWS_AT_M4_MIN_N;
  return s->m >= 5 && s->m <= 8;
}

/* Warps walking tasks of their own (gemv_plan.warp_tasks) for plain m = 1
 * products with x staged once. H100 (bench/RESULTS.md, ninth session), two
 * runs each: Q4_K 14336x4096 graph-cold 13.51 -> 12.80 µs, cold 18.2 ->
 * 17.3 (its 896 tasks of 16 rows leave 0.79 of a last round: whole blocks
 * idled, now every SM shares it); the other shapes and m = 2 unchanged.
 * Not in the decode step's pipeline past m = 1: there a block lives until
 * its last warp is done, so no block frees its SM early for the next
 * kernel, and the step at m = 8 took 6075 -> 6180 µs with every kernel so. */
static bool warp_tasks_by_default(const ptxgen_spec *s, uint32_t tiles) {
  return is_plain(s) && s->m == 1 && tiles == 1;
}

/* Four rows per warp (the last item above). */
static bool four_rows_by_default(const ptxgen_spec *s) {
  if (s->kind != PTXGEN_KIND_Q4K_GEMV || s->n < FOUR_ROWS_MIN_N) return false;
  if (s->m == 4) return s->n >= FOUR_ROWS_AT_M4_MIN_N;
  /* on sm_120 ptxas (13.0) spills 16 bytes at m = 8 for k = 2304..2816 */
  if (s->m == 8 && s->sm == 120) return false;
  return s->m == 5 || s->m == 6 || s->m == 8;
}

/* How much of the block's first row group a GEMV_PRELOAD_GROUP kernel
 * loads before it waits for the grid before it (gemv_plan.pre_wait_loads).
 * Those loads queue in the memory system ahead of the earlier kernel's last
 * work: a whole first round of groups (about 9.5 MB over the grid at k =
 * 4096) delays the release. What is held back goes out right after the
 * wait, while x is staged. H100 (bench/RESULTS.md, twenty-third session):
 * the decode step at m = 1, graph, 1730 µs with everything before the wait;
 * the first half of each group before it 1701, three quarters 1687, and
 * best per kernel (three quarters in the q/k/v and gated kernels, half in
 * o) 1682; m = 2 2149 -> 2134, m = 4 and 8 even. A plain product gains
 * where its first groups are all of a large weight (4096x4096 m = 1 in a
 * graph 4.23 -> 3.94 µs, graph-cold 5.40 -> 4.63; Q6_K 6.98 -> 5.90) and
 * loses where the weight is small (2048x4096 m = 2 graph-cold 3.14 ->
 * 4.41, 4.7 MB) or a block walks several groups (14336x4096 m = 2 17.4 ->
 * 18.3): there, and past m = 2, everything goes before the wait. */
#define HOLD_BACK_MAX_M 2u
#define HOLD_BACK_MIN_BYTES (8ull << 20) /* the weights' bytes, all rows */
#define HOLD_BACK_PLAIN_MAX_GROUPS 256u
static uint32_t pre_wait_loads(const ptxgen_spec *s, const gemv_plan *p) {
  const uint32_t loads = p->lane_chunks * p->load_rows;
  const uint64_t bytes = (uint64_t)p->n_total * p->row_stride * (p->glu ? 2 : 1);
  if (p->preload != GEMV_PRELOAD_GROUP || s->m > HOLD_BACK_MAX_M || loads < 2 || bytes < HOLD_BACK_MIN_BYTES)
    return loads;
  if (!is_plain(s)) return loads - 1;
  return p->groups <= HOLD_BACK_PLAIN_MAX_GROUPS ? loads / 2 : loads;
}

static void default_tuning(const ptxgen_spec *s, bool x_in_tiles, uint32_t *rows,
                           uint32_t *warps) {
  if (!is_plain(s) || s->rows || s->warps) return;
  if (s->m == 1 && (uint64_t)s->n * s->k >= LARGE_PRODUCT_WEIGHTS) {
    *rows = 1;
    *warps = 16;
  } else if (s->kind == PTXGEN_KIND_Q4K_GEMV && x_in_tiles && s->m <= TILED_X_WARPS16_MAX_M) {
    *warps = 16;
  } else if (four_rows_by_default(s)) {
    *rows = 4;
  }
}

/* Rows per warp before the default tuning: two, or one where two rows'
 * chunk sums would not fit registers (or a gated product's two weights). */
static uint32_t base_rows(const ptxgen_spec *s, const gemv_format *f) {
  if (s->rows) return s->rows;
  if (s->glu) return 1;
  if (!s->rope && 2 * s->m * f->sums > CHUNK_SUMS_REGS) return 1; /* RoPE needs row pairs */
  return 2;
}

static gemv_plan plan_for(const ptxgen_spec *s, const gemv_format *f) {
  gemv_plan p = {.k = s->k, .n = s->n, .m = s->m, .sm = s->sm, .sums = f->sums};
  p.glu = s->glu;
  p.seg_n[0] = s->n, p.seg_n[1] = s->n2, p.seg_n[2] = s->n3;
  p.segments = s->n3 ? 3 : s->n2 ? 2 : 1;
  p.n_total = s->n + s->n2 + s->n3;
  p.rope = s->rope;
  p.chunks = s->k / 64;
  uint32_t chunk_bytes = 256 + 4 * f->sums; /* per chunk and batch row */
  uint32_t fit = gemv_shared_budget(s->sm) / (s->m * chunk_bytes);
  p.rows = base_rows(s, f);
  p.warps = s->warps ? s->warps : 8;
  default_tuning(s, fit < p.chunks, &p.rows, &p.warps);
  p.load_rows = s->glu ? 2 * p.rows : p.rows;
  p.threads = p.warps * 32;
  p.row_stride = f->row_stride(s->k);
  if (fit >= p.chunks) {
    p.tile_chunks = p.chunks;
  } else {
    /* whole warps' worth of chunks where possible; any size is correct */
    p.tile_chunks = fit >= 32 ? fit & ~31u : fit;
  }
  p.tiles = (p.chunks + p.tile_chunks - 1) / p.tile_chunks;
  uint32_t per_group = p.rows * p.warps;
  p.groups = (p.n_total + per_group - 1) / per_group;
  p.lane_chunks = (p.chunks + 31) / 32;
  const uint32_t group_regs = p.lane_chunks * p.load_rows * f->raw_count;
  const bool group_fits =
      s->m > 4 ? group_regs <= GROUP_PRELOAD_REGS_LARGE_M && p.groups <= GROUP_PRELOAD_MAX_GROUPS_LARGE_M
               : group_regs <= GROUP_PRELOAD_REGS;
  if (p.tiles > 1 || s->preload == 1) {
    p.preload = GEMV_PRELOAD_OFF;
  } else if (s->preload == 3 || (s->preload == 0 && group_fits)) {
    p.preload = group_fits ? GEMV_PRELOAD_GROUP : GEMV_PRELOAD_CHUNK;
  } else {
    p.preload = GEMV_PRELOAD_CHUNK;
  }
  p.warp_tasks = warp_tasks_by_default(s, p.tiles);
  p.unit_rows = p.warp_tasks ? p.rows : p.rows * p.warps;
  p.units = (p.n_total + p.unit_rows - 1) / p.unit_rows;
  p.xs_stride = p.tile_chunks | 1u;
  p.xs_bytes = s->m * 16 * p.xs_stride * 16;
  p.shared_bytes = p.xs_bytes + s->m * p.tile_chunks * 4 * f->sums;
  if ((s->preload == 4 || (s->preload == 0 && (bulk_by_default(s) || bulk_batch_by_default(s)))) &&
      gemv_ring_plan(&p, f))
    p.preload = GEMV_PRELOAD_BULK;
  p.pre_wait_loads = pre_wait_loads(s, &p);
  return p;
}

/* (gemv.h) A batch past SPLIT_BATCH_ROWS costs a kernel more per row where
 * its x no longer fits shared memory at once while 8 rows' did (tiles: no
 * loads ahead, x staged again for every row group), or where it leaves two
 * rows per warp for one (twice the row groups). On large products, two
 * launches that read the weights twice (the second mostly from L2) are then
 * faster. H100, kernel µs hot (`ptxgen run --reps 30`, bench/RESULTS.md,
 * tenth session), m = 16 against two launches of 8: Q4_K 14336x4096 112.0
 * against 96.0, 128256x4096 929 against 710, but 4096x4096 36.8 against
 * 40.2 and 4096x14336 (x in tiles at 8 rows too) 107 against 125; Q6_K
 * 4096x4096 64.9 against 43.5, 128256x4096 1841 against 737, but 2048x2048
 * 19.1 against 24.7. Several weights in one kernel (n2=, n3=) count their
 * rows together, and measured the same way (eleventh session, by key):
 * q, k, v of 8192 + 1024 + 1023 rows x 4096 at m = 16, Q4_K, 76.2 against
 * 59.6; at k = 5120 (5120 + 1024 + 1024 rows) m = 12, 69.6 against 57.3;
 * Q6_K 4096 + 1024 + 1024 rows x 4096 at m = 12, 67.2 against 34.8; but
 * Q4_K at m = 9 (x fits at once) 33.4 against 39.6, and at k = 8192 (x in
 * tiles at 8 rows too) 150.5 against 180.5. A kernel with an epilogue
 * (glu=, rope=) keeps its batch: those take m <= 8. */
#define SPLIT_BATCH_ROWS 8u

uint32_t gemv_batch_rows(const ptxgen_spec *s, const gemv_format *f) {
  if (s->m <= SPLIT_BATCH_ROWS || s->glu || s->rope || s->rows || s->warps || s->preload) return s->m;
  if (((uint64_t)s->n + s->n2 + s->n3) * s->k < f->batch_split_min_weights) return s->m;
  ptxgen_spec part = *s;
  part.m = SPLIT_BATCH_ROWS;
  const gemv_plan whole = plan_for(s, f), split = plan_for(&part, f);
  /* base rows, not the tuned ones: four rows at m = 8 (default_tuning) were
   * measured against m = 8 alone, not as a reason to split */
  const bool costlier = (whole.tiles > 1 && split.tiles == 1) || base_rows(s, f) < base_rows(&part, f);
  return costlier ? SPLIT_BATCH_ROWS : s->m;
}

ptx_reg gemv_u64_of(ptx_builder *b, ptx_reg u32) {
  ptx_reg r = ptx_new(b, PTX_B64);
  ptx_op2(b, "cvt.u64.u32", r, u32);
  return r;
}

const char *gemv_weight_space(const gemv_plan *p) {
  return p->preload == GEMV_PRELOAD_BULK ? "shared" : "global.nc";
}

ptx_reg gemv_weight_offset(ptx_builder *b, const gemv_plan *p, ptx_reg off32) {
  return p->preload == GEMV_PRELOAD_BULK ? off32 : gemv_u64_of(b, off32);
}

ptx_reg gemv_weight_addr(ptx_builder *b, const gemv_plan *p, ptx_reg rowp, ptx_reg offset) {
  const bool shared = p->preload == GEMV_PRELOAD_BULK;
  ptx_reg a = ptx_new(b, shared ? PTX_B32 : PTX_B64);
  ptx_op3(b, shared ? "add.u32" : "add.u64", a, rowp, offset);
  return a;
}

void gemv_bytes_to_floats(ptx_builder *b, const gemv_lane *L, ptx_reg v, ptx_reg f[4]) {
  static const char *const sel[4] = {"0x7054", "0x7154", "0x7254", "0x7354"}; /* byte j under the exponent */
  for (int j = 0; j < 4; j++) {
    f[j] = ptx_new(b, PTX_F32);
    ptx_op3i(b, "prmt.b32", f[j], v, L->half_exp, sel[j]);
  }
}

void gemv_fold(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, ptx_reg u, uint32_t rows, ptx_reg A[][4],
               ptx_reg E[][4], ptx_reg S[][PTXGEN_GEMV_MAX_M][4], ptx_reg acc[][PTXGEN_GEMV_MAX_M]) {
  ptx_reg xsum_u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", xsum_u.s, u.s, 4 * p->sums, L->xsum_base.s);
  for (uint32_t m = 0; m < p->m; m++) {
    ptx_reg xsum[4];
    for (uint32_t g = 0; g < p->sums; g++) xsum[g] = ptx_new(b, PTX_F32);
    const uint32_t off = m * p->tile_chunks * 4 * p->sums;
    if (p->sums == 2)
      ptx_ins(b, "ld.shared.v2.f32 {%s, %s}, [%s+%u];", xsum[0].s, xsum[1].s, xsum_u.s, off);
    else
      ptx_ld_v4(b, "ld.shared.v4.f32", xsum, xsum_u, off);
    for (uint32_t r = 0; r < rows; r++)
      for (uint32_t g = 0; g < p->sums; g++) {
        ptx_op4(b, "fma.rn.f32", acc[r][m], A[r][g], S[r][m][g], acc[r][m]);
        ptx_op4(b, "fma.rn.f32", acc[r][m], E[r][g], xsum[g], acc[r][m]);
      }
  }
}

void gemv_thread_ids(ptx_builder *b, gemv_lane *L) {
  L->tid = ptx_new(b, PTX_B32);
  L->lane = ptx_new(b, PTX_B32);
  L->warp = ptx_new(b, PTX_B32);
  L->c = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, %%tid.x;", L->tid.s);
  ptx_ins(b, "and.b32 %s, %s, 31;", L->lane.s, L->tid.s);
  ptx_ins(b, "shr.u32 %s, %s, 5;", L->warp.s, L->tid.s);
  ptx_ins(b, "and.b32 %s, %s, 3;", L->c.s, L->lane.s);
}

/* (gemv.h) */
int gemv_entry_name(const ptxgen_spec *s, const char *name, ptxgen_kernel *out) {
  static const char *const glu_names[] = {"", "_swiglu", "_geglu"};
  char more[64] = "";
  if (s->n2) snprintf(more, sizeof more, "_n%u", s->n2);
  if (s->n3) snprintf(more + strlen(more), sizeof more - strlen(more), "_n%u", s->n3);
  if (s->rope)
    snprintf(more + strlen(more), sizeof more - strlen(more), "_rope%s_d%u_r%u", s->rope == 2 ? "neox" : "normal",
             s->head_dim, s->n_dims);
  char entry[160]; /* within the spec's limits the name fits out->entry (63 characters at most) */
  int len = snprintf(entry, sizeof entry, "%s_k%u_n%u%s_m%u%s", name, s->k, s->n, more, s->m, glu_names[s->glu]);
  if (len < 0 || (size_t)len >= sizeof out->entry) return PTXGEN_ERR_SPEC;
  memcpy(out->entry, entry, (size_t)len + 1);
  return PTXGEN_OK;
}

/* (gemv.h) */
const char *const *gemv_param_names(const ptxgen_spec *s, int *count) {
  static const char *const plain[] = {"W", "x", "y"}, *const gated[] = {"W", "U", "x", "y"};
  static const char *const seg2[] = {"W", "W2", "x", "y", "y2", "positions", "freq_factors"};
  static const char *const seg3[] = {"W", "W2", "W3", "x", "y", "y2", "y3", "positions", "freq_factors"};
  const int rope = s->rope ? 2 : 0;
  if (s->n3) return *count = 7 + rope, seg3;
  if (s->n2) return *count = 5 + rope, seg2;
  return *count = s->glu ? 4 : 3, s->glu ? gated : plain;
}

/* (gemv.h) */
void gemv_load_params(ptx_builder *b, const ptxgen_spec *s, gemv_lane *L) {
  int count;
  const char *const *names = gemv_param_names(s, &count);
  const uint32_t segments = s->n3 ? 3 : s->n2 ? 2 : 1;
  int at = 0;
  for (uint32_t i = 0; i < segments; i++) L->Ws[i] = ptx_param_u64(b, names[at++]);
  L->W = L->Ws[0];
  L->U = s->glu ? ptx_param_u64(b, names[at++]) : L->W;
  L->x = ptx_param_u64(b, names[at++]);
  for (uint32_t i = 0; i < segments; i++) L->ys[i] = ptx_param_u64(b, names[at++]);
  L->y = L->ys[0];
  if (s->rope) {
    L->positions = ptx_param_u64(b, names[at++]);
    L->ff = ptx_param_u64(b, names[at++]);
  }
}

static void emit_lane_consts(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_format *f,
                             gemv_lane *L) {
  gemv_load_params(b, s, L);
  gemv_thread_ids(b, L);
  L->half_exp = ptx_imm_b32(b, 0x3F000000u);
  L->xs_base = ptx_new(b, PTX_B32);
  L->xsum_base = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.u32 %s, xs;", L->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", L->xsum_base.s, L->xs_base.s, p->xs_bytes);
  f->lane_consts(b, p, L);
}

/* A staging thread's chunk of round j, u + j*step, may lie past the tile's
 * end (a short last tile, or a tile that is not a whole number of rounds):
 * then *in is set to whether it lies within, guard to "@<in> " for the
 * round's loads and stores, and the caller zeroes the values the loads
 * would fill, so that its reductions add finite values. Returns whether it
 * may; guard is "" otherwise. t is a scratch register. */
static bool stage_round_guard(ptx_builder *b, const gemv_plan *p, ptx_reg u, ptx_reg t, uint32_t j, uint32_t step,
                              ptx_reg tile_len, ptx_reg *in, char guard[24]) {
  guard[0] = '\0';
  if (p->tiles == 1 && (j + 1) * step <= p->tile_chunks) return false;
  *in = ptx_new(b, PTX_PRED);
  ptx_ins(b, "add.u32 %s, %s, %u;", t.s, u.s, j * step);
  ptx_ins(b, "setp.lt.u32 %s, %s, %s;", in->s, t.s, tile_len.s);
  snprintf(guard, 24, "@%.15s ", in->s); /* (.15: for -Wformat-truncation; a name is shorter) */
  return true;
}

/* Where a staging thread reads x: with `per_chunk` threads to a chunk (16:
 * a float4 each, 8: two), thread t takes part i = t mod per_chunk of chunks
 * u = t/per_chunk, u + threads/per_chunk, ... of the tile (with `half`, of
 * the super-blocks of that parity: see gemv_stage_int). Sets i, u and a
 * scratch register t; returns the global address of the thread's first
 * float4 in batch row 0. */
static ptx_reg stage_thread_source(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                                   ptx_reg tile, const ptx_reg *half, uint32_t per_chunk, ptx_reg *i_out,
                                   ptx_reg *u_out, ptx_reg *t_out) {
  ptx_reg i = ptx_new(b, PTX_B32), u = ptx_new(b, PTX_B32), g = ptx_new(b, PTX_B32), c = ptx_new(b, PTX_B32);
  ptx_reg xo = ptx_new(b, PTX_B32), io = ptx_new(b, PTX_B32), t = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, %u;", i.s, L->tid.s, per_chunk - 1);
  ptx_ins(b, "shr.u32 %s, %s, %u;", u.s, L->tid.s, per_chunk == 16 ? 4u : 3u);
  if (half) { /* staged chunk u is chunk u%4 of super-block 2(u/4) + half */
    ptx_ins(b, "shr.u32 %s, %s, 2;", g.s, u.s);
    ptx_ins(b, "shl.b32 %s, %s, 3;", g.s, g.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", g.s, half->s, g.s);
    ptx_ins(b, "and.b32 %s, %s, 3;", c.s, u.s);
    ptx_ins(b, "or.b32 %s, %s, %s;", g.s, g.s, c.s);
  } else {
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", g.s, tile.s, p->tile_chunks, u.s);
  }
  ptx_ins(b, "and.b32 %s, %s, 3;", c.s, g.s);
  f->x_base(b, c, xo);
  if (per_chunk == 16) {
    f->x_offset(b, i, io);
  } else {
    ptx_ins(b, "shl.b32 %s, %s, 1;", t.s, i.s);
    f->x_offset(b, t, io); /* float4 2i: values 8i.. */
  }
  ptx_ins(b, "add.u32 %s, %s, %s;", xo.s, xo.s, io.s);
  ptx_ins(b, "shr.u32 %s, %s, 2;", t.s, g.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 256, %s;", xo.s, t.s, xo.s); /* float index of this thread's first float4 */
  ptx_reg off = ptx_new(b, PTX_B64), src = ptx_new(b, PTX_B64);
  ptx_ins(b, "mul.wide.u32 %s, %s, 4;", off.s, xo.s);
  ptx_ins(b, "add.u64 %s, %s, %s;", src.s, L->x.s, off.s);
  *i_out = i, *u_out = u, *t_out = t;
  return src;
}

/* Float4s of x a thread has in flight at a time while staging. */
#define STAGE_LOADS 8u

/* Stages tile `tile` (register) of x into shared memory: the permuted values
 * and the group sums of each chunk. tile_len = chunks in this tile.
 *
 * Thread t takes float4 i = t mod 16 of chunks u = t/16, t/16 + threads/16,
 * ...: a warp reads two whole chunks, 512 contiguous bytes of x per load
 * (a chunk per thread would make each load touch 32 lines, and the L1 then
 * takes a cycle per line: 5 µs to stage k = 14336 on the H100). The loads
 * are all issued before any is used, STAGE_LOADS at a time. threads/16 is a
 * multiple of 4 (whole super-blocks), so the next chunk a thread takes is
 * 16*threads bytes further in x and threads bytes further in shared memory.
 * A group sum is the thread's 4 values added in order, then a butterfly
 * over the 16/sums threads holding the group: a fixed order for every batch
 * row, every tile and every m. */
static void emit_stage(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L, ptx_reg tile,
                       ptx_reg tile_len) {
  if (f->int_dot) {
    gemv_stage_int(b, p, f, L, tile, tile_len, 0, NULL);
    return;
  }
  const uint32_t per_group = 16 / p->sums, step = p->threads / 16, rounds = (p->tile_chunks + step - 1) / step;
  ptx_comment(b, "stage x: thread t takes float4 t%%16 of chunks t/16 + %u*j, all %u batch rows; group sums by "
                 "butterfly over %u threads", step, p->m, per_group);
  ptx_reg i, u, t, src = stage_thread_source(b, p, f, L, tile, NULL, 16, &i, &u, &t);
  ptx_reg dst = ptx_new(b, PTX_B32), sdst = ptx_new(b, PTX_B32), lead = ptx_new(b, PTX_PRED);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", dst.s, i.s, p->xs_stride, u.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", dst.s, dst.s, L->xs_base.s);
  ptx_udiv_const(b, t, i, per_group);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", sdst.s, u.s, p->sums, t.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", sdst.s, sdst.s, L->xsum_base.s);
  ptx_urem_const(b, t, i, per_group);
  ptx_ins(b, "setp.eq.u32 %s, %s, 0;", lead.s, t.s); /* the thread that stores its group's sum */
  /* Rounds past the tile's end exist only in a short last tile, or where the
   * tile is not a whole number of rounds: those are predicated, and their
   * values are zeros so that the butterfly adds finite values. */
  const uint32_t items = rounds * p->m;
  for (uint32_t first = 0; first < items; first += STAGE_LOADS) {
    const uint32_t count = items - first < STAGE_LOADS ? items - first : STAGE_LOADS;
    ptx_reg v[STAGE_LOADS][4];
    char guard[STAGE_LOADS][24]; /* "@%pN " or empty */
    ptx_reg in[STAGE_LOADS];
    for (uint32_t e = 0; e < count; e++) {
      const uint32_t r = (first + e) / rounds, j = (first + e) % rounds;
      for (int q = 0; q < 4; q++) v[e][q] = ptx_new(b, PTX_F32);
      if (stage_round_guard(b, p, u, t, j, step, tile_len, &in[e], guard[e]))
        for (int q = 0; q < 4; q++) ptx_op1i(b, "mov.b32", v[e][q], "0f00000000");
      ptx_ins(b, "%sld.global.v4.f32 {%s, %s, %s, %s}, [%s+%u];", guard[e], v[e][0].s, v[e][1].s, v[e][2].s,
              v[e][3].s, src.s, (r * p->k + j * step * 64) * 4);
    }
    for (uint32_t e = 0; e < count; e++) {
      const uint32_t r = (first + e) / rounds, j = (first + e) % rounds;
      ptx_ins(b, "%sst.shared.v4.f32 [%s+%u], {%s, %s, %s, %s};", guard[e], dst.s,
              (r * 16 * p->xs_stride + j * step) * 16, v[e][0].s, v[e][1].s, v[e][2].s, v[e][3].s);
      ptx_reg sum = ptx_new(b, PTX_F32), other = ptx_new(b, PTX_F32), store = lead;
      ptx_op3(b, "add.rn.f32", sum, v[e][0], v[e][1]);
      ptx_op3(b, "add.rn.f32", sum, sum, v[e][2]);
      ptx_op3(b, "add.rn.f32", sum, sum, v[e][3]);
      for (uint32_t d = 1; d < per_group; d *= 2) {
        ptx_shfl(b, "shfl.sync.bfly.b32", other, sum, d);
        ptx_op3(b, "add.rn.f32", sum, sum, other);
      }
      if (guard[e][0]) {
        store = ptx_new(b, PTX_PRED);
        ptx_ins(b, "and.pred %s, %s, %s;", store.s, lead.s, in[e].s);
      }
      ptx_ins(b, "@%s st.shared.f32 [%s+%u], %s;", store.s, sdst.s, (r * p->tile_chunks + j * step) * p->sums * 4,
              sum.s);
    }
  }
}

/* Stages tile `tile` of x for integer dot products (gemv_format.int_dot).
 * Per chunk u and batch row r, with e chosen so that the chunk's largest |x|
 * times 2^e is in [2^21, 2^22) (e <= 127; the scaling is exact):
 *   X = round(x * 2^e), at most 2^22 in magnitude, cut into byte planes
 *   X = 65536*P0 + 256*P1 + P2 (P0 = bits 16..23, signed; P1, P2 unsigned).
 *   The 16 bytes of plane p for values 16q..16q+15 of the chunk (q = 0..3)
 *   are at xs_base + ((r*16 + 4p + q)*xs_stride + u)*16: the float layout's
 *   addressing, 12 of its 16 units.
 *   At xsum_base + (r*tile_chunks + u)*16, the words {U0, U1, S, 0}: U_s the
 *   sum of X over values 32s..32s+31 (exact), S the high word of the fp64
 *   2^-e / 16 (a NaN where the chunk holds a NaN or an infinity, so that the
 *   products come out NaN as fp32 ones would).
 * Thread t takes values 8i..8i+7 (i = t mod 8) of chunks t/8 + threads/8*j:
 * a warp reads 4 whole chunks, 1 KB of x, per pair of loads. The chunk's
 * largest |x| is a butterfly of max over its 8 threads, a sub-block's sum
 * one of adds over 4: eight values a thread take fewer shuffles per value
 * than four (H100, twenty-fifth session, every Q4_K product with idp=1:
 * the decode step at m = 1 1660 -> 1637 µs, in two calls where the
 * default's measured 1683-1684; staging per block in o's kernel 0.98 ->
 * 0.75 µs, the float staging's 0.59). */
void gemv_stage_int(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L, ptx_reg tile,
                    ptx_reg tile_len, uint32_t frag_chunk_bytes, const ptx_reg *half) {
  const uint32_t step = p->threads / 8, rounds = (p->tile_chunks + step - 1) / step;
  const uint32_t x_chunks = half ? 2 : 1; /* x's chunks from one staged chunk to the next, in runs of 4 */
  ptx_comment(b, "stage x as byte planes of 23-bit integers under a power-of-two scale per chunk: thread t takes "
                 "values 8(t%%8).. of chunks t/8 + %u*j, all %u batch rows", step, p->m);
  ptx_reg i, u, t, src = stage_thread_source(b, p, f, L, tile, half, 8, &i, &u, &t);
  ptx_reg dst = ptx_new(b, PTX_B32), sdst = ptx_new(b, PTX_B32), lead4 = ptx_new(b, PTX_PRED);
  ptx_reg lead8 = ptx_new(b, PTX_PRED);
  /* Where a round's words go: dst (+ dst_row per batch row, + dst_plane per
   * plane, + round per round), plane 2 at dst2 the same way; U_(i/4) at
   * sdst and the scale at sdst8 (+ sum_row per batch row, + round). */
  ptx_reg dst2 = dst, sdst8 = sdst;
  uint32_t dst_row, dst_plane, sum_row, scale_row, round, scale_off;
  if (frag_chunk_bytes == 0) {
    ptx_comment(b, "this thread's two words of each plane: unit i/2, words 2(i%%2), 2(i%%2)+1");
    ptx_ins(b, "shr.u32 %s, %s, 1;", t.s, i.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", dst.s, t.s, p->xs_stride, u.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", dst.s, dst.s, L->xs_base.s);
    ptx_ins(b, "and.b32 %s, %s, 1;", t.s, i.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", dst.s, t.s, dst.s);
    ptx_ins(b, "shr.u32 %s, %s, 2;", t.s, i.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", t.s, u.s, t.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 4, %s;", sdst.s, t.s, L->xsum_base.s); /* U_(i/4) of chunk u */
    dst_row = 16 * p->xs_stride * 16, dst_plane = 4 * p->xs_stride * 16, round = step * 16;
    sum_row = scale_row = p->tile_chunks * 16, scale_off = 8; /* thread 0's sdst is U0's */
  } else {
    /* gemv_idp_mma.c's B fragments: per chunk (frag_chunk_bytes apart), for
     * each sub-block s and lane 4r + t' of batch row r, 16 bytes {P0, P1}
     * at 64ms + 16(4r + t'); then {P2 of s = 0, P2 of s = 1} at 128m +
     * 16(4r + t'); then {U0, U1} of each batch row at 192m + 8r, and the
     * scales at 200m + 4r. Thread i holds values 8i..8i+7: s = i/4, t' = i%4. */
    ptx_comment(b, "this thread's words of the B fragments: sub-block i/4, lane 4r + i%%4 of each batch row r");
    ptx_reg s = ptx_new(b, PTX_B32), base = ptx_new(b, PTX_B32);
    dst2 = ptx_new(b, PTX_B32);
    sdst8 = ptx_new(b, PTX_B32);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", base.s, u.s, frag_chunk_bytes, L->xs_base.s);
    ptx_ins(b, "shr.u32 %s, %s, 2;", s.s, i.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", sdst.s, s.s, 4u, base.s);
    ptx_ins(b, "add.u32 %s, %s, %u;", sdst.s, sdst.s, 192 * p->m);
    ptx_ins(b, "add.u32 %s, %s, %u;", sdst8.s, base.s, 200 * p->m);
    ptx_ins(b, "and.b32 %s, %s, 3;", t.s, i.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 16, %s;", base.s, t.s, base.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", dst.s, s.s, 64 * p->m, base.s);
    ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", dst2.s, s.s, base.s);
    ptx_ins(b, "add.u32 %s, %s, %u;", dst2.s, dst2.s, 128 * p->m);
    dst_row = 64, dst_plane = 8, round = step * frag_chunk_bytes;
    sum_row = 8, scale_row = 4, scale_off = 0;
  }
  ptx_ins(b, "and.b32 %s, %s, 3;", t.s, i.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, 0;", lead4.s, t.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, 0;", lead8.s, i.s);
  const uint32_t items = rounds * p->m, batch = STAGE_LOADS / 2;
  for (uint32_t first = 0; first < items; first += batch) {
    const uint32_t count = items - first < batch ? items - first : batch;
    ptx_reg v[STAGE_LOADS / 2][8], in[STAGE_LOADS / 2];
    char guard[STAGE_LOADS / 2][24];
    for (uint32_t e = 0; e < count; e++) {
      const uint32_t r = (first + e) / rounds, j = (first + e) % rounds;
      for (int q = 0; q < 8; q++) v[e][q] = ptx_new(b, PTX_B32);
      if (stage_round_guard(b, p, u, t, j, step, tile_len, &in[e], guard[e]))
        for (int q = 0; q < 8; q++) ptx_op1i(b, "mov.b32", v[e][q], "0");
      for (int h = 0; h < 2; h++)
        ptx_ins(b, "%sld.global.v4.b32 {%s, %s, %s, %s}, [%s+%u];", guard[e], v[e][4 * h].s, v[e][4 * h + 1].s,
                v[e][4 * h + 2].s, v[e][4 * h + 3].s, src.s,
                (r * p->k + j * step * 64 * x_chunks) * 4 + 16 * (uint32_t)h);
    }
    for (uint32_t e = 0; e < count; e++) {
      const uint32_t r = (first + e) / rounds, j = (first + e) % rounds;
      ptx_reg mx = ptx_new(b, PTX_B32), a = ptx_new(b, PTX_B32), ex = ptx_new(b, PTX_B32);
      ptx_reg up = ptx_new(b, PTX_F32), nonfinite = ptx_new(b, PTX_PRED), X[8];
      if (p->sm >= 80) { /* max.NaN keeps a NaN; ptxas folds the abs into the max */
        ptx_comment(b, "the chunk's largest |x| (NaN if any is), its scale");
        ptx_reg ab[8];
        for (int q = 0; q < 8; q++) {
          ab[q] = ptx_new(b, PTX_B32);
          ptx_op2(b, "abs.f32", ab[q], v[e][q]);
        }
        ptx_op3(b, "max.NaN.f32", mx, ab[0], ab[1]);
        for (int q = 2; q < 8; q++) ptx_op3(b, "max.NaN.f32", mx, mx, ab[q]);
        for (uint32_t d = 1; d < 8; d *= 2) {
          ptx_shfl(b, "shfl.sync.bfly.b32", a, mx, d);
          ptx_op3(b, "max.NaN.f32", mx, mx, a);
        }
      } else {
        ptx_comment(b, "the chunk's largest |x| (as bits: their order is the floats' order), its scale");
        ptx_op2i(b, "and.b32", mx, v[e][0], "0x7FFFFFFF");
        for (int q = 1; q < 8; q++) {
          ptx_op2i(b, "and.b32", a, v[e][q], "0x7FFFFFFF");
          ptx_op3(b, "max.u32", mx, mx, a);
        }
        for (uint32_t d = 1; d < 8; d *= 2) {
          ptx_shfl(b, "shfl.sync.bfly.b32", a, mx, d);
          ptx_op3(b, "max.u32", mx, mx, a);
        }
      }
      ptx_op2i(b, "shr.u32", ex, mx, "23");
      ptx_ins(b, "setp.eq.u32 %s, %s, 255;", nonfinite.s, ex.s);
      ptx_ins(b, "sub.u32 %s, 275, %s;", ex.s, ex.s); /* e + 127: 2^e times a largest |x| of exponent E is in [2^21, 2^22) */
      ptx_op2i(b, "min.u32", ex, ex, "254");
      ptx_op2i(b, "shl.b32", up, ex, "23"); /* 2^e */
      for (int q = 0; q < 8; q++) { /* x*2^e + 1.5*2^23 rounds x*2^e to an integer, which the low bits then hold */
        ptx_reg sx = ptx_new(b, PTX_B32);
        X[q] = ptx_new(b, PTX_B32);
        ptx_ins(b, "fma.rn.f32 %s, %s, %s, 0f4B400000;", sx.s, v[e][q].s, up.s);
        ptx_op2i(b, "sub.s32", X[q], sx, "0x4B400000");
      }
      static const char *const lo_sel[3] = {"0x0062", "0x0051", "0x0040"}; /* byte 2, 1, 0 of two words */
      for (uint32_t pl = 0; pl < 3; pl++) {
        ptx_reg w[2];
        for (int h = 0; h < 2; h++) {
          ptx_reg t01 = ptx_new(b, PTX_B32), t23 = ptx_new(b, PTX_B32);
          w[h] = ptx_new(b, PTX_B32);
          ptx_op3i(b, "prmt.b32", t01, X[4 * h], X[4 * h + 1], lo_sel[pl]);
          ptx_op3i(b, "prmt.b32", t23, X[4 * h + 2], X[4 * h + 3], lo_sel[pl]);
          ptx_op3i(b, "prmt.b32", w[h], t01, t23, "0x5410");
        }
        ptx_ins(b, "%sst.shared.v2.b32 [%s+%u], {%s, %s};", guard[e], pl < 2 ? dst.s : dst2.s,
                r * dst_row + (pl < 2 ? pl * dst_plane : frag_chunk_bytes ? 0 : 2 * dst_plane) + j * round,
                w[0].s, w[1].s);
      }
      ptx_reg sum = ptx_new(b, PTX_B32), other = ptx_new(b, PTX_B32), sh = ptx_new(b, PTX_B32);
      ptx_op3(b, "add.s32", sum, X[0], X[1]);
      for (int q = 2; q < 8; q++) ptx_op3(b, "add.s32", sum, sum, X[q]);
      for (uint32_t d = 1; d < 4; d *= 2) {
        ptx_shfl(b, "shfl.sync.bfly.b32", other, sum, d);
        ptx_op3(b, "add.s32", sum, sum, other);
      }
      ptx_ins(b, "sub.u32 %s, 1146, %s;", sh.s, ex.s); /* fp64 2^-e / 16: biased exponent 1023 - e - 4 */
      ptx_op2i(b, "shl.b32", sh, sh, "20");
      ptx_ins(b, "selp.b32 %s, 0x7FF80000, %s, %s;", sh.s, sh.s, nonfinite.s);
      ptx_reg s4 = lead4, s8 = lead8;
      if (guard[e][0]) {
        s4 = ptx_new(b, PTX_PRED);
        s8 = ptx_new(b, PTX_PRED);
        ptx_ins(b, "and.pred %s, %s, %s;", s4.s, lead4.s, in[e].s);
        ptx_ins(b, "and.pred %s, %s, %s;", s8.s, lead8.s, in[e].s);
      }
      ptx_ins(b, "@%s st.shared.b32 [%s+%u], %s;", s4.s, sdst.s, r * sum_row + j * round, sum.s);
      ptx_ins(b, "@%s st.shared.b32 [%s+%u], %s;", s8.s, sdst8.s, r * scale_row + j * round + scale_off, sh.s);
    }
  }
}

/* (gemv.h) */
ptx_reg gemv_segment_select(ptx_builder *b, uint32_t segments, const uint32_t seg_n[3], const ptx_reg *bases,
                            ptx_reg row, ptx_reg *stride_out) {
  ptx_reg base = ptx_new(b, PTX_B64), in = ptx_new(b, PTX_PRED), local = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.b64 %s, %s;", base.s, bases[0].s);
  if (stride_out) {
    *stride_out = ptx_new(b, PTX_B32);
    ptx_ins(b, "mov.u32 %s, %u;", stride_out->s, seg_n[0] * 4);
  }
  ptx_reg joint = ptx_new(b, PTX_B32); /* the row before it is made local */
  ptx_ins(b, "mov.u32 %s, %s;", joint.s, row.s);
  uint32_t start = 0;
  for (uint32_t i = 1; i < segments; i++) {
    start += seg_n[i - 1];
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", in.s, joint.s, start);
    ptx_ins(b, "selp.b64 %s, %s, %s, %s;", base.s, bases[i].s, base.s, in.s);
    if (stride_out) ptx_ins(b, "selp.b32 %s, %u, %s, %s;", stride_out->s, seg_n[i] * 4, stride_out->s, in.s);
    ptx_ins(b, "sub.u32 %s, %s, %u;", local.s, joint.s, start);
    ptx_ins(b, "selp.b32 %s, %s, %s, %s;", row.s, local.s, row.s, in.s);
  }
  return base;
}

/* RoPE (neox) rotates the pairs (i, i + n_dims/2) of a head, and a warp's
 * rows must be such pairs: in the q and k segments, the joint row's local
 * index j (in place) is mapped to the head row it computes. With pair
 * P = j/2 and member r = j%2, head h = P / (head_dim/2) and its pair
 * i = P mod (head_dim/2): row h*head_dim + i + r*n_dims/2 while i < n_dims/2,
 * else h*head_dim + 2i + r (dims past n_dims, not rotated: j itself). The
 * normal mode's pairs (2i, 2i+1) are j itself: no mapping. */
static void emit_rope_row(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, ptx_reg joint, ptx_reg row) {
  if (p->rope != 2) return;
  const uint32_t half = s->head_dim / 2, rot_pairs = s->n_dims / 2;
  ptx_comment(b, "RoPE neox: a warp's rows are the pairs (i, i + %u) of a head", rot_pairs);
  ptx_reg P = ptx_new(b, PTX_B32), r = ptx_new(b, PTX_B32), i = ptx_new(b, PTX_B32), head = ptx_new(b, PTX_B32);
  ptx_reg mapped = ptx_new(b, PTX_B32), use = ptx_new(b, PTX_PRED);
  ptx_ins(b, "shr.u32 %s, %s, 1;", P.s, row.s);
  ptx_ins(b, "and.b32 %s, %s, 1;", r.s, row.s);
  ptx_udiv_const(b, head, P, half);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", i.s, head.s, half);
  ptx_ins(b, "sub.u32 %s, %s, %s;", i.s, P.s, i.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", mapped.s, r.s, rot_pairs, i.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", mapped.s, head.s, s->head_dim, mapped.s);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", use.s, i.s, rot_pairs);
  ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, %s;", use.s, joint.s, p->seg_n[0] + p->seg_n[1], use.s);
  ptx_ins(b, "selp.b32 %s, %s, %s, %s;", row.s, mapped.s, row.s, use.s);
}

/* The warp's first row in unit `unit` (a task of its own, or its place in
 * the block's row group). */
static ptx_reg emit_row0(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, ptx_reg unit) {
  ptx_reg row0 = ptx_new(b, PTX_B32);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", row0.s, unit.s, p->unit_rows);
  if (!p->warp_tasks) ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", row0.s, L->warp.s, p->rows, row0.s);
  return row0;
}

/* (gemv.h) */
void gemv_row_pointers(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_lane *L, ptx_reg group,
                       const ptx_reg *rowp) {
  ptx_reg row0 = emit_row0(b, p, L, group);
  for (uint32_t r = 0; r < p->rows; r++) {
    ptx_reg row = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64);
    ptx_ins(b, "add.u32 %s, %s, %u;", row.s, row0.s, r);
    ptx_ins(b, "min.u32 %s, %s, %u;", row.s, row.s, p->n_total - 1);
    ptx_reg base = L->W, joint = ptx_new(b, PTX_B32);
    ptx_ins(b, "mov.u32 %s, %s;", joint.s, row.s);
    if (p->segments > 1) base = gemv_segment_select(b, p->segments, p->seg_n, L->Ws, row, NULL);
    emit_rope_row(b, p, s, joint, row);
    ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, row.s, p->row_stride);
    ptx_op3(b, "add.u64", rowp[r], base, off);
    if (p->glu) ptx_op3(b, "add.u64", rowp[p->rows + r], L->U, off);
  }
}

/* Fresh registers for one chunk's raw loads, of the format's types. */
static void new_raw(ptx_builder *b, const gemv_plan *p, const gemv_format *f, gemv_raw *raw) {
  for (uint32_t r = 0; r < p->load_rows; r++)
    for (uint32_t i = 0; i < f->raw_count; i++) raw->r[r][i] = ptx_new(b, f->raw_types[i]);
}

static void copy_raw(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_raw *dst,
                     const gemv_raw *src) {
  for (uint32_t r = 0; r < p->load_rows; r++)
    for (uint32_t i = 0; i < f->raw_count; i++)
      ptx_op2(b, f->raw_types[i] == PTX_B16 ? "mov.b16" : "mov.b32", dst->r[r][i], src->r[r][i]);
}

/* Loads the lane's first chunk (g = lane) of row group `group` into raw, if
 * both exist. Only with one tile (the chunk index is then g itself). */
static void emit_first_chunk_load(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                                  ptx_reg group, const ptx_reg *rowp, const gemv_raw *raw) {
  ptx_reg have = ptx_new(b, PTX_PRED);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", have.s, L->lane.s, p->chunks);
  ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, %s;", have.s, group.s, p->units, have.s);
  f->load(b, p, L, rowp, L->lane, have.s, raw);
}

/* The lane's chunk u = lane + 32*i of a row (one tile: u is also g); with
 * `missing`, a predicate also set where that chunk is past the row's end. */
static ptx_reg lane_chunk(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, uint32_t i, ptx_reg *missing) {
  ptx_reg u = ptx_new(b, PTX_B32);
  ptx_ins(b, "add.u32 %s, %s, %u;", u.s, L->lane.s, 32 * i);
  if (missing) {
    *missing = ptx_new(b, PTX_PRED);
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", missing->s, u.s, p->chunks);
  }
  return u;
}

/* Of the rows [lo, lo + rows) of a chunk's loads, how many come before
 * load number `at` (0..rows). */
static uint32_t rows_before(uint32_t at, uint32_t lo, uint32_t rows) {
  return at <= lo ? 0 : at - lo < rows ? at - lo : rows;
}

/* Loads [first, end) of the lane's lane_chunks x load_rows loads of row
 * group `group` (if it exists), chunk by chunk and in each chunk row by
 * row: chunk i into raws[i]. */
static void emit_group_load_range(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                                  ptx_reg group, const ptx_reg *rowp, const gemv_raw *raws, uint32_t first,
                                  uint32_t end) {
  ptx_reg have = ptx_new(b, PTX_PRED);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", have.s, group.s, p->units);
  for (uint32_t i = 0; i < p->lane_chunks; i++) {
    const uint32_t lo = i * p->load_rows, r0 = rows_before(first, lo, p->load_rows),
                   r1 = rows_before(end, lo, p->load_rows);
    if (r0 >= r1) continue;
    const bool partial = 32 * (i + 1) > p->chunks;
    ptx_reg guard = have, u = lane_chunk(b, p, L, i, NULL);
    if (partial) {
      guard = ptx_new(b, PTX_PRED);
      ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, %s;", guard.s, u.s, p->chunks, have.s);
    }
    /* the format loads rows [0, load_rows) of a plan: give it rows r0..r1 as those */
    gemv_plan rows = *p;
    rows.load_rows = r1 - r0;
    gemv_raw dst;
    for (uint32_t r = 0; r < rows.load_rows; r++) memcpy(dst.r[r], raws[i].r[r0 + r], sizeof dst.r[r]);
    f->load(b, &rows, L, rowp + r0, u, guard.s, &dst);
  }
}

/* Loads all the lane's chunks of row group `group`: the whole group in
 * flight at once. */
static void emit_group_load(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                            ptx_reg group, const ptx_reg *rowp, const gemv_raw *raws) {
  emit_group_load_range(b, p, f, L, group, rowp, raws, 0, p->lane_chunks * p->load_rows);
}

/* Computes the lane's chunks of a group loaded by emit_group_load, in
 * increasing g (the order every other mode uses). */
static void emit_group_compute(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                               const gemv_raw *raws, ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  for (uint32_t i = 0; i < p->lane_chunks; i++) {
    const bool partial = 32 * (i + 1) > p->chunks;
    ptx_reg missing, u = lane_chunk(b, p, L, i, partial ? &missing : NULL);
    char skip[32];
    if (partial) {
      ptx_label_new(b, "no_chunk", skip);
      ptx_ins(b, "@%s bra %s;", missing.s, skip);
    }
    f->compute(b, p, L, &raws[i], u, acc);
    if (partial) ptx_label(b, skip);
  }
}

/* The chunk loop of one row group: over the tiles of k (staging each) and
 * the lane's chunks of each, loads one chunk ahead (GEMV_PRELOAD_CHUNK: the
 * first already in cur) or none. */
static void emit_chunk_loop(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L,
                            ptx_reg tile, ptx_reg tile_len, const ptx_reg *rowp, const gemv_raw *cur,
                            const gemv_raw *next, ptx_reg early, ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  char tile_loop[32], tile_done[32], chunk_loop[32], chunk_done[32];
  ptx_label_new(b, "tile", tile_loop);
  ptx_label_new(b, "tile_done", tile_done);
  ptx_label_new(b, "chunk", chunk_loop);
  ptx_label_new(b, "chunk_done", chunk_done);
  ptx_reg pr = ptx_new(b, PTX_PRED);
  if (p->tiles > 1) {
    ptx_comment(b, "tiles of k: stage x, then every warp consumes it");
    ptx_ins(b, "mov.u32 %s, 0;", tile.s);
    ptx_label(b, tile_loop);
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", pr.s, tile.s, p->tiles);
    ptx_ins(b, "@%s bra %s;", pr.s, tile_done);
    ptx_reg rest = ptx_new(b, PTX_B32);
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", rest.s, tile.s, p->tile_chunks);
    ptx_ins(b, "sub.u32 %s, %u, %s;", rest.s, p->chunks, rest.s);
    ptx_ins(b, "min.u32 %s, %s, %u;", tile_len.s, rest.s, p->tile_chunks);
    ptx_ins(b, "bar.sync 0;");
    emit_stage(b, p, f, L, tile, tile_len);
    ptx_ins(b, "bar.sync 0;");
  }
  /* This lane owns the chunks g = lane (mod 32); in this tile, the first is
   * u = (lane - first chunk of the tile) mod 32. */
  ptx_comment(b, "chunks of this tile owned by this lane: g = lane (mod 32)");
  ptx_reg base = ptx_new(b, PTX_B32), u = ptx_new(b, PTX_B32);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", base.s, tile.s, p->tile_chunks);
  ptx_ins(b, "sub.u32 %s, %s, %s;", u.s, L->lane.s, base.s);
  ptx_ins(b, "and.b32 %s, %s, 31;", u.s, u.s);
  ptx_label(b, chunk_loop);
  ptx_ins(b, "setp.ge.u32 %s, %s, %s;", pr.s, u.s, tile_len.s);
  ptx_ins(b, "@%s bra %s;", pr.s, chunk_done);
  if (p->preload == GEMV_PRELOAD_CHUNK) {
    /* x is staged once (one tile), so g = u; the next chunk's loads are in
     * flight while this one is computed */
    ptx_reg un = ptx_new(b, PTX_B32), more = ptx_new(b, PTX_PRED);
    ptx_ins(b, "add.u32 %s, %s, 32;", un.s, u.s);
    if (early.s[0]) { /* the block's first group: its second chunk went out before x was staged */
      ptx_ins(b, "setp.lt.and.u32 %s, %s, %u, !%s;", more.s, un.s, p->chunks, early.s);
      ptx_ins(b, "xor.pred %s, %s, %s;", early.s, early.s, early.s); /* false from now on */
    } else {
      ptx_ins(b, "setp.lt.u32 %s, %s, %u;", more.s, un.s, p->chunks);
    }
    ptx_comment(b, "load the lane's next chunk, then compute this one");
    f->load(b, p, L, rowp, un, more.s, next);
    f->compute(b, p, L, cur, u, acc);
    copy_raw(b, p, f, cur, next);
  } else {
    ptx_reg g = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %s;", g.s, base.s, u.s);
    f->load(b, p, L, rowp, g, NULL, cur);
    f->compute(b, p, L, cur, u, acc);
  }
  ptx_ins(b, "add.u32 %s, %s, 32;", u.s, u.s);
  ptx_ins(b, "bra.uni %s;", chunk_loop); /* divergent only at the last chunk */
  ptx_label(b, chunk_done);
  if (p->tiles > 1) {
    ptx_ins(b, "add.u32 %s, %s, 1;", tile.s, tile.s);
    ptx_ins(b, "bra.uni %s;", tile_loop);
    ptx_label(b, tile_done);
  }
}

/* RoPE on the warp's sums before they are stored: in the q and k segments,
 * rows r and r+1 of a warp are a rotation pair (emit_rope_row), rotated at
 * each batch row's (token's) position with the rope kernel's instructions. */
static void emit_rope_epilogue(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_lane *L,
                               ptx_reg row0, ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  const uint32_t half = s->head_dim / 2, rot_pairs = s->n_dims / 2;
  ptx_comment(b, "RoPE: rotate the warp's row pairs of q and k heads at the tokens' positions");
  for (uint32_t r = 0; r + 1 < p->rows; r += 2) {
    ptx_reg joint = ptx_new(b, PTX_B32), local = ptx_new(b, PTX_B32), i = ptx_new(b, PTX_B32);
    ptx_reg in_k = ptx_new(b, PTX_PRED), skip = ptx_new(b, PTX_PRED);
    ptx_ins(b, "add.u32 %s, %s, %u;", joint.s, row0.s, r);
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", in_k.s, joint.s, p->seg_n[0]);
    ptx_ins(b, "sub.u32 %s, %s, %u;", local.s, joint.s, p->seg_n[0]);
    ptx_ins(b, "selp.b32 %s, %s, %s, %s;", local.s, local.s, joint.s, in_k.s);
    ptx_ins(b, "shr.u32 %s, %s, 1;", i.s, local.s);
    ptx_urem_const(b, i, i, half); /* the pair within its head */
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", skip.s, i.s, rot_pairs);
    ptx_ins(b, "setp.ge.or.u32 %s, %s, %u, %s;", skip.s, joint.s, p->seg_n[0] + p->seg_n[1], skip.s);
    char done[32];
    ptx_label_new(b, "rope_done", done);
    ptx_ins(b, "@%s bra %s;", skip.s, done);
    for (uint32_t m = 0; m < p->m; m++) {
      ptx_reg pos = ptx_new(b, PTX_B32), posd = ptx_new(b, PTX_B64), c, sn, y0, y1;
      ptx_ins(b, "ld.global.s32 %s, [%s+%u];", pos.s, L->positions.s, 4 * m);
      ptx_ins(b, "cvt.rn.f64.s32 %s, %s;", posd.s, pos.s);
      rope_emit_cos_sin(b, s, i, posd, L->ff, &c, &sn);
      rope_emit_rotate(b, acc[r][m], acc[r + 1][m], c, sn, &y0, &y1);
      ptx_op2(b, "mov.b32", acc[r][m], y0);
      ptx_op2(b, "mov.b32", acc[r + 1][m], y1);
    }
    ptx_label(b, done);
  }
}

int gemv_emit(const ptxgen_spec *spec, const gemv_format *f, ptxgen_kernel *out) {
  const gemv_plan p = plan_for(spec, f);
  if (gemv_entry_name(spec, f->name, out) != PTXGEN_OK) return PTXGEN_ERR_SPEC;
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(p.sm), p.sm);
  if (p.rope) rope_emit_freq_table(&b, spec);
  /* Up to 256 threads a block can have the most registers ptxas uses (255)
   * and the PTX says nothing; past that, ptxas must know the block size. */
  const uint32_t maxntid = p.threads > 256 ? p.threads : 0;
  int param_count;
  const char *const *params = gemv_param_names(spec, &param_count);
  ptx_entry(&b, out->entry, params, param_count, 1, maxntid);
  if (p.segments > 1)
    ptx_comment(&b, "%u weights in one row space: rows [0, %u), then [%u, %u)%s", p.segments, p.seg_n[0], p.seg_n[0],
                p.seg_n[0] + p.seg_n[1], p.segments > 2 ? ", then the rest" : "");
  if (p.glu)
    ptx_comment(&b, "gated: y = %s(x . W^T) * (x . U^T), each product as the plain GEMV computes it",
                p.glu == 1 ? "silu" : "gelu");
  ptx_comment(&b, "y[%u][%u] = x[%u][%u] . W[%u][%u]^T; %u rows per warp, %u warps per block, "
                  "%u row groups; x staged %u chunks (%u weights) at a time, %u tile(s)",
              p.m, p.n, p.m, p.k, p.n, p.k, p.rows, p.warps, p.groups, p.tile_chunks, p.tile_chunks * 64, p.tiles);

  gemv_lane L;
  emit_lane_consts(&b, &p, spec, f, &L);
  ptx_reg group = ptx_new(&b, PTX_B32), ncta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", group.s);
  ptx_ins(&b, "mov.u32 %s, %%nctaid.x;", ncta.s);
  if (p.warp_tasks) {
    ptx_comment(&b, "each warp walks tasks of %u row(s): block*%u + warp, stride blocks*%u", p.rows, p.warps, p.warps);
    ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", group.s, group.s, p.warps, L.warp.s);
    ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", ncta.s, ncta.s, p.warps);
  }
  ptx_reg rowp[GEMV_MAX_LOAD_ROWS];
  for (uint32_t r = 0; r < p.load_rows; r++) rowp[r] = ptx_new(&b, PTX_B64);
  gemv_raw cur, next, group_raws[MAX_LANE_CHUNKS];
  new_raw(&b, &p, f, &cur);
  new_raw(&b, &p, f, &next);
  if (p.preload == GEMV_PRELOAD_GROUP)
    for (uint32_t i = 0; i < p.lane_chunks; i++) new_raw(&b, &p, f, &group_raws[i]);

  gemv_ring ring;
  if (p.preload == GEMV_PRELOAD_BULK) {
    gemv_ring_prologue(&b, &p, f, spec, &L, &ring, group, ncta);
  } else if (p.preload != GEMV_PRELOAD_OFF) {
    /* Weights do not depend on earlier kernels: the first loads go out
     * before the wait for them and the staging of x, which they overlap. */
    gemv_row_pointers(&b, &p, spec, &L, group, rowp);
    if (p.preload == GEMV_PRELOAD_GROUP) {
      ptx_comment(&b, "preload: %u of this lane's %u loads (%u chunk(s) x %u row(s)) of the block's first row group",
                  p.pre_wait_loads, p.lane_chunks * p.load_rows, p.lane_chunks, p.load_rows);
      emit_group_load_range(&b, &p, f, &L, group, rowp, group_raws, 0, p.pre_wait_loads);
    } else {
      ptx_comment(&b, "preload: this lane's first chunk of the block's first row group");
      emit_first_chunk_load(&b, &p, f, &L, group, rowp, &cur);
    }
  }
  ptx_grid_dependency_sync(&b);
  if (p.preload == GEMV_PRELOAD_GROUP && p.pre_wait_loads < p.lane_chunks * p.load_rows) {
    ptx_comment(&b, "the rest of the first group's loads, held back so that they do not queue ahead of the grid "
                    "before");
    emit_group_load_range(&b, &p, f, &L, group, rowp, group_raws, p.pre_wait_loads, p.lane_chunks * p.load_rows);
  }

  ptx_reg early = {{0}};
  if (p.preload == GEMV_PRELOAD_CHUNK && f->second_chunk_early) {
    /* Staging x takes a few µs (k = 14336: 57 KB per block from L2): keep
     * the weights streaming meanwhile with the first group's second chunk. */
    ptx_comment(&b, "the first group's second chunk, in flight while x is staged");
    ptx_reg un = ptx_new(&b, PTX_B32), have = ptx_new(&b, PTX_PRED);
    early = ptx_new(&b, PTX_PRED);
    ptx_ins(&b, "add.u32 %s, %s, 32;", un.s, L.lane.s);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", have.s, un.s, p.chunks);
    ptx_ins(&b, "setp.lt.and.u32 %s, %s, %u, %s;", have.s, group.s, p.units, have.s);
    f->load(&b, &p, &L, rowp, un, have.s, &next);
    ptx_ins(&b, "setp.eq.u32 %s, %s, %s;", early.s, L.lane.s, L.lane.s); /* true */
  }
  ptx_reg tile = ptx_new(&b, PTX_B32), tile_len = ptx_new(&b, PTX_B32);
  if (p.tiles == 1) {
    ptx_ins(&b, "mov.u32 %s, 0;", tile.s);
    ptx_ins(&b, "mov.u32 %s, %u;", tile_len.s, p.chunks);
    emit_stage(&b, &p, f, &L, tile, tile_len);
    ptx_ins(&b, "bar.sync 0;");
  }

  ptx_comment(&b, p.warp_tasks ? "the warp's tasks, grid-stride" : "row groups, grid-stride");
  char group_loop[32], group_done[32];
  ptx_label_new(&b, "group", group_loop);
  ptx_label_new(&b, "group_done", group_done);
  ptx_label(&b, group_loop);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, group.s, p.units);
  ptx_ins(&b, "@%s bra %s;", pr.s, group_done);
  if (p.preload == GEMV_PRELOAD_OFF) gemv_row_pointers(&b, &p, spec, &L, group, rowp);
  ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M];
  for (uint32_t r = 0; r < p.load_rows; r++)
    for (uint32_t m = 0; m < p.m; m++) {
      if (f->int_dot) { /* fp64 sums (gemv_format.int_dot) */
        acc[r][m] = ptx_new(&b, PTX_B64);
        ptx_op1i(&b, "mov.b64", acc[r][m], "0d0000000000000000");
        continue;
      }
      acc[r][m] = ptx_new(&b, PTX_F32);
      ptx_op1i(&b, "mov.b32", acc[r][m], "0f00000000");
    }
  if (p.preload == GEMV_PRELOAD_GROUP) {
    ptx_comment(&b, "the lane's chunks of this group, already loaded");
    emit_group_compute(&b, &p, f, &L, group_raws, acc);
  } else if (p.preload == GEMV_PRELOAD_BULK) {
    gemv_ring_rounds(&b, &p, spec, f, &L, &ring, ncta, &cur, acc);
  } else {
    emit_chunk_loop(&b, &p, f, &L, tile, tile_len, rowp, &cur, &next, early, acc);
  }

  ptx_reg row0 = emit_row0(&b, &p, &L, group);
  ptx_ins(&b, "add.u32 %s, %s, %s;", group.s, group.s, ncta.s);
  if (p.preload == GEMV_PRELOAD_GROUP) {
    ptx_comment(&b, "load the lane's chunks of the block's next row group, then finish this one");
    gemv_row_pointers(&b, &p, spec, &L, group, rowp);
    emit_group_load(&b, &p, f, &L, group, rowp, group_raws);
  } else if (p.preload == GEMV_PRELOAD_CHUNK) {
    ptx_comment(&b, "preload the first chunk of the block's next row group, then finish this one");
    gemv_row_pointers(&b, &p, spec, &L, group, rowp);
    emit_first_chunk_load(&b, &p, f, &L, group, rowp, &cur);
  }

  ptx_comment(&b, "sum the 32 lanes (butterfly: every lane ends with the same total) and store");
  for (uint32_t r = 0; r < p.load_rows; r++)
    for (uint32_t m = 0; m < p.m; m++) {
      if (f->int_dot) {
        ptx_reg lo = ptx_new(&b, PTX_B32), hi = ptx_new(&b, PTX_B32), t = ptx_new(&b, PTX_B64);
        for (int off = 16; off >= 1; off /= 2) {
          ptx_ins(&b, "mov.b64 {%s, %s}, %s;", lo.s, hi.s, acc[r][m].s);
          ptx_shfl(&b, "shfl.sync.bfly.b32", lo, lo, (uint32_t)off);
          ptx_shfl(&b, "shfl.sync.bfly.b32", hi, hi, (uint32_t)off);
          ptx_ins(&b, "mov.b64 %s, {%s, %s};", t.s, lo.s, hi.s);
          ptx_ins(&b, "add.rn.f64 %s, %s, %s;", acc[r][m].s, acc[r][m].s, t.s);
        }
        ptx_reg y = ptx_new(&b, PTX_F32);
        ptx_ins(&b, "cvt.rn.f32.f64 %s, %s;", y.s, acc[r][m].s);
        acc[r][m] = y;
        continue;
      }
      for (int off = 16; off >= 1; off /= 2) {
        ptx_reg t = ptx_new(&b, PTX_F32);
        ptx_shfl(&b, "shfl.sync.bfly.b32", t, acc[r][m], (uint32_t)off);
        ptx_op3(&b, "add.rn.f32", acc[r][m], acc[r][m], t);
      }
    }
  if (p.rope) emit_rope_epilogue(&b, &p, spec, &L, row0, acc);
  ptx_reg lane0 = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "setp.eq.u32 %s, %s, 0;", lane0.s, L.lane.s);
  for (uint32_t r = 0; r < p.rows; r++) {
    ptx_reg row = ptx_new(&b, PTX_B32), ok = ptx_new(&b, PTX_PRED), off = ptx_new(&b, PTX_B64);
    ptx_reg ya = ptx_new(&b, PTX_B64);
    ptx_ins(&b, "add.u32 %s, %s, %u;", row.s, row0.s, r);
    ptx_ins(&b, "setp.lt.and.u32 %s, %s, %u, %s;", ok.s, row.s, p.n_total, lane0.s);
    ptx_reg ybase = L.y, ystride = {{0}}, joint = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "mov.u32 %s, %s;", joint.s, row.s);
    if (p.segments > 1) ybase = gemv_segment_select(&b, p.segments, p.seg_n, L.ys, row, &ystride);
    emit_rope_row(&b, &p, spec, joint, row);
    ptx_ins(&b, "mul.wide.u32 %s, %s, 4;", off.s, row.s);
    ptx_ins(&b, "add.u64 %s, %s, %s;", ya.s, ybase.s, off.s);
    for (uint32_t m = 0; m < p.m; m++) {
      ptx_reg v = acc[r][m];
      if (p.glu) { /* act(gate) * up, the arithmetic of the swiglu/geglu kernels */
        ptx_reg a = emit_activation(&b, p.glu == 1 ? PTXGEN_KIND_SWIGLU : PTXGEN_KIND_GEGLU, acc[r][m], false);
        v = ptx_new(&b, PTX_F32);
        ptx_ins(&b, "mul.rn.f32 %s, %s, %s;", v.s, a.s, acc[p.rows + r][m].s);
      }
      if (p.segments > 1 && m > 0) { /* the segment's row stride is not a constant */
        ptx_reg step = gemv_u64_of(&b, ystride);
        ptx_ins(&b, "add.u64 %s, %s, %s;", ya.s, ya.s, step.s);
      }
      ptx_ins(&b, "@%s st.global.f32 [%s+%u], %s;", ok.s, ya.s, p.segments > 1 ? 0 : m * p.n * 4, v.s);
    }
  }
  ptx_ins(&b, "bra.uni %s;", group_loop);
  ptx_label(&b, group_done);
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  uint32_t grid = p.groups < GRID_CAP ? p.groups : GRID_CAP;
  out->geometry = (ptxgen_geometry){{grid, 1, 1}, {p.threads, 1, 1}, p.shared_bytes, 0};
  return PTXGEN_OK;
}
