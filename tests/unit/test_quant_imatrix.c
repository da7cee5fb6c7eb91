/*
 * llama.cpp imatrix files (lib/quant/imatrix.c): the legacy binary .dat and the GGUF
 * format read into the weights llama-quantize uses (value / ncall; in_sum2 / count),
 * the trailer (chunk count, dataset), lmp_imatrix_file_save -> load round trip, and
 * broken files refused with a message (truncation at every byte, bad counts and
 * lengths, duplicates, non-finite or negative values, trailing garbage).
 */
#include "test.h"
#include "lib/io/io.h"
#include "lib/quant/quant.h"

#include <math.h>

static char g_dir[256];

typedef struct {
    uint8_t b[4096];
    size_t n;
} buf;

static void put(buf *b, const void *p, size_t n)
{
    memcpy(b->b + b->n, p, n);
    b->n += n;
}
static void put32(buf *b, int32_t v) { put(b, &v, 4); }
static void putf(buf *b, float v) { put(b, &v, 4); }
static void put_entry(buf *b, const char *name, int32_t ncall, int32_t nval, const float *v)
{
    put32(b, (int32_t)strlen(name));
    put(b, name, strlen(name));
    put32(b, ncall);
    put32(b, nval);
    for (int32_t i = 0; i < nval; i++)
        putf(b, v[i]);
}

static const char *write_buf(const buf *b, const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b->b, 1, b->n, f);
        fclose(f);
    }
    return path;
}

/* Loads b and expects LMP_EFORMAT whose message contains `want`. */
static void expect_broken(const buf *b, const char *label, const char *want)
{
    lmp_imatrix_file f;
    int rc = lmp_imatrix_file_load(write_buf(b, "broken.dat"), &f);
    const char *msg = lmp_errmsg();
    CHECK(rc == LMP_EFORMAT, "%s: status %d, want LMP_EFORMAT (%s)", label, rc, msg);
    CHECK(!want || strstr(msg, want), "%s: message '%s' lacks '%s'", label, msg, want);
    CHECK(f.n_entries == 0 && !f.names && !f.values, "%s: a failed load leaves the struct cleared", label);
}

static void good_file(buf *b, bool trailer)
{
    const float a[4] = {3.f, 6.f, 0.f, 1.5f}, c[2] = {10.f, 20.f};
    b->n = 0;
    put32(b, 2);
    put_entry(b, "blk.0.attn_q.weight", 3, 4, a);
    put_entry(b, "blk.0.ffn_down.weight", 0, 2, c); /* ncall 0: values as stored */
    if (trailer) {
        put32(b, 7);
        put32(b, 8);
        put(b, "wiki.raw", 8);
    }
}

static void test_legacy(void)
{
    buf b;
    for (int tr = 0; tr < 2; tr++) {
        good_file(&b, tr);
        lmp_imatrix_file f;
        int rc = lmp_imatrix_file_load(write_buf(&b, "good.dat"), &f);
        CHECK(rc == 0, "valid legacy file (trailer %d): %s", tr, lmp_errmsg());
        if (rc)
            continue;
        int64_t n = 0;
        const float *q = lmp_imatrix_file_get(&f, "blk.0.attn_q.weight", &n);
        CHECK(q && n == 4 && q[0] == 3.f / 3.f && q[1] == 6.f / 3.f && q[2] == 0.f && q[3] == 1.5f / 3.f,
              "attn_q weights = stored / ncall");
        const float *d = lmp_imatrix_file_get(&f, "blk.0.ffn_down.weight", &n);
        CHECK(d && n == 2 && d[0] == 10.f && d[1] == 20.f, "ncall 0: stored values");
        CHECK(!lmp_imatrix_file_get(&f, "blk.1.attn_q.weight", NULL), "absent entry: NULL");
        CHECK(lmp_imatrix_file_weights(&f, "blk.0.attn_q.weight", 4) == q, "weights hook finds the entry");
        CHECK(lmp_imatrix_file_weights(&f, "blk.0.attn_q.weight", 8) == NULL, "length mismatch: not used");
        CHECK(f.chunks == (tr ? 7 : 0) && (tr ? f.dataset && strcmp(f.dataset, "wiki.raw") == 0 : !f.dataset),
              "trailer: chunks %d dataset %s", f.chunks, f.dataset ? f.dataset : "(none)");
        lmp_imatrix_file_free(&f);
        lmp_imatrix_file_free(&f); /* twice is harmless */
    }

    /* every truncation of a valid file is refused (except at the end of an entry, where the
     * trailer is optional: those prefixes are valid files with fewer bytes) */
    good_file(&b, true);
    buf t;
    int refused = 0, accepted = 0;
    size_t ends[] = {4 + 4 + 19 + 4 + 4 + 16, 4 + 4 + 19 + 4 + 4 + 16 + 4 + 21 + 4 + 4 + 8};
    for (size_t k = 0; k < b.n; k++) {
        t.n = 0;
        put(&t, b.b, k);
        lmp_imatrix_file f;
        int rc = lmp_imatrix_file_load(write_buf(&t, "trunc.dat"), &f);
        if (rc == 0)
            accepted++;
        else
            refused++;
        bool may = k == ends[1] || k == ends[1] + 4; /* no trailer; the chunk count alone */
        (void)ends;
        if (rc == 0 && !may)
            CHECK(0, "a file truncated to %zu of %zu bytes was accepted", k, b.n);
        lmp_imatrix_file_free(&f);
    }
    printf("  truncations: %d refused, %d accepted (the trailer is optional)\n", refused, accepted);

    b.n = 0;
    expect_broken(&b, "empty file", "truncated");
    b.n = 0;
    put32(&b, 0);
    expect_broken(&b, "zero entries", "entry count 0");
    b.n = 0;
    put32(&b, 1000000);
    put32(&b, 4);
    expect_broken(&b, "huge entry count", "does not fit");
    const float one[2] = {1.f, 1.f};
    b.n = 0;
    put32(&b, 1);
    put32(&b, -5);
    expect_broken(&b, "negative name length", "name length -5");
    b.n = 0;
    put32(&b, 1);
    put32(&b, 100);
    put(&b, "blk.0", 5);
    expect_broken(&b, "name past the end", "name length 100");
    /* files of one entry "x", each broken in one way (cut: bytes taken off the end) */
    const float bad[2] = {1.f, NAN}, neg[2] = {1.f, -0.5f};
    static const struct {
        const char *label, *want;
        int32_t ncall, nval;
        int vals; /* 0 one, 1 bad, 2 neg */
        size_t cut;
    } one_entry[] = {
        {"zero values", "0 values", 1, 0, 0, 0},
        {"values past the end", "do not fit", 1, 2, 0, 4},
        {"negative ncall", "negative call count", -2, 2, 0, 0},
        {"NaN value", "finite and non-negative", 1, 2, 1, 0},
        {"negative value", "finite and non-negative", 1, 2, 2, 0},
    };
    for (size_t i = 0; i < sizeof one_entry / sizeof *one_entry; i++) {
        const float *v = one_entry[i].vals == 1 ? bad : one_entry[i].vals == 2 ? neg : one;
        b.n = 0;
        put32(&b, 1);
        put_entry(&b, "x", one_entry[i].ncall, one_entry[i].nval, v);
        b.n -= one_entry[i].cut;
        expect_broken(&b, one_entry[i].label, one_entry[i].want);
    }
    b.n = 0;
    put32(&b, 2);
    put_entry(&b, "x", 1, 2, one);
    put_entry(&b, "x", 1, 2, one);
    expect_broken(&b, "duplicate entry", "appears twice");
    good_file(&b, true);
    put(&b, "junk", 4);
    expect_broken(&b, "bytes after the trailer", "unexpected bytes");
    good_file(&b, false);
    put32(&b, 3);
    put32(&b, 50);
    expect_broken(&b, "dataset length past the end", "dataset name length 50");
    good_file(&b, false);
    put(&b, "ab", 2);
    expect_broken(&b, "two stray bytes after the entries", "truncated");

    lmp_imatrix_file f;
    char miss[512];
    snprintf(miss, sizeof miss, "%s/none.dat", g_dir);
    CHECK(lmp_imatrix_file_load(miss, &f) != 0, "missing file refused");
}

/* A GGUF imatrix (llama-imatrix's current format) written with lmp_gguf_writer. */
static void test_gguf(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/im.gguf", g_dir);
    lmp_gguf_writer *w = NULL;
    int rc = lmp_gguf_writer_new(&w, path, true);
    const float sums[4] = {2.f, 4.f, 6.f, 9.f}, counts[1] = {2.f};
    int64_t s1[2] = {1, 4}, s2[2] = {1, 1};
    if (!rc)
        rc = lmp_gguf_set_u32(w, "imatrix.chunk_count", 5);
    if (!rc)
        rc = lmp_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight.in_sum2", LMP_DT_F32, 2, s1);
    if (!rc)
        rc = lmp_gguf_writer_add_tensor(w, "blk.0.ffn_up.weight.counts", LMP_DT_F32, 2, s2);
    if (!rc)
        rc = lmp_gguf_writer_begin(w);
    if (!rc)
        rc = lmp_gguf_writer_write(w, sums, sizeof sums);
    if (!rc)
        rc = lmp_gguf_writer_write(w, counts, sizeof counts);
    if (!rc) {
        rc = lmp_gguf_writer_finish(w);
        w = NULL;
    }
    lmp_gguf_writer_abort(w);
    CHECK(rc == 0, "writing a GGUF imatrix: %s", lmp_errmsg());
    if (rc)
        return;
    lmp_imatrix_file f;
    rc = lmp_imatrix_file_load(path, &f);
    CHECK(rc == 0, "GGUF imatrix: %s", lmp_errmsg());
    if (rc)
        return;
    int64_t n = 0;
    const float *v = lmp_imatrix_file_get(&f, "blk.0.ffn_up.weight", &n);
    CHECK(v && n == 4 && v[0] == 1.f && v[1] == 2.f && v[2] == 3.f && v[3] == 4.5f, "GGUF: in_sum2 / counts");
    CHECK(f.chunks == 5 && f.n_entries == 1, "GGUF: chunk count %d, entries %d", f.chunks, f.n_entries);
    lmp_imatrix_file_free(&f);
}

/* lmp_imatrix_file_save writes what lmp_imatrix_file_load reads back (E[x^2] * chunks
 * / chunks: exact for a power-of-two chunk count). */
static void test_save_roundtrip(void)
{
    lmp_imatrix im = {0};
    im.n_layers = 2;
    const int64_t cols[LMP_LIN_COUNT] = {8, 8, 8, 8, 8, 8, 16};
    memcpy(im.cols, cols, sizeof cols);
    int64_t per = 8 + 8 + 8 + 16;
    im.v = malloc(sizeof(float) * (size_t)(im.n_layers * per));
    for (int64_t i = 0; i < im.n_layers * per; i++)
        im.v[i] = 0.125f * (float)(i % 13) + 0.01f;
    im.n_chunks = 4;
    im.n_entries = im.n_layers * LMP_LIN_COUNT;
    char path[512];
    snprintf(path, sizeof path, "%s/saved.dat", g_dir);
    int rc = lmp_imatrix_file_save(path, &im, "calib.txt", true);
    CHECK(rc == 0, "save: %s", lmp_errmsg());
    CHECK(lmp_imatrix_file_save(path, &im, NULL, false) == LMP_EEXIST, "save refuses an existing file");
    lmp_imatrix_file f;
    rc = rc ? rc : lmp_imatrix_file_load(path, &f);
    CHECK(rc == 0, "load the saved file: %s", lmp_errmsg());
    if (rc) {
        free(im.v);
        return;
    }
    CHECK(f.n_entries == 14 && f.chunks == 4 && f.dataset && strcmp(f.dataset, "calib.txt") == 0,
          "saved: %d entries, %d chunks", f.n_entries, f.chunks);
    const char *nm[LMP_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    int same = 0;
    for (int l = 0; l < 2; l++)
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, nm[k]);
            int64_t n = 0;
            const float *v = lmp_imatrix_file_get(&f, name, &n), *want = lmp_imatrix_get(&im, l, (lmp_linear)k);
            same += v && want && n == cols[k] && memcmp(v, want, sizeof(float) * (size_t)n) == 0;
        }
    CHECK(same == 14, "%d of 14 entries read back bit-identical", same);
    for (int i = 1; i < f.n_entries; i++)
        CHECK(strcmp(f.names[i - 1], f.names[i]) < 0, "entries sorted by name as llama-imatrix writes them");
    lmp_imatrix_file_free(&f);
    free(im.v);
}

int main(void)
{
    snprintf(g_dir, sizeof g_dir, "%s/lmp-test-imatrix-%ld", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", g_dir);
    if (system(cmd) != 0)
        return 1;
    test_legacy();
    test_gguf();
    test_save_roundtrip();
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return test_finish();
}
