/*
 * errors.c: status names and the per-thread error detail.
 *
 * A status alone ("invalid argument") does not tell a caller that k=4000 is
 * not a multiple of 256, so every failure also writes a sentence into a
 * thread-local buffer, tagged with the context it happened on.
 * ptxq_last_error(ctx) returns it only to a caller asking about that same
 * context, and only on the thread that failed: threads sharing a context
 * never see (or overwrite) each other's details.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

static _Thread_local char detail[PTXQ_DETAIL_CAP];
static _Thread_local const ptxq_ctx *detail_ctx;
static _Thread_local bool detail_set;

const char *ptxq_strerror(int status) {
  switch (status) {
  case PTXQ_OK: return "success";
  case PTXQ_ERR_INVALID: return "invalid argument";
  case PTXQ_ERR_NO_DEVICE: return "no NVIDIA driver or no such GPU";
  case PTXQ_ERR_DRIVER: return "CUDA driver call failed";
  case PTXQ_ERR_JIT: return "driver JIT rejected the generated PTX";
  case PTXQ_ERR_NOMEM: return "out of host memory";
  case PTXQ_ERR_DEVICE_MEMORY: return "out of device memory";
  case PTXQ_ERR_NOT_FOUND: return "not found (no such weight, key or tensor)";
  case PTXQ_ERR_UNSUPPORTED: return "not supported by this version";
  case PTXQ_ERR_FORMAT: return "malformed file";
  case PTXQ_ERR_IO: return "file could not be read";
  case PTXQ_ERR_CAPTURE: return "not allowed during stream capture";
  case PTXQ_ERR_CANCELLED: return "cancelled by the progress callback";
  default: return "unknown ptxq status";
  }
}

const char *ptxq_last_error(const ptxq_ctx *ctx) {
  if (!detail_set || detail_ctx != ctx) return "";
  return detail;
}

/* Formats into a scratch buffer first: the arguments may point into
 * `detail` itself (a caller wrapping an earlier failure's text). */
static void set_detail(const ptxq_ctx *ctx, const char *fmt, va_list args) {
  static _Thread_local char scratch[PTXQ_DETAIL_CAP];
  vsnprintf(scratch, sizeof scratch, fmt, args);
  memcpy(detail, scratch, sizeof detail);
  detail_ctx = ctx;
  detail_set = true;
}

int ptxq__fail(const ptxq_ctx *ctx, int status, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  set_detail(ctx, fmt, args);
  va_end(args);
  return status;
}

int ptxq__status_of(CUresult result) {
  return result == CUDA_ERROR_OUT_OF_MEMORY ? PTXQ_ERR_DEVICE_MEMORY : PTXQ_ERR_DRIVER;
}

void ptxq__cu_error_text(CUresult result, char *buf, size_t cap) {
  const char *name = NULL, *text = NULL;
  /* The table is empty when libcuda never loaded; no context exists then,
   * but stay safe for any caller. */
  if (ptxq__cu.GetErrorName == NULL || ptxq__cu.GetErrorName(result, &name) != CUDA_SUCCESS)
    name = NULL;
  if (ptxq__cu.GetErrorString == NULL || ptxq__cu.GetErrorString(result, &text) != CUDA_SUCCESS)
    text = NULL;
  if (name != NULL && text != NULL)
    snprintf(buf, cap, "%s (%s)", name, text);
  else if (name != NULL)
    snprintf(buf, cap, "%s", name);
  else
    snprintf(buf, cap, "CUresult %d", (int)result);
}

int ptxq__fail_cu(const ptxq_ctx *ctx, CUresult result, const char *fmt, ...) {
  char what[512];
  va_list args;
  va_start(args, fmt);
  vsnprintf(what, sizeof what, fmt, args);
  va_end(args);
  char why[256];
  ptxq__cu_error_text(result, why, sizeof why);
  return ptxq__fail(ctx, ptxq__status_of(result), "%s failed: %s", what, why);
}

const char *ptxq__type_name(ptxq_type type) {
  switch (type) {
  case PTXQ_TYPE_F32: return "F32";
  case PTXQ_TYPE_F16: return "F16";
  case PTXQ_TYPE_Q4_K: return "Q4_K";
  case PTXQ_TYPE_Q6_K: return "Q6_K";
  }
  return NULL;
}
