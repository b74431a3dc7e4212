/*
 * cli_run.c: `ptxgen run`, run one kernel on the GPU on seeded random data,
 * check it against the CPU reference and time it. This file holds the
 * command, the q4k_gemv/q6k_gemv runner (plain and gated, glu=), the
 * stream_read runner and the helpers every runner shares (cli_run.h); the
 * activation and RoPE runners are in cli_run_ops.c, the GEMV on a tensor
 * of a GGUF file (--gguf) in cli_run_gguf.c.
 *
 * The data are random but valid inputs, never zeros: Q4_K blocks are made
 * directly from random bytes (quantizing floats would take minutes at the
 * largest shapes), with d and dmin set to random finite f16 values so that
 * no NaN or Inf enters. The output buffer is poisoned with NaN before the
 * launch so that an output the kernel never writes cannot pass.
 *
 * The fp64 reference is run on slices of rows in parallel: one thread does
 * 128256 x 4096 x 8 in about 16 s, being bound by the latency of its
 * in-order double sums. Each row's result does not depend on the split.
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli_run.h"

static const char run_usage[] =
    "usage: ptxgen run KEY [--seed N] [--cpu] [--reps N] [--no-batch-check]\n"
    "       ptxgen run [KEY] --gguf FILE --tensor NAME [--m N] [--x FILE] [--out FILE]\n"
    "                  [--seed N] [--cpu]\n"
    "\n"
    "q4k_gemv and q6k_gemv keys: makes seeded random Q4_K/Q6_K weights W[n][k] and activations\n"
    "x[m][k] in [-1, 1], runs the kernel through the runtime, compares y with the\n"
    "fp64 CPU reference, checks batch invariance and times the kernel:\n"
    "  KEY seed=N device=NAME\n"
    "  max_rel_err=E (max|y-ref| / max|ref| over m*n outputs)\n"
    "  batch_invariant=yes|no      (m > 1: each row against its own m=1 product)\n"
    "  kernel_us=T weight_gbps=G (median of R reps after 3 warm-up, weights hot)\n"
    "Fails (exit 1) if max_rel_err > 1e-5, an output is NaN or batch invariance fails.\n"
    "A gated key (glu=swiglu or glu=geglu) has a second random weight U of the same\n"
    "shape and y = act(x.W^T) * (x.U^T), act silu or tanh gelu; its reference is the\n"
    "fp64 product twice and the activation's fp64 formula (ptxq_ref_glu), and\n"
    "weight_gbps counts both weights.\n"
    "A key with tuning (rows=, warps=, preload=), tc=1, idp=1 or glu= is launched by its key\n"
    "(ptxq_kernel_launch), any other through ptxq_gemv.\n"
    "With --cpu only the reference runs (no GPU needed):\n"
    "  KEY seed=N cpu\n"
    "  ref_ms=T checksum=S (sum of y over m*n outputs)\n"
    "stream_read keys: reads n random 16-byte vectors once per launch:\n"
    "  KEY seed=N device=NAME\n"
    "  kernel_us=T read_gbps=G (median of R reps after 3 warm-up)\n"
    "gelu, gelu_erf, silu keys (x[m][n]) and swiglu, geglu keys (gate, up [m][n]):\n"
    "inputs uniform in [-20, 20] plus planted 0, -0, +-inf, NaN, +-1e30; the key's\n"
    "kernel runs out of place into a NaN-poisoned y:\n"
    "  KEY seed=N device=NAME\n"
    "  max_rel_err=E (max |y-ref|/|ref| over |ref| >= 1e-3)\n"
    "  bound_ratio=B (<= 1 passes: |y-ref| <= 2e-6|ref| + 1e-7)\n"
    "  nonfinite=ok|MISMATCH (C outputs whose reference is NaN or +-inf: same class)\n"
    "  kernel_us=T gbps=G (median of R reps after 3 warm-up; BYTES bytes: inputs read, y written)\n"
    "Fails (exit 1) if bound_ratio > 1 or nonfinite=MISMATCH.\n"
    "rope keys: q [m][heads][head_dim] and k [m][kv_heads][head_dim] in [-1, 1],\n"
    "positions in [0, 2^20] (token 0 at 2^20-1), freq_factors (freq_factors=1) in\n"
    "[1, 8]; the key's kernel rotates q and k in place:\n"
    "  KEY seed=N device=NAME\n"
    "  max_abs_err=E (<= 2e-6 passes)\n"
    "  passthrough=ok|CHANGED (dims n_dims..head_dim-1 bit-identical to the input)\n"
    "  kernel_us=T gbps=G (median of R reps after 3 warm-up; BYTES bytes: q and k read and written)\n"
    "Fails (exit 1) if max_abs_err > 2e-6 or passthrough=CHANGED.\n"
    "With --cpu these print `KEY seed=N cpu` and `ref_ms=T checksum=S (...)`.\n"
    "\n"
    "--gguf FILE --tensor NAME: y[m][n] = x[m][k] . W[n][k]^T with W the tensor NAME of\n"
    "FILE (k = dims[0], n = the other dims' product), x from --x or seeded random in\n"
    "[-1, 1]. W must be q4_K or q6_K: it is uploaded (ptxq_weight_upload) and\n"
    "multiplied by ptxq_gemv_host (a key with rows= or warps= launches its own\n"
    "kernel); stderr gets the device and `max_rel_err=E` against the fp64 reference,\n"
    "and the run fails (exit 1) if E > 1e-5. With --cpu only the fp64 reference runs,\n"
    "on q4_K, q6_K, f16 or f32 tensors. y goes to --out FILE, else stdout: m rows of\n"
    "n values, one value per line (%.9g, or %.17g for the reference). A KEY (q4k_gemv\n"
    "or q6k_gemv) must agree with the tensor's type, k and n; it sets m and the\n"
    "target (sm). A file ptxq refuses fails with `ptxgen: FILE: <why>` (exit 1).\n"
    "\n"
    "options:\n"
    "  --seed N   seed of the random data (default 1)\n"
    "  --reps N   timed repetitions, 0..100000 (default 50); 0: one launch after the\n"
    "             checks, not timed, no warm-up (under compute-sanitizer, where every\n"
    "             launch is slow); kernel_us is then printed as -\n"
    "  --no-batch-check  q4k_gemv and q6k_gemv: skip the m=1 products of the batch\n"
    "             invariance check (batch_invariant=skipped)\n"
    "  --cpu      run the CPU reference alone (every kind but stream_read)\n"
    "  --gguf FILE, --tensor NAME   multiply by a tensor of a GGUF file (above)\n"
    "  --m N      rows of x with --gguf and no KEY, 1..16 (default 1)\n"
    "  --x FILE   x as raw little-endian fp32, exactly m*k values (default: random)\n"
    "  --out FILE write y to FILE instead of stdout\n";

#define WEIGHT_NAME "ptxgen_run"

uint64_t run_random_next(uint64_t *state) {
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static void random_bytes(uint64_t *state, uint8_t *out, size_t len) {
  for (size_t i = 0; i < len; i += 8) {
    uint64_t r = run_random_next(state);
    size_t take = len - i < 8 ? len - i : 8;
    memcpy(out + i, &r, take);
  }
}

/* A positive f16 in [2^-10, 2^-3) (about [1e-3, 0.125)): biased exponent
 * 5..11, any mantissa. */
static uint16_t random_f16_scale(uint64_t *state) {
  uint64_t r = run_random_next(state);
  return (uint16_t)(((5 + r % 7) << 10) | ((r >> 32) & 0x3FF));
}

static void random_q4k_blocks(uint64_t *state, uint8_t *blocks, size_t count) {
  random_bytes(state, blocks, count * PTXQ_Q4_K_BLOCK_BYTES);
  for (size_t b = 0; b < count; b++) {
    uint8_t *block = blocks + b * PTXQ_Q4_K_BLOCK_BYTES;
    uint16_t d = random_f16_scale(state), dmin = random_f16_scale(state);
    block[0] = (uint8_t)d, block[1] = (uint8_t)(d >> 8);
    block[2] = (uint8_t)dmin, block[3] = (uint8_t)(dmin >> 8);
  }
}

/* Random Q6_K blocks: any bytes, with d a finite positive f16. */
static void random_q6k_blocks(uint64_t *state, uint8_t *blocks, size_t count) {
  random_bytes(state, blocks, count * PTXQ_Q6_K_BLOCK_BYTES);
  for (size_t b = 0; b < count; b++) {
    uint8_t *block = blocks + b * PTXQ_Q6_K_BLOCK_BYTES;
    uint16_t d = random_f16_scale(state);
    block[208] = (uint8_t)d, block[209] = (uint8_t)(d >> 8);
  }
}

float run_random_unit(uint64_t *state) {
  return (float)((int32_t)(run_random_next(state) >> 40) - (1 << 23)) / (float)(1 << 23);
}

static void random_activations(uint64_t *state, float *x, size_t count) {
  for (size_t i = 0; i < count; i++) x[i] = run_random_unit(state);
}

double run_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

void *run_alloc(size_t bytes, const char *what) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) fprintf(stderr, "ptxgen: run: cannot allocate %zu bytes for %s\n", bytes, what);
  return p;
}

/* ---- the CPU reference, on all cores --------------------------------- */

#define MAX_REFERENCE_THREADS 64

typedef struct reference_slice {
  ptxq_type type;
  const uint8_t *weights; /* first row of the slice */
  const float *x;
  uint32_t k, rows, m;
  double *y; /* [m][rows] */
  int status;
} reference_slice;

static void *reference_slice_run(void *arg) {
  reference_slice *slice = arg;
  slice->status = ptxq_ref_gemv(slice->type, slice->weights, slice->k, slice->rows, slice->x,
                                slice->m, slice->y);
  return NULL;
}

int run_reference_gemv(ptxq_type type, const void *weights, uint32_t k, uint32_t n,
                       const float *x, uint32_t m, double *ref) {
  size_t row_bytes = 0;
  int status = ptxq_weight_bytes(type, k, 1, &row_bytes);
  if (status != PTXQ_OK) {
    fprintf(stderr, "ptxgen: run: ptxq_ref_gemv: %s: %s\n", ptxq_strerror(status),
            ptxq_last_error(NULL));
    return CLI_EXIT_FAILURE;
  }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  uint32_t threads = cores < 1 ? 1 : cores > MAX_REFERENCE_THREADS ? MAX_REFERENCE_THREADS
                                                                    : (uint32_t)cores;
  if (threads > n) threads = n;
  reference_slice slices[MAX_REFERENCE_THREADS];
  pthread_t ids[MAX_REFERENCE_THREADS];
  int started[MAX_REFERENCE_THREADS] = {0};
  for (uint32_t t = 0; t < threads; t++) {
    uint32_t first = (uint32_t)((uint64_t)n * t / threads);
    uint32_t end = (uint32_t)((uint64_t)n * (t + 1) / threads);
    slices[t] = (reference_slice){type, (const uint8_t *)weights + first * row_bytes, x, k,
                                  end - first, m, NULL, PTXQ_OK};
    slices[t].y = malloc((size_t)m * slices[t].rows * sizeof(double));
    if (!slices[t].y) {
      slices[t].status = PTXQ_ERR_NOMEM;
      continue;
    }
    /* A thread that cannot be started does its slice here instead. */
    started[t] = pthread_create(&ids[t], NULL, reference_slice_run, &slices[t]) == 0;
    if (!started[t]) reference_slice_run(&slices[t]);
  }
  uint32_t first = 0;
  for (uint32_t t = 0; t < threads; t++) {
    if (started[t]) pthread_join(ids[t], NULL);
    if (slices[t].status != PTXQ_OK && status == PTXQ_OK) status = slices[t].status;
    for (uint32_t mi = 0; status == PTXQ_OK && mi < m; mi++)
      memcpy(ref + (size_t)mi * n + first, slices[t].y + (size_t)mi * slices[t].rows,
             slices[t].rows * sizeof(double));
    first += slices[t].rows;
    free(slices[t].y);
  }
  if (status != PTXQ_OK) fprintf(stderr, "ptxgen: run: ptxq_ref_gemv: %s\n", ptxq_strerror(status));
  return status == PTXQ_OK ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

int run_report_ptxq(const ptxq_ctx *ctx, const char *what, int status) {
  fprintf(stderr, "ptxgen: run: %s: %s: %s\n", what, ptxq_strerror(status),
          ptxq_last_error(ctx));
  return CLI_EXIT_FAILURE;
}

int run_open_device(const char *key, const ptxgen_spec *spec, uint64_t seed, ptxq_ctx **ctx) {
  /* a tc=1 key reads Q4_K in the tile layout a tensor-core context stores */
  ptxq_options options = {.device = 0, .target_sm = spec->sm, .tensor_cores = spec->tc != 0};
  int status = ptxq_open(ctx, &options);
  if (status != PTXQ_OK) return run_report_ptxq(NULL, "ptxq_open", status);
  ptxq_device_info info;
  status = ptxq_device_info_get(*ctx, &info);
  if (status != PTXQ_OK) return run_report_ptxq(*ctx, "ptxq_device_info_get", status);
  printf("%s seed=%" PRIu64 " device=%s\n", key, seed, info.name);
  return CLI_EXIT_OK;
}

static int compare_floats(const void *a, const void *b) {
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

void run_print_timing(int reps, double us, const char *gbps_name, double bytes, const char *tail) {
  if (reps == 0)
    puts("kernel_us=- (--reps 0: one launch, not timed)");
  else
    printf("kernel_us=%.2f %s=%.1f (median of %d reps after %d warm-up%s)\n", us, gbps_name,
           bytes / (us * 1e3), reps, RUN_WARMUP_LAUNCHES, tail);
}

int run_time_launches(ptxq_ctx *ctx, run_launch_fn launch, void *arg, int reps, double *median_us) {
  if (reps == 0) { /* one launch, not timed: the kernel still runs at least once */
    int status = launch(ctx, arg);
    if (status == PTXQ_OK) status = ptxq_sync(ctx);
    return status == PTXQ_OK ? CLI_EXIT_OK : run_report_ptxq(ctx, "untimed launch", status);
  }
  ptxq_event *start = NULL, *end = NULL;
  float *times = run_alloc((size_t)reps * sizeof *times, "timings");
  if (!times) return CLI_EXIT_FAILURE;
  int status = ptxq_event_create(ctx, &start);
  if (status == PTXQ_OK) status = ptxq_event_create(ctx, &end);
  const char *what = "ptxq_event_create";
  for (int i = 0; status == PTXQ_OK && i < RUN_WARMUP_LAUNCHES; i++) {
    status = launch(ctx, arg);
    what = "warm-up launch";
  }
  for (int i = 0; status == PTXQ_OK && i < reps; i++) {
    what = "timed launch";
    status = ptxq_event_record(ctx, start);
    if (status == PTXQ_OK) status = launch(ctx, arg);
    if (status == PTXQ_OK) status = ptxq_event_record(ctx, end);
    if (status == PTXQ_OK) status = ptxq_event_elapsed_ms(ctx, start, end, &times[i]);
  }
  int result = CLI_EXIT_OK;
  if (status != PTXQ_OK) {
    result = run_report_ptxq(ctx, what, status);
  } else {
    qsort(times, (size_t)reps, sizeof *times, compare_floats);
    double mid = reps % 2 ? times[reps / 2] : 0.5 * ((double)times[reps / 2 - 1] + times[reps / 2]);
    *median_us = mid * 1e3;
  }
  if (start) ptxq_event_destroy(ctx, start);
  if (end) ptxq_event_destroy(ctx, end);
  free(times);
  return result;
}

/* A product is launched through ptxq_gemv, the way a user runs it, unless
 * the key names what ptxq_gemv would not choose: tuning (rows=, warps=,
 * preload=) or the gated epilogue (glu=, which no public op launches on
 * its own: ptxq_ffn runs it only followed by down). Then the key's own
 * kernel is launched, so that the kernel checked is the one the key names. */
typedef struct gemv_launch {
  const char *key; /* NULL: ptxq_gemv */
  ptxq_dev w, up;  /* up: U of a gated key, 0 for a plain one */
  ptxq_dev x, y;
  uint32_t m;
} gemv_launch;

static int launch_gemv(ptxq_ctx *ctx, void *arg) {
  gemv_launch *g = arg;
  if (!g->key) return ptxq_gemv(ctx, WEIGHT_NAME, g->x, g->y, g->m);
  void *plain[] = {&g->w, &g->x, &g->y};
  void *gated[] = {&g->w, &g->up, &g->x, &g->y}; /* the order ptxgen.h gives */
  return ptxq_kernel_launch(ctx, g->key, g->up ? gated : plain);
}

static int launched_by_key(const ptxgen_spec *spec) {
  return spec->rows != 0 || spec->warps != 0 || spec->preload != 0 || spec->glu != 0 || spec->tc != 0 || spec->idp != 0;
}

int run_poison(ptxq_ctx *ctx, ptxq_dev y, const uint8_t *nan_bytes, size_t bytes) {
  int status = ptxq_upload(ctx, y, nan_bytes, bytes);
  return status == PTXQ_OK ? CLI_EXIT_OK : run_report_ptxq(ctx, "ptxq_upload (run_poison y)", status);
}

/* Runs the m = 1 product of each row of x and compares it bit for bit with
 * the batched result y_batched. Prints batch_invariant=yes|no. */
static int check_batch_invariance(ptxq_ctx *ctx, const ptxgen_spec *spec,
                                  const gemv_launch *batched, const float *y_batched,
                                  const uint8_t *nan_bytes, int *invariant) {
  size_t row_bytes = (size_t)spec->n * sizeof(float);
  float *row = run_alloc(row_bytes, "one output row");
  if (!row) return CLI_EXIT_FAILURE;
  ptxq_dev y1 = 0;
  int status = ptxq_alloc(ctx, row_bytes, &y1);
  if (status != PTXQ_OK) {
    free(row);
    return run_report_ptxq(ctx, "ptxq_alloc (y of m=1)", status);
  }
  ptxgen_spec single = *spec;
  single.m = 1;
  char single_key[256];
  cli_format_key(&single, single_key, sizeof single_key);
  *invariant = 1;
  int result = CLI_EXIT_OK;
  for (uint32_t i = 0; i < spec->m && result == CLI_EXIT_OK; i++) {
    result = run_poison(ctx, y1, nan_bytes, row_bytes);
    if (result != CLI_EXIT_OK) break;
    gemv_launch one = {batched->key ? single_key : NULL, batched->w, batched->up,
                       batched->x + (ptxq_dev)i * spec->k * sizeof(float), y1, 1};
    status = launch_gemv(ctx, &one);
    if (status == PTXQ_OK) status = ptxq_download(ctx, row, y1, row_bytes);
    if (status != PTXQ_OK) {
      result = run_report_ptxq(ctx, "m=1 product", status);
      break;
    }
    const float *batched = y_batched + (size_t)i * spec->n;
    if (memcmp(row, batched, row_bytes) != 0 && *invariant) {
      *invariant = 0;
      for (uint32_t j = 0; j < spec->n; j++) {
        if (memcmp(&row[j], &batched[j], sizeof(float)) != 0) {
          fprintf(stderr,
                  "ptxgen: run: row %u of the m=%u product differs from its m=1 product at "
                  "column %u: %.9g (m=%u) vs %.9g (m=1)\n",
                  i, spec->m, j, (double)batched[j], spec->m, (double)row[j]);
          break;
        }
      }
    }
  }
  ptxq_free(ctx, y1);
  free(row);
  if (result == CLI_EXIT_OK) printf("batch_invariant=%s\n", *invariant ? "yes" : "no");
  return result;
}

int run_check_gemv(FILE *report, const char *prefix, uint32_t m, uint32_t n, const float *y,
                   const double *ref) {
  size_t count = (size_t)m * n;
  double max_diff = 0, max_ref = 0;
  size_t non_finite = 0, first_non_finite = 0;
  for (size_t i = 0; i < count; i++) {
    if (!isfinite(y[i])) {
      if (non_finite++ == 0) first_non_finite = i;
      continue;
    }
    max_diff = fmax(max_diff, fabs((double)y[i] - ref[i]));
    max_ref = fmax(max_ref, fabs(ref[i]));
  }
  double rel = max_ref > 0 ? max_diff / max_ref : max_diff;
  fprintf(report, "%smax_rel_err=%.3e (max|y-ref| / max|ref| over m*n outputs)\n", prefix, rel);
  int result = CLI_EXIT_OK;
  if (non_finite > 0) {
    fprintf(stderr, "ptxgen: run: %zu of %zu outputs are not finite, first y[%zu][%zu] = %g\n",
            non_finite, count, first_non_finite / n, first_non_finite % n,
            (double)y[first_non_finite]);
    result = CLI_EXIT_FAILURE;
  }
  if (rel > RUN_MAX_REL_ERR) {
    fprintf(stderr, "ptxgen: run: max_rel_err %.3e is above %.0e\n", rel, RUN_MAX_REL_ERR);
    result = CLI_EXIT_FAILURE;
  }
  return result;
}

/* ---- q4k_gemv and q6k_gemv keys, plain and gated -------------------------- */

/* What a q4k_gemv/q6k_gemv run holds on the host. A gated key (glu=) has a
 * second weight, U, of the same shape: y = act(x . W^T) * (x . U^T). */
typedef struct kquant_run {
  const ptxgen_spec *spec;
  ptxq_type type;
  int weight_count;     /* 1, or 2 for a gated key */
  size_t weight_bytes;  /* of one weight */
  uint8_t *weights[2];  /* W (the gate of a gated key), U */
  float *x, *y;
  double *ref;
  uint8_t *nan_bytes;   /* y's poison */
  size_t x_count, y_count;
} kquant_run;

static const char *const kquant_weight_names[2] = {WEIGHT_NAME, WEIGHT_NAME "_up"};

static void kquant_free(kquant_run *r) {
  free(r->weights[0]);
  free(r->weights[1]);
  free(r->x);
  free(r->y);
  free(r->ref);
  free(r->nan_bytes);
}

/* Allocates and fills the host data: W, then U, then x from the seed, so
 * that a plain key draws the same data as it did before gated keys ran. */
static int kquant_prepare(kquant_run *r, const ptxgen_spec *spec, uint64_t seed) {
  const int q6k = spec->kind == PTXGEN_KIND_Q6K_GEMV;
  size_t blocks = (size_t)spec->n * (spec->k / PTXQ_QK_K);
  *r = (kquant_run){.spec = spec,
                    .type = q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K,
                    .weight_count = spec->glu ? 2 : 1,
                    .weight_bytes = blocks * (q6k ? PTXQ_Q6_K_BLOCK_BYTES : PTXQ_Q4_K_BLOCK_BYTES),
                    .x_count = (size_t)spec->m * spec->k,
                    .y_count = (size_t)spec->m * spec->n};
  for (int w = 0; w < r->weight_count; w++)
    if (!(r->weights[w] = run_alloc(r->weight_bytes, w ? "the up weights" : "the weights")))
      return CLI_EXIT_FAILURE;
  r->x = run_alloc(r->x_count * sizeof *r->x, "x");
  r->y = run_alloc(r->y_count * sizeof *r->y, "y");
  r->ref = run_alloc(r->y_count * sizeof *r->ref, "the reference y");
  r->nan_bytes = run_alloc(r->y_count * sizeof *r->y, "the NaN poison");
  if (!r->x || !r->y || !r->ref || !r->nan_bytes) return CLI_EXIT_FAILURE;
  uint64_t state = seed;
  for (int w = 0; w < r->weight_count; w++) {
    if (q6k)
      random_q6k_blocks(&state, r->weights[w], blocks);
    else
      random_q4k_blocks(&state, r->weights[w], blocks);
  }
  random_activations(&state, r->x, r->x_count);
  memset(r->nan_bytes, 0xFF, r->y_count * sizeof *r->y);
  return CLI_EXIT_OK;
}

/* r->ref: x . W^T in fp64; for a gated key act(x . W^T) * (x . U^T), the
 * activation being ptxq_ref_glu, the fp64 formula the activation runner
 * checks against. It takes floats: both products are rounded to float
 * first, a change of at most 2^-24 of each, far below RUN_MAX_REL_ERR. */
static int kquant_reference(kquant_run *r) {
  const ptxgen_spec *s = r->spec;
  if (run_reference_gemv(r->type, r->weights[0], s->k, s->n, r->x, s->m, r->ref) != CLI_EXIT_OK)
    return CLI_EXIT_FAILURE;
  if (!s->glu) return CLI_EXIT_OK;
  double *up = run_alloc(r->y_count * sizeof *up, "the reference up product");
  float *gate_f = run_alloc(r->y_count * sizeof *gate_f, "the gate product as floats");
  float *up_f = run_alloc(r->y_count * sizeof *up_f, "the up product as floats");
  int result = CLI_EXIT_FAILURE;
  if (up && gate_f && up_f &&
      run_reference_gemv(r->type, r->weights[1], s->k, s->n, r->x, s->m, up) == CLI_EXIT_OK) {
    for (size_t i = 0; i < r->y_count; i++) gate_f[i] = (float)r->ref[i], up_f[i] = (float)up[i];
    ptxq_act act = s->glu == 1 ? PTXQ_ACT_SILU : PTXQ_ACT_GELU; /* swiglu, geglu (tanh) */
    int status = ptxq_ref_glu(act, gate_f, up_f, r->ref, r->y_count);
    if (status == PTXQ_OK)
      result = CLI_EXIT_OK;
    else
      fprintf(stderr, "ptxgen: run: ptxq_ref_glu: %s\n", ptxq_strerror(status));
  }
  free(up);
  free(gate_f);
  free(up_f);
  return result;
}

/* Uploads the weights and x, allocates y and poisons it; fills launch. */
static int kquant_upload(ptxq_ctx *ctx, const kquant_run *r, gemv_launch *launch) {
  const ptxgen_spec *s = r->spec;
  ptxq_dev weight_data[2] = {0, 0};
  for (int w = 0; w < r->weight_count; w++) {
    const char *name = kquant_weight_names[w];
    ptxq_weight_info info;
    int status = ptxq_weight_upload(ctx, name, r->type, s->k, s->n, r->weights[w], r->weight_bytes);
    if (status != PTXQ_OK) return run_report_ptxq(ctx, "ptxq_weight_upload", status);
    if ((status = ptxq_weight_info_get(ctx, name, &info)) != PTXQ_OK)
      return run_report_ptxq(ctx, "ptxq_weight_info_get", status);
    weight_data[w] = info.data;
  }
  ptxq_dev x_dev = 0, y_dev = 0;
  int status;
  if ((status = ptxq_alloc(ctx, r->x_count * sizeof *r->x, &x_dev)) != PTXQ_OK ||
      (status = ptxq_alloc(ctx, r->y_count * sizeof *r->y, &y_dev)) != PTXQ_OK)
    return run_report_ptxq(ctx, "ptxq_alloc", status);
  if ((status = ptxq_upload(ctx, x_dev, r->x, r->x_count * sizeof *r->x)) != PTXQ_OK)
    return run_report_ptxq(ctx, "ptxq_upload (x)", status);
  if (run_poison(ctx, y_dev, r->nan_bytes, r->y_count * sizeof *r->y) != CLI_EXIT_OK)
    return CLI_EXIT_FAILURE;
  *launch = (gemv_launch){NULL, weight_data[0], weight_data[1], x_dev, y_dev, s->m};
  return CLI_EXIT_OK;
}

static int run_kquant_gemv(const char *key, const ptxgen_spec *spec, uint64_t seed, int cpu_only,
                           int reps, int batch_check) {
  ptxq_ctx *ctx = NULL;
  kquant_run r;
  int result = CLI_EXIT_FAILURE, status;
  if (kquant_prepare(&r, spec, seed) != CLI_EXIT_OK) goto done;

  if (cpu_only) {
    printf("%s seed=%" PRIu64 " cpu\n", key, seed);
    double start = run_now_ms();
    if (kquant_reference(&r) != CLI_EXIT_OK) goto done;
    double elapsed = run_now_ms() - start;
    double checksum = 0;
    for (size_t i = 0; i < r.y_count; i++) checksum += r.ref[i];
    printf("ref_ms=%.1f checksum=%.17g (sum of y over m*n outputs)\n", elapsed, checksum);
    result = CLI_EXIT_OK;
    goto done;
  }

  if (run_open_device(key, spec, seed, &ctx) != CLI_EXIT_OK) goto done;
  gemv_launch batched;
  if (kquant_upload(ctx, &r, &batched) != CLI_EXIT_OK) goto done;
  if (launched_by_key(spec)) batched.key = key;
  if ((status = launch_gemv(ctx, &batched)) != PTXQ_OK) {
    run_report_ptxq(ctx, batched.key ? "ptxq_kernel_launch" : "ptxq_gemv", status);
    goto done;
  }
  if ((status = ptxq_download(ctx, r.y, batched.y, r.y_count * sizeof *r.y)) != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_download (y)", status);
    goto done;
  }
  if (kquant_reference(&r) != CLI_EXIT_OK) goto done;
  int accurate = run_check_gemv(stdout, "", spec->m, spec->n, r.y, r.ref) == CLI_EXIT_OK;
  int invariant = 1;
  if (spec->m > 1 && !batch_check)
    printf("batch_invariant=skipped (--no-batch-check)\n");
  else if (spec->m > 1 &&
           check_batch_invariance(ctx, spec, &batched, r.y, r.nan_bytes, &invariant) != CLI_EXIT_OK)
    goto done;
  double us = 0;
  if (run_time_launches(ctx, launch_gemv, &batched, reps, &us) != CLI_EXIT_OK) goto done;
  run_print_timing(reps, us, "weight_gbps", (double)r.weight_count * r.weight_bytes, ", weights hot");
  result = accurate && invariant ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
  ptxq_close(ctx); /* frees the weights and buffers too */
  kquant_free(&r);
  return result;
}

/* ---- stream_read ------------------------------------------------------------ */

typedef struct read_launch {
  const char *key;
  ptxq_dev src, sink;
} read_launch;

static int launch_read(ptxq_ctx *ctx, void *arg) {
  read_launch *r = arg;
  void *params[] = {&r->src, &r->sink};
  return ptxq_kernel_launch(ctx, r->key, params);
}

/* Fills bytes of device memory at dst with random bytes, a chunk at a time
 * (the buffer may be far larger than wise to hold twice). */
static int upload_random(ptxq_ctx *ctx, ptxq_dev dst, size_t bytes, uint64_t *state) {
  size_t chunk = bytes < ((size_t)64 << 20) ? bytes : ((size_t)64 << 20);
  uint8_t *buf = run_alloc(chunk, "a staging chunk");
  if (!buf) return CLI_EXIT_FAILURE;
  int status = PTXQ_OK;
  for (size_t off = 0; off < bytes && status == PTXQ_OK; off += chunk) {
    size_t len = bytes - off < chunk ? bytes - off : chunk;
    random_bytes(state, buf, len);
    status = ptxq_upload(ctx, dst + off, buf, len);
  }
  free(buf);
  return status == PTXQ_OK ? CLI_EXIT_OK : run_report_ptxq(ctx, "ptxq_upload (source)", status);
}

static int run_stream_read(const char *key, const ptxgen_spec *spec, uint64_t seed, int reps) {
  ptxq_ctx *ctx = NULL;
  int result = CLI_EXIT_FAILURE, status;
  if (run_open_device(key, spec, seed, &ctx) != CLI_EXIT_OK) goto done;
  size_t bytes = (size_t)spec->n * 16;
  read_launch launch = {key, 0, 0};
  uint32_t zero = 0;
  if ((status = ptxq_alloc(ctx, bytes, &launch.src)) != PTXQ_OK ||
      (status = ptxq_alloc(ctx, sizeof zero, &launch.sink)) != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_alloc", status);
    goto done;
  }
  uint64_t state = seed;
  if (upload_random(ctx, launch.src, bytes, &state) != CLI_EXIT_OK) goto done;
  if ((status = ptxq_upload(ctx, launch.sink, &zero, sizeof zero)) != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_upload (sink)", status);
    goto done;
  }
  double us = 0;
  if (run_time_launches(ctx, launch_read, &launch, reps, &us) != CLI_EXIT_OK) goto done;
  char tail[48];
  snprintf(tail, sizeof tail, ", %zu bytes", bytes);
  run_print_timing(reps, us, "read_gbps", (double)bytes, tail);
  result = CLI_EXIT_OK;
done:
  ptxq_close(ctx);
  return result;
}

int cli_run(int argc, char **argv) {
  const char *key_text = NULL, *seed_text = NULL, *reps_text = NULL;
  const char *gguf_path = NULL, *tensor = NULL, *x_path = NULL, *out_path = NULL, *m_text = NULL;
  int cpu_only = 0, batch_check = 1;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(run_usage, stdout);
      return CLI_EXIT_OK;
    }
  }
  for (int i = 1; i < argc; i++) {
    static const char *const names[] = {"--seed", "--reps", "--gguf", "--tensor",
                                        "--x",    "--out",  "--m"};
    const char **values[] = {&seed_text, &reps_text, &gguf_path, &tensor,
                             &x_path,    &out_path,  &m_text};
    int got = 0;
    for (size_t o = 0; got == 0 && o < sizeof names / sizeof names[0]; o++)
      got = cli_option_value(argc, argv, &i, names[o], values[o]);
    if (got < 0) return CLI_EXIT_USAGE;
    if (got > 0) continue;
    if (strcmp(argv[i], "--cpu") == 0) {
      cpu_only = 1;
      continue;
    }
    if (strcmp(argv[i], "--no-batch-check") == 0) {
      batch_check = 0;
      continue;
    }
    if (argv[i][0] == '-' || key_text) return cli_bad_argument("run", argv[i]);
    key_text = argv[i];
  }
  if (!gguf_path) {
    const char *needs_gguf = tensor ? "--tensor" : x_path ? "--x" : out_path ? "--out"
                           : m_text ? "--m" : NULL;
    if (needs_gguf) {
      fprintf(stderr, "ptxgen: run: %s is an option of --gguf runs (see `ptxgen run --help`)\n",
              needs_gguf);
      return CLI_EXIT_USAGE;
    }
  } else {
    if (!tensor) {
      fprintf(stderr, "ptxgen: run: --gguf needs --tensor NAME (`ptxgen gguf %s` lists them)\n",
              gguf_path);
      return CLI_EXIT_USAGE;
    }
    if (reps_text) {
      fprintf(stderr, "ptxgen: run: --reps is not an option of --gguf runs (they are not timed)\n");
      return CLI_EXIT_USAGE;
    }
    if (!batch_check) {
      fprintf(stderr, "ptxgen: run: --no-batch-check is not an option of --gguf runs (they make "
                      "no batch check)\n");
      return CLI_EXIT_USAGE;
    }
  }
  if (!key_text && !gguf_path) {
    fprintf(stderr, "ptxgen: run: missing KEY\n%s", run_usage);
    return CLI_EXIT_USAGE;
  }
  uint64_t seed = 1, reps = 50, m = 0;
  if (seed_text && cli_parse_u64("--seed", seed_text, 0, UINT64_MAX, &seed) != 0)
    return CLI_EXIT_USAGE;
  if (reps_text && cli_parse_u64("--reps", reps_text, 0, 100000, &reps) != 0)
    return CLI_EXIT_USAGE;
  if (m_text && cli_parse_u64("--m", m_text, 1, PTXGEN_GEMV_MAX_M, &m) != 0)
    return CLI_EXIT_USAGE;
  ptxgen_spec spec;
  char key[256];
  if (key_text) {
    if (cli_parse_key(key_text, &spec) != CLI_EXIT_OK) return CLI_EXIT_USAGE;
    cli_format_key(&spec, key, sizeof key);
  }
  if (gguf_path) {
    run_gguf_request request = {key_text ? key : NULL, key_text ? &spec : NULL, gguf_path, tensor,
                                x_path, out_path, (uint32_t)m, seed, cpu_only};
    return run_gguf(&request);
  }

  if (!batch_check && spec.kind != PTXGEN_KIND_Q4K_GEMV && spec.kind != PTXGEN_KIND_Q6K_GEMV) {
    fprintf(stderr, "ptxgen: run: --no-batch-check is an option of q4k_gemv and q6k_gemv keys\n");
    return CLI_EXIT_USAGE;
  }
  switch (spec.kind) {
  case PTXGEN_KIND_Q4K_GEMV:
  case PTXGEN_KIND_Q6K_GEMV:
    if (spec.n2 != 0) { /* a runner for one weight would check only the first */
      fprintf(stderr,
              "ptxgen: run: '%s' reads several weights (n2=%u): run has no runner for them; the gpu "
              "suite checks them (ptxq_gemv_multi%s)\n",
              key, spec.n2, spec.rope ? "_rope" : "");
      return CLI_EXIT_FAILURE;
    }
    return run_kquant_gemv(key, &spec, seed, cpu_only, (int)reps, batch_check);
  case PTXGEN_KIND_STREAM_READ:
    if (cpu_only) {
      fprintf(stderr, "ptxgen: run: no CPU reference for stream_read\n");
      return CLI_EXIT_FAILURE;
    }
    return run_stream_read(key, &spec, seed, (int)reps);
  case PTXGEN_KIND_GELU:
  case PTXGEN_KIND_GELU_ERF:
  case PTXGEN_KIND_SILU:
  case PTXGEN_KIND_SWIGLU:
  case PTXGEN_KIND_GEGLU:
    return run_activation(key, &spec, seed, cpu_only, (int)reps);
  case PTXGEN_KIND_ROPE:
    return run_rope(key, &spec, seed, cpu_only, (int)reps);
  default:
    fprintf(stderr, "ptxgen: run: no runner for the kind of '%s'\n", key);
    return CLI_EXIT_FAILURE;
  }
}
