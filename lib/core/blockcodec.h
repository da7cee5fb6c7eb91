/*
 * Row codecs of the GGUF block types whose code lives in lib/quant: the dequantizer
 * (to_f32) and the reference quantizer (from_f32, no importance weights) of each. Declared
 * here, at the core level, so that the static const dtype table (lib/core/dtype.c) names
 * them at compile time; defined in lib/quant (kquants.c: Q2_K..Q6_K; iquants.c: IQ4_NL,
 * IQ4_XS, MXFP4; iq3quants.c, iq2quants.c, iq1quants.c: IQ3_*, IQ2_*, IQ1_*; tquants.c:
 * TQ1_0, TQ2_0, Q1_0, Q2_0), which include this header. lib/core never includes a
 * lib/quant header; the one archive (liblmpress.a) resolves the names.
 *
 * n is a multiple of the type's block size; src/dst hold n / block_size blocks
 * (lib/core/blocks.h). Both are pure functions of their inputs (thread safe).
 */
#ifndef LMP_BLOCKCODEC_H
#define LMP_BLOCKCODEC_H

#include <stdint.h>

#define LMP_BLOCK_CODEC(nm)                                                  \
    void lmp_##nm##_to_f32(const void *src, float *dst, int64_t n);          \
    void lmp_##nm##_from_f32(const float *src, void *dst, int64_t n);

LMP_BLOCK_CODEC(q2_k)
LMP_BLOCK_CODEC(q3_k)
LMP_BLOCK_CODEC(q4_k)
LMP_BLOCK_CODEC(q5_k)
LMP_BLOCK_CODEC(q6_k)
LMP_BLOCK_CODEC(iq4_nl)
LMP_BLOCK_CODEC(iq4_xs)
LMP_BLOCK_CODEC(mxfp4)
LMP_BLOCK_CODEC(tq1_0)
LMP_BLOCK_CODEC(tq2_0)
LMP_BLOCK_CODEC(q1_0)
LMP_BLOCK_CODEC(q2_0)
LMP_BLOCK_CODEC(iq3_xxs)
LMP_BLOCK_CODEC(iq3_s)
LMP_BLOCK_CODEC(iq2_xxs)
LMP_BLOCK_CODEC(iq2_xs)
LMP_BLOCK_CODEC(iq2_s)
LMP_BLOCK_CODEC(iq1_s)
LMP_BLOCK_CODEC(iq1_m)

#undef LMP_BLOCK_CODEC

#endif
