/*
 * decode.c: the decode-step benchmark of ptxq-bench: every layer of a
 * Llama-3-8B-shaped model, each with its own weights, as one step.
 *
 * Per layer (x is the layer's input, [m][4096] fp32):
 *   q = x.Wq^T, k = x.Wk^T, v = x.Wv^T        q, o 4096x4096; k, v 1024x4096; q, k and v
 *   rope(q, k)                                 as one kernel with RoPE in its epilogue
 *                                              (ptxq_gemv_multi_rope); NeoX, 32 + 8 heads
 *                                              of 128, base 500000, positions read from
 *                                              the device
 *   x2 = q.Wo^T                                stand-in for attention: ptxq has no
 *                                              attention op, so o reads q directly
 *   y = ptxq_ffn(SwiGLU, x2)                   gate, up 14336x4096 Q4_K; down
 *                                              4096x14336, Q6_K in layers 0, 2, 4, ...
 *                                              and Q4_K in the others (as Q4_K_M)
 * and the next layer's input is y: no residual and no norm (ptxq has no norm
 * op). v is computed and not used, as attention would use it.
 *
 * What is measured, per batch size m: the step replayed as one captured
 * graph, the same ops as direct launches, and (for the smallest and largest
 * m) the graph again in a second context opened with PTXQ_FFN_UNFUSED=1,
 * where ptxq_ffn runs gate, up, swiglu and down as four kernels instead of
 * the gated GEMV and down and q, k, v and RoPE run as two kernels
 * (ptxq_gemv_multi, ptxq_rope), and in one opened with PTXQ_PDL=0, where no
 * kernel starts before the one before it has ended. Once (m 0), the step's
 * yardstick: the same bytes, op by op, through the read probe instead of the
 * step's kernels (run_read_steps). Each figure is the median over event-timed steps
 * after warm-up; GB/s counts the weight bytes of the step, Q6_K at its GGUF
 * size.
 *
 * Keeping the numbers meaningful. With no norm, SwiGLU makes each layer
 * roughly quadratic in its input's scale, so an uncorrected chain leaves
 * fp32's range within a few layers and a check of the last layer's output
 * would compare infinities or zeros. The weights are therefore drawn with a
 * spread of d (and dmin = 7.5 d, which makes Q4_K rows zero-mean) that gives
 * every product roughly its input's scale, and each layer's down weight is
 * then scaled once, on the GPU's own output (calibrate_and_upload), so that
 * the layer's output row 0 has an RMS near 1. Batch row 0 (the same input
 * and position at every m) therefore stays meaningful through every layer.
 * The other rows get distinct inputs and positions, as a real batch does;
 * one scale cannot suit them all, so their scale drifts and leaves fp32's
 * range after about ten layers (inf, NaN or 0: seen on the CPU reference
 * with these weights). They still load the kernels the same (fp32 speed
 * does not depend on the values) and are compared bit for bit all the same.
 *
 * Checks, per m: every layer's q, k, v, x2 and y from a graph replay must
 * equal, bit for bit, those of a direct run (the buffers are overwritten
 * with different NaN patterns before each, so a buffer neither wrote still
 * fails); batch row 0 must equal the m = 1 step bit for bit (batch
 * invariance through the whole step); the final output's row 0 must be
 * finite with an RMS near 1; and the o GEMV (the same 4096x4096 Q4_K kernel
 * as q, whose output RoPE overwrites in place) is compared with
 * ptxq_ref_gemv on sampled rows: in layer 0 for every batch row, in the last
 * layer for row 0. The unfused graph must equal the fused direct run bit for
 * bit, as src/ffn.c promises.
 */
#define _POSIX_C_SOURCE 200809L

#include "decode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ptxgen.h"

#define HIDDEN 4096u
#define KV_WIDTH 1024u /* 8 KV heads of 128 */
#define FFN_WIDTH 14336u
#define HEAD_DIM 128u
#define HEADS 32u
#define KV_HEADS 8u
#define ROPE_BASE 500000.0f
#define MAX_M PTXGEN_GEMV_MAX_M /* the buffers hold this many rows */
/* src/internal.h's PTXQ__EPILOGUE_MAX_M: past it, ptxq_ffn and
 * ptxq_gemv_multi_rope run the activation and RoPE as kernels of their own
 * (the keys --list-keys prints follow it) */
#define EPILOGUE_MAX_M 4u
#define MAX_POSITION (1u << 17)
#define WARMUP_STEPS 3
#define CHECK_ROWS 64
#define MAX_REL_ERR 1e-5
#define RMS_LOW 0.5 /* the calibrated chain's row 0: RMS within [RMS_LOW, RMS_HIGH] */
#define RMS_HIGH 2.0
#define HEADROOM_BYTES (1ull << 30) /* device memory kept free beside the weights */
#define MAX_KEYS 128

/* Weight scales. A Q4_K weight is d*sc*q - dmin*m with sc, m uniform in
 * 0..63 and q in 0..15 (random bytes); with dmin = 7.5 d its mean is zero
 * and its RMS 258.3 d. A Q6_K weight is d*s*(q - 32) with s a random int8
 * and q in 0..63: RMS 1366 d. d is drawn log-uniform in [D/2, 2D], whose
 * RMS is 1.163 D. D = 1 / (rms_per_d * 1.163 * sqrt(k)) gives a row an L2
 * norm near 1, so a product keeps its input's scale. (Most of these d are
 * f16 subnormals near the top of that range, as in real Q6_K files: still
 * 6 to 10 significant bits, and exact in the reference.) */
#define Q4K_RMS_PER_D 258.3
#define Q6K_RMS_PER_D 1366.0
#define D_SPREAD_RMS 1.163
#define Q4K_DMIN_PER_D 7.5

/* ---- the model ------------------------------------------------------------ */

typedef enum { ROLE_Q, ROLE_K, ROLE_V, ROLE_O, ROLE_GATE, ROLE_UP, ROLE_DOWN, ROLE_COUNT } role;

static const struct {
  const char *name; /* as in GGUF: blk.N.<name>.weight */
  uint32_t n, k;
} roles[ROLE_COUNT] = {
    [ROLE_Q] = {"attn_q", HIDDEN, HIDDEN},       [ROLE_K] = {"attn_k", KV_WIDTH, HIDDEN},
    [ROLE_V] = {"attn_v", KV_WIDTH, HIDDEN},     [ROLE_O] = {"attn_output", HIDDEN, HIDDEN},
    [ROLE_GATE] = {"ffn_gate", FFN_WIDTH, HIDDEN}, [ROLE_UP] = {"ffn_up", FFN_WIDTH, HIDDEN},
    [ROLE_DOWN] = {"ffn_down", HIDDEN, FFN_WIDTH},
};

static ptxq_type weight_type(uint32_t layer, role r)
{
  return r == ROLE_DOWN && layer % 2 == 0 ? PTXQ_TYPE_Q6_K : PTXQ_TYPE_Q4_K;
}

static size_t weight_bytes(uint32_t layer, role r)
{
  size_t block = weight_type(layer, r) == PTXQ_TYPE_Q6_K ? PTXQ_Q6_K_BLOCK_BYTES
                                                         : PTXQ_Q4_K_BLOCK_BYTES;
  return (size_t)roles[r].n * (roles[r].k / PTXQ_QK_K) * block;
}

/* What the weight takes on the device: Q6_K rows are stored repacked (in a
 * tensor-core context, in tiles of 16 rows: the GGUF bytes, as every role's
 * rows are a multiple of 16). */
static size_t device_bytes(uint32_t layer, role r)
{
  if (weight_type(layer, r) == PTXQ_TYPE_Q6_K)
    return (size_t)ptxgen_q6k_row_stride(roles[r].k) * roles[r].n;
  return weight_bytes(layer, r);
}

static void weight_name(char *buf, size_t cap, uint32_t layer, role r)
{
  snprintf(buf, cap, "blk.%u.%s.weight", layer, roles[r].name);
}

static double step_weight_bytes(uint32_t layers)
{
  double bytes = 0;
  for (uint32_t l = 0; l < layers; l++)
    for (int r = 0; r < ROLE_COUNT; r++)
      bytes += (double)weight_bytes(l, (role)r);
  return bytes;
}

/* Every layer's activations live in one device arena, each buffer holding
 * MAX_M rows whatever m is, so a row sits at the same place for every m. */
typedef enum { BUF_Q, BUF_K, BUF_V, BUF_X2, BUF_Y, BUF_COUNT } buffer;
static const char *const buffer_names[BUF_COUNT] = {"q", "k", "v", "x2", "y"};
static const uint32_t buffer_width[BUF_COUNT] = {HIDDEN, KV_WIDTH, KV_WIDTH, HIDDEN, HIDDEN};
#define LAYER_FLOATS ((size_t)MAX_M * (HIDDEN + KV_WIDTH + KV_WIDTH + HIDDEN + HIDDEN))

/* Offset, in floats, of row `row` of buffer b of a layer. */
static size_t arena_offset(uint32_t layer, buffer b, uint32_t row)
{
  size_t offset = (size_t)layer * LAYER_FLOATS;
  for (int i = 0; i < (int)b; i++)
    offset += (size_t)MAX_M * buffer_width[i];
  return offset + (size_t)row * buffer_width[b];
}

static void rope_params(ptxq_rope_params *p)
{
  ptxq_rope_params_init(p, PTXQ_ROPE_NEOX, HEAD_DIM, HEADS, KV_HEADS);
  p->base = ROPE_BASE;
}

/* ---- random weights and inputs -------------------------------------------- */

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

static void put_f16(uint8_t *at, double value)
{
  uint16_t h = ptxq_f32_to_f16((float)value);
  at[0] = (uint8_t)(h & 0xFF);
  at[1] = (uint8_t)(h >> 8);
}

/* The bytes of one weight: a function of (seed, layer, role, scale) alone,
 * so the unfused context and the checks regenerate exactly what was
 * uploaded. Random bytes, then each block's d (and Q4_K's dmin) replaced by
 * finite f16 values drawn as the comment at Q4K_RMS_PER_D says, times scale
 * (the calibration's factor: every weight value scales with d and dmin). */
static void generate_weight(uint64_t seed, uint32_t layer, role r, double scale, uint8_t *out)
{
  uint64_t state = seed ^ (0xD1B54A32D192ED03ull * ((uint64_t)layer * ROLE_COUNT + r + 1));
  size_t bytes = weight_bytes(layer, r);
  size_t i = 0;
  for (; i + 8 <= bytes; i += 8) {
    uint64_t v = rng_next(&state);
    memcpy(out + i, &v, 8);
  }
  for (uint64_t v = rng_next(&state); i < bytes; i++, v >>= 8)
    out[i] = (uint8_t)v;

  bool q6k = weight_type(layer, r) == PTXQ_TYPE_Q6_K;
  size_t block_bytes = q6k ? PTXQ_Q6_K_BLOCK_BYTES : PTXQ_Q4_K_BLOCK_BYTES;
  double rms_per_d = q6k ? Q6K_RMS_PER_D : Q4K_RMS_PER_D;
  double base = scale / (rms_per_d * D_SPREAD_RMS * sqrt((double)roles[r].k));
  for (size_t b = 0; b < bytes / block_bytes; b++) {
    uint8_t *block = out + b * block_bytes;
    double d = base * exp2(2 * rng_unit(&state) - 1);
    if (q6k) {
      put_f16(block + 208, d); /* formats.md: d is the block's last 2 bytes */
    } else {
      put_f16(block, d);
      put_f16(block + 2, Q4K_DMIN_PER_D * d);
    }
  }
}

/* x [MAX_M][HIDDEN], uniform with RMS 1; positions of consecutive tokens. */
static void generate_inputs(uint64_t seed, float *x, int32_t *positions)
{
  uint64_t state = seed ^ 0x5851F42D4C957F2Dull;
  for (size_t i = 0; i < (size_t)MAX_M * HIDDEN; i++)
    x[i] = (float)(sqrt(3.0) * (2 * rng_unit(&state) - 1));
  int32_t first = (int32_t)(rng_next(&state) % MAX_POSITION);
  for (uint32_t t = 0; t < MAX_M; t++)
    positions[t] = first + (int32_t)t;
}

/* ---- kernel keys ------------------------------------------------------------ */

static int add_key(const ptxgen_spec *spec, char (*keys)[128], size_t *count)
{
  char msg[256], key[128];
  if (ptxgen_spec_validate(spec, msg, sizeof msg) != PTXGEN_OK) {
    fprintf(stderr, "ptxq-bench: decode: %s\n", msg);
    return 1;
  }
  int len = ptxgen_spec_format(spec, key, sizeof key);
  if (len < 0 || (size_t)len >= sizeof key) {
    fprintf(stderr, "ptxq-bench: decode: cannot format a kernel key\n");
    return 1;
  }
  for (size_t i = 0; i < *count; i++)
    if (!strcmp(keys[i], key))
      return 0;
  if (*count == MAX_KEYS) {
    fprintf(stderr, "ptxq-bench: decode: more than %d kernel keys\n", MAX_KEYS);
    return 1;
  }
  memcpy(keys[(*count)++], key, sizeof key);
  return 0;
}

bool gemv_idp_switch(void)
{
  const char *idp = getenv("PTXQ_GEMV_IDP");
  return idp != NULL && strcmp(idp, "1") == 0;
}

/* The keys of one step at batch m (as src/exec.c, src/ffn.c and src/rope.c
 * build their specs); unfused adds those of the FFN's unfused path. In a
 * tensor-core context (tc) Q4_K and Q6_K products run on the tensor-core kernel,
 * with RoPE in the q/k/v kernel up to m = 4 (the step's RoPE is one it
 * takes: neox over whole heads) and the gated FFN kernel up to m = 8; under
 * PTXQ_GEMV_IDP=1 the Q4_K FMA products take idp=1. */
static int step_keys(uint32_t sm, uint32_t layers, uint32_t m, bool unfused, bool tc, char (*keys)[128],
                     size_t *count)
{
  ptxq_rope_params p;
  rope_params(&p);
  /* the kernels the library then runs */
  const ptxgen_spec tc_rope = {.rope = p.mode == PTXQ_ROPE_NEOX ? 2 : 1, .head_dim = p.head_dim, .n_dims = p.n_dims};
  const bool rope_apart = unfused || m > EPILOGUE_MAX_M || (tc && !ptxgen_gemv_tc_rope_fits(&tc_rope));
  unfused = unfused || m > (tc ? PTXGEN_GEMV_EPILOGUE_MAX_M : EPILOGUE_MAX_M);
  ptxgen_spec rope = {.kind = PTXGEN_KIND_ROPE, .sm = sm, .m = m, .mode = (uint32_t)p.mode,
                      .head_dim = p.head_dim, .n_dims = p.n_dims, .heads = p.heads,
                      .kv_heads = p.kv_heads, .base = p.base, .freq_scale = p.freq_scale,
                      .ext_factor = p.ext_factor, .attn_factor = p.attn_factor,
                      .beta_fast = p.beta_fast, .beta_slow = p.beta_slow,
                      .n_ctx_orig = p.n_ctx_orig};
  int rc = rope_apart ? add_key(&rope, keys, count) : 0;
  for (uint32_t l = 0; l < layers && l < 2 && !rc; l++) /* layers 0 and 1 hold every type */
    for (int r = ROLE_V; r < ROLE_COUNT && !rc; r++) { /* q, k, v: one kernel, below */
      bool gated = r == ROLE_GATE || r == ROLE_UP;
      const bool q4k = weight_type(l, (role)r) == PTXQ_TYPE_Q4_K;
      ptxgen_spec gemv = {.kind = q4k ? PTXGEN_KIND_Q4K_GEMV : PTXGEN_KIND_Q6K_GEMV,
                          .sm = sm, .k = roles[r].k, .n = roles[r].n, .m = m,
                          .glu = gated && !unfused ? 1 : 0, .tc = tc, .idp = q4k && !tc && gemv_idp_switch()};
      if (r == ROLE_V) { /* q, k, v as one kernel, RoPE in it unless unfused */
        gemv.n = roles[ROLE_Q].n;
        gemv.n2 = roles[ROLE_K].n;
        gemv.n3 = roles[ROLE_V].n;
        if (!rope_apart) {
          gemv.rope = p.mode == PTXQ_ROPE_NEOX ? 2 : 1;
          gemv.head_dim = p.head_dim;
          gemv.n_dims = p.n_dims;
          gemv.base = p.base;
          gemv.freq_scale = p.freq_scale;
          gemv.ext_factor = p.ext_factor;
          gemv.attn_factor = p.attn_factor;
          gemv.beta_fast = p.beta_fast;
          gemv.beta_slow = p.beta_slow;
          gemv.n_ctx_orig = p.n_ctx_orig;
        }
      }
      rc = add_key(&gemv, keys, count);
    }
  if (unfused && !rc) {
    ptxgen_spec swiglu = {.kind = PTXGEN_KIND_SWIGLU, .sm = sm, .n = FFN_WIDTH, .m = m};
    rc = add_key(&swiglu, keys, count);
  }
  return rc;
}

/* The read step (run_read_steps): per layer one read kernel per op of the
 * step, over as many bytes as the op's weights take on the device. */
typedef enum { OP_QKV, OP_O, OP_GATE_UP, OP_DOWN, OP_COUNT } op;
static const role op_roles[OP_COUNT][2] = { /* [first, end) */
    [OP_QKV] = {ROLE_Q, ROLE_O}, [OP_O] = {ROLE_O, ROLE_GATE},
    [OP_GATE_UP] = {ROLE_GATE, ROLE_DOWN}, [OP_DOWN] = {ROLE_DOWN, ROLE_COUNT}};

static size_t op_bytes(uint32_t layer, op o)
{
  size_t bytes = 0;
  for (int r = op_roles[o][0]; r < (int)op_roles[o][1]; r++)
    bytes += device_bytes(layer, (role)r);
  return bytes;
}

static ptxgen_spec read_spec(uint32_t sm, uint32_t layer, op o, bool pdl)
{
  return (ptxgen_spec){.kind = PTXGEN_KIND_STREAM_READ, .sm = sm,
                       .n = (uint32_t)((op_bytes(layer, o) + 15) / 16), .pdl = pdl};
}

/* The read step's keys: pdl=1 where the target has griddepcontrol, and not. */
static int read_step_keys(uint32_t sm, uint32_t layers, char (*keys)[128], size_t *count)
{
  int rc = 0;
  for (int pdl = 0; pdl < (sm >= 90 ? 2 : 1); pdl++)
    for (uint32_t l = 0; l < layers && l < 2 && !rc; l++) /* layers 0 and 1 hold every type */
      for (int o = 0; o < OP_COUNT && !rc; o++) {
        ptxgen_spec spec = read_spec(sm, l, (op)o, pdl);
        rc = add_key(&spec, keys, count);
      }
  return rc;
}

static void unfused_ms(const uint32_t *ms, size_t m_count, uint32_t out[2], size_t *count)
{
  uint32_t lo = ms[0], hi = ms[0];
  for (size_t i = 1; i < m_count; i++) {
    lo = ms[i] < lo ? ms[i] : lo;
    hi = ms[i] > hi ? ms[i] : hi;
  }
  out[0] = lo;
  out[1] = hi;
  *count = lo == hi ? 1 : 2;
}

int decode_list_keys(FILE *out, uint32_t sm, uint32_t layers, const uint32_t *ms, size_t m_count, bool tc)
{
  char keys[MAX_KEYS][128];
  size_t count = 0;
  uint32_t unfused[2];
  size_t unfused_count;
  unfused_ms(ms, m_count, unfused, &unfused_count);
  int rc = step_keys(sm, layers, 1, false, tc, keys, &count); /* the calibration runs m = 1 */
  for (size_t i = 0; i < m_count && !rc; i++)
    rc = step_keys(sm, layers, ms[i], false, tc, keys, &count);
  for (size_t i = 0; i < unfused_count && !rc; i++)
    rc = step_keys(sm, layers, unfused[i], true, tc, keys, &count);
  if (!rc)
    rc = read_step_keys(sm, layers, keys, &count);
  for (size_t i = 0; i < count && !rc; i++)
    fprintf(out, "%s\n", keys[i]);
  return rc;
}

/* ---- one context's step ------------------------------------------------------ */

typedef struct {
  ptxq_ctx *ctx;
  uint32_t layers;
  ptxq_dev x, positions, arena;
  size_t arena_floats;
  ptxq_rope_params rope;
  bool unfused; /* q, k, v then RoPE as two kernels, as the FFN of PTXQ_FFN_UNFUSED */
  ptxq_event **start, **end; /* one pair per timed step */
  int events;
} step;

static int fail(ptxq_ctx *ctx, const char *what, int status)
{
  fprintf(stderr, "ptxq-bench: decode: %s: %s: %s\n", what, ptxq_strerror(status),
          ptxq_last_error(ctx));
  return 1;
}

static ptxq_dev arena_at(const step *s, uint32_t layer, buffer b)
{
  return s->arena + arena_offset(layer, b, 0) * sizeof(float);
}

/* Buffers, inputs and event pairs of a step in s->ctx, for s->layers layers. */
static int step_open(step *s, const float *x, const int32_t *positions, int runs)
{
  int st;
  s->arena_floats = s->layers * LAYER_FLOATS;
  rope_params(&s->rope);
  if ((st = ptxq_alloc(s->ctx, (size_t)MAX_M * HIDDEN * sizeof *x, &s->x)) ||
      (st = ptxq_alloc(s->ctx, MAX_M * sizeof *positions, &s->positions)) ||
      (st = ptxq_alloc(s->ctx, s->arena_floats * sizeof(float), &s->arena)) ||
      (st = ptxq_upload(s->ctx, s->x, x, (size_t)MAX_M * HIDDEN * sizeof *x)) ||
      (st = ptxq_upload(s->ctx, s->positions, positions, MAX_M * sizeof *positions)))
    return fail(s->ctx, "allocating the step's buffers", st);
  s->start = calloc((size_t)runs, sizeof *s->start);
  s->end = calloc((size_t)runs, sizeof *s->end);
  if (!s->start || !s->end) {
    fprintf(stderr, "ptxq-bench: decode: out of host memory\n");
    return 1;
  }
  s->events = runs;
  for (int i = 0; i < runs; i++)
    if ((st = ptxq_event_create(s->ctx, &s->start[i])) ||
        (st = ptxq_event_create(s->ctx, &s->end[i])))
      return fail(s->ctx, "creating an event", st);
  return 0;
}

/* Frees the weights of layers [first, end) (those never uploaded are not found). */
static void free_weights(step *s, uint32_t first, uint32_t end)
{
  char name[64];
  for (uint32_t l = first; l < end; l++)
    for (int r = 0; r < ROLE_COUNT; r++) {
      weight_name(name, sizeof name, l, (role)r);
      ptxq_weight_free(s->ctx, name);
    }
}

/* Frees what step_open and the uploads made (not the context). */
static void step_close(step *s)
{
  for (int i = 0; i < s->events; i++) {
    if (s->start[i])
      ptxq_event_destroy(s->ctx, s->start[i]);
    if (s->end[i])
      ptxq_event_destroy(s->ctx, s->end[i]);
  }
  free(s->start);
  free(s->end);
  free_weights(s, 0, s->layers);
  if (s->arena)
    ptxq_free(s->ctx, s->arena);
  if (s->positions)
    ptxq_free(s->ctx, s->positions);
  if (s->x)
    ptxq_free(s->ctx, s->x);
}

/* Enqueues one layer at batch m. */
static int enqueue_layer(step *s, uint32_t layer, uint32_t m)
{
  char names[ROLE_COUNT][64], what[64];
  for (int r = 0; r < ROLE_COUNT; r++)
    weight_name(names[r], sizeof names[r], layer, (role)r);
  ptxq_dev in = layer ? arena_at(s, layer - 1, BUF_Y) : s->x;
  ptxq_dev q = arena_at(s, layer, BUF_Q), k = arena_at(s, layer, BUF_K);
  ptxq_dev v = arena_at(s, layer, BUF_V), x2 = arena_at(s, layer, BUF_X2);
  ptxq_dev y = arena_at(s, layer, BUF_Y);
  ptxq_ffn_params ffn = {.kind = PTXQ_FFN_SWIGLU, .gate = names[ROLE_GATE],
                         .up = names[ROLE_UP], .down = names[ROLE_DOWN]};
  const char *qkv[3] = {names[ROLE_Q], names[ROLE_K], names[ROLE_V]};
  const ptxq_dev qkv_out[3] = {q, k, v};
  int st;
  if (s->unfused) {
    st = ptxq_gemv_multi(s->ctx, qkv, 3, in, qkv_out, m);
    if (!st)
      st = ptxq_rope(s->ctx, q, k, s->positions, m, &s->rope);
  } else {
    st = ptxq_gemv_multi_rope(s->ctx, qkv, 3, in, qkv_out, m, s->positions, &s->rope); /* one kernel */
  }
  if (!st)
    st = ptxq_gemv(s->ctx, names[ROLE_O], q, x2, m);
  if (!st)
    st = ptxq_ffn(s->ctx, &ffn, x2, y, m);
  if (!st)
    return 0;
  snprintf(what, sizeof what, "layer %u at m=%u", layer, m); /* the detail names the op */
  return fail(s->ctx, what, st);
}

/* One step: the graph's replay if there is one, else direct launches. */
static int enqueue_step(step *s, uint32_t m, ptxq_graph *graph)
{
  if (graph) {
    int st = ptxq_graph_launch(s->ctx, graph);
    return st ? fail(s->ctx, "replaying the step's graph", st) : 0;
  }
  for (uint32_t l = 0; l < s->layers; l++)
    if (enqueue_layer(s, l, m))
      return 1;
  return 0;
}

/* Builds every kernel and grows the FFN workspace for m ahead of capture. */
static int prepare(step *s, uint32_t m)
{
  char names[ROLE_COUNT][64];
  int st = s->unfused ? ptxq_rope_prepare(s->ctx, m, &s->rope) : 0;
  if (st)
    return fail(s->ctx, "ptxq_rope_prepare", st);
  for (uint32_t l = 0; l < s->layers; l++) {
    for (int r = 0; r < ROLE_COUNT; r++)
      weight_name(names[r], sizeof names[r], l, (role)r);
    const char *qkv[3] = {names[ROLE_Q], names[ROLE_K], names[ROLE_V]};
    st = s->unfused ? ptxq_gemv_multi_prepare(s->ctx, qkv, 3, m)
                    : ptxq_gemv_multi_rope_prepare(s->ctx, qkv, 3, m, &s->rope);
    if (st)
      return fail(s->ctx, names[ROLE_Q], st);
    if ((st = ptxq_gemv_prepare(s->ctx, names[ROLE_O], m)))
      return fail(s->ctx, names[ROLE_O], st);
    ptxq_ffn_params ffn = {.kind = PTXQ_FFN_SWIGLU, .gate = names[ROLE_GATE],
                           .up = names[ROLE_UP], .down = names[ROLE_DOWN]};
    if ((st = ptxq_ffn_prepare(s->ctx, &ffn, m)))
      return fail(s->ctx, names[ROLE_DOWN], st);
  }
  return 0;
}

static int capture(step *s, uint32_t m, ptxq_graph **graph)
{
  int st = ptxq_capture_begin(s->ctx);
  if (st)
    return fail(s->ctx, "ptxq_capture_begin", st);
  int rc = enqueue_step(s, m, NULL);
  st = ptxq_capture_end(s->ctx, graph); /* ends the capture even after a failed op */
  if (rc || st) {
    ptxq_graph_destroy(s->ctx, *graph);
    *graph = NULL;
    return rc ? rc : fail(s->ctx, "ptxq_capture_end", st);
  }
  return 0;
}

static int compare_float(const void *a, const void *b)
{
  float x = *(const float *)a, y = *(const float *)b;
  return (x > y) - (x < y);
}

/* Warm-up, then `runs` steps each between its own event pair: the median in
 * microseconds. Steps are enqueued back to back, so each pair times a step
 * on a busy GPU; for direct launches, where the host may not keep the GPU
 * fed, the host's launch cost shows in the figure, as it would in a decoder. */
static int time_steps(step *s, uint32_t m, ptxq_graph *graph, int runs, double *median_us)
{
  int st;
  for (int i = 0; i < WARMUP_STEPS; i++)
    if (enqueue_step(s, m, graph))
      return 1;
  for (int i = 0; i < runs; i++) {
    if ((st = ptxq_event_record(s->ctx, s->start[i])))
      return fail(s->ctx, "recording an event", st);
    if (enqueue_step(s, m, graph))
      return 1;
    if ((st = ptxq_event_record(s->ctx, s->end[i])))
      return fail(s->ctx, "recording an event", st);
  }
  float *ms = malloc((size_t)runs * sizeof *ms);
  if (!ms) {
    fprintf(stderr, "ptxq-bench: decode: out of host memory\n");
    return 1;
  }
  for (int i = 0; i < runs; i++)
    if ((st = ptxq_event_elapsed_ms(s->ctx, s->start[i], s->end[i], &ms[i]))) {
      free(ms);
      return fail(s->ctx, "reading an event pair", st);
    }
  qsort(ms, (size_t)runs, sizeof *ms, compare_float);
  double median = runs % 2 ? ms[runs / 2] : 0.5 * ((double)ms[runs / 2 - 1] + ms[runs / 2]);
  free(ms);
  *median_us = median * 1e3;
  return 0;
}

/* Overwrites every activation buffer with the byte `fill` (a NaN pattern),
 * runs one step and downloads all of them into host (arena_floats). */
static int run_and_download(step *s, uint32_t m, ptxq_graph *graph, uint8_t fill, float *host)
{
  size_t bytes = s->arena_floats * sizeof *host;
  memset(host, fill, bytes);
  int st = ptxq_upload(s->ctx, s->arena, host, bytes);
  if (st)
    return fail(s->ctx, "clearing the activations", st);
  if (enqueue_step(s, m, graph))
    return 1;
  st = ptxq_download(s->ctx, host, s->arena, bytes);
  return st ? fail(s->ctx, "downloading the activations", st) : 0;
}

/* ---- checks ---------------------------------------------------------------- */

/* Rows [0, rows) of every buffer of every layer, bit for bit; prints the
 * first difference. */
static bool same_bits(const float *want, const float *got, uint32_t layers, uint32_t rows,
                      const char *what)
{
  for (uint32_t l = 0; l < layers; l++)
    for (int b = 0; b < BUF_COUNT; b++)
      for (uint32_t row = 0; row < rows; row++) {
        size_t at = arena_offset(l, (buffer)b, row);
        if (!memcmp(want + at, got + at, buffer_width[b] * sizeof *got))
          continue;
        uint32_t i = 0;
        while (!memcmp(want + at + i, got + at + i, sizeof *got))
          i++;
        uint32_t w, g;
        memcpy(&w, want + at + i, 4);
        memcpy(&g, got + at + i, 4);
        fprintf(stderr, "ptxq-bench: decode %s: first difference at layer %u %s row %u [%u]: "
                        "%.9g (0x%08x) vs %.9g (0x%08x)\n",
                what, l, buffer_names[b], row, i, want[at + i], w, got[at + i], g);
        return false;
      }
  return true;
}

static double rms(const float *v, size_t count)
{
  double sum = 0;
  for (size_t i = 0; i < count; i++)
    sum += (double)v[i] * v[i];
  return sqrt(sum / (double)count);
}

/* Sampled rows of y = x.Wo^T (batch rows [0, rows) of one layer's q and x2
 * in the downloaded arena) against the fp64 reference. The error is
 * relative to max(|y_ref|, ||w.*x||_2), as bench.c's GEMV check does, so an
 * output that cancels to near zero does not read as a large error. Returns
 * the largest (infinity for NaN or a failed reference call). */
static double check_o_gemv(const uint8_t *w, const float *arena, uint32_t layer, uint32_t rows,
                           float *row_values)
{
  const size_t row_bytes = (size_t)(HIDDEN / PTXQ_QK_K) * PTXQ_Q4_K_BLOCK_BYTES;
  const float *x = arena + arena_offset(layer, BUF_Q, 0);
  const float *y = arena + arena_offset(layer, BUF_X2, 0);
  double worst = 0;
  for (uint32_t i = 0; i < CHECK_ROWS; i++) {
    uint32_t n = (uint32_t)((uint64_t)i * (HIDDEN - 1) / (CHECK_ROWS - 1));
    double want[MAX_M];
    if (ptxq_ref_gemv(PTXQ_TYPE_Q4_K, w + n * row_bytes, HIDDEN, 1, x, rows, want) ||
        ptxq_ref_dequantize_q4k(w + n * row_bytes, HIDDEN / PTXQ_QK_K, row_values))
      return INFINITY;
    for (uint32_t j = 0; j < rows; j++) {
      double size = 0;
      for (uint32_t c = 0; c < HIDDEN; c++) {
        double p = (double)row_values[c] * x[(size_t)j * HIDDEN + c];
        size += p * p;
      }
      double scale = fmax(fabs(want[j]), sqrt(size));
      double got = y[(size_t)j * HIDDEN + n];
      double err = fabs(got - want[j]) / (scale > 0 ? scale : 1);
      if (!(err <= worst)) {
        worst = isnan(err) ? INFINITY : err;
        if (!(err <= MAX_REL_ERR))
          fprintf(stderr, "ptxq-bench: decode: layer %u o gemv: row %u batch %u: got %.9g, "
                          "want %.9g (rel err %.3g)\n", layer, n, j, got, want[j], err);
      }
    }
  }
  return worst;
}

/* Appends a failure to a result's check text. */
static void add_failure(decode_result *r, const char *what)
{
  size_t len = strlen(r->check);
  if (r->ok)
    len = 0;
  snprintf(r->check + len, sizeof r->check - len, "%s%s", len ? ", " : "FAIL: ", what);
  r->ok = false;
}

/* ---- weights ------------------------------------------------------------- */

typedef struct {
  uint64_t seed;
  uint8_t *host; /* room for the largest weight */
  float *y_row;  /* HIDDEN floats */
  double *down_scale; /* per layer, found by calibrate_and_upload */
} weights;

/* Generates and uploads one weight; a ptxq status. */
static int upload_weight(step *s, const weights *w, uint32_t layer, role r, double scale)
{
  char name[64];
  weight_name(name, sizeof name, layer, r);
  generate_weight(w->seed, layer, r, scale, w->host);
  return ptxq_weight_upload(s->ctx, name, weight_type(layer, r), roles[r].k, roles[r].n,
                            w->host, weight_bytes(layer, r));
}

/* Uploads the layers one by one, scaling each layer's down weight so that
 * the layer's output row 0 (m = 1, run on the GPU) has an RMS near 1: the
 * next layer's input then has the scale every layer was drawn for. Should
 * the device run out of memory, the layers uploaded so far become the step
 * (s->layers shrinks) with a message. */
static int calibrate_and_upload(step *s, weights *w)
{
  for (uint32_t l = 0; l < s->layers; l++) {
    int st = 0;
    for (int r = 0; r < ROLE_COUNT && !st; r++)
      st = upload_weight(s, w, l, (role)r, 1.0);
    if (st == PTXQ_ERR_DEVICE_MEMORY && l > 0) {
      fprintf(stderr, "ptxq-bench: decode: the device ran out of memory at layer %u: "
                      "running the first %u only\n", l, l);
      free_weights(s, l, l + 1);
      s->layers = l;
      s->arena_floats = l * LAYER_FLOATS;
      return 0;
    }
    if (st)
      return fail(s->ctx, "uploading the weights", st);

    if (enqueue_layer(s, l, 1))
      return 1;
    st = ptxq_download(s->ctx, w->y_row, arena_at(s, l, BUF_Y), HIDDEN * sizeof(float));
    if (st)
      return fail(s->ctx, "downloading a layer's output", st);
    double size = rms(w->y_row, HIDDEN);
    if (!(size >= 1e-3 && size <= 1e3)) {
      fprintf(stderr, "ptxq-bench: decode: layer %u: output RMS %.3g before scaling, outside "
                      "[1e-3, 1e3]: the weights' scales (Q4K_RMS_PER_D ...) do not suit\n",
              l, size);
      return 1;
    }
    w->down_scale[l] = 1 / size;
    if ((st = upload_weight(s, w, l, ROLE_DOWN, w->down_scale[l])))
      return fail(s->ctx, "uploading a scaled down weight", st);
    if (enqueue_layer(s, l, 1))
      return 1;
  }
  return 0;
}

/* The calibrated weights again, in another context. */
static int upload_calibrated(step *s, const weights *w)
{
  for (uint32_t l = 0; l < s->layers; l++)
    for (int r = 0; r < ROLE_COUNT; r++) {
      int st = upload_weight(s, w, l, (role)r, r == ROLE_DOWN ? w->down_scale[l] : 1.0);
      if (st)
        return fail(s->ctx, "uploading the weights to the unfused context", st);
    }
  return 0;
}

/* Layers that fit beside what the device already holds. The API reports
 * the device's total memory, not what is free, so this keeps HEADROOM_BYTES
 * spare; an upload that still runs out shrinks the step further. */
static uint32_t layers_that_fit(const decode_config *cfg)
{
  uint64_t total = cfg->info->total_memory;
  uint64_t reserved = (uint64_t)cfg->device_bytes_in_use + HEADROOM_BYTES;
  uint64_t budget = total > reserved ? total - reserved : 0, used = 0;
  uint32_t fit = 0;
  for (; fit < cfg->layers; fit++) {
    uint64_t layer = 0;
    for (int r = 0; r < ROLE_COUNT; r++)
      layer += device_bytes(fit, (role)r);
    if (used + layer > budget)
      break;
    used += layer;
  }
  if (fit < cfg->layers)
    fprintf(stderr, "ptxq-bench: decode: %u layers do not fit in %.1f GB (device %.1f GB, "
                    "%.1f GB in use, %.1f GB kept free): running the first %u only\n",
            cfg->layers, (double)budget / 1e9, (double)total / 1e9,
            (double)cfg->device_bytes_in_use / 1e9, (double)HEADROOM_BYTES / 1e9, fit);
  return fit;
}

/* ---- output -------------------------------------------------------------- */

const char *decode_mode_name(decode_mode mode)
{
  switch (mode) {
  case DECODE_GRAPH: return "graph";
  case DECODE_DIRECT: return "direct";
  case DECODE_GRAPH_UNFUSED: return "graph_unfused";
  case DECODE_GRAPH_SERIAL: return "graph_serial";
  case DECODE_READ_GRAPH: return "read_graph";
  case DECODE_READ_GRAPH_SERIAL: return "read_graph_serial";
  }
  return "?";
}

size_t decode_max_results(size_t m_count)
{
  return 2 * m_count + 6;
}

static void print_result(const decode_result *r)
{
  char mode[24];
  snprintf(mode, sizeof mode, "%s", decode_mode_name(r->mode));
  for (char *c = mode; *c; c++)
    *c = *c == '_' ? '-' : *c;
  printf("%-18s %2u %10.1f %8.1f %6.1f  %s\n", mode, r->m, r->median_us, r->gbps,
         r->pct_of_ceiling, r->check);
  fflush(stdout);
}

void decode_json_record(FILE *f, const decode_result *r)
{
  fprintf(f,
          "{\"kernel\": \"decode_step\", \"layers\": %u, \"m\": %u, \"mode\": \"%s\", "
          "\"median_us\": %.3f, \"gbps\": %.2f, \"pct_of_ceiling\": %.2f, \"bytes\": %.0f, "
          "\"check\": \"%s\"}",
          r->layers, r->m, decode_mode_name(r->mode), r->median_us, r->gbps, r->pct_of_ceiling,
          r->bytes, r->ok ? "ok" : "FAIL");
}

static decode_result *new_result(const decode_config *cfg, const step *s, decode_mode mode,
                                 uint32_t m, double median_us, decode_result *results,
                                 size_t *count)
{
  decode_result *r = &results[(*count)++];
  *r = (decode_result){.mode = mode, .layers = s->layers, .m = m, .ok = true,
                       .bytes = step_weight_bytes(s->layers), .median_us = median_us};
  r->gbps = r->bytes / (median_us * 1e-6) / 1e9;
  r->pct_of_ceiling = cfg->ceiling_gbps > 0 ? 100 * r->gbps / cfg->ceiling_gbps : 0;
  snprintf(r->check, sizeof r->check, "ok");
  return r;
}

/* ---- the runs -------------------------------------------------------------- */

/* Host buffers shared by the runs: the direct run of every m is kept, as
 * the reference of the later checks. */
typedef struct {
  float *x;
  int32_t positions[MAX_M];
  float **direct; /* per m index: the arena after a direct step */
  float *got;     /* the arena after a graph step */
  float *row_values;
  uint8_t *o_weight;
  ptrdiff_t m1; /* index of m = 1 in cfg->ms, or -1 */
} host_state;

/* Graph and direct at one m in the fused context, with every check. */
static int run_fused(const decode_config *cfg, step *s, host_state *h, weights *w, size_t mi,
                     int runs, decode_result *results, size_t *count)
{
  uint32_t m = cfg->ms[mi];
  double graph_us, direct_us;
  ptxq_graph *graph = NULL;
  int rc;
  if ((rc = prepare(s, m)) || (rc = run_and_download(s, m, NULL, 0xFF, h->direct[mi])) ||
      (rc = time_steps(s, m, NULL, runs, &direct_us)) || (rc = capture(s, m, &graph)) ||
      (rc = time_steps(s, m, graph, runs, &graph_us)) ||
      (rc = run_and_download(s, m, graph, 0xFE, h->got))) {
    ptxq_graph_destroy(s->ctx, graph);
    return rc;
  }
  ptxq_graph_destroy(s->ctx, graph);

  decode_result *g = new_result(cfg, s, DECODE_GRAPH, m, graph_us, results, count);
  char what[64];
  snprintf(what, sizeof what, "m=%u graph vs direct", m);
  if (!same_bits(h->direct[mi], h->got, s->layers, m, what))
    add_failure(g, "graph != direct");
  snprintf(what, sizeof what, "m=%u row 0 vs m=1", m);
  if (m > 1 && h->m1 >= 0 && !same_bits(h->direct[h->m1], h->got, s->layers, 1, what))
    add_failure(g, "row 0 != m=1");
  double out = rms(h->got + arena_offset(s->layers - 1, BUF_Y, 0), HIDDEN);
  if (!(out >= RMS_LOW && out <= RMS_HIGH)) {
    fprintf(stderr, "ptxq-bench: decode m=%u: the last layer's output row 0 has RMS %.3g, "
                    "outside [%g, %g] where calibration put it\n", m, out, RMS_LOW, RMS_HIGH);
    add_failure(g, "output off scale");
  }
  double err = 0;
  uint32_t last = s->layers - 1;
  generate_weight(w->seed, 0, ROLE_O, 1.0, h->o_weight);
  err = fmax(err, check_o_gemv(h->o_weight, h->got, 0, m, h->row_values));
  if (last > 0) {
    generate_weight(w->seed, last, ROLE_O, 1.0, h->o_weight);
    err = fmax(err, check_o_gemv(h->o_weight, h->got, last, 1, h->row_values));
  }
  if (!(err <= MAX_REL_ERR)) {
    snprintf(what, sizeof what, "o gemv rel err %.1e", err);
    add_failure(g, what);
  }
  print_result(g);

  /* The direct run is checked through the graph's comparison with it. */
  decode_result *d = new_result(cfg, s, DECODE_DIRECT, m, direct_us, results, count);
  if (!g->ok)
    add_failure(d, "see graph");
  print_result(d);
  return 0;
}

/* A variant of the graph, for the smallest and largest m, in a second
 * context opened with env_name=1 or 0 (see decode_mode), checked against the
 * fused context's direct runs. */
static int run_variant(const decode_config *cfg, const step *fused, host_state *h,
                       const weights *w, int runs, decode_mode mode, decode_result *results,
                       size_t *count)
{
  const char *env_name = mode == DECODE_GRAPH_UNFUSED ? "PTXQ_FFN_UNFUSED" : "PTXQ_PDL";
  const char *env_value = mode == DECODE_GRAPH_UNFUSED ? "1" : "0";
  /* Set only around ptxq_open, which reads it; a value the user had is put back. */
  const char *before = getenv(env_name);
  char *saved = before ? strdup(before) : NULL;
  if (before && !saved) {
    fprintf(stderr, "ptxq-bench: decode: out of host memory\n");
    return 1;
  }
  step s = {.layers = fused->layers, .unfused = mode == DECODE_GRAPH_UNFUSED};
  setenv(env_name, env_value, 1);
  int st = ptxq_open(&s.ctx, &cfg->open_options);
  if (saved)
    setenv(env_name, saved, 1);
  else
    unsetenv(env_name);
  free(saved);
  if (st)
    return fail(NULL, decode_mode_name(mode), st);

  uint32_t ms[2];
  size_t m_count;
  unfused_ms(cfg->ms, cfg->m_count, ms, &m_count);
  int rc = step_open(&s, h->x, h->positions, runs);
  if (!rc)
    rc = upload_calibrated(&s, w);
  for (size_t i = 0; i < m_count && !rc; i++) {
    uint32_t m = ms[i];
    size_t mi = 0;
    while (cfg->ms[mi] != m)
      mi++;
    ptxq_graph *graph = NULL;
    double us;
    if (!(rc = prepare(&s, m)) && !(rc = capture(&s, m, &graph)) &&
        !(rc = time_steps(&s, m, graph, runs, &us)) &&
        !(rc = run_and_download(&s, m, graph, 0xFE, h->got))) {
      decode_result *r = new_result(cfg, &s, mode, m, us, results, count);
      char what[64];
      snprintf(what, sizeof what, "m=%u %s vs fused direct", m, decode_mode_name(mode));
      if (!same_bits(h->direct[mi], h->got, s.layers, m, what))
        add_failure(r, "differs from direct");
      print_result(r);
    }
    ptxq_graph_destroy(s.ctx, graph);
  }
  step_close(&s);
  ptxq_close(s.ctx);
  return rc;
}

/* The step's bytes through the read probe instead of its kernels: per
 * layer four stream_read kernels, over as many bytes as q/k/v, o, gate/up
 * and down take on the device, in the step's order, as one graph. Each
 * reads the next slice of the benchmark's read buffer (the ceiling's: many
 * times the L2, so every slice comes from memory, as the step's weights
 * do), wrapping around. With pdl=1 each loads its first vectors before it
 * waits for the one before, as the step's kernels load their first
 * weights; without, each starts when the one before has ended (as
 * PTXQ_PDL=0). What a chain of one kernel per op costs with no arithmetic
 * at all: the step's yardstick. */
static int run_read_steps(const decode_config *cfg, step *s, int runs, decode_result *results,
                          size_t *count)
{
  const uint32_t sm = cfg->info->target_sm;
  char keys[MAX_KEYS][128], key[128];
  size_t key_count = 0;
  ptxq_kernel_info info;
  for (uint32_t l = 0; l < s->layers && l < 2; l++) /* layers 0 and 1 hold every size */
    for (int o = 0; o < OP_COUNT; o++)
      if (op_bytes(l, (op)o) > cfg->read_bytes) {
        fprintf(stderr, "ptxq-bench: decode: the read buffer (%zu bytes) is smaller than an op's "
                        "weights: no read step\n", cfg->read_bytes);
        return 0;
      }
  int st, rc = read_step_keys(sm, s->layers, keys, &key_count);
  for (size_t i = 0; i < key_count && !rc; i++) /* every kernel built before capture */
    if ((st = ptxq_kernel_get(s->ctx, keys[i], &info)))
      rc = fail(s->ctx, keys[i], st);

  for (int pdl = sm >= 90 ? 1 : 0; pdl >= 0 && !rc; pdl--) {
    ptxq_graph *graph = NULL;
    if ((st = ptxq_capture_begin(s->ctx)))
      return fail(s->ctx, "ptxq_capture_begin", st);
    size_t offset = 0;
    for (uint32_t l = 0; l < s->layers && !st; l++)
      for (int o = 0; o < OP_COUNT && !st; o++) {
        ptxgen_spec spec = read_spec(sm, l, (op)o, pdl);
        size_t bytes = (size_t)spec.n * 16;
        if (offset + bytes > cfg->read_bytes)
          offset = 0;
        ptxq_dev src = cfg->read_buf + offset;
        ptxq_dev sink = cfg->read_sink;
        void *params[] = {&src, &sink};
        ptxgen_spec_format(&spec, key, sizeof key); /* validated in read_step_keys */
        st = ptxq_kernel_launch(s->ctx, key, params);
        offset += (bytes + 4095) & ~(size_t)4095;
      }
    int end = ptxq_capture_end(s->ctx, &graph); /* ends the capture even after a failed launch */
    if (st || end)
      rc = fail(s->ctx, st ? "launching the read step" : "ptxq_capture_end", st ? st : end);
    double us;
    if (!rc && !(rc = time_steps(s, 0, graph, runs, &us))) {
      decode_result *r = new_result(cfg, s, pdl ? DECODE_READ_GRAPH : DECODE_READ_GRAPH_SERIAL, 0, us,
                                    results, count);
      snprintf(r->check, sizeof r->check, "ok (reads only)");
      print_result(r);
    }
    ptxq_graph_destroy(s->ctx, graph);
  }
  return rc;
}

int decode_run(const decode_config *cfg, decode_result *results, size_t *count)
{
  int runs = cfg->runs > DECODE_MIN_RUNS ? cfg->runs : DECODE_MIN_RUNS;
  step s = {.ctx = cfg->ctx, .layers = layers_that_fit(cfg)};
  if (s.layers == 0) {
    fprintf(stderr, "ptxq-bench: decode: not one layer fits in device memory\n");
    return 1;
  }
  size_t largest = weight_bytes(0, ROLE_DOWN); /* Q6_K: the largest weight */
  host_state h = {.m1 = -1, .x = malloc((size_t)MAX_M * HIDDEN * sizeof(float)),
                  .direct = calloc(cfg->m_count, sizeof(float *)),
                  .row_values = malloc(HIDDEN * sizeof(float)),
                  .o_weight = malloc(weight_bytes(0, ROLE_O))};
  weights w = {.seed = cfg->seed, .host = malloc(largest),
               .y_row = malloc(HIDDEN * sizeof(float)),
               .down_scale = calloc(s.layers, sizeof(double))};
  int rc = 0;
  if (!h.x || !h.direct || !h.row_values || !h.o_weight || !w.host || !w.y_row ||
      !w.down_scale) {
    fprintf(stderr, "ptxq-bench: decode: out of host memory\n");
    rc = 1;
    goto done;
  }
  generate_inputs(cfg->seed, h.x, h.positions);
  if ((rc = step_open(&s, h.x, h.positions, runs)))
    goto done;

  printf("\ndecode step: %u layer(s) of Llama-3-8B: q, o 4096x4096, k, v 1024x4096, gate, up\n"
         "14336x4096 Q4_K; down 4096x14336 Q6_K in even layers, Q4_K in odd; RoPE on q and k;\n"
         "o reads q in place of attention; SwiGLU FFN; no norm or residual\n", s.layers);
  printf("uploading %.2f GB of weights, scaling each layer's output to RMS 1...\n",
         step_weight_bytes(s.layers) / 1e9);
  fflush(stdout);
  if ((rc = calibrate_and_upload(&s, &w)))
    goto done;
  if (getenv("PTXQ_FFN_UNFUSED"))
    printf("note: PTXQ_FFN_UNFUSED is set: the graph and direct rows may use the unfused FFN "
           "too\n");
  printf("%u layer(s), %.2f GB of weights per step; median of %d steps, each timed by an event "
         "pair\n", s.layers, step_weight_bytes(s.layers) / 1e9, runs);
  printf("%-18s %2s %10s %8s %6s  %s\n", "mode", "m", "step_us", "GB/s", "%ceil", "check");

  for (size_t i = 0; i < cfg->m_count; i++)
    if (cfg->ms[i] == 1)
      h.m1 = (ptrdiff_t)i;
  h.got = malloc(s.arena_floats * sizeof(float));
  for (size_t i = 0; i < cfg->m_count && h.got; i++)
    if (!(h.direct[i] = malloc(s.arena_floats * sizeof(float))))
      break;
  if (!h.got || !h.direct[cfg->m_count - 1]) {
    fprintf(stderr, "ptxq-bench: decode: out of host memory for the activations\n");
    rc = 1;
    goto done;
  }
  /* m = 1 first: the larger batches compare their row 0 with it. */
  if (h.m1 >= 0)
    rc = run_fused(cfg, &s, &h, &w, (size_t)h.m1, runs, results, count);
  for (size_t i = 0; i < cfg->m_count && !rc; i++)
    if ((ptrdiff_t)i != h.m1)
      rc = run_fused(cfg, &s, &h, &w, i, runs, results, count);

  /* The fused context's weights go first: both sets need not fit at once. */
  free_weights(&s, 0, s.layers);
  if (!rc)
    rc = run_read_steps(cfg, &s, runs, results, count);
  if (!rc)
    rc = run_variant(cfg, &s, &h, &w, runs, DECODE_GRAPH_UNFUSED, results, count);
  if (!rc)
    rc = run_variant(cfg, &s, &h, &w, runs, DECODE_GRAPH_SERIAL, results, count);

done:
  step_close(&s);
  for (size_t i = 0; h.direct && i < cfg->m_count; i++)
    free(h.direct[i]);
  free(h.direct);
  free(h.got);
  free(h.x);
  free(h.row_values);
  free(h.o_weight);
  free(w.host);
  free(w.y_row);
  free(w.down_scale);
  return rc;
}
