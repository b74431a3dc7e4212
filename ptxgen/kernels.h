/*
 * kernels.h: the kernel families of ptxgen (internal). Each family has one
 * file with its emitter; kinds.c dispatches to them. An emitter is called
 * with a validated spec and fills the kernel (PTX, entry, geometry).
 */
#ifndef PTXGEN_KERNELS_H
#define PTXGEN_KERNELS_H

#include <stdbool.h>

#include "ptxgen.h"

int q4k_gemv_emit(const ptxgen_spec *spec, ptxgen_kernel *out);
int gemv_tc_emit(const ptxgen_spec *spec, ptxgen_kernel *out); /* tc=1: q4k_gemv and q6k_gemv */
int q6k_gemv_emit(const ptxgen_spec *spec, ptxgen_kernel *out);
uint32_t q4k_gemv_batch_rows(const ptxgen_spec *spec); /* ptxgen_gemv_batch_rows, per format */
uint32_t q6k_gemv_batch_rows(const ptxgen_spec *spec);
/* Whether a q4k_gemv idp=1 spec runs on the integer tensor cores (mma=
 * says; gemv_idp_mma.c) */
bool gemv_idp_mma_takes(const ptxgen_spec *spec);
int stream_read_emit(const ptxgen_spec *spec, ptxgen_kernel *out);
int act_emit(const ptxgen_spec *spec, ptxgen_kernel *out); /* gelu, gelu_erf, silu, swiglu, geglu */
int rope_emit(const ptxgen_spec *spec, ptxgen_kernel *out);

#endif
