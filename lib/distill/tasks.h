/*
 * lib/distill task accuracy: multiple-choice and completion tasks scored by
 * log-likelihood (HellaSwag, ARC, PIQA, WinoGrande, LAMBADA and any file with the same
 * fields), under lm-evaluation-harness's protocol or llama.cpp's llama-perplexity
 * protocol. docs/tasks.md states both protocols rule by rule.
 *
 *   load   task files: JSONL (query/choices/gold; context_options/continuation/gold;
 *          context/continuation), llama.cpp's HellaSwag text (6 lines per item), its
 *          WinoGrande CSV and its --multiple-choice binary. Every defect is an error
 *          naming the file and the line (or record).
 *   eval   one model on one task: per choice the log-likelihood of the continuation,
 *          the context's KV cache computed once per item and shared by its choices;
 *          accuracy, length-normalised accuracy and their standard errors; for
 *          completion tasks greedy accuracy and the perplexity of the continuation.
 *
 * Not here: the forward pass (lib/infer), the report of compare (report.c).
 */
#ifndef LMP_TASKS_H
#define LMP_TASKS_H

#include "../core/core.h"
#include "../infer/infer.h"

#include <stdio.h>

typedef enum {
    LMP_TASK_LMEVAL = 0, /* lm-evaluation-harness */
    LMP_TASK_LLAMACPP,   /* llama.cpp llama-perplexity --hellaswag/--winogrande/--multiple-choice */
} lmp_task_protocol;

const char *lmp_task_protocol_name(lmp_task_protocol p); /* "lm-eval", "llamacpp" */
int lmp_task_protocol_from_name(const char *name);       /* -1 when unknown */

typedef enum {
    LMP_TASK_CHOICE,     /* one context, n continuations (ARC, PIQA, HellaSwag, binary) */
    LMP_TASK_PARTIAL,    /* n contexts, one continuation (WinoGrande partial scoring) */
    LMP_TASK_COMPLETION, /* one context, one continuation (LAMBADA): greedy match, ppl */
} lmp_task_kind;

/* One item. Choice i is the text ctx[i] followed by cont[i] (CHOICE: ctx[i] all equal;
 * PARTIAL: cont[i] all equal). cont[i] carries its leading delimiter (" " for every
 * format lmpress reads). norm[i] is the text whose length in characters normalises
 * acc_norm under lm-eval (its doc_to_choice: the choice for CHOICE, the context option
 * for PARTIAL). lc_tail (PARTIAL from a llama.cpp CSV only) is the sentence after the
 * blank exactly as llama.cpp appends it, which lm-eval strips; NULL = cont[0]. */
typedef struct {
    int n_choices;
    char **ctx, **cont, **norm;
    char *lc_tail;
    unsigned char *correct; /* per choice: 1 when a correct answer */
    int gold;               /* first correct choice */
    int line;               /* 1-based line of the item (binary: 1-based record) */
} lmp_task_item;

typedef struct {
    char *path;
    const char *format; /* "jsonl", "hellaswag-txt", "winogrande-csv", "mc-binary" */
    lmp_task_kind kind;
    int n_items;
    lmp_task_item *items;
} lmp_task_set;

/* Reads a task file; the format comes from the content (a JSONL file starts with '{')
 * and the name (.csv: WinoGrande CSV, .bin: multiple-choice binary, otherwise text:
 * HellaSwag's 6-line layout). Errors (LMP_EFORMAT, LMP_EINVAL for an empty file, LMP_EIO)
 * name the file and line: malformed JSON, a missing or mistyped field, an item without
 * choices, a gold index out of range, a mixture of item kinds. *out is owned by the
 * caller (lmp_task_free). */
int lmp_task_load(const char *path, lmp_task_set **out);
void lmp_task_free(lmp_task_set *t); /* accepts NULL */

/* lm-eval's context for a query of a query/choices/gold file: a query starting with
 * "Question:" gets the "\nAnswer:" of lm-eval's ARC and PIQA templates (just "Answer:"
 * after a trailing newline); any other query is used as it is. malloc'd. */
char *lmp_task_query_context(const char *query);

typedef struct {
    int index;          /* item index in the file (0-based) */
    int line;
    int gold, pred, pred_norm;
    bool acc, acc_norm; /* pred / pred_norm is a correct choice */
    int n_choices;
    double ll[16], ll_norm[16]; /* per choice (first 16): summed log-likelihood, normalised */
    int n_tokens[16];   /* scored tokens per choice */
    bool greedy;        /* COMPLETION: every continuation token is the argmax */
} lmp_task_item_result;

typedef struct {
    lmp_task_protocol protocol;
    int limit;         /* evaluate a random subset of this many items (0 = all) */
    uint64_t seed;     /* of that subset */
    /* lm-eval: the model's maximum length (inputs longer are cut from the left as
     * lm-eval does); 0 = max_position_embeddings (2048 when unknown). llama.cpp: the
     * largest sequence allowed (its -c); 0 = 4096. */
    int ctx;
    bool add_bos;      /* lm-eval: prepend BOS as add_bos_token=True does (default off) */
    void (*progress)(void *user, int done, int total);
    void (*on_item)(void *user, const lmp_task_item_result *r); /* may be NULL */
    void *user;
} lmp_task_params;

lmp_task_params lmp_task_default_params(void); /* lm-eval, all items, seed 1 */
/* Refuses a bad protocol, a negative limit or ctx (LMP_EINVAL naming the lmpress option). */
int lmp_task_check(const lmp_task_params *p);

typedef struct {
    lmp_task_kind kind;
    int n;                       /* items evaluated */
    double acc, acc_stderr;      /* stderr: sqrt(acc (1 - acc) / (n - 1)), lm-eval's */
    double acc_norm, acc_norm_stderr; /* NaN for COMPLETION */
    double ppl, ppl_stderr;      /* COMPLETION: exp(-mean ll), delta-method stderr; else NaN */
    double chance;               /* expected accuracy of a uniform guess: mean of k/n_choices */
    int64_t tokens_fed;          /* tokens through the model */
    int64_t tokens_saved;        /* tokens not fed thanks to the shared KV cache */
    double seconds;
} lmp_task_result;

/* Evaluates m on t (the subset p->limit / p->seed when set, in file order). Errors: a
 * model without a tokenizer (LMP_EUNSUPPORTED), a sequence longer than the context
 * (LMP_ERANGE naming the item's line). */
int lmp_task_eval(const lmp_model *m, const lmp_task_set *t, const lmp_task_params *p,
                  lmp_task_result *r);

/* The sample standard error of the mean of n values in {0, 1} with mean p, as lm-eval's
 * mean_stderr: sqrt(p (1 - p) / (n - 1)); 0 when n < 2. */
double lmp_task_stderr01(double p, int n);

/* The indices lmp_task_eval uses for limit items of n with seed (sorted ascending):
 * a partial Fisher-Yates shuffle driven by lmp_rng. idx has room for min(limit, n). */
void lmp_task_subset(int n, int limit, uint64_t seed, int *idx);

#endif
