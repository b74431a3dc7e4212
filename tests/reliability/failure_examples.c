/*
 * failure_examples.c: prints the status and the detail ptxq gives for each
 * kind of bad input or fault in README.md ("Failure behaviour"), so the
 * table's examples are text the library really produced (and can be
 * produced again after a change): `failure_examples` from the build folder,
 * on a GPU machine for the rows that need a context.
 *
 * Not a test: it checks nothing and always exits 0. Output: one line per
 * case, "case | status | detail" (newlines in a detail shown as "\n").
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h" /* ptxq__test_ptx_hook, for the JIT failure */
#include "ptxgen.h"
#include "ptxq.h"

#ifndef PTXQ_FIXTURES_DIR
#error "compile with -DPTXQ_FIXTURES_DIR=..."
#endif

static const char *status_name(int status) {
  static const char *const names[] = {
      "PTXQ_OK",          "PTXQ_ERR_INVALID",       "PTXQ_ERR_NO_DEVICE", "PTXQ_ERR_DRIVER",
      "PTXQ_ERR_JIT",     "PTXQ_ERR_NOMEM",         "PTXQ_ERR_DEVICE_MEMORY",
      "PTXQ_ERR_NOT_FOUND", "PTXQ_ERR_UNSUPPORTED", "PTXQ_ERR_FORMAT",    "PTXQ_ERR_IO",
      "PTXQ_ERR_CAPTURE", "PTXQ_ERR_CANCELLED"};
  return status <= 0 && status >= -12 ? names[-status] : "?";
}

static void show(const char *what, int status, const ptxq_ctx *ctx) {
  printf("%s | %s | ", what, status_name(status));
  if (status == PTXQ_OK) {
    puts("(succeeded)");
    return;
  }
  for (const char *p = ptxq_last_error(ctx); *p != '\0'; p++) {
    if (*p == '\n') fputs("\\n", stdout);
    else putchar(*p);
  }
  putchar('\n');
}

/* The fixture cut short, or with its magic changed: a damaged GGUF file. */
static const char *damaged_copy(const char *name, size_t keep, int break_magic) {
  static char path[2][256];
  char *out = path[break_magic ? 1 : 0];
  char fixture[1024];
  snprintf(fixture, sizeof fixture, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  snprintf(out, sizeof path[0], "/tmp/%s-%ld.gguf", name, (long)getpid());
  FILE *in = fopen(fixture, "rb"), *dst = fopen(out, "wb");
  if (in == NULL || dst == NULL) {
    fprintf(stderr, "cannot copy %s to %s\n", fixture, out);
    exit(0);
  }
  char buf[4096];
  size_t n, total = 0;
  while (total < keep && (n = fread(buf, 1, sizeof buf, in)) > 0) {
    if (n > keep - total) n = keep - total;
    if (total == 0 && break_magic) buf[0] = 'X';
    fwrite(buf, 1, n, dst);
    total += n;
  }
  fclose(in);
  fclose(dst);
  return out;
}

static int cancel_at_once(void *user, const char *tensor, uint64_t done, uint64_t total) {
  (void)user, (void)tensor, (void)done, (void)total;
  return 1;
}

static void corrupt_first_ret(char *ptx) {
  char *at = strstr(ptx, "ret;");
  if (at != NULL) at[1] = 'x';
}

int main(void) {
  size_t bytes = 0;
  ptxq_gguf *f = NULL;
  const char *truncated = damaged_copy("ptxq-truncated", 100000, 0);
  const char *bad_magic = damaged_copy("ptxq-bad-magic", (size_t)1 << 30, 1);

  /* ---- no context needed ---- */
  show("weight size: k not a multiple of 256", ptxq_weight_bytes(PTXQ_TYPE_Q4_K, 4000, 3, &bytes), NULL);
  show("GGUF: no such file", ptxq_gguf_open("/nonexistent/model.gguf", &f), NULL);
  show("GGUF: truncated", ptxq_gguf_open(truncated, &f), NULL);
  show("GGUF: bad magic", ptxq_gguf_open(bad_magic, &f), NULL);
  show("a call on a NULL context", ptxq_gemv(NULL, "w", 0x1000, 0x2000, 1), NULL);
  ptxgen_spec spec;
  char msg[256];
  int parsed = ptxgen_spec_parse("q4k_gemv:k=4000,n=1,m=1", &spec, msg, sizeof msg);
  printf("ptxgen_spec_parse: bad key | %d | %s\n", parsed, msg);

  ptxq_ctx *ctx = NULL;
  int status = ptxq_open(&ctx, NULL);
  if (status != PTXQ_OK) {
    show("ptxq_open", status, NULL);
    unlink(truncated);
    unlink(bad_magic);
    return 0;
  }
  ptxq_options far = {.device = 64, .target_sm = 0};
  ptxq_ctx *none = NULL;
  show("device ordinal past the last", ptxq_open(&none, &far), NULL);
  ptxq_options newer = {.device = 0, .target_sm = 120};
  show("target newer than the device", ptxq_open(&none, &newer), NULL);

  /* ---- a context ---- */
  const uint32_t k = 512, n = 64;
  ptxq_weight_bytes(PTXQ_TYPE_Q4_K, k, n, &bytes);
  uint8_t *w = calloc(1, bytes);
  float *host = calloc(8 * 1024, sizeof *host);
  ptxq_dev x = 0, y = 0;
  ptxq_alloc(ctx, 1 << 16, &x);
  ptxq_alloc(ctx, 1 << 16, &y);
  ptxq_weight_upload(ctx, "w", PTXQ_TYPE_Q4_K, k, n, w, bytes);
  ptxq_weight_upload(ctx, "norm", PTXQ_TYPE_F32, 16, 1, host, 64);

  show("gemv: m out of range", ptxq_gemv(ctx, "w", x, y, 17), ctx);
  show("gemv: misaligned x", ptxq_gemv(ctx, "w", x + 4, y, 1), ctx);
  show("gemv: unknown weight", ptxq_gemv(ctx, "blk.0.ffn_up", x, y, 1), ctx);
  show("gemv: F32 weight", ptxq_gemv(ctx, "norm", x, y, 1), ctx);
  show("weight upload: wrong byte count", ptxq_weight_upload(ctx, "w2", PTXQ_TYPE_Q4_K, k, n, w, 100), ctx);
  show("weight upload: bad k", ptxq_weight_upload(ctx, "w2", PTXQ_TYPE_Q6_K, 4000, n, w, bytes), ctx);
  show("silu: n = 0", ptxq_silu(ctx, x, y, 0, 1), ctx);
  show("silu: y partly overlaps x", ptxq_silu(ctx, x, x + 64, 1024, 1), ctx);
  ptxq_rope_params rope;
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 6, 4);
  show("rope: kv_heads does not divide heads", ptxq_rope(ctx, x, y, x + 32768, 1, &rope), ctx);
  ptxq_ffn_params ffn = {PTXQ_FFN_SWIGLU, "w", "w", "w"};
  show("ffn: shapes do not chain", ptxq_ffn(ctx, &ffn, x, y, 1), ctx);
  ptxq_kernel_info kinfo;
  show("kernel_get: bad key", ptxq_kernel_get(ctx, "q4k_gemv:k=4000,n=1,m=1", &kinfo), ctx);
  show("kernel_get: target newer than the device", ptxq_kernel_get(ctx, "silu:n=8,m=1,sm=120", &kinfo), ctx);
  show("free: an address ptxq did not give", ptxq_free(ctx, x + 256), ctx);
  ptxq_dev huge = 0;
  show("device memory exhausted", ptxq_alloc(ctx, (size_t)1 << 50, &huge), ctx);
  show("GGUF load: no such file", ptxq_weights_from_gguf(ctx, "/nonexistent/model.gguf", NULL, NULL, NULL, NULL), ctx);
  show("GGUF load: truncated", ptxq_weights_from_gguf(ctx, truncated, NULL, NULL, NULL, NULL), ctx);
  char fixture[1024];
  snprintf(fixture, sizeof fixture, "%s/tiny-llama-q4km.gguf", PTXQ_FIXTURES_DIR);
  show("GGUF load: cancelled", ptxq_weights_from_gguf(ctx, fixture, NULL, cancel_at_once, NULL, NULL), ctx);

  ptxq__test_ptx_hook = corrupt_first_ret;
  show("JIT failure", ptxq_gemv_prepare(ctx, "w", 3), ctx);
  ptxq__test_ptx_hook = NULL;

  ptxq_graph *graph = NULL;
  show("capture_end without capture_begin", ptxq_capture_end(ctx, &graph), ctx);
  int32_t positions[1] = {5};
  ptxq_rope_params_init(&rope, PTXQ_ROPE_NEOX, 64, 4, 2);
  ptxq_gemv(ctx, "w", x, y, 1);
  ptxq_rope_prepare(ctx, 1, &rope);
  ptxq_capture_begin(ctx);
  show("capture: begin twice", ptxq_capture_begin(ctx), ctx);
  show("capture: ptxq_sync", ptxq_sync(ctx), ctx);
  show("capture: weight upload", ptxq_weight_upload(ctx, "w", PTXQ_TYPE_Q4_K, k, n, w, bytes), ctx);
  show("capture: kernel not built yet", ptxq_gemv(ctx, "w", x, y, 2), ctx);
  show("capture: rope with host positions", ptxq_rope_host_positions(ctx, x, y, positions, 1, &rope), ctx);
  show("capture: end (the refusals above did not spoil it)", ptxq_capture_end(ctx, &graph), ctx);
  ptxq_graph_destroy(ctx, graph);

  free(w);
  free(host);
  ptxq_close(ctx);
  unlink(truncated);
  unlink(bad_magic);
  return 0;
}
