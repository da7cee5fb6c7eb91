/*
 * jobs/: whole-model jobs the commands hand their parameters to. This one is `lmpress
 * quantize --method gptq|rtn|awq`: load the model, draw the calibration windows, run
 * lib/quant's layer-by-layer pipeline with formats/qmodel.h's streaming writer as its
 * sink. The pairing of algorithm and layout lives here because lib/quant does not include
 * formats/ and formats/ does not run algorithms.
 */
#ifndef LMP_JOBS_QUANTIZE_MODEL_H
#define LMP_JOBS_QUANTIZE_MODEL_H

#include "formats/qmodel.h"
#include "lib/quant/pipeline.h"

typedef struct {
    lmp_qpipe_params pipe;       /* method, bits, group, ...; its sink is the writer */
    lmp_calib_params calib;
    const char *calib_path;      /* required for GPTQ; optional for RTN (errors measured) */
    lmp_qmodel_write_params write;
    /* --keep: extended regexes; a linear whose Hugging Face name (model.layers.0.mlp.down_proj)
     * or llama.cpp name (blk.0.ffn_down.weight) matches stays dense (GPTQ, RTN; not AWQ,
     * whose scales are folded into the neighbours). A pattern matching nothing is warned. */
    const char *const *keep;
    int n_keep;
} lmp_qmodel_quant_params;

typedef struct {
    lmp_qpipe_result pipe;       /* owned: lmp_qmodel_quant_result_free */
    lmp_qmodel_write_stats write;
    int64_t calib_text_tokens;
    double seconds;
    uint64_t peak_rss;
} lmp_qmodel_quant_result;

void lmp_qmodel_quant_default_params(lmp_qmodel_quant_params *p);
void lmp_qmodel_quant_result_free(lmp_qmodel_quant_result *r); /* accepts NULL */
/* The preferences a command gives, before any work (LMP_EINVAL naming the lmpress option):
 * lmp_qpipe_check's ranges, act-order with GPTQ only, AWQ's switches with AWQ only, the
 * format's constraints (v1 symmetric, AWQ GEMM 4-bit without act-order), calibration
 * text for GPTQ and AWQ, the windows (lmp_calib_check). */
int lmp_qmodel_quant_check(const lmp_qmodel_quant_params *p);
/* The preferences whose default depends on the method, resolved into p, then
 * lmp_qmodel_quant_check: sym (-1: the
 * method's; AWQ's convention is zero points), act (-1: on for GPTQ), format (NULL: gptq,
 * awq for AWQ; a name or alias of formats/fmt_table.c's table; gptq is written as v2 when
 * asymmetric, with a note on stderr when `notes` and the check passed), dtype (NULL: the input's; "f16" or
 * "bf16" for the tensors left unquantized). Returns status (an unknown format name, the check's). */
int lmp_qmodel_quant_prefs(lmp_qmodel_quant_params *p, int sym, int act, const char *format, const char *dtype,
                           bool notes);
/* The command's arguments (before lmp_qmodel_quant_prefs): MODEL and OUT given, OUT not a
 * file name (the output is a folder). */
int lmp_qmodel_quant_check_args(const char *model, const char *out, const lmp_qmodel_quant_params *p);
/* Loads `model`, draws the calibration windows, runs the pipeline with the writer as
 * its sink, and completes `out`. Everything that can be refused (existing output, bad
 * group size, format constraints, short calibration text) is refused before the first
 * forward pass. `out` appears only when complete. */
int lmp_qmodel_quantize(const char *model, const char *out, const lmp_qmodel_quant_params *p,
                        lmp_qmodel_quant_result *r);

#endif
