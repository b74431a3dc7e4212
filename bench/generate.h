/*
 * generate.h: the PTX-generation rows of ptxq-bench (kernels "gen"): how
 * long ptxgen takes to write each kernel the benchmark uses. CPU only.
 */
#ifndef PTXQ_BENCH_GENERATE_H
#define PTXQ_BENCH_GENERATE_H

#include <stddef.h>
#include <stdio.h>

#define GENERATE_LIMIT_US 100.0 /* the target per kernel */

typedef struct gen_result {
  char key[128];
  double median_us; /* ptxgen_emit alone (the key parsed once, before) */
  size_t ptx_bytes;
} gen_result;

/* Times `reps` emissions of each key of `keys` (one per line), prints one
 * line per key and a summary. Returns 0, or 1 if a key does not generate.
 * *out is malloc'd, *count rows. */
int generate_bench(const char *keys, int reps, gen_result **out, size_t *count);
void generate_json_record(FILE *f, const gen_result *g);

#endif
