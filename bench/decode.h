/*
 * decode.h: the decode-step benchmark of ptxq-bench (bench/decode.c).
 *
 * A whole decode step of a Llama-3-8B-shaped model, every layer with its
 * own weights, run several ways: replayed as one captured graph, as direct
 * launches, replayed as a graph in contexts opened with PTXQ_FFN_UNFUSED=1
 * (the FFN's unfused path) and PTXQ_PDL=0, and its bytes read op by op by
 * the read probe (the step's yardstick). bench.c measures the read
 * ceiling and owns the context; this file does the rest and hands back one
 * record per (mode, m).
 */
#ifndef PTXQ_BENCH_DECODE_H
#define PTXQ_BENCH_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "ptxq.h"

#define DECODE_DEFAULT_LAYERS 32u
#define DECODE_MAX_LAYERS 256u
#define DECODE_MIN_RUNS 20 /* timed steps per record, whatever --reps says */

typedef struct decode_config {
  ptxq_ctx *ctx;                 /* the benchmark's context (its FFN path is the fused one) */
  const ptxq_device_info *info;  /* of ctx */
  ptxq_options open_options;     /* to open the unfused context the same way */
  size_t device_bytes_in_use;    /* already held on the device by the caller */
  ptxq_dev read_buf, read_sink;  /* the read ceiling's buffer (random bytes) and sink: the read step's */
  size_t read_bytes;             /* of read_buf, many times the L2 */
  double ceiling_gbps;           /* the read ceiling measured in this run */
  uint32_t layers;               /* asked for; fewer run if the weights do not fit */
  const uint32_t *ms;            /* batch sizes, each in 1..PTXGEN_GEMV_MAX_M (16) */
  size_t m_count;
  int runs;                      /* timed steps per record (raised to DECODE_MIN_RUNS) */
  uint64_t seed;                 /* of the weights and inputs */
} decode_config;

typedef enum decode_mode {
  DECODE_GRAPH = 0,         /* one captured graph per step, replayed */
  DECODE_DIRECT = 1,        /* the same ops as direct launches */
  DECODE_GRAPH_UNFUSED = 2, /* graph, in a context opened with PTXQ_FFN_UNFUSED=1 */
  DECODE_GRAPH_SERIAL = 3,  /* graph, in a context opened with PTXQ_PDL=0 (no early launch) */
  /* The step's bytes read by the read probe, one kernel per op, as one graph
   * (m 0): with programmatic launch (stream_read pdl=1), and without. */
  DECODE_READ_GRAPH = 4,
  DECODE_READ_GRAPH_SERIAL = 5,
} decode_mode;

typedef struct decode_result {
  decode_mode mode;
  uint32_t layers, m;
  double bytes; /* weight bytes read per step (Q6_K counted at its GGUF size) */
  double median_us, gbps, pct_of_ceiling;
  bool ok;
  char check[96]; /* "ok", or what failed */
} decode_result;

/* Records decode_run appends at most (room the caller provides). */
size_t decode_max_results(size_t m_count);

/* Uploads the weights, measures and checks every mode at every m, appending
 * to results and printing a table as it goes. Returns 0, or 1 when a ptxq
 * call failed (printed); failed checks are in the records' ok. */
int decode_run(const decode_config *cfg, decode_result *results, size_t *count);

/* Prints, one per line, every kernel key the decode step builds for target
 * sm (no GPU needed), in a tensor-core context where tc. Returns 0, or 1 if
 * a key cannot be formatted. */
int decode_list_keys(FILE *out, uint32_t sm, uint32_t layers, const uint32_t *ms, size_t m_count, bool tc);

/* Whether PTXQ_GEMV_IDP=1, the library's benchmark switch (src/context.c),
 * is set: its contexts give every Q4_K FMA GEMV the key option idp=1, and
 * so do the keys the benchmark names; its JSON says "gemv_idp". */
bool gemv_idp_switch(void);

/* One JSON object for the results array (no separator, no newline). */
void decode_json_record(FILE *f, const decode_result *r);

/* "graph", "direct", "graph_unfused", "graph_serial", "read_graph" or
 * "read_graph_serial" (as in the JSON). */
const char *decode_mode_name(decode_mode mode);

#endif
