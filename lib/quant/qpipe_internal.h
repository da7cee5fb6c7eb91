/* lib/quant internal: the pipeline's error measures shared by its rows (qparams.c). */
#ifndef LMP_QPIPE_INTERNAL_H
#define LMP_QPIPE_INTERNAL_H

#include "pipeline.h"

/* tr(W H W^T) in double; -1 on ENOMEM. */
double lmp_qpipe_trace_w(const float *W, const double *H, int64_t rows, int64_t cols);
/* Relative error given the precomputed denominator tr(W H W^T); -1 on ENOMEM. */
double lmp_qpipe_rel_error_den(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols,
                               double den);

#endif
