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
    /* every GGUF type with a quantizer and a matrix kernel that can sit on a dense tensor
     * (the Pareto fronts drop the ones a cheaper type beats); q4_1 and q5_1 fill the steps
     * between q4_K, q5_K and q6_K. Not: tq1_0/tq2_0 (ternary models only), mxfp4 (gpt-oss
     * experts), q1_0/q2_0, f16. */
    static const lmp_dtype base[] = {LMP_DT_Q2_K,  LMP_DT_Q3_K, LMP_DT_Q4_K, LMP_DT_Q5_K,  LMP_DT_Q6_K,
                                     LMP_DT_Q8_0,  LMP_DT_IQ4_XS, LMP_DT_IQ3_S, LMP_DT_IQ4_NL, LMP_DT_Q4_0,
                                     LMP_DT_Q4_1, LMP_DT_Q5_0, LMP_DT_Q5_1};
    static const lmp_dtype imx[] = {LMP_DT_IQ3_XXS, LMP_DT_IQ2_S, LMP_DT_IQ2_XS, LMP_DT_IQ2_XXS, LMP_DT_IQ1_M,
                                    LMP_DT_IQ1_S};
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

/* Tensor i of source s whole into *t: its data in the source's mapping, or in *own
 * (malloc'd; the caller frees it) where the source converts the rows. */
static int src_tensor(const lmp_gguf_src *s, int i, lmp_tensor *t, void **own)
{
    *t = s->tensors[i];
    *own = NULL;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1, rows = cols ? lmp_tensor_nelem(t) / cols : 0;
    void *buf = malloc(t->nbytes ? t->nbytes : 1);
    const void *p = NULL;
    if (!buf)
        return lmp_err(LMP_ENOMEM, "plan: out of memory reading tensor '%s'", t->name);
    int rc = s->rows(s->ctx, i, 0, rows, buf, &p);
    if (!rc && !p)
        rc = lmp_err(LMP_EIO, "%s: cannot read tensor '%s'", s->path, t->name);
    if (rc || p != buf)
        free(buf);
    else
        *own = buf;
    t->data = rc ? NULL : (void *)p;
    t->owned = false;
    return rc;
}

static bool src_has(const lmp_gguf_src *s, const char *name)
{
    for (int i = 0; i < s->n_tensors; i++)
        if (strcmp(s->tensors[i].name, name) == 0)
            return true;
    return false;
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
    lmp_gguf_src file; /* the GGUF file `in`, unless pp->src hands out the tensors */
    const lmp_gguf_src *sc = pp->src ? pp->src : &file;
    int rc = pp->src ? LMP_OK : lmp_gguf_file_src_open(in, &file);
    if (rc)
        return rc;
    double t0 = lmp_time_s();
    const lmp_gguf_qtype *q8 = lmp_gguf_qtype_find("q8_0");
    lmp_gguf_mix_info mi = {0};
    mi.n_layers = sc->n_layers;
    mi.n_head = sc->n_head;
    mi.n_head_kv = sc->n_head_kv;
    mi.tied = !src_has(sc, "output.weight");
    mi.has_imatrix = pp->weights != NULL;
    out->t = calloc((size_t)sc->n_tensors + 1, sizeof *out->t);
    if (!out->t) {
        if (!pp->src)
            lmp_gguf_file_src_close(&file);
        return lmp_err(LMP_ENOMEM, "plan: out of memory");
    }
    int n_imp = 0, n_imp_wanted = 0;
    for (int i = 0; i < sc->n_tensors && !rc; i++) {
        const lmp_tensor *t = &sc->tensors[i]; /* its data read below, when it is measured */
        lmp_tensor tt;
        void *own = NULL;
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
        rc = src_tensor(sc, i, &tt, &own);
        t = &tt;
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
        free(own);
        if (!rc && sc->done)
            sc->done(sc->ctx, i); /* its pages may go (the mapping of a large model) */
        if (rc)
            break;
        if (pt->n_cand == 0) { /* no candidate fits: kept as it is */
            out->n--;
            out->fixed_bytes += t->nbytes;
            continue;
        }
        for (int k = 0; k < pt->n_cand; k++) {
            pt->cand[k].err = pt->cand[k].rel_err = ref > 0 ? pt->cand[k].err / ref : 0;
            pt->cand[k].kld = -1;
        }
        pt->n_cand = lmp_plan_pareto(pt->cand, pt->n_cand);
        if (pp->progress)
            fprintf(stderr, "[%d/%d] %-32s %d candidates on the front, %s %.3g .. %s %.3g\n", i + 1, sc->n_tensors,
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
    if (!pp->src)
        lmp_gguf_file_src_close(&file);
    if (rc)
        lmp_plan_free(out);
    return rc;
}

/* ---------------------------------------------------------------- KLD calibration */

void lmp_plan_calib_default_params(lmp_plan_calib_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_calib_default_params(&p->cp);
    p->cp.mode = LMP_CALIB_CHUNKS;
    p->cp.n_samples = 0; /* 0: tokens / seq_len windows */
    p->cp.seq_len = 256;
    p->tokens = 1024;
    p->probes = 2;
}

/* Where a GGUF tensor sits in the engine. */
typedef enum { SITE_NONE = 0, SITE_LINEAR, SITE_EMBED, SITE_OUTPUT } plan_site;

static plan_site tensor_site(const char *name, int n_layers, int *layer, lmp_linear *which)
{
    if (strcmp(name, "token_embd.weight") == 0)
        return SITE_EMBED;
    if (strcmp(name, "output.weight") == 0)
        return SITE_OUTPUT;
    static const struct {
        const char *suffix;
        lmp_linear w;
    } lin[] = {{"attn_q.weight", LMP_LIN_Q},      {"attn_k.weight", LMP_LIN_K},   {"attn_v.weight", LMP_LIN_V},
               {"attn_output.weight", LMP_LIN_O}, {"ffn_gate.weight", LMP_LIN_GATE}, {"ffn_up.weight", LMP_LIN_UP},
               {"ffn_down.weight", LMP_LIN_DOWN}};
    int l, off = 0;
    if (sscanf(name, "blk.%d.%n", &l, &off) != 1 || off == 0 || l < 0 || l >= n_layers)
        return SITE_NONE;
    for (size_t i = 0; i < sizeof lin / sizeof *lin; i++)
        if (strcmp(name + off, lin[i].suffix) == 0) {
            *layer = l;
            *which = lin[i].w;
            return SITE_LINEAR;
        }
    return SITE_NONE;
}

typedef struct {
    lmp_model *m;
    bool own_model;          /* fwd_close frees m (fwd_open loaded it) */
    int W, S, L, d, V;       /* windows, tokens per window, layers, hidden, vocab */
    int w0, w1;              /* the windows fwd_kld measures (default all) */
    const int32_t *tokens;   /* [W][S] */
    float *h;                /* [L + 1][W * S][d]: the input of block l (h[L]: the final states) */
    float *base_lp;          /* [W * S][V] log-softmax of the original model */
    float *x, *logits;       /* work: [S][d], [HEAD_ROWS][V] */
    const lmp_gguf_src *src; /* the GGUF tensors (lmp_plan_params.src), or NULL: m's file's */
    lmp_tensor *st;          /* (src->n_tensors) the source's tensors the model took, with data */
    void **own;              /* (src->n_tensors) their converted bytes, or NULL */
} plan_fwd;

#define HEAD_ROWS 64

static void log_softmax(const float *z, int V, float *out)
{
    float mx = z[0];
    for (int v = 1; v < V; v++)
        mx = z[v] > mx ? z[v] : mx;
    double s = 0;
    for (int v = 0; v < V; v++)
        s += exp((double)z[v] - mx);
    float lz = (float)(mx + log(s));
    for (int v = 0; v < V; v++)
        out[v] = z[v] - lz;
}

#define RW_STORE_H 1  /* keep every block's input in f->h (the states the probes start from) */
#define RW_STORE_LP 2 /* keep the log-softmax as the reference (else add the KLD against it) */

/* The states of window w from block `from` on into f->x, then the head: either stores the
 * log-softmax (RW_STORE_LP) or adds the KLD(base || this) of every position to *kld. With
 * RW_STORE_H the inputs of the blocks are cached for runs that start later. */
static int run_window(plan_fwd *f, int w, int from, int mode, double *kld)
{
    const size_t ws = (size_t)f->S * f->d;
    const bool base = (mode & RW_STORE_LP) != 0;
    int rc = 0;
    if (from == 0) {
        if ((rc = lmp_model_embed(f->m, f->tokens + (size_t)w * f->S, f->S, f->x)))
            return rc;
        if (mode & RW_STORE_H)
            memcpy(f->h + (size_t)w * ws, f->x, ws * sizeof(float));
    } else {
        memcpy(f->x, f->h + (size_t)from * f->W * ws + (size_t)w * ws, ws * sizeof(float));
    }
    for (int l = from; l < f->L; l++) {
        if ((rc = lmp_block_run(f->m, l, f->x, f->S, 0, NULL, NULL, NULL)))
            return rc;
        if (mode & RW_STORE_H)
            memcpy(f->h + (size_t)(l + 1) * f->W * ws + (size_t)w * ws, f->x, ws * sizeof(float));
    }
    double acc = 0;
    for (int r0 = 0; r0 < f->S; r0 += HEAD_ROWS) {
        int nr = f->S - r0 < HEAD_ROWS ? f->S - r0 : HEAD_ROWS;
        lmp_model_head(f->m, f->x + (size_t)r0 * f->d, nr, f->logits);
        const size_t V = (size_t)f->V;
        if (base) {
            for (int r = 0; r < nr; r++)
                log_softmax(f->logits + r * V, f->V, f->base_lp + ((size_t)w * f->S + r0 + r) * V);
            continue;
        }
#pragma omp parallel for reduction(+ : acc) schedule(static)
        for (int r = 0; r < nr; r++) {
            float *z = f->logits + r * V;
            const float *bp = f->base_lp + ((size_t)w * f->S + r0 + r) * V;
            log_softmax(z, f->V, z);
            double k = 0;
            for (size_t v = 0; v < V; v++)
                k += exp((double)bp[v]) * ((double)bp[v] - z[v]);
            acc += k > 0 ? k : 0;
        }
    }
    if (kld)
        *kld += acc;
    return 0;
}

/* Mean KLD over every calibration position with the model as it is now, from block `from`. */
static int fwd_kld(plan_fwd *f, int from, double *kld)
{
    double s = 0;
    for (int w = f->w0; w < f->w1; w++) {
        int rc = run_window(f, w, from, 0, &s);
        if (rc)
            return rc;
    }
    *kld = s / ((double)(f->w1 - f->w0) * f->S);
    return 0;
}

/* The tensor quantized as dt into owned bytes (the writer's quantizer and weights). */
static int quantize_whole(const lmp_tensor *t, lmp_dtype dt, const float *qw, void **out, size_t *nbytes)
{
    int64_t cols = t->shape[t->ndim - 1], rows = lmp_tensor_nelem(t) / cols;
    const lmp_dtype_traits *ti = lmp_dtype_info(t->dtype);
    size_t in_row = lmp_dtype_row_bytes(t->dtype, cols), out_row = lmp_dtype_row_bytes(dt, cols);
    uint8_t *q = malloc(out_row * (size_t)rows);
    if (!q)
        return lmp_err(LMP_ENOMEM, "plan: out of memory quantizing '%s'", t->name);
    int64_t n_items = (rows + PLAN_ROWS - 1) / PLAN_ROWS;
    int bad = 0;
#pragma omp parallel reduction(+ : bad)
    {
        float *x = malloc(sizeof(float) * (size_t)(PLAN_ROWS * cols));
        if (!x)
            bad++;
#pragma omp for schedule(dynamic, 1)
        for (int64_t it = 0; it < n_items; it++) {
            if (!x)
                continue;
            int64_t r0 = it * PLAN_ROWS, nr = rows - r0 < PLAN_ROWS ? rows - r0 : PLAN_ROWS;
            for (int64_t r = 0; r < nr; r++)
                ti->to_f32((const uint8_t *)t->data + (size_t)(r0 + r) * in_row, x + r * cols, cols);
            if (lmp_quant_rows(dt, x, q + (size_t)r0 * out_row, nr, cols, qw) == 0)
                bad++;
        }
        free(x);
    }
    if (bad) {
        free(q);
        return lmp_err(LMP_ENOMEM, "plan: cannot quantize tensor '%s' as %s", t->name, lmp_dtype_info(dt)->name);
    }
    *out = q;
    *nbytes = out_row * (size_t)rows;
    return LMP_OK;
}

/* Tensor t quantized as dt (*q malloc'd, *nb bytes) and the matrix descriptor *w over it. */
static int quantize_wmat(const lmp_tensor *t, lmp_dtype dt, const float *qw, void **q, size_t *nb, lmp_wmat *w)
{
    int rc = quantize_whole(t, dt, qw, q, nb);
    if (rc)
        return rc;
    const int64_t cols = t->shape[t->ndim - 1];
    *w = (lmp_wmat){.dtype = dt, .rows = lmp_tensor_nelem(t) / cols, .cols = cols, .data = *q,
                    .row_bytes = lmp_dtype_row_bytes(dt, cols)};
    return LMP_OK;
}

/* KLD of the model with tensor `name` alone replaced by its quantization as dt. */
static int probe_one(plan_fwd *f, const lmp_tensor *t, plan_site site, int layer, lmp_linear which, bool tied,
                     lmp_dtype dt, const float *qw, double *kld)
{
    void *q = NULL;
    size_t nb = 0;
    lmp_wmat w;
    int rc = quantize_wmat(t, dt, qw, &q, &nb, &w);
    if (rc)
        return rc;
    if (site == SITE_LINEAR) {
        lmp_wmat keep = *lmp_model_linear(f->m, layer, which);
        if (!(rc = lmp_model_set_linear(f->m, layer, which, &w))) {
            rc = fwd_kld(f, layer, kld);
            int r2 = lmp_model_set_linear(f->m, layer, which, &keep);
            rc = rc ? rc : r2;
        }
    } else if (site == SITE_OUTPUT || (site == SITE_EMBED && tied)) {
        lmp_wmat keep = *lmp_model_output(f->m);
        const lmp_tensor *keep_e = lmp_model_embed_tensor(f->m);
        lmp_tensor te = *t;
        te.dtype = dt;
        te.data = q;
        te.nbytes = nb;
        te.owned = false;
        if (!(rc = lmp_model_set_output(f->m, &w)) && (site == SITE_OUTPUT || !(rc = lmp_model_set_embed(f->m, &te))))
            rc = fwd_kld(f, site == SITE_OUTPUT ? f->L : 0, kld);
        lmp_model_set_output(f->m, &keep);
        lmp_model_set_embed(f->m, keep_e);
    } else { /* an untied input embedding */
        const lmp_tensor *keep_e = lmp_model_embed_tensor(f->m);
        lmp_tensor te = *t;
        te.dtype = dt;
        te.data = q;
        te.nbytes = nb;
        te.owned = false;
        if (!(rc = lmp_model_set_embed(f->m, &te)))
            rc = fwd_kld(f, 0, kld);
        lmp_model_set_embed(f->m, keep_e);
    }
    free(q);
    return rc;
}

static int cmp_dist(const void *a, const void *b)
{
    const double *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0;
}

static int cmp_dist_1(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static void fwd_close(plan_fwd *f, lmp_calib_data *cal)
{
    free(f->h);
    free(f->base_lp);
    free(f->x);
    free(f->logits);
    if (cal)
        lmp_calib_free(cal);
    if (f->own_model)
        lmp_model_free(f->m);
    for (int i = 0; f->own && i < f->src->n_tensors; i++)
        free(f->own[i]); /* after the model that borrowed them */
    free(f->own);
    free(f->st);
    memset(f, 0, sizeof *f);
}

/* With f->m, tokens, W and S set: the buffers, and the original model run once (its
 * log-probs and every block's input kept). On failure the buffers are freed (not m). */
static int fwd_setup(plan_fwd *f)
{
    const lmp_config *cfg = lmp_model_config(f->m);
    f->L = cfg->n_layers;
    f->d = (int)cfg->hidden_size;
    f->V = lmp_model_n_vocab(f->m);
    f->w0 = 0;
    f->w1 = f->W;
    size_t ntok = (size_t)f->W * f->S;
    f->h = malloc(sizeof(float) * (size_t)(f->L + 1) * ntok * (size_t)f->d);
    f->base_lp = malloc(sizeof(float) * ntok * (size_t)f->V);
    f->x = malloc(sizeof(float) * (size_t)f->S * (size_t)f->d);
    f->logits = malloc(sizeof(float) * HEAD_ROWS * (size_t)f->V);
    int rc = 0;
    if (!f->h || !f->base_lp || !f->x || !f->logits)
        rc = lmp_err(LMP_ENOMEM, "plan: out of memory for %zu calibration positions (vocabulary %d): use fewer "
                     "windows", ntok, f->V);
    for (int w = 0; w < f->W && !rc; w++)
        rc = run_window(f, w, 0, RW_STORE_H | RW_STORE_LP, NULL);
    if (rc) {
        free(f->h);
        free(f->base_lp);
        free(f->x);
        free(f->logits);
        f->h = f->base_lp = f->x = f->logits = NULL;
    }
    return rc;
}

struct lmp_plan_probe {
    plan_fwd f;
    int32_t *tokens; /* owned copy */
};

int lmp_plan_probe_open(lmp_model *m, const int32_t *tokens, int windows, int seq_len, lmp_plan_probe **out)
{
    *out = NULL;
    if (windows < 1 || seq_len < 1)
        return lmp_err(LMP_EINVAL, "plan: probes need at least one window of one token");
    if (lmp_model_is_moe(m))
        return lmp_err(LMP_EUNSUPPORTED, "plan: KLD probes of a mixture of experts are not supported");
    lmp_plan_probe *p = calloc(1, sizeof *p);
    size_t nt = (size_t)windows * (size_t)seq_len;
    if (!p || !(p->tokens = malloc(nt * sizeof *p->tokens))) {
        free(p);
        return lmp_err(LMP_ENOMEM, "plan: out of memory");
    }
    memcpy(p->tokens, tokens, nt * sizeof *p->tokens);
    p->f.m = m;
    p->f.own_model = false;
    p->f.tokens = p->tokens;
    p->f.W = windows;
    p->f.S = seq_len;
    int rc = fwd_setup(&p->f);
    if (rc) {
        free(p->tokens);
        free(p);
        return rc;
    }
    *out = p;
    return LMP_OK;
}

int lmp_plan_probe_kld(lmp_plan_probe *p, int from_layer, double *kld)
{
    if (from_layer < 0 || from_layer > p->f.L)
        return lmp_err(LMP_EINVAL, "plan: probe from layer %d of %d", from_layer, p->f.L);
    return fwd_kld(&p->f, from_layer, kld);
}

void lmp_plan_probe_close(lmp_plan_probe *p)
{
    if (!p)
        return;
    fwd_close(&p->f, NULL);
    free(p->tokens);
    free(p);
}

/* Tensor `name` as the GGUF holds it: the source's, else the model's own file's. */
static const lmp_tensor *fwd_find(const plan_fwd *f, const char *name)
{
    const lmp_tensor *t = NULL;
    if (!f->src)
        t = lmp_ckpt_find(lmp_model_ckpt(f->m), name);
    for (int i = 0; f->src && i < f->src->n_tensors && !t; i++)
        if (strcmp(f->src->tensors[i].name, name) == 0)
            t = f->st[i].data ? &f->st[i] : NULL;
    int layer = -1;
    lmp_linear which = LMP_LIN_Q;
    if (t && tensor_site(name, lmp_model_config(f->m)->n_layers, &layer, &which) == SITE_LINEAR) {
        const lmp_wmat *w = lmp_model_linear(f->m, layer, which);
        if (!w || t->ndim != 2 || w->rows != t->shape[0] || w->cols != t->shape[1])
            return NULL; /* not one of the engine's linears as it is (phi3's fused ffn_up) */
    }
    return t;
}

/* The model f->m (loaded from an HF folder) made the one the GGUF of source s holds: every
 * linear, the embedding, the output and the q/k/v biases replaced by the source's tensors
 * (llama's q/k rows permuted), and the RoPE pairs taken in the source's order. The norms
 * are the same numbers either way. */
static int fwd_adopt(plan_fwd *f, const lmp_gguf_src *s)
{
    const int L = lmp_model_config(f->m)->n_layers;
    f->src = s;
    f->st = calloc((size_t)s->n_tensors + 1, sizeof *f->st);
    f->own = calloc((size_t)s->n_tensors + 1, sizeof *f->own);
    if (!f->st || !f->own)
        return lmp_err(LMP_ENOMEM, "plan: out of memory");
    const bool tied = !src_has(s, "output.weight");
    int rc = LMP_OK;
    for (int i = 0; i < s->n_tensors && !rc; i++) {
        char wname[LMP_MAX_NAME];
        const char *nm = s->tensors[i].name;
        size_t n = strlen(nm);
        bool bias = n > 5 && strcmp(nm + n - 5, ".bias") == 0 && n + 2 < sizeof wname;
        snprintf(wname, sizeof wname, "%.*s%s", (int)(bias ? n - 5 : n), nm, bias ? ".weight" : "");
        int layer = -1;
        lmp_linear which = LMP_LIN_Q;
        plan_site site = tensor_site(wname, L, &layer, &which);
        if (site == SITE_NONE || (bias && site != SITE_LINEAR))
            continue;
        lmp_tensor *t = &f->st[i];
        if ((rc = src_tensor(s, i, t, &f->own[i])))
            break;
        const int64_t cols = t->shape[t->ndim - 1], rows = lmp_tensor_nelem(t) / cols;
        if (bias) {
            float *b = lmp_model_bias_mut(f->m, layer, which);
            const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
            if (!b || t->ndim != 1 || !tr->to_f32 || lmp_model_linear(f->m, layer, which)->rows != cols)
                rc = lmp_err(LMP_EFORMAT, "%s: bias '%s' does not fit the model", s->path, nm);
            else
                tr->to_f32(t->data, b, cols);
            continue;
        }
        lmp_wmat w = {.dtype = t->dtype, .rows = rows, .cols = cols, .data = t->data,
                      .row_bytes = lmp_dtype_row_bytes(t->dtype, cols)};
        if (site == SITE_LINEAR) {
            const lmp_wmat *cur = lmp_model_linear(f->m, layer, which);
            if (!cur || cur->rows != rows || cur->cols != cols) { /* phi3's fused ffn_up: not probed */
                free(f->own[i]);
                f->own[i] = NULL;
                t->data = NULL;
                continue;
            }
            rc = lmp_model_set_linear(f->m, layer, which, &w);
        } else if (site == SITE_OUTPUT) {
            rc = lmp_model_set_output(f->m, &w);
        } else if (!(rc = lmp_model_set_embed(f->m, t)) && tied) {
            rc = lmp_model_set_output(f->m, &w);
        }
        if (!rc && f->own[i] && s->done)
            s->done(s->ctx, i); /* the folder's own rows are no longer used */
    }
    if (!rc)
        lmp_model_set_rope_interleaved(f->m, s->qk_interleaved);
    return rc;
}

/* Loads the model of GGUF `in` (or of the HF folder `in`, made the one pp->src's GGUF
 * holds) and the calibration windows, and runs the original once: its log-probs and every
 * block's input kept. */
static int fwd_open(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp, int mult,
                    plan_fwd *f, lmp_calib_data *cal)
{
    memset(f, 0, sizeof *f);
    memset(cal, 0, sizeof *cal);
    if (!cp->calib_path)
        return lmp_err(LMP_EINVAL, "plan: calibration needs a text");
    int rc = lmp_model_load(&f->m, in);
    if (rc)
        return rc;
    f->own_model = true;
    const lmp_config *cfg = lmp_model_config(f->m);
    if (lmp_model_is_moe(f->m)) {
        lmp_model_free(f->m);
        f->m = NULL;
        return lmp_err(LMP_EUNSUPPORTED, "%s: KLD calibration of a mixture of experts is not supported", in);
    }
    if (pp->src && (rc = fwd_adopt(f, pp->src))) {
        fwd_close(f, cal);
        return rc;
    }
    lmp_calib_params wp = cp->cp;
    if (wp.seq_len > cfg->max_pos)
        wp.seq_len = cfg->max_pos;
    if (wp.n_samples <= 0) /* windows of the model's context (up to seq_len), `tokens` in all */
        wp.n_samples = wp.seq_len > 0 && cp->tokens > wp.seq_len ? cp->tokens / wp.seq_len : 1;
    wp.n_samples *= mult;
    if ((rc = lmp_calib_load(f->m, cp->calib_path, &wp, cal))) {
        fwd_close(f, cal);
        return rc;
    }
    f->W = cal->n_samples;
    f->S = cal->seq_len;
    f->tokens = cal->tokens;
    if ((rc = fwd_setup(f)))
        fwd_close(f, cal);
    return rc;
}

int lmp_plan_calibrate(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp, lmp_plan *p)
{
    double t0 = lmp_time_s();
    plan_fwd f;
    lmp_calib_data cal;
    int rc = fwd_open(in, pp, cp, 1, &f, &cal);
    if (rc)
        return rc;
    const plan_fwd *ck = &f;
    bool tied = fwd_find(ck, "output.weight") == NULL;
    int n_probes = 0;
    double *logscale = calloc((size_t)p->n + 1, sizeof *logscale);
    bool *probed = calloc((size_t)p->n + 1, sizeof *probed);
    if (!logscale || !probed) {
        free(logscale);
        free(probed);
        rc = lmp_err(LMP_ENOMEM, "plan: out of memory");
        fwd_close(&f, &cal);
        return rc;
    }
    for (int i = 0; i < p->n && !rc; i++) {
        lmp_plan_tensor *pt = &p->t[i];
        int layer = -1;
        lmp_linear which = LMP_LIN_Q;
        plan_site site = tensor_site(pt->name, f.L, &layer, &which);
        const lmp_tensor *t = fwd_find(ck, pt->name);
        if (site == SITE_NONE || !t)
            continue; /* given the median ratio below */
        int64_t cols = t->shape[t->ndim - 1];
        const float *imp = pp->weights ? pp->weights(pp->weights_ctx, pt->name, cols) : NULL;
        /* which points: nearest the target's bits per weight (or the middle) */
        double order[LMP_PLAN_MAX_CAND][2];
        double want = cp->target_bpw > 0 ? cp->target_bpw : 0;
        for (int k = 0; k < pt->n_cand; k++) {
            double bpw = pt->cand[k].bytes * 8.0 / (double)pt->params;
            order[k][0] = want > 0 ? fabs(bpw - want) : fabs(k - (pt->n_cand - 1) / 2.0);
            order[k][1] = k;
        }
        qsort(order, (size_t)pt->n_cand, sizeof order[0], cmp_dist);
        int np = cp->probes <= 0 || cp->probes > pt->n_cand ? pt->n_cand : cp->probes;
        for (int j = 0; j < np && !rc; j++) {
            lmp_plan_cand *c = &pt->cand[(int)order[j][1]];
            const float *qw = imp && lmp_quant_uses_weights(c->dt) ? imp : NULL;
            double kld = 0;
            rc = probe_one(&f, t, site, layer, which, tied, c->dt, qw, &kld);
            c->kld = kld;
            n_probes++;
        }
        if (rc)
            break;
        probed[i] = true;
        /* the ratio KLD / rel_err: the probes' (log) geometric mean for the tensor */
        double ls = 0;
        int nl = 0;
        for (int k = 0; k < pt->n_cand; k++)
            if (pt->cand[k].kld >= 0 && pt->cand[k].rel_err > 0) {
                ls += log((pt->cand[k].kld > 1e-12 ? pt->cand[k].kld : 1e-12) / pt->cand[k].rel_err);
                nl++;
            }
        logscale[i] = nl ? ls / nl : log(1e-12);
        if (cp->progress)
            fprintf(stderr, "[plan %d/%d] %-28s KLD per unit error %.4g\n", i + 1, p->n, pt->name, exp(logscale[i]));
    }
    if (!rc) {
        /* tensors the engine cannot probe alone: the median ratio of the others */
        double *v = malloc(sizeof(double) * ((size_t)p->n + 1));
        int nv = 0;
        for (int i = 0; v && i < p->n; i++)
            if (probed[i])
                v[nv++] = logscale[i];
        double med = log(1e-12);
        if (nv) {
            qsort(v, (size_t)nv, sizeof *v, cmp_dist_1);
            med = v[nv / 2];
        }
        free(v);
        for (int i = 0; i < p->n; i++) {
            lmp_plan_tensor *pt = &p->t[i];
            if (!probed[i])
                logscale[i] = med;
            pt->scale = exp(logscale[i]);
            /* predicted: measured where probed; else rel_err times the ratio of the nearest
             * probes, interpolated in log error between the two around it */
            for (int k = 0; k < pt->n_cand; k++) {
                lmp_plan_cand *c = &pt->cand[k];
                if (c->kld >= 0) {
                    c->err = c->kld;
                    continue;
                }
                int lo = -1, hi = -1; /* probed points with more / less error */
                for (int j = 0; j < pt->n_cand; j++) {
                    if (pt->cand[j].kld < 0 || pt->cand[j].rel_err <= 0)
                        continue;
                    if (pt->cand[j].rel_err >= c->rel_err && (lo < 0 || pt->cand[j].rel_err < pt->cand[lo].rel_err))
                        lo = j;
                    if (pt->cand[j].rel_err <= c->rel_err && (hi < 0 || pt->cand[j].rel_err > pt->cand[hi].rel_err))
                        hi = j;
                }
                double r;
                if (lo >= 0 && hi >= 0 && pt->cand[lo].rel_err > pt->cand[hi].rel_err) {
                    double rl = log((pt->cand[lo].kld > 1e-12 ? pt->cand[lo].kld : 1e-12) / pt->cand[lo].rel_err);
                    double rh = log((pt->cand[hi].kld > 1e-12 ? pt->cand[hi].kld : 1e-12) / pt->cand[hi].rel_err);
                    double a = (log(c->rel_err) - log(pt->cand[hi].rel_err)) /
                               (log(pt->cand[lo].rel_err) - log(pt->cand[hi].rel_err));
                    r = rh + a * (rl - rh);
                } else if (lo >= 0 || hi >= 0) {
                    int j = lo >= 0 ? lo : hi;
                    r = log((pt->cand[j].kld > 1e-12 ? pt->cand[j].kld : 1e-12) / pt->cand[j].rel_err);
                } else {
                    r = logscale[i];
                }
                c->err = c->rel_err * exp(r);
            }
            pt->n_cand = lmp_plan_pareto(pt->cand, pt->n_cand);
        }
        p->calibrated = true;
        p->calib_windows = f.W;
        p->calib_seqlen = f.S;
        p->n_probes = n_probes;
    }
    free(logscale);
    free(probed);
    p->calib_seconds = lmp_time_s() - t0;
    fwd_close(&f, &cal);
    return rc;
}

/* ---------------------------------------------------------------- refinement in context */

/* Installs tensor t quantized as dt in the model for every later pass; the bytes go to
 * *buf (the caller frees them after the model, or after replacing them), the embedding's
 * descriptor to *emb (it must outlive its use, as lmp_model_set_embed borrows it). */
static int install_one(plan_fwd *f, const lmp_tensor *t, plan_site site, int layer, lmp_linear which, bool tied,
                       lmp_dtype dt, const float *qw, void **buf, lmp_tensor *emb)
{
    void *q = NULL;
    size_t nb = 0;
    lmp_wmat w;
    int rc = quantize_wmat(t, dt, qw, &q, &nb, &w);
    if (rc)
        return rc;
    if (site == SITE_LINEAR) {
        rc = lmp_model_set_linear(f->m, layer, which, &w);
    } else {
        if (site == SITE_OUTPUT || tied)
            rc = lmp_model_set_output(f->m, &w);
        if (!rc && site == SITE_EMBED) {
            *emb = *t;
            emb->dtype = dt;
            emb->data = q;
            emb->nbytes = nb;
            emb->owned = false;
            rc = lmp_model_set_embed(f->m, emb);
        }
    }
    if (rc) {
        free(q);
        return rc;
    }
    free(*buf); /* the bytes it replaces (no longer referenced) */
    *buf = q;
    return LMP_OK;
}

typedef struct {
    const lmp_tensor *t;
    plan_site site;
    int layer, from;
    lmp_linear which;
    const float *imp;
} plan_where;

/* Mean KLD of the model as installed now over the windows fwd_kld measures (*kld) and over
 * the others (*kval; NULL: not wanted), caching every block's input of every window. */
static int fwd_cache(plan_fwd *f, double *kld, double *kval)
{
    double s = 0, v = 0;
    for (int w = 0; w < f->W; w++) {
        int rc = run_window(f, w, 0, RW_STORE_H, w >= f->w0 && w < f->w1 ? &s : &v);
        if (rc)
            return rc;
    }
    *kld = s / ((double)(f->w1 - f->w0) * f->S);
    if (kval)
        *kval = f->W > f->w1 - f->w0 ? v / ((double)(f->W - (f->w1 - f->w0)) * f->S) : *kld;
    return 0;
}

/* Mean KLD over the validation windows (those fwd_kld does not measure; all when there are
 * none) with the model as it is now, from block `from`. */
static int fwd_kld_val(plan_fwd *f, int from, double *kld)
{
    int w0 = f->w0, w1 = f->w1;
    if (f->W > w1 - w0) {
        f->w0 = w1;
        f->w1 = f->W;
    }
    int rc = fwd_kld(f, from, kld);
    f->w0 = w0;
    f->w1 = w1;
    return rc;
}

void lmp_plan_refine_default_params(lmp_plan_refine_params *r)
{
    memset(r, 0, sizeof *r);
    r->rounds = 2;
    r->pairs = 24;
    r->patience = 8;
}

typedef struct {
    int up, dn1, dn2; /* tensors moved one type dearer / cheaper, -1: none */
} plan_move;

/* The in-context differences of tensor i at its current choice c, the model (every
 * tensor at its choice) at KLD k0: its two neighbours on the front installed alone and
 * measured (cx[c +- 1] = KLD - k0), the rest of the front the alone-calibrated
 * differences `al` scaled on each side by the ratio the neighbour measured (never
 * negative). */
static int probe_neighbours(plan_fwd *f, const plan_where *wh, bool tied, lmp_plan_tensor *pt, double k0,
                            const double *al, double *cx, int *n_probes)
{
    int c = pt->choice, rc = 0;
    for (int k = 0; k < pt->n_cand; k++)
        cx[k] = NAN;
    cx[c] = 0;
    if (wh->site == SITE_NONE)
        return 0;
    for (int d = -1; d <= 1 && !rc; d += 2) {
        int k = c + d;
        if (k < 0 || k >= pt->n_cand)
            continue;
        double kl = 0;
        lmp_dtype dt = pt->cand[k].dt;
        rc = probe_one(f, wh->t, wh->site, wh->layer, wh->which, tied, dt,
                       wh->imp && lmp_quant_uses_weights(dt) ? wh->imp : NULL, &kl);
        (*n_probes)++;
        cx[k] = kl - k0;
    }
    for (int d = -1; d <= 1; d += 2) {
        int kn = c + d;
        if (kn < 0 || kn >= pt->n_cand)
            continue;
        double da = al[kn] - al[c], rho = da != 0 ? cx[kn] / da : 1;
        for (int k = kn + d; k >= 0 && k < pt->n_cand; k += d)
            cx[k] = cx[kn] + (al[k] - al[kn]) * (rho > 0 ? rho : 1);
    }
    return rc;
}

/* The in-context searches' forward (refine, context): twice the windows, the first half
 * for the probes and the second half deciding what is kept (a text too short for both:
 * the same windows decide). */
static int fwd_open_halves(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp, plan_fwd *f,
                           lmp_calib_data *cal)
{
    int rc = fwd_open(in, pp, cp, 2, f, cal);
    if (rc == LMP_EINVAL)
        return fwd_open(in, pp, cp, 1, f, cal);
    if (!rc)
        f->w1 = f->W / 2;
    return rc;
}

/* Where each plan tensor sits in the forward (SITE_NONE: not found there, never
 * installed), its importance weights, and its candidates' errors alone
 * (alone[i * LMP_PLAN_MAX_CAND + k]). */
static void where_setup(const plan_fwd *f, const lmp_plan_params *pp, const lmp_plan *p, plan_where *wh,
                        double *alone)
{
    for (int i = 0; i < p->n; i++) {
        const lmp_plan_tensor *pt = &p->t[i];
        wh[i].site = tensor_site(pt->name, f->L, &wh[i].layer, &wh[i].which);
        wh[i].t = fwd_find(f, pt->name);
        if (!wh[i].t)
            wh[i].site = SITE_NONE;
        wh[i].from = wh[i].site == SITE_LINEAR ? wh[i].layer : wh[i].site == SITE_OUTPUT ? f->L : 0;
        if (wh[i].site != SITE_NONE) {
            int64_t cols = wh[i].t->shape[wh[i].t->ndim - 1];
            wh[i].imp = pp->weights ? pp->weights(pp->weights_ctx, pt->name, cols) : NULL;
        }
        for (int k = 0; k < pt->n_cand; k++)
            alone[(size_t)i * LMP_PLAN_MAX_CAND + k] = pt->cand[k].err;
    }
}

/* The budget solved again on the costs cost[i * LMP_PLAN_MAX_CAND + k] (times scale[i]
 * when scale), the candidates' alone errors put back after; prev gets the choices before.
 * Returns how many tensors moved; 0 (the previous choices back) when none did or the
 * solve failed. */
static int resolve_moved(lmp_plan *p, uint64_t budget, const double *cost, const double *scale, const double *alone,
                         int *prev)
{
    for (int i = 0; i < p->n; i++) {
        prev[i] = p->t[i].choice;
        for (int k = 0; k < p->t[i].n_cand; k++)
            p->t[i].cand[k].err = cost[(size_t)i * LMP_PLAN_MAX_CAND + k] * (scale ? scale[i] : 1.0);
    }
    int src = lmp_plan_solve(p, budget);
    for (int i = 0; i < p->n; i++)
        for (int k = 0; k < p->t[i].n_cand; k++)
            p->t[i].cand[k].err = alone[(size_t)i * LMP_PLAN_MAX_CAND + k];
    int moved = 0;
    for (int i = 0; !src && i < p->n; i++)
        moved += p->t[i].choice != prev[i];
    if (src || moved == 0) {
        for (int i = 0; i < p->n; i++)
            p->t[i].choice = prev[i];
        return 0;
    }
    return moved;
}

/* The installed plan's KLD on the probe (k) and validation (v) windows, kept in p as the
 * solved plan's. */
static int measure_solved(plan_fwd *f, lmp_plan *p, double *k, double *v)
{
    int rc = fwd_cache(f, k, v);
    if (!rc) {
        p->kld_solved = *k;
        p->kld_val_solved = *v;
        p->val_windows = f->W - (f->w1 - f->w0);
    }
    return rc;
}

/* The two searches below share these (their locals f, wh, tied, buf, emb, p, alone) */
#define QW(i, dt) (wh[i].imp && lmp_quant_uses_weights(dt) ? wh[i].imp : NULL)
#define INSTALL(i, k)                                                                                                 \
    install_one(&f, wh[i].t, wh[i].site, wh[i].layer, wh[i].which, tied, p->t[i].cand[k].dt,                         \
                QW(i, p->t[i].cand[k].dt), &buf[i], emb)
#define AL(i) (alone + (size_t)(i) * LMP_PLAN_MAX_CAND)

int lmp_plan_refine(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp,
                    const lmp_plan_refine_params *rp, lmp_plan *p, uint64_t budget)
{
    double t0 = lmp_time_s();
    plan_fwd f;
    lmp_calib_data cal;
    int rc = fwd_open_halves(in, pp, cp, &f, &cal);
    if (rc)
        return rc;
    bool tied = fwd_find(&f, "output.weight") == NULL;
    size_t n = (size_t)p->n + 1;
    int max_moves = rp->pairs > 0 ? rp->pairs : 0;
    plan_where *wh = calloc(n, sizeof *wh);
    void **buf = calloc(n, sizeof *buf);
    lmp_tensor *emb = calloc(1, sizeof *emb); /* the installed embedding's descriptor */
    double *alone = calloc(n * LMP_PLAN_MAX_CAND, sizeof *alone);
    double *ctx = calloc(n * LMP_PLAN_MAX_CAND, sizeof *ctx);
    int *prev = calloc(n, sizeof *prev), *downs = calloc(n, sizeof *downs);
    plan_move *tried = calloc((size_t)max_moves + 1, sizeof *tried);
    bool stale = true; /* ctx does not describe the installed plan */
    if (!wh || !buf || !emb || !alone || !ctx || !prev || !downs || !tried) {
        rc = lmp_err(LMP_ENOMEM, "plan: out of memory");
        goto done;
    }
    where_setup(&f, pp, p, wh, alone); /* SITE_NONE: left at its choice, never installed */
#define CX(i) (ctx + (size_t)(i) * LMP_PLAN_MAX_CAND)
    /* the plan as solved, all installed */
    for (int i = 0; i < p->n && !rc; i++)
        if (wh[i].site != SITE_NONE)
            rc = INSTALL(i, p->t[i].choice);
    double k0 = 0, v0 = 0; /* the installed plan's KLD on the probe / validation windows */
    if (rc || (rc = measure_solved(&f, p, &k0, &v0)))
        goto done;
    p->refine_rounds = 0;
    p->refine_tried = 0;
    int n_probes = 0;
    for (int round = 0; round < rp->rounds && !rc; round++) {
        /* every tensor moved alone to its neighbours on the front, in the context of the rest */
        for (int i = 0; i < p->n && !rc; i++) {
            lmp_plan_tensor *pt = &p->t[i];
            rc = probe_neighbours(&f, &wh[i], tied, pt, k0, AL(i), CX(i), &n_probes);
            int c = pt->choice;
            if (!rc && rp->progress && wh[i].site != SITE_NONE)
                fprintf(stderr, "[refine %d: %d/%d] %-28s %s %.3g | %s | %s %.3g\n", round + 1, i + 1, p->n, pt->name,
                        c > 0 ? lmp_dtype_info(pt->cand[c - 1].dt)->name : "-", c > 0 ? CX(i)[c - 1] : 0,
                        lmp_dtype_info(pt->cand[c].dt)->name,
                        c + 1 < pt->n_cand ? lmp_dtype_info(pt->cand[c + 1].dt)->name : "-",
                        c + 1 < pt->n_cand ? CX(i)[c + 1] : 0);
        }
        if (rc)
            break;
        stale = false;
        /* solve on the in-context costs (the alone ones restored after) */
        int moved = resolve_moved(p, budget, ctx, NULL, alone, prev);
        if (moved == 0)
            break;
        for (int i = 0; i < p->n && !rc; i++)
            if (wh[i].site != SITE_NONE && p->t[i].choice != prev[i])
                rc = INSTALL(i, p->t[i].choice);
        double k1 = 0, v1 = 0;
        if (!rc)
            rc = fwd_cache(&f, &k1, &v1);
        if (rc)
            break;
        bool better = v1 < v0 * (1 - 1e-3);
        if (p->refine_tried < 10) {
            p->refine_moved[p->refine_tried] = moved;
            p->refine_kld_val[p->refine_tried] = v1;
            p->refine_kld[p->refine_tried++] = k1;
        }
        if (rp->progress)
            fprintf(stderr, "[refine %d] %d tensors moved: calibration KLD %.5g -> %.5g, validation %.5g -> %.5g%s\n",
                    round + 1, moved, k0, k1, v0, v1, better ? "" : " (not better: kept the previous plan)");
        if (!better) { /* back to the plan the differences were measured on: they hold again */
            for (int i = 0; i < p->n && !rc; i++)
                if (p->t[i].choice != prev[i]) {
                    p->t[i].choice = prev[i];
                    if (wh[i].site != SITE_NONE)
                        rc = INSTALL(i, prev[i]);
                }
            double kb = 0;
            if (!rc)
                rc = fwd_cache(&f, &kb, NULL);
            break;
        }
        k0 = k1;
        v0 = v1;
        stale = true;
        p->refine_rounds = round + 1;
    }
    /* Moves: with the in-context differences of the installed plan (measured again if a
     * kept round made them stale), one tensor a type dearer and up to two others a type
     * cheaper (or one dearer into the budget's slack, or one cheaper where that measured
     * a lower KLD), in the order of their predicted gain, each measured whole and kept
     * if the KLD falls; after a kept move the moved tensors' neighbours are measured
     * again in the new context. Stops after `pairs` moves measured, `patience` in a row
     * not kept, or when no move predicts a gain. */
    p->refine_pairs = 0;
    p->refine_pairs_tried = 0;
    p->bytes = p->fixed_bytes;
    for (int i = 0; i < p->n; i++)
        p->bytes += p->t[i].cand[p->t[i].choice].bytes;
    if (!rc && max_moves > 0 && stale) {
        for (int i = 0; i < p->n && !rc; i++)
            rc = probe_neighbours(&f, &wh[i], tied, &p->t[i], k0, AL(i), CX(i), &n_probes);
        stale = false;
    }
    int fails = 0;
    for (int tries = 0; !rc && tries < max_moves && (rp->patience <= 0 || fails < rp->patience); tries++) {
        /* cheaper moves, least in-context loss first (for the third tensor of a move) */
        int nd = 0;
        for (int j = 0; j < p->n; j++)
            if (wh[j].site != SITE_NONE && p->t[j].choice > 0)
                downs[nd++] = j;
        for (int a = 1; a < nd; a++) /* insertion sort by the loss */
            for (int b = a; b > 0 && CX(downs[b])[p->t[downs[b]].choice - 1] <
                                         CX(downs[b - 1])[p->t[downs[b - 1]].choice - 1]; b--) {
                int s = downs[b];
                downs[b] = downs[b - 1];
                downs[b - 1] = s;
            }
        plan_move best = {-1, -1, -1};
        double bg = 0;
        for (int u = -1; u < p->n; u++) {
            double gu = 0;
            int64_t bu = 0;
            if (u >= 0) {
                int cu = p->t[u].choice;
                if (wh[u].site == SITE_NONE || cu + 1 >= p->t[u].n_cand)
                    continue;
                gu = -CX(u)[cu + 1];
                bu = (int64_t)(p->t[u].cand[cu + 1].bytes - p->t[u].cand[cu].bytes);
            }
            for (int a = -1; a < nd; a++) {
                int d1 = a >= 0 ? downs[a] : -1;
                if (d1 == u || (u < 0 && d1 < 0))
                    continue;
                double g = gu;
                int64_t need = (int64_t)p->bytes + bu - (int64_t)budget;
                if (d1 >= 0) {
                    int c1 = p->t[d1].choice;
                    g -= CX(d1)[c1 - 1];
                    need -= (int64_t)(p->t[d1].cand[c1].bytes - p->t[d1].cand[c1 - 1].bytes);
                }
                plan_move mv = {u, d1, -1};
                if (need > 0) { /* a second cheaper tensor, the least loss that frees enough */
                    if (u < 0 || d1 < 0)
                        continue;
                    for (int b = 0; b < nd && mv.dn2 < 0; b++) {
                        int d2 = downs[b], c2 = p->t[d2].choice;
                        if (d2 == u || d2 == d1 ||
                            (int64_t)(p->t[d2].cand[c2].bytes - p->t[d2].cand[c2 - 1].bytes) < need)
                            continue;
                        mv.dn2 = d2;
                        g -= CX(d2)[c2 - 1];
                    }
                    if (mv.dn2 < 0)
                        continue;
                }
                if (g <= bg)
                    continue;
                bool seen = false;
                for (int t = 0; t < p->refine_pairs_tried && !seen; t++)
                    seen = tried[t].up == mv.up && ((tried[t].dn1 == mv.dn1 && tried[t].dn2 == mv.dn2) ||
                                                    (tried[t].dn1 == mv.dn2 && tried[t].dn2 == mv.dn1));
                if (!seen) {
                    bg = g;
                    best = mv;
                }
            }
        }
        if (best.up < 0 && best.dn1 < 0)
            break;
        tried[p->refine_pairs_tried++] = best;
        int mv[3] = {best.up, best.dn1, best.dn2}, dk[3] = {1, -1, -1};
        int from = f.L;
        for (int m = 0; m < 3 && !rc; m++)
            if (mv[m] >= 0) {
                rc = INSTALL(mv[m], p->t[mv[m]].choice + dk[m]);
                from = wh[mv[m]].from < from ? wh[mv[m]].from : from;
            }
        double v1 = 0;
        if (!rc)
            rc = fwd_kld_val(&f, from, &v1);
        if (rc)
            break;
        bool keep = v1 < v0 * (1 - 1e-3); /* at least 0.1% lower on the validation windows */
        if (rp->progress)
            fprintf(stderr, "[refine move %d] %s up, %s and %s down: predicted %.3g, validation KLD %.5g -> %.5g%s\n",
                    tries + 1, best.up >= 0 ? p->t[best.up].name : "-", best.dn1 >= 0 ? p->t[best.dn1].name : "-",
                    best.dn2 >= 0 ? p->t[best.dn2].name : "-", -bg, v0, v1, keep ? "" : " (not kept)");
        for (int m = 0; m < 3 && !rc; m++)
            if (mv[m] >= 0) {
                lmp_plan_tensor *pt = &p->t[mv[m]];
                if (keep) {
                    pt->choice += dk[m];
                    p->bytes = p->bytes + pt->cand[pt->choice].bytes - pt->cand[pt->choice - dk[m]].bytes;
                } else {
                    rc = INSTALL(mv[m], pt->choice);
                }
            }
        if (!keep) {
            fails++;
            continue;
        }
        fails = 0;
        p->refine_pairs++;
        if (!rc)
            rc = fwd_cache(&f, &k0, &v0); /* the new plan's block inputs (v0 = v1) */
        for (int m = 0; m < 3 && !rc; m++)
            if (mv[m] >= 0)
                rc = probe_neighbours(&f, &wh[mv[m]], tied, &p->t[mv[m]], k0, AL(mv[m]), CX(mv[m]), &n_probes);
    }
#undef CX
    if (!rc) {
        p->bytes = p->fixed_bytes;
        p->err = 0;
        for (int i = 0; i < p->n; i++) {
            p->bytes += p->t[i].cand[p->t[i].choice].bytes;
            p->err += p->t[i].cand[p->t[i].choice].err;
        }
        p->kld_refined = k0;
        p->kld_val_refined = v0;
        p->refine_probes = n_probes;
    }
done:
    p->refine_seconds = lmp_time_s() - t0;
    fwd_close(&f, &cal); /* the model first: it borrows the installed bytes */
    for (int i = 0; buf && i < p->n; i++)
        free(buf[i]);
    free(buf);
    free(wh);
    free(emb);
    free(alone);
    free(ctx);
    free(prev);
    free(downs);
    free(tried);
    return rc;
}

/* ---------------------------------------------------------------- weights in context */

void lmp_plan_context_default_params(lmp_plan_context_params *c)
{
    memset(c, 0, sizeof *c);
    c->iters = 2;
}

/* Tensor i of the model set to descriptor w (and, for the embedding, e). */
static int ctx_set(plan_fwd *f, const plan_where *wh, bool tied, const lmp_wmat *w, const lmp_tensor *e)
{
    if (wh->site == SITE_LINEAR)
        return lmp_model_set_linear(f->m, wh->layer, wh->which, w);
    int rc = 0;
    if (wh->site == SITE_OUTPUT || tied)
        rc = lmp_model_set_output(f->m, w);
    if (!rc && wh->site == SITE_EMBED)
        rc = lmp_model_set_embed(f->m, e);
    return rc;
}

int lmp_plan_context(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp,
                     const lmp_plan_context_params *xp, lmp_plan *p, uint64_t budget)
{
    double t0 = lmp_time_s();
    plan_fwd f;
    lmp_calib_data cal;
    int rc = fwd_open_halves(in, pp, cp, &f, &cal); /* the second half: validation windows */
    if (rc)
        return rc;
    bool tied = fwd_find(&f, "output.weight") == NULL;
    size_t n = (size_t)p->n + 1;
    plan_where *wh = calloc(n, sizeof *wh);
    void **buf = calloc(n, sizeof *buf);
    lmp_tensor *emb = calloc(1, sizeof *emb);
    lmp_wmat *orig = calloc(n, sizeof *orig), *cur = calloc(n, sizeof *cur);
    const lmp_tensor *orig_e = lmp_model_embed_tensor(f.m);
    double *alone = calloc(n * LMP_PLAN_MAX_CAND, sizeof *alone);
    double *wt = calloc(n, sizeof *wt), *wraw = calloc(n, sizeof *wraw);
    int *best = calloc(n, sizeof *best), *prev = calloc(n, sizeof *prev);
    if (!wh || !buf || !emb || !orig || !cur || !alone || !wt || !wraw || !best || !prev) {
        rc = lmp_err(LMP_ENOMEM, "plan: out of memory");
        goto done;
    }
    where_setup(&f, pp, p, wh, alone);
    for (int i = 0; i < p->n; i++) {
        if (wh[i].site == SITE_LINEAR)
            orig[i] = *lmp_model_linear(f.m, wh[i].layer, wh[i].which);
        else if (wh[i].site != SITE_NONE && (wh[i].site == SITE_OUTPUT || tied))
            orig[i] = *lmp_model_output(f.m);
        wt[i] = 1;
    }
    for (int i = 0; i < p->n && !rc; i++)
        if (wh[i].site != SITE_NONE && !(rc = INSTALL(i, p->t[i].choice)))
            cur[i] = wh[i].site == SITE_LINEAR ? *lmp_model_linear(f.m, wh[i].layer, wh[i].which)
                                                : *lmp_model_output(f.m);
    double k0 = 0, v0 = 0;
    if (rc || (rc = measure_solved(&f, p, &k0, &v0)))
        goto done;
    p->ctx_tried = 0;
    p->ctx_kept = 0;
    double best_v = v0, best_k = k0;
    for (int i = 0; i < p->n; i++)
        best[i] = p->t[i].choice;
    int n_probes = 0;
    for (int it = 0; it < xp->iters && !rc; it++) {
        /* each block's contribution in context: the installed plan with the block's tensors
         * restored to the original, every other tensor at its planned type */
        for (int g = 0; g < f.L && !rc; g++) {
            int from = f.L, cnt = 0;
            double a = 0, kr = 0;
            for (int i = 0; i < p->n && !rc; i++)
                if (wh[i].site == SITE_LINEAR && wh[i].layer == g) {
                    rc = ctx_set(&f, &wh[i], tied, &orig[i], orig_e);
                    from = wh[i].from < from ? wh[i].from : from;
                    a += AL(i)[p->t[i].choice];
                    cnt++;
                }
            if (!rc && cnt)
                rc = fwd_kld(&f, from, &kr);
            for (int i = 0; i < p->n; i++)
                if (wh[i].site == SITE_LINEAR && wh[i].layer == g) {
                    int r2 = ctx_set(&f, &wh[i], tied, &cur[i], emb);
                    rc = rc ? rc : r2;
                }
            if (!cnt)
                continue;
            n_probes++;
            if (it == 0 && g < 64) {
                p->ctx_block_kld[g] = kr;
                p->ctx_blocks = g + 1;
            }
            double w = a > 0 ? (k0 - kr) / a : 1;
            for (int i = 0; i < p->n; i++)
                if (wh[i].site == SITE_LINEAR && wh[i].layer == g)
                    wraw[i] = w;
            if (xp->progress)
                fprintf(stderr, "[context %d] block %d: alone %.4g, in context %.4g (x%.3g)\n", it + 1, g, a, k0 - kr, w);
        }
        if (rc)
            break;
        /* tensors outside the blocks (the embedding, the output): the blocks' geometric mean */
        double lm = 0;
        int nm = 0;
        for (int i = 0; i < p->n; i++)
            if (wh[i].site == SITE_LINEAR) {
                double w = wraw[i] < 0.25 ? 0.25 : wraw[i] > 4 ? 4 : wraw[i];
                lm += log(w);
                nm++;
            }
        for (int i = 0; i < p->n; i++) {
            double w = wh[i].site == SITE_LINEAR ? wraw[i] : nm ? exp(lm / nm) : 1;
            w = w < 0.25 ? 0.25 : w > 4 ? 4 : w;
            wt[i] = it == 0 ? w : sqrt(wt[i] * w); /* later rounds: averaged with the earlier weight */
        }
        int moved = resolve_moved(p, budget, alone, wt, alone, prev);
        if (moved == 0)
            break;
        for (int i = 0; i < p->n && !rc; i++)
            if (wh[i].site != SITE_NONE && p->t[i].choice != prev[i] && !(rc = INSTALL(i, p->t[i].choice)))
                cur[i] = wh[i].site == SITE_LINEAR ? *lmp_model_linear(f.m, wh[i].layer, wh[i].which)
                                                    : *lmp_model_output(f.m);
        if (!rc)
            rc = fwd_cache(&f, &k0, &v0);
        if (rc)
            break;
        if (p->ctx_tried < 10) {
            p->ctx_moved[p->ctx_tried] = moved;
            p->ctx_kld[p->ctx_tried] = k0;
            p->ctx_kld_val[p->ctx_tried++] = v0;
        }
        bool better = v0 < best_v;
        if (xp->progress)
            fprintf(stderr, "[context %d] %d tensors moved: calibration KLD %.5g, validation %.5g (best %.5g)\n",
                    it + 1, moved, k0, v0, best_v);
        if (better) {
            best_v = v0;
            best_k = k0;
            p->ctx_kept = it + 1;
            for (int i = 0; i < p->n; i++)
                best[i] = p->t[i].choice;
        }
    }
#undef QW
#undef INSTALL
#undef AL
    if (!rc) {
        p->bytes = p->fixed_bytes;
        p->err = 0;
        for (int i = 0; i < p->n; i++) {
            p->t[i].choice = best[i];
            p->bytes += p->t[i].cand[best[i]].bytes;
            p->err += p->t[i].cand[best[i]].err;
        }
        p->kld_refined = best_k;
        p->kld_val_refined = best_v;
        p->ctx_probes = n_probes;
    }
done:
    p->ctx_seconds = lmp_time_s() - t0;
    fwd_close(&f, &cal);
    for (int i = 0; buf && i < p->n; i++)
        free(buf[i]);
    free(buf);
    free(wh);
    free(emb);
    free(orig);
    free(cur);
    free(alone);
    free(wt);
    free(wraw);
    free(best);
    free(prev);
    return rc;
}
