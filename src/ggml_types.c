/*
 * ggml_types.c: the ggml tensor types a GGUF file may name, by type id.
 *
 * Ids, names and block geometry follow the reference implementation:
 * the ggml_type enum of ggml/include/ggml.h, the type_traits table of
 * ggml/src/ggml.c (type_name, blck_size, type_size) and GGML_QUANT_SIZES in
 * gguf-py/gguf/constants.py of llama.cpp, which spells each block size as a
 * sum of its fields (e.g. Q4_K: 2 + 2 + QK_K/2 + 12 = 144). Ids 4 and 5
 * (Q4_2, Q4_3), 31..33 (Q4_0_4_4, Q4_0_4_8, Q4_0_8_8) and 36..38 (IQ4_NL_4_4
 * ...) were retired from GGUF files and are unknown here, as is anything
 * past the table: the reader refuses such tensors rather than guess a size.
 */
#include <stddef.h>

#include "gguf.h"
#include "ptxq.h"

#define QK_K 256 /* elements per K-quant super-block */

static const ptxq__ggml_type_info ggml_types[] = {
    [0] = {"f32", 1, 4},
    [1] = {"f16", 1, 2},
    [2] = {"q4_0", 32, 2 + 16},
    [3] = {"q4_1", 32, 2 + 2 + 16},
    [6] = {"q5_0", 32, 2 + 4 + 16},
    [7] = {"q5_1", 32, 2 + 2 + 4 + 16},
    [8] = {"q8_0", 32, 2 + 32},
    [9] = {"q8_1", 32, 4 + 4 + 32},
    [10] = {"q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4},           /* 84 */
    [11] = {"q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12},           /* 110 */
    [12] = {"q4_K", QK_K, 2 + 2 + QK_K / 2 + 12},                  /* 144 */
    [13] = {"q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12},       /* 176 */
    [14] = {"q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16},    /* 210 */
    [15] = {"q8_K", QK_K, 4 + QK_K + QK_K / 8},                    /* 292 */
    [16] = {"iq2_xxs", QK_K, 2 + QK_K / 4},                        /* 66 */
    [17] = {"iq2_xs", QK_K, 2 + QK_K / 4 + QK_K / 32},             /* 74 */
    [18] = {"iq3_xxs", QK_K, 2 + QK_K / 4 + QK_K / 8},             /* 98 */
    [19] = {"iq1_s", QK_K, 2 + QK_K / 8 + QK_K / 16},              /* 50 */
    [20] = {"iq4_nl", 32, 2 + 16},
    [21] = {"iq3_s", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4}, /* 110 */
    [22] = {"iq2_s", QK_K, 2 + QK_K / 4 + QK_K / 16},              /* 82 */
    [23] = {"iq4_xs", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64},         /* 136 */
    [24] = {"i8", 1, 1},
    [25] = {"i16", 1, 2},
    [26] = {"i32", 1, 4},
    [27] = {"i64", 1, 8},
    [28] = {"f64", 1, 8},
    [29] = {"iq1_m", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},      /* 56 */
    [30] = {"bf16", 1, 2},
    [34] = {"tq1_0", QK_K, 2 + 4 * 13},                            /* 54 */
    [35] = {"tq2_0", QK_K, 2 + 64},                                /* 66 */
    [39] = {"mxfp4", 32, 1 + 16},
    [40] = {"nvfp4", 64, 4 + 32},
    [41] = {"q1_0", 128, 2 + 16},
};

const ptxq__ggml_type_info *ptxq__ggml_type(uint32_t type) {
  if (type >= sizeof ggml_types / sizeof ggml_types[0]) return NULL;
  const ptxq__ggml_type_info *info = &ggml_types[type];
  return info->name != NULL ? info : NULL; /* a gap in the ids */
}

const char *ptxq_ggml_type_name(uint32_t type) {
  const ptxq__ggml_type_info *info = ptxq__ggml_type(type);
  return info != NULL ? info->name : NULL;
}
