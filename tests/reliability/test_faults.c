/*
 * test_faults.c: faults, and how the runtime comes through them (issue #6,
 * part 5). Two Criterion suites in one binary, run as two meson tests:
 *
 * "faults" (meson suite gpu, run with --jobs 1: exhausting device memory
 * would starve any test running beside it). Each skips without a GPU.
 *  - device memory exhausted by ptxq_alloc, in big chunks then smaller:
 *    PTXQ_ERR_DEVICE_MEMORY with a message; while exhausted a weight upload
 *    is refused the same way and leaves nothing behind; after the frees the
 *    context computes a GEMV right.
 *  - a JIT failure, made by ptxq__test_ptx_hook corrupting an instruction:
 *    PTXQ_ERR_JIT with the key, the PTX line and the JIT log; nothing is
 *    cached, kernels built before are untouched, and with the hook cleared
 *    the same kernels build and compute right.
 *  - ptxq_close with thousands of GEMVs still queued: no crash or hang, and
 *    a new context afterwards computes right.
 *  - 1000 open/close cycles, each uploading weights, running every kind of
 *    op, an event and a graph: host memory (RSS, malloc's bytes in use) and
 *    device memory (the driver's free bytes, read through dlopen: ptxq has
 *    no public call for it) do not grow. The figures go to stderr.
 *  - a device ordinal past the last device, every device hidden
 *    (CUDA_VISIBLE_DEVICES), host memory exhausted (RLIMIT_AS) during an
 *    upload: each a clear status and detail.
 *
 * "nodriver" (meson suite unit): PTXQ_LIBCUDA names a missing file before
 * the process's first ptxq call (Criterion runs every test in a process of
 * its own). ptxq_open says PTXQ_ERR_NO_DEVICE and why; every other entry
 * point of ptxq.h, all of which need a context that cannot exist now, fails
 * cleanly on a NULL one (naming itself), whatever its other arguments; the
 * CPU side still works. Also: PTXQ_LIBCUDA naming a file that is not a
 * library, a library that is not a driver, the toolkit's stub library, and
 * host memory exhausted in the GGUF reader and the generator.
 */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cuda.h>

#include "gpu_common.h"
#include "internal.h" /* ptxq__test_ptx_hook */
#include "ptxgen.h"
#include "ptxq.h"
#include "under_tool.h"

#define MISSING_LIBCUDA "/nonexistent/libcuda.so.1"
#define TOLERANCE 1e-5 /* GEMV: max |y - ref| / max |ref| */

/* ---- helpers ------------------------------------------------------------------ */

static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Asserts y (m*n values) is within TOLERANCE of the fp64 reference. */
static void assert_gemv_right(ptxq_type type, const void *w, uint32_t k, uint32_t n, const float *x,
                              uint32_t m, const float *y, uint64_t seed, const char *what) {
  double *ref = checked_malloc((size_t)m * n * sizeof *ref);
  cr_assert_eq(ptxq_ref_gemv(type, w, k, n, x, m, ref), PTXQ_OK);
  double error = relative_error(y, ref, (size_t)m * n);
  cr_assert(error <= TOLERANCE, "seed %llu: %s: relative error %.3g", (unsigned long long)seed,
            what, error);
  free(ref);
}

/* Runs the GEMV of weight name on device buffers and checks it. */
static void check_gemv(ptxq_ctx *ctx, const char *name, const uint8_t *w, uint32_t k, uint32_t n,
                       const float *x, uint32_t m, uint64_t seed, const char *what) {
  ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), dy = device_alloc(ctx, (size_t)m * n * 4);
  upload(ctx, dx, x, (size_t)m * k * 4);
  poison(ctx, dy, (size_t)m * n * 4);
  EXPECT_OK(ctx, ptxq_gemv(ctx, name, dx, dy, m));
  float *y = checked_malloc((size_t)m * n * 4);
  download(ctx, y, dy, (size_t)m * n * 4);
  assert_gemv_right(PTXQ_TYPE_Q4_K, w, k, n, x, m, y, seed, what);
  free(y);
  EXPECT_OK(ctx, ptxq_free(ctx, dx));
  EXPECT_OK(ctx, ptxq_free(ctx, dy));
}


/* ---- device memory exhausted ----------------------------------------------------------- */

Test(faults, device_memory_exhausted, .timeout = 180) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 1024, n = 301;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, k);
  EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "w", 1));
  ptxq_device_info info;
  EXPECT_OK(ctx, ptxq_device_info_get(ctx, &info));

  /* Big chunks until one is refused, then halves, down to 64 KiB. */
  enum { MAX_BLOCKS = 16384 };
  ptxq_dev *blocks = checked_malloc(MAX_BLOCKS * sizeof *blocks);
  size_t count = 0, held = 0, refusals = 0;
  char first_refusal[512] = "";
  for (size_t chunk = (size_t)8 << 30; chunk >= ((size_t)64 << 10); chunk /= 2) {
    for (;;) {
      cr_assert_lt(count, (size_t)MAX_BLOCKS, "%zu allocations of %zu bytes and no refusal", count,
                   chunk);
      ptxq_dev p = 1;
      int status = ptxq_alloc(ctx, chunk, &p);
      if (status == PTXQ_OK) {
        blocks[count++] = p;
        held += chunk;
        continue;
      }
      const char *why = ptxq_last_error(ctx);
      cr_assert_eq(status, PTXQ_ERR_DEVICE_MEMORY, "ptxq_alloc(%zu) with %zu held gave %d (%s): %s",
                   chunk, held, status, ptxq_strerror(status), why);
      cr_assert_eq(p, 0, "a refused allocation must leave *out 0");
      char needle[64];
      snprintf(needle, sizeof needle, "cannot allocate %zu bytes", chunk);
      cr_assert(strstr(why, needle) != NULL, "detail '%s' should say '%s'", why, needle);
      if (refusals++ == 0) snprintf(first_refusal, sizeof first_refusal, "%s", why);
      break;
    }
  }
  cr_assert_gt(refusals, 0, "never refused");
  cr_assert_gt(held, info.total_memory / 2, "only %zu of %llu bytes could be allocated", held,
               (unsigned long long)info.total_memory);
  fprintf(stderr,
          "device_memory_exhausted: %s (%llu bytes): %zu allocations hold %zu bytes; first "
          "refusal: %s\n",
          info.name, (unsigned long long)info.total_memory, count, held, first_refusal);

  /* Exhausted: a weight upload is refused and leaves no weight behind. */
  size_t big_bytes;
  uint8_t *big = random_q4k(&r, 4096, 256, &big_bytes); /* 576 KiB */
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "big", PTXQ_TYPE_Q4_K, 4096, 256, big, big_bytes),
              PTXQ_ERR_DEVICE_MEMORY, "weight 'big'");
  fprintf(stderr, "device_memory_exhausted: weight upload refused: %s\n", ptxq_last_error(ctx));
  ptxq_weight_info winfo;
  EXPECT_FAIL(ctx, ptxq_weight_info_get(ctx, "big", &winfo), PTXQ_ERR_NOT_FOUND, "big");
  /* A refused replacement leaves the weight as it was. */
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "w", PTXQ_TYPE_Q4_K, 4096, 256, big, big_bytes),
              PTXQ_ERR_DEVICE_MEMORY, "weight 'w'");
  EXPECT_OK(ctx, ptxq_weight_info_get(ctx, "w", &winfo));
  cr_assert(winfo.k == k && winfo.n == n && winfo.bytes == w_bytes,
            "a refused replacement changed 'w' to k=%u n=%u", winfo.k, winfo.n);

  for (size_t i = 0; i < count; i++) EXPECT_OK(ctx, ptxq_free(ctx, blocks[i]));
  EXPECT_OK(ctx, ptxq_sync(ctx));
  check_gemv(ctx, "w", w, k, n, x, 1, seed, "GEMV after device memory was exhausted and freed");
  upload_weight(ctx, "big", PTXQ_TYPE_Q4_K, big, 4096, 256, big_bytes);
  float *x_big = random_floats(&r, 3 * 4096);
  check_gemv(ctx, "big", big, 4096, 256, x_big, 3, seed, "the weight refused before");
  free(x_big);
  free(big);
  free(blocks);
  free(x);
  free(w);
  ptxq_close(ctx);
}

/* ---- a JIT failure ------------------------------------------------------------------------ */

static int hook_calls;

/* Turns the first "ret;" into "rxt;", which no PTX assembler knows. */
static void corrupt_first_ret(char *ptx) {
  hook_calls++;
  char *at = strstr(ptx, "ret;");
  if (at != NULL) at[1] = 'x';
}

Test(faults, jit_failure_is_reported_and_the_context_recovers, .timeout = 120) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info info;
  EXPECT_OK(ctx, ptxq_device_info_get(ctx, &info));
  const uint32_t k = 768, n = 129, m = 2;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)m * k);
  ptxq_dev act = device_alloc(ctx, 4096);
  upload(ctx, act, x, 100 * sizeof(float)); /* written: initcheck sees every read */
  EXPECT_OK(ctx, ptxq_silu(ctx, act, act, 100, 1)); /* built before the fault */

  ptxq__test_ptx_hook = corrupt_first_ret;
  hook_calls = 0;
  EXPECT_OK(ctx, ptxq_silu(ctx, act, act, 100, 1));
  cr_assert_eq(hook_calls, 0, "a kernel built before was generated again");

  char key[128];
  snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u", k, n, m, info.target_sm);
  EXPECT_FAIL(ctx, ptxq_gemv_prepare(ctx, "w", m), PTXQ_ERR_JIT, key);
  const char *why = ptxq_last_error(ctx);
  cr_assert(strstr(why, "JIT log") != NULL, "detail should carry the JIT log: '%s'", why);
  cr_assert(strstr(why, "rxt") != NULL, "detail should quote the PTX line at fault: '%s'", why);
  cr_assert_eq(hook_calls, 1);
  fprintf(stderr, "jit_failure: %s\n", why);

  /* A failed build is not cached: each use builds (and fails) again, and
   * enqueues nothing. */
  ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), dy = device_alloc(ctx, (size_t)m * n * 4);
  upload(ctx, dx, x, (size_t)m * k * 4);
  poison(ctx, dy, (size_t)m * n * 4);
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "w", dx, dy, m), PTXQ_ERR_JIT, key);
  cr_assert_eq(hook_calls, 2);
  float *y = checked_malloc((size_t)m * n * 4);
  download(ctx, y, dy, (size_t)m * n * 4);
  for (size_t i = 0; i < (size_t)m * n; i++) {
    uint32_t bits;
    memcpy(&bits, &y[i], sizeof bits);
    cr_assert_eq(bits, POISON_BITS, "y[%zu] written by a GEMV that failed to build", i);
  }
  char gelu_key[64];
  snprintf(gelu_key, sizeof gelu_key, "gelu:n=77,m=3,sm=%u", info.target_sm);
  ptxq_kernel_info kinfo;
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, gelu_key, &kinfo), PTXQ_ERR_JIT, gelu_key);
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 4, 2);
  EXPECT_FAIL(ctx, ptxq_rope_prepare(ctx, 2, &rope), PTXQ_ERR_JIT, "rope:");
  EXPECT_FAIL(ctx, ptxq_gelu(ctx, act, act, 77, 3), PTXQ_ERR_JIT, "JIT log");
  cr_assert_eq(hook_calls, 5);

  /* Hook cleared: the same kernels build and compute right. */
  ptxq__test_ptx_hook = NULL;
  EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "w", m));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "w", dx, dy, m));
  download(ctx, y, dy, (size_t)m * n * 4);
  assert_gemv_right(PTXQ_TYPE_Q4_K, w, k, n, x, m, y, seed, "GEMV after a JIT failure");
  EXPECT_OK(ctx, ptxq_kernel_get(ctx, gelu_key, &kinfo));
  EXPECT_OK(ctx, ptxq_rope_prepare(ctx, 2, &rope));
  float *values = random_floats(&r, 77 * 3);
  double *ref = checked_malloc(77 * 3 * sizeof *ref);
  cr_assert_eq(ptxq_ref_act(PTXQ_ACT_GELU, values, ref, 77 * 3), PTXQ_OK);
  upload(ctx, act, values, 77 * 3 * 4);
  EXPECT_OK(ctx, ptxq_gelu(ctx, act, act, 77, 3));
  download(ctx, values, act, 77 * 3 * 4);
  for (size_t i = 0; i < 77 * 3; i++)
    cr_assert(fabs(values[i] - ref[i]) <= 2e-6 * fabs(ref[i]) + 1e-7,
              "seed %llu: gelu[%zu] = %.9g, want %.9g", (unsigned long long)seed, i,
              (double)values[i], ref[i]);
  EXPECT_OK(ctx, ptxq_sync(ctx));
  free(ref);
  free(values);
  free(y);
  free(x);
  free(w);
  ptxq_close(ctx);
}

/* ---- close with work in flight ------------------------------------------------------------ */

/* Random Q4_K bytes with small finite super-block scales: quick to make
 * at any size (the quantizer is slow), for work whose result is not read. */
static uint8_t *random_q4k_bytes(rng *r, uint32_t k, uint32_t n, size_t *bytes_out) {
  size_t bytes = 0;
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, n, &bytes), PTXQ_OK);
  uint8_t *blocks = checked_malloc(bytes);
  for (size_t i = 0; i < bytes; i++) blocks[i] = (uint8_t)rng_next(r);
  for (size_t b = 0; b < bytes / PTXQ_Q4_K_BLOCK_BYTES; b++)
    for (int half = 0; half < 2; half++) { /* d, then dmin */
      uint16_t h = ptxq_f32_to_f16(rng_uniform(r, 1e-3f, 1e-2f));
      blocks[b * PTXQ_Q4_K_BLOCK_BYTES + 2 * half] = (uint8_t)h;
      blocks[b * PTXQ_Q4_K_BLOCK_BYTES + 2 * half + 1] = (uint8_t)(h >> 8);
    }
  *bytes_out = bytes;
  return blocks;
}

Test(faults, close_with_work_in_flight, .timeout = 120) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  /* Under compute-sanitizer, a smaller weight and fewer kernels: each
   * launch there is many times slower, and the queue at close still holds
   * work either way. */
  const bool small = tests_under_tool();
  const uint32_t k = small ? 2048 : 8192, n = small ? 1024 : 4096;
  const int kernels = small ? 64 : 3000;
  size_t w_bytes;
  uint8_t *w = random_q4k_bytes(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)8 * k);
  ptxq_dev dx = device_alloc(ctx, (size_t)8 * k * 4), dy = device_alloc(ctx, (size_t)8 * n * 4);
  ptxq_dev big = device_alloc(ctx, (size_t)8 << 20);
  upload(ctx, dx, x, (size_t)8 * k * 4);
  float *big_x = random_floats(&r, (size_t)2 << 20); /* written: initcheck reads what kernels read */
  upload(ctx, big, big_x, (size_t)8 << 20);
  free(big_x);
  for (uint32_t m = 1; m <= 8; m++) EXPECT_OK(ctx, ptxq_gemv_prepare(ctx, "w", m));

  /* About 3000 kernels (plain run), most of them reading 18 MB: tens of
   * milliseconds of queued work. The buffers and the weight are left to ptxq_close. */
  double start = seconds_now();
  for (int i = 0; i < kernels; i++) {
    EXPECT_OK(ctx, ptxq_gemv(ctx, "w", dx, dy, 1 + (uint32_t)i % 8));
    if (i % 16 == 0) EXPECT_OK(ctx, ptxq_silu(ctx, big, big, 1u << 20, 2));
  }
  double enqueued = seconds_now();
  ptxq_close(ctx);
  double closed = seconds_now();
  fprintf(stderr, "close_with_work_in_flight: enqueued in %.1f ms, ptxq_close took %.1f ms\n",
          (enqueued - start) * 1e3, (closed - enqueued) * 1e3);
  cr_assert_lt(closed - enqueued, 30.0, "ptxq_close took %.1f s", closed - enqueued);

  /* A new context computes right (on a smaller, quantized weight: the
   * reference of the big one would take long). */
  ctx = open_or_skip(NULL);
  const uint32_t k2 = 1280, n2 = 333;
  size_t w2_bytes;
  uint8_t *w2 = random_q4k(&r, k2, n2, &w2_bytes);
  upload_weight(ctx, "w2", PTXQ_TYPE_Q4_K, w2, k2, n2, w2_bytes);
  check_gemv(ctx, "w2", w2, k2, n2, x, 8, seed, "GEMV on a context opened after the close");
  ptxq_close(ctx);
  free(w2);
  free(x);
  free(w);
}

/* ---- 1000 open/close cycles ---------------------------------------------------------------- */

/* The driver's free device memory, through libcuda itself: ptxq has no
 * public call for it. The device's primary context (which ptxq uses) is
 * made current for the query. */
static size_t device_free_bytes(void) {
  const char *path = getenv("PTXQ_LIBCUDA");
  if (path == NULL || path[0] == '\0') path = "libcuda.so.1";
  void *lib = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
  cr_assert_not_null(lib, "%s is not loaded: %s", path, dlerror());
  CUresult (*device_get)(CUdevice *, int) = NULL;
  CUresult (*retain)(CUcontext *, CUdevice) = NULL;
  CUresult (*release)(CUdevice) = NULL;
  CUresult (*push)(CUcontext) = NULL;
  CUresult (*pop)(CUcontext *) = NULL;
  CUresult (*mem_get_info)(size_t *, size_t *) = NULL;
  /* dlsym gives object pointers: memcpy them into function pointers. */
  const struct {
    const char *symbol;
    void *slot;
  } wanted[] = {{"cuDeviceGet", &device_get},
                {"cuDevicePrimaryCtxRetain", &retain},
                {"cuDevicePrimaryCtxRelease_v2", &release},
                {"cuCtxPushCurrent_v2", &push},
                {"cuCtxPopCurrent_v2", &pop},
                {"cuMemGetInfo_v2", &mem_get_info}};
  for (size_t i = 0; i < sizeof wanted / sizeof wanted[0]; i++) {
    void *symbol = dlsym(lib, wanted[i].symbol);
    cr_assert_not_null(symbol, "%s has no %s", path, wanted[i].symbol);
    memcpy(wanted[i].slot, &symbol, sizeof symbol);
  }
  CUdevice device;
  CUcontext context, popped;
  size_t free_bytes = 0, total_bytes = 0;
  cr_assert_eq(device_get(&device, 0), CUDA_SUCCESS);
  cr_assert_eq(retain(&context, device), CUDA_SUCCESS);
  cr_assert_eq(push(context), CUDA_SUCCESS);
  cr_assert_eq(mem_get_info(&free_bytes, &total_bytes), CUDA_SUCCESS);
  pop(&popped);
  release(device);
  dlclose(lib);
  return free_bytes;
}

static size_t resident_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long pages_total = 0, pages_resident = 0;
  cr_assert_eq(fscanf(f, "%lu %lu", &pages_total, &pages_resident), 2);
  fclose(f);
  return (size_t)pages_resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Bytes malloc has handed out and not had back (0 where glibc is too old
 * to say). */
static size_t heap_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
#else
  return 0;
#endif
}

typedef struct cycle_data {
  uint8_t *up, *down; /* FFN GELU: up Q4_K [256][512], down Q6_K [512][256] */
  size_t up_bytes, down_bytes;
  float *x;           /* 8 * 512 */
} cycle_data;

/* One context's life: weights, every kind of op, an event, a graph, and
 * buffers left for ptxq_close to free. */
static void one_cycle(const cycle_data *cd) {
  ptxq_ctx *ctx = NULL;
  EXPECT_OK(NULL, ptxq_open(&ctx, NULL));
  upload_weight(ctx, "up", PTXQ_TYPE_Q4_K, cd->up, 512, 256, cd->up_bytes);
  upload_weight(ctx, "down", PTXQ_TYPE_Q6_K, cd->down, 256, 512, cd->down_bytes);
  const size_t bytes = (size_t)8 * 512 * 4;
  ptxq_dev x = device_alloc(ctx, bytes), y = device_alloc(ctx, bytes), z = device_alloc(ctx, bytes);
  upload(ctx, x, cd->x, bytes);
  EXPECT_OK(ctx, ptxq_gemv(ctx, "up", x, y, 1));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "down", y, z, 1));
  EXPECT_OK(ctx, ptxq_silu(ctx, x, y, 512, 1));
  ptxq_ffn_params ffn = {.kind = PTXQ_FFN_GELU, .gate = NULL, .up = "up", .down = "down"};
  EXPECT_OK(ctx, ptxq_ffn(ctx, &ffn, x, z, 1));
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 2, 1);
  EXPECT_OK(ctx, ptxq_rope_host_positions(ctx, y, y + 1024, (const int32_t[]){17}, 1, &rope));
  float host_y[256];
  EXPECT_OK(ctx, ptxq_gemv_host(ctx, "up", cd->x, host_y, 1));
  ptxq_event *start = NULL, *end = NULL;
  EXPECT_OK(ctx, ptxq_event_create(ctx, &start));
  EXPECT_OK(ctx, ptxq_event_create(ctx, &end));
  EXPECT_OK(ctx, ptxq_event_record(ctx, start));
  EXPECT_OK(ctx, ptxq_capture_begin(ctx));
  EXPECT_OK(ctx, ptxq_gemv(ctx, "up", x, y, 1));
  ptxq_graph *graph = NULL;
  EXPECT_OK(ctx, ptxq_capture_end(ctx, &graph));
  EXPECT_OK(ctx, ptxq_graph_launch(ctx, graph));
  EXPECT_OK(ctx, ptxq_event_record(ctx, end));
  float ms = 0;
  EXPECT_OK(ctx, ptxq_event_elapsed_ms(ctx, start, end, &ms));
  ptxq_graph_destroy(ctx, graph);
  ptxq_event_destroy(ctx, start);
  ptxq_event_destroy(ctx, end);
  ptxq_close(ctx);
}

Test(faults, open_close_cycles_do_not_leak, .timeout = 300) {
  /* A context held open throughout keeps the device's primary context
   * alive, so the cycles do not tear it down (which would hide a device
   * leak, and cost a context creation each). */
  ptxq_ctx *holder = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  cycle_data cd;
  cd.up = random_q4k(&r, 512, 256, &cd.up_bytes);
  cd.down = random_q6k(&r, 256, 512, &cd.down_bytes);
  cd.x = random_floats(&r, 8 * 512);

  /* Under compute-sanitizer, 50 cycles: every module load is instrumented. */
  const int warm_up = 20, cycles = tests_repeats(1000, 50);
  for (int i = 0; i < warm_up; i++) one_cycle(&cd);
  size_t rss0 = resident_bytes(), heap0 = heap_in_use(), free0 = device_free_bytes();
  double start = seconds_now();
  for (int i = 0; i < cycles; i++) one_cycle(&cd);
  double seconds = seconds_now() - start;
  size_t rss1 = resident_bytes(), heap1 = heap_in_use(), free1 = device_free_bytes();

  const double kib = 1024.0;
  fprintf(stderr,
          "open_close_cycles: %d cycles in %.1f s (%.2f ms each) after %d to warm up; RSS %.0f -> "
          "%.0f KiB (%+.0f), malloc in use %.0f -> %.0f KiB (%+.0f), device free %.0f -> %.0f "
          "KiB (%+.0f)\n",
          cycles, seconds, seconds * 1e3 / cycles, warm_up, rss0 / kib, rss1 / kib,
          ((double)rss1 - (double)rss0) / kib, heap0 / kib, heap1 / kib,
          ((double)heap1 - (double)heap0) / kib, free0 / kib, free1 / kib,
          ((double)free1 - (double)free0) / kib);
  /* Slack (measured on an H100 in two runs: +22 and +25 KiB in use, +128
   * and +80 KiB RSS, device +0):
   * a host leak of 256 bytes or more a cycle (a context, a kernel entry, a
   * weight record) fails the heap check; a device leak of 2 KiB or more a
   * cycle (a weight, a buffer, a staging buffer, a workspace, a module)
   * the device check. Smaller leaks (an event's 8-byte wrapper, RoPE's
   * 32-byte positions buffer) pass unseen. */
  cr_assert_leq(heap1, heap0 + (size_t)256 * cycles, "malloc'd bytes grew by %zu",
                heap1 - heap0);
  cr_assert_leq(rss1, rss0 + ((size_t)4 << 20), "RSS grew by %zu bytes", rss1 - rss0);
  cr_assert_geq(free1 + ((size_t)2 << 20), free0, "free device memory fell by %zu bytes",
                free0 - free1);
  free(cd.up);
  free(cd.down);
  free(cd.x);
  ptxq_close(holder);
}

/* ---- devices that are not there ------------------------------------------------------------- */

Test(faults, device_ordinal_past_the_last) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_close(ctx);
  ptxq_options opt = {.device = 64, .target_sm = 0};
  ctx = (ptxq_ctx *)&opt;
  EXPECT_FAIL(NULL, ptxq_open(&ctx, &opt), PTXQ_ERR_NO_DEVICE, "device 64 does not exist");
  cr_assert_null(ctx);
  fprintf(stderr, "device_ordinal_past_the_last: %s\n", ptxq_last_error(NULL));
}

/* A driver that sees no GPU: cuInit fails. Hiding every device from the
 * driver with CUDA_VISIBLE_DEVICES (read by cuInit, so set before the
 * process's first ptxq call) makes one on a GPU machine. */
Test(faults, driver_without_a_visible_gpu) {
  setenv("CUDA_VISIBLE_DEVICES", "-1", 1);
  ptxq_ctx *ctx = (ptxq_ctx *)&ctx;
  int status = ptxq_open(&ctx, NULL);
  const char *why = ptxq_last_error(NULL);
  if (strstr(why, "cannot load") != NULL) cr_skip_test("no driver: %s", why);
  cr_assert_eq(status, PTXQ_ERR_NO_DEVICE, "gave %d (%s): %s", status, ptxq_strerror(status), why);
  cr_assert_null(ctx);
  cr_assert(strstr(why, "cuInit") != NULL && strstr(why, "CUDA_ERROR_NO_DEVICE") != NULL,
            "detail '%s' should name cuInit and its error", why);
  fprintf(stderr, "driver_without_a_visible_gpu: %s\n", why);
}

/* ---- host memory exhausted -------------------------------------------------------------------- */

/* Lowers the address-space limit to what the process maps now plus
 * headroom, so that any new mapping of more fails; returns the old limit. */
static struct rlimit limit_address_space(size_t headroom) {
  struct rlimit old;
  cr_assert_eq(getrlimit(RLIMIT_AS, &old), 0);
  FILE *f = fopen("/proc/self/statm", "r");
  cr_assert_not_null(f);
  unsigned long pages = 0;
  cr_assert_eq(fscanf(f, "%lu", &pages), 1);
  fclose(f);
  struct rlimit low = old;
  low.rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + headroom;
  cr_assert_eq(setrlimit(RLIMIT_AS, &low), 0);
  return old;
}

/* The Q6_K upload repacks through a host buffer of up to 8 MiB. */
Test(faults, host_memory_exhausted_during_an_upload) {
#if defined(__SANITIZE_ADDRESS__)
  /* AddressSanitizer's allocator reserves its own address space and does
   * not fail under RLIMIT_AS the way malloc does. */
  cr_skip_test("not meaningful under AddressSanitizer");
#endif
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 4096, n = 4096;
  size_t w_bytes;
  uint8_t *w = random_q6k(&r, k, n, &w_bytes);
  struct rlimit old = limit_address_space((size_t)1 << 20);
  int status = ptxq_weight_upload(ctx, "w6", PTXQ_TYPE_Q6_K, k, n, w, w_bytes);
  char why[1024];
  snprintf(why, sizeof why, "%s", ptxq_last_error(ctx));
  cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
  fprintf(stderr, "host_memory_exhausted_during_an_upload: %d (%s): %s\n", status,
          ptxq_strerror(status), why);
  cr_assert_eq(status, PTXQ_ERR_NOMEM, "gave %d (%s): %s", status, ptxq_strerror(status), why);
  cr_assert(strstr(why, "w6") != NULL, "detail '%s' should name the weight", why);
  ptxq_weight_info info;
  EXPECT_FAIL(ctx, ptxq_weight_info_get(ctx, "w6", &info), PTXQ_ERR_NOT_FOUND, "w6");
  /* With memory back, the same upload works. */
  upload_weight(ctx, "w6", PTXQ_TYPE_Q6_K, w, k, n, w_bytes);
  free(w);
  ptxq_close(ctx);
}

/* ==== no driver ================================================================================ */

static void hide_driver(void) { setenv("PTXQ_LIBCUDA", MISSING_LIBCUDA, 1); }

TestSuite(nodriver, .init = hide_driver);

Test(nodriver, open_says_no_device_and_why) {
  const ptxq_options options[] = {{0, 0, 0}, {0, 80, 0}, {3, 0, 0}, {-1, 0, 0}};
  for (int i = -1; i < 4; i++) {
    ptxq_ctx *ctx = (ptxq_ctx *)&ctx;
    EXPECT_FAIL(NULL, ptxq_open(&ctx, i < 0 ? NULL : &options[i]), PTXQ_ERR_NO_DEVICE,
                "cannot load " MISSING_LIBCUDA);
    cr_assert_null(ctx, "options %d: ctx not cleared", i);
  }
  fprintf(stderr, "nodriver: %s\n", ptxq_last_error(NULL));
  EXPECT_FAIL(NULL, ptxq_open(NULL, NULL), PTXQ_ERR_INVALID, "ctx is NULL");
}

/* Asserts a call on no context failed with PTXQ_ERR_INVALID and a detail
 * naming the function and the NULL context. */
#define EXPECT_NULL_CTX(call, function)                                                            \
  do {                                                                                             \
    int got_ = (call);                                                                             \
    const char *why_ = ptxq_last_error(NULL);                                                      \
    cr_assert_eq(got_, PTXQ_ERR_INVALID, "%s gave %d (%s): '%s'", #call, got_,                     \
                 ptxq_strerror(got_), why_);                                                       \
    cr_assert(strstr(why_, function) != NULL && strstr(why_, "ctx is NULL") != NULL,              \
              "%s: detail '%s' should say '%s: ctx is NULL'", #call, why_, function);             \
  } while (0)

/* ptxq.h from top to bottom, every function taking a context: with a NULL
 * one and otherwise good arguments, then with every pointer NULL and
 * every number out of range. */
Test(nodriver, every_context_call_fails_cleanly) {
  char host[64] = {0};
  float x[8] = {0}, y[8] = {0};
  float ms = 0;
  ptxq_dev dev = 7;
  ptxq_device_info info;
  ptxq_weight_info winfo;
  ptxq_kernel_info kinfo;
  ptxq_event *ev = NULL;
  ptxq_graph *graph = NULL;
  ptxq_load_stats stats;
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 8, 2);
  ptxq_ffn_params ffn = {PTXQ_FFN_SWIGLU, "gate", "up", "down"};
  const int32_t positions[1] = {3};
  void *params[3] = {&dev, &dev, &dev};
  const char *key = "q4k_gemv:k=256,n=1,m=1";
  char path[1024];
  snprintf(path, sizeof path, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);

  ptxq_close(NULL);
  cr_assert_str_eq(ptxq_last_error(NULL), "", "nothing failed yet");
  EXPECT_NULL_CTX(ptxq_device_info_get(NULL, &info), "ptxq_device_info_get");
  cr_assert_null(ptxq_stream(NULL));
  EXPECT_NULL_CTX(ptxq_alloc(NULL, 64, &dev), "ptxq_alloc");
  cr_assert_eq(dev, 7, "ptxq_alloc on no context wrote *out");
  EXPECT_NULL_CTX(ptxq_free(NULL, 0x1000), "ptxq_free");
  EXPECT_NULL_CTX(ptxq_upload(NULL, 0x1000, host, sizeof host), "ptxq_upload");
  EXPECT_NULL_CTX(ptxq_download(NULL, host, 0x1000, sizeof host), "ptxq_download");
  EXPECT_NULL_CTX(ptxq_sync(NULL), "ptxq_sync");
  EXPECT_NULL_CTX(ptxq_event_create(NULL, &ev), "ptxq_event_create");
  EXPECT_NULL_CTX(ptxq_event_record(NULL, (ptxq_event *)&ev), "ptxq_event_record");
  EXPECT_NULL_CTX(ptxq_event_elapsed_ms(NULL, (ptxq_event *)&ev, (ptxq_event *)&ev, &ms),
                  "ptxq_event_elapsed_ms");
  ptxq_event_destroy(NULL, NULL);
  EXPECT_NULL_CTX(ptxq_weight_upload(NULL, "w", PTXQ_TYPE_F32, 2, 1, x, 8), "ptxq_weight_upload");
  EXPECT_NULL_CTX(ptxq_weight_free(NULL, "w"), "ptxq_weight_free");
  EXPECT_NULL_CTX(ptxq_weight_info_get(NULL, "w", &winfo), "ptxq_weight_info_get");
  EXPECT_NULL_CTX(ptxq_gemv(NULL, "w", 0x1000, 0x2000, 1), "ptxq_gemv");
  EXPECT_NULL_CTX(ptxq_gemv_prepare(NULL, "w", 1), "ptxq_gemv_prepare");
  const char *const qkv[3] = {"q", "k", "v"};
  const ptxq_dev ys[3] = {0x2000, 0x3000, 0x4000};
  EXPECT_NULL_CTX(ptxq_gemv_multi(NULL, qkv, 3, 0x1000, ys, 1), "ptxq_gemv_multi");
  EXPECT_NULL_CTX(ptxq_gemv_multi_prepare(NULL, qkv, 3, 1), "ptxq_gemv_multi_prepare");
  EXPECT_NULL_CTX(ptxq_gemv_multi_rope(NULL, qkv, 3, 0x1000, ys, 1, 0x5000, &rope), "ptxq_gemv_multi_rope");
  EXPECT_NULL_CTX(ptxq_gemv_multi_rope_prepare(NULL, qkv, 3, 1, &rope), "ptxq_gemv_multi_rope_prepare");
  EXPECT_NULL_CTX(ptxq_gemv_host(NULL, "w", x, y, 1), "ptxq_gemv_host");
  EXPECT_NULL_CTX(ptxq_gelu(NULL, 0x1000, 0x2000, 8, 1), "ptxq_gelu");
  EXPECT_NULL_CTX(ptxq_gelu_erf(NULL, 0x1000, 0x2000, 8, 1), "ptxq_gelu_erf");
  EXPECT_NULL_CTX(ptxq_silu(NULL, 0x1000, 0x2000, 8, 1), "ptxq_silu");
  EXPECT_NULL_CTX(ptxq_swiglu(NULL, 0x1000, 0x2000, 0x3000, 8, 1), "ptxq_swiglu");
  EXPECT_NULL_CTX(ptxq_geglu(NULL, 0x1000, 0x2000, 0x3000, 8, 1), "ptxq_geglu");
  EXPECT_NULL_CTX(ptxq_rope(NULL, 0x1000, 0x2000, 0x3000, 1, &rope), "ptxq_rope");
  EXPECT_NULL_CTX(ptxq_rope_host_positions(NULL, 0x1000, 0x2000, positions, 1, &rope),
                  "ptxq_rope_host_positions");
  EXPECT_NULL_CTX(ptxq_ffn(NULL, &ffn, 0x1000, 0x2000, 1), "ptxq_ffn");
  EXPECT_NULL_CTX(ptxq_ffn_prepare(NULL, &ffn, 1), "ptxq_ffn_prepare");
  EXPECT_NULL_CTX(ptxq_rope_prepare(NULL, 1, &rope), "ptxq_rope_prepare");
  EXPECT_NULL_CTX(ptxq_capture_begin(NULL), "ptxq_capture_begin");
  EXPECT_NULL_CTX(ptxq_capture_end(NULL, &graph), "ptxq_capture_end");
  EXPECT_NULL_CTX(ptxq_graph_launch(NULL, (ptxq_graph *)&graph), "ptxq_graph_launch");
  ptxq_graph_destroy(NULL, NULL);
  EXPECT_NULL_CTX(ptxq_kernel_get(NULL, key, &kinfo), "ptxq_kernel_get");
  EXPECT_NULL_CTX(ptxq_kernel_launch(NULL, key, params), "ptxq_kernel_launch");
  EXPECT_NULL_CTX(ptxq_weights_from_gguf(NULL, path, NULL, NULL, NULL, &stats),
                  "ptxq_weights_from_gguf");

  /* Everything NULL or out of range besides: still the NULL context. */
  EXPECT_NULL_CTX(ptxq_device_info_get(NULL, NULL), "ptxq_device_info_get");
  EXPECT_NULL_CTX(ptxq_alloc(NULL, 0, NULL), "ptxq_alloc");
  EXPECT_NULL_CTX(ptxq_alloc(NULL, SIZE_MAX, &dev), "ptxq_alloc");
  EXPECT_NULL_CTX(ptxq_free(NULL, 0), "ptxq_free");
  EXPECT_NULL_CTX(ptxq_upload(NULL, 0, NULL, SIZE_MAX), "ptxq_upload");
  EXPECT_NULL_CTX(ptxq_download(NULL, NULL, 0, SIZE_MAX), "ptxq_download");
  EXPECT_NULL_CTX(ptxq_upload(NULL, 0, NULL, 0), "ptxq_upload");
  EXPECT_NULL_CTX(ptxq_event_create(NULL, NULL), "ptxq_event_create");
  EXPECT_NULL_CTX(ptxq_event_record(NULL, NULL), "ptxq_event_record");
  EXPECT_NULL_CTX(ptxq_event_elapsed_ms(NULL, NULL, NULL, NULL), "ptxq_event_elapsed_ms");
  EXPECT_NULL_CTX(ptxq_weight_upload(NULL, NULL, (ptxq_type)99, 0, 0, NULL, SIZE_MAX),
                  "ptxq_weight_upload");
  EXPECT_NULL_CTX(ptxq_weight_free(NULL, NULL), "ptxq_weight_free");
  EXPECT_NULL_CTX(ptxq_weight_info_get(NULL, NULL, NULL), "ptxq_weight_info_get");
  EXPECT_NULL_CTX(ptxq_gemv(NULL, NULL, 0, 0, 0), "ptxq_gemv");
  EXPECT_NULL_CTX(ptxq_gemv_prepare(NULL, NULL, 99), "ptxq_gemv_prepare");
  EXPECT_NULL_CTX(ptxq_gemv_multi_rope(NULL, NULL, 99, 0, NULL, 0, 0, NULL), "ptxq_gemv_multi_rope");
  EXPECT_NULL_CTX(ptxq_gemv_multi_rope_prepare(NULL, NULL, 0, 99, NULL), "ptxq_gemv_multi_rope_prepare");
  EXPECT_NULL_CTX(ptxq_gemv_host(NULL, NULL, NULL, NULL, 0), "ptxq_gemv_host");
  EXPECT_NULL_CTX(ptxq_gelu(NULL, 0, 0, 0, 0), "ptxq_gelu");
  EXPECT_NULL_CTX(ptxq_gelu_erf(NULL, 1, 1, UINT32_MAX, UINT32_MAX), "ptxq_gelu_erf");
  EXPECT_NULL_CTX(ptxq_silu(NULL, 0, 0, 0, 0), "ptxq_silu");
  EXPECT_NULL_CTX(ptxq_swiglu(NULL, 0, 0, 0, 0, 0), "ptxq_swiglu");
  EXPECT_NULL_CTX(ptxq_geglu(NULL, 0, 0, 0, 0, 0), "ptxq_geglu");
  EXPECT_NULL_CTX(ptxq_rope(NULL, 0, 0, 0, 0, NULL), "ptxq_rope");
  EXPECT_NULL_CTX(ptxq_rope_host_positions(NULL, 0, 0, NULL, 99, NULL), "ptxq_rope_host_positions");
  EXPECT_NULL_CTX(ptxq_ffn(NULL, NULL, 0, 0, 0), "ptxq_ffn");
  EXPECT_NULL_CTX(ptxq_ffn_prepare(NULL, NULL, 0), "ptxq_ffn_prepare");
  EXPECT_NULL_CTX(ptxq_rope_prepare(NULL, 0, NULL), "ptxq_rope_prepare");
  EXPECT_NULL_CTX(ptxq_capture_end(NULL, NULL), "ptxq_capture_end");
  EXPECT_NULL_CTX(ptxq_graph_launch(NULL, NULL), "ptxq_graph_launch");
  EXPECT_NULL_CTX(ptxq_kernel_get(NULL, NULL, NULL), "ptxq_kernel_get");
  EXPECT_NULL_CTX(ptxq_kernel_get(NULL, "not a key", &kinfo), "ptxq_kernel_get");
  EXPECT_NULL_CTX(ptxq_kernel_launch(NULL, NULL, NULL), "ptxq_kernel_launch");
  memset(&stats, 0xA5, sizeof stats);
  EXPECT_NULL_CTX(ptxq_weights_from_gguf(NULL, NULL, NULL, NULL, NULL, NULL),
                  "ptxq_weights_from_gguf");
  EXPECT_NULL_CTX(ptxq_weights_from_gguf(NULL, "/nonexistent.gguf", "[", NULL, NULL, &stats),
                  "ptxq_weights_from_gguf");
  cr_assert_eq(stats.tensors + stats.bytes + stats.skipped, 0, "stats not cleared");

  /* And the driver is still absent, for the same reason. */
  ptxq_ctx *ctx = NULL;
  EXPECT_FAIL(NULL, ptxq_open(&ctx, NULL), PTXQ_ERR_NO_DEVICE, MISSING_LIBCUDA);
}

/* Without a driver the generator, the GGUF reader and the CPU reference
 * still work, and say nothing about the driver. */
Test(nodriver, the_cpu_side_still_works) {
  ptxq_ctx *ctx = NULL;
  cr_assert_eq(ptxq_open(&ctx, NULL), PTXQ_ERR_NO_DEVICE);

  ptxgen_spec spec;
  char msg[256];
  cr_assert_eq(ptxgen_spec_parse("q6k_gemv:k=768,n=333,m=3,sm=80", &spec, msg, sizeof msg),
               PTXGEN_OK, "%s", msg);
  ptxgen_kernel kernel;
  cr_assert_eq(ptxgen_emit(&spec, &kernel, msg, sizeof msg), PTXGEN_OK, "%s", msg);
  cr_assert(strstr(kernel.ptx, kernel.entry) != NULL);
  ptxgen_kernel_free(&kernel);

  char path[1024];
  snprintf(path, sizeof path, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  ptxq_gguf *f = NULL;
  EXPECT_OK(NULL, ptxq_gguf_open(path, &f));
  ptxq_gguf_tensor t;
  EXPECT_OK(NULL, ptxq_gguf_tensor_find(f, "blk.0.attn_q.weight", &t));
  cr_assert_eq(t.type, (uint32_t)PTXQ_TYPE_Q4_K);
  float *x = checked_malloc(t.dims[0] * sizeof *x);
  for (uint64_t i = 0; i < t.dims[0]; i++) x[i] = (float)(i % 7) - 3.0f;
  double *y = checked_malloc(t.dims[1] * sizeof *y);
  EXPECT_OK(NULL, ptxq_ref_gemv(PTXQ_TYPE_Q4_K, t.data, (uint32_t)t.dims[0], (uint32_t)t.dims[1], x,
                                1, y));
  for (uint64_t i = 0; i < t.dims[1]; i++) cr_assert(isfinite(y[i]), "y[%llu]", (unsigned long long)i);
  free(x);
  free(y);
  ptxq_gguf_close(f);
}

/* Each of these is the first driver use of its process, so the path set
 * here (over the suite's) is the one loaded. */
static void expect_load_failure(const char *path, const char *needle) {
  setenv("PTXQ_LIBCUDA", path, 1);
  ptxq_ctx *ctx = (ptxq_ctx *)&ctx;
  EXPECT_FAIL(NULL, ptxq_open(&ctx, NULL), PTXQ_ERR_NO_DEVICE, needle);
  cr_assert_null(ctx);
  fprintf(stderr, "nodriver: PTXQ_LIBCUDA=%s: %s\n", path, ptxq_last_error(NULL));
}

Test(nodriver, a_file_that_is_not_a_library) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  expect_load_failure(path, "cannot load");
}

Test(nodriver, a_library_that_is_not_the_driver) {
  expect_load_failure("libm.so.6", "has no cuGetProcAddress");
}

Test(nodriver, the_toolkit_stub_library) {
#ifdef PTXQ_CUDA_STUB_LIBCUDA
  expect_load_failure(PTXQ_CUDA_STUB_LIBCUDA, "stub library");
#else
  cr_skip_test("no stub libcuda.so in the CUDA toolkit");
#endif
}

/* Host memory exhausted: the GGUF reader cannot map the file, the
 * generator cannot grow its text. Both say so instead of crashing. */
Test(nodriver, host_memory_exhausted) {
#if defined(__SANITIZE_ADDRESS__)
  /* AddressSanitizer's allocator reserves its own address space and does
   * not fail under RLIMIT_AS the way malloc does. */
  cr_skip_test("not meaningful under AddressSanitizer");
#endif
  char path[1024];
  snprintf(path, sizeof path, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  ptxgen_spec spec;
  char msg[256] = "";
  cr_assert_eq(ptxgen_spec_parse("rope:mode=neox,head_dim=512,heads=1024,kv_heads=1,m=8", &spec,
                                 msg, sizeof msg),
               PTXGEN_OK, "%s", msg);
  ptxq_gguf *f = (ptxq_gguf *)&f;
  ptxgen_kernel kernel;
  struct rlimit old = limit_address_space(0);
  /* Use up what the heap has left too: allocations until malloc says no. */
  void *hog[4096];
  size_t hogs = 0;
  while (hogs < 4096 && (hog[hogs] = malloc(4096)) != NULL) hogs++;
  int gguf_status = ptxq_gguf_open(path, &f);
  char gguf_why[512];
  snprintf(gguf_why, sizeof gguf_why, "%s", ptxq_last_error(NULL));
  int emit_status = ptxgen_emit(&spec, &kernel, msg, sizeof msg);
  for (size_t i = 0; i < hogs; i++) free(hog[i]);
  cr_assert_eq(setrlimit(RLIMIT_AS, &old), 0);
  fprintf(stderr, "nodriver: host memory exhausted: ptxq_gguf_open: %d (%s): %s\n", gguf_status,
          ptxq_strerror(gguf_status), gguf_why);
  fprintf(stderr, "nodriver: host memory exhausted: ptxgen_emit: %d: %s\n", emit_status, msg);
  cr_assert_lt(hogs, (size_t)4096, "malloc never failed under RLIMIT_AS");
  cr_assert_null(f, "a failed open left a handle");
  cr_assert(gguf_status == PTXQ_ERR_IO || gguf_status == PTXQ_ERR_NOMEM, "ptxq_gguf_open gave %d: %s",
            gguf_status, gguf_why);
  cr_assert(strstr(gguf_why, "tiny-llama-q4km.gguf") != NULL, "'%s'", gguf_why);
  cr_assert_eq(emit_status, PTXGEN_ERR_NOMEM, "ptxgen_emit gave %d: %s", emit_status, msg);
  cr_assert(strstr(msg, "out of memory") != NULL, "'%s'", msg);
  /* With memory back, both work. */
  EXPECT_OK(NULL, ptxq_gguf_open(path, &f));
  ptxq_gguf_close(f);
  cr_assert_eq(ptxgen_emit(&spec, &kernel, msg, sizeof msg), PTXGEN_OK, "%s", msg);
  ptxgen_kernel_free(&kernel);
}
