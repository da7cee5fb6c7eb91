/*
 * Size-targeted mixed precision for integer-group folders (issue 21): `lmpress quantize
 * MODEL -o OUTDIR --method gptq|rtn|awq --target-bpw X` (or `--target-size S`) chooses
 * bits and group size per linear, written as a GPTQ folder with GPTQModel's `dynamic`
 * overrides or a compressed-tensors folder with several config_groups (formats/).
 *
 * Units. The linears that read the same input share one setting: q/k/v (one unit), o,
 * gate/up (one unit), down: four units per block. vLLM runs q/k/v as one fused qkv_proj
 * and gate/up as one gate_up_proj and requires one scheme per fused layer; the units are
 * also the Hessian classes, so one statistics pass serves a unit.
 *
 * 1. Measure (lmp_intplan_measure). Every block's Hessians H = 2/n X^T X of its four
 *    inputs are gathered on the FLOAT model (the calibration driver, one pass per block,
 *    nothing installed). For every candidate (bits, group) each linear of the unit is
 *    quantized with the method's own quantizer on those statistics (GPTQ: lmp_quant_gptq
 *    with H; RTN: lmp_quant_rtn; AWQ: lmp_awq_quant, i.e. without AWQ's scales and clip)
 *    and its relative squared output error tr(D H D^T) / tr(W H W^T), D = W - Q, taken;
 *    a unit's error is the sum over its linears. Without calibration (RTN only) H = I:
 *    the relative squared weight error. The bytes of a candidate are what the target
 *    format writes for the unit's linears (the caller's bytes function: formats/ packs
 *    an empty tensor of the shape, so qweight + qzeros + scales + g_idx, or compressed-
 *    tensors' weight_packed + weight_scale (+ zero points, g_idx) + weight_shape, exactly).
 * 2. Pareto + solve: lib/quant/plan.c's lmp_plan_pareto and lmp_plan_solve (the exact
 *    multiple-choice knapsack over byte cells, costs rounded up: never over budget).
 *
 * Candidates (default): bits {2, 3, 4, 8} x group {32, 64, 128, per output channel}; a
 * candidate is dropped for a unit when the group does not divide the linears' in_features
 * or the format cannot hold the shape at that width (the bytes function returns 0).
 *
 * Bits per weight (the target's definition): bytes of the packed linears (all their
 * stored tensors) x 8 / their weights. A uniform 4-bit group-128 GPTQ folder is
 * (4 in*out + 4 n_groups*out (zeros) + 16 n_groups*out (scales) + 32 in) / (in*out) bits:
 * about 4.16 for a 256 x 768 linear. `--target-size` counts every tensor of the folder's
 * safetensors (the unquantized embeddings, norms and lm_head at their written dtype).
 */
#ifndef LMP_INTPLAN_H
#define LMP_INTPLAN_H

#include "pipeline.h"

#define LMP_INTPLAN_MAX_CAND 16
#define LMP_INTPLAN_MAX_PROBES 4
#define LMP_INTPLAN_UNITS 4 /* per block: q/k/v, o, gate/up, down (lmp_lin_input order) */

typedef struct {
    int bits;
    int group_size;  /* -1: per output channel */
    uint64_t bytes;  /* the unit's linears in the target format */
    double err;      /* sum over its linears of tr(D H D^T) / tr(W H W^T); after
                        lmp_intplan_calibrate: the predicted KLD contribution */
    double rel_err;  /* that measured sum (kept) */
    double kld;      /* end-to-end KLD with this unit alone at this setting, or -1 */
} lmp_intplan_cand;

typedef struct {
    int layer;
    int cls;                       /* lmp_lin_input */
    char name[LMP_MAX_NAME];       /* "model.layers.3.self_attn.{q,k,v}_proj" */
    int64_t params;                /* weights of its linears */
    int n_cand;                    /* every measured candidate (not only Pareto points) */
    lmp_intplan_cand cand[LMP_INTPLAN_MAX_CAND];
    int choice;                    /* index into cand after lmp_intplan_solve, else -1 */
    /* kept by lmp_intplan_measure for lmp_intplan_calibrate (freed by it): the quantized
     * linears of up to LMP_INTPLAN_MAX_PROBES candidates (indices probe_k) */
    int n_probe;
    int probe_k[LMP_INTPLAN_MAX_PROBES];
    lmp_qtensor probe_q[LMP_INTPLAN_MAX_PROBES][3];
} lmp_intplan_unit;

typedef struct {
    int n_layers, n;               /* n = n_layers * LMP_INTPLAN_UNITS */
    lmp_intplan_unit *u;           /* owned */
    uint64_t lin_params;           /* weights of every planned linear */
    bool calibrated;               /* errors on calibration Hessians (else H = I) */
    double seconds;                /* measurement */
    /* after lmp_intplan_solve */
    uint64_t budget;               /* bytes: planned linears + fixed */
    uint64_t fixed_bytes;          /* bytes counted besides the linears (0 for a bpw target) */
    uint64_t bytes;                /* chosen linears + fixed_bytes (<= budget) */
    uint64_t min_bytes, max_bytes; /* the achievable range, fixed included */
    double err;                    /* summed predicted error of the choice */
    /* after lmp_intplan_calibrate: err is predicted KLD */
    bool kld_calibrated;
    int n_probes, probe_windows, probe_seqlen;
    double calib_seconds;
} lmp_intplan;

/* Bytes linear [rows, cols] takes at (bits, group_size) in the target format; 0 when the
 * format cannot hold it. */
typedef uint64_t (*lmp_intplan_bytes_fn)(void *ctx, int64_t rows, int64_t cols, int bits, int group_size);

typedef struct {
    lmp_qmethod method;
    bool sym;
    bool act_order;                /* GPTQ */
    float damp;                    /* GPTQ */
    const int *bits;               /* candidate widths, NULL = {2, 3, 4, 8} */
    int n_bits;
    const int *groups;             /* candidate group sizes (-1 per channel), NULL = {32, 64, 128, -1} */
    int n_groups;
    lmp_intplan_bytes_fn bytes;    /* required */
    void *bytes_ctx;
    bool calib_bos;
    bool progress;
    /* KLD calibration (lmp_intplan_calibrate): per unit the `probes` candidates whose bits
     * per weight are nearest probe_bpw are kept quantized (1..LMP_INTPLAN_MAX_PROBES; 0 or
     * less: none kept, the default) */
    int probes;
    double probe_bpw;
} lmp_intplan_params;

void lmp_intplan_default_params(lmp_intplan_params *p);
/* Measures every unit's candidates on m (cal NULL: RTN only, H = I). *out owned
 * (lmp_intplan_free), cleared on failure. */
int lmp_intplan_measure(lmp_model *m, const lmp_calib_data *cal, const lmp_intplan_params *pp, lmp_intplan *out);
/* Chooses one candidate per unit minimising the summed error with the chosen bytes plus
 * `fixed` at most `budget`. A budget below the smallest or above the largest achievable
 * total is LMP_EINVAL saying the range (lmp_plan_solve's messages). */
int lmp_intplan_solve(lmp_intplan *p, uint64_t budget, uint64_t fixed);
/* The uniform setting (bits, group) on every unit: its bytes (fixed excluded) and summed
 * error, for comparisons; LMP_EINVAL when some unit lacks that candidate. */
int lmp_intplan_uniform(const lmp_intplan *p, int bits, int group_size, uint64_t *bytes, double *err);
/* The solved plan as per-linear settings, out[n_layers * LMP_LIN_COUNT]. */
void lmp_intplan_settings(const lmp_intplan *p, lmp_qsetting *out);
void lmp_intplan_free(lmp_intplan *p); /* accepts NULL */

/* Calibration against end-to-end KL divergence (as lib/quant/plan.h's for GGUF): the
 * summed relative output error weighs every unit alike, which the model's KLD does not
 * (docs/results.md: plans below uniform on that error lost on KLD). For every unit the
 * candidates kept by lmp_intplan_measure (params.probes) are installed ALONE in m (the
 * method's own quantized weights, run natively), the model run from the unit's block on
 * over the first `windows` x `seq_len` tokens of cal and its mean KLD against the original
 * measured. A probed candidate's err becomes that KLD; the others' err is rel_err times
 * the KLD / rel_err ratio of the probes (interpolated in log error between the two around
 * it, the nearest one's beyond; units without probes: the median ratio). Frees the kept
 * weights. m must be the model measured, with its original weights. */
int lmp_intplan_calibrate(lmp_model *m, const lmp_calib_data *cal, int windows, int seq_len, bool calib_bos,
                          bool progress, lmp_intplan *p);

#endif
