/*
 * GGUF k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K): dequantizers, reference quantizers and
 * importance-weighted quantizers, plus the weighted variants of the legacy 32-value types
 * (Q4_0, Q4_1, Q5_0, Q5_1; their unweighted quantizers live in lib/core/dtype.c).
 *
 * The scale searches follow ggml's ggml-quants.c (facts of the algorithm, re-derived
 * here): each 16- or 32-value sub-block gets a scale (and for Q2_K/Q4_K/Q5_K a min) from a
 * small grid search that minimizes a weighted squared (or absolute) error; the sub-block
 * scales are then themselves quantized to 4/6/8 bits against one f16 super-block scale,
 * and the values are re-rounded against the quantized scales. Rounding is
 * round-half-to-even (ggml's nearest_int) and every floating-point expression keeps
 * ggml's evaluation order, so the reference quantizers give ggml's bytes.
 *
 * Not here: SIMD dot products (lib/infer/kernels*), the IQ types, Q8_K.
 */
#include "quant.h"
#include "lowbit.h"
#include "../core/blocks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define GROUP_EPS 1e-15f /* ggml's GROUP_MAX_EPS: a sub-block below this is all zero */

static inline float fp16(uint16_t h) { return lmp_f16_to_f32(h); }
static inline uint16_t tofp16(float f) { return lmp_f32_to_f16(f); }
static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Round half to even, as ggml's nearest_int (magic-number addition) does for |x| < 2^22
 * (ggml asserts that range; here larger values, and NaN, are clamped to it first: NaN ->
 * -4194303, as fminf(fmaxf(NaN, lo), hi) gives). The same magic-number addition as ggml's:
 * inline, where rintf is a libm call on baseline x86-64. */
static inline int nint(float x)
{
    float c = x >= -4194303.f ? x : -4194303.f; /* NaN -> lo */
    c = c <= 4194303.f ? c : 4194303.f;
    float v = c + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

/* ---------------------------------------------------------------- scale searches */

/* Symmetric search: codes L[i] in [0, 2*nmax) (stored with offset nmax) for x ~ s*(L-nmax).
 * The first guess maps the signed value of largest magnitude to -nmax; with weights
 * (qw, or x^2 when qw is NULL) the least-squares scale is refined over 18 nearby
 * inverse scales. Returns the scale (ggml make_qx_quants, rmse_type 1). */
static float search_sym(int n, int nmax, const float *x, int8_t *L, const float *qw)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)(l + nmax);
        float w = qw ? qw[i] : x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -(nmax + 0.1f * is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
            float w = qw ? qw[i] : x[i] * x[i];
            sumlx += w * x[i] * l;
            suml2 += w * l * l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + clampi(nint(iscale * x[i]), -nmax, nmax - 1));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's symmetric search (ggml make_q3_quants with do_rmse): start from the
 * largest-magnitude mapping, then up to 5 passes of coordinate descent on each code with
 * weights x^2. L gets codes in [0, 2*nmax). */
static float search_q3(int n, int nmax, const float *x, int8_t *L)
{
    float amax = 0, max = 0;
    for (int i = 0; i < n; i++)
        if (fabsf(x[i]) > amax) {
            amax = fabsf(x[i]);
            max = x[i];
        }
    if (amax < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = clampi(nint(iscale * x[i]), -nmax, nmax - 1);
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * l;
        suml2 += w * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * L[i] * L[i];
                int nl = clampi(nint(x[i] * sl2 / slx), -nmax, nmax - 1);
                if (nl != L[i]) {
                    slx += w * x[i] * nl;
                    sl2 += w * nl * nl;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < n; i++)
        L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric search: x ~ scale*L - m with L in [0, nmax], m >= 0 returned in *mn.
 * Tries nstep+1 inverse scales (rmin + rdelta*k + nmax)/(max - min) and keeps the
 * weighted least-squares (scale, min) of lowest error; `mad` uses absolute instead of
 * squared error. w NULL means w = x^2. (ggml make_qkx2_quants, and make_qkx3_quants when
 * w may be NULL; both write the same arithmetic.) */
static float search_asym(int n, int nmax, const float *x, const float *w, uint8_t *L, float *mn, uint8_t *Laux,
                         float rmin, float rdelta, int nstep, bool mad)
{
#define W(i) (w ? w[i] : x[i] * x[i])
    float min = x[0], max = x[0];
    float sum_w = W(0), sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min)
            min = x[i];
        if (x[i] > max)
            max = x[i];
        float wi = W(i);
        sum_w += wi;
        sum_x += wi * x[i];
    }
    if (min > 0)
        min = 0;
    if (max <= min) {
        memset(L, 0, (size_t)n);
        *mn = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)clampi(nint(iscale * (x[i] - min)), 0, nmax);
        float diff = scale * L[i] + min - x[i];
        diff = mad ? fabsf(diff) : diff * diff;
        best += W(i) * diff;
    }
    if (nstep < 1) {
        *mn = -min;
        return scale;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * is + nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = clampi(nint(iscale * (x[i] - min)), 0, nmax);
            Laux[i] = (uint8_t)l;
            float wi = W(i);
            sum_l += wi * l;
            sum_l2 += wi * l * l;
            sum_xl += wi * l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float err = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * Laux[i] + this_min - x[i];
                diff = mad ? fabsf(diff) : diff * diff;
                err += W(i) * diff;
            }
            if (err < best) {
                memcpy(L, Laux, (size_t)n);
                best = err;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *mn = -min;
    return scale;
#undef W
}

/* Quantizes n non-negative values (sub-block scales or mins) to [0, nmax] against one
 * scale, minimizing the qw-weighted error: grid over 8 nearby scales, then coordinate
 * descent (ggml make_qp_quants). */
static float search_pos(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    float max = 0;
    for (int i = 0; i < n; i++)
        max = fmaxf(max, x[i]);
    if (max < GROUP_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)nint(iscale * x[i]);
    float scale = 1 / iscale;
    float best = 0;
    for (int i = 0; i < n; i++) {
        float diff = x[i] - scale * L[i];
        best += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        float iscale_is = (0.1f * is + nmax) / max;
        float scale_is = 1 / iscale_is;
        float mse = 0;
        for (int i = 0; i < n; i++) {
            int l = imin(nmax, nint(iscale_is * x[i]));
            float diff = x[i] - scale_is * l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best) {
            best = mse;
            iscale = iscale_is;
        }
    }
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imin(nmax, nint(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * l;
        suml2 += qw[i] * l * l;
    }
    for (int pass = 0; pass < 5; pass++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            float slx = sumlx - qw[i] * x[i] * L[i];
            float sl2 = suml2 - qw[i] * L[i] * L[i];
            if (slx > 0 && sl2 > 0) {
                int nl = imin(nmax, nint(x[i] * sl2 / slx));
                if (nl != L[i]) {
                    slx += qw[i] * x[i] * nl;
                    sl2 += qw[i] * nl * nl;
                    if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (uint8_t)nl;
                        sumlx = slx;
                        suml2 = sl2;
                        changed++;
                    }
                }
            }
        }
        if (!changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

float lmp_q_make_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw)
{
    return search_pos(n, nmax, x, L, qw);
}

/* ---------------------------------------------------------------- batched searches
 *
 * The searches of a super-block's sub-blocks are independent, so eight of them run at
 * once in the eight lanes of an AVX2 vector: lane j does sub-block j's scalar arithmetic,
 * operation for operation (the same products, sums in the same order, IEEE division and
 * square root, round-half-even, no fused multiply-add), so the codes and scales are
 * bit-identical to the scalar functions above. The scalar functions stay as the
 * reference (machines without AVX2, LMP_QUANT_SCALAR=1, lmp_quant_set_simd(false)) and
 * the unit tests compare both paths. */

static int g_simd = -1; /* 1: AVX2 batches, 0: scalar, -1: not decided yet (kq_simd) */
static inline int kq_simd(void);

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define KQ_X86 1
#define KQ_AVX2 __attribute__((target("avx2")))

/* nint (clamped to +-4194303, NaN -> -4194303, round half to even) as a float */
KQ_AVX2 static inline __m256 vnint(__m256 v)
{
    v = _mm256_max_ps(v, _mm256_set1_ps(-4194303.f)); /* NaN in the first operand -> second */
    v = _mm256_min_ps(v, _mm256_set1_ps(4194303.f));
    return _mm256_round_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}

/* clampi(v, lo, hi) on integral floats */
KQ_AVX2 static inline __m256 vclamp(__m256 v, __m256 lo, __m256 hi)
{
    return _mm256_min_ps(_mm256_max_ps(v, lo), hi);
}

/* Stores lane j of the integral floats V[0..n) as L[j*n + i] + off. */
KQ_AVX2 static void store_codes_x8(const __m256 *V, int n, int off, uint8_t *L)
{
    int32_t t[8];
    for (int i = 0; i < n; i++) {
        _mm256_storeu_si256((__m256i *)t, _mm256_cvtps_epi32(V[i]));
        for (int j = 0; j < 8; j++)
            L[j * n + i] = (uint8_t)(t[j] + off);
    }
}

/* Eight search_asym calls (sub-block j: x + j*n, w + j*n, L + j*n; n <= 32, w given). */
KQ_AVX2 static void search_asym_x8(int n, int nmax, const float *x, const float *w, uint8_t *L, float *scale_out,
                                   float *mn_out, float rmin, float rdelta, int nstep, bool mad)
{
    __m256 X[32], Wt[32], Lb[32], La[32];
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n));
    for (int i = 0; i < n; i++) {
        X[i] = _mm256_i32gather_ps(x + i, idx, 4);
        Wt[i] = _mm256_i32gather_ps(w + i, idx, 4);
    }
    const __m256 zero = _mm256_setzero_ps(), vnmax = _mm256_set1_ps((float)nmax);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 mn = X[0], mx = X[0], sw = Wt[0], sx = _mm256_mul_ps(Wt[0], X[0]);
    for (int i = 1; i < n; i++) {
        mn = _mm256_min_ps(X[i], mn); /* x < min ? x : min */
        mx = _mm256_max_ps(X[i], mx); /* x > max ? x : max */
        sw = _mm256_add_ps(sw, Wt[i]);
        sx = _mm256_add_ps(sx, _mm256_mul_ps(Wt[i], X[i]));
    }
    mn = _mm256_blendv_ps(mn, zero, _mm256_cmp_ps(mn, zero, _CMP_GT_OQ));
    const __m256 mn0 = mn, deg = _mm256_cmp_ps(mx, mn, _CMP_LE_OQ);
    __m256 iscale = _mm256_div_ps(vnmax, _mm256_sub_ps(mx, mn));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.f), iscale), best = zero;
    for (int i = 0; i < n; i++) {
        __m256 l = vclamp(vnint(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn))), zero, vnmax);
        Lb[i] = l;
        __m256 d = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, l), mn), X[i]);
        d = mad ? _mm256_and_ps(d, absmask) : _mm256_mul_ps(d, d);
        best = _mm256_add_ps(best, _mm256_mul_ps(Wt[i], d));
    }
    for (int is = 0; nstep >= 1 && is <= nstep; is++) {
        float num = rmin + rdelta * is + nmax;
        iscale = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(mx, mn));
        __m256 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < n; i++) {
            __m256 l = vclamp(vnint(_mm256_mul_ps(iscale, _mm256_sub_ps(X[i], mn))), zero, vnmax);
            La[i] = l;
            __m256 t = _mm256_mul_ps(Wt[i], l);
            sl = _mm256_add_ps(sl, t);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(t, l));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(t, X[i]));
        }
        __m256 D = _mm256_sub_ps(_mm256_mul_ps(sw, sl2), _mm256_mul_ps(sl, sl));
        __m256 ts = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sw, sxl), _mm256_mul_ps(sx, sl)), D);
        __m256 tm = _mm256_div_ps(_mm256_sub_ps(_mm256_mul_ps(sl2, sx), _mm256_mul_ps(sl, sxl)), D);
        __m256 pos = _mm256_cmp_ps(tm, zero, _CMP_GT_OQ);
        tm = _mm256_blendv_ps(tm, zero, pos);
        ts = _mm256_blendv_ps(ts, _mm256_div_ps(sxl, sl2), pos);
        __m256 err = zero;
        for (int i = 0; i < n; i++) {
            __m256 d = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(ts, La[i]), tm), X[i]);
            d = mad ? _mm256_and_ps(d, absmask) : _mm256_mul_ps(d, d);
            err = _mm256_add_ps(err, _mm256_mul_ps(Wt[i], d));
        }
        __m256 acc = _mm256_and_ps(_mm256_cmp_ps(D, zero, _CMP_GT_OQ), _mm256_cmp_ps(err, best, _CMP_LT_OQ));
        if (_mm256_movemask_ps(acc)) {
            for (int i = 0; i < n; i++)
                Lb[i] = _mm256_blendv_ps(Lb[i], La[i], acc);
            best = _mm256_blendv_ps(best, err, acc);
            scale = _mm256_blendv_ps(scale, ts, acc);
            mn = _mm256_blendv_ps(mn, tm, acc);
        }
    }
    const __m256 sign = _mm256_set1_ps(-0.f);
    for (int i = 0; i < n; i++)
        Lb[i] = _mm256_blendv_ps(Lb[i], zero, deg);
    _mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, deg));
    _mm256_storeu_ps(mn_out, _mm256_xor_ps(_mm256_blendv_ps(mn, mn0, deg), sign));
    store_codes_x8(Lb, n, 0, L);
}

/* Eight search_sym calls (sub-block j: x + j*n, qw + j*n or NULL for x^2, codes L + j*n;
 * n <= 32). */
KQ_AVX2 static void search_sym_x8(int n, int nmax, const float *x, const float *qw, int8_t *L, float *scale_out)
{
    __m256 X[32], Wt[32], Lb[32], La[32];
    const __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(n));
    const __m256 zero = _mm256_setzero_ps(), absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 lo = _mm256_set1_ps((float)-nmax), hi = _mm256_set1_ps((float)(nmax - 1));
    __m256 amax = zero, mx = zero;
    for (int i = 0; i < n; i++) {
        X[i] = _mm256_i32gather_ps(x + i, idx, 4);
        Wt[i] = qw ? _mm256_i32gather_ps(qw + i, idx, 4) : _mm256_mul_ps(X[i], X[i]);
        __m256 a = _mm256_and_ps(X[i], absmask), gt = _mm256_cmp_ps(a, amax, _CMP_GT_OQ);
        amax = _mm256_blendv_ps(amax, a, gt);
        mx = _mm256_blendv_ps(mx, X[i], gt);
    }
    const __m256 deg = _mm256_cmp_ps(amax, _mm256_set1_ps(GROUP_EPS), _CMP_LT_OQ);
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)-nmax), mx);
    __m256 slx = zero, sl2 = zero;
    for (int i = 0; i < n; i++) {
        __m256 l = vclamp(vnint(_mm256_mul_ps(iscale, X[i])), lo, hi);
        Lb[i] = l;
        slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(Wt[i], X[i]), l));
        sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(Wt[i], l), l));
    }
    __m256 scale = _mm256_blendv_ps(zero, _mm256_div_ps(slx, sl2), _mm256_cmp_ps(sl2, zero, _CMP_NEQ_UQ));
    __m256 best = _mm256_mul_ps(scale, slx);
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        float num = -(nmax + 0.1f * is);
        iscale = _mm256_div_ps(_mm256_set1_ps(num), mx);
        slx = sl2 = zero;
        for (int i = 0; i < n; i++) {
            __m256 l = vclamp(vnint(_mm256_mul_ps(iscale, X[i])), lo, hi);
            La[i] = l;
            slx = _mm256_add_ps(slx, _mm256_mul_ps(_mm256_mul_ps(Wt[i], X[i]), l));
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(Wt[i], l), l));
        }
        __m256 acc = _mm256_and_ps(_mm256_cmp_ps(sl2, zero, _CMP_GT_OQ),
                                   _mm256_cmp_ps(_mm256_mul_ps(slx, slx), _mm256_mul_ps(best, sl2), _CMP_GT_OQ));
        if (_mm256_movemask_ps(acc)) {
            __m256 s = _mm256_div_ps(slx, sl2);
            for (int i = 0; i < n; i++)
                Lb[i] = _mm256_blendv_ps(Lb[i], La[i], acc);
            scale = _mm256_blendv_ps(scale, s, acc);
            best = _mm256_blendv_ps(best, _mm256_mul_ps(s, slx), acc);
        }
    }
    /* codes + nmax; a sub-block below GROUP_EPS gets codes 0 and scale 0 */
    for (int i = 0; i < n; i++)
        Lb[i] = _mm256_blendv_ps(_mm256_add_ps(Lb[i], _mm256_set1_ps((float)nmax)), zero, deg);
    _mm256_storeu_ps(scale_out, _mm256_blendv_ps(scale, zero, deg));
    store_codes_x8(Lb, n, 0, (uint8_t *)L);
}

/* L[i] = clampi(nint((x[i] + dm) / d), 0, nmax) for n a multiple of 8 (requant_asym). */
KQ_AVX2 static void requant_asym_avx2(const float *x, int n, float d, float dm, int nmax, uint8_t *L)
{
    const __m256 vd = _mm256_set1_ps(d), vdm = _mm256_set1_ps(dm), zero = _mm256_setzero_ps(),
                 hi = _mm256_set1_ps((float)nmax);
    for (int i = 0; i < n; i += 8) {
        __m256 l = vclamp(vnint(_mm256_div_ps(_mm256_add_ps(_mm256_loadu_ps(x + i), vdm), vd)), zero, hi);
        __m128i q = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_cvtps_epi32(l)),
                                    _mm256_extracti128_si256(_mm256_cvtps_epi32(l), 1));
        _mm_storel_epi64((__m128i *)(L + i), _mm_packus_epi16(q, q));
    }
}

/* L[i] = clampi(nint(x[i] / d), -nmax, nmax - 1) + nmax for n a multiple of 8. */
KQ_AVX2 static void requant_sym_avx2(const float *x, int n, float d, int nmax, int8_t *L)
{
    const __m256 vd = _mm256_set1_ps(d), lo = _mm256_set1_ps((float)-nmax), hi = _mm256_set1_ps((float)(nmax - 1)),
                 off = _mm256_set1_ps((float)nmax);
    for (int i = 0; i < n; i += 8) {
        __m256 l = _mm256_add_ps(vclamp(vnint(_mm256_div_ps(_mm256_loadu_ps(x + i), vd)), lo, hi), off);
        __m128i q = _mm_packs_epi32(_mm256_castsi256_si128(_mm256_cvtps_epi32(l)),
                                    _mm256_extracti128_si256(_mm256_cvtps_epi32(l), 1));
        _mm_storel_epi64((__m128i *)(L + i), _mm_packus_epi16(q, q));
    }
}

/* max |v[j]| over a block of 32 (a maximum: the order does not matter). */
KQ_AVX2 static inline float amax32_avx2(const float *v)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 m = _mm256_setzero_ps();
    for (int j = 0; j < 32; j += 8)
        m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(v + j), absmask));
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    return _mm_cvtss_f32(h);
}

/* Q8_0 rows, ggml's quantize_row_q8_0_ref (lib/core/dtype.c q8_0_from) eight values at a
 * time: amax is a maximum (order-free), d = amax / 127, id = 1 / d, q = roundf(x * id)
 * (half away from zero: trunc, then +-1 where the remainder, exact, is >= 0.5). */
KQ_AVX2 static void q8_0_rows_avx2(const float *x, void *dst, int64_t n)
{
    lmp_block_q8_0 *b = dst;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), half = _mm256_set1_ps(0.5f);
    const __m256 one = _mm256_set1_ps(1.f), sign = _mm256_set1_ps(-0.f);
    for (int64_t i = 0; i < n / QK8_0; i++) {
        const float *v = x + i * QK8_0;
        float amax = amax32_avx2(v);
        float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        b[i].d = tofp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i q[4];
        for (int j = 0; j < 4; j++) {
            __m256 p = _mm256_mul_ps(_mm256_loadu_ps(v + 8 * j), vid);
            __m256 t = _mm256_round_ps(p, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
            __m256 up = _mm256_cmp_ps(_mm256_and_ps(_mm256_sub_ps(p, t), absmask), half, _CMP_GE_OQ);
            __m256 adj = _mm256_and_ps(up, _mm256_or_ps(one, _mm256_and_ps(p, sign)));
            q[j] = _mm256_cvtps_epi32(_mm256_add_ps(t, adj));
        }
        __m256i a = _mm256_packs_epi32(q[0], q[1]), c = _mm256_packs_epi32(q[2], q[3]);
        __m256i r = _mm256_packs_epi16(a, c); /* lanes interleaved by 128-bit halves: fix the order */
        r = _mm256_permutevar8x32_epi32(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)b[i].qs, r);
    }
}

/* Q4_0 rows, ggml's quantize_row_q4_0_ref (lib/core/dtype.c q4_0_from): max = the first
 * value of largest magnitude (+0 when all are zero), d = max / -8, q = min(15,
 * trunc(x * id + 8.5)), eight values at a time. */
KQ_AVX2 static void q4_0_rows_avx2(const float *x, void *dst, int64_t n)
{
    lmp_block_q4_0 *b = dst;
    const __m256 c85 = _mm256_set1_ps(8.5f);
    const __m256i c15 = _mm256_set1_epi32(15);
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *v = x + i * QK4_0;
        float amax = amax32_avx2(v), max = 0;
        if (amax > 0) /* the scalar loop keeps the first value reaching the largest magnitude */
            for (int j = 0; j < QK4_0; j++)
                if (fabsf(v[j]) == amax) {
                    max = v[j];
                    break;
                }
        float d = max / -8, id = d ? 1.0f / d : 0.0f;
        b[i].d = tofp16(d);
        const __m256 vid = _mm256_set1_ps(id);
        int32_t t[16];
        for (int k = 0; k < 2; k++) {
            __m256i lo = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 8 * k), vid), c85));
            __m256i hi = _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + 16 + 8 * k), vid), c85));
            lo = _mm256_min_epi32(lo, c15);
            hi = _mm256_min_epi32(hi, c15);
            _mm256_storeu_si256((__m256i *)(t + 8 * k), _mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)));
        }
        for (int j = 0; j < 16; j++)
            b[i].qs[j] = (uint8_t)t[j];
    }
}
#endif

/* nsub search_asym calls on consecutive n-value sub-blocks (weights w given). */
static void search_asym_many(int nsub, int n, int nmax, const float *x, const float *w, uint8_t *L, float *scales,
                             float *mins, float rmin, float rdelta, int nstep, bool mad)
{
    int j = 0;
#ifdef KQ_X86
    if (kq_simd() && n <= 32)
        for (; j + 8 <= nsub; j += 8)
            search_asym_x8(n, nmax, x + n * j, w + n * j, L + n * j, scales + j, mins + j, rmin, rdelta, nstep, mad);
#endif
    uint8_t Laux[256];
    for (; j < nsub; j++)
        scales[j] = search_asym(n, nmax, x + n * j, w + n * j, L + n * j, &mins[j], Laux, rmin, rdelta, nstep, mad);
}

/* nsub search_sym calls on consecutive n-value sub-blocks (qw NULL: weights x^2). */
static void search_sym_many(int nsub, int n, int nmax, const float *x, int8_t *L, float *scales, const float *qw)
{
    int j = 0;
#ifdef KQ_X86
    if (kq_simd() && n <= 32)
        for (; j + 8 <= nsub; j += 8)
            search_sym_x8(n, nmax, x + n * j, qw ? qw + n * j : NULL, L + n * j, scales + j);
#endif
    for (; j < nsub; j++)
        scales[j] = search_sym(n, nmax, x + n * j, L + n * j, qw ? qw + n * j : NULL);
}

/* ---------------------------------------------------------------- packing helpers */

/* Q2_K/Q3_K 2-bit planes: in each 128-value half, byte l of the 32 holds values l, l+32,
 * l+64, l+96 at bits 0, 2, 4, 6. */
static void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK_K; j += 128)
        for (int l = 0; l < 32; l++)
            qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
}

static inline int unpack_2bit(const uint8_t *qs, int k)
{
    int half = k / 128, r = k % 128;
    return (qs[half * 32 + r % 32] >> (2 * (r / 32))) & 3;
}

/* Q4_K/Q5_K: eight 6-bit (scale, min) pairs in 12 bytes. Pairs 0-3: low 6 bits of bytes
 * 0-3 (scale) and 4-7 (min). Pairs 4-7: low nibbles in bytes 8-11 (scale low, min high),
 * their top 2 bits in bits 6-7 of bytes 0-3 (scale) and 4-7 (min). */
static void pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s)
{
    memset(s, 0, K_SCALE_SIZE);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            s[j] = ls[j];
            s[j + 4] = lm[j];
        } else {
            s[j + 4] = (uint8_t)((ls[j] & 0xF) | ((lm[j] & 0xF) << 4));
            s[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            s[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static inline void scale_min_k4(int j, const uint8_t *s, int *sc, int *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
        *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
    }
}

/* Q3_K: sixteen 6-bit scales (stored +32) in 12 bytes: low nibbles of scales 0-7 in the
 * low nibbles of bytes 0-7, of 8-15 in their high nibbles; the top 2 bits of scale j in
 * byte 8 + j%4 at bit 2*(j/4). */
static void pack_scales_q3(const int *l, uint8_t *s)
{
    memset(s, 0, 12);
    for (int j = 0; j < 16; j++) {
        if (j < 8)
            s[j] = (uint8_t)(l[j] & 0xF);
        else
            s[j - 8] |= (uint8_t)((l[j] & 0xF) << 4);
        s[j % 4 + 8] |= (uint8_t)((l[j] >> 4) << (2 * (j / 4)));
    }
}

static inline int scale_q3(int j, const uint8_t *s)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

/* Q3_K high bits: bit b of hmask[m] is the high bit of value 32*b + m. */
static void pack_q3_hmask(uint8_t *L, uint8_t *hmask)
{
    memset(hmask, 0, QK_K / 8);
    for (int j = 0; j < QK_K; j++)
        if (L[j] > 3) {
            hmask[j % 32] |= (uint8_t)(1 << (j / 32));
            L[j] -= 4;
        }
}

/* Q4_K: in each 64-value chunk, 32 bytes: low nibbles the first 32 values, high the next. */
static void pack_q4_k(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < QK_K; j += 64)
        for (int l = 0; l < 32; l++)
            qs[j / 2 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
}

/* Q5_K: as Q4_K for the low 4 bits; the 5th bit of value 64c + l (l < 32) is bit 2c of
 * qh[l], of 64c + 32 + l bit 2c+1. */
static void pack_q5_k(const uint8_t *L, uint8_t *qs, uint8_t *qh)
{
    memset(qh, 0, QK_K / 8);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            int a = L[64 * c + l], b = L[64 * c + 32 + l];
            if (a > 15) {
                a -= 16;
                qh[l] |= (uint8_t)(1 << (2 * c));
            }
            if (b > 15) {
                b -= 16;
                qh[l] |= (uint8_t)(1 << (2 * c + 1));
            }
            qs[32 * c + l] = (uint8_t)(a | (b << 4));
        }
}

/* Q6_K: per 128-value half h: ql[64h + l] = low nibbles of values l (bits 0-3) and l+64
 * (bits 4-7), ql[64h + 32 + l] of l+32 and l+96; qh[32h + l] the high 2 bits of l, l+32,
 * l+64, l+96 at bits 0, 2, 4, 6. */
static void pack_q6_k(const int8_t *L, lmp_block_q6_k *y)
{
    for (int h = 0; h < 2; h++) {
        const int8_t *Lh = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h, *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((Lh[l] & 0xF) | ((Lh[l + 64] & 0xF) << 4));
            ql[l + 32] = (uint8_t)((Lh[l + 32] & 0xF) | ((Lh[l + 96] & 0xF) << 4));
            qh[l] = (uint8_t)((Lh[l] >> 4) | ((Lh[l + 32] >> 4) << 2) | ((Lh[l + 64] >> 4) << 4) |
                              ((Lh[l + 96] >> 4) << 6));
        }
    }
}

/* ---------------------------------------------------------------- dequantizers */

void lmp_q2_k_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q2_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
        for (int k = 0; k < QK_K; k++) {
            int sc = b[i].scales[k / 16];
            y[k] = d * (sc & 0xF) * unpack_2bit(b[i].qs, k) - dmin * (sc >> 4);
        }
    }
}

void lmp_q3_k_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q3_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = fp16(b[i].d);
        for (int k = 0; k < QK_K; k++) {
            int q = unpack_2bit(b[i].qs, k) - ((b[i].hmask[k % 32] >> (k / 32)) & 1 ? 0 : 4);
            y[k] = d * scale_q3(k / 16, b[i].scales) * q;
        }
    }
}

void lmp_q4_k_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q4_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++)
                y[32 * j + l] = d1 * ((j & 1) ? q[l] >> 4 : q[l] & 0xF) - m1;
        }
    }
}

void lmp_q5_k_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q5_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = fp16(b[i].d), dmin = fp16(b[i].dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            scale_min_k4(j, b[i].scales, &sc, &m);
            float d1 = d * sc, m1 = dmin * m;
            const uint8_t *q = b[i].qs + 32 * (j / 2);
            for (int l = 0; l < 32; l++) {
                int lo = (j & 1) ? q[l] >> 4 : q[l] & 0xF;
                int hi = (b[i].qh[l] >> j) & 1;
                y[32 * j + l] = d1 * (lo + (hi ? 16 : 0)) - m1;
            }
        }
    }
}

void lmp_q6_k_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q6_k *b = src;
    for (int64_t i = 0; i < n / QK_K; i++, y += QK_K) {
        float d = fp16(b[i].d);
        for (int k = 0; k < QK_K; k++) {
            int h = k / 128, r = k % 128, l = r % 32, quarter = r / 32;
            int lo = b[i].ql[64 * h + l + 32 * (quarter & 1)];
            lo = quarter >= 2 ? lo >> 4 : lo & 0xF;
            int hi = (b[i].qh[32 * h + l] >> (2 * quarter)) & 3;
            y[k] = d * b[i].scales[k / 16] * ((lo | (hi << 4)) - 32);
        }
    }
}

/* ---------------------------------------------------------------- Q2_K */

/* Final codes for an asymmetric 16-value sub-block given the stored scale and min. */
static void requant_asym(const float *x, int n, float d, float dm, int nmax, uint8_t *L)
{
#ifdef KQ_X86
    if (kq_simd() && n % 8 == 0) {
        requant_asym_avx2(x, n, d, dm, nmax, L);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)clampi(nint((x[i] + dm) / d), 0, nmax);
}

static void q2_k_block(const float *x, lmp_block_q2_k *y, const float *qw)
{
    uint8_t L[QK_K], Ls[16], Lm[16];
    float w[QK_K], mins[16], scales[16], sw[16];
    if (!qw) { /* reference: 4-bit scales/mins against their maxima */
        float max_scale = 0, max_min = 0;
        for (int l = 0; l < QK_K; l++)
            w[l] = fabsf(x[l]);
        search_asym_many(16, 16, 3, x, w, L, scales, mins, -0.5f, 0.1f, 15, true);
        for (int j = 0; j < 16; j++) {
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        for (int j = 0; j < 16; j++) {
            Ls[j] = max_scale > 0 ? (uint8_t)nint(15.f / max_scale * scales[j]) : 0;
            Lm[j] = max_min > 0 ? (uint8_t)nint(15.f / max_min * mins[j]) : 0;
        }
        y->d = tofp16(max_scale > 0 ? max_scale / 15.f : 0.f);
        y->dmin = tofp16(max_min > 0 ? max_min / 15.f : 0.f);
    } else { /* weighted: w = qw * sqrt(sigma^2 + x^2), scales fitted with make_qp */
        float sumx2 = 0;
        for (int j = 0; j < QK_K; j++)
            sumx2 += x[j] * x[j];
        float sigma2 = sumx2 / QK_K;
        for (int j = 0; j < 16; j++) {
            sw[j] = 0;
            for (int l = 0; l < 16; l++)
                w[16 * j + l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            for (int l = 0; l < 16; l++)
                sw[j] += w[16 * j + l];
        }
        search_asym_many(16, 16, 3, x, w, L, scales, mins, -0.9f, 0.05f, 36, false);
        float dm = search_pos(16, 15, scales, Ls, sw);
        float mm = search_pos(16, 15, mins, Lm, sw);
        y->d = tofp16(dm);
        y->dmin = tofp16(mm);
    }
    for (int j = 0; j < 16; j++)
        y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    float d = fp16(y->d), dmin = fp16(y->dmin);
    for (int j = 0; j < 16; j++) {
        float dj = d * (y->scales[j] & 0xF);
        if (!dj)
            continue;
        requant_asym(x + 16 * j, 16, dj, dmin * (y->scales[j] >> 4), 3, L + 16 * j);
    }
    pack_2bit(L, y->qs);
}

/* ---------------------------------------------------------------- Q3_K */

static void q3_k_block(const float *x, lmp_block_q3_k *y, const float *qw)
{
    int8_t L[QK_K];
    float scales[16];
    int ls[16];
    if (!qw) { /* reference: 6-bit scales against the signed largest one (-> -32) */
        float max_scale = 0, amax = 0;
        for (int j = 0; j < 16; j++) {
            scales[j] = search_q3(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < 16; j++)
                ls[j] = clampi((int8_t)nint(iscale * scales[j]), -32, 31) + 32;
            pack_scales_q3(ls, y->scales);
            y->d = tofp16(1 / iscale);
        } else {
            memset(y->scales, 0, 12);
            y->d = tofp16(0.f);
        }
    } else {
        float w[16], sw[16];
        int8_t Ls[16];
        float sumx2 = 0;
        for (int j = 0; j < QK_K; j++)
            sumx2 += x[j] * x[j];
        float sigma2 = 2 * sumx2 / QK_K;
        for (int j = 0; j < 16; j++) {
            for (int l = 0; l < 16; l++)
                w[l] = qw[16 * j + l] * sqrtf(sigma2 + x[16 * j + l] * x[16 * j + l]);
            float s = 0;
            for (int l = 0; l < 16; l++)
                s += w[l];
            sw[j] = s;
            scales[j] = search_sym(16, 4, x + 16 * j, L + 16 * j, w);
        }
        float d_block = search_sym(16, 32, scales, Ls, sw);
        for (int j = 0; j < 16; j++)
            ls[j] = Ls[j];
        pack_scales_q3(ls, y->scales);
        y->d = tofp16(d_block);
    }
    float d = fp16(y->d);
    for (int j = 0; j < 16; j++) {
        float dj = d * scale_q3(j, y->scales);
        if (!dj)
            continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(clampi(nint(x[16 * j + i] / dj), -4, 3) + 4);
    }
    pack_q3_hmask((uint8_t *)L, y->hmask);
    pack_2bit((const uint8_t *)L, y->qs);
}

/* ---------------------------------------------------------------- Q4_K / Q5_K */

/* Shared by Q4_K (nmax 15) and Q5_K (nmax 31): 8 sub-blocks of 32 with a 6-bit scale and
 * min each. Fills d, dmin, scales[12] and the final codes L. */
static void qk_scale_min_block(const float *x, int nmax, uint16_t *d_out, uint16_t *dmin_out, uint8_t *sc12,
                               uint8_t *L, const float *qw)
{
    uint8_t Ls[8], Lm[8];
    float w[QK_K], mins[8], scales[8];
    if (!qw) { /* reference: weights av_x + |x|, 6-bit scales/mins against their maxima */
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < 8; j++) {
            float sum_x2 = 0;
            for (int l = 0; l < 32; l++)
                sum_x2 += x[32 * j + l] * x[32 * j + l];
            float av_x = sqrtf(sum_x2 / 32);
            for (int l = 0; l < 32; l++)
                w[32 * j + l] = av_x + fabsf(x[32 * j + l]);
        }
        if (nmax == 15)
            search_asym_many(8, 32, nmax, x, w, L, scales, mins, -1.f, 0.1f, 20, false);
        else
            search_asym_many(8, 32, nmax, x, w, L, scales, mins, -0.5f, 0.1f, 15, false);
        for (int j = 0; j < 8; j++) {
            max_scale = fmaxf(max_scale, scales[j]);
            max_min = fmaxf(max_min, mins[j]);
        }
        float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
        float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
        for (int j = 0; j < 8; j++) {
            Ls[j] = (uint8_t)imin(63, (uint8_t)nint(inv_scale * scales[j]));
            Lm[j] = (uint8_t)imin(63, (uint8_t)nint(inv_min * mins[j]));
        }
        *d_out = tofp16(max_scale / 63.f);
        *dmin_out = tofp16(max_min / 63.f);
    } else { /* weighted: w = qw * sqrt(sigma^2 + x^2), scales and mins fitted with make_qp */
        float sw[8], sum_x2 = 0;
        for (int l = 0; l < QK_K; l++)
            sum_x2 += x[l] * x[l];
        float sigma2 = 2 * sum_x2 / QK_K;
        for (int j = 0; j < 8; j++) {
            for (int l = 0; l < 32; l++)
                w[32 * j + l] = qw[32 * j + l] * sqrtf(sigma2 + x[32 * j + l] * x[32 * j + l]);
            float s = 0;
            for (int l = 0; l < 32; l++)
                s += w[32 * j + l];
            sw[j] = s;
        }
        search_asym_many(8, 32, nmax, x, w, L, scales, mins, -0.9f, 0.05f, 36, false);
        float d_block = search_pos(8, 63, scales, Ls, sw);
        float m_block = search_pos(8, 63, mins, Lm, sw);
        for (int j = 0; j < 8; j++) {
            Ls[j] = (uint8_t)imin(63, Ls[j]);
            Lm[j] = (uint8_t)imin(63, Lm[j]);
        }
        *d_out = tofp16(d_block);
        *dmin_out = tofp16(m_block);
    }
    pack_scale_min_k4(Ls, Lm, sc12);
    float d = fp16(*d_out), dmin = fp16(*dmin_out);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, sc12, &sc, &m);
        float dj = d * sc;
        if (!dj)
            continue;
        requant_asym(x + 32 * j, 32, dj, dmin * m, nmax, L + 32 * j);
    }
}

static void q4_k_block(const float *x, lmp_block_q4_k *y, const float *qw)
{
    uint8_t L[QK_K];
    qk_scale_min_block(x, 15, &y->d, &y->dmin, y->scales, L, qw);
    pack_q4_k(L, y->qs);
}

static void q5_k_block(const float *x, lmp_block_q5_k *y, const float *qw)
{
    uint8_t L[QK_K];
    qk_scale_min_block(x, 31, &y->d, &y->dmin, y->scales, L, qw);
    pack_q5_k(L, y->qs, y->qh);
}

/* ---------------------------------------------------------------- Q6_K */

static void q6_k_block(const float *x, lmp_block_q6_k *y, const float *qw)
{
    int8_t L[QK_K];
    float scales[16], max_scale = 0, amax = 0;
    search_sym_many(16, 16, 32, x, L, scales, qw);
    for (int j = 0; j < 16; j++) {
        if (fabsf(scales[j]) > amax) {
            amax = fabsf(scales[j]);
            max_scale = scales[j];
        }
    }
    if (amax < GROUP_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    float iscale = -128.f / max_scale;
    y->d = tofp16(1 / iscale);
    for (int j = 0; j < 16; j++)
        y->scales[j] = (int8_t)imin(127, nint(iscale * scales[j]));
    float d = fp16(y->d);
    for (int j = 0; j < 16; j++) {
        float dj = d * y->scales[j];
        if (!dj)
            continue;
#ifdef KQ_X86
        if (kq_simd()) {
            requant_sym_avx2(x + 16 * j, 16, dj, 32, L + 16 * j);
            continue;
        }
#endif
        for (int i = 0; i < 16; i++)
            L[16 * j + i] = (int8_t)(clampi(nint(x[16 * j + i] / dj), -32, 31) + 32);
    }
    pack_q6_k(L, y);
}

/* ---------------------------------------------------------------- row entry points */

#define ROW_FNS(T, BT)                                                                                     \
    void lmp_##T##_from_f32(const float *x, void *dst, int64_t n)                                           \
    {                                                                                                      \
        BT *y = dst;                                                                                       \
        for (int64_t i = 0; i < n / QK_K; i++)                                                             \
            T##_block(x + i * QK_K, y + i, NULL);                                                          \
    }                                                                                                      \
    static void T##_from_w(const float *x, void *dst, int64_t n, const float *qw)                        \
    {                                                                                                      \
        BT *y = dst;                                                                                       \
        for (int64_t i = 0; i < n / QK_K; i++)                                                             \
            T##_block(x + i * QK_K, y + i, qw + i * QK_K);                                                 \
    }
ROW_FNS(q2_k, lmp_block_q2_k)
ROW_FNS(q3_k, lmp_block_q3_k)
ROW_FNS(q4_k, lmp_block_q4_k)
ROW_FNS(q5_k, lmp_block_q5_k)
ROW_FNS(q6_k, lmp_block_q6_k)

/* ---------------------------------------------------------------- weighted legacy types */

/* The weighted 32-value quantizers scale the weights by sqrt(sigma^2 + x^2), sigma^2 the
 * row's mean square (ggml quantize_row_q4_0_impl and friends). */
static float row_sigma2(const float *x, int64_t n)
{
    float s = 0;
    for (int64_t j = 0; j < n; j++)
        s += x[j] * x[j];
    return s / n;
}

static void q4_0_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_q4_0 *y = dst;
    float w[32], sigma2 = row_sigma2(x, n);
    int8_t L[32];
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib, *q = qw + 32 * ib;
        for (int j = 0; j < 32; j++)
            w[j] = q[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        y[ib].d = tofp16(search_sym(32, 8, xb, L, w));
        for (int j = 0; j < 16; j++)
            y[ib].qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
    }
}

static void q5_0_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_q5_0 *y = dst;
    float w[32], sigma2 = row_sigma2(x, n);
    int8_t L[32];
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib, *q = qw + 32 * ib;
        for (int j = 0; j < 32; j++)
            w[j] = q[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        y[ib].d = tofp16(search_sym(32, 16, xb, L, w));
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            y[ib].qs[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
            qh |= (uint32_t)((L[j] >> 4) & 1) << j;
            qh |= (uint32_t)((L[j + 16] >> 4) & 1) << (j + 16);
        }
        memcpy(y[ib].qh, &qh, 4);
    }
}

/* Q4_1 / Q5_1: x ~ d*L + m with the asymmetric search; nmax 15 or 31. */
static void q41_51_w(const float *x, int64_t n, const float *qw, int nmax, uint16_t *d, uint16_t *m, uint8_t *qs,
                     uint8_t *qh4, size_t stride)
{
    float w[32], sigma2 = row_sigma2(x, n), mn;
    uint8_t L[32], Laux[32];
    for (int64_t ib = 0; ib < n / 32; ib++) {
        const float *xb = x + 32 * ib, *q = qw + 32 * ib;
        for (int j = 0; j < 32; j++)
            w[j] = q[j] * sqrtf(sigma2 + xb[j] * xb[j]);
        float s = search_asym(32, nmax, xb, w, L, &mn, Laux, -0.9f, 0.05f, 36, false);
        uint16_t *db = (uint16_t *)((uint8_t *)d + ib * stride), *mb = (uint16_t *)((uint8_t *)m + ib * stride);
        *db = tofp16(s);
        *mb = tofp16(-mn);
        uint8_t *qsb = qs + ib * stride;
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) {
            qsb[j] = (uint8_t)((L[j] & 0xF) | ((L[j + 16] & 0xF) << 4));
            qh |= (uint32_t)((L[j] >> 4) & 1) << j;
            qh |= (uint32_t)((L[j + 16] >> 4) & 1) << (j + 16);
        }
        if (qh4)
            memcpy(qh4 + ib * stride, &qh, 4);
    }
}

static void q4_1_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_q4_1 *y = dst;
    q41_51_w(x, n, qw, 15, &y[0].d, &y[0].m, y[0].qs, NULL, sizeof *y);
}

static void q5_1_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_q5_1 *y = dst;
    q41_51_w(x, n, qw, 31, &y[0].d, &y[0].m, y[0].qs, y[0].qh, sizeof *y);
}

/* ---------------------------------------------------------------- weighted quantizers, SIMD switch */

typedef void (*weighted_fn)(const float *, void *, int64_t, const float *);

static weighted_fn weighted_for(lmp_dtype t)
{
    switch (t) {
    case LMP_DT_Q2_K: return q2_k_from_w;
    case LMP_DT_Q3_K: return q3_k_from_w;
    case LMP_DT_Q4_K: return q4_k_from_w;
    case LMP_DT_Q5_K: return q5_k_from_w;
    case LMP_DT_Q6_K: return q6_k_from_w;
    case LMP_DT_Q4_0: return q4_0_from_w;
    case LMP_DT_Q4_1: return q4_1_from_w;
    case LMP_DT_Q5_0: return q5_0_from_w;
    case LMP_DT_Q5_1: return q5_1_from_w;
    default: return lmp_iq_weighted(t); /* the low-bit families (lowbit.h) */
    }
}

/* The AVX2 batches: on when the CPU has AVX2 and LMP_QUANT_SCALAR is unset or 0, decided
 * on first use (-1 until then; every thread decides alike, so the race is benign). */
static int kq_simd_detect(void)
{
    int on = 0;
#ifdef KQ_X86
    __builtin_cpu_init();
    const char *e = getenv("LMP_QUANT_SCALAR");
    on = __builtin_cpu_supports("avx2") && !(e && *e && strcmp(e, "0") != 0);
#endif
    __atomic_store_n(&g_simd, on, __ATOMIC_RELAXED);
    return on;
}

static inline int kq_simd(void)
{
    const int v = __atomic_load_n(&g_simd, __ATOMIC_RELAXED);
    return v >= 0 ? v : kq_simd_detect();
}

bool lmp_quant_set_simd(bool on)
{
    const bool was = kq_simd();
#ifdef KQ_X86
    __atomic_store_n(&g_simd, on && __builtin_cpu_supports("avx2"), __ATOMIC_RELAXED);
#else
    (void)on;
#endif
    return was;
}

bool lmp_quant_uses_weights(lmp_dtype t) { return weighted_for(t) != NULL; }

size_t lmp_quant_rows(lmp_dtype t, const float *src, void *dst, int64_t nrows, int64_t n_per_row, const float *qw)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t);
    size_t row = lmp_dtype_row_bytes(t, n_per_row);
    if (!tr || !tr->from_f32 || !row || nrows < 0)
        return 0;
    weighted_fn wf = qw ? weighted_for(t) : NULL;
#ifdef KQ_X86
    if ((t == LMP_DT_Q8_0 || (t == LMP_DT_Q4_0 && !wf)) && kq_simd()) { /* tr->from_f32's bytes, faster */
        for (int64_t r = 0; r < nrows; r++) {
            uint8_t *y = (uint8_t *)dst + (size_t)r * row;
            if (t == LMP_DT_Q8_0)
                q8_0_rows_avx2(src + r * n_per_row, y, n_per_row);
            else
                q4_0_rows_avx2(src + r * n_per_row, y, n_per_row);
        }
        return row * (size_t)nrows;
    }
#endif
    for (int64_t r = 0; r < nrows; r++) {
        const float *x = src + r * n_per_row;
        void *y = (uint8_t *)dst + (size_t)r * row;
        if (wf)
            wf(x, y, n_per_row, qw);
        else
            tr->from_f32(x, y, n_per_row);
    }
    return row * (size_t)nrows;
}
