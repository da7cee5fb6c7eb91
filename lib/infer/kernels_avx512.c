/*
 * AVX-512 (F, BW, VL, DQ) kernels: the 12 x 32 register tile of the batched gemm (24 zmm
 * accumulators, 2 weight vectors and one broadcast of X per k), fused
 * dequantize-and-dot rows for decoding, SIMD dequantization of weight panels, and the
 * small helpers. Compiled with per-function target attributes so the library still runs
 * on CPUs without AVX-512 (the driver only selects this variant when the CPU has it).
 * Checked against kernels_ref.c by tests/unit/test_kernels.c.
 */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include "../core/blocks.h"
#include "kernels_x86.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* ---------------------------------------------------------------- register tile */

#define MR 12
#define NR 32

T512 static void ukr_12x32(int64_t kc, const float *xp, const float *wp, float *y,
                           int64_t ldy, int m, int n)
{
#define DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5)
    DECL(6) DECL(7) DECL(8) DECL(9) DECL(10) DECL(11)
#undef DECL
    /* the Y tile is usually out of L2 by now (K blocks are the outer loop): fetch it
     * while the FMAs run */
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(y + i * ldy), _MM_HINT_T0);
        _mm_prefetch((const char *)(y + i * ldy + 31), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(wp), b1 = _mm512_load_ps(wp + 16);
        __m512 a;
#define ROW(i)                                                                           \
    a = _mm512_set1_ps(xp[i]);                                                           \
    c##i##a = _mm512_fmadd_ps(a, b0, c##i##a);                                           \
    c##i##b = _mm512_fmadd_ps(a, b1, c##i##b);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11)
#undef ROW
        xp += MR;
        wp += NR;
    }
    if (m == MR && n == NR) {
#define ST(i)                                                                            \
    _mm512_storeu_ps(y + i * ldy, _mm512_add_ps(_mm512_loadu_ps(y + i * ldy), c##i##a));     \
    _mm512_storeu_ps(y + i * ldy + 16,                                                   \
                     _mm512_add_ps(_mm512_loadu_ps(y + i * ldy + 16), c##i##b));
        ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
        ST(6) ST(7) ST(8) ST(9) ST(10) ST(11)
#undef ST
    } else {
        const __mmask16 ma = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
        const __mmask16 mb = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
#define STM(i)                                                                           \
    if (i < m) {                                                                         \
        float *r = y + i * ldy;                                                          \
        _mm512_mask_storeu_ps(r, ma, _mm512_add_ps(_mm512_maskz_loadu_ps(ma, r), c##i##a));  \
        _mm512_mask_storeu_ps(r + 16, mb,                                                \
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mb, r + 16), c##i##b));  \
    }
        STM(0) STM(1) STM(2) STM(3) STM(4) STM(5)
        STM(6) STM(7) STM(8) STM(9) STM(10) STM(11)
#undef STM
    }
}

/* In-register 16 x 16 transpose: on return r[j] holds column j of the input rows. */
T512 static inline void transpose16_regs(__m512 r[16])
{
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xee);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xee);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* dst[i][0..15] = src[0..15][i] for i < 16 (src rows lds apart, dst rows ldd apart). */
T512 static void transpose16(const float *src, int64_t lds, float *dst, int64_t ldd)
{
    __m512 r[16];
    for (int i = 0; i < 16; i++)
        r[i] = _mm512_loadu_ps(src + i * lds);
    transpose16_regs(r);
    for (int i = 0; i < 16; i++)
        _mm512_storeu_ps(dst + i * ldd, r[i]);
}

/* xp[k][12] = x[i][k]: 12 rows by 16 columns at a time (4 zero rows pad the transpose,
 * masked stores keep 12 lanes). */
T512 static void pack_x_12(const float *x, int64_t ldx, int rows, int64_t kc, float *xp)
{
    int64_t k = 0;
    if (rows == MR) {
        for (; k + 16 <= kc; k += 16) {
            __m512 r[16];
            for (int i = 0; i < MR; i++)
                r[i] = _mm512_loadu_ps(x + i * ldx + k);
            for (int i = MR; i < 16; i++)
                r[i] = _mm512_setzero_ps();
            transpose16_regs(r);
            for (int j = 0; j < 16; j++)
                _mm512_mask_storeu_ps(xp + (k + j) * MR, 0x0fff, r[j]);
        }
    }
    if (k < kc)
        lmp_k_pack_x(x + k, ldx, rows, kc - k, MR, xp + k * MR);
}

T512 static void pack_w_32(const float *src, int64_t lds, int rows, int64_t kc, float *wp)
{
    if (rows < NR || (kc & 15)) {
        lmp_k_pack_w_generic(src, lds, rows, kc, NR, wp);
        return;
    }
    for (int64_t k = 0; k < kc; k += 16) {
        transpose16(src + k, lds, wp + k * NR, NR);
        transpose16(src + 16 * lds + k, lds, wp + k * NR + 16, NR);
    }
}

/* ---------------------------------------------------------------- weight rows */

/* lmp_kdt.pack_wf for f16: 16 rows x 16 values at a time widened (exactly) straight into
 * registers and transposed there, instead of widening the rows into a buffer and
 * transposing from it (a pass over 32 KiB less per panel). */
T512 static void pack_wf_f16(const void *w, size_t rb, int64_t k0, int64_t kc, float *wp)
{
    for (int64_t k = 0; k < kc; k += 16)
        for (int half = 0; half < 2; half++) {
            const uint8_t *base = (const uint8_t *)w + (size_t)(16 * half) * rb;
            __m512 r[16];
            for (int i = 0; i < 16; i++)
                r[i] = _mm512_cvtph_ps(_mm256_loadu_si256(
                    (const __m256i *)((const uint16_t *)(base + (size_t)i * rb) + k0 + k)));
            transpose16_regs(r);
            for (int j = 0; j < 16; j++)
                _mm512_storeu_ps(wp + (k + j) * NR + 16 * half, r[j]);
        }
}

T512 static inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }

T512 static inline __m512 load_f16(const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}
T512 static inline __m512 load_bf16(const uint16_t *p)
{
    return _mm512_castsi512_ps(
        _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}
T512 static inline __m512 maskload_f16(__mmask16 k, const uint16_t *p)
{
    return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, p));
}
T512 static inline __m512 maskload_bf16(__mmask16 k, const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(
        _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
}

/* Dense rows: four accumulators over 64 elements, a masked tail. */
#define DENSE_DOT(nm, T, LOAD, MLOAD)                                                    \
    T512 static float dot_##nm(const void *row, const float *x, int64_t n)               \
    {                                                                                    \
        return hsum(vdot_##nm(row, x, n));                                               \
    }                                                                                    \
    T512 static void dot4_##nm(const void *row, size_t rb, const float *x, int64_t n,    \
                               float *out)                                               \
    {                                                                                    \
        /* rows in address order (as arguments GCC would evaluate them last row first: \
         * a backward jump every row that defeats the prefetchers, half the bandwidth) */ \
        const uint8_t *r = row;                                                          \
        const __m512 v0 = vdot_##nm(r, x, n), v1 = vdot_##nm(r + rb, x, n);              \
        const __m512 v2 = vdot_##nm(r + 2 * rb, x, n), v3 = vdot_##nm(r + 3 * rb, x, n); \
        lmp_hsum4_512(v0, v1, v2, v3, out);                                               \
    }
/* vdot_NM: weights of type T (LOAD / MLOAD give 16 as f32) against X of type XT (XLOAD /
 * XMLOAD): f32 rows, or the F16 activation rows of f16 weights (vdotq_f16). */
#define DENSE_VDOT(nm, T, LOAD, MLOAD, XT, XLOAD, XMLOAD)                                \
    T512 static inline __m512 vdot##nm(const void *row, const XT *x, int64_t n)          \
    {                                                                                    \
        const T *w = row;                                                                \
        __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;                      \
        int64_t i = 0;                                                                   \
        for (; i + 64 <= n; i += 64) {                                                   \
            s0 = _mm512_fmadd_ps(LOAD(w + i), XLOAD(x + i), s0);                         \
            s1 = _mm512_fmadd_ps(LOAD(w + i + 16), XLOAD(x + i + 16), s1);               \
            s2 = _mm512_fmadd_ps(LOAD(w + i + 32), XLOAD(x + i + 32), s2);               \
            s3 = _mm512_fmadd_ps(LOAD(w + i + 48), XLOAD(x + i + 48), s3);               \
        }                                                                                \
        for (; i + 16 <= n; i += 16)                                                     \
            s0 = _mm512_fmadd_ps(LOAD(w + i), XLOAD(x + i), s0);                         \
        if (i < n) {                                                                     \
            __mmask16 k = (__mmask16)((1u << (n - i)) - 1);                              \
            s1 = _mm512_fmadd_ps(MLOAD(k, w + i), XMLOAD(k, x + i), s1);                 \
        }                                                                                \
        return _mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3));              \
    }

#define LOAD_F32(p) _mm512_loadu_ps(p)
#define MLOAD_F32(k, p) _mm512_maskz_loadu_ps(k, p)
DENSE_VDOT(_f32, float, LOAD_F32, MLOAD_F32, float, LOAD_F32, MLOAD_F32)
DENSE_VDOT(_f16, uint16_t, load_f16, maskload_f16, float, LOAD_F32, MLOAD_F32)
DENSE_VDOT(_bf16, uint16_t, load_bf16, maskload_bf16, float, LOAD_F32, MLOAD_F32)
DENSE_DOT(f32, float, LOAD_F32, MLOAD_F32)
DENSE_DOT(f16, uint16_t, load_f16, maskload_f16)
DENSE_DOT(bf16, uint16_t, load_bf16, maskload_bf16)

/* f16 weights against an F16 activation row (kernels_internal.h): both widened to f32
 * exactly; half the bytes of X an f32 row takes, so a 5632-element X stays in L1 beside
 * the streamed weights (with f32 X the decoder dropped to ~16 GB/s a core on such rows). */
DENSE_VDOT(q_f16, uint16_t, load_f16, maskload_f16, uint16_t, load_f16, maskload_f16)
T512 static float dotq_f16(const void *row, const void *xa, int64_t n)
{
    return hsum(vdotq_f16(row, xa, n));
}
/* Four rows in one pass over X: each 16 activations widened once for the four rows
 * (the row-at-a-time form widened them four times, and its decoding ran at ~2/3 of the
 * memory bandwidth llama.cpp reaches on the same f16 file). Every row keeps vdotq_f16's
 * four accumulators, fed in the same order as the row-at-a-time form fed them. */
T512 static void dotq4_f16(const void *row, size_t rb, const void *xa, int64_t n, float *out)
{
    const uint16_t *x = xa;
    const uint16_t *w0 = row, *w1 = (const uint16_t *)((const uint8_t *)row + rb);
    const uint16_t *w2 = (const uint16_t *)((const uint8_t *)row + 2 * rb);
    const uint16_t *w3 = (const uint16_t *)((const uint8_t *)row + 3 * rb);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0; /* row 0: s0..s3 */
    __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
    __m512 d0 = a0, d1 = a0, d2 = a0, d3 = a0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        const __m512 x0 = load_f16(x + i), x1 = load_f16(x + i + 16);
        const __m512 x2 = load_f16(x + i + 32), x3 = load_f16(x + i + 48);
        a0 = _mm512_fmadd_ps(load_f16(w0 + i), x0, a0);
        a1 = _mm512_fmadd_ps(load_f16(w0 + i + 16), x1, a1);
        a2 = _mm512_fmadd_ps(load_f16(w0 + i + 32), x2, a2);
        a3 = _mm512_fmadd_ps(load_f16(w0 + i + 48), x3, a3);
        b0 = _mm512_fmadd_ps(load_f16(w1 + i), x0, b0);
        b1 = _mm512_fmadd_ps(load_f16(w1 + i + 16), x1, b1);
        b2 = _mm512_fmadd_ps(load_f16(w1 + i + 32), x2, b2);
        b3 = _mm512_fmadd_ps(load_f16(w1 + i + 48), x3, b3);
        c0 = _mm512_fmadd_ps(load_f16(w2 + i), x0, c0);
        c1 = _mm512_fmadd_ps(load_f16(w2 + i + 16), x1, c1);
        c2 = _mm512_fmadd_ps(load_f16(w2 + i + 32), x2, c2);
        c3 = _mm512_fmadd_ps(load_f16(w2 + i + 48), x3, c3);
        d0 = _mm512_fmadd_ps(load_f16(w3 + i), x0, d0);
        d1 = _mm512_fmadd_ps(load_f16(w3 + i + 16), x1, d1);
        d2 = _mm512_fmadd_ps(load_f16(w3 + i + 32), x2, d2);
        d3 = _mm512_fmadd_ps(load_f16(w3 + i + 48), x3, d3);
    }
    for (; i + 16 <= n; i += 16) {
        const __m512 x0 = load_f16(x + i);
        a0 = _mm512_fmadd_ps(load_f16(w0 + i), x0, a0);
        b0 = _mm512_fmadd_ps(load_f16(w1 + i), x0, b0);
        c0 = _mm512_fmadd_ps(load_f16(w2 + i), x0, c0);
        d0 = _mm512_fmadd_ps(load_f16(w3 + i), x0, d0);
    }
    if (i < n) {
        const __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        const __m512 x0 = maskload_f16(k, x + i);
        a1 = _mm512_fmadd_ps(maskload_f16(k, w0 + i), x0, a1);
        b1 = _mm512_fmadd_ps(maskload_f16(k, w1 + i), x0, b1);
        c1 = _mm512_fmadd_ps(maskload_f16(k, w2 + i), x0, c1);
        d1 = _mm512_fmadd_ps(maskload_f16(k, w3 + i), x0, d1);
    }
    lmp_hsum4_512(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)),
                  _mm512_add_ps(_mm512_add_ps(b0, b1), _mm512_add_ps(b2, b3)),
                  _mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                  _mm512_add_ps(_mm512_add_ps(d0, d1), _mm512_add_ps(d2, d3)), out);
}

/* Four rows of X against one weight row, the weights decoded once: the streaming path
 * for small M (x[r] = rows r < nx; rows past nx repeat row 0 and are discarded). */
#define DENSE_DOTN(nm, T, LOAD, MLOAD)                                                   \
    T512 static void dotn_##nm(const void *row, const float *x, int64_t ldx, int nx,     \
                               int64_t n, float *out)                                    \
    {                                                                                    \
        const T *w = row;                                                                \
        const float *x0 = x, *x1 = nx > 1 ? x + ldx : x, *x2 = nx > 2 ? x + 2 * ldx : x;  \
        const float *x3 = nx > 3 ? x + 3 * ldx : x;                                      \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        __m512 b0 = a0, b1 = a0, b2 = a0, b3 = a0;                                       \
        int64_t i = 0;                                                                   \
        for (; i + 32 <= n; i += 32) {                                                   \
            const __m512 w0 = LOAD(w + i), w1 = LOAD(w + i + 16);                        \
            a0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x0 + i), a0);                       \
            b0 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x0 + i + 16), b0);                  \
            a1 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x1 + i), a1);                       \
            b1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x1 + i + 16), b1);                  \
            a2 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x2 + i), a2);                       \
            b2 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x2 + i + 16), b2);                  \
            a3 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x3 + i), a3);                       \
            b3 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x3 + i + 16), b3);                  \
        }                                                                                \
        for (; i < n; i += 16) {                                                         \
            const __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1); \
            const __m512 w0 = MLOAD(k, w + i);                                           \
            a0 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(k, x0 + i), a0);              \
            a1 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(k, x1 + i), a1);              \
            a2 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(k, x2 + i), a2);              \
            a3 = _mm512_fmadd_ps(w0, _mm512_maskz_loadu_ps(k, x3 + i), a3);              \
        }                                                                                \
        const float r[4] = {hsum(_mm512_add_ps(a0, b0)), hsum(_mm512_add_ps(a1, b1)),    \
                            hsum(_mm512_add_ps(a2, b2)), hsum(_mm512_add_ps(a3, b3))};   \
        for (int j = 0; j < nx; j++)                                                     \
            out[j] = r[j];                                                               \
    }
DENSE_DOTN(f32, float, LOAD_F32, MLOAD_F32)
DENSE_DOTN(f16, uint16_t, load_f16, maskload_f16)
DENSE_DOTN(bf16, uint16_t, load_bf16, maskload_bf16)

#define DENSE_TO(nm, T, LOAD, MLOAD)                                                     \
    T512 static void to_##nm(const void *row, int64_t k0, int64_t n, float *dst)         \
    {                                                                                    \
        const T *w = (const T *)row + k0;                                                \
        int64_t i = 0;                                                                   \
        for (; i + 16 <= n; i += 16)                                                     \
            _mm512_storeu_ps(dst + i, LOAD(w + i));                                      \
        if (i < n) {                                                                     \
            __mmask16 k = (__mmask16)((1u << (n - i)) - 1);                              \
            _mm512_mask_storeu_ps(dst + i, k, MLOAD(k, w + i));                          \
        }                                                                                \
    }
DENSE_TO(f32, float, LOAD_F32, MLOAD_F32)
DENSE_TO(f16, uint16_t, load_f16, maskload_f16)
DENSE_TO(bf16, uint16_t, load_bf16, maskload_bf16)

/* Block types: each decoder gives the 32 quants of a block as two float vectors
 * (elements 0-15, 16-31), unscaled, plus the scale d (and the offset m of the _1 types),
 * so value = q * d (+ m) exactly as the reference dequantizer computes it. */
T512 static inline void dq_q8_0(const lmp_block_q8_0 *b, __m512 *q0, __m512 *q1, float *d,
                                float *m)
{
    *q0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->qs)));
    *q1 = _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + 16))));
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

T512 static inline void nibbles(const uint8_t *qs, __m512i *lo, __m512i *hi)
{
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)qs));
    *lo = _mm512_and_si512(v, _mm512_set1_epi32(15));
    *hi = _mm512_srli_epi32(v, 4);
}

T512 static inline void dq_q4_0(const lmp_block_q4_0 *b, __m512 *q0, __m512 *q1, float *d,
                                float *m)
{
    /* nibble -> (nibble - 8) as float by a 16-entry table lookup (vpermps) */
    const __m512 lut = _mm512_setr_ps(-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7);
    __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)b->qs));
    *q0 = _mm512_permutexvar_ps(v, lut); /* uses the low 4 bits of each index */
    *q1 = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), lut);
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

T512 static inline void dq_q4_1(const lmp_block_q4_1 *b, __m512 *q0, __m512 *q1, float *d,
                                float *m)
{
    __m512i lo, hi;
    nibbles(b->qs, &lo, &hi);
    *q0 = _mm512_cvtepi32_ps(lo);
    *q1 = _mm512_cvtepi32_ps(hi);
    *d = _cvtsh_ss(b->d);
    *m = _cvtsh_ss(b->m);
}

/* fifth bit: bit j of qh for element j, bit j+16 for element j+16 */
T512 static inline void q5_bits(const uint8_t *qhp, const uint8_t *qs, __m512i *lo, __m512i *hi)
{
    uint32_t qh;
    memcpy(&qh, qhp, 4);
    nibbles(qs, lo, hi);
    const __m512i sixteen = _mm512_set1_epi32(16);
    *lo = _mm512_mask_or_epi32(*lo, (__mmask16)(qh & 0xffff), *lo, sixteen);
    *hi = _mm512_mask_or_epi32(*hi, (__mmask16)(qh >> 16), *hi, sixteen);
}

T512 static inline void dq_q5_0(const lmp_block_q5_0 *b, __m512 *q0, __m512 *q1, float *d,
                                float *m)
{
    __m512i lo, hi;
    q5_bits(b->qh, b->qs, &lo, &hi);
    const __m512i sixteen = _mm512_set1_epi32(16);
    *q0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo, sixteen));
    *q1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi, sixteen));
    *d = _cvtsh_ss(b->d);
    *m = 0.0f;
}

T512 static inline void dq_q5_1(const lmp_block_q5_1 *b, __m512 *q0, __m512 *q1, float *d,
                                float *m)
{
    __m512i lo, hi;
    q5_bits(b->qh, b->qs, &lo, &hi);
    *q0 = _mm512_cvtepi32_ps(lo);
    *q1 = _mm512_cvtepi32_ps(hi);
    *d = _cvtsh_ss(b->d);
    *m = _cvtsh_ss(b->m);
}

/* HAS_M: the _1 types add m * sum(x) per block. Four block accumulators (named, so they
 * stay in registers) hide the FMA latency; the order is fixed by n alone. */
#define BLOCK_KERNELS(nm, BT, HAS_M)                                                     \
    T512 static void to_##nm(const void *row, int64_t k0, int64_t n, float *dst)         \
    {                                                                                    \
        const BT *b = (const BT *)row + k0 / 32;                                         \
        for (int64_t i = 0; i < n / 32; i++) {                                           \
            __m512 q0, q1;                                                               \
            float d, m;                                                                  \
            dq_##nm(b + i, &q0, &q1, &d, &m);                                            \
            __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);                       \
            __m512 y0 = _mm512_mul_ps(q0, vd), y1 = _mm512_mul_ps(q1, vd);               \
            if (HAS_M) {                                                                 \
                y0 = _mm512_add_ps(y0, vm);                                              \
                y1 = _mm512_add_ps(y1, vm);                                              \
            }                                                                            \
            _mm512_storeu_ps(dst + 32 * i, y0);                                          \
            _mm512_storeu_ps(dst + 32 * i + 16, y1);                                     \
        }                                                                                \
    }                                                                                    \
    T512 static inline void step_##nm(const BT *b, const float *x, __m512 *acc, __m512 *accm) \
    {                                                                                    \
        __m512 q0, q1;                                                                   \
        float d, m;                                                                      \
        dq_##nm(b, &q0, &q1, &d, &m);                                                    \
        const __m512 x0 = _mm512_loadu_ps(x), x1 = _mm512_loadu_ps(x + 16);              \
        const __m512 t = _mm512_fmadd_ps(q1, x1, _mm512_mul_ps(q0, x0));                 \
        *acc = _mm512_fmadd_ps(t, _mm512_set1_ps(d), *acc);                              \
        if (HAS_M)                                                                       \
            *accm = _mm512_fmadd_ps(_mm512_add_ps(x0, x1), _mm512_set1_ps(m), *accm);    \
    }                                                                                    \
    T512 static float dot_##nm(const void *row, const float *x, int64_t n)               \
    {                                                                                    \
        const BT *b = row;                                                               \
        const int64_t nb = n / 32;                                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        __m512 m0 = a0, m1 = a0, m2 = a0, m3 = a0;                                       \
        int64_t i = 0;                                                                   \
        for (; i + 4 <= nb; i += 4) {                                                    \
            step_##nm(b + i, x + 32 * i, &a0, &m0);                                      \
            step_##nm(b + i + 1, x + 32 * i + 32, &a1, &m1);                             \
            step_##nm(b + i + 2, x + 32 * i + 64, &a2, &m2);                             \
            step_##nm(b + i + 3, x + 32 * i + 96, &a3, &m3);                             \
        }                                                                                \
        for (; i < nb; i++)                                                              \
            step_##nm(b + i, x + 32 * i, &a0, &m0);                                      \
        __m512 s = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));          \
        if (HAS_M)                                                                       \
            s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(m0, m1), _mm512_add_ps(m2, m3))); \
        return hsum(s);                                                                  \
    }

BLOCK_KERNELS(q8_0, lmp_block_q8_0, 0)
BLOCK_KERNELS(q4_0, lmp_block_q4_0, 0)
BLOCK_KERNELS(q4_1, lmp_block_q4_1, 1)
BLOCK_KERNELS(q5_0, lmp_block_q5_0, 0)
BLOCK_KERNELS(q5_1, lmp_block_q5_1, 1)

#define BLOCK_DOTN(nm, BT, HAS_M)                                                        \
    T512 static void dotn_##nm(const void *row, const float *x, int64_t ldx, int nx,     \
                               int64_t n, float *out)                                    \
    {                                                                                    \
        const BT *b = row;                                                               \
        const float *xr[4] = {x, nx > 1 ? x + ldx : x, nx > 2 ? x + 2 * ldx : x,         \
                              nx > 3 ? x + 3 * ldx : x};                                 \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                      \
        __m512 m0 = a0, m1 = a0, m2 = a0, m3 = a0;                                       \
        for (int64_t i = 0; i < n / 32; i++) {                                           \
            __m512 q0, q1;                                                               \
            float d, m;                                                                  \
            dq_##nm(b + i, &q0, &q1, &d, &m);                                            \
            const __m512 vd = _mm512_set1_ps(d), vm = _mm512_set1_ps(m);                 \
            (void)vm;                                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < 4; r++)                          \
            {                                                                            \
                const float *xb = xr[r] + 32 * i;                                        \
                const __m512 y0 = _mm512_loadu_ps(xb), y1 = _mm512_loadu_ps(xb + 16);    \
                const __m512 t = _mm512_fmadd_ps(q1, y1, _mm512_mul_ps(q0, y0));         \
                __m512 *acc = r == 0 ? &a0 : r == 1 ? &a1 : r == 2 ? &a2 : &a3;           \
                __m512 *accm = r == 0 ? &m0 : r == 1 ? &m1 : r == 2 ? &m2 : &m3;          \
                *acc = _mm512_fmadd_ps(t, vd, *acc);                                     \
                if (HAS_M)                                                               \
                    *accm = _mm512_fmadd_ps(_mm512_add_ps(y0, y1), vm, *accm);           \
            }                                                                            \
        }                                                                                \
        const __m512 s[4] = {_mm512_add_ps(a0, m0), _mm512_add_ps(a1, m1),               \
                             _mm512_add_ps(a2, m2), _mm512_add_ps(a3, m3)};              \
        for (int j = 0; j < nx; j++)                                                     \
            out[j] = hsum(s[j]);                                                         \
    }
BLOCK_DOTN(q8_0, lmp_block_q8_0, 0)
BLOCK_DOTN(q4_0, lmp_block_q4_0, 0)
BLOCK_DOTN(q4_1, lmp_block_q4_1, 1)
BLOCK_DOTN(q5_0, lmp_block_q5_0, 0)
BLOCK_DOTN(q5_1, lmp_block_q5_1, 1)


/* ---------------------------------------------------------------- helpers */

/* exp(x) for f32 lanes: Cody-Waite range reduction by ln 2 and Cephes' degree-6
 * polynomial (expf.c), scaled by 2^n with vscalefps; relative error about 2 ulp; inputs
 * below -104 give 0, above 88.7 give +inf. */
T512 static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(_mm512_min_ps(x, _mm512_set1_ps(89.0f)), _mm512_set1_ps(-104.0f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

T512 static float h_dot_f32(const float *a, const float *b, int64_t n)
{
    return dot_f32(a, b, n);
}

T512 static void h_axpy_f32(float *y, float a, const float *x, int64_t n)
{
    const __m512 va = _mm512_set1_ps(a);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(
            y + i, k,
            _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i)));
    }
}

T512 static void h_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512d a = _mm512_cvtps_pd(_mm256_loadu_ps(x + i));
        __m512d b = _mm512_cvtps_pd(_mm256_loadu_ps(x + i + 8));
        s0 = _mm512_fmadd_pd(a, a, s0);
        s1 = _mm512_fmadd_pd(b, b, s1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(s0, s1));
    for (; i < n; i++)
        ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    const __m512 vs = _mm512_set1_ps(scale);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs),
                                              _mm512_loadu_ps(w + i)));
    for (; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

/* gelu_tanh(g) * u as g / (1 + exp(-2z)) * u, z = sqrt(2/pi) (g + 0.044715 g^3)
 * (kernels.h: lmp_gelu_mul). */
T512 static void h_gelu_mul(float *g, const float *u, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f), c = _mm512_set1_ps(0.044715f);
    const __m512 m2k = _mm512_set1_ps(-2.0f * 0.7978845608028654f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        const __m512 v = _mm512_maskz_loadu_ps(k, g + i);
        const __m512 z = _mm512_mul_ps(m2k, _mm512_fmadd_ps(_mm512_mul_ps(c, v), _mm512_mul_ps(v, v), v));
        const __m512 s = _mm512_div_ps(v, _mm512_add_ps(one, exp512(z)));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

T512 static void h_silu_mul(float *g, const float *u, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    int64_t i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 v = _mm512_maskz_loadu_ps(k, g + i);
        __m512 e = exp512(_mm512_sub_ps(_mm512_setzero_ps(), v));
        __m512 s = _mm512_div_ps(v, _mm512_add_ps(one, e));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(s, _mm512_maskz_loadu_ps(k, u + i)));
    }
}

T512 static float vmax(const float *x, int64_t n)
{
    __m512 m = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        m = _mm512_max_ps(m, _mm512_loadu_ps(x + i));
    float r = _mm512_reduce_max_ps(m);
    for (; i < n; i++)
        r = x[i] > r ? x[i] : r;
    return r;
}

T512 static void h_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    const __m512 mx = _mm512_set1_ps(vmax(x, n));
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mx));
        e = _mm512_maskz_mov_ps(k, e);
        _mm512_mask_storeu_ps(x + i, k, e);
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    const __m512 inv = _mm512_set1_ps((float)(1.0 / _mm512_reduce_add_pd(_mm512_add_pd(s0, s1))));
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), inv));
    }
}

T512 static double h_logsumexp(const float *x, int64_t n)
{
    if (n <= 0)
        return -INFINITY;
    const float m = vmax(x, n);
    if (isinf(m))
        return m;
    const __m512 mx = _mm512_set1_ps(m);
    __m512d s0 = _mm512_setzero_pd(), s1 = _mm512_setzero_pd();
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + i), mx)));
        s0 = _mm512_add_pd(s0, _mm512_cvtps_pd(_mm512_castps512_ps256(e)));
        s1 = _mm512_add_pd(s1, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(e), 1))));
    }
    return m + log(_mm512_reduce_add_pd(_mm512_add_pd(s0, s1)));
}

/* ---------------------------------------------------------------- intgroup weights
 * The AVX-512 decoders of intgroup codes (kernels_intgroup.c says what they compute). */

#define IG_INL __attribute__((always_inline)) inline

/* Codes c .. c+15 of a row (c a multiple of 16) as int32 lanes. */
T512 static IG_INL __m512i ig_dec16_512(const uint8_t *row, int bits, int64_t c)
{
    if (bits == 8)
        return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c)));
    const __m128i b = _mm_loadl_epi64((const __m128i *)(row + c / 2)), m = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

T512 static float ig_dot512(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Dequantized weights, exactly s * (float)(q - z): 4/8 bits in registers, else scalar. */
T512 static void ig_deq_512(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
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
        const __m512i zi = _mm512_set1_epi32(z[g]);
        const __m512 sv = _mm512_set1_ps(s[g]);
        if (ig->bits == 4)
            for (; c < end; c += 16)
                _mm512_storeu_ps(dst + (c - k0), _mm512_mul_ps(sv, _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                                                       ig_dec16_512(row, 4, c), zi))));
        else
            for (; c < end; c += 16)
                _mm512_storeu_ps(dst + (c - k0), _mm512_mul_ps(sv, _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                                                       ig_dec16_512(row, 8, c), zi))));
    }
}

/* Fused, no g_idx: per group, (q - z) * x summed in two accumulators per row of X, then
 * times the group's scale into the row's total. NX rows of X, BITS 4 or 8. */
T512 static IG_INL void ig_fused_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                               float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols, gs = ig->gs;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    __m512 y[4];
    for (int i = 0; i < NX; i++)
        y[i] = _mm512_setzero_ps();
    for (int g = 0; g < ig->n_groups; g++) {
        const int64_t c0 = (int64_t)g * gs, c1 = c0 + gs < K ? c0 + gs : K;
        const __m512i zi = _mm512_set1_epi32(z[g]);
        __m512 a0[4], a1[4];
        for (int i = 0; i < NX; i++)
            a0[i] = a1[i] = _mm512_setzero_ps();
        int64_t c = c0;
        for (; c + 32 <= c1; c += 32) {
            const __m512 w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(ig_dec16_512(row, BITS, c), zi));
            const __m512 w1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(ig_dec16_512(row, BITS, c + 16), zi));
            for (int i = 0; i < NX; i++) {
                a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * ldx + c), a0[i]);
                a1[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i * ldx + c + 16), a1[i]);
            }
        }
        if (c < c1) {
            const __m512 w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(ig_dec16_512(row, BITS, c), zi));
            for (int i = 0; i < NX; i++)
                a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * ldx + c), a0[i]);
        }
        const __m512 sv = _mm512_set1_ps(s[g]);
        for (int i = 0; i < NX; i++)
            y[i] = _mm512_fmadd_ps(_mm512_add_ps(a0[i], a1[i]), sv, y[i]);
    }
    for (int i = 0; i < NX; i++)
        out[i] = _mm512_reduce_add_ps(y[i]);
}

/* Fused with g_idx: w = s[g_idx[c]] * (q - z[g_idx[c]]) formed exactly per column
 * (gathers), multiplied into one accumulator per row of X. */
T512 static IG_INL void ig_fused_gidx_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                                    float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    const int ng = ig->n_groups;
    _Alignas(64) float zf[LMP_IG_MAX_GROUPS + 32], sf[32];
    for (int g = 0; g < ng; g++)
        zf[g] = (float)z[g];
    __m512 a[4];
    for (int i = 0; i < NX; i++)
        a[i] = _mm512_setzero_ps();
    if (ng <= 32) {
        /* up to 32 groups: scale and zero tables in two registers each, looked up with a
         * permute instead of a gather (gathers cost ~8x more on Zen 4) */
        for (int g = ng; g < 32; g++)
            zf[g] = 0.0f;
        for (int g = 0; g < 32; g++)
            sf[g] = g < ng ? s[g] : 0.0f;
        const __m512 s0 = _mm512_load_ps(sf), s1 = _mm512_load_ps(sf + 16);
        const __m512 z0 = _mm512_load_ps(zf), z1 = _mm512_load_ps(zf + 16);
        for (int64_t c = 0; c < K; c += 16) {
            const __m512i gi = _mm512_loadu_si512((const void *)(ig->g_idx + c));
            const __m512 sv = _mm512_permutex2var_ps(s0, gi, s1), zv = _mm512_permutex2var_ps(z0, gi, z1);
            const __m512 w = _mm512_mul_ps(sv, _mm512_sub_ps(_mm512_cvtepi32_ps(ig_dec16_512(row, BITS, c)), zv));
            for (int i = 0; i < NX; i++)
                a[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + c), a[i]);
        }
    } else {
        for (int64_t c = 0; c < K; c += 16) {
            const __m512i gi = _mm512_loadu_si512((const void *)(ig->g_idx + c));
            const __m512 sv = _mm512_i32gather_ps(gi, s, 4), zv = _mm512_i32gather_ps(gi, zf, 4);
            const __m512 w = _mm512_mul_ps(sv, _mm512_sub_ps(_mm512_cvtepi32_ps(ig_dec16_512(row, BITS, c)), zv));
            for (int i = 0; i < NX; i++)
                a[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + c), a[i]);
        }
    }
    for (int i = 0; i < NX; i++)
        out[i] = _mm512_reduce_add_ps(a[i]);
}

T512 static void ig_rows_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                          float *out)
{
    const lmp_intgroup *ig = &q->ig;
    if (lmp_ig_fused_ok(q)) {
        if (ig->g_idx) {
            if (ig->bits == 4)
                LMP_IG_FUSED_CASES(ig_fused_gidx_512, q, n, x, ldx, nx, out, 4)
            else
                LMP_IG_FUSED_CASES(ig_fused_gidx_512, q, n, x, ldx, nx, out, 8)
        } else {
            if (ig->bits == 4)
                LMP_IG_FUSED_CASES(ig_fused_512, q, n, x, ldx, nx, out, 4)
            else
                LMP_IG_FUSED_CASES(ig_fused_512, q, n, x, ldx, nx, out, 8)
        }
        return;
    }
    /* other widths: dequantize a chunk, dot it with each row of X */
    _Alignas(64) float buf[LMP_IG_CHUNK];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += LMP_IG_CHUNK) {
        const int64_t c = K - k0 < LMP_IG_CHUNK ? K - k0 : LMP_IG_CHUNK;
        ig_deq_512(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++)
            acc[i] += ig_dot512(buf, x + i * ldx + k0, c);
    }
    for (int i = 0; i < nx; i++)
        out[i] = acc[i];
}

void lmp_kimpl_fill_avx512(lmp_kimpl *k)
{
    k->name = "avx512";
    k->mr = MR;
    k->nr = NR;
    k->ukr = ukr_12x32;
    k->pack_w = pack_w_32;
    k->pack_x = pack_x_12;
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
    k->dt[LMP_DT_F32].dot4 = dot4_f32;
    k->dt[LMP_DT_F16].dot4 = dot4_f16;
    k->dt[LMP_DT_F16].pack_wf = pack_wf_f16;
    k->dt[LMP_DT_BF16].dot4 = dot4_bf16;
    k->dt[LMP_DT_F16].dotq = dotq_f16;
    k->dt[LMP_DT_F16].dotq4 = dotq4_f16;
    k->dot_f32 = h_dot_f32;
    k->axpy_f32 = h_axpy_f32;
    k->rmsnorm = h_rmsnorm;
    k->silu_mul = h_silu_mul;
    k->gelu_mul = h_gelu_mul;
    k->softmax = h_softmax;
    k->logsumexp = h_logsumexp;
    k->ig_rows = ig_rows_512;
    k->ig_deq = ig_deq_512;
}

#endif /* __x86_64__ */
