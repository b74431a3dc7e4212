/*
 * fuzz_key.c: libFuzzer harness of the kernel key parser and the generator
 * (ptxgen/spec.c, ptxgen_emit).
 *
 * An input is a key as text (the bytes up to the first NUL). When
 * ptxgen_spec_parse accepts it, the spec must validate, format to a
 * canonical key that parses back to the same spec and formats to the same
 * key again, format correctly into buffers too small for it, and emit PTX
 * (byte-identical from the original and the re-parsed spec) whose entry
 * name and launch geometry make sense. When it refuses, the message must be
 * there and fit whatever buffer it was given (down to none).
 *
 * An input starting with byte 0x01 is a raw ptxgen_spec instead (the bytes
 * after it, zero-padded): ptxgen_spec_validate sees field values no key
 * spells, and whatever it accepts must survive format and parse.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "ptxgen.h"

/* Keys longer than this are refused before parsing (the longest real key,
 * a rope key with every option, is under 200 bytes). */
#define MAX_KEY_BYTES 1024
#define RAW_SPEC_TAG 0x01

/* The PTX of a spec, checked; the caller frees it. */
static void emit_checked(const ptxgen_spec *spec, ptxgen_kernel *kernel, const char *key) {
  char msg[256] = "";
  int status = ptxgen_emit(spec, kernel, msg, sizeof msg);
  fuzz_expect(status == PTXGEN_OK, "emit of the valid key '%s' failed: %s", key, msg);
  fuzz_expect(kernel->ptx != NULL && kernel->ptx_len == strlen(kernel->ptx), "ptx_len of '%s'", key);
  fuzz_expect(memchr(kernel->entry, '\0', sizeof kernel->entry) != NULL && kernel->entry[0] != '\0',
              "entry name of '%s' is empty or unterminated", key);
  char entry_line[80];
  snprintf(entry_line, sizeof entry_line, ".entry %s(", kernel->entry);
  fuzz_expect(strstr(kernel->ptx, entry_line) != NULL, "the PTX of '%s' does not define %s", key,
              kernel->entry);
  const ptxgen_geometry *g = &kernel->geometry;
  uint64_t threads = (uint64_t)g->block[0] * g->block[1] * g->block[2];
  fuzz_expect(threads >= 1 && threads <= 1024 && g->grid[0] >= 1 && g->grid[1] >= 1 &&
                  g->grid[2] >= 1 && g->shared_bytes <= 227u * 1024,
              "geometry of '%s': grid %ux%ux%u block %ux%ux%u shared %u", key, g->grid[0],
              g->grid[1], g->grid[2], g->block[0], g->block[1], g->block[2], g->shared_bytes);
}

/* format(spec) into buffers of every interesting size: like snprintf, the
 * full length comes back and what fits is written, NUL-terminated. */
static void check_truncated_formats(const ptxgen_spec *spec, const char *key, size_t len) {
  size_t caps[] = {1, len / 2 + 1, len, len + 1};
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    char *buf = malloc(caps[c]); /* exactly caps[c]: an overrun is an ASan report */
    fuzz_expect(buf != NULL, "out of memory");
    int got = ptxgen_spec_format(spec, buf, caps[c]);
    fuzz_expect(got == (int)len, "format into %zu bytes returned %d, not %zu", caps[c], got, len);
    size_t kept = caps[c] - 1 < len ? caps[c] - 1 : len;
    fuzz_expect(strlen(buf) == kept && memcmp(buf, key, kept) == 0,
                "format into %zu bytes wrote '%s'", caps[c], buf);
    free(buf);
  }
  fuzz_expect(ptxgen_spec_format(spec, NULL, 0) == (int)len, "format(NULL, 0) of '%s'", key);
}

/* Everything a valid spec must satisfy. */
static void check_valid_spec(const ptxgen_spec *spec) {
  fuzz_expect(ptxgen_spec_validate(spec, NULL, 0) == PTXGEN_OK, "an accepted spec does not validate");
  char key[512];
  int len = ptxgen_spec_format(spec, key, sizeof key);
  fuzz_expect(len > 0 && (size_t)len < sizeof key, "format of a valid spec returned %d", len);
  ptxgen_spec again;
  char msg[256] = "";
  int status = ptxgen_spec_parse(key, &again, msg, sizeof msg);
  fuzz_expect(status == PTXGEN_OK, "the canonical key '%s' does not parse: %s", key, msg);
  fuzz_expect(memcmp(&again, spec, sizeof again) == 0, "parse(format(spec)) != spec for '%s'", key);
  char key_again[512];
  fuzz_expect(ptxgen_spec_format(&again, key_again, sizeof key_again) == len &&
                  strcmp(key, key_again) == 0,
              "the canonical key is not stable: '%s' then '%s'", key, key_again);
  check_truncated_formats(spec, key, (size_t)len);

  ptxgen_kernel first, second;
  emit_checked(spec, &first, key);
  emit_checked(&again, &second, key);
  fuzz_expect(first.ptx_len == second.ptx_len && memcmp(first.ptx, second.ptx, first.ptx_len) == 0 &&
                  strcmp(first.entry, second.entry) == 0 &&
                  memcmp(&first.geometry, &second.geometry, sizeof first.geometry) == 0,
              "two emits of '%s' differ", key);
  ptxgen_kernel_free(&first);
  ptxgen_kernel_free(&second);
  fuzz_expect(ptxgen_emit(spec, NULL, NULL, 0) == PTXGEN_ERR_SPEC, "emit into NULL");
}

static void fuzz_text_key(const char *key, size_t len) {
  ptxgen_spec spec;
  /* The message buffer's size varies with the input, down to none at all,
   * and is allocated exactly, so a message written past it is caught. */
  size_t cap = len % 9;
  char *msg = cap ? malloc(cap) : NULL;
  fuzz_expect(cap == 0 || msg != NULL, "out of memory");
  if (msg) msg[0] = 'X';
  int status = ptxgen_spec_parse(key, &spec, msg, cap);
  if (status == PTXGEN_OK) {
    check_valid_spec(&spec);
  } else {
    fuzz_expect(status == PTXGEN_ERR_SPEC, "parse returned %d", status);
    fuzz_expect(cap == 0 || strlen(msg) < cap, "the message overran its %zu bytes", cap);
    /* With room for it, the message says something. */
    char full[256] = "";
    fuzz_expect(ptxgen_spec_parse(key, &spec, full, sizeof full) == status && full[0] != '\0',
                "'%s' refused without a message", key);
  }
  free(msg);
}

static void fuzz_raw_spec(const uint8_t *data, size_t size) {
  ptxgen_spec spec;
  memset(&spec, 0, sizeof spec);
  memcpy(&spec, data, size < sizeof spec ? size : sizeof spec);
  char msg[256] = "";
  if (ptxgen_spec_validate(&spec, msg, sizeof msg) == PTXGEN_OK) {
    check_valid_spec(&spec);
  } else {
    fuzz_expect(msg[0] != '\0', "an invalid spec without a message");
    char key[512];
    fuzz_expect(ptxgen_spec_format(&spec, key, sizeof key) == PTXGEN_ERR_SPEC,
                "format accepted a spec validate refuses (%s)", msg);
    ptxgen_kernel kernel;
    fuzz_expect(ptxgen_emit(&spec, &kernel, NULL, 0) == PTXGEN_ERR_SPEC,
                "emit accepted a spec validate refuses (%s)", msg);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_KEY_BYTES) return -1;
  if (size > 0 && data[0] == RAW_SPEC_TAG) {
    fuzz_raw_spec(data + 1, size - 1);
    return 0;
  }
  char key[MAX_KEY_BYTES + 1];
  memcpy(key, data, size);
  key[size] = '\0';
  fuzz_text_key(key, strlen(key));
  return 0;
}
