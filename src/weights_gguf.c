/*
 * weights_gguf.c: ptxq_weights_from_gguf, the tensors of a GGUF file as
 * named weights on the device.
 *
 * The file is read through the public GGUF reader (gguf.c), which has
 * checked every name, dimension, type and offset against the file when it
 * opened it, and each tensor goes through ptxq_weight_upload, so a weight
 * from a file gets exactly the checks and the device layout of one uploaded
 * by hand (Q6_K repacked, sizes matched to the type and shape). A weight
 * matrix is GGUF's [dims[3]][dims[2]][dims[1]][dims[0]] seen as n rows of
 * k = dims[0]: n is the product of the outer dims.
 *
 * A failure stops the load and leaves the weights uploaded before it in
 * place (as does a cancel from the progress callback): the caller may free
 * them, or retry, which replaces them.
 */
#define _POSIX_C_SOURCE 200809L
#include <fnmatch.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define CALL "ptxq_weights_from_gguf"

static double seconds_now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* A reusable NUL-terminated copy of a tensor's name (names in the mapping
 * are not terminated). Its length is bounded by the file, which the reader
 * checked. */
typedef struct name_buffer {
  char *text;
  size_t cap;
} name_buffer;

static int copy_name(ptxq_ctx *ctx, name_buffer *buf, const ptxq_gguf_tensor *t) {
  if (t->name_len >= SIZE_MAX)
    return ptxq__fail(ctx, PTXQ_ERR_FORMAT, CALL ": a tensor name of %" PRIu64 " bytes",
                      t->name_len);
  size_t needed = (size_t)t->name_len + 1;
  if (needed > buf->cap) {
    char *grown = realloc(buf->text, needed);
    if (grown == NULL)
      return ptxq__fail(ctx, PTXQ_ERR_NOMEM, CALL ": out of host memory for a tensor name");
    buf->text = grown;
    buf->cap = needed;
  }
  if (t->name_len > 0) memcpy(buf->text, t->name, (size_t)t->name_len);
  buf->text[t->name_len] = '\0';
  return PTXQ_OK;
}

static bool is_uploadable(uint32_t type) {
  return type == PTXQ_TYPE_F32 || type == PTXQ_TYPE_F16 || type == PTXQ_TYPE_Q4_K ||
         type == PTXQ_TYPE_Q6_K;
}

/* k and n of a tensor as a weight: PTXQ_ERR_UNSUPPORTED when either does not
 * fit 32 bits (ptxq's weights are indexed with uint32_t). */
static int weight_shape(ptxq_ctx *ctx, const char *name, const ptxq_gguf_tensor *t, uint32_t *k,
                        uint32_t *n) {
  uint64_t rows = 1;
  bool too_big = false;
  for (int d = 1; d < 4; d++) {
    if (t->dims[d] != 0 && rows > UINT32_MAX / t->dims[d]) too_big = true;
    else rows *= t->dims[d];
  }
  if (t->dims[0] > UINT32_MAX || too_big)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                      CALL ": tensor '%s' is [%" PRIu64 "][%" PRIu64 "][%" PRIu64 "][%" PRIu64
                      "] (dims[3]..dims[0]): as a weight its k = dims[0] and n = dims[1]*dims[2]"
                      "*dims[3] must each fit 32 bits",
                      name, t->dims[3], t->dims[2], t->dims[1], t->dims[0]);
  *k = (uint32_t)t->dims[0];
  *n = (uint32_t)rows;
  return PTXQ_OK;
}

static bool matches(const char *filter, const char *name) {
  return filter == NULL || fnmatch(filter, name, 0) == 0;
}

/* Uploads one tensor as a weight. */
static int upload_tensor(ptxq_ctx *ctx, const char *name, uint64_t name_len,
                         const ptxq_gguf_tensor *t) {
  if (strlen(name) != name_len)
    return ptxq__fail(ctx, PTXQ_ERR_FORMAT, CALL ": tensor '%s' has a NUL byte in its name", name);
  if (name_len > PTXQ_WEIGHT_NAME_MAX)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED,
                      CALL ": tensor '%.60s...' has a %" PRIu64
                      "-byte name; weight names are at most %d bytes",
                      name, name_len, PTXQ_WEIGHT_NAME_MAX);
  uint32_t k = 0, n = 0;
  int status = weight_shape(ctx, name, t, &k, &n);
  if (status != PTXQ_OK) return status;
  if (t->bytes > SIZE_MAX)
    return ptxq__fail(ctx, PTXQ_ERR_UNSUPPORTED, CALL ": tensor '%s' (%" PRIu64
                      " bytes) does not fit this machine's address space", name, t->bytes);
  /* ptxq_weight_upload checks the byte count against the type and shape
   * and names the weight in its detail. */
  return ptxq_weight_upload(ctx, name, (ptxq_type)t->type, k, n, t->data, (size_t)t->bytes);
}

/* The reader reports on no context; move its detail to ctx. */
static int pass_through(ptxq_ctx *ctx, int status) {
  return ptxq__fail(ctx, status, "%s", ptxq_last_error(NULL));
}

int ptxq_weights_from_gguf(ptxq_ctx *ctx, const char *path, const char *filter,
                           ptxq_progress_fn progress, void *user, ptxq_load_stats *stats) {
  ptxq_load_stats local;
  if (stats == NULL) stats = &local;
  memset(stats, 0, sizeof *stats);
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, CALL ": ctx is NULL");
  if (path == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, CALL ": path is NULL");
  /* Refuse a capture before opening (and mapping) the file for nothing. */
  int status = ptxq__enter(ctx);
  if (status != PTXQ_OK) return status;
  status = ptxq__refuse_in_capture(ctx, CALL);
  ptxq__leave(ctx);
  if (status != PTXQ_OK) return status;

  const double start = seconds_now();
  ptxq_gguf *file = NULL;
  if ((status = ptxq_gguf_open(path, &file)) != PTXQ_OK) return pass_through(ctx, status);
  const uint64_t count = ptxq_gguf_tensor_count(file);
  name_buffer name = {NULL, 0};
  ptxq_gguf_tensor t;

  /* First pass: the bytes the progress callback counts towards. */
  uint64_t bytes_total = 0;
  for (uint64_t i = 0; i < count && status == PTXQ_OK; i++) {
    if ((status = ptxq_gguf_tensor_at(file, i, &t)) != PTXQ_OK) {
      status = pass_through(ctx, status);
    } else if ((status = copy_name(ctx, &name, &t)) == PTXQ_OK && matches(filter, name.text)) {
      bytes_total += t.bytes; /* the reader checked each lies within the file */
    }
  }

  uint64_t bytes_done = 0;
  for (uint64_t i = 0; i < count && status == PTXQ_OK; i++) {
    if ((status = ptxq_gguf_tensor_at(file, i, &t)) != PTXQ_OK) {
      status = pass_through(ctx, status);
      break;
    }
    if ((status = copy_name(ctx, &name, &t)) != PTXQ_OK) break;
    if (!matches(filter, name.text)) continue;
    if (is_uploadable(t.type)) {
      if ((status = upload_tensor(ctx, name.text, t.name_len, &t)) != PTXQ_OK) break;
      stats->tensors++;
      stats->bytes += t.bytes;
    } else {
      stats->skipped++;
    }
    bytes_done += t.bytes;
    if (progress != NULL && progress(user, name.text, bytes_done, bytes_total) != 0)
      status = ptxq__fail(ctx, PTXQ_ERR_CANCELLED,
                          CALL "('%s'): cancelled by the progress callback after tensor '%s' "
                          "(%" PRIu64 " uploaded, %" PRIu64 " skipped)",
                          path, name.text, stats->tensors, stats->skipped);
  }
  free(name.text);
  ptxq_gguf_close(file);
  stats->seconds = seconds_now() - start;
  return status;
}
