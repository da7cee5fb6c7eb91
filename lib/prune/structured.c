/*
 * Structured pruning plans: which attention heads, FFN channels or decoder layers
 * survive. The same number is removed from every block (every KV group for query heads),
 * so the smaller model has one consistent config.json that transformers loads.
 *
 * Importance is activation-weighted (Wanda's idea applied to whole input columns): for
 * the columns j of o_proj that belong to a head, or the column of down_proj of an FFN
 * channel, ||X_j||^2 * ||W[:, j]||^2 summed over the unit, with X the calibration inputs
 * of that linear. Blocks are planned in order; the removed parts of block i are zeroed
 * (o_proj / down_proj columns, which makes the block compute exactly what the smaller
 * block will) before block i runs on the hidden states, so block i+1 is scored on the
 * pruned model's activations. Layers are scored by block influence, 1 - the mean cosine
 * similarity of a block's input and output hidden states over calibration tokens (Men et
 * al. 2024, "ShortGPT"), on the unpruned model; the lowest are removed.
 * Not here: writing the smaller model (formats/sparse.c).
 */
#include "prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_kind_names[] = {"heads", "kv-heads", "ffn", "layers"};

const char *lmp_struct_kind_name(lmp_struct_kind k)
{
    return (unsigned)k < 4 ? g_kind_names[k] : "?";
}

int lmp_struct_kind_from_name(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, g_kind_names[i]) == 0)
            return i;
    return -1;
}

void lmp_struct_plan_free(lmp_struct_plan *p)
{
    if (!p)
        return;
    free(p->keep_layers);
    free(p->keep_heads);
    free(p->keep_kv);
    free(p->keep_ffn);
    free(p->score);
    memset(p, 0, sizeof *p);
}

int lmp_struct_count(const lmp_config *c, lmp_struct_kind k, double ratio, int *removed)
{
    *removed = 0;
    if (!(ratio > 0.0 && ratio < 1.0))
        return lmp_err(LMP_EINVAL, "prune: structured ratio %g is outside (0, 1)", ratio);
    int units, g = c->n_heads / c->n_kv_heads;
    const char *what;
    switch (k) {
    case LMP_STRUCT_HEADS: units = g; what = "query heads per KV group"; break;
    case LMP_STRUCT_KV_HEADS: units = c->n_kv_heads; what = "KV heads"; break;
    case LMP_STRUCT_FFN: units = c->intermediate_size; what = "FFN channels"; break;
    case LMP_STRUCT_LAYERS: units = c->n_layers; what = "layers"; break;
    default: return lmp_err(LMP_EINVAL, "prune: unknown structured kind %d", (int)k);
    }
    int r = (int)floor(ratio * units + 0.5);
    if (r <= 0)
        return lmp_err(LMP_EINVAL, "prune: ratio %g of %d %s removes nothing (the same number is removed from every "
                                   "%s; use a larger ratio)",
                       ratio, units, what, k == LMP_STRUCT_HEADS ? "KV group" : k == LMP_STRUCT_LAYERS ? "model" : "layer");
    if (r >= units) {
        if (k == LMP_STRUCT_HEADS)
            return lmp_err(LMP_EINVAL, "prune: ratio %g would remove every query head of each KV group (%d heads per "
                                       "group); use a smaller ratio or --structured kv-heads",
                           ratio, units);
        return lmp_err(LMP_EINVAL, "prune: ratio %g would remove all %d %s", ratio, units, what);
    }
    *removed = r;
    return LMP_OK;
}

int lmp_struct_check(const lmp_model *m, lmp_struct_kind kind)
{
    /* Mixture of experts: heads and KV heads are scored on o_proj's inputs and layers on
     * the blocks' inputs and outputs, which routing does not change; FFN channels would
     * be one plan per expert (each on its routed tokens) with a config.json that has one
     * moe_intermediate_size for all experts: not done */
    if (lmp_model_is_moe(m) && kind == LMP_STRUCT_FFN)
        return lmp_err(LMP_EUNSUPPORTED, "%s: --structured ffn on a mixture-of-experts model is not supported (the "
                       "experts' FFN channels would need a plan per expert on its routed tokens, and config.json "
                       "has one width for every expert); heads, kv-heads and layers are; nothing was written",
                       lmp_model_ckpt(m)->path);
    return LMP_OK;
}

typedef struct {
    double v;
    int i;
} sc;
static int cmp_sc(const void *a, const void *b)
{
    const sc *x = a, *y = b;
    if (x->v != y->v)
        return x->v < y->v ? -1 : 1;
    return x->i - y->i;
}
static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* keep[] = indices of s[0..n) without the k lowest, ascending. */
static void keep_highest(const double *s, int n, int k, int *keep)
{
    sc *t = malloc((size_t)n * sizeof *t);
    for (int i = 0; i < n; i++) {
        t[i].v = s[i];
        t[i].i = i;
    }
    qsort(t, (size_t)n, sizeof *t, cmp_sc);
    for (int i = k; i < n; i++)
        keep[i - k] = t[i].i;
    qsort(keep, (size_t)(n - k), sizeof(int), cmp_int);
    free(t);
}

/* ---------------------------------------------------------------- the rows -------- */

typedef struct {
    lmp_struct_plan *p;
    lmp_struct_kind kind;
    int k;                  /* units removed per layer */
    lmp_linear which;       /* o_proj (heads) or down_proj (FFN channels) */
    float *Wm;              /* the block's pruned copy of `which` */
    lmp_wmat nw;
    double cs;              /* layers: sum of cosines of the running block */
} st_ctx;

/* Layers: block influence, 1 - mean cos(x_in, x_out), on the unpruned model. */
static int layer_window(void *ctx, lmp_calib_block *b, int window, const float *in, const float *out)
{
    (void)window;
    st_ctx *c = ctx;
    const int64_t d = lmp_model_config(b->m)->hidden_size;
    if (window == 0)
        c->cs = 0;
    for (int t = 0; t < b->L; t++) {
        double ab = 0, aa = 0, bb = 0;
        for (int64_t j = 0; j < d; j++) {
            double x = in[t * d + j], y = out[t * d + j];
            ab += x * y;
            aa += x * x;
            bb += y * y;
        }
        c->cs += aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 1.0;
    }
    return LMP_OK;
}

/* The sum of cosines, gathered per window group across ranks by the driver. */
static double *layer_sums(void *ctx, lmp_calib_block *b, size_t *n)
{
    (void)b;
    *n = 1;
    return &((st_ctx *)ctx)->cs;
}

static int layer_end(void *ctx, lmp_calib_block *b)
{
    st_ctx *c = ctx;
    c->p->score[b->layer] = 1.0 - c->cs / ((double)b->N * b->L);
    return LMP_OK;
}

/* Heads, KV heads, FFN channels: score the units of block l from the sums of squares of
 * `which`'s input columns and its weights, zero the removed ones' columns; the driver
 * installs that copy and re-runs the block, so block l+1 is scored on the pruned model. */
static int unit_block(void *ctx, lmp_calib_block *b)
{
    st_ctx *c = ctx;
    lmp_struct_plan *p = c->p;
    const lmp_config *o = &p->out;
    const int l = b->layer, k = c->k;
    const int nh = p->in.n_heads, nkv = p->in.n_kv_heads, g = nh / nkv, hd = p->in.head_dim;
    const int64_t F = p->in.intermediate_size;
    const lmp_wmat orig = b->orig[c->which];
    const int64_t rows = orig.rows, cols = orig.cols;
    const double *xsq = b->st.xsq[lmp_linear_input(c->which)];
    float *Wm = c->Wm = malloc((size_t)(rows * cols) * sizeof(float));
    if (!Wm)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int64_t r = 0; r < rows; r++) /* dense, GGUF blocks or an intgroup payload */
        lmp_wmat_row_f32(&orig, r, Wm + r * cols);
    if (c->kind == LMP_STRUCT_FFN) {
        for (int64_t j = 0; j < cols; j++) {
            double w2 = 0;
            for (int64_t r = 0; r < rows; r++)
                w2 += (double)Wm[r * cols + j] * Wm[r * cols + j];
            p->score[(int64_t)l * F + j] = xsq[j] * w2;
        }
        int *keep = p->keep_ffn + (int64_t)l * o->intermediate_size;
        keep_highest(p->score + (int64_t)l * F, (int)F, k, keep);
        /* zero the removed channels' down_proj columns */
        uint8_t *kept = calloc((size_t)F, 1);
        if (!kept)
            return lmp_err(LMP_ENOMEM, "out of memory");
        for (int j = 0; j < o->intermediate_size; j++)
            kept[keep[j]] = 1;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t j = 0; j < cols; j++)
                if (!kept[j])
                    Wm[r * cols + j] = 0.0f;
        free(kept);
    } else {
        double hs[1024];
        for (int h = 0; h < nh; h++) {
            double s = 0;
            for (int64_t j = (int64_t)h * hd; j < (int64_t)(h + 1) * hd; j++) {
                double w2 = 0;
                for (int64_t r = 0; r < rows; r++)
                    w2 += (double)Wm[r * cols + j] * Wm[r * cols + j];
                s += xsq[j] * w2;
            }
            hs[h] = s;
        }
        uint8_t kept_h[1024] = {0};
        if (c->kind == LMP_STRUCT_HEADS) {
            for (int h = 0; h < nh; h++)
                p->score[(int64_t)l * nh + h] = hs[h];
            int *kh = p->keep_heads + (int64_t)l * o->n_heads;
            for (int grp = 0; grp < nkv; grp++) {
                int tmp[1024];
                keep_highest(hs + grp * g, g, k, tmp);
                for (int i = 0; i < g - k; i++)
                    kh[grp * (g - k) + i] = grp * g + tmp[i];
            }
            for (int i = 0; i < o->n_heads; i++)
                kept_h[kh[i]] = 1;
        } else {
            double gsum[1024];
            for (int grp = 0; grp < nkv; grp++) {
                gsum[grp] = 0;
                for (int i = 0; i < g; i++)
                    gsum[grp] += hs[grp * g + i];
                p->score[(int64_t)l * nkv + grp] = gsum[grp];
            }
            int *kk = p->keep_kv + (int64_t)l * o->n_kv_heads;
            keep_highest(gsum, nkv, k, kk);
            int *kh = p->keep_heads + (int64_t)l * o->n_heads;
            for (int i = 0; i < o->n_kv_heads; i++)
                for (int j = 0; j < g; j++) {
                    kh[i * g + j] = kk[i] * g + j;
                    kept_h[kk[i] * g + j] = 1;
                }
        }
        for (int64_t r = 0; r < rows; r++)
            for (int h = 0; h < nh; h++)
                if (!kept_h[h])
                    memset(Wm + r * cols + (int64_t)h * hd, 0, (size_t)hd * sizeof(float));
    }
    /* the pruned block produces the next block's inputs */
    c->nw = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = Wm,
                       .row_bytes = (size_t)cols * sizeof(float)};
    b->install_w[c->which] = &c->nw;
    return LMP_OK;
}

static void unit_cleanup(void *ctx, lmp_calib_block *b)
{
    (void)b;
    st_ctx *c = ctx;
    free(c->Wm);
    c->Wm = NULL;
}

/* heads and KV heads: the sums of squares of o_proj's input columns */
static const lmp_calib_method g_struct_heads_row = {
    .name = "structured",
    .stats = LMP_STAT_XSQ,
    .classes = 1u << LMP_IN_O,
    .block = unit_block,
    .cleanup = unit_cleanup,
};
/* FFN channels: those of down_proj's input */
static const lmp_calib_method g_struct_ffn_row = {
    .name = "structured",
    .stats = LMP_STAT_XSQ,
    .classes = 1u << LMP_IN_DOWN,
    .block = unit_block,
    .cleanup = unit_cleanup,
};
/* layers: no statistics; each window's input and output as the block runs */
static const lmp_calib_method g_struct_layers_row = {
    .name = "structured",
    .rerun_window = layer_window,
    .end = layer_end,
    .rerun_sums = layer_sums,
};

int lmp_struct_plan_make(lmp_model *m, const lmp_calib_data *cal, lmp_struct_kind kind, double ratio,
                         lmp_struct_plan *p)
{
    memset(p, 0, sizeof *p);
    int rc = lmp_struct_check(m, kind);
    if (rc)
        return rc;
    double t0 = lmp_time_s();
    const lmp_config *c = lmp_model_config(m);
    int k;
    rc = lmp_struct_count(c, kind, ratio, &k);
    if (rc)
        return rc;
    if (!cal)
        return lmp_err(LMP_EINVAL, "prune: structured pruning needs calibration text (--calib FILE)");
    if (c->n_heads > 1024)
        return lmp_err(LMP_EUNSUPPORTED, "prune: %d attention heads (at most 1024)", c->n_heads);
    p->kind = kind;
    p->ratio = ratio;
    p->in = *c;
    p->out = *c;
    const int nl = c->n_layers, nh = c->n_heads, nkv = c->n_kv_heads, g = nh / nkv;
    const int64_t F = c->intermediate_size;
    switch (kind) {
    case LMP_STRUCT_HEADS: p->out.n_heads = nkv * (g - k); break;
    case LMP_STRUCT_KV_HEADS: p->out.n_kv_heads = nkv - k; p->out.n_heads = (nkv - k) * g; break;
    case LMP_STRUCT_FFN: p->out.intermediate_size = (int)(F - k); break;
    case LMP_STRUCT_LAYERS: p->out.n_layers = nl - k; break;
    }
    const lmp_config *o = &p->out;
    p->keep_layers = malloc((size_t)o->n_layers * sizeof(int));
    p->keep_heads = malloc((size_t)nl * o->n_heads * sizeof(int));
    p->keep_kv = malloc((size_t)nl * o->n_kv_heads * sizeof(int));
    p->keep_ffn = malloc((size_t)nl * o->intermediate_size * sizeof(int));
    int n_score = kind == LMP_STRUCT_LAYERS ? nl : kind == LMP_STRUCT_FFN ? nl * (int)F
                                              : kind == LMP_STRUCT_HEADS ? nl * nh : nl * nkv;
    p->score = calloc((size_t)n_score, sizeof(double));
    if (!p->keep_layers || !p->keep_heads || !p->keep_kv || !p->keep_ffn || !p->score) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    /* defaults: everything kept */
    for (int l = 0; l < o->n_layers; l++)
        p->keep_layers[l] = l;
    for (int l = 0; l < nl; l++) {
        for (int h = 0; h < o->n_heads; h++)
            p->keep_heads[l * o->n_heads + h] = h;
        for (int h = 0; h < o->n_kv_heads; h++)
            p->keep_kv[l * o->n_kv_heads + h] = h;
        for (int j = 0; j < o->intermediate_size; j++)
            p->keep_ffn[(int64_t)l * o->intermediate_size + j] = j;
    }
    st_ctx sc = {p, kind, k, kind == LMP_STRUCT_FFN ? LMP_LIN_DOWN : LMP_LIN_O, NULL, {0}, 0};
    const lmp_calib_method *row = kind == LMP_STRUCT_LAYERS ? &g_struct_layers_row
                                  : kind == LMP_STRUCT_FFN  ? &g_struct_ffn_row
                                                            : &g_struct_heads_row;
    lmp_calib_opts co = {.progress = false};
    if ((rc = lmp_calib_run(m, cal, row, &sc, &co)))
        goto done;
    if (kind == LMP_STRUCT_LAYERS) {
        keep_highest(p->score, nl, k, p->keep_layers);
        /* qwen3_moe's dense layers (mlp_only_layers, decoder_sparse_step) by their new
         * indices: step 1 and the kept dense layers listed */
        if (c->n_experts > 0 && c->moe_sparse_step > 0) {
            p->out.moe_sparse_step = 1;
            p->out.n_mlp_only = 0;
            for (int i = 0; i < o->n_layers && rc == 0; i++)
                if (!lmp_config_layer_is_moe(c, p->keep_layers[i])) {
                    if (p->out.n_mlp_only == 64)
                        rc = lmp_err(LMP_EUNSUPPORTED, "prune: more than 64 dense layers kept (mlp_only_layers)");
                    else
                        p->out.mlp_only[p->out.n_mlp_only++] = i;
                }
        }
    }
done:
    p->params_in = lmp_config_n_params(&p->in);
    p->params_out = lmp_config_n_params(&p->out);
    p->seconds = lmp_time_s() - t0;
    p->peak_rss = lmp_peak_rss();
    if (rc)
        lmp_struct_plan_free(p);
    return rc;
}
