/*
 * GPTQ (Frantar, Ashkboos, Hoefler, Alistarh 2022, "GPTQ: Accurate Post-Training
 * Quantization for Generative Pre-trained Transformers", Alg. 1 with lazy batch updates
 * and the Cholesky reformulation), following the reference gptq.py fasterquant step by
 * step: dead columns, static groups, act-order permutation, relative dampening, the upper
 * Cholesky factor of H^-1, per-group parameters recomputed at group boundaries, and the
 * reported Losses. Produces the canonical intgroup lmp_qtensor; knows no file format.
 *
 * Precision: the Cholesky factor of H^-1, the column loop and the block updates in f32
 * like the reference (the factor in double with factor_f64, or when the f32 one meets a
 * non-positive pivot). Within a block every output row is independent (its group
 * parameters are per row too), so the column loop runs in parallel over rows;
 * the factor and the block updates are gptq_linalg.c's fixed tilings (OpenBLAS's own
 * threading changes the bits with the thread count); the result does not depend on it.
 */
#include "intquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MULTI __attribute__((target_clones("arch=x86-64-v4", "arch=haswell", "default")))
#else
#define MULTI
#endif

void lmp_gptq_default_params(lmp_gptq_params *p)
{
    p->bits = 4;
    p->group_size = 128;
    p->sym = true;
    p->act_order = false;
    p->static_groups = false;
    p->percdamp = 0.01f;
    p->blocksize = 128;
    p->scale_f16 = true;
    p->factor_f64 = false;
}

int lmp_gptq_hessian_add_upper(double *H, int64_t cols, const float *X, int64_t n,
                               int64_t *nsamples)
{
    if (n <= 0)
        return LMP_OK;
    /* H *= ns / (ns + n) folds into the product's beta (upper triangle only), the 2 / ns
     * into its alpha */
    double keep = (double)*nsamples / (double)(*nsamples + n);
    double alpha = 2.0 / (double)(*nsamples + n);
    int rc = lmp_gptq_syrk_acc(H, cols, X, n, alpha, keep);
    if (rc)
        return rc;
    *nsamples += n;
    return LMP_OK;
}

int lmp_gptq_hessian_add(double *H, int64_t cols, const float *X, int64_t n,
                         int64_t *nsamples)
{
    if (n <= 0)
        return LMP_OK;
    int rc = lmp_gptq_hessian_add_upper(H, cols, X, n, nsamples);
    if (!rc) /* one mirror of the triangle */
        lmp_gptq_sym_from_upper(H, cols);
    return rc;
}

typedef struct {
    double d;
    int i;
} diag_ent;

/* Decreasing diag(H), ties by increasing column (torch.argsort is not stable; we are). */
static int cmp_diag_desc(const void *a, const void *b)
{
    const diag_ent *x = a, *y = b;
    if (x->d != y->d)
        return x->d > y->d ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

static void minmax(const float *x, int64_t n, float *mn, float *mx)
{
    float a = x[0], b = x[0];
    for (int64_t i = 1; i < n; i++) {
        a = fminf(a, x[i]);
        b = fmaxf(b, x[i]);
    }
    *mn = a;
    *mx = b;
}

/* Act-order: every row of W[rows][cols] in the column order perm (w'[i] = w[perm[i]]);
 * wt: scratch of cols floats. */
static void permute_cols(float *W, int64_t rows, int64_t cols, const int *perm, float *wt)
{
    for (int64_t r = 0; r < rows; r++) {
        float *w = W + r * cols;
        for (int64_t i = 0; i < cols; i++)
            wt[i] = w[perm[i]];
        memcpy(w, wt, (size_t)cols * sizeof(float));
    }
}

/* One lazy batch of GPTQ's column loop (columns i1 .. i1+count of the permuted order) */
typedef struct {
    float *Wp;           /* [rows][cols], permuted; read here (the block updates write it) */
    const float *Hinv;   /* upper factor of H^-1, [cols][cols] */
    float *W1, *Err;     /* [rows][bs] working copy and scaled errors of the batch */
    float *cur_s;        /* per row: the current group's scale and zero */
    int *cur_z;
    const float *sg_s;   /* static groups: [rows][ng] */
    const int *sg_z;
    const int *perm;
    lmp_intgroup *ig;
    int64_t cols;
    int gs, ng, bits, maxq;
    bool grouped, statg, sym, scale_f16;
} gptq_rowblk;

enum { RB = 8 }; /* rows of one batch walked together */

/* Rows r0 .. r0+nr-1 (nr <= RB) of one batch: each quantizes its count columns in order,
 * each column's scaled error propagated to the batch's later columns of its row; adds
 * each row's share of the Losses to lsum[]. Rows are independent: walking RB of them
 * column by column gives the out-of-order core RB independent chains of divisions
 * (scale, error) to overlap. Compiled for AVX-512, AVX2 and baseline x86-64; the
 * propagation is an elementwise a -= e * h, which every lane computes as the scalar loop
 * does (products and differences rounded separately): the bits are the same in any of
 * the three and for any RB. */
static MULTI void gptq_rows_block(const gptq_rowblk *c, int64_t r0, int nr, int64_t i1, int64_t count,
                                  double *lsum)
{
    const int64_t cols = c->cols;
    const int gs = c->gs, ng = c->ng;
    float *w1[RB], *e1[RB], s[RB], err[RB];
    const float *wrow[RB];
    int z[RB];
    for (int t = 0; t < nr; t++) {
        const int64_t r = r0 + t;
        w1[t] = c->W1 + r * count;
        e1[t] = c->Err + r * count;
        wrow[t] = c->Wp + r * cols;
        memcpy(w1[t], wrow[t] + i1, (size_t)count * sizeof(float));
        s[t] = c->cur_s[r];
        z[t] = c->cur_z[r];
    }
    for (int64_t i = 0; i < count; i++) {
        const int64_t j = i1 + i;
        if (c->grouped && !c->statg && j % gs == 0) {
            /* from W, not the block's working copy (as the reference) */
            const int64_t n = j + gs < cols ? gs : cols - j;
            for (int t = 0; t < nr; t++) {
                const int64_t r = r0 + t;
                float mn, mx;
                minmax(wrow[t] + j, n, &mn, &mx);
                lmp_intq_find_params(mn, mx, c->bits, c->sym, c->scale_f16, &s[t], &z[t]);
                c->ig->scales[r * ng + j / gs] = s[t];
                c->ig->zeros[r * ng + j / gs] = (uint8_t)z[t];
            }
        } else if (c->grouped && c->statg) {
            const int g = c->perm[j] / gs;
            for (int t = 0; t < nr; t++) {
                s[t] = c->sg_s[(r0 + t) * ng + g];
                z[t] = c->sg_z[(r0 + t) * ng + g];
            }
        }
        const float d = c->Hinv[j * cols + j];
        for (int t = 0; t < nr; t++) {
            const float w = w1[t][i];
            const int q = lmp_intq_code(w, s[t], z[t], c->maxq);
            const float dq = s[t] * (float)(q - z[t]);
            err[t] = (w - dq) / d;
            lsum[t] += (double)((w - dq) * (w - dq) / (d * d)) / 2.0;
            e1[t][i] = err[t];
            lmp_ig_set_code(c->ig, r0 + t, c->perm[j], (unsigned)q);
        }
        const float *restrict hrow = c->Hinv + j * cols + i1;
        for (int t = 0; t < nr; t++) {
            float *restrict w = w1[t];
            const float e = err[t];
            #pragma omp simd
            for (int64_t k = i + 1; k < count; k++)
                w[k] -= e * hrow[k];
        }
    }
    for (int t = 0; t < nr; t++) {
        c->cur_s[r0 + t] = s[t];
        c->cur_z[r0 + t] = z[t];
    }
}

double lmp_gptq_err_trace(const float *D, const double *H, int64_t rows, int64_t cols, float percdamp, double loss)
{
    double mean = 0.0;
    float *live = malloc((size_t)cols * sizeof(float));
    double *rs = malloc((size_t)rows * sizeof(double));
    if (!live || !rs) {
        free(live);
        free(rs);
        return NAN;
    }
    for (int64_t i = 0; i < cols; i++) {
        mean += H[i * cols + i] == 0.0 ? 1.0 : H[i * cols + i];
        live[i] = H[i * cols + i] != 0.0 ? 1.0f : 0.0f;
    }
    const double damp = (double)percdamp * (mean / (double)cols);
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) { /* per row in column order, the rows in row order */
        const float *d = D + r * cols;
        double s = 0.0;
        for (int64_t j = 0; j < cols; j++) {
            const double v = (double)(d[j] * live[j]);
            s += v * v;
        }
        rs[r] = s;
    }
    double dd = 0.0;
    for (int64_t r = 0; r < rows; r++)
        dd += rs[r];
    free(live);
    free(rs);
    return 2.0 * loss - damp * dd;
}

void lmp_gptq_cache_free(lmp_gptq_cache *c)
{
    free(c->Hinv);
    free(c->perm);
    memset(c, 0, sizeof *c);
}

int lmp_quant_gptq(const float *W, int64_t rows, int64_t cols, const double *H,
                   const lmp_gptq_params *p, lmp_qtensor *out, double *loss)
{
    return lmp_quant_gptq_cached(W, rows, cols, H, p, NULL, 0, out, loss);
}

int lmp_quant_gptq_cached(const float *W, int64_t rows, int64_t cols, const double *H, const lmp_gptq_params *p,
                          lmp_gptq_cache *cache, uint64_t tag, lmp_qtensor *out, double *loss)
{
    const bool hit = cache && tag && cache->Hinv && cache->tag == tag && cache->H == H && cache->cols == cols &&
                     cache->percdamp == p->percdamp && cache->act_order == p->act_order &&
                     cache->factor_f64 == p->factor_f64;
    int rc;
    const int bits = p->bits, maxq = (1 << bits) - 1;
    const bool grouped = p->group_size != -1;
    const bool statg = grouped && p->static_groups;
    const int bs = p->blocksize > 0 ? p->blocksize : 128;
    float *Wp = NULL, *Hinv = NULL, *W1 = NULL, *Err = NULL, *cur_s = NULL, *sg_s = NULL;
    int *cur_z = NULL, *sg_z = NULL, *perm = NULL;
    double *row_loss = NULL;
    diag_ent *ent = NULL;

    memset(out, 0, sizeof *out);
    if (cols > INT32_MAX / 2 || rows > INT32_MAX)
        return lmp_err(LMP_EINVAL, "gptq: matrix [%lld, %lld] too large", (long long)rows,
                       (long long)cols);
    if (!(p->percdamp >= 0.0f))
        return lmp_err(LMP_EINVAL, "gptq: percdamp %g must be >= 0", p->percdamp);
    rc = lmp_qtensor_intgroup_init(out, rows, cols, bits, p->group_size, p->sym,
                                   p->act_order && !statg && grouped);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    const int gs = ig->gs, ng = ig->n_groups;

    Wp = lmp_malloc_big((size_t)rows * cols * sizeof(float));
    W1 = malloc((size_t)rows * bs * sizeof(float));
    Err = malloc((size_t)rows * bs * sizeof(float));
    cur_s = malloc((size_t)rows * sizeof(float));
    cur_z = malloc((size_t)rows * sizeof(int));
    perm = malloc((size_t)cols * sizeof(int));
    row_loss = calloc((size_t)rows, sizeof(double));
    if (!Wp || !W1 || !Err || !cur_s || !cur_z || !perm || !row_loss) {
        rc = lmp_err(LMP_ENOMEM, "gptq: out of memory for [%lld, %lld]", (long long)rows,
                     (long long)cols);
        goto cleanup;
    }
    for (int64_t i = 0; i < rows * cols; i++)
        if (!isfinite(W[i])) {
            rc = lmp_err(LMP_ERANGE, "gptq: weight [%lld, %lld] holds NaN or Inf at (%lld, %lld)",
                         (long long)rows, (long long)cols, (long long)(i / cols),
                         (long long)(i % cols));
            goto cleanup;
        }

    /* The reference calls find_params(W) on the whole unmodified W first; only the
     * per-channel case (group_size -1) keeps those parameters. */
    for (int64_t r = 0; r < rows; r++) {
        float mn, mx;
        minmax(W + r * cols, cols, &mn, &mx);
        lmp_intq_find_params(mn, mx, bits, p->sym, p->scale_f16, &cur_s[r], &cur_z[r]);
    }

    /* dead columns: H_ii = 1, W[:, i] = 0 */
    for (int64_t i = 0; i < cols; i++)
        perm[i] = (int)i;
    {
        bool any_dead = false;
        for (int64_t i = 0; i < cols; i++)
            if (H[i * cols + i] == 0.0) {
                any_dead = true;
            } else if (!isfinite(H[i * cols + i])) {
                rc = lmp_err(LMP_ERANGE, "gptq: Hessian diagonal %lld is not finite", (long long)i);
                goto cleanup;
            }
        memcpy(Wp, W, (size_t)rows * cols * sizeof(float));
        if (any_dead)
            for (int64_t i = 0; i < cols; i++)
                if (H[i * cols + i] == 0.0)
                    for (int64_t r = 0; r < rows; r++)
                        Wp[r * cols + i] = 0.0f;
    }

    if (statg) {
        sg_s = malloc((size_t)rows * ng * sizeof(float));
        sg_z = malloc((size_t)rows * ng * sizeof(int));
        if (!sg_s || !sg_z) {
            rc = lmp_err(LMP_ENOMEM, "gptq: out of memory for static groups");
            goto cleanup;
        }
        for (int64_t r = 0; r < rows; r++)
            for (int g = 0; g < ng; g++) {
                int64_t c0 = (int64_t)g * gs, n = c0 + gs < cols ? gs : cols - c0;
                float mn, mx;
                minmax(Wp + r * cols + c0, n, &mn, &mx);
                lmp_intq_find_params(mn, mx, bits, p->sym, p->scale_f16,
                                     &sg_s[r * ng + g], &sg_z[r * ng + g]);
                ig->scales[r * ng + g] = sg_s[r * ng + g];
                ig->zeros[r * ng + g] = (uint8_t)sg_z[r * ng + g];
            }
    }

    double t_chol = lmp_time_s();
    if (hit) { /* the factor and permutation of this H, computed for an earlier linear */
        memcpy(perm, cache->perm, (size_t)cols * sizeof(int));
        Hinv = cache->Hinv;
        if (p->act_order) {
            float *wt = malloc((size_t)cols * sizeof(float));
            if (!wt) {
                Hinv = NULL;
                rc = lmp_err(LMP_ENOMEM, "gptq: out of memory for act-order");
                goto cleanup;
            }
            permute_cols(Wp, rows, cols, perm, wt);
            free(wt);
        }
        goto factored;
    }
    /* act-order: the columns by decreasing diagonal (dead ones count as 1) */
    if (p->act_order) {
        ent = malloc((size_t)cols * sizeof *ent);
        float *wt = malloc((size_t)cols * sizeof(float));
        if (!ent || !wt) {
            free(wt);
            rc = lmp_err(LMP_ENOMEM, "gptq: out of memory for act-order");
            goto cleanup;
        }
        for (int64_t i = 0; i < cols; i++) {
            double h = H[i * cols + i];
            ent[i].d = h == 0.0 ? 1.0 : h;
            ent[i].i = (int)i;
        }
        qsort(ent, (size_t)cols, sizeof *ent, cmp_diag_desc);
        for (int64_t i = 0; i < cols; i++)
            perm[i] = ent[i].i;
        permute_cols(Wp, rows, cols, perm, wt);
        free(wt);
    }
    /* The factor's input, built straight from H in the factor's own buffer (no second
     * cols x cols one): H in the column order perm, dead diagonals set to 1, plus damp I
     * (damp = percdamp * the mean diagonal). Then Hinv = the upper Cholesky factor of
     * its inverse (the reference's cholesky(cholesky_inverse(cholesky(H)), upper=True)),
     * with half the work and without forming H^-1: lmp_gptq_hinv_upper (the reversed
     * lower Cholesky factor, inverted), thread-count independent. In float by default,
     * as the reference's torch float32 (half the time and memory of double); in double
     * with factor_f64. */
    {
        double mean = 0.0;
        for (int64_t i = 0; i < cols; i++) {
            const double h = H[(int64_t)perm[i] * cols + perm[i]];
            mean += h == 0.0 ? 1.0 : h;
        }
        const double damp = (double)p->percdamp * (mean / (double)cols);
        /* f32 first (unless factor_f64); an f32 factor that meets a non-positive pivot is
         * redone in double before the matrix is called indefinite */
        bool f64 = p->factor_f64;
        void *A = NULL;
        for (;;) {
            A = lmp_malloc_big((size_t)cols * cols * (f64 ? sizeof(double) : sizeof(float)));
            if (!A) {
                rc = lmp_err(LMP_ENOMEM, "gptq: out of memory for the [%lld, %lld] factor", (long long)cols,
                             (long long)cols);
                goto cleanup;
            }
            #pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < cols; i++) {
                const double *hr = H + (int64_t)perm[i] * cols;
                const double hd = hr[perm[i]] == 0.0 ? 1.0 : hr[perm[i]];
                if (f64) {
                    double *dr = (double *)A + i * cols;
                    for (int64_t j = 0; j < cols; j++)
                        dr[j] = hr[perm[j]];
                    dr[i] = hd + damp;
                } else {
                    float *fr = (float *)A + i * cols;
                    for (int64_t j = 0; j < cols; j++)
                        fr[j] = (float)hr[perm[j]];
                    fr[i] = (float)(hd + damp);
                }
            }
            int64_t bad = 0;
            rc = f64 ? lmp_gptq_hinv_upper(A, cols, &bad) : lmp_gptq_hinv_upper_f32(A, cols, &bad);
            if (!rc)
                break;
            free(A);
            if (rc == LMP_ERANGE && !f64) {
                lmp_warn("gptq: [%lld x %lld]: the f32 factor of H + damp meets a non-positive pivot (column %lld); "
                         "factored in double instead", (long long)rows, (long long)cols, (long long)bad);
                f64 = true;
                continue;
            }
            if (rc == LMP_ERANGE)
                rc = lmp_err(LMP_ERANGE,
                             "gptq: H + damp is not positive definite (column %lld); raise percdamp (now %g)",
                             (long long)bad, p->percdamp);
            goto cleanup;
        }
        if (f64) {
            /* Hinv[i][j] = U[i][j] in f32 (zeros below the diagonal), written over A's own
             * memory: narrowed in increasing index order (f32 element k ends at byte
             * 4k + 4, before double element k + 1 that is still to be read), then the
             * upper half given back. */
            unsigned char *bytes = A;
            for (int64_t k = 0; k < cols * cols; k++) {
                double v;
                memcpy(&v, bytes + 8 * k, sizeof v);
                float f = (float)v;
                memcpy(bytes + 4 * k, &f, sizeof f);
            }
            Hinv = realloc(A, (size_t)cols * cols * sizeof(float));
            if (!Hinv)
                Hinv = A; /* shrinking failed: keep the block */
        } else {
            Hinv = A;
        }
    }
    if (cache && tag) { /* kept for the next linear of this H (the cache owns it now) */
        int *pc = malloc((size_t)cols * sizeof(int));
        if (pc) {
            lmp_gptq_cache_free(cache);
            memcpy(pc, perm, (size_t)cols * sizeof(int));
            *cache = (lmp_gptq_cache){tag, H, cols, p->percdamp, p->act_order, Hinv, pc, p->factor_f64};
        }
    }
factored:
    t_chol = lmp_time_s() - t_chol;
    double t_loop = lmp_time_s(), t_gemm = 0.0;
    const gptq_rowblk rb = {Wp, Hinv, W1, Err, cur_s, cur_z, sg_s, sg_z, perm, ig, cols, gs, ng, bits, maxq,
                            grouped, statg, p->sym, p->scale_f16};
    for (int64_t i1 = 0; i1 < cols; i1 += bs) {
        int64_t i2 = i1 + bs < cols ? i1 + bs : cols, count = i2 - i1;
        #pragma omp parallel for schedule(static)
        for (int64_t r0 = 0; r0 < rows; r0 += RB) {
            const int nr = rows - r0 < RB ? (int)(rows - r0) : RB;
            double lsum[RB] = {0};
            gptq_rows_block(&rb, r0, nr, i1, count, lsum);
            for (int t = 0; t < nr; t++)
                row_loss[r0 + t] += lsum[t];
        }
        double tg = lmp_time_s();
        if (i2 < cols) /* W[:, i2:] -= Err Hinv[i1:i2, i2:] */
            lmp_gptq_gemm_sub(Wp + i2, cols, Err, count, Hinv + i1 * cols + i2, cols, rows,
                              cols - i2, count);
        t_gemm += lmp_time_s() - tg;
    }
    lmp_debug("gptq [%lld x %lld]: inverse %.2fs, columns %.2fs, block updates %.2fs",
              (long long)rows, (long long)cols, t_chol, lmp_time_s() - t_loop - t_gemm, t_gemm);

    if (!grouped) {
        for (int64_t r = 0; r < rows; r++) {
            ig->scales[r] = cur_s[r];
            ig->zeros[r] = (uint8_t)cur_z[r];
        }
    }
    if (ig->g_idx) {
        for (int64_t j = 0; j < cols; j++)
            ig->g_idx[perm[j]] = (int32_t)(j / gs);
        rc = lmp_qtensor_gidx_normalize(out);
        if (rc)
            goto cleanup;
    }
    if (loss) {
        double t = 0.0;
        for (int64_t r = 0; r < rows; r++)
            t += row_loss[r];
        *loss = t;
    }
    rc = LMP_OK;

cleanup:
    if (rc)
        lmp_qtensor_free(out);
    free(Wp);
    if (!cache || Hinv != cache->Hinv)
        free(Hinv);
    free(W1);
    free(Err);
    free(cur_s);
    free(cur_z);
    free(sg_s);
    free(sg_z);
    free(perm);
    free(row_loss);
    free(ent);
    return rc;
}
