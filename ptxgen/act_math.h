/*
 * act_math.h: float32 math emitted inline into PTX (internal to ptxgen):
 * exp, SiLU, GELU (tanh and erf forms), sin/cos. Each helper appends the
 * instructions computing its result from a register and returns the result
 * register. Accuracy notes are in act_math.c.
 */
#ifndef PTXGEN_ACT_MATH_H
#define PTXGEN_ACT_MATH_H

#include <stdbool.h>

#include "ptx.h"
#include "ptxgen.h"

ptx_reg emit_exp(ptx_builder *b, ptx_reg z);
/* a / d rounded to nearest, the bits of div.rn.f32: written out in fp64
 * where inline_div and the target runs fp64 at half rate, else div.rn.f32
 * (see emit_activation). */
ptx_reg emit_div_rn(ptx_builder *b, ptx_reg a, ptx_reg d, bool inline_div);
/* The activation of `kind` (GELU, GELU_ERF, SILU; the gated kinds use GELU
 * for GEGLU and SILU for SWIGLU) applied to x. inline_div: its divisions
 * written out (emit_div_rn in act_math.c) where the target runs fp64 at
 * half rate, which JITs 3-4 ms faster, or div.rn.f32, which has less
 * latency; the bits are the same. The activation kernels take the first,
 * the GEMV epilogues, where the latency follows each task, the second. */
ptx_reg emit_activation(ptx_builder *b, ptxgen_kind kind, ptx_reg x, bool inline_div);

#endif
