/*
 * Model validation (validate.h): hyper-parameter ranges, the tensor table of the Llama
 * family and its checks, and the finite-value checks of weights.
 */
#include "validate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

bool lmp_allow_extra;

bool lmp_allow_extra_tensors(void)
{
    const char *e = getenv("LMP_ALLOW_EXTRA");
    return lmp_allow_extra || (e && strcmp(e, "1") == 0);
}

/* ---------------------------------------------------------------- the table */

static bool tied(const lmp_config *c) { return c->tie_embeddings; }
static bool untied(const lmp_config *c) { return !c->tie_embeddings; }
static bool attn_bias(const lmp_config *c) { return c->attn_bias; }
static bool o_bias(const lmp_config *c) { return c->o_bias; }
static bool mlp_bias(const lmp_config *c) { return c->mlp_bias; }
static bool always(const lmp_config *c) { return (void)c, true; }
/* issue-16 family features (lib/io/config.h) */
static bool unfused_qkv(const lmp_config *c) { return !c->fused_qkv; }
static bool fused_qkv(const lmp_config *c) { return c->fused_qkv; }
static bool unfused_gate_up(const lmp_config *c) { return !c->fused_gate_up; }
static bool fused_gate_up(const lmp_config *c) { return c->fused_gate_up; }
static bool pre_norm(const lmp_config *c) { return c->norms != LMP_NORM_POST; }
static bool sandwich(const lmp_config *c) { return c->norms == LMP_NORM_SANDWICH; }
static bool post_ffn_norm(const lmp_config *c) { return c->norms != LMP_NORM_PRE; }
static bool qk_norm_head(const lmp_config *c) { return c->qk_norm == LMP_QKNORM_HEAD; }
static bool qk_norm_full(const lmp_config *c) { return c->qk_norm == LMP_QKNORM_FULL; }

#define D1(a) 1, {LMP_DIM_##a, LMP_DIM_NONE}
#define D2(a, b) 2, {LMP_DIM_##a, LMP_DIM_##b}

/* One row per tensor; HF names (GGUF files are looked up through checkpoint.c's name
 * map). Rows are checked in this order, so a missing layer reports its first tensor. */
static const lmp_tensor_spec g_specs[] = {
    {"model.embed_tokens.weight", false, D2(VOCAB, HIDDEN), NULL, NULL, false},
    {"input_layernorm.weight", true, D1(HIDDEN), pre_norm, NULL, false},
    {"self_attn.q_proj.weight", true, D2(Q, HIDDEN), unfused_qkv, NULL, true},
    {"self_attn.k_proj.weight", true, D2(KV, HIDDEN), unfused_qkv, NULL, true},
    {"self_attn.v_proj.weight", true, D2(KV, HIDDEN), unfused_qkv, NULL, true},
    {"self_attn.qkv_proj.weight", true, D2(QKV, HIDDEN), fused_qkv, NULL, true},
    {"self_attn.q_norm.weight", true, D1(HEAD), qk_norm_head, NULL, false},
    {"self_attn.k_norm.weight", true, D1(HEAD), qk_norm_head, NULL, false},
    {"self_attn.q_norm.weight", true, D1(Q), qk_norm_full, NULL, false},
    {"self_attn.k_norm.weight", true, D1(KV), qk_norm_full, NULL, false},
    {"self_attn.q_proj.bias", true, D1(Q), attn_bias, NULL, false},
    {"self_attn.k_proj.bias", true, D1(KV), attn_bias, NULL, false},
    {"self_attn.v_proj.bias", true, D1(KV), attn_bias, NULL, false},
    {"self_attn.o_proj.weight", true, D2(HIDDEN, Q), NULL, NULL, true},
    {"self_attn.o_proj.bias", true, D1(HIDDEN), o_bias, NULL, false},
    {"post_attention_layernorm.weight", true, D1(HIDDEN), NULL, NULL, false},
    {"pre_feedforward_layernorm.weight", true, D1(HIDDEN), sandwich, NULL, false},
    {"post_feedforward_layernorm.weight", true, D1(HIDDEN), post_ffn_norm, NULL, false},
    {"mlp.gate_proj.weight", true, D2(FF, HIDDEN), unfused_gate_up, NULL, true},
    {"mlp.up_proj.weight", true, D2(FF, HIDDEN), unfused_gate_up, NULL, true},
    {"mlp.gate_up_proj.weight", true, D2(FF2, HIDDEN), fused_gate_up, NULL, true},
    {"mlp.down_proj.weight", true, D2(HIDDEN, FF), NULL, NULL, true},
    {"mlp.gate_proj.bias", true, D1(FF), mlp_bias, NULL, false},
    {"mlp.up_proj.bias", true, D1(FF), mlp_bias, NULL, false},
    {"mlp.down_proj.bias", true, D1(HIDDEN), mlp_bias, NULL, false},
    /* buffers some checkpoints carry and nobody needs (recomputed from rope_theta) */
    {"self_attn.rotary_emb.inv_freq", true, 1, {LMP_DIM_ANY, LMP_DIM_NONE}, NULL, always, false},
    {"model.norm.weight", false, D1(HIDDEN), NULL, NULL, false},
    {"lm_head.weight", false, D2(VOCAB, HIDDEN), untied, tied, true},
    /* llama.cpp's Llama 3 RoPE factors (GGUF only; written by convert from the config) */
    {"rope_freqs.weight", false, 1, {LMP_DIM_ANY, LMP_DIM_NONE}, NULL, always, false},
    /* phi3 longrope factors (GGUF only) */
    {"rope_factors_long.weight", false, 1, {LMP_DIM_ANY, LMP_DIM_NONE}, NULL, always, false},
    {"rope_factors_short.weight", false, 1, {LMP_DIM_ANY, LMP_DIM_NONE}, NULL, always, false},
    {NULL, false, 0, {LMP_DIM_NONE, LMP_DIM_NONE}, NULL, NULL, false},
};

const lmp_tensor_spec *lmp_tensor_specs(void) { return g_specs; }

int64_t lmp_dim_size(const lmp_config *c, lmp_dim d)
{
    switch (d) {
    case LMP_DIM_HIDDEN: return c->hidden_size;
    case LMP_DIM_Q: return (int64_t)c->n_heads * c->head_dim;
    case LMP_DIM_KV: return (int64_t)c->n_kv_heads * c->head_dim;
    case LMP_DIM_FF: return c->intermediate_size;
    case LMP_DIM_VOCAB: return c->vocab_size;
    case LMP_DIM_HEAD: return c->head_dim;
    case LMP_DIM_QKV: return ((int64_t)c->n_heads + 2 * (int64_t)c->n_kv_heads) * c->head_dim;
    case LMP_DIM_FF2: return 2 * (int64_t)c->intermediate_size;
    default: return -1;
    }
}

static const char *dim_key(lmp_dim d)
{
    switch (d) {
    case LMP_DIM_HIDDEN: return "hidden_size";
    case LMP_DIM_Q: return "num_attention_heads x head_dim";
    case LMP_DIM_KV: return "num_key_value_heads x head_dim";
    case LMP_DIM_FF: return "intermediate_size";
    case LMP_DIM_VOCAB: return "vocab_size";
    case LMP_DIM_HEAD: return "head_dim";
    case LMP_DIM_QKV: return "(num_attention_heads + 2 x num_key_value_heads) x head_dim";
    case LMP_DIM_FF2: return "2 x intermediate_size";
    default: return "?";
    }
}

/* ---------------------------------------------------------------- hyper-parameters */

int lmp_config_check(const lmp_config *c, const char *src)
{
#define BAD(...) return lmp_err(LMP_EFORMAT, __VA_ARGS__)
    if (c->hidden_size <= 0 || c->hidden_size > (1 << 20))
        BAD("%s: hidden_size %d is out of range", src, c->hidden_size);
    if (c->intermediate_size <= 0 || c->intermediate_size > (1 << 22))
        BAD("%s: intermediate_size %d is out of range", src, c->intermediate_size);
    if (c->n_layers <= 0 || c->n_layers > 4096)
        BAD("%s: num_hidden_layers (block_count) %d is out of range", src, c->n_layers);
    if (c->n_heads <= 0 || c->n_kv_heads <= 0 || c->n_heads > 4096 || c->n_heads % c->n_kv_heads)
        BAD("%s: %d attention heads and %d key/value heads are inconsistent", src, c->n_heads,
            c->n_kv_heads);
    if (c->head_dim <= 0 || c->head_dim % 2 || c->head_dim > 4096)
        BAD("%s: head_dim %d is out of range (a positive even number)", src, c->head_dim);
    if (c->vocab_size <= 0 || c->vocab_size > (1 << 24))
        BAD("%s: vocab_size %d is out of range", src, c->vocab_size);
    if (c->max_pos <= 0 || c->max_pos > (1 << 24))
        BAD("%s: max_position_embeddings (context_length) %d is out of range [1, %d]", src,
            c->max_pos, 1 << 24);
    if (!(c->rms_eps > 0 && c->rms_eps < 1))
        BAD("%s: rms_norm_eps (layer_norm_rms_epsilon) %g is out of range (0, 1)", src,
            (double)c->rms_eps);
    if (!(c->rope_theta > 1 && isfinite(c->rope_theta)))
        BAD("%s: rope_theta (rope.freq_base) %g is out of range (a finite number > 1)", src,
            (double)c->rope_theta);
    if ((c->rope_type == LMP_ROPE_LINEAR || c->rope_type == LMP_ROPE_LLAMA3) &&
        !(c->rope_factor > 0 && isfinite(c->rope_factor)))
        BAD("%s: rope scaling factor %g is out of range (finite, > 0)", src, (double)c->rope_factor);
    if (c->rope_type == LMP_ROPE_LLAMA3 &&
        (!(c->rope_low_freq_factor > 0) || !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
         !isfinite(c->rope_high_freq_factor) || c->rope_orig_max_pos <= 0))
        BAD("%s: llama3 rope scaling (low_freq_factor %g, high_freq_factor %g, "
            "original_max_position_embeddings %d) is out of range",
            src, (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor, c->rope_orig_max_pos);
    if (c->sliding_window < 0)
        BAD("%s: sliding_window %d is negative", src, c->sliding_window);
    const struct {
        const char *k;
        int v;
    } ids[] = {{"bos_token_id", c->bos_id}, {"eos_token_id", c->eos_id}, {"pad_token_id", c->pad_id}};
    for (size_t i = 0; i < 3; i++)
        if (ids[i].v < -1 || ids[i].v >= c->vocab_size)
            BAD("%s: %s %d is outside the vocabulary [0, %d)", src, ids[i].k, ids[i].v, c->vocab_size);
#undef BAD
    return LMP_OK;
}

/* ---------------------------------------------------------------- tensors */

static bool readable_dtype(lmp_dtype t)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t);
    return tr && tr->to_f32 && (tr->is_float || tr->is_quant);
}

/* "model.layers.N." or "blk.N." prefix: the layer, else -1. *rest after the prefix. */
static int layer_of(const char *name, bool gguf, const char **rest)
{
    int l, used = 0;
    if (sscanf(name, gguf ? "blk.%d.%n" : "model.layers.%d.%n", &l, &used) == 1 && used > 0 && l >= 0) {
        *rest = name + used;
        return l;
    }
    return -1;
}

static int check_one(const lmp_ckpt *c, const lmp_tensor_spec *s, const char *hf, const lmp_tensor *t)
{
    const lmp_config *cfg = &c->config;
    int64_t want[2] = {lmp_dim_size(cfg, s->dims[0]), s->ndim > 1 ? lmp_dim_size(cfg, s->dims[1]) : 0};
    bool ok = t->ndim == s->ndim;
    for (int i = 0; ok && i < s->ndim; i++)
        ok = s->dims[i] == LMP_DIM_ANY || t->shape[i] == want[i];
    if (!ok) {
        char got[96], exp[96];
        lmp_shape_str(t, got, sizeof got);
        if (s->ndim == 1)
            snprintf(exp, sizeof exp, "[%lld] (%s)", (long long)want[0], dim_key(s->dims[0]));
        else
            snprintf(exp, sizeof exp, "[%lld, %lld] (%s, %s)", (long long)want[0], (long long)want[1],
                     dim_key(s->dims[0]), dim_key(s->dims[1]));
        return lmp_err(LMP_EFORMAT, "%s: tensor %s has shape %s but the config implies %s", c->path, t->name,
                       got, exp);
    }
    if (!readable_dtype(t->dtype))
        return lmp_err(LMP_EFORMAT, "%s: tensor %s has dtype %s, which does not hold weights", c->path,
                       t->name, lmp_dtype_info(t->dtype) ? lmp_dtype_info(t->dtype)->name : "?");
    int64_t nel = lmp_tensor_nelem(t);
    if (nel <= 0 && s->dims[0] != LMP_DIM_ANY)
        return lmp_err(LMP_EFORMAT, "%s: tensor %s is empty", c->path, t->name);
    (void)hf;
    return LMP_OK;
}

/* Whether some tensor other than `<prefix>.weight` lives under `<prefix>.` (a packed
 * quantized or sparse linear). */
static bool packed_linear(const lmp_ckpt *c, const char *prefix, bool *used)
{
    size_t pl = strlen(prefix);
    bool any = false;
    for (int i = 0; i < c->n_tensors; i++) {
        const char *n = c->tensors[i].name;
        if (strncmp(n, prefix, pl) == 0 && n[pl] == '.' && strcmp(n + pl, ".bias") != 0) {
            any = true;
            if (used)
                used[i] = true;
        }
    }
    return any;
}

/* Mixture-of-experts tensors of a layer (HF: block_sparse_moe.*, mlp.experts.*, the
 * mlp.gate router; GGUF: ffn_gate_inp, *_exps): such a layer has no dense FFN, and its
 * expert tensors are checked by the MoE loader (lib/infer), which knows their layouts. */
static bool is_moe_tensor(const char *rest, bool gguf)
{
    if (gguf)
        return strncmp(rest, "ffn_gate_inp.", 13) == 0 || strstr(rest, "_exps.") != NULL;
    return strncmp(rest, "block_sparse_moe.", 17) == 0 || strncmp(rest, "mlp.experts.", 12) == 0 ||
           strcmp(rest, "mlp.gate.weight") == 0;
}

int lmp_ckpt_validate(const lmp_ckpt *c, bool *used_out)
{
    if (!c->has_config)
        return LMP_OK;
    const lmp_config *cfg = &c->config;
    int rc = lmp_config_check(cfg, c->path);
    if (rc)
        return rc;
    const bool gguf = c->kind == LMP_CKPT_GGUF;
    bool *used = used_out ? used_out : calloc((size_t)c->n_tensors + 1, 1);
    if (!used)
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (used_out)
        memset(used, 0, (size_t)c->n_tensors);
    bool *moe = calloc((size_t)cfg->n_layers + 1, 1);
    if (!moe) {
        if (!used_out)
            free(used);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < c->n_tensors; i++) {
        const char *rest;
        int l = layer_of(c->tensors[i].name, gguf, &rest);
        if (l >= 0 && l < cfg->n_layers && is_moe_tensor(rest, gguf)) {
            moe[l] = true;
            used[i] = true;
        }
    }
    char hf[LMP_MAX_NAME];
    for (const lmp_tensor_spec *s = g_specs; s->hf && !rc; s++) {
        int nl = s->per_layer ? cfg->n_layers : 1;
        for (int l = 0; l < nl && !rc; l++) {
            if (s->per_layer && moe[l] && strncmp(s->hf, "mlp.", 4) == 0)
                continue; /* experts instead of the dense FFN */
            if (s->per_layer)
                snprintf(hf, sizeof hf, "model.layers.%d.%s", l, s->hf);
            else
                snprintf(hf, sizeof hf, "%s", s->hf);
            bool need = s->needed ? s->needed(cfg) : !s->allowed;
            bool may = need || (s->allowed && s->allowed(cfg));
            const lmp_tensor *t = lmp_ckpt_find_hf(c, hf);
            if (!t && gguf)
                t = lmp_ckpt_find(c, hf); /* names only GGUF has (rope_freqs) */
            if (!t && need && s->linear) {
                char prefix[LMP_MAX_NAME];
                snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(hf) - strlen(".weight")), hf);
                if (packed_linear(c, prefix, used))
                    continue;
            }
            if (!t && need && s->needed == untied && gguf)
                continue; /* GGUF: no output.weight means tied (config_from_gguf) */
            if (!t) {
                if (need) {
                    char gg[LMP_MAX_NAME];
                    const char *shown = hf;
                    if (gguf && lmp_name_hf_to_gguf_arch(cfg->arch, hf, gg, sizeof gg) == 0)
                        shown = gg;
                    if (s->per_layer)
                        rc = lmp_err(LMP_ENOTFOUND,
                                     "%s: tensor %s is missing (the config has %d layers: num_hidden_layers / "
                                     "block_count%s)",
                                     c->path, shown, cfg->n_layers,
                                     s->needed == attn_bias || s->needed == o_bias || s->needed == mlp_bias
                                         ? "; attention_bias / mlp_bias say biases are present"
                                         : "");
                    else
                        rc = lmp_err(LMP_ENOTFOUND, "%s: tensor %s is missing", c->path, shown);
                }
                continue;
            }
            if (!may)
                continue; /* present but not wanted: reported below as unused */
            if ((rc = check_one(c, s, hf, t)))
                break;
            used[t - c->tensors] = true;
        }
    }
    /* GGUF: llama.cpp sizes the embedding by the token list; a list of another length
     * gives ids that are not the rows they name */
    const lmp_gguf_kv *toks = gguf ? lmp_gguf_find_kv(&c->gguf, "tokenizer.ggml.tokens") : NULL;
    if (!rc && toks && toks->n != (uint64_t)cfg->vocab_size)
        rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.tokens has %llu tokens but the vocabulary (embedding rows) is %d",
                     c->path, (unsigned long long)toks->n, cfg->vocab_size);
    /* every tensor nobody reads: a layer the config does not have, a bias the config
     * says is absent, a name no architecture uses */
    int n_extra = 0;
    char list[512] = "";
    for (int i = 0; i < c->n_tensors && !rc; i++) {
        if (used[i])
            continue;
        const char *name = c->tensors[i].name, *rest;
        int l = layer_of(name, gguf, &rest);
        if (l >= cfg->n_layers && !lmp_allow_extra_tensors()) {
            rc = lmp_err(LMP_EFORMAT,
                         "%s: tensor %s belongs to layer %d but the config has %d layers (num_hidden_layers / "
                         "block_count)",
                         c->path, name, l, cfg->n_layers);
            break;
        }
        if (n_extra++ < 4)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", n_extra > 1 ? ", " : "", name);
    }
    if (!rc && n_extra) {
        if (!lmp_allow_extra_tensors())
            rc = lmp_err(LMP_EFORMAT,
                         "%s: %d tensor%s the %s architecture does not use (%s%s); the config and the weights "
                         "disagree (--allow-extra ignores them)",
                         c->path, n_extra, n_extra > 1 ? "s" : "", cfg->model_type, list, n_extra > 4 ? ", ..." : "");
        else
            lmp_warn("%s: --allow-extra: ignoring %d tensor%s the %s architecture does not use (%s%s)", c->path,
                     n_extra, n_extra > 1 ? "s" : "", cfg->model_type, list, n_extra > 4 ? ", ..." : "");
    }
    if (!used_out)
        free(used);
    free(moe);
    return rc;
}

/* ---------------------------------------------------------------- finite values */

/* Vectorisable scans: the exponent field all ones means Inf or NaN. The fixed-size inner
 * loops are what GCC vectorises at -O2. */
static int64_t first_bad_u16(const uint16_t *p, int64_t n, uint16_t expmask)
{
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        uint16_t m = 0xffff;
        for (int j = 0; j < 64; j++) {
            uint16_t v = (uint16_t)(~p[i + j] & expmask);
            m = v < m ? v : m;
        }
        if (m == 0)
            break;
    }
    for (; i < n; i++)
        if ((p[i] & expmask) == expmask)
            return i;
    return -1;
}

static int64_t first_bad_u32(const uint32_t *p, int64_t n)
{
    const uint32_t em = 0x7f800000u;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        uint32_t m = 0xffffffffu;
        for (int j = 0; j < 32; j++) {
            uint32_t v = ~p[i + j] & em;
            m = v < m ? v : m;
        }
        if (m == 0)
            break;
    }
    for (; i < n; i++)
        if ((p[i] & em) == em)
            return i;
    return -1;
}

int64_t lmp_first_nonfinite(const float *x, int64_t n) { return first_bad_u32((const uint32_t *)(const void *)x, n); }

static int64_t first_bad_f64(const uint64_t *p, int64_t n)
{
    const uint64_t em = 0x7ff0000000000000ull;
    for (int64_t i = 0; i < n; i++)
        if ((p[i] & em) == em)
            return i;
    return -1;
}

/* First non-finite value of one row (cols elements at p), or -1; tmp: cols floats for
 * block types. */
static int64_t row_bad(lmp_dtype dt, const void *p, int64_t cols, float *tmp)
{
    switch (dt) {
    case LMP_DT_F32: return first_bad_u32(p, cols);
    case LMP_DT_F16: return first_bad_u16(p, cols, 0x7c00);
    case LMP_DT_BF16: return first_bad_u16(p, cols, 0x7f80);
    case LMP_DT_F64: return first_bad_f64(p, cols);
    default: break;
    }
    const lmp_dtype_traits *tr = lmp_dtype_info(dt);
    if (!tr || !tr->is_quant || !tr->to_f32)
        return -1;
    tr->to_f32(p, tmp, cols);
    return lmp_first_nonfinite(tmp, cols);
}

int lmp_check_finite_rows(const char *file, const lmp_tensor *t, int64_t r0, int64_t nr,
                          int64_t (*row_map)(int64_t row, const void *ctx), const void *ctx)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    if (!tr || !(tr->is_float || tr->is_quant) || t->ndim == 0 || !t->data)
        return LMP_OK;
    const int64_t cols = t->shape[t->ndim - 1];
    const size_t rb = lmp_dtype_row_bytes(t->dtype, cols);
    if (cols <= 0 || rb == 0)
        return LMP_OK;
    float *tmp = tr->is_quant ? malloc(sizeof(float) * (size_t)cols) : NULL;
    if (tr->is_quant && !tmp)
        return lmp_err(LMP_ENOMEM, "out of memory");
    int64_t bad_row = -1, bad_col = -1;
    for (int64_t r = r0; r < r0 + nr && bad_row < 0; r++) {
        if ((size_t)(r + 1) * rb > t->nbytes)
            break;
        int64_t j = row_bad(t->dtype, (const uint8_t *)t->data + (size_t)r * rb, cols, tmp);
        if (j >= 0) {
            bad_row = r;
            bad_col = j;
        }
    }
    int rc = LMP_OK;
    if (bad_row >= 0) {
        float v;
        if (!tmp && (tmp = malloc(sizeof(float) * (size_t)cols)))
            tr->to_f32((const uint8_t *)t->data + (size_t)bad_row * rb, tmp, cols);
        else if (tmp)
            tr->to_f32((const uint8_t *)t->data + (size_t)bad_row * rb, tmp, cols);
        v = tmp ? tmp[bad_col] : NAN;
        int64_t shown = row_map ? row_map(bad_row, ctx) : bad_row;
        rc = lmp_err(LMP_ERANGE, "%s: tensor %s row %lld column %lld is %s: non-finite weights are refused", file,
                     t->name, (long long)shown, (long long)bad_col, isnan(v) ? "NaN" : v > 0 ? "+Inf" : "-Inf");
    }
    free(tmp);
    return rc;
}

int lmp_ckpt_check_finite(const lmp_ckpt *c)
{
    int rc = LMP_OK;
    for (int i = 0; i < c->n_tensors && !rc; i++) {
        const lmp_tensor *t = &c->tensors[i];
        const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
        if (!tr || !(tr->is_float || tr->is_quant) || t->ndim == 0)
            continue;
        const int64_t cols = t->shape[t->ndim - 1], rows = cols > 0 ? lmp_tensor_nelem(t) / cols : 0;
        const int64_t step = 256;
        int bad = 0;
        /* parallel over blocks of rows; the first failing block (lowest row) reports */
        int64_t first = rows;
#pragma omp parallel for schedule(dynamic, 1) reduction(min : first)
        for (int64_t r = 0; r < rows; r += step) {
            if (r > first)
                continue;
            int64_t n = rows - r < step ? rows - r : step;
            if (lmp_check_finite_rows(c->path, t, r, n, NULL, NULL))
                first = r < first ? r : first;
        }
        if (first < rows) {
            bad = 1;
            rc = lmp_check_finite_rows(c->path, t, first, rows - first < step ? rows - first : step, NULL, NULL);
        }
        (void)bad;
    }
    return rc;
}
