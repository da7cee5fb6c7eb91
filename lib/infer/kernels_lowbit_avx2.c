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

#define XB(j) _mm256_loadu_si256((const __m256i *)(xs + 32 * (j)))
#define PROLOGUE(BT)                                                                               \
    const BT *b = row;                                                                             \
    const int8_t *xs = xq;                                                                         \
    const float *xd = lmp_xq8_d(xq, n);                                                            \
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()}

T2 static float a2_dotq_iq3_xxs(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq3_xxs);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t sc;
            const __m256i w = lb_w_iq3_xxs(&b[i], ib, &sc);
            const float f = d * (0.5f + (float)sc) * 0.5f;
            acc[ib & 1] = fma1(lb_idot(w, XB(8 * i + ib)), f * xd[8 * i + ib], acc[ib & 1]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_iq2_xxs(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq2_xxs);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t sc;
            const __m256i w = lb_w_iq2_xxs(&b[i], ib, &sc);
            const float f = d * (0.5f + (float)sc) * 0.25f;
            acc[ib & 1] = fma1(lb_idot(w, XB(8 * i + ib)), f * xd[8 * i + ib], acc[ib & 1]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_iq2_s(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq2_s);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const __m256i w = lb_w_iq2_s(&b[i], ib);
            const float f0 = d * (0.5f + (float)(b[i].scales[ib] & 0xf)) * 0.25f;
            const float f1 = d * (0.5f + (float)(b[i].scales[ib] >> 4)) * 0.25f;
            const float dx = xd[8 * i + ib];
            acc[ib & 1] = fma2(lb_idot(w, XB(8 * i + ib)), f0 * dx, f1 * dx, acc[ib & 1]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_iq1_s(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq1_s);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const __m256i w = lb_w_iq1_s(&b[i], ib);
            const float f = d * (float)(2 * ((b[i].qh[ib] >> 12) & 7) + 1) * 0.125f;
            acc[ib & 1] = fma1(lb_idot(w, XB(8 * i + ib)), f * xd[8 * i + ib], acc[ib & 1]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_iq1_m(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_iq1_m);
    for (int64_t i = 0; i < n / 256; i++) {
        uint16_t sc[4];
        const float d = _cvtsh_ss(lb_iq1m_d(&b[i], sc));
        for (int ib = 0; ib < 8; ib++) {
            const __m256i w = lb_w_iq1_m(&b[i], ib);
            const float f0 = d * (float)lb_iq1m_s(sc, ib, 0) * 0.125f;
            const float f1 = d * (float)lb_iq1m_s(sc, ib, 1) * 0.125f;
            const float dx = xd[8 * i + ib];
            acc[ib & 1] = fma2(lb_idot(w, XB(8 * i + ib)), f0 * dx, f1 * dx, acc[ib & 1]);
        }
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_mxfp4(const void *row, const void *xq, int64_t n)
{
    static const int8_t fp4[16] = LMP_FP4_VALUES;
    PROLOGUE(lmp_block_mxfp4);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)fp4));
    for (int64_t j = 0; j < n / 32; j++)
        acc[j & 1] = fma1(lb_idot(lb_nib32(b[j].qs, tbl), XB(j)), lmp_lb_e8m0_half(b[j].e) * xd[j], acc[j & 1]);
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_tq2_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_tq2_0);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int jj = 0; jj < 8; jj++)
            acc[jj & 1] = fma1(lb_idot(lb_w_tq2_0(&b[i], jj), XB(8 * i + jj)), d * xd[8 * i + jj], acc[jj & 1]);
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_tq1_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_tq1_0);
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int jj = 0; jj < 8; jj++)
            acc[jj & 1] = fma1(lb_idot_tern(lb_w_tq1_0(&b[i], jj), XB(8 * i + jj)), d * xd[8 * i + jj], acc[jj & 1]);
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_q1_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_q1_0);
    for (int64_t i = 0; i < n / 128; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int jj = 0; jj < 4; jj++)
            acc[jj & 1] = fma1(lb_idot_tern(lb_w_q1_0(&b[i], jj), XB(4 * i + jj)), d * xd[4 * i + jj], acc[jj & 1]);
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
}

T2 static float a2_dotq_q2_0(const void *row, const void *xq, int64_t n)
{
    PROLOGUE(lmp_block_q2_0);
    for (int64_t i = 0; i < n / 64; i++) {
        const float d = _cvtsh_ss(b[i].d);
        acc[0] = fma1(lb_idot(lb_w_q2_0(&b[i], 0), XB(2 * i)), d * xd[2 * i], acc[0]);
        acc[1] = fma1(lb_idot(lb_w_q2_0(&b[i], 1), XB(2 * i + 1)), d * xd[2 * i + 1], acc[1]);
    }
    return hsum8(_mm256_add_ps(acc[0], acc[1]));
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
