/*
 * main.c: the `ptxgen` command-line tool, for debugging kernel generation.
 *
 *   ptxgen list                 kinds, an example key of each, their parameters
 *   ptxgen emit KEY [-o FILE]   the PTX of a key
 *   ptxgen check ...            assemble keys, report resources (cli_check.c)
 *   ptxgen run ...              run a key on the GPU against the CPU reference (cli_run.c)
 *   ptxgen gguf FILE            what a GGUF file holds (cli_gguf.c)
 *
 * This file holds the dispatch, the two commands that need only the
 * generator, and the argument helpers the commands share (cli.h).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static const char tool_usage[] =
    "usage: ptxgen COMMAND [ARGS]\n"
    "\n"
    "Generates, assembles and runs the PTX kernels of ptxq.\n"
    "\n"
    "commands:\n"
    "  list                      one line per kernel kind: name, example key, parameters\n"
    "  emit KEY [-o FILE]        print the PTX of KEY\n"
    "  check [--ptxas PATH] [--driver] KEY...\n"
    "                            assemble each KEY, report registers, spills, shared memory\n"
    "  run KEY [--seed N] [--cpu] [--reps N]\n"
    "                            run KEY on the GPU, compare with the CPU reference, time it\n"
    "  run [KEY] --gguf FILE --tensor NAME [--x FILE] [--out FILE] [--m N] [--cpu]\n"
    "                            a GEMV on a tensor of a GGUF file, y one value per line\n"
    "  gguf FILE                 print a GGUF file's metadata and tensor table\n"
    "\n"
    "A KEY names a kernel, e.g. q4k_gemv:k=4096,n=14336,m=1,sm=90 (see `ptxgen list`).\n"
    "`ptxgen COMMAND --help` describes a command.\n"
    "Exit status: 0 ok, 1 failure, 2 bad command, option or key.\n";

static const char list_usage[] =
    "usage: ptxgen list\n"
    "\n"
    "Prints one line per kernel kind: `<name> <example_key> <parameters>`.\n";

static const char emit_usage[] =
    "usage: ptxgen emit KEY [-o FILE]\n"
    "\n"
    "Prints the PTX generated for KEY (byte-identical on every run),\n"
    "or writes it to FILE.\n";

int cli_is_help(const char *arg) {
  return strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0;
}

int cli_parse_key(const char *key, ptxgen_spec *spec) {
  char msg[256] = "";
  if (ptxgen_spec_parse(key, spec, msg, sizeof msg) != PTXGEN_OK) {
    fprintf(stderr, "ptxgen: bad key '%s': %s\n", key, msg[0] ? msg : "invalid key");
    return CLI_EXIT_USAGE;
  }
  return CLI_EXIT_OK;
}

void cli_format_key(const ptxgen_spec *spec, char *buf, size_t cap) {
  int len = ptxgen_spec_format(spec, buf, cap);
  if (len < 0 || (size_t)len >= cap) snprintf(buf, cap, "(unformattable key)");
}

int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value) {
  const char *arg = argv[*i];
  size_t name_len = strlen(name);
  if (strncmp(arg, name, name_len) != 0) return 0;
  if (arg[name_len] == '=') {
    *value = arg + name_len + 1;
    return 1;
  }
  if (arg[name_len] != '\0') return 0;
  if (*i + 1 >= argc) {
    fprintf(stderr, "ptxgen: option %s needs a value\n", name);
    return -1;
  }
  *i += 1;
  *value = argv[*i];
  return 1;
}

int cli_parse_u64(const char *name, const char *text, uint64_t min, uint64_t max,
                  uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long value = strtoull(text, &end, 10);
  if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno == ERANGE || value < min ||
      value > max) {
    fprintf(stderr, "ptxgen: %s '%s': want a whole number in %" PRIu64 "..%" PRIu64 "\n", name,
            text, min, max);
    return -1;
  }
  *out = value;
  return 0;
}

int cli_bad_argument(const char *command, const char *arg) {
  if (arg[0] == '-')
    fprintf(stderr, "ptxgen: %s: unknown option '%s'\n", command, arg);
  else
    fprintf(stderr, "ptxgen: %s: unexpected argument '%s'\n", command, arg);
  fprintf(stderr, "(see `ptxgen %s --help`)\n", command);
  return CLI_EXIT_USAGE;
}

static int cmd_list(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(list_usage, stdout);
      return CLI_EXIT_OK;
    }
  }
  if (argc > 1) return cli_bad_argument("list", argv[1]);
  size_t count = 0;
  const ptxgen_kind_info *kinds = ptxgen_kinds(&count);
  for (size_t i = 0; i < count; i++)
    printf("%s %s %s\n", kinds[i].name, kinds[i].example_key, kinds[i].params);
  return CLI_EXIT_OK;
}

static int write_file(const char *path, const char *text, size_t len) {
  FILE *file = fopen(path, "wb");
  if (!file) {
    fprintf(stderr, "ptxgen: cannot open %s: %s\n", path, strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  int ok = fwrite(text, 1, len, file) == len;
  ok = (fclose(file) == 0) && ok;
  if (!ok) {
    fprintf(stderr, "ptxgen: cannot write %s: %s\n", path, strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}

static int cmd_emit(int argc, char **argv) {
  const char *key = NULL, *out_path = NULL;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(emit_usage, stdout);
      return CLI_EXIT_OK;
    }
  }
  for (int i = 1; i < argc; i++) {
    int got = cli_option_value(argc, argv, &i, "-o", &out_path);
    if (got < 0) return CLI_EXIT_USAGE;
    if (got > 0) continue;
    if (argv[i][0] == '-' || key) return cli_bad_argument("emit", argv[i]);
    key = argv[i];
  }
  if (!key) {
    fprintf(stderr, "ptxgen: emit: missing KEY\n%s", emit_usage);
    return CLI_EXIT_USAGE;
  }
  ptxgen_spec spec;
  if (cli_parse_key(key, &spec) != CLI_EXIT_OK) return CLI_EXIT_USAGE;
  ptxgen_kernel kernel;
  char msg[256] = "";
  if (ptxgen_emit(&spec, &kernel, msg, sizeof msg) != PTXGEN_OK) {
    fprintf(stderr, "ptxgen: emit '%s' failed: %s\n", key, msg);
    return CLI_EXIT_FAILURE;
  }
  int status = CLI_EXIT_OK;
  if (out_path) {
    status = write_file(out_path, kernel.ptx, kernel.ptx_len);
  } else if (fwrite(kernel.ptx, 1, kernel.ptx_len, stdout) != kernel.ptx_len ||
             fflush(stdout) != 0) {
    fprintf(stderr, "ptxgen: cannot write the PTX to stdout: %s\n", strerror(errno));
    status = CLI_EXIT_FAILURE;
  }
  ptxgen_kernel_free(&kernel);
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fputs(tool_usage, stderr);
    return CLI_EXIT_USAGE;
  }
  const char *command = argv[1];
  if (cli_is_help(command) || strcmp(command, "help") == 0) {
    fputs(tool_usage, stdout);
    return CLI_EXIT_OK;
  }
  static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
  } commands[] = {
      {"list", cmd_list}, {"emit", cmd_emit}, {"check", cli_check}, {"run", cli_run},
      {"gguf", cli_gguf}};
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (strcmp(command, commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr,
          "ptxgen: unknown command '%s' (commands: list, emit, check, run, gguf; see ptxgen --help)\n",
          command);
  return CLI_EXIT_USAGE;
}
