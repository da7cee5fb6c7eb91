/*
 * Kernels for the low-bit GGUF types (lib/quant/iquants.c, tquants.c, iq3quants.c,
 * iq2quants.c): IQ4_NL, IQ4_XS, MXFP4, TQ1_0, TQ2_0, Q1_0, Q2_0, IQ3_XXS, IQ3_S, IQ2_XXS,
 * IQ2_XS, IQ2_S, IQ1_S, IQ1_M (iq1quants.c).
 *
 * Reference (every type): rows decoded through the dtype table's to_f32 and summed in
 * index order, like kernels_ref.c's generic rows. IQ4_NL and IQ4_XS also compute on Q8
 * activations (kernels_internal.h: LMP_ACT_Q8): their codes are the int8 values of
 * LMP_IQ4NL_VALUES, so per block of 32 the definition is the exact integer sum
 * is = sum q[k] x8[k], then s += (float)is * (dw * dx), blocks in order, with dw the
 * block's f16 scale (IQ4_NL) or d * (ls - 32) (IQ4_XS sub-block).
 * AVX2 (vpshufb table look-up, vpmaddubsw) and AVX-512 VNNI (vpdpbusd, two blocks per
 * register; IQ4_NL / IQ4_XS) compute the same integer sums and accumulate the scaled sums
 * in lanes (the float arithmetic differs from the reference's in the order of its
 * roundings only; the kernel tests bound it). IQ3_S and IQ2_XS run the AVX2 rows in both variants.
 * The other types' SIMD rows: kernels_lowbit_avx2.c, kernels_lowbit_avx512.c.
 */
#include "kernels_internal.h"

#include "../core/blocks.h"
#include "../core/iq_grid.h"

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

static float ref_dotq_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const uint8_t *qs = b[i].qs + 16 * ib;
            const int8_t *x = xs + 256 * i + 32 * ib;
            int32_t is = 0;
            for (int j = 0; j < 16; j++)
                is += k_nl[qs[j] & 15] * x[j] + k_nl[qs[j] >> 4] * x[j + 16];
            s += (float)is * (d * (float)xs_scale(&b[i], ib) * xd[8 * i + ib]);
        }
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

/* IQ3_S on Q8 activations: per 32-block the exact integer sum, then
 * s += (float)is * (d * (1 + 2 sc) * dx). */
static float ref_dotq_iq3_s(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq3_s *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            int8_t q[32];
            ints_iq3_s(&b[i], ib, q);
            int32_t is = 0;
            for (int j = 0; j < 32; j++)
                is += q[j] * xs[256 * i + 32 * ib + j];
            const int sc = ib % 2 ? b[i].scales[ib / 2] >> 4 : b[i].scales[ib / 2] & 0xf;
            s += (float)is * (d * (float)(1 + 2 * sc) * xd[8 * i + ib]);
        }
    }
    return s;
}

/* IQ2_XS on Q8 activations: per 16-value half the exact integer sum, then
 * s += (float)is * (d * (0.5 + sc) * 0.25 * dx), halves in order. */
static float ref_dotq_iq2_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq2_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            int8_t q[32];
            ints_iq2_xs(&b[i], ib, q);
            for (int h = 0; h < 2; h++) {
                int32_t is = 0;
                for (int j = 0; j < 16; j++)
                    is += q[16 * h + j] * xs[256 * i + 32 * ib + 16 * h + j];
                const int sc = (b[i].scales[ib] >> 4 * h) & 0xf;
                s += (float)is * (d * (0.5f + sc) * 0.25f * xd[8 * i + ib]);
            }
        }
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

T2 static float avx2_dotq_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m256i tbl = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)k_nl));
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const int8_t *x = xs + 256 * i;
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            a0 = _mm256_fmadd_ps(isum8(nl32(b[i].qs + 16 * ib, tbl), _mm256_loadu_si256((const __m256i *)(x + 32 * ib))),
                                 _mm256_set1_ps(d * (float)xs_scale(&b[i], ib) * dx[ib]), a0);
            a1 = _mm256_fmadd_ps(isum8(nl32(b[i].qs + 16 * ib + 16, tbl),
                                       _mm256_loadu_si256((const __m256i *)(x + 32 * ib + 32))),
                                 _mm256_set1_ps(d * (float)xs_scale(&b[i], ib + 1) * dx[ib + 1]), a1);
        }
    }
    return hsum8(_mm256_add_ps(a0, a1));
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

/* IQ3_S: as IQ2_XS below, the unsigned grid bytes (1..15) times sign-applied x in
 * vpmaddubsw (the sign bits as -1 / +1 multipliers), the integer scale 1 + 2 sc in
 * vpmaddwd, d * dx in the float multiply. */
T2 static float avx2_dotq_iq3_s(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq3_s *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m256i one = _mm256_set1_epi8(1);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
#define BLK(ib, acc)                                                                               \
    do {                                                                                           \
        const uint8_t *qs = bi->qs + 8 * (ib), h = bi->qh[ib];                                     \
        const __m256i g = _mm256_setr_epi32(                                                       \
            (int)lmp_iq3s_grid[qs[0] | ((h << 8) & 256)], (int)lmp_iq3s_grid[qs[1] | ((h << 7) & 256)], \
            (int)lmp_iq3s_grid[qs[2] | ((h << 6) & 256)], (int)lmp_iq3s_grid[qs[3] | ((h << 5) & 256)], \
            (int)lmp_iq3s_grid[qs[4] | ((h << 4) & 256)], (int)lmp_iq3s_grid[qs[5] | ((h << 3) & 256)], \
            (int)lmp_iq3s_grid[qs[6] | ((h << 2) & 256)], (int)lmp_iq3s_grid[qs[7] | ((h << 1) & 256)]); \
        uint32_t sb;                                                                               \
        memcpy(&sb, bi->signs + 4 * (ib), 4);                                                      \
        const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb + 32 * (ib))),  \
                                           _mm256_or_si256(sign_mask(sb), one));                   \
        const int sc = (ib) % 2 ? bi->scales[(ib) / 2] >> 4 : bi->scales[(ib) / 2] & 0xf;          \
        const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(g, x), _mm256_set1_epi16((short)(1 + 2 * sc))); \
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d * dx[ib]), acc);             \
    } while (0)
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq3_s *bi = &b[i];
        const float d = _cvtsh_ss(bi->d);
        const int8_t *xb = xs + 256 * i;
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            BLK(ib, a0);
            BLK(ib + 1, a1);
        }
    }
#undef BLK
    return hsum8(_mm256_add_ps(a0, a1));
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

/* IQ2_XS: the grid values are unsigned (0..43), so the signs go onto x (vpsignb with the
 * table's multipliers) and vpmaddubsw multiplies the grid bytes directly; the pair sums
 * are weighted by the integer half-block scales 2 sc + 1 in vpmaddwd, and
 * (0.5 + sc) * 0.25 = (2 sc + 1) / 8 leaves d * dx / 8 for the float multiply. The
 * integer sums are the definition's times 2 sc + 1 (exact), so only the float rounding
 * differs from the reference. */
T2 static float avx2_dotq_iq2_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq2_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
#define BLK(ib, acc)                                                                                   do {                                                                                                   const uint16_t *c = bi->qs + 4 * (ib);                                                             const __m256i g = _mm256_setr_epi64x((long long)lmp_iq2xs_grid[c[0] & 511], (long long)lmp_iq2xs_grid[c[1] & 511],                                              (long long)lmp_iq2xs_grid[c[2] & 511], (long long)lmp_iq2xs_grid[c[3] & 511]);         const __m256i sg = _mm256_setr_epi64x((long long)k_sgn_iq2[c[0] >> 9], (long long)k_sgn_iq2[c[1] >> 9],                                               (long long)k_sgn_iq2[c[2] >> 9], (long long)k_sgn_iq2[c[3] >> 9]);         const __m256i x = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(xb + 32 * (ib))), sg);           const int sc = bi->scales[ib];                                                                     const __m256i s16 = _mm256_setr_m128i(_mm_set1_epi16((short)(2 * (sc & 0xf) + 1)),                                                       _mm_set1_epi16((short)(2 * (sc >> 4) + 1)));                 const __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(g, x), s16);                              acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(d8 * dx[ib]), acc);                } while (0)
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_iq2_xs *bi = &b[i];
        const float d8 = _cvtsh_ss(bi->d) * 0.125f;
        const int8_t *xb = xs + 256 * i;
        const float *dx = xd + 8 * i;
        for (int ib = 0; ib < 8; ib += 2) {
            BLK(ib, a0);
            BLK(ib + 1, a1);
        }
    }
#undef BLK
    return hsum8(_mm256_add_ps(a0, a1));
}

void lmp_kimpl_fill_lowbit_avx2(lmp_kimpl *k)
{
    fill_sgn_iq2();
    k->dt[LMP_DT_IQ3_S].dotq = avx2_dotq_iq3_s;
    k->dt[LMP_DT_IQ2_XS].dotq = avx2_dotq_iq2_xs;
    k->dt[LMP_DT_IQ4_NL].dotq = avx2_dotq_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].dotq = avx2_dotq_iq4_xs;
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

TV static inline __m512 v_iq4_xs(const void *row, const void *xq, int64_t n)
{
    const lmp_block_iq4_xs *b = row;
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const __m512i tbl = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)k_nl));
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    for (int64_t i = 0; i < n / 256; i++) {
        const float d = _cvtsh_ss(b[i].d);
        const int8_t *x = xs + 256 * i;
        const float *dx = xd + 8 * i;
        const uint8_t *qs = b[i].qs;
        int sc[8];
        for (int ib = 0; ib < 8; ib++)
            sc[ib] = xs_scale(&b[i], ib);
        a0 = _mm512_fmadd_ps(isum16(nl64(qs, qs + 16, tbl), _mm512_loadu_si512(x)),
                             scale2(d * (float)sc[0] * dx[0], d * (float)sc[1] * dx[1]), a0);
        a1 = _mm512_fmadd_ps(isum16(nl64(qs + 32, qs + 48, tbl), _mm512_loadu_si512(x + 64)),
                             scale2(d * (float)sc[2] * dx[2], d * (float)sc[3] * dx[3]), a1);
        a0 = _mm512_fmadd_ps(isum16(nl64(qs + 64, qs + 80, tbl), _mm512_loadu_si512(x + 128)),
                             scale2(d * (float)sc[4] * dx[4], d * (float)sc[5] * dx[5]), a0);
        a1 = _mm512_fmadd_ps(isum16(nl64(qs + 96, qs + 112, tbl), _mm512_loadu_si512(x + 192)),
                             scale2(d * (float)sc[6] * dx[6], d * (float)sc[7] * dx[7]), a1);
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
WRAP(iq4_nl)
WRAP(iq4_xs)

void lmp_kimpl_fill_lowbit_avx512_vnni(lmp_kimpl *k)
{
    k->dt[LMP_DT_IQ4_NL].dotq = v512_dotq_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].dotq = v512_dotq_iq4_xs;
    k->dt[LMP_DT_IQ4_NL].dotq4 = v512_dotq4_iq4_nl;
    k->dt[LMP_DT_IQ4_XS].dotq4 = v512_dotq4_iq4_xs;
    /* IQ3_S and IQ2_XS keep the AVX2 rows (unsigned grid bytes in vpmaddubsw, integer
     * scales): one thread, TinyLlama's up projection, 1419 / 910 us a product against
     * 1518 / 3076 for the two-block VNNI rows this file had (ggml_lowbit_speed.c) */
    }

#endif /* __x86_64__ */
