/*
 * memory.c: device buffers and host<->device copies.
 *
 * Buffers from ptxq_alloc are tracked in the context so ptxq_close frees
 * what a caller forgot and ptxq_free can reject an address ptxq never gave
 * out (freeing a weight's buffer by hand, a double free) instead of handing
 * it to the driver. Copies are enqueued on the context's stream and then
 * waited for, so they are ordered after the kernels already queued there:
 * a download right after ptxq_gemv sees its result.
 *
 * Every call here copies, synchronises, allocates or frees, so each is
 * refused with PTXQ_ERR_CAPTURE while the stream is being captured
 * (graph.c), before it reaches the driver and spoils the capture.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "internal.h"

int ptxq__device_alloc(ptxq_ctx *ctx, size_t bytes, const char *what, CUdeviceptr *out) {
  CUresult result = ptxq__cu.MemAlloc(out, bytes);
  if (result == CUDA_ERROR_OUT_OF_MEMORY) {
    size_t free_bytes = 0, total_bytes = 0;
    (void)ptxq__cu.MemGetInfo(&free_bytes, &total_bytes);
    return ptxq__fail(ctx, PTXQ_ERR_DEVICE_MEMORY,
                      "%s: cannot allocate %zu bytes of device memory (%zu of %zu bytes free)",
                      what, bytes, free_bytes, total_bytes);
  }
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "%s: cuMemAlloc(%zu bytes)", what, bytes);
  return PTXQ_OK;
}

/* Appends to the tracked list. Lock held. */
static int track(ptxq_ctx *ctx, CUdeviceptr ptr, size_t bytes) {
  if (ctx->allocation_count == ctx->allocation_cap) {
    size_t cap = ctx->allocation_cap ? ctx->allocation_cap * 2 : 16;
    struct ptxq_allocation *grown = realloc(ctx->allocations, cap * sizeof *grown);
    if (grown == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "ptxq_alloc: out of host memory");
    ctx->allocations = grown;
    ctx->allocation_cap = cap;
  }
  ctx->allocations[ctx->allocation_count++] = (struct ptxq_allocation){ptr, bytes};
  return PTXQ_OK;
}

int ptxq_alloc(ptxq_ctx *ctx, size_t bytes, ptxq_dev *out) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_alloc: ctx is NULL");
  if (out == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_alloc: out is NULL");
  *out = 0;
  if (bytes == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_alloc: bytes=0 (nothing to allocate)");

  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_alloc")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  CUdeviceptr ptr = 0;
  status = ptxq__device_alloc(ctx, bytes, "ptxq_alloc", &ptr);
  if (status == PTXQ_OK) {
    pthread_mutex_lock(&ctx->lock);
    status = track(ctx, ptr, bytes);
    pthread_mutex_unlock(&ctx->lock);
    if (status != PTXQ_OK)
      (void)ptxq__cu.MemFree(ptr);
    else
      *out = ptr;
  }
  ptxq__leave(ctx);
  return status;
}

int ptxq_free(ptxq_ctx *ctx, ptxq_dev ptr) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_free: ctx is NULL");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  status = ptxq__refuse_in_capture(ctx, "ptxq_free");
  ptxq__leave(ctx);
  if (status != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  size_t index = 0;
  while (index < ctx->allocation_count && ctx->allocations[index].ptr != ptr) index++;
  if (index == ctx->allocation_count) {
    pthread_mutex_unlock(&ctx->lock);
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "ptxq_free: 0x%llx was not allocated by ptxq_alloc on this context "
                      "(or was already freed)",
                      (unsigned long long)ptr);
  }
  ctx->allocations[index] = ctx->allocations[--ctx->allocation_count];
  pthread_mutex_unlock(&ctx->lock);

  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  /* Work still queued may read the buffer: cuMemFree does not wait for a
   * non-blocking stream. */
  CUresult result = ptxq__cu.StreamSynchronize(ctx->stream);
  CUresult free_result = ptxq__cu.MemFree(ptr); /* untracked now: free even after a failed sync */
  if (result == CUDA_SUCCESS) result = free_result;
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "ptxq_free(0x%llx)", (unsigned long long)ptr);
  return PTXQ_OK;
}

void ptxq__allocations_free_all(ptxq_ctx *ctx) {
  for (size_t i = 0; i < ctx->allocation_count; i++)
    (void)ptxq__cu.MemFree(ctx->allocations[i].ptr);
  free(ctx->allocations);
  ctx->allocations = NULL;
  ctx->allocation_count = ctx->allocation_cap = 0;
}

/* Shared checks of upload/download. */
static int check_copy(ptxq_ctx *ctx, const char *call, const void *host, ptxq_dev dev,
                      size_t bytes) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (bytes == 0) return PTXQ_OK;
  if (host == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: host pointer is NULL (%zu bytes)", call, bytes);
  if (dev == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: device address is 0 (%zu bytes)", call, bytes);
  return PTXQ_OK;
}

int ptxq_upload(ptxq_ctx *ctx, ptxq_dev dst, const void *src, size_t bytes) {
  int status = check_copy(ctx, "ptxq_upload", src, dst, bytes);
  if (status != PTXQ_OK || bytes == 0) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_upload")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  CUresult result = ptxq__cu.MemcpyHtoDAsync(dst, src, bytes, ctx->stream);
  if (result == CUDA_SUCCESS) result = ptxq__cu.StreamSynchronize(ctx->stream);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "ptxq_upload(%zu bytes to 0x%llx)", bytes,
                         (unsigned long long)dst);
  return PTXQ_OK;
}

int ptxq_download(ptxq_ctx *ctx, void *dst, ptxq_dev src, size_t bytes) {
  int status = check_copy(ctx, "ptxq_download", dst, src, bytes);
  if (status != PTXQ_OK || bytes == 0) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_download")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  CUresult result = ptxq__cu.MemcpyDtoHAsync(dst, src, bytes, ctx->stream);
  if (result == CUDA_SUCCESS) result = ptxq__cu.StreamSynchronize(ctx->stream);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "ptxq_download(%zu bytes from 0x%llx)", bytes,
                         (unsigned long long)src);
  return PTXQ_OK;
}

int ptxq_sync(ptxq_ctx *ctx) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_sync: ctx is NULL");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_sync")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  CUresult result = ptxq__cu.StreamSynchronize(ctx->stream);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "cuStreamSynchronize");
  return PTXQ_OK;
}
