/*
 * The layer-by-layer calibrated quantizer: GPTQ's "sequential" driver (IST-DASLab/gptq
 * llama.py llama_sequential; true-sequential groups as AutoGPTQ runs them) on the
 * engine's block runner. For block i: every calibration sample goes through the block
 * with a linear-input hook that accumulates one Hessian per distinct input (q/k/v share
 * the normed attention input, gate/up the normed MLP input); the linears are quantized
 * (GPTQ or RTN) and installed in the model as they are (the engine runs intgroup
 * weights natively, lmp_model_set_linear_q); the block is then
 * run again on the hidden states in place, so block i+1 calibrates on the outputs of the
 * QUANTIZED block i. The block's original weights are restored and its copies freed
 * before block i+1, so memory holds one block's weights and the hidden states of all
 * samples, whatever the depth. Hessian-collecting passes run on a copy of one sample and
 * stop (hook status LMP_PASS_DONE) as soon as the last input they need has been seen.
 *
 * Not here: token windows (calib.c), file layouts (formats/qmodel.c).
 */
#include "pipeline.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int lmp_calib_block_pass(const lmp_model *m, int layer, const float *states, int n, int L,
                         float *scratch, lmp_linear_hook hook, void *user, lmp_progress *pg,
                         uint64_t *done)
{
    const int64_t d = lmp_model_config(m)->hidden_size;
    for (int s = 0; s < n; s++) {
        memcpy(scratch, states + (int64_t)s * L * d, (size_t)L * (size_t)d * sizeof(float));
        int rc = lmp_block_run(m, layer, scratch, L, 0, NULL, hook, user);
        if (rc != 0 && rc != LMP_PASS_DONE)
            return rc;
        ++*done;
        if (pg)
            lmp_progress_update(pg, *done);
    }
    return LMP_OK;
}

void lmp_qpipe_default_params(lmp_qpipe_params *p)
{
    memset(p, 0, sizeof *p);
    p->method = LMP_QMETHOD_GPTQ;
    p->bits = 4;
    p->group_size = 128;
    p->sym = true;
    p->act_order = true;
    p->static_groups = false;
    p->damp = 0.01f;
    p->blocksize = 128;
    p->true_sequential = true;
    p->compare_rtn = true;
    p->progress = true;
    p->awq_grid = 20;
    p->awq_duo_scaling = true;
    p->awq_clip = true;
    p->awq_clip_tokens = 512;
}

void lmp_qpipe_result_free(lmp_qpipe_result *r)
{
    if (!r)
        return;
    free(r->lin);
    free(r->layer_seconds);
    memset(r, 0, sizeof *r);
}

const char *lmp_linear_hf_prefix(int layer, lmp_linear which, char *buf, size_t n)
{
    bool attn = which <= LMP_LIN_O;
    snprintf(buf, n, "model.layers.%d.%s.%s", layer, attn ? "self_attn" : "mlp", lmp_linear_name(which));
    return buf;
}

int lmp_qpipe_check(const lmp_model *m, const lmp_qpipe_params *p)
{
    if (m && lmp_model_is_moe(m))
        return lmp_err(LMP_EUNSUPPORTED, "%s: calibrated quantization (GPTQ, AWQ, RTN folders) of mixture-of-experts models is not supported yet "
                       "(experts would need the tokens routed to them); GGUF block types work: lmpress quantize --type",
                       lmp_model_ckpt(m)->path);
    if (p->method != LMP_QMETHOD_GPTQ && p->method != LMP_QMETHOD_RTN && p->method != LMP_QMETHOD_AWQ)
        return lmp_err(LMP_EINVAL, "quantize: unknown method %d", (int)p->method);
    if (p->method == LMP_QMETHOD_AWQ && p->act_order)
        return lmp_err(LMP_EINVAL, "quantize: AWQ has no act-order (its groups follow the column order; "
                                   "set act_order false)");
    if (p->method == LMP_QMETHOD_AWQ && (p->awq_grid < 1 || p->awq_grid > 1000 || p->awq_clip_tokens < 1))
        return lmp_err(LMP_EINVAL, "quantize: AWQ grid %d / clip tokens %d", p->awq_grid, p->awq_clip_tokens);
    if (p->bits < 2 || p->bits > 8)
        return lmp_err(LMP_EINVAL, "quantize: --bits %d: must be 2..8", p->bits);
    if (p->group_size == 0 || p->group_size < -1 || p->group_size > 1 << 20)
        return lmp_err(LMP_EINVAL, "quantize: --group-size %d: must be positive, or -1 (one group per row)",
                       p->group_size);
    if (!(p->damp > 0.0f) || p->damp >= 1.0f)
        return lmp_err(LMP_EINVAL, "quantize: --damp %g: must be in (0, 1)", (double)p->damp);
    if (p->blocksize < 1)
        return lmp_err(LMP_EINVAL, "quantize: GPTQ block size %d", p->blocksize);
    if (!m) /* the preferences only, before the model is read */
        return LMP_OK;
    const lmp_config *c = lmp_model_config(m);
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
            if (!lmp_dtype_info(wm->dtype)->to_f32)
                return lmp_err(LMP_EUNSUPPORTED, "%s.weight: dtype %s cannot be converted to f32", name,
                               lmp_dtype_info(wm->dtype)->name);
            if (p->group_size > 0 && wm->cols % p->group_size)
                return lmp_err(LMP_EINVAL,
                               "%s.weight: in_features %lld is not a multiple of group size %d (GPTQ and "
                               "compressed-tensors kernels need whole groups; choose a group size that divides "
                               "every layer's in_features, or -1)",
                               name, (long long)wm->cols, p->group_size);
        }
    return LMP_OK;
}

uint64_t lmp_qpipe_act_bytes(const lmp_model *m, const lmp_calib_data *cal)
{
    if (!cal)
        return 0;
    return (uint64_t)cal->n_samples * (uint64_t)cal->seq_len * (uint64_t)lmp_model_config(m)->hidden_size *
           sizeof(float);
}

/* tr(A H A^T) for A f32 [rows][cols], in double (gptq_linalg.c: thread-count independent,
 * one triangular product per 64 rows; a and ah are not needed any more). */
static double quad_trace(const float *A, const double *H, int64_t rows, int64_t cols, double *a, double *ah)
{
    (void)a;
    (void)ah;
    return lmp_gptq_quad_trace(A, H, rows, cols);
}

/* Relative error given the precomputed denominator tr(W H W^T). Returns -1 on ENOMEM. */
static double rel_error_den(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols,
                            double den)
{
    int64_t k = rows < 64 ? rows : 64;
    double *a = malloc((size_t)(2 * k * cols) * sizeof(double));
    float *D = malloc((size_t)(rows * cols) * sizeof(float));
    double e = -1;
    if (a && D) {
        for (int64_t i = 0; i < rows * cols; i++)
            D[i] = W[i] - Q[i];
        double num = quad_trace(D, H, rows, cols, a, a + k * cols);
        e = den > 0 ? sqrt(fmax(num, 0.0) / den) : 0.0;
    }
    free(a);
    free(D);
    return e;
}

static double trace_w(const float *W, const double *H, int64_t rows, int64_t cols)
{
    int64_t k = rows < 64 ? rows : 64;
    double *a = malloc((size_t)(2 * k * cols) * sizeof(double));
    if (!a)
        return -1;
    double t = quad_trace(W, H, rows, cols, a, a + k * cols);
    free(a);
    return t;
}

double lmp_qpipe_rel_error(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols)
{
    double den = trace_w(W, H, rows, cols);
    return den < 0 ? -1 : rel_error_den(W, Q, H, rows, cols, den);
}

int lmp_qpipe_install(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q, float **buf)
{
    *buf = NULL;
    float *d = malloc((size_t)(q->rows * q->cols) * sizeof(float));
    if (!d)
        return lmp_err(LMP_ENOMEM, "out of memory dequantizing %s", q->name);
    lmp_qtensor_dequant(q, d);
    lmp_wmat w = {.dtype = LMP_DT_F32, .rows = q->rows, .cols = q->cols, .data = d,
                  .row_bytes = (size_t)q->cols * sizeof(float)};
    int rc = lmp_model_set_linear(m, layer, which, &w);
    if (rc) {
        free(d);
        return rc;
    }
    *buf = d;
    return LMP_OK;
}

/* Linear weight -> f32 copy, refusing non-finite values (naming the tensor). */
static int weight_f32(const lmp_wmat *w, const char *name, float **out)
{
    *out = NULL;
    float *W = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    if (!W)
        return lmp_err(LMP_ENOMEM, "out of memory converting %s.weight to f32", name);
    for (int64_t r = 0; r < w->rows; r++) /* dense, block or intgroup rows */
        lmp_wmat_row_f32(w, r, W + r * w->cols);
    for (int64_t i = 0; i < w->rows * w->cols; i++)
        if (!isfinite(W[i])) {
            int rc = lmp_err(LMP_ERANGE, "%s.weight: non-finite value %g at [%lld, %lld]; refusing to quantize",
                             name, (double)W[i], (long long)(i / w->cols), (long long)(i % w->cols));
            free(W);
            return rc;
        }
    *out = W;
    return LMP_OK;
}

/* ---------------------------------------------------------------- Hessian hook ---- */

typedef struct {
    double *H[LMP_IN_COUNT];   /* [cols][cols] or NULL when not collected in this pass */
    int64_t ns[LMP_IN_COUNT];
    lmp_linear stop_at;    /* LMP_PASS_DONE after this linear's input is seen */
} hess_ctx;

static int hess_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    hess_ctx *h = user;
    int cls = lmp_linear_input(which);
    if (which == lmp_input_first(cls) && h->H[cls]) {
        int rc = lmp_gptq_hessian_add(h->H[cls], in, X, n, &h->ns[cls]);
        if (rc)
            return rc;
    }
    return which == h->stop_at ? LMP_PASS_DONE : 0;
}

/* ---------------------------------------------------------------- one linear ------ */

static int quantize_linear(const lmp_qpipe_params *p, const lmp_wmat *wm, const double *H, const char *name,
                           lmp_qtensor *q, lmp_qlinear_stats *st)
{
    float *W = NULL, *Qf = NULL;
    lmp_qtensor rq = {0};
    double t0 = lmp_time_s();
    int rc = weight_f32(wm, name, &W);
    if (rc)
        return rc;
    const int64_t rows = wm->rows, cols = wm->cols;
    st->loss = -1;
    st->err = -1;
    st->err_rtn = -1;
    lmp_rtn_params rp;
    lmp_rtn_default_params(&rp);
    rp.bits = p->bits;
    rp.group_size = p->group_size;
    rp.sym = p->sym;
    if (p->method == LMP_QMETHOD_GPTQ) {
        lmp_gptq_params gp;
        lmp_gptq_default_params(&gp);
        gp.bits = p->bits;
        gp.group_size = p->group_size;
        gp.sym = p->sym;
        gp.act_order = p->act_order;
        gp.static_groups = p->static_groups;
        gp.percdamp = p->damp;
        gp.blocksize = p->blocksize;
        rc = lmp_quant_gptq(W, rows, cols, H, &gp, q, &st->loss);
    } else {
        rc = lmp_quant_rtn(W, rows, cols, &rp, q);
    }
    if (rc) {
        rc = lmp_err_prefix(rc, "%s.weight", name);
        goto done;
    }
    snprintf(q->name, sizeof q->name, "%s", name);
    if (H) {
        Qf = malloc((size_t)(rows * cols) * sizeof(float));
        if (!Qf) {
            rc = lmp_err(LMP_ENOMEM, "out of memory measuring %s", name);
            goto done;
        }
        lmp_qtensor_dequant(q, Qf);
        double den = trace_w(W, H, rows, cols);
        st->err = den < 0 ? -1 : rel_error_den(W, Qf, H, rows, cols, den);
        if (p->method == LMP_QMETHOD_RTN) {
            st->err_rtn = st->err;
        } else if (p->compare_rtn) {
            if ((rc = lmp_quant_rtn(W, rows, cols, &rp, &rq)))
                goto done;
            lmp_qtensor_dequant(&rq, Qf);
            st->err_rtn = den < 0 ? -1 : rel_error_den(W, Qf, H, rows, cols, den);
        }
        if (st->err < 0 || (p->compare_rtn && p->method == LMP_QMETHOD_GPTQ && st->err_rtn < 0)) {
            rc = lmp_err(LMP_ENOMEM, "out of memory measuring %s", name);
            goto done;
        }
    }
    st->seconds = lmp_time_s() - t0;
done:
    if (rc)
        lmp_qtensor_free(q);
    lmp_qtensor_free(&rq);
    free(W);
    free(Qf);
    return rc;
}

/* ---------------------------------------------------------------- the run --------- */

/* Drops the resident pages of [p, p + n) when that range lies in a tensor the model's
 * checkpoint maps from its file (read-only, private: a later access reads the file
 * again), so that RSS does not grow by every block's weights as the run goes through the
 * model. Memory that is not file-mapped (weights installed by a caller) is left alone. */
static void release_mapped(const lmp_model *m, const void *p, size_t n)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    const uint8_t *a = p;
    for (int i = 0; c && a && i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        const uint8_t *b = t->data;
        if (!t->owned && b && a >= b && a + n <= b + t->nbytes) {
            lmp_mmap_release(p, n);
            return;
        }
    }
}

/* The same for every file-mapped tensor of the checkpoint. */
static void release_all_mapped(const lmp_model *m)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    for (int i = 0; c && i < c->n_tensors; i++)
        if (!c->tensors[i].owned && c->tensors[i].data)
            lmp_mmap_release(c->tensors[i].data, c->tensors[i].nbytes);
}

int lmp_qpipe_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p, lmp_qpipe_result *res)
{
    memset(res, 0, sizeof *res);
    double t_start = lmp_time_s();
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    int rc = lmp_qpipe_check(m, p);
    if (rc)
        return rc;
    if (p->method == LMP_QMETHOD_AWQ)
        return lmp_awq_run(m, cal, p, res);
    if (!cal && p->method == LMP_QMETHOD_GPTQ)
        return lmp_err(LMP_EINVAL, "quantize: GPTQ needs calibration text");
    res->n_layers = nl;
    res->lin = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *res->lin);
    res->layer_seconds = calloc((size_t)nl, sizeof *res->layer_seconds);
    if (!res->lin || !res->layer_seconds)
        return lmp_err(LMP_ENOMEM, "out of memory");

    const int64_t d = c->hidden_size;
    const int N = cal ? cal->n_samples : 0, L = cal ? cal->seq_len : 0;
    float *states = NULL, *scratch = NULL;
    lmp_qtensor qt[LMP_LIN_COUNT];
    bool installed[LMP_LIN_COUNT] = {0}; /* qt[w] runs natively as linear w */
    lmp_wmat orig[LMP_LIN_COUNT];
    hess_ctx hc;
    memset(qt, 0, sizeof qt);
    memset(&hc, 0, sizeof hc);

    if (cal) {
        res->n_samples = N;
        res->seq_len = L;
        res->act_bytes = lmp_qpipe_act_bytes(m, cal);
        states = malloc(res->act_bytes);
        scratch = malloc((size_t)L * d * sizeof(float));
        if (!states || !scratch) {
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%d x %d x %lld f32 = %.1f MiB)",
                         N, L, (long long)d, res->act_bytes / 1048576.0);
            goto done;
        }
        for (int s = 0; s < N; s++)
            if ((rc = lmp_model_embed(m, cal->tokens + (int64_t)s * L, L, states + (int64_t)s * L * d)))
                goto done;
        release_all_mapped(m); /* the embedding rows just read */
    }

    /* Groups of input classes quantized together: true-sequential runs one class per
     * group; otherwise every Hessian comes from one pass over the original block. */
    int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1];
    const int n_groups = lmp_input_groups(p->true_sequential, groups);

    /* one bar for the whole model (layers x passes), so its ETA is the job's (issue 18) */
    const uint64_t per_layer = cal ? (uint64_t)(n_groups + 1) * N : LMP_LIN_COUNT;
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
        snprintf(label, sizeof label, "layer %d/%d", l + 1, nl);
        uint64_t done_n = (uint64_t)l * per_layer;
        for (int g = 0; g < n_groups; g++) {
            memset(&hc, 0, sizeof hc);
            if (cal) {
                int last = -1;
                for (int k = 0; groups[g][k] >= 0; k++) {
                    int cls = groups[g][k];
                    int64_t cols = orig[lmp_input_first(cls)].cols;
                    hc.H[cls] = calloc((size_t)(cols * cols), sizeof(double));
                    if (!hc.H[cls]) {
                        rc = lmp_err(LMP_ENOMEM, "out of memory for a %lld x %lld Hessian", (long long)cols,
                                     (long long)cols);
                        goto layer_fail;
                    }
                    last = cls;
                }
                hc.stop_at = lmp_input_first(last);
                if ((rc = lmp_calib_block_pass(m, l, states, N, L, scratch, hess_hook, &hc, &pg, &done_n)))
                    goto layer_fail;
            }
            for (int w = 0; w < LMP_LIN_COUNT; w++) {
                int cls = lmp_linear_input((lmp_linear)w);
                bool in_group = false;
                for (int k = 0; groups[g][k] >= 0; k++)
                    in_group |= groups[g][k] == cls;
                if (!in_group)
                    continue;
                lmp_qlinear_stats *st = &res->lin[l * LMP_LIN_COUNT + w];
                st->layer = l;
                st->which = (lmp_linear)w;
                st->rows = orig[w].rows;
                st->cols = orig[w].cols;
                lmp_linear_hf_prefix(l, (lmp_linear)w, st->name, sizeof st->name);
                if (p->keep && p->keep[l * LMP_LIN_COUNT + w]) { /* --keep: stays dense */
                    st->err = st->err_rtn = -1;
                    if (!cal)
                        lmp_progress_update(&pg, ++done_n);
                    continue;
                }
                if ((rc = quantize_linear(p, &orig[w], hc.H[cls], st->name, &qt[w], st)))
                    goto layer_fail;
                res->params += (uint64_t)(orig[w].rows * orig[w].cols);
                res->qbytes += lmp_qtensor_nbytes(&qt[w]);
                if (st->err > res->worst_err) {
                    res->worst_err = st->err;
                    snprintf(res->worst_name, sizeof res->worst_name, "%s", st->name);
                }
                if (p->method == LMP_QMETHOD_GPTQ && st->err_rtn >= 0 && st->err > st->err_rtn)
                    res->n_worse_than_rtn++;
                if (cal) {
                    /* the engine runs the intgroup payload in place (bitwise the
                     * dequantized f32 copy's result on the tiled path, M >= 16) */
                    if ((rc = lmp_model_set_linear_q(m, l, (lmp_linear)w, &qt[w])))
                        goto layer_fail;
                    installed[w] = true;
                }
                if (!cal)
                    lmp_progress_update(&pg, ++done_n);
            }
            for (int k = 0; k < LMP_IN_COUNT; k++) {
                free(hc.H[k]);
                hc.H[k] = NULL;
            }
        }
        /* the quantized block produces the next block's inputs */
        for (int s = 0; s < N; s++) {
            if ((rc = lmp_block_run(m, l, states + (int64_t)s * L * d, L, 0, NULL, NULL, NULL)))
                goto layer_fail;
            lmp_progress_update(&pg, ++done_n);
        }
        if (p->sink && (rc = p->sink(p->sink_ctx, l, qt, &res->lin[l * LMP_LIN_COUNT])))
            goto layer_fail;
        for (int w = 0; w < LMP_LIN_COUNT; w++) /* block l's weights are not read again */
            if (orig[w].data)
                release_mapped(m, orig[w].data, (size_t)orig[w].rows * orig[w].row_bytes);
        res->layer_seconds[l] = lmp_time_s() - tl;
        lmp_progress_end(&pg); /* clears the bar's line for the caller's per-layer line */
        if (p->on_layer_done)
            p->on_layer_done(p->log_ctx, l, nl, res->layer_seconds[l], &res->lin[l * LMP_LIN_COUNT]);
    layer_fail:
        if (rc)
            lmp_progress_end(&pg);
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            if (installed[w])
                lmp_model_set_linear(m, l, (lmp_linear)w, &orig[w]);
            installed[w] = false;
            lmp_qtensor_free(&qt[w]);
        }
        for (int k = 0; k < LMP_IN_COUNT; k++) {
            free(hc.H[k]);
            hc.H[k] = NULL;
        }
        if (rc)
            goto done;
    }
    lmp_progress_end(&pg);
done:
    free(states);
    free(scratch);
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
