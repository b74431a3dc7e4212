/*
 * gguf.h: what the GGUF reader (gguf.c) shares inside the library.
 *
 * The table of ggml tensor types (ggml_types.c): for each type id a file may
 * name, its name and block geometry, so the reader can size a tensor and the
 * weight loader can tell which tensors it can upload.
 */
#ifndef PTXQ_GGUF_INTERNAL_H
#define PTXQ_GGUF_INTERNAL_H

#include <stdint.h>

/* A tensor of a ggml type is stored as rows of dims[0] elements, each row
 * dims[0] / block_elems blocks of block_bytes bytes. */
typedef struct ptxq__ggml_type_info {
  const char *name;     /* as ggml names it: "f32", "q4_K", "iq2_xxs", ... */
  uint32_t block_elems; /* elements per block (1 for plain scalar types) */
  uint32_t block_bytes; /* bytes per block */
} ptxq__ggml_type_info;

/* The geometry of a ggml type id, or NULL for an id that is unknown,
 * retired (4, 5, 31..33, 36..38) or newer than this table. */
const ptxq__ggml_type_info *ptxq__ggml_type(uint32_t type);

#endif
