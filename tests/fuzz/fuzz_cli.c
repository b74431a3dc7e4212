/*
 * fuzz_cli.c: libFuzzer harness of the `ptxgen` command line (argument
 * parsing and what each command does with its arguments).
 *
 * The CLI is built in: meson.build here compiles ptxgen/main.c with
 * -Dmain=ptxgen_cli_main (ptxgen/ keeps no state between calls and never
 * calls exit). An input is an argument list: the bytes split at each NUL
 * or newline, argv[0] "ptxgen" put in front.
 *
 * The harness keeps each run fast, local and GPU-free:
 *  - PTXQ_LIBCUDA names a library that does not exist, so every command
 *    that needs the driver fails as on a machine without one (also on a
 *    machine with a GPU), and must fail cleanly: `run` without --cpu and
 *    `check` never exit 0 (help aside);
 *  - posix_spawn is redirected (-Dposix_spawn=fuzz_posix_spawn) to a stub
 *    that fails, so `check` never starts ptxas;
 *  - each run happens in an empty scratch folder, emptied again afterwards,
 *    and arguments holding a '/' are refused, so files named by -o, --out
 *    or --x are only ever the scratch folder's. The files an input may
 *    read are in $PTXQ_FUZZ_FILES (run.sh puts the shared fixture there as
 *    fixture.gguf, the GGUF seeds, and x files of 512, 1024 and 1536 fp32
 *    values as x-512.f32, ...): "@NAME" (also at the end of an
 *    argument, as in "--gguf=@NAME") is replaced by that folder's NAME
 *    when it has one, except as the value of -o or --out (those would
 *    overwrite it);
 *  - an argument that is a valid key for more than WORK_CAP multiply-adds
 *    (or values) is refused, so that `run KEY --cpu` stays in milliseconds
 *    (unless --gguf is there too: then the tensor sets the work, and a key
 *    must match it).
 * Refused inputs return -1 (libFuzzer keeps them out of the corpus).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "ptxgen.h"

#define MAX_INPUT_BYTES 4096
#define MAX_ARGS 32
#define WORK_CAP (1u << 18)

int ptxgen_cli_main(int argc, char **argv);

int fuzz_posix_spawn(pid_t *restrict pid, const char *restrict path,
                     const posix_spawn_file_actions_t *file_actions,
                     const posix_spawnattr_t *restrict attr, char *const argv[restrict],
                     char *const envp[restrict]);

int fuzz_posix_spawn(pid_t *restrict pid, const char *restrict path,
                     const posix_spawn_file_actions_t *file_actions,
                     const posix_spawnattr_t *restrict attr, char *const argv[restrict],
                     char *const envp[restrict]) {
  (void)pid, (void)path, (void)file_actions, (void)attr, (void)argv, (void)envp;
  return ENOENT;
}

static char scratch[4096];
static int home_fd = -1;
static const char *files_dir;

static void empty_scratch(void) {
  DIR *dir = opendir(scratch);
  if (dir == NULL) return;
  struct dirent *entry;
  while ((entry = readdir(dir)) != NULL) {
    if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0) continue;
    unlinkat(dirfd(dir), entry->d_name, 0);
  }
  closedir(dir);
}

static void remove_scratch(void) {
  empty_scratch();
  rmdir(scratch);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc, (void)argv;
  setenv("PTXQ_LIBCUDA", "/nonexistent/ptxq-fuzz/libcuda.so.1", 1);
  const char *tmp = getenv("TMPDIR");
  snprintf(scratch, sizeof scratch, "%s/ptxq-fuzz-cli-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  fuzz_expect(mkdtemp(scratch) != NULL, "mkdtemp %s: %s", scratch, strerror(errno));
  setenv("TMPDIR", scratch, 1); /* where ptxas_assemble makes its files */
  home_fd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  fuzz_expect(home_fd >= 0, "cannot open the working folder: %s", strerror(errno));
  files_dir = getenv("PTXQ_FUZZ_FILES");
  if (files_dir != NULL && files_dir[0] == '\0') files_dir = NULL;
  atexit(remove_scratch);
  return 0;
}

/* Multiply-adds (or values) a `run KEY --cpu` of this key costs. */
static uint64_t key_work(const ptxgen_spec *s) {
  switch (s->kind) {
  case PTXGEN_KIND_Q4K_GEMV:
  case PTXGEN_KIND_Q6K_GEMV: return (uint64_t)s->k * s->n * s->m;
  case PTXGEN_KIND_ROPE: return (uint64_t)s->m * (s->heads + s->kv_heads) * s->head_dim;
  default: return (uint64_t)s->n * s->m;
  }
}

static int too_much_work(const char *arg) {
  ptxgen_spec spec;
  return ptxgen_spec_parse(arg, &spec, NULL, 0) == PTXGEN_OK && key_work(&spec) > WORK_CAP;
}

static int is_gguf_option(const char *arg) {
  return strcmp(arg, "--gguf") == 0 || strncmp(arg, "--gguf=", 7) == 0;
}

/* arg with its "@NAME" tail replaced by the path of NAME in files_dir,
 * in buf; arg itself when there is no such file. */
static char *with_file(char *arg, char *buf, size_t cap) {
  const char *at = strrchr(arg, '@');
  if (files_dir == NULL || at == NULL || at[1] == '\0') return arg;
  int n = snprintf(buf, cap, "%.*s%s/%s", (int)(at - arg), arg, files_dir, at + 1);
  if (n <= 0 || (size_t)n >= cap) return arg;
  return access(buf + (at - arg), R_OK) == 0 ? buf : arg;
}

/* Whether arg is, or is the value of, an option that names a file to
 * write (-o FILE, --out FILE, and their -o=FILE forms). */
static int names_output(const char *previous, const char *arg) {
  return strcmp(previous, "-o") == 0 || strcmp(previous, "--out") == 0 ||
         strncmp(arg, "-o=", 3) == 0 || strncmp(arg, "--out=", 6) == 0;
}

static int is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0 || strcmp(arg, "help") == 0;
}

/* Commands that need the driver cannot succeed here. */
static int needs_gpu(int argc, char **argv) {
  if (argc < 2) return 0;
  int run = strcmp(argv[1], "run") == 0, check = strcmp(argv[1], "check") == 0;
  if (!run && !check) return 0;
  for (int i = 2; i < argc; i++)
    if (is_help(argv[i]) || (run && strcmp(argv[i], "--cpu") == 0)) return 0;
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > MAX_INPUT_BYTES) return -1;
  char text[MAX_INPUT_BYTES + 1];
  memcpy(text, data, size);
  text[size] = '\0';
  char *argv[MAX_ARGS + 2] = {"ptxgen"};
  char file_args[MAX_ARGS][4096];
  int argc = 1;
  size_t start = 0;
  /* A separator at the very end ends the last argument; it does not start
   * an empty one. */
  for (size_t i = 0; i <= size && start < size; i++) {
    if (i < size && text[i] != '\n' && text[i] != '\0') continue;
    if (argc == MAX_ARGS + 1) return -1;
    text[i] = '\0';
    if (strchr(text + start, '/') != NULL) return -1;
    argv[argc] = with_file(text + start, file_args[argc - 1], sizeof file_args[0]);
    if (argv[argc] != text + start && names_output(argv[argc - 1], text + start)) return -1;
    argc++;
    start = i + 1;
  }
  argv[argc] = NULL;
  int gguf_run = 0;
  for (int i = 1; i < argc; i++) gguf_run |= is_gguf_option(argv[i]);
  for (int i = 1; i < argc && !gguf_run; i++)
    if (too_much_work(argv[i])) return -1;

  fuzz_expect(chdir(scratch) == 0, "chdir %s: %s", scratch, strerror(errno));
  int status = ptxgen_cli_main(argc, argv);
  fflush(stdout);
  fflush(stderr);
  fuzz_expect(fchdir(home_fd) == 0, "fchdir back: %s", strerror(errno));
  empty_scratch();

  fuzz_expect(status == 0 || status == 1 || status == 2, "exit status %d", status);
  fuzz_expect(!(status == 0 && needs_gpu(argc, argv)), "'%s %s' succeeded without a GPU",
              argv[1], argc > 2 ? argv[2] : "");
  return 0;
}
