/*
 * Lattice codebooks of the IQ2 / IQ3 / IQ1 GGUF types (private to lib/quant and the
 * engine kernels): the dequantization grids (data, iq_grids.c) and, built from them on
 * first use, what the quantizers search: each grid point on the odd lattice 2l + 1
 * (l = the rank of its value among the grid's values), a map from every lattice point
 * to its grid index or to its list of nearest grid points (all points at the `nwant`
 * smallest squared distances, in order of distance then index), as ggml's
 * iq2xs_init_impl / iq3xs_init_impl define them.
 */
#ifndef LMP_IQ_GRID_H
#define LMP_IQ_GRID_H

#include <stdint.h>

extern const uint64_t lmp_iq2xxs_grid[256];
extern const uint64_t lmp_iq2xs_grid[512];
extern const uint64_t lmp_iq2s_grid[1024];
extern const uint32_t lmp_iq3xxs_grid[256];
extern const uint32_t lmp_iq3s_grid[512];
extern const uint64_t lmp_iq1s_grid[2048];

/* ksigns_iq2xs: 7 sign bits and an eighth that makes the count even. */
static inline uint8_t lmp_iq_ksigns(int i) { return (uint8_t)(i | (__builtin_parity((unsigned)i) << 7)); }

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
