/*
 * ffn.c: the feed-forward block of a layer in one call (ptxq_ffn):
 *   GELU    y = down . gelu(up . x)
 *   SWIGLU  y = down . (silu(gate . x) * (up . x))
 *   GEGLU   y = down . (gelu(gate . x) * (up . x))
 *
 * Paths. The gated kinds, when gate and up have the same type and m is at
 * most PTXQ__EPILOGUE_MAX_M (internal.h: where it measured faster; in a
 * tensor-core context, or where the gated kernel runs on the integer tensor
 * cores (PTXQ_GEMV_IDP=1): the epilogue's limit, 8), take the
 * fused path: one GEMV kernel with the gated epilogue (ptxgen.h, glu) reads
 * both matrices and writes h = act(gate . x) * (up . x), then the down GEMV
 * reads h. Otherwise (a Q6_K gate with a Q4_K up, say) the unfused path:
 * g = gate . x, h = up . x, the activation kernel h = act(g) * h, then
 * down. GELU is always h = up . x, gelu(h) in place, then down. Both paths
 * give the same bits: the gated epilogue computes each product exactly as
 * the plain GEMV does and applies the activation kernel's formula.
 *
 * PTXQ_FFN_UNFUSED=1 in the environment when a context is opened makes that
 * context always take the unfused path. It is a switch for ptxq-bench,
 * which measures both paths, not an API: read once at ptxq_open, so a
 * context never changes path (or its kernels and workspace) under a graph.
 *
 * Intermediates live in a context-owned device workspace: h ([m][n] fp32)
 * at its start, g after it (unfused gated path only). It grows at the first
 * call that needs more, or at ptxq_ffn_prepare, never during capture. A
 * workspace it outgrows is kept until ptxq_close rather than freed, since a
 * captured graph may still name it; growth at least doubles it, so what is
 * kept stays under the size of the workspace in use.
 *
 * The whole sequence is enqueued under the context's lock: every call on the
 * context shares the workspace, and another thread's FFN (or graph launch)
 * landing between our launches would overwrite h before down reads it. The
 * stream orders the rest.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define FFN_ALIGN 16u        /* x is read in 16-byte vectors; y as ptxq.h requires */
#define REGION_ALIGN 256u    /* g starts on a boundary the act kernel's vectors like */

void ptxq__ffn_init(ptxq_ctx *ctx) {
  const char *unfused = getenv("PTXQ_FFN_UNFUSED");
  ctx->ffn_unfused = unfused != NULL && strcmp(unfused, "1") == 0;
}

void ptxq__ffn_workspace_free(ptxq_ctx *ctx) {
  if (ctx->ffn_workspace != 0) (void)ptxq__cu.MemFree(ctx->ffn_workspace);
  for (size_t i = 0; i < ctx->ffn_retired_count; i++) (void)ptxq__cu.MemFree(ctx->ffn_retired[i]);
  free(ctx->ffn_retired);
  ctx->ffn_retired = NULL;
  ctx->ffn_retired_count = 0;
  ctx->ffn_workspace = 0;
  ctx->ffn_workspace_bytes = 0;
}

/* What one call needs: its weights, its kernels and its workspace. */
typedef struct ffn_plan {
  struct ptxq_weight *gate, *up, *down; /* gate is NULL for GELU */
  bool gated, fused;
  /* fused: gated_gemv is the gated GEMV (W = gate, U = up) writing h.
   * unfused: gate_gemv (gated only) writes g, up_gemv writes h, then act.
   * The plain products as launched (ptxq__gemv_batch). */
  const struct ptxq_kernel_entry *gated_gemv, *act;
  ptxq__gemv_batch gate_gemv, up_gemv, down_gemv;
  size_t region_bytes;    /* one [m][n] fp32 intermediate, rounded up */
  size_t workspace_bytes; /* what this call needs */
} ffn_plan;

static const char *kind_name(ptxq_ffn_kind kind) {
  switch (kind) {
  case PTXQ_FFN_GELU: return "gelu";
  case PTXQ_FFN_SWIGLU: return "swiglu";
  case PTXQ_FFN_GEGLU: return "geglu";
  }
  return NULL;
}

/* Checks what can be checked without the weights. */
static int check_params(ptxq_ctx *ctx, const char *call, const ptxq_ffn_params *p, uint32_t m) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: ctx is NULL", call);
  if (p == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: params is NULL", call);
  if (kind_name(p->kind) == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%s: kind=%d is not PTXQ_FFN_GELU (1), PTXQ_FFN_SWIGLU (2) or "
                      "PTXQ_FFN_GEGLU (3)",
                      call, (int)p->kind);
  const struct {
    const char *role, *name;
  } names[] = {{"gate", p->gate}, {"up", p->up}, {"down", p->down}};
  for (size_t i = p->kind == PTXQ_FFN_GELU ? 1 : 0; i < 3; i++) {
    if (ptxq__weight_name_check(ctx, names[i].name) != PTXQ_OK)
      return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s (%s): %s: %s", call, kind_name(p->kind),
                        names[i].role, ptxq_last_error(ctx));
  }
  if (m < 1 || m > PTXGEN_GEMV_MAX_M)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: m=%u is outside 1..%u", call, m,
                      PTXGEN_GEMV_MAX_M);
  return PTXQ_OK;
}

static int check_buffer(ptxq_ctx *ctx, const char *call, const char *what, CUdeviceptr address) {
  if (address == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s is a null device address", call, what);
  if (address % FFN_ALIGN != 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s: %s=0x%llx is not %u-byte aligned", call, what,
                      (unsigned long long)address, FFN_ALIGN);
  return PTXQ_OK;
}

/* A weight the FFN can use, or NULL with the detail set. Lock held. */
static struct ptxq_weight *find_weight(ptxq_ctx *ctx, const char *call, const char *role,
                                       const char *name, int *status) {
  struct ptxq_weight *w = ptxq__weight_find(ctx, name);
  if (w == NULL) {
    *status = ptxq__fail(ctx, PTXQ_ERR_NOT_FOUND, "%s: no %s weight named '%s'", call, role, name);
    return NULL;
  }
  if (w->type != PTXQ_TYPE_Q4_K && w->type != PTXQ_TYPE_Q6_K) {
    *status = ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                         "%s: %s weight '%s' is %s; the FFN takes Q4_K or Q6_K", call, role, name,
                         ptxq__type_name(w->type));
    return NULL;
  }
  return w;
}

/* Finds the weights and checks that their shapes chain:
 * up/gate [n][k], down [k'][n]. Lock held. */
static int find_weights(ptxq_ctx *ctx, const char *call, const ptxq_ffn_params *p, ffn_plan *plan) {
  int status = PTXQ_OK;
  plan->gated = p->kind != PTXQ_FFN_GELU;
  if (plan->gated && (plan->gate = find_weight(ctx, call, "gate", p->gate, &status)) == NULL)
    return status;
  if ((plan->up = find_weight(ctx, call, "up", p->up, &status)) == NULL) return status;
  if ((plan->down = find_weight(ctx, call, "down", p->down, &status)) == NULL) return status;
  const struct ptxq_weight *gate = plan->gate, *up = plan->up, *down = plan->down;
  if (gate != NULL && (gate->k != up->k || gate->n != up->n))
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%s: gate '%s' is [n=%u][k=%u] but up '%s' is [n=%u][k=%u]: they must "
                      "have the same shape",
                      call, gate->name, gate->n, gate->k, up->name, up->n, up->k);
  if (down->k != up->n)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%s: down '%s' has k=%u but up '%s' has n=%u: down's k must be up's n "
                      "(the hidden size)",
                      call, down->name, down->k, up->name, up->n);
  return PTXQ_OK;
}

/* The kernels of the chosen path, built on first use (never during
 * capture: ptxq__kernel_for refuses). Lock held, context current. */
static int find_kernels(ptxq_ctx *ctx, const char *call, ptxq_ffn_kind kind, uint32_t m,
                        ffn_plan *plan) {
  const uint32_t glu = kind == PTXQ_FFN_SWIGLU ? 1 : 2;
  /* The FMA kernel's epilogue pays up to PTXQ__EPILOGUE_MAX_M; the
   * tensor-core gated kernel (a tensor-core context's) up to its
   * limit, 8 (H100, seventeenth session: the decode step at m = 8 3093 ->
   * 2963 µs; at m = 16 two launches of 8 rows were slower than the
   * unfused one-launch products, 5767 against 5585). */
  /* So does the integer tensor-core gated kernel (PTXQ_GEMV_IDP=1; H100,
   * twenty-seventh session: gate and up of 14336x4096 at m = 8 56.7 µs
   * hot, the two products alone 2 x 33.4). */
  const bool tc = ctx->tensor_cores && plan->gated;
  const bool idp_mma = plan->gated && ptxq__gated_gemv_idp_mma(ctx, plan->gate, m, glu);
  plan->fused = plan->gated && plan->gate->type == plan->up->type && !ctx->ffn_unfused &&
                m <= (tc || idp_mma ? PTXGEN_GEMV_EPILOGUE_MAX_M : PTXQ__EPILOGUE_MAX_M);
  int status;
  if (plan->fused) {
    status = ptxq__gemv_kernel(ctx, plan->gate, m, glu, &plan->gated_gemv);
  } else {
    status = ptxq__gemv_batch_for(ctx, plan->up, m, &plan->up_gemv);
    if (status == PTXQ_OK && plan->gated) status = ptxq__gemv_batch_for(ctx, plan->gate, m, &plan->gate_gemv);
    if (status == PTXQ_OK) {
      ptxgen_spec spec;
      memset(&spec, 0, sizeof spec); /* compared bytewise by the op cache */
      spec.kind = kind == PTXQ_FFN_GELU     ? PTXGEN_KIND_GELU
                  : kind == PTXQ_FFN_SWIGLU ? PTXGEN_KIND_SWIGLU
                                            : PTXGEN_KIND_GEGLU;
      spec.sm = ctx->info.target_sm;
      spec.n = plan->up->n;
      spec.m = m;
      status = ptxq__op_kernel(ctx, call, &spec, &plan->act);
    }
  }
  if (status == PTXQ_OK) status = ptxq__gemv_batch_for(ctx, plan->down, m, &plan->down_gemv);

  /* n <= 2^18 (the GEMV limit, checked above) and m <= 16: no overflow. */
  plan->region_bytes = ((size_t)m * plan->up->n * sizeof(float) + REGION_ALIGN - 1) /
                       REGION_ALIGN * REGION_ALIGN;
  plan->workspace_bytes = plan->gated && !plan->fused ? 2 * plan->region_bytes
                                                      : plan->region_bytes;
  return status;
}

/* Grows the workspace to at least `bytes`. Lock held, context current. */
static int ensure_workspace(ptxq_ctx *ctx, const char *call, size_t bytes) {
  if (ctx->ffn_workspace_bytes >= bytes) return PTXQ_OK;
  bool capturing = false;
  int status = ptxq__capture_active(ctx, &capturing);
  if (status != PTXQ_OK) return status;
  if (capturing)
    return ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                      "%s: the FFN workspace must grow from %zu to %zu bytes, which cannot "
                      "happen during capture: call ptxq_ffn_prepare with this m (or ptxq_ffn "
                      "once) before ptxq_capture_begin",
                      call, ctx->ffn_workspace_bytes, bytes);
  /* Room to keep the old workspace first, so no failure below loses it. */
  if (ctx->ffn_workspace != 0) {
    CUdeviceptr *retired =
        realloc(ctx->ffn_retired, (ctx->ffn_retired_count + 1) * sizeof *retired);
    if (retired == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "%s: out of host memory", call);
    ctx->ffn_retired = retired;
  }
  size_t grown = ctx->ffn_workspace_bytes * 2 > bytes ? ctx->ffn_workspace_bytes * 2 : bytes;
  CUdeviceptr buffer = 0;
  if ((status = ptxq__device_alloc(ctx, grown, "ptxq_ffn workspace", &buffer)) != PTXQ_OK)
    return status;
  if (ctx->ffn_workspace != 0) ctx->ffn_retired[ctx->ffn_retired_count++] = ctx->ffn_workspace;
  ctx->ffn_workspace = buffer;
  ctx->ffn_workspace_bytes = grown;
  return PTXQ_OK;
}

/* Everything but the launches, shared by ptxq_ffn and ptxq_ffn_prepare.
 * Lock held, context current. */
static int plan_call(ptxq_ctx *ctx, const char *call, const ptxq_ffn_params *p, uint32_t m,
                     ffn_plan *plan) {
  memset(plan, 0, sizeof *plan);
  int status = find_weights(ctx, call, p, plan);
  if (status == PTXQ_OK) status = find_kernels(ctx, call, p->kind, m, plan);
  if (status == PTXQ_OK) status = ensure_workspace(ctx, call, plan->workspace_bytes);
  return status;
}

/* Enqueues the path's kernels. Lock held, context current. */
static int enqueue(ptxq_ctx *ctx, const ffn_plan *plan, CUdeviceptr x, CUdeviceptr y) {
  CUdeviceptr h = ctx->ffn_workspace, g = ctx->ffn_workspace + plan->region_bytes;
  int status;
  if (plan->fused) {
    status = ptxq__launch_gemv(ctx, plan->gated_gemv, plan->gate->data, plan->up->data, x, h);
  } else {
    status = PTXQ_OK;
    if (plan->gated) status = ptxq__launch_gemv_batch(ctx, &plan->gate_gemv, plan->gate, x, g);
    if (status == PTXQ_OK) status = ptxq__launch_gemv_batch(ctx, &plan->up_gemv, plan->up, x, h);
    if (status == PTXQ_OK) {
      /* In place, as ptxgen.h's activations allow: (x, y) = (h, h) or
       * (gate, up, y) = (g, h, h). */
      void *unary[] = {&h, &h};
      void *gated[] = {&g, &h, &h};
      status = ptxq__launch(ctx, plan->act, plan->gated ? gated : unary);
    }
  }
  if (status == PTXQ_OK)
    status = ptxq__launch_gemv_batch(ctx, &plan->down_gemv, plan->down, h, y);
  return status;
}

int ptxq_ffn(ptxq_ctx *ctx, const ptxq_ffn_params *p, ptxq_dev x, ptxq_dev y, uint32_t m) {
  const char *call = "ptxq_ffn";
  int status = check_params(ctx, call, p, m);
  if (status == PTXQ_OK) status = check_buffer(ctx, call, "x", x);
  if (status == PTXQ_OK) status = check_buffer(ctx, call, "y", y);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  ffn_plan plan;
  status = plan_call(ctx, call, p, m, &plan);
  if (status == PTXQ_OK) status = enqueue(ctx, &plan, x, y);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_ffn_prepare(ptxq_ctx *ctx, const ptxq_ffn_params *p, uint32_t m) {
  int status = check_params(ctx, "ptxq_ffn_prepare", p, m);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  pthread_mutex_lock(&ctx->lock);
  ffn_plan plan;
  status = plan_call(ctx, "ptxq_ffn_prepare", p, m, &plan);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}
