/*
 * Opens any checkpoint lmpress reads (HF folder, .safetensors / index, .gguf) behind one
 * struct, derives the hyper-parameters (config.json or GGUF metadata), and maps tensor
 * names between Hugging Face and llama.cpp conventions.
 */
#include "checkpoint.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- names */

typedef struct {
    const char *hf, *gg;
} name_pair;

static const name_pair g_global[] = {
    {"model.embed_tokens", "token_embd"},
    {"model.norm", "output_norm"},
    {"lm_head", "output"},
};

static const name_pair g_layer[] = {
    {"input_layernorm", "attn_norm"},
    {"post_attention_layernorm", "ffn_norm"},
    {"self_attn.q_proj", "attn_q"},
    {"self_attn.k_proj", "attn_k"},
    {"self_attn.v_proj", "attn_v"},
    {"self_attn.o_proj", "attn_output"},
    {"mlp.gate_proj", "ffn_gate"},
    {"mlp.up_proj", "ffn_up"},
    {"mlp.down_proj", "ffn_down"},
    {"self_attn.q_norm", "attn_q_norm"},
    {"self_attn.k_norm", "attn_k_norm"},
};

/* Per-architecture names, consulted before g_layer (llama.cpp's tensor_mapping for the
 * arch: gemma2/gemma3/olmo2 post-norms, phi3's fused projections). */
typedef struct {
    const char *arch, *hf, *gg;
} arch_pair;

static const arch_pair g_arch_layer[] = {
    {"gemma2", "post_attention_layernorm", "post_attention_norm"},
    {"gemma2", "pre_feedforward_layernorm", "ffn_norm"},
    {"gemma2", "post_feedforward_layernorm", "post_ffw_norm"},
    {"gemma3", "post_attention_layernorm", "post_attention_norm"},
    {"gemma3", "pre_feedforward_layernorm", "ffn_norm"},
    {"gemma3", "post_feedforward_layernorm", "post_ffw_norm"},
    {"olmo2", "post_attention_layernorm", "post_attention_norm"},
    {"olmo2", "post_feedforward_layernorm", "post_ffw_norm"},
    {"phi3", "self_attn.qkv_proj", "attn_qkv"},
    {"phi3", "mlp.gate_up_proj", "ffn_up"},
};

/* Splits "<stem>.<suffix>" where suffix is weight or bias. */
static const char *suffix_of(const char *name, size_t *stem_len)
{
    const char *dot = strrchr(name, '.');
    if (!dot || (strcmp(dot, ".weight") != 0 && strcmp(dot, ".bias") != 0))
        return NULL;
    *stem_len = (size_t)(dot - name);
    return dot;
}

/* One mapping, both directions: to_gguf maps HF -> llama.cpp names, else the reverse.
 * arch: the GGUF architecture (NULL: llama). */
static int map_name(const char *arch, const char *name, char *out, size_t n, bool to_gguf)
{
    size_t sl;
    const char *suf = suffix_of(name, &sl);
    if (!suf)
        return LMP_ENOTFOUND;
    for (size_t i = 0; i < sizeof g_global / sizeof g_global[0]; i++) {
        const char *from = to_gguf ? g_global[i].hf : g_global[i].gg;
        if (strlen(from) == sl && strncmp(name, from, sl) == 0) {
            snprintf(out, n, "%s%s", to_gguf ? g_global[i].gg : g_global[i].hf, suf);
            return LMP_OK;
        }
    }
    int layer, used = 0;
    if (sscanf(name, to_gguf ? "model.layers.%d.%n" : "blk.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0)
        return LMP_ENOTFOUND;
    const char *rest = name + used;
    size_t rl = sl - (size_t)used;
    for (size_t i = 0; arch && i < sizeof g_arch_layer / sizeof g_arch_layer[0]; i++) {
        if (strcmp(g_arch_layer[i].arch, arch) != 0)
            continue;
        const char *from = to_gguf ? g_arch_layer[i].hf : g_arch_layer[i].gg;
        if (strlen(from) == rl && strncmp(rest, from, rl) == 0) {
            if (to_gguf)
                snprintf(out, n, "blk.%d.%s%s", layer, g_arch_layer[i].gg, suf);
            else
                snprintf(out, n, "model.layers.%d.%s%s", layer, g_arch_layer[i].hf, suf);
            return LMP_OK;
        }
    }
    for (size_t i = 0; i < sizeof g_layer / sizeof g_layer[0]; i++) {
        const char *from = to_gguf ? g_layer[i].hf : g_layer[i].gg;
        if (strlen(from) == rl && strncmp(rest, from, rl) == 0) {
            if (to_gguf)
                snprintf(out, n, "blk.%d.%s%s", layer, g_layer[i].gg, suf);
            else
                snprintf(out, n, "model.layers.%d.%s%s", layer, g_layer[i].hf, suf);
            return LMP_OK;
        }
    }
    return LMP_ENOTFOUND;
}

int lmp_name_hf_to_gguf(const char *hf, char *out, size_t n) { return map_name(NULL, hf, out, n, true); }

int lmp_name_gguf_to_hf(const char *gg, char *out, size_t n) { return map_name(NULL, gg, out, n, false); }

int lmp_name_hf_to_gguf_arch(const char *arch, const char *hf, char *out, size_t n)
{
    return map_name(arch, hf, out, n, true);
}

int lmp_name_gguf_to_hf_arch(const char *arch, const char *gg, char *out, size_t n)
{
    return map_name(arch, gg, out, n, false);
}

/* convert_hf_to_gguf's permute: HF row (h, t, i) with t in {0,1} the rotate-half, i <
 * head_dim/2 becomes ggml row (h, i, t). */
int64_t lmp_qk_perm_row(int64_t row, int n_head, int64_t head_dim, bool to_gguf)
{
    (void)n_head;
    int64_t h = row / head_dim, r = row % head_dim, half = head_dim / 2;
    if (to_gguf) { /* destination ggml row r = 2i + t; source HF row t*half + i */
        int64_t i = r / 2, t = r % 2;
        return h * head_dim + t * half + i;
    }
    /* destination HF row r = t*half + i; source ggml row 2i + t */
    int64_t t = r / half, i = r % half;
    return h * head_dim + 2 * i + t;
}

/* ---------------------------------------------------------------- GGUF config */

static int gguf_int(const lmp_gguf_reader *g, const char *arch, const char *key, int *out,
                    bool required, int def)
{
    char k[128];
    int64_t v;
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int rc = lmp_gguf_get_int(g, k, &v);
    if (rc == LMP_ENOTFOUND && !required) {
        *out = def;
        return LMP_OK;
    }
    if (rc == LMP_ENOTFOUND)
        return lmp_err(LMP_EFORMAT, "%s: required key %s is missing", g->path, k);
    if (rc)
        return lmp_err(LMP_EFORMAT, "%s: key %s is not an integer", g->path, k);
    if (v < 0 || v > 0x7fffffff)
        return lmp_err(LMP_EFORMAT, "%s: key %s = %lld out of range", g->path, k, (long long)v);
    *out = (int)v;
    return LMP_OK;
}

static int gguf_float(const lmp_gguf_reader *g, const char *key, float *out, float def)
{
    double v;
    int rc = lmp_gguf_get_float(g, key, &v);
    if (rc == LMP_ENOTFOUND) {
        *out = def;
        return LMP_OK;
    }
    if (rc)
        return lmp_err(LMP_EFORMAT, "%s: key %s is not a float", g->path, key);
    *out = (float)v;
    return LMP_OK;
}

/* n f32 values of a 1-D GGUF tensor (rope_freqs, rope_factors_*) into out. */
static int gguf_factors(const lmp_gguf_reader *g, const char *name, float *out, int n)
{
    const lmp_tensor *t = lmp_gguf_find_tensor(g, name);
    if (!t)
        return lmp_err(LMP_EFORMAT, "%s: tensor %s is missing", g->path, name);
    if (n > LMP_MAX_ROPE_FACTORS || t->ndim != 1 || t->shape[0] != n || t->dtype != LMP_DT_F32 ||
        t->nbytes < sizeof(float) * (size_t)n || !t->data)
        return lmp_err(LMP_EFORMAT, "%s: tensor %s must be %d f32 values (one per rotated pair)", g->path,
                       name, n);
    memcpy(out, t->data, sizeof(float) * (size_t)n);
    for (int i = 0; i < n; i++)
        if (!(out[i] > 0) || !isfinite(out[i]))
            return lmp_err(LMP_EFORMAT, "%s: tensor %s[%d] = %g is not a positive factor", g->path, name, i,
                           out[i]);
    return LMP_OK;
}

/* The issue-16 family keys, as llama.cpp's converter writes them (and its loader's
 * defaults where it has fixed rules: gemma2 local on even layers, gemma3 5:1, smollm3 no
 * RoPE every 4th layer). */
static int family_from_gguf(lmp_config *c, const lmp_gguf_reader *g, const char *arch)
{
    char k[128];
    int rc;
    int64_t v;
    const bool phi3 = strcmp(arch, "phi3") == 0, gemma2 = strcmp(arch, "gemma2") == 0,
               gemma3 = strcmp(arch, "gemma3") == 0;
    if (phi3) {
        if (lmp_gguf_find_tensor(g, "rope_factors_long.weight")) {
            c->rope_type = LMP_ROPE_LONGROPE;
            c->n_rope_factors = c->rope_dim / 2;
            if ((rc = gguf_factors(g, "rope_factors_long.weight", c->rope_long, c->n_rope_factors)) ||
                (rc = gguf_factors(g, "rope_factors_short.weight", c->rope_short, c->n_rope_factors)))
                return rc;
            snprintf(k, sizeof k, "%s.rope.scaling.attn_factor", arch);
            if ((rc = gguf_float(g, k, &c->rope_attn_factor, 0.0f)))
                return rc;
        }
        if ((rc = gguf_int(g, arch, "rope.scaling.original_context_length", &c->rope_orig_max_pos, false,
                           c->max_pos)))
            return rc;
    }
    if (gemma2 || gemma3) {
        int pat = gemma2 ? 2 : 6;
        snprintf(k, sizeof k, "%s.attention.sliding_window_pattern", arch);
        if (lmp_gguf_get_int(g, k, &v) == 0)
            pat = (int)v;
        if (pat <= 0)
            return lmp_err(LMP_EFORMAT, "%s: %s must be positive", g->path, k);
        if (gemma2 && c->sliding_window <= 0)
            c->sliding_window = 4096;
        if (c->sliding_window > 0) {
            c->swa_layers = true;
            for (int l = 0; l < c->n_layers; l++)
                if (l % pat < pat - 1)
                    c->layer_flags[l] |= LMP_LAYER_SLIDING;
        }
        snprintf(k, sizeof k, "%s.attn_logit_softcapping", arch);
        if ((rc = gguf_float(g, k, &c->attn_softcap, gemma2 ? 50.0f : 0.0f)))
            return rc;
        snprintf(k, sizeof k, "%s.final_logit_softcapping", arch);
        if ((rc = gguf_float(g, k, &c->final_softcap, gemma2 ? 30.0f : 0.0f)))
            return rc;
        /* llama.cpp's rule when the file does not say: head_dim, but hidden / heads for the
         * 27B models (gemma2 46 layers, gemma3 62) */
        const bool big = (gemma2 && c->n_layers == 46) || (gemma3 && c->n_layers == 62);
        if ((rc = gguf_float(g, "lmpress.query_pre_attn_scalar", &c->query_pre_attn_scalar,
                             big ? (float)(c->hidden_size / c->n_heads) : (float)c->head_dim)))
            return rc;
        if (gemma3) {
            snprintf(k, sizeof k, "%s.rope.freq_base_swa", arch);
            if ((rc = gguf_float(g, k, &c->rope_local_theta, 10000.0f)))
                return rc;
        }
    }
    if (strcmp(arch, "smollm3") == 0) {
        c->no_rope_interval = 4;
        for (int l = 0; l < c->n_layers; l++)
            if ((l + 1) % 4 == 0)
                c->layer_flags[l] |= LMP_LAYER_NOROPE;
    }
    if (strcmp(arch, "granite") == 0) {
        snprintf(k, sizeof k, "%s.attention.scale", arch);
        if ((rc = gguf_float(g, k, &c->attn_multiplier, 1.0f)))
            return rc;
        snprintf(k, sizeof k, "%s.embedding_scale", arch);
        if ((rc = gguf_float(g, k, &c->embed_multiplier, 1.0f)))
            return rc;
        snprintf(k, sizeof k, "%s.residual_scale", arch);
        if ((rc = gguf_float(g, k, &c->residual_multiplier, 1.0f)))
            return rc;
        snprintf(k, sizeof k, "%s.logit_scale", arch);
        if ((rc = gguf_float(g, k, &c->logits_scaling, 1.0f)))
            return rc;
    }
    /* every tensor must be one the engine knows for this architecture: a file holding
     * others (experts under the llama architecture, an unknown block layout) is refused
     * here, by every command, rather than run or quantized into something unloadable */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const char *tn = g->tensors[i].name;
        char hf[LMP_MAX_NAME];
        if (strcmp(tn, "rope_freqs.weight") == 0 || strcmp(tn, "rope_factors_long.weight") == 0 ||
            strcmp(tn, "rope_factors_short.weight") == 0)
            continue;
        if (lmp_name_gguf_to_hf_arch(arch, tn, hf, sizeof hf))
            return lmp_err(LMP_EUNSUPPORTED,
                           "%s: tensor %s is not part of the %s architecture as lmpress runs it "
                           "(the engine cannot run this file)",
                           g->path, tn, arch);
    }
    /* llama.cpp files hold 2-D weights in their own names; fused qkv for phi3 only */
    if (phi3 && !lmp_gguf_find_tensor(g, "blk.0.attn_qkv.weight"))
        c->fused_qkv = false; /* separate attn_q/attn_k/attn_v (llama.cpp accepts both) */
    return LMP_OK;
}

static int config_from_gguf(lmp_config *c, const lmp_gguf_reader *g)
{
    const char *arch;
    char k[128];
    int rc;
    memset(c, 0, sizeof *c);
    if (lmp_gguf_get_str(g, "general.architecture", &arch))
        return lmp_err(LMP_EFORMAT, "%s: general.architecture is missing", g->path);
    const lmp_family *fam = lmp_family_by_arch(arch);
    if (!fam)
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: architecture \"%s\" is not supported (supported: llama, qwen2, phi3, gemma, "
                       "gemma2, gemma3, qwen3, smollm3, granite, olmo2)",
                       g->path, arch);
    snprintf(c->model_type, sizeof c->model_type, "%s", fam->model_type);
    const char *mt;
    if (lmp_gguf_get_str(g, "lmpress.model_type", &mt) == 0 && strlen(mt) < sizeof c->model_type &&
        lmp_family_find(mt) && strcmp(lmp_family_find(mt)->gguf_arch, arch) == 0)
        snprintf(c->model_type, sizeof c->model_type, "%s", mt);
    if ((rc = lmp_config_apply_family(c)))
        return lmp_err_prefix(rc, "%s", g->path);
    c->norm_plus1 = false; /* llama.cpp stores gemma's norms as 1 + w */
    if ((rc = gguf_int(g, arch, "embedding_length", &c->hidden_size, true, 0)) ||
        (rc = gguf_int(g, arch, "feed_forward_length", &c->intermediate_size, true, 0)) ||
        (rc = gguf_int(g, arch, "block_count", &c->n_layers, true, 0)) ||
        (rc = gguf_int(g, arch, "attention.head_count", &c->n_heads, true, 0)) ||
        (rc = gguf_int(g, arch, "attention.head_count_kv", &c->n_kv_heads, false, 0)) ||
        (rc = gguf_int(g, arch, "context_length", &c->max_pos, false, 2048)))
        return rc;
    if (c->n_kv_heads == 0)
        c->n_kv_heads = c->n_heads;
    if (c->hidden_size <= 0 || c->n_heads <= 0 || c->n_layers <= 0 || c->n_heads % c->n_kv_heads)
        return lmp_err(LMP_EFORMAT, "%s: inconsistent hyper-parameters", g->path);
    if ((rc = gguf_int(g, arch, "attention.key_length", &c->head_dim, false, c->hidden_size / c->n_heads)))
        return rc;
    int rope_dim;
    if ((rc = gguf_int(g, arch, "rope.dimension_count", &rope_dim, false, c->head_dim)))
        return rc;
    if (rope_dim <= 0 || rope_dim > c->head_dim || rope_dim % 2)
        return lmp_err(LMP_EFORMAT, "%s: %s.rope.dimension_count %d for head_dim %d", g->path, arch,
                       rope_dim, c->head_dim);
    if (rope_dim != c->head_dim && strcmp(arch, "phi3") != 0)
        return lmp_err(LMP_EUNSUPPORTED, "%s: partial RoPE (%d of %d dims) is not supported for %s",
                       g->path, rope_dim, c->head_dim, arch);
    c->rope_dim = rope_dim;
    if (rope_dim != c->head_dim)
        c->partial_rotary = (float)rope_dim / (float)c->head_dim;
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", arch);
    if ((rc = gguf_float(g, k, &c->rms_eps, 1e-5f)))
        return rc;
    snprintf(k, sizeof k, "%s.rope.freq_base", arch);
    if ((rc = gguf_float(g, k, &c->rope_theta, 10000.0f)))
        return rc;
    const char *st;
    snprintf(k, sizeof k, "%s.rope.scaling.type", arch);
    if (lmp_gguf_get_str(g, k, &st) == 0 && strcmp(st, "linear") == 0) {
        c->rope_type = LMP_ROPE_LINEAR;
        snprintf(k, sizeof k, "%s.rope.scaling.factor", arch);
        if ((rc = gguf_float(g, k, &c->rope_factor, 1.0f)))
            return rc;
    }
    /* llama.cpp stores Llama 3 scaling as a rope_freqs tensor; lmpress also writes the
     * parameters it was computed from, which the engine uses. */
    double f;
    if (lmp_gguf_get_float(g, "lmpress.rope.llama3.factor", &f) == 0) {
        c->rope_type = LMP_ROPE_LLAMA3;
        c->rope_factor = (float)f;
        if ((rc = gguf_float(g, "lmpress.rope.llama3.low_freq_factor", &c->rope_low_freq_factor, 1)) ||
            (rc = gguf_float(g, "lmpress.rope.llama3.high_freq_factor", &c->rope_high_freq_factor, 4)))
            return rc;
        int64_t om;
        c->rope_orig_max_pos = lmp_gguf_get_int(g, "lmpress.rope.llama3.original_max_position_embeddings", &om) == 0
                                   ? (int)om
                                   : 8192;
    } else if (lmp_gguf_find_tensor(g, "rope_freqs.weight")) {
        /* llama.cpp's own Llama 3 conversions: per-pair divisors of the frequencies */
        if ((rc = gguf_factors(g, "rope_freqs.weight", c->rope_short, c->rope_dim / 2)))
            return rc;
        c->rope_type = LMP_ROPE_FREQS;
        c->n_rope_factors = c->rope_dim / 2;
    }
    const lmp_gguf_kv *toks = lmp_gguf_find_kv(g, "tokenizer.ggml.tokens");
    const lmp_tensor *emb = lmp_gguf_find_tensor(g, "token_embd.weight");
    snprintf(k, sizeof k, "%s.vocab_size", arch);
    int vs = 0;
    if (gguf_int(g, arch, "vocab_size", &vs, false, 0) == 0 && vs > 0)
        c->vocab_size = vs;
    else if (emb && emb->ndim == 2)
        c->vocab_size = (int)emb->shape[0];
    else if (toks)
        c->vocab_size = (int)toks->n;
    c->tie_embeddings = lmp_gguf_find_tensor(g, "output.weight") == NULL;
    c->attn_bias = lmp_gguf_find_tensor(g, "blk.0.attn_q.bias") != NULL;
    c->o_bias = lmp_gguf_find_tensor(g, "blk.0.attn_output.bias") != NULL;
    c->mlp_bias = lmp_gguf_find_tensor(g, "blk.0.ffn_down.bias") != NULL;
    int64_t v;
    c->bos_id = lmp_gguf_get_int(g, "tokenizer.ggml.bos_token_id", &v) == 0 ? (int)v : -1;
    c->eos_id = lmp_gguf_get_int(g, "tokenizer.ggml.eos_token_id", &v) == 0 ? (int)v : -1;
    c->pad_id = lmp_gguf_get_int(g, "tokenizer.ggml.padding_token_id", &v) == 0 ? (int)v : -1;
    snprintf(k, sizeof k, "%s.attention.sliding_window", arch);
    c->sliding_window = lmp_gguf_get_int(g, k, &v) == 0 ? (int)v : 0;
    return family_from_gguf(c, g, arch);
}

/* ---------------------------------------------------------------- open/close */

static bool is_gguf_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[4] = {0};
    if (!f)
        return false;
    size_t n = fread(magic, 1, 4, f);
    fclose(f);
    return n == 4 && memcmp(magic, "GGUF", 4) == 0;
}

static char *dirname_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 2);
    if (!d)
        return NULL;
    memcpy(d, path, n ? n : 1);
    d[n ? n : 1] = 0;
    if (!n)
        d[0] = '/';
    return d;
}

int lmp_ckpt_open_ex(lmp_ckpt *c, const char *path, bool require_config)
{
    int rc = LMP_OK;
    memset(c, 0, sizeof *c);
    c->path = strdup(path);
    if (!lmp_path_exists(path))
        return lmp_err(LMP_ENOTFOUND, "%s: no such file or folder", path);
    if (lmp_path_is_dir(path)) {
        c->kind = LMP_CKPT_HF;
        c->dir = strdup(path);
    } else if (is_gguf_file(path) || lmp_str_endswith(path, ".gguf")) {
        c->kind = LMP_CKPT_GGUF;
    } else {
        c->kind = LMP_CKPT_SAFETENSORS;
        c->dir = dirname_of(path);
    }
    if (c->kind == LMP_CKPT_GGUF) {
        if ((rc = lmp_gguf_open(&c->gguf, path)))
            goto fail;
        c->n_tensors = (int)c->gguf.n_tensors;
        c->tensors = c->gguf.tensors;
        rc = config_from_gguf(&c->config, &c->gguf);
        if (rc && require_config)
            goto fail;
        c->has_config = rc == LMP_OK;
        if (rc)
            snprintf(c->config_error, sizeof c->config_error, "%s", lmp_errmsg());
        rc = LMP_OK;
        const lmp_family *fam = c->has_config ? lmp_family_by_arch(c->config.arch) : NULL;
        c->qk_interleaved = fam ? fam->qk_interleaved : strcmp(c->config.arch, "llama") == 0;
        return LMP_OK;
    }
    char *cfg = lmp_path_join(c->dir, "config.json");
    if (lmp_path_exists(cfg)) {
        rc = lmp_config_load(&c->config, cfg);
        c->has_config = rc == LMP_OK;
        if (rc && !require_config) {
            snprintf(c->config_error, sizeof c->config_error, "%s", lmp_errmsg());
            rc = LMP_OK;
        }
    } else if (c->kind == LMP_CKPT_HF && require_config) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: folder has no config.json", path);
    }
    free(cfg);
    if (rc)
        goto fail;
    if ((rc = lmp_st_open(&c->st, path)))
        goto fail;
    c->n_tensors = c->st.n_tensors;
    c->tensors = c->st.tensors;
    char *tok = lmp_path_join(c->dir, "tokenizer.json");
    if (lmp_path_exists(tok))
        c->tokenizer_path = tok;
    else
        free(tok);
    return LMP_OK;
fail:
    lmp_ckpt_close(c);
    return rc;
}

int lmp_ckpt_open(lmp_ckpt *c, const char *path) { return lmp_ckpt_open_ex(c, path, true); }

void lmp_ckpt_close(lmp_ckpt *c)
{
    if (!c)
        return;
    lmp_st_close(&c->st);
    lmp_gguf_close(&c->gguf);
    free(c->path);
    free(c->dir);
    free(c->tokenizer_path);
    memset(c, 0, sizeof *c);
}

const lmp_tensor *lmp_ckpt_find(const lmp_ckpt *c, const char *name)
{
    if (c->kind == LMP_CKPT_GGUF)
        return lmp_gguf_find_tensor(&c->gguf, name);
    return lmp_st_find(&c->st, name);
}

const lmp_tensor *lmp_ckpt_find_hf(const lmp_ckpt *c, const char *hf_name)
{
    if (c->kind != LMP_CKPT_GGUF)
        return lmp_st_find(&c->st, hf_name);
    char gg[LMP_MAX_NAME];
    if (lmp_name_hf_to_gguf_arch(c->config.arch, hf_name, gg, sizeof gg))
        return NULL;
    return lmp_gguf_find_tensor(&c->gguf, gg);
}
