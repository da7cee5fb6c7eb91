/*
 * Reference Q8-activation dots of IQ3_XXS, IQ2_XXS, IQ2_S, IQ1_S, IQ1_M, MXFP4, TQ1_0,
 * TQ2_0, Q1_0 and Q2_0 (the definition: kernels_lowbit.h). Each type has a decoder of one
 * 32-value block's integer codes and scales, written from the block layouts
 * (lib/core/blocks.h) and the dequantizers of lib/quant; one generic loop sums them.
 * Portable C, not tuned: the SIMD variants are.
 */
#include "kernels_lowbit.h"

#include "../core/blocks.h"
#include "../core/iq_grid.h"

#include <string.h>

/* codes q[0..31] of 32-value block j of a row, f[0] the scale of q[0..15], f[1] of
 * q[16..31] (equal for the types with one scale a block) */
typedef void (*lb_codes_fn)(const void *row, int64_t j, int8_t q[32], float f[2]);

static inline void put_signed(int8_t *q, uint64_t g, int nv, uint8_t signs)
{
    for (int k = 0; k < nv; k++) {
        const int v = (uint8_t)(g >> 8 * k);
        q[k] = (int8_t)(signs & (1 << k) ? -v : v);
    }
}

static void codes_iq3_xxs(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_iq3_xxs *b = (const lmp_block_iq3_xxs *)row + j / 8;
    const int ib = (int)(j % 8);
    const uint8_t *qs = b->qs + 8 * ib;
    uint32_t a;
    memcpy(&a, b->qs + QK_K / 4 + 4 * ib, 4);
    for (int l = 0; l < 4; l++) {
        const uint8_t s = lmp_iq_ksigns((a >> 7 * l) & 127);
        put_signed(q + 8 * l, lmp_iq3xxs_grid[qs[2 * l]], 4, s);
        put_signed(q + 8 * l + 4, lmp_iq3xxs_grid[qs[2 * l + 1]], 4, (uint8_t)(s >> 4));
    }
    f[0] = f[1] = lmp_f16_to_f32(b->d) * (0.5f + (float)(a >> 28)) * 0.5f;
}

static void codes_iq2_xxs(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_iq2_xxs *b = (const lmp_block_iq2_xxs *)row + j / 8;
    const int ib = (int)(j % 8);
    uint32_t a[2];
    memcpy(a, b->qs + 4 * ib, 8);
    for (int l = 0; l < 4; l++)
        put_signed(q + 8 * l, lmp_iq2xxs_grid[(a[0] >> 8 * l) & 255], 8, lmp_iq_ksigns((a[1] >> 7 * l) & 127));
    f[0] = f[1] = lmp_f16_to_f32(b->d) * (0.5f + (float)(a[1] >> 28)) * 0.25f;
}

static void codes_iq2_s(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_iq2_s *b = (const lmp_block_iq2_s *)row + j / 8;
    const int ib = (int)(j % 8);
    const uint8_t *qs = b->qs + 4 * ib, *signs = b->qs + QK_K / 8 + 4 * ib;
    for (int l = 0; l < 4; l++)
        put_signed(q + 8 * l, lmp_iq2s_grid[qs[l] | ((b->qh[ib] << (8 - 2 * l)) & 0x300)], 8, signs[l]);
    const float d = lmp_f16_to_f32(b->d);
    f[0] = d * (0.5f + (float)(b->scales[ib] & 0xf)) * 0.25f;
    f[1] = d * (0.5f + (float)(b->scales[ib] >> 4)) * 0.25f;
}

/* 8 g + delta for the grid's 8 values g in {-1, 0, 1} */
static inline void put_shifted(int8_t *q, uint64_t g, int delta)
{
    for (int k = 0; k < 8; k++)
        q[k] = (int8_t)(8 * (int8_t)(uint8_t)(g >> 8 * k) + delta);
}

static void codes_iq1_s(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_iq1_s *b = (const lmp_block_iq1_s *)row + j / 8;
    const int ib = (int)(j % 8);
    const uint16_t h = b->qh[ib];
    for (int l = 0; l < 4; l++)
        put_shifted(q + 8 * l, lmp_iq1s_grid[b->qs[4 * ib + l] | (((h >> 3 * l) & 7) << 8)], h & 0x8000 ? -1 : 1);
    f[0] = f[1] = lmp_f16_to_f32(b->d) * (float)(2 * ((h >> 12) & 7) + 1) * 0.125f;
}

static void codes_iq1_m(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_iq1_m *b = (const lmp_block_iq1_m *)row + j / 8;
    const int ib = (int)(j % 8);
    uint16_t sc[4];
    memcpy(sc, b->scales, 8);
    const uint16_t s = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
    const uint8_t *qs = b->qs + 4 * ib, *qh = b->qh + 2 * ib;
    const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                        qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
    const int delta[4] = {qh[0] & 0x08 ? -1 : 1, qh[0] & 0x80 ? -1 : 1, qh[1] & 0x08 ? -1 : 1, qh[1] & 0x80 ? -1 : 1};
    for (int l = 0; l < 4; l++)
        put_shifted(q + 8 * l, lmp_iq1s_grid[idx[l]], delta[l]);
    const float d = lmp_f16_to_f32(s);
    f[0] = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1) * 0.125f;
    f[1] = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1) * 0.125f;
}

static void codes_mxfp4(const void *row, int64_t j, int8_t q[32], float f[2])
{
    static const int8_t fp4[16] = LMP_FP4_VALUES;
    const lmp_block_mxfp4 *b = (const lmp_block_mxfp4 *)row + j;
    for (int k = 0; k < 16; k++) {
        q[k] = fp4[b->qs[k] & 15];
        q[k + 16] = fp4[b->qs[k] >> 4];
    }
    f[0] = f[1] = lmp_lb_e8m0_half(b->e);
}

static void codes_tq2_0(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_tq2_0 *b = (const lmp_block_tq2_0 *)row + j / 8;
    const int g = (int)(j % 8) / 4, t = (int)(j % 4);
    for (int m = 0; m < 32; m++)
        q[m] = (int8_t)(((b->qs[32 * g + m] >> 2 * t) & 3) - 1);
    f[0] = f[1] = lmp_f16_to_f32(b->d);
}

/* trit t of a TQ1_0 byte, minus one */
static inline int8_t trit(uint8_t byte, int t)
{
    static const uint8_t pow3[5] = {1, 3, 9, 27, 81};
    const uint8_t v = (uint8_t)(byte * pow3[t]);
    return (int8_t)((((uint16_t)v * 3) >> 8) - 1);
}

static void codes_tq1_0(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_tq1_0 *b = (const lmp_block_tq1_0 *)row + j / 8;
    const int jj = (int)(j % 8);
    /* values 0-159: trit t of qs[0..31] at 32 t + m; 160-239: trit t of qs[32..47] at
     * 160 + 16 t + m; 240-255: trit t of qh[0..3] at 240 + 4 t + m */
    for (int m = 0; m < 32; m++) {
        const int e = 32 * jj + m;
        q[m] = e < 160 ? trit(b->qs[e % 32], e / 32)
               : e < 240 ? trit(b->qs[32 + (e - 160) % 16], (e - 160) / 16)
                         : trit(b->qh[(e - 240) % 4], (e - 240) / 4);
    }
    f[0] = f[1] = lmp_f16_to_f32(b->d);
}

static void codes_q1_0(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_q1_0 *b = (const lmp_block_q1_0 *)row + j / 4;
    const uint8_t *bits = b->qs + 4 * (j % 4);
    for (int m = 0; m < 32; m++)
        q[m] = (int8_t)((bits[m / 8] >> (m % 8)) & 1 ? 1 : -1);
    f[0] = f[1] = lmp_f16_to_f32(b->d);
}

static void codes_q2_0(const void *row, int64_t j, int8_t q[32], float f[2])
{
    const lmp_block_q2_0 *b = (const lmp_block_q2_0 *)row + j / 2;
    const uint8_t *qs = b->qs + 8 * (j % 2);
    for (int m = 0; m < 32; m++)
        q[m] = (int8_t)(((qs[m / 4] >> 2 * (m % 4)) & 3) - 1);
    f[0] = f[1] = lmp_f16_to_f32(b->d);
}

/* The definition: blocks in order; the types with a scale per 16 values add the two
 * halves' terms in order. */
static float ref_dotq(lb_codes_fn codes, int halves, const void *row, const void *xq, int64_t n)
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t j = 0; j < n / 32; j++) {
        int8_t q[32];
        float f[2];
        codes(row, j, q, f);
        int32_t is[2] = {0, 0};
        for (int k = 0; k < 32; k++)
            is[k / 16] += q[k] * xs[32 * j + k];
        if (halves) {
            s += (float)is[0] * (f[0] * xd[j]);
            s += (float)is[1] * (f[1] * xd[j]);
        } else {
            s += (float)(is[0] + is[1]) * (f[0] * xd[j]);
        }
    }
    return s;
}

#define REF(nm, halves)                                                                            \
    static float ref_dotq_##nm(const void *row, const void *xq, int64_t n)                         \
    {                                                                                              \
        return ref_dotq(codes_##nm, halves, row, xq, n);                                           \
    }
REF(iq3_xxs, 0)
REF(iq2_xxs, 0)
REF(iq2_s, 1)
REF(iq1_s, 0)
REF(iq1_m, 1)
REF(mxfp4, 0)
REF(tq2_0, 0)
REF(tq1_0, 0)
REF(q1_0, 0)
REF(q2_0, 0)
#undef REF

void lmp_kimpl_fill_lowbit_q8_ref(lmp_kimpl *k)
{
    k->dt[LMP_DT_IQ3_XXS].dotq = ref_dotq_iq3_xxs;
    k->dt[LMP_DT_IQ2_XXS].dotq = ref_dotq_iq2_xxs;
    k->dt[LMP_DT_IQ2_S].dotq = ref_dotq_iq2_s;
    k->dt[LMP_DT_IQ1_S].dotq = ref_dotq_iq1_s;
    k->dt[LMP_DT_IQ1_M].dotq = ref_dotq_iq1_m;
    k->dt[LMP_DT_MXFP4].dotq = ref_dotq_mxfp4;
    k->dt[LMP_DT_TQ2_0].dotq = ref_dotq_tq2_0;
    k->dt[LMP_DT_TQ1_0].dotq = ref_dotq_tq1_0;
    k->dt[LMP_DT_Q1_0].dotq = ref_dotq_q1_0;
    k->dt[LMP_DT_Q2_0].dotq = ref_dotq_q2_0;
}
