/*
 * Importance matrix for the GGUF quantizers, as llama.cpp's llama-imatrix computes it
 * (tools/imatrix/imatrix.cpp: for every matrix multiplication with a weight, the sum of
 * x^2 per input column over all tokens, divided by the number of tokens): calibration
 * windows run through every block of the float model in order, a linear-input hook
 * accumulating in double. q/k/v read the same normed input, as do gate/up, so they share
 * one vector (llama.cpp stores identical copies). The output matrix is not collected
 * (llama-imatrix skips it unless --process-output). Not here: the block quantizers that
 * use the weights (kquants.c), the GGUF provenance keys (gguf_quant.c).
 */
#include "pipeline.h"
#include "quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

typedef struct {
    double *acc;              /* [n_layers][sum of class widths] */
    int64_t off[IN_COUNT];    /* offset of each class within a layer's run */
    int64_t per_layer;
} im_ctx;

static int im_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    im_ctx *c = user;
    int cls = input_class(which);
    if (which != g_first[cls])
        return 0;
    double *a = c->acc + (int64_t)layer * c->per_layer + c->off[cls];
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < in; j++)
            a[j] += (double)X[t * in + j] * X[t * in + j];
    return 0;
}

void lmp_imatrix_free(lmp_imatrix *im)
{
    if (!im)
        return;
    free(im->v);
    memset(im, 0, sizeof *im);
}

static int64_t class_width(const lmp_config *c, int cls)
{
    switch (cls) {
    case IN_ATTN: case IN_MLP: return c->hidden_size;
    case IN_O: return (int64_t)c->n_heads * c->head_dim;
    default: return c->intermediate_size;
    }
}

int lmp_imatrix_collect(const lmp_model *m, const lmp_calib_data *cal, bool progress, lmp_imatrix *out)
{
    memset(out, 0, sizeof *out);
    if (!cal || cal->n_samples < 1 || cal->seq_len < 1)
        return lmp_err(LMP_EINVAL, "imatrix: no calibration windows");
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers, L = cal->seq_len;
    const int64_t d = c->hidden_size;
    im_ctx ic;
    memset(&ic, 0, sizeof ic);
    for (int k = 0; k < IN_COUNT; k++) {
        ic.off[k] = ic.per_layer;
        ic.per_layer += class_width(c, k);
    }
    ic.acc = calloc((size_t)(nl * ic.per_layer), sizeof(double));
    float *x = malloc(sizeof(float) * (size_t)(L * d));
    int rc = LMP_OK;
    if (!ic.acc || !x) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (imatrix)");
        goto done;
    }
    lmp_progress pg;
    lmp_progress_begin(&pg, "imatrix", (uint64_t)cal->n_samples);
    if (!progress)
        pg.enabled = false;
    for (int s = 0; s < cal->n_samples && !rc; s++) {
        rc = lmp_model_embed(m, cal->tokens + (int64_t)s * L, L, x);
        for (int l = 0; l < nl && !rc; l++)
            rc = lmp_block_run(m, l, x, L, 0, NULL, im_hook, &ic);
        lmp_progress_update(&pg, (uint64_t)s + 1);
    }
    lmp_progress_end(&pg);
    if (rc)
        goto done;
    out->v = malloc(sizeof(float) * (size_t)(nl * ic.per_layer));
    if (!out->v) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (imatrix)");
        goto done;
    }
    const double ntok = (double)cal->n_samples * L;
    for (int64_t i = 0; i < nl * ic.per_layer; i++)
        out->v[i] = (float)(ic.acc[i] / ntok);
    out->n_layers = nl;
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        out->cols[k] = lmp_model_linear(m, 0, (lmp_linear)k)->cols;
    out->n_chunks = cal->n_samples;
    out->n_tokens = (int64_t)cal->n_samples * L;
    out->n_entries = nl * LMP_LIN_COUNT;
done:
    free(ic.acc);
    free(x);
    return rc;
}

int lmp_imatrix_compute(const char *model, const char *calib_path, const lmp_calib_params *cp, bool progress,
                        lmp_imatrix *out)
{
    memset(out, 0, sizeof *out);
    lmp_model *m = NULL;
    lmp_calib_data cal = {0};
    int rc = lmp_model_load(&m, model);
    if (rc)
        return rc;
    lmp_calib_params p = *cp;
    if (p.seq_len == 0) {
        int ctx = lmp_model_config(m)->max_pos > 0 ? lmp_model_config(m)->max_pos : 512;
        p.seq_len = ctx < 512 ? ctx : 512;
    }
    if ((rc = lmp_calib_load(m, calib_path, &p, &cal)) == 0)
        rc = lmp_imatrix_collect(m, &cal, progress, out);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    return rc;
}

const float *lmp_imatrix_get(const lmp_imatrix *im, int layer, lmp_linear which)
{
    if (!im || !im->v || layer < 0 || layer >= im->n_layers || (unsigned)which >= LMP_LIN_COUNT)
        return NULL;
    int64_t per = 0, off = 0;
    int cls = input_class(which);
    for (int k = 0; k < IN_COUNT; k++) {
        if (k == cls)
            off = per;
        per += im->cols[g_first[k]];
    }
    return im->v + (int64_t)layer * per + off;
}

const float *lmp_imatrix_weights(void *ctx, const char *gguf_name, int64_t cols)
{
    static const char *names[LMP_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
    const lmp_imatrix *im = ctx;
    int layer, n = 0;
    char what[32];
    if (!im || sscanf(gguf_name, "blk.%d.%31[a-z_].weight%n", &layer, what, &n) != 2 || gguf_name[n] != 0)
        return NULL;
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (strcmp(what, names[k]) == 0)
            return im->cols[k] == cols ? lmp_imatrix_get(im, layer, (lmp_linear)k) : NULL;
    return NULL;
}
