/*
 * cli_check.c: `ptxgen check`, assemble kernels and report their resources.
 *
 * Each key's PTX goes through ptxas when one can be found (it reports spills
 * and stack separately and needs no GPU), else, or with --driver, through
 * the driver's JIT via the runtime (ptxq_kernel_get), which is what a user
 * of libptxq will really run. A failure prints the assembler's log and the
 * PTX lines it complains about, so the generator bug is visible at once.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "ptxas.h"
#include "ptxq.h"

static const char check_usage[] =
    "usage: ptxgen check [--ptxas PATH] [--driver] KEY...\n"
    "\n"
    "Assembles the PTX of each KEY for the key's target and prints one line per key.\n"
    "With ptxas (--ptxas PATH, else the first found in $PATH, $CUDA_HOME/bin,\n"
    "$CUDA_PATH/bin, /usr/local/cuda/bin):\n"
    "  KEY  entry=NAME registers=N spill_stores=N spill_loads=N stack=N shared_static=N\n"
    "       shared_dynamic=N grid=X,Y,Z block=X,Y,Z via=ptxas\n"
    "Through the driver's JIT (no ptxas found, or --driver; needs a GPU at least as new\n"
    "as the key's target):\n"
    "  KEY  entry=NAME registers=N spill_bytes=N shared_static=N shared_dynamic=N\n"
    "       grid=X,Y,Z block=X,Y,Z jit_ms=T via=driver\n"
    "A key that fails prints `KEY  FAILED via=...` and, on stderr, the assembler's log\n"
    "and the PTX lines it names; the other keys are still checked.\n"
    "Exit status: 0 all assembled, 1 any failed or nothing to assemble with, 2 usage.\n";

/* At most this many PTX lines are quoted for one failure. */
#define MAX_QUOTED_LINES 8

/* Quotes the PTX lines a log names ("..., line 57; error : ..."), each once,
 * in the order the log first names them. */
static void quote_named_lines(const char *log, const char *ptx) {
  unsigned long quoted[MAX_QUOTED_LINES];
  int count = 0;
  for (const char *p = log; count < MAX_QUOTED_LINES && (p = strstr(p, "line ")) != NULL;) {
    p += strlen("line ");
    char *end;
    unsigned long number = strtoul(p, &end, 10);
    if (end == p || number == 0) continue;
    p = end;
    int seen = 0;
    for (int i = 0; i < count; i++) seen |= quoted[i] == number;
    if (seen) continue;
    quoted[count++] = number;
    const char *line = ptx;
    for (unsigned long n = 1; n < number && line; n++) {
      line = strchr(line, '\n');
      if (line) line++;
    }
    if (!line || !*line) {
      fprintf(stderr, "  PTX line %lu: (past the end of the PTX)\n", number);
      continue;
    }
    const char *eol = strchr(line, '\n');
    int len = (int)(eol ? eol - line : (long)strlen(line));
    fprintf(stderr, "  PTX line %lu: %.*s\n", number, len, line);
  }
}

static void report_failure(const char *key, const char *via, const char *why, const char *log,
                           const char *ptx) {
  printf("%s  FAILED via=%s\n", key, via);
  fflush(stdout);
  fprintf(stderr, "ptxgen: check %s failed via %s: %s\n", key, via, why);
  if (log && *log) {
    fputs(log, stderr);
    if (log[strlen(log) - 1] != '\n') fputc('\n', stderr);
  }
  if (log && ptx) quote_named_lines(log, ptx);
}

static void print_geometry(const uint32_t grid[3], const uint32_t block[3], uint32_t cluster) {
  printf("grid=%u,%u,%u block=%u,%u,%u", grid[0], grid[1], grid[2], block[0], block[1], block[2]);
  if (cluster > 1) printf(" cluster=%u", cluster); /* blocks per cluster (.reqnctapercluster) */
}

/* Returns 0 if the key assembled, 1 if it failed. */
static int check_with_ptxas(const char *ptxas, const char *key, const ptxgen_spec *spec,
                            const ptxgen_kernel *kernel) {
  ptxas_report report;
  char msg[512] = "";
  if (ptxas_assemble(ptxas, kernel->ptx, kernel->ptx_len, spec->sm, &report, msg, sizeof msg) !=
      0) {
    report_failure(key, "ptxas", msg, NULL, NULL);
    return 1;
  }
  int failed = 1;
  if (report.exit_status != 0) {
    snprintf(msg, sizeof msg, "%s exited with status %d", ptxas, report.exit_status);
    report_failure(key, "ptxas", msg, report.log, kernel->ptx);
  } else if (strcmp(report.entry, kernel->entry) != 0) {
    /* A launcher would ask the module for kernel->entry and not find it. */
    snprintf(msg, sizeof msg, "ptxgen_emit names entry '%s' but ptxas compiled '%s'",
             kernel->entry, report.entry[0] ? report.entry : "(none)");
    report_failure(key, "ptxas", msg, report.log, NULL);
  } else {
    printf("%s  entry=%s registers=%d spill_stores=%d spill_loads=%d stack=%d shared_static=%d "
           "shared_dynamic=%u ",
           key, kernel->entry, report.registers, report.spill_stores, report.spill_loads,
           report.stack_bytes, report.shared_bytes, kernel->geometry.shared_bytes);
    print_geometry(kernel->geometry.grid, kernel->geometry.block, kernel->geometry.cluster);
    printf(" via=ptxas\n");
    failed = 0;
  }
  ptxas_report_free(&report);
  return failed;
}

/* One driver context per target the keys name (ptxq_open's target_sm). */
typedef struct driver_contexts {
  uint32_t sm[8];
  ptxq_ctx *ctx[8];
  int count;
} driver_contexts;

/* Returns 0 if the key was built by the JIT, 1 if it failed, -1 when there
 * is no driver at all (nothing more can be checked). */
static int check_with_driver(driver_contexts *contexts, const char *key,
                             const ptxgen_spec *spec, const ptxgen_kernel *kernel) {
  ptxq_ctx *ctx = NULL;
  for (int i = 0; i < contexts->count; i++)
    if (contexts->sm[i] == spec->sm) ctx = contexts->ctx[i];
  if (!ctx) {
    ptxq_options options = {.device = 0, .target_sm = spec->sm};
    int status = ptxq_open(&ctx, &options);
    if (status == PTXQ_ERR_NO_DEVICE) return -1;
    if (status != PTXQ_OK) {
      char msg[640];
      snprintf(msg, sizeof msg, "ptxq_open(target_sm=%u): %s: %s", spec->sm,
               ptxq_strerror(status), ptxq_last_error(NULL));
      report_failure(key, "driver", msg, NULL, NULL);
      return 1;
    }
    if (contexts->count < (int)(sizeof contexts->sm / sizeof contexts->sm[0])) {
      contexts->sm[contexts->count] = spec->sm;
      contexts->ctx[contexts->count++] = ctx;
    }
  }
  ptxq_kernel_info info;
  int status = ptxq_kernel_get(ctx, key, &info);
  int failed = 0;
  if (status != PTXQ_OK) {
    report_failure(key, "driver", ptxq_strerror(status), ptxq_last_error(ctx), kernel->ptx);
    failed = 1;
  } else {
    printf("%s  entry=%s registers=%d spill_bytes=%d shared_static=%d shared_dynamic=%u ", key,
           info.entry, info.registers, info.spill_bytes, info.static_shared_bytes,
           info.shared_bytes);
    print_geometry(info.grid, info.block, kernel->geometry.cluster);
    printf(" jit_ms=%.1f via=driver\n", info.jit_ms);
  }
  /* A context the table had no room for is not kept. */
  int kept = 0;
  for (int i = 0; i < contexts->count; i++) kept |= contexts->ctx[i] == ctx;
  if (!kept) ptxq_close(ctx);
  return failed;
}

static void close_contexts(driver_contexts *contexts) {
  for (int i = 0; i < contexts->count; i++) ptxq_close(contexts->ctx[i]);
  contexts->count = 0;
}

int cli_check(int argc, char **argv) {
  const char *ptxas_option = NULL;
  int use_driver = 0;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(check_usage, stdout);
      return CLI_EXIT_OK;
    }
  }
  /* Keys are checked up front: a typo in the fifth key should not wait for
   * four assemblies before it is reported. */
  ptxgen_spec *specs = calloc((size_t)argc, sizeof *specs);
  if (!specs) {
    fprintf(stderr, "ptxgen: out of memory\n");
    return CLI_EXIT_FAILURE;
  }
  int key_count = 0;
  for (int i = 1; i < argc; i++) {
    int got = cli_option_value(argc, argv, &i, "--ptxas", &ptxas_option);
    if (got < 0) {
      free(specs);
      return CLI_EXIT_USAGE;
    }
    if (got > 0) continue;
    if (strcmp(argv[i], "--driver") == 0) {
      use_driver = 1;
      continue;
    }
    if (argv[i][0] == '-') {
      free(specs);
      return cli_bad_argument("check", argv[i]);
    }
    if (cli_parse_key(argv[i], &specs[key_count]) != CLI_EXIT_OK) {
      free(specs);
      return CLI_EXIT_USAGE;
    }
    key_count++;
  }
  if (key_count == 0) {
    free(specs);
    fprintf(stderr, "ptxgen: check: missing KEY\n%s", check_usage);
    return CLI_EXIT_USAGE;
  }

  char ptxas[4096] = "";
  if (!use_driver) {
    if (ptxas_option) {
      if (access(ptxas_option, X_OK) != 0) {
        fprintf(stderr, "ptxgen: check: --ptxas %s: not an executable file\n", ptxas_option);
        free(specs);
        return CLI_EXIT_FAILURE;
      }
      snprintf(ptxas, sizeof ptxas, "%s", ptxas_option);
    } else if (ptxas_find(ptxas, sizeof ptxas) != 0) {
      ptxas[0] = '\0';
    }
  }

  int failures = 0, status = CLI_EXIT_OK;
  driver_contexts contexts = {.count = 0};
  for (int i = 0; i < key_count; i++) {
    char key[256];
    cli_format_key(&specs[i], key, sizeof key);
    ptxgen_kernel kernel;
    char msg[256] = "";
    if (ptxgen_emit(&specs[i], &kernel, msg, sizeof msg) != PTXGEN_OK) {
      report_failure(key, ptxas[0] ? "ptxas" : "driver", msg, NULL, NULL);
      failures++;
      continue;
    }
    int result = ptxas[0] ? check_with_ptxas(ptxas, key, &specs[i], &kernel)
                          : check_with_driver(&contexts, key, &specs[i], &kernel);
    ptxgen_kernel_free(&kernel);
    if (result < 0) {
      if (use_driver)
        fprintf(stderr, "ptxgen: check --driver: no GPU driver: %s\n", ptxq_last_error(NULL));
      else
        fprintf(stderr,
                "ptxgen: check: no ptxas (looked in $PATH, $CUDA_HOME/bin, $CUDA_PATH/bin, "
                "/usr/local/cuda/bin; give one with --ptxas PATH) and no GPU driver: %s\n",
                ptxq_last_error(NULL));
      status = CLI_EXIT_FAILURE;
      break;
    }
    failures += result;
  }
  close_contexts(&contexts);
  free(specs);
  if (failures > 0) {
    fprintf(stderr, "ptxgen: check: %d of %d keys failed\n", failures, key_count);
    status = CLI_EXIT_FAILURE;
  }
  return status;
}
