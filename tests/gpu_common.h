/*
 * gpu_common.h: the scaffolding shared by the "gpu" suites (test_gpu.c,
 * test_gpu_ops.c, test_gpu_model.c): opening a context or skipping without
 * a GPU, the per-test seed, random inputs and Q4_K weights, device buffers
 * that fail the test on error, NaN poison, and the error-assert macros.
 *
 * Header-only (static inline) so that each test binary stays one source
 * file; every helper asserts rather than returning a status.
 */
#ifndef PTXQ_TESTS_GPU_COMMON_H
#define PTXQ_TESTS_GPU_COMMON_H

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ptxq.h"
#include "rng.h"

/* What poison() leaves in every float: a NaN the kernels never produce
 * (theirs is 0x7FFFFFFF), so any other value was written by a kernel. */
#define POISON_BITS 0xFFFFFFFFu

/* Opens a context (device 0 unless opt says otherwise), or skips the test
 * when there is no GPU. */
static inline ptxq_ctx *open_or_skip(const ptxq_options *opt) {
  ptxq_ctx *ctx = NULL;
  int status = ptxq_open(&ctx, opt);
  if (status == PTXQ_ERR_NO_DEVICE) cr_skip_test("no GPU: %s", ptxq_last_error(NULL));
  cr_assert_eq(status, PTXQ_OK, "ptxq_open: %s: %s", ptxq_strerror(status), ptxq_last_error(NULL));
  return ctx;
}

/* A context whose Q4_K products run on the tensor cores
 * (ptxq_options.tensor_cores), or a skip where there is no GPU or the
 * device is older than sm_80. */
static inline ptxq_ctx *open_tensor_cores_or_skip(void) {
  ptxq_ctx *ctx = NULL;
  const ptxq_options opt = {.tensor_cores = 1};
  int status = ptxq_open(&ctx, &opt);
  if (status == PTXQ_ERR_NO_DEVICE) cr_skip_test("no GPU: %s", ptxq_last_error(NULL));
  if (status == PTXQ_ERR_UNSUPPORTED) cr_skip_test("no tensor-core GEMV here: %s", ptxq_last_error(NULL));
  cr_assert_eq(status, PTXQ_OK, "ptxq_open: %s: %s", ptxq_strerror(status), ptxq_last_error(NULL));
  return ctx;
}

/* tests/compute-sanitizer.sh splits a long parameterized test over several
 * processes: with PTXQ_TEST_PARAM_SHARD=I/N set, only the parameters at
 * index I modulo N of the test's array run and the others skip. Unset:
 * every one runs. Criterion hands the test a copy of its parameter, so the
 * index is found by content. */
static inline void skip_unless_param_in_shard(const void *param, const void *array, size_t size,
                                              size_t count) {
  const char *shard = getenv("PTXQ_TEST_PARAM_SHARD");
  if (shard == NULL || shard[0] == '\0') return;
  unsigned i = 0, n = 0;
  char extra;
  cr_assert(sscanf(shard, "%u/%u%c", &i, &n, &extra) == 2 && i < n,
            "PTXQ_TEST_PARAM_SHARD=%s: want I/N with 0 <= I < N", shard);
  size_t index = 0;
  while (index < count && memcmp((const char *)array + index * size, param, size) != 0) index++;
  cr_assert(index < count, "the test's parameter is not in its array");
  if (index % n != i) cr_skip_test("parameter %zu is not in shard %s", index, shard);
}

/* The same for param, a pointer to a copy of an element of array (the
 * file-scope array the test's parameters come from). */
#define SKIP_UNLESS_PARAM_IN_SHARD(param, array)                                                   \
  skip_unless_param_in_shard((param), (array), sizeof((array)[0]), sizeof(array) / sizeof((array)[0]))

/* A new seed per test, printed in failures; PTXQ_TEST_SEED replays one. */
static inline uint64_t fresh_seed(void) {
  const char *forced = getenv("PTXQ_TEST_SEED");
  if (forced != NULL && forced[0] != '\0') return strtoull(forced, NULL, 0);
  struct timespec t;
  clock_gettime(CLOCK_REALTIME, &t);
  return (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 30) ^ ((uint64_t)getpid() << 12);
}

static inline void *checked_malloc(size_t bytes) {
  void *p = malloc(bytes);
  cr_assert_not_null(p, "malloc(%zu)", bytes);
  return p;
}

/* count floats uniform in [-1, 1). Caller frees. */
static inline float *random_floats(rng *r, size_t count) {
  float *x = checked_malloc(count * sizeof *x);
  for (size_t i = 0; i < count; i++) x[i] = rng_uniform(r, -1.0f, 1.0f);
  return x;
}

/* A random [n][k] Q4_K matrix quantized from floats whose scale varies per
 * row and per 32-weight stretch, so super-blocks see different d and dmin
 * and sub-blocks different scales and mins (an offset makes the mins
 * matter). Caller frees. */
static inline uint8_t *random_q4k(rng *r, uint32_t k, uint32_t n, size_t *bytes_out) {
  size_t bytes = 0;
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, n, &bytes), PTXQ_OK);
  size_t count = (size_t)k * n;
  float *values = checked_malloc(count * sizeof *values);
  for (size_t i = 0; i < count; i += 32) {
    float scale = rng_uniform(r, 0.01f, 2.0f), offset = rng_uniform(r, -0.5f, 0.5f);
    for (size_t j = i; j < i + 32; j++) values[j] = offset + scale * rng_uniform(r, -1.0f, 1.0f);
  }
  uint8_t *blocks = checked_malloc(bytes);
  int status = ptxq_ref_quantize_q4k(values, count, blocks);
  cr_assert_eq(status, PTXQ_OK, "ptxq_ref_quantize_q4k: %s", ptxq_strerror(status));
  free(values);
  *bytes_out = bytes;
  return blocks;
}

/* A random [n][k] Q6_K matrix: random bytes (every quant and signed scale
 * a valid value) with each super-block's d set to a finite f16 in
 * [1e-4, 5e-4), so weights stay within about +-2. Caller frees. */
static inline uint8_t *random_q6k(rng *r, uint32_t k, uint32_t n, size_t *bytes_out) {
  size_t bytes = 0;
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q6_K, k, n, &bytes), PTXQ_OK);
  uint8_t *blocks = checked_malloc(bytes);
  for (size_t i = 0; i < bytes; i++) blocks[i] = (uint8_t)rng_next(r);
  for (size_t b = 0; b < bytes / PTXQ_Q6_K_BLOCK_BYTES; b++) {
    uint16_t d = ptxq_f32_to_f16(rng_uniform(r, 1e-4f, 5e-4f));
    uint8_t *block = blocks + b * PTXQ_Q6_K_BLOCK_BYTES;
    block[208] = (uint8_t)(d & 0xFF); /* little-endian f16 */
    block[209] = (uint8_t)(d >> 8);
  }
  *bytes_out = bytes;
  return blocks;
}

static inline void upload_weight(ptxq_ctx *ctx, const char *name, ptxq_type type, const uint8_t *w,
                                 uint32_t k, uint32_t n, size_t bytes) {
  int status = ptxq_weight_upload(ctx, name, type, k, n, w, bytes);
  cr_assert_eq(status, PTXQ_OK, "upload %s k=%u n=%u: %s", name, k, n, ptxq_last_error(ctx));
}

static inline ptxq_dev device_alloc(ptxq_ctx *ctx, size_t bytes) {
  ptxq_dev dev = 0;
  int status = ptxq_alloc(ctx, bytes, &dev);
  cr_assert_eq(status, PTXQ_OK, "ptxq_alloc(%zu): %s", bytes, ptxq_last_error(ctx));
  return dev;
}

static inline void upload(ptxq_ctx *ctx, ptxq_dev dst, const void *src, size_t bytes) {
  int status = ptxq_upload(ctx, dst, src, bytes);
  cr_assert_eq(status, PTXQ_OK, "ptxq_upload(%zu bytes): %s", bytes, ptxq_last_error(ctx));
}

static inline void download(ptxq_ctx *ctx, void *dst, ptxq_dev src, size_t bytes) {
  int status = ptxq_download(ctx, dst, src, bytes);
  cr_assert_eq(status, PTXQ_OK, "ptxq_download(%zu bytes): %s", bytes, ptxq_last_error(ctx));
}

/* Fills a device buffer with 0xFF bytes: every float POISON_BITS. */
static inline void poison(ptxq_ctx *ctx, ptxq_dev dev, size_t bytes) {
  void *nan_bytes = checked_malloc(bytes);
  memset(nan_bytes, 0xFF, bytes);
  upload(ctx, dev, nan_bytes, bytes);
  free(nan_bytes);
}

/* max |y - ref| / max |ref| over count values; NaN/Inf in y give +inf. */
static inline double relative_error(const float *y, const double *ref, size_t count) {
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(y[i])) return INFINITY;
    max_ref = fmax(max_ref, fabs(ref[i]));
    max_diff = fmax(max_diff, fabs((double)y[i] - ref[i]));
  }
  return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

/* max |y - ref| over count values, divided by max |ref| over the first
 * scale_count >= count reference values: the outputs of one weight over all
 * the batch rows drawn, so that a product with a single output (n = 1) that
 * happens to cancel to near zero is judged on the scale of its kind, not
 * on its own tiny value. NaN/Inf in y give +inf. */
static inline double relative_error_over(const float *y, const double *ref, size_t count,
                                         size_t scale_count) {
  double max_ref = 0.0, max_diff = 0.0;
  for (size_t i = 0; i < scale_count; i++) max_ref = fmax(max_ref, fabs(ref[i]));
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(y[i])) return INFINITY;
    max_diff = fmax(max_diff, fabs((double)y[i] - ref[i]));
  }
  return max_ref > 0.0 ? max_diff / max_ref : max_diff;
}

/* Asserts a failed call's status and that the detail names `needle`. */
#define EXPECT_FAIL(ctx, call, want_status, needle)                                                \
  do {                                                                                             \
    int got_ = (call);                                                                             \
    const char *why_ = ptxq_last_error(ctx);                                                       \
    cr_assert_eq(got_, (want_status), "%s gave %d (%s), want %d; detail '%s'", #call, got_,        \
                 ptxq_strerror(got_), (int)(want_status), why_);                                   \
    cr_assert(strstr(why_, (needle)) != NULL, "%s: detail '%s' should mention '%s'", #call, why_,  \
              (needle));                                                                           \
  } while (0)

/* Asserts a call succeeds, with the context's detail if it does not. */
#define EXPECT_OK(ctx, call)                                                                       \
  do {                                                                                             \
    int got_ = (call);                                                                             \
    cr_assert_eq(got_, PTXQ_OK, "%s gave %d (%s): %s", #call, got_, ptxq_strerror(got_),           \
                 ptxq_last_error(ctx));                                                            \
  } while (0)

#endif
