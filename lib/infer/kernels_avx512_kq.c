/*
 * AVX-512 kernels for the k-quants (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K; layouts in
 * lib/core/blocks.h, reference dequantizers in lib/quant/kquants.c): SIMD decoding of a
 * super-block of 256 values, 16 at a time (each group of 16 shares one scale and min),
 * giving exactly the reference dequantizer's f32 values (same operations: (scale * q)
 * - min, no FMA). The decoder feeds the f32 weight panels of the batched path (to_f32)
 * and the fused decode-and-dot rows of the streaming path (dot, dotn: each group of 16
 * weights decoded in registers and multiplied with X straight away). Activations stay
 * f32. Part of the avx512 variant (filled by lmp_kimpl_fill_avx512).
 * Checked against kernels_ref.c (the dtype table's dequantizers) by
 * tests/unit/test_kernels.c.
 */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include "../core/blocks.h"

#include <immintrin.h>

#define TK __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))

/* Q4_K/Q5_K (scale, min) pair j of 8 (lib/quant/kquants.c: scale_min_k4). */
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

/* Q3_K scale j of 16 (kquants.c: scale_q3). */
static inline int scale_q3(int j, const uint8_t *s)
{
    int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4;
    return (lo | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

TK static inline __m512i u8x16(const uint8_t *p)
{
    return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
}

/* Group t (values 16t .. 16t+15) of a super-block: the weights as f32. */
/* Scales and mins of the 16 groups of a super-block (prep_*), then group t's weights
 * as f32 (grp_*). */
static inline void prep_k4(const uint8_t *scales, uint16_t dh, uint16_t mh, float *a, float *mn)
{
    const float d = lmp_f16_to_f32(dh), dmin = lmp_f16_to_f32(mh);
    for (int j = 0; j < 8; j++) {
        int sc, m;
        scale_min_k4(j, scales, &sc, &m);
        a[2 * j] = a[2 * j + 1] = d * sc;
        mn[2 * j] = mn[2 * j + 1] = dmin * m;
    }
}
static inline void prep_q4_k(const lmp_block_q4_k *b, float *a, float *m)
{
    prep_k4(b->scales, b->d, b->dmin, a, m);
}
static inline void prep_q5_k(const lmp_block_q5_k *b, float *a, float *m)
{
    prep_k4(b->scales, b->d, b->dmin, a, m);
}
static inline void prep_q6_k(const lmp_block_q6_k *b, float *a, float *m)
{
    const float d = lmp_f16_to_f32(b->d);
    for (int t = 0; t < 16; t++)
        a[t] = d * b->scales[t], m[t] = 0.0f;
}
static inline void prep_q2_k(const lmp_block_q2_k *b, float *a, float *m)
{
    const float d = lmp_f16_to_f32(b->d), dmin = lmp_f16_to_f32(b->dmin);
    for (int t = 0; t < 16; t++)
        a[t] = d * (b->scales[t] & 0xF), m[t] = dmin * (b->scales[t] >> 4);
}
static inline void prep_q3_k(const lmp_block_q3_k *b, float *a, float *m)
{
    const float d = lmp_f16_to_f32(b->d);
    for (int t = 0; t < 16; t++)
        a[t] = d * scale_q3(t, b->scales), m[t] = 0.0f;
}

TK static inline __m512 grp_q4_k(const lmp_block_q4_k *b, int t, float d1, float m1)
{
    const int j = t / 2;
    __m512i q = u8x16(b->qs + 32 * (j / 2) + 16 * (t & 1));
    q = (j & 1) ? _mm512_srli_epi32(q, 4) : _mm512_and_si512(q, _mm512_set1_epi32(15));
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1), _mm512_cvtepi32_ps(q)),
                         _mm512_set1_ps(m1));
}

TK static inline __m512 grp_q5_k(const lmp_block_q5_k *b, int t, float d1, float m1)
{
    const int j = t / 2;
    __m512i q = u8x16(b->qs + 32 * (j / 2) + 16 * (t & 1));
    q = (j & 1) ? _mm512_srli_epi32(q, 4) : _mm512_and_si512(q, _mm512_set1_epi32(15));
    const __m512i h = _mm512_and_si512(_mm512_srli_epi32(u8x16(b->qh + 16 * (t & 1)), j),
                                       _mm512_set1_epi32(1));
    q = _mm512_add_epi32(q, _mm512_slli_epi32(h, 4));
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(d1), _mm512_cvtepi32_ps(q)),
                         _mm512_set1_ps(m1));
}

TK static inline __m512 grp_q6_k(const lmp_block_q6_k *b, int t, float a, float m1)
{
    (void)m1;
    const int k = 16 * t, h = k / 128, r = k % 128, quarter = r / 32, l0 = r % 32;
    __m512i lo = u8x16(b->ql + 64 * h + l0 + 32 * (quarter & 1));
    lo = quarter >= 2 ? _mm512_srli_epi32(lo, 4) : _mm512_and_si512(lo, _mm512_set1_epi32(15));
    const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(u8x16(b->qh + 32 * h + l0), 2 * quarter),
                                        _mm512_set1_epi32(3));
    const __m512i q = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)),
                                       _mm512_set1_epi32(32));
    return _mm512_mul_ps(_mm512_set1_ps(a), _mm512_cvtepi32_ps(q));
}

TK static inline __m512i two_bits(const uint8_t *qs, int t)
{
    const int k = 16 * t, half = k / 128, r = k % 128;
    return _mm512_and_si512(_mm512_srli_epi32(u8x16(qs + 32 * half + r % 32), 2 * (r / 32)),
                            _mm512_set1_epi32(3));
}

TK static inline __m512 grp_q2_k(const lmp_block_q2_k *b, int t, float a, float m)
{
    return _mm512_sub_ps(_mm512_mul_ps(_mm512_set1_ps(a), _mm512_cvtepi32_ps(two_bits(b->qs, t))),
                         _mm512_set1_ps(m));
}

TK static inline __m512 grp_q3_k(const lmp_block_q3_k *b, int t, float a, float m1)
{
    (void)m1;
    const int k = 16 * t;
    /* 4 where the high bit (bit k/32 of hmask[k%32 ..]) is clear */
    const __m512i hb = _mm512_and_si512(_mm512_srli_epi32(u8x16(b->hmask + k % 32), k / 32),
                                        _mm512_set1_epi32(1));
    const __m512i q = _mm512_sub_epi32(two_bits(b->qs, t),
                                       _mm512_slli_epi32(_mm512_xor_si512(hb, _mm512_set1_epi32(1)), 2));
    return _mm512_mul_ps(_mm512_set1_ps(a), _mm512_cvtepi32_ps(q));
}

#define KQ_KERNELS(nm, BT)                                                                \
    TK static void to_##nm(const void *row, int64_t k0, int64_t n, float *dst)            \
    {                                                                                     \
        const BT *b = (const BT *)row + k0 / QK_K;                                        \
        for (int64_t i = 0; i < n / QK_K; i++) {                                          \
            float a[16], m[16];                                                           \
            prep_##nm(b + i, a, m);                                                       \
            for (int t = 0; t < 16; t++)                                                  \
                _mm512_storeu_ps(dst + QK_K * i + 16 * t, grp_##nm(b + i, t, a[t], m[t])); \
        }                                                                                 \
    }                                                                                     \
    TK static float dot_##nm(const void *row, const float *x, int64_t n)                  \
    {                                                                                     \
        const BT *b = row;                                                                \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                       \
        for (int64_t i = 0; i < n / QK_K; i++, x += QK_K) {                               \
            float a[16], m[16];                                                           \
            prep_##nm(b + i, a, m);                                                       \
            for (int t = 0; t < 16; t += 4) {                                             \
                a0 = _mm512_fmadd_ps(grp_##nm(b + i, t, a[t], m[t]), _mm512_loadu_ps(x + 16 * t), a0); \
                a1 = _mm512_fmadd_ps(grp_##nm(b + i, t + 1, a[t + 1], m[t + 1]), _mm512_loadu_ps(x + 16 * t + 16), a1); \
                a2 = _mm512_fmadd_ps(grp_##nm(b + i, t + 2, a[t + 2], m[t + 2]), _mm512_loadu_ps(x + 16 * t + 32), a2); \
                a3 = _mm512_fmadd_ps(grp_##nm(b + i, t + 3, a[t + 3], m[t + 3]), _mm512_loadu_ps(x + 16 * t + 48), a3); \
            }                                                                             \
        }                                                                                 \
        return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3))); \
    }                                                                                     \
    TK static void dotn_##nm(const void *row, const float *x, int64_t ldx, int nx, int64_t n, \
                             float *out)                                                  \
    {                                                                                     \
        const BT *b = row;                                                                \
        const float *x0 = x, *x1 = nx > 1 ? x + ldx : x, *x2 = nx > 2 ? x + 2 * ldx : x;  \
        const float *x3 = nx > 3 ? x + 3 * ldx : x;                                       \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;                       \
        for (int64_t i = 0; i < n / QK_K; i++) {                                          \
            float a[16], m[16];                                                           \
            prep_##nm(b + i, a, m);                                                       \
            for (int t = 0; t < 16; t++) {                                                \
                const __m512 w = grp_##nm(b + i, t, a[t], m[t]);                          \
                const int64_t o = QK_K * i + 16 * t;                                      \
                a0 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x0 + o), a0);                     \
                a1 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x1 + o), a1);                     \
                a2 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x2 + o), a2);                     \
                a3 = _mm512_fmadd_ps(w, _mm512_loadu_ps(x3 + o), a3);                     \
            }                                                                             \
        }                                                                                 \
        const float r[4] = {_mm512_reduce_add_ps(a0), _mm512_reduce_add_ps(a1),           \
                            _mm512_reduce_add_ps(a2), _mm512_reduce_add_ps(a3)};          \
        for (int j = 0; j < nx; j++)                                                      \
            out[j] = r[j];                                                                \
    }

KQ_KERNELS(q2_k, lmp_block_q2_k)
KQ_KERNELS(q3_k, lmp_block_q3_k)
KQ_KERNELS(q4_k, lmp_block_q4_k)
KQ_KERNELS(q5_k, lmp_block_q5_k)
KQ_KERNELS(q6_k, lmp_block_q6_k)

void lmp_kimpl_fill_avx512_kq(lmp_kimpl *k)
{
#define SET(DT, nm) (k->dt[DT].to_f32 = to_##nm, k->dt[DT].dot = dot_##nm, k->dt[DT].dotn = dotn_##nm)
    SET(LMP_DT_Q2_K, q2_k);
    SET(LMP_DT_Q3_K, q3_k);
    SET(LMP_DT_Q4_K, q4_k);
    SET(LMP_DT_Q5_K, q5_k);
    SET(LMP_DT_Q6_K, q6_k);
#undef SET
}

#endif /* __x86_64__ */
