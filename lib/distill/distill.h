/*
 * lib/distill public header: teacher logits for distillation and evaluation.
 *
 *   export   runs a teacher over a text cut into fixed windows and streams, sequence by
 *            sequence, its next-token distributions to an HDF5 file (top-k ids and
 *            log-probs, the log-sum-exp, the mass outside the top-k, the log-prob of the
 *            correct next token; optionally every log-prob). Resumable, shardable.
 *   merge    joins shard files (or the per-sequence pieces of an interrupted export) into
 *            the datasets one uninterrupted, unsharded export gives.
 *   eval     KL divergence of a model against a stored teacher on the stored tokens, with
 *            llama.cpp's statistics (percentiles, same top p, delta-p, both perplexities).
 *   compare  perplexity, KLD, size, bits per weight and speed of several variants of a
 *            model, written as report.md, report.json and two SVG plots.
 *
 * The file layout is documented in docs/formats/logits.md. Not here: training a student
 * (lmpress stores the teacher's side only), the forward pass (lib/infer).
 */
#ifndef LMP_DISTILL_H
#define LMP_DISTILL_H

#include "../core/core.h"
#include "../infer/infer.h"
#include "tasks.h"

/* Version of the logits file layout, stored as the "format_version" attribute. */
#define LMP_LOGITS_FORMAT "lmpress-logits"
#define LMP_LOGITS_VERSION 1

/* ---------------------------------------------------------------- identity -------- */

/* FNV-1a 64 (lmp_fnv1a) over every tensor of the model's checkpoint in byte order of
 * their stored names (strcmp), each contributing its name, dtype name, shape (int64
 * little-endian) and data bytes. Reads every weight once (about 1 GB/s). */
uint64_t lmp_distill_weights_hash(const lmp_model *m);
/* FNV-1a 64 over the vocabulary alone: n_vocab, then for each id the piece's length and
 * bytes (lmp_tokenizer_piece; 0xFFFFFFFF for an unused id). Two tokenizers with the same
 * vocab hash give the same meaning to every token id even when their merges or scores
 * differ (an HF tokenizer.json and its GGUF export do). 0 when tok is NULL. */
uint64_t lmp_distill_vocab_hash(const lmp_tokenizer *tok);

/* ---------------------------------------------------------------- export ---------- */

typedef struct {
    int ctx;            /* tokens per sequence; 0 = min(512 (llama.cpp's KLD default), the model's) */
    int top_k;          /* ids/log-probs kept per position; 0 = none (needs full) */
    double temperature; /* log-probs of softmax(logits / T); 1 = raw (default) */
    bool full;          /* also store every log-prob ([seq][ctx][vocab]) */
    bool f32;           /* log-probs in f32 (default f16) */
    int shard_index;    /* export the windows w with w % shard_count == shard_index */
    int shard_count;    /* 1 = no sharding */
    int max_seqs;       /* use only the first max_seqs windows of the text (0 = all) */
    int deflate;        /* zlib level 0..9 (default 4) */
    bool force;         /* overwrite an existing output; restart a mismatching partial */
    /* Stop (cleanly, status LMP_OK, stats.complete false) after computing this many new
     * sequences: simulates an interruption for tests (0 = off; the CLI reads it from
     * LMP_DISTILL_STOP_AFTER). */
    int stop_after;
    /* Called after each sequence (may be NULL): sequences done (resumed ones included),
     * sequences of this shard. */
    void (*progress)(void *user, int done, int total);
    void *user;
    bool allow_long_ctx; /* accept ctx above the model's max_position_embeddings */
} lmp_distill_params;

lmp_distill_params lmp_distill_default_params(void); /* ctx 512, k 64, T 1, f16, 1 shard */
/* Refuses bad values before any work (LMP_EINVAL naming the lmpress option): top_k (0
 * only with full), ctx (0 or 2..), max_seqs, temperature > 0, the shard, deflate. */
int lmp_distill_check(const lmp_distill_params *p);

typedef struct {
    int64_t n_text_tokens;  /* tokens in the text (with the leading BOS) */
    int n_windows;          /* windows in the text (all shards) */
    int n_seqs;             /* sequences of this shard */
    int n_resumed;          /* of which found complete in the partial output */
    int n_computed;         /* computed by this call */
    bool complete;          /* the output file exists (false: stopped early) */
    int64_t n_tokens;       /* positions stored by this call (n_computed * ctx) */
    double seconds;         /* model + top-k time of this call, assembly excluded */
    double tokens_per_s;    /* n_tokens / seconds */
    uint64_t file_bytes;    /* size of the output (0 when not complete) */
    uint64_t weights_hash, tokenizer_hash;
    int ctx;                /* tokens per sequence used */
} lmp_distill_stats;

/* Exports the teacher's distributions over text[0..len) to `out`.
 * The text is tokenized once (the tokenizer's BOS rule applies), cut into n = tokens/ctx
 * non-overlapping windows (the tail is dropped except that the token right after the last
 * window is the target of its last position) and the first token of every window is
 * replaced by BOS (llama.cpp's --kl-divergence-base convention; protocol "kld-bos"; a
 * model without BOS feeds the windows unchanged, protocol "kld-plain"). Every position of
 * every window is stored.
 * Work in progress lives in "<out>.partial/", one HDF5 file per finished sequence, each
 * written under a temporary name and renamed when complete, so that killing the process
 * at any moment leaves only whole sequences. Running the same export again resumes after
 * them (the settings and the teacher/text hashes must match; otherwise LMP_EEXIST, or a
 * restart with force). When every sequence is there they are joined into `out` (written
 * under a temporary name, renamed) and the partial folder is removed. An existing `out`
 * is refused (LMP_EEXIST) unless force. Memory: the logits of <= 512 positions plus one
 * sequence's outputs (ctx * vocab log-probs with full). `model_path` is recorded as the
 * "teacher" attribute. Errors: LMP_EINVAL for bad parameters or a text shorter than one
 * window (message with both counts); LMP_EUNSUPPORTED without a tokenizer. */
int lmp_distill_export(const lmp_model *m, const char *model_path, const char *text, size_t len,
                       const char *out, const lmp_distill_params *p, lmp_distill_stats *st);

/* Joins logits files that differ only in their shard (or hold disjoint sequences of the
 * same export) into `out`: sequences in window order, shard attributes 0/1. Every window
 * of the export must be present exactly once (otherwise LMP_EINVAL naming the first
 * missing or duplicated window). The datasets equal those of a single unsharded export.
 * Reads and writes one sequence at a time. */
int lmp_distill_merge(const char *out, const char *const *inputs, int n_inputs, bool force);

/* ---------------------------------------------------------------- evaluation ------ */

typedef struct {
    int max_seqs;   /* evaluate at most this many sequences (0 = all) */
    int skip;       /* ignore the first `skip` positions of each sequence (llama.cpp: ctx/2) */
    bool use_topk;  /* use the top-k estimate even when full log-probs are stored */
    void (*progress)(void *user, int done, int total);
    void *user;
    bool allow_long_ctx; /* accept a file ctx above the model's max_position_embeddings */
} lmp_kld_params;

lmp_kld_params lmp_kld_default_params(void);
/* The parameters' ranges (LMP_EINVAL naming the lmpress option): max_seqs in [0, 2^30],
 * skip in [0, 2^22]. lmp_distill_eval calls it. */
int lmp_kld_check(const lmp_kld_params *p);

/* Percentile fractions of lmp_kld_result.kld_pct (max, 99.9, 99, 95, 90, median, 10, 5,
 * 1, 0.1, min), linear interpolation between order statistics at f * (N - 1). */
#define LMP_KLD_NPCT 11
extern const double lmp_kld_pct_fraction[LMP_KLD_NPCT];
extern const char *const lmp_kld_pct_name[LMP_KLD_NPCT]; /* "max", "99.9", ..., "min" */

typedef struct {
    bool exact;               /* KLD from full log-probs (else the top-k estimate) */
    int k;                    /* top-k of the file (0 when none) */
    double kld_mean, kld_stderr;
    double kld_pct[LMP_KLD_NPCT];
    /* Top-k estimate (present when the file has top-k): a lower bound of the true KLD,
     * and the mean of the per-position gap bounds (docs/formats/logits.md), so
     * kld_topk <= true KLD <= kld_topk + kld_topk_gap_bound. */
    bool has_topk;
    double kld_topk, kld_topk_gap_bound;
    double same_top, same_top_stderr; /* teacher and model argmax agree */
    double dp_mean, dp_stderr;        /* p_model(correct) - p_teacher(correct) */
    double dp_rms, dp_rms_stderr;
    double ppl_base, ppl_base_stderr; /* teacher, from the stored correct-token log-probs */
    double ppl_model, ppl_model_stderr;
    double ppl_ratio, ln_ppl_ratio, ln_ppl_ratio_stderr; /* exp(mean(nll_model - nll_base)) */
    int64_t n_kld;            /* positions in the KLD statistics */
    int64_t n_scored;         /* positions with a correct next token (ppl, delta-p) */
    int n_seqs, ctx;
    double temperature;
    double seconds, tokens_per_s; /* model time; tokens fed / seconds */
    /* Positions whose KLD came out below 0 (f16/f32 rounding of log-probs that agree to
     * within it: a KLD is >= 0 by definition) and the lowest value; kld_pct clamps them at 0,
     * kld_mean keeps them (unbiased). */
    int64_t n_kld_negative;
    double kld_min_raw;
} lmp_kld_result;

/* KL(teacher || model) on the tokens stored in `logits_path`, feeding each stored sequence
 * to `m` exactly as the teacher saw it, at the file's temperature. The model must have the
 * file's vocabulary size, and its tokenizer the file's tokenizer hash, or failing that the
 * same vocabulary (vocab hash; noted on stderr): otherwise LMP_EINVAL with both hashes.
 * A truncated or malformed file is LMP_EFORMAT. Keeps one float per position for the
 * percentiles. */
int lmp_distill_eval(const lmp_model *m, const char *logits_path, const lmp_kld_params *p,
                     lmp_kld_result *r);

/* ---------------------------------------------------------------- comparison ------ */

typedef struct {
    lmp_ppl_protocol protocol; /* perplexity protocol (default gptq) */
    int ctx;                   /* 0 = the protocol's default; also the KLD window */
    int chunks;                /* windows for ppl and KLD (0 = all) */
    int top_k;                 /* KLD base: 0 = full log-probs in f32 (exact) */
    bool keep_logits;          /* keep REPORT_DIR/base-logits.h5 */
    bool force;                /* replace an existing REPORT_DIR */
    /* Model loader (NULL = lmp_model_load). tools/ passes formats/'s lmp_model_load_any so
     * that GPTQ / AWQ / compressed-tensors / sparse folders can be compared too (lib/ must
     * not depend on formats/). */
    int (*load)(lmp_model **out, const char *path);
    /* Tasks scored on every variant (tasks.h; n_tasks <= LMP_COMPARE_MAX_TASKS, 0 =
     * none): report.md gets a task table (accuracy +/- stderr, change against the
     * base), report.json the results, tasks.svg a plot. */
    int n_tasks;
    const lmp_task_set *const *tasks;
    const char *const *task_names;
    lmp_task_params task;
    bool allow_long_ctx;       /* accept ctx above a model's max_position_embeddings */
    /* Teacher logits exported before (lmpress distill export) used as the KLD base
     * instead of exporting the base's (NULL = export). Its vocabulary must match. */
    const char *base_logits;
    /* Reuse the rows of an earlier run: out_dir/report.json and the partial record
     * <out_dir>.partial.json that a run with resume keeps after every row (with the base's
     * logits in <out_dir>.base-logits.h5). A row is reused when its path, protocol, ctx,
     * chunks, top-k and text agree; the others are evaluated. */
    bool resume;
} lmp_compare_params;

#define LMP_COMPARE_MAX_TASKS 16

lmp_compare_params lmp_compare_default_params(void);
/* Refuses bad values before any work (LMP_EINVAL naming the lmpress option): ctx, chunks,
 * top_k, the number of tasks, the task options (lmp_task_check). */
int lmp_compare_check(const lmp_compare_params *p);

typedef struct {
    char name[128];     /* file or folder name */
    char path[1024];
    double ppl, ppl_stderr;
    double kld, kld_stderr, kld_p99, same_top, dp_rms; /* vs base; 0 for the base */
    bool kld_exact;
    uint64_t size_bytes;  /* weight files on disk */
    int64_t n_params;     /* elements of every tensor */
    double bpw;           /* 8 * size_bytes / n_params */
    double tokens_per_s;  /* from the perplexity run */
    lmp_task_result task[LMP_COMPARE_MAX_TASKS]; /* params.n_tasks of them */
    int ctx;              /* the perplexity window */
    int kld_ctx;          /* the KLD sequences' length (the base logits') */
    char protocol[16];    /* the perplexity protocol */
    bool resumed;         /* taken from an earlier run (--resume) */
    /* bits per weight (docs/architecture.md "Bits per weight"): bpw above is the whole
     * files over every logical parameter; bpw_linear the linear layers' stored tensors
     * (codes, scales, zeros, g_idx) over their logical parameters */
    double bpw_linear;
} lmp_compare_row;

/* Checks every input first (exists, loads, same vocabulary as the base, context within
 * each model's), then evaluates base (row 0) and each variant on text[0..len) and writes report.md,
 * report.json, bpw_ppl.svg and bpw_kld.svg into out_dir (built in a temporary folder,
 * renamed when complete). rows (may be NULL) receives n_variants + 1 rows (caller frees).
 * text_path is only recorded. Progress lines go to stderr through lmp_info. */
int lmp_distill_compare(const char *base, const char *const *variants, int n_variants,
                        const char *text, size_t len, const char *text_path, const char *out_dir,
                        const lmp_compare_params *p, lmp_compare_row **rows);

/* ---------------------------------------------------------------- plots ----------- */

/* Task accuracy per variant as a standalone SVG: one column per variant, one coloured
 * series per task with +/- one standard error bars and the task's chance level dashed.
 * acc[t][v] and err[t][v] in [0, 1] (non-finite points left out); chance[t] may be NaN. */
int lmp_svg_tasks(const char *path, const char *title, const char *const *variants, int n_variants,
                  const char *const *tasks, int n_tasks, const double *acc, const double *err,
                  const double *chance, bool force);
/* The report's plots of bits per weight against perplexity and KLD (SVG and PNG). */
int lmp_compare_plots(const char *dir, const lmp_compare_row *rows, int n, const lmp_compare_params *p, int ctx);

/* A labelled scatter plot as a standalone SVG: axes with "nice" ticks (1, 2, 5 x 10^n),
 * tick labels, axis titles, one circle and label per point. Non-finite points are left
 * out. Written atomically; force as lmp_outfile_open. */
int lmp_svg_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const double *x, const double *y, const char *const *labels, int n, bool force);

#endif
