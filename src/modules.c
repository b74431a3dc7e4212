/*
 * modules.c: the shape-keyed module table.
 *
 * Every kernel is identified by its canonical key (ptxgen_spec_format), and
 * the key names everything baked into its PTX, so one compiled module per
 * key per context is all there is to cache. The first request for a key
 * generates the PTX, has the driver JIT it and records the function and the
 * geometry the generator wrote it for; later requests are a hash look-up.
 *
 * Builds happen with the context's lock held: two threads asking for the same
 * new key build it once. During stream capture nothing is built (graph.c).
 * Entries are allocated one by one and never move, so callers may keep
 * pointers to them until ptxq_close.
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define JIT_LOG_BYTES 8192
#define INITIAL_BUCKETS 64
#define DEFAULT_MAX_SHARED_BYTES (48 * 1024) /* more needs an explicit opt-in */

static struct ptxq_kernel_entry *find(const ptxq_ctx *ctx, const char *key, uint64_t hash) {
  if (ctx->kernel_bucket_count == 0) return NULL;
  struct ptxq_kernel_entry *e = ctx->kernel_buckets[hash & (ctx->kernel_bucket_count - 1)];
  for (; e != NULL; e = e->next)
    if (e->hash == hash && strcmp(e->key, key) == 0) return e;
  return NULL;
}

/* Inserts a new entry, doubling the buckets when the chains would average
 * more than one entry. Lock held. */
static int insert(ptxq_ctx *ctx, struct ptxq_kernel_entry *entry) {
  if (ctx->kernel_count + 1 > ctx->kernel_bucket_count) {
    size_t count = ctx->kernel_bucket_count ? ctx->kernel_bucket_count * 2 : INITIAL_BUCKETS;
    struct ptxq_kernel_entry **buckets = calloc(count, sizeof *buckets);
    if (buckets == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "module table: out of host memory");
    for (size_t i = 0; i < ctx->kernel_bucket_count; i++) {
      struct ptxq_kernel_entry *e = ctx->kernel_buckets[i];
      while (e != NULL) {
        struct ptxq_kernel_entry *next = e->next;
        size_t b = e->hash & (count - 1);
        e->next = buckets[b];
        buckets[b] = e;
        e = next;
      }
    }
    free(ctx->kernel_buckets);
    ctx->kernel_buckets = buckets;
    ctx->kernel_bucket_count = count;
  }
  size_t b = entry->hash & (ctx->kernel_bucket_count - 1);
  entry->next = ctx->kernel_buckets[b];
  ctx->kernel_buckets[b] = entry;
  ctx->kernel_count++;
  return PTXQ_OK;
}

static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ptxas logs name the failing line as "..., line 57; error : ...". Copies
 * "line 57: <that line of the PTX>" into out, or "" when the log names no
 * line (or one past the end of the text). */
static void quote_failing_line(const char *log, const char *ptx, char *out, size_t cap) {
  out[0] = '\0';
  const char *p = log;
  unsigned long line = 0;
  while ((p = strstr(p, "line ")) != NULL) {
    p += 5;
    if (isdigit((unsigned char)*p)) {
      line = strtoul(p, NULL, 10);
      break;
    }
  }
  if (line == 0) return;
  const char *text = ptx;
  for (unsigned long n = 1; n < line && text != NULL; n++) {
    text = strchr(text, '\n');
    if (text != NULL) text++;
  }
  if (text == NULL || *text == '\0') return;
  while (*text == ' ' || *text == '\t') text++;
  size_t len = strcspn(text, "\n");
  if (len > 200) len = 200;
  snprintf(out, cap, "line %lu: %.*s", line, (int)len, text);
}

/* Loads PTX through the JIT. On failure the detail names the key, the
 * driver's error, the PTX line the log points at and the log itself. */
static int load_module(ptxq_ctx *ctx, const char *key, const char *ptx, CUmodule *module) {
  char *error_log = calloc(2, JIT_LOG_BYTES);
  if (error_log == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "JIT of %s: out of host memory", key);
  char *info_log = error_log + JIT_LOG_BYTES;

  CUjit_option options[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_INFO_LOG_BUFFER, CU_JIT_INFO_LOG_BUFFER_SIZE_BYTES,
                            CU_JIT_LOG_VERBOSE};
  /* The driver reads integer options from the pointer slot itself. */
  void *values[] = {error_log, (void *)(uintptr_t)JIT_LOG_BYTES, info_log,
                    (void *)(uintptr_t)JIT_LOG_BYTES, (void *)(uintptr_t)1};
  CUresult result = ptxq__cu.ModuleLoadDataEx(
      module, ptx, (unsigned)(sizeof options / sizeof options[0]), options, values);
  int status = PTXQ_OK;
  if (result != CUDA_SUCCESS) {
    error_log[JIT_LOG_BYTES - 1] = '\0';
    char why[256], line[256];
    ptxq__cu_error_text(result, why, sizeof why);
    quote_failing_line(error_log, ptx, line, sizeof line);
    status = result == CUDA_ERROR_OUT_OF_MEMORY ? PTXQ_ERR_DEVICE_MEMORY : PTXQ_ERR_JIT;
    /* One line each: what failed, the PTX line at fault, then the log. */
    status = ptxq__fail(ctx, status, "JIT of %s failed: %s\n%s%sJIT log:\n%s", key, why, line,
                        line[0] ? "\n" : "", error_log[0] ? error_log : "(empty)");
  }
  free(error_log);
  return status;
}

/* Reads what the JIT made of the entry and applies the shared-memory opt-in
 * the geometry needs. */
static int describe_function(ptxq_ctx *ctx, struct ptxq_kernel_entry *e) {
  CUresult result = ptxq__cu.ModuleGetFunction(&e->function, e->module, e->entry);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "kernel %s: cuModuleGetFunction('%s')", e->key, e->entry);

  const struct {
    CUfunction_attribute attribute;
    int *value;
    const char *name;
  } wanted[] = {
      {CU_FUNC_ATTRIBUTE_NUM_REGS, &e->registers, "NUM_REGS"},
      {CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES, &e->local_bytes, "LOCAL_SIZE_BYTES"},
      {CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES, &e->static_shared_bytes, "SHARED_SIZE_BYTES"},
  };
  for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
    result = ptxq__cu.FuncGetAttribute(wanted[i].value, wanted[i].attribute, e->function);
    if (result != CUDA_SUCCESS)
      return ptxq__fail_cu(ctx, result, "kernel %s: cuFuncGetAttribute(%s)", e->key,
                           wanted[i].name);
  }

  /* A block larger than the compiled function allows would fail at every
   * launch ("too many resources requested"): say so once, here. */
  int max_threads = 0;
  result = ptxq__cu.FuncGetAttribute(&max_threads, CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, e->function);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "kernel %s: cuFuncGetAttribute(MAX_THREADS_PER_BLOCK)", e->key);
  uint32_t threads = e->geometry.block[0] * e->geometry.block[1] * e->geometry.block[2];
  if ((uint32_t)max_threads < threads)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                      "kernel %s: compiled with %d registers per thread it runs at most %d threads per "
                      "block, and it is launched with %u",
                      e->key, e->registers, max_threads, threads);

  uint32_t shared = e->geometry.shared_bytes;
  if (shared > DEFAULT_MAX_SHARED_BYTES) {
    result = ptxq__cu.FuncSetAttribute(e->function, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                       (int)shared);
    if (result != CUDA_SUCCESS)
      return ptxq__fail_cu(ctx, result,
                           "kernel %s needs %u bytes of dynamic shared memory (device %s): "
                           "cuFuncSetAttribute(MAX_DYNAMIC_SHARED_SIZE_BYTES)",
                           e->key, shared, ctx->info.name);
  }
  return PTXQ_OK;
}

/* A GEMV walks its row groups with a grid stride, so any grid is correct;
 * the fastest is one wave: every block resident from the start, each
 * staging x once and loading one group ahead while it finishes another,
 * and a programmatically launched next kernel then only takes the room its
 * blocks leave as they finish. The generator's grid is an upper bound; the
 * device's occupancy for this kernel decides. (Not for the tensor-core
 * kernel over several weights: see build.) */
static int fit_grid_to_device(ptxq_ctx *ctx, struct ptxq_kernel_entry *e) {
  const ptxgen_geometry *g = &e->geometry;
  int per_sm = 0;
  CUresult result = ptxq__cu.OccupancyMaxActiveBlocksPerMultiprocessor(
      &per_sm, e->function, (int)(g->block[0] * g->block[1] * g->block[2]), g->shared_bytes);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "kernel %s: cuOccupancyMaxActiveBlocksPerMultiprocessor",
                         e->key);
  if (per_sm < 1) per_sm = 1;
  uint64_t wave = (uint64_t)per_sm * ctx->info.multiprocessors;
  if (g->cluster > 1) wave = wave < g->cluster ? g->cluster : wave - wave % g->cluster; /* whole clusters */
  if (wave >= 1 && wave < e->geometry.grid[0]) e->geometry.grid[0] = (uint32_t)wave;
  return PTXQ_OK;
}

void (*ptxq__test_ptx_hook)(char *ptx) = NULL;

static int build(ptxq_ctx *ctx, const ptxgen_spec *spec, const char *key, uint64_t hash,
                 const struct ptxq_kernel_entry **out) {
  double start = seconds_now();
  char msg[512];
  ptxgen_kernel kernel;
  memset(&kernel, 0, sizeof kernel);
  int generated = ptxgen_emit(spec, &kernel, msg, sizeof msg);
  if (generated != PTXGEN_OK)
    return ptxq__fail(ctx, generated == PTXGEN_ERR_NOMEM ? PTXQ_ERR_NOMEM : PTXQ_ERR_INVALID,
                      "generating %s failed: %s", key, msg);

  struct ptxq_kernel_entry *e = calloc(1, sizeof *e);
  if (e == NULL) {
    ptxgen_kernel_free(&kernel);
    return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "kernel %s: out of host memory", key);
  }
  e->hash = hash;
  snprintf(e->key, sizeof e->key, "%s", key);
  memcpy(e->entry, kernel.entry, sizeof e->entry);
  e->entry[sizeof e->entry - 1] = '\0';
  e->geometry = kernel.geometry;
  e->programmatic = spec->sm >= 90 && (spec->kind != PTXGEN_KIND_STREAM_READ || spec->pdl);

  if (ptxq__test_ptx_hook != NULL) ptxq__test_ptx_hook(kernel.ptx);
  int status = load_module(ctx, key, kernel.ptx, &e->module);
  ptxgen_kernel_free(&kernel);
  if (status != PTXQ_OK) {
    free(e);
    return status;
  }
  /* not the tensor-core kernel over several weights: its blocks are
   * assigned to the weights by their index, so its grid is as generated */
  if ((status = describe_function(ctx, e)) == PTXQ_OK &&
      (spec->kind == PTXGEN_KIND_Q4K_GEMV || spec->kind == PTXGEN_KIND_Q6K_GEMV) && !(spec->tc && spec->n2))
    status = fit_grid_to_device(ctx, e);
  if (status == PTXQ_OK) {
    e->jit_ms = (seconds_now() - start) * 1e3;
    status = insert(ctx, e);
  }
  if (status != PTXQ_OK) {
    (void)ptxq__cu.ModuleUnload(e->module);
    free(e);
    return status;
  }
  *out = e;
  return PTXQ_OK;
}

int ptxq__kernel_for(ptxq_ctx *ctx, const ptxgen_spec *spec, const struct ptxq_kernel_entry **out) {
  *out = NULL;
  char key[PTXQ_KEY_CAP];
  int len = ptxgen_spec_format(spec, key, sizeof key);
  if (len < 0) {
    char msg[256];
    msg[0] = '\0';
    ptxgen_spec_validate(spec, msg, sizeof msg);
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "invalid kernel spec: %s", msg);
  }
  if ((size_t)len >= sizeof key)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "kernel key longer than %d bytes: %s...",
                      PTXQ_KEY_CAP - 1, key);
  if (spec->sm > ctx->info.sm)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "kernel %s targets sm=%u, newer than device %s (sm_%u)", key, spec->sm,
                      ctx->info.name, ctx->info.sm);

  uint64_t hash = ptxq__hash(key);
  const struct ptxq_kernel_entry *found = find(ctx, key, hash);
  if (found != NULL) {
    *out = found;
    return PTXQ_OK;
  }
  /* A build during capture would stall the capturing thread on the JIT and
   * bake a first-use cost into what should be a replayable step: kernels
   * are built before capture, and a miss now is the caller's mistake. */
  bool capturing = false;
  int status = ptxq__capture_active(ctx, &capturing);
  if (status != PTXQ_OK) return status;
  if (capturing)
    return ptxq__fail(ctx, PTXQ_ERR_CAPTURE,
                      "kernel %s is not built: call a prepare function or run the op once "
                      "before capture",
                      key);
  return build(ctx, spec, key, hash, out);
}

int ptxq__launch(ptxq_ctx *ctx, const struct ptxq_kernel_entry *k, void **params) {
  const ptxgen_geometry *g = &k->geometry;
  CUresult result;
  if (ctx->programmatic_launch && k->programmatic) {
    /* The kernel may start before the one before it ends: it waits for it
     * itself before reading anything that kernel writes. */
    CUlaunchAttribute attribute;
    memset(&attribute, 0, sizeof attribute);
    attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
    attribute.value.programmaticStreamSerializationAllowed = 1;
    CUlaunchConfig config = {
        .gridDimX = g->grid[0], .gridDimY = g->grid[1], .gridDimZ = g->grid[2],
        .blockDimX = g->block[0], .blockDimY = g->block[1], .blockDimZ = g->block[2],
        .sharedMemBytes = g->shared_bytes, .hStream = ctx->stream,
        .attrs = &attribute, .numAttrs = 1};
    result = ptxq__cu.LaunchKernelEx(&config, k->function, params, NULL);
  } else {
    result = ptxq__cu.LaunchKernel(k->function, g->grid[0], g->grid[1], g->grid[2], g->block[0],
                                   g->block[1], g->block[2], g->shared_bytes, ctx->stream, params,
                                   NULL);
  }
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(
        ctx, result, "cuLaunchKernel(%s, grid %ux%ux%u, block %ux%ux%u, %u shared bytes)", k->key,
        g->grid[0], g->grid[1], g->grid[2], g->block[0], g->block[1], g->block[2], g->shared_bytes);
  return PTXQ_OK;
}

void ptxq__modules_free_all(ptxq_ctx *ctx) {
  for (size_t i = 0; i < ctx->kernel_bucket_count; i++) {
    struct ptxq_kernel_entry *e = ctx->kernel_buckets[i];
    while (e != NULL) {
      struct ptxq_kernel_entry *next = e->next;
      (void)ptxq__cu.ModuleUnload(e->module);
      free(e);
      e = next;
    }
  }
  free(ctx->kernel_buckets);
  ctx->kernel_buckets = NULL;
  ctx->kernel_bucket_count = ctx->kernel_count = 0;
}

/* Parses a public key; the detail carries ptxgen's reason. */
static int parse_key(ptxq_ctx *ctx, const char *key, ptxgen_spec *spec) {
  if (key == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "kernel key is NULL");
  char msg[256];
  msg[0] = '\0';
  if (ptxgen_spec_parse(key, spec, msg, sizeof msg) != PTXGEN_OK)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "bad kernel key '%.200s': %s", key, msg);
  return PTXQ_OK;
}

int ptxq_kernel_get(ptxq_ctx *ctx, const char *key, ptxq_kernel_info *info) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_kernel_get: ctx is NULL");
  if (info == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_kernel_get: info is NULL");
  ptxgen_spec spec;
  int status = parse_key(ctx, key, &spec);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  const struct ptxq_kernel_entry *k = NULL;
  pthread_mutex_lock(&ctx->lock);
  status = ptxq__kernel_for(ctx, &spec, &k);
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  if (status != PTXQ_OK) return status;

  memset(info, 0, sizeof *info);
  memcpy(info->entry, k->entry, sizeof info->entry);
  for (int i = 0; i < 3; i++) {
    info->grid[i] = k->geometry.grid[i];
    info->block[i] = k->geometry.block[i];
  }
  info->shared_bytes = k->geometry.shared_bytes;
  info->registers = k->registers;
  info->spill_bytes = k->local_bytes;
  info->static_shared_bytes = k->static_shared_bytes;
  info->jit_ms = k->jit_ms;
  return PTXQ_OK;
}

int ptxq_kernel_launch(ptxq_ctx *ctx, const char *key, void **params) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_kernel_launch: ctx is NULL");
  if (params == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_kernel_launch(%.200s): params is NULL",
                      key ? key : "(null)");
  ptxgen_spec spec;
  int status = parse_key(ctx, key, &spec);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  const struct ptxq_kernel_entry *k = NULL;
  pthread_mutex_lock(&ctx->lock);
  status = ptxq__kernel_for(ctx, &spec, &k);
  pthread_mutex_unlock(&ctx->lock);
  if (status == PTXQ_OK) status = ptxq__launch(ctx, k, params);
  ptxq__leave(ctx);
  return status;
}
