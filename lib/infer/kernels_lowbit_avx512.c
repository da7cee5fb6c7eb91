/*
 * AVX-512 VNNI Q8-activation dots of IQ3_XXS, IQ2_XXS, IQ2_S, IQ1_S, IQ1_M, MXFP4, TQ1_0,
 * TQ2_0, Q1_0 and Q2_0 (definition: kernels_lowbit.h): two 32-value blocks a register
 * (codes from the AVX2 block decoders of kernels_lowbit_x86.h, two at a time; TQ2_0's
 * crumbs and MXFP4's nibbles unpacked 64 at once), |w| times sign-applied x by vpdpbusd
 * into 16 exact int32 partial sums, (float)partial * (f * dx) accumulated in lanes; a
 * four-row M = 1 dot shares the horizontal sums (kernels_x86.h).
 */
#if defined(__x86_64__)
#include "kernels_lowbit_x86.h"
#include "kernels_x86.h"

#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")))

/* int32 partial sums of signed w times signed x: |w| times x with w's sign */
TV static inline __m512i isum16(__m512i w, __m512i x)
{
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
}

TV static inline __m512i join(__m256i lo, __m256i hi)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* acc += (float)is * (s0 on lanes 0-7, s1 on 8-15) */
TV static inline __m512 fma2(__m512i is, float s0, float s1, __m512 acc)
{
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1), acc);
}
/* acc += (float)is * (s0, s1, s2, s3 on lanes 0-3, 4-7, 8-11, 12-15: 16-value halves) */
TV static inline __m512 fma4(__m512i is, float s0, float s1, float s2, float s3, __m512 acc)
{
    const __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_setr_m128(_mm_set1_ps(s0), _mm_set1_ps(s1))),
                                        _mm256_setr_m128(_mm_set1_ps(s2), _mm_set1_ps(s3)), 1);
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(is), f, acc);
}

#define XB2(j) _mm512_loadu_si512(xs + 32 * (j)) /* blocks j and j + 1 */
#define PROLOGUE(BT)                                                                               \
    const BT *b = row;                                                                             \
    const int8_t *xs = xq;                                                                         \
    const float *xd = lmp_xq8_d(xq, n);                                                            \
    __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()}

TV static inline __m512 v_iq3_xxs(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq3_xxs);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            uint32_t s0, s1;
            const __m256i w0 = lb_w_iq3_xxs(&b[i], ib, &s0), w1 = lb_w_iq3_xxs(&b[i], ib + 1, &s1);
            const float f0 = d * (0.5f + (float)s0) * 0.5f, f1 = d * (0.5f + (float)s1) * 0.5f;
            acc[ib / 2 & 1] = fma2(isum16(join(w0, w1), XB2(8 * i + ib)), f0 * dx[ib], f1 * dx[ib + 1], acc[ib / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_iq2_xxs(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq2_xxs);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            uint32_t s0, s1;
            const __m256i w0 = lb_w_iq2_xxs(&b[i], ib, &s0), w1 = lb_w_iq2_xxs(&b[i], ib + 1, &s1);
            const float f0 = d * (0.5f + (float)s0) * 0.25f, f1 = d * (0.5f + (float)s1) * 0.25f;
            acc[ib / 2 & 1] = fma2(isum16(join(w0, w1), XB2(8 * i + ib)), f0 * dx[ib], f1 * dx[ib + 1], acc[ib / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_iq2_s(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq2_s);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        const uint8_t *sc = b[i].scales;
        for (int ib = 0; ib < 8; ib += 2) {
            const __m512i w = join(lb_w_iq2_s(&b[i], ib), lb_w_iq2_s(&b[i], ib + 1));
            const float f0 = d * (0.5f + (float)(sc[ib] & 0xf)) * 0.25f, f1 = d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f;
            const float f2 = d * (0.5f + (float)(sc[ib + 1] & 0xf)) * 0.25f;
            const float f3 = d * (0.5f + (float)(sc[ib + 1] >> 4)) * 0.25f;
            acc[ib / 2 & 1] = fma4(isum16(w, XB2(8 * i + ib)), f0 * dx[ib], f1 * dx[ib], f2 * dx[ib + 1],
                                   f3 * dx[ib + 1], acc[ib / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_iq1_s(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq1_s);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            const __m512i w = join(lb_w_iq1_s(&b[i], ib), lb_w_iq1_s(&b[i], ib + 1));
            const float f0 = d * (float)(2 * ((b[i].qh[ib] >> 12) & 7) + 1) * 0.125f;
            const float f1 = d * (float)(2 * ((b[i].qh[ib + 1] >> 12) & 7) + 1) * 0.125f;
            acc[ib / 2 & 1] = fma2(isum16(w, XB2(8 * i + ib)), f0 * dx[ib], f1 * dx[ib + 1], acc[ib / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_iq1_m(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq1_m);
    for (int64_t i = 0; i < n / 256; i++) {
        uint16_t sc[4];
        const float d = _cvtsh_ss(lb_iq1m_d(&b[i], sc));
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            const __m512i w = join(lb_w_iq1_m(&b[i], ib), lb_w_iq1_m(&b[i], ib + 1));
            const float f0 = d * (float)lb_iq1m_s(sc, ib, 0) * 0.125f, f1 = d * (float)lb_iq1m_s(sc, ib, 1) * 0.125f;
            const float f2 = d * (float)lb_iq1m_s(sc, ib + 1, 0) * 0.125f;
            const float f3 = d * (float)lb_iq1m_s(sc, ib + 1, 1) * 0.125f;
            acc[ib / 2 & 1] = fma4(isum16(w, XB2(8 * i + ib)), f0 * dx[ib], f1 * dx[ib], f2 * dx[ib + 1],
                                   f3 * dx[ib + 1], acc[ib / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_mxfp4(const void *row, const void *xq, int64_t n)
{
    static const int8_t fp4[16] = LMP_FP4_VALUES;
    PROLOGUE(lmp_block_mxfp4);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)fp4));
    const int64_t nb = n / 32;
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
        const __m512i w = join(lb_nib32(b[j].qs, tbl), lb_nib32(b[j + 1].qs, tbl));
        acc[j / 2 & 1] = fma2(isum16(w, XB2(j)), lmp_lb_e8m0_half(b[j].e) * xd[j],
                              lmp_lb_e8m0_half(b[j + 1].e) * xd[j + 1], acc[j / 2 & 1]);
    }
    if (j < nb) { /* one block: the upper half's codes and activations are zero */
        const __m512i w = _mm512_castsi256_si512(lb_nib32(b[j].qs, tbl));
        const __m512i x = _mm512_maskz_loadu_epi8(0xffffffffull, xs + 32 * j);
        acc[0] = fma2(isum16(_mm512_maskz_mov_epi8(0xffffffffull, w), x), lmp_lb_e8m0_half(b[j].e) * xd[j], 0.0f,
                      acc[0]);
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_tq2_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_tq2_0);
    const __m512i three = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        for (int jj = 0; jj < 8; jj += 2) {
            /* blocks jj, jj + 1: crumbs jj % 4 and jj % 4 + 1 of the same 32 bytes */
            const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b[i].qs + 32 * (jj / 4))));
            const int t = 2 * (jj % 4);
            const __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16((short)t), _mm256_set1_epi16((short)(t + 2)), 1);
            const __m512i w = _mm512_sub_epi8(_mm512_and_si512(_mm512_srlv_epi16(v, cnt), three), one);
            acc[jj / 2 & 1] = fma2(isum16(w, XB2(8 * i + jj)), d * dx[jj], d * dx[jj + 1], acc[jj / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_tq1_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_tq1_0);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 8 * i;
        for (int jj = 0; jj < 8; jj += 2) {
            const __m512i w = join(lb_w_tq1_0(&b[i], jj), lb_w_tq1_0(&b[i], jj + 1));
            acc[jj / 2 & 1] = fma2(isum16(w, XB2(8 * i + jj)), d * dx[jj], d * dx[jj + 1], acc[jj / 2 & 1]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_q1_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_q1_0);
    for (int64_t i = 0; i < n / 128; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 4 * i;
        for (int jj = 0; jj < 4; jj += 2) {
            const __m512i w = join(lb_w_q1_0(&b[i], jj), lb_w_q1_0(&b[i], jj + 1));
            acc[jj / 2] = fma2(isum16(w, XB2(4 * i + jj)), d * dx[jj], d * dx[jj + 1], acc[jj / 2]);
        }
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

TV static inline __m512 v_q2_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_q2_0);
    for (int64_t i = 0; i < n / 64; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const __m512i w = join(lb_w_q2_0(&b[i], 0), lb_w_q2_0(&b[i], 1));
        acc[i & 1] = fma2(isum16(w, XB2(2 * i)), d * xd[2 * i], d * xd[2 * i + 1], acc[i & 1]);
    }
    return _mm512_add_ps(acc[0], acc[1]);
}

#define WRAP(nm)                                                                                   \
    TV static float v512_dotq_##nm(const void *row, const void *xa, int64_t n)                     \
    {                                                                                              \
        return _mm512_reduce_add_ps(v_##nm(row, xa, n));                                           \
    }                                                                                              \
    TV static void v512_dotq4_##nm(const void *row, size_t rb, const void *xa, int64_t n, float *out) \
    {                                                                                              \
        const uint8_t *r = row;                                                                    \
        lmp_hsum4_512(v_##nm(r, xa, n), v_##nm(r + rb, xa, n), v_##nm(r + 2 * rb, xa, n),          \
                      v_##nm(r + 3 * rb, xa, n), out);                                             \
    }
WRAP(iq3_xxs)
WRAP(iq2_xxs)
WRAP(iq2_s)
WRAP(iq1_s)
WRAP(iq1_m)
WRAP(mxfp4)
WRAP(tq2_0)
WRAP(tq1_0)
WRAP(q1_0)
WRAP(q2_0)
#undef WRAP

void lmp_kimpl_fill_lowbit_q8_avx512(lmp_kimpl *k)
{
#define SET(DT, nm) (k->dt[DT].dotq = v512_dotq_##nm, k->dt[DT].dotq4 = v512_dotq4_##nm)
    SET(LMP_DT_IQ3_XXS, iq3_xxs);
    SET(LMP_DT_IQ2_XXS, iq2_xxs);
    SET(LMP_DT_IQ2_S, iq2_s);
    SET(LMP_DT_IQ1_S, iq1_s);
    SET(LMP_DT_IQ1_M, iq1_m);
    SET(LMP_DT_MXFP4, mxfp4);
    SET(LMP_DT_TQ2_0, tq2_0);
    SET(LMP_DT_TQ1_0, tq1_0);
    SET(LMP_DT_Q1_0, q1_0);
    SET(LMP_DT_Q2_0, q2_0);
#undef SET
}

#else
typedef int lmp_kernels_lowbit_avx512_empty; /* ISO C: a translation unit is not empty */
#endif
