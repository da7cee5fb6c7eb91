/*
 * lmp_qtensor: allocation, dequantization, sizes and comparison of the canonical
 * quantized-weight object (layout in intquant.h). Not a quantizer (rtn.c, gptq.c) and
 * not a file format (formats/).
 */
#include "intquant.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int lmp_qtensor_intgroup_init(lmp_qtensor *q, int64_t rows, int64_t cols, int bits,
                              int group_size, bool sym, bool with_gidx)
{
    memset(q, 0, sizeof *q);
    if (bits < 2 || bits > 8)
        return lmp_err(LMP_EINVAL, "intgroup: bits %d not in 2..8", bits);
    if (group_size == 0 || group_size < -1)
        return lmp_err(LMP_EINVAL, "intgroup: group_size %d (expected > 0 or -1)", group_size);
    if (rows < 1 || cols < 1 || cols > INT32_MAX)
        return lmp_err(LMP_EINVAL, "intgroup: bad shape [%lld, %lld]", (long long)rows,
                       (long long)cols);
    lmp_intgroup *ig = &q->ig;
    q->scheme = LMP_QS_INTGROUP;
    q->rows = rows;
    q->cols = cols;
    q->dtype = LMP_DT_U8;
    ig->bits = bits;
    ig->group_size = group_size;
    ig->gs = group_size == -1 ? (int)cols : group_size;
    ig->n_groups = (int)((cols + ig->gs - 1) / ig->gs);
    ig->sym = sym;
    ig->row_bytes = (cols * bits + 63) / 64 * 8;
    size_t ng = (size_t)rows * ig->n_groups;
    ig->codes = calloc((size_t)rows, (size_t)ig->row_bytes);
    ig->scales = calloc(ng, sizeof(float));
    ig->zeros = malloc(ng);
    ig->g_idx = with_gidx ? calloc((size_t)cols, sizeof(int32_t)) : NULL;
    if (!ig->codes || !ig->scales || !ig->zeros || (with_gidx && !ig->g_idx)) {
        lmp_qtensor_free(q);
        return lmp_err(LMP_ENOMEM, "intgroup: out of memory for [%lld, %lld]",
                       (long long)rows, (long long)cols);
    }
    memset(ig->zeros, sym ? 1 << (bits - 1) : 0, ng);
    return LMP_OK;
}

int lmp_qtensor_view(lmp_qtensor *q, lmp_dtype dt, int64_t rows, int64_t cols,
                     const void *data)
{
    memset(q, 0, sizeof *q);
    const lmp_dtype_traits *tr = lmp_dtype_info(dt);
    if (!tr || !tr->to_f32)
        return lmp_err(LMP_EUNSUPPORTED, "qtensor view: dtype %d has no f32 conversion", dt);
    size_t rb = lmp_dtype_row_bytes(dt, cols);
    if (rows < 1 || rb == 0)
        return lmp_err(LMP_EINVAL, "qtensor view: %s row of %lld elements", tr->name,
                       (long long)cols);
    q->scheme = tr->is_quant ? LMP_QS_BLOCK : LMP_QS_DENSE;
    q->rows = rows;
    q->cols = cols;
    q->dtype = dt;
    q->data = (void *)data;
    q->row_bytes = rb;
    q->owned = false;
    return LMP_OK;
}

void lmp_qtensor_free(lmp_qtensor *q)
{
    if (!q)
        return;
    free(q->ig.codes);
    free(q->ig.scales);
    free(q->ig.zeros);
    free(q->ig.g_idx);
    if (q->owned)
        free(q->data);
    memset(q, 0, sizeof *q);
}

/* Unpacks row r's codes into u8[cols]. The common widths get straight loops. */
static void unpack_row(const lmp_intgroup *ig, int64_t r, int64_t cols, uint8_t *dst)
{
    const uint8_t *row = ig->codes + r * ig->row_bytes;
    switch (ig->bits) {
    case 8:
        memcpy(dst, row, (size_t)cols);
        return;
    case 4:
        for (int64_t c = 0; c + 1 < cols; c += 2) {
            dst[c] = row[c >> 1] & 15;
            dst[c + 1] = row[c >> 1] >> 4;
        }
        if (cols & 1)
            dst[cols - 1] = row[cols >> 1] & 15;
        return;
    case 2:
        for (int64_t c = 0; c < cols; c++)
            dst[c] = (row[c >> 2] >> (2 * (c & 3))) & 3;
        return;
    default:
        for (int64_t c = 0; c < cols; c++)
            dst[c] = (uint8_t)lmp_ig_code(ig, r, c);
    }
}

void lmp_qtensor_dequant_row(const lmp_qtensor *q, int64_t r, float *out)
{
    if (q->scheme != LMP_QS_INTGROUP) {
        lmp_dtype_info(q->dtype)->to_f32((const uint8_t *)q->data + r * q->row_bytes, out,
                                         q->cols);
        return;
    }
    const lmp_intgroup *ig = &q->ig;
    const float *s = ig->scales + r * ig->n_groups;
    const uint8_t *z = ig->zeros + r * ig->n_groups;
    uint8_t buf[4096];
    for (int64_t c0 = 0; c0 < q->cols; c0 += (int64_t)sizeof buf) {
        int64_t n = q->cols - c0 < (int64_t)sizeof buf ? q->cols - c0 : (int64_t)sizeof buf;
        /* unpack a chunk: chunk starts are multiples of 4096 codes, hence of 8 bits *
         * whole bytes, so the chunk is itself a bit stream starting at byte c0*bits/8 */
        lmp_intgroup sub = *ig;
        sub.codes = ig->codes + r * ig->row_bytes + c0 * ig->bits / 8;
        unpack_row(&sub, 0, n, buf);
        if (ig->g_idx) {
            for (int64_t i = 0; i < n; i++) {
                int g = ig->g_idx[c0 + i];
                out[c0 + i] = s[g] * (float)((int)buf[i] - (int)z[g]);
            }
        } else {
            for (int64_t i = 0; i < n;) {
                int64_t c = c0 + i;
                int g = (int)(c / ig->gs);
                int64_t end = (int64_t)(g + 1) * ig->gs - c0;
                if (end > n)
                    end = n;
                float sg = s[g];
                int zg = z[g];
                for (; i < end; i++)
                    out[c0 + i] = sg * (float)((int)buf[i] - zg);
            }
        }
    }
}

void lmp_qtensor_dequant(const lmp_qtensor *q, float *out)
{
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < q->rows; r++)
        lmp_qtensor_dequant_row(q, r, out + r * q->cols);
}

size_t lmp_qtensor_nbytes(const lmp_qtensor *q)
{
    if (q->scheme != LMP_QS_INTGROUP)
        return (size_t)q->rows * q->row_bytes;
    const lmp_intgroup *ig = &q->ig;
    size_t ng = (size_t)q->rows * ig->n_groups;
    return (size_t)q->rows * ig->row_bytes + ng * (sizeof(float) + 1) +
           (ig->g_idx ? (size_t)q->cols * sizeof(int32_t) : 0);
}

double lmp_qtensor_bpw(const lmp_qtensor *q)
{
    return 8.0 * (double)lmp_qtensor_nbytes(q) / ((double)q->rows * (double)q->cols);
}

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
