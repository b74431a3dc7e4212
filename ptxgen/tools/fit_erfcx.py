#!/usr/bin/env python3
"""Fits the Chebyshev series that ptxgen/act_math.c uses for GELU (erf form).

For a = |x| >= sqrt(2), Phi(-a) = exp(-a^2/2) * h(w) / (a*sqrt(2*pi)) with
t = a/sqrt(2), w = 1/t^2 = 2/a^2 in (0, 1] and h(w) = sqrt(pi)*t*exp(t^2)*erfc(t),
a smooth function from h(0) = 1 to h(1) = 0.7578. This prints the float32
Chebyshev coefficients of h on w in [0, 1] (variable u = 2w - 1) and the
largest relative error of evaluating them in float32 by Clenshaw's recurrence.
Needs numpy and mpmath.
"""
import math
import mpmath as mp
import numpy as np

DEGREE = 14
mp.mp.dps = 30


def h(w):
    if w == 0:
        return 1.0
    t = 1 / mp.sqrt(w)
    return float(mp.exp(t * t) * mp.erfc(t) * t * mp.sqrt(mp.pi))


nodes = np.cos(np.linspace(0, math.pi, 2001)) * 0.5 + 0.5
coef = np.float32(np.polynomial.chebyshev.Chebyshev.fit(nodes, [h(w) for w in nodes], DEGREE, domain=[0, 1]).coef)
f32 = np.float32
w = np.linspace(0, 1, 20001)
u = (f32(2) * w.astype(f32) - f32(1)).astype(f32)
b1 = np.zeros_like(u)
b2 = np.zeros_like(u)
for k in range(DEGREE, 0, -1):
    b1, b2 = (f32(2) * u * b1 - b2 + coef[k]).astype(f32), b1
v = (u * b1 - b2 + coef[0]).astype(f32)
ref = np.array([h(x) for x in w])
print("max relative error (float32 Clenshaw): %.3g" % np.max(np.abs(v - ref) / ref))
print(", ".join("%.9g" % c for c in coef))
