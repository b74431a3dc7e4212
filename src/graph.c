/*
 * graph.c: capture of the context's stream into a graph that replays a
 * decode step with one driver call.
 *
 * Between ptxq_capture_begin and ptxq_capture_end the ops are recorded by
 * the driver (stream capture) instead of run; ptxq_capture_end instantiates
 * the recording and ptxq_graph_launch replays it on the stream. A graph
 * holds the kernels and the device addresses the ops were given, not the
 * data: a replay reads whatever x, the positions and the weights hold then,
 * which is how one graph decodes token after token once the caller rewrites
 * its input buffers. So every buffer and weight a graph names must outlive
 * it (the FFN keeps the workspaces it outgrows until ptxq_close for that
 * reason).
 *
 * Anything that would build a kernel, copy between host and device,
 * synchronise, allocate or free fails with PTXQ_ERR_CAPTURE during capture,
 * before it reaches the driver: a refused call does not invalidate the
 * capture, so the caller can prepare what was missing and still end it.
 *
 * Mode: CU_STREAM_CAPTURE_MODE_RELAXED. A context is shared by threads, so
 * ptxq_capture_end (and ptxq_close, which ends a capture left open) may run
 * on another thread than ptxq_capture_begin, which only RELAXED allows. The
 * other modes exist to stop unsafe calls (cuMemAlloc, synchronisation)
 * sneaking into a capture; ptxq refuses those itself, on every thread, and
 * GLOBAL would in addition make other threads' unrelated CUDA work fail
 * while we capture. Ops enqueued by other threads on the same context
 * during a capture are captured too: capture is a property of the stream.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>

#include "internal.h"

struct ptxq_graph {
  ptxq_ctx *ctx; /* the context it was captured on */
  CUgraphExec exec;
};

/* The driver's stream-capture errors become PTXQ_ERR_CAPTURE (detail still
 * naming the driver's error); anything else keeps ptxq__status_of's
 * status. */
static bool is_capture_error(CUresult result) {
  switch (result) {
  case CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED:
  case CUDA_ERROR_STREAM_CAPTURE_INVALIDATED:
  case CUDA_ERROR_STREAM_CAPTURE_MERGE:
  case CUDA_ERROR_STREAM_CAPTURE_UNMATCHED:
  case CUDA_ERROR_STREAM_CAPTURE_UNJOINED:
  case CUDA_ERROR_STREAM_CAPTURE_ISOLATION:
  case CUDA_ERROR_STREAM_CAPTURE_IMPLICIT:
  case CUDA_ERROR_CAPTURED_EVENT:
  case CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD: return true;
  default: return false;
  }
}

static int fail_capture_cu(const ptxq_ctx *ctx, CUresult result, const char *what) {
  int status = ptxq__fail_cu(ctx, result, "%s", what);
  return is_capture_error(result) ? PTXQ_ERR_CAPTURE : status;
}

int ptxq__capture_active(ptxq_ctx *ctx, bool *active) {
  *active = atomic_load(&ctx->capturing);
  if (*active) return PTXQ_OK;
  /* Also a capture the caller began on ptxq_stream(ctx) itself. */
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  CUresult result = ptxq__cu.StreamIsCapturing(ctx->stream, &capture);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "cuStreamIsCapturing");
  *active = capture != CU_STREAM_CAPTURE_STATUS_NONE;
  return PTXQ_OK;
}

int ptxq__refuse_in_capture(ptxq_ctx *ctx, const char *call) {
  bool active = false;
  int status = ptxq__capture_active(ctx, &active);
  if (status != PTXQ_OK) return status;
  if (active)
    return ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                      "%s: not allowed while the context's stream is being captured (it would "
                      "copy, synchronise, allocate or free); call it before ptxq_capture_begin "
                      "or after ptxq_capture_end",
                      call);
  return PTXQ_OK;
}

void ptxq__capture_abandon(ptxq_ctx *ctx) {
  bool ours = atomic_exchange(&ctx->capturing, false);
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  if (!ours && (ptxq__cu.StreamIsCapturing(ctx->stream, &capture) != CUDA_SUCCESS ||
                capture == CU_STREAM_CAPTURE_STATUS_NONE))
    return;
  CUgraph graph = NULL;
  if (ptxq__cu.StreamEndCapture(ctx->stream, &graph) == CUDA_SUCCESS && graph != NULL)
    (void)ptxq__cu.GraphDestroy(graph);
}

int ptxq_capture_begin(ptxq_ctx *ctx) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_capture_begin: ctx is NULL");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  /* Under the lock, so an FFN being enqueued by another thread (its
   * launches must stay together) is either wholly before the capture or
   * wholly in it. */
  pthread_mutex_lock(&ctx->lock);
  bool active = false;
  status = ptxq__capture_active(ctx, &active);
  if (status == PTXQ_OK && active) {
    status = ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                        "ptxq_capture_begin: the context's stream is already being captured "
                        "(ptxq_capture_end ends it)");
  } else if (status == PTXQ_OK) {
    CUresult result = ptxq__cu.StreamBeginCapture(ctx->stream, CU_STREAM_CAPTURE_MODE_RELAXED);
    if (result != CUDA_SUCCESS)
      status = fail_capture_cu(ctx, result, "ptxq_capture_begin: cuStreamBeginCapture");
    else
      atomic_store(&ctx->capturing, true);
  }
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_capture_end(ptxq_ctx *ctx, ptxq_graph **out) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_capture_end: ctx is NULL");
  if (out == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "ptxq_capture_end: out is NULL (the capture goes on)");
  *out = NULL;
  ptxq_graph *graph = calloc(1, sizeof *graph);
  if (graph == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_NOMEM,
                      "ptxq_capture_end: out of host memory (the capture goes on)");
  graph->ctx = ctx;

  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) {
    free(graph);
    return status;
  }
  pthread_mutex_lock(&ctx->lock);
  if (!atomic_load(&ctx->capturing)) {
    status = ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                        "ptxq_capture_end: no capture in progress (ptxq_capture_begin starts one)");
  } else {
    CUgraph recorded = NULL;
    CUresult result = ptxq__cu.StreamEndCapture(ctx->stream, &recorded);
    atomic_store(&ctx->capturing, false); /* over, whatever the driver says */
    if (result != CUDA_SUCCESS) {
      status = fail_capture_cu(ctx, result, "ptxq_capture_end: cuStreamEndCapture");
    } else if (recorded == NULL) {
      status = ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                          "ptxq_capture_end: cuStreamEndCapture returned no graph (the capture "
                          "was invalidated)");
    } else {
      result = ptxq__cu.GraphInstantiateWithFlags(&graph->exec, recorded, 0);
      if (result != CUDA_SUCCESS)
        status = fail_capture_cu(ctx, result, "ptxq_capture_end: cuGraphInstantiateWithFlags");
    }
    /* The executable graph is independent of the recording. */
    if (recorded != NULL) (void)ptxq__cu.GraphDestroy(recorded);
  }
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  if (status != PTXQ_OK) {
    free(graph);
    return status;
  }
  *out = graph;
  return PTXQ_OK;
}

int ptxq_graph_launch(ptxq_ctx *ctx, ptxq_graph *graph) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_graph_launch: ctx is NULL");
  if (graph == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_graph_launch: graph is NULL");
  if (graph->ctx != ctx)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "ptxq_graph_launch: the graph was captured on another context");
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  /* Under the lock: an FFN another thread is enqueueing must not have the
   * graph's kernels, which may share its workspace, land between its own. */
  pthread_mutex_lock(&ctx->lock);
  CUresult result = ptxq__cu.GraphLaunch(graph->exec, ctx->stream);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  if (result != CUDA_SUCCESS)
    return fail_capture_cu(ctx, result, "ptxq_graph_launch: cuGraphLaunch");
  return PTXQ_OK;
}

void ptxq_graph_destroy(ptxq_ctx *ctx, ptxq_graph *graph) {
  if (graph == NULL) return;
  /* The driver frees a graph still running once it completes. Without a
   * context (NULL) only the host side can be released. */
  if (ctx != NULL && ptxq__enter(graph->ctx) == PTXQ_OK) {
    (void)ptxq__cu.GraphExecDestroy(graph->exec);
    ptxq__leave(graph->ctx);
  }
  free(graph);
}
