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
 * Not here: file layouts (formats/qmodel.h writes and reads GPTQ / compressed-tensors
 * folders; lib/quant never includes formats/), the intgroup kernels of the engine.
 */
#ifndef LMP_PIPELINE_H
#define LMP_PIPELINE_H

#include "../infer/infer.h"
#include "intquant.h"

/* ---------------------------------------------------------------- calibration ----- */

typedef enum {
    /* IST-DASLab/gptq datautils.py get_wikitext2: the text tokenized once (with the
     * tokenizer's BOS rule), n_samples windows of seq_len tokens at uniformly random
     * starts in [0, n_tokens - seq_len - 1] (windows may overlap). */
    LMP_CALIB_RANDOM = 0,
    /* llama.cpp imatrix: consecutive non-overlapping chunks from the start, the first
     * token of each replaced by BOS when the model has one; needs n_samples * seq_len
     * tokens. */
    LMP_CALIB_CHUNKS,
} lmp_calib_mode;

typedef struct {
    int n_samples;      /* default 128 */
    int seq_len;        /* 0 = min(2048, the model's context) (default 0) */
    lmp_calib_mode mode; /* default LMP_CALIB_RANDOM */
    uint64_t seed;      /* default 0 (lmp_rng) */
    size_t max_bytes;   /* read at most this many bytes of the text (0 = all) */
} lmp_calib_params;

/* Token windows for calibration. */
typedef struct {
    int n_samples, seq_len;
    int32_t *tokens;        /* [n_samples][seq_len], owned */
    int64_t n_text_tokens;  /* tokens the whole text gave */
    size_t text_bytes;      /* bytes read */
} lmp_calib_data;

void lmp_calib_default_params(lmp_calib_params *p);
/* Reads a text file, plain or gzip (by its magic; zlib), into a malloc'd NUL-terminated
 * buffer, at most max_bytes (0 = all). An empty file is LMP_EINVAL naming it. */
int lmp_calib_read_text(const char *path, size_t max_bytes, char **text, size_t *len);
/* Tokenizes text[0..len) with the model's tokenizer and draws the windows. `name` is used
 * in messages. A text too short for one window (random: seq_len + 1 tokens; chunks:
 * n_samples * seq_len tokens) is LMP_EINVAL naming `name` and both token counts; a
 * seq_len above the model's context is LMP_EINVAL. *out is owned (lmp_calib_free). */
int lmp_calib_from_text(const lmp_model *m, const char *text, size_t len, const char *name,
                        const lmp_calib_params *p, lmp_calib_data *out);
/* lmp_calib_read_text + lmp_calib_from_text. */
int lmp_calib_load(const lmp_model *m, const char *path, const lmp_calib_params *p,
                   lmp_calib_data *out);
void lmp_calib_free(lmp_calib_data *d); /* accepts NULL */

/* ---------------------------------------------------------------- the pipeline ---- */

typedef enum { LMP_QMETHOD_GPTQ = 0, LMP_QMETHOD_RTN } lmp_qmethod;

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

/* Called once per block with its seven quantized linears (q[LMP_LIN_COUNT], in
 * lmp_linear order) and their statistics, all borrowed for the call only. A non-zero
 * return stops the pipeline with that status. */
typedef int (*lmp_qpipe_sink)(void *ctx, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st);

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
    lmp_qpipe_sink sink;  /* may be NULL */
    void *sink_ctx;
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
    double worst_err;        /* largest err */
    char worst_name[LMP_MAX_NAME];
    double seconds;
    uint64_t peak_rss;
} lmp_qpipe_result;

void lmp_qpipe_default_params(lmp_qpipe_params *p);
void lmp_qpipe_result_free(lmp_qpipe_result *r); /* accepts NULL */

/* "model.layers.<layer>.self_attn.q_proj" etc. into buf. */
const char *lmp_linear_hf_prefix(int layer, lmp_linear which, char *buf, size_t n);

/* Checks the parameters against the model before any work: bits, group size dividing
 * every linear's in_features (LMP_EINVAL naming the first linear that does not), weight
 * dtypes convertible to f32. Returns status. */
int lmp_qpipe_check(const lmp_model *m, const lmp_qpipe_params *p);
/* Bytes of hidden states the run will hold for cal (n_samples * seq_len * hidden * 4). */
uint64_t lmp_qpipe_act_bytes(const lmp_model *m, const lmp_calib_data *cal);

/* Quantizes every linear of every block of `m`, block by block. `cal` may be NULL only
 * for RTN (no forward passes, err = -1). The model is used for forward passes with the
 * quantized blocks installed one at a time (dequantized f32 copies); on return every
 * linear of `m` is its original weight again. Weights that are not finite are LMP_ERANGE
 * naming the tensor. *res is filled (owned; lmp_qpipe_result_free) even on failure. */
int lmp_qpipe_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p,
                  lmp_qpipe_result *res);

/* Installs a dequantized f32 copy of q as linear `which` of `layer`: *buf receives the
 * malloc'd [rows][cols] f32 matrix, which the caller frees only after restoring the
 * original weight (lmp_model_set_linear) or freeing the model. For fake-quantized
 * evaluation (perplexity of the quantized model before the engine runs intgroup
 * weights natively). */
int lmp_qpipe_install(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q, float **buf);

/* Relative output error sqrt(tr(D H D^T) / tr(W H W^T)), D = W - Q, W and Q f32
 * [rows][cols], H double [cols][cols]. 0 when W H W^T vanishes. */
double lmp_qpipe_rel_error(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols);

#endif
