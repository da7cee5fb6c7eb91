/*
 * Offline check (not part of `make test`): lmpress's low-bit GGUF quantizers against
 * ggml's own (ggml_quantize_chunk in libggml-base of a local llama.cpp build), byte for
 * byte, with and without importance weights, on several kinds of data; then prints the
 * FNV-1a hashes that tests/unit/test_iquants.c pins (same data: its fill(), seed 1234,
 * 8 rows x 512) and a codebook dump check for the grid types when present.
 *
 *   LLAMA=/work/llamacpp
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -I$LLAMA/ggml/include \
 *      tests/reference/ggml_lowbit_check.c build/liblmpress.a \
 *      -L$LLAMA/build/bin -lggml-base -Wl,-rpath,$LLAMA/build/bin \
 *      -fopenmp -lcjson -lpcre2-8 -lutf8proc -llapacke -lopenblas -lz -lm -lpthread \
 *      -o /tmp/ggml_lowbit_check && /tmp/ggml_lowbit_check
 *
 * Exit status 0 when every comparison is identical.
 */
#include "lib/core/core.h"
#include "lib/quant/quant.h"

#include <ggml.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    lmp_dtype t;
    enum ggml_type g;
} TYPES[] = {
    {LMP_DT_IQ4_NL, GGML_TYPE_IQ4_NL}, {LMP_DT_IQ4_XS, GGML_TYPE_IQ4_XS}, {LMP_DT_MXFP4, GGML_TYPE_MXFP4},
    {LMP_DT_TQ1_0, GGML_TYPE_TQ1_0},   {LMP_DT_TQ2_0, GGML_TYPE_TQ2_0},   {LMP_DT_Q1_0, GGML_TYPE_Q1_0},
    {LMP_DT_Q2_0, GGML_TYPE_Q2_0},     {LMP_DT_IQ3_XXS, GGML_TYPE_IQ3_XXS}, {LMP_DT_IQ3_S, GGML_TYPE_IQ3_S},
    {LMP_DT_IQ2_XXS, GGML_TYPE_IQ2_XXS}, {LMP_DT_IQ2_XS, GGML_TYPE_IQ2_XS}, {LMP_DT_IQ2_S, GGML_TYPE_IQ2_S},
    {LMP_DT_IQ1_S, GGML_TYPE_IQ1_S},     {LMP_DT_IQ1_M, GGML_TYPE_IQ1_M},
};
#define NT (int)(sizeof TYPES / sizeof TYPES[0])

/* tests/unit/test_iquants.c's fill (keep identical) */
static void fill(float *x, int64_t n, float *qw, int64_t cols, uint64_t seed)
{
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((int)(lmp_rng_next(&r) % 20001) - 10000) / 2500.f * (i % 7 == 0 ? 4.f : 1.f);
    for (int64_t j = 0; qw && j < cols; j++)
        qw[j] = 0.1f + (float)(lmp_rng_next(&r) % 1000) / 100.f;
}

/* Other data: normal weights like a model's, with zero blocks, tiny blocks, outliers. */
static void fill_kind(int kind, float *x, int64_t n, float *qw, int64_t cols, uint64_t seed)
{
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++) {
        float v = lmp_rng_normal(&r) * 0.02f;
        if (kind == 1 && (i / 32) % 5 == 2)
            v = 0; /* all-zero blocks */
        if (kind == 2 && (i / 32) % 3 == 1)
            v *= 1e-20f; /* tiny blocks */
        if (kind == 3 && i % 97 == 0)
            v *= 40; /* outliers */
        if (kind == 4)
            v = (float)((int)(lmp_rng_next(&r) % 3) - 1) * 0.5f; /* ternary */
        x[i] = v;
    }
    for (int64_t j = 0; qw && j < cols; j++) /* imatrix-like: mean squares of activations */
        qw[j] = (float)(lmp_rng_uniform(&r) * lmp_rng_uniform(&r) * 4.0 + 1e-4);
}

/* tests/unit/test_iquants.c's random_blocks (keep identical): seeded random bytes with
 * the f16 scale (first two bytes of every block here) set to a finite value near 1. */
static void random_blocks(lmp_dtype t, int nb, uint64_t seed, uint8_t *buf)
{
    const size_t bs = lmp_dtype_info(t)->type_size;
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (size_t i = 0; i < bs * (size_t)nb; i++)
        buf[i] = (uint8_t)(lmp_rng_next(&r) >> 24);
    for (int b = 0; b < nb; b++) {
        uint16_t d = (uint16_t)(0x3800 + (b * 37 % 0x800)); /* [0.5, 1) */
        if (t == LMP_DT_IQ1_M) { /* the f16 scale is the top nibbles of the 4 scale words */
            uint8_t *sc = buf + bs * (size_t)b + 48;
            for (int k = 0; k < 4; k++)
                sc[2 * k + 1] = (uint8_t)((sc[2 * k + 1] & 0x0f) | (((d >> 4 * k) & 0xf) << 4));
        } else
            memcpy(buf + bs * (size_t)b, &d, 2);
    }
}

int main(void)
{
    enum { R = 8, C = 512, R2 = 64, C2 = 2048 };
    int bad = 0;
    float *x = malloc(sizeof(float) * R2 * C2), *qw = malloc(sizeof(float) * C2);
    uint8_t *a = malloc(8 * R2 * C2), *b = malloc(8 * R2 * C2);
    for (int k = 0; k < NT; k++)
        ggml_quantize_init(TYPES[k].g);
    printf("golden hashes (fill seed 1234, %d x %d):\n", R, C);
    for (int k = 0; k < NT; k++) {
        const char *nm = lmp_dtype_info(TYPES[k].t)->name;
        for (int w = 0; w < 2; w++) {
            fill(x, R * C, qw, C, 1234);
            const float *im = w ? qw : NULL;
            if (!im && ggml_quantize_requires_imatrix(TYPES[k].g))
                continue;
            size_t n1 = lmp_quant_rows(TYPES[k].t, x, a, R, C, im);
            size_t n2 = ggml_quantize_chunk(TYPES[k].g, x, b, 0, R, C, im);
            int same = n1 == n2 && memcmp(a, b, n1) == 0;
            bad += !same;
            char up[16]; for (int c = 0; (up[c] = (char)(nm[c] >= 0x61 && nm[c] <= 0x7a ? nm[c] - 32 : nm[c])); c++) {}
            printf("    {LMP_DT_%s, %d, 0x%016llxULL}, /* ggml %016llx %s */\n", up, w,
                   (unsigned long long)lmp_fnv1a(LMP_FNV_INIT, a, n1),
                   (unsigned long long)lmp_fnv1a(LMP_FNV_INIT, b, n2), same ? "same" : "DIFFERENT");
        }
    }
    printf("model-like data, %d x %d, kinds 0-4, with and without weights:\n", R2, C2);
    for (int k = 0; k < NT; k++) {
        int nsame = 0, ntot = 0;
        for (int kind = 0; kind < 5; kind++)
            for (int w = 0; w < 2; w++) {
                fill_kind(kind, x, (int64_t)R2 * C2, qw, C2, 99 + kind);
                const float *im = w ? qw : NULL;
                if (!im && ggml_quantize_requires_imatrix(TYPES[k].g))
                    continue;
                size_t n1 = lmp_quant_rows(TYPES[k].t, x, a, R2, C2, im);
                size_t n2 = ggml_quantize_chunk(TYPES[k].g, x, b, 0, R2, C2, im);
                ntot++;
                if (n1 == n2 && memcmp(a, b, n1) == 0)
                    nsame++;
                else {
                    size_t i = 0;
                    while (i < n1 && a[i] == b[i])
                        i++;
                    printf("  %s kind %d w %d: first differing byte %zu of %zu\n",
                           lmp_dtype_info(TYPES[k].t)->name, kind, w, i, n1);
                }
                /* and the dequantizers agree */
                if (n1 == n2 && memcmp(a, b, n1) == 0) {
                    float *y1 = malloc(sizeof(float) * C2), *y2 = malloc(sizeof(float) * C2);
                    lmp_dtype_info(TYPES[k].t)->to_f32(a, y1, C2);
                    ggml_get_type_traits(TYPES[k].g)->to_float(b, y2, C2);
                    if (memcmp(y1, y2, sizeof(float) * C2)) {
                        printf("  %s: dequantized values differ\n", lmp_dtype_info(TYPES[k].t)->name);
                        bad++;
                    }
                    free(y1), free(y2);
                }
            }
        printf("  %-8s %d of %d identical\n", lmp_dtype_info(TYPES[k].t)->name, nsame, ntot);
        bad += ntot - nsame;
    }
    /* codebooks: every grid point reached (1024 random blocks), ggml's dequantization */
    printf("codebook hashes (1024 random blocks, ggml dequantization):\n");
    for (int k = 0; k < NT; k++) {
        const lmp_dtype t = TYPES[k].t;
        if (lmp_dtype_info(t)->block_size != 256 || t == LMP_DT_IQ4_XS || t == LMP_DT_TQ1_0 || t == LMP_DT_TQ2_0)
            continue;
        enum { NBLK = 1024 };
        uint8_t *blk = malloc(lmp_dtype_info(t)->type_size * NBLK);
        float *y1 = malloc(sizeof(float) * 256 * NBLK), *y2 = malloc(sizeof(float) * 256 * NBLK);
        random_blocks(t, NBLK, 77, blk);
        ggml_get_type_traits(TYPES[k].g)->to_float(blk, y2, 256 * NBLK);
        lmp_dtype_info(t)->to_f32(blk, y1, 256 * NBLK);
        int same = memcmp(y1, y2, sizeof(float) * 256 * NBLK) == 0;
        bad += !same;
        printf("    {LMP_DT_%s, 0x%016llxULL}, /* lmpress %016llx %s */\n", lmp_dtype_info(t)->name,
               (unsigned long long)lmp_fnv1a(LMP_FNV_INIT, y2, sizeof(float) * 256 * NBLK),
               (unsigned long long)lmp_fnv1a(LMP_FNV_INIT, y1, sizeof(float) * 256 * NBLK), same ? "same" : "DIFFERENT");
        free(blk), free(y1), free(y2);
    }
    free(x), free(qw), free(a), free(b);
    printf("%s\n", bad ? "MISMATCH" : "all identical");
    return bad != 0;
}
