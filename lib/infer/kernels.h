/*
 * Compute kernels of the engine: matrix products of f32 activations with weights stored
 * in any supported dtype (dense f32/f16/bf16 or GGUF blocks, used in place, never expanded
 * into a full f32 copy of the model). Each kernel has a scalar reference; SIMD variants
 * (AVX2, AVX-512) are chosen once at start-up and checked against the reference by
 * tests/unit/test_kernels.c. Results do not depend on the thread count.
 */
#ifndef LMP_KERNELS_H
#define LMP_KERNELS_H

#include "../core/core.h"
#include "../core/qtensor.h"

/* A weight matrix [rows = out_features, cols = in_features], row-major, each row `cols`
 * elements of `dtype` (block types: cols a multiple of the block size). Borrowed.
 * When `q` is non-NULL the weight is an intgroup payload instead (see the intgroup
 * section at the end): dtype, data and row_bytes are then unused (LMP_DT_U8, NULL, 0). */
typedef struct {
    lmp_dtype dtype;
    int64_t rows, cols;
    const void *data;
    size_t row_bytes; /* lmp_dtype_row_bytes(dtype, cols) */
    const lmp_qtensor *q; /* intgroup weight (borrowed) or NULL */
    int layout;           /* lmp_wlayout of data: LMP_WL_ROWS (0) unless repacked */
} lmp_wmat;

/* How `data` holds the rows. LMP_WL_ROWS: row r at data + r * row_bytes. LMP_WL_Q4_0X16
 * (q4_0, or iq4_nl, whose 18-byte blocks have the same fields: an f16 d, then 16 bytes of
 * nibbles; rows a multiple of 16): rows interleaved in groups of 16 for the decoding
 * kernel, the same bytes in another order (lmp_wmat_repack). Group g (rows 16g..16g+15)
 * at data + g * 16 * row_bytes holds, for nb = cols / 32 blocks, first nb x 256 bytes of
 * nibbles, then nb x 32 bytes of f16 scales. Block b's nibbles are four 64-byte words at
 * 256 b: in word j, bytes 4r..4r+3 are row r's qs[4j..4j+3] of its block b (low nibbles
 * = elements 4j..4j+3, high nibbles = elements 16+4j..16+4j+3); its scales are the 16
 * rows' d in row order at 256 nb + 32 b. Every kernel and lmp_wmat_row_f32 read both
 * layouts with the same results as the rows they hold. */
typedef enum { LMP_WL_ROWS = 0, LMP_WL_Q4_0X16 = 1 } lmp_wlayout;

/* true when w (q4_0 or iq4_nl, row layout, rows a multiple of 16) would be repacked for
 * the kernel variant in use: only where that variant decodes the interleaved layout
 * faster (AVX512-VNNI), and not when LMP_Q4_REPACK=0 is in the environment. */
bool lmp_wmat_repack_wanted(const lmp_wmat *w);
/* Copies w's rows into *buf (allocated here, 64-byte aligned, rows * row_bytes bytes;
 * the caller frees it after the last use of w) in the LMP_WL_Q4_0X16 layout and points
 * w at it. Parallel (OpenMP). w must be q4_0 or iq4_nl in row layout with rows % 16 == 0. */
int lmp_wmat_repack(lmp_wmat *w, void **buf);
/* Row r of a dense or block weight (not intgroup) in row layout, whatever w's layout:
 * row_bytes bytes into dst (for code that reads the blocks themselves). */
void lmp_wmat_row_raw(const lmp_wmat *w, int64_t r, void *dst);

typedef enum { LMP_ISA_AUTO = 0, LMP_ISA_REF, LMP_ISA_AVX2, LMP_ISA_AVX512 } lmp_isa;

/* Forces a variant (tests, benchmarks); AUTO picks the best the CPU has. LMP_ISA env
 * (ref|avx2|avx512) does the same. Returns the variant in use after the call. */
lmp_isa lmp_kernels_set_isa(lmp_isa isa);
lmp_isa lmp_kernels_isa(void);
const char *lmp_isa_name(lmp_isa isa);

/* true when lmp_gemm has a kernel for weights of this dtype. */
bool lmp_gemm_supports(lmp_dtype dt);

/* Y[m][n] = sum_k X[m][k] * W[n][k] (+ bias[n] when bias != NULL), for m < M.
 * X: f32 [M][W->cols], Y: f32 [M][W->rows], both dense row-major. Parallel inside
 * (OpenMP), deterministic for any thread count. M may be 1 (decoding). */
void lmp_gemm(float *Y, const float *X, const lmp_wmat *W, const float *bias, int64_t M);

/* Work shares of one OpenMP team for lmp_gemv_team: one slot per thread (a counter on a
 * cache line of its own). Each thread works through its own contiguous share of a
 * product's rows, claiming them from its own slot, then takes what is left of the
 * others' shares, so a thread the OS delays leaves its rows to the others without the
 * threads bidding for every chunk on one shared counter (an `omp for` with dynamic
 * chunks: each claim moves a cache line between cores, 25% of a SmolLM2 token when the
 * two cores are on different CCDs). n: the largest team it serves. */
typedef struct lmp_team lmp_team;
lmp_team *lmp_team_new(int n); /* NULL when out of memory */
void lmp_team_free(lmp_team *t);

/* One row of X (M == 1) from inside an OpenMP parallel region: every thread of the team
 * must call it, with the same arguments, in the same order as the other team calls. The
 * output rows are shared out through team (NULL: fixed contiguous shares, no taking
 * over), with no barrier at the end: the caller places `#pragma omp barrier` before
 * reading y. y[n] = dot(W[n], x) + bias[n], or y[n] += that when acc. Same arithmetic as
 * lmp_gemm with M == 1, so the results are bitwise identical to it for any thread count.
 * Decoding uses it to run a whole token in one parallel region instead of one region
 * per matrix product. */
void lmp_gemv_team(float *y, const float *x, const lmp_wmat *W, const float *bias, bool acc,
                   lmp_team *team);

/* Rounded activations (the llama.cpp approach, on by default): for bf16 weights X is
 * rounded to bf16 (nearest even) and the products use bf16 dot instructions; for q8_0,
 * q4_0 and q5_0 weights each block of 32 elements of a row of X is quantized to int8
 * with an f32 scale (d = max|x| / 127, q = round(x / d)) and the dots are integer (VNNI)
 * (q6_K and the low-bit GGUF types too where a variant has the kernel; IQ4_XS, IQ3_S and
 * IQ2_XS weights: one scale per 256 elements, d = max|x| / 127 over the 256); for f16 weights X is rounded to f16 when
 * fewer than 16 rows of X stream the weights (decoding: half the bytes of X to keep in
 * cache while the weights stream past; a product whose X holds a finite value f16
 * cannot, |x| >= 65520, runs on f32 activations instead); batched f16 products keep f32 X.
 * The result is then sum_k round(X)[m][k] * W[n][k] up to f32 accumulation: every
 * variant rounds X identically (the reference included), and the error against exact
 * activations is bounded by the rounding (bf16: 2^-9 |x| per element; f16: 2^-12 |x|,
 * or 2^-25 below 2^-14; q8: d/2 per element). Exact mode (f32 activations for every dtype, the behaviour before rounding
 * was introduced, slower) is chosen by LMP_GEMM_EXACT=1 in the environment or by
 * lmp_gemm_set_exact(true); golden tests that compare bf16 models with a float64
 * reference at 1e-4 need it. Not thread-safe against concurrent lmp_gemm calls. */
void lmp_gemm_set_exact(bool exact);
bool lmp_gemm_exact(void);

/* lmp_gemm keeps a per-calling-thread buffer for the packed copy of X (M x K floats of
 * the largest call with M >= 16, reused across calls). This frees the calling thread's
 * buffer; optional (e.g. after prompt processing, or before a thread exits). */
void lmp_kernels_scratch_free(void);

/* ---------------------------------------------------------------- small kernels
 * Vector helpers for attention and norms. Same variant selection as lmp_gemm; single
 * threaded (the caller parallelizes over heads/rows); each result depends only on the
 * inputs and the variant, never on the thread count. n may be 0. */

/* y[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; the mean is accumulated in a fixed order.
 * y may equal x (in place). */
void lmp_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps);
/* gate[i] = silu(gate[i]) * up[i], silu(g) = g / (1 + exp(-g)). */
void lmp_silu_mul(float *gate_inout, const float *up, int64_t n);
/* gate[i] = gelu_tanh(gate[i]) * up[i], gelu_tanh(g) = 0.5 g (1 + tanh(z)) with
 * z = sqrt(2/pi) (g + 0.044715 g^3) (transformers' gelu_pytorch_tanh). The reference
 * computes it with tanhf; the SIMD variants as g / (1 + exp(-2z)) (the same function:
 * (1 + tanh z) / 2 = 1 / (1 + exp(-2z))), within a few ulp of it. */
void lmp_gelu_mul(float *gate_inout, const float *up, int64_t n);
/* sum_i a[i] * b[i] (f32 accumulation, fixed order per variant). */
float lmp_dot_f32(const float *a, const float *b, int64_t n);
/* y[i] += a * x[i]. */
void lmp_axpy_f32(float *y, float a, const float *x, int64_t n);
/* x[i] = exp(x[i] - max) / sum_j exp(x[j] - max), in place; -INFINITY entries give 0
 * (at least one entry must be finite). */
void lmp_softmax_f32(float *x, int64_t n);
/* log(sum_i exp(x[i])), computed as max + log(sum exp(x[i] - max)) with the sum in
 * double. Returns -INFINITY for n == 0. */
double lmp_logsumexp_f32(const float *x, int64_t n);

/* ---------------------------------------------------------------- intgroup weights
 * Weights in the canonical intgroup scheme (lib/core/qtensor.h: 2..8-bit codes along the
 * input axis, f32 scale and u8 zero per (row, group), optional act-order g_idx) run in
 * place: an lmp_wmat with `q` set goes through lmp_gemm / lmp_gemv_team like any dtype,
 * with f32 activations. Small M (decoding): each weight row is decoded once for up to
 * four rows of X, fused with the dot products (4- and 8-bit codes without g_idx and
 * groups of a multiple of 16: codes minus zero converted in registers, sum per group then
 * times its scale; otherwise the row is dequantized into a stack buffer first). M >= 16:
 * the driver's batched path with the variant's intgroup strip decoder (exactly
 * lmp_qtensor_dequant_row's values) in place of a dtype's, so the result equals that of
 * the dequantized f32 matrix bit for bit. Deterministic for any thread count
 * (kernels_intgroup.c, kernels_avx2.c, kernels_avx512.c). */

/* Fills *w as an intgroup view of q (borrowed: q must outlive every use of w). Checks q
 * (lmp_qtensor_intgroup_check). Returns status. */
int lmp_wmat_intgroup(lmp_wmat *w, const lmp_qtensor *q);
/* Row r of any weight lmp_gemm accepts (dense, block or intgroup) as f32 out[cols]. */
void lmp_wmat_row_f32(const lmp_wmat *w, int64_t r, float *out);
/* The scalar reference of lmp_gemm on an intgroup W whatever the selected variant
 * (tests): each row dequantized exactly, dot products summed in f32 in index order. */
void lmp_gemm_intgroup_ref(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                           int64_t M);

#endif
