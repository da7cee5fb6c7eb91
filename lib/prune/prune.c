/*
 * Pruning of one linear layer: magnitude, Wanda and SparseGPT masks, unstructured or N:M,
 * and SparseGPT's joint integer-group quantization. Operates on an f32 copy of the
 * weight; knows nothing of models or files (the layer-by-layer driver is run.c).
 *
 * Sources (facts, not code): Wanda, Sun et al. 2023, "A Simple and Effective Pruning
 * Approach for Large Language Models", section 3 (score |W_ij| * ||X_j||_2, compared per
 * output row); SparseGPT, Frantar & Alistarh 2023, Alg. 1 (mask selection per block of
 * B_s columns from w^2 / [H^-1]_jj^2, OBS update w -= (w_j / [H^-1]_jj) H^-1_{j,:} with
 * the upper Cholesky factor of H^-1, lazy batch updates; N:M chosen every M columns).
 * Deviation from the SparseGPT reference: its unstructured mask takes the lowest scores
 * over a whole rows x B_s block; here each row of each block loses its share
 * (floor(s * i2) - floor(s * i1) columns), so every row has exactly the requested sparsity.
 */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_method_names[] = {"magnitude", "wanda", "sparsegpt"};

const char *lmp_prune_method_name(lmp_prune_method m)
{
    return (unsigned)m < 3 ? g_method_names[m] : "?";
}

int lmp_prune_method_from_name(const char *s)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(s, g_method_names[i]) == 0)
            return i;
    return -1;
}

void lmp_prune_default_spec(lmp_prune_spec *s)
{
    memset(s, 0, sizeof *s);
    s->method = LMP_PRUNE_WANDA;
    s->sparsity = 0.5;
    s->damp = 0.01f;
    s->blocksize = 128;
    s->qgroup = 128;
    s->qsym = true;
}

int lmp_prune_spec_check(const lmp_prune_spec *s, int64_t cols, const char *name)
{
    if ((unsigned)s->method > LMP_PRUNE_SPARSEGPT)
        return lmp_err(LMP_EINVAL, "prune: unknown method %d", (int)s->method);
    if (s->m) {
        if (s->n <= 0 || s->m <= 0 || s->n >= s->m || s->m > 64)
            return lmp_err(LMP_EINVAL, "prune: --pattern %d:%d: must be N:M with 0 < N < M <= 64 (e.g. 2:4)", s->n, s->m);
        if (cols % s->m)
            return lmp_err(LMP_EINVAL, "prune: %s: row length %lld is not a multiple of M = %d (pattern %d:%d)",
                           name, (long long)cols, s->m, s->n, s->m);
    } else if (!(s->sparsity >= 0.0 && s->sparsity < 1.0)) {
        return lmp_err(LMP_EINVAL, "prune: --sparsity %g: must be in [0, 1)", s->sparsity);
    }
    if (s->scope == LMP_PRUNE_SCOPE_MATRIX && (s->method != LMP_PRUNE_MAGNITUDE || s->m))
        return lmp_err(LMP_EINVAL, "prune: --scope matrix (a per-matrix threshold) applies to unstructured magnitude pruning only");
    if (s->method == LMP_PRUNE_SPARSEGPT) {
        if (!(s->damp > 0.0f && s->damp < 1.0f))
            return lmp_err(LMP_EINVAL, "prune: --damp %g: must be in (0, 1)", (double)s->damp);
        if (s->blocksize < 1 || (s->m && s->blocksize % s->m))
            return lmp_err(LMP_EINVAL, "prune: --blocksize %d: SparseGPT's block size must be positive and a multiple of M", s->blocksize);
    }
    if (s->qbits) {
        if (s->method != LMP_PRUNE_SPARSEGPT)
            return lmp_err(LMP_EINVAL, "prune: joint quantization (--then-quantize) needs --method sparsegpt");
        if (s->qbits < 2 || s->qbits > 8)
            return lmp_err(LMP_EINVAL, "prune: --then-quantize %d: BITS must be 2..8", s->qbits);
        if (s->qgroup == 0 || s->qgroup < -1)
            return lmp_err(LMP_EINVAL, "prune: --group-size %d: must be positive, or -1 (one group per row)", s->qgroup);
        if (s->qgroup > 0 && cols % s->qgroup)
            return lmp_err(LMP_EINVAL, "prune: %s: in_features %lld is not a multiple of group size %d", name,
                           (long long)cols, s->qgroup);
    }
    return LMP_OK;
}

/* floor(s * k) with a little slack so that 0.5 * 768 is exactly 384 */
static int64_t frac_count(double s, int64_t k)
{
    return (int64_t)floor(s * (double)k + 1e-9);
}

int64_t lmp_prune_row_zeros(const lmp_prune_spec *s, int64_t cols)
{
    return s->m ? (int64_t)(s->m - s->n) * (cols / s->m) : frac_count(s->sparsity, cols);
}

int64_t lmp_prune_matrix_zeros(const lmp_prune_spec *s, int64_t rows, int64_t cols)
{
    if (s->scope == LMP_PRUNE_SCOPE_MATRIX && !s->m)
        return frac_count(s->sparsity, rows * cols);
    return rows * lmp_prune_row_zeros(s, cols);
}

/* ---------------------------------------------------------------- selection ------- */

typedef struct {
    float s;
    int64_t i;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    const scored *x = a, *y = b;
    if (x->s != y->s)
        return x->s < y->s ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

static inline bool less_scored(scored a, scored b)
{
    return a.s < b.s || (a.s == b.s && a.i < b.i);
}

/* Rearranges t[0..n) so that its k lowest (by (score, index), a total order) come first:
 * quickselect with median-of-three pivots, O(n) on average. */
static void select_k(scored *t, int64_t n, int64_t k)
{
    int64_t lo = 0, hi = n - 1;
    while (hi - lo > 16) {
        int64_t mid = lo + (hi - lo) / 2;
        if (less_scored(t[mid], t[lo])) { scored x = t[mid]; t[mid] = t[lo]; t[lo] = x; }
        if (less_scored(t[hi], t[lo])) { scored x = t[hi]; t[hi] = t[lo]; t[lo] = x; }
        if (less_scored(t[hi], t[mid])) { scored x = t[hi]; t[hi] = t[mid]; t[mid] = x; }
        scored piv = t[mid];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (less_scored(t[i], piv))
                i++;
            while (less_scored(piv, t[j]))
                j--;
            if (i <= j) {
                scored x = t[i];
                t[i++] = t[j];
                t[j--] = x;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
    qsort(t + lo, (size_t)(hi - lo + 1), sizeof *t, cmp_scored);
}

/* Marks the k lowest of score[0..n) as pruned in keep[] (keep[j] = 0); tmp holds n. */
static void prune_lowest(const float *score, int64_t n, int64_t k, uint8_t *keep, scored *tmp)
{
    if (k <= 0)
        return;
    for (int64_t j = 0; j < n; j++) {
        tmp[j].s = score[j];
        tmp[j].i = j;
    }
    if (k >= n)
        k = n;
    else
        select_k(tmp, n, k);
    for (int64_t j = 0; j < k; j++)
        keep[tmp[j].i] = 0;
}

/* Row-wise selection from scores S[rows][cols] (unstructured or N:M) into keep. */
static int select_rows(const float *S, int64_t rows, int64_t cols, const lmp_prune_spec *s, uint8_t *keep)
{
    int rc = LMP_OK;
    int64_t k = lmp_prune_row_zeros(s, cols);
#pragma omp parallel
    {
        scored *tmp = malloc((size_t)cols * sizeof *tmp);
        if (!tmp) {
#pragma omp atomic write
            rc = LMP_ENOMEM;
        }
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!tmp)
                continue;
            const float *sr = S + r * cols;
            uint8_t *kr = keep + r * cols;
            memset(kr, 1, (size_t)cols);
            if (s->m) {
                for (int64_t g = 0; g < cols; g += s->m)
                    prune_lowest(sr + g, s->m, s->m - s->n, kr + g, tmp);
            } else {
                prune_lowest(sr, cols, k, kr, tmp);
            }
        }
        free(tmp);
    }
    return rc ? lmp_err(rc, "out of memory selecting weights to prune") : LMP_OK;
}

static int select_matrix(const float *S, int64_t rows, int64_t cols, const lmp_prune_spec *s, uint8_t *keep)
{
    int64_t n = rows * cols;
    scored *tmp = malloc((size_t)n * sizeof *tmp);
    if (!tmp)
        return lmp_err(LMP_ENOMEM, "out of memory selecting weights to prune");
    memset(keep, 1, (size_t)n);
    prune_lowest(S, n, lmp_prune_matrix_zeros(s, rows, cols), keep, tmp);
    free(tmp);
    return LMP_OK;
}

/* ---------------------------------------------------------------- SparseGPT ------- */

/* Upper Cholesky factor U of (H + damp I)^-1 (H^-1 = U^T U), f32 [cols][cols], from H in
 * double with dead columns (H_jj == 0) set to 1. */
static int hinv_upper(const double *H, int64_t cols, float damp_frac, float **out, uint8_t *dead)
{
    *out = NULL;
    double *A = malloc((size_t)(cols * cols) * sizeof(double));
    float *U = malloc((size_t)(cols * cols) * sizeof(float));
    if (!A || !U) {
        free(A);
        free(U);
        return lmp_err(LMP_ENOMEM, "out of memory for a %lld x %lld Hessian", (long long)cols, (long long)cols);
    }
    memcpy(A, H, (size_t)(cols * cols) * sizeof(double));
    double mean = 0;
    for (int64_t j = 0; j < cols; j++) {
        dead[j] = A[j * cols + j] == 0.0;
        if (dead[j])
            A[j * cols + j] = 1.0;
        mean += A[j * cols + j];
    }
    double damp = damp_frac * mean / (double)cols;
    for (int64_t j = 0; j < cols; j++)
        A[j * cols + j] += damp;
    /* U, the upper Cholesky factor of H^-1, as GPTQ forms it (lib/quant/gptq_linalg.c:
     * the reversed lower Cholesky factor of H, inverted; the result does not depend on
     * the thread count, unlike LAPACK's potrf / potri under OpenBLAS's threads) */
    int64_t bad = 0;
    int rc = lmp_gptq_hinv_upper(A, cols, &bad);
    if (rc) {
        free(A);
        free(U);
        if (rc != LMP_ERANGE)
            return rc;
        return lmp_err(LMP_ERANGE, "the damped Hessian is not positive definite (column %lld); try a larger "
                                   "damp or more calibration samples", (long long)bad);
    }
    for (int64_t i = 0; i < cols; i++)
        for (int64_t j = 0; j < cols; j++)
            U[i * cols + j] = j >= i ? (float)A[i * cols + j] : 0.0f;
    free(A);
    *out = U;
    return LMP_OK;
}

void lmp_prune_hcache_free(lmp_prune_hcache *c)
{
    if (!c)
        return;
    free(c->U);
    free(c->dead);
    memset(c, 0, sizeof *c);
}

static int sparsegpt(float *W, int64_t rows, int64_t cols, const double *H, const lmp_prune_spec *s, uint8_t *keep,
                     lmp_qtensor *q, double *loss_out, lmp_prune_hcache *cache, uint64_t tag)
{
    uint8_t *dead = NULL;
    float *U = NULL, *Err = NULL, *S = NULL;
    double *rloss = NULL;
    int rc = LMP_OK;
    bool cached = cache && tag && cache->U && cache->tag == tag && cache->H == H && cache->cols == cols &&
                  cache->damp == s->damp;
    if (cached) { /* the cache's factor: the same values hinv_upper would give */
        U = cache->U;
        dead = cache->dead;
    } else {
        if (!(dead = malloc((size_t)cols)))
            return lmp_err(LMP_ENOMEM, "out of memory");
        if ((rc = hinv_upper(H, cols, s->damp, &U, dead)))
            goto done;
        if (cache && tag) { /* kept for the next linear of this H (the cache owns it now) */
            lmp_prune_hcache_free(cache);
            *cache = (lmp_prune_hcache){tag, H, cols, s->damp, U, dead};
            cached = true;
        }
    }
    const int64_t B = s->blocksize;
    Err = malloc((size_t)(rows * B) * sizeof(float));
    S = malloc((size_t)(rows * B) * sizeof(float));
    rloss = calloc((size_t)rows, sizeof(double));
    if (!Err || !S || !rloss) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if (s->qbits && (rc = lmp_qtensor_intgroup_init(q, rows, cols, s->qbits, s->qgroup, s->qsym, false)))
        goto done;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            if (dead[j])
                W[r * cols + j] = 0.0f;
    memset(keep, 1, (size_t)(rows * cols));
    const int maxq = s->qbits ? (1 << s->qbits) - 1 : 0;
    const int64_t gs = s->qbits ? q->ig.gs : 0;
    const int64_t ng = s->qbits ? q->ig.n_groups : 0;

    for (int64_t i1 = 0; i1 < cols; i1 += B) {
        const int64_t i2 = i1 + B < cols ? i1 + B : cols, cnt = i2 - i1;
        const int64_t k_blk = s->m ? 0 : frac_count(s->sparsity, i2) - frac_count(s->sparsity, i1);
#pragma omp parallel
        {
            scored *tmp = malloc((size_t)(B > 64 ? B : 64) * sizeof *tmp);
            float scale = 1.0f;
            int zero = 0;
#pragma omp for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                float *w = W + r * cols;
                uint8_t *kr = keep + r * cols;
                float *er = Err + r * B, *sr = S + r * B;
                if (!tmp)
                    continue;
                if (!s->m && k_blk > 0) {
                    for (int64_t j = 0; j < cnt; j++) {
                        float d = U[(i1 + j) * cols + i1 + j];
                        sr[j] = w[i1 + j] * w[i1 + j] / (d * d);
                    }
                    prune_lowest(sr, cnt, k_blk, kr + i1, tmp);
                }
                for (int64_t j = 0; j < cnt; j++) {
                    const int64_t c = i1 + j;
                    const float *urow = U + c * cols;
                    if (s->m && j % s->m == 0) {
                        for (int t = 0; t < s->m; t++) {
                            float d = U[(c + t) * cols + c + t];
                            sr[t] = w[c + t] * w[c + t] / (d * d);
                        }
                        prune_lowest(sr, s->m, s->m - s->n, kr + c, tmp);
                    }
                    if (s->qbits && c % gs == 0) {
                        /* group parameters from the partially updated weights, pruned ones as 0 */
                        float mn = 0.0f, mx = 0.0f;
                        for (int64_t t = c; t < c + gs && t < cols; t++) {
                            float v = kr[t] ? w[t] : 0.0f;
                            mn = v < mn ? v : mn;
                            mx = v > mx ? v : mx;
                        }
                        lmp_intq_find_params(mn, mx, s->qbits, s->qsym, true, &scale, &zero);
                        q->ig.scales[r * ng + c / gs] = scale;
                        q->ig.zeros[r * ng + c / gs] = (uint8_t)zero;
                    } else if (s->qbits) { /* a group that began in an earlier block */
                        scale = q->ig.scales[r * ng + c / gs];
                        zero = q->ig.zeros[r * ng + c / gs];
                    }
                    float wv = w[c], qv;
                    if (!kr[c]) {
                        qv = 0.0f;
                        if (s->qbits)
                            lmp_ig_set_code(&q->ig, r, c, (unsigned)zero);
                    } else if (s->qbits) {
                        int code = lmp_intq_code(wv, scale, zero, maxq);
                        lmp_ig_set_code(&q->ig, r, c, (unsigned)code);
                        qv = scale * (float)(code - zero);
                    } else {
                        qv = wv;
                    }
                    const float d = urow[c];
                    const float e = (wv - qv) / d;
                    rloss[r] += (double)(wv - qv) * (wv - qv) / ((double)d * d) / 2.0;
                    w[c] = qv;
                    er[j] = e;
                    for (int64_t t = c + 1; t < i2; t++)
                        w[t] -= e * urow[t];
                }
            }
            free(tmp);
        }
        /* lazy update of the columns after the block: W[:, i2:] -= Err U[i1:i2, i2:] */
        if (i2 < cols)
            lmp_gptq_gemm_sub(W + i2, cols, Err, B, U + i1 * cols + i2, cols, rows, cols - i2, cnt);
    }
    if (loss_out) {
        double l = 0;
        for (int64_t r = 0; r < rows; r++)
            l += rloss[r];
        *loss_out = l;
    }
done:
    if (rc && q && s->qbits)
        lmp_qtensor_free(q);
    if (!cached) {
        free(dead);
        free(U);
    }
    free(Err);
    free(S);
    free(rloss);
    return rc;
}

/* ---------------------------------------------------------------- entry ----------- */

/* Magnitude / Wanda: scores |W_ij| (* sqrt(xsq_j)), selection, zeroing. */
static int prune_scored(float *W, int64_t rows, int64_t cols, const double *xsq, int64_t xsq_stride,
                        const lmp_prune_spec *s, uint8_t *keep)
{
    float *S = malloc((size_t)(rows * cols) * sizeof(float));
    float *nrm = malloc((size_t)cols * sizeof(float));
    if (!S || !nrm) {
        free(S);
        free(nrm);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    for (int64_t j = 0; j < cols; j++)
        nrm[j] = s->method == LMP_PRUNE_WANDA ? (float)sqrt(fmax(xsq[j * xsq_stride], 0.0)) : 1.0f;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            S[r * cols + j] = fabsf(W[r * cols + j]) * nrm[j];
    int rc = s->scope == LMP_PRUNE_SCOPE_MATRIX ? select_matrix(S, rows, cols, s, keep)
                                                : select_rows(S, rows, cols, s, keep);
    if (rc == 0)
        for (int64_t i = 0; i < rows * cols; i++)
            if (!keep[i])
                W[i] = 0.0f;
    free(S);
    free(nrm);
    return rc;
}

static int check_finite(const float *W, int64_t rows, int64_t cols)
{
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i]))
            return lmp_err(LMP_ERANGE, "non-finite weight %g at [%lld, %lld]", (double)W[i], (long long)(i / cols),
                           (long long)(i % cols));
    return LMP_OK;
}

int lmp_prune_linear(float *W, int64_t rows, int64_t cols, const double *H, const lmp_prune_spec *s, uint8_t *mask,
                     lmp_qtensor *q, double *loss)
{
    return lmp_prune_linear_cached(W, rows, cols, H, s, NULL, 0, mask, q, loss);
}

int lmp_prune_linear_cached(float *W, int64_t rows, int64_t cols, const double *H, const lmp_prune_spec *s,
                            lmp_prune_hcache *cache, uint64_t tag, uint8_t *mask, lmp_qtensor *q, double *loss)
{
    int rc = lmp_prune_spec_check(s, cols, "linear");
    if (rc)
        return rc;
    if (loss)
        *loss = -1;
    if ((rc = check_finite(W, rows, cols)))
        return rc;
    if (s->method != LMP_PRUNE_MAGNITUDE && !H)
        return lmp_err(LMP_EINVAL, "prune: %s needs calibration statistics", lmp_prune_method_name(s->method));
    if (s->qbits && !q)
        return lmp_err(LMP_EINVAL, "prune: joint quantization needs an output tensor");
    uint8_t *keep = mask ? mask : malloc((size_t)(rows * cols));
    if (!keep)
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (s->method == LMP_PRUNE_SPARSEGPT)
        rc = sparsegpt(W, rows, cols, H, s, keep, q, loss, cache, tag);
    else /* Wanda: the diagonal of H is ||X_j||^2 up to a common factor */
        rc = prune_scored(W, rows, cols, H, cols + 1, s, keep);
    if (keep != mask)
        free(keep);
    return rc;
}

int lmp_prune_linear_norms(float *W, int64_t rows, int64_t cols, const double *xsq, const lmp_prune_spec *s,
                           uint8_t *mask)
{
    int rc = lmp_prune_spec_check(s, cols, "linear");
    if (rc)
        return rc;
    if (s->method == LMP_PRUNE_SPARSEGPT)
        return lmp_err(LMP_EINVAL, "prune: sparsegpt needs the whole Hessian (lmp_prune_linear)");
    if (s->method == LMP_PRUNE_WANDA && !xsq)
        return lmp_err(LMP_EINVAL, "prune: wanda needs the input norms");
    if ((rc = check_finite(W, rows, cols)))
        return rc;
    uint8_t *keep = mask ? mask : malloc((size_t)(rows * cols));
    if (!keep)
        return lmp_err(LMP_ENOMEM, "out of memory");
    rc = prune_scored(W, rows, cols, xsq, 1, s, keep);
    if (keep != mask)
        free(keep);
    return rc;
}
