/*
 * lmp_qtensor helpers for the quantizers and formats: g_idx normalization and logical
 * comparison. Allocation, dequantization and sizes of the object are in
 * lib/core/qtensor.c (the engine needs them too). Not a quantizer (rtn.c, gptq.c) and
 * not a file format (formats/).
 */
#include "intquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lmp_qtensor_gidx_normalize(lmp_qtensor *q)
{
    lmp_intgroup *ig = &q->ig;
    if (q->scheme != LMP_QS_INTGROUP || !ig->g_idx)
        return LMP_OK;
    bool trivial = true;
    for (int64_t c = 0; c < q->cols; c++) {
        int32_t g = ig->g_idx[c];
        if (g < 0 || g >= ig->n_groups)
            return lmp_err(LMP_EFORMAT, "g_idx[%lld] = %d outside [0, %d)", (long long)c,
                           (int)g, ig->n_groups);
        if (g != (int32_t)(c / ig->gs))
            trivial = false;
    }
    if (trivial) {
        free(ig->g_idx);
        ig->g_idx = NULL;
    }
    return LMP_OK;
}

bool lmp_qtensor_intgroup_equal(const lmp_qtensor *a, const lmp_qtensor *b, char *why,
                                size_t why_len)
{
    char dummy[8];
    if (!why) {
        why = dummy;
        why_len = sizeof dummy;
    }
    const lmp_intgroup *x = &a->ig, *y = &b->ig;
    if (a->scheme != LMP_QS_INTGROUP || b->scheme != LMP_QS_INTGROUP) {
        snprintf(why, why_len, "not both intgroup");
        return false;
    }
    if (a->rows != b->rows || a->cols != b->cols || x->bits != y->bits || x->gs != y->gs ||
        x->n_groups != y->n_groups || x->sym != y->sym) {
        snprintf(why, why_len, "header: [%lld,%lld] b%d gs%d ng%d sym%d vs [%lld,%lld] b%d gs%d ng%d sym%d",
                 (long long)a->rows, (long long)a->cols, x->bits, x->gs, x->n_groups, x->sym,
                 (long long)b->rows, (long long)b->cols, y->bits, y->gs, y->n_groups, y->sym);
        return false;
    }
    for (int64_t c = 0; c < a->cols; c++)
        if (lmp_ig_group(x, c) != lmp_ig_group(y, c)) {
            snprintf(why, why_len, "group of column %lld: %d vs %d", (long long)c,
                     lmp_ig_group(x, c), lmp_ig_group(y, c));
            return false;
        }
    for (int64_t r = 0; r < a->rows; r++) {
        for (int g = 0; g < x->n_groups; g++) {
            size_t k = (size_t)r * x->n_groups + g;
            if (memcmp(&x->scales[k], &y->scales[k], sizeof(float)) != 0 ||
                x->zeros[k] != y->zeros[k]) {
                snprintf(why, why_len, "row %lld group %d: scale %g zero %d vs %g %d",
                         (long long)r, g, x->scales[k], x->zeros[k], y->scales[k], y->zeros[k]);
                return false;
            }
        }
        for (int64_t c = 0; c < a->cols; c++)
            if (lmp_ig_code(x, r, c) != lmp_ig_code(y, r, c)) {
                snprintf(why, why_len, "code (%lld, %lld): %u vs %u", (long long)r,
                         (long long)c, lmp_ig_code(x, r, c), lmp_ig_code(y, r, c));
                return false;
            }
    }
    return true;
}
