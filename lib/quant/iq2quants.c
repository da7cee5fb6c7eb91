/*
 * 2-bit lattice GGUF types: IQ2_XXS (2.06 bpw: 256-point grid of 8 values, 7 sign bits
 * per 8 with even parity, a 4-bit scale per 32), IQ2_XS (2.31 bpw: 512-point grid,
 * 4-bit scales per 16) and IQ2_S (2.56 bpw: 1024-point grid, 8 free sign bits).
 *
 * Facts followed (ggml-common.h layouts, ggml-quants.c quantize_row_iq2_xxs_impl,
 * quantize_row_iq2_xs_impl, quantize_row_iq2_s_impl and the dequantizers, re-derived):
 * signs split off (XXS / XS flip the least important value of an odd 8-group); the
 * lattice is l = nearest_int((id x - 1) / 2) in [0, 2] per value, a group of 8 off the
 * grid goes to its best neighbour (squared error weighted by sqrt(w)); trial inverse
 * scales (5 + 0.1 t) / max (XS, S: t = -9..9) or (5 + 0.1 t) / eff_max (XXS: t = -6..6,
 * eff_max = 3 times the scale that make_qp_quants gives the 32 values); the trial with
 * the largest (sum w x q)^2 / sum w q^2 wins and groups are re-fitted at the winning
 * scale (XXS: all groups, XS / S: those that were off the grid). Block scales in 4 bits
 * against d = max_scale / 31 (IQ2_S stores d * 0.9875). Weights: qw sqrt(sigma2 + x^2)
 * with sigma2 the mean square of the 256 (IQ2_S: twice it); IQ2_S without qw uses
 * sigma2 / 4 + x^2. ggml refuses IQ2_XXS / IQ2_XS without weights; lmpress's from_f32
 * (used only for tests and conversions, never by `quantize`, which requires an imatrix
 * as llama-quantize does) takes unit weights for them.
 */
#include "quant.h"
#include "lowbit.h"
#include "iq_lattice.h"
#include "../core/blocks.h"

#include <float.h>
#include <math.h>
#include <string.h>

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* ggml iq2_find_best_neighbour (8 values) */
static int best_neighbour8(const lmp_iq_lattice *G, const uint16_t *nb, const float *xval, const float *w, float scale,
                           int8_t *L)
{
    float best = FLT_MAX;
    int gi = -1;
    for (int j = 1; j <= nb[0]; j++) {
        const int8_t *pg = G->pos + (size_t)nb[j] * 8;
        float d2 = 0;
        for (int i = 0; i < 8; i++) {
            float q = pg[i], diff = scale * q - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            gi = nb[j];
        }
    }
    const int8_t *pg = G->pos + (size_t)gi * 8;
    for (int i = 0; i < 8; i++)
        L[i] = (int8_t)((pg[i] - 1) / 2);
    return gi;
}

/* lattice rounding of one group of 8 at inverse scale id, then its grid point (or the
 * best neighbour at `scale`); returns whether it was on the grid */
static bool round_group(const lmp_iq_lattice *G, float id, float scale, const float *xval, const float *waux, int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 8; i++) {
        L[i] = (int8_t)clampi(lmp_q_nint(0.5f * (id * xval[i] - 1)), 0, 2);
        u |= L[i] << 2 * i;
    }
    if (G->map[u] >= 0)
        return true;
    best_neighbour8(G, G->neigh - G->map[u] - 1, xval, waux, scale, L);
    return false;
}

static int grid_index(const lmp_iq_lattice *G, const int8_t *L)
{
    int u = 0;
    for (int i = 0; i < 8; i++)
        u |= L[i] << 2 * i;
    return G->map[u];
}

static void wsums(int n, const float *weight, const float *xval, const int8_t *L, float *sqx, float *sq2)
{
    float sumqx = 0, sumq2 = 0;
    for (int i = 0; i < n; i++) {
        float w = weight[i], q = 2 * L[i] + 1;
        sumqx += w * xval[i] * q;
        sumq2 += w * q * q;
    }
    *sqx = sumqx;
    *sq2 = sumq2;
}

/* signs of an 8-group; with parity, the least important value is flipped so that the
 * count of negatives is even (its sign is implied) */
static uint8_t group_signs(const float *xb, const float *weight, float *xval, bool parity)
{
    int nflip = 0;
    uint8_t s = 0;
    for (int i = 0; i < 8; i++) {
        if (xb[i] >= 0)
            xval[i] = xb[i];
        else {
            xval[i] = -xb[i];
            nflip++;
            s |= (uint8_t)(1 << i);
        }
    }
    if (parity && nflip % 2) {
        int imin = 0;
        float mn = weight[0] * xb[0] * xb[0];
        for (int i = 1; i < 8; i++) {
            float ax = weight[i] * xb[i] * xb[i];
            if (ax < mn) {
                mn = ax;
                imin = i;
            }
        }
        xval[imin] = -xval[imin];
        s ^= (uint8_t)(1 << imin);
    }
    return parity ? s & 127 : s;
}

static float sum_sq(const float *x)
{
    float s = 0;
    for (int i = 0; i < QK_K; i++)
        s += x[i] * x[i];
    return s;
}

/* qw sqrt(sigma2 + x^2); unit weights (qw NULL) give sqrt(...) exactly, as 1 * s = s */
static void req_weights(int n, const float *xb, const float *qw, float sigma2, float *weight)
{
    for (int i = 0; i < n; i++)
        weight[i] = qw ? qw[i] * sqrtf(sigma2 + xb[i] * xb[i]) : sqrtf(sigma2 + xb[i] * xb[i]);
}

/* ---------------------------------------------------------------- IQ2_XXS */

static void iq2_xxs_from_w(const float *x, void *dst, int64_t n, const float *qw_row)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ2XXS);
    lmp_block_iq2_xxs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float *qwb = qw_row ? qw_row + QK_K * ibl : NULL;
        uint32_t q2[16];
        float scales[8], weight[32], waux[32], xval[32], max_scale = 0;
        int8_t L[32], Laux[32];
        y[ibl].d = 0;
        memset(q2, 0, sizeof q2);
        const float sigma2 = sum_sq(xbl) / QK_K;
        for (int ib = 0; ib < 8; ib++) {
            const float *xb = xbl + 32 * ib;
            req_weights(32, xb, qwb ? qwb + 32 * ib : NULL, sigma2, weight);
            for (int i = 0; i < 32; i++)
                waux[i] = sqrtf(weight[i]);
            uint8_t bs[4];
            for (int k = 0; k < 4; k++)
                bs[k] = group_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, true);
            float max = xval[0];
            for (int i = 1; i < 32; i++)
                max = max > xval[i] ? max : xval[i];
            if (max < 1e-15f) {
                scales[ib] = 0;
                memset(L, 0, 32);
                continue;
            }
            float scale = lmp_q_make_qp(32, 4, xval, (uint8_t *)L, weight), eff_max = scale * 3;
            if (eff_max <= 0) {
                scales[ib] = 0;
                memset(L, 0, 32);
                continue;
            }
            float best = 0;
            for (int is = -6; is <= 6; is++) {
                float id = (5 + is * 0.1f) / eff_max, this_scale = 1 / id;
                for (int k = 0; k < 4; k++)
                    round_group(G, id, this_scale, xval + 8 * k, waux + 8 * k, Laux + 8 * k);
                float sumqx, sumq2;
                wsums(32, weight, xval, Laux, &sumqx, &sumq2);
                if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                    scale = sumqx / sumq2;
                    best = scale * sumqx;
                    memcpy(L, Laux, 32);
                }
            }
            if (scale > 0) {
                float id = 1 / scale;
                for (int k = 0; k < 4; k++) {
                    int8_t Lg[8];
                    round_group(G, id, scale, xval + 8 * k, waux + 8 * k, Lg);
                    /* ggml keeps the group's previous levels when the rounding lands on
                     * the grid and reads them back from the grid point: the same */
                    memcpy(L + 8 * k, Lg, 8);
                }
                float sumqx, sumq2;
                wsums(32, weight, xval, L, &sumqx, &sumq2);
                if (sumq2 > 0)
                    scale = sumqx / sumq2;
            }
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 4; k++)
                    bs[k] = (uint8_t)(~bs[k] & 127);
            }
            for (int k = 0; k < 4; k++) {
                q2[2 * ib] |= (uint32_t)grid_index(G, L + 8 * k) << 8 * k;
                q2[2 * ib + 1] |= (uint32_t)bs[k] << 7 * k;
            }
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        float d = max_scale / 31;
        y[ibl].d = lmp_f32_to_f16(d);
        float id = 1 / d;
        for (int ib = 0; ib < 8; ib++)
            q2[2 * ib + 1] |= (uint32_t)clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 15) << 28;
        memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

/* ---------------------------------------------------------------- IQ2_XS / IQ2_S */

/* One 16-value sub-block (two groups of 8), shared by IQ2_XS and IQ2_S. */
static float search16(const lmp_iq_lattice *G, const float *xval, const float *weight, const float *waux, float max,
                      int8_t *L)
{
    int8_t Laux[16];
    bool on[2] = {true, true}, on_aux[2];
    float best = 0, scale = max / 5;
    for (int is = -9; is <= 9; is++) {
        float id = (5 + is * 0.1f) / max, this_scale = 1 / id;
        for (int k = 0; k < 2; k++)
            on_aux[k] = round_group(G, id, this_scale, xval + 8 * k, waux + 8 * k, Laux + 8 * k);
        float sumqx, sumq2;
        wsums(16, weight, xval, Laux, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, 16);
            on[0] = on_aux[0], on[1] = on_aux[1];
        }
    }
    if ((!on[0] || !on[1]) && scale > 0) {
        float id = 1 / scale;
        for (int k = 0; k < 2; k++)
            if (!on[k])
                round_group(G, id, scale, xval + 8 * k, waux + 8 * k, L + 8 * k);
        float sumqx, sumq2;
        wsums(16, weight, xval, L, &sumqx, &sumq2);
        if (sumq2 > 0)
            scale = sumqx / sumq2;
    }
    return scale;
}

static void iq2_xs_from_w(const float *x, void *dst, int64_t n, const float *qw_row)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ2XS);
    lmp_block_iq2_xs *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        const float *xbl = x + QK_K * ibl;
        const float *qwb = qw_row ? qw_row + QK_K * ibl : NULL;
        uint16_t q2[32];
        float scales[16], weight[16], waux[16], xval[16], max_scale = 0;
        int8_t L[16];
        y[ibl].d = 0;
        memset(q2, 0, sizeof q2);
        memset(y[ibl].scales, 0, sizeof y[ibl].scales);
        const float sigma2 = sum_sq(xbl) / QK_K;
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            req_weights(16, xb, qwb ? qwb + 16 * ib : NULL, sigma2, weight);
            for (int i = 0; i < 16; i++)
                waux[i] = sqrtf(weight[i]);
            uint8_t bs[2];
            for (int k = 0; k < 2; k++)
                bs[k] = group_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, true);
            float max = xval[0];
            for (int i = 1; i < 16; i++)
                max = max > xval[i] ? max : xval[i];
            memset(L, 0, 16);
            if (max < 1e-15f) {
                scales[ib] = 0;
                continue;
            }
            float scale = search16(G, xval, weight, waux, max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 2; k++)
                    bs[k] = (uint8_t)(~bs[k] & 127);
            }
            for (int k = 0; k < 2; k++)
                q2[2 * ib + k] = (uint16_t)(grid_index(G, L + 8 * k) | (bs[k] << 9));
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale) {
            memset(y[ibl].qs, 0, sizeof y[ibl].qs);
            continue;
        }
        float d = max_scale / 31;
        y[ibl].d = lmp_f32_to_f16(d);
        float id = 1 / d;
        for (int ib = 0; ib < 16; ib++) {
            int l = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 15);
            if (ib % 2 == 0)
                y[ibl].scales[ib / 2] = (uint8_t)l;
            else
                y[ibl].scales[ib / 2] |= (uint8_t)(l << 4);
        }
        memcpy(y[ibl].qs, q2, sizeof q2);
    }
}

static void iq2_s_from_w(const float *x, void *dst, int64_t n, const float *qw_row)
{
    const lmp_iq_lattice *G = lmp_iq_lattice_get(LMP_IQL_IQ2S);
    lmp_block_iq2_s *y = dst;
    for (int64_t ibl = 0; ibl < n / QK_K; ibl++) {
        memset(&y[ibl], 0, sizeof y[ibl]);
        const float *xbl = x + QK_K * ibl;
        float scales[16], weight[16], waux[16], xval[16], max_scale = 0;
        int8_t L[16];
        const float sigma2 = 2 * sum_sq(xbl) / QK_K;
        for (int ib = 0; ib < 16; ib++) {
            const float *xb = xbl + 16 * ib;
            if (qw_row) {
                const float *qw = qw_row + QK_K * ibl + 16 * ib;
                for (int i = 0; i < 16; i++)
                    weight[i] = qw[i] * sqrtf(sigma2 + xb[i] * xb[i]);
            } else
                for (int i = 0; i < 16; i++)
                    weight[i] = 0.25f * sigma2 + xb[i] * xb[i];
            for (int i = 0; i < 16; i++)
                waux[i] = sqrtf(weight[i]);
            uint8_t bs[2];
            for (int k = 0; k < 2; k++)
                bs[k] = group_signs(xb + 8 * k, weight + 8 * k, xval + 8 * k, false);
            float max = xval[0];
            for (int i = 1; i < 16; i++)
                max = max > xval[i] ? max : xval[i];
            memset(L, 0, 16);
            if (max < 1e-8f) {
                scales[ib] = 0;
                continue;
            }
            float scale = search16(G, xval, weight, waux, max, L);
            if (scale < 0) {
                scale = -scale;
                for (int k = 0; k < 2; k++)
                    bs[k] = (uint8_t)~bs[k];
            }
            for (int k = 0; k < 2; k++) {
                const int gi = grid_index(G, L + 8 * k), i8 = 2 * ib + k;
                y[ibl].qs[i8] = (uint8_t)(gi & 255);
                y[ibl].qh[i8 / 4] |= (uint8_t)((gi >> 8) << 2 * (i8 % 4));
                y[ibl].qs[QK_K / 8 + i8] = bs[k];
            }
            scales[ib] = scale;
            max_scale = max_scale > scale ? max_scale : scale;
        }
        if (!max_scale)
            continue;
        float d = max_scale / 31;
        y[ibl].d = lmp_f32_to_f16(d * 0.9875f);
        float id = 1 / d;
        for (int ib = 0; ib < 16; ib++) {
            int l = clampi(lmp_q_nint(0.5f * (id * scales[ib] - 1)), 0, 15);
            if (ib % 2 == 0)
                y[ibl].scales[ib / 2] = (uint8_t)l;
            else
                y[ibl].scales[ib / 2] |= (uint8_t)(l << 4);
        }
    }
}

void lmp_iq2_xxs_from_f32(const float *x, void *dst, int64_t n) { iq2_xxs_from_w(x, dst, n, NULL); }
void lmp_iq2_xs_from_f32(const float *x, void *dst, int64_t n) { iq2_xs_from_w(x, dst, n, NULL); }
void lmp_iq2_s_from_f32(const float *x, void *dst, int64_t n) { iq2_s_from_w(x, dst, n, NULL); }

/* ---------------------------------------------------------------- dequantizers */

static inline void put8(float *y, float dl, uint64_t g, uint8_t signs)
{
    for (int j = 0; j < 8; j++)
        y[j] = dl * (uint8_t)(g >> 8 * j) * (signs & (1 << j) ? -1.f : 1.f);
}

void lmp_iq2_xxs_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq2_xxs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            uint32_t a[2];
            memcpy(a, b[i].qs + 4 * ib, 8);
            const float db = d * (0.5f + (a[1] >> 28)) * 0.25f;
            for (int l = 0; l < 4; l++, y += 8)
                put8(y, db, lmp_iq2xxs_grid[(a[0] >> 8 * l) & 255], lmp_iq_ksigns((a[1] >> 7 * l) & 127));
        }
    }
}

void lmp_iq2_xs_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq2_xs *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        for (int ib = 0; ib < 8; ib++) {
            const float db[2] = {d * (0.5f + (b[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (b[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8) {
                const uint16_t q = b[i].qs[4 * ib + l];
                put8(y, db[l / 2], lmp_iq2xs_grid[q & 511], lmp_iq_ksigns(q >> 9));
            }
        }
    }
}

void lmp_iq2_s_to_f32(const void *src, float *y, int64_t n)
{
    const lmp_block_iq2_s *b = src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = lmp_f16_to_f32(b[i].d);
        const uint8_t *qs = b[i].qs, *signs = b[i].qs + QK_K / 8;
        for (int ib = 0; ib < 8; ib++, qs += 4, signs += 4) {
            const float db[2] = {d * (0.5f + (b[i].scales[ib] & 0xf)) * 0.25f,
                                 d * (0.5f + (b[i].scales[ib] >> 4)) * 0.25f};
            for (int l = 0; l < 4; l++, y += 8)
                put8(y, db[l / 2], lmp_iq2s_grid[qs[l] | ((b[i].qh[ib] << (8 - 2 * l)) & 0x300)], signs[l]);
        }
    }
}


lmp_weighted_fn lmp_iq2_weighted(lmp_dtype t)
{
    switch (t) {
    case LMP_DT_IQ2_XXS: return iq2_xxs_from_w;
    case LMP_DT_IQ2_XS: return iq2_xs_from_w;
    case LMP_DT_IQ2_S: return iq2_s_from_w;
    default: return NULL;
    }
}
