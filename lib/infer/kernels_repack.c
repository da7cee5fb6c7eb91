/*
 * The interleaved q4_0 layout (kernels.h: LMP_WL_Q4_0X16): repacking rows into it, reading
 * rows back out of it, and the reference matrix-vector kernel on it.
 *
 * Why: decoding streams every weight once per token, and a q4_0 row kernel spends most of
 * its instructions per 32-element block on one row (unpack, integer dot, horizontal sum,
 * scale). With 16 rows interleaved per block, one 64-byte word holds four elements of each
 * of the 16 rows, so an integer dot instruction (vpdpbusd) against four activation bytes
 * broadcast to every lane does useful work in all 16 lanes, each lane one row: no
 * shuffles, no horizontal sums, one vector of 16 results per group. The bytes are the
 * same (same size, same nibbles, same f16 scales), only their order changes, so the
 * repacked copy replaces the rows rather than adding to them.
 * iq4_nl blocks have the same fields (f16 d, then 16 bytes of nibbles, low nibbles the
 * first 16 elements), only the nibble's value differs (LMP_IQ4NL_VALUES instead of
 * nibble - 8), so they use the same layout and code, with a kernel of their own.
 * A leaf: whether a weight is repacked is the driver's choice (lmp_wmat_repack_wanted in
 * kernels.c); the SIMD kernels on this layout are kernels_avx512_act.c's gemv_q4x16 and
 * kernels_lowbit.c's gemv_iq4nlx16.
 */
#include "kernels_internal.h"

#include "../core/blocks.h"

#include <stdlib.h>
#include <string.h>

/* Group g of W; in a group of nb blocks, block b's nibble words and its scales. */
static inline uint8_t *x16_group_at(const lmp_wmat *W, int64_t g)
{
    return (uint8_t *)W->data + (size_t)g * 16 * W->row_bytes;
}
static inline size_t x16_words(int64_t b) { return (size_t)b * 256; }
static inline size_t x16_scales(int64_t nb, int64_t b) { return (size_t)nb * 256 + (size_t)b * 32; }

/* Block b of 16 rows (src row r at src + r * rb) into the group at dst of nb blocks. */
static void pack_block(const uint8_t *src, size_t rb, int64_t nb, int64_t b, uint8_t *dst)
{
    uint8_t *q = dst + x16_words(b), *d = dst + x16_scales(nb, b);
    for (int r = 0; r < 16; r++) {
        const lmp_block_q4_0 *blk = (const lmp_block_q4_0 *)(src + (size_t)r * rb) + b;
        memcpy(d + 2 * r, &blk->d, 2);
        for (int j = 0; j < 4; j++)
            memcpy(q + 64 * j + 4 * r, blk->qs + 4 * j, 4);
    }
}

int lmp_wmat_repack(lmp_wmat *w, void **buf)
{
    *buf = NULL;
    _Static_assert(sizeof(lmp_block_q4_0) == 18 && sizeof(lmp_block_iq4_nl) == 18,
                   "q4_0 and iq4_nl blocks share the interleaved layout");
    if (w->q || w->layout != LMP_WL_ROWS ||
        (w->dtype != LMP_DT_Q4_0 && w->dtype != LMP_DT_IQ4_NL) || w->rows % 16 || w->cols % 32 ||
        w->row_bytes != lmp_dtype_row_bytes(w->dtype, w->cols))
        return lmp_err(LMP_EINVAL,
                       "repack: expected q4_0 or iq4_nl rows in groups of 16, got %s [%lld, %lld]",
                       lmp_dtype_info(w->dtype)->name, (long long)w->rows, (long long)w->cols);
    const size_t bytes = (size_t)w->rows * w->row_bytes;
    uint8_t *dst = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!dst)
        return lmp_err(LMP_ENOMEM, "out of memory repacking a [%lld, %lld] %s matrix",
                       (long long)w->rows, (long long)w->cols, lmp_dtype_info(w->dtype)->name);
    const uint8_t *src = w->data;
    const size_t rb = w->row_bytes;
    const int64_t ng = w->rows / 16, nb = w->cols / 32;
#pragma omp parallel for schedule(static) if (bytes >= (1 << 20))
    for (int64_t g = 0; g < ng; g++)
        for (int64_t b = 0; b < nb; b++)
            pack_block(src + (size_t)g * 16 * rb, rb, nb, b, dst + (size_t)g * 16 * rb);
    w->data = dst;
    w->layout = LMP_WL_Q4_0X16;
    *buf = dst;
    return LMP_OK;
}

void lmp_k_x16_rows(const lmp_wmat *W, int64_t n0, int nv, int64_t b0, int64_t nb, void *dst)
{
    const int64_t nbg = W->cols / 32;
    for (int i = 0; i < nv; i++) {
        const int64_t n = n0 + i;
        const int r = (int)(n % 16);
        const uint8_t *grp = x16_group_at(W, n / 16);
        lmp_block_q4_0 *out = (lmp_block_q4_0 *)((uint8_t *)dst + (size_t)i * nb * 18);
        for (int64_t b = 0; b < nb; b++) {
            memcpy(&out[b].d, grp + x16_scales(nbg, b0 + b) + 2 * r, 2);
            for (int j = 0; j < 4; j++)
                memcpy(out[b].qs + 4 * j, grp + x16_words(b0 + b) + 64 * j + 4 * r, 4);
        }
    }
}

void lmp_wmat_row_raw(const lmp_wmat *w, int64_t r, void *dst)
{
    if (w->layout == LMP_WL_Q4_0X16)
        lmp_k_x16_rows(w, r, 1, 0, w->cols / 32, dst);
    else
        memcpy(dst, (const uint8_t *)w->data + (size_t)r * w->row_bytes, w->row_bytes);
}

/* Per row: s += (float)isum * (dw * dx) block by block, isum over val[code] (q4_0: code - 8;
 * iq4_nl: its code table), as ref_dotq_q4_0 (kernels_ref.c) and ref_dotq_iq4_nl
 * (kernels_lowbit.c) do, so the reference gives the same bits in either layout. */
static void gemv_x16_ref(const int8_t val[16], const void *grp, const void *xq, int64_t n, float out[16])
{
    const int8_t *xs = xq;
    const float *xd = lmp_xq8_d(xq, n);
    const int64_t nb = n / 32;
    for (int r = 0; r < 16; r++)
        out[r] = 0.0f;
    for (int64_t b = 0; b < nb; b++) {
        const uint8_t *q = (const uint8_t *)grp + x16_words(b);
        const uint8_t *d = (const uint8_t *)grp + x16_scales(nb, b);
        const int8_t *x = xs + 32 * b;
        for (int r = 0; r < 16; r++) {
            uint16_t h;
            memcpy(&h, d + 2 * r, 2);
            int32_t is = 0;
            for (int j = 0; j < 4; j++)
                for (int t = 0; t < 4; t++) {
                    const uint8_t v = q[64 * j + 4 * r + t];
                    is += val[v & 15] * x[4 * j + t] + val[v >> 4] * x[16 + 4 * j + t];
                }
            out[r] += (float)is * (lmp_f16_to_f32(h) * xd[b]);
        }
    }
}

static void gemv_q4x16_ref(const void *grp, const void *xq, int64_t n, float out[16])
{
    static const int8_t q4[16] = { -8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7 };
    gemv_x16_ref(q4, grp, xq, n, out);
}

static void gemv_iq4nlx16_ref(const void *grp, const void *xq, int64_t n, float out[16])
{
    static const int8_t nl[16] = LMP_IQ4NL_VALUES;
    gemv_x16_ref(nl, grp, xq, n, out);
}

void lmp_kimpl_fill_repack_ref(lmp_kimpl *k)
{
    k->gemv_q4x16 = gemv_q4x16_ref;
    k->gemv_iq4nlx16 = gemv_iq4nlx16_ref;
}
