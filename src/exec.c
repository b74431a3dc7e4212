/*
 * exec.c: the GEMV ops. Validate, find the kernel, launch.
 *
 * ptxq_gemv_multi runs several weights of one x (a layer's q, k, v) as one
 * kernel over their rows side by side (ptxgen.h, n2/n3), a large batch in
 * launches of 8 as ptxq_gemv.
 * The hot path of a decode step is ptxq_gemv: one lock, one hash look-up by
 * weight name, the kernel cached on the weight for this m, cuLaunchKernel
 * (twice for a large batch of more than 8 rows that runs as launches of 8,
 * ptxgen_gemv_batch_rows).
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

/* The spec of w's GEMV for batch m and epilogue glu, with the context's
 * options (tensor cores, tuning and preload switches). */
static int gemv_spec(ptxq_ctx *ctx, const struct ptxq_weight *w, uint32_t m, uint32_t glu, ptxgen_spec *spec) {
  ptxgen_kind kind;
  switch (w->type) {
  case PTXQ_TYPE_Q4_K: kind = PTXGEN_KIND_Q4K_GEMV; break;
  case PTXQ_TYPE_Q6_K: kind = PTXGEN_KIND_Q6K_GEMV; break;
  default:
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, "weight '%s' is %s: gemv supports Q4_K and Q6_K", w->name,
                      ptxq__type_name(w->type));
  }
  if (w->k > PTXGEN_GEMV_MAX_K)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, "weight '%s': k=%u exceeds the gemv limit k <= %u", w->name, w->k,
                      PTXGEN_GEMV_MAX_K);
  if (w->n > PTXGEN_GEMV_MAX_N)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, "weight '%s': n=%u exceeds the gemv limit n <= %u", w->name, w->n,
                      PTXGEN_GEMV_MAX_N);
  *spec = (ptxgen_spec){.kind = kind,
                        .sm = ctx->info.target_sm,
                        .k = w->k,
                        .n = w->n,
                        .m = m,
                        .glu = glu,
                        .tc = ctx->tensor_cores};
  if (glu == 0 && !spec->tc) {
    spec->rows = ctx->gemv_rows;
    spec->warps = ctx->gemv_warps;
  }
  if (!spec->tc) spec->preload = ctx->gemv_preload;
  spec->idp = ctx->gemv_idp && !spec->tc && kind == PTXGEN_KIND_Q4K_GEMV;
  return PTXQ_OK;
}

bool ptxq__gated_gemv_idp_mma(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, uint32_t glu) {
  if (!ctx->gemv_idp || m > PTXGEN_GEMV_EPILOGUE_MAX_M) return false;
  uint8_t *known = &w->gated_idp_mma[m];
  if (*known == 0) {
    ptxgen_spec spec;
    *known = gemv_spec(ctx, w, m, glu, &spec) == PTXQ_OK && ptxgen_gemv_idp_mma(&spec) ? 2 : 1;
  }
  return *known == 2;
}

int ptxq__gemv_kernel(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, uint32_t glu,
                      const struct ptxq_kernel_entry **out) {
  const struct ptxq_kernel_entry **cached = &w->gemv_by_m[glu][m];
  if (*cached == NULL) {
    ptxgen_spec spec;
    int status = gemv_spec(ctx, w, m, glu, &spec);
    if (status == PTXQ_OK) status = ptxq__kernel_for(ctx, &spec, cached);
    if (status != PTXQ_OK) return status;
  }
  *out = *cached;
  return PTXQ_OK;
}

int ptxq__gemv_batch_for(ptxq_ctx *ctx, struct ptxq_weight *w, uint32_t m, ptxq__gemv_batch *out) {
  uint8_t *rows = &w->gemv_batch_rows[m];
  if (*rows == 0) {
    ptxgen_spec spec;
    int status = gemv_spec(ctx, w, m, 0, &spec);
    if (status != PTXQ_OK) return status;
    const uint32_t r = ptxgen_gemv_batch_rows(&spec); /* 0 (invalid): ptxq__kernel_for says why */
    *rows = (uint8_t)(r != 0 && r < m ? r : m);
  }
  *out = (ptxq__gemv_batch){.m = m, .rows = *rows};
  int status = ptxq__gemv_kernel(ctx, w, out->rows, 0, &out->full);
  if (status == PTXQ_OK && m % out->rows != 0) status = ptxq__gemv_kernel(ctx, w, m % out->rows, 0, &out->rest);
  return status;
}

/* The kernel of the batch's launch that starts r0 rows in: the full one,
 * or the rest for the last launch of a batch that does not divide. */
static const struct ptxq_kernel_entry *batch_kernel(const ptxq__gemv_batch *batch, uint32_t r0) {
  return batch->m - r0 >= batch->rows ? batch->full : batch->rest;
}

int ptxq__launch_gemv_batch(ptxq_ctx *ctx, const ptxq__gemv_batch *batch, const struct ptxq_weight *w,
                            CUdeviceptr x, CUdeviceptr y) {
  for (uint32_t r0 = 0; r0 < batch->m; r0 += batch->rows) {
    const CUdeviceptr xr = x + (CUdeviceptr)r0 * w->k * sizeof(float);
    const CUdeviceptr yr = y + (CUdeviceptr)r0 * w->n * sizeof(float);
    int status = ptxq__launch_gemv(ctx, batch_kernel(batch, r0), w->data, 0, xr, yr);
    if (status != PTXQ_OK) return status;
  }
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

/* The weight and its plain GEMV for m as launched, built on first use.
 * Lock held, context current. */
static int gemv_batch(ptxq_ctx *ctx, const char *name, uint32_t m, const struct ptxq_weight **out_weight,
                      ptxq__gemv_batch *out_batch) {
  struct ptxq_weight *w = ptxq__weight_find(ctx, name);
  if (w == NULL) return PTXQ_ERR_NOT_FOUND;
  int status = ptxq__gemv_batch_for(ctx, w, m, out_batch);
  if (status != PTXQ_OK) return status;
  *out_weight = w;
  return PTXQ_OK;
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
  ptxq__gemv_batch batch;
  status = gemv_batch(ctx, weight, m, &w, &batch);
  if (status == PTXQ_OK) status = ptxq__launch_gemv_batch(ctx, &batch, w, x, y);
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
  ptxq__gemv_batch batch;
  status = gemv_batch(ctx, weight, m, &w, &batch);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

/* ---- several weights, one kernel ------------------------------------------ */

static int check_multi_args(ptxq_ctx *ctx, const char *call, const char *const *weights, uint32_t count,
                            uint32_t m) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (weights == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: weights is NULL", call);
  if (count < 1 || count > PTXQ_GEMV_MULTI_MAX)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: count=%u is outside 1..%d", call, count, PTXQ_GEMV_MULTI_MAX);
  for (uint32_t i = 0; i < count; i++) {
    int status = check_gemv_args(ctx, call, weights[i], m);
    if (status != PTXQ_OK) return status;
  }
  return PTXQ_OK;
}

/* RoPE in the epilogue of q, k[, v]: the parameters as the spec's rope
 * fields (ptxgen's validation judges them), after checking that the heads
 * are the weights' rows. */
static int check_heads(ptxq_ctx *ctx, const char *call, const ptxq_rope_params *p, struct ptxq_weight *const *w) {
  if (p->head_dim == 0 || (uint64_t)p->heads * p->head_dim != w[0]->n ||
      (uint64_t)p->kv_heads * p->head_dim != w[1]->n)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%s: heads=%u and kv_heads=%u of head_dim=%u do not match the rows of q (%u) and k (%u)", call,
                      p->heads, p->kv_heads, p->head_dim, w[0]->n, w[1]->n);
  return PTXQ_OK;
}

static int fill_rope(ptxq_ctx *ctx, const char *call, const ptxq_rope_params *p, struct ptxq_weight *const *w,
                     ptxgen_spec *spec) {
  int status = check_heads(ctx, call, p, w);
  if (status != PTXQ_OK) return status;
  if (p->mode != PTXQ_ROPE_NORMAL && p->mode != PTXQ_ROPE_NEOX)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: mode=%d: must be PTXQ_ROPE_NORMAL (0) or PTXQ_ROPE_NEOX (2)", call,
                      (int)p->mode);
  spec->rope = p->mode == PTXQ_ROPE_NEOX ? 2 : 1;
  ptxq__rope_constants(p, spec);
  return PTXQ_OK;
}

/* Whether the multi-weight ops may take RoPE as a kernel of their own, so
 * that a prepare builds it: past the epilogue's batches, and in a
 * tensor-core context, whose kernel takes only some RoPE (the weights
 * being unknown before the look-up, the kernel is only built and the
 * parameters judged). */
static bool rope_kernel_ahead(const ptxq_ctx *ctx, uint32_t m, const ptxq_rope_params *rope) {
  return rope != NULL && (m > PTXQ__EPILOGUE_MAX_M || ctx->tensor_cores);
}

/* Whether the tensor-core q/k/v kernel takes this RoPE in its epilogue
 * (ptxgen_gemv_tc_rope_fits: neox over whole heads of 32k rows). */
static bool tc_takes_rope(const ptxq_rope_params *rope) {
  ptxgen_spec probe = {.rope = rope->mode == PTXQ_ROPE_NEOX ? 2 : 1};
  ptxq__rope_constants(rope, &probe);
  return ptxgen_gemv_tc_rope_fits(&probe);
}

/* The weights and the kernels reading them side by side, with RoPE on the
 * first two when rope is given: in the kernel's epilogue up to
 * PTXQ__EPILOGUE_MAX_M, else (*rope_apart set) by the rope kernel after it.
 * A large batch runs as launches of fewer rows where ptxgen_gemv_batch_rows
 * says so, as ptxq_gemv does (the epilogue's RoPE never meets such a
 * batch: it stops at m = 4). In a tensor-core context Q4_K and Q6_K weights
 * run on the tensor-core kernel over several weights, with RoPE in it where
 * tc_takes_rope says and m <= PTXQ__EPILOGUE_MAX_M, else after it.
 * Lock held. */
static int multi_kernels(ptxq_ctx *ctx, const char *call, const char *const *names, uint32_t count, uint32_t m,
                         const ptxq_rope_params *rope, struct ptxq_weight **w, ptxq__gemv_batch *out,
                         bool *rope_apart) {
  *rope_apart = rope != NULL && m > PTXQ__EPILOGUE_MAX_M;
  for (uint32_t i = 0; i < count; i++) {
    struct ptxq_weight *found = ptxq__weight_find(ctx, names[i]);
    if (found == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOT_FOUND, "%s: no weight '%s'", call, names[i]);
    w[i] = found;
    if (i > 0 && (found->type != w[0]->type || found->k != w[0]->k))
      return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                        "%s: weight '%s' is %s with k=%u, '%s' is %s with k=%u: one kernel needs one type and k",
                        call, names[i], ptxq__type_name(found->type), found->k, names[0],
                        ptxq__type_name(w[0]->type), w[0]->k);
  }
  if (count == 1 && rope == NULL) return ptxq__gemv_batch_for(ctx, w[0], m, out);
  if (count == 1) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: count=1: RoPE needs the q and k weights", call);
  if (w[0]->type != PTXQ_TYPE_Q4_K && w[0]->type != PTXQ_TYPE_Q6_K)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, "%s: weight '%s' is %s: gemv supports Q4_K and Q6_K", call,
                      names[0], ptxq__type_name(w[0]->type));
  const bool tc = ctx->tensor_cores; /* both types have a tensor-core kernel */
  if (tc) *rope_apart = rope != NULL && (m > PTXQ__EPILOGUE_MAX_M || !tc_takes_rope(rope));
  ptxgen_spec spec = {.kind = w[0]->type == PTXQ_TYPE_Q6_K ? PTXGEN_KIND_Q6K_GEMV : PTXGEN_KIND_Q4K_GEMV,
                      .sm = ctx->info.target_sm,
                      .k = w[0]->k,
                      .n = w[0]->n,
                      .n2 = w[1]->n,
                      .n3 = count > 2 ? w[2]->n : 0,
                      .m = m,
                      .preload = tc ? 0 : ctx->gemv_preload,
                      .tc = tc,
                      .idp = ctx->gemv_idp && !tc && w[0]->type == PTXQ_TYPE_Q4_K};
  if (rope != NULL) {
    int status = *rope_apart ? check_heads(ctx, call, rope, w) : fill_rope(ctx, call, rope, w, &spec);
    if (status != PTXQ_OK) return status;
  }
  const uint32_t rows = ptxgen_gemv_batch_rows(&spec); /* 0 (invalid): ptxq__kernel_for says why */
  *out = (ptxq__gemv_batch){.m = m, .rows = rows != 0 && rows < m ? rows : m};
  spec.m = out->rows;
  int status = ptxq__kernel_for(ctx, &spec, &out->full);
  if (status == PTXQ_OK && m % out->rows != 0) {
    spec.m = m % out->rows;
    status = ptxq__kernel_for(ctx, &spec, &out->rest);
  }
  return status;
}

/* Enqueues the launches of a multi-weight batch (multi_kernels' output);
 * rope and positions are the kernel's own parameters, NULL and 0 where RoPE
 * is not in its epilogue. Lock held, context current. */
static int multi_launch(ptxq_ctx *ctx, const ptxq__gemv_batch *batch, struct ptxq_weight *const *w,
                        uint32_t count, ptxq_dev x, const ptxq_dev *ys, const ptxq_rope_params *rope,
                        ptxq_dev positions) {
  /* u64 W, W2[, W3], x, y, y2[, y3][, positions, freq_factors]: the order
   * ptxgen.h gives; each launch of a split batch starts r0 rows in */
  CUdeviceptr wd[PTXQ_GEMV_MULTI_MAX], yd[PTXQ_GEMV_MULTI_MAX], xd, pd = positions;
  CUdeviceptr fd = rope != NULL ? rope->freq_factors : 0;
  void *params[2 * PTXQ_GEMV_MULTI_MAX + 3];
  uint32_t n = 0;
  for (uint32_t i = 0; i < count; i++) wd[i] = w[i]->data, params[n++] = &wd[i];
  params[n++] = &xd;
  for (uint32_t i = 0; i < count; i++) params[n++] = &yd[i];
  if (rope != NULL) params[n++] = &pd, params[n++] = &fd;
  for (uint32_t r0 = 0; r0 < batch->m; r0 += batch->rows) {
    xd = x + (CUdeviceptr)r0 * w[0]->k * sizeof(float);
    for (uint32_t i = 0; i < count; i++) yd[i] = ys[i] + (CUdeviceptr)r0 * w[i]->n * sizeof(float);
    int status = ptxq__launch(ctx, batch_kernel(batch, r0), params);
    if (status != PTXQ_OK) return status;
  }
  return PTXQ_OK;
}

/* ptxq_gemv_multi and ptxq_gemv_multi_rope (rope and positions given). */
static int multi_run(const char *call, ptxq_ctx *ctx, const char *const *weights, uint32_t count, ptxq_dev x,
                     const ptxq_dev *ys, uint32_t m, ptxq_dev positions, const ptxq_rope_params *rope) {
  int status = check_multi_args(ctx, call, weights, count, m);
  if (status != PTXQ_OK) return status;
  /* RoPE as a kernel of its own: its parameters judged (and its kernel
   * built) before anything is enqueued */
  if (rope_kernel_ahead(ctx, m, rope) && (status = ptxq_rope_prepare(ctx, m, rope)) != PTXQ_OK) return status;
  if (ys == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: ys is NULL", call);
  if (x == 0 || x % GEMV_X_ALIGN != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: x=0x%llx is null or not %u-byte aligned", call,
                      (unsigned long long)x, GEMV_X_ALIGN);
  for (uint32_t i = 0; i < count; i++)
    if (ys[i] == 0 || ys[i] % sizeof(float) != 0)
      return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: ys[%u]=0x%llx (for '%s') is null or not %zu-byte aligned", call,
                        i, (unsigned long long)ys[i], weights[i], sizeof(float));
  if (rope != NULL && (positions == 0 || positions % sizeof(int32_t) != 0))
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: positions=0x%llx is null or not 4-byte aligned", call,
                      (unsigned long long)positions);
  if (rope != NULL && rope->freq_factors % sizeof(float) != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: freq_factors=0x%llx is not 4-byte aligned", call,
                      (unsigned long long)rope->freq_factors);
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  struct ptxq_weight *w[PTXQ_GEMV_MULTI_MAX] = {NULL};
  ptxq__gemv_batch batch;
  bool rope_apart = false;
  status = multi_kernels(ctx, call, weights, count, m, rope, w, &batch, &rope_apart);
  if (status == PTXQ_OK)
    status = multi_launch(ctx, &batch, w, count, x, ys, rope != NULL && !rope_apart ? rope : NULL, positions);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  if (status == PTXQ_OK && rope_apart) status = ptxq_rope(ctx, ys[0], ys[1], positions, m, rope);
  return status;
}

static int multi_prepare(const char *call, ptxq_ctx *ctx, const char *const *weights, uint32_t count, uint32_t m,
                         const ptxq_rope_params *rope) {
  int status = check_multi_args(ctx, call, weights, count, m);
  if (status != PTXQ_OK) return status;
  if (rope_kernel_ahead(ctx, m, rope) && (status = ptxq_rope_prepare(ctx, m, rope)) != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  struct ptxq_weight *w[PTXQ_GEMV_MULTI_MAX] = {NULL};
  ptxq__gemv_batch batch;
  bool rope_apart = false;
  status = multi_kernels(ctx, call, weights, count, m, rope, w, &batch, &rope_apart);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_gemv_multi(ptxq_ctx *ctx, const char *const *weights, uint32_t count, ptxq_dev x,
                    const ptxq_dev *ys, uint32_t m) {
  return multi_run("ptxq_gemv_multi", ctx, weights, count, x, ys, m, 0, NULL);
}

int ptxq_gemv_multi_prepare(ptxq_ctx *ctx, const char *const *weights, uint32_t count, uint32_t m) {
  return multi_prepare("ptxq_gemv_multi_prepare", ctx, weights, count, m, NULL);
}

int ptxq_gemv_multi_rope(ptxq_ctx *ctx, const char *const *weights, uint32_t count, ptxq_dev x,
                         const ptxq_dev *ys, uint32_t m, ptxq_dev positions, const ptxq_rope_params *rope) {
  if (ctx != NULL && rope == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_gemv_multi_rope: params is NULL");
  return multi_run("ptxq_gemv_multi_rope", ctx, weights, count, x, ys, m, positions, rope);
}

int ptxq_gemv_multi_rope_prepare(ptxq_ctx *ctx, const char *const *weights, uint32_t count, uint32_t m,
                                 const ptxq_rope_params *rope) {
  if (ctx != NULL && rope == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_gemv_multi_rope_prepare: params is NULL");
  return multi_prepare("ptxq_gemv_multi_rope_prepare", ctx, weights, count, m, rope);
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
  ptxq__gemv_batch batch;
  status = gemv_batch(ctx, weight, m, &w, &batch);
  /* m <= 16, k <= 65536, n <= 262144: these products cannot overflow. */
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
  if (status == PTXQ_OK) status = ptxq__launch_gemv_batch(ctx, &batch, w, ctx->staging_x, ctx->staging_y);
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
