/*
 * Integer group quantization: the canonical quantized-weight object (lmp_qtensor) and its
 * `intgroup` scheme, round-to-nearest (RTN) and GPTQ quantizers. This is the common
 * meaning behind GPTQ, AWQ and compressed-tensors checkpoints; formats/packing.h
 * translates between it and each on-disk packing. It knows no file layout.
 *
 * The object and its layout live in lib/core/qtensor.h (the engine runs it in place);
 * this header adds what only the quantizers and formats need.
 */
#ifndef LMP_INTQUANT_H
#define LMP_INTQUANT_H

#include "../core/qtensor.h"

/* ---------------------------------------------------------------- the object ------ */

/* lmp_qscheme, lmp_intgroup, lmp_qtensor, lmp_qtensor_intgroup_init / _view / _free /
 * _dequant_row / _dequant / _nbytes / _bpw, lmp_ig_group, lmp_ig_code, lmp_ig_set_code:
 * lib/core/qtensor.h. */

/* Drops g_idx when it equals c / gs for every column (keeps the invariant "never
 * trivial"); checks every entry is in [0, n_groups). Returns status. */
int lmp_qtensor_gidx_normalize(lmp_qtensor *q);
/* Logical equality of two INTGROUP tensors (shape, bits, groups, sym, every code, scale
 * bit pattern, zero and group of every column). On difference returns false and, when
 * why != NULL, writes the first difference into why. */
bool lmp_qtensor_intgroup_equal(const lmp_qtensor *a, const lmp_qtensor *b, char *why,
                                size_t why_len);

/* ---------------------------------------------------------------- scale / zero ---- */

/* GPTQ quant.py find_params for one (row, group) from its min and max:
 * xmin = min(xmin, 0), xmax = max(xmax, 0); sym: xmax = max(-xmin, xmax) and xmin = -xmax
 * when xmin < 0; both 0 -> [-1, 1]; scale = (xmax - xmin) / maxq; zero = (maxq + 1) / 2
 * (sym) or round(-xmin / scale) (asym, ties to even). scale_f16: the scale is rounded to
 * f16 first (clamped to [2^-24, 65504]) and the asym zero computed from it, so that the
 * codes match the f16 scales every checkpoint format stores. */
void lmp_intq_find_params(float xmin, float xmax, int bits, bool sym, bool scale_f16,
                          float *scale, int *zero);
/* q = clamp(round(w / scale) + zero, 0, 2^bits - 1) (ties to even, f32 arithmetic). */
/* Upper-triangle tile pairs (ti <= tj) of nt x nt tiles numbered row by row: pair p's
 * (ti, tj). The fixed tilings of X^T X and tr(A H A^T) share their work in this order. */
static inline void lmp_tile_pair_upper(int64_t p, int64_t nt, int64_t *ti, int64_t *tj)
{
    int64_t i = 0;
    while (p >= nt - i) {
        p -= nt - i;
        i++;
    }
    *ti = i;
    *tj = i + p;
}

static inline int lmp_intq_code(float w, float scale, int zero, int maxq)
{
    float q = __builtin_rintf(w / scale) + (float)zero;
    return q < 0.0f ? 0 : q > (float)maxq ? maxq : (int)q;
}

/* ---------------------------------------------------------------- RTN ------------- */

typedef struct {
    int bits;        /* 2..8 (default 4) */
    int group_size;  /* > 0 or -1 (default 128) */
    bool sym;        /* default true */
    bool scale_f16;  /* round scales to f16 before coding (default true) */
} lmp_rtn_params;

void lmp_rtn_default_params(lmp_rtn_params *p);
/* Round-to-nearest of W[rows][cols] (f32) into a new INTGROUP tensor (*out is
 * initialized here; free with lmp_qtensor_free). Per (row, group) parameters from
 * lmp_intq_find_params over the group's columns. OpenMP over rows, deterministic. */
int lmp_quant_rtn(const float *W, int64_t rows, int64_t cols, const lmp_rtn_params *p,
                  lmp_qtensor *out);

/* ---------------------------------------------------------------- GPTQ ------------ */

typedef struct {
    int bits;           /* 2..8 (default 4) */
    int group_size;     /* > 0 or -1 (default 128) */
    bool sym;           /* default true */
    bool act_order;     /* desc_act: columns in order of decreasing diag(H) (default false) */
    bool static_groups; /* group parameters from the whole W before any update, in
                           original column order (default false) */
    float percdamp;     /* damp = percdamp * mean(diag(H)) (default 0.01) */
    int blocksize;      /* lazy batch width (default 128) */
    bool scale_f16;     /* round scales to f16 before coding (default true) */
    bool factor_f64;    /* the factor of H^-1 in double (default false: in float, as the
                           reference's torch float32; half the time and memory) */
} lmp_gptq_params;

void lmp_gptq_default_params(lmp_gptq_params *p);

/* Running Hessian of the reference (gptq.py add_batch): H *= ns / (ns + n); ns += n;
 * H += 2/ns * X^T X, with X f32 [n][cols] (n rows = tokens) and H double [cols][cols]
 * (full symmetric). Start with H zeroed and *nsamples = 0. The reference counts batch
 * entries (sequences), not tokens, so its H is seq_len times this one; the quantized
 * result does not depend on the scale of H, only the reported loss does. */
int lmp_gptq_hessian_add(double *H, int64_t cols, const float *X, int64_t n,
                         int64_t *nsamples);
/* The same over H's upper triangle only (i <= j; the lower one is not read or written),
 * for drivers that add many windows and mirror once (lmp_gptq_sym_from_upper) before the
 * solve: after the mirror, bitwise lmp_gptq_hessian_add's H. */
int lmp_gptq_hessian_add_upper(double *H, int64_t cols, const float *X, int64_t n,
                               int64_t *nsamples);

/* Non-rescaling Hessian pieces for drivers that sum X^T X per window (or window group) and
 * scale once: H_upper = beta * H_upper + alpha * X^T X over the upper triangle (i <= j) of
 * H double [cols][cols], X f32 [n][cols]; the lower triangle is not touched. beta == 0
 * does not read H. Products of f32 values are exact in double; the sums run in an order
 * fixed by (cols, n) alone, so the bits do not depend on the thread count. Returns
 * status (LMP_ENOMEM). lmp_gptq_sym_from_upper copies the upper triangle into the lower
 * (H full symmetric, as lmp_quant_gptq takes it). */
int lmp_gptq_syrk_acc(double *H, int64_t cols, const float *X, int64_t n, double alpha, double beta);
void lmp_gptq_sym_from_upper(double *H, int64_t cols);
/* The same update on X rounded to bf16 (lib/quant/gptq_bf16.c; bf16 calibration): each
 * tile's sums of exact bf16 x bf16 products in f32 in vdpbf16ps's order, then into H in
 * double as above. The AVX-512 BF16 path and the portable one give the same bits, for any
 * thread count. lmp_gptq_hessian_add_upper_bf16 is lmp_gptq_hessian_add_upper on it.
 * lmp_gptq_bf16_native: the AVX-512 BF16 path is used (the CPU has it, the engine's
 * variant is AVX-512, not forced off); lmp_gptq_bf16_force_portable: tests. */
int lmp_gptq_syrk_acc_bf16(double *H, int64_t cols, const float *X, int64_t n, double alpha, double beta);
int lmp_gptq_hessian_add_upper_bf16(double *H, int64_t cols, const float *X, int64_t n, int64_t *nsamples);
bool lmp_gptq_bf16_native(void);
void lmp_gptq_bf16_force_portable(bool on);

/* Dense kernels of GPTQ and SparseGPT (lib/quant/gptq_linalg.c), thread-count independent
 * (fixed tiles, each one single-threaded BLAS call):
 *   lmp_gptq_chol_lower: A = L L^T in place in A's lower triangle (row-major n x n, reads
 *     the lower triangle; the strictly upper part is left with scratch values); returns 0
 *     or the 1-based column where A is not positive definite.
 *   lmp_gptq_trinv_lower: L^-1 in place (lower; the strictly upper part is zeroed).
 *   lmp_gptq_hinv_upper: A symmetric positive definite (full) -> A = U, the upper
 *     Cholesky factor of A^-1 (A^-1 = U^T U), zeros below the diagonal; LMP_ERANGE with
 *     *bad = the 1-based column when A is not positive definite.
 *   lmp_gptq_gemm_sub: C[m][n] -= A[m][k] B[k][n] (f32, row-major with leading dims). */
int64_t lmp_gptq_chol_lower(double *A, int64_t n);
int lmp_gptq_trinv_lower(double *A, int64_t n);
int lmp_gptq_hinv_upper(double *A, int64_t n, int64_t *bad);
/* The same three in float (BLAS products in f32, the unblocked diagonal blocks summed in
 * double): GPTQ's factor (lmp_gptq_params.factor_f64 false). */
int64_t lmp_gptq_chol_lower_f32(float *A, int64_t n);
int lmp_gptq_trinv_lower_f32(float *A, int64_t n);
int lmp_gptq_hinv_upper_f32(float *A, int64_t n, int64_t *bad);
void lmp_gptq_gemm_sub(float *C, int64_t ldc, const float *A, int64_t lda, const float *B, int64_t ldb, int64_t m,
                       int64_t n, int64_t k);
/* tr(A H A^T) for A f32 [rows][cols] and H symmetric double [cols][cols] (its upper
 * triangle is read), in double, thread-count independent, half the work of a full
 * product; -1 when out of memory. */
double lmp_gptq_quad_trace(const float *A, const double *H, int64_t rows, int64_t cols);
/* out[a] = tr(A[a] H A[a]^T) for na matrices A[a] f32 [rows][cols] on one pass over H
 * (its upper triangle read, narrowed to f32 per tile): f32 products summed per tile of
 * 256 columns, the rest in double (relative difference from lmp_gptq_quad_trace ~1e-6;
 * the report's figures, twice its speed). Thread-count independent. Returns 0, or -1 when
 * out of memory. */
double lmp_gptq_quad_traces_f32(const float *const *A, int na, const double *H, int64_t rows, int64_t cols,
                                double *out);
/* f32 products with the same bits for any thread count (AWQ's searches): C = alpha op(A)
 * op(B) + beta C, row-major, op = transpose when ta / tb, as cblas_sgemm's arguments;
 * G's upper triangle = alpha X^T X for X [n][cols] (the lower one is not written). */
void lmp_sgemm_fixed(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
void lmp_ssyrk_fixed_upper(float *G, int64_t cols, const float *X, int64_t n, float alpha);

/* GPTQ (Frantar et al. 2022, Alg. 1 with lazy batch updates, as gptq.py fasterquant) of
 * W[rows][cols] (f32, not modified) given H[cols][cols] (double, not modified; any
 * positive scale, 2/n X^T X as lmp_gptq_hessian_add builds it). Dead columns (H_ii == 0)
 * get H_ii = 1 and W[:, i] = 0; damp added to the diagonal; Hinv = upper Cholesky factor
 * of H^-1 (computed in double); column loop and block updates in f32 (cblas_sgemm).
 * Group parameters are recomputed at each group boundary from the partially updated W
 * exactly as the reference does (including its use of W rather than the block's working
 * copy), or fixed up front with static_groups. *out is initialized here; g_idx is set for
 * act-order without static groups. *loss (may be NULL) receives sum(Losses): the sum of
 * (w - q)^2 / Hinv_ii^2 / 2. Returns status (LMP_ERANGE if H + damp is not positive
 * definite or W holds non-finite values). */
int lmp_quant_gptq(const float *W, int64_t rows, int64_t cols, const double *H,
                   const lmp_gptq_params *p, lmp_qtensor *out, double *loss);

/* The factor of H^-1 and the act-order permutation, kept for the next linear of the same
 * input (q/k/v share one Hessian, gate/up another): lmp_quant_gptq_cached with a cache
 * whose key (the caller's tag, H's address, cols, percdamp, act_order) matches reuses
 * them (the same values it would compute: the same bits), otherwise computes them and
 * keeps them there. Zero-initialize; lmp_gptq_cache_free releases. */
typedef struct {
    uint64_t tag;       /* the caller's name for H (e.g. layer and input class); 0: none */
    const double *H;
    int64_t cols;
    float percdamp;
    bool act_order;
    float *Hinv;        /* [cols][cols] */
    int *perm;          /* [cols] */
    bool factor_f64;
} lmp_gptq_cache;
int lmp_quant_gptq_cached(const float *W, int64_t rows, int64_t cols, const double *H, const lmp_gptq_params *p,
                          lmp_gptq_cache *cache, uint64_t tag, lmp_qtensor *out, double *loss);
void lmp_gptq_cache_free(lmp_gptq_cache *c);

/* tr(D H D^T) for GPTQ's result, D = W - Q (f32 [rows][cols], Q dequantized), from the
 * solve instead of a product with H: GPTQ's errors E (err_j = (w_j - q_j) / U_jj, U the
 * upper Cholesky factor of Hd^-1, Hd = H with dead diagonals set to 1 plus damp I) give
 * D = E U, so tr(D Hd D^T) = ||E||_F^2 = 2 loss (loss: lmp_quant_gptq's sum of Losses), and
 * tr(D H D^T) = 2 loss - damp sum over live columns of ||D[:, j]||^2 (a dead column's row
 * and column of H are zero). Exact in exact arithmetic; with GPTQ's f32 column loop it
 * differs from the product (lmp_gptq_quad_trace) by ~1e-6 relative (test_gptq). damp is
 * GPTQ's: percdamp x the mean of H's diagonal with dead entries counted as 1. */
double lmp_gptq_err_trace(const float *D, const double *H, int64_t rows, int64_t cols, float percdamp, double loss);

#endif
