/*
 * events.c: timing events on the context's stream.
 *
 * A ptxq_event wraps one CUevent created with timing enabled; recording it
 * on the context's stream marks a point between enqueued kernels, and the
 * time between two such points is the device time of the work between them
 * (what ptxq-bench reports), free of launch overhead on the host.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "internal.h"

struct ptxq_event {
  CUevent event;
};

int ptxq_event_create(ptxq_ctx *ctx, ptxq_event **out) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_event_create: ctx is NULL");
  if (out == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_event_create: out is NULL");
  *out = NULL;
  ptxq_event *ev = calloc(1, sizeof *ev);
  if (ev == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "ptxq_event_create: out of host memory");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) {
    free(ev);
    return status;
  }
  CUresult result = ptxq__cu.EventCreate(&ev->event, CU_EVENT_DEFAULT);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS) {
    free(ev);
    return ptxq__fail_cu(ctx, result, "cuEventCreate");
  }
  *out = ev;
  return PTXQ_OK;
}

int ptxq_event_record(ptxq_ctx *ctx, ptxq_event *ev) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_event_record: ctx is NULL");
  if (ev == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_event_record: event is NULL");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  CUresult result = ptxq__cu.EventRecord(ev->event, ctx->stream);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "cuEventRecord");
  return PTXQ_OK;
}

int ptxq_event_elapsed_ms(ptxq_ctx *ctx, ptxq_event *start, ptxq_event *end, float *ms) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_event_elapsed_ms: ctx is NULL");
  if (start == NULL || end == NULL || ms == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_event_elapsed_ms: %s is NULL",
                      start == NULL ? "start"
                      : end == NULL ? "end"
                                    : "ms");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  CUresult result = ptxq__cu.EventSynchronize(end->event);
  const char *call = "cuEventSynchronize";
  if (result == CUDA_SUCCESS) {
    result = ptxq__cu.EventElapsedTime(ms, start->event, end->event);
    call = "cuEventElapsedTime (were both events recorded?)";
  }
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "%s", call);
  return PTXQ_OK;
}

void ptxq_event_destroy(ptxq_ctx *ctx, ptxq_event *ev) {
  if (ev == NULL) return;
  /* Without the context the event cannot be destroyed; freeing the wrapper
   * still keeps the host side clean. */
  if (ctx != NULL && ptxq__enter(ctx) == PTXQ_OK) {
    (void)ptxq__cu.EventDestroy(ev->event);
    ptxq__leave(ctx);
  }
  free(ev);
}
