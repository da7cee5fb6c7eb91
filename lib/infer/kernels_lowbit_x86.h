/*
 * Private to kernels_lowbit_avx2.c and kernels_lowbit_avx512.c: AVX2 decoders of one
 * 32-value block of each low-bit type to its 32 signed integer codes (the codes of the
 * definition, kernels_lowbit.h), and the integer dot of 32 codes with 32 Q8 activations.
 * Every function carries its own target attribute (the AVX-512 file inlines them into
 * its wider functions).
 */
#ifndef LMP_KERNELS_LOWBIT_X86_H
#define LMP_KERNELS_LOWBIT_X86_H

#include "kernels_lowbit.h"

#include "../core/blocks.h"
#include "../core/iq_grid.h"

#include <immintrin.h>
#include <string.h>

#define LB_T2 __attribute__((target("avx2,fma,f16c")))

/* byte j: 0xff when bit j % 8 of byte j / 8 of `bits` is set */
LB_T2 static inline __m256i lb_bitmask(uint32_t bits)
{
    const __m256i sp = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(sp, bit), bit);
}

/* w with the bytes under mask m negated */
LB_T2 static inline __m256i lb_negate(__m256i w, __m256i m)
{
    return _mm256_sub_epi8(_mm256_xor_si256(w, m), m);
}

/* the 32 sign bits of four 7-bit sign groups (IQ3_XXS / IQ2_XXS: bits 0-27 of a) */
static inline uint32_t lb_ksigns4(uint32_t a)
{
    return (uint32_t)lmp_iq_ksigns(a & 127) | (uint32_t)lmp_iq_ksigns((a >> 7) & 127) << 8 |
           (uint32_t)lmp_iq_ksigns((a >> 14) & 127) << 16 | (uint32_t)lmp_iq_ksigns((a >> 21) & 127) << 24;
}

/* 8 int32 partial sums of w x over 32 bytes (|w| <= 127: vpmaddubsw's pair sums fit) */
LB_T2 static inline __m256i lb_idot(__m256i w, __m256i x)
{
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* the same for w in {-1, 0, 1} only (one sign fewer): TQ1_0, Q1_0 */
LB_T2 static inline __m256i lb_idot_tern(__m256i w, __m256i x)
{
    const __m256i p = _mm256_maddubs_epi16(_mm256_set1_epi8(1), _mm256_sign_epi8(x, w));
    return _mm256_madd_epi16(p, _mm256_set1_epi16(1));
}

/* ---- codes of sub-block ib (0..7) of a 256-value block; *sc the block's scale field */

LB_T2 static inline __m256i lb_w_iq3_xxs(const lmp_block_iq3_xxs *b, int ib, uint32_t *sc)
{
    const uint8_t *q = b->qs + 8 * ib;
    uint32_t a;
    memcpy(&a, b->qs + QK_K / 4 + 4 * ib, 4);
    *sc = a >> 28;
    const __m256i g = _mm256_setr_epi32((int)lmp_iq3xxs_grid[q[0]], (int)lmp_iq3xxs_grid[q[1]],
                                        (int)lmp_iq3xxs_grid[q[2]], (int)lmp_iq3xxs_grid[q[3]],
                                        (int)lmp_iq3xxs_grid[q[4]], (int)lmp_iq3xxs_grid[q[5]],
                                        (int)lmp_iq3xxs_grid[q[6]], (int)lmp_iq3xxs_grid[q[7]]);
    return lb_negate(g, lb_bitmask(lb_ksigns4(a)));
}

LB_T2 static inline __m256i lb_w_iq2_xxs(const lmp_block_iq2_xxs *b, int ib, uint32_t *sc)
{
    uint32_t a[2];
    memcpy(a, b->qs + 4 * ib, 8);
    *sc = a[1] >> 28;
    const __m256i g = _mm256_setr_epi64x((long long)lmp_iq2xxs_grid[a[0] & 255], (long long)lmp_iq2xxs_grid[(a[0] >> 8) & 255],
                                         (long long)lmp_iq2xxs_grid[(a[0] >> 16) & 255], (long long)lmp_iq2xxs_grid[a[0] >> 24]);
    return lb_negate(g, lb_bitmask(lb_ksigns4(a[1])));
}

LB_T2 static inline __m256i lb_w_iq2_s(const lmp_block_iq2_s *b, int ib)
{
    const uint8_t *qs = b->qs + 4 * ib;
    const int h = b->qh[ib];
    const __m256i g = _mm256_setr_epi64x(
        (long long)lmp_iq2s_grid[qs[0] | ((h << 8) & 0x300)], (long long)lmp_iq2s_grid[qs[1] | ((h << 6) & 0x300)],
        (long long)lmp_iq2s_grid[qs[2] | ((h << 4) & 0x300)], (long long)lmp_iq2s_grid[qs[3] | ((h << 2) & 0x300)]);
    uint32_t sg;
    memcpy(&sg, b->qs + QK_K / 8 + 4 * ib, 4);
    return lb_negate(g, lb_bitmask(sg));
}

/* 8 g + delta: g the grid bytes in {-1, 0, 1}, delta the bytes of dv (+-1) */
LB_T2 static inline __m256i lb_shift8(__m256i g, __m256i dv)
{
    return _mm256_add_epi8(_mm256_sign_epi8(_mm256_set1_epi8(8), g), dv);
}

LB_T2 static inline __m256i lb_w_iq1_s(const lmp_block_iq1_s *b, int ib)
{
    const uint8_t *qs = b->qs + 4 * ib;
    const int h = b->qh[ib];
    const __m256i g = _mm256_setr_epi64x(
        (long long)lmp_iq1s_grid[qs[0] | ((h << 8) & 0x700)], (long long)lmp_iq1s_grid[qs[1] | ((h << 5) & 0x700)],
        (long long)lmp_iq1s_grid[qs[2] | ((h << 2) & 0x700)], (long long)lmp_iq1s_grid[qs[3] | ((h >> 1) & 0x700)]);
    return lb_shift8(g, _mm256_set1_epi8(h & 0x8000 ? -1 : 1));
}

#define LB_D8(c) ((c) ? -1ll : 0x0101010101010101ll) /* 8 bytes of delta -1 or +1 */

LB_T2 static inline __m256i lb_w_iq1_m(const lmp_block_iq1_m *b, int ib)
{
    const uint8_t *qs = b->qs + 4 * ib, *qh = b->qh + 2 * ib;
    const __m256i g = _mm256_setr_epi64x(
        (long long)lmp_iq1s_grid[qs[0] | ((qh[0] << 8) & 0x700)], (long long)lmp_iq1s_grid[qs[1] | ((qh[0] << 4) & 0x700)],
        (long long)lmp_iq1s_grid[qs[2] | ((qh[1] << 8) & 0x700)], (long long)lmp_iq1s_grid[qs[3] | ((qh[1] << 4) & 0x700)]);
    const __m256i dv = _mm256_setr_epi64x(LB_D8(qh[0] & 0x08), LB_D8(qh[0] & 0x80), LB_D8(qh[1] & 0x08), LB_D8(qh[1] & 0x80));
    return lb_shift8(g, dv);
}

/* IQ1_M: the f16 super-block scale spread over the scales' top nibbles, and the 3-bit
 * scale of half h of sub-block ib */
static inline uint16_t lb_iq1m_d(const lmp_block_iq1_m *b, uint16_t sc[4])
{
    memcpy(sc, b->scales, 8);
    return (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
}
static inline int lb_iq1m_s(const uint16_t sc[4], int ib, int h)
{
    return 2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3 * h)) & 7) + 1;
}

/* 32 codes of 16 nibble bytes through a 16-entry table (elements 0-15 low nibbles) */
LB_T2 static inline __m256i lb_nib32(const uint8_t *qs, __m256i tbl)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), f = _mm_set1_epi8(15);
    const __m256i i = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), f), _mm_and_si128(v, f));
    return _mm256_shuffle_epi8(tbl, i);
}

/* TQ2_0: Q8 block jj (0..7) of a 256-block: crumb jj % 4 of qs[32 (jj / 4) + m], minus 1 */
LB_T2 static inline __m256i lb_w_tq2_0(const lmp_block_tq2_0 *b, int jj)
{
    const __m256i v = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * (jj / 4)));
    const __m256i u = _mm256_and_si256(_mm256_srl_epi16(v, _mm_cvtsi32_si128(2 * (jj % 4))), _mm256_set1_epi8(3));
    return _mm256_sub_epi8(u, _mm256_set1_epi8(1));
}

/* TQ1_0 trits: byte k of v times byte k of m (mod 256), then (that * 3) >> 8, minus 1 */
LB_T2 static inline __m256i lb_trits(__m256i v, __m256i m)
{
    const __m256i lo8 = _mm256_set1_epi16(0x00ff), hi8 = _mm256_set1_epi16((short)0xff00);
    const __m256i p = _mm256_or_si256(_mm256_and_si256(_mm256_mullo_epi16(v, m), lo8),
                                      _mm256_mullo_epi16(_mm256_and_si256(v, hi8), _mm256_srli_epi16(m, 8)));
    const __m256i three = _mm256_set1_epi16(3);
    const __m256i te = _mm256_mulhi_epu16(_mm256_slli_epi16(p, 8), three);
    const __m256i to = _mm256_slli_epi16(_mm256_mulhi_epu16(_mm256_and_si256(p, hi8), three), 8);
    return _mm256_sub_epi8(_mm256_or_si256(te, to), _mm256_set1_epi8(1));
}

/* TQ1_0: Q8 block jj (0..7) of a 256-block (layout in kernels_lowbit_ref.c) */
LB_T2 static inline __m256i lb_w_tq1_0(const lmp_block_tq1_0 *b, int jj)
{
    static const uint8_t pw[5] = {1, 3, 9, 27, 81};
    if (jj < 5)
        return lb_trits(_mm256_loadu_si256((const __m256i *)b->qs), _mm256_set1_epi8((char)pw[jj]));
    const __m128i q16 = _mm_loadu_si128((const __m128i *)(b->qs + 32));
    if (jj < 7)
        return lb_trits(_mm256_set_m128i(q16, q16), _mm256_set_m128i(_mm_set1_epi8((char)pw[2 * jj - 9]),
                                                                     _mm_set1_epi8((char)pw[2 * jj - 10])));
    uint32_t h;
    memcpy(&h, b->qh, 4);
    return lb_trits(_mm256_set_m128i(_mm_set1_epi32((int)h), q16),
                    _mm256_setr_epi32(0x51515151, 0x51515151, 0x51515151, 0x51515151, 0x01010101, 0x03030303,
                                      0x09090909, 0x1b1b1b1b));
}

/* Q1_0: Q8 block jj (0..3) of a 128-block: +1 where the bit is set, -1 where not */
LB_T2 static inline __m256i lb_w_q1_0(const lmp_block_q1_0 *b, int jj)
{
    uint32_t bits;
    memcpy(&bits, b->qs + 4 * jj, 4);
    return _mm256_or_si256(_mm256_xor_si256(lb_bitmask(bits), _mm256_set1_epi8(-1)), _mm256_set1_epi8(1));
}

/* Q2_0: Q8 block jj (0..1) of a 64-block: crumb m % 4 of byte m / 4, minus 1 */
LB_T2 static inline __m256i lb_w_q2_0(const lmp_block_q2_0 *b, int jj)
{
    uint64_t q;
    memcpy(&q, b->qs + 8 * jj, 8);
    const __m256i v = _mm256_shuffle_epi8(
        _mm256_set1_epi64x((long long)q),
        _mm256_setr_epi64x(0x0101010100000000ll, 0x0303030302020202ll, 0x0505050504040404ll, 0x0707070706060606ll));
    const __m256i mlo = _mm256_set1_epi32(0x40100401), mhi = _mm256_set1_epi32((int)0x80200802);
    const __m256i lo = _mm256_cmpeq_epi8(_mm256_and_si256(v, mlo), mlo);
    const __m256i hi = _mm256_cmpeq_epi8(_mm256_and_si256(v, mhi), mhi);
    /* lo + 2 hi = -crumb; crumb - 1 = ~(-crumb) */
    return _mm256_xor_si256(_mm256_add_epi8(lo, _mm256_add_epi8(hi, hi)), _mm256_set1_epi8(-1));
}

#endif
