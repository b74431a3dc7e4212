/*
 * rope.c: the RoPE ops, ptxq_rope (positions in device memory) and
 * ptxq_rope_host_positions (positions from the host), and
 * ptxq_rope_prepare, which builds the kernel ahead of a capture.
 *
 * The parameters become a ptxgen_spec field for field; the generator's own
 * validation judges them, so the rules live in one place (ptxgen/spec.c)
 * and a refusal reads "ptxq_rope: <its reason>". The kernel comes from the
 * context's op cache (ptxq__op_kernel), so a repeated call costs a memcmp,
 * a launch and no validation.
 *
 * ptxq_rope reads the positions from device memory when the kernel runs,
 * which is what lets a captured graph replay for the next token once the
 * caller has rewritten that buffer. ptxq_rope_host_positions copies the
 * host positions into a context-owned device buffer first, in stream order,
 * so reusing that one buffer for every call is safe.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "internal.h"

#define QK_ALIGN 16u       /* q and k, as ptxq.h requires */
#define POSITIONS_ALIGN 4u /* int32 positions and float freq_factors */

static int check_buffer(ptxq_ctx *ctx, const char *call, const char *what, CUdeviceptr address,
                        unsigned alignment) {
  if (address == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s is a null device address", call, what);
  if (address % alignment != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s=0x%llx is not %u-byte aligned", call, what,
                      (unsigned long long)address, alignment);
  return PTXQ_OK;
}

typedef struct region {
  const char *name;
  CUdeviceptr start;
  uint64_t bytes;
} region;

/* The kernel rewrites q and k while other blocks still read their inputs,
 * so no buffer may share bytes with q or k. */
static int check_apart(ptxq_ctx *ctx, const char *call, const region *written, const region *other) {
  if (other->start == 0 || other->start + other->bytes <= written->start ||
      written->start + written->bytes <= other->start)
    return PTXQ_OK;
  return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                    "%s: %s (0x%llx, %llu bytes) overlaps %s (0x%llx, %llu bytes), which the "
                    "kernel rewrites in place",
                    call, other->name, (unsigned long long)other->start,
                    (unsigned long long)other->bytes, written->name,
                    (unsigned long long)written->start, (unsigned long long)written->bytes);
}

/* Call only once the spec has validated: the sizes are then small. */
static int check_buffers_apart(ptxq_ctx *ctx, const char *call, const ptxgen_spec *s,
                               CUdeviceptr q, CUdeviceptr k, CUdeviceptr positions,
                               CUdeviceptr freq_factors) {
  const uint64_t head_bytes = (uint64_t)s->head_dim * sizeof(float);
  const region rq = {"q", q, (uint64_t)s->m * s->heads * head_bytes};
  const region rk = {"k", k, (uint64_t)s->m * s->kv_heads * head_bytes};
  const region rp = {"positions", positions, (uint64_t)s->m * sizeof(int32_t)};
  const region rf = {"freq_factors", freq_factors, (uint64_t)(s->n_dims / 2) * sizeof(float)};
  int status = check_apart(ctx, call, &rq, &rk);
  if (status == PTXQ_OK) status = check_apart(ctx, call, &rq, &rp);
  if (status == PTXQ_OK) status = check_apart(ctx, call, &rk, &rp);
  if (status == PTXQ_OK) status = check_apart(ctx, call, &rq, &rf);
  if (status == PTXQ_OK) status = check_apart(ctx, call, &rk, &rf);
  return status;
}

void ptxq__rope_constants(const ptxq_rope_params *p, ptxgen_spec *spec) {
  spec->head_dim = p->head_dim;
  spec->n_dims = p->n_dims;
  spec->base = p->base;
  spec->freq_scale = p->freq_scale;
  spec->freq_factors = p->freq_factors != 0;
  spec->ext_factor = p->ext_factor;
  spec->attn_factor = p->attn_factor;
  spec->beta_fast = p->beta_fast;
  spec->beta_slow = p->beta_slow;
  spec->n_ctx_orig = p->n_ctx_orig;
}

/* The parameters as a spec, judged later by ptxgen's own validation
 * (ptxq__op_kernel). */
static void fill_spec(const ptxq_ctx *ctx, uint32_t m, const ptxq_rope_params *p,
                      ptxgen_spec *spec) {
  memset(spec, 0, sizeof *spec); /* compared bytewise by the op cache */
  spec->kind = PTXGEN_KIND_ROPE;
  spec->sm = ctx->info.target_sm;
  spec->m = m;
  spec->mode = (uint32_t)p->mode;
  spec->heads = p->heads;
  spec->kv_heads = p->kv_heads;
  ptxq__rope_constants(p, spec);
}

/* Checks what the spec cannot (the context, the parameters' presence and
 * the buffers) and fills the spec. positions is checked by the caller. */
static int prepare(ptxq_ctx *ctx, const char *call, CUdeviceptr q, CUdeviceptr k, uint32_t m,
                   const ptxq_rope_params *p, ptxgen_spec *spec) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (p == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: params is NULL", call);
  int status = check_buffer(ctx, call, "q", q, QK_ALIGN);
  if (status == PTXQ_OK) status = check_buffer(ctx, call, "k", k, QK_ALIGN);
  if (status == PTXQ_OK && p->freq_factors != 0)
    status = check_buffer(ctx, call, "freq_factors", p->freq_factors, POSITIONS_ALIGN);
  if (status != PTXQ_OK) return status;
  fill_spec(ctx, m, p, spec);
  return PTXQ_OK;
}

/* Enqueues the copy of m host positions into the context's buffer.
 * Lock held, context current. */
static int copy_host_positions(ptxq_ctx *ctx, const char *call, const int32_t *positions,
                               uint32_t m) {
  /* A copy captured into a graph would replay the positions of this call
   * forever (and a copy from pageable memory cannot be captured at all):
   * graphs take their positions from a device buffer through ptxq_rope. */
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  CUresult result = ptxq__cu.StreamIsCapturing(ctx->stream, &capture);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "%s: cuStreamIsCapturing", call);
  if (capture != CU_STREAM_CAPTURE_STATUS_NONE || atomic_load(&ctx->capturing))
    return ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                      "%s: the context's stream is being captured; a graph must read its "
                      "positions from a device buffer (use ptxq_rope)",
                      call);
  if (ctx->rope_positions == 0) {
    int status = ptxq__device_alloc(ctx, sizeof ctx->rope_positions_host,
                                    "ptxq_rope_host_positions' positions buffer",
                                    &ctx->rope_positions);
    if (status != PTXQ_OK) {
      ctx->rope_positions = 0;
      return status;
    }
  }
  /* The copy reads the context's own pageable array, never the caller's:
   * the driver stages pageable memory before returning, so the caller may
   * reuse its array at once, even if it is pinned (the driver would read
   * pinned memory later, when the copy runs). The array is reused by the
   * next call the same way. */
  size_t bytes = (size_t)m * sizeof(int32_t);
  memcpy(ctx->rope_positions_host, positions, bytes);
  result = ptxq__cu.MemcpyHtoDAsync(ctx->rope_positions, ctx->rope_positions_host, bytes,
                                    ctx->stream);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "%s: copying %u positions to the device", call, m);
  return PTXQ_OK;
}

/* Finds the kernel and enqueues it, after copying host_positions (if not
 * NULL) into the context's buffer, which then replaces positions. */
static int run_rope(ptxq_ctx *ctx, const char *call, const ptxgen_spec *spec, CUdeviceptr q,
                    CUdeviceptr k, CUdeviceptr positions, const int32_t *host_positions,
                    CUdeviceptr freq_factors) {
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_kernel_entry *kernel = NULL;
  status = ptxq__op_kernel(ctx, call, spec, &kernel);
  if (status == PTXQ_OK)
    status = check_buffers_apart(ctx, call, spec, q, k, host_positions ? 0 : positions,
                                 freq_factors);
  if (status == PTXQ_OK && host_positions != NULL) {
    status = copy_host_positions(ctx, call, host_positions, spec->m);
    positions = ctx->rope_positions;
  }
  if (status == PTXQ_OK) {
    /* Parameter order as ptxgen.h documents it; freq_factors is 0 when unused. */
    void *params[] = {&q, &k, &positions, &freq_factors};
    status = ptxq__launch(ctx, kernel, params);
  }
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_rope(ptxq_ctx *ctx, ptxq_dev q, ptxq_dev k, ptxq_dev positions, uint32_t m,
              const ptxq_rope_params *p) {
  const char *call = "ptxq_rope";
  ptxgen_spec spec;
  int status = prepare(ctx, call, q, k, m, p, &spec);
  if (status == PTXQ_OK) status = check_buffer(ctx, call, "positions", positions, POSITIONS_ALIGN);
  if (status != PTXQ_OK) return status;
  return run_rope(ctx, call, &spec, q, k, positions, NULL, p->freq_factors);
}

int ptxq_rope_host_positions(ptxq_ctx *ctx, ptxq_dev q, ptxq_dev k, const int32_t *positions,
                             uint32_t m, const ptxq_rope_params *p) {
  const char *call = "ptxq_rope_host_positions";
  ptxgen_spec spec;
  int status = prepare(ctx, call, q, k, m, p, &spec);
  if (status != PTXQ_OK) return status;
  if (positions == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: positions is NULL", call);
  /* The spec's validation checks m too, but m sizes the host copy: check
   * it before anything reads positions[]. */
  if (m == 0 || m > PTXGEN_ROPE_MAX_M)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: m=%u: the number of tokens must be 1..%u", call,
                      m, PTXGEN_ROPE_MAX_M);
  return run_rope(ctx, call, &spec, q, k, 0, positions, p->freq_factors);
}

int ptxq_rope_prepare(ptxq_ctx *ctx, uint32_t m, const ptxq_rope_params *p) {
  const char *call = "ptxq_rope_prepare";
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (p == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: params is NULL", call);
  ptxgen_spec spec;
  fill_spec(ctx, m, p, &spec);
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_kernel_entry *kernel = NULL;
  status = ptxq__op_kernel(ctx, call, &spec, &kernel);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

void ptxq__rope_positions_free(ptxq_ctx *ctx) {
  if (ctx->rope_positions != 0) (void)ptxq__cu.MemFree(ctx->rope_positions);
  ctx->rope_positions = 0;
}
