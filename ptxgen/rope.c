/*
 * rope.c: rotary position embedding, in place, for the Q and K heads of m
 * tokens in one launch (kind rope).
 *
 * Layout: q [m][heads][head_dim], k [m][kv_heads][head_dim], fp32; token t's
 * position is the device int32 positions[t], so a captured graph replays for
 * the next token once that buffer changes. Block (x, t) rotates up to 8 of
 * token t's heads+kv_heads head vectors: each thread loads its pairs, the
 * block builds the table of (cos, sin) * mscale for the n_dims/2 pairs in
 * shared memory meanwhile, then each thread rotates its pairs (a, b) -> (a cos - b sin, a sin + b cos), pairs being
 * (x[2i], x[2i+1]) (normal) or (x[i], x[i + n_dims/2]) (neox). Dims past
 * n_dims are not touched.
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

void rope_emit_freq_table(ptx_builder *b, const ptxgen_spec *s) {
  const uint32_t pairs = s->n_dims / 2;
  char line[64];
  ptx_decl(b, "// freq_i = base^(-2i/n_dims) with linear and YaRN scaling folded in");
  ptx_decl(b, ".const .align 8 .b64 rope_freq[%u] = {", pairs);
  for (uint32_t i = 0; i < pairs; i++) {
    snprintf(line, sizeof line, "\t0x%016llX%s // %.17g", (unsigned long long)dbits(pair_freq(s, i)),
             i + 1 < pairs ? "," : "", pair_freq(s, i));
    ptx_decl(b, "%s", line);
  }
  ptx_decl(b, "};");
}

void rope_emit_cos_sin(ptx_builder *b, const ptxgen_spec *s, ptx_reg i, ptx_reg posd, ptx_reg ff, ptx_reg *cos_out,
                       ptx_reg *sin_out) {
  ptx_reg off = ptx_new(b, PTX_B32), f = ptx_new(b, PTX_B64), th = ptx_new(b, PTX_B64);
  ptx_reg ca = ptx_new(b, PTX_B64), co = ptx_new(b, PTX_B64);
  ptx_ins(b, "shl.b32 %s, %s, 3;", off.s, i.s);
  ptx_ins(b, "mov.u64 %s, rope_freq;", ca.s);
  ptx_ins(b, "cvt.u64.u32 %s, %s;", co.s, off.s);
  ptx_ins(b, "add.u64 %s, %s, %s;", ca.s, ca.s, co.s);
  ptx_ins(b, "ld.const.f64 %s, [%s];", f.s, ca.s);
  if (s->freq_factors) {
    ptx_reg fa = ptx_new(b, PTX_B64), ffv = ptx_new(b, PTX_F32), ffd = ptx_new(b, PTX_B64);
    ptx_ins(b, "mul.wide.u32 %s, %s, 4;", fa.s, i.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", fa.s, fa.s, ff.s);
    ptx_ins(b, "ld.global.f32 %s, [%s];", ffv.s, fa.s);
    ptx_ins(b, "cvt.f64.f32 %s, %s;", ffd.s, ffv.s);
    ptx_ins(b, "div.rn.f64 %s, %s, %s;", f.s, f.s, ffd.s);
  }
  ptx_ins(b, "mul.rn.f64 %s, %s, %s;", th.s, posd.s, f.s);
  ptx_comment(b, "theta = q*pi/2 + r, |r| <= pi/4, in fp64");
  ptx_reg q = ptx_new(b, PTX_B64), r = ptx_new(b, PTX_B64), nq = ptx_new(b, PTX_B64);
  ptx_ins(b, "mul.rn.f64 %s, %s, 0d%016llX;", q.s, th.s, (unsigned long long)dbits(0x1.45f306dc9c883p-1));
  ptx_ins(b, "cvt.rni.f64.f64 %s, %s;", q.s, q.s);
  ptx_ins(b, "neg.f64 %s, %s;", nq.s, q.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.921fb00000000p+0), th.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.5110b00000000p-22), r.s);
  ptx_ins(b, "fma.rn.f64 %s, %s, 0d%016llX, %s;", r.s, nq.s, (unsigned long long)dbits(0x1.18469898cc517p-44), r.s);
  ptx_reg qi = ptx_new(b, PTX_B64), quad = ptx_new(b, PTX_B32), rf = ptx_new(b, PTX_F32), r2 = ptx_new(b, PTX_F32);
  ptx_ins(b, "cvt.rzi.s64.f64 %s, %s;", qi.s, q.s);
  ptx_ins(b, "cvt.u32.u64 %s, %s;", quad.s, qi.s);
  ptx_ins(b, "and.b32 %s, %s, 3;", quad.s, quad.s); /* two's complement: q mod 4 for negative q too */
  ptx_ins(b, "cvt.rn.f32.f64 %s, %s;", rf.s, r.s);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", r2.s, rf.s, rf.s);
  ptx_comment(b, "sin r and cos r by their Taylor series");
  static const double sin_c[] = {-1.0 / 6, 1.0 / 120, -1.0 / 5040, 1.0 / 362880};
  static const double cos_c[] = {-1.0 / 2, 1.0 / 24, -1.0 / 720, 1.0 / 40320, -1.0 / 3628800};
  ptx_reg ps = ptx_new(b, PTX_F32), pc = ptx_new(b, PTX_F32), sn = ptx_new(b, PTX_F32), cs = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 %s, 0f%08X;", ps.s, fbits((float)sin_c[3]));
  for (int j = 2; j >= 0; j--) ptx_ins(b, "fma.rn.f32 %s, %s, %s, 0f%08X;", ps.s, ps.s, r2.s, fbits((float)sin_c[j]));
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", ps.s, ps.s, r2.s);
  ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", sn.s, ps.s, rf.s, rf.s); /* r + r^3 * (...) */
  ptx_ins(b, "mov.b32 %s, 0f%08X;", pc.s, fbits((float)cos_c[4]));
  for (int j = 3; j >= 0; j--) ptx_ins(b, "fma.rn.f32 %s, %s, %s, 0f%08X;", pc.s, pc.s, r2.s, fbits((float)cos_c[j]));
  ptx_ins(b, "fma.rn.f32 %s, %s, %s, 0f3F800000;", cs.s, pc.s, r2.s);
  ptx_comment(b, "quadrant: (sin, cos) = (s, c), (c, -s), (-s, -c), (-c, s)");
  ptx_reg odd = ptx_new(b, PTX_PRED), sneg = ptx_new(b, PTX_PRED), cneg = ptx_new(b, PTX_PRED);
  ptx_reg st = ptx_new(b, PTX_F32), ct = ptx_new(b, PTX_F32), qb = ptx_new(b, PTX_B32);
  ptx_ins(b, "and.b32 %s, %s, 1;", qb.s, quad.s);
  ptx_ins(b, "setp.ne.u32 %s, %s, 0;", odd.s, qb.s);
  ptx_ins(b, "setp.ge.u32 %s, %s, 2;", sneg.s, quad.s);
  ptx_ins(b, "add.u32 %s, %s, 1;", qb.s, quad.s);
  ptx_ins(b, "and.b32 %s, %s, 2;", qb.s, qb.s); /* quadrants 1 and 2 */
  ptx_ins(b, "setp.ne.u32 %s, %s, 0;", cneg.s, qb.s);
  ptx_ins(b, "selp.f32 %s, %s, %s, %s;", st.s, cs.s, sn.s, odd.s);
  ptx_ins(b, "selp.f32 %s, %s, %s, %s;", ct.s, sn.s, cs.s, odd.s);
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
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", t0.s, x1.s, sn.s);
  ptx_ins(b, "neg.f32 %s, %s;", t0.s, t0.s);
  ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", y0->s, x0.s, c.s, t0.s); /* a cos - b sin */
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", t1.s, x1.s, c.s);
  ptx_ins(b, "fma.rn.f32 %s, %s, %s, %s;", y1->s, x0.s, sn.s, t1.s); /* a sin + b cos */
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
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(s->sm), s->sm);
  rope_emit_freq_table(&b, s); /* one double per pair */
  ptx_decl(&b, ".shared .align 8 .b8 rope_cs[%u];\n", pairs * 8);
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
   * j = tid + THREADS*i) are loaded first, so that their global-memory
   * latency overlaps the building of the table. */
  const uint32_t per_thread = (ROWS_PER_BLOCK * pairs + THREADS - 1) / THREADS;
  ptx_comment(&b, "load this thread's %u pairs (head vector j / %u of this block, pair j %% %u)", per_thread, pairs,
              pairs);
  ptx_reg first = ptx_new(&b, PTX_B32), here = ptx_new(&b, PTX_B32), items = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", first.s, rb.s, ROWS_PER_BLOCK);
  ptx_ins(&b, "sub.u32 %s, %u, %s;", here.s, rows, first.s);
  ptx_ins(&b, "min.u32 %s, %s, %u;", here.s, here.s, ROWS_PER_BLOCK);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", items.s, here.s, pairs);
  ptx_reg ok[16], addr[16], pidx[16], x0[16], x1[16];
  for (uint32_t t = 0; t < per_thread; t++) {
    ptx_reg j = ptx_new(&b, PTX_B32), row = ptx_new(&b, PTX_B32), isq = ptx_new(&b, PTX_PRED);
    ok[t] = ptx_new(&b, PTX_PRED);
    pidx[t] = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "add.u32 %s, %s, %u;", j.s, tid.s, t * THREADS);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %s;", ok[t].s, j.s, items.s);
    ptx_ins(&b, "div.u32 %s, %s, %u;", row.s, j.s, pairs);
    ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", pidx[t].s, row.s, pairs);
    ptx_ins(&b, "sub.u32 %s, %s, %s;", pidx[t].s, j.s, pidx[t].s);
    ptx_ins(&b, "add.u32 %s, %s, %s;", row.s, row.s, first.s);
    ptx_ins(&b, "setp.lt.u32 %s, %s, %u;", isq.s, row.s, s->heads);
    /* vector index within its buffer: q: tok*heads + row; k: tok*kv_heads + row - heads */
    ptx_reg vq = ptx_new(&b, PTX_B32), vk = ptx_new(&b, PTX_B32), vec = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", vq.s, tok.s, s->heads, row.s);
    ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", vk.s, tok.s, s->kv_heads, row.s);
    ptx_ins(&b, "sub.u32 %s, %s, %u;", vk.s, vk.s, s->heads);
    ptx_ins(&b, "selp.b32 %s, %s, %s, %s;", vec.s, vq.s, vk.s, isq.s);
    ptx_reg basep = ptx_new(&b, PTX_B64), voff = ptx_new(&b, PTX_B64), e0 = ptx_new(&b, PTX_B64);
    addr[t] = ptx_new(&b, PTX_B64);
    ptx_ins(&b, "selp.b64 %s, %s, %s, %s;", basep.s, q.s, k.s, isq.s);
    ptx_ins(&b, "mul.wide.u32 %s, %s, %u;", voff.s, vec.s, s->head_dim * 4);
    ptx_ins(&b, "add.u64 %s, %s, %s;", basep.s, basep.s, voff.s);
    ptx_ins(&b, "mul.wide.u32 %s, %s, %u;", e0.s, pidx[t].s, s->mode == 2 ? 4 : 8);
    ptx_ins(&b, "add.u64 %s, %s, %s;", addr[t].s, basep.s, e0.s);
    x0[t] = ptx_new(&b, PTX_F32);
    x1[t] = ptx_new(&b, PTX_F32);
    if (s->mode == 2) {
      ptx_ins(&b, "@%s ld.global.f32 %s, [%s];", ok[t].s, x0[t].s, addr[t].s);
      ptx_ins(&b, "@%s ld.global.f32 %s, [%s+%u];", ok[t].s, x1[t].s, addr[t].s, pairs * 4);
    } else {
      ptx_ins(&b, "@%s ld.global.v2.f32 {%s, %s}, [%s];", ok[t].s, x0[t].s, x1[t].s, addr[t].s);
    }
  }

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

  ptx_comment(&b, "rotate: (a, b) -> (a cos - b sin, a sin + b cos)");
  for (uint32_t t = 0; t < per_thread; t++) {
    ptx_reg ta = ptx_new(&b, PTX_B32), c = ptx_new(&b, PTX_F32), sn = ptx_new(&b, PTX_F32);
    ptx_ins(&b, "mov.u32 %s, rope_cs;", ta.s);
    ptx_ins(&b, "mad.lo.u32 %s, %s, 8, %s;", ta.s, pidx[t].s, ta.s);
    ptx_ins(&b, "@%s ld.shared.v2.f32 {%s, %s}, [%s];", ok[t].s, c.s, sn.s, ta.s);
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
  out->geometry = (ptxgen_geometry){{row_blocks, s->m, 1}, {THREADS, 1, 1}, 0};
  return PTXGEN_OK;
}
