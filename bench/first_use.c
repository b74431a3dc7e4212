/*
 * first_use.c: the first-use rows of ptxq-bench (see first_use.h).
 *
 * What a program pays the first time it asks for a kernel: ptxq_kernel_get
 * of a key not yet built parses it, generates the PTX, has the driver JIT it
 * (cuModuleLoadDataEx), reads the function's attributes and inserts it in
 * the module table. Only a fresh process shows that cost honestly: in the
 * benchmark's own process the driver, its JIT compiler and its cache would
 * already be loaded and warm. So each figure comes from a child: the
 * benchmark fork()s and execs itself (/proc/self/exe) with
 * `--first-use-child KEY`; the child opens a context (timed apart), times
 * one ptxq_kernel_get with CLOCK_MONOTONIC and prints one line,
 *   first-use-child: ok open_us=... get_us=... primer_us=...
 * which the parent reads from a pipe (the child's stdout and stderr both).
 * A child that fails prints "first-use-child: error ..." instead; one that
 * fails, crashes, hangs (killed after CHILD_TIMEOUT_S) or prints nothing
 * readable becomes a message in its row (and exit status 1 at the end),
 * never a crash or a stall of the benchmark itself.
 *
 * The driver keeps compiled PTX in its own JIT cache (the ComputeCache),
 * in the directory CUDA_CACHE_PATH names (default ~/.nv/ComputeCache), off
 * when CUDA_CACHE_DISABLE=1. Every child runs with CUDA_CACHE_PATH set to a
 * directory made for it (mkdtemp) and removed afterwards, so the user's own
 * cache is never read or written, and whatever the caller's environment
 * said about the cache is replaced:
 *   cold     a new empty directory,
 *   cached   a second child on the directory the cold one left (its size is
 *            reported: an empty directory means the driver cached nothing,
 *            and the cached figure is then a second cold one),
 *   second   a new empty directory, in a child that first builds another
 *            small kernel (untimed): the cold cost of one more kernel once
 *            the process has loaded the JIT compiler,
 *   nocache  CUDA_CACHE_DISABLE=1.
 * Each condition runs `runs` times per key (fresh directories each time);
 * the median is reported. A probe child (first_use_probe) runs first: it
 * names the device and its target, and reads the driver's libraries into
 * the page cache so that the first key is not charged for the disk.
 */
#define _XOPEN_SOURCE 700 /* nftw, mkdtemp */

#include "first_use.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "ptxgen.h"
#include "ptxq.h"

extern char **environ;

#define CHILD_TAG "first-use-child: "
#define CHILD_TIMEOUT_S 60.0 /* a child takes a second or so; a hang must not stall the bench */
#define KILL_GRACE_S 5.0      /* after SIGKILL, how long to wait for the pipe to close */
#define CHILD_OUTPUT_CAP 8192 /* bytes of child output kept (the rest is read and dropped) */
#define PRIMER_N 256u         /* the "second" children's first kernel: silu over 256 values */
#define EXIT_NO_GPU 3         /* ptxq-bench's exit status for "no GPU" */

static const char *const mode_names[FIRST_USE_CONDITIONS] = {
    "first-use-cold", "first-use-cached", "first-use-cold-second", "first-use-nocache"};
static const char *const short_names[FIRST_USE_CONDITIONS] = {"cold", "cached", "cold 2nd",
                                                              "no-cache"};

static double now_us(void)
{
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec * 1e-3;
}

/* Copies text into out as one line of printable ASCII: control characters
 * become spaces, quotes, backslashes and other bytes are replaced, so the
 * result can go into a table row and, as is (even cut short), into a JSON
 * string. */
static void one_line(char *out, size_t cap, const char *text)
{
  size_t n = 0;
  for (; *text && n + 1 < cap; text++) {
    unsigned char c = (unsigned char)*text;
    out[n++] = c < 0x20 ? ' ' : c == '"' ? '\'' : c == '\\' ? '/' : c >= 0x7f ? '?' : (char)c;
  }
  out[n] = '\0';
}

/* ---- the child ----------------------------------------------------------- */

static void child_say(const char *what, const char *detail)
{
  char line[1024];
  one_line(line, sizeof line, detail);
  printf(CHILD_TAG "%s %s\n", what, line);
  fflush(stdout);
}

/* A ptxq failure as the child's one line; returns its exit status. */
static int child_fail(int status, const char *call, const char *detail)
{
  char text[1024];
  snprintf(text, sizeof text, "%s: %s: %s", call, ptxq_strerror(status), detail);
  child_say(status == PTXQ_ERR_NO_DEVICE ? "no-gpu" : "error", text);
  return status == PTXQ_ERR_NO_DEVICE ? EXIT_NO_GPU : 1;
}

static int primer_key(uint32_t sm, char *buf, size_t cap)
{
  ptxgen_spec spec = {.kind = PTXGEN_KIND_SILU, .sm = sm, .n = PRIMER_N, .m = 1};
  int len = ptxgen_spec_format(&spec, buf, cap);
  return len < 0 || (size_t)len >= cap ? -1 : 0;
}

int first_use_child(int argc, char **argv)
{
  if (argc < 3 || argc > 4 || (!strcmp(argv[2], "--probe") && argc != 3)) {
    child_say("error", "usage: ptxq-bench " FIRST_USE_CHILD_ARG " KEY [PRIMER_KEY] | --probe");
    return 1;
  }
  bool probe = !strcmp(argv[2], "--probe");
  ptxq_ctx *ctx = NULL;
  double start = now_us();
  int st = ptxq_open(&ctx, NULL);
  double open_us = now_us() - start;
  if (st)
    return child_fail(st, "ptxq_open", ptxq_last_error(NULL));

  ptxq_kernel_info info;
  int rc = 0;
  if (probe) {
    /* The device, and one JIT so the driver's libraries are read from disk
     * here rather than in the first measured child. */
    ptxq_device_info dev;
    char key[128];
    if ((st = ptxq_device_info_get(ctx, &dev)))
      rc = child_fail(st, "ptxq_device_info_get", ptxq_last_error(ctx));
    else if (primer_key(dev.target_sm, key, sizeof key))
      rc = child_fail(PTXQ_ERR_INVALID, "the probe's kernel key", "cannot be formatted");
    else if ((st = ptxq_kernel_get(ctx, key, &info)))
      rc = child_fail(st, key, ptxq_last_error(ctx));
    else {
      char name[sizeof dev.name];
      one_line(name, sizeof name, dev.name);
      printf(CHILD_TAG "device sm=%u target_sm=%u driver=%d name=%s\n", dev.sm, dev.target_sm,
             dev.driver_version, name);
      fflush(stdout);
    }
  } else {
    double primer_us = 0;
    if (argc == 4) {
      start = now_us();
      if ((st = ptxq_kernel_get(ctx, argv[3], &info)))
        rc = child_fail(st, argv[3], ptxq_last_error(ctx));
      primer_us = now_us() - start;
    }
    if (!rc) {
      start = now_us();
      st = ptxq_kernel_get(ctx, argv[2], &info);
      double get_us = now_us() - start;
      if (st)
        rc = child_fail(st, argv[2], ptxq_last_error(ctx));
      else {
        printf(CHILD_TAG "ok open_us=%.1f get_us=%.1f primer_us=%.1f\n", open_us, get_us,
               primer_us);
        fflush(stdout);
      }
    }
  }
  ptxq_close(ctx);
  return rc;
}

/* ---- temporary cache directories ----------------------------------------- */

/* nftw passes no user pointer: the walks below are sequential and use these. */
static double tree_bytes;
static bool tree_remove_failed;

static int add_file_size(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)path;
  (void)ftw;
  if (type == FTW_F)
    tree_bytes += (double)st->st_size;
  return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
  (void)st;
  (void)type;
  (void)ftw;
  if (remove(path) != 0)
    tree_remove_failed = true;
  return 0; /* remove what can be removed */
}

/* Bytes in the regular files under dir. */
static double dir_bytes(const char *dir)
{
  tree_bytes = 0;
  if (nftw(dir, add_file_size, 16, FTW_PHYS) != 0)
    return -1;
  return tree_bytes;
}

static void remove_dir(const char *dir)
{
  tree_remove_failed = false;
  if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 || tree_remove_failed)
    fprintf(stderr, "ptxq-bench: first use: could not remove all of %s\n", dir);
}

/* A new empty directory for one child's cache: $TMPDIR/ptxq-first-use-XXXXXX. */
static int make_dir(char *buf, size_t cap)
{
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp)
    tmp = "/tmp";
  int len = snprintf(buf, cap, "%s/ptxq-first-use-XXXXXX", tmp);
  if (len < 0 || (size_t)len >= cap || !mkdtemp(buf)) {
    fprintf(stderr, "ptxq-bench: first use: cannot create a directory under %s: %s\n", tmp,
            len < 0 || (size_t)len >= cap ? "path too long" : strerror(errno));
    return 1;
  }
  return 0;
}

/* ---- running a child ------------------------------------------------------ */

typedef struct {
  bool ok, no_gpu, timed_out;
  double open_us, get_us, primer_us;
  first_use_device dev; /* the probe's */
  char error[512];
} child_report;

/* The caller's environment without its CUDA_CACHE_PATH and
 * CUDA_CACHE_DISABLE, plus ours. Built before fork(): the child only execs.
 * *path_var is malloc'd (freed by the caller with the array). */
static char **child_environment(const char *cache_dir, bool cache_disabled, char **path_var)
{
  static char disable_var[] = "CUDA_CACHE_DISABLE=1";
  static const char path_prefix[] = "CUDA_CACHE_PATH=";
  size_t count = 0;
  while (environ && environ[count])
    count++;
  char **env = calloc(count + 3, sizeof *env);
  size_t path_len = sizeof path_prefix + strlen(cache_dir);
  *path_var = malloc(path_len);
  if (!env || !*path_var) {
    free(env);
    free(*path_var);
    *path_var = NULL;
    return NULL;
  }
  snprintf(*path_var, path_len, "%s%s", path_prefix, cache_dir);
  size_t n = 0;
  for (size_t i = 0; i < count; i++)
    if (strncmp(environ[i], "CUDA_CACHE_PATH=", 16) &&
        strncmp(environ[i], "CUDA_CACHE_DISABLE=", 19))
      env[n++] = environ[i];
  env[n++] = *path_var;
  if (cache_disabled)
    env[n++] = disable_var;
  env[n] = NULL;
  return env;
}

/* Reads the child's output until it closes the pipe; kills it when it
 * overruns CHILD_TIMEOUT_S. Returns true if it was killed. */
static bool read_child(int fd, pid_t pid, char *out, size_t cap)
{
  size_t used = 0;
  bool killed = false;
  double deadline = now_us() + CHILD_TIMEOUT_S * 1e6;
  out[0] = '\0';
  for (;;) {
    double left_ms = (deadline - now_us()) / 1e3;
    if (left_ms <= 0) {
      if (killed)
        break; /* something else holds the pipe open: stop reading */
      kill(pid, SIGKILL);
      killed = true;
      deadline = now_us() + KILL_GRACE_S * 1e6;
      continue;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = poll(&p, 1, left_ms > 1000 ? 1000 : (int)left_ms + 1);
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready < 0) {
      if (!killed)
        kill(pid, SIGKILL);
      return true;
    }
    if (ready == 0)
      continue;
    char buf[1024];
    ssize_t got = read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      break; /* end of file (or an error: the same, the child is gone or going) */
    size_t keep = (size_t)got < cap - 1 - used ? (size_t)got : cap - 1 - used;
    memcpy(out + used, buf, keep);
    used += keep;
    out[used] = '\0';
  }
  return killed;
}

/* The last line of out starting with CHILD_TAG (NUL-terminated copy in
 * line), or false. */
static bool find_child_line(const char *out, char *line, size_t cap)
{
  const char *found = NULL;
  for (const char *p = out; (p = strstr(p, CHILD_TAG)) != NULL; p++)
    if (p == out || p[-1] == '\n')
      found = p;
  if (!found)
    return false;
  found += strlen(CHILD_TAG);
  size_t len = strcspn(found, "\n");
  if (len >= cap)
    len = cap - 1;
  memcpy(line, found, len);
  line[len] = '\0';
  return true;
}

/* Fills r from the child's line; false if the line does not read as its kind. */
static bool parse_child_line(const char *line, bool probe, child_report *r)
{
  if (probe) {
    int name_at = 0;
    if (sscanf(line, "device sm=%u target_sm=%u driver=%d name=%n", &r->dev.sm,
               &r->dev.target_sm, &r->dev.driver_version, &name_at) != 3 || name_at == 0)
      return false;
    snprintf(r->dev.name, sizeof r->dev.name, "%s", line + name_at);
    return r->dev.target_sm > 0;
  }
  int end = 0;
  if (sscanf(line, "ok open_us=%lf get_us=%lf primer_us=%lf%n", &r->open_us, &r->get_us,
             &r->primer_us, &end) != 3 || end == 0 || line[end] != '\0')
    return false;
  return isfinite(r->open_us) && isfinite(r->get_us) && isfinite(r->primer_us) &&
         r->open_us >= 0 && r->get_us > 0 && r->primer_us >= 0;
}

/* Runs `ptxq-bench --first-use-child ARG [PRIMER]` with its cache in
 * cache_dir and fills r: ok with the figures, or error saying why not. */
static void run_child(const char *arg, const char *primer, const char *cache_dir,
                      bool cache_disabled, child_report *r)
{
  memset(r, 0, sizeof *r);
  char *path_var = NULL;
  char **env = child_environment(cache_dir, cache_disabled, &path_var);
  char *out = malloc(CHILD_OUTPUT_CAP);
  int fds[2] = {-1, -1};
  if (!env || !out || pipe(fds) != 0) {
    snprintf(r->error, sizeof r->error, "cannot start a child: %s",
             !env || !out ? "out of host memory" : strerror(errno));
    free(env);
    free(path_var);
    free(out);
    return;
  }
  fcntl(fds[0], F_SETFD, FD_CLOEXEC);
  fcntl(fds[1], F_SETFD, FD_CLOEXEC);
  /* execve takes char *const[]; it does not write to the strings. */
  char *args[] = {(char *)"ptxq-bench", (char *)FIRST_USE_CHILD_ARG, (char *)arg,
                  (char *)primer, NULL};
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execve("/proc/self/exe", args, env);
    static const char msg[] = CHILD_TAG "error cannot execute /proc/self/exe\n";
    ssize_t ignored = write(STDOUT_FILENO, msg, sizeof msg - 1);
    (void)ignored;
    _exit(127);
  }
  close(fds[1]);
  if (pid < 0) {
    snprintf(r->error, sizeof r->error, "fork failed: %s", strerror(errno));
    close(fds[0]);
    free(env);
    free(path_var);
    free(out);
    return;
  }
  bool killed = read_child(fds[0], pid, out, CHILD_OUTPUT_CAP);
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
    ;
  free(env);
  free(path_var);

  char line[1024];
  bool have_line = find_child_line(out, line, sizeof line);
  bool probe = !strcmp(arg, "--probe");
  bool exited_ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
  char what[1024];
  if (have_line)
    one_line(what, sizeof what, line);
  else { /* the start of whatever it printed, or nothing */
    char excerpt[200];
    one_line(excerpt, sizeof excerpt, out);
    snprintf(what, sizeof what, "%s%s",
             out[0] ? "printed no result line; its output: " : "printed nothing", excerpt);
  }
  r->timed_out = killed;
  if (killed)
    snprintf(r->error, sizeof r->error, "killed after %.0f s without finishing; %.400s",
             CHILD_TIMEOUT_S, what);
  else if (WIFSIGNALED(status))
    snprintf(r->error, sizeof r->error, "killed by signal %d; %.400s", WTERMSIG(status), what);
  else if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_NO_GPU) {
    r->no_gpu = true;
    const char *detail = strncmp(what, "no-gpu ", 7) ? what : what + 7;
    snprintf(r->error, sizeof r->error, "%.400s", detail);
  } else if (!exited_ok)
    snprintf(r->error, sizeof r->error, "exited with status %d; %.400s",
             WIFEXITED(status) ? WEXITSTATUS(status) : -1,
             have_line && !strncmp(what, "error ", 6) ? what + 6 : what);
  else if (!have_line || !parse_child_line(line, probe, r))
    snprintf(r->error, sizeof r->error, "exited 0 but its result does not read: %.400s", what);
  else
    r->ok = true;
  free(out);
}

/* ---- the probe ------------------------------------------------------------ */

int first_use_probe(first_use_device *dev)
{
  memset(dev, 0, sizeof *dev);
  char dir[4096];
  if (make_dir(dir, sizeof dir))
    return 1;
  child_report r;
  run_child("--probe", NULL, dir, true, &r);
  remove_dir(dir);
  if (r.no_gpu) {
    printf("first use: no GPU (%s): nothing measured\n", r.error);
    return EXIT_NO_GPU;
  }
  if (!r.ok) {
    printf("first use: the probe process failed (%s): nothing measured\n", r.error);
    return 1;
  }
  *dev = r.dev;
  return 0;
}

/* ---- the measurement ------------------------------------------------------- */

static int compare_double(const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n)
{
  qsort(v, (size_t)n, sizeof *v, compare_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Samples of one key: per condition, get and open times of the children
 * that measured. */
typedef struct {
  double *get[FIRST_USE_CONDITIONS], *open[FIRST_USE_CONDITIONS];
  int n[FIRST_USE_CONDITIONS];
} samples;

static void record(first_use_result *row, samples *s, const child_report *c)
{
  if (c->ok) {
    s->get[row->condition][s->n[row->condition]] = c->get_us;
    s->open[row->condition][s->n[row->condition]++] = c->open_us;
  } else if (!row->error[0]) /* the first failure says why */
    snprintf(row->error, sizeof row->error, "%s", c->error);
}

/* One run of every condition of a key; rows[c] is the key's row of
 * condition c. Returns 1 if a cache directory cannot be made. Sets *hung
 * when a child had to be killed: the key's other children are then not
 * started (a JIT that hung once will likely hang again, CHILD_TIMEOUT_S
 * each). */
static int measure_once(const char *key, const char *primer, first_use_result *rows, samples *s,
                        bool *hung)
{
  char dir[4096];
  child_report c;
  for (int cond = FIRST_USE_COLD; cond < FIRST_USE_CONDITIONS && !*hung; cond++) {
    if (cond == FIRST_USE_CACHED)
      continue; /* runs with COLD, on the directory it fills */
    if (make_dir(dir, sizeof dir))
      return 1;
    run_child(key, cond == FIRST_USE_SECOND ? primer : NULL, dir, cond == FIRST_USE_NOCACHE, &c);
    record(&rows[cond], s, &c);
    *hung = c.timed_out;
    if (cond == FIRST_USE_COLD && c.ok) {
      double bytes = dir_bytes(dir);
      double *kept = &rows[FIRST_USE_COLD].cache_bytes;
      if (bytes >= 0 && (*kept < 0 || bytes < *kept))
        *kept = bytes; /* the smallest: one empty directory shows */
      run_child(key, NULL, dir, false, &c);
      record(&rows[FIRST_USE_CACHED], s, &c);
      *hung = c.timed_out;
    } else if (cond == FIRST_USE_COLD && !rows[FIRST_USE_CACHED].error[0])
      snprintf(rows[FIRST_USE_CACHED].error, sizeof rows[FIRST_USE_CACHED].error,
               "not run: the cold child before it failed");
    remove_dir(dir);
  }
  return 0;
}

static void print_cell(const first_use_result *r)
{
  if (r->runs)
    printf("%9.2f ", r->median_us / 1e3);
  else
    printf("%9s ", "FAILED");
}

/* Fills the key's rows from its samples and prints its line (and a line
 * per condition that failed). */
static void finish_key(first_use_result *rows, samples *s)
{
  double opens[FIRST_USE_CONDITIONS * 64];
  int open_count = 0;
  for (int c = 0; c < FIRST_USE_CONDITIONS; c++) {
    first_use_result *r = &rows[c];
    r->runs = s->n[c];
    if (!r->runs && !r->error[0])
      snprintf(r->error, sizeof r->error, "not run: an earlier child of this key was killed");
    r->median_us = r->min_us = r->max_us = r->open_us = NAN;
    if (r->runs) {
      for (int i = 0; i < r->runs && open_count < (int)(sizeof opens / sizeof opens[0]); i++)
        opens[open_count++] = s->open[c][i];
      r->open_us = median(s->open[c], r->runs);
      r->median_us = median(s->get[c], r->runs); /* sorts: min and max at the ends */
      r->min_us = s->get[c][0];
      r->max_us = s->get[c][r->runs - 1];
    }
  }
  for (int c = 0; c < FIRST_USE_CONDITIONS; c++)
    print_cell(&rows[c]);
  if (open_count)
    printf("%9.2f", median(opens, open_count) / 1e3);
  else
    printf("%9s", "-");
  printf("  %s\n", rows[0].key);
  for (int c = 0; c < FIRST_USE_CONDITIONS; c++)
    if (rows[c].error[0])
      printf("  %s: %s%s\n", short_names[c], rows[c].runs ? "some runs failed: " : "FAILED: ",
             rows[c].error);
  fflush(stdout);
}

/* The summary under the table: the target, whether the driver's cache
 * meets it, and any key the driver did not cache. */
static void print_summary(const first_use_result *rows, size_t keys)
{
  for (int c = 0; c < FIRST_USE_CONDITIONS; c++) {
    size_t measured = 0, within = 0;
    double worst = 0;
    for (size_t k = 0; k < keys; k++) {
      const first_use_result *r = &rows[k * FIRST_USE_CONDITIONS + c];
      if (!r->runs)
        continue;
      measured++;
      within += r->median_us <= FIRST_USE_TARGET_MS * 1e3;
      worst = r->median_us > worst ? r->median_us : worst;
    }
    printf("first use, %-8s <= %.0f ms: %zu of %zu keys (slowest %.2f ms)%s\n", short_names[c],
           FIRST_USE_TARGET_MS, within, keys, worst / 1e3,
           measured < keys ? "; the others failed" : "");
  }
  for (size_t k = 0; k < keys; k++) {
    const first_use_result *r = &rows[k * FIRST_USE_CONDITIONS + FIRST_USE_COLD];
    if (r->runs && r->cache_bytes == 0)
      printf("note: the driver left nothing in CUDA_CACHE_PATH after %s cold: its cached column "
             "is not a cache hit\n", r->key);
  }
}

int first_use_bench(const char *keys, uint32_t sm, int runs, const first_use_device *dev,
                    first_use_result **out, size_t *count)
{
  *out = NULL;
  *count = 0;
  size_t lines = 0;
  for (const char *p = keys; *p; p++)
    lines += *p == '\n';
  lines++; /* a last line without a newline */
  first_use_result *rows = calloc(lines * FIRST_USE_CONDITIONS, sizeof *rows);
  double *buf = calloc((size_t)runs * FIRST_USE_CONDITIONS * 2, sizeof *buf);
  char primer[128];
  if (!rows || !buf) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    free(rows);
    free(buf);
    return 1;
  }
  if (primer_key(sm, primer, sizeof primer)) {
    fprintf(stderr, "ptxq-bench: first use: cannot format the key of the second kernel\n");
    free(rows);
    free(buf);
    return 1;
  }

  printf("first use: %s (sm_%u), driver %d; kernels for sm_%u; %d fresh process%s per key and "
         "condition\n",
         dev->name, dev->sm, dev->driver_version, sm, runs, runs == 1 ? "" : "es");
  printf("ms of the first ptxq_kernel_get of a key (generate + JIT + module table), median of %d\n",
         runs);
  printf("%9s %9s %9s %9s %9s  %s\n", "cold", "cached", "cold 2nd", "no-cache", "open", "key");
  size_t n = 0;
  int rc = 0;
  for (const char *line = keys; *line; ) {
    size_t len = strcspn(line, "\n");
    const char *next = line[len] ? line + len + 1 : line + len;
    if (len == 0) {
      line = next;
      continue;
    }
    first_use_result *key_rows = &rows[n * FIRST_USE_CONDITIONS];
    if (len >= sizeof key_rows->key) {
      fprintf(stderr, "ptxq-bench: first use: a kernel key of %zu characters\n", len);
      rc = 1;
      break;
    }
    bool seen = false; /* a key listed twice is measured once */
    for (size_t i = 0; i < n && !seen; i++)
      seen = strlen(rows[i * FIRST_USE_CONDITIONS].key) == len &&
             !strncmp(rows[i * FIRST_USE_CONDITIONS].key, line, len);
    if (!seen) {
      samples s;
      memset(&s, 0, sizeof s);
      for (int c = 0; c < FIRST_USE_CONDITIONS; c++) {
        memcpy(key_rows[c].key, line, len);
        key_rows[c].key[len] = '\0';
        key_rows[c].condition = (first_use_condition)c;
        key_rows[c].cache_bytes = -1;
        s.get[c] = buf + (size_t)c * 2 * runs;
        s.open[c] = s.get[c] + runs;
      }
      bool hung = false;
      for (int i = 0; i < runs && !rc && !hung; i++)
        rc = measure_once(key_rows[0].key, primer, key_rows, &s, &hung);
      if (rc)
        break;
      finish_key(key_rows, &s);
      n++;
    }
    line = next;
  }
  free(buf);
  if (!rc) {
    printf("cold: CUDA_CACHE_PATH a new empty directory; cached: a second process on the "
           "directory the cold one filled;\ncold 2nd: cold, after the process has built another "
           "kernel (its one-time JIT start-up excluded); no-cache: CUDA_CACHE_DISABLE=1;\nopen: "
           "ptxq_open in the same processes\n");
    print_summary(rows, n);
    for (size_t i = 0; i < n * FIRST_USE_CONDITIONS; i++)
      rc |= rows[i].error[0] != '\0';
  }
  *out = rows;
  *count = n * FIRST_USE_CONDITIONS;
  return rc ? 1 : 0;
}

void first_use_json_record(FILE *f, const first_use_result *r)
{
  fprintf(f, "{\"kernel\": \"%.*s\", \"key\": \"%s\", \"mode\": \"%s\", \"runs\": %d",
          (int)strcspn(r->key, ":"), r->key, r->key, mode_names[r->condition], r->runs);
  if (r->runs)
    fprintf(f, ", \"median_us\": %.1f, \"min_us\": %.1f, \"max_us\": %.1f, \"open_us\": %.1f",
            r->median_us, r->min_us, r->max_us, r->open_us);
  else
    fprintf(f, ", \"median_us\": null");
  if (r->condition == FIRST_USE_COLD && r->cache_bytes >= 0)
    fprintf(f, ", \"cache_bytes\": %.0f", r->cache_bytes);
  fprintf(f, ", \"check\": \"%s\"}", r->error[0] ? r->error : "ok");
}
