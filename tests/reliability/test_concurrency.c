/*
 * test_concurrency.c: suite "gpu", many threads on the runtime (issue #6,
 * part 4).
 *
 * - shared_context: 8 threads share one fresh context. They start together
 *   and race to build the same kernels (one key through ptxq_kernel_get,
 *   then the same first ops with the same shapes), then each runs a few
 *   hundred iterations of ops in random order with random batch sizes:
 *   GEMV on a shared Q4_K and a shared Q6_K weight, GEMV through the host
 *   path (the context's staging buffers), GEMV on a private weight it
 *   uploads and frees around the call, SiLU, GELU (erf), SwiGLU, RoPE from
 *   device and from host positions. Now and then a thread replaces a shared
 *   weight with the same bytes, allocates and frees scratch buffers, and
 *   provokes errors whose detail must be its own.
 * - context_per_thread: the same loop with a context per thread, the 8
 *   contexts opened and closed at the same time.
 *
 * Every result is compared bytewise with the result of the same call made
 * by a single thread first (on a context of its own, before any worker
 * starts); the rows a call must not write keep their poison. Each thread
 * has inputs of its own, so a result computed from another thread's inputs
 * fails too.
 *
 * Built three times from this source: as Criterion tests (meson test
 * "concurrency"); with -fsanitize=thread and PTXQ_PLAIN_MAIN, as a plain
 * program ("concurrency_tsan"), with fewer iterations (PTXQ_TSAN); and
 * plain, without TSan (test_concurrency_plain, not a meson test: what
 * tests/compute-sanitizer.sh runs, with no Criterion runner around it).
 * Checks go through harness.h, which works on worker threads and without
 * Criterion. Without a GPU all three skip.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "ptxq.h"
#include "rng.h"
#include "under_tool.h"

#define THREADS 8
#define MAX_M 8u
#ifdef PTXQ_TSAN
#define ITERATIONS 24 /* TSan slows the host side about tenfold */
#else
#define ITERATIONS 300 /* about 2000 ops per thread */
#endif

/* Shapes: k a multiple of 256 but not a power of two, n odd. */
enum {
  Q4_K_DIM = 1280, Q4_N = 333,     /* "w.q4", shared */
  Q6_K_DIM = 768, Q6_N = 517,      /* "w.q6", shared */
  PRIV_K = 512, PRIV_N = 97,       /* "t<i>.private", one per thread, uploaded and freed */
  ACT_N = 1001,                    /* activations: [m][1001] */
  HEAD_DIM = 64, HEADS = 6, KV_HEADS = 2,
  ALIGN_FLOATS = 64,               /* regions start on 256-byte boundaries */
};

/* PTXQ_TEST_TRACE=1: a line on stderr before and after every step and op,
 * with the time since start, to see where a run under a slow tool stands. */
static double trace_t0;
static bool tracing; /* set with trace_t0 by fixture_make */
#define TRACE(...)                                                                                 \
  do {                                                                                             \
    if (tracing) {                                                                                 \
      char line_[160];                                                                             \
      snprintf(line_, sizeof line_, __VA_ARGS__);                                                  \
      fprintf(stderr, "trace %8.3f s: %s\n", harness_now() - trace_t0, line_);                     \
    }                                                                                              \
  } while (0)

#define POISON_BYTE 0xFF /* every poisoned float is 0xFFFFFFFF, a NaN no kernel writes */

/* ---- what runs: ops, the outputs they write, the inputs they read ---------- */

typedef enum op {
  OP_GEMV_Q4, OP_GEMV_Q6, OP_GEMV_PRIVATE, OP_GEMV_HOST, OP_SILU, OP_GELU_ERF, OP_SWIGLU,
  OP_ROPE, OP_ROPE_HOST, OP_COUNT
} op;

static const char *const op_names[OP_COUNT] = {
    "gemv q4_K", "gemv q6_K", "gemv private", "gemv_host", "silu", "gelu_erf", "swiglu",
    "rope", "rope_host_positions"};

/* Regions of a thread's output arena on the device. OUT_ROPE holds q then
 * k, rotated in place, so its starting content is the RoPE input. */
typedef enum output {
  OUT_Q4, OUT_Q6, OUT_PRIVATE, OUT_SILU, OUT_GELU_ERF, OUT_SWIGLU, OUT_ROPE, OUT_COUNT, OUT_NONE
} output;

static const output op_output[OP_COUNT] = {OUT_Q4, OUT_Q6, OUT_PRIVATE, OUT_NONE, OUT_SILU,
                                           OUT_GELU_ERF, OUT_SWIGLU, OUT_ROPE, OUT_ROPE};

enum { Q_TOKEN = HEADS * HEAD_DIM, K_TOKEN = KV_HEADS * HEAD_DIM };

/* Floats per batch row of each output. */
static const size_t out_row[OUT_COUNT] = {Q4_N, Q6_N, PRIV_N, ACT_N, ACT_N, ACT_N,
                                          Q_TOKEN + K_TOKEN};

/* Regions of a thread's input buffer (constant after the first upload). */
typedef enum input { IN_X_Q4, IN_X_Q6, IN_X_PRIV, IN_ACT_X, IN_ACT_UP, IN_POSITIONS, IN_COUNT } input;
static const size_t in_row[IN_COUNT] = {Q4_K_DIM, Q6_K_DIM, PRIV_K, ACT_N, ACT_N, 1};

typedef struct layout {
  size_t out_offset[OUT_COUNT], out_floats; /* in floats */
  size_t in_offset[IN_COUNT], in_floats;
} layout;

static size_t round_up(size_t n) { return (n + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS; }

static layout make_layout(void) {
  layout l;
  memset(&l, 0, sizeof l);
  for (int o = 0; o < OUT_COUNT; o++) {
    l.out_offset[o] = l.out_floats;
    l.out_floats += round_up(MAX_M * out_row[o]);
  }
  for (int i = 0; i < IN_COUNT; i++) {
    l.in_offset[i] = l.in_floats;
    l.in_floats += round_up(MAX_M * in_row[i]);
  }
  return l;
}

/* ---- data -------------------------------------------------------------------- */

/* A random [n][k] Q4_K matrix quantized from floats whose scale and offset
 * change every 32 weights. */
static uint8_t *random_q4k(rng *r, uint32_t k, uint32_t n, size_t *bytes) {
  CHECK_OK(NULL, ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, n, bytes));
  size_t count = (size_t)k * n;
  float *values = harness_malloc(count * sizeof *values);
  for (size_t i = 0; i < count; i += 32) {
    float scale = rng_uniform(r, 0.02f, 1.5f), offset = rng_uniform(r, -0.3f, 0.3f);
    for (size_t j = i; j < i + 32; j++) values[j] = offset + scale * rng_uniform(r, -1.0f, 1.0f);
  }
  uint8_t *blocks = harness_malloc(*bytes);
  CHECK_OK(NULL, ptxq_ref_quantize_q4k(values, count, blocks));
  free(values);
  return blocks;
}

/* A random [n][k] Q6_K matrix: random quants and scales, each super-block's
 * d a small finite half so the products stay in range. */
static uint8_t *random_q6k(rng *r, uint32_t k, uint32_t n, size_t *bytes) {
  CHECK_OK(NULL, ptxq_weight_bytes(PTXQ_TYPE_Q6_K, k, n, bytes));
  uint8_t *blocks = harness_malloc(*bytes);
  for (size_t i = 0; i < *bytes; i++) blocks[i] = (uint8_t)rng_next(r);
  for (size_t b = 0; b < *bytes / PTXQ_Q6_K_BLOCK_BYTES; b++) {
    uint16_t d = ptxq_f32_to_f16(rng_uniform(r, 1e-4f, 4e-4f));
    blocks[b * PTXQ_Q6_K_BLOCK_BYTES + 208] = (uint8_t)(d & 0xFF);
    blocks[b * PTXQ_Q6_K_BLOCK_BYTES + 209] = (uint8_t)(d >> 8);
  }
  return blocks;
}

/* The weights every context gets under the same names. */
typedef struct shared_weights {
  uint8_t *q4, *q6;
  size_t q4_bytes, q6_bytes;
} shared_weights;

/* One thread's inputs and the results a single thread got from them. */
typedef struct thread_data {
  unsigned index;
  char private_name[32];
  uint8_t *private_w;
  size_t private_bytes;
  float *inputs;   /* host image of the input buffer (layout.in_offset) */
  float *template; /* host image of the arena before each iteration: poison, RoPE input */
  int32_t positions[MAX_M];
  float *expected[OUT_COUNT][MAX_M + 1]; /* the output region after the call with m rows */
} thread_data;

static void make_thread_data(thread_data *td, unsigned index, rng *r, const layout *l) {
  memset(td, 0, sizeof *td);
  td->index = index;
  snprintf(td->private_name, sizeof td->private_name, "t%u.private", index);
  td->private_w = random_q4k(r, PRIV_K, PRIV_N, &td->private_bytes);

  td->inputs = harness_malloc(l->in_floats * sizeof(float));
  for (size_t i = 0; i < l->in_floats; i++) td->inputs[i] = rng_uniform(r, -1.0f, 1.0f);
  /* Activations over a wider range, where their curves bend. */
  for (size_t i = 0; i < MAX_M * ACT_N; i++) {
    td->inputs[l->in_offset[IN_ACT_X] + i] = rng_uniform(r, -6.0f, 6.0f);
    td->inputs[l->in_offset[IN_ACT_UP] + i] = rng_uniform(r, -3.0f, 3.0f);
  }
  for (unsigned i = 0; i < MAX_M; i++) td->positions[i] = (int32_t)(rng_next(r) % 200000);
  memcpy(&td->inputs[l->in_offset[IN_POSITIONS]], td->positions, sizeof td->positions);

  td->template = harness_malloc(l->out_floats * sizeof(float));
  memset(td->template, POISON_BYTE, l->out_floats * sizeof(float));
  float *rope = &td->template[l->out_offset[OUT_ROPE]];
  for (size_t i = 0; i < MAX_M * out_row[OUT_ROPE]; i++) rope[i] = rng_uniform(r, -1.0f, 1.0f);
}

static void free_thread_data(thread_data *td) {
  for (int o = 0; o < OUT_COUNT; o++)
    for (unsigned m = 1; m <= MAX_M; m++) free(td->expected[o][m]);
  free(td->private_w);
  free(td->inputs);
  free(td->template);
}

/* ---- running one op ------------------------------------------------------------ */

typedef struct device_buffers {
  ptxq_dev inputs, arena;
} device_buffers;

static ptxq_dev in_at(const layout *l, const device_buffers *d, input i) {
  return d->inputs + l->in_offset[i] * sizeof(float);
}

static ptxq_dev out_at(const layout *l, const device_buffers *d, output o) {
  return d->arena + l->out_offset[o] * sizeof(float);
}

static ptxq_rope_params rope_params(void) {
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NEOX, HEAD_DIM, HEADS, KV_HEADS);
  p.base = 500000.0f;
  return p;
}

/* Enqueues op for m rows (GEMV_HOST and GEMV_PRIVATE complete before they
 * return). host_y receives GEMV_HOST's result. Returns the ptxq status. */
static int run_op(ptxq_ctx *ctx, const thread_data *td, const layout *l, const device_buffers *d,
                  op which, uint32_t m, float *host_y) {
  const ptxq_rope_params p = rope_params();
  const ptxq_dev q = out_at(l, d, OUT_ROPE), k = q + (size_t)MAX_M * Q_TOKEN * sizeof(float);
  int status;
  switch (which) {
  case OP_GEMV_Q4: return ptxq_gemv(ctx, "w.q4", in_at(l, d, IN_X_Q4), out_at(l, d, OUT_Q4), m);
  case OP_GEMV_Q6: return ptxq_gemv(ctx, "w.q6", in_at(l, d, IN_X_Q6), out_at(l, d, OUT_Q6), m);
  case OP_GEMV_PRIVATE:
    /* Upload, use, free: the free waits for the GEMV, which must still see
     * the weight. */
    status = ptxq_weight_upload(ctx, td->private_name, PTXQ_TYPE_Q4_K, PRIV_K, PRIV_N,
                                td->private_w, td->private_bytes);
    TRACE("thread %u: %s uploaded: %d", td->index, td->private_name, status);
    if (status == PTXQ_OK)
      status = ptxq_gemv(ctx, td->private_name, in_at(l, d, IN_X_PRIV), out_at(l, d, OUT_PRIVATE), m);
    TRACE("thread %u: %s used: %d", td->index, td->private_name, status);
    if (status == PTXQ_OK) status = ptxq_weight_free(ctx, td->private_name);
    return status;
  case OP_GEMV_HOST:
    return ptxq_gemv_host(ctx, "w.q4", &td->inputs[l->in_offset[IN_X_Q4]], host_y, m);
  case OP_SILU: return ptxq_silu(ctx, in_at(l, d, IN_ACT_X), out_at(l, d, OUT_SILU), ACT_N, m);
  case OP_GELU_ERF:
    return ptxq_gelu_erf(ctx, in_at(l, d, IN_ACT_X), out_at(l, d, OUT_GELU_ERF), ACT_N, m);
  case OP_SWIGLU:
    return ptxq_swiglu(ctx, in_at(l, d, IN_ACT_X), in_at(l, d, IN_ACT_UP), out_at(l, d, OUT_SWIGLU),
                       ACT_N, m);
  case OP_ROPE: return ptxq_rope(ctx, q, k, in_at(l, d, IN_POSITIONS), m, &p);
  case OP_ROPE_HOST: return ptxq_rope_host_positions(ctx, q, k, td->positions, m, &p);
  case OP_COUNT: break;
  }
  return PTXQ_ERR_INVALID;
}

/* Copies the part of region o that a call with m rows writes from src to
 * dst (both whole-region images). RoPE writes the first m tokens of q and
 * of k, which lie apart. */
static void copy_written(output o, uint32_t m, float *dst, const float *src) {
  if (o == OUT_ROPE) {
    memcpy(dst, src, (size_t)m * Q_TOKEN * sizeof(float));
    size_t k_at = (size_t)MAX_M * Q_TOKEN;
    memcpy(dst + k_at, src + k_at, (size_t)m * K_TOKEN * sizeof(float));
  } else {
    memcpy(dst, src, (size_t)m * out_row[o] * sizeof(float));
  }
}

static size_t region_floats(output o) { return (size_t)MAX_M * out_row[o]; }

/* The single-thread results: each output op for each m on ctx, one call at
 * a time, from the template. Also checks that nothing else in the arena
 * changed. */
static void compute_expected(ptxq_ctx *ctx, thread_data *td, const layout *l) {
  device_buffers d;
  CHECK_OK(ctx, ptxq_alloc(ctx, l->in_floats * sizeof(float), &d.inputs));
  CHECK_OK(ctx, ptxq_alloc(ctx, l->out_floats * sizeof(float), &d.arena));
  CHECK_OK(ctx, ptxq_upload(ctx, d.inputs, td->inputs, l->in_floats * sizeof(float)));
  float *got = harness_malloc(l->out_floats * sizeof(float));
  static const op producers[] = {OP_GEMV_Q4, OP_GEMV_Q6, OP_GEMV_PRIVATE, OP_SILU,
                                 OP_GELU_ERF, OP_SWIGLU, OP_ROPE};
  for (size_t i = 0; i < sizeof producers / sizeof producers[0]; i++) {
    const output o = op_output[producers[i]];
    for (uint32_t m = 1; m <= MAX_M; m++) {
      CHECK_OK(ctx, ptxq_upload(ctx, d.arena, td->template, l->out_floats * sizeof(float)));
      CHECK_OK(ctx, run_op(ctx, td, l, &d, producers[i], m, NULL));
      CHECK_OK(ctx, ptxq_download(ctx, got, d.arena, l->out_floats * sizeof(float)));
      float *region = harness_malloc(region_floats(o) * sizeof(float));
      memcpy(region, &got[l->out_offset[o]], region_floats(o) * sizeof(float));
      td->expected[o][m] = region;
      /* Outside what the call writes, the arena is still the template. */
      copy_written(o, m, &got[l->out_offset[o]], &td->template[l->out_offset[o]]);
      CHECK(memcmp(got, td->template, l->out_floats * sizeof(float)) == 0,
            "single thread: %s m=%u wrote outside its m rows", op_names[producers[i]], m);
    }
  }
  free(got);
  CHECK_OK(ctx, ptxq_free(ctx, d.inputs));
  CHECK_OK(ctx, ptxq_free(ctx, d.arena));
}

/* ---- the workers ------------------------------------------------------------------ */

typedef struct worker {
  /* In */
  ptxq_ctx *shared_ctx; /* NULL: the worker opens a context of its own */
  const shared_weights *weights;
  thread_data *td;
  const layout *l;
  pthread_barrier_t *start;
  uint64_t seed;
  char race_key[128];
  /* Out */
  ptxq_kernel_info race_info;
  unsigned long ops;
} worker;

static void upload_shared(ptxq_ctx *ctx, const shared_weights *w, const char *only) {
  if (only == NULL || strcmp(only, "w.q4") == 0)
    CHECK_OK(ctx, ptxq_weight_upload(ctx, "w.q4", PTXQ_TYPE_Q4_K, Q4_K_DIM, Q4_N, w->q4, w->q4_bytes));
  if (only == NULL || strcmp(only, "w.q6") == 0)
    CHECK_OK(ctx, ptxq_weight_upload(ctx, "w.q6", PTXQ_TYPE_Q6_K, Q6_K_DIM, Q6_N, w->q6, w->q6_bytes));
}

/* Index of the first float that differs, or count. */
static size_t first_difference(const float *a, const float *b, size_t count) {
  for (size_t i = 0; i < count; i++)
    if (memcmp(&a[i], &b[i], sizeof(float)) != 0) return i;
  return count;
}

/* Errors on a shared context: the detail this thread reads is its own,
 * whatever the other threads fail with meanwhile. */
static void provoke_errors(ptxq_ctx *ctx, const worker *w, const device_buffers *d, int iteration) {
  char absent[64];
  snprintf(absent, sizeof absent, "absent.t%u.i%d", w->td->index, iteration);
  CHECK_FAILS(ctx, ptxq_gemv(ctx, absent, in_at(w->l, d, IN_X_Q4), out_at(w->l, d, OUT_Q4), 1),
              PTXQ_ERR_NOT_FOUND, absent);
  uint32_t bad_n = (1u << 20) + 1 + w->td->index;
  char needle[32];
  snprintf(needle, sizeof needle, "n=%u", bad_n);
  CHECK_FAILS(ctx, ptxq_silu(ctx, in_at(w->l, d, IN_ACT_X), out_at(w->l, d, OUT_SILU), bad_n, 1),
              PTXQ_ERR_INVALID, needle);
  /* A success leaves the detail alone; the detail belongs to its context. */
  ptxq_weight_info info;
  CHECK_OK(ctx, ptxq_weight_info_get(ctx, "w.q4", &info));
  CHECK(strstr(ptxq_last_error(ctx), needle) != NULL, "thread %u: detail '%s' lost '%s'",
        w->td->index, ptxq_last_error(ctx), needle);
  CHECK(ptxq_last_error(NULL)[0] == '\0',
        "thread %u: a failure on a context shows on no context: '%s'", w->td->index,
        ptxq_last_error(NULL));
}

/* Allocates, fills, reads back and frees a scratch buffer of random size. */
static void scratch_round_trip(ptxq_ctx *ctx, rng *r) {
  size_t bytes = 1 + rng_next(r) % (1u << 20);
  uint8_t *out = harness_malloc(bytes), *back = harness_malloc(bytes);
  for (size_t i = 0; i < bytes; i++) out[i] = (uint8_t)rng_next(r);
  ptxq_dev buffer = 0;
  CHECK_OK(ctx, ptxq_alloc(ctx, bytes, &buffer));
  CHECK_OK(ctx, ptxq_upload(ctx, buffer, out, bytes));
  CHECK_OK(ctx, ptxq_download(ctx, back, buffer, bytes));
  CHECK(memcmp(out, back, bytes) == 0, "scratch buffer of %zu bytes read back wrong", bytes);
  CHECK_OK(ctx, ptxq_free(ctx, buffer));
  free(out);
  free(back);
}

/* Checks the downloaded arena against the template with the expected
 * results of the calls made (m_of[o] rows of output o; 0: not written). */
static void check_arena(const worker *w, const float *got, float *want, const uint32_t *m_of,
                        int iteration) {
  const layout *l = w->l;
  const thread_data *td = w->td;
  memcpy(want, td->template, l->out_floats * sizeof(float));
  for (int o = 0; o < OUT_COUNT; o++)
    if (m_of[o] != 0)
      copy_written((output)o, m_of[o], &want[l->out_offset[o]], td->expected[o][m_of[o]]);
  size_t at = first_difference(got, want, l->out_floats);
  if (at == l->out_floats) return;
  int o = OUT_COUNT - 1;
  while (o > 0 && l->out_offset[o] > at) o--;
  size_t within = at - l->out_offset[o];
  uint32_t got_bits, want_bits;
  memcpy(&got_bits, &got[at], sizeof got_bits);
  memcpy(&want_bits, &want[at], sizeof want_bits);
  CHECK(0, "thread %u iteration %d: output %d (m=%u) float %zu (row %zu) is %.9g (0x%08x), the "
           "single thread got %.9g (0x%08x)",
        td->index, iteration, o, m_of[o], within, within / out_row[o], (double)got[at],
        (unsigned)got_bits, (double)want[at], (unsigned)want_bits);
}

static void *worker_main(void *arg) {
  worker *w = arg;
  const layout *l = w->l;
  thread_data *td = w->td;
  rng r = {w->seed};
  const size_t arena_bytes = l->out_floats * sizeof(float);

  /* Every thread opens (and later closes) its context at the same moment. */
  pthread_barrier_wait(w->start);
  ptxq_ctx *ctx = w->shared_ctx;
  if (ctx == NULL) {
    CHECK_OK(NULL, ptxq_open(&ctx, NULL));
    upload_shared(ctx, w->weights, NULL);
  }
  device_buffers d;
  CHECK_OK(ctx, ptxq_alloc(ctx, l->in_floats * sizeof(float), &d.inputs));
  CHECK_OK(ctx, ptxq_alloc(ctx, arena_bytes, &d.arena));
  CHECK_OK(ctx, ptxq_upload(ctx, d.inputs, td->inputs, l->in_floats * sizeof(float)));
  float *got = harness_malloc(arena_bytes), *want = harness_malloc(arena_bytes);
  float *host_y = harness_malloc((size_t)MAX_M * Q4_N * sizeof(float));

  /* The race: every thread asks for the same new kernel at once, then runs
   * the same first iteration (same ops, same m), whose kernels are new too. */
  pthread_barrier_wait(w->start);
  TRACE("thread %u: race for %s", td->index, w->race_key);
  CHECK_OK(ctx, ptxq_kernel_get(ctx, w->race_key, &w->race_info));
  TRACE("thread %u: race done", td->index);

  /* Under compute-sanitizer, 3 (each still runs every op, 9 per
   * iteration, after the same first-use race): with 40, shared_context
   * took 27-30 s under memcheck, initcheck and synccheck; under racecheck
   * it was still running after 280 s with 12, one core busy throughout. */
  const int runs = tests_repeats(ITERATIONS, 3);
  for (int iteration = 0; iteration < runs; iteration++) {
    op order[OP_COUNT];
    for (int i = 0; i < OP_COUNT; i++) order[i] = (op)i;
    if (iteration > 0) /* Fisher-Yates */
      for (int i = OP_COUNT - 1; i > 0; i--) {
        int j = (int)(rng_next(&r) % (uint64_t)(i + 1));
        op t = order[i];
        order[i] = order[j];
        order[j] = t;
      }
    /* Both RoPE ops rotate the same region: one of them per iteration. */
    const op skipped_rope = iteration == 0 || (rng_next(&r) & 1) ? OP_ROPE_HOST : OP_ROPE;

    CHECK_OK(ctx, ptxq_upload(ctx, d.arena, td->template, arena_bytes));
    uint32_t m_of[OUT_COUNT] = {0};
    for (int i = 0; i < OP_COUNT; i++) {
      const op which = order[i];
      if (which == skipped_rope || (iteration > 0 && rng_next(&r) % 8 == 0)) continue;
      const uint32_t m = iteration == 0 ? 3 : 1 + (uint32_t)(rng_next(&r) % MAX_M);
      TRACE("thread %u iteration %d: %s m=%u", td->index, iteration, op_names[which], m);
      int status = run_op(ctx, td, l, &d, which, m, host_y);
      TRACE("thread %u iteration %d: %s m=%u returned %d", td->index, iteration, op_names[which], m,
            status);
      CHECK(status == PTXQ_OK, "thread %u iteration %d: %s m=%u gave %s: %s", td->index, iteration,
            op_names[which], m, ptxq_strerror(status), ptxq_last_error(ctx));
      w->ops++;
      if (which == OP_GEMV_HOST) {
        size_t at = first_difference(host_y, td->expected[OUT_Q4][m], (size_t)m * Q4_N);
        CHECK(at == (size_t)m * Q4_N,
              "thread %u iteration %d: gemv_host m=%u y[%zu] = %.9g, ptxq_gemv alone gave %.9g",
              td->index, iteration, m, at, (double)host_y[at], (double)td->expected[OUT_Q4][m][at]);
      } else {
        m_of[op_output[which]] = m;
      }
      /* Now and then, between the ops: */
      uint64_t dice = rng_next(&r) % 64;
      if (dice < 4) TRACE("thread %u iteration %d: between ops, case %d", td->index, iteration, (int)dice);
      if (dice == 0) {
        upload_shared(ctx, w->weights, (rng_next(&r) & 1) ? "w.q4" : "w.q6"); /* same bytes */
        w->ops++;
      } else if (dice == 1) {
        scratch_round_trip(ctx, &r);
      } else if (dice == 2) {
        provoke_errors(ctx, w, &d, iteration);
      } else if (dice == 3) {
        ptxq_weight_info info;
        CHECK_OK(ctx, ptxq_weight_info_get(ctx, "w.q6", &info));
        CHECK(info.type == PTXQ_TYPE_Q6_K && info.k == Q6_K_DIM && info.n == Q6_N &&
                  info.bytes == w->weights->q6_bytes,
              "thread %u: weight_info of w.q6 is type %d k=%u n=%u bytes=%zu", td->index,
              (int)info.type, info.k, info.n, info.bytes);
      }
    }
    TRACE("thread %u iteration %d: download", td->index, iteration);
    CHECK_OK(ctx, ptxq_download(ctx, got, d.arena, arena_bytes));
    check_arena(w, got, want, m_of, iteration);
    TRACE("thread %u iteration %d: checked", td->index, iteration);
  }

  free(got);
  free(want);
  free(host_y);
  TRACE("thread %u: loop done", td->index);
  if (w->shared_ctx == NULL) {
    /* Buffers left to ptxq_close, closed by every thread together. */
    pthread_barrier_wait(w->start);
    ptxq_close(ctx);
  } else {
    CHECK_OK(ctx, ptxq_free(ctx, d.inputs));
    CHECK_OK(ctx, ptxq_free(ctx, d.arena));
  }
  return NULL;
}

/* ---- the cases ----------------------------------------------------------------------- */

static ptxq_ctx *open_or_skip(void) {
  ptxq_ctx *ctx = NULL;
  int status = ptxq_open(&ctx, NULL);
  if (status == PTXQ_ERR_NO_DEVICE) SKIP_TEST("no GPU: %s", ptxq_last_error(NULL));
  CHECK(status == PTXQ_OK, "ptxq_open: %s: %s", ptxq_strerror(status), ptxq_last_error(NULL));
  return ctx;
}

typedef struct fixture {
  layout l;
  shared_weights weights;
  thread_data td[THREADS];
  ptxq_ctx *reference; /* the single-thread context, open until the end */
  uint64_t seed;
} fixture;

/* Weights, inputs and the single-thread results of every thread. */
static void fixture_make(fixture *f) {
  const char *trace = getenv("PTXQ_TEST_TRACE");
  tracing = trace != NULL && strcmp(trace, "1") == 0;
  trace_t0 = harness_now();
  f->reference = open_or_skip();
  f->seed = harness_seed();
  rng r = {f->seed};
  f->l = make_layout();
  f->weights.q4 = random_q4k(&r, Q4_K_DIM, Q4_N, &f->weights.q4_bytes);
  f->weights.q6 = random_q6k(&r, Q6_K_DIM, Q6_N, &f->weights.q6_bytes);
  upload_shared(f->reference, &f->weights, NULL);
  for (unsigned t = 0; t < THREADS; t++) {
    make_thread_data(&f->td[t], t, &r, &f->l);
    TRACE("fixture: single-thread results of thread %u", t);
    compute_expected(f->reference, &f->td[t], &f->l);
  }
}

static void fixture_free(fixture *f) {
  for (unsigned t = 0; t < THREADS; t++) free_thread_data(&f->td[t]);
  free(f->weights.q4);
  free(f->weights.q6);
  ptxq_close(f->reference);
}

/* Runs the workers (on shared, or a context each when NULL) and returns
 * the total number of ops. */
static unsigned long run_workers(fixture *f, ptxq_ctx *shared, worker *workers) {
  ptxq_device_info info;
  CHECK_OK(f->reference, ptxq_device_info_get(f->reference, &info));
  pthread_barrier_t start;
  CHECK(pthread_barrier_init(&start, NULL, THREADS) == 0, "pthread_barrier_init");
  pthread_t threads[THREADS];
  for (unsigned t = 0; t < THREADS; t++) {
    workers[t] = (worker){.shared_ctx = shared, .weights = &f->weights, .td = &f->td[t],
                          .l = &f->l, .start = &start,
                          .seed = f->seed ^ (0x9E3779B97F4A7C15ull * (t + 1))};
    /* The kernel of w.q4 for m = 5, which the loop also uses. */
    snprintf(workers[t].race_key, sizeof workers[t].race_key, "q4k_gemv:k=%d,n=%d,m=5,sm=%u",
             Q4_K_DIM, Q4_N, info.target_sm);
    CHECK(pthread_create(&threads[t], NULL, worker_main, &workers[t]) == 0, "pthread_create");
  }
  unsigned long ops = 0;
  for (unsigned t = 0; t < THREADS; t++) {
    CHECK(pthread_join(threads[t], NULL) == 0, "pthread_join");
    ops += workers[t].ops;
  }
  pthread_barrier_destroy(&start);
  return ops;
}

static void shared_context_case(void) {
  fixture f;
  fixture_make(&f);
  ptxq_ctx *shared = open_or_skip(); /* fresh: no kernel built yet */
  upload_shared(shared, &f.weights, NULL);
  worker workers[THREADS];
  double start = harness_now();
  TRACE("shared_context: workers start");
  unsigned long ops = run_workers(&f, shared, workers);
  TRACE("shared_context: workers joined");
  /* One build for the raced key: every thread saw the same entry, down to
   * the time its JIT took. */
  for (unsigned t = 1; t < THREADS; t++)
    CHECK(memcmp(&workers[t].race_info, &workers[0].race_info, sizeof workers[0].race_info) == 0,
          "threads 0 and %u got different kernels for %s (jit_ms %.6f and %.6f)", t,
          workers[0].race_key, workers[0].race_info.jit_ms, workers[t].race_info.jit_ms);
  fprintf(stderr, "shared_context: %d threads, %lu ops in %.2f s\n", THREADS, ops,
          harness_now() - start);
  ptxq_close(shared);
  fixture_free(&f);
}

static void context_per_thread_case(void) {
  fixture f;
  fixture_make(&f);
  worker workers[THREADS];
  double start = harness_now();
  unsigned long ops = run_workers(&f, NULL, workers);
  /* The same kernel in every context (its own JIT, so jit_ms differs). */
  for (unsigned t = 1; t < THREADS; t++) {
    ptxq_kernel_info a = workers[0].race_info, b = workers[t].race_info;
    a.jit_ms = b.jit_ms = 0;
    CHECK(memcmp(&a, &b, sizeof a) == 0, "threads 0 and %u describe %s differently", t,
          workers[0].race_key);
  }
  fprintf(stderr, "context_per_thread: %d threads, %lu ops in %.2f s\n", THREADS, ops,
          harness_now() - start);
  fixture_free(&f);
}

#ifdef PTXQ_PLAIN_MAIN
/* test_concurrency_plain [shared_context | context_per_thread]: one case, or
 * both. A failed check exits with status 1 (harness.h). */
int main(int argc, char **argv) {
  bool shared = argc < 2 || strcmp(argv[1], "shared_context") == 0;
  bool per_thread = argc < 2 || strcmp(argv[1], "context_per_thread") == 0;
  if (argc > 2 || !(shared || per_thread)) {
    fprintf(stderr, "usage: %s [shared_context | context_per_thread]\n", argv[0]);
    return 2;
  }
  if (shared) shared_context_case();
  if (per_thread) context_per_thread_case();
  fprintf(stderr, "passed\n");
  return 0;
}
#else
Test(concurrency, shared_context, .timeout = 240) { shared_context_case(); }
Test(concurrency, context_per_thread, .timeout = 240) { context_per_thread_case(); }
#endif
