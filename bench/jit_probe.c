/*
 * jit_probe.c: a development harness (not built by Meson, not part of
 * ptxq-bench) that asks where a kernel's first use goes: how long the
 * driver's JIT (cuModuleLoadDataEx) takes on ptxgen's PTX, and what its
 * options can change about that.
 *
 * For each key it generates the PTX (ptxgen_emit, as the runtime does),
 * then JITs it `reps` times per setting and reports the fastest wall time
 * of the call and, after a slash, the compiler's own CU_JIT_WALL_TIME:
 *   default   no options (the driver's default, optimization level 4)
 *   O3 .. O0  CU_JIT_OPTIMIZATION_LEVEL
 *   split     CU_JIT_SPLIT_COMPILE = 0 (compiler threads: one per CPU)
 * and then all the keys' PTX once more, one after the other and then all at
 * once from one thread each: whether JITs in one process run side by side.
 * The ptxq runtime JITs at the default level; ptxq-bench --kernels first
 * times the whole first use (generate + JIT + module table) in fresh
 * processes.
 *
 * Run it with the driver's cache off, or every JIT after the first of a
 * text is a cache hit (the probe refuses to run otherwise):
 *   gcc -std=c11 -O2 -Iinclude -I/usr/local/cuda/include bench/jit_probe.c ptxgen/ptx.c ptxgen/spec.c \
 *     ptxgen/kinds.c ptxgen/gemv.c ptxgen/gemv_q4k.c ptxgen/gemv_q6k.c ptxgen/gemv_ring.c ptxgen/gemv_tc.c \
 *     ptxgen/stream_read.c ptxgen/act.c ptxgen/act_math.c ptxgen/rope.c \
 *     -L/usr/local/cuda/lib64/stubs -lcuda -lpthread -lm -o /tmp/jit_probe
 *   CUDA_CACHE_DISABLE=1 /tmp/jit_probe [--reps N] KEY...
 * Exit status: 0 ok, 1 a driver or generator failure, 2 usage.
 */
#define _POSIX_C_SOURCE 200809L

#include <cuda.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ptxgen.h"

#define MAX_KEYS 64
#define SETTINGS 6

static const char *const setting_names[SETTINGS] = {"default", "O3", "O2", "O1", "O0", "split"};

static CUcontext context;

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static void die_cu(CUresult rc, const char *what, const char *key) {
  const char *name = "?";
  cuGetErrorName(rc, &name);
  fprintf(stderr, "jit_probe: %s%s%s: %s\n", what, key ? " of " : "", key ? key : "", name);
  exit(1);
}

/* One JIT of ptx under setting s (an index into setting_names); returns
 * the call's wall time and stores the compiler's own in *compiler_ms. */
static double jit_once(const char *key, const char *ptx, int s, float *compiler_ms) {
  CUjit_option options[2] = {CU_JIT_WALL_TIME};
  void *values[2] = {NULL};
  unsigned count = 1;
  if (s >= 1 && s <= 4) {
    options[count] = CU_JIT_OPTIMIZATION_LEVEL;
    values[count++] = (void *)(size_t)(4 - s); /* O3 .. O0 */
  } else if (s == 5) {
    options[count] = CU_JIT_SPLIT_COMPILE;
    values[count++] = (void *)(size_t)0;
  }
  CUmodule module;
  const double t0 = now_ms();
  CUresult rc = cuModuleLoadDataEx(&module, ptx, count, options, values);
  const double wall = now_ms() - t0;
  if (rc != CUDA_SUCCESS) die_cu(rc, "cuModuleLoadDataEx", key);
  /* the driver writes the float into the pointer-sized slot itself */
  memcpy(compiler_ms, &values[0], sizeof *compiler_ms);
  rc = cuModuleUnload(module);
  if (rc != CUDA_SUCCESS) die_cu(rc, "cuModuleUnload", key);
  return wall;
}

struct job {
  const char *key, *ptx;
  double ms;
};

static void *jit_in_thread(void *arg) {
  struct job *j = arg;
  CUresult rc = cuCtxSetCurrent(context);
  if (rc != CUDA_SUCCESS) die_cu(rc, "cuCtxSetCurrent", j->key);
  float unused;
  j->ms = jit_once(j->key, j->ptx, 0, &unused);
  return NULL;
}

static int usage(FILE *f) {
  fprintf(f, "usage: jit_probe [--reps N] KEY...  (run with CUDA_CACHE_DISABLE=1)\n"
             "Times the driver's JIT of each key's PTX at each optimization level and with\n"
             "split compilation, then all keys one after the other and all at once in threads.\n");
  return f == stdout ? 0 : 2;
}

int main(int argc, char **argv) {
  int reps = 3, nkeys = 0;
  const char *keys[MAX_KEYS];
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--help")) return usage(stdout);
    if (!strcmp(argv[i], "--reps")) {
      char *end = NULL;
      long v = i + 1 < argc ? strtol(argv[++i], &end, 10) : 0;
      if (!end || *end || v < 1 || v > 1000) {
        fprintf(stderr, "jit_probe: --reps needs a count in 1..1000\n");
        return 2;
      }
      reps = (int)v;
    } else if (nkeys == MAX_KEYS) {
      fprintf(stderr, "jit_probe: at most %d keys\n", MAX_KEYS);
      return 2;
    } else {
      keys[nkeys++] = argv[i];
    }
  }
  if (nkeys == 0) return usage(stderr);
  const char *cache_off = getenv("CUDA_CACHE_DISABLE");
  if (!cache_off || strcmp(cache_off, "1")) {
    fprintf(stderr, "jit_probe: set CUDA_CACHE_DISABLE=1: with the driver's cache on, repeated JITs are cache hits\n");
    return 2;
  }

  char *ptx[MAX_KEYS];
  for (int i = 0; i < nkeys; i++) {
    ptxgen_spec spec;
    ptxgen_kernel k;
    char msg[512];
    if (ptxgen_spec_parse(keys[i], &spec, msg, sizeof msg) || ptxgen_emit(&spec, &k, msg, sizeof msg)) {
      fprintf(stderr, "jit_probe: %s: %s\n", keys[i], msg);
      return 1;
    }
    ptx[i] = k.ptx; /* kept to the end; k's other fields own nothing */
  }

  const double t0 = now_ms();
  CUresult rc = cuInit(0);
  if (rc != CUDA_SUCCESS) die_cu(rc, "cuInit", NULL);
  CUdevice device;
  if ((rc = cuDeviceGet(&device, 0)) != CUDA_SUCCESS) die_cu(rc, "cuDeviceGet", NULL);
  if ((rc = cuDevicePrimaryCtxRetain(&context, device)) != CUDA_SUCCESS) die_cu(rc, "cuDevicePrimaryCtxRetain", NULL);
  if ((rc = cuCtxSetCurrent(context)) != CUDA_SUCCESS) die_cu(rc, "cuCtxSetCurrent", NULL);
  char name[128] = "?";
  cuDeviceGetName(name, sizeof name, device);
  int driver = 0;
  cuDriverGetVersion(&driver);
  printf("device %s, driver API %d, context in %.1f ms; fastest of %d JITs, ms (call / compiler's own)\n", name,
         driver, now_ms() - t0, reps);
  float unused;
  const double first = jit_once(keys[0], ptx[0], 0, &unused);
  printf("the process's first JIT (%s, default): %.1f ms, not counted below\n", keys[0], first);

  printf("%8s", "PTX B");
  for (int s = 0; s < SETTINGS; s++) printf(" %15s", setting_names[s]);
  printf("  key\n");
  for (int i = 0; i < nkeys; i++) {
    printf("%8zu", strlen(ptx[i]));
    for (int s = 0; s < SETTINGS; s++) {
      double best = 0;
      float best_compiler = 0;
      for (int r = 0; r < reps; r++) {
        float compiler;
        const double wall = jit_once(keys[i], ptx[i], s, &compiler);
        if (r == 0 || wall < best) best = wall, best_compiler = compiler;
      }
      printf(" %7.1f / %5.1f", best, best_compiler);
    }
    printf("  %s\n", keys[i]);
    fflush(stdout);
  }

  double serial = now_ms();
  for (int i = 0; i < nkeys; i++) jit_once(keys[i], ptx[i], 0, &unused);
  serial = now_ms() - serial;
  pthread_t threads[MAX_KEYS];
  struct job jobs[MAX_KEYS];
  double together = now_ms();
  for (int i = 0; i < nkeys; i++) {
    jobs[i] = (struct job){.key = keys[i], .ptx = ptx[i]};
    if (pthread_create(&threads[i], NULL, jit_in_thread, &jobs[i])) {
      fprintf(stderr, "jit_probe: pthread_create failed\n");
      return 1;
    }
  }
  double slowest = 0;
  for (int i = 0; i < nkeys; i++) {
    pthread_join(threads[i], NULL);
    if (jobs[i].ms > slowest) slowest = jobs[i].ms;
  }
  together = now_ms() - together;
  printf("all %d keys, default: one after the other %.1f ms; all at once, one thread each, %.1f ms (the slowest "
         "call %.1f ms)\n",
         nkeys, serial, together, slowest);
  for (int i = 0; i < nkeys; i++) free(ptx[i]);
  cuDevicePrimaryCtxRelease(device);
  return 0;
}
