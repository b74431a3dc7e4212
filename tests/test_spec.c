/*
 * test_spec.c: specs and keys (suite unit). Round trips, canonical form,
 * the messages that bad keys get, and the determinism of emitted PTX.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ptxgen.h"

static uint64_t rng_state;
static uint32_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return (uint32_t)(rng_state >> 33);
}

/* A repacker's input of random bytes (from seed) and its output poisoned
 * with 0xAB, so that a byte the repacker leaves unwritten shows. */
static void repack_inputs(uint8_t *src, size_t src_bytes, uint8_t *dst, size_t dst_bytes, uint64_t seed) {
  rng_state = seed;
  for (size_t i = 0; i < src_bytes; i++) src[i] = (uint8_t)rnd();
  memset(dst, 0xAB, dst_bytes);
}

static const uint32_t targets[] = {75, 80, 86, 89, 90, 100, 120};

/* A canonical key parses into *s, formats back to itself, and the
 * formatted key parses into the same spec. */
static void assert_canonical_round_trip(const char *canonical, ptxgen_spec *s) {
  ptxgen_spec back;
  char msg[256], key[512];
  cr_assert_eq(ptxgen_spec_parse(canonical, s, msg, sizeof msg), 0, "%s: %s", canonical, msg);
  ptxgen_spec_format(s, key, sizeof key);
  cr_assert_str_eq(key, canonical);
  cr_assert_eq(ptxgen_spec_parse(key, &back, msg, sizeof msg), 0, "%s: %s", key, msg);
  cr_assert(memcmp(s, &back, sizeof *s) == 0, "round trip changed %s", key);
}

/* Parses key and emits its kernel into *k (free with ptxgen_kernel_free). */
static void emit_key(const char *key, ptxgen_kernel *k) {
  ptxgen_spec s;
  char msg[256];
  cr_assert_eq(ptxgen_spec_parse(key, &s, msg, sizeof msg), 0, "%s: %s", key, msg);
  cr_assert_eq(ptxgen_emit(&s, k, msg, sizeof msg), 0, "%s: %s", key, msg);
}

Test(spec, canonical_key_of_example) {
  ptxgen_spec s;
  char msg[256], key[128];
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=14336,m=1,sm=90", &s, msg, sizeof msg), 0, "%s", msg);
  cr_assert_eq(s.kind, PTXGEN_KIND_Q4K_GEMV);
  cr_assert_eq(s.k, 4096u);
  cr_assert_eq(s.n, 14336u);
  cr_assert_eq(s.m, 1u);
  cr_assert_eq(s.sm, 90u);
  cr_assert_gt(ptxgen_spec_format(&s, key, sizeof key), 0);
  cr_assert_str_eq(key, "q4k_gemv:k=4096,n=14336,m=1,sm=90");
}

Test(spec, any_order_and_default_target) {
  ptxgen_spec s;
  char msg[256], key[128];
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:m=3,n=777,k=256", &s, msg, sizeof msg), 0, "%s", msg);
  ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_str_eq(key, "q4k_gemv:k=256,n=777,m=3,sm=90");
  cr_assert_eq(ptxgen_spec_parse("stream_read:n=1000", &s, msg, sizeof msg), 0, "%s", msg);
  ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_str_eq(key, "stream_read:n=1000,sm=90");
  cr_assert_eq(ptxgen_spec_parse("stream_read:pdl=1,n=1000", &s, msg, sizeof msg), 0, "%s", msg);
  cr_assert_eq(s.pdl, 1u);
  ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_str_eq(key, "stream_read:n=1000,sm=90,pdl=1");
}

Test(spec, parse_format_round_trip_random) {
  rng_state = 12345;
  for (int i = 0; i < 5000; i++) {
    ptxgen_spec s = {0}, back;
    s.kind = PTXGEN_KIND_Q4K_GEMV;
    s.sm = targets[rnd() % 7];
    s.k = 256 * (1 + rnd() % 256);
    s.n = 1 + rnd() % PTXGEN_GEMV_MAX_N;
    s.m = 1 + rnd() % PTXGEN_GEMV_MAX_M;
    static const uint32_t rows[] = {0, 1, 2, 4}, warps[] = {0, 4, 8, 16};
    s.rows = rows[rnd() % 4];
    s.warps = warps[rnd() % 4];
    s.glu = rnd() % 3;
    if (s.m > PTXGEN_GEMV_EPILOGUE_MAX_M) s.glu = 0; /* the gated epilogue's limit */
    if (rnd() % 2) s.kind = PTXGEN_KIND_Q6K_GEMV;
    char key[128], msg[256];
    int len = ptxgen_spec_format(&s, key, sizeof key);
    cr_assert(len > 0 && (size_t)len < sizeof key);
    cr_assert_eq(ptxgen_spec_parse(key, &back, msg, sizeof msg), 0, "%s: %s", key, msg);
    cr_assert(memcmp(&s, &back, sizeof s) == 0, "round trip changed %s", key);
  }
}

Test(spec, activation_and_rope_keys_round_trip) {
  static const char *const canonical[] = {
      "gelu:n=14336,m=1,sm=90",
      "gelu_erf:n=777,m=3,sm=75",
      "silu:n=1,m=8,sm=120",
      "swiglu:n=14336,m=8,sm=90",
      "geglu:n=3,m=2,sm=100",
      "rope:mode=neox,head_dim=128,n_dims=128,heads=32,kv_heads=8,m=1,sm=90,base=500000",
      "rope:mode=normal,head_dim=64,n_dims=32,heads=4,kv_heads=2,m=8,sm=80,base=10000,freq_scale=0.25,"
      "freq_factors=1,ext_factor=1,attn_factor=1.5,beta_fast=16,beta_slow=2,n_ctx_orig=4096",
      "rope:mode=neox,head_dim=96,n_dims=64,heads=3,kv_heads=1,m=2,sm=89,base=123.456,freq_scale=0.1",
      "q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024",
      "q6k_gemv:k=2048,n=999,m=3,sm=80,n2=5",
      "q4k_gemv:k=4096,n=128256,m=16,sm=90,tc=1",
  };
  for (size_t i = 0; i < sizeof canonical / sizeof *canonical; i++) {
    ptxgen_spec s;
    assert_canonical_round_trip(canonical[i], &s);
  }
  /* defaults: n_dims = head_dim, base 10000, options at their defaults are not written */
  ptxgen_spec s;
  char msg[256], key[512];
  cr_assert_eq(ptxgen_spec_parse("rope:m=1,kv_heads=1,heads=2,head_dim=8,mode=normal,attn_factor=1", &s, msg,
                                 sizeof msg), 0, "%s", msg);
  cr_assert_eq(s.n_dims, 8u);
  cr_assert(s.base == 10000.0f && s.freq_scale == 1.0f && s.beta_fast == 32.0f && s.beta_slow == 1.0f);
  ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_str_eq(key, "rope:mode=normal,head_dim=8,n_dims=8,heads=2,kv_heads=1,m=1,sm=90,base=10000");
}

/* A GEMV's RoPE epilogue (rope=normal|neox on q, k[, v]): its constants
 * are written only where they differ from the rope kind's defaults
 * (n_dims: head_dim), after the GEMV's own parameters. */
Test(spec, rope_gemv_keys_round_trip) {
  static const char *const canonical[] = {
      "q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000",
      "q4k_gemv:k=4096,n=4096,m=2,sm=90,n2=1024,rope=normal,head_dim=128",
      "q6k_gemv:k=2048,n=1024,m=8,sm=80,rows=4,n2=256,rope=normal,head_dim=64,n_dims=32",
      "q6k_gemv:k=4096,n=4096,m=3,sm=90,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000,freq_factors=1",
      "q4k_gemv:k=256,n=36,m=3,sm=120,warps=16,preload=3,n2=12,n3=7,rope=neox,head_dim=12,n_dims=4,"
      "base=123.456,freq_scale=0.25,freq_factors=1,ext_factor=1,attn_factor=1.5,beta_fast=16,beta_slow=2,"
      "n_ctx_orig=4096",
      "q6k_gemv:k=512,n=6,m=1,sm=75,rows=2,n2=2,rope=normal,head_dim=2,attn_factor=-2,n_ctx_orig=8192",
      /* -0 is not the default +0 (compared bit for bit) and needs no n_ctx_orig */
      "q4k_gemv:k=256,n=64,m=1,sm=90,n2=64,rope=neox,head_dim=64,ext_factor=-0",
  };
  for (size_t i = 0; i < sizeof canonical / sizeof *canonical; i++) {
    ptxgen_spec s;
    assert_canonical_round_trip(canonical[i], &s);
    cr_assert_neq(s.rope, 0u, "%s", canonical[i]);
    cr_assert(s.heads == 0 && s.kv_heads == 0 && s.mode == 0, "%s: heads, kv_heads and mode stay 0", canonical[i]);
  }
  /* Any order, every default spelled out: the canonical key drops them, and
   * the parsed constants are the rope kind's defaults. */
  static const struct { const char *key, *canonical; uint32_t rope, n_dims; } defaults[] = {
      {"q4k_gemv:rope=neox,head_dim=128,n_dims=128,base=10000,freq_scale=1,freq_factors=0,ext_factor=0,"
       "attn_factor=1,beta_fast=32,beta_slow=1,n_ctx_orig=0,n3=1024,n2=1024,m=1,n=4096,k=4096",
       "q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024,rope=neox,head_dim=128", 2, 128},
      {"q6k_gemv:head_dim=64,rope=normal,n2=128,m=8,n=256,k=256,sm=80",
       "q6k_gemv:k=256,n=256,m=8,sm=80,n2=128,rope=normal,head_dim=64", 1, 64},
      {"q6k_gemv:k=256,n=256,m=2,n2=256,rope=neox,head_dim=64,n_dims=64,rows=2,warps=8",
       "q6k_gemv:k=256,n=256,m=2,sm=90,rows=2,warps=8,n2=256,rope=neox,head_dim=64", 2, 64},
  };
  for (size_t i = 0; i < sizeof defaults / sizeof *defaults; i++) {
    ptxgen_spec s, back;
    char msg[256], key[512];
    cr_assert_eq(ptxgen_spec_parse(defaults[i].key, &s, msg, sizeof msg), 0, "%s: %s", defaults[i].key, msg);
    cr_assert_eq(s.rope, defaults[i].rope, "%s", defaults[i].key);
    cr_assert_eq(s.n_dims, defaults[i].n_dims, "%s: n_dims defaults to head_dim", defaults[i].key);
    cr_assert(s.base == 10000.0f && s.freq_scale == 1.0f && s.freq_factors == 0 && s.ext_factor == 0.0f &&
                  s.attn_factor == 1.0f && s.beta_fast == 32.0f && s.beta_slow == 1.0f && s.n_ctx_orig == 0,
              "%s: the rope kind's defaults", defaults[i].key);
    ptxgen_spec_format(&s, key, sizeof key);
    cr_assert_str_eq(key, defaults[i].canonical);
    cr_assert_eq(ptxgen_spec_parse(key, &back, msg, sizeof msg), 0, "%s: %s", key, msg);
    cr_assert(memcmp(&s, &back, sizeof s) == 0, "round trip changed %s", key);
  }
  /* Without rope= every constant is 0 and none is written. */
  ptxgen_spec s;
  char msg[256], key[512];
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024", &s, msg, sizeof msg), 0, "%s", msg);
  cr_assert(s.rope == 0 && s.head_dim == 0 && s.n_dims == 0 && s.base == 0.0f && s.freq_scale == 0.0f &&
            s.attn_factor == 0.0f && s.beta_fast == 0.0f && s.beta_slow == 0.0f);
  ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_str_eq(key, "q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024");
}

/* Random valid RoPE GEMV specs: parse(format(spec)) == spec. */
Test(spec, rope_gemv_round_trip_random) {
  rng_state = 4242;
  for (int i = 0; i < 3000; i++) {
    ptxgen_spec s = {0}, back;
    s.kind = rnd() % 2 ? PTXGEN_KIND_Q6K_GEMV : PTXGEN_KIND_Q4K_GEMV;
    s.sm = targets[rnd() % 7];
    s.k = 256 * (1 + rnd() % 256);
    s.m = 1 + rnd() % PTXGEN_GEMV_EPILOGUE_MAX_M;
    static const uint32_t rows[] = {0, 2, 4}, warps[] = {0, 4, 8, 16};
    s.rows = rows[rnd() % 3];
    s.warps = warps[rnd() % 4];
    s.preload = rnd() % 4;
    s.rope = 1 + rnd() % 2;
    s.head_dim = 2 * (1 + rnd() % (PTXGEN_ROPE_MAX_HEAD_DIM / 2));
    s.n_dims = 2 * (1 + rnd() % (s.head_dim / 2));
    uint32_t kv_heads = 1 + rnd() % 8, heads = kv_heads * (1 + rnd() % 8);
    s.n = heads * s.head_dim;
    s.n2 = kv_heads * s.head_dim;
    s.n3 = rnd() % 2 ? rnd() % 5000 : 0;
    s.base = (float)(rnd() % 1000000 + 2) / 7.0f;
    s.freq_scale = (float)(rnd() % 1000 + 1) / 997.0f;
    s.freq_factors = rnd() % 2;
    s.ext_factor = rnd() % 2 ? (float)(rnd() % 100) / 64.0f : 0.0f;
    s.n_ctx_orig = rnd() % 2 || s.ext_factor != 0 ? 1 + rnd() % 131072 : 0;
    s.attn_factor = (float)((int)(rnd() % 2001) - 1000) / 333.0f;
    s.beta_fast = (float)(rnd() % 1000 + 1) / 31.0f;
    s.beta_slow = (float)(rnd() % 1000 + 1) / 127.0f;
    char key[512], msg[256];
    cr_assert_eq(ptxgen_spec_validate(&s, msg, sizeof msg), 0, "spec %d: %s", i, msg);
    int len = ptxgen_spec_format(&s, key, sizeof key);
    cr_assert(len > 0 && (size_t)len < sizeof key);
    cr_assert_eq(ptxgen_spec_parse(key, &back, msg, sizeof msg), 0, "%s: %s", key, msg);
    cr_assert(memcmp(&s, &back, sizeof s) == 0, "round trip changed %s", key);
  }
}

Test(spec, random_float_constants_round_trip) {
  rng_state = 777;
  for (int i = 0; i < 2000; i++) {
    ptxgen_spec s, back;
    char msg[256], key[512];
    cr_assert_eq(ptxgen_spec_parse("rope:mode=neox,head_dim=64,heads=4,kv_heads=4,m=1", &s, msg, sizeof msg), 0);
    uint32_t bits = 0x3A000000u + rnd() % 0x0C000000u; /* finite positive floats around 1e-3..1e5 */
    memcpy(&s.base, &bits, sizeof bits);
    if (s.base == 1.0f) continue;
    s.freq_scale = (float)(rnd() % 1000 + 1) / 997.0f;
    int len = ptxgen_spec_format(&s, key, sizeof key);
    cr_assert(len > 0);
    cr_assert_eq(ptxgen_spec_parse(key, &back, msg, sizeof msg), 0, "%s: %s", key, msg);
    cr_assert(memcmp(&s, &back, sizeof s) == 0, "%s did not round-trip", key);
  }
}

/* The Q6_K repacking moves every byte of a super-block to its plane and
 * zeroes the row padding. */
Test(spec, q6k_repack_moves_every_byte) {
  enum { K = 768, N = 3, NB = K / 256 };
  uint8_t src[N * NB * 210], dst[N * 640];
  cr_assert_eq(ptxgen_q6k_row_stride(K), 640u); /* 3 * 210 = 630, padded to 640 */
  cr_assert_eq(ptxgen_q6k_row_stride(256), 224u);
  cr_assert_eq(ptxgen_q6k_row_stride(4096), 3360u);
  repack_inputs(src, sizeof src, dst, sizeof dst, 99);
  ptxgen_q6k_repack(src, K, N, dst);
  for (int r = 0; r < N; r++) {
    const uint8_t *row = dst + r * 640;
    for (int b = 0; b < NB; b++) {
      const uint8_t *blk = src + (r * NB + b) * 210;
      cr_assert(memcmp(row + b * 128, blk, 128) == 0, "ql of row %d block %d", r, b);
      cr_assert(memcmp(row + NB * 128 + b * 64, blk + 128, 64) == 0, "qh of row %d block %d", r, b);
      cr_assert(memcmp(row + NB * 192 + b * 16, blk + 192, 16) == 0, "scales of row %d block %d", r, b);
      cr_assert(memcmp(row + NB * 208 + b * 2, blk + 208, 2) == 0, "d of row %d block %d", r, b);
    }
    for (int i = NB * 210; i < 640; i++) cr_assert_eq(row[i], 0, "padding byte %d of row %d", i, r);
  }
}

/* The tensor-core tiles put super-block j of row r in tile r/16's 2304
 * bytes at (r/16 * k/256 + j) * 2304: its header (bytes 0..15) at 2048 +
 * 16 (r%16), and its quant bytes 8t..8t+7 of chunk c (block bytes 16 + 32c
 * + 8t) at 512c + 16 (4 (r%8) + t) + 8 (r%16 / 8), where lane 4g + t of
 * the kernel loads them; the rows past n are zero. */
Test(spec, q4k_tc_tiles_move_every_byte) {
  enum { K = 768, N = 37, NB = K / 256, TILES = 3 };
  static uint8_t src[N * NB * 144], dst[TILES * 16 * NB * 144], seen[sizeof dst];
  cr_assert_eq(ptxgen_q4k_tc_bytes(K, N), (uint64_t)sizeof dst);
  cr_assert_eq(ptxgen_q4k_tc_bytes(4096, 14336), 14336ull * 16 * 144);
  repack_inputs(src, sizeof src, dst, sizeof dst, 7);
  ptxgen_q4k_tc_tiles(src, K, N, dst);
  for (int r = 0; r < TILES * 16; r++)
    for (int j = 0; j < NB; j++) {
      const size_t base = (size_t)(r / 16 * NB + j) * 2304;
      const uint8_t *blk = r < N ? src + ((size_t)r * NB + j) * 144 : NULL;
      for (int i = 0; i < 16; i++) {
        cr_assert_eq(dst[base + 2048 + 16 * (r % 16) + i], blk ? blk[i] : 0, "row %d sb %d header byte %d", r, j, i);
        seen[base + 2048 + 16 * (r % 16) + i]++;
      }
      for (int c = 0; c < 4; c++)
        for (int t = 0; t < 4; t++)
          for (int i = 0; i < 8; i++) {
            const size_t at = base + 512 * c + 16 * (4 * (r % 8) + t) + 8 * (r % 16 / 8) + i;
            cr_assert_eq(dst[at], blk ? blk[16 + 32 * c + 8 * t + i] : 0, "row %d sb %d chunk %d lane %d byte %d", r,
                         j, c, t, i);
            seen[at]++;
          }
    }
  for (size_t i = 0; i < sizeof dst; i++) cr_assert_eq(seen[i], 1, "byte %zu written %u times", i, seen[i]);
}

/* The 6-bit quant (0..63) of weight w of a GGUF Q6_K super-block, as
 * formats.md decodes it. */
static uint32_t q6k_quant(const uint8_t *blk, uint32_t w) {
  const uint32_t h = w / 128, l = w % 32, c = w % 128 / 32;
  const uint8_t ql = blk[64 * h + l + 32 * (c % 2)], qh = blk[128 + 32 * h + l];
  return (uint32_t)((c < 2 ? ql & 0xF : ql >> 4) | ((qh >> 2 * c & 3) << 4));
}

static uint32_t le32_at(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The Q6_K tensor-core tiles, read back as gemv_tc.c's lanes read them:
 * lane 4g + t of sub-block u (half H = u/8) takes nibble word (u/2)%4 of
 * load 3H + (row g or g + 8), shifted 8 right for odd u, and high-bit word
 * 2 (row) + (u/4)%2 of load 3H + 2, shifted by 2f - 4 (f = 0, 1, 4, 5 for
 * u%4); masks 0x000F000F | 0x00300030 give the even pair (weights 16u + 4t,
 * + 2) and 0x00F000F0 | 0x03000300 the odd pair (+1, +3) times 16. Every
 * quant, scale and d of every row must come back; rows past n are zero. */
Test(spec, q6k_tc_tiles_give_each_lane_its_quants) {
  enum { K = 512, N = 21, NB = K / 256, TILES = 2 };
  static uint8_t src[N * NB * 210], dst[TILES * 16 * NB * 210];
  cr_assert_eq(ptxgen_q6k_tc_bytes(K, N), (uint64_t)sizeof dst);
  cr_assert_eq(ptxgen_q6k_tc_bytes(14336, 4096), 4096ull * 56 * 210);
  repack_inputs(src, sizeof src, dst, sizeof dst, 11);
  ptxgen_q6k_tc_tiles(src, K, N, dst);
  static const int shift[4] = {-4, -2, 4, 6};
  for (int r = 0; r < TILES * 16; r++)
    for (int j = 0; j < NB; j++) {
      const uint8_t *base = dst + (size_t)(r / 16 * NB + j) * 3360;
      const uint8_t *blk = r < N ? src + ((size_t)r * NB + j) * 210 : NULL;
      const int g = r % 8, rr = r % 16 / 8;
      for (int i = 0; i < 16; i++)
        cr_assert_eq(base[3072 + 16 * (r % 16) + i], blk ? blk[192 + i] : 0, "row %d sb %d scale %d", r, j, i);
      for (int i = 0; i < 2; i++)
        cr_assert_eq(base[3328 + 4 * g + 2 * rr + i], blk ? blk[208 + i] : 0, "row %d sb %d d byte %d", r, j, i);
      for (int t = 0; t < 4; t++)
        for (uint32_t u = 0; u < 16; u++) {
          const uint8_t *lane = base + 16 * (4 * g + t);
          const uint32_t H = u / 8;
          uint32_t nib = le32_at(lane + 512 * (3 * H + rr) + 4 * ((u / 2) % 4));
          uint32_t high = le32_at(lane + 512 * (3 * H + 2) + 4 * (2 * rr + (u / 4) % 2));
          if (u % 2) nib >>= 8;
          high = shift[u % 4] < 0 ? high << -shift[u % 4] : high >> shift[u % 4];
          const uint32_t even = (nib & 0x000F000F) | (high & 0x00300030);
          const uint32_t odd = ((nib & 0x00F000F0) | (high & 0x03000300)) >> 4;
          const uint32_t got[4] = {even & 0xFFFF, odd & 0xFFFF, even >> 16, odd >> 16};
          for (uint32_t i = 0; i < 4; i++)
            cr_assert_eq(got[i], blk ? q6k_quant(blk, 16 * u + 4 * (uint32_t)t + i) : 0,
                         "row %d sb %d lane %d sub-block %u weight %u", r, j, 4 * g + t, u, i);
        }
    }
}

Test(spec, format_refuses_invalid_and_reports_truncation) {
  ptxgen_spec s = {.kind = PTXGEN_KIND_Q4K_GEMV, .sm = 90, .k = 4000, .n = 1, .m = 1};
  char key[16];
  cr_assert_eq(ptxgen_spec_format(&s, key, sizeof key), PTXGEN_ERR_SPEC);
  s.k = 4096;
  int len = ptxgen_spec_format(&s, key, sizeof key);
  cr_assert_geq(len, (int)sizeof key, "a short buffer must report the full length");
}

/* Each bad key must be refused with a message containing `needle`. */
static void refuse(const char *key, const char *needle) {
  ptxgen_spec s;
  char msg[256] = "";
  cr_assert_eq(ptxgen_spec_parse(key, &s, msg, sizeof msg), PTXGEN_ERR_SPEC, "accepted '%s'", key);
  cr_assert(strstr(msg, needle) != NULL, "key '%s': message '%s' does not mention '%s'", key, msg, needle);
}

Test(spec, bad_keys_name_the_problem) {
  refuse("q4k_gemv:k=4000,n=1,m=1", "k=4000");
  refuse("q4k_gemv:k=4000,n=1,m=1", "multiple of 256");
  refuse("q4k_gemv:k=0,n=1,m=1", "k=0");
  refuse("q4k_gemv:k=65792,n=1,m=1", "65536");
  refuse("q4k_gemv:k=256,n=0,m=1", "n=0");
  refuse("q4k_gemv:k=256,n=262145,m=1", "262144");
  refuse("q4k_gemv:k=256,n=1,m=0", "m=0");
  refuse("q4k_gemv:k=256,n=1,m=17", "m=17");
  refuse("q4k_gemv:k=256,n=1,m=17", "1..16");
  refuse("q6k_gemv:k=256,n=1,m=17", "m=17: the batch must be 1..16");
  /* the epilogues stop at m = 8 (PTXGEN_GEMV_EPILOGUE_MAX_M) */
  refuse("q4k_gemv:k=256,n=1,m=9,glu=swiglu", "m=9 with glu");
  refuse("q4k_gemv:k=256,n=1,m=9,tc=1,glu=swiglu", "m=9 with glu");
  refuse("q6k_gemv:k=256,n=1,m=16,glu=geglu", "a GEMV epilogue takes m <= 8");
  refuse("q6k_gemv:k=256,n=1,m=16,glu=geglu", "swiglu or geglu kernel");
  refuse("q4k_gemv:k=256,n=1,m=1,sm=91", "sm=91");
  refuse("q4k_gemv:k=256,n=1,m=1,rows=3", "rows=3");
  refuse("q4k_gemv:k=256,n=1,m=1,warps=5", "warps=5");
  refuse("q4k_gemv:k=256,n=1,m=1,tc=2", "tc=2: must be 0 (FMA) or 1 (tensor cores)");
  refuse("q4k_gemv:k=256,n=1,m=1,sm=75,tc=1", "tc=1 with sm=75");
  refuse("q4k_gemv:k=256,n=8,m=1,n2=4,rope=neox,head_dim=4,n_dims=4,tc=1", "tc=1 with rope=neox, head_dim=4");
  refuse("q4k_gemv:k=256,n=64,m=1,n2=64,rope=normal,head_dim=32,tc=1", "tc=1 with rope=normal");
  refuse("q4k_gemv:k=256,n=128,m=1,n2=64,rope=neox,head_dim=64,n_dims=32,tc=1", "n_dims=32");
  refuse("q4k_gemv:k=256,n=96,m=1,n2=48,rope=neox,head_dim=48,tc=1", "head_dim=48");
  refuse("q4k_gemv:k=256,n=64,m=9,n2=64,rope=neox,head_dim=32,tc=1", "m=9 with rope");
  refuse("q4k_gemv:k=256,n=1,m=1,rows=1,tc=1", "tc=1 with rows");
  refuse("q4k_gemv:k=256,n=1,m=1,preload=2,tc=1", "tc=1 with preload");
  refuse("q4k_gemv:k=256,n=1,m=1,idp=2", "idp=2: must be 0");
  refuse("q4k_gemv:k=256,n=1,m=1,idp=1,tc=1", "idp=1 with tc=1");
  refuse("q6k_gemv:k=256,n=1,m=1,idp=1", "idp=1 on q6k_gemv");
  refuse("q4k_gemv:k=256,n=1,m=1,idp=1,mma=3", "mma=3: must be 1");
  refuse("q4k_gemv:k=256,n=1,m=1,mma=1", "mma=1 without idp=1");
  refuse("q4k_gemv:k=256,n=1,m=8,sm=75,idp=1,mma=2", "mma=2: the integer tensor-core kernel needs sm >= 80");
  refuse("q4k_gemv:k=256,n=1,m=2,idp=1,mma=2,rope=neox", "mma=2: the integer tensor-core kernel");
  refuse("q4k_gemv:k=14336,n=1,m=8,sm=90,idp=1,mma=2,glu=swiglu", "sm_90/100 without glu=");
  refuse("q4k_gemv:k=256,n=1,m=9,idp=1,mma=2", "mma=2: the integer tensor-core kernel");
  refuse("q4k_gemv:k=256,n=1,m=2,idp=1,mma=2,rows=2", "mma=2: the integer tensor-core kernel");
  refuse("q4k_gemv:k=14336,n=1,m=8,sm=80,idp=1,mma=2", "k=14336, m=8) staged whole");
  refuse("q8_gemv:k=256,n=1,m=1", "unknown kernel kind 'q8_gemv'");
  refuse("q6k_gemv:k=300,n=1,m=1", "k=300 is not a multiple of 256");
  refuse("q4k_gemv:k=256,n=1,m=1,glu=relu", "glu='relu' is not swiglu or geglu");
  refuse("q4k_gemv:k=256,n=1,m=1,z=2", "unknown parameter 'z'");
  refuse("q4k_gemv:k=256,n=1", "missing parameter 'm'");
  refuse("q4k_gemv:k=256,k=512,n=1,m=1", "given twice");
  refuse("q4k_gemv:k=-256,n=1,m=1", "k='-256'");
  refuse("q4k_gemv:k=256,n=8,m=1,n3=4", "n3=4 without n2");
  refuse("q4k_gemv:k=256,n=8,m=1,n2=4,glu=swiglu", "n2=4 with glu");
  refuse("q4k_gemv:k=256,n=262144,m=1,n2=1", "n+n2+n3=262145");
  refuse("q4k_gemv:k=1e3,n=1,m=1", "k='1e3'");
  refuse("q4k_gemv:k=,n=1,m=1", "k=''");
  refuse("q4k_gemv:k=99999999999,n=1,m=1", "k='99999999999'");
  refuse("q4k_gemv:k=4294967296,n=1,m=1", "k='4294967296'");
  refuse("q4k_gemv:k=256,n=1,m=1,", "ends with ','");
  refuse("q4k_gemv:k256,n=1,m=1", "'k256' is not of the form");
  refuse("garbage", "no ':'");
  refuse("", "no ':'");
  refuse(":", "unknown kernel kind ''");
  refuse("q4k_gemv:", "missing parameter 'k'");
  refuse("stream_read:n=0", "n=0");
  refuse("silu:n=0,m=1", "n=0");
  refuse("gelu:n=1048577,m=1", "1048576");
  refuse("swiglu:n=5,m=17", "m=17");
  refuse("gelu:n=5,m=17", "1..16");
  refuse("geglu:n=5", "missing parameter 'm'");
  refuse("rope:mode=neox,head_dim=127,heads=4,kv_heads=2,m=1", "head_dim=127");
  refuse("rope:mode=neox,head_dim=128,n_dims=130,heads=4,kv_heads=2,m=1", "n_dims=130 exceeds head_dim=128");
  refuse("rope:mode=neox,head_dim=128,n_dims=7,heads=4,kv_heads=2,m=1", "n_dims=7");
  refuse("rope:mode=neox,head_dim=128,heads=32,kv_heads=5,m=1", "kv_heads=5 does not divide heads=32");
  refuse("rope:mode=spiral,head_dim=128,heads=4,kv_heads=2,m=1", "mode='spiral' is not normal or neox");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=0", "m=0");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=17", "m=17: the number of tokens must be 1..16");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=1,base=1", "base=1");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=1,base=nan", "base='nan'");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=1,base=1e99", "base='1e99'");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=1,ext_factor=1", "n_ctx_orig");
  refuse("rope:mode=neox,head_dim=128,heads=4,kv_heads=2,m=1,freq_factors=2", "freq_factors=2");
  refuse("rope:head_dim=128,heads=4,kv_heads=2,m=1", "missing parameter 'mode'");
  refuse("stream_read:n=1,k=256", "unknown parameter 'k'");
  refuse("stream_read:n=1,pdl=2", "pdl=2: must be 0");
  refuse("stream_read:n=1,sm=89,pdl=1", "pdl=1 needs sm >= 90");
  refuse("silu:n=1,m=1,pdl=1", "unknown parameter 'pdl'");
}

Test(spec, bad_rope_gemv_keys_name_the_problem) {
  refuse("q4k_gemv:k=4096,n=4096,m=1,rope=neox,head_dim=128", "rope needs n2");
  refuse("q4k_gemv:k=4096,n=4096,m=9,n2=1024,rope=neox,head_dim=128", "m=9 with rope");
  refuse("q6k_gemv:k=4096,n=4096,m=16,n2=1024,n3=1024,rope=normal,head_dim=128", "then the rope kernel");
  refuse("q6k_gemv:k=4096,n=4096,m=1,rope=normal,head_dim=128", "rope needs n2");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rows=1,rope=neox,head_dim=128", "rope with rows=1");
  refuse("q6k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rows=1,rope=normal,head_dim=128", "rope with rows=1");
  refuse("q4k_gemv:k=4096,n=4000,m=1,n2=1024,rope=neox,head_dim=128",
         "n=4000 and n2=1024 must be whole heads of head_dim=128");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1000,rope=neox,head_dim=128",
         "n=4096 and n2=1000 must be whole heads of head_dim=128");
  /* the RoPE constants need rope= */
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,head_dim=128",
         "head_dim is a RoPE constant: it needs rope=normal or rope=neox");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,base=500000", "base is a RoPE constant");
  refuse("q6k_gemv:k=256,n=1,m=1,freq_factors=1", "freq_factors is a RoPE constant");
  refuse("q4k_gemv:k=256,n=128,m=1,n2=128,n_dims=64", "n_dims is a RoPE constant");
  refuse("q4k_gemv:k=256,n=128,m=1,n2=128,n_ctx_orig=4096", "n_ctx_orig is a RoPE constant");
  refuse("q4k_gemv:k=256,n=128,m=1,n2=128,ext_factor=-0", "ext_factor is a RoPE constant");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=yes,head_dim=128", "rope='yes' is not normal or neox");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=2,head_dim=128", "rope='2' is not normal or neox");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox", "head_dim=0");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=127", "head_dim=127: must be even");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=1024", "head_dim=1024: must be even and 2..512");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,n_dims=256",
         "n_dims=256 exceeds head_dim=128");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,n_dims=7", "n_dims=7");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,n_dims=0", "n_dims=0");
  /* 32 q heads, 10 kv heads */
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1280,rope=neox,head_dim=128", "kv_heads=10 does not divide heads=32");
  refuse("q4k_gemv:k=256,n=2050,m=1,n2=2,rope=normal,head_dim=2", "heads=1025");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,ext_factor=1",
         "ext_factor=1 needs n_ctx_orig");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,base=1", "base=1");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,freq_scale=0", "freq_scale=0");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,freq_factors=2", "freq_factors=2");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,beta_fast=0", "beta_fast=0");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,base=nan", "base='nan'");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,rope=neox,head_dim=128", "given twice");
  /* the rope kind's own fields are not the GEMV's */
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128,heads=32", "unknown parameter 'heads'");
  refuse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,mode=neox,head_dim=128", "unknown parameter 'mode'");
}

/* Specs built in memory: rope beyond neox, and heads, kv_heads or mode set
 * on a GEMV (they are n/head_dim and n2/head_dim, not fields of the key). */
Test(spec, bad_rope_gemv_specs_name_the_problem) {
  ptxgen_spec good;
  char msg[256] = "";
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=4096,m=1,n2=1024,rope=neox,head_dim=128", &good, msg,
                                 sizeof msg), 0, "%s", msg);
  ptxgen_spec s = good;
  s.rope = 3;
  cr_assert_eq(ptxgen_spec_validate(&s, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert(strstr(msg, "rope=3"), "%s", msg);
  s = good;
  s.heads = 32;
  cr_assert_eq(ptxgen_spec_validate(&s, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert(strstr(msg, "does not take"), "%s", msg);
  s = good;
  s.mode = 2;
  cr_assert_eq(ptxgen_spec_validate(&s, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert(strstr(msg, "does not take"), "%s", msg);
  s = good;
  s.rows = 1;
  cr_assert_eq(ptxgen_spec_validate(&s, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert(strstr(msg, "rows=1"), "%s", msg);
  char key[512];
  cr_assert_eq(ptxgen_spec_format(&s, key, sizeof key), PTXGEN_ERR_SPEC, "an invalid spec has no key");
}

Test(spec, null_arguments) {
  ptxgen_spec s;
  char msg[64];
  cr_assert_eq(ptxgen_spec_parse(NULL, &s, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=256,n=1,m=1", NULL, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert_eq(ptxgen_spec_validate(NULL, NULL, 0), PTXGEN_ERR_SPEC);
  cr_assert_eq(ptxgen_emit(NULL, NULL, NULL, 0), PTXGEN_ERR_SPEC);
  ptxgen_kernel_free(NULL);
  ptxgen_spec bad = {.kind = (ptxgen_kind)77, .sm = 90};
  cr_assert_eq(ptxgen_spec_validate(&bad, msg, sizeof msg), PTXGEN_ERR_SPEC);
  cr_assert(strstr(msg, "unknown kernel kind 77"), "%s", msg);
}

Test(spec, ptx_version_follows_target) {
  cr_assert_str_eq(ptxgen_ptx_version(75), "7.8");
  cr_assert_str_eq(ptxgen_ptx_version(90), "8.0");
  cr_assert_str_eq(ptxgen_ptx_version(100), "8.6");
  cr_assert_str_eq(ptxgen_ptx_version(120), "8.7");
  cr_assert_null(ptxgen_ptx_version(70));
}

Test(spec, every_listed_example_key_parses_and_emits) {
  size_t count = 0;
  const ptxgen_kind_info *kinds = ptxgen_kinds(&count);
  cr_assert_geq(count, 2u);
  for (size_t i = 0; i < count; i++) {
    ptxgen_spec s;
    ptxgen_kernel k;
    char msg[256];
    cr_assert_eq(ptxgen_spec_parse(kinds[i].example_key, &s, msg, sizeof msg), 0, "%s: %s", kinds[i].example_key, msg);
    cr_assert_eq(s.kind, kinds[i].kind);
    cr_assert(strncmp(kinds[i].example_key, kinds[i].name, strlen(kinds[i].name)) == 0);
    cr_assert_eq(ptxgen_emit(&s, &k, msg, sizeof msg), 0, "%s", msg);
    ptxgen_kernel_free(&k);
  }
}

/* Emitting a spec twice gives the same bytes; the text declares the entry
 * the generator names, the target and the version the target needs, and the
 * geometry fits the hardware limits. */
Test(spec, emitted_kernel_is_deterministic_and_self_consistent) {
  static const char *const keys[] = {
      "q4k_gemv:k=256,n=1,m=1,sm=75",         "q4k_gemv:k=4096,n=777,m=3,sm=90",
      "q4k_gemv:k=14336,n=4096,m=8,sm=120",   "q4k_gemv:k=65536,n=33,m=8,sm=75",
      "q4k_gemv:k=4096,n=128256,m=1,sm=100",  "q4k_gemv:k=4096,n=5,m=2,sm=90,rows=4,warps=16",
      "stream_read:n=1,sm=80",                "stream_read:n=1073741824,sm=90",
      "stream_read:n=1000,sm=100,pdl=1",
      "gelu:n=14336,m=1,sm=90",               "gelu_erf:n=777,m=3,sm=75",
      "q6k_gemv:k=256,n=1,m=1,sm=75",         "q6k_gemv:k=14336,n=4096,m=8,sm=90",
      "q4k_gemv:k=4096,n=14336,m=2,glu=swiglu", "q6k_gemv:k=512,n=7,m=8,sm=120,glu=geglu",
      "q4k_gemv:k=4096,n=4096,m=2,n2=1024,n3=1024", "q6k_gemv:k=2304,n=999,m=5,sm=80,n2=77",
      "q6k_gemv:k=2304,n=999,m=2,warps=16",
      "q4k_gemv:k=4096,n=4096,m=16,sm=90",    "q6k_gemv:k=14336,n=4096,m=16,sm=75",
      "q4k_gemv:k=65536,n=33,m=16,sm=120",    "q6k_gemv:k=4096,n=1001,m=11,sm=86,n2=77,n3=5",
      "q4k_gemv:k=4096,n=4096,m=8,n2=1024,rope=neox,head_dim=128", "q4k_gemv:k=4096,n=14336,m=8,glu=geglu",
      "q4k_gemv:k=4096,n=14336,m=8,tc=1,glu=swiglu", "q4k_gemv:k=256,n=7,m=1,sm=80,tc=1,glu=geglu",
      "q4k_gemv:k=4096,n=4096,m=8,tc=1,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000",
      "q4k_gemv:k=256,n=64,m=3,sm=80,tc=1,n2=32,rope=neox,head_dim=32,freq_factors=1,ext_factor=1,n_ctx_orig=4096",
      "swiglu:n=5,m=8,sm=120",                "silu:n=14336,m=16,sm=80",
      "rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=16,base=500000",                "rope:mode=neox,head_dim=128,heads=32,kv_heads=8,m=1,base=500000",
      "rope:mode=normal,head_dim=64,n_dims=32,heads=4,kv_heads=2,m=8,freq_factors=1,ext_factor=1,n_ctx_orig=4096",
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000",
      "q6k_gemv:k=2048,n=512,m=8,sm=80,rows=4,n2=128,rope=normal,head_dim=64,n_dims=32,freq_factors=1,"
      "ext_factor=1,n_ctx_orig=4096",
  };
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    ptxgen_spec s;
    ptxgen_kernel a, b;
    char msg[256], want[96];
    cr_assert_eq(ptxgen_spec_parse(keys[i], &s, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(ptxgen_emit(&s, &a, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(ptxgen_emit(&s, &b, msg, sizeof msg), 0, "%s", msg);
    cr_assert_eq(a.ptx_len, b.ptx_len);
    cr_assert_eq(a.ptx_len, strlen(a.ptx));
    cr_assert(memcmp(a.ptx, b.ptx, a.ptx_len) == 0, "%s: two emits differ", keys[i]);
    snprintf(want, sizeof want, ".entry %s(", a.entry);
    cr_assert(strstr(a.ptx, want), "%s: entry %s not in the PTX", keys[i], a.entry);
    snprintf(want, sizeof want, ".target sm_%u\n", s.sm);
    cr_assert(strstr(a.ptx, want), "%s: no %s", keys[i], want);
    snprintf(want, sizeof want, ".version %s\n", ptxgen_ptx_version(s.sm));
    cr_assert(strstr(a.ptx, want), "%s: no %s", keys[i], want);
    const ptxgen_geometry *g = &a.geometry;
    cr_assert(g->grid[0] >= 1 && g->grid[1] >= 1 && g->grid[1] <= PTXGEN_ROPE_MAX_M && g->grid[2] == 1);
    cr_assert(g->block[0] >= 32 && g->block[0] <= 1024 && g->block[0] % 32 == 0);
    cr_assert(g->shared_bytes <= 227u * 1024, "%s: %u bytes of shared memory", keys[i], g->shared_bytes);
    if (s.sm == 75) cr_assert(g->shared_bytes <= 64u * 1024);
    if (s.sm == 120) cr_assert(g->shared_bytes <= 99u * 1024);
    ptxgen_kernel_free(&a);
    ptxgen_kernel_free(&b);
    cr_assert_null(a.ptx);
  }
}

/* A GEMV's x (all m rows, or a tile of k) must fit the shared memory a
 * block can have on its target, for every batch size: the generator's
 * budget leaves room for the padding of the staged layout. */
Test(spec, gemv_shared_memory_fits_every_target_at_every_m) {
  static const ptxgen_kind kinds[] = {PTXGEN_KIND_Q4K_GEMV, PTXGEN_KIND_Q6K_GEMV};
  static const uint32_t ks[] = {256, 2304, 4096, 14336, 65536};
  for (size_t a = 0; a < 2; a++)
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
      const uint32_t sm = targets[t];
      /* the per-block opt-in maximum of each target */
      const uint32_t limit = sm == 75 ? 64u * 1024 : sm == 80 ? 163u * 1024 : sm == 90 || sm == 100 ? 227u * 1024
                                                                                                   : 99u * 1024;
      for (size_t i = 0; i < sizeof ks / sizeof *ks; i++)
        for (uint32_t m = 1; m <= PTXGEN_GEMV_MAX_M; m++) {
          ptxgen_spec s = {.kind = kinds[a], .sm = sm, .k = ks[i], .n = 3, .m = m};
          ptxgen_kernel k;
          char msg[256];
          cr_assert_eq(ptxgen_emit(&s, &k, msg, sizeof msg), 0, "%s", msg);
          cr_assert(k.geometry.shared_bytes <= limit, "%s sm=%u k=%u m=%u: %u bytes of shared memory, limit %u",
                    k.entry, sm, ks[i], m, k.geometry.shared_bytes, limit);
          ptxgen_kernel_free(&k);
        }
    }
}

/* The default rows per warp: 2, but 1 where two rows' partial sums would
 * exceed the registers (Q6_K past m = 8), and 1 with glu; 4 for a plain
 * Q4_K product of at least 4096 rows at m = 5, 6 or 8 (at m = 4 only from
 * 65536 rows, where the grid's cap of 1024 blocks hides it). Seen in the
 * grid: n rows in groups of rows x 8 warps. An explicit rows= wins. */
Test(spec, gemv_default_rows_follow_the_batch) {
  static const struct {
    const char *key;
    uint32_t grid;
  } cases[] = {
      {"q4k_gemv:k=4096,n=4096,m=8", 128},  {"q4k_gemv:k=4096,n=4096,m=16", 256},
      {"q4k_gemv:k=4096,n=4096,m=5", 128},  {"q4k_gemv:k=4096,n=4096,m=7", 256}, /* 4 rows spill at some k */
      {"q4k_gemv:k=4096,n=4096,m=4", 256},   {"q4k_gemv:k=4096,n=4096,m=8,sm=120", 256}, /* 4 rows spill */
      {"q4k_gemv:k=4096,n=1024,m=8", 64},   {"q4k_gemv:k=4096,n=4096,m=8,sm=80", 128},
      {"q4k_gemv:k=4096,n=4096,m=8,rows=2", 256}, {"q4k_gemv:k=4096,n=4096,m=6,n2=1024", 320},
      {"q6k_gemv:k=4096,n=4096,m=8", 256},  {"q6k_gemv:k=4096,n=4096,m=9", 512},
      {"q6k_gemv:k=4096,n=4096,m=16", 512}, {"q6k_gemv:k=4096,n=4096,m=16,rows=2", 256},
      {"q4k_gemv:k=4096,n=4096,m=8,glu=swiglu", 512},
      {"q6k_gemv:k=4096,n=4096,m=8,n2=1024,rope=neox,head_dim=128", 320}, /* rotation pairs: 2 rows */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ptxgen_kernel k;
    emit_key(cases[i].key, &k);
    cr_assert_eq(k.geometry.grid[0], cases[i].grid, "%s: grid %u, want %u", cases[i].key, k.geometry.grid[0],
                 cases[i].grid);
    ptxgen_kernel_free(&k);
  }
}

/* The copy engine's ring by default for Q4_K batches of 5 to 8 rows from
 * 3 x 2^23 weights (every weight's rows counted; at m = 4 from 65536 rows),
 * on targets that have it
 * (sm_90+), plain or multi-weight, not gated: seen as the ring's shared
 * memory beside x, against the same key with loads ahead (preload=3). */
Test(spec, gemv_ring_for_large_q4k_batches) {
  static const struct {
    const char *key;
    bool ring;
  } cases[] = {
      {"q4k_gemv:k=4096,n=6144,m=5,sm=90", true},   {"q4k_gemv:k=4096,n=14336,m=8,sm=90", true},
      {"q4k_gemv:k=4096,n=14336,m=7,sm=100", true}, {"q4k_gemv:k=4096,n=4096,m=6,sm=90,n2=1024,n3=1024", true},
      {"q4k_gemv:k=4096,n=6143,m=5,sm=90", false},  /* under 3 x 2^23 weights */
      {"q4k_gemv:k=4096,n=14336,m=4,sm=90", false}, {"q4k_gemv:k=4096,n=65536,m=4,sm=90", true},
      {"q4k_gemv:k=4096,n=14336,m=9,sm=90", false}, {"q4k_gemv:k=4096,n=65536,m=3,sm=90", false},
      {"q4k_gemv:k=4096,n=14336,m=8,sm=80", false}, /* no copy engine */
      {"q4k_gemv:k=4096,n=14336,m=8,sm=90,glu=swiglu", false},
      {"q4k_gemv:k=14336,n=4096,m=8,sm=90", false}, /* x in tiles */
      {"q6k_gemv:k=4096,n=14336,m=8,sm=90", false},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char loads_ahead[128];
    snprintf(loads_ahead, sizeof loads_ahead, "%s,preload=3", cases[i].key);
    const char *keys[2] = {cases[i].key, loads_ahead};
    uint32_t shared[2];
    for (int j = 0; j < 2; j++) {
      ptxgen_spec s;
      ptxgen_kernel k;
      char msg[256];
      cr_assert_eq(ptxgen_spec_parse(keys[j], &s, msg, sizeof msg), 0, "%s: %s", keys[j], msg);
      cr_assert_eq(ptxgen_emit(&s, &k, msg, sizeof msg), 0, "%s: %s", keys[j], msg);
      shared[j] = k.geometry.shared_bytes;
      ptxgen_kernel_free(&k);
    }
    cr_assert_eq(shared[0] > shared[1], cases[i].ring, "%s: %u bytes of shared memory, %u with preload=3: %s",
                 cases[i].key, shared[0], shared[1], cases[i].ring ? "want the ring" : "want no ring");
  }
}

/* Occurrences of `needle` in [from, to). */
static unsigned count_between(const char *from, const char *to, const char *needle) {
  unsigned n = 0;
  for (const char *at = strstr(from, needle); at && at < to; at = strstr(at + 1, needle)) n++;
  return n;
}

/* How much of the block's first row group goes out before the grid wait
 * (ptxgen/gemv.c, pre_wait_loads): at m <= 2, on a weight of 8 MiB or more,
 * the q/k/v and gated kernels hold back the last of their 4 loads per lane,
 * a plain product with at most 256 row groups half; the rest go out right
 * after the wait, before x is staged (its barrier). Weight loads counted as
 * instructions: 3 per Q4_K load, 5 per Q6_K one. */
Test(spec, gemv_first_loads_held_back_where_they_measured_faster) {
  static const struct {
    const char *key;
    unsigned before, after;
  } cases[] = {
      {"q4k_gemv:k=4096,n=4096,m=1,sm=90,n2=1024,n3=1024,rope=neox,head_dim=128,base=500000", 9, 3},
      {"q4k_gemv:k=4096,n=14336,m=1,sm=90,glu=swiglu", 9, 3},
      {"q4k_gemv:k=4096,n=14336,m=2,sm=90,glu=swiglu", 9, 3},
      {"q4k_gemv:k=4096,n=4096,m=1,sm=90", 6, 6},
      {"q6k_gemv:k=4096,n=4096,m=1,sm=90", 10, 10},
      {"q4k_gemv:k=4096,n=4096,m=3,sm=90", 12, 0},      /* past m = 2 */
      {"q4k_gemv:k=4096,n=14336,m=3,sm=90,glu=swiglu", 12, 0},
      {"q4k_gemv:k=4096,n=2048,m=2,sm=90", 12, 0},      /* 4.7 MB */
      {"q4k_gemv:k=4096,n=1024,m=1,sm=90,n2=512", 12, 0}, /* 3.5 MB over two weights */
      {"q4k_gemv:k=4096,n=14336,m=2,sm=90", 12, 0},     /* 896 row groups */
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ptxgen_kernel k;
    emit_key(cases[i].key, &k);
    const char *wait = strstr(k.ptx, "griddepcontrol.wait;");
    cr_assert(wait != NULL, "%s: no grid wait", cases[i].key);
    const char *staged = strstr(wait, "bar.sync 0;");
    cr_assert(staged != NULL, "%s: no barrier after staging x", cases[i].key);
    const unsigned before = count_between(k.ptx, wait, "ld.global.nc."),
                   after = count_between(wait, staged, "ld.global.nc.");
    cr_expect_eq(before, cases[i].before, "%s: %u weight loads before the wait, want %u", cases[i].key, before,
                 cases[i].before);
    cr_expect_eq(after, cases[i].after, "%s: %u weight loads between the wait and x staged, want %u",
                 cases[i].key, after, cases[i].after);
    ptxgen_kernel_free(&k);
  }
}

/* The copy engine's ring refills a stage only after the arithmetic on it,
 * which has used every word loaded from it (gemv_ring_rounds says why):
 * in every round the refill comes after the round's first fma. */
Test(spec, gemv_ring_refills_after_the_arithmetic) {
  static const char *const keys[] = {
      "q4k_gemv:k=14336,n=4096,m=1,sm=90",  "q6k_gemv:k=14336,n=4096,m=1,sm=90",
      "q4k_gemv:k=4096,n=128256,m=1,sm=90", "q6k_gemv:k=14336,n=4096,m=1,sm=100",
      "q4k_gemv:k=4096,n=14336,m=8,sm=90",  /* a batch of 8 on the ring */
      "q4k_gemv:k=2304,n=10923,m=7,sm=90",  /* a short last round */
      "q4k_gemv:k=4096,n=14336,m=1,sm=90,glu=swiglu,preload=4",
  };
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    ptxgen_kernel k;
    emit_key(keys[i], &k);
    const char *round = strstr(k.ptx, "_round:");
    cr_assert(round != NULL, "%s: no ring rounds", keys[i]);
    const char *refill = strstr(round, "cp.async.bulk"), *fma = strstr(round, "fma.rn.f32");
    cr_assert(refill != NULL && fma != NULL, "%s: a round without a refill or arithmetic", keys[i]);
    cr_expect(fma < refill, "%s: the stage is refilled before the arithmetic on it", keys[i]);
    ptxgen_kernel_free(&k);
  }
}

/* idp=1 keys: the option stays in the canonical key, the kernel has its own
 * entry, and its arithmetic is integer (dp4a, both plane signednesses),
 * with the row sums in fp64, rounded to fp32 once; the default kernel of the
 * same shape has none of that. */
Test(spec, idp_kernels_take_integer_dot_products) {
  static const char *const keys[] = {"q4k_gemv:k=4096,n=4096,m=1,sm=90,idp=1",
                                     "q4k_gemv:k=14336,n=4096,m=1,sm=90,idp=1", /* the ring */
                                     "q4k_gemv:k=14336,n=45,m=8,sm=86,idp=1",   /* x in tiles */
                                     "q4k_gemv:k=4096,n=14336,m=2,sm=75,glu=swiglu,idp=1"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    ptxgen_spec s;
    char msg[256], key[160];
    cr_assert_eq(ptxgen_spec_parse(keys[i], &s, msg, sizeof msg), 0, "%s: %s", keys[i], msg);
    cr_assert_eq(s.idp, 1u);
    cr_assert_gt(ptxgen_spec_format(&s, key, sizeof key), 0);
    cr_assert(strstr(key, ",idp=1") != NULL, "%s formats as %s", keys[i], key);
    ptxgen_kernel k;
    emit_key(keys[i], &k);
    cr_assert(strncmp(k.entry, "q4k_gemv_idp_", 13) == 0, "%s: entry %s", keys[i], k.entry);
    cr_assert(strstr(k.ptx, "dp4a.u32.s32") && strstr(k.ptx, "dp4a.u32.u32"), "%s: no dp4a", keys[i]);
    cr_assert(strstr(k.ptx, "fma.rn.f64") && strstr(k.ptx, "cvt.rn.f32.f64"), "%s: no fp64 sums", keys[i]);
    ptxgen_kernel_free(&k);
    s.idp = 0;
    cr_assert_eq(ptxgen_emit(&s, &k, msg, sizeof msg), 0, "%s", msg);
    cr_assert(strstr(k.ptx, "dp4a") == NULL && strstr(k.ptx, ".f64") == NULL, "%s without idp: integer arithmetic",
              keys[i]);
    ptxgen_kernel_free(&k);
  }
}

/* idp=1 on the integer tensor cores: the generator's choice from m = 4
 * where x fits (sm_80+), and mma=2 elsewhere; mma= stays in the canonical
 * key; the kernel has its own entry and mma.sync m16n8k32 on u8 by s8
 * (plane 0) and u8 by u8 (planes 1, 2), fp64 sums; mma=1 gives the dp4a
 * kernel. (Its bits equal the dp4a kernel's: test_gpu.) */
Test(spec, idp_on_the_integer_tensor_cores) {
  static const struct { const char *key; int mma; } cases[] = {
      {"q4k_gemv:k=4096,n=4096,m=8,sm=90,idp=1", 1},       {"q4k_gemv:k=4096,n=4096,m=8,sm=80,idp=1", 1},
      {"q4k_gemv:k=4096,n=4096,m=8,sm=86,idp=1", 0},       {"q4k_gemv:k=4096,n=4096,m=4,sm=90,idp=1", 1},
      {"q4k_gemv:k=14336,n=4096,m=8,sm=90,idp=1", 1},      {"q4k_gemv:k=2304,n=999,m=3,sm=90,idp=1,mma=2", 1},
      {"q4k_gemv:k=14336,n=4096,m=8,sm=80,idp=1", 0},     {"q4k_gemv:k=4096,n=4096,m=3,sm=90,idp=1", 0},
      {"q4k_gemv:k=4096,n=4096,m=8,sm=90,idp=1,mma=1", 0}, {"q4k_gemv:k=256,n=5,m=1,sm=120,idp=1,mma=2", 1}};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ptxgen_spec s;
    char msg[256], key[160];
    cr_assert_eq(ptxgen_spec_parse(cases[i].key, &s, msg, sizeof msg), 0, "%s: %s", cases[i].key, msg);
    cr_assert_gt(ptxgen_spec_format(&s, key, sizeof key), 0);
    const char *mma = strstr(cases[i].key, ",mma=");
    cr_assert(mma == NULL || strstr(key, mma) != NULL, "%s formats as %s", cases[i].key, key);
    ptxgen_kernel k;
    emit_key(cases[i].key, &k);
    const int on_mma = strncmp(k.entry, "q4k_gemv_idp_mma_", 17) == 0;
    cr_assert_eq(on_mma, cases[i].mma, "%s: entry %s", cases[i].key, k.entry);
    if (on_mma) {
      cr_assert(strstr(k.ptx, "mma.sync.aligned.m16n8k32.row.col.s32.u8.s8.s32") &&
                    strstr(k.ptx, "mma.sync.aligned.m16n8k32.row.col.s32.u8.u8.s32"),
                "%s: no integer mma", cases[i].key);
      cr_assert(strstr(k.ptx, "dp4a.") == NULL, "%s: dp4a on the tensor cores", cases[i].key);
    } else {
      cr_assert(strstr(k.ptx, "dp4a.u32.s32") != NULL, "%s: no dp4a", cases[i].key);
    }
    cr_assert(strstr(k.ptx, "fma.rn.f64") && strstr(k.ptx, "cvt.rn.f32.f64"), "%s: no fp64 sums", cases[i].key);
    ptxgen_kernel_free(&k);
  }
}

/* ptxgen_gemv_idp_mma (the runtime's question for ptxq_ffn) says what the
 * emitted entry shows, and false for what has no such kernel. */
Test(spec, idp_mma_query_matches_the_kernel) {
  static const char *const keys[] = {"q4k_gemv:k=4096,n=4096,m=8,sm=90,idp=1",
                                     "q4k_gemv:k=4096,n=4096,m=3,sm=90,idp=1",
                                     "q4k_gemv:k=4096,n=14336,m=5,sm=90,glu=swiglu,idp=1",
                                     "q4k_gemv:k=4096,n=4096,n2=1024,n3=1024,m=6,sm=90,idp=1",
                                     "q4k_gemv:k=4096,n=4096,m=8,sm=90,idp=1,mma=1",
                                     "q4k_gemv:k=4096,n=4096,m=8,sm=90",
                                     "q6k_gemv:k=4096,n=4096,m=8,sm=90"};
  for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
    ptxgen_spec s;
    cr_assert_eq(ptxgen_spec_parse(keys[i], &s, NULL, 0), 0, "%s", keys[i]);
    ptxgen_kernel k;
    emit_key(keys[i], &k);
    const bool on_mma = strncmp(k.entry, "q4k_gemv_idp_mma_", 17) == 0;
    cr_assert_eq(ptxgen_gemv_idp_mma(&s), on_mma, "%s: entry %s", keys[i], k.entry);
    ptxgen_kernel_free(&k);
  }
  ptxgen_spec bad = {.kind = PTXGEN_KIND_Q4K_GEMV, .k = 300, .n = 1, .m = 8, .sm = 90, .idp = 1};
  cr_assert(!ptxgen_gemv_idp_mma(&bad), "an invalid spec (k = 300) is not on the tensor cores");
}

/* Batches past 8 rows run as launches of 8 only where the larger batch
 * costs the kernel more per row (x in tiles, or one row per warp) on a
 * large product; everything else, and every invalid spec, as asked. */
Test(spec, gemv_batch_rows_split_only_costlier_large_batches) {
  static const struct {
    const char *key;
    uint32_t rows;
  } cases[] = {
      {"q4k_gemv:k=4096,n=14336,m=16", 8},     /* x in tiles past 12 rows at k = 4096 */
      {"q4k_gemv:k=4096,n=128256,m=13", 8},    {"q4k_gemv:k=4096,n=14336,m=12", 12}, /* x fits */
      {"q4k_gemv:k=4096,n=4096,m=16", 16},     /* under 3 * 2^23 weights */
      {"q4k_gemv:k=4096,n=6144,m=16", 8},
      {"q4k_gemv:k=14336,n=4096,m=16", 16},    /* x in tiles at 8 rows too */
      {"q6k_gemv:k=4096,n=4096,m=9", 8},       /* one row per warp past 8 */
      {"q6k_gemv:k=14336,n=4096,m=16", 8},     {"q6k_gemv:k=2048,n=2048,m=16", 16}, /* under 2^24 */
      {"q4k_gemv:k=4096,n=14336,m=8", 8},      {"q6k_gemv:k=4096,n=4096,m=3", 3},
      {"q4k_gemv:k=4096,n=14336,m=16,tc=1", 16}, {"q4k_gemv:k=4096,n=14336,m=16,rows=2", 16},
      {"q4k_gemv:k=4096,n=14336,m=16,preload=2", 16}, {"q6k_gemv:k=4096,n=4096,m=16,n2=1024", 8}, /* several weights: their rows together */
      {"q4k_gemv:k=4096,n=4096,m=16,n2=1024,n3=1024", 8}, {"q4k_gemv:k=4096,n=4096,m=16,n2=1024", 16},
      {"q4k_gemv:k=8192,n=8192,m=16,n2=1024,n3=1024", 16}, /* x in tiles at 8 rows too */
      {"q4k_gemv:k=4096,n=14336,m=8,glu=swiglu", 8}, {"gelu:n=14336,m=16", 16},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    ptxgen_spec s;
    char msg[256];
    cr_assert_eq(ptxgen_spec_parse(cases[i].key, &s, msg, sizeof msg), 0, "%s: %s", cases[i].key, msg);
    cr_assert_eq(ptxgen_gemv_batch_rows(&s), cases[i].rows, "%s: %u rows per launch, want %u", cases[i].key,
                 ptxgen_gemv_batch_rows(&s), cases[i].rows);
  }
  ptxgen_spec bad;
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=14336,m=16", &bad, NULL, 0), 0);
  bad.m = 17;
  cr_assert_eq(ptxgen_gemv_batch_rows(&bad), 0, "an invalid spec gives 0");
}

Test(spec, different_keys_give_different_entries) {
  ptxgen_spec s1, s2;
  ptxgen_kernel a, b;
  char msg[256];
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=4096,m=1", &s1, msg, sizeof msg), 0);
  cr_assert_eq(ptxgen_spec_parse("q4k_gemv:k=4096,n=4096,m=2", &s2, msg, sizeof msg), 0);
  cr_assert_eq(ptxgen_emit(&s1, &a, msg, sizeof msg), 0);
  cr_assert_eq(ptxgen_emit(&s2, &b, msg, sizeof msg), 0);
  cr_assert_str_neq(a.entry, b.entry);
  ptxgen_kernel_free(&a);
  ptxgen_kernel_free(&b);
}

/* The same weights with and without RoPE, in either mode, or with another
 * head shape are different kernels with different entries. */
Test(spec, rope_gemv_keys_give_different_entries) {
  static const char *const keys[] = {
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024",
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rope=neox,head_dim=128",
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rope=normal,head_dim=128",
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rope=neox,head_dim=64",
      "q4k_gemv:k=4096,n=4096,m=1,n2=1024,n3=1024,rope=neox,head_dim=128,n_dims=64",
  };
  enum { COUNT = sizeof keys / sizeof *keys };
  char entries[COUNT][64];
  for (size_t i = 0; i < COUNT; i++) {
    ptxgen_spec s;
    ptxgen_kernel k;
    char msg[256];
    cr_assert_eq(ptxgen_spec_parse(keys[i], &s, msg, sizeof msg), 0, "%s: %s", keys[i], msg);
    cr_assert_eq(ptxgen_emit(&s, &k, msg, sizeof msg), 0, "%s: %s", keys[i], msg);
    snprintf(entries[i], sizeof entries[i], "%s", k.entry);
    ptxgen_kernel_free(&k);
    for (size_t j = 0; j < i; j++)
      cr_assert_str_neq(entries[i], entries[j], "%s and %s share the entry %s", keys[i], keys[j], entries[i]);
  }
}
