/*
 * The quantizers' view of the lattice codebooks (lib/core/iq_grid.h): built from the
 * dequantization grids on first use, each grid point on the odd lattice 2l + 1 (l = the
 * rank of its value among the grid's values), a map from every lattice point to its grid
 * index or to its list of nearest grid points (all points at the `nwant` smallest squared
 * distances, in order of distance then index), as ggml's iq2xs_init_impl /
 * iq3xs_init_impl define them. Private to lib/quant.
 */
#ifndef LMP_IQ_LATTICE_H
#define LMP_IQ_LATTICE_H

#include "../core/iq_grid.h"

enum { LMP_IQL_IQ3XXS, LMP_IQL_IQ3S, LMP_IQL_IQ2XXS, LMP_IQL_IQ2XS, LMP_IQL_IQ2S, LMP_IQL_IQ1S, LMP_IQL_COUNT };

typedef struct {
    int n, dim, bits;        /* points, values per point (4 or 8), lattice bits per value */
    const int8_t *pos;       /* n * dim lattice values 2l + 1 */
    const int *map;          /* lattice index (value k's l at bits*k) -> point, or -(offset + 1) */
    const uint16_t *neigh;   /* at offset: count, then that many point indices */
} lmp_iq_lattice;

/* The lattice of one type, built on first use (thread safe); NULL when out of memory. */
const lmp_iq_lattice *lmp_iq_lattice_get(int which);

#endif
