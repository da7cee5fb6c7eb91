/*
 * `lmpress quantize --target-bpw X | --target-size N [--dry-run]`: the size-targeted plan
 * (lib/quant/plan.h) turned into per-tensor type overrides for the GGUF writer.
 */
#ifndef LMP_TOOLS_QUANTIZE_PLAN_H
#define LMP_TOOLS_QUANTIZE_PLAN_H

#include "jobs/quantize_gguf.h"
#include "lib/quant/plan.h"

#include <stdbool.h>

typedef struct {
    double target_bpw;        /* > 0, or <= 0 when target_size is used */
    const char *target_size;  /* "600M", "1.5GiB", "123456" (bytes), or NULL */
    bool dry_run, json;
    lmp_quant_weights_fn weights;
    void *weights_ctx;
    int64_t (*weights_len)(void *ctx, const char *gguf_name);
    /* calibration text for the KLD probes (lmp_plan_calibrate), or NULL: the plan then
     * minimises the uncalibrated sum of relative output errors (a warning says so) */
    const char *calib_path;
    const char *calib_field;  /* JSONL text field, or NULL */
    int probes;               /* points probed per tensor (0: the default, 2; -1: all) */
    int tokens;               /* probe positions (<= 0: the default, 1,024) */
    int refine;               /* rounds in context after the solve (lmp_plan_refine; 0: the
                                 library's default, 2; -1: none, the command's default) */
    int context;              /* rounds of block weights in context after the solve
                                 (lmp_plan_context; <= 0: none) */
    /* the GGUF tensors from a source (an HF folder `src` through formats' converter; the
     * probes load the folder's model), or NULL: the GGUF file `src`'s */
    const lmp_gguf_src *gsrc;
} quantize_plan_opts;

/* Measures and solves the plan for the GGUF `src`, or for the tensors o->gsrc hands out
 * of the HF folder `src` (`model` names it in messages). With
 * dry_run prints it (table or JSON) on stdout; otherwise prints it on stderr (not with
 * json) and returns the overrides "^name$=type" in *rules (owned: free each and the
 * array). Returns the lmp status. */
int quantize_plan_make(const char *src, const char *model, const quantize_plan_opts *o, char ***rules, int *n_rules);

/* The planner as lmp_job_quantize_gguf's plan hook (lmp_job_gguf_params.plan, plan_ctx a
 * quantize_plan_ctx): the target, calibration text (--target-calib, else the
 * --imatrix-calib text) and probes from the job's parameters, the importance weights from
 * the writer's. */
typedef struct {
    quantize_plan_opts po; /* json set by the command; the rest filled by the hook */
    const char *model;     /* named in messages */
    const lmp_job_gguf_params *gp;
} quantize_plan_ctx;
int quantize_plan_hook(void *ctx, const char *src, const lmp_gguf_src *s, const lmp_gguf_quant_params *q,
                       char ***rules, int *n_rules);

#endif
