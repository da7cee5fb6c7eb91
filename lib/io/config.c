/*
 * config.json -> lmp_config for the decoder families lmpress runs, and back. The families
 * are one table (g_families): defaults and block features per model_type; the few keys a
 * family has of its own are parsed below it. Defaults follow the transformers
 * configuration classes of each model_type; anything required that is missing,
 * non-numeric, inconsistent or out of range is an error naming the file and the key. Not
 * a general JSON schema checker: keys we do not use are ignored.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* model_type, HF class, GGUF arch, interleaved, qkv_bias, norm_plus1, embed_sqrt,
 * tied_always, fused, norms, qk_norm, act, max_pos, theta, eps */
static const lmp_family g_families[] = {
    {"llama", "LlamaForCausalLM", "llama", true, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 2048, 10000.0f, 1e-6f},
    {"mistral", "MistralForCausalLM", "llama", true, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 2048, 10000.0f, 1e-6f},
    {"qwen2", "Qwen2ForCausalLM", "qwen2", false, true, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 32768, 10000.0f, 1e-6f},
    {"phi3", "Phi3ForCausalLM", "phi3", false, false, false, false, false, true, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 4096, 10000.0f, 1e-5f},
    {"gemma", "GemmaForCausalLM", "gemma", false, false, true, true, true, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_GELU_TANH, 8192, 10000.0f, 1e-6f},
    {"gemma2", "Gemma2ForCausalLM", "gemma2", false, false, true, true, true, false, LMP_NORM_SANDWICH,
     LMP_QKNORM_NONE, LMP_ACT_GELU_TANH, 8192, 10000.0f, 1e-6f},
    {"gemma3_text", "Gemma3ForCausalLM", "gemma3", false, false, true, true, true, false,
     LMP_NORM_SANDWICH, LMP_QKNORM_HEAD, LMP_ACT_GELU_TANH, 131072, 1000000.0f, 1e-6f},
    {"qwen3", "Qwen3ForCausalLM", "qwen3", false, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_HEAD, LMP_ACT_SILU, 32768, 10000.0f, 1e-6f},
    {"smollm3", "SmolLM3ForCausalLM", "smollm3", true, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 32768, 2000000.0f, 1e-6f},
    {"granite", "GraniteForCausalLM", "granite", true, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 2048, 10000.0f, 1e-6f},
    {"mixtral", "MixtralForCausalLM", "llama", true, false, false, false, false, false, LMP_NORM_PRE,
     LMP_QKNORM_NONE, LMP_ACT_SILU, 131072, 1000000.0f, 1e-5f},
    {"qwen3_moe", "Qwen3MoeForCausalLM", "qwen3moe", false, false, false, false, false, false,
     LMP_NORM_PRE, LMP_QKNORM_HEAD, LMP_ACT_SILU, 32768, 10000.0f, 1e-6f},
    {"granitemoe", "GraniteMoeForCausalLM", "granitemoe", true, false, false, false, false, false,
     LMP_NORM_PRE, LMP_QKNORM_NONE, LMP_ACT_SILU, 2048, 10000.0f, 1e-6f},
    {"olmo2", "Olmo2ForCausalLM", "olmo2", false, false, false, false, false, false, LMP_NORM_POST,
     LMP_QKNORM_FULL, LMP_ACT_SILU, 2048, 10000.0f, 1e-5f},
    {NULL},
};

const lmp_family *lmp_families(void) { return g_families; }

const char *lmp_config_supported(void)
{
    return "llama, mistral, qwen2, phi3, gemma, gemma2, gemma3_text, qwen3, smollm3, granite, "
           "olmo2, mixtral, qwen3_moe, granitemoe";
}

const lmp_family *lmp_family_find(const char *model_type)
{
    for (const lmp_family *f = g_families; f->model_type; f++)
        if (strcmp(f->model_type, model_type) == 0)
            return f;
    return NULL;
}

const lmp_family *lmp_family_by_arch(const char *gguf_arch)
{
    for (const lmp_family *f = g_families; f->model_type; f++)
        if (strcmp(f->gguf_arch, gguf_arch) == 0)
            return f;
    return NULL;
}

int lmp_config_apply_family(lmp_config *c)
{
    const lmp_family *f = lmp_family_find(c->model_type);
    if (!f)
        return lmp_err(LMP_EUNSUPPORTED, "model_type \"%s\" is not supported (supported: %s)",
                       c->model_type, lmp_config_supported());
    snprintf(c->arch, sizeof c->arch, "%s", f->gguf_arch);
    c->norm_plus1 = f->norm_plus1;
    c->embed_sqrt = f->embed_sqrt;
    c->fused_qkv = c->fused_gate_up = f->fused;
    c->norms = f->norms;
    c->qk_norm = f->qk_norm;
    c->act = f->act;
    if (f->qkv_bias)
        c->attn_bias = true;
    if (f->tied_always)
        c->tie_embeddings = true;
    return LMP_OK;
}

int lmp_config_window(const lmp_config *c, int layer)
{
    if (c->sliding_window <= 0)
        return 0;
    if (!c->swa_layers)
        return c->sliding_window;
    return layer >= 0 && layer < LMP_MAX_LAYERS && (c->layer_flags[layer] & LMP_LAYER_SLIDING)
               ? c->sliding_window
               : 0;
}
/* Reads an integer key. Absent: *out = def and ok unless required. */
static int get_int(const cJSON *root, const char *key, int *out, int def, bool required,
                   const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return lmp_err(LMP_EFORMAT, "%s: required key \"%s\" is missing", name, key);
        *out = def;
        return LMP_OK;
    }
    if (cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0) /* eos_token_id: [a, b] */
        v = cJSON_GetArrayItem(v, 0);
    if (!cJSON_IsNumber(v))
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" must be a number", name, key);
    double d = v->valuedouble;
    if (d != floor(d) || d < -2147483648.0 || d > 2147483647.0)
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" = %g is not an integer in range", name, key, d);
    *out = (int)d;
    return LMP_OK;
}

static int get_float(const cJSON *root, const char *key, float *out, float def, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LMP_OK;
    }
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" must be a finite number", name, key);
    *out = (float)v->valuedouble;
    return LMP_OK;
}

static int get_bool(const cJSON *root, const char *key, bool *out, bool def, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LMP_OK;
    }
    if (!cJSON_IsBool(v))
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" must be true or false", name, key);
    *out = cJSON_IsTrue(v);
    return LMP_OK;
}

/* A list of numbers into out[0..want): its length must be want. */
static int get_float_list(const cJSON *o, const char *key, float *out, int want, const char *name,
                          const char *where)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsArray(v))
        return lmp_err(LMP_EFORMAT, "%s: %s \"%s\" must be a list of numbers", name, where, key);
    int n = cJSON_GetArraySize(v);
    if (n != want)
        return lmp_err(LMP_EFORMAT,
                       "%s: %s \"%s\" has %d entries; the rotary dimension implies %d (one per "
                       "rotated pair)",
                       name, where, key, n, want);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsNumber(e) || !isfinite(e->valuedouble) || e->valuedouble <= 0)
            return lmp_err(LMP_EFORMAT, "%s: %s \"%s\"[%d] must be a positive number", name, where,
                           key, i);
        out[i++] = (float)e->valuedouble;
    }
    return LMP_OK;
}

/* rope_scaling (or a rope_parameters entry): the type and its parameters. The rotary
 * dimension (rope_dim) must be known for longrope. */
static int parse_rope_scaling(lmp_config *c, const cJSON *rs, const char *name, const char *where)
{
    int rc;
    c->rope_type = LMP_ROPE_NONE;
    c->rope_factor = 1;
    if (!rs || cJSON_IsNull(rs))
        return LMP_OK;
    if (!cJSON_IsObject(rs))
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" must be an object or null", name, where);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t))
        return lmp_err(LMP_EFORMAT, "%s: %s has no \"rope_type\" string", name, where);
    if ((rc = get_float(rs, "factor", &c->rope_factor, 1.0f, name)))
        return rc;
    const char *ty = t->valuestring;
    if (strcmp(ty, "default") == 0) {
        c->rope_type = LMP_ROPE_NONE;
        c->rope_factor = 1;
    } else if (strcmp(ty, "linear") == 0) {
        c->rope_type = LMP_ROPE_LINEAR;
    } else if (strcmp(ty, "llama3") == 0) {
        c->rope_type = LMP_ROPE_LLAMA3;
        if ((rc = get_float(rs, "low_freq_factor", &c->rope_low_freq_factor, 1.0f, name)) ||
            (rc = get_float(rs, "high_freq_factor", &c->rope_high_freq_factor, 4.0f, name)) ||
            (rc = get_int(rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 8192, false,
                          name)))
            return rc;
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return lmp_err(LMP_EFORMAT, "%s: %s high_freq_factor must exceed low_freq_factor", name,
                           where);
    } else if (strcmp(ty, "longrope") == 0 || strcmp(ty, "su") == 0) {
        c->rope_type = LMP_ROPE_LONGROPE;
        int rd = c->rope_dim > 0 ? c->rope_dim : c->head_dim;
        c->n_rope_factors = rd / 2;
        if (c->n_rope_factors > LMP_MAX_ROPE_FACTORS)
            return lmp_err(LMP_EUNSUPPORTED, "%s: longrope over %d rotated pairs (at most %d)", name,
                           c->n_rope_factors, LMP_MAX_ROPE_FACTORS);
        if ((rc = get_float_list(rs, "short_factor", c->rope_short, c->n_rope_factors, name, where)) ||
            (rc = get_float_list(rs, "long_factor", c->rope_long, c->n_rope_factors, name, where)) ||
            (rc = get_float(rs, "attention_factor", &c->rope_attn_factor, 0.0f, name)))
            return rc;
        int om = 0;
        if ((rc = get_int(rs, "original_max_position_embeddings", &om, 0, false, name)))
            return rc;
        if (om > 0)
            c->rope_orig_max_pos = om;
        if (c->rope_attn_factor < 0)
            return lmp_err(LMP_EFORMAT, "%s: %s attention_factor must be positive", name, where);
    } else {
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: %s type \"%s\" is not supported (supported: default, linear, llama3, "
                       "longrope)",
                       name, where, ty);
    }
    if (c->rope_factor <= 0)
        return lmp_err(LMP_EFORMAT, "%s: %s factor must be positive", name, where);
    return LMP_OK;
}

/* "layer_types" (gemma2/3, transformers >= 4.53): one string per layer. */
static int parse_layer_types(lmp_config *c, const cJSON *lt, const char *name)
{
    if (!cJSON_IsArray(lt))
        return lmp_err(LMP_EFORMAT, "%s: \"layer_types\" must be a list of strings", name);
    int n = cJSON_GetArraySize(lt);
    if (n != c->n_layers)
        return lmp_err(LMP_EFORMAT, "%s: \"layer_types\" has %d entries for %d layers (num_hidden_layers)",
                       name, n, c->n_layers);
    int i = 0;
    const cJSON *e;
    cJSON_ArrayForEach(e, lt)
    {
        if (!cJSON_IsString(e))
            return lmp_err(LMP_EFORMAT, "%s: \"layer_types\"[%d] must be a string", name, i);
        if (strcmp(e->valuestring, "sliding_attention") == 0)
            c->layer_flags[i] |= LMP_LAYER_SLIDING;
        else if (strcmp(e->valuestring, "full_attention") != 0)
            return lmp_err(LMP_EUNSUPPORTED,
                           "%s: \"layer_types\"[%d] = \"%s\" is not supported (sliding_attention, "
                           "full_attention)",
                           name, i, e->valuestring);
        i++;
    }
    return LMP_OK;
}

/* The causal-LM heads lmpress runs: "...ForCausalLM" (and the multimodal wrappers whose
 * text_config it reads). Anything else (sequence classification, token classification,
 * a bare "...Model") has no language-model head and is refused. */
static int check_architectures(const cJSON *root, const char *name)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(root, "architectures");
    if (!a || cJSON_IsNull(a))
        return LMP_OK;
    if (!cJSON_IsArray(a))
        return lmp_err(LMP_EFORMAT, "%s: \"architectures\" must be a list of strings", name);
    const cJSON *e;
    const char *first = NULL;
    cJSON_ArrayForEach(e, a)
    {
        if (!cJSON_IsString(e))
            return lmp_err(LMP_EFORMAT, "%s: \"architectures\" must be a list of strings", name);
        if (!first)
            first = e->valuestring;
        if (lmp_str_endswith(e->valuestring, "ForCausalLM") ||
            lmp_str_endswith(e->valuestring, "LMHeadModel") ||
            lmp_str_endswith(e->valuestring, "ForConditionalGeneration"))
            return LMP_OK;
    }
    if (!first)
        return LMP_OK;
    return lmp_err(LMP_EUNSUPPORTED,
                   "%s: architectures \"%s\" is not a causal language model (lmpress runs "
                   "...ForCausalLM checkpoints; a classification or bare-encoder head has no "
                   "language-model output)",
                   name, first);
}

/* The mixture-of-experts keys of mixtral, qwen3_moe and granitemoe (transformers'
 * MixtralConfig, Qwen3MoeConfig, GraniteMoeConfig defaults), range-checked. */
static int parse_moe(lmp_config *c, const cJSON *root, const char *name)
{
    const bool q3 = strcmp(c->model_type, "qwen3_moe") == 0;
    const char *ne_key = q3 ? "num_experts" : "num_local_experts";
    int rc;
    c->moe_sparse_step = 1;
    c->moe_norm_topk = true;
    if ((rc = get_int(root, ne_key, &c->n_experts, q3 ? 128 : 8, false, name)) ||
        (rc = get_int(root, "num_experts_per_tok", &c->n_experts_used, q3 ? 8 : 2, false, name)))
        return rc;
    if (c->n_experts <= 0)
        return lmp_err(LMP_EFORMAT, "%s: \"%s\" = %d must be positive", name, ne_key, c->n_experts);
    if (c->n_experts_used <= 0 || c->n_experts_used > c->n_experts)
        return lmp_err(LMP_EFORMAT,
                       "%s: \"num_experts_per_tok\" = %d must be between 1 and \"%s\" = %d",
                       name, c->n_experts_used, ne_key, c->n_experts);
    c->moe_ff = c->intermediate_size;
    if (!q3)
        return LMP_OK;
    if ((rc = get_int(root, "moe_intermediate_size", &c->moe_ff, 768, false, name)) ||
        (rc = get_bool(root, "norm_topk_prob", &c->moe_norm_topk, false, name)) ||
        (rc = get_int(root, "decoder_sparse_step", &c->moe_sparse_step, 1, false, name)))
        return rc;
    if (c->moe_ff <= 0)
        return lmp_err(LMP_EFORMAT, "%s: \"moe_intermediate_size\" = %d must be positive", name,
                       c->moe_ff);
    if (c->moe_sparse_step <= 0)
        return lmp_err(LMP_EFORMAT, "%s: \"decoder_sparse_step\" = %d must be positive", name,
                       c->moe_sparse_step);
    const cJSON *mo = cJSON_GetObjectItemCaseSensitive(root, "mlp_only_layers");
    if (!mo || cJSON_IsNull(mo))
        return LMP_OK;
    if (!cJSON_IsArray(mo))
        return lmp_err(LMP_EFORMAT, "%s: \"mlp_only_layers\" must be a list of layer indices", name);
    const int n = cJSON_GetArraySize(mo);
    if (n > (int)(sizeof c->mlp_only / sizeof c->mlp_only[0]))
        return lmp_err(LMP_EUNSUPPORTED, "%s: \"mlp_only_layers\" lists %d layers (at most %d supported)",
                       name, n, (int)(sizeof c->mlp_only / sizeof c->mlp_only[0]));
    for (int i = 0; i < n; i++) {
        const cJSON *v = cJSON_GetArrayItem(mo, i);
        if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
            v->valuedouble >= c->n_layers)
            return lmp_err(LMP_EFORMAT,
                           "%s: \"mlp_only_layers\"[%d] must be a layer index in [0, %d)", name, i,
                           c->n_layers);
        c->mlp_only[c->n_mlp_only++] = (int)v->valuedouble;
    }
    return LMP_OK;
}

/* The parse proper, on the object holding the model's keys. */
static int parse_obj(lmp_config *c, const cJSON *root, const char *name)
{
    int rc;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt))
        return lmp_err(LMP_EFORMAT, "%s: \"model_type\" string is missing", name);
    const lmp_family *fam = lmp_family_find(mt->valuestring);
    if (!fam)
        return lmp_err(LMP_EUNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: %s)", name,
                       mt->valuestring, lmp_config_supported());
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    const char *ty = c->model_type;
    bool qwen2 = strcmp(ty, "qwen2") == 0, qwen3 = strcmp(ty, "qwen3") == 0;
    bool phi3 = strcmp(ty, "phi3") == 0, gemma2 = strcmp(ty, "gemma2") == 0;
    bool gemma3 = strcmp(ty, "gemma3_text") == 0, gemma = fam->norm_plus1;
    bool smol = strcmp(ty, "smollm3") == 0;
    bool granite = strcmp(ty, "granite") == 0 || strcmp(ty, "granitemoe") == 0;
    bool moe = strcmp(ty, "mixtral") == 0 || strcmp(ty, "qwen3_moe") == 0 || strcmp(ty, "granitemoe") == 0;

    if ((rc = get_int(root, "hidden_size", &c->hidden_size, 0, true, name)) ||
        (rc = get_int(root, "intermediate_size", &c->intermediate_size, 0, true, name)) ||
        (rc = get_int(root, "num_hidden_layers", &c->n_layers, 0, true, name)) ||
        (rc = get_int(root, "num_attention_heads", &c->n_heads, 0, true, name)) ||
        (rc = get_int(root, "vocab_size", &c->vocab_size, 0, true, name)))
        return rc;
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->vocab_size <= 0)
        return lmp_err(LMP_EFORMAT, "%s: sizes must be positive (hidden_size %d, intermediate_size %d, "
                                    "num_hidden_layers %d, num_attention_heads %d, vocab_size %d)",
                       name, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads, c->vocab_size);
    if (c->n_layers > LMP_MAX_LAYERS)
        return lmp_err(LMP_EUNSUPPORTED, "%s: num_hidden_layers %d (at most %d)", name, c->n_layers,
                       LMP_MAX_LAYERS);
    if ((rc = get_int(root, "num_key_value_heads", &c->n_kv_heads, c->n_heads, false, name)))
        return rc;
    if (c->hidden_size % c->n_heads && !cJSON_GetObjectItemCaseSensitive(root, "head_dim"))
        return lmp_err(LMP_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", name,
                       c->hidden_size, c->n_heads);
    if ((rc = get_int(root, "head_dim", &c->head_dim, c->hidden_size / c->n_heads, false, name)))
        return rc;
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 || c->head_dim % 2)
        return lmp_err(LMP_EFORMAT,
                       "%s: num_attention_heads %d must be a multiple of num_key_value_heads %d, and head_dim "
                       "%d positive and even",
                       name, c->n_heads, c->n_kv_heads, c->head_dim);
    if ((rc = lmp_config_apply_family(c)))
        return lmp_err_prefix(rc, "%s", name);
    if ((rc = get_int(root, "max_position_embeddings", &c->max_pos, fam->default_max_pos, false, name)) ||
        (rc = get_float(root, "rms_norm_eps", &c->rms_eps, fam->default_eps, name)) ||
        (rc = get_float(root, "rope_theta", &c->rope_theta, fam->default_theta, name)) ||
        (rc = get_bool(root, "tie_word_embeddings", &c->tie_embeddings, fam->tied_always || fam->norm_plus1, name)) ||
        (rc = get_bool(root, "mlp_bias", &c->mlp_bias, false, name)) ||
        (rc = get_int(root, "bos_token_id", &c->bos_id, -1, false, name)) ||
        (rc = get_int(root, "eos_token_id", &c->eos_id, -1, false, name)) ||
        (rc = get_int(root, "pad_token_id", &c->pad_id, -1, false, name)))
        return rc;
    if (fam->tied_always && !c->tie_embeddings)
        return lmp_err(LMP_EUNSUPPORTED, "%s: %s always ties its embeddings; tie_word_embeddings false is "
                                         "not supported", name, ty);
    if (c->max_pos <= 0)
        return lmp_err(LMP_EFORMAT, "%s: \"max_position_embeddings\" must be positive", name);
    if (qwen2) {
        c->attn_bias = true; /* Qwen2Attention: q/k/v with bias, o_proj without */
        c->o_bias = false;
    } else if (!phi3 && !gemma) {
        bool ab;
        if ((rc = get_bool(root, "attention_bias", &ab, false, name)))
            return rc;
        c->attn_bias = c->o_bias = ab;
    }
    if (phi3 || gemma)
        c->mlp_bias = false;

    /* partial rotary (phi3, and any family's partial_rotary_factor) */
    const cJSON *prf = cJSON_GetObjectItemCaseSensitive(root, "partial_rotary_factor");
    c->rope_dim = c->head_dim;
    if (prf && !cJSON_IsNull(prf)) {
        if (!cJSON_IsNumber(prf) || !(prf->valuedouble > 0 && prf->valuedouble <= 1))
            return lmp_err(LMP_EFORMAT, "%s: \"partial_rotary_factor\" must be a number in (0, 1]", name);
        c->partial_rotary = (float)prf->valuedouble;
        c->rope_dim = (int)(c->head_dim * prf->valuedouble);
        if (c->rope_dim < 2 || c->rope_dim % 2)
            return lmp_err(LMP_EFORMAT,
                           "%s: \"partial_rotary_factor\" %g of head_dim %d gives %d rotated dims (must "
                           "be even and at least 2)",
                           name, prf->valuedouble, c->head_dim, c->rope_dim);
    }
    if ((rc = get_int(root, "original_max_position_embeddings", &c->rope_orig_max_pos, 0, false, name)))
        return rc;

    /* RoPE: rope_theta / rope_scaling, or transformers v5 rope_parameters (possibly one
     * entry per layer type: full_attention for the global layers, sliding_attention for the
     * local ones). */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(root, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(root, "rope_scaling");
    const char *rs_where = "rope_scaling";
    if (rp && !cJSON_IsNull(rp)) {
        if (!cJSON_IsObject(rp))
            return lmp_err(LMP_EFORMAT, "%s: \"rope_parameters\" must be an object", name);
        const cJSON *full = cJSON_GetObjectItemCaseSensitive(rp, "full_attention");
        const cJSON *slide = cJSON_GetObjectItemCaseSensitive(rp, "sliding_attention");
        if (full || slide) {
            if ((full && !cJSON_IsObject(full)) || (slide && !cJSON_IsObject(slide)))
                return lmp_err(LMP_EFORMAT, "%s: \"rope_parameters\" entries must be objects", name);
            if (slide && (rc = get_float(slide, "rope_theta", &c->rope_local_theta, 0.0f, name)))
                return rc;
            rp = full;
        }
        if (rp) {
            if ((rc = get_float(rp, "rope_theta", &c->rope_theta, c->rope_theta, name)))
                return rc;
            rs = rp;
            rs_where = "rope_parameters";
        }
    }
    if ((rc = parse_rope_scaling(c, rs, name, rs_where)))
        return rc;
    if (c->rms_eps <= 0 || c->rope_theta <= 0)
        return lmp_err(LMP_EFORMAT, "%s: rms_norm_eps and rope_theta must be positive", name);
    if (c->rope_type == LMP_ROPE_LONGROPE && c->rope_orig_max_pos <= 0)
        c->rope_orig_max_pos = c->max_pos;

    /* sliding windows */
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    bool use_sw = true;
    if ((qwen2 || qwen3 || smol) && (rc = get_bool(root, "use_sliding_window", &use_sw, false, name)))
        return rc;
    if (sw && !cJSON_IsNull(sw)) {
        if (!cJSON_IsNumber(sw) || sw->valuedouble < 0 || sw->valuedouble != floor(sw->valuedouble) ||
            sw->valuedouble > 2147483647.0)
            return lmp_err(LMP_EFORMAT, "%s: \"sliding_window\" must be a non-negative integer", name);
        if (use_sw)
            c->sliding_window = (int)sw->valuedouble;
    }
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(root, "layer_types");
    if (lt && !cJSON_IsNull(lt)) {
        if ((rc = parse_layer_types(c, lt, name)))
            return rc;
        c->swa_layers = true;
    } else if (gemma2) {
        for (int l = 0; l < c->n_layers; l++) /* Gemma2: even layers local */
            if (l % 2 == 0)
                c->layer_flags[l] |= LMP_LAYER_SLIDING;
        c->swa_layers = true;
    } else if (gemma3) {
        int pat = 6;
        if ((rc = get_int(root, "sliding_window_pattern", &pat, 6, false, name)) ||
            (!cJSON_GetObjectItemCaseSensitive(root, "sliding_window_pattern") &&
             (rc = get_int(root, "_sliding_window_pattern", &pat, 6, false, name))))
            return rc;
        if (pat <= 0)
            return lmp_err(LMP_EFORMAT, "%s: \"sliding_window_pattern\" must be positive", name);
        for (int l = 0; l < c->n_layers; l++)
            if ((l + 1) % pat)
                c->layer_flags[l] |= LMP_LAYER_SLIDING;
        c->swa_layers = true;
    }
    if (c->swa_layers && c->sliding_window <= 0)
        for (int l = 0; l < c->n_layers; l++)
            if (c->layer_flags[l] & LMP_LAYER_SLIDING)
                return lmp_err(LMP_EFORMAT, "%s: layer %d has sliding attention but there is no "
                                            "\"sliding_window\"", name, l);

    /* gemma2/3: attention scale and soft-capping */
    if (gemma2 || gemma3) {
        if ((rc = get_float(root, "query_pre_attn_scalar", &c->query_pre_attn_scalar, (float)c->head_dim, name)) ||
            (rc = get_float(root, "attn_logit_softcapping", &c->attn_softcap, gemma2 ? 50.0f : 0.0f, name)) ||
            (rc = get_float(root, "final_logit_softcapping", &c->final_softcap, gemma2 ? 30.0f : 0.0f, name)))
            return rc;
        if (c->query_pre_attn_scalar <= 0 || c->attn_softcap < 0 || c->final_softcap < 0)
            return lmp_err(LMP_EFORMAT, "%s: query_pre_attn_scalar must be positive and the soft-caps "
                                        "non-negative", name);
    }
    if (gemma3) {
        if (c->rope_local_theta <= 0 &&
            (rc = get_float(root, "rope_local_base_freq", &c->rope_local_theta, 10000.0f, name)))
            return rc;
        if (c->rope_local_theta <= 0)
            return lmp_err(LMP_EFORMAT, "%s: \"rope_local_base_freq\" must be positive", name);
    }
    /* smollm3: layers without RoPE */
    if (smol) {
        const cJSON *nr = cJSON_GetObjectItemCaseSensitive(root, "no_rope_layers");
        if ((rc = get_int(root, "no_rope_layer_interval", &c->no_rope_interval, 4, false, name)))
            return rc;
        if (nr && !cJSON_IsNull(nr)) {
            if (!cJSON_IsArray(nr) || cJSON_GetArraySize(nr) != c->n_layers)
                return lmp_err(LMP_EFORMAT, "%s: \"no_rope_layers\" must be a list of %d entries (one "
                                            "per layer), has %d",
                               name, c->n_layers, cJSON_IsArray(nr) ? cJSON_GetArraySize(nr) : -1);
            int i = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, nr)
            {
                if (!cJSON_IsNumber(e) || (e->valuedouble != 0 && e->valuedouble != 1))
                    return lmp_err(LMP_EFORMAT, "%s: \"no_rope_layers\"[%d] must be 0 or 1", name, i);
                if (e->valuedouble == 0) /* 1 = the layer uses RoPE */
                    c->layer_flags[i] |= LMP_LAYER_NOROPE;
                i++;
            }
        } else {
            if (c->no_rope_interval <= 0)
                return lmp_err(LMP_EFORMAT, "%s: \"no_rope_layer_interval\" must be positive", name);
            for (int l = 0; l < c->n_layers; l++)
                if ((l + 1) % c->no_rope_interval == 0)
                    c->layer_flags[l] |= LMP_LAYER_NOROPE;
        }
    }
    /* granite multipliers */
    if (granite) {
        if ((rc = get_float(root, "embedding_multiplier", &c->embed_multiplier, 1.0f, name)) ||
            (rc = get_float(root, "attention_multiplier", &c->attn_multiplier, 1.0f, name)) ||
            (rc = get_float(root, "residual_multiplier", &c->residual_multiplier, 1.0f, name)) ||
            (rc = get_float(root, "logits_scaling", &c->logits_scaling, 1.0f, name)))
            return rc;
        if (c->embed_multiplier <= 0 || c->attn_multiplier <= 0 || c->residual_multiplier <= 0 ||
            c->logits_scaling <= 0)
            return lmp_err(LMP_EFORMAT, "%s: granite multipliers (embedding_multiplier, "
                                        "attention_multiplier, residual_multiplier, logits_scaling) "
                                        "must be positive", name);
    }

    /* activation */
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, gemma ? "hidden_activation" : "hidden_act");
    if (gemma && (!act || cJSON_IsNull(act)))
        act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && !cJSON_IsNull(act)) {
        const char *a = cJSON_IsString(act) ? act->valuestring : "?";
        bool ok = gemma ? strcmp(a, "gelu_pytorch_tanh") == 0 || strcmp(a, "gelu") == 0 ||
                              strcmp(a, "gelu_new") == 0
                        : strcmp(a, "silu") == 0;
        if (!ok)
            return lmp_err(LMP_EUNSUPPORTED, "%s: %s \"%s\" is not supported for %s (only %s)", name,
                           gemma ? "hidden_activation" : "hidden_act", a, ty,
                           gemma ? "gelu_pytorch_tanh" : "silu");
    }
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (!cJSON_IsString(td))
        td = cJSON_GetObjectItemCaseSensitive(root, "dtype");
    if (cJSON_IsString(td))
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", td->valuestring);
    return moe ? parse_moe(c, root, name) : LMP_OK;
}

bool lmp_config_layer_is_moe(const lmp_config *c, int l)
{
    if (c->n_experts <= 0)
        return false;
    for (int i = 0; i < c->n_mlp_only; i++)
        if (c->mlp_only[i] == l)
            return false;
    return (l + 1) % (c->moe_sparse_step > 0 ? c->moe_sparse_step : 1) == 0;
}

int lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *name)
{
    int rc = LMP_OK;
    memset(c, 0, sizeof *c);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root)
        return lmp_err(LMP_EFORMAT, "%s: not valid JSON (near byte %ld)", name,
                       (long)(cJSON_GetErrorPtr() ? cJSON_GetErrorPtr() - json : 0));
    if (!cJSON_IsObject(root)) {
        rc = lmp_err(LMP_EFORMAT, "%s: top level must be a JSON object", name);
        goto cleanup;
    }
    if ((rc = check_architectures(root, name)))
        goto cleanup;
    const cJSON *obj = root;
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(root, "text_config");
    if (cJSON_IsObject(tc) && !(cJSON_IsString(mt) && lmp_family_find(mt->valuestring) &&
                                cJSON_GetObjectItemCaseSensitive(root, "hidden_size"))) {
        /* a multimodal wrapper (gemma3, mistral3, llava, ...): the text model's keys */
        obj = tc;
        const cJSON *tmt = cJSON_GetObjectItemCaseSensitive(tc, "model_type");
        if (!cJSON_IsString(tmt)) {
            rc = lmp_err(LMP_EFORMAT, "%s: \"text_config\" has no \"model_type\" string", name);
            goto cleanup;
        }
    }
    rc = parse_obj(c, obj, name);
    if (!rc && obj != root)
        lmp_warn("%s: reading the text model of a %s config (text_config, model_type %s)", name,
                 cJSON_IsString(mt) ? mt->valuestring : "multimodal", c->model_type);
cleanup:
    cJSON_Delete(root);
    return rc;
}

int lmp_config_load(lmp_config *c, const char *path)
{
    char *txt;
    size_t len;
    int rc = lmp_read_file(path, &txt, &len);
    if (rc)
        return rc;
    rc = lmp_config_parse(c, txt, len, path);
    free(txt);
    return rc;
}

int lmp_config_set_layers(lmp_config *c, int n)
{
    if (n <= 0 || n > LMP_MAX_LAYERS)
        return lmp_err(LMP_EINVAL, "layers must be in [1, %d], got %d", LMP_MAX_LAYERS, n);
    if (n > c->n_layers && c->swa_layers)
        return lmp_err(LMP_EINVAL, "layers %d: can only shrink a config with per-layer types (%d layers)",
                       n, c->n_layers);
    for (int l = n; l < LMP_MAX_LAYERS; l++)
        c->layer_flags[l] = 0;
    c->n_layers = n;
    int k = 0; /* mlp_only_layers beyond the new depth go */
    for (int i = 0; i < c->n_mlp_only; i++)
        if (c->mlp_only[i] < n)
            c->mlp_only[k++] = c->mlp_only[i];
    c->n_mlp_only = k;
    return LMP_OK;
}

static void add_float_list(cJSON *o, const char *key, const float *v, int n)
{
    cJSON *a = cJSON_AddArrayToObject(o, key);
    for (int i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateNumber(v[i]));
}

/* Llama 3 factor of one frequency (the engine's rule, lib/infer/model.c rope_table): the
 * divisor applied to the unscaled frequency f. */
static double llama3_divisor(double f, double factor, double lo, double hi, double old)
{
    double wavelen = 2.0 * M_PI / f;
    if (wavelen > old / lo)
        return factor;
    if (wavelen < old / hi)
        return 1.0;
    double smooth = (old / wavelen - lo) / (hi - lo);
    return 1.0 / ((1.0 - smooth) / factor + smooth);
}

/* Whether llama3 parameters give c's rope_freqs divisors within 1e-5 relative. */
static bool llama3_matches(const lmp_config *c, double theta, double F, double lo, double hi, int orig)
{
    const int n = c->n_rope_factors, dim = 2 * n;
    if (!(hi > lo) || !(lo > 0))
        return false;
    for (int i = 0; i < n; i++) {
        double f = (double)(float)(1.0 / pow(theta, (double)(float)(2 * i) / (double)dim));
        double r = llama3_divisor(f, F, lo, hi, orig);
        if (!(fabs(r - c->rope_short[i]) <= 1e-5 * c->rope_short[i]))
            return false;
    }
    return true;
}

static double snap5(double x)
{
    if (!(x > 0))
        return x;
    double m = pow(10.0, 4 - floor(log10(x)));
    return round(x * m) / m;
}

/* llama.cpp's own Llama 3 GGUFs hold only the rope_freqs divisors. They depend on the four
 * llama3 parameters through factor, and (between the two wavelength bounds) on
 * smooth = A / wavelen - B with A = orig / (hi - lo), B = lo / (hi - lo): recovers a set
 * (low_freq_factor 1, orig = the low bound) that gives the same divisors within 1e-5
 * relative. 0, or -1 when the divisors do not follow the llama3 rule. */
static int llama3_from_freqs(const lmp_config *c, float *factor, float *lo, float *hi, int *orig)
{
    const int n = c->n_rope_factors;
    const double theta = c->rope_theta > 0 ? c->rope_theta : 10000.0;
    const int dim = 2 * n;
    double F = 1, w_hi_max = 0, w_lo_min = INFINITY, sx = 0, sy = 0, sxx = 0, sxy = 0;
    int n_mid = 0;
    if (n <= 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (c->rope_short[i] > F)
            F = c->rope_short[i];
    if (!(F > 1))
        return -1;
    for (int i = 0; i < n; i++) {
        double f = (double)(float)(1.0 / pow(theta, (double)(float)(2 * i) / (double)dim));
        double w = 2.0 * M_PI / f, r = c->rope_short[i];
        if (fabs(r - 1.0) <= 1e-6) {
            w_hi_max = w > w_hi_max ? w : w_hi_max;
        } else if (fabs(r - F) <= 1e-6 * F) {
            w_lo_min = w < w_lo_min ? w : w_lo_min;
        } else { /* smooth = A * (1 / w) - B: least squares over the smoothed pairs */
            double s = (1.0 / r - 1.0 / F) / (1.0 - 1.0 / F), x = 1.0 / w;
            sx += x, sy += s, sxx += x * x, sxy += x * s;
            n_mid++;
        }
    }
    double lo_w, hi_w; /* wavelength bounds: orig / lo and orig / hi */
    if (n_mid >= 2) {
        double den = n_mid * sxx - sx * sx;
        if (!(fabs(den) > 0))
            return -1;
        double A = (n_mid * sxy - sx * sy) / den, B = (sx * A - sy) / n_mid;
        if (!(A > 0) || !(B > 0))
            return -1;
        lo_w = A / B;
        hi_w = A / (1.0 + B);
    } else if (n_mid == 0 && w_hi_max < w_lo_min && isfinite(w_lo_min)) {
        lo_w = w_lo_min * 0.999; /* any bounds between the two groups give these divisors */
        hi_w = w_hi_max > 0 ? w_hi_max * 1.001 : lo_w / 4;
        if (!(hi_w < lo_w))
            hi_w = lo_w / 1.0001;
    } else {
        return -1;
    }
    int o = (int)lround(lo_w);
    if (o < 1)
        return -1;
    double l = o / lo_w, h = o / hi_w;
    /* the same to 5 significant digits when that still gives the divisors (1, 4, ...) */
    double ls = snap5(l), hs = snap5(h);
    if (llama3_matches(c, theta, F, ls, hs, o))
        l = ls, h = hs;
    else if (!llama3_matches(c, theta, F, l, h, o))
        return -1;
    *factor = (float)F;
    *lo = (float)l;
    *hi = (float)h;
    *orig = o;
    return 0;
}

int lmp_config_to_json(const lmp_config *c, char **out)
{
    const lmp_family *fam = lmp_family_find(c->model_type);
    if (!fam)
        return lmp_err(LMP_EUNSUPPORTED, "config: model_type \"%s\" is not supported", c->model_type);
    lmp_config *l3 = NULL; /* c with rope_freqs expressed as llama3 parameters */
    if (c->rope_type == LMP_ROPE_FREQS) {
        float factor, lo, hi;
        int orig;
        if (llama3_from_freqs(c, &factor, &lo, &hi, &orig) != 0)
            return lmp_err(LMP_EUNSUPPORTED, "config: the RoPE frequency factors of this GGUF's rope_freqs "
                                             "tensor do not follow the llama3 rule, and have no other "
                                             "config.json form");
        if (!(l3 = malloc(sizeof *l3)))
            return lmp_err(LMP_ENOMEM, "out of memory");
        *l3 = *c;
        l3->rope_type = LMP_ROPE_LLAMA3;
        l3->rope_factor = factor;
        l3->rope_low_freq_factor = lo;
        l3->rope_high_freq_factor = hi;
        l3->rope_orig_max_pos = orig;
        l3->n_rope_factors = 0;
        c = l3;
    }
    cJSON *r = cJSON_CreateObject();
    const char *ty = c->model_type;
    bool qwen2 = strcmp(ty, "qwen2") == 0, gemma = fam->norm_plus1;
    bool gemma23 = strcmp(ty, "gemma2") == 0 || strcmp(ty, "gemma3_text") == 0;
    cJSON *a = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(fam->hf_class));
    cJSON_AddStringToObject(r, "model_type", c->model_type);
    cJSON_AddNumberToObject(r, "hidden_size", c->hidden_size);
    cJSON_AddNumberToObject(r, "intermediate_size", c->intermediate_size);
    cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layers);
    cJSON_AddNumberToObject(r, "num_attention_heads", c->n_heads);
    cJSON_AddNumberToObject(r, "num_key_value_heads", c->n_kv_heads);
    cJSON_AddNumberToObject(r, "head_dim", c->head_dim);
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(r, "max_position_embeddings", c->max_pos);
    cJSON_AddNumberToObject(r, "rms_norm_eps", c->rms_eps);
    cJSON_AddNumberToObject(r, "rope_theta", c->rope_theta);
    if (c->partial_rotary > 0)
        cJSON_AddNumberToObject(r, "partial_rotary_factor", c->partial_rotary);
    if (c->rope_type == LMP_ROPE_NONE) {
        cJSON_AddNullToObject(r, "rope_scaling");
    } else if (c->rope_type == LMP_ROPE_LONGROPE) {
        cJSON *rs = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(rs, "type", "longrope");
        add_float_list(rs, "short_factor", c->rope_short, c->n_rope_factors);
        add_float_list(rs, "long_factor", c->rope_long, c->n_rope_factors);
        if (c->rope_attn_factor > 0)
            cJSON_AddNumberToObject(rs, "attention_factor", c->rope_attn_factor);
    } else {
        cJSON *rs = cJSON_AddObjectToObject(r, "rope_scaling");
        cJSON_AddStringToObject(rs, "rope_type", c->rope_type == LMP_ROPE_LLAMA3 ? "llama3" : "linear");
        cJSON_AddNumberToObject(rs, "factor", c->rope_factor);
        if (c->rope_type == LMP_ROPE_LLAMA3) {
            cJSON_AddNumberToObject(rs, "low_freq_factor", c->rope_low_freq_factor);
            cJSON_AddNumberToObject(rs, "high_freq_factor", c->rope_high_freq_factor);
            cJSON_AddNumberToObject(rs, "original_max_position_embeddings", c->rope_orig_max_pos);
        }
    }
    if (c->rope_type == LMP_ROPE_LONGROPE || (strcmp(ty, "phi3") == 0 && c->rope_orig_max_pos > 0))
        cJSON_AddNumberToObject(r, "original_max_position_embeddings", c->rope_orig_max_pos);
    if (c->rope_local_theta > 0)
        cJSON_AddNumberToObject(r, "rope_local_base_freq", c->rope_local_theta);
    if (gemma) {
        cJSON_AddStringToObject(r, "hidden_activation", "gelu_pytorch_tanh");
        cJSON_AddStringToObject(r, "hidden_act", "gelu_pytorch_tanh");
    } else {
        cJSON_AddStringToObject(r, "hidden_act", "silu");
    }
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
    if (!qwen2)
        cJSON_AddBoolToObject(r, "attention_bias", c->attn_bias);
    cJSON_AddBoolToObject(r, "mlp_bias", c->mlp_bias);
    if (c->sliding_window > 0)
        cJSON_AddNumberToObject(r, "sliding_window", c->sliding_window);
    else if (strcmp(ty, "olmo2") != 0) /* OLMo 2's configs have no such key; llama.cpp's
                                          converter writes it for olmo2 when present and
                                          fails on null (issue 16) */
        cJSON_AddNullToObject(r, "sliding_window");
    if (qwen2 || strcmp(ty, "qwen3") == 0 || strcmp(ty, "smollm3") == 0)
        cJSON_AddBoolToObject(r, "use_sliding_window", c->sliding_window > 0);
    if (c->swa_layers) {
        cJSON *lt = cJSON_AddArrayToObject(r, "layer_types");
        for (int l = 0; l < c->n_layers; l++)
            cJSON_AddItemToArray(lt, cJSON_CreateString(c->layer_flags[l] & LMP_LAYER_SLIDING
                                                             ? "sliding_attention"
                                                             : "full_attention"));
    }
    if (gemma23) {
        cJSON_AddNumberToObject(r, "query_pre_attn_scalar", c->query_pre_attn_scalar);
        if (c->attn_softcap > 0)
            cJSON_AddNumberToObject(r, "attn_logit_softcapping", c->attn_softcap);
        else
            cJSON_AddNullToObject(r, "attn_logit_softcapping");
        if (c->final_softcap > 0)
            cJSON_AddNumberToObject(r, "final_logit_softcapping", c->final_softcap);
        else
            cJSON_AddNullToObject(r, "final_logit_softcapping");
    }
    if (strcmp(ty, "smollm3") == 0) {
        cJSON *nr = cJSON_AddArrayToObject(r, "no_rope_layers");
        for (int l = 0; l < c->n_layers; l++)
            cJSON_AddItemToArray(nr, cJSON_CreateNumber(c->layer_flags[l] & LMP_LAYER_NOROPE ? 0 : 1));
        if (c->no_rope_interval > 0)
            cJSON_AddNumberToObject(r, "no_rope_layer_interval", c->no_rope_interval);
    }
    if (strcmp(ty, "granite") == 0 || strcmp(ty, "granitemoe") == 0) {
        cJSON_AddNumberToObject(r, "embedding_multiplier", c->embed_multiplier > 0 ? c->embed_multiplier : 1);
        cJSON_AddNumberToObject(r, "attention_multiplier", c->attn_multiplier > 0 ? c->attn_multiplier : 1);
        cJSON_AddNumberToObject(r, "residual_multiplier",
                                c->residual_multiplier > 0 ? c->residual_multiplier : 1);
        cJSON_AddNumberToObject(r, "logits_scaling", c->logits_scaling > 0 ? c->logits_scaling : 1);
    }
    if (c->bos_id >= 0)
        cJSON_AddNumberToObject(r, "bos_token_id", c->bos_id);
    if (c->eos_id >= 0)
        cJSON_AddNumberToObject(r, "eos_token_id", c->eos_id);
    if (c->pad_id >= 0)
        cJSON_AddNumberToObject(r, "pad_token_id", c->pad_id);
    if (c->torch_dtype[0])
        cJSON_AddStringToObject(r, "torch_dtype", c->torch_dtype);
    if (c->n_experts > 0) {
        const bool q3 = strcmp(c->model_type, "qwen3_moe") == 0;
        cJSON_AddNumberToObject(r, q3 ? "num_experts" : "num_local_experts", c->n_experts);
        cJSON_AddNumberToObject(r, "num_experts_per_tok", c->n_experts_used);
        if (q3) {
            cJSON_AddNumberToObject(r, "moe_intermediate_size", c->moe_ff);
            cJSON_AddBoolToObject(r, "norm_topk_prob", c->moe_norm_topk);
            cJSON_AddNumberToObject(r, "decoder_sparse_step", c->moe_sparse_step);
            cJSON *mo = cJSON_AddArrayToObject(r, "mlp_only_layers");
            for (int i = 0; i < c->n_mlp_only; i++)
                cJSON_AddItemToArray(mo, cJSON_CreateNumber(c->mlp_only[i]));
        }
    }
    cJSON_AddStringToObject(r, "transformers_version", "4.44.0");
    *out = cJSON_Print(r);
    cJSON_Delete(r);
    free(l3);
    return *out ? LMP_OK : lmp_err(LMP_ENOMEM, "config: out of memory");
}

int64_t lmp_config_n_params(const lmp_config *c)
{
    int64_t d = c->hidden_size, f = c->intermediate_size, hd = c->head_dim;
    int64_t q = (int64_t)c->n_heads * hd, kv = (int64_t)c->n_kv_heads * hd;
    int64_t per = d * q + 2 * d * kv + q * d + 2 * d;
    if (c->attn_bias)
        per += q + 2 * kv;
    if (c->o_bias)
        per += d;
    if (c->norms == LMP_NORM_SANDWICH)
        per += 2 * d;
    if (c->qk_norm == LMP_QKNORM_HEAD)
        per += 2 * hd;
    else if (c->qk_norm == LMP_QKNORM_FULL)
        per += q + kv;
    int64_t ffn = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (lmp_config_layer_is_moe(c, l))
            ffn += (int64_t)c->n_experts * (d + 3 * d * (int64_t)c->moe_ff); /* router + experts */
        else
            ffn += 3 * d * f + (c->mlp_bias ? 2 * f + d : 0);
    }
    int64_t emb = (int64_t)c->vocab_size * d;
    return per * c->n_layers + ffn + emb * (c->tie_embeddings ? 1 : 2) + d;
}

void lmp_config_features(const lmp_config *c, char *buf, size_t n)
{
    size_t k = 0;
    buf[0] = 0;
#define ADDF(...)                                                                                  \
    do {                                                                                           \
        if (k < n)                                                                                 \
            k += (size_t)snprintf(buf + k, n - k, __VA_ARGS__);                                    \
    } while (0)
    if (c->norm_plus1)
        ADDF("%snorm (1+w)", k ? ", " : "");
    if (c->norms == LMP_NORM_SANDWICH)
        ADDF("%spre+post norms", k ? ", " : "");
    if (c->norms == LMP_NORM_POST)
        ADDF("%spost norms only", k ? ", " : "");
    if (c->qk_norm)
        ADDF("%sq/k norm (%s)", k ? ", " : "", c->qk_norm == LMP_QKNORM_HEAD ? "per head" : "full width");
    if (c->act == LMP_ACT_GELU_TANH)
        ADDF("%sGeGLU (tanh GELU)", k ? ", " : "");
    if (c->embed_sqrt)
        ADDF("%sembeddings x sqrt(hidden)", k ? ", " : "");
    if (c->fused_qkv)
        ADDF("%sfused qkv/gate_up", k ? ", " : "");
    if (c->rope_dim > 0 && c->rope_dim < c->head_dim)
        ADDF("%spartial RoPE %d/%d", k ? ", " : "", c->rope_dim, c->head_dim);
    if (c->rope_type == LMP_ROPE_LONGROPE)
        ADDF("%slongrope (original ctx %d)", k ? ", " : "", c->rope_orig_max_pos);
    if (c->swa_layers) {
        int ns = 0;
        for (int l = 0; l < c->n_layers; l++)
            ns += (c->layer_flags[l] & LMP_LAYER_SLIDING) != 0;
        ADDF("%ssliding window %d on %d of %d layers", k ? ", " : "", c->sliding_window, ns, c->n_layers);
    } else if (c->sliding_window > 0) {
        ADDF("%ssliding window %d", k ? ", " : "", c->sliding_window);
    }
    if (c->rope_local_theta > 0)
        ADDF("%slocal rope theta %g", k ? ", " : "", c->rope_local_theta);
    int nr = 0;
    for (int l = 0; l < c->n_layers && l < LMP_MAX_LAYERS; l++)
        nr += (c->layer_flags[l] & LMP_LAYER_NOROPE) != 0;
    if (nr)
        ADDF("%sno RoPE on %d layers", k ? ", " : "", nr);
    if (c->query_pre_attn_scalar > 0)
        ADDF("%squery_pre_attn_scalar %g", k ? ", " : "", c->query_pre_attn_scalar);
    if (c->attn_softcap > 0 || c->final_softcap > 0)
        ADDF("%ssoft-caps %g/%g", k ? ", " : "", c->attn_softcap, c->final_softcap);
    if (c->embed_multiplier > 0)
        ADDF("%smultipliers emb %g attn %g resid %g logits /%g", k ? ", " : "", c->embed_multiplier,
             c->attn_multiplier, c->residual_multiplier, c->logits_scaling);
#undef ADDF
}
