/*
 * ptx.h: a small PTX text builder (internal to ptxgen).
 *
 * A kernel is written as a header, one entry with u64 parameters, and a body
 * of instructions. Registers are allocated SSA-style with a fresh name per
 * type (%f12, %r7, ...): ptxas does the real register allocation, so the
 * builder stays a formatter, not a compiler. The body is collected first and
 * the .reg declarations are written in front of it when the entry is closed.
 *
 * Errors (out of memory) are sticky: every call after a failure is a no-op
 * and ptx_finish() reports it once.
 */
#ifndef PTXGEN_PTX_H
#define PTXGEN_PTX_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
  PTX_PRED, /* .pred  %p  */
  PTX_B16,  /* .b16   %h  */
  PTX_B32,  /* .b32   %r  (also used for .u32/.s32 values) */
  PTX_B64,  /* .b64   %rd (addresses, 64-bit integers) */
  PTX_F32,  /* .f32   %f  */
  PTX_NTYPES
} ptx_type;

/* A register name, passed around by value: reg.s is "%f12". */
typedef struct ptx_reg {
  char s[16];
} ptx_reg;

typedef struct ptx_text {
  char *data;
  size_t len, cap;
  int failed;
} ptx_text;

typedef struct ptx_builder {
  ptx_text head; /* .version/.target/.entry signature */
  ptx_text body; /* instructions */
  /* ptx_ins's formats, each compiled once (see ptx.c): a table from a
   * format's address to its first piece in pieces */
  struct ptx_fmt_slot *fmts;
  size_t fmt_cap, fmt_used;
  struct ptx_fmt_piece *pieces;
  size_t npieces, pieces_cap;
  unsigned nregs[PTX_NTYPES];
  /* the last register name of each type and the index of its last digit:
   * ptx_new mostly bumps that digit */
  ptx_reg last_reg[PTX_NTYPES];
  unsigned char last_digit[PTX_NTYPES];
  unsigned nlabels;
  uint32_t sm; /* the target, from ptx_begin */
  int failed;
} ptx_builder;

/* Starts a module for target sm_<sm> with .version ptx_version. */
void ptx_begin(ptx_builder *b, const char *ptx_version, uint32_t sm);

/* Programmatic dependent launch (sm_90 and newer; nothing before).
 * ptx_grid_dependency_wait: waits until the grids this one depends on have
 * finished and their writes are visible. Everything before it must not read
 * what an earlier kernel writes, nor write anything; loads after it of such
 * data are plain (coherent) ld.global, never .nc (read-only for the
 * kernel's whole life, which now overlaps the writer's). Without the launch
 * attribute (the runtime's choice) it returns at once.
 * ptx_grid_dependency_sync: the wait, then lets the next grid on the stream
 * start launching (its blocks then take room beside this grid's). */
void ptx_grid_dependency_wait(ptx_builder *b);
void ptx_grid_dependency_sync(ptx_builder *b);

/* Opens the entry `name` with nparams .u64 parameters called param_names[i],
 * and declares dynamic shared memory `xs` when dyn_shared is nonzero.
 * `threads`, if not 0, is the block size it is launched with, written as
 * .maxntid (with .minnctapersm 1) so that ptxas fits its registers to that
 * many threads: a kernel compiled without it may need more registers than
 * a block of that size can have, and then cannot launch. */
void ptx_entry(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
               int dyn_shared, uint32_t threads);

/* A module-scope declaration (e.g. an initialised .const array), written
 * before the entry; call it before ptx_entry. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ptx_decl(ptx_builder *b, const char *fmt, ...);

ptx_reg ptx_new(ptx_builder *b, ptx_type t);

/* A fresh label name "L<n>_<hint>" written into out (size >= 32). */
void ptx_label_new(ptx_builder *b, const char *hint, char out[32]);

/* One instruction (or any body line), printf-style, tab-indented:
 * ptx_ins(b, "add.u32 %s, %s, %u;", d.s, a.s, 4). The format must be a
 * string literal (the "" below makes anything else a compile error): the
 * builder compiles each format once and finds it again by its address, so a
 * format must not change while a builder lives. */
#define ptx_ins(b, ...) ptx_ins_literal(b, "" __VA_ARGS__)
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ptx_ins_literal(ptx_builder *b, const char *fmt, ...);

/* A comment line in the body: "\t// text". */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ptx_comment(ptx_builder *b, const char *fmt, ...);

/* A label line "name:" in the body. */
void ptx_label(ptx_builder *b, const char *name);

/* Convenience for frequent forms. */
ptx_reg ptx_imm_b32(ptx_builder *b, uint32_t v);  /* mov.b32 of a constant */
ptx_reg ptx_imm_f32(ptx_builder *b, float v);     /* mov.b32 of a float's bits */
ptx_reg ptx_param_u64(ptx_builder *b, const char *param); /* ld.param + cvta.to.global */

/* Closes the entry and returns the whole module text (malloc'd, owned by the
 * caller) or NULL on allocation failure. The builder is released either way. */
char *ptx_finish(ptx_builder *b, size_t *len);

/* Releases a builder without producing text. */
void ptx_discard(ptx_builder *b);

#endif
