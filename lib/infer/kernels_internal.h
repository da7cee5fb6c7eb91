/*
 * Private interface between the kernel driver (kernels.c) and its variants
 * (kernels_ref.c, kernels_avx2.c, kernels_avx512.c). Each variant fills an lmp_kimpl;
 * NULL entries fall back to the next simpler variant (avx512 -> avx2 -> ref) when the
 * driver merges the tables at start-up, so a dtype or helper needs only a reference to
 * work everywhere, and SIMD rows are added where they pay.
 */
#ifndef LMP_KERNELS_INTERNAL_H
#define LMP_KERNELS_INTERNAL_H

#include "kernels.h"

/* Largest register tile any variant uses (the driver's scratch is sized by them). */
#define LMP_K_MR_MAX 16
#define LMP_K_NR_MAX 32
/* K block of the batched path: the packed weight strip (KC x NR f32) stays in L1/L2
 * while every row tile of X streams past it. Multiple of every block size (256 = QK_K). */
#define LMP_K_KC 256

/* Per-dtype operations of one variant. */
typedef struct {
    /* Elements [k0, k0 + n) of one weight row (row points at the row start) to f32.
     * k0 and n are multiples of the block size. */
    void (*to_f32)(const void *row, int64_t k0, int64_t n, float *dst);
    /* sum_k row[k] * x[k] over the whole row of n elements (fused dequantize-and-dot). */
    float (*dot)(const void *row, const float *x, int64_t n);
    /* out[r] = sum_k row[k] * x[r*ldx + k] for r < nx (1 <= nx <= 4): the weight row
     * decoded once for several rows of X. Optional (NULL: the driver loops over dot). */
    void (*dotn)(const void *row, const float *x, int64_t ldx, int nx, int64_t n, float *out);
} lmp_kdt;

typedef struct {
    const char *name;
    int mr, nr; /* register tile of ukr: mr rows of X times nr rows of W; 0 = no ukr */
    /* acc[i][j] = sum_{k<kc} xp[k*mr + i] * wp[k*nr + j]; then
     * y[i*ldy + j] += acc[i][j] for i < m, j < n (m <= mr, n <= nr). xp and wp are
     * 64-byte aligned packed panels. */
    void (*ukr)(int64_t kc, const float *xp, const float *wp, float *y, int64_t ldy, int m,
                int n);
    /* wp[k*nr + j] = src[j*lds + k] for j < rows, 0 for rows <= j < nr; k < kc. */
    void (*pack_w)(const float *src, int64_t lds, int rows, int64_t kc, float *wp);
    /* xp[k*mr + i] = x[i*ldx + k] for i < rows, 0 for rows <= i < mr; k < kc. Optional
     * (NULL: lmp_k_pack_x). */
    void (*pack_x)(const float *x, int64_t ldx, int rows, int64_t kc, float *xp);
    lmp_kdt dt[LMP_DT_COUNT];
    float (*dot_f32)(const float *a, const float *b, int64_t n);
    void (*axpy_f32)(float *y, float a, const float *x, int64_t n);
    void (*rmsnorm)(float *y, const float *x, const float *w, int64_t n, float eps);
    void (*silu_mul)(float *g, const float *u, int64_t n);
    void (*softmax)(float *x, int64_t n);
    double (*logsumexp)(const float *x, int64_t n);
} lmp_kimpl;

/* Fills *k with the variant's entries (entries it lacks stay as they were). */
void lmp_kimpl_fill_ref(lmp_kimpl *k);
#if defined(__x86_64__)
void lmp_kimpl_fill_avx2(lmp_kimpl *k);
void lmp_kimpl_fill_avx512(lmp_kimpl *k);
#endif

/* Generic packing (C, any nr); variants may supply a faster one. */
void lmp_k_pack_w_generic(const float *src, int64_t lds, int rows, int64_t kc, int nr,
                          float *wp);
/* xp[k*mr + i] = x[i*ldx + k] for i < rows, 0 for rows <= i < mr; k < K. */
void lmp_k_pack_x(const float *x, int64_t ldx, int rows, int64_t K, int mr, float *xp);

#endif
