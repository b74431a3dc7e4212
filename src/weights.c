/*
 * weights.c: named weight matrices on the device.
 *
 * A weight is an [n][k] matrix of one type, uploaded once and then named by
 * the ops (ptxq_gemv(ctx, "blk.0.ffn_up.weight", ...)). Each record also
 * caches the GEMV kernel per batch size, so a decode step's launch costs a
 * hash look-up by name and nothing else.
 *
 * Replacing or freeing a weight waits for the stream first: kernels already
 * enqueued may still be reading the old buffer. Both, like an upload, are
 * refused during stream capture (they synchronise and allocate).
 *
 * Q6_K weights are stored on the device in the layout the Q6_K GEMV reads:
 * each row's 210-byte super-blocks repacked into planes (ptxgen_q6k_repack,
 * rows padded to 16 bytes). In a tensor-core context Q4_K and Q6_K weights
 * are stored in the tile layouts of the tensor-core GEMV
 * (ptxgen_q4k_tc_tiles, ptxgen_q6k_tc_tiles: 16 rows' super-blocks
 * together, the last tile padded with zero rows).
 * The repacking runs on the host through a bounded buffer, a slice of rows
 * at a time, so a large tensor never needs a second full copy in host
 * memory. ptxq_weight_info still reports the GGUF byte count the caller
 * uploaded.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define INITIAL_BUCKETS 64
#define REPACK_SLICE_BYTES ((size_t)8 << 20) /* host buffer of the Q6_K repacking */

/* Bytes of an [n][k] matrix; `who` prefixes the messages ("" or "weight 'x': "). */
static int weight_bytes(const ptxq_ctx *ctx, const char *who, ptxq_type type, uint32_t k,
                        uint32_t n, size_t *bytes) {
  const char *type_name = ptxq__type_name(type);
  if (type_name == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID,
                      "%sunknown weight type %d (known: F32=0, F16=1, Q4_K=12, Q6_K=14)", who,
                      (int)type);
  if (k == 0 || n == 0)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s%s k=%u n=%u: k and n must be > 0", who, type_name,
                      k, n);

  uint64_t row_bytes;
  switch (type) {
  case PTXQ_TYPE_F32: row_bytes = (uint64_t)k * 4; break;
  case PTXQ_TYPE_F16: row_bytes = (uint64_t)k * 2; break;
  case PTXQ_TYPE_Q4_K:
  case PTXQ_TYPE_Q6_K:
    if (k % PTXQ_QK_K != 0)
      return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s%s k=%u is not a multiple of %d", who, type_name,
                        k, PTXQ_QK_K);
    row_bytes = (uint64_t)(k / PTXQ_QK_K) *
                (type == PTXQ_TYPE_Q4_K ? PTXQ_Q4_K_BLOCK_BYTES : PTXQ_Q6_K_BLOCK_BYTES);
    break;
  default: return PTXQ_ERR_INVALID; /* unreachable: ptxq__type_name knew the type */
  }
  /* row_bytes < 2^35 always; the product is what can overflow. */
  if (row_bytes > SIZE_MAX / n)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "%s%s k=%u n=%u: the size overflows size_t", who,
                      type_name, k, n);
  *bytes = (size_t)(row_bytes * n);
  return PTXQ_OK;
}

int ptxq_weight_bytes(ptxq_type type, uint32_t k, uint32_t n, size_t *bytes) {
  if (bytes == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_weight_bytes: bytes is NULL");
  *bytes = 0;
  return weight_bytes(NULL, "", type, k, n, bytes);
}

int ptxq__weight_name_check(const ptxq_ctx *ctx, const char *name) {
  if (name == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight name is NULL");
  size_t len = strnlen(name, PTXQ_WEIGHT_NAME_MAX + 1);
  if (len == 0) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight name is empty");
  if (len > PTXQ_WEIGHT_NAME_MAX)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight name '%.40s...' is longer than %d bytes", name,
                      PTXQ_WEIGHT_NAME_MAX);
  return PTXQ_OK;
}

/* The slot pointing at the weight (for unlinking), or at the chain's NULL
 * end when absent. Lock held; buckets exist. */
static struct ptxq_weight **slot_of(ptxq_ctx *ctx, const char *name, uint64_t hash) {
  struct ptxq_weight **slot = &ctx->weight_buckets[hash & (ctx->weight_bucket_count - 1)];
  while (*slot != NULL && ((*slot)->hash != hash || strcmp((*slot)->name, name) != 0))
    slot = &(*slot)->next;
  return slot;
}

static struct ptxq_weight *lookup(ptxq_ctx *ctx, const char *name) {
  if (ctx->weight_bucket_count == 0) return NULL;
  return *slot_of(ctx, name, ptxq__hash(name));
}

struct ptxq_weight *ptxq__weight_find(ptxq_ctx *ctx, const char *name) {
  struct ptxq_weight *w = lookup(ctx, name);
  if (w == NULL) ptxq__fail(ctx, PTXQ_ERR_NOT_FOUND, "no weight named '%s'", name);
  return w;
}

/* Doubles the buckets when the chains would average more than one. */
static int reserve_one(ptxq_ctx *ctx) {
  if (ctx->weight_count + 1 <= ctx->weight_bucket_count) return PTXQ_OK;
  size_t count = ctx->weight_bucket_count ? ctx->weight_bucket_count * 2 : INITIAL_BUCKETS;
  struct ptxq_weight **buckets = calloc(count, sizeof *buckets);
  if (buckets == NULL) return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "weight table: out of host memory");
  for (size_t i = 0; i < ctx->weight_bucket_count; i++) {
    struct ptxq_weight *w = ctx->weight_buckets[i];
    while (w != NULL) {
      struct ptxq_weight *next = w->next;
      size_t b = w->hash & (count - 1);
      w->next = buckets[b];
      buckets[b] = w;
      w = next;
    }
  }
  free(ctx->weight_buckets);
  ctx->weight_buckets = buckets;
  ctx->weight_bucket_count = count;
  return PTXQ_OK;
}

/* Puts a filled device buffer under the name, replacing an existing weight.
 * Lock held, context current. On failure the buffer is the caller's. */
static int install(ptxq_ctx *ctx, const char *name, ptxq_type type, uint32_t k, uint32_t n,
                   size_t bytes, CUdeviceptr data) {
  int status = reserve_one(ctx);
  if (status != PTXQ_OK) return status;
  uint64_t hash = ptxq__hash(name);
  struct ptxq_weight **slot = slot_of(ctx, name, hash);
  struct ptxq_weight *w = *slot;
  if (w != NULL) {
    CUresult result = ptxq__cu.StreamSynchronize(ctx->stream);
    if (result != CUDA_SUCCESS)
      return ptxq__fail_cu(ctx, result, "weight '%s': waiting for kernels using the old data",
                           name);
    (void)ptxq__cu.MemFree(w->data);
  } else {
    if ((w = calloc(1, sizeof *w)) == NULL)
      return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "weight '%s': out of host memory", name);
    w->hash = hash;
    snprintf(w->name, sizeof w->name, "%s", name);
    *slot = w;
    ctx->weight_count++;
  }
  w->type = type;
  w->k = k;
  w->n = n;
  w->bytes = bytes;
  w->data = data;
  memset(w->gemv_by_m, 0, sizeof w->gemv_by_m);
  memset(w->gemv_batch_rows, 0, sizeof w->gemv_batch_rows);
  memset(w->gated_idp_mma, 0, sizeof w->gated_idp_mma);
  return PTXQ_OK;
}

/* Copies host bytes to the device and waits for the copy. Context current. */
static int copy_to_device(ptxq_ctx *ctx, const char *name, CUdeviceptr dst, const void *src,
                          size_t bytes) {
  CUresult result = ptxq__cu.MemcpyHtoDAsync(dst, src, bytes, ctx->stream);
  if (result == CUDA_SUCCESS) result = ptxq__cu.StreamSynchronize(ctx->stream);
  if (result != CUDA_SUCCESS)
    return ptxq__fail_cu(ctx, result, "weight '%s': copying %zu bytes", name, bytes);
  return PTXQ_OK;
}

/* A layout the device copy is repacked into: rows of dst_row bytes, in
 * groups of `group` rows (the last padded to a whole group). */
typedef struct repacking {
  const char *what;
  uint64_t src_row, dst_row;
  uint32_t group;
  void (*repack)(const void *src, uint32_t k, uint32_t n, void *dst);
} repacking;

/* rows rounded up to whole groups of the layout (the last group padded) */
static uint64_t whole_groups(const repacking *r, uint64_t rows) {
  return (rows + r->group - 1) / r->group * r->group;
}

/* The repacking of a weight of this type in this context; false where the
 * GGUF bytes are stored as they are. */
static bool repacking_for(const ptxq_ctx *ctx, ptxq_type type, uint32_t k, repacking *out) {
  const uint64_t blocks = k / PTXQ_QK_K;
  if (type == PTXQ_TYPE_Q6_K && ctx->tensor_cores) {
    *out = (repacking){"Q6_K tiles", blocks * PTXQ_Q6_K_BLOCK_BYTES, blocks * PTXQ_Q6_K_BLOCK_BYTES, 16,
                       ptxgen_q6k_tc_tiles};
    return true;
  }
  if (type == PTXQ_TYPE_Q6_K) {
    *out = (repacking){"Q6_K rows", blocks * PTXQ_Q6_K_BLOCK_BYTES, ptxgen_q6k_row_stride(k), 1,
                       ptxgen_q6k_repack};
    return true;
  }
  if (type == PTXQ_TYPE_Q4_K && ctx->tensor_cores) {
    *out = (repacking){"Q4_K tiles", blocks * PTXQ_Q4_K_BLOCK_BYTES, blocks * PTXQ_Q4_K_BLOCK_BYTES, 16,
                       ptxgen_q4k_tc_tiles};
    return true;
  }
  return false;
}

/* Bytes of the device copy: the GGUF bytes, or the repacked layout's. */
static int device_bytes(const ptxq_ctx *ctx, const char *name, ptxq_type type, uint32_t k,
                        uint32_t n, size_t gguf_bytes, size_t *out) {
  repacking r;
  if (!repacking_for(ctx, type, k, &r)) {
    *out = gguf_bytes;
    return PTXQ_OK;
  }
  const uint64_t rows = whole_groups(&r, n); /* dst_row < 2^32 for any k */
  if (r.dst_row > SIZE_MAX / rows)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight '%s': %s k=%u n=%u: the repacked size overflows size_t",
                      name, ptxq__type_name(type), k, n);
  *out = (size_t)(r.dst_row * rows);
  return PTXQ_OK;
}

/* Repacks the rows a slice (of whole groups) at a time into a bounded host
 * buffer and copies each slice into place. Context current. */
static int upload_repacked(ptxq_ctx *ctx, const char *name, const repacking *r, uint32_t k, uint32_t n,
                           const void *data, CUdeviceptr buffer) {
  size_t slice_rows = REPACK_SLICE_BYTES / r->dst_row / r->group * r->group;
  if (slice_rows == 0) slice_rows = r->group;
  if (slice_rows > n) slice_rows = (size_t)whole_groups(r, n);
  unsigned char *slice = malloc(slice_rows * r->dst_row);
  if (slice == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_NOMEM, "weight '%s': no host memory to repack %zu %s", name, slice_rows,
                      r->what);
  int status = PTXQ_OK;
  for (uint32_t row = 0; row < n && status == PTXQ_OK; row += (uint32_t)slice_rows) {
    uint32_t rows = n - row < slice_rows ? n - row : (uint32_t)slice_rows;
    r->repack((const unsigned char *)data + (size_t)row * r->src_row, k, rows, slice);
    const size_t padded = (size_t)whole_groups(r, rows);
    /* Waited for each time: the next slice reuses the buffer. */
    status = copy_to_device(ctx, name, buffer + (CUdeviceptr)row * r->dst_row, slice, padded * r->dst_row);
  }
  free(slice);
  return status;
}

int ptxq_weight_upload(ptxq_ctx *ctx, const char *name, ptxq_type type, uint32_t k, uint32_t n,
                       const void *data, size_t bytes) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_weight_upload: ctx is NULL");
  int status = ptxq__weight_name_check(ctx, name);
  if (status != PTXQ_OK) return status;
  char who[PTXQ_WEIGHT_NAME_MAX + 16];
  snprintf(who, sizeof who, "weight '%s': ", name);
  size_t needed = 0;
  if ((status = weight_bytes(ctx, who, type, k, n, &needed)) != PTXQ_OK) return status;
  if (bytes != needed)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight '%s': %zu bytes given, %s k=%u n=%u needs %zu",
                      name, bytes, ptxq__type_name(type), k, n, needed);
  if (data == NULL) return ptxq__fail(ctx, PTXQ_ERR_INVALID, "weight '%s': data is NULL", name);
  size_t on_device = 0;
  if ((status = device_bytes(ctx, name, type, k, n, bytes, &on_device)) != PTXQ_OK) return status;

  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_weight_upload")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  /* Allocate and copy outside the lock (a large copy would stall every
   * other thread's launches); only the swap into the table is locked. */
  CUdeviceptr buffer = 0;
  char what[PTXQ_WEIGHT_NAME_MAX + 16];
  snprintf(what, sizeof what, "weight '%s'", name);
  status = ptxq__device_alloc(ctx, on_device, what, &buffer);
  if (status == PTXQ_OK) {
    repacking r;
    if (repacking_for(ctx, type, k, &r))
      status = upload_repacked(ctx, name, &r, k, n, data, buffer);
    else
      status = copy_to_device(ctx, name, buffer, data, bytes);
    if (status == PTXQ_OK) {
      pthread_mutex_lock(&ctx->lock);
      status = install(ctx, name, type, k, n, bytes, buffer);
      pthread_mutex_unlock(&ctx->lock);
    }
    if (status != PTXQ_OK) (void)ptxq__cu.MemFree(buffer);
  }
  ptxq__leave(ctx);
  return status;
}

int ptxq_weight_free(ptxq_ctx *ctx, const char *name) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_weight_free: ctx is NULL");
  int status = ptxq__weight_name_check(ctx, name);
  if (status != PTXQ_OK) return status;
  if ((status = ptxq__enter(ctx)) != PTXQ_OK) return status;
  if ((status = ptxq__refuse_in_capture(ctx, "ptxq_weight_free")) != PTXQ_OK) {
    ptxq__leave(ctx);
    return status;
  }
  pthread_mutex_lock(&ctx->lock);
  struct ptxq_weight *w = ptxq__weight_find(ctx, name);
  if (w == NULL) {
    status = PTXQ_ERR_NOT_FOUND;
  } else {
    CUresult result = ptxq__cu.StreamSynchronize(ctx->stream);
    if (result != CUDA_SUCCESS) {
      status = ptxq__fail_cu(ctx, result, "weight '%s': waiting for kernels using it", name);
    } else {
      struct ptxq_weight **slot = slot_of(ctx, name, w->hash);
      *slot = w->next;
      ctx->weight_count--;
      (void)ptxq__cu.MemFree(w->data);
      free(w);
    }
  }
  pthread_mutex_unlock(&ctx->lock);
  ptxq__leave(ctx);
  return status;
}

int ptxq_weight_info_get(ptxq_ctx *ctx, const char *name, ptxq_weight_info *info) {
  if (ctx == NULL) return ptxq__fail(NULL, PTXQ_ERR_INVALID, "ptxq_weight_info_get: ctx is NULL");
  int status = ptxq__weight_name_check(ctx, name);
  if (status != PTXQ_OK) return status;
  if (info == NULL)
    return ptxq__fail(ctx, PTXQ_ERR_INVALID, "ptxq_weight_info_get('%s'): info is NULL", name);
  pthread_mutex_lock(&ctx->lock);
  const struct ptxq_weight *w = ptxq__weight_find(ctx, name);
  if (w != NULL) *info = (ptxq_weight_info){w->type, w->k, w->n, w->bytes, w->data};
  pthread_mutex_unlock(&ctx->lock);
  return w != NULL ? PTXQ_OK : PTXQ_ERR_NOT_FOUND;
}

void ptxq__weights_free_all(ptxq_ctx *ctx) {
  for (size_t i = 0; i < ctx->weight_bucket_count; i++) {
    struct ptxq_weight *w = ctx->weight_buckets[i];
    while (w != NULL) {
      struct ptxq_weight *next = w->next;
      (void)ptxq__cu.MemFree(w->data);
      free(w);
      w = next;
    }
  }
  free(ctx->weight_buckets);
  ctx->weight_buckets = NULL;
  ctx->weight_bucket_count = ctx->weight_count = 0;
}
