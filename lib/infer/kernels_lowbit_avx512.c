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

/* Blocks ib and ib + 1 of super-block b (x: their 64 activations, dx: their scales),
 * added to acc; the kernels below alternate two accumulators in registers. */
TV static inline __m512 blk2_iq3_xxs(const lmp_block_iq3_xxs *b, int ib, const int8_t *x, const float *dx, float d,
                                     __m512 acc)
{
    uint32_t s0, s1;
    const __m256i w0 = lb_w_iq3_xxs(b, ib, &s0), w1 = lb_w_iq3_xxs(b, ib + 1, &s1);
    const float f0 = d * (0.5f + (float)s0) * 0.5f, f1 = d * (0.5f + (float)s1) * 0.5f;
    return fma2(isum16(join(w0, w1), _mm512_loadu_si512(x)), f0 * dx[0], f1 * dx[1], acc);
}

TV static inline __m512 blk2_iq2_xxs(const lmp_block_iq2_xxs *b, int ib, const int8_t *x, const float *dx, float d,
                                     __m512 acc)
{
    uint32_t s0, s1;
    const __m256i w0 = lb_w_iq2_xxs(b, ib, &s0), w1 = lb_w_iq2_xxs(b, ib + 1, &s1);
    const float f0 = d * (0.5f + (float)s0) * 0.25f, f1 = d * (0.5f + (float)s1) * 0.25f;
    return fma2(isum16(join(w0, w1), _mm512_loadu_si512(x)), f0 * dx[0], f1 * dx[1], acc);
}

TV static inline __m512 blk2_iq2_s(const lmp_block_iq2_s *b, int ib, const int8_t *x, const float *dx, float d,
                                   __m512 acc)
{
    const __m512i w = join(lb_w_iq2_s(b, ib), lb_w_iq2_s(b, ib + 1));
    const uint8_t *sc = b->scales;
    const float f0 = d * (0.5f + (float)(sc[ib] & 0xf)) * 0.25f, f1 = d * (0.5f + (float)(sc[ib] >> 4)) * 0.25f;
    const float f2 = d * (0.5f + (float)(sc[ib + 1] & 0xf)) * 0.25f;
    const float f3 = d * (0.5f + (float)(sc[ib + 1] >> 4)) * 0.25f;
    return fma4(isum16(w, _mm512_loadu_si512(x)), f0 * dx[0], f1 * dx[0], f2 * dx[1], f3 * dx[1], acc);
}

TV static inline __m512 blk2_iq1_s(const lmp_block_iq1_s *b, int ib, const int8_t *x, const float *dx, float d,
                                   __m512 acc)
{
    const __m512i w = join(lb_w_iq1_s(b, ib), lb_w_iq1_s(b, ib + 1));
    const float f0 = d * (float)(2 * ((b->qh[ib] >> 12) & 7) + 1) * 0.125f;
    const float f1 = d * (float)(2 * ((b->qh[ib + 1] >> 12) & 7) + 1) * 0.125f;
    return fma2(isum16(w, _mm512_loadu_si512(x)), f0 * dx[0], f1 * dx[1], acc);
}

TV static inline __m512 blk2_iq1_m(const lmp_block_iq1_m *b, int ib, const int8_t *x, const float *dx, float d,
                                   const uint16_t sc[4], __m512 acc)
{
    const __m512i w = join(lb_w_iq1_m(b, ib), lb_w_iq1_m(b, ib + 1));
    const float f0 = d * (float)lb_iq1m_s(sc, ib, 0) * 0.125f, f1 = d * (float)lb_iq1m_s(sc, ib, 1) * 0.125f;
    const float f2 = d * (float)lb_iq1m_s(sc, ib + 1, 0) * 0.125f;
    const float f3 = d * (float)lb_iq1m_s(sc, ib + 1, 1) * 0.125f;
    return fma4(isum16(w, _mm512_loadu_si512(x)), f0 * dx[0], f1 * dx[0], f2 * dx[1], f3 * dx[1], acc);
}

/* TQ2_0 blocks jj, jj + 1: crumbs jj % 4 and jj % 4 + 1 of the same 32 bytes */
TV static inline __m512 blk2_tq2_0(const lmp_block_tq2_0 *b, int jj, const int8_t *x, const float *dx, float d,
                                   __m512 acc)
{
    const __m512i v = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qs + 32 * (jj / 4))));
    const int t = 2 * (jj % 4);
    const __m512i cnt = _mm512_inserti64x4(_mm512_set1_epi16((short)t), _mm256_set1_epi16((short)(t + 2)), 1);
    const __m512i w = _mm512_sub_epi8(_mm512_and_si512(_mm512_srlv_epi16(v, cnt), _mm512_set1_epi8(3)),
                                      _mm512_set1_epi8(1));
    return fma2(isum16(w, _mm512_loadu_si512(x)), d * dx[0], d * dx[1], acc);
}

TV static inline __m512 blk2_tq1_0(const lmp_block_tq1_0 *b, int jj, const int8_t *x, const float *dx, float d,
                                   __m512 acc)
{
    const __m512i w = join(lb_w_tq1_0(b, jj), lb_w_tq1_0(b, jj + 1));
    return fma2(isum16(w, _mm512_loadu_si512(x)), d * dx[0], d * dx[1], acc);
}

/* the super-block loop of the 256-value types: blocks (0, 1) and (4, 5) into a0,
 * (2, 3) and (6, 7) into a1 */
#define SB_LOOP(BT, DEXPR, CALL)                                                                   \
    const BT *b = row;                                                                             \
    const int8_t *xs = xq;                                                                         \
    const float *xd = lmp_xq8_d(xq, n);                                                            \
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                                      \
    for (int64_t i = 0; i < n / 256; i++) {                                                        \
        const BT *bi = &b[i];                                                                      \
        const int8_t *x = xs + 256 * i;                                                            \
        const float *dx = xd + 8 * i;                                                              \
        DEXPR;                                                                                     \
        a0 = CALL(0, a0);                                                                          \
        a1 = CALL(2, a1);                                                                          \
        a0 = CALL(4, a0);                                                                          \
        a1 = CALL(6, a1);                                                                          \
    }                                                                                              \
    return _mm512_add_ps(a0, a1)

TV static inline __m512 v_iq3_xxs(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk2_iq3_xxs(bi, ib, x + 32 * (ib), dx + (ib), d, a)
    SB_LOOP(lmp_block_iq3_xxs, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_iq2_xxs(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk2_iq2_xxs(bi, ib, x + 32 * (ib), dx + (ib), d, a)
    SB_LOOP(lmp_block_iq2_xxs, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_iq2_s(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk2_iq2_s(bi, ib, x + 32 * (ib), dx + (ib), d, a)
    SB_LOOP(lmp_block_iq2_s, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_iq1_s(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk2_iq1_s(bi, ib, x + 32 * (ib), dx + (ib), d, a)
    SB_LOOP(lmp_block_iq1_s, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_iq1_m(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk2_iq1_m(bi, ib, x + 32 * (ib), dx + (ib), d, sc, a)
    SB_LOOP(lmp_block_iq1_m, uint16_t sc[4]; const float d = _cvtsh_ss(lb_iq1m_d(bi, sc)), C);
#undef C
}

TV static inline __m512 v_tq2_0(const void *row, const void *xq, int64_t n)
{
#define C(jj, a) blk2_tq2_0(bi, jj, x + 32 * (jj), dx + (jj), d, a)
    SB_LOOP(lmp_block_tq2_0, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_tq1_0(const void *row, const void *xq, int64_t n)
{
#define C(jj, a) blk2_tq1_0(bi, jj, x + 32 * (jj), dx + (jj), d, a)
    SB_LOOP(lmp_block_tq1_0, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

TV static inline __m512 v_q1_0(const void *row, const void *xq, int64_t n)
{
    const lmp_block_q1_0 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < n / 128; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const float *dx = xd + 4 * i;
        a0 = fma2(isum16(join(lb_w_q1_0(&b[i], 0), lb_w_q1_0(&b[i], 1)), _mm512_loadu_si512(xs + 128 * i)), d * dx[0],
                  d * dx[1], a0);
        a1 = fma2(isum16(join(lb_w_q1_0(&b[i], 2), lb_w_q1_0(&b[i], 3)), _mm512_loadu_si512(xs + 128 * i + 64)),
                  d * dx[2], d * dx[3], a1);
    }
    return _mm512_add_ps(a0, a1);
}

TV static inline __m512 v_q2_0(const void *row, const void *xq, int64_t n)
{
    const lmp_block_q2_0 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const int64_t nb = n / 64;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
#define Q2(i, a)                                                                                   \
    fma2(isum16(join(lb_w_q2_0(&b[i], 0), lb_w_q2_0(&b[i], 1)), _mm512_loadu_si512(xs + 64 * (i))),   \
         _cvtsh_ss(b[i].d) * xd[2 * (i)], _cvtsh_ss(b[i].d) * xd[2 * (i) + 1], a)
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        a0 = Q2(i, a0);
        a1 = Q2(i + 1, a1);
    }
    if (i < nb)
        a0 = Q2(i, a0);
#undef Q2
    return _mm512_add_ps(a0, a1);
}

TV static inline __m512 v_mxfp4(const void *row, const void *xq, int64_t n)
{
    static const int8_t fp4[16] = LMP_FP4_VALUES;
    const lmp_block_mxfp4 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)fp4));
    const int64_t nb = n / 32;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
#define M2(j, a)                                                                                   \
    fma2(isum16(join(lb_nib32(b[j].qs, tbl), lb_nib32(b[(j) + 1].qs, tbl)), _mm512_loadu_si512(xs + 32 * (j))), \
         lmp_lb_e8m0_half(b[j].e) * xd[j], lmp_lb_e8m0_half(b[(j) + 1].e) * xd[(j) + 1], a)
    int64_t j = 0;
    for (; j + 4 <= nb; j += 4) {
        a0 = M2(j, a0);
        a1 = M2(j + 2, a1);
    }
    if (j + 2 <= nb) {
        a0 = M2(j, a0);
        j += 2;
    }
#undef M2
    if (j < nb) { /* one block: the upper half's codes and activations are zero */
        const __m512i w = _mm512_maskz_mov_epi8(0xffffffffull, _mm512_castsi256_si512(lb_nib32(b[j].qs, tbl)));
        const __m512i x = _mm512_maskz_loadu_epi8(0xffffffffull, xs + 32 * j);
        a1 = fma2(isum16(w, x), lmp_lb_e8m0_half(b[j].e) * xd[j], 0.0f, a1);
    }
    return _mm512_add_ps(a0, a1);
}

#define WRAP(nm)                                                                                   \
    TV static float v512_dotq_##nm(const void *row, const void *xa, int64_t n)                     \
    {                                                                                              \
        return _mm512_reduce_add_ps(v_##nm(row, xa, n));                                           \
    }                                                                                              \
    TV static void v512_dotq4_##nm(const void *row, size_t rb, const void *xa, int64_t n, float *out) \
    {                                                                                              \
        /* rows in address order (as arguments GCC evaluates them last row first: a \
         * backward jump every row that defeats the prefetchers, 2.6x slower decoding) */ \
        const uint8_t *r = row;                                                                    \
        const __m512 v0 = v_##nm(r, xa, n), v1 = v_##nm(r + rb, xa, n);                           \
        const __m512 v2 = v_##nm(r + 2 * rb, xa, n), v3 = v_##nm(r + 3 * rb, xa, n);              \
        lmp_hsum4_512(v0, v1, v2, v3, out);                                                        \
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
