/*
 * internal.h: what the runtime files of src/ share and nobody else sees.
 *
 * The context (one device, one stream, one mutex over its tables), the
 * module-table entry and the weight record, and the small set of helpers the
 * files call across: error reporting (errors.c), context push/pop
 * (context.c), kernel look-up/build and launch (modules.c), the cached
 * kernel look-up of the activation and RoPE ops (below), weight look-up
 * (weights.c), tracked allocations (memory.c), the GEMV kernels and launch
 * (exec.c, shared with the FFN), the capture state (graph.c) and the FFN
 * workspace (ffn.c).
 *
 * Locking: ctx->lock guards the module table, the weight table, the
 * allocation list, the staging buffers, the op kernel cache, RoPE's
 * positions buffer and the FFN workspace. Functions below marked "lock
 * held" must be called with it held; none of them takes it.
 * Driver calls need the context current: public entry points bracket their
 * work with ptxq__enter / ptxq__leave.
 */
#ifndef PTXQ_INTERNAL_H
#define PTXQ_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cuda.h>

#include "driver.h"
#include "ptxgen.h"
#include "ptxq.h"

#if defined(__GNUC__)
#define PTXQ_PRINTF(fmt_index, first_arg) __attribute__((format(printf, fmt_index, first_arg)))
#else
#define PTXQ_PRINTF(fmt_index, first_arg)
#endif

#define PTXQ_DETAIL_CAP 4096     /* bytes of the per-thread error detail */
#define PTXQ_WEIGHT_NAME_MAX 127 /* bytes of a weight name, NUL excluded */
/* The largest batch for which an activation (ptxq_ffn) or RoPE
 * (ptxq_gemv_multi_rope) runs in a GEMV's epilogue rather than as a kernel
 * of its own. On the H100 the fused kernels measured faster in the
 * Llama-3-8B decode step at m = 1, 2 and 4 and slower at m = 8
 * (bench/RESULTS.md); m = 5..7 were not measured. Either way gives the same
 * bits. In a tensor-core context RoPE keeps this limit (the decode step at
 * m = 1 even, m = 2 and 4 1.4-2.3% faster, m = 8 1.9% slower; eighteenth
 * session), while the gated FFN kernel runs up to PTXGEN_GEMV_EPILOGUE_MAX_M
 * (faster at m = 1, 4 and 8; seventeenth session; ffn.c). */
#define PTXQ__EPILOGUE_MAX_M 4u
/* ptxgen refuses epilogue keys past its own limit (spills): the fused
 * path must stay within it, whatever the measurements suggest. */
_Static_assert(PTXQ__EPILOGUE_MAX_M <= PTXGEN_GEMV_EPILOGUE_MAX_M, "the fused FFN/RoPE path needs epilogue keys");
#define PTXQ_KEY_CAP 512         /* bytes of a formatted kernel key (a RoPE key with YaRN and
                                    every float set runs past 256; ptxgen formats at most 511) */
#define PTXQ_OP_CACHE_SLOTS 16   /* recent activation/RoPE specs remembered per context */

/* One compiled kernel. Allocated individually and never moved or freed
 * before ptxq_close, so pointers to it may be cached (weights do). */
struct ptxq_kernel_entry {
  struct ptxq_kernel_entry *next; /* hash chain */
  uint64_t hash;
  char key[PTXQ_KEY_CAP];
  CUmodule module;
  CUfunction function;
  char entry[64];
  ptxgen_geometry geometry;
  int registers;   /* per thread */
  int local_bytes; /* local memory per thread: spills and stack */
  int static_shared_bytes;
  double jit_ms; /* generation + JIT wall time */
  bool programmatic; /* its PTX waits for earlier grids itself (ptx_grid_dependency_sync) */
};

/* One named weight on the device. */
struct ptxq_weight {
  struct ptxq_weight *next; /* hash chain */
  uint64_t hash;
  char name[PTXQ_WEIGHT_NAME_MAX + 1];
  ptxq_type type;
  uint32_t k, n;
  size_t bytes;     /* as uploaded (GGUF layout): what ptxq_weight_info reports */
  CUdeviceptr data; /* as the kernels read it: Q6_K rows repacked by ptxgen_q6k_repack */
  /* The GEMV kernel per epilogue (index glu: 0 none, 1 swiglu, 2 geglu; the
   * gated kernels are kept on the gate weight, W) and batch size m (index
   * 1..PTXGEN_GEMV_MAX_M), filled on first use so the hot path skips key formatting and the
   * module-table look-up. Cleared when the weight is replaced (the shape
   * may change). */
  const struct ptxq_kernel_entry *gemv_by_m[3][PTXGEN_GEMV_MAX_M + 1];
  /* Batch rows per launch of the plain GEMV for m (ptxgen_gemv_batch_rows;
   * 0: not asked yet), cleared with gemv_by_m. */
  uint8_t gemv_batch_rows[PTXGEN_GEMV_MAX_M + 1];
  /* Whether its gated kernel for m runs on the integer tensor cores
   * (ptxq__gated_gemv_idp_mma; 0: not asked yet, 1 no, 2 yes; the same for
   * both activations), cleared with gemv_by_m. */
  uint8_t gated_idp_mma[PTXGEN_GEMV_EPILOGUE_MAX_M + 1];
};

struct ptxq_allocation {
  CUdeviceptr ptr;
  size_t bytes;
};

/* A recently used activation or RoPE spec and its kernel (ptxq__op_kernel). */
struct ptxq_op_cache_slot {
  ptxgen_spec spec;
  const struct ptxq_kernel_entry *kernel; /* NULL: the slot is empty */
};

struct ptxq_ctx {
  pthread_mutex_t lock;

  /* Immutable after ptxq_open. */
  CUdevice device;
  CUcontext context; /* the device's primary context, retained */
  CUstream stream;   /* non-blocking: never synchronises with the legacy stream */
  ptxq_device_info info;

  /* Module table (modules.c): chained hash, bucket count a power of two. */
  struct ptxq_kernel_entry **kernel_buckets;
  size_t kernel_bucket_count, kernel_count;

  /* Weight table (weights.c): chained hash, bucket count a power of two. */
  struct ptxq_weight **weight_buckets;
  size_t weight_bucket_count, weight_count;

  /* Buffers from ptxq_alloc (memory.c), freed by ptxq_close. */
  struct ptxq_allocation *allocations;
  size_t allocation_count, allocation_cap;

  /* ptxq_gemv_host's staging buffers (exec.c), grown on demand. */
  CUdeviceptr staging_x, staging_y;
  size_t staging_x_bytes, staging_y_bytes;

  /* The kernels of the last few activation/RoPE specs (ptxq__op_kernel), so
   * a repeated op is a memcmp instead of key formatting and hashing.
   * Replaced round-robin. */
  struct ptxq_op_cache_slot op_cache[PTXQ_OP_CACHE_SLOTS];
  unsigned op_cache_next;

  /* ptxq_rope_host_positions (rope.c): the device int32[PTXGEN_ROPE_MAX_M]
   * the host positions are copied into (allocated on first use, freed by
   * ptxq__rope_positions_free) and the context-owned host copy the
   * asynchronous copy reads from. */
  CUdeviceptr rope_positions;
  int32_t rope_positions_host[PTXGEN_ROPE_MAX_M];

  /* Set between ptxq_capture_begin and ptxq_capture_end (graph.c). Atomic:
   * calls that only need to refuse during capture read it without the lock. */
  atomic_bool capturing;

  /* The fused FFN (ffn.c): its intermediates live in ffn_workspace, grown
   * on demand. A workspace it outgrows may still be named by a captured
   * graph, so it is kept in ffn_retired until ptxq_close. ffn_unfused is
   * PTXQ_FFN_UNFUSED=1 read at ptxq_open (a benchmark switch, see ffn.c). */
  CUdeviceptr ffn_workspace;
  size_t ffn_workspace_bytes;
  CUdeviceptr *ffn_retired;
  size_t ffn_retired_count;
  bool ffn_unfused;

  /* ptxq_options.tensor_cores: Q4_K and Q6_K products use the tc=1 kernels
   * (their weights stored in its tiles). */
  bool tensor_cores;

  /* Kernels that wait for earlier grids themselves are launched with
   * programmatic stream serialization, so each starts (and prefetches its
   * weights) while the one before finishes: needs sm_90+, cuLaunchKernelEx
   * and a driver that keeps such edges in captured graphs (12.3+). Off with
   * PTXQ_PDL=0 read at ptxq_open (a benchmark switch). */
  bool programmatic_launch;

  /* PTXQ_GEMV_TUNE=ROWS,WARPS read at ptxq_open (a benchmark switch): the
   * plain GEMVs' rows per warp and warps per block; 0 is the default. */
  uint8_t gemv_rows, gemv_warps;
  /* PTXQ_GEMV_PRELOAD=N read at ptxq_open (a benchmark switch): the preload
   * option (1..4, ptxgen.h) of every FMA GEMV; 0 is the default. */
  uint8_t gemv_preload;
  /* PTXQ_GEMV_IDP=1 read at ptxq_open (a benchmark switch): every Q4_K FMA
   * GEMV takes the key option idp=1 (integer dot products, ptxgen.h). */
  bool gemv_idp;
};

/* FNV-1a (64-bit) of a NUL-terminated string: the module and weight tables
 * hash their keys with it. */
static inline uint64_t ptxq__hash(const char *text) {
  uint64_t hash = 14695981039346656037ull;
  for (const unsigned char *p = (const unsigned char *)text; *p != '\0'; p++) {
    hash ^= *p;
    hash *= 1099511628211ull;
  }
  return hash;
}

/* ---- errors.c ---- */

/* Sets this thread's error detail (attached to ctx, which may be NULL) and
 * returns status, so failures read `return ptxq__fail(ctx, PTXQ_ERR_INVALID,
 * "m=%u is outside 1..%u", m, PTXGEN_GEMV_MAX_M);`. The arguments may include the current
 * detail (ptxq_last_error) to wrap it. */
int ptxq__fail(const ptxq_ctx *ctx, int status, const char *fmt, ...) PTXQ_PRINTF(3, 4);

/* A failed driver call: detail "<what> failed: CUDA_ERROR_NAME (text)" where
 * <what> is formatted from fmt; returns ptxq__status_of(result). */
int ptxq__fail_cu(const ptxq_ctx *ctx, CUresult result, const char *fmt, ...) PTXQ_PRINTF(3, 4);

/* The ptxq status a CUresult maps to: DEVICE_MEMORY for out-of-memory,
 * DRIVER for everything else. */
int ptxq__status_of(CUresult result);

/* "CUDA_ERROR_NAME (text)" into buf. */
void ptxq__cu_error_text(CUresult result, char *buf, size_t cap);

/* "F32", "F16", "Q4_K", "Q6_K"; NULL for a type ptxq does not know. */
const char *ptxq__type_name(ptxq_type type);

/* ---- context.c ---- */

/* Makes ctx's context current on this thread (push); ptxq__leave pops it.
 * Every public call that touches the driver brackets its work with these,
 * so any thread may call and the caller's own current context survives. */
int ptxq__enter(ptxq_ctx *ctx);
void ptxq__leave(ptxq_ctx *ctx);

/* ---- memory.c ---- */

/* Frees every tracked allocation (ptxq_close; context current). */
void ptxq__allocations_free_all(ptxq_ctx *ctx);

/* cuMemAlloc with the ptxq error convention: DEVICE_MEMORY naming the byte
 * count and `what` on exhaustion. Not tracked. Context current. */
int ptxq__device_alloc(ptxq_ctx *ctx, size_t bytes, const char *what, CUdeviceptr *out);

/* ---- modules.c ---- */

/* The kernel of a spec, built (generate + JIT) on first use. Lock held,
 * context current. The spec's target must not be newer than the device. */
int ptxq__kernel_for(ptxq_ctx *ctx, const ptxgen_spec *spec, const struct ptxq_kernel_entry **out);

/* Enqueues the kernel on the context's stream with the generator's
 * geometry. Context current. */
int ptxq__launch(ptxq_ctx *ctx, const struct ptxq_kernel_entry *kernel, void **params);

/* Tests only (fault injection): when set, called on each newly generated
 * PTX text, which it may edit in place (without growing it), just before
 * the JIT sees it. NULL in normal use; not thread-safe to change while
 * kernels are being built. */
extern void (*ptxq__test_ptx_hook)(char *ptx);

/* Unloads every module and frees the table (ptxq_close; context current). */
void ptxq__modules_free_all(ptxq_ctx *ctx);

/* ---- weights.c ---- */

/* The weight of a name, or NULL after setting PTXQ_ERR_NOT_FOUND
 * ("no weight named 'x'") as the detail. Lock held. */
struct ptxq_weight *ptxq__weight_find(ptxq_ctx *ctx, const char *name);

/* Checks a weight name (non-NULL, 1..127 bytes): PTXQ_OK or INVALID. */
int ptxq__weight_name_check(const ptxq_ctx *ctx, const char *name);

/* Frees every weight (ptxq_close; context current, stream idle). */
void ptxq__weights_free_all(ptxq_ctx *ctx);

/* ---- exec.c ---- */

/* Frees the staging buffers (ptxq_close; context current, stream idle). */
void ptxq__staging_free(ptxq_ctx *ctx);

/* A plain GEMV of m batch rows as it is launched: launches of `rows` rows
 * by `full`, then one of the m % rows left by `rest` (NULL if none); rows
 * is m unless ptxgen_gemv_batch_rows says otherwise. */
typedef struct ptxq__gemv_batch {
  const struct ptxq_kernel_entry *full, *rest;
  uint32_t m, rows;
} ptxq__gemv_batch;
/* Fills *out for w at m, building its kernels on first use. Lock held,
 * context current. */
int ptxq__gemv_batch_for(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, ptxq__gemv_batch *out);
/* Enqueues it over x [m][k] and y [m][n]. Lock held, context current. */
int ptxq__launch_gemv_batch(ptxq_ctx *ctx, const ptxq__gemv_batch *batch, const struct ptxq_weight *w,
                            CUdeviceptr x, CUdeviceptr y);
/* The GEMV kernel of weight w for batch m with epilogue glu (0 none, 1
 * swiglu, 2 geglu: w is then the gate W of the gated kernel), built on
 * first use and cached on w. PTXQ_ERR_UNSUPPORTED for a weight type or
 * shape the GEMV does not take. Lock held, context current. */
int ptxq__gemv_kernel(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, uint32_t glu,
                      const struct ptxq_kernel_entry **out);
/* Whether the gated kernel (glu 1 or 2) of gate weight w for m <= 8 runs on
 * the integer tensor cores (PTXQ_GEMV_IDP=1 and ptxgen_gemv_idp_mma),
 * asked once and cached on w. Lock held. */
bool ptxq__gated_gemv_idp_mma(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, uint32_t glu);

/* Enqueues a GEMV kernel: y = x.W^T, or with the gated epilogue (up != 0)
 * y = act(x.W^T) * (x.U^T) with U = up. Context current. */
int ptxq__launch_gemv(ptxq_ctx *ctx, const struct ptxq_kernel_entry *kernel, CUdeviceptr weights,
                      CUdeviceptr up, CUdeviceptr x, CUdeviceptr y);

/* ---- graph.c ---- */

/* Whether the context's stream is being captured, by ptxq_capture_begin or
 * by the caller through ptxq_stream. Context current. */
int ptxq__capture_active(ptxq_ctx *ctx, bool *active);

/* PTXQ_ERR_CAPTURE ("<call>: not allowed while ... captured") when the
 * stream is being captured, else PTXQ_OK: for calls that would copy,
 * synchronise, allocate or free. Context current. */
int ptxq__refuse_in_capture(ptxq_ctx *ctx, const char *call);

/* Ends a capture of the context's stream, if any, and discards the graph
 * (ptxq_close; context current). */
void ptxq__capture_abandon(ptxq_ctx *ctx);

/* ---- ffn.c ---- */

/* Reads the FFN settings of a new context from the environment (ptxq_open). */
void ptxq__ffn_init(ptxq_ctx *ctx);

/* Frees the FFN workspaces (ptxq_close; context current, stream idle). */
void ptxq__ffn_workspace_free(ptxq_ctx *ctx);

/* ---- the kernel look-up of the activation and RoPE ops ---- */

/* The kernel of spec, through ctx->op_cache: a hit costs a memcmp per slot
 * tried, with no key formatting or hashing. On a miss the spec is checked
 * (an invalid one fails with PTXQ_ERR_INVALID, detail "<call>: <why>") and
 * built or found by ptxq__kernel_for. The spec is compared bytewise, so it
 * must have been zeroed whole (memset) before its fields were set; a hit
 * needs no validation since only specs that once validated get a slot.
 * Lock held, context current. */
static inline int ptxq__op_kernel(ptxq_ctx *ctx, const char *call, const ptxgen_spec *spec,
                                  const struct ptxq_kernel_entry **out) {
  for (unsigned i = 0; i < PTXQ_OP_CACHE_SLOTS; i++) {
    const struct ptxq_op_cache_slot *slot = &ctx->op_cache[i];
    if (slot->kernel != NULL && memcmp(&slot->spec, spec, sizeof *spec) == 0) {
      *out = slot->kernel;
      return PTXQ_OK;
    }
  }
  char why[256];
  why[0] = '\0';
  if (ptxgen_spec_validate(spec, why, sizeof why) != PTXGEN_OK)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s", call, why);
  int status = ptxq__kernel_for(ctx, spec, out);
  if (status != PTXQ_OK) return status;
  struct ptxq_op_cache_slot *slot = &ctx->op_cache[ctx->op_cache_next];
  ctx->op_cache_next = (ctx->op_cache_next + 1) % PTXQ_OP_CACHE_SLOTS;
  memcpy(&slot->spec, spec, sizeof slot->spec); /* bytewise, as it is compared */
  slot->kernel = *out;
  return PTXQ_OK;
}

/* ---- rope.c ---- */

/* Frees ptxq_rope_host_positions' device buffer (ptxq_close; context
 * current, stream idle). */
void ptxq__rope_positions_free(ptxq_ctx *ctx);
/* The RoPE constants of p (head_dim, n_dims, base, scaling, freq_factors,
 * YaRN) into a spec's fields: for the rope kernel (rope.c) and for a
 * GEMV's RoPE epilogue (exec.c), so both build the same angles. */
void ptxq__rope_constants(const ptxq_rope_params *p, ptxgen_spec *spec);

#endif
