/*
 * The `lmpress distill` jobs: `export` (read the text, load the teacher, lib/distill's
 * lmp_distill_export with a progress bar) and the arguments of `merge`
 * (lmp_distill_merge is the whole job).
 */
#ifndef LMP_JOBS_DISTILL_H
#define LMP_JOBS_DISTILL_H

#include "lib/distill/distill.h"

#include <stdbool.h>

typedef struct {
    const char *teacher;  /* TEACHER, the model loaded (required; a temporary merge with --lora) */
    const char *label;    /* how the file names the teacher (NULL: teacher) */
    const char *text;     /* -f TEXT (required) */
    const char *out;      /* -o FILE.h5 (required) */
    const char *shard;    /* --shard i/n, 0 <= i < n (NULL: the whole export) */
    lmp_distill_params distill; /* ctx 0 = min(512, the model's context); top_k capped to the vocabulary */
} lmp_job_export_params;

typedef struct {
    lmp_distill_stats st;
    int ctx, top_k;       /* as used */
} lmp_job_export_result;

void lmp_job_export_default_params(lmp_job_export_params *p);
/* LMP_EINVAL naming the argument or option: TEACHER, -f and -o given, --shard's form, then
 * lmp_distill_check. lmp_job_export calls it. */
int lmp_job_export_check(const lmp_job_export_params *p);
/* The whole export. An error of the export is prefixed by the text's name unless its
 * message names a file of its own. r->st.complete is false when the export stopped early
 * (distill.stop_after): run again to resume. */
int lmp_job_export(const lmp_job_export_params *p, lmp_job_export_result *r);
/* The summary (text or JSON on stdout), or, for an export that stopped early, the note
 * on stderr saying how to resume. */
void lmp_report_export(const lmp_job_export_params *p, const lmp_job_export_result *r, bool json);

/* `lmpress distill merge OUT IN...`: LMP_EINVAL unless OUT and at least one IN. */
int lmp_job_merge_logits_check(const char *out, int n_inputs);

#endif
