/*
 * ref_common.h: the helpers shared by the CPU reference tests of the weight
 * formats (test_ref.c for Q4_K and F32, test_ref_q6k.c for Q6_K and F16):
 * halves built and decoded from the binary16 definition, the check of a
 * GEMV against a plain double product, and the shared fixture's summary
 * values (row 0, sum, sum of squares).
 *
 * Header-only (static inline) so that each test binary stays one source
 * file; every check asserts.
 */
#ifndef PTXQ_TESTS_REF_COMMON_H
#define PTXQ_TESTS_REF_COMMON_H

#include <criterion/criterion.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "fixture.h"
#include "rng.h"

static inline void put_le16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFF);
  p[1] = (uint8_t)(v >> 8);
}

/* The value of a finite half, straight from the definition of binary16. */
static inline double half_value(uint16_t h) {
  int exponent = (h >> 10) & 0x1F;
  double mantissa = h & 0x3FF;
  double magnitude = exponent == 0 ? ldexp(mantissa, -24) : ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000) ? -magnitude : magnitude;
}

/* f16 with a random sign and mantissa and an exponent field in [lo, hi]. */
static inline uint16_t random_half(rng *r, int lo, int hi) {
  uint64_t bits = rng_next(r);
  int exponent = lo + (int)(bits % (uint64_t)(hi - lo + 1));
  return (uint16_t)(((bits >> 20) & 0x8000) | ((unsigned)exponent << 10) | ((bits >> 8) & 0x3FF));
}

static inline double relative_error(double got, double expected) {
  return fabs(got - expected) / fmax(fabs(expected), 1e-300);
}

/* Asserts that y (m rows of n) is the product of the [n][k] weights dense
 * with the m rows of x, each value within 1e-13 of the sum of |w_i x_i|:
 * the reference sums in double but in an order of its own. what names the
 * case in a failure. */
static inline void assert_dense_product(const char *what, const float *dense, const float *x,
                                        const double *y, uint32_t k, uint32_t n, uint32_t m) {
  for (uint32_t mi = 0; mi < m; mi++) {
    for (uint32_t row = 0; row < n; row++) {
      double expected = 0, scale = 0;
      for (uint32_t i = 0; i < k; i++) {
        expected += (double)dense[(size_t)row * k + i] * x[(size_t)mi * k + i];
        scale += fabs((double)dense[(size_t)row * k + i] * x[(size_t)mi * k + i]);
      }
      double got = y[(size_t)mi * n + row];
      cr_assert(fabs(got - expected) <= 1e-13 * scale,
                "%s k=%u n=%u m=%u: y[%u][%u] = %.17g, expected %.17g", what, k, n, m, mi, row,
                got, expected);
    }
  }
}

/* Missing or unreadable fixture: the test fails (never skips). */
static inline void load_fixture(fixture_gguf *gguf, fixture_expected *expected) {
  char path[1024], err[512];
  if (fixture_gguf_open(fixture_path(FIXTURE_GGUF, path, sizeof path), gguf, err, sizeof err))
    cr_assert_fail("fixture: %s", err);
  if (fixture_expected_load(fixture_path(FIXTURE_EXPECTED, path, sizeof path), expected, err,
                            sizeof err))
    cr_assert_fail("fixture: %s", err);
}

/* Asserts the first 16 weights of row 0 exactly, and the sum and sum of
 * squares of all count weights w (dequantized in float, summed in double)
 * to 1e-12, against the fixture's expected values for tensor e. */
static inline void assert_fixture_summary(const fixture_expected_tensor *e, const float *w,
                                          size_t count) {
  for (size_t i = 0; i < 16; i++)
    cr_assert_eq(w[i], (float)e->row0_first16[i], "%s: weight %zu is %.9g, expected %.9g",
                 e->name, i, (double)w[i], e->row0_first16[i]);
  double sum = 0, sumsq = 0;
  for (size_t i = 0; i < count; i++) {
    sum += w[i];
    sumsq += (double)w[i] * w[i];
  }
  cr_assert(relative_error(sum, e->sum) <= 1e-12, "%s: sum %.17g, expected %.17g", e->name, sum,
            e->sum);
  cr_assert(relative_error(sumsq, e->sumsq) <= 1e-12, "%s: sumsq %.17g, expected %.17g", e->name,
            sumsq, e->sumsq);
}

#endif
