/*
 * Kernel driver: variant selection (ref / AVX2 / AVX-512, chosen once, LMP_ISA overrides)
 * and the threading and cache blocking of lmp_gemm. The arithmetic lives in the variant
 * files (kernels_ref.c, kernels_avx2.c, kernels_avx512.c); this file only decides which
 * rows of W and X each thread touches, and in which order.
 *
 * Two regimes:
 *  - M < LMP_K_SMALL_M (decoding, M == 1, small batches): memory bound. Each thread
 *    takes a contiguous range of W rows and streams each row once through the variant's
 *    fused dequantize-and-dot, four rows of X at a time (X stays in cache).
 *  - M >= LMP_K_SMALL_M (prompt processing): compute bound, Goto/BLIS-style blocking.
 *    X is packed once per call (all threads) into row tiles of mr rows, k-major, laid
 *    out by K block of LMP_K_KC then tile, so one K block of up to 512 rows is contiguous
 *    and stays in L2. W is cut into strips of nr rows; per K block a strip is
 *    dequantized to f32 and packed k-major into a per-thread buffer (KC x nr floats,
 *    never a full f32 copy of W) and every row tile of X streams past it through the
 *    variant's mr x nr register tile (outer-product FMAs: 12 x 32 on AVX-512, 6 x 16 on
 *    AVX2). Threads own contiguous ranges of (strip, row block) tasks and work through
 *    them in groups of 128 output columns, K blocks outermost within a group.
 *    Measured on the 2-core Zen 4 dev VM (one thread, M = 512): 91-101 GFLOP/s for every
 *    dtype, within 0-8% of OpenBLAS sgemm on the same f32 shapes.
 * Choice for q8_0/q4_0 (measured, see tests/bench/bench_gemm.c): weight panels are
 * dequantized to f32 and run through the f32 micro-kernel; X is not quantized. The
 * dequantization is paid once per KC x nr panel and shared by up to 512 rows of X, so
 * q4_0/q8_0 run at the f32 rate (about OpenBLAS), activations stay exact (no 8-bit
 * rounding of X), and one micro-kernel serves every dtype, k-quants included. An int8
 * path (X quantized to q8 blocks, vpdpbusd) could be up to ~2x faster on paper on Zen 4
 * (VNNI is double-pumped there, and per-block scaling costs FMAs); not done yet.
 *
 * Determinism: threads split only output columns (W strips) and row tiles of X, never
 * the K reduction; every element is bias + (sum over K block 0) + (sum over block 1) ...
 * in the same order whatever the split, so results are bitwise identical for any thread
 * count.
 */
#include "kernels_internal.h"

#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Below this many rows of X the row-streaming path wins (measured on Zen 4, 2048x2048:
 * decoding each weight once for 4 rows of X beats packing panels for a 12-row tile up to
 * M = 16; from M = 24 on the tiled path is faster). */
#define LMP_K_SMALL_M 16
/* Rows of X sharing one packed W panel: 512 x KC floats = 512 KiB stays in L2. */
#define LMP_K_MB_ROWS 512
/* Output columns a thread finishes before moving on (Y: 512 x 128 floats = 256 KiB). */
#define LMP_K_GROUP_COLS 128

static int64_t g_small_m = LMP_K_SMALL_M; /* LMP_GEMM_SMALL_M overrides (tuning) */
static lmp_kimpl g_impl[4];
static bool g_avail[4];
static const lmp_kimpl *g_cur;
static lmp_isa g_cur_isa;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static lmp_isa best_isa(void)
{
    return g_avail[LMP_ISA_AVX512] ? LMP_ISA_AVX512
           : g_avail[LMP_ISA_AVX2] ? LMP_ISA_AVX2
                                   : LMP_ISA_REF;
}

static void select_isa(lmp_isa isa)
{
    if (isa == LMP_ISA_AUTO || isa < 0 || isa > LMP_ISA_AVX512)
        isa = best_isa();
    while (!g_avail[isa]) /* a variant this CPU lacks falls back to the next simpler one */
        isa--;
    g_cur_isa = isa;
    g_cur = &g_impl[isa];
}

static void init_once(void)
{
    lmp_kimpl_fill_ref(&g_impl[LMP_ISA_REF]);
    g_avail[LMP_ISA_REF] = true;
#if defined(__x86_64__)
    __builtin_cpu_init();
    g_avail[LMP_ISA_AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("f16c");
    g_avail[LMP_ISA_AVX512] = g_avail[LMP_ISA_AVX2] && __builtin_cpu_supports("avx512f") &&
                              __builtin_cpu_supports("avx512bw") &&
                              __builtin_cpu_supports("avx512vl") &&
                              __builtin_cpu_supports("avx512dq");
    g_impl[LMP_ISA_AVX2] = g_impl[LMP_ISA_REF];
    lmp_kimpl_fill_avx2(&g_impl[LMP_ISA_AVX2]);
    g_impl[LMP_ISA_AVX512] = g_impl[LMP_ISA_AVX2];
    lmp_kimpl_fill_avx512(&g_impl[LMP_ISA_AVX512]);
#endif
    const char *sm = getenv("LMP_GEMM_SMALL_M");
    if (sm && *sm)
        g_small_m = strtol(sm, NULL, 10);
    lmp_isa isa = LMP_ISA_AUTO;
    const char *e = getenv("LMP_ISA");
    if (e && *e) {
        if (!strcmp(e, "ref"))
            isa = LMP_ISA_REF;
        else if (!strcmp(e, "avx2"))
            isa = LMP_ISA_AVX2;
        else if (!strcmp(e, "avx512"))
            isa = LMP_ISA_AVX512;
        else if (strcmp(e, "auto"))
            lmp_warn("LMP_ISA=%s: expected ref, avx2, avx512 or auto; using auto", e);
    }
    select_isa(isa);
}

static inline const lmp_kimpl *impl(void)
{
    pthread_once(&g_once, init_once);
    return g_cur;
}

lmp_isa lmp_kernels_set_isa(lmp_isa isa)
{
    pthread_once(&g_once, init_once);
    select_isa(isa);
    return g_cur_isa;
}

lmp_isa lmp_kernels_isa(void)
{
    pthread_once(&g_once, init_once);
    return g_cur_isa;
}

const char *lmp_isa_name(lmp_isa isa)
{
    switch (isa) {
    case LMP_ISA_AUTO: return "auto";
    case LMP_ISA_REF: return "ref";
    case LMP_ISA_AVX2: return "avx2";
    case LMP_ISA_AVX512: return "avx512";
    }
    return "?";
}

bool lmp_gemm_supports(lmp_dtype dt)
{
    if ((int)dt < 0 || dt >= LMP_DT_COUNT)
        return false;
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    return t && t->to_f32 && (t->is_float || t->is_quant) && impl()->dt[dt].dot;
}

/* ---------------------------------------------------------------- gemm */

/* Packed-X scratch of the calling thread, grown on demand and reused across calls. */
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

void lmp_kernels_scratch_free(void)
{
    free(tl_xp);
    tl_xp = NULL;
    tl_xp_cap = 0;
}

static void gemm_rows(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                      int64_t M, const lmp_kdt *d)
{
    const int64_t N = W->rows, K = W->cols;
    const uint8_t *w = W->data;
    const size_t rb = W->row_bytes;
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        const void *row = w + (size_t)n * rb;
        float b = bias ? bias[n] : 0.0f;
        if (M == 1 || !d->dotn) {
            for (int64_t m = 0; m < M; m++)
                Y[m * N + n] = d->dot(row, X + m * K, K) + b;
            continue;
        }
        for (int64_t m = 0; m < M; m += 4) {
            float out[4];
            int nx = (int)(M - m < 4 ? M - m : 4);
            d->dotn(row, X + m * K, K, nx, K, out);
            for (int r = 0; r < nx; r++)
                Y[(m + r) * N + n] = out[r] + b;
        }
    }
}

static void gemm_tiled(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                       int64_t M, const lmp_kimpl *k, const lmp_kdt *d, float *xp)
{
    const int64_t N = W->rows, K = W->cols;
    const int mr = k->mr, nr = k->nr;
    const int64_t mtiles = (M + mr - 1) / mr, nstrips = (N + nr - 1) / nr;
    const uint8_t *w = W->data;
    const size_t rb = W->row_bytes;

    /* Row blocks of X: as large as L2 allows, smaller when there are too few W strips to
     * keep every thread busy (this changes who computes what, never the arithmetic). */
    int64_t tpb = (LMP_K_MB_ROWS + mr - 1) / mr;
    int nth = omp_get_max_threads();
    if (nstrips < 4 * nth) {
        int64_t want_blocks = (4 * nth + nstrips - 1) / nstrips;
        int64_t t2 = (mtiles + want_blocks - 1) / want_blocks;
        if (t2 < tpb)
            tpb = t2 > 0 ? t2 : 1;
    }
    const int64_t nmb = (mtiles + tpb - 1) / tpb, ntasks = nstrips * nmb;

    const int64_t mpad = mtiles * mr;

#pragma omp parallel
    {
        /* xp holds X by K block, then row tile: xp + k0 * mpad + t * mr * kc is tile t of
         * block k0 (kc x mr, k-major), so one K block of every tile is contiguous in L2 */
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
        /* implicit barrier: xp complete */

        /* Tasks (W strip s, row block b) = s * nmb + b, split into contiguous ranges as
         * schedule(static) would. Each thread takes its tasks in groups of about 128
         * output columns and walks K blocks outermost inside a group: the group's Y
         * (M x 128 floats) and one K block of X (M x KC) share L2, and X is streamed
         * from L3 once per group rather than once per strip. */
        const int nt = omp_get_num_threads(), me = omp_get_thread_num();
        const int64_t task0 = ntasks * me / nt, task1 = ntasks * (me + 1) / nt;
        const int64_t group = nr >= LMP_K_GROUP_COLS ? 1 : LMP_K_GROUP_COLS / nr;
        /* per-thread panels, 2 x 32 KiB on the stack */
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
                int64_t packed = -1; /* strip now in wp */
                for (int64_t task = g0; task < g1; task++) {
                    const int64_t s = task / nmb, b = task % nmb, n0 = s * nr;
                    const int nv = (int)(N - n0 < nr ? N - n0 : nr);
                    if (s != packed) {
                        /* f32 rows go through the copy too: transposing straight from W
                         * reads rows K floats apart, which alias in L1 when K is a
                         * power of two */
                        for (int r = 0; r < nv; r++)
                            d->to_f32(w + (size_t)(n0 + r) * rb, k0, kc, wtmp + r * LMP_K_KC);
                        k->pack_w(wtmp, LMP_K_KC, nv, kc, wp);
                        packed = s;
                    }
                    const int64_t t0 = b * tpb, t1 = t0 + tpb < mtiles ? t0 + tpb : mtiles;
                    for (int64_t t = t0; t < t1; t++) {
                        const int m = (int)(M - t * mr < mr ? M - t * mr : mr);
                        k->ukr(kc, xp + k0 * mpad + t * mr * kc, wp, Y + t * mr * N + n0, N, m,
                               nv);
                    }
                }
            }
        }
    }
}

void lmp_gemm(float *Y, const float *X, const lmp_wmat *W, const float *bias, int64_t M)
{
    const lmp_kimpl *k = impl();
    const int64_t N = W->rows, K = W->cols;
    if (M <= 0 || N <= 0)
        return;
    const bool ok = lmp_gemm_supports(W->dtype);
    if (K == 0 || !ok) {
        /* nothing to sum (an unsupported dtype is a caller bug: lmp_gemm_supports) */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                Y[m * N + n] = bias ? bias[n] : 0.0f;
        if (!ok)
            lmp_warn("lmp_gemm: no kernel for weights of dtype %d", (int)W->dtype);
        return;
    }
    const lmp_kdt *d = &k->dt[W->dtype];
    if (k->ukr && M >= g_small_m) {
        const int64_t mtiles = (M + k->mr - 1) / k->mr;
        float *xp = xp_buffer((size_t)(mtiles * k->mr * K));
        if (xp) {
            gemm_tiled(Y, X, W, bias, M, k, d, xp);
            return;
        }
        /* no memory for the packed copy of X: the streaming path needs none */
    }
    gemm_rows(Y, X, W, bias, M, d);
}

/* ---------------------------------------------------------------- small kernels */

void lmp_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    impl()->rmsnorm(y, x, w, n, eps);
}

void lmp_silu_mul(float *gate_inout, const float *up, int64_t n)
{
    impl()->silu_mul(gate_inout, up, n);
}

float lmp_dot_f32(const float *a, const float *b, int64_t n) { return impl()->dot_f32(a, b, n); }

void lmp_axpy_f32(float *y, float a, const float *x, int64_t n) { impl()->axpy_f32(y, a, x, n); }

void lmp_softmax_f32(float *x, int64_t n) { impl()->softmax(x, n); }

double lmp_logsumexp_f32(const float *x, int64_t n) { return impl()->logsumexp(x, n); }
