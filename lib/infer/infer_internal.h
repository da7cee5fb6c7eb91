/*
 * Private to lib/infer's engine files (model.c, forward.c, ppl.c, sample.c): the layout
 * of lmp_model and lmp_session. Not installed, not for other modules.
 */
#ifndef LMP_INFER_INTERNAL_H
#define LMP_INFER_INTERNAL_H

#include "infer.h"

typedef struct {
    float *attn_norm;              /* (hidden) owned f32, as applied ((1 + w) for gemma);
                                      NULL: no pre-norm (olmo2) */
    float *ffn_norm;               /* (hidden) owned f32, or NULL */
    float *post_attn_norm;         /* (hidden) gemma2/3, olmo2: norm of the attention output
                                      before the residual add; NULL: none */
    float *post_ffn_norm;          /* (hidden) the same for the FFN output */
    float *q_norm, *k_norm;        /* (head_dim) per head, or (n_heads*head_dim) and
                                      (n_kv*head_dim) full width; NULL: none */
    lmp_wmat w[LMP_LIN_COUNT];     /* q (n_heads*head_dim, hidden), k/v (n_kv*head_dim,
                                      hidden), o (hidden, n_heads*head_dim), gate/up (ffn,
                                      hidden), down (hidden, ffn); borrowed */
    float *bias[LMP_LIN_COUNT];    /* (rows) owned f32, or NULL */
    struct lmp_moe *moe;           /* mixture of experts in place of gate/up/down (their
                                      w[] entries are then unused), owned; NULL: dense */
    struct lmp_lora_lin *lora[LMP_LIN_COUNT]; /* unmerged LoRA beside the linear (lora.c),
                                      owned, or NULL */
} lmp_layer;

/* An unmerged LoRA update of one linear (lib/infer/lora.c): Y += (X A^T) B^T, the
 * adapters' ranks stacked, each adapter's scale folded into its columns of B. */
typedef struct lmp_lora_lin {
    int r;
    float *a, *b;                  /* A (r, cols), B (rows, r) f32 */
    lmp_wmat A, B;
} lmp_lora_lin;

/* lora.c: Y[n][rows] += the update of `l` for X[n][cols]; frees a layer's updates. */
void lmp_lora_lin_apply(const lmp_lora_lin *l, float *Y, const float *X, int64_t n);
void lmp_lora_lin_free(lmp_lora_lin *l);

struct lmp_model {
    lmp_ckpt ckpt;                 /* owns the mappings every weight points into */
    lmp_config cfg;
    bool interleaved;              /* q/k rows in ggml's interleaved RoPE order */
    const lmp_tensor *embed;       /* (vocab, hidden) any dtype with to_f32; borrowed */
    size_t embed_row_bytes;
    int n_vocab;
    lmp_layer *layers;             /* (n_layers) */
    float *final_norm;             /* (hidden) owned f32 */
    lmp_wmat output;               /* (vocab, hidden): lm_head or the tied embeddings */
    float *inv_freq;               /* (rope_dim/2) RoPE frequencies, scaling applied (the
                                      global layers'; longrope: short factors) */
    float *inv_freq_local;         /* gemma3 local layers (own base, no scaling), or NULL */
    float *inv_freq_long;          /* longrope: long factors (contexts past the original), or NULL */
    float rope_mscale;             /* longrope attention factor on cos/sin (1 otherwise) */
    int rope_dim;                  /* rotated dims per head (<= head_dim) */
    float embed_scale;             /* embeddings times this (1: none) */
    float attn_scale;              /* scores times this (1/sqrt(head_dim) for llama) */
    lmp_tokenizer *tok;            /* owned, or NULL */
    const lmp_model_load_hooks *hooks; /* during lmp_model_load_ex only, else NULL */
    lmp_qtensor **owned_q;         /* (n_owned_q) intgroup weights adopted by the model
                                      (lmp_model_adopt_linear_q); freed by lmp_model_free */
    int n_owned_q, cap_owned_q;
    void **repacked;               /* (n_repacked) weights repacked at load
                                      (lmp_wmat_repack); freed by lmp_model_free */
    int n_repacked, cap_repacked;
    int n_lora;                    /* adapters attached unmerged (lmp_model_add_lora) */
};

struct lmp_session {
    const lmp_model *m;
    int n_ctx;
    int pos;                       /* positions filled */
    lmp_kv_layer *kv;              /* (n_layers) */
    float *kv_mem;                 /* (n_layers, 2, n_ctx, n_kv*head_dim) */
    float *work;                   /* the blocks' scratch (forward.c block_floats) */
    size_t work_cap;               /* its floats */
};

/* model.c: a view of rows [row0, row0 + rows) of tensor t (name for messages) as an
 * lmp_wmat of `cols` columns, checked (kernel, bytes), repacked when the kernels want it
 * (the copy owned by m). Expert slices of 3-D tensors are such row ranges. */
int lmp_model_wmat_view(lmp_model *m, const lmp_tensor *t, const char *name, int64_t row0,
                        int64_t rows, int64_t cols, lmp_wmat *w);

/* moe.c: the mixture-of-experts FFN of a sparse layer. */
typedef struct lmp_moe lmp_moe;
/* Loads layer l's router and experts (HF per-expert or fused 3-D tensors, or GGUF stacked
 * *_exps tensors); *out owned by the caller (lmp_moe_free). */
int lmp_moe_load(lmp_model *m, int l, lmp_moe **out);
/* Moves *q into the model's owned intgroup tensors (*q zeroed); *own the kept copy. */
int lmp_model_own_q(lmp_model *m, lmp_qtensor *q, const lmp_qtensor **own);
void lmp_moe_free(lmp_moe *e); /* accepts NULL */
/* Scratch floats lmp_moe_run needs for n tokens. */
size_t lmp_moe_floats(const lmp_model *m, int n);
/* out[n][hidden] = sum over each token's routed experts of weight * expert(xn row), the
 * experts in ascending index order; buf: lmp_moe_floats(m, n) floats (out not inside).
 * hook (may be NULL) sees each reached expert's inputs (lmp_hook_expert). */
int lmp_moe_run(const lmp_model *m, const lmp_moe *e, const float *xn, int n, float *out,
                float *buf, int layer, lmp_linear_hook hook, void *user);
/* Decoding one token inside an OpenMP parallel region (every thread calls it): the same
 * arithmetic as lmp_moe_run with n == 1, bitwise. scratch: lmp_moe_decode_floats(m)
 * floats shared by the team. team: lmp_gemv_team's shares. */
size_t lmp_moe_decode_floats(const lmp_model *m);
void lmp_moe_decode_team(const lmp_model *m, const lmp_moe *e, const float *xn, float *out,
                         float *scratch, lmp_team *team);

#endif
