/*
 * gguf.c: the GGUF reader (layout in shared/docs/formats.md).
 *
 * The file is mapped read-only and everything in it is untrusted. Opening it
 * is one linear pass that checks every count, length, type, dimension and
 * offset against the bytes that remain and for overflow, and builds the
 * indexes the getters need: a hash of the metadata keys, a hash of the
 * tensor names, a record per array value (nested ones included) and, for
 * arrays whose elements vary in size (strings, arrays), the position of every
 * element so that ptxq_gguf_array_at is O(1). After a successful open
 * nothing is read that was not checked, so the getters only guard against
 * values the caller forged. Every index grows with what was actually parsed
 * and is bounded by the file size (each entry stands for at least 8 bytes of
 * the file), so a lying count costs an error, not a huge allocation.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "internal.h"

#define GGUF_HEADER_BYTES 24 /* magic, version, tensor count, kv count */
#define GGUF_DEFAULT_ALIGNMENT 32
/* The smallest a metadata entry can be: key length, value type, a 1-byte
 * value (an empty key is allowed). */
#define KV_MIN_BYTES (8 + 4 + 1)
/* The smallest a tensor info can be: name length, a 1-byte name, n_dims, one
 * dim, type, offset. */
#define TENSOR_INFO_MIN_BYTES (8 + 1 + 4 + 8 + 4 + 8)
/* Arrays nest by recursion; this bounds the stack a hostile file can cost. */
#define MAX_ARRAY_DEPTH 32
#define NAME_SHOWN_MAX 60 /* bytes of a key or tensor name quoted in a message */

struct gguf_kv {
  uint64_t offset; /* of the entry (its key's length) */
  uint64_t key_offset, key_len;
  uint64_t value_offset;
  uint64_t array; /* the array record of an ARRAY value */
  ptxq_gguf_type type;
};

/* One array value, at top level or nested. */
struct gguf_array {
  uint64_t offset; /* of the value: its element type */
  uint64_t first;  /* of element 0 */
  uint64_t count;
  /* Variable-size elements: entries index_start .. index_start+count-1 of
   * elem_index hold each string's offset, or each nested array's record. */
  uint64_t index_start;
  ptxq_gguf_type elem_type;
};

struct gguf_tensor {
  uint64_t offset; /* of the tensor info (its name's length) */
  uint64_t name_offset, name_len;
  uint32_t n_dims, type;
  uint64_t dims[4];
  uint64_t data_offset;    /* relative to the data section, as stored */
  uint64_t data_offset_at; /* where it is stored */
  uint64_t bytes;
};

/* Open-addressing hash of names (keys or tensor names) that point into the
 * mapping: a slot holds everything a probe compares. */
struct name_slot {
  uint64_t hash, offset, len;
  uint64_t id_plus1; /* 0: empty */
};
struct name_table {
  struct name_slot *slots;
  uint64_t capacity; /* a power of two, or 0 */
  uint64_t used;
};

struct ptxq_gguf {
  const uint8_t *map;
  uint64_t size;
  uint32_t version;
  uint64_t alignment;
  uint64_t data_start;

  struct gguf_kv *kvs;
  uint64_t kv_count, kv_cap;
  struct gguf_tensor *tensors;
  uint64_t tensor_count, tensor_cap;
  struct gguf_array *arrays;
  uint64_t array_count, array_cap;
  uint64_t *elem_index;
  uint64_t elem_index_count, elem_index_cap;

  struct name_table keys, tensor_names;
};

/* ---- small helpers ---------------------------------------------------- */

static uint32_t load_u32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t load_u64(const uint8_t *p) {
  return (uint64_t)load_u32(p) | (uint64_t)load_u32(p + 4) << 32;
}

static const char *value_type_name(uint32_t type) {
  static const char *const names[] = {"u8",  "i8",  "u16",   "i16",   "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  return type < sizeof names / sizeof names[0] ? names[type] : "unknown type";
}

/* Bytes of a value of a fixed-size type; 0 for string and array. */
static uint64_t fixed_size(ptxq_gguf_type type) {
  switch (type) {
  case PTXQ_GGUF_U8: case PTXQ_GGUF_I8: case PTXQ_GGUF_BOOL: return 1;
  case PTXQ_GGUF_U16: case PTXQ_GGUF_I16: return 2;
  case PTXQ_GGUF_U32: case PTXQ_GGUF_I32: case PTXQ_GGUF_F32: return 4;
  case PTXQ_GGUF_U64: case PTXQ_GGUF_I64: case PTXQ_GGUF_F64: return 8;
  case PTXQ_GGUF_STRING: case PTXQ_GGUF_ARRAY: return 0;
  }
  return 0;
}

/* The fewest bytes a value of a type can take: a string is at least its
 * length, an array its element type and count. */
static uint64_t min_size(ptxq_gguf_type type) {
  if (type == PTXQ_GGUF_STRING) return 8;
  if (type == PTXQ_GGUF_ARRAY) return 12;
  return fixed_size(type);
}

/* A name from the file, made safe to quote in a message: at most
 * NAME_SHOWN_MAX bytes, anything unprintable as '?'. */
static const char *shown_name(const uint8_t *bytes, uint64_t len, char *buf, size_t cap) {
  size_t shown = len < NAME_SHOWN_MAX ? (size_t)len : NAME_SHOWN_MAX;
  if (shown + 4 > cap) shown = cap - 4;
  size_t i = 0;
  for (; i < shown; i++) buf[i] = (bytes[i] >= 0x20 && bytes[i] < 0x7f) ? (char)bytes[i] : '?';
  if (shown < len) {
    memcpy(buf + i, "...", 3);
    i += 3;
  }
  buf[i] = '\0';
  return buf;
}

static uint64_t hash_bytes(const uint8_t *bytes, uint64_t len) {
  uint64_t hash = 14695981039346656037ull; /* FNV-1a */
  for (uint64_t i = 0; i < len; i++) {
    hash ^= bytes[i];
    hash *= 1099511628211ull;
  }
  return hash;
}

/* Grows a vector so it holds `need` items; NULL when memory runs out (the
 * old block stays valid). */
static void *grow(void *items, uint64_t *cap, uint64_t need, size_t item_size) {
  uint64_t new_cap = *cap ? *cap : 16;
  while (new_cap < need) {
    if (new_cap > UINT64_MAX / 2) return NULL;
    new_cap *= 2;
  }
  if (new_cap > SIZE_MAX / item_size) return NULL;
  void *grown = realloc(items, (size_t)(new_cap * item_size));
  if (grown != NULL) *cap = new_cap;
  return grown;
}

static int out_of_memory(const char *what, uint64_t count) {
  return ptxq__fail(NULL, PTXQ_ERR_NOMEM, "out of host memory for %" PRIu64 " %s", count, what);
}

/* ---- name tables -------------------------------------------------------- */

static struct name_slot *name_probe(const struct name_table *table, const uint8_t *map,
                                    uint64_t hash, const uint8_t *name, uint64_t len) {
  uint64_t mask = table->capacity - 1;
  for (uint64_t i = hash & mask;; i = (i + 1) & mask) {
    struct name_slot *slot = &table->slots[i];
    if (slot->id_plus1 == 0) return slot;
    if (slot->hash == hash && slot->len == len && memcmp(map + slot->offset, name, len) == 0)
      return slot;
  }
}

/* Adds a name with its id. *existing is the id of an equal name already
 * there (then nothing is added), or UINT64_MAX. */
static int name_insert(struct name_table *table, const uint8_t *map, uint64_t offset, uint64_t len,
                       uint64_t id, uint64_t *existing) {
  *existing = UINT64_MAX;
  if ((table->used + 1) * 2 > table->capacity) { /* keep the load at most 1/2 */
    uint64_t capacity = table->capacity ? table->capacity * 2 : 64;
    if (capacity > SIZE_MAX / sizeof(struct name_slot)) return out_of_memory("names", table->used);
    struct name_slot *slots = calloc((size_t)capacity, sizeof *slots);
    if (slots == NULL) return out_of_memory("names", table->used);
    struct name_table bigger = {slots, capacity, table->used};
    for (uint64_t i = 0; i < table->capacity; i++) {
      const struct name_slot *old = &table->slots[i];
      if (old->id_plus1 == 0) continue;
      for (uint64_t j = old->hash & (capacity - 1);; j = (j + 1) & (capacity - 1)) {
        if (slots[j].id_plus1 == 0) {
          slots[j] = *old;
          break;
        }
      }
    }
    free(table->slots);
    *table = bigger;
  }
  uint64_t hash = hash_bytes(map + offset, len);
  struct name_slot *slot = name_probe(table, map, hash, map + offset, len);
  if (slot->id_plus1 != 0) {
    *existing = slot->id_plus1 - 1;
    return PTXQ_OK;
  }
  *slot = (struct name_slot){hash, offset, len, id + 1};
  table->used++;
  return PTXQ_OK;
}

static int name_find(const struct name_table *table, const uint8_t *map, const char *name,
                     uint64_t *id) {
  if (table->capacity == 0) return 0;
  uint64_t len = strlen(name);
  const uint8_t *bytes = (const uint8_t *)name;
  const struct name_slot *slot = name_probe(table, map, hash_bytes(bytes, len), bytes, len);
  if (slot->id_plus1 == 0) return 0;
  *id = slot->id_plus1 - 1;
  return 1;
}

/* ---- the parser ----------------------------------------------------------- */

struct parser {
  ptxq_gguf *file;
  uint64_t pos; /* next byte to read; never past file->size */
  /* What is being read, for messages: "key 'x'", "tensor 'x'", ... */
  char context[NAME_SHOWN_MAX + 32];
};

/* A malformed-file error: "<what> for <context> at byte <at>". */
PTXQ_PRINTF(3, 4)
static int parse_fail(const struct parser *p, uint64_t at, const char *fmt, ...) {
  char what[512];
  va_list args;
  va_start(args, fmt);
  vsnprintf(what, sizeof what, fmt, args);
  va_end(args);
  if (p->context[0] != '\0')
    return ptxq__fail(NULL, PTXQ_ERR_FORMAT, "%s for %s at byte %" PRIu64, what, p->context, at);
  return ptxq__fail(NULL, PTXQ_ERR_FORMAT, "%s at byte %" PRIu64, what, at);
}

static void set_context_name(struct parser *p, const char *noun, uint64_t offset, uint64_t len) {
  char name[NAME_SHOWN_MAX + 4];
  shown_name(p->file->map + offset, len, name, sizeof name);
  snprintf(p->context, sizeof p->context, "%s '%s'", noun, name);
}

/* Consumes n bytes, or fails naming what was being read. */
static int take(struct parser *p, uint64_t n, const char *what, const uint8_t **bytes) {
  uint64_t left = p->file->size - p->pos;
  if (n > left)
    return parse_fail(p, p->pos, "file truncated: the %s needs %" PRIu64 " bytes, %" PRIu64 " left",
                      what, n, left);
  *bytes = p->file->map + p->pos;
  p->pos += n;
  return PTXQ_OK;
}

static int read_u32(struct parser *p, const char *what, uint32_t *out) {
  const uint8_t *bytes = NULL;
  int status = take(p, 4, what, &bytes);
  if (status == PTXQ_OK) *out = load_u32(bytes);
  return status;
}

static int read_u64(struct parser *p, const char *what, uint64_t *out) {
  const uint8_t *bytes = NULL;
  int status = take(p, 8, what, &bytes);
  if (status == PTXQ_OK) *out = load_u64(bytes);
  return status;
}

/* A string: u64 length, then that many bytes (checked against the file). */
static int read_string(struct parser *p, const char *what, uint64_t *offset, uint64_t *len) {
  uint64_t at = p->pos;
  int status = read_u64(p, what, len);
  if (status != PTXQ_OK) return status;
  uint64_t left = p->file->size - p->pos;
  if (*len > left)
    return parse_fail(p, at, "%s: string length %" PRIu64 " runs past the end of the file (%" PRIu64
                      " bytes left)", what, *len, left);
  *offset = p->pos;
  p->pos += *len;
  return PTXQ_OK;
}

static int check_bool(const struct parser *p, uint64_t at, uint8_t byte) {
  if (byte > 1) return parse_fail(p, at, "bool value %u is neither 0 nor 1", byte);
  return PTXQ_OK;
}

static int parse_array(struct parser *p, int depth, uint64_t *array_id);

/* A value of a known type; *array_id is set for arrays. */
static int parse_value(struct parser *p, ptxq_gguf_type type, int depth, uint64_t *array_id) {
  if (type == PTXQ_GGUF_ARRAY) return parse_array(p, depth, array_id);
  if (type == PTXQ_GGUF_STRING) {
    uint64_t offset, len;
    return read_string(p, "string value", &offset, &len);
  }
  uint64_t at = p->pos;
  const uint8_t *bytes = NULL;
  int status = take(p, fixed_size(type), "value", &bytes);
  if (status == PTXQ_OK && type == PTXQ_GGUF_BOOL) status = check_bool(p, at, bytes[0]);
  return status;
}

/* Reserves count entries of the element index; *start is the first. */
static int reserve_elem_index(ptxq_gguf *f, uint64_t count, uint64_t *start) {
  uint64_t need = f->elem_index_count + count; /* both bounded by the file size */
  if (need > f->elem_index_cap) {
    uint64_t *grown = grow(f->elem_index, &f->elem_index_cap, need, sizeof *grown);
    if (grown == NULL) return out_of_memory("array elements", need);
    f->elem_index = grown;
  }
  *start = f->elem_index_count;
  f->elem_index_count = need;
  return PTXQ_OK;
}

static int parse_array(struct parser *p, int depth, uint64_t *array_id) {
  ptxq_gguf *f = p->file;
  uint64_t at = p->pos;
  if (depth >= MAX_ARRAY_DEPTH)
    return parse_fail(p, at, "arrays nested deeper than %d levels", MAX_ARRAY_DEPTH);
  uint32_t elem_type;
  uint64_t count;
  int status = read_u32(p, "array element type", &elem_type);
  if (status != PTXQ_OK) return status;
  if (elem_type > PTXQ_GGUF_F64)
    return parse_fail(p, at, "unknown array element type %" PRIu32, elem_type);
  uint64_t count_at = p->pos;
  status = read_u64(p, "array count", &count);
  if (status != PTXQ_OK) return status;
  uint64_t elem_min = min_size((ptxq_gguf_type)elem_type);
  uint64_t left = f->size - p->pos;
  if (count > left / elem_min)
    return parse_fail(p, count_at, "array count %" PRIu64 " of %s (at least %" PRIu64
                      " bytes each) cannot fit in the %" PRIu64 " bytes left",
                      count, value_type_name(elem_type), elem_min, left);

  if (f->array_count == f->array_cap) {
    struct gguf_array *grown = grow(f->arrays, &f->array_cap, f->array_count + 1, sizeof *grown);
    if (grown == NULL) return out_of_memory("arrays", f->array_count + 1);
    f->arrays = grown;
  }
  uint64_t id = f->array_count++;
  *array_id = id;
  f->arrays[id] = (struct gguf_array){.offset = at, .first = p->pos, .count = count,
                                      .elem_type = (ptxq_gguf_type)elem_type};

  uint64_t width = fixed_size((ptxq_gguf_type)elem_type);
  if (width != 0) {
    if (elem_type == PTXQ_GGUF_BOOL) {
      for (uint64_t i = 0; i < count; i++) {
        status = check_bool(p, p->pos + i, f->map[p->pos + i]);
        if (status != PTXQ_OK) return status;
      }
    }
    p->pos += count * width; /* fits: count <= left / width */
    return PTXQ_OK;
  }

  uint64_t start = 0;
  status = reserve_elem_index(f, count, &start);
  if (status != PTXQ_OK) return status;
  f->arrays[id].index_start = start;
  for (uint64_t i = 0; i < count; i++) {
    /* Nested arrays grow f->arrays and f->elem_index: index them afresh. */
    uint64_t entry;
    if (elem_type == PTXQ_GGUF_STRING) {
      uint64_t len;
      status = read_string(p, "array string", &entry, &len);
      entry -= 8; /* an element's offset is that of its length, like any string value */
    } else {
      status = parse_array(p, depth + 1, &entry);
    }
    if (status != PTXQ_OK) return status;
    f->elem_index[start + i] = entry;
  }
  return PTXQ_OK;
}

static int parse_header(struct parser *p, uint64_t *tensor_count, uint64_t *kv_count) {
  ptxq_gguf *f = p->file;
  const uint8_t *magic = NULL;
  int status = take(p, 4, "magic", &magic);
  if (status != PTXQ_OK) return status;
  if (memcmp(magic, "GGUF", 4) != 0)
    return parse_fail(p, 0, "bad magic %02x %02x %02x %02x (want \"GGUF\"): not a GGUF file", magic[0],
                      magic[1], magic[2], magic[3]);
  status = read_u32(p, "version", &f->version);
  if (status != PTXQ_OK) return status;
  if (f->version != 2 && f->version != 3) {
    uint32_t swapped = (f->version >> 24) | ((f->version >> 8) & 0xff00u) |
                       ((f->version << 8) & 0xff0000u) | (f->version << 24);
    return parse_fail(p, 4, "unsupported GGUF version %" PRIu32 "%s (want 2 or 3)", f->version,
                      swapped == 2 || swapped == 3 ? ", a big-endian file" : "");
  }
  status = read_u64(p, "tensor count", tensor_count);
  if (status == PTXQ_OK) status = read_u64(p, "metadata count", kv_count);
  if (status != PTXQ_OK) return status;

  /* Before anything is allocated: could the rest of the file hold that many? */
  uint64_t left = f->size - p->pos;
  uint64_t most_tensors = left / TENSOR_INFO_MIN_BYTES;
  if (*tensor_count > most_tensors)
    return parse_fail(p, 8, "tensor count %" PRIu64 " is more than the %" PRIu64
                      " bytes after the header can hold (at most %" PRIu64 ")",
                      *tensor_count, left, most_tensors);
  uint64_t most_kvs = (left - *tensor_count * TENSOR_INFO_MIN_BYTES) / KV_MIN_BYTES;
  if (*kv_count > most_kvs)
    return parse_fail(p, 16, "metadata key/value count %" PRIu64 " is more than the %" PRIu64
                      " bytes after the header can hold (at most %" PRIu64 " with %" PRIu64 " tensors)",
                      *kv_count, left, most_kvs, *tensor_count);
  return PTXQ_OK;
}

static int parse_kvs(struct parser *p, uint64_t count) {
  ptxq_gguf *f = p->file;
  for (uint64_t i = 0; i < count; i++) {
    uint64_t at = p->pos;
    snprintf(p->context, sizeof p->context, "metadata entry %" PRIu64, i);
    struct gguf_kv kv = {.offset = at};
    int status = read_string(p, "key", &kv.key_offset, &kv.key_len);
    if (status != PTXQ_OK) return status;
    set_context_name(p, "key", kv.key_offset, kv.key_len);
    uint64_t type_at = p->pos;
    uint32_t type;
    status = read_u32(p, "value type", &type);
    if (status != PTXQ_OK) return status;
    if (type > PTXQ_GGUF_F64) return parse_fail(p, type_at, "unknown value type %" PRIu32, type);
    kv.type = (ptxq_gguf_type)type;
    kv.value_offset = p->pos;
    status = parse_value(p, kv.type, 0, &kv.array);
    if (status != PTXQ_OK) return status;

    uint64_t first;
    status = name_insert(&f->keys, f->map, kv.key_offset, kv.key_len, f->kv_count, &first);
    if (status != PTXQ_OK) return status;
    if (first != UINT64_MAX) {
      char name[NAME_SHOWN_MAX + 4];
      return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                        "duplicate metadata key '%s' at byte %" PRIu64 " (first at byte %" PRIu64 ")",
                        shown_name(f->map + kv.key_offset, kv.key_len, name, sizeof name), at,
                        f->kvs[first].offset);
    }
    if (f->kv_count == f->kv_cap) {
      struct gguf_kv *grown = grow(f->kvs, &f->kv_cap, f->kv_count + 1, sizeof *grown);
      if (grown == NULL) return out_of_memory("metadata entries", f->kv_count + 1);
      f->kvs = grown;
    }
    f->kvs[f->kv_count++] = kv;
  }
  p->context[0] = '\0';
  return PTXQ_OK;
}

/* general.alignment if present (a nonzero power of two, as a u32), else 32. */
static int resolve_alignment(ptxq_gguf *f) {
  uint64_t id;
  f->alignment = GGUF_DEFAULT_ALIGNMENT;
  if (!name_find(&f->keys, f->map, "general.alignment", &id)) return PTXQ_OK;
  const struct gguf_kv *kv = &f->kvs[id];
  if (kv->type != PTXQ_GGUF_U32)
    return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                      "general.alignment at byte %" PRIu64 " is a %s, not a u32 alignment",
                      kv->value_offset, value_type_name(kv->type));
  uint32_t alignment = load_u32(f->map + kv->value_offset);
  if (alignment == 0 || (alignment & (alignment - 1)) != 0)
    return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                      "general.alignment %" PRIu32 " at byte %" PRIu64
                      " is not a nonzero power of two", alignment, kv->value_offset);
  f->alignment = alignment;
  return PTXQ_OK;
}

static int parse_tensor_info(struct parser *p, uint64_t index, struct gguf_tensor *t) {
  t->offset = p->pos;
  snprintf(p->context, sizeof p->context, "tensor info %" PRIu64, index);
  int status = read_string(p, "tensor name", &t->name_offset, &t->name_len);
  if (status != PTXQ_OK) return status;
  if (t->name_len == 0) return parse_fail(p, t->offset, "empty tensor name");
  set_context_name(p, "tensor", t->name_offset, t->name_len);

  uint64_t n_dims_at = p->pos;
  status = read_u32(p, "n_dims", &t->n_dims);
  if (status != PTXQ_OK) return status;
  if (t->n_dims < 1 || t->n_dims > 4)
    return parse_fail(p, n_dims_at, "n_dims %" PRIu32 " is outside 1..4", t->n_dims);
  uint64_t dims_at = p->pos, elements = 1;
  for (uint32_t d = 0; d < 4; d++) t->dims[d] = 1;
  for (uint32_t d = 0; d < t->n_dims; d++) {
    uint64_t dim_at = p->pos;
    status = read_u64(p, "dim", &t->dims[d]);
    if (status != PTXQ_OK) return status;
    if (t->dims[d] == 0) return parse_fail(p, dim_at, "dim %" PRIu32 " is 0", d);
    /* ggml counts elements in an int64 */
    if (t->dims[d] > (uint64_t)INT64_MAX / elements)
      return parse_fail(p, dim_at, "dims overflow: the element count passes 2^63 at dim %" PRIu32
                        " (%" PRIu64 ")", d, t->dims[d]);
    elements *= t->dims[d];
  }

  uint64_t type_at = p->pos;
  status = read_u32(p, "ggml type", &t->type);
  if (status != PTXQ_OK) return status;
  const ptxq__ggml_type_info *info = ptxq__ggml_type(t->type);
  if (info == NULL) return parse_fail(p, type_at, "unknown ggml tensor type %" PRIu32, t->type);
  if (t->dims[0] % info->block_elems != 0)
    return parse_fail(p, dims_at, "dims[0] = %" PRIu64 " is not a multiple of the %s block size %" PRIu32,
                      t->dims[0], info->name, info->block_elems);
  uint64_t blocks_per_row = t->dims[0] / info->block_elems, rows = elements / t->dims[0];
  if (blocks_per_row > UINT64_MAX / info->block_bytes ||
      rows > UINT64_MAX / (blocks_per_row * info->block_bytes))
    return parse_fail(p, dims_at, "byte size overflows 64 bits");
  t->bytes = rows * blocks_per_row * info->block_bytes;

  t->data_offset_at = p->pos;
  return read_u64(p, "tensor data offset", &t->data_offset);
}

static int parse_tensors(struct parser *p, uint64_t count) {
  ptxq_gguf *f = p->file;
  /* The kvs are read: check the count against what is really left. */
  uint64_t left = f->size - p->pos;
  if (count > left / TENSOR_INFO_MIN_BYTES)
    return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                      "tensor count %" PRIu64 " at byte 8 is more than the %" PRIu64
                      " bytes after the metadata (from byte %" PRIu64 ") can hold",
                      count, left, p->pos);
  if (count > 0) {
    struct gguf_tensor *tensors = grow(NULL, &f->tensor_cap, count, sizeof *tensors);
    if (tensors == NULL) return out_of_memory("tensor infos", count);
    f->tensors = tensors;
  }
  for (uint64_t i = 0; i < count; i++) {
    struct gguf_tensor *t = &f->tensors[i];
    int status = parse_tensor_info(p, i, t);
    if (status != PTXQ_OK) return status;
    uint64_t first;
    status = name_insert(&f->tensor_names, f->map, t->name_offset, t->name_len, i, &first);
    if (status != PTXQ_OK) return status;
    if (first != UINT64_MAX) {
      char name[NAME_SHOWN_MAX + 4];
      return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                        "duplicate tensor name '%s' at byte %" PRIu64 " (first at byte %" PRIu64 ")",
                        shown_name(f->map + t->name_offset, t->name_len, name, sizeof name), t->offset,
                        f->tensors[first].offset);
    }
    f->tensor_count = i + 1;
  }
  p->context[0] = '\0';
  return PTXQ_OK;
}

/* The data section starts at the header's end rounded up to the alignment;
 * every tensor lies inside it at an aligned offset. */
static int check_tensor_data(ptxq_gguf *f, uint64_t header_end) {
  f->data_start = header_end + (f->alignment - header_end % f->alignment) % f->alignment;
  uint64_t data_bytes = f->size > f->data_start ? f->size - f->data_start : 0;
  for (uint64_t i = 0; i < f->tensor_count; i++) {
    const struct gguf_tensor *t = &f->tensors[i];
    char name[NAME_SHOWN_MAX + 4];
    shown_name(f->map + t->name_offset, t->name_len, name, sizeof name);
    if (t->data_offset % f->alignment != 0)
      return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                        "tensor '%s': data offset %" PRIu64 " at byte %" PRIu64
                        " is not a multiple of the alignment %" PRIu64,
                        name, t->data_offset, t->data_offset_at, f->alignment);
    if (t->data_offset > data_bytes || t->bytes > data_bytes - t->data_offset)
      return ptxq__fail(NULL, PTXQ_ERR_FORMAT,
                        "tensor '%s': data offset %" PRIu64 " at byte %" PRIu64 " + %" PRIu64
                        " bytes runs past the end of the file (the data section holds %" PRIu64
                        " bytes from byte %" PRIu64 ")",
                        name, t->data_offset, t->data_offset_at, t->bytes, data_bytes, f->data_start);
  }
  return PTXQ_OK;
}

static int parse_file(ptxq_gguf *f) {
  struct parser p = {.file = f, .pos = 0, .context = ""};
  uint64_t tensor_count, kv_count;
  int status = parse_header(&p, &tensor_count, &kv_count);
  if (status == PTXQ_OK) status = parse_kvs(&p, kv_count);
  if (status == PTXQ_OK) status = resolve_alignment(f);
  if (status == PTXQ_OK) status = parse_tensors(&p, tensor_count);
  if (status == PTXQ_OK) status = check_tensor_data(f, p.pos);
  return status;
}

/* ---- open and close -------------------------------------------------------- */

int ptxq_gguf_open(const char *path, ptxq_gguf **out) {
  if (out == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_open: out is NULL");
  *out = NULL;
  if (path == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_open: path is NULL");

  /* O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused
   * below as not a regular file); it changes nothing for regular files. */
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return ptxq__fail(NULL, PTXQ_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int error = errno;
    close(fd);
    return ptxq__fail(NULL, PTXQ_ERR_IO, "cannot stat '%s': %s", path, strerror(error));
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return ptxq__fail(NULL, PTXQ_ERR_IO, "'%s' is not a regular file", path);
  }
  if ((uint64_t)st.st_size > SIZE_MAX) {
    close(fd);
    return ptxq__fail(NULL, PTXQ_ERR_IO, "'%s' (%jd bytes) is too large to map", path,
                      (intmax_t)st.st_size);
  }
  const uint8_t *map = NULL;
  if (st.st_size > 0) { /* mmap refuses a length of 0 */
    void *mapped = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      int error = errno;
      close(fd);
      return ptxq__fail(NULL, error == ENOMEM ? PTXQ_ERR_NOMEM : PTXQ_ERR_IO, "cannot map '%s': %s", path,
                        strerror(error));
    }
    map = mapped;
  }
  close(fd); /* the mapping keeps the file */

  ptxq_gguf *f = calloc(1, sizeof *f);
  if (f == NULL) {
    if (map != NULL) munmap((void *)map, (size_t)st.st_size);
    return ptxq__fail(NULL, PTXQ_ERR_NOMEM, "out of host memory opening '%s'", path);
  }
  f->map = map;
  f->size = (uint64_t)st.st_size;
  int status = parse_file(f);
  if (status != PTXQ_OK) {
    ptxq_gguf_close(f); /* keeps the detail */
    return status;
  }
  *out = f;
  return PTXQ_OK;
}

void ptxq_gguf_close(ptxq_gguf *file) {
  if (file == NULL) return;
  if (file->map != NULL) munmap((void *)file->map, (size_t)file->size);
  free(file->kvs);
  free(file->tensors);
  free(file->arrays);
  free(file->elem_index);
  free(file->keys.slots);
  free(file->tensor_names.slots);
  free(file);
}

uint32_t ptxq_gguf_version(const ptxq_gguf *file) {
  return file != NULL ? file->version : 0;
}

uint64_t ptxq_gguf_alignment(const ptxq_gguf *file) {
  return file != NULL ? file->alignment : 0;
}

/* ---- metadata --------------------------------------------------------------- */

uint64_t ptxq_gguf_kv_count(const ptxq_gguf *file) {
  return file != NULL ? file->kv_count : 0;
}

static void kv_value(const ptxq_gguf *file, const struct gguf_kv *kv, ptxq_gguf_value *value) {
  *value = (ptxq_gguf_value){.file = file, .type = kv->type, .offset = kv->value_offset,
                             .index = kv->type == PTXQ_GGUF_ARRAY ? kv->array : 0};
}

int ptxq_gguf_kv_at(const ptxq_gguf *file, uint64_t i, const char **key, uint64_t *key_len,
                    ptxq_gguf_value *value) {
  if (file == NULL || key == NULL || key_len == NULL || value == NULL)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_kv_at: %s is NULL",
                      file == NULL ? "file" : key == NULL ? "key" : key_len == NULL ? "key_len" : "value");
  if (i >= file->kv_count)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID,
                      "ptxq_gguf_kv_at: index %" PRIu64 " is past the %" PRIu64 " metadata entries", i,
                      file->kv_count);
  const struct gguf_kv *kv = &file->kvs[i];
  *key = (const char *)file->map + kv->key_offset;
  *key_len = kv->key_len;
  kv_value(file, kv, value);
  return PTXQ_OK;
}

int ptxq_gguf_find(const ptxq_gguf *file, const char *key, ptxq_gguf_value *value) {
  if (file == NULL || key == NULL || value == NULL)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_find: %s is NULL",
                      file == NULL ? "file" : key == NULL ? "key" : "value");
  uint64_t id;
  if (!name_find(&file->keys, file->map, key, &id))
    return ptxq__fail(NULL, PTXQ_ERR_NOT_FOUND, "no metadata key '%.200s'", key);
  kv_value(file, &file->kvs[id], value);
  return PTXQ_OK;
}

/* ---- typed getters ------------------------------------------------------------ */

/* The bytes of a value of `width` bytes, after checking that v is one this
 * file could have handed out (a forged offset must not read past the map). */
static int value_bytes(const ptxq_gguf_value *v, const char *call, uint64_t width,
                       const uint8_t **bytes) {
  const ptxq_gguf *f = v->file;
  if (v->offset > f->size || width > f->size - v->offset)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: value offset %" PRIu64 " is outside the file",
                      call, v->offset);
  *bytes = f->map + v->offset;
  return PTXQ_OK;
}

static int check_args(const ptxq_gguf_value *v, const void *out, const char *call) {
  if (v == NULL || out == NULL || v->file == NULL)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: %s is NULL", call,
                      v == NULL ? "value" : out == NULL ? "out" : "value->file");
  return PTXQ_OK;
}

static int type_mismatch(const ptxq_gguf_value *v, const char *call, const char *wanted) {
  return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: the value is a %s, not %s", call,
                    value_type_name(v->type), wanted);
}

/* An integer value of any width, as its sign and magnitude. */
static int read_integer(const ptxq_gguf_value *v, const char *call, int *negative, uint64_t *magnitude,
                        int64_t *as_signed) {
  uint64_t width = 0;
  int is_signed = 0;
  switch (v->type) {
  case PTXQ_GGUF_U8: width = 1; break;
  case PTXQ_GGUF_I8: width = 1; is_signed = 1; break;
  case PTXQ_GGUF_U16: width = 2; break;
  case PTXQ_GGUF_I16: width = 2; is_signed = 1; break;
  case PTXQ_GGUF_U32: width = 4; break;
  case PTXQ_GGUF_I32: width = 4; is_signed = 1; break;
  case PTXQ_GGUF_U64: width = 8; break;
  case PTXQ_GGUF_I64: width = 8; is_signed = 1; break;
  default: return type_mismatch(v, call, "an integer");
  }
  const uint8_t *bytes = NULL;
  int status = value_bytes(v, call, width, &bytes);
  if (status != PTXQ_OK) return status;
  uint64_t raw = 0;
  for (uint64_t i = 0; i < width; i++) raw |= (uint64_t)bytes[i] << (8 * i);
  *negative = 0;
  *magnitude = raw;
  if (is_signed) {
    uint64_t sign_bit = 1ull << (8 * width - 1);
    int64_t value;
    if (raw & sign_bit) {
      /* two's complement of a width-byte value, without signed overflow */
      uint64_t magnitude_of_negative = (~raw & (sign_bit - 1)) + 1;
      value = magnitude_of_negative == (1ull << 63) ? INT64_MIN : -(int64_t)magnitude_of_negative;
      *negative = 1;
      *magnitude = magnitude_of_negative;
    } else {
      value = (int64_t)raw;
    }
    *as_signed = value;
  } else {
    *as_signed = raw <= (uint64_t)INT64_MAX ? (int64_t)raw : 0;
  }
  return PTXQ_OK;
}

int ptxq_gguf_get_u64(const ptxq_gguf_value *v, uint64_t *out) {
  int status = check_args(v, out, "ptxq_gguf_get_u64");
  if (status != PTXQ_OK) return status;
  int negative;
  uint64_t magnitude;
  int64_t as_signed;
  status = read_integer(v, "ptxq_gguf_get_u64", &negative, &magnitude, &as_signed);
  if (status != PTXQ_OK) return status;
  if (negative)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_get_u64: the %s value %" PRId64
                      " does not fit a u64", value_type_name(v->type), as_signed);
  *out = magnitude;
  return PTXQ_OK;
}

int ptxq_gguf_get_i64(const ptxq_gguf_value *v, int64_t *out) {
  int status = check_args(v, out, "ptxq_gguf_get_i64");
  if (status != PTXQ_OK) return status;
  int negative;
  uint64_t magnitude;
  int64_t as_signed;
  status = read_integer(v, "ptxq_gguf_get_i64", &negative, &magnitude, &as_signed);
  if (status != PTXQ_OK) return status;
  if (!negative && magnitude > (uint64_t)INT64_MAX)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_get_i64: the %s value %" PRIu64
                      " does not fit an i64", value_type_name(v->type), magnitude);
  *out = as_signed;
  return PTXQ_OK;
}

int ptxq_gguf_get_f64(const ptxq_gguf_value *v, double *out) {
  int status = check_args(v, out, "ptxq_gguf_get_f64");
  if (status != PTXQ_OK) return status;
  const uint8_t *bytes = NULL;
  if (v->type == PTXQ_GGUF_F32) {
    status = value_bytes(v, "ptxq_gguf_get_f64", 4, &bytes);
    if (status != PTXQ_OK) return status;
    uint32_t bits = load_u32(bytes);
    float value;
    memcpy(&value, &bits, sizeof value);
    *out = value;
    return PTXQ_OK;
  }
  if (v->type == PTXQ_GGUF_F64) {
    status = value_bytes(v, "ptxq_gguf_get_f64", 8, &bytes);
    if (status != PTXQ_OK) return status;
    uint64_t bits = load_u64(bytes);
    memcpy(out, &bits, sizeof *out);
    return PTXQ_OK;
  }
  return type_mismatch(v, "ptxq_gguf_get_f64", "an f32 or f64");
}

int ptxq_gguf_get_bool(const ptxq_gguf_value *v, int *out) {
  int status = check_args(v, out, "ptxq_gguf_get_bool");
  if (status != PTXQ_OK) return status;
  if (v->type != PTXQ_GGUF_BOOL) return type_mismatch(v, "ptxq_gguf_get_bool", "a bool");
  const uint8_t *bytes = NULL;
  status = value_bytes(v, "ptxq_gguf_get_bool", 1, &bytes);
  if (status != PTXQ_OK) return status;
  *out = bytes[0] != 0;
  return PTXQ_OK;
}

int ptxq_gguf_get_string(const ptxq_gguf_value *v, const char **data, uint64_t *len) {
  int status = check_args(v, data, "ptxq_gguf_get_string");
  if (status == PTXQ_OK) status = check_args(v, len, "ptxq_gguf_get_string");
  if (status != PTXQ_OK) return status;
  if (v->type != PTXQ_GGUF_STRING) return type_mismatch(v, "ptxq_gguf_get_string", "a string");
  const uint8_t *bytes = NULL;
  status = value_bytes(v, "ptxq_gguf_get_string", 8, &bytes);
  if (status != PTXQ_OK) return status;
  uint64_t length = load_u64(bytes);
  if (length > v->file->size - v->offset - 8)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_get_string: value offset %" PRIu64
                      " is not a string of this file", v->offset);
  *data = (const char *)bytes + 8;
  *len = length;
  return PTXQ_OK;
}

/* The record of an array value, checked against the value's offset. */
static int array_record(const ptxq_gguf_value *v, const char *call, const struct gguf_array **out) {
  if (v->type != PTXQ_GGUF_ARRAY) return type_mismatch(v, call, "an array");
  const ptxq_gguf *f = v->file;
  if (v->index >= f->array_count || f->arrays[v->index].offset != v->offset)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "%s: the value is not an array of this file", call);
  *out = &f->arrays[v->index];
  return PTXQ_OK;
}

int ptxq_gguf_get_array(const ptxq_gguf_value *v, ptxq_gguf_type *elem_type, uint64_t *count) {
  int status = check_args(v, elem_type, "ptxq_gguf_get_array");
  if (status == PTXQ_OK) status = check_args(v, count, "ptxq_gguf_get_array");
  if (status != PTXQ_OK) return status;
  const struct gguf_array *array = NULL;
  status = array_record(v, "ptxq_gguf_get_array", &array);
  if (status != PTXQ_OK) return status;
  *elem_type = array->elem_type;
  *count = array->count;
  return PTXQ_OK;
}

int ptxq_gguf_array_at(const ptxq_gguf_value *array, uint64_t i, ptxq_gguf_value *elem) {
  int status = check_args(array, elem, "ptxq_gguf_array_at");
  if (status != PTXQ_OK) return status;
  const struct gguf_array *rec = NULL;
  status = array_record(array, "ptxq_gguf_array_at", &rec);
  if (status != PTXQ_OK) return status;
  if (i >= rec->count)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID,
                      "ptxq_gguf_array_at: index %" PRIu64 " is past the end of a %" PRIu64
                      "-element array", i, rec->count);
  const ptxq_gguf *f = array->file;
  ptxq_gguf_value value = {.file = f, .type = rec->elem_type};
  uint64_t width = fixed_size(rec->elem_type);
  if (width != 0) {
    value.offset = rec->first + i * width;
  } else if (rec->elem_type == PTXQ_GGUF_STRING) {
    value.offset = f->elem_index[rec->index_start + i];
  } else {
    value.index = f->elem_index[rec->index_start + i];
    value.offset = f->arrays[value.index].offset;
  }
  *elem = value;
  return PTXQ_OK;
}

/* ---- tensors ------------------------------------------------------------------- */

uint64_t ptxq_gguf_tensor_count(const ptxq_gguf *file) {
  return file != NULL ? file->tensor_count : 0;
}

static void tensor_out(const ptxq_gguf *f, const struct gguf_tensor *t, ptxq_gguf_tensor *out) {
  *out = (ptxq_gguf_tensor){
      .name = (const char *)f->map + t->name_offset,
      .name_len = t->name_len,
      .type = t->type,
      .n_dims = t->n_dims,
      .offset = f->data_start + t->data_offset,
      .bytes = t->bytes,
      .data = f->map + f->data_start + t->data_offset,
  };
  memcpy(out->dims, t->dims, sizeof out->dims);
}

int ptxq_gguf_tensor_at(const ptxq_gguf *file, uint64_t i, ptxq_gguf_tensor *out) {
  if (file == NULL || out == NULL)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_tensor_at: %s is NULL",
                      file == NULL ? "file" : "out");
  if (i >= file->tensor_count)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID,
                      "ptxq_gguf_tensor_at: index %" PRIu64 " is past the %" PRIu64 " tensors", i,
                      file->tensor_count);
  tensor_out(file, &file->tensors[i], out);
  return PTXQ_OK;
}

int ptxq_gguf_tensor_find(const ptxq_gguf *file, const char *name, ptxq_gguf_tensor *out) {
  if (file == NULL || name == NULL || out == NULL)
    return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_gguf_tensor_find: %s is NULL",
                      file == NULL ? "file" : name == NULL ? "name" : "out");
  uint64_t id;
  if (!name_find(&file->tensor_names, file->map, name, &id))
    return ptxq__fail(NULL, PTXQ_ERR_NOT_FOUND, "no tensor named '%.200s'", name);
  tensor_out(file, &file->tensors[id], out);
  return PTXQ_OK;
}
