/*
 * cli_run_gguf.c: `ptxgen run [KEY] --gguf FILE --tensor NAME`, a GEMV on a
 * tensor of a real GGUF file rather than on random weights: the way to check
 * the runtime on the bytes a model ships, and to get y for a given x.
 *
 * The tensor is read through ptxq's own GGUF reader (so a file it refuses is
 * reported with the reader's detail), uploaded with ptxq_weight_upload and
 * multiplied with ptxq_gemv_host, the calls a user makes; the fp64
 * reference (ptxq_ref_gemv) judges the result. With --cpu the reference
 * alone runs, which also covers f16 and f32 tensors (norm vectors, some
 * output heads) that the GPU GEMV does not take.
 *
 * stdout (or --out) carries y only, one value per line, so that it can be
 * compared or fed on as it is; everything else goes to stderr.
 *
 * Exit statuses: 2 when the command is inconsistent (a KEY that is not a
 * GEMV of this tensor's type and shape, --m against the KEY's m); 1 when
 * the work fails (the file, the tensor, x, the device, a wrong result).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli_run.h"

#define WEIGHT_NAME "ptxgen_run_gguf"

/* The tensor as the [n][k] matrix the GEMV multiplies by. */
typedef struct gguf_matrix {
  const char *name; /* as given by --tensor */
  ptxq_type type;
  uint32_t k, n;
  const void *data; /* into the mapping (or data_copy) */
  size_t bytes;
  void *data_copy;  /* an aligned copy of f32 data the mapping holds misaligned, or NULL */
} gguf_matrix;

static const char *type_name(uint32_t type) {
  const char *name = ptxq_ggml_type_name(type);
  return name ? name : "(unknown type)";
}

/* What can be said about KEY before the file is read: a plain GEMV key
 * whose m agrees with --m. */
static int check_key_alone(const run_gguf_request *r) {
  const ptxgen_spec *spec = r->spec;
  if (spec->kind != PTXGEN_KIND_Q4K_GEMV && spec->kind != PTXGEN_KIND_Q6K_GEMV) {
    fprintf(stderr,
            "ptxgen: run: key '%s' is not a GEMV key: --gguf takes q4k_gemv or q6k_gemv keys\n",
            r->key);
    return CLI_EXIT_USAGE;
  }
  if (spec->glu != 0) {
    fprintf(stderr, "ptxgen: run: key '%s' is a gated GEMV (glu=): --gguf runs plain GEMVs\n",
            r->key);
    return CLI_EXIT_USAGE;
  }
  if (r->m != 0 && r->m != spec->m) {
    fprintf(stderr, "ptxgen: run: --m %u disagrees with m=%u of key '%s'\n", r->m, spec->m, r->key);
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* KEY must name the product of this tensor: its kind, k and n. */
static int check_key_against_tensor(const run_gguf_request *r, uint32_t type, uint32_t k,
                                    uint32_t n) {
  const ptxgen_spec *spec = r->spec;
  int q6k = spec->kind == PTXGEN_KIND_Q6K_GEMV;
  uint32_t key_type = q6k ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K;
  if (type != key_type) {
    fprintf(stderr, "ptxgen: run: key '%s' is a %s GEMV but tensor '%s' is %s\n", r->key,
            type_name(key_type), r->tensor, type_name(type));
    return CLI_EXIT_USAGE;
  }
  if (spec->k != k || spec->n != n) {
    const char *which = spec->k != k ? "k" : "n";
    fprintf(stderr, "ptxgen: run: key '%s' has %s=%u but tensor '%s' has %s=%u (k=%u, n=%u)\n",
            r->key, which, spec->k != k ? spec->k : spec->n, r->tensor, which,
            spec->k != k ? k : n, k, n);
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

/* Fills w from the tensor; checks its shape, type and size. */
static int tensor_matrix(const run_gguf_request *r, const ptxq_gguf_tensor *t, gguf_matrix *w) {
  uint64_t n = 1;
  for (uint32_t d = 1; d < t->n_dims; d++) n *= t->dims[d]; /* the reader bounds the product */
  if (t->dims[0] > UINT32_MAX || n > UINT32_MAX) {
    fprintf(stderr, "ptxgen: run: tensor '%s': k=%" PRIu64 " n=%" PRIu64
            " is beyond a GEMV's 32-bit sizes\n", r->tensor, t->dims[0], n);
    return CLI_EXIT_FAILURE;
  }
  *w = (gguf_matrix){r->tensor, (ptxq_type)t->type, (uint32_t)t->dims[0], (uint32_t)n, t->data,
                     (size_t)t->bytes, NULL};
  if (r->spec && check_key_against_tensor(r, t->type, w->k, w->n) != CLI_EXIT_OK)
    return CLI_EXIT_USAGE;
  int gpu_type = t->type == PTXQ_TYPE_Q4_K || t->type == PTXQ_TYPE_Q6_K;
  int cpu_type = gpu_type || t->type == PTXQ_TYPE_F32 || t->type == PTXQ_TYPE_F16;
  if (!cpu_type || (!gpu_type && !r->cpu_only)) {
    fprintf(stderr, "ptxgen: run: tensor '%s' is %s: the GPU GEMV takes q4_K and q6_K%s\n",
            r->tensor, type_name(t->type),
            cpu_type ? "; --cpu runs the reference on it" : ", --cpu also f16 and f32");
    return CLI_EXIT_FAILURE;
  }
  size_t want = 0;
  if (ptxq_weight_bytes(w->type, w->k, w->n, &want) != PTXQ_OK || want != t->bytes) {
    fprintf(stderr, "ptxgen: run: tensor '%s' (%s k=%u n=%u) holds %" PRIu64
            " bytes, not the %zu of its type and shape\n", r->tensor, type_name(t->type), w->k,
            w->n, t->bytes, want);
    return CLI_EXIT_FAILURE;
  }
  /* The reference reads f32 weights in place as floats; a file whose
   * alignment leaves them misaligned gets an aligned copy instead. */
  if (w->type == PTXQ_TYPE_F32 && (uintptr_t)w->data % sizeof(float) != 0) {
    if (!(w->data_copy = run_alloc(w->bytes, "an aligned copy of the tensor")))
      return CLI_EXIT_FAILURE;
    memcpy(w->data_copy, w->data, w->bytes);
    w->data = w->data_copy;
  }
  return CLI_EXIT_OK;
}

/* x[count] from a file of exactly count little-endian fp32 values, all
 * finite. */
static int read_x(const char *path, float *x, size_t count) {
  FILE *file = fopen(path, "rb");
  if (!file) {
    fprintf(stderr, "ptxgen: run: --x %s: cannot open: %s\n", path, strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  size_t want = count * sizeof(float);
  size_t got = fread(x, 1, want, file);
  int longer = got == want && fgetc(file) != EOF;
  int failed = ferror(file);
  struct stat st;
  int sized = fstat(fileno(file), &st) == 0 && S_ISREG(st.st_mode);
  fclose(file);
  if (failed) {
    fprintf(stderr, "ptxgen: run: --x %s: cannot read\n", path);
    return CLI_EXIT_FAILURE;
  }
  if (got != want || longer) {
    if (sized)
      fprintf(stderr, "ptxgen: run: --x %s has %jd bytes; want m*k = %zu fp32 values (%zu bytes)\n",
              path, (intmax_t)st.st_size, count, want);
    else
      fprintf(stderr,
              "ptxgen: run: --x %s has %s %zu bytes; want m*k = %zu fp32 values (%zu bytes)\n",
              path, longer ? "more than" : "only", got, count, want);
    return CLI_EXIT_FAILURE;
  }
  const unsigned char *bytes = (const unsigned char *)x;
  for (size_t i = 0; i < count; i++) {
    const unsigned char *b = bytes + 4 * i;
    uint32_t bits = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                    (uint32_t)b[3] << 24;
    memcpy(&x[i], &bits, sizeof bits); /* in place: value i only reads bytes of value i */
    if (!isfinite(x[i])) {
      fprintf(stderr, "ptxgen: run: --x %s: value %zu is %g; x must be finite\n", path, i,
              (double)x[i]);
      return CLI_EXIT_FAILURE;
    }
  }
  return CLI_EXIT_OK;
}

/* y, one value per line: the float result (%.9g, which round-trips) or the
 * fp64 reference (%.17g). */
static int write_y(const char *out_path, size_t count, const float *y32, const double *y64) {
  FILE *out = out_path ? fopen(out_path, "w") : stdout;
  if (!out) {
    fprintf(stderr, "ptxgen: run: --out %s: cannot open: %s\n", out_path, strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  for (size_t i = 0; i < count; i++) {
    if (y32) fprintf(out, "%.9g\n", (double)y32[i]);
    else fprintf(out, "%.17g\n", y64[i]);
  }
  int ok = !ferror(out);
  ok = (out == stdout ? fflush(out) : fclose(out)) == 0 && ok;
  if (!ok) {
    fprintf(stderr, "ptxgen: run: cannot write y to %s\n", out_path ? out_path : "stdout");
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

/* A key with tuning (rows=, warps=) is launched by itself, so that the
 * kernel checked is the one it names (ptxq_gemv would pick its own). */
static int launch_key(ptxq_ctx *ctx, const char *key, const gguf_matrix *w, uint32_t m,
                      const float *x, float *y) {
  size_t x_bytes = (size_t)m * w->k * sizeof(float), y_bytes = (size_t)m * w->n * sizeof(float);
  ptxq_weight_info info;
  ptxq_dev x_dev = 0, y_dev = 0;
  const char *what = "ptxq_weight_info_get";
  int status = ptxq_weight_info_get(ctx, WEIGHT_NAME, &info);
  if (status == PTXQ_OK) {
    what = "ptxq_alloc (x)";
    status = ptxq_alloc(ctx, x_bytes, &x_dev);
  }
  if (status == PTXQ_OK) {
    what = "ptxq_alloc (y)";
    status = ptxq_alloc(ctx, y_bytes, &y_dev);
  }
  if (status == PTXQ_OK) {
    what = "ptxq_upload (x)";
    status = ptxq_upload(ctx, x_dev, x, x_bytes);
  }
  if (status == PTXQ_OK) {
    /* y poisoned with the host y's NaNs: an output the kernel skips shows. */
    what = "ptxq_upload (y)";
    status = ptxq_upload(ctx, y_dev, y, y_bytes);
  }
  if (status == PTXQ_OK) {
    what = "ptxq_kernel_launch";
    void *params[] = {&info.data, &x_dev, &y_dev};
    status = ptxq_kernel_launch(ctx, key, params);
  }
  if (status == PTXQ_OK) {
    what = "ptxq_download (y)";
    status = ptxq_download(ctx, y, y_dev, y_bytes);
  }
  if (status != PTXQ_OK) run_report_ptxq(ctx, what, status);
  if (x_dev) ptxq_free(ctx, x_dev);
  if (y_dev) ptxq_free(ctx, y_dev);
  return status == PTXQ_OK ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
}

/* y = x . W^T on the GPU (y arrives filled with NaN). */
static int gpu_gemv(const run_gguf_request *r, const gguf_matrix *w, uint32_t m, const float *x,
                    float *y) {
  /* a tc=1 key reads Q4_K or Q6_K in the tile layout a tensor-core context stores */
  ptxq_options options = {.device = 0, .target_sm = r->spec ? r->spec->sm : 0,
                          .tensor_cores = r->spec != NULL && r->spec->tc != 0};
  ptxq_ctx *ctx = NULL;
  int status = ptxq_open(&ctx, &options);
  if (status != PTXQ_OK) return run_report_ptxq(NULL, "ptxq_open", status);
  int result = CLI_EXIT_FAILURE;
  ptxq_device_info info;
  if ((status = ptxq_device_info_get(ctx, &info)) != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_device_info_get", status);
    goto done;
  }
  fprintf(stderr, "ptxgen: run: device=%s sm_%u kernels\n", info.name, info.target_sm);
  status = ptxq_weight_upload(ctx, WEIGHT_NAME, w->type, w->k, w->n, w->data, w->bytes);
  if (status != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_weight_upload", status);
    goto done;
  }
  if (r->spec && (r->spec->rows != 0 || r->spec->warps != 0 || r->spec->preload != 0)) {
    result = launch_key(ctx, r->key, w, m, x, y);
  } else if ((status = ptxq_gemv_host(ctx, WEIGHT_NAME, x, y, m)) != PTXQ_OK) {
    run_report_ptxq(ctx, "ptxq_gemv_host", status);
  } else {
    result = CLI_EXIT_OK;
  }
done:
  ptxq_close(ctx); /* frees the weight too */
  return result;
}

/* The product itself, once the tensor is known to suit it. */
static int run_matrix(const run_gguf_request *r, const gguf_matrix *w, uint32_t m) {
  size_t x_count = (size_t)m * w->k, y_count = (size_t)m * w->n;
  float *x = run_alloc(x_count * sizeof *x, "x");
  float *y = r->cpu_only ? NULL : run_alloc(y_count * sizeof *y, "y");
  double *ref = run_alloc(y_count * sizeof *ref, "the reference y");
  int result = CLI_EXIT_FAILURE;
  if (!x || (!r->cpu_only && !y) || !ref) goto done;
  if (r->x_path) {
    if (read_x(r->x_path, x, x_count) != CLI_EXIT_OK) goto done;
  } else {
    uint64_t state = r->seed;
    for (size_t i = 0; i < x_count; i++) x[i] = run_random_unit(&state);
  }
  fprintf(stderr, "ptxgen: run: %s %s k=%u n=%u m=%u", w->name, type_name(w->type), w->k, w->n, m);
  if (r->x_path) fprintf(stderr, " x=%s", r->x_path);
  else fprintf(stderr, " seed=%" PRIu64, r->seed);
  fprintf(stderr, "%s\n", r->cpu_only ? " cpu" : "");

  if (r->cpu_only) {
    if (run_reference_gemv(w->type, w->data, w->k, w->n, x, m, ref) != CLI_EXIT_OK) goto done;
    result = write_y(r->out_path, y_count, NULL, ref);
    goto done;
  }
  for (size_t i = 0; i < y_count; i++) y[i] = NAN;
  if (gpu_gemv(r, w, m, x, y) != CLI_EXIT_OK) goto done;
  if (run_reference_gemv(w->type, w->data, w->k, w->n, x, m, ref) != CLI_EXIT_OK) goto done;
  /* y is written even when it is wrong: it is what there is to look at. */
  int written = write_y(r->out_path, y_count, y, NULL) == CLI_EXIT_OK;
  int accurate = run_check_gemv(stderr, "ptxgen: run: ", m, w->n, y, ref) == CLI_EXIT_OK;
  result = written && accurate ? CLI_EXIT_OK : CLI_EXIT_FAILURE;
done:
  free(x);
  free(y);
  free(ref);
  return result;
}

int run_gguf(const run_gguf_request *r) {
  if (r->spec && check_key_alone(r) != CLI_EXIT_OK) return CLI_EXIT_USAGE;
  uint32_t m = r->spec ? r->spec->m : r->m ? r->m : 1;
  ptxq_gguf *file = NULL;
  if (ptxq_gguf_open(r->path, &file) != PTXQ_OK) {
    fprintf(stderr, "ptxgen: %s: %s\n", r->path, ptxq_last_error(NULL));
    return CLI_EXIT_FAILURE;
  }
  ptxq_gguf_tensor tensor;
  gguf_matrix w = {0};
  int result;
  if (ptxq_gguf_tensor_find(file, r->tensor, &tensor) != PTXQ_OK) {
    fprintf(stderr, "ptxgen: run: %s: %s (`ptxgen gguf %s` lists the tensors)\n", r->path,
            ptxq_last_error(NULL), r->path);
    result = CLI_EXIT_FAILURE;
  } else if ((result = tensor_matrix(r, &tensor, &w)) == CLI_EXIT_OK) {
    result = run_matrix(r, &w, m);
  }
  free(w.data_copy);
  ptxq_gguf_close(file);
  return result;
}
