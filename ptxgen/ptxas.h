/*
 * ptxas.h: run NVIDIA's offline PTX assembler on generated PTX and read its
 * resource report.
 *
 * A tool helper for the `ptxgen` CLI and the ptx test suite, not part of
 * libptxq (the library compiles through the driver's JIT and never needs
 * ptxas). It prints nothing: results and ptxas's own log come back in a
 * report.
 */
#ifndef PTXGEN_PTXAS_H
#define PTXGEN_PTXAS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ptxas_report {
  int exit_status;     /* ptxas's exit status: 0 assembled; -1 killed by a signal */
  char entry[128];     /* first entry function ptxas compiled ("" if none) */
  /* From `-v`. When the PTX holds several functions each figure is the
   * largest any of them reports, so a spill anywhere shows. */
  int registers;       /* per thread */
  int spill_stores;    /* bytes */
  int spill_loads;     /* bytes */
  int stack_bytes;     /* stack frame */
  int shared_bytes;    /* static shared memory ("smem") */
  char *log;           /* ptxas stdout + stderr, NUL-terminated, owned */
} ptxas_report;

/* Finds an executable ptxas: each directory of $PATH, then $CUDA_HOME/bin,
 * $CUDA_PATH/bin, /usr/local/cuda/bin, then the PTXAS_PATH the build was
 * configured with (if any). Writes its path into path and returns
 * 0, or -1 when there is none (or cap is too small for it). */
int ptxas_find(char *path, size_t cap);

/* Assembles ptx (ptx_len bytes) for sm_<sm> with `-v`, the input and output
 * in temporary files that are removed afterwards. Returns 0 when ptxas ran,
 * whatever it said (report->exit_status tells whether it assembled; the
 * report must then be freed with ptxas_report_free), or -1 when it could not
 * be run, with the reason in msg. */
int ptxas_assemble(const char *ptxas_path, const char *ptx, size_t ptx_len, uint32_t sm,
                   ptxas_report *report, char *msg, size_t msg_cap);

/* Reads the figures of a `-v` log into report (its log field untouched). */
void ptxas_parse_log(const char *log, ptxas_report *report);

void ptxas_report_free(ptxas_report *report);

#endif
