/*
 * gemv.h: the skeleton shared by the quantized GEMV generators (internal).
 *
 * gemv.c writes everything that does not depend on the weight format: the
 * staging of x in shared memory, the row groups, the tiles of k, the lane ->
 * chunk assignment, the reduction across lanes and the stores. A format
 * (gemv_q4k.c, gemv_q6k.c) supplies how a chunk of 64 weights is laid out,
 * which x values it multiplies, and the instructions that load, dequantize
 * and accumulate it.
 *
 * Chunks: each super-block of 256 weights is cut into 4 chunks of 64;
 * chunk g of a row is super-block g / 4, part c = g % 4. Lane l of a warp
 * owns the chunks g = l (mod 32) of every row of its warp, so c = l % 4 is a
 * per-lane constant, and the order in which a lane accumulates its chunks
 * does not depend on the batch size m.
 */
#ifndef PTXGEN_GEMV_H
#define PTXGEN_GEMV_H

#include <stdbool.h>

#include "ptx.h"
#include "ptxgen.h"

/* How far a lane's weight loads run ahead of its arithmetic. Weights never
 * depend on earlier kernels, so whatever is preloaded for the block's first
 * row group goes out before the kernel waits for them. */
typedef enum gemv_preload {
  GEMV_PRELOAD_OFF,   /* load a chunk, then compute it */
  GEMV_PRELOAD_CHUNK, /* one chunk ahead (x staged in one tile) */
  GEMV_PRELOAD_GROUP, /* all the lane's chunks of the next row group at once (one tile, few chunks per lane) */
  GEMV_PRELOAD_BULK,  /* the copy engine streams each warp's rows into a ring in shared memory (sm_90+) */
} gemv_preload;

/* Every choice the skeleton makes from a spec, in one place. */
typedef struct gemv_plan {
  uint32_t k, n, m, sm;
  uint32_t rows, warps, threads; /* rows per warp, warps per block, threads per block */
  uint32_t glu;                  /* 0, or the gated epilogue (spec->glu) */
  uint32_t segments;             /* weights side by side in the row space (spec->n2, n3): 1..3 */
  uint32_t seg_n[3];             /* their rows; rows [0, n_total) walk them in order */
  uint32_t n_total;
  uint32_t rope;                 /* spec->rope: 0, or RoPE on the rows [0, seg_n[0] + seg_n[1]) (q and k) */
  uint32_t load_rows;            /* weight rows a warp reads per chunk: rows, twice that with glu */
  uint32_t row_stride;           /* bytes from one row of W to the next */
  uint32_t chunks;               /* per row: k / 64 */
  uint32_t tile_chunks;          /* chunks of x staged at a time */
  uint32_t xs_stride;            /* chunks per float4 row of staged x: tile_chunks made odd (no bank conflicts) */
  uint32_t tiles;
  uint32_t groups;               /* row groups of rows*warps rows */
  /* What a warp walks, with a grid stride: its own tasks of `rows` rows
   * (task = block*warps + warp, stride blocks*warps; only where x is staged
   * once: no barrier in the loop), or its block's row groups together.
   * units: how many there are; unit_rows: rows per unit. */
  bool warp_tasks;
  uint32_t units, unit_rows;
  uint32_t sums;                 /* sums of x per chunk and batch row */
  gemv_preload preload;          /* how far the loads run ahead of the arithmetic (spec->preload) */
  uint32_t lane_chunks;          /* chunks a lane owns per row: ceil(chunks / 32) */
  /* GEMV_PRELOAD_GROUP: how many of the first group's loads (lane_chunks x
   * load_rows, chunk by chunk, row by row) go out before the wait for the
   * grid before; the rest go out right after it, before x is staged. */
  uint32_t pre_wait_loads;
  uint32_t xs_bytes, shared_bytes;
  /* GEMV_PRELOAD_BULK: a warp's rows are copied a round at a time (32
   * chunks, 8 super-blocks, of each of its load_rows rows: round_bytes per
   * row in the stage; the last round has last_round_sbs super-blocks) into
   * its own ring of ring_stages stages, each with an mbarrier; ring_off and
   * mbar_off are their offsets in shared memory. */
  uint32_t ring_stages, round_bytes, last_round_sbs, stage_bytes, ring_off, mbar_off;
} gemv_plan;

/* Registers live for the whole kernel. */
typedef struct gemv_lane {
  ptx_reg tid, lane, warp, c;  /* c = lane % 4: the part of every super-block this lane reads */
  ptx_reg half_exp;            /* 0x3F000000: 0.5, the float template quants are placed under */
  ptx_reg xs_base, xsum_base;  /* shared addresses of the staged x and its sums */
  ptx_reg W, U, x, y;          /* global addresses (U: the up weight of a glu kernel) */
  ptx_reg Ws[3], ys[3];        /* per segment: W and y first, then W2, y2 (, W3, y3) */
  ptx_reg positions, ff;       /* with RoPE: the token positions and freq_factors parameters */
  ptx_reg fmt[10];             /* the format's own constants */
} gemv_lane;

#define GEMV_MAX_LOAD_ROWS 8

/* The raw registers of one chunk's loads, per weight row the warp reads. */
#define GEMV_MAX_RAW 16
typedef struct gemv_raw {
  ptx_reg r[GEMV_MAX_LOAD_ROWS][GEMV_MAX_RAW];
} gemv_raw;

typedef struct gemv_format {
  const char *name;  /* entry-name prefix, e.g. "q4k_gemv" */
  uint32_t sums;     /* 2: x sums over float4s 0-7 and 8-15 of a chunk; 4: over each 4 */
  uint32_t (*row_stride)(uint32_t k);
  /* Float offset, within its super-block, of chunk part c's float4 i is
   * x_base(c) + x_offset(i); both are emitted (c and i are registers). The
   * float4s 16/sums*s .. 16/sums*(s+1)-1 of a chunk, whose sum is sum s, are
   * consecutive in x. */
  void (*x_base)(ptx_builder *b, ptx_reg c, ptx_reg out);
  void (*x_offset)(ptx_builder *b, ptx_reg i, ptx_reg out);
  void (*lane_consts)(ptx_builder *b, const gemv_plan *p, gemv_lane *L);
  /* Whether, one chunk ahead, the block's first group also loads its second
   * chunk while x is staged. H100, decode step m = 1: Q4_K down 1818 ->
   * 1776 µs; with Q6_K too, 1791 (its down kernel got slower). */
  bool second_chunk_early;
  /* Products of at least this many weights (n x k, all the weights of a
   * multi-weight kernel together) run batches of more than 8 rows as
   * launches of 8 where the larger batch would cost the kernel more per
   * row (gemv_batch_rows). */
  uint64_t batch_split_min_weights;
  /* A row's layout as planes, for the copy engine's ring
   * (GEMV_PRELOAD_BULK): plane i holds plane_sb_bytes[i] bytes of each of
   * the row's nb super-blocks from byte nb*plane_start[i] of the row (one
   * plane: super-blocks as stored). A round (8 super-blocks) is copied plane
   * by plane into a stage laid out the same way with nb = 8, so the
   * format's loads address a stage as they address a row with 8 super-blocks.
   * planes = 0: no ring. */
  uint32_t planes;
  uint32_t plane_start[4], plane_sb_bytes[4];
  /* A chunk's loads land in raw_count registers per row, of raw_types. */
  uint32_t raw_count;
  const ptx_type *raw_types;
  /* Loads chunk g of each of the warp's load_rows rows into raw; every load
   * predicated on `guard` (a predicate register's name) unless it is NULL.
   * With GEMV_PRELOAD_BULK, rowp are shared addresses (.b32) of the rows'
   * current round and g the chunk within that round. */
  void (*load)(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const ptx_reg *rowp, ptx_reg g,
               const char *guard, const gemv_raw *raw);
  /* Dequantizes the loaded chunk and adds its products to acc[row][batch].
   * The staged x of the chunk: float4 i of batch row r at xs_base +
   * ((r*16 + i)*xs_stride + u)*16; its sums at xsum_base +
   * ((r*tile_chunks + u)*sums + s)*4. */
  void (*compute)(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, const gemv_raw *raw, ptx_reg u,
                  ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]);
  /* Integer dot products (spec idp=1): x is staged as byte planes, not
   * floats (gemv_stage_int in gemv.c, whose layout the comment there
   * gives), sums must be 4, and acc is fp64, rounded to fp32 once after the
   * lanes' butterfly (in fp64). */
  bool int_dot;
} gemv_format;

int gemv_emit(const ptxgen_spec *spec, const gemv_format *format, ptxgen_kernel *out);
/* ptxgen_gemv_batch_rows for a format (ptxgen.h). */
uint32_t gemv_batch_rows(const ptxgen_spec *spec, const gemv_format *format);

/* The row pointers (global) of the warp's rows in unit `group` (a task or a
 * row group, gemv_plan.warp_tasks): rowp[r] for W, and with glu
 * rowp[rows + r] for U. Rows past n (and units past the last) point at row
 * n-1, so that loads through them stay in bounds. */
void gemv_row_pointers(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_lane *L, ptx_reg group,
                       const ptx_reg *rowp);

/* The registers of a warp's ring and of its producer (lane 0), which copies
 * round pr of unit pg of the warp's rows into the ring, ring_stages rounds
 * ahead of the warp's arithmetic; the whole warp consumes the stages in
 * order. */
typedef struct gemv_ring {
  ptx_reg ring, mbar;  /* shared addresses of the warp's stage 0 and its mbarrier */
  ptx_reg lane0;       /* the producer lane */
  ptx_reg pg, pr;      /* the next round the producer copies: unit, round */
  ptx_reg cs, parity;  /* the stage the warp computes next, and its phase */
  ptx_reg rowp[GEMV_MAX_LOAD_ROWS]; /* global row pointers of the producer's unit */
} gemv_ring;

/* GEMV_PRELOAD_BULK (gemv_ring.c). gemv_ring_plan: sets up the plan's ring
 * after the rest of the plan; false where it cannot have one (no copy
 * engine, x in tiles, a format whose rounds are not contiguous 16-byte
 * multiples, or no room beside x). gemv_ring_prologue: the producer's
 * first copies, before the wait for earlier grids; gemv_ring_rounds: the
 * rounds of one unit, computed from the ring into acc. */
bool gemv_ring_plan(gemv_plan *p, const gemv_format *f);
void gemv_ring_prologue(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const ptxgen_spec *s,
                        const gemv_lane *L, gemv_ring *R, ptx_reg group, ptx_reg ncta);
void gemv_ring_rounds(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_format *f,
                      const gemv_lane *L, const gemv_ring *R, ptx_reg ncta, const gemv_raw *raw,
                      ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]);

/* Shared memory a GEMV block may take on target sm (under its opt-in maximum). */
uint32_t gemv_shared_budget(uint32_t sm);
/* Stages tile `tile` of x as the integer dot products need it (gemv.c says
 * what each chunk holds): frag_chunk_bytes = 0 in the layout the skeleton's
 * formats read, else as gemv_idp_mma.c's B fragments, that many bytes a
 * chunk. half (a register, 0 or 1; NULL: none) stages only the super-blocks
 * of that parity: staged chunk u is chunk u%4 of super-block 2(u/4) + half
 * (tile 0; its step of chunks, threads/8, must be a multiple of 4). */
void gemv_stage_int(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const gemv_lane *L, ptx_reg tile,
                    ptx_reg tile_len, uint32_t frag_chunk_bytes, const ptx_reg *half);
/* Q4_K with idp=1 on the integer tensor cores (gemv_idp_mma.c; whether a
 * spec runs there: gemv_idp_mma_takes, kernels.h): its kernel, with f's
 * staging of x (f: q4k_gemv's idp format). */
int gemv_idp_mma_emit(const ptxgen_spec *spec, const gemv_format *f, ptxgen_kernel *out);

/* Small emit helpers shared by the formats. */
/* Folds a chunk into the row sums: for each batch row m, load the chunk's
 * `sums` sums of x, then for each row r and group g
 * acc[r][m] += A[r][g]*S[r][m][g] + E[r][g]*sum_g (two fma, in that order). */
void gemv_fold(ptx_builder *b, const gemv_plan *p, const gemv_lane *L, ptx_reg u, uint32_t rows, ptx_reg A[][4],
               ptx_reg E[][4], ptx_reg S[][PTXGEN_GEMV_MAX_M][4], ptx_reg acc[][PTXGEN_GEMV_MAX_M]);
ptx_reg gemv_u64_of(ptx_builder *b, ptx_reg u32);
/* A GEMV kernel's entry name: name_kK_nN[_nN2[_nN3]][_rope..]_mM[_swiglu|_geglu]
 * into out->entry; PTXGEN_ERR_SPEC if it does not fit. */
int gemv_entry_name(const ptxgen_spec *s, const char *name, ptxgen_kernel *out);
/* Its parameters, in order: W[, U | W2[, W3]], x, y[, y2[, y3]][, positions,
 * freq_factors] (glu U; n2/n3 the other weights and outputs; rope the
 * last two); *count of them. gemv_load_params loads them into L (W, Ws, U,
 * x, y, ys, positions, ff). */
const char *const *gemv_param_names(const ptxgen_spec *s, int *count);
void gemv_load_params(ptx_builder *b, const ptxgen_spec *s, gemv_lane *L);
/* Several weights in one row space (n2=, n3=): for a row of the joint row
 * space, the base of its segment among bases[] (W or y of each weight; a
 * new register), and the row made local to that segment (in place);
 * *stride_out, if given, is the segment's y row stride in bytes. */
ptx_reg gemv_segment_select(ptx_builder *b, uint32_t segments, const uint32_t seg_n[3], const ptx_reg *bases,
                            ptx_reg row, ptx_reg *stride_out);
/* Where a format's loads read the weights: from W (global, a 64-bit row
 * pointer) or, with GEMV_PRELOAD_BULK, from the ring (shared, 32-bit).
 * gemv_weight_space: the state space of the ld ("global.nc" or "shared");
 * gemv_weight_offset: a 32-bit byte offset in the width of a row pointer;
 * gemv_weight_addr: row pointer + such an offset, in a new register. */
const char *gemv_weight_space(const gemv_plan *p);
ptx_reg gemv_weight_offset(ptx_builder *b, const gemv_plan *p, ptx_reg off32);
ptx_reg gemv_weight_addr(ptx_builder *b, const gemv_plan *p, ptx_reg rowp, ptx_reg offset);
/* L->tid, lane, warp (tid / 32) and c (lane % 4), in new registers. */
void gemv_thread_ids(ptx_builder *b, gemv_lane *L);
/* 4 floats f[j] = 0.5 + byte_j/256 for the 4 bytes of v (each byte's value
 * must leave bit 7 clear): one byte permute each, placing byte j under the
 * exponent of 0.5. */
void gemv_bytes_to_floats(ptx_builder *b, const gemv_lane *L, ptx_reg v, ptx_reg f[4]);

#define Q4K_BLOCK_BYTES 144u /* a Q4_K super-block: d, dmin, 12 bytes of scales, 128 of quants */

/* Q4_K pieces the tensor-core GEMV (gemv_tc.c) shares with the FMA one
 * (gemv_q4k.c), so that both read a sub-block's scale and min alike.
 * q4k_scale_consts: the lane constants the other two need, in L->fmt
 * (from L->c: the lane's sub-blocks are 2c and 2c+1). From a super-block
 * header (h0 = d | dmin << 16, h1..h3 the packed 6-bit scales and mins):
 * q4k_emit_scale_bytes: words sc and mn whose bytes 2(c%2) and 2(c%2)+1
 * are sc and m of sub-blocks 2c, 2c+1 (the other bytes: other sub-blocks');
 * q4k_emit_scales: A[s] = 32*f32(d)*sc and E[s] = -(16*f32(d)*sc +
 * f32(dmin)*m) of sub-block 2c+s, s = 0, 1. */
void q4k_scale_consts(ptx_builder *b, gemv_lane *L);
void q4k_emit_scale_bytes(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg *sc, ptx_reg *mn);
void q4k_emit_scales(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg A[4], ptx_reg E[4]);
/* Integer dot products (idp=1), both kernels. q4k_idp_consts: the lane
 * constants of q4k_scale_consts and those q4k_idp_row_scales needs, in
 * L->fmt (from L->c). q4k_idp_row_scales: from a super-block header (h as
 * for q4k_emit_scales) the row's d and -dmin in fp64, and the lane's two
 * sub-blocks' scales sc (s32), 16 sc[0] and 16 m. */
void q4k_idp_consts(ptx_builder *b, gemv_lane *L);
void q4k_idp_row_scales(ptx_builder *b, const gemv_lane *L, const ptx_reg h[4], ptx_reg *d, ptx_reg *neg_dmin,
                        ptx_reg sc[2], ptx_reg *sc16, ptx_reg mn16[2]);
/* Integer dot products (idp=1), both kernels: adds a chunk's contribution
 * to the fp64 sum acc, from its planes' integer sums ia[p] = 16 sc0 T_lo,p +
 * sc1 T_hi,p, the sub-blocks' 16 m (mn16), the column's U0, U1 (s32), the
 * row's d and -dmin (fp64) and the column's 2^-e/16 (fp64). */
void q4k_idp_add_chunk(ptx_builder *b, const ptx_reg ia[3], const ptx_reg mn16[2], ptx_reg u0, ptx_reg u1, ptx_reg d,
                       ptx_reg neg_dmin, ptx_reg scale, ptx_reg acc);

#endif
