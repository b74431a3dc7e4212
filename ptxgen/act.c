/*
 * act.c: elementwise activation kernels (gelu, gelu_erf, silu) and the gated
 * ones (swiglu = silu(gate)*up, geglu = gelu(gate)*up) over [m][n] fp32.
 *
 * The m*n values are one flat array: thread t handles values 4t..4t+3 with
 * 16-byte loads and stores (buffers are 16-byte aligned), and the thread
 * past the last whole vector handles the 1..3 values left. Each thread reads
 * its values before writing them, so y may be the same buffer as an input
 * (plain loads, not the read-only .nc path, for that reason).
 * The math is in act_math.c.
 */
#include <stdio.h>

#include "act_math.h"
#include "kernels.h"

#define THREADS 256u

static int is_gated(ptxgen_kind kind) { return kind == PTXGEN_KIND_SWIGLU || kind == PTXGEN_KIND_GEGLU; }

static const char *kind_name(ptxgen_kind kind) {
  switch (kind) {
  case PTXGEN_KIND_GELU: return "gelu";
  case PTXGEN_KIND_GELU_ERF: return "gelu_erf";
  case PTXGEN_KIND_SILU: return "silu";
  case PTXGEN_KIND_SWIGLU: return "swiglu";
  default: return "geglu";
  }
}

/* y = act(x) or act(gate) * up for one value. */
static ptx_reg emit_value(ptx_builder *b, ptxgen_kind kind, ptx_reg x, ptx_reg up) {
  ptx_reg y = emit_activation(b, kind, x);
  if (!is_gated(kind)) return y;
  ptx_reg r = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", r.s, y.s, up.s);
  return r;
}

int act_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  const ptxgen_kind kind = spec->kind;
  const uint32_t total = spec->n * spec->m, vectors = total / 4, rest = total % 4;
  const int gated = is_gated(kind);
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(spec->sm), spec->sm);
  snprintf(out->entry, sizeof out->entry, "%s_n%u_m%u", kind_name(kind), spec->n, spec->m);
  static const char *const unary[] = {"x", "y"}, *const glu[] = {"gate", "up", "y"};
  ptx_entry(&b, out->entry, gated ? glu : unary, gated ? 3 : 2, 0);
  ptx_comment(&b, "%s over %u x %u values: %u float4 vectors%s", kind_name(kind), spec->m, spec->n, vectors,
              rest ? " and a scalar tail" : "");
  ptx_reg x = ptx_param_u64(&b, gated ? "gate" : "x");
  ptx_reg up = gated ? ptx_param_u64(&b, "up") : x;
  ptx_reg y = ptx_param_u64(&b, "y");
  ptx_reg t = ptx_new(&b, PTX_B32), cta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  ptx_reg off = ptx_new(&b, PTX_B64), xa = ptx_new(&b, PTX_B64), ua = ptx_new(&b, PTX_B64), ya = ptx_new(&b, PTX_B64);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", cta.s);
  ptx_ins(&b, "mov.u32 %s, %%tid.x;", t.s);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", t.s, cta.s, THREADS, t.s);
  ptx_ins(&b, "mul.wide.u32 %s, %s, 16;", off.s, t.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", xa.s, x.s, off.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", ua.s, up.s, off.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", ya.s, y.s, off.s);
  char tail[32], done[32];
  ptx_label_new(&b, "tail", tail);
  ptx_label_new(&b, "done", done);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, t.s, vectors);
  ptx_ins(&b, "@%s bra %s;", pr.s, tail);

  ptx_comment(&b, "four values");
  ptx_reg v[4], u[4], r[4];
  for (int i = 0; i < 4; i++) {
    v[i] = ptx_new(&b, PTX_F32);
    u[i] = gated ? ptx_new(&b, PTX_F32) : v[i];
  }
  ptx_ins(&b, "ld.global.v4.f32 {%s, %s, %s, %s}, [%s];", v[0].s, v[1].s, v[2].s, v[3].s, xa.s);
  if (gated) ptx_ins(&b, "ld.global.v4.f32 {%s, %s, %s, %s}, [%s];", u[0].s, u[1].s, u[2].s, u[3].s, ua.s);
  for (int i = 0; i < 4; i++) r[i] = emit_value(&b, kind, v[i], u[i]);
  ptx_ins(&b, "st.global.v4.f32 [%s], {%s, %s, %s, %s};", ya.s, r[0].s, r[1].s, r[2].s, r[3].s);
  ptx_ins(&b, "bra.uni %s;", done);

  ptx_label(&b, tail);
  if (rest) {
    ptx_comment(&b, "the %u values after the last whole vector", rest);
    ptx_ins(&b, "setp.ne.u32 %s, %s, %u;", pr.s, t.s, vectors);
    ptx_ins(&b, "@%s bra %s;", pr.s, done);
    for (uint32_t i = 0; i < rest; i++) {
      ptx_reg sv = ptx_new(&b, PTX_F32), su = gated ? ptx_new(&b, PTX_F32) : sv;
      ptx_ins(&b, "ld.global.f32 %s, [%s+%u];", sv.s, xa.s, 4 * i);
      if (gated) ptx_ins(&b, "ld.global.f32 %s, [%s+%u];", su.s, ua.s, 4 * i);
      ptx_reg sr = emit_value(&b, kind, sv, su);
      ptx_ins(&b, "st.global.f32 [%s+%u], %s;", ya.s, 4 * i, sr.s);
    }
  }
  ptx_label(&b, done);
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  uint32_t threads = vectors + (rest ? 1 : 0);
  out->geometry = (ptxgen_geometry){{(threads + THREADS - 1) / THREADS, 1, 1}, {THREADS, 1, 1}, 0};
  return PTXGEN_OK;
}
