/*
 * X^T X on bf16-rounded activations (lib/quant/gptq_bf16.c, bf16 calibration):
 * - against a float64 reference: the plain double sum over X rounded to bf16 (products
 *   exact; the kernel's only error is its f32 sums of at most 512 products, ~1e-6 of
 *   sqrt(S_ii S_jj)), and the double sum over X itself (the bf16 rounding of X: up to
 *   2^-8 relative per product, ~1e-3 of that scale on these sums, checked at 1e-2);
 * - the AVX-512 BF16 path (vdpbf16ps) against the portable one: the same bits, on
 *   ordinary values and on tiny ones whose sums flush to zero;
 * - 1, 2 and 3 threads: the same bits; beta / the running average of
 *   lmp_gptq_hessian_add_upper_bf16; an odd token count (the last pair padded); column
 *   counts off the 32 / 256 tiling;
 * - the error report's traces in f32 products against the double ones.
 */
#include "lib/quant/intquant.h"
#include "lib/infer/kernels.h"
#include "test.h"

#include <math.h>

static float *rand_x(int64_t n, int64_t c, uint64_t seed, float scale)
{
    lmp_rng rng;
    lmp_rng_seed(&rng, seed);
    float *X = malloc(sizeof(float) * (size_t)(n * c));
    for (int64_t i = 0; i < n; i++) {
        float common = lmp_rng_normal(&rng);
        for (int64_t j = 0; j < c; j++) /* correlated columns, a few large ones */
            X[i * c + j] = scale * (lmp_rng_normal(&rng) + 0.5f * common) * (j % 97 == 3 ? 6.0f : 1.0f);
    }
    return X;
}

static double bf(float x) /* x rounded to bf16 (nearest even), as the kernel does */
{
    return (double)lmp_bf16_to_f32(lmp_f32_to_bf16(x));
}

/* H (upper triangle) after syrk_acc_bf16 with alpha, beta on H = 1 everywhere; errors
 * against the double sums. */
static void test_reference(int64_t n, int64_t c, uint64_t seed)
{
    float *X = rand_x(n, c, seed, 1.0f);
    double *H = malloc(sizeof(double) * (size_t)(c * c));
    for (int64_t i = 0; i < c * c; i++)
        H[i] = 1.0;
    const double alpha = 0.5, beta = 0.25;
    CHECK(lmp_gptq_syrk_acc_bf16(H, c, X, n, alpha, beta) == 0, "%s", lmp_errmsg());
    double *d = calloc((size_t)c, sizeof(double));
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < c; j++)
            d[j] += (double)X[t * c + j] * X[t * c + j];
    double worst_b = 0, worst_x = 0;
    int lower = 0;
    for (int64_t i = 0; i < c; i += 7)
        for (int64_t j = 0; j < c; j += 5) {
            if (j < i) {
                lower += H[i * c + j] != 1.0;
                continue;
            }
            double sb = 0, sx = 0;
            for (int64_t t = 0; t < n; t++) {
                sb += bf(X[t * c + i]) * bf(X[t * c + j]);
                sx += (double)X[t * c + i] * X[t * c + j];
            }
            const double scale = alpha * sqrt(d[i] * d[j]);
            const double got = (H[i * c + j] - beta) / 1.0;
            const double eb = fabs(got - alpha * sb) / scale, ex = fabs(got - alpha * sx) / scale;
            worst_b = eb > worst_b ? eb : worst_b;
            worst_x = ex > worst_x ? ex : worst_x;
        }
    CHECK(worst_b < 1e-5, "[%lld x %lld] bf16-rounded X: worst error %.3g of sqrt(S_ii S_jj)", (long long)n,
          (long long)c, worst_b);
    CHECK(worst_x < 1e-2, "[%lld x %lld] unrounded X: worst error %.3g of sqrt(S_ii S_jj)", (long long)n,
          (long long)c, worst_x);
    CHECK(worst_x > 1e-6, "[%lld x %lld] unrounded X: error %.3g, X was not rounded to bf16?", (long long)n,
          (long long)c, worst_x);
    CHECK(lower == 0, "%d lower-triangle entries written", lower);
    printf("bf16 X^T X [%lld x %lld]: worst error %.2g (vs the bf16-rounded double sum), %.2g (vs f32 X)\n",
           (long long)n, (long long)c, worst_b, worst_x);
    free(X);
    free(H);
    free(d);
}

static double *run(const float *X, int64_t n, int64_t c, bool portable, int threads, double beta)
{
    double *H = malloc(sizeof(double) * (size_t)(c * c));
    for (int64_t i = 0; i < c * c; i++)
        H[i] = 0.5 + (double)(i % 11);
    lmp_gptq_bf16_force_portable(portable);
    lmp_set_num_threads(threads);
    int rc = lmp_gptq_syrk_acc_bf16(H, c, X, n, 1.0 / 3.0, beta);
    lmp_set_num_threads(0);
    lmp_gptq_bf16_force_portable(false);
    CHECK(rc == 0, "%s", lmp_errmsg());
    return H;
}

static void test_bits(int64_t n, int64_t c, float scale, uint64_t seed)
{
    float *X = rand_x(n, c, seed, scale);
    double *ref = run(X, n, c, true, 1, 0.75);
    if (lmp_gptq_bf16_native()) {
        for (int t = 1; t <= 3; t++) {
            double *H = run(X, n, c, false, t, 0.75);
            CHECK(memcmp(H, ref, sizeof(double) * (size_t)(c * c)) == 0,
                  "[%lld x %lld] scale %g: AVX-512 BF16 with %d threads differs from the portable path", (long long)n,
                  (long long)c, (double)scale, t);
            free(H);
        }
    } else {
        SKIP("no AVX-512 BF16 on this CPU: the portable path only");
    }
    for (int t = 2; t <= 3; t++) {
        double *H = run(X, n, c, true, t, 0.75);
        CHECK(memcmp(H, ref, sizeof(double) * (size_t)(c * c)) == 0,
              "[%lld x %lld]: portable path with %d threads differs from 1", (long long)n, (long long)c, t);
        free(H);
    }
    free(ref);
    free(X);
}

/* Tiny values: products and partial sums below FLT_MIN flush to zero on both paths. */
static void test_tiny(void)
{
    const int64_t n = 64, c = 40;
    float *X = rand_x(n, c, 9, 1e-19f);
    for (int64_t i = 0; i < n * c; i += 3)
        X[i] *= 1e-3f;
    double *a = run(X, n, c, true, 1, 0.0);
    int zeros = 0, nonzero = 0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = i; j < c; j++)
            zeros += a[i * c + j] == 0.0, nonzero += a[i * c + j] != 0.0;
    CHECK(zeros > 0 && nonzero > 0, "tiny values: %d flushed and %d kept sums (want some of each)", zeros, nonzero);
    if (lmp_gptq_bf16_native()) {
        double *b = run(X, n, c, false, 2, 0.0);
        CHECK(memcmp(a, b, sizeof(double) * (size_t)(c * c)) == 0, "tiny values: AVX-512 BF16 differs from portable");
        free(b);
    }
    free(a);
    free(X);
}

/* The running average: two windows through hessian_add_upper_bf16 against one call on
 * both (beta folds the rescale; same f32 tiles when each window is a whole chunk). */
static void test_running(void)
{
    const int64_t n = 512, c = 96;
    float *X = rand_x(2 * n, c, 5, 1.0f);
    double *H1 = calloc((size_t)(c * c), sizeof(double)), *H2 = calloc((size_t)(c * c), sizeof(double));
    int64_t ns = 0, ns2 = 0;
    CHECK(lmp_gptq_hessian_add_upper_bf16(H1, c, X, n, &ns) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gptq_hessian_add_upper_bf16(H1, c, X + n * c, n, &ns) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gptq_hessian_add_upper_bf16(H2, c, X, 2 * n, &ns2) == 0, "%s", lmp_errmsg());
    CHECK(ns == 2 * n && ns2 == 2 * n, "token counts %lld %lld", (long long)ns, (long long)ns2);
    double worst = 0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = i; j < c; j++) {
            double e = fabs(H1[i * c + j] - H2[i * c + j]) / sqrt(H2[i * c + i] * H2[j * c + j]);
            worst = e > worst ? e : worst;
        }
    CHECK(worst < 1e-14, "two windows vs one call: %.3g", worst);
    free(H1);
    free(H2);
    free(X);
}

/* The report's traces in f32 products (lmp_gptq_quad_traces_f32) against the double
 * lmp_gptq_quad_trace, on an X^T X Hessian (correlated columns) and three matrices, one a
 * small difference (as W - Q): within 1e-5 relative; 1, 2 and 3 threads the same bits. */
static void test_traces(void)
{
    const int64_t n = 600, c = 530, rows = 70;
    float *X = rand_x(n, c, 11, 1.0f);
    double *H = calloc((size_t)(c * c), sizeof(double));
    int64_t ns = 0;
    CHECK(lmp_gptq_hessian_add(H, c, X, n, &ns) == 0, "%s", lmp_errmsg());
    float *A[3];
    for (int a = 0; a < 3; a++)
        A[a] = rand_x(rows, c, 20 + (uint64_t)a, a == 2 ? 1e-3f : 1.0f);
    double want[3], got[3][3];
    for (int a = 0; a < 3; a++)
        want[a] = lmp_gptq_quad_trace(A[a], H, rows, c);
    for (int t = 0; t < 3; t++) {
        lmp_set_num_threads(t + 1);
        CHECK(lmp_gptq_quad_traces_f32((const float *const *)A, 3, H, rows, c, got[t]) == 0, "out of memory");
    }
    lmp_set_num_threads(0);
    for (int a = 0; a < 3; a++) {
        const double e = fabs(got[0][a] - want[a]) / want[a];
        CHECK(e < 1e-5, "trace %d: f32 %.12g double %.12g (relative %.2g)", a, got[0][a], want[a], e);
        CHECK(got[0][a] == got[1][a] && got[0][a] == got[2][a], "trace %d: 1/2/3 threads %.17g %.17g %.17g", a,
              got[0][a], got[1][a], got[2][a]);
    }
    printf("tr(A H A^T) in f32 products: relative to double %.2g %.2g %.2g\n", (got[0][0] - want[0]) / want[0],
           (got[0][1] - want[1]) / want[1], (got[0][2] - want[2]) / want[2]);
    for (int a = 0; a < 3; a++)
        free(A[a]);
    free(H);
    free(X);
}

int main(void)
{
    printf("AVX-512 BF16 path: %s\n", lmp_gptq_bf16_native() ? "yes" : "no (portable only)");
    test_reference(1100, 300, 1);  /* three chunks, the last short; columns off the tiling */
    test_reference(513, 64, 2);    /* odd token count */
    test_bits(1100, 300, 1.0f, 3);
    test_bits(77, 530, 1.0f, 4);
    test_bits(512, 40, 1e3f, 6);
    test_tiny();
    test_running();
    test_traces();
    return test_finish();
}
