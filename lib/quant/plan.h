/*
 * Size-targeted mixed precision for GGUF (lib/quant/plan.c): `lmpress quantize
 * --target-bpw X` / `--target-size N`.
 *
 * 1. Measure. Every tensor that llama.cpp's mixes quantize (lmp_gguf_mix_type) is
 *    quantized with each candidate GGUF type by the same quantizer the writer uses (the
 *    importance weights included), dequantized, and its error taken as the relative
 *    output error on the calibration statistics: with d = E[x_j^2] per input column (the
 *    imatrix; 1 for tensors without an entry), err = sum_ij d_j (W - Q(W))_ij^2 /
 *    sum_ij d_j W_ij^2, i.e. E||(W - Q)x||^2 / E||W x||^2 for inputs with independent
 *    columns. Calibrated (lmp_plan_calibrate, below): each error becomes a predicted
 *    contribution to the model's KL divergence, from probes that install the tensor's
 *    quantization alone in the engine; the model's predicted error is the sum.
 * 2. Pareto. Per tensor only the (bytes, err) points that no cheaper point beats are kept.
 * 3. Solve. min sum err subject to sum bytes <= budget, a multiple-choice knapsack,
 *    by dynamic programming over the byte budget cut into at most LMP_PLAN_GRID cells
 *    (each choice's bytes rounded UP to whole cells, so the plan never exceeds the
 *    budget; with a cell of one byte the result is the exact optimum). Lagrangian
 *    bisection was not used: it only reaches points on the lower convex hull of the
 *    summed fronts and leaves budget unspent between them.
 * Bytes are the tensor data of the whole file (tensors that are not quantized count at
 * their size), so bits per weight = bytes * 8 / parameters, as the quantize summary says.
 */
#ifndef LMP_PLAN_H
#define LMP_PLAN_H

#include "pipeline.h"
#include "quant.h"

#define LMP_PLAN_MAX_CAND 24
#define LMP_PLAN_GRID 65536

/* One candidate type of one tensor. */
typedef struct {
    lmp_dtype dt;
    uint64_t bytes;
    double err;      /* after lmp_plan_calibrate: predicted KLD contribution */
    double rel_err;  /* the importance-weighted relative output error (measured) */
    double kld;      /* end-to-end KLD with this tensor alone at this type, or -1: not probed */
} lmp_plan_cand;

typedef struct {
    char name[LMP_MAX_NAME];
    int64_t params;
    int n_cand;                         /* Pareto points, by increasing bytes */
    lmp_plan_cand cand[LMP_PLAN_MAX_CAND];
    int choice;                         /* index into cand after lmp_plan_solve */
    double scale;                       /* lmp_plan_calibrate: KLD per unit of rel_err at
                                           the probes (geometric mean), 0 before */
} lmp_plan_tensor;

typedef struct {
    int n;                    /* planned (quantizable) tensors */
    lmp_plan_tensor *t;       /* owned */
    uint64_t fixed_bytes;     /* tensors kept as they are */
    uint64_t params;          /* elements of all tensors */
    uint64_t min_bytes, max_bytes; /* whole file, every tensor at its cheapest / dearest point */
    /* after lmp_plan_solve */
    uint64_t bytes;           /* whole file */
    double err;               /* predicted: sum of the chosen errors */
    double seconds;           /* measurement */
    /* after lmp_plan_calibrate */
    bool calibrated;          /* err is predicted KLD (else the relative output error) */
    int calib_windows, calib_seqlen, n_probes;
    double calib_seconds;
    /* after lmp_plan_refine: the plan's KLD measured on the calibration windows, as solved
     * from the tensors-alone predictions and after the in-context rounds kept */
    double kld_solved, kld_refined;
    /* the same on the validation windows (the calibration text's next windows, which decide
     * what is kept; val_windows 0: none, the probe windows decided) */
    double kld_val_solved, kld_val_refined;
    int val_windows;
    int refine_rounds, refine_probes;
    double refine_seconds;
    int refine_tried;                /* rounds whose new plan was measured */
    int refine_pairs;                /* moves kept (lmp_plan_refine: a tensor dearer, others cheaper) */
    int refine_pairs_tried;          /* moves measured */
    int refine_moved[10];            /* per such round: tensors whose type changed */
    double refine_kld[10];           /* per such round: the new plan's calibration KLD */
    double refine_kld_val[10];       /* ... and on the validation windows */
    /* after lmp_plan_context (kld_solved / kld_refined / kld_val_* as above: the solved plan
     * and the kept one) */
    int ctx_probes;                  /* tensors restored in context (one pass each) */
    int ctx_tried;                   /* re-solved plans measured */
    int ctx_kept;                    /* which one was kept (0: the plan as solved) */
    int ctx_moved[10];               /* per re-solve: tensors whose type changed */
    double ctx_kld[10], ctx_kld_val[10]; /* per re-solve: calibration / validation KLD */
    int ctx_blocks;                  /* blocks of ctx_block_kld (at most 64) */
    double ctx_block_kld[64];        /* first round: the calibration KLD of the solved plan with
                                        block b's tensors restored to the original */
    double ctx_seconds;
} lmp_plan;

/* Keeps the Pareto-optimal points of c[0..n) (fewer bytes or lower error than every
 * other), sorted by increasing bytes (and so decreasing error), in place. Returns their
 * number. */
int lmp_plan_pareto(lmp_plan_cand *c, int n);

/* Chooses one point per tensor minimising the summed error with the summed bytes (plus
 * fixed_bytes) at most `budget` (whole-file bytes). Fills t[i].choice, bytes and err.
 * A budget below min_bytes or above max_bytes is LMP_EINVAL saying the achievable range
 * (above: nothing to choose, every tensor at its best point already fits a smaller
 * file). */
int lmp_plan_solve(lmp_plan *p, uint64_t budget);

typedef struct {
    lmp_quant_weights_fn weights;  /* importance weights (imatrix) or NULL */
    void *weights_ctx;
    /* optional: values the source holds for a tensor (0: none); an entry whose length
     * differs from the tensor's rows is refused (an imatrix of another model) */
    int64_t (*weights_len)(void *ctx, const char *gguf_name);
    const lmp_dtype *types;        /* candidates, NULL = the default list */
    int n_types;
    bool progress;                 /* one line per tensor on stderr */
    /* optional: the GGUF tensors from a source (quant.h lmp_gguf_src; an HF folder through
     * formats' lmp_convert_src_open: no temporary GGUF), `in` then naming the checkpoint
     * lmp_model_load opens for the KLD probes (the HF folder), whose linears, embedding,
     * output, q/k biases and RoPE order are replaced by the source's, so the probes run
     * the model the GGUF would hold. NULL: the tensors of the GGUF file `in`. */
    const lmp_gguf_src *src;
} lmp_plan_params;

/* The default candidates: q2_K..q6_K, q8_0, iq4_xs, iq3_s, iq4_nl, q4_0, q4_1, q5_0, q5_1,
 * and with importance weights also iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s (the
 * types llama-quantize refuses without an imatrix). Writes up to `max` types into out, returns the count. */
int lmp_plan_default_types(bool imatrix, lmp_dtype *out, int max);

/* Measures every candidate of every quantizable tensor of the f32/f16/bf16 GGUF `in` (or
 * pp->src's)
 * (types whose blocks do not fit a tensor's rows, and imatrix-only types for a tensor
 * without an importance entry, are skipped). *out is owned (lmp_plan_free). */
int lmp_plan_measure(const char *in, const lmp_plan_params *pp, lmp_plan *out);
void lmp_plan_free(lmp_plan *p); /* accepts NULL */

/* Calibration against end-to-end KL divergence (issue 21). The measured error of a type is
 * local (one tensor's output error on the imatrix statistics); what the budget should buy
 * is the model's KLD. For every planned tensor, `probes` of its Pareto points (those nearest
 * the target's bits per weight; 0 = every point) are installed in the engine ALONE, the
 * model's logits on the calibration windows compared with the original's (mean KLD over
 * all positions), everything else kept. A probed point's predicted KLD is the one
 * measured; the others get rel_err x the KLD-per-error ratio of the nearest probes
 * (interpolated in log error between probes, the nearest one's beyond). The model's
 * predicted KLD is the sum (contributions of small perturbations add to first order).
 * The token embedding of a tied model is probed in both its roles (input rows and the
 * output matrix), as the written file uses it. Runs from the probed tensor's block on,
 * with the earlier blocks' outputs cached. */
typedef struct {
    const char *calib_path;   /* calibration text (lmp_calib_load) */
    lmp_calib_params cp;      /* windows (chunks with BOS, as imatrix); default seq_len 256 (capped to
                                 the model's context), n_samples 0: `tokens` / seq_len windows */
    int tokens;               /* calibration positions when cp.n_samples is 0 (default 1,024) */
    double target_bpw;        /* probe the points nearest this; <= 0: the middle of each front */
    int probes;               /* points probed per tensor; 0 = all (default 2) */
    bool progress;
} lmp_plan_calib_params;

void lmp_plan_calib_default_params(lmp_plan_calib_params *p);
/* Calibrates the measured plan p of GGUF `in` (pp: the importance weights lmp_plan_measure
 * used, so probes quantize alike). On success every candidate's err is its predicted KLD
 * contribution and the fronts are Pareto again. */
int lmp_plan_calibrate(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp, lmp_plan *p);

/* Refinement in context (issue 21: the contributions of the tensors do not add). The
 * solved plan p is installed in the engine whole and its KLD on the calibration windows
 * measured; then each tensor is moved ALONE to its two neighbours on its front (one type
 * cheaper, one dearer) with every other tensor at its planned type, and the change of
 * the model's KLD measured. Those in-context differences replace the tensors-alone
 * predictions around the current choice (the rest of each front: the alone differences
 * scaled by the neighbour's in-context / alone ratio), the budget is solved again, the new
 * plan installed and measured, and kept only if its KLD on the VALIDATION windows (as
 * many again as the probes', the calibration text's next ones, never probed; the probe
 * windows themselves when the text is too short) is at least 0.1% lower. Up to `rounds`
 * rounds; stops when a round moves nothing or does not improve.
 * Then moves, with the in-context differences of the installed plan (measured again if a
 * kept round left them stale): one tensor a type dearer and one or two others a type
 * cheaper (or one dearer into the budget's slack, or one cheaper alone where that
 * measured a lower KLD), best predicted gain first, each measured whole and kept only if
 * the validation KLD falls by at least 0.1%; after a kept move the moved tensors'
 * neighbours are measured again in the new context.
 * Measured on gutenberg-5M (docs/results.md): the held-out KLD did not fall, so `lmpress
 * quantize` runs it only with --target-refine N. Up to `pairs` moves measured, stopping after
 * `patience` in a row not kept or when no untried move predicts a gain.
 * On return p holds the kept plan (choices, bytes) with the candidates' alone
 * predictions as before, and kld_solved / kld_refined say what was measured. */
typedef struct {
    int rounds;     /* default 2 */
    int pairs;      /* moves measured at most (default 24; 0: none) */
    int patience;   /* stop after this many moves in a row not kept (default 8; 0: never) */
    bool progress;
} lmp_plan_refine_params;

void lmp_plan_refine_default_params(lmp_plan_refine_params *r);
int lmp_plan_refine(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp,
                    const lmp_plan_refine_params *rp, lmp_plan *p, uint64_t budget);

/* Block weights in context (issue 21: the tensors' contributions compound across blocks).
 * The solved plan p is installed whole and its KLD measured on the calibration windows;
 * then each block's planned tensors are restored together to the original, every other
 * tensor at its planned type, and the fall of the model's KLD is the block's contribution
 * in context. Its ratio to the block's summed alone predictions (clamped to 0.25 .. 4)
 * weights every point of the block's tensors' fronts (tensors outside the blocks: the
 * blocks' geometric mean), the budget is solved again on the weighted predictions, and the
 * new plan installed and measured. Up to `iters` rounds (later rounds average the ratio
 * measured in the new plan's context with the earlier weight, geometrically); stops when a
 * re-solve moves nothing. Of the plans measured (the solved one included) the one with the
 * lowest KLD on the VALIDATION windows (the calibration text's next windows, as many as the
 * probes'; the probe windows when the text is too short) is kept. Cost per round: one pass
 * from each block on and one whole pass over all windows. Measured on gutenberg-5M
 * (docs/results.md): it does not lower the held-out KLD there, so `lmpress quantize` runs it
 * only with --target-context N. On return p holds the kept plan with the candidates' alone
 * predictions as before; kld_solved / kld_refined (and _val_) say what was measured,
 * ctx_block_kld the first round's block-restored KLDs. */
typedef struct {
    int iters;      /* default 2 */
    bool progress;
} lmp_plan_context_params;

void lmp_plan_context_default_params(lmp_plan_context_params *c);
int lmp_plan_context(const char *in, const lmp_plan_params *pp, const lmp_plan_calib_params *cp,
                     const lmp_plan_context_params *xp, lmp_plan *p, uint64_t budget);

/* A KLD probe session over a model the caller owns (the integer-group planner's
 * calibration, lib/quant/intplan.c): the original's log-probs on `windows` x `seq_len`
 * tokens (copied) and every block's input are kept at open; lmp_plan_probe_kld then runs
 * the model as it is NOW (the caller installs and restores weights, e.g. with
 * lmp_model_set_linear_q) from block `from_layer` on and gives the mean KLD(original ||
 * now) over all positions. Memory: windows x seq_len x (vocab + (layers + 1) x hidden)
 * floats. The model must outlive the session and keep its blocks before from_layer as
 * they were at open. */
typedef struct lmp_plan_probe lmp_plan_probe;
int lmp_plan_probe_open(lmp_model *m, const int32_t *tokens, int windows, int seq_len, lmp_plan_probe **out);
int lmp_plan_probe_kld(lmp_plan_probe *p, int from_layer, double *kld);
void lmp_plan_probe_close(lmp_plan_probe *p); /* accepts NULL */

#endif
