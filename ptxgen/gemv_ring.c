/*
 * gemv_ring.c: GEMV_PRELOAD_BULK, the copy engine's ring (sm_90+): how a
 * GEMV's weights reach its arithmetic through shared memory instead of
 * loads into registers (gemv.c decides where; gemv.h declares).
 *
 * Lane 0 of each warp is a producer. A round is 32 chunks of each of the
 * warp's rows (one chunk per lane, the unit of the lane loop everywhere
 * else); the producer copies the warp's rows a round at a time with
 * cp.async.bulk into the warp's own ring of BULK_STAGES stages, each stage
 * with an mbarrier that the copy completes (expect_tx: the bytes it waits
 * for). The first stages are filled before the kernel waits for the grids
 * before it: weights never depend on earlier kernels. The whole warp waits
 * for a stage's phase, loads the lane's chunk from it with the format's own
 * load (ld.shared) and computes it with the format's own arithmetic, in the
 * order of every other mode (g = 32j + lane); then, once every lane is past
 * the stage (bar.warp.sync), the producer refills it with the round
 * BULK_STAGES ahead. Rows past n and units past the last are never copied:
 * the producer issues only for units that exist, and the consumer only
 * waits for those.
 */
#include "gemv.h"

/* Stages of a warp's ring in GEMV_PRELOAD_BULK: two, one computed while
 * the next lands. More stages measured slower on the H100 (Q4_K 14336x4096
 * m = 1 graph-cold: 13.6 µs at 2 stages, 15.8 at 4, 16.7 at 8; bench/
 * RESULTS.md, ninth session): the copy engine alone streams the weight at
 * 94% of the ceiling with 4 stages, so the bytes come fast enough at 2; what
 * limits is the arithmetic, and a deeper ring leaves fewer blocks per SM. */
#define BULK_STAGES 2u

/* The most shared memory a block may opt in to, on the targets that have
 * the copy engine (sm_90+). */
static uint32_t shared_optin_max(uint32_t sm) { return sm == 120 ? 99u * 1024 : 227u * 1024; }

/* Sets up GEMV_PRELOAD_BULK's rings after the rest of the plan, if the
 * target has the copy engine, x is staged once, the format's rounds can be
 * copied (16-byte multiples) and the ring fits beside x. */
bool gemv_ring_plan(gemv_plan *p, const gemv_format *f) {
  if (p->sm < 90 || p->tiles != 1 || f->planes == 0 || p->row_stride % 16) return false;
  const uint32_t nb = p->k / 256;
  p->last_round_sbs = nb - 8 * (p->lane_chunks - 1);
  p->round_bytes = 0;
  for (uint32_t i = 0; i < f->planes; i++) {
    /* the copy engine moves 16-byte multiples between 16-byte aligned addresses */
    if (nb * f->plane_start[i] % 16 || 8 * f->plane_sb_bytes[i] % 16 || p->last_round_sbs * f->plane_sb_bytes[i] % 16)
      return false;
    p->round_bytes += 8 * f->plane_sb_bytes[i];
  }
  p->stage_bytes = p->load_rows * p->round_bytes;
  p->ring_off = (p->shared_bytes + 15) & ~15u;
  p->ring_stages = BULK_STAGES;
  const uint32_t ring = p->warps * BULK_STAGES * p->stage_bytes, mbar = p->warps * BULK_STAGES * 8;
  if (p->ring_off + ring + mbar > shared_optin_max(p->sm)) return false;
  p->mbar_off = p->ring_off + ring;
  p->shared_bytes = p->mbar_off + mbar;
  return true;
}

/* Producer: copies the round at the cursor (pg, pr), if its unit exists,
 * into stage `stage` (a register), then advances the cursor. */
static void emit_issue(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const ptxgen_spec *s,
                       const gemv_lane *L, const gemv_ring *R, ptx_reg ncta, ptx_reg stage) {
  const uint32_t nb = p->k / 256;
  ptx_reg issue = ptx_new(b, PTX_PRED), last = ptx_new(b, PTX_PRED), sbs = ptx_new(b, PTX_B32);
  ptx_reg mb = ptx_new(b, PTX_B32), dst = ptx_new(b, PTX_B32), state = ptx_new(b, PTX_B64);
  ptx_reg total = ptx_new(b, PTX_B32), size = ptx_new(b, PTX_B32);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", issue.s, R->pg.s, p->units);
  ptx_ins(b, "and.pred %s, %s, %s;", issue.s, issue.s, R->lane0.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, %u;", last.s, R->pr.s, p->lane_chunks - 1);
  ptx_ins(b, "selp.b32 %s, %u, 8, %s;", sbs.s, p->last_round_sbs, last.s); /* super-blocks in this round */
  gemv_row_pointers(b, p, s, L, R->pg, R->rowp);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", mb.s, stage.s, R->mbar.s);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", dst.s, stage.s, p->stage_bytes, R->ring.s);
  ptx_ins(b, "mul.lo.u32 %s, %s, %u;", total.s, sbs.s, p->load_rows * p->round_bytes / 8);
  ptx_ins(b, "@%s mbarrier.arrive.expect_tx.shared::cta.b64 %s, [%s], %s;", issue.s, state.s, mb.s, total.s);
  ptx_reg off = ptx_new(b, PTX_B64), src = ptx_new(b, PTX_B64);
  for (uint32_t i = 0; i < f->planes; i++) {
    /* plane i of round pr: from byte nb*start + 8*pr*sb_bytes of the row, to byte 8*start of the stage's row */
    ptx_ins(b, "mul.lo.u32 %s, %s, %u;", size.s, sbs.s, f->plane_sb_bytes[i]);
    ptx_ins(b, "mul.wide.u32 %s, %s, %u;", off.s, R->pr.s, 8 * f->plane_sb_bytes[i]);
    for (uint32_t r = 0; r < p->load_rows; r++) {
      ptx_op3(b, "add.u64", src, R->rowp[r], off);
      ptx_ins(b, "@%s cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%s+%u], [%s+%u], %s, [%s];",
              issue.s, dst.s, r * p->round_bytes + 8 * f->plane_start[i], src.s, nb * f->plane_start[i], size.s,
              mb.s);
    }
  }
  ptx_ins(b, "add.u32 %s, %s, 1;", R->pr.s, R->pr.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, %u;", last.s, R->pr.s, p->lane_chunks);
  ptx_ins(b, "selp.b32 %s, 0, %s, %s;", R->pr.s, R->pr.s, last.s);
  ptx_reg next = ptx_new(b, PTX_B32);
  ptx_op3(b, "add.u32", next, R->pg, ncta);
  ptx_ins(b, "selp.b32 %s, %s, %s, %s;", R->pg.s, next.s, R->pg.s, last.s);
}

/* Sets up the warp's ring (mbarriers initialised by the producer lane) and
 * copies its first ring_stages rounds: emitted before the kernel waits for
 * the grids before it, which the weights never depend on. */
void gemv_ring_prologue(ptx_builder *b, const gemv_plan *p, const gemv_format *f, const ptxgen_spec *s,
                        const gemv_lane *L, gemv_ring *R, ptx_reg group, ptx_reg ncta) {
  ptx_comment(b, "copy engine: lane 0 streams this warp's rows, %u rounds of 32 chunks (%u bytes per row) ahead, "
                 "into a ring in shared memory; each stage completes an mbarrier",
              p->ring_stages, p->round_bytes);
  R->ring = ptx_new(b, PTX_B32);
  R->mbar = ptx_new(b, PTX_B32);
  R->lane0 = ptx_new(b, PTX_PRED);
  R->pg = ptx_new(b, PTX_B32);
  R->pr = ptx_new(b, PTX_B32);
  R->cs = ptx_new(b, PTX_B32);
  R->parity = ptx_new(b, PTX_B32);
  for (uint32_t r = 0; r < p->load_rows; r++) R->rowp[r] = ptx_new(b, PTX_B64);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", R->ring.s, L->warp.s, p->ring_stages * p->stage_bytes, L->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", R->ring.s, R->ring.s, p->ring_off);
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", R->mbar.s, L->warp.s, p->ring_stages * 8, L->xs_base.s);
  ptx_ins(b, "add.u32 %s, %s, %u;", R->mbar.s, R->mbar.s, p->mbar_off);
  ptx_ins(b, "setp.eq.u32 %s, %s, 0;", R->lane0.s, L->lane.s);
  for (uint32_t i = 0; i < p->ring_stages; i++)
    ptx_ins(b, "@%s mbarrier.init.shared::cta.b64 [%s+%u], 1;", R->lane0.s, R->mbar.s, 8 * i);
  ptx_ins(b, "fence.mbarrier_init.release.cluster;"); /* the inits, before the copy engine signals them */
  ptx_ins(b, "bar.warp.sync -1;");
  ptx_ins(b, "mov.u32 %s, %s;", R->pg.s, group.s);
  ptx_ins(b, "mov.u32 %s, 0;", R->pr.s);
  ptx_ins(b, "mov.u32 %s, 0;", R->cs.s);
  ptx_ins(b, "mov.u32 %s, 0;", R->parity.s);
  for (uint32_t i = 0; i < p->ring_stages; i++) {
    ptx_reg stage = ptx_new(b, PTX_B32);
    ptx_ins(b, "mov.u32 %s, %u;", stage.s, i);
    emit_issue(b, p, f, s, L, R, ncta, stage);
  }
}

/* The rounds of one unit from the ring: wait for the stage, compute
 * the lane's chunk g = 32j + lane of round j (in increasing g, as in every
 * mode), then the producer refills the stage with the round ring_stages
 * ahead. The refill comes after the arithmetic because the arithmetic has
 * used every word the warp loaded from the stage: the warp's barrier
 * orders those loads for its own threads, not for the copy engine.
 * Refilled between the loads and the arithmetic, a load still pending read
 * the next round's bytes now and then (the gated kernel on the ring, in
 * the decode step); made safe with a fence or a dependency, that order
 * cost the step at m = 1 5-8 µs (bench/RESULTS.md, twenty-fourth
 * session). */
void gemv_ring_rounds(ptx_builder *b, const gemv_plan *p, const ptxgen_spec *s, const gemv_format *f,
                      const gemv_lane *L, const gemv_ring *R, ptx_reg ncta, const gemv_raw *raw,
                      ptx_reg acc[GEMV_MAX_LOAD_ROWS][PTXGEN_GEMV_MAX_M]) {
  char round_loop[32], wait_loop[32], skip[32];
  ptx_label_new(b, "round", round_loop);
  ptx_label_new(b, "wait", wait_loop);
  ptx_label_new(b, "no_chunk", skip);
  ptx_reg j = ptx_new(b, PTX_B32), mb = ptx_new(b, PTX_B32), ready = ptx_new(b, PTX_PRED);
  ptx_reg stage = ptx_new(b, PTX_B32), g = ptx_new(b, PTX_B32), pr = ptx_new(b, PTX_PRED);
  ptx_comment(b, "rounds of these rows, from the ring");
  ptx_ins(b, "mov.u32 %s, 0;", j.s);
  ptx_label(b, round_loop);
  ptx_ins(b, "mad.lo.u32 %s, %s, 8, %s;", mb.s, R->cs.s, R->mbar.s);
  ptx_label(b, wait_loop);
  ptx_ins(b, "mbarrier.try_wait.parity.shared::cta.b64 %s, [%s], %s;", ready.s, mb.s, R->parity.s);
  ptx_ins(b, "@!%s bra %s;", ready.s, wait_loop);
  ptx_reg rows[GEMV_MAX_LOAD_ROWS];
  ptx_ins(b, "mad.lo.u32 %s, %s, %u, %s;", stage.s, R->cs.s, p->stage_bytes, R->ring.s);
  for (uint32_t r = 0; r < p->load_rows; r++) {
    rows[r] = ptx_new(b, PTX_B32);
    ptx_ins(b, "add.u32 %s, %s, %u;", rows[r].s, stage.s, r * p->round_bytes);
  }
  ptx_ins(b, "mad.lo.u32 %s, %s, 32, %s;", g.s, j.s, L->lane.s);
  if (p->chunks % 32) { /* the last round is short */
    ptx_ins(b, "setp.ge.u32 %s, %s, %u;", pr.s, g.s, p->chunks);
    ptx_ins(b, "@%s bra %s;", pr.s, skip);
  }
  f->load(b, p, L, rows, L->lane, NULL, raw);
  f->compute(b, p, L, raw, g, acc);
  ptx_label(b, skip);
  ptx_ins(b, "bar.warp.sync -1;"); /* every lane is done with the stage: refill it */
  emit_issue(b, p, f, s, L, R, ncta, R->cs);
  ptx_ins(b, "add.u32 %s, %s, 1;", R->cs.s, R->cs.s);
  ptx_ins(b, "setp.eq.u32 %s, %s, %u;", pr.s, R->cs.s, p->ring_stages);
  ptx_ins(b, "selp.b32 %s, 0, %s, %s;", R->cs.s, R->cs.s, pr.s);
  ptx_reg flip = ptx_new(b, PTX_B32);
  ptx_ins(b, "xor.b32 %s, %s, 1;", flip.s, R->parity.s);
  ptx_ins(b, "selp.b32 %s, %s, %s, %s;", R->parity.s, flip.s, R->parity.s, pr.s);
  ptx_ins(b, "add.u32 %s, %s, 1;", j.s, j.s);
  ptx_ins(b, "setp.lt.u32 %s, %s, %u;", pr.s, j.s, p->lane_chunks);
  ptx_ins(b, "@%s bra.uni %s;", pr.s, round_loop);
}
