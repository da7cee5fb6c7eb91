/*
 * Intgroup weights (lib/core/qtensor.h: GPTQ / AWQ / compressed-tensors codes in the
 * canonical packing) run in place through the one driver of kernels.c: the 4-bit payload
 * is what stays in memory, never an f32 copy of the matrix. This leaf holds the
 * reference decoders; the AVX2 and AVX-512 ones live in kernels_avx2.c and
 * kernels_avx512.c. Each variant gives the driver two entries (kernels_internal.h):
 *  - ig_rows, for M < 16 (decoding): weight row n decoded once for up to four rows of
 *    X. The SIMD variants fuse 4- and 8-bit codes without g_idx and groups a multiple of
 *    16: 16 codes widened to int32, the group's zero subtracted (exact), converted to
 *    f32 and multiplied into per-group f32 accumulators, each group's sum scaled once:
 *    y = sum_g s_g * sum_{c in g} (q_c - z_g) x_c. With g_idx the weights are formed
 *    exactly (scale and zero gathered per column; up to 32 groups the tables sit in
 *    registers and a permute replaces the gathers). Other widths: the row dequantized 256
 *    columns at a time into a stack buffer and dotted.
 *  - ig_deq, the strip decoder of the batched path (M >= 16): the driver asks for rows
 *    [n0, n0 + nr) of a K block, packs them like any dtype's decoded strip and runs the
 *    variant's register tile. The values (exactly lmp_qtensor_dequant_row's) and the
 *    arithmetic order equal those of an f32 matrix holding the dequantized weights, so a
 *    natively run intgroup linear gives bitwise the same result as its dequantized f32
 *    copy on this path.
 * The reference dequantizes each row and sums in f32 in index order
 * (lmp_gemm_intgroup_ref); tests/unit/test_intgroup.c checks every variant against it
 * and against a double-precision product, with 1 and 2 threads.
 */
#include "kernels_internal.h"

#include <string.h>

/* ---------------------------------------------------------------- reference */

static void deq_ref(const lmp_qtensor *q, int64_t n, int64_t k0, int64_t kc, float *dst)
{
    lmp_qtensor_dequant_range(q, n, k0, kc, dst);
}

/* Dequantize 256 columns at a time, sum in f32 in index order. */
static void rows_ref(const lmp_qtensor *q, int64_t n, const float *x, int64_t ldx, int nx,
                     float *out)
{
    float buf[LMP_IG_CHUNK];
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    const int64_t K = q->cols;
    for (int64_t k0 = 0; k0 < K; k0 += LMP_IG_CHUNK) {
        const int64_t c = K - k0 < LMP_IG_CHUNK ? K - k0 : LMP_IG_CHUNK;
        lmp_qtensor_dequant_range(q, n, k0, c, buf);
        for (int i = 0; i < nx; i++) {
            const float *xr = x + i * ldx + k0;
            float a = s[i];
            for (int64_t k = 0; k < c; k++)
                a += xr[k] * buf[k];
            s[i] = a;
        }
    }
    for (int i = 0; i < nx; i++)
        out[i] = s[i];
}

void lmp_kimpl_fill_intgroup_ref(lmp_kimpl *k)
{
    k->ig_rows = rows_ref;
    k->ig_deq = deq_ref;
}

int lmp_wmat_intgroup(lmp_wmat *w, const lmp_qtensor *q)
{
    memset(w, 0, sizeof *w);
    int rc = lmp_qtensor_intgroup_check(q, NULL);
    if (rc)
        return rc;
    w->dtype = LMP_DT_U8;
    w->rows = q->rows;
    w->cols = q->cols;
    w->q = q;
    return LMP_OK;
}
