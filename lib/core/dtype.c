/*
 * The dtype traits table and exact float conversions. f16 and bf16 conversions round to
 * nearest even and handle NaN, Inf and subnormals exactly (checked against a reference
 * formula for all 65,536 inputs by tests/unit/test_core.c). The table is static const
 * and complete: every row's converters are bound at compile time. The simple block types
 * (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) have their dequantizer and reference quantizer here; the
 * others (k-quants, IQ*, TQ*, MXFP4, Q1_0, Q2_0) name the row codecs that lib/quant
 * defines and lib/core/blockcodec.h declares (core never includes a lib/quant header).
 */
#include "core.h"
#include "blockcodec.h"
#include "blocks.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

/* ---------------------------------------------------------------- scalar f16/bf16 */

static inline uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float lmp_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff;
    if (exp == 0x1f) /* Inf / NaN: keep payload, force quiet */
        return u2f(sign | 0x7f800000u | (man << 13) | (man ? 0x400000u : 0));
    if (exp == 0) {
        if (man == 0)
            return u2f(sign);
        /* subnormal: man * 2^-24 exactly */
        float v = (float)man * 0x1.0p-24f;
        return sign ? -v : v;
    }
    return u2f(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t lmp_f32_to_f16(float f)
{
    uint32_t u = f2u(f);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000);
    uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) /* NaN: quiet, keep top payload bits */
        return sign | 0x7e00 | (uint16_t)((a >> 13) & 0x3ff);
    if (a >= 0x477ff000u) /* >= 65520 rounds to Inf */
        return sign | 0x7c00;
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero in f16 */
        if (a < 0x33000000u) /* below 2^-25: rounds to zero (2^-25 itself ties to 0) */
            return sign;
        uint32_t e = a >> 23, m = (a & 0x7fffff) | 0x800000;
        int shift = 126 - (int)e; /* value = m * 2^(e-150); f16 units of 2^-24 */
        uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
            q++;
        return sign | (uint16_t)q;
    }
    /* normal: rebias and round mantissa from 23 to 10 bits (carry into exp is right) */
    uint32_t r = a - 0x38000000u;
    uint32_t q = r >> 13, rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1)))
        q++;
    return sign | (uint16_t)q;
}

float lmp_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t lmp_f32_to_bf16(float f)
{
    uint32_t u = f2u(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet */
        return (uint16_t)((u >> 16) | 0x40);
    u += 0x7fff + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

/* ---------------------------------------------------------------- row versions */

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) static void f16_to_f32_f16c(const uint16_t *s, float *d,
                                                                 int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(s + i))));
    for (; i < n; i++)
        d[i] = lmp_f16_to_f32(s[i]);
}

/* F16C rounds to nearest even and handles subnormals; NaN payloads are quieted the same
 * way as the scalar path (tested over all inputs). */
__attribute__((target("avx2,f16c"))) static void f32_to_f16_f16c(const float *s, uint16_t *d,
                                                                 int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(d + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(s + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        d[i] = lmp_f32_to_f16(s[i]);
}

__attribute__((target("avx2"))) static void bf16_to_f32_avx2(const uint16_t *s, float *d,
                                                             int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(s + i)));
        _mm256_storeu_si256((__m256i *)(d + i), _mm256_slli_epi32(v, 16));
    }
    for (; i < n; i++)
        d[i] = lmp_bf16_to_f32(s[i]);
}

/* AVX2 + F16C with OS support for the YMM state, read from CPUID directly (clang 14's
 * __builtin_cpu_supports does not know "f16c"). */
static int g_have_f16c = -1;
static bool have_f16c(void)
{
    if (g_have_f16c < 0) {
        unsigned a, b, c, d;
        bool ok = false;
        if (__get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) && (c & (1u << 27)) && (c & (1u << 28))) {
            unsigned lo, hi;
            __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
            if ((lo & 6) == 6 && __get_cpuid_count(7, 0, &a, &b, &c, &d) && (b & (1u << 5)))
                ok = true;
        }
        g_have_f16c = ok && !getenv("LMP_NO_SIMD");
    }
    return g_have_f16c;
}
#endif

void lmp_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
#if defined(__x86_64__)
    if (have_f16c()) {
        f16_to_f32_f16c(src, dst, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = lmp_f16_to_f32(src[i]);
}

void lmp_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n)
{
#if defined(__x86_64__)
    if (have_f16c()) {
        f32_to_f16_f16c(src, dst, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = lmp_f32_to_f16(src[i]);
}

void lmp_bf16_to_f32_row(const uint16_t *src, float *dst, int64_t n)
{
#if defined(__x86_64__)
    if (have_f16c()) {
        bf16_to_f32_avx2(src, dst, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++)
        dst[i] = lmp_bf16_to_f32(src[i]);
}

void lmp_f32_to_bf16_row(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = lmp_f32_to_bf16(src[i]);
}

/* ---------------------------------------------------------------- dense rows */

static void f32_to_f32(const void *s, float *d, int64_t n) { memcpy(d, s, (size_t)n * 4); }
static void f32_from_f32(const float *s, void *d, int64_t n) { memcpy(d, s, (size_t)n * 4); }
static void f16_to(const void *s, float *d, int64_t n) { lmp_f16_to_f32_row(s, d, n); }
static void f16_from(const float *s, void *d, int64_t n) { lmp_f32_to_f16_row(s, d, n); }
static void bf16_to(const void *s, float *d, int64_t n) { lmp_bf16_to_f32_row(s, d, n); }
static void bf16_from(const float *s, void *d, int64_t n) { lmp_f32_to_bf16_row(s, d, n); }
static void f64_to(const void *s, float *d, int64_t n)
{
    const double *p = s;
    for (int64_t i = 0; i < n; i++)
        d[i] = (float)p[i];
}
static void f64_from(const float *s, void *d, int64_t n)
{
    double *p = d;
    for (int64_t i = 0; i < n; i++)
        p[i] = s[i];
}
#define INT_CONV(T, nm)                                                                  \
    static void nm##_to(const void *s, float *d, int64_t n)                              \
    {                                                                                    \
        const T *p = s;                                                                  \
        for (int64_t i = 0; i < n; i++)                                                  \
            d[i] = (float)p[i];                                                          \
    }
INT_CONV(int8_t, i8)
INT_CONV(uint8_t, u8)
INT_CONV(int16_t, i16)
INT_CONV(int32_t, i32)
INT_CONV(int64_t, i64)

/* ---------------------------------------------------------------- block dequant */

static void q4_0_to(const void *src, float *y, int64_t n)
{
    const lmp_block_q4_0 *b = src;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        float d = lmp_f16_to_f32(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            y[i * QK4_0 + j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            y[i * QK4_0 + j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void q4_1_to(const void *src, float *y, int64_t n)
{
    const lmp_block_q4_1 *b = src;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        float d = lmp_f16_to_f32(b[i].d), m = lmp_f16_to_f32(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            y[i * QK4_1 + j] = (b[i].qs[j] & 0x0f) * d + m;
            y[i * QK4_1 + j + QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void q5_0_to(const void *src, float *y, int64_t n)
{
    const lmp_block_q5_0 *b = src;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        float d = lmp_f16_to_f32(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            y[i * QK5_0 + j] = (((b[i].qs[j] & 0x0f) | h0) - 16) * d;
            y[i * QK5_0 + j + QK5_0 / 2] = (((b[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void q5_1_to(const void *src, float *y, int64_t n)
{
    const lmp_block_q5_1 *b = src;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        float d = lmp_f16_to_f32(b[i].d), m = lmp_f16_to_f32(b[i].m);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int h0 = ((qh >> j) << 4) & 0x10, h1 = (qh >> (j + 12)) & 0x10;
            y[i * QK5_1 + j] = ((b[i].qs[j] & 0x0f) | h0) * d + m;
            y[i * QK5_1 + j + QK5_1 / 2] = ((b[i].qs[j] >> 4) | h1) * d + m;
        }
    }
}

static void q8_0_to(const void *src, float *y, int64_t n)
{
    const lmp_block_q8_0 *b = src;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float d = lmp_f16_to_f32(b[i].d);
        for (int j = 0; j < QK8_0; j++)
            y[i * QK8_0 + j] = b[i].qs[j] * d;
    }
}

/* ---------------------------------------------------------------- reference quantizers */

/* Q8_0: d = absmax / 127, q = round(x / d) (ggml's quantize_row_q8_0_ref). */
static void q8_0_from(const float *x, void *dst, int64_t n)
{
    lmp_block_q8_0 *b = dst;
    for (int64_t i = 0; i < n / QK8_0; i++) {
        float amax = 0;
        for (int j = 0; j < QK8_0; j++)
            amax = fmaxf(amax, fabsf(x[i * QK8_0 + j]));
        float d = amax / 127.f, id = d ? 1.f / d : 0.f;
        b[i].d = lmp_f32_to_f16(d);
        for (int j = 0; j < QK8_0; j++)
            b[i].qs[j] = (int8_t)roundf(x[i * QK8_0 + j] * id);
    }
}

/* Q4_0: d = (signed value of largest magnitude) / -8, q = clamp(trunc(x/d + 8.5), 15). */
static void q4_0_from(const float *x, void *dst, int64_t n)
{
    lmp_block_q4_0 *b = dst;
    for (int64_t i = 0; i < n / QK4_0; i++) {
        const float *v = x + i * QK4_0;
        float amax = 0, max = 0;
        for (int j = 0; j < QK4_0; j++)
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        float d = max / -8, id = d ? 1.0f / d : 0.0f;
        b[i].d = lmp_f32_to_f16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            int q0 = (int)(v[j] * id + 8.5f), q1 = (int)(v[j + QK4_0 / 2] * id + 8.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q4_1: d = (max - min) / 15, m = min, q = clamp(trunc((x - min)/d + 0.5), 15). */
static void q4_1_from(const float *x, void *dst, int64_t n)
{
    lmp_block_q4_1 *b = dst;
    for (int64_t i = 0; i < n / QK4_1; i++) {
        const float *v = x + i * QK4_1;
        float mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < QK4_1; j++) {
            mn = fminf(mn, v[j]);
            mx = fmaxf(mx, v[j]);
        }
        float d = (mx - mn) / 15, id = d ? 1.0f / d : 0.0f;
        b[i].d = lmp_f32_to_f16(d);
        b[i].m = lmp_f32_to_f16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            int q0 = (int)((v[j] - mn) * id + 0.5f), q1 = (int)((v[j + 16] - mn) * id + 0.5f);
            q0 = q0 > 15 ? 15 : q0;
            q1 = q1 > 15 ? 15 : q1;
            b[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

/* Q5_0: d = max / -16, q = clamp(trunc(x/d + 16.5), 31), 5th bits in qh. */
static void q5_0_from(const float *x, void *dst, int64_t n)
{
    lmp_block_q5_0 *b = dst;
    for (int64_t i = 0; i < n / QK5_0; i++) {
        const float *v = x + i * QK5_0;
        float amax = 0, max = 0;
        for (int j = 0; j < QK5_0; j++)
            if (fabsf(v[j]) > amax) {
                amax = fabsf(v[j]);
                max = v[j];
            }
        float d = max / -16, id = d ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b[i].d = lmp_f32_to_f16(d);
        for (int j = 0; j < QK5_0 / 2; j++) {
            int q0 = (int)(v[j] * id + 16.5f), q1 = (int)(v[j + 16] * id + 16.5f);
            q0 = q0 > 31 ? 31 : q0;
            q1 = q1 > 31 ? 31 : q1;
            b[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= ((uint32_t)(q0 & 0x10) >> 4) << j;
            qh |= ((uint32_t)(q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b[i].qh, &qh, 4);
    }
}

static void q5_1_from(const float *x, void *dst, int64_t n)
{
    lmp_block_q5_1 *b = dst;
    for (int64_t i = 0; i < n / QK5_1; i++) {
        const float *v = x + i * QK5_1;
        float mn = INFINITY, mx = -INFINITY;
        for (int j = 0; j < QK5_1; j++) {
            mn = fminf(mn, v[j]);
            mx = fmaxf(mx, v[j]);
        }
        float d = (mx - mn) / 31, id = d ? 1.0f / d : 0.0f;
        uint32_t qh = 0;
        b[i].d = lmp_f32_to_f16(d);
        b[i].m = lmp_f32_to_f16(mn);
        for (int j = 0; j < QK5_1 / 2; j++) {
            int q0 = (int)((v[j] - mn) * id + 0.5f), q1 = (int)((v[j + 16] - mn) * id + 0.5f);
            q0 = q0 > 31 ? 31 : q0;
            q1 = q1 > 31 ? 31 : q1;
            b[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= ((uint32_t)(q0 & 0x10) >> 4) << j;
            qh |= ((uint32_t)(q1 & 0x10) >> 4) << (j + 16);
        }
        memcpy(b[i].qh, &qh, 4);
    }
}

/* ---------------------------------------------------------------- the table */

/* One row per lmp_dtype, in enum order: name, safetensors name, GGUF ggml_type, block
 * size, block bytes, is_float, is_quant, to_f32, from_f32. */
static const lmp_dtype_traits g_traits[LMP_DT_COUNT] = {
    [LMP_DT_F32] = {"f32", "F32", 0, 1, 4, true, false, f32_to_f32, f32_from_f32},
    [LMP_DT_F16] = {"f16", "F16", 1, 1, 2, true, false, f16_to, f16_from},
    [LMP_DT_BF16] = {"bf16", "BF16", 30, 1, 2, true, false, bf16_to, bf16_from},
    [LMP_DT_F64] = {"f64", "F64", 28, 1, 8, true, false, f64_to, f64_from},
    [LMP_DT_I8] = {"i8", "I8", 24, 1, 1, false, false, i8_to, NULL},
    [LMP_DT_U8] = {"u8", "U8", -1, 1, 1, false, false, u8_to, NULL},
    [LMP_DT_I16] = {"i16", "I16", 25, 1, 2, false, false, i16_to, NULL},
    [LMP_DT_I32] = {"i32", "I32", 26, 1, 4, false, false, i32_to, NULL},
    [LMP_DT_I64] = {"i64", "I64", 27, 1, 8, false, false, i64_to, NULL},
    [LMP_DT_BOOL] = {"bool", "BOOL", -1, 1, 1, false, false, u8_to, NULL},
    [LMP_DT_Q4_0] = {"q4_0", NULL, 2, QK4_0, sizeof(lmp_block_q4_0), false, true, q4_0_to, q4_0_from},
    [LMP_DT_Q4_1] = {"q4_1", NULL, 3, QK4_1, sizeof(lmp_block_q4_1), false, true, q4_1_to, q4_1_from},
    [LMP_DT_Q5_0] = {"q5_0", NULL, 6, QK5_0, sizeof(lmp_block_q5_0), false, true, q5_0_to, q5_0_from},
    [LMP_DT_Q5_1] = {"q5_1", NULL, 7, QK5_1, sizeof(lmp_block_q5_1), false, true, q5_1_to, q5_1_from},
    [LMP_DT_Q8_0] = {"q8_0", NULL, 8, QK8_0, sizeof(lmp_block_q8_0), false, true, q8_0_to, q8_0_from},
    [LMP_DT_Q2_K] = {"q2_k", NULL, 10, QK_K, sizeof(lmp_block_q2_k), false, true, lmp_q2_k_to_f32, lmp_q2_k_from_f32},
    [LMP_DT_Q3_K] = {"q3_k", NULL, 11, QK_K, sizeof(lmp_block_q3_k), false, true, lmp_q3_k_to_f32, lmp_q3_k_from_f32},
    [LMP_DT_Q4_K] = {"q4_k", NULL, 12, QK_K, sizeof(lmp_block_q4_k), false, true, lmp_q4_k_to_f32, lmp_q4_k_from_f32},
    [LMP_DT_Q5_K] = {"q5_k", NULL, 13, QK_K, sizeof(lmp_block_q5_k), false, true, lmp_q5_k_to_f32, lmp_q5_k_from_f32},
    [LMP_DT_Q6_K] = {"q6_k", NULL, 14, QK_K, sizeof(lmp_block_q6_k), false, true, lmp_q6_k_to_f32, lmp_q6_k_from_f32},
    /* low-bit types (codecs in lib/quant/iquants.c, iq3/iq2/iq1quants.c, tquants.c) */
    [LMP_DT_IQ4_NL] = {"iq4_nl", NULL, 20, QK4_NL, sizeof(lmp_block_iq4_nl), false, true, lmp_iq4_nl_to_f32, lmp_iq4_nl_from_f32},
    [LMP_DT_IQ4_XS] = {"iq4_xs", NULL, 23, QK_K, sizeof(lmp_block_iq4_xs), false, true, lmp_iq4_xs_to_f32, lmp_iq4_xs_from_f32},
    [LMP_DT_MXFP4] = {"mxfp4", NULL, 39, QK_MXFP4, sizeof(lmp_block_mxfp4), false, true, lmp_mxfp4_to_f32, lmp_mxfp4_from_f32},
    [LMP_DT_TQ1_0] = {"tq1_0", NULL, 34, QK_K, sizeof(lmp_block_tq1_0), false, true, lmp_tq1_0_to_f32, lmp_tq1_0_from_f32},
    [LMP_DT_TQ2_0] = {"tq2_0", NULL, 35, QK_K, sizeof(lmp_block_tq2_0), false, true, lmp_tq2_0_to_f32, lmp_tq2_0_from_f32},
    [LMP_DT_Q1_0] = {"q1_0", NULL, 41, QK1_0, sizeof(lmp_block_q1_0), false, true, lmp_q1_0_to_f32, lmp_q1_0_from_f32},
    [LMP_DT_Q2_0] = {"q2_0", NULL, 42, QK2_0, sizeof(lmp_block_q2_0), false, true, lmp_q2_0_to_f32, lmp_q2_0_from_f32},
    [LMP_DT_IQ3_XXS] = {"iq3_xxs", NULL, 18, QK_K, sizeof(lmp_block_iq3_xxs), false, true, lmp_iq3_xxs_to_f32, lmp_iq3_xxs_from_f32},
    [LMP_DT_IQ3_S] = {"iq3_s", NULL, 21, QK_K, sizeof(lmp_block_iq3_s), false, true, lmp_iq3_s_to_f32, lmp_iq3_s_from_f32},
    [LMP_DT_IQ2_XXS] = {"iq2_xxs", NULL, 16, QK_K, sizeof(lmp_block_iq2_xxs), false, true, lmp_iq2_xxs_to_f32, lmp_iq2_xxs_from_f32},
    [LMP_DT_IQ2_XS] = {"iq2_xs", NULL, 17, QK_K, sizeof(lmp_block_iq2_xs), false, true, lmp_iq2_xs_to_f32, lmp_iq2_xs_from_f32},
    [LMP_DT_IQ2_S] = {"iq2_s", NULL, 22, QK_K, sizeof(lmp_block_iq2_s), false, true, lmp_iq2_s_to_f32, lmp_iq2_s_from_f32},
    [LMP_DT_IQ1_S] = {"iq1_s", NULL, 19, QK_K, sizeof(lmp_block_iq1_s), false, true, lmp_iq1_s_to_f32, lmp_iq1_s_from_f32},
    [LMP_DT_IQ1_M] = {"iq1_m", NULL, 29, QK_K, sizeof(lmp_block_iq1_m), false, true, lmp_iq1_m_to_f32, lmp_iq1_m_from_f32},
};

const lmp_dtype_traits *lmp_dtype_info(lmp_dtype t)
{
    return (unsigned)t < LMP_DT_COUNT ? &g_traits[t] : NULL;
}

int lmp_dtype_from_name(const char *name)
{
    for (int i = 0; i < LMP_DT_COUNT; i++)
        if (strcasecmp(name, g_traits[i].name) == 0)
            return i;
    return -1;
}

int lmp_dtype_from_st_name(const char *st_name)
{
    for (int i = 0; i < LMP_DT_COUNT; i++)
        if (g_traits[i].st_name && strcmp(st_name, g_traits[i].st_name) == 0)
            return i;
    return -1;
}

int lmp_dtype_from_ggml(int ggml_type)
{
    for (int i = 0; i < LMP_DT_COUNT; i++)
        if (g_traits[i].ggml_type == ggml_type && ggml_type >= 0)
            return i;
    return -1;
}

size_t lmp_dtype_row_bytes(lmp_dtype t, int64_t n)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t);
    if (!tr || n < 0 || n % tr->block_size)
        return 0;
    return (size_t)(n / tr->block_size) * tr->type_size;
}

int lmp_convert_row(lmp_dtype from, const void *src, lmp_dtype to, void *dst, int64_t n)
{
    const lmp_dtype_traits *a = lmp_dtype_info(from), *b = lmp_dtype_info(to);
    if (!a || !b)
        return lmp_err(LMP_EINVAL, "convert: bad dtype");
    if (from == to) {
        memcpy(dst, src, lmp_dtype_row_bytes(from, n));
        return LMP_OK;
    }
    if (!a->to_f32 || !b->from_f32)
        return lmp_err(LMP_EUNSUPPORTED, "cannot convert %s to %s", a->name, b->name);
    if (n % a->block_size || n % b->block_size)
        return lmp_err(LMP_EINVAL, "convert %s -> %s: %lld elements is not a multiple of the block size",
                       a->name, b->name, (long long)n);
    if (from == LMP_DT_F32) {
        b->from_f32(src, dst, n);
        return LMP_OK;
    }
    if (to == LMP_DT_F32) {
        a->to_f32(src, dst, n);
        return LMP_OK;
    }
    enum { CHUNK = 4096 }; /* multiple of every block size */
    float buf[CHUNK];
    size_t sa = lmp_dtype_row_bytes(from, CHUNK), sb = lmp_dtype_row_bytes(to, CHUNK);
    for (int64_t i = 0; i < n; i += CHUNK) {
        int64_t k = n - i < CHUNK ? n - i : CHUNK;
        a->to_f32((const uint8_t *)src + (size_t)(i / CHUNK) * sa, buf, k);
        b->from_f32(buf, (uint8_t *)dst + (size_t)(i / CHUNK) * sb, k);
    }
    return LMP_OK;
}

/* ---------------------------------------------------------------- tensor */

int64_t lmp_tensor_nelem(const lmp_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

int lmp_tensor_alloc(lmp_tensor *t, const char *name, lmp_dtype dt, int ndim, const int64_t *shape)
{
    memset(t, 0, sizeof *t);
    if (ndim < 0 || ndim > LMP_MAX_DIMS)
        return lmp_err(LMP_EINVAL, "%s: %d dims (at most %d)", name, ndim, LMP_MAX_DIMS);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    int64_t inner = ndim ? shape[ndim - 1] : 1;
    size_t row = lmp_dtype_row_bytes(dt, inner);
    if (ndim && inner && !row)
        return lmp_err(LMP_EINVAL, "%s: row of %lld is not a multiple of %s's block size", name,
                       (long long)inner, lmp_dtype_info(dt)->name);
    t->nbytes = inner ? row * (size_t)(lmp_tensor_nelem(t) / inner) : 0;
    t->data = calloc(1, t->nbytes ? t->nbytes : 1);
    if (!t->data)
        return lmp_err(LMP_ENOMEM, "%s: cannot allocate %zu bytes", name, t->nbytes);
    t->owned = true;
    return LMP_OK;
}

void lmp_tensor_free(lmp_tensor *t)
{
    if (!t)
        return;
    if (t->owned)
        free(t->data);
    t->data = NULL;
    t->owned = false;
}

int lmp_tensor_to_f32(const lmp_tensor *t, float **out)
{
    int64_t n = lmp_tensor_nelem(t);
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    *out = NULL;
    if (!tr->to_f32)
        return lmp_err(LMP_EUNSUPPORTED, "%s: cannot convert %s to f32", t->name, tr->name);
    float *buf = malloc((size_t)(n ? n : 1) * sizeof(float));
    if (!buf)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    tr->to_f32(t->data, buf, n);
    *out = buf;
    return LMP_OK;
}

const char *lmp_shape_str(const lmp_tensor *t, char *buf, size_t len)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int i = 0; i < t->ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}
