/*
 * The `lmpress compare` job: reads the task files and the text, then lib/distill's
 * lmp_distill_compare evaluates BASE and every VARIANT (perplexity, KLD against BASE,
 * size, bits per weight, tokens/s, tasks) and writes the report folder.
 */
#ifndef LMP_JOBS_COMPARE_H
#define LMP_JOBS_COMPARE_H

#include "lib/distill/distill.h"
#include "lib/distill/tasks.h"

#include <stdbool.h>

typedef struct {
    const char *base;              /* BASE (required) */
    const char *const *variants;   /* VARIANT... (at least one) */
    int n_variants;
    const char *text;              /* -f TEXT (required) */
    const char *out;               /* -o REPORT_DIR (required) */
    const char *protocol;          /* perplexity protocol by name: gptq, llamacpp, windows */
    const char *task_protocol;     /* lm-eval or llamacpp */
    const char *const *tasks;      /* --task NAME=FILE, n_tasks of them */
    int n_tasks;
    lmp_compare_params cmp;        /* ctx, chunks, top_k, resume, ... and the task limit and seed;
                                    * protocol, tasks and load are the job's to set */
} lmp_job_compare_params;

typedef struct {
    lmp_compare_row *rows;         /* 1 + n_variants: BASE first */
    int n_rows;
    char *task_names[LMP_COMPARE_MAX_TASKS];
    int n_tasks;
    lmp_task_protocol task_protocol;
} lmp_job_compare_result;

void lmp_job_compare_default_params(lmp_job_compare_params *p);
void lmp_job_compare_result_free(lmp_job_compare_result *r); /* accepts NULL */
/* LMP_EINVAL naming the argument or option: BASE, a VARIANT, -f and -o given, the
 * protocols' names, each --task in the form NAME=FILE, then lmp_compare_check.
 * lmp_job_compare calls it. */
int lmp_job_compare_check(const lmp_job_compare_params *p);
/* The task files are read and checked before any model is evaluated. Returns status;
 * *r filled (free it in any case). */
int lmp_job_compare(const lmp_job_compare_params *p, lmp_job_compare_result *r);
/* The table (text) or report.json's rows as one JSON object on stdout. */
void lmp_report_compare(const lmp_job_compare_params *p, const lmp_job_compare_result *r, bool json);

#endif
