/*
 * Low-bit GGUF types (lib/quant/iquants.c, tquants.c): golden hashes of the codes (equal
 * to ggml's quantize_* output when written: tests/reference/ggml_lowbit_check.c prints
 * both), hand-built blocks that pin each layout against its description, round-trip error
 * bounds, importance weighting, and the llama.cpp mix / fallback rules of these types.
 */
#include "test.h"
#include "lib/core/blocks.h"
#include "lib/quant/quant.h"

#include <math.h>

static const uint64_t SEED = 1234;

/* Same data as test_kquants.c and tests/reference/ggml_lowbit_check.c (keep identical). */
static void fill(float *x, int64_t n, float *qw, int64_t cols, uint64_t seed)
{
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((int)(lmp_rng_next(&r) % 20001) - 10000) / 2500.f * (i % 7 == 0 ? 4.f : 1.f);
    for (int64_t j = 0; qw && j < cols; j++)
        qw[j] = 0.1f + (float)(lmp_rng_next(&r) % 1000) / 100.f;
}

/* FNV-1a of the codes for fill(SEED), 8 rows x 512, without (w = 0) and with (w = 1)
 * importance weights; each equal to ggml's quantize_<type> (libggml-base of llama.cpp
 * d32676d, 2026-08) as printed by tests/reference/ggml_lowbit_check.c. */
static const struct { lmp_dtype t; int w; uint64_t h; } GOLDEN[] = {
    {LMP_DT_IQ4_NL, 0, 0x24660446a6fdcd56ULL}, {LMP_DT_IQ4_NL, 1, 0x850a6041a5cb834aULL},
    {LMP_DT_IQ4_XS, 0, 0x72019cceb96c5236ULL}, {LMP_DT_IQ4_XS, 1, 0x28e6e69a5e863180ULL},
    {LMP_DT_MXFP4, 0, 0x1a4a5f6a9c2bca23ULL},  {LMP_DT_MXFP4, 1, 0x1a4a5f6a9c2bca23ULL},
    {LMP_DT_TQ1_0, 0, 0x13d3edb10ec4ac86ULL},  {LMP_DT_TQ1_0, 1, 0x13d3edb10ec4ac86ULL},
    {LMP_DT_TQ2_0, 0, 0xcdf52cd0f902f153ULL},  {LMP_DT_TQ2_0, 1, 0xcdf52cd0f902f153ULL},
    {LMP_DT_Q1_0, 0, 0xb84c8e141c1e0814ULL},   {LMP_DT_Q1_0, 1, 0xb84c8e141c1e0814ULL},
    {LMP_DT_Q2_0, 0, 0x993571969cba9f78ULL},   {LMP_DT_Q2_0, 1, 0x993571969cba9f78ULL},
    {LMP_DT_IQ3_XXS, 0, 0xa7ab7aeec98124bdULL}, {LMP_DT_IQ3_XXS, 1, 0x657f9f437621b285ULL},
    {LMP_DT_IQ3_S, 0, 0xa6a4b604c1adf158ULL},  {LMP_DT_IQ3_S, 1, 0x030c9437b14e53f8ULL},
    {LMP_DT_IQ2_XXS, 1, 0x647323287321f5fdULL}, {LMP_DT_IQ2_XS, 1, 0xe60509cfed241ee2ULL},
    {LMP_DT_IQ2_S, 0, 0xdbef60366ef0d9b2ULL},  {LMP_DT_IQ2_S, 1, 0x675ee53af08218a8ULL},
    {LMP_DT_IQ1_S, 1, 0xa3da9508d62344f0ULL},  {LMP_DT_IQ1_M, 0, 0xd9e8d78c85e4f36cULL},
    {LMP_DT_IQ1_M, 1, 0xc20096e81ae31879ULL},
};

/* Same blocks as tests/reference/ggml_lowbit_check.c's random_blocks (keep identical):
 * seeded random bytes, the f16 scale (first two bytes) set finite in [0.5, 1). */
static void random_blocks(lmp_dtype t, int nb, uint64_t seed, uint8_t *buf)
{
    const size_t bs = lmp_dtype_info(t)->type_size;
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (size_t i = 0; i < bs * (size_t)nb; i++)
        buf[i] = (uint8_t)(lmp_rng_next(&r) >> 24);
    for (int b = 0; b < nb; b++) {
        uint16_t d = (uint16_t)(0x3800 + (b * 37 % 0x800));
        if (t == LMP_DT_IQ1_M) { /* the f16 scale is the top nibbles of the 4 scale words */
            uint8_t *sc = buf + bs * (size_t)b + 48;
            for (int k = 0; k < 4; k++)
                sc[2 * k + 1] = (uint8_t)((sc[2 * k + 1] & 0x0f) | (((d >> 4 * k) & 0xf) << 4));
        } else
            memcpy(buf + bs * (size_t)b, &d, 2);
    }
}

/* The codebooks (lib/core/iq_grids.c) against llama.cpp: 1024 random blocks reach every
 * grid point (and sign pattern, scale code); the hash is of ggml's own dequantization of
 * the same bytes (dequantize_row_<type>, printed by ggml_lowbit_check.c). */
static const struct { lmp_dtype t; uint64_t h; } CODEBOOK[] = {
    {LMP_DT_IQ3_XXS, 0x2c4f2651f00c6de8ULL},
    {LMP_DT_IQ3_S, 0x0cd6daf9086885feULL},
    {LMP_DT_IQ2_XXS, 0x8a5c75dab76137f7ULL},
    {LMP_DT_IQ2_XS, 0xce346e2aec55c6a9ULL},
    {LMP_DT_IQ2_S, 0xdd18cb5179f43a60ULL},
    {LMP_DT_IQ1_S, 0xda47ba9ba0037fe4ULL},
    {LMP_DT_IQ1_M, 0xb2b1ea86452eed44ULL},
};

static void test_codebooks(void)
{
    enum { NBLK = 1024 };
    for (size_t k = 0; k < sizeof CODEBOOK / sizeof CODEBOOK[0]; k++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(CODEBOOK[k].t);
        uint8_t *blk = malloc(tr->type_size * NBLK);
        float *y = malloc(sizeof(float) * 256 * NBLK);
        random_blocks(CODEBOOK[k].t, NBLK, 77, blk);
        tr->to_f32(blk, y, 256 * NBLK);
        uint64_t h = lmp_fnv1a(LMP_FNV_INIT, y, sizeof(float) * 256 * NBLK);
        CHECK(h == CODEBOOK[k].h, "%s: dequantized codebook hash %016llx, llama.cpp's %016llx", tr->name,
              (unsigned long long)h, (unsigned long long)CODEBOOK[k].h);
        free(blk), free(y);
    }
}

static void test_golden(void)
{
    enum { R = 8, C = 512 };
    static float x[R * C], qw[C];
    static uint8_t a[8 * R * C], b[8 * R * C];
    fill(x, R * C, qw, C, SEED);
    for (size_t k = 0; k < sizeof GOLDEN / sizeof GOLDEN[0]; k++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(GOLDEN[k].t);
        CHECK(tr->to_f32 && tr->from_f32, "%s registered", tr->name);
        size_t n = lmp_quant_rows(GOLDEN[k].t, x, a, R, C, GOLDEN[k].w ? qw : NULL);
        CHECK(n == lmp_dtype_row_bytes(GOLDEN[k].t, C) * R, "%s: %zu bytes", tr->name, n);
        uint64_t h = lmp_fnv1a(LMP_FNV_INIT, a, n);
        CHECK(h == GOLDEN[k].h, "%s%s: codes hash %016llx, golden (ggml) %016llx", tr->name,
              GOLDEN[k].w ? " (weighted)" : "", (unsigned long long)h, (unsigned long long)GOLDEN[k].h);
        if (!GOLDEN[k].w) {
            memset(b, 0, n);
            tr->from_f32(x, b, (int64_t)R * C);
            CHECK(memcmp(a, b, n) == 0, "%s: lmp_quant_rows and from_f32 differ", tr->name);
        }
        /* row at a time = all rows (the parallel driver relies on it) */
        size_t rb = lmp_dtype_row_bytes(GOLDEN[k].t, C);
        for (int r = 0; r < R; r++)
            lmp_quant_rows(GOLDEN[k].t, x + r * C, b + r * rb, 1, C, GOLDEN[k].w ? qw : NULL);
        CHECK(memcmp(a, b, n) == 0, "%s: per-row and whole-matrix quantization differ", tr->name);
    }
    CHECK(lmp_dtype_from_ggml(20) == LMP_DT_IQ4_NL && lmp_dtype_from_ggml(23) == LMP_DT_IQ4_XS &&
              lmp_dtype_from_ggml(39) == LMP_DT_MXFP4 && lmp_dtype_from_ggml(34) == LMP_DT_TQ1_0 &&
              lmp_dtype_from_ggml(35) == LMP_DT_TQ2_0 && lmp_dtype_from_ggml(41) == LMP_DT_Q1_0 &&
              lmp_dtype_from_ggml(42) == LMP_DT_Q2_0,
          "ggml type ids (ggml.h)");
    CHECK(lmp_dtype_row_bytes(LMP_DT_IQ4_XS, 512) == 272 && lmp_dtype_row_bytes(LMP_DT_IQ4_NL, 64) == 36 &&
              lmp_dtype_row_bytes(LMP_DT_MXFP4, 64) == 34 && lmp_dtype_row_bytes(LMP_DT_TQ1_0, 256) == 54 &&
              lmp_dtype_row_bytes(LMP_DT_TQ2_0, 256) == 66 && lmp_dtype_row_bytes(LMP_DT_Q1_0, 128) == 18 &&
              lmp_dtype_row_bytes(LMP_DT_Q2_0, 128) == 36,
          "row bytes");
}

/* ---------------------------------------------------------------- hand-built blocks */

static const int8_t NL[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

static void test_layouts(void)
{
    float y[256], want[256];
    /* IQ4_NL: value j (j < 16) is the low nibble of byte j, value j + 16 the high one */
    lmp_block_iq4_nl nl = {.d = 0x3800 /* 0.5 */};
    for (int j = 0; j < 16; j++)
        nl.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    lmp_dtype_info(LMP_DT_IQ4_NL)->to_f32(&nl, y, 32);
    for (int j = 0; j < 16; j++)
        want[j] = 0.5f * NL[j], want[j + 16] = 0.5f * NL[15 - j];
    CHECK(memcmp(y, want, 32 * 4) == 0, "iq4_nl layout");
    /* IQ4_XS: sub-block ib has the 6-bit scale (scales_l nibble ib%2 of byte ib/2) |
     * (bits 2ib..2ib+1 of scales_h) << 4, minus 32 */
    lmp_block_iq4_xs xs = {.d = 0x3c00};
    int ls[8] = {0, 63, 32, 31, 33, 1, 62, 40};
    for (int ib = 0; ib < 8; ib++) {
        xs.scales_l[ib / 2] |= (uint8_t)((ls[ib] & 15) << 4 * (ib % 2));
        xs.scales_h |= (uint16_t)((ls[ib] >> 4) << 2 * ib);
    }
    for (int j = 0; j < 128; j++)
        xs.qs[j] = (uint8_t)((j % 16) | ((j / 16 + 3) % 16) << 4);
    lmp_dtype_info(LMP_DT_IQ4_XS)->to_f32(&xs, y, 256);
    for (int ib = 0; ib < 8; ib++)
        for (int j = 0; j < 16; j++) {
            uint8_t q = xs.qs[16 * ib + j];
            want[32 * ib + j] = (float)(ls[ib] - 32) * NL[q & 15];
            want[32 * ib + j + 16] = (float)(ls[ib] - 32) * NL[q >> 4];
        }
    CHECK(memcmp(y, want, 256 * 4) == 0, "iq4_xs layout");
    /* MXFP4: e = 127 + k means 2^k; codes are E2M1 (sign, 2 exponent bits, 1 mantissa) */
    static const float e2m1[8] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6};
    lmp_block_mxfp4 mx = {.e = 127 + 2};
    for (int j = 0; j < 16; j++)
        mx.qs[j] = (uint8_t)(j | ((15 - j) << 4));
    lmp_dtype_info(LMP_DT_MXFP4)->to_f32(&mx, y, 32);
    for (int j = 0; j < 16; j++) {
        want[j] = (j & 8 ? -1.f : 1.f) * e2m1[j & 7] * 4 + 0.0f; /* +0 for a -0 code */
        want[j + 16] = ((15 - j) & 8 ? -1.f : 1.f) * e2m1[(15 - j) & 7] * 4 + 0.0f;
    }
    CHECK(memcmp(y, want, 32 * 4) == 0, "mxfp4 layout (E2M1 under E8M0)");
    /* TQ2_0: value 32 t + m of each 128 is bits 2t of byte m (+32 for the second half) */
    lmp_block_tq2_0 t2 = {.d = 0x3c00};
    for (int j = 0; j < 64; j++)
        t2.qs[j] = (uint8_t)(j * 37 + 11);
    lmp_dtype_info(LMP_DT_TQ2_0)->to_f32(&t2, y, 256);
    for (int k = 0; k < 256; k++) {
        int g = k / 128, t = (k % 128) / 32, m = k % 32;
        want[k] = (float)(((t2.qs[32 * g + m] >> 2 * t) & 3) - 1);
    }
    CHECK(memcmp(y, want, 256 * 4) == 0, "tq2_0 layout");
    /* TQ1_0: trits written by value, then checked decoded from the base-3 description */
    float tern[256];
    lmp_rng r;
    lmp_rng_seed(&r, SEED);
    for (int k = 0; k < 256; k++)
        tern[k] = (float)((int)(lmp_rng_next(&r) % 3) - 1) * 0.25f;
    tern[5] = 0.25f; /* absmax 0.25 */
    lmp_block_tq1_0 t1;
    lmp_dtype_info(LMP_DT_TQ1_0)->from_f32(tern, &t1, 256);
    lmp_dtype_info(LMP_DT_TQ1_0)->to_f32(&t1, y, 256);
    CHECK(memcmp(y, tern, 256 * 4) == 0, "tq1_0: ternary values come back exactly");
    /* byte m of qs[0..32) holds values m, m+32, ..., m+128 as ceil(256 * sum t_n 3^(4-n) / 243) */
    int bad = 0;
    for (int m = 0; m < 32; m++) {
        int v = 0;
        for (int n = 0; n < 5; n++)
            v = v * 3 + (int)(tern[m + 32 * n] * 4) + 1;
        bad += t1.qs[m] != (v * 256 + 242) / 243;
    }
    for (int j = 0; j < 4; j++) {
        int v = 0;
        for (int n = 0; n < 4; n++)
            v = v * 3 + (int)(tern[240 + j + 4 * n] * 4) + 1;
        bad += t1.qh[j] != (v * 3 * 256 + 242) / 243;
    }
    CHECK(bad == 0 && t1.d == 0x3400, "tq1_0 base-3 packing (%d bytes off)", bad);
    /* Q1_0: bit j of the 128 is the sign, d the mean |x| */
    float s1[128];
    for (int j = 0; j < 128; j++)
        s1[j] = j % 3 ? 0.5f : -1.5f;
    lmp_block_q1_0 q1;
    lmp_dtype_info(LMP_DT_Q1_0)->from_f32(s1, &q1, 128);
    float d1 = lmp_f16_to_f32(q1.d);
    lmp_dtype_info(LMP_DT_Q1_0)->to_f32(&q1, y, 128);
    bad = 0;
    for (int j = 0; j < 128; j++)
        bad += y[j] != (j % 3 ? d1 : -d1) || ((q1.qs[j / 8] >> (j % 8)) & 1) != (j % 3 != 0);
    CHECK(bad == 0 && fabsf(d1 - (43 * 1.5f + 85 * 0.5f) / 128) < 1e-3f, "q1_0 layout (%d off, d %g)", bad, d1);
    /* Q2_0: code j at bits 2(j%4) of byte j/4, value (q - 1) d */
    lmp_block_q2_0 q2 = {.d = 0x3c00};
    for (int j = 0; j < 16; j++)
        q2.qs[j] = (uint8_t)(j * 29 + 7);
    lmp_dtype_info(LMP_DT_Q2_0)->to_f32(&q2, y, 64);
    for (int j = 0; j < 64; j++)
        want[j] = (float)(((q2.qs[j / 4] >> 2 * (j % 4)) & 3) - 1);
    CHECK(memcmp(y, want, 64 * 4) == 0, "q2_0 layout");
}

/* ---------------------------------------------------------------- error, weights */

static void test_roundtrip_and_weights(void)
{
    enum { R = 16, C = 1024 };
    static const struct { lmp_dtype t; double bound; } B[] = {
        {LMP_DT_IQ4_NL, 0.085}, {LMP_DT_IQ4_XS, 0.085}, {LMP_DT_MXFP4, 0.16},
        {LMP_DT_IQ3_S, 0.20},   {LMP_DT_IQ3_XXS, 0.24}, {LMP_DT_IQ2_S, 0.30},  {LMP_DT_IQ2_XS, 0.34},
        {LMP_DT_IQ2_XXS, 0.40}, {LMP_DT_IQ1_M, 0.60},  {LMP_DT_IQ1_S, 0.62}, {LMP_DT_TQ2_0, 0.85},   {LMP_DT_TQ1_0, 0.85},   {LMP_DT_Q2_0, 0.75}, {LMP_DT_Q1_0, 0.62},
    };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C), qw[C];
    void *q = malloc(8 * R * C);
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 3);
    for (int i = 0; i < R * C; i++)
        x[i] = lmp_rng_normal(&r);
    for (int j = 0; j < C; j++)
        qw[j] = j % 16 == 3 ? 50.f : 0.2f;
    for (size_t k = 0; k < sizeof B / sizeof B[0]; k++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(B[k].t);
        lmp_quant_rows(B[k].t, x, q, R, C, NULL);
        tr->to_f32(q, y, R * C);
        double e = 0, n2 = 0;
        for (int i = 0; i < R * C; i++)
            e += ((double)x[i] - y[i]) * ((double)x[i] - y[i]), n2 += (double)x[i] * x[i];
        printf("  %-6s rel RMS %.4f (bound %.3f)\n", tr->name, sqrt(e / n2), B[k].bound);
        CHECK(sqrt(e / n2) < B[k].bound, "%s: rel RMS %.4f", tr->name, sqrt(e / n2));
        float z[1024] = {0};
        lmp_quant_rows(B[k].t, z, q, 1, C, NULL);
        tr->to_f32(q, y, C);
        int nz = 0;
        for (int j = 0; j < C; j++)
            nz += y[j] != 0;
        CHECK(nz == 0, "%s: a zero row dequantizes to %d non-zeros", tr->name, nz);
    }
    const lmp_dtype wt[] = {LMP_DT_IQ4_NL, LMP_DT_IQ4_XS, LMP_DT_IQ3_S, LMP_DT_IQ3_XXS, LMP_DT_IQ2_S,
                            LMP_DT_IQ2_XS, LMP_DT_IQ2_XXS, LMP_DT_IQ1_M, LMP_DT_IQ1_S};
    for (size_t k = 0; k < sizeof wt / sizeof wt[0]; k++) {
        double werr[2];
        CHECK(lmp_quant_uses_weights(wt[k]), "%s uses weights", lmp_dtype_info(wt[k])->name);
        for (int w = 0; w < 2; w++) {
            lmp_quant_rows(wt[k], x, q, R, C, w ? qw : NULL);
            lmp_dtype_info(wt[k])->to_f32(q, y, R * C);
            werr[w] = 0;
            for (int i = 0; i < R * C; i++)
                werr[w] += qw[i % C] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        }
        printf("  %-6s weighted error: unweighted %.2f, weighted %.2f\n", lmp_dtype_info(wt[k])->name, werr[0],
               werr[1]);
        CHECK(werr[1] < 0.8 * werr[0], "%s: weights did not lower the weighted error", lmp_dtype_info(wt[k])->name);
    }
    CHECK(!lmp_quant_uses_weights(LMP_DT_MXFP4) && !lmp_quant_uses_weights(LMP_DT_TQ1_0) &&
              !lmp_quant_uses_weights(LMP_DT_Q1_0),
          "mxfp4 / tq / q1_0 ignore weights, as ggml");
    free(x), free(y), free(q);
}

/* ---------------------------------------------------------------- mixes, fallbacks */

static int mix(const char *type, const lmp_gguf_mix_info *mi, const char *name, int64_t rows, int64_t cols)
{
    int64_t sh[2] = {rows, cols};
    return lmp_gguf_mix_type(lmp_gguf_qtype_find(type), mi, name, 2, sh);
}

/* llama.cpp's llama_tensor_get_type_impl for the low-bit ftypes (dense models); the
 * whole-file comparisons with llama-quantize are in tests/cli/test_lowbit.sh. */
static void test_mixes(void)
{
    static const struct { const char *n; int ft; lmp_dtype dt; } FT[] = {
        {"iq4_nl", 25, LMP_DT_IQ4_NL}, {"iq4_xs", 30, LMP_DT_IQ4_XS}, {"iq3_s", 26, LMP_DT_IQ3_S},
        {"iq3_m", 27, LMP_DT_IQ3_S},   {"iq3_xs", 22, LMP_DT_IQ3_S},  {"iq3_xxs", 23, LMP_DT_IQ3_XXS},
        {"iq2_m", 29, LMP_DT_IQ2_S},   {"iq2_s", 28, LMP_DT_IQ2_XS},  {"iq2_xs", 20, LMP_DT_IQ2_XS},
        {"iq2_xxs", 19, LMP_DT_IQ2_XXS}, {"iq1_m", 31, LMP_DT_IQ1_M}, {"iq1_s", 24, LMP_DT_IQ1_S},
        {"tq1_0", 36, LMP_DT_TQ1_0},   {"tq2_0", 37, LMP_DT_TQ2_0},   {"q1_0", 40, LMP_DT_Q1_0},
        {"q2_0", 41, LMP_DT_Q2_0},     {"mxfp4_moe", 38, LMP_DT_MXFP4},
    };
    for (size_t i = 0; i < sizeof FT / sizeof FT[0]; i++) {
        const lmp_gguf_qtype *q = lmp_gguf_qtype_find(FT[i].n);
        CHECK(q && q->ftype == FT[i].ft && q->dtype == FT[i].dt, "--type %s: ftype %d, default %s", FT[i].n,
              q ? q->ftype : -1, q ? lmp_dtype_info(q->dtype)->name : "?");
    }
    lmp_gguf_mix_info gqa8 = {.n_layers = 16, .n_head = 32, .n_head_kv = 4, .n_attn_v = 16, .tied = false};
    lmp_gguf_mix_info mha = {.n_layers = 16, .n_head = 8, .n_head_kv = 8, .n_attn_v = 16, .tied = false};
    lmp_gguf_mix_info mha_im = mha;
    mha_im.has_imatrix = true;
    struct { const char *ty; const lmp_gguf_mix_info *mi; const char *name; lmp_dtype want; } R[] = {
        {"iq4_xs", &gqa8, "blk.3.attn_v.weight", LMP_DT_Q5_K},
        {"iq4_xs", &mha, "blk.3.attn_v.weight", LMP_DT_IQ4_XS},
        {"iq4_nl", &mha, "blk.1.ffn_down.weight", LMP_DT_Q5_K},    /* first eighth, no imatrix */
        {"iq4_nl", &mha_im, "blk.1.ffn_down.weight", LMP_DT_IQ4_NL},
        {"iq4_xs", &mha, "output.weight", LMP_DT_Q6_K},
        {"iq3_m", &mha, "blk.5.attn_v.weight", LMP_DT_Q4_K},
        {"iq3_m", &mha, "blk.5.attn_output.weight", LMP_DT_Q4_K},
        {"iq3_m", &mha, "blk.1.ffn_down.weight", LMP_DT_Q4_K},
        {"iq3_m", &mha, "blk.5.ffn_down.weight", LMP_DT_IQ3_S},
        {"iq3_s", &gqa8, "blk.5.attn_v.weight", LMP_DT_Q4_K},
        {"iq3_xs", &mha, "blk.5.attn_q.weight", LMP_DT_IQ3_XXS},
        {"iq3_xs", &mha, "blk.5.ffn_up.weight", LMP_DT_IQ3_XXS},
        {"iq3_xs", &mha, "blk.15.ffn_gate.weight", LMP_DT_IQ3_S}, /* last eighth */
        {"iq3_xxs", &mha, "blk.5.attn_k.weight", LMP_DT_IQ2_S},
        {"iq3_xxs", &mha, "blk.5.attn_v.weight", LMP_DT_IQ3_S},   /* no imatrix */
        {"iq3_xxs", &mha_im, "blk.5.attn_v.weight", LMP_DT_IQ3_XXS},
        {"iq3_xxs", &mha, "blk.5.ffn_down.weight", LMP_DT_Q3_K},
        {"iq3_xxs", &mha, "token_embd.weight", LMP_DT_IQ3_S},
        {"iq3_xxs", &mha, "output.weight", LMP_DT_Q5_K},
        {"iq2_xs", &mha, "blk.5.attn_v.weight", LMP_DT_Q2_K},
        {"iq2_xs", &gqa8, "blk.5.attn_v.weight", LMP_DT_Q4_K},
        {"iq2_m", &mha, "blk.5.attn_v.weight", LMP_DT_IQ3_S},
        {"iq2_m", &mha, "blk.1.ffn_down.weight", LMP_DT_IQ3_S},
        {"iq2_m", &mha, "blk.5.ffn_down.weight", LMP_DT_IQ2_S},
        {"iq2_xxs", &mha, "token_embd.weight", LMP_DT_Q2_K},
        {"iq1_s", &mha, "blk.5.attn_output.weight", LMP_DT_IQ2_XXS},
        {"iq1_m", &mha, "output.weight", LMP_DT_Q5_K},
        {"tq2_0", &mha, "token_embd.weight", LMP_DT_Q4_K},
        {"q1_0", &mha, "token_embd.weight", LMP_DT_Q1_0},
        {"mxfp4_moe", &mha, "blk.5.ffn_up.weight", LMP_DT_Q8_0},
        {"mxfp4_moe", &mha, "output.weight", LMP_DT_Q8_0},
    };
    for (size_t i = 0; i < sizeof R / sizeof R[0]; i++) {
        int t = mix(R[i].ty, R[i].mi, R[i].name, 512, 4096);
        CHECK(t == (int)R[i].want, "%s %s: %s, llama.cpp gives %s", R[i].ty, R[i].name,
              t >= 0 ? lmp_dtype_info((lmp_dtype)t)->name : "kept", lmp_dtype_info(R[i].want)->name);
    }
    const int64_t sh3[3] = {8, 512, 4096};
    CHECK(lmp_gguf_mix_type(lmp_gguf_qtype_find("mxfp4_moe"), &mha, "blk.0.ffn_up_exps.weight", 3, sh3) ==
              LMP_DT_MXFP4,
          "mxfp4_moe: experts in mxfp4");
    struct { lmp_dtype t; int64_t cols; lmp_dtype want; } FB[] = {
        {LMP_DT_IQ4_XS, 96, LMP_DT_IQ4_NL}, {LMP_DT_IQ3_S, 576, LMP_DT_IQ4_NL}, {LMP_DT_IQ2_XXS, 96, LMP_DT_IQ4_NL},
        {LMP_DT_IQ1_M, 96, LMP_DT_IQ4_NL},  {LMP_DT_TQ1_0, 96, LMP_DT_Q4_0},    {LMP_DT_TQ2_0, 96, LMP_DT_Q4_0},
        {LMP_DT_Q2_0, 96, LMP_DT_Q4_0},     {LMP_DT_IQ4_XS, 100, LMP_DT_F16},   {LMP_DT_Q1_0, 96, LMP_DT_F16},
        {LMP_DT_IQ4_XS, 512, LMP_DT_IQ4_XS},
    };
    for (size_t i = 0; i < sizeof FB / sizeof FB[0]; i++) {
        lmp_dtype got = lmp_gguf_fallback_type(FB[i].t, FB[i].cols);
        CHECK(got == FB[i].want, "%s with %lld columns falls back to %s (want %s)", lmp_dtype_info(FB[i].t)->name,
              (long long)FB[i].cols, lmp_dtype_info(got)->name, lmp_dtype_info(FB[i].want)->name);
    }
}

int main(void)
{
    test_golden();
    test_codebooks();
    test_layouts();
    test_roundtrip_and_weights();
    test_mixes();
    return test_finish();
}
