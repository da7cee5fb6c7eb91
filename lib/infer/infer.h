/*
 * lib/infer public header: the inference engine of lmpress. A Llama-family decoder
 * (llama, mistral, qwen2) assembled from any checkpoint lib/io opens (HF folder, bare
 * safetensors, GGUF), with its weights used in place from the file mapping; the block
 * runner (one decoder block on a batch of hidden states, with a hook on every linear
 * layer's input for calibration); sessions with an f32 KV cache for batched prompt
 * processing and incremental decoding; sampling and generation; perplexity under the
 * three protocols people report (GPTQ papers, llama.cpp, llama2.c run.c).
 *
 * Not here: the matrix kernels (kernels.h), the tokenizer (tokenizer.h), quantizers.
 */
#ifndef LMP_INFER_H
#define LMP_INFER_H

#include "../core/core.h"
#include "../io/io.h"
#include "kernels.h"
#include "tokenizer.h"

/* ---------------------------------------------------------------- model ----------- */

/* The seven linear layers of a decoder block, in the order they run. */
typedef enum {
    LMP_LIN_Q = 0,
    LMP_LIN_K,
    LMP_LIN_V,
    LMP_LIN_O,
    LMP_LIN_GATE,
    LMP_LIN_UP,
    LMP_LIN_DOWN,
    LMP_LIN_COUNT
} lmp_linear;

/* "q_proj", "k_proj", ..., "down_proj" (the HF module names). */
const char *lmp_linear_name(lmp_linear which);

typedef struct lmp_model lmp_model;

/* Opens `path` (HF folder, .safetensors file or index, .gguf) and assembles the model.
 * Every tensor the config implies is looked up by its HF name and checked: present, the
 * expected shape, a dtype lmp_gemm supports (linear layers and the output matrix) or that
 * can be converted row by row (norms, biases, embeddings). A shape mismatch is
 * LMP_EFORMAT naming the tensor, its shape and the one the config implies; a missing
 * tensor LMP_ENOTFOUND; an unsupported dtype LMP_EUNSUPPORTED. Weights stay in the file mapping (borrowed); only the norm and bias
 * vectors are converted to small owned f32 copies. The tokenizer (tokenizer.json next to
 * the weights, or the GGUF vocabulary) is loaded when present; a model without one can
 * still evaluate token ids. On success *out is owned by the caller (lmp_model_free). */
int lmp_model_load(lmp_model **out, const char *path);
void lmp_model_free(lmp_model *m); /* accepts NULL */

/* Loader hooks for checkpoints whose linear layers are not plain `.weight` tensors
 * (GPTQ / AWQ / compressed-tensors folders: formats/qmodel.h lmp_qmodel_load fills
 * them; lib/infer knows no file layout). */
typedef struct {
    /* Called during assembly for each linear whose "<prefix>.weight" the checkpoint
     * lacks (prefix e.g. "model.layers.3.mlp.down_proj"), after the linear's shape is
     * known. It installs the weight (lmp_model_adopt_linear_q / _set_linear_q /
     * _set_linear) and returns 0; LMP_MODEL_HOOK_PASS (positive) when it has nothing
     * for this linear (the weight is then reported missing as lmp_model_load does);
     * a negative status aborts the load with its message. */
    int (*missing_linear)(void *user, lmp_model *m, int layer, lmp_linear which,
                          const char *prefix);
    /* The same for an expert's linear of a mixture-of-experts layer stored per expert
     * (mixtral, qwen3_moe) whose "<prefix>.weight" is absent (prefix e.g.
     * "model.layers.0.mlp.experts.3.down_proj"): it fills *q with the intgroup weight
     * (rows x cols as the config implies; the model adopts it) and returns 0, or
     * LMP_MODEL_HOOK_PASS / a negative status as above. May be NULL. */
    int (*missing_expert)(void *user, lmp_model *m, int layer, int expert, lmp_linear which,
                          const char *prefix, lmp_qtensor *q);
    void *user;
} lmp_model_load_hooks;

#define LMP_MODEL_HOOK_PASS 1
/* lmp_model_load with hooks (NULL: exactly lmp_model_load). */
int lmp_model_load_ex(lmp_model **out, const char *path, const lmp_model_load_hooks *hooks);

/* Tokenizes text[0..len) with the model's tokenizer. add_bos: prepend BOS when the
 * tokenizer's own rule asks for one (HF add_bos_token / GGUF tokenizer.ggml.add_bos_token;
 * Llama-style vocabularies do, Qwen2's does not); false never adds one. *ids is malloc'd
 * (caller frees). No tokenizer: LMP_EUNSUPPORTED. */
int lmp_model_tokenize(const lmp_model *m, const char *text, size_t len, bool add_bos,
                       int32_t **ids, int64_t *n);
/* Decodes ids into a malloc'd NUL-terminated string (*len bytes), as the tokenizer does
 * (e.g. the SentencePiece dummy-prefix space dropped at the start); special tokens
 * (BOS, EOS) are skipped. */
int lmp_model_detokenize(const lmp_model *m, const int32_t *ids, int64_t n, char **text,
                         size_t *len);

/* Borrowed views, valid until lmp_model_free. */
const lmp_config *lmp_model_config(const lmp_model *m);
const lmp_ckpt *lmp_model_ckpt(const lmp_model *m);
const lmp_tokenizer *lmp_model_tokenizer(const lmp_model *m); /* NULL when none */
/* BOS id from the tokenizer, else the config; -1 when the model has none. */
int lmp_model_bos(const lmp_model *m);
int lmp_model_eos(const lmp_model *m);
int lmp_model_n_vocab(const lmp_model *m); /* rows of the output matrix */
/* true when q/k rows are in ggml's interleaved RoPE order (GGUF llama files): the engine
 * then rotates pairs (2i, 2i+1) instead of HF's (i, i + head_dim/2). */
bool lmp_model_rope_interleaved(const lmp_model *m);
/* Sets that order for every later forward pass, for a caller that has installed q/k
 * weights (and biases) permuted as GGUF holds them (lmp_model_set_linear) into a model
 * loaded from an HF folder: the size-targeted planner runs an HF folder's model exactly as
 * the converted GGUF's. Nothing is permuted here. */
void lmp_model_set_rope_interleaved(lmp_model *m, bool interleaved);
/* A model loaded from an HF checkpoint of a family whose GGUF llama.cpp permutes (llama,
 * mistral, granite, smollm3, mixtral): its q/k weight rows (copies owned by the model) and
 * biases put in ggml's interleaved order and the RoPE pairs taken so, i.e. the model the
 * converted GGUF holds, computing the same numbers to the last bit (the order of the
 * attention sums follows the rows). Nothing to do for other models. Importance weights
 * computed from an HF folder so equal the converted GGUF's. LMP_EUNSUPPORTED for q/k
 * weights that are not dense rows. Returns status. */
int lmp_model_gguf_qk_order(lmp_model *m);

/* The RMSNorm weights of block `layer` (hidden floats; the attention norm, or the FFN
 * norm when ffn) and the bias of linear `which` (rows floats, or NULL: no bias), owned by
 * the model and writable: AWQ folds its scales into them. NULL for a layer out of range. */
float *lmp_model_norm_mut(lmp_model *m, int layer, bool ffn);
float *lmp_model_bias_mut(lmp_model *m, int layer, lmp_linear which);

/* The weight of linear `which` in block `layer` (borrowed). lmp_model_set_linear
 * replaces it for every later forward pass (quantize-and-continue calibration, fake
 * quantization); `w` must have the same rows/cols and a dtype lmp_gemm supports, and its
 * data must outlive the model (the model does not take ownership). Returns status. */
const lmp_wmat *lmp_model_linear(const lmp_model *m, int layer, lmp_linear which);
int lmp_model_set_linear(lmp_model *m, int layer, lmp_linear which, const lmp_wmat *w);
/* The token embedding table and the output matrix (lm_head, or the embeddings again when
 * tied), borrowed. The setters replace them for every later forward pass, as
 * lmp_model_set_linear does for a linear (the size-targeted planner's probes): the
 * embedding must be [vocab, hidden] of a dtype with to_f32, the output [vocab, hidden] of
 * a dtype lmp_gemm supports; both borrowed (they must outlive the model's use). A tied
 * model's output is not changed by lmp_model_set_embed: set both. Returns status. */
const lmp_tensor *lmp_model_embed_tensor(const lmp_model *m);
const lmp_wmat *lmp_model_output(const lmp_model *m);
int lmp_model_set_embed(lmp_model *m, const lmp_tensor *t);
int lmp_model_set_output(lmp_model *m, const lmp_wmat *w);
/* Installs an intgroup weight (lib/core/qtensor.h) as linear `which` of `layer`, run
 * natively by lmp_gemm (the payload stays packed). set: borrowed, q must outlive every
 * forward pass that uses it (quantize-and-continue calibration). adopt: the model takes
 * the arrays of *q (moved; *q is zeroed on success) and frees them in lmp_model_free,
 * even after the linear is replaced. Shape must match; q is checked
 * (lmp_qtensor_intgroup_check). Returns status. */
int lmp_model_set_linear_q(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q);
int lmp_model_adopt_linear_q(lmp_model *m, int layer, lmp_linear which, lmp_qtensor *q);
/* Attaches a PEFT LoRA adapter (lib/io/lora.h) unmerged: each adapted linear of each
 * block then computes Y = X W^T + bias + scale * s * (X A^T) B^T, W untouched (any weight
 * type, quantized ones included). The adapter is checked against the model's checkpoint
 * (modules, shapes); for GGUF llama files B's q/k rows are permuted to ggml's order.
 * Adapters that change embeddings, lm_head or save whole modules are refused (merge them
 * with lmpress merge). Several adapters stack. Decoding then runs through the block
 * runner (same arithmetic as batched evaluation). The factors are copied (f32). */
int lmp_model_add_lora(lmp_model *m, const lmp_lora *a, double scale);

/* Number of linears (over all blocks) whose weight is an intgroup payload. */
int lmp_model_n_intgroup(const lmp_model *m);

/* ---- mixture of experts (mixtral, qwen3_moe, granitemoe; lib/infer/moe.c) ----
 * A sparse layer has no dense gate/up/down (lmp_model_linear returns NULL for them);
 * its experts' linears are reached here. */
bool lmp_model_is_moe(const lmp_model *m);          /* any sparse layer */
int lmp_model_n_experts(const lmp_model *m, int layer); /* 0: a dense layer */
/* Linear which (LMP_LIN_GATE, _UP or _DOWN) of expert `expert` of sparse layer `layer`
 * (borrowed), or NULL. set: as lmp_model_set_linear (borrowed, same shape). */
const lmp_wmat *lmp_model_expert_linear(const lmp_model *m, int layer, int expert,
                                        lmp_linear which);
int lmp_model_set_expert_linear(lmp_model *m, int layer, int expert, lmp_linear which,
                                const lmp_wmat *w);
/* Tokens routed to each expert of sparse layer `layer` since the model was loaded, by
 * every evaluation (counts[n_experts]); LMP_EINVAL for a dense layer. */
int lmp_model_expert_hits(const lmp_model *m, int layer, uint64_t *counts);

/* Embedding lookup: x[i][0..hidden) = embed_tokens row tokens[i] (only those rows are
 * converted). Token ids out of range are LMP_EINVAL. */
int lmp_model_embed(const lmp_model *m, const int32_t *tokens, int64_t n, float *x);
/* Final RMSNorm of x[n][hidden] (in place) and logits[n][n_vocab] = x @ output^T. */
void lmp_model_head(const lmp_model *m, float *x, int64_t n, float *logits);

/* ---------------------------------------------------------------- block runner ---- */

/* Called with the input activations of each linear layer, before it runs:
 * X[n][in_features] (q/k/v see the same normed X, gate/up the same one; o sees the
 * attention output, down the gated FFN activation). Borrowed for the call only.
 * A non-zero return aborts the block with that status. Calls come from the thread that
 * called lmp_block_run, in the order q, k, v, o, gate, up, down. */
typedef int (*lmp_linear_hook)(void *user, int layer, lmp_linear which, const float *X,
                               int64_t n, int64_t in_features);

/* Inside a hook call: the expert of a mixture-of-experts layer whose routed tokens X holds
 * (which = LMP_LIN_GATE: the input of its gate and up projections, the rows of the tokens
 * routed to it, in token order; LMP_LIN_DOWN: the input of its down projection), or -1
 * for the attention and dense linears. Experts no token reached are not called.
 * Thread-local; valid during the call. */
int lmp_hook_expert(void);
/* Inside such an expert call: the token index (row of the block's x, 0-based) of each of
 * X's n rows, ascending; NULL outside expert calls. Thread-local; valid during the call. */
const int *lmp_hook_expert_rows(void);

/* The keys and values of one block for positions [0, n_ctx): f32, [n_ctx][n_kv_heads *
 * head_dim] each, RoPE already applied to k. */
typedef struct {
    float *k;
    float *v;
    int n_ctx;
} lmp_kv_layer;

/* Runs decoder block `layer` on x[n][hidden] in place: the tokens sit at positions
 * pos0 .. pos0+n-1 and attend causally to themselves and, when kv != NULL, to the
 * cached positions [0, pos0) of kv, whose entries for pos0 .. pos0+n-1 are written (so
 * pos0 + n <= kv->n_ctx). With kv == NULL the batch attends only within itself (one
 * independent sequence; calibration). hook may be NULL. Deterministic for any thread
 * count. Returns 0, LMP_ENOMEM, LMP_EINVAL, or the hook's status. */
int lmp_block_run(const lmp_model *m, int layer, float *x, int n, int pos0, lmp_kv_layer *kv,
                  lmp_linear_hook hook, void *user);
/* lmp_block_run on the caller's scratch of lmp_block_scratch_floats(m, n, kv ? pos0 : 0)
 * floats (NULL: one allocated for the call), for callers that run many blocks of the same
 * size (calibration): a fresh 37 MB buffer per 512-token TinyLlama block is mapped, faulted
 * in and zeroed by the kernel on every call. Same results as lmp_block_run. */
size_t lmp_block_scratch_floats(const lmp_model *m, int n, int pos0);
int lmp_block_run_buf(const lmp_model *m, int layer, float *x, int n, int pos0, lmp_kv_layer *kv,
                      lmp_linear_hook hook, void *user, float *scratch);

/* A block in stages, cut where a group of linears' input is ready (layer-wise calibration
 * runs each stage once per window, after the linears before it are replaced). The state
 * at each boundary: x (the residual stream) and, at LMP_STAGE_O and LMP_STAGE_DOWN, the
 * buffer lmp_block_stage_buf names in the scratch (o_proj's input, the attention output
 * [n][heads * head_dim]; down_proj's input, the FFN activation [n][ffn]). The normed
 * inputs of q/k/v (LMP_STAGE_IN) and gate/up (LMP_STAGE_MLP) are recomputed from x. */
enum {
    LMP_STAGE_IN = 0, /* x: the block's input */
    LMP_STAGE_O,      /* x as at IN; the attention output (o_proj's input) in the scratch */
    LMP_STAGE_MLP,    /* x + the attention branch */
    LMP_STAGE_DOWN,   /* x as at MLP; the FFN activation (down_proj's input) in the scratch */
    LMP_STAGE_OUT,    /* x: the block's output */
};
/* Runs stages [from, to) of block `layer` (no KV cache, positions 0..n-1, as calibration
 * does) on x[n][hidden] in place and scratch (lmp_block_scratch_floats(m, n, 0) floats,
 * holding the boundary state of `from` on entry and of `to` on return). [a, b) then
 * [b, c) is bitwise [a, c), and [IN, OUT) is lmp_block_run_buf. The hook sees the linears
 * the stages run; its non-zero status stops the run (x and the scratch then hold a
 * partial state). A mixture-of-experts layer's FFN is one stage: LMP_STAGE_DOWN is not a
 * boundary of it (LMP_EINVAL). */
int lmp_block_run_stages(const lmp_model *m, int layer, float *x, int n, int from, int to,
                         lmp_linear_hook hook, void *user, float *scratch);
/* Where in scratch (for n tokens) the state of boundary `stage` beyond x lives, and its
 * width per token; NULL and 0 for the boundaries that have none. */
float *lmp_block_stage_buf(const lmp_model *m, float *scratch, int n, int stage, int64_t *width);

/* ---------------------------------------------------------------- sessions -------- */

/* A sequence being evaluated: the KV cache of every block for up to n_ctx positions. */
typedef struct lmp_session lmp_session;

/* n_ctx <= 0 means the model's max_position_embeddings. The model must outlive it. */
int lmp_session_new(lmp_session **out, const lmp_model *m, int n_ctx);
void lmp_session_free(lmp_session *s); /* accepts NULL */
void lmp_session_reset(lmp_session *s); /* forget every position */
/* Forgets the positions from pos on (0 <= pos <= lmp_session_pos; otherwise LMP_EINVAL):
 * the cache of [0, pos) is kept, so sequences that share a prefix are evaluated by
 * feeding the prefix once and rewinding to its end before each continuation. */
int lmp_session_rewind(lmp_session *s, int pos);
int lmp_session_pos(const lmp_session *s); /* positions filled so far */
int lmp_session_n_ctx(const lmp_session *s);

/* Feeds tokens[0..n) at the next positions (all n through each block at once, in
 * batches of at most 512 tokens). logits may be NULL; otherwise it receives
 * [n][n_vocab] when all_positions, else the last position's [n_vocab]. Exceeding the
 * context is LMP_ERANGE (nothing is fed); a bad token id LMP_EINVAL. */
int lmp_eval(lmp_session *s, const int32_t *tokens, int n, float *logits, bool all_positions);

/* ---------------------------------------------------------------- sampling -------- */

typedef struct {
    float temperature; /* 0 = greedy (argmax; the lowest id wins ties) */
    int top_k;         /* 0 = off */
    float top_p;       /* 1 = off; in (0, 1] */
    uint64_t seed;
} lmp_sampler_params;

lmp_sampler_params lmp_sampler_default_params(void); /* greedy, top_k 0, top_p 1, seed 0 */
/* Refuses a negative or non-finite temperature, a negative top_k, top_p outside (0, 1]
 * (LMP_EINVAL naming the lmpress option). lmp_sampler_new checks the same. */
int lmp_sampler_check(const lmp_sampler_params *p);

typedef struct lmp_sampler lmp_sampler;
int lmp_sampler_new(lmp_sampler **out, const lmp_sampler_params *p, int n_vocab);
void lmp_sampler_free(lmp_sampler *s); /* accepts NULL */
/* Picks the next token from logits[n_vocab] (not modified). Deterministic given the
 * seed and the sequence of calls. */
int32_t lmp_sampler_sample(lmp_sampler *s, const float *logits);
/* Index of the largest logit (lowest index on ties). */
int32_t lmp_argmax(const float *x, int64_t n);

/* Generation: feeds prompt[0..n_prompt) in one batch, then samples up to n_new tokens,
 * feeding each back. Stops early on the model's EOS, or on BOS (which delimits
 * sequences in llama2.c-trained models), when stop_on_eos; the stop token is not
 * emitted. on_token (may be NULL) sees each new token; a non-zero return stops. The
 * generated ids go to out[] (capacity n_new; may be NULL); *n_out gets their count.
 * The session must be fresh or hold the context the prompt continues. Prompt + n_new
 * beyond the context stops generation when the context is full; a prompt that does
 * not fit is LMP_ERANGE. */
typedef int (*lmp_token_fn)(void *user, int32_t token);
typedef struct {
    double prompt_s, gen_s; /* wall time of the prompt pass and of the generation loop */
    int n_prompt, n_gen;
} lmp_gen_stats;

int lmp_generate(lmp_session *s, const int32_t *prompt, int n_prompt, int n_new,
                 const lmp_sampler_params *sp, bool stop_on_eos, lmp_token_fn on_token,
                 void *user, int32_t *out, int *n_out, lmp_gen_stats *stats);

/* ---------------------------------------------------------------- perplexity ------ */

typedef enum {
    /* IST-DASLab/gptq llama_eval (and AWQ, Wanda): the text tokenized once as the HF
     * tokenizer does by default (one BOS at the very start when the model has one), cut
     * into non-overlapping windows of ctx tokens (tail dropped), each window fed as is;
     * logits shifted so ctx-1 tokens per window are scored; ppl = exp(sum over windows of
     * mean_NLL * ctx / (n_windows * ctx)). Default ctx 2048. */
    LMP_PPL_GPTQ = 0,
    /* llama.cpp llama-perplexity: tokenized with BOS at the start, chunks of ctx tokens
     * (n_chunks = n_tokens / ctx, at least 2 * ctx tokens needed), the first token of each
     * chunk replaced by BOS, tokens ctx/2+1 .. ctx-1 of each chunk scored (ctx/2 - 1 per
     * chunk, predicted from positions ctx/2 .. ctx-2). Default ctx 512. */
    LMP_PPL_LLAMACPP,
    /* llama2.c run.c / the fixture README: tokenized with no BOS, non-overlapping windows
     * of ctx tokens (tail dropped), each fed as BOS + its first ctx-1 tokens and all ctx
     * tokens scored. Default ctx 256. */
    LMP_PPL_WINDOWS,
} lmp_ppl_protocol;

const char *lmp_ppl_protocol_name(lmp_ppl_protocol p);
int lmp_ppl_protocol_from_name(const char *name); /* -1 when unknown */
int lmp_ppl_protocol_ctx(lmp_ppl_protocol p);      /* the protocol's default window */

typedef struct {
    lmp_ppl_protocol protocol;
    int ctx;           /* 0 = the protocol's default */
    int max_chunks;    /* 0 = every window */
    uint64_t max_bytes; /* text preprocessing: keep only the first max_bytes (0 = all) */
    bool strip_cr;     /* ... and remove every '\r' (run.c's reference figures do both) */
    /* Called after each window (may be NULL): windows done, total windows. */
    void (*progress)(void *user, int done, int total);
    void *user;
    bool allow_long_ctx; /* accept a context longer than the model's (else LMP_EINVAL) */
} lmp_ppl_params;

lmp_ppl_params lmp_ppl_default_params(void); /* gptq, defaults, whole text */
/* The parameters' ranges (LMP_EINVAL naming the lmpress option): a known protocol, ctx in
 * [0, 2^24], max_chunks in [0, 2^30]. lmp_ppl_tokens and lmp_ppl_text call it. */
int lmp_ppl_check(const lmp_ppl_params *p);

/* Context rules shared by ppl, distill export, eval and compare (issue 18 item 1): the
 * default is min(want, the model's max_position_embeddings) (want when the model does not
 * say); a requested context longer than the model's is LMP_EINVAL naming both, unless
 * allow_long (then a warning). lmp_ctx_resolve returns the context or a negative status. */
int lmp_ctx_resolve(const lmp_model *m, int requested, int want, bool allow_long);

typedef struct {
    double ppl;
    double ppl_stderr;  /* llama.cpp's: ppl * sqrt((E[nll^2] - E[nll]^2) / (N - 1)) */
    double nll_mean;
    int64_t n_scored;   /* tokens scored */
    int64_t n_fed;      /* tokens evaluated (n_windows * ctx) */
    int n_windows;
    int ctx;
    double seconds;     /* model time, tokenization excluded */
    double tokens_per_s; /* n_fed / seconds */
} lmp_ppl_result;

/* Perplexity of `text` (len bytes) under the protocol: keeps the first max_bytes,
 * removes CRs when asked, tokenizes with the model's tokenizer, evaluates window by
 * window (one session of ctx positions, logits of at most 512 positions at a time).
 * An empty text, or one too short for one window (two for llamacpp), is LMP_EINVAL
 * with a message saying how many tokens it gave and how many are needed; a model
 * without a tokenizer is LMP_EUNSUPPORTED. Not thread safe with respect to `m`'s
 * lmp_model_set_linear; otherwise independent calls may run concurrently. */
int lmp_ppl_text(const lmp_model *m, const char *text, size_t len, const lmp_ppl_params *p,
                 lmp_ppl_result *r);
/* The same on an already tokenized stream (exactly as the protocol tokenizes: with the
 * leading BOS for gptq/llamacpp when the model has one, without for windows). */
int lmp_ppl_tokens(const lmp_model *m, const int32_t *tokens, int64_t n,
                   const lmp_ppl_params *p, lmp_ppl_result *r);

/* log-softmax helper used by ppl and tests: -log p(target) from logits[n_vocab], in f32
 * with max subtraction, the sum of exponentials accumulated in double. */
double lmp_nll(const float *logits, int64_t n_vocab, int32_t target);

#endif
