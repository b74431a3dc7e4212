/*
 * cli_run_ops.c: `ptxgen run` for the elementwise activations (gelu,
 * gelu_erf, silu, swiglu, geglu) and for rope: seeded inputs, the key's own
 * kernel launched by its key (ptxq_kernel_launch, so that the kernel checked
 * is exactly the one the key names), the result compared with the fp64
 * reference (ptxq_ref_act, ptxq_ref_glu, ptxq_ref_rope), then timed.
 *
 * Activations: random inputs cover [-20, 20], the range the kernels promise
 * their accuracy over, and 0, -0, +-inf, NaN and +-1e30 are planted at fixed,
 * evenly spread positions (the first and the last value included, so the
 * scalar tail of the kernel meets them too). The promise checked is
 * |y - ref| <= 2e-6|ref| + 1e-7 wherever the reference is finite, and the
 * same class (NaN, +inf, -inf) wherever it is not; the class of a reference
 * is that of its float rounding, so a result past FLT_MAX must come out inf.
 * y is poisoned with NaN before the launch: an unwritten output fails.
 *
 * RoPE works in place, so its output cannot be poisoned; instead the dims
 * past n_dims must come back bit-identical to the input and the rotated ones
 * must match the reference (a kernel that skipped them would fail unless
 * every position were 0, and token 0 is always at 2^20 - 1, the largest
 * angle the runner tries).
 */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_run.h"

/* ---- activations -------------------------------------------------------- */

#define ACT_INPUT_RANGE 20.0f
#define ACT_REL_BOUND 2e-6
#define ACT_ABS_BOUND 1e-7
#define ACT_REL_FLOOR 1e-3 /* max_rel_err looks at |ref| >= this only */

static const float act_specials[] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e30f, -1e30f};
#define ACT_SPECIAL_COUNT (sizeof act_specials / sizeof act_specials[0])
/* Gated kinds plant each special in gate and in up, with a moderate partner
 * in the other input, so that act(gate) * up is a plain IEEE product of a
 * known class (a random partner near -20 could make act(gate) round to 0 on
 * one side only and turn inf * act(gate) into NaN there). */
#define ACT_MAX_PLANTED (2 * ACT_SPECIAL_COUNT)
#define GATE_PARTNER 1.25f
#define UP_PARTNER 0.75f

static int act_is_gated(ptxgen_kind kind) {
  return kind == PTXGEN_KIND_SWIGLU || kind == PTXGEN_KIND_GEGLU;
}

static ptxq_act act_of(ptxgen_kind kind) {
  switch (kind) {
  case PTXGEN_KIND_GELU_ERF: return PTXQ_ACT_GELU_ERF;
  case PTXGEN_KIND_SILU:
  case PTXGEN_KIND_SWIGLU: return PTXQ_ACT_SILU;
  default: return PTXQ_ACT_GELU; /* gelu, geglu */
  }
}

typedef struct act_data {
  size_t count;     /* m * n */
  int gated;
  float *in[2];     /* x, or gate and up */
  size_t planted[ACT_MAX_PLANTED];
  size_t planted_count;
} act_data;

/* Random inputs, then the specials. At most half the values are planted, so
 * that tiny shapes still run random inputs; planted positions are distinct
 * and spread from the first value to the last. */
static void act_fill(act_data *d, uint64_t *state) {
  for (int t = 0; t < 1 + d->gated; t++)
    for (size_t i = 0; i < d->count; i++) d->in[t][i] = run_random_unit(state) * ACT_INPUT_RANGE;
  size_t slots = d->gated ? ACT_MAX_PLANTED : ACT_SPECIAL_COUNT;
  d->planted_count = slots < d->count / 2 ? slots : d->count / 2;
  for (size_t s = 0; s < d->planted_count; s++) {
    size_t at = d->planted_count == 1 ? 0 : s * (d->count - 1) / (d->planted_count - 1);
    d->planted[s] = at;
    if (!d->gated) {
      d->in[0][at] = act_specials[s];
    } else if (s % 2 == 0) {
      d->in[0][at] = act_specials[s / 2];
      d->in[1][at] = UP_PARTNER;
    } else {
      d->in[0][at] = GATE_PARTNER;
      d->in[1][at] = act_specials[s / 2];
    }
  }
}

static int act_is_planted(const act_data *d, size_t i) {
  for (size_t s = 0; s < d->planted_count; s++)
    if (d->planted[s] == i) return 1;
  return 0;
}

static int act_reference(const ptxgen_spec *spec, const act_data *d, double *ref) {
  int status = d->gated ? ptxq_ref_glu(act_of(spec->kind), d->in[0], d->in[1], ref, d->count)
                        : ptxq_ref_act(act_of(spec->kind), d->in[0], ref, d->count);
  if (status != PTXQ_OK) {
    fprintf(stderr, "ptxgen: run: %s: %s\n", d->gated ? "ptxq_ref_glu" : "ptxq_ref_act",
            ptxq_strerror(status));
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

enum { CLASS_FINITE, CLASS_NAN, CLASS_PLUS_INF, CLASS_MINUS_INF };

/* The class of v once rounded to float (round to nearest: from
 * (2 - 2^-24) * 2^127 on, a value rounds to infinity). */
static int float_class(double v) {
  static const double overflow = 0x1.ffffffp127;
  if (isnan(v)) return CLASS_NAN;
  if (v >= overflow) return CLASS_PLUS_INF;
  if (v <= -overflow) return CLASS_MINUS_INF;
  return CLASS_FINITE;
}

static const char *class_name(int c) {
  return c == CLASS_NAN ? "NaN" : c == CLASS_PLUS_INF ? "+inf" : c == CLASS_MINUS_INF ? "-inf" : "finite";
}

/* The inputs of value i, for messages. */
static void act_describe_input(const act_data *d, size_t i, char *buf, size_t cap) {
  if (d->gated)
    snprintf(buf, cap, "gate %.9g, up %.9g", (double)d->in[0][i], (double)d->in[1][i]);
  else
    snprintf(buf, cap, "x %.9g", (double)d->in[0][i]);
}

/* Prints max_rel_err, bound_ratio and nonfinite; returns CLI_EXIT_FAILURE if
 * the bound or a class fails. */
static int act_compare(const ptxgen_spec *spec, const act_data *d, const float *y, const double *ref) {
  double max_rel = 0, worst_ratio = 0;
  size_t worst = d->count, nonfinite = 0, mismatches = 0, first_mismatch = 0;
  for (size_t i = 0; i < d->count; i++) {
    int want = float_class(ref[i]);
    if (want != CLASS_FINITE) {
      nonfinite++;
      if (float_class(y[i]) != want && mismatches++ == 0) first_mismatch = i;
      continue;
    }
    double diff = isfinite(y[i]) ? fabs((double)y[i] - ref[i]) : INFINITY;
    double ratio = diff / (ACT_REL_BOUND * fabs(ref[i]) + ACT_ABS_BOUND);
    if (fabs(ref[i]) >= ACT_REL_FLOOR) max_rel = fmax(max_rel, diff / fabs(ref[i]));
    if (worst == d->count || ratio > worst_ratio) worst_ratio = ratio, worst = i;
  }
  printf("max_rel_err=%.3e (max |y-ref|/|ref| over |ref| >= 1e-3)\n", max_rel);
  printf("bound_ratio=%.3f (<= 1 passes: |y-ref| <= 2e-6|ref| + 1e-7)\n", worst_ratio);
  printf("nonfinite=%s (%zu outputs whose reference is NaN or +-inf: same class)\n",
         mismatches ? "MISMATCH" : "ok", nonfinite);
  char input[96];
  int result = CLI_EXIT_OK;
  if (worst_ratio > 1) {
    act_describe_input(d, worst, input, sizeof input);
    fprintf(stderr,
            "ptxgen: run: worst output y[%zu][%zu] = %.9g, reference %.17g (%s): |y-ref| is %.3g times "
            "the bound\n",
            worst / spec->n, worst % spec->n, (double)y[worst], ref[worst], input, worst_ratio);
    result = CLI_EXIT_FAILURE;
  }
  if (mismatches) {
    act_describe_input(d, first_mismatch, input, sizeof input);
    fprintf(stderr,
            "ptxgen: run: %zu outputs differ in class from the reference, first y[%zu][%zu] = %.9g "
            "where the reference is %s (%s)\n",
            mismatches, first_mismatch / spec->n, first_mismatch % spec->n, (double)y[first_mismatch],
            class_name(float_class(ref[first_mismatch])), input);
    result = CLI_EXIT_FAILURE;
  }
  return result;
}

typedef struct act_launch {
  const char *key;
  int gated;
  ptxq_dev in[2], y;
} act_launch;

static int launch_act(ptxq_ctx *ctx, void *arg) {
  act_launch *a = arg;
  void *unary[] = {&a->in[0], &a->y};
  void *gated[] = {&a->in[0], &a->in[1], &a->y};
  return ptxq_kernel_launch(ctx, a->key, a->gated ? gated : unary);
}

/* Uploads the inputs, poisons y, launches once and downloads y. */
static int act_run_once(ptxq_ctx *ctx, const act_data *d, act_launch *launch, float *y) {
  size_t bytes = d->count * sizeof(float);
  uint8_t *nan_bytes = run_alloc(bytes, "the NaN poison");
  if (!nan_bytes) return CLI_EXIT_FAILURE;
  memset(nan_bytes, 0xFF, bytes);
  int status = PTXQ_OK;
  const char *what = "ptxq_alloc";
  for (int t = 0; status == PTXQ_OK && t < 1 + d->gated; t++) status = ptxq_alloc(ctx, bytes, &launch->in[t]);
  if (status == PTXQ_OK) status = ptxq_alloc(ctx, bytes, &launch->y);
  for (int t = 0; status == PTXQ_OK && t < 1 + d->gated; t++) {
    what = "ptxq_upload (inputs)";
    status = ptxq_upload(ctx, launch->in[t], d->in[t], bytes);
  }
  int result = CLI_EXIT_FAILURE;
  if (status != PTXQ_OK) {
    run_report_ptxq(ctx, what, status);
  } else if (run_poison(ctx, launch->y, nan_bytes, bytes) == CLI_EXIT_OK) {
    if ((status = launch_act(ctx, launch)) != PTXQ_OK)
      run_report_ptxq(ctx, "ptxq_kernel_launch", status);
    else if ((status = ptxq_download(ctx, y, launch->y, bytes)) != PTXQ_OK)
      run_report_ptxq(ctx, "ptxq_download (y)", status);
    else
      result = CLI_EXIT_OK;
  }
  free(nan_bytes);
  return result;
}

int run_activation(const char *key, const ptxgen_spec *spec, uint64_t seed, int cpu_only, int reps) {
  ptxq_ctx *ctx = NULL;
  act_data d = {.count = (size_t)spec->m * spec->n, .gated = act_is_gated(spec->kind)};
  float *y = NULL;
  double *ref = NULL;
  int result = CLI_EXIT_FAILURE;
  if (!cpu_only && run_open_device(key, spec, seed, &ctx) != CLI_EXIT_OK) goto done;
  d.in[0] = run_alloc(d.count * sizeof(float), d.gated ? "gate" : "x");
  if (d.gated) d.in[1] = run_alloc(d.count * sizeof(float), "up");
  y = run_alloc(d.count * sizeof *y, "y");
  ref = run_alloc(d.count * sizeof *ref, "the reference y");
  if (!d.in[0] || (d.gated && !d.in[1]) || !y || !ref) goto done;
  uint64_t state = seed;
  act_fill(&d, &state);

  if (cpu_only) {
    printf("%s seed=%" PRIu64 " cpu\n", key, seed);
    double start = run_now_ms();
    if (act_reference(spec, &d, ref) != CLI_EXIT_OK) goto done;
    double elapsed = run_now_ms() - start;
    /* The planted values are left out: +-1e30 would swamp the sum. */
    double checksum = 0;
    for (size_t i = 0; i < d.count; i++)
      if (!act_is_planted(&d, i)) checksum += ref[i];
    printf("ref_ms=%.1f checksum=%.17g (sum of the reference y, planted specials left out)\n", elapsed,
           checksum);
    result = CLI_EXIT_OK;
    goto done;
  }

  act_launch launch = {.key = key, .gated = d.gated};
  if (act_run_once(ctx, &d, &launch, y) != CLI_EXIT_OK) goto done;
  if (act_reference(spec, &d, ref) != CLI_EXIT_OK) goto done;
  int accurate = act_compare(spec, &d, y, ref) == CLI_EXIT_OK;
  double us = 0;
  if (run_time_launches(ctx, launch_act, &launch, reps, &us) != CLI_EXIT_OK) goto done;
  size_t bytes = (size_t)(d.gated ? 3 : 2) * d.count * sizeof(float);
  char tail[64];
  snprintf(tail, sizeof tail, "; %zu bytes: inputs read, y written", bytes);
  run_print_timing(reps, us, "gbps", (double)bytes, tail);
  result = accurate ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
  ptxq_close(ctx); /* frees the device buffers too */
  free(d.in[0]);
  free(d.in[1]);
  free(y);
  free(ref);
  return result;
}

/* ---- rope ------------------------------------------------------------------ */

#define ROPE_ABS_BOUND 2e-6
#define ROPE_MAX_POSITION (1u << 20)
#define ROPE_FREQ_FACTOR_MIN 1.0f
#define ROPE_FREQ_FACTOR_MAX 8.0f

/* The reference's parameters, every one of them from the key. */
static void rope_params_of(const ptxgen_spec *s, ptxq_rope_params *p) {
  ptxq_rope_params_init(p, s->mode == PTXQ_ROPE_NEOX ? PTXQ_ROPE_NEOX : PTXQ_ROPE_NORMAL, s->head_dim,
                        s->heads, s->kv_heads);
  p->n_dims = s->n_dims;
  p->base = s->base;
  p->freq_scale = s->freq_scale;
  p->ext_factor = s->ext_factor;
  p->attn_factor = s->attn_factor;
  p->beta_fast = s->beta_fast;
  p->beta_slow = s->beta_slow;
  p->n_ctx_orig = s->n_ctx_orig;
}

typedef struct rope_data {
  size_t q_count, k_count; /* floats */
  float *q, *k;
  int32_t *positions;      /* [m] */
  float *freq_factors;     /* [n_dims/2], NULL when the key has freq_factors=0 */
  double *q_ref, *k_ref;
} rope_data;

static void rope_fill(const ptxgen_spec *spec, rope_data *d, uint64_t *state) {
  for (size_t i = 0; i < d->q_count; i++) d->q[i] = run_random_unit(state);
  for (size_t i = 0; i < d->k_count; i++) d->k[i] = run_random_unit(state);
  for (uint32_t t = 0; t < spec->m; t++)
    d->positions[t] = (int32_t)(run_random_next(state) % (ROPE_MAX_POSITION + 1));
  d->positions[0] = (int32_t)(ROPE_MAX_POSITION - 1);
  if (d->freq_factors) {
    for (uint32_t i = 0; i < spec->n_dims / 2; i++) {
      float unit = (float)(run_random_next(state) >> 40) / (float)(1 << 24); /* [0, 1) */
      d->freq_factors[i] = ROPE_FREQ_FACTOR_MIN + (ROPE_FREQ_FACTOR_MAX - ROPE_FREQ_FACTOR_MIN) * unit;
    }
  }
}

static int rope_reference(const ptxgen_spec *spec, rope_data *d) {
  ptxq_rope_params params;
  rope_params_of(spec, &params);
  int status = ptxq_ref_rope(&params, d->freq_factors, d->positions, spec->m, d->q, d->k, d->q_ref, d->k_ref);
  if (status != PTXQ_OK) {
    fprintf(stderr, "ptxgen: run: ptxq_ref_rope: %s\n", ptxq_strerror(status));
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

typedef struct rope_result {
  double max_abs_err;
  const char *worst_tensor; /* "q" or "k"; NULL before any value */
  size_t worst;
  const char *changed_tensor; /* first passthrough dim that changed; NULL if none */
  size_t changed;
} rope_result;

/* Folds one tensor (q or k, count floats of head vectors) into result. */
static void rope_compare_tensor(const ptxgen_spec *spec, const char *name, const float *in, const float *out,
                                const double *ref, size_t count, rope_result *result) {
  for (size_t i = 0; i < count; i++) {
    double err = isfinite(out[i]) ? fabs((double)out[i] - ref[i]) : INFINITY;
    if (!result->worst_tensor || err > result->max_abs_err) {
      result->max_abs_err = err;
      result->worst_tensor = name, result->worst = i;
    }
    if (i % spec->head_dim >= spec->n_dims && !result->changed_tensor &&
        memcmp(&in[i], &out[i], sizeof(float)) != 0)
      result->changed_tensor = name, result->changed = i;
  }
}

/* "q[token][head][dim]" of flat index i of tensor name. */
static void rope_describe(const ptxgen_spec *spec, const char *name, size_t i, char *buf, size_t cap) {
  uint32_t heads = name[0] == 'q' ? spec->heads : spec->kv_heads;
  size_t vector = i / spec->head_dim;
  snprintf(buf, cap, "%s[%zu][%zu][%zu]", name, vector / heads, vector % heads, i % spec->head_dim);
}

/* Prints max_abs_err and passthrough; returns CLI_EXIT_FAILURE if either
 * fails. q_out and k_out are the kernel's results. */
static int rope_compare(const ptxgen_spec *spec, const rope_data *d, const float *q_out, const float *k_out) {
  rope_result r = {0};
  rope_compare_tensor(spec, "q", d->q, q_out, d->q_ref, d->q_count, &r);
  rope_compare_tensor(spec, "k", d->k, k_out, d->k_ref, d->k_count, &r);
  printf("max_abs_err=%.3e (<= 2e-6 passes)\n", r.max_abs_err);
  if (spec->n_dims < spec->head_dim)
    printf("passthrough=%s (dims %u..%u bit-identical to the input)\n", r.changed_tensor ? "CHANGED" : "ok",
           spec->n_dims, spec->head_dim - 1);
  else
    printf("passthrough=ok (no dims past n_dims)\n");
  char where[96];
  int result = CLI_EXIT_OK;
  if (!(r.max_abs_err <= ROPE_ABS_BOUND)) {
    int is_q = r.worst_tensor[0] == 'q';
    const float *in = is_q ? d->q : d->k, *out = is_q ? q_out : k_out;
    const double *ref = is_q ? d->q_ref : d->k_ref;
    rope_describe(spec, r.worst_tensor, r.worst, where, sizeof where);
    fprintf(stderr, "ptxgen: run: worst output %s = %.9g, reference %.17g (input %.9g, position %" PRId32 ")\n",
            where, (double)out[r.worst], ref[r.worst], (double)in[r.worst],
            d->positions[r.worst / ((size_t)(is_q ? spec->heads : spec->kv_heads) * spec->head_dim)]);
    result = CLI_EXIT_FAILURE;
  }
  if (r.changed_tensor) {
    int is_q = r.changed_tensor[0] == 'q';
    const float *in = is_q ? d->q : d->k, *out = is_q ? q_out : k_out;
    rope_describe(spec, r.changed_tensor, r.changed, where, sizeof where);
    fprintf(stderr, "ptxgen: run: passthrough dim %s changed: %.9g, input %.9g\n", where,
            (double)out[r.changed], (double)in[r.changed]);
    result = CLI_EXIT_FAILURE;
  }
  return result;
}

typedef struct rope_launch {
  const char *key;
  ptxq_dev q, k, positions, freq_factors; /* freq_factors 0 when the key has none */
} rope_launch;

static int launch_rope(ptxq_ctx *ctx, void *arg) {
  rope_launch *r = arg;
  void *params[] = {&r->q, &r->k, &r->positions, &r->freq_factors};
  return ptxq_kernel_launch(ctx, r->key, params);
}

/* Uploads q, k, positions and freq_factors, rotates once and downloads q and
 * k into q_out and k_out. */
static int rope_run_once(ptxq_ctx *ctx, const ptxgen_spec *spec, const rope_data *d, rope_launch *launch,
                         float *q_out, float *k_out) {
  size_t q_bytes = d->q_count * sizeof(float), k_bytes = d->k_count * sizeof(float);
  size_t pos_bytes = spec->m * sizeof(int32_t), ff_bytes = spec->n_dims / 2 * sizeof(float);
  int status;
  if ((status = ptxq_alloc(ctx, q_bytes, &launch->q)) != PTXQ_OK ||
      (status = ptxq_alloc(ctx, k_bytes, &launch->k)) != PTXQ_OK ||
      (status = ptxq_alloc(ctx, pos_bytes, &launch->positions)) != PTXQ_OK ||
      (d->freq_factors && (status = ptxq_alloc(ctx, ff_bytes, &launch->freq_factors)) != PTXQ_OK))
    return run_report_ptxq(ctx, "ptxq_alloc", status);
  if ((status = ptxq_upload(ctx, launch->q, d->q, q_bytes)) != PTXQ_OK ||
      (status = ptxq_upload(ctx, launch->k, d->k, k_bytes)) != PTXQ_OK ||
      (status = ptxq_upload(ctx, launch->positions, d->positions, pos_bytes)) != PTXQ_OK ||
      (d->freq_factors &&
       (status = ptxq_upload(ctx, launch->freq_factors, d->freq_factors, ff_bytes)) != PTXQ_OK))
    return run_report_ptxq(ctx, "ptxq_upload (inputs)", status);
  if ((status = launch_rope(ctx, launch)) != PTXQ_OK) return run_report_ptxq(ctx, "ptxq_kernel_launch", status);
  if ((status = ptxq_download(ctx, q_out, launch->q, q_bytes)) != PTXQ_OK ||
      (status = ptxq_download(ctx, k_out, launch->k, k_bytes)) != PTXQ_OK)
    return run_report_ptxq(ctx, "ptxq_download (q, k)", status);
  return CLI_EXIT_OK;
}

int run_rope(const char *key, const ptxgen_spec *spec, uint64_t seed, int cpu_only, int reps) {
  ptxq_ctx *ctx = NULL;
  rope_data d = {.q_count = (size_t)spec->m * spec->heads * spec->head_dim,
                 .k_count = (size_t)spec->m * spec->kv_heads * spec->head_dim};
  float *q_out = NULL, *k_out = NULL;
  int result = CLI_EXIT_FAILURE;
  if (!cpu_only && run_open_device(key, spec, seed, &ctx) != CLI_EXIT_OK) goto done;
  d.q = run_alloc(d.q_count * sizeof(float), "q");
  d.k = run_alloc(d.k_count * sizeof(float), "k");
  d.positions = run_alloc(spec->m * sizeof(int32_t), "the positions");
  if (spec->freq_factors) d.freq_factors = run_alloc(spec->n_dims / 2 * sizeof(float), "freq_factors");
  d.q_ref = run_alloc(d.q_count * sizeof(double), "the reference q");
  d.k_ref = run_alloc(d.k_count * sizeof(double), "the reference k");
  if (!d.q || !d.k || !d.positions || (spec->freq_factors && !d.freq_factors) || !d.q_ref || !d.k_ref)
    goto done;
  uint64_t state = seed;
  rope_fill(spec, &d, &state);

  if (cpu_only) {
    printf("%s seed=%" PRIu64 " cpu\n", key, seed);
    double start = run_now_ms();
    if (rope_reference(spec, &d) != CLI_EXIT_OK) goto done;
    double elapsed = run_now_ms() - start;
    double checksum = 0;
    for (size_t i = 0; i < d.q_count; i++) checksum += d.q_ref[i];
    for (size_t i = 0; i < d.k_count; i++) checksum += d.k_ref[i];
    printf("ref_ms=%.1f checksum=%.17g (sum of the rotated q and k)\n", elapsed, checksum);
    result = CLI_EXIT_OK;
    goto done;
  }

  q_out = run_alloc(d.q_count * sizeof(float), "the rotated q");
  k_out = run_alloc(d.k_count * sizeof(float), "the rotated k");
  if (!q_out || !k_out) goto done;
  rope_launch launch = {.key = key};
  if (rope_run_once(ctx, spec, &d, &launch, q_out, k_out) != CLI_EXIT_OK) goto done;
  if (rope_reference(spec, &d) != CLI_EXIT_OK) goto done;
  int accurate = rope_compare(spec, &d, q_out, k_out) == CLI_EXIT_OK;
  /* The timed launches keep rotating q and k in place: the work per launch
   * does not depend on the values. */
  double us = 0;
  if (run_time_launches(ctx, launch_rope, &launch, reps, &us) != CLI_EXIT_OK) goto done;
  size_t bytes = 2 * (d.q_count + d.k_count) * sizeof(float);
  char tail[64];
  snprintf(tail, sizeof tail, "; %zu bytes: q and k read and written", bytes);
  run_print_timing(reps, us, "gbps", (double)bytes, tail);
  result = accurate ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
  ptxq_close(ctx);
  free(d.q);
  free(d.k);
  free(d.positions);
  free(d.freq_factors);
  free(d.q_ref);
  free(d.k_ref);
  free(q_out);
  free(k_out);
  return result;
}
