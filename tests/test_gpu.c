/*
 * test_gpu.c: suite "gpu", the runtime on a real device.
 *
 * The Q4_K GEMV is checked against the fp64 CPU reference (ptxq_ref_gemv) on
 * random weights quantized by ptxq_ref_quantize_q4k, for k in {256, 512,
 * 4096, 14336} x n in {1, 3, 777, 4096} x m in 1..16, through device buffers
 * and through ptxq_gemv_host; outputs are poisoned with NaN bytes before each
 * run so an output the kernel forgets to write fails. Batch invariance is
 * checked bit for bit. Both run twice: with the default kernels and with
 * the tensor-core ones (ptxq_options.tensor_cores). Every error path of the API is provoked and must give
 * its status and a detail naming the offending value.
 *
 * Each test draws a fresh seed (printed in every failure message; set
 * PTXQ_TEST_SEED to replay one). Without a GPU every test skips.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_common.h"
#include "idp_model.h"
#include "ptxgen.h"
#include "ptxq.h"

#define TOLERANCE 1e-5 /* max |y - ref| / max |ref| */
#define MAX_M PTXGEN_GEMV_MAX_M /* 16: every batch size is run */

/* ---- helpers ------------------------------------------------------------ */

/* Index of the first non-finite value, or count. */
/* Index of the first float whose bits differ, or count if none does. */
static size_t first_bit_difference(const float *want, const float *got, size_t count) {
  size_t i = 0;
  while (i < count && memcmp(&want[i], &got[i], sizeof want[i]) == 0) i++;
  return i;
}

static size_t first_non_finite(const float *y, size_t count) {
  size_t i = 0;
  while (i < count && isfinite(y[i])) i++;
  return i;
}

/* ---- GEMV against the reference ------------------------------------------ */

typedef struct gemv_shape {
  uint32_t k, n;
  int tensor_cores; /* the context's ptxq_options.tensor_cores */
} gemv_shape;

static ptxq_ctx *open_for(const gemv_shape *shape) {
  return shape->tensor_cores ? open_tensor_cores_or_skip() : open_or_skip(NULL);
}

static gemv_shape reference_shapes[32];

/* k x n x (FMA, tensor cores); filled where it is read. */
static void fill_reference_shapes(void) {
  static const uint32_t ks[] = {256, 512, 4096, 14336}, ns[] = {1, 3, 777, 4096};
  for (int tc = 0; tc < 2; tc++)
    for (size_t i = 0; i < 4; i++)
      for (size_t j = 0; j < 4; j++)
        reference_shapes[tc * 16 + i * 4 + j] = (gemv_shape){ks[i], ns[j], tc};
}

ParameterizedTestParameters(gpu, gemv_matches_reference) {
  fill_reference_shapes();
  return cr_make_param_array(gemv_shape, reference_shapes, 32);
}

/* m = 1..MAX_M on one weight, through device buffers and through the host
 * path; the reference is computed once for MAX_M rows (its rows are
 * independent, so the first m rows are the m-row product). Past m = 12 at
 * k = 4096 (and from smaller m at k = 14336) x is staged in tiles. */
ParameterizedTest(gemv_shape *shape, gpu, gemv_matches_reference) {
  fill_reference_shapes();
  SKIP_UNLESS_PARAM_IN_SHARD(shape, reference_shapes);
  uint32_t k = shape->k, n = shape->n;
  ptxq_ctx *ctx = open_for(shape);
  uint64_t seed = fresh_seed();
  rng r = {seed};

  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  float *x = random_floats(&r, (size_t)MAX_M * k);
  double *ref = checked_malloc((size_t)MAX_M * n * sizeof *ref);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, k, n, x, MAX_M, ref), PTXQ_OK);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);

  size_t y_bytes = (size_t)MAX_M * n * sizeof(float);
  ptxq_dev dx = device_alloc(ctx, (size_t)MAX_M * k * sizeof(float));
  ptxq_dev dy = device_alloc(ctx, y_bytes);
  cr_assert_eq(ptxq_upload(ctx, dx, x, (size_t)MAX_M * k * sizeof(float)), PTXQ_OK);
  float *y = checked_malloc(y_bytes), *y_host = checked_malloc(y_bytes);

  for (uint32_t m = 1; m <= MAX_M; m++) {
    size_t outputs = (size_t)m * n;
    poison(ctx, dy, y_bytes);
    int status = ptxq_gemv(ctx, "w", dx, dy, m);
    cr_assert_eq(status, PTXQ_OK, "seed %llu k=%u n=%u m=%u: %s", (unsigned long long)seed, k, n, m,
                 ptxq_last_error(ctx));
    cr_assert_eq(ptxq_download(ctx, y, dy, y_bytes), PTXQ_OK, "%s", ptxq_last_error(ctx));

    size_t bad = first_non_finite(y, outputs);
    cr_assert_eq(
        bad, outputs,
        "seed %llu k=%u n=%u m=%u: output %zu (row %zu, col %zu) not written or not finite",
        (unsigned long long)seed, k, n, m, bad, bad / n, bad % n);
    double err = relative_error_over(y, ref, outputs, (size_t)MAX_M * n);
    cr_assert(err <= TOLERANCE, "seed %llu k=%u n=%u m=%u tc=%d: relative error %.3g > %g",
              (unsigned long long)seed, k, n, m, shape->tensor_cores, err, TOLERANCE);
    /* Nothing past m rows may be written: those bytes keep their poison. */
    for (size_t i = outputs; i < (size_t)MAX_M * n; i++) {
      uint32_t bits;
      memcpy(&bits, &y[i], sizeof bits);
      cr_assert_eq(bits, POISON_BITS,
                   "seed %llu k=%u n=%u m=%u: wrote y[%zu], past the m*n outputs",
                   (unsigned long long)seed, k, n, m, i);
    }

    memset(y_host, 0xFF, y_bytes);
    status = ptxq_gemv_host(ctx, "w", x, y_host, m);
    cr_assert_eq(status, PTXQ_OK, "gemv_host k=%u n=%u m=%u: %s", k, n, m, ptxq_last_error(ctx));
    cr_assert(memcmp(y_host, y, outputs * sizeof(float)) == 0,
              "seed %llu k=%u n=%u m=%u: ptxq_gemv_host differs from ptxq_gemv",
              (unsigned long long)seed, k, n, m);
  }
  free(y);
  free(y_host);
  free(ref);
  free(x);
  free(w);
  ptxq_close(ctx);
}

/* ---- batch invariance ------------------------------------------------------ */

static gemv_shape invariance_shapes[] = {
    {256, 1, 0}, {4096, 777, 0}, {14336, 3, 0}, {512, 4096, 0}, {4096, 4096, 0},  {256, 1, 1},
    {4096, 777, 1}, {14336, 3, 1}, {512, 4096, 1}, {4096, 4096, 1}, {2304, 1001, 1},
    /* n x k >= 2^25: m = 1 takes one row per warp in 16 warps, m > 1 two
     * rows per warp in 8 (ptxgen/gemv.c's default_tuning): the bits must
     * not change */
    {14336, 2343, 0}};

ParameterizedTestParameters(gpu, batch_rows_are_bit_identical_to_m1) {
  return cr_make_param_array(gemv_shape, invariance_shapes,
                             sizeof invariance_shapes / sizeof invariance_shapes[0]);
}

ParameterizedTest(gemv_shape *shape, gpu, batch_rows_are_bit_identical_to_m1) {
  SKIP_UNLESS_PARAM_IN_SHARD(shape, invariance_shapes);
  uint32_t k = shape->k, n = shape->n;
  ptxq_ctx *ctx = open_for(shape);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)MAX_M * k); /* MAX_M distinct rows */

  size_t x_row = (size_t)k * sizeof(float), y_row = (size_t)n * sizeof(float);
  ptxq_dev dx = device_alloc(ctx, MAX_M * x_row), dy = device_alloc(ctx, MAX_M * y_row);
  cr_assert_eq(ptxq_upload(ctx, dx, x, MAX_M * x_row), PTXQ_OK);

  float *single = checked_malloc(MAX_M * y_row), *batched = checked_malloc(MAX_M * y_row);
  for (uint32_t i = 0; i < MAX_M; i++) {
    poison(ctx, dy, y_row);
    cr_assert_eq(ptxq_gemv(ctx, "w", dx + i * x_row, dy, 1), PTXQ_OK, "%s", ptxq_last_error(ctx));
    cr_assert_eq(ptxq_download(ctx, single + (size_t)i * n, dy, y_row), PTXQ_OK);
  }
  for (uint32_t m = 2; m <= MAX_M; m++) {
    poison(ctx, dy, MAX_M * y_row);
    cr_assert_eq(ptxq_gemv(ctx, "w", dx, dy, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    cr_assert_eq(ptxq_download(ctx, batched, dy, m * y_row), PTXQ_OK);
    for (uint32_t i = 0; i < m; i++)
      cr_assert(memcmp(batched + (size_t)i * n, single + (size_t)i * n, y_row) == 0,
                "seed %llu k=%u n=%u tc=%d: row %u of the m=%u product differs from its m=1 product",
                (unsigned long long)seed, k, n, shape->tensor_cores, i, m);
  }
  free(single);
  free(batched);
  free(x);
  free(w);
  ptxq_close(ctx);
}

/* x far from 1 in either direction, within one batch: the tensor-core
 * kernel scales each super-block of each batch row by its own power of two
 * (ptxgen/gemv_tc.c), and the FMA kernel must not care; Q4_K and Q6_K. Rows: tiny, huge,
 * super-blocks of four magnitudes 2^48 apart, zero but for one super-block,
 * one outlier per super-block, and below where the power of two is clamped
 * (2^-118). Each row is judged on its own scale, and must equal its own
 * m = 1 product bit for bit. */
Test(gpu, accuracy_over_the_range_of_x) {
  enum { K = 2048, N = 333, M = 6 };
  for (int run = 0; run < 4; run++) {
    const int tc = run % 2;
    const ptxq_type type = run < 2 ? PTXQ_TYPE_Q4_K : PTXQ_TYPE_Q6_K;
    ptxq_ctx *ctx = tc ? open_tensor_cores_or_skip() : open_or_skip(NULL);
    uint64_t seed = fresh_seed();
    rng r = {seed};
    size_t w_bytes;
    uint8_t *w = type == PTXQ_TYPE_Q6_K ? random_q6k(&r, K, N, &w_bytes) : random_q4k(&r, K, N, &w_bytes);
    upload_weight(ctx, "w", type, w, K, N, w_bytes);
    float *x = random_floats(&r, (size_t)M * K);
    for (uint32_t c = 0; c < K; c++) {
      const uint32_t sb = c / 256;
      x[0 * K + c] = ldexpf(x[0 * K + c], -100);
      x[1 * K + c] = ldexpf(x[1 * K + c], 100);
      x[2 * K + c] = ldexpf(x[2 * K + c], 16 * (int)(sb % 4) * 3 - 72);
      if (sb != 5) x[3 * K + c] = 0.0f;
      if (c % 256 == 77) x[4 * K + c] *= 1000.0f;
      x[5 * K + c] = ldexpf(x[5 * K + c], -118);
    }
    double *ref = checked_malloc((size_t)M * N * sizeof *ref);
    cr_assert_eq(ptxq_ref_gemv(type, w, K, N, x, M, ref), PTXQ_OK);
    ptxq_dev dx = device_alloc(ctx, (size_t)M * K * sizeof(float));
    ptxq_dev dy = device_alloc(ctx, (size_t)M * N * sizeof(float));
    cr_assert_eq(ptxq_upload(ctx, dx, x, (size_t)M * K * sizeof(float)), PTXQ_OK);
    float *y = checked_malloc((size_t)M * N * sizeof *y), *single = checked_malloc(N * sizeof *single);
    poison(ctx, dy, (size_t)M * N * sizeof(float));
    cr_assert_eq(ptxq_gemv(ctx, "w", dx, dy, M), PTXQ_OK, "%s", ptxq_last_error(ctx));
    cr_assert_eq(ptxq_download(ctx, y, dy, (size_t)M * N * sizeof(float)), PTXQ_OK);
    for (uint32_t i = 0; i < M; i++) {
      double err = relative_error_over(y + (size_t)i * N, ref + (size_t)i * N, N, N);
      cr_assert(err <= TOLERANCE, "seed %llu tc=%d %s: batch row %u: relative error %.3g > %g",
                (unsigned long long)seed, tc, type == PTXQ_TYPE_Q6_K ? "Q6_K" : "Q4_K", i, err, TOLERANCE);
      poison(ctx, dy, N * sizeof(float));
      cr_assert_eq(ptxq_gemv(ctx, "w", dx + (size_t)i * K * sizeof(float), dy, 1), PTXQ_OK, "%s",
                   ptxq_last_error(ctx));
      cr_assert_eq(ptxq_download(ctx, single, dy, N * sizeof(float)), PTXQ_OK);
      cr_assert(memcmp(single, y + (size_t)i * N, N * sizeof(float)) == 0,
                "seed %llu tc=%d %s: batch row %u differs from its m=1 product", (unsigned long long)seed, tc,
                type == PTXQ_TYPE_Q6_K ? "Q6_K" : "Q4_K", i);
    }
    free(single);
    free(y);
    free(ref);
    free(x);
    free(w);
    ptxq_close(ctx);
  }
}

/* ---- the context and its resources ----------------------------------------- */

Test(gpu, device_info_is_plausible) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_device_info info;
  cr_assert_eq(ptxq_device_info_get(ctx, &info), PTXQ_OK);
  cr_assert_gt(strlen(info.name), 0);
  cr_assert_geq(info.sm, 75);
  cr_assert_leq(info.target_sm, info.sm);
  cr_assert_not_null(ptxgen_ptx_version(info.target_sm), "target_sm=%u", info.target_sm);
  cr_assert_gt(info.multiprocessors, 0);
  cr_assert_gt(info.total_memory, 0);
  cr_assert_gt(info.l2_bytes, 0);
  cr_assert_gt(info.driver_version, 0);
  cr_assert_not_null(ptxq_stream(ctx));
  cr_assert_eq(ptxq_device_info_get(ctx, NULL), PTXQ_ERR_INVALID);
  ptxq_close(ctx);
}

/* A benchmark switch read by ptxq_open (an environment variable): each bad
 * value fails the open with PTXQ_ERR_INVALID naming the variable; the good
 * one opens. The variable is unset afterwards. */
static void check_benchmark_switch(const char *name, const char *const *bad, size_t count, const char *good) {
  ptxq_ctx *other = NULL;
  for (size_t i = 0; i < count; i++) {
    cr_assert_eq(setenv(name, bad[i], 1), 0);
    EXPECT_FAIL(NULL, ptxq_open(&other, NULL), PTXQ_ERR_INVALID, name);
    cr_assert_null(other);
  }
  cr_assert_eq(setenv(name, good, 1), 0);
  cr_assert_eq(ptxq_open(&other, NULL), PTXQ_OK, "%s: %s", name, ptxq_last_error(NULL));
  ptxq_close(other);
  unsetenv(name);
}

Test(gpu, open_rejects_bad_options) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_device_info info;
  cr_assert_eq(ptxq_device_info_get(ctx, &info), PTXQ_OK);
  ptxq_close(ctx);

  ptxq_ctx *other = (ptxq_ctx *)&other;
  ptxq_options opt = {.device = 99};
  EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_NO_DEVICE, "99");
  cr_assert_null(other);
  opt = (ptxq_options){.device = -1};
  EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_INVALID, "-1");
  opt = (ptxq_options){.target_sm = 81};
  EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_INVALID, "81");
  opt = (ptxq_options){.tensor_cores = 2};
  EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_INVALID, "tensor_cores=2");
  cr_assert_null(other);
  /* The benchmark switches: a malformed value fails the open. */
  static const char *const bad_tunes[] = {"3,8", "2,12", "2", "2,8,1", "x"};
  static const char *const bad_preloads[] = {"0", "5", "4x", "x", "-1"};
  check_benchmark_switch("PTXQ_GEMV_TUNE", bad_tunes, sizeof bad_tunes / sizeof bad_tunes[0], "1,16");
  check_benchmark_switch("PTXQ_GEMV_PRELOAD", bad_preloads, sizeof bad_preloads / sizeof bad_preloads[0], "4");
  static const char *const bad_idps[] = {"2", "yes", "1x", "-1"};
  check_benchmark_switch("PTXQ_GEMV_IDP", bad_idps, sizeof bad_idps / sizeof bad_idps[0], "1");
  if (info.sm >= 75) { /* the tensor-core GEMV needs sm_80: refused for an sm_75 target */
    opt = (ptxq_options){.target_sm = 75, .tensor_cores = 1};
    EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_UNSUPPORTED, "tensor_cores=1 with target sm_75");
    cr_assert_null(other);
  }

  /* A target newer than the device (none exists for the newest device). */
  static const uint32_t targets[] = {75, 80, 86, 89, 90, 100, 120};
  for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
    if (targets[i] <= info.sm) continue;
    char needle[32];
    snprintf(needle, sizeof needle, "target_sm=%u", targets[i]);
    opt = (ptxq_options){.target_sm = targets[i]};
    EXPECT_FAIL(NULL, ptxq_open(&other, &opt), PTXQ_ERR_INVALID, needle);
    break;
  }
}

Test(gpu, alloc_copy_free) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  size_t bytes = 1000003; /* odd on purpose */
  uint8_t *data = checked_malloc(bytes), *back = checked_malloc(bytes);
  for (size_t i = 0; i < bytes; i++) data[i] = (uint8_t)rng_next(&r);
  ptxq_dev dev = device_alloc(ctx, bytes);
  cr_assert_eq(ptxq_upload(ctx, dev, data, bytes), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_download(ctx, back, dev, bytes), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert(memcmp(data, back, bytes) == 0, "seed %llu: round trip changed the bytes",
            (unsigned long long)seed);
  cr_assert_eq(ptxq_sync(ctx), PTXQ_OK);
  cr_assert_eq(ptxq_free(ctx, dev), PTXQ_OK, "%s", ptxq_last_error(ctx));

  ptxq_dev zero = 7;
  EXPECT_FAIL(ctx, ptxq_alloc(ctx, 0, &zero), PTXQ_ERR_INVALID, "bytes=0");
  cr_assert_eq(zero, 0);
  EXPECT_FAIL(ctx, ptxq_free(ctx, dev), PTXQ_ERR_INVALID, "already freed");
  char hex[32];
  snprintf(hex, sizeof hex, "0x%llx", (unsigned long long)(dev + 64));
  EXPECT_FAIL(ctx, ptxq_free(ctx, dev + 64), PTXQ_ERR_INVALID, hex);
  EXPECT_FAIL(ctx, ptxq_free(ctx, 0xdead000), PTXQ_ERR_INVALID, "0xdead000");
  EXPECT_FAIL(ctx, ptxq_upload(ctx, 0, data, 16), PTXQ_ERR_INVALID, "device address");
  EXPECT_FAIL(ctx, ptxq_download(ctx, NULL, 0x1000, 16), PTXQ_ERR_INVALID, "host pointer");
  EXPECT_FAIL(ctx, ptxq_alloc(ctx, (size_t)1 << 60, &zero), PTXQ_ERR_DEVICE_MEMORY,
              "1152921504606846976");

  /* Left allocated on purpose: ptxq_close frees it. */
  (void)device_alloc(ctx, 4096);
  free(data);
  free(back);
  ptxq_close(ctx);
}

Test(gpu, events_time_work) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, 4096, 4096, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, 4096, 4096, w_bytes);
  ptxq_dev dx = device_alloc(ctx, 4096 * 4), dy = device_alloc(ctx, 4096 * 4);
  float *x = random_floats(&r, 4096); /* inputs written: initcheck reads every byte the kernel reads */
  upload(ctx, dx, x, 4096 * 4);
  free(x);
  cr_assert_eq(ptxq_gemv_prepare(ctx, "w", 1), PTXQ_OK, "%s", ptxq_last_error(ctx));

  ptxq_event *start = NULL, *end = NULL;
  cr_assert_eq(ptxq_event_create(ctx, &start), PTXQ_OK);
  cr_assert_eq(ptxq_event_create(ctx, &end), PTXQ_OK);
  cr_assert_eq(ptxq_event_record(ctx, start), PTXQ_OK);
  for (int i = 0; i < 10; i++) cr_assert_eq(ptxq_gemv(ctx, "w", dx, dy, 1), PTXQ_OK);
  cr_assert_eq(ptxq_event_record(ctx, end), PTXQ_OK);
  float ms = -1.0f;
  cr_assert_eq(ptxq_event_elapsed_ms(ctx, start, end, &ms), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert(ms > 0.0f && ms < 10000.0f, "elapsed %g ms", (double)ms);
  EXPECT_FAIL(ctx, ptxq_event_elapsed_ms(ctx, start, NULL, &ms), PTXQ_ERR_INVALID, "end");
  ptxq_event_destroy(ctx, start);
  ptxq_event_destroy(ctx, end);
  free(w);
  ptxq_close(ctx);
}

/* ---- kernels by key --------------------------------------------------------- */

Test(gpu, kernel_get_describes_the_kernel) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_kernel_info info, again;
  const char *key = "q4k_gemv:k=4096,n=777,m=3";
  cr_assert_eq(ptxq_kernel_get(ctx, key, &info), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_gt(info.registers, 0);
  cr_assert_gt(info.jit_ms, 0.0);
  cr_assert_gt(strlen(info.entry), 0);
  cr_assert_geq(info.spill_bytes, 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_gt(info.grid[i], 0);
    cr_assert_gt(info.block[i], 0);
  }
  /* The second request is a table hit: the same build, not a new one. */
  cr_assert_eq(ptxq_kernel_get(ctx, key, &again), PTXQ_OK);
  cr_assert(memcmp(&info, &again, sizeof info) == 0, "a cached kernel changed its description");

  /* The generator's geometry, not ours. */
  ptxgen_spec spec;
  char msg[256];
  cr_assert_eq(ptxgen_spec_parse(key, &spec, msg, sizeof msg), PTXGEN_OK, "%s", msg);
  ptxgen_kernel kernel;
  cr_assert_eq(ptxgen_emit(&spec, &kernel, msg, sizeof msg), PTXGEN_OK, "%s", msg);
  cr_assert_str_eq(info.entry, kernel.entry);
  cr_assert_eq(info.shared_bytes, kernel.geometry.shared_bytes);
  cr_assert_eq(info.grid[0], kernel.geometry.grid[0]);
  cr_assert_eq(info.block[0], kernel.geometry.block[0]);
  ptxgen_kernel_free(&kernel);
  ptxq_close(ctx);
}

Test(gpu, kernel_get_rejects_bad_keys) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  ptxq_kernel_info info;
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "garbage", &info), PTXQ_ERR_INVALID, "garbage");
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "q8_gemv:k=256,n=1,m=1", &info), PTXQ_ERR_INVALID,
              "q8_gemv");
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "q4k_gemv:k=4000,n=1,m=1", &info), PTXQ_ERR_INVALID,
              "k=4000");
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, NULL, &info), PTXQ_ERR_INVALID, "NULL");
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "q4k_gemv:k=256,n=1,m=1", NULL), PTXQ_ERR_INVALID, "info");
  void *params[3] = {NULL, NULL, NULL};
  EXPECT_FAIL(ctx, ptxq_kernel_launch(ctx, "q4k_gemv:k=256,n=1,m=17", params), PTXQ_ERR_INVALID,
              "m=17");
  /* the epilogues stop at m = 8 (PTXGEN_GEMV_EPILOGUE_MAX_M) */
  EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "q6k_gemv:k=256,n=1,m=9,glu=swiglu", &info), PTXQ_ERR_INVALID,
              "m=9 with glu");
  EXPECT_FAIL(ctx, ptxq_kernel_launch(ctx, "q4k_gemv:k=256,n=1,m=1", NULL), PTXQ_ERR_INVALID,
              "params");

  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  if (dev.sm < 120)
    EXPECT_FAIL(ctx, ptxq_kernel_get(ctx, "q4k_gemv:k=256,n=1,m=1,sm=120", &info), PTXQ_ERR_INVALID,
                "sm=120");
  /* A JIT failure (PTXQ_ERR_JIT, with the log and the quoted PTX line in the
   * detail) cannot be provoked through the public API: every key the
   * generator accepts yields PTX the driver accepts. modules.c's
   * quote_failing_line is exercised only when the generator has a bug. */
  ptxq_close(ctx);
}

/* ptxq_kernel_launch with the parameters ptxgen.h documents gives what
 * ptxq_gemv gives. */
Test(gpu, kernel_launch_by_key_matches_gemv) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 512, n = 777, m = 2;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)m * k);
  ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), dy = device_alloc(ctx, (size_t)m * n * 4);
  cr_assert_eq(ptxq_upload(ctx, dx, x, (size_t)m * k * 4), PTXQ_OK);
  float *y_gemv = checked_malloc((size_t)m * n * 4), *y_key = checked_malloc((size_t)m * n * 4);
  cr_assert_eq(ptxq_gemv(ctx, "w", dx, dy, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_download(ctx, y_gemv, dy, (size_t)m * n * 4), PTXQ_OK);

  ptxq_weight_info winfo;
  cr_assert_eq(ptxq_weight_info_get(ctx, "w", &winfo), PTXQ_OK);
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  char key[128];
  snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u", k, n, m, dev.target_sm);
  poison(ctx, dy, (size_t)m * n * 4);
  uint64_t pw = winfo.data, px = dx, py = dy;
  void *params[] = {&pw, &px, &py};
  cr_assert_eq(ptxq_kernel_launch(ctx, key, params), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_download(ctx, y_key, dy, (size_t)m * n * 4), PTXQ_OK);
  cr_assert(memcmp(y_gemv, y_key, (size_t)m * n * 4) == 0, "seed %llu: %s differs from ptxq_gemv",
            (unsigned long long)seed, key);
  free(x);
  free(w);
  free(y_gemv);
  free(y_key);
  ptxq_close(ctx);
}

/* A random plain product on the device: weight "w" (Q4_K or Q6_K) [n][k],
 * x [m][k] in dx, room for y [m][n] in dy, and the parameters a GEMV kernel
 * launched by key takes (W, x, y). */
typedef struct product {
  int q6k;
  uint32_t k, n, m;
  uint8_t *w;
  float *x;
  ptxq_dev dx, dy;
  uint64_t pw, px, py;
  void *params[3];
} product;

static void product_init(ptxq_ctx *ctx, rng *r, product *p, int q6k, uint32_t k, uint32_t n, uint32_t m) {
  *p = (product){.q6k = q6k, .k = k, .n = n, .m = m};
  size_t w_bytes;
  p->w = q6k ? random_q6k(r, k, n, &w_bytes) : random_q4k(r, k, n, &w_bytes);
  upload_weight(ctx, "w", q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K, p->w, k, n, w_bytes);
  p->x = random_floats(r, (size_t)m * k);
  p->dx = device_alloc(ctx, (size_t)m * k * 4);
  p->dy = device_alloc(ctx, (size_t)m * n * 4);
  upload(ctx, p->dx, p->x, (size_t)m * k * 4);
  ptxq_weight_info winfo;
  cr_assert_eq(ptxq_weight_info_get(ctx, "w", &winfo), PTXQ_OK);
  p->pw = winfo.data, p->px = p->dx, p->py = p->dy;
  p->params[0] = &p->pw, p->params[1] = &p->px, p->params[2] = &p->py;
}

/* The key of the product's kernel for target sm, with `options` (",..." or ""). */
static void product_key(const product *p, uint32_t sm, const char *options, char *key, size_t cap) {
  snprintf(key, cap, "%s:k=%u,n=%u,m=%u,sm=%u%s", p->q6k ? "q6k_gemv" : "q4k_gemv", p->k, p->n, p->m, sm, options);
}

/* Runs the product through ptxq_gemv into y (host, m*n floats), dy poisoned first. */
static void product_gemv(ptxq_ctx *ctx, product *p, float *y) {
  poison(ctx, p->dy, (size_t)p->m * p->n * 4);
  cr_assert_eq(ptxq_gemv(ctx, "w", p->dx, p->dy, p->m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  download(ctx, y, p->dy, (size_t)p->m * p->n * 4);
}

/* Runs the product's kernel by key into y (host, m*n floats), dy poisoned first. */
static void product_by_key(ptxq_ctx *ctx, product *p, const char *key, float *y) {
  poison(ctx, p->dy, (size_t)p->m * p->n * 4);
  cr_assert_eq(ptxq_kernel_launch(ctx, key, p->params), PTXQ_OK, "%s", ptxq_last_error(ctx));
  download(ctx, y, p->dy, (size_t)p->m * p->n * 4);
}

static void product_free(ptxq_ctx *ctx, product *p) {
  cr_assert_eq(ptxq_free(ctx, p->dx), PTXQ_OK);
  cr_assert_eq(ptxq_free(ctx, p->dy), PTXQ_OK);
  free(p->x);
  free(p->w);
}

/* Every way of running a product (loads a chunk ahead or not, the copy
 * engine's ring (preload=4, sm_90+; elsewhere a chunk ahead), rows per
 * warp, warps per block) reduces each output in the same order with the
 * same arithmetic: the tuned keys give the default kernel's bits. Shapes
 * where lanes own different numbers of chunks (k = 2304: 36 chunks), with
 * rows past n in the last group, and x in tiles (k = 14336, m = 8 below;
 * k = 4096 past m = 12). At m = 16 Q6_K takes one row per warp by default:
 * rows=2 and rows=4 must give its bits too; Q4_K from 4096 rows at m = 6
 * and 8 takes four (n = 4097, 4099: the last group holds 1 or 3 rows), and
 * from 3 x 2^23 weights at m = 5..8 (at m = 4 from 65536 rows) the ring
 * (n = 6145, 6147 at k = 4096, n = 65537 at k = 512, sm_90+): the loads ahead
 * (preload=1..3) must give its bits. */
Test(gpu, tuning_variants_give_the_same_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { int q6k; uint32_t k, n, m; } shapes[] = {
      {0, 2304, 1001, 1}, {0, 4096, 333, 3},  {1, 2304, 999, 2},  {1, 14336, 77, 1}, {0, 256, 7, 8},
      {0, 14336, 45, 8},  {1, 4096, 333, 16}, {0, 4096, 1001, 13}, {1, 2304, 99, 11}, {0, 256, 9, 16},
      {0, 2304, 4097, 6}, {0, 14336, 4099, 8}, {0, 4096, 6145, 5}, {0, 4096, 6147, 7}, {0, 4096, 6147, 8},
      {0, 512, 65537, 4}};
  static const char *const tunings[] = {"preload=1", "preload=2", "preload=3",         "warps=4",
                                        "warps=16",  "rows=1",    "rows=4,preload=2",  "rows=4,warps=4,preload=1",
                                        "rows=1,warps=16,preload=3", "preload=4", "rows=1,warps=16,preload=4",
                                        "rows=4,warps=4,preload=4"};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const uint32_t k = shapes[s].k, n = shapes[s].n, m = shapes[s].m;
    product p;
    product_init(ctx, &r, &p, shapes[s].q6k, k, n, m);
    float *want = checked_malloc((size_t)m * n * 4), *got = checked_malloc((size_t)m * n * 4);
    product_gemv(ctx, &p, want);
    for (size_t t = 0; t < sizeof tunings / sizeof tunings[0]; t++) {
      char key[160], options[64];
      snprintf(options, sizeof options, ",%s", tunings[t]);
      product_key(&p, dev.target_sm, options, key, sizeof key);
      product_by_key(ctx, &p, key, got);
      size_t i = first_bit_difference(want, got, (size_t)m * n);
      cr_assert(i == (size_t)m * n, "seed %llu: %s: y[%zu][%zu] = %.9g, the default kernel gives %.9g",
                (unsigned long long)seed, key, i / n, i % n, (double)got[i], (double)want[i]);
    }
    product_free(ctx, &p);
    free(want);
    free(got);
  }
  ptxq_close(ctx);
}

/* Integer dot products (idp=1, an experiment key; ptxgen.h): within the
 * tolerance of the fp64 reference, bit for bit the CPU model of their
 * arithmetic (tests/idp_model.h), each batch row bit-identical to its own
 * m = 1 product, and the tuned variants (loads ahead or not, the ring, rows
 * and warps, dp4a or the integer tensor cores: mma=1, 2) give the default
 * idp kernel's bits. Shapes: lanes with different chunk counts (k = 2304),
 * x in tiles (k = 14336, m = 8), the ring (k = 14336 at m = 1, 6145 rows at
 * m = 5, sm_90+), four rows per warp (4097 rows at m = 6), 16 batch rows,
 * a single super-block; on the tensor cores (mma=2 where the target has
 * room; by default from m = 4 on 2048 rows), warps without a last chunk (k
 * = 2304), a partial last tile of 16 rows, several tiles a block (k = 4096
 * at m = 8, k = 14336 at m = 4), fewer chunks than warps (k = 256), and x
 * split over a cluster of two blocks (sm_90: k = 14336 at m = 7 and 8, k =
 * 8192 at m = 8). */
Test(gpu, idp_products_are_accurate_batch_invariant_and_the_same_for_every_tuning) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { uint32_t k, n, m; } shapes[] = {
      {4096, 333, 3},  {2304, 1001, 1}, {14336, 45, 8},  {256, 7, 16},   {4096, 6145, 5},  {14336, 777, 1},
      {2304, 4097, 6}, {4096, 1001, 8}, {256, 17, 2},    {14336, 100, 4}, {8192, 2049, 8}, {14336, 333, 7}};
  static const char *const tunings[] = {",idp=1,preload=1", ",idp=1,preload=3", ",idp=1,rows=1,warps=16",
                                        ",idp=1,preload=4", ",idp=1,rows=4,warps=4", ",idp=1,mma=1", ",idp=1,mma=2"};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const uint32_t k = shapes[s].k, n = shapes[s].n, m = shapes[s].m;
    product p;
    product_init(ctx, &r, &p, 0, k, n, m);
    float *want = checked_malloc((size_t)m * n * 4), *got = checked_malloc((size_t)m * n * 4);
    char key[160];
    product_key(&p, dev.target_sm, ",idp=1", key, sizeof key);
    product_by_key(ctx, &p, key, want);
    double *ref = checked_malloc((size_t)m * n * sizeof *ref);
    cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, p.w, k, n, p.x, m, ref), PTXQ_OK);
    const double err = relative_error(want, ref, (size_t)m * n);
    cr_assert(err <= TOLERANCE, "seed %llu: %s: max_rel_err %.3g > %.0e", (unsigned long long)seed, key, err,
              TOLERANCE);
    idp_q4k_gemv_model(p.w, k, n, p.x, m, got); /* the arithmetic, bit for bit */
    size_t at = first_bit_difference(got, want, (size_t)m * n);
    cr_assert(at == (size_t)m * n, "seed %llu: %s: y[%zu][%zu] = %.9g, tests/idp_model.h gives %.9g",
              (unsigned long long)seed, key, at / n, at % n, (double)want[at], (double)got[at]);
    for (size_t t = 0; t < sizeof tunings / sizeof tunings[0]; t++) {
      product_key(&p, dev.target_sm, tunings[t], key, sizeof key);
      ptxgen_spec spec;
      if (strstr(tunings[t], "mma=2") && ptxgen_spec_parse(key, &spec, NULL, 0) != PTXGEN_OK) continue; /* no room */
      product_by_key(ctx, &p, key, got);
      size_t i = first_bit_difference(want, got, (size_t)m * n);
      cr_assert(i == (size_t)m * n, "seed %llu: %s: y[%zu][%zu] = %.9g, the default idp kernel gives %.9g",
                (unsigned long long)seed, key, i / n, i % n, (double)got[i], (double)want[i]);
    }
    snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=1,sm=%u,idp=1", k, n, dev.target_sm);
    for (uint32_t row = 0; row < m; row++) { /* batch row `row` alone, through the m = 1 kernel */
      p.px = p.dx + (uint64_t)row * k * 4;
      poison(ctx, p.dy, (size_t)n * 4);
      cr_assert_eq(ptxq_kernel_launch(ctx, key, p.params), PTXQ_OK, "%s", ptxq_last_error(ctx));
      download(ctx, got, p.dy, (size_t)n * 4);
      size_t i = first_bit_difference(want + (size_t)row * n, got, n);
      cr_assert(i == n, "seed %llu: %s: row %u alone gives y[%zu] = %.9g, the m = %u kernel %.9g",
                (unsigned long long)seed, key, row, i, (double)got[i], (double)want[(size_t)row * n + i], m);
    }
    p.px = p.dx;
    product_free(ctx, &p);
    free(ref);
    free(want);
    free(got);
  }
  ptxq_close(ctx);
}

/* Gated idp products (glu=swiglu, geglu: act(x.W^T) * (x.U^T) in one
 * kernel): the integer tensor-core kernel (mma=2, tiles of 8 gate and 8 up
 * rows) gives the dp4a kernel's bits (mma=1), and so does the generator's
 * choice; all within the tolerance of the fp64 reference of act(gate) * up.
 * Shapes: a part-empty last tile (n = 1001, 333, 17), warps without a last
 * chunk (k = 2304), fewer chunks than warps (k = 256), m = 4 to 8. */
Test(gpu, idp_gated_products_on_the_tensor_cores_give_the_dp4a_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { uint32_t k, n, m; } shapes[] = {{4096, 1001, 8}, {2304, 333, 5}, {256, 17, 4}, {4096, 2049, 6}};
  static const char *const glus[] = {"swiglu", "geglu"}, *const tunings[] = {"", ",mma=1", ",mma=2"};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const uint32_t k = shapes[s].k, n = shapes[s].n, m = shapes[s].m;
    uint64_t w[2];
    uint8_t *host_w[2];
    for (int i = 0; i < 2; i++) {
      char name[32];
      size_t w_bytes;
      snprintf(name, sizeof name, "%s%zu", i ? "up" : "gate", s);
      host_w[i] = random_q4k(&r, k, n, &w_bytes);
      upload_weight(ctx, name, PTXQ_TYPE_Q4_K, host_w[i], k, n, w_bytes);
      ptxq_weight_info info;
      cr_assert_eq(ptxq_weight_info_get(ctx, name, &info), PTXQ_OK);
      w[i] = info.data;
    }
    float *x = random_floats(&r, (size_t)m * k);
    uint64_t px = device_alloc(ctx, (size_t)m * k * 4), py = device_alloc(ctx, (size_t)m * n * 4);
    upload(ctx, px, x, (size_t)m * k * 4);
    double *g = checked_malloc((size_t)m * n * sizeof *g), *u = checked_malloc((size_t)m * n * sizeof *u);
    double *ref = checked_malloc((size_t)m * n * sizeof *ref);
    cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, host_w[0], k, n, x, m, g), PTXQ_OK);
    cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, host_w[1], k, n, x, m, u), PTXQ_OK);
    float *gf = checked_malloc((size_t)m * n * 4), *uf = checked_malloc((size_t)m * n * 4);
    for (size_t i = 0; i < (size_t)m * n; i++) gf[i] = (float)g[i], uf[i] = (float)u[i];
    float *want = checked_malloc((size_t)m * n * 4), *got = checked_malloc((size_t)m * n * 4);
    void *params[] = {&w[0], &w[1], &px, &py};
    for (int a = 0; a < 2; a++) {
      cr_assert_eq(ptxq_ref_glu(a ? PTXQ_ACT_GELU : PTXQ_ACT_SILU, gf, uf, ref, (size_t)m * n), PTXQ_OK);
      for (size_t t = 0; t < sizeof tunings / sizeof tunings[0]; t++) {
        char key[160];
        snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u,glu=%s,idp=1%s", k, n, m, dev.target_sm, glus[a],
                 tunings[t]);
        ptxgen_spec spec;
        if (t == 2 && ptxgen_spec_parse(key, &spec, NULL, 0) != PTXGEN_OK) continue; /* no room on this target */
        poison(ctx, py, (size_t)m * n * 4);
        cr_assert_eq(ptxq_kernel_launch(ctx, key, params), PTXQ_OK, "%s", ptxq_last_error(ctx));
        download(ctx, t ? got : want, py, (size_t)m * n * 4);
        const double err = relative_error(t ? got : want, ref, (size_t)m * n);
        cr_assert(err <= TOLERANCE, "seed %llu: %s: max_rel_err %.3g > %.0e", (unsigned long long)seed, key, err,
                  TOLERANCE);
        if (t == 0) continue;
        size_t i = first_bit_difference(want, got, (size_t)m * n);
        cr_assert(i == (size_t)m * n, "seed %llu: %s: y[%zu][%zu] = %.9g, the generator's choice gives %.9g",
                  (unsigned long long)seed, key, i / n, i % n, (double)got[i], (double)want[i]);
      }
    }
    cr_assert_eq(ptxq_free(ctx, px), PTXQ_OK);
    cr_assert_eq(ptxq_free(ctx, py), PTXQ_OK);
    free(host_w[0]), free(host_w[1]), free(x), free(g), free(u), free(ref), free(gf), free(uf), free(want), free(got);
  }
  ptxq_close(ctx);
}

/* idp products over several weights in one row space (n2=, n3=: a layer's
 * q, k, v): on the integer tensor cores (mma=2) each weight's output has
 * the dp4a kernel's bits (mma=1), as with the generator's choice, and is
 * within the tolerance of the fp64 reference. Tiles straddle the weights
 * (n = 1001 + 77 + 333, 7 + 1 + 17); k = 2304, 256 as above. */
Test(gpu, idp_multi_weight_products_on_the_tensor_cores_give_the_dp4a_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { uint32_t k, m, n[3]; } cases[] = {
      {4096, 8, {1001, 77, 333}}, {2304, 5, {129, 1024, 0}}, {256, 4, {7, 1, 17}}, {4096, 6, {4096, 1024, 1024}}};
  static const char *const tunings[] = {"", ",mma=1", ",mma=2"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const uint32_t k = cases[c].k, m = cases[c].m, count = cases[c].n[2] ? 3 : 2;
    uint64_t w[3] = {0}, y[3] = {0};
    double *ref[3] = {NULL};
    float *out[3][2] = {{NULL}};
    float *x = random_floats(&r, (size_t)m * k);
    uint64_t px = device_alloc(ctx, (size_t)m * k * 4);
    upload(ctx, px, x, (size_t)m * k * 4);
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t n = cases[c].n[i];
      char name[32];
      size_t w_bytes;
      snprintf(name, sizeof name, "multi%zu_%u", c, i);
      uint8_t *q = random_q4k(&r, k, n, &w_bytes);
      upload_weight(ctx, name, PTXQ_TYPE_Q4_K, q, k, n, w_bytes);
      ref[i] = checked_malloc((size_t)m * n * sizeof *ref[i]);
      cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, q, k, n, x, m, ref[i]), PTXQ_OK);
      free(q);
      ptxq_weight_info info;
      cr_assert_eq(ptxq_weight_info_get(ctx, name, &info), PTXQ_OK);
      w[i] = info.data;
      y[i] = device_alloc(ctx, (size_t)m * n * 4);
      out[i][0] = checked_malloc((size_t)m * n * 4);
      out[i][1] = checked_malloc((size_t)m * n * 4);
    }
    void *two[] = {&w[0], &w[1], &px, &y[0], &y[1]};
    void *three[] = {&w[0], &w[1], &w[2], &px, &y[0], &y[1], &y[2]};
    for (size_t t = 0; t < sizeof tunings / sizeof tunings[0]; t++) {
      char key[200];
      const uint32_t *n = cases[c].n;
      if (count == 3)
        snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,n2=%u,n3=%u,m=%u,sm=%u,idp=1%s", k, n[0], n[1], n[2], m,
                 dev.target_sm, tunings[t]);
      else
        snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,n2=%u,m=%u,sm=%u,idp=1%s", k, n[0], n[1], m, dev.target_sm,
                 tunings[t]);
      ptxgen_spec spec;
      if (t == 2 && ptxgen_spec_parse(key, &spec, NULL, 0) != PTXGEN_OK) continue; /* no room on this target */
      for (uint32_t i = 0; i < count; i++) poison(ctx, y[i], (size_t)m * n[i] * 4);
      cr_assert_eq(ptxq_kernel_launch(ctx, key, count == 3 ? three : two), PTXQ_OK, "%s", ptxq_last_error(ctx));
      for (uint32_t i = 0; i < count; i++) {
        const size_t outputs = (size_t)m * n[i];
        float *got = out[i][t ? 1 : 0];
        download(ctx, got, y[i], outputs * 4);
        const double err = relative_error(got, ref[i], outputs);
        cr_assert(err <= TOLERANCE, "seed %llu: %s, weight %u: max_rel_err %.3g > %.0e", (unsigned long long)seed,
                  key, i, err, TOLERANCE);
        if (t == 0) continue;
        const size_t at = first_bit_difference(out[i][0], got, outputs);
        cr_assert(at == outputs, "seed %llu: %s, weight %u: y[%zu][%zu] = %.9g, the generator's choice gives %.9g",
                  (unsigned long long)seed, key, i, at / n[i], at % n[i], (double)got[at], (double)out[i][0][at]);
      }
    }
    for (uint32_t i = 0; i < count; i++) {
      cr_assert_eq(ptxq_free(ctx, y[i]), PTXQ_OK);
      free(ref[i]), free(out[i][0]), free(out[i][1]);
    }
    cr_assert_eq(ptxq_free(ctx, px), PTXQ_OK);
    free(x);
  }
  ptxq_close(ctx);
}

/* A batch of more than 8 rows that ptxgen_gemv_batch_rows splits runs as
 * launches of 8 rows and one of the rest (ptxq_gemv): the result has the
 * bits of the one kernel for all m rows, launched by its key, and matches
 * the fp64 reference. Large products, as the split needs: Q4_K with x in
 * tiles past 12 rows (k = 4096), Q6_K with one row per warp past 8. */
Test(gpu, large_batches_in_launches_of_8_give_the_one_kernel_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { int q6k; uint32_t k, n, m; } shapes[] = {
      {0, 4096, 8192, 16}, {0, 4096, 8192, 14}, {1, 4096, 4096, 12}, {1, 4096, 4096, 9}};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const uint32_t k = shapes[s].k, n = shapes[s].n, m = shapes[s].m;
    product p;
    product_init(ctx, &r, &p, shapes[s].q6k, k, n, m);
    char key[160];
    product_key(&p, dev.target_sm, "", key, sizeof key);
    ptxgen_spec spec;
    cr_assert_eq(ptxgen_spec_parse(key, &spec, NULL, 0), 0, "%s", key);
    const uint32_t rows = ptxgen_gemv_batch_rows(&spec);
    if (dev.target_sm == 90) /* where the rule was measured: these shapes split */
      cr_assert_eq(rows, 8, "%s: %u rows per launch, want 8", key, rows);
    float *split = checked_malloc((size_t)m * n * 4), *one = checked_malloc((size_t)m * n * 4);
    product_gemv(ctx, &p, split);
    product_by_key(ctx, &p, key, one);
    size_t i = first_bit_difference(one, split, (size_t)m * n);
    cr_assert(i == (size_t)m * n, "seed %llu: %s in launches of %u rows: y[%zu][%zu] = %.9g, the one kernel gives %.9g",
              (unsigned long long)seed, key, rows, i / n, i % n, (double)split[i], (double)one[i]);
    double *ref = checked_malloc((size_t)m * n * sizeof *ref);
    cr_assert_eq(ptxq_ref_gemv(shapes[s].q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K, p.w, k, n, p.x, m, ref), PTXQ_OK);
    const double err = relative_error(split, ref, (size_t)m * n);
    cr_assert(err <= TOLERANCE, "seed %llu: %s: max_rel_err %.3g > %.0e", (unsigned long long)seed, key, err,
              TOLERANCE);
    product_free(ctx, &p);
    free(ref);
    free(split);
    free(one);
  }
  ptxq_close(ctx);
}

/* The copy engine's ring (preload=4) feeds the gated and the multi-weight
 * kernels the same bytes: their outputs keep the default kernels' bits.
 * k = 2304 has a short last round; n = 1001 a part-empty last row group. */
Test(gpu, copy_engine_gated_and_multi_give_the_same_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  /* wa and wb: a gated pair (or the first two weights of three), wc: the third */
  const uint32_t k = 2304, m = 3, n[3] = {1001, 1001, 333};
  static const char *const names[3] = {"wa", "wb", "wc"};
  uint64_t w[3], y[3];
  for (int i = 0; i < 3; i++) {
    size_t w_bytes;
    uint8_t *q = random_q4k(&r, k, n[i], &w_bytes);
    upload_weight(ctx, names[i], PTXQ_TYPE_Q4_K, q, k, n[i], w_bytes);
    free(q);
    ptxq_weight_info info;
    cr_assert_eq(ptxq_weight_info_get(ctx, names[i], &info), PTXQ_OK);
    w[i] = info.data;
    y[i] = device_alloc(ctx, (size_t)m * n[i] * 4);
  }
  float *x = random_floats(&r, (size_t)m * k);
  uint64_t px = device_alloc(ctx, (size_t)m * k * 4);
  upload(ctx, px, x, (size_t)m * k * 4);
  float *out[2][3];
  for (int v = 0; v < 2; v++)
    for (int i = 0; i < 3; i++) out[v][i] = checked_malloc((size_t)m * n[i] * 4);
  void *gated[] = {&w[0], &w[1], &px, &y[0]};
  void *three[] = {&w[0], &w[1], &w[2], &px, &y[0], &y[1], &y[2]};
  for (int multi = 0; multi < 2; multi++) {
    const int outputs = multi ? 3 : 1;
    for (int bulk = 0; bulk < 2; bulk++) { /* the default kernel, then preload=4 */
      char key[160];
      if (multi)
        snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u,n2=%u,n3=%u%s", k, n[0], m, dev.target_sm, n[1],
                 n[2], bulk ? ",preload=4" : "");
      else
        snprintf(key, sizeof key, "q4k_gemv:k=%u,n=%u,m=%u,sm=%u,glu=swiglu%s", k, n[0], m, dev.target_sm,
                 bulk ? ",preload=4" : "");
      for (int i = 0; i < outputs; i++) poison(ctx, y[i], (size_t)m * n[i] * 4);
      cr_assert_eq(ptxq_kernel_launch(ctx, key, multi ? three : gated), PTXQ_OK, "%s", ptxq_last_error(ctx));
      for (int i = 0; i < outputs; i++)
        cr_assert_eq(ptxq_download(ctx, out[bulk][i], y[i], (size_t)m * n[i] * 4), PTXQ_OK);
    }
    for (int i = 0; i < outputs; i++) {
      const size_t count = (size_t)m * n[i], at = first_bit_difference(out[0][i], out[1][i], count);
      cr_assert(at == count, "seed %llu: %s, output %d: [%zu] = %.9g with preload=4, %.9g without",
                (unsigned long long)seed, multi ? "three weights" : "gated", i, at, (double)out[1][i][at],
                (double)out[0][i][at]);
    }
  }
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(ptxq_free(ctx, y[i]), PTXQ_OK);
    free(out[0][i]);
    free(out[1][i]);
  }
  cr_assert_eq(ptxq_free(ctx, px), PTXQ_OK);
  free(x);
  ptxq_close(ctx);
}

/* ptxq_gemv_multi gives, for each weight, the bits ptxq_gemv gives: two and
 * three weights, both types, odd n (groups straddle the weights), m 1..16.
 * In a tensor-core context Q4_K and Q6_K weights run on the tensor-core kernel over
 * several weights, each by blocks of its own, from its tiles (the last one
 * part padding at these n). */
static void multi_matches_single(ptxq_ctx *ctx) {
  uint64_t seed = fresh_seed();
  rng r = {seed};
  static const struct { int q6k; uint32_t k, count, m, n[3]; } cases[] = {
      {0, 4096, 3, 1, {1001, 77, 333}}, {0, 2304, 2, 8, {129, 1024, 0}}, {1, 2048, 3, 3, {999, 5, 64}},
      {1, 14336, 2, 1, {37, 90, 0}},    {0, 256, 3, 5, {7, 1, 17}},      {0, 4096, 3, 16, {1001, 77, 333}},
      {1, 2304, 3, 12, {999, 5, 64}},   {1, 4096, 2, 16, {129, 1024, 0}}};
  static const char *const names[3] = {"wa", "wb", "wc"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const uint32_t k = cases[c].k, m = cases[c].m, count = cases[c].count;
    float *x = random_floats(&r, (size_t)m * k);
    ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), ys[3] = {0}, single = 0;
    upload(ctx, dx, x, (size_t)m * k * 4);
    uint32_t most = 0;
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t n = cases[c].n[i];
      size_t w_bytes;
      uint8_t *w = cases[c].q6k ? random_q6k(&r, k, n, &w_bytes) : random_q4k(&r, k, n, &w_bytes);
      upload_weight(ctx, names[i], cases[c].q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
      free(w);
      ys[i] = device_alloc(ctx, (size_t)m * n * 4);
      poison(ctx, ys[i], (size_t)m * n * 4);
      most = n > most ? n : most;
    }
    single = device_alloc(ctx, (size_t)m * most * 4);
    cr_assert_eq(ptxq_gemv_multi(ctx, names, count, dx, ys, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    float *want = checked_malloc((size_t)m * most * 4), *got = checked_malloc((size_t)m * most * 4);
    for (uint32_t i = 0; i < count; i++) {
      const uint32_t n = cases[c].n[i];
      cr_assert_eq(ptxq_gemv(ctx, names[i], dx, single, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
      cr_assert_eq(ptxq_download(ctx, want, single, (size_t)m * n * 4), PTXQ_OK);
      cr_assert_eq(ptxq_download(ctx, got, ys[i], (size_t)m * n * 4), PTXQ_OK);
      size_t j = first_bit_difference(want, got, (size_t)m * n);
      cr_assert(j == (size_t)m * n, "seed %llu, case %zu: weight %u y[%zu][%zu] = %.9g, ptxq_gemv gives %.9g",
                (unsigned long long)seed, c, i, j / n, j % n, (double)got[j], (double)want[j]);
      cr_assert_eq(ptxq_free(ctx, ys[i]), PTXQ_OK);
    }
    cr_assert_eq(ptxq_free(ctx, single), PTXQ_OK);
    cr_assert_eq(ptxq_free(ctx, dx), PTXQ_OK);
    free(x);
    free(want);
    free(got);
  }
  ptxq_close(ctx);
}

Test(gpu, gemv_multi_matches_single_products) { multi_matches_single(open_or_skip(NULL)); }

Test(gpu, gemv_multi_matches_single_products_with_tensor_cores) {
  multi_matches_single(open_tensor_cores_or_skip());
}

/* The tensor-core kernel's split blocks (ptxgen/gemv_tc.c) leave each
 * split's sums in their module and count the splits done per row group;
 * the last block adds them, and the count wraps to 0 for the next launch.
 * Launched back to back on the stream, and 16 times in one graph (whose
 * kernels may start early: programmatic launch), every launch must give
 * the bits of the first. Shapes: 4096 x 4096 at m = 8 and 14336 x 4096 at
 * m = 1 (8 splits, split blocks), and at m = 16 (more tasks than one wave
 * of blocks: blocks take several). */
Test(gpu, split_block_sums_hold_over_repeated_launches) {
  ptxq_ctx *ctx = open_tensor_cores_or_skip();
  uint64_t seed = fresh_seed();
  rng r = {seed};
  enum { LAUNCHES = 16 };
  static const struct { uint32_t k, n, m; } shapes[] = {{4096, 4096, 8}, {14336, 4096, 1}, {14336, 4096, 16}};
  for (size_t c = 0; c < sizeof shapes / sizeof shapes[0]; c++) {
    product p;
    product_init(ctx, &r, &p, 0, shapes[c].k, shapes[c].n, shapes[c].m);
    const size_t count = (size_t)p.m * p.n, bytes = count * 4;
    float *want = checked_malloc(bytes), *got = checked_malloc(bytes);
    product_gemv(ctx, &p, want);
    for (int i = 0; i < LAUNCHES; i++)
      cr_assert_eq(ptxq_gemv(ctx, "w", p.dx, p.dy, p.m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    download(ctx, got, p.dy, bytes);
    size_t j = first_bit_difference(want, got, count);
    cr_assert(j == count, "seed %llu k=%u n=%u m=%u: after %d launches y[%zu] = %.9g, the first gave %.9g",
              (unsigned long long)seed, p.k, p.n, p.m, LAUNCHES, j, (double)got[j], (double)want[j]);
    ptxq_dev ys[LAUNCHES];
    for (int i = 0; i < LAUNCHES; i++) {
      ys[i] = device_alloc(ctx, bytes);
      poison(ctx, ys[i], bytes);
    }
    ptxq_graph *graph = NULL;
    cr_assert_eq(ptxq_capture_begin(ctx), PTXQ_OK, "%s", ptxq_last_error(ctx));
    for (int i = 0; i < LAUNCHES; i++)
      cr_assert_eq(ptxq_gemv(ctx, "w", p.dx, ys[i], p.m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    cr_assert_eq(ptxq_capture_end(ctx, &graph), PTXQ_OK, "%s", ptxq_last_error(ctx));
    for (int replay = 0; replay < 2; replay++) {
      cr_assert_eq(ptxq_graph_launch(ctx, graph), PTXQ_OK, "%s", ptxq_last_error(ctx));
      for (int i = 0; i < LAUNCHES; i++) {
        download(ctx, got, ys[i], bytes);
        j = first_bit_difference(want, got, count);
        cr_assert(j == count, "seed %llu k=%u n=%u m=%u: graph replay %d, product %d: y[%zu] = %.9g, not %.9g",
                  (unsigned long long)seed, p.k, p.n, p.m, replay, i, j, (double)got[j], (double)want[j]);
        poison(ctx, ys[i], bytes);
      }
    }
    ptxq_graph_destroy(ctx, graph);
    for (int i = 0; i < LAUNCHES; i++) cr_assert_eq(ptxq_free(ctx, ys[i]), PTXQ_OK);
    product_free(ctx, &p);
    free(want);
    free(got);
  }
  ptxq_close(ctx);
}

/* A large batch of a large multi-weight product runs as launches of 8 rows
 * and one of the rest, as ptxq_gemv does: every output keeps the bits of
 * the one kernel for all m rows (launched by key), and the fp64 reference
 * holds. Q4_K: 10239 x 4096 weights at m = 16 and 13 (8 + 5), and a layer's
 * q, k, v (6144 x 4096) at m = 16; Q6_K: 6144 x 4096 at m = 12 (8 + 4). */
Test(gpu, gemv_multi_large_batches_in_launches_of_8_give_the_one_kernel_bits) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(ctx, &dev), PTXQ_OK);
  static const struct { int q6k; uint32_t k, m, n[3]; } cases[] = {
      {0, 4096, 16, {8192, 1024, 1023}}, {0, 4096, 13, {8192, 1024, 1023}}, {0, 4096, 16, {4096, 1024, 1024}},
      {1, 4096, 12, {4096, 1024, 1024}}};
  static const char *const names[3] = {"wa", "wb", "wc"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const uint32_t k = cases[c].k, m = cases[c].m, *n = cases[c].n;
    const ptxq_type type = cases[c].q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K;
    char key[160];
    snprintf(key, sizeof key, "%s:k=%u,n=%u,m=%u,sm=%u,n2=%u,n3=%u", cases[c].q6k ? "q6k_gemv" : "q4k_gemv", k, n[0],
             m, dev.target_sm, n[1], n[2]);
    ptxgen_spec spec;
    cr_assert_eq(ptxgen_spec_parse(key, &spec, NULL, 0), 0, "%s", key);
    const uint32_t rows = ptxgen_gemv_batch_rows(&spec);
    if (dev.target_sm == 90) /* where the rule was measured: these shapes split */
      cr_assert_eq(rows, 8, "%s: %u rows per launch, want 8", key, rows);
    float *x = random_floats(&r, (size_t)m * k);
    ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), ys[3], one[3], wd[3];
    upload(ctx, dx, x, (size_t)m * k * 4);
    uint8_t *w[3];
    for (int i = 0; i < 3; i++) {
      size_t w_bytes;
      w[i] = cases[c].q6k ? random_q6k(&r, k, n[i], &w_bytes) : random_q4k(&r, k, n[i], &w_bytes);
      upload_weight(ctx, names[i], type, w[i], k, n[i], w_bytes);
      ptxq_weight_info info;
      cr_assert_eq(ptxq_weight_info_get(ctx, names[i], &info), PTXQ_OK);
      wd[i] = info.data;
      ys[i] = device_alloc(ctx, (size_t)m * n[i] * 4);
      one[i] = device_alloc(ctx, (size_t)m * n[i] * 4);
      poison(ctx, ys[i], (size_t)m * n[i] * 4);
      poison(ctx, one[i], (size_t)m * n[i] * 4);
    }
    cr_assert_eq(ptxq_gemv_multi(ctx, names, 3, dx, ys, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    void *params[] = {&wd[0], &wd[1], &wd[2], &dx, &one[0], &one[1], &one[2]};
    cr_assert_eq(ptxq_kernel_launch(ctx, key, params), PTXQ_OK, "%s", ptxq_last_error(ctx));
    for (int i = 0; i < 3; i++) {
      float *got = checked_malloc((size_t)m * n[i] * 4), *want = checked_malloc((size_t)m * n[i] * 4);
      double *ref = checked_malloc((size_t)m * n[i] * sizeof *ref);
      cr_assert_eq(ptxq_download(ctx, got, ys[i], (size_t)m * n[i] * 4), PTXQ_OK);
      cr_assert_eq(ptxq_download(ctx, want, one[i], (size_t)m * n[i] * 4), PTXQ_OK);
      size_t j = first_bit_difference(want, got, (size_t)m * n[i]);
      cr_assert(j == (size_t)m * n[i],
                "seed %llu: %s in launches of %u rows: weight %d y[%zu][%zu] = %.9g, the one kernel gives %.9g",
                (unsigned long long)seed, key, rows, i, j / n[i], j % n[i], (double)got[j], (double)want[j]);
      cr_assert_eq(ptxq_ref_gemv(type, w[i], k, n[i], x, m, ref), PTXQ_OK);
      const double err = relative_error(got, ref, (size_t)m * n[i]);
      cr_assert(err <= TOLERANCE, "seed %llu: %s weight %d: max_rel_err %.3g > %.0e", (unsigned long long)seed, key,
                i, err, TOLERANCE);
      cr_assert_eq(ptxq_free(ctx, ys[i]), PTXQ_OK);
      cr_assert_eq(ptxq_free(ctx, one[i]), PTXQ_OK);
      free(got);
      free(want);
      free(ref);
      free(w[i]);
    }
    cr_assert_eq(ptxq_free(ctx, dx), PTXQ_OK);
    free(x);
  }
  ptxq_close(ctx);
}

Test(gpu, gemv_multi_rejects_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  size_t bytes;
  uint8_t *a = random_q4k(&r, 512, 8, &bytes);
  upload_weight(ctx, "a", PTXQ_TYPE_Q4_K, a, 512, 8, bytes);
  uint8_t *b = random_q4k(&r, 256, 8, &bytes);
  upload_weight(ctx, "b", PTXQ_TYPE_Q4_K, b, 256, 8, bytes);
  uint8_t *c = random_q6k(&r, 512, 8, &bytes);
  upload_weight(ctx, "c", PTXQ_TYPE_Q6_K, c, 512, 8, bytes);
  ptxq_dev x = device_alloc(ctx, 4096), y = device_alloc(ctx, 4096);
  const ptxq_dev ys[3] = {y, y, y};
  const char *const ab[2] = {"a", "b"}, *const ac[2] = {"a", "c"}, *const a_missing[2] = {"a", "nope"};
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 2, x, ys, 1), PTXQ_ERR_INVALID, "k=256");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ac, 2, x, ys, 1), PTXQ_ERR_INVALID, "Q6_K");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, a_missing, 2, x, ys, 1), PTXQ_ERR_NOT_FOUND, "nope");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 0, x, ys, 1), PTXQ_ERR_INVALID, "count=0");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 4, x, ys, 1), PTXQ_ERR_INVALID, "count=4");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 2, x, NULL, 1), PTXQ_ERR_INVALID, "ys");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 2, x + 4, ys, 1), PTXQ_ERR_INVALID, "aligned");
  EXPECT_FAIL(ctx, ptxq_gemv_multi(ctx, ab, 2, x, ys, 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_gemv_multi_prepare(ctx, ac, 2, 1), PTXQ_ERR_INVALID, "Q6_K");
  free(a);
  free(b);
  free(c);
  ptxq_close(ctx);
}

/* RoPE in the q/k/v kernel gives the bits of ptxq_gemv_multi followed by
 * ptxq_rope: both modes, partial rotation, freq_factors, YaRN, with and
 * without v, both weight types, odd batch sizes, up to m = 16 (past
 * PTXQ__EPILOGUE_MAX_M = 4 the call runs the rope kernel after the
 * products; in a tensor-core context, Q4_K and Q6_K take it in the
 * tensor-core kernel for neox over whole heads of 32k rows up to m = 4,
 * else apart). */
static void multi_rope_matches_multi_then_rope(ptxq_ctx *ctx) {
  uint64_t seed = fresh_seed();
  rng r = {seed};
  static const struct {
    int q6k;
    uint32_t k, count, m, head_dim, n_dims, heads, kv_heads, v_rows;
    ptxq_rope_mode mode;
    int yarn, factors;
  } cases[] = {
      {0, 4096, 3, 1, 128, 128, 32, 8, 1024, PTXQ_ROPE_NEOX, 0, 0}, /* Llama-3-8B */
      {0, 2304, 2, 8, 64, 32, 6, 3, 0, PTXQ_ROPE_NORMAL, 1, 1},
      {1, 2048, 3, 3, 64, 64, 4, 2, 77, PTXQ_ROPE_NEOX, 0, 1},
      {1, 256, 2, 5, 32, 16, 2, 1, 0, PTXQ_ROPE_NEOX, 1, 0},
      {0, 512, 3, 2, 16, 16, 4, 4, 5, PTXQ_ROPE_NORMAL, 0, 0},
      {1, 4096, 3, 7, 128, 96, 8, 2, 256, PTXQ_ROPE_NEOX, 0, 0},
      {0, 4096, 3, 16, 128, 128, 32, 8, 1024, PTXQ_ROPE_NEOX, 0, 0}, /* Llama-3-8B, largest batch */
      {1, 2304, 2, 12, 64, 32, 6, 3, 0, PTXQ_ROPE_NORMAL, 1, 1},
      /* neox over whole heads of 32k rows: in the tensor-core kernel up to m = 4 */
      {0, 2304, 3, 3, 64, 64, 6, 2, 77, PTXQ_ROPE_NEOX, 1, 1},
      {0, 256, 2, 4, 32, 32, 3, 1, 0, PTXQ_ROPE_NEOX, 0, 1},
      {0, 4096, 3, 2, 128, 128, 32, 8, 1024, PTXQ_ROPE_NEOX, 1, 0},
      {1, 4096, 3, 4, 128, 128, 8, 2, 255, PTXQ_ROPE_NEOX, 1, 1}};
  static const char *const names[3] = {"q", "k", "v"};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    const uint32_t k = cases[c].k, m = cases[c].m, count = cases[c].count, hd = cases[c].head_dim;
    const uint32_t rows[3] = {cases[c].heads * hd, cases[c].kv_heads * hd, cases[c].v_rows};
    ptxq_rope_params p;
    ptxq_rope_params_init(&p, cases[c].mode, hd, cases[c].heads, cases[c].kv_heads);
    p.n_dims = cases[c].n_dims;
    p.base = 500000.0f;
    if (cases[c].yarn) p.ext_factor = 1.0f, p.freq_scale = 0.25f, p.n_ctx_orig = 4096;
    ptxq_dev ff = 0;
    if (cases[c].factors) {
      float factors[256];
      for (uint32_t i = 0; i < p.n_dims / 2; i++) factors[i] = rng_uniform(&r, 1.0f, 8.0f);
      ff = device_alloc(ctx, sizeof factors);
      upload(ctx, ff, factors, sizeof factors);
      p.freq_factors = ff;
    }
    int32_t positions[PTXGEN_ROPE_MAX_M] = {0};
    for (uint32_t t = 0; t < m; t++) positions[t] = (int32_t)(rng_next(&r) % 300000) - 1000;
    ptxq_dev dpos = device_alloc(ctx, sizeof positions);
    upload(ctx, dpos, positions, sizeof positions);
    float *x = random_floats(&r, (size_t)m * k);
    ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), fused[3] = {0}, apart[3] = {0};
    upload(ctx, dx, x, (size_t)m * k * 4);
    for (uint32_t i = 0; i < count; i++) {
      size_t w_bytes;
      uint8_t *w = cases[c].q6k ? random_q6k(&r, k, rows[i], &w_bytes) : random_q4k(&r, k, rows[i], &w_bytes);
      upload_weight(ctx, names[i], cases[c].q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K, w, k, rows[i], w_bytes);
      free(w);
      fused[i] = device_alloc(ctx, (size_t)m * rows[i] * 4);
      apart[i] = device_alloc(ctx, (size_t)m * rows[i] * 4);
      poison(ctx, fused[i], (size_t)m * rows[i] * 4);
    }
    cr_assert_eq(ptxq_gemv_multi_rope(ctx, names, count, dx, fused, m, dpos, &p), PTXQ_OK, "%s",
                 ptxq_last_error(ctx));
    cr_assert_eq(ptxq_gemv_multi(ctx, names, count, dx, apart, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
    cr_assert_eq(ptxq_rope(ctx, apart[0], apart[1], dpos, m, &p), PTXQ_OK, "%s", ptxq_last_error(ctx));
    for (uint32_t i = 0; i < count; i++) {
      const size_t n = (size_t)m * rows[i];
      float *want = checked_malloc(n * 4), *got = checked_malloc(n * 4);
      download(ctx, want, apart[i], n * 4);
      download(ctx, got, fused[i], n * 4);
      size_t j = first_bit_difference(want, got, n);
      cr_assert(j == n, "seed %llu, case %zu: %s[%zu][%zu] = %.9g, gemv_multi then rope give %.9g",
                (unsigned long long)seed, c, names[i], j / rows[i], j % rows[i], (double)got[j], (double)want[j]);
      free(want);
      free(got);
      cr_assert_eq(ptxq_free(ctx, fused[i]), PTXQ_OK);
      cr_assert_eq(ptxq_free(ctx, apart[i]), PTXQ_OK);
    }
    cr_assert_eq(ptxq_free(ctx, dx), PTXQ_OK);
    cr_assert_eq(ptxq_free(ctx, dpos), PTXQ_OK);
    if (ff) cr_assert_eq(ptxq_free(ctx, ff), PTXQ_OK);
    free(x);
  }
  ptxq_close(ctx);
}

Test(gpu, gemv_multi_rope_matches_multi_then_rope) { multi_rope_matches_multi_then_rope(open_or_skip(NULL)); }

Test(gpu, gemv_multi_rope_matches_multi_then_rope_with_tensor_cores) {
  multi_rope_matches_multi_then_rope(open_tensor_cores_or_skip());
}

Test(gpu, gemv_multi_rope_rejects_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  size_t bytes;
  uint8_t *q = random_q4k(&r, 512, 128, &bytes);
  upload_weight(ctx, "q", PTXQ_TYPE_Q4_K, q, 512, 128, bytes);
  uint8_t *k = random_q4k(&r, 512, 64, &bytes);
  upload_weight(ctx, "k", PTXQ_TYPE_Q4_K, k, 512, 64, bytes);
  ptxq_dev x = device_alloc(ctx, 4096), y = device_alloc(ctx, 4096), pos = device_alloc(ctx, 64);
  const ptxq_dev ys[3] = {y, y, y};
  const char *const qk[2] = {"q", "k"};
  ptxq_rope_params p, bad;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, 32, 4, 2);
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos, NULL), PTXQ_ERR_INVALID, "params is NULL");
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 1, x, ys, 1, pos, &p), PTXQ_ERR_INVALID, "count=1");
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, 0, &p), PTXQ_ERR_INVALID, "positions");
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos + 2, &p), PTXQ_ERR_INVALID, "positions");
  bad = p;
  bad.heads = 8;
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos, &bad), PTXQ_ERR_INVALID, "heads=8");
  bad = p;
  bad.n_dims = 48;
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos, &bad), PTXQ_ERR_INVALID, "n_dims=48");
  bad = p;
  bad.mode = (ptxq_rope_mode)1;
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos, &bad), PTXQ_ERR_INVALID, "mode=1");
  bad = p;
  bad.freq_factors = pos + 2;
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope(ctx, qk, 2, x, ys, 1, pos, &bad), PTXQ_ERR_INVALID, "freq_factors");
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope_prepare(ctx, qk, 2, 17, &p), PTXQ_ERR_INVALID, "m=17");
  /* past the epilogue's limit the rope kernel runs apart: valid up to 16 */
  EXPECT_OK(ctx, ptxq_gemv_multi_rope_prepare(ctx, qk, 2, 16, &p));
  EXPECT_FAIL(ctx, ptxq_gemv_multi_rope_prepare(ctx, qk, 2, 1, NULL), PTXQ_ERR_INVALID, "params is NULL");
  EXPECT_OK(ctx, ptxq_gemv_multi_rope_prepare(ctx, qk, 2, 1, &p));
  free(q);
  free(k);
  ptxq_close(ctx);
}

/* An older target than the device's own runs and is right too. */
Test(gpu, older_target_runs) {
  ptxq_ctx *probe = open_or_skip(NULL);
  ptxq_device_info dev;
  cr_assert_eq(ptxq_device_info_get(probe, &dev), PTXQ_OK);
  ptxq_close(probe);

  ptxq_options opt = {.device = 0, .target_sm = 75};
  ptxq_ctx *ctx = open_or_skip(&opt);
  ptxq_device_info info;
  cr_assert_eq(ptxq_device_info_get(ctx, &info), PTXQ_OK);
  cr_assert_eq(info.target_sm, 75);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 4096, n = 777, m = 3;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)m * k), *y = checked_malloc((size_t)m * n * 4);
  double *ref = checked_malloc((size_t)m * n * sizeof *ref);
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w, k, n, x, m, ref), PTXQ_OK);
  cr_assert_eq(ptxq_gemv_host(ctx, "w", x, y, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  double err = relative_error(y, ref, (size_t)m * n);
  cr_assert(err <= TOLERANCE, "seed %llu sm_75 on sm_%u: relative error %.3g",
            (unsigned long long)seed, dev.sm, err);
  free(x);
  free(y);
  free(ref);
  free(w);
  ptxq_close(ctx);
}

/* ---- weights and gemv errors ------------------------------------------------- */

Test(gpu, gemv_rejects_bad_arguments) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, 512, 3, &w_bytes);
  upload_weight(ctx, "blk.0.ffn_up.weight", PTXQ_TYPE_Q4_K, w, 512, 3, w_bytes);
  ptxq_dev dx = device_alloc(ctx, 17 * 512 * 4), dy = device_alloc(ctx, 17 * 3 * 4);
  float hx[512], hy[3];

  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_down.weight", dx, dy, 1), PTXQ_ERR_NOT_FOUND,
              "blk.0.ffn_down.weight");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx, dy, 0), PTXQ_ERR_INVALID, "m=0");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx, dy, 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx, dy, 17), PTXQ_ERR_INVALID, "outside 1..16");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", 0, dy, 1), PTXQ_ERR_INVALID, "x is");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx, 0, 1), PTXQ_ERR_INVALID, "y is");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx + 4, dy, 1), PTXQ_ERR_INVALID,
              "16-byte aligned");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "blk.0.ffn_up.weight", dx, dy + 2, 1), PTXQ_ERR_INVALID,
              "4-byte aligned");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, NULL, dx, dy, 1), PTXQ_ERR_INVALID, "NULL");
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "", dx, dy, 1), PTXQ_ERR_INVALID, "empty");
  EXPECT_FAIL(ctx, ptxq_gemv_prepare(ctx, "blk.0.ffn_up.weight", 17), PTXQ_ERR_INVALID, "m=17");
  EXPECT_FAIL(ctx, ptxq_gemv_prepare(ctx, "nope", 1), PTXQ_ERR_NOT_FOUND, "nope");
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "blk.0.ffn_up.weight", NULL, hy, 1), PTXQ_ERR_INVALID,
              "x is NULL");
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "blk.0.ffn_up.weight", hx, NULL, 1), PTXQ_ERR_INVALID,
              "y is NULL");
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "blk.0.ffn_up.weight", hx, hy, 17), PTXQ_ERR_INVALID, "m=17");

  /* An F32 weight uploads fine but is not a GEMV operand. */
  float *f32 = random_floats(&r, 64 * 5);
  cr_assert_eq(ptxq_weight_upload(ctx, "norm", PTXQ_TYPE_F32, 64, 5, f32, 64 * 5 * 4), PTXQ_OK,
               "%s", ptxq_last_error(ctx));
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "norm", dx, dy, 1), PTXQ_ERR_UNSUPPORTED, "F32");
  free(f32);
  free(w);
  ptxq_close(ctx);
}

Test(gpu, weight_upload_rejects_bad_input) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  rng r = {fresh_seed()};
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, 512, 3, &w_bytes);
  cr_assert_eq(w_bytes, 864);

  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "x", PTXQ_TYPE_Q4_K, 512, 3, w, 1000), PTXQ_ERR_INVALID,
              "1000 bytes given, Q4_K k=512 n=3 needs 864");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "x", PTXQ_TYPE_Q4_K, 4000, 3, w, w_bytes),
              PTXQ_ERR_INVALID, "k=4000");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "x", PTXQ_TYPE_Q4_K, 512, 0, w, w_bytes),
              PTXQ_ERR_INVALID, "n=0");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "x", (ptxq_type)3, 512, 3, w, w_bytes), PTXQ_ERR_INVALID,
              "type 3");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "x", PTXQ_TYPE_Q4_K, 512, 3, NULL, w_bytes),
              PTXQ_ERR_INVALID, "data is NULL");
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, "", PTXQ_TYPE_Q4_K, 512, 3, w, w_bytes),
              PTXQ_ERR_INVALID, "empty");
  char long_name[200];
  memset(long_name, 'a', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = '\0';
  EXPECT_FAIL(ctx, ptxq_weight_upload(ctx, long_name, PTXQ_TYPE_Q4_K, 512, 3, w, w_bytes),
              PTXQ_ERR_INVALID, "127");
  long_name[127] = '\0'; /* exactly the limit is fine */
  cr_assert_eq(ptxq_weight_upload(ctx, long_name, PTXQ_TYPE_Q4_K, 512, 3, w, w_bytes), PTXQ_OK,
               "%s", ptxq_last_error(ctx));
  /* Nothing was stored by the failures. */
  ptxq_weight_info info;
  EXPECT_FAIL(ctx, ptxq_weight_info_get(ctx, "x", &info), PTXQ_ERR_NOT_FOUND, "'x'");
  free(w);
  ptxq_close(ctx);
}

/* Replacing a weight with another shape must drop the kernels cached for the
 * old one: the product after the replacement is the new matrix's. */
Test(gpu, weight_replace_and_free) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 512, m = 2;
  size_t a_bytes, b_bytes;
  uint8_t *a = random_q4k(&r, k, 3, &a_bytes), *b = random_q4k(&r, k, 777, &b_bytes);
  float *x = random_floats(&r, (size_t)m * k), *y = checked_malloc((size_t)m * 777 * 4);
  double *ref = checked_malloc((size_t)m * 777 * sizeof *ref);

  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, a, k, 3, a_bytes);
  cr_assert_eq(ptxq_gemv_host(ctx, "w", x, y, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, a, k, 3, x, m, ref), PTXQ_OK);
  cr_assert_leq(relative_error(y, ref, (size_t)m * 3), TOLERANCE, "seed %llu",
                (unsigned long long)seed);

  upload_weight(ctx, "w", PTXQ_TYPE_Q4_K, b, k, 777, b_bytes);
  ptxq_weight_info info;
  cr_assert_eq(ptxq_weight_info_get(ctx, "w", &info), PTXQ_OK);
  cr_assert_eq(info.n, 777);
  cr_assert_eq(info.k, k);
  cr_assert_eq(info.type, PTXQ_TYPE_Q4_K);
  cr_assert_eq(info.bytes, b_bytes);
  cr_assert_neq(info.data, 0);
  memset(y, 0xFF, (size_t)m * 777 * 4);
  cr_assert_eq(ptxq_gemv_host(ctx, "w", x, y, m), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_ref_gemv(PTXQ_TYPE_Q4_K, b, k, 777, x, m, ref), PTXQ_OK);
  double err = relative_error(y, ref, (size_t)m * 777);
  cr_assert(err <= TOLERANCE, "seed %llu: after replacement, relative error %.3g",
            (unsigned long long)seed, err);

  cr_assert_eq(ptxq_weight_free(ctx, "w"), PTXQ_OK, "%s", ptxq_last_error(ctx));
  EXPECT_FAIL(ctx, ptxq_gemv_host(ctx, "w", x, y, m), PTXQ_ERR_NOT_FOUND, "no weight named 'w'");
  ptxq_dev dx = device_alloc(ctx, (size_t)m * k * 4), dy = device_alloc(ctx, (size_t)m * 777 * 4);
  EXPECT_FAIL(ctx, ptxq_gemv(ctx, "w", dx, dy, m), PTXQ_ERR_NOT_FOUND, "'w'");
  EXPECT_FAIL(ctx, ptxq_weight_free(ctx, "w"), PTXQ_ERR_NOT_FOUND, "'w'");
  EXPECT_FAIL(ctx, ptxq_weight_info_get(ctx, "w", &info), PTXQ_ERR_NOT_FOUND, "'w'");

  /* Many weights: the table grows and every one stays reachable. */
  char name[32];
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "blk.%d.attn_q.weight", i);
    upload_weight(ctx, name, PTXQ_TYPE_Q4_K, a, k, 3, a_bytes);
  }
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "blk.%d.attn_q.weight", i);
    cr_assert_eq(ptxq_weight_info_get(ctx, name, &info), PTXQ_OK, "%s", name);
    if (i % 2 == 0) cr_assert_eq(ptxq_weight_free(ctx, name), PTXQ_OK, "%s", name);
  }
  for (int i = 0; i < 300; i++) {
    snprintf(name, sizeof name, "blk.%d.attn_q.weight", i);
    int want = i % 2 == 0 ? PTXQ_ERR_NOT_FOUND : PTXQ_OK;
    cr_assert_eq(ptxq_weight_info_get(ctx, name, &info), want, "%s", name);
  }
  free(a);
  free(b);
  free(x);
  free(y);
  free(ref);
  ptxq_close(ctx); /* frees the 150 weights left */
}

/* The detail belongs to the context and thread that failed. */
Test(gpu, detail_is_per_context) {
  ptxq_ctx *one = open_or_skip(NULL), *two = open_or_skip(NULL);
  ptxq_dev dy = 0;
  EXPECT_FAIL(one, ptxq_gemv(one, "missing", 0x1000, 0x2000, 1), PTXQ_ERR_NOT_FOUND, "missing");
  cr_assert_str_eq(ptxq_last_error(two), "", "context two saw context one's failure");
  cr_assert_eq(ptxq_alloc(two, 16, &dy), PTXQ_OK);
  cr_assert(strstr(ptxq_last_error(one), "missing") != NULL, "a success elsewhere cleared it");
  ptxq_close(one);
  ptxq_close(two);
}

/* ---- several threads on one context ------------------------------------------ */

typedef struct worker {
  ptxq_ctx *ctx;
  uint32_t k, n, first_m;
  const float *x;        /* MAX_M rows */
  const float *expected; /* MAX_M rows, the single-threaded result */
  int failures;
  char message[256];
} worker;

static void *run_worker(void *arg) {
  worker *wk = arg;
  float *y = malloc((size_t)MAX_M * wk->n * sizeof *y);
  if (y == NULL) {
    wk->failures++;
    return NULL;
  }
  for (int iteration = 0; iteration < 24; iteration++) {
    uint32_t m = (wk->first_m + (uint32_t)iteration) % MAX_M + 1;
    int status = ptxq_gemv_host(wk->ctx, "shared", wk->x, y, m);
    if (status != PTXQ_OK) {
      snprintf(wk->message, sizeof wk->message, "m=%u: %s", m, ptxq_last_error(wk->ctx));
      wk->failures++;
      break;
    }
    if (memcmp(y, wk->expected, (size_t)m * wk->n * sizeof *y) != 0) {
      snprintf(wk->message, sizeof wk->message, "m=%u: result differs from the single-thread one",
               m);
      wk->failures++;
      break;
    }
  }
  free(y);
  return NULL;
}

Test(gpu, threads_share_a_context) {
  ptxq_ctx *ctx = open_or_skip(NULL);
  uint64_t seed = fresh_seed();
  rng r = {seed};
  const uint32_t k = 4096, n = 777;
  size_t w_bytes;
  uint8_t *w = random_q4k(&r, k, n, &w_bytes);
  upload_weight(ctx, "shared", PTXQ_TYPE_Q4_K, w, k, n, w_bytes);
  float *x = random_floats(&r, (size_t)MAX_M * k);
  /* Rows are independent of m (batch invariance), so the m=MAX_M product
   * holds the expected result of every m. Kernels are built by the threads,
   * racing. */
  float *expected = checked_malloc((size_t)MAX_M * n * sizeof *expected);
  ptxq_dev dx = device_alloc(ctx, (size_t)MAX_M * k * 4),
           dy = device_alloc(ctx, (size_t)MAX_M * n * 4);
  cr_assert_eq(ptxq_upload(ctx, dx, x, (size_t)MAX_M * k * 4), PTXQ_OK);
  cr_assert_eq(ptxq_gemv(ctx, "shared", dx, dy, MAX_M), PTXQ_OK, "%s", ptxq_last_error(ctx));
  cr_assert_eq(ptxq_download(ctx, expected, dy, (size_t)MAX_M * n * 4), PTXQ_OK);

  enum { THREADS = 6 };
  worker workers[THREADS];
  pthread_t threads[THREADS];
  for (int i = 0; i < THREADS; i++) {
    workers[i] =
        (worker){.ctx = ctx, .k = k, .n = n, .first_m = (uint32_t)i, .x = x, .expected = expected};
    cr_assert_eq(pthread_create(&threads[i], NULL, run_worker, &workers[i]), 0);
  }
  for (int i = 0; i < THREADS; i++) cr_assert_eq(pthread_join(threads[i], NULL), 0);
  for (int i = 0; i < THREADS; i++)
    cr_assert_eq(workers[i].failures, 0, "seed %llu thread %d: %s", (unsigned long long)seed, i,
                 workers[i].message);
  free(expected);
  free(x);
  free(w);
  ptxq_close(ctx);
}
