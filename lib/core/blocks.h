/*
 * GGUF block layouts (ggml-common.h facts: sizes, field order). Shared by the dtype
 * table, the quantizers and the engine's kernels. Each struct's size is asserted.
 */
#ifndef LMP_BLOCKS_H
#define LMP_BLOCKS_H

#include <assert.h>
#include <stdint.h>

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } lmp_block_q4_0;                 /* 18 */
typedef struct { uint16_t d, m; uint8_t qs[QK4_1 / 2]; } lmp_block_q4_1;              /* 20 */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[QK5_0 / 2]; } lmp_block_q5_0;  /* 22 */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[QK5_1 / 2]; } lmp_block_q5_1; /* 24 */
typedef struct { uint16_t d; int8_t qs[QK8_0]; } lmp_block_q8_0;                      /* 34 */
typedef struct {
    uint8_t scales[QK_K / 16];
    uint8_t qs[QK_K / 4];
    uint16_t d, dmin;
} lmp_block_q2_k; /* 84 */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} lmp_block_q3_k; /* 110 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qs[QK_K / 2];
} lmp_block_q4_k; /* 144 */
typedef struct {
    uint16_t d, dmin;
    uint8_t scales[K_SCALE_SIZE];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} lmp_block_q5_k; /* 176 */
typedef struct {
    uint8_t ql[QK_K / 2];
    uint8_t qh[QK_K / 4];
    int8_t scales[QK_K / 16];
    uint16_t d;
} lmp_block_q6_k; /* 210 */

/* low-bit types (lib/quant/iquants.c, tquants.c) */
#define QK4_NL 32
#define QK_MXFP4 32
#define QK1_0 128
#define QK2_0 64
/* IQ4_NL / IQ4_XS code values (ggml kvalues_iq4nl) and MXFP4's E2M1 values doubled
 * (kvalues_mxfp4); initializers, so that each user gets its own table */
#define LMP_IQ4NL_VALUES {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
#define LMP_FP4_VALUES {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
typedef struct { uint16_t d; uint8_t qs[QK4_NL / 2]; } lmp_block_iq4_nl;                /* 18 */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} lmp_block_iq4_xs; /* 136 */
typedef struct { uint8_t e; uint8_t qs[QK_MXFP4 / 2]; } lmp_block_mxfp4;                /* 17 */
typedef struct {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; /* 5 trits a byte */
    uint8_t qh[QK_K / 64];                  /* 4 trits a byte */
    uint16_t d;
} lmp_block_tq1_0; /* 54 */
typedef struct { uint8_t qs[QK_K / 4]; uint16_t d; } lmp_block_tq2_0;                   /* 66 */
typedef struct { uint16_t d; uint8_t qs[QK1_0 / 8]; } lmp_block_q1_0;                   /* 18 */
typedef struct { uint16_t d; uint8_t qs[QK2_0 / 4]; } lmp_block_q2_0;                   /* 18 */
/* lattice types (lib/quant/iq3quants.c, iq2quants.c, iq1quants.c; codebooks lib/core/iq_grids.c) */
typedef struct { uint16_t d; uint8_t qs[3 * QK_K / 8]; } lmp_block_iq3_xxs;             /* 98 */
typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
} lmp_block_iq3_s; /* 110 */
typedef struct { uint16_t d; uint16_t qs[QK_K / 8]; } lmp_block_iq2_xxs;                /* 66 */
typedef struct { uint16_t d; uint16_t qs[QK_K / 8]; uint8_t scales[QK_K / 32]; } lmp_block_iq2_xs; /* 74 */
typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t scales[QK_K / 32];
} lmp_block_iq2_s; /* 82 */
typedef struct { uint16_t d; uint8_t qs[QK_K / 8]; uint16_t qh[QK_K / 32]; } lmp_block_iq1_s; /* 50 */
typedef struct { uint8_t qs[QK_K / 8]; uint8_t qh[QK_K / 16]; uint8_t scales[QK_K / 32]; } lmp_block_iq1_m; /* 56 */

static_assert(sizeof(lmp_block_q4_0) == 18, "q4_0 block size");
static_assert(sizeof(lmp_block_q4_1) == 20, "q4_1 block size");
static_assert(sizeof(lmp_block_q5_0) == 22, "q5_0 block size");
static_assert(sizeof(lmp_block_q5_1) == 24, "q5_1 block size");
static_assert(sizeof(lmp_block_q8_0) == 34, "q8_0 block size");
static_assert(sizeof(lmp_block_q2_k) == 84, "q2_k block size");
static_assert(sizeof(lmp_block_q3_k) == 110, "q3_k block size");
static_assert(sizeof(lmp_block_q4_k) == 144, "q4_k block size");
static_assert(sizeof(lmp_block_q5_k) == 176, "q5_k block size");
static_assert(sizeof(lmp_block_q6_k) == 210, "q6_k block size");
static_assert(sizeof(lmp_block_iq4_nl) == 18, "iq4_nl block size");
static_assert(sizeof(lmp_block_iq4_xs) == 136, "iq4_xs block size");
static_assert(sizeof(lmp_block_mxfp4) == 17, "mxfp4 block size");
static_assert(sizeof(lmp_block_tq1_0) == 54, "tq1_0 block size");
static_assert(sizeof(lmp_block_tq2_0) == 66, "tq2_0 block size");
static_assert(sizeof(lmp_block_q1_0) == 18, "q1_0 block size");
static_assert(sizeof(lmp_block_q2_0) == 18, "q2_0 block size");
static_assert(sizeof(lmp_block_iq3_xxs) == 98, "iq3_xxs block size");
static_assert(sizeof(lmp_block_iq3_s) == 110, "iq3_s block size");
static_assert(sizeof(lmp_block_iq2_xxs) == 66, "iq2_xxs block size");
static_assert(sizeof(lmp_block_iq2_xs) == 74, "iq2_xs block size");
static_assert(sizeof(lmp_block_iq2_s) == 82, "iq2_s block size");
static_assert(sizeof(lmp_block_iq1_s) == 50, "iq1_s block size");
static_assert(sizeof(lmp_block_iq1_m) == 56, "iq1_m block size");

#endif
