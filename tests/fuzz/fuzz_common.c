/*
 * fuzz_common.c: the helpers of fuzz_common.h, and the malloc-backed
 * stand-ins for mmap/munmap that the harness builds compile src/gguf.c
 * against (-Dmmap=fuzz_mmap -Dmunmap=fuzz_munmap).
 */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <errno.h>
#include <sanitizer/common_interface_defs.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* The message goes where the sanitizers report: libFuzzer's
 * -close_fd_mask (fuzz_cli keeps the CLI's chatter out of the log with it)
 * closes stderr but keeps that channel. */
void fuzz_broken(const char *file, int line, const char *cond, const char *fmt, ...) {
  char message[1024];
  int len = snprintf(message, sizeof message, "%s:%d: contract broken: %s: ", file, line, cond);
  if (len > 0 && (size_t)len < sizeof message) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(message + len, sizeof message - (size_t)len, fmt, args);
    va_end(args);
  }
  __sanitizer_report_error_summary(message);
  abort();
}

void fuzz_touch(const void *p, uint64_t n) {
  if (n == 0) return;
  const volatile uint8_t *bytes = p;
  uint8_t sink = bytes[0];
  sink ^= bytes[n - 1];
  (void)sink;
}

const char *fuzz_input_file(const uint8_t *data, size_t size) {
  static int fd = -1;
  static char path[64];
  if (fd < 0) {
    fd = memfd_create("ptxq-fuzz-input", MFD_CLOEXEC);
    if (fd < 0) return NULL;
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  }
  if (ftruncate(fd, 0) != 0) return NULL;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(fd, data + done, size - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return NULL;
    done += (size_t)n;
  }
  return path;
}

/* mmap as gguf.c calls it (read-only, private, whole file): a heap copy of
 * exactly len bytes. Anything else is refused, so that a change in how the
 * reader maps files shows here rather than passing unchecked. */
void *fuzz_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t offset) {
  if (addr != NULL || prot != PROT_READ || (flags & MAP_PRIVATE) == 0 || offset != 0 || len == 0) {
    errno = EINVAL;
    return MAP_FAILED;
  }
  uint8_t *copy = malloc(len);
  if (copy == NULL) {
    errno = ENOMEM;
    return MAP_FAILED;
  }
  size_t done = 0;
  while (done < len) {
    ssize_t n = pread(fd, copy + done, len - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      free(copy);
      errno = EIO;
      return MAP_FAILED;
    }
    done += (size_t)n;
  }
  return copy;
}

int fuzz_munmap(void *addr, size_t len) {
  (void)len;
  free(addr);
  return 0;
}
