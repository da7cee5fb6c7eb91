/*
 * Model assembly: opens a checkpoint through lib/io, finds every tensor a Llama-family
 * decoder needs by its HF name, checks shape and dtype against the config, and keeps
 * borrowed views of the weights (the file mapping is the model; nothing is expanded to
 * f32 except the small norm and bias vectors). Also the RoPE frequency table (plain,
 * linear and Llama 3 scaling) and the embedding lookup. Not here: the forward pass
 * (forward.c), sampling (sample.c), perplexity (ppl.c).
 */
#include "infer.h"
#include "infer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_linear_names[LMP_LIN_COUNT] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj",
};

const char *lmp_linear_name(lmp_linear which)
{
    return (unsigned)which < LMP_LIN_COUNT ? g_linear_names[which] : "?";
}

/* HF module path of each linear inside model.layers.N. */
static const char *linear_module(lmp_linear which)
{
    return which <= LMP_LIN_O ? "self_attn" : "mlp";
}

/* ---------------------------------------------------------------- validation ----- */

static int check_shape(const lmp_tensor *t, const char *name, int ndim, int64_t d0, int64_t d1)
{
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (ok)
        return 0;
    char got[64];
    lmp_shape_str(t, got, sizeof got);
    if (ndim == 1)
        return lmp_err(LMP_EFORMAT,
                       "tensor %s has shape %s but the model's config implies [%lld]", name,
                       got, (long long)d0);
    return lmp_err(LMP_EFORMAT,
                   "tensor %s has shape %s but the model's config implies [%lld, %lld]", name,
                   got, (long long)d0, (long long)d1);
}

/* The tensor's bytes must hold rows x cols of its dtype (lib/io checks the span; this
 * catches a block type whose row length is not a multiple of the block). */
static int check_rows(const lmp_tensor *t, const char *name, int64_t rows, int64_t cols,
                      size_t *row_bytes)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    if (!tr || cols % tr->block_size != 0)
        return lmp_err(LMP_EUNSUPPORTED,
                       "tensor %s: rows of %lld elements cannot be stored as %s (block of %d)",
                       name, (long long)cols, tr ? tr->name : "?", tr ? tr->block_size : 0);
    size_t rb = lmp_dtype_row_bytes(t->dtype, cols);
    if (rb == 0 || t->nbytes < rb * (size_t)rows || !t->data)
        return lmp_err(LMP_EFORMAT, "tensor %s: %zu bytes of data, expected %zu", name,
                       t->nbytes, rb * (size_t)rows);
    *row_bytes = rb;
    return 0;
}

static const lmp_tensor *find(const lmp_model *m, const char *name)
{
    return lmp_ckpt_find_hf(&m->ckpt, name);
}

static int need(const lmp_model *m, const char *name, const lmp_tensor **out)
{
    *out = find(m, name);
    if (!*out)
        return lmp_err(LMP_ENOTFOUND, "%s: tensor %s is missing (config: %s, %d layers)",
                       m->ckpt.path, name, m->cfg.model_type, m->cfg.n_layers);
    return 0;
}

/* Room for one more pointer in a growable array of the model (*arr holds n of *cap). */
static int grow_ptrs(void **arr, int n, int *cap)
{
    if (n < *cap)
        return 0;
    const int c = *cap ? 2 * *cap : 64;
    void *p = realloc(*arr, (size_t)c * sizeof(void *));
    if (!p)
        return lmp_err(LMP_ENOMEM, "out of memory");
    *arr = p;
    *cap = c;
    return 0;
}

/* q4_0 and iq4_nl weights go into the interleaved layout of the decoding kernel when
 * the kernels in use decode it faster (kernels.h: lmp_wmat_repack_wanted): the same bytes
 * in another order, in memory the model owns. A file-mapped original's pages are dropped from the
 * resident set afterwards (the mapping stays; the tied embeddings read rows through it),
 * so the model's footprint stays one copy of the weights. */
static int repack(lmp_model *m, const lmp_tensor *t, lmp_wmat *w, bool release)
{
    void *buf, *arr = m->repacked;
    int rc = grow_ptrs(&arr, m->n_repacked, &m->cap_repacked);
    m->repacked = arr;
    if (rc || (rc = lmp_wmat_repack(w, &buf)))
        return rc;
    m->repacked[m->n_repacked++] = buf;
    if (release && !t->owned)
        lmp_mmap_release(t->data, t->nbytes);
    return 0;
}

/* A weight matrix used by lmp_gemm: checked, then viewed in place (or repacked). */
static int load_wmat(lmp_model *m, const char *name, int64_t rows, int64_t cols, lmp_wmat *w)
{
    const lmp_tensor *t;
    int rc = need(m, name, &t);
    if (rc)
        return rc;
    if ((rc = check_shape(t, name, 2, rows, cols)))
        return rc;
    if (!lmp_gemm_supports(t->dtype))
        return lmp_err(LMP_EUNSUPPORTED, "tensor %s: dtype %s has no matrix kernel", name,
                       lmp_dtype_info(t->dtype)->name);
    size_t rb;
    if ((rc = check_rows(t, name, rows, cols, &rb)))
        return rc;
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->row_bytes = rb;
    w->layout = LMP_WL_ROWS;
    return lmp_wmat_repack_wanted(w) ? repack(m, t, w, true) : 0;
}

/* Rows [row0, row0 + rows) of a fused weight of total_rows (phi3 qkv_proj, gate_up_proj) as
 * a linear of its own: a view into the same bytes (rows are contiguous in every dtype,
 * block formats included). */
static int load_wmat_rows(lmp_model *m, const char *name, int64_t row0, int64_t rows,
                          int64_t total_rows, int64_t cols, lmp_wmat *w)
{
    const lmp_tensor *t;
    int rc = need(m, name, &t);
    if (rc)
        return rc;
    if ((rc = check_shape(t, name, 2, total_rows, cols)))
        return rc;
    if (!lmp_gemm_supports(t->dtype))
        return lmp_err(LMP_EUNSUPPORTED, "tensor %s: dtype %s has no matrix kernel", name,
                       lmp_dtype_info(t->dtype)->name);
    size_t rb;
    if ((rc = check_rows(t, name, total_rows, cols, &rb)))
        return rc;
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    w->data = (const uint8_t *)t->data + (size_t)row0 * rb;
    w->row_bytes = rb;
    w->layout = LMP_WL_ROWS;
    return lmp_wmat_repack_wanted(w) ? repack(m, t, w, false) : 0;
}

int lmp_model_wmat_view(lmp_model *m, const lmp_tensor *t, const char *name, int64_t row0,
                        int64_t rows, int64_t cols, lmp_wmat *w)
{
    if (!lmp_gemm_supports(t->dtype))
        return lmp_err(LMP_EUNSUPPORTED, "tensor %s: dtype %s has no matrix kernel", name,
                       lmp_dtype_info(t->dtype)->name);
    size_t rb;
    int rc = check_rows(t, name, row0 + rows, cols, &rb);
    if (rc)
        return rc;
    w->dtype = t->dtype;
    w->rows = rows;
    w->cols = cols;
    w->data = (const uint8_t *)t->data + (size_t)row0 * rb;
    w->row_bytes = rb;
    w->layout = LMP_WL_ROWS;
    w->q = NULL;
    if (!lmp_wmat_repack_wanted(w))
        return 0;
    /* as repack() does, but only this view's pages are dropped from the resident set */
    void *buf, *arr = m->repacked;
    const void *orig = w->data;
    rc = grow_ptrs(&arr, m->n_repacked, &m->cap_repacked);
    m->repacked = arr;
    if (rc || (rc = lmp_wmat_repack(w, &buf)))
        return rc;
    m->repacked[m->n_repacked++] = buf;
    if (!t->owned)
        lmp_mmap_release(orig, (size_t)rows * rb);
    return 0;
}

/* A small vector (norm weight, bias) converted to an owned f32 copy. */
static int load_vec(lmp_model *m, const char *name, int64_t n, float **out)
{
    const lmp_tensor *t;
    int rc = need(m, name, &t);
    if (rc)
        return rc;
    if ((rc = check_shape(t, name, 1, n, 0)))
        return rc;
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    size_t rb;
    if (!tr->to_f32)
        return lmp_err(LMP_EUNSUPPORTED, "tensor %s: dtype %s cannot be converted to f32",
                       name, tr->name);
    if ((rc = check_rows(t, name, 1, n, &rb)))
        return rc;
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v)
        return lmp_err(LMP_ENOMEM, "out of memory");
    tr->to_f32(t->data, v, n);
    *out = v;
    return 0;
}

/* A norm weight as the engine applies it: (1 + w) where the checkpoint stores w (gemma HF
 * folders; computed in f32 as transformers' Gemma RMSNorm does). */
static int load_norm(lmp_model *m, const char *name, int64_t n, float **out)
{
    int rc = load_vec(m, name, n, out);
    if (!rc && m->cfg.norm_plus1)
        for (int64_t i = 0; i < n; i++)
            (*out)[i] = 1.0f + (*out)[i];
    return rc;
}

/* ---------------------------------------------------------------- RoPE ------------ */

/* inv_freq[i] = theta^(-2i/d) for the pair i of the d = rope_dim rotated dims, with the
 * scaling `type` (NONE for gemma3's local layers). Computed in double and rounded to
 * f32, as transformers' f32 table is (see modeling_rope_utils._compute_llama3_parameters
 * for the Llama 3 rule, _compute_longrope_parameters for longrope: inv_freq / ext[i]). */
static float *rope_table(const lmp_config *c, double theta, lmp_rope_scaling type, const float *ext)
{
    const int dim = c->rope_dim > 0 ? c->rope_dim : c->head_dim, half = dim / 2;
    float *t = malloc(sizeof(float) * (size_t)(half > 0 ? half : 1));
    if (!t)
        return NULL;
    for (int i = 0; i < half; i++) {
        /* transformers: 1 / base ** (arange(0, d, 2).float() / d), in f32 */
        float expo = (float)(2 * i) / (float)dim;
        double f = (double)(float)(1.0 / pow(theta, (double)expo));
        if (type == LMP_ROPE_LINEAR && c->rope_factor > 0) {
            f /= c->rope_factor;
        } else if ((type == LMP_ROPE_LONGROPE || type == LMP_ROPE_FREQS) && ext) {
            f = 1.0 / ((double)ext[i] * pow(theta, (double)expo));
        } else if (type == LMP_ROPE_LLAMA3) {
            double factor = c->rope_factor > 0 ? c->rope_factor : 8.0;
            double lo = c->rope_low_freq_factor > 0 ? c->rope_low_freq_factor : 1.0;
            double hi = c->rope_high_freq_factor > 0 ? c->rope_high_freq_factor : 4.0;
            double old = c->rope_orig_max_pos > 0 ? c->rope_orig_max_pos : 8192;
            double lo_wavelen = old / lo, hi_wavelen = old / hi;
            double wavelen = 2.0 * M_PI / f;
            if (wavelen > lo_wavelen) {
                f = f / factor;
            } else if (wavelen >= hi_wavelen) {
                double smooth = (old / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        t[i] = (float)f;
    }
    return t;
}

static int rope_init(lmp_model *m)
{
    const lmp_config *c = &m->cfg;
    double theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
    m->rope_dim = c->rope_dim > 0 && c->rope_dim <= c->head_dim ? c->rope_dim : c->head_dim;
    m->rope_mscale = 1.0f;
    const bool lr = c->rope_type == LMP_ROPE_LONGROPE;
    if (lr && c->n_rope_factors != m->rope_dim / 2)
        return lmp_err(LMP_EFORMAT, "%s: longrope has %d factors for %d rotated pairs", m->ckpt.path,
                       c->n_rope_factors, m->rope_dim / 2);
    if (c->rope_type == LMP_ROPE_FREQS && c->n_rope_factors != m->rope_dim / 2)
        return lmp_err(LMP_EFORMAT, "%s: rope_freqs has %d factors for %d rotated pairs", m->ckpt.path,
                       c->n_rope_factors, m->rope_dim / 2);
    m->inv_freq = rope_table(c, theta, c->rope_type,
                             lr || c->rope_type == LMP_ROPE_FREQS ? c->rope_short : NULL);
    if (!m->inv_freq)
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (lr) {
        if (!(m->inv_freq_long = rope_table(c, theta, c->rope_type, c->rope_long)))
            return lmp_err(LMP_ENOMEM, "out of memory");
        /* attention factor: sqrt(1 + ln(max / orig) / ln(orig)) unless given */
        double orig = c->rope_orig_max_pos > 0 ? c->rope_orig_max_pos : c->max_pos;
        double factor = (double)c->max_pos / orig;
        m->rope_mscale = c->rope_attn_factor > 0 ? c->rope_attn_factor
                         : factor <= 1.0    ? 1.0f
                                            : (float)sqrt(1.0 + log(factor) / log(orig));
    }
    if (c->rope_local_theta > 0 &&
        !(m->inv_freq_local = rope_table(c, c->rope_local_theta, LMP_ROPE_NONE, NULL)))
        return lmp_err(LMP_ENOMEM, "out of memory");
    /* embeddings and the attention scale */
    m->embed_scale = c->embed_sqrt ? sqrtf((float)c->hidden_size)
                     : c->embed_multiplier > 0 ? c->embed_multiplier
                                               : 1.0f;
    m->attn_scale = c->query_pre_attn_scalar > 0 ? (float)(1.0 / sqrt((double)c->query_pre_attn_scalar))
                    : c->attn_multiplier > 0    ? c->attn_multiplier
                                                : 1.0f / sqrtf((float)c->head_dim);
    return 0;
}

/* ---------------------------------------------------------------- load ------------ */

static int assemble(lmp_model *m)
{
    const lmp_config *c = &m->cfg;
    char name[LMP_MAX_NAME];
    int rc;

    if (c->hidden_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0 || c->n_kv_heads <= 0 ||
        c->head_dim <= 0 || c->intermediate_size <= 0 || c->n_heads % c->n_kv_heads != 0 ||
        c->head_dim % 2 != 0)
        return lmp_err(LMP_EFORMAT,
                       "%s: inconsistent config (hidden %d, layers %d, heads %d/%d, head_dim %d, "
                       "ffn %d)",
                       m->ckpt.path, c->hidden_size, c->n_layers, c->n_heads, c->n_kv_heads,
                       c->head_dim, c->intermediate_size);
    const int64_t d = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim,
                  kvd = (int64_t)c->n_kv_heads * c->head_dim, ff = c->intermediate_size;

    /* embeddings: converted row by row at lookup */
    const lmp_tensor *emb;
    if ((rc = need(m, "model.embed_tokens.weight", &emb)))
        return rc;
    int64_t vocab = c->vocab_size > 0 ? c->vocab_size : emb->shape[0];
    if ((rc = check_shape(emb, "model.embed_tokens.weight", 2, vocab, d)))
        return rc;
    if (!lmp_dtype_info(emb->dtype)->to_f32)
        return lmp_err(LMP_EUNSUPPORTED,
                       "tensor model.embed_tokens.weight: dtype %s cannot be converted to f32",
                       lmp_dtype_info(emb->dtype)->name);
    if ((rc = check_rows(emb, "model.embed_tokens.weight", vocab, d, &m->embed_row_bytes)))
        return rc;
    m->embed = emb;
    m->n_vocab = (int)vocab;

    m->layers = calloc((size_t)c->n_layers, sizeof *m->layers);
    if (!m->layers)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int l = 0; l < c->n_layers; l++) {
        lmp_layer *L = &m->layers[l];
        /* norms by layout: llama pre-norms; gemma2/3 pre and post; olmo2 post only */
        if (c->norms != LMP_NORM_POST) {
            snprintf(name, sizeof name, "model.layers.%d.input_layernorm.weight", l);
            if ((rc = load_norm(m, name, d, &L->attn_norm)))
                return rc;
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                     c->norms == LMP_NORM_SANDWICH ? "pre_feedforward_layernorm"
                                                   : "post_attention_layernorm");
            if ((rc = load_norm(m, name, d, &L->ffn_norm)))
                return rc;
        }
        if (c->norms != LMP_NORM_PRE) {
            snprintf(name, sizeof name, "model.layers.%d.post_attention_layernorm.weight", l);
            if ((rc = load_norm(m, name, d, &L->post_attn_norm)))
                return rc;
            snprintf(name, sizeof name, "model.layers.%d.post_feedforward_layernorm.weight", l);
            if ((rc = load_norm(m, name, d, &L->post_ffn_norm)))
                return rc;
        }
        if (c->qk_norm != LMP_QKNORM_NONE) {
            const bool head = c->qk_norm == LMP_QKNORM_HEAD;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.q_norm.weight", l);
            if ((rc = load_norm(m, name, head ? c->head_dim : qd, &L->q_norm)))
                return rc;
            snprintf(name, sizeof name, "model.layers.%d.self_attn.k_norm.weight", l);
            if ((rc = load_norm(m, name, head ? c->head_dim : kvd, &L->k_norm)))
                return rc;
        }
        const bool moe = lmp_config_layer_is_moe(c, l);
        if (moe && (rc = lmp_moe_load(m, l, &L->moe)))
            return rc;
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            int64_t rows, cols, row0 = 0, fused_rows = 0;
            bool bias;
            if (moe && w >= LMP_LIN_GATE)
                break; /* the experts replace the dense FFN (moe.c) */
            const char *fused = NULL;
            switch (w) {
            case LMP_LIN_Q: rows = qd, cols = d, bias = c->attn_bias; break;
            case LMP_LIN_K:
            case LMP_LIN_V: rows = kvd, cols = d, bias = c->attn_bias; break;
            case LMP_LIN_O: rows = d, cols = qd, bias = c->o_bias; break;
            case LMP_LIN_GATE:
            case LMP_LIN_UP: rows = ff, cols = d, bias = c->mlp_bias; break;
            default: rows = d, cols = ff, bias = c->mlp_bias; break;
            }
            if (c->fused_qkv && w <= LMP_LIN_V) {
                fused = "self_attn.qkv_proj";
                row0 = w == LMP_LIN_Q ? 0 : w == LMP_LIN_K ? qd : qd + kvd;
                fused_rows = qd + 2 * kvd;
            } else if (c->fused_gate_up && (w == LMP_LIN_GATE || w == LMP_LIN_UP)) {
                fused = "mlp.gate_up_proj";
                row0 = w == LMP_LIN_GATE ? 0 : ff;
                fused_rows = 2 * ff;
            }
            char fname[LMP_MAX_NAME];
            if (fused)
                snprintf(fname, sizeof fname, "model.layers.%d.%s.weight", l, fused);
            snprintf(name, sizeof name, "model.layers.%d.%s.%s.weight", l, linear_module(w),
                     g_linear_names[w]);
            if (fused && (find(m, fname) || !m->hooks || !m->hooks->missing_linear)) {
                /* a view of the fused tensor's rows (biases: phi3 has none) */
                if ((rc = load_wmat_rows(m, fname, row0, rows, fused_rows, cols, &L->w[w])))
                    return rc;
            } else if (!find(m, name) && m->hooks && m->hooks->missing_linear) {
                /* a quantized checkpoint: the caller's hook installs the weight */
                char prefix[LMP_MAX_NAME];
                snprintf(prefix, sizeof prefix, "model.layers.%d.%s.%s", l, linear_module(w),
                         g_linear_names[w]);
                memset(&L->w[w], 0, sizeof L->w[w]);
                L->w[w].rows = rows;
                L->w[w].cols = cols;
                rc = m->hooks->missing_linear(m->hooks->user, m, l, (lmp_linear)w, prefix);
                if (rc < 0)
                    return rc;
                if (!rc && !L->w[w].q && !L->w[w].data)
                    return lmp_err(LMP_EINVAL, "%s: the loader hook installed no weight for %s",
                                   m->ckpt.path, prefix);
                if (rc && (rc = load_wmat(m, name, rows, cols, &L->w[w])))
                    return rc;
            } else if ((rc = load_wmat(m, name, rows, cols, &L->w[w]))) {
                return rc;
            }
            if (bias) {
                snprintf(name, sizeof name, "model.layers.%d.%s.%s.bias", l, linear_module(w),
                         g_linear_names[w]);
                if ((rc = load_vec(m, name, rows, &L->bias[w])))
                    return rc;
            }
        }
    }
    if ((rc = load_norm(m, "model.norm.weight", d, &m->final_norm)))
        return rc;

    /* output matrix: lm_head, or the embeddings when tied (GGUF omits `output` then) */
    const lmp_tensor *head = find(m, "lm_head.weight");
    if (head && !c->tie_embeddings) {
        rc = load_wmat(m, "lm_head.weight", vocab, d, &m->output);
    } else if (c->tie_embeddings || m->ckpt.kind == LMP_CKPT_GGUF) {
        rc = load_wmat(m, "model.embed_tokens.weight", vocab, d, &m->output);
        if (rc)
            rc = lmp_err_prefix(rc, "tied output matrix");
    } else {
        rc = lmp_err(LMP_ENOTFOUND,
                     "%s: tensor lm_head.weight is missing and tie_word_embeddings is false",
                     m->ckpt.path);
    }
    if (rc)
        return rc;
    return rope_init(m);
}

/* tokenizer.json next to the weights, or the GGUF vocabulary; none is not an error
 * (token ids can still be evaluated). */
static int load_tokenizer(lmp_model *m)
{
    int rc = 0;
    if (m->ckpt.kind == LMP_CKPT_GGUF) {
        if (lmp_gguf_find_kv(&m->ckpt.gguf, "tokenizer.ggml.model"))
            rc = lmp_tokenizer_from_gguf(&m->tok, &m->ckpt.gguf);
    } else if (m->ckpt.tokenizer_path) {
        rc = lmp_tokenizer_load(&m->tok, m->ckpt.dir ? m->ckpt.dir : m->ckpt.tokenizer_path);
    }
    if (rc)
        return lmp_err_prefix(rc, "%s: tokenizer", m->ckpt.path);
    /* every id the tokenizer can produce must be a row of the embedding */
    if (m->tok && lmp_tokenizer_n_vocab(m->tok) > m->n_vocab)
        return lmp_err(LMP_EFORMAT, "%s: the tokenizer has %d tokens but the embedding only %d rows", m->ckpt.path,
                       lmp_tokenizer_n_vocab(m->tok), m->n_vocab);
    return 0;
}

int lmp_model_load(lmp_model **out, const char *path)
{
    return lmp_model_load_ex(out, path, NULL);
}

int lmp_model_load_ex(lmp_model **out, const char *path, const lmp_model_load_hooks *hooks)
{
    *out = NULL;
    lmp_model *m = calloc(1, sizeof *m);
    if (!m)
        return lmp_err(LMP_ENOMEM, "out of memory");
    m->hooks = hooks;
    int rc = lmp_ckpt_open(&m->ckpt, path);
    if (rc) {
        free(m);
        return rc;
    }
    if (!m->ckpt.has_config) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: no model config (config.json or GGUF metadata)", path);
        goto fail;
    }
    m->cfg = m->ckpt.config;
    m->interleaved = m->ckpt.qk_interleaved;
    if ((rc = assemble(m))) {
        if (!strstr(lmp_errmsg(), m->ckpt.path))
            lmp_err_prefix(rc, "%s", path);
        goto fail;
    }
    /* non-finite weights are refused once, here, naming tensor and row as the file
     * stores them (lib/io/validate.h) */
    if ((rc = lmp_ckpt_check_finite(&m->ckpt)))
        goto fail;
    if ((rc = load_tokenizer(m)))
        goto fail;
    m->hooks = NULL;
    *out = m;
    return 0;
fail:
    lmp_model_free(m);
    return rc;
}

void lmp_model_free(lmp_model *m)
{
    if (!m)
        return;
    if (m->layers) {
        for (int l = 0; l < m->cfg.n_layers; l++) {
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
            free(m->layers[l].post_attn_norm);
            free(m->layers[l].post_ffn_norm);
            free(m->layers[l].q_norm);
            free(m->layers[l].k_norm);
            for (int w = 0; w < LMP_LIN_COUNT; w++) {
                free(m->layers[l].bias[w]);
                lmp_lora_lin_free(m->layers[l].lora[w]);
            }
            lmp_moe_free(m->layers[l].moe);
        }
        free(m->layers);
    }
    for (int i = 0; i < m->n_repacked; i++)
        free(m->repacked[i]);
    free(m->repacked);
    for (int i = 0; i < m->n_owned_q; i++) {
        lmp_qtensor_free(m->owned_q[i]);
        free(m->owned_q[i]);
    }
    free(m->owned_q);
    free(m->final_norm);
    free(m->inv_freq);
    free(m->inv_freq_local);
    free(m->inv_freq_long);
    lmp_tokenizer_free(m->tok);
    lmp_ckpt_close(&m->ckpt);
    free(m);
}

/* ---------------------------------------------------------------- accessors ------- */

const lmp_config *lmp_model_config(const lmp_model *m) { return &m->cfg; }
const lmp_ckpt *lmp_model_ckpt(const lmp_model *m) { return &m->ckpt; }
const lmp_tokenizer *lmp_model_tokenizer(const lmp_model *m) { return m->tok; }
int lmp_model_n_vocab(const lmp_model *m) { return m->n_vocab; }
bool lmp_model_rope_interleaved(const lmp_model *m) { return m->interleaved; }
void lmp_model_set_rope_interleaved(lmp_model *m, bool interleaved) { m->interleaved = interleaved; }

int lmp_model_gguf_qk_order(lmp_model *m)
{
    const lmp_family *fam = lmp_family_find(m->cfg.model_type);
    if (m->interleaved || m->ckpt.kind == LMP_CKPT_GGUF || !fam || !fam->qk_interleaved)
        return 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = LMP_LIN_Q; w <= LMP_LIN_K; w++) {
            lmp_wmat *cur = &m->layers[l].w[w];
            const int heads = w == LMP_LIN_Q ? m->cfg.n_heads : m->cfg.n_kv_heads;
            const int64_t hd = cur->rows / heads;
            if (cur->q || cur->layout != LMP_WL_ROWS || !cur->data || hd * heads != cur->rows || hd % 2)
                return lmp_err(LMP_EUNSUPPORTED, "%s: layer %d %s: only dense q/k rows can be put in GGUF order",
                               m->ckpt.path, l, lmp_linear_name((lmp_linear)w));
            void *arr = m->repacked;
            int rc = grow_ptrs(&arr, m->n_repacked, &m->cap_repacked);
            m->repacked = arr;
            uint8_t *buf = rc ? NULL : malloc((size_t)cur->rows * cur->row_bytes);
            float *bias = m->layers[l].bias[w], *tmp = bias ? malloc(sizeof(float) * (size_t)cur->rows) : NULL;
            if (rc || !buf || (bias && !tmp)) {
                free(buf);
                free(tmp);
                return rc ? rc : lmp_err(LMP_ENOMEM, "out of memory");
            }
            for (int64_t r = 0; r < cur->rows; r++) {
                int64_t from = lmp_qk_perm_row(r, heads, hd, true);
                memcpy(buf + (size_t)r * cur->row_bytes, (const uint8_t *)cur->data + (size_t)from * cur->row_bytes,
                       cur->row_bytes);
                if (bias)
                    tmp[r] = bias[from];
            }
            if (bias)
                memcpy(bias, tmp, sizeof(float) * (size_t)cur->rows);
            free(tmp);
            m->repacked[m->n_repacked++] = buf;
            cur->data = buf;
        }
    m->interleaved = true;
    return 0;
}

int lmp_model_bos(const lmp_model *m)
{
    if (m->tok && lmp_tokenizer_bos(m->tok) >= 0)
        return lmp_tokenizer_bos(m->tok);
    return m->cfg.bos_id;
}

int lmp_model_eos(const lmp_model *m)
{
    if (m->tok && lmp_tokenizer_eos(m->tok) >= 0)
        return lmp_tokenizer_eos(m->tok);
    return m->cfg.eos_id;
}

float *lmp_model_norm_mut(lmp_model *m, int layer, bool ffn)
{
    if (!m || layer < 0 || layer >= m->cfg.n_layers)
        return NULL;
    return ffn ? m->layers[layer].ffn_norm : m->layers[layer].attn_norm;
}

float *lmp_model_bias_mut(lmp_model *m, int layer, lmp_linear which)
{
    if (!m || layer < 0 || layer >= m->cfg.n_layers || (unsigned)which >= LMP_LIN_COUNT)
        return NULL;
    return m->layers[layer].bias[which];
}

const lmp_wmat *lmp_model_linear(const lmp_model *m, int layer, lmp_linear which)
{
    if (layer < 0 || layer >= m->cfg.n_layers || (unsigned)which >= LMP_LIN_COUNT)
        return NULL;
    if (m->layers[layer].moe && which >= LMP_LIN_GATE)
        return NULL; /* experts: lmp_model_expert_linear */
    return &m->layers[layer].w[which];
}

int lmp_model_set_linear(lmp_model *m, int layer, lmp_linear which, const lmp_wmat *w)
{
    if (layer < 0 || layer >= m->cfg.n_layers || (unsigned)which >= LMP_LIN_COUNT ||
        (m->layers[layer].moe && which >= LMP_LIN_GATE))
        return lmp_err(LMP_EINVAL, "no linear %d of layer %d", (int)which, layer);
    lmp_wmat *cur = &m->layers[layer].w[which];
    if (w->rows != cur->rows || w->cols != cur->cols)
        return lmp_err(LMP_EINVAL, "layer %d %s: replacement is [%lld, %lld], expected [%lld, %lld]",
                       layer, lmp_linear_name(which), (long long)w->rows, (long long)w->cols,
                       (long long)cur->rows, (long long)cur->cols);
    if (w->q) {
        /* an intgroup view (e.g. a saved lmp_model_linear being restored) */
        int rc = lmp_qtensor_intgroup_check(w->q, NULL);
        if (rc)
            return lmp_err_prefix(rc, "layer %d %s", layer, lmp_linear_name(which));
        if (w->q->rows != w->rows || w->q->cols != w->cols)
            return lmp_err(LMP_EINVAL, "layer %d %s: intgroup payload is [%lld, %lld], the view [%lld, %lld]",
                           layer, lmp_linear_name(which), (long long)w->q->rows,
                           (long long)w->q->cols, (long long)w->rows, (long long)w->cols);
        *cur = *w;
        return 0;
    }
    if (!lmp_gemm_supports(w->dtype))
        return lmp_err(LMP_EUNSUPPORTED, "layer %d %s: dtype %s has no matrix kernel", layer,
                       lmp_linear_name(which), lmp_dtype_info(w->dtype)->name);
    size_t rb = lmp_dtype_row_bytes(w->dtype, w->cols);
    if (rb == 0 || (w->row_bytes && w->row_bytes < rb) || !w->data)
        return lmp_err(LMP_EINVAL, "layer %d %s: rows of %lld %s elements need %zu bytes, got %zu",
                       layer, lmp_linear_name(which), (long long)w->cols,
                       lmp_dtype_info(w->dtype)->name, rb, w->row_bytes);
    *cur = *w;
    if (!cur->row_bytes)
        cur->row_bytes = rb;
    return 0;
}

const lmp_tensor *lmp_model_embed_tensor(const lmp_model *m)
{
    return m->embed;
}

const lmp_wmat *lmp_model_output(const lmp_model *m)
{
    return &m->output;
}

int lmp_model_set_embed(lmp_model *m, const lmp_tensor *t)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    if (t->ndim != 2 || t->shape[0] != m->embed->shape[0] || t->shape[1] != m->embed->shape[1])
        return lmp_err(LMP_EINVAL, "token embedding replacement: shape differs from [%lld, %lld]",
                       (long long)m->embed->shape[0], (long long)m->embed->shape[1]);
    size_t rb = lmp_dtype_row_bytes(t->dtype, t->shape[1]);
    if (!tr->to_f32 || rb == 0 || !t->data)
        return lmp_err(LMP_EUNSUPPORTED, "token embedding replacement: dtype %s cannot be read", tr->name);
    m->embed = t;
    m->embed_row_bytes = rb;
    return 0;
}

int lmp_model_set_output(lmp_model *m, const lmp_wmat *w)
{
    if (w->q || w->rows != m->output.rows || w->cols != m->output.cols || !w->data ||
        !lmp_gemm_supports(w->dtype))
        return lmp_err(LMP_EINVAL, "output matrix replacement: [%lld, %lld] %s, expected [%lld, %lld] of a "
                       "dtype with a matrix kernel", (long long)w->rows, (long long)w->cols,
                       lmp_dtype_info(w->dtype)->name, (long long)m->output.rows, (long long)m->output.cols);
    m->output = *w;
    if (!m->output.row_bytes)
        m->output.row_bytes = lmp_dtype_row_bytes(w->dtype, w->cols);
    return 0;
}

int lmp_model_set_linear_q(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q)
{
    lmp_wmat w;
    int rc = lmp_wmat_intgroup(&w, q);
    if (rc)
        return lmp_err_prefix(rc, "layer %d %s", layer, lmp_linear_name(which));
    return lmp_model_set_linear(m, layer, which, &w);
}

int lmp_model_own_q(lmp_model *m, lmp_qtensor *q, const lmp_qtensor **own)
{
    void *arr = m->owned_q;
    int rc = grow_ptrs(&arr, m->n_owned_q, &m->cap_owned_q);
    m->owned_q = arr;
    if (rc)
        return rc;
    lmp_qtensor *o = malloc(sizeof *o);
    if (!o)
        return lmp_err(LMP_ENOMEM, "out of memory");
    *o = *q;
    m->owned_q[m->n_owned_q++] = o;
    memset(q, 0, sizeof *q);
    *own = o;
    return 0;
}

int lmp_model_adopt_linear_q(lmp_model *m, int layer, lmp_linear which, lmp_qtensor *q)
{
    void *arr = m->owned_q;
    int rc = grow_ptrs(&arr, m->n_owned_q, &m->cap_owned_q);
    m->owned_q = arr;
    if (rc)
        return rc;
    lmp_qtensor *own = malloc(sizeof *own);
    if (!own)
        return lmp_err(LMP_ENOMEM, "out of memory");
    *own = *q;
    rc = lmp_model_set_linear_q(m, layer, which, own);
    if (rc) {
        free(own);
        return rc;
    }
    m->owned_q[m->n_owned_q++] = own;
    memset(q, 0, sizeof *q);
    return 0;
}

int lmp_model_n_intgroup(const lmp_model *m)
{
    int n = 0;
    for (int l = 0; l < m->cfg.n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            n += m->layers[l].w[w].q != NULL;
    return n;
}

int lmp_model_embed(const lmp_model *m, const int32_t *tokens, int64_t n, float *x)
{
    const int64_t d = m->cfg.hidden_size;
    const lmp_dtype_traits *tr = lmp_dtype_info(m->embed->dtype);
    for (int64_t i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab)
            return lmp_err(LMP_EINVAL, "token id %d out of range [0, %d)", (int)tokens[i],
                           m->n_vocab);
        const uint8_t *row = (const uint8_t *)m->embed->data + (size_t)tokens[i] * m->embed_row_bytes;
        tr->to_f32(row, x + i * d, d);
        if (m->embed_scale != 1.0f) /* gemma sqrt(hidden), granite embedding_multiplier */
            for (int64_t j = 0; j < d; j++)
                x[i * d + j] *= m->embed_scale;
    }
    return 0;
}

/* ---------------------------------------------------------------- tokenizer ------- */

int lmp_model_tokenize(const lmp_model *m, const char *text, size_t len, bool add_bos,
                       int32_t **ids, int64_t *n)
{
    *ids = NULL;
    *n = 0;
    if (!m->tok)
        return lmp_err(LMP_EUNSUPPORTED, "%s: the model has no tokenizer", m->ckpt.path);
    size_t cnt = 0;
    int rc = lmp_tokenizer_encode(m->tok, text, len, add_bos, ids, &cnt);
    if (rc)
        return rc;
    *n = (int64_t)cnt;
    for (size_t i = 0; i < cnt; i++)
        if ((*ids)[i] >= m->n_vocab) {
            rc = lmp_err(LMP_EFORMAT, "%s: the tokenizer gave id %d; the model has %d rows",
                         m->ckpt.path, (int)(*ids)[i], m->n_vocab);
            free(*ids);
            *ids = NULL;
            *n = 0;
            return rc;
        }
    return 0;
}

int lmp_model_detokenize(const lmp_model *m, const int32_t *ids, int64_t n, char **text,
                         size_t *len)
{
    *text = NULL;
    *len = 0;
    if (!m->tok)
        return lmp_err(LMP_EUNSUPPORTED, "%s: the model has no tokenizer", m->ckpt.path);
    return lmp_tokenizer_decode(m->tok, ids, (size_t)n, true, text, len);
}
