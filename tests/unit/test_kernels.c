/*
 * lib/infer kernels: lmp_gemm for every weight dtype and every variant this CPU has (ref,
 * avx2, avx512), against a double-precision product of the dequantized weights, on shapes
 * that exercise both regimes (M = 1..3 streaming rows, M >= 4 tiled) and every tile edge
 * (N, M, K not multiples of the register tile or the K block); bitwise equality between
 * 1 and 2 threads; the helper kernels against their formulas.
 */
#include "lib/infer/kernels.h"
#include "lib/core/blocks.h"
#include "lib/infer/kernels_internal.h"
#include "lib/quant/quant.h"
#include "team_check.h"
#include "test.h"

#include <math.h>
#include <stddef.h>
#include <omp.h>

#define SEED 20240611u
/* |y - y_exact| <= TOL * sum_k |x_k| |w_k| (+ |bias|): f32 accumulation in any order. */
#define TOL_GEMM 1e-5
/* The _1 block types fold the offset as m * sum(x) in the SIMD dots, so the rounding
 * scales with |q d| + |m| rather than |w|; a looser bound for them. */
#define TOL_GEMM_OFFSET 1e-4
#define TOL_HELPER 1e-5
/* Rounded activations (kernels.h): every variant is held to TOL_GEMM against the
 * double product of the rounded X (round_act below, the definition written out again);
 * against the exact X the difference is bounded by the rounding itself:
 * |y - y_exact| <= sum_k |x_k - round(x)_k| |w_k| + TOL_GEMM * sum_k |x_k w_k|. */

typedef struct { int64_t M, N, K; } shape;

/* X rounded to the activation format of weights of dtype dt, in double (exactly the
 * f32 values the kernels multiply: bf16(x), f16(x), or q * d). */
static void round_act(lmp_act act, const float *x, int64_t n, double *xr)
{
    if (act == LMP_ACT_F32) {
        for (int64_t i = 0; i < n; i++)
            xr[i] = x[i];
    } else if (act == LMP_ACT_BF16) {
        for (int64_t i = 0; i < n; i++)
            xr[i] = lmp_bf16_to_f32(lmp_k_bf16_round(x[i]));
    } else if (act == LMP_ACT_F16) {
        for (int64_t i = 0; i < n; i++)
            xr[i] = lmp_f16_to_f32(lmp_f32_to_f16(x[i]));
    } else if (act == LMP_ACT_Q8K) {
        for (int64_t b = 0; b < n / 256; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 256; j++)
                amax = fmaxf(amax, fabsf(x[256 * b + j]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            for (int j = 0; j < 256; j++)
                xr[256 * b + j] = (double)nearbyintf(x[256 * b + j] * id) * d;
        }
    } else {
        for (int64_t b = 0; b < n / 32; b++) {
            float amax = 0.0f;
            for (int j = 0; j < 32; j++)
                amax = fmaxf(amax, fabsf(x[32 * b + j]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            for (int j = 0; j < 32; j++)
                xr[32 * b + j] = (double)nearbyintf(x[32 * b + j] * id) * d;
        }
    }
}

static const shape k_shapes[] = {
    {1, 67, 96},  {2, 67, 96},   {3, 67, 96},    {4, 67, 96},  {17, 67, 96},
    {64, 67, 64}, {130, 67, 96}, {17, 67, 4096}, {1, 40, 4096}, {130, 33, 512},
    {13, 64, 256}, {12, 32, 64},
};
/* k-quants: K a multiple of 256 */
static const shape k_kq_shapes[] = {
    {1, 67, 256}, {2, 67, 512}, {3, 40, 256}, {4, 67, 256}, {17, 67, 512},
    {130, 33, 512}, {1, 40, 4096}, {13, 64, 256}, {24, 31, 768}, {16, 32, 256},
};
/* dense types also take any K */
static const shape k_dense_shapes[] = {{5, 37, 67}, {13, 70, 300}, {1, 9, 13}, {24, 31, 17}};

static void fill_normal(lmp_rng *r, float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = lmp_rng_normal(r) * scale;
}

/* Checks one (dtype, variant, shape, bias) case; returns the worst relative error
 * (INFINITY when a check failed). */
static double check_gemm(lmp_dtype dt, lmp_isa isa, shape s, bool with_bias, uint64_t seed)
{
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    const int64_t M = s.M, N = s.N, K = s.K;
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    float *X = malloc(sizeof(float) * M * K), *Wf = malloc(sizeof(float) * N * K);
    float *Wd = malloc(sizeof(float) * N * K), *bias = malloc(sizeof(float) * N);
    float *Y1 = malloc(sizeof(float) * M * N), *Y2 = malloc(sizeof(float) * M * N);
    size_t rb = lmp_dtype_row_bytes(dt, K);
    uint8_t *Wq = malloc(rb * N);
    fill_normal(&r, X, M * K, 1.0f);
    fill_normal(&r, Wf, N * K, 0.05f);
    fill_normal(&r, bias, N, 0.5f);
    for (int64_t n = 0; n < N; n++) {
        t->from_f32(Wf + n * K, Wq + n * rb, K);
        t->to_f32(Wq + n * rb, Wd + n * K, K);
    }
    lmp_wmat W = {dt, N, K, Wq, rb, NULL, LMP_WL_ROWS};
    const float *b = with_bias ? bias : NULL;

    lmp_set_num_threads(1);
    lmp_gemm(Y1, X, &W, b, M);
    lmp_set_num_threads(2);
    for (int64_t i = 0; i < M * N; i++)
        Y2[i] = NAN;
    lmp_gemm(Y2, X, &W, b, M);

    const double tol = (dt == LMP_DT_Q4_1 || dt == LMP_DT_Q5_1) ? TOL_GEMM_OFFSET : TOL_GEMM;
    const lmp_act act = lmp_k_act_m(dt, M);
    double *Xr = malloc(sizeof(double) * M * K);
    round_act(act, X, M * K, Xr);
    double worst = 0.0;
    int64_t wm = 0, wn = 0, nbad = 0, nfar = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double e = b ? b[n] : 0.0, mag = b ? fabs(b[n]) : 0.0;
            double ex = e, magx = mag, rnd = 0.0;
            for (int64_t k = 0; k < K; k++) {
                e += Xr[m * K + k] * Wd[n * K + k];
                mag += fabs(Xr[m * K + k] * Wd[n * K + k]);
                ex += (double)X[m * K + k] * Wd[n * K + k];
                magx += fabs((double)X[m * K + k] * Wd[n * K + k]);
                rnd += fabs(X[m * K + k] - Xr[m * K + k]) * fabs(Wd[n * K + k]);
            }
            /* the rounding of X stays within its own bound */
            if (!(fabs(Y1[m * N + n] - ex) <= rnd * (1 + 1e-6) + tol * magx) && nfar++ < 3)
                fprintf(stderr, "  %s/%s M=%ld N=%ld K=%ld: Y[%ld][%ld] = %.8g, exact-X %.8g, "
                        "rounding bound %.3g\n", t->name, lmp_isa_name(isa), (long)M, (long)N,
                        (long)K, (long)m, (long)n, Y1[m * N + n], ex, rnd);
            double err = fabs(Y1[m * N + n] - e) / (mag > 0 ? mag : 1.0);
            if (!(err <= tol)) {
                if (nbad++ < 3)
                    fprintf(stderr, "  %s/%s M=%ld N=%ld K=%ld: Y[%ld][%ld] = %.8g, want %.8g\n",
                            t->name, lmp_isa_name(isa), (long)M, (long)N, (long)K, (long)m,
                            (long)n, Y1[m * N + n], e);
                err = INFINITY; /* NaN too */
            }
            if (err > worst) {
                worst = err;
                wm = m;
                wn = n;
            }
        }
    bool same = memcmp(Y1, Y2, sizeof(float) * M * N) == 0;
    CHECK(team_equal(&W, X, b), "%s/%s N=%ld K=%ld: lmp_gemv_team differs from lmp_gemm M=1",
          t->name, lmp_isa_name(isa), (long)N, (long)K);
    CHECK(worst <= tol, "%s/%s M=%ld N=%ld K=%ld bias=%d: worst rel err %.3g at [%ld][%ld] "
          "(tol %.0e), %ld bad, seed %llu", t->name, lmp_isa_name(isa), (long)M, (long)N,
          (long)K, with_bias, worst, (long)wm, (long)wn, tol, (long)nbad,
          (unsigned long long)seed);
    CHECK(same, "%s/%s M=%ld N=%ld K=%ld: 1 and 2 threads differ", t->name,
          lmp_isa_name(isa), (long)M, (long)N, (long)K);
    CHECK(nfar == 0, "%s/%s M=%ld N=%ld K=%ld: %ld results outside the activation-rounding "
          "bound", t->name, lmp_isa_name(isa), (long)M, (long)N, (long)K, (long)nfar);
    free(Xr);
    if (getenv("LMP_TEST_VERBOSE"))
        printf("  %-5s %-6s M=%-4ld N=%-3ld K=%-5ld bias=%d worst %.2e\n", t->name,
               lmp_isa_name(isa), (long)M, (long)N, (long)K, with_bias, worst);
    free(X), free(Wf), free(Wd), free(bias), free(Y1), free(Y2), free(Wq);
    return worst <= tol && same ? worst : INFINITY;
}

static void test_gemm(const lmp_isa *isas, int nisa)
{
    static const lmp_dtype dts[] = {LMP_DT_F32,  LMP_DT_F16,  LMP_DT_BF16, LMP_DT_Q8_0,
                                    LMP_DT_Q4_0, LMP_DT_Q4_1, LMP_DT_Q5_0, LMP_DT_Q5_1,
                                    LMP_DT_Q2_K, LMP_DT_Q3_K, LMP_DT_Q4_K, LMP_DT_Q5_K,
                                    LMP_DT_Q6_K, LMP_DT_IQ4_NL, LMP_DT_IQ4_XS, LMP_DT_MXFP4,
                                    LMP_DT_TQ1_0, LMP_DT_TQ2_0, LMP_DT_Q1_0, LMP_DT_Q2_0,
                                    LMP_DT_IQ3_XXS, LMP_DT_IQ3_S, LMP_DT_IQ2_XXS, LMP_DT_IQ2_XS,
                                    LMP_DT_IQ2_S, LMP_DT_IQ1_S, LMP_DT_IQ1_M};
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        CHECK(lmp_gemm_supports(dts[d]), "%s supported", lmp_dtype_info(dts[d])->name);
        bool dense = lmp_dtype_info(dts[d])->block_size == 1;
        for (int i = 0; i < nisa; i++) {
            lmp_kernels_set_isa(isas[i]);
            uint64_t seed = SEED + 1000 * d;
            double worst = 0;
            int cases = 0;
#define RUN(sh, b)                                                                       \
    do {                                                                                 \
        double e = check_gemm(dts[d], isas[i], sh, b, seed++);                           \
        worst = e > worst ? e : worst;                                                   \
        cases++;                                                                         \
    } while (0)
            if (lmp_dtype_info(dts[d])->block_size > 32) { /* K a multiple of 256 */
                for (size_t s = 0; s < sizeof k_kq_shapes / sizeof *k_kq_shapes; s++)
                    RUN(k_kq_shapes[s], (s & 1) == 0);
            } else {
                for (size_t s = 0; s < sizeof k_shapes / sizeof *k_shapes; s++)
                    RUN(k_shapes[s], (s & 1) == 0);
                RUN(k_shapes[4], true);
                RUN(k_shapes[4], false);
            }
            if (dense)
                for (size_t s = 0; s < sizeof k_dense_shapes / sizeof *k_dense_shapes; s++)
                    RUN(k_dense_shapes[s], s & 1);
#undef RUN
            printf("gemm %-5s %-6s %2d shapes, worst |err| / sum|x w| = %.2e\n",
                   lmp_dtype_info(dts[d])->name, lmp_isa_name(isas[i]), cases, worst);
        }
    }
    CHECK(!lmp_gemm_supports(LMP_DT_I32), "i32 weights are not supported");
    /* unsupported weights: Y = bias (and a warning), never a crash */
    int32_t wi[6] = {1, 2, 3, 4, 5, 6};
    float x[3] = {1, 1, 1}, bias[2] = {0.5f, -0.5f}, y[2] = {NAN, NAN};
    lmp_wmat W = {LMP_DT_I32, 2, 3, wi, 12, NULL, LMP_WL_ROWS};
    int lvl = lmp_log_level;
    lmp_log_level = LMP_LOG_ERROR;
    lmp_gemm(y, x, &W, bias, 1);
    lmp_log_level = lvl;
    CHECK(y[0] == 0.5f && y[1] == -0.5f, "unsupported dtype leaves Y = bias");
}

/* Activation rounding: every variant's quantizer and bf16 conversion bitwise equal to
 * the reference (ties to even, zero blocks, subnormals, NaN), and the reference equal
 * to the definition written out in round_act. */
static void test_act_rounding(const lmp_isa *isas, int nisa)
{
    static const int64_t ns[] = {32, 96, 4096, 1, 13, 67, 300, 768};
    const lmp_kimpl *ref = lmp_k_impl(LMP_ISA_REF);
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 5);
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        const int64_t n = ns[t];
        float *x = malloc(sizeof(float) * n);
        fill_normal(&r, x, n, 3.0f);
        for (int64_t i = 0; i < n; i++) /* blocks of very different scales */
            x[i] *= (float)(1 << (i / 32 % 7)) / 8.0f;
        if (n >= 96) {
            for (int j = 0; j < 32; j++) /* block 1: d = 1, ties at .5 go to even */
                x[32 + j] = j == 0 ? 127.0f : (float)(j % 8) - 3.5f;
            for (int j = 0; j < 32; j++) /* block 2: all zero */
                x[64 + j] = 0.0f;
        }
        if (n >= 13)
            x[3] = 1e-40f, x[4] = -1e-40f, x[5] = -0.0f, x[6] = 3.0e38f;
        if (n % 32 == 0) {
            const size_t qb = LMP_XQ8_BYTES(n);
            uint8_t *q0 = malloc(qb), *q1 = malloc(qb);
            ref->quant_q8(x, n, q0);
            double *xr = malloc(sizeof(double) * n);
            round_act(LMP_ACT_Q8, x, n, xr);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += xr[i] != (double)((const int8_t *)q0)[i] * lmp_xq8_d(q0, n)[i / 32];
            for (int64_t b = 0; b < n / 32; b++) {
                int32_t sum = 0;
                for (int j = 0; j < 32; j++)
                    sum += ((const int8_t *)q0)[32 * b + j];
                bad += sum != lmp_xq8_s(q0, n)[b];
            }
            CHECK(bad == 0, "q8 activations n=%ld: reference differs from the definition at %ld "
                  "places", (long)n, (long)bad);
            for (int i = 0; i < nisa; i++) {
                memset(q1, 0xee, qb);
                lmp_k_impl(isas[i])->quant_q8(x, n, q1);
                CHECK(memcmp(q0, q1, qb) == 0, "q8 activations %s n=%ld: not bitwise the "
                      "reference", lmp_isa_name(isas[i]), (long)n);
            }
            free(q0), free(q1), free(xr);
        }
        if (n % 256 == 0) { /* Q8K: one scale per 256 values, int16 sums per 16 */
            const size_t qb = LMP_XQ8K_BYTES(n);
            uint8_t *q0 = malloc(qb), *q1 = malloc(qb);
            ref->quant_q8k(x, n, q0);
            double *xr = malloc(sizeof(double) * n);
            round_act(LMP_ACT_Q8K, x, n, xr);
            int64_t bad = 0;
            for (int64_t i = 0; i < n; i++)
                bad += xr[i] != (double)((const int8_t *)q0)[i] * lmp_xq8k_d(q0, n)[i / 256];
            for (int64_t b = 0; b < n / 16; b++) {
                int32_t sum = 0;
                for (int j = 0; j < 16; j++)
                    sum += ((const int8_t *)q0)[16 * b + j];
                bad += sum != lmp_xq8k_s(q0, n)[b];
            }
            CHECK(bad == 0, "q8k activations n=%ld: reference differs from the definition at %ld "
                  "places", (long)n, (long)bad);
            for (int i = 0; i < nisa; i++) {
                memset(q1, 0xee, qb);
                lmp_k_impl(isas[i])->quant_q8k(x, n, q1);
                CHECK(memcmp(q0, q1, qb) == 0, "q8k activations %s n=%ld: not bitwise the "
                      "reference", lmp_isa_name(isas[i]), (long)n);
            }
            free(q0), free(q1), free(xr);
        }
        if (n >= 13)
            x[7] = NAN, x[8] = -INFINITY, x[9] = 1.00390625f /* tie: 1 + 2^-8 */;
        uint16_t *h0 = malloc(2 * n), *h1 = malloc(2 * n);
        ref->to_bf16(x, n, h0);
        for (int i = 0; i < nisa; i++) {
            memset(h1, 0xee, 2 * n);
            lmp_k_impl(isas[i])->to_bf16(x, n, h1);
            int64_t first = -1;
            for (int64_t j = 0; j < n && first < 0; j++)
                if (h0[j] != h1[j])
                    first = j;
            CHECK(first < 0, "bf16 activations %s n=%ld: differ from the reference at %ld "
                  "(x %.9g: %04x, want %04x)", lmp_isa_name(isas[i]), (long)n, (long)first,
                  first >= 0 ? x[first] : 0.0, first >= 0 ? h1[first] : 0,
                  first >= 0 ? h0[first] : 0);
        }
        /* f16: bitwise the reference, which is lmp_f32_to_f16 (nearest even, f16
         * subnormals kept); overflow reported exactly when a finite x became Inf */
        if (n >= 13)
            x[6] = 65504.0f /* f16 max (3e38 above) */, x[10] = 65519.0f /* rounds to it */,
            x[11] = 6.0e-8f /* f16 subnormal */, x[12] = 0x1p-25f /* half the least: a tie, to 0 */;
        ref->to_f16(x, n, h0);
        int64_t bad = 0;
        for (int64_t j = 0; j < n; j++)
            bad += h0[j] != lmp_f32_to_f16(x[j]);
        const int ref_over = ref->to_f16(x, n, h0);
        CHECK(bad == 0 && ref_over == 0, "f16 activations n=%ld: reference differs from "
              "lmp_f32_to_f16 at %ld places (overflow %d)", (long)n, (long)bad, ref_over);
        for (int i = 0; i < nisa; i++) {
            memset(h1, 0xee, 2 * n);
            const int over = lmp_k_impl(isas[i])->to_f16(x, n, h1);
            CHECK(over == 0 && memcmp(h0, h1, 2 * n) == 0, "f16 activations %s n=%ld: not "
                  "bitwise the reference (overflow %d)", lmp_isa_name(isas[i]), (long)n, over);
            /* one finite value past the f16 range, anywhere (SIMD body or tail) */
            const int64_t at = (int64_t)(t * 7) % n;
            const float keep = x[at];
            x[at] = -65520.0f;
            CHECK(lmp_k_impl(isas[i])->to_f16(x, n, h1) != 0, "f16 activations %s n=%ld: "
                  "overflow at %ld not reported", lmp_isa_name(isas[i]), (long)n, (long)at);
            x[at] = keep;
        }
        free(h0), free(h1), free(x);
    }
}

/* f16 weights: X with a finite value past the f16 range runs on f32 activations (the
 * product equals exact mode's bitwise), in every path: one row (lmp_gemm and the team),
 * a few rows, and the batched one. */
static void test_f16_overflow(const lmp_isa *isas, int nisa)
{
    static const shape sh[] = {{1, 67, 96}, {3, 40, 512}, {40, 33, 512}};
    for (size_t s = 0; s < sizeof sh / sizeof *sh; s++) {
        const int64_t M = sh[s].M, N = sh[s].N, K = sh[s].K;
        lmp_rng r;
        lmp_rng_seed(&r, SEED + 77 + s);
        float *X = malloc(sizeof(float) * M * K), *Wf = malloc(sizeof(float) * N * K);
        float *Y1 = malloc(sizeof(float) * M * N), *Y2 = malloc(sizeof(float) * M * N);
        uint16_t *Wh = malloc(2 * N * K);
        fill_normal(&r, X, M * K, 1.0f);
        fill_normal(&r, Wf, N * K, 0.05f);
        lmp_f32_to_f16_row(Wf, Wh, N * K);
        X[(M - 1) * K + K / 2] = 1.0e5f; /* the last row only */
        const lmp_wmat W = {LMP_DT_F16, N, K, Wh, 2 * (size_t)K, NULL, LMP_WL_ROWS};
        for (int i = 0; i < nisa; i++) {
            lmp_kernels_set_isa(isas[i]);
            lmp_gemm_set_exact(true);
            lmp_gemm(Y1, X, &W, NULL, M);
            lmp_gemm_set_exact(false);
            lmp_gemm(Y2, X, &W, NULL, M);
            bool finite = true;
            for (int64_t j = 0; j < M * N; j++)
                finite = finite && isfinite(Y2[j]);
            CHECK(finite && memcmp(Y1, Y2, sizeof(float) * M * N) == 0,
                  "f16/%s M=%ld: overflowing X not run on f32 activations", lmp_isa_name(isas[i]),
                  (long)M);
            if (M == 1)
                CHECK(team_equal(&W, X, NULL), "f16/%s: overflowing X: lmp_gemv_team differs "
                      "from lmp_gemm", lmp_isa_name(isas[i]));
        }
        free(X), free(Wf), free(Y1), free(Y2), free(Wh);
    }
    lmp_kernels_set_isa(LMP_ISA_AUTO);
}

/* Every variant's decoder (to_f32, the source of the f32 weight panels) gives the dtype
 * table's dequantized values bitwise, at a block offset too. */
static void test_decoders(const lmp_isa *isas, int nisa)
{
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 9);
    const int64_t K = 1024;
    float *x = malloc(sizeof(float) * K), *want = malloc(sizeof(float) * K);
    float *got = malloc(sizeof(float) * K);
    fill_normal(&r, x, K, 0.05f);
    for (lmp_dtype dt = 0; dt < LMP_DT_COUNT; dt++) {
        const lmp_dtype_traits *t = lmp_dtype_info(dt);
        if (!lmp_gemm_supports(dt) || !t->from_f32)
            continue;
        uint8_t *w = malloc(lmp_dtype_row_bytes(dt, K));
        t->from_f32(x, w, K);
        t->to_f32(w, want, K);
        const int64_t k0 = t->block_size == 1 ? 32 : t->block_size; /* one block in */
        for (int i = 0; i < nisa; i++) {
            const lmp_kdt *d = &lmp_k_impl(isas[i])->dt[dt];
            memset(got, 0, sizeof(float) * K);
            d->to_f32(w, k0, K - k0, got);
            CHECK(memcmp(got, want + k0, sizeof(float) * (K - k0)) == 0,
                  "%s/%s to_f32: not bitwise the reference dequantizer", t->name,
                  lmp_isa_name(isas[i]));
        }
        free(w);
    }
    free(x), free(want), free(got);
}

/* Exact mode: f32 activations for every dtype (checked against the exact product). */
static void test_exact_mode(const lmp_isa *isas, int nisa)
{
    static const lmp_dtype dts[] = {LMP_DT_BF16, LMP_DT_F16, LMP_DT_Q8_0, LMP_DT_Q4_0};
    static const shape sh[] = {{1, 67, 96}, {3, 40, 512}, {130, 33, 512}};
    lmp_gemm_set_exact(true);
    CHECK(lmp_gemm_exact(), "exact mode on");
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        CHECK(lmp_k_act(dts[d]) == LMP_ACT_F32, "exact mode: f32 activations");
        for (int i = 0; i < nisa; i++) {
            lmp_kernels_set_isa(isas[i]);
            for (size_t s = 0; s < sizeof sh / sizeof *sh; s++)
                check_gemm(dts[d], isas[i], sh[s], s & 1, SEED + 31 * s + d);
        }
    }
    lmp_gemm_set_exact(false);
    CHECK(!lmp_gemm_exact() && lmp_k_act(LMP_DT_BF16) == LMP_ACT_BF16 &&
          lmp_k_act(LMP_DT_Q4_0) == LMP_ACT_Q8 && lmp_k_act(LMP_DT_F16) == LMP_ACT_F16 &&
          lmp_k_act(LMP_DT_F32) == LMP_ACT_F32 && lmp_k_act(LMP_DT_Q5_K) == LMP_ACT_F32 &&
          lmp_k_act(LMP_DT_Q4_K) ==
              (lmp_k_impl(lmp_kernels_isa())->dt[LMP_DT_Q4_K].dotq ? LMP_ACT_Q8 : LMP_ACT_F32),
          "default: rounded activations for bf16, f16 and q4_0 (q4_K where the variant has its "
          "integer dot), f32 for f32 and q5_K");
    for (int i = 0; i < nisa; i++) { /* f16: rounded only where the weights stream */
        lmp_kernels_set_isa(isas[i]);
        const bool tiled = lmp_k_impl(isas[i])->ukr != NULL;
        CHECK(lmp_k_act_m(LMP_DT_F16, 1) == LMP_ACT_F16 && lmp_k_act_m(LMP_DT_F16, 15) == LMP_ACT_F16 &&
              lmp_k_act_m(LMP_DT_F16, 16) == (tiled ? LMP_ACT_F32 : LMP_ACT_F16) &&
              lmp_k_act_m(LMP_DT_BF16, 512) == LMP_ACT_BF16,
              "%s: f16 activations rounded below 16 rows only", lmp_isa_name(isas[i]));
    }
    lmp_kernels_set_isa(LMP_ISA_AUTO);
}

/* ---------------------------------------------------------------- low-bit dots */

/* The low-bit types' Q8- and Q8K-activation dots (kernels_lowbit.h, kernels_lowbit.c) on
 * rows of random bytes, so
 * that every grid point, sign pattern, shift, trit byte and crumb is reached (not only
 * the codes a quantizer picks), with sane random scale fields: every variant's dotq (and
 * dotq4) against the exact sum over the dtype table's dequantized weights times the
 * rounded activations, and against the reference dotq, within TOL_GEMM * sum |w x|. */
static uint16_t rand_scale_f16(lmp_rng *r)
{
    const uint64_t v = lmp_rng_next(r);
    return lmp_f32_to_f16((float)(v % 4096 + 1) * 2e-5f * (v & 4096 ? -1.0f : 1.0f));
}

static void lowbit_random_row(lmp_dtype dt, lmp_rng *r, uint8_t *w, int64_t n)
{
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    const int64_t nb = n / t->block_size;
    for (size_t i = 0; i < nb * t->type_size; i++)
        w[i] = (uint8_t)lmp_rng_next(r);
    for (int64_t i = 0; i < nb; i++) {
        uint8_t *b = w + i * t->type_size;
        uint16_t h = rand_scale_f16(r);
        size_t at = 0; /* offset of the f16 scale */
        switch (dt) {
        case LMP_DT_TQ2_0: at = offsetof(lmp_block_tq2_0, d); break;
        case LMP_DT_TQ1_0: at = offsetof(lmp_block_tq1_0, d); break;
        case LMP_DT_MXFP4: b[0] = (uint8_t)(100 + lmp_rng_next(r) % 40); continue; /* E8M0 */
        case LMP_DT_Q6_K: at = offsetof(lmp_block_q6_k, d); break;
        case LMP_DT_Q4_K: { /* d, then dmin */
            const uint16_t hm = rand_scale_f16(r);
            memcpy(b + offsetof(lmp_block_q4_k, dmin), &hm, 2);
            break;
        }
        case LMP_DT_IQ1_M: { /* the f16 spread over the top nibbles of the four scales */
            uint16_t sc[4];
            memcpy(sc, b + offsetof(lmp_block_iq1_m, scales), 8);
            for (int k = 0; k < 4; k++)
                sc[k] = (uint16_t)((sc[k] & 0x0fff) | (((h >> 4 * k) & 15) << 12));
            memcpy(b + offsetof(lmp_block_iq1_m, scales), sc, 8);
            continue;
        }
        default: break; /* the others start with d */
        }
        memcpy(b + at, &h, 2);
    }
}

static void test_lowbit_dots(const lmp_isa *isas, int nisa)
{
    static const lmp_dtype dts[] = {LMP_DT_IQ4_NL, LMP_DT_IQ4_XS, LMP_DT_MXFP4, LMP_DT_TQ1_0,
                                    LMP_DT_TQ2_0,  LMP_DT_Q1_0,   LMP_DT_Q2_0,  LMP_DT_IQ3_XXS,
                                    LMP_DT_IQ3_S,  LMP_DT_IQ2_XXS, LMP_DT_IQ2_XS, LMP_DT_IQ2_S,
                                    LMP_DT_IQ1_S,  LMP_DT_IQ1_M,  LMP_DT_Q4_K,  LMP_DT_Q6_K};
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 21);
    const lmp_kimpl *ref = lmp_k_impl(LMP_ISA_REF);
    for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
        const lmp_dtype dt = dts[d];
        const lmp_dtype_traits *t = lmp_dtype_info(dt);
        const int64_t bs = t->block_size;
        const int64_t ns[2] = {3 * bs, bs == 256 ? 1024 : 32 * bs}; /* odd and even block counts */
        /* the super-block types IQ4_XS, IQ3_S, IQ2_XS take Q8K rows (one scale per 256) */
        const bool q8k = ref->dt[dt].q8k;
        CHECK(q8k == (dt == LMP_DT_IQ4_XS || dt == LMP_DT_IQ3_S || dt == LMP_DT_IQ2_XS),
              "%s: Q8K activations exactly for iq4_xs, iq3_s, iq2_xs", t->name);
        double worst[3] = {0, 0, 0};
        int64_t nbad = 0, nchk = 0;
        for (int s = 0; s < 2; s++) {
            const int64_t n = ns[s];
            const size_t rb = lmp_dtype_row_bytes(dt, n);
            uint8_t *w = malloc(4 * rb), *xq = malloc(q8k ? LMP_XQ8K_BYTES(n) : LMP_XQ8_BYTES(n));
            float *x = malloc(sizeof(float) * n), *wd = malloc(sizeof(float) * n);
            double *exact = malloc(sizeof(double) * 4), *mag = malloc(sizeof(double) * 4);
            for (int rep = 0; rep < 8; rep++) {
                fill_normal(&r, x, n, 1.0f);
                for (int64_t k = 0; k < n; k++) /* blocks of different scales */
                    x[k] *= (float)(1 << (k / 32 % 5)) / 4.0f;
                if (q8k)
                    ref->quant_q8k(x, n, xq);
                else
                    ref->quant_q8(x, n, xq);
                const float *xd = q8k ? lmp_xq8k_d(xq, n) : lmp_xq8_d(xq, n);
                const int xblk = q8k ? 256 : 32;
                for (int row = 0; row < 4; row++) {
                    lowbit_random_row(dt, &r, w + row * rb, n);
                    t->to_f32(w + row * rb, wd, n);
                    exact[row] = mag[row] = 0;
                    for (int64_t k = 0; k < n; k++) {
                        const double xv = (double)((const int8_t *)xq)[k] * xd[k / xblk];
                        exact[row] += (double)wd[k] * xv;
                        mag[row] += fabs((double)wd[k] * xv);
                    }
                }
                const float want0 = ref->dt[dt].dotq(w, xq, n);
                for (int i = 0; i < nisa; i++) {
                    const lmp_kdt *kd = &lmp_k_impl(isas[i])->dt[dt];
                    if (!kd->dotq) /* q4_K / q6_K without VNNI: f32 activations */
                        continue;
                    float got[4];
                    for (int row = 0; row < 4; row++)
                        got[row] = kd->dotq(w + row * rb, xq, n);
                    const double e0 = fabs(got[0] - exact[0]) / (mag[0] > 0 ? mag[0] : 1);
                    const double e1 = fabs((double)got[0] - want0) / (mag[0] > 0 ? mag[0] : 1);
                    double e = e0 > e1 ? e0 : e1;
                    if (kd->dotq4) {
                        float g4[4];
                        kd->dotq4(w, rb, xq, n, g4);
                        for (int row = 0; row < 4; row++) {
                            const double e4 = fabs(g4[row] - exact[row]) / (mag[row] > 0 ? mag[row] : 1);
                            e = e4 > e ? e4 : e;
                        }
                    }
                    for (int row = 1; row < 4; row++) {
                        const double er = fabs(got[row] - exact[row]) / (mag[row] > 0 ? mag[row] : 1);
                        e = er > e ? er : e;
                    }
                    nchk++;
                    if (!(e <= TOL_GEMM) && nbad++ < 3)
                        fprintf(stderr, "  %s/%s n=%ld: dotq %.9g, reference %.9g, exact %.9g (rel %.3g)\n",
                                t->name, lmp_isa_name(isas[i]), (long)n, got[0], want0, exact[0], e);
                    if (!(e <= worst[i]))
                        worst[i] = e;
                }
            }
            free(w), free(xq), free(x), free(wd), free(exact), free(mag);
        }
        CHECK(nbad == 0, "%s: %ld of %ld random-byte dots outside %.0e * sum|w x| (worst ref %.2e, "
              "avx2 %.2e, avx512 %.2e)", t->name, (long)nbad, (long)nchk, TOL_GEMM, worst[0],
              nisa > 1 ? worst[1] : 0.0, nisa > 2 ? worst[2] : 0.0);
        /* the k-quants have integer dots only with AVX-512 VNNI (f32 activations else);
         * the IQ super-block types with the per-256 format run on Q8K */
        const bool kq = dt == LMP_DT_Q4_K || dt == LMP_DT_Q6_K;
        CHECK(lmp_k_act(dt) == (q8k ? LMP_ACT_Q8K : LMP_ACT_Q8) ||
                  (kq && !lmp_k_impl(lmp_kernels_isa())->dt[dt].dotq && lmp_k_act(dt) == LMP_ACT_F32),
              "%s computes on Q8%s activations", t->name, q8k ? "K" : "");
        printf("lowbit dotq %-7s random bytes: worst |err| / sum|w x|", t->name);
        for (int i = 0; i < nisa; i++)
            printf(" %s %.2e", lmp_isa_name(isas[i]), worst[i]);
        printf("\n");
    }
}

/* f16 weights on F16 activations, the four-row dot (one pass over X for four rows): each
 * row's sum does not depend on the row's position among the four (bitwise: every row has
 * its own accumulators, fed in one order) and is within 1e-6 * sum |w x| of the single-row
 * dot, on every variant that has both, at lengths with and without 64- and 16-element tails. */
static void test_f16_dotq4_rows(const lmp_isa *isas, int nisa)
{
    static const int64_t ns[] = {16, 40, 64, 100, 1152, 3072, 3079};
    lmp_rng r;
    lmp_rng_seed(&r, SEED + 41);
    for (int i = 0; i < nisa; i++) {
        const lmp_kdt *kd = &lmp_k_impl(isas[i])->dt[LMP_DT_F16];
        if (!kd->dotq || !kd->dotq4)
            continue;
        int bad = 0;
        for (size_t s = 0; s < sizeof ns / sizeof *ns; s++) {
            const int64_t n = ns[s];
            float *x = malloc(sizeof(float) * n), *w = malloc(sizeof(float) * n);
            uint16_t *xa = malloc(2 * n), *wh = malloc(2 * 4 * n), *rot = malloc(2 * 4 * n);
            double mag[4] = {0, 0, 0, 0};
            fill_normal(&r, x, n, 1.0f);
            for (int64_t k = 0; k < n; k++)
                xa[k] = lmp_f32_to_f16(x[k]);
            for (int row = 0; row < 4; row++) {
                fill_normal(&r, w, n, 0.1f);
                for (int64_t k = 0; k < n; k++) {
                    wh[row * n + k] = lmp_f32_to_f16(w[k]);
                    mag[row] += fabs((double)lmp_f16_to_f32(wh[row * n + k]) * lmp_f16_to_f32(xa[k]));
                }
            }
            float four[4], turned[4];
            kd->dotq4(wh, 2 * (size_t)n, xa, n, four);
            for (int row = 0; row < 4; row++) /* rows rotated by one position */
                memcpy(rot + ((row + 1) % 4) * n, wh + row * n, 2 * (size_t)n);
            kd->dotq4(rot, 2 * (size_t)n, xa, n, turned);
            for (int row = 0; row < 4; row++) {
                const float one = kd->dotq(wh + row * n, xa, n);
                const bool same = memcmp(&four[row], &turned[(row + 1) % 4], sizeof(float)) == 0;
                if ((!same || !(fabs((double)four[row] - one) <= 1e-6 * mag[row])) && bad++ < 3)
                    fprintf(stderr, "  f16 dotq4 %s n=%ld row %d: %.9g (moved: %.9g), dotq %.9g\n",
                            lmp_isa_name(isas[i]), (long)n, row, four[row],
                            turned[(row + 1) % 4], one);
            }
            free(x), free(w), free(xa), free(wh), free(rot);
        }
        CHECK(bad == 0, "f16 dotq4: rows independent of their position, within 1e-6 of dotq (%s)",
              lmp_isa_name(isas[i]));
    }
}

/* ---------------------------------------------------------------- helpers */

static double relerr(double got, double want, double scale)
{
    return fabs(got - want) / (scale > 0 ? scale : 1.0);
}

static void test_helpers(lmp_isa isa, uint64_t seed)
{
    static const int64_t ns[] = {0, 1, 7, 16, 33, 100, 1000};
    const char *nm = lmp_isa_name(isa);
    lmp_kernels_set_isa(isa);
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        const int64_t n = ns[t];
        float *a = malloc(sizeof(float) * (n + 1)), *b = malloc(sizeof(float) * (n + 1));
        float *y = malloc(sizeof(float) * (n + 1)), *w = malloc(sizeof(float) * (n + 1));
        fill_normal(&r, a, n, 2.0f);
        fill_normal(&r, b, n, 1.0f);
        fill_normal(&r, w, n, 1.0f);
        double worst;

        /* dot */
        double e = 0, mag = 0;
        for (int64_t i = 0; i < n; i++)
            e += (double)a[i] * b[i], mag += fabs((double)a[i] * b[i]);
        CHECK(relerr(lmp_dot_f32(a, b, n), e, mag) <= TOL_HELPER, "%s dot n=%ld", nm, (long)n);

        /* axpy */
        memcpy(y, b, sizeof(float) * n);
        lmp_axpy_f32(y, 0.75f, a, n);
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = b[i] + 0.75 * a[i];
            double er = relerr(y[i], want, fabs(b[i]) + fabs(0.75 * a[i]));
            worst = er > worst ? er : worst;
        }
        CHECK(worst <= TOL_HELPER, "%s axpy n=%ld: worst %.3g", nm, (long)n, worst);

        /* rmsnorm, also in place */
        double ss = 0;
        for (int64_t i = 0; i < n; i++)
            ss += (double)a[i] * a[i];
        double sc = 1.0 / sqrt(ss / (n ? n : 1) + 1e-5);
        lmp_rmsnorm(y, a, w, n, 1e-5f);
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = a[i] * sc * w[i];
            double er = relerr(y[i], want, fabs(want));
            worst = er > worst ? er : worst;
        }
        memcpy(b, a, sizeof(float) * n);
        lmp_rmsnorm(b, b, w, n, 1e-5f);
        CHECK(worst <= TOL_HELPER && memcmp(b, y, sizeof(float) * n) == 0,
              "%s rmsnorm n=%ld: worst %.3g", nm, (long)n, worst);

        /* silu_mul (gate values spanning the exp range, including saturation) */
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i] * 10.0f;
        if (n > 3)
            y[0] = -200.0f, y[1] = 200.0f, y[2] = 0.0f;
        memcpy(b, y, sizeof(float) * n);
        lmp_silu_mul(y, w, n);
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double g = b[i], want = g / (1.0 + exp(-g)) * w[i];
            double er = relerr(y[i], want, fabs(want) + 1e-30);
            worst = er > worst ? er : worst;
        }
        CHECK(worst <= TOL_HELPER, "%s silu_mul n=%ld: worst %.3g", nm, (long)n, worst);

        /* gelu_mul (tanh approximation) against the formula in double, gate values up to
         * +-200 (saturation on both sides) */
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i] * 4.0f;
        if (n > 3)
            y[0] = -200.0f, y[1] = 200.0f, y[2] = 0.0f;
        memcpy(b, y, sizeof(float) * n);
        lmp_gelu_mul(y, w, n);
        worst = 0;
        for (int64_t i = 0; i < n; i++) {
            double g = b[i];
            double want = 0.5 * g * (1.0 + tanh(0.7978845608028654 * (g + 0.044715 * g * g * g))) * w[i];
            /* against |g u|: for g << 0 the reference's 1 + tanhf(z) cancels */
            double er = relerr(y[i], want, fabs(g * w[i]) + 1e-30);
            worst = er > worst ? er : worst;
        }
        CHECK(worst <= TOL_HELPER, "%s gelu_mul n=%ld: worst %.3g", nm, (long)n, worst);

        /* softmax with a -inf entry and a wide range */
        for (int64_t i = 0; i < n; i++)
            y[i] = a[i] * 20.0f;
        if (n > 2)
            y[1] = -INFINITY;
        memcpy(b, y, sizeof(float) * n);
        double mx = -INFINITY, se = 0;
        for (int64_t i = 0; i < n; i++)
            mx = b[i] > mx ? b[i] : mx;
        for (int64_t i = 0; i < n; i++)
            se += exp((double)b[i] - mx);
        lmp_softmax_f32(y, n);
        worst = 0;
        double tot = 0;
        for (int64_t i = 0; i < n; i++) {
            double want = exp((double)b[i] - mx) / se;
            double er = fabs(y[i] - want) / (want > 1e-30 ? want : 1.0);
            if (want < 1e-30) /* underflow region: absolute */
                er = fabs(y[i]) > 1e-30 ? 1 : 0;
            worst = er > worst ? er : worst;
            tot += y[i];
        }
        CHECK(worst <= TOL_HELPER && (n == 0 || fabs(tot - 1) < 1e-5),
              "%s softmax n=%ld: worst %.3g, sum %.8g", nm, (long)n, worst, tot);

        /* logsumexp */
        double lse = lmp_logsumexp_f32(b, n);
        double want = n ? mx + log(se) : -INFINITY;
        CHECK((n == 0 && lse == -INFINITY) || fabs(lse - want) <= 1e-6 * (1 + fabs(want)),
              "%s logsumexp n=%ld: %.10g want %.10g", nm, (long)n, lse, want);
        free(a), free(b), free(y), free(w);
    }
}

/* One case of test_repack: dtype dt (q4_0 or iq4_nl) from rounded normal rows, or (rnd)
 * rows of random bytes: every nibble, scales 2^-7 .. 2^-5 of either sign. */
static void repack_case(const lmp_isa *isas, int nisa, lmp_dtype dt, bool rnd, shape sh,
                        uint64_t seed)
{
    const char *dn = lmp_dtype_info(dt)->name;
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    const int64_t M = sh.M, N = sh.N, K = sh.K;
    const size_t rb = lmp_dtype_row_bytes(dt, K);
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    float *X = malloc(sizeof(float) * M * K), *Wf = malloc(sizeof(float) * K);
    float *bias = malloc(sizeof(float) * N), *Y1 = malloc(sizeof(float) * M * N);
    float *Y2 = malloc(sizeof(float) * M * N), *f1 = malloc(sizeof(float) * K);
    float *f2 = malloc(sizeof(float) * K);
    uint8_t *Wq = malloc(rb * N), *back = malloc(rb * N);
    fill_normal(&r, X, M * K, 1.0f);
    fill_normal(&r, bias, N, 0.5f);
    for (int64_t n = 0; n < N; n++) {
        fill_normal(&r, Wf, K, 0.05f);
        t->from_f32(Wf, Wq + n * rb, K);
    }
    if (rnd) /* any nibbles; scales of 2^-7 .. 2^-5 (f16 exponents 8..10) */
        for (size_t i = 0; i < rb * N; i += 18) {
            for (int j = 0; j < 16; j++)
                Wq[i + 2 + j] = (uint8_t)lmp_rng_next(&r);
            const uint64_t e = 8 + lmp_rng_next(&r) % 3;
            const uint16_t h = (uint16_t)(e << 10 | (lmp_rng_next(&r) & 0x83ff));
            memcpy(Wq + i, &h, 2);
        }
    const lmp_wmat W = {dt, N, K, Wq, rb, NULL, LMP_WL_ROWS};
    lmp_wmat P = W;
    void *buf = NULL;
    int rc = lmp_wmat_repack(&P, &buf);
    CHECK(rc == 0 && P.layout == LMP_WL_Q4_0X16 && P.data == buf && buf != Wq,
          "repack %s [%ld, %ld]: %s", dn, (long)N, (long)K, lmp_errmsg());
    if (rc) {
        free(X), free(Wf), free(bias), free(Y1), free(Y2), free(f1), free(f2), free(Wq), free(back);
        return;
    }
    CHECK(memcmp(buf, Wq, rb * N) != 0 || N * K == 0, "repacked bytes are reordered");
    lmp_k_x16_rows(&P, 0, (int)N, 0, K / 32, back);
    CHECK(memcmp(back, Wq, rb * N) == 0, "%s [%ld, %ld]: rows read back differ", dn, (long)N, (long)K);
    bool rows_ok = true;
    for (int64_t n = 0; n < N; n++) {
        lmp_wmat_row_f32(&W, n, f1);
        lmp_wmat_row_f32(&P, n, f2);
        rows_ok = rows_ok && memcmp(f1, f2, sizeof(float) * K) == 0;
    }
    CHECK(rows_ok, "%s [%ld, %ld]: lmp_wmat_row_f32 differs between layouts", dn, (long)N, (long)K);
    for (int i = 0; i < nisa; i++) {
        lmp_kernels_set_isa(isas[i]);
        for (int exact = 0; exact < 2; exact++) {
            lmp_gemm_set_exact(exact);
            lmp_set_num_threads(2);
            const float *b = (seed & 1) ? bias : NULL;
            lmp_gemm(Y1, X, &W, b, M);
            lmp_gemm(Y2, X, &P, b, M);
            /* bitwise where both layouts run the same arithmetic: the reference
             * (its interleaved kernel is its row kernel per row), and the batched
             * path (panels packed from the rows read back); the SIMD row kernels
             * sum in other orders than the interleaved one */
            const bool bitwise = isas[i] == LMP_ISA_REF || M >= 16;
            double worst = 0;
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double mag = b ? fabs(b[n]) : 0;
                    lmp_wmat_row_f32(&W, n, f1);
                    for (int64_t k = 0; k < K; k++)
                        mag += fabs((double)X[m * K + k] * f1[k]);
                    const double e = fabs((double)Y1[m * N + n] - Y2[m * N + n]) / (mag > 0 ? mag : 1);
                    worst = e > worst || e != e ? e : worst;
                }
            if (bitwise)
                CHECK(memcmp(Y1, Y2, sizeof(float) * M * N) == 0,
                      "%sx16/%s exact=%d M=%ld N=%ld K=%ld: not bitwise equal to the rows",
                      dn, lmp_isa_name(isas[i]), exact, (long)M, (long)N, (long)K);
            else
                CHECK(worst <= TOL_GEMM, "%sx16/%s M=%ld N=%ld K=%ld: rel diff %.3g from the rows",
                      dn, lmp_isa_name(isas[i]), (long)M, (long)N, (long)K, worst);
            CHECK(team_equal(&P, X, b), "%sx16/%s exact=%d N=%ld K=%ld: lmp_gemv_team differs "
                  "from lmp_gemm M=1", dn, lmp_isa_name(isas[i]), exact, (long)N, (long)K);
        }
        lmp_gemm_set_exact(false);
    }
    free(buf);
    free(X), free(Wf), free(bias), free(Y1), free(Y2), free(f1), free(f2), free(Wq), free(back);
}

/* q4_0 and iq4_nl repacked into the interleaved layout (kernels.h: LMP_WL_Q4_0X16): the
 * same rows read back; lmp_gemm on it equal to lmp_gemm on the rows: bitwise for the
 * reference (same arithmetic per row) and for every variant's batched path (its panels
 * are packed from the rows read back), within f32 accumulation order for the SIMD
 * decoding kernel; lmp_gemv_team bitwise equal to lmp_gemm M = 1 for 1-3 threads; exact
 * mode too. iq4_nl also on rows of random bytes (every code in every lane and nibble). */
static void test_repack(const lmp_isa *isas, int nisa)
{
    static const shape shapes[] = {{1, 16, 32}, {1, 48, 96}, {3, 32, 256}, {1, 64, 2048},
                                   {17, 48, 96}, {40, 32, 512}, {2, 16, 2080}, {1, 32, 576}};
    const size_t nshape = sizeof shapes / sizeof *shapes;
    for (size_t si = 0; si < nshape; si++) {
        repack_case(isas, nisa, LMP_DT_Q4_0, false, shapes[si], SEED + 500 + si);
        repack_case(isas, nisa, LMP_DT_IQ4_NL, false, shapes[si], SEED + 520 + si);
        repack_case(isas, nisa, LMP_DT_IQ4_NL, true, shapes[si], SEED + 540 + si);
    }
    lmp_kernels_set_isa(LMP_ISA_AUTO);
    /* when: q4_0 with rows in groups of 16, a variant whose kernel pays, not disabled */
    uint8_t q[16 * 18] = {0};
    lmp_wmat w = {LMP_DT_Q4_0, 16, 32, q, 18, NULL, LMP_WL_ROWS};
    const bool simd = lmp_k_impl(lmp_kernels_isa())->q4x16_simd;
    CHECK(lmp_wmat_repack_wanted(&w) == simd, "repack wanted iff the variant has the kernel (%d)", simd);
    setenv("LMP_Q4_REPACK", "0", 1);
    CHECK(!lmp_wmat_repack_wanted(&w), "LMP_Q4_REPACK=0 turns repacking off");
    unsetenv("LMP_Q4_REPACK");
    lmp_wmat w15 = w, w8 = w;
    w15.rows = 15;
    w8.dtype = LMP_DT_Q8_0;
    w8.row_bytes = 34;
    CHECK(!lmp_wmat_repack_wanted(&w15) && !lmp_wmat_repack_wanted(&w8), "15 rows or q8_0: no repack");
    lmp_wmat wnl = w;
    wnl.dtype = LMP_DT_IQ4_NL;
    const bool simd_nl = lmp_k_impl(lmp_kernels_isa())->iq4nlx16_simd;
    CHECK(lmp_wmat_repack_wanted(&wnl) == simd_nl,
          "iq4_nl repack wanted iff the variant has the kernel (%d)", simd_nl);
    void *buf = (void *)1;
    CHECK(lmp_wmat_repack(&w15, &buf) != 0 && buf == NULL && w15.layout == LMP_WL_ROWS,
          "repack refuses 15 rows");
    if (simd)
        printf("x16 repack: %zu shapes x (q4_0, iq4_nl, iq4_nl random bytes) checked against "
               "the row layout\n", nshape);
}

/* The batched path with rows of X owned by threads (kernels.c: LMP_K_OWN_ROWS) forced on
 * small shapes: bitwise equal to one thread for 2, 3 and 4 threads, repeated (a thread
 * done with its own rows takes another's; 4 threads on a 2-core machine make that
 * common), including several L2 row blocks per thread, partial tiles and strips, and
 * several K blocks. */
static void test_own_rows(const lmp_isa *isas, int nisa)
{
    static const shape shapes[] = {{130, 67, 96}, {300, 100, 600}, {61, 33, 512}, {1100, 40, 64}};
    static const lmp_dtype dts[] = {LMP_DT_F32, LMP_DT_F16, LMP_DT_BF16, LMP_DT_Q8_0, LMP_DT_Q4_0};
    const int64_t saved = lmp_k_set_own_rows(0);
    int cases = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof *shapes; si++) {
        const int64_t M = shapes[si].M, N = shapes[si].N, K = shapes[si].K;
        lmp_rng r;
        lmp_rng_seed(&r, SEED + 700 + si);
        float *X = malloc(sizeof(float) * M * K), *Wf = malloc(sizeof(float) * N * K);
        float *bias = malloc(sizeof(float) * N), *Y1 = malloc(sizeof(float) * M * N);
        float *Y2 = malloc(sizeof(float) * M * N);
        fill_normal(&r, X, M * K, 1.0f);
        fill_normal(&r, Wf, N * K, 0.05f);
        fill_normal(&r, bias, N, 0.5f);
        for (size_t di = 0; di < sizeof dts / sizeof *dts; di++) {
            const lmp_dtype_traits *t = lmp_dtype_info(dts[di]);
            if (K % t->block_size)
                continue;
            const size_t rb = lmp_dtype_row_bytes(dts[di], K);
            uint8_t *Wq = malloc(rb * N);
            for (int64_t n = 0; n < N; n++)
                t->from_f32(Wf + n * K, Wq + n * rb, K);
            const lmp_wmat W = {dts[di], N, K, Wq, rb, NULL, LMP_WL_ROWS};
            const float *b = (si + di) & 1 ? bias : NULL;
            for (int i = 0; i < nisa; i++) {
                lmp_kernels_set_isa(isas[i]);
                lmp_k_set_own_rows(0);
                lmp_set_num_threads(1);
                lmp_gemm(Y1, X, &W, b, M);
                lmp_k_set_own_rows(1);
                bool same = true;
                for (int nt = 2; nt <= 4; nt++)
                    for (int rep = 0; rep < 3; rep++) {
                        lmp_set_num_threads(nt);
                        for (int64_t j = 0; j < M * N; j++)
                            Y2[j] = NAN;
                        lmp_gemm(Y2, X, &W, b, M);
                        same = same && memcmp(Y1, Y2, sizeof(float) * M * N) == 0;
                    }
                CHECK(same, "own rows %s/%s M=%ld N=%ld K=%ld: 2-4 threads differ from 1",
                      t->name, lmp_isa_name(isas[i]), (long)M, (long)N, (long)K);
                cases++;
            }
            free(Wq);
        }
        free(X), free(Wf), free(bias), free(Y1), free(Y2);
    }
    lmp_kernels_set_isa(LMP_ISA_AUTO);
    lmp_set_num_threads(2);
    lmp_k_set_own_rows(saved);
    printf("own rows: %d cases bitwise equal for 1-4 threads\n", cases);
}

/* Work shares (lmp_k_claim, lmp_k_share): the claim protocol step by step on one slot,
 * then every task of successive calls without barriers run exactly once for 1-4
 * threads, with and without a team, for several task and unit counts. */
static void count_range(void *ctx, int64_t lo, int64_t hi)
{
    _Atomic int *hits = ctx;
    for (int64_t i = lo; i < hi; i++)
        atomic_fetch_add(&hits[i], 1);
}

static void test_work_shares(void)
{
    lmp_k_slot s;
    atomic_init(&s.next, 0);
    s.calls = 0;
    CHECK(lmp_k_claim(&s, 1, 3, false) == -1, "a slot not yet opened gives nothing to others");
    CHECK(lmp_k_claim(&s, 1, 3, true) == 0, "the owner opens call 1 at unit 0");
    CHECK(lmp_k_claim(&s, 1, 3, false) == 1, "another thread takes unit 1");
    CHECK(lmp_k_claim(&s, 2, 3, false) == -1, "a later call does not reopen another's slot");
    CHECK(lmp_k_claim(&s, 1, 3, true) == 2, "the owner goes on with unit 2 of call 1");
    CHECK(lmp_k_claim(&s, 1, 3, true) == -1 && lmp_k_claim(&s, 1, 3, false) == -1,
          "nothing after the last unit");
    CHECK(lmp_k_claim(&s, 2, 1, true) == 0 && lmp_k_claim(&s, 1, 3, false) == -1,
          "an earlier call finds the slot moved on");
    CHECK(lmp_k_claim(&s, 4, 0, true) == -1, "an empty share gives nothing");

    static const int64_t counts[][2] = {{0, 1}, {1, 1}, {7, 1}, {7, 3}, {100, 1}, {100, 7},
                                        {1000, 16}, {5, 100}};
    lmp_team *team = lmp_team_new(4), *small = lmp_team_new(2);
    bool ok = team && small;
    for (size_t ci = 0; ok && ci < sizeof counts / sizeof *counts; ci++) {
        const int64_t ntask = counts[ci][0], unit = counts[ci][1];
        _Atomic int *hits = calloc(3 * (size_t)ntask + 1, sizeof *hits);
        for (int nt = 1; nt <= 4; nt++)
            for (int with = 0; with < 3; with++) {
                lmp_team *tm = with == 0 ? NULL : with == 1 ? team : small;
                for (int64_t i = 0; i < 3 * ntask; i++)
                    atomic_store(&hits[i], 0);
#pragma omp parallel num_threads(nt)
                for (int c = 0; c < 3; c++)
                    lmp_k_share(tm, ntask, unit, count_range, hits + c * ntask);
                for (int64_t i = 0; i < 3 * ntask; i++)
                    ok = ok && atomic_load(&hits[i]) == 1;
                CHECK(ok, "work shares: %ld tasks in units of %ld, %d threads, team %d: a task "
                      "not run exactly once", (long)ntask, (long)unit, nt, with);
            }
        free(hits);
    }
    lmp_team_free(team);
    lmp_team_free(small);
}

int main(void)
{
    lmp_isa isas[3];
    int nisa = 0;
    for (lmp_isa i = LMP_ISA_REF; i <= LMP_ISA_AVX512; i++) {
        if (lmp_kernels_set_isa(i) == i)
            isas[nisa++] = i;
        else
            SKIP("variant %s: not available on this CPU", lmp_isa_name(i));
    }
    CHECK(!strcmp(lmp_isa_name(LMP_ISA_AVX2), "avx2"), "isa name");
    lmp_kernels_set_isa(LMP_ISA_AUTO);
    CHECK(lmp_kernels_isa() == isas[nisa - 1], "auto picks the best variant (%s)",
          lmp_isa_name(lmp_kernels_isa()));

    test_act_rounding(isas, nisa);
    test_decoders(isas, nisa);
    test_gemm(isas, nisa);
    test_lowbit_dots(isas, nisa);
    test_f16_dotq4_rows(isas, nisa);
    test_exact_mode(isas, nisa);
    test_f16_overflow(isas, nisa);
    test_repack(isas, nisa);
    test_own_rows(isas, nisa);
    test_work_shares();
    for (int i = 0; i < nisa; i++)
        test_helpers(isas[i], SEED + 77 + i);
    lmp_kernels_set_isa(LMP_ISA_AUTO);
    lmp_kernels_scratch_free();
    lmp_kernels_scratch_free(); /* twice is fine */
    return test_finish();
}
