/*
 * 1-bit lattice GGUF types: IQ1_S (1.56 bpw: 2048-point grid of 8 values in {-1, 0, 1},
 * a shift of +-1/8 and a 3-bit scale per 32) and IQ1_M (1.75 bpw: shifts per 8, 3-bit
 * scales per 16, the f16 super-block scale spread over the top nibbles of the scales).
 *
 * Facts followed (ggml-common.h layouts, ggml-quants.c quantize_row_iq1_s_impl,
 * quantize_row_iq1_m_impl and the dequantizers, re-derived): per block (32 / 16 values)
 * the values are sorted (qsort on the value, as ggml: ties fall as the C library's qsort
 * leaves them, the same library here) and every split into three runs (levels -1, 0, +1
 * shifted by +-1/8) is scored by (sum w q x)^2 / sum w q^2 from prefix sums (IQ1_S) or
 * direct sums over the four shift combinations of the two 8-groups (IQ1_M); groups off
 * the grid take the neighbour nearest in weighted squared error; the block scales go to
 * 3 bits against d = max_scale / 15 (IQ1_S stores d * 1.125; IQ1_M re-fits d over the
 * whole super-block and stores d * 1.1125). Weights: qw sqrt(sigma2 + x^2), sigma2 twice
 * the mean square of the 256; IQ1_M without qw uses x^2. ggml refuses IQ1_S without
 * weights; lmpress's from_f32 takes unit weights for it (tests and conversions only:
 * `quantize` requires an imatrix as llama-quantize does).
 */
#include "quant.h"
#include "lowbit.h"
#include "iq_lattice.h"
#include "../core/blocks.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define DELTA 0.125f

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

typedef struct {
    float v;
    int i;
} vpair;

static int cmp_vpair(const void *a, const void *b)
{
    const float l = ((const vpair *)a)->v, r = ((const vpair *)b)->v;
    return l < r ? -1 : l > r ? 1 : 0;
}

/* ggml iq1_find_best_neighbour2: the neighbour with the least weighted squared error of
 * scale * xg[level] against x; writes its levels to L */
static int best_neighbour(const lmp_iq_lattice *G, const uint16_t *nb, const float *xval, const float *w, float scale,
                          const float *xg, int8_t *L)
{
    float best = FLT_MAX;
    int gi = -1;
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = G->pos + (size_t)nb[j] * 8;
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float q = xg[(pg[i] - 1) / 2], diff = scale * q - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            gi = nb[j];
        }
    }
    if (gi < 0) /* only with non-finite input: keep the first neighbour */
        gi = nb[1];
    const int8_t *pg = G->pos + (size_t)gi * 8;
    for (int i = 0; i < 8; i++)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return gi;
}

static int group_index(const lmp_iq_lattice *G, int8_t *L, const float *xb, const float *w, float scale,
                       const float *xg, bool *on)
{
    int u = 0;
    for (int j = 0; j < 8; j++)
        u |= L[j] << 2 * j;
    if (G->map[u] >= 0)
        return G->map[u];
    *on = false;
    return best_neighbour(G, G->neigh - G->map[u] - 1, xb, w, scale, xg, L);
}

static float sigma2_of(const float *xbl)
{
    float s = 0;
    for (int i = 0; i < QK_K; i++)
        s += xbl[i] * xbl[i];
    return 2 * s / QK_K;
}

/* ---------------------------------------------------------------- IQ1_S */

static void iq1_s_from_w(const float *x, void *dst, int64_t n, const float *qw_row)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ1S);
    const float x_p[3] = {-1 + DELTA, DELTA, 1 + DELTA}, x_m[3] = {-1 - DELTA, -DELTA, 1 - DELTA};
    lmp_block_iq1_s *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        y[ibl].d = 0;
        memset(y[ibl].qs, 0, sizeof y[ibl].qs);
        memset(y[ibl].qh, 0, sizeof y[ibl].qh);
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = sigma2_of(xbl);
        float scales[8], weight[32], sumx[33], sumw[33], max_scale = 0;
        int8_t L[32], shifts[8];
        vpair pr[32];
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib;
            const float *qw = qw_row ? qw_row + QK_K * ibl + 32 * ib : NULL;
            for (int i = 0; i < 32; i++)
                weight[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : sqrtf(sigma2 + xb[i] * xb[i]);
            float max = fabsf(xb[0]);
            for (int i = 1; i < 32; i++)
                max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
            if (max < 1e-12f) {
                scales[ib] = 0;
                shifts[ib] = 1;
                continue;
            }
            for (int j = 0; j < 32; j++)
                pr[j] = (vpair){xb[j], j};
            qsort(pr, 32, sizeof pr[0], cmp_vpair);
            sumx[0] = sumw[0] = 0;
            for (int j = 0; j < 32; j++) {
                int i = pr[j].i;
                sumx[j + 1] = sumx[j] + weight[i] * xb[i];
                sumw[j + 1] = sumw[j] + weight[i];
            }
            float best = -FLT_MAX, scale = max;
            int b1 = -1, b2 = -1, shift = 0;
            for (int i1 = 0; i1 <= 32; i1++)
                for (int i2 = i1; i2 <= 32; i2++) {
                    for (int s = 0; s < 2; s++) {
                        const float *xs = s ? x_m : x_p;
                        float sumqx = (sumx[i1] - sumx[0]) * xs[0] + (sumx[i2] - sumx[i1]) * xs[1] +
                                      (sumx[32] - sumx[i2]) * xs[2];
                        float sumq2 = (sumw[i1] - sumw[0]) * xs[0] * xs[0] + (sumw[i2] - sumw[i1]) * xs[1] * xs[1] +
                                      (sumw[32] - sumw[i2]) * xs[2] * xs[2];
                        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                            scale = sumqx / sumq2;
                            best = scale * sumqx;
                            b1 = i1, b2 = i2, shift = s ? -1 : 1;
                        }
                    }
                }
            if (b1 < 0 || b2 < 0 || shift == 0) {
                scales[ib] = 0;
                shifts[ib] = 1;
                continue;
            }
            for (int j = 0; j < 32; j++)
                L[pr[j].i] = (int8_t)(j < b1 ? 0 : j < b2 ? 1 : 2);
            if (scale < 0) {
                for (int j = 0; j < 32; j++)
                    L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                shift = -shift;
            }
            const float *xx = shift == 1 ? x_p : x_m;
            bool on = true;
            int index[4];
            for (int k = 0; k < 4; k++)
                index[k] = group_index(G, L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx, &on);
            if (!on) {
                float sumqx = 0, sumq2 = 0;
                for (int k = 0; k < 4; k++) {
                    const int8_t *pg = G->pos + (size_t)index[k] * 8;
                    for (int j = 0; j < 8; j++) {
                        float w = weight[8 * k + j], q = xx[(pg[j] - 1) / 2];
                        sumqx += w * q * xb[8 * k + j];
                        sumq2 += w * q * q;
                    }
                }
                if (sumqx > 0 && sumq2 > 0)
                    scale = sumqx / sumq2;
            }
            uint16_t h = 0;
            for (int k = 0; k < 4; k++) {
                y[ibl].qs[4 * ib + k] = (uint8_t)(index[k] & 255);
                h |= (uint16_t)((index[k] >> 8) << 3 * k);
            }
            y[ibl].qh[ib] = h;
            scales[ib] = scale;
            shifts[ib] = (int8_t)shift;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        float d = max_scale / 15;
        y[ibl].d = lmp_f32_to_f16(d * 1.125f);
        float id = 1 / d;
        for (int ib = 0; ib < 8; ib++) {
            int l = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 7);
            if (shifts[ib] == -1)
                l |= 8;
            y[ibl].qh[ib] |= (uint16_t)(l << 12);
        }
    }
}

/* ---------------------------------------------------------------- IQ1_M */

static void iq1_m_from_w(const float *x, void *dst, int64_t n, const float *qw_row)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ1S);
    const float x_p[3] = {-1 + DELTA, DELTA, 1 + DELTA}, x_m[3] = {-1 - DELTA, -DELTA, 1 - DELTA};
    static const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    lmp_block_iq1_m *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        memset(y[ibl].qs, 0, sizeof y[ibl].qs);
        memset(y[ibl].qh, 0, sizeof y[ibl].qh);
        memset(y[ibl].scales, 0, sizeof y[ibl].scales);
        const float *xbl = x + QK_K * ibl;
        const float sigma2 = sigma2_of(xbl);
        float scales[16], weight[16], max_scale = 0;
        int8_t L[16], shifts[16];
        vpair pr[16];
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            const float *qw = qw_row ? qw_row + QK_K * ibl + 16 * ib : NULL;
            for (int i = 0; i < 16; i++)
                weight[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
            float max = fabsf(xb[0]);
            for (int i = 1; i < 16; i++)
                max = max > fabsf(xb[i]) ? max : fabsf(xb[i]);
            if (max < 1e-7f) {
                scales[ib] = 0;
                shifts[ib] = 0;
                continue;
            }
            for (int j = 0; j < 16; j++)
                pr[j] = (vpair){xb[j], j};
            qsort(pr, 16, sizeof pr[0], cmp_vpair);
            float best = -FLT_MAX, scale = max;
            int b1 = -1, b2 = -1, bk = -1;
            for (int i1 = 0; i1 <= 16; i1++)
                for (int i2 = i1; i2 <= 16; i2++) {
                    float sumqx[4] = {0, 0, 0, 0}, sumq2[4] = {0, 0, 0, 0};
                    for (int j = 0; j < 16; j++) {
                        const int i = pr[j].i, lev = j < i1 ? 0 : j < i2 ? 1 : 2;
                        for (int k = 0; k < 4; k++) {
                            const float *xs = i < 8 ? (k < 2 ? x_p : x_m) : (k % 2 == 0 ? x_p : x_m);
                            sumqx[k] += weight[i] * xs[lev] * xb[i];
                            sumq2[k] += weight[i] * xs[lev] * xs[lev];
                        }
                    }
                    for (int k = 0; k < 4; k++)
                        if (sumq2[k] > 0 && sumqx[k] * sumqx[k] > best * sumq2[k]) {
                            scale = sumqx[k] / sumq2[k];
                            best = scale * sumqx[k];
                            b1 = i1, b2 = i2, bk = k;
                        }
                }
            if (b1 < 0 || b2 < 0 || bk < 0) {
                scales[ib] = 0;
                shifts[ib] = 0;
                continue;
            }
            for (int j = 0; j < 16; j++)
                L[pr[j].i] = (int8_t)(j < b1 ? 0 : j < b2 ? 1 : 2);
            if (scale < 0) {
                for (int j = 0; j < 16; j++)
                    L[j] = (int8_t)(2 - L[j]);
                scale = -scale;
                bk = 3 - bk;
            }
            bool on = true;
            int index[2];
            for (int k = 0; k < 2; k++) {
                const float *xx = k == 0 ? (bk < 2 ? x_p : x_m) : (bk % 2 == 0 ? x_p : x_m);
                index[k] = group_index(G, L + 8 * k, xb + 8 * k, weight + 8 * k, scale, xx, &on);
            }
            if (!on) {
                float sumqx = 0, sumq2 = 0;
                for (int k = 0; k < 2; k++) {
                    const float *xx = k == 0 ? (bk < 2 ? x_p : x_m) : (bk % 2 == 0 ? x_p : x_m);
                    const int8_t *pg = G->pos + (size_t)index[k] * 8;
                    for (int j = 0; j < 8; j++) {
                        float w = weight[8 * k + j], q = xx[(pg[j] - 1) / 2];
                        sumqx += w * q * xb[8 * k + j];
                        sumq2 += w * q * q;
                    }
                }
                if (sumqx > 0 && sumq2 > 0)
                    scale = sumqx / sumq2;
            }
            y[ibl].qs[2 * ib] = (uint8_t)(index[0] & 255);
            y[ibl].qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
            y[ibl].qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
            scales[ib] = scale;
            shifts[ib] = (int8_t)bk;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        uint16_t sc[4] = {0, 0, 0, 0};
        float d = max_scale / 15, id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int ib = 0; ib < 16; ib++) {
            int l = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 7);
            sc[ib / 4] |= (uint16_t)(l << 3 * (ib % 4));
            y[ibl].qh[ib] |= masks[shifts[ib]];
            const float *xb = xbl + 16 * ib;
            const float *qw = qw_row ? qw_row + QK_K * ibl + 16 * ib : NULL;
            for (int i = 0; i < 16; i++)
                weight[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : xb[i] * xb[i];
            for (int k = 0; k < 2; k++) {
                const float *xx = k == 0 ? (shifts[ib] < 2 ? x_p : x_m) : (shifts[ib] % 2 == 0 ? x_p : x_m);
                const int gi = y[ibl].qs[2 * ib + k] + ((y[ibl].qh[ib] << (8 - 4 * k)) & 0x700);
                const int8_t *pg = G->pos + (size_t)gi * 8;
                for (int j = 0; j < 8; j++) {
                    float w = weight[8 * k + j], q = xx[(pg[j] - 1) / 2] * (2 * l + 1);
                    sumqx += w * q * xb[8 * k + j];
                    sumq2 += w * q * q;
                }
            }
        }
        if (sumq2 > 0)
            d = sumqx / sumq2;
        const uint16_t s = lmp_f32_to_f16(d * 1.1125f);
        sc[0] |= (uint16_t)((s & 0x000f) << 12);
        sc[1] |= (uint16_t)((s & 0x00f0) << 8);
        sc[2] |= (uint16_t)((s & 0x0f00) << 4);
        sc[3] |= (uint16_t)(s & 0xf000);
        memcpy(y[ibl].scales, sc, sizeof sc);
    }
}

void lmp_iq1_s_from_f32(const float *x, void *dst, int64_t n) { iq1_s_from_w(x, dst, n, NULL); }
void lmp_iq1_m_from_f32(const float *x, void *dst, int64_t n) { iq1_m_from_w(x, dst, n, NULL); }

/* ---------------------------------------------------------------- dequantizers */

void lmp_iq1_s_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq1_s *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        const uint8_t *qs = b[i].qs;
        for (int ib = 0; ib < 8; ib++, qs += 4) {
            const uint16_t h = b[i].qh[ib];
            const float dl = d * (2 * ((h >> 12) & 7) + 1), delta = h & 0x8000 ? -DELTA : DELTA;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint64_t g = lmp_iq1s_grid[qs[l] | (((h >> 3 * l) & 7) << 8)];
                for (int j = 0; j < 8; j++)
                    y[j] = dl * ((int8_t)(uint8_t)(g >> 8 * j) + delta);
            }
        }
    }
}

void lmp_iq1_m_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq1_m *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        uint16_t sc[4];
        memcpy(sc, b[i].scales, 8);
        const uint16_t s = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) | (sc[3] & 0xf000));
        const float d = lmp_f16_to_f32(s);
        const uint8_t *qs = b[i].qs, *qh = b[i].qh;
        for (int ib = 0; ib < 8; ib++, qs += 4, qh += 2) {
            const float dl[2] = {d * (2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 0x7) + 1),
                                 d * (2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 0x7) + 1)};
            const int idx[4] = {qs[0] | ((qh[0] << 8) & 0x700), qs[1] | ((qh[0] << 4) & 0x700),
                                qs[2] | ((qh[1] << 8) & 0x700), qs[3] | ((qh[1] << 4) & 0x700)};
            const float delta[4] = {qh[0] & 0x08 ? -DELTA : DELTA, qh[0] & 0x80 ? -DELTA : DELTA,
                                    qh[1] & 0x08 ? -DELTA : DELTA, qh[1] & 0x80 ? -DELTA : DELTA};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint64_t g = lmp_iq1s_grid[idx[l]];
                for (int j = 0; j < 8; j++)
                    y[j] = dl[l / 2] * ((int8_t)(uint8_t)(g >> 8 * j) + delta[l]);
            }
        }
    }
}


lmp_weighted_fn lmp_iq1_weighted(lmp_dtype t)
{
    switch (t) {
    case LMP_DT_IQ1_S: return iq1_s_from_w;
    case LMP_DT_IQ1_M: return iq1_m_from_w;
    default: return NULL;
    }
}
