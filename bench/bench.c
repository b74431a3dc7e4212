/*
 * bench.c: ptxq-bench, the benchmark of ptxq's kernels against the device's
 * own read ceiling.
 *
 * One run measures
 *  (a) the read ceiling: the stream_read kernel over a 2 GiB buffer of
 *      random bytes (median of event-timed runs after warm-up), and
 *  (b) the Q4_K GEMV (ptxq_gemv) on Llama-3-8B decode shapes, batch M of
 *      1, 2, 4, 8 and 16, cold (launches rotate through copies of the weight
 *      that together exceed 4x the L2, as a decode step reads each layer
 *      once) and hot (the same buffers again, as most published figures
 *      are taken), each launch timed by its own event pair, and in a graph
 *      (100 products captured back to back, each replay timed by an event
 *      pair, per product), hot and cold (graph-cold: the products rotate
 *      through the copies); the median is reported as time, GB/s and
 *      percent of the ceiling; beside each shape, the read kernel over as
 *      many bytes as its weight, cold and graph-cold, timed the same way
 *      (rows stream_read, m 0): what reading those bytes once costs any
 *      kernel, with and without the launch,
 *  (c) the activations (gelu, gelu_erf, silu, swiglu, geglu) over an
 *      FFN-sized row (n = 14336), out of place, and
 *  (d) RoPE on Llama-3-8B's attention heads (NeoX, 32 Q + 8 KV heads of
 *      128, base 500000),
 *      both for m = 1 and 8 tokens and hot only: these kernels take a few
 *      microseconds, so the per-launch event pair makes their figure the
 *      time a launch occupies the GPU, launch latency included, and
 *  (e) a whole decode step of 32 Llama-3-8B layers, as one graph, as direct
 *      launches and with the FFN unfused (bench/decode.c says how), and
 *  (f) before the device is opened, the time ptxgen takes to write each
 *      kernel the other rows use (bench/generate.c; needs no GPU), and
 *  (g) only when asked for (`--kernels first`), also before the device is
 *      opened, the first use of a few kernels (generation + JIT) in fresh
 *      child processes, with the driver's JIT cache empty, filled by an
 *      earlier process, and disabled (bench/first_use.c).
 * Every configuration is checked afterwards against the fp64 CPU reference:
 * sampled rows of y (ptxq_ref_gemv), every activation value (ptxq_ref_act,
 * ptxq_ref_glu), every rotated q and k value (ptxq_ref_rope); the decode
 * step as decode.c describes. A failed check makes the exit status 1.
 * `--kernels` picks which of (b)..(g) run; (a) always does (except for (f)
 * and (g) alone), as the others are reported against it.
 *
 * Exit status: 0 ok, 1 a check or a GPU call failed, 2 usage, 3 no GPU.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "decode.h"
#include "first_use.h"
#include "generate.h"
#include "ptxgen.h"
#include "ptxq.h"

enum { EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_NO_GPU = 3 };

#define READ_BYTES (2ull << 30)      /* the ceiling's buffer */
#define READ_MIN_BYTES (256ull << 20) /* smallest buffer tried when memory is short */
#define CEILING_RUNS 30
#define QUICK_RUNS 20                 /* never fewer for the ceiling */
#define GEMV_RUNS 100
#define WARMUP_RUNS 5
#define CHECK_ROWS 64
#define MAX_REL_ERR 1e-5
#define MAX_SHAPES 16
#define MAX_MS PTXGEN_GEMV_MAX_M /* entries of an --m list */
#define MAX_ROWS PTXGEN_GEMV_MAX_M /* batch rows the GEMV buffers hold */
#define L2_FALLBACK_BYTES (64ull << 20)

/* Activations: one row of Llama-3-8B's FFN (the gate/up width), inputs
 * uniform in [-ACT_RANGE, ACT_RANGE] to reach both tails of every formula;
 * the accuracy ptxq.h promises: |y - ref| <= ACT_REL_TOL |ref| + ACT_ABS_TOL. */
#define ACT_N 14336u
#define ACT_RANGE 20.0
#define ACT_REL_TOL 2e-6
#define ACT_ABS_TOL 1e-7
/* RoPE: Llama-3-8B attention; positions up to ROPE_MAX_POSITION (1M-token
 * contexts), unit-scale q and k, within ROPE_ABS_TOL of fp64 (ptxq.h). */
#define ROPE_HEAD_DIM 128u
#define ROPE_HEADS 32u
#define ROPE_KV_HEADS 8u
#define ROPE_BASE 500000.0f
#define ROPE_MAX_POSITION (1u << 20)
#define ROPE_ABS_TOL 2e-6
#define MAX_SHOWN_ERRORS 5 /* failing values printed per configuration */

enum { KERNELS_GEMV = 1, KERNELS_ACT = 2, KERNELS_ROPE = 4, KERNELS_DECODE = 8, KERNELS_GEN = 16,
       KERNELS_ALL = 31, KERNELS_FIRST = 32 /* not in ALL: only when named */ };
#define GEN_REPS 51 /* emissions timed per key */

typedef struct {
  uint32_t n, k;
  ptxq_type type; /* PTXQ_TYPE_Q4_K or PTXQ_TYPE_Q6_K */
} shape;

/* Llama-3-8B decode: q/o and k/v projections, ffn gate/up and down, lm head,
 * in Q4_K; and the two that Q4_K_M files keep in Q6_K (ffn_down in half the
 * layers, the output projection). */
static const shape default_shapes[] = {
    {4096, 4096, PTXQ_TYPE_Q4_K},   {1024, 4096, PTXQ_TYPE_Q4_K},  {14336, 4096, PTXQ_TYPE_Q4_K},
    {4096, 14336, PTXQ_TYPE_Q4_K},  {128256, 4096, PTXQ_TYPE_Q4_K}, {4096, 14336, PTXQ_TYPE_Q6_K},
    {128256, 4096, PTXQ_TYPE_Q6_K},
};

static const char *gemv_kind_name(ptxq_type type) { return type == PTXQ_TYPE_Q6_K ? "q6k_gemv" : "q4k_gemv"; }
static ptxgen_kind gemv_kind(ptxq_type type)
{
  return type == PTXQ_TYPE_Q6_K ? PTXGEN_KIND_Q6K_GEMV : PTXGEN_KIND_Q4K_GEMV;
}
static size_t block_bytes(ptxq_type type)
{
  return type == PTXQ_TYPE_Q6_K ? PTXQ_Q6_K_BLOCK_BYTES : PTXQ_Q4_K_BLOCK_BYTES;
}
static const uint32_t default_ms[] = {1, 2, 4, 8, 16};
/* The decode step stops at 8 unless --m asks for more: each m adds a
 * 32-layer step timed several ways (at least DECODE_MIN_RUNS steps each,
 * 7.2 ms a step at m = 8 on the H100) and checked bit for bit, while its
 * kernels at m = 16 run the unfused path (decode.c), whose products the
 * GEMV rows already measure at m = 16. */
static const uint32_t default_decode_ms[] = {1, 2, 4, 8};
/* Activations and RoPE: one decode token, and a batch of 8. */
static const uint32_t default_op_ms[] = {1, 8};

typedef struct {
  const char *json_path;
  int runs;         /* event-timed GEMV launches per configuration */
  int ceiling_runs; /* event-timed runs of the read kernel */
  shape shapes[MAX_SHAPES];
  size_t shape_count;
  uint32_t ms[MAX_MS];
  size_t m_count;
  uint32_t op_ms[MAX_MS]; /* batch sizes of the activations and RoPE */
  size_t op_m_count;
  uint32_t decode_ms[MAX_MS]; /* batch sizes of the decode step */
  size_t decode_m_count;
  unsigned kernels; /* KERNELS_* bits */
  uint32_t layers;  /* of the decode step */
  uint32_t sm; /* target; 0: the device's own (runs) or 90 (--list-keys) */
  uint64_t seed; /* of the random data; 0: from the clock */
  bool list_keys, quick;
  bool tensor_cores; /* --tensor-cores: the context runs Q4_K and Q6_K products on the tensor cores */
} options;

/* How a GEMV row is timed: cold (launches rotate through copies of the
 * weight larger than the L2), hot (the same buffers again), graph (hot, the
 * per-product time of GRAPH_OPS back-to-back products captured as one
 * graph: what a decode step pays once launch overhead is gone), graph-cold
 * (the same graph, its products rotating through the copies as cold
 * launches do: a decode step's case, every weight read from memory, no
 * launch overhead). */
typedef enum { GEMV_COLD, GEMV_HOT, GEMV_GRAPH, GEMV_GRAPH_COLD, GEMV_MODES } gemv_mode;
static const char *const gemv_mode_names[GEMV_MODES] = {"cold", "hot", "graph", "graph-cold"};

static bool gemv_mode_cold(gemv_mode mode) { return mode == GEMV_COLD || mode == GEMV_GRAPH_COLD; }
static bool gemv_mode_graph(gemv_mode mode) { return mode == GEMV_GRAPH || mode == GEMV_GRAPH_COLD; }

typedef struct {
  shape s;
  uint32_t m;
  gemv_mode mode;
  int copies;
  double bytes, median_us, gbps, pct_of_ceiling, max_rel_err;
  int registers, spill_bytes;
  bool ok;
  bool tc; /* a product on the tensor cores (--tensor-cores) */
  bool read_probe; /* the read kernel over the shape's weight bytes (m = 0, no check) */
} result;

static const char *result_kernel_name(const result *r)
{
  if (r->read_probe)
    return "stream_read";
  if (r->tc)
    return r->s.type == PTXQ_TYPE_Q6_K ? "q6k_gemv_tc" : "q4k_gemv_tc";
  return gemv_kind_name(r->s.type);
}

/* One activation or RoPE configuration (always hot). */
typedef struct {
  const char *kernel; /* the kind's name, as in its key */
  char key[128];
  bool rope;
  uint32_t n, m; /* n: values per row (activations); m: rows or tokens */
  double bytes, median_us, gbps, pct_of_ceiling;
  double launch_us; /* median of launches each started on an idle GPU: host launch time included */
  double stream_us; /* per launch, over back-to-back launches between one event pair */
  double graph_us;  /* per launch, inside a graph of GRAPH_OPS launches replayed */
  double max_err, err_limit; /* see check_act and check_rope for what max_err measures */
  int registers, spill_bytes;
  bool ok;
} op_result;

/* Timing state shared by all measurements. */
typedef struct {
  ptxq_ctx *ctx;
  ptxq_device_info info;
  ptxq_event **start, **end;
  float *ms;
  int event_count;
  ptxq_dev read_buf, sink;
  size_t read_bytes;
  char read_key[96];
  double read_ms; /* median time of one read pass */
  double ceiling_gbps;
  uint64_t seed; /* of the random data, printed so a failure can be replayed */
} bench;

/* ---- small helpers ------------------------------------------------------- */

static uint64_t rng_next(uint64_t *state) /* splitmix64 */
{
  uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

static double rng_unit(uint64_t *state) /* uniform in [0, 1) */
{
  return (double)(rng_next(state) >> 11) * 0x1p-53;
}

static void fill_random_bytes(uint64_t *state, uint8_t *buf, size_t bytes)
{
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t v = rng_next(state);
    memcpy(buf + i, &v, 8);
  }
  for (uint64_t v = rng_next(state); i < bytes; i++, v >>= 8)
    buf[i] = (uint8_t)v;
}

/* Random valid Q4_K blocks: random scales, mins and quants; d and dmin
 * log-uniform in [1e-3, 1e-1] so every value is a finite, non-zero f16. */
static void fill_random_q4k(uint64_t *state, uint8_t *blocks, size_t nblocks)
{
  fill_random_bytes(state, blocks, nblocks * PTXQ_Q4_K_BLOCK_BYTES);
  for (size_t b = 0; b < nblocks; b++) {
    uint8_t *block = blocks + b * PTXQ_Q4_K_BLOCK_BYTES;
    for (int field = 0; field < 2; field++) {
      uint16_t h = ptxq_f32_to_f16((float)(1e-3 * pow(100.0, rng_unit(state))));
      block[2 * field] = (uint8_t)(h & 0xFF);
      block[2 * field + 1] = (uint8_t)(h >> 8);
    }
  }
}

/* Random valid Q6_K blocks: random quants and scales, d log-uniform in
 * [1e-3, 1e-1]. */
static void fill_random_q6k(uint64_t *state, uint8_t *blocks, size_t nblocks)
{
  fill_random_bytes(state, blocks, nblocks * PTXQ_Q6_K_BLOCK_BYTES);
  for (size_t b = 0; b < nblocks; b++) {
    uint16_t h = ptxq_f32_to_f16((float)(1e-3 * pow(100.0, rng_unit(state))));
    blocks[b * PTXQ_Q6_K_BLOCK_BYTES + 208] = (uint8_t)(h & 0xFF);
    blocks[b * PTXQ_Q6_K_BLOCK_BYTES + 209] = (uint8_t)(h >> 8);
  }
}

static int compare_float(const void *a, const void *b)
{
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

static double median_ms(float *ms, int count)
{
  qsort(ms, (size_t)count, sizeof *ms, compare_float);
  return count % 2 ? ms[count / 2] : 0.5 * ((double)ms[count / 2 - 1] + ms[count / 2]);
}

/* Prints a failed ptxq call with its detail; returns EXIT_FAILED. */
static int report_failure(ptxq_ctx *ctx, const char *what, int status)
{
  fprintf(stderr, "ptxq-bench: %s: %s: %s\n", what, ptxq_strerror(status),
          ptxq_last_error(ctx));
  return EXIT_FAILED;
}

static int spec_key(const ptxgen_spec *spec, char *buf, size_t cap)
{
  char msg[256];
  if (ptxgen_spec_validate(spec, msg, sizeof msg) != PTXGEN_OK) {
    fprintf(stderr, "ptxq-bench: %s\n", msg);
    return EXIT_USAGE;
  }
  int len = ptxgen_spec_format(spec, buf, cap);
  if (len < 0 || (size_t)len >= cap) {
    fprintf(stderr, "ptxq-bench: cannot format the key of a spec\n");
    return EXIT_FAILED;
  }
  return 0;
}

static int format_key(ptxgen_kind kind, uint32_t k, uint32_t n, uint32_t m, uint32_t sm,
                      char *buf, size_t cap)
{
  ptxgen_spec spec = {.kind = kind, .sm = sm, .k = k, .n = n, .m = m};
  return spec_key(&spec, buf, cap);
}

/* The key of the GEMV for m rows; with `launched`, of the kernel ptxq_gemv
 * launches for them: the 8-row one where a large batch runs as launches of
 * 8 (ptxgen_gemv_batch_rows), the one whose registers a row reports. */
static int gemv_key(ptxq_type type, uint32_t k, uint32_t n, uint32_t m, uint32_t sm, bool tensor_cores, bool launched,
                    char *buf, size_t cap)
{
  ptxgen_spec spec = {.kind = gemv_kind(type), .sm = sm, .k = k, .n = n, .m = m,
                      .tc = tensor_cores, .idp = !tensor_cores && type == PTXQ_TYPE_Q4_K && gemv_idp_switch()};
  const uint32_t rows = launched ? ptxgen_gemv_batch_rows(&spec) : m;
  if (rows != 0 && rows < m)
    spec.m = rows;
  return spec_key(&spec, buf, cap);
}

static void read_key(uint32_t sm, size_t bytes, char *buf, size_t cap)
{
  /* validated at option parsing (sm) and by construction (bytes) */
  format_key(PTXGEN_KIND_STREAM_READ, 0, (uint32_t)(bytes / 16), 0, sm, buf, cap);
}

/* The activations measured, with the reference that defines each. */
typedef struct {
  ptxgen_kind kind;
  const char *name;
  ptxq_act ref_act; /* applied to x, or to gate when gated */
  bool gated;       /* y = act(gate) * up */
} act_def;

static const act_def act_defs[] = {
    {PTXGEN_KIND_GELU, "gelu", PTXQ_ACT_GELU, false},
    {PTXGEN_KIND_GELU_ERF, "gelu_erf", PTXQ_ACT_GELU_ERF, false},
    {PTXGEN_KIND_SILU, "silu", PTXQ_ACT_SILU, false},
    {PTXGEN_KIND_SWIGLU, "swiglu", PTXQ_ACT_SILU, true},
    {PTXGEN_KIND_GEGLU, "geglu", PTXQ_ACT_GELU, true},
};
#define ACT_KINDS (sizeof act_defs / sizeof act_defs[0])

static int act_key(const act_def *a, uint32_t m, uint32_t sm, char *buf, size_t cap)
{
  return format_key(a->kind, 0, ACT_N, m, sm, buf, cap);
}

/* The spec and the reference's parameters must describe the same RoPE. */
static int rope_key(uint32_t m, uint32_t sm, char *buf, size_t cap)
{
  ptxgen_spec spec = {.kind = PTXGEN_KIND_ROPE, .sm = sm, .m = m, .mode = PTXQ_ROPE_NEOX,
                      .head_dim = ROPE_HEAD_DIM, .n_dims = ROPE_HEAD_DIM, .heads = ROPE_HEADS,
                      .kv_heads = ROPE_KV_HEADS, .base = ROPE_BASE, .freq_scale = 1,
                      .attn_factor = 1, .beta_fast = 32, .beta_slow = 1};
  return spec_key(&spec, buf, cap);
}

static void rope_ref_params(ptxq_rope_params *p)
{
  ptxq_rope_params_init(p, PTXQ_ROPE_NEOX, ROPE_HEAD_DIM, ROPE_HEADS, ROPE_KV_HEADS);
  p->base = ROPE_BASE;
}

/* ---- options ------------------------------------------------------------ */

static void usage(FILE *to)
{
  fprintf(to,
          "usage: ptxq-bench [options]\n"
          "Measures the device's read ceiling, the Q4_K GEMV on Llama-3-8B decode shapes\n"
          "(cold, hot, and hot in a graph of 100 products), the activations and RoPE\n"
          "(hot) and a whole Llama-3-8B decode step (graph, direct launches, unfused\n"
          "FFN), and checks every result against the CPU reference.\n"
          "\n"
          "  --json FILE     also write the results as JSON to FILE\n"
          "  --kernels LIST  which rows to measure: gemv, act, rope, decode, gen, first,\n"
          "                  e.g. act,rope (default all but first; the read ceiling is\n"
          "                  always measured, except for gen and first alone).\n"
          "                  gen: how long ptxgen takes to write each kernel the other\n"
          "                  rows use (every kind's with gen alone, which needs no GPU).\n"
          "                  first (only when named): the first use (generate + JIT) of\n"
          "                  8 kernels, each in fresh processes: the driver's JIT cache\n"
          "                  empty (the process's first kernel, and its second), filled\n"
          "                  by an earlier process, and disabled (%d processes per key\n"
          "                  and condition, 1 with --quick; needs a GPU)\n"
          "  --layers N      layers of the decode step (default %u; fewer if they do not\n"
          "                  fit in device memory)\n"
          "  --reps N        event-timed launches per configuration (default %d; at least\n"
          "                  %d steps for the decode step)\n"
          "  --shapes LIST   n x k shapes, e.g. 4096x4096,14336x4096:q6k (Q4_K unless\n"
          "                  :q6k follows; default: the five\n"
          "                  Llama-3-8B shapes 4096x4096,1024x4096,14336x4096,\n"
          "                  4096x14336,128256x4096)\n"
          "  --m LIST        batch sizes in 1..%u, e.g. 1,8 (default 1,2,4,8,16 for the\n"
          "                  GEMV, 1,2,4,8 for the decode step, 1,8 for the activations\n"
          "                  and RoPE)\n"
          "  --quick         %d timed launches per configuration: a smoke run\n"
          "  --seed N        seed of the random data (default: from the clock; printed)\n"
          "  --sm N          generate for target sm_N (default: the device's own; 90 with\n"
          "                  --list-keys)\n"
          "  --tensor-cores  open the context with tensor_cores = 1: Q4_K and Q6_K\n"
          "                  products (GEMV rows and the decode step) run on the tensor\n"
          "                  cores; their rows are named q4k_gemv_tc and q6k_gemv_tc\n"
          "  --list-keys     print every kernel key the benchmark would use, one per\n"
          "                  line, and exit (no GPU needed)\n"
          "  --help          this text\n"
          "\n"
          "Exit status: 0 ok, 1 a check or GPU call failed, 2 usage, 3 no GPU.\n",
          FIRST_USE_RUNS, DECODE_DEFAULT_LAYERS, GEMV_RUNS, DECODE_MIN_RUNS, PTXGEN_GEMV_MAX_M,
          QUICK_RUNS);
}

static bool parse_u32(const char *text, uint32_t *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(text, &end, 10);
  if (errno || end == text || *end || text[0] == '-' || v > UINT32_MAX)
    return false;
  *out = (uint32_t)v;
  return true;
}

/* "NxK,NxK": each shape checked against the generator's limits. */
static bool parse_shapes(char *list, options *opt)
{
  opt->shape_count = 0;
  for (char *save = NULL, *item = strtok_r(list, ",", &save); item;
       item = strtok_r(NULL, ",", &save)) {
    char *x = strchr(item, 'x'), *type = strchr(item, ':');
    shape s = {.type = PTXQ_TYPE_Q4_K};
    if (!x || opt->shape_count == MAX_SHAPES)
      return false;
    *x = '\0';
    if (type) {
      *type++ = '\0';
      if (!strcmp(type, "q6k"))
        s.type = PTXQ_TYPE_Q6_K;
      else if (strcmp(type, "q4k"))
        return false;
    }
    if (!parse_u32(item, &s.n) || !parse_u32(x + 1, &s.k))
      return false;
    ptxgen_spec spec = {.kind = gemv_kind(s.type), .sm = 90, .k = s.k, .n = s.n, .m = 1};
    char msg[256];
    if (ptxgen_spec_validate(&spec, msg, sizeof msg) != PTXGEN_OK) {
      fprintf(stderr, "ptxq-bench: shape %ux%u: %s\n", s.n, s.k, msg);
      return false;
    }
    opt->shapes[opt->shape_count++] = s;
  }
  return opt->shape_count > 0;
}

static bool parse_ms(char *list, options *opt)
{
  opt->m_count = 0;
  for (char *save = NULL, *item = strtok_r(list, ",", &save); item;
       item = strtok_r(NULL, ",", &save)) {
    uint32_t m;
    if (!parse_u32(item, &m) || m < 1 || m > PTXGEN_GEMV_MAX_M || opt->m_count == MAX_MS)
      return false;
    opt->ms[opt->m_count++] = m;
  }
  return opt->m_count > 0;
}

/* "gemv,act,rope,decode,gen,first": the KERNELS_* bits; 0 if the list names anything else. */
static unsigned parse_kernels(char *list)
{
  static const struct {
    const char *name;
    unsigned bit;
  } names[] = {{"gemv", KERNELS_GEMV}, {"act", KERNELS_ACT}, {"rope", KERNELS_ROPE},
               {"decode", KERNELS_DECODE}, {"gen", KERNELS_GEN}, {"first", KERNELS_FIRST}};
  unsigned kernels = 0;
  for (char *save = NULL, *item = strtok_r(list, ",", &save); item;
       item = strtok_r(NULL, ",", &save)) {
    size_t i = 0;
    while (i < sizeof names / sizeof names[0] && strcmp(item, names[i].name))
      i++;
    if (i == sizeof names / sizeof names[0])
      return 0;
    kernels |= names[i].bit;
  }
  return kernels;
}

/* Returns 0, or the exit status to leave with (-1: --help, exit 0). */
static int parse_options(int argc, char **argv, options *opt)
{
  bool runs_given = false, ms_given = false;
  *opt = (options){.runs = GEMV_RUNS, .ceiling_runs = CEILING_RUNS, .kernels = KERNELS_ALL,
                   .layers = DECODE_DEFAULT_LAYERS};
  memcpy(opt->shapes, default_shapes, sizeof default_shapes);
  opt->shape_count = sizeof default_shapes / sizeof default_shapes[0];
  memcpy(opt->ms, default_ms, sizeof default_ms);
  opt->m_count = sizeof default_ms / sizeof default_ms[0];

  for (int i = 1; i < argc; i++) {
    const char *arg = argv[i];
    char *value = i + 1 < argc ? argv[i + 1] : NULL;
    bool takes_value = !strcmp(arg, "--json") || !strcmp(arg, "--reps") ||
                       !strcmp(arg, "--shapes") || !strcmp(arg, "--m") || !strcmp(arg, "--sm") ||
                       !strcmp(arg, "--seed") || !strcmp(arg, "--kernels") ||
                       !strcmp(arg, "--layers");
    if (takes_value && !value) {
      fprintf(stderr, "ptxq-bench: %s needs a value\n", arg);
      return EXIT_USAGE;
    }
    uint32_t number = 0;
    if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) {
      usage(stdout);
      return -1;
    } else if (!strcmp(arg, "--json")) {
      opt->json_path = value;
    } else if (!strcmp(arg, "--reps")) {
      if (!parse_u32(value, &number) || number < 1 || number > 100000) {
        fprintf(stderr, "ptxq-bench: --reps %s: want a count in 1..100000\n", value);
        return EXIT_USAGE;
      }
      opt->runs = (int)number;
      runs_given = true;
    } else if (!strcmp(arg, "--shapes")) {
      if (!parse_shapes(value, opt)) {
        fprintf(stderr, "ptxq-bench: --shapes: want NxK[,NxK...] (at most %d), "
                        "k a multiple of 256\n", MAX_SHAPES);
        return EXIT_USAGE;
      }
    } else if (!strcmp(arg, "--m")) {
      if (!parse_ms(value, opt)) {
        fprintf(stderr, "ptxq-bench: --m %s: want a list of batch sizes in 1..%u\n", value,
                PTXGEN_GEMV_MAX_M);
        return EXIT_USAGE;
      }
      ms_given = true;
    } else if (!strcmp(arg, "--kernels")) {
      if (!(opt->kernels = parse_kernels(value))) {
        fprintf(stderr,
                "ptxq-bench: --kernels: want a list of gemv, act, rope, decode, gen, first\n");
        return EXIT_USAGE;
      }
    } else if (!strcmp(arg, "--layers")) {
      if (!parse_u32(value, &number) || number < 1 || number > DECODE_MAX_LAYERS) {
        fprintf(stderr, "ptxq-bench: --layers %s: want a count in 1..%u\n", value,
                DECODE_MAX_LAYERS);
        return EXIT_USAGE;
      }
      opt->layers = number;
    } else if (!strcmp(arg, "--sm")) {
      if (!parse_u32(value, &number) || !ptxgen_ptx_version(number)) {
        fprintf(stderr, "ptxq-bench: --sm %s: not a supported target\n", value);
        return EXIT_USAGE;
      }
      opt->sm = number;
    } else if (!strcmp(arg, "--seed")) {
      char *end;
      errno = 0;
      opt->seed = strtoull(value, &end, 10);
      if (errno || end == value || *end || value[0] == '-' || !opt->seed) {
        fprintf(stderr, "ptxq-bench: --seed %s: want a positive integer\n", value);
        return EXIT_USAGE;
      }
    } else if (!strcmp(arg, "--list-keys")) {
      opt->list_keys = true;
    } else if (!strcmp(arg, "--quick")) {
      opt->quick = true;
    } else if (!strcmp(arg, "--tensor-cores")) {
      opt->tensor_cores = true;
    } else {
      fprintf(stderr, "ptxq-bench: unknown argument '%s' (try --help)\n", arg);
      return EXIT_USAGE;
    }
    if (takes_value)
      i++;
  }
  if (opt->quick) {
    opt->ceiling_runs = QUICK_RUNS;
    if (!runs_given)
      opt->runs = QUICK_RUNS;
  }
  /* An explicit --m narrows every kernel; the activation and RoPE limits
   * (PTXGEN_ACT_MAX_M, PTXGEN_ROPE_MAX_M) equal the GEMV's. */
  if (ms_given) {
    memcpy(opt->op_ms, opt->ms, sizeof opt->ms);
    opt->op_m_count = opt->m_count;
    memcpy(opt->decode_ms, opt->ms, sizeof opt->ms);
    opt->decode_m_count = opt->m_count;
  } else {
    memcpy(opt->op_ms, default_op_ms, sizeof default_op_ms);
    opt->op_m_count = sizeof default_op_ms / sizeof default_op_ms[0];
    memcpy(opt->decode_ms, default_decode_ms, sizeof default_decode_ms);
    opt->decode_m_count = sizeof default_decode_ms / sizeof default_decode_ms[0];
  }
  return 0;
}

/* The keys --kernels first measures, a few of those the other rows use: the
 * Q4_K GEMV of 4096x4096 and 14336x4096 at m = 1 and 8, the decode step's
 * q/k/v kernel with RoPE and its gate/up SwiGLU kernel (as decode.c lists
 * them) and silu and RoPE, at m = 1. */
static int first_use_keys(FILE *out, uint32_t sm)
{
  static const uint32_t ns[] = {4096, 14336}, ms[] = {1, 8}, decode_m = 1;
  char key[128];
  int rc = 0;
  for (size_t i = 0; i < 2 && !rc; i++)
    for (size_t j = 0; j < 2 && !rc; j++)
      if (!(rc = format_key(PTXGEN_KIND_Q4K_GEMV, 4096, ns[i], ms[j], sm, key, sizeof key)))
        fprintf(out, "%s\n", key);
  char *step = NULL;
  size_t step_len = 0;
  FILE *mem = rc ? NULL : open_memstream(&step, &step_len);
  if (!rc && (!mem || decode_list_keys(mem, sm, 1, &decode_m, 1, false)))
    rc = EXIT_FAILED;
  if (mem && fclose(mem) != 0)
    rc = EXIT_FAILED;
  for (char *line = step, *next; !rc && line && *line; line = next) {
    next = line + strcspn(line, "\n");
    if (*next)
      *next++ = '\0';
    if (strstr(line, ",rope=") || strstr(line, ",glu="))
      fprintf(out, "%s\n", line);
  }
  free(step);
  if (!rc && !(rc = format_key(PTXGEN_KIND_SILU, 0, ACT_N, 1, sm, key, sizeof key)))
    fprintf(out, "%s\n", key);
  if (!rc && !(rc = rope_key(1, sm, key, sizeof key)))
    fprintf(out, "%s\n", key);
  return rc;
}

/* The keys of the kinds in `kernels` (gen has none of its own). */
static int list_keys(FILE *out, const options *opt, unsigned kernels)
{
  uint32_t sm = opt->sm ? opt->sm : 90;
  char key[128];
  read_key(sm, READ_BYTES, key, sizeof key);
  fprintf(out, "%s\n", key);
  for (size_t s = 0; s < opt->shape_count && (kernels & KERNELS_GEMV); s++) {
    const shape *sh = &opt->shapes[s];
    for (size_t j = 0; j < opt->m_count; j++) {
      int rc = gemv_key(sh->type, sh->k, sh->n, opt->ms[j], sm, opt->tensor_cores, false, key, sizeof key);
      if (rc)
        return rc;
      fprintf(out, "%s\n", key);
    }
    size_t weight_bytes; /* the shape's read probe (bench_read_probe) */
    if (ptxq_weight_bytes(sh->type, sh->k, sh->n, &weight_bytes) != PTXQ_OK)
      return EXIT_FAILED;
    read_key(sm, weight_bytes, key, sizeof key);
    fprintf(out, "%s\n", key);
  }
  for (size_t a = 0; a < ACT_KINDS && (kernels & KERNELS_ACT); a++)
    for (size_t j = 0; j < opt->op_m_count; j++) {
      int rc = act_key(&act_defs[a], opt->op_ms[j], sm, key, sizeof key);
      if (rc)
        return rc;
      fprintf(out, "%s\n", key);
    }
  for (size_t j = 0; j < opt->op_m_count && (kernels & KERNELS_ROPE); j++) {
    int rc = rope_key(opt->op_ms[j], sm, key, sizeof key);
    if (rc)
      return rc;
    fprintf(out, "%s\n", key);
  }
  if (kernels & KERNELS_FIRST) {
    int rc = first_use_keys(out, sm);
    if (rc)
      return rc;
  }
  if (kernels & KERNELS_DECODE)
    return decode_list_keys(out, sm, opt->layers, opt->decode_ms, opt->decode_m_count, opt->tensor_cores) ? EXIT_FAILED : 0;
  return 0;
}

/* ---- timing ------------------------------------------------------------- */

static int ensure_events(bench *b, int count)
{
  if (count <= b->event_count)
    return 0;
  ptxq_event **start = realloc(b->start, (size_t)count * sizeof *start);
  if (start)
    b->start = start;
  ptxq_event **end = realloc(b->end, (size_t)count * sizeof *end);
  if (end)
    b->end = end;
  float *ms = realloc(b->ms, (size_t)count * sizeof *ms);
  if (ms)
    b->ms = ms;
  if (!start || !end || !ms) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    return EXIT_FAILED;
  }
  for (; b->event_count < count; b->event_count++) {
    int st = ptxq_event_create(b->ctx, &b->start[b->event_count]);
    if (st)
      return report_failure(b->ctx, "creating an event", st);
    st = ptxq_event_create(b->ctx, &b->end[b->event_count]);
    if (st) {
      ptxq_event_destroy(b->ctx, b->start[b->event_count]);
      return report_failure(b->ctx, "creating an event", st);
    }
  }
  return 0;
}

static int launch_read(bench *b)
{
  void *params[] = {&b->read_buf, &b->sink};
  int st = ptxq_kernel_launch(b->ctx, b->read_key, params);
  return st ? report_failure(b->ctx, "launching the read kernel", st) : 0;
}

/* Per-launch event pairs measure the GPU alone only while the stream has a
 * backlog: if the GPU catches up with the host, the start event fires and
 * the kernel waits for the host's next call. Read passes queued ahead keep
 * the GPU busy for longer than the host takes to enqueue `launches`
 * (budgeting 20 us of host time per timed launch). On an H100 with a fast
 * host this changed no median by more than noise (2026-11-24); it guards
 * slower hosts and shorter kernels. */
static int queue_backlog(bench *b, int launches)
{
  int passes = (int)ceil(launches * 0.020 / b->read_ms);
  passes = passes < 1 ? 1 : passes > 64 ? 64 : passes;
  for (int i = 0; i < passes; i++) {
    int rc = launch_read(b);
    if (rc)
      return rc;
  }
  return 0;
}

/* One operation the timing loop repeats; index counts launches from 0. */
typedef int (*launch_fn)(bench *b, void *arg, int index);

/* `runs` launches each between its own event pair; *median receives the
 * median in ms. Busy (time_launches): a warm-up and a backlog of read passes
 * queued ahead keep the GPU from waiting on the host, so a pair measures the
 * kernel on the GPU. Idle (time_launches_idle): the stream is synchronised
 * before each launch, so a pair also holds the host's launch of the
 * kernel: the end-to-end cost of one small op. */
static int time_event_pairs(bench *b, launch_fn launch, void *arg, int runs, bool idle, double *median)
{
  int rc = ensure_events(b, runs);
  if (rc)
    return rc;
  int index = 0;
  if (!idle) {
    if (b->read_ms > 0 && (rc = queue_backlog(b, WARMUP_RUNS + runs)))
      return rc;
    for (int i = 0; i < WARMUP_RUNS; i++)
      if ((rc = launch(b, arg, index++)))
        return rc;
  }
  for (int i = 0; i < runs; i++) {
    int st = idle ? ptxq_sync(b->ctx) : 0;
    if (!st)
      st = ptxq_event_record(b->ctx, b->start[i]);
    if (st)
      return report_failure(b->ctx, "recording an event", st);
    if ((rc = launch(b, arg, index++)))
      return rc;
    if ((st = ptxq_event_record(b->ctx, b->end[i])))
      return report_failure(b->ctx, "recording an event", st);
  }
  for (int i = 0; i < runs; i++) {
    int st = ptxq_event_elapsed_ms(b->ctx, b->start[i], b->end[i], &b->ms[i]);
    if (st)
      return report_failure(b->ctx, "reading an event pair", st);
  }
  *median = median_ms(b->ms, runs);
  return 0;
}

static int time_launches(bench *b, launch_fn launch, void *arg, int runs, double *median)
{
  return time_event_pairs(b, launch, arg, runs, false, median);
}

static int time_launches_idle(bench *b, launch_fn launch, void *arg, int runs, double *median)
{
  return time_event_pairs(b, launch, arg, runs, true, median);
}

/* `runs` launches back to back between one event pair, started with the
 * GPU idle: the time per launch of a stream of small ops, launch cost
 * included (the GPU cannot run them faster than the host issues them). */
static int time_launches_stream(bench *b, launch_fn launch, void *arg, int runs, double *per_launch)
{
  int rc = ensure_events(b, 1);
  if (rc)
    return rc;
  int st = ptxq_sync(b->ctx);
  if (!st)
    st = ptxq_event_record(b->ctx, b->start[0]);
  if (st)
    return report_failure(b->ctx, "recording an event", st);
  for (int i = 0; i < runs; i++)
    if ((rc = launch(b, arg, i)))
      return rc;
  if ((st = ptxq_event_record(b->ctx, b->end[0])) ||
      (st = ptxq_event_elapsed_ms(b->ctx, b->start[0], b->end[0], &b->ms[0])))
    return report_failure(b->ctx, "timing a stream of launches", st);
  *per_launch = b->ms[0] / runs;
  return 0;
}

/* A graph of GRAPH_OPS launches, replayed `runs` times, each replay between
 * its own event pair: the per-op cost once launch overhead is paid by the
 * graph (how a decode step runs). *per_launch receives median / GRAPH_OPS. */
#define GRAPH_OPS 100
static int time_launches_graph(bench *b, launch_fn launch, void *arg, int runs, double *per_launch)
{
  int rc = ensure_events(b, runs);
  if (rc)
    return rc;
  ptxq_graph *graph = NULL;
  int st = ptxq_capture_begin(b->ctx);
  if (st)
    return report_failure(b->ctx, "beginning a capture", st);
  for (int i = 0; i < GRAPH_OPS && !rc; i++)
    rc = launch(b, arg, i);
  if ((st = ptxq_capture_end(b->ctx, &graph)) || rc) {
    ptxq_graph_destroy(b->ctx, graph);
    return rc ? rc : report_failure(b->ctx, "ending a capture", st);
  }
  if ((st = ptxq_graph_launch(b->ctx, graph))) /* warm-up */
    goto fail;
  for (int i = 0; i < runs; i++)
    if ((st = ptxq_event_record(b->ctx, b->start[i])) || (st = ptxq_graph_launch(b->ctx, graph)) ||
        (st = ptxq_event_record(b->ctx, b->end[i])))
      goto fail;
  for (int i = 0; i < runs; i++)
    if ((st = ptxq_event_elapsed_ms(b->ctx, b->start[i], b->end[i], &b->ms[i])))
      goto fail;
  ptxq_graph_destroy(b->ctx, graph);
  *per_launch = median_ms(b->ms, runs) / GRAPH_OPS;
  return 0;
fail:
  ptxq_graph_destroy(b->ctx, graph);
  return report_failure(b->ctx, "replaying a graph", st);
}

/* ---- (a) the read ceiling ----------------------------------------------- */

static int read_pass(bench *b, void *arg, int index)
{
  (void)arg;
  (void)index;
  return launch_read(b);
}

static int measure_ceiling(bench *b, const options *opt, uint64_t *rng)
{
  int st = PTXQ_ERR_DEVICE_MEMORY;
  for (b->read_bytes = READ_BYTES; b->read_bytes >= READ_MIN_BYTES; b->read_bytes /= 2)
    if ((st = ptxq_alloc(b->ctx, b->read_bytes, &b->read_buf)) != PTXQ_ERR_DEVICE_MEMORY)
      break;
  if (st)
    return report_failure(b->ctx, "allocating the read buffer", st);
  if ((st = ptxq_alloc(b->ctx, 16, &b->sink)))
    return report_failure(b->ctx, "allocating the read sink", st);
  if (b->read_bytes != READ_BYTES)
    fprintf(stderr, "ptxq-bench: device memory is short: read ceiling over %zu MiB\n",
            b->read_bytes >> 20);

  const size_t chunk = 64u << 20;
  uint8_t *host = malloc(chunk);
  if (!host) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    return EXIT_FAILED;
  }
  for (size_t off = 0; off < b->read_bytes && !st; off += chunk) {
    fill_random_bytes(rng, host, chunk);
    st = ptxq_upload(b->ctx, b->read_buf + off, host, chunk);
  }
  free(host);
  if (st)
    return report_failure(b->ctx, "uploading the read buffer", st);

  read_key(b->info.target_sm, b->read_bytes, b->read_key, sizeof b->read_key);
  ptxq_kernel_info kernel;
  if ((st = ptxq_kernel_get(b->ctx, b->read_key, &kernel)))
    return report_failure(b->ctx, b->read_key, st);

  int rc = time_launches(b, read_pass, NULL, opt->ceiling_runs, &b->read_ms);
  if (rc)
    return rc;
  b->ceiling_gbps = (double)b->read_bytes / (b->read_ms * 1e-3) / 1e9;
  printf("read ceiling: %s, %.2f GiB of random bytes: median %.3f ms of %d runs = %.1f GB/s\n\n",
         b->read_key, (double)b->read_bytes / (1u << 30), b->read_ms, opt->ceiling_runs,
         b->ceiling_gbps);
  return 0;
}

/* ---- (b) the Q4_K GEMV -------------------------------------------------- */

typedef struct {
  char (*names)[32]; /* the copies' weight names */
  int copies;
  bool cold;
  ptxq_dev x, y;
  uint32_t m;
} gemv_launch;

static int gemv_pass(bench *b, void *arg, int index)
{
  gemv_launch *g = arg;
  /* Hot reuses the last copy, whose bytes the host still holds for the check. */
  int copy = g->cold ? index % g->copies : g->copies - 1;
  int st = ptxq_gemv(b->ctx, g->names[copy], g->x, g->y, g->m);
  return st ? report_failure(b->ctx, g->names[copy], st) : 0;
}

/* Compares sampled rows of y[m][n] (first and last included) with the fp64
 * reference. The error is relative to max(|y_ref|, ||w.*x||_2): the second
 * term, the size of a row's products, keeps an output that cancels to near
 * zero from reading as a large relative error. Returns the largest error
 * (infinity for NaN or a failed reference call). */
static double check_rows(const uint8_t *weight, shape s, uint32_t m, const float *x,
                         const float *y, float *row_values)
{
  size_t row_bytes = (size_t)(s.k / PTXQ_QK_K) * block_bytes(s.type);
  uint32_t samples = s.n < CHECK_ROWS ? s.n : CHECK_ROWS;
  double worst = 0;
  for (uint32_t i = 0; i < samples; i++) {
    uint32_t row = samples == 1 ? 0 : (uint32_t)((uint64_t)i * (s.n - 1) / (samples - 1));
    const uint8_t *w = weight + row * row_bytes;
    double want[MAX_ROWS];
    if (ptxq_ref_gemv(s.type, w, s.k, 1, x, m, want) ||
        (s.type == PTXQ_TYPE_Q6_K ? ptxq_ref_dequantize_q6k(w, s.k / PTXQ_QK_K, row_values)
                                  : ptxq_ref_dequantize_q4k(w, s.k / PTXQ_QK_K, row_values)))
      return INFINITY;
    for (uint32_t j = 0; j < m; j++) {
      double size = 0;
      for (uint32_t c = 0; c < s.k; c++) {
        double p = (double)row_values[c] * x[(size_t)j * s.k + c];
        size += p * p;
      }
      double scale = fmax(fabs(want[j]), sqrt(size));
      double got = y[(size_t)j * s.n + row];
      double err = fabs(got - want[j]) / (scale > 0 ? scale : 1);
      if (!(err <= worst)) {
        worst = isnan(err) ? INFINITY : err;
        if (!(err <= MAX_REL_ERR))
          fprintf(stderr, "ptxq-bench: %s %ux%u m=%u: row %u batch %u: got %.9g, "
                          "want %.9g (rel err %.3g)\n", gemv_kind_name(s.type), s.n, s.k, m, row, j, got,
                  want[j], err);
      }
    }
  }
  return worst;
}

static void print_result(const result *r)
{
  char check[32];
  if (r->read_probe)
    snprintf(check, sizeof check, "- (reads the weight's bytes)");
  else
    snprintf(check, sizeof check, "%s %.1e", r->ok ? "ok" : "FAIL", r->max_rel_err);
  printf("%-11s %7u %6u %2u  %-10s %10.2f %8.1f %6.1f  %s\n", result_kernel_name(r), r->s.n, r->s.k, r->m,
         gemv_mode_names[r->mode], r->median_us, r->gbps, r->pct_of_ceiling, check);
  fflush(stdout);
}

typedef struct {
  char key[96];
  ptxq_dev src; /* the read buffer */
  size_t slice; /* bytes between the slices launches rotate through */
  int slices;
} read_probe_launch;

static int read_probe_pass(bench *b, void *arg, int index)
{
  read_probe_launch *p = arg;
  ptxq_dev src = p->src + (ptxq_dev)(index % p->slices) * p->slice;
  void *params[] = {&src, &b->sink};
  int st = ptxq_kernel_launch(b->ctx, p->key, params);
  return st ? report_failure(b->ctx, p->key, st) : 0;
}

/* The read kernel over a shape's weight bytes, cold: launch i reads slice
 * i mod slices of the read buffer (2 GiB, many times the L2), timed like the
 * cold GEMV rows, then in a graph like the graph-cold rows. Appends two
 * rows, unless the read buffer holds fewer than two slices (then it says
 * so). */
static int bench_read_probe(bench *b, const options *opt, shape s, size_t weight_bytes,
                            result *results, size_t *result_count)
{
  read_probe_launch p = {.src = b->read_buf, .slice = (weight_bytes + 4095) & ~(size_t)4095};
  p.slices = (int)(b->read_bytes / p.slice);
  if (p.slices < 2) {
    fprintf(stderr, "ptxq-bench: %ux%u: the read buffer holds under two slices of %zu bytes: "
                    "no stream_read row\n", s.n, s.k, weight_bytes);
    return 0;
  }
  read_key(b->info.target_sm, weight_bytes, p.key, sizeof p.key);
  ptxq_kernel_info kernel = {0};
  int st = ptxq_kernel_get(b->ctx, p.key, &kernel);
  if (st)
    return report_failure(b->ctx, p.key, st);
  const double bytes = (double)(weight_bytes / 16 * 16); /* whole 16-byte vectors */
  static const gemv_mode modes[] = {GEMV_COLD, GEMV_GRAPH_COLD};
  for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
    double ms;
    int rc = modes[i] == GEMV_GRAPH_COLD
                 ? time_launches_graph(b, read_probe_pass, &p, opt->runs, &ms)
                 : time_launches(b, read_probe_pass, &p, opt->runs, &ms);
    if (rc)
      return rc;
    result *r = &results[(*result_count)++];
    *r = (result){.s = s, .m = 0, .mode = modes[i], .copies = p.slices, .bytes = bytes,
                  .median_us = ms * 1e3, .gbps = bytes / (ms * 1e-3) / 1e9,
                  .registers = kernel.registers, .spill_bytes = kernel.spill_bytes, .ok = true,
                  .read_probe = true};
    r->pct_of_ceiling = 100 * r->gbps / b->ceiling_gbps;
    print_result(r);
  }
  return 0;
}

/* Uploads a shape's copies, times each m cold, hot and in a graph, checks,
 * frees the copies; then the read probe of the shape. Appends to results
 * (room for GEMV_MODES * opt->m_count + 2). */
static int bench_shape(bench *b, const options *opt, shape s, uint64_t *rng, result *results,
                       size_t *result_count)
{
  size_t weight_bytes;
  int st = ptxq_weight_bytes(s.type, s.k, s.n, &weight_bytes);
  if (st) {
    fprintf(stderr, "ptxq-bench: %ux%u is not a %s shape\n", s.n, s.k, gemv_kind_name(s.type));
    return EXIT_FAILED;
  }

  uint64_t l2 = b->info.l2_bytes ? b->info.l2_bytes : L2_FALLBACK_BYTES;
  uint64_t budget = b->info.total_memory / 2; /* leave room for everything else */
  int copies = (int)((4 * l2 + weight_bytes - 1) / weight_bytes);
  copies = copies < 2 ? 2 : copies;
  if ((uint64_t)copies * weight_bytes > budget) {
    copies = (int)(budget / weight_bytes) < 1 ? 1 : (int)(budget / weight_bytes);
    fprintf(stderr, "ptxq-bench: %ux%u: only %d cold copies fit in half the device memory\n",
            s.n, s.k, copies);
  }

  char (*names)[32] = calloc((size_t)copies, sizeof *names);
  uint8_t *weight = malloc(weight_bytes);
  float *x = malloc((size_t)MAX_ROWS * s.k * sizeof *x);
  float *y = malloc((size_t)MAX_ROWS * s.n * sizeof *y);
  float *row_values = malloc((size_t)s.k * sizeof *row_values);
  ptxq_dev x_dev = 0, y_dev = 0;
  int uploaded = 0, rc = 0;
  if (!names || !weight || !x || !y || !row_values) {
    fprintf(stderr, "ptxq-bench: out of host memory for %ux%u\n", s.n, s.k);
    rc = EXIT_FAILED;
    goto done;
  }

  /* Each copy gets its own random bytes: a kernel reading the wrong copy
   * fails the check. The host keeps the last copy's. */
  for (; uploaded < copies; uploaded++) {
    snprintf(names[uploaded], sizeof names[uploaded], "bench.w%d", uploaded);
    if (s.type == PTXQ_TYPE_Q6_K)
      fill_random_q6k(rng, weight, weight_bytes / PTXQ_Q6_K_BLOCK_BYTES);
    else
      fill_random_q4k(rng, weight, weight_bytes / PTXQ_Q4_K_BLOCK_BYTES);
    st = ptxq_weight_upload(b->ctx, names[uploaded], s.type, s.k, s.n, weight,
                            weight_bytes);
    if (st) {
      rc = report_failure(b->ctx, "uploading a weight copy", st);
      goto done;
    }
  }
  for (size_t i = 0; i < (size_t)MAX_ROWS * s.k; i++)
    x[i] = (float)(2 * rng_unit(rng) - 1);
  if ((st = ptxq_alloc(b->ctx, (size_t)MAX_ROWS * s.k * sizeof *x, &x_dev)) ||
      (st = ptxq_alloc(b->ctx, (size_t)MAX_ROWS * s.n * sizeof *y, &y_dev)) ||
      (st = ptxq_upload(b->ctx, x_dev, x, (size_t)MAX_ROWS * s.k * sizeof *x))) {
    rc = report_failure(b->ctx, "preparing x and y", st);
    goto done;
  }

  for (size_t j = 0; j < opt->m_count; j++) {
    uint32_t m = opt->ms[j];
    char key[128];
    ptxq_kernel_info kernel = {0};
    /* Generation and JIT stay out of the timing. */
    if ((rc = gemv_key(s.type, s.k, s.n, m, b->info.target_sm, opt->tensor_cores, true, key, sizeof key)))
      goto done;
    if ((st = ptxq_gemv_prepare(b->ctx, names[0], m)) ||
        (st = ptxq_kernel_get(b->ctx, key, &kernel))) {
      rc = report_failure(b->ctx, key, st);
      goto done;
    }
    for (gemv_mode mode = GEMV_COLD; mode < GEMV_MODES; mode++) {
      const bool cold = gemv_mode_cold(mode);
      gemv_launch g = {names, copies, cold, x_dev, y_dev, m};
      result *r = &results[(*result_count)++];
      *r = (result){.s = s, .m = m, .mode = mode, .copies = cold ? copies : 1,
                    .registers = kernel.registers, .spill_bytes = kernel.spill_bytes,
                    .tc = opt->tensor_cores};
      double ms;
      rc = gemv_mode_graph(mode) ? time_launches_graph(b, gemv_pass, &g, opt->runs, &ms)
                                 : time_launches(b, gemv_pass, &g, opt->runs, &ms);
      if (rc)
        goto done;
      r->bytes = (double)weight_bytes + 4.0 * m * s.k + 4.0 * m * s.n;
      r->median_us = ms * 1e3;
      r->gbps = r->bytes / (ms * 1e-3) / 1e9;
      r->pct_of_ceiling = 100 * r->gbps / b->ceiling_gbps;

      /* One more launch on the copy the host holds, then the check. */
      g.cold = false;
      memset(y, 0xFF, (size_t)m * s.n * sizeof *y); /* NaN: unwritten rows fail */
      if ((rc = gemv_pass(b, &g, 0)))
        goto done;
      if ((st = ptxq_download(b->ctx, y, y_dev, (size_t)m * s.n * sizeof *y))) {
        rc = report_failure(b->ctx, "downloading y", st);
        goto done;
      }
      r->max_rel_err = check_rows(weight, s, m, x, y, row_values);
      r->ok = r->max_rel_err <= MAX_REL_ERR;
      print_result(r);
    }
  }
  rc = bench_read_probe(b, opt, s, weight_bytes, results, result_count);

done:
  if (y_dev)
    ptxq_free(b->ctx, y_dev);
  if (x_dev)
    ptxq_free(b->ctx, x_dev);
  for (int i = 0; i < uploaded; i++)
    ptxq_weight_free(b->ctx, names[i]);
  free(row_values);
  free(y);
  free(x);
  free(weight);
  free(names);
  return rc;
}

/* ---- (c) activations and (d) RoPE --------------------------------------- */

typedef struct {
  const char *key;
  void **params;
} key_launch;

static int key_pass(bench *b, void *arg, int index)
{
  (void)index;
  key_launch *l = arg;
  int st = ptxq_kernel_launch(b->ctx, l->key, l->params);
  return st ? report_failure(b->ctx, l->key, st) : 0;
}

/* Builds r->key's kernel (generation and JIT stay out of the timing), times
 * hot launches of it with params and fills r's timing fields. */
static int time_op(bench *b, const options *opt, void **params, double bytes, op_result *r)
{
  ptxq_kernel_info kernel;
  int st = ptxq_kernel_get(b->ctx, r->key, &kernel);
  if (st)
    return report_failure(b->ctx, r->key, st);
  r->registers = kernel.registers;
  r->spill_bytes = kernel.spill_bytes;
  key_launch l = {r->key, params};
  double ms;
  int rc = time_launches(b, key_pass, &l, opt->runs, &ms);
  if (rc)
    return rc;
  r->bytes = bytes;
  r->median_us = ms * 1e3;
  r->gbps = bytes / (ms * 1e-3) / 1e9;
  r->pct_of_ceiling = 100 * r->gbps / b->ceiling_gbps;
  if ((rc = time_launches_idle(b, key_pass, &l, opt->runs, &ms)))
    return rc;
  r->launch_us = ms * 1e3;
  if ((rc = time_launches_stream(b, key_pass, &l, opt->runs, &ms)))
    return rc;
  r->stream_us = ms * 1e3;
  if ((rc = time_launches_graph(b, key_pass, &l, opt->runs < 20 ? opt->runs : 20, &ms)))
    return rc;
  r->graph_us = ms * 1e3;
  return 0;
}

/* after_gemv: a blank line parts this table from the GEMV's. */
static void print_op_header(bool after_gemv)
{
  printf("%s%-9s %-16s %2s  %-4s %10s %10s %10s %10s %8s %6s  %s\n", after_gemv ? "\n" : "", "kernel",
         "shape", "m", "mode", "median_us", "launch_us", "stream_us", "graph_us", "GB/s", "%ceil",
         "check (max err)");
  fflush(stdout);
}

static void print_op_result(const op_result *r)
{
  char shape[32], check[32];
  if (r->rope)
    snprintf(shape, sizeof shape, "(%u+%u)x%u", ROPE_HEADS, ROPE_KV_HEADS, ROPE_HEAD_DIM);
  else if (!r->n)
    snprintf(shape, sizeof shape, "empty kernel");
  else
    snprintf(shape, sizeof shape, "n=%u", r->n);
  snprintf(check, sizeof check, "%s %.1e", r->ok ? "ok" : "FAIL", r->max_err);
  printf("%-9s %-16s %2u  %-4s %10.2f %10.2f %10.2f %10.2f %8.1f %6.1f  %s\n", r->kernel, shape, r->m,
         "hot", r->median_us, r->launch_us, r->stream_us, r->graph_us, r->gbps, r->pct_of_ceiling, check);
  fflush(stdout);
}

static void fill_uniform(uint64_t *rng, float *v, size_t count, double range)
{
  for (size_t i = 0; i < count; i++)
    v[i] = (float)(range * (2 * rng_unit(rng) - 1));
}

/* Largest |y - ref| / (|ref| + ACT_ABS_TOL / ACT_REL_TOL), which is at most
 * ACT_REL_TOL exactly when |y - ref| <= ACT_REL_TOL |ref| + ACT_ABS_TOL:
 * one number that reads as a relative error where the absolute floor does
 * not matter. NaN counts as infinity. */
static double check_act(const op_result *r, const float *y, const double *want, size_t count)
{
  double worst = 0;
  int shown = 0;
  for (size_t i = 0; i < count; i++) {
    double err = fabs(y[i] - want[i]) / (fabs(want[i]) + ACT_ABS_TOL / ACT_REL_TOL);
    if (!(err <= ACT_REL_TOL) && shown++ < MAX_SHOWN_ERRORS)
      fprintf(stderr, "ptxq-bench: %s n=%u m=%u: row %zu value %zu: got %.9g, want %.9g\n",
              r->kernel, r->n, r->m, i / r->n, i % r->n, y[i], want[i]);
    if (!(err <= worst))
      worst = isnan(err) ? INFINITY : err;
  }
  return worst;
}

/* Each activation at each batch size: gelu, gelu_erf and silu read x (the
 * gate buffer), swiglu and geglu read gate and up; y is a separate buffer.
 * Appends to results (room for ACT_KINDS * opt->op_m_count). */
/* The floor under every small op: the same two timings of a kernel that
 * does nothing worth timing (one block reading 16 bytes). */
static int bench_floor(bench *b, const options *opt, op_result *results, size_t *result_count)
{
  op_result *r = &results[(*result_count)++];
  memset(r, 0, sizeof *r);
  r->kernel = "floor";
  r->m = 1;
  r->ok = true;
  snprintf(r->key, sizeof r->key, "stream_read:n=1,sm=%u", b->info.target_sm);
  void *params[] = {&b->read_buf, &b->sink};
  return time_op(b, opt, params, 16, r);
}

static int bench_acts(bench *b, const options *opt, uint64_t *rng, op_result *results,
                      size_t *result_count)
{
  uint32_t max_m = 1;
  for (size_t j = 0; j < opt->op_m_count; j++)
    max_m = opt->op_ms[j] > max_m ? opt->op_ms[j] : max_m;
  size_t cap = (size_t)max_m * ACT_N;
  float *gate = malloc(cap * sizeof *gate), *up = malloc(cap * sizeof *up);
  float *y = malloc(cap * sizeof *y);
  double *want = malloc(cap * sizeof *want);
  ptxq_dev gate_dev = 0, up_dev = 0, y_dev = 0;
  int st, rc = 0;
  if (!gate || !up || !y || !want) {
    fprintf(stderr, "ptxq-bench: out of host memory for the activations\n");
    rc = EXIT_FAILED;
    goto done;
  }
  fill_uniform(rng, gate, cap, ACT_RANGE);
  fill_uniform(rng, up, cap, ACT_RANGE);
  if ((st = ptxq_alloc(b->ctx, cap * sizeof *gate, &gate_dev)) ||
      (st = ptxq_alloc(b->ctx, cap * sizeof *up, &up_dev)) ||
      (st = ptxq_alloc(b->ctx, cap * sizeof *y, &y_dev)) ||
      (st = ptxq_upload(b->ctx, gate_dev, gate, cap * sizeof *gate)) ||
      (st = ptxq_upload(b->ctx, up_dev, up, cap * sizeof *up))) {
    rc = report_failure(b->ctx, "preparing the activation buffers", st);
    goto done;
  }

  void *unary[] = {&gate_dev, &y_dev}, *gated[] = {&gate_dev, &up_dev, &y_dev};
  for (size_t a = 0; a < ACT_KINDS; a++) {
    const act_def *def = &act_defs[a];
    for (size_t j = 0; j < opt->op_m_count; j++) {
      uint32_t m = opt->op_ms[j];
      size_t count = (size_t)m * ACT_N;
      op_result *r = &results[(*result_count)++];
      *r = (op_result){.kernel = def->name, .n = ACT_N, .m = m, .err_limit = ACT_REL_TOL};
      if ((rc = act_key(def, m, b->info.target_sm, r->key, sizeof r->key)))
        goto done;
      void **params = def->gated ? gated : unary;
      double bytes = 4.0 * (double)count * (def->gated ? 3 : 2); /* inputs + y */
      if ((rc = time_op(b, opt, params, bytes, r)))
        goto done;

      /* The check run writes over NaN: a value the kernel skips fails. */
      key_launch l = {r->key, params};
      memset(y, 0xFF, count * sizeof *y);
      if ((st = ptxq_upload(b->ctx, y_dev, y, count * sizeof *y)) ||
          (rc = key_pass(b, &l, 0)) ||
          (st = ptxq_download(b->ctx, y, y_dev, count * sizeof *y))) {
        rc = rc ? rc : report_failure(b->ctx, "checking an activation", st);
        goto done;
      }
      st = def->gated ? ptxq_ref_glu(def->ref_act, gate, up, want, count)
                      : ptxq_ref_act(def->ref_act, gate, want, count);
      r->max_err = st ? INFINITY : check_act(r, y, want, count);
      r->ok = r->max_err <= ACT_REL_TOL;
      print_op_result(r);
    }
  }

done:
  if (y_dev)
    ptxq_free(b->ctx, y_dev);
  if (up_dev)
    ptxq_free(b->ctx, up_dev);
  if (gate_dev)
    ptxq_free(b->ctx, gate_dev);
  free(want);
  free(y);
  free(up);
  free(gate);
  return rc;
}

/* Largest |got - want| over count values (NaN counts as infinity). */
static double check_rope(const op_result *r, const char *which, const float *got,
                         const double *want, size_t count)
{
  double worst = 0;
  int shown = 0;
  for (size_t i = 0; i < count; i++) {
    double err = fabs(got[i] - want[i]);
    if (!(err <= ROPE_ABS_TOL) && shown++ < MAX_SHOWN_ERRORS)
      fprintf(stderr, "ptxq-bench: rope m=%u: %s value %zu (token %zu): got %.9g, want %.9g\n",
              r->m, which, i, i / (count / r->m), got[i], want[i]);
    if (!(err <= worst))
      worst = isnan(err) ? INFINITY : err;
  }
  return worst;
}

/* RoPE at each batch size. It rotates in place, so the timed launches keep
 * rotating a scratch copy (norms are kept, the values stay unit-scale); the
 * check re-uploads q and k and rotates them once. Appends to results (room
 * for opt->op_m_count). */
static int bench_rope(bench *b, const options *opt, uint64_t *rng, op_result *results,
                      size_t *result_count)
{
  const size_t q_token = (size_t)ROPE_HEADS * ROPE_HEAD_DIM;
  const size_t k_token = (size_t)ROPE_KV_HEADS * ROPE_HEAD_DIM;
  uint32_t max_m = 1;
  for (size_t j = 0; j < opt->op_m_count; j++)
    max_m = opt->op_ms[j] > max_m ? opt->op_ms[j] : max_m;
  size_t q_cap = max_m * q_token, k_cap = max_m * k_token;
  float *q = malloc(q_cap * sizeof *q), *k = malloc(k_cap * sizeof *k);
  float *q_got = malloc(q_cap * sizeof *q_got), *k_got = malloc(k_cap * sizeof *k_got);
  double *q_want = malloc(q_cap * sizeof *q_want), *k_want = malloc(k_cap * sizeof *k_want);
  int32_t positions[PTXGEN_ROPE_MAX_M];
  ptxq_dev q_dev = 0, k_dev = 0, positions_dev = 0, no_freq_factors = 0;
  ptxq_rope_params p;
  int st, rc = 0;
  rope_ref_params(&p);
  if (!q || !k || !q_got || !k_got || !q_want || !k_want) {
    fprintf(stderr, "ptxq-bench: out of host memory for RoPE\n");
    rc = EXIT_FAILED;
    goto done;
  }
  fill_uniform(rng, q, q_cap, 1.0);
  fill_uniform(rng, k, k_cap, 1.0);
  for (uint32_t t = 0; t < max_m; t++)
    positions[t] = (int32_t)(rng_next(rng) % (ROPE_MAX_POSITION + 1u));
  if ((st = ptxq_alloc(b->ctx, q_cap * sizeof *q, &q_dev)) ||
      (st = ptxq_alloc(b->ctx, k_cap * sizeof *k, &k_dev)) ||
      (st = ptxq_alloc(b->ctx, max_m * sizeof *positions, &positions_dev)) ||
      (st = ptxq_upload(b->ctx, positions_dev, positions, max_m * sizeof *positions))) {
    rc = report_failure(b->ctx, "preparing the RoPE buffers", st);
    goto done;
  }

  void *params[] = {&q_dev, &k_dev, &positions_dev, &no_freq_factors};
  for (size_t j = 0; j < opt->op_m_count; j++) {
    uint32_t m = opt->op_ms[j];
    size_t q_count = m * q_token, k_count = m * k_token;
    op_result *r = &results[(*result_count)++];
    *r = (op_result){.kernel = "rope", .rope = true, .m = m, .err_limit = ROPE_ABS_TOL};
    if ((rc = rope_key(m, b->info.target_sm, r->key, sizeof r->key)))
      goto done;
    /* q and k read and written, positions read */
    double bytes = 2 * 4.0 * (double)(q_count + k_count) + 4.0 * m;
    if ((st = ptxq_upload(b->ctx, q_dev, q, q_count * sizeof *q)) ||
        (st = ptxq_upload(b->ctx, k_dev, k, k_count * sizeof *k))) {
      rc = report_failure(b->ctx, "uploading q and k", st);
      goto done;
    }
    if ((rc = time_op(b, opt, params, bytes, r)))
      goto done;

    key_launch l = {r->key, params};
    if ((st = ptxq_upload(b->ctx, q_dev, q, q_count * sizeof *q)) ||
        (st = ptxq_upload(b->ctx, k_dev, k, k_count * sizeof *k)) ||
        (rc = key_pass(b, &l, 0)) ||
        (st = ptxq_download(b->ctx, q_got, q_dev, q_count * sizeof *q_got)) ||
        (st = ptxq_download(b->ctx, k_got, k_dev, k_count * sizeof *k_got))) {
      rc = rc ? rc : report_failure(b->ctx, "checking RoPE", st);
      goto done;
    }
    if (ptxq_ref_rope(&p, NULL, positions, m, q, k, q_want, k_want)) {
      r->max_err = INFINITY;
    } else {
      double q_err = check_rope(r, "q", q_got, q_want, q_count);
      double k_err = check_rope(r, "k", k_got, k_want, k_count);
      r->max_err = fmax(q_err, k_err);
    }
    r->ok = r->max_err <= ROPE_ABS_TOL;
    print_op_result(r);
  }

done:
  if (positions_dev)
    ptxq_free(b->ctx, positions_dev);
  if (k_dev)
    ptxq_free(b->ctx, k_dev);
  if (q_dev)
    ptxq_free(b->ctx, q_dev);
  free(k_want);
  free(q_want);
  free(k_got);
  free(q_got);
  free(k);
  free(q);
  return rc;
}

/* ---- output ------------------------------------------------------------- */

static void json_string(FILE *f, const char *s)
{
  fputc('"', f);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
}

/* A JSON number, or null for what JSON cannot hold (infinity, NaN). */
static void json_number(FILE *f, double v)
{
  if (isfinite(v))
    fprintf(f, "%.3g", v);
  else
    fprintf(f, "null");
}

/* One activation or RoPE record: the fields that describe its shape, then
 * those every record has. */
static void json_op_record(FILE *f, const op_result *r)
{
  fprintf(f, "\n  {\"kernel\": \"%s\", \"key\": ", r->kernel);
  json_string(f, r->key);
  if (r->rope)
    fprintf(f, ", \"rope_mode\": \"neox\", \"heads\": %u, \"kv_heads\": %u, \"head_dim\": %u, "
               "\"n_dims\": %u, \"base\": %.0f",
            ROPE_HEADS, ROPE_KV_HEADS, ROPE_HEAD_DIM, ROPE_HEAD_DIM, (double)ROPE_BASE);
  else
    fprintf(f, ", \"n\": %u", r->n);
  fprintf(f,
          ", \"m\": %u, \"mode\": \"hot\", \"median_us\": %.3f, \"launch_us\": %.3f, \"stream_us\": %.3f, \"graph_us\": %.3f, \"gbps\": %.2f, "
          "\"pct_of_ceiling\": %.2f, \"bytes\": %.0f, \"registers\": %d, \"spill_bytes\": %d, "
          "\"max_err\": ",
          r->m, r->median_us, r->launch_us, r->stream_us, r->graph_us, r->gbps, r->pct_of_ceiling, r->bytes, r->registers,
          r->spill_bytes);
  json_number(f, r->max_err);
  fprintf(f, ", \"err_limit\": %g, \"check\": \"%s\"}", r->err_limit, r->ok ? "ok" : "FAIL");
}

/* Opens a JSON file for writing (saying why not) and dates it: UTC now. */
static FILE *open_json(const char *path, char date[32])
{
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "ptxq-bench: cannot write %s: %s\n", path, strerror(errno));
    return NULL;
  }
  time_t now = time(NULL);
  struct tm utc;
  strftime(date, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &utc));
  return f;
}

static int write_json(const char *path, const bench *b, const options *opt,
                      const result *results, size_t count, const op_result *ops,
                      size_t op_count, const decode_result *steps, size_t step_count,
                      const gen_result *gens, size_t gen_count, const first_use_result *firsts,
                      size_t first_count)
{
  char date[32];
  FILE *f = open_json(path, date);
  if (!f)
    return EXIT_FAILED;

  fprintf(f, "{\"device\": ");
  json_string(f, b->info.name);
  fprintf(f, ", \"ceiling_gbps\": %.2f, \"tensor_cores\": %s, \"gemv_idp\": %s, \"results\": [", b->ceiling_gbps,
          opt->tensor_cores ? "true" : "false", gemv_idp_switch() ? "true" : "false");
  for (size_t i = 0; i < count; i++) {
    const result *r = &results[i];
    fprintf(f,
            "%s\n  {\"kernel\": \"%s\", \"n\": %u, \"k\": %u, \"m\": %u, "
            "\"mode\": \"%s\", \"median_us\": %.3f, \"gbps\": %.2f, "
            "\"pct_of_ceiling\": %.2f, \"bytes\": %.0f, \"copies\": %d, "
            "\"registers\": %d, \"spill_bytes\": %d, \"max_rel_err\": ",
            i ? "," : "", result_kernel_name(r), r->s.n, r->s.k, r->m, gemv_mode_names[r->mode], r->median_us,
            r->gbps, r->pct_of_ceiling, r->bytes, r->copies, r->registers, r->spill_bytes);
    if (isfinite(r->max_rel_err) && !r->read_probe) /* JSON has no infinity */
      fprintf(f, "%.3g", r->max_rel_err);
    else
      fprintf(f, "null");
    fprintf(f, ", \"check\": \"%s\"}", r->read_probe ? "none" : r->ok ? "ok" : "FAIL");
  }
  for (size_t i = 0; i < op_count; i++) {
    if (count || i)
      fputc(',', f);
    json_op_record(f, &ops[i]);
  }
  for (size_t i = 0; i < step_count; i++) {
    fprintf(f, "%s\n  ", count || op_count || i ? "," : "");
    decode_json_record(f, &steps[i]);
  }
  for (size_t i = 0; i < gen_count; i++) {
    fprintf(f, "%s\n  ", count || op_count || step_count || i ? "," : "");
    generate_json_record(f, &gens[i]);
  }
  for (size_t i = 0; i < first_count; i++) {
    fprintf(f, "%s\n  ", count || op_count || step_count || gen_count || i ? "," : "");
    first_use_json_record(f, &firsts[i]);
  }
  fprintf(f,
          "\n],\n \"date\": \"%s\", \"sm\": %u, \"target_sm\": %u, \"multiprocessors\": %u, "
          "\"l2_bytes\": %llu, \"driver_version\": %d, \"read_key\": \"%s\", "
          "\"read_bytes\": %zu, \"ceiling_runs\": %d, \"runs\": %d, \"quick\": %s, "
          "\"seed\": %llu}\n",
          date, b->info.sm, b->info.target_sm, b->info.multiprocessors,
          (unsigned long long)b->info.l2_bytes, b->info.driver_version, b->read_key,
          b->read_bytes, opt->ceiling_runs, opt->runs, opt->quick ? "true" : "false",
          (unsigned long long)b->seed);
  if (fclose(f)) {
    fprintf(stderr, "ptxq-bench: cannot write %s: %s\n", path, strerror(errno));
    return EXIT_FAILED;
  }
  return 0;
}

/* ---- main --------------------------------------------------------------- */

static int run(bench *b, const options *opt, const gen_result *gens, size_t gen_count,
               const first_use_result *firsts, size_t first_count)
{
  uint64_t rng = b->seed;
  int st = ptxq_device_info_get(b->ctx, &b->info);
  if (st)
    return report_failure(b->ctx, "device info", st);
  printf("device: %s, sm_%u, %u SMs, %.1f GiB, L2 %.1f MB, driver %d; kernels for sm_%u; "
         "seed %llu\n",
         b->info.name, b->info.sm, b->info.multiprocessors,
         (double)b->info.total_memory / (1u << 30), (double)b->info.l2_bytes / 1e6,
         b->info.driver_version, b->info.target_sm, (unsigned long long)b->seed);

  int rc = measure_ceiling(b, opt, &rng);
  if (rc)
    return rc;

  size_t count = 0, op_count = 0;
  size_t gemv_rows =
      opt->kernels & KERNELS_GEMV ? opt->shape_count * (opt->m_count * GEMV_MODES + 2) : 0;
  size_t op_rows = ((opt->kernels & KERNELS_ACT ? ACT_KINDS : 0) +
                    (opt->kernels & KERNELS_ROPE ? 1 : 0)) * opt->op_m_count;
  op_rows += op_rows ? 1 : 0; /* the launch floor */
  size_t step_count = 0;
  result *results = calloc(gemv_rows + 1, sizeof *results); /* + 1: never calloc(0) */
  op_result *ops = calloc(op_rows + 1, sizeof *ops);
  decode_result *steps = calloc(decode_max_results(opt->decode_m_count), sizeof *steps);
  if (!results || !ops || !steps) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    free(results);
    free(ops);
    free(steps);
    return EXIT_FAILED;
  }
  if (gemv_rows)
    printf("%-11s %7s %6s %2s  %-10s %10s %8s %6s  %s\n", "kernel", "n", "k", "m", "mode",
           "median_us", "GB/s", "%ceil", "check (max rel err)");
  for (size_t s = 0; s < opt->shape_count && gemv_rows && !rc; s++)
    rc = bench_shape(b, opt, opt->shapes[s], &rng, results, &count);
  if (op_rows && !rc) {
    print_op_header(gemv_rows > 0);
    if (!(rc = bench_floor(b, opt, ops, &op_count)))
      print_op_result(&ops[op_count - 1]);
  }
  if (!rc && (opt->kernels & KERNELS_ACT))
    rc = bench_acts(b, opt, &rng, ops, &op_count);
  if (!rc && (opt->kernels & KERNELS_ROPE))
    rc = bench_rope(b, opt, &rng, ops, &op_count);
  if (op_count)
    printf("max err: activations |y-ref|/(|ref|+%g), limit %g (= %g|ref| + %g); "
           "rope |y-ref|, limit %g\n",
           ACT_ABS_TOL / ACT_REL_TOL, ACT_REL_TOL, ACT_REL_TOL, ACT_ABS_TOL, ROPE_ABS_TOL);
  fflush(stdout);
  if (!rc && (opt->kernels & KERNELS_DECODE)) {
    decode_config decode = {.ctx = b->ctx, .info = &b->info,
                            .open_options = {.device = 0, .target_sm = opt->sm, .tensor_cores = opt->tensor_cores},
                            .device_bytes_in_use = b->read_bytes, .ceiling_gbps = b->ceiling_gbps,
                            .read_buf = b->read_buf, .read_sink = b->sink, .read_bytes = b->read_bytes,
                            .layers = opt->layers, .ms = opt->decode_ms, .m_count = opt->decode_m_count,
                            .runs = opt->runs, .seed = b->seed};
    rc = decode_run(&decode, steps, &step_count);
  }

  if (!rc && opt->json_path &&
      (rc = write_json(opt->json_path, b, opt, results, count, ops, op_count, steps,
                       step_count, gens, gen_count, firsts, first_count)) == 0)
    printf("\nwrote %s\n", opt->json_path);
  size_t failed = 0, ops_failed = 0, steps_failed = 0;
  for (size_t i = 0; i < count; i++)
    failed += !results[i].ok;
  for (size_t i = 0; i < op_count; i++)
    ops_failed += !ops[i].ok;
  for (size_t i = 0; i < step_count; i++)
    steps_failed += !steps[i].ok;
  if (failed) {
    fprintf(stderr, "ptxq-bench: %zu configuration(s) FAILED the check against the CPU "
                    "reference (max rel err > %g)\n", failed, MAX_REL_ERR);
    rc = EXIT_FAILED;
  }
  if (ops_failed) {
    fprintf(stderr, "ptxq-bench: %zu activation/RoPE configuration(s) FAILED the check "
                    "against the CPU reference (max err above its limit)\n", ops_failed);
    rc = EXIT_FAILED;
  }
  if (steps_failed) {
    fprintf(stderr, "ptxq-bench: %zu decode-step configuration(s) FAILED their checks\n",
            steps_failed);
    rc = EXIT_FAILED;
  }
  free(steps);
  free(ops);
  free(results);
  return rc;
}

/* The generation rows, over the keys of the other kinds asked for (all of
 * them with --kernels gen alone). Needs no GPU. */
static int bench_generation(const options *opt, gen_result **gens, size_t *gen_count)
{
  unsigned kinds = opt->kernels & ~(unsigned)KERNELS_GEN;
  char *keys = NULL;
  size_t keys_len = 0;
  FILE *mem = open_memstream(&keys, &keys_len);
  if (!mem) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    return EXIT_FAILED;
  }
  int rc = list_keys(mem, opt, kinds ? kinds : KERNELS_ALL & ~(unsigned)KERNELS_GEN);
  if (fclose(mem) != 0 && !rc)
    rc = EXIT_FAILED;
  if (!rc)
    rc = generate_bench(keys, opt->quick ? 11 : GEN_REPS, gens, gen_count) ? EXIT_FAILED : 0;
  free(keys);
  printf("\n");
  return rc;
}

/* The first-use rows (bench/first_use.c): a probe child finds the device,
 * then children measure the keys. This process never opens the device for
 * them. Returns 0, EXIT_FAILED or EXIT_NO_GPU (printed). */
static int bench_first_use(const options *opt, first_use_device *dev, first_use_result **rows,
                           size_t *count)
{
  int rc = first_use_probe(dev);
  if (rc) {
    printf("\n");
    return rc == EXIT_NO_GPU ? EXIT_NO_GPU : EXIT_FAILED;
  }
  uint32_t sm = opt->sm ? opt->sm : dev->target_sm;
  char *keys = NULL;
  size_t keys_len = 0;
  FILE *mem = open_memstream(&keys, &keys_len);
  if (!mem) {
    fprintf(stderr, "ptxq-bench: out of host memory\n");
    return EXIT_FAILED;
  }
  rc = first_use_keys(mem, sm);
  if (fclose(mem) != 0 && !rc)
    rc = EXIT_FAILED;
  if (!rc && first_use_bench(keys, sm, opt->quick ? 1 : FIRST_USE_RUNS, dev, rows, count))
    rc = EXIT_FAILED;
  free(keys);
  printf("\n");
  return rc;
}

/* --kernels gen and/or first alone: the JSON holds their rows only (and
 * the device the first-use children found, when they found one). */
static int write_host_json(const char *path, const gen_result *gens, size_t count,
                           const first_use_result *firsts, size_t first_count,
                           const first_use_device *dev)
{
  char date[32];
  FILE *f = open_json(path, date);
  if (!f)
    return EXIT_FAILED;
  fprintf(f, "{\"date\": \"%s\", ", date);
  if (dev->target_sm) {
    fprintf(f, "\"device\": ");
    json_string(f, dev->name);
    fprintf(f, ", \"sm\": %u, \"target_sm\": %u, \"driver_version\": %d, ", dev->sm,
            dev->target_sm, dev->driver_version);
  }
  fprintf(f, "\"results\": [");
  for (size_t i = 0; i < count; i++) {
    fprintf(f, "%s\n  ", i ? "," : "");
    generate_json_record(f, &gens[i]);
  }
  for (size_t i = 0; i < first_count; i++) {
    fprintf(f, "%s\n  ", count || i ? "," : "");
    first_use_json_record(f, &firsts[i]);
  }
  fprintf(f, "\n]}\n");
  if (fclose(f) != 0) {
    fprintf(stderr, "ptxq-bench: writing %s failed\n", path);
    return EXIT_FAILED;
  }
  printf("wrote %s\n", path);
  return 0;
}

int main(int argc, char **argv)
{
  if (argc >= 2 && !strcmp(argv[1], FIRST_USE_CHILD_ARG)) /* started by first_use.c */
    return first_use_child(argc, argv);
  options opt;
  int rc = parse_options(argc, argv, &opt);
  if (rc)
    return rc < 0 ? 0 : rc;
  if (opt.list_keys) /* gen alone lists what it times: every kind's keys */
    return list_keys(stdout, &opt, opt.kernels == KERNELS_GEN ? KERNELS_ALL : opt.kernels);
  gen_result *gens = NULL;
  size_t gen_count = 0;
  if (opt.kernels & KERNELS_GEN) {
    rc = bench_generation(&opt, &gens, &gen_count);
    if (rc) {
      free(gens);
      return rc;
    }
  }
  /* Before this process opens the device: the children must not share it. */
  first_use_result *firsts = NULL;
  size_t first_count = 0;
  first_use_device first_dev;
  memset(&first_dev, 0, sizeof first_dev);
  int first_rc = 0;
  if (opt.kernels & KERNELS_FIRST)
    first_rc = bench_first_use(&opt, &first_dev, &firsts, &first_count);
  if (!(opt.kernels & ~(unsigned)(KERNELS_GEN | KERNELS_FIRST))) { /* none on this process's GPU */
    if (opt.json_path && (gen_count || first_count))
      rc = write_host_json(opt.json_path, gens, gen_count, firsts, first_count, &first_dev);
    free(gens);
    free(firsts);
    return rc ? rc : first_rc;
  }

  bench b = {.seed = opt.seed ? opt.seed : (uint64_t)time(NULL)};
  ptxq_options open_options = {.device = 0, .target_sm = opt.sm, .tensor_cores = opt.tensor_cores};
  int st = ptxq_open(&b.ctx, &open_options);
  if (st == PTXQ_ERR_NO_DEVICE) {
    fprintf(stderr, "ptxq-bench: no GPU: %s\n", ptxq_last_error(NULL));
    free(gens);
    free(firsts);
    return EXIT_NO_GPU;
  }
  if (st) {
    free(gens);
    free(firsts);
    return report_failure(NULL, "opening the device", st);
  }

  rc = run(&b, &opt, gens, gen_count, firsts, first_count);
  free(gens);
  free(firsts);
  if (!rc)
    rc = first_rc;
  for (int i = 0; i < b.event_count; i++) {
    ptxq_event_destroy(b.ctx, b.start[i]);
    ptxq_event_destroy(b.ctx, b.end[i]);
  }
  free(b.start);
  free(b.end);
  free(b.ms);
  ptxq_close(b.ctx); /* frees the read buffer and sink too */
  return rc;
}
