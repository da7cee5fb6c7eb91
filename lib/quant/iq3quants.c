/*
 * 3-bit lattice GGUF types: IQ3_XXS (3.06 bpw: 256-point grid of 4 values, 7 sign bits
 * per 8 values with even parity, a 4-bit scale per 32) and IQ3_S (3.44 bpw: 512-point
 * grid, 8 free sign bits, 4-bit scales per 32 in pairs).
 *
 * Facts followed (ggml-common.h layouts, ggml-quants.c quantize_row_iq3_xxs_impl,
 * quantize_row_iq3_s_impl and the dequantizers, re-derived here). Per 32-value block:
 * weights w = qw sqrt(sigma2 + x^2) (sigma2 = 2 * mean square of the 256) or x^2; the
 * signs are split off (IQ3_XXS flips the least important value of an 8-group with an odd
 * count of negatives so the count is even: the eighth sign is implied); for 31 (XXS) or 19
 * (S) trial inverse scales (15 + 0.2 t) / max, each group of 4 is rounded to the lattice
 * l = nearest_int((id x - 1) / 2) in [0, 7] and, off the grid, replaced by the best of its
 * neighbours (squared error weighted by sqrt(w)); the trial with the largest
 * (sum w x q)^2 / sum w q^2 wins; groups off the grid are re-fitted once at the winning
 * scale. The block scales are then coded in 4 bits against d = max_scale / 31 stored as
 * d * 1.0125 (XXS) or d * 1.033 (S). Every expression keeps ggml's order (no FMA), so
 * the bytes are ggml's; ggml's IQ3_S skips advancing its qs / signs cursors after an
 * all-zero block, and so does this code (the bytes say so).
 */
#include "quant.h"
#include "lowbit.h"
#include "iq_lattice.h"
#include "../core/blocks.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define EPS_XXS 1e-8f

/* Best grid point among the neighbours of an off-grid lattice point: writes its levels
 * to L (ggml iq3_find_best_neighbour). */
static int best_neighbour(const lmp_iq_lattice *G, const uint16_t *nb, const float *xval, const float *w, float scale,
                          int8_t *L)
{
    const int dim = G->dim;
    float best = FLT_MAX;
    int gi = -1;
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = G->pos + (size_t)nb[j] * dim;
        float d2 = 0;
        for (int i = 0; i < dim; i++) {
            float q = pg[i], diff = scale * q - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            gi = nb[j];
        }
    }
    const int8_t *pg = G->pos + (size_t)gi * dim;
    for (int i = 0; i < dim; i++)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return gi;
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* One 32-value block's search (both types). xval: |x| (sign-adjusted), weight and waux =
 * sqrt(weight). Returns the scale (>= 0 after the sign fix-up by the caller) and L. */
static float search_block(const lmp_iq_lattice *G, int ntry, bool refit_all, const float *xval, const float *weight,
                          const float *waux, float max, int8_t *L)
{
    enum { KMAXQ = 8 };
    int8_t Laux[32];
    bool on[8], on_aux[8];
    float best = 0, scale = max / (2 * KMAXQ - 1);
    for (int k = 0; k < 8; k++)
        on[k] = !refit_all; /* ggml's initial values: XXS true, S false */
    for (int is = -ntry; is <= ntry; is++) {
        float id = (2 * KMAXQ - 1 + is * 0.2f) / max, this_scale = 1 / id;
        for (int k = 0; k < 8; k++) {
            for (int i = 0; i < 4; i++) {
                int l = lmp_q_nint(0.5f * (id * xval[4 * k + i] - 1));
                Laux[4 * k + i] = (int8_t)clampi(l, 0, KMAXQ - 1);
            }
            int u = 0;
            for (int i = 0; i < 4; i++)
                u |= Laux[4 * k + i] << 3 * i;
            on_aux[k] = G->map[u] >= 0;
            if (G->map[u] < 0)
                best_neighbour(G, G->neigh - G->map[u] - 1, xval + 4 * k, waux + 4 * k, this_scale, Laux + 4 * k);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; i++) {
            float w = weight[i], q = 2 * Laux[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 32);
            memcpy(on, on_aux, sizeof on);
        }
    }
    int off = 0;
    for (int k = 0; k < 8; k++)
        off += !on[k];
    if (off > 0 && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 8; k++) {
            if (on[k] && !refit_all)
                continue;
            int u = 0;
            for (int i = 0; i < 4; i++)
                u |= clampi(lmp_q_nint(0.5f * (id * xval[4 * k + i] - 1)), 0, KMAXQ - 1) << 3 * i;
            int gi = G->map[u];
            if (gi < 0)
                gi = best_neighbour(G, G->neigh - G->map[u] - 1, xval + 4 * k, waux + 4 * k, scale, L + 4 * k);
            const int8_t *pg = G->pos + (size_t)gi * 4;
            for (int i = 0; i < 4; i++)
                L[4 * k + i] = (int8_t)((pg[i] - 1) / 2);
        }
        float sumqx = 0, sumq2 = 0;
        for (int i = 0; i < 32; i++) {
            float w = weight[i], q = 2 * L[i] + 1;
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

static void block_weights(const float *xb, const float *qw, float sigma2, float *weight, float *waux)
{
    if (qw)
        for (int i = 0; i < 32; i++)
            weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
    else
        for (int i = 0; i < 32; i++)
            weight[i] = xb[i] * xb[i];
    for (int i = 0; i < 32; i++)
        waux[i] = sqrtf(weight[i]);
}

static float super_sigma2(const float *xbl)
{
    float sumx2 = 0;
    for (int i = 0; i < QK_K; i++)
        sumx2 += xbl[i] * xbl[i];
    return 2 * sumx2 / QK_K;
}

/* ---------------------------------------------------------------- IQ3_XXS */

static void iq3_xxs_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ3XXS);
    lmp_block_iq3_xxs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        uint8_t q3[3 * QK_K / 8];
        uint32_t sas[8];
        float scales[8], weight[32], waux[32], xval[32], max_scale = 0;
        int8_t L[32];
        memset(q3, 0, sizeof q3);
        memset(sas, 0, sizeof sas);
        y[ibl].d = 0;
        const float sigma2 = super_sigma2(xbl);
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib;
            block_weights(xb, qw ? qw + QK_K * ibl + 32 * ib : NULL, sigma2, weight, waux);
            uint8_t bsigns[4];
            for (int k = 0; k < 4; k++) {
                int nflip = 0;
                uint8_t s = 0;
                for (int i = 0; i < 8; i++) {
                    if (xb[8 * k + i] >= 0)
                        xval[8 * k + i] = xb[8 * k + i];
                    else {
                        xval[8 * k + i] = -xb[8 * k + i];
                        nflip++;
                        s |= (uint8_t)(1 << i);
                    }
                }
                if (nflip % 2) {
                    int imin = 0;
                    float mn = weight[8 * k] * xb[8 * k] * xb[8 * k];
                    for (int i = 1; i < 8; i++) {
                        float ax = weight[8 * k + i] * xb[8 * k + i] * xb[8 * k + i];
                        if (ax < mn) {
                            mn = ax;
                            imin = i;
                        }
                    }
                    xval[8 * k + imin] = -xval[8 * k + imin];
                    s ^= (uint8_t)(1 << imin);
                }
                bsigns[k] = s & 127;
            }
            float max = xval[0];
            for (int i = 1; i < 32; i++)
                max = max > xval[i] ? max : xval[i];
            memset(L, 0, 32);
            if (max < EPS_XXS) {
                scales[ib] = 0;
                continue;
            }
            float scale = search_block(G, 15, false, xval, weight, waux, max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++)
                    bsigns[k] = (uint8_t)(~bsigns[k] & 127);
            }
            for (int k = 0; k < 8; k++) {
                int u = 0;
                for (int i = 0; i < 4; i++)
                    u |= L[4 * k + i] << 3 * i;
                q3[8 * ib + k] = (uint8_t)G->map[u];
            }
            sas[ib] = bsigns[0] | (uint32_t)bsigns[1] << 7 | (uint32_t)bsigns[2] << 14 | (uint32_t)bsigns[3] << 21;
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        float d = max_scale / 31;
        y[ibl].d = lmp_f32_to_f16(d * 1.0125f);
        float id = 1 / d;
        for (int ib = 0; ib < 8; ib++) {
            int l = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 15);
            sas[ib] |= (uint32_t)l << 28;
        }
        memcpy(q3 + QK_K / 4, sas, sizeof sas);
        memcpy(y[ibl].qs, q3, sizeof q3);
    }
}

void lmp_iq3_xxs_from_f32(const float *x, void *dst, int64_t n) { iq3_xxs_from_w(x, dst, n, NULL); }

void lmp_iq3_xxs_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq3_xxs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        const uint8_t *qs = b[i].qs, *sas = b[i].qs + QK_K / 4;
        for (int ib = 0; ib < 8; ib++, qs += 8) {
            uint32_t a;
            memcpy(&a, sas + 4 * ib, 4);
            const float db = d * (0.5f + (a >> 28)) * 0.5f;
            for (int l = 0; l < 4; l++, y += 8) {
                const uint8_t signs = lmp_iq_ksigns((a >> 7 * l) & 127);
                const uint32_t g1 = lmp_iq3xxs_grid[qs[2 * l]], g2 = lmp_iq3xxs_grid[qs[2 * l + 1]];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (uint8_t)(g1 >> 8 * j) * (signs & (1 << j) ? -1.f : 1.f);
                    y[j + 4] = db * (uint8_t)(g2 >> 8 * j) * (signs & (1 << (j + 4)) ? -1.f : 1.f);
                }
            }
        }
    }
}

/* ---------------------------------------------------------------- IQ3_S */

static void iq3_s_from_w(const float *x, void *dst, int64_t n, const float *qw)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ3S);
    lmp_block_iq3_s *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        memset(&y[ibl], 0, sizeof y[ibl]);
        uint8_t *qs = y[ibl].qs, *qh = y[ibl].qh, *signs = y[ibl].signs;
        const float *xbl = x + QK_K * ibl;
        float scales[8], weight[32], waux[32], xval[32], max_scale = 0;
        int8_t L[32];
        const float sigma2 = super_sigma2(xbl);
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib;
            block_weights(xb, qw ? qw + QK_K * ibl + 32 * ib : NULL, sigma2, weight, waux);
            uint8_t bsigns[4];
            for (int k = 0; k < 4; k++) {
                uint8_t s = 0;
                for (int i = 0; i < 8; i++) {
                    if (xb[8 * k + i] >= 0)
                        xval[8 * k + i] = xb[8 * k + i];
                    else {
                        xval[8 * k + i] = -xb[8 * k + i];
                        s |= (uint8_t)(1 << i);
                    }
                }
                bsigns[k] = s;
            }
            float max = xval[0];
            for (int i = 1; i < 32; i++)
                max = max > xval[i] ? max : xval[i];
            memset(L, 0, 32);
            if (!max) { /* ggml leaves its qs / signs cursors where they are */
                scales[ib] = 0;
                continue;
            }
            float scale = search_block(G, 9, true, xval, weight, waux, max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++)
                    bsigns[k] = (uint8_t)~bsigns[k];
            }
            for (int k = 0; k < 8; k++) {
                int u = 0;
                for (int i = 0; i < 4; i++)
                    u |= L[4 * k + i] << 3 * i;
                const int gi = G->map[u];
                qs[k] = (uint8_t)(gi & 255);
                qh[(ib * 8 + k) / 8] |= (uint8_t)((gi >> 8) << ((ib * 8 + k) % 8));
            }
            qs += 8;
            memcpy(signs, bsigns, 4);
            signs += 4;
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        float d = max_scale / 31;
        y[ibl].d = lmp_f32_to_f16(d * 1.033f);
        float id = 1 / d;
        for (int ib = 0; ib < 8; ib += 2) {
            int l1 = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 15);
            int l2 = clampi(lmp_q_nint(0.5f * (id * scales[ib + 1] - 1)), 0, 15);
            y[ibl].scales[ib / 2] = (uint8_t)(l1 | (l2 << 4));
        }
    }
}

void lmp_iq3_s_from_f32(const float *x, void *dst, int64_t n) { iq3_s_from_w(x, dst, n, NULL); }

void lmp_iq3_s_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq3_s *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        const uint8_t *qs = b[i].qs, *qh = b[i].qh, *signs = b[i].signs;
        for (int ib = 0; ib < 8; ib++, qs += 8, signs += 4) {
            const int sc = ib % 2 ? b[i].scales[ib / 2] >> 4 : b[i].scales[ib / 2] & 0xf;
            const float db = d * (1 + 2 * sc);
            const uint8_t h = qh[ib];
            for (int l = 0; l < 4; l++, y += 8) {
                const uint32_t g1 = lmp_iq3s_grid[qs[2 * l] | ((h << (8 - 2 * l)) & 256)];
                const uint32_t g2 = lmp_iq3s_grid[qs[2 * l + 1] | ((h << (7 - 2 * l)) & 256)];
                for (int j = 0; j < 4; j++) {
                    y[j] = db * (uint8_t)(g1 >> 8 * j) * (signs[l] & (1 << j) ? -1.f : 1.f);
                    y[j + 4] = db * (uint8_t)(g2 >> 8 * j) * (signs[l] & (1 << (j + 4)) ? -1.f : 1.f);
                }
            }
        }
    }
}


lmp_weighted_fn lmp_iq3_weighted(lmp_dtype t)
{
    switch (t) {
    case LMP_DT_IQ3_XXS: return iq3_xxs_from_w;
    case LMP_DT_IQ3_S: return iq3_s_from_w;
    default: return NULL;
    }
}
