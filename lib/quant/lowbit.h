/*
 * Private hooks between kquants.c (lmp_quant_rows) and the low-bit GGUF families:
 * iquants.c (IQ4_NL, IQ4_XS, MXFP4), iq3quants.c, iq2quants.c, iq1quants.c and tquants.c
 * (TQ1_0, TQ2_0, Q1_0, Q2_0). Not part of the public lib/quant interface (quant.h). Each
 * family's row codecs (lmp_<type>_to_f32 / _from_f32) are declared in
 * lib/core/blockcodec.h and bound by the dtype table at compile time.
 */
#ifndef LMP_QUANT_LOWBIT_H
#define LMP_QUANT_LOWBIT_H

#include "../core/blockcodec.h"
#include "../core/core.h"

/* A quantizer that takes importance weights: n values of one row, qw its n weights. */
typedef void (*lmp_weighted_fn)(const float *x, void *dst, int64_t n, const float *qw);

/* The weighted quantizer of type t, or NULL when the family ignores weights for t. */
lmp_weighted_fn lmp_iq_weighted(lmp_dtype t);
/* iq3quants.c, iq2quants.c, iq1quants.c (called by lmp_iq_weighted) */
lmp_weighted_fn lmp_iq3_weighted(lmp_dtype t);
lmp_weighted_fn lmp_iq2_weighted(lmp_dtype t);
lmp_weighted_fn lmp_iq1_weighted(lmp_dtype t);
/* kquants.c: ggml's make_qp_quants (n non-negative values to [0, nmax] against one
 * scale, qw-weighted; returns the scale) */
float lmp_q_make_qp(int n, int nmax, const float *x, uint8_t *L, const float *qw);

/* ggml's nearest_int: round half to even through the 1.5 * 2^23 magic number (|x| <
 * 2^22; larger values and NaN are clamped first). */
static inline int lmp_q_nint(float x)
{
    float c = x >= -4194303.f ? x : -4194303.f;
    c = c <= 4194303.f ? c : 4194303.f;
    float v = c + 12582912.f;
    int32_t i;
    __builtin_memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

#endif
