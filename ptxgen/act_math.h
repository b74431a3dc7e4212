/*
 * act_math.h: float32 math emitted inline into PTX (internal to ptxgen):
 * exp, SiLU, GELU (tanh and erf forms), sin/cos. Each helper appends the
 * instructions computing its result from a register and returns the result
 * register. Accuracy notes are in act_math.c.
 */
#ifndef PTXGEN_ACT_MATH_H
#define PTXGEN_ACT_MATH_H

#include "ptx.h"
#include "ptxgen.h"

ptx_reg emit_exp(ptx_builder *b, ptx_reg z);
/* The activation of `kind` (GELU, GELU_ERF, SILU; the gated kinds use GELU
 * for GEGLU and SILU for SWIGLU) applied to x. */
ptx_reg emit_activation(ptx_builder *b, ptxgen_kind kind, ptx_reg x);

#endif
