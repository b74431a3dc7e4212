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
     "n: 1..262144; m: 1..16 (1..8 with glu= or rope=); sm: 75,80,86,89,90,100,120 (default 90); "
     "optional tuning rows=1|2|4 (per warp), warps=4|8|16 (per block); tc=1: on the tensor cores "
     "(sm >= 80; rope= only neox with n_dims = head_dim, a multiple of 32; W in tiles of 16 rows, see "
     "ptxgen_q4k_tc_tiles); idp=1: integer dot products (an experiment: x in fixed point per chunk of 64, "
     "exact integer sums, fp64 row sums; not with tc=1), with mma=1 (dp4a) or mma=2 (integer tensor cores: "
     "sm >= 80, m <= 8, no rope=, x staged whole or, on sm_90/100 without glu=, split over a cluster of two "
     "blocks; the same bits; default: the generator's choice, from m = 4 on 2048 rows)"},
    {PTXGEN_KIND_Q6K_GEMV, "q6k_gemv", "q6k_gemv:k=14336,n=4096,m=1,sm=90",
     "y[m][n] = x[m][k] . W[n][k]^T, W Q6_K (repacked, see ptxgen_q6k_repack), x/y fp32; limits and options as "
     "q4k_gemv (tc=1: W in tiles of 16 rows, see ptxgen_q6k_tc_tiles; no idp=)"},
    {PTXGEN_KIND_STREAM_READ, "stream_read", "stream_read:n=67108864,sm=90",
     "read-only bandwidth probe over n 16-byte vectors; n: 1..1073741824; sm as above; pdl=1: loads its "
     "first vectors, then waits for the kernel before it (sm >= 90), as a step's kernels do"},
    {PTXGEN_KIND_GELU, "gelu", "gelu:n=14336,m=1,sm=90",
     "y = 0.5x(1+tanh(0.79788456(x+0.044715x^3))) over [m][n] fp32, in place or not; n: 1..1048576; m: 1..16"},
    {PTXGEN_KIND_GELU_ERF, "gelu_erf", "gelu_erf:n=14336,m=1,sm=90",
     "y = 0.5x(1+erf(x/sqrt2)) over [m][n] fp32; n: 1..1048576; m: 1..16"},
    {PTXGEN_KIND_SILU, "silu", "silu:n=14336,m=1,sm=90", "y = x/(1+e^-x) over [m][n] fp32; n: 1..1048576; m: 1..16"},
    {PTXGEN_KIND_SWIGLU, "swiglu", "swiglu:n=14336,m=1,sm=90",
     "y = silu(gate)*up over [m][n] fp32 (y may be gate or up); n: 1..1048576; m: 1..16"},
    {PTXGEN_KIND_GEGLU, "geglu", "geglu:n=14336,m=1,sm=90",
     "y = gelu(gate)*up (tanh form) over [m][n] fp32; n: 1..1048576; m: 1..16"},
    {PTXGEN_KIND_ROPE, "rope", "rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=1,sm=90,base=500000",
     "in-place RoPE of q [m][heads][head_dim] and k [m][kv_heads][head_dim] at device int32 positions; "
     "mode=normal|neox, head_dim even <= 512, n_dims even <= head_dim (default head_dim), heads <= 1024, "
     "kv_heads divides heads, m: 1..16, base (10000), freq_scale (1), freq_factors=0|1, YaRN: ext_factor (0), "
     "attn_factor (1), beta_fast (32), beta_slow (1), n_ctx_orig"},
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
  case PTXGEN_KIND_Q6K_GEMV: rc = q6k_gemv_emit(spec, out); break;
  case PTXGEN_KIND_STREAM_READ: rc = stream_read_emit(spec, out); break;
  case PTXGEN_KIND_GELU:
  case PTXGEN_KIND_GELU_ERF:
  case PTXGEN_KIND_SILU:
  case PTXGEN_KIND_SWIGLU:
  case PTXGEN_KIND_GEGLU: rc = act_emit(spec, out); break;
  case PTXGEN_KIND_ROPE: rc = rope_emit(spec, out); break;
  default: rc = PTXGEN_ERR_SPEC; break;
  }
  if (rc == PTXGEN_ERR_NOMEM && msg && msg_cap) snprintf(msg, msg_cap, "out of memory while generating PTX");
  if (rc) ptxgen_kernel_free(out);
  return rc;
}

uint32_t ptxgen_gemv_batch_rows(const ptxgen_spec *spec) {
  if (ptxgen_spec_validate(spec, NULL, 0) != PTXGEN_OK) return 0;
  switch (spec->kind) {
  case PTXGEN_KIND_Q4K_GEMV: return q4k_gemv_batch_rows(spec);
  case PTXGEN_KIND_Q6K_GEMV: return q6k_gemv_batch_rows(spec);
  default: return spec->m;
  }
}

bool ptxgen_gemv_idp_mma(const ptxgen_spec *spec) {
  return ptxgen_spec_validate(spec, NULL, 0) == PTXGEN_OK && spec->kind == PTXGEN_KIND_Q4K_GEMV &&
         gemv_idp_mma_takes(spec);
}

void ptxgen_kernel_free(ptxgen_kernel *kernel) {
  if (!kernel) return;
  free(kernel->ptx);
  memset(kernel, 0, sizeof *kernel);
}
