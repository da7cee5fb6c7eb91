/*
 * The quantizers' view of the lattice codebooks (iq_lattice.h), derived from the
 * dequantization grids of lib/core/iq_grids.c: levels by rank of value, the lattice map
 * and the nearest-point lists (ggml iq2xs_init_impl / iq3xs_init_impl: all points at the nwant
 * smallest distinct squared distances, ordered by distance then index; here by a
 * counting sort on the small integer distances instead of qsort, the same order).
 */
#include "iq_lattice.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static lmp_iq_lattice g_lat[LMP_IQL_COUNT];
static pthread_once_t g_once[LMP_IQL_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                               PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};

/* value k of point j as a signed byte */
static int grid_value(int which, int j, int k)
{
    switch (which) {
    case LMP_IQL_IQ3XXS: return (uint8_t)(lmp_iq3xxs_grid[j] >> 8 * k);
    case LMP_IQL_IQ3S: return (uint8_t)(lmp_iq3s_grid[j] >> 8 * k);
    case LMP_IQL_IQ2XXS: return (uint8_t)(lmp_iq2xxs_grid[j] >> 8 * k);
    case LMP_IQL_IQ2XS: return (uint8_t)(lmp_iq2xs_grid[j] >> 8 * k);
    case LMP_IQL_IQ2S: return (uint8_t)(lmp_iq2s_grid[j] >> 8 * k);
    default: return (int8_t)(uint8_t)(lmp_iq1s_grid[j] >> 8 * k);
    }
}

static void build(int which)
{
    static const int npts[] = {256, 512, 256, 512, 1024, 2048}, dims[] = {4, 4, 8, 8, 8, 8};
    static const int nwants[] = {2, 3, 2, 2, 1, 3}, nlev[] = {8, 8, 3, 3, 3, 3};
    const int n = npts[which], dim = dims[which], nwant = nwants[which];
    const int bits = dim == 4 ? 3 : 2;
    /* lattice indices: every value below nlev levels (iq3: 8^4; iq2/iq1: l <= 2 so the
     * largest index is 0b1010...10 + 1) */
    const int msize = dim == 4 ? 4096 : 43692;
    lmp_iq_lattice *L = &g_lat[which];
    int8_t *pos = malloc((size_t)n * dim);
    int *map = malloc(sizeof(int) * (size_t)msize);
    if (!pos || !map)
        goto fail;
    /* levels: distinct values in ascending order */
    int vals[16], nv = 0;
    for (int j = 0; j < n; j++)
        for (int k = 0; k < dim; k++) {
            int v = grid_value(which, j, k), f = 0;
            for (int t = 0; t < nv; t++)
                f |= vals[t] == v;
            if (!f && nv < 16)
                vals[nv++] = v;
        }
    for (int a = 1; a < nv; a++)
        for (int b = a; b > 0 && vals[b - 1] > vals[b]; b--) {
            int t = vals[b];
            vals[b] = vals[b - 1];
            vals[b - 1] = t;
        }
    if (nv != nlev[which])
        goto fail;
    for (int i = 0; i < msize; i++)
        map[i] = -1;
    for (int j = 0; j < n; j++) {
        int idx = 0;
        for (int k = 0; k < dim; k++) {
            int v = grid_value(which, j, k), l = 0;
            while (vals[l] != v)
                l++;
            pos[j * dim + k] = (int8_t)(2 * l + 1);
            idx |= l << bits * k;
        }
        map[idx] = j;
    }
    /* neighbour lists: counting sort of the points by squared distance */
    const int maxd = dim * 4 * nlev[which] * nlev[which] + 1;
    int *cnt = malloc(sizeof(int) * (size_t)(maxd + 1)), *d2 = malloc(sizeof(int) * (size_t)n);
    size_t cap = 1 << 16, used = 0;
    uint16_t *nb = malloc(cap * sizeof(uint16_t));
    if (!cnt || !d2 || !nb) {
        free(cnt), free(d2), free(nb);
        goto fail;
    }
    for (int i = 0; i < msize; i++) {
        if (map[i] >= 0)
            continue;
        int p[8];
        for (int k = 0; k < dim; k++)
            p[k] = 2 * ((i >> bits * k) & ((1 << bits) - 1)) + 1;
        memset(cnt, 0, sizeof(int) * (size_t)(maxd + 1));
        for (int j = 0; j < n; j++) {
            int s = 0;
            for (int k = 0; k < dim; k++) {
                int df = pos[j * dim + k] - p[k];
                s += df * df;
            }
            d2[j] = s < maxd ? s : maxd;
            cnt[d2[j]]++;
        }
        int have = 0, lim = -1, total = 0;
        for (int d = 0; d <= maxd && have < nwant; d++)
            if (cnt[d]) {
                have++;
                lim = d;
                total += cnt[d];
            }
        if (used + (size_t)total + 1 > cap) {
            while (used + (size_t)total + 1 > cap)
                cap *= 2;
            uint16_t *t = realloc(nb, cap * sizeof(uint16_t));
            if (!t) {
                free(cnt), free(d2), free(nb);
                goto fail;
            }
            nb = t;
        }
        map[i] = -(int)(used + 1);
        nb[used++] = (uint16_t)total;
        for (int d = 0; d <= lim; d++)
            if (cnt[d])
                for (int j = 0; j < n; j++)
                    if (d2[j] == d)
                        nb[used++] = (uint16_t)j;
    }
    free(cnt), free(d2);
    *L = (lmp_iq_lattice){n, dim, bits, pos, map, nb};
    return;
fail:
    free(pos), free(map);
    memset(L, 0, sizeof *L);
}

#define ONCE(k)                                                                                    \
    static void build_##k(void) { build(k); }
ONCE(0)
ONCE(1)
ONCE(2)
ONCE(3)
ONCE(4)
ONCE(5)

const lmp_iq_lattice *lmp_iq_lattice_get(int which)
{
    static void (*const fns[LMP_IQL_COUNT])(void) = {build_0, build_1, build_2, build_3, build_4, build_5};
    if (which < 0 || which >= LMP_IQL_COUNT)
        return NULL;
    pthread_once(&g_once[which], fns[which]);
    return g_lat[which].pos ? &g_lat[which] : NULL;
}
