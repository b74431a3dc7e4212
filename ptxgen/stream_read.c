/*
 * stream_read.c: the read-only bandwidth probe (kind stream_read).
 *
 * ptxq-bench measures the device's own read ceiling with this kernel and
 * reports every other kernel against it. Each thread walks the buffer with a
 * grid stride, four independent 16-byte non-coherent loads in flight per
 * step, and folds the words with xor. The fold is stored only if it equals a
 * marker value, which keeps the loads alive without writing anything in
 * practice (and harmlessly if it ever matches: the sink is a real buffer).
 * With pdl=1 it is a kernel of a dependent chain (ptxgen.h): ptxq-bench's
 * read step times the decode step's bytes read this way, kernel after kernel.
 */
#include <stdio.h>

#include "kernels.h"
#include "ptx.h"

#define THREADS 256u
#define UNROLL 4u
#define MAX_BLOCKS 2048u

/* One step of a thread: UNROLL vectors i, i + stride, ..., loaded, then
 * folded into acc. */
static void emit_step(ptx_builder *b, ptx_reg src, ptx_reg i, ptx_reg stride, ptx_reg acc) {
  ptx_reg v[UNROLL][4];
  for (uint32_t u = 0; u < UNROLL; u++) {
    ptx_reg idx = ptx_new(b, PTX_B32), off = ptx_new(b, PTX_B64), addr = ptx_new(b, PTX_B64);
    ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", idx.s, stride.s, u, i.s);
    ptx_ins(b, "mul.wide.u32 %s, %s, 16;", off.s, idx.s);
    ptx_ins(b, "add.u64 %s, %s, %s;", addr.s, src.s, off.s);
    for (int w = 0; w < 4; w++) v[u][w] = ptx_new(b, PTX_B32);
    ptx_ins(b, "ld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s];", v[u][0].s, v[u][1].s, v[u][2].s, v[u][3].s,
            addr.s);
  }
  for (uint32_t u = 0; u < UNROLL; u++) {
    ptx_reg t = ptx_new(b, PTX_B32);
    ptx_ins(b, "xor.b32 %s, %s, %s;", t.s, v[u][0].s, v[u][1].s);
    ptx_ins(b, "xor.b32 %s, %s, %s;", t.s, t.s, v[u][2].s);
    ptx_ins(b, "xor.b32 %s, %s, %s;", t.s, t.s, v[u][3].s);
    ptx_ins(b, "xor.b32 %s, %s, %s;", acc.s, acc.s, t.s);
  }
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", i.s, stride.s, UNROLL, i.s);
}

int stream_read_emit(const ptxgen_spec *spec, ptxgen_kernel *out) {
  const uint32_t n = spec->n;
  ptx_builder b;
  ptx_begin(&b, ptxgen_ptx_version(spec->sm), spec->sm);
  snprintf(out->entry, sizeof out->entry, spec->pdl ? "stream_read_n%u_pdl" : "stream_read_n%u", n);
  static const char *const params[] = {"src", "sink"};
  ptx_entry(&b, out->entry, params, 2, 0, 0);

  ptx_reg src = ptx_param_u64(&b, "src"), sink = ptx_param_u64(&b, "sink");
  ptx_reg tid = ptx_new(&b, PTX_B32), cta = ptx_new(&b, PTX_B32), ncta = ptx_new(&b, PTX_B32);
  ptx_reg i = ptx_new(&b, PTX_B32), stride = ptx_new(&b, PTX_B32), acc = ptx_new(&b, PTX_B32);
  ptx_ins(&b, "mov.u32 %s, %%tid.x;", tid.s);
  ptx_ins(&b, "mov.u32 %s, %%ctaid.x;", cta.s);
  ptx_ins(&b, "mov.u32 %s, %%nctaid.x;", ncta.s);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", i.s, cta.s, THREADS, tid.s);
  ptx_ins(&b, "mul.lo.u32 %s, %s, %u;", stride.s, ncta.s, THREADS);
  ptx_ins(&b, "mov.u32 %s, 0;", acc.s);

  /* i, stride < 2^31 + 2^30 for n <= 2^30: no 32-bit overflow below. */
  char unrolled[32], tail[32], done[32], quit[32];
  ptx_label_new(&b, "unrolled", unrolled);
  ptx_label_new(&b, "exit", quit);
  ptx_label_new(&b, "tail", tail);
  ptx_label_new(&b, "done", done);
  ptx_reg last = ptx_new(&b, PTX_B32), p = ptx_new(&b, PTX_PRED);
  if (spec->pdl) {
    /* As a GEMV loads its first weights before it waits for its input: the
     * bytes a kernel of a chain can read before the kernel before it ends. */
    char waited[32], short_first[32];
    ptx_label_new(&b, "waited", waited);
    ptx_label_new(&b, "short_first", short_first);
    ptx_comment(&b, "the first step's loads, then the wait for the grid before this one");
    ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", last.s, stride.s, UNROLL - 1, i.s);
    ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", p.s, last.s, n);
    ptx_ins(&b, "@%s bra %s;", p.s, short_first);
    emit_step(&b, src, i, stride, acc);
    ptx_grid_dependency_sync(&b);
    ptx_ins(&b, "bra.uni %s;", waited);
    ptx_label(&b, short_first);
    ptx_grid_dependency_sync(&b);
    ptx_label(&b, waited);
  }
  ptx_comment(&b, "main loop: %u vectors per thread per step, each a 16-byte load", UNROLL);
  ptx_label(&b, unrolled);
  ptx_ins(&b, "mad.lo.u32 %s, %s, %u, %s;", last.s, stride.s, UNROLL - 1, i.s);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", p.s, last.s, n);
  ptx_ins(&b, "@%s bra %s;", p.s, tail);
  emit_step(&b, src, i, stride, acc);
  ptx_ins(&b, "bra.uni %s;", unrolled);

  ptx_comment(&b, "remainder: one vector per step");
  ptx_label(&b, tail);
  ptx_ins(&b, "setp.ge.u32 %s, %s, %u;", p.s, i.s, n);
  ptx_ins(&b, "@%s bra %s;", p.s, done);
  {
    ptx_reg off = ptx_new(&b, PTX_B64), addr = ptx_new(&b, PTX_B64), w[4];
    ptx_ins(&b, "mul.wide.u32 %s, %s, 16;", off.s, i.s);
    ptx_ins(&b, "add.u64 %s, %s, %s;", addr.s, src.s, off.s);
    for (int j = 0; j < 4; j++) w[j] = ptx_new(&b, PTX_B32);
    ptx_ins(&b, "ld.global.nc.v4.u32 {%s, %s, %s, %s}, [%s];", w[0].s, w[1].s, w[2].s, w[3].s, addr.s);
    for (int j = 0; j < 4; j++) ptx_ins(&b, "xor.b32 %s, %s, %s;", acc.s, acc.s, w[j].s);
  }
  ptx_ins(&b, "add.u32 %s, %s, %s;", i.s, i.s, stride.s);
  ptx_ins(&b, "bra.uni %s;", tail);

  ptx_comment(&b, "keep the loads alive: store only if the fold equals a marker");
  ptx_label(&b, done);
  ptx_ins(&b, "setp.ne.u32 %s, %s, 0x7E5A3C19;", p.s, acc.s);
  ptx_ins(&b, "@%s bra %s;", p.s, quit);
  ptx_ins(&b, "st.global.u32 [%s], %s;", sink.s, acc.s);
  ptx_label(&b, quit);
  ptx_ins(&b, "ret;");

  out->ptx = ptx_finish(&b, &out->ptx_len);
  if (!out->ptx) return PTXGEN_ERR_NOMEM;
  uint32_t blocks = (n + THREADS * UNROLL - 1) / (THREADS * UNROLL);
  out->geometry = (ptxgen_geometry){{blocks < MAX_BLOCKS ? blocks : MAX_BLOCKS, 1, 1}, {THREADS, 1, 1}, 0, 0};
  return PTXGEN_OK;
}
