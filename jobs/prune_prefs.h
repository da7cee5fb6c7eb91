/*
 * jobs/: `lmpress prune`'s preferences as given on the command line, resolved into
 * lmp_prune_model_params and checked before any work: which path (--method or
 * --structured), --sparsity or --pattern, --qformat by name, the output kind from
 * --format or the name, then lmp_prune_model_check.
 */
#ifndef LMP_JOBS_PRUNE_PREFS_H
#define LMP_JOBS_PRUNE_PREFS_H

#include "jobs/prune_model.h"

typedef struct {
    const char *model, *out;  /* MODEL and -o OUT (required) */
    int method;               /* lmp_prune_method, -1: not given */
    int structured;           /* lmp_struct_kind, -1: not given */
    double sparsity;          /* -1: not given (exactly one of sparsity and pattern) */
    const char *pattern;      /* "N:M", 0 < N < M <= 64 */
    const char *qformat;      /* a GPTQ row of the format table, by name or alias */
    int format;               /* --format safetensors|compressed-tensors|gguf|ct, -1: by the name */
} lmp_prune_prefs;

void lmp_prune_prefs_default(lmp_prune_prefs *a);
/* Fills p from a and checks everything (LMP_EINVAL naming the option): MODEL and OUT,
 * exactly one of --method and --structured, exactly one of --sparsity and --pattern for
 * --method, --pattern's form, --ratio for --structured, --qformat's name, an output name
 * that fits the output kind (.gguf for GGUF; not a file name for a folder), then
 * lmp_prune_model_check. */
int lmp_prune_prefs_apply(const lmp_prune_prefs *a, lmp_prune_model_params *p);

#endif
