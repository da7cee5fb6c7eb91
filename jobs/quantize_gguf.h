/*
 * jobs/: whole-model jobs, the layer between formats/ and tools/. A command fills a job's
 * parameter struct (from its *_default_params), the job's check refuses bad preferences
 * before any work, and one call does the job.
 *
 * This file: `lmpress quantize --type` (GGUF block types), the whole job: importance
 * weights (computed from calibration text as llama-imatrix does, or read from
 * llama-imatrix's file, optionally saved), the source (a GGUF file, or an HF checkpoint
 * read through formats' lmp_convert_src_open: no temporary GGUF), an optional type plan
 * (--target-bpw, through a hook the tools' planner fills; from an HF checkpoint it
 * measures the converter's stream too), and lib/quant's GGUF writer with llama.cpp's
 * mixes.
 */
#ifndef LMP_JOBS_QUANTIZE_GGUF_H
#define LMP_JOBS_QUANTIZE_GGUF_H

#include "lib/quant/pipeline.h"
#include "lib/quant/quant.h"

/* Chooses per-tensor types (a plan) for the GGUF file `model` (s NULL), or for the GGUF
 * tensors source s hands out (an HF checkpoint `model` through formats' converter), given
 * the importance weights in q (weights, weights_ctx, weights_len; NULL when none).
 * Returns the overrides "^name$=type" in *rules (owned by the job afterwards: each string
 * and the array are freed). Returns status. */
typedef int (*lmp_job_gguf_plan_fn)(void *ctx, const char *model, const lmp_gguf_src *s,
                                    const lmp_gguf_quant_params *q, char ***rules, int *n_rules);

typedef struct {
    /* the GGUF writer's preferences: type, tensor_type overrides, keep, allow_requantize,
     * force, measure_error, on_tensor. weights / imatrix_* are the job's to set. */
    lmp_gguf_quant_params q;
    /* --imatrix-calib FILE[,FILE]: importance weights computed from this text with the
     * windows of `calib` (default llama-imatrix's: consecutive chunks, 128 x 512 tokens). */
    const char *imatrix_calib;
    lmp_calib_params calib;
    const char *imatrix_file;  /* --imatrix FILE: llama-imatrix's output (.dat or GGUF) instead */
    const char *imatrix_out;   /* with imatrix_calib: also save it as a legacy .dat */
    bool notes;                /* notes on stderr (imatrix sources, conversion); the command's !json */
    lmp_job_gguf_plan_fn plan; /* NULL: q.type and its overrides as given */
    void *plan_ctx;
    bool dry_run;              /* with plan: stop after it; out is neither checked nor written */
    /* The size target the plan hook works to (checked here, before any work; the command
     * sets plan when one is given): --target-bpw X or --target-size SIZE, with
     * --target-calib FILE and --target-probes N (0: every point). */
    double target_bpw;         /* -1: not given */
    const char *target_size;   /* NULL: not given */
    const char *target_calib;
    int target_probes;         /* -1: not given */
    int target_refine;         /* --target-refine rounds (-1: not given, the default 2; 0: none) */
    int target_tokens;         /* --target-tokens: probe positions (-1: not given, the default 1,024) */
    int target_context;        /* --target-context rounds of block weights in context (-1: not given, none) */
} lmp_job_gguf_params;

typedef struct {
    lmp_gguf_quant_result q;   /* the writer's result */
    bool imatrix;              /* importance weights were computed from calibration text */
    int imatrix_chunks, imatrix_entries;
    int64_t imatrix_tokens;
    double seconds;            /* the whole job: conversion, importance, plan, quantizing */
    double imatrix_seconds, convert_seconds; /* convert: 0 (no temporary GGUF is written) */
} lmp_job_gguf_result;

void lmp_job_gguf_default_params(lmp_job_gguf_params *p);
/* Refuses bad preferences before any work (LMP_EINVAL naming the option): an unknown
 * q.type (with a suggestion and the list of types), --imatrix with --imatrix-calib,
 * --imatrix-out without --imatrix-calib, calibration windows out of range, an output
 * name that is not *.gguf (when out is not NULL). */
int lmp_job_gguf_check(const lmp_job_gguf_params *p, const char *out);
/* The command's arguments too, before lmp_job_gguf_check: MODEL and OUT given (OUT may be
 * NULL for a dry run), the size target's options (one target, X in (0, 64], a size that
 * lmp_job_parse_bytes reads, probes in [0, 16], --target-calib / --target-probes /
 * --dry-run only with a target). */
int lmp_job_gguf_check_args(const char *model, const char *out, const lmp_job_gguf_params *p);
/* A size in bytes: a number with an optional K/M/G/T (powers of 1000) or KiB/MiB/GiB/TiB
 * suffix, a trailing B allowed. Returns false when it is not one. */
bool lmp_job_parse_bytes(const char *s, double *bytes);
/* Runs the job on `model` (HF folder, .safetensors or f32/f16/bf16 GGUF) into the GGUF
 * `out`: lmp_job_gguf_check, an existing out refused before any work (LMP_EEXIST unless
 * q.force), importance weights first (a bad file or text fails before conversion), then
 * lmp_gguf_quantize_src on the GGUF file or on lmp_convert_src_open(model) (with a plan,
 * the same source is measured first: no temporary GGUF either). Under mpirun the importance weights are computed by every rank and the
 * rest is rank 0's; every rank returns rank 0's status (lmp_dist_status). Returns status;
 * *r filled (zeros on the other ranks). */
int lmp_job_quantize_gguf(const char *model, const char *out, const lmp_job_gguf_params *p, lmp_job_gguf_result *r);

#endif
