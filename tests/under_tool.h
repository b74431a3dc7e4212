/*
 * under_tool.h: whether a test runs under a checking tool that slows every
 * launch many times over (compute-sanitizer), so that tests which repeat
 * work thousands of times can run fewer repetitions there.
 *
 * tests/compute-sanitizer.sh sets PTXQ_TESTS_UNDER_TOOL=1. Only the counts
 * change (iterations, cycles, queued kernels): every code path the plain
 * run takes is still taken, and the plain gpu suite keeps the full counts.
 */
#ifndef PTXQ_TESTS_UNDER_TOOL_H
#define PTXQ_TESTS_UNDER_TOOL_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static inline bool tests_under_tool(void) {
  const char *value = getenv("PTXQ_TESTS_UNDER_TOOL");
  return value != NULL && strcmp(value, "1") == 0;
}

/* full in a plain run, reduced under a tool. */
static inline int tests_repeats(int full, int reduced) {
  return tests_under_tool() ? reduced : full;
}

#endif
