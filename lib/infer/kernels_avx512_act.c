/*
 * AVX-512 kernels on rounded activations (kernels.h: lmp_gemm_set_exact): int8 dot
 * products (VNNI vpdpbusd) for weights of q8_0 / q4_0 / q5_0 (and the row dots of q6_K
 * and q4_K) against activations
 * quantized per block of 32 (LMP_ACT_Q8), and bf16 dot products (AVX512-BF16 vdpbf16ps)
 * for bf16 weights against activations rounded to bf16. Two separately selected parts:
 * lmp_kimpl_fill_avx512_vnni and lmp_kimpl_fill_avx512_bf16 (the driver calls each only
 * when the CPU has the extension). Compiled with per-function target attributes.
 *
 * Q8 tile (12 x 16): per block of 32 k the 12 x 16 integer sums come from 8 vpdpbusd
 * per row (X as unsigned bytes q + 128 broadcast 4 at a time, W as signed bytes, 16
 * columns x 4 k per register); the +128 is taken back by starting each integer
 * accumulator at -128 * sum(w) of its column (packed with the panel), then
 * f32 acc += float(isum) * (dw * dx). Integer sums are exact, so the only difference
 * from the reference is the f32 accumulation order.
 * BF16 tile (12 x 32): the f32 register tile with vdpbf16ps over pairs of k.
 * Checked against kernels_ref.c by tests/unit/test_kernels.c.
 */
#include "kernels_internal.h"

#if defined(__x86_64__)
#include "../core/blocks.h"
#include "kernels_x86.h"

#include <immintrin.h>
#include <string.h>

#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))
#define TB __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx2,fma,f16c")))

/* ================================================================ Q8 activations */

/* One block of 32: the quants (as 32 signed bytes), scale and sum, bitwise as
 * ref_quant_q8 (max is exact, the division and the product are single f32 operations,
 * cvtps2dq rounds to nearest even like nearbyintf in the default mode). */
TV static inline __m256i quant_block(const float *x, float *d, int32_t *s)
{
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
    const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
    const __m512 vid = _mm512_set1_ps(id);
    const __m512i i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
    const __m512i i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
    *d = db;
    *s = _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1));
    return _mm256_set_m128i(_mm512_cvtsepi32_epi8(i1), _mm512_cvtsepi32_epi8(i0));
}

TV static void quant_q8(const float *x, int64_t n, void *xq)
{
    int8_t *q = xq;
    float *d = (float *)lmp_xq8_d(xq, n);
    int32_t *s = (int32_t *)lmp_xq8_s(xq, n);
    for (int64_t b = 0; b < n / 32; b++)
        _mm256_storeu_si256((__m256i *)(q + 32 * b), quant_block(x + 32 * b, d + b, s + b));
}

/* Per-lane scales: lanes 0-7 s0, lanes 8-15 s1 (one pair of blocks per register). */
TV static inline __m512 scale2(float s0, float s1)
{
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

/* Weight bytes of two blocks as one register: q8_0 signed quants. */
TV static inline __m512i w2_q8_0(const lmp_block_q8_0 *b)
{
    return _mm512_inserti64x4(
        _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[0].qs)),
        _mm256_loadu_si256((const __m256i *)b[1].qs), 1);
}

/* Unsigned nibbles of two q4_0-layout blocks (elements 0-15 low nibbles, 16-31 high). */
TV static inline __m512i nib2(const uint8_t *qs0, const uint8_t *qs1)
{
    const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)qs1),
                                       _mm_loadu_si128((const __m128i *)qs0));
    const __m256i m = _mm256_set1_epi8(15);
    const __m512i lo = _mm512_castsi256_si512(_mm256_and_si256(v, m));
    const __m512i hi = _mm512_castsi256_si512(_mm256_and_si256(_mm256_srli_epi16(v, 4), m));
    return _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi);
}

TV static inline __m512i w2_q4_0(const lmp_block_q4_0 *b) { return nib2(b[0].qs, b[1].qs); }

/* q5_0: nibble + 16 * fifth bit (unsigned 0..31). */
TV static inline __m512i w2_q5_0(const lmp_block_q5_0 *b)
{
    uint32_t h0, h1;
    memcpy(&h0, b[0].qh, 4);
    memcpy(&h1, b[1].qh, 4);
    const __m512i v = nib2(b[0].qs, b[1].qs);
    return _mm512_mask_add_epi8(v, (__mmask64)h0 | (__mmask64)h1 << 32, v, _mm512_set1_epi8(16));
}

/* Integer sums of two blocks (lanes 0-7 block 0, 8-15 block 1; each lane a partial
 * sum, the block's sum is the sum of its 8 lanes). SIGNED: w is signed (sign trick:
 * |w| times x with w's sign); otherwise w is unsigned with offset OFF subtracted. */
TV static inline __m512i isum2_signed(__m512i w, __m512i x)
{
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx);
}

TV static inline __m512i isum2_off(__m512i w, __m512i x, int off)
{
    const __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, x);
    const __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)off), x);
    return _mm512_sub_epi32(p, c);
}

TV static inline __m256i isum1_signed(__m256i w, __m256i x)
{
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
}

TV static inline __m256i isum1_off(__m256i w, __m256i x, int off)
{
    const __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, x);
    const __m256i c = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8((char)off), x);
    return _mm256_sub_epi32(p, c);
}

#define DOTQ8(nm, BT, ISUM2, ISUM1)                                                       \
    TV static inline __m512 vdotq_##nm(const void *row, const void *xq, int64_t n)        \
    {                                                                                     \
        const BT *b = row;                                                                \
        const int8_t *xs = xq;                                                            \
        const float *xd = lmp_xq8_d(xq, n);                                               \
        const int64_t nb = n / 32;                                                        \
        __m512 a0 = _mm512_setzero_ps(), a1 = a0;                                         \
        int64_t i = 0;                                                                    \
        for (; i + 4 <= nb; i += 4) {                                                     \
            const __m512i p0 = ISUM2(w2_##nm(b + i), _mm512_loadu_si512(xs + 32 * i));    \
            const __m512i p1 =                                                            \
                ISUM2(w2_##nm(b + i + 2), _mm512_loadu_si512(xs + 32 * i + 64));          \
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0),                                  \
                                 scale2(_cvtsh_ss(b[i].d) * xd[i],                        \
                                        _cvtsh_ss(b[i + 1].d) * xd[i + 1]), a0);          \
            a1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p1),                                  \
                                 scale2(_cvtsh_ss(b[i + 2].d) * xd[i + 2],                \
                                        _cvtsh_ss(b[i + 3].d) * xd[i + 3]), a1);          \
        }                                                                                 \
        for (; i + 2 <= nb; i += 2) {                                                     \
            const __m512i p0 = ISUM2(w2_##nm(b + i), _mm512_loadu_si512(xs + 32 * i));    \
            a0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p0),                                  \
                                 scale2(_cvtsh_ss(b[i].d) * xd[i],                        \
                                        _cvtsh_ss(b[i + 1].d) * xd[i + 1]), a0);          \
        }                                                                                 \
        if (i < nb) {                                                                     \
            const __m256i p = ISUM1(b + i, _mm256_loadu_si256((const __m256i *)(xs + 32 * i))); \
            a1 = _mm512_add_ps(a1, _mm512_zextps256_ps512(_mm256_mul_ps(                    \
                _mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]))));       \
        }                                                                                 \
        return _mm512_add_ps(a0, a1);                                                     \
    }

/* single-block forms for the odd tail */
TV static inline __m256i one_q8_0(const lmp_block_q8_0 *b, __m256i x)
{
    return isum1_signed(_mm256_loadu_si256((const __m256i *)b->qs), x);
}
TV static inline __m256i one_q4_0(const lmp_block_q4_0 *b, __m256i x)
{
    return isum1_off(_mm512_castsi512_si256(nib2(b->qs, b->qs)), x, 8);
}
TV static inline __m256i one_q5_0(const lmp_block_q5_0 *b, __m256i x)
{
    uint32_t h;
    memcpy(&h, b->qh, 4);
    const __m256i v = _mm512_castsi512_si256(nib2(b->qs, b->qs));
    return isum1_off(_mm256_mask_add_epi8(v, h, v, _mm256_set1_epi8(16)), x, 16);
}
#define ISUM2_Q8_0(w, x) isum2_signed(w, x)
#define ISUM2_Q4_0(w, x) isum2_off(w, x, 8)
#define ISUM2_Q5_0(w, x) isum2_off(w, x, 16)
DOTQ8(q8_0, lmp_block_q8_0, ISUM2_Q8_0, one_q8_0)
DOTQ8(q5_0, lmp_block_q5_0, ISUM2_Q5_0, one_q5_0)

/* q4_0, the decoding hot spot: two blocks (36 bytes) per masked load; vpermb spreads
 * the 16 nibble bytes of each block over two 128-bit lanes (the second lane shifted
 * right by 4) and gathers the two f16 scales into lanes 0-7 / 8-15. */
#ifndef LMP_Q4_PF
#define LMP_Q4_PF 2048
#endif
TV static inline __m512 vdotq_q4_0(const void *row, const void *xq, int64_t n)
{
    const uint8_t *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const int64_t nb = n / 32;
    /* byte indices: nibbles of block 0 (bytes 2-17) in lanes 0-1, block 1 (20-35) in
     * lanes 2-3; the scales (bytes 0-1, 18-19) as words 0-7 and 8-15 */
    static const uint8_t ni[64] = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35};
    static const uint8_t di[64] = {0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 18, 19, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    const __m512i nidx = _mm512_loadu_si512(ni), didx = _mm512_loadu_si512(di);
    const __m512i m4 = _mm512_set1_epi8(15), eight = _mm512_set1_epi8(8);
    const __m512i xa = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    const __m512i xb = _mm512_add_epi32(xa, _mm512_set1_epi32(2));
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
#define PAIR(i, acc, xdv, xi)                                                                 {                                                                                             const __m512i raw = _mm512_maskz_loadu_epi8(0xfffffffffull, b + 18 * (i));                __m512i v = _mm512_permutexvar_epi8(nidx, raw);                                           v = _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xff00ff00u, v, 4), m4);                   const __m512i x = _mm512_loadu_si512(xs + 32 * (i));                                      const __m512i p = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), v, x),                                            _mm512_dpbusd_epi32(_mm512_setzero_si512(), eight, x));         const __m512 dw = _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_permutexvar_epi8(didx, raw)));         acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p),                                                                    _mm512_mul_ps(dw, _mm512_permutexvar_ps(xi, xdv)), acc);        }
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        _mm_prefetch((const char *)(b + 18 * i) + LMP_Q4_PF, _MM_HINT_T0);
        const __m512 xdv = _mm512_castps128_ps512(_mm_loadu_ps(xd + i));
        PAIR(i, a0, xdv, xa)
        PAIR(i + 2, a1, xdv, xb)
    }
    for (; i + 2 <= nb; i += 2) {
        const __m512 xdv = _mm512_maskz_loadu_ps(0x3, xd + i);
        PAIR(i, a0, xdv, xa)
    }
#undef PAIR
    if (i < nb) {
        const lmp_block_q4_0 *bl = (const lmp_block_q4_0 *)row + i;
        const __m256i p = one_q4_0(bl, _mm256_loadu_si256((const __m256i *)(xs + 32 * i)));
        a1 = _mm512_add_ps(a1, _mm512_zextps256_ps512(_mm256_mul_ps(
                                   _mm256_cvtepi32_ps(p), _mm256_set1_ps(_cvtsh_ss(bl->d) * xd[i]))));
    }
    return _mm512_add_ps(a0, a1);
}

#define DOTQ_WRAP(nm, T)                                                                  \
    T static float dotq_##nm(const void *row, const void *xa, int64_t n)                  \
    {                                                                                     \
        return _mm512_reduce_add_ps(vdotq_##nm(row, xa, n));                              \
    }                                                                                     \
    T static void dotq4_##nm(const void *row, size_t rb, const void *xa, int64_t n, float *out) \
    {                                                                                     \
        /* rows in address order (see kernels_avx512.c dot4) */                          \
        const uint8_t *r = row;                                                           \
        const __m512 v0 = vdotq_##nm(r, xa, n), v1 = vdotq_##nm(r + rb, xa, n);           \
        const __m512 v2 = vdotq_##nm(r + 2 * rb, xa, n);                                  \
        const __m512 v3 = vdotq_##nm(r + 3 * rb, xa, n);                                  \
        lmp_hsum4_512(v0, v1, v2, v3, out);                                                \
    }
DOTQ_WRAP(q8_0, TV)
DOTQ_WRAP(q4_0, TV)
DOTQ_WRAP(q5_0, TV)

/* q4_0 in the interleaved layout (kernels.h: LMP_WL_Q4_0X16; kernels_repack.c), 16 rows
 * at once, lane r = row r: per block, each of the four 64-byte words gives two vpdpbusd
 * (low nibbles against activation bytes 4j..4j+3 broadcast, high nibbles against bytes
 * 16+4j..), the unsigned nibbles' offset taken back as 8 * the block's activation sum
 * (the LMP_ACT_Q8 row carries it), then acc += float(isum) * (dw * dx) in 16 lanes. No
 * shuffles and no horizontal sums: what a row kernel spends per block on one row goes
 * to 16 here. Two blocks per step, one f32 accumulator each. */
/* Software prefetch into L2, this far ahead (bytes): the kernel's instructions per
 * byte leave the out-of-order window too short to keep enough DRAM reads in flight, and
 * the hardware prefetchers alone gave 13 GB/s on one Zen 4 core against 22 GB/s with
 * this (tests/bench/bench_gemm.c, decode rows; 1-16 KiB ahead or into L1 did not help) */
#ifndef LMP_Q4X16_PF
#define LMP_Q4X16_PF 24576
#endif
TV static inline __m512 x16_block(const uint8_t *q, const uint8_t *d, const int32_t *x,
                                  int32_t xsum, float xd, __m512 acc)
{
    /* high nibbles used in place (byte & 0xf0 = 16 * nibble, no shift): c sums 16x, so
     * 16 * (a + c / 16) = 16a + c is exact and float(16a + c) * (dw * dx / 16) rounds as
     * float(a + c / 16) * (dw * dx) (power-of-two scalings) */
    const __m512i m4 = _mm512_set1_epi8(15), mf0 = _mm512_set1_epi8((char)0xf0);
    const __m512i w0 = _mm512_loadu_si512(q), w1 = _mm512_loadu_si512(q + 64);
    const __m512i w2 = _mm512_loadu_si512(q + 128), w3 = _mm512_loadu_si512(q + 192);
    __m512i a = _mm512_dpbusd_epi32(_mm512_set1_epi32(-8 * xsum), _mm512_and_si512(w0, m4),
                                    _mm512_set1_epi32(x[0]));
    __m512i c = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_and_si512(w0, mf0),
                                    _mm512_set1_epi32(x[4]));
    a = _mm512_dpbusd_epi32(a, _mm512_and_si512(w1, m4), _mm512_set1_epi32(x[1]));
    c = _mm512_dpbusd_epi32(c, _mm512_and_si512(w1, mf0), _mm512_set1_epi32(x[5]));
    a = _mm512_dpbusd_epi32(a, _mm512_and_si512(w2, m4), _mm512_set1_epi32(x[2]));
    c = _mm512_dpbusd_epi32(c, _mm512_and_si512(w2, mf0), _mm512_set1_epi32(x[6]));
    a = _mm512_dpbusd_epi32(a, _mm512_and_si512(w3, m4), _mm512_set1_epi32(x[3]));
    c = _mm512_dpbusd_epi32(c, _mm512_and_si512(w3, mf0), _mm512_set1_epi32(x[7]));
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(_mm512_slli_epi32(a, 4), c)),
                           _mm512_mul_ps(dw, _mm512_set1_ps(xd * 0.0625f)), acc);
}

TV static void gemv_q4x16(const void *grp, const void *xq, int64_t n, float out[16])
{
    const uint8_t *g = grp, *sc = g + 256 * (n / 32);
    const int32_t *xw = xq, *xs = lmp_xq8_s(xq, n);
    const float *xd = lmp_xq8_d(xq, n);
    const int64_t nb = n / 32;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const char *pf = (const char *)(g + 256 * b) + LMP_Q4X16_PF;
        for (int i = 0; i < 8; i++) /* the groups follow each other in memory */
            _mm_prefetch(pf + 64 * i, _MM_HINT_T1);
        a0 = x16_block(g + 256 * b, sc + 32 * b, xw + 8 * b, xs[b], xd[b], a0);
        a1 = x16_block(g + 256 * (b + 1), sc + 32 * (b + 1), xw + 8 * (b + 1), xs[b + 1],
                       xd[b + 1], a1);
    }
    if (b < nb)
        a0 = x16_block(g + 256 * b, sc + 32 * b, xw + 8 * b, xs[b], xd[b], a0);
    _mm512_storeu_ps(out, _mm512_add_ps(a0, a1));
}

/* q6_K against Q8 activations: per half super-block (128 values) the 6-bit codes of
 * values 0-63 and 64-127 as two registers of unsigned bytes (low nibbles of ql with
 * bits 4-5 from qh, shifted per 32-byte half by per-word shift counts), each with two
 * vpdpbusd (codes . x, and 32 . x for the offset), then per lane (four values of one
 * 16-value sub-block, within one 32-value activation block) acc += float(isum) *
 * (d * scale[sub-block] * dx[block]). No horizontal sums before the end. */
TV static float dotq_q6_k(const void *row, const void *xq, int64_t n)
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m512i m4 = _mm512_set1_epi8(15), m30 = _mm512_set1_epi8(0x30);
    const __m512i o32 = _mm512_set1_epi8(32);
    /* bits 0-1 (2-3) of qh to 4-5 for values 0-31 (32-63); 4-5 (6-7) for 64-95 (96-127) */
    const __m512i shl = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
    const __m512i shr = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    /* lane l of values 0-63 of half h: sub-block 8h + l/4, activation block 4h + l/8;
     * values 64-127: 8h + 4 + l/4 and 4h + 2 + l/8 */
    const __m512i sa0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i da0 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_q6_k *b = (const lmp_block_q6_k *)row + i;
        const __m512 sc = _mm512_mul_ps(
            _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b->scales))),
            _mm512_set1_ps(_cvtsh_ss(b->d)));
        const __m512 dx = _mm512_castps256_ps512(_mm256_loadu_ps(xd + 8 * i));
        for (int h = 0; h < 2; h++) {
            const __m512i L = _mm512_loadu_si512(b->ql + 64 * h);
            const __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b->qh + 32 * h)));
            const __m512i qa = _mm512_or_si512(_mm512_and_si512(L, m4),
                                               _mm512_and_si512(_mm512_sllv_epi16(H, shl), m30));
            const __m512i qb = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(L, 4), m4),
                                               _mm512_and_si512(_mm512_srlv_epi16(H, shr), m30));
            const __m512i xa = _mm512_loadu_si512(xs + 256 * i + 128 * h);
            const __m512i xb = _mm512_loadu_si512(xs + 256 * i + 128 * h + 64);
            const __m512i pa = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qa, xa),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), o32, xa));
            const __m512i pb = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), qb, xb),
                                                _mm512_dpbusd_epi32(_mm512_setzero_si512(), o32, xb));
            const __m512i s0 = _mm512_add_epi32(sa0, _mm512_set1_epi32(8 * h));
            const __m512i d0 = _mm512_add_epi32(da0, _mm512_set1_epi32(4 * h));
            const __m512 fa = _mm512_mul_ps(_mm512_permutexvar_ps(s0, sc), _mm512_permutexvar_ps(d0, dx));
            const __m512 fb = _mm512_mul_ps(
                _mm512_permutexvar_ps(_mm512_add_epi32(s0, _mm512_set1_epi32(4)), sc),
                _mm512_permutexvar_ps(_mm512_add_epi32(d0, _mm512_set1_epi32(2)), dx));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pa), fa, acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pb), fb, acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* q4_K against Q8 activations: each sub-block of 32 values (one 6-bit scale and min)
 * is one activation block. Per 64 bytes of qs (sub-blocks 4p .. 4p+3): the low nibbles
 * are sub-blocks 4p (bytes 0-31) and 4p+2 (32-63), the high nibbles 4p+1 and 4p+3; one
 * vpdpbusd each against the matching two activation blocks, then per lane (four values
 * of one sub-block) acc += float(isum) * (d * sc[sub-block] * dx[block]). The mins:
 * acc_m += (dmin * m[j] * dx[j]) * float(sum of block j's quants), eight sub-blocks per
 * register; result sum(acc) - sum(acc_m). No horizontal sums before the end. */
TV static float dotq_q4_k(const void *row, const void *xq, int64_t n)
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const int32_t *xsum = lmp_xq8_s(xq, n);
    const __m512i m4 = _mm512_set1_epi8(15);
    /* lanes 0-7 of the low-nibble register: sub-block 4p, lanes 8-15: 4p+2; high: +1 */
    const __m512i il = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i ih = _mm512_add_epi32(il, _mm512_set1_epi32(1));
    const __m512i i4 = _mm512_set1_epi32(4);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    __m256 accm = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_q4_k *b = (const lmp_block_q4_k *)row + i;
        /* the eight 6-bit scales and mins, byte j of sc (mn) for sub-block j: bytes 0-3
         * the low 6 bits of scales[0-3] ([4-7]), bytes 4-7 the nibbles of scales[8-11]
         * with the top 2 bits of scales[0-3] ([4-7]) above them */
        uint32_t u[3];
        memcpy(u, b->scales, 12);
        const uint32_t c3f = 0x3f3f3f3f, c0f = 0x0f0f0f0f, c03 = 0x03030303;
        const __m128i v = _mm_setr_epi32((int)(u[0] & c3f), (int)((u[2] & c0f) | (((u[0] >> 6) & c03) << 4)),
                                         (int)(u[1] & c3f),
                                         (int)(((u[2] >> 4) & c0f) | (((u[1] >> 6) & c03) << 4)));
        const __m256 dx = _mm256_loadu_ps(xd + 8 * i);
        const __m256 fs = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b->d)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v))), dx);
        const __m256 fm = _mm256_mul_ps(
            _mm256_mul_ps(_mm256_set1_ps(_cvtsh_ss(b->dmin)),
                          _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(v, 8)))), dx);
        accm = _mm256_fmadd_ps(fm, _mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(xsum + 8 * i))),
                               accm);
        const __m512 f = _mm512_castps256_ps512(fs);
        const int8_t *x = xs + 256 * i;
        for (int p = 0; p < 2; p++) {
            const __m512i Q = _mm512_loadu_si512(b->qs + 64 * p);
            const __m512i lo = _mm512_and_si512(Q, m4);
            const __m512i hi = _mm512_and_si512(_mm512_srli_epi16(Q, 4), m4);
            const int8_t *xp = x + 128 * p;
            const __m512i xl = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)xp)),
                _mm256_loadu_si256((const __m256i *)(xp + 64)), 1);
            const __m512i xh = _mm512_inserti64x4(
                _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(xp + 32))),
                _mm256_loadu_si256((const __m256i *)(xp + 96)), 1);
            const __m512i pl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xl);
            const __m512i ph = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xh);
            const __m512i jl = p ? _mm512_add_epi32(il, i4) : il;
            const __m512i jh = p ? _mm512_add_epi32(ih, i4) : ih;
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pl), _mm512_permutexvar_ps(jl, f), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ph), _mm512_permutexvar_ps(jh, f), acc1);
        }
    }
    const __m128 m2 = _mm_add_ps(_mm256_castps256_ps128(accm), _mm256_extractf128_ps(accm, 1));
    const __m128 m1 = _mm_add_ps(m2, _mm_movehl_ps(m2, m2));
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - _mm_cvtss_f32(_mm_add_ss(m1, _mm_movehdup_ps(m1)));
}

/* ---------------------------------------------------------------- Q8 tile 12 x 16 */

#define QMR 12
#define QNR 16
/* X tile, per block of 32: [g < 8][i < 12] 4 bytes (q + 128), then 12 f32 scales. */
#define QX_BLK (QMR * 32 + QMR * 4)
/* W panel, per block: [g < 8][j < 16] 4 signed bytes, 16 f32 scales, 16 int32
 * corrections (-128 * sum of the column's quants). */
#define QW_BLK (QNR * 32 + QNR * 4 + QNR * 4)

static size_t q8_x_bytes(int64_t kc) { return ((size_t)(kc / 32) * QX_BLK + 63) & ~(size_t)63; }

TV static void q8_pack_x(const float *x, int64_t ldx, int rows, int64_t kc, void *xpv)
{
    uint8_t *xp = xpv;
    for (int64_t b = 0; b < kc / 32; b++, xp += QX_BLK) {
        uint32_t *q = (uint32_t *)xp;
        float *d = (float *)(xp + QMR * 32);
        for (int i = 0; i < QMR; i++) {
            if (i < rows) {
                int32_t s;
                const __m256i v = _mm256_xor_si256(quant_block(x + i * ldx + 32 * b, d + i, &s),
                                                   _mm256_set1_epi8((char)0x80));
                uint32_t u[8];
                _mm256_storeu_si256((__m256i *)u, v);
                for (int g = 0; g < 8; g++)
                    q[g * QMR + i] = u[g];
            } else {
                d[i] = 0.0f;
                for (int g = 0; g < 8; g++)
                    q[g * QMR + i] = 0x80808080u;
            }
        }
    }
}

/* Signed quants of one block and its scale: the per-dtype half of pack_wq. */
TV static inline __m256i wblk_q8_0(const void *row, int64_t b, float *d)
{
    const lmp_block_q8_0 *blk = (const lmp_block_q8_0 *)row + b;
    *d = _cvtsh_ss(blk->d);
    return _mm256_loadu_si256((const __m256i *)blk->qs);
}
TV static inline __m256i wblk_q4_0(const void *row, int64_t b, float *d)
{
    const lmp_block_q4_0 *blk = (const lmp_block_q4_0 *)row + b;
    *d = _cvtsh_ss(blk->d);
    return _mm256_sub_epi8(_mm512_castsi512_si256(nib2(blk->qs, blk->qs)), _mm256_set1_epi8(8));
}
TV static inline __m256i wblk_q5_0(const void *row, int64_t b, float *d)
{
    const lmp_block_q5_0 *blk = (const lmp_block_q5_0 *)row + b;
    uint32_t h;
    memcpy(&h, blk->qh, 4);
    *d = _cvtsh_ss(blk->d);
    const __m256i v = _mm512_castsi512_si256(nib2(blk->qs, blk->qs));
    return _mm256_sub_epi8(_mm256_mask_add_epi8(v, h, v, _mm256_set1_epi8(16)),
                           _mm256_set1_epi8(16));
}

/* sum of 32 signed bytes */
TV static inline int32_t bsum(__m256i v)
{
    const __m256i s = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)),
                                      _mm256_setzero_si256());
    const __m128i t = _mm_add_epi64(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    return (int32_t)(_mm_cvtsi128_si64(t) + _mm_extract_epi64(t, 1)) - 32 * 128;
}

#define PACK_WQ8(nm)                                                                      \
    TV static void pack_wq_##nm(const void *w, size_t rb, int rows, int64_t k0, int64_t kc, \
                                void *wpv)                                                \
    {                                                                                     \
        uint8_t *wp = wpv;                                                                \
        for (int64_t b = 0; b < kc / 32; b++, wp += QW_BLK) {                             \
            uint32_t *q = (uint32_t *)wp;                                                 \
            float *d = (float *)(wp + QNR * 32);                                          \
            int32_t *c = (int32_t *)(wp + QNR * 36);                                      \
            for (int j = 0; j < QNR; j++) {                                               \
                if (j < rows) {                                                           \
                    const __m256i v =                                                     \
                        wblk_##nm((const uint8_t *)w + (size_t)j * rb, k0 / 32 + b, d + j); \
                    c[j] = -128 * bsum(v);                                                \
                    uint32_t u[8];                                                        \
                    _mm256_storeu_si256((__m256i *)u, v);                                 \
                    for (int g = 0; g < 8; g++)                                           \
                        q[g * QNR + j] = u[g];                                            \
                } else {                                                                  \
                    d[j] = 0.0f;                                                          \
                    c[j] = 0;                                                             \
                    for (int g = 0; g < 8; g++)                                           \
                        q[g * QNR + j] = 0;                                               \
                }                                                                         \
            }                                                                             \
        }                                                                                 \
    }
PACK_WQ8(q8_0)
PACK_WQ8(q4_0)
PACK_WQ8(q5_0)

TV static void q8_ukr(int64_t kc, const void *xpv, const void *wpv, float *y, int64_t ldy, int m,
                      int n)
{
    const uint8_t *xp = xpv, *wp = wpv;
#define DECL(i) __m512 f##i = _mm512_setzero_ps(); __m512i a##i;
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5)
    DECL(6) DECL(7) DECL(8) DECL(9) DECL(10) DECL(11)
#undef DECL
    for (int i = 0; i < m; i++)
        _mm_prefetch((const char *)(y + i * ldy), _MM_HINT_T0);
    for (int64_t b = 0; b < kc / 32; b++, xp += QX_BLK, wp += QW_BLK) {
        const __m512i nc = _mm512_load_si512(wp + QNR * 36);
        a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = nc;
        const int32_t *xq = (const int32_t *)xp;
#pragma GCC unroll 8
        for (int g = 0; g < 8; g++) {
            const __m512i bv = _mm512_load_si512(wp + 64 * g);
            const int32_t *xg = xq + g * QMR;
#define ROW(i) a##i = _mm512_dpbusd_epi32(a##i, _mm512_set1_epi32(xg[i]), bv);
            ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
            ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11)
#undef ROW
        }
        const __m512 dw = _mm512_load_ps((const float *)(wp + QNR * 32));
        const float *dx = (const float *)(xp + QMR * 32);
#define EPI(i)                                                                            \
    f##i = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a##i), _mm512_mul_ps(dw, _mm512_set1_ps(dx[i])), f##i);
        EPI(0) EPI(1) EPI(2) EPI(3) EPI(4) EPI(5)
        EPI(6) EPI(7) EPI(8) EPI(9) EPI(10) EPI(11)
#undef EPI
    }
    const __mmask16 mk = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
#define ST(i)                                                                             \
    if (i < m) {                                                                          \
        float *r = y + i * ldy;                                                           \
        _mm512_mask_storeu_ps(r, mk, _mm512_add_ps(_mm512_maskz_loadu_ps(mk, r), f##i));  \
    }
    ST(0) ST(1) ST(2) ST(3) ST(4) ST(5)
    ST(6) ST(7) ST(8) ST(9) ST(10) ST(11)
#undef ST
}

void lmp_kimpl_fill_avx512_vnni(lmp_kimpl *k)
{
    k->quant_q8 = quant_q8;
    k->tile_q8 = (lmp_ktile){QMR, QNR, 32, q8_x_bytes, q8_pack_x, q8_ukr};
    k->dt[LMP_DT_Q8_0].dotq = dotq_q8_0;
    k->dt[LMP_DT_Q4_0].dotq = dotq_q4_0;
    k->dt[LMP_DT_Q5_0].dotq = dotq_q5_0;
    k->dt[LMP_DT_Q8_0].dotq4 = dotq4_q8_0;
    k->dt[LMP_DT_Q4_0].dotq4 = dotq4_q4_0;
    k->dt[LMP_DT_Q5_0].dotq4 = dotq4_q5_0;
    k->dt[LMP_DT_Q8_0].pack_wq = pack_wq_q8_0;
    k->dt[LMP_DT_Q4_0].pack_wq = pack_wq_q4_0;
    k->dt[LMP_DT_Q5_0].pack_wq = pack_wq_q5_0;
    k->gemv_q4x16 = gemv_q4x16;
    k->q4x16_simd = true;
    k->dt[LMP_DT_Q6_K].dotq = dotq_q6_k;
    k->dt[LMP_DT_Q4_K].dotq = dotq_q4_k;
}

/* ================================================================ BF16 activations */

/* 16 x 16 transpose of 32-bit elements in registers (r[j] = column j on return). */
TB static inline void transpose16(__m512i r[16])
{
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]);
        r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]);
        r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_i32x4(r[i], r[i + 4], 0xdd);
        t[i + 8] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_i32x4(r[i + 8], r[i + 12], 0xdd);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
        r[i + 4] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 12] = _mm512_shuffle_i32x4(t[i + 4], t[i + 12], 0xdd);
    }
}

/* 32 floats to 32 bf16 (round to nearest even; subnormals flush to zero). */
TB static inline __m512i bf16_32(__m512 lo, __m512 hi)
{
    return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

TB static void to_bf16(const float *x, int64_t n, uint16_t *y)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        _mm512_storeu_si512(y + i, bf16_32(_mm512_loadu_ps(x + i), _mm512_loadu_ps(x + i + 16)));
    if (i < n) {
        const __mmask32 k = (__mmask32)((1ull << (n - i)) - 1);
        const __mmask16 k0 = (__mmask16)k, k1 = (__mmask16)(k >> 16);
        _mm512_mask_storeu_epi16(y + i, k,
                                 bf16_32(_mm512_maskz_loadu_ps(k0, x + i),
                                         _mm512_maskz_loadu_ps(k1, x + i + 16)));
    }
}

TB static inline __m512 vdotq_bf16(const void *row, const void *xa, int64_t n)
{
    const uint16_t *w = row, *x = xa;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int64_t i = 0;
#define DP(acc, off)                                                                      \
    acc = _mm512_dpbf16_ps(acc, (__m512bh)_mm512_loadu_si512(w + i + off),                \
                           (__m512bh)_mm512_loadu_si512(x + i + off));
    for (; i + 128 <= n; i += 128) {
        DP(a0, 0) DP(a1, 32) DP(a2, 64) DP(a3, 96)
    }
    for (; i + 32 <= n; i += 32) {
        DP(a0, 0)
    }
#undef DP
    if (i < n) {
        const __mmask32 k = (__mmask32)((1ull << (n - i)) - 1);
        a1 = _mm512_dpbf16_ps(a1, (__m512bh)_mm512_maskz_loadu_epi16(k, w + i),
                              (__m512bh)_mm512_maskz_loadu_epi16(k, x + i));
    }
    return _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
}
DOTQ_WRAP(bf16, TB)

/* ---------------------------------------------------------------- BF16 tile 12 x 32 */

#define BMR 12
#define BNR 32

/* X tile: [k/2][i < 12] pairs of bf16 (element 2p low, 2p + 1 high). */
static size_t bf16_x_bytes(int64_t kc) { return ((size_t)kc * BMR * 2 + 63) & ~(size_t)63; }

TB static void bf16_pack_x(const float *x, int64_t ldx, int rows, int64_t kc, void *xpv)
{
    uint32_t *xp = xpv;
    const int64_t np = kc / 2;
    int64_t p = 0;
    for (; p + 16 <= np; p += 16) { /* 32 elements of each row: 16 pairs */
        __m512i r[16];
        for (int i = 0; i < 16; i++)
            r[i] = i < rows && i < BMR ? bf16_32(_mm512_loadu_ps(x + i * ldx + 2 * p),
                                                 _mm512_loadu_ps(x + i * ldx + 2 * p + 16))
                                       : _mm512_setzero_si512();
        transpose16(r);
        for (int j = 0; j < 16; j++)
            _mm512_mask_storeu_epi32(xp + (p + j) * BMR, 0x0fff, r[j]);
    }
    for (; p < np; p++)
        for (int i = 0; i < BMR; i++) {
            uint32_t v = 0;
            if (i < rows) {
                uint16_t h[2];
                to_bf16(x + i * ldx + 2 * p, 2, h);
                v = h[0] | (uint32_t)h[1] << 16;
            }
            xp[p * BMR + i] = v;
        }
}

/* W panel: [k/2][j < 32] pairs, straight from the bf16 rows. */
TB static void pack_wq_bf16(const void *w, size_t rb, int rows, int64_t k0, int64_t kc, void *wpv)
{
    uint32_t *wp = wpv;
    const int64_t np = kc / 2;
    for (int half = 0; half < 2; half++) {
        const int j0 = 16 * half;
        int64_t p = 0;
        for (; p + 16 <= np; p += 16) {
            __m512i r[16];
            for (int i = 0; i < 16; i++)
                r[i] = j0 + i < rows
                           ? _mm512_loadu_si512((const uint16_t *)((const uint8_t *)w +
                                                                   (size_t)(j0 + i) * rb) +
                                                k0 + 2 * p)
                           : _mm512_setzero_si512();
            transpose16(r);
            for (int j = 0; j < 16; j++)
                _mm512_storeu_si512(wp + (p + j) * BNR + j0, r[j]);
        }
        for (; p < np; p++)
            for (int i = 0; i < 16; i++) {
                uint32_t v = 0;
                if (j0 + i < rows)
                    memcpy(&v, (const uint16_t *)((const uint8_t *)w + (size_t)(j0 + i) * rb) +
                                   k0 + 2 * p, 4);
                wp[p * BNR + j0 + i] = v;
            }
    }
}

TB static void bf16_ukr(int64_t kc, const void *xpv, const void *wpv, float *y, int64_t ldy, int m,
                        int n)
{
    const uint32_t *xp = xpv, *wp = wpv;
#define DECL(i) __m512 c##i##a = _mm512_setzero_ps(), c##i##b = _mm512_setzero_ps();
    DECL(0) DECL(1) DECL(2) DECL(3) DECL(4) DECL(5)
    DECL(6) DECL(7) DECL(8) DECL(9) DECL(10) DECL(11)
#undef DECL
    for (int i = 0; i < m; i++) {
        _mm_prefetch((const char *)(y + i * ldy), _MM_HINT_T0);
        _mm_prefetch((const char *)(y + i * ldy + 31), _MM_HINT_T0);
    }
    for (int64_t p = 0; p < kc / 2; p++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512(wp), b1 = (__m512bh)_mm512_load_si512(wp + 16);
        __m512bh a;
#define ROW(i)                                                                            \
    a = (__m512bh)_mm512_set1_epi32((int)xp[i]);                                          \
    c##i##a = _mm512_dpbf16_ps(c##i##a, a, b0);                                           \
    c##i##b = _mm512_dpbf16_ps(c##i##b, a, b1);
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
        ROW(6) ROW(7) ROW(8) ROW(9) ROW(10) ROW(11)
#undef ROW
        xp += BMR;
        wp += BNR;
    }
    const __mmask16 ma = (__mmask16)(n >= 16 ? 0xffff : (1u << n) - 1);
    const __mmask16 mb = (__mmask16)(n >= 32 ? 0xffff : n > 16 ? (1u << (n - 16)) - 1 : 0);
#define STM(i)                                                                            \
    if (i < m) {                                                                          \
        float *r = y + i * ldy;                                                           \
        _mm512_mask_storeu_ps(r, ma, _mm512_add_ps(_mm512_maskz_loadu_ps(ma, r), c##i##a)); \
        _mm512_mask_storeu_ps(r + 16, mb,                                                 \
                              _mm512_add_ps(_mm512_maskz_loadu_ps(mb, r + 16), c##i##b)); \
    }
    STM(0) STM(1) STM(2) STM(3) STM(4) STM(5)
    STM(6) STM(7) STM(8) STM(9) STM(10) STM(11)
#undef STM
}

void lmp_kimpl_fill_avx512_bf16(lmp_kimpl *k)
{
    k->to_bf16 = to_bf16;
    k->tile_bf16 = (lmp_ktile){BMR, BNR, 2, bf16_x_bytes, bf16_pack_x, bf16_ukr};
    k->dt[LMP_DT_BF16].dotq = dotq_bf16;
    k->dt[LMP_DT_BF16].dotq4 = dotq4_bf16;
    k->dt[LMP_DT_BF16].pack_wq = pack_wq_bf16;
}

#endif /* __x86_64__ */
