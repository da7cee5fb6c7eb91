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
#include "lib/quant/intplan.h"
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
    /* Size target (issue 21, lib/quant/intplan.h): bits and group size chosen per linear
     * unit (q/k/v, o, gate/up, down of each block) to least summed error at
     * target_bpw bits per weight of the packed linears (their stored bytes x 8 / their
     * weights), or a folder of target_size bytes of tensors (0 / <= 0: no target). The
     * base setting written (quantization_config bits / group_size) is the plan's most
     * common one; pipe.bits / group_size are not used. dry_run: plan only, nothing
     * written. */
    double target_bpw;
    uint64_t target_size;
    bool dry_run;
    /* the candidates (NULL: bits {2, 3, 4, 8}, groups {32, 64, 128, -1 per channel}) */
    const int *target_bits;
    int n_target_bits;
    const int *target_groups;
    int n_target_groups;
    /* the command's text for --target-size / --target-bits / --target-groups, read into
     * target_size / target_bits / target_groups (pointing into the buffers below) by
     * lmp_qmodel_quant_targets */
    const char *target_size_text, *target_bits_text, *target_groups_text;
    int target_bits_buf[16], target_groups_buf[16];
    /* with a target and calibration text: settings per unit probed end to end against the
     * model's KL divergence (lmp_intplan_calibrate; default 2, at most 4; 0: none, the
     * summed relative error alone) on the first target_kld_windows x target_kld_seqlen
     * calibration tokens (default 8 x 128) */
    int target_kld_probes, target_kld_windows, target_kld_seqlen;
} lmp_qmodel_quant_params;

typedef struct {
    lmp_qpipe_result pipe;       /* owned: lmp_qmodel_quant_result_free */
    lmp_qmodel_write_stats write;
    int64_t calib_text_tokens;
    double seconds;
    double prep_seconds;         /* model loaded, calibration text tokenized, writer opened */
    double finish_seconds;       /* the writer's completion (non-layer tensors, config, rename) */
    uint64_t peak_rss;
    /* with a target: the plan (owned; r->plan.n == 0 without one), the base setting
     * written, and the uniform settings 4-bit and 3-bit group 128 measured alike
     * (bytes of the packed linears, summed error; bytes 0 where not representable) */
    lmp_intplan plan;
    int base_bits, base_group;
    uint64_t uni_bytes[2];
    double uni_err[2];
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
/* Reads p's target texts (a size such as 600M or 1.5GiB; comma lists of integers, at most
 * 16) into target_size / target_bits / target_groups; LMP_EINVAL naming the option. */
int lmp_qmodel_quant_targets(lmp_qmodel_quant_params *p);
int lmp_qmodel_quant_check_args(const char *model, const char *out, const lmp_qmodel_quant_params *p);
/* Loads `model`, draws the calibration windows, runs the pipeline with the writer as
 * its sink, and completes `out`. Everything that can be refused (existing output, bad
 * group size, format constraints, short calibration text) is refused before the first
 * forward pass. `out` appears only when complete. */
int lmp_qmodel_quantize(const char *model, const char *out, const lmp_qmodel_quant_params *p,
                        lmp_qmodel_quant_result *r);
/* Prints `"phases": {...}, ` (JSON, wall seconds) to f: prepare (load, tokenize), embed,
 * forward (block runs), statistics, solve (the per-linear solves, the error report
 * excluded), report (the error figures), write (layers written by the sink plus the
 * writer's completion), other (the rest of the run). */
void lmp_qmodel_quant_phases_json(const lmp_qmodel_quant_result *r, FILE *f);

#endif
