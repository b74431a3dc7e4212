/*
 * generate.c: the PTX-generation rows of ptxq-bench (see generate.h).
 *
 * Each distinct key is parsed once, then ptxgen_emit runs `reps` times after one
 * warm-up and the median is kept: what the runtime pays for the text of a
 * kernel on first use, before the driver's JIT (which the first-use figure
 * of the JIT measures separately).
 */
#define _POSIX_C_SOURCE 200809L
#include "generate.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ptxgen.h"

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The median time of reps emissions of spec, and the PTX's size. */
static int time_key(const ptxgen_spec *spec, int reps, double *samples, gen_result *r)
{
  char msg[256];
  for (int i = -1; i < reps; i++) { /* i = -1: warm-up */
    ptxgen_kernel k;
    memset(&k, 0, sizeof k);
    double start = now_us();
    int st = ptxgen_emit(spec, &k, msg, sizeof msg);
    double end = now_us();
    if (st != PTXGEN_OK) {
      fprintf(stderr, "ptxq-bench: generating %s: %s\n", r->key, msg);
      return 1;
    }
    r->ptx_bytes = k.ptx_len;
    ptxgen_kernel_free(&k);
    if (i >= 0)
      samples[i] = end - start;
  }
  qsort(samples, (size_t)reps, sizeof *samples, compare_double);
  r->median_us = samples[reps / 2];
  return 0;
}

int generate_bench(const char *keys, int reps, gen_result **out, size_t *count)
{
  size_t lines = 0;
  for (const char *p = keys; *p; p++)
    lines += *p == '\n';
  gen_result *rows = calloc(lines + 1, sizeof *rows);
  double *samples = calloc((size_t)reps, sizeof *samples);
  if (!rows || !samples) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    free(rows);
    free(samples);
    return 1;
  }
  printf("%-60s %10s %10s\n", "PTX generation: key", "median_us", "ptx_bytes");
  size_t n = 0;
  int rc = 0;
  double worst = 0;
  size_t within = 0, within_half = 0; /* kernels within the target, and within half of it */
  for (const char *line = keys; *line && !rc; line = strchr(line, '\n') + 1) {
    size_t len = strcspn(line, "\n");
    if (len == 0)
      break;
    if (len >= sizeof rows[n].key) {
      fprintf(stderr, "ptxq-bench: a kernel key of %zu characters: longer than %zu\n", len, sizeof rows[n].key - 1);
      rc = 1;
      break;
    }
    memcpy(rows[n].key, line, len);
    rows[n].key[len] = '\0';
    bool seen = false; /* a key several rows use is timed once */
    for (size_t i = 0; i < n && !seen; i++)
      seen = strcmp(rows[i].key, rows[n].key) == 0;
    if (seen) {
      if (!line[len])
        break;
      continue;
    }
    ptxgen_spec spec;
    char msg[256];
    if (ptxgen_spec_parse(rows[n].key, &spec, msg, sizeof msg) != PTXGEN_OK) {
      fprintf(stderr, "ptxq-bench: key %s: %s\n", rows[n].key, msg);
      rc = 1;
    } else if (!(rc = time_key(&spec, reps, samples, &rows[n]))) {
      printf("%-60s %10.1f %10zu\n", rows[n].key, rows[n].median_us, rows[n].ptx_bytes);
      worst = rows[n].median_us > worst ? rows[n].median_us : worst;
      within += rows[n].median_us <= GENERATE_LIMIT_US;
      within_half += rows[n].median_us <= GENERATE_LIMIT_US / 2;
      n++;
    }
    if (!line[len])
      break;
  }
  if (!rc)
    printf("PTX generation: %zu kernels, slowest %.1f us (target <= %.0f us per kernel); %zu within it, %zu within "
           "%.0f us\n",
           n, worst, GENERATE_LIMIT_US, within, within_half, GENERATE_LIMIT_US / 2);
  free(samples);
  *out = rows;
  *count = n;
  return rc;
}

void generate_json_record(FILE *f, const gen_result *g)
{
  fprintf(f, "{\"kernel\": \"%.*s\", \"key\": \"%s\", \"mode\": \"generate\", \"median_us\": %.3f, "
             "\"ptx_bytes\": %zu}",
          (int)strcspn(g->key, ":"), g->key, g->key, g->median_us, g->ptx_bytes);
}
