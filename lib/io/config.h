/*
 * Model hyper-parameters of the decoder families lmpress runs, from an HF config.json or
 * GGUF metadata, and the table of those families (one row per model_type: its defaults
 * and the features of its block). Part of lib/io; include "io.h".
 */
#ifndef LMP_CONFIG_H
#define LMP_CONFIG_H

#include "../core/core.h"

/* Upper bounds of the per-layer and per-frequency tables carried in lmp_config. */
#define LMP_MAX_LAYERS 1024
#define LMP_MAX_ROPE_FACTORS 256

/* LMP_ROPE_FREQS: per-pair frequency divisors read from a GGUF rope_freqs tensor
 * (llama.cpp's own Llama 3 conversions), kept in rope_short; GGUF only. */
typedef enum {
    LMP_ROPE_NONE = 0,
    LMP_ROPE_LINEAR,
    LMP_ROPE_LLAMA3,
    LMP_ROPE_LONGROPE,
    LMP_ROPE_FREQS
} lmp_rope_scaling;

/* Where the RMSNorms of a block sit. */
typedef enum {
    LMP_NORM_PRE = 0,  /* llama: x += f(norm(x)) */
    LMP_NORM_SANDWICH, /* gemma2/3: x += post_norm(f(pre_norm(x))) */
    LMP_NORM_POST,     /* olmo2: x += post_norm(f(x)) */
} lmp_norm_layout;

typedef enum { LMP_ACT_SILU = 0, LMP_ACT_GELU_TANH } lmp_ffn_act;

/* q/k RMSNorm before RoPE: none, per head over head_dim (qwen3, gemma3), or over the
 * whole projection width (olmo2). */
typedef enum { LMP_QKNORM_NONE = 0, LMP_QKNORM_HEAD, LMP_QKNORM_FULL } lmp_qknorm;

/* lmp_config.layer_flags bits */
enum {
    LMP_LAYER_SLIDING = 1, /* sliding-window (local) attention on this layer */
    LMP_LAYER_NOROPE = 2,  /* no RoPE on this layer (smollm3 no_rope_layers) */
};

/* One decoder family: what its model_type implies. A new dense family is one row of the
 * table in config.c (plus its parsing where it has keys of its own). */
typedef struct {
    const char *model_type;  /* config.json model_type */
    const char *hf_class;    /* architectures[0] written for it ("...ForCausalLM") */
    const char *gguf_arch;   /* llama.cpp general.architecture */
    bool qk_interleaved;     /* llama.cpp permutes q/k rows for its interleaved RoPE */
    bool qkv_bias;           /* q/k/v biases always (qwen2) */
    bool norm_plus1;         /* RMSNorm weights stored as w, applied as (1 + w) (gemma) */
    bool embed_sqrt;         /* embeddings times sqrt(hidden_size) (gemma) */
    bool tied_always;        /* no lm_head (gemma) */
    bool fused;              /* qkv_proj and gate_up_proj (phi3) */
    lmp_norm_layout norms;
    lmp_qknorm qk_norm;
    lmp_ffn_act act;
    int default_max_pos;
    float default_theta;
    float default_eps;
} lmp_family;

typedef struct {
    char model_type[32];      /* a lmp_family model_type */
    char arch[32];            /* GGUF general.architecture */
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
    int rope_orig_max_pos;    /* llama3 / longrope original_max_position_embeddings */
    bool tie_embeddings;
    bool attn_bias;           /* q/k/v bias (qwen2 always) */
    bool o_bias;              /* o_proj bias (attention_bias in llama) */
    bool mlp_bias;
    int sliding_window;       /* 0 = none */
    int bos_id, eos_id, pad_id; /* -1 when absent */
    char torch_dtype[16];     /* "float32", "bfloat16", ... or "" */

    /* ---- family features (lmp_family defaults, then the config's own keys) ---- */
    bool norm_plus1;          /* norm weights as stored are applied as (1 + w): true for
                                 gemma HF folders; false in GGUF (llama.cpp stores 1 + w) */
    bool embed_sqrt;          /* embeddings times sqrt(hidden_size) */
    bool fused_qkv;           /* self_attn.qkv_proj = [q; k; v] rows */
    bool fused_gate_up;       /* mlp.gate_up_proj = [gate; up] rows */
    lmp_norm_layout norms;
    lmp_qknorm qk_norm;
    lmp_ffn_act act;
    int rope_dim;             /* rotated dims per head (partial_rotary_factor * head_dim);
                                 0 = head_dim */
    float partial_rotary;     /* 0 = absent (1) */
    int n_rope_factors;       /* longrope: rope_dim / 2 entries of each list */
    float rope_short[LMP_MAX_ROPE_FACTORS], rope_long[LMP_MAX_ROPE_FACTORS];
    float rope_attn_factor;   /* longrope cos/sin scale; 0 = from max/orig positions */
    float rope_local_theta;   /* gemma3 local layers' base (no scaling there); 0 = none */
    bool swa_layers;          /* sliding_window applies only to LMP_LAYER_SLIDING layers
                                 (else to every layer, as mistral) */
    uint8_t layer_flags[LMP_MAX_LAYERS];
    float query_pre_attn_scalar; /* gemma2/3: scores scaled by its -1/2 power; 0 = absent */
    float attn_multiplier;    /* granite: the attention scale; 0 = absent */
    float embed_multiplier;   /* granite; 0 = absent (1) */
    float residual_multiplier; /* granite: branch outputs scaled before the add; 0 = 1 */
    float logits_scaling;     /* granite: logits divided by it; 0 = 1 */
    float attn_softcap;       /* gemma2: cap * tanh(score / cap); 0 = none */
    float final_softcap;      /* gemma2: the same on the logits */
    int no_rope_interval;     /* smollm3 no_rope_layer_interval (for the JSON); 0 = absent */
} lmp_config;

/* Supported model_type values, for messages: "llama, mistral, qwen2, ...". */
const char *lmp_config_supported(void);
/* The family of a model_type, or NULL. */
const lmp_family *lmp_family_find(const char *model_type);
/* The family of a GGUF general.architecture (the first row with it), or NULL. */
const lmp_family *lmp_family_by_arch(const char *gguf_arch);
/* The NULL-terminated family table. */
const lmp_family *lmp_families(void);
/* Sets c's family features from its model_type's row (norm_plus1 from the row: callers
 * reading GGUF clear it). Returns LMP_EUNSUPPORTED for an unknown model_type. */
int lmp_config_apply_family(lmp_config *c);

/* Parses config.json text. Unknown model_type, missing or non-numeric required fields,
 * inconsistent sizes (hidden % heads, heads % kv_heads), keys out of range
 * (partial_rotary_factor outside (0, 1], LongRoPE lists of the wrong length, layer lists
 * of the wrong length) and non-causal heads (architectures "...ForSequenceClassification"
 * etc.) are errors naming `name` and the key. A "text_config" object is read as the
 * config when the top level is a multimodal wrapper. transformers v5 "rope_parameters"
 * (also per layer type) are read like rope_theta / rope_scaling. */
int lmp_config_parse(lmp_config *c, const char *json, size_t len, const char *name);
int lmp_config_load(lmp_config *c, const char *path);
/* Keeps the first n layers (the per-layer tables follow); for tests of big shapes. */
int lmp_config_set_layers(lmp_config *c, int n);
/* Serializes as an HF config.json (malloc'd string). */
int lmp_config_to_json(const lmp_config *c, char **out);
/* Parameter count implied by the config (embeddings counted once when tied). */
int64_t lmp_config_n_params(const lmp_config *c);
/* True when layer l uses sliding-window attention; its window (0 = full attention). */
int lmp_config_window(const lmp_config *c, int layer);
/* A one-line summary of the family features in use ("" for a plain llama block). */
void lmp_config_features(const lmp_config *c, char *buf, size_t n);

#endif
