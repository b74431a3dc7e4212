/*
 * act_math.c: float32 activation math written as PTX instruction sequences.
 *
 * Accuracy target: 2e-6 relative + 1e-7 absolute of the fp64 formula over
 * [-20, 20], and IEEE behaviour of the formula for +-inf and NaN.
 *
 * exp(z): 2^(z*log2 e) with ex2.approx (about 2 ulp), corrected for the
 *   rounding of z*log2 e: with t = fl(z*L) and err = z*L - t (recovered with
 *   an fma and the low part of log2 e), e^z = 2^t * (1 + err*ln 2). Without
 *   the correction the error would grow with |z| (1.2e-6 relative at z = 20).
 *   Outside |t| < 126 the plain 2^t is kept (it is 0 or inf there, or the
 *   correction would turn inf into NaN).
 * SiLU: x / (1 + e^-x), IEEE division (emit_div_rn). silu(-inf) = -inf/inf = NaN as the
 *   formula gives.
 * GELU (tanh): 0.5x(1 + tanh(u)) == x * sigmoid(2u) == x / (1 + e^(-2u)), so
 *   there is no cancellation of 1 + tanh(u) for negative x; -2u is computed
 *   as x*(c1 + c2*x^2) in three roundings.
 * GELU (erf): x * Phi(x) with Phi(x) = (1 + erf(x/sqrt 2))/2:
 *   |x| < sqrt 2: Phi = 1/2 + x * S(x^2), S the Taylor series of erf (13
 *     terms, truncation below 1e-10), coefficients computed here in double.
 *   |x| >= sqrt 2: with a = |x|, Phi(-a) = e^(-a^2/2) * h(w) / (a sqrt(2 pi)),
 *     w = 2/a^2, h(w) = sqrt(pi) t e^(t^2) erfc(t) for t = a/sqrt 2: a smooth
 *     function on w in [0, 1] evaluated from a degree-14 Chebyshev series
 *     (fitted by ptxgen/tools/fit_erfcx.py: 8.3e-8 relative in float32).
 *     a^2 is split exactly into hi + lo with an fma so that e^(-a^2/2) keeps
 *     full precision; Phi(x) = 1 - Phi(-x) for positive x.
 */
#include <math.h>
#include <string.h>

#include "act_math.h"

static uint32_t bits_of(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* "0fXXXXXXXX", the PTX spelling of a float constant ("0f%08X", written by
 * hand: an activation uses ~10, and snprintf took ~80 ns for each). */
typedef struct {
  char s[16];
} fconst;
static fconst F(float f) {
  static const char hex[] = "0123456789ABCDEF";
  fconst c = {"0f"};
  uint32_t u = bits_of(f);
  for (int i = 9; i >= 2; i--, u >>= 4) c.s[i] = hex[u & 15];
  return c;
}

static ptx_reg op2(ptx_builder *b, const char *op, ptx_reg a, const char *c) {
  ptx_reg r = ptx_new(b, PTX_F32);
  ptx_ins(b, "%s %s, %s, %s;", op, r.s, a.s, c);
  return r;
}

static ptx_reg fma3(ptx_builder *b, const char *a, const char *x, const char *c) {
  ptx_reg r = ptx_new(b, PTX_F32);
  ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", r.s, a, x, c);
  return r;
}

ptx_reg emit_exp(ptx_builder *b, ptx_reg z) {
  const double log2e = 1.4426950408889634074;
  const float l2e_hi = (float)log2e;
  const float l2e_lo = (float)(log2e - (double)l2e_hi);
  ptx_reg t = op2(b, "mul.rn.f32", z, F(l2e_hi).s);
  ptx_reg nt = op2(b, "mul.rn.f32", t, F(-1.0f).s);
  ptx_reg err = fma3(b, z.s, F(l2e_hi).s, nt.s);  /* z*hi - t, exact */
  err = fma3(b, z.s, F(l2e_lo).s, err.s);          /* + z*lo */
  ptx_reg e0 = ptx_new(b, PTX_F32), c = op2(b, "mul.rn.f32", err, F((float)0.69314718055994531).s);
  ptx_ins(b, "ex2.approx.f32 %s, %s;", e0.s, t.s);
  ptx_reg e1 = fma3(b, e0.s, c.s, e0.s);
  ptx_reg at = ptx_new(b, PTX_F32), e = ptx_new(b, PTX_F32);
  ptx_reg ok = ptx_new(b, PTX_PRED);
  ptx_ins(b, "abs.f32 %s, %s;", at.s, t.s);
  ptx_ins(b, "setp.lt.f32 %s, %s, %s;", ok.s, at.s, F(126.0f).s);
  ptx_ins(b, "selp.f32 %s, %s, %s, %s;", e.s, e1.s, e0.s, ok.s);
  return e;
}

/* a / b rounded to nearest: the bits of div.rn.f32. On targets where fp64
 * runs at half the fp32 rate (sm_80, sm_90, sm_100) the quotient is formed
 * inline in fp64, because for div.rn.f32 ptxas adds a slow-path subroutine
 * that costs 4-5 ms of every kernel's JIT (bench/RESULTS.md, twenty-first
 * session); elsewhere fp64 is too slow for that and div.rn.f32 stays.
 * Why the fp64 form gives the same bits: a and b are exact in fp64, with
 * no fp64 subnormal anywhere on the way; the reciprocal from rcp.approx
 * after two Newton steps, q0 = a*r, the exact remainder a - b*q0 (fma) and
 * q0 + rem*r leave the quotient within about one fp64 rounding of a/b, and
 * a quotient of two 24-bit numbers is never that close to a point halfway
 * between two floats without being on it (p' = 53 >= 2p + 2: rounding it
 * to fp32 afterwards is then correct, subnormal results included).
 * Where a is zero, infinite or NaN, or b infinite, NaN or zero, a * rcp(b)
 * gives IEEE's result instead, the sign of a zero included (rcp(+-0) = +-inf, rcp(+-inf)
 * = +-0; the general path would turn -0 / b into +0). A NaN result is
 * written as div.rn.f32 writes it, 0x7FFFFFFF. bench/div_check.c checks
 * it against div.rn.f32 on the GPU (bench/RESULTS.md: 0 differences in
 * 8.6e10 operand pairs on an H100). */
ptx_reg emit_div_rn(ptx_builder *b, ptx_reg a, ptx_reg d, bool inline_div) {
  ptx_reg y = ptx_new(b, PTX_F32);
  if (!inline_div || (b->sm != 80 && b->sm != 90 && b->sm != 100)) {
    ptx_ins(b, "div.rn.f32 %s, %s, %s;", y.s, a.s, d.s);
    return y;
  }
  ptx_reg ad = ptx_new(b, PTX_B64), dd = ptx_new(b, PTX_B64), nd = ptx_new(b, PTX_B64);
  ptx_reg r0 = ptx_new(b, PTX_B64), e = ptx_new(b, PTX_B64), r = ptx_new(b, PTX_B64);
  ptx_reg q = ptx_new(b, PTX_B64), rem = ptx_new(b, PTX_B64), special = ptx_new(b, PTX_B64);
  ptx_reg pa = ptx_new(b, PTX_PRED), ok = ptx_new(b, PTX_PRED), nan = ptx_new(b, PTX_PRED);
  ptx_ins(b, "cvt.f64.f32 %s, %s;", ad.s, a.s);
  ptx_ins(b, "cvt.f64.f32 %s, %s;", dd.s, d.s);
  ptx_ins(b, "neg.f64 %s, %s;", nd.s, dd.s);
  ptx_ins(b, "rcp.approx.ftz.f64 %s, %s;", r0.s, dd.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, 0d3FF0000000000000;", e.s, nd.s, r0.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", r.s, r0.s, e.s, r0.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, 0d3FF0000000000000;", e.s, nd.s, r.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", r.s, r.s, e.s, r.s);
  ptx_ins(b, "mul.rn.f64 %s, %s, %s;", q.s, ad.s, r.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", rem.s, nd.s, q.s, ad.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, %s, %s;", q.s, rem.s, r.s, q.s);
  ptx_ins(b, "mul.rn.f64 %s, %s, %s;", special.s, ad.s, r0.s);
  ptx_ins(b, "testp.finite.f32 %s, %s;", pa.s, a.s);
  ptx_ins(b, "setp.ne.and.f32 %s, %s, 0f00000000, %s;", pa.s, a.s, pa.s);
  ptx_ins(b, "testp.finite.f32 %s, %s;", ok.s, d.s);
  ptx_ins(b, "setp.ne.and.f32 %s, %s, 0f00000000, %s;", ok.s, d.s, ok.s);
  ptx_ins(b, "and.pred %s, %s, %s;", ok.s, ok.s, pa.s);
  ptx_ins(b, "selp.f64 %s, %s, %s, %s;", q.s, q.s, special.s, ok.s);
  ptx_ins(b, "cvt.rn.f32.f64 %s, %s;", y.s, q.s);
  ptx_ins(b, "testp.notanumber.f32 %s, %s;", nan.s, y.s);
  ptx_ins(b, "selp.f32 %s, 0f7FFFFFFF, %s, %s;", y.s, y.s, nan.s);
  return y;
}

/* x / (1 + e^z) */
static ptx_reg x_over_one_plus_exp(ptx_builder *b, ptx_reg x, ptx_reg z, bool inline_div) {
  ptx_reg e = emit_exp(b, z);
  ptx_reg d = op2(b, "add.rn.f32", e, F(1.0f).s);
  return emit_div_rn(b, x, d, inline_div);
}

static ptx_reg emit_silu(ptx_builder *b, ptx_reg x, bool inline_div) {
  ptx_reg z = ptx_new(b, PTX_F32);
  ptx_ins(b, "neg.f32 %s, %s;", z.s, x.s);
  return x_over_one_plus_exp(b, x, z, inline_div);
}

static ptx_reg emit_gelu_tanh(ptx_builder *b, ptx_reg x, bool inline_div) {
  const double k0 = 0.7978845608028654, k1 = 0.044715;
  ptx_reg x2 = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", x2.s, x.s, x.s);
  ptx_reg inner = fma3(b, F((float)(-2 * k0 * k1)).s, x2.s, F((float)(-2 * k0)).s);
  ptx_reg z = ptx_new(b, PTX_F32); /* -2u */
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", z.s, x.s, inner.s);
  return x_over_one_plus_exp(b, x, z, inline_div);
}

/* Chebyshev coefficients of h(w) on w in [0, 1] (ptxgen/tools/fit_erfcx.py). */
static const float erfcx_cheb[15] = {
    0.859886646f,    -0.116997801f,   0.0180164278f,   -0.00377110951f, 0.000941201462f,
    -0.000264466915f, 8.10840429e-05f, -2.66055849e-05f, 9.22255185e-06f, -3.34635934e-06f,
    1.26231487e-06f, -4.92466881e-07f, 1.97872197e-07f, -8.16280945e-08f, 3.44672024e-08f};

static ptx_reg emit_gelu_erf(ptx_builder *b, ptx_reg x, bool inline_div) {
  const double pi = 3.14159265358979323846;
  ptx_reg a = ptx_new(b, PTX_F32);
  ptx_ins(b, "abs.f32 %s, %s;", a.s, x.s);

  /* |x| < sqrt 2: Phi = 1/2 + x * sum_n c_n x^(2n), c_n = (-1)^n / (sqrt(2 pi) 2^n n! (2n+1)) */
  ptx_reg x2 = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", x2.s, x.s, x.s);
  double coef[13], fact = 1;
  for (int n = 0; n < 13; n++) {
    if (n) fact *= n;
    coef[n] = (n % 2 ? -1.0 : 1.0) / (sqrt(2 * pi) * ldexp(1.0, n) * fact * (2 * n + 1));
  }
  ptx_reg s = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 %s, %s;", s.s, F((float)coef[12]).s);
  for (int n = 11; n >= 0; n--) s = fma3(b, s.s, x2.s, F((float)coef[n]).s);
  ptx_reg phi_small = fma3(b, x.s, s.s, F(0.5f).s);

  /* |x| >= sqrt 2: T = Phi(-|x|) = e^(-a^2/2) h(2/a^2) / (a sqrt(2 pi)) */
  ptx_reg sq = ptx_new(b, PTX_F32), nsq = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", sq.s, a.s, a.s);
  ptx_ins(b, "neg.f32 %s, %s;", nsq.s, sq.s);
  ptx_reg sq_lo = fma3(b, a.s, a.s, nsq.s); /* a*a - sq, exact; NaN for infinite a */
  ptx_reg fin = ptx_new(b, PTX_PRED);
  ptx_ins(b, "setp.lt.f32 %s, %s, %s;", fin.s, a.s, F(1e18f).s);
  ptx_ins(b, "selp.f32 %s, %s, 0f00000000, %s;", sq_lo.s, sq_lo.s, fin.s);
  ptx_reg nhalf = op2(b, "mul.rn.f32", sq, F(-0.5f).s);
  ptx_reg e = emit_exp(b, nhalf);
  ptx_reg nlo = op2(b, "mul.rn.f32", sq_lo, F(-0.5f).s);
  e = fma3(b, e.s, nlo.s, e.s); /* e^(-hi/2) * (1 - lo/2) */
  ptx_reg two = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 %s, %s;", two.s, F(2.0f).s);
  ptx_reg w = emit_div_rn(b, two, sq, inline_div);
  ptx_reg u = fma3(b, w.s, F(2.0f).s, F(-1.0f).s);
  ptx_reg u2 = op2(b, "add.rn.f32", u, u.s);
  /* Clenshaw: b_k = 2u b_{k+1} - b_{k+2} + c_k; h = u b_1 - b_2 + c_0 */
  ptx_reg b1 = ptx_new(b, PTX_F32), b2 = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 %s, 0f00000000;", b1.s);
  ptx_ins(b, "mov.b32 %s, 0f00000000;", b2.s);
  for (int k = 14; k >= 1; k--) {
    ptx_reg t = ptx_new(b, PTX_F32);
    ptx_ins(b, "sub.rn.f32 %s, %s, %s;", t.s, F(erfcx_cheb[k]).s, b2.s);
    ptx_reg nb = fma3(b, u2.s, b1.s, t.s);
    b2 = b1;
    b1 = nb;
  }
  ptx_reg t0 = ptx_new(b, PTX_F32);
  ptx_ins(b, "sub.rn.f32 %s, %s, %s;", t0.s, F(erfcx_cheb[0]).s, b2.s);
  ptx_reg h = fma3(b, u.s, b1.s, t0.s);
  ptx_reg num = op2(b, "mul.rn.f32", e, h.s);
  ptx_reg den = op2(b, "mul.rn.f32", a, F((float)sqrt(2 * pi)).s);
  ptx_reg tail = emit_div_rn(b, num, den, inline_div);
  ptx_reg upper = ptx_new(b, PTX_F32), neg = ptx_new(b, PTX_PRED), phi_big = ptx_new(b, PTX_F32);
  ptx_ins(b, "sub.rn.f32 %s, %s, %s;", upper.s, F(1.0f).s, tail.s);
  ptx_ins(b, "setp.lt.f32 %s, %s, 0f00000000;", neg.s, x.s);
  ptx_ins(b, "selp.f32 %s, %s, %s, %s;", phi_big.s, tail.s, upper.s, neg.s);

  ptx_reg small = ptx_new(b, PTX_PRED), phi = ptx_new(b, PTX_F32);
  ptx_ins(b, "setp.lt.f32 %s, %s, %s;", small.s, a.s, F((float)sqrt(2.0)).s);
  ptx_ins(b, "selp.f32 %s, %s, %s, %s;", phi.s, phi_small.s, phi_big.s, small.s);
  ptx_reg y = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", y.s, x.s, phi.s);
  return y;
}

ptx_reg emit_activation(ptx_builder *b, ptxgen_kind kind, ptx_reg x, bool inline_div) {
  switch (kind) {
  case PTXGEN_KIND_GELU:
  case PTXGEN_KIND_GEGLU: return emit_gelu_tanh(b, x, inline_div);
  case PTXGEN_KIND_GELU_ERF: return emit_gelu_erf(b, x, inline_div);
  default: return emit_silu(b, x, inline_div);
  }
}
