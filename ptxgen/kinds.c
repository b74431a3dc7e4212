/*
 * kinds.c: the table of kernel kinds (what `ptxgen list` prints) and
 * ptxgen_emit, which validates a spec and hands it to its family's emitter.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

static const ptxgen_kind_info kinds[] = {
    {PTXGEN_KIND_Q4K_GEMV, "q4k_gemv", "q4k_gemv:k=4096,n=14336,m=1,sm=90",
     "y[m][n] = x[m][k] . W[n][k]^T, W Q4_K, x/y fp32; k: multiple of 256, 256..65536; "
     "n: 1..262144; m: 1..8; sm: 75,80,86,89,90,100,120 (default 90); "
     "optional tuning rows=1|2|4 (per warp), warps=4|8|16 (per block)"},
    {PTXGEN_KIND_STREAM_READ, "stream_read", "stream_read:n=67108864,sm=90",
     "read-only bandwidth probe over n 16-byte vectors; n: 1..1073741824; sm as above"},
};

const ptxgen_kind_info *ptxgen_kinds(size_t *count) {
  if (count) *count = sizeof kinds / sizeof *kinds;
  return kinds;
}

int ptxgen_emit(const ptxgen_spec *spec, ptxgen_kernel *out, char *msg, size_t msg_cap) {
  if (!out) {
    if (msg && msg_cap) snprintf(msg, msg_cap, "no output kernel given");
    return PTXGEN_ERR_SPEC;
  }
  memset(out, 0, sizeof *out);
  int rc = ptxgen_spec_validate(spec, msg, msg_cap);
  if (rc) return rc;
  switch (spec->kind) {
  case PTXGEN_KIND_Q4K_GEMV: rc = q4k_gemv_emit(spec, out); break;
  case PTXGEN_KIND_STREAM_READ: rc = stream_read_emit(spec, out); break;
  default: rc = PTXGEN_ERR_SPEC; break;
  }
  if (rc == PTXGEN_ERR_NOMEM && msg && msg_cap) snprintf(msg, msg_cap, "out of memory while generating PTX");
  if (rc) ptxgen_kernel_free(out);
  return rc;
}

void ptxgen_kernel_free(ptxgen_kernel *kernel) {
  if (!kernel) return;
  free(kernel->ptx);
  memset(kernel, 0, sizeof *kernel);
}
