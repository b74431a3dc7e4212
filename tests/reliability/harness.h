/*
 * harness.h: the checks of the reliability tests, usable from any thread
 * and with or without Criterion.
 *
 * Why not Criterion's asserts: they may only fail on the test's own thread,
 * and these tests check results inside worker threads; and Criterion cannot
 * run under ThreadSanitizer at all (its runner maps a shared arena that
 * TSan's memory layout refuses), while the TSan builds of these tests are
 * the point of some of them. So a failed CHECK prints "file:line: message"
 * (and the seed) to stderr and ends the process with status 1, from
 * whichever thread it runs on. Under Criterion, which runs each test in a
 * process of its own, that is a failed test; the TSan builds have a plain
 * main() (PTXQ_PLAIN_MAIN) and exit status 1 fails them too. SKIP_TEST
 * exits with 77, meson's "skipped", in the plain builds.
 *
 * Header-only (static inline) so each test binary stays one source file.
 */
#ifndef PTXQ_TESTS_RELIABILITY_HARNESS_H
#define PTXQ_TESTS_RELIABILITY_HARNESS_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ptxq.h"

#ifdef PTXQ_PLAIN_MAIN
#define SKIP_TEST(...)                                                                             \
  do {                                                                                             \
    fprintf(stderr, "skipped: ");                                                                  \
    fprintf(stderr, __VA_ARGS__);                                                                  \
    fputc('\n', stderr);                                                                           \
    exit(77);                                                                                      \
  } while (0)
#else
#include <criterion/criterion.h>
#define SKIP_TEST(...) cr_skip_test(__VA_ARGS__)
#endif

/* The seed of the running test, printed with every failure. */
static uint64_t harness_seed_value;

/* A new seed per test; PTXQ_TEST_SEED replays one. */
static inline uint64_t harness_seed(void) {
  const char *forced = getenv("PTXQ_TEST_SEED");
  if (forced != NULL && forced[0] != '\0') {
    harness_seed_value = strtoull(forced, NULL, 0);
  } else {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    harness_seed_value =
        (uint64_t)t.tv_nsec ^ ((uint64_t)t.tv_sec << 30) ^ ((uint64_t)getpid() << 12);
  }
  return harness_seed_value;
}

#if defined(__GNUC__)
#define HARNESS_PRINTF __attribute__((format(printf, 3, 4)))
#else
#define HARNESS_PRINTF
#endif

static inline _Noreturn void harness_fail(const char *file, int line, const char *fmt, ...)
    HARNESS_PRINTF;
static inline _Noreturn void harness_fail(const char *file, int line, const char *fmt, ...) {
  /* One buffer and one write, so lines of failing threads do not mix. */
  char text[2048];
  int used = snprintf(text, sizeof text, "%s:%d: ", file, line);
  va_list args;
  va_start(args, fmt);
  if (used > 0 && (size_t)used < sizeof text)
    vsnprintf(text + used, sizeof text - (size_t)used, fmt, args);
  va_end(args);
  size_t len = strnlen(text, sizeof text);
  snprintf(text + len, sizeof text - len, " (seed %llu; PTXQ_TEST_SEED replays it)\n",
           (unsigned long long)harness_seed_value);
  fputs(text, stderr);
  fflush(stderr);
  /* _exit: other threads are still running; atexit handlers and stdio
   * teardown under them would only add noise to the failure. */
  _exit(1);
}

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) harness_fail(__FILE__, __LINE__, "check (" #cond ") failed: " __VA_ARGS__);       \
  } while (0)

/* A call that must succeed; the failure names the status and the detail of
 * this thread on ctx. */
#define CHECK_OK(ctx, call)                                                                        \
  do {                                                                                             \
    int status_ = (call);                                                                          \
    if (status_ != PTXQ_OK)                                                                        \
      harness_fail(__FILE__, __LINE__, "%s gave %d (%s): %s", #call, status_,                     \
                   ptxq_strerror(status_), ptxq_last_error(ctx));                                 \
  } while (0)

/* A call that must fail with want, its detail (on ctx) naming needle. */
#define CHECK_FAILS(ctx, call, want, needle)                                                       \
  do {                                                                                             \
    int status_ = (call);                                                                          \
    const char *why_ = ptxq_last_error(ctx);                                                       \
    if (status_ != (want))                                                                         \
      harness_fail(__FILE__, __LINE__, "%s gave %d (%s), want %d (%s); detail '%s'", #call,       \
                   status_, ptxq_strerror(status_), (int)(want), ptxq_strerror(want), why_);       \
    if (strstr(why_, (needle)) == NULL)                                                            \
      harness_fail(__FILE__, __LINE__, "%s: detail '%s' should name '%s'", #call, why_, (needle)); \
  } while (0)

static inline void *harness_malloc(size_t bytes) {
  void *p = malloc(bytes);
  CHECK(p != NULL, "malloc(%zu)", bytes);
  return p;
}

static inline double harness_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#endif
