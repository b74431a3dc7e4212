/*
 * test_threads_tsan.c: suite "unit", the CPU side of ptxq from 8 threads at
 * once, built with -fsanitize=thread (issue #6, part 4). It passes when
 * every thread gets exactly what one thread alone got and ThreadSanitizer
 * reports nothing.
 *
 * - ptxq_open without a driver (PTXQ_LIBCUDA names a missing file), raced
 *   by every thread as the process's first driver use: each gets
 *   PTXQ_ERR_NO_DEVICE and the same detail.
 * - Keys and PTX: ptxgen_spec_parse / format / emit over a few hundred
 *   keys of every kind, valid and not: same key, spec, PTX (hash and
 *   length), entry, geometry or error message as the single thread.
 * - GGUF: one handle on the shared fixture read by all threads at once,
 *   and per-thread open / read everything / close of the fixture and of
 *   files this test writes (plus a truncated one: the same FORMAT detail).
 * - The error detail: threads failing at once each read their own.
 * - The CPU reference: quantize, dequantize, GEMV of each type,
 *   activations, RoPE, f16 conversions: bit-identical to the single thread.
 *
 * Criterion cannot run under TSan (see harness.h), so this is a plain
 * program: exit status 0 passes, 1 is a failed check, 66 a TSan report.
 * Everything runs without a GPU.
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "ptxgen.h"
#include "ptxq.h"
#include "rng.h"

#ifndef PTXQ_FIXTURES_DIR
#error "compile with -DPTXQ_FIXTURES_DIR=..."
#endif

#define THREADS 8
#define ROUNDS 3 /* each thread runs every part this many times, in its own order */
#define MISSING_LIBCUDA "/nonexistent/ptxq-tsan/libcuda.so.1"

static pthread_barrier_t barrier;

static uint64_t fnv1a(uint64_t hash, const void *data, size_t len) {
  const unsigned char *p = data;
  for (size_t i = 0; i < len; i++) {
    hash ^= p[i];
    hash *= 1099511628211ull;
  }
  return hash;
}
#define FNV_START 14695981039346656037ull

/* ---- ptxq_open without a driver -------------------------------------------------- */

static char open_detail[THREADS][512];

static void *open_without_driver(void *arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&barrier);
  for (int i = 0; i < 50; i++) {
    ptxq_ctx *ctx = (ptxq_ctx *)&ctx;
    ptxq_options opt = {.device = (int)(t % 2), .target_sm = 0};
    int status = ptxq_open(&ctx, i % 2 ? &opt : NULL);
    CHECK(status == PTXQ_ERR_NO_DEVICE, "thread %u: ptxq_open gave %d (%s)", t, status,
          ptxq_strerror(status));
    CHECK(ctx == NULL, "thread %u: ctx not cleared by a failed open", t);
    const char *why = ptxq_last_error(NULL);
    CHECK(strstr(why, MISSING_LIBCUDA) != NULL, "thread %u: detail '%s'", t, why);
    if (i == 0) snprintf(open_detail[t], sizeof open_detail[t], "%s", why);
    CHECK(strcmp(why, open_detail[t]) == 0, "thread %u: detail changed to '%s'", t, why);
  }
  return NULL;
}

/* ---- keys and PTX ------------------------------------------------------------------ */

#define KEYS 240

typedef struct key_result {
  char key[512];      /* the key as written */
  int parse_status;
  char message[256];  /* parse or emit message */
  char canonical[512];
  ptxgen_spec spec;
  int emit_status;
  uint64_t ptx_hash;
  size_t ptx_len;
  char entry[64];
  ptxgen_geometry geometry;
} key_result;

static key_result keys_expected[KEYS];

static const uint32_t targets[] = {75, 80, 86, 89, 90, 100, 120};

/* A random key of any kind; about one in eight is invalid on purpose. */
static void random_key(rng *r, char *key, size_t cap) {
  uint32_t sm = targets[rng_next(r) % 7];
  bool broken = rng_next(r) % 8 == 0;
  switch (rng_next(r) % 5) {
  case 0:
  case 1: {
    static const char *const glu[] = {"", ",glu=swiglu", ",glu=geglu"};
    static const char *const tuning[] = {"", ",rows=1", ",rows=4,warps=8", ",warps=16"};
    uint32_t k = 256 * (1 + (uint32_t)(rng_next(r) % 64)) + (broken ? 100 : 0);
    snprintf(key, cap, "%s:k=%u,n=%u,m=%u,sm=%u%s%s", rng_next(r) % 2 ? "q4k_gemv" : "q6k_gemv",
             k, 1 + (uint32_t)(rng_next(r) % 20000), 1 + (uint32_t)(rng_next(r) % 8), sm,
             glu[rng_next(r) % 3], tuning[rng_next(r) % 4]);
    break;
  }
  case 2: {
    static const char *const acts[] = {"gelu", "gelu_erf", "silu", "swiglu", "geglu"};
    snprintf(key, cap, "%s:n=%u,m=%u,sm=%u", acts[rng_next(r) % 5],
             broken ? 0u : 1 + (uint32_t)(rng_next(r) % 30000), 1 + (uint32_t)(rng_next(r) % 8), sm);
    break;
  }
  case 3: {
    uint32_t kv = 1 + (uint32_t)(rng_next(r) % 4), heads = kv * (1 + (uint32_t)(rng_next(r) % 8));
    uint32_t head_dim = 2 * (1 + (uint32_t)(rng_next(r) % 128));
    uint32_t n_dims = 2 * (1 + (uint32_t)(rng_next(r) % (head_dim / 2)));
    int written = snprintf(key, cap,
                           "rope:mode=%s,head_dim=%u,n_dims=%u,heads=%u,kv_heads=%u,m=%u,sm=%u,"
                           "base=%.9g,freq_scale=%.9g",
                           rng_next(r) % 2 ? "neox" : "normal", head_dim, n_dims, heads,
                           broken ? kv + 7 : kv, 1 + (uint32_t)(rng_next(r) % 8), sm,
                           (double)rng_uniform(r, 2.0f, 1e6f), (double)rng_uniform(r, 0.05f, 1.0f));
    if (rng_next(r) % 2 && written > 0 && (size_t)written < cap)
      snprintf(key + written, cap - (size_t)written,
               ",freq_factors=1,ext_factor=%.9g,attn_factor=%.9g,beta_fast=%.9g,beta_slow=%.9g,"
               "n_ctx_orig=%u",
               (double)rng_uniform(r, 0.0f, 1.0f), (double)rng_uniform(r, 0.5f, 2.0f),
               (double)rng_uniform(r, 8.0f, 64.0f), (double)rng_uniform(r, 0.5f, 2.0f),
               1024u << (rng_next(r) % 6));
    break;
  }
  default:
    snprintf(key, cap, "stream_read:n=%u,sm=%u", broken ? 0u : 1 + (uint32_t)(rng_next(r) % 100000000),
             sm);
    break;
  }
}

static void run_key(const char *key, key_result *out) {
  memset(out, 0, sizeof *out);
  snprintf(out->key, sizeof out->key, "%s", key);
  out->parse_status = ptxgen_spec_parse(key, &out->spec, out->message, sizeof out->message);
  if (out->parse_status != PTXGEN_OK) return;
  int len = ptxgen_spec_format(&out->spec, out->canonical, sizeof out->canonical);
  CHECK(len > 0 && (size_t)len < sizeof out->canonical, "format of %s gave %d", key, len);
  ptxgen_spec back;
  char msg[256];
  CHECK(ptxgen_spec_parse(out->canonical, &back, msg, sizeof msg) == PTXGEN_OK, "%s: %s",
        out->canonical, msg);
  CHECK(memcmp(&back, &out->spec, sizeof back) == 0, "parse(format(spec)) != spec for %s", key);
  ptxgen_kernel kernel;
  out->emit_status = ptxgen_emit(&out->spec, &kernel, out->message, sizeof out->message);
  if (out->emit_status != PTXGEN_OK) return;
  CHECK(kernel.ptx != NULL && strlen(kernel.ptx) == kernel.ptx_len, "emit %s: bad text", key);
  out->ptx_hash = fnv1a(FNV_START, kernel.ptx, kernel.ptx_len);
  out->ptx_len = kernel.ptx_len;
  memcpy(out->entry, kernel.entry, sizeof out->entry);
  out->geometry = kernel.geometry;
  ptxgen_kernel_free(&kernel);
}

static void keys_part(unsigned t) {
  key_result got;
  /* Each thread starts elsewhere in the list, and walks it both ways. */
  for (size_t n = 0; n < KEYS; n++) {
    size_t i = t % 2 ? (t * 31 + n) % KEYS : (t * 31 + KEYS - n) % KEYS;
    run_key(keys_expected[i].key, &got);
    CHECK(memcmp(&got, &keys_expected[i], sizeof got) == 0,
          "thread %u: key %s: status %d/%d message '%s' canonical '%s' ptx %zu bytes, where one "
          "thread alone got %d/%d '%s' '%s' %zu bytes",
          t, got.key, got.parse_status, got.emit_status, got.message, got.canonical, got.ptx_len,
          keys_expected[i].parse_status, keys_expected[i].emit_status, keys_expected[i].message,
          keys_expected[i].canonical, keys_expected[i].ptx_len);
  }
}

/* ---- GGUF ---------------------------------------------------------------------------- */

/* Everything a reader can say about a file, folded into one hash; a
 * failure to open gives its status and detail instead. */
typedef struct gguf_summary {
  int status;
  char detail[512];
  uint64_t hash, kvs, tensors;
} gguf_summary;

static uint64_t hash_value(uint64_t h, const ptxq_gguf_value *v, int depth) {
  CHECK(depth < 8, "arrays nested too deep");
  h = fnv1a(h, &v->type, sizeof v->type);
  uint64_t u;
  int64_t i;
  double d;
  int b;
  const char *s;
  uint64_t len;
  switch (v->type) {
  case PTXQ_GGUF_STRING:
    CHECK_OK(NULL, ptxq_gguf_get_string(v, &s, &len));
    return fnv1a(h, s, (size_t)len);
  case PTXQ_GGUF_ARRAY: {
    ptxq_gguf_type elem;
    uint64_t count;
    CHECK_OK(NULL, ptxq_gguf_get_array(v, &elem, &count));
    h = fnv1a(h, &count, sizeof count);
    for (uint64_t e = 0; e < count; e++) {
      ptxq_gguf_value item;
      CHECK_OK(NULL, ptxq_gguf_array_at(v, e, &item));
      h = hash_value(h, &item, depth + 1);
    }
    return h;
  }
  case PTXQ_GGUF_F32:
  case PTXQ_GGUF_F64:
    CHECK_OK(NULL, ptxq_gguf_get_f64(v, &d));
    return fnv1a(h, &d, sizeof d);
  case PTXQ_GGUF_BOOL:
    CHECK_OK(NULL, ptxq_gguf_get_bool(v, &b));
    return fnv1a(h, &b, sizeof b);
  case PTXQ_GGUF_I8:
  case PTXQ_GGUF_I16:
  case PTXQ_GGUF_I32:
  case PTXQ_GGUF_I64:
    CHECK_OK(NULL, ptxq_gguf_get_i64(v, &i));
    /* A negative value does not fit u64: the getter must say so. */
    if (i < 0) CHECK(ptxq_gguf_get_u64(v, &u) == PTXQ_ERR_INVALID, "u64 of %lld", (long long)i);
    return fnv1a(h, &i, sizeof i);
  default:
    CHECK_OK(NULL, ptxq_gguf_get_u64(v, &u));
    /* A string getter on a number is refused, naming both types. */
    CHECK(ptxq_gguf_get_string(v, &s, &len) == PTXQ_ERR_INVALID, "string of a number");
    return fnv1a(h, &u, sizeof u);
  }
}

static uint64_t hash_file(const ptxq_gguf *f, uint64_t *kvs, uint64_t *tensors) {
  uint64_t h = FNV_START;
  uint32_t version = ptxq_gguf_version(f);
  uint64_t alignment = ptxq_gguf_alignment(f);
  h = fnv1a(fnv1a(h, &version, sizeof version), &alignment, sizeof alignment);
  *kvs = ptxq_gguf_kv_count(f);
  for (uint64_t i = 0; i < *kvs; i++) {
    const char *key;
    uint64_t key_len;
    ptxq_gguf_value v, found;
    CHECK_OK(NULL, ptxq_gguf_kv_at(f, i, &key, &key_len, &v));
    h = hash_value(fnv1a(h, key, (size_t)key_len), &v, 0);
    char name[256];
    if (key_len < sizeof name) { /* find by key gives the same value */
      memcpy(name, key, (size_t)key_len);
      name[key_len] = '\0';
      CHECK_OK(NULL, ptxq_gguf_find(f, name, &found));
      CHECK(found.offset == v.offset && found.type == v.type, "find('%s') differs from kv_at", name);
    }
  }
  *tensors = ptxq_gguf_tensor_count(f);
  for (uint64_t i = 0; i < *tensors; i++) {
    ptxq_gguf_tensor t, found;
    CHECK_OK(NULL, ptxq_gguf_tensor_at(f, i, &t));
    h = fnv1a(h, t.name, (size_t)t.name_len);
    h = fnv1a(h, &t.type, sizeof t.type);
    h = fnv1a(h, t.dims, sizeof t.dims);
    h = fnv1a(h, &t.offset, sizeof t.offset);
    h = fnv1a(h, t.data, (size_t)t.bytes);
    const char *type_name = ptxq_ggml_type_name(t.type);
    if (type_name != NULL) h = fnv1a(h, type_name, strlen(type_name));
    char name[256];
    if (t.name_len < sizeof name) {
      memcpy(name, t.name, (size_t)t.name_len);
      name[t.name_len] = '\0';
      CHECK_OK(NULL, ptxq_gguf_tensor_find(f, name, &found));
      CHECK(found.data == t.data && found.bytes == t.bytes, "tensor_find('%s') differs", name);
    }
  }
  return h;
}

static void summarize(const char *path, gguf_summary *out) {
  memset(out, 0, sizeof *out);
  ptxq_gguf *f = NULL;
  out->status = ptxq_gguf_open(path, &f);
  if (out->status != PTXQ_OK) {
    CHECK(f == NULL, "a failed open left a handle");
    snprintf(out->detail, sizeof out->detail, "%s", ptxq_last_error(NULL));
    return;
  }
  out->hash = hash_file(f, &out->kvs, &out->tensors);
  ptxq_gguf_close(f);
}

/* Little-endian writer of a small GGUF v3 file with values of every kind
 * and a few tensors (see formats.md for the layout). */
typedef struct writer {
  uint8_t *data;
  size_t len, cap;
} writer;

static void put(writer *w, const void *bytes, size_t n) {
  if (w->len + n > w->cap) {
    w->cap = (w->len + n) * 2;
    w->data = realloc(w->data, w->cap);
    CHECK(w->data != NULL, "realloc(%zu)", w->cap);
  }
  memcpy(w->data + w->len, bytes, n);
  w->len += n;
}

static void put_le(writer *w, uint64_t v, int bytes) {
  uint8_t b[8];
  for (int i = 0; i < bytes; i++) b[i] = (uint8_t)(v >> (8 * i));
  put(w, b, (size_t)bytes);
}

static void put_str(writer *w, const char *s) {
  put_le(w, strlen(s), 8);
  put(w, s, strlen(s));
}

static void put_key(writer *w, const char *key, ptxq_gguf_type type) {
  put_str(w, key);
  put_le(w, (uint64_t)type, 4);
}

static writer build_gguf(rng *r, unsigned variant) {
  writer w = {0};
  const uint32_t alignment = variant % 2 ? 64 : 32;
  const uint32_t tensors = 3;
  put(&w, "GGUF", 4);
  put_le(&w, 3, 4);
  put_le(&w, tensors, 8);
  put_le(&w, 8, 8); /* key-value pairs */
  put_key(&w, "general.architecture", PTXQ_GGUF_STRING);
  put_str(&w, variant % 3 ? "llama" : "qwen2");
  put_key(&w, "general.alignment", PTXQ_GGUF_U32);
  put_le(&w, alignment, 4);
  put_key(&w, "test.i16", PTXQ_GGUF_I16);
  put_le(&w, (uint64_t)(uint16_t)(int16_t)-1234, 2);
  put_key(&w, "test.f32", PTXQ_GGUF_F32);
  float f = rng_uniform(r, -10.0f, 10.0f);
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  put_le(&w, bits, 4);
  put_key(&w, "test.bool", PTXQ_GGUF_BOOL);
  put_le(&w, variant & 1, 1);
  put_key(&w, "test.u64s", PTXQ_GGUF_ARRAY);
  put_le(&w, PTXQ_GGUF_U64, 4);
  put_le(&w, 100 + variant, 8);
  for (unsigned i = 0; i < 100 + variant; i++) put_le(&w, rng_next(r) >> 1, 8);
  put_key(&w, "test.strings", PTXQ_GGUF_ARRAY);
  put_le(&w, PTXQ_GGUF_STRING, 4);
  put_le(&w, 50, 8);
  for (unsigned i = 0; i < 50; i++) {
    char s[32];
    snprintf(s, sizeof s, "token-%u-%llu", i, (unsigned long long)(rng_next(r) % 1000));
    put_str(&w, s);
  }
  put_key(&w, "test.nested", PTXQ_GGUF_ARRAY);
  put_le(&w, PTXQ_GGUF_ARRAY, 4);
  put_le(&w, 4, 8);
  for (unsigned i = 0; i < 4; i++) {
    put_le(&w, PTXQ_GGUF_I8, 4);
    put_le(&w, i + 1, 8);
    for (unsigned j = 0; j <= i; j++) put_le(&w, (uint8_t)(int8_t)(j - 2), 1);
  }
  /* Tensors: F32 [3][16], Q4_K [2][256], F16 [5][8]; data offsets aligned. */
  static const struct {
    const char *name;
    uint32_t type;
    uint64_t k, n, bytes;
  } t[3] = {{"blk.0.norm", 0, 16, 3, 3 * 16 * 4},
            {"blk.0.ffn_up.weight", 12, 256, 2, 2 * 144},
            {"output.f16", 1, 8, 5, 5 * 8 * 2}};
  uint64_t offset = 0;
  for (unsigned i = 0; i < tensors; i++) {
    put_str(&w, t[i].name);
    put_le(&w, 2, 4);
    put_le(&w, t[i].k, 8);
    put_le(&w, t[i].n, 8);
    put_le(&w, t[i].type, 4);
    put_le(&w, offset, 8);
    offset = (offset + t[i].bytes + alignment - 1) / alignment * alignment;
  }
  while (w.len % alignment) put_le(&w, 0, 1);
  for (unsigned i = 0; i < tensors; i++) {
    size_t start = w.len;
    for (uint64_t b = 0; b < t[i].bytes; b++) put_le(&w, rng_next(r), 1);
    if (t[i].type == 1) /* f16 data: keep the halves finite */
      for (size_t b = start + 1; b < w.len; b += 2) w.data[b] &= 0x3F;
    while ((w.len - start) % alignment && i + 1 < tensors) put_le(&w, 0, 1);
  }
  return w;
}

#define GGUF_FILES 4 /* the fixture, two written, one truncated */
static char gguf_paths[GGUF_FILES][512];
static gguf_summary gguf_expected[GGUF_FILES];
static ptxq_gguf *shared_fixture;
static uint64_t shared_fixture_hash;

static void write_gguf_files(rng *r) {
  snprintf(gguf_paths[0], sizeof gguf_paths[0], "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  for (unsigned v = 1; v < GGUF_FILES; v++) {
    writer w = build_gguf(r, v);
    size_t len = v == 3 ? w.len - 7 : w.len; /* the last one loses the end of its data */
    snprintf(gguf_paths[v], sizeof gguf_paths[v], "/tmp/ptxq-tsan-%ld-%u.gguf", (long)getpid(), v);
    FILE *f = fopen(gguf_paths[v], "wb");
    CHECK(f != NULL && fwrite(w.data, 1, len, f) == len && fclose(f) == 0, "writing %s",
          gguf_paths[v]);
    free(w.data);
  }
}

static void remove_gguf_files(void) {
  for (unsigned v = 1; v < GGUF_FILES; v++) unlink(gguf_paths[v]);
}

static void gguf_part(unsigned t) {
  /* The one handle every thread reads at once. */
  uint64_t kvs, tensors;
  CHECK(hash_file(shared_fixture, &kvs, &tensors) == shared_fixture_hash,
        "thread %u: the shared handle read differently", t);
  for (unsigned n = 0; n < 3 * GGUF_FILES; n++) {
    unsigned v = (t + n) % GGUF_FILES;
    gguf_summary got;
    summarize(gguf_paths[v], &got);
    CHECK(memcmp(&got, &gguf_expected[v], sizeof got) == 0,
          "thread %u: %s: status %d hash %016llx detail '%s', one thread alone got %d %016llx '%s'",
          t, gguf_paths[v], got.status, (unsigned long long)got.hash, got.detail,
          gguf_expected[v].status, (unsigned long long)gguf_expected[v].hash,
          gguf_expected[v].detail);
  }
}

/* ---- the error detail ---------------------------------------------------------------- */

static void detail_part(unsigned t) {
  for (unsigned i = 0; i < 300; i++) {
    uint32_t k = 256 * (t + 1) + 1 + i % 97; /* never a multiple of 256 */
    size_t bytes = 0;
    char needle[32];
    snprintf(needle, sizeof needle, "k=%u", k);
    CHECK_FAILS(NULL, ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, 3, &bytes), PTXQ_ERR_INVALID, needle);
    char path[64];
    snprintf(path, sizeof path, "/nonexistent/t%u-%u.gguf", t, i);
    ptxq_gguf *f = NULL;
    CHECK_FAILS(NULL, ptxq_gguf_open(path, &f), PTXQ_ERR_IO, path);
    /* A detail on no context is not a detail on a context. */
    CHECK(ptxq_last_error((const ptxq_ctx *)&f)[0] == '\0', "thread %u: detail leaked", t);
    CHECK(strstr(ptxq_last_error(NULL), path) != NULL, "thread %u: lost '%s'", t, path);
  }
}

/* ---- the CPU reference --------------------------------------------------------------- */

enum { RK = 512, RN = 33, RM = 3, R6K = 768, R6N = 17, RFK = 40, RFN = 9, ACT_COUNT = 1000 };
enum { ROPE_HD = 64, ROPE_HEADS = 4, ROPE_KV = 2, ROPE_M = 3 };

typedef struct ref_inputs {
  float floats[RK * RN];
  float x[RM * R6K];
  uint8_t q6[R6N * (R6K / 256) * PTXQ_Q6_K_BLOCK_BYTES];
  uint16_t f16[RFK * RFN];
  float f32w[RFK * RFN];
  float act_x[ACT_COUNT], act_up[ACT_COUNT];
  float q[ROPE_M * ROPE_HEADS * ROPE_HD], k[ROPE_M * ROPE_KV * ROPE_HD], freq_factors[ROPE_HD / 2];
  int32_t positions[ROPE_M];
} ref_inputs;

typedef struct ref_outputs {
  uint8_t q4[RN * (RK / 256) * PTXQ_Q4_K_BLOCK_BYTES];
  float dq4[RK * RN], dq6[R6N * R6K];
  double y4[RM * RN], y6[RM * R6N], yf16[RM * RFN], yf32[RM * RFN];
  double act[3][ACT_COUNT], glu[2][ACT_COUNT];
  double q_out[ROPE_M * ROPE_HEADS * ROPE_HD], k_out[ROPE_M * ROPE_KV * ROPE_HD];
  float halves[65536];
  uint16_t rounded[4096];
} ref_outputs;

static ref_inputs ref_in;
static ref_outputs ref_expected;

static void make_ref_inputs(rng *r) {
  ref_inputs *in = &ref_in;
  for (size_t i = 0; i < RK * RN; i++) in->floats[i] = rng_uniform(r, -2.0f, 2.0f) * (float)(1 + i % 5);
  for (size_t i = 0; i < RM * R6K; i++) in->x[i] = rng_uniform(r, -1.0f, 1.0f);
  for (size_t i = 0; i < sizeof in->q6; i++) in->q6[i] = (uint8_t)rng_next(r);
  for (size_t b = 0; b < sizeof in->q6 / PTXQ_Q6_K_BLOCK_BYTES; b++) {
    uint16_t d = ptxq_f32_to_f16(rng_uniform(r, 1e-4f, 4e-4f));
    in->q6[b * PTXQ_Q6_K_BLOCK_BYTES + 208] = (uint8_t)d;
    in->q6[b * PTXQ_Q6_K_BLOCK_BYTES + 209] = (uint8_t)(d >> 8);
  }
  for (size_t i = 0; i < RFK * RFN; i++) {
    in->f32w[i] = rng_uniform(r, -1.0f, 1.0f);
    in->f16[i] = ptxq_f32_to_f16(in->f32w[i]);
  }
  for (size_t i = 0; i < ACT_COUNT; i++) {
    in->act_x[i] = rng_uniform(r, -8.0f, 8.0f);
    in->act_up[i] = rng_uniform(r, -2.0f, 2.0f);
  }
  for (size_t i = 0; i < sizeof in->q / sizeof in->q[0]; i++) in->q[i] = rng_uniform(r, -1.0f, 1.0f);
  for (size_t i = 0; i < sizeof in->k / sizeof in->k[0]; i++) in->k[i] = rng_uniform(r, -1.0f, 1.0f);
  for (size_t i = 0; i < ROPE_HD / 2; i++) in->freq_factors[i] = rng_uniform(r, 1.0f, 8.0f);
  for (size_t i = 0; i < ROPE_M; i++) in->positions[i] = (int32_t)(rng_next(r) % 100000);
}

static void run_reference(ref_outputs *out) {
  const ref_inputs *in = &ref_in;
  CHECK_OK(NULL, ptxq_ref_quantize_q4k(in->floats, RK * RN, out->q4));
  CHECK_OK(NULL, ptxq_ref_dequantize_q4k(out->q4, sizeof out->q4 / PTXQ_Q4_K_BLOCK_BYTES, out->dq4));
  CHECK_OK(NULL, ptxq_ref_dequantize_q6k(in->q6, sizeof in->q6 / PTXQ_Q6_K_BLOCK_BYTES, out->dq6));
  CHECK_OK(NULL, ptxq_ref_gemv(PTXQ_TYPE_Q4_K, out->q4, RK, RN, in->x, RM, out->y4));
  CHECK_OK(NULL, ptxq_ref_gemv(PTXQ_TYPE_Q6_K, in->q6, R6K, R6N, in->x, RM, out->y6));
  CHECK_OK(NULL, ptxq_ref_gemv(PTXQ_TYPE_F16, in->f16, RFK, RFN, in->x, RM, out->yf16));
  CHECK_OK(NULL, ptxq_ref_gemv(PTXQ_TYPE_F32, in->f32w, RFK, RFN, in->x, RM, out->yf32));
  static const ptxq_act acts[3] = {PTXQ_ACT_GELU, PTXQ_ACT_GELU_ERF, PTXQ_ACT_SILU};
  for (int a = 0; a < 3; a++) CHECK_OK(NULL, ptxq_ref_act(acts[a], in->act_x, out->act[a], ACT_COUNT));
  CHECK_OK(NULL, ptxq_ref_glu(PTXQ_ACT_SILU, in->act_x, in->act_up, out->glu[0], ACT_COUNT));
  CHECK_OK(NULL, ptxq_ref_glu(PTXQ_ACT_GELU, in->act_x, in->act_up, out->glu[1], ACT_COUNT));
  ptxq_rope_params p;
  ptxq_rope_params_init(&p, PTXQ_ROPE_NORMAL, ROPE_HD, ROPE_HEADS, ROPE_KV);
  p.n_dims = ROPE_HD - 16;
  p.ext_factor = 1.0f;
  p.freq_scale = 0.25f;
  p.n_ctx_orig = 4096;
  CHECK_OK(NULL, ptxq_ref_rope(&p, in->freq_factors, in->positions, ROPE_M, in->q, in->k, out->q_out,
                               out->k_out));
  for (uint32_t h = 0; h < 65536; h++) out->halves[h] = ptxq_f16_to_f32((uint16_t)h);
  for (size_t i = 0; i < 4096; i++) out->rounded[i] = ptxq_f32_to_f16(in->floats[i] * 1000.0f);
}

static void reference_part(unsigned t) {
  ref_outputs *got = harness_malloc(sizeof *got);
  memset(got, 0, sizeof *got);
  run_reference(got);
  /* Padding-free structure of arrays: memcmp compares the values' bits. */
  CHECK(memcmp(got, &ref_expected, sizeof *got) == 0, "thread %u: the CPU reference differs", t);
  free(got);
}

/* ---- the threads ------------------------------------------------------------------------ */

static void *mixed_parts(void *arg) {
  unsigned t = (unsigned)(uintptr_t)arg;
  pthread_barrier_wait(&barrier);
  for (unsigned round = 0; round < ROUNDS; round++)
    for (unsigned part = 0; part < 4; part++) switch ((t + round + part) % 4) {
      case 0: keys_part(t); break;
      case 1: gguf_part(t); break;
      case 2: detail_part(t); break;
      default: reference_part(t); break;
      }
  return NULL;
}

static void run_threads(void *(*body)(void *)) {
  pthread_t threads[THREADS];
  CHECK(pthread_barrier_init(&barrier, NULL, THREADS) == 0, "pthread_barrier_init");
  for (unsigned t = 0; t < THREADS; t++)
    CHECK(pthread_create(&threads[t], NULL, body, (void *)(uintptr_t)t) == 0, "pthread_create");
  for (unsigned t = 0; t < THREADS; t++) CHECK(pthread_join(threads[t], NULL) == 0, "pthread_join");
  pthread_barrier_destroy(&barrier);
}

int main(void) {
  /* Before any ptxq call: the driver is absent for this whole process. */
  setenv("PTXQ_LIBCUDA", MISSING_LIBCUDA, 1);
  double start = harness_now();
  rng r = {harness_seed()};

  run_threads(open_without_driver);
  for (unsigned t = 1; t < THREADS; t++)
    CHECK(strcmp(open_detail[t], open_detail[0]) == 0, "threads 0 and %u: '%s' and '%s'", t,
          open_detail[0], open_detail[t]);

  /* What one thread alone gets. */
  for (size_t i = 0; i < KEYS; i++) {
    char key[512];
    random_key(&r, key, sizeof key);
    run_key(key, &keys_expected[i]);
  }
  write_gguf_files(&r);
  for (unsigned v = 0; v < GGUF_FILES; v++) summarize(gguf_paths[v], &gguf_expected[v]);
  CHECK(gguf_expected[0].status == PTXQ_OK && gguf_expected[1].status == PTXQ_OK &&
            gguf_expected[2].status == PTXQ_OK,
        "single thread: a GGUF file did not open: %s %s %s", gguf_expected[0].detail,
        gguf_expected[1].detail, gguf_expected[2].detail);
  CHECK(gguf_expected[3].status == PTXQ_ERR_FORMAT, "the truncated file gave %d: %s",
        gguf_expected[3].status, gguf_expected[3].detail);
  CHECK_OK(NULL, ptxq_gguf_open(gguf_paths[0], &shared_fixture));
  uint64_t kvs, tensors;
  shared_fixture_hash = hash_file(shared_fixture, &kvs, &tensors);
  make_ref_inputs(&r);
  run_reference(&ref_expected);

  run_threads(mixed_parts);

  ptxq_gguf_close(shared_fixture);
  remove_gguf_files();
  fprintf(stderr, "threads_tsan: %d threads, %d rounds, %.2f s\n", THREADS, ROUNDS,
          harness_now() - start);
  return 0;
}
