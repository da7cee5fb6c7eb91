/*
 * Per-expert statistics of mixture-of-experts layers for the calibration driver
 * (calib.h, LMP_STAT_EXPERT_HESSIAN): the block runner calls the statistics hook once per
 * reached expert with the rows of the tokens routed to it (lmp_hook_expert), for the
 * gate/up input and for the down input; here those rows go into that expert's own
 * Hessian through the row's hessian_add (GPTQ's running 2/n X^T X), as GPTQModel and
 * llm-compressor calibrate Mixtral / Qwen3-MoE experts: an expert sees only its tokens.
 * An expert no calibration token reached keeps a zero Hessian with ens 0; the rows decide
 * what to do with it (lib/quant/qexperts.c, lib/prune/pexperts.c).
 *
 * Memory: E x cols^2 doubles per gathered class (Mixtral-8x7B: 8 x 4096^2 x 8 B = 1 GiB
 * for gate/up, 8 x 14336^2 x 8 B = 13 GiB for down; Qwen3-30B-A3B: 4 GiB and 0.6 GiB).
 */
#include "calib.h"

#include <stdlib.h>
#include <string.h>

int lmp_calib_expert_alloc(lmp_calib_stats *st, const struct lmp_calib_method *row, const lmp_model *m,
                           int layer, const int *group, unsigned classes)
{
    const int E = lmp_model_n_experts(m, layer);
    if (!(row->stats & LMP_STAT_EXPERT_HESSIAN) || E <= 0)
        return LMP_OK;
    const lmp_config *c = lmp_model_config(m);
    st->e_n = E;
    for (int k = 0; group[k] >= 0; k++) {
        const int cls = group[k];
        if (cls != LMP_IN_MLP && cls != LMP_IN_DOWN)
            continue;
        if (classes && !(classes & (1u << cls)))
            continue;
        const int64_t cols = cls == LMP_IN_MLP ? c->hidden_size : c->moe_ff;
        st->eH[cls] = calloc((size_t)E, sizeof(double *));
        st->ens[cls] = calloc((size_t)E, sizeof(int64_t));
        if (!st->eH[cls] || !st->ens[cls])
            return lmp_err(LMP_ENOMEM, "out of memory (expert Hessians)");
        for (int e = 0; e < E; e++)
            if (!(st->eH[cls][e] = calloc((size_t)(cols * cols), sizeof(double))))
                return lmp_err(LMP_ENOMEM, "out of memory for %d expert Hessians of %lld x %lld (%.1f MiB)", E,
                               (long long)cols, (long long)cols, (double)E * (double)cols * (double)cols * 8 / 1048576.0);
    }
    return LMP_OK;
}

int lmp_calib_expert_add(lmp_calib_stats *st, const struct lmp_calib_method *row, int ex, lmp_linear which,
                         const float *X, int64_t n, int64_t in)
{
    const int cls = which == LMP_LIN_GATE ? LMP_IN_MLP : LMP_IN_DOWN;
    if (!st->eH[cls] || ex < 0 || ex >= st->e_n)
        return LMP_OK;
    return row->hessian_add(st->eH[cls][ex], in, X, n, &st->ens[cls][ex]);
}

void lmp_calib_expert_free(lmp_calib_stats *st)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        for (int e = 0; st->eH[k] && e < st->e_n; e++)
            free(st->eH[k][e]);
        free(st->eH[k]);
        free(st->ens[k]);
        st->eH[k] = NULL;
        st->ens[k] = NULL;
    }
    st->e_n = 0;
}

const char *lmp_expert_hf_prefix(const lmp_config *c, int layer, int expert, lmp_linear which, char *buf, size_t n)
{
    const int p = which == LMP_LIN_GATE ? 0 : which == LMP_LIN_UP ? 1 : 2;
    if (strcmp(c->model_type, "mixtral") == 0) {
        static const char *const w[3] = {"w1", "w3", "w2"};
        snprintf(buf, n, "model.layers.%d.block_sparse_moe.experts.%d.%s", layer, expert, w[p]);
    } else if (strcmp(c->model_type, "granitemoe") == 0) {
        /* rows of the fused 3-D parameters: [gate; up] of input_linear, output_linear */
        static const char *const w[3] = {"input_linear.gate", "input_linear.up", "output_linear"};
        snprintf(buf, n, "model.layers.%d.block_sparse_moe.%s[%d]", layer, w[p], expert);
    } else {
        static const char *const w[3] = {"gate_proj", "up_proj", "down_proj"};
        snprintf(buf, n, "model.layers.%d.mlp.experts.%d.%s", layer, expert, w[p]);
    }
    return buf;
}
