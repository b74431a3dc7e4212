/*
 * ptxq.h: the public runtime API of ptxq.
 *
 * ptxq runs the decode-time kernels of quantized LLMs on NVIDIA GPUs with
 * nothing but the GPU driver: kernels are generated as PTX for the exact
 * shape (see ptxgen.h), compiled by the driver's JIT on first use, kept in a
 * shape-keyed table and launched on the context's stream.
 *
 * Conventions
 *  - Every function returns a ptxq status: 0 (PTXQ_OK) or a negative error.
 *    ptxq_strerror() names it; ptxq_last_error() gives the detail (which
 *    value was wrong and why, the JIT log, the driver's error name).
 *  - The library never prints, exits or aborts.
 *  - Device buffers are ptxq_dev addresses (CUdeviceptr values).
 *  - Weights are row-major [n][k] as GGUF stores them: k (the inner
 *    dimension) is GGUF's dims[0].
 *  - Ops on device buffers are stream-ordered on the context's stream: they
 *    return once enqueued (no synchronisation, no allocation, no copy).
 *  - A context may be shared by several threads.
 *
 * Header only needs <stddef.h>/<stdint.h>: no cuda.h for callers.
 */
#ifndef PTXQ_H
#define PTXQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PTXQ_VERSION_MAJOR 0
#define PTXQ_VERSION_MINOR 1

typedef enum ptxq_status {
  PTXQ_OK = 0,
  PTXQ_ERR_INVALID = -1,       /* an argument is invalid (the detail names it) */
  PTXQ_ERR_NO_DEVICE = -2,     /* no NVIDIA driver, or no such GPU */
  PTXQ_ERR_DRIVER = -3,        /* a driver call failed (detail: call and error name) */
  PTXQ_ERR_JIT = -4,           /* the driver's JIT rejected generated PTX (detail: its log) */
  PTXQ_ERR_NOMEM = -5,         /* host memory exhausted */
  PTXQ_ERR_DEVICE_MEMORY = -6, /* device memory exhausted */
  PTXQ_ERR_NOT_FOUND = -7,     /* no weight of that name */
  PTXQ_ERR_UNSUPPORTED = -8,   /* a valid request outside what this version supports */
  PTXQ_ERR_FORMAT = -9,        /* a malformed file (detail: what and at which byte offset) */
  PTXQ_ERR_IO = -10,           /* a file could not be opened, mapped or read */
  PTXQ_ERR_CAPTURE = -11,      /* not allowed while the stream is being captured */
  PTXQ_ERR_CANCELLED = -12,    /* a progress callback asked to stop */
} ptxq_status;

/* Name of a status ("invalid argument", ...); never NULL. */
const char *ptxq_strerror(int status);

typedef struct ptxq_ctx ptxq_ctx; /* one device, one stream */
typedef uint64_t ptxq_dev;         /* device address */

typedef struct ptxq_options {
  int device;         /* CUDA device ordinal, default 0 */
  uint32_t target_sm; /* generate kernels for this target (e.g. 80); 0 = the device's own */
  /* 1: Q4_K and Q6_K products of ptxq_gemv and ptxq_ffn run on the tensor
   * cores (q4k_gemv and q6k_gemv keys with tc=1; target_sm >= 80): m = 8
   * costs 0.99-1.11x m = 1 on large shapes (the default: 2.5-2.9x), but
   * Q4_K's m = 1 is 5-8% slower than the default's, Q6_K's 0-4% (H100
   * figures in bench/RESULTS.md). Same accuracy and batch invariance, other bits than
   * the default. Q4_K and Q6_K weights are then stored in the tensor-core
   * kernel's tiles of 16 rows; ptxq_ffn's gate and up run as one tensor-core kernel with the
   * activation in it up to m = 8 (apart past that), and
   * ptxq_gemv_multi_rope's tensor-core kernel has RoPE in it up to m = 4
   * where it is neox over whole heads (n_dims = head_dim, a multiple of
   * 32; otherwise the rope kernel runs after it). Some of its kernels keep sums between blocks in their module
   * (up to about 2 MB of device memory each), so their launches rely on
   * the context's stream order: do not replay a graph captured from this
   * context on another stream alongside it.
   * 0: the default. */
  int tensor_cores;
} ptxq_options;

/* Opens a context on a device (opt may be NULL for the defaults).
 * Without a driver: PTXQ_ERR_NO_DEVICE, detail in ptxq_last_error(NULL). */
int ptxq_open(ptxq_ctx **ctx, const ptxq_options *opt);

/* Waits for the context's work, frees its weights, buffers it allocated for
 * itself and kernels. NULL is ignored. Buffers from ptxq_alloc are freed too. */
void ptxq_close(ptxq_ctx *ctx);

/* Detail of the most recent failing call made by this thread on ctx ("" if
 * none). ptxq_last_error(NULL) is the detail of this thread's last failed
 * ptxq_open. The string lives until the thread's next failing call. */
const char *ptxq_last_error(const ptxq_ctx *ctx);

typedef struct ptxq_device_info {
  char name[128];
  uint32_t sm;            /* compute capability as 10*major+minor, e.g. 90 */
  uint32_t target_sm;     /* target kernels are generated for */
  uint32_t multiprocessors;
  uint64_t total_memory;  /* bytes */
  uint64_t l2_bytes;
  int driver_version;     /* e.g. 13000 */
} ptxq_device_info;

int ptxq_device_info_get(ptxq_ctx *ctx, ptxq_device_info *info);

/* The context's stream (a CUstream), for callers that interoperate. */
void *ptxq_stream(ptxq_ctx *ctx);

/* ---- device memory ---------------------------------------------------- */

int ptxq_alloc(ptxq_ctx *ctx, size_t bytes, ptxq_dev *out);
int ptxq_free(ptxq_ctx *ctx, ptxq_dev ptr);
/* Host <-> device copies; both return when the copy is complete and are
 * ordered after the work already on the context's stream. */
int ptxq_upload(ptxq_ctx *ctx, ptxq_dev dst, const void *src, size_t bytes);
int ptxq_download(ptxq_ctx *ctx, void *dst, ptxq_dev src, size_t bytes);
/* Waits until the context's stream is idle. */
int ptxq_sync(ptxq_ctx *ctx);

/* ---- timing ------------------------------------------------------------ */

typedef struct ptxq_event ptxq_event; /* a CUevent with timing enabled */
int ptxq_event_create(ptxq_ctx *ctx, ptxq_event **out);
/* Records the event on the context's stream. */
int ptxq_event_record(ptxq_ctx *ctx, ptxq_event *ev);
/* Waits for end, then gives the milliseconds between the two records. */
int ptxq_event_elapsed_ms(ptxq_ctx *ctx, ptxq_event *start, ptxq_event *end, float *ms);
void ptxq_event_destroy(ptxq_ctx *ctx, ptxq_event *ev);

/* ---- weights ----------------------------------------------------------- */

/* Tensor types, numbered as ggml/GGUF numbers them. */
typedef enum ptxq_type {
  PTXQ_TYPE_F32 = 0,
  PTXQ_TYPE_F16 = 1,
  PTXQ_TYPE_Q4_K = 12,
  PTXQ_TYPE_Q6_K = 14,
} ptxq_type;

#define PTXQ_QK_K 256          /* weights per K-quant super-block */
#define PTXQ_Q4_K_BLOCK_BYTES 144
#define PTXQ_Q6_K_BLOCK_BYTES 210

/* Bytes of an [n][k] matrix of type t. PTXQ_ERR_INVALID if k does not suit
 * the type (K-quants need k % 256 == 0) or the size overflows. */
int ptxq_weight_bytes(ptxq_type type, uint32_t k, uint32_t n, size_t *bytes);

/* Uploads host bytes as the named weight [n][k] (copied; data may be freed
 * afterwards). An existing weight of the same name is replaced. bytes must
 * equal ptxq_weight_bytes(type, k, n). Names are at most 127 bytes. */
int ptxq_weight_upload(ptxq_ctx *ctx, const char *name, ptxq_type type, uint32_t k,
                       uint32_t n, const void *data, size_t bytes);
int ptxq_weight_free(ptxq_ctx *ctx, const char *name);

typedef struct ptxq_weight_info {
  ptxq_type type;
  uint32_t k, n;
  size_t bytes;  /* as uploaded (ptxq_weight_bytes) */
  ptxq_dev data; /* the device copy, in the layout its GEMV reads: Q6_K
                    repacked (ptxgen_q6k_repack); in a tensor-core context
                    Q4_K and Q6_K in tiles of 16 rows (ptxgen_q4k_tc_tiles,
                    ptxgen_q6k_tc_tiles) */
} ptxq_weight_info;

int ptxq_weight_info_get(ptxq_ctx *ctx, const char *name, ptxq_weight_info *info);

/* ---- ops --------------------------------------------------------------- */

/* y[m][n] = x[m][k] . W[n][k]^T with W the named weight (Q4_K or Q6_K), x and y fp32
 * device buffers of m*k and m*n floats, 1 <= m <= 16. fp32 accumulation;
 * row i of an m > 1 product is bit-identical to the m = 1 product of that row.
 * Stream-ordered: returns once enqueued. The first call for a shape builds
 * the kernel (generate + JIT); ptxq_gemv_prepare does that ahead of time.
 * A large product of more than 8 rows may run as launches of 8 rows and one
 * of the rest where that is faster (ptxgen_gemv_batch_rows): the same bits. */
int ptxq_gemv(ptxq_ctx *ctx, const char *weight, ptxq_dev x, ptxq_dev y, uint32_t m);
int ptxq_gemv_prepare(ptxq_ctx *ctx, const char *weight, uint32_t m);

/* Several products of one x as one kernel: ys[i][m][n_i] = x . W_i^T for
 * `count` (1..PTXQ_GEMV_MULTI_MAX) weights of the same type (Q4_K or
 * Q6_K) and k, such as a layer's q, k and v; fewer kernel launches, the
 * same bits as ptxq_gemv on each weight. A large batch of more than 8 rows
 * may run as launches of 8 rows and one of the rest, as in ptxq_gemv. */
#define PTXQ_GEMV_MULTI_MAX 3
int ptxq_gemv_multi(ptxq_ctx *ctx, const char *const *weights, uint32_t count, ptxq_dev x,
                    const ptxq_dev *ys, uint32_t m);
int ptxq_gemv_multi_prepare(ptxq_ctx *ctx, const char *const *weights, uint32_t count, uint32_t m);

/* The same with host x (m*k floats) and host y (m*n floats); returns when y
 * is written. Uses a context-owned staging buffer. */
int ptxq_gemv_host(ptxq_ctx *ctx, const char *weight, const float *x, float *y, uint32_t m);

/* Activations over [m][n] fp32 device buffers (1 <= m <= 16, 1 <= n <= 2^20),
 * in place (y == x, or y == gate / y == up) or out of place:
 *   gelu      0.5*x*(1 + tanh(0.7978845608028654*(x + 0.044715*x^3)))
 *   gelu_erf  0.5*x*(1 + erf(x/sqrt(2)))
 *   silu      x / (1 + e^-x)
 *   swiglu    silu(gate) * up
 *   geglu     gelu(gate) * up        (tanh form)
 * Accuracy: within 2e-6 relative + 1e-7 absolute of the fp64 formula;
 * +-inf and NaN give what the formula gives evaluated in IEEE arithmetic
 * (e.g. silu(-inf) = -inf/inf = NaN, silu(+inf) = +inf). Buffers must be
 * 16-byte aligned. Stream-ordered. */
int ptxq_gelu(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m);
int ptxq_gelu_erf(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m);
int ptxq_silu(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m);
int ptxq_swiglu(ptxq_ctx *ctx, ptxq_dev gate, ptxq_dev up, ptxq_dev y, uint32_t n, uint32_t m);
int ptxq_geglu(ptxq_ctx *ctx, ptxq_dev gate, ptxq_dev up, ptxq_dev y, uint32_t n, uint32_t m);

/* Rotary position embedding, as llama.cpp defines it. */
typedef enum ptxq_rope_mode {
  PTXQ_ROPE_NORMAL = 0, /* pairs (x[2i], x[2i+1]) (GPT-J / original Llama) */
  PTXQ_ROPE_NEOX = 2,   /* pairs (x[i], x[i + n_dims/2]) (NeoX, Llama-3, Qwen) */
} ptxq_rope_mode;

typedef struct ptxq_rope_params {
  ptxq_rope_mode mode;
  uint32_t head_dim;   /* even, <= 512 */
  uint32_t n_dims;     /* rotated dims: even, <= head_dim; dims past it pass through */
  uint32_t heads;      /* Q heads */
  uint32_t kv_heads;   /* K heads; divides heads (GQA) */
  float base;          /* theta_i = pos * base^(-2i/n_dims); default 10000 */
  float freq_scale;    /* linear scaling: theta *= freq_scale (1 = none) */
  ptxq_dev freq_factors; /* 0, or a device float[n_dims/2]: theta_i /= freq_factors[i] */
  /* YaRN (off while ext_factor == 0): theta blends interpolation
   * (freq_scale*theta) and extrapolation (theta) per pair with a ramp
   * between the dims where beta_fast and beta_slow rotations fit in
   * n_ctx_orig positions; cos and sin are scaled by
   * attn_factor * (1 + 0.1*ln(1/freq_scale)). Without YaRN they are scaled
   * by attn_factor alone. */
  float ext_factor;
  float attn_factor;   /* default 1 */
  float beta_fast;     /* default 32 */
  float beta_slow;     /* default 1 */
  uint32_t n_ctx_orig; /* needed when ext_factor != 0 */
} ptxq_rope_params;

/* Fills p with the defaults (base 10000, freq_scale 1, attn_factor 1,
 * beta_fast 32, beta_slow 1, no YaRN, no freq_factors, n_dims = head_dim). */
void ptxq_rope_params_init(ptxq_rope_params *p, ptxq_rope_mode mode, uint32_t head_dim, uint32_t heads,
                           uint32_t kv_heads);

/* Rotates, in place, q as [m][heads][head_dim] and k as [m][kv_heads][head_dim]
 * (fp32, 16-byte aligned) for the m tokens whose positions are the device
 * int32[m] `positions`: a captured graph replays for the next token after
 * the positions buffer changes. 1 <= m <= 16. Within 2e-6 absolute of fp64
 * for unit-scale inputs at any |position| <= 2^24 (angles are reduced in
 * fp64, see ptxgen/rope.c). Stream-ordered. */
int ptxq_rope(ptxq_ctx *ctx, ptxq_dev q, ptxq_dev k, ptxq_dev positions, uint32_t m,
              const ptxq_rope_params *p);
/* The same with host positions (copied into a context-owned buffer, in
 * stream order; the host array may be reused when this returns). */
int ptxq_rope_host_positions(ptxq_ctx *ctx, ptxq_dev q, ptxq_dev k, const int32_t *positions, uint32_t m,
                             const ptxq_rope_params *p);

/* ---- fused FFN ------------------------------------------------------------- */

typedef enum ptxq_ffn_kind {
  PTXQ_FFN_GELU = 1,   /* y = down(gelu(up . x))                (tanh GELU) */
  PTXQ_FFN_SWIGLU = 2, /* y = down(silu(gate . x) * (up . x))   (Llama)     */
  PTXQ_FFN_GEGLU = 3,  /* y = down(gelu(gate . x) * (up . x))               */
} ptxq_ffn_kind;

typedef struct ptxq_ffn_params {
  ptxq_ffn_kind kind;
  const char *gate; /* weight names, any mix of Q4_K/Q6_K; gate unused for PTXQ_FFN_GELU */
  const char *up;
  const char *down;
} ptxq_ffn_params;

/* x [m][k] -> y [m][k'] through the hidden size n of up/gate (down is
 * [k'][n]). Intermediates live in a context-owned workspace: no host round
 * trip and no allocation per call (the workspace grows at the first call or
 * at ptxq_ffn_prepare, never during capture). 1 <= m <= 16. */
int ptxq_ffn(ptxq_ctx *ctx, const ptxq_ffn_params *p, ptxq_dev x, ptxq_dev y, uint32_t m);
int ptxq_ffn_prepare(ptxq_ctx *ctx, const ptxq_ffn_params *p, uint32_t m);

/* Builds ahead of capture the kernel ptxq_rope uses for (m, p). (The
 * activations inside an FFN are built by ptxq_ffn_prepare; a standalone
 * activation is built by its first call.) */
int ptxq_rope_prepare(ptxq_ctx *ctx, uint32_t m, const ptxq_rope_params *p);

/* ptxq_gemv_multi of a layer's q, k and optionally v (count 2 or 3) with
 * RoPE in the same kernel: ys[0] (q, [m][heads][head_dim]) and ys[1] (k,
 * [m][kv_heads][head_dim]) come out rotated at the device positions[m],
 * bit-identical to ptxq_gemv_multi followed by ptxq_rope; ys[2] (v) is not
 * rotated. rope->heads * head_dim and kv_heads * head_dim must be the rows
 * of q and k. One kernel instead of two for m <= 4; for larger m, where
 * that measured slower on the H100, the rope kernel runs after the products
 * (the same bits either way). The _prepare call builds the kernel(s) ahead
 * of a capture. */
int ptxq_gemv_multi_rope(ptxq_ctx *ctx, const char *const *weights, uint32_t count, ptxq_dev x,
                         const ptxq_dev *ys, uint32_t m, ptxq_dev positions, const ptxq_rope_params *rope);
int ptxq_gemv_multi_rope_prepare(ptxq_ctx *ctx, const char *const *weights, uint32_t count, uint32_t m,
                                 const ptxq_rope_params *rope);

/* ---- graphs --------------------------------------------------------------
 * Capture of the context's stream (driver stream capture): ops called
 * between begin and end are recorded, not run; ptxq_graph_launch replays
 * them on the stream. Kernels must be built before capture (a prepare call
 * or a first use): an op whose kernel is not built yet fails with
 * PTXQ_ERR_CAPTURE instead of building, as do calls that would synchronise
 * (copies to or from the host, ptxq_sync, weight uploads). A graph holds
 * the device addresses it was captured with: the buffers and weights it
 * names must outlive it (replace their contents, not the buffers), and
 * graphs are destroyed before ptxq_close. */
typedef struct ptxq_graph ptxq_graph;
int ptxq_capture_begin(ptxq_ctx *ctx);
int ptxq_capture_end(ptxq_ctx *ctx, ptxq_graph **out);
int ptxq_graph_launch(ptxq_ctx *ctx, ptxq_graph *graph);
void ptxq_graph_destroy(ptxq_ctx *ctx, ptxq_graph *graph);

/* ---- kernels by key ----------------------------------------------------- */

typedef struct ptxq_kernel_info {
  char entry[64];
  uint32_t grid[3], block[3], shared_bytes;
  int registers;       /* per thread */
  int spill_bytes;     /* local memory per thread (spills and stack) */
  int static_shared_bytes;
  double jit_ms;       /* generation + JIT time when first built */
} ptxq_kernel_info;

/* Builds (or finds) the kernel of a key (see ptxgen.h) and describes it. The
 * key's target must not be newer than the device. */
int ptxq_kernel_get(ptxq_ctx *ctx, const char *key, ptxq_kernel_info *info);

/* Launches the kernel of a key with its parameters (an array of pointers to
 * each parameter, as cuLaunchKernel takes them) on the context's stream. */
int ptxq_kernel_launch(ptxq_ctx *ctx, const char *key, void **params);

/* ---- GGUF files ------------------------------------------------------------
 * A reader for GGUF v2/v3 (layout in formats.md). The file is mapped
 * read-only and treated as untrusted: every count, length, dimension, type
 * and offset is checked against the file size and for overflow when the file
 * is opened, so a bad file fails ptxq_gguf_open with PTXQ_ERR_FORMAT and a
 * detail naming what is wrong and its byte offset (ptxq_last_error(NULL)),
 * never a crash, a huge allocation or a read past the end. Strings returned
 * point into the mapping (not NUL-terminated: use the lengths) and live
 * until ptxq_gguf_close. */

typedef struct ptxq_gguf ptxq_gguf;

typedef enum ptxq_gguf_type {
  PTXQ_GGUF_U8 = 0, PTXQ_GGUF_I8 = 1, PTXQ_GGUF_U16 = 2, PTXQ_GGUF_I16 = 3,
  PTXQ_GGUF_U32 = 4, PTXQ_GGUF_I32 = 5, PTXQ_GGUF_F32 = 6, PTXQ_GGUF_BOOL = 7,
  PTXQ_GGUF_STRING = 8, PTXQ_GGUF_ARRAY = 9, PTXQ_GGUF_U64 = 10, PTXQ_GGUF_I64 = 11,
  PTXQ_GGUF_F64 = 12,
} ptxq_gguf_type;

/* A metadata value (or an array element): where it is, not a copy. */
typedef struct ptxq_gguf_value {
  const ptxq_gguf *file;
  ptxq_gguf_type type;
  uint64_t offset; /* of the value's bytes in the file */
  uint64_t index;  /* internal */
} ptxq_gguf_value;

int ptxq_gguf_open(const char *path, ptxq_gguf **out);
void ptxq_gguf_close(ptxq_gguf *file);
uint32_t ptxq_gguf_version(const ptxq_gguf *file);
uint64_t ptxq_gguf_alignment(const ptxq_gguf *file);

/* Metadata: count, i-th key and value, or by key (PTXQ_ERR_NOT_FOUND). */
uint64_t ptxq_gguf_kv_count(const ptxq_gguf *file);
int ptxq_gguf_kv_at(const ptxq_gguf *file, uint64_t i, const char **key, uint64_t *key_len,
                    ptxq_gguf_value *value);
int ptxq_gguf_find(const ptxq_gguf *file, const char *key, ptxq_gguf_value *value);

/* Typed getters. Integers of any width convert to u64/i64 when the value
 * fits (else PTXQ_ERR_INVALID), f32 and f64 to double, bool to 0/1; any
 * other mismatch is PTXQ_ERR_INVALID naming both types. */
int ptxq_gguf_get_u64(const ptxq_gguf_value *v, uint64_t *out);
int ptxq_gguf_get_i64(const ptxq_gguf_value *v, int64_t *out);
int ptxq_gguf_get_f64(const ptxq_gguf_value *v, double *out);
int ptxq_gguf_get_bool(const ptxq_gguf_value *v, int *out);
int ptxq_gguf_get_string(const ptxq_gguf_value *v, const char **data, uint64_t *len);
/* Arrays (possibly nested): element type and count, and element i in O(1). */
int ptxq_gguf_get_array(const ptxq_gguf_value *v, ptxq_gguf_type *elem_type, uint64_t *count);
int ptxq_gguf_array_at(const ptxq_gguf_value *array, uint64_t i, ptxq_gguf_value *elem);

typedef struct ptxq_gguf_tensor {
  const char *name; /* into the mapping, name_len bytes */
  uint64_t name_len;
  uint32_t type;    /* ggml type id (PTXQ_TYPE_* for those ptxq computes with) */
  uint32_t n_dims;  /* 1..4 */
  uint64_t dims[4]; /* dims[0] innermost (k of a weight matrix); unused dims are 1 */
  uint64_t offset;  /* of the data, from the start of the file */
  uint64_t bytes;
  const void *data; /* into the mapping */
} ptxq_gguf_tensor;

uint64_t ptxq_gguf_tensor_count(const ptxq_gguf *file);
int ptxq_gguf_tensor_at(const ptxq_gguf *file, uint64_t i, ptxq_gguf_tensor *out);
int ptxq_gguf_tensor_find(const ptxq_gguf *file, const char *name, ptxq_gguf_tensor *out);
/* Name of a ggml type id ("q4_K", "f32", ...), or NULL if unknown. */
const char *ptxq_ggml_type_name(uint32_t type);

/* Uploads the tensors of a GGUF file whose names match `filter` (a glob as
 * fnmatch(3) takes it, e.g. "blk.*.attn_*"; NULL = all) as weights named as
 * in the file (k = dims[0], n = the product of the other dims). Q4_K, Q6_K,
 * F32 and F16 tensors are uploaded; matching tensors of other types are
 * skipped and counted. progress (may be NULL) is called after each
 * matching tensor, uploaded or skipped (bytes_total: all matching tensors);
 * returning nonzero from it stops the load with PTXQ_ERR_CANCELLED. */
typedef int (*ptxq_progress_fn)(void *user, const char *tensor, uint64_t bytes_done, uint64_t bytes_total);
typedef struct ptxq_load_stats {
  uint64_t tensors, bytes, skipped;
  double seconds;
} ptxq_load_stats;
int ptxq_weights_from_gguf(ptxq_ctx *ctx, const char *path, const char *filter, ptxq_progress_fn progress,
                           void *user, ptxq_load_stats *stats);

/* ---- CPU reference -------------------------------------------------------
 * Plain C, no GPU needed. These define what the kernels must compute. */

/* IEEE binary16 -> binary32, exact. */
float ptxq_f16_to_f32(uint16_t h);
uint16_t ptxq_f32_to_f16(float f); /* round to nearest even */

/* Dequantizes nblocks Q6_K super-blocks (210 bytes each) into 256*nblocks
 * floats: w = f32(d) * scale * q, (d*scale) rounded to f32 first. */
int ptxq_ref_dequantize_q6k(const void *blocks, size_t nblocks, float *out);

/* Dequantizes nblocks Q4_K super-blocks (144 bytes each) into 256*nblocks
 * floats, exactly as the reference implementation does:
 * w = (f32(d)*sc)*q - f32(dmin)*m, both products rounded to f32 first. */
int ptxq_ref_dequantize_q4k(const void *blocks, size_t nblocks, float *out);

/* Quantizes count floats (count % 256 == 0) to Q4_K. Per sub-block of 32
 * weights it searches a scale and min by weighted least squares over several
 * candidate ranges (see src/ref/quantize.c for the method and its measured
 * error); the super-block scales d and dmin are f16. Non-finite inputs are
 * PTXQ_ERR_INVALID. */
int ptxq_ref_quantize_q4k(const float *in, size_t count, void *blocks);

/* y[m][n] = x[m][k] . W[n][k]^T in fp64 over the dequantized weights (type
 * Q4_K, Q6_K, F16 or F32). */
int ptxq_ref_gemv(ptxq_type type, const void *w, uint32_t k, uint32_t n, const float *x,
                  uint32_t m, double *y);

/* Activations in fp64 over fp32 inputs (formulas at ptxq_gelu); count values. */
typedef enum ptxq_act {
  PTXQ_ACT_GELU = 1,     /* tanh form */
  PTXQ_ACT_GELU_ERF = 2,
  PTXQ_ACT_SILU = 3,
} ptxq_act;
int ptxq_ref_act(ptxq_act act, const float *x, double *y, size_t count);
/* Gated: y = act(gate) * up (SwiGLU: PTXQ_ACT_SILU, GEGLU: PTXQ_ACT_GELU). */
int ptxq_ref_glu(ptxq_act act, const float *gate, const float *up, double *y, size_t count);

/* RoPE in fp64: q [m][heads][head_dim] and k [m][kv_heads][head_dim] in,
 * rotated copies out (dims past n_dims copied). p->freq_factors is ignored;
 * freq_factors (host, n_dims/2 floats) or NULL is used instead. 1 <= m <= 16. */
int ptxq_ref_rope(const ptxq_rope_params *p, const float *freq_factors, const int32_t *positions, uint32_t m,
                  const float *q, const float *k, double *q_out, double *k_out);

#ifdef __cplusplus
}
#endif
#endif
