/*
 * GPTQ and RTN on the experts of mixture-of-experts blocks (mixtral, qwen3_moe,
 * granitemoe), the expert half of the rows in pipeline.c. As GPTQModel and llm-compressor
 * calibrate Mixtral and Qwen3-MoE, every expert's gate, up and down projections get their
 * own Hessian from the calibration tokens the router sent to that expert only (the driver
 * gathers them, lib/calib/experts.c); the routers stay in full precision. An expert no
 * calibration token reached has no Hessian at all (H = 0: GPTQ's damping, a fraction of
 * the mean diagonal, would be 0 too, and identity damping would just be RTN with extra
 * steps), so it is quantized by RTN at the same bits / group / symmetry and named in a
 * warning. The quantized experts are installed so that the block's re-run (and with
 * true-sequential, the down projections' Hessians) sees the quantized gate/up.
 */
#include "qpipe_internal.h"

#include <stdlib.h>
#include <string.h>

static int x_reserve(lmp_qexperts *x, int E)
{
    if (x->cap >= E)
        return LMP_OK;
    lmp_qexperts_free(x);
    x->q = calloc((size_t)3 * E, sizeof *x->q);
    x->orig = calloc((size_t)3 * E, sizeof *x->orig);
    x->installed = calloc((size_t)3 * E, sizeof *x->installed);
    if (!x->q || !x->orig || !x->installed) {
        lmp_qexperts_free(x);
        return lmp_err(LMP_ENOMEM, "out of memory (%d experts)", E);
    }
    x->cap = E;
    return LMP_OK;
}

int lmp_qexperts_linear(lmp_qexperts *x, const lmp_qpipe_params *p, lmp_qpipe_result *res, lmp_calib_block *b,
                        lmp_linear w, lmp_qlinear_stats *agg)
{
    lmp_model *m = b->m;
    const int l = b->layer, E = lmp_model_n_experts(m, l), part = w - LMP_LIN_GATE;
    const int cls = lmp_linear_input(w);
    const lmp_config *c = lmp_model_config(m);
    int rc;
    if (x->n == 0) { /* the block's first expert linear: note the originals */
        if ((rc = x_reserve(x, E)))
            return rc;
        for (int e = 0; e < 3 * E; e++)
            x->orig[e] = *lmp_model_expert_linear(m, l, e / 3, (lmp_linear)(LMP_LIN_GATE + e % 3));
        x->n = E;
    }
    const lmp_wmat *w0 = &x->orig[part];
    agg->rows = w0->rows;
    agg->cols = w0->cols;
    lmp_expert_hf_prefix(c, l, 0, w, agg->name, sizeof agg->name); /* expert 0 stands for the block's */
    agg->loss = p->method == LMP_QMETHOD_GPTQ ? 0 : -1;
    agg->err = agg->err_rtn = -1;
    agg->seconds = 0;
    double err = 0, err_rtn = 0, wsum = 0;
    char missed[512];
    int n_missed = 0;
    size_t mlen = 0;
    missed[0] = 0;
    for (int e = 0; e < E; e++) {
        const int k = 3 * e + part;
        const double *H = b->st.eH[cls] ? b->st.eH[cls][e] : NULL;
        const int64_t ns = b->st.ens[cls] ? b->st.ens[cls][e] : 0;
        lmp_qpipe_params pe = *p;
        if (!H || ns == 0) { /* unreached (or no calibration): RTN, no error measure */
            if (p->method == LMP_QMETHOD_GPTQ || (b->cal && p->method == LMP_QMETHOD_RTN)) {
                n_missed++;
                if (mlen + 8 < sizeof missed)
                    mlen += (size_t)snprintf(missed + mlen, sizeof missed - mlen, " %d", e);
            }
            pe.method = LMP_QMETHOD_RTN;
            H = NULL;
        }
        char name[LMP_MAX_NAME];
        lmp_expert_hf_prefix(c, l, e, w, name, sizeof name);
        lmp_qlinear_stats st = {0};
        lmp_qtensor_free(&x->q[k]);
        if ((rc = lmp_qpipe_quantize_linear(&pe, &x->orig[k], H, name, &x->q[k], &st)))
            return rc;
        lmp_wmat qw;
        if ((rc = lmp_wmat_intgroup(&qw, &x->q[k])) || (rc = lmp_model_set_expert_linear(m, l, e, w, &qw)))
            return lmp_err_prefix(rc, "%s", name);
        x->installed[k] = true;
        res->params += (uint64_t)(x->orig[k].rows * x->orig[k].cols);
        res->qbytes += lmp_qtensor_nbytes(&x->q[k]);
        res->n_expert_linears++;
        agg->seconds += st.seconds;
        if (st.loss > 0 && agg->loss >= 0)
            agg->loss += st.loss;
        if (st.err >= 0) { /* weighted by the tokens the expert saw */
            err += st.err * (double)ns;
            err_rtn += (st.err_rtn >= 0 ? st.err_rtn : st.err) * (double)ns;
            wsum += (double)ns;
            if (st.err > res->worst_err) {
                res->worst_err = st.err;
                snprintf(res->worst_name, sizeof res->worst_name, "%s", name);
            }
            if (p->method == LMP_QMETHOD_GPTQ && st.err_rtn >= 0 && st.err > st.err_rtn)
                res->n_worse_than_rtn++;
        }
    }
    if (wsum > 0) {
        agg->err = err / wsum;
        agg->err_rtn = p->method == LMP_QMETHOD_GPTQ && !p->compare_rtn ? -1 : err_rtn / wsum;
    }
    res->n_expert_unreached += n_missed;
    if (n_missed)
        lmp_warn("%s: layer %d %s: %d of %d experts saw no calibration token (none was routed to them); quantized "
                 "by RTN (no Hessian to work from): experts%s",
                 p->method == LMP_QMETHOD_GPTQ ? "gptq" : "rtn", l, lmp_linear_name(w), n_missed, E, missed);
    return LMP_OK;
}

void lmp_qexperts_restore(lmp_qexperts *x, lmp_model *m, int layer)
{
    for (int k = 0; k < 3 * x->n; k++) {
        if (x->installed[k])
            lmp_model_set_expert_linear(m, layer, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3), &x->orig[k]);
        x->installed[k] = false;
        lmp_qtensor_free(&x->q[k]);
    }
    x->n = 0;
}

void lmp_qexperts_free(lmp_qexperts *x)
{
    for (int k = 0; x->q && k < 3 * x->cap; k++)
        lmp_qtensor_free(&x->q[k]);
    free(x->q);
    free(x->orig);
    free(x->installed);
    memset(x, 0, sizeof *x);
}
