/*
 * cli_run.h: what the runners of `ptxgen run` share.
 *
 * cli_run.c holds the command (options, dispatch by kind), the q4k_gemv /
 * q6k_gemv runner (plain and gated), the stream_read runner and the helpers
 * below; cli_run_ops.c holds the runners of the activation kinds and of
 * rope; cli_run_gguf.c the GEMV on a tensor of a GGUF file (--gguf). Every runner prints its results to
 * stdout, messages starting "ptxgen: run: " to stderr, and returns an exit
 * status of cli.h.
 */
#ifndef PTXGEN_CLI_RUN_H
#define PTXGEN_CLI_RUN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "ptxq.h"

/* A GEMV passes when max|y-ref| / max|ref| is at most this. */
#define RUN_MAX_REL_ERR 1e-5

/* Untimed launches before the timed ones (the first also builds the kernel). */
#define RUN_WARMUP_LAUNCHES 3

/* splitmix64: a tiny, well-mixed generator, so a seed means the same data on
 * every machine. */
uint64_t run_random_next(uint64_t *state);

/* Uniform in [-1, 1): 24 random bits, exact in a float. */
float run_random_unit(uint64_t *state);

/* Milliseconds of a monotonic clock. */
double run_now_ms(void);

/* malloc that reports what it could not allocate ("ptxgen: run: ..."). */
void *run_alloc(size_t bytes, const char *what);

/* Prints "ptxgen: run: <what>: <status name>: <detail>"; returns
 * CLI_EXIT_FAILURE. */
int run_report_ptxq(const ptxq_ctx *ctx, const char *what, int status);

/* Opens a context on device 0 for the key's target and prints the run's
 * first line, "KEY seed=N device=NAME". */
int run_open_device(const char *key, const ptxgen_spec *spec, uint64_t seed, ptxq_ctx **ctx);

/* Uploads bytes of NaN poison (0xFF bytes) at y, so unwritten outputs show. */
int run_poison(ptxq_ctx *ctx, ptxq_dev y, const uint8_t *nan_bytes, size_t bytes);

/* ref[m][n] = x[m][k] . W[n][k]^T by ptxq_ref_gemv (fp64) for W of any type
 * it takes, rows split over the online cores (each row's result does not
 * depend on the split). Prints a message on failure. */
int run_reference_gemv(ptxq_type type, const void *weights, uint32_t k, uint32_t n,
                       const float *x, uint32_t m, double *ref);

/* Prints "<prefix>max_rel_err=E (...)" to report, E = max|y-ref| / max|ref|
 * over the m*n outputs; returns CLI_EXIT_FAILURE (message on stderr) if an
 * output is not finite or E > RUN_MAX_REL_ERR. */
int run_check_gemv(FILE *report, const char *prefix, uint32_t m, uint32_t n, const float *y,
                   const double *ref);

/* Enqueues one launch of the kernel under test; returns a ptxq status. */
typedef int (*run_launch_fn)(ptxq_ctx *ctx, void *arg);

/* Median kernel time in microseconds over reps launches, each bracketed by
 * events, after RUN_WARMUP_LAUNCHES untimed ones. reps = 0: one launch,
 * waited for, neither warm-up nor timing (*median_us untouched). */
int run_time_launches(ptxq_ctx *ctx, run_launch_fn launch, void *arg, int reps, double *median_us);

/* Prints the timing line of run_time_launches' result,
 *   kernel_us=T NAME=G (median of R reps after W warm-up<tail>)
 * with G = bytes / T, or, for reps = 0, that nothing was timed. */
void run_print_timing(int reps, double us, const char *gbps_name, double bytes, const char *tail);

/* The runners of cli_run_ops.c: gelu, gelu_erf, silu, swiglu, geglu; rope. */
int run_activation(const char *key, const ptxgen_spec *spec, uint64_t seed, int cpu_only, int reps);
int run_rope(const char *key, const ptxgen_spec *spec, uint64_t seed, int cpu_only, int reps);

/* `ptxgen run [KEY] --gguf FILE --tensor NAME ...` (cli_run_gguf.c). */
typedef struct run_gguf_request {
  const char *key;          /* canonical key, or NULL when none was given */
  const ptxgen_spec *spec;  /* the key's spec, or NULL */
  const char *path;         /* the GGUF file */
  const char *tensor;       /* the tensor's name */
  const char *x_path;       /* raw little-endian fp32 x, or NULL: seeded random */
  const char *out_path;     /* where y goes, or NULL: stdout */
  uint32_t m;               /* from --m, 0 when not given */
  uint64_t seed;
  int cpu_only;
} run_gguf_request;
int run_gguf(const run_gguf_request *request);

#endif
