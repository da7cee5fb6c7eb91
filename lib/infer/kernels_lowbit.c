/*
 * Kernels for the low-bit GGUF types (lib/quant/iquants.c, tquants.c, iq3quants.c,
 * iq2quants.c): IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0, Q1_0, Q2_0, IQ3_XXS, IQ3_S, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ1_S, IQ1_M (iq1quants.c).
 *
 * Reference (every type): rows decoded through the dtype table's to_f32 and summed in
 * index order, like kernels_ref.c's generic rows. IQ4_NL also computes on Q8 activations
 * (kernels_internal.h: LMP_ACT_Q8): its codes are the int8 values of LMP_IQ4NL_VALUES, so
 * per block of 32 the definition is the exact integer sum is = sum q[k] x8[k], then
 * s += (float)is * (dw * dx), blocks in order, dw the block's f16 scale.
 * IQ4_XS, IQ3_S and IQ2_XS compute on Q8K activations (LMP_ACT_Q8K: one scale dx per 256
 * values). Their sub-block scales are integers c times the super-block's f16 d (times
 * 1/8 for IQ2_XS), so the definition per super-block is one exact int32 sum
 *   is = sum over sub-blocks of c * (sum_k q[k] x8[k]),  s += (float)is * (dw * dx),
 * super-blocks in order: c = ls - 32 per 32 values, q the LMP_IQ4NL_VALUES code (IQ4_XS);
 * c = 1 + 2 sc per 32, q grid value times sign (IQ3_S); c = 2 sc + 1 per 16, q grid value
 * times sign, dw = d / 8 (IQ2_XS: (0.5 + sc) / 4 = (2 sc + 1) / 8). |is| < 2^28.
 * AVX2 (vpshufb table look-up, vpmaddubsw, the integer scales in vpmaddwd, int32 lanes
 * summed over the super-block, one int-to-float and one FMA per super-block) and AVX-512
 * VNNI (two sub-blocks a register, vpmaddubsw then vpdpwssd with the scales) compute the
 * same integer sums; the lanes' float roundings differ from the reference's in order only
 * (the kernel tests bound it). IQ4_NL: per 32-block float steps (vpdpbusd on AVX-512).
 * The other types' SIMD rows: kernels_lowbit_avx2.c, kernels_lowbit_avx512.c.
 */
#include "kernels_internal.h"

#include "../core/blocks.h"
#include "../core/iq_grid.h"

#include <math.h>
#include <string.h>

static const int8_t k_nl[16] = LMP_IQ4NL_VALUES;

/* ---------------------------------------------------------------- reference */

static void gen_to(lmp_dtype dt, const void *row, int64_t k0, int64_t n, float *dst)
{
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    t->to_f32((const uint8_t *)row + (size_t)(k0 / t->block_size) * t->type_size, dst, n);
}

static void gen_dotn(lmp_dtype dt, const void *row, const float *x, int64_t ldx, int nx, int64_t n, float *out)
{
    float buf[256]; /* a multiple of every block size here (32, 64, 128, 256) */
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k0 = 0; k0 < n; k0 += 256) {
        const int64_t c = n - k0 < 256 ? n - k0 : 256;
        gen_to(dt, row, k0, c, buf);
        for (int r = 0; r < nx; r++) {
            const float *xr = x + r * ldx + k0;
            float a = s[r];
            for (int64_t k = 0; k < c; k++)
                a += xr[k] * buf[k];
            s[r] = a;
        }
    }
    for (int r = 0; r < nx; r++)
        out[r] = s[r];
}

#define LB_DT(nm, DT)                                                                              \
    static void lb_to_##nm(const void *row, int64_t k0, int64_t n, float *dst) { gen_to(DT, row, k0, n, dst); } \
    static float lb_dot_##nm(const void *row, const float *x, int64_t n)                           \
    {                                                                                              \
        float o;                                                                                   \
        gen_dotn(DT, row, x, 0, 1, n, &o);                                                         \
        return o;                                                                                  \
    }                                                                                              \
    static void lb_dotn_##nm(const void *row, const float *x, int64_t ldx, int nx, int64_t n, float *out) \
    {                                                                                              \
        gen_dotn(DT, row, x, ldx, nx, n, out);                                                     \
    }
LB_DT(iq4_nl, LMP_DT_IQ4_NL)
LB_DT(iq4_xs, LMP_DT_IQ4_XS)
LB_DT(mxfp4, LMP_DT_MXFP4)
LB_DT(tq1_0, LMP_DT_TQ1_0)
LB_DT(tq2_0, LMP_DT_TQ2_0)
LB_DT(q1_0, LMP_DT_Q1_0)
LB_DT(q2_0, LMP_DT_Q2_0)
LB_DT(iq3_xxs, LMP_DT_IQ3_XXS)
LB_DT(iq3_s, LMP_DT_IQ3_S)
LB_DT(iq2_xxs, LMP_DT_IQ2_XXS)
LB_DT(iq2_xs, LMP_DT_IQ2_XS)
LB_DT(iq2_s, LMP_DT_IQ2_S)
LB_DT(iq1_s, LMP_DT_IQ1_S)
LB_DT(iq1_m, LMP_DT_IQ1_M)

/* IQ4_XS sub-block scale ls - 32 of sub-block ib (0..7). */
static inline int xs_scale(const lmp_block_iq4_xs *b, int ib)
{
    return (((b->scales_l[ib / 2] >> 4 * (ib % 2)) & 0xf) | (((b->scales_h >> 2 * ib) & 3) << 4)) - 32;
}

static float ref_dotq_iq4_nl(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_nl *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 32; i++) {
        int32_t is = 0;
        for (int j = 0; j < 16; j++)
            is += k_nl[b[i].qs[j] & 15] * xs[32 * i + j] + k_nl[b[i].qs[j] >> 4] * xs[32 * i + j + 16];
        s += (float)is * (lmp_f16_to_f32(b[i].d) * xd[i]);
    }
    return s;
}

/* LMP_ACT_Q8K, the definition (kernels_internal.h): per super-block of 256 the absolute
 * maximum, d = amax / 127, quants rounded to nearest even, int16 sums per 16. */
static void ref_quant_q8k(const float *x, int64_t n, void *xq)
{
    int8_t *q = xq;
    float *d = (float *)lmp_xq8k_d(xq, n);
    int16_t *s = (int16_t *)lmp_xq8k_s(xq, n);
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        float amax = 0.0f;
        for (int j = 0; j < 256; j++)
            amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        for (int j = 0; j < 256; j++)
            q[256 * b + j] = (int8_t)(int)nearbyintf(xb[j] * id);
        d[b] = db;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int j = 0; j < 16; j++)
                sum += q[256 * b + 16 * g + j];
            s[16 * b + g] = (int16_t)sum;
        }
    }
}

static float ref_dotq_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        int32_t is = 0;
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = b[i].qs + 16 * ib;
            const int8_t *x = xs + 256 * i + 32 * ib;
            int32_t bs = 0;
            for (int j = 0; j < 16; j++)
                bs += k_nl[qs[j] & 15] * x[j] + k_nl[qs[j] >> 4] * x[j + 16];
            is += xs_scale(&b[i], ib) * bs;
        }
        s += (float)is * (lmp_f16_to_f32(b[i].d) * xd[i]);
    }
    return s;
}

/* IQ3_S / IQ2_XS codes of one 32-value block as signed bytes (grid value times sign). */
static void ints_iq3_s(const lmp_block_iq3_s *b, int ib, int8_t q[32])
{
    const uint8_t *qs = b->qs + 8 * ib, *signs = b->signs + 4 * ib, h = b->qh[ib];
    for (int l = 0; l < 8; l++) {
        const uint32_t g = lmp_iq3s_grid[qs[l] | ((h << (8 - l)) & 256)];
        for (int j = 0; j < 4; j++) {
            const int v = (uint8_t)(g >> 8 * j), bit = 4 * (l % 2) + j;
            q[4 * l + j] = (int8_t)(signs[l / 2] & (1 << bit) ? -v : v);
        }
    }
}

static void ints_iq2_xs(const lmp_block_iq2_xs *b, int ib, int8_t q[32])
{
    for (int l = 0; l < 4; l++) {
        const uint16_t c = b->qs[4 * ib + l];
        const uint64_t g = lmp_iq2xs_grid[c & 511];
        const uint8_t sg = lmp_iq_ksigns(c >> 9);
        for (int j = 0; j < 8; j++) {
            const int v = (uint8_t)(g >> 8 * j);
            q[8 * l + j] = (int8_t)(sg & (1 << j) ? -v : v);
        }
    }
}

/* IQ3_S on Q8K activations: is = sum over 32-blocks of (1 + 2 sc) * exact code sum. */
static float ref_dotq_iq3_s(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq3_s *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        int32_t is = 0;
        for (int ib = 0; ib < 8; ib++) {
            int8_t q[32];
            ints_iq3_s(&b[i], ib, q);
            int32_t bs = 0;
            for (int j = 0; j < 32; j++)
                bs += q[j] * xs[256 * i + 32 * ib + j];
            const int sc = ib % 2 ? b[i].scales[ib / 2] >> 4 : b[i].scales[ib / 2] & 0xf;
            is += (1 + 2 * sc) * bs;
        }
        s += (float)is * (lmp_f16_to_f32(b[i].d) * xd[i]);
    }
    return s;
}

/* IQ2_XS on Q8K activations: is = sum over 16-value halves of (2 sc + 1) * exact code
 * sum, dw = d / 8. */
static float ref_dotq_iq2_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq2_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        int32_t is = 0;
        for (int ib = 0; ib < 8; ib++) {
            int8_t q[32];
            ints_iq2_xs(&b[i], ib, q);
            for (int h = 0; h < 2; h++) {
                int32_t bs = 0;
                for (int j = 0; j < 16; j++)
                    bs += q[16 * h + j] * xs[256 * i + 32 * ib + 16 * h + j];
                is += (2 * ((b[i].scales[ib] >> 4 * h) & 0xf) + 1) * bs;
            }
        }
        s += (float)is * (lmp_f16_to_f32(b[i].d) * 0.125f * xd[i]);
    }
    return s;
}

void lmp_kimpl_fill_lowbit_ref(lmp_kimpl *k)
{
#define SET(DT, nm) k->dt[DT] = (lmp_kdt){.to_f32 = lb_to_##nm, .dot = lb_dot_##nm, .dotn = lb_dotn_##nm}
    SET(LMP_DT_IQ4_NL, iq4_nl);
    SET(LMP_DT_IQ4_XS, iq4_xs);
    SET(LMP_DT_MXFP4, mxfp4);
    SET(LMP_DT_TQ1_0, tq1_0);
    SET(LMP_DT_TQ2_0, tq2_0);
    SET(LMP_DT_Q1_0, q1_0);
    SET(LMP_DT_Q2_0, q2_0);
    SET(LMP_DT_IQ3_XXS, iq3_xxs);
    SET(LMP_DT_IQ3_S, iq3_s);
    SET(LMP_DT_IQ2_XXS, iq2_xxs);
    SET(LMP_DT_IQ2_XS, iq2_xs);
    SET(LMP_DT_IQ2_S, iq2_s);
    SET(LMP_DT_IQ1_S, iq1_s);
    SET(LMP_DT_IQ1_M, iq1_m);
#undef SET
    k->dt[LMP_DT_IQ4_NL].dotq = ref_dotq_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].dotq = ref_dotq_iq4_xs;
    k->dt[LMP_DT_IQ3_S].dotq = ref_dotq_iq3_s;
    k->dt[LMP_DT_IQ2_XS].dotq = ref_dotq_iq2_xs;
    k->dt[LMP_DT_IQ4_XS].q8k = k->dt[LMP_DT_IQ3_S].q8k = k->dt[LMP_DT_IQ2_XS].q8k = true;
    k->quant_q8k = ref_quant_q8k;
}

#if defined(__x86_64__)
#include "kernels_x86.h"

#include <immintrin.h>

/* ---------------------------------------------------------------- AVX2 */

#define T2 __attribute__((target("avx2,fma,f16c")))

T2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* The 32 signed codes of 16 nibble bytes (elements 0-15 low nibbles, 16-31 high). */
T2 static inline __m256i nl32(const uint8_t *qs, __m256i tbl)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)qs), f = _mm_set1_epi8(15);
    const __m256i i = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), f), _mm_and_si128(v, f));
    return _mm256_shuffle_epi8(tbl, i);
}

/* 8 int32 partial sums of w * x over 32 bytes, as floats (|w| <= 127: the pair sums of
 * vpmaddubsw fit int16). */
T2 static inline __m256 isum8(__m256i w, __m256i x)
{
    const __m256i p = _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
    return _mm256_cvtepi32_ps(_mm256_madd_epi16(p, _mm256_set1_epi16(1)));
}

T2 static float avx2_dotq_iq4_nl(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_nl *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k_nl));
    const int64_t nb = n / 32;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 2 <= nb; i += 2) {
        a0 = _mm256_fmadd_ps(isum8(nl32(b[i].qs, tbl), _mm256_loadu_si256((const __m256i *)(xs + 32 * i))),
                             _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), a0);
        a1 = _mm256_fmadd_ps(isum8(nl32(b[i + 1].qs, tbl), _mm256_loadu_si256((const __m256i *)(xs + 32 * i + 32))),
                             _mm256_set1_ps(_cvtsh_ss(b[i + 1].d) * xd[i + 1]), a1);
    }
    if (i < nb)
        a0 = _mm256_fmadd_ps(isum8(nl32(b[i].qs, tbl), _mm256_loadu_si256((const __m256i *)(xs + 32 * i))),
                             _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), a0);
    return hsum8(_mm256_add_ps(a0, a1));
}

/* The eight sub-block scales ls - 32 of an IQ4_XS super-block as int16 words 0-7. */
T2 static inline __m128i xs_scales16(const lmp_block_iq4_xs *b)
{
    uint32_t l;
    memcpy(&l, b->scales_l, 4);
    const __m128i v = _mm_cvtsi32_si128((int)l), f = _mm_set1_epi8(15);
    /* bytes 0-7: the low nibbles (sub-block 2 m) and high nibbles (2 m + 1) in order */
    const __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(v, f), _mm_and_si128(_mm_srli_epi16(v, 4), f));
    /* word ib: bits 2 ib, 2 ib + 1 of scales_h moved to bits 14-15, then to 4-5 */
    const __m128i h = _mm_mullo_epi16(_mm_set1_epi16((short)b->scales_h),
                                      _mm_setr_epi16(1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(h, 10), _mm_set1_epi16(0x30));
    return _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(lo), hi), _mm_set1_epi16(32));
}

/* The low 8 bytes of v (each < 128) as words 0-7, times 2, plus 1. */
T2 static inline __m128i odd16(__m128i v)
{
    const __m128i w = _mm_cvtepu8_epi16(v);
    return _mm_add_epi16(_mm_add_epi16(w, w), _mm_set1_epi16(1));
}

/* The 16 nibbles of 8 bytes in order (low nibble first) as bytes 0-15. */
T2 static inline __m128i nibbles16(uint64_t v8)
{
    const __m128i v = _mm_cvtsi64_si128((long long)v8), f = _mm_set1_epi8(15);
    return _mm_unpacklo_epi8(_mm_and_si128(v, f), _mm_and_si128(_mm_srli_epi16(v, 4), f));
}

/* word ib of s (words 0-7, both 128-bit lanes) broadcast to every word */
#define WORD16(s, ib) _mm256_shuffle_epi8((s), _mm256_set1_epi16((short)(((2 * (ib) + 1) << 8) | (2 * (ib)))))

/* int16 pair sums of signed codes w times x (|w|, |x| <= 127: no saturation) */
T2 static inline __m256i pairs16(__m256i w, __m256i x)
{
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

/* IQ4_XS on Q8K: per super-block the eight sub-blocks' pair sums weighted by ls - 32 in
 * vpmaddwd, summed in int32 lanes; one conversion and FMA per super-block. */
T2 static float avx2_dotq_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k_nl));
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const int8_t *x = xs + 256 * i;
        const uint8_t *qs = b[i].qs;
        const __m256i ls = _mm256_broadcastsi128_si256(xs_scales16(&b[i]));
#define XS(ib) _mm256_madd_epi16(pairs16(nl32(qs + 16 * (ib), tbl), _mm256_loadu_si256((const __m256i *)(x + 32 * (ib)))), \
                                 WORD16(ls, ib))
        const __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(XS(0), XS(2)), _mm256_add_epi32(XS(4), XS(6)));
        const __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(XS(1), XS(3)), _mm256_add_epi32(XS(5), XS(7)));
#undef XS
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), acc);
    }
    return hsum8(acc);
}

/* LMP_ACT_Q8K rows: bitwise the reference (max is exact; d, 1 / d and x * id are single
 * f32 operations; vroundps rounds to nearest even as nearbyintf does). */
T2 static void avx2_quant_q8k(const float *x, int64_t n, void *xq)
{
    int8_t *q = xq;
    float *d = (float *)lmp_xq8k_d(xq, n);
    int16_t *s = (int16_t *)lmp_xq8k_s(xq, n);
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / 256; b++) {
        const float *xb = x + 256 * b;
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < 256; j += 8)
            m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(xb + j), absm), m); /* NaN ignored, as the reference */
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
        const float amax = _mm_cvtss_f32(m4);
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        const __m256 vid = _mm256_set1_ps(id);
        for (int j = 0; j < 256; j += 32) {
            __m256i v[4];
            for (int u = 0; u < 4; u++)
                v[u] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xb + j + 8 * u), vid),
                                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
            /* packs interleave the 128-bit lanes: the permute puts the bytes back in order */
            const __m256i w01 = _mm256_packs_epi32(v[0], v[1]), w23 = _mm256_packs_epi32(v[2], v[3]);
            const __m256i b8 = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(w01, w23),
                                                           _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(q + 256 * b + j), b8);
            /* the two 16-sums: pair sums of the bytes, then of the words */
            const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), b8), _mm256_set1_epi16(1));
            int32_t t[8];
            _mm256_storeu_si256((__m256i *)t, p);
            s[16 * b + j / 16] = (int16_t)(t[0] + t[1] + t[2] + t[3]);
            s[16 * b + j / 16 + 1] = (int16_t)(t[4] + t[5] + t[6] + t[7]);
        }
        d[b] = db;
    }
}

/* f32 rows (exact mode, the f32 panels of the batched path): decoded 32 at a time. */
T2 static inline void nl_f32(const uint8_t *qs, float dl, float *y)
{
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k_nl));
    const __m256i q = nl32(qs, tbl);
    const __m256 s = _mm256_set1_ps(dl);
    for (int g = 0; g < 4; g++) {
        const __m128i b8 = g < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
        const __m128i part = g % 2 ? _mm_srli_si128(b8, 8) : b8;
        _mm256_storeu_ps(y + 8 * g, _mm256_mul_ps(s, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(part))));
    }
}

T2 static void avx2_to_iq4_nl(const void *row, int64_t k0, int64_t n, float *dst)
{
    const lmp_block_iq4_nl *b = (const lmp_block_iq4_nl *)row + k0 / 32;
    for (int64_t i = 0; i < n / 32; i++)
        nl_f32(b[i].qs, _cvtsh_ss(b[i].d), dst + 32 * i);
}

T2 static void avx2_to_iq4_xs(const void *row, int64_t k0, int64_t n, float *dst)
{
    const lmp_block_iq4_xs *b = (const lmp_block_iq4_xs *)row + k0 / 256;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        for (int ib = 0; ib < 8; ib++)
            nl_f32(b[i].qs + 16 * ib, d * (float)xs_scale(&b[i], ib), dst + 256 * i + 32 * ib);
    }
}

/* byte j of the result: 0xff when bit j % 8 of byte j / 8 of `bits` is set */
T2 static inline __m256i sign_mask(uint32_t bits)
{
    const __m256i sp = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0, 0x0101010101010101ll, 0x0202020202020202ll, 0x0303030303030303ll));
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    return _mm256_cmpeq_epi8(_mm256_and_si256(sp, bit), bit);
}

/* IQ3_S grid bytes of sub-block ib (unsigned, 1..15) and x with the block's signs applied */
#define IQ3S_GRID(bi, ib)                                                                          \
    _mm256_setr_epi32((int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 0] | (((bi)->qh[ib] << 8) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 1] | (((bi)->qh[ib] << 7) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 2] | (((bi)->qh[ib] << 6) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 3] | (((bi)->qh[ib] << 5) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 4] | (((bi)->qh[ib] << 4) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 5] | (((bi)->qh[ib] << 3) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 6] | (((bi)->qh[ib] << 2) & 256)],    \
                      (int)lmp_iq3s_grid[(bi)->qs[8 * (ib) + 7] | (((bi)->qh[ib] << 1) & 256)])

/* IQ3_S sub-block ib: int32 lanes of (1 + 2 sc) times the code sums */
T2 static inline __m256i blk_iq3_s(const lmp_block_iq3_s *bi, int ib, const int8_t *xb, __m256i sc)
{
    uint32_t sb;
    memcpy(&sb, bi->signs + 4 * ib, 4);
    const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb + 32 * ib)),
                                       _mm256_or_si256(sign_mask(sb), _mm256_set1_epi8(1)));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(IQ3S_GRID(bi, ib), x), WORD16(sc, ib));
}

/* IQ3_S on Q8K: the unsigned grid bytes times sign-applied x in vpmaddubsw (the sign bits
 * as -1 / +1 multipliers), the integer scales 1 + 2 sc in vpmaddwd, int32 lanes over the
 * super-block, d * dx in one FMA per super-block. */
T2 static float avx2_dotq_iq3_s(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq3_s *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    __m256 acc = _mm256_setzero_ps();
#define BLK(ib) blk_iq3_s(bi, ib, xb, sc)
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq3_s *bi = &b[i];
        const int8_t *xb = xs + 256 * i;
        uint32_t s4;
        memcpy(&s4, bi->scales, 4);
        const __m256i sc = _mm256_broadcastsi128_si256(odd16(nibbles16(s4)));
        const __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(BLK(0), BLK(2)), _mm256_add_epi32(BLK(4), BLK(6)));
        const __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(BLK(1), BLK(3)), _mm256_add_epi32(BLK(5), BLK(7)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)), _mm256_set1_ps(_cvtsh_ss(bi->d) * xd[i]), acc);
    }
#undef BLK
    return hsum8(acc);
}

/* IQ2_XS sign multipliers: entry i holds byte j = -1 where bit j of ksigns(i) is set, else
 * +1 (filled by lmp_kimpl_fill_lowbit_avx2, before any kernel runs) */
static uint64_t k_sgn_iq2[128];

static void fill_sgn_iq2(void)
{
    for (int i = 0; i < 128; i++) {
        uint64_t v = 0;
        for (int j = 0; j < 8; j++)
            v |= (uint64_t)((lmp_iq_ksigns(i) >> j) & 1 ? 0xff : 0x01) << 8 * j;
        k_sgn_iq2[i] = v;
    }
}

/* IQ2_XS sub-block ib: int32 lanes of the halves' 2 sc + 1 times their code sums (word k
 * of half h: byte 2 ib + h of the scale bytes, zero-extended) */
T2 static inline __m256i blk_iq2_xs(const lmp_block_iq2_xs *bi, int ib, const int8_t *xb, __m256i sc)
{
    const uint16_t *c = bi->qs + 4 * ib;
    const __m256i g = _mm256_setr_epi64x((long long)lmp_iq2xs_grid[c[0] & 511], (long long)lmp_iq2xs_grid[c[1] & 511],
                                         (long long)lmp_iq2xs_grid[c[2] & 511], (long long)lmp_iq2xs_grid[c[3] & 511]);
    const __m256i sg = _mm256_setr_epi64x((long long)k_sgn_iq2[c[0] >> 9], (long long)k_sgn_iq2[c[1] >> 9],
                                          (long long)k_sgn_iq2[c[2] >> 9], (long long)k_sgn_iq2[c[3] >> 9]);
    const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb + 32 * ib)), sg);
    const __m256i idx = _mm256_setr_m128i(_mm_set1_epi16((short)(0x8000 | (2 * ib))), _mm_set1_epi16((short)(0x8000 | (2 * ib + 1))));
    return _mm256_madd_epi16(_mm256_maddubs_epi16(g, x), _mm256_shuffle_epi8(sc, idx));
}

/* IQ2_XS on Q8K: the grid values are unsigned (0..43), so the signs go onto x (vpsignb
 * with the table's multipliers) and vpmaddubsw multiplies the grid bytes directly; the
 * pair sums are weighted by the integer half-block scales 2 sc + 1 in vpmaddwd (the low
 * 128-bit lane is the first half), int32 lanes over the super-block, d / 8 * dx in one FMA
 * per super-block. */
T2 static float avx2_dotq_iq2_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq2_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    __m256 acc = _mm256_setzero_ps();
#define BLK(ib) blk_iq2_xs(bi, ib, xb, sc)
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq2_xs *bi = &b[i];
        const int8_t *xb = xs + 256 * i;
        uint64_t s8;
        memcpy(&s8, bi->scales, 8);
        const __m128i sc16 = nibbles16(s8);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_add_epi8(_mm_add_epi8(sc16, sc16), _mm_set1_epi8(1)));
        const __m256i s0 = _mm256_add_epi32(_mm256_add_epi32(BLK(0), BLK(2)), _mm256_add_epi32(BLK(4), BLK(6)));
        const __m256i s1 = _mm256_add_epi32(_mm256_add_epi32(BLK(1), BLK(3)), _mm256_add_epi32(BLK(5), BLK(7)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_add_epi32(s0, s1)),
                              _mm256_set1_ps(_cvtsh_ss(bi->d) * 0.125f * xd[i]), acc);
    }
#undef BLK
    return hsum8(acc);
}

void lmp_kimpl_fill_lowbit_avx2(lmp_kimpl *k)
{
    fill_sgn_iq2();
    k->dt[LMP_DT_IQ3_S].dotq = avx2_dotq_iq3_s;
    k->dt[LMP_DT_IQ2_XS].dotq = avx2_dotq_iq2_xs;
    k->dt[LMP_DT_IQ4_NL].dotq = avx2_dotq_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].dotq = avx2_dotq_iq4_xs;
    k->quant_q8k = avx2_quant_q8k;
    k->dt[LMP_DT_IQ4_NL].to_f32 = avx2_to_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].to_f32 = avx2_to_iq4_xs;
}

/* ---------------------------------------------------------------- AVX-512 VNNI */

#define TV __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,avx2,fma,f16c")))

/* Signed codes of two 16-byte nibble groups: lanes 0-1 group 0 (low, high nibbles),
 * lanes 2-3 group 1. */
TV static inline __m512i nl64(const uint8_t *qs0, const uint8_t *qs1, __m512i tbl)
{
    const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)qs1), _mm_loadu_si128((const __m128i *)qs0));
    const __m256i m = _mm256_set1_epi8(15);
    const __m512i lo = _mm512_castsi256_si512(_mm256_and_si256(v, m));
    const __m512i hi = _mm512_castsi256_si512(_mm256_and_si256(_mm256_srli_epi16(v, 4), m));
    return _mm512_shuffle_epi8(tbl, _mm512_permutex2var_epi64(lo, _mm512_setr_epi64(0, 1, 8, 9, 2, 3, 10, 11), hi));
}

/* int32 partial sums of signed w times signed x (|w| times x with w's sign). */
TV static inline __m512 isum16(__m512i w, __m512i x)
{
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_cvtepi32_ps(_mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(w), sx));
}

TV static inline __m512 scale2(float s0, float s1)
{
    return _mm512_insertf32x8(_mm512_set1_ps(s0), _mm256_set1_ps(s1), 1);
}

TV static inline __m512 v_iq4_nl(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_nl *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k_nl));
    const int64_t nb = n / 32;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 4 <= nb; i += 4) {
        a0 = _mm512_fmadd_ps(isum16(nl64(b[i].qs, b[i + 1].qs, tbl), _mm512_loadu_si512(xs + 32 * i)),
                             scale2(_cvtsh_ss(b[i].d) * xd[i], _cvtsh_ss(b[i + 1].d) * xd[i + 1]), a0);
        a1 = _mm512_fmadd_ps(isum16(nl64(b[i + 2].qs, b[i + 3].qs, tbl), _mm512_loadu_si512(xs + 32 * i + 64)),
                             scale2(_cvtsh_ss(b[i + 2].d) * xd[i + 2], _cvtsh_ss(b[i + 3].d) * xd[i + 3]), a1);
    }
    for (; i < nb; i++) { /* one block: the second half's weights are zero */
        const __m512i w = _mm512_maskz_mov_epi8(0xffffffffull, nl64(b[i].qs, b[i].qs, tbl));
        const __m512i x = _mm512_maskz_loadu_epi8(0xffffffffull, xs + 32 * i);
        a0 = _mm512_fmadd_ps(isum16(w, x), _mm512_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), a0);
    }
    return _mm512_add_ps(a0, a1);
}

/* int16 pair sums of signed w times signed x: |w| times x with w's sign (|w|, |x| <= 127) */
TV static inline __m512i pairs32(__m512i w, __m512i x)
{
    const __m512i sx = _mm512_mask_sub_epi8(x, _mm512_movepi8_mask(w), _mm512_setzero_si512(), x);
    return _mm512_maddubs_epi16(_mm512_abs_epi8(w), sx);
}

/* words ib (128-bit lanes 0-1) and ib + 1 (lanes 2-3) of s (its words 0-7 in every lane) */
#define WORD2(s, ib)                                                                               \
    _mm512_shuffle_epi8((s), _mm512_inserti64x4(_mm512_set1_epi16((short)(((2 * (ib) + 1) << 8) | (2 * (ib)))), \
                                                _mm256_set1_epi16((short)(((2 * (ib) + 3) << 8) | (2 * (ib) + 2))), 1))

/* IQ4_XS on Q8K: two sub-blocks a register, vpmaddubsw pair sums weighted by ls - 32 in
 * vpdpwssd, int32 lanes over the super-block, one conversion and FMA per super-block. */
TV static inline __m512 v_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k_nl));
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const int8_t *x = xs + 256 * i;
        const uint8_t *qs = b[i].qs;
        const __m512i ls = _mm512_broadcast_i32x4(xs_scales16(&b[i]));
#define P(ib) pairs32(nl64(qs + 16 * (ib), qs + 16 * (ib) + 16, tbl), _mm512_loadu_si512(x + 32 * (ib)))
        __m512i s0 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), P(0), WORD2(ls, 0));
        __m512i s1 = _mm512_dpwssd_epi32(_mm512_setzero_si512(), P(2), WORD2(ls, 2));
        s0 = _mm512_dpwssd_epi32(s0, P(4), WORD2(ls, 4));
        s1 = _mm512_dpwssd_epi32(s1, P(6), WORD2(ls, 6));
#undef P
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(_cvtsh_ss(b[i].d) * xd[i]), acc);
    }
    return acc;
}

/* IQ3_S on Q8K without a gather: the grid as two byte planes looked up 64 codes at a time
 * with vpermi2b. Each grid byte is odd, 1..15, so entry e packs into two bytes, plane 0
 * holding bytes 0 | 1 << 4 and plane 1 bytes 2 | 3 << 4 (k_iq3s_nib, filled from
 * lmp_iq3s_grid with the variant's table). A super-block's 64 indices (qs bytes, bit 8
 * from qh) select one of four 128-entry quarters (qh bit, qs bit 7: two blends) within
 * which vpermi2b reads the low 7 bits: 8 vpermi2b and 6 blends per super-block for all
 * its grid bytes. Unpacking the planes (bytes, then nibbles) interleaves them within
 * 128-bit lanes, so the indices are permuted first (k_iq3s_perm: position 16 c + 4 r + k
 * takes code 16 r + 4 c + k) and register r then holds weights 64 r .. 64 r + 63 in
 * order, against x as stored: the signs of those weights (eight sign bytes) negate x,
 * vpmaddubsw of the unsigned grid bytes, the scales 1 + 2 sc in vpdpwssd (sub-blocks
 * 2 r, 2 r + 1), int32 lanes over the super-block, one conversion and FMA. The integer
 * sums are ref_dotq_iq3_s's. Replaces a row that gathered 16 grid entries a register
 * with vpgatherdd (4 gathers a super-block, ~90 cycles: TinyLlama's up projection
 * 1147 us against 355 us for IQ4_XS; the gather-free row: see docs/benchmarks.md). */
static _Alignas(64) uint8_t k_iq3s_nib[2][512];
static void fill_iq3s_nib(void)
{
    for (int e = 0; e < 512; e++) {
        const uint32_t g = lmp_iq3s_grid[e];
        k_iq3s_nib[0][e] = (uint8_t)((g & 15) | ((g >> 8) & 15) << 4);
        k_iq3s_nib[1][e] = (uint8_t)(((g >> 16) & 15) | ((g >> 24) & 15) << 4);
    }
}
/* byte p = 16 c + 4 r + k takes code 16 r + 4 c + k (an involution) */
static const uint8_t k_iq3s_perm[64] = {
#define G(c, r) 16 * (r) + 4 * (c), 16 * (r) + 4 * (c) + 1, 16 * (r) + 4 * (c) + 2, 16 * (r) + 4 * (c) + 3
    G(0, 0), G(0, 1), G(0, 2), G(0, 3), G(1, 0), G(1, 1), G(1, 2), G(1, 3),
    G(2, 0), G(2, 1), G(2, 2), G(2, 3), G(3, 0), G(3, 1), G(3, 2), G(3, 3),
#undef G
};

/* plane lookup: quarter (qh bit, qs bit 7) of the 512 entries, 7 index bits within it */
#define IQ3S_LOOK(t, I, m7, m8)                                                                    \
    _mm512_mask_blend_epi8((m8),                                                                   \
                           _mm512_mask_blend_epi8((m7), _mm512_permutex2var_epi8((t)[0], (I), (t)[1]), \
                                                  _mm512_permutex2var_epi8((t)[2], (I), (t)[3])), \
                           _mm512_mask_blend_epi8((m7), _mm512_permutex2var_epi8((t)[4], (I), (t)[5]), \
                                                  _mm512_permutex2var_epi8((t)[6], (I), (t)[7])))

TV static inline __m512 v_iq3_s(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq3_s *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    __m512i ta[8], tb[8];
    for (int j = 0; j < 8; j++) {
        ta[j] = _mm512_load_si512(k_iq3s_nib[0] + 64 * j);
        tb[j] = _mm512_load_si512(k_iq3s_nib[1] + 64 * j);
    }
    const __m512i perm = _mm512_loadu_si512(k_iq3s_perm), f = _mm512_set1_epi8(15);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq3_s *bi = &b[i];
        const int8_t *xb = xs + 256 * i;
        uint64_t qh;
        memcpy(&qh, bi->qh, 8);
        const __m512i I = _mm512_permutexvar_epi8(perm, _mm512_loadu_si512(bi->qs));
        const __mmask64 m7 = _mm512_movepi8_mask(I);
        const __mmask64 m8 = _mm512_movepi8_mask(_mm512_permutexvar_epi8(perm, _mm512_movm_epi8(qh)));
        const __m512i pa = IQ3S_LOOK(ta, I, m7, m8), pb = IQ3S_LOOK(tb, I, m7, m8);
        /* entry words (plane 0, plane 1), then each word's nibbles as bytes 0-3 */
        const __m512i u0 = _mm512_unpacklo_epi8(pa, pb), u1 = _mm512_unpackhi_epi8(pa, pb);
        const __m512i l0 = _mm512_and_si512(u0, f), h0 = _mm512_and_si512(_mm512_srli_epi16(u0, 4), f);
        const __m512i l1 = _mm512_and_si512(u1, f), h1 = _mm512_and_si512(_mm512_srli_epi16(u1, 4), f);
        uint32_t s4;
        memcpy(&s4, bi->scales, 4);
        const __m512i sc = _mm512_broadcast_i32x4(odd16(nibbles16(s4)));
        uint64_t sg[4];
        memcpy(sg, bi->signs, 32);
#define R(a, r, g)                                                                                 \
    _mm512_dpwssd_epi32((a), _mm512_maddubs_epi16((g), _mm512_mask_sub_epi8(                        \
                                 _mm512_loadu_si512(xb + 64 * (r)), (__mmask64)sg[r], _mm512_setzero_si512(), \
                                 _mm512_loadu_si512(xb + 64 * (r)))), WORD2(sc, 2 * (r)))
        __m512i s0 = R(_mm512_setzero_si512(), 0, _mm512_unpacklo_epi8(l0, h0));
        __m512i s1 = R(_mm512_setzero_si512(), 1, _mm512_unpackhi_epi8(l0, h0));
        s0 = R(s0, 2, _mm512_unpacklo_epi8(l1, h1));
        s1 = R(s1, 3, _mm512_unpackhi_epi8(l1, h1));
#undef R
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), _mm512_set1_ps(_cvtsh_ss(bi->d) * xd[i]), acc);
    }
    return acc;
}
#undef IQ3S_LOOK

/* IQ2_XS on Q8K without scalar grid loads: every grid byte is 8, 25 or 43, so entry e
 * packs into one 16-bit word of eight 2-bit codes (k_iq2xs_code, filled from
 * lmp_iq2xs_grid). A super-block's 32 indices (the low 9 bits of its qs words) look up
 * their words with vpermi2w (6 index bits, eight 64-entry tables chosen by bits 6-8 in
 * three rounds of blends); the sign bytes come from one vpermi2b on a 128-entry table of
 * lmp_iq_ksigns (bits 9-15 of each word). Register r (weights 64 r .. 64 r + 63, codes
 * 8 r .. 8 r + 7) gets code 8 r + q's word into qword q (vpermw), vpmultishiftqb pulls
 * out the eight 2-bit codes as bytes, vpshufb maps them to 8 / 25 / 43; then as before:
 * the signs negate x, vpmaddubsw, the half-block scales 2 sc + 1 in vpdpwssd, int32
 * lanes over the super-block, one conversion and FMA. The integer sums are
 * ref_dotq_iq2_xs's. Replaces a row that loaded the eight grid entries of each pair of
 * sub-blocks one at a time into a zmm and computed the sign parities in vector shifts
 * (TinyLlama's up projection: see docs/benchmarks.md). */
static _Alignas(64) uint16_t k_iq2xs_code[512];
static _Alignas(64) uint8_t k_iq2xs_ks[128];
static void fill_iq2xs_code(void)
{
    for (int e = 0; e < 512; e++) {
        unsigned w = 0;
        for (int j = 0; j < 8; j++) {
            const unsigned v = (unsigned)(lmp_iq2xs_grid[e] >> 8 * j) & 255;
            w |= (v == 8 ? 0u : v == 25 ? 1u : 2u) << 2 * j; /* 43 the only other value */
        }
        k_iq2xs_code[e] = (uint16_t)w;
    }
    for (int i = 0; i < 128; i++)
        k_iq2xs_ks[i] = lmp_iq_ksigns(i);
}

TV static inline __m512 v_iq2_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq2_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8k_d(xq, n);
    __m512i t[16];
    for (int j = 0; j < 16; j++)
        t[j] = _mm512_load_si512(k_iq2xs_code + 32 * j);
    const __m512i ks0 = _mm512_load_si512(k_iq2xs_ks), ks1 = _mm512_load_si512(k_iq2xs_ks + 64);
    const __m512i vals = _mm512_broadcast_i32x4(_mm_setr_epi8(8, 25, 43, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0));
    const __m512i ctrl = _mm512_set1_epi64(0x0e0c0a0806040200ll), three = _mm512_set1_epi8(3);
    const __m512i b6 = _mm512_set1_epi16(64), b7 = _mm512_set1_epi16(128), b8 = _mm512_set1_epi16(256);
    /* word 4 q of register r's source: code 8 r + q */
#define QIDX(r)                                                                                    \
    _mm512_setr_epi64(8 * (r), 8 * (r) + 1, 8 * (r) + 2, 8 * (r) + 3, 8 * (r) + 4, 8 * (r) + 5, 8 * (r) + 6, \
                      8 * (r) + 7)
    /* half-block scale bytes 4 r + L of sc as words of 128-bit lane L (as the old rows' idx) */
#define SIDX(r)                                                                                    \
    _mm512_setr_epi32(0x80008000 | (4 * (r)) * 0x10001, 0x80008000 | (4 * (r)) * 0x10001,           \
                      0x80008000 | (4 * (r)) * 0x10001, 0x80008000 | (4 * (r)) * 0x10001,           \
                      0x80008000 | (4 * (r) + 1) * 0x10001, 0x80008000 | (4 * (r) + 1) * 0x10001,   \
                      0x80008000 | (4 * (r) + 1) * 0x10001, 0x80008000 | (4 * (r) + 1) * 0x10001,   \
                      0x80008000 | (4 * (r) + 2) * 0x10001, 0x80008000 | (4 * (r) + 2) * 0x10001,   \
                      0x80008000 | (4 * (r) + 2) * 0x10001, 0x80008000 | (4 * (r) + 2) * 0x10001,   \
                      0x80008000 | (4 * (r) + 3) * 0x10001, 0x80008000 | (4 * (r) + 3) * 0x10001,   \
                      0x80008000 | (4 * (r) + 3) * 0x10001, 0x80008000 | (4 * (r) + 3) * 0x10001)
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq2_xs *bi = &b[i];
        const int8_t *xb = xs + 256 * i;
        const __m512i q = _mm512_loadu_si512(bi->qs);
        const __mmask32 m6 = _mm512_test_epi16_mask(q, b6), m7 = _mm512_test_epi16_mask(q, b7),
                        m8 = _mm512_test_epi16_mask(q, b8);
#define LK(k) _mm512_permutex2var_epi16(t[2 * (k)], q, t[2 * (k) + 1])
        const __m512i e01 = _mm512_mask_blend_epi16(m6, LK(0), LK(1)), e23 = _mm512_mask_blend_epi16(m6, LK(2), LK(3));
        const __m512i e45 = _mm512_mask_blend_epi16(m6, LK(4), LK(5)), e67 = _mm512_mask_blend_epi16(m6, LK(6), LK(7));
#undef LK
        const __m512i e = _mm512_mask_blend_epi16(m8, _mm512_mask_blend_epi16(m7, e01, e23),
                                                  _mm512_mask_blend_epi16(m7, e45, e67));
        /* the 32 sign bytes: ksigns of bits 9-15 */
        const __m512i s7 = _mm512_castsi256_si512(_mm512_cvtepi16_epi8(_mm512_srli_epi16(q, 9)));
        uint64_t sg[4];
        _mm256_storeu_si256((__m256i *)sg, _mm512_castsi512_si256(_mm512_permutex2var_epi8(ks0, s7, ks1)));
        uint64_t s8;
        memcpy(&s8, bi->scales, 8);
        const __m128i sc16 = nibbles16(s8);
        const __m512i sc = _mm512_broadcast_i32x4(_mm_add_epi8(_mm_add_epi8(sc16, sc16), _mm_set1_epi8(1)));
#define R(a, r)                                                                                    \
    _mm512_dpwssd_epi32(                                                                           \
        (a),                                                                                       \
        _mm512_maddubs_epi16(                                                                      \
            _mm512_shuffle_epi8(vals, _mm512_and_si512(_mm512_multishift_epi64_epi8(ctrl, _mm512_permutexvar_epi16(QIDX(r), e)), three)), \
            _mm512_mask_sub_epi8(_mm512_loadu_si512(xb + 64 * (r)), (__mmask64)sg[r], _mm512_setzero_si512(), \
                                 _mm512_loadu_si512(xb + 64 * (r)))),                              \
        _mm512_shuffle_epi8(sc, SIDX(r)))
        __m512i s0 = R(_mm512_setzero_si512(), 0), s1 = R(_mm512_setzero_si512(), 1);
        s0 = R(s0, 2);
        s1 = R(s1, 3);
#undef R
        acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)),
                              _mm512_set1_ps(_cvtsh_ss(bi->d) * 0.125f * xd[i]), acc);
    }
#undef QIDX
#undef SIDX
    return acc;
}

/* IQ4_NL in the interleaved layout (kernels.h: LMP_WL_Q4_0X16; kernels_repack.c), 16 rows
 * at once, lane r = row r, as kernels_avx512_act.c's gemv_q4x16 does for q4_0: per block,
 * each of the four 64-byte words gives two vpdpbusd (low nibbles against activation bytes
 * 4j..4j+3 broadcast, high nibbles against 16+4j..), then acc += float(isum) * (dw * dx)
 * in 16 lanes. The nibbles become codes through vpermb on a 64-entry table holding the 16
 * codes plus 128 four times over: vpermb reads six index bits, so neither the low nibble
 * nor the high one shifted down (with the next byte's bits above it) needs a mask; the
 * codes plus 128 are unsigned bytes for vpdpbusd, and the offset comes back exactly as
 * 128 times the block's activation sum (the LMP_ACT_Q8 row carries it). The integer sums
 * equal ref_dotq_iq4_nl's. Replaces a row kernel that spent a table shuffle, sign fix-up,
 * scale broadcast and horizontal sum on every block of every row. */
#ifndef LMP_NLX16_PF
/* software prefetch into L2, this many bytes ahead. Shorter than q4_0's LMP_Q4X16_PF
 * (24 KiB, tuned on TinyLlama's matrices): on SmolLM2-135M's (62-500 KiB a product)
 * decoding, perf shares of this kernel against v_iq3_s in the same runs were 1.42 with
 * 24 KiB ahead, 1.24 / 1.12 / 1.02 / 0.93 / 1.05 with 512 / 1024 / 2048 / 4096 / 8192
 * bytes (the row kernel's: 1.22; ggml's repacked gemv against its iq3_s: 0.94) */
#define LMP_NLX16_PF 4096
#endif
/* LMP_IQ4NL_VALUES plus 128, four times (test_kernels checks the kernel against the
 * reference on random codes) */
#define NL128 1, 24, 45, 63, 79, 93, 106, 118, 129, 141, 153, 166, 181, 197, 217, 241
static const uint8_t k_nl128x4[64] = {NL128, NL128, NL128, NL128};
#undef NL128
TV static inline __m512 nlx16_block(const uint8_t *q, const uint8_t *d, const int32_t *x,
                                    int32_t xsum, float xd, __m512i tbl, __m512 acc)
{
    __m512i a = _mm512_set1_epi32(-128 * xsum), c = _mm512_setzero_si512();
    for (int j = 0; j < 4; j++) {
        const __m512i w = _mm512_loadu_si512(q + 64 * j);
        a = _mm512_dpbusd_epi32(a, _mm512_permutexvar_epi8(w, tbl), _mm512_set1_epi32(x[j]));
        c = _mm512_dpbusd_epi32(c, _mm512_permutexvar_epi8(_mm512_srli_epi16(w, 4), tbl),
                                _mm512_set1_epi32(x[4 + j]));
    }
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)d));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(a, c)),
                           _mm512_mul_ps(dw, _mm512_set1_ps(xd)), acc);
}

TV static void gemv_iq4nlx16(const void *grp, const void *xq, int64_t n, float out[16])
{
    const uint8_t *g = grp, *sc = g + 256 * (n / 32);
    const int32_t *xw = xq, *xs = lmp_xq8_s(xq, n);
    const float *xd = lmp_xq8_d(xq, n);
    const int64_t nb = n / 32;
    const __m512i tbl = _mm512_loadu_si512(k_nl128x4);
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const char *pf = (const char *)(g + 256 * b) + LMP_NLX16_PF;
        for (int i = 0; i < 8; i++) /* the groups follow each other in memory */
            _mm_prefetch(pf + 64 * i, _MM_HINT_T1);
        a0 = nlx16_block(g + 256 * b, sc + 32 * b, xw + 8 * b, xs[b], xd[b], tbl, a0);
        a1 = nlx16_block(g + 256 * (b + 1), sc + 32 * (b + 1), xw + 8 * (b + 1), xs[b + 1],
                         xd[b + 1], tbl, a1);
    }
    if (b < nb)
        a0 = nlx16_block(g + 256 * b, sc + 32 * b, xw + 8 * b, xs[b], xd[b], tbl, a0);
    _mm512_storeu_ps(out, _mm512_add_ps(a0, a1));
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
WRAP(iq4_nl)
WRAP(iq4_xs)
WRAP(iq3_s)
WRAP(iq2_xs)

void lmp_kimpl_fill_lowbit_avx512_vnni(lmp_kimpl *k)
{
#define SET(DT, nm) (k->dt[DT].dotq = v512_dotq_##nm, k->dt[DT].dotq4 = v512_dotq4_##nm)
    SET(LMP_DT_IQ4_NL, iq4_nl);
    SET(LMP_DT_IQ4_XS, iq4_xs);
    SET(LMP_DT_IQ3_S, iq3_s);
    SET(LMP_DT_IQ2_XS, iq2_xs);
#undef SET
    k->gemv_iq4nlx16 = gemv_iq4nlx16;
    k->iq4nlx16_simd = true;
    fill_iq3s_nib();
    fill_iq2xs_code();
}

#endif /* __x86_64__ */
