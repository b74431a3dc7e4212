/*
 * test_nodevice.c: suite "unit", the runtime without a GPU.
 *
 * Every test points PTXQ_LIBCUDA at a library that does not exist before
 * ptxq first touches the driver, so these run the same on a GPU machine and
 * in CI: ptxq_open must fail cleanly with PTXQ_ERR_NO_DEVICE and say why,
 * and everything that needs no context (status names, weight sizes, NULL
 * handling) must work.
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ptxq.h"

#define MISSING_LIBCUDA "/nonexistent/libcuda.so.1"

/* Criterion runs each test in its own process; each one must hide the
 * driver before its first ptxq call. */
static void hide_driver(void) {
  setenv("PTXQ_LIBCUDA", MISSING_LIBCUDA, 1);
}

TestSuite(nodevice, .init = hide_driver);

Test(nodevice, open_without_driver_is_no_device) {
  ptxq_ctx *ctx = (ptxq_ctx *)&ctx; /* not NULL: ptxq_open must clear it */
  int status = ptxq_open(&ctx, NULL);
  cr_assert_eq(status, PTXQ_ERR_NO_DEVICE, "ptxq_open gave %d (%s)", status, ptxq_strerror(status));
  cr_assert_null(ctx, "ctx must be NULL after a failed open");
  const char *why = ptxq_last_error(NULL);
  cr_assert(strstr(why, "libcuda") != NULL, "detail should mention libcuda: '%s'", why);
  cr_assert(strstr(why, MISSING_LIBCUDA) != NULL, "detail should name the path tried: '%s'", why);
}

Test(nodevice, open_failure_is_remembered) {
  ptxq_options opt = {.device = 0, .target_sm = 80};
  for (int i = 0; i < 3; i++) {
    ptxq_ctx *ctx = NULL;
    cr_assert_eq(ptxq_open(&ctx, &opt), PTXQ_ERR_NO_DEVICE, "attempt %d", i);
    cr_assert(strstr(ptxq_last_error(NULL), "libcuda") != NULL, "attempt %d: '%s'", i,
              ptxq_last_error(NULL));
  }
}

Test(nodevice, open_with_null_out_is_invalid) {
  cr_assert_eq(ptxq_open(NULL, NULL), PTXQ_ERR_INVALID);
  cr_assert(strstr(ptxq_last_error(NULL), "NULL") != NULL, "'%s'", ptxq_last_error(NULL));
}

Test(nodevice, strerror_names_every_status) {
  static const int statuses[] = {
      PTXQ_OK,
      PTXQ_ERR_INVALID,
      PTXQ_ERR_NO_DEVICE,
      PTXQ_ERR_DRIVER,
      PTXQ_ERR_JIT,
      PTXQ_ERR_NOMEM,
      PTXQ_ERR_DEVICE_MEMORY,
      PTXQ_ERR_NOT_FOUND,
      PTXQ_ERR_UNSUPPORTED,
      PTXQ_ERR_FORMAT,
      PTXQ_ERR_IO,
      PTXQ_ERR_CAPTURE,
      PTXQ_ERR_CANCELLED,
  };
  size_t count = sizeof statuses / sizeof statuses[0];
  const char *unknown = ptxq_strerror(-1000);
  cr_assert_not_null(unknown);
  cr_assert(strstr(unknown, "unknown") != NULL, "'%s'", unknown);
  cr_assert_str_eq(ptxq_strerror(7), unknown, "a positive status is unknown too");
  for (size_t i = 0; i < count; i++) {
    const char *name = ptxq_strerror(statuses[i]);
    cr_assert_not_null(name, "status %d", statuses[i]);
    cr_assert_gt(strlen(name), 3, "status %d: '%s'", statuses[i], name);
    cr_assert_str_neq(name, unknown, "status %d has no name of its own", statuses[i]);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(name, ptxq_strerror(statuses[j]), "statuses %d and %d share a name",
                        statuses[i], statuses[j]);
  }
}

Test(nodevice, weight_bytes_of_each_type) {
  size_t bytes = 0;
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q4_K, 512, 3, &bytes), PTXQ_OK);
  cr_assert_eq(bytes, 2u * 144u * 3u);
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q6_K, 4096, 777, &bytes), PTXQ_OK);
  cr_assert_eq(bytes, 16u * 210u * 777u);
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_F32, 13, 7, &bytes), PTXQ_OK);
  cr_assert_eq(bytes, 13u * 7u * 4u);
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_F16, 13, 7, &bytes), PTXQ_OK);
  cr_assert_eq(bytes, 13u * 7u * 2u);
  /* The largest K-quant shape fits: (2^32 - 256) / 256 blocks by 2^32 - 1 rows. */
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_Q6_K, 0xFFFFFF00u, 0xFFFFFFFFu, &bytes), PTXQ_OK);
  cr_assert_eq((uint64_t)bytes, (uint64_t)(0xFFFFFF00u / 256) * 210u * 0xFFFFFFFFull);
}

/* Asserts a ptxq_weight_bytes failure with a detail naming `needle`. */
static void expect_bad_size(ptxq_type type, uint32_t k, uint32_t n, const char *needle) {
  size_t bytes = 12345;
  int status = ptxq_weight_bytes(type, k, n, &bytes);
  cr_assert_eq(status, PTXQ_ERR_INVALID, "type %d k=%u n=%u gave %d", (int)type, k, n, status);
  const char *why = ptxq_last_error(NULL);
  cr_assert(strstr(why, needle) != NULL, "type %d k=%u n=%u: detail '%s' should name '%s'",
            (int)type, k, n, why, needle);
}

Test(nodevice, weight_bytes_rejects_bad_shapes) {
  expect_bad_size(PTXQ_TYPE_Q4_K, 0, 3, "k=0");
  expect_bad_size(PTXQ_TYPE_Q4_K, 4000, 3, "k=4000");
  expect_bad_size(PTXQ_TYPE_Q6_K, 4000, 3, "k=4000");
  expect_bad_size(PTXQ_TYPE_Q4_K, 255, 1, "256");
  expect_bad_size(PTXQ_TYPE_Q4_K, 512, 0, "n=0");
  expect_bad_size(PTXQ_TYPE_F32, 7, 0, "n=0");
  expect_bad_size(PTXQ_TYPE_F16, 0, 7, "k=0");
  expect_bad_size(PTXQ_TYPE_F32, UINT32_MAX, UINT32_MAX, "overflow");
  expect_bad_size((ptxq_type)7, 256, 1, "type 7");
  expect_bad_size((ptxq_type)-1, 256, 1, "type -1");
}

Test(nodevice, weight_bytes_null_out) {
  cr_assert_eq(ptxq_weight_bytes(PTXQ_TYPE_F32, 4, 4, NULL), PTXQ_ERR_INVALID);
}

Test(nodevice, null_context_is_harmless) {
  ptxq_close(NULL);
  cr_assert_str_eq(ptxq_last_error((const ptxq_ctx *)0x1000), "",
                   "a context with no failure has no detail");
  cr_assert_null(ptxq_stream(NULL));

  ptxq_dev dev = 1;
  cr_assert_eq(ptxq_alloc(NULL, 64, &dev), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_free(NULL, 0x1000), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_sync(NULL), PTXQ_ERR_INVALID);
  char host[8];
  cr_assert_eq(ptxq_upload(NULL, 0x1000, host, sizeof host), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_download(NULL, host, 0x1000, sizeof host), PTXQ_ERR_INVALID);
  ptxq_device_info info;
  cr_assert_eq(ptxq_device_info_get(NULL, &info), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_weight_upload(NULL, "w", PTXQ_TYPE_F32, 1, 1, host, 4), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_weight_free(NULL, "w"), PTXQ_ERR_INVALID);
  ptxq_weight_info winfo;
  cr_assert_eq(ptxq_weight_info_get(NULL, "w", &winfo), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv(NULL, "w", 0x1000, 0x2000, 1), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_prepare(NULL, "w", 1), PTXQ_ERR_INVALID);
  const char *const qkv[3] = {"q", "k", "v"};
  const ptxq_dev ys[3] = {0x2000, 0x3000, 0x4000};
  cr_assert_eq(ptxq_gemv_multi(NULL, qkv, 3, 0x1000, ys, 1), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_multi_prepare(NULL, qkv, 3, 1), PTXQ_ERR_INVALID);
  float x[4], y[4];
  cr_assert_eq(ptxq_gemv_host(NULL, "w", x, y, 1), PTXQ_ERR_INVALID);
  ptxq_kernel_info kinfo;
  cr_assert_eq(ptxq_kernel_get(NULL, "q4k_gemv:k=256,n=1,m=1", &kinfo), PTXQ_ERR_INVALID);
  void *params[1] = {NULL};
  cr_assert_eq(ptxq_kernel_launch(NULL, "q4k_gemv:k=256,n=1,m=1", params), PTXQ_ERR_INVALID);
  ptxq_event *ev = (ptxq_event *)&ev;
  cr_assert_eq(ptxq_event_create(NULL, &ev), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_event_record(NULL, NULL), PTXQ_ERR_INVALID);
  float ms;
  cr_assert_eq(ptxq_event_elapsed_ms(NULL, NULL, NULL, &ms), PTXQ_ERR_INVALID);
  ptxq_event_destroy(NULL, NULL);

  ptxq_ffn_params ffn = {PTXQ_FFN_SWIGLU, "gate", "up", "down"};
  cr_assert_eq(ptxq_ffn(NULL, &ffn, 0x1000, 0x2000, 1), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_ffn_prepare(NULL, &ffn, 1), PTXQ_ERR_INVALID);
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 8, 2);
  cr_assert_eq(ptxq_rope_prepare(NULL, 1, &rope), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_multi_rope(NULL, qkv, 3, 0x1000, ys, 1, 0x5000, &rope), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_multi_rope_prepare(NULL, qkv, 3, 1, &rope), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_multi_rope(NULL, qkv, 2, 0x1000, ys, 1, 0x5000, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gemv_multi_rope_prepare(NULL, qkv, 2, 1, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_capture_begin(NULL), PTXQ_ERR_INVALID);
  ptxq_graph *graph = (ptxq_graph *)&graph;
  cr_assert_eq(ptxq_capture_end(NULL, &graph), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_graph_launch(NULL, NULL), PTXQ_ERR_INVALID);
  ptxq_graph_destroy(NULL, NULL);
  ptxq_load_stats stats;
  memset(&stats, 0xA5, sizeof stats);
  cr_assert_eq(ptxq_weights_from_gguf(NULL, "model.gguf", NULL, NULL, NULL, &stats),
               PTXQ_ERR_INVALID);
  cr_assert_eq(stats.tensors, 0, "stats are cleared even when the call fails at once");
  cr_assert_eq(stats.bytes, 0);

  /* Each failure above was on no context: the detail belongs to NULL. */
  cr_assert(strstr(ptxq_last_error(NULL), "ctx is NULL") != NULL, "'%s'", ptxq_last_error(NULL));
}

/* What ptxq_last_error(NULL) says on a fresh thread. */
static void *read_detail(void *out) {
  const char *detail = ptxq_last_error(NULL);
  *(size_t *)out = strlen(detail);
  return NULL;
}

Test(nodevice, detail_is_per_thread) {
  ptxq_ctx *ctx = NULL;
  cr_assert_eq(ptxq_open(&ctx, NULL), PTXQ_ERR_NO_DEVICE);
  cr_assert_str_neq(ptxq_last_error(NULL), "");
  size_t other_len = 99;
  pthread_t thread;
  cr_assert_eq(pthread_create(&thread, NULL, read_detail, &other_len), 0);
  cr_assert_eq(pthread_join(thread, NULL), 0);
  cr_assert_eq(other_len, 0, "another thread saw this thread's failure");
  cr_assert(strstr(ptxq_last_error(NULL), "libcuda") != NULL, "and this thread still sees it");
}
