/*
 * config.json -> lmp_config for the Llama family (llama, mistral, qwen2), and back.
 * Defaults follow the transformers configuration classes of each model_type; anything
 * required that is missing, non-numeric or inconsistent is an error naming the file and
 * the key. Not a general JSON schema checker: keys we do not use are ignored.
 */
#include "config.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *g_supported[] = {"llama", "mistral", "qwen2", "mixtral", "qwen3_moe", "granitemoe"};

const char *lmp_config_supported(void)
{
    return "llama, mistral, qwen2, mixtral, qwen3_moe, granitemoe";
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

static int parse_rope_scaling(lmp_config *c, const cJSON *rs, const char *name)
{
    int rc;
    c->rope_type = LMP_ROPE_NONE;
    c->rope_factor = 1;
    if (!rs || cJSON_IsNull(rs))
        return LMP_OK;
    if (!cJSON_IsObject(rs))
        return lmp_err(LMP_EFORMAT, "%s: \"rope_scaling\" must be an object or null", name);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(rs, "rope_type");
    if (!t)
        t = cJSON_GetObjectItemCaseSensitive(rs, "type");
    if (!cJSON_IsString(t))
        return lmp_err(LMP_EFORMAT, "%s: rope_scaling has no \"rope_type\" string", name);
    if ((rc = get_float(rs, "factor", &c->rope_factor, 1.0f, name)))
        return rc;
    if (strcmp(t->valuestring, "default") == 0) {
        c->rope_type = LMP_ROPE_NONE;
    } else if (strcmp(t->valuestring, "linear") == 0) {
        c->rope_type = LMP_ROPE_LINEAR;
    } else if (strcmp(t->valuestring, "llama3") == 0) {
        c->rope_type = LMP_ROPE_LLAMA3;
        if ((rc = get_float(rs, "low_freq_factor", &c->rope_low_freq_factor, 1.0f, name)) ||
            (rc = get_float(rs, "high_freq_factor", &c->rope_high_freq_factor, 4.0f, name)) ||
            (rc = get_int(rs, "original_max_position_embeddings", &c->rope_orig_max_pos, 8192, false,
                          name)))
            return rc;
        if (c->rope_high_freq_factor <= c->rope_low_freq_factor)
            return lmp_err(LMP_EFORMAT, "%s: rope_scaling high_freq_factor must exceed low_freq_factor",
                           name);
    } else {
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: rope_scaling type \"%s\" is not supported (supported: default, linear, llama3)",
                       name, t->valuestring);
    }
    if (c->rope_factor <= 0)
        return lmp_err(LMP_EFORMAT, "%s: rope_scaling factor must be positive", name);
    return LMP_OK;
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

int lmp_config_set_layers(lmp_config *c, int n)
{
    if (n <= 0 || n > c->n_layers)
        return lmp_err(LMP_EINVAL, "%d layers requested; the config has %d", n, c->n_layers);
    c->n_layers = n;
    int k = 0; /* mlp_only_layers beyond the new depth go */
    for (int i = 0; i < c->n_mlp_only; i++)
        if (c->mlp_only[i] < n)
            c->mlp_only[k++] = c->mlp_only[i];
    c->n_mlp_only = k;
    return LMP_OK;
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
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(root, "model_type");
    if (!cJSON_IsString(mt)) {
        rc = lmp_err(LMP_EFORMAT, "%s: \"model_type\" string is missing", name);
        goto cleanup;
    }
    bool known = false;
    for (size_t i = 0; i < sizeof g_supported / sizeof g_supported[0]; i++)
        known |= strcmp(mt->valuestring, g_supported[i]) == 0;
    if (!known) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: model_type \"%s\" is not supported (supported: %s)", name,
                     mt->valuestring, lmp_config_supported());
        goto cleanup;
    }
    snprintf(c->model_type, sizeof c->model_type, "%s", mt->valuestring);
    bool qwen = strcmp(c->model_type, "qwen2") == 0;
    const bool moe = strcmp(c->model_type, "mixtral") == 0 || strcmp(c->model_type, "qwen3_moe") == 0 ||
                     strcmp(c->model_type, "granitemoe") == 0;
    /* llama.cpp's architecture names (Mixtral converts as llama with experts) */
    snprintf(c->arch, sizeof c->arch, "%s",
             qwen                                          ? "qwen2"
             : strcmp(c->model_type, "qwen3_moe") == 0     ? "qwen3moe"
             : strcmp(c->model_type, "granitemoe") == 0    ? "granitemoe"
                                                           : "llama");

    if ((rc = get_int(root, "hidden_size", &c->hidden_size, 0, true, name)) ||
        (rc = get_int(root, "intermediate_size", &c->intermediate_size, 0, true, name)) ||
        (rc = get_int(root, "num_hidden_layers", &c->n_layers, 0, true, name)) ||
        (rc = get_int(root, "num_attention_heads", &c->n_heads, 0, true, name)) ||
        (rc = get_int(root, "vocab_size", &c->vocab_size, 0, true, name)))
        goto cleanup;
    if (c->hidden_size <= 0 || c->intermediate_size <= 0 || c->n_layers <= 0 || c->n_heads <= 0 ||
        c->vocab_size <= 0) {
        rc = lmp_err(LMP_EFORMAT, "%s: sizes must be positive (hidden_size %d, intermediate_size %d, "
                                  "num_hidden_layers %d, num_attention_heads %d, vocab_size %d)",
                     name, c->hidden_size, c->intermediate_size, c->n_layers, c->n_heads, c->vocab_size);
        goto cleanup;
    }
    if ((rc = get_int(root, "num_key_value_heads", &c->n_kv_heads, c->n_heads, false, name)))
        goto cleanup;
    if (c->hidden_size % c->n_heads && !cJSON_GetObjectItemCaseSensitive(root, "head_dim")) {
        rc = lmp_err(LMP_EFORMAT, "%s: hidden_size %d is not a multiple of num_attention_heads %d", name,
                     c->hidden_size, c->n_heads);
        goto cleanup;
    }
    if ((rc = get_int(root, "head_dim", &c->head_dim, c->hidden_size / c->n_heads, false, name)))
        goto cleanup;
    if (c->n_kv_heads <= 0 || c->n_heads % c->n_kv_heads || c->head_dim <= 0 || c->head_dim % 2) {
        rc = lmp_err(LMP_EFORMAT,
                     "%s: num_attention_heads %d must be a multiple of num_key_value_heads %d, and head_dim "
                     "%d positive and even",
                     name, c->n_heads, c->n_kv_heads, c->head_dim);
        goto cleanup;
    }
    if ((rc = get_int(root, "max_position_embeddings", &c->max_pos, qwen ? 32768 : 2048, false, name)) ||
        (rc = get_float(root, "rms_norm_eps", &c->rms_eps, 1e-6f, name)) ||
        (rc = get_float(root, "rope_theta", &c->rope_theta, 10000.0f, name)) ||
        (rc = get_bool(root, "tie_word_embeddings", &c->tie_embeddings, false, name)) ||
        (rc = get_bool(root, "mlp_bias", &c->mlp_bias, false, name)) ||
        (rc = get_int(root, "bos_token_id", &c->bos_id, -1, false, name)) ||
        (rc = get_int(root, "eos_token_id", &c->eos_id, -1, false, name)) ||
        (rc = get_int(root, "pad_token_id", &c->pad_id, -1, false, name)))
        goto cleanup;
    if (c->rms_eps <= 0 || c->rope_theta <= 0) {
        rc = lmp_err(LMP_EFORMAT, "%s: rms_norm_eps and rope_theta must be positive", name);
        goto cleanup;
    }
    if (qwen) {
        c->attn_bias = true; /* Qwen2Attention: q/k/v with bias, o_proj without */
        c->o_bias = false;
    } else {
        bool ab;
        if ((rc = get_bool(root, "attention_bias", &ab, false, name)))
            goto cleanup;
        c->attn_bias = c->o_bias = ab;
    }
    if (moe && (rc = parse_moe(c, root, name)))
        goto cleanup;
    const cJSON *sw = cJSON_GetObjectItemCaseSensitive(root, "sliding_window");
    bool use_sw = true;
    if ((qwen || strcmp(c->model_type, "qwen3_moe") == 0) && (rc = get_bool(root, "use_sliding_window", &use_sw, false, name)))
        goto cleanup;
    if (sw && cJSON_IsNumber(sw) && use_sw)
        c->sliding_window = (int)sw->valuedouble;
    if ((rc = parse_rope_scaling(c, cJSON_GetObjectItemCaseSensitive(root, "rope_scaling"), name)))
        goto cleanup;
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(root, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu") != 0)) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: hidden_act \"%s\" is not supported (only silu)", name,
                     cJSON_IsString(act) ? act->valuestring : "?");
        goto cleanup;
    }
    const cJSON *td = cJSON_GetObjectItemCaseSensitive(root, "torch_dtype");
    if (cJSON_IsString(td))
        snprintf(c->torch_dtype, sizeof c->torch_dtype, "%s", td->valuestring);
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

int lmp_config_to_json(const lmp_config *c, char **out)
{
    cJSON *r = cJSON_CreateObject();
    bool qwen = strcmp(c->model_type, "qwen2") == 0;
    const char *archs = qwen                                         ? "Qwen2ForCausalLM"
                        : strcmp(c->model_type, "mistral") == 0    ? "MistralForCausalLM"
                        : strcmp(c->model_type, "mixtral") == 0    ? "MixtralForCausalLM"
                        : strcmp(c->model_type, "qwen3_moe") == 0  ? "Qwen3MoeForCausalLM"
                        : strcmp(c->model_type, "granitemoe") == 0 ? "GraniteMoeForCausalLM"
                                                                   : "LlamaForCausalLM";
    cJSON *a = cJSON_AddArrayToObject(r, "architectures");
    cJSON_AddItemToArray(a, cJSON_CreateString(archs));
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
    if (c->rope_type == LMP_ROPE_NONE) {
        cJSON_AddNullToObject(r, "rope_scaling");
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
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddBoolToObject(r, "tie_word_embeddings", c->tie_embeddings);
    if (!qwen)
        cJSON_AddBoolToObject(r, "attention_bias", c->attn_bias);
    cJSON_AddBoolToObject(r, "mlp_bias", c->mlp_bias);
    if (c->sliding_window > 0)
        cJSON_AddNumberToObject(r, "sliding_window", c->sliding_window);
    else
        cJSON_AddNullToObject(r, "sliding_window");
    if (qwen)
        cJSON_AddBoolToObject(r, "use_sliding_window", c->sliding_window > 0);
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
    int64_t ffn = 0;
    for (int l = 0; l < c->n_layers; l++) {
        if (lmp_config_layer_is_moe(c, l))
            ffn += (int64_t)c->n_experts * (d + 3 * d * (int64_t)c->moe_ff); /* router + experts */
        else
            ffn += 3 * d * f + (c->mlp_bias ? 2 * f + d : 0);
    }
    if (strcmp(c->model_type, "qwen3_moe") == 0)
        per += 2 * hd; /* q_norm, k_norm */
    int64_t emb = (int64_t)c->vocab_size * d;
    return per * c->n_layers + ffn + emb * (c->tie_embeddings ? 1 : 2) + d;
}
