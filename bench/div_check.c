/*
 * div_check.c: a development harness (not built by Meson, not part of
 * ptxq-bench) that checks ptxgen's written-out division (emit_div_rn in
 * ptxgen/act_math.c, which the activation kernels use on sm_80, sm_90 and
 * sm_100) against div.rn.f32, bit for bit, on the GPU.
 *
 * One kernel, built with ptxgen's own builder: each thread draws operand
 * pairs from a hash of their index (splitmix64), divides each pair with
 * div.rn.f32 and with emit_div_rn's instructions, and counts the pairs
 * whose results differ in any bit, NaN bits included. Five sets of COUNT
 * pairs each (default 2^32): random bit patterns; quotients in the
 * subnormal range; quotients near overflow; quotients near a point halfway
 * between two floats (a = b * (q + ulp(q)/2), rounded); exponent fields 0,
 * 1, 127, 254 or 255 with mantissas 0, 1, all ones or random (zeros,
 * subnormals, infinities, NaN). The first differences of each set are
 * printed. The kernel is for sm_90 (the device must be sm_90 or newer).
 *
 *   gcc -std=c11 -O2 -Iinclude -Iptxgen -I/usr/local/cuda/include bench/div_check.c ptxgen/ptx.c \
 *     ptxgen/act_math.c -L/usr/local/cuda/lib64/stubs -lcuda -lm -o /tmp/div_check
 *   /tmp/div_check [COUNT]
 * Exit status: 0 no difference, 1 a driver or usage failure, 2 differences found.
 */
#define _POSIX_C_SOURCE 200809L

#include <cuda.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "act_math.h"
#include "ptx.h"

#define SETS 5
#define SHOWN 16 /* differences kept per set */
#define OUT_BYTES (16 + 16 * SHOWN)

static const char *const set_names[SETS] = {"random bits", "subnormal quotients", "quotients near overflow",
                                            "quotients near halfway points", "special exponents and mantissas"};

/* The harness's own registers (%g b32, %h b64, %k f32, %q pred), apart from the builder's. */
static const char *const start =
" .reg .pred %q<12>; .reg .b32 %g<16>; .reg .b64 %h<32>; .reg .f32 %k<8>;\n"
" ld.param.u64 %h0, [out]; ld.param.u64 %h9, [set]; cvt.u32.u64 %g0, %h9;\n"
" ld.param.u64 %h1, [base]; ld.param.u64 %h2, [count];\n"
" mov.u32 %g1, %ctaid.x; mov.u32 %g2, %ntid.x; mov.u32 %g3, %tid.x;\n"
" mul.wide.u32 %h3, %g1, %g2; cvt.u64.u32 %h4, %g3; add.u64 %h3, %h3, %h4;\n"
" mov.u32 %g4, %nctaid.x; mul.wide.u32 %h5, %g4, %g2;\n";

/* Pair %h3 of set %g0: %g5 = a's bits, %g6 = b's bits; then %k2 = div.rn.f32(a, b). */
static const char *const draw =
"DC_LOOP:\n setp.ge.u64 %q0, %h3, %h2; @%q0 bra DC_DONE;\n"
" add.u64 %h6, %h3, %h1; add.u64 %h6, %h6, 1; mul.lo.u64 %h7, %h6, 0x9E3779B97F4A7C15;\n"
" shr.u64 %h8, %h7, 30; xor.b64 %h7, %h7, %h8; mul.lo.u64 %h7, %h7, 0xBF58476D1CE4E5B9;\n"
" shr.u64 %h8, %h7, 27; xor.b64 %h7, %h7, %h8; mul.lo.u64 %h7, %h7, 0x94D049BB133111EB;\n"
" shr.u64 %h8, %h7, 31; xor.b64 %h7, %h7, %h8;\n"
" cvt.u32.u64 %g5, %h7; shr.u64 %h8, %h7, 32; cvt.u32.u64 %g6, %h8;\n"   /* a, b */
" setp.eq.u32 %q1, %g0, 1; @%q1 bra DC_M1;\n setp.eq.u32 %q1, %g0, 2; @%q1 bra DC_M2;\n"
" setp.eq.u32 %q1, %g0, 3; @%q1 bra DC_M3;\n setp.eq.u32 %q1, %g0, 4; @%q1 bra DC_M4;\n bra.uni DC_DIV;\n"
/* set 1: a's exponent field 0..39, b's 110..149 */
"DC_M1:\n bfe.u32 %g7, %g5, 23, 8; rem.u32 %g7, %g7, 40; bfi.b32 %g5, %g7, %g5, 23, 8;\n"
" bfe.u32 %g7, %g6, 23, 8; rem.u32 %g7, %g7, 40; add.u32 %g7, %g7, 110; bfi.b32 %g6, %g7, %g6, 23, 8; bra.uni DC_DIV;\n"
/* set 2: a 215..254, b 90..129 */
"DC_M2:\n bfe.u32 %g7, %g5, 23, 8; rem.u32 %g7, %g7, 40; add.u32 %g7, %g7, 215; bfi.b32 %g5, %g7, %g5, 23, 8;\n"
" bfe.u32 %g7, %g6, 23, 8; rem.u32 %g7, %g7, 40; add.u32 %g7, %g7, 90; bfi.b32 %g6, %g7, %g6, 23, 8; bra.uni DC_DIV;\n"
/* set 3: q from a's bits (exponent field 100..154), b's 100..154, a = f32(b * (q + ulp(q)/2)) */
"DC_M3:\n bfe.u32 %g7, %g5, 23, 8; rem.u32 %g7, %g7, 55; add.u32 %g7, %g7, 100; bfi.b32 %g5, %g7, %g5, 23, 8;\n"
" bfe.u32 %g8, %g6, 23, 8; rem.u32 %g8, %g8, 55; add.u32 %g8, %g8, 100; bfi.b32 %g6, %g8, %g6, 23, 8;\n"
" mov.b32 %k5, %g5; cvt.f64.f32 %h10, %k5; add.u32 %g9, %g7, 872; cvt.u64.u32 %h11, %g9; shl.b64 %h11, %h11, 52;\n" /* ulp(q)/2 = 2^(E-151): fp64 exponent field E + 872 */
" and.b32 %g10, %g5, 0x80000000; cvt.u64.u32 %h12, %g10; shl.b64 %h12, %h12, 32; or.b64 %h11, %h11, %h12;\n"
" add.rn.f64 %h10, %h10, %h11; mov.b32 %k6, %g6; cvt.f64.f32 %h13, %k6; mul.rn.f64 %h10, %h10, %h13;\n"
" cvt.rn.f32.f64 %k5, %h10; mov.b32 %g5, %k5; bra.uni DC_DIV;\n"
/* set 4: exponent fields {0, 1, 127, 254, 255}, mantissas {random, 0, 1, 0x7FFFFF} */
"DC_M4:\n and.b32 %g7, %g5, 7; rem.u32 %g7, %g7, 5; setp.eq.u32 %q2, %g7, 2; selp.b32 %g7, 127, %g7, %q2;\n"
" setp.eq.u32 %q2, %g7, 3; selp.b32 %g7, 254, %g7, %q2; setp.eq.u32 %q2, %g7, 4; selp.b32 %g7, 255, %g7, %q2;\n"
" bfe.u32 %g8, %g5, 3, 2; and.b32 %g9, %g5, 0x807FFFFF; setp.eq.u32 %q2, %g8, 1; @%q2 and.b32 %g9, %g9, 0x80000000;\n"
" setp.eq.u32 %q2, %g8, 2; @%q2 and.b32 %g9, %g9, 0x80000000; @%q2 or.b32 %g9, %g9, 1;\n"
" setp.eq.u32 %q2, %g8, 3; @%q2 or.b32 %g9, %g9, 0x7FFFFF; bfi.b32 %g5, %g7, %g9, 23, 8;\n"
" and.b32 %g7, %g6, 7; rem.u32 %g7, %g7, 5; setp.eq.u32 %q2, %g7, 2; selp.b32 %g7, 127, %g7, %q2;\n"
" setp.eq.u32 %q2, %g7, 3; selp.b32 %g7, 254, %g7, %q2; setp.eq.u32 %q2, %g7, 4; selp.b32 %g7, 255, %g7, %q2;\n"
" bfe.u32 %g8, %g6, 3, 2; and.b32 %g9, %g6, 0x807FFFFF; setp.eq.u32 %q2, %g8, 1; @%q2 and.b32 %g9, %g9, 0x80000000;\n"
" setp.eq.u32 %q2, %g8, 2; @%q2 and.b32 %g9, %g9, 0x80000000; @%q2 or.b32 %g9, %g9, 1;\n"
" setp.eq.u32 %q2, %g8, 3; @%q2 or.b32 %g9, %g9, 0x7FFFFF; bfi.b32 %g6, %g7, %g9, 23, 8;\n"
"DC_DIV:\n mov.b32 %k0, %g5; mov.b32 %k1, %g6;\n div.rn.f32 %k2, %k0, %k1;\n";

/* %k2 (div.rn.f32) against %k3 (emit_div_rn) bit for bit: a difference is
 * counted at out[0], and the first SHOWN keep a, b and both results at
 * out + 16. */
static const char *const compare =
" mov.b32 %g11, %k2; mov.b32 %g12, %k3; setp.eq.u32 %q5, %g11, %g12; @%q5 bra DC_NEXT;\n"
" atom.global.add.u32 %g13, [%h0], 1; setp.ge.u32 %q8, %g13, 16; @%q8 bra DC_NEXT;\n"
" mul.wide.u32 %h30, %g13, 16; add.u64 %h30, %h30, %h0; add.u64 %h30, %h30, 16;\n"
" st.global.v4.u32 [%h30], {%g5, %g6, %g11, %g12};\n"
"DC_NEXT:\n add.u64 %h3, %h3, %h5; bra.uni DC_LOOP;\n"
"DC_DONE:\n ret;\n";

static char *build_ptx(size_t *len) {
  ptx_builder b;
  ptx_begin(&b, "8.0", 90);
  static const char *const params[] = {"out", "set", "base", "count"};
  ptx_entry(&b, "div_check", params, 4, 0, 0);
  ptx_ins(&b, "%s", start);
  ptx_ins(&b, "%s", draw);
  ptx_reg a = ptx_new(&b, PTX_F32), d = ptx_new(&b, PTX_F32);
  ptx_ins(&b, "mov.b32 %s, %%k0;", a.s);
  ptx_ins(&b, "mov.b32 %s, %%k1;", d.s);
  ptx_reg y = emit_div_rn(&b, a, d, true);
  ptx_ins(&b, "mov.b32 %%k3, %s;", y.s);
  ptx_ins(&b, "%s", compare);
  return ptx_finish(&b, len);
}

static int check(CUresult r, const char *what) {
  if (r == CUDA_SUCCESS) return 0;
  const char *name = "?";
  cuGetErrorName(r, &name);
  fprintf(stderr, "div_check: %s: %s\n", what, name);
  return 1;
}

int main(int argc, char **argv) {
  char *end = NULL;
  unsigned long long count = argc > 1 ? strtoull(argv[1], &end, 0) : 1ull << 32;
  if (argc > 2 || (argc > 1 && (*end || count == 0))) {
    fprintf(stderr, "usage: div_check [COUNT]   (pairs per set, default 2^32)\n");
    return 1;
  }
  size_t len = 0;
  char *ptx = build_ptx(&len);
  if (!ptx) {
    fprintf(stderr, "div_check: building the kernel failed\n");
    return 1;
  }
  CUdevice dev;
  CUcontext ctx;
  CUmodule mod;
  CUfunction fn;
  CUdeviceptr out;
  char log[8192] = "";
  CUjit_option opt[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
  void *val[2] = {log, (void *)(uintptr_t)sizeof log};
  if (check(cuInit(0), "cuInit") || check(cuDeviceGet(&dev, 0), "cuDeviceGet") ||
      check(cuDevicePrimaryCtxRetain(&ctx, dev), "cuDevicePrimaryCtxRetain") ||
      check(cuCtxSetCurrent(ctx), "cuCtxSetCurrent"))
    return 1;
  if (check(cuModuleLoadDataEx(&mod, ptx, 2, opt, val), "cuModuleLoadDataEx")) {
    fprintf(stderr, "%s\n", log);
    return 1;
  }
  free(ptx);
  if (check(cuModuleGetFunction(&fn, mod, "div_check"), "cuModuleGetFunction") ||
      check(cuMemAlloc(&out, OUT_BYTES), "cuMemAlloc"))
    return 1;
  int sm_count = 0;
  cuDeviceGetAttribute(&sm_count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
  int differ = 0;
  for (unsigned long long set = 0; set < SETS; set++) {
    unsigned long long base = set << 40;
    void *params[] = {&out, &set, &base, &count};
    uint32_t host[OUT_BYTES / 4];
    if (check(cuMemsetD8(out, 0, OUT_BYTES), "cuMemsetD8") ||
        check(cuLaunchKernel(fn, (unsigned)sm_count * 16, 1, 1, 256, 1, 1, 0, NULL, params, NULL), "cuLaunchKernel") ||
        check(cuCtxSynchronize(), "the kernel") || check(cuMemcpyDtoH(host, out, sizeof host), "cuMemcpyDtoH"))
      return 1;
    printf("set %llu (%s): %llu pairs, %u differ\n", set, set_names[set], count, host[0]);
    for (uint32_t i = 0; i < host[0] && i < SHOWN; i++)
      printf("  a %08x b %08x: div.rn.f32 %08x, emit_div_rn %08x\n", host[4 + 4 * i], host[5 + 4 * i],
             host[6 + 4 * i], host[7 + 4 * i]);
    differ |= host[0] != 0;
  }
  return differ ? 2 : 0;
}
