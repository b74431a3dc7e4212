/*
 * activations.c: the activation ops (ptxq_gelu, ptxq_gelu_erf, ptxq_silu,
 * ptxq_swiglu, ptxq_geglu) on [m][n] fp32 device buffers.
 *
 * Each call checks its arguments, finds the kernel of (kind, n, m, target)
 * through the context's op cache (ptxq__op_kernel: a memcmp on a repeat,
 * generate + JIT on the first call for a shape) and enqueues it. No sync,
 * no allocation, no copy.
 *
 * The generated kernel moves 16-byte vectors and lets each thread read its
 * values before writing them, so y may be an input itself; a y that
 * partly overlaps an input would let one thread overwrite values another
 * has yet to read, so that is refused rather than computed wrong.
 */
#define _POSIX_C_SOURCE 200809L
#include <string.h>

#include "internal.h"

#define ACT_ALIGN 16u /* the kernel reads and writes 16-byte vectors */

/* A null or misaligned buffer would fault the kernel, and a fault ruins the
 * whole CUDA context: refuse it here. */
static int check_buffer(ptxq_ctx *ctx, const char *call, const char *what, CUdeviceptr address) {
  if (address == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s is a null device address", call, what);
  if (address % ACT_ALIGN != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%s: %s=0x%llx is not %u-byte aligned (the kernel moves 16-byte vectors)",
                      call, what, (unsigned long long)address, ACT_ALIGN);
  return PTXQ_OK;
}

/* y must be the input itself or lie wholly apart from it. */
static int check_output_against(ptxq_ctx *ctx, const char *call, const char *what,
                                CUdeviceptr input, CUdeviceptr y, uint64_t bytes) {
  if (y == input || y + bytes <= input || input + bytes <= y) return PTXQ_OK;
  return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                    "%s: y=0x%llx partly overlaps %s=0x%llx (%llu bytes each): y must be %s "
                    "itself (in place) or a separate buffer",
                    call, (unsigned long long)y, what, (unsigned long long)input,
                    (unsigned long long)bytes, what);
}

/* The whole op; up is 0 for the unary kinds. */
static int run_activation(ptxq_ctx *ctx, const char *call, ptxgen_kind kind, CUdeviceptr x,
                          CUdeviceptr up, CUdeviceptr y, uint32_t n, uint32_t m) {
  const bool gated = kind == PTXGEN_KIND_SWIGLU || kind == PTXGEN_KIND_GEGLU;
  const char *x_name = gated ? "gate" : "x";
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (n == 0 || n > PTXGEN_ACT_MAX_N)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: n=%u is outside 1..%u", call, n,
                      PTXGEN_ACT_MAX_N);
  if (m == 0 || m > PTXGEN_ACT_MAX_M)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: m=%u is outside 1..%u", call, m,
                      PTXGEN_ACT_MAX_M);
  int status = check_buffer(ctx, call, x_name, x);
  if (status == PTXQ_OK && gated) status = check_buffer(ctx, call, "up", up);
  if (status == PTXQ_OK) status = check_buffer(ctx, call, "y", y);
  /* n <= 2^20 and m <= 16: the size cannot overflow. */
  const uint64_t bytes = (uint64_t)n * m * sizeof(float);
  if (status == PTXQ_OK) status = check_output_against(ctx, call, x_name, x, y, bytes);
  if (status == PTXQ_OK && gated) status = check_output_against(ctx, call, "up", up, y, bytes);
  if (status != PTXQ_OK) return status;

  ptxgen_spec spec;
  memset(&spec, 0, sizeof spec); /* compared bytewise by the op cache */
  spec.kind = kind;
  spec.sm = ctx->info.target_sm;
  spec.n = n;
  spec.m = m;

  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_kernel_entry *kernel = NULL;
  status = ptxq__op_kernel(ctx, call, &spec, &kernel);
  if (status == PTXQ_OK) {
    /* Parameter order as ptxgen.h documents it: (x, y) or (gate, up, y). */
    void *unary_params[] = {&x, &y};
    void *gated_params[] = {&x, &up, &y};
    status = ptxq__launch(ctx, kernel, gated ? gated_params : unary_params);
  }
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_gelu(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m) {
  return run_activation(ctx, "ptxq_gelu", PTXGEN_KIND_GELU, x, 0, y, n, m);
}

int ptxq_gelu_erf(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m) {
  return run_activation(ctx, "ptxq_gelu_erf", PTXGEN_KIND_GELU_ERF, x, 0, y, n, m);
}

int ptxq_silu(ptxq_ctx *ctx, ptxq_dev x, ptxq_dev y, uint32_t n, uint32_t m) {
  return run_activation(ctx, "ptxq_silu", PTXGEN_KIND_SILU, x, 0, y, n, m);
}

int ptxq_swiglu(ptxq_ctx *ctx, ptxq_dev gate, ptxq_dev up, ptxq_dev y, uint32_t n, uint32_t m) {
  return run_activation(ctx, "ptxq_swiglu", PTXGEN_KIND_SWIGLU, gate, up, y, n, m);
}

int ptxq_geglu(ptxq_ctx *ctx, ptxq_dev gate, ptxq_dev up, ptxq_dev y, uint32_t n, uint32_t m) {
  return run_activation(ctx, "ptxq_geglu", PTXGEN_KIND_GEGLU, gate, up, y, n, m);
}
