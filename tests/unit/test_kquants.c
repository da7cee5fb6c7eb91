/*
 * lib/quant block quantizers: round-trip error bounds on seeded data, hand-built blocks
 * that pin each k-quant layout, importance weighting, determinism, golden hashes of the
 * codes (checked equal to ggml's quantize_q*_K / quantize_q4_0 ... output when written),
 * and the llama.cpp mix / fallback rules of the GGUF quantize driver.
 */
#include "test.h"
#include "lib/core/blocks.h"
#include "lib/quant/quant.h"

#include <math.h>

static const uint64_t SEED = 1234;

/* Seeded data without libm (portable bits): uniform in [-4, 4] with every 7th value x4. */
static void fill(float *x, int64_t n, float *qw, int64_t cols, uint64_t seed)
{
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)((int)(lmp_rng_next(&r) % 20001) - 10000) / 2500.f * (i % 7 == 0 ? 4.f : 1.f);
    for (int64_t j = 0; qw && j < cols; j++)
        qw[j] = 0.1f + (float)(lmp_rng_next(&r) % 1000) / 100.f;
}

typedef struct {
    lmp_dtype t;
    double rel_rms;  /* bound on sqrt(sum err^2 / sum x^2), reference quantizer, N(0,1) */
    double max_frac; /* bound on max |err| / max |x| of the row */
} bound;

static const bound BOUNDS[] = {
    {LMP_DT_Q2_K, 0.33, 0.50}, {LMP_DT_Q3_K, 0.17, 0.30}, {LMP_DT_Q4_K, 0.080, 0.15},
    {LMP_DT_Q5_K, 0.042, 0.08}, {LMP_DT_Q6_K, 0.021, 0.04}, {LMP_DT_Q4_0, 0.095, 0.15},
    {LMP_DT_Q4_1, 0.086, 0.12}, {LMP_DT_Q5_0, 0.048, 0.08}, {LMP_DT_Q5_1, 0.042, 0.06},
    {LMP_DT_Q8_0, 0.006, 0.01},
};
#define NB (int)(sizeof BOUNDS / sizeof BOUNDS[0])

static void test_roundtrip(void)
{
    enum { R = 32, C = 1024 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    void *q = malloc(8 * R * C);
    lmp_rng r;
    lmp_rng_seed(&r, SEED);
    for (int i = 0; i < R * C; i++)
        x[i] = lmp_rng_normal(&r);
    for (int k = 0; k < NB; k++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(BOUNDS[k].t);
        CHECK(tr->to_f32 && tr->from_f32, "%s has no to_f32/from_f32 in the dtype table", tr->name);
        if (!tr->to_f32 || !tr->from_f32)
            continue;
        size_t nb = lmp_quant_rows(BOUNDS[k].t, x, q, R, C, NULL);
        CHECK(nb == lmp_dtype_row_bytes(BOUNDS[k].t, C) * R, "%s: %zu bytes", tr->name, nb);
        tr->to_f32(q, y, R * C);
        double e = 0, n2 = 0, worst = 0;
        int64_t worst_i = 0;
        for (int row = 0; row < R; row++) {
            double amax = 0;
            for (int j = 0; j < C; j++)
                amax = fmax(amax, fabs(x[row * C + j]));
            for (int j = 0; j < C; j++) {
                double d = (double)x[row * C + j] - y[row * C + j];
                e += d * d;
                n2 += (double)x[row * C + j] * x[row * C + j];
                if (fabs(d) / amax > worst) {
                    worst = fabs(d) / amax;
                    worst_i = row * C + j;
                }
            }
        }
        double rel = sqrt(e / n2);
        printf("  %-5s rel RMS %.5f (bound %.3f), worst |err|/amax %.4f at %lld\n", tr->name, rel, BOUNDS[k].rel_rms,
               worst, (long long)worst_i);
        CHECK(rel < BOUNDS[k].rel_rms, "%s: rel RMS %.5f >= %.3f (seed %llu)", tr->name, rel, BOUNDS[k].rel_rms,
              (unsigned long long)SEED);
        CHECK(worst < BOUNDS[k].max_frac, "%s: worst |err|/amax %.4f at %lld: x %g y %g (seed %llu)", tr->name, worst,
              (long long)worst_i, x[worst_i], y[worst_i], (unsigned long long)SEED);
    }
    /* all-zero rows stay exactly zero, and blocks of one repeated value come back close */
    for (int k = 0; k < NB; k++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(BOUNDS[k].t);
        float z[512] = {0}, yz[512];
        lmp_quant_rows(BOUNDS[k].t, z, q, 1, 512, NULL);
        tr->to_f32(q, yz, 512);
        int nz = 0;
        for (int j = 0; j < 512; j++)
            nz += yz[j] != 0;
        CHECK(nz == 0, "%s: zero row dequantizes to %d non-zeros", tr->name, nz);
    }
    free(x);
    free(y);
    free(q);
}

/* ---------------------------------------------------------------- hand-built blocks */

static const uint16_t F16_ONE = 0x3C00, F16_HALF = 0x3800, F16_QUARTER = 0x3400;

static int check_exact(const char *what, const float *got, const float *want, int n)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) {
            if (bad < 3)
                fprintf(stderr, "  %s: element %d: got %g, want %g\n", what, i, got[i], want[i]);
            bad++;
        }
    CHECK(bad == 0, "%s: %d of %d elements differ", what, bad, n);
    return bad;
}

/* Q4_K / Q5_K scale bytes from the layout description: sub-blocks 0-3 keep scale and min
 * in the low 6 bits of bytes 0-3 and 4-7; sub-blocks 4-7 keep their low 4 bits in bytes
 * 8-11 (scale low nibble, min high nibble) and their top 2 bits in bits 6-7 of bytes 0-3
 * (scale) and 4-7 (min). */
static void k4_scales(const int *sc, const int *m, uint8_t *s)
{
    for (int j = 0; j < 4; j++) {
        s[j] = (uint8_t)(sc[j] | ((sc[j + 4] >> 4) << 6));
        s[j + 4] = (uint8_t)(m[j] | ((m[j + 4] >> 4) << 6));
        s[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

static void test_layout_q4_k_q5_k(void)
{
    const int sc[8] = {1, 2, 3, 4, 17, 33, 50, 63}, m[8] = {0, 5, 10, 63, 16, 31, 47, 62};
    float want[QK_K], got[QK_K];
    lmp_block_q4_k b4;
    memset(&b4, 0, sizeof b4);
    b4.d = F16_ONE;
    b4.dmin = F16_HALF;
    k4_scales(sc, m, b4.scales);
    for (int k = 0; k < QK_K; k++) {
        int q = (k * 7 + 3) % 16;
        /* 64-value chunk c: byte 32c + l holds value 64c + l (low) and 64c + 32 + l (high) */
        int c = k / 64, l = k % 32, hi = (k % 64) >= 32;
        b4.qs[32 * c + l] |= (uint8_t)(hi ? q << 4 : q);
        want[k] = 1.0f * sc[k / 32] * q - 0.5f * m[k / 32];
    }
    lmp_dtype_info(LMP_DT_Q4_K)->to_f32(&b4, got, QK_K);
    check_exact("q4_K hand-built block", got, want, QK_K);

    lmp_block_q5_k b5;
    memset(&b5, 0, sizeof b5);
    b5.d = F16_HALF;
    b5.dmin = F16_ONE;
    k4_scales(sc, m, b5.scales);
    for (int k = 0; k < QK_K; k++) {
        int q = (k * 11 + 5) % 32;
        int c = k / 64, l = k % 32, hi = (k % 64) >= 32;
        b5.qs[32 * c + l] |= (uint8_t)(hi ? (q & 15) << 4 : q & 15);
        if (q & 16) /* 5th bit: qh[l] bit 2c for the first 32 of the chunk, 2c+1 for the next */
            b5.qh[l] |= (uint8_t)(1 << (2 * c + hi));
        want[k] = 0.5f * sc[k / 32] * q - 1.0f * m[k / 32];
    }
    lmp_dtype_info(LMP_DT_Q5_K)->to_f32(&b5, got, QK_K);
    check_exact("q5_K hand-built block", got, want, QK_K);
}

static void test_layout_q6_k(void)
{
    lmp_block_q6_k b;
    float want[QK_K], got[QK_K];
    memset(&b, 0, sizeof b);
    b.d = F16_QUARTER;
    for (int j = 0; j < 16; j++)
        b.scales[j] = (int8_t)(j % 2 ? -(j * 8) : j * 8 + 1);
    for (int k = 0; k < QK_K; k++) {
        int q = (k * 13 + 1) % 64; /* stored 6-bit code; value q - 32 */
        /* half h (128 values), l < 32, quarter g: low nibble in ql[64h + l + 32*(g&1)], in
         * bits 0-3 for g < 2 and 4-7 otherwise; high 2 bits in qh[32h + l] at bit 2g */
        int h = k / 128, g = (k % 128) / 32, l = k % 32;
        b.ql[64 * h + l + 32 * (g & 1)] |= (uint8_t)(g < 2 ? q & 15 : (q & 15) << 4);
        b.qh[32 * h + l] |= (uint8_t)((q >> 4) << (2 * g));
        want[k] = 0.25f * b.scales[k / 16] * (q - 32);
    }
    lmp_dtype_info(LMP_DT_Q6_K)->to_f32(&b, got, QK_K);
    check_exact("q6_K hand-built block", got, want, QK_K);
}

static void test_layout_q3_k(void)
{
    lmp_block_q3_k b;
    float want[QK_K], got[QK_K];
    int sc[16];
    memset(&b, 0, sizeof b);
    b.d = F16_HALF;
    for (int j = 0; j < 16; j++) {
        sc[j] = (j * 19 + 7) % 64 - 32; /* signed 6-bit scale, stored + 32 */
        int s = sc[j] + 32;
        /* low nibble: byte j (j < 8) low half, byte j-8 high half; top 2 bits: byte 8 + j%4 at 2*(j/4) */
        if (j < 8)
            b.scales[j] |= (uint8_t)(s & 15);
        else
            b.scales[j - 8] |= (uint8_t)((s & 15) << 4);
        b.scales[8 + j % 4] |= (uint8_t)((s >> 4) << (2 * (j / 4)));
    }
    for (int k = 0; k < QK_K; k++) {
        int q = (k * 5 + 2) % 8 - 4; /* value in [-4, 3] */
        int u = q + 4;               /* 3-bit code: low 2 bits in qs, high bit in hmask */
        int h = k / 128, g = (k % 128) / 32, l = k % 32;
        b.qs[32 * h + l] |= (uint8_t)((u & 3) << (2 * g));
        if (u & 4) /* hmask: bit k/32 of byte k%32 */
            b.hmask[k % 32] |= (uint8_t)(1 << (k / 32));
        want[k] = 0.5f * sc[k / 16] * q;
    }
    lmp_dtype_info(LMP_DT_Q3_K)->to_f32(&b, got, QK_K);
    check_exact("q3_K hand-built block", got, want, QK_K);
}

static void test_layout_q2_k(void)
{
    lmp_block_q2_k b;
    float want[QK_K], got[QK_K];
    memset(&b, 0, sizeof b);
    b.d = F16_HALF;
    b.dmin = F16_QUARTER;
    for (int j = 0; j < 16; j++) /* scale in the low nibble, min in the high nibble */
        b.scales[j] = (uint8_t)(((j * 3) % 16) | (((15 - j) % 16) << 4));
    for (int k = 0; k < QK_K; k++) {
        int q = (k * 3 + k / 64) % 4;
        int h = k / 128, g = (k % 128) / 32, l = k % 32;
        b.qs[32 * h + l] |= (uint8_t)(q << (2 * g));
        want[k] = 0.5f * (b.scales[k / 16] & 15) * q - 0.25f * (b.scales[k / 16] >> 4);
    }
    lmp_dtype_info(LMP_DT_Q2_K)->to_f32(&b, got, QK_K);
    check_exact("q2_K hand-built block", got, want, QK_K);
}

/* ---------------------------------------------------------------- weights, determinism */

static void test_weighted(void)
{
    enum { R = 16, C = 1024 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C), qw[C];
    void *q = malloc(8 * R * C);
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 1);
    for (int i = 0; i < R * C; i++)
        x[i] = lmp_rng_normal(&r);
    for (int j = 0; j < C; j++) /* skewed: one column in 16 matters 250x more */
        qw[j] = j % 16 == 3 ? 50.f : 0.2f;
    const lmp_dtype ts[] = {LMP_DT_Q2_K, LMP_DT_Q3_K, LMP_DT_Q4_K, LMP_DT_Q5_K, LMP_DT_Q6_K,
                            LMP_DT_Q4_0, LMP_DT_Q4_1, LMP_DT_Q5_0, LMP_DT_Q5_1};
    for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++) {
        double werr[2];
        CHECK(lmp_quant_uses_weights(ts[k]), "%s should use weights", lmp_dtype_info(ts[k])->name);
        for (int w = 0; w < 2; w++) {
            lmp_quant_rows(ts[k], x, q, R, C, w ? qw : NULL);
            lmp_dtype_info(ts[k])->to_f32(q, y, R * C);
            werr[w] = 0;
            for (int i = 0; i < R * C; i++)
                werr[w] += qw[i % C] * ((double)x[i] - y[i]) * ((double)x[i] - y[i]);
        }
        printf("  %-5s weighted error: unweighted %.2f, weighted %.2f (%.2fx)\n", lmp_dtype_info(ts[k])->name, werr[0],
               werr[1], werr[0] / werr[1]);
        CHECK(werr[1] < 0.8 * werr[0], "%s: importance weights did not lower the weighted error (%.3f vs %.3f)",
              lmp_dtype_info(ts[k])->name, werr[1], werr[0]);
    }
    CHECK(!lmp_quant_uses_weights(LMP_DT_Q8_0) && !lmp_quant_uses_weights(LMP_DT_F16), "q8_0/f16 ignore weights");
    free(x);
    free(y);
    free(q);
}

/* FNV-1a of the codes for fill(SEED) data, 8 rows x 512; equal to ggml's quantize_<type>
 * (libggml-base, llama.cpp at the time of writing) for both the reference (w = 0) and the
 * importance-weighted (w = 1) paths. A change here changes the bytes written to GGUF. */
static const struct { lmp_dtype t; int w; uint64_t h; } GOLDEN[] = {
    {LMP_DT_Q2_K, 0, 0x314175acdccd824dULL},
    {LMP_DT_Q2_K, 1, 0x75c803177555256fULL},
    {LMP_DT_Q3_K, 0, 0x58fd608948707f28ULL},
    {LMP_DT_Q3_K, 1, 0x70ef4ba867cc3cd0ULL},
    {LMP_DT_Q4_K, 0, 0xf1f6abb45dbe6492ULL},
    {LMP_DT_Q4_K, 1, 0xeafb399f783d9a73ULL},
    {LMP_DT_Q5_K, 0, 0xb31fc71641112e7cULL},
    {LMP_DT_Q5_K, 1, 0x9e5c98bbbda9ceebULL},
    {LMP_DT_Q6_K, 0, 0x6ca99c15497e7836ULL},
    {LMP_DT_Q6_K, 1, 0x89a918e78cc37658ULL},
    {LMP_DT_Q4_0, 0, 0xd46f67b8d2579633ULL},
    {LMP_DT_Q4_0, 1, 0xf7abe8299778fc38ULL},
    {LMP_DT_Q4_1, 0, 0xff7ca5a825ac7eefULL},
    {LMP_DT_Q4_1, 1, 0x2edfa95f4623d2cbULL},
    {LMP_DT_Q5_0, 0, 0x682636b443e06f3eULL},
    {LMP_DT_Q5_0, 1, 0xa8cf0d0ee5e57a2bULL},
    {LMP_DT_Q5_1, 0, 0x411bd78e66f21270ULL},
    {LMP_DT_Q5_1, 1, 0x74fce638f0264161ULL},
    {LMP_DT_Q8_0, 0, 0x4867c296cafb27efULL},
    {LMP_DT_Q8_0, 1, 0x4867c296cafb27efULL},
};

static void test_golden_and_determinism(void)
{
    enum { R = 8, C = 512 };
    static float x[R * C], qw[C];
    static uint8_t a[8 * R * C], b2[8 * R * C];
    fill(x, R * C, qw, C, SEED);
    for (size_t k = 0; k < sizeof GOLDEN / sizeof GOLDEN[0]; k++) {
        const char *nm = lmp_dtype_info(GOLDEN[k].t)->name;
        size_t n = lmp_quant_rows(GOLDEN[k].t, x, a, R, C, GOLDEN[k].w ? qw : NULL);
        size_t n2 = lmp_quant_rows(GOLDEN[k].t, x, b2, R, C, GOLDEN[k].w ? qw : NULL);
        CHECK(n == n2 && memcmp(a, b2, n) == 0, "%s: two runs differ", nm);
        uint64_t h = lmp_fnv1a(LMP_FNV_INIT, a, n);
        CHECK(h == GOLDEN[k].h, "%s%s: codes hash %016llx, golden %016llx (seed %llu)", nm,
              GOLDEN[k].w ? " (weighted)" : "", (unsigned long long)h, (unsigned long long)GOLDEN[k].h,
              (unsigned long long)SEED);
        if (!GOLDEN[k].w) { /* the table's from_f32 is the same reference quantizer */
            memset(b2, 0, n);
            lmp_dtype_info(GOLDEN[k].t)->from_f32(x, b2, (int64_t)R * C);
            CHECK(memcmp(a, b2, n) == 0, "%s: lmp_quant_rows and from_f32 differ", nm);
        }
    }
    /* row-at-a-time equals all rows at once (what the parallel driver relies on) */
    size_t rb = lmp_dtype_row_bytes(LMP_DT_Q4_K, C);
    lmp_quant_rows(LMP_DT_Q4_K, x, a, R, C, qw);
    for (int r = 0; r < R; r++)
        lmp_quant_rows(LMP_DT_Q4_K, x + r * C, b2 + r * rb, 1, C, qw);
    CHECK(memcmp(a, b2, rb * R) == 0, "q4_K: per-row and whole-matrix quantization differ");
    CHECK(lmp_quant_rows(LMP_DT_Q4_K, x, a, 1, 100, NULL) == 0, "100 columns do not fit q4_K: must return 0");
    CHECK(lmp_quant_rows(LMP_DT_I32, x, a, 1, 32, NULL) == 0, "i32 is not a quantization target");
}

/* ---------------------------------------------------------------- SIMD = scalar */

/* The AVX2 batched searches must give the scalar reference's bytes on every kind of
 * block: Gaussian at several scales, values below ggml's GROUP_MAX_EPS, zeros, constants,
 * one-hot, all-positive / all-negative, coarse grids (rounding ties), f16- and
 * bf16-rounded values, half-sparse, sub-blocks of mixed magnitude, huge values. */
static void fill_kind(float *x, int n, int kind, lmp_rng *r)
{
    for (int i = 0; i < n; i++) {
        float g = lmp_rng_normal(r);
        float v;
        switch (kind) {
        case 0: v = g; break;
        case 1: v = g * 1e-3f; break;
        case 2: v = g * 1e3f; break;
        case 3: v = g * 1e-17f; break;                        /* below GROUP_MAX_EPS */
        case 4: v = 0.f; break;
        case 5: v = 0.75f; break;
        case 6: v = -1.25f; break;
        case 7: v = i % 97 == 3 ? 2.f : 0.f; break;          /* one-hot-ish */
        case 8: v = fabsf(g) + 0.1f; break;                   /* all positive */
        case 9: v = -fabsf(g); break;                         /* all non-positive */
        case 10: v = (float)((int)(lmp_rng_next(r) % 9) - 4) * 0.5f; break; /* ties */
        case 11: v = lmp_f16_to_f32(lmp_f32_to_f16(g * 0.02f)); break;
        case 12: v = lmp_bf16_to_f32(lmp_f32_to_bf16(g)); break;
        case 13: v = lmp_rng_next(r) % 2 ? 0.f : g; break;
        case 14: v = (i / 16) % 3 == 0 ? 0.f : (i / 32) % 2 ? g * 1e-4f : g * 10.f; break;
        case 15: v = g * 1e30f; break;
        case 16: v = i % 3 == 1 ? 0.f : -0.f; break;         /* signed zeros, blocks start with -0 */
        default: v = (float)(lmp_rng_next(r) % 16); break;    /* small non-negative integers */
        }
        x[i] = v;
    }
}

static void test_simd_equals_scalar(void)
{
    enum { KINDS = 18, ROWS = 24, C = 512 };
    const lmp_dtype ts[] = {LMP_DT_Q2_K, LMP_DT_Q3_K, LMP_DT_Q4_K, LMP_DT_Q5_K, LMP_DT_Q6_K, LMP_DT_Q8_0,
                            LMP_DT_Q4_0};
    float *x = malloc(sizeof(float) * ROWS * C), *qw = malloc(sizeof(float) * C);
    uint8_t *a = malloc(8 * ROWS * C), *b = malloc(8 * ROWS * C);
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 7);
    bool had = lmp_quant_set_simd(true);
    int mism = 0, compared = 0;
    for (int kind = 0; kind < KINDS; kind++) {
        for (int row = 0; row < ROWS; row++) /* rows of one kind, some mixed with Gaussian blocks */
            fill_kind(x + row * C, C, row % 4 == 3 ? (kind + row) % KINDS : kind, &r);
        for (int j = 0; j < C; j++)
            qw[j] = j % 29 == 0 ? 0.f : 0.05f + (float)(lmp_rng_next(&r) % 1000) / 50.f;
        for (size_t k = 0; k < sizeof ts / sizeof ts[0]; k++)
            for (int w = 0; w < 2; w++) {
                lmp_quant_set_simd(true);
                size_t n = lmp_quant_rows(ts[k], x, a, ROWS, C, w ? qw : NULL);
                lmp_quant_set_simd(false);
                size_t n2 = lmp_quant_rows(ts[k], x, b, ROWS, C, w ? qw : NULL);
                compared++;
                if (n != n2 || memcmp(a, b, n) != 0) {
                    mism++;
                    fprintf(stderr, "  %s%s, data kind %d: SIMD and scalar bytes differ\n",
                            lmp_dtype_info(ts[k])->name, w ? " (weighted)" : "", kind);
                }
            }
    }
    lmp_quant_set_simd(had);
    printf("  SIMD vs scalar k-quants: %d of %d (type, weights, data kind) cases identical (SIMD %s)\n",
           compared - mism, compared, had ? "available" : "not available on this CPU");
    CHECK(mism == 0, "%d cases where the batched (AVX2) searches differ from the scalar reference", mism);
    free(x);
    free(qw);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------- mixes and fallbacks */

static int mix(const char *type, const lmp_gguf_mix_info *mi, const char *name, int64_t rows, int64_t cols)
{
    int64_t sh[2] = {rows, cols};
    return lmp_gguf_mix_type(lmp_gguf_qtype_find(type), mi, name, 2, sh);
}

static void test_mix(void)
{
    struct { const char *n; int ft; } ft[] = {{"q8_0", 7}, {"q4_0", 2}, {"q4_1", 3}, {"q5_0", 8}, {"q5_1", 9},
                                              {"q2_k", 10}, {"q3_k_s", 11}, {"q3_k_m", 12}, {"q3_k_l", 13},
                                              {"q4_k_s", 14}, {"q4_k_m", 15}, {"q5_k_s", 16}, {"q5_k_m", 17},
                                              {"q6_k", 18}, {"f16", 1}, {"bf16", 32}, {"f32", 0},
                                              {"Q4_K", 15}, {"q5_k", 17}, {"q3_k", 12}};
    for (size_t i = 0; i < sizeof ft / sizeof ft[0]; i++) {
        const lmp_gguf_qtype *q = lmp_gguf_qtype_find(ft[i].n);
        CHECK(q && q->ftype == ft[i].ft, "type %s: file type %d, want %d", ft[i].n, q ? q->ftype : -1, ft[i].ft);
    }
    CHECK(!lmp_gguf_qtype_find("q7_k") && !lmp_gguf_qtype_find("iq5_xs"), "unknown types are refused");

    /* a Llama-2-7B-like model: 32 layers, 32 heads, no GQA, untied */
    lmp_gguf_mix_info mi = {32, 32, 32, 32, false, false, 0};
    int n6 = 0, want6[32] = {0};
    for (int i = 0; i < 32; i++) /* use_more_bits: first and last eighth, then every third */
        want6[i] = i < 4 || i >= 28 || (i - 4) % 3 == 2;
    for (int i = 0; i < 32; i++) {
        char nm[64];
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", i);
        int t = mix("q4_k_m", &mi, nm, 4096, 4096);
        CHECK(t == (want6[i] ? LMP_DT_Q6_K : LMP_DT_Q4_K), "q4_k_m %s: %s", nm, lmp_dtype_info(t)->name);
        n6 += t == LMP_DT_Q6_K;
        snprintf(nm, sizeof nm, "blk.%d.ffn_down.weight", i);
        t = mix("q4_k_m", &mi, nm, 4096, 11008);
        CHECK(t == (want6[i] ? LMP_DT_Q6_K : LMP_DT_Q4_K), "q4_k_m %s: %s", nm, lmp_dtype_info(t)->name);
        t = mix("q3_k_m", &mi, nm, 4096, 11008);
        CHECK(t == (i < 2 ? LMP_DT_Q5_K : LMP_DT_Q4_K), "q3_k_m %s: %s", nm, lmp_dtype_info(t)->name);
        t = mix("q4_k_s", &mi, nm, 4096, 11008);
        CHECK(t == (i < 4 ? LMP_DT_Q5_K : LMP_DT_Q4_K), "q4_k_s %s: %s", nm, lmp_dtype_info(t)->name);
        snprintf(nm, sizeof nm, "blk.%d.attn_v.weight", i);
        t = mix("q3_k_m", &mi, nm, 4096, 4096);
        CHECK(t == (i < 2 ? LMP_DT_Q5_K : LMP_DT_Q4_K), "q3_k_m %s: %s", nm, lmp_dtype_info(t)->name);
    }
    CHECK(n6 == 16, "q4_k_m: %d of 32 attn_v in q6_K, want 16", n6);
    CHECK(mix("q4_k_m", &mi, "output.weight", 32000, 4096) == LMP_DT_Q6_K, "q4_k_m output -> q6_K");
    CHECK(mix("q4_0", &mi, "output.weight", 32000, 4096) == LMP_DT_Q6_K, "q4_0 output -> q6_K (as llama.cpp)");
    CHECK(mix("q8_0", &mi, "output.weight", 32000, 4096) == LMP_DT_Q8_0, "q8_0 output stays q8_0");
    CHECK(mix("q4_k_m", &mi, "token_embd.weight", 32000, 4096) == LMP_DT_Q4_K, "untied token_embd -> q4_K");
    CHECK(mix("q4_k_m", &mi, "blk.3.attn_q.weight", 4096, 4096) == LMP_DT_Q4_K, "attn_q -> q4_K");
    CHECK(mix("q2_k", &mi, "blk.3.attn_output.weight", 4096, 4096) == LMP_DT_Q3_K, "q2_k attn_output -> q3_K");
    CHECK(mix("q2_k", &mi, "blk.3.attn_v.weight", 4096, 4096) == LMP_DT_Q3_K, "q2_k attn_v (no GQA) -> q3_K");
    CHECK(mix("q3_k_l", &mi, "blk.9.attn_output.weight", 4096, 4096) == LMP_DT_Q5_K, "q3_k_l attn_output -> q5_K");
    CHECK(mix("f16", &mi, "blk.3.attn_q.weight", 4096, 4096) == LMP_DT_F16, "f16 type");
    CHECK(mix("q4_k_m", &mi, "blk.3.attn_norm.weight", 1, 4096) == -1, "norms are not quantized");
    int64_t one[1] = {4096};
    CHECK(lmp_gguf_mix_type(lmp_gguf_qtype_find("q4_k_m"), &mi, "blk.0.ffn_norm.weight", 1, one) == -1, "1-D kept");
    mi.n_head_kv = 8; /* GQA 4 */
    CHECK(mix("q2_k", &mi, "blk.3.attn_v.weight", 1024, 4096) == LMP_DT_Q4_K, "q2_k attn_v with GQA 4 -> q4_K");
    mi.tied = true; /* stories260K-like: the token embedding doubles as the output */
    CHECK(mix("q4_k_m", &mi, "token_embd.weight", 512, 64) == LMP_DT_Q8_0, "tied 64-wide token_embd -> q8_0");
    CHECK(mix("q4_k_m", &mi, "token_embd.weight", 32000, 4096) == LMP_DT_Q6_K, "tied token_embd -> q6_K");
    mi.has_imatrix = true;
    CHECK(mix("q4_0", &mi, "blk.1.ffn_down.weight", 4096, 11008) == LMP_DT_Q4_1, "q4_0 + imatrix early ffn_down");

    struct { lmp_dtype t; int64_t cols; lmp_dtype want; } fb[] = {
        {LMP_DT_Q4_K, 4096, LMP_DT_Q4_K}, {LMP_DT_Q4_K, 64, LMP_DT_Q5_0},  {LMP_DT_Q4_K, 172, LMP_DT_F16},
        {LMP_DT_Q6_K, 64, LMP_DT_Q8_0},   {LMP_DT_Q5_K, 96, LMP_DT_Q5_1},  {LMP_DT_Q2_K, 96, LMP_DT_Q4_0},
        {LMP_DT_Q3_K, 160, LMP_DT_Q4_0},  {LMP_DT_Q8_0, 172, LMP_DT_F16},  {LMP_DT_F16, 172, LMP_DT_F16},
    };
    for (size_t i = 0; i < sizeof fb / sizeof fb[0]; i++) {
        lmp_dtype got = lmp_gguf_fallback_type(fb[i].t, fb[i].cols);
        CHECK(got == fb[i].want, "fallback %s with %lld columns: %s, want %s", lmp_dtype_info(fb[i].t)->name,
              (long long)fb[i].cols, lmp_dtype_info(got)->name, lmp_dtype_info(fb[i].want)->name);
    }
}

int main(void)
{
    test_roundtrip();
    test_layout_q4_k_q5_k();
    test_layout_q6_k();
    test_layout_q3_k();
    test_layout_q2_k();
    test_weighted();
    test_golden_and_determinism();
    test_simd_equals_scalar();
    test_mix();
    return test_finish();
}
