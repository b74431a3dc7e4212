/*
 * rng.h: the random numbers of the reference and GPU tests (splitmix64).
 *
 * Small, fast, and its whole state is one 64-bit seed, so a failure message
 * that prints the seed is enough to replay it. Header-only (static inline)
 * so that each test binary stays one source file.
 */
#ifndef PTXQ_TESTS_RNG_H
#define PTXQ_TESTS_RNG_H

#include <math.h>
#include <stdint.h>

typedef struct rng {
  uint64_t state;
} rng;

static inline uint64_t rng_next(rng *r) {
  uint64_t z = (r->state += UINT64_C(0x9E3779B97F4A7C15));
  z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
  z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
  return z ^ (z >> 31);
}

/* Uniform in [0, 1), 53 random bits. */
static inline double rng_unit(rng *r) { return (double)(rng_next(r) >> 11) * 0x1p-53; }

/* Uniform in [lo, hi), as a float. */
static inline float rng_uniform(rng *r, float lo, float hi) {
  return lo + (hi - lo) * (float)rng_unit(r);
}

/* Standard normal, by Box-Muller (1 - u keeps the log finite). */
static inline double rng_gauss(rng *r) {
  double u = 1.0 - rng_unit(r), v = rng_unit(r);
  return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
