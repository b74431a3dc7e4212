/*
 * ptxgen.h: the public generation API of ptxq.
 *
 * A kernel is described by a spec (kind + shape + target). Every spec has a
 * canonical text key, for example
 *
 *     q4k_gemv:k=4096,n=14336,m=1,sm=90
 *
 * which names every value baked into the generated PTX; two specs with the
 * same key produce byte-identical PTX, and parse(format(spec)) == spec.
 * ptxgen_emit() turns a spec into PTX text, the entry name and the launch
 * geometry the text was written for: callers never compute a grid or spell
 * an entry name themselves.
 *
 * Pure C11, libc only: no CUDA types here, nothing here needs a GPU.
 */
#ifndef PTXGEN_H
#define PTXGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Version of the generator: part of a compiled kernel's identity (a cache of
 * compiled images must be keyed by key + this number). Bumped whenever the
 * PTX emitted for some key changes. */
#define PTXGEN_VERSION 1

/* Status codes: 0 ok, negative on error. */
enum {
  PTXGEN_OK = 0,
  PTXGEN_ERR_SPEC = -1,  /* the spec or key is invalid; the message says why */
  PTXGEN_ERR_NOMEM = -2, /* out of host memory */
};

typedef enum {
  PTXGEN_KIND_NONE = 0,
  /* y[m][n] = x[m][k] . W[n][k]^T, W in Q4_K, x and y fp32.
   * Kernel parameters (in order): u64 W, u64 x, u64 y (device addresses). */
  PTXGEN_KIND_Q4K_GEMV = 1,
  /* Read-only bandwidth probe: reads n 16-byte vectors once.
   * Kernel parameters: u64 src, u64 sink (4 bytes, written only if the
   * data folds to an impossible value, so the reads cannot be optimised away). */
  PTXGEN_KIND_STREAM_READ = 2,
  /* Activations over [m][n] fp32 (formulas in ptxq.h). Parameters:
   * u64 x, u64 y (unary) or u64 gate, u64 up, u64 y (gated). */
  PTXGEN_KIND_GELU = 3,
  PTXGEN_KIND_GELU_ERF = 4,
  PTXGEN_KIND_SILU = 5,
  PTXGEN_KIND_SWIGLU = 6,
  PTXGEN_KIND_GEGLU = 7,
  /* RoPE in place on q [m][heads][head_dim] and k [m][kv_heads][head_dim].
   * Parameters: u64 q, u64 k, u64 positions (int32[m]), u64 freq_factors
   * (read only when the spec's freq_factors is 1). */
  PTXGEN_KIND_ROPE = 8,
  /* y[m][n] = x[m][k] . W[n][k]^T, W Q6_K in the repacked layout written by
   * ptxgen_q6k_repack, x and y fp32. Parameters: u64 W, u64 x, u64 y. */
  PTXGEN_KIND_Q6K_GEMV = 9,
} ptxgen_kind;

/* Limits of the Q4_K and Q6_K GEMV (checked by ptxgen_spec_validate). */
#define PTXGEN_GEMV_MAX_K 65536u   /* inner dimension, multiple of 256 */
#define PTXGEN_GEMV_MAX_N 262144u  /* output rows */
#define PTXGEN_GEMV_MAX_M 16u      /* batch rows, read with one pass over W */
/* The GEMV epilogues (glu, rope) keep two weight rows per warp, a gate/up
 * or a rotation pair, and their sums for every batch row live in registers
 * together: past m = 8 ptxas spills them (ptxas 13.0: Q6_K with glu or
 * RoPE from m = 11 on, Q4_K with RoPE and YaRN at m = 15 and 16).
 * So glu and rope keys take m <= 8 (the tensor-core kernel's glu keys too:
 * with a tile split 8 ways, W's and U's warps fill a block of 16 at 128
 * registers); a larger batch runs the plain GEMV, then the activation or
 * rope kernel (as ptxq_ffn and ptxq_gemv_multi_rope do from m = 5; in a
 * tensor-core context, ptxq_ffn from m = 9). */
#define PTXGEN_GEMV_EPILOGUE_MAX_M 8u
/* Limits of the read probe. */
#define PTXGEN_READ_MAX_N (1u << 30) /* 16-byte vectors: 16 GiB */
/* Limits of the activations and RoPE. Their batch limits equal the GEMV's:
 * at large m the runtime runs an FFN's activation and the RoPE of q and k
 * as kernels of their own after the GEMVs (ptxq_ffn, ptxq_gemv_multi_rope),
 * for any m a GEMV takes. */
#define PTXGEN_ACT_MAX_N (1u << 20)
#define PTXGEN_ACT_MAX_M PTXGEN_GEMV_MAX_M
#define PTXGEN_ROPE_MAX_HEAD_DIM 512u
#define PTXGEN_ROPE_MAX_HEADS 1024u
#define PTXGEN_ROPE_MAX_M PTXGEN_GEMV_MAX_M

typedef struct ptxgen_spec {
  ptxgen_kind kind;
  uint32_t sm; /* target: 75, 80, 86, 89, 90, 100, 120 */
  /* q4k_gemv: k, n, m. stream_read: n = number of 16-byte vectors. */
  uint32_t k, n, m;
  /* q4k_gemv tuning, 0 = the generator's choice (and then absent from the
   * key): rows per warp (1, 2, 4) and warps per block (4, 8, 16). */
  uint32_t rows, warps;
  /* q4k_gemv / q6k_gemv: how far weight loads run ahead of the arithmetic,
   * 0 = the generator's choice (absent from the key), 1 off (for
   * comparison), 2 one chunk ahead, 3 a lane's whole row group at once,
   * 4 the copy engine (cp.async.bulk, sm_90+) streams each warp's rows a
   * few rounds of 32 chunks ahead into a ring in shared memory; 2, 3 and 4
   * only where x is staged in one tile (else off), 3 only where a lane's
   * chunks of a group fit its registers (else 2), 4 only on sm_90+ where
   * the ring fits beside x and a round's bytes are 16-byte multiples (Q6_K:
   * k a multiple of 2048) (else 2). The bits are the same whatever the
   * preload. */
  uint32_t preload;
  /* stream_read: 1 makes the probe a kernel of a dependent chain, as every
   * other sm_90+ kernel of ptxq is: each thread issues its first step's
   * loads, then waits for the grids before it (griddepcontrol.wait) and
   * lets the next one launch; the runtime launches it with programmatic
   * stream serialization. sm_90+. 0 (absent from the key): neither. */
  uint32_t pdl;
  /* q4k_gemv: 1 runs the product on the tensor cores (mma.sync, f16
   * inputs, fp32 sums) instead of fp32 FMA: the scaled quants sc*q are
   * exact in f16 and x (scaled by a power of two per super-block) is cut
   * into two f16 parts that keep 22 of its 24 bits, so the result keeps
   * fp32 accuracy and is batch invariant like the default (its bits differ
   * from the default's). W in the tile layout of ptxgen_q4k_tc_tiles (a
   * tensor-core context stores Q4_K weights so). sm >= 80; n2, n3 (each
   * weight by blocks of its own, with its own product's bits); glu (W's
   * and U's tiles by warps of one block: y comes out as the two tc=1
   * products then the swiglu/geglu kernel would write it, bit for bit);
   * rope where ptxgen_gemv_tc_rope_fits says (a pair's two tiles by warps
   * of one block: the tc=1 products then the rope kernel, bit for bit);
   * rows, warps and preload stay 0. 0 (absent from the key): the FMA
   * kernel. */
  uint32_t tc;
  /* q4k_gemv: 1 = integer dot products (an experiment, not a default): x is
   * staged per chunk of 64 values as a 23-bit fixed-point integer under a
   * power-of-two scale (three byte planes), each sub-block's sum of q * x is
   * an exact dp4a sum, a chunk's contribution (d*sc*sum - dmin*m*sum(x)) is
   * formed in fp64 with one rounding, and the row sums run in fp64 in the
   * FMA kernel's order before one rounding to fp32. Bits differ from the
   * default's; batch invariant like it. 0 (absent): the default. */
  uint32_t idp;
  /* q4k_gemv with idp=1, tuning: which instructions form the integer sums,
   * 0 the generator's choice (absent from the key), 1 dp4a (the FMA
   * kernel's skeleton), 2 the integer tensor cores (mma.sync m16n8k32 on
   * u8/s8, 16 rows by 8 batch rows a warp: sm >= 80, m <= 8, no rope, x
   * staged whole, or on sm_90/100 without glu half of it in each block of
   * a cluster of two (geometry.cluster); the generator takes it from m = 4
   * on 2048 rows or more). The two add the same exact integers and the
   * same fp64 contributions in the same order: the bits are the same. */
  uint32_t mma;
  /* q4k_gemv / q6k_gemv epilogue: 0 none; 1 swiglu, 2 geglu: the kernel
   * reads a second weight U of the same shape and writes
   * y = act(x.W^T) * (x.U^T) (parameters u64 W, u64 U, u64 x, u64 y), each
   * product computed exactly as the plain GEMV computes it. m <= 8
   * (PTXGEN_GEMV_EPILOGUE_MAX_M). */
  uint32_t glu;
  /* q4k_gemv / q6k_gemv over several weights of the same k and type, one
   * kernel (a layer's q, k and v): n2, n3 are the rows of the second and
   * third weight (0: absent; n3 needs n2; not with glu). Parameters:
   * u64 W, u64 W2[, u64 W3], u64 x, u64 y, u64 y2[, u64 y3]; y_i[m][n_i] =
   * x . W_i^T, each row computed exactly as the single product computes it. */
  uint32_t n2, n3;
  /* q4k_gemv / q6k_gemv over a layer's q, k[, v] (n2 set): RoPE in the
   * epilogue, 0 none, 1 normal, 2 neox (key: rope=normal|neox). The first
   * weight's rows are q heads, the second's k heads, head_dim rows each (n
   * and n2 multiples of it); v is not rotated; rows=1 is refused (a warp's
   * rows are rotation pairs). It takes the rope fields below (head_dim,
   * n_dims, base, freq_scale, freq_factors, YaRN; heads and kv_heads stay 0:
   * they are n/head_dim and n2/head_dim) and the parameters gain
   * u64 positions, u64 freq_factors at the end. y and y2 come out as the
   * GEMV then the rope kernel would write them, bit for bit. m <= 8
   * (PTXGEN_GEMV_EPILOGUE_MAX_M). */
  uint32_t rope;
  /* rope (m is the number of tokens). mode: 0 normal, 2 neox (as ptxq's
   * PTXQ_ROPE_*). Floats are written in keys so that they round-trip. */
  uint32_t mode, head_dim, n_dims, heads, kv_heads;
  uint32_t freq_factors; /* 1: divide theta_i by a device freq_factors[i] */
  uint32_t n_ctx_orig;
  float base, freq_scale, ext_factor, attn_factor, beta_fast, beta_slow;
} ptxgen_spec;

typedef struct ptxgen_geometry {
  uint32_t grid[3];
  uint32_t block[3];
  uint32_t shared_bytes; /* dynamic shared memory per block */
  /* blocks per cluster the kernel requires (.reqnctapercluster, sm_90+;
   * grid[0] is a multiple of it); 0: no clusters */
  uint32_t cluster;
} ptxgen_geometry;

typedef struct ptxgen_kernel {
  char *ptx;          /* NUL-terminated PTX text, owned; free with ptxgen_kernel_free */
  size_t ptx_len;     /* strlen(ptx) */
  char entry[64];     /* the .entry name defined in ptx */
  ptxgen_geometry geometry;
} ptxgen_kernel;

/* One line of `ptxgen list`. */
typedef struct ptxgen_kind_info {
  ptxgen_kind kind;
  const char *name;        /* key prefix, e.g. "q4k_gemv" */
  const char *example_key; /* a key ptxgen_spec_parse accepts */
  const char *params;      /* parameters and limits, one line */
} ptxgen_kind_info;

/* Q6_K rows (210-byte super-blocks, 2-byte aligned) are repacked for the
 * GEMV into planes per row: all the super-blocks' ql (128 bytes each), then
 * qh (64), then scales (16), then d (2), the row padded to 16 bytes. The
 * values are unchanged; only their places move. */
uint32_t ptxgen_q6k_row_stride(uint32_t k);
/* Repacks n rows of k weights (k % 256 == 0) of GGUF Q6_K bytes into dst
 * (n * ptxgen_q6k_row_stride(k) bytes, padding zeroed). */
void ptxgen_q6k_repack(const void *src, uint32_t k, uint32_t n, void *dst);

/* Q4_K rows for the tensor-core GEMV (tc=1) are stored in tiles of 16
 * rows, the last padded with zero rows: tile T holds super-block j of its
 * 16 rows in the 2304 bytes at (T * k/256 + j) * 2304, in the order the
 * kernel's lanes load them: for each chunk c of 32 quant bytes, 512 bytes
 * in which lane 4g + t finds bytes 8t..8t+7 of rows g and g + 8 (16 bytes
 * at 16 * lane), then the 16 rows' 16-byte headers (d, dmin, scales). A
 * warp reads a super-block in 6 coalesced 16-byte loads per lane. The
 * values are unchanged; only their places move. */
uint64_t ptxgen_q4k_tc_bytes(uint32_t k, uint32_t n);
/* Rearranges n rows of k weights (k % 256 == 0) of GGUF Q4_K bytes into dst
 * (ptxgen_q4k_tc_bytes(k, n) bytes, the padding rows zeroed). */
void ptxgen_q4k_tc_tiles(const void *src, uint32_t k, uint32_t n, void *dst);

/* Q6_K rows for the tensor-core GEMV (tc=1) are stored in tiles of 16 rows
 * too: super-block j of tile T in the 3360 bytes at (T * k/256 + j) * 3360.
 * First 6 loads of 512 bytes, lane 4g + t's 16 at 16 * lane: the quants of
 * rows g and g + 8 its A fragments take (weights 16u + 4t .. 16u + 4t + 3
 * of each sub-block u), low nibbles and high bits in words laid out for
 * its masks (gemv_tc.c); then each row's 16 int8 scales (16 bytes at 3072
 * + 16r); then d of rows g and g + 8 at 3328 + 4g. A warp reads a
 * super-block in 8 coalesced 16-byte loads and one 4-byte load per lane.
 * The values are unchanged; only their places move. */
uint64_t ptxgen_q6k_tc_bytes(uint32_t k, uint32_t n);
/* Rearranges n rows of k weights (k % 256 == 0) of GGUF Q6_K bytes into dst
 * (ptxgen_q6k_tc_bytes(k, n) bytes, the padding rows zeroed). */
void ptxgen_q6k_tc_tiles(const void *src, uint32_t k, uint32_t n, void *dst);

/* The table of kinds; *count receives its length. */
const ptxgen_kind_info *ptxgen_kinds(size_t *count);

/* The PTX .version the target needs ("7.8"; "8.0" for sm_90, whose GEMV
 * may use the copy engine; "8.6", "8.7"); NULL for an unsupported target. */
const char *ptxgen_ptx_version(uint32_t sm);

/* Checks a spec. On error writes a message naming the wrong value into msg
 * (if msg_cap > 0) and returns PTXGEN_ERR_SPEC. */
int ptxgen_spec_validate(const ptxgen_spec *spec, char *msg, size_t msg_cap);

/* Parses a key into *spec (validated). Parameters may come in any order;
 * `sm` defaults to 90 when absent. Errors name the offending parameter. */
int ptxgen_spec_parse(const char *key, ptxgen_spec *spec, char *msg, size_t msg_cap);

/* Writes the canonical key of a valid spec into buf. Returns the key's length
 * (like snprintf: >= cap means truncated) or PTXGEN_ERR_SPEC. */
int ptxgen_spec_format(const ptxgen_spec *spec, char *buf, size_t cap);

/* Generates the kernel of a spec. On success *out owns the PTX. */
int ptxgen_emit(const ptxgen_spec *spec, ptxgen_kernel *out, char *msg, size_t msg_cap);

/* For a GEMV without an epilogue (no glu= or rope=), tuning or tc=, of one
 * weight or several (n2=, n3=), and more than 8 batch rows: how many rows
 * one launch should take. Where the m-row kernel would pay for its batch
 * what an 8-row kernel does not (x staged in tiles, or one row per warp
 * instead of two) on a product large enough that reading the weights again
 * costs less, that is 8: run the batch as launches of 8 rows and one of the
 * rest, over x and the y's offset by the rows before. Otherwise, and for
 * every other spec, m. Every row's bits are the same either way (batch
 * invariance). 0 if the spec is invalid. */
uint32_t ptxgen_gemv_batch_rows(const ptxgen_spec *spec);

/* Whether the tensor-core GEMV (tc=1) takes the spec's RoPE in its
 * epilogue: neox, n_dims = head_dim, head_dim a multiple of 32 (a head's
 * rotation pairs then lie in whole 16-row tiles). Otherwise a tensor-core
 * q/k/v product runs without rope=, then the rope kernel. */
bool ptxgen_gemv_tc_rope_fits(const ptxgen_spec *spec);

/* Whether a Q4_K spec with idp=1 runs on the integer tensor cores
 * (mma.sync m16n8k32: the key's mma=2, or mma=0 and the generator's
 * choice); false for any other or invalid spec. Its gated kernel (glu=)
 * then costs no more per batch row than a plain product, so ptxq_ffn
 * takes the gated kernel up to m = 8 there. */
bool ptxgen_gemv_idp_mma(const ptxgen_spec *spec);

void ptxgen_kernel_free(ptxgen_kernel *kernel);

#ifdef __cplusplus
}
#endif
#endif
