/*
 * jobs/: `lmpress prune` as one library call. Loads the model, refuses what can be
 * refused before any forward pass, calibrates, runs lib/prune (unstructured / N:M with
 * optional joint quantization, or a structured plan) and streams the result into one of
 * formats/' writers: dense, sparse-bitmask, sparse-24-bitmask (formats/sparse.h),
 * GPTQ / compressed-tensors pack-quantized (formats/qmodel.h), or GGUF through a dense
 * folder and lmp_convert.
 */
#ifndef LMP_JOBS_PRUNE_MODEL_H
#define LMP_JOBS_PRUNE_MODEL_H

#include "formats/qmodel.h"
#include "formats/sparse.h"

typedef enum { LMP_PRUNE_OUT_SAFETENSORS = 0, LMP_PRUNE_OUT_CT, LMP_PRUNE_OUT_GGUF } lmp_prune_out;

typedef struct {
    bool structured;
    lmp_prune_params prune;      /* unstructured: spec, true_sequential, logging */
    lmp_struct_kind kind;        /* structured */
    double ratio;
    lmp_calib_params calib;
    const char *calib_path;      /* required except for magnitude */
    size_t calib_offset;         /* use bytes [offset, offset + calib_bytes) of the file */
    size_t calib_bytes;          /* 0 = to the end */
    lmp_prune_out out;           /* compressed-tensors: sparse-24-bitmask for 2:4, else sparse-bitmask;
                                    with joint quantization: pack-quantized */
    lmp_qformat qformat;         /* joint quantization on safetensors output: GPTQ v1 (default) */
    bool force;
} lmp_prune_model_params;

typedef struct {
    lmp_prune_result prune;      /* unstructured (owned; lmp_prune_model_result_free) */
    lmp_struct_plan plan;        /* structured (owned) */
    lmp_sparse_write_stats write;
    const char *format;          /* what was written: "dense", "sparse-bitmask", "gguf", "gptq", ... */
    int64_t calib_text_tokens;
    uint64_t out_bytes;          /* size of the output on disk (files of the folder, or the .gguf) */
    double seconds;
    uint64_t peak_rss;
} lmp_prune_model_result;

void lmp_prune_model_default_params(lmp_prune_model_params *p);
void lmp_prune_model_result_free(lmp_prune_model_result *r); /* accepts NULL */
/* The preferences alone, before any work (LMP_EINVAL naming the lmpress option): the
 * spec's ranges (lmp_prune_spec_check), joint-quantization options without
 * --then-quantize, the structured ratio, calibration text where the method needs it, the
 * windows (lmp_calib_check). */
int lmp_prune_model_check(const lmp_prune_model_params *p);
/* Loads `model`, checks everything that can be refused (existing output, pattern vs row
 * lengths, ratios, formats) before any forward pass, calibrates, prunes and writes `out`
 * (a folder; a .gguf file for LMP_PRUNE_OUT_GGUF). `out` appears only when complete. */
int lmp_prune_model(const char *model, const char *out, const lmp_prune_model_params *p,
                    lmp_prune_model_result *r);

#endif
