/*
 * ptx.c: the PTX text builder (see ptx.h). Formatting only: it knows the
 * register classes and the layout of a module, nothing about kernels.
 *
 * Generation time is formatting time: the runtime writes a kernel on its
 * first use, and a GEMV for m = 8 is ~4000 instruction lines (~170 KB) out
 * of a few hundred format strings. So:
 * - ptx_ins compiles each format once per builder into 16-byte pieces (a
 *   literal run and the directive after it), finds it again by its address
 *   (formats are string literals, see ptx.h), and copies each piece whole;
 * - the formatters write through a cursor straight into the text's spare
 *   room, checking the room once per piece rather than calling per piece;
 * - most lines (fma, add, prmt, shared loads: ~85% of an m = 8 GEMV) are
 *   typed lines, written inline (ptx.h) with registers passed by value:
 *   no format, no strlen, the opcode written by constant stores;
 * - ptx_new bumps the last register name rather than formatting a number;
 * - the body starts with room for the largest kernel, and ptx_finish moves
 *   it up in place to make room for what goes in front of it, so the text
 *   is never copied into a second allocation (fresh memory costs page
 *   faults, which were a third of the time of some kernels).
 */
#include "ptx.h"

#include "ptxgen.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const reg_prefix[PTX_NTYPES] = {"%p", "%h", "%r", "%rd", "%f"};
static const char *const reg_decl[PTX_NTYPES] = {".pred", ".b16", ".b32", ".b64", ".f32"};

/* The body's first allocation: room for the largest kernel (~200 KB, a GEMV
 * for m = 8 with its q/k/v epilogue), so that it never grows by copying.
 * Only the pages written are touched. */
enum { BODY_START = 256 * 1024 };

/* Room for n more bytes and a terminator; 0 when out of memory. */
static int text_reserve(ptx_text *t, size_t n) {
  if (t->failed) return 0;
  if (t->cap - t->len > n) return 1;
  size_t cap = t->cap ? t->cap : 4096;
  while (cap - t->len <= n) cap *= 2;
  char *p = realloc(t->data, cap);
  if (!p) {
    t->failed = 1;
    return 0;
  }
  t->data = p;
  t->cap = cap;
  return 1;
}

/* ---- cursor: a write position in a text ---- */

/* The most one step of a formatter writes without checking the room again:
 * a 16-byte piece of a compiled format, then one directive's output (a
 * string of up to 16 bytes, a number, or STR_FAST bytes of a longer string). */
enum { STR_FAST = 64, ROOM = 16 + STR_FAST };

/* stop is ROOM bytes before the end of the allocation: at any o <= stop a
 * step fits. The text's len is stale while a cursor writes; close commits.
 * Texts are not kept NUL-terminated: ptx_finish ends the module. */
typedef struct {
  ptx_text *t;
  char *o, *stop;
} cursor;

static int cursor_open(cursor *c, ptx_text *t) {
  c->t = t;
  if (t->cap - t->len <= 2 * ROOM && !text_reserve(t, 2 * ROOM)) return 0;
  c->o = t->data + t->len;
  c->stop = t->data + t->cap - ROOM;
  return 1;
}

/* Makes o <= stop again; 0 when out of memory. */
static inline int cursor_room(cursor *c) {
  if (c->o <= c->stop) return 1;
  c->t->len = (size_t)(c->o - c->t->data);
  return cursor_open(c, c->t);
}

static inline void cursor_close(cursor *c) { c->t->len = (size_t)(c->o - c->t->data); }

/* A string; needs o <= stop. Most are register names of 3 to 7 characters:
 * their length first, then two overlapping fixed-size copies, because a
 * byte loop ends at a length that changes from one name to the next, a
 * branch the processor mispredicts. The length is counted byte by byte
 * all the same: such a name was mostly stored on the stack just before the
 * call (to pass its address), and strlen's wide loads span those stores,
 * so they wait until the stores are done, where byte loads are served
 * from the stores (a line of 6 registers: 40 ns with strlen, 31 without). */
static inline int put_str(cursor *c, const char *s) {
  size_t n = 0;
  while (n < 16 && s[n]) n++;
  if (n == 16) n += strlen(s + 16); /* long: not a name */
  char *o = c->o;
  if (n >= 4 && n <= 8) {
    memcpy(o, s, 4);
    memcpy(o + n - 4, s + n - 4, 4);
  } else if (n > 8 && n <= 16) {
    memcpy(o, s, 8);
    memcpy(o + n - 8, s + n - 8, 8);
  } else if (n > 0 && n < 4) {
    o[0] = s[0];
    o[n / 2] = s[n / 2];
    o[n - 1] = s[n - 1];
  } else {
    while (n > 0) { /* longer: STR_FAST bytes per step */
      if (!cursor_room(c)) return 0;
      size_t k = n < STR_FAST ? n : STR_FAST;
      memcpy(c->o, s, k);
      c->o += k, s += k, n -= k;
    }
    return 1;
  }
  c->o = o + n;
  return 1;
}

static inline void put_dec(cursor *c, long long v) {
  unsigned long long mag = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
  if (v < 0) *c->o++ = '-';
  int n = 1;
  for (unsigned long long x = mag; x >= 10; x /= 10) n++;
  for (int i = n - 1; i >= 0; i--, mag /= 10) c->o[i] = (char)('0' + mag % 10);
  c->o += n;
}

static inline void put_hex(cursor *c, unsigned long long v, int digits) {
  static const char hex[] = "0123456789ABCDEF";
  for (int i = digits - 1; i >= 0; i--, v >>= 4) c->o[i] = hex[v & 15];
  c->o += digits;
}

/* ---- the general formatter ---- */

/* Formats what the generators write: %s, %u, %d, %%, %08X and %016llX by
 * hand, anything else (%.9g, %.17g, %.20s) through snprintf, one directive
 * at a time. 0 on failure: out of memory, or a directive it does not know
 * (the generator's bug). */
static int format(cursor *c, const char *f, va_list ap) {
  for (;;) {
    /* the literal run up to the next directive, STR_FAST bytes per step
     * (comments are mostly such runs) */
    const char *pct = strchr(f, '%');
    size_t n = pct ? (size_t)(pct - f) : strlen(f);
    while (n > 0) {
      if (!cursor_room(c)) return 0;
      size_t k = n < STR_FAST ? n : STR_FAST;
      memcpy(c->o, f, k);
      c->o += k, f += k, n -= k;
    }
    if (!*f) return 1;
    if (!cursor_room(c)) return 0;
    const char *d = ++f;
    if (*d == 's') {
      if (!put_str(c, va_arg(ap, const char *))) return 0;
    } else if (*d == 'u') {
      put_dec(c, va_arg(ap, unsigned));
    } else if (*d == 'd') {
      put_dec(c, va_arg(ap, int));
    } else if (*d == '%') {
      *c->o++ = '%';
    } else if (!strncmp(d, "08X", 3)) {
      put_hex(c, va_arg(ap, unsigned), 8);
      d += 2;
    } else if (!strncmp(d, "016llX", 6)) {
      put_hex(c, va_arg(ap, unsigned long long), 16);
      d += 5;
    } else {
      /* one directive: flags, width, precision, length, conversion */
      const char *e = d + strspn(d, "-+ #0123456789.hlz");
      char one[16], num[64];
      size_t len = (size_t)(e - d) + 2; /* with the % and the conversion */
      if (!*e || len >= sizeof one) return 0;
      one[0] = '%';
      memcpy(one + 1, d, len - 1);
      one[len] = '\0';
      int w;
      if (*e == 'g' || *e == 'f' || *e == 'e')
        w = snprintf(num, sizeof num, one, va_arg(ap, double));
      else if (*e == 's')
        w = snprintf(num, sizeof num, one, va_arg(ap, const char *));
      else
        return 0;
      if (w < 0 || (size_t)w >= sizeof num) return 0;
      if (!put_str(c, num)) return 0;
      d = e;
    }
    f = d + 1;
  }
}

/* pre, fmt with its arguments, then post (pre and post shorter than ROOM). */
static void text_vappend(ptx_text *t, const char *pre, const char *fmt, va_list ap, const char *post) {
  cursor c;
  if (!cursor_open(&c, t)) return;
  while (*pre) *c.o++ = *pre++;
  if (!format(&c, fmt, ap) || !cursor_room(&c)) {
    t->failed = 1;
    return;
  }
  while (*post) *c.o++ = *post++;
  cursor_close(&c);
}

static void text_append(ptx_text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  text_vappend(t, "", fmt, ap, "");
  va_end(ap);
}

/* ---- compiled instruction formats ---- */

/* An instruction line "\t<fmt>\n" compiles into pieces, each a literal run
 * then the directive after it; a run longer than a piece holds goes on in
 * the next piece after OP_NONE, and %% is a '%' of a run. A piece is copied
 * whole, 16 bytes: its last two are overwritten by what follows the run. */
enum { OP_END, OP_NONE, OP_S, OP_U, OP_D, OP_X8, OP_X16 };
struct ptx_fmt_piece {
  char run[14];
  unsigned char len, op;
};
typedef struct ptx_fmt_piece piece;

/* A slot of the table from format address to first piece. */
struct ptx_fmt_slot {
  const char *fmt; /* NULL: empty */
  uint32_t at;     /* index of the first piece in b->pieces, or NOT_COMPILED */
};
#define NOT_COMPILED UINT32_MAX

/* Appends a piece; 0 when out of memory. */
static int fmt_piece(ptx_builder *b, const piece *p) {
  if (b->npieces == b->pieces_cap) {
    size_t cap = b->pieces_cap ? 2 * b->pieces_cap : 512;
    piece *q = realloc(b->pieces, cap * sizeof *q);
    if (!q) return 0;
    b->pieces = q;
    b->pieces_cap = cap;
  }
  b->pieces[b->npieces++] = *p;
  return 1;
}

/* One more byte of run; a full piece is closed with OP_NONE first. */
static int fmt_byte(ptx_builder *b, piece *p, char ch) {
  if (p->len == sizeof p->run) {
    p->op = OP_NONE;
    if (!fmt_piece(b, p)) return 0;
    *p = (piece){.len = 0};
  }
  p->run[p->len++] = ch;
  return 1;
}

/* Compiles "\t<fmt>\n" into pieces, or answers NOT_COMPILED for a format
 * with other directives (%.9g and the like: the general formatter writes
 * those lines) and when out of memory. */
static uint32_t fmt_compile(ptx_builder *b, const char *fmt) {
  size_t start = b->npieces;
  piece p = {.run = {'\t'}, .len = 1};
  int ok = 1;
  for (const char *f = fmt; ok;) {
    if (f[0] != '%' || f[1] == '%') { /* a byte of run (%% is one '%'), or the end */
      if (!*f) {
        if (!fmt_byte(b, &p, '\n')) break;
        p.op = OP_END;
        if (!fmt_piece(b, &p)) break;
        return (uint32_t)start;
      }
      ok = fmt_byte(b, &p, *f);
      f += *f == '%' ? 2 : 1;
      continue;
    }
    const char *d = f + 1;
    if (*d == 's') p.op = OP_S, f += 2;
    else if (*d == 'u') p.op = OP_U, f += 2;
    else if (*d == 'd') p.op = OP_D, f += 2;
    else if (!strncmp(d, "08X", 3)) p.op = OP_X8, f += 4;
    else if (!strncmp(d, "016llX", 6)) p.op = OP_X16, f += 7;
    else break;
    ok = fmt_piece(b, &p);
    p = (piece){.len = 0};
  }
  b->npieces = start;
  return NOT_COMPILED;
}

/* The slot of fmt in the table, or the empty slot where it goes (the table
 * is never full). Fibonacci hashing of the address, then linear probing. */
static struct ptx_fmt_slot *fmt_slot(const ptx_builder *b, const char *fmt) {
  size_t mask = b->fmt_cap - 1, i = (size_t)(((uint64_t)(uintptr_t)fmt * 0x9E3779B97F4A7C15ull) >> 32) & mask;
  while (b->fmts[i].fmt && b->fmts[i].fmt != fmt) i = (i + 1) & mask;
  return &b->fmts[i];
}

/* Doubles the table (256 slots at first); 0 when out of memory. */
static int fmt_grow(ptx_builder *b) {
  struct ptx_fmt_slot *old = b->fmts;
  size_t old_cap = b->fmt_cap, cap = old_cap ? 2 * old_cap : 256;
  struct ptx_fmt_slot *t = calloc(cap, sizeof *t);
  if (!t) return 0;
  b->fmts = t;
  b->fmt_cap = cap;
  for (size_t i = 0; i < old_cap; i++)
    if (old[i].fmt) *fmt_slot(b, old[i].fmt) = old[i];
  free(old);
  return 1;
}

/* The first piece of fmt, compiled on first sight; NULL when fmt goes
 * through the general formatter. */
static const piece *fmt_find(ptx_builder *b, const char *fmt) {
  struct ptx_fmt_slot *slot = b->fmt_cap ? fmt_slot(b, fmt) : NULL;
  if (!slot || !slot->fmt) { /* first sight; the table stays at most half full */
    if (2 * (b->fmt_used + 1) > b->fmt_cap) {
      if (!fmt_grow(b)) return NULL; /* the general formatter still works */
      slot = fmt_slot(b, fmt);
    }
    slot->fmt = fmt;
    slot->at = fmt_compile(b, fmt);
    b->fmt_used++;
  }
  return slot->at == NOT_COMPILED ? NULL : b->pieces + slot->at;
}

/* Writes a compiled line. 0 when out of memory. */
static int fmt_run(cursor *c, const piece *p, va_list ap) {
  for (;; p++) {
    if (!cursor_room(c)) return 0;
    memcpy(c->o, p, sizeof *p);
    c->o += p->len;
    unsigned op = p->op;
    if (op == OP_S) { /* most directives, then the end of most pieces */
      if (!put_str(c, va_arg(ap, const char *))) return 0;
    } else if (op == OP_END) {
      return 1;
    } else if (op == OP_U) {
      put_dec(c, va_arg(ap, unsigned));
    } else if (op == OP_D) {
      put_dec(c, va_arg(ap, int));
    } else if (op == OP_X8) {
      put_hex(c, va_arg(ap, unsigned), 8);
    } else if (op == OP_X16) {
      put_hex(c, va_arg(ap, unsigned long long), 16);
    }
  }
}

/* ---- typed lines (ptx_op2 and the like: written inline, see ptx.h) ---- */

char *ptx_line_grow(ptx_builder *b, size_t text_len) {
  ptx_text *t = &b->body;
  if (t->cap - t->len <= text_len + PTX_LINE_ROOM && !text_reserve(t, text_len + PTX_LINE_ROOM)) return NULL;
  return t->data + t->len;
}

/* ---- the builder ---- */

void ptx_begin(ptx_builder *b, const char *ptx_version, uint32_t sm) {
  memset(b, 0, sizeof *b);
  text_append(&b->head, "//\n// Generated by ptxgen (ptxq), generator version %d.\n//\n", PTXGEN_VERSION);
  text_append(&b->head, ".version %s\n.target sm_%u\n.address_size 64\n\n", ptx_version, sm);
  b->sm = sm;
  text_reserve(&b->body, BODY_START - 1); /* cap - len > n: exactly BODY_START */
}

void ptx_grid_dependency_wait(ptx_builder *b) {
  if (b->sm < 90) return;
  ptx_comment(b, "wait for the grids this one depends on");
  ptx_ins(b, "griddepcontrol.wait;");
}

void ptx_grid_dependency_sync(ptx_builder *b) {
  if (b->sm < 90) return;
  ptx_grid_dependency_wait(b);
  ptx_ins(b, "griddepcontrol.launch_dependents;");
}

void ptx_entry(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
               int dyn_shared, uint32_t threads) {
  ptx_entry_blocks(b, name, param_names, nparams, dyn_shared, threads, 1);
}

static void entry_head(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
                       int dyn_shared) {
  if (dyn_shared) text_append(&b->head, ".extern .shared .align 16 .b8 xs[];\n\n");
  text_append(&b->head, ".visible .entry %s(", name);
  for (int i = 0; i < nparams; i++)
    text_append(&b->head, "%s\n\t.param .u64 %s", i ? "," : "", param_names[i]);
  text_append(&b->head, "\n)\n");
}

void ptx_entry_blocks(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
                      int dyn_shared, uint32_t threads, uint32_t min_blocks) {
  entry_head(b, name, param_names, nparams, dyn_shared);
  if (threads > 0) text_append(&b->head, ".maxntid %u, 1, 1\n.minnctapersm %u\n", threads, min_blocks);
  text_append(&b->head, "{\n");
}

void ptx_entry_cluster(ptx_builder *b, const char *name, const char *const *param_names, int nparams,
                       int dyn_shared, uint32_t threads, uint32_t cluster_blocks) {
  entry_head(b, name, param_names, nparams, dyn_shared);
  text_append(&b->head, ".maxntid %u, 1, 1\n.reqnctapercluster %u, 1, 1\n", threads, cluster_blocks);
  text_append(&b->head, "{\n");
}

void ptx_decl(ptx_builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  text_vappend(&b->head, "", fmt, ap, "\n");
  va_end(ap);
}

/* ptx_new's slow path (ptx.h): name v written out, once in ten names. */
ptx_reg ptx_new_name(ptx_builder *b, ptx_type t, unsigned v) {
  ptx_reg r = {{0}};
  size_t plen = strlen(reg_prefix[t]), n = 1;
  memcpy(r.s, reg_prefix[t], plen);
  for (unsigned x = v; x >= 10; x /= 10) n++;
  b->last_digit[t] = (unsigned char)(plen + n - 1);
  do r.s[plen + --n] = (char)('0' + v % 10); while ((v /= 10) != 0);
  memcpy(b->last_name[t], r.s, sizeof r.s);
  return r;
}

void ptx_label_new(ptx_builder *b, const char *hint, char out[32]) {
  snprintf(out, 32, "L%u_%.20s", b->nlabels++, hint);
}

void ptx_ins_literal(ptx_builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  const piece *prog = fmt_find(b, fmt);
  if (prog) {
    cursor c;
    if (cursor_open(&c, &b->body)) {
      if (fmt_run(&c, prog, ap)) cursor_close(&c);
      else b->body.failed = 1;
    }
  } else {
    text_vappend(&b->body, "\t", fmt, ap, "\n");
  }
  va_end(ap);
}

void ptx_comment(ptx_builder *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  text_vappend(&b->body, "\n\t// ", fmt, ap, "\n");
  va_end(ap);
}

void ptx_label(ptx_builder *b, const char *name) { text_append(&b->body, "%s:\n", name); }

ptx_reg ptx_imm_b32(ptx_builder *b, uint32_t v) {
  ptx_reg r = ptx_new(b, PTX_B32);
  ptx_ins(b, "mov.b32 %s, 0x%08X;", r.s, v);
  return r;
}

ptx_reg ptx_imm_f32(ptx_builder *b, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits);
  ptx_reg r = ptx_new(b, PTX_F32);
  ptx_ins(b, "mov.b32 %s, 0f%08X; // %.9g", r.s, bits, (double)v);
  return r;
}

ptx_reg ptx_param_u64(ptx_builder *b, const char *param) {
  ptx_reg raw = ptx_new(b, PTX_B64), g = ptx_new(b, PTX_B64);
  ptx_ins(b, "ld.param.u64 %s, [%s];", raw.s, param);
  ptx_ins(b, "cvta.to.global.u64 %s, %s;", g.s, raw.s);
  return g;
}

static bool power_of_two(uint32_t d) { return d != 0 && (d & (d - 1)) == 0; }

void ptx_udiv_const(ptx_builder *b, ptx_reg q, ptx_reg a, uint32_t d) {
  if (power_of_two(d)) {
    unsigned shift = 0;
    while ((1u << shift) != d) shift++;
    ptx_ins(b, "shr.u32 %s, %s, %u;", q.s, a.s, shift);
  } else {
    ptx_ins(b, "div.u32 %s, %s, %u;", q.s, a.s, d);
  }
}

void ptx_urem_const(ptx_builder *b, ptx_reg r, ptx_reg a, uint32_t d) {
  if (power_of_two(d))
    ptx_ins(b, "and.b32 %s, %s, %u;", r.s, a.s, d - 1);
  else
    ptx_ins(b, "rem.u32 %s, %s, %u;", r.s, a.s, d);
}

void ptx_discard(ptx_builder *b) {
  free(b->head.data);
  free(b->body.data);
  free(b->fmts);
  free(b->pieces);
  memset(b, 0, sizeof *b);
}

/* The module is head, .reg declarations, body and "}\n". The body, most of
 * the text, becomes the module in place: it moves up by the length of what
 * goes in front of it, where a copy into a fresh allocation would touch as
 * much new memory again. */
char *ptx_finish(ptx_builder *b, size_t *len) {
  ptx_text decls = {0};
  for (int t = 0; t < PTX_NTYPES; t++)
    if (b->nregs[t]) text_append(&decls, "\t.reg %s %s<%u>;\n", reg_decl[t], reg_prefix[t], b->nregs[t]);
  ptx_text *body = &b->body;
  int failed = b->head.failed || body->failed || decls.failed || !b->head.data || !body->data;
  size_t front = b->head.len + decls.len;
  if (!failed && text_reserve(body, front + 2)) {
    memmove(body->data + front, body->data, body->len);
    memcpy(body->data, b->head.data, b->head.len);
    if (decls.len) memcpy(body->data + b->head.len, decls.data, decls.len);
    memcpy(body->data + front + body->len, "}\n", 3);
    body->len += front + 2;
  }
  failed = failed || body->failed;
  free(decls.data);
  char *all = body->data;
  size_t all_len = body->len;
  body->data = NULL; /* now ours, not the builder's */
  ptx_discard(b);
  if (failed) {
    free(all);
    return NULL;
  }
  if (len) *len = all_len;
  return all;
}
