/*
 * Reference (scalar, portable) kernels: the definition every SIMD variant is tested
 * against, and the fallback on CPUs without AVX2. Weight rows are dequantized through the
 * dtype traits table (lib/core/dtype.c), so any dtype with a to_f32 works here, including
 * rows added later (k-quants). Dot products accumulate in f32 in index order (no
 * -ffast-math, so the compiler keeps that order). Not tuned for speed.
 */
#include "kernels_internal.h"

#include "../core/blocks.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- weights */

static void gen_to_f32(lmp_dtype dt, const void *row, int64_t k0, int64_t n, float *dst)
{
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    const uint8_t *src = (const uint8_t *)row + (size_t)(k0 / t->block_size) * t->type_size;
    t->to_f32(src, dst, n);
}

static float gen_dot(lmp_dtype dt, const void *row, const float *x, int64_t n)
{
    float buf[256]; /* multiple of every block size (QK_K = 256) */
    float s = 0.0f;
    for (int64_t k0 = 0; k0 < n; k0 += 256) {
        int64_t c = n - k0 < 256 ? n - k0 : 256;
        gen_to_f32(dt, row, k0, c, buf);
        for (int64_t k = 0; k < c; k++)
            s += x[k0 + k] * buf[k];
    }
    return s;
}

/* Up to 4 rows of X against one weight row, each decoded chunk shared by the rows; per
 * row the arithmetic is exactly gen_dot's (same chunks, same order). */
static void gen_dotn(lmp_dtype dt, const void *row, const float *x, int64_t ldx, int nx,
                     int64_t n, float *out)
{
    float buf[256];
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k0 = 0; k0 < n; k0 += 256) {
        int64_t c = n - k0 < 256 ? n - k0 : 256;
        gen_to_f32(dt, row, k0, c, buf);
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

/* One trampoline set per dtype so the table holds plain function pointers. */
#define REF_DT(nm, DT)                                                                   \
    static void ref_to_##nm(const void *row, int64_t k0, int64_t n, float *dst)          \
    {                                                                                    \
        gen_to_f32(DT, row, k0, n, dst);                                                 \
    }                                                                                    \
    static float ref_dot_##nm(const void *row, const float *x, int64_t n)                \
    {                                                                                    \
        return gen_dot(DT, row, x, n);                                                   \
    }                                                                                    \
    static void ref_dotn_##nm(const void *row, const float *x, int64_t ldx, int nx,      \
                              int64_t n, float *out)                                     \
    {                                                                                    \
        gen_dotn(DT, row, x, ldx, nx, n, out);                                           \
    }
REF_DT(f32, LMP_DT_F32)
REF_DT(f16, LMP_DT_F16)
REF_DT(bf16, LMP_DT_BF16)
REF_DT(q4_0, LMP_DT_Q4_0)
REF_DT(q4_1, LMP_DT_Q4_1)
REF_DT(q5_0, LMP_DT_Q5_0)
REF_DT(q5_1, LMP_DT_Q5_1)
REF_DT(q8_0, LMP_DT_Q8_0)
REF_DT(q2_k, LMP_DT_Q2_K)
REF_DT(q3_k, LMP_DT_Q3_K)
REF_DT(q4_k, LMP_DT_Q4_K)
REF_DT(q5_k, LMP_DT_Q5_K)
REF_DT(q6_k, LMP_DT_Q6_K)

/* ---------------------------------------------------------------- rounded activations */

uint16_t lmp_k_bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: quiet, keep the sign and top bits */
        return (uint16_t)((u >> 16) | 0x40);
    if ((u & 0x7f800000u) == 0) /* zero or subnormal: signed zero */
        return (uint16_t)((u >> 16) & 0x8000);
    u += 0x7fffu + ((u >> 16) & 1);
    return (uint16_t)(u >> 16);
}

static void ref_round_bf16(const float *x, int64_t n, uint16_t *y)
{
    for (int64_t i = 0; i < n; i++)
        y[i] = lmp_k_bf16_round(x[i]);
}

static int ref_round_f16(const float *x, int64_t n, uint16_t *y)
{
    int over = 0;
    for (int64_t i = 0; i < n; i++) {
        y[i] = lmp_f32_to_f16(x[i]);
        over |= (y[i] & 0x7fff) == 0x7c00 && isfinite(x[i]);
    }
    return over;
}

static void ref_quant_q8(const float *x, int64_t n, void *xq)
{
    int8_t *q = xq;
    float *d = (float *)lmp_xq8_d(xq, n);
    int32_t *s = (int32_t *)lmp_xq8_s(xq, n);
    for (int64_t b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        float amax = 0.0f;
        for (int j = 0; j < 32; j++)
            amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        const float db = amax / 127.0f, id = db != 0.0f ? 1.0f / db : 0.0f;
        int32_t sum = 0;
        for (int j = 0; j < 32; j++) {
            int v = (int)nearbyintf(xb[j] * id);
            q[32 * b + j] = (int8_t)v;
            sum += v;
        }
        d[b] = db;
        s[b] = sum;
    }
}

/* Block integers of the Q8-activation dtypes: w[k] = d * q[k] exactly. */
static float ints_q8_0(const void *row, int64_t b, int8_t q[32])
{
    const lmp_block_q8_0 *blk = (const lmp_block_q8_0 *)row + b;
    memcpy(q, blk->qs, 32);
    return lmp_f16_to_f32(blk->d);
}

static float ints_q4_0(const void *row, int64_t b, int8_t q[32])
{
    const lmp_block_q4_0 *blk = (const lmp_block_q4_0 *)row + b;
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)((blk->qs[j] & 15) - 8);
        q[j + 16] = (int8_t)((blk->qs[j] >> 4) - 8);
    }
    return lmp_f16_to_f32(blk->d);
}

static float ints_q5_0(const void *row, int64_t b, int8_t q[32])
{
    const lmp_block_q5_0 *blk = (const lmp_block_q5_0 *)row + b;
    uint32_t qh;
    memcpy(&qh, blk->qh, 4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((blk->qs[j] & 15) | (((qh >> j) & 1) << 4)) - 16);
        q[j + 16] = (int8_t)(((blk->qs[j] >> 4) | (((qh >> (j + 16)) & 1) << 4)) - 16);
    }
    return lmp_f16_to_f32(blk->d);
}

/* The definition of the Q8-activation dot: per block the exact integer sum, then
 * s += (float)isum * (dw * dx), blocks in order. */
#define REF_DOTQ8(nm)                                                                        static float ref_dotq_##nm(const void *row, const void *xq, int64_t n)                   {                                                                                            const int8_t *xs = xq;                                                                   const float *xd = lmp_xq8_d(xq, n);                                                      float s = 0.0f;                                                                          for (int64_t b = 0; b < n / 32; b++) {                                                       int8_t q[32];                                                                            const float dw = ints_##nm(row, b, q);                                                   int32_t is = 0;                                                                          for (int j = 0; j < 32; j++)                                                                 is += (int32_t)q[j] * xs[32 * b + j];                                                s += (float)is * (dw * xd[b]);                                                       }                                                                                        return s;                                                                            }
REF_DOTQ8(q8_0)
REF_DOTQ8(q4_0)
REF_DOTQ8(q5_0)

/* q6_K (lib/core/blocks.h) against a Q8 activation row: the 6-bit codes minus 32 in
 * element order, per block of 32 the exact integer sum of its two 16-element sub-blocks
 * each times its int8 scale, then s += (float)is * (d * dx), blocks in order. */
static float ref_dotq_q6_k(const void *row, const void *xq, int64_t n)
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_q6_k *b = (const lmp_block_q6_k *)row + i;
        int8_t q[256];
        for (int h = 0; h < 2; h++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *ql = b->ql + 64 * h, *qh = b->qh + 32 * h;
                q[128 * h + l] = (int8_t)(((ql[l] & 15) | ((qh[l] & 3) << 4)) - 32);
                q[128 * h + l + 32] = (int8_t)(((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) - 32);
                q[128 * h + l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                q[128 * h + l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        const float d = lmp_f16_to_f32(b->d);
        for (int c = 0; c < 8; c++) {
            int32_t is = 0;
            for (int t = 0; t < 2; t++) {
                int32_t sub = 0;
                for (int j = 0; j < 16; j++)
                    sub += (int32_t)q[32 * c + 16 * t + j] * xs[256 * i + 32 * c + 16 * t + j];
                is += (int32_t)b->scales[2 * c + t] * sub;
            }
            s += (float)is * (d * xd[8 * i + c]);
        }
    }
    return s;
}

/* q4_K (lib/core/blocks.h) against a Q8 activation row: per sub-block j of 32 (one
 * activation block) its 6-bit scale sc and min m, the exact integer sums isum = sum q x
 * and xsum = sum x of the int8 activations, then
 * s += (float)isum * (d * sc * dx) - (float)xsum * (dmin * m * dx), blocks in order
 * (the weight is d * sc * q - dmin * m, as the dequantizer). */
static float ref_dotq_q4_k(const void *row, const void *xq, int64_t n)
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    float s = 0.0f;
    for (int64_t i = 0; i < n / 256; i++) {
        const lmp_block_q4_k *b = (const lmp_block_q4_k *)row + i;
        const float d = lmp_f16_to_f32(b->d), dmin = lmp_f16_to_f32(b->dmin);
        for (int j = 0; j < 8; j++) {
            int sc, m;
            if (j < 4) {
                sc = b->scales[j] & 63;
                m = b->scales[j + 4] & 63;
            } else {
                sc = (b->scales[j + 4] & 0xF) | ((b->scales[j - 4] >> 6) << 4);
                m = (b->scales[j + 4] >> 4) | ((b->scales[j] >> 6) << 4);
            }
            const uint8_t *q = b->qs + 32 * (j / 2);
            const int8_t *x = xs + 256 * i + 32 * j;
            int32_t is = 0, xsum = 0;
            for (int l = 0; l < 32; l++) {
                is += (int32_t)((j & 1) ? q[l] >> 4 : q[l] & 15) * x[l];
                xsum += x[l];
            }
            const float dx = xd[8 * i + j];
            s += (float)is * (d * (float)sc * dx) - (float)xsum * (dmin * (float)m * dx);
        }
    }
    return s;
}

/* bf16 (f16) weights against bf16 (f16) activations, widened exactly, summed in order. */
#define REF_DOTQ_HALF(nm, WIDEN)                                                         \
    static float ref_dotq_##nm(const void *row, const void *xa, int64_t n)               \
    {                                                                                    \
        const uint16_t *w = row, *x = xa;                                                \
        float s = 0.0f;                                                                  \
        for (int64_t i = 0; i < n; i++)                                                  \
            s += WIDEN(x[i]) * WIDEN(w[i]);                                              \
        return s;                                                                        \
    }
REF_DOTQ_HALF(bf16, lmp_bf16_to_f32)
REF_DOTQ_HALF(f16, lmp_f16_to_f32)

/* ---------------------------------------------------------------- packing, ukr */

void lmp_k_pack_w_generic(const float *src, int64_t lds, int rows, int64_t kc, int nr,
                          float *wp)
{
    for (int j = 0; j < rows; j++)
        for (int64_t k = 0; k < kc; k++)
            wp[k * nr + j] = src[j * lds + k];
    for (int j = rows; j < nr; j++)
        for (int64_t k = 0; k < kc; k++)
            wp[k * nr + j] = 0.0f;
}

void lmp_k_pack_x(const float *x, int64_t ldx, int rows, int64_t K, int mr, float *xp)
{
    for (int i = 0; i < rows; i++)
        for (int64_t k = 0; k < K; k++)
            xp[k * mr + i] = x[i * ldx + k];
    for (int i = rows; i < mr; i++)
        for (int64_t k = 0; k < K; k++)
            xp[k * mr + i] = 0.0f;
}

/* ---------------------------------------------------------------- helpers */

static float ref_h_dot_f32(const float *a, const float *b, int64_t n)
{
    float s = 0.0f;
    for (int64_t i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

static void ref_axpy_f32(float *y, float a, const float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        y[i] += a * x[i];
}

static void ref_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    double ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        ss += (double)x[i] * x[i];
    float scale = (float)(1.0 / sqrt(ss / (double)(n > 0 ? n : 1) + eps));
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * scale * w[i];
}

static void ref_silu_mul(float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

static void ref_gelu_mul(float *g, const float *u, int64_t n)
{
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[i];
    }
}

static void ref_softmax(float *x, int64_t n)
{
    if (n <= 0)
        return;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    float inv = (float)(1.0 / s);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

static double ref_logsumexp(const float *x, int64_t n)
{
    if (n <= 0)
        return -INFINITY;
    float mx = x[0];
    for (int64_t i = 1; i < n; i++)
        mx = x[i] > mx ? x[i] : mx;
    if (isinf(mx))
        return mx;
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += expf(x[i] - mx);
    return mx + log(s);
}

void lmp_kimpl_fill_ref(lmp_kimpl *k)
{
    memset(k, 0, sizeof *k);
    k->name = "ref";
#define SET(DT, nm) \
    k->dt[DT] = (lmp_kdt){.to_f32 = ref_to_##nm, .dot = ref_dot_##nm, .dotn = ref_dotn_##nm}
    SET(LMP_DT_F32, f32);
    SET(LMP_DT_F16, f16);
    SET(LMP_DT_BF16, bf16);
    SET(LMP_DT_Q4_0, q4_0);
    SET(LMP_DT_Q4_1, q4_1);
    SET(LMP_DT_Q5_0, q5_0);
    SET(LMP_DT_Q5_1, q5_1);
    SET(LMP_DT_Q8_0, q8_0);
    SET(LMP_DT_Q2_K, q2_k);
    SET(LMP_DT_Q3_K, q3_k);
    SET(LMP_DT_Q4_K, q4_k);
    SET(LMP_DT_Q5_K, q5_k);
    SET(LMP_DT_Q6_K, q6_k);
#undef SET
    k->dt[LMP_DT_BF16].dotq = ref_dotq_bf16;
    k->dt[LMP_DT_F16].dotq = ref_dotq_f16;
    k->dt[LMP_DT_Q8_0].dotq = ref_dotq_q8_0;
    k->dt[LMP_DT_Q4_0].dotq = ref_dotq_q4_0;
    k->dt[LMP_DT_Q5_0].dotq = ref_dotq_q5_0;
    k->dt[LMP_DT_Q6_K].dotq = ref_dotq_q6_k;
    k->dt[LMP_DT_Q4_K].dotq = ref_dotq_q4_k;
    k->quant_q8 = ref_quant_q8;
    k->to_bf16 = ref_round_bf16;
    k->to_f16 = ref_round_f16;
    k->dot_f32 = ref_h_dot_f32;
    k->axpy_f32 = ref_axpy_f32;
    k->rmsnorm = ref_rmsnorm;
    k->silu_mul = ref_silu_mul;
    k->gelu_mul = ref_gelu_mul;
    k->softmax = ref_softmax;
    k->logsumexp = ref_logsumexp;
}
