/*
 * fixture.h: test-only access to the shared fixture
 * (../shared/fixtures/tiny-llama-q4km.gguf and its .expected.json).
 *
 * A minimal reader that trusts the file it reads: the fixture was written by
 * the reference implementation and is checked in read-only. It still checks
 * every read against the file size, so a truncated or damaged fixture gives
 * an error message instead of a crash. It is not the library's GGUF reader
 * and must not become one: untrusted files go through src/.
 *
 * Every loader returns 0 on success, or -1 with a message in err.
 */
#ifndef PTXQ_TESTS_FIXTURE_H
#define PTXQ_TESTS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#define FIXTURE_GGUF "tiny-llama-q4km.gguf"
#define FIXTURE_EXPECTED "tiny-llama-q4km.expected.json"
#define FIXTURE_NAME_MAX 128

/* PTXQ_FIXTURES_DIR "/" file, in buf; returns buf. */
const char *fixture_path(const char *file, char *buf, size_t buf_size);

/* The fixture's input vector: x[i] = ((i*37) % 101 - 50) / 32.0. */
float fixture_x(uint32_t i);

/* ---- the GGUF file ------------------------------------------------------ */

typedef struct fixture_tensor {
  char name[FIXTURE_NAME_MAX];
  uint32_t type;        /* ggml type id: 0 F32, 1 F16, 12 Q4_K, 14 Q6_K, ... */
  uint32_t n_dims;
  uint64_t dims[4];     /* dims[0] is the inner (k) dimension */
  uint64_t row_bytes;   /* bytes of one dims[0] row; 0 for types not listed above */
  uint64_t rows;        /* product of dims[1..] */
  const uint8_t *data;  /* points into the file image; NULL if row_bytes is 0 */
} fixture_tensor;

typedef struct fixture_gguf {
  uint8_t *image;       /* the whole file */
  size_t image_size;
  uint32_t version;
  uint32_t alignment;   /* general.alignment, else 32 */
  uint64_t metadata_count;
  size_t tensor_count;
  fixture_tensor *tensors;
} fixture_gguf;

int fixture_gguf_open(const char *path, fixture_gguf *gguf, char *err, size_t err_size);
const fixture_tensor *fixture_gguf_find(const fixture_gguf *gguf, const char *name);
void fixture_gguf_close(fixture_gguf *gguf);

/* ---- the expected values ------------------------------------------------ */

typedef struct fixture_expected_tensor {
  char name[FIXTURE_NAME_MAX];
  char type[16];        /* "q4_K", "q6_K", "f32" */
  uint32_t k, n;
  uint64_t row_bytes;
  double sum, sumsq;    /* of all dequantized weights, in fp64 */
  double row0_first16[16];
  size_t row0_count;
  double *y;            /* W . x in fp64, n values */
  size_t y_count;
} fixture_expected_tensor;

typedef struct fixture_expected {
  fixture_expected_tensor *tensors;
  size_t count;
} fixture_expected;

int fixture_expected_load(const char *path, fixture_expected *expected, char *err,
                          size_t err_size);
void fixture_expected_free(fixture_expected *expected);

#endif
