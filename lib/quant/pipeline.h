/*
 * Calibrated quantization of a whole model, layer by layer (GPTQ paper, Frantar et al.
 * 2022, section 4 and IST-DASLab/gptq llama.py llama_sequential): calibration text ->
 * token windows (calib.c) -> every sample through decoder block i with the engine's block
 * runner, one Hessian per distinct linear input (q/k/v share one, gate/up share one) ->
 * GPTQ (or RTN) per linear -> the quantized block installed and run again so that block
 * i+1 sees the outputs of the QUANTIZED block i (pipeline.c).
 *
 * Memory: the hidden states of every sample, f32 [n_samples][seq_len][hidden], plus one
 * block's Hessians (double [in][in] per distinct input of the group being quantized), one
 * block's f32 weight copies and its quantized tensors. Nothing grows with the number of
 * layers. 128 samples x 2048 tokens x hidden 4096 would be 4 GiB of activations: the
 * defaults (128 x 2048, GPTQ's) are capped to the model's context, and the caller is told
 * the size (lmp_qpipe_result.act_bytes, and lmp_qpipe_act_bytes before the run).
 *
 * The walk itself is lib/calib's driver (calib.h); GPTQ and RTN are rows of hooks
 * (pipeline.c), AWQ another (awq.c).
 *
 * Not here: file layouts (formats/qmodel.h writes and reads GPTQ / compressed-tensors
 * folders; lib/quant never includes formats/), the intgroup kernels of the engine.
 */
#ifndef LMP_PIPELINE_H
#define LMP_PIPELINE_H

#include "../calib/calib.h"
#include "intquant.h"

/* ---------------------------------------------------------------- the pipeline ---- */

/* AWQ (Lin et al. 2023): activation-aware per-channel scales folded into the preceding
 * norm / linear, a clipping search, then asymmetric RTN; see lmp_awq_run below. */
typedef enum { LMP_QMETHOD_GPTQ = 0, LMP_QMETHOD_RTN, LMP_QMETHOD_AWQ } lmp_qmethod;

/* Vectors of one block that a method changed (AWQ folds its scales into the two RMSNorm
 * weights and, through v_proj / up_proj, into their biases): f32, borrowed for the call,
 * NULL = unchanged. A writer must store these instead of the input's tensors. */
typedef struct {
    const float *attn_norm;            /* (hidden) input_layernorm.weight */
    const float *ffn_norm;             /* (hidden) post_attention_layernorm.weight */
    const float *bias[LMP_LIN_COUNT];  /* (rows of linear k) "<prefix>.bias" */
    /* mixture of experts: the router (n_experts, hidden) f32 with AWQ's gate/up scales
     * folded into its columns (it reads the same normed input), kept unquantized */
    const float *router;
} lmp_qfold;
/* Called before the sink of the same block (ctx = sink_ctx). Non-zero stops the run. */
typedef int (*lmp_qpipe_fold_sink)(void *ctx, int layer, const lmp_qfold *f);

/* What happened to one linear. Errors are relative output errors on the calibration
 * inputs the linear saw, ||W X - Q X||_F / ||W X||_F, computed from the Hessian
 * (H = 2/n X^T X, so ||D X||^2 = n/2 tr(D H D^T) with D = W - Q). */
typedef struct {
    int layer;
    lmp_linear which;
    char name[LMP_MAX_NAME]; /* HF prefix: "model.layers.3.mlp.down_proj" */
    int64_t rows, cols;
    double loss;     /* GPTQ's reported loss (sum of Losses); -1 with RTN */
    double err;      /* relative output error of the result; -1 without calibration */
    double err_rtn;  /* the same for RTN at the same bits/group/sym; -1 when not measured */
    double seconds;  /* quantization of this linear (Hessian collection excluded) */
} lmp_qlinear_stats;

/* Mixture of experts: called once per sparse block, before the sink of the same block,
 * with its experts' quantized linears qe[3 * n_experts] (expert e's gate, up, down at
 * 3e + 0, 1, 2), borrowed for the call and until that sink returns. The sink's q then
 * holds zeroed tensors (scheme 0) for the block's gate/up/down (it has no dense FFN). */
typedef int (*lmp_qpipe_expert_sink)(void *ctx, int layer, int n_experts, const lmp_qtensor *qe);

/* Called once per block with its seven quantized linears (q[LMP_LIN_COUNT], in
 * lmp_linear order) and their statistics, all borrowed for the call only. A non-zero
 * return stops the pipeline with that status. */
typedef int (*lmp_qpipe_sink)(void *ctx, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st);

/* One linear's integer-group setting (issue 21, mixed precision: lib/quant/intplan.h
 * chooses them): bits 2..8 and group size (> 0, or -1 per output channel); bits 0 = the
 * run's global bits / group_size. */
typedef struct {
    int bits;
    int group_size;
} lmp_qsetting;

typedef struct {
    lmp_qmethod method;   /* default GPTQ */
    int bits;             /* 2..8, default 4 */
    int group_size;       /* > 0 or -1 (per output channel); default 128 */
    bool sym;             /* default true */
    bool act_order;       /* default true */
    bool static_groups;   /* default false */
    float damp;           /* GPTQ percdamp, default 0.01 */
    int blocksize;        /* GPTQ lazy batch width, default 128 */
    /* GPTQ true-sequential (AutoGPTQ's default): within a block, q/k/v are quantized
     * first, then o's Hessian is collected with quantized q/k/v, then gate/up, then
     * down. false: all seven Hessians from one pass over the original block (llama.py
     * without --true-sequential). Default true. */
    bool true_sequential;
    bool compare_rtn;     /* also measure RTN's error (default true) */
    bool progress;        /* progress bar on stderr (default true; silent when not a TTY) */
    /* Linears left as they are ([n_layers * LMP_LIN_COUNT], 1 = keep; NULL = none): not
     * quantized, the sink gets a zeroed lmp_qtensor (scheme 0) for them (issue 18 item 8). */
    const uint8_t *keep;
    /* Per-linear settings ([n_layers * LMP_LIN_COUNT], lmp_linear order within a block;
     * NULL = bits / group_size for every linear): a mixed-precision plan. */
    const lmp_qsetting *per_linear;
    lmp_qpipe_sink sink;  /* may be NULL */
    void *sink_ctx;
    lmp_qpipe_fold_sink fold_sink; /* AWQ's folded vectors, before sink (may be NULL) */
    lmp_qpipe_expert_sink expert_sink; /* experts' tensors, before sink (may be NULL) */
    /* AWQ (AutoAWQ's defaults): alpha grid of awq_grid points in [0, 1) (default 20);
     * duo scaling s = x^a / w^(1-a) (AutoAWQ's default true; false: the paper's x^a);
     * clipping-range search (default true) on awq_clip_tokens sampled tokens (512). */
    int awq_grid;
    bool awq_duo_scaling;
    bool awq_clip;
    int awq_clip_tokens;
    /* Dense models: the grid searches' losses (and the per-linear error figures) on about
     * this many sampled calibration tokens (q/k/v: on whole windows holding as many)
     * instead of all of them (AutoAWQ's); 0: all tokens; < 0 (default): LMP_AWQ_SEARCH_TOKENS.
     * Runs with at most this many tokens search on all of them. */
    int awq_search_tokens;
    /* The first token of every calibration window replaced by the model's BOS (when it
     * has one), as lmp_prune_params.calib_bos (default false) */
    bool calib_bos;
    /* GPTQ: the calibration walk in f32 (the linears installed for it as they are, the
     * Hessians from f32 X). Default false: bf16 calibration (lmp_calib_opts.bf16), as
     * the reference implementations run it in the model's bf16; see docs/benchmarks.md.
     * AWQ (dense models): the float passes on the linears as they are and the sample
     * searches' products in f32 (the bytes before bf16 AWQ); default: bf16 copies of the
     * block's linears for its float passes and bf16 products of the sample's losses. */
    bool calib_f32;
    /* After each block (may be NULL): layer, seconds, for per-layer log lines. */
    void (*on_layer_done)(void *ctx, int layer, int n_layers, double seconds, const lmp_qlinear_stats *st);
    void *log_ctx;
} lmp_qpipe_params;

typedef struct {
    int n_layers;
    lmp_qlinear_stats *lin;  /* [n_layers * LMP_LIN_COUNT], owned (lmp_qpipe_result_free) */
    double *layer_seconds;   /* [n_layers], owned */
    int n_samples, seq_len;  /* 0 without calibration */
    uint64_t act_bytes;      /* hidden states held */
    uint64_t params;         /* weights quantized */
    uint64_t qbytes;         /* in-memory intgroup payload of all quantized linears */
    int n_worse_than_rtn;    /* linears whose err > err_rtn (GPTQ with compare_rtn) */
    /* mixture of experts: expert linears quantized, and of them those of experts no
     * calibration token was routed to (GPTQ falls back to RTN for them: no Hessian) */
    int n_expert_linears, n_expert_unreached;
    double worst_err;        /* largest err */
    char worst_name[LMP_MAX_NAME];
    double seconds;
    uint64_t peak_rss;
    lmp_calib_times phases;  /* the layer-wise driver's phases (calib.h) */
    double report_seconds;   /* of phases.solve: the error figures (tr(D H D^T) of GPTQ, RTN, W) */
} lmp_qpipe_result;

void lmp_qpipe_default_params(lmp_qpipe_params *p);
/* The bits / group size linear `which` of `layer` is quantized with (per_linear's entry,
 * else the global ones). */
int lmp_qpipe_lin_bits(const lmp_qpipe_params *p, int layer, lmp_linear which);
int lmp_qpipe_lin_group(const lmp_qpipe_params *p, int layer, lmp_linear which);
void lmp_qpipe_result_free(lmp_qpipe_result *r); /* accepts NULL */

/* Checks the parameters against the model before any work: bits, group size dividing
 * every linear's in_features (LMP_EINVAL naming the first linear that does not), weight
 * dtypes convertible to f32. With m NULL, the preferences alone (ranges, method and
 * option pairs; messages name the lmpress option), before the model is read. Returns
 * status. */
int lmp_qpipe_check(const lmp_model *m, const lmp_qpipe_params *p);
/* Bytes of hidden states the run will hold for cal (n_samples * seq_len * hidden * 4). */
uint64_t lmp_qpipe_act_bytes(const lmp_model *m, const lmp_calib_data *cal);

/* Quantizes every linear of every block of `m`, block by block. `cal` may be NULL only
 * for RTN (no forward passes, err = -1). The model is used for forward passes with the
 * quantized blocks installed one at a time (intgroup, run natively); on return every
 * linear of `m` is its original weight again. Weights that are not finite are LMP_ERANGE
 * naming the tensor. *res is filled (owned; lmp_qpipe_result_free) even on failure. */
int lmp_qpipe_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p,
                  lmp_qpipe_result *res);

/* ---------------------------------------------------------------- AWQ ------------ */
/* lib/quant/awq.c. AWQ (Lin et al. 2023, "AWQ: Activation-aware Weight Quantization";
 * facts from casper-hansen/AutoAWQ awq/quantize/quantizer.py and scale.py), block by
 * block on the engine's block runner:
 *  1. every calibration sample through block i with the ORIGINAL weights, capturing the
 *     input of each linear (q/k/v share one, gate/up share one); the float outputs are
 *     block i+1's inputs (AutoAWQ feeds the float block output forward, not the
 *     quantized one; we follow it);
 *  2. per layer group (input_layernorm -> q,k,v; v_proj -> o_proj when their weights
 *     have the same shape, i.e. no GQA; post_attention_layernorm -> gate,up; up_proj ->
 *     down_proj) a grid search over alpha = i/grid, s = mean|x|^a (/ w_mean^(1-a) with
 *     duo scaling), clamped at 1e-4 and divided by sqrt(max(s) min(s)), minimizing the
 *     MSE of the group's module output with Q(W diag(s)) diag(s)^-1 in place of W: the
 *     attention output (through o_proj, with the engine's attention) for q/k/v, the
 *     whole MLP for gate/up, the linear's own output for o and down;
 *  3. the scales folded (lmp_awq_fold), the clipping search (every linear but q and k,
 *     per (row, group) max |w| shrunk by i/20, i < 10, minimizing the group's output
 *     MSE on up to awq_clip_tokens sampled tokens) and the clip applied;
 *  4. AWQ's group quantizer (lmp_awq_quant) on the scaled, clipped weights.
 * Memory: the inputs of all four linear classes for all samples (tokens x (3 hidden +
 * FFN) f32, as AutoAWQ's input_feat), twice the hidden states, one block's weights. */

/* The default of lmp_qpipe_params.awq_search_tokens (docs/benchmarks.md, "AWQ search
 * sample"). */
#define LMP_AWQ_SEARCH_TOKENS 1024

typedef enum { LMP_AWQ_QKV = 0, LMP_AWQ_VO, LMP_AWQ_MLP, LMP_AWQ_DOWN, LMP_AWQ_NGROUPS } lmp_awq_group;

/* One block's foldable parameters as f32 arrays (the caller owns them). */
typedef struct {
    float *attn_norm;              /* (hidden) */
    float *ffn_norm;               /* (hidden) */
    float *bias[LMP_LIN_COUNT];    /* (rows of linear k) or NULL */
    float *w[LMP_LIN_COUNT];       /* (rows, cols) of linear k, row-major */
} lmp_awq_block;

/* True when v_proj and o_proj have the same shape (the v -> o group applies). */
bool lmp_awq_has_vo(const lmp_config *c);
/* Folds scales s[g] (NULL = group g not scaled; length = the group's in_features) into b
 * so that the float block computes the same function: attn_norm /= s, q/k/v columns *= s
 * (QKV); v rows and bias /= s, o columns *= s (VO); ffn_norm /= s, gate/up columns *= s
 * (MLP); up rows and bias /= s, down columns *= s (DOWN). VO without lmp_awq_has_vo is
 * LMP_EINVAL. */
int lmp_awq_fold(lmp_awq_block *b, const lmp_config *c, const float *const s[LMP_AWQ_NGROUPS]);
/* AWQ's group quantizer (AutoAWQ pseudo_quantize_tensor) of W[rows][cols] into a new
 * INTGROUP tensor: with zero points (sym false), per (row, group) scale = max(max - min,
 * 1e-5) / (2^bits - 1) (the range is NOT widened to include 0, unlike GPTQ's), rounded to
 * f16, zero = clamp(-round(min / scale), 0, 2^bits - 1); sym: scale = max(max|w|, 1e-5) /
 * (2^(bits-1) - 1), codes in [-2^(bits-1), 2^(bits-1) - 1] stored + 2^(bits-1). */
int lmp_awq_quant(const float *W, int64_t rows, int64_t cols, int bits, int group_size, bool sym,
                  lmp_qtensor *out);
/* The layer-by-layer AWQ run (lmp_qpipe_run calls it for LMP_QMETHOD_AWQ; same contract:
 * the model is unchanged on return). Per-linear err is the relative output error of the
 * folded, clipped, quantized linear on its (scaled) calibration inputs; err_rtn that of
 * lmp_awq_quant on the original weight (AWQ without scales or clipping); loss -1. */
int lmp_awq_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p, lmp_qpipe_result *res);

/* Interim accessors (mutable, borrowed) to the model's f32 RMSNorm weights and linear
 * biases (NULL when the linear has none), until lib/infer exposes lmp_model_norm /
 * lmp_model_bias: AWQ's tests and fake-quantized evaluation install folded vectors
 * through them. Not thread safe with forward passes. */
float *lmp_awq_model_norm(lmp_model *m, int layer, bool ffn);
float *lmp_awq_model_bias(lmp_model *m, int layer, lmp_linear which);

/* ---------------------------------------------------------------- imatrix -------- */
/* lib/quant/imatrix.c: llama.cpp-style importance matrix (llama-imatrix): every
 * calibration window through all blocks of the FLOAT model, and per linear the mean of
 * x^2 over the tokens for each input column (q/k/v share the vector, as do gate/up).
 * Used as lmp_quant_rows' importance weights on the GGUF path. */
typedef struct {
    int n_layers;
    int64_t cols[LMP_LIN_COUNT];
    float *v;            /* owned: per layer the 4 input classes (attn, o, mlp, down) */
    int n_chunks;        /* calibration windows */
    int64_t n_tokens;    /* tokens seen per linear */
    int n_entries;       /* linears covered (7 per layer): llama.cpp's entries_count */
    /* mixture of experts: per sparse layer and expert, E[x^2] over the tokens ROUTED to
     * that expert only: ev holds per layer [n_experts][hidden] (gate/up input) then
     * [n_experts][moe_ff] (down input); ecount[layer][expert] those tokens (0: the expert
     * was never reached; its slice is zero, read as "no weights"). NULL for dense models. */
    int n_experts;
    int64_t e_hidden, e_ff;
    float *ev;
    int64_t *ecount;
} lmp_imatrix;

/* Runs every window of cal through the model (each block in order) collecting E[x^2].
 * *out owned (lmp_imatrix_free). */
int lmp_imatrix_collect(const lmp_model *m, const lmp_calib_data *cal, bool progress, lmp_imatrix *out);
/* Loads `model`, draws the windows (seq_len 0 = min(512, context), llama-imatrix's n_ctx)
 * from calib_path and collects; the model is freed before returning. */
int lmp_imatrix_compute(const char *model, const char *calib_path, const lmp_calib_params *cp, bool progress,
                        lmp_imatrix *out);
void lmp_imatrix_free(lmp_imatrix *im); /* accepts NULL */
/* The column weights of linear `which` of `layer` (borrowed), NULL when out of range. */
const float *lmp_imatrix_get(const lmp_imatrix *im, int layer, lmp_linear which);
/* lmp_quant_weights_fn over GGUF names (blk.N.attn_q.weight ... blk.N.ffn_down.weight,
 * and blk.N.ffn_{gate,up,down}_exps.weight asked for cols x n_experts values: one slice per
 * expert; ctx = the lmp_imatrix): NULL for other tensors or a column count that differs. */
const float *lmp_imatrix_weights(void *ctx, const char *gguf_name, int64_t cols);

/* A llama.cpp imatrix file (llama-imatrix output: the legacy binary .dat or the GGUF
 * format), as per-tensor importance weights: `values` are what llama-quantize passes to
 * its quantizers (legacy: stored value / ncall; GGUF: in_sum2 / count), one vector of
 * nval floats per GGUF tensor name (blk.N.attn_q.weight ...). */
typedef struct {
    int n_entries;
    char **names;
    float **values;
    int64_t *nval;
    int chunks;          /* the file's chunk count (0 when absent) */
    char *dataset;       /* the calibration text it names, or NULL */
} lmp_imatrix_file;

/* Reads `path` (legacy .dat or GGUF imatrix). A malformed file is LMP_EFORMAT naming the
 * byte offset or entry and the defect (truncation, negative or oversized counts and
 * lengths, duplicate names, non-finite or negative values, trailing garbage); *f is
 * then cleared. On success *f is owned (lmp_imatrix_file_free). */
int lmp_imatrix_file_load(const char *path, lmp_imatrix_file *f);
void lmp_imatrix_file_free(lmp_imatrix_file *f); /* accepts NULL and cleared structs */
/* The entry named `name` (borrowed; *nval its length) or NULL. */
const float *lmp_imatrix_file_get(const lmp_imatrix_file *f, const char *name, int64_t *nval);
/* lmp_quant_weights_fn over a loaded file (ctx = the lmp_imatrix_file): NULL for tensors
 * it lacks; a length other than `cols` is warned about and not used. */
const float *lmp_imatrix_file_weights(void *ctx, const char *gguf_name, int64_t cols);
/* lmp_gguf_quant_params.weights_len for an lmp_imatrix_file: values its entry for the
 * tensor holds, 0 when it has none. */
int64_t lmp_imatrix_file_len(void *ctx, const char *gguf_name);
/* Writes a computed imatrix as llama.cpp's legacy .dat (entries sorted by name, values
 * E[x^2] * chunks, chunk count and `dataset` (NULL: empty) as the trailer), which
 * llama-quantize --imatrix and lmp_imatrix_file_load read. Atomic; LMP_EEXIST unless
 * force. */
int lmp_imatrix_file_save(const char *path, const lmp_imatrix *im, const char *dataset, bool force);

/* Installs a dequantized f32 copy of q as linear `which` of `layer`: *buf receives the
 * malloc'd [rows][cols] f32 matrix, which the caller frees only after restoring the
 * original weight (lmp_model_set_linear) or freeing the model. For fake-quantized
 * evaluation with f32 weights: the reference the native intgroup path
 * (lmp_model_set_linear_q) is compared with. */
int lmp_qpipe_install(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q, float **buf);

/* Relative output error sqrt(tr(D H D^T) / tr(W H W^T)), D = W - Q, W and Q f32
 * [rows][cols], H double [cols][cols]. 0 when W H W^T vanishes. */
double lmp_qpipe_rel_error(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols);

#endif
