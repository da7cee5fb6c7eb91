/*
 * The `lmpress eval` job: loads the model (any format lmp_model_load_any reads) and
 * measures its KL divergence against teacher logits stored by `lmpress distill export`
 * (lib/distill's lmp_distill_eval), with a progress bar on stderr.
 */
#ifndef LMP_JOBS_EVAL_H
#define LMP_JOBS_EVAL_H

#include "lib/distill/distill.h"

#include <stdbool.h>

typedef struct {
    const char *model; /* MODEL (required) */
    const char *base;  /* --base FILE, the teacher logits (required) */
    lmp_kld_params kld; /* chunks, skip, top-k, ...; progress is the job's */
} lmp_job_eval_params;

void lmp_job_eval_default_params(lmp_job_eval_params *p);
/* LMP_EINVAL naming the argument or option: MODEL and --base given, lmp_kld_check's
 * ranges. lmp_job_eval calls it. */
int lmp_job_eval_check(const lmp_job_eval_params *p);
int lmp_job_eval(const lmp_job_eval_params *p, lmp_kld_result *r);
/* The result as `lmpress eval` prints it: llama.cpp's KLD statistics, or one JSON object. */
void lmp_report_eval(const lmp_job_eval_params *p, const lmp_kld_result *k, bool json);

#endif
