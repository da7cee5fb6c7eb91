/*
 * PEFT LoRA adapters: adapter_config.json + adapter_model.safetensors (the layout PEFT's
 * save_pretrained writes), read, validated against a base checkpoint, and the update
 * each adapted weight receives: dW = s * B A with s = lora_alpha / r (or / sqrt(r) with
 * use_rslora), per-module rank_pattern / alpha_pattern overrides (PEFT's match: the
 * pattern, a regex, matches the whole module name or a dot-separated suffix of it).
 * Embeddings (lora_embedding_A (r, vocab), lora_embedding_B (dim, r)): dE = s * (B A)^T.
 * Saved full modules (modules_to_save, saved embeddings, biases) replace the base tensor.
 * DoRA (use_dora) is refused. Part of lib/io; include "io.h".
 */
#ifndef LMP_LORA_H
#define LMP_LORA_H

#include "checkpoint.h"

/* One adapted weight. */
typedef struct {
    char module[LMP_MAX_NAME];  /* HF module name, e.g. "model.layers.0.self_attn.q_proj" */
    char weight[LMP_MAX_NAME];  /* the base tensor it changes: module + ".weight" */
    const lmp_tensor *A, *B;    /* linear: A (r, in), B (out, r); embedding: A (r, vocab),
                                   B (dim, r); borrowed from the adapter's mapping */
    int r;
    double alpha;
    double scale;               /* alpha / r, or alpha / sqrt(r) (use_rslora) */
    bool embedding;
} lmp_lora_target;

/* A tensor stored whole in the adapter that replaces the base tensor of that name. */
typedef struct {
    char weight[LMP_MAX_NAME];  /* HF name of the base tensor */
    const lmp_tensor *t;
} lmp_lora_full;

typedef struct {
    char *path;                 /* as given (folder or .safetensors) */
    char *config_path, *weights_path;
    lmp_st_reader st;
    int r;                      /* adapter_config.json's r and lora_alpha (defaults) */
    double alpha;
    bool rslora;
    int n_targets;
    lmp_lora_target *targets;
    int n_full;
    lmp_lora_full *full;
} lmp_lora;

/* Opens a PEFT adapter: `path` is its folder (adapter_config.json and
 * adapter_model.safetensors) or the .safetensors file (adapter_config.json beside it).
 * Checks: peft_type LORA, r > 0, lora_alpha != 0, no DoRA, every lora_A with its lora_B,
 * A's rows = B's columns = the configured rank of the module, tensor names of PEFT's
 * layout. Errors name the file and the problem. */
int lmp_lora_open(lmp_lora **out, const char *path);
void lmp_lora_close(lmp_lora *a); /* accepts NULL */

/* Checks the adapter against a base checkpoint: every adapted module and every full
 * tensor exists in the base (by HF name; GGUF names are mapped) with matching shapes.
 * Errors name the adapter file, the module and both shapes. */
int lmp_lora_check(const lmp_lora *a, const lmp_ckpt *base);

/* The target that changes base tensor `hf_weight` (HF name), or NULL. */
const lmp_lora_target *lmp_lora_find(const lmp_lora *a, const char *hf_weight);
const lmp_lora_full *lmp_lora_find_full(const lmp_lora *a, const char *hf_weight);

/* A target's A and B as new f32 arrays (caller frees both). */
int lmp_lora_target_f32(const lmp_lora_target *t, float **A, float **B);

/* Adds mult * t->scale * dW rows [r0, r0 + nr) (HF row order of the base weight) to
 * dst[nr][cols], from A and B in f32 (lmp_lora_target_f32); sums in double in `acc`
 * (cols doubles, or NULL: allocated here). */
void lmp_lora_add_rows(const lmp_lora_target *t, const float *A, const float *B, double mult,
                       int64_t r0, int64_t nr, float *dst, double *acc);

#endif
