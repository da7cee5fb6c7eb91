/*
 * The `lmpress ppl` job: reads the text, loads the model (any format lmp_model_load_any
 * reads), attaches LoRA adapters unmerged and scores the text under a named protocol
 * (lib/infer's lmp_ppl_text), with a progress bar on stderr.
 */
#ifndef LMP_JOBS_PPL_H
#define LMP_JOBS_PPL_H

#include "lib/infer/infer.h"

#include <stdbool.h>

typedef struct {
    const char *model;         /* MODEL (required) */
    const char *text;          /* -f TEXT, the file to score (required) */
    lmp_ppl_params ppl;        /* protocol, ctx, chunks, ...; progress is the job's */
    const char *const *loras;  /* PEFT adapters run unmerged beside the weights */
    const double *lora_scales; /* n_loras multipliers (NULL: all 1) */
    int n_loras;
} lmp_job_ppl_params;

void lmp_job_ppl_default_params(lmp_job_ppl_params *p);
/* LMP_EINVAL naming the argument or option: MODEL and -f TEXT given, adapters with
 * paths, lmp_ppl_check's ranges. lmp_job_ppl calls it. */
int lmp_job_ppl_check(const lmp_job_ppl_params *p);
/* The whole job. An empty text file is LMP_EINVAL; errors of the scoring are prefixed by
 * the text's name. Returns status; *r filled. */
int lmp_job_ppl(const lmp_job_ppl_params *p, lmp_ppl_result *r);
/* The result as `lmpress ppl` prints it: one line, or one JSON object (with --json). */
void lmp_report_ppl(const lmp_job_ppl_params *p, const lmp_ppl_result *r, bool json);

#endif
