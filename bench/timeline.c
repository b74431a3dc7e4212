/*
 * timeline.c: a development harness (not built by Meson, not part of
 * ptxq-bench) that times every kernel of a Llama-3-8B-shaped decode step
 * from inside: each block's thread 0 records %globaltimer when the block
 * starts, when it has passed griddepcontrol.wait (the previous kernel is
 * complete and visible) and when it ends. From those, per kernel:
 *   release   the previous kernel's last block end -> this kernel's first
 *             block past the wait (grid completion, memory flush, and any
 *             queueing behind this kernel's own early loads)
 *   t1->end   first block past the wait -> last block end
 *   span      the previous kernel's last block end -> this one's: the
 *             kernel's share of the step
 *   stage, compute, tail   per block, averaged: past the wait -> x staged
 *             (the first barrier after the wait), -> the last row group's
 *             sums done (before its butterfly), -> the block's end
 *   rel_sprd  the first block past the wait -> the last one
 * against the time its weight bytes take at 3.1 TB/s.
 *
 * The kernels are ptxgen's own, with the timing code spliced into their PTX
 * text (a module global holds the record buffer); they are launched
 * straight through the driver API with programmatic dependent launch, grids
 * fitted to one wave as the runtime fits them, 32 layers of distinct
 * weights (every f16 scale 1.0: finite; the values do not change the
 * timing), m = 1 or M. Six steps run; the last one, after the L2 is flushed, is
 * recorded.
 *
 * Build and run on the GPU machine, from the repository root:
 *   gcc -std=c11 -O2 -Iinclude -I/usr/local/cuda/include bench/timeline.c ptxgen/ptx.c ptxgen/spec.c \
 *     ptxgen/kinds.c ptxgen/gemv.c ptxgen/gemv_q4k.c ptxgen/gemv_q6k.c ptxgen/gemv_ring.c ptxgen/gemv_tc.c \
 *     ptxgen/stream_read.c ptxgen/act.c ptxgen/act_math.c ptxgen/rope.c -L/usr/local/cuda/lib64/stubs -lcuda -lm -o /tmp/timeline
 *   /tmp/timeline [LAYERS]
 * Environment: M=N (batch rows, 1..16; default 1; past 1 its step times
 * are far from ptxq-bench's, bench/RESULTS.md twelfth session), UNFUSED=1
 * (q, k, v then the rope kernel, instead of RoPE in the q/k/v kernel),
 * NOPDL=1 (no programmatic launch), MAXNREG=N (a register cap spliced into
 * every GEMV; MAXNREG_QKV=N into the q/k/v kernel alone), KQKV, KO, KGU,
 * KD6, KD4 (other keys for q/k/v, o, gate/up, the Q6_K and the Q4_K down),
 * IDP=1 (the Q4_K products with idp=1), VERBOSE=1 (the first launches one by one), FLAGS=1 (an experiment: instead of
 * griddepcontrol.wait, each block's thread 0 spins until every block of
 * the launch before has counted itself done in a global flag, and each
 * grid lets the next one launch as soon as its blocks start: what waiting
 * for grid completion costs; not with UNFUSED).
 */
#include <cuda.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptxgen.h"

#define CHECK(call)                                                                                              \
  do {                                                                                                           \
    CUresult rc_ = (call);                                                                                       \
    if (rc_ != CUDA_SUCCESS) {                                                                                   \
      const char *name_ = "?";                                                                                   \
      cuGetErrorName(rc_, &name_);                                                                               \
      fprintf(stderr, "timeline: %s:%d %s: %s\n", __FILE__, __LINE__, #call, name_);                             \
      exit(1);                                                                                                   \
    }                                                                                                            \
  } while (0)

enum { QKV, ROPE, O, GATE_UP, DOWN_Q6K, DOWN_Q4K, KINDS };
static const char *const kind_names[KINDS] = {"qkv", "rope", "o", "gate/up", "down q6k", "down q4k"};

typedef struct {
  CUfunction f;
  unsigned grid, block, shared;
  double bytes; /* weight bytes per launch */
} kernel;

/* One block's record: the kernel kind, then start, past the wait, x staged
 * (the first barrier after the wait), the last row group's sums done (before
 * its butterfly), end (ns); a kernel without such a point records the
 * previous one. */
typedef struct {
  unsigned long long kind, start, released, staged, summed, end, pad[2];
} record;

static CUdeviceptr records; /* a u32 count, then (at +64) the records */
static CUstream stream;
static int flags_mode;      /* FLAGS=1 */
static CUdeviceptr flags;   /* FLAGS: per launch of a step, its blocks done */
static unsigned launch_index, previous_grid;

static char *splice(char *out, const char *from, const char *to) {
  memcpy(out, from, (size_t)(to - from));
  return out + (to - from);
}

/* FLAGS: the kernel's wait on the grid before it becomes a spin on that
 * grid's done-count (thread 0, then a barrier), it lets the next grid
 * launch at its start, and at its end every block counts itself done. */
static char *with_flags(const char *ptx) {
  const char *wait = "\tgriddepcontrol.wait;\n", *params_end = strstr(strstr(ptx, ".visible .entry"), "\n)\n");
  const char *at = strstr(ptx, wait), *body = strstr(params_end, "\n{\n") + 3, *ret = strstr(at, "\tret;");
  if (!at || !ret || strstr(ret + 1, "\tret;")) {
    fprintf(stderr, "timeline: FLAGS needs one griddepcontrol.wait and one ret\n");
    exit(1);
  }
  char *out = malloc(strlen(ptx) + 4096), *w = out;
  w = splice(w, ptx, params_end);
  w += sprintf(w, ",\n\t.param .u64 tl_wait,\n\t.param .u32 tl_target,\n\t.param .u64 tl_signal");
  w = splice(w, params_end, body);
  w += sprintf(w, "\t.reg .b64 %%tf<3>;\n\t.reg .b32 %%tg<3>;\n\t.reg .pred %%th;\n"
                  "\tgriddepcontrol.launch_dependents;\n");
  w = splice(w, body, at);
  w += sprintf(w, "\tmov.u32 %%tg0, %%tid.x;\n\tsetp.ne.u32 %%th, %%tg0, 0;\n\t@%%th bra TL_SPUN;\n"
                  "\tld.param.u64 %%tf0, [tl_wait];\n\tcvta.to.global.u64 %%tf0, %%tf0;\n"
                  "\tld.param.u32 %%tg1, [tl_target];\nTL_SPIN:\n"
                  "\tld.acquire.gpu.global.u32 %%tg2, [%%tf0];\n\tsetp.lt.u32 %%th, %%tg2, %%tg1;\n"
                  "\t@%%th bra TL_SPIN;\nTL_SPUN:\n\tbar.sync 0;\n");
  w = splice(w, at + strlen(wait), ret);
  w += sprintf(w, "\tbar.sync 0;\n\tmov.u32 %%tg0, %%tid.x;\n\tsetp.ne.u32 %%th, %%tg0, 0;\n\t@%%th bra TL_SIGNALED;\n"
                  "\tld.param.u64 %%tf1, [tl_signal];\n\tcvta.to.global.u64 %%tf1, %%tf1;\n"
                  "\tfence.acq_rel.gpu;\n\tatom.global.add.u32 %%tg2, [%%tf1], 1;\nTL_SIGNALED:\n");
  strcpy(w, ret);
  return out;
}

/* The kernel's PTX with the timing code spliced in: a module global
 * pointing at the records, timer reads at entry and, in each section of the
 * kernel (the tensor-core kernel over several weights has one per weight),
 * after its wait, its first barrier and its last row group's sums, and,
 * before each `ret`, thread 0 appending its block's record. */
static char *with_timing(const char *ptx, int kind) {
  static const char trigger[] = "griddepcontrol.launch_dependents;", bar[] = "bar.sync 0;",
                    sum[] = "// sum the 32 lanes", ret[] = "\tret;";
  char *out = malloc(strlen(ptx) * 2 + 65536), *w = out;
  const char *p = ptx, *entry = strstr(p, ".visible .entry");
  w = splice(w, p, entry);
  w += sprintf(w, ".global .align 8 .u64 timeline_records;\n\n");
  const char *body = strstr(entry, "\n{\n") + 1;
  w = splice(w, entry, body);
  const char *maxnreg = kind == QKV && getenv("MAXNREG_QKV") ? getenv("MAXNREG_QKV") : getenv("MAXNREG");
  if (maxnreg && kind != ROPE && !strstr(ptx, ".maxntid")) w += sprintf(w, ".maxnreg %s\n", maxnreg);
  w += sprintf(w, "{\n\t.reg .b64 %%tt<8>;\n\t.reg .b32 %%tu<2>;\n\t.reg .pred %%tp;\n"
                  "\tmov.u64 %%tt0, %%globaltimer;\n\tmov.u64 %%tt1, %%tt0;\n\tmov.u64 %%tt6, %%tt1;\n"
                  "\tmov.u64 %%tt7, %%tt6;");
  p = body + 2;
  int exits = 0, barred = 0;
  for (;;) { /* the next mark in the text, in order */
    const char *marks[4] = {strstr(p, trigger), strstr(p, bar), strstr(p, sum), strstr(p, ret)};
    int next = -1;
    for (int i = 0; i < 4; i++)
      if (marks[i] && (next < 0 || marks[i] < marks[next])) next = i;
    if (next < 0) break;
    if (next == 0) { /* past the wait: a section starts */
      w = splice(w, p, marks[0] + strlen(trigger));
      w += sprintf(w, "\n\tmov.u64 %%tt1, %%globaltimer;\n\tmov.u64 %%tt6, %%tt1;\n\tmov.u64 %%tt7, %%tt6;");
      p = marks[0] + strlen(trigger), barred = 0;
    } else if (next == 1) { /* x staged: the section's first barrier */
      w = splice(w, p, marks[1] + strlen(bar));
      if (!barred) w += sprintf(w, "\n\tmov.u64 %%tt6, %%globaltimer;\n\tmov.u64 %%tt7, %%tt6;");
      p = marks[1] + strlen(bar), barred = 1;
    } else if (next == 2) { /* the row group's sums done (the last one's is kept) */
      w = splice(w, p, marks[2]);
      w += sprintf(w, "mov.u64 %%tt7, %%globaltimer;\n\t");
      w = splice(w, marks[2], marks[2] + strlen(sum));
      p = marks[2] + strlen(sum);
    } else {
      w = splice(w, p, marks[3]);
      w += sprintf(w,
                   "\tmov.u64 %%tt2, %%globaltimer;\n\tmov.u32 %%tu0, %%tid.x;\n\tsetp.ne.u32 %%tp, %%tu0, 0;\n"
                   "\t@%%tp bra TIMELINE_DONE%d;\n\tld.global.u64 %%tt3, [timeline_records];\n"
                   "\tatom.global.add.u32 %%tu1, [%%tt3], 1;\n\tmul.wide.u32 %%tt4, %%tu1, 64;\n"
                   "\tadd.u64 %%tt4, %%tt4, %%tt3;\n\tmov.u64 %%tt5, %d;\n"
                   "\tst.global.v2.u64 [%%tt4+64], {%%tt5, %%tt0};\n\tst.global.v2.u64 [%%tt4+80], {%%tt1, %%tt6};\n"
                   "\tst.global.v2.u64 [%%tt4+96], {%%tt7, %%tt2};\n"
                   "TIMELINE_DONE%d:\n",
                   exits, kind, exits);
      exits++;
      w = splice(w, marks[3], marks[3] + strlen(ret));
      p = marks[3] + strlen(ret);
    }
  }
  strcpy(w, p);
  return out;
}

static kernel build(const char *key, int kind, double bytes) {
  ptxgen_spec spec;
  ptxgen_kernel k;
  char msg[512];
  if (ptxgen_spec_parse(key, &spec, msg, sizeof msg) || ptxgen_emit(&spec, &k, msg, sizeof msg)) {
    fprintf(stderr, "timeline: %s: %s\n", key, msg);
    exit(1);
  }
  char *ptx = with_timing(k.ptx, kind), log[8192] = "";
  if (flags_mode) {
    char *flagged = with_flags(ptx);
    free(ptx);
    ptx = flagged;
  }
  CUjit_option options[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *values[2] = {log, (void *)(size_t)sizeof log};
  CUmodule module;
  if (cuModuleLoadDataEx(&module, ptx, 2, options, values) != CUDA_SUCCESS) {
    fprintf(stderr, "timeline: JIT of %s: %s\n", key, log);
    exit(1);
  }
  free(ptx);
  kernel r = {.block = k.geometry.block[0], .shared = k.geometry.shared_bytes, .bytes = bytes};
  CHECK(cuModuleGetFunction(&r.f, module, k.entry));
  CUdeviceptr global;
  size_t size;
  CHECK(cuModuleGetGlobal(&global, &size, module, "timeline_records"));
  CHECK(cuMemcpyHtoD(global, &records, sizeof records));
  if (r.shared > 48 * 1024)
    CHECK(cuFuncSetAttribute(r.f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, (int)r.shared));
  int per_sm;
  CHECK(cuOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, r.f, (int)r.block, r.shared));
  /* fitted to one wave, as the runtime does (not the tensor-core kernel over
   * several weights, whose blocks are assigned to the weights by index) */
  r.grid = k.geometry.grid[0];
  if (!(spec.tc && spec.n2) && r.grid > (unsigned)per_sm * 132u) r.grid = (unsigned)per_sm * 132u;
  fprintf(stderr, "%-90s grid %u (%d per SM) block %u shared %u\n", key, r.grid, per_sm, r.block, r.shared);
  return r;
}

static void launch(const kernel *k, void **given) {
  void *params[16];
  CUdeviceptr wait = flags + 4 * (launch_index ? launch_index - 1 : 1023), signal = flags + 4 * launch_index;
  unsigned target = launch_index ? previous_grid : 0;
  int n = 0;
  while (given[n]) params[n] = given[n], n++;
  params[n++] = &wait, params[n++] = &target, params[n++] = &signal;
  launch_index++, previous_grid = k->grid;
  CUlaunchAttribute pdl = {.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION};
  pdl.value.programmaticStreamSerializationAllowed = getenv("NOPDL") ? 0 : 1;
  CUlaunchConfig c = {.gridDimX = k->grid, .gridDimY = 1, .gridDimZ = 1, .blockDimX = k->block, .blockDimY = 1,
                      .blockDimZ = 1, .sharedMemBytes = k->shared, .hStream = stream, .attrs = &pdl, .numAttrs = 1};
  CHECK(cuLaunchKernelEx(&c, k->f, params, NULL)); /* extra parameters are ignored without FLAGS */
}

static int by_release(const void *a, const void *b) {
  const record *x = a, *y = b;
  return x->released < y->released ? -1 : x->released > y->released;
}

static const char *key_or(const char *env, const char *fallback) {
  return getenv(env) ? getenv(env) : fallback;
}

int main(int argc, char **argv) {
  const int layers = argc > 1 ? atoi(argv[1]) : 32, unfused = getenv("UNFUSED") != NULL;
  const int m = getenv("M") ? atoi(getenv("M")) : 1;
  if (m < 1 || m > 16) {
    fprintf(stderr, "timeline: M=%s: want 1..16\n", getenv("M"));
    return 2;
  }
  flags_mode = getenv("FLAGS") != NULL;
  if (flags_mode && unfused) {
    fprintf(stderr, "timeline: FLAGS is not for UNFUSED (the rope kernel has no row groups to spin in)\n");
    return 2;
  }
  CHECK(cuInit(0));
  CUdevice dev;
  CUcontext ctx;
  CHECK(cuDeviceGet(&dev, 0));
  CHECK(cuDevicePrimaryCtxRetain(&ctx, dev));
  CHECK(cuCtxSetCurrent(ctx));
  CHECK(cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING));
  CHECK(cuMemAlloc(&records, 64 + (size_t)layers * 6 * 2048 * sizeof(record)));
  CHECK(cuMemAlloc(&flags, 4096)); /* 1024 launches per step at most; the last slot stays 0 */
  if (layers * 5 > 1023) {
    fprintf(stderr, "timeline: at most 204 layers\n");
    return 2;
  }

  const double q4 = 144.0 / 256, q6 = 210.0 / 256;
  kernel K[KINDS];
  char keys[KINDS][160];
  snprintf(keys[QKV], sizeof keys[QKV], "q4k_gemv:k=4096,n=4096,m=%d,n2=1024,n3=1024%s", m,
           unfused ? "" : ",rope=neox,head_dim=128,base=500000");
  snprintf(keys[ROPE], sizeof keys[ROPE], "rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=%d,base=500000", m);
  snprintf(keys[O], sizeof keys[O], "q4k_gemv:k=4096,n=4096,m=%d", m);
  snprintf(keys[GATE_UP], sizeof keys[GATE_UP], "q4k_gemv:k=4096,n=14336,m=%d,glu=swiglu", m);
  snprintf(keys[DOWN_Q6K], sizeof keys[DOWN_Q6K], "q6k_gemv:k=14336,n=4096,m=%d", m);
  snprintf(keys[DOWN_Q4K], sizeof keys[DOWN_Q4K], "q4k_gemv:k=14336,n=4096,m=%d", m);
  if (getenv("IDP")) /* the Q4_K products with integer dot products */
    for (int i = 0; i < KINDS; i++)
      if (strncmp(keys[i], "q4k_gemv:", 9) == 0) strcat(keys[i], ",idp=1");
  K[QKV] = build(key_or("KQKV", keys[QKV]), QKV, 6144.0 * 4096 * q4);
  K[ROPE] = build(keys[ROPE], ROPE, 0);
  K[O] = build(key_or("KO", keys[O]), O, 4096.0 * 4096 * q4);
  K[GATE_UP] = build(key_or("KGU", keys[GATE_UP]), GATE_UP, 2 * 14336.0 * 4096 * q4);
  K[DOWN_Q6K] = build(key_or("KD6", keys[DOWN_Q6K]), DOWN_Q6K, 4096.0 * 14336 * q6);
  K[DOWN_Q4K] = build(key_or("KD4", keys[DOWN_Q4K]), DOWN_Q4K, 4096.0 * 14336 * q4);

  /* weights: q, k, v, o, gate, up, down per layer (down at the larger of its two sizes) */
  const size_t q_bytes = (size_t)4096 * 16 * 144, kv_bytes = (size_t)1024 * 16 * 144;
  const size_t gate_bytes = (size_t)14336 * 16 * 144, down_bytes = (size_t)ptxgen_q6k_row_stride(14336) * 4096;
  const size_t layer_bytes = 2 * q_bytes + 2 * kv_bytes + 2 * gate_bytes + down_bytes;
  CUdeviceptr weights, x, yq, yk, yv, yo, h, positions, no_factors = 0, flush;
  CHECK(cuMemAlloc(&weights, layer_bytes * (size_t)layers));
  CHECK(cuMemsetD32(weights, 0x3c003c00u, layer_bytes * (size_t)layers / 4)); /* f16 1.0 pairs */
  CHECK(cuMemAlloc(&x, 65536 * (size_t)m));
  CHECK(cuMemAlloc(&yq, 65536 * (size_t)m));
  CHECK(cuMemAlloc(&yk, 65536 * (size_t)m));
  CHECK(cuMemAlloc(&yv, 65536 * (size_t)m));
  CHECK(cuMemAlloc(&yo, 65536 * (size_t)m));
  CHECK(cuMemAlloc(&h, 4 * 65536 * (size_t)m));
  CHECK(cuMemAlloc(&positions, 64));
  CHECK(cuMemsetD32(positions, 5, (size_t)m));
  CHECK(cuMemsetD32(x, 0x3c000000u, 4096 * (size_t)m));
  CHECK(cuMemAlloc(&flush, 256u << 20));

  double step_bytes = 0;
  const int steps = 6;
  for (int s = 0; s < steps; s++) {
    if (s == steps - 1) { /* record the last step only, after flushing the L2 */
      unsigned zero = 0;
      CHECK(cuStreamSynchronize(stream));
      CHECK(cuMemsetD32(flush, (unsigned)s, (256u << 20) / 4));
      CHECK(cuCtxSynchronize());
      CHECK(cuMemcpyHtoD(records, &zero, sizeof zero));
    }
    CHECK(cuMemsetD32Async(flags, 0, 1024, stream));
    launch_index = 0;
    for (int l = 0; l < layers; l++) {
      CUdeviceptr Wq = weights + layer_bytes * (size_t)l, Wk = Wq + q_bytes, Wv = Wk + kv_bytes;
      CUdeviceptr Wo = Wv + kv_bytes, Wg = Wo + q_bytes, Wu = Wg + gate_bytes, Wd = Wu + gate_bytes;
      const int down = l % 2 ? DOWN_Q4K : DOWN_Q6K;
      if (unfused) {
        void *qkv[] = {&Wq, &Wk, &Wv, &x, &yq, &yk, &yv, NULL};
        launch(&K[QKV], qkv);
        void *rope[] = {&yq, &yk, &positions, &no_factors, NULL};
        launch(&K[ROPE], rope);
      } else {
        void *qkv[] = {&Wq, &Wk, &Wv, &x, &yq, &yk, &yv, &positions, &no_factors, NULL};
        launch(&K[QKV], qkv);
      }
      void *o[] = {&Wo, &yq, &yo, NULL}, *gate_up[] = {&Wg, &Wu, &yo, &h, NULL};
      void *down_params[] = {&Wd, &h, &x, NULL};
      launch(&K[O], o);
      launch(&K[GATE_UP], gate_up);
      launch(&K[down], down_params);
      if (s == 0) step_bytes += K[QKV].bytes + K[O].bytes + K[GATE_UP].bytes + K[down].bytes;
    }
  }
  CHECK(cuCtxSynchronize());

  unsigned count;
  CHECK(cuMemcpyDtoH(&count, records, sizeof count));
  record *R = malloc(count * sizeof *R);
  CHECK(cuMemcpyDtoH(R, records + 64, count * sizeof *R));
  /* Every block of a kernel passes its wait after the kernel before has
   * ended, so ordered by that time the records fall into launches: runs of
   * one kind (consecutive launches are of different kinds). */
  qsort(R, count, sizeof *R, by_release);
  double sum[KINDS][7] = {{0}};
  int launches[KINDS] = {0}, index = 0;
  unsigned long long first = R[0].start, previous_end = 0;
  for (unsigned i = 0; i < count; index++) {
    unsigned j = i;
    unsigned long long kind = R[i].kind, start = ~0ull, released = ~0ull, last_released = 0, end = 0;
    double stage = 0, compute = 0, tail = 0;
    for (; j < count && R[j].kind == kind; j++) {
      if (R[j].start < start) start = R[j].start;
      if (R[j].released < released) released = R[j].released;
      if (R[j].released > last_released) last_released = R[j].released;
      if (R[j].end > end) end = R[j].end;
      stage += (double)R[j].staged - (double)R[j].released;
      compute += (double)R[j].summed - (double)R[j].staged;
      tail += (double)R[j].end - (double)R[j].summed;
    }
    if (previous_end) {
      sum[kind][0] += (double)released - (double)previous_end;
      sum[kind][1] += (double)end - (double)released;
      sum[kind][2] += (double)end - (double)previous_end;
      sum[kind][3] += stage / (j - i);
      sum[kind][4] += compute / (j - i);
      sum[kind][5] += tail / (j - i);
      sum[kind][6] += (double)last_released - (double)released;
      launches[kind]++;
      if (getenv("VERBOSE") && index < 12)
        printf("launch %d %s, %u blocks: start %+.0f ns, release %.0f ns, to end %.0f ns\n", index,
               kind_names[kind], j - i, (double)start - (double)previous_end, (double)released - previous_end,
               (double)end - released);
    }
    previous_end = end;
    i = j;
  }
  printf("step: %.1f us over %d layers, %.3f GB of weights: %.1f GB/s\n", (previous_end - first) / 1e3, layers,
         step_bytes / 1e9, step_bytes / (double)(previous_end - first));
  printf("%-10s %8s %12s %12s %10s %14s %9s %9s %9s %9s\n", "kernel", "launches", "release_us", "t1->end_us",
         "span_us", "bytes_us@3.1", "stage", "compute", "tail", "rel_sprd");
  for (int k = 0; k < KINDS; k++)
    if (launches[k])
      printf("%-10s %8d %12.2f %12.2f %10.2f %14.2f %9.2f %9.2f %9.2f %9.2f\n", kind_names[k], launches[k],
             sum[k][0] / launches[k] / 1e3, sum[k][1] / launches[k] / 1e3, sum[k][2] / launches[k] / 1e3,
             K[k].bytes / 3.1e3 / 1e3, sum[k][3] / launches[k] / 1e3, sum[k][4] / launches[k] / 1e3,
             sum[k][5] / launches[k] / 1e3, sum[k][6] / launches[k] / 1e3);
  free(R);
  return 0;
}
