/*
 * Private to lib/infer: the Q8-activation kernels of the low-bit GGUF types that
 * kernels_lowbit.c does not compute itself: IQ3_XXS, IQ2_XXS, IQ2_S, IQ1_S, IQ1_M, MXFP4,
 * TQ1_0, TQ2_0, Q1_0 and Q2_0.
 *
 * Definition (kernels_lowbit_ref.c; kernels_internal.h: LMP_ACT_Q8): per 32-value block j
 * of the row, the block's weights are an integer code q[k] (|q| <= 62) times a float
 * scale f (one per block, or one per 16-value half for IQ2_S and IQ1_M), and
 *   is = sum_k q[k] x8[k]  (exact, int32),  s += (float)is * (f * dx[j]),
 * blocks (and halves) in order. The codes are the type's dequantized values divided by f:
 * grid value times sign (IQ3_XXS, IQ2_XXS, IQ2_S), 8 g + delta with g in {-1, 0, 1} and
 * delta = +-1 (IQ1_S, IQ1_M: f carries the 1/8), the doubled E2M1 value (MXFP4), the trit
 * or crumb minus one (TQ1_0, TQ2_0, Q2_0), +-1 (Q1_0). The SIMD variants
 * (kernels_lowbit_avx2.c, kernels_lowbit_avx512.c) compute the same integer sums and
 * accumulate (float)is * f * dx in lanes: their results differ from the reference's by the
 * order of the float additions only (test_kernels bounds it).
 */
#ifndef LMP_KERNELS_LOWBIT_H
#define LMP_KERNELS_LOWBIT_H

#include "kernels_internal.h"

/* The fill functions of these leaves (lmp_kimpl_fill_lowbit_q8_ref, _avx2, _avx512) are
 * declared in kernels_internal.h and listed in kernels.c's g_leaves. */

/* 2^(e - 128): half the E8M0 scale of an MXFP4 block (its code table is doubled). */
static inline float lmp_lb_e8m0_half(uint8_t e)
{
    union {
        uint32_t u;
        float f;
    } v = {e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23};
    return v.f;
}

#endif
