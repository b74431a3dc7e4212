/*
 * first_use.h: the first-use rows of ptxq-bench (kernels "first"): what the
 * first ptxq_kernel_get of a key costs a process (generation, the driver's
 * JIT, the module table), with the driver's JIT cache empty, filled by an
 * earlier process, and disabled. Each figure comes from a fresh child
 * process (bench/first_use.c says how); the benchmark's own process never
 * opens the device for these rows.
 */
#ifndef PTXQ_BENCH_FIRST_USE_H
#define PTXQ_BENCH_FIRST_USE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* argv[1] of a child: `ptxq-bench --first-use-child KEY [PRIMER_KEY]` or
 * `ptxq-bench --first-use-child --probe`. Not in --help: only this file
 * starts such children. */
#define FIRST_USE_CHILD_ARG "--first-use-child"
#define FIRST_USE_RUNS 3          /* children per key and condition (1 with --quick) */
#define FIRST_USE_TARGET_MS 20.0  /* the target for a cold first use */

/* The conditions a key is measured under, each in fresh processes:
 *  COLD    CUDA_CACHE_PATH a new empty directory: generation + a real JIT,
 *  CACHED  a second process on the directory the COLD one filled,
 *  SECOND  cold again, but in a process that has just built another kernel
 *          (so the JIT's one-time cost per process is not in the figure),
 *  NOCACHE CUDA_CACHE_DISABLE=1. */
typedef enum first_use_condition {
  FIRST_USE_COLD = 0,
  FIRST_USE_CACHED = 1,
  FIRST_USE_SECOND = 2,
  FIRST_USE_NOCACHE = 3,
  FIRST_USE_CONDITIONS = 4
} first_use_condition;

/* The device, as the probe child found it. */
typedef struct first_use_device {
  char name[128];
  uint32_t sm, target_sm;
  int driver_version;
} first_use_device;

/* One key under one condition. */
typedef struct first_use_result {
  char key[128];
  first_use_condition condition;
  int runs;              /* children that measured; the figures are over these */
  double median_us, min_us, max_us; /* ptxq_kernel_get in the child */
  double open_us;        /* median ptxq_open in the same children */
  double cache_bytes;    /* COLD: bytes the driver left in the cache directory; else -1 */
  char error[512];       /* "" or why a child did not measure (one line) */
} first_use_result;

/* The child's side: call first thing in main when argv[1] is
 * FIRST_USE_CHILD_ARG; returns the child's exit status (0 measured, 1
 * failed, 3 no GPU). It prints one line starting "first-use-child: ". */
int first_use_child(int argc, char **argv);

/* Runs one child that opens the device and builds a small kernel with the
 * driver's cache off: finds the device and its target, and leaves the
 * driver's libraries (the JIT compiler's among them) in the page cache, so
 * the first key measured does not also pay for reading them from disk.
 * Returns 0, 1 (failed) or 3 (no GPU: nothing measured), and prints which. */
int first_use_probe(first_use_device *dev);

/* Measures each key of `keys` (one per line, built for target sm) under
 * every condition, `runs` children each, printing a table as it goes and a
 * summary. *out is malloc'd: FIRST_USE_CONDITIONS rows per key, in key
 * order, *count in all. Returns 0, or 1 when any child failed (its row
 * says why; the other rows are still measured). */
int first_use_bench(const char *keys, uint32_t sm, int runs, const first_use_device *dev,
                    first_use_result **out, size_t *count);

/* One JSON object for the results array (no separator, no newline). */
void first_use_json_record(FILE *f, const first_use_result *r);

#endif
