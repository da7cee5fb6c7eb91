/*
 * Size-targeted mixed precision: per-tensor error of each candidate GGUF type, Pareto
 * fronts, and the budget solved by dynamic programming (plan.h says why and how).
 */
#include "plan.h"
#include "../io/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- Pareto fronts */

static int cand_cmp(const void *a, const void *b)
{
    const lmp_plan_cand *x = a, *y = b;
    if (x->bytes != y->bytes)
        return x->bytes < y->bytes ? -1 : 1;
    return x->err < y->err ? -1 : x->err > y->err ? 1 : 0;
}

int lmp_plan_pareto(lmp_plan_cand *c, int n)
{
    if (n <= 0)
        return 0;
    qsort(c, (size_t)n, sizeof *c, cand_cmp);
    int k = 0;
    for (int i = 0; i < n; i++)
        if (k == 0 || c[i].err < c[k - 1].err) /* cheaper points all have more error */
            c[k++] = c[i];
    return k;
}

/* ---------------------------------------------------------------- the solver */

int lmp_plan_solve(lmp_plan *p, uint64_t budget)
{
    uint64_t lo = p->fixed_bytes, hi = p->fixed_bytes;
    for (int i = 0; i < p->n; i++) {
        if (p->t[i].n_cand <= 0)
            return lmp_err(LMP_EINVAL, "plan: tensor '%s' has no candidate type", p->t[i].name);
        lo += p->t[i].cand[0].bytes;
        hi += p->t[i].cand[p->t[i].n_cand - 1].bytes;
    }
    p->min_bytes = lo;
    p->max_bytes = hi;
    double bpw_lo = p->params ? lo * 8.0 / (double)p->params : 0, bpw_hi = p->params ? hi * 8.0 / (double)p->params : 0;
    if (budget < lo)
        return lmp_err(LMP_EINVAL, "target of %llu bytes (%.3f bits per weight) is below the smallest achievable "
                       "size, %llu bytes (%.3f bits per weight, every tensor at its cheapest candidate type)",
                       (unsigned long long)budget, p->params ? budget * 8.0 / (double)p->params : 0,
                       (unsigned long long)lo, bpw_lo);
    if (budget > hi)
        return lmp_err(LMP_EINVAL, "target of %llu bytes (%.3f bits per weight) is above the largest achievable "
                       "size, %llu bytes (%.3f bits per weight, every tensor at its most precise candidate type)",
                       (unsigned long long)budget, p->params ? budget * 8.0 / (double)p->params : 0,
                       (unsigned long long)hi, bpw_hi);
    uint64_t avail = budget - p->fixed_bytes;
    uint64_t unit = (avail + LMP_PLAN_GRID - 1) / LMP_PLAN_GRID;
    if (unit < 1)
        unit = 1;
    int64_t G = (int64_t)(avail / unit); /* cells available */
    size_t W = (size_t)G + 1;
    double *dp = malloc(W * sizeof *dp), *nx = malloc(W * sizeof *nx);
    uint8_t *ch = malloc((size_t)(p->n ? p->n : 1) * W);
    if (!dp || !nx || !ch) {
        free(dp);
        free(nx);
        free(ch);
        return lmp_err(LMP_ENOMEM, "plan: out of memory");
    }
    /* dp[b]: least error of the tensors so far using at most b cells (monotone in b) */
    for (size_t b = 0; b < W; b++)
        dp[b] = 0;
    for (int i = 0; i < p->n; i++) {
        const lmp_plan_tensor *t = &p->t[i];
        uint8_t *c = ch + (size_t)i * W;
        for (size_t b = 0; b < W; b++) {
            double best = INFINITY;
            int bk = 0;
            for (int k = 0; k < t->n_cand; k++) {
                uint64_t cells = (t->cand[k].bytes + unit - 1) / unit;
                if (cells > b)
                    continue;
                double v = dp[b - cells] + t->cand[k].err;
                if (v < best) {
                    best = v;
                    bk = k;
                }
            }
            nx[b] = best;
            c[b] = (uint8_t)bk;
        }
        double *s = dp;
        dp = nx;
        nx = s;
    }
    int rc = LMP_OK;
    if (!isfinite(dp[G])) {
        /* the cell rounding left no room even though the bytes fit: a budget within
         * n cells of the minimum */
        rc = lmp_err(LMP_EINVAL, "target of %llu bytes is too close to the smallest achievable size (%llu bytes) "
                     "for the planner's resolution of %llu bytes; ask for a little more",
                     (unsigned long long)budget, (unsigned long long)lo, (unsigned long long)unit);
    } else {
        size_t b = (size_t)G;
        p->bytes = p->fixed_bytes;
        p->err = 0;
        for (int i = p->n - 1; i >= 0; i--) {
            lmp_plan_tensor *t = &p->t[i];
            int k = ch[(size_t)i * W + b];
            t->choice = k;
            b -= (size_t)((t->cand[k].bytes + unit - 1) / unit);
            p->bytes += t->cand[k].bytes;
            p->err += t->cand[k].err;
        }
    }
    free(dp);
    free(nx);
    free(ch);
    return rc;
}

/* ---------------------------------------------------------------- measurement */

int lmp_plan_default_types(bool imatrix, lmp_dtype *out, int max)
{
    static const lmp_dtype base[] = {LMP_DT_Q2_K, LMP_DT_Q3_K, LMP_DT_Q4_K, LMP_DT_Q5_K, LMP_DT_Q6_K,
                                     LMP_DT_Q8_0, LMP_DT_IQ4_XS, LMP_DT_IQ3_S};
    static const lmp_dtype imx[] = {LMP_DT_IQ3_XXS, LMP_DT_IQ2_S, LMP_DT_IQ2_XS, LMP_DT_IQ2_XXS, LMP_DT_IQ1_M};
    int n = 0;
    for (size_t i = 0; i < sizeof base / sizeof *base && n < max; i++)
        out[n++] = base[i];
    for (size_t i = 0; imatrix && i < sizeof imx / sizeof *imx && n < max; i++)
        out[n++] = imx[i];
    return n;
}

/* llama.cpp refuses these without importance weights (token_embd / output exempt there;
 * the planner offers them only where an entry exists). */
static bool needs_imatrix(lmp_dtype t)
{
    return t == LMP_DT_IQ3_XXS || t == LMP_DT_IQ2_XXS || t == LMP_DT_IQ2_XS || t == LMP_DT_IQ2_S ||
           t == LMP_DT_IQ1_S || t == LMP_DT_IQ1_M;
}

void lmp_plan_free(lmp_plan *p)
{
    if (!p)
        return;
    free(p->t);
    memset(p, 0, sizeof *p);
}

#define PLAN_ROWS 16 /* rows per work item */

/* Importance-weighted squared error and reference of tensor t quantized as dt. */
static int measure_one(const lmp_tensor *t, lmp_dtype dt, const float *qw, const float *imp, double *err,
                       double *ref)
{
    int64_t cols = t->shape[t->ndim - 1], rows = lmp_tensor_nelem(t) / cols;
    const lmp_dtype_traits *ti = lmp_dtype_info(t->dtype), *to = lmp_dtype_info(dt);
    size_t in_row = lmp_dtype_row_bytes(t->dtype, cols), out_row = lmp_dtype_row_bytes(dt, cols);
    int64_t n_items = (rows + PLAN_ROWS - 1) / PLAN_ROWS;
    double se = 0, sr = 0;
    int bad = 0;
#pragma omp parallel reduction(+ : se, sr, bad)
    {
        float *x = malloc(sizeof(float) * (size_t)(PLAN_ROWS * cols));
        float *y = malloc(sizeof(float) * (size_t)cols);
        uint8_t *q = malloc(out_row * PLAN_ROWS);
        if (!x || !y || !q)
            bad++;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            if (!x || !y || !q)
                continue;
            int64_t r0 = it * PLAN_ROWS, nr = rows - r0 < PLAN_ROWS ? rows - r0 : PLAN_ROWS;
            for (int64_t r = 0; r < nr; r++)
                ti->to_f32((const uint8_t *)t->data + (size_t)(r0 + r) * in_row, x + r * cols, cols);
            if (lmp_quant_rows(dt, x, q, nr, cols, qw) == 0) {
                bad++;
                continue;
            }
            for (int64_t r = 0; r < nr; r++) {
                to->to_f32(q + (size_t)r * out_row, y, cols);
                const float *w = x + r * cols;
                for (int64_t j = 0; j < cols; j++) {
                    double d = (double)w[j] - y[j], s = imp ? imp[j] : 1.0;
                    se += s * d * d;
                    sr += s * (double)w[j] * w[j];
                }
            }
        }
        free(x);
        free(y);
        free(q);
    }
    if (bad)
        return lmp_err(LMP_ENOMEM, "plan: cannot quantize tensor '%s' as %s", t->name, to->name);
    *err = se;
    *ref = sr;
    return LMP_OK;
}

int lmp_plan_measure(const char *in, const lmp_plan_params *pp, lmp_plan *out)
{
    memset(out, 0, sizeof *out);
    lmp_dtype deftypes[LMP_PLAN_MAX_CAND];
    const lmp_dtype *types = pp->types;
    int n_types = pp->n_types;
    if (!types) {
        n_types = lmp_plan_default_types(pp->weights != NULL, deftypes, LMP_PLAN_MAX_CAND);
        types = deftypes;
    }
    if (n_types < 1 || n_types > LMP_PLAN_MAX_CAND)
        return lmp_err(LMP_EINVAL, "plan: 1 to %d candidate types", LMP_PLAN_MAX_CAND);
    lmp_ckpt c;
    int rc = lmp_ckpt_open(&c, in);
    if (rc)
        return rc;
    double t0 = lmp_time_s();
    const lmp_gguf_qtype *q8 = lmp_gguf_qtype_find("q8_0");
    lmp_gguf_mix_info mi = {0};
    mi.n_layers = c.config.n_layers;
    mi.n_head = c.config.n_heads;
    mi.n_head_kv = c.config.n_kv_heads;
    mi.tied = lmp_ckpt_find(&c, "output.weight") == NULL;
    mi.has_imatrix = pp->weights != NULL;
    out->t = calloc((size_t)c.n_tensors + 1, sizeof *out->t);
    if (!out->t) {
        lmp_ckpt_close(&c);
        return lmp_err(LMP_ENOMEM, "plan: out of memory");
    }
    int n_imp = 0, n_imp_wanted = 0;
    for (int i = 0; i < c.n_tensors && !rc; i++) {
        const lmp_tensor *t = &c.tensors[i];
        out->params += (uint64_t)lmp_tensor_nelem(t);
        const lmp_dtype_traits *ti = lmp_dtype_info(t->dtype);
        if (lmp_gguf_mix_type(q8, &mi, t->name, t->ndim, t->shape) < 0 || t->ndim < 2) {
            out->fixed_bytes += t->nbytes;
            continue;
        }
        if (ti->is_quant || !ti->to_f32) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' is %s: the planner measures f32/f16/bf16 weights", in,
                         t->name, ti->name);
            break;
        }
        int64_t cols = t->shape[t->ndim - 1];
        if (pp->weights && pp->weights_len && strcmp(t->name, "token_embd.weight") != 0) {
            int64_t len = pp->weights_len(pp->weights_ctx, t->name);
            if (len > 0 && len != cols) {
                rc = lmp_err(LMP_EINVAL, "%s: the importance matrix entry for tensor '%s' holds %lld values, its rows "
                             "have %lld (an imatrix of another model?)", in, t->name, (long long)len, (long long)cols);
                break;
            }
        }
        const float *imp = pp->weights ? pp->weights(pp->weights_ctx, t->name, cols) : NULL;
        if (pp->weights && strncmp(t->name, "blk.", 4) == 0) {
            n_imp_wanted++;
            n_imp += imp != NULL;
        }
        lmp_plan_tensor *pt = &out->t[out->n++];
        snprintf(pt->name, sizeof pt->name, "%s", t->name);
        pt->params = lmp_tensor_nelem(t);
        double ref = 0;
        for (int k = 0; k < n_types && !rc; k++) {
            lmp_dtype dt = types[k];
            if (lmp_dtype_row_bytes(dt, cols) == 0 || !lmp_dtype_info(dt)->from_f32)
                continue; /* blocks do not fit the rows */
            if (needs_imatrix(dt) && !imp)
                continue;
            const float *qw = imp && lmp_quant_uses_weights(dt) ? imp : NULL;
            double se = 0, sr = 0;
            rc = measure_one(t, dt, qw, imp, &se, &sr);
            if (rc)
                break;
            if (!isfinite(se) || !isfinite(sr)) {
                rc = lmp_err(LMP_ERANGE, "%s: tensor '%s' has weights that are not finite", in, t->name);
                break;
            }
            ref = sr;
            lmp_plan_cand *cd = &pt->cand[pt->n_cand++];
            cd->dt = dt;
            cd->bytes = (uint64_t)lmp_dtype_row_bytes(dt, cols) * (uint64_t)(pt->params / cols);
            cd->err = se;
        }
        if (rc)
            break;
        if (pt->n_cand == 0) { /* no candidate fits: kept as it is */
            out->n--;
            out->fixed_bytes += t->nbytes;
            continue;
        }
        for (int k = 0; k < pt->n_cand; k++)
            pt->cand[k].err = ref > 0 ? pt->cand[k].err / ref : 0;
        pt->n_cand = lmp_plan_pareto(pt->cand, pt->n_cand);
        if (pp->progress)
            fprintf(stderr, "[%d/%d] %-32s %d candidates on the front, %s %.3g .. %s %.3g\n", i + 1, c.n_tensors,
                    pt->name, pt->n_cand, lmp_dtype_info(pt->cand[0].dt)->name, pt->cand[0].err,
                    lmp_dtype_info(pt->cand[pt->n_cand - 1].dt)->name, pt->cand[pt->n_cand - 1].err);
    }
    if (!rc && pp->weights && n_imp_wanted > 0 && n_imp == 0)
        rc = lmp_err(LMP_EINVAL, "%s: the importance matrix matches none of the %d block tensors (tensor names or "
                     "row lengths differ: an imatrix of another model?)", in, n_imp_wanted);
    if (!rc && out->n == 0)
        rc = lmp_err(LMP_EINVAL, "%s: no tensor to quantize", in);
    out->min_bytes = out->max_bytes = out->fixed_bytes;
    for (int i = 0; !rc && i < out->n; i++) {
        out->min_bytes += out->t[i].cand[0].bytes;
        out->max_bytes += out->t[i].cand[out->t[i].n_cand - 1].bytes;
    }
    out->seconds = lmp_time_s() - t0;
    lmp_ckpt_close(&c);
    if (rc)
        lmp_plan_free(out);
    return rc;
}
