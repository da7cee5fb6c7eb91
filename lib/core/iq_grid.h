/*
 * Lattice codebooks of the IQ2 / IQ3 / IQ1 GGUF types: the dequantization grids (data,
 * iq_grids.c) and the IQ2 sign table. They are part of each block format's definition, so
 * they live in lib/core, read by the engine kernels (lib/infer/kernels_lowbit*) and the
 * quantizers (lib/quant, whose search lattices lib/quant/iq_lattice.h builds from them).
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

#endif
