/*
 * fixture.c: test-only reader of the shared GGUF fixture and of its expected
 * JSON (see fixture.h for what it is and is not).
 *
 * GGUF: the header, every metadata value skipped by type (nested arrays
 * included) except general.alignment, the tensor infos, then the data
 * section at the next multiple of the alignment.
 * JSON: a small recursive-descent parser that keeps only the fields the
 * tests compare and skips anything else.
 */
#define _POSIX_C_SOURCE 200809L
#include "fixture.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef PTXQ_FIXTURES_DIR
#error "compile with -DPTXQ_FIXTURES_DIR=\"<repo>/../shared/fixtures\""
#endif

#define GGUF_TYPE_ARRAY 9
#define GGUF_TYPE_STRING 8
#define GGUF_TYPE_U32 4
#define MAX_NESTING 16

static void set_error(char *err, size_t err_size, const char *fmt, ...) {
  if (err == NULL || err_size == 0)
    return;
  va_list args;
  va_start(args, fmt);
  vsnprintf(err, err_size, fmt, args);
  va_end(args);
}

const char *fixture_path(const char *file, char *buf, size_t buf_size) {
  snprintf(buf, buf_size, "%s/%s", PTXQ_FIXTURES_DIR, file);
  return buf;
}

float fixture_x(uint32_t i) { return (float)((double)((i * 37u) % 101u) - 50.0) / 32.0f; }

/* The whole file, plus a terminating NUL so text parsers may use strtod. */
static uint8_t *read_file(const char *path, size_t *size, char *err, size_t err_size) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    set_error(err, err_size, "cannot open fixture %s (is ../shared/fixtures beside the repo?)",
              path);
    return NULL;
  }
  uint8_t *data = NULL;
  long length = -1;
  if (fseek(f, 0, SEEK_END) == 0 && (length = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0)
    data = malloc((size_t)length + 1);
  if (data == NULL || fread(data, 1, (size_t)length, f) != (size_t)length) {
    set_error(err, err_size, "cannot read fixture %s", path);
    free(data);
    fclose(f);
    return NULL;
  }
  fclose(f);
  data[length] = 0;
  *size = (size_t)length;
  return data;
}

/* ---- GGUF --------------------------------------------------------------- */

typedef struct gguf_reader {
  const uint8_t *data;
  size_t size, pos;
  int failed;
  char *err;
  size_t err_size;
} gguf_reader;

static int has_bytes(gguf_reader *r, uint64_t n) {
  if (r->failed)
    return 0;
  if (n > r->size - r->pos) {
    set_error(r->err, r->err_size, "GGUF truncated: need %llu bytes at offset %zu of %zu",
              (unsigned long long)n, r->pos, r->size);
    r->failed = 1;
    return 0;
  }
  return 1;
}

static uint64_t read_le(gguf_reader *r, int bytes) {
  uint64_t value = 0;
  if (!has_bytes(r, (uint64_t)bytes))
    return 0;
  for (int i = 0; i < bytes; i++)
    value |= (uint64_t)r->data[r->pos + (size_t)i] << (8 * i);
  r->pos += (size_t)bytes;
  return value;
}

/* A GGUF string: returns its bytes (not NUL-terminated) and length. */
static const uint8_t *read_string(gguf_reader *r, uint64_t *length) {
  *length = read_le(r, 8);
  if (!has_bytes(r, *length))
    return NULL;
  const uint8_t *s = r->data + r->pos;
  r->pos += (size_t)*length;
  return s;
}

static int scalar_size(uint32_t type) {
  static const int sizes[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
  return type < sizeof sizes / sizeof sizes[0] ? sizes[type] : 0;
}

static void skip_value(gguf_reader *r, uint32_t type, int depth) {
  if (r->failed)
    return;
  if (depth > MAX_NESTING) {
    set_error(r->err, r->err_size, "GGUF arrays nested deeper than %d", MAX_NESTING);
    r->failed = 1;
  } else if (type == GGUF_TYPE_STRING) {
    uint64_t length;
    read_string(r, &length);
  } else if (type == GGUF_TYPE_ARRAY) {
    uint32_t element_type = (uint32_t)read_le(r, 4);
    uint64_t count = read_le(r, 8);
    int size = scalar_size(element_type);
    if (size > 0) {
      if (!r->failed && count > (r->size - r->pos) / (uint64_t)size)
        has_bytes(r, UINT64_MAX); /* reports the truncation */
      else
        r->pos += (size_t)(count * (uint64_t)size);
    } else {
      for (uint64_t i = 0; i < count && !r->failed; i++)
        skip_value(r, element_type, depth + 1);
    }
  } else if (scalar_size(type) > 0) {
    if (has_bytes(r, (uint64_t)scalar_size(type)))
      r->pos += (size_t)scalar_size(type);
  } else {
    set_error(r->err, r->err_size, "GGUF value type %u unknown at offset %zu", type, r->pos);
    r->failed = 1;
  }
}

static uint64_t row_bytes_of(uint32_t type, uint64_t k) {
  switch (type) {
  case 0: return k * 4;                 /* F32 */
  case 1: return k * 2;                 /* F16 */
  case 12: return k / 256 * 144;        /* Q4_K */
  case 14: return k / 256 * 210;        /* Q6_K */
  default: return 0;
  }
}

static void read_metadata(gguf_reader *r, fixture_gguf *gguf) {
  for (uint64_t i = 0; i < gguf->metadata_count && !r->failed; i++) {
    uint64_t key_length;
    const uint8_t *key = read_string(r, &key_length);
    uint32_t type = (uint32_t)read_le(r, 4);
    static const char alignment_key[] = "general.alignment";
    if (!r->failed && type == GGUF_TYPE_U32 && key_length == sizeof alignment_key - 1 &&
        memcmp(key, alignment_key, key_length) == 0)
      gguf->alignment = (uint32_t)read_le(r, 4);
    else
      skip_value(r, type, 0);
  }
  if (!r->failed && (gguf->alignment == 0 || (gguf->alignment & (gguf->alignment - 1)))) {
    set_error(r->err, r->err_size, "GGUF general.alignment %u is not a power of two",
              gguf->alignment);
    r->failed = 1;
  }
}

static void read_tensor_info(gguf_reader *r, fixture_tensor *t, uint64_t *offset) {
  uint64_t name_length;
  const uint8_t *name = read_string(r, &name_length);
  if (!r->failed && name_length >= FIXTURE_NAME_MAX) {
    set_error(r->err, r->err_size, "GGUF tensor name of %llu bytes",
              (unsigned long long)name_length);
    r->failed = 1;
  }
  if (r->failed)
    return;
  memcpy(t->name, name, (size_t)name_length);
  t->name[name_length] = 0;
  t->n_dims = (uint32_t)read_le(r, 4);
  if (!r->failed && (t->n_dims < 1 || t->n_dims > 4)) {
    set_error(r->err, r->err_size, "GGUF tensor %s has %u dims", t->name, t->n_dims);
    r->failed = 1;
    return;
  }
  t->rows = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    t->dims[d] = read_le(r, 8);
    if (d > 0)
      t->rows *= t->dims[d]; /* trusted: the fixture's dims are small */
  }
  t->type = (uint32_t)read_le(r, 4);
  *offset = read_le(r, 8);
  t->row_bytes = row_bytes_of(t->type, t->dims[0]);
}

int fixture_gguf_open(const char *path, fixture_gguf *gguf, char *err, size_t err_size) {
  memset(gguf, 0, sizeof *gguf);
  gguf->image = read_file(path, &gguf->image_size, err, err_size);
  if (gguf->image == NULL)
    return -1;
  gguf_reader r = {gguf->image, gguf->image_size, 0, 0, err, err_size};
  uint64_t *offsets = NULL;

  if (!has_bytes(&r, 4) || memcmp(gguf->image, "GGUF", 4) != 0) {
    set_error(err, err_size, "%s: not a GGUF file (bad magic)", path);
    goto fail;
  }
  r.pos = 4;
  gguf->version = (uint32_t)read_le(&r, 4);
  uint64_t tensor_count = read_le(&r, 8);
  gguf->metadata_count = read_le(&r, 8);
  if (r.failed)
    goto fail;
  if (gguf->version < 2 || gguf->version > 3) {
    set_error(err, err_size, "%s: GGUF version %u (expected 2 or 3)", path, gguf->version);
    goto fail;
  }
  if (tensor_count > gguf->image_size / 32) { /* a tensor info is >= 32 bytes */
    set_error(err, err_size, "%s: %llu tensors cannot fit", path,
              (unsigned long long)tensor_count);
    goto fail;
  }
  gguf->alignment = 32;
  read_metadata(&r, gguf);

  gguf->tensor_count = (size_t)tensor_count;
  gguf->tensors = calloc(gguf->tensor_count + 1, sizeof *gguf->tensors);
  offsets = calloc(gguf->tensor_count + 1, sizeof *offsets);
  if (gguf->tensors == NULL || offsets == NULL) {
    set_error(err, err_size, "out of memory");
    goto fail;
  }
  for (size_t i = 0; i < gguf->tensor_count && !r.failed; i++)
    read_tensor_info(&r, &gguf->tensors[i], &offsets[i]);
  if (r.failed)
    goto fail;

  size_t data_start = (r.pos + gguf->alignment - 1) / gguf->alignment * gguf->alignment;
  for (size_t i = 0; i < gguf->tensor_count; i++) {
    fixture_tensor *t = &gguf->tensors[i];
    if (t->row_bytes == 0)
      continue;
    uint64_t bytes = t->row_bytes * t->rows;
    if (offsets[i] % gguf->alignment != 0 || data_start > gguf->image_size ||
        offsets[i] > gguf->image_size - data_start ||
        bytes > gguf->image_size - data_start - offsets[i]) {
      set_error(err, err_size, "%s: tensor %s data (offset %llu, %llu bytes) outside the file",
                path, t->name, (unsigned long long)offsets[i], (unsigned long long)bytes);
      goto fail;
    }
    t->data = gguf->image + data_start + offsets[i];
  }
  free(offsets);
  return 0;

fail:
  free(offsets);
  fixture_gguf_close(gguf);
  return -1;
}

const fixture_tensor *fixture_gguf_find(const fixture_gguf *gguf, const char *name) {
  for (size_t i = 0; i < gguf->tensor_count; i++)
    if (strcmp(gguf->tensors[i].name, name) == 0)
      return &gguf->tensors[i];
  return NULL;
}

void fixture_gguf_close(fixture_gguf *gguf) {
  free(gguf->image);
  free(gguf->tensors);
  memset(gguf, 0, sizeof *gguf);
}

/* ---- JSON --------------------------------------------------------------- */

typedef struct json_reader {
  const char *p;
  int failed;
  char *err;
  size_t err_size;
  const char *start;
} json_reader;

static void json_fail(json_reader *j, const char *what) {
  if (!j->failed)
    set_error(j->err, j->err_size, "expected JSON: %s at byte %td", what, j->p - j->start);
  j->failed = 1;
}

/* Next non-space character (not consumed); 0 at the end or after a failure. */
static char json_peek(json_reader *j) {
  while (*j->p == ' ' || *j->p == '\n' || *j->p == '\r' || *j->p == '\t')
    j->p++;
  return j->failed ? 0 : *j->p;
}

static int json_take(json_reader *j, char c) {
  if (json_peek(j) != c)
    return 0;
  j->p++;
  return 1;
}

static void json_expect(json_reader *j, char c) {
  char what[] = "'?'";
  what[1] = c;
  if (!json_take(j, c))
    json_fail(j, what);
}

/* A string into out (escapes other than \" and \\ are kept as written:
 * the keys and types this reader compares have none). */
static void json_string(json_reader *j, char *out, size_t out_size) {
  size_t length = 0;
  json_expect(j, '"');
  while (!j->failed && *j->p != '"') {
    if (*j->p == 0) {
      json_fail(j, "closing '\"'");
      break;
    }
    if (*j->p == '\\' && j->p[1] != 0)
      j->p++;
    if (length + 1 < out_size)
      out[length++] = *j->p;
    j->p++;
  }
  if (out_size > 0)
    out[length] = 0;
  if (!j->failed)
    j->p++;
}

static double json_number(json_reader *j) {
  char c = json_peek(j);
  if (c != '-' && (c < '0' || c > '9')) {
    json_fail(j, "a number");
    return 0;
  }
  char *end;
  double value = strtod(j->p, &end);
  j->p = end;
  return value;
}

static void json_skip(json_reader *j, int depth) {
  char c = json_peek(j), scratch[8];
  if (depth > MAX_NESTING) {
    json_fail(j, "less nesting");
  } else if (c == '"') {
    json_string(j, scratch, sizeof scratch);
  } else if (c == '{' || c == '[') {
    char close = c == '{' ? '}' : ']';
    j->p++;
    if (json_take(j, close))
      return;
    do {
      if (c == '{') {
        json_string(j, scratch, sizeof scratch);
        json_expect(j, ':');
      }
      json_skip(j, depth + 1);
    } while (!j->failed && json_take(j, ','));
    json_expect(j, close);
  } else if (strncmp(j->p, "true", 4) == 0 || strncmp(j->p, "null", 4) == 0) {
    j->p += 4;
  } else if (strncmp(j->p, "false", 5) == 0) {
    j->p += 5;
  } else {
    json_number(j);
  }
}

/* An array of numbers: into fixed (up to max) or, with fixed NULL, into a
 * growing heap array returned through grown. */
static size_t json_numbers(json_reader *j, double *fixed, size_t max, double **grown) {
  size_t count = 0, capacity = 0;
  json_expect(j, '[');
  if (json_take(j, ']'))
    return 0;
  do {
    double value = json_number(j);
    if (j->failed)
      break;
    if (fixed != NULL) {
      if (count == max) {
        json_fail(j, "fewer array elements");
        break;
      }
      fixed[count++] = value;
      continue;
    }
    if (count == capacity) {
      capacity = capacity ? 2 * capacity : 256;
      double *bigger = realloc(*grown, capacity * sizeof *bigger);
      if (bigger == NULL) {
        json_fail(j, "memory for an array");
        break;
      }
      *grown = bigger;
    }
    (*grown)[count++] = value;
  } while (json_take(j, ','));
  json_expect(j, ']');
  return count;
}

static void json_tensor(json_reader *j, fixture_expected_tensor *t) {
  char key[32];
  json_expect(j, '{');
  if (json_take(j, '}'))
    return;
  do {
    json_string(j, key, sizeof key);
    json_expect(j, ':');
    if (strcmp(key, "type") == 0)
      json_string(j, t->type, sizeof t->type);
    else if (strcmp(key, "k") == 0)
      t->k = (uint32_t)json_number(j);
    else if (strcmp(key, "n") == 0)
      t->n = (uint32_t)json_number(j);
    else if (strcmp(key, "row_bytes") == 0)
      t->row_bytes = (uint64_t)json_number(j);
    else if (strcmp(key, "sum") == 0)
      t->sum = json_number(j);
    else if (strcmp(key, "sumsq") == 0)
      t->sumsq = json_number(j);
    else if (strcmp(key, "row0_first16") == 0)
      t->row0_count = json_numbers(j, t->row0_first16, 16, NULL);
    else if (strcmp(key, "y") == 0)
      t->y_count = json_numbers(j, NULL, 0, &t->y);
    else
      json_skip(j, 0);
  } while (!j->failed && json_take(j, ','));
  json_expect(j, '}');
}

static void json_tensors(json_reader *j, fixture_expected *expected) {
  json_expect(j, '{');
  if (json_take(j, '}'))
    return;
  do {
    fixture_expected_tensor *bigger =
        realloc(expected->tensors, (expected->count + 1) * sizeof *bigger);
    if (bigger == NULL) {
      json_fail(j, "memory for a tensor");
      return;
    }
    expected->tensors = bigger;
    fixture_expected_tensor *t = &expected->tensors[expected->count++];
    memset(t, 0, sizeof *t);
    json_string(j, t->name, sizeof t->name);
    json_expect(j, ':');
    json_tensor(j, t);
  } while (!j->failed && json_take(j, ','));
  json_expect(j, '}');
}

int fixture_expected_load(const char *path, fixture_expected *expected, char *err,
                          size_t err_size) {
  memset(expected, 0, sizeof *expected);
  size_t size;
  char *text = (char *)read_file(path, &size, err, err_size);
  if (text == NULL)
    return -1;
  json_reader j = {text, 0, err, err_size, text};
  char key[32];
  json_expect(&j, '{');
  if (!json_take(&j, '}')) {
    do {
      json_string(&j, key, sizeof key);
      json_expect(&j, ':');
      if (strcmp(key, "tensors") == 0)
        json_tensors(&j, expected);
      else
        json_skip(&j, 0);
    } while (!j.failed && json_take(&j, ','));
    json_expect(&j, '}');
  }
  free(text);
  if (!j.failed && expected->count == 0) {
    set_error(err, err_size, "%s: no \"tensors\"", path);
    j.failed = 1;
  }
  if (j.failed) {
    fixture_expected_free(expected);
    return -1;
  }
  return 0;
}

void fixture_expected_free(fixture_expected *expected) {
  for (size_t i = 0; i < expected->count; i++)
    free(expected->tensors[i].y);
  free(expected->tensors);
  memset(expected, 0, sizeof *expected);
}
