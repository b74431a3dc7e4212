/*
 * context.c: opening and closing a context (one device, one stream).
 *
 * A context retains the device's primary context (the one the CUDA runtime
 * and other libraries share, so ptxq buffers interoperate with theirs) and
 * creates its own non-blocking stream. It never leaves its CUDA context
 * current: each call pushes it and pops it before returning, so any thread
 * may use a ptxq context without disturbing its own CUDA state.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* Targets the generator writes PTX for, oldest first. */
static const uint32_t supported_targets[] = {75, 80, 86, 89, 90, 100, 120};
#define TARGET_COUNT (sizeof supported_targets / sizeof supported_targets[0])

static bool target_supported(uint32_t sm) {
  for (size_t i = 0; i < TARGET_COUNT; i++)
    if (supported_targets[i] == sm) return true;
  return false;
}

/* The newest supported target the device can run (PTX JIT-compiles forward
 * to newer devices), or 0 if the device predates them all. */
static uint32_t target_for_device(uint32_t device_sm) {
  uint32_t best = 0;
  for (size_t i = 0; i < TARGET_COUNT; i++)
    if (supported_targets[i] <= device_sm) best = supported_targets[i];
  return best;
}

int ptxq__enter(ptxq_ctx *ctx) {
  CUresult result = ptxq__cu.CtxPushCurrent(ctx->context);
  if (result != CUDA_SUCCESS) return ptxq__fail_cu(ctx, result, "cuCtxPushCurrent");
  return PTXQ_OK;
}

void ptxq__leave(ptxq_ctx *ctx) {
  (void)ctx;
  CUcontext popped;
  /* Cannot fail after a successful push on this thread. */
  (void)ptxq__cu.CtxPopCurrent(&popped);
}

/* Reads the device's description into ctx->info. */
static int read_device_info(ptxq_ctx *ctx, int ordinal) {
  ptxq_device_info *info = &ctx->info;
  CUresult result;
  if ((result = ptxq__cu.DeviceGetName(info->name, (int)sizeof info->name, ctx->device)) !=
      CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDeviceGetName(device %d)", ordinal);
  info->name[sizeof info->name - 1] = '\0';

  static const struct {
    CUdevice_attribute attribute;
    const char *name;
  } wanted[] = {
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, "COMPUTE_CAPABILITY_MAJOR"},
      {CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, "COMPUTE_CAPABILITY_MINOR"},
      {CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, "MULTIPROCESSOR_COUNT"},
      {CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, "L2_CACHE_SIZE"},
  };
  int values[4];
  for (size_t i = 0; i < 4; i++) {
    result = ptxq__cu.DeviceGetAttribute(&values[i], wanted[i].attribute, ctx->device);
    if (result != CUDA_SUCCESS)
      return ptxq__fail_cu(NULL, result, "cuDeviceGetAttribute(%s, device %d)", wanted[i].name,
                           ordinal);
  }
  info->sm = (uint32_t)(values[0] * 10 + values[1]);
  info->multiprocessors = (uint32_t)values[2];
  info->l2_bytes = (uint64_t)values[3];

  size_t total = 0;
  if ((result = ptxq__cu.DeviceTotalMem(&total, ctx->device)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDeviceTotalMem(device %d)", ordinal);
  info->total_memory = total;

  if ((result = ptxq__cu.DriverGetVersion(&info->driver_version)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDriverGetVersion");
  return PTXQ_OK;
}

/* Picks the target from the option (0 = the device's own). */
static int choose_target(ptxq_ctx *ctx, int ordinal, uint32_t requested) {
  uint32_t device_sm = ctx->info.sm;
  uint32_t own = target_for_device(device_sm);
  if (own == 0)
    return ptxq__fail(NULL, PTXQ_ERR_UNSUPPORTED,
                      "device %d (%s) has compute capability %u.%u; ptxq needs 7.5 or newer",
                      ordinal, ctx->info.name, device_sm / 10, device_sm % 10);
  if (requested == 0) {
    ctx->info.target_sm = own;
    return PTXQ_OK;
  }
  if (!target_supported(requested))
    return ptxq__fail(NULL, PTXQ_ERR_INVALID,
                      "target_sm=%u is not a supported target (75, 80, 86, 89, 90, 100, 120)",
                      requested);
  if (requested > device_sm)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "target_sm=%u is newer than device %d (%s, sm_%u)",
                      requested, ordinal, ctx->info.name, device_sm);
  ctx->info.target_sm = requested;
  return PTXQ_OK;
}

/* Everything after the primary context is retained; on failure the caller
 * releases what was made (ctx->stream is NULL when not created). */
static int open_device(ptxq_ctx *ctx, int ordinal, uint32_t requested_target) {
  CUresult result;
  int count = 0;
  if ((result = ptxq__cu.DeviceGetCount(&count)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDeviceGetCount");
  if (ordinal >= count)
    return ptxq__fail(NULL, PTXQ_ERR_NO_DEVICE,
                      "device %d does not exist: this machine has %d CUDA device%s", ordinal, count,
                      count == 1 ? "" : "s");
  if ((result = ptxq__cu.DeviceGet(&ctx->device, ordinal)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDeviceGet(%d)", ordinal);

  int status = read_device_info(ctx, ordinal);
  if (status != PTXQ_OK) return status;
  if ((status = choose_target(ctx, ordinal, requested_target)) != PTXQ_OK) return status;

  if ((result = ptxq__cu.DevicePrimaryCtxRetain(&ctx->context, ctx->device)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuDevicePrimaryCtxRetain(device %d)", ordinal);

  if ((result = ptxq__cu.CtxPushCurrent(ctx->context)) != CUDA_SUCCESS)
    return ptxq__fail_cu(NULL, result, "cuCtxPushCurrent(device %d)", ordinal);
  result = ptxq__cu.StreamCreate(&ctx->stream, CU_STREAM_NON_BLOCKING);
  CUcontext popped;
  (void)ptxq__cu.CtxPopCurrent(&popped);
  if (result != CUDA_SUCCESS) {
    ctx->stream = NULL;
    return ptxq__fail_cu(NULL, result, "cuStreamCreate(device %d)", ordinal);
  }
  return PTXQ_OK;
}

/* PTXQ_GEMV_TUNE=ROWS,WARPS (a benchmark switch, like PTXQ_PDL): plain
 * GEMVs (not gated, not on the tensor cores) use rows per warp and warps
 * per block of the key's tuning options instead of the generator's
 * default. Which warp computes a row changes, not the order of its sums. */
static int read_gemv_tuning(ptxq_ctx *ctx) {
  const char *tune = getenv("PTXQ_GEMV_TUNE");
  if (tune == NULL || tune[0] == '\0') return PTXQ_OK;
  unsigned rows = 0, warps = 0;
  char end = 0;
  if (sscanf(tune, "%u,%u%c", &rows, &warps, &end) != 2 || !(rows == 1 || rows == 2 || rows == 4) ||
      !(warps == 4 || warps == 8 || warps == 16))
    return ptxq__fail(NULL, PTXQ_ERR_INVALID,
                      "PTXQ_GEMV_TUNE='%.40s': want ROWS,WARPS with ROWS 1, 2 or 4 and WARPS 4, 8 or 16",
                      tune);
  ctx->gemv_rows = (uint8_t)rows;
  ctx->gemv_warps = (uint8_t)warps;
  return PTXQ_OK;
}

/* PTXQ_GEMV_PRELOAD=N (a benchmark switch): every FMA GEMV, plain, gated or
 * over several weights, takes the key option preload=N (ptxgen.h): how its
 * weight loads run ahead. Where the bytes come from changes, not the
 * arithmetic. */
static int read_gemv_preload(ptxq_ctx *ctx) {
  const char *preload = getenv("PTXQ_GEMV_PRELOAD");
  if (preload == NULL || preload[0] == '\0') return PTXQ_OK;
  unsigned value = 0;
  char end = 0;
  if (sscanf(preload, "%u%c", &value, &end) != 1 || value < 1 || value > 4)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "PTXQ_GEMV_PRELOAD='%.40s': want 1, 2, 3 or 4", preload);
  ctx->gemv_preload = (uint8_t)value;
  return PTXQ_OK;
}

/* PTXQ_GEMV_IDP=1 (a benchmark switch): every Q4_K FMA GEMV, plain, gated
 * or over several weights, takes the key option idp=1 (ptxgen.h): x in
 * fixed point, integer dot products. Its bits differ from the default's. */
static int read_gemv_idp(ptxq_ctx *ctx) {
  const char *idp = getenv("PTXQ_GEMV_IDP");
  if (idp == NULL || idp[0] == '\0' || strcmp(idp, "0") == 0) return PTXQ_OK;
  if (strcmp(idp, "1") != 0) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "PTXQ_GEMV_IDP='%.40s': want 0 or 1", idp);
  ctx->gemv_idp = true;
  return PTXQ_OK;
}

int ptxq_open(ptxq_ctx **out, const ptxq_options *opt) {
  if (out == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_open: ctx is NULL");
  *out = NULL;

  const char *why = NULL;
  int status = ptxq__driver_load(&why);
  if (status != PTXQ_OK) return ptxq__fail(NULL, status, "%s", why);

  int ordinal = opt ? opt->device : 0;
  uint32_t requested_target = opt ? opt->target_sm : 0;
  const int tensor_cores = opt ? opt->tensor_cores : 0;
  if (ordinal < 0)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "device %d: a device ordinal is >= 0", ordinal);
  if (tensor_cores != 0 && tensor_cores != 1)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "tensor_cores=%d: must be 0 (default) or 1", tensor_cores);

  ptxq_ctx *ctx = calloc(1, sizeof *ctx);
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_NOMEM, "ptxq_open: out of host memory");
  if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
    free(ctx);
    return ptxq__fail(NULL, PTXQ_ERR_NOMEM, "ptxq_open: cannot create a mutex");
  }
  atomic_init(&ctx->capturing, false);
  ptxq__ffn_init(ctx);

  status = open_device(ctx, ordinal, requested_target);
  if (status == PTXQ_OK && tensor_cores && ctx->info.target_sm < 80)
    status = ptxq__fail(NULL, PTXQ_ERR_UNSUPPORTED,
                        "tensor_cores=1 with target sm_%u: the tensor-core GEMV needs sm_80 or newer",
                        ctx->info.target_sm);
  ctx->tensor_cores = tensor_cores != 0;
  if (status == PTXQ_OK) {
    const char *pdl = getenv("PTXQ_PDL");
    ctx->programmatic_launch = ptxq__cu.LaunchKernelEx != NULL && ctx->info.sm >= 90 &&
                               ctx->info.driver_version >= 12030 &&
                               !(pdl != NULL && strcmp(pdl, "0") == 0);
    status = read_gemv_tuning(ctx);
    if (status == PTXQ_OK) status = read_gemv_preload(ctx);
    if (status == PTXQ_OK) status = read_gemv_idp(ctx);
  }
  if (status != PTXQ_OK) {
    if (ctx->stream != NULL && ptxq__cu.CtxPushCurrent(ctx->context) == CUDA_SUCCESS) {
      (void)ptxq__cu.StreamDestroy(ctx->stream);
      CUcontext popped;
      (void)ptxq__cu.CtxPopCurrent(&popped);
    }
    if (ctx->context != NULL) (void)ptxq__cu.DevicePrimaryCtxRelease(ctx->device);
    pthread_mutex_destroy(&ctx->lock);
    free(ctx);
    return status;
  }
  *out = ctx;
  return PTXQ_OK;
}

void ptxq_close(ptxq_ctx *ctx) {
  if (ctx == NULL) return;
  /* A close has no one to report to: it frees everything it can and
   * ignores the driver's complaints (after a sticky kernel fault every call
   * fails, yet the host side must still be released). */
  bool current = ptxq__enter(ctx) == PTXQ_OK;
  /* A capture left open would make the synchronisation below fail and
   * leave work unfinished: end it and drop its graph. */
  if (current) ptxq__capture_abandon(ctx);
  (void)ptxq__cu.StreamSynchronize(ctx->stream);
  ptxq__weights_free_all(ctx);
  ptxq__allocations_free_all(ctx);
  ptxq__staging_free(ctx);
  ptxq__rope_positions_free(ctx);
  ptxq__ffn_workspace_free(ctx);
  ptxq__modules_free_all(ctx);
  (void)ptxq__cu.StreamDestroy(ctx->stream);
  if (current) ptxq__leave(ctx);
  (void)ptxq__cu.DevicePrimaryCtxRelease(ctx->device);
  pthread_mutex_destroy(&ctx->lock);
  free(ctx);
}

int ptxq_device_info_get(ptxq_ctx *ctx, ptxq_device_info *info) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_device_info_get: ctx is NULL");
  if (info == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_device_info_get: info is NULL");
  *info = ctx->info; /* immutable after open: no lock needed */
  return PTXQ_OK;
}

void *ptxq_stream(ptxq_ctx *ctx) {
  return ctx ? (void *)ctx->stream : NULL;
}
