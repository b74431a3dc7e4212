/*
 * exec.c: the GEMV ops. Validate, find the kernel, launch.
 *
 * The hot path of a decode step is ptxq_gemv: one lock, one hash look-up by
 * weight name, the kernel cached on the weight for this m, cuLaunchKernel.
 * The weight's type picks the kernel family (q4k_gemv for Q4_K, q6k_gemv
 * for Q6_K, whose rows weights.c stored repacked); ffn.c shares the kernel
 * look-up and the launch, gated epilogue included.
 * Kernel generation and JIT happen on the first call for a shape (or in
 * ptxq_gemv_prepare); nothing here allocates, copies or synchronises, except
 * ptxq_gemv_host, the convenience path for host arrays.
 *
 * Launches happen with the lock held so a concurrent ptxq_weight_free or
 * replacement (which waits for the stream under the same lock) can never
 * free a buffer between the look-up and the enqueue.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "internal.h"

#define GEMV_X_ALIGN 16u /* the generated GEMV reads x with ld.global.v4.f32 */

static int check_gemv_args(ptxq_ctx *ctx, const char *call, const char *weight, uint32_t m) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  int status = ptxq__weight_name_check(ctx, weight);
  if (status != PTXQ_OK) return status;
  if (m < 1 || m > PTXGEN_GEMV_MAX_M)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s('%s'): m=%u is outside 1..%u", call, weight, m,
                      PTXGEN_GEMV_MAX_M);
  return PTXQ_OK;
}

int ptxq__gemv_kernel(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, uint32_t glu,
                      const struct ptxq_kernel_entry **out) {
  const struct ptxq_kernel_entry **cached = &w->gemv_by_m[glu][m];
  if (*cached == NULL) {
    ptxgen_kind kind;
    switch (w->type) {
    case PTXQ_TYPE_Q4_K: kind = PTXGEN_KIND_Q4K_GEMV; break;
    case PTXQ_TYPE_Q6_K: kind = PTXGEN_KIND_Q6K_GEMV; break;
    default:
      return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, "weight '%s' is %s: gemv supports Q4_K and Q6_K",
                        w->name, ptxq__type_name(w->type));
    }
    if (w->k > PTXGEN_GEMV_MAX_K)
      return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                        "weight '%s': k=%u exceeds the gemv limit k <= %u", w->name, w->k,
                        PTXGEN_GEMV_MAX_K);
    if (w->n > PTXGEN_GEMV_MAX_N)
      return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                        "weight '%s': n=%u exceeds the gemv limit n <= %u", w->name, w->n,
                        PTXGEN_GEMV_MAX_N);
    ptxgen_spec spec = {.kind = kind,
                        .sm = ctx->info.target_sm,
                        .k = w->k,
                        .n = w->n,
                        .m = m,
                        .glu = glu};
    int status = ptxq__kernel_for(ctx, &spec, cached);
    if (status != PTXQ_OK) return status;
  }
  *out = *cached;
  return PTXQ_OK;
}

int ptxq__launch_gemv(ptxq_ctx *ctx, const struct ptxq_kernel_entry *kernel, CUdeviceptr weights,
                      CUdeviceptr up, CUdeviceptr x, CUdeviceptr y) {
  /* Parameters in the order the generator declares them: u64 W, u64 x,
   * u64 y; gated: u64 W, u64 U, u64 x, u64 y. */
  void *plain[] = {&weights, &x, &y};
  void *gated[] = {&weights, &up, &x, &y};
  return ptxq__launch(ctx, kernel, up != 0 ? gated : plain);
}

/* The weight and its plain GEMV kernel for m, built on first use. Lock
 * held, context current. */
static int gemv_kernel(ptxq_ctx *ctx, const char *name, uint32_t m,
                       const struct ptxq_weight **out_weight,
                       const struct ptxq_kernel_entry **out_kernel) {
  struct ptxq_weight *w = ptxq__weight_find(ctx, name);
  if (w == NULL) return PTXQ_ERR_NOT_FOUND;
  int status = ptxq__gemv_kernel(ctx, w, m, 0, out_kernel);
  if (status != PTXQ_OK) return status;
  *out_weight = w;
  return PTXQ_OK;
}

static int launch_gemv(ptxq_ctx *ctx, const struct ptxq_weight *w,
                       const struct ptxq_kernel_entry *kernel, CUdeviceptr x, CUdeviceptr y) {
  return ptxq__launch_gemv(ctx, kernel, w->data, 0, x, y);
}

int ptxq_gemv(ptxq_ctx *ctx, const char *weight, ptxq_dev x, ptxq_dev y, uint32_t m) {
  int status = check_gemv_args(ctx, "ptxq_gemv", weight, m);
  if (status != PTXQ_OK) return status;
  if (x == 0 || y == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_gemv('%s'): %s is a null device address", weight,
                      x == 0 ? "x" : "y");
  /* A misaligned vector load faults the kernel, and a fault ruins the whole
   * CUDA context: refuse here instead. */
  if (x % GEMV_X_ALIGN != 0 || y % sizeof(float) != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "ptxq_gemv('%s'): %s=0x%llx is not %zu-byte aligned (x is read in 16-byte "
                      "vectors, y written as floats)",
                      weight, x % GEMV_X_ALIGN != 0 ? "x" : "y",
                      (unsigned long long)(x % GEMV_X_ALIGN != 0 ? x : y),
                      x % GEMV_X_ALIGN != 0 ? (size_t)GEMV_X_ALIGN : sizeof(float));
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_weight *w = NULL;
  const struct ptxq_kernel_entry *kernel = NULL;
  status = gemv_kernel(ctx, weight, m, &w, &kernel);
  if (status == PTXQ_OK) status = launch_gemv(ctx, w, kernel, x, y);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_gemv_prepare(ptxq_ctx *ctx, const char *weight, uint32_t m) {
  int status = check_gemv_args(ctx, "ptxq_gemv_prepare", weight, m);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_weight *w = NULL;
  const struct ptxq_kernel_entry *kernel = NULL;
  status = gemv_kernel(ctx, weight, m, &w, &kernel);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

/* Grows a staging buffer to at least `bytes`. Lock held, stream idle (every
 * user of the staging buffers waits for the stream before unlocking). */
static int ensure_staging(ptxq_ctx *ctx, CUdeviceptr *buffer, size_t *capacity, size_t bytes,
                          const char *what) {
  if (*capacity >= bytes) return PTXQ_OK;
  if (*buffer != 0) (void)ptxq__cu.MemFree(*buffer);
  *buffer = 0;
  *capacity = 0;
  int status = ptxq__device_alloc(ctx, bytes, what, buffer);
  if (status == PTXQ_OK) *capacity = bytes;
  return status;
}

int ptxq_gemv_host(ptxq_ctx *ctx, const char *weight, const float *x, float *y, uint32_t m) {
  int status = check_gemv_args(ctx, "ptxq_gemv_host", weight, m);
  if (status != PTXQ_OK) return status;
  if (x == NULL || y == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_gemv_host('%s'): %s is NULL", weight,
                      x == NULL ? "x" : "y");
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  /* Copies from and to the host and a synchronisation: none can be captured. */
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_gemv_host")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_weight *w = NULL;
  const struct ptxq_kernel_entry *kernel = NULL;
  status = gemv_kernel(ctx, weight, m, &w, &kernel);
  /* m <= 8, k <= 65536, n <= 262144: these products cannot overflow. */
  size_t x_bytes = 0, y_bytes = 0;
  if (status == PTXQ_OK) {
    x_bytes = (size_t)m * w->k * sizeof(float);
    y_bytes = (size_t)m * w->n * sizeof(float);
    status = ensure_staging(ctx, &ctx->staging_x, &ctx->staging_x_bytes, x_bytes,
                            "ptxq_gemv_host staging for x");
  }
  if (status == PTXQ_OK)
    status = ensure_staging(ctx, &ctx->staging_y, &ctx->staging_y_bytes, y_bytes,
                            "ptxq_gemv_host staging for y");
  if (status == PTXQ_OK) {
    CUresult result = ptxq__cu.MemcpyHtoDAsync(ctx->staging_x, x, x_bytes, ctx->stream);
    if (result != CUDA_SUCCESS)
      status = ptxq__fail_cu(ctx, result, "ptxq_gemv_host('%s'): copying x (%zu bytes)", weight,
                             x_bytes);
  }
  if (status == PTXQ_OK) status = launch_gemv(ctx, w, kernel, ctx->staging_x, ctx->staging_y);
  if (status == PTXQ_OK) {
    CUresult result = ptxq__cu.MemcpyDtoHAsync(y, ctx->staging_y, y_bytes, ctx->stream);
    if (result != CUDA_SUCCESS)
      status = ptxq__fail_cu(ctx, result, "ptxq_gemv_host('%s'): copying y (%zu bytes)", weight,
                             y_bytes);
  }
  /* Wait even after a failure: a copy already queued must not outlive the
   * lock, or the next caller could regrow the staging buffer under it. */
  CUresult synced = ptxq__cu.StreamSynchronize(ctx->stream);
  if (status == PTXQ_OK && synced != CUDA_SUCCESS)
    status = ptxq__fail_cu(ctx, synced, "ptxq_gemv_host('%s'): cuStreamSynchronize", weight);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

void ptxq__staging_free(ptxq_ctx *ctx) {
  if (ctx->staging_x != 0) (void)ptxq__cu.MemFree(ctx->staging_x);
  if (ctx->staging_y != 0) (void)ptxq__cu.MemFree(ctx->staging_y);
  ctx->staging_x = ctx->staging_y = 0;
  ctx->staging_x_bytes = ctx->staging_y_bytes = 0;
}
