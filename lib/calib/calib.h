/*
 * lib/calib: the calibration engine below lib/quant, lib/prune and lib/distill (issue 15).
 * Calibration text -> token windows (windows.c) -> the one layer-wise driver (driver.c)
 * that every calibrated method runs on: GPTQ, RTN with statistics, AWQ (lib/quant),
 * imatrix (lib/quant), magnitude / Wanda / SparseGPT (+ joint quantization) and
 * structured pruning (lib/prune). A method is a ROW of hooks (lmp_calib_method): which
 * statistics the driver gathers for it, what it does per linear or per block, and what it
 * hands back to be installed; the driver owns the walk itself.
 *
 * The walk, block by block (GPTQ paper section 4, IST-DASLab/gptq llama.py
 * llama_sequential; the Wanda and SparseGPT reference drivers are the same loop):
 *  - windows embedded once (the first token replaced by BOS with calib_bos), the mapped
 *    embedding pages released;
 *  - per block: its weights' pages noted; per pass (true-sequential: one per distinct
 *    linear input, the linears before it already installed; otherwise one) every window
 *    through the block on a scratch copy with a hook gathering the row's statistics,
 *    stopped as soon as the last input the pass needs has been seen;
 *  - the row's per-linear action (or its per-block action) on those statistics; whatever
 *    it hands back (b->install_q / b->install_w) is installed in the model;
 *  - the block re-run on the hidden states in place so that the next block sees the
 *    COMPRESSED outputs (or, LMP_CALIB_FLOAT_FORWARD, the float outputs of the statistics
 *    pass: AWQ's reference feeds the float block forward);
 *  - the row's end hook (sinks, per-layer reports), the block's mapped pages released,
 *    its original weights restored, the row's cleanup.
 * Methods that compress nothing (imatrix: LMP_CALIB_STREAM) walk window by window through
 * all blocks instead, holding one window.
 *
 * Memory: the hidden states of every window, f32 N x L x hidden (lmp_calib_act_bytes),
 * held in memory up to a threshold (LMP_CALIB_SPILL, default 2 GiB) and above it in an
 * unlinked temporary file read and written one window at a time (exact: the same bits),
 * plus one block's statistics (a double cols x cols Hessian per distinct input of the
 * pass) and whatever the row keeps for one block. Nothing grows with depth. AWQ's row
 * (dense and expert models) walks the windows itself (LMP_CALIB_SELF_WALK) and keeps its
 * captured inputs in a store of its own, spilled the same way.
 */
#ifndef LMP_CALIB_H
#define LMP_CALIB_H

#include "../infer/infer.h"
#include "calib_dist.h"
/* ---------------------------------------------------------------- linear inputs --- */

/* A block's seven linears read four distinct inputs: the attention-normed hidden state
 * (q, k, v), the attention output (o), the FFN-normed hidden state (gate, up) and the
 * gated FFN activation (down). Calibration statistics are gathered once per input. */
typedef enum { LMP_IN_ATTN = 0, LMP_IN_O, LMP_IN_MLP, LMP_IN_DOWN, LMP_IN_COUNT } lmp_lin_input;

/* The input linear w reads. */
static inline lmp_lin_input lmp_linear_input(lmp_linear w)
{
    switch (w) {
    case LMP_LIN_Q: case LMP_LIN_K: case LMP_LIN_V: return LMP_IN_ATTN;
    case LMP_LIN_O: return LMP_IN_O;
    case LMP_LIN_GATE: case LMP_LIN_UP: return LMP_IN_MLP;
    default: return LMP_IN_DOWN;
    }
}

/* The first linear (in the block runner's order) that reads input c. */
/* Width of input class cls (lmp_lin_input): hidden for the normed attention and MLP
 * inputs, heads x head_dim for o_proj's, the FFN width for down_proj's. */
int64_t lmp_calib_class_width(const lmp_config *c, int cls);

static inline lmp_linear lmp_input_first(int c)
{
    static const lmp_linear first[LMP_IN_COUNT] = {LMP_LIN_Q, LMP_LIN_O, LMP_LIN_GATE, LMP_LIN_DOWN};
    return first[c];
}

/* The passes over a block's inputs: true-sequential gives one pass per input (groups[g] =
 * {g, -1}), otherwise one pass for all four (groups[0] = {0, 1, 2, 3, -1}). Returns the
 * number of groups. */
static inline int lmp_input_groups(bool true_sequential, int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1])
{
    if (true_sequential) {
        for (int g = 0; g < LMP_IN_COUNT; g++) {
            groups[g][0] = g;
            groups[g][1] = -1;
        }
        return LMP_IN_COUNT;
    }
    for (int k = 0; k < LMP_IN_COUNT; k++)
        groups[0][k] = k;
    groups[0][LMP_IN_COUNT] = -1;
    return 1;
}

/* Positive hook status "this pass has what it needs" (not an error): a calibration hook
 * returns it to stop lmp_block_run early, and lmp_calib_block_pass treats it as success. */
#define LMP_PASS_DONE 1

/* Runs block `layer` on each of the n windows of L tokens in states (n x L x hidden f32),
 * each first copied into scratch (L x hidden) so that states are left as they are, with
 * hook collecting statistics; LMP_PASS_DONE from the hook ends a window early. Advances pg
 * (when not NULL) and *done by one per window. Returns status (never LMP_PASS_DONE). */
int lmp_calib_block_pass(const lmp_model *m, int layer, const float *states, int n, int L,
                         float *scratch, lmp_linear_hook hook, void *user, lmp_progress *pg,
                         uint64_t *done);

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
    /* JSONL calibration files: the string field holding each document's text (NULL: "text",
     * or a "messages"/"conversations" chat rendered with the model's chat template) */
    const char *text_field;
} lmp_calib_params;

#define LMP_CALIB_MAX_SOURCES 16
/* What one calibration file gave. */
typedef struct {
    char name[256];
    bool jsonl, chat;     /* JSONL; its documents were chats rendered with the template */
    int n_docs;           /* JSONL documents (0 for plain text) */
    int64_t tokens;       /* tokens of its text */
    int windows;          /* windows drawn from it */
} lmp_calib_source;

/* Token windows for calibration. */
typedef struct {
    int n_samples, seq_len;
    int32_t *tokens;        /* [n_samples][seq_len], owned */
    int64_t n_text_tokens;  /* tokens the whole text gave */
    size_t text_bytes;      /* bytes read */
    int n_sources;          /* lmp_calib_load: the files, in order */
    lmp_calib_source sources[LMP_CALIB_MAX_SOURCES];
} lmp_calib_data;

void lmp_calib_default_params(lmp_calib_params *p);
/* Refuses windows out of range before any work (LMP_EINVAL naming the option): n_samples
 * 1..2^20, seq_len 0 (the default) or 2..2^20, a known mode. */
int lmp_calib_check(const lmp_calib_params *p);
/* Reads a text file, plain or gzip (by its magic; zlib), into a malloc'd NUL-terminated
 * buffer, at most max_bytes (0 = all). An empty file is LMP_EINVAL naming it. */
int lmp_calib_read_text(const char *path, size_t max_bytes, char **text, size_t *len);
/* Tokenizes text[0..len) with the model's tokenizer and draws the windows. `name` is used
 * in messages. A text too short for one window (random: seq_len + 1 tokens; chunks:
 * n_samples * seq_len tokens) is LMP_EINVAL naming `name` and both token counts; a
 * seq_len above the model's context is LMP_EINVAL. *out is owned (lmp_calib_free). */
int lmp_calib_from_text(const lmp_model *m, const char *text, size_t len, const char *name,
                        const lmp_calib_params *p, lmp_calib_data *out);
/* Calibration from one or several files, `paths` separated by commas (issue 18 item 9):
 * plain or gzip text, or JSONL (by a .jsonl / .jsonl.gz name or a first '{'): one JSON
 * object per line, its text the string field p->text_field (default "text"), or its
 * "messages" / "conversations" list ({role, content} or ShareGPT {from, value}) rendered
 * with the model's chat template (lib/io/chat.h families; others refused). One plain file
 * is exactly lmp_calib_read_text + lmp_calib_from_text. Several files: each tokenized on
 * its own; random windows are shared out in proportion to the files' tokens (files too
 * short for a window get none), chunks run through the files in order. Every file's
 * tokens and windows are in out->sources and reported through lmp_info. */
int lmp_calib_load(const lmp_model *m, const char *path, const lmp_calib_params *p,
                   lmp_calib_data *out);
void lmp_calib_free(lmp_calib_data *d); /* accepts NULL */

/* ---------------------------------------------------------------- helpers --------- */

/* "model.layers.<layer>.self_attn.q_proj" etc. into buf. */
const char *lmp_linear_hf_prefix(int layer, lmp_linear which, char *buf, size_t n);
/* Bytes of hidden states a layer-wise run holds for cal (n_samples * seq_len * hidden * 4). */
uint64_t lmp_calib_act_bytes(const lmp_model *m, const lmp_calib_data *cal);
/* f32 copy [rows][cols] of any weight the engine runs (dense, GGUF blocks, intgroup
 * payloads), refusing values that are not finite (LMP_ERANGE naming "<name>.weight" and
 * the position). *out is malloc'd. */
int lmp_calib_weight_f32(const lmp_wmat *w, const char *name, float **out);

/* ---------------------------------------------------------------- window stores --- */

/* f32 windows of `win` floats each (store.c): in memory, or (when they would exceed the
 * spill threshold) in an unlinked temporary file read and written one window at a time,
 * so that resident memory holds one window whatever the calibration set's size. Both keep
 * the values exactly: results do not depend on where the windows live. */
typedef struct {
    float *mem;        /* n * win floats, or NULL when spilled */
    int fd;            /* spilled: the temporary file, else -1 */
    int64_t win;       /* floats per window */
} lmp_calib_store;

/* Spill threshold in bytes: LMP_CALIB_SPILL (bytes, with an optional K/M/G suffix; 0:
 * always spill; "off": never), default 2 GiB. */
uint64_t lmp_calib_spill_threshold(void);
/* A store of `bytes` (windows of win floats) for `what`; in memory when spilling is not
 * allowed or held + bytes (held: what other stores keep in memory) is within the
 * threshold, else in an unlinked temporary file (said through lmp_info). */
int lmp_calib_store_open(lmp_calib_store *st, uint64_t bytes, int64_t win, bool allow_spill, uint64_t held,
                         const char *what);
void lmp_calib_store_close(lmp_calib_store *st);
/* The first count floats of window s into dst / src[0..count) as the start of window s
 * (src may be the store's own memory). */
int lmp_calib_store_get_n(lmp_calib_store *st, int s, float *dst, int64_t count);
int lmp_calib_store_put_n(lmp_calib_store *st, int s, const float *src, int64_t count);
static inline int lmp_calib_store_get(lmp_calib_store *st, int s, float *dst)
{
    return lmp_calib_store_get_n(st, s, dst, st->win);
}
static inline int lmp_calib_store_put(lmp_calib_store *st, int s, const float *src)
{
    return lmp_calib_store_put_n(st, s, src, st->win);
}

/* ---------------------------------------------------------------- the driver ------ */

/* Statistics the driver gathers per distinct linear input during a statistics pass. */
enum {
    LMP_STAT_HESSIAN = 1u << 0, /* H: double [cols][cols], accumulated by row->hessian_add */
    LMP_STAT_XSQ = 1u << 1,     /* xsq: double [cols], sum over tokens of x_j^2, token order */
    LMP_STAT_CAPTURE = 1u << 2, /* X: f32 [N * L][cols], every token's input, window order */
    LMP_STAT_EXPERTS = 1u << 3, /* mixture of experts: exsq / ecount per expert (routed tokens) */
    /* mixture of experts: one Hessian per expert of a sparse layer, from the tokens routed
     * to it only (eH / ens, by row->hessian_add), for the passes gathering the gate/up input
     * (class LMP_IN_MLP: [E][hidden][hidden]) and the down input (LMP_IN_DOWN: [E][ff][ff]);
     * an expert no token reached keeps a zero Hessian and ens 0 (lib/calib/experts.c) */
    LMP_STAT_EXPERT_HESSIAN = 1u << 4,
    /* mixture of experts, with LMP_STAT_CAPTURE: in a sparse layer X[LMP_IN_MLP] is filled
     * from the experts' routed rows (every token reaches k experts: the FFN-normed input of
     * every token), and each expert's down inputs are kept with their tokens (eX / eT /
     * eXn) */
    LMP_STAT_EXPERT_CAPTURE = 1u << 5,
};

/* Row flags. */
enum {
    /* The next block sees the float block's outputs: one statistics pass that runs every
     * window to the end of the block (not stopped early) into b->next, and no re-run. */
    LMP_CALIB_FLOAT_FORWARD = 1u << 0,
    /* Nothing is installed: windows are streamed one at a time through every block
     * (statistics of all blocks at once), then row->block is called per block. */
    LMP_CALIB_STREAM = 1u << 1,
    /* awqdist: the row's per-block action walks this rank's windows [b->w_lo, b->w_hi)
     * itself (lmp_calib_state_get / _put, the states spilled like any other row's) and
     * leaves in them the next block's inputs; the driver runs no statistics pass and no
     * re-run. Its windows are split among ranks in window groups (calib_dist.h), which the
     * row combines itself (lmp_calib_gsum). */
    LMP_CALIB_SELF_WALK = 1u << 2,
};

/* Statistics of one pass over one block, per input class (NULL where not gathered). */
typedef struct {
    double *H[LMP_IN_COUNT];
    int64_t ns[LMP_IN_COUNT];      /* tokens hessian_add has seen */
    double *xsq[LMP_IN_COUNT];
    float *X[LMP_IN_COUNT];
    int64_t off;                   /* CAPTURE: first token row of the running window */
    /* LMP_STAT_EXPERTS: [E][hidden] (gate/up input) then [E][moe_ff] (down input) sums of
     * x^2 over the tokens routed to each expert, and [E] their counts */
    double *exsq;
    int64_t *ecount;
    /* LMP_STAT_EXPERT_HESSIAN (sparse layers only): eH[cls][e] the cols x cols Hessian of
     * expert e's input of class cls (LMP_IN_MLP or LMP_IN_DOWN; NULL otherwise), ens[cls][e]
     * the tokens hessian_add saw */
    double **eH[LMP_IN_COUNT];
    int64_t *ens[LMP_IN_COUNT];
    int e_n;                       /* experts eH / ens hold (0: none) */
    /* LMP_STAT_EXPERT_CAPTURE (sparse layers only): expert e's down inputs eX[e] (eXn[e]
     * rows of moe_ff f32, window order) and their token rows eT[e] (into X[LMP_IN_MLP]) */
    float **eX;
    int64_t **eT;
    int64_t *eXn, *eXcap;
    int eX_n;
} lmp_calib_stats;

/* lib/calib/experts.c: the per-expert statistics of a sparse layer (the driver calls
 * these; rows read b->st.eH / ens). */
struct lmp_calib_method;
/* Allocates eH / ens for the classes of group (-1 terminated) when the row asks for them
 * and block `layer` is sparse. */
int lmp_calib_expert_alloc(lmp_calib_stats *st, const struct lmp_calib_method *row, const lmp_model *m,
                           int layer, const int *group, unsigned classes);
/* Adds the routed rows X[n][in] of expert ex (which: LMP_LIN_GATE = the gate/up input,
 * LMP_LIN_DOWN = the down input) to its Hessian when gathered this pass. */
int lmp_calib_expert_add(lmp_calib_stats *st, const struct lmp_calib_method *row, int ex, lmp_linear which,
                         const float *X, int64_t n, int64_t in);
void lmp_calib_expert_free(lmp_calib_stats *st);
/* The HF module path of expert `expert`'s linear which (GATE, UP, DOWN) in block `layer`:
 * mixtral "model.layers.N.block_sparse_moe.experts.E.w1|w3|w2", qwen3_moe
 * "model.layers.N.mlp.experts.E.gate_proj|up_proj|down_proj"; granitemoe (rows of fused 3-D
 * parameters, for messages only) "model.layers.N.block_sparse_moe.input_linear.gate[E]". */
const char *lmp_expert_hf_prefix(const lmp_config *c, int layer, int expert, lmp_linear which, char *buf, size_t n);

/* What the row sees of the block being calibrated. */
typedef struct {
    lmp_model *m;
    int layer, n_layers;
    lmp_wmat orig[LMP_LIN_COUNT];  /* the block's weights at its start (restored at its end) */
    const lmp_calib_data *cal;     /* NULL: no calibration (per-linear actions only) */
    int N, L;                      /* windows and their length (0 without calibration) */
    float *states;                 /* (N * L, hidden) the block's inputs; NULL when spilled to a file */
    float *next;                   /* FLOAT_FORWARD: (N * L, hidden) the float block's outputs */
    float *scratch;                /* (L, hidden) */
    int64_t cols[LMP_IN_COUNT];    /* width of each input class */
    lmp_calib_stats st;            /* the current pass */
    int pass;                      /* index of the current pass (input group) */
    int n_experts;
    int64_t e_hidden, e_ff;
    /* the row's results to install (borrowed until its cleanup): an intgroup payload run
     * natively, or a weight matrix; at most one per linear */
    const lmp_qtensor *install_q[LMP_LIN_COUNT];
    const lmp_wmat *install_w[LMP_LIN_COUNT];
    double t0;                     /* lmp_time_s() at the block's start */
    lmp_progress *pg;
    uint64_t done;                 /* progress steps done in the whole run */
    /* awqdist: this rank's windows [w_lo, w_hi) (all N when not split), held in store
     * (window s at s - w_lo; read them through lmp_calib_state_get); G window groups
     * (calib_dist.h), split among ranks when `split` */
    lmp_calib_store *store;
    int w_lo, w_hi, G;
    bool split;
} lmp_calib_block;

/* Window s (w_lo <= s < w_hi) of the block's inputs, L x hidden f32: read into dst /
 * replaced by src. */
int lmp_calib_state_get(const lmp_calib_block *b, int s, float *dst);
int lmp_calib_state_put(const lmp_calib_block *b, int s, const float *src);

/* One method: a row of hooks (any may be NULL). ctx is the method's own state. */
typedef struct lmp_calib_method {
    const char *name;
    unsigned stats;     /* LMP_STAT_* gathered before the action; 0: no statistics pass */
    unsigned classes;   /* input classes gathered (bit 1 << LMP_IN_*); 0: all four */
    unsigned flags;     /* LMP_CALIB_* */
    int (*hessian_add)(double *H, int64_t cols, const float *X, int64_t n, int64_t *ns);
    /* the same on X rounded to bf16 (products exact, f32 sums as hessian_add's), used
     * instead of hessian_add when lmp_calib_opts.bf16 is set; NULL: hessian_add always */
    int (*hessian_add_bf16)(double *H, int64_t cols, const float *X, int64_t n, int64_t *ns);
    /* after a pass, on each Hessian it gathered (NULL: none; e.g. hessian_add fills one
     * triangle per window and this mirrors it once) */
    void (*hessian_finish)(double *H, int64_t cols);
    int (*begin)(void *ctx, lmp_calib_block *b);
    /* per linear of the pass's classes, in lmp_linear order, after the pass */
    int (*linear)(void *ctx, lmp_calib_block *b, lmp_linear w);
    /* per block, after the statistics pass(es), when there is no per-linear action */
    int (*block)(void *ctx, lmp_calib_block *b);
    /* during the re-run: the hook (ctx) and, per window, its input and output */
    lmp_linear_hook rerun_hook;
    int (*rerun_window)(void *ctx, lmp_calib_block *b, int window, const float *in, const float *out);
    int (*end)(void *ctx, lmp_calib_block *b);        /* the block done: sinks, reports */
    void (*cleanup)(void *ctx, lmp_calib_block *b);   /* always, success or not */
    /* progress steps of one block (NULL: passes x windows, or 7 linears without them) */
    uint64_t (*steps)(void *ctx, const lmp_calib_block *b);
    /* Data-parallel runs (calib_dist.h). linear_share: called on every rank, in linear
     * order, after rank `owner` alone ran `linear` for w: makes every rank hold the
     * owner's result for w (broadcast from it) and sets b->install_* as `linear` did;
     * NULL: every rank runs every linear. rerun_sums: the row's n doubles that its
     * re-run hooks add to (from zero at the block's start), so that the driver can
     * gather them per window group and combine them across ranks; NULL for a row with
     * re-run hooks: its windows are not split among ranks. */
    int (*linear_share)(void *ctx, lmp_calib_block *b, lmp_linear w, int owner);
    double *(*rerun_sums)(void *ctx, lmp_calib_block *b, size_t *n);
} lmp_calib_method;

/* Broadcasts q (an INTGROUP tensor, or an empty one: rows 0) from rank `owner`; the other
 * ranks' *q (empty on entry) becomes a copy. For linear_share hooks. */
int lmp_calib_share_qtensor(lmp_qtensor *q, int owner);

/* Where a run's wall time went, in seconds (lmp_calib_opts.times). */
typedef struct {
    double embed;    /* the windows' embedding */
    double forward;  /* block runs (statistics passes, stage advances, re-runs) and the
                      * states' spill I/O, the hooks below excluded */
    double stats;    /* the statistics hook (Hessians, sums of squares, captures, mirrors) */
    double solve;    /* the row's per-linear / per-block actions and the installs */
    double rerun;    /* the row's re-run hook and per-window callback (error measures) */
    double end;      /* the row's end hooks (sinks: a layer written) */
} lmp_calib_times;

typedef struct {
    bool true_sequential;  /* one statistics pass per input class */
    bool calib_bos;        /* first token of every window -> BOS (when the model has one) */
    bool progress;         /* bar on stderr (silent when not a TTY) */
    const char *unit;      /* progress unit (default "block passes") */
    lmp_calib_times *times; /* when not NULL: the phases' times, added to (also logged at debug level) */
    /* bf16 calibration (GPTQ's default, as the reference implementations run their
     * calibration forward in the model's bf16): the linears the row installs run in the
     * walk as bf16 copies (their dequantized values rounded to bf16; lmp_gemm then rounds
     * X to bf16 and sums the exact products in f32), and the row's Hessians are gathered
     * with hessian_add_bf16 where it has one. Only the walk's arithmetic changes: the
     * linears the row is given (b->orig) and the engine elsewhere are untouched. */
    bool bf16;
} lmp_calib_opts;

/* Runs `row` over every block of m. cal may be NULL (no passes; per-linear actions).
 * On return every linear of m is its original weight again. Returns status. */
int lmp_calib_run(lmp_model *m, const lmp_calib_data *cal, const lmp_calib_method *row, void *ctx,
                  const lmp_calib_opts *o);

/* One progress step of the running block (for rows that report finer steps). */
void lmp_calib_tick(lmp_calib_block *b);

#endif
