/*
 * cli_gguf.c: `ptxgen gguf FILE`, what a GGUF file holds, read through
 * ptxq's own reader (so a file it refuses is reported with the reader's
 * detail: what is wrong and at which byte).
 *
 * Output, on stdout:
 *   version 3, alignment 32, 6 metadata keys, 6 tensors
 *   metadata:
 *     <key> <type> <value>        arrays as "[type; count] first, few, ..."
 *   tensors:
 *     <name> <type> <dims> <bytes> <offset>
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ptxq.h"

static const char gguf_usage[] =
    "usage: ptxgen gguf FILE\n"
    "\n"
    "Prints the version, alignment, metadata (key, type, value) and tensor table\n"
    "(name, ggml type, dims with dims[0] first, bytes, file offset) of a GGUF file.\n"
    "Long strings and arrays are abbreviated. A malformed file is reported as\n"
    "`ptxgen: FILE: <what is wrong, at which byte>` (exit 1).\n";

#define STRING_SHOWN 60  /* bytes of a string value printed */
#define ELEMENT_SHOWN 24 /* bytes of a string printed as an array element */
#define ELEMENTS_SHOWN 4 /* elements of an array printed */

static const char *value_type_name(ptxq_gguf_type type) {
  static const char *const names[] = {"u8",  "i8",   "u16",    "i16",   "u32", "i32", "f32",
                                      "bool", "string", "array", "u64", "i64", "f64"};
  return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "?";
}

/* Bytes as a C-like literal body: quotes, backslashes and control bytes
 * escaped, UTF-8 passed through; at most `shown` bytes, cut at a character
 * boundary, then "...". Returns the bytes printed (for padding). */
static uint64_t print_text(const char *text, uint64_t len, uint64_t shown) {
  uint64_t cut = len;
  if (cut > shown) {
    cut = shown;
    while (cut > 0 && ((unsigned char)text[cut] & 0xC0) == 0x80) cut--;
  }
  uint64_t printed = 0;
  for (uint64_t i = 0; i < cut; i++) {
    unsigned char c = (unsigned char)text[i];
    if (c == '"' || c == '\\') printed += (uint64_t)printf("\\%c", c);
    else if (c == '\n') printed += (uint64_t)printf("\\n");
    else if (c == '\t') printed += (uint64_t)printf("\\t");
    else if (c < 0x20 || c == 0x7f) printed += (uint64_t)printf("\\x%02x", c);
    else printed += putchar(c) != EOF;
  }
  if (cut < len) printed += (uint64_t)printf("...");
  return printed;
}

static void print_string(const char *text, uint64_t len, uint64_t shown) {
  putchar('"');
  print_text(text, len, shown);
  putchar('"');
  if (len > shown) printf(" (%" PRIu64 " bytes)", len);
}

/* One value; arrays print their head and first few elements, nested arrays
 * only their head. Returns 0, or -1 when a getter failed (message printed). */
static int print_value(const ptxq_gguf_value *v, int top_level) {
  uint64_t u;
  int64_t i;
  double d;
  int b;
  const char *s;
  uint64_t len;
  int status;
  switch (v->type) {
  case PTXQ_GGUF_U8: case PTXQ_GGUF_U16: case PTXQ_GGUF_U32: case PTXQ_GGUF_U64:
    if ((status = ptxq_gguf_get_u64(v, &u)) == PTXQ_OK) printf("%" PRIu64, u);
    break;
  case PTXQ_GGUF_I8: case PTXQ_GGUF_I16: case PTXQ_GGUF_I32: case PTXQ_GGUF_I64:
    if ((status = ptxq_gguf_get_i64(v, &i)) == PTXQ_OK) printf("%" PRId64, i);
    break;
  case PTXQ_GGUF_F32:
    if ((status = ptxq_gguf_get_f64(v, &d)) == PTXQ_OK) printf("%.9g", d);
    break;
  case PTXQ_GGUF_F64:
    if ((status = ptxq_gguf_get_f64(v, &d)) == PTXQ_OK) printf("%.17g", d);
    break;
  case PTXQ_GGUF_BOOL:
    if ((status = ptxq_gguf_get_bool(v, &b)) == PTXQ_OK) fputs(b ? "true" : "false", stdout);
    break;
  case PTXQ_GGUF_STRING:
    if ((status = ptxq_gguf_get_string(v, &s, &len)) == PTXQ_OK)
      print_string(s, len, top_level ? STRING_SHOWN : ELEMENT_SHOWN);
    break;
  case PTXQ_GGUF_ARRAY: {
    ptxq_gguf_type elem_type;
    uint64_t count;
    if ((status = ptxq_gguf_get_array(v, &elem_type, &count)) != PTXQ_OK) break;
    printf("[%s; %" PRIu64 "]", value_type_name(elem_type), count);
    if (!top_level) return 0;
    for (uint64_t k = 0; k < count && k < ELEMENTS_SHOWN; k++) {
      ptxq_gguf_value elem;
      if ((status = ptxq_gguf_array_at(v, k, &elem)) != PTXQ_OK) break;
      fputs(k == 0 ? " " : ", ", stdout);
      if (print_value(&elem, 0) != 0) return -1;
    }
    if (status == PTXQ_OK && count > ELEMENTS_SHOWN) fputs(", ...", stdout);
    break;
  }
  default:
    printf("(value of unknown type %d)", (int)v->type);
    return -1;
  }
  if (status != PTXQ_OK) {
    printf("(unreadable: %s)", ptxq_last_error(NULL));
    return -1;
  }
  return 0;
}

static int print_metadata(const ptxq_gguf *file) {
  int failed = 0;
  printf("metadata:\n");
  for (uint64_t k = 0; k < ptxq_gguf_kv_count(file); k++) {
    const char *key;
    uint64_t key_len;
    ptxq_gguf_value value;
    if (ptxq_gguf_kv_at(file, k, &key, &key_len, &value) != PTXQ_OK) {
      printf("  (entry %" PRIu64 " unreadable: %s)\n", k, ptxq_last_error(NULL));
      failed = 1;
      continue;
    }
    fputs("  ", stdout);
    for (uint64_t pad = print_text(key, key_len, UINT64_MAX); pad < 40; pad++) putchar(' ');
    printf(" %-6s ", value_type_name(value.type));
    if (print_value(&value, 1) != 0) failed = 1;
    putchar('\n');
  }
  return failed;
}

static int print_tensors(const ptxq_gguf *file) {
  int failed = 0;
  printf("tensors:\n");
  for (uint64_t k = 0; k < ptxq_gguf_tensor_count(file); k++) {
    ptxq_gguf_tensor t;
    if (ptxq_gguf_tensor_at(file, k, &t) != PTXQ_OK) {
      printf("  (tensor %" PRIu64 " unreadable: %s)\n", k, ptxq_last_error(NULL));
      failed = 1;
      continue;
    }
    char dims[96];
    int used = 0;
    for (uint32_t d = 0; d < t.n_dims && used >= 0 && (size_t)used < sizeof dims; d++)
      used += snprintf(dims + used, sizeof dims - (size_t)used, "%s%" PRIu64, d ? "x" : "", t.dims[d]);
    const char *type = ptxq_ggml_type_name(t.type);
    fputs("  ", stdout);
    for (uint64_t pad = print_text(t.name, t.name_len, UINT64_MAX); pad < 32; pad++) putchar(' ');
    printf(" %-7s %-20s %12" PRIu64 " %12" PRIu64 "\n", type ? type : "?", dims, t.bytes, t.offset);
  }
  return failed;
}

int cli_gguf(int argc, char **argv) {
  const char *path = NULL;
  for (int i = 1; i < argc; i++) {
    if (cli_is_help(argv[i])) {
      fputs(gguf_usage, stdout);
      return CLI_EXIT_OK;
    }
  }
  for (int i = 1; i < argc; i++) {
    if (argv[i][0] == '-' || path != NULL) return cli_bad_argument("gguf", argv[i]);
    path = argv[i];
  }
  if (path == NULL) {
    fprintf(stderr, "ptxgen: gguf: missing FILE\n%s", gguf_usage);
    return CLI_EXIT_USAGE;
  }

  ptxq_gguf *file = NULL;
  if (ptxq_gguf_open(path, &file) != PTXQ_OK) {
    fprintf(stderr, "ptxgen: %s: %s\n", path, ptxq_last_error(NULL));
    return CLI_EXIT_FAILURE;
  }
  printf("version %" PRIu32 ", alignment %" PRIu64 ", %" PRIu64 " metadata keys, %" PRIu64 " tensors\n",
         ptxq_gguf_version(file), ptxq_gguf_alignment(file), ptxq_gguf_kv_count(file),
         ptxq_gguf_tensor_count(file));
  int failed = print_metadata(file);
  failed |= print_tensors(file);
  ptxq_gguf_close(file);
  if (fflush(stdout) != 0 || ferror(stdout)) {
    fprintf(stderr, "ptxgen: gguf: cannot write to stdout: %s\n", strerror(errno));
    return CLI_EXIT_FAILURE;
  }
  if (failed) {
    fprintf(stderr, "ptxgen: %s: some values could not be read (marked 'unreadable')\n", path);
    return CLI_EXIT_FAILURE;
  }
  return CLI_EXIT_OK;
}
