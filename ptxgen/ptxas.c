/*
 * ptxas.c: find ptxas, run it on PTX text, parse its `-v` report.
 *
 * ptxas is started with posix_spawn (no shell, so no quoting of paths) on a
 * mkstemp copy of the PTX; its stdout and stderr share one pipe so the log
 * keeps ptxas's own order. See ptxas.h for the contract.
 */
#define _GNU_SOURCE
#include "ptxas.h"

#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* A log longer than this is cut: ptxas on one kernel writes a few hundred
 * bytes, or one line per error. */
#define LOG_LIMIT (4u << 20)

static int is_executable_file(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* Writes dir + "/ptxas" into path if that is an executable file. */
static int try_dir(const char *dir, size_t dir_len, char *path, size_t cap) {
  if (dir_len == 0) return -1;
  int len = snprintf(path, cap, "%.*s/ptxas", (int)dir_len, dir);
  if (len < 0 || (size_t)len >= cap) return -1;
  return is_executable_file(path) ? 0 : -1;
}

int ptxas_find(char *path, size_t cap) {
  const char *search = getenv("PATH");
  while (search && *search) {
    const char *colon = strchr(search, ':');
    size_t len = colon ? (size_t)(colon - search) : strlen(search);
    if (try_dir(search, len, path, cap) == 0) return 0;
    search = colon ? colon + 1 : NULL;
  }
  const char *roots[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
  for (size_t i = 0; i < sizeof roots / sizeof roots[0]; i++) {
    if (!roots[i] || !*roots[i]) continue;
    char dir[4096];
    int len = snprintf(dir, sizeof dir, "%s/bin", roots[i]);
    if (len > 0 && (size_t)len < sizeof dir && try_dir(dir, (size_t)len, path, cap) == 0)
      return 0;
  }
#ifdef PTXAS_PATH
  /* Where the build found ptxas, for a caller whose environment lacks it. */
  if (PTXAS_PATH[0] && is_executable_file(PTXAS_PATH) &&
      snprintf(path, cap, "%s", PTXAS_PATH) < (int)cap)
    return 0;
#endif
  if (cap > 0) path[0] = '\0';
  return -1;
}

/* A temporary file name under $TMPDIR (or /tmp), created empty; fd open. */
static int make_temp(char *name, size_t cap, const char *suffix) {
  const char *dir = getenv("TMPDIR");
  if (!dir || !*dir) dir = "/tmp";
  int len = snprintf(name, cap, "%s/ptxgen-XXXXXX%s", dir, suffix);
  if (len < 0 || (size_t)len >= cap) {
    errno = ENAMETOOLONG;
    return -1;
  }
  return mkstemps(name, (int)strlen(suffix));
}

static int write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, data, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    data += n;
    len -= (size_t)n;
  }
  return 0;
}

/* Reads fd to its end into a NUL-terminated string (at most LOG_LIMIT bytes
 * kept; the rest is read and dropped so the child never blocks). */
static char *read_all(int fd) {
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap);
  if (!buf) return NULL;
  for (;;) {
    if (len + 1 == cap && cap < LOG_LIMIT) {
      char *bigger = realloc(buf, cap * 2);
      if (!bigger) {
        free(buf);
        return NULL;
      }
      buf = bigger;
      cap *= 2;
    }
    char sink[4096];
    int full = len + 1 == cap;
    ssize_t n = full ? read(fd, sink, sizeof sink) : read(fd, buf + len, cap - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (!full) len += (size_t)n;
  }
  buf[len] = '\0';
  return buf;
}

/* The number written just before `tail` in line ("1024 bytes smem"), or -1. */
static int number_before(const char *line, const char *tail) {
  const char *at = strstr(line, tail);
  if (!at) return -1;
  const char *p = at;
  while (p > line && p[-1] == ' ') p--;
  const char *end = p;
  while (p > line && p[-1] >= '0' && p[-1] <= '9') p--;
  if (p == end) return -1;
  return atoi(p);
}

static void keep_max(int *figure, int value) {
  if (value > *figure) *figure = value;
}

void ptxas_parse_log(const char *log, ptxas_report *report) {
  report->entry[0] = '\0';
  report->registers = report->spill_stores = report->spill_loads = 0;
  report->stack_bytes = report->shared_bytes = 0;
  for (const char *line = log; line && *line;) {
    const char *eol = strchr(line, '\n');
    size_t len = eol ? (size_t)(eol - line) : strlen(line);
    char text[1024];
    snprintf(text, sizeof text, "%.*s", (int)(len < sizeof text ? len : sizeof text - 1), line);

    const char *entry = strstr(text, "Compiling entry function '");
    if (entry && !report->entry[0]) {
      entry += strlen("Compiling entry function '");
      const char *quote = strchr(entry, '\'');
      if (quote)
        snprintf(report->entry, sizeof report->entry, "%.*s", (int)(quote - entry), entry);
    }
    int stack, stores, loads;
    if (sscanf(text, " %d bytes stack frame, %d bytes spill stores, %d bytes spill loads",
               &stack, &stores, &loads) == 3) {
      keep_max(&report->stack_bytes, stack);
      keep_max(&report->spill_stores, stores);
      keep_max(&report->spill_loads, loads);
    }
    if (strstr(text, "Used ")) {
      keep_max(&report->registers, number_before(text, "registers"));
      keep_max(&report->shared_bytes, number_before(text, "bytes smem"));
    }
    line = eol ? eol + 1 : NULL;
  }
}

int ptxas_assemble(const char *ptxas_path, const char *ptx, size_t ptx_len, uint32_t sm,
                   ptxas_report *report, char *msg, size_t msg_cap) {
  memset(report, 0, sizeof *report);
  char in_name[4096], out_name[4096];
  int in_fd = make_temp(in_name, sizeof in_name, ".ptx");
  if (in_fd < 0) {
    snprintf(msg, msg_cap, "cannot create a temporary file: %s", strerror(errno));
    return -1;
  }
  int out_fd = make_temp(out_name, sizeof out_name, ".cubin");
  if (out_fd < 0) {
    snprintf(msg, msg_cap, "cannot create a temporary file: %s", strerror(errno));
    close(in_fd);
    unlink(in_name);
    return -1;
  }
  close(out_fd);
  int status = -1;
  char *log = NULL;
  if (write_all(in_fd, ptx, ptx_len) != 0) {
    snprintf(msg, msg_cap, "cannot write %s: %s", in_name, strerror(errno));
    close(in_fd);
    goto done;
  }
  close(in_fd);

  char arch[32];
  snprintf(arch, sizeof arch, "-arch=sm_%u", sm);
  char *argv[] = {(char *)ptxas_path, arch, "-v", "-o", out_name, in_name, NULL};
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) {
    snprintf(msg, msg_cap, "pipe: %s", strerror(errno));
    goto done;
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[0]);
  posix_spawn_file_actions_addclose(&actions, pipe_fds[1]);
  pid_t pid;
  int spawn_error = posix_spawn(&pid, ptxas_path, &actions, NULL, argv, environ);
  posix_spawn_file_actions_destroy(&actions);
  close(pipe_fds[1]);
  if (spawn_error != 0) {
    snprintf(msg, msg_cap, "cannot run %s: %s", ptxas_path, strerror(spawn_error));
    close(pipe_fds[0]);
    goto done;
  }
  log = read_all(pipe_fds[0]);
  close(pipe_fds[0]);
  int wait_status;
  pid_t waited;
  do {
    waited = waitpid(pid, &wait_status, 0);
  } while (waited < 0 && errno == EINTR);
  if (!log) {
    snprintf(msg, msg_cap, "out of memory reading the ptxas log");
    goto done;
  }
  if (waited < 0) {
    snprintf(msg, msg_cap, "waitpid: %s", strerror(errno));
    free(log);
    log = NULL;
    goto done;
  }
  report->exit_status = WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1;
  report->log = log;
  ptxas_parse_log(log, report);
  status = 0;
done:
  unlink(in_name);
  unlink(out_name);
  return status;
}

void ptxas_report_free(ptxas_report *report) {
  if (!report) return;
  free(report->log);
  report->log = NULL;
}
