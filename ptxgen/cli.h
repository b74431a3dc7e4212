/*
 * cli.h: what the files of the `ptxgen` command-line tool share.
 *
 * main.c dispatches to one function per command; each takes the command's
 * own arguments (argv[0] is the command name) and returns the exit status.
 * Data goes to stdout, messages to stderr, every message starting "ptxgen: ".
 */
#ifndef PTXGEN_CLI_H
#define PTXGEN_CLI_H

#include <stddef.h>
#include <stdint.h>

#include "ptxgen.h"

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILURE = 1, /* the work failed: assembly, a wrong result, no device */
  CLI_EXIT_USAGE = 2,   /* bad command, option or key */
};

int cli_check(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_gguf(int argc, char **argv);

/* Parses a key; on error prints "ptxgen: bad key '<key>': <why>" and
 * returns CLI_EXIT_USAGE. */
int cli_parse_key(const char *key, ptxgen_spec *spec);

/* Canonical key of a valid spec (ptxgen_spec_format into buf). */
void cli_format_key(const ptxgen_spec *spec, char *buf, size_t cap);

int cli_is_help(const char *arg);

/* Option scanning shared by the commands. If argv[*i] is `name VALUE` or
 * `name=VALUE`, stores VALUE, advances *i past it and returns 1; returns 0
 * if argv[*i] is another argument; on `name` without a value prints a usage
 * message and returns -1. */
int cli_option_value(int argc, char **argv, int *i, const char *name, const char **value);

/* Parses a decimal unsigned value in [min, max] for option name; prints a
 * usage message and returns -1 if it is not one. */
int cli_parse_u64(const char *name, const char *text, uint64_t min, uint64_t max,
                  uint64_t *out);

/* Prints "ptxgen: <command>: unknown option '<arg>'" (or "unexpected
 * argument") and a pointer to --help; returns CLI_EXIT_USAGE. */
int cli_bad_argument(const char *command, const char *arg);

#endif
