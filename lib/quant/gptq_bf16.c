/*
 * X^T X on activations rounded to bf16 (bf16 calibration, lmp_calib_opts.bf16): the
 * Hessian update of lmp_gptq_syrk_acc with each f32 tile product replaced by one over X
 * rounded to nearest even bf16. Every product of two bf16 values is exact in f32; the
 * sums are f32 as before (at most KC tokens per f32 tile, then added into the double
 * Hessian), so the only change is the rounding of X, as when the reference
 * implementations gather their Hessians from the model's bf16 activations.
 *
 * Arithmetic, defined once for every path: per output element, tokens in pairs
 * (2p, 2p + 1) in increasing p, and per pair acc = fma(x[2p+1][i], x[2p+1][j], acc), then
 * acc = fma(x[2p][i], x[2p][j], acc), each result that is subnormal flushed to a zero of
 * its sign (vdpbf16ps's order and flushing, measured on this Zen 4: 32 M random cases,
 * 0 differences; the products are exact, so each step is one rounding). An odd last
 * token pairs with a zero. The AVX-512 BF16 path (vdpbf16ps) and the portable path
 * (fmaf) compute exactly that, so they give the same bits (test_gptq_bf16); the tiling
 * and the order of every sum depend on (cols, n) only, not on the thread count.
 *
 * Speed (docs/benchmarks.md): vdpbf16ps does 32 multiply-adds per instruction against
 * 16 for an f32 FMA, at the same rate on this CPU (measured 2.0x).
 */
#include "intquant.h"
#include "../infer/kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

enum {
    ST = 256, /* tile side of the update (as lmp_gptq_syrk_acc) */
    KC = 512, /* tokens summed in f32 before a tile is added to the double Hessian */
    CB = 32,  /* columns per packed block */
    MR = 8,   /* rows of a micro-tile */
    NR = 32   /* columns of a micro-tile (one packed block) */
};

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

/* f32 -> bf16, nearest even; zero and subnormals to a signed zero, NaN quieted (the
 * engine's LMP_ACT_BF16 rounding). */
static inline uint16_t to_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0)
        return (uint16_t)((u >> 16) & 0x8000);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t h)
{
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Packed X of one chunk of k tokens: block cb of CB columns, pair p at
 * P[(cb * kp + p) * CB + c % CB], a 32-bit word with token 2p's bf16 in the low half and
 * token 2p + 1's in the high half (zeros past the last token and the last column). */
static void pack_chunk(uint32_t *P, const float *X, int64_t cols, int64_t k, int64_t kp, int64_t nb)
{
    #pragma omp for schedule(static)
    for (int64_t cb = 0; cb < nb; cb++) {
        const int64_t c0 = cb * CB, w = min64(CB, cols - c0);
        for (int64_t p = 0; p < kp; p++) {
            uint32_t *d = P + (cb * kp + p) * CB;
            const float *x0 = X + 2 * p * cols + c0, *x1 = x0 + cols;
            const bool has1 = 2 * p + 1 < k;
            int64_t c = 0;
            for (; c < w; c++)
                d[c] = (uint32_t)to_bf16(x0[c]) | (has1 ? (uint32_t)to_bf16(x1[c]) << 16 : 0u);
            for (; c < CB; c++)
                d[c] = 0;
        }
    }
}

/* ---------------------------------------------------------------- micro-kernels --- */

/* g[r][c] (stride ldg) = the MR x NR block of rows a (MR consecutive columns of X in one
 * packed block, a = &P[(cb_i * kp) * CB + i % CB]) against columns b (a packed block),
 * over kp pairs. */
typedef void (*ukr_fn)(const uint32_t *a, const uint32_t *b, int64_t kp, float *g, int64_t ldg);

static inline float step(float acc, float x, float y)
{
    float r = fmaf(x, y, acc);
    if (r != 0.0f && fabsf(r) < 1.17549435e-38f) /* FLT_MIN: flush to zero */
        r = copysignf(0.0f, r);
    return r;
}

static void ukr_ref(const uint32_t *a, const uint32_t *b, int64_t kp, float *g, int64_t ldg)
{
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int64_t p = 0; p < kp; p++) {
        const uint32_t *ap = a + p * CB, *bp = b + p * CB;
        for (int r = 0; r < MR; r++) {
            const float x1 = from_bf16((uint16_t)(ap[r] >> 16)), x0 = from_bf16((uint16_t)ap[r]);
            for (int c = 0; c < NR; c++) {
                float s = step(acc[r][c], x1, from_bf16((uint16_t)(bp[c] >> 16)));
                acc[r][c] = step(s, x0, from_bf16((uint16_t)bp[c]));
            }
        }
    }
    for (int r = 0; r < MR; r++)
        memcpy(g + r * ldg, acc[r], sizeof acc[r]);
}

#if defined(__x86_64__)
#define TBF __attribute__((target("avx512f,avx512bw,avx512bf16")))
TBF static void ukr_avx512bf16(const uint32_t *a, const uint32_t *b, int64_t kp, float *g, int64_t ldg)
{
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
    __m512 c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    for (int64_t p = 0; p < kp; p++) {
        const uint32_t *ap = a + p * CB, *bp = b + p * CB;
        const __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
#define ROW(r)                                                                                                        \
    {                                                                                                                 \
        const __m512bh x = (__m512bh)_mm512_set1_epi32((int)ap[r]);                                                   \
        c##r##0 = _mm512_dpbf16_ps(c##r##0, x, b0);                                                                   \
        c##r##1 = _mm512_dpbf16_ps(c##r##1, x, b1);                                                                   \
    }
        ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5) ROW(6) ROW(7)
#undef ROW
    }
#define OUT(r)                                                                                                        \
    _mm512_storeu_ps(g + r * ldg, c##r##0);                                                                           \
    _mm512_storeu_ps(g + r * ldg + 16, c##r##1);
    OUT(0) OUT(1) OUT(2) OUT(3) OUT(4) OUT(5) OUT(6) OUT(7)
#undef OUT
}
#endif

static bool g_force_ref;

void lmp_gptq_bf16_force_portable(bool on)
{
    g_force_ref = on;
}

bool lmp_gptq_bf16_native(void)
{
#if defined(__x86_64__)
    return !g_force_ref && lmp_kernels_isa() == LMP_ISA_AVX512 && __builtin_cpu_supports("avx512bf16");
#else
    return false;
#endif
}

static ukr_fn pick(void)
{
#if defined(__x86_64__)
    if (lmp_gptq_bf16_native())
        return ukr_avx512bf16;
#endif
    return ukr_ref;
}

/* ---------------------------------------------------------------- the update ------ */

int lmp_gptq_syrk_acc_bf16(double *H, int64_t cols, const float *X, int64_t n, double alpha, double beta)
{
    if (n <= 0 || cols <= 0)
        return lmp_gptq_syrk_acc(H, cols, X, n, alpha, beta); /* beta alone */
    const ukr_fn ukr = pick();
    const int64_t nb = (cols + CB - 1) / CB, nch = (n + KC - 1) / KC;
    const int64_t kpc = KC / 2; /* pairs of a full chunk */
    const int64_t nt = (cols + ST - 1) / ST, npairs = nt * (nt + 1) / 2;
    /* the packed chunks, one after the other (chunk q at P + q * nb * kpc * CB) */
    uint32_t *P = malloc((size_t)(nch * nb * kpc * CB) * sizeof(uint32_t));
    if (!P)
        return lmp_err(LMP_ENOMEM, "out of memory for a Hessian update (%lld columns)", (long long)cols);
    int fail = 0;
    #pragma omp parallel
    {
        for (int64_t q = 0; q < nch; q++) {
            const int64_t k = min64(KC, n - q * KC);
            pack_chunk(P + q * nb * kpc * CB, X + q * KC * cols, cols, k, (k + 1) / 2, nb);
        }
        float *g = malloc((size_t)(ST * ST) * sizeof(float));
        if (!g) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < npairs; t++) {
            if (!g)
                continue;
            int64_t ti, tj;
            lmp_tile_pair_upper(t, nt, &ti, &tj);
            const int64_t i0 = ti * ST, j0 = tj * ST;
            const int64_t mi = min64(ST, cols - i0), mj = min64(ST, cols - j0);
            for (int64_t q = 0; q < nch; q++) {
                const int64_t k = min64(KC, n - q * KC), kp = (k + 1) / 2;
                const uint32_t *Pq = P + q * nb * kpc * CB;
                const double b = q == 0 ? beta : 1.0;
                /* the micro-tiles that hold upper-triangle elements of the tile */
                for (int64_t jc = 0; jc < mj; jc += NR) {
                    const uint32_t *bp = Pq + ((j0 + jc) / CB) * kp * CB;
                    for (int64_t ir = 0; ir < mi; ir += MR) {
                        if (ti == tj && ir > jc + NR - 1)
                            break;
                        const int64_t ci = i0 + ir;
                        ukr(Pq + (ci / CB) * kp * CB + ci % CB, bp, kp, g + ir * ST + jc, ST);
                    }
                }
                for (int64_t i = 0; i < mi; i++) {
                    double *h = H + (i0 + i) * cols + j0;
                    const float *gr = g + i * ST;
                    const int64_t js = ti == tj ? i : 0;
                    if (b == 0.0)
                        for (int64_t j = js; j < mj; j++)
                            h[j] = alpha * (double)gr[j];
                    else if (b == 1.0)
                        for (int64_t j = js; j < mj; j++)
                            h[j] += alpha * (double)gr[j];
                    else
                        for (int64_t j = js; j < mj; j++)
                            h[j] = b * h[j] + alpha * (double)gr[j];
                }
            }
        }
        free(g);
    }
    free(P);
    if (fail)
        return lmp_err(LMP_ENOMEM, "out of memory for a Hessian update (%lld columns)", (long long)cols);
    return LMP_OK;
}

int lmp_gptq_hessian_add_upper_bf16(double *H, int64_t cols, const float *X, int64_t n, int64_t *nsamples)
{
    if (n <= 0)
        return LMP_OK;
    double keep = (double)*nsamples / (double)(*nsamples + n);
    double alpha = 2.0 / (double)(*nsamples + n);
    int rc = lmp_gptq_syrk_acc_bf16(H, cols, X, n, alpha, keep);
    if (rc)
        return rc;
    *nsamples += n;
    return LMP_OK;
}
