/*
 * act.c: the CPU reference activations (GELU tanh and erf forms, SiLU) and
 * their gated forms (SwiGLU, GEGLU).
 *
 * Each value is the literal formula of ptxq.h (and docs/formats.md)
 * evaluated in double on the float input widened to double. The GPU kernels
 * are judged against these values, so the formula is evaluated exactly as
 * written, with no rearrangement for accuracy or speed: that way +-inf and
 * NaN inputs give whatever IEEE arithmetic on the formula gives
 * (silu(-inf) = -inf/inf = NaN, gelu(-inf) = -inf*0 = NaN, both +inf at
 * +inf), which is what the kernels promise to reproduce.
 *
 * The literal forms lose relative accuracy far out on the negative side
 * (1 + tanh(z) and 1 + erf(z) cancel as z -> -inf), but their absolute
 * error stays at the level of a few ulps of 0.5*|x|, far below the
 * kernels' 1e-7 absolute allowance.
 *
 * Status: PTXQ_ERR_INVALID for a NULL pointer, count 0 or an unknown
 * activation, with nothing written. The reference has no context, so there
 * is no detail message beyond the status.
 */
#include <math.h>
#include <stddef.h>

#include "ptxq.h"

static int act_known(ptxq_act act) {
  return act == PTXQ_ACT_GELU || act == PTXQ_ACT_GELU_ERF || act == PTXQ_ACT_SILU;
}

/* The activation of x; act has been checked. */
static double act_value(ptxq_act act, double x) {
  switch (act) {
  case PTXQ_ACT_GELU:
    return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x)));
  case PTXQ_ACT_GELU_ERF:
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case PTXQ_ACT_SILU:
    return x / (1.0 + exp(-x));
  }
  return NAN; /* unreachable: callers check act_known first */
}

int ptxq_ref_act(ptxq_act act, const float *x, double *y, size_t count) {
  if (x == NULL || y == NULL || count == 0 || !act_known(act))
    return PTXQ_ERR_INVALID;
  for (size_t i = 0; i < count; i++)
    y[i] = act_value(act, (double)x[i]);
  return PTXQ_OK;
}

int ptxq_ref_glu(ptxq_act act, const float *gate, const float *up, double *y, size_t count) {
  if (gate == NULL || up == NULL || y == NULL || count == 0 || !act_known(act))
    return PTXQ_ERR_INVALID;
  for (size_t i = 0; i < count; i++)
    y[i] = act_value(act, (double)gate[i]) * (double)up[i];
  return PTXQ_OK;
}
