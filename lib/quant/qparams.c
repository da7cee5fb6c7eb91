/*
 * The quantization pipeline's parameters, checks and error measures, shared by its rows
 * of hooks (GPTQ and RTN in pipeline.c, AWQ in awq.c) and the entry points.
 */
#include "qpipe_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void lmp_qpipe_default_params(lmp_qpipe_params *p)
{
    memset(p, 0, sizeof *p);
    p->method = LMP_QMETHOD_GPTQ;
    p->bits = 4;
    p->group_size = 128;
    p->sym = true;
    p->act_order = true;
    p->static_groups = false;
    p->damp = 0.01f;
    p->blocksize = 128;
    p->true_sequential = true;
    p->compare_rtn = true;
    p->progress = true;
    p->awq_grid = 20;
    p->awq_duo_scaling = true;
    p->awq_clip = true;
    p->awq_clip_tokens = 512;
    p->awq_search_tokens = -1;
}

void lmp_qpipe_result_free(lmp_qpipe_result *r)
{
    if (!r)
        return;
    free(r->lin);
    free(r->layer_seconds);
    memset(r, 0, sizeof *r);
}

int lmp_qpipe_lin_bits(const lmp_qpipe_params *p, int layer, lmp_linear which)
{
    const lmp_qsetting *s = p->per_linear ? &p->per_linear[layer * LMP_LIN_COUNT + which] : NULL;
    return s && s->bits ? s->bits : p->bits;
}

int lmp_qpipe_lin_group(const lmp_qpipe_params *p, int layer, lmp_linear which)
{
    const lmp_qsetting *s = p->per_linear ? &p->per_linear[layer * LMP_LIN_COUNT + which] : NULL;
    return s && s->bits ? s->group_size : p->group_size;
}

int lmp_qpipe_check(const lmp_model *m, const lmp_qpipe_params *p)
{
    if (m && lmp_model_is_moe(m) && p->method == LMP_QMETHOD_AWQ &&
        strcmp(lmp_model_config(m)->model_type, "granitemoe") == 0)
        return lmp_err(LMP_EUNSUPPORTED, "%s: AWQ of granitemoe is not supported (its experts are fused 3-D "
                       "parameters no integer-group folder holds; GGUF types: lmpress quantize --type)",
                       lmp_model_ckpt(m)->path);
    if (p->method != LMP_QMETHOD_GPTQ && p->method != LMP_QMETHOD_RTN && p->method != LMP_QMETHOD_AWQ)
        return lmp_err(LMP_EINVAL, "quantize: unknown method %d", (int)p->method);
    if (p->method == LMP_QMETHOD_AWQ && p->act_order)
        return lmp_err(LMP_EINVAL, "quantize: AWQ has no act-order (its groups follow the column order; "
                                   "set act_order false)");
    if (p->method == LMP_QMETHOD_AWQ && (p->awq_grid < 1 || p->awq_grid > 1000 || p->awq_clip_tokens < 1))
        return lmp_err(LMP_EINVAL, "quantize: AWQ grid %d / clip tokens %d", p->awq_grid, p->awq_clip_tokens);
    if (p->bits < 2 || p->bits > 8)
        return lmp_err(LMP_EINVAL, "quantize: --bits %d: must be 2..8", p->bits);
    if (p->group_size == 0 || p->group_size < -1 || p->group_size > 1 << 20)
        return lmp_err(LMP_EINVAL, "quantize: --group-size %d: must be positive, or -1 (one group per row)",
                       p->group_size);
    if (!(p->damp > 0.0f) || p->damp >= 1.0f)
        return lmp_err(LMP_EINVAL, "quantize: --damp %g: must be in (0, 1)", (double)p->damp);
    if (p->blocksize < 1)
        return lmp_err(LMP_EINVAL, "quantize: GPTQ block size %d", p->blocksize);
    if (!m) /* the preferences only, before the model is read */
        return LMP_OK;
    const lmp_config *c = lmp_model_config(m);
    for (int l = 0; l < c->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
            if (!wm) { /* a sparse block's gate/up/down: its experts (expert 0 has every expert's shape) */
                if (p->keep && p->keep[l * LMP_LIN_COUNT + w])
                    return lmp_err(LMP_EUNSUPPORTED, "--keep on the experts of a mixture of experts (%s) is not "
                                   "supported: every expert is quantized", name);
                wm = lmp_model_expert_linear(m, l, 0, (lmp_linear)w);
                lmp_expert_hf_prefix(c, l, 0, (lmp_linear)w, name, sizeof name);
                if (!wm)
                    return lmp_err(LMP_EINVAL, "%s: block %d has no %s", lmp_model_ckpt(m)->path, l,
                                   lmp_linear_name((lmp_linear)w));
            }
            if (!lmp_dtype_info(wm->dtype)->to_f32)
                return lmp_err(LMP_EUNSUPPORTED, "%s.weight: dtype %s cannot be converted to f32", name,
                               lmp_dtype_info(wm->dtype)->name);
            const int lb = lmp_qpipe_lin_bits(p, l, (lmp_linear)w), lg = lmp_qpipe_lin_group(p, l, (lmp_linear)w);
            if (lb < 2 || lb > 8 || lg == 0 || lg < -1)
                return lmp_err(LMP_EINVAL, "%s: planned %d bits, group %d", name, lb, lg);
            if (lg > 0 && wm->cols % lg)
                return lmp_err(LMP_EINVAL,
                               "%s.weight: in_features %lld is not a multiple of group size %d (GPTQ and "
                               "compressed-tensors kernels need whole groups; choose a group size that divides "
                               "every layer's in_features, or -1)",
                               name, (long long)wm->cols, lg);
        }
    return LMP_OK;
}

uint64_t lmp_qpipe_act_bytes(const lmp_model *m, const lmp_calib_data *cal)
{
    return lmp_calib_act_bytes(m, cal);
}

/* tr(A H A^T) for A f32 [rows][cols], in double (gptq_linalg.c: thread-count independent,
 * one triangular product per 64 rows; a and ah are not needed any more). */
static double quad_trace(const float *A, const double *H, int64_t rows, int64_t cols, double *a, double *ah)
{
    (void)a;
    (void)ah;
    return lmp_gptq_quad_trace(A, H, rows, cols);
}

/* Relative error given the precomputed denominator tr(W H W^T). Returns -1 on ENOMEM. */
double lmp_qpipe_rel_error_den(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols,
                            double den)
{
    int64_t k = rows < 64 ? rows : 64;
    double *a = malloc((size_t)(2 * k * cols) * sizeof(double));
    float *D = malloc((size_t)(rows * cols) * sizeof(float));
    double e = -1;
    if (a && D) {
        for (int64_t i = 0; i < rows * cols; i++)
            D[i] = W[i] - Q[i];
        double num = quad_trace(D, H, rows, cols, a, a + k * cols);
        e = den > 0 ? sqrt(fmax(num, 0.0) / den) : 0.0;
    }
    free(a);
    free(D);
    return e;
}

double lmp_qpipe_trace_w(const float *W, const double *H, int64_t rows, int64_t cols)
{
    int64_t k = rows < 64 ? rows : 64;
    double *a = malloc((size_t)(2 * k * cols) * sizeof(double));
    if (!a)
        return -1;
    double t = quad_trace(W, H, rows, cols, a, a + k * cols);
    free(a);
    return t;
}

double lmp_qpipe_rel_error(const float *W, const float *Q, const double *H, int64_t rows, int64_t cols)
{
    double den = lmp_qpipe_trace_w(W, H, rows, cols);
    return den < 0 ? -1 : lmp_qpipe_rel_error_den(W, Q, H, rows, cols, den);
}

int lmp_qpipe_install(lmp_model *m, int layer, lmp_linear which, const lmp_qtensor *q, float **buf)
{
    *buf = NULL;
    float *d = malloc((size_t)(q->rows * q->cols) * sizeof(float));
    if (!d)
        return lmp_err(LMP_ENOMEM, "out of memory dequantizing %s", q->name);
    lmp_qtensor_dequant(q, d);
    lmp_wmat w = {.dtype = LMP_DT_F32, .rows = q->rows, .cols = q->cols, .data = d,
                  .row_bytes = (size_t)q->cols * sizeof(float)};
    int rc = lmp_model_set_linear(m, layer, which, &w);
    if (rc) {
        free(d);
        return rc;
    }
    *buf = d;
    return LMP_OK;
}

