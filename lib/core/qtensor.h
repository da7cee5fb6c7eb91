/*
 * The canonical quantized-weight object (lmp_qtensor) and the data layout of its
 * `intgroup` scheme: integer codes of 2..8 bits with per-(row, group) scales and zero
 * points and an optional act-order g_idx. This is the common meaning behind GPTQ, AWQ
 * and compressed-tensors checkpoints; it lives in lib/core so that the engine's kernels
 * (lib/infer) can run it in place, while the quantizers that produce it stay in lib/quant
 * (intquant.h, which includes this header) and the on-disk packings in formats/.
 * Not here: any algorithm, any file layout.
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
 * c / gs, computed in f32 exactly as written (GPTQ quant.py: scale * (q - zero)); every
 * kernel that materializes f32 weights produces exactly these values.
 */
#ifndef LMP_CORE_QTENSOR_H
#define LMP_CORE_QTENSOR_H

#include "core.h"

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
/* Deep copy of an INTGROUP tensor (name included) into *dst (initialized here; free with
 * lmp_qtensor_free). Returns status. */
int lmp_qtensor_intgroup_copy(lmp_qtensor *dst, const lmp_qtensor *src);
/* Checks the invariants the kernels rely on (scheme INTGROUP, bits 2..8, gs/n_groups/
 * row_bytes consistent with cols, arrays present, every g_idx entry in [0, n_groups),
 * zeros <= 2^bits). `what` names the tensor in the message. Returns status. */
int lmp_qtensor_intgroup_check(const lmp_qtensor *q, const char *what);

/* Dequantizes row r into out[cols] (f32). Thread safe (read only). */
void lmp_qtensor_dequant_row(const lmp_qtensor *q, int64_t r, float *out);
/* Columns [c0, c0 + n) of row r into out[n]; c0 * bits must be a multiple of 8 (any c0
 * for 8 bits, even c0 for 4 bits, c0 % 4 == 0 for 2 bits, c0 % 8 == 0 always works).
 * Values identical to lmp_qtensor_dequant_row's. */
void lmp_qtensor_dequant_range(const lmp_qtensor *q, int64_t r, int64_t c0, int64_t n,
                               float *out);
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

#endif
