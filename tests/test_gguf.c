/*
 * test_gguf.c: suite "unit", the GGUF reader (src/gguf.c, src/ggml_types.c).
 *
 * Three sources of files: the shared fixture, written by the reference
 * implementation; files this test writes itself with a small GGUF writer
 * (every value type, nested arrays, a 200000-string array, versions 2 and 3,
 * alignments 32 and 64, one tensor of every ggml type); and a malformed
 * corpus made by damaging a valid written file in one place at a time, which
 * must fail with PTXQ_ERR_FORMAT and a detail naming the problem, never crash
 * (the gguf_asan build runs it under AddressSanitizer and UBSan).
 */
#define _POSIX_C_SOURCE 200809L
#include <criterion/criterion.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fixture.h"
#include "ptxq.h"

/* Under AddressSanitizer (the gguf_asan build) each test ends with a leak
 * check of its own: Criterion ignores the exit status LeakSanitizer gives a
 * test's process after the test passed, and assertions in a suite's fini do
 * not count either; an abort there does ("crashed during its setup or
 * teardown", and a failing exit status). */
#if defined(__SANITIZE_ADDRESS__)
#define GGUF_TEST_LEAK_CHECK 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GGUF_TEST_LEAK_CHECK 1
#endif
#endif
#ifdef GGUF_TEST_LEAK_CHECK
#include <sanitizer/lsan_interface.h>
#endif

/* ---- a byte image and a GGUF writer ---------------------------------------- */

typedef struct image {
  uint8_t *data;
  size_t len, cap;
} image;

static void put_bytes(image *im, const void *bytes, size_t n) {
  if (im->len + n > im->cap) {
    size_t cap = im->cap ? im->cap : 4096;
    while (cap < im->len + n) cap *= 2;
    im->data = realloc(im->data, cap);
    cr_assert_not_null(im->data, "test writer out of memory");
    im->cap = cap;
  }
  if (n > 0) memcpy(im->data + im->len, bytes, n);
  im->len += n;
}

static void put_le(image *im, uint64_t value, int bytes) {
  uint8_t b[8];
  for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(value >> (8 * i));
  put_bytes(im, b, (size_t)bytes);
}
static void put_u8(image *im, uint8_t v) { put_le(im, v, 1); }
static void put_u16(image *im, uint16_t v) { put_le(im, v, 2); }
static void put_u32(image *im, uint32_t v) { put_le(im, v, 4); }
static void put_u64(image *im, uint64_t v) { put_le(im, v, 8); }

static void put_f32(image *im, float f) {
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  put_u32(im, bits);
}

static void put_f64(image *im, double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  put_u64(im, bits);
}

static void put_string(image *im, const char *s) {
  put_u64(im, strlen(s));
  put_bytes(im, s, strlen(s));
}

/* A metadata entry's key and value type; returns where the type is. */
static size_t put_key(image *im, const char *key, ptxq_gguf_type type) {
  put_string(im, key);
  size_t at = im->len;
  put_u32(im, type);
  return at;
}

/* An array's element type and count; returns where the count is. */
static size_t put_array_head(image *im, ptxq_gguf_type elem_type, uint64_t count) {
  put_u32(im, elem_type);
  size_t at = im->len;
  put_u64(im, count);
  return at;
}

static void put_padding(image *im, size_t alignment) {
  while (im->len % alignment != 0) put_u8(im, 0);
}

static void patch_le(image *im, size_t at, uint64_t value, int bytes) {
  cr_assert_leq(at + (size_t)bytes, im->len, "patch at %zu past the image", at);
  for (int i = 0; i < bytes; i++) im->data[at + (size_t)i] = (uint8_t)(value >> (8 * i));
}

static image image_copy(const image *im) {
  image copy = {0};
  put_bytes(&copy, im->data, im->len);
  return copy;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng_next(void) { /* xorshift64* */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return rng_state * 2685821657736338717ull;
}

/* ---- the sample file: every value type and five tensors ------------------------ */

typedef struct tensor_spec {
  const char *name;
  uint32_t type, n_dims;
  uint64_t dims[4];
  uint64_t bytes; /* worked out by hand from the ggml block sizes */
} tensor_spec;

static const tensor_spec sample_tensors[] = {
    {"blk.0.attn_q.weight", 12, 2, {512, 3, 1, 1}, 3 * 2 * 144},       /* q4_K */
    {"output_norm.weight", 0, 1, {7, 1, 1, 1}, 7 * 4},                 /* f32 */
    {"blk.0.ffn_down.weight", 14, 3, {256, 2, 2, 1}, 4 * 210},         /* q6_K */
    {"t4d", 1, 4, {3, 2, 2, 2}, 24 * 2},                               /* f16 */
    {"q8.weight", 8, 2, {64, 3, 1, 1}, 3 * 2 * 34},                    /* q8_0 */
};
#define SAMPLE_TENSORS (sizeof sample_tensors / sizeof sample_tensors[0])

typedef struct sample_opts {
  uint32_t version;   /* 0: 3 */
  uint32_t alignment; /* general.alignment; 0: no key (the default 32 applies) */
  bool duplicate_key, duplicate_tensor;
  const char *first_tensor_name; /* NULL: sample_tensors[0].name */
} sample_opts;

/* Where the fields the corpus damages are. */
typedef struct sample {
  image im;
  uint64_t alignment;
  size_t version_at, tensor_count_at, kv_count_at;
  size_t first_key_len_at;
  size_t u32_type_at, bool_value_at, string_len_at;
  size_t array_elem_type_at, array_count_at;
  size_t alignment_type_at, alignment_value_at;
  size_t kv_end, header_end, data_start;
  struct {
    size_t info_at, n_dims_at, dims_at, type_at, offset_at;
    uint64_t rel_offset;
    uint8_t *expected; /* the random data written */
  } t[SAMPLE_TENSORS];
} sample;

static const char sample_string[] = "h\xc3\xa9llo \"world\"\n\t";
static const char *const sample_strings[] = {"alpha", "", "a string of some length, longer than most"};

static sample build_sample(sample_opts o) {
  sample s = {0};
  image *im = &s.im;
  uint32_t version = o.version ? o.version : 3;
  s.alignment = o.alignment ? o.alignment : 32;
  put_bytes(im, "GGUF", 4);
  s.version_at = im->len;
  put_u32(im, version);
  s.tensor_count_at = im->len;
  put_u64(im, SAMPLE_TENSORS);
  s.kv_count_at = im->len;
  put_u64(im, 0); /* patched below */
  uint64_t kvs = 0;

  s.first_key_len_at = im->len;
  put_key(im, "general.architecture", PTXQ_GGUF_STRING), kvs++;
  put_string(im, "llama");
  if (o.alignment) {
    s.alignment_type_at = put_key(im, "general.alignment", PTXQ_GGUF_U32), kvs++;
    s.alignment_value_at = im->len;
    put_u32(im, o.alignment);
  }
  put_key(im, "test.u8", PTXQ_GGUF_U8), kvs++;
  put_u8(im, 200);
  put_key(im, "test.i8", PTXQ_GGUF_I8), kvs++;
  put_u8(im, (uint8_t)-128);
  put_key(im, "test.u16", PTXQ_GGUF_U16), kvs++;
  put_u16(im, 65000);
  put_key(im, "test.i16", PTXQ_GGUF_I16), kvs++;
  put_u16(im, (uint16_t)-30000);
  s.u32_type_at = put_key(im, "test.u32", PTXQ_GGUF_U32), kvs++;
  put_u32(im, 4000000000u);
  put_key(im, "test.i32", PTXQ_GGUF_I32), kvs++;
  put_u32(im, (uint32_t)-2000000000);
  put_key(im, "test.f32", PTXQ_GGUF_F32), kvs++;
  put_f32(im, -1.75f);
  put_key(im, "test.bool", PTXQ_GGUF_BOOL), kvs++;
  s.bool_value_at = im->len;
  put_u8(im, 1);
  put_key(im, "test.string", PTXQ_GGUF_STRING), kvs++;
  s.string_len_at = im->len;
  put_string(im, sample_string);
  put_key(im, "test.empty_string", PTXQ_GGUF_STRING), kvs++;
  put_string(im, "");
  put_key(im, "test.u64", PTXQ_GGUF_U64), kvs++;
  put_u64(im, 0x8000000000000005ull);
  put_key(im, "test.i64", PTXQ_GGUF_I64), kvs++;
  put_u64(im, (uint64_t)INT64_MIN);
  put_key(im, "test.f64", PTXQ_GGUF_F64), kvs++;
  put_f64(im, -2.5e300);

  put_key(im, "test.array_u32", PTXQ_GGUF_ARRAY), kvs++;
  s.array_elem_type_at = im->len;
  s.array_count_at = put_array_head(im, PTXQ_GGUF_U32, 5);
  for (uint32_t i = 0; i < 5; i++) put_u32(im, 1000003u * (i + 1));
  put_key(im, "test.array_bool", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_BOOL, 3);
  put_u8(im, 1), put_u8(im, 0), put_u8(im, 1);
  put_key(im, "test.array_f32", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_F32, 2);
  put_f32(im, 0.5f), put_f32(im, -3.0f);
  put_key(im, "test.array_strings", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_STRING, 3);
  for (int i = 0; i < 3; i++) put_string(im, sample_strings[i]);
  put_key(im, "test.empty_array", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_I64, 0);
  /* [[7, 8], [], [9]] */
  put_key(im, "test.nested", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_ARRAY, 3);
  put_array_head(im, PTXQ_GGUF_U32, 2);
  put_u32(im, 7), put_u32(im, 8);
  put_array_head(im, PTXQ_GGUF_U32, 0);
  put_array_head(im, PTXQ_GGUF_U32, 1);
  put_u32(im, 9);
  /* [["x", "yy"], ["zzz"]] */
  put_key(im, "test.nested_strings", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_ARRAY, 2);
  put_array_head(im, PTXQ_GGUF_STRING, 2);
  put_string(im, "x"), put_string(im, "yy");
  put_array_head(im, PTXQ_GGUF_STRING, 1);
  put_string(im, "zzz");
  /* [[["deep"]]] */
  put_key(im, "test.deep", PTXQ_GGUF_ARRAY), kvs++;
  put_array_head(im, PTXQ_GGUF_ARRAY, 1);
  put_array_head(im, PTXQ_GGUF_ARRAY, 1);
  put_array_head(im, PTXQ_GGUF_STRING, 1);
  put_string(im, "deep");
  if (o.duplicate_key) {
    put_key(im, "test.u16", PTXQ_GGUF_U16), kvs++;
    put_u16(im, 1);
  }
  patch_le(im, s.kv_count_at, kvs, 8);
  s.kv_end = im->len;

  uint64_t rel = 0;
  for (size_t i = 0; i < SAMPLE_TENSORS; i++) {
    const tensor_spec *t = &sample_tensors[i];
    const char *name = t->name;
    if (i == 0 && o.first_tensor_name) name = o.first_tensor_name;
    if (i == 2 && o.duplicate_tensor) name = sample_tensors[0].name;
    s.t[i].info_at = im->len;
    put_string(im, name);
    s.t[i].n_dims_at = im->len;
    put_u32(im, t->n_dims);
    s.t[i].dims_at = im->len;
    for (uint32_t d = 0; d < t->n_dims; d++) put_u64(im, t->dims[d]);
    s.t[i].type_at = im->len;
    put_u32(im, t->type);
    s.t[i].offset_at = im->len;
    s.t[i].rel_offset = rel;
    put_u64(im, rel);
    rel += t->bytes;
    rel += (s.alignment - rel % s.alignment) % s.alignment;
  }
  s.header_end = im->len;
  put_padding(im, s.alignment);
  s.data_start = im->len;
  for (size_t i = 0; i < SAMPLE_TENSORS; i++) {
    while (im->len < s.data_start + s.t[i].rel_offset) put_u8(im, 0);
    s.t[i].expected = malloc(sample_tensors[i].bytes);
    for (uint64_t b = 0; b < sample_tensors[i].bytes; b++)
      s.t[i].expected[b] = (uint8_t)(rng_next() >> 56);
    put_bytes(im, s.t[i].expected, sample_tensors[i].bytes);
  }
  return s; /* the last tensor ends the file: any cut loses some of it */
}

static void sample_free(sample *s) {
  free(s->im.data);
  for (size_t i = 0; i < SAMPLE_TENSORS; i++) free(s->t[i].expected);
}

/* ---- temporary files ---------------------------------------------------- */

static char temp_path[256];

static void temp_remove(void) {
  if (temp_path[0] != '\0') unlink(temp_path);
  temp_path[0] = '\0';
}

static void test_fini(void) {
  temp_remove();
#ifdef GGUF_TEST_LEAK_CHECK
  if (__lsan_do_recoverable_leak_check() != 0) {
    fprintf(stderr, "test_gguf: memory leaked (LeakSanitizer report above)\n");
    abort();
  }
#endif
}

/* Writes the first len bytes of im to this test's temporary file. */
static const char *write_temp(const image *im, size_t len) {
  if (temp_path[0] == '\0') {
    const char *dir = getenv("TMPDIR");
    snprintf(temp_path, sizeof temp_path, "%s/test_gguf.XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(temp_path);
    cr_assert_geq(fd, 0, "mkstemp %s", temp_path);
    close(fd);
  }
  FILE *f = fopen(temp_path, "wb");
  cr_assert_not_null(f, "cannot write %s", temp_path);
  if (len > 0) cr_assert_eq(fwrite(im->data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
  return temp_path;
}

static ptxq_gguf *open_image(const image *im) {
  ptxq_gguf *file = NULL;
  int status = ptxq_gguf_open(write_temp(im, im->len), &file);
  cr_assert_eq(status, PTXQ_OK, "open gave %d (%s): %s", status, ptxq_strerror(status),
               ptxq_last_error(NULL));
  cr_assert_not_null(file);
  return file;
}

/* The first len bytes of im must be refused as malformed, with a detail
 * that contains `word` (and, like every format error, a byte offset). */
static void expect_format_len(const image *im, size_t len, const char *word, const char *what) {
  ptxq_gguf *file = (ptxq_gguf *)&file; /* must be cleared */
  int status = ptxq_gguf_open(write_temp(im, len), &file);
  const char *why = ptxq_last_error(NULL);
  cr_assert_eq(status, PTXQ_ERR_FORMAT, "%s: open gave %d (%s), want PTXQ_ERR_FORMAT; detail '%s'",
               what, status, ptxq_strerror(status), why);
  cr_assert_null(file, "%s: *out must be NULL after a failure", what);
  cr_assert(strstr(why, "byte") != NULL, "%s: detail names no byte offset: '%s'", what, why);
  if (word != NULL)
    cr_assert(strstr(why, word) != NULL, "%s: detail '%s' does not say '%s'", what, why, word);
}

static void expect_format(const image *im, const char *word, const char *what) {
  expect_format_len(im, im->len, word, what);
}

TestSuite(gguf, .fini = test_fini);

/* ---- reading every value --------------------------------------------------------- */

static uint64_t find_u64(const ptxq_gguf *f, const char *key) {
  ptxq_gguf_value v;
  cr_assert_eq(ptxq_gguf_find(f, key, &v), PTXQ_OK, "find %s: %s", key, ptxq_last_error(NULL));
  uint64_t out = 0;
  cr_assert_eq(ptxq_gguf_get_u64(&v, &out), PTXQ_OK, "%s: %s", key, ptxq_last_error(NULL));
  return out;
}

static int64_t find_i64(const ptxq_gguf *f, const char *key) {
  ptxq_gguf_value v;
  cr_assert_eq(ptxq_gguf_find(f, key, &v), PTXQ_OK, "find %s", key);
  int64_t out = 0;
  cr_assert_eq(ptxq_gguf_get_i64(&v, &out), PTXQ_OK, "%s: %s", key, ptxq_last_error(NULL));
  return out;
}

static void expect_string(const ptxq_gguf_value *v, const char *want, const char *what) {
  const char *data = NULL;
  uint64_t len = 0;
  cr_assert_eq(ptxq_gguf_get_string(v, &data, &len), PTXQ_OK, "%s: %s", what, ptxq_last_error(NULL));
  cr_assert_eq(len, strlen(want), "%s: length", what);
  cr_assert(memcmp(data, want, len) == 0, "%s: '%.*s', want '%s'", what, (int)len, data, want);
}

/* Reads v with the getter of its type, elements of arrays included, and
 * checks that the getters of other types refuse it. Returns values read. */
static uint64_t read_fully(const ptxq_gguf_value *v, int depth) {
  cr_assert_lt(depth, 40, "runaway nesting");
  uint64_t u;
  int64_t i;
  double d;
  int b;
  const char *s;
  uint64_t len;
  ptxq_gguf_type elem;
  uint64_t count;
  switch (v->type) {
  case PTXQ_GGUF_U8: case PTXQ_GGUF_U16: case PTXQ_GGUF_U32: case PTXQ_GGUF_U64:
    cr_assert_eq(ptxq_gguf_get_u64(v, &u), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert_eq(ptxq_gguf_get_f64(v, &d), PTXQ_ERR_INVALID);
    break;
  case PTXQ_GGUF_I8: case PTXQ_GGUF_I16: case PTXQ_GGUF_I32: case PTXQ_GGUF_I64:
    cr_assert_eq(ptxq_gguf_get_i64(v, &i), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert_eq(ptxq_gguf_get_string(v, &s, &len), PTXQ_ERR_INVALID);
    break;
  case PTXQ_GGUF_F32: case PTXQ_GGUF_F64:
    cr_assert_eq(ptxq_gguf_get_f64(v, &d), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert_eq(ptxq_gguf_get_u64(v, &u), PTXQ_ERR_INVALID);
    break;
  case PTXQ_GGUF_BOOL:
    cr_assert_eq(ptxq_gguf_get_bool(v, &b), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert(b == 0 || b == 1);
    cr_assert_eq(ptxq_gguf_get_i64(v, &i), PTXQ_ERR_INVALID);
    break;
  case PTXQ_GGUF_STRING:
    cr_assert_eq(ptxq_gguf_get_string(v, &s, &len), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert_eq(ptxq_gguf_get_bool(v, &b), PTXQ_ERR_INVALID);
    break;
  case PTXQ_GGUF_ARRAY: {
    cr_assert_eq(ptxq_gguf_get_array(v, &elem, &count), PTXQ_OK, "%s", ptxq_last_error(NULL));
    cr_assert_eq(ptxq_gguf_get_string(v, &s, &len), PTXQ_ERR_INVALID);
    uint64_t read = 1;
    for (uint64_t k = 0; k < count; k++) {
      ptxq_gguf_value e;
      cr_assert_eq(ptxq_gguf_array_at(v, k, &e), PTXQ_OK, "%s", ptxq_last_error(NULL));
      cr_assert_eq(e.type, elem);
      read += read_fully(&e, depth + 1);
    }
    ptxq_gguf_value past;
    cr_assert_eq(ptxq_gguf_array_at(v, count, &past), PTXQ_ERR_INVALID);
    return read;
  }
  default:
    cr_assert_fail("value of unknown type %d", (int)v->type);
  }
  return 1;
}

/* ---- the shared fixture ---------------------------------------------------------- */

Test(gguf, fixture_tensors_match_expected) {
  char path[1024], err[512];
  fixture_expected expected;
  if (fixture_expected_load(fixture_path(FIXTURE_EXPECTED, path, sizeof path), &expected, err,
                            sizeof err))
    cr_assert_fail("fixture: %s", err);
  fixture_gguf trusted; /* the test-only reader, for the offsets */
  if (fixture_gguf_open(fixture_path(FIXTURE_GGUF, path, sizeof path), &trusted, err, sizeof err))
    cr_assert_fail("fixture: %s", err);

  ptxq_gguf *f = NULL;
  int status = ptxq_gguf_open(fixture_path(FIXTURE_GGUF, path, sizeof path), &f);
  cr_assert_eq(status, PTXQ_OK, "open %s: %s", path, ptxq_last_error(NULL));
  cr_assert_eq(ptxq_gguf_version(f), 3);
  cr_assert_eq(ptxq_gguf_alignment(f), trusted.alignment);
  cr_assert_eq(ptxq_gguf_tensor_count(f), expected.count);
  cr_assert_eq(ptxq_gguf_kv_count(f), trusted.metadata_count);

  for (size_t i = 0; i < expected.count; i++) {
    const fixture_expected_tensor *e = &expected.tensors[i];
    ptxq_gguf_tensor t;
    cr_assert_eq(ptxq_gguf_tensor_find(f, e->name, &t), PTXQ_OK, "%s: %s", e->name,
                 ptxq_last_error(NULL));
    cr_assert_eq(t.name_len, strlen(e->name));
    cr_assert(memcmp(t.name, e->name, t.name_len) == 0);
    const char *type = ptxq_ggml_type_name(t.type);
    cr_assert_not_null(type, "%s: type %u has no name", e->name, t.type);
    cr_assert_str_eq(type, e->type, "%s", e->name);
    cr_assert_eq(t.dims[0], e->k, "%s: k", e->name);
    cr_assert_eq(t.dims[1] * t.dims[2] * t.dims[3], e->n, "%s: n", e->name);
    cr_assert_eq(t.bytes, (uint64_t)e->n * e->row_bytes, "%s: bytes", e->name);
    const fixture_tensor *ft = fixture_gguf_find(&trusted, e->name);
    cr_assert_not_null(ft);
    cr_assert_eq(t.offset, (uint64_t)(ft->data - trusted.image), "%s: offset", e->name);
    cr_assert_eq(t.offset % ptxq_gguf_alignment(f), 0);
    cr_assert(memcmp(t.data, ft->data, (size_t)t.bytes) == 0, "%s: data differs", e->name);
  }
  /* and every tensor of the file is one of the expected */
  for (uint64_t i = 0; i < ptxq_gguf_tensor_count(f); i++) {
    ptxq_gguf_tensor t;
    cr_assert_eq(ptxq_gguf_tensor_at(f, i, &t), PTXQ_OK);
    bool listed = false;
    for (size_t j = 0; j < expected.count; j++)
      listed |= strlen(expected.tensors[j].name) == t.name_len &&
                memcmp(expected.tensors[j].name, t.name, t.name_len) == 0;
    cr_assert(listed, "tensor %.*s is not in the expected JSON", (int)t.name_len, t.name);
  }
  ptxq_gguf_close(f);
  fixture_gguf_close(&trusted);
  fixture_expected_free(&expected);
}

Test(gguf, fixture_metadata_readable) {
  char path[1024];
  ptxq_gguf *f = NULL;
  int status = ptxq_gguf_open(fixture_path(FIXTURE_GGUF, path, sizeof path), &f);
  cr_assert_eq(status, PTXQ_OK, "open %s: %s", path, ptxq_last_error(NULL));
  ptxq_gguf_value v;
  cr_assert_eq(ptxq_gguf_find(f, "general.architecture", &v), PTXQ_OK);
  expect_string(&v, "llama", "general.architecture");
  cr_assert_eq(find_u64(f, "llama.embedding_length"), 512);
  cr_assert_eq(find_u64(f, "llama.rope.dimension_count"), 64);
  cr_assert_eq(ptxq_gguf_find(f, "llama.rope.freq_base", &v), PTXQ_OK);
  double base = 0;
  cr_assert_eq(ptxq_gguf_get_f64(&v, &base), PTXQ_OK);
  cr_assert_float_eq(base, 500000.0, 0.0);
  cr_assert_eq(ptxq_gguf_find(f, "no.such.key", &v), PTXQ_ERR_NOT_FOUND);
  cr_assert(strstr(ptxq_last_error(NULL), "no.such.key") != NULL);

  for (uint64_t i = 0; i < ptxq_gguf_kv_count(f); i++) {
    const char *key;
    uint64_t key_len;
    cr_assert_eq(ptxq_gguf_kv_at(f, i, &key, &key_len, &v), PTXQ_OK);
    cr_assert_gt(key_len, 0);
    read_fully(&v, 0);
    /* find gives the same value */
    char name[256];
    cr_assert_lt(key_len, sizeof name);
    memcpy(name, key, key_len);
    name[key_len] = '\0';
    ptxq_gguf_value again;
    cr_assert_eq(ptxq_gguf_find(f, name, &again), PTXQ_OK, "%s", name);
    cr_assert_eq(again.offset, v.offset);
    cr_assert_eq(again.type, v.type);
  }
  ptxq_gguf_close(f);
}

/* ---- files written here ---------------------------------------------------------- */

static void check_sample_tensors(const ptxq_gguf *f, const sample *s, uint64_t alignment) {
  cr_assert_eq(ptxq_gguf_alignment(f), alignment);
  cr_assert_eq(ptxq_gguf_tensor_count(f), SAMPLE_TENSORS);
  for (size_t i = 0; i < SAMPLE_TENSORS; i++) {
    const tensor_spec *spec = &sample_tensors[i];
    ptxq_gguf_tensor t, by_name;
    cr_assert_eq(ptxq_gguf_tensor_at(f, i, &t), PTXQ_OK);
    cr_assert_eq(t.name_len, strlen(spec->name));
    cr_assert(memcmp(t.name, spec->name, t.name_len) == 0);
    cr_assert_eq(ptxq_gguf_tensor_find(f, spec->name, &by_name), PTXQ_OK);
    cr_assert_eq(by_name.offset, t.offset);
    cr_assert_eq(t.type, spec->type, "%s", spec->name);
    cr_assert_eq(t.n_dims, spec->n_dims, "%s", spec->name);
    for (int d = 0; d < 4; d++) cr_assert_eq(t.dims[d], spec->dims[d], "%s dim %d", spec->name, d);
    cr_assert_eq(t.bytes, spec->bytes, "%s: bytes %" PRIu64 ", want %" PRIu64, spec->name, t.bytes,
                 spec->bytes);
    cr_assert_eq(t.offset, s->data_start + s->t[i].rel_offset, "%s", spec->name);
    cr_assert_eq(t.offset % alignment, 0, "%s", spec->name);
    cr_assert(memcmp(t.data, s->t[i].expected, (size_t)spec->bytes) == 0, "%s: data", spec->name);
  }
  ptxq_gguf_tensor t;
  cr_assert_eq(ptxq_gguf_tensor_at(f, SAMPLE_TENSORS, &t), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_find(f, "blk.0.attn_q", &t), PTXQ_ERR_NOT_FOUND);
  cr_assert(strstr(ptxq_last_error(NULL), "blk.0.attn_q") != NULL);
}

Test(gguf, every_value_type) {
  sample s = build_sample((sample_opts){0});
  ptxq_gguf *f = open_image(&s.im);
  cr_assert_eq(ptxq_gguf_version(f), 3);

  cr_assert_eq(find_u64(f, "test.u8"), 200);
  cr_assert_eq(find_i64(f, "test.u8"), 200);
  cr_assert_eq(find_i64(f, "test.i8"), -128);
  cr_assert_eq(find_u64(f, "test.u16"), 65000);
  cr_assert_eq(find_i64(f, "test.i16"), -30000);
  cr_assert_eq(find_u64(f, "test.u32"), 4000000000u);
  cr_assert_eq(find_i64(f, "test.i32"), -2000000000);
  cr_assert_eq(find_u64(f, "test.u64"), 0x8000000000000005ull);
  cr_assert_eq(find_i64(f, "test.i64"), INT64_MIN);

  ptxq_gguf_value v;
  uint64_t u;
  int64_t i;
  double d;
  int b;
  /* values that do not fit */
  cr_assert_eq(ptxq_gguf_find(f, "test.i8", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_u64(&v, &u), PTXQ_ERR_INVALID);
  cr_assert(strstr(ptxq_last_error(NULL), "-128") != NULL, "'%s'", ptxq_last_error(NULL));
  cr_assert_eq(ptxq_gguf_find(f, "test.u64", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_i64(&v, &i), PTXQ_ERR_INVALID);
  /* floats, bools, strings */
  cr_assert_eq(ptxq_gguf_find(f, "test.f32", &v), PTXQ_OK);
  cr_assert_eq(v.type, PTXQ_GGUF_F32);
  cr_assert_eq(ptxq_gguf_get_f64(&v, &d), PTXQ_OK);
  cr_assert_float_eq(d, -1.75, 0.0);
  cr_assert_eq(ptxq_gguf_find(f, "test.f64", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_f64(&v, &d), PTXQ_OK);
  cr_assert_float_eq(d, -2.5e300, 0.0);
  cr_assert_eq(ptxq_gguf_find(f, "test.bool", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_bool(&v, &b), PTXQ_OK);
  cr_assert_eq(b, 1);
  cr_assert_eq(ptxq_gguf_get_u64(&v, &u), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_find(f, "test.string", &v), PTXQ_OK);
  expect_string(&v, sample_string, "test.string");
  cr_assert_eq(ptxq_gguf_get_u64(&v, &u), PTXQ_ERR_INVALID);
  cr_assert(strstr(ptxq_last_error(NULL), "string") != NULL, "mismatch names the type: '%s'",
            ptxq_last_error(NULL));
  cr_assert_eq(ptxq_gguf_find(f, "test.empty_string", &v), PTXQ_OK);
  expect_string(&v, "", "test.empty_string");

  /* arrays */
  ptxq_gguf_type elem;
  uint64_t count;
  ptxq_gguf_value e, inner;
  cr_assert_eq(ptxq_gguf_find(f, "test.array_u32", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, &count), PTXQ_OK);
  cr_assert_eq(elem, PTXQ_GGUF_U32);
  cr_assert_eq(count, 5);
  for (uint64_t k = 0; k < count; k++) {
    cr_assert_eq(ptxq_gguf_array_at(&v, k, &e), PTXQ_OK);
    cr_assert_eq(ptxq_gguf_get_u64(&e, &u), PTXQ_OK);
    cr_assert_eq(u, 1000003u * (k + 1));
  }
  cr_assert_eq(ptxq_gguf_array_at(&v, 5, &e), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_array_at(&v, UINT64_MAX, &e), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_u64(&v, &u), PTXQ_ERR_INVALID);
  cr_assert(strstr(ptxq_last_error(NULL), "array") != NULL);

  cr_assert_eq(ptxq_gguf_find(f, "test.array_bool", &v), PTXQ_OK);
  int want_bools[] = {1, 0, 1};
  for (uint64_t k = 0; k < 3; k++) {
    cr_assert_eq(ptxq_gguf_array_at(&v, k, &e), PTXQ_OK);
    cr_assert_eq(ptxq_gguf_get_bool(&e, &b), PTXQ_OK);
    cr_assert_eq(b, want_bools[k]);
  }
  cr_assert_eq(ptxq_gguf_find(f, "test.array_f32", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&v, 1, &e), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_f64(&e, &d), PTXQ_OK);
  cr_assert_float_eq(d, -3.0, 0.0);
  cr_assert_eq(ptxq_gguf_find(f, "test.array_strings", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, &count), PTXQ_OK);
  cr_assert_eq(elem, PTXQ_GGUF_STRING);
  cr_assert_eq(count, 3);
  for (uint64_t k = 3; k-- > 0;) { /* any order: O(1) access */
    cr_assert_eq(ptxq_gguf_array_at(&v, k, &e), PTXQ_OK);
    expect_string(&e, sample_strings[k], "array string");
  }
  cr_assert_eq(ptxq_gguf_find(f, "test.empty_array", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, &count), PTXQ_OK);
  cr_assert_eq(elem, PTXQ_GGUF_I64);
  cr_assert_eq(count, 0);
  cr_assert_eq(ptxq_gguf_array_at(&v, 0, &e), PTXQ_ERR_INVALID);

  /* nested: [[7, 8], [], [9]] */
  cr_assert_eq(ptxq_gguf_find(f, "test.nested", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, &count), PTXQ_OK);
  cr_assert_eq(elem, PTXQ_GGUF_ARRAY);
  cr_assert_eq(count, 3);
  const uint64_t nested_counts[] = {2, 0, 1};
  for (uint64_t k = 0; k < 3; k++) {
    cr_assert_eq(ptxq_gguf_array_at(&v, k, &e), PTXQ_OK);
    cr_assert_eq(ptxq_gguf_get_array(&e, &elem, &count), PTXQ_OK);
    cr_assert_eq(elem, PTXQ_GGUF_U32);
    cr_assert_eq(count, nested_counts[k]);
  }
  cr_assert_eq(ptxq_gguf_array_at(&v, 2, &e), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&e, 0, &inner), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_u64(&inner, &u), PTXQ_OK);
  cr_assert_eq(u, 9);
  cr_assert_eq(ptxq_gguf_array_at(&v, 0, &e), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&e, 1, &inner), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_u64(&inner, &u), PTXQ_OK);
  cr_assert_eq(u, 8);

  cr_assert_eq(ptxq_gguf_find(f, "test.nested_strings", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&v, 1, &e), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&e, 0, &inner), PTXQ_OK);
  expect_string(&inner, "zzz", "nested string");
  cr_assert_eq(ptxq_gguf_array_at(&v, 0, &e), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&e, 1, &inner), PTXQ_OK);
  expect_string(&inner, "yy", "nested string");

  cr_assert_eq(ptxq_gguf_find(f, "test.deep", &v), PTXQ_OK);
  for (int level = 0; level < 3; level++) {
    cr_assert_eq(ptxq_gguf_array_at(&v, 0, &e), PTXQ_OK, "level %d", level);
    v = e;
  }
  expect_string(&v, "deep", "test.deep");

  /* kv_at walks the keys in file order, and every value reads */
  cr_assert_eq(ptxq_gguf_kv_count(f), 22);
  const char *key;
  uint64_t key_len;
  cr_assert_eq(ptxq_gguf_kv_at(f, 0, &key, &key_len, &v), PTXQ_OK);
  cr_assert_eq(key_len, strlen("general.architecture"));
  cr_assert(memcmp(key, "general.architecture", key_len) == 0);
  uint64_t values = 0;
  for (uint64_t k = 0; k < ptxq_gguf_kv_count(f); k++) {
    cr_assert_eq(ptxq_gguf_kv_at(f, k, &key, &key_len, &v), PTXQ_OK);
    values += read_fully(&v, 0);
  }
  cr_assert_gt(values, 40, "nested values were visited");
  cr_assert_eq(ptxq_gguf_kv_at(f, 22, &key, &key_len, &v), PTXQ_ERR_INVALID);

  check_sample_tensors(f, &s, 32);
  ptxq_gguf_close(f);
  sample_free(&s);
}

Test(gguf, versions_2_and_3_and_alignments) {
  const struct {
    uint32_t version, alignment_key;
    uint64_t alignment;
  } cases[] = {{3, 0, 32}, {2, 0, 32}, {3, 64, 64}, {2, 64, 64}, {3, 32, 32}, {3, 1, 1}, {3, 4096, 4096}};
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sample s = build_sample((sample_opts){.version = cases[c].version, .alignment = cases[c].alignment_key});
    ptxq_gguf *f = open_image(&s.im);
    cr_assert_eq(ptxq_gguf_version(f), cases[c].version);
    check_sample_tensors(f, &s, cases[c].alignment);
    if (cases[c].alignment_key) cr_assert_eq(find_u64(f, "general.alignment"), cases[c].alignment_key);
    ptxq_gguf_close(f);
    sample_free(&s);
  }
}

/* One tensor of every ggml type, sized by hand from the reference's block
 * sizes (gguf-py GGML_QUANT_SIZES), so the table in ggml_types.c is checked
 * against numbers written independently of it. */
Test(gguf, every_ggml_type) {
  static const struct {
    uint32_t id;
    const char *name;
    uint32_t block, bytes;
  } types[] = {
      {0, "f32", 1, 4},          {1, "f16", 1, 2},         {2, "q4_0", 32, 18},
      {3, "q4_1", 32, 20},       {6, "q5_0", 32, 22},      {7, "q5_1", 32, 24},
      {8, "q8_0", 32, 34},       {9, "q8_1", 32, 40},      {10, "q2_K", 256, 84},
      {11, "q3_K", 256, 110},    {12, "q4_K", 256, 144},   {13, "q5_K", 256, 176},
      {14, "q6_K", 256, 210},    {15, "q8_K", 256, 292},   {16, "iq2_xxs", 256, 66},
      {17, "iq2_xs", 256, 74},   {18, "iq3_xxs", 256, 98}, {19, "iq1_s", 256, 50},
      {20, "iq4_nl", 32, 18},    {21, "iq3_s", 256, 110},  {22, "iq2_s", 256, 82},
      {23, "iq4_xs", 256, 136},  {24, "i8", 1, 1},         {25, "i16", 1, 2},
      {26, "i32", 1, 4},         {27, "i64", 1, 8},        {28, "f64", 1, 8},
      {29, "iq1_m", 256, 56},    {30, "bf16", 1, 2},       {34, "tq1_0", 256, 54},
      {35, "tq2_0", 256, 66},    {39, "mxfp4", 32, 17},    {40, "nvfp4", 64, 36},
      {41, "q1_0", 128, 18},
  };
  size_t n = sizeof types / sizeof types[0];
  static const uint32_t unknown[] = {4, 5, 31, 32, 33, 36, 37, 38, 42, 99, 1000, UINT32_MAX};
  for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++)
    cr_assert_null(ptxq_ggml_type_name(unknown[i]), "type %u", unknown[i]);

  image im = {0};
  put_bytes(&im, "GGUF", 4);
  put_u32(&im, 3);
  put_u64(&im, n);
  put_u64(&im, 0);
  uint64_t rel = 0, rows = 3;
  for (size_t i = 0; i < n; i++) {
    cr_assert_str_eq(ptxq_ggml_type_name(types[i].id), types[i].name);
    char name[32];
    snprintf(name, sizeof name, "t.%s", types[i].name);
    put_string(&im, name);
    put_u32(&im, 2);
    put_u64(&im, 2 * types[i].block); /* two blocks per row */
    put_u64(&im, rows);
    put_u32(&im, types[i].id);
    put_u64(&im, rel);
    rel += rows * 2 * types[i].bytes;
    rel = (rel + 31) / 32 * 32;
  }
  put_padding(&im, 32);
  size_t data_start = im.len;
  while (im.len < data_start + rel) put_u8(&im, (uint8_t)rng_next());
  ptxq_gguf *f = open_image(&im);
  for (size_t i = 0; i < n; i++) {
    ptxq_gguf_tensor t;
    cr_assert_eq(ptxq_gguf_tensor_at(f, i, &t), PTXQ_OK);
    cr_assert_eq(t.type, types[i].id);
    cr_assert_eq(t.bytes, rows * 2 * types[i].bytes, "%s", types[i].name);
  }
  ptxq_gguf_close(f);

  /* a dims[0] one element short of two blocks fails for every blocked type */
  for (size_t i = 0; i < n; i++) {
    if (types[i].block == 1) continue;
    image bad = {0};
    put_bytes(&bad, "GGUF", 4);
    put_u32(&bad, 3);
    put_u64(&bad, 1);
    put_u64(&bad, 0);
    put_string(&bad, "w");
    put_u32(&bad, 1);
    put_u64(&bad, 2 * types[i].block - 1);
    put_u32(&bad, types[i].id);
    put_u64(&bad, 0);
    put_padding(&bad, 32);
    for (int k = 0; k < 1024; k++) put_u8(&bad, (uint8_t)rng_next());
    expect_format(&bad, "multiple", types[i].name);
    cr_assert(strstr(ptxq_last_error(NULL), types[i].name) != NULL, "'%s'", ptxq_last_error(NULL));
    free(bad.data);
  }
  free(im.data);
}

static double seconds_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

Test(gguf, string_array_of_200000_opens_fast) {
  enum { TOKENS = 200000 };
  image im = {0};
  put_bytes(&im, "GGUF", 4);
  put_u32(&im, 3);
  put_u64(&im, 1);
  put_u64(&im, 2);
  put_key(&im, "tokenizer.ggml.tokens", PTXQ_GGUF_ARRAY);
  put_array_head(&im, PTXQ_GGUF_STRING, TOKENS);
  char token[64];
  for (uint32_t i = 0; i < TOKENS; i++) {
    snprintf(token, sizeof token, "tok%u_%.*s", i, (int)(i % 13), "abcdefghijklm");
    put_string(&im, token);
  }
  put_key(&im, "tokenizer.ggml.scores", PTXQ_GGUF_ARRAY);
  put_array_head(&im, PTXQ_GGUF_F32, TOKENS);
  for (uint32_t i = 0; i < TOKENS; i++) put_f32(&im, -(float)i);
  put_string(&im, "w");
  put_u32(&im, 1);
  put_u64(&im, 8);
  put_u32(&im, 0);
  put_u64(&im, 0);
  put_padding(&im, 32);
  for (int k = 0; k < 32; k++) put_u8(&im, (uint8_t)rng_next());

  const char *path = write_temp(&im, im.len);
  ptxq_gguf *f = NULL;
  double start = seconds_now();
  int status = ptxq_gguf_open(path, &f);
  double elapsed = seconds_now() - start;
  cr_assert_eq(status, PTXQ_OK, "%s", ptxq_last_error(NULL));
  cr_assert_lt(elapsed, 1.0, "open took %.3f s", elapsed);

  ptxq_gguf_value v, e;
  ptxq_gguf_type elem;
  uint64_t count;
  cr_assert_eq(ptxq_gguf_find(f, "tokenizer.ggml.tokens", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, &count), PTXQ_OK);
  cr_assert_eq(elem, PTXQ_GGUF_STRING);
  cr_assert_eq(count, TOKENS);
  start = seconds_now();
  for (uint32_t k = 0; k < 1000; k++) {
    uint32_t i = (uint32_t)(rng_next() % TOKENS);
    if (k == 0) i = TOKENS - 1;
    if (k == 1) i = 0;
    snprintf(token, sizeof token, "tok%u_%.*s", i, (int)(i % 13), "abcdefghijklm");
    cr_assert_eq(ptxq_gguf_array_at(&v, i, &e), PTXQ_OK);
    expect_string(&e, token, "token");
  }
  cr_assert_lt(seconds_now() - start, 0.5, "1000 look-ups must not walk the array");
  cr_assert_eq(ptxq_gguf_find(f, "tokenizer.ggml.scores", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_array_at(&v, 123456, &e), PTXQ_OK);
  double d;
  cr_assert_eq(ptxq_gguf_get_f64(&e, &d), PTXQ_OK);
  cr_assert_float_eq(d, -123456.0, 0.0);
  ptxq_gguf_close(f);
  free(im.data);
}

/* ---- the API's own argument checks --------------------------------------------- */

Test(gguf, bad_arguments) {
  ptxq_gguf *f = NULL;
  cr_assert_eq(ptxq_gguf_open(NULL, &f), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_open("/nonexistent", NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_open("/nonexistent/file.gguf", &f), PTXQ_ERR_IO);
  cr_assert(strstr(ptxq_last_error(NULL), "/nonexistent/file.gguf") != NULL);
  cr_assert_null(f);
  cr_assert_eq(ptxq_gguf_open("/tmp", &f), PTXQ_ERR_IO);
  cr_assert(strstr(ptxq_last_error(NULL), "regular") != NULL, "'%s'", ptxq_last_error(NULL));
  image empty = {0};
  expect_format(&empty, "truncated", "empty file");
  /* a FIFO with no writer: refused at once, not waited on */
  char fifo[300];
  snprintf(fifo, sizeof fifo, "%s.fifo", write_temp(&empty, 0));
  cr_assert_eq(mkfifo(fifo, 0600), 0, "mkfifo %s", fifo);
  int status = ptxq_gguf_open(fifo, &f);
  unlink(fifo);
  cr_assert_eq(status, PTXQ_ERR_IO, "FIFO: %d (%s)", status, ptxq_last_error(NULL));
  cr_assert(strstr(ptxq_last_error(NULL), "regular") != NULL, "'%s'", ptxq_last_error(NULL));

  ptxq_gguf_close(NULL);
  cr_assert_eq(ptxq_gguf_version(NULL), 0);
  cr_assert_eq(ptxq_gguf_alignment(NULL), 0);
  cr_assert_eq(ptxq_gguf_kv_count(NULL), 0);
  cr_assert_eq(ptxq_gguf_tensor_count(NULL), 0);
  cr_assert_null(ptxq_ggml_type_name(UINT32_MAX));

  sample s = build_sample((sample_opts){0});
  f = open_image(&s.im);
  ptxq_gguf_value v;
  ptxq_gguf_tensor t;
  const char *key;
  uint64_t len, u;
  cr_assert_eq(ptxq_gguf_find(NULL, "test.u8", &v), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_find(f, NULL, &v), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_find(f, "test.u8", NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_kv_at(NULL, 0, &key, &len, &v), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_kv_at(f, 0, NULL, &len, &v), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_kv_at(f, 0, &key, NULL, &v), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_kv_at(f, 0, &key, &len, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_at(NULL, 0, &t), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_at(f, 0, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_find(f, NULL, &t), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_find(NULL, "t4d", &t), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_tensor_find(f, "t4d", NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_u64(NULL, &u), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_find(f, "test.u8", &v), PTXQ_OK);
  cr_assert_eq(ptxq_gguf_get_u64(&v, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_i64(&v, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_f64(&v, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_bool(&v, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_string(&v, NULL, &len), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_string(&v, &key, NULL), PTXQ_ERR_INVALID);
  ptxq_gguf_type elem;
  cr_assert_eq(ptxq_gguf_get_array(&v, NULL, &len), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_get_array(&v, &elem, NULL), PTXQ_ERR_INVALID);
  cr_assert_eq(ptxq_gguf_array_at(&v, 0, NULL), PTXQ_ERR_INVALID);

  /* values the caller made up are refused, never read past the map */
  ptxq_gguf_value forged = {.file = NULL, .type = PTXQ_GGUF_U8};
  cr_assert_eq(ptxq_gguf_get_u64(&forged, &u), PTXQ_ERR_INVALID);
  forged = (ptxq_gguf_value){.file = f, .type = PTXQ_GGUF_U64, .offset = s.im.len - 4};
  cr_assert_eq(ptxq_gguf_get_u64(&forged, &u), PTXQ_ERR_INVALID);
  forged.offset = UINT64_MAX - 2;
  cr_assert_eq(ptxq_gguf_get_u64(&forged, &u), PTXQ_ERR_INVALID);
  forged = (ptxq_gguf_value){.file = f, .type = PTXQ_GGUF_STRING, .offset = s.data_start};
  cr_assert_eq(ptxq_gguf_get_string(&forged, &key, &len), PTXQ_ERR_INVALID); /* random length */
  forged = (ptxq_gguf_value){.file = f, .type = PTXQ_GGUF_ARRAY, .offset = 24, .index = 3};
  cr_assert_eq(ptxq_gguf_get_array(&forged, &elem, &len), PTXQ_ERR_INVALID);
  forged.index = UINT64_MAX;
  cr_assert_eq(ptxq_gguf_array_at(&forged, 0, &v), PTXQ_ERR_INVALID);
  forged = (ptxq_gguf_value){.file = f, .type = (ptxq_gguf_type)77};
  cr_assert_eq(ptxq_gguf_get_u64(&forged, &u), PTXQ_ERR_INVALID);
  ptxq_gguf_close(f);
  sample_free(&s);
}

/* ---- the malformed corpus ------------------------------------------------------- */

Test(gguf, truncated_at_every_byte) {
  sample s = build_sample((sample_opts){.alignment = 64});
  for (size_t len = 0; len < s.im.len; len++) {
    char what[64];
    snprintf(what, sizeof what, "cut at %zu of %zu", len, s.im.len);
    const char *word = NULL;
    if (len >= s.header_end) word = "past the end"; /* the header is whole, the data is not */
    expect_format_len(&s.im, len, word, what);
  }
  /* the section boundaries, by name */
  expect_format_len(&s.im, 3, "truncated", "inside the magic");
  expect_format_len(&s.im, 8, "truncated", "after the version");
  expect_format_len(&s.im, 24, "count", "after the counts");
  expect_format_len(&s.im, s.kv_end, "tensor count", "after the metadata");
  expect_format_len(&s.im, s.header_end, "past the end", "after the tensor infos");
  expect_format_len(&s.im, s.data_start, "past the end", "after the padding");
  expect_format_len(&s.im, s.data_start + s.t[SAMPLE_TENSORS - 1].rel_offset, "past the end",
                    "before the last tensor's data");
  ptxq_gguf *f = open_image(&s.im); /* and whole, it opens */
  ptxq_gguf_close(f);
  sample_free(&s);
}

Test(gguf, bad_magic_and_versions) {
  sample s = build_sample((sample_opts){0});
  image bad = image_copy(&s.im);
  bad.data[0] = 'X';
  expect_format(&bad, "magic", "bad magic");
  free(bad.data);
  const uint32_t versions[] = {0, 1, 4, 7, 0x03000000u, UINT32_MAX};
  for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
    bad = image_copy(&s.im);
    patch_le(&bad, s.version_at, versions[i], 4);
    char what[48];
    snprintf(what, sizeof what, "version %u", versions[i]);
    expect_format(&bad, "unsupported GGUF version", what);
    char number[16];
    snprintf(number, sizeof number, "%u", versions[i]);
    cr_assert(strstr(ptxq_last_error(NULL), number) != NULL, "%s: '%s'", what, ptxq_last_error(NULL));
    cr_assert(strstr(ptxq_last_error(NULL), "byte 4") != NULL, "%s: '%s'", what, ptxq_last_error(NULL));
    free(bad.data);
  }
  sample_free(&s);
}

/* Damages one u32 or u64 field of a fresh copy of the sample; the result
 * must be refused with a detail containing `word`. */
static void expect_patch(const sample *s, size_t at, uint64_t value, int bytes, const char *word,
                         const char *what) {
  image bad = image_copy(&s->im);
  patch_le(&bad, at, value, bytes);
  expect_format(&bad, word, what);
  free(bad.data);
}

Test(gguf, huge_counts_and_lengths) {
  sample s = build_sample((sample_opts){0});
  expect_patch(&s, s.tensor_count_at, 1ull << 63, 8, "tensor count", "tensor count 2^63");
  expect_patch(&s, s.tensor_count_at, UINT64_MAX, 8, "tensor count", "tensor count 2^64-1");
  expect_patch(&s, s.kv_count_at, 1ull << 63, 8, "count", "kv count 2^63");
  expect_patch(&s, s.kv_count_at, UINT64_MAX, 8, "count", "kv count 2^64-1");
  /* a count the file could hold, but does not: the tensor infos run out */
  expect_patch(&s, s.tensor_count_at, SAMPLE_TENSORS + 1, 8, NULL, "one tensor too many");
  expect_patch(&s, s.kv_count_at, 23, 8, NULL, "one kv too many");
  expect_patch(&s, s.first_key_len_at, 1ull << 63, 8, "string length", "key length 2^63");
  expect_patch(&s, s.first_key_len_at, UINT64_MAX, 8, "string length", "key length 2^64-1");
  expect_patch(&s, s.string_len_at, s.im.len, 8, "string length", "string value past the end");
  expect_patch(&s, s.array_count_at, 1ull << 62, 8, "array count", "array count 2^62");
  expect_patch(&s, s.array_count_at, UINT64_MAX, 8, "array count", "array count 2^64-1");
  /* a string length that overflows when added to the position */
  expect_patch(&s, s.string_len_at, UINT64_MAX - 10, 8, "string length", "string length near 2^64");
  sample_free(&s);
}

Test(gguf, bad_value_types) {
  sample s = build_sample((sample_opts){0});
  expect_patch(&s, s.u32_type_at, 13, 4, "unknown value type 13", "value type 13");
  cr_assert(strstr(ptxq_last_error(NULL), "test.u32") != NULL, "names the key: '%s'",
            ptxq_last_error(NULL));
  expect_patch(&s, s.u32_type_at, UINT32_MAX, 4, "unknown value type", "value type 2^32-1");
  expect_patch(&s, s.array_elem_type_at, 13, 4, "element type", "array element type 13");
  expect_patch(&s, s.bool_value_at, 2, 1, "bool", "bool value 2");
  sample_free(&s);
}

Test(gguf, arrays_nested_too_deep) {
  for (int depth = 31; depth <= 34; depth++) {
    image im = {0};
    put_bytes(&im, "GGUF", 4);
    put_u32(&im, 3);
    put_u64(&im, 0);
    put_u64(&im, 1);
    put_key(&im, "deep", PTXQ_GGUF_ARRAY);
    for (int level = 1; level < depth; level++) put_array_head(&im, PTXQ_GGUF_ARRAY, 1);
    put_array_head(&im, PTXQ_GGUF_U8, 1);
    put_u8(&im, 42);
    if (depth <= 32) {
      ptxq_gguf *f = open_image(&im);
      ptxq_gguf_value v;
      cr_assert_eq(ptxq_gguf_find(f, "deep", &v), PTXQ_OK);
      cr_assert_eq(read_fully(&v, 0), (uint64_t)depth + 1);
      ptxq_gguf_close(f);
    } else {
      expect_format(&im, "nested", "arrays too deep");
    }
    free(im.data);
  }
}

Test(gguf, bad_tensor_infos) {
  sample s = build_sample((sample_opts){0});
  expect_patch(&s, s.t[0].n_dims_at, 0, 4, "n_dims", "n_dims 0");
  expect_patch(&s, s.t[0].n_dims_at, 5, 4, "n_dims", "n_dims 5");
  cr_assert(strstr(ptxq_last_error(NULL), "blk.0.attn_q.weight") != NULL, "names the tensor: '%s'",
            ptxq_last_error(NULL));
  expect_patch(&s, s.t[0].dims_at + 8, 0, 8, "is 0", "dims[1] = 0");
  expect_patch(&s, s.t[0].dims_at, 0, 8, "is 0", "dims[0] = 0");
  expect_patch(&s, s.t[0].dims_at + 8, 1ull << 62, 8, "overflow", "512 * 2^62 elements");
  expect_patch(&s, s.t[2].dims_at + 16, UINT64_MAX, 8, "overflow", "dims[2] = 2^64-1");
  expect_patch(&s, s.t[0].dims_at + 8, (1ull << 54) - 1, 8, "past the end", "huge but countable");
  expect_patch(&s, s.t[0].type_at, 99, 4, "unknown ggml tensor type 99", "type 99");
  expect_patch(&s, s.t[0].type_at, 4, 4, "unknown ggml tensor type 4", "retired type 4");
  expect_patch(&s, s.t[0].type_at, 31, 4, "unknown ggml tensor type", "retired type 31");
  expect_patch(&s, s.t[0].dims_at, 100, 8, "multiple", "q4_K dims[0] = 100");
  expect_patch(&s, s.t[0].dims_at, 256 + 32, 8, "multiple", "q4_K dims[0] = 288");
  expect_patch(&s, s.t[4].dims_at, 48, 8, "multiple", "q8_0 dims[0] = 48");
  sample_free(&s);

  sample dup = build_sample((sample_opts){.duplicate_tensor = true});
  expect_format(&dup.im, "duplicate tensor name", "duplicate tensor");
  cr_assert(strstr(ptxq_last_error(NULL), "blk.0.attn_q.weight") != NULL, "'%s'", ptxq_last_error(NULL));
  sample_free(&dup);
  sample empty = build_sample((sample_opts){.first_tensor_name = ""});
  expect_format(&empty.im, "empty tensor name", "empty tensor name");
  sample_free(&empty);
}

Test(gguf, bad_tensor_offsets) {
  sample s = build_sample((sample_opts){0});
  size_t last = SAMPLE_TENSORS - 1;
  expect_patch(&s, s.t[1].offset_at, s.t[1].rel_offset + 1, 8, "alignment", "misaligned by 1");
  expect_patch(&s, s.t[1].offset_at, s.t[1].rel_offset + 16, 8, "alignment", "misaligned by 16");
  expect_patch(&s, s.t[1].offset_at, 1ull << 63, 8, "past the end", "offset 2^63");
  expect_patch(&s, s.t[1].offset_at, UINT64_MAX - 31, 8, "past the end", "offset near 2^64");
  expect_patch(&s, s.t[last].offset_at, s.t[last].rel_offset + 32, 8, "past the end",
               "last tensor one alignment later");
  sample_free(&s);
}

Test(gguf, bad_alignment) {
  sample s = build_sample((sample_opts){.alignment = 64});
  expect_patch(&s, s.alignment_value_at, 0, 4, "power of two", "alignment 0");
  expect_patch(&s, s.alignment_value_at, 3, 4, "power of two", "alignment 3");
  expect_patch(&s, s.alignment_value_at, 96, 4, "power of two", "alignment 96");
  expect_patch(&s, s.alignment_type_at, PTXQ_GGUF_I32, 4, "not a u32", "alignment as i32");
  expect_patch(&s, s.alignment_type_at, PTXQ_GGUF_F32, 4, "not a u32", "alignment as f32");
  /* a valid alignment the offsets do not follow */
  expect_patch(&s, s.alignment_value_at, 128, 4, NULL, "alignment 128 with 64-aligned data");
  sample_free(&s);
}

Test(gguf, duplicate_keys) {
  sample s = build_sample((sample_opts){.duplicate_key = true});
  expect_format(&s.im, "duplicate metadata key", "duplicate key");
  cr_assert(strstr(ptxq_last_error(NULL), "test.u16") != NULL, "'%s'", ptxq_last_error(NULL));
  sample_free(&s);
}

/* Every byte of the sample set to a few hostile values in turn: whatever
 * the reader decides, it must decide it without crashing (ASan watches),
 * and a file it accepts must read back whole. */
Test(gguf, every_byte_damaged) {
  sample s = build_sample((sample_opts){.alignment = 32});
  static const uint8_t values[] = {0x00, 0xff, 0x80, 0x0d};
  for (size_t at = 0; at < s.data_start; at++) {
    for (size_t k = 0; k < sizeof values; k++) {
      if (s.im.data[at] == values[k]) continue;
      image bad = image_copy(&s.im);
      bad.data[at] = values[k];
      ptxq_gguf *f = NULL;
      int status = ptxq_gguf_open(write_temp(&bad, bad.len), &f);
      if (status == PTXQ_OK) {
        for (uint64_t i = 0; i < ptxq_gguf_kv_count(f); i++) {
          const char *key;
          uint64_t key_len;
          ptxq_gguf_value v;
          cr_assert_eq(ptxq_gguf_kv_at(f, i, &key, &key_len, &v), PTXQ_OK);
          read_fully(&v, 0);
        }
        for (uint64_t i = 0; i < ptxq_gguf_tensor_count(f); i++) {
          ptxq_gguf_tensor t;
          cr_assert_eq(ptxq_gguf_tensor_at(f, i, &t), PTXQ_OK);
          cr_assert_leq(t.offset + t.bytes, bad.len, "byte %zu = %#x: tensor past the end", at, values[k]);
        }
        ptxq_gguf_close(f);
      } else {
        cr_assert_eq(status, PTXQ_ERR_FORMAT, "byte %zu = %#x: status %d (%s)", at, values[k], status,
                     ptxq_last_error(NULL));
        cr_assert_neq(ptxq_last_error(NULL)[0], '\0');
      }
      free(bad.data);
    }
  }
  sample_free(&s);
}
