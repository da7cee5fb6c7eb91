/*
 * Magnitude, Wanda and SparseGPT as rows of lib/calib's layer-wise driver (calib.h). For
 * block i the driver runs every window through the block gathering, per distinct linear
 * input, the Hessian (SparseGPT, with lmp_gptq_hessian_add) or the column sums of squares
 * (Wanda; magnitude needs nothing); here the linears are pruned (lmp_prune_linear /
 * lmp_prune_linear_norms) from f32 copies of whatever the model holds (dense, GGUF
 * blocks, intgroup payloads) and handed back to be installed; the driver runs the block
 * again on the hidden states in place, so block i+1 sees the outputs of the PRUNED block i
 * (as the Wanda and SparseGPT reference code do), and the re-run's hook measures each
 * linear's output error (true-sequential SparseGPT: taken from its Hessian instead, the
 * block walked in stages and, unless calib_f32, calibrated in bf16 as GPTQ). Not here: the walk (lib/calib/driver.c), the algorithms
 * (prune.c), file layouts (formats/sparse.c).
 */
#include "prune.h"
#include "prune_internal_moe.h"
#include "../core/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lmp_prune_default_params(lmp_prune_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_prune_default_spec(&p->spec);
    p->true_sequential = -1;
    p->calib_bos = false;
    p->progress = true;
}

void lmp_prune_result_free(lmp_prune_result *r)
{
    if (!r)
        return;
    free(r->lin);
    memset(r, 0, sizeof *r);
}

int lmp_prune_check(const lmp_model *m, const lmp_prune_spec *s)
{
    if (lmp_model_is_moe(m) && s->qbits)
        return lmp_err(LMP_EUNSUPPORTED, "%s: joint quantization (--then-quantize) of mixture-of-experts models is "
                       "not supported; prune to dense safetensors, then quantize (lmpress quantize --method gptq)",
                       lmp_model_ckpt(m)->path);
    const lmp_config *c = lmp_model_config(m);
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
            if (!wm) { /* a sparse block: its experts (expert 0 has every expert's shape) */
                wm = lmp_model_expert_linear(m, l, 0, (lmp_linear)w);
                lmp_expert_hf_prefix(c, l, 0, (lmp_linear)w, name, sizeof name);
                if (!wm)
                    return lmp_err(LMP_EINVAL, "%s: block %d has no %s", lmp_model_ckpt(m)->path, l,
                                   lmp_linear_name((lmp_linear)w));
            }
            /* natively quantized linears (intgroup payloads of GPTQ/AWQ folders, GGUF
             * blocks) are read row by row through lmp_wmat_row_f32 */
            if (!wm->q && !lmp_dtype_info(wm->dtype)->to_f32)
                return lmp_err(LMP_EUNSUPPORTED, "%s.weight: dtype %s cannot be converted to f32", name,
                               lmp_dtype_info(wm->dtype)->name);
            int rc = lmp_prune_spec_check(s, wm->cols, name);
            if (rc)
                return rc;
        }
    return LMP_OK;
}

/* Relative output error of every linear on the inputs it sees in the pruned block:
 * ||X W^T - X W'^T||_F / ||X W^T||_F accumulated over the calibration tokens. */
typedef struct {
    const lmp_wmat *orig, *pruned; /* [LMP_LIN_COUNT] */
    double sums[2][LMP_LIN_COUNT]; /* [0]: the numerators, [1]: the denominators */
    float *y0, *y1;                /* [seq_len * max rows] */
} err_ctx;

static int err_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    (void)in;
    err_ctx *e = user;
    const int64_t rows = e->orig[which].rows;
    bool exact = lmp_gemm_exact();
    lmp_gemm_set_exact(true); /* f32 activations for both, whatever the original's dtype */
    lmp_gemm(e->y0, X, &e->orig[which], NULL, n);
    lmp_gemm(e->y1, X, &e->pruned[which], NULL, n);
    lmp_gemm_set_exact(exact);
    double num = 0, den = 0;
    for (int64_t i = 0; i < n * rows; i++) {
        double a = e->y0[i], d = a - e->y1[i];
        num += d * d;
        den += a * a;
    }
    e->sums[0][which] += num;
    e->sums[1][which] += den;
    return 0;
}

/* ---------------------------------------------------------------- the rows -------- */

typedef struct {
    const lmp_prune_params *p;
    lmp_prune_result *res;
    float *Wp[LMP_LIN_COUNT];
    uint8_t *mask[LMP_LIN_COUNT];
    lmp_qtensor qt[LMP_LIN_COUNT];
    lmp_wmat pw[LMP_LIN_COUNT];
    err_ctx ec;
    bool h_err;                  /* errors from the Hessians, not measured by a re-run */
    lmp_pexperts x;              /* a sparse block's experts (pexperts.c) */
    lmp_prune_hcache hc;         /* SparseGPT: the block's last factor (q/k/v and gate/up share theirs) */
} pr_ctx;

static int pr_linear(void *ctx, lmp_calib_block *b, lmp_linear w)
{
    pr_ctx *c = ctx;
    const lmp_prune_params *p = c->p;
    lmp_prune_result *res = c->res;
    const int l = b->layer;
    const int cls = lmp_linear_input(w);
    lmp_prune_linear_stats *st = &res->lin[l * LMP_LIN_COUNT + w];
    const int64_t rows = b->orig[w].rows, cols = b->orig[w].cols;
    st->layer = l;
    st->which = w;
    st->rows = rows;
    st->cols = cols;
    st->err = -1;
    st->loss = -1;
    lmp_linear_hf_prefix(l, w, st->name, sizeof st->name);
    if (w >= LMP_LIN_GATE && lmp_model_n_experts(b->m, l) > 0) /* routed experts, each on its own tokens */
        return lmp_pexperts_linear(&c->x, p, res, b, w, st);
    double t0 = lmp_time_s();
    int rc = lmp_calib_weight_f32(&b->orig[w], st->name, &c->Wp[w]);
    if (rc)
        return rc;
    c->mask[w] = malloc((size_t)(rows * cols));
    if (!c->mask[w])
        return lmp_err(LMP_ENOMEM, "out of memory");
    float *W0 = NULL; /* h_err: the weights before pruning */
    if (c->h_err && b->cal && !(W0 = malloc((size_t)(rows * cols) * sizeof(float))))
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (W0)
        memcpy(W0, c->Wp[w], (size_t)(rows * cols) * sizeof(float));
    if (p->spec.method == LMP_PRUNE_SPARSEGPT)
        rc = lmp_prune_linear_cached(c->Wp[w], rows, cols, b->st.H[cls], &p->spec, &c->hc,
                                     (uint64_t)l * LMP_LIN_COUNT + (uint64_t)cls + 1, c->mask[w], &c->qt[w], &st->loss);
    else
        rc = lmp_prune_linear_norms(c->Wp[w], rows, cols, b->st.xsq[cls], &p->spec, c->mask[w]);
    if (rc) {
        free(W0);
        return lmp_err_prefix(rc, "%s.weight", st->name);
    }
    if (p->spec.qbits) /* the installed copy is what the quantized tensor holds */
        lmp_qtensor_dequant(&c->qt[w], c->Wp[w]);
    if (W0) { /* ||X (W - W')^T|| / ||X W^T|| as tr(D H D^T) over tr(W H W^T): under the
               * true-sequential walk H holds exactly the inputs the pruned block gives this
               * linear, the ones the re-run would measure on */
        float *D = malloc((size_t)(rows * cols) * sizeof(float));
        double tr[2];
        if (D)
            for (int64_t i = 0; i < rows * cols; i++)
                D[i] = W0[i] - c->Wp[w][i];
        const float *A[2] = {W0, D}; /* one pass over H for both (as GPTQ's report) */
        const bool ok = D && lmp_gptq_quad_traces_f32(A, 2, b->st.H[cls], rows, cols, tr) == 0;
        free(W0);
        free(D);
        if (!ok)
            return lmp_err(LMP_ENOMEM, "out of memory measuring %s", st->name);
        st->err = tr[0] > 0 ? sqrt(fmax(tr[1], 0.0) / tr[0]) : 0.0;
    }
    snprintf(c->qt[w].name, sizeof c->qt[w].name, "%s", st->name);
    st->seconds = lmp_time_s() - t0;
    for (int64_t i = 0; i < rows * cols; i++)
        st->zeros += !c->mask[w][i];
    c->pw[w] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = c->Wp[w],
                          .row_bytes = (size_t)cols * sizeof(float)};
    b->install_w[w] = &c->pw[w];
    return LMP_OK;
}

/* Under mpirun (lib/calib/calib_dist.h): linear w's pruned weights, mask, quantized
 * tensor and figures from the rank that pruned it. */
static int pr_share(void *ctx, lmp_calib_block *b, lmp_linear w, int owner)
{
    pr_ctx *c = ctx;
    lmp_prune_linear_stats *st = &c->res->lin[b->layer * LMP_LIN_COUNT + w];
    const int64_t rows = b->orig[w].rows, cols = b->orig[w].cols;
    int rc = lmp_dist_bcast(st, sizeof *st, owner);
    if (rc)
        return rc;
    if (lmp_dist_rank() != owner) {
        free(c->Wp[w]);
        free(c->mask[w]);
        c->Wp[w] = malloc((size_t)(rows * cols) * sizeof(float));
        c->mask[w] = malloc((size_t)(rows * cols));
        if (!c->Wp[w] || !c->mask[w])
            return lmp_err(LMP_ENOMEM, "out of memory (%s from rank %d)", st->name, owner);
    }
    if ((rc = lmp_dist_bcast(c->Wp[w], (size_t)(rows * cols) * sizeof(float), owner)) ||
        (rc = lmp_dist_bcast(c->mask[w], (size_t)(rows * cols), owner)))
        return rc;
    if (c->p->spec.qbits && (rc = lmp_calib_share_qtensor(&c->qt[w], owner)))
        return rc;
    c->pw[w] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = c->Wp[w],
                          .row_bytes = (size_t)cols * sizeof(float)};
    b->install_w[w] = &c->pw[w];
    return LMP_OK;
}

/* The re-run's error sums, gathered per window group across ranks by the driver. */
static double *pr_rerun_sums(void *ctx, lmp_calib_block *b, size_t *n)
{
    (void)b;
    pr_ctx *c = ctx;
    *n = 2 * LMP_LIN_COUNT;
    return &c->ec.sums[0][0];
}

static int pr_rerun(void *ctx, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    if (lmp_hook_expert() >= 0) /* experts' errors are not measured */
        return 0;
    return err_hook(&((pr_ctx *)ctx)->ec, layer, which, X, n, in);
}

static int pr_begin(void *ctx, lmp_calib_block *b)
{
    pr_ctx *c = ctx;
    /* the re-run (the pruned block producing the next block's inputs) measures the errors */
    c->ec.orig = b->orig;
    c->ec.pruned = c->pw;
    memset(c->ec.sums, 0, sizeof c->ec.sums);
    return LMP_OK;
}

static int pr_end(void *ctx, lmp_calib_block *b)
{
    pr_ctx *c = ctx;
    const lmp_prune_params *p = c->p;
    const int l = b->layer;
    lmp_prune_linear_stats *st = &c->res->lin[l * LMP_LIN_COUNT];
    const bool sparse = lmp_model_n_experts(b->m, l) > 0;
    for (int w = 0; w < LMP_LIN_COUNT; w++) { /* the totals, in linear order */
        if (sparse && w >= LMP_LIN_GATE) /* routed experts: counted by pexperts.c */
            continue;
        c->res->params += (uint64_t)(st[w].rows * st[w].cols);
        c->res->zeros += (uint64_t)st[w].zeros;
    }
    if (b->cal && !c->h_err)
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            st[w].err = sparse && w >= LMP_LIN_GATE ? -1
                        : c->ec.sums[1][w] > 0 ? sqrt(c->ec.sums[0][w] / c->ec.sums[1][w]) : 0.0;
    int rc;
    if (c->x.n && p->expert_sink && (rc = p->expert_sink(p->sink_ctx, l, c->x.n, (const float *const *)c->x.W)))
        return rc;
    if (p->sink && (rc = p->sink(p->sink_ctx, l, (const float *const *)c->Wp, (const uint8_t *const *)c->mask,
                                 p->spec.qbits ? c->qt : NULL, st)))
        return rc;
    if (p->on_layer_done)
        p->on_layer_done(p->log_ctx, l, b->n_layers, lmp_time_s() - b->t0, st);
    return LMP_OK;
}

static void pr_cleanup(void *ctx, lmp_calib_block *b)
{
    pr_ctx *c = ctx;
    lmp_pexperts_restore(&c->x, b->m, b->layer);
    lmp_prune_hcache_free(&c->hc);
    for (int w = 0; w < LMP_LIN_COUNT; w++) {
        free(c->Wp[w]);
        free(c->mask[w]);
        c->Wp[w] = NULL;
        c->mask[w] = NULL;
        lmp_qtensor_free(&c->qt[w]);
    }
}

/* Magnitude: no statistics (calibration, when given, only measures the errors). */
static const lmp_calib_method g_magnitude_row = {
    .name = "magnitude",
    .begin = pr_begin,
    .linear = pr_linear,
    .rerun_hook = pr_rerun,
    .end = pr_end,
    .cleanup = pr_cleanup,
    .linear_share = pr_share,
    .rerun_sums = pr_rerun_sums,
};
/* Wanda: the column sums of squares of every input. */
static const lmp_calib_method g_wanda_row = {
    .name = "wanda",
    .stats = LMP_STAT_XSQ | LMP_STAT_EXPERTS,
    .begin = pr_begin,
    .linear = pr_linear,
    .rerun_hook = pr_rerun,
    .end = pr_end,
    .cleanup = pr_cleanup,
    .linear_share = pr_share,
    .rerun_sums = pr_rerun_sums,
};
/* SparseGPT (and SparseGPT + joint quantization): the Hessian of every input.
 * True-sequential (the default), the errors come from the Hessians and there is no re-run
 * hook, so the driver walks the block in stages (each linear runs once per window);
 * otherwise the Hessians are the original block's inputs and the re-run measures. */
static const lmp_calib_method g_sparsegpt_seq_row = {
    .name = "sparsegpt",
    .stats = LMP_STAT_HESSIAN | LMP_STAT_EXPERT_HESSIAN,
    .hessian_add = lmp_gptq_hessian_add_upper,
    .hessian_add_bf16 = lmp_gptq_hessian_add_upper_bf16,
    .hessian_finish = lmp_gptq_sym_from_upper,
    .begin = pr_begin,
    .linear = pr_linear,
    .end = pr_end,
    .cleanup = pr_cleanup,
    .linear_share = pr_share,
};
static const lmp_calib_method g_sparsegpt_row = {
    .name = "sparsegpt",
    .stats = LMP_STAT_HESSIAN | LMP_STAT_EXPERT_HESSIAN,
    .hessian_add = lmp_gptq_hessian_add_upper,
    .hessian_finish = lmp_gptq_sym_from_upper,
    .begin = pr_begin,
    .linear = pr_linear,
    .rerun_hook = pr_rerun,
    .end = pr_end,
    .cleanup = pr_cleanup,
    .linear_share = pr_share,
    .rerun_sums = pr_rerun_sums,
};

int lmp_prune_run(lmp_model *m, const lmp_calib_data *cal, const lmp_prune_params *p, lmp_prune_result *res)
{
    memset(res, 0, sizeof *res);
    double t_start = lmp_time_s();
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    const lmp_prune_method method = p->spec.method;
    int rc = lmp_prune_check(m, &p->spec);
    if (rc)
        return rc;
    if (!cal && method != LMP_PRUNE_MAGNITUDE)
        return lmp_err(LMP_EINVAL, "prune: %s needs calibration text (--calib FILE)", lmp_prune_method_name(method));
    res->n_layers = nl;
    res->lin = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *res->lin);
    if (!res->lin)
        return lmp_err(LMP_ENOMEM, "out of memory");
    pr_ctx pc;
    memset(&pc, 0, sizeof pc);
    pc.p = p;
    pc.res = res;
    if (cal) {
        int64_t max_rows = 0;
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, 0, (lmp_linear)w);
            int64_t r = wm ? wm->rows : lmp_model_config(m)->hidden_size; /* experts: not measured */
            max_rows = r > max_rows ? r : max_rows;
        }
        res->n_samples = cal->n_samples;
        res->seq_len = cal->seq_len;
        res->act_bytes = lmp_calib_act_bytes(m, cal);
        pc.ec.y0 = malloc((size_t)(cal->seq_len * max_rows) * sizeof(float));
        pc.ec.y1 = malloc((size_t)(cal->seq_len * max_rows) * sizeof(float));
        if (!pc.ec.y0 || !pc.ec.y1) {
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%.1f MiB)",
                         res->act_bytes / 1048576.0);
            goto done;
        }
    }
    /* True-sequential: one statistics pass per distinct input, the linears before it
     * already pruned; otherwise one pass over the original block for all of them. */
    const bool ts = p->true_sequential < 0 ? method == LMP_PRUNE_SPARSEGPT : p->true_sequential != 0;
    pc.h_err = method == LMP_PRUNE_SPARSEGPT && ts;
    const lmp_calib_method *row = pc.h_err                      ? &g_sparsegpt_seq_row
                                  : method == LMP_PRUNE_SPARSEGPT ? &g_sparsegpt_row
                                  : method == LMP_PRUNE_WANDA   ? &g_wanda_row
                                                                : &g_magnitude_row;
    /* bf16 calibration (the walk's products and X^T X on bf16-rounded activations) for
     * the staged SparseGPT walk, as GPTQ's; --calib-f32 keeps f32 */
    lmp_calib_opts o = {.true_sequential = ts, .calib_bos = p->calib_bos, .progress = p->progress,
                        .bf16 = pc.h_err && !p->calib_f32};
    rc = lmp_calib_run(m, cal, row, &pc, &o);
    lmp_pexperts_free(&pc.x);
    lmp_prune_hcache_free(&pc.hc);
done:
    free(pc.ec.y0);
    free(pc.ec.y1);
    res->sparsity = res->params ? (double)res->zeros / (double)res->params : 0;
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
