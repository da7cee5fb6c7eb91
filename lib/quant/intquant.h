/*
 * Integer group quantization: the canonical quantized-weight object (lmp_qtensor) and its
 * `intgroup` scheme, round-to-nearest (RTN) and GPTQ quantizers. This is the common
 * meaning behind GPTQ, AWQ and compressed-tensors checkpoints; formats/packing.h
 * translates between it and each on-disk packing. It knows no file layout.
 *
 * Canonical intgroup layout (chosen for the engine's dequantize-and-dot kernels: one row
 * of a Linear is one contiguous run of codes along the input axis, like a GGUF row):
 *   codes  uint8 [rows][row_bytes]: row r is an LSB-first bit stream of `cols` codes of
 *          `bits` bits (code c at bit c*bits of the row), zero-padded to row_bytes =
 *          ceil(cols*bits/64)*8 bytes. bits 8: one byte per code; bits 4: code 2k in the
 *          low nibble of byte k, 2k+1 in the high nibble (byte-identical to
 *          compressed-tensors' weight_packed row); bits 2: four per byte; bits 3/5/6/7:
 *          codes may straddle bytes (read with an unaligned 16-bit load).
 *   scales f32   [rows][n_groups]
 *   zeros  uint8 [rows][n_groups]   always present; sym stores 2^(bits-1) (GPTQ's
 *          (maxq+1)/2). Values 0..2^bits (2^bits only arises from reading GPTQ v1 files,
 *          whose loaders add 1 to a stored maxq; packers refuse it).
 *   g_idx  int32 [cols] or NULL     the group of each input column (act-order); NULL
 *          means column c is in group c / group_size. Normalized: never trivial.
 * Dequantization: w[r][c] = scales[r][g] * (code[r][c] - zeros[r][g]), g = g_idx[c] or
 * c / gs, computed in f32 exactly as written (GPTQ quant.py: scale * (q - zero)).
 */
#ifndef LMP_INTQUANT_H
#define LMP_INTQUANT_H

#include "../core/core.h"

/* ---------------------------------------------------------------- the object ------ */

typedef enum {
    LMP_QS_DENSE = 0, /* dtype f32/f16/bf16 rows */
    LMP_QS_BLOCK,     /* a GGUF block dtype along the input axis */
    LMP_QS_INTGROUP,  /* integer codes with per-(row, group) scale and zero */
    LMP_QS_SPARSE,    /* reserved: bitmask over another scheme (not implemented here) */
} lmp_qscheme;

typedef struct {
    int bits;          /* 2..8 */
    int group_size;    /* as configured: > 0, or -1 = one group per output row */
    int gs;            /* effective group size: group_size, or cols when -1 */
    int n_groups;      /* ceil(cols / gs) */
    bool sym;          /* zeros are all 2^(bits-1) */
    int64_t row_bytes; /* bytes per row of codes (multiple of 8) */
    uint8_t *codes;    /* (rows, row_bytes) bit stream per row, see above */
    float *scales;     /* (rows, n_groups) */
    uint8_t *zeros;    /* (rows, n_groups) */
    int32_t *g_idx;    /* (cols) or NULL */
} lmp_intgroup;

/* A weight matrix [rows = out_features][cols = in_features] in one scheme.
 * DENSE/BLOCK: `data` holds rows of `dtype`, row_bytes each, owned or borrowed.
 * INTGROUP: `ig` arrays, always owned. */
typedef struct {
    char name[LMP_MAX_NAME];
    lmp_qscheme scheme;
    int64_t rows, cols;
    lmp_dtype dtype;   /* DENSE/BLOCK element type; INTGROUP: LMP_DT_U8 (unused) */
    void *data;        /* DENSE/BLOCK: (rows, row_bytes) */
    size_t row_bytes;  /* DENSE/BLOCK */
    bool owned;        /* DENSE/BLOCK: data freed by lmp_qtensor_free */
    lmp_intgroup ig;   /* INTGROUP */
} lmp_qtensor;

/* Allocates a zeroed INTGROUP tensor (codes 0, scales 0, zeros 2^(bits-1) when sym, 0
 * otherwise; g_idx allocated (zeroed) only when with_gidx). bits 2..8; group_size > 0
 * or -1; rows, cols >= 1. Returns status; on failure *q is left freed. */
int lmp_qtensor_intgroup_init(lmp_qtensor *q, int64_t rows, int64_t cols, int bits,
                              int group_size, bool sym, bool with_gidx);
/* DENSE or BLOCK view of existing rows (borrowed; `data` must outlive q). */
int lmp_qtensor_view(lmp_qtensor *q, lmp_dtype dt, int64_t rows, int64_t cols,
                     const void *data);
/* Frees owned storage and zeroes *q; accepts NULL. */
void lmp_qtensor_free(lmp_qtensor *q);

/* Dequantizes row r into out[cols] (f32). Thread safe (read only). */
void lmp_qtensor_dequant_row(const lmp_qtensor *q, int64_t r, float *out);
/* Whole matrix into out[rows][cols]. */
void lmp_qtensor_dequant(const lmp_qtensor *q, float *out);
/* Bytes of payload held in memory (codes + scales + zeros + g_idx, or the dense rows). */
size_t lmp_qtensor_nbytes(const lmp_qtensor *q);
/* Bits per weight including scales/zeros/g_idx as held in memory. */
double lmp_qtensor_bpw(const lmp_qtensor *q);

/* Group of input column c (g_idx or c / gs). */
static inline int lmp_ig_group(const lmp_intgroup *ig, int64_t c)
{
    return ig->g_idx ? ig->g_idx[c] : (int)(c / ig->gs);
}
/* Code of (r, c) / store a code (value < 2^bits; the bits it covers must be zero or are
 * OR-ed: set_code writes into zeroed storage, as the quantizers do). */
static inline unsigned lmp_ig_code(const lmp_intgroup *ig, int64_t r, int64_t c)
{
    const uint8_t *row = ig->codes + r * ig->row_bytes;
    int64_t bit = c * ig->bits;
    unsigned v = row[bit >> 3];
    if ((bit & 7) + ig->bits > 8)
        v |= (unsigned)row[(bit >> 3) + 1] << 8;
    return (v >> (bit & 7)) & ((1u << ig->bits) - 1);
}
static inline void lmp_ig_set_code(lmp_intgroup *ig, int64_t r, int64_t c, unsigned v)
{
    uint8_t *row = ig->codes + r * ig->row_bytes;
    int64_t bit = c * ig->bits;
    unsigned w = (v & ((1u << ig->bits) - 1)) << (bit & 7);
    row[bit >> 3] |= (uint8_t)w;
    if ((bit & 7) + ig->bits > 8)
        row[(bit >> 3) + 1] |= (uint8_t)(w >> 8);
}

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
} lmp_gptq_params;

void lmp_gptq_default_params(lmp_gptq_params *p);

/* Running Hessian of the reference (gptq.py add_batch): H *= ns / (ns + n); ns += n;
 * H += 2/ns * X^T X, with X f32 [n][cols] (n rows = tokens) and H double [cols][cols]
 * (full symmetric). Start with H zeroed and *nsamples = 0. The reference counts batch
 * entries (sequences), not tokens, so its H is seq_len times this one; the quantized
 * result does not depend on the scale of H, only the reported loss does. */
int lmp_gptq_hessian_add(double *H, int64_t cols, const float *X, int64_t n,
                         int64_t *nsamples);

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

#endif
