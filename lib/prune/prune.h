/*
 * lib/prune public header: pruning of Llama-family decoders.
 *
 * Unstructured and N:M sparsity of the seven linears of every block: magnitude (per
 * output row, or one threshold per matrix), Wanda (Sun et al. 2023: |W_ij| * ||X_j||_2
 * compared within each output row) and SparseGPT (Frantar & Alistarh 2023: masks chosen
 * block by block from w^2 / [H^-1]_jj^2 with the OBS update of the remaining weights,
 * optionally quantized to integer groups in the same pass). They run layer by layer on
 * calibration windows with the engine's block runner, exactly as lib/quant's GPTQ
 * pipeline does: one Hessian per distinct linear input, the pruned block installed and run
 * again so that block i+1 calibrates on the outputs of the PRUNED block i; memory holds one
 * block and the hidden states of the samples, whatever the depth.
 *
 * Structured pruning (lmp_struct_*): attention heads (query heads uniformly per KV group,
 * or whole KV groups), FFN channels, whole decoder layers. It produces a plan (which
 * heads/channels/layers survive, the same count in every layer so that one config.json
 * describes the smaller model); formats/sparse.h writes the physically smaller model.
 *
 * A sparse matrix kernel (CSR and 2:4 in f32) for the benchmark against lmp_gemm.
 *
 * Not here: file layouts (formats/sparse.h), calibration windows and the layer-wise driver (lib/calib/calib.h).
 */
#ifndef LMP_PRUNE_H
#define LMP_PRUNE_H

#include "../infer/infer.h"
#include "../calib/calib.h"
#include "../quant/intquant.h"

/* ---------------------------------------------------------------- one linear ------ */

typedef enum { LMP_PRUNE_MAGNITUDE = 0, LMP_PRUNE_WANDA, LMP_PRUNE_SPARSEGPT } lmp_prune_method;
/* Magnitude only: compare within each output row (default), or over the whole matrix. */
typedef enum { LMP_PRUNE_SCOPE_ROW = 0, LMP_PRUNE_SCOPE_MATRIX } lmp_prune_scope;

const char *lmp_prune_method_name(lmp_prune_method m); /* "magnitude", "wanda", "sparsegpt" */
int lmp_prune_method_from_name(const char *s);         /* -1 when unknown */

typedef struct {
    lmp_prune_method method;
    double sparsity;       /* unstructured: fraction of each row set to zero, [0, 1) */
    int n, m;              /* N:M: at most n non-zeros in every m consecutive inputs (keep n of
                              m); m = 0 for unstructured */
    lmp_prune_scope scope; /* magnitude only */
    float damp;            /* SparseGPT: damp = damp * mean(diag H) (default 0.01) */
    int blocksize;         /* SparseGPT: columns per mask block / lazy update (default 128) */
    /* SparseGPT joint quantization (--then-quantize): bits 0 = none, else 2..8 integer
     * groups (GPTQ's find_params on the partially updated weights at each group start). */
    int qbits;
    int qgroup;            /* > 0 or -1 (default 128) */
    bool qsym;             /* default true */
} lmp_prune_spec;

void lmp_prune_default_spec(lmp_prune_spec *s); /* wanda, 50%, row scope */
/* Validates the spec for a matrix of `cols` inputs (name used in messages): sparsity in
 * [0, 1), 0 < n < m, m dividing cols, quantization options. LMP_EINVAL otherwise. */
int lmp_prune_spec_check(const lmp_prune_spec *s, int64_t cols, const char *name);
/* Weights zeroed per row (unstructured row scope and SparseGPT: floor(sparsity * cols);
 * N:M: (m - n) * cols / m). Every row loses exactly this many. */
int64_t lmp_prune_row_zeros(const lmp_prune_spec *s, int64_t cols);
/* Weights zeroed in a rows x cols matrix (matrix scope: floor(sparsity * rows * cols)). */
int64_t lmp_prune_matrix_zeros(const lmp_prune_spec *s, int64_t rows, int64_t cols);

/* Prunes W[rows][cols] (f32, in place). mask (may be NULL) receives [rows][cols], 1 =
 * kept. Magnitude needs no statistics; Wanda uses the diagonal of H (||X_j||^2 up to a
 * common scale); SparseGPT the whole H (double [cols][cols], as lmp_gptq_hessian_add
 * builds it; not modified) and also updates the kept weights. With spec->qbits (SparseGPT
 * only) *q receives the quantized tensor (INTGROUP; its dequantization equals W on
 * return) and *loss SparseGPT's sum of (w - q)^2 / [H^-1]_ii^2 / 2. Ties are broken by the
 * lower column index. Deterministic, OpenMP over rows. Returns status (LMP_ERANGE for
 * non-finite weights or an H that is not positive definite after damping). */
int lmp_prune_linear(float *W, int64_t rows, int64_t cols, const double *H, const lmp_prune_spec *s,
                     uint8_t *mask, lmp_qtensor *q, double *loss);

/* SparseGPT's factor of (H + damp I)^-1 kept for the next linear of the same input (q/k/v
 * share one Hessian, gate/up another): lmp_prune_linear_cached with a cache whose key (the
 * caller's tag, H's address, cols, damp) matches reuses it (the values it would compute:
 * the same bits), otherwise computes it and keeps it there. Zero-initialize;
 * lmp_prune_hcache_free releases. */
typedef struct {
    uint64_t tag; /* the caller's name for H (e.g. layer and input class); 0: none */
    const double *H;
    int64_t cols;
    float damp;
    float *U;      /* [cols][cols] */
    uint8_t *dead; /* [cols] */
} lmp_prune_hcache;
int lmp_prune_linear_cached(float *W, int64_t rows, int64_t cols, const double *H, const lmp_prune_spec *s,
                            lmp_prune_hcache *cache, uint64_t tag, uint8_t *mask, lmp_qtensor *q, double *loss);
void lmp_prune_hcache_free(lmp_prune_hcache *c);

/* Magnitude or Wanda from the input norms alone: xsq[cols] = sum over the calibration
 * tokens of X_j^2 (any common scale; ignored by magnitude, may be NULL there). Same masks
 * as lmp_prune_linear with an H whose diagonal is xsq, without the cols x cols matrix. */
int lmp_prune_linear_norms(float *W, int64_t rows, int64_t cols, const double *xsq, const lmp_prune_spec *s,
                           uint8_t *mask);

/* ---------------------------------------------------------------- the pipeline ---- */

typedef struct {
    int layer;
    lmp_linear which;
    char name[LMP_MAX_NAME]; /* "model.layers.3.mlp.down_proj" */
    int64_t rows, cols;
    int64_t zeros;           /* weights set to zero */
    double err;              /* ||WX - W'X|| / ||WX|| on the calibration inputs it saw; -1 without */
    double loss;             /* SparseGPT loss; -1 otherwise */
    double seconds;
} lmp_prune_linear_stats;

/* Called once per block, in order, with the seven pruned linears: W[k] f32 [rows][cols]
 * (the new weights), mask[k] [rows][cols] (1 = kept), q (NULL, or q[LMP_LIN_COUNT]
 * quantized tensors with joint quantization), stats; all borrowed for the call. A non-zero
 * return stops the run with that status. */
typedef int (*lmp_prune_sink)(void *ctx, int layer, const float *const *W, const uint8_t *const *mask,
                              const lmp_qtensor *q, const lmp_prune_linear_stats *st);

/* Mixture of experts: called once per sparse block, before the sink of the same block,
 * with its experts' pruned weights We[3 * n_experts] (expert e's gate, up, down at 3e + 0,
 * 1, 2; f32 [rows][cols]), borrowed for the call and until that sink returns. The sink's W
 * is then NULL for the block's gate/up/down. */
typedef int (*lmp_prune_expert_sink)(void *ctx, int layer, int n_experts, const float *const *We);

typedef struct {
    lmp_prune_spec spec;
    /* 1: within a block, q/k/v pruned first, o's statistics collected with them pruned,
     * then gate/up, then down (as the quantization pipeline). 0: all statistics of a
     * block from one pass over the original block. -1 (default): the method's own
     * reference behaviour: 0 for Wanda (Sun et al.'s prune_wanda gathers the input norms
     * of every linear of a block in one forward pass; measured worse true-sequential on
     * gutenberg-5M, docs/results.md), 1 for SparseGPT. Magnitude needs no statistics. */
    int true_sequential;
    /* The first token of every calibration window replaced by the model's BOS (when it has
     * one), so that calibration sees what inference sees: every prompt and every window of
     * the perplexity protocols starts with BOS, and models trained that way put massive
     * activations (an attention sink) on it that random mid-text windows never produce.
     * Default false: the windows as given (the Wanda / SparseGPT reference scripts); no
     * consistent effect measured on gutenberg-5M (docs/results.md). */
    bool calib_bos;
    /* True-sequential SparseGPT calibrates in bf16 by default, as GPTQ (lmp_calib_opts.bf16:
     * the walk multiplies bf16 copies of the installed linears by bf16-rounded activations
     * and X^T X sums bf16-rounded inputs); true: the f32 walk and Hessians. */
    bool calib_f32;
    bool progress;
    lmp_prune_sink sink;
    lmp_prune_expert_sink expert_sink; /* may be NULL */
    void *sink_ctx;
    void (*on_layer_done)(void *ctx, int layer, int n_layers, double seconds, const lmp_prune_linear_stats *st);
    void *log_ctx;
} lmp_prune_params;

typedef struct {
    int n_layers;
    lmp_prune_linear_stats *lin; /* [n_layers * LMP_LIN_COUNT], owned */
    int n_samples, seq_len;
    uint64_t act_bytes;
    uint64_t params;             /* weights of the pruned linears */
    uint64_t zeros;              /* of which set to zero */
    double sparsity;             /* zeros / params */
    /* mixture of experts: expert linears pruned, and of them those of experts no
     * calibration token reached (pruned by magnitude: no statistics) */
    int n_expert_linears, n_expert_unreached;
    double seconds;
    uint64_t peak_rss;
} lmp_prune_result;

void lmp_prune_default_params(lmp_prune_params *p);
void lmp_prune_result_free(lmp_prune_result *r); /* accepts NULL */
/* Checks the spec against every linear of m (N:M dividing in_features, dtypes convertible). */
int lmp_prune_check(const lmp_model *m, const lmp_prune_spec *s);
/* Prunes every linear of m block by block. cal may be NULL only for magnitude (no forward
 * passes, err = -1). On return every linear of m is its original weight again. *res is
 * filled (owned) even on failure. */
int lmp_prune_run(lmp_model *m, const lmp_calib_data *cal, const lmp_prune_params *p, lmp_prune_result *res);

/* ---------------------------------------------------------------- structured ------ */

typedef enum {
    LMP_STRUCT_HEADS = 0, /* query heads, the same number removed from every KV group */
    LMP_STRUCT_KV_HEADS,  /* whole KV heads with their query groups */
    LMP_STRUCT_FFN,       /* FFN intermediate channels (gate/up rows, down columns) */
    LMP_STRUCT_LAYERS,    /* whole decoder blocks */
} lmp_struct_kind;

const char *lmp_struct_kind_name(lmp_struct_kind k); /* "heads", "kv-heads", "ffn", "layers" */
int lmp_struct_kind_from_name(const char *s);        /* -1 when unknown */

/* Which parts survive (indices into the original model, ascending). */
typedef struct {
    lmp_struct_kind kind;
    double ratio;
    lmp_config in, out;          /* configs before and after */
    int *keep_layers;            /* [out.n_layers] original block of each new block */
    int *keep_heads;             /* [in.n_layers][out.n_heads] kept query heads per block */
    int *keep_kv;                /* [in.n_layers][out.n_kv_heads] kept KV heads per block */
    int *keep_ffn;               /* [in.n_layers][out.intermediate_size] kept channels */
    double *score;               /* layers: block influence [in.n_layers]; heads: [n_layers][n_heads];
                                    kv-heads: [n_layers][n_kv]; ffn: [n_layers][ffn] */
    int64_t params_in, params_out; /* lmp_config_n_params of in and out */
    double seconds;
    uint64_t peak_rss;
} lmp_struct_plan;

/* Units removed per layer (heads per group, KV heads, channels) or layers removed for a
 * ratio; LMP_EINVAL with a message when the ratio removes nothing or everything (every
 * head of a group, every KV head, every channel, every layer), or is outside (0, 1). */
int lmp_struct_count(const lmp_config *c, lmp_struct_kind k, double ratio, int *removed);
/* What structured pruning refuses of model m before any work: FFN channels of a
 * mixture-of-experts model (LMP_EUNSUPPORTED with the reason; heads, KV heads and layers of
 * expert models are supported). */
int lmp_struct_check(const lmp_model *m, lmp_struct_kind k);
/* Chooses what to remove. Importance: heads and KV heads sum over their o_proj input
 * columns of ||X_j||^2 * ||W_o[:, j]||^2 (activation-weighted, Wanda-style); FFN channels
 * ||X_j||^2 * ||W_down[:, j]||^2 on the down_proj input; layers the block influence 1 -
 * mean cos(x_in, x_out) over calibration tokens (Men et al. 2024, ShortGPT), lowest
 * removed. Heads and channels are chosen block by block with the earlier blocks already
 * pruned (their removed parts zeroed in the running model), so each block sees the
 * pruned model's activations. cal is required. *plan is owned (lmp_struct_plan_free). */
int lmp_struct_plan_make(lmp_model *m, const lmp_calib_data *cal, lmp_struct_kind k, double ratio,
                         lmp_struct_plan *plan);
void lmp_struct_plan_free(lmp_struct_plan *p); /* accepts NULL */

/* ---------------------------------------------------------------- sparse kernels -- */

/* Compressed sparse rows of an f32 matrix: the non-zeros of row r are val/col[row_ptr[r]
 * .. row_ptr[r+1]). Owned arrays. */
typedef struct {
    int64_t rows, cols;
    int64_t *row_ptr; /* [rows + 1] */
    uint32_t *col;    /* [nnz] */
    float *val;       /* [nnz] */
} lmp_csr;

/* 2:4 compressed: two values per group of four inputs and their positions (2 bits each,
 * one byte per group: first position in bits 0-1, second in bits 2-3). */
typedef struct {
    int64_t rows, cols; /* cols % 4 == 0 */
    float *val;         /* [rows][cols / 2] */
    uint8_t *pos;       /* [rows][cols / 4] */
} lmp_sp24;

int lmp_csr_from_dense(lmp_csr *s, const float *W, int64_t rows, int64_t cols);
void lmp_csr_free(lmp_csr *s); /* accepts NULL */
/* Every group of four holds at most two non-zeros, else LMP_EINVAL. */
int lmp_sp24_from_dense(lmp_sp24 *s, const float *W, int64_t rows, int64_t cols);
void lmp_sp24_free(lmp_sp24 *s);
/* Y[M][rows] = X[M][cols] W^T, as lmp_gemm with no bias. OpenMP over rows (M small) or
 * over rows with X transposed (M >= 8); deterministic for any thread count. */
int lmp_csr_gemm(float *Y, const float *X, const lmp_csr *W, int64_t M);
int lmp_sp24_gemm(float *Y, const float *X, const lmp_sp24 *W, int64_t M);

#endif
