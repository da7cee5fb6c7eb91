/*
 * The dense linear algebra of GPTQ and SparseGPT with results independent of the thread
 * count: X^T X accumulation, the upper Cholesky factor of H^-1, and the lazy-batch block
 * update, as fixed tilings whose tiles are computed by single-threaded BLAS calls.
 *
 * Why: OpenBLAS (0.3.21, OpenMP) gives different bits for the same sgemm, dgemm, dtrsm,
 * dpotrf or dtrtri call with 1, 2 or 3 threads (it splits the work, and with it the order
 * of the sums, by the thread count). Here the tiles and the order of every sum depend on
 * the matrix sizes only; the tiles are shared among OpenMP threads and each is one BLAS
 * call made inside an active parallel region, where OpenBLAS's OpenMP build runs on the
 * calling thread alone. One thread or many, the same calls are made on the same data.
 */
#include "intquant.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum {
    NB = 128,   /* Cholesky / inverse panel width */
    TS = 256,   /* tile side of the products */
    ST = 256,   /* tile side of the X^T X update */
    KC = 512    /* tokens summed in f32 before a Hessian tile is added to in double */
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* ---------------------------------------------------------------- X^T X ---------- */

int lmp_gptq_syrk_acc(double *H, int64_t cols, const float *X, int64_t n, double alpha, double beta)
{
    /* Per upper tile (ti <= tj; one task each, numbered row by row) and per chunk of KC
     * tokens: the chunk's X^T X tile in f32 (one single-threaded sgemm / ssyrk, sums of
     * at most KC products in f32 registers), then H_tile = b H_tile + alpha G in double.
     * The tile of H stays in cache across the chunks; the chunks are added in token order,
     * so the bits depend on (cols, n) only. */
    if (n <= 0) {
        if (beta != 1.0)
            for (int64_t i = 0; i < cols; i++)
                for (int64_t j = i; j < cols; j++)
                    H[i * cols + j] *= beta;
        return LMP_OK;
    }
    const int64_t nt = (cols + ST - 1) / ST, npairs = nt * (nt + 1) / 2;
    int fail = 0;
    #pragma omp parallel
    {
        float *g = malloc((size_t)(ST * ST) * sizeof(float));
        if (!g) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < npairs; p++) {
            if (!g)
                continue;
            int64_t ti, tj;
            lmp_tile_pair_upper(p, nt, &ti, &tj);
            const int64_t i0 = ti * ST, j0 = tj * ST;
            const int64_t mi = min64(ST, cols - i0), mj = min64(ST, cols - j0);
            for (int64_t r0 = 0; r0 < n; r0 += KC) {
                const int64_t k = min64(KC, n - r0);
                const double b = r0 == 0 ? beta : 1.0;
                const float *x = X + r0 * cols;
                if (ti == tj) /* the upper triangle of a diagonal tile */
                    cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)mi, (int)k, 1.0f, x + i0, (int)cols,
                                0.0f, g, (int)mj);
                else
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mi, (int)mj, (int)k, 1.0f, x + i0,
                                (int)cols, x + j0, (int)cols, 0.0f, g, (int)mj);
                for (int64_t i = 0; i < mi; i++) {
                    double *h = H + (i0 + i) * cols + j0;
                    const float *gr = g + i * mj;
                    const int64_t js = ti == tj ? i : 0;
                    if (b == 0.0)
                        for (int64_t j = js; j < mj; j++)
                            h[j] = alpha * (double)gr[j];
                    else if (b == 1.0)
                        for (int64_t j = js; j < mj; j++)
                            h[j] += alpha * (double)gr[j];
                    else
                        for (int64_t j = js; j < mj; j++)
                            h[j] = b * h[j] + alpha * (double)gr[j];
                }
            }
        }
        free(g);
    }
    if (fail)
        return lmp_err(LMP_ENOMEM, "out of memory for a Hessian update (%lld columns)", (long long)cols);
    return LMP_OK;
}

void lmp_gptq_sym_from_upper(double *H, int64_t cols)
{
    enum { T = 64 };
    const int64_t nt = (cols + T - 1) / T;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t ti = 0; ti < nt; ti++) /* tile row ti of the lower triangle from tile column ti of the upper */
        for (int64_t tj = 0; tj <= ti; tj++)
            for (int64_t i = ti * T; i < min64(cols, (ti + 1) * T); i++)
                for (int64_t j = tj * T; j < min64(i, (tj + 1) * T); j++)
                    H[i * cols + j] = H[j * cols + i];
}

/* ---------------------------------------------------------------- Cholesky -------- */

/* the factor in double (lmp_gptq_hinv_upper: SparseGPT, GPTQ under --calib-f32) and in
 * float (lmp_gptq_hinv_upper_f32: GPTQ) */
#define REAL double
#define NAME(x) x
#define GEMM cblas_dgemm
#define TRSM cblas_dtrsm
#include "gptq_factor.inc"
#undef REAL
#undef NAME
#undef GEMM
#undef TRSM
#define REAL float
#define NAME(x) x##_f32
#define GEMM cblas_sgemm
#define TRSM cblas_strsm
#include "gptq_factor.inc"
#undef REAL
#undef NAME
#undef GEMM
#undef TRSM

void lmp_gptq_gemm_sub(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t m,
                       int64_t n, int64_t k)
{
    enum { TM = 256, TN = 512 };
    if (m <= 0 || n <= 0 || k <= 0)
        return;
    const int64_t tm = (m + TM - 1) / TM, tn = (n + TN - 1) / TN;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tm * tn; t++) {
        const int64_t i0 = t / tn * TM, j0 = t % tn * TN;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)min64(TM, m - i0), (int)min64(TN, n - j0),
                    (int)k, -1.0f, A + i0 * lda, (int)lda, B + j0, (int)ldb, 1.0f, C + i0 * ldc + j0, (int)ldc);
    }
}

/* ---------------------------------------------------------------- tr(A H A^T) ----- */

double lmp_gptq_quad_trace(const float *A, const double *H, int64_t rows, int64_t cols)
{
    /* a^T H a = 2 a^T (upper(H) a) - sum_i H_ii a_i^2: one triangular product per tile of
     * rows (half a full product's work; only H's upper triangle is read); the tiles' sums
     * are added in tile order */
    if (rows <= 0 || cols <= 0)
        return 0.0;
    /* tall matrices in tiles of 256 rows (each triangular product packs H once: fewer
     * passes over it), short ones in tiles of 64 (work for every thread); the tiling
     * depends on rows only */
    const int64_t RT = rows >= 1024 ? 256 : 64;
    const int64_t nt = (rows + RT - 1) / RT;
    double *part = calloc((size_t)nt, sizeof(double));
    if (!part)
        return -1.0;
    int fail = 0;
    #pragma omp parallel
    {
        double *a = malloc((size_t)(2 * RT * cols) * sizeof(double));
        if (!a) {
            #pragma omp atomic write
            fail = 1;
        }
        double *y = a ? a + RT * cols : NULL;
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < nt; t++) {
            if (!a)
                continue;
            const int64_t r0 = t * RT, k = min64(RT, rows - r0);
            for (int64_t i = 0; i < k * cols; i++)
                a[i] = y[i] = A[r0 * cols + i];
            cblas_dtrmm(CblasRowMajor, CblasRight, CblasUpper, CblasTrans, CblasNonUnit, (int)k, (int)cols, 1.0, H,
                        (int)cols, y, (int)cols);
            double s = 0.0;
            for (int64_t r = 0; r < k; r++) {
                const double *ar = a + r * cols, *yr = y + r * cols;
                for (int64_t i = 0; i < cols; i++)
                    s += ar[i] * (2.0 * yr[i] - H[i * cols + i] * ar[i]);
            }
            part[t] = s;
        }
        free(a);
    }
    double tr = 0.0;
    for (int64_t t = 0; t < nt; t++)
        tr += part[t];
    free(part);
    return fail ? -1.0 : tr;
}

/* ---------------------------------------------------------------- f32 products ---- */

void lmp_sgemm_fixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc)
{
    enum { TM = 256, TN = 512 };
    if (m <= 0 || n <= 0)
        return;
    const int64_t tm = (m + TM - 1) / TM, tn = (n + TN - 1) / TN;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t t = 0; t < tm * tn; t++) {
        const int64_t i0 = t / tn * TM, j0 = t % tn * TN;
        const float *a = ta ? A + i0 : A + i0 * lda, *b = tb ? B + j0 * ldb : B + j0;
        cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                    (int)min64(TM, m - i0), (int)min64(TN, n - j0), (int)k, alpha, a, (int)lda, b, (int)ldb, beta,
                    C + i0 * ldc + j0, (int)ldc);
    }
}

void lmp_ssyrk_fixed_upper(float *G, int64_t cols, const float *X, int64_t n, float alpha)
{
    const int64_t nt = (cols + TS - 1) / TS, npairs = nt * (nt + 1) / 2;
    #pragma omp parallel for schedule(dynamic, 1)
    for (int64_t p = 0; p < npairs; p++) {
        int64_t ti, tj;
        lmp_tile_pair_upper(p, nt, &ti, &tj);
        const int64_t i0 = ti * TS, j0 = tj * TS;
        const int64_t mi = min64(TS, cols - i0), mj = min64(TS, cols - j0);
        if (ti == tj)
            cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)mi, (int)n, alpha, X + i0, (int)cols, 0.0f,
                        G + i0 * cols + i0, (int)cols);
        else
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)mi, (int)mj, (int)n, alpha, X + i0, (int)cols,
                        X + j0, (int)cols, 0.0f, G + i0 * cols + j0, (int)cols);
    }
}

/* ---------------------------------------------------------------- tr(A H A^T), f32 */

double lmp_gptq_quad_traces_f32(const float *const *A, int na, const double *H, int64_t rows, int64_t cols,
                                double *out)
{
    /* Per upper tile pair (ti <= tj) of H, narrowed to f32 (the diagonal tile whole, from
     * its upper triangle): Y = A[:, ti] H_f[ti, tj] with one single-threaded sgemm per
     * matrix (sums of at most TS products in f32), then sum_r A[r, tj] . Y[r] in double,
     * twice for an off-diagonal pair. Each pair's sum is kept and the pairs are added in
     * order: the bits depend on (rows, cols) only. Half the products of a full A H, at
     * the f32 rate. */
    for (int a = 0; a < na; a++)
        out[a] = 0.0;
    if (rows <= 0 || cols <= 0 || na <= 0)
        return 0.0;
    const int64_t nt = (cols + TS - 1) / TS, npairs = nt * (nt + 1) / 2;
    double *part = calloc((size_t)(npairs * na), sizeof(double));
    if (!part)
        return -1.0;
    int fail = 0;
    #pragma omp parallel
    {
        float *hf = malloc((size_t)(TS * TS) * sizeof(float));
        float *y = malloc((size_t)(rows * TS) * sizeof(float));
        if (!hf || !y) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t p = 0; p < npairs; p++) {
            if (!hf || !y)
                continue;
            int64_t ti, tj;
            lmp_tile_pair_upper(p, nt, &ti, &tj);
            const int64_t i0 = ti * TS, j0 = tj * TS;
            const int64_t mi = min64(TS, cols - i0), mj = min64(TS, cols - j0);
            for (int64_t i = 0; i < mi; i++)
                for (int64_t j = 0; j < mj; j++)
                    hf[i * mj + j] = (float)(ti == tj && j < i ? H[(j0 + j) * cols + i0 + i] : H[(i0 + i) * cols + j0 + j]);
            for (int a = 0; a < na; a++) {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)mj, (int)mi, 1.0f, A[a] + i0,
                            (int)cols, hf, (int)mj, 0.0f, y, (int)mj);
                /* 8 running sums (lane k: columns j = k mod 8), added in lane order at
                 * the end: independent chains the compiler can vectorize, a fixed order */
                double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
                const int64_t m8 = mj & ~(int64_t)7;
                for (int64_t r = 0; r < rows; r++) {
                    const float *ar = A[a] + r * cols + j0, *yr = y + r * mj;
                    int64_t j = 0;
                    for (; j < m8; j += 8)
                        for (int k = 0; k < 8; k++)
                            acc[k] += (double)ar[j + k] * (double)yr[j + k];
                    for (; j < mj; j++)
                        acc[j & 7] += (double)ar[j] * (double)yr[j];
                }
                const double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
                part[p * na + a] = ti == tj ? s : 2.0 * s;
            }
        }
        free(hf);
        free(y);
    }
    for (int64_t p = 0; p < npairs && !fail; p++)
        for (int a = 0; a < na; a++)
            out[a] += part[p * na + a];
    free(part);
    return fail ? -1.0 : 0.0;
}
