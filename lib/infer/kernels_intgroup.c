/*
 * Engine kernels for intgroup weights (lib/core/qtensor.h: GPTQ / AWQ / compressed-tensors
 * codes in the canonical packing), run in place: the 4-bit payload is what stays in
 * memory, never an f32 copy of the matrix. lmp_gemm hands an lmp_wmat with `q` set to
 * lmp_gemm_intgroup (one hook line in kernels.c); the variant (ref / AVX2 / AVX-512)
 * follows lmp_kernels_isa().
 *
 * Two regimes, as for the other dtypes (kernels.c):
 *  - M < 16 (decoding): each thread takes a contiguous range of weight rows and decodes
 *    each row once for up to four rows of X. 4- and 8-bit codes without g_idx, groups a
 *    multiple of 16: fused; 16 codes are widened to int32, the group's zero subtracted
 *    (exact), converted to f32 and multiplied into per-group f32 accumulators, and each
 *    group's sum is scaled once: y = sum_g s_g * sum_{c in g} (q_c - z_g) x_c. With
 *    g_idx the weights are formed exactly (scale and zero gathered per column) and
 *    multiplied in (up to 32 groups the tables sit in registers and a permute replaces
 *    the gathers). Other widths: the row is dequantized 256 columns at a time into a
 *    stack buffer (lmp_qtensor_dequant_range) and dotted.
 *  - M >= 16 (prompts, perplexity, calibration): kernels.c's blocking, repeated here
 *    because its driver is private: X packed once per call, per (W strip, K block of
 *    256) the strip's codes are dequantized to f32 (exactly lmp_qtensor_dequant_row's
 *    values, SIMD for 4/8 bits) and packed, and the variant's register tile (from the
 *    same lmp_kimpl tables lmp_gemm uses) runs over it. Because the values and the
 *    arithmetic order equal those of an f32 matrix holding the dequantized weights, a
 *    natively run intgroup linear gives bitwise the same result as its dequantized f32
 *    copy on this path (as long as kernels.c's blocking is LMP_K_KC = 256 with the same
 *    register tile).
 * The reference variant dequantizes each row and sums in f32 in index order
 * (lmp_gemm_intgroup_ref); tests/unit/test_intgroup.c checks every variant against it
 * and against a double-precision product, with 1 and 2 threads.
 *
 * Determinism: threads split output rows (and row tiles of X), never the K reduction,
 * so results are bitwise identical for any thread count.
 */
#include "kernels_internal.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#define IG_SMALL_M 16
#define IG_MB_ROWS 512
#define IG_GROUP_COLS 128
/* column chunk of the dequantize-then-dot fallback (stack buffer) */
#define IG_CHUNK 256
/* largest n_groups the g_idx fused path keeps as f32 zeros on the stack */
#define IG_MAX_GROUPS 4096

/* out[i] = sum_k w[n][k] * x[i*ldx + k] for i < nx (1..4). */
typedef void (*ig_rows_fn)(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                           float *out);
/* dst[j] = w[n][k0 + j] for j < kc (k0 a multiple of 256). */
typedef void (*ig_deq_fn)(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst);

typedef struct {
    lmp_kimpl k; /* register tile and packing of the same variant (kernels_*.c) */
    ig_rows_fn rows;
    ig_deq_fn deq;
} ig_variant;

static ig_variant g_var[4];
static int64_t g_small_m = IG_SMALL_M;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

/* ---------------------------------------------------------------- reference */

static void deq_ref(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
{
    lmp_qtensor_dequant_range(q, n, k0, kc, dst);
}

/* Dequantize 256 columns at a time, sum in f32 in index order. */
static void rows_ref(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                     float *out)
{
    float buf[IG_CHUNK];
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += IG_CHUNK) {
        const int64_t c = K - k0 < IG_CHUNK ? K - k0 : IG_CHUNK;
        lmp_qtensor_dequant_range(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++) {
            const float *xr = x + i * ldx + k0;
            float a = s[i];
            for (int64_t k = 0; k < c; k++)
                a += xr[k] * buf[k];
            s[i] = a;
        }
    }
    for (int i = 0; i < nx; i++)
        out[i] = s[i];
}

/* Which fast path a tensor can take on the SIMD variants. */
static inline bool ig_fast_bits(const lmp_intgroup *ig) { return ig->bits == 4 || ig->bits == 8; }
static inline bool ig_fused_ok(const lmp_qtensor *q)
{
    const lmp_intgroup *ig = &q->ig;
    return ig_fast_bits(ig) && q->cols % 16 == 0 &&
           (ig->g_idx ? ig->n_groups <= IG_MAX_GROUPS : ig->gs % 16 == 0);
}

#if defined(__x86_64__)
/* ---------------------------------------------------------------- AVX-512 */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#define INL __attribute__((always_inline)) inline

/* Codes c .. c+15 of a row (c a multiple of 16) as int32 lanes. */
T512 static INL __m512i dec16_512(const uint8_t *row, int bits, int64_t c)
{
    if (bits == 8)
        return _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(row + c)));
    const __m128i b = _mm_loadl_epi64((const __m128i *)(row + c / 2)), m = _mm_set1_epi8(15);
    const __m128i lo = _mm_and_si128(b, m), hi = _mm_and_si128(_mm_srli_epi16(b, 4), m);
    return _mm512_cvtepu8_epi32(_mm_unpacklo_epi8(lo, hi));
}

T512 static float dot512(const float *a, const float *b, int64_t n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i + 16 <= n; i += 16)
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

/* Dequantized weights, exactly s * (float)(q - z): 4/8 bits in registers, else scalar. */
T512 static void deq_512(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
{
    const lmp_intgroup *ig = &q->ig;
    if (!ig_fast_bits(ig) || kc % 16 || ig->gs % 16 || ig->g_idx) {
        lmp_qtensor_dequant_range(q, n, k0, kc, dst);
        return;
    }
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    for (int64_t c = k0; c < k0 + kc;) {
        const int g = (int)(c / ig->gs);
        int64_t end = (int64_t)(g + 1) * ig->gs;
        if (end > k0 + kc)
            end = k0 + kc;
        const __m512i zi = _mm512_set1_epi32(z[g]);
        const __m512 sv = _mm512_set1_ps(s[g]);
        if (ig->bits == 4)
            for (; c < end; c += 16)
                _mm512_storeu_ps(dst + (c - k0), _mm512_mul_ps(sv, _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                                                       dec16_512(row, 4, c), zi))));
        else
            for (; c < end; c += 16)
                _mm512_storeu_ps(dst + (c - k0), _mm512_mul_ps(sv, _mm512_cvtepi32_ps(_mm512_sub_epi32(
                                                                       dec16_512(row, 8, c), zi))));
    }
}

/* Fused, no g_idx: per group, (q - z) * x summed in two accumulators per row of X, then
 * times the group's scale into the row's total. NX rows of X, BITS 4 or 8. */
T512 static INL void fused_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                               float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols, gs = ig->gs;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    __m512 y[4];
    for (int i = 0; i < NX; i++)
        y[i] = _mm512_setzero_ps();
    for (int g = 0; g < ig->n_groups; g++) {
        const int64_t c0 = (int64_t)g * gs, c1 = c0 + gs < K ? c0 + gs : K;
        const __m512i zi = _mm512_set1_epi32(z[g]);
        __m512 a0[4], a1[4];
        for (int i = 0; i < NX; i++)
            a0[i] = a1[i] = _mm512_setzero_ps();
        int64_t c = c0;
        for (; c + 32 <= c1; c += 32) {
            const __m512 w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dec16_512(row, BITS, c), zi));
            const __m512 w1 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dec16_512(row, BITS, c + 16), zi));
            for (int i = 0; i < NX; i++) {
                a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * ldx + c), a0[i]);
                a1[i] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + i * ldx + c + 16), a1[i]);
            }
        }
        if (c < c1) {
            const __m512 w0 = _mm512_cvtepi32_ps(_mm512_sub_epi32(dec16_512(row, BITS, c), zi));
            for (int i = 0; i < NX; i++)
                a0[i] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + i * ldx + c), a0[i]);
        }
        const __m512 sv = _mm512_set1_ps(s[g]);
        for (int i = 0; i < NX; i++)
            y[i] = _mm512_fmadd_ps(_mm512_add_ps(a0[i], a1[i]), sv, y[i]);
    }
    for (int i = 0; i < NX; i++)
        out[i] = _mm512_reduce_add_ps(y[i]);
}

/* Fused with g_idx: w = s[g_idx[c]] * (q - z[g_idx[c]]) formed exactly per column
 * (gathers), multiplied into one accumulator per row of X. */
T512 static INL void fused_gidx_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                                    float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    const int ng = ig->n_groups;
    _Alignas(64) float zf[IG_MAX_GROUPS + 32], sf[32];
    for (int g = 0; g < ng; g++)
        zf[g] = (float)z[g];
    __m512 a[4];
    for (int i = 0; i < NX; i++)
        a[i] = _mm512_setzero_ps();
    if (ng <= 32) {
        /* up to 32 groups: scale and zero tables in two registers each, looked up with a
         * permute instead of a gather (gathers cost ~8x more on Zen 4) */
        for (int g = ng; g < 32; g++)
            zf[g] = 0.0f;
        for (int g = 0; g < 32; g++)
            sf[g] = g < ng ? s[g] : 0.0f;
        const __m512 s0 = _mm512_load_ps(sf), s1 = _mm512_load_ps(sf + 16);
        const __m512 z0 = _mm512_load_ps(zf), z1 = _mm512_load_ps(zf + 16);
        for (int64_t c = 0; c < K; c += 16) {
            const __m512i gi = _mm512_loadu_si512((const void *)(ig->g_idx + c));
            const __m512 sv = _mm512_permutex2var_ps(s0, gi, s1), zv = _mm512_permutex2var_ps(z0, gi, z1);
            const __m512 w = _mm512_mul_ps(sv, _mm512_sub_ps(_mm512_cvtepi32_ps(dec16_512(row, BITS, c)), zv));
            for (int i = 0; i < NX; i++)
                a[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + c), a[i]);
        }
    } else {
        for (int64_t c = 0; c < K; c += 16) {
            const __m512i gi = _mm512_loadu_si512((const void *)(ig->g_idx + c));
            const __m512 sv = _mm512_i32gather_ps(gi, s, 4), zv = _mm512_i32gather_ps(gi, zf, 4);
            const __m512 w = _mm512_mul_ps(sv, _mm512_sub_ps(_mm512_cvtepi32_ps(dec16_512(row, BITS, c)), zv));
            for (int i = 0; i < NX; i++)
                a[i] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x + i * ldx + c), a[i]);
        }
    }
    for (int i = 0; i < NX; i++)
        out[i] = _mm512_reduce_add_ps(a[i]);
}

#define FUSED_CASES(FN, q, n, x, ldx, nx, out, BITS)                                     \
    switch (nx) {                                                                        \
    case 1: FN(q, n, x, ldx, out, 1, BITS); break;                                       \
    case 2: FN(q, n, x, ldx, out, 2, BITS); break;                                       \
    case 3: FN(q, n, x, ldx, out, 3, BITS); break;                                       \
    default: FN(q, n, x, ldx, out, 4, BITS); break;                                      \
    }

T512 static void rows_512(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                          float *out)
{
    const lmp_intgroup *ig = &q->ig;
    if (ig_fused_ok(q)) {
        if (ig->g_idx) {
            if (ig->bits == 4)
                FUSED_CASES(fused_gidx_512, q, n, x, ldx, nx, out, 4)
            else
                FUSED_CASES(fused_gidx_512, q, n, x, ldx, nx, out, 8)
        } else {
            if (ig->bits == 4)
                FUSED_CASES(fused_512, q, n, x, ldx, nx, out, 4)
            else
                FUSED_CASES(fused_512, q, n, x, ldx, nx, out, 8)
        }
        return;
    }
    /* other widths: dequantize a chunk, dot it with each row of X */
    _Alignas(64) float buf[IG_CHUNK];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += IG_CHUNK) {
        const int64_t c = K - k0 < IG_CHUNK ? K - k0 : IG_CHUNK;
        deq_512(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++)
            acc[i] += dot512(buf, x + i * ldx + k0, c);
    }
    for (int i = 0; i < nx; i++)
        out[i] = acc[i];
}

/* ---------------------------------------------------------------- AVX2 */

#define T256 __attribute__((target("avx2,fma,f16c")))

T256 static INL float hsum256(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Codes c .. c+15 (c a multiple of 16) as two vectors of 8 int32 lanes. */
T256 static INL void dec16_256(const uint8_t *row, int bits, int64_t c, __m256i *lo8, __m256i *hi8)
{
    __m128i u;
    if (bits == 8) {
        u = _mm_loadu_si128((const __m128i *)(row + c));
    } else {
        const __m128i b = _mm_loadl_epi64((const __m128i *)(row + c / 2)), m = _mm_set1_epi8(15);
        u = _mm_unpacklo_epi8(_mm_and_si128(b, m), _mm_and_si128(_mm_srli_epi16(b, 4), m));
    }
    *lo8 = _mm256_cvtepu8_epi32(u);
    *hi8 = _mm256_cvtepu8_epi32(_mm_srli_si128(u, 8));
}

T256 static float dot256(const float *a, const float *b, int64_t n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
        s2 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 16), _mm256_loadu_ps(b + i + 16), s2);
        s3 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 24), _mm256_loadu_ps(b + i + 24), s3);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float t = hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; i < n; i++)
        t += a[i] * b[i];
    return t;
}

T256 static void deq_256(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
{
    const lmp_intgroup *ig = &q->ig;
    if (!ig_fast_bits(ig) || kc % 16 || ig->gs % 16 || ig->g_idx) {
        lmp_qtensor_dequant_range(q, n, k0, kc, dst);
        return;
    }
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    for (int64_t c = k0; c < k0 + kc;) {
        const int g = (int)(c / ig->gs);
        int64_t end = (int64_t)(g + 1) * ig->gs;
        if (end > k0 + kc)
            end = k0 + kc;
        const __m256i zi = _mm256_set1_epi32(z[g]);
        const __m256 sv = _mm256_set1_ps(s[g]);
        for (; c < end; c += 16) {
            __m256i a, b;
            dec16_256(row, ig->bits, c, &a, &b);
            _mm256_storeu_ps(dst + (c - k0), _mm256_mul_ps(sv, _mm256_cvtepi32_ps(_mm256_sub_epi32(a, zi))));
            _mm256_storeu_ps(dst + (c - k0) + 8, _mm256_mul_ps(sv, _mm256_cvtepi32_ps(_mm256_sub_epi32(b, zi))));
        }
    }
}

T256 static INL void fused_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                               float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols, gs = ig->gs;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    __m256 y[4];
    for (int i = 0; i < NX; i++)
        y[i] = _mm256_setzero_ps();
    for (int g = 0; g < ig->n_groups; g++) {
        const int64_t c0 = (int64_t)g * gs, c1 = c0 + gs < K ? c0 + gs : K;
        const __m256i zi = _mm256_set1_epi32(z[g]);
        __m256 a0[4], a1[4];
        for (int i = 0; i < NX; i++)
            a0[i] = a1[i] = _mm256_setzero_ps();
        for (int64_t c = c0; c < c1; c += 16) {
            __m256i qa, qb;
            dec16_256(row, BITS, c, &qa, &qb);
            const __m256 w0 = _mm256_cvtepi32_ps(_mm256_sub_epi32(qa, zi));
            const __m256 w1 = _mm256_cvtepi32_ps(_mm256_sub_epi32(qb, zi));
            for (int i = 0; i < NX; i++) {
                a0[i] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + c), a0[i]);
                a1[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * ldx + c + 8), a1[i]);
            }
        }
        const __m256 sv = _mm256_set1_ps(s[g]);
        for (int i = 0; i < NX; i++)
            y[i] = _mm256_fmadd_ps(_mm256_add_ps(a0[i], a1[i]), sv, y[i]);
    }
    for (int i = 0; i < NX; i++)
        out[i] = hsum256(y[i]);
}

T256 static INL void fused_gidx_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx,
                                    float *out, const int NX, const int BITS)
{
    const lmp_intgroup *ig = &q->ig;
    const int64_t K = q->cols;
    const uint8_t *row = ig->codes + n * ig->row_bytes;
    const float *s = ig->scales + n * ig->n_groups;
    const uint8_t *z = ig->zeros + n * ig->n_groups;
    float zf[IG_MAX_GROUPS];
    for (int g = 0; g < ig->n_groups; g++)
        zf[g] = (float)z[g];
    __m256 a[4];
    for (int i = 0; i < NX; i++)
        a[i] = _mm256_setzero_ps();
    for (int64_t c = 0; c < K; c += 16) {
        __m256i qa, qb;
        dec16_256(row, BITS, c, &qa, &qb);
        const __m256i g0 = _mm256_loadu_si256((const __m256i *)(ig->g_idx + c));
        const __m256i g1 = _mm256_loadu_si256((const __m256i *)(ig->g_idx + c + 8));
        const __m256 w0 = _mm256_mul_ps(_mm256_i32gather_ps(s, g0, 4),
                                        _mm256_sub_ps(_mm256_cvtepi32_ps(qa), _mm256_i32gather_ps(zf, g0, 4)));
        const __m256 w1 = _mm256_mul_ps(_mm256_i32gather_ps(s, g1, 4),
                                        _mm256_sub_ps(_mm256_cvtepi32_ps(qb), _mm256_i32gather_ps(zf, g1, 4)));
        for (int i = 0; i < NX; i++)
            a[i] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + i * ldx + c + 8),
                                   _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + i * ldx + c), a[i]));
    }
    for (int i = 0; i < NX; i++)
        out[i] = hsum256(a[i]);
}

T256 static void rows_256(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                          float *out)
{
    const lmp_intgroup *ig = &q->ig;
    if (ig_fused_ok(q)) {
        if (ig->g_idx) {
            if (ig->bits == 4)
                FUSED_CASES(fused_gidx_256, q, n, x, ldx, nx, out, 4)
            else
                FUSED_CASES(fused_gidx_256, q, n, x, ldx, nx, out, 8)
        } else {
            if (ig->bits == 4)
                FUSED_CASES(fused_256, q, n, x, ldx, nx, out, 4)
            else
                FUSED_CASES(fused_256, q, n, x, ldx, nx, out, 8)
        }
        return;
    }
    _Alignas(32) float buf[IG_CHUNK];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += IG_CHUNK) {
        const int64_t c = K - k0 < IG_CHUNK ? K - k0 : IG_CHUNK;
        deq_256(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++)
            acc[i] += dot256(buf, x + i * ldx + k0, c);
    }
    for (int i = 0; i < nx; i++)
        out[i] = acc[i];
}
#endif /* __x86_64__ */

/* ---------------------------------------------------------------- driver */

static void init_once(void)
{
    ig_variant *r = &g_var[LMP_ISA_REF];
    lmp_kimpl_fill_ref(&r->k);
    r->rows = rows_ref;
    r->deq = deq_ref;
    g_var[LMP_ISA_AUTO] = *r;
#if defined(__x86_64__)
    /* the tables merge as kernels.c merges them; lmp_kernels_isa() only ever names a
     * variant this CPU has */
    g_var[LMP_ISA_AVX2] = *r;
    lmp_kimpl_fill_avx2(&g_var[LMP_ISA_AVX2].k);
    g_var[LMP_ISA_AVX2].rows = rows_256;
    g_var[LMP_ISA_AVX2].deq = deq_256;
    g_var[LMP_ISA_AVX512] = g_var[LMP_ISA_AVX2];
    lmp_kimpl_fill_avx512(&g_var[LMP_ISA_AVX512].k);
    g_var[LMP_ISA_AVX512].rows = rows_512;
    g_var[LMP_ISA_AVX512].deq = deq_512;
#endif
    const char *sm = getenv("LMP_GEMM_SMALL_M");
    if (sm && *sm)
        g_small_m = strtol(sm, NULL, 10);
}

static const ig_variant *variant(void)
{
    pthread_once(&g_once, init_once);
    lmp_isa isa = lmp_kernels_isa();
    return &g_var[(unsigned)isa < 4 ? isa : LMP_ISA_REF];
}

static _Thread_local float *tl_xp;
static _Thread_local size_t tl_xp_cap;

static float *xp_buffer(size_t nfloat)
{
    if (nfloat > tl_xp_cap) {
        free(tl_xp);
        size_t bytes = (nfloat * sizeof(float) + 63) & ~(size_t)63;
        tl_xp = aligned_alloc(64, bytes);
        tl_xp_cap = tl_xp ? nfloat : 0;
    }
    return tl_xp;
}

void lmp_kernels_intgroup_scratch_free(void)
{
    free(tl_xp);
    tl_xp = NULL;
    tl_xp_cap = 0;
}

static void gemm_rows(float *Y, const float *X, const lmp_qtensor *q, const float *bias, int64_t M,
                      ig_rows_fn rows)
{
    const int64_t N = q->rows, K = q->cols;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const float b = bias ? bias[n] : 0.0f;
        for (int64_t m = 0; m < M; m += 4) {
            float out[4];
            const int nx = (int)(M - m < 4 ? M - m : 4);
            rows(q, n, X + m * K, K, nx, out);
            for (int r = 0; r < nx; r++)
                Y[(m + r) * N + n] = out[r] + b;
        }
    }
}

/* kernels.c gemm_tiled with the strip dequantized from the intgroup codes (see there for
 * the blocking and why it is deterministic). */
static void gemm_tiled(float *Y, const float *X, const lmp_qtensor *q, const float *bias, int64_t M,
                       const ig_variant *v, float *xp)
{
    const lmp_kimpl *k = &v->k;
    const int64_t N = q->rows, K = q->cols;
    const int mr = k->mr, nr = k->nr;
    const int64_t mtiles = (M + mr - 1) / mr, nstrips = (N + nr - 1) / nr;
    const int64_t tpb = lmp_k_block_tiles(mtiles, nstrips, omp_get_max_threads(),
                                          (IG_MB_ROWS + mr - 1) / mr);
    const int64_t nmb = (mtiles + tpb - 1) / tpb, ntasks = nstrips * nmb;
    const int64_t mpad = mtiles * mr;

#pragma omp parallel
    {
#pragma omp for schedule(static)
        for (int64_t t = 0; t < mtiles; t++) {
            const int rows = (int)(M - t * mr < mr ? M - t * mr : mr);
            for (int64_t k0 = 0; k0 < K; k0 += LMP_K_KC) {
                const int64_t kc = K - k0 < LMP_K_KC ? K - k0 : LMP_K_KC;
                float *dst = xp + k0 * mpad + t * mr * kc;
                if (k->pack_x)
                    k->pack_x(X + t * mr * K + k0, K, rows, kc, dst);
                else
                    lmp_k_pack_x(X + t * mr * K + k0, K, rows, kc, mr, dst);
            }
        }
        const int nt = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t task0 = ntasks * me / nt, task1 = ntasks * (me + 1) / nt;
        const int64_t group = nr >= IG_GROUP_COLS ? 1 : IG_GROUP_COLS / nr;
        _Alignas(64) float wtmp[LMP_K_NR_MAX * LMP_K_KC];
        _Alignas(64) float wp[LMP_K_KC * LMP_K_NR_MAX];
        for (int64_t g0 = task0; g0 < task1; g0 += group) {
            const int64_t g1 = g0 + group < task1 ? g0 + group : task1;
            for (int64_t task = g0; task < g1; task++) {
                const int64_t n0 = task / nmb * nr, b = task % nmb;
                const int nv = (int)(N - n0 < nr ? N - n0 : nr);
                const int64_t m0 = b * tpb * mr;
                const int64_t m1 = (b + 1) * tpb * mr < M ? (b + 1) * tpb * mr : M;
                for (int64_t m = m0; m < m1; m++) {
                    float *y = Y + m * N + n0;
                    if (bias)
                        memcpy(y, bias + n0, (size_t)nv * sizeof(float));
                    else
                        memset(y, 0, (size_t)nv * sizeof(float));
                }
            }
            for (int64_t k0 = 0; k0 < K; k0 += LMP_K_KC) {
                const int64_t kc = K - k0 < LMP_K_KC ? K - k0 : LMP_K_KC;
                int64_t packed = -1;
                for (int64_t task = g0; task < g1; task++) {
                    const int64_t s = task / nmb, b = task % nmb, n0 = s * nr;
                    const int nv = (int)(N - n0 < nr ? N - n0 : nr);
                    if (s != packed) {
                        for (int r = 0; r < nv; r++)
                            v->deq(q, n0 + r, k0, kc, wtmp + r * LMP_K_KC);
                        k->pack_w(wtmp, LMP_K_KC, nv, kc, wp);
                        packed = s;
                    }
                    const int64_t t0 = b * tpb, t1 = t0 + tpb < mtiles ? t0 + tpb : mtiles;
                    for (int64_t t = t0; t < t1; t++) {
                        const int m = (int)(M - t * mr < mr ? M - t * mr : mr);
                        k->ukr(kc, xp + k0 * mpad + t * mr * kc, wp, Y + t * mr * N + n0, N, m, nv);
                    }
                }
            }
        }
    }
}

void lmp_gemm_intgroup(float *Y, const float *X, const lmp_wmat *W, const float *bias, int64_t M)
{
    const lmp_qtensor *q = W->q;
    const ig_variant *v = variant();
    const int64_t N = q->rows, K = q->cols;
    if (M <= 0 || N <= 0)
        return;
    if (v->k.ukr && M >= g_small_m && K > 0) {
        const int64_t mtiles = (M + v->k.mr - 1) / v->k.mr;
        float *xp = xp_buffer((size_t)(mtiles * v->k.mr * K));
        if (xp) {
            gemm_tiled(Y, X, q, bias, M, v, xp);
            return;
        }
    }
    gemm_rows(Y, X, q, bias, M, v->rows);
}

typedef struct {
    float *y;
    const float *x, *bias;
    const lmp_qtensor *q;
    const ig_variant *v;
    bool acc;
} team_rows;

static void team_range(void *ctx, int64_t lo, int64_t hi)
{
    const team_rows *t = ctx;
    for (int64_t n = lo; n < hi; n++) {
        float out[4];
        t->v->rows(t->q, n, t->x, t->q->cols, 1, out); /* as gemm_rows with M == 1 */
        const float r = out[0] + (t->bias ? t->bias[n] : 0.0f);
        t->y[n] = t->acc ? t->y[n] + r : r;
    }
}

void lmp_gemv_intgroup_team(float *y, const float *x, const lmp_wmat *W, const float *bias,
                            bool acc, lmp_team *team)
{
    team_rows t = {y, x, bias, W->q, variant(), acc};
    /* rows of about 32 KiB of weights per unit at 4 bits */
    const int64_t unit = W->q->cols >= 65536 ? 1 : 65536 / (W->q->cols > 0 ? W->q->cols : 1);
    lmp_k_share(team, W->q->rows, unit, team_range, &t);
}

void lmp_gemm_intgroup_ref(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                           int64_t M)
{
    pthread_once(&g_once, init_once);
    gemm_rows(Y, X, W->q, bias, M, rows_ref);
}

int lmp_wmat_intgroup(lmp_wmat *w, const lmp_qtensor *q)
{
    memset(w, 0, sizeof *w);
    int rc = lmp_qtensor_intgroup_check(q, NULL);
    if (rc)
        return rc;
    w->dtype = LMP_DT_U8;
    w->rows = q->rows;
    w->cols = q->cols;
    w->q = q;
    return LMP_OK;
}

void lmp_wmat_row_f32(const lmp_wmat *w, int64_t r, float *out)
{
    if (w->q) {
        lmp_qtensor_dequant_row(w->q, r, out);
        return;
    }
    if (w->layout == LMP_WL_Q4_0X16) {
        /* read back one block at a time into row layout, then the dtype's decoder */
        uint8_t blk[18];
        for (int64_t b = 0; b < w->cols / 32; b++) {
            lmp_k_x16_rows(w, r, 1, b, 1, blk);
            lmp_dtype_info(w->dtype)->to_f32(blk, out + 32 * b, 32);
        }
        return;
    }
    lmp_dtype_info(w->dtype)->to_f32((const uint8_t *)w->data + (size_t)r * w->row_bytes, out,
                                     w->cols);
}
