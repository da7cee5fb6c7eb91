/*
 * libFuzzer target for the HDF5 logits reader (lib/distill/logits_file.c: lw_reader_open,
 * lw_reader_read). Two input forms:
 *
 *  - an HDF5 file image (starts with the HDF5 signature): written to a scratch file and
 *    opened as it is (damaged attributes, datasets, chunks, checksums);
 *  - anything else is a recipe: the first 8 bytes choose the header (vocab 1..64, k,
 *    ctx 1..16, full, f32 log-probs, 0..3 sequences, temperature) and which root
 *    attribute to overwrite afterwards with a value taken from the input; the rest of the
 *    bytes are the sequences' raw contents (ids, log-probs, log-sum-exps, rest mass as
 *    bit patterns: NaN, Inf, positive log-probs, duplicate or out-of-range ids). The file
 *    is written with the real writer, so the reader's value checks are what is fuzzed.
 *
 * Whatever the reader accepts must satisfy the invariants the consumers rely on (ids in
 * range, finite values, log-probs <= 0, rest mass in [0, 1]); they are asserted here.
 */
#include "lib/distill/distill_internal.h"

#include <assert.h>
#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_path[256];

typedef struct {
    const uint8_t *p;
    size_t n, i;
} src;

static uint8_t byte(src *s) { return s->i < s->n ? s->p[s->i++] : 0; }
static void take(src *s, void *dst, size_t n)
{
    uint8_t *d = dst;
    for (size_t i = 0; i < n; i++)
        d[i] = byte(s);
}

static float lp_value(const lw_header *h, const lw_seq *s, int64_t j)
{
    return h->f32 ? ((const float *)s->topk_lp)[j] : lmp_f16_to_f32(((const uint16_t *)s->topk_lp)[j]);
}

static void check_read(const char *path)
{
    lw_reader *r = NULL;
    if (lw_reader_open(&r, path) != 0)
        return;
    const lw_header *h = lw_reader_header(r);
    lw_seq s;
    if (h->ctx <= 64 && h->vocab <= 4096 && lw_seq_alloc(&s, h) == 0) {
        for (int64_t row = 0; row < h->n_seqs && row < 8; row++) {
            if (lw_reader_read(r, row, &s) != 0)
                continue;
            for (int j = 0; j < h->ctx; j++) {
                assert(s.tokens[j] >= 0 && s.tokens[j] < h->vocab);
                assert(s.targets[j] >= -1 && s.targets[j] < h->vocab);
                assert(isfinite(s.lse[j]));
                if (s.targets[j] >= 0)
                    assert(isfinite(s.target_lp[j]) && s.target_lp[j] <= 0);
                if (h->k > 0)
                    assert(s.rest[j] >= 0 && s.rest[j] <= 1);
                for (int a = 0; a < h->k; a++) {
                    int64_t ja = (int64_t)j * h->k + a;
                    float v = lp_value(h, &s, ja);
                    assert(s.topk_ids[ja] >= 0 && s.topk_ids[ja] < h->vocab);
                    assert(v <= 0 && !isnan(v));
                    for (int b = 0; b < a; b++)
                        assert(s.topk_ids[ja] != s.topk_ids[(int64_t)j * h->k + b]);
                }
            }
        }
        lw_seq_free(&s);
    }
    lw_reader_close(r);
    /* every file, dataset, attribute and type the reader opened is closed again */
    assert(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_path[0]) {
        snprintf(g_path, sizeof g_path, "%s/lmpress-fuzz-logits.%ld.h5",
                 access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
        lmp_log_level = LMP_LOG_ERROR; /* the "written without checksums" note, per input */
    }
    if (size >= 8 && memcmp(data, "\x89HDF\r\n\x1a\n", 8) == 0) {
        FILE *f = fopen(g_path, "wb");
        if (!f)
            return 0;
        fwrite(data, 1, size, f);
        fclose(f);
        check_read(g_path);
        unlink(g_path);
        return 0;
    }
    src in = {data, size, 0};
    lw_header h;
    memset(&h, 0, sizeof h);
    uint8_t b0 = byte(&in), b1 = byte(&in), b2 = byte(&in), b3 = byte(&in);
    uint8_t b4 = byte(&in), b5 = byte(&in), b6 = byte(&in), b7 = byte(&in);
    h.vocab = 1 + b0 % 64;
    h.k = b1 % (h.vocab + 1);
    h.ctx = 1 + b2 % 16;
    h.full = b3 & 1;
    h.f32 = (b3 >> 1) & 1;
    if (h.k == 0 && !h.full)
        h.full = true;
    int nseq = (b3 >> 2) & 3;
    h.temperature = 0.5 + b4 / 64.0;
    snprintf(h.teacher, sizeof h.teacher, "fuzz");
    snprintf(h.protocol, sizeof h.protocol, b5 & 1 ? "kld-bos" : "kld-plain");
    h.bos = b5 & 1 ? 0 : -1;
    h.n_text_tokens = (int64_t)h.ctx * nseq;
    h.n_windows = nseq > 0 ? nseq : 1;
    h.shard_count = 1;
    lw_writer *w = NULL;
    if (lw_writer_open(&w, g_path, &h, 0, true) != 0)
        return 0;
    lw_seq s;
    if (lw_seq_alloc(&s, &h) != 0) {
        lw_writer_close(w, false);
        return 0;
    }
    size_t lps = h.f32 ? 4 : 2;
    for (int q = 0; q < nseq; q++) {
        s.seq_index = q;
        for (int j = 0; j < h.ctx; j++) {
            s.tokens[j] = (int8_t)byte(&in) % (h.vocab + 2);
            s.targets[j] = (int8_t)byte(&in) % (h.vocab + 2);
            take(&in, &s.target_lp[j], 4);
            take(&in, &s.lse[j], 4);
            take(&in, &s.rest[j], 4);
        }
        for (int64_t j = 0; j < (int64_t)h.ctx * h.k; j++) {
            s.topk_ids[j] = (int8_t)byte(&in) % (h.vocab + 2);
            take(&in, (uint8_t *)s.topk_lp + j * lps, lps);
        }
        if (h.full)
            take(&in, s.full_lp, (size_t)h.ctx * h.vocab * lps);
        lw_writer_append(w, &s);
    }
    lw_seq_free(&s);
    if (lw_writer_close(w, true) != 0)
        return 0;
    /* optionally overwrite one root attribute with an arbitrary value */
    static const char *const keys[] = {"vocab_size", "k", "ctx", "full", "bos", "n_sequences",
                                       "shard_index", "shard_count", "n_windows", "format_version"};
    if (b6 & 0x80) {
        lmp_h5 *f = NULL;
        if (lmp_h5_open(&f, g_path, true) == 0) {
            int64_t v = (int8_t)b7;
            if (b6 & 0x40)
                lmp_h5_attr_set_f64(f, "/", "temperature", b7 == 0 ? NAN : b7 == 1 ? -1.0 : 1e300);
            else
                lmp_h5_attr_set_i64(f, "/", keys[b6 % 10], v);
            lmp_h5_close(f, false);
        }
    }
    check_read(g_path);
    unlink(g_path);
    return 0;
}
