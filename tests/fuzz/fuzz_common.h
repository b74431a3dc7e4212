/*
 * fuzz_common.h: what the libFuzzer harnesses (fuzz_*.c) share.
 *
 * The harnesses are built by clang, outside meson's gcc build, from the
 * library's own sources (see meson.build here), with two names redirected
 * on the command line: mmap/munmap become fuzz_mmap/fuzz_munmap, so that
 * the GGUF reader's view of a file is a malloc'ed copy of exactly the
 * file's bytes. A read one byte past the end of the file is then an
 * AddressSanitizer report instead of a silent read of the mapping's last
 * page.
 */
#ifndef PTXQ_FUZZ_COMMON_H
#define PTXQ_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* A broken contract (a status without a detail, a round trip that does not
 * come back, ...): prints what and aborts, which libFuzzer reports as a
 * crash with the input that caused it. */
#define fuzz_expect(cond, ...) \
  ((cond) ? (void)0 : fuzz_broken(__FILE__, __LINE__, #cond, __VA_ARGS__))
_Noreturn void fuzz_broken(const char *file, int line, const char *cond, const char *fmt, ...);

/* Reads the first and last of n bytes at p (nothing when n is 0), so that
 * AddressSanitizer checks that a pointer handed out covers what it says. */
void fuzz_touch(const void *p, uint64_t n);

/* Holds the bytes of one input as a file that ptxq_gguf_open can open by
 * path: a memfd, rewritten for each input. Returns the path (valid for the
 * life of the process), or NULL when the memfd cannot be made or written. */
const char *fuzz_input_file(const uint8_t *data, size_t size);

#endif
