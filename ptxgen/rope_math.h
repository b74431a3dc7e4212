/*
 * rope_math.h: the RoPE arithmetic of rope.c, shared with the GEMV's RoPE
 * epilogue (gemv.c) so that both rotate with the same instructions and give
 * the same bits (internal).
 *
 * The spec gives the constants (n_dims, base, freq_scale, freq_factors,
 * YaRN); a rope spec or a GEMV spec with rope set.
 */
#ifndef PTXGEN_ROPE_MATH_H
#define PTXGEN_ROPE_MATH_H

#include "ptx.h"
#include "ptxgen.h"

/* Declares `.const .b64 rope_freq[n_dims/2]`, the pair frequencies. */
void rope_emit_freq_table(ptx_builder *b, const ptxgen_spec *s);
/* (cos, sin) * mscale of the angle of pair i (u32 register) at position
 * posd (f64 register); ff: the u64 freq_factors parameter (read only when
 * the spec has freq_factors). */
void rope_emit_cos_sin(ptx_builder *b, const ptxgen_spec *s, ptx_reg i, ptx_reg posd, ptx_reg ff, ptx_reg *cos_out,
                       ptx_reg *sin_out);
/* (y0, y1) = (x0 cos - x1 sin, x0 sin + x1 cos), in that rounding order. */
void rope_emit_rotate(ptx_builder *b, ptx_reg x0, ptx_reg x1, ptx_reg c, ptx_reg sn, ptx_reg *y0, ptx_reg *y1);

#endif
