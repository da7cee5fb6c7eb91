/* lib/quant internal: the pipeline's error measures shared by its rows (qparams.c). */
#ifndef LMP_QPIPE_INTERNAL_H
#define LMP_QPIPE_INTERNAL_H

#include "pipeline.h"

/* tr(W H W^T) in double; -1 on ENOMEM. */
double lmp_qpipe_trace_w(const float *W, const double *H, int64_t rows, int64_t cols);
/* Relative error given the precomputed denominator tr(W H W^T); -1 on ENOMEM. */
double lmp_qpipe_rel_error_den(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols,
                               double den);

/* One linear by GPTQ (H required) or RTN (H may be NULL: no error measure) into q (named
 * name); st's loss / err / err_rtn / seconds filled (pipeline.c). */
int lmp_qpipe_quantize_linear(const lmp_qpipe_params *p, const lmp_wmat *wm, const double *H, const char *name,
                              lmp_qtensor *q, lmp_qlinear_stats *st);

/* ---- mixture of experts (qexperts.c): the GPTQ / RTN rows' action on a sparse block ---- */
typedef struct {
    int n;                   /* experts of the current block (0: none quantized yet) */
    lmp_qtensor *q;          /* [3 n] expert e's gate, up, down at 3e + 0, 1, 2 */
    lmp_wmat *orig;          /* [3 n] their weights at the block's start */
    bool *installed;         /* [3 n] */
    int cap;
} lmp_qexperts;
/* Quantizes linear w (GATE, UP or DOWN) of every expert of sparse block b->layer, each on
 * its own Hessian (b->st.eH, the tokens routed to it), and installs the results; experts
 * no token reached are quantized by RTN and named in a warning (GPTQ). agg receives the
 * block's summary for w (token-weighted mean errors over the measured experts). */
int lmp_qexperts_linear(lmp_qexperts *x, const lmp_qpipe_params *p, lmp_qpipe_result *res, lmp_calib_block *b,
                        lmp_linear w, lmp_qlinear_stats *agg);
/* Puts the experts' original weights back and frees their tensors. */
void lmp_qexperts_restore(lmp_qexperts *x, lmp_model *m, int layer);
void lmp_qexperts_free(lmp_qexperts *x);

#endif
