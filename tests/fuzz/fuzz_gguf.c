/*
 * fuzz_gguf.c: libFuzzer harness of the GGUF reader (src/gguf.c).
 *
 * Each input is a file. ptxq_gguf_open must either refuse it with
 * PTXQ_ERR_FORMAT (or PTXQ_ERR_IO) and a detail message, or accept it; an
 * accepted file then has every metadata value read through every getter
 * (arrays: a few elements at each end, nested arrays too), every key and
 * tensor name found again by name, out-of-range indexes refused, and each
 * tensor's size, offset and data pointer checked against the file; values
 * forged from real ones and NULL arguments must be refused or read inside
 * the file. The reader sees the file as a heap copy (fuzz_common.h), so
 * AddressSanitizer catches a read past its end.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "gguf.h"
#include "ptxq.h"

/* Bounds the copy made per input (the fixture, 2 MB, fits). */
#define MAX_INPUT_BYTES (4u << 20)
/* Elements read at each end of an array, and how deep nested arrays are
 * followed (the reader itself allows 32 levels). */
#define ELEMENTS_AT_EACH_END 4
#define MAX_DEPTH 6

static void expect_detail(int status, const char *call) {
  const char *detail = ptxq_last_error(NULL);
  fuzz_expect(detail != NULL && detail[0] != '\0', "%s failed (%d) without a detail", call, status);
}

static void visit_value(const ptxq_gguf_value *v, int depth);

static void visit_array(const ptxq_gguf_value *v, int depth) {
  ptxq_gguf_type elem_type;
  uint64_t count = 0;
  int status = ptxq_gguf_get_array(v, &elem_type, &count);
  fuzz_expect(status == PTXQ_OK, "get_array on an array value: %s", ptxq_last_error(NULL));
  ptxq_gguf_value elem;
  status = ptxq_gguf_array_at(v, count, &elem);
  fuzz_expect(status != PTXQ_OK, "array_at accepted index %llu of a %llu-element array",
              (unsigned long long)count, (unsigned long long)count);
  expect_detail(status, "array_at past the end");
  if (depth >= MAX_DEPTH) return;
  for (uint64_t i = 0; i < count; i++) {
    if (i == ELEMENTS_AT_EACH_END && count > 2 * ELEMENTS_AT_EACH_END)
      i = count - ELEMENTS_AT_EACH_END;
    status = ptxq_gguf_array_at(v, i, &elem);
    fuzz_expect(status == PTXQ_OK, "array_at(%llu) of %llu: %s", (unsigned long long)i,
                (unsigned long long)count, ptxq_last_error(NULL));
    fuzz_expect(elem.type == elem_type, "element %llu has type %d, the array says %d",
                (unsigned long long)i, (int)elem.type, (int)elem_type);
    visit_value(&elem, depth + 1);
  }
}

/* Every getter on every value: the one that matches the type must succeed,
 * the others must fail with a detail; none may read outside the file. */
static void visit_value(const ptxq_gguf_value *v, int depth) {
  uint64_t u;
  int64_t i;
  double d;
  int b;
  const char *s;
  uint64_t len;
  int status = ptxq_gguf_get_u64(v, &u);
  if (status != PTXQ_OK) expect_detail(status, "get_u64");
  status = ptxq_gguf_get_i64(v, &i);
  if (status != PTXQ_OK) expect_detail(status, "get_i64");
  status = ptxq_gguf_get_f64(v, &d);
  fuzz_expect((status == PTXQ_OK) == (v->type == PTXQ_GGUF_F32 || v->type == PTXQ_GGUF_F64),
              "get_f64 on type %d returned %d", (int)v->type, status);
  status = ptxq_gguf_get_bool(v, &b);
  fuzz_expect((status == PTXQ_OK) == (v->type == PTXQ_GGUF_BOOL), "get_bool on type %d returned %d",
              (int)v->type, status);
  status = ptxq_gguf_get_string(v, &s, &len);
  fuzz_expect((status == PTXQ_OK) == (v->type == PTXQ_GGUF_STRING),
              "get_string on type %d returned %d", (int)v->type, status);
  if (status == PTXQ_OK) fuzz_touch(s, len);
  if (v->type == PTXQ_GGUF_ARRAY) {
    visit_array(v, depth);
  } else {
    ptxq_gguf_type elem_type;
    status = ptxq_gguf_get_array(v, &elem_type, &len);
    fuzz_expect(status != PTXQ_OK, "get_array accepted a value of type %d", (int)v->type);
    expect_detail(status, "get_array on a non-array");
  }
}

/* A copy of a name with a terminating NUL, or NULL if the name holds a NUL
 * (it cannot be looked up by a C string then). */
static char *c_string(const char *name, uint64_t len) {
  if (memchr(name, '\0', len) != NULL) return NULL;
  char *copy = malloc(len + 1);
  if (copy == NULL) return NULL;
  memcpy(copy, name, len);
  copy[len] = '\0';
  return copy;
}

/* A value the caller forged from a real one (the fields are public): the
 * getters must refuse it or read inside the file, never past it. */
static void visit_forged(const ptxq_gguf_value *real, uint64_t file_size, uint64_t salt) {
  ptxq_gguf_value forged = *real;
  forged.offset = file_size - salt % 16 + (salt & 16 ? 0 : (salt >> 8) % (file_size + 1));
  forged.index ^= salt >> 4;
  if (salt & 32) forged.type = (ptxq_gguf_type)((unsigned)forged.type ^ (salt & 15));
  uint64_t u, count;
  const char *s;
  ptxq_gguf_type elem_type;
  ptxq_gguf_value elem;
  if (ptxq_gguf_get_u64(&forged, &u) != PTXQ_OK) expect_detail(-1, "get_u64 (forged)");
  if (ptxq_gguf_get_string(&forged, &s, &u) == PTXQ_OK) fuzz_touch(s, u);
  if (ptxq_gguf_get_array(&forged, &elem_type, &count) == PTXQ_OK && count > 0 &&
      ptxq_gguf_array_at(&forged, count - 1, &elem) == PTXQ_OK &&
      ptxq_gguf_get_string(&elem, &s, &u) == PTXQ_OK)
    fuzz_touch(s, u);
}

/* NULL where a pointer is wanted: refused with a detail, not a crash. */
static void visit_null_arguments(const ptxq_gguf *file) {
  const char *key;
  uint64_t len;
  ptxq_gguf_value value = {.file = file};
  ptxq_gguf_tensor tensor;
  int status = ptxq_gguf_kv_at(file, 0, NULL, &len, &value);
  fuzz_expect(status != PTXQ_OK, "kv_at with key NULL");
  status = ptxq_gguf_kv_at(file, 0, &key, &len, NULL);
  fuzz_expect(status != PTXQ_OK, "kv_at with value NULL");
  fuzz_expect(ptxq_gguf_find(file, NULL, &value) != PTXQ_OK, "find of NULL");
  fuzz_expect(ptxq_gguf_get_u64(&value, NULL) != PTXQ_OK, "get_u64 into NULL");
  fuzz_expect(ptxq_gguf_get_string(NULL, &key, &len) != PTXQ_OK, "get_string of NULL");
  fuzz_expect(ptxq_gguf_tensor_at(file, 0, NULL) != PTXQ_OK, "tensor_at into NULL");
  fuzz_expect(ptxq_gguf_tensor_find(file, NULL, &tensor) != PTXQ_OK, "tensor_find of NULL");
  expect_detail(-1, "a NULL argument");
}

static void visit_metadata(const ptxq_gguf *file, uint64_t file_size) {
  uint64_t count = ptxq_gguf_kv_count(file);
  for (uint64_t k = 0; k < count; k++) {
    const char *key;
    uint64_t key_len;
    ptxq_gguf_value value;
    int status = ptxq_gguf_kv_at(file, k, &key, &key_len, &value);
    fuzz_expect(status == PTXQ_OK, "kv_at(%llu) of %llu: %s", (unsigned long long)k,
                (unsigned long long)count, ptxq_last_error(NULL));
    fuzz_touch(key, key_len);
    visit_value(&value, 0);
    visit_forged(&value, file_size, (k + 1) * 0x9E3779B97F4A7C15ull ^ file_size);
    char *name = c_string(key, key_len);
    if (name != NULL) {
      ptxq_gguf_value found;
      status = ptxq_gguf_find(file, name, &found);
      fuzz_expect(status == PTXQ_OK && found.offset == value.offset && found.type == value.type,
                  "find('%s') did not return entry %llu", name, (unsigned long long)k);
      free(name);
    }
  }
  const char *key;
  uint64_t key_len;
  ptxq_gguf_value value;
  int status = ptxq_gguf_kv_at(file, count, &key, &key_len, &value);
  fuzz_expect(status != PTXQ_OK, "kv_at accepted index %llu of %llu", (unsigned long long)count,
              (unsigned long long)count);
  expect_detail(status, "kv_at past the end");
}

static void visit_tensors(const ptxq_gguf *file, uint64_t file_size) {
  uint64_t count = ptxq_gguf_tensor_count(file);
  uint64_t alignment = ptxq_gguf_alignment(file);
  fuzz_expect(alignment != 0 && (alignment & (alignment - 1)) == 0, "alignment %llu",
              (unsigned long long)alignment);
  for (uint64_t t = 0; t < count; t++) {
    ptxq_gguf_tensor tensor;
    int status = ptxq_gguf_tensor_at(file, t, &tensor);
    fuzz_expect(status == PTXQ_OK, "tensor_at(%llu): %s", (unsigned long long)t,
                ptxq_last_error(NULL));
    fuzz_touch(tensor.name, tensor.name_len);
    fuzz_expect(tensor.n_dims >= 1 && tensor.n_dims <= 4, "n_dims %u", tensor.n_dims);
    const ptxq__ggml_type_info *info = ptxq__ggml_type(tensor.type);
    fuzz_expect(info != NULL && ptxq_ggml_type_name(tensor.type) != NULL, "type %u accepted",
                tensor.type);
    /* bytes must be what the dims and the type's blocks make. */
    uint64_t rows = 1;
    for (int d = 1; d < 4; d++) rows *= tensor.dims[d];
    for (uint32_t d = tensor.n_dims; d < 4; d++)
      fuzz_expect(tensor.dims[d] == 1, "unused dims[%u] = %llu", d,
                  (unsigned long long)tensor.dims[d]);
    fuzz_expect(tensor.dims[0] % info->block_elems == 0 &&
                    tensor.bytes == rows * (tensor.dims[0] / info->block_elems) * info->block_bytes,
                "tensor %llu: %llu bytes for dims[0]=%llu x %llu rows of %s",
                (unsigned long long)t, (unsigned long long)tensor.bytes,
                (unsigned long long)tensor.dims[0], (unsigned long long)rows, info->name);
    fuzz_expect(tensor.offset % alignment == 0 && tensor.offset <= file_size &&
                    tensor.bytes <= file_size - tensor.offset,
                "tensor %llu: offset %llu + %llu bytes in a %llu-byte file",
                (unsigned long long)t, (unsigned long long)tensor.offset,
                (unsigned long long)tensor.bytes, (unsigned long long)file_size);
    fuzz_touch(tensor.data, tensor.bytes);
    char *name = c_string(tensor.name, tensor.name_len);
    if (name != NULL) {
      ptxq_gguf_tensor found;
      status = ptxq_gguf_tensor_find(file, name, &found);
      fuzz_expect(status == PTXQ_OK && found.offset == tensor.offset && found.data == tensor.data,
                  "tensor_find('%s') did not return tensor %llu", name, (unsigned long long)t);
      free(name);
    }
  }
  ptxq_gguf_tensor tensor;
  int status = ptxq_gguf_tensor_at(file, count, &tensor);
  fuzz_expect(status != PTXQ_OK, "tensor_at accepted index %llu of %llu",
              (unsigned long long)count, (unsigned long long)count);
  expect_detail(status, "tensor_at past the end");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT_BYTES) return -1;
  const char *path = fuzz_input_file(data, size);
  fuzz_expect(path != NULL, "cannot write the input to a memfd");
  ptxq_gguf *file = NULL;
  int status = ptxq_gguf_open(path, &file);
  if (status != PTXQ_OK) {
    fuzz_expect(file == NULL, "a failed open left *out set");
    fuzz_expect(status == PTXQ_ERR_FORMAT || status == PTXQ_ERR_IO, "open returned %d (%s)",
                status, ptxq_strerror(status));
    expect_detail(status, "ptxq_gguf_open");
    return 0;
  }
  uint32_t version = ptxq_gguf_version(file);
  fuzz_expect(version == 2 || version == 3, "version %u accepted", version);
  visit_metadata(file, size);
  visit_tensors(file, size);
  visit_null_arguments(file);
  /* Lookups of names no file holds (and empty ones) must fail cleanly. */
  ptxq_gguf_value value;
  ptxq_gguf_tensor tensor;
  if (ptxq_gguf_find(file, "", &value) != PTXQ_OK) expect_detail(-1, "find('')");
  if (ptxq_gguf_tensor_find(file, "ptxq.fuzz.absent", &tensor) != PTXQ_OK)
    expect_detail(-1, "tensor_find(absent)");
  ptxq_gguf_close(file);
  return 0;
}
