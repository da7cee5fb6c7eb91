/*
 * AVX2 Q8-activation dots of IQ3_XXS, IQ2_XXS, IQ2_S, IQ1_S, IQ1_M, MXFP4, TQ1_0, TQ2_0,
 * Q1_0 and Q2_0 (definition: kernels_lowbit.h). Per 32-value block the codes are built in
 * one register (kernels_lowbit_x86.h: grid look-ups with vpshufb sign masks, nibble
 * tables, trit and crumb unpacking), multiplied with the int8 activations by vpmaddubsw
 * into eight exact int32 partial sums (vpsignb alone for codes in {-1, 0, 1}: TQ1_0 and
 * Q1_0; TQ2_0's crumb 3 is a code 2, valid in the format though its quantizer never
 * writes it), and (float)partial * (f * dx) accumulates in two lane-wise f32 sums (even
 * and odd blocks).
 */
#if defined(__x86_64__)
#include "kernels_lowbit_x86.h"

#define T2 LB_T2

T2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* acc += (float)is * f, lane-wise */
T2 static inline __m256 fma1(__m256i is, float f, __m256 acc)
{
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(f), acc);
}
/* the same with f0 on lanes 0-3 (values 0-15) and f1 on lanes 4-7 */
T2 static inline __m256 fma2(__m256i is, float f0, float f1, __m256 acc)
{
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_setr_m128(_mm_set1_ps(f0), _mm_set1_ps(f1)), acc);
}

/* One 32-value block ib of super-block b (x: its 32 activations, dx: its scale), added
 * to acc; the kernels below alternate two accumulators in registers. */
T2 static inline __m256 blk_iq3_xxs(const lmp_block_iq3_xxs *b, int ib, const int8_t *x, float dx, float d, __m256 acc)
{
    uint32_t sc;
    const __m256i w = lb_w_iq3_xxs(b, ib, &sc);
    const float f = d * (0.5f + (float)sc) * 0.5f;
    return fma1(lb_idot(w, _mm256_loadu_si256((const __m256i *)x)), f * dx, acc);
}

T2 static inline __m256 blk_iq2_xxs(const lmp_block_iq2_xxs *b, int ib, const int8_t *x, float dx, float d, __m256 acc)
{
    uint32_t sc;
    const __m256i w = lb_w_iq2_xxs(b, ib, &sc);
    const float f = d * (0.5f + (float)sc) * 0.25f;
    return fma1(lb_idot(w, _mm256_loadu_si256((const __m256i *)x)), f * dx, acc);
}

T2 static inline __m256 blk_iq2_s(const lmp_block_iq2_s *b, int ib, const int8_t *x, float dx, float d, __m256 acc)
{
    const __m256i w = lb_w_iq2_s(b, ib);
    const float f0 = d * (0.5f + (float)(b->scales[ib] & 0xf)) * 0.25f;
    const float f1 = d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f;
    return fma2(lb_idot(w, _mm256_loadu_si256((const __m256i *)x)), f0 * dx, f1 * dx, acc);
}

T2 static inline __m256 blk_iq1_s(const lmp_block_iq1_s *b, int ib, const int8_t *x, float dx, float d, __m256 acc)
{
    const __m256i w = lb_w_iq1_s(b, ib);
    const float f = d * (float)(2 * ((b->qh[ib] >> 12) & 7) + 1) * 0.125f;
    return fma1(lb_idot(w, _mm256_loadu_si256((const __m256i *)x)), f * dx, acc);
}

T2 static inline __m256 blk_iq1_m(const lmp_block_iq1_m *b, int ib, const int8_t *x, float dx, float d,
                                  const uint16_t sc[4], __m256 acc)
{
    const __m256i w = lb_w_iq1_m(b, ib);
    const float f0 = d * (float)lb_iq1m_s(sc, ib, 0) * 0.125f;
    const float f1 = d * (float)lb_iq1m_s(sc, ib, 1) * 0.125f;
    return fma2(lb_idot(w, _mm256_loadu_si256((const __m256i *)x)), f0 * dx, f1 * dx, acc);
}

T2 static inline __m256 blk_tq2_0(const lmp_block_tq2_0 *b, int jj, const int8_t *x, float dx, float d, __m256 acc)
{
    return fma1(lb_idot(lb_w_tq2_0(b, jj), _mm256_loadu_si256((const __m256i *)x)), d * dx, acc);
}

T2 static inline __m256 blk_tq1_0(const lmp_block_tq1_0 *b, int jj, const int8_t *x, float dx, float d, __m256 acc)
{
    return fma1(lb_idot_tern(lb_w_tq1_0(b, jj), _mm256_loadu_si256((const __m256i *)x)), d * dx, acc);
}

T2 static inline __m256 blk_q1_0(const lmp_block_q1_0 *b, int jj, const int8_t *x, float dx, float d, __m256 acc)
{
    return fma1(lb_idot_tern(lb_w_q1_0(b, jj), _mm256_loadu_si256((const __m256i *)x)), d * dx, acc);
}

/* the super-block loop of the 256-value types: blocks 0, 2, 4, 6 into a0, the odd ones
 * into a1 */
#define SB_LOOP(BT, DEXPR, CALL)                                                                   \
    const BT *b = row;                                                                             \
    const int8_t *xs = xq;                                                                         \
    const float *xd = lmp_xq8_d(xq, n);                                                            \
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;                                                      \
    for (int64_t i = 0; i < n / 256; i++) {                                                        \
        const BT *bi = &b[i];                                                                      \
        const int8_t *x = xs + 256 * i;                                                            \
        const float *dx = xd + 8 * i;                                                              \
        DEXPR;                                                                                     \
        for (int ib = 0; ib < 8; ib += 2) {                                                        \
            a0 = CALL(ib, a0);                                                                     \
            a1 = CALL(ib + 1, a1);                                                                 \
        }                                                                                          \
    }                                                                                              \
    return hsum8(_mm256_add_ps(a0, a1))

T2 static float a2_dotq_iq3_xxs(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk_iq3_xxs(bi, ib, x + 32 * (ib), dx[ib], d, a)
    SB_LOOP(lmp_block_iq3_xxs, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_iq2_xxs(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk_iq2_xxs(bi, ib, x + 32 * (ib), dx[ib], d, a)
    SB_LOOP(lmp_block_iq2_xxs, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_iq2_s(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk_iq2_s(bi, ib, x + 32 * (ib), dx[ib], d, a)
    SB_LOOP(lmp_block_iq2_s, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_iq1_s(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk_iq1_s(bi, ib, x + 32 * (ib), dx[ib], d, a)
    SB_LOOP(lmp_block_iq1_s, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_iq1_m(const void *row, const void *xq, int64_t n)
{
#define C(ib, a) blk_iq1_m(bi, ib, x + 32 * (ib), dx[ib], d, sc, a)
    SB_LOOP(lmp_block_iq1_m, uint16_t sc[4]; const float d = _cvtsh_ss(lb_iq1m_d(bi, sc)), C);
#undef C
}

T2 static float a2_dotq_tq2_0(const void *row, const void *xq, int64_t n)
{
#define C(jj, a) blk_tq2_0(bi, jj, x + 32 * (jj), dx[jj], d, a)
    SB_LOOP(lmp_block_tq2_0, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_tq1_0(const void *row, const void *xq, int64_t n)
{
#define C(jj, a) blk_tq1_0(bi, jj, x + 32 * (jj), dx[jj], d, a)
    SB_LOOP(lmp_block_tq1_0, const float d = _cvtsh_ss(bi->d), C);
#undef C
}

T2 static float a2_dotq_q1_0(const void *row, const void *xq, int64_t n)
{
    const lmp_block_q1_0 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < n / 128; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const int8_t *x = xs + 128 * i;
        const float *dx = xd + 4 * i;
        a0 = blk_q1_0(&b[i], 0, x, dx[0], d, a0);
        a1 = blk_q1_0(&b[i], 1, x + 32, dx[1], d, a1);
        a0 = blk_q1_0(&b[i], 2, x + 64, dx[2], d, a0);
        a1 = blk_q1_0(&b[i], 3, x + 96, dx[3], d, a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

T2 static float a2_dotq_q2_0(const void *row, const void *xq, int64_t n)
{
    const lmp_block_q2_0 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < n / 64; i++) {
        const float d = _cvtsh_ss(b[i].d);
        a0 = fma1(lb_idot(lb_w_q2_0(&b[i], 0), _mm256_loadu_si256((const __m256i *)(xs + 64 * i))), d * xd[2 * i], a0);
        a1 = fma1(lb_idot(lb_w_q2_0(&b[i], 1), _mm256_loadu_si256((const __m256i *)(xs + 64 * i + 32))),
                  d * xd[2 * i + 1], a1);
    }
    return hsum8(_mm256_add_ps(a0, a1));
}

T2 static float a2_dotq_mxfp4(const void *row, const void *xq, int64_t n)
{
    static const int8_t fp4[16] = LMP_FP4_VALUES;
    const lmp_block_mxfp4 *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)fp4));
    const int64_t nb = n / 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t j = 0;
#define M1(j, a)                                                                                   \
    fma1(lb_idot(lb_nib32(b[j].qs, tbl), _mm256_loadu_si256((const __m256i *)(xs + 32 * (j)))),    \
         lmp_lb_e8m0_half(b[j].e) * xd[j], a)
    for (; j + 2 <= nb; j += 2) {
        a0 = M1(j, a0);
        a1 = M1(j + 1, a1);
    }
    if (j < nb)
        a0 = M1(j, a0);
#undef M1
    return hsum8(_mm256_add_ps(a0, a1));
}

void lmp_kimpl_fill_lowbit_q8_avx2(lmp_kimpl *k)
{
    k->dt[LMP_DT_IQ3_XXS].dotq = a2_dotq_iq3_xxs;
    k->dt[LMP_DT_IQ2_XXS].dotq = a2_dotq_iq2_xxs;
    k->dt[LMP_DT_IQ2_S].dotq = a2_dotq_iq2_s;
    k->dt[LMP_DT_IQ1_S].dotq = a2_dotq_iq1_s;
    k->dt[LMP_DT_IQ1_M].dotq = a2_dotq_iq1_m;
    k->dt[LMP_DT_MXFP4].dotq = a2_dotq_mxfp4;
    k->dt[LMP_DT_TQ2_0].dotq = a2_dotq_tq2_0;
    k->dt[LMP_DT_TQ1_0].dotq = a2_dotq_tq1_0;
    k->dt[LMP_DT_Q1_0].dotq = a2_dotq_q1_0;
    k->dt[LMP_DT_Q2_0].dotq = a2_dotq_q2_0;
}

#else
typedef int lmp_kernels_lowbit_avx2_empty; /* ISO C: a translation unit is not empty */
#endif
