/*
 * Model validation shared by every command: the hyper-parameters in range, and the
 * checkpoint's tensors exactly what the architecture needs (every tensor present with
 * the shape the config implies and a dtype that holds numbers, no tensor for a layer
 * the config does not have, no tensor nobody reads). The knowledge of which tensors a
 * model needs lives here only, in a table with one row per tensor and a predicate on the
 * config (attention biases, tied embeddings, ...): lib/infer's model assembly and the
 * streaming converters both ask it. Adding a model family = adding rows (and, for a new
 * size, a dimension code). Part of lib/io; include "io.h".
 *
 * Also the finite-value check of weights (lmp_check_finite_rows), with the row reported
 * in the file's own layout.
 */
#ifndef LMP_VALIDATE_H
#define LMP_VALIDATE_H

#include "checkpoint.h"

/* Sizes a tensor dimension can be, computed from the config. */
typedef enum {
    LMP_DIM_NONE = 0,
    LMP_DIM_HIDDEN, /* hidden_size */
    LMP_DIM_Q,      /* num_attention_heads * head_dim */
    LMP_DIM_KV,     /* num_key_value_heads * head_dim */
    LMP_DIM_FF,     /* intermediate_size */
    LMP_DIM_VOCAB,  /* vocab_size */
    LMP_DIM_HEAD,   /* head_dim */
    LMP_DIM_QKV,    /* (num_attention_heads + 2 num_key_value_heads) * head_dim: phi3 qkv_proj */
    LMP_DIM_FF2,    /* 2 * intermediate_size: phi3 gate_up_proj */
    LMP_DIM_ANY,    /* not checked */
} lmp_dim;

typedef struct {
    const char *hf;      /* HF name; in per-layer rows the part after "model.layers.N." */
    bool per_layer;
    int ndim;            /* 1 or 2 */
    lmp_dim dims[2];
    /* When the tensor is needed (NULL = always, unless `allowed` is set: then never). */
    bool (*needed)(const lmp_config *c);
    /* When it may be present without being needed (NULL = never): e.g. lm_head when
     * the embeddings are tied. */
    bool (*allowed)(const lmp_config *c);
    bool linear;         /* a projection a quantized checkpoint may store packed */
} lmp_tensor_spec;

/* The table (terminated by a row with hf == NULL). */
const lmp_tensor_spec *lmp_tensor_specs(void);
int64_t lmp_dim_size(const lmp_config *c, lmp_dim d);

/* Process-wide policy, set by the command line (--allow-extra) or LMP_ALLOW_EXTRA=1:
 * tensors nobody reads are reported and skipped instead of refused. */
extern bool lmp_allow_extra;
bool lmp_allow_extra_tensors(void);

/* Range checks of the hyper-parameters (positive sizes, consistent heads, context
 * length, finite positive epsilon and RoPE base, scaling factors, token ids inside the
 * vocabulary). `src` names the file in messages. */
int lmp_config_check(const lmp_config *c, const char *src);

/* The whole validation of an open checkpoint with a config: lmp_config_check, then the
 * tensor table. Tensors under a projection whose `.weight` is absent (qweight, scales,
 * weight_packed, bitmask...) are the packed linear of a quantized or sparse checkpoint:
 * accepted here, checked by their loader. Returns 0 or an error naming the file, the
 * tensor and the config key. Unused tensors are refused unless lmp_allow_extra_tensors()
 * (then reported once as a warning). Tensors rows it accepted are marked in `used`
 * (c->n_tensors bools, may be NULL). */
int lmp_ckpt_validate(const lmp_ckpt *c, bool *used);

/* Checks that rows [r0, r0 + nr) of t (a dense float or GGUF block tensor, `cols`
 * elements a row) hold only finite values; `row_map` (may be NULL) maps a row index to
 * the row number to report (the row in the file's own layout when the caller reads it
 * permuted). A non-finite value is LMP_ERANGE naming the file, tensor, row and column. */
int lmp_check_finite_rows(const char *file, const lmp_tensor *t, int64_t r0, int64_t nr,
                          int64_t (*row_map)(int64_t row, const void *ctx), const void *ctx);
/* Every float or block tensor of the checkpoint, in parallel: rows reported as the file
 * stores them. */
int lmp_ckpt_check_finite(const lmp_ckpt *c);
/* Finite check of a row already converted to f32 (the converters' hot loop). Returns the
 * index of the first non-finite value or -1. Vectorised. */
int64_t lmp_first_nonfinite(const float *x, int64_t n);

#endif
