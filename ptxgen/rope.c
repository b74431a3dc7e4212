/*
 * rope.c: rotary position embedding, in place, for the Q and K heads of m
 * tokens in one launch (kind rope).
 *
 * Layout: q [m][heads][head_dim], k [m][kv_heads][head_dim], fp32; token t's
 * position is the device int32 positions[t], so a captured graph replays for
 * the next token once that buffer changes. Block (x, t) rotates up to 8 of
 * token t's heads+kv_heads head vectors: each thread loads its pairs, then
 * computes their (cos, sin) * mscale (where n_dims/2 divides the block's
 * threads its pairs are one pair of several vectors; otherwise the block
 * builds a table of all n_dims/2 in shared memory), then rotates its pairs
 * (a, b) -> (a cos - b sin, a sin + b cos), pairs being (x[2i], x[2i+1])
 * (normal) or (x[i], x[i + n_dims/2]) (neox). Dims past n_dims are not
 * touched.
 *
 * Angles: theta_i = pos * freq_i / ff_i. freq_i (base^(-2i/n_dims), with
 * linear scaling and the YaRN blend folded in, llama.cpp's semantics) is a
 * double constant table computed here; ff_i is the optional device
 * freq_factors array. A float32 product pos * freq would be off by ~1e-2
 * radians at positions near 2^20. Instead theta is formed in fp64 (exact
 * position times a 53-bit frequency) and reduced modulo pi/2 in fp64 with a
 * three-part Cody-Waite split of pi/2 whose first two parts have 22
 * significant bits, so q * part is exact for |q| < 2^31; the remainder
 * |r| <= pi/4 is then rounded to float32 and sin/cos come from their Taylor
 * series to degree 9/10 (truncation < 2e-9), picked and signed by the
 * quadrant. Result: ~1e-7 absolute on sin and cos at any int32 position.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "kernels.h"
#include "ptx.h"
#include "rope_math.h"

#define THREADS 128u
#define ROWS_PER_BLOCK 8u

static uint64_t dbits(double d) {
  uint64_t u;
  memcpy(&u, &d, sizeof u);
  return u;
}
static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* "0f%08X" of f, the PTX spelling of a float constant, as an immediate for
 * the typed lines (ptx_op1i and the like). */
typedef struct {
  char s[16];
} f32_text;
static f32_text f32_imm(float f) {
  static const char hex[] = "0123456789ABCDEF";
  f32_text t = {"0f"};
  uint32_t u = fbits(f);
  for (int i = 9; i >= 2; i--, u >>= 4) t.s[i] = hex[u & 15];
  return t;
}

/* freq_i and mscale, as llama.cpp defines them (YaRN: theta blends
 * freq_scale*theta and theta with a per-pair ramp; theta_interp*(1-mix) +
 * theta_extrap*mix == theta_extrap * (freq_scale*(1-mix) + mix)). */
static double pair_freq(const ptxgen_spec *s, uint32_t i) {
  double f = pow((double)s->base, -2.0 * i / s->n_dims);
  double mix = 0;
  if (s->ext_factor != 0) {
    const double two_pi = 6.283185307179586476925;
    double denom = 2 * log((double)s->base);
    double low = floor(s->n_dims * log(s->n_ctx_orig / ((double)s->beta_fast * two_pi)) / denom);
    double high = ceil(s->n_dims * log(s->n_ctx_orig / ((double)s->beta_slow * two_pi)) / denom);
    if (low < 0) low = 0;
    if (high > s->n_dims - 1) high = s->n_dims - 1;
    double y = (i - low) / fmax(0.001, high - low);
    double ramp = 1 - fmin(1, fmax(0, y));
    mix = ramp * s->ext_factor;
  }
  return f * ((double)s->freq_scale * (1 - mix) + mix);
}

static double rope_mscale(const ptxgen_spec *s) {
  double ms = s->attn_factor;
  if (s->ext_factor != 0) ms *= 1 + 0.1 * log(1.0 / s->freq_scale);
  return ms;
}

/* "%.17g" of d, exactly as snprintf writes it, into out; its length.
 * glibc's snprintf takes ~150 ns for it (multi-precision arithmetic), and a
 * table has a comment with one per pair, so for a frequency's range
 * (1e-11 <= d < 1e16) the 17 digits are made here instead: d = mant * 2^e
 * exactly, so d * 10^k = mant * 5^k * 2^(e+k), which for k <= 27 is an
 * integer of at most 117 bits shifted, rounded to nearest (ties to even,
 * as printf does) in 128-bit arithmetic. Anything else goes to snprintf. */
static size_t format_g17(double d, char out[40]) {
#if defined(__SIZEOF_INT128__)
  __extension__ typedef unsigned __int128 u128;
  const uint64_t ten16 = 10000000000000000ull, ten17 = 100000000000000000ull;
  static const uint64_t pow5[28] = { /* 5^k */
      1ull, 5ull, 25ull, 125ull, 625ull, 3125ull, 15625ull, 78125ull, 390625ull, 1953125ull, 9765625ull,
      48828125ull, 244140625ull, 1220703125ull, 6103515625ull, 30517578125ull, 152587890625ull,
      762939453125ull, 3814697265625ull, 19073486328125ull, 95367431640625ull, 476837158203125ull,
      2384185791015625ull, 11920928955078125ull, 59604644775390625ull, 298023223876953125ull,
      1490116119384765625ull, 7450580596923828125ull};
  if (d >= 1e-11 && d < 1e16) {
    int e2;
    const double fr = frexp(d, &e2);                /* d = fr * 2^e2, 0.5 <= fr < 1 */
    const uint64_t mant = (uint64_t)ldexp(fr, 53); /* d = mant * 2^(e2 - 53), exactly */
    /* x: the decimal exponent of d rounded to 17 digits. It starts at
     * floor(log10(2^(e2-1))) and moves until the digits are 17. */
    int x = (int)floor((e2 - 1) * 0.30102999566398120);
    for (int tries = 0; tries < 4; tries++) {
      const int k = 16 - x; /* digits = round(d * 10^k) */
      if (k < 0 || k > 27) break;
      const u128 p = (u128)mant * pow5[k]; /* d * 10^k = p * 2^-s */
      const int s = 53 - e2 - k;
      u128 n;
      if (s <= 0) {
        n = p << -s;
      } else {
        n = p >> s;
        const u128 rem = p - (n << s), half = (u128)1 << (s - 1);
        if (rem > half || (rem == half && (n & 1))) n++;
      }
      if (n >= ten17) {
        x++;
        continue;
      }
      if (n < ten16) {
        x--;
        continue;
      }
      char dg[17];
      uint64_t v = (uint64_t)n;
      for (int i = 16; i >= 0; i--, v /= 10) dg[i] = (char)('0' + v % 10);
      int last = 16; /* the last digit kept: %g drops trailing zeros */
      while (last > 0 && dg[last] == '0') last--;
      size_t len = 0;
      if (x < -4 || x >= 17) { /* d.ddde-XX */
        out[len++] = dg[0];
        if (last > 0) out[len++] = '.';
        for (int i = 1; i <= last; i++) out[len++] = dg[i];
        out[len++] = 'e';
        out[len++] = x < 0 ? '-' : '+';
        const int ax = x < 0 ? -x : x;
        if (ax >= 100) out[len++] = (char)('0' + ax / 100);
        out[len++] = (char)('0' + ax / 10 % 10);
        out[len++] = (char)('0' + ax % 10);
      } else if (x >= 0) { /* ddd.ddd */
        for (int i = 0; i <= x; i++) out[len++] = dg[i];
        if (last > x) out[len++] = '.';
        for (int i = x + 1; i <= last; i++) out[len++] = dg[i];
      } else { /* 0.000ddd */
        out[len++] = '0';
        out[len++] = '.';
        for (int i = -1; i > x; i--) out[len++] = '0';
        for (int i = 0; i <= last; i++) out[len++] = dg[i];
      }
      out[len] = '\0';
      return len;
    }
  }
#endif
  int n = snprintf(out, 40, "%.17g", d);
  return n > 0 ? (size_t)n : 0;
}

void rope_emit_freq_table(ptx_builder *b, const ptxgen_spec *s) {
  const uint32_t pairs = s->n_dims / 2;
  ptx_decl(b, "// freq_i = base^(-2i/n_dims) with linear and YaRN scaling folded in");
  ptx_decl(b, ".const .align 8 .b64 rope_freq[%u] = {", pairs);
  /* A line "\t0x%016llX%s // %.17g" per pair, written by hand (as one
   * snprintf each they took ~10 µs a table) and handed to ptx_decl a few
   * KB at a time (a call per line took another ~3 µs). */
  static const char hex[] = "0123456789ABCDEF";
  char text[4096];
  size_t len = 0;
  for (uint32_t i = 0; i < pairs; i++) {
    const double f = pair_freq(s, i);
    uint64_t bits = dbits(f);
    memcpy(text + len, "\t0x", 3);
    len += 3;
    for (int j = 15; j >= 0; j--, bits >>= 4) text[len + (size_t)j] = hex[bits & 15];
    len += 16;
    if (i + 1 < pairs) text[len++] = ',';
    memcpy(text + len, " // ", 4);
    len += 4;
    len += format_g17(f, text + len);
    /* the last line of a batch is ended by ptx_decl; a line is < 64 bytes */
    if (i + 1 == pairs || len + 64 >= sizeof text) {
      text[len] = '\0';
      ptx_decl(b, "%s", text);
      len = 0;
    } else {
      text[len++] = '\n';
    }
  }
  ptx_decl(b, "};");
}

void rope_emit_cos_sin(ptx_builder *b, const ptxgen_spec *s, ptx_reg i, ptx_reg posd, ptx_reg ff, ptx_reg *cos_out,
                       ptx_reg *sin_out) {
  ptx_reg off = ptx_new(b, PTX_B32), f = ptx_new(b, PTX_B64), th = ptx_new(b, PTX_B64);
  ptx_reg ca = ptx_new(b, PTX_B64), co = ptx_new(b, PTX_B64);
  ptx_op2i(b, "shl.b32", off, i, "3");
  ptx_op1i(b, "mov.u64", ca, "rope_freq");
  ptx_op2(b, "cvt.u64.u32", co, off);
  ptx_op3(b, "add.u64", ca, ca, co);
  ptx_ins(b, "ld.const.f64 %s, [%s];", f.s, ca.s);
  if (s->freq_factors) {
    ptx_reg fa = ptx_new(b, PTX_B64), ffv = ptx_new(b, PTX_F32), ffd = ptx_new(b, PTX_B64);
    ptx_op2i(b, "mul.wide.u32", fa, i, "4");
    ptx_op3(b, "add.u64", fa, fa, ff);
    ptx_ins(b, "ld.global.f32 %s, [%s];", ffv.s, fa.s);
    ptx_op2(b, "cvt.f64.f32", ffd, ffv);
    ptx_op3(b, "div.rn.f64", f, f, ffd);
  }
  ptx_op3(b, "mul.rn.f64", th, posd, f);
  ptx_comment(b, "theta = q*pi/2 + r, |r| <= pi/4, in fp64");
  ptx_reg q = ptx_new(b, PTX_B64), r = ptx_new(b, PTX_B64), nq = ptx_new(b, PTX_B64);
  ptx_ins(b, "mul.rn.f64 %s, %s, 0d%016llX;", q.s, th.s, (unsigned long long)dbits(0x1.45f306dc9c883p-1));
  ptx_op2(b, "cvt.rni.f64.f64", q, q);
  ptx_op2(b, "neg.f64", nq, q);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.921fb00000000p+0), th.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.5110b00000000p-22), r.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.18469898cc517p-44), r.s);
  ptx_reg qi = ptx_new(b, PTX_B64), quad = ptx_new(b, PTX_B32), rf = ptx_new(b, PTX_F32), r2 = ptx_new(b, PTX_F32);
  ptx_op2(b, "cvt.rzi.s64.f64", qi, q);
  ptx_op2(b, "cvt.u32.u64", quad, qi);
  ptx_op2i(b, "and.b32", quad, quad, "3"); /* two's complement: q mod 4 for negative q too */
  ptx_op2(b, "cvt.rn.f32.f64", rf, r);
  ptx_op3(b, "mul.rn.f32", r2, rf, rf);
  ptx_comment(b, "sin r and cos r by their Taylor series");
  static const double sin_c[] = {-1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880};
  static const double cos_c[] = {-1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800};
  ptx_reg ps = ptx_new(b, PTX_F32), pc = ptx_new(b, PTX_F32), sn = ptx_new(b, PTX_F32), cs = ptx_new(b, PTX_F32);
  ptx_op1i(b, "mov.b32", ps, f32_imm((float)sin_c[3]).s);
  for (int j = 2; j >= 0; j--) ptx_op3i(b, "fma.rn.f32", ps, ps, r2, f32_imm((float)sin_c[j]).s);
  ptx_op3(b, "mul.rn.f32", ps, ps, r2);
  ptx_op4(b, "fma.rn.f32", sn, ps, rf, rf); /* r + r^3 * (...) */
  ptx_op1i(b, "mov.b32", pc, f32_imm((float)cos_c[4]).s);
  for (int j = 3; j >= 0; j--) ptx_op3i(b, "fma.rn.f32", pc, pc, r2, f32_imm((float)cos_c[j]).s);
  ptx_op3i(b, "fma.rn.f32", cs, pc, r2, "0f3F800000");
  ptx_comment(b, "quadrant: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s)");
  ptx_reg odd = ptx_new(b, PTX_PRED), sneg = ptx_new(b, PTX_PRED), cneg = ptx_new(b, PTX_PRED);
  ptx_reg st = ptx_new(b, PTX_F32), ct = ptx_new(b, PTX_F32), qb = ptx_new(b, PTX_B32);
  ptx_op2i(b, "and.b32", qb, quad, "1");
  ptx_op2i(b, "setp.ne.u32", odd, qb, "0");
  ptx_op2i(b, "setp.ge.u32", sneg, quad, "2");
  ptx_op2i(b, "add.u32", qb, quad, "1");
  ptx_op2i(b, "and.b32", qb, qb, "2"); /* quadrants 1 and 2 */
  ptx_op2i(b, "setp.ne.u32", cneg, qb, "0");
  ptx_op4(b, "selp.f32", st, cs, sn, odd);
  ptx_op4(b, "selp.f32", ct, sn, cs, odd);
  ptx_ins(b, "@%s neg.f32 %s, %s;", sneg.s, st.s, st.s);
  ptx_ins(b, "@%s neg.f32 %s, %s;", cneg.s, ct.s, ct.s);
  float ms = (float)rope_mscale(s);
  if (ms != 1.0f) {
    ptx_ins(b, "mul.rn.f32 %s, %s, 0f%08X; // mscale %.9g", st.s, st.s, fbits(ms), (double)ms);
    ptx_ins(b, "mul.rn.f32 %s, %s, 0f%08X;", ct.s, ct.s, fbits(ms));
  }
  *cos_out = ct;
  *sin_out = st;
}

void rope_emit_rotate(ptx_builder *b, ptx_reg x0, ptx_reg x1, ptx_reg c, ptx_reg sn, ptx_reg *y0, ptx_reg *y1) {
  ptx_reg t0 = ptx_new(b, PTX_F32), t1 = ptx_new(b, PTX_F32);
  *y0 = ptx_new(b, PTX_F32);
  *y1 = ptx_new(b, PTX_F32);
  ptx_op3(b, "mul.rn.f32", t0, x1, sn);
  ptx_op2(b, "neg.f32", t0, t0);
  ptx_op4(b, "fma.rn.f32", *y0, x0, c, t0); /* a cos - b sin */
  ptx_op3(b, "mul.rn.f32", t1, x1, c);
  ptx_op4(b, "fma.rn.f32", *y1, x0, sn, t1); /* a sin + b cos */
}

/* Builds the (cos, sin) * mscale table entry of pair i (register) into shared. */
static void emit_table_entry(ptx_builder *b, const ptxgen_spec *s, ptx_reg i, ptx_reg posd, ptx_reg ff) {
  ptx_reg ct, st, sa = ptx_new(b, PTX_B32);
  rope_emit_cos_sin(b, s, i, posd, ff, &ct, &st);
  ptx_ins(b, "mov.u32 %s, rope_cs;", sa.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", sa.s, i.s, sa.s);
  ptx_ins(b, "st.shared.v2.f32 [%s], {%s, %s};", sa.s, ct.s, st.s);
}

int rope_emit(const ptxgen_spec *s, ptxgen_kernel *out) {
  const uint32_t pairs = s->n_dims / 2, rows = s->heads + s->kv_heads;
  const uint32_t row_blocks = (rows + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK;
  /* Where the pairs divide the threads (64 of Llama's 128 dims), a thread's
   * items are one pair of several vectors: it computes that pair's (cos,
   * sin) itself, with no table in shared memory and no barrier. */
  const bool own_pair = THREADS % pairs == 0;
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(s->sm), s->sm);
  rope_emit_freq_table(&b, s); /* one double per pair */
  if (!own_pair) ptx_decl(&b, ".shared .align 8 .b8 rope_cs[%u];\n", pairs * 8);
  snprintf(out->entry, sizeof out->entry, "rope_%s_d%u_r%u_h%u_kv%u_m%u", s->mode == 2 ? "neox" : "normal",
           s->head_dim, s->n_dims, s->heads, s->kv_heads, s->m);
  static const char *const params[] = {"q", "k", "positions", "freq_factors"};
  ptx_entry(&b, out->entry, params, 4, 0, 0);
  ptx_comment(&b, "%s RoPE: %u tokens x (%u q + %u k heads) of %u dims, %u rotated; base %.9g, freq_scale %.9g%s%s",
              s->mode == 2 ? "neox" : "normal", s->m, s->heads, s->kv_heads, s->head_dim, s->n_dims, (double)s->base,
              (double)s->freq_scale, s->freq_factors ? ", freq_factors" : "", s->ext_factor != 0 ? ", YaRN" : "");
  ptx_reg q = ptx_param_u64(&b, "q"), k = ptx_param_u64(&b, "k"), pos = ptx_param_u64(&b, "positions");
  ptx_reg ff = ptx_param_u64(&b, "freq_factors");
  ptx_reg tid = ptx_new(&b, PTX_B32), rb = ptx_new(&b, PTX_B32), tok = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  ptx_ins(&b, "mov.u32 %s, %%tid.x;", tid.s);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", rb.s);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.y;", tok.s);
  ptx_grid_dependency_sync(&b);
  ptx_reg pa = ptx_new(&b, PTX_B64), pv = ptx_new(&b, PTX_B32), posd = ptx_new(&b, PTX_B64);
  ptx_ins(&b, "mul.wide.u32 %s, %s, 4;", pa.s, tok.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", pa.s, pa.s, pos.s);
  ptx_ins(&b, "ld.global.s32 %s, [%s];", pv.s, pa.s);
  ptx_ins(&b, "cvt.rn.f64.s32 %s, %s;", posd.s, pv.s);

  /* Each thread's items (head vector j / pairs, pair j % pairs, for
   * j = tid + THREADS*t) are loaded first, so that their global-memory
   * latency overlaps the (cos, sin) work. Item t's vector and pair
   * follow from item 0's by a constant step (THREADS = step_rows * pairs +
   * step_pairs), so there is one division per thread: the kernel is first
   * used through the driver's JIT, whose time grows with every line. */
  const uint32_t per_thread = (ROWS_PER_BLOCK * pairs + THREADS - 1) / THREADS;
  const uint32_t step_rows = THREADS / pairs, step_pairs = THREADS % pairs;
  ptx_comment(&b, "load this thread's %u pairs (head vector j / %u of this block, pair j %% %u)", per_thread, pairs,
              pairs);
  ptx_reg first = ptx_new(&b, PTX_B32), row = ptx_new(&b, PTX_B32), pair = ptx_new(&b, PTX_B32);
  ptx_reg limit = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", first.s, rb.s, ROWS_PER_BLOCK); /* the block's first vector */
  ptx_udiv_const(&b, row, tid, pairs);
  ptx_ins(&b, "add.u32 %s, %s, %s;", row.s, row.s, first.s);
  ptx_urem_const(&b, pair, tid, pairs);
  ptx_ins(&b, "add.u32 %s, %s, %u;", limit.s, first.s, ROWS_PER_BLOCK);
  ptx_ins(&b, "min.u32 %s, %s, %u;", limit.s, limit.s, rows);
  /* q's vectors from q + tok*heads, k's from k + tok*kv_heads - heads (in
   * vectors), so that either is base + row * head_dim * 4 */
  ptx_reg qbase = ptx_new(&b, PTX_B64), kbase = ptx_new(&b, PTX_B64), kvec = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "mul.wide.u32 %s, %s, %u;", qbase.s, tok.s, s->heads * s->head_dim * 4);
  ptx_ins(&b, "add.u64 %s, %s, %s;", qbase.s, qbase.s, q.s);
  ptx_ins(&b, "mad.lo.s32 %s, %s, %u, %d;", kvec.s, tok.s, s->kv_heads, -(int32_t)s->heads);
  ptx_ins(&b, "mul.wide.s32 %s, %s, %u;", kbase.s, kvec.s, s->head_dim * 4);
  ptx_ins(&b, "add.u64 %s, %s, %s;", kbase.s, kbase.s, k.s);
  ptx_reg ok[16], addr[16], pidx[16], x0[16], x1[16];
  for (uint32_t t = 0; t < per_thread; t++) {
    if (t > 0) {
      ptx_reg next = ptx_new(&b, PTX_B32);
      ptx_ins(&b, "add.u32 %s, %s, %u;", next.s, row.s, step_rows);
      row = next;
      if (step_pairs != 0) { /* the pair steps too, carrying into the vector */
        ptx_reg p = ptx_new(&b, PTX_B32), carry = ptx_new(&b, PTX_PRED);
        ptx_ins(&b, "add.u32 %s, %s, %u;", p.s, pair.s, step_pairs);
        ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", carry.s, p.s, pairs);
        ptx_ins(&b, "@%s sub.u32 %s, %s, %u;", carry.s, p.s, p.s, pairs);
        ptx_ins(&b, "@%s add.u32 %s, %s, 1;", carry.s, row.s, row.s);
        pair = p;
      }
    }
    ptx_reg isq = ptx_new(&b, PTX_PRED), basep = ptx_new(&b, PTX_B64), voff = ptx_new(&b, PTX_B64);
    ok[t] = ptx_new(&b, PTX_PRED);
    pidx[t] = pair;
    addr[t] = ptx_new(&b, PTX_B64);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %s;", ok[t].s, row.s, limit.s);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", isq.s, row.s, s->heads);
    ptx_ins(&b, "selp.b64 %s, %s, %s, %s;", basep.s, qbase.s, kbase.s, isq.s);
    ptx_ins(&b, "mad.wide.u32 %s, %s, %u, %s;", voff.s, row.s, s->head_dim * 4, basep.s);
    ptx_ins(&b, "mad.wide.u32 %s, %s, %u, %s;", addr[t].s, pair.s, s->mode == 2 ? 4 : 8, voff.s);
    x0[t] = ptx_new(&b, PTX_F32);
    x1[t] = ptx_new(&b, PTX_F32);
    if (s->mode == 2) {
      ptx_ins(&b, "@%s ld.global.f32 %s, [%s];", ok[t].s, x0[t].s, addr[t].s);
      ptx_ins(&b, "@%s ld.global.f32 %s, [%s+%u];", ok[t].s, x1[t].s, addr[t].s, pairs * 4);
    } else {
      ptx_ins(&b, "@%s ld.global.v2.f32 {%s, %s}, [%s];", ok[t].s, x0[t].s, x1[t].s, addr[t].s);
    }
  }

  ptx_reg c = {0}, sn = {0};
  if (own_pair) {
    ptx_comment(&b, "(cos, sin) * mscale of this thread's pair");
    rope_emit_cos_sin(&b, s, pidx[0], posd, ff, &c, &sn);
  } else {
    ptx_comment(&b, "table of (cos, sin) * mscale for the %u pairs", pairs);
    char tl[32], td[32];
    ptx_label_new(&b, "table", tl);
    ptx_label_new(&b, "table_done", td);
    ptx_reg i = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "mov.u32 %s, %s;", i.s, tid.s);
    ptx_label(&b, tl);
    ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, i.s, pairs);
    ptx_ins(&b, "@%s bra %s;", pr.s, td);
    emit_table_entry(&b, s, i, posd, ff);
    ptx_ins(&b, "add.u32 %s, %s, %u;", i.s, i.s, THREADS);
    ptx_ins(&b, "bra.uni %s;", tl);
    ptx_label(&b, td);
    ptx_ins(&b, "bar.sync 0;");
  }

  ptx_comment(&b, "rotate: (a, b) -> (a cos - b sin, a sin + b cos)");
  for (uint32_t t = 0; t < per_thread; t++) {
    if (!own_pair) {
      ptx_reg ta = ptx_new(&b, PTX_B32);
      c = ptx_new(&b, PTX_F32);
      sn = ptx_new(&b, PTX_F32);
      ptx_ins(&b, "mov.u32 %s, rope_cs;", ta.s);
      ptx_ins(&b, "mad.lo.u32 %s, %s, 8, %s;", ta.s, pidx[t].s, ta.s);
      ptx_ins(&b, "@%s ld.shared.v2.f32 {%s, %s}, [%s];", ok[t].s, c.s, sn.s, ta.s);
    }
    ptx_reg y0, y1;
    rope_emit_rotate(&b, x0[t], x1[t], c, sn, &y0, &y1);
    if (s->mode == 2) {
      ptx_ins(&b, "@%s st.global.f32 [%s], %s;", ok[t].s, addr[t].s, y0.s);
      ptx_ins(&b, "@%s st.global.f32 [%s+%u], %s;", ok[t].s, addr[t].s, pairs * 4, y1.s);
    } else {
      ptx_ins(&b, "@%s st.global.v2.f32 [%s], {%s, %s};", ok[t].s, addr[t].s, y0.s, y1.s);
    }
  }
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  out->geometry = (ptxgen_geometry){{row_blocks, s->m, 1}, {THREADS, 1, 1}, 0, 0};
  return PTXGEN_OK;
}
