/*
 * Sparse matrix products in f32 for pruned weights: compressed sparse rows (any
 * unstructured mask) and 2:4 (two values and two 2-bit positions per group of four
 * inputs). Written to be measured against the engine's dense lmp_gemm on the same
 * matrices (tests/bench/bench_prune.sh); the engine does not call them (see
 * docs/results.md (Pruning) for the numbers and why). Plain C with `omp simd` inner loops,
 * compiled for AVX-512, AVX2+FMA and baseline x86-64 (function multiversioning picks one
 * at load time). Deterministic: each output element is one fixed-order sum.
 */
#include "prune.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTI __attribute__((target_clones("arch=x86-64-v4", "arch=haswell", "default")))
#else
#define MULTI
#endif

enum { MCHUNK = 64 };

int lmp_csr_from_dense(lmp_csr *s, const float *W, int64_t rows, int64_t cols)
{
    memset(s, 0, sizeof *s);
    int64_t nnz = 0;
    for (int64_t i = 0; i < rows * cols; i++)
        nnz += W[i] != 0.0f;
    s->rows = rows;
    s->cols = cols;
    s->row_ptr = malloc((size_t)(rows + 1) * sizeof(int64_t));
    s->col = malloc((size_t)(nnz ? nnz : 1) * sizeof(uint32_t));
    s->val = malloc((size_t)(nnz ? nnz : 1) * sizeof(float));
    if (!s->row_ptr || !s->col || !s->val) {
        lmp_csr_free(s);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    int64_t k = 0;
    for (int64_t r = 0; r < rows; r++) {
        s->row_ptr[r] = k;
        for (int64_t j = 0; j < cols; j++)
            if (W[r * cols + j] != 0.0f) {
                s->col[k] = (uint32_t)j;
                s->val[k++] = W[r * cols + j];
            }
    }
    s->row_ptr[rows] = k;
    return LMP_OK;
}

void lmp_csr_free(lmp_csr *s)
{
    if (!s)
        return;
    free(s->row_ptr);
    free(s->col);
    free(s->val);
    memset(s, 0, sizeof *s);
}

int lmp_sp24_from_dense(lmp_sp24 *s, const float *W, int64_t rows, int64_t cols)
{
    memset(s, 0, sizeof *s);
    if (cols % 4)
        return lmp_err(LMP_EINVAL, "2:4: row length %lld is not a multiple of 4", (long long)cols);
    s->rows = rows;
    s->cols = cols;
    s->val = calloc((size_t)(rows * cols / 2), sizeof(float));
    s->pos = calloc((size_t)(rows * cols / 4), 1);
    if (!s->val || !s->pos) {
        lmp_sp24_free(s);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g = 0; g < cols / 4; g++) {
            const float *w = W + r * cols + 4 * g;
            int p[2] = {0, 1}, n = 0;
            for (int t = 0; t < 4; t++)
                if (w[t] != 0.0f) {
                    if (n == 2) {
                        lmp_sp24_free(s);
                        return lmp_err(LMP_EINVAL, "2:4: row %lld, columns %lld..%lld hold more than two non-zeros",
                                       (long long)r, (long long)(4 * g), (long long)(4 * g + 3));
                    }
                    p[n++] = t;
                }
            if (n == 1) /* pad with a zero at another position */
                p[1] = p[0] == 0 ? 1 : 0;
            if (p[1] < p[0]) {
                int t = p[0];
                p[0] = p[1];
                p[1] = t;
            }
            s->val[r * (cols / 2) + 2 * g] = w[p[0]];
            s->val[r * (cols / 2) + 2 * g + 1] = w[p[1]];
            s->pos[r * (cols / 4) + g] = (uint8_t)(p[0] | p[1] << 2);
        }
    return LMP_OK;
}

void lmp_sp24_free(lmp_sp24 *s)
{
    if (!s)
        return;
    free(s->val);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

/* Xt[c][0..mc) = X[m0 + i][c] */
static void transpose_chunk(float *Xt, const float *X, int64_t cols, int64_t m0, int64_t mc)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < cols; c++)
        for (int64_t i = 0; i < mc; i++)
            Xt[c * MCHUNK + i] = X[(m0 + i) * cols + c];
}

MULTI static void csr_rows_small(float *Y, const float *X, const lmp_csr *W, int64_t M)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < W->rows; r++)
        for (int64_t m = 0; m < M; m++) {
            const float *x = X + m * W->cols;
            float acc = 0.0f;
            for (int64_t i = W->row_ptr[r]; i < W->row_ptr[r + 1]; i++)
                acc += W->val[i] * x[W->col[i]];
            Y[m * W->rows + r] = acc;
        }
}

MULTI static void csr_rows_chunk(float *Y, const float *Xt, const lmp_csr *W, int64_t m0, int64_t mc)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < W->rows; r++) {
        float acc[MCHUNK];
        memset(acc, 0, sizeof acc);
        for (int64_t i = W->row_ptr[r]; i < W->row_ptr[r + 1]; i++) {
            const float v = W->val[i], *xt = Xt + (int64_t)W->col[i] * MCHUNK;
#pragma omp simd
            for (int t = 0; t < MCHUNK; t++)
                acc[t] += v * xt[t];
        }
        for (int64_t t = 0; t < mc; t++)
            Y[(m0 + t) * W->rows + r] = acc[t];
    }
}

MULTI static void sp24_rows_small(float *Y, const float *X, const lmp_sp24 *W, int64_t M)
{
    const int64_t G = W->cols / 4;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < W->rows; r++)
        for (int64_t m = 0; m < M; m++) {
            const float *x = X + m * W->cols, *v = W->val + r * 2 * G;
            const uint8_t *p = W->pos + r * G;
            float acc0 = 0.0f, acc1 = 0.0f;
            for (int64_t g = 0; g < G; g++) {
                acc0 += v[2 * g] * x[4 * g + (p[g] & 3)];
                acc1 += v[2 * g + 1] * x[4 * g + (p[g] >> 2 & 3)];
            }
            Y[m * W->rows + r] = acc0 + acc1;
        }
}

MULTI static void sp24_rows_chunk(float *Y, const float *Xt, const lmp_sp24 *W, int64_t m0, int64_t mc)
{
    const int64_t G = W->cols / 4;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < W->rows; r++) {
        float acc[MCHUNK];
        memset(acc, 0, sizeof acc);
        const float *v = W->val + r * 2 * G;
        const uint8_t *p = W->pos + r * G;
        for (int64_t g = 0; g < G; g++) {
            const float v0 = v[2 * g], v1 = v[2 * g + 1];
            const float *x0 = Xt + (4 * g + (p[g] & 3)) * MCHUNK, *x1 = Xt + (4 * g + (p[g] >> 2 & 3)) * MCHUNK;
#pragma omp simd
            for (int t = 0; t < MCHUNK; t++)
                acc[t] += v0 * x0[t] + v1 * x1[t];
        }
        for (int64_t t = 0; t < mc; t++)
            Y[(m0 + t) * W->rows + r] = acc[t];
    }
}

int lmp_csr_gemm(float *Y, const float *X, const lmp_csr *W, int64_t M)
{
    if (M < 8) {
        csr_rows_small(Y, X, W, M);
        return LMP_OK;
    }
    float *Xt = calloc((size_t)(W->cols * MCHUNK), sizeof(float));
    if (!Xt)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int64_t m0 = 0; m0 < M; m0 += MCHUNK) {
        int64_t mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
        transpose_chunk(Xt, X, W->cols, m0, mc);
        csr_rows_chunk(Y, Xt, W, m0, mc);
    }
    free(Xt);
    return LMP_OK;
}

int lmp_sp24_gemm(float *Y, const float *X, const lmp_sp24 *W, int64_t M)
{
    if (M < 8) {
        sp24_rows_small(Y, X, W, M);
        return LMP_OK;
    }
    float *Xt = calloc((size_t)(W->cols * MCHUNK), sizeof(float));
    if (!Xt)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int64_t m0 = 0; m0 < M; m0 += MCHUNK) {
        int64_t mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
        transpose_chunk(Xt, X, W->cols, m0, mc);
        sp24_rows_chunk(Y, Xt, W, m0, mc);
    }
    free(Xt);
    return LMP_OK;
}
