/*
 * Non-linear 4-bit GGUF types: IQ4_NL (32-value blocks), IQ4_XS (256-value super-blocks
 * with 6-bit sub-block scales) and MXFP4 (32 E2M1 values under one E8M0 exponent).
 *
 * Facts followed (block layouts of ggml-common.h, the algorithm of ggml-quants.c
 * quantize_iq4_nl / quantize_iq4_xs / quantize_row_mxfp4_ref, re-derived here):
 * - IQ4_NL / IQ4_XS code 16 fixed values (LMP_IQ4NL_VALUES). Per 32-value block the
 *   first scale maps the signed value of largest magnitude to the first code value; the
 *   weighted least-squares scale is then refined over 15 inverse scales
 *   (values[0] + t) / max, t = -7..7, each code the nearest value (binary search, ties to
 *   the upper code only when strictly closer). Weights: qw * sqrt(sigma2 + x^2) with
 *   sigma2 = 2 * mean square of the (super-)block, or x^2 without qw.
 * - IQ4_XS then quantizes the 8 block scales to 6 bits against one f16 scale
 *   d = -max_scale / 32 (max_scale: the block scale of largest magnitude), l in
 *   [-32, 31] by nearest_int, stored as l + 32 (low 4 bits in scales_l, high 2 in
 *   scales_h), and re-rounds every value against d * l.
 * - IQ4_NL stores the refined scale as the block's f16 and re-rounds against it.
 * - Both run the 15-step search with or without weights: that is what llama-quantize
 *   writes (ggml_quantize_chunk -> quantize_iq4_*); ggml's quantize_row_iq4_nl_ref (no
 *   search) is not used by any file writer.
 * - MXFP4: e = floor(log2(amax)) - 2 + 127 (0 for an all-zero block), d = 2^(e - 128),
 *   each value the first of the 16 doubled E2M1 values v with the smallest |v d - x|.
 *   No weighted variant (ggml ignores quant_weights).
 * Every floating-point expression keeps ggml's evaluation order and no FMA contraction
 * (C11 mode), so the bytes are ggml's (tests/unit/test_iquants.c: golden hashes written
 * by tests/reference/ggml_lowbit_check.c against libggml-base).
 */
#include "quant.h"
#include "lowbit.h"
#include "../core/blocks.h"

#include <math.h>
#include <string.h>

static const int8_t k_iq4nl[16] = LMP_IQ4NL_VALUES;
static const int8_t k_fp4[16] = LMP_FP4_VALUES;

#define GROUP_EPS 1e-15f

/* Index of the code value nearest x in the sorted val[0..n) (ggml best_index_int8). */
static inline int nearest_code(int n, const int8_t *val, float x)
{
    if (x <= val[0])
        return 0;
    if (x >= val[n - 1])
        return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < val[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

/* ---------------------------------------------------------------- IQ4_NL / IQ4_XS */

/* One super-block of sbs values (32: IQ4_NL, 256: IQ4_XS) into dh (f16 scale), q4
 * (sbs/2 nibble bytes) and, for sbs > 32, the 6-bit block scales. qw: sbs weights or
 * NULL. */
static void iq4_super(int sbs, const float *x, uint16_t *dh, uint8_t *q4, uint16_t *scales_h, uint8_t *scales_l,
                      const float *qw)
{
    enum { NTRY = 7 };
    const int8_t *v = k_iq4nl;
    float weight[32], scales[QK_K / 32];
    uint8_t L[QK_K];
    float sigma2 = 0;
    for (int j = 0; j < sbs; j++)
        sigma2 += x[j] * x[j];
    sigma2 *= 2.f / sbs;
    memset(q4, 0, (size_t)sbs / 2);
    *dh = 0;
    float max_scale = 0, amax_scale = 0;
    const int nb = sbs / 32;
    for (int ib = 0; ib < nb; ib++) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        if (qw)
            for (int j = 0; j < 32; j++)
                weight[j] = qw[32 * ib + j] * sqrtf(sigma2 + xb[j] * xb[j]);
        else
            for (int j = 0; j < 32; j++)
                weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++) {
            float ax = fabsf(xb[j]);
            if (ax > amax) {
                amax = ax;
                max = xb[j];
            }
        }
        if (amax < GROUP_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / v[0], id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            int l = nearest_code(16, v, id * xb[j]);
            Lb[j] = (uint8_t)l;
            float q = v[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int t = -NTRY; t <= NTRY; t++) {
            id = (t + v[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = v[nearest_code(16, v, id * xb[j])], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) {
            amax_scale = fabsf(d);
            max_scale = d;
        }
    }
    if (nb > 1) {
        memset(scales_h, 0, sizeof(uint16_t) * (size_t)((nb + 7) / 8));
        float d = -max_scale / 32;
        *dh = lmp_f32_to_f16(d);
        float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < nb; ib++) {
            int l = lmp_q_nint(id * scales[ib]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            float dl = d * l, idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++)
                L[32 * ib + j] = (uint8_t)nearest_code(16, v, idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0)
                scales_l[ib / 2] = (uint8_t)(l & 0xf);
            else
                scales_l[ib / 2] |= (uint8_t)((l & 0xf) << 4);
            scales_h[ib / 8] |= (uint16_t)((l >> 4) << 2 * (ib % 8));
        }
    } else {
        *dh = lmp_f32_to_f16(scales[0]);
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < sbs; j++)
            L[j] = (uint8_t)nearest_code(16, v, id * x[j]);
    }
    for (int i = 0; i < sbs / 32; i++)
        for (int j = 0; j < 16; j++)
            q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

static void iq4_nl_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / QK4_NL; i++)
        iq4_super(QK4_NL, x + QK4_NL * i, &y[i].d, y[i].qs, NULL, NULL, qw ? qw + QK4_NL * i : NULL);
}

static void iq4_xs_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    lmp_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++)
        iq4_super(QK_K, x + QK_K * i, &y[i].d, y[i].qs, &y[i].scales_h, y[i].scales_l, qw ? qw + QK_K * i : NULL);
}

void lmp_iq4_nl_from_f32(const float *x, void *dst, int64_t n) { iq4_nl_from_w(x, dst, n, NULL); }
void lmp_iq4_xs_from_f32(const float *x, void *dst, int64_t n) { iq4_xs_from_w(x, dst, n, NULL); }

void lmp_iq4_nl_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq4_nl *b = src;
    for (int64_t i = 0; i < n / QK4_NL; i++, y += QK4_NL) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = d * k_iq4nl[b[i].qs[j] & 0xf];
            y[j + 16] = d * k_iq4nl[b[i].qs[j] >> 4];
        }
    }
}

void lmp_iq4_xs_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq4_xs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < QK_K / 32; ib++, y += 32, qs += 16) {
            const int ls = ((b[i].scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b[i].scales_h >> 2 * ib) & 3) << 4);
            const float dl = d * (ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * k_iq4nl[qs[j] & 0xf];
                y[j + 16] = dl * k_iq4nl[qs[j] >> 4];
            }
        }
    }
}

/* ---------------------------------------------------------------- MXFP4 */

/* 2^(e - 128): half the E8M0 scale (the E2M1 table is doubled). */
static inline float e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

void lmp_mxfp4_from_f32(const float *x, void *dst, int64_t n)
{
    lmp_block_mxfp4 *y = dst;
    for (int64_t i = 0; i < n / QK_MXFP4; i++) {
        const float *xb = x + QK_MXFP4 * i;
        float amax = 0;
        for (int j = 0; j < QK_MXFP4; j++)
            if (amax < fabsf(xb[j]))
                amax = fabsf(xb[j]);
        /* float -> uint8 through int, as x86 truncates it (tiny amax wraps, as in ggml) */
        const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = e8m0_half(e);
        y[i].e = e;
        for (int j = 0; j < QK_MXFP4 / 2; j++) {
            int c[2];
            for (int h = 0; h < 2; h++) {
                const float xv = xb[j + 16 * h];
                float best = fabsf(k_fp4[0] * d - xv);
                c[h] = 0;
                for (int k = 1; k < 16; k++) {
                    float err = fabsf(k_fp4[k] * d - xv);
                    if (err < best) {
                        c[h] = k;
                        best = err;
                    }
                }
            }
            y[i].qs[j] = (uint8_t)(c[0] | (c[1] << 4));
        }
    }
}

void lmp_mxfp4_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_mxfp4 *b = src;
    for (int64_t i = 0; i < n / QK_MXFP4; i++, y += QK_MXFP4) {
        const float d = e8m0_half(b[i].e);
        for (int j = 0; j < 16; j++) {
            y[j] = k_fp4[b[i].qs[j] & 0x0f] * d;
            y[j + 16] = k_fp4[b[i].qs[j] >> 4] * d;
        }
    }
}

/* ---------------------------------------------------------------- registration */


lmp_weighted_fn lmp_iq_weighted(lmp_dtype t)
{
    switch (t) {
    case LMP_DT_IQ4_NL: return iq4_nl_from_w;
    case LMP_DT_IQ4_XS: return iq4_xs_from_w;
    default: {
        lmp_weighted_fn f = lmp_iq3_weighted(t);
        f = f ? f : lmp_iq2_weighted(t);
        return f ? f : lmp_iq1_weighted(t);
    }
    }
}
