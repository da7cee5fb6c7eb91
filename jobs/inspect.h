/*
 * The `lmpress inspect` job: what a checkpoint holds (architecture, hyper-parameters, a
 * tensor table, totals with parameters and bits per weight by lib/io/bpw.h's one
 * definition, metadata) printed as text or one JSON object on stdout. PATH is an HF
 * folder, a .safetensors file, a model.safetensors.index.json, a .gguf file, or a bare
 * config.json (what lmpress reads from it and the parameter count it implies).
 */
#ifndef LMP_JOBS_INSPECT_H
#define LMP_JOBS_INSPECT_H

#include <stdbool.h>

typedef struct {
    const char *path; /* PATH (required) */
    bool json;        /* one JSON object instead of text */
    bool no_tensors;  /* omit the per-tensor table */
} lmp_job_inspect_params;

void lmp_job_inspect_default_params(lmp_job_inspect_params *p);
/* LMP_EINVAL when PATH is missing. lmp_job_inspect calls it. */
int lmp_job_inspect_check(const lmp_job_inspect_params *p);
/* Reads PATH's headers (no tensor data) and prints. Returns status (nothing printed on
 * stdout on an error). */
int lmp_job_inspect(const lmp_job_inspect_params *p);

#endif
