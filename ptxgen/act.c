/*
 * act.c: elementwise activation kernels (gelu, gelu_erf, silu) and the gated
 * ones (swiglu = silu(gate)*up, geglu = gelu(gate)*up) over [m][n] fp32.
 *
 * The m*n values are one flat array and thread t computes value t: these
 * kernels are small (a decode step's activations are ~100 KB), so their
 * time is latency, and one value per thread keeps each thread's chain of
 * dependent instructions short (see bench/RESULTS.md). Each thread reads its value
 * before writing it, so y may be the same buffer as an input (plain loads,
 * not the read-only .nc path, for that reason).
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
  ptx_reg y = emit_activation(b, kind, x, true);
  if (!is_gated(kind)) return y;
  ptx_reg r = ptx_new(b, PTX_F32);
  ptx_ins(b, "mul.rn.f32 %s, %s, %s;", r.s, y.s, up.s);
  return r;
}

int act_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  const ptxgen_kind kind = spec->kind;
  const uint32_t total = spec->n * spec->m;
  const int gated = is_gated(kind);
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(spec->sm), spec->sm);
  snprintf(out->entry, sizeof out->entry, "%s_n%u_m%u", kind_name(kind), spec->n, spec->m);
  static const char *const unary[] = {"x", "y"}, *const glu[] = {"gate", "up", "y"};
  ptx_entry(&b, out->entry, gated ? glu : unary, gated ? 3 : 2, 0, 0);
  ptx_comment(&b, "%s over %u x %u values, one per thread", kind_name(kind), spec->m, spec->n);
  ptx_reg x = ptx_param_u64(&b, gated ? "gate" : "x");
  ptx_reg up = gated ? ptx_param_u64(&b, "up") : x;
  ptx_reg y = ptx_param_u64(&b, "y");
  ptx_reg t = ptx_new(&b, PTX_B32), cta = ptx_new(&b, PTX_B32), pr = ptx_new(&b, PTX_PRED);
  ptx_reg off = ptx_new(&b, PTX_B64), xa = ptx_new(&b, PTX_B64), ua = ptx_new(&b, PTX_B64), ya = ptx_new(&b, PTX_B64);
  ptx_grid_dependency_sync(&b);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", cta.s);
  ptx_ins(&b, "mov.u32 %s, %%tid.x;", t.s);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", t.s, cta.s, THREADS, t.s);
  char done[32];
  ptx_label_new(&b, "done", done);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", pr.s, t.s, total);
  ptx_ins(&b, "@%s bra %s;", pr.s, done);
  ptx_ins(&b, "mul.wide.u32 %s, %s, 4;", off.s, t.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", xa.s, x.s, off.s);
  ptx_ins(&b, "add.u64 %s, %s, %s;", ya.s, y.s, off.s);
  ptx_reg v = ptx_new(&b, PTX_F32), u = v;
  ptx_ins(&b, "ld.global.f32 %s, [%s];", v.s, xa.s);
  if (gated) {
    u = ptx_new(&b, PTX_F32);
    ptx_ins(&b, "add.u64 %s, %s, %s;", ua.s, up.s, off.s);
    ptx_ins(&b, "ld.global.f32 %s, [%s];", u.s, ua.s);
  }
  ptx_reg r = emit_value(&b, kind, v, u);
  ptx_ins(&b, "st.global.f32 [%s], %s;", ya.s, r.s);
  ptx_label(&b, done);
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  out->geometry = (ptxgen_geometry){{(total + THREADS - 1) / THREADS, 1, 1}, {THREADS, 1, 1}, 0, 0};
  return PTXGEN_OK;
}
