/*
 * AVX2 + FMA + F16C kernels: the 6 x 16 register tile of the batched gemm (12 ymm
 * accumulators, 2 weight vectors and one broadcast of X per k), fused
 * dequantize-and-dot rows for decoding, SIMD dequantization of weight panels, and the
 * small helpers. Per-function target attributes: the library still runs on plain x86-64
 * (the driver selects this variant only when the CPU has AVX2, FMA and F16C).
 * Checked against kernels_ref.c by tests/unit/test_kernels.c.
 */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include "../core/blocks.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define T256 __attribute__((target("avx2,fma,f16c")))

/* ---------------------------------------------------------------- register tile */

#define MR 6
#define NR 16

T256 static void ukr_6x16(int64_t kc, const float *xp, const float *wp, float *y, int64_t ldy,
                          int m, int n)
{
#define DECL(i) __m256 c##i##a = _mm256_setzero_ps(), c##i##b = _mm256_setzero_ps();
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5)
#undef DECL
    /* the Y tile is usually out of L2 by now (K blocks are the outer loop) */
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(y + i * ldy), _MM_HINT_T0);
        _mm_prefetch((const char *)(y + i * ldy + 15), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(wp), b1 = _mm256_load_ps(wp + 8);
        __m256 a;
#define ROW(i)                                                                           \
    a = _mm256_broadcast_ss(xp + i);                                                     \
    c##i##a = _mm256_fmadd_ps(a, b0, c##i##a);                                           \
    c##i##b = _mm256_fmadd_ps(a, b1, c##i##b);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
#undef ROW
        xp += MR;
        wp += NR;
    }
    if (m == MR && n == NR) {
#define ST(i)                                                                            \
    _mm256_storeu_ps(y + i * ldy, _mm256_add_ps(_mm256_loadu_ps(y + i * ldy), c##i##a));     \
    _mm256_storeu_ps(y + i * ldy + 8, _mm256_add_ps(_mm256_loadu_ps(y + i * ldy + 8), c##i##b));
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
#undef ST
    } else {
        float t[MR][NR];
#define ST(i)                                                                            \
    _mm256_storeu_ps(t[i], c##i##a);                                                     \
    _mm256_storeu_ps(t[i] + 8, c##i##b);
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
#undef ST
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
                y[i * ldy + j] += t[i][j];
    }
}

/* In-register 8 x 8 transpose: on return r[j] holds column j of the input rows. */
T256 static inline void transpose8_regs(__m256 r[8])
{
    __m256 t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    /* r[p] (p < 4): lane c holds column 4c+p of rows 0-3; r[4+p] the same for rows 4-7 */
    for (int p = 0; p < 4; p++) {
        t[p] = _mm256_permute2f128_ps(r[p], r[p + 4], 0x20);
        t[p + 4] = _mm256_permute2f128_ps(r[p], r[p + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}

/* 8 x 8 transpose of floats (src rows lds apart, dst rows ldd apart). */
T256 static void transpose8(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m256 r[8];
    for (int i = 0; i < 8; i++)
        r[i] = _mm256_loadu_ps(src + i * lds);
    transpose8_regs(r);
    for (int i = 0; i < 8; i++)
        _mm256_storeu_ps(dst + i * ldd, r[i]);
}

/* xp[k][6] = x[i][k]: 6 rows by 8 columns at a time (2 zero rows pad the transpose; the
 * stores overlap forward, so each 8-float store is followed by the next column's). */
T256 static void pack_x_6(const float *x, int64_t ldx, int rows, int64_t kc, float *xp)
{
    int64_t k = 0;
    if (rows == MR) {
        const __m256i keep6 = _mm256_setr_epi32(-1, -1, -1, -1, -1, -1, 0, 0);
        for (; k + 8 <= kc; k += 8) {
            __m256 r[8];
            for (int i = 0; i < MR; i++)
                r[i] = _mm256_loadu_ps(x + i * ldx + k);
            r[6] = r[7] = _mm256_setzero_ps();
            transpose8_regs(r);
            for (int j = 0; j < 8; j++)
                _mm256_maskstore_ps(xp + (k + j) * MR, keep6, r[j]);
        }
    }
    if (k < kc)
        lmp_k_pack_x(x + k, ldx, rows, kc - k, MR, xp + k * MR);
}

T256 static void pack_w_16(const float *src, int64_t lds, int rows, int64_t kc, float *wp)
{
    if (rows < NR || (kc & 7)) {
        lmp_k_pack_w_generic(src, lds, rows, kc, NR, wp);
        return;
    }
    for (int64_t k = 0; k < kc; k += 8) {
        transpose8(src + k, lds, wp + k * NR, NR);
        transpose8(src + 8 * lds + k, lds, wp + k * NR + 8, NR);
    }
}

/* ---------------------------------------------------------------- weight rows */

T256 static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

T256 static inline __m256 load_f32(const float *p) { return _mm256_loadu_ps(p); }
T256 static inline __m256 load_f16(const uint16_t *p)
{
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
T256 static inline __m256 load_bf16(const uint16_t *p)
{
    return _mm256_castsi256_ps(
        _mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}
static inline float sc_f32(const float *p) { return *p; }
static inline float sc_f16(const uint16_t *p) { return lmp_f16_to_f32(*p); }
static inline float sc_bf16(const uint16_t *p) { return lmp_bf16_to_f32(*p); }

#define DENSE(nm, T)                                                                     \
    T256 static float dot_##nm(const void *row, const float *x, int64_t n)               \
    {                                                                                    \
        const T *w = row;                                                                \
        __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                      \
        int64_t i = 0;                                                                   \
        for (; i + 32 <= n; i += 32) {                                                   \
            s0 = _mm256_fmadd_ps(load_##nm(w + i), _mm256_loadu_ps(x + i), s0);          \
            s1 = _mm256_fmadd_ps(load_##nm(w + i + 8), _mm256_loadu_ps(x + i + 8), s1);  \
            s2 = _mm256_fmadd_ps(load_##nm(w + i + 16), _mm256_loadu_ps(x + i + 16), s2); \
            s3 = _mm256_fmadd_ps(load_##nm(w + i + 24), _mm256_loadu_ps(x + i + 24), s3); \
        }                                                                                \
        for (; i + 8 <= n; i += 8)                                                       \
            s0 = _mm256_fmadd_ps(load_##nm(w + i), _mm256_loadu_ps(x + i), s0);          \
        float s = hsum(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));     \
        for (; i < n; i++)                                                               \
            s += sc_##nm(w + i) * x[i];                                                  \
        return s;                                                                        \
    }                                                                                    \
    T256 static void to_##nm(const void *row, int64_t k0, int64_t n, float *dst)         \
    {                                                                                    \
        const T *w = (const T *)row + k0;                                                \
        int64_t i = 0;                                                                   \
        for (; i + 8 <= n; i += 8)                                                       \
            _mm256_storeu_ps(dst + i, load_##nm(w + i));                                 \
        for (; i < n; i++)                                                               \
            dst[i] = sc_##nm(w + i);                                                     \
    }
DENSE(f32, float)
DENSE(f16, uint16_t)
DENSE(bf16, uint16_t)

/* Four rows of X against one weight row, the weights decoded once: the streaming path
 * for small M (rows past nx repeat row 0 and are discarded). */
#define DENSE_DOTN(nm, T)                                                                \
    T256 static void dotn_##nm(const void *row, const float *x, int64_t ldx, int nx,     \
                               int64_t n, float *out)                                    \
    {                                                                                    \
        const T *w = row;                                                                \
        const float *xr[4] = {x, nx > 1 ? x + ldx : x, nx > 2 ? x + 2 * ldx : x,         \
                              nx > 3 ? x + 3 * ldx : x};                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        __m256 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                       \
        int64_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16) {                                                   \
            const __m256 w0 = load_##nm(w + i), w1 = load_##nm(w + i + 8);               \
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[0] + i), a0);                    \
            b0 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[0] + i + 8), b0);                \
            a1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[1] + i), a1);                    \
            b1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[1] + i + 8), b1);                \
            a2 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[2] + i), a2);                    \
            b2 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[2] + i + 8), b2);                \
            a3 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[3] + i), a3);                    \
            b3 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xr[3] + i + 8), b3);                \
        }                                                                                \
        for (; i + 8 <= n; i += 8) {                                                     \
            const __m256 w0 = load_##nm(w + i);                                          \
            a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[0] + i), a0);                    \
            a1 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[1] + i), a1);                    \
            a2 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[2] + i), a2);                    \
            a3 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xr[3] + i), a3);                    \
        }                                                                                \
        float r[4] = {hsum(_mm256_add_ps(a0, b0)), hsum(_mm256_add_ps(a1, b1)),          \
                      hsum(_mm256_add_ps(a2, b2)), hsum(_mm256_add_ps(a3, b3))};         \
        for (; i < n; i++) {                                                             \
            const float wi = sc_##nm(w + i);                                             \
            for (int j = 0; j < 4; j++)                                                  \
                r[j] += wi * xr[j][i];                                                   \
        }                                                                                \
        for (int j = 0; j < nx; j++)                                                     \
            out[j] = r[j];                                                               \
    }
DENSE_DOTN(f32, float)
DENSE_DOTN(f16, uint16_t)
DENSE_DOTN(bf16, uint16_t)

/* Block decoders: the 32 quants of a block as four float vectors (elements 0-7, 8-15,
 * 16-23, 24-31), unscaled, plus d (and m for the _1 types); value = q * d (+ m). */
T256 static inline void dq_q8_0(const lmp_block_q8_0 *b, __m256 q[4], float *d, float *m)
{
    for (int g = 0; g < 4; g++)
        q[g] = _mm256_cvtepi32_ps(
            _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + 8 * g))));
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

/* elements 0-15 are the low nibbles of qs[0..15], 16-31 the high nibbles */
T256 static inline void nibbles(const uint8_t *qs, __m256i q[4])
{
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), f = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(v, f), hi = _mm_and_si128(_mm_srli_epi16(v, 4), f);
    q[0] = _mm256_cvtepu8_epi32(lo);
    q[1] = _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8));
    q[2] = _mm256_cvtepu8_epi32(hi);
    q[3] = _mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8));
}

T256 static inline void fifth_bits(const uint8_t *qhp, __m256i q[4])
{
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    const __m256i sh = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), one = _mm256_set1_epi32(1);
    for (int g = 0; g < 4; g++) {
        __m256i bits = _mm256_and_si256(
            _mm256_srlv_epi32(_mm256_set1_epi32((int)((qh >> (8 * g)) & 0xff)), sh), one);
        q[g] = _mm256_or_si256(q[g], _mm256_slli_epi32(bits, 4));
    }
}

T256 static inline void to_float(__m256i qi[4], int off, __m256 q[4])
{
    const __m256i o = _mm256_set1_epi32(off);
    for (int g = 0; g < 4; g++)
        q[g] = _mm256_cvtepi32_ps(_mm256_sub_epi32(qi[g], o));
}

T256 static inline void dq_q4_0(const lmp_block_q4_0 *b, __m256 q[4], float *d, float *m)
{
    __m256i qi[4];
    nibbles(b->qs, qi);
    to_float(qi, 8, q);
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

T256 static inline void dq_q4_1(const lmp_block_q4_1 *b, __m256 q[4], float *d, float *m)
{
    __m256i qi[4];
    nibbles(b->qs, qi);
    to_float(qi, 0, q);
    *d = _cvtsh_ss(b->d);
    *m = _cvtsh_ss(b->m);
}

T256 static inline void dq_q5_0(const lmp_block_q5_0 *b, __m256 q[4], float *d, float *m)
{
    __m256i qi[4];
    nibbles(b->qs, qi);
    fifth_bits(b->qh, qi);
    to_float(qi, 16, q);
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

T256 static inline void dq_q5_1(const lmp_block_q5_1 *b, __m256 q[4], float *d, float *m)
{
    __m256i qi[4];
    nibbles(b->qs, qi);
    fifth_bits(b->qh, qi);
    to_float(qi, 0, q);
    *d = _cvtsh_ss(b->d);
    *m = _cvtsh_ss(b->m);
}

#define BLOCK_KERNELS(nm, BT, HAS_M)                                                     \
    T256 static void to_##nm(const void *row, int64_t k0, int64_t n, float *dst)         \
    {                                                                                    \
        const BT *b = (const BT *)row + k0 / 32;                                         \
        for (int64_t i = 0; i < n / 32; i++) {                                           \
            __m256 q[4];                                                                 \
            float d, m;                                                                  \
            dq_##nm(b + i, q, &d, &m);                                                   \
            const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);                 \
            for (int g = 0; g < 4; g++) {                                                \
                __m256 y = _mm256_mul_ps(q[g], vd);                                      \
                if (HAS_M)                                                               \
                    y = _mm256_add_ps(y, vm);                                            \
                _mm256_storeu_ps(dst + 32 * i + 8 * g, y);                               \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    T256 static inline void step_##nm(const BT *b, const float *xb, __m256 *acc, __m256 *accm) \
    {                                                                                    \
        __m256 q[4];                                                                     \
        float d, m;                                                                      \
        dq_##nm(b, q, &d, &m);                                                           \
        const __m256 x0 = _mm256_loadu_ps(xb), x1 = _mm256_loadu_ps(xb + 8);             \
        const __m256 x2 = _mm256_loadu_ps(xb + 16), x3 = _mm256_loadu_ps(xb + 24);       \
        __m256 t0 = _mm256_fmadd_ps(q[1], x1, _mm256_mul_ps(q[0], x0));                  \
        __m256 t1 = _mm256_fmadd_ps(q[3], x3, _mm256_mul_ps(q[2], x2));                  \
        *acc = _mm256_fmadd_ps(_mm256_add_ps(t0, t1), _mm256_set1_ps(d), *acc);          \
        if (HAS_M) {                                                                     \
            __m256 sx = _mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3));     \
            *accm = _mm256_fmadd_ps(sx, _mm256_set1_ps(m), *accm);                       \
        }                                                                                \
    }                                                                                    \
    T256 static float dot_##nm(const void *row, const float *x, int64_t n)               \
    {                                                                                    \
        const BT *b = row;                                                               \
        const int64_t nb = n / 32;                                                       \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, m0 = a0, m1 = a0;                      \
        int64_t i = 0;                                                                   \
        for (; i + 2 <= nb; i += 2) {                                                    \
            step_##nm(b + i, x + 32 * i, &a0, &m0);                                      \
            step_##nm(b + i + 1, x + 32 * i + 32, &a1, &m1);                             \
        }                                                                                \
        if (i < nb)                                                                      \
            step_##nm(b + i, x + 32 * i, &a0, &m0);                                      \
        __m256 s = _mm256_add_ps(a0, a1);                                                \
        if (HAS_M)                                                                       \
            s = _mm256_add_ps(s, _mm256_add_ps(m0, m1));                                 \
        return hsum(s);                                                                  \
    }

BLOCK_KERNELS(q8_0, lmp_block_q8_0, 0)
BLOCK_KERNELS(q4_0, lmp_block_q4_0, 0)
BLOCK_KERNELS(q4_1, lmp_block_q4_1, 1)
BLOCK_KERNELS(q5_0, lmp_block_q5_0, 0)
BLOCK_KERNELS(q5_1, lmp_block_q5_1, 1)

#define BLOCK_DOTN(nm, BT, HAS_M)                                                        \
    T256 static void dotn_##nm(const void *row, const float *x, int64_t ldx, int nx,     \
                               int64_t n, float *out)                                    \
    {                                                                                    \
        const BT *b = row;                                                               \
        const float *xr[4] = {x, nx > 1 ? x + ldx : x, nx > 2 ? x + 2 * ldx : x,         \
                              nx > 3 ? x + 3 * ldx : x};                                 \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        __m256 m0 = a0, m1 = a0, m2 = a0, m3 = a0;                                       \
        for (int64_t i = 0; i < n / 32; i++) {                                           \
            __m256 q[4];                                                                 \
            float d, m;                                                                  \
            dq_##nm(b + i, q, &d, &m);                                                   \
            const __m256 vd = _mm256_set1_ps(d), vm = _mm256_set1_ps(m);                 \
            (void)vm;                                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                          \
            {                                                                            \
                const float *xb = xr[r] + 32 * i;                                        \
                const __m256 y0 = _mm256_loadu_ps(xb), y1 = _mm256_loadu_ps(xb + 8);     \
                const __m256 y2 = _mm256_loadu_ps(xb + 16), y3 = _mm256_loadu_ps(xb + 24); \
                __m256 t = _mm256_fmadd_ps(q[1], y1, _mm256_mul_ps(q[0], y0));           \
                t = _mm256_fmadd_ps(q[2], y2, t);                                        \
                t = _mm256_fmadd_ps(q[3], y3, t);                                        \
                __m256 *acc = r == 0 ? &a0 : r == 1 ? &a1 : r == 2 ? &a2 : &a3;           \
                __m256 *accm = r == 0 ? &m0 : r == 1 ? &m1 : r == 2 ? &m2 : &m3;          \
                *acc = _mm256_fmadd_ps(t, vd, *acc);                                     \
                if (HAS_M)                                                               \
                    *accm = _mm256_fmadd_ps(                                             \
                        _mm256_add_ps(_mm256_add_ps(y0, y1), _mm256_add_ps(y2, y3)), vm, *accm); \
            }                                                                            \
        }                                                                                \
        const __m256 s[4] = {_mm256_add_ps(a0, m0), _mm256_add_ps(a1, m1),               \
                             _mm256_add_ps(a2, m2), _mm256_add_ps(a3, m3)};              \
        for (int j = 0; j < nx; j++)                                                     \
            out[j] = hsum(s[j]);                                                         \
    }
BLOCK_DOTN(q8_0, lmp_block_q8_0, 0)
BLOCK_DOTN(q4_0, lmp_block_q4_0, 0)
BLOCK_DOTN(q4_1, lmp_block_q4_1, 1)
BLOCK_DOTN(q5_0, lmp_block_q5_0, 0)
BLOCK_DOTN(q5_1, lmp_block_q5_1, 1)

/* ---------------------------------------------------------------- helpers */

/* exp(x) for f32 lanes: Cody-Waite reduction by ln 2, Cephes' degree-6 polynomial
 * (expf.c), 2^n built in the exponent field. Relative error about 2 ulp; inputs below
 * -87.3 (results in the subnormal range) give 0, above 88.3 are clamped (2.2e38). */
T256 static inline __m256 exp256(__m256 x)
{
    const __m256 lo = _mm256_set1_ps(-87.33f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.3f)), lo);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

T256 static float h_dot_f32(const float *a, const float *b, int64_t n) { return dot_f32(a, b, n); }

T256 static void h_axpy_f32(float *y, float a, const float *x, int64_t n)
{
    const __m256 va = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++)
        y[i] = fmaf(a, x[i], y[i]);
}

T256 static void h_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
        __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
        s0 = _mm256_fmadd_pd(a, a, s0);
        s1 = _mm256_fmadd_pd(b, b, s1);
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double ss = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    const __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                              _mm256_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

/* gelu_tanh(g) * u as g / (1 + exp(-2z)) * u, z = sqrt(2/pi) (g + 0.044715 g^3)
 * (kernels.h: lmp_gelu_mul). */
T256 static void h_gelu_mul(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f), c = _mm256_set1_ps(0.044715f);
    const __m256 m2k = _mm256_set1_ps(-2.0f * 0.7978845608028654f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(g + i);
        const __m256 z = _mm256_mul_ps(m2k, _mm256_fmadd_ps(_mm256_mul_ps(c, v), _mm256_mul_ps(v, v), v));
        const __m256 s = _mm256_div_ps(v, _mm256_add_ps(one, exp256(z)));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) {
        const float x = g[i];
        g[i] = x / (1.0f + expf(-2.0f * 0.7978845608028654f * (0.044715f * x * (x * x) + x))) * u[i];
    }
}

T256 static void h_silu_mul(float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(g + i);
        __m256 e = exp256(_mm256_sub_ps(_mm256_setzero_ps(), v));
        __m256 s = _mm256_div_ps(v, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

T256 static float vmax(const float *x, int64_t n)
{
    __m256 m = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        m = _mm256_max_ps(m, _mm256_loadu_ps(x + i));
    float t[8], r = -INFINITY;
    _mm256_storeu_ps(t, m);
    for (int j = 0; j < 8; j++)
        r = t[j] > r ? t[j] : r;
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

/* sum of exp(x - mx) in double; writes the exponentials to out when out != NULL */
T256 static double sum_exp(const float *x, int64_t n, float mx, float *out)
{
    const __m256 vm = _mm256_set1_ps(mx);
    __m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 e = exp256(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        if (out)
            _mm256_storeu_ps(out + i, e);
        s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(s0, s1));
    double s = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < n; i++) {
        float e = expf(x[i] - mx);
        if (out)
            out[i] = e;
        s += e;
    }
    return s;
}

T256 static void h_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    const double s = sum_exp(x, n, vmax(x, n), x);
    const __m256 inv = _mm256_set1_ps((float)(1.0 / s));
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= (float)(1.0 / s);
}

T256 static double h_logsumexp(const float *x, int64_t n)
{
    if (n <= 0)
        return -INFINITY;
    const float m = vmax(x, n);
    if (isinf(m))
        return m;
    return m + log(sum_exp(x, n, m, NULL));
}

/* ---------------------------------------------------------------- rounded activations */

/* Q8 activations (kernels_internal.h: LMP_ACT_Q8), bitwise as the reference: max is
 * exact, d and 1/d single f32 operations, cvtps2dq rounds to nearest even. */
T256 static void quant_q8(const float *x, int64_t n, void *xq)
{
    int8_t *q = xq;
    float *d = (float *)lmp_xq8_d(xq, n);
    int32_t *s = (int32_t *)lmp_xq8_s(xq, n);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        __m256 v[4], m = _mm256_setzero_ps();
        for (int g = 0; g < 4; g++) {
            v[g] = _mm256_loadu_ps(xb + 8 * g);
            m = _mm256_max_ps(m, _mm256_and_ps(v[g], absmask));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h);
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        __m256i i[4], sum = _mm256_setzero_si256();
        for (int g = 0; g < 4; g++) {
            i[g] = _mm256_cvtps_epi32(_mm256_mul_ps(v[g], vid));
            sum = _mm256_add_epi32(sum, i[g]);
        }
        /* int32 -> int8 in order: packs interleave 128-bit lanes, the permute undoes it */
        const __m256i p01 = _mm256_packs_epi32(i[0], i[1]), p23 = _mm256_packs_epi32(i[2], i[3]);
        const __m256i p = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23),
                                                      _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        d[b] = db;
        s[b] = _mm_cvtsi128_si32(t);
    }
}

/* Signed weight bytes of one block (w = d * q exactly). */
T256 static inline __m256i wq_q8_0(const lmp_block_q8_0 *b)
{
    return _mm256_loadu_si256((const __m256i *)b->qs);
}
T256 static inline __m256i nib32(const uint8_t *qs)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), f = _mm_set1_epi8(15);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), f), _mm_and_si128(v, f));
}
T256 static inline __m256i wq_q4_0(const lmp_block_q4_0 *b)
{
    return _mm256_sub_epi8(nib32(b->qs), _mm256_set1_epi8(8));
}
T256 static inline __m256i wq_q5_0(const lmp_block_q5_0 *b)
{
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    /* byte j gets bit j of qh: spread each byte of qh over 8 bytes, test one bit each */
    const __m256i sp = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)qh),
        _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i hb = _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(sp, bit), bit),
                                        _mm256_set1_epi8(16));
    return _mm256_sub_epi8(_mm256_or_si256(nib32(b->qs), hb), _mm256_set1_epi8(16));
}

/* sum over the block of w * x as 8 int32 lanes: |w| (unsigned) times x with w's sign
 * (maddubs: 2 * 128 * 127 fits int16), pairs widened by madd. */
T256 static inline __m256 isum_f(__m256i w, __m256i x)
{
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

#define DOTQ8(nm, BT)                                                                     \
    T256 static float dotq_##nm(const void *row, const void *xq, int64_t n)               \
    {                                                                                     \
        const BT *b = row;                                                                \
        const int8_t *xs = xq;                                                            \
        const float *xd = lmp_xq8_d(xq, n);                                               \
        const int64_t nb = n / 32;                                                        \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                         \
        int64_t i = 0;                                                                    \
        for (; i + 2 <= nb; i += 2) {                                                     \
            a0 = _mm256_fmadd_ps(isum_f(wq_##nm(b + i), _mm256_loadu_si256((const __m256i *)(xs + 32 * i))), \
                                 _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), a0);          \
            a1 = _mm256_fmadd_ps(isum_f(wq_##nm(b + i + 1),                               \
                                        _mm256_loadu_si256((const __m256i *)(xs + 32 * i + 32))), \
                                 _mm256_set1_ps(_cvtsh_ss(b[i + 1].d) * xd[i + 1]), a1);  \
        }                                                                                 \
        if (i < nb)                                                                       \
            a0 = _mm256_fmadd_ps(isum_f(wq_##nm(b + i), _mm256_loadu_si256((const __m256i *)(xs + 32 * i))), \
                                 _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), a0);          \
        return hsum(_mm256_add_ps(a0, a1));                                               \
    }
DOTQ8(q8_0, lmp_block_q8_0)
DOTQ8(q4_0, lmp_block_q4_0)
DOTQ8(q5_0, lmp_block_q5_0)

/* bf16 (f16) weights against bf16 (f16) activations: both widened to f32 exactly. */
#define DOTQ_HALF(nm, LOAD, SC)                                                          \
    T256 static float dotq_##nm(const void *row, const void *xa, int64_t n)              \
    {                                                                                    \
        const uint16_t *w = row, *x = xa;                                                \
        __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                        \
        int64_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16) {                                                   \
            a0 = _mm256_fmadd_ps(LOAD(w + i), LOAD(x + i), a0);                          \
            a1 = _mm256_fmadd_ps(LOAD(w + i + 8), LOAD(x + i + 8), a1);                  \
        }                                                                                \
        float r = hsum(_mm256_add_ps(a0, a1));                                           \
        for (; i < n; i++)                                                               \
            r += SC(w + i) * SC(x + i);                                                  \
        return r;                                                                        \
    }
DOTQ_HALF(bf16, load_bf16, sc_bf16)
DOTQ_HALF(f16, load_f16, sc_f16)

/* x to f16, nearest even (vcvtps2ph keeps f16 subnormals, NaN and Inf as the reference
 * does); nonzero when a finite x became Inf. */
T256 static int round_f16(const float *x, int64_t n, uint16_t *y)
{
    const __m256 big = _mm256_set1_ps(65520.0f), inf = _mm256_set1_ps(INFINITY);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 over = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i), a = _mm256_and_ps(v, absm);
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
        over = _mm256_or_ps(over, _mm256_and_ps(_mm256_cmp_ps(a, big, _CMP_GE_OQ),
                                                _mm256_cmp_ps(a, inf, _CMP_LT_OQ)));
    }
    int r = _mm256_movemask_ps(over) != 0;
    for (; i < n; i++) {
        y[i] = lmp_f32_to_f16(x[i]);
        r |= (y[i] & 0x7fff) == 0x7c00 && isfinite(x[i]);
    }
    return r;
}

/* ---------------------------------------------------------------- intgroup weights
 * The AVX2 decoders of intgroup codes (kernels_intgroup.c says what they compute). */

#define IG_INL __attribute__((always_inline)) inline

T256 static IG_INL float ig_hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Codes c .. c+15 (c a multiple of 16) as two vectors of 8 int32 lanes. */
T256 static IG_INL void ig_dec16_256(const uint8_t *row, int bits, int64_t c, __m256i *lo8, __m256i *hi8)
{
    __m128i u;
    if (bits == 8) {
        u = _mm_loadu_si128((const __m128i *)(row + c));
    } else {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(row + c / 2)), m = _mm_set1_epi8(15);
        u = _mm_unpacklo_epi8(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
    }
    *lo8 = _mm256_cvtepu8_epi32(u);
    *hi8 = _mm256_cvtepu8_epi32(_mm_srli_si128(u, 8));
}

T256 static float ig_dot256(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float t = ig_hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        t += a[i] * b[i];
    return t;
}

T256 static void ig_deq_256(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
{
    const lmp_intgroup *ig = &q->ig;
    if (!lmp_ig_fast_bits(ig) || kc % 16 || ig->gs % 16 || ig->g_idx) {
        lmp_qtensor_dequant_range(q, n, k0, kc, dst);
        return;
    }
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    for (int64_t c = k0; c < k0 + kc;) {
        const int g = (int)(c / ig->gs);
        int64_t end = (int64_t)(g + 1) * ig->gs;
        if (end > k0 + kc)
            end = k0 + kc;
        const __m256i zi = _mm256_set1_epi32(z[g]);
        const __m256 sv = _mm256_set1_ps(s[g]);
        for (; c < end; c += 16) {
            __m256i a, b;
            ig_dec16_256(row, ig->bits, c, &a, &b);
            _mm256_storeu_ps(dst + (c - k0), _mm256_mul_ps(sv, _mm256_cvtepi32_ps(_mm256_sub_epi32(a, zi))));
            _mm256_storeu_ps(dst + (c - k0) + 8, _mm256_mul_ps(sv, _mm256_cvtepi32_ps(_mm256_sub_epi32(b, zi))));
        }
    }
}

T256 static IG_INL void ig_fused_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                               float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols, gs = ig->gs;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    __m256 y[4];
    for (int i = 0; i < NX; i++)
        y[i] = _mm256_setzero_ps();
    for (int g = 0; g < ig->n_groups; g++) {
        const int64_t c0 = (int64_t)g * gs, c1 = c0 + gs < K ? c0 + gs : K;
        const __m256i zi = _mm256_set1_epi32(z[g]);
        __m256 a0[4], a1[4];
        for (int i = 0; i < NX; i++)
            a0[i] = a1[i] = _mm256_setzero_ps();
        for (int64_t c = c0; c < c1; c += 16) {
            __m256i qa, qb;
            ig_dec16_256(row, BITS, c, &qa, &qb);
            const __m256 w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(qa, zi));
            const __m256 w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(qb, zi));
            for (int i = 0; i < NX; i++) {
                a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + c), a0[i]);
                a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * ldx + c + 8), a1[i]);
            }
        }
        const __m256 sv = _mm256_set1_ps(s[g]);
        for (int i = 0; i < NX; i++)
            y[i] = _mm256_fmadd_ps(_mm256_add_ps(a0[i], a1[i]), sv, y[i]);
    }
    for (int i = 0; i < NX; i++)
        out[i] = ig_hsum256(y[i]);
}

T256 static IG_INL void ig_fused_gidx_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                                    float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    float zf[LMP_IG_MAX_GROUPS];
    for (int g = 0; g < ig->n_groups; g++)
        zf[g] = (float)z[g];
    __m256 a[4];
    for (int i = 0; i < NX; i++)
        a[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < K; c += 16) {
        __m256i qa, qb;
        ig_dec16_256(row, BITS, c, &qa, &qb);
        const __m256i g0 = _mm256_loadu_si256((const __m256i *)(ig->g_idx + c));
        const __m256i g1 = _mm256_loadu_si256((const __m256i *)(ig->g_idx + c + 8));
        const __m256 w0 = _mm256_mul_ps(_mm256_i32gather_ps(s, g0, 4),
                                        _mm256_sub_ps(_mm256_cvtepi32_ps(qa), _mm256_i32gather_ps(zf, g0, 4)));
        const __m256 w1 = _mm256_mul_ps(_mm256_i32gather_ps(s, g1, 4),
                                        _mm256_sub_ps(_mm256_cvtepi32_ps(qb), _mm256_i32gather_ps(zf, g1, 4)));
        for (int i = 0; i < NX; i++)
            a[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * ldx + c + 8),
                                   _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + c), a[i]));
    }
    for (int i = 0; i < NX; i++)
        out[i] = ig_hsum256(a[i]);
}

T256 static void ig_rows_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                          float *out)
{
    const lmp_intgroup *ig = &q->ig;
    if (lmp_ig_fused_ok(q)) {
        if (ig->g_idx) {
            if (ig->bits == 4)
                LMP_IG_FUSED_CASES(ig_fused_gidx_256, q, n, x, ldx, nx, out, 4)
            else
                LMP_IG_FUSED_CASES(ig_fused_gidx_256, q, n, x, ldx, nx, out, 8)
        } else {
            if (ig->bits == 4)
                LMP_IG_FUSED_CASES(ig_fused_256, q, n, x, ldx, nx, out, 4)
            else
                LMP_IG_FUSED_CASES(ig_fused_256, q, n, x, ldx, nx, out, 8)
        }
        return;
    }
    _Alignas(32) float buf[LMP_IG_CHUNK];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += LMP_IG_CHUNK) {
        const int64_t c = K - k0 < LMP_IG_CHUNK ? K - k0 : LMP_IG_CHUNK;
        ig_deq_256(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++)
            acc[i] += ig_dot256(buf, x + i * ldx + k0, c);
    }
    for (int i = 0; i < nx; i++)
        out[i] = acc[i];
}

void lmp_kimpl_fill_avx2(lmp_kimpl *k)
{
    k->name = "avx2";
    k->mr = MR;
    k->nr = NR;
    k->ukr = ukr_6x16;
    k->pack_w = pack_w_16;
    k->pack_x = pack_x_6;
#define SET(DT, nm) (k->dt[DT].to_f32 = to_##nm, k->dt[DT].dot = dot_##nm, k->dt[DT].dotn = dotn_##nm)
    SET(LMP_DT_F32, f32);
    SET(LMP_DT_F16, f16);
    SET(LMP_DT_BF16, bf16);
    SET(LMP_DT_Q8_0, q8_0);
    SET(LMP_DT_Q4_0, q4_0);
    SET(LMP_DT_Q4_1, q4_1);
    SET(LMP_DT_Q5_0, q5_0);
    SET(LMP_DT_Q5_1, q5_1);
#undef SET
    k->quant_q8 = quant_q8;
    k->dt[LMP_DT_Q8_0].dotq = dotq_q8_0;
    k->dt[LMP_DT_Q4_0].dotq = dotq_q4_0;
    k->dt[LMP_DT_Q5_0].dotq = dotq_q5_0;
    k->dt[LMP_DT_BF16].dotq = dotq_bf16;
    k->dt[LMP_DT_F16].dotq = dotq_f16;
    k->to_f16 = round_f16;
    /* no AVX2 integer q6_K / q4_K kernel: f32 activations and the f32 row kernel rather than
     * the reference's scalar one on rounded activations */
    k->dt[LMP_DT_Q6_K].dotq = NULL;
    k->dt[LMP_DT_Q4_K].dotq = NULL; /* likewise q4_K */
    k->dot_f32 = h_dot_f32;
    k->axpy_f32 = h_axpy_f32;
    k->rmsnorm = h_rmsnorm;
    k->silu_mul = h_silu_mul;
    k->gelu_mul = h_gelu_mul;
    k->softmax = h_softmax;
    k->logsumexp = h_logsumexp;
    k->ig_rows = ig_rows_256;
    k->ig_deq = ig_deq_256;
}

#endif /* __x86_64__ */
