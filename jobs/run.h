/*
 * The `lmpress run` job: loads a model (any format lmp_model_load_any reads), attaches
 * LoRA adapters unmerged, tokenizes the prompt and generates, streaming the text (prompt
 * and continuation) through a callback as it grows.
 */
#ifndef LMP_JOBS_RUN_H
#define LMP_JOBS_RUN_H

#include "lib/infer/infer.h"

typedef struct {
    const char *model;        /* MODEL (required) */
    const char *prompt;       /* required */
    lmp_sampler_params sampler;
    int n_predict;            /* tokens to generate (default 256) */
    int ctx;                  /* 0 = the model's max positions */
    bool no_bos;              /* do not start the prompt with BOS */
    bool ignore_eos;          /* keep going after EOS */
    const char *const *loras; /* PEFT adapters run unmerged beside the weights */
    const double *lora_scales; /* n_loras multipliers (NULL: all 1) */
    int n_loras;
    /* Receives the text as it grows (may be NULL): the whole sequence is decoded after
     * each token and the bytes not yet given are passed on, holding back a trailing U+FFFD
     * that may still become a character when the next byte token arrives. */
    void (*on_text)(void *user, const char *bytes, size_t n);
    void *user;
} lmp_job_run_params;

typedef struct {
    lmp_gen_stats gen;
    bool streamed; /* the prompt's text went to on_text and generation began */
} lmp_job_run_result;

void lmp_job_run_default_params(lmp_job_run_params *p);
/* LMP_EINVAL naming the lmpress argument or option: a model and a prompt, n_predict in [0, 10^6], ctx in
 * [0, 2^24], the sampler's ranges (lmp_sampler_check). lmp_job_run calls it. */
int lmp_job_run_check(const lmp_job_run_params *p);
/* The whole run. A prompt that gives no tokens, or more than the context holds, is
 * LMP_EINVAL. Returns status. */
int lmp_job_run(const lmp_job_run_params *p, lmp_job_run_result *r);

#endif
