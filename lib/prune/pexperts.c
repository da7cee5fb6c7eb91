/*
 * Wanda and SparseGPT on the experts of mixture-of-experts blocks (mixtral, qwen3_moe,
 * granitemoe): every expert's gate, up and down projections are pruned from the
 * statistics of the calibration tokens the router sent to that expert only, gathered by
 * the driver (Wanda: the per-expert sums of x^2, LMP_STAT_EXPERTS; SparseGPT: one Hessian
 * per expert, LMP_STAT_EXPERT_HESSIAN). An expert no calibration token reached has no
 * statistics (Wanda's metric |w| * 0 would rank nothing; SparseGPT's H = 0 cannot be
 * inverted), so it is pruned by magnitude with the same pattern and named in a warning.
 * The pruned experts are installed so that the block's re-run feeds the next block the
 * PRUNED block's outputs, as for dense linears. Joint quantization of experts is not
 * done (refused by lmp_prune_check).
 */
#include "prune_internal_moe.h"

#include <stdlib.h>
#include <string.h>

static int px_reserve(lmp_pexperts *x, int E)
{
    if (x->cap >= E)
        return LMP_OK;
    lmp_pexperts_free(x);
    x->W = calloc((size_t)3 * E, sizeof *x->W);
    x->pw = calloc((size_t)3 * E, sizeof *x->pw);
    x->orig = calloc((size_t)3 * E, sizeof *x->orig);
    if (!x->W || !x->pw || !x->orig) {
        lmp_pexperts_free(x);
        return lmp_err(LMP_ENOMEM, "out of memory (%d experts)", E);
    }
    x->cap = E;
    return LMP_OK;
}

int lmp_pexperts_linear(lmp_pexperts *x, const lmp_prune_params *p, lmp_prune_result *res, lmp_calib_block *b,
                        lmp_linear w, lmp_prune_linear_stats *st)
{
    lmp_model *m = b->m;
    const lmp_config *c = lmp_model_config(m);
    const int l = b->layer, E = lmp_model_n_experts(m, l), part = w - LMP_LIN_GATE;
    const int cls = lmp_linear_input(w);
    const bool sgpt = p->spec.method == LMP_PRUNE_SPARSEGPT;
    int rc;
    if (x->n == 0) {
        if ((rc = px_reserve(x, E)))
            return rc;
        for (int k = 0; k < 3 * E; k++)
            x->orig[k] = *lmp_model_expert_linear(m, l, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3));
        x->n = E;
    }
    const double t0 = lmp_time_s();
    lmp_expert_hf_prefix(c, l, 0, w, st->name, sizeof st->name); /* expert 0 stands for the block's */
    st->rows = x->orig[part].rows;
    st->cols = x->orig[part].cols;
    st->loss = sgpt && !p->spec.qbits ? 0 : -1;
    char missed[512];
    size_t mlen = 0;
    int n_missed = 0;
    missed[0] = 0;
    for (int e = 0; e < E; e++) {
        const int k = 3 * e + part;
        const int64_t rows = x->orig[k].rows, cols = x->orig[k].cols;
        char name[LMP_MAX_NAME];
        lmp_expert_hf_prefix(c, l, e, w, name, sizeof name);
        free(x->W[k]);
        x->W[k] = NULL;
        if ((rc = lmp_calib_weight_f32(&x->orig[k], name, &x->W[k])))
            return rc;
        /* the tokens routed to expert e, and their statistics */
        const double *H = NULL, *xsq = NULL;
        int64_t ns = 0;
        if (sgpt && b->st.eH[cls]) {
            H = b->st.eH[cls][e];
            ns = b->st.ens[cls][e];
        } else if (!sgpt && b->st.exsq) {
            ns = b->st.ecount[e];
            xsq = b->st.exsq + (cls == LMP_IN_MLP ? (int64_t)e * b->e_hidden
                                                  : (int64_t)b->n_experts * b->e_hidden + (int64_t)e * b->e_ff);
        }
        lmp_prune_spec spec = p->spec;
        if (ns == 0) { /* unreached: magnitude */
            n_missed++;
            if (mlen + 8 < sizeof missed)
                mlen += (size_t)snprintf(missed + mlen, sizeof missed - mlen, " %d", e);
            spec.method = LMP_PRUNE_MAGNITUDE;
            rc = lmp_prune_linear_norms(x->W[k], rows, cols, NULL, &spec, NULL);
        } else if (sgpt) {
            double loss = 0;
            rc = lmp_prune_linear(x->W[k], rows, cols, H, &spec, NULL, NULL, &loss);
            if (st->loss >= 0)
                st->loss += loss;
        } else {
            rc = lmp_prune_linear_norms(x->W[k], rows, cols, xsq, &spec, NULL);
        }
        if (rc)
            return lmp_err_prefix(rc, "%s.weight", name);
        for (int64_t i = 0; i < rows * cols; i++)
            st->zeros += x->W[k][i] == 0.0f;
        res->params += (uint64_t)(rows * cols);
        res->n_expert_linears++;
        x->pw[k] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = x->W[k],
                              .row_bytes = (size_t)cols * sizeof(float)};
        if ((rc = lmp_model_set_expert_linear(m, l, e, w, &x->pw[k])))
            return rc;
    }
    res->zeros += (uint64_t)st->zeros;
    res->n_expert_unreached += n_missed;
    st->seconds = lmp_time_s() - t0;
    if (n_missed)
        lmp_warn("%s: layer %d %s: %d of %d experts saw no calibration token (none was routed to them); pruned by "
                 "magnitude (no statistics to work from): experts%s",
                 lmp_prune_method_name(p->spec.method), l, lmp_linear_name(w), n_missed, E, missed);
    return LMP_OK;
}

void lmp_pexperts_restore(lmp_pexperts *x, lmp_model *m, int layer)
{
    for (int k = 0; k < 3 * x->n; k++) {
        if (x->W[k])
            lmp_model_set_expert_linear(m, layer, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3), &x->orig[k]);
        free(x->W[k]);
        x->W[k] = NULL;
    }
    x->n = 0;
}

void lmp_pexperts_free(lmp_pexperts *x)
{
    for (int k = 0; x->W && k < 3 * x->cap; k++)
        free(x->W[k]);
    free(x->W);
    free(x->pw);
    free(x->orig);
    memset(x, 0, sizeof *x);
}
