/*
 * Ternary and 1-/2-bit GGUF types: TQ1_0 (256 values, base-3 packed, 1.6875 bpw), TQ2_0
 * (256 values, 2 bits each, 2.0625 bpw), Q1_0 (128 signs and one scale, 1.125 bpw) and
 * Q2_0 (64 values of {-1, 0, 1, 2} times one scale, 2.25 bpw).
 *
 * Facts followed (ggml-common.h layouts, ggml-quants.c quantize_row_tq1_0_ref,
 * quantize_row_tq2_0_ref, quantize_row_q1_0_ref, quantize_row_q2_0_ref, re-derived):
 * - TQ1_0 / TQ2_0: d = absmax of the 256 values, trit = lroundf(x / d) + 1 (half away
 *   from zero). TQ2_0 puts trit n of byte m (of each 32-byte group) at bits 2n, values
 *   m + 32 n of the group's 128. TQ1_0 packs 5 trits (most significant first) of values
 *   m + 32 n (bytes 0..31) and m + 16 n (bytes 32..47, the next 80 values) into a byte as
 *   ceil(t * 256 / 243), and 4 trits of values j + 4 m (the last 16) shifted by one trit
 *   into qh; decoding multiplies by 3^n in 8 bits and takes the top bits of 3 q.
 * - Q1_0: d = mean |x| of 128 values, bit j set when x >= 0 (+d), else -d.
 * - Q2_0: d = absmax of 64 values, q = clamp(roundf(x / d) + 1, 0, 3), value (q - 1) d,
 *   code j at bits 2 (j % 4) of byte j / 4.
 * None takes importance weights (ggml's quantize_* ignore them).
 */
#include "quant.h"
#include "lowbit.h"
#include "../core/blocks.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- TQ1_0 / TQ2_0 */

static float absmax(const float *x, int n)
{
    float m = 0.0f;
    for (int j = 0; j < n; j++)
        m = fmaxf(m, fabsf(x[j]));
    return m;
}

/* 5 (or 4, shifted) trits into one byte: ceil(t * 256 / 243). */
static inline uint8_t pack_trits(const float *x, int stride, int count, float id)
{
    uint8_t q = 0;
    for (int n = 0; n < count; n++)
        q = (uint8_t)(q * 3 + (lroundf(x[n * stride] * id) + 1));
    if (count == 4)
        q = (uint8_t)(q * 3);
    return (uint8_t)(((uint16_t)q * 256 + 242) / 243);
}

void lmp_tq1_0_from_f32(const float *x, void *dst, int64_t n)
{
    lmp_block_tq1_0 *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = absmax(x, QK_K), id = d ? 1.0f / d : 0.0f;
        y[i].d = lmp_f32_to_f16(d);
        for (int m = 0; m < 32; m++)
            y[i].qs[m] = pack_trits(x + m, 32, 5, id);
        for (int m = 0; m < 16; m++)
            y[i].qs[32 + m] = pack_trits(x + 160 + m, 16, 5, id);
        for (int j = 0; j < 4; j++)
            y[i].qh[j] = pack_trits(x + 240 + j, 4, 4, id);
    }
}

static inline float trit(uint8_t b, int n)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t q = (uint8_t)(b * pow3[n]);
    return (float)((int)(((uint16_t)q * 3) >> 8) - 1);
}

void lmp_tq1_0_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_tq1_0 *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 32; m++)
                *y++ = trit(b[i].qs[m], t) * d;
        for (int t = 0; t < 5; t++)
            for (int m = 0; m < 16; m++)
                *y++ = trit(b[i].qs[32 + m], t) * d;
        for (int t = 0; t < 4; t++)
            for (int j = 0; j < 4; j++)
                *y++ = trit(b[i].qh[j], t) * d;
    }
}

void lmp_tq2_0_from_f32(const float *x, void *dst, int64_t n)
{
    lmp_block_tq2_0 *y = dst;
    for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {
        const float d = absmax(x, QK_K), id = d ? 1.0f / d : 0.0f;
        y[i].d = lmp_f32_to_f16(d);
        for (int g = 0; g < 2; g++)
            for (int m = 0; m < 32; m++) {
                uint8_t q = 0;
                for (int t = 0; t < 4; t++)
                    q = (uint8_t)(q + (((lroundf(x[128 * g + m + 32 * t] * id) + 1) & 3) << (2 * t)));
                y[i].qs[32 * g + m] = q;
            }
    }
}

void lmp_tq2_0_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_tq2_0 *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int g = 0; g < 2; g++)
            for (int t = 0; t < 4; t++)
                for (int m = 0; m < 32; m++)
                    *y++ = (float)(((b[i].qs[32 * g + m] >> (2 * t)) & 3) - 1) * d;
    }
}

/* ---------------------------------------------------------------- Q1_0 / Q2_0 */

void lmp_q1_0_from_f32(const float *x, void *dst, int64_t n)
{
    lmp_block_q1_0 *y = dst;
    for (int64_t i = 0; i < n / QK1_0; i++, x += QK1_0) {
        float s = 0.0f;
        for (int j = 0; j < QK1_0; j++)
            s += fabsf(x[j]);
        y[i].d = lmp_f32_to_f16(s / QK1_0);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int j = 0; j < QK1_0; j++)
            if (x[j] >= 0.0f)
                y[i].qs[j / 8] |= (uint8_t)(1 << (j % 8));
    }
}

void lmp_q1_0_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q1_0 *b = src;
    for (int64_t i = 0; i < n / QK1_0; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int j = 0; j < QK1_0; j++)
            *y++ = (b[i].qs[j / 8] >> (j % 8)) & 1 ? d : -d;
    }
}

void lmp_q2_0_from_f32(const float *x, void *dst, int64_t n)
{
    lmp_block_q2_0 *y = dst;
    for (int64_t i = 0; i < n / QK2_0; i++, x += QK2_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK2_0; j++)
            if (fabsf(x[j]) > amax)
                amax = fabsf(x[j]);
        const float d = amax, id = d > 0.0f ? 1.0f / d : 0.0f;
        y[i].d = lmp_f32_to_f16(d);
        memset(y[i].qs, 0, sizeof y[i].qs);
        for (int j = 0; j < QK2_0; j++) {
            int q = (int)roundf(x[j] * id) + 1;
            q = q < 0 ? 0 : q > 3 ? 3 : q;
            y[i].qs[j / 4] |= (uint8_t)(q << (2 * (j % 4)));
        }
    }
}

void lmp_q2_0_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_q2_0 *b = src;
    for (int64_t i = 0; i < n / QK2_0; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int j = 0; j < QK2_0; j++)
            *y++ = (float)(((b[i].qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
    }
}

