/*
 * Private interface between the kernel driver (kernels.c) and its leaves: the variant
 * files (kernels_ref.c, kernels_avx2.c, kernels_avx512*.c, kernels_lowbit.c,
 * kernels_repack.c, kernels_intgroup.c). A leaf is a set of kernels plus one fill
 * function that writes their pointers into an lmp_kimpl; it never calls the driver (no
 * tiling, threading, row loops or variant choice in a leaf). kernels.c lists every fill
 * function in one table (g_leaves: variant, optional CPU feature test, fill) and builds
 * the three variants from it at start-up: ref first, then avx2 starting as a copy of ref,
 * then avx512 as a copy of avx2, each applying its rows in order (a later row overrides
 * what it sets). So NULL entries fall back to the next simpler variant, a dtype needs
 * only a reference to work everywhere, and SIMD rows are added where they pay.
 *
 * Adding a leaf: write kernels_NAME.c with static kernels and
 * `void lmp_kimpl_fill_NAME(lmp_kimpl *k)` setting k->dt[LMP_DT_X].dot etc. (target
 * attributes per function, the whole file under #if defined(__x86_64__) for SIMD),
 * declare the fill function below, and add one row to g_leaves in kernels.c.
 */
#ifndef LMP_KERNELS_INTERNAL_H
#define LMP_KERNELS_INTERNAL_H

#include "kernels.h"

#include <stdatomic.h>
#include <stdbool.h>

/* Largest register tile any variant uses (the driver's scratch is sized by them). */
#define LMP_K_MR_MAX 16
#define LMP_K_NR_MAX 32
/* K block of the batched path: the packed weight strip (KC x NR f32) stays in L1/L2
 * while every row tile of X streams past it. Multiple of every block size (256 = QK_K). */
#define LMP_K_KC 256

/* Activation formats. lmp_gemm rounds X to the format its weight dtype computes in
 * (kernels.h: LMP_GEMM_EXACT); every variant computes with the same rounded X, so the
 * rounding is part of the definition (the reference does it too). */
typedef enum { LMP_ACT_F32 = 0, LMP_ACT_BF16, LMP_ACT_Q8, LMP_ACT_F16, LMP_ACT_Q8K } lmp_act;

/* A Q8 activation row of n elements (n a multiple of 32): n int8 quants, then n/32 f32
 * scales, then n/32 int32 sums of the quants; the row stands for x[k] = d[k/32] * qs[k].
 * Per block of 32: amax = max |x|, d = amax / 127, id = d ? 1 / d : 0,
 * qs = round-to-nearest-even(x * id) (f32 arithmetic), s = sum qs. */
#define LMP_XQ8_BYTES(n) ((size_t)(n) + 8 * (size_t)((n) / 32))
static inline const float *lmp_xq8_d(const void *xq, int64_t n)
{
    return (const float *)((const int8_t *)xq + n);
}
static inline const int32_t *lmp_xq8_s(const void *xq, int64_t n)
{
    return (const int32_t *)((const int8_t *)xq + n + 4 * (n / 32));
}
/* A Q8K activation row of n elements (n a multiple of 256; the super-block types IQ4_XS,
 * IQ3_S and IQ2_XS): n int8 quants, then n/256 f32 scales, then n/16 int16 sums of 16
 * quants each; x[k] = d[k/256] * qs[k]. Per super-block of 256: amax = max |x|,
 * d = amax / 127, id = d ? 1 / d : 0, qs = round-to-nearest-even(x * id) (f32
 * arithmetic, as LMP_ACT_Q8 per 32). One scale per 256 lets a kernel sum a weight
 * super-block's sub-blocks in integers (their integer scales times the exact code sums)
 * and take one float step per 256 values. */
#define LMP_XQ8K_BYTES(n) ((size_t)(n) + 4 * (size_t)((n) / 256) + 2 * (size_t)((n) / 16))
static inline const float *lmp_xq8k_d(const void *xq, int64_t n)
{
    return (const float *)((const int8_t *)xq + n);
}
static inline const int16_t *lmp_xq8k_s(const void *xq, int64_t n)
{
    return (const int16_t *)((const int8_t *)xq + n + 4 * (n / 256));
}
/* A BF16 activation row: n bf16 values, x rounded to nearest even (NaN stays NaN, f32
 * subnormals flush to a signed zero as vcvtne2ps2bf16 does).
 * An F16 activation row: n f16 values, x rounded to nearest even (lmp_f32_to_f16: f16
 * subnormals kept, NaN stays NaN, Inf stays Inf). A finite x of magnitude 65520 or more
 * would become Inf: then the whole product runs on f32 activations instead (to_f16
 * reports it), so rounding never turns a finite activation infinite. */

/* A tiled compute format of its own (int8 or bf16 dot products): X tiles and W panels
 * packed for a micro-kernel that is not the f32 one. Used for dtypes whose activation
 * format is not f32. */
typedef struct {
    int mr, nr;
    int kb; /* k0 and kc are multiples of kb */
    /* bytes of one packed X tile of mr rows x kc (a multiple of 64) */
    size_t (*x_bytes)(int64_t kc);
    /* packs rows < rows (rows up to mr: the rest padded so they contribute 0) of
     * x[i*ldx + k], k < kc, rounding them to the activation format */
    void (*pack_x)(const float *x, int64_t ldx, int rows, int64_t kc, void *xp);
    /* y[i*ldy + j] += sum over the panel, for i < m, j < n */
    void (*ukr)(int64_t kc, const void *xp, const void *wp, float *y, int64_t ldy, int m,
                int n);
} lmp_ktile;
/* Largest W panel (bytes) of any tile for kc = LMP_K_KC (the driver's stack buffer). */
#define LMP_K_WPANEL_MAX (LMP_K_KC * LMP_K_NR_MAX * 4)

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
    /* Dtypes with a non-f32 activation format (lmp_k_act): the dot of a weight row with
     * one converted activation row (LMP_ACT_Q8 / LMP_ACT_BF16 layout above; LMP_ACT_Q8K
     * where q8k is set). */
    float (*dotq)(const void *row, const void *xa, int64_t n);
    /* dotq and dotq4 take LMP_ACT_Q8K rows (set by the reference fill, so every variant
     * that inherits or overrides them agrees). */
    bool q8k;
    /* The same dtypes: rows r < rows (row r at w + r*rb), elements [k0, k0 + kc), packed
     * as the panel of the variant's tile for the activation format (rows up to its nr;
     * the rest padded with zeros). Optional (NULL: f32 panels, X rounded first). */
    void (*pack_wq)(const void *w, size_t rb, int rows, int64_t k0, int64_t kc, void *wp);
    /* Four consecutive weight rows (rb bytes apart) against one row of X (f32 x, or
     * converted xa): out[r] = row r . x, sharing the horizontal sums. Optional (NULL: the
     * driver calls dot / dotq per row); used by the M == 1 path. */
    void (*dot4)(const void *row, size_t rb, const float *x, int64_t n, float *out);
    void (*dotq4)(const void *row, size_t rb, const void *xa, int64_t n, float *out);
    /* Dtypes on f32 panels: the variant's nr rows (row r at w + r*rb), elements [k0,
     * k0 + kc) with kc a multiple of 16, decoded and packed as the f32 ukr's panel in one
     * pass. Optional (NULL, fewer rows or another kc: to_f32 into rows, then pack_w). */
    void (*pack_wf)(const void *w, size_t rb, int64_t k0, int64_t kc, float *wp);
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
    void (*gelu_mul)(float *g, const float *u, int64_t n);
    void (*softmax)(float *x, int64_t n);
    double (*logsumexp)(const float *x, int64_t n);
    /* Activation rounding (bitwise the reference's): the LMP_ACT_Q8 row of x[0..n)
     * (n a multiple of 32), and the bf16 values of x[0..n). */
    void (*quant_q8)(const float *x, int64_t n, void *xq);
    /* the LMP_ACT_Q8K row of x[0..n) (n a multiple of 256), bitwise the reference's */
    void (*quant_q8k)(const float *x, int64_t n, void *xq);
    void (*to_bf16)(const float *x, int64_t n, uint16_t *y);
    /* The f16 values of x[0..n); returns nonzero when a finite x overflowed to Inf. */
    int (*to_f16)(const float *x, int64_t n, uint16_t *y);
    /* Tiles of the activation formats (ukr NULL: none in this variant). */
    lmp_ktile tile_q8, tile_bf16;
    /* q4_0 weights in the LMP_WL_Q4_0X16 layout (kernels.h): out[r] = row r of the
     * group at grp . the LMP_ACT_Q8 row xq of n elements, r < 16. q4x16_simd: this
     * variant's is faster than the row kernels (lmp_wmat_repack_wanted). */
    void (*gemv_q4x16)(const void *grp, const void *xq, int64_t n, float out[16]);
    bool q4x16_simd;
    /* The same for iq4_nl weights in that layout (the nibbles index LMP_IQ4NL_VALUES);
     * the reference's per row as ref_dotq_iq4_nl (bitwise). */
    void (*gemv_iq4nlx16)(const void *grp, const void *xq, int64_t n, float out[16]);
    bool iq4nlx16_simd;
    /* Intgroup weights (lmp_wmat.q, lib/core/qtensor.h), f32 activations. ig_deq is the
     * strip decoder of the batched path: dst[j] = w[n][k0 + j] for j < kc (k0 a
     * multiple of LMP_K_KC), exactly lmp_qtensor_dequant_range's values. ig_rows is the
     * streaming path's fused row: out[i] = sum_k w[n][k] * x[i*ldx + k] for i < nx
     * (1..4). */
    void (*ig_deq)(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst);
    void (*ig_rows)(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                    float *out);
} lmp_kimpl;

/* kernels_repack.c: rows [n0, n0 + nv) of a LMP_WL_Q4_0X16 weight, blocks [b0, b0 + nb),
 * back in row layout: row i at dst + i * nb * 18 (the bytes the rows held). */
void lmp_k_x16_rows(const lmp_wmat *W, int64_t n0, int nv, int64_t b0, int64_t nb, void *dst);

/* The activation format lmp_gemm uses for weights of dtype dt (LMP_ACT_F32 in exact
 * mode, or when no variant has a dotq for it). */
lmp_act lmp_k_act(lmp_dtype dt);
/* The format of a product with M rows of X: lmp_k_act, but f32 for f16 weights on the
 * batched path (M >= LMP_K_SMALL_M with a register tile). */
lmp_act lmp_k_act_m(lmp_dtype dt, int64_t M);
/* A thread's slot of an lmp_team: `next` packs the call it serves (high 32 bits) and the
 * next unclaimed unit of its share (low 32); `calls` counts the owner's calls (only the
 * owner touches it). */
typedef struct {
    _Alignas(64) _Atomic uint64_t next;
    uint64_t calls;
} lmp_k_slot;
struct lmp_team {
    int n;
    lmp_k_slot *slot;
};
/* Claims the next unit of slot s for call c (units in the share): its index, or -1 when
 * none is left. Only the owner opens a call on its slot; another thread finding the slot
 * still on an earlier call takes nothing (the owner has not started; were it opened for
 * call c, the owner would lose the rest of the earlier call). */
int64_t lmp_k_claim(lmp_k_slot *s, uint64_t c, int64_t units, bool owner);
/* From inside a parallel region, every thread of it: tasks [0, ntask) in contiguous
 * shares (thread i: [ntask i / nt, ntask (i + 1) / nt)), fn(ctx, lo, hi) on units of up
 * to `unit` tasks, own share first, then the rest of the others' (team NULL or smaller
 * than the region: own share only). */
typedef void (*lmp_k_range_fn)(void *ctx, int64_t lo, int64_t hi);
void lmp_k_share(lmp_team *team, int64_t ntask, int64_t unit, lmp_k_range_fn fn, void *ctx);

/* Rows of X per thread from which the batched path gives each thread rows of its own
 * (kernels.c: LMP_K_OWN_ROWS; 0: never); returns the previous value. For tests. */
int64_t lmp_k_set_own_rows(int64_t rows);
/* The merged table of a variant (NULL when this CPU lacks it); for tests. */
const lmp_kimpl *lmp_k_impl(lmp_isa isa);
/* Reference rounding of one value to bf16 (the definition of LMP_ACT_BF16). */
uint16_t lmp_k_bf16_round(float x);

/* ---------------------------------------------------------------- leaves
 * Fill functions, one per leaf, each listed once in kernels.c's g_leaves (in the order
 * given there). Each sets the entries its kernels provide and leaves the others as they
 * were (lmp_kimpl_fill_ref, the first row, starts from zero). */
void lmp_kimpl_fill_ref(lmp_kimpl *k);          /* kernels_ref.c: every dtype, scalar */
void lmp_kimpl_fill_lowbit_ref(lmp_kimpl *k);   /* kernels_lowbit.c: IQ*, TQ*, MXFP4, Q1_0, Q2_0 */
void lmp_kimpl_fill_lowbit_q8_ref(lmp_kimpl *k); /* kernels_lowbit_ref.c: their Q8 dots */
void lmp_kimpl_fill_repack_ref(lmp_kimpl *k);   /* kernels_repack.c: gemv_q4x16 reference */
void lmp_kimpl_fill_intgroup_ref(lmp_kimpl *k); /* kernels_intgroup.c: ig_deq, ig_rows */
#if defined(__x86_64__)
void lmp_kimpl_fill_avx2(lmp_kimpl *k);              /* kernels_avx2.c (intgroup included) */
void lmp_kimpl_fill_lowbit_avx2(lmp_kimpl *k);       /* kernels_lowbit.c */
void lmp_kimpl_fill_lowbit_q8_avx2(lmp_kimpl *k);    /* kernels_lowbit_avx2.c */
void lmp_kimpl_fill_avx512(lmp_kimpl *k);            /* kernels_avx512.c (intgroup included) */
void lmp_kimpl_fill_avx512_kq(lmp_kimpl *k);         /* kernels_avx512_kq.c: k-quants */
/* kernels_avx512_act.c: int8 (VNNI) and bf16 (AVX512-BF16) kernels on rounded
 * activations; rows of the avx512 variant applied only when the CPU has the extension */
void lmp_kimpl_fill_avx512_vnni(lmp_kimpl *k);
void lmp_kimpl_fill_lowbit_avx512_vnni(lmp_kimpl *k); /* kernels_lowbit.c */
void lmp_kimpl_fill_lowbit_q8_avx512(lmp_kimpl *k);   /* kernels_lowbit_avx512.c */
void lmp_kimpl_fill_avx512_bf16(lmp_kimpl *k);
#endif

/* ---------------------------------------------------------------- intgroup helpers
 * Shared by the intgroup decoders of kernels_intgroup.c, kernels_avx2.c and
 * kernels_avx512.c. */
/* column chunk of the dequantize-then-dot fallback (stack buffer) */
#define LMP_IG_CHUNK 256
/* largest n_groups the g_idx fused path keeps as f32 zeros on the stack */
#define LMP_IG_MAX_GROUPS 4096
/* 4- and 8-bit codes have SIMD decoders */
static inline bool lmp_ig_fast_bits(const lmp_intgroup *ig)
{
    return ig->bits == 4 || ig->bits == 8;
}
/* Whether a tensor takes the fused (decode in registers) row path of the SIMD variants. */
static inline bool lmp_ig_fused_ok(const lmp_qtensor *q)
{
    const lmp_intgroup *ig = &q->ig;
    return lmp_ig_fast_bits(ig) && q->cols % 16 == 0 &&
           (ig->g_idx ? ig->n_groups <= LMP_IG_MAX_GROUPS : ig->gs % 16 == 0);
}
/* FN(q, n, x, ldx, out, NX, BITS) with NX a constant 1..4 (nx, clamped). */
#define LMP_IG_FUSED_CASES(FN, q, n, x, ldx, nx, out, BITS)                              \
    switch (nx) {                                                                        \
    case 1: FN(q, n, x, ldx, out, 1, BITS); break;                                       \
    case 2: FN(q, n, x, ldx, out, 2, BITS); break;                                       \
    case 3: FN(q, n, x, ldx, out, 3, BITS); break;                                       \
    default: FN(q, n, x, ldx, out, 4, BITS); break;                                      \
    }

/* Generic packing (C, any nr); variants may supply a faster one. */
void lmp_k_pack_w_generic(const float *src, int64_t lds, int rows, int64_t kc, int nr,
                          float *wp);
/* xp[k*mr + i] = x[i*ldx + k] for i < rows, 0 for rows <= i < mr; k < K. */
void lmp_k_pack_x(const float *x, int64_t ldx, int rows, int64_t K, int mr, float *xp);

#endif
