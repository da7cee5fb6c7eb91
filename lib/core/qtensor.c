/*
 * lmp_qtensor: allocation, copying, validation, dequantization and sizes of the
 * canonical quantized-weight object (layout in qtensor.h). Not a quantizer (lib/quant)
 * and not a file format (formats/); the engine's fused kernels are in
 * lib/infer/kernels_intgroup.c and reproduce the values computed here.
 */
#include "qtensor.h"

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

int lmp_qtensor_intgroup_copy(lmp_qtensor *dst, const lmp_qtensor *src)
{
    const lmp_intgroup *ig = &src->ig;
    if (src->scheme != LMP_QS_INTGROUP) {
        memset(dst, 0, sizeof *dst);
        return lmp_err(LMP_EINVAL, "qtensor copy: %s is not intgroup", src->name);
    }
    int rc = lmp_qtensor_intgroup_init(dst, src->rows, src->cols, ig->bits, ig->group_size,
                                       ig->sym, ig->g_idx != NULL);
    if (rc)
        return rc;
    memcpy(dst->name, src->name, sizeof dst->name);
    memcpy(dst->ig.codes, ig->codes, (size_t)(src->rows * ig->row_bytes));
    memcpy(dst->ig.scales, ig->scales, (size_t)(src->rows * ig->n_groups) * sizeof(float));
    memcpy(dst->ig.zeros, ig->zeros, (size_t)(src->rows * ig->n_groups));
    if (ig->g_idx)
        memcpy(dst->ig.g_idx, ig->g_idx, (size_t)src->cols * sizeof(int32_t));
    return LMP_OK;
}

int lmp_qtensor_intgroup_check(const lmp_qtensor *q, const char *what)
{
    const lmp_intgroup *ig = &q->ig;
    if (!what || !*what)
        what = q->name[0] ? q->name : "intgroup tensor";
    if (q->scheme != LMP_QS_INTGROUP)
        return lmp_err(LMP_EINVAL, "%s: not an intgroup tensor (scheme %d)", what, (int)q->scheme);
    if (ig->bits < 2 || ig->bits > 8 || q->rows < 1 || q->cols < 1 || q->cols > INT32_MAX)
        return lmp_err(LMP_EINVAL, "%s: %d bits, shape [%lld, %lld]", what, ig->bits,
                       (long long)q->rows, (long long)q->cols);
    int gs = ig->group_size == -1 ? (int)q->cols : ig->group_size;
    if (ig->group_size == 0 || ig->group_size < -1 || ig->gs != gs ||
        ig->n_groups != (int)((q->cols + gs - 1) / gs) ||
        ig->row_bytes != (q->cols * ig->bits + 63) / 64 * 8)
        return lmp_err(LMP_EINVAL, "%s: inconsistent groups (group_size %d, gs %d, %d groups, %lld row bytes) "
                                   "for %lld columns of %d bits",
                       what, ig->group_size, ig->gs, ig->n_groups, (long long)ig->row_bytes,
                       (long long)q->cols, ig->bits);
    if (!ig->codes || !ig->scales || !ig->zeros)
        return lmp_err(LMP_EINVAL, "%s: missing codes, scales or zeros", what);
    for (int64_t c = 0; ig->g_idx && c < q->cols; c++)
        if (ig->g_idx[c] < 0 || ig->g_idx[c] >= ig->n_groups)
            return lmp_err(LMP_EINVAL, "%s: g_idx[%lld] = %d outside [0, %d)", what, (long long)c,
                           (int)ig->g_idx[c], ig->n_groups);
    size_t ng = (size_t)q->rows * ig->n_groups;
    for (size_t i = 0; i < ng; i++)
        if (ig->zeros[i] > (1u << ig->bits))
            return lmp_err(LMP_EINVAL, "%s: zero point %d above 2^%d", what, ig->zeros[i], ig->bits);
    return LMP_OK;
}

/* Unpacks `cols` codes of the bit stream `row` (starting at its bit 0) into u8. The common
 * widths get straight loops. */
static void unpack_codes(const uint8_t *row, int bits, int64_t cols, uint8_t *dst)
{
    switch (bits) {
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
    default: {
        const unsigned mask = (1u << bits) - 1;
        for (int64_t c = 0; c < cols; c++) {
            int64_t bit = c * bits;
            unsigned v = row[bit >> 3];
            if ((bit & 7) + bits > 8)
                v |= (unsigned)row[(bit >> 3) + 1] << 8;
            dst[c] = (uint8_t)((v >> (bit & 7)) & mask);
        }
    }
    }
}

void lmp_qtensor_dequant_range(const lmp_qtensor *q, int64_t r, int64_t c0, int64_t n,
                               float *out)
{
    if (q->scheme != LMP_QS_INTGROUP) {
        /* dense / block rows: whole row only through the traits (c0 == 0, n == cols) */
        lmp_dtype_info(q->dtype)->to_f32((const uint8_t *)q->data + r * q->row_bytes, out, n);
        return;
    }
    const lmp_intgroup *ig = &q->ig;
    const float *s = ig->scales + r * ig->n_groups;
    const uint8_t *z = ig->zeros + r * ig->n_groups;
    uint8_t buf[4096];
    for (int64_t off = 0; off < n; off += (int64_t)sizeof buf) {
        const int64_t cs = c0 + off; /* chunk start: cs * bits is a whole number of bytes */
        const int64_t len = n - off < (int64_t)sizeof buf ? n - off : (int64_t)sizeof buf;
        unpack_codes(ig->codes + r * ig->row_bytes + cs * ig->bits / 8, ig->bits, len, buf);
        float *o = out + off;
        if (ig->g_idx) {
            for (int64_t i = 0; i < len; i++) {
                int g = ig->g_idx[cs + i];
                o[i] = s[g] * (float)((int)buf[i] - (int)z[g]);
            }
            continue;
        }
        for (int64_t i = 0; i < len;) {
            int g = (int)((cs + i) / ig->gs);
            int64_t end = (int64_t)(g + 1) * ig->gs - cs;
            if (end > len)
                end = len;
            const float sg = s[g];
            const int zg = z[g];
            for (; i < end; i++)
                o[i] = sg * (float)((int)buf[i] - zg);
        }
    }
}

void lmp_qtensor_dequant_row(const lmp_qtensor *q, int64_t r, float *out)
{
    lmp_qtensor_dequant_range(q, r, 0, q->cols, out);
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
