/*
 * The layer-by-layer pruning driver: the same calibration and block-by-block structure as
 * lib/quant's GPTQ pipeline (pipeline.c), whose public pieces it reuses (calibration
 * windows, lmp_gptq_hessian_add, lmp_qpipe_rel_error, lmp_linear_hf_prefix). For block i:
 * every sample goes through the block with a hook that accumulates one Hessian per
 * distinct linear input; the linears are pruned (lmp_prune_linear) and their f32 copies
 * installed; the block runs again on the hidden states in place, so block i+1 sees the
 * outputs of the PRUNED block i (as SparseGPT's llama_sequential does). The original
 * weights are restored before block i+1; memory holds one block plus the hidden states.
 * Not here: the algorithms (prune.c), file layouts (formats/sparse.c).
 */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PASS_DONE 1

enum { IN_ATTN = 0, IN_O, IN_MLP, IN_DOWN, IN_COUNT };

static int input_class(lmp_linear w)
{
    switch (w) {
    case LMP_LIN_Q: case LMP_LIN_K: case LMP_LIN_V: return IN_ATTN;
    case LMP_LIN_O: return IN_O;
    case LMP_LIN_GATE: case LMP_LIN_UP: return IN_MLP;
    default: return IN_DOWN;
    }
}
static const lmp_linear g_first[IN_COUNT] = {LMP_LIN_Q, LMP_LIN_O, LMP_LIN_GATE, LMP_LIN_DOWN};

void lmp_prune_default_params(lmp_prune_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_prune_default_spec(&p->spec);
    p->true_sequential = true;
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
    const lmp_config *c = lmp_model_config(m);
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
            if (!lmp_dtype_info(wm->dtype)->to_f32)
                return lmp_err(LMP_EUNSUPPORTED, "%s.weight: dtype %s cannot be converted to f32", name,
                               lmp_dtype_info(wm->dtype)->name);
            int rc = lmp_prune_spec_check(s, wm->cols, name);
            if (rc)
                return rc;
        }
    return LMP_OK;
}

typedef struct {
    double *H[IN_COUNT];
    int64_t ns[IN_COUNT];
    lmp_linear stop_at;
} hess_ctx;

static int hess_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    hess_ctx *h = user;
    int cls = input_class(which);
    if (which == g_first[cls] && h->H[cls]) {
        int rc = lmp_gptq_hessian_add(h->H[cls], in, X, n, &h->ns[cls]);
        if (rc)
            return rc;
    }
    return which == h->stop_at ? PASS_DONE : 0;
}

static int weight_f32(const lmp_wmat *w, const char *name, float **out)
{
    *out = malloc((size_t)(w->rows * w->cols) * sizeof(float));
    if (!*out)
        return lmp_err(LMP_ENOMEM, "out of memory converting %s.weight to f32", name);
    const lmp_dtype_traits *tr = lmp_dtype_info(w->dtype);
    for (int64_t r = 0; r < w->rows; r++)
        tr->to_f32((const uint8_t *)w->data + (size_t)r * w->row_bytes, *out + r * w->cols, w->cols);
    return LMP_OK;
}

int lmp_prune_run(lmp_model *m, const lmp_calib_data *cal, const lmp_prune_params *p, lmp_prune_result *res)
{
    memset(res, 0, sizeof *res);
    double t_start = lmp_time_s();
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    int rc = lmp_prune_check(m, &p->spec);
    if (rc)
        return rc;
    if (!cal && p->spec.method != LMP_PRUNE_MAGNITUDE)
        return lmp_err(LMP_EINVAL, "prune: %s needs calibration text (--calib FILE)",
                       lmp_prune_method_name(p->spec.method));
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
    lmp_wmat orig[LMP_LIN_COUNT];
    bool installed[LMP_LIN_COUNT] = {0};
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
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%.1f MiB)",
                         res->act_bytes / 1048576.0);
            goto done;
        }
        for (int s = 0; s < N; s++)
            if ((rc = lmp_model_embed(m, cal->tokens + (int64_t)s * L, L, states + (int64_t)s * L * d)))
                goto done;
    }
    int groups[IN_COUNT][IN_COUNT + 1], n_groups;
    if (p->true_sequential) {
        n_groups = IN_COUNT;
        for (int g = 0; g < IN_COUNT; g++) {
            groups[g][0] = g;
            groups[g][1] = -1;
        }
    } else {
        n_groups = 1;
        for (int k = 0; k < IN_COUNT; k++)
            groups[0][k] = k;
        groups[0][IN_COUNT] = -1;
    }

    for (int l = 0; l < nl; l++) {
        double tl = lmp_time_s();
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            orig[w] = *lmp_model_linear(m, l, (lmp_linear)w);
        char label[64];
        snprintf(label, sizeof label, "prune layer %d/%d", l + 1, nl);
        lmp_progress pg;
        lmp_progress_begin(&pg, label, cal ? (uint64_t)(n_groups + 1) * N : LMP_LIN_COUNT);
        if (!p->progress)
            pg.enabled = false;
        uint64_t done_n = 0;
        for (int g = 0; g < n_groups; g++) {
            memset(&hc, 0, sizeof hc);
            if (cal) {
                int last = -1;
                for (int k = 0; groups[g][k] >= 0; k++) {
                    int cls = groups[g][k];
                    int64_t cols = orig[g_first[cls]].cols;
                    hc.H[cls] = calloc((size_t)(cols * cols), sizeof(double));
                    if (!hc.H[cls]) {
                        rc = lmp_err(LMP_ENOMEM, "out of memory for a %lld x %lld Hessian", (long long)cols,
                                     (long long)cols);
                        goto layer_fail;
                    }
                    last = cls;
                }
                hc.stop_at = g_first[last];
                for (int s = 0; s < N; s++) {
                    memcpy(scratch, states + (int64_t)s * L * d, (size_t)L * d * sizeof(float));
                    rc = lmp_block_run(m, l, scratch, L, 0, NULL, hess_hook, &hc);
                    if (rc != 0 && rc != PASS_DONE)
                        goto layer_fail;
                    rc = 0;
                    lmp_progress_update(&pg, ++done_n);
                }
            }
            for (int w = 0; w < LMP_LIN_COUNT; w++) {
                int cls = input_class((lmp_linear)w);
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
                lmp_linear_hf_prefix(l, (lmp_linear)w, st->name, sizeof st->name);
                double t0 = lmp_time_s();
                float *W0 = NULL;
                if ((rc = weight_f32(&orig[w], st->name, &Wp[w])))
                    goto layer_fail;
                if (hc.H[cls] && (rc = weight_f32(&orig[w], st->name, &W0)))
                    goto layer_fail;
                mask[w] = malloc((size_t)(rows * cols));
                if (!mask[w]) {
                    free(W0);
                    rc = lmp_err(LMP_ENOMEM, "out of memory");
                    goto layer_fail;
                }
                rc = lmp_prune_linear(Wp[w], rows, cols, hc.H[cls], &p->spec, mask[w], &qt[w], &st->loss);
                if (rc) {
                    free(W0);
                    rc = lmp_err_prefix(rc, "%s.weight", st->name);
                    goto layer_fail;
                }
                if (p->spec.qbits) /* the installed copy is what the quantized tensor holds */
                    lmp_qtensor_dequant(&qt[w], Wp[w]);
                snprintf(qt[w].name, sizeof qt[w].name, "%s", st->name);
                st->seconds = lmp_time_s() - t0;
                for (int64_t i = 0; i < rows * cols; i++)
                    st->zeros += !mask[w][i];
                if (W0) {
                    st->err = lmp_qpipe_rel_error(W0, Wp[w], hc.H[cls], rows, cols);
                    free(W0);
                }
                res->params += (uint64_t)(rows * cols);
                res->zeros += (uint64_t)st->zeros;
                if (cal) {
                    lmp_wmat nw = {.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = Wp[w], .row_bytes = (size_t)cols * sizeof(float)};
                    if ((rc = lmp_model_set_linear(m, l, (lmp_linear)w, &nw)))
                        goto layer_fail;
                    installed[w] = true;
                } else {
                    lmp_progress_update(&pg, ++done_n);
                }
            }
            for (int k = 0; k < IN_COUNT; k++) {
                free(hc.H[k]);
                hc.H[k] = NULL;
            }
        }
        for (int s = 0; s < N; s++) {
            if ((rc = lmp_block_run(m, l, states + (int64_t)s * L * d, L, 0, NULL, NULL, NULL)))
                goto layer_fail;
            lmp_progress_update(&pg, ++done_n);
        }
        lmp_progress_end(&pg);
        if (p->sink && (rc = p->sink(p->sink_ctx, l, (const float *const *)Wp, (const uint8_t *const *)mask,
                                     p->spec.qbits ? qt : NULL, &res->lin[l * LMP_LIN_COUNT])))
            goto layer_fail;
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
        for (int k = 0; k < IN_COUNT; k++) {
            free(hc.H[k]);
            hc.H[k] = NULL;
        }
        if (rc)
            goto done;
    }
done:
    free(states);
    free(scratch);
    res->sparsity = res->params ? (double)res->zeros / (double)res->params : 0;
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
