/*
 * The layer-by-layer pruning driver: the same calibration and block-by-block structure as
 * lib/quant's GPTQ pipeline (pipeline.c), whose public pieces it reuses (calibration
 * windows, lmp_gptq_hessian_add, lmp_linear_hf_prefix). For block i: every sample goes
 * through the block with a hook that accumulates, per distinct linear input, the Hessian
 * (SparseGPT) or the column sums of squares (Wanda; magnitude needs nothing); the linears
 * are pruned (lmp_prune_linear / lmp_prune_linear_norms) from f32 copies of whatever the
 * model holds (dense, GGUF blocks, intgroup payloads: lmp_wmat_row_f32) and installed; the
 * block runs again on the hidden states in place, so block i+1 sees the outputs of the
 * PRUNED block i (as the Wanda and SparseGPT reference code do), and that pass measures each
 * linear's output error. The original weights are restored before block i+1; memory holds
 * one block plus the hidden states.
 * Not here: the algorithms (prune.c), file layouts (formats/sparse.c).
 */
#include "prune.h"

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
    if (lmp_model_is_moe(m))
        return lmp_err(LMP_EUNSUPPORTED, "%s: pruning of mixture-of-experts models is not supported yet "
                       "(experts would need the tokens routed to them); nothing was written",
                       lmp_model_ckpt(m)->path);
    const lmp_config *c = lmp_model_config(m);
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
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

/* Statistics of one forward pass: per distinct linear input, the Hessian (SparseGPT) or
 * the column sums of squares (Wanda). */
typedef struct {
    double *H[LMP_IN_COUNT];
    double *xsq[LMP_IN_COUNT];
    int64_t ns[LMP_IN_COUNT];
    lmp_linear stop_at;
} stat_ctx;

static int stat_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    stat_ctx *h = user;
    int cls = lmp_linear_input(which);
    if (which == lmp_input_first(cls)) {
        if (h->H[cls]) {
            int rc = lmp_gptq_hessian_add(h->H[cls], in, X, n, &h->ns[cls]);
            if (rc)
                return rc;
        }
        if (h->xsq[cls]) { /* every token, in double, in token order (deterministic) */
            double *q = h->xsq[cls];
            for (int64_t t = 0; t < n; t++) {
                const float *x = X + t * in;
                for (int64_t j = 0; j < in; j++)
                    q[j] += (double)x[j] * x[j];
            }
        }
    }
    return which == h->stop_at ? LMP_PASS_DONE : 0;
}

/* Relative output error of every linear on the inputs it sees in the pruned block:
 * ||X W^T - X W'^T||_F / ||X W^T||_F accumulated over the calibration tokens. */
typedef struct {
    const lmp_wmat *orig, *pruned; /* [LMP_LIN_COUNT] */
    double num[LMP_LIN_COUNT], den[LMP_LIN_COUNT];
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
    e->num[which] += num;
    e->den[which] += den;
    return 0;
}

/* f32 copy of any weight the engine runs (dense, GGUF blocks, intgroup payloads). */
static int weight_f32(const lmp_wmat *w, const char *name, float **out)
{
    *out = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    if (!*out)
        return lmp_err(LMP_ENOMEM, "out of memory converting %s.weight to f32", name);
    for (int64_t r = 0; r < w->rows; r++)
        lmp_wmat_row_f32(w, r, *out + r * w->cols);
    return LMP_OK;
}

int lmp_prune_run(lmp_model *m, const lmp_calib_data *cal, const lmp_prune_params *p, lmp_prune_result *res)
{
    memset(res, 0, sizeof *res);
    if (lmp_model_is_moe(m))
        return lmp_err(LMP_EUNSUPPORTED, "%s: pruning of mixture-of-experts models is not supported yet "
                       "(experts would need the tokens routed to them); nothing was written",
                       lmp_model_ckpt(m)->path);
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

    const int64_t d = c->hidden_size;
    const int N = cal ? cal->n_samples : 0, L = cal ? cal->seq_len : 0;
    float *states = NULL, *scratch = NULL;
    float *Wp[LMP_LIN_COUNT] = {0};
    uint8_t *mask[LMP_LIN_COUNT] = {0};
    lmp_qtensor qt[LMP_LIN_COUNT];
    lmp_wmat orig[LMP_LIN_COUNT], pw[LMP_LIN_COUNT];
    bool installed[LMP_LIN_COUNT] = {0};
    stat_ctx hc;
    err_ctx ec;
    memset(qt, 0, sizeof qt);
    memset(&hc, 0, sizeof hc);
    memset(&ec, 0, sizeof ec);

    if (cal) {
        int64_t max_rows = 0;
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            int64_t r = lmp_model_linear(m, 0, (lmp_linear)w)->rows;
            max_rows = r > max_rows ? r : max_rows;
        }
        res->n_samples = N;
        res->seq_len = L;
        res->act_bytes = lmp_qpipe_act_bytes(m, cal);
        states = malloc(res->act_bytes);
        scratch = malloc((size_t)L * d * sizeof(float));
        ec.y0 = malloc((size_t)(L * max_rows) * sizeof(float));
        ec.y1 = malloc((size_t)(L * max_rows) * sizeof(float));
        if (!states || !scratch || !ec.y0 || !ec.y1) {
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%.1f MiB)",
                         res->act_bytes / 1048576.0);
            goto done;
        }
        const int bos = p->calib_bos ? lmp_model_bos(m) : -1;
        for (int s = 0; s < N; s++) {
            const int32_t *tok = cal->tokens + (int64_t)s * L;
            if ((rc = lmp_model_embed(m, tok, L, states + (int64_t)s * L * d)))
                goto done;
            if (bos >= 0 && tok[0] != bos && (rc = lmp_model_embed(m, &(int32_t){bos}, 1, states + (int64_t)s * L * d)))
                goto done;
        }
    }
    /* Magnitude needs no statistics (calibration, when given, only measures the errors).
     * True-sequential: one statistics pass per distinct input, the linears before it
     * already pruned; otherwise one pass over the original block for all of them. */
    const bool stats = cal && method != LMP_PRUNE_MAGNITUDE;
    int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1];
    const bool ts = p->true_sequential < 0 ? method == LMP_PRUNE_SPARSEGPT : p->true_sequential != 0;
    const int n_groups = lmp_input_groups(stats && ts, groups);

    /* one bar for the whole model (layers x passes), so its ETA is the job's (issue 18) */
    const uint64_t per_layer = cal ? (uint64_t)((stats ? n_groups : 0) + 1) * N : LMP_LIN_COUNT;
    char label[64];
    snprintf(label, sizeof label, "layer 1/%d", nl);
    lmp_progress pg;
    lmp_progress_begin(&pg, label, per_layer * (uint64_t)nl);
    pg.unit = cal ? "block passes" : "linears";
    if (!p->progress)
        pg.enabled = false;
    for (int l = 0; l < nl; l++) {
        double tl = lmp_time_s();
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            orig[w] = *lmp_model_linear(m, l, (lmp_linear)w);
        snprintf(label, sizeof label, "prune layer %d/%d", l + 1, nl);
        uint64_t done_n = (uint64_t)l * per_layer;
        for (int g = 0; g < n_groups; g++) {
            memset(&hc, 0, sizeof hc);
            if (stats) {
                int last = -1;
                for (int k = 0; groups[g][k] >= 0; k++) {
                    int cls = groups[g][k];
                    int64_t cols = orig[lmp_input_first(cls)].cols;
                    if (method == LMP_PRUNE_SPARSEGPT)
                        hc.H[cls] = calloc((size_t)(cols * cols), sizeof(double));
                    else
                        hc.xsq[cls] = calloc((size_t)cols, sizeof(double));
                    if (!hc.H[cls] && !hc.xsq[cls]) {
                        rc = lmp_err(LMP_ENOMEM, "out of memory for the statistics of a %lld-column input",
                                     (long long)cols);
                        goto layer_fail;
                    }
                    last = cls;
                }
                hc.stop_at = lmp_input_first(last);
                if ((rc = lmp_calib_block_pass(m, l, states, N, L, scratch, stat_hook, &hc, &pg, &done_n)))
                    goto layer_fail;
            }
            for (int w = 0; w < LMP_LIN_COUNT; w++) {
                int cls = lmp_linear_input((lmp_linear)w);
                bool in_group = false;
                for (int k = 0; groups[g][k] >= 0; k++)
                    in_group |= groups[g][k] == cls;
                if (!in_group)
                    continue;
                lmp_prune_linear_stats *st = &res->lin[l * LMP_LIN_COUNT + w];
                const int64_t rows = orig[w].rows, cols = orig[w].cols;
                st->layer = l;
                st->which = (lmp_linear)w;
                st->rows = rows;
                st->cols = cols;
                st->err = -1;
                st->loss = -1;
                lmp_linear_hf_prefix(l, (lmp_linear)w, st->name, sizeof st->name);
                double t0 = lmp_time_s();
                if ((rc = weight_f32(&orig[w], st->name, &Wp[w])))
                    goto layer_fail;
                mask[w] = malloc((size_t)(rows * cols));
                if (!mask[w]) {
                    rc = lmp_err(LMP_ENOMEM, "out of memory");
                    goto layer_fail;
                }
                if (method == LMP_PRUNE_SPARSEGPT)
                    rc = lmp_prune_linear(Wp[w], rows, cols, hc.H[cls], &p->spec, mask[w], &qt[w], &st->loss);
                else
                    rc = lmp_prune_linear_norms(Wp[w], rows, cols, hc.xsq[cls], &p->spec, mask[w]);
                if (rc) {
                    rc = lmp_err_prefix(rc, "%s.weight", st->name);
                    goto layer_fail;
                }
                if (p->spec.qbits) /* the installed copy is what the quantized tensor holds */
                    lmp_qtensor_dequant(&qt[w], Wp[w]);
                snprintf(qt[w].name, sizeof qt[w].name, "%s", st->name);
                st->seconds = lmp_time_s() - t0;
                for (int64_t i = 0; i < rows * cols; i++)
                    st->zeros += !mask[w][i];
                res->params += (uint64_t)(rows * cols);
                res->zeros += (uint64_t)st->zeros;
                pw[w] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = Wp[w],
                                   .row_bytes = (size_t)cols * sizeof(float)};
                if (cal) {
                    if ((rc = lmp_model_set_linear(m, l, (lmp_linear)w, &pw[w])))
                        goto layer_fail;
                    installed[w] = true;
                } else {
                    lmp_progress_update(&pg, ++done_n);
                }
            }
            for (int k = 0; k < LMP_IN_COUNT; k++) {
                free(hc.H[k]);
                free(hc.xsq[k]);
                hc.H[k] = NULL;
                hc.xsq[k] = NULL;
            }
        }
        /* the pruned block produces the next block's inputs; the hook measures the errors */
        ec.orig = orig;
        ec.pruned = pw;
        memset(ec.num, 0, sizeof ec.num);
        memset(ec.den, 0, sizeof ec.den);
        for (int s = 0; s < N; s++) {
            if ((rc = lmp_block_run(m, l, states + (int64_t)s * L * d, L, 0, NULL, err_hook, &ec)))
                goto layer_fail;
            lmp_progress_update(&pg, ++done_n);
        }
        if (cal)
            for (int w = 0; w < LMP_LIN_COUNT; w++)
                res->lin[l * LMP_LIN_COUNT + w].err = ec.den[w] > 0 ? sqrt(ec.num[w] / ec.den[w]) : 0.0;
        if (p->sink && (rc = p->sink(p->sink_ctx, l, (const float *const *)Wp, (const uint8_t *const *)mask,
                                     p->spec.qbits ? qt : NULL, &res->lin[l * LMP_LIN_COUNT])))
            goto layer_fail;
        lmp_progress_end(&pg); /* clears the bar's line for the caller's per-layer line */
        if (p->on_layer_done)
            p->on_layer_done(p->log_ctx, l, nl, lmp_time_s() - tl, &res->lin[l * LMP_LIN_COUNT]);
    layer_fail:
        if (rc)
            lmp_progress_end(&pg);
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            if (installed[w])
                lmp_model_set_linear(m, l, (lmp_linear)w, &orig[w]);
            installed[w] = false;
            free(Wp[w]);
            free(mask[w]);
            Wp[w] = NULL;
            mask[w] = NULL;
            lmp_qtensor_free(&qt[w]);
        }
        for (int k = 0; k < LMP_IN_COUNT; k++) {
            free(hc.H[k]);
            free(hc.xsq[k]);
            hc.H[k] = NULL;
            hc.xsq[k] = NULL;
        }
        if (rc)
            goto done;
    }
    lmp_progress_end(&pg);
done:
    free(states);
    free(scratch);
    free(ec.y0);
    free(ec.y1);
    res->sparsity = res->params ? (double)res->zeros / (double)res->params : 0;
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
