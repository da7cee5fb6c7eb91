/*
 * GPTQ and RTN as rows of lib/calib's layer-wise driver (calib.h), and the pipeline's
 * entry point lmp_qpipe_run. GPTQ's "sequential" walk (IST-DASLab/gptq llama.py
 * llama_sequential; true-sequential groups as AutoGPTQ runs them) is the driver's: per
 * block, one Hessian per distinct linear input (q/k/v share the normed attention input,
 * gate/up the normed MLP input) gathered with the row's lmp_gptq_hessian_add; here, per
 * linear, GPTQ (or RTN) on it, the result handed back to be installed as it is (the
 * engine runs intgroup weights natively, lmp_model_set_linear_q) so that the driver's
 * re-run feeds block i+1 the outputs of the QUANTIZED block i.
 *
 * Not here: the walk (lib/calib/driver.c), token windows (lib/calib/windows.c), AWQ's row
 * (awq.c), file layouts (formats/qmodel.c).
 */
#include "qpipe_internal.h"
#include "../core/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- one linear ------ */

static int quantize_linear(const lmp_qpipe_params *p, int layer, lmp_linear which, const lmp_wmat *wm,
                           const double *H, const char *name, lmp_qtensor *q, lmp_qlinear_stats *st, double *t_report,
                           lmp_gptq_cache *cache, uint64_t tag);

int lmp_qpipe_quantize_linear(const lmp_qpipe_params *p, int layer, lmp_linear which, const lmp_wmat *wm,
                              const double *H, const char *name, lmp_qtensor *q, lmp_qlinear_stats *st,
                              double *t_report)
{
    return quantize_linear(p, layer, which, wm, H, name, q, st, t_report, NULL, 0);
}

/* cache, tag: GPTQ's factor of H^-1 kept for the next linear of the same H (tag: the
 * caller's name for H, nonzero) */
static int quantize_linear(const lmp_qpipe_params *p, int layer, lmp_linear which, const lmp_wmat *wm,
                           const double *H, const char *name, lmp_qtensor *q, lmp_qlinear_stats *st, double *t_report,
                           lmp_gptq_cache *cache, uint64_t tag)
{
    const int bits = lmp_qpipe_lin_bits(p, layer, which), group = lmp_qpipe_lin_group(p, layer, which);
    float *W = NULL, *Dg = NULL, *Dr = NULL;
    lmp_qtensor rq = {0};
    double t0 = lmp_time_s();
    int rc = lmp_calib_weight_f32(wm, name, &W);
    if (rc)
        return rc;
    const int64_t rows = wm->rows, cols = wm->cols;
    st->loss = -1;
    st->err = -1;
    st->err_rtn = -1;
    lmp_rtn_params rp;
    lmp_rtn_default_params(&rp);
    rp.bits = bits;
    rp.group_size = group;
    rp.sym = p->sym;
    if (p->method == LMP_QMETHOD_GPTQ) {
        lmp_gptq_params gp;
        lmp_gptq_default_params(&gp);
        gp.bits = bits;
        gp.group_size = group;
        gp.sym = p->sym;
        gp.act_order = p->act_order;
        gp.static_groups = p->static_groups;
        gp.percdamp = p->damp;
        gp.blocksize = p->blocksize;
        gp.factor_f64 = p->calib_f32; /* --calib-f32: the full-precision path (f64 factor) */
        rc = lmp_quant_gptq_cached(W, rows, cols, H, &gp, cache, tag, q, &st->loss);
    } else {
        rc = lmp_quant_rtn(W, rows, cols, &rp, q);
    }
    if (rc) {
        rc = lmp_err_prefix(rc, "%s.weight", name);
        goto done;
    }
    snprintf(q->name, sizeof q->name, "%s", name);
    double t_rep = lmp_time_s();
    if (H) {
        /* tr(A H A^T) for W (the denominator), RTN's W - Q (RTN, or GPTQ's comparison) on
         * one pass over H in f32 products (lmp_gptq_quad_traces_f32); GPTQ's own from its
         * solve (lmp_gptq_err_trace: its Losses, no product) */
        const bool gptq = p->method == LMP_QMETHOD_GPTQ, rtn2 = gptq && p->compare_rtn;
        Dg = lmp_malloc_big((size_t)(rows * cols) * sizeof(float));
        Dr = rtn2 ? lmp_malloc_big((size_t)(rows * cols) * sizeof(float)) : NULL;
        if (!Dg || (rtn2 && !Dr)) {
            rc = lmp_err(LMP_ENOMEM, "out of memory measuring %s", name);
            goto done;
        }
        lmp_qtensor_dequant(q, Dg);
        for (int64_t i = 0; i < rows * cols; i++)
            Dg[i] = W[i] - Dg[i];
        if (rtn2) {
            if ((rc = lmp_quant_rtn(W, rows, cols, &rp, &rq)))
                goto done;
            lmp_qtensor_dequant(&rq, Dr);
            for (int64_t i = 0; i < rows * cols; i++)
                Dr[i] = W[i] - Dr[i];
        }
        const float *A[2] = {W, gptq ? Dr : Dg};
        double tr[2] = {0, 0};
        if (lmp_gptq_quad_traces_f32(A, gptq && !rtn2 ? 1 : 2, H, rows, cols, tr) < 0) {
            rc = lmp_err(LMP_ENOMEM, "out of memory measuring %s", name);
            goto done;
        }
        const double den = tr[0];
        const double tg = gptq ? lmp_gptq_err_trace(Dg, H, rows, cols, p->damp, st->loss) : tr[1];
        if (isnan(tg)) {
            rc = lmp_err(LMP_ENOMEM, "out of memory measuring %s", name);
            goto done;
        }
        st->err = den > 0 ? sqrt(fmax(tg, 0.0) / den) : 0.0;
        if (p->method == LMP_QMETHOD_RTN)
            st->err_rtn = st->err;
        else if (rtn2)
            st->err_rtn = den > 0 ? sqrt(fmax(tr[1], 0.0) / den) : 0.0;
    }
    st->seconds = lmp_time_s() - t0;
    *t_report += lmp_time_s() - t_rep;
done:
    if (rc)
        lmp_qtensor_free(q);
    lmp_qtensor_free(&rq);
    free(W);
    free(Dg);
    free(Dr);
    return rc;
}

/* ---------------------------------------------------------------- the rows -------- */

typedef struct {
    const lmp_qpipe_params *p;
    lmp_qpipe_result *res;
    lmp_qtensor qt[LMP_LIN_COUNT];
    lmp_qexperts x;              /* a sparse block's experts (qexperts.c) */
    lmp_gptq_cache gc;           /* the block's last factor of H^-1 (q/k/v and gate/up share theirs) */
} qp_ctx;

static int qp_linear(void *ctx, lmp_calib_block *b, lmp_linear w)
{
    qp_ctx *q = ctx;
    const lmp_qpipe_params *p = q->p;
    lmp_qpipe_result *res = q->res;
    const int l = b->layer;
    lmp_qlinear_stats *st = &res->lin[l * LMP_LIN_COUNT + w];
    st->layer = l;
    st->which = w;
    st->rows = b->orig[w].rows;
    st->cols = b->orig[w].cols;
    lmp_linear_hf_prefix(l, w, st->name, sizeof st->name);
    if (w >= LMP_LIN_GATE && lmp_model_n_experts(b->m, l) > 0) /* routed experts, each on its own tokens */
        return lmp_qexperts_linear(&q->x, p, res, b, w, st);
    if (p->keep && p->keep[l * LMP_LIN_COUNT + w]) { /* --keep: stays dense */
        st->err = st->err_rtn = -1;
        return LMP_OK;
    }
    const int cls = lmp_linear_input(w);
    const uint64_t tag = ((uint64_t)l * LMP_IN_COUNT + (uint64_t)cls) * 256u + (uint64_t)b->pass + 1u;
    int rc = quantize_linear(p, l, w, &b->orig[w], b->st.H[cls], st->name, &q->qt[w], st, &res->report_seconds, &q->gc,
                             tag);
    if (rc)
        return rc;
    /* the engine runs the intgroup payload in place (bitwise the dequantized f32 copy's
     * result on the tiled path, M >= 16) */
    b->install_q[w] = &q->qt[w];
    return LMP_OK;
}

/* Under mpirun (lib/calib/calib_dist.h): linear w's result and figures from the rank that
 * quantized it. */
static int qp_share(void *ctx, lmp_calib_block *b, lmp_linear w, int owner)
{
    qp_ctx *q = ctx;
    lmp_qlinear_stats *st = &q->res->lin[b->layer * LMP_LIN_COUNT + w];
    int rc = lmp_dist_bcast(st, sizeof *st, owner);
    if (!rc)
        rc = lmp_calib_share_qtensor(&q->qt[w], owner);
    if (!rc && q->qt[w].rows > 0)
        b->install_q[w] = &q->qt[w];
    return rc;
}

static int qp_end(void *ctx, lmp_calib_block *b)
{
    qp_ctx *q = ctx;
    const lmp_qpipe_params *p = q->p;
    const int l = b->layer;
    lmp_qpipe_result *res = q->res;
    int rc = LMP_OK;
    if (q->x.n && p->expert_sink && (rc = p->expert_sink(p->sink_ctx, l, q->x.n, q->x.q)))
        return rc;
    /* the totals, in linear order (whichever rank quantized each linear) */
    for (int w = 0; w < LMP_LIN_COUNT; w++) {
        const lmp_qlinear_stats *st = &res->lin[l * LMP_LIN_COUNT + w];
        if (q->qt[w].rows == 0) /* --keep: stays dense */
            continue;
        res->params += (uint64_t)(b->orig[w].rows * b->orig[w].cols);
        res->qbytes += lmp_qtensor_nbytes(&q->qt[w]);
        if (st->err > res->worst_err) {
            res->worst_err = st->err;
            snprintf(res->worst_name, sizeof res->worst_name, "%s", st->name);
        }
        if (p->method == LMP_QMETHOD_GPTQ && st->err_rtn >= 0 && st->err > st->err_rtn)
            res->n_worse_than_rtn++;
    }
    if (p->sink && (rc = p->sink(p->sink_ctx, l, q->qt, &q->res->lin[l * LMP_LIN_COUNT])))
        return rc;
    q->res->layer_seconds[l] = lmp_time_s() - b->t0;
    if (p->on_layer_done)
        p->on_layer_done(p->log_ctx, l, b->n_layers, q->res->layer_seconds[l], &q->res->lin[l * LMP_LIN_COUNT]);
    return LMP_OK;
}

static void qp_cleanup(void *ctx, lmp_calib_block *b)
{
    qp_ctx *q = ctx;
    lmp_qexperts_restore(&q->x, b->m, b->layer);
    lmp_gptq_cache_free(&q->gc);
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        lmp_qtensor_free(&q->qt[w]);
}

/* GPTQ: per linear, the Hessian of its input (also what RTN's error is measured on). */
static const lmp_calib_method g_gptq_row = {
    .name = "gptq",
    .stats = LMP_STAT_HESSIAN | LMP_STAT_EXPERT_HESSIAN,
    .hessian_add = lmp_gptq_hessian_add_upper,
    .hessian_add_bf16 = lmp_gptq_hessian_add_upper_bf16,
    .hessian_finish = lmp_gptq_sym_from_upper,
    .linear = qp_linear,
    .end = qp_end,
    .cleanup = qp_cleanup,
    .linear_share = qp_share,
};
/* RTN: the same statistics, for the error figures only (none without calibration). */
static const lmp_calib_method g_rtn_row = {
    .name = "rtn",
    .stats = LMP_STAT_HESSIAN | LMP_STAT_EXPERT_HESSIAN,
    .hessian_add = lmp_gptq_hessian_add_upper,
    .hessian_finish = lmp_gptq_sym_from_upper,
    .linear = qp_linear,
    .end = qp_end,
    .cleanup = qp_cleanup,
    .linear_share = qp_share,
};

/* ---------------------------------------------------------------- the run --------- */

int lmp_qpipe_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p, lmp_qpipe_result *res)
{
    memset(res, 0, sizeof *res);
    double t_start = lmp_time_s();
    const int nl = lmp_model_config(m)->n_layers;
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
    if (cal) {
        res->n_samples = cal->n_samples;
        res->seq_len = cal->seq_len;
        res->act_bytes = lmp_calib_act_bytes(m, cal);
    }
    qp_ctx q;
    memset(&q, 0, sizeof q);
    q.p = p;
    q.res = res;
    lmp_calib_opts o = {.true_sequential = p->true_sequential, .calib_bos = p->calib_bos, .progress = p->progress,
                        .times = &res->phases, .bf16 = p->method == LMP_QMETHOD_GPTQ && !p->calib_f32};
    rc = lmp_calib_run(m, cal, p->method == LMP_QMETHOD_GPTQ ? &g_gptq_row : &g_rtn_row, &q, &o);
    lmp_qexperts_free(&q.x);
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
