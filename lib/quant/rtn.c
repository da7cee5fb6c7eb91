/*
 * Round-to-nearest integer group quantization into the canonical intgroup object, and the
 * scale/zero rule it shares with GPTQ (IST-DASLab/gptq quant.py, Quantizer.find_params
 * without the MSE grid search). Not GPTQ itself (gptq.c).
 */
#include "intquant.h"

#include <math.h>
#include <string.h>

void lmp_intq_find_params(float xmin, float xmax, int bits, bool sym, bool scale_f16,
                          float *scale, int *zero)
{
    int maxq = (1 << bits) - 1;
    xmin = fminf(xmin, 0.0f);
    xmax = fmaxf(xmax, 0.0f);
    if (sym) {
        xmax = fmaxf(fabsf(xmin), xmax);
        if (xmin < 0.0f)
            xmin = -xmax;
    }
    if (xmin == 0.0f && xmax == 0.0f) {
        xmin = -1.0f;
        xmax = 1.0f;
    }
    float s = (xmax - xmin) / (float)maxq;
    if (scale_f16) {
        if (!(s >= 0x1p-24f))
            s = 0x1p-24f; /* smallest f16 subnormal; also catches NaN */
        if (s > 65504.0f)
            s = 65504.0f;
        s = lmp_f16_to_f32(lmp_f32_to_f16(s));
    }
    *scale = s;
    if (sym) {
        *zero = (maxq + 1) / 2;
    } else {
        float z = rintf(-xmin / s);
        *zero = z < 0.0f ? 0 : z > (float)maxq ? maxq : (int)z;
    }
}

void lmp_rtn_default_params(lmp_rtn_params *p)
{
    p->bits = 4;
    p->group_size = 128;
    p->sym = true;
    p->scale_f16 = true;
}

int lmp_quant_rtn(const float *W, int64_t rows, int64_t cols, const lmp_rtn_params *p,
                  lmp_qtensor *out)
{
    int rc = lmp_qtensor_intgroup_init(out, rows, cols, p->bits, p->group_size, p->sym, false);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    int maxq = (1 << p->bits) - 1;
    int bad = 0;
    #pragma omp parallel for schedule(static) reduction(|:bad)
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        for (int g = 0; g < ig->n_groups; g++) {
            int64_t c0 = (int64_t)g * ig->gs, c1 = c0 + ig->gs < cols ? c0 + ig->gs : cols;
            float mn = w[c0], mx = w[c0];
            for (int64_t c = c0; c < c1; c++) {
                if (!isfinite(w[c]))
                    bad = 1;
                mn = fminf(mn, w[c]);
                mx = fmaxf(mx, w[c]);
            }
            float s;
            int z;
            lmp_intq_find_params(mn, mx, p->bits, p->sym, p->scale_f16, &s, &z);
            ig->scales[r * ig->n_groups + g] = s;
            ig->zeros[r * ig->n_groups + g] = (uint8_t)z;
            for (int64_t c = c0; c < c1; c++)
                lmp_ig_set_code(ig, r, c, (unsigned)lmp_intq_code(w[c], s, z, maxq));
        }
    }
    if (bad) {
        lmp_qtensor_free(out);
        return lmp_err(LMP_ERANGE, "rtn: weight matrix [%lld, %lld] holds NaN or Inf",
                       (long long)rows, (long long)cols);
    }
    return LMP_OK;
}
