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
} ptxq_status;

/* Name of a status ("invalid argument", ...); never NULL. */
const char *ptxq_strerror(int status);

typedef struct ptxq_ctx ptxq_ctx; /* one device, one stream */
typedef uint64_t ptxq_dev;         /* device address */

typedef struct ptxq_options {
  int device;         /* CUDA device ordinal, default 0 */
  uint32_t target_sm; /* generate kernels for this target (e.g. 80); 0 = the device's own */
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
  size_t bytes;
  ptxq_dev data;
} ptxq_weight_info;

int ptxq_weight_info_get(ptxq_ctx *ctx, const char *name, ptxq_weight_info *info);

/* ---- ops --------------------------------------------------------------- */

/* y[m][n] = x[m][k] . W[n][k]^T with W the named weight (Q4_K), x and y fp32
 * device buffers of m*k and m*n floats, 1 <= m <= 8. fp32 accumulation;
 * row i of an m > 1 product is bit-identical to the m = 1 product of that row.
 * Stream-ordered: returns once enqueued. The first call for a shape builds
 * the kernel (generate + JIT); ptxq_gemv_prepare does that ahead of time. */
int ptxq_gemv(ptxq_ctx *ctx, const char *weight, ptxq_dev x, ptxq_dev y, uint32_t m);
int ptxq_gemv_prepare(ptxq_ctx *ctx, const char *weight, uint32_t m);

/* The same with host x (m*k floats) and host y (m*n floats); returns when y
 * is written. Uses a context-owned staging buffer. */
int ptxq_gemv_host(ptxq_ctx *ctx, const char *weight, const float *x, float *y, uint32_t m);

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

/* ---- CPU reference -------------------------------------------------------
 * Plain C, no GPU needed. These define what the kernels must compute. */

/* IEEE binary16 -> binary32, exact. */
float ptxq_f16_to_f32(uint16_t h);
uint16_t ptxq_f32_to_f16(float f); /* round to nearest even */

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
 * Q4_K or F32). */
int ptxq_ref_gemv(ptxq_type type, const void *w, uint32_t k, uint32_t n, const float *x,
                  uint32_t m, double *y);

#ifdef __cplusplus
}
#endif
#endif
