/*
 * Model hyper-parameters for the Llama family, from an HF config.json or GGUF metadata.
 * Part of lib/io; include "io.h".
 */
#ifndef LMP_CONFIG_H
#define LMP_CONFIG_H

#include "../core/core.h"

typedef enum { LMP_ROPE_NONE = 0, LMP_ROPE_LINEAR, LMP_ROPE_LLAMA3 } lmp_rope_scaling;

typedef struct {
    char model_type[32];      /* "llama", "mistral", "qwen2", "mixtral", "qwen3_moe", ... */
    char arch[32];            /* GGUF general.architecture: "llama", "qwen2", "qwen3moe", ... */
    int hidden_size;          /* d_model */
    int intermediate_size;    /* FFN width */
    int n_layers;
    int n_heads;
    int n_kv_heads;           /* GQA; = n_heads when absent */
    int head_dim;             /* hidden_size / n_heads when absent */
    int vocab_size;
    int max_pos;              /* max_position_embeddings */
    float rms_eps;
    float rope_theta;
    lmp_rope_scaling rope_type;
    float rope_factor;        /* linear and llama3 */
    float rope_low_freq_factor, rope_high_freq_factor; /* llama3 */
    int rope_orig_max_pos;    /* llama3 original_max_position_embeddings */
    bool tie_embeddings;
    bool attn_bias;           /* q/k/v bias (qwen2 always) */
    bool o_bias;              /* o_proj bias (attention_bias in llama) */
    bool mlp_bias;
    int sliding_window;       /* 0 = none */
    int bos_id, eos_id, pad_id; /* -1 when absent */
    char torch_dtype[16];     /* "float32", "bfloat16", ... or "" */
    /* Mixture of experts (mixtral, qwen3_moe, granitemoe); n_experts 0 = a dense model.
     * A sparse layer routes each token to n_experts_used of n_experts SwiGLU experts of
     * width moe_ff (lmp_config_layer_is_moe says which layers are sparse). */
    int n_experts;            /* num_local_experts (mixtral, granitemoe) / num_experts */
    int n_experts_used;       /* num_experts_per_tok (top-k) */
    int moe_ff;               /* moe_intermediate_size (qwen3_moe), else intermediate_size */
    bool moe_norm_topk;       /* renormalise the top-k weights to sum 1 (mixtral, granitemoe:
                                 always; qwen3_moe: norm_topk_prob) */
    int moe_sparse_step;      /* qwen3_moe decoder_sparse_step: layer l sparse when (l+1) %
                                 step == 0 (1 elsewhere) */
    int n_mlp_only;           /* qwen3_moe mlp_only_layers: dense layers, at most 64 */
    int mlp_only[64];
} lmp_config;

/* Supported model_type values, for messages: "llama, mistral, qwen2". */
const char *lmp_config_supported(void);
/* Parses config.json text. Unknown model_type, missing or non-numeric required fields,
 * and inconsistent sizes (hidden % heads, heads % kv_heads) are errors naming `name`. */
int lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *name);
int lmp_config_load(lmp_config *c, const char *path);
/* Keeps the first n layers (1 <= n <= n_layers; the per-layer lists follow); for
 * synth --layers with the shapes of big models. */
int lmp_config_set_layers(lmp_config *c, int n);
/* Serializes as an HF config.json (malloc'd string). */
int lmp_config_to_json(const lmp_config *c, char **out);
/* true when layer l of c runs a mixture of experts (n_experts > 0, l not in
 * mlp_only_layers, (l + 1) % moe_sparse_step == 0). */
bool lmp_config_layer_is_moe(const lmp_config *c, int l);
/* Parameter count implied by the config (embeddings counted once when tied). */
int64_t lmp_config_n_params(const lmp_config *c);

#endif
