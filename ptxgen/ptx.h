/*
 * ptx.h: a small PTX text builder (internal to ptxgen).
 *
 * A kernel is written as a header, one entry with u64 parameters, and a body
 * of instructions. Registers are allocated SSA-style with a fresh name per
 * type (%f12, %r7, ...): ptxas does the real register allocation, so the
 * builder stays a formatter, not a compiler. The body is collected first and
 * the .reg declarations are written in front of it when the entry is closed.
 *
 * A line is written with ptx_ins (printf-style, any line) or, for the few
 * shapes kernels write by the thousand, with a typed line (ptx_op3(b,
 * "add.rn.f32", d, a, c) and the like), two to three times as fast.
 * ptx_new and the typed lines are inline; their workings are at the end of
 * this file.
 *
 * Errors (out of memory) are sticky: every call after a failure is a no-op
 * and ptx_finish() reports it once.
 */
#ifndef PTXGEN_PTX_H
#define PTXGEN_PTX_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef enum {
  PTX_PRED, /* .pred  %p  */
  PTX_B16,  /* .b16   %h  */
  PTX_B32,  /* .b32   %r  (also used for .u32/.s32 values) */
  PTX_B64,  /* .b64   %rd (addresses, 64-bit integers) */
  PTX_F32,  /* .f32   %f  */
  PTX_NTYPES
} ptx_type;

/* A register name, passed around by value: reg.s is "%f12". The name is
 * NUL-padded to all 16 bytes (ptx_new writes it so; a zeroed ptx_reg is the
 * empty name): the typed lines below copy it whole and find its length in
 * the two 8-byte words it is passed in. */
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
  /* the last register name of each type (the two 8-byte words of its
   * ptx_reg) and the index of its last digit: ptx_new mostly bumps that
   * digit */
  uint64_t last_name[PTX_NTYPES][2];
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
/* ptx_entry asking for min_blocks blocks of `threads` per SM
 * (.minnctapersm): ptxas then keeps the registers within that. */
void ptx_entry_blocks(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
                      int dyn_shared, uint32_t threads, uint32_t min_blocks);
/* ptx_entry for blocks launched in clusters of cluster_blocks (sm_90+,
 * .reqnctapercluster: the grid must be a multiple of it). */
void ptx_entry_cluster(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
                       int dyn_shared, uint32_t threads, uint32_t cluster_blocks);

/* A module-scope declaration (e.g. an initialised .const array), written
 * before the entry; call it before ptx_entry. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void ptx_decl(ptx_builder *b, const char *fmt, ...);

/* A fresh register of type t (inline, see the end of this header). */
static inline ptx_reg ptx_new(ptx_builder *b, ptx_type t);

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

/* ---- Typed lines ----
 * For the few shapes a kernel writes by the thousand (the fma/add/mul/prmt
 * chains and shared loads of a GEMV are most of its lines). Each writes
 * the line its comment shows as a ptx_ins call, "\t<op> <operands>;\n":
 * the opcode and an immediate are text written as given, the registers
 * are passed by value and copied whole. No format is parsed and no name is
 * measured with strlen (measuring a name just stored on the stack stalls
 * on the store). They are inline, and op and imm are meant to be string
 * literals, so that writing the opcode folds into a few constant stores;
 * how they write is at the end of this header. */

/* ptx_ins(b, "<op> %s, %s;", d.s, a.s) */
static inline void ptx_op2(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a);
/* ptx_ins(b, "<op> %s, %s, %s;", d.s, a.s, c.s) */
static inline void ptx_op3(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c);
/* ptx_ins(b, "<op> %s, %s, %s, %s;", d.s, a.s, c.s, e.s) */
static inline void ptx_op4(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c, ptx_reg e);
/* ptx_ins(b, "<op> %s, <imm>;", d.s) */
static inline void ptx_op1i(ptx_builder *b, const char *op, ptx_reg d, const char *imm);
/* ptx_ins(b, "<op> %s, %s, <imm>;", d.s, a.s) */
static inline void ptx_op2i(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, const char *imm);
/* ptx_ins(b, "<op> %s, %s, %s, <imm>;", d.s, a.s, c.s) */
static inline void ptx_op3i(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c, const char *imm);
/* ptx_ins(b, "<op> %s, %s, %u;", d.s, a.s, u) */
static inline void ptx_op2u(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, uint32_t u);
/* A vector load: ptx_ins(b, "<op> {%s, %s, %s, %s}, [%s+%u];", v[0].s, v[1].s, v[2].s, v[3].s, addr.s, off) */
static inline void ptx_ld_v4(ptx_builder *b, const char *op, const ptx_reg v[4], ptx_reg addr, uint32_t off);
/* A whole-warp shuffle: ptx_ins(b, "<op> %s, %s, %u, 0x1f, 0xffffffff;", d.s, a.s, lanes) */
static inline void ptx_shfl(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, uint32_t lanes);

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

/* q = a / d and r = a % d for a u32 register a and a constant d > 0: a
 * shift and a mask where d is a power of two, else div.u32 / rem.u32. The
 * results are the same; ptxas compiles the shift form faster (about 0.4 ms
 * a division in the rope kernel, where its JIT time is first use). */
void ptx_udiv_const(ptx_builder *b, ptx_reg q, ptx_reg a, uint32_t d);
void ptx_urem_const(ptx_builder *b, ptx_reg r, ptx_reg a, uint32_t d);

/* Closes the entry and returns the whole module text (malloc'd, owned by the
 * caller) or NULL on allocation failure. The builder is released either way. */
char *ptx_finish(ptx_builder *b, size_t *len);

/* Releases a builder without producing text. */
void ptx_discard(ptx_builder *b);

/* ---- How ptx_new names a register (not for direct use) ----
 * A generator makes thousands, so the name is mostly the last one of its
 * type with the last digit bumped, by one add to the 8-byte word holding
 * that digit; only past a 9 (ptx_new_name) is it written out again. The
 * words are bumped in registers, stored whole and returned from the
 * registers: an add to the name in memory, then loading it back, put a
 * store-to-load round trip between one call and the next. Inline: the
 * type is mostly a constant, and a call would cost as much as the bump. */

/* Name v of type t, written out; also its last digit's index. */
ptx_reg ptx_new_name(ptx_builder *b, ptx_type t, unsigned v);

static inline ptx_reg ptx_new(ptx_builder *b, ptx_type t) {
  const unsigned v = b->nregs[t]++, at = b->last_digit[t];
  uint64_t lo = b->last_name[t][0], hi = b->last_name[t][1];
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
  const unsigned shift = 8 * (7 - (at & 7)); /* of byte at in its word, as it lies in memory */
#else
  const unsigned shift = 8 * (at & 7);
#endif
  if (v > 0 && at < 8 && (unsigned char)(lo >> shift) != '9') lo += 1ull << shift;
  else if (v > 0 && at >= 8 && (unsigned char)(hi >> shift) != '9') hi += 1ull << shift;
  else return ptx_new_name(b, t, v);
  b->last_name[t][0] = lo;
  b->last_name[t][1] = hi;
  ptx_reg r;
  memcpy(r.s, &lo, 8);
  memcpy(r.s + 8, &hi, 8);
  return r;
}

/* ---- How the typed lines write (not for direct use) ----
 * A line goes straight into the body's spare room: ptx_line_open checks
 * once that the line fits (PTX_LINE_ROOM bytes beyond its text), writes
 * "\t<op> " and returns where the operands go; ptx_line_close writes ";\n"
 * and commits the length. */

/* The most a typed line writes besides its opcode and immediate: a tab,
 * five registers stored as whole 16-byte names, separators, braces, a
 * number, ";\n", with room to spare. */
enum { PTX_LINE_ROOM = 160 };

/* Makes room for a line with text_len bytes of opcode and immediate and
 * returns where it starts; NULL when out of memory (the error is sticky). */
char *ptx_line_grow(ptx_builder *b, size_t text_len);

static inline char *ptx_line_open(ptx_builder *b, const char *op, size_t imm_len) {
  const size_t op_len = strlen(op);
  ptx_text *t = &b->body;
  char *o = t->cap - t->len > op_len + imm_len + PTX_LINE_ROOM ? t->data + t->len
                                                               : ptx_line_grow(b, op_len + imm_len);
  if (!o) return NULL;
  o[0] = '\t';
  memcpy(o + 1, op, op_len);
  o[1 + op_len] = ' ';
  return o + 2 + op_len;
}

static inline void ptx_line_close(ptx_builder *b, char *o) {
  memcpy(o, ";\n", 2);
  b->body.len = (size_t)(o + 2 - b->body.data);
}

/* A register's name: all 16 bytes stored, the cursor moved past its
 * length, which is where the last nonzero byte of the two words is. */
static inline char *ptx_line_reg(char *o, ptx_reg r) {
  uint64_t w[2];
  memcpy(w, r.s, sizeof w);
  memcpy(o, w, sizeof w);
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  if (w[1]) return o + 8 + (71 - __builtin_clzll(w[1])) / 8;
  return w[0] ? o + (71 - __builtin_clzll(w[0])) / 8 : o;
#else
  size_t n = 0;
  while (n < sizeof r.s && r.s[n]) n++;
  return o + n;
#endif
}

/* ", " and a register */
static inline char *ptx_line_arg(char *o, ptx_reg r) {
  memcpy(o, ", ", 2);
  return ptx_line_reg(o + 2, r);
}

/* ", " and the text of an immediate */
static inline char *ptx_line_imm(char *o, const char *imm, size_t imm_len) {
  memcpy(o, ", ", 2);
  memcpy(o + 2, imm, imm_len);
  return o + 2 + imm_len;
}

static inline char *ptx_line_u32(char *o, uint32_t v) {
  char digits[10];
  int n = 0;
  do digits[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
  while (n > 0) *o++ = digits[--n];
  return o;
}

static inline void ptx_op2(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a) {
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  ptx_line_close(b, o);
}

static inline void ptx_op3(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c) {
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  o = ptx_line_arg(o, c);
  ptx_line_close(b, o);
}

static inline void ptx_op4(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c, ptx_reg e) {
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  o = ptx_line_arg(o, c);
  o = ptx_line_arg(o, e);
  ptx_line_close(b, o);
}

static inline void ptx_op1i(ptx_builder *b, const char *op, ptx_reg d, const char *imm) {
  const size_t imm_len = strlen(imm);
  char *o = ptx_line_open(b, op, imm_len);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_imm(o, imm, imm_len);
  ptx_line_close(b, o);
}

static inline void ptx_op2i(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, const char *imm) {
  const size_t imm_len = strlen(imm);
  char *o = ptx_line_open(b, op, imm_len);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  o = ptx_line_imm(o, imm, imm_len);
  ptx_line_close(b, o);
}

static inline void ptx_op3i(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, ptx_reg c, const char *imm) {
  const size_t imm_len = strlen(imm);
  char *o = ptx_line_open(b, op, imm_len);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  o = ptx_line_arg(o, c);
  o = ptx_line_imm(o, imm, imm_len);
  ptx_line_close(b, o);
}

static inline void ptx_op2u(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, uint32_t u) {
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  memcpy(o, ", ", 2);
  o = ptx_line_u32(o + 2, u);
  ptx_line_close(b, o);
}

static inline void ptx_ld_v4(ptx_builder *b, const char *op, const ptx_reg v[4], ptx_reg addr, uint32_t off) {
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  *o++ = '{';
  o = ptx_line_reg(o, v[0]);
  o = ptx_line_arg(o, v[1]);
  o = ptx_line_arg(o, v[2]);
  o = ptx_line_arg(o, v[3]);
  memcpy(o, "}, [", 4);
  o = ptx_line_reg(o + 4, addr);
  *o++ = '+';
  o = ptx_line_u32(o, off);
  *o++ = ']';
  ptx_line_close(b, o);
}

static inline void ptx_shfl(ptx_builder *b, const char *op, ptx_reg d, ptx_reg a, uint32_t lanes) {
  static const char tail[] = ", 0x1f, 0xffffffff";
  char *o = ptx_line_open(b, op, 0);
  if (!o) return;
  o = ptx_line_reg(o, d);
  o = ptx_line_arg(o, a);
  memcpy(o, ", ", 2);
  o = ptx_line_u32(o + 2, lanes);
  memcpy(o, tail, sizeof tail - 1);
  ptx_line_close(b, o + sizeof tail - 1);
}

#endif
