/*
 * lib/io safetensors: bit-exact write -> read round trips (every dtype, 0-d and empty
 * tensors, metadata, escaped names, header alignment, many small writes across tensor
 * boundaries, sharding through an index), atomic output (abort and failures leave
 * nothing, existing outputs refused without force), broken files built in code (each
 * refused with a message naming the file and the defect), broken sharded checkpoints,
 * and the real fixtures (stories260K, gutenberg-5M F32 vs BF16, the hf-meta indexes whose
 * shards are absent). With LMP_SEED_CORPUS=<folder> it also writes the fuzz seeds.
 */
#include "lib/io/safetensors.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <sys/stat.h>

static const char *seed_dir;

static char *tpath(const char *name)
{
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 1024, "%s/%s", tmpdir(), name);
    return b;
}

static int write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static uint8_t *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    if (lmp_read_file(path, &buf, n) != LMP_OK)
        return NULL;
    return (uint8_t *)buf;
}

/* Files in a folder (0 if it does not exist). */
static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (!d)
        return 0;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") &&
            !lmp_str_endswith(e->d_name, ".lmpress-lock")) /* held while writing */
            n++;
    closedir(d);
    return n;
}

/* u64 LE length + header text + data bytes (zeros when data is NULL). */
static uint8_t *image(const char *json, const void *data, size_t dn, size_t *n)
{
    size_t hn = strlen(json);
    uint8_t *b = calloc(1, 8 + hn + dn + 1);
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)((uint64_t)hn >> (8 * i));
    memcpy(b + 8, json, hn);
    if (data)
        memcpy(b + 8 + hn, data, dn);
    *n = 8 + hn + dn;
    return b;
}

static void save_seed(const char *name, const void *data, size_t n)
{
    if (!seed_dir || n >= 4096)
        return;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", seed_dir, name);
    write_file(p, data, n);
}

/* ---------------------------------------------------------------- round trip */

typedef struct {
    const char *name;
    lmp_dtype dt;
    int ndim;
    int64_t shape[4];
} spec;

static const spec g_specs[] = {
    {"f32.matrix", LMP_DT_F32, 2, {3, 5}},
    {"f16.vec", LMP_DT_F16, 1, {7}},
    {"bf16.cube", LMP_DT_BF16, 3, {2, 3, 4}},
    {"f64.4d", LMP_DT_F64, 4, {2, 1, 2, 3}},
    {"i64", LMP_DT_I64, 1, {3}},
    {"i32", LMP_DT_I32, 2, {4, 1}},
    {"i16", LMP_DT_I16, 1, {5}},
    {"i8", LMP_DT_I8, 1, {9}},
    {"u8", LMP_DT_U8, 2, {1, 13}},
    {"bool", LMP_DT_BOOL, 1, {6}},
    {"scalar", LMP_DT_F32, 0, {0}},
    {"empty", LMP_DT_F32, 2, {0, 4}},
    {"empty.i8", LMP_DT_I8, 1, {0}},
    {"quote\"back\\slash\ttab \xc3\xa9", LMP_DT_F16, 1, {2}},
};
#define N_SPECS ((int)(sizeof g_specs / sizeof g_specs[0]))

static size_t spec_bytes(const spec *s)
{
    size_t n = lmp_dtype_info(s->dt)->type_size;
    for (int i = 0; i < s->ndim; i++)
        n *= (size_t)s->shape[i];
    return n;
}

/* Random contents for every spec, concatenated in order. */
static uint8_t *spec_data(size_t *total, uint64_t seed)
{
    lmp_rng rng;
    size_t n = 0;
    for (int i = 0; i < N_SPECS; i++)
        n += spec_bytes(&g_specs[i]);
    uint8_t *d = malloc(n + 1);
    lmp_rng_seed(&rng, seed);
    size_t k = 0;
    for (int i = 0; i < N_SPECS; i++)
        for (size_t j = 0; j < spec_bytes(&g_specs[i]); j++, k++)
            d[k] = g_specs[i].dt == LMP_DT_BOOL ? (uint8_t)(lmp_rng_next(&rng) & 1)
                                                : (uint8_t)lmp_rng_next(&rng);
    *total = n;
    return d;
}

static int declare_all(lmp_st_writer *w, bool meta)
{
    int rc = 0;
    if (meta) {
        rc |= lmp_st_writer_meta(w, "format", "pt");
        rc |= lmp_st_writer_meta(w, "note", "a \"quoted\"\nline \xe2\x9c\x93");
    }
    for (int i = 0; i < N_SPECS; i++)
        rc |= lmp_st_writer_add(w, g_specs[i].name, g_specs[i].dt, g_specs[i].ndim,
                                g_specs[i].shape);
    return rc;
}

/* Checks that r holds exactly the specs with `data` (concatenated in spec order). */
static void check_specs(const lmp_st_reader *r, const uint8_t *data, const char *what)
{
    CHECK(r->n_tensors == N_SPECS, "%s: %d tensors", what, r->n_tensors);
    size_t off = 0;
    int bad = 0;
    for (int i = 0; i < N_SPECS; i++) {
        const spec *s = &g_specs[i];
        const lmp_tensor *t = lmp_st_find(r, s->name);
        size_t nb = spec_bytes(s);
        if (!t) {
            CHECK(t != NULL, "%s: tensor '%s' not found", what, s->name);
            off += nb;
            continue;
        }
        bool ok = t->dtype == s->dt && t->ndim == s->ndim && t->nbytes == nb && !t->owned;
        for (int d = 0; d < s->ndim; d++)
            ok = ok && t->shape[d] == s->shape[d];
        ok = ok && (nb == 0 || memcmp(t->data, data + off, nb) == 0);
        if (!ok) {
            bad++;
            fprintf(stderr, "%s: tensor '%s' differs\n", what, s->name);
        }
        off += nb;
    }
    CHECK(bad == 0, "%s: %d tensors differ", what, bad);
    CHECK(lmp_st_find(r, "no.such.tensor") == NULL, "%s: found a missing tensor", what);
}

static void test_round_trip(void)
{
    size_t total;
    uint8_t *data = spec_data(&total, 1234);
    const char *p1 = tpath("rt.safetensors"), *p2 = tpath("rt-small-writes.safetensors");
    lmp_st_writer *w = NULL;

    /* one write() per tensor */
    int rc = lmp_st_writer_new(&w, p1, 0, false);
    CHECK(rc == 0, "writer_new: %s", lmp_errmsg());
    if (rc)
        return;
    CHECK(declare_all(w, true) == 0, "declare: %s", lmp_errmsg());
    CHECK(lmp_st_writer_begin(w) == 0, "begin: %s", lmp_errmsg());
    size_t off = 0;
    for (int i = 0; i < N_SPECS; i++) {
        size_t nb = spec_bytes(&g_specs[i]);
        CHECK(lmp_st_writer_write(w, data + off, nb) == 0, "write: %s", lmp_errmsg());
        off += nb;
    }
    CHECK(!lmp_path_exists(p1), "output visible before finish");
    rc = lmp_st_writer_finish(w);
    CHECK(rc == 0, "finish: %s", lmp_errmsg());

    lmp_st_reader r;
    rc = lmp_st_open(&r, p1);
    CHECK(rc == 0, "reopen: %s", lmp_errmsg());
    if (rc == 0) {
        check_specs(&r, data, "round trip");
        CHECK(r.n_meta == 2 && lmp_st_meta(&r, "format") && strcmp(lmp_st_meta(&r, "format"), "pt") == 0,
              "metadata format");
        CHECK(lmp_st_meta(&r, "note") &&
                  strcmp(lmp_st_meta(&r, "note"), "a \"quoted\"\nline \xe2\x9c\x93") == 0,
              "metadata note");
        CHECK(lmp_st_meta(&r, "absent") == NULL, "absent metadata key");
        /* file order is the declared order */
        int order_ok = 1;
        for (int i = 0; i < r.n_tensors && i < N_SPECS; i++)
            order_ok &= strcmp(r.tensors[i].name, g_specs[i].name) == 0;
        CHECK(order_ok, "tensors not in declared order");
        lmp_st_close(&r);
    }

    /* header: aligned, __metadata__ first, [] for the scalar, integers only */
    size_t fn = 0;
    uint8_t *file = slurp(p1, &fn);
    CHECK(file && fn >= 8, "cannot read back %s", p1);
    if (file && fn >= 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--)
            n = (n << 8) | file[i];
        CHECK((8 + n) % 8 == 0, "header length %" PRIu64 ": 8 + N not a multiple of 8", n);
        CHECK(8 + n + total == fn, "file size %zu, expected %" PRIu64, fn, 8 + n + total);
        char *hdr = strndup((const char *)file + 8, (size_t)n);
        CHECK(strncmp(hdr, "{\"__metadata__\":{", 17) == 0, "header starts %.30s", hdr);
        CHECK(strstr(hdr, "\"scalar\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[") != NULL,
              "scalar entry not written as shape []: %s", hdr);
        size_t end = strlen(hdr);
        while (end && hdr[end - 1] == ' ')
            end--;
        CHECK(end && hdr[end - 1] == '}', "header does not end with '}' before padding");
        cJSON *j = cJSON_Parse(hdr);
        CHECK(j != NULL, "header is not JSON");
        int floats = 0;
        for (cJSON *e = j ? j->child : NULL; e; e = e->next) {
            cJSON *s = cJSON_GetObjectItemCaseSensitive(e, "shape");
            cJSON *o = cJSON_GetObjectItemCaseSensitive(e, "data_offsets");
            for (cJSON *v = s ? s->child : NULL; v; v = v->next)
                floats += v->valuedouble != (double)(int64_t)v->valuedouble;
            for (cJSON *v = o ? o->child : NULL; v; v = v->next)
                floats += v->valuedouble != (double)(int64_t)v->valuedouble;
        }
        CHECK(floats == 0, "non-integer numbers in the header");
        CHECK(strchr(hdr, '.') == NULL || strstr(hdr, "f32.matrix"), "header has a '.'");
        cJSON_Delete(j);
        free(hdr);
    }

    /* the same bytes through many small writes that cross tensor boundaries */
    rc = lmp_st_writer_new(&w, p2, 0, false);
    CHECK(rc == 0, "writer_new: %s", lmp_errmsg());
    if (rc == 0) {
        declare_all(w, true);
        CHECK(lmp_st_writer_begin(w) == 0, "begin: %s", lmp_errmsg());
        lmp_rng rng;
        lmp_rng_seed(&rng, 99);
        int calls = 0;
        for (off = 0; off < total;) {
            size_t k = 1 + lmp_rng_next(&rng) % 23;
            if (k > total - off)
                k = total - off;
            CHECK(lmp_st_writer_write(w, data + off, k) == 0, "small write: %s", lmp_errmsg());
            off += k;
            calls++;
            if (calls % 5 == 0)
                CHECK(lmp_st_writer_write(w, NULL, 0) == 0, "zero-length write");
        }
        CHECK(lmp_st_writer_finish(w) == 0, "finish: %s", lmp_errmsg());
        size_t fn2 = 0;
        uint8_t *file2 = slurp(p2, &fn2);
        CHECK(file && file2 && fn == fn2 && memcmp(file, file2, fn) == 0,
              "small writes (%d calls) gave different bytes", calls);
        free(file2);
    }
    if (file)
        save_seed("valid-all-dtypes.safetensors", file, fn);
    free(file);

    /* existing outputs are refused without force, replaced with it */
    rc = lmp_st_writer_new(&w, p1, 0, false);
    CHECK(rc == LMP_EEXIST, "existing output not refused: rc %d", rc);
    CHECK(strstr(lmp_errmsg(), p1) != NULL, "message does not name the file: %s", lmp_errmsg());
    rc = lmp_st_writer_new(&w, p1, 0, true);
    CHECK(rc == 0, "force: %s", lmp_errmsg());
    if (rc == 0) {
        int64_t sh[1] = {2};
        float v[2] = {1.5f, -2.0f};
        lmp_st_writer_add(w, "only", LMP_DT_F32, 1, sh);
        lmp_st_writer_begin(w);
        lmp_st_writer_write(w, v, sizeof v);
        CHECK(lmp_st_writer_finish(w) == 0, "forced finish: %s", lmp_errmsg());
        rc = lmp_st_open(&r, p1);
        CHECK(rc == 0 && r.n_tensors == 1 && r.n_meta == 0 &&
                  memcmp(r.tensors[0].data, v, sizeof v) == 0,
              "forced output not replaced");
        if (rc == 0) {
            size_t n;
            uint8_t *b = slurp(p1, &n);
            save_seed("valid-one.safetensors", b, n);
            free(b);
        }
        lmp_st_close(&r);
    }
    /* the same in memory */
    size_t n;
    uint8_t *b = slurp(p2, &n);
    rc = lmp_st_open_mem(&r, b, n, "mem.safetensors");
    CHECK(rc == 0, "open_mem: %s", lmp_errmsg());
    if (rc == 0)
        check_specs(&r, data, "open_mem");
    lmp_st_close(&r);
    lmp_st_close(&r); /* twice is fine */
    lmp_st_close(NULL);
    free(b);
    free(data);
}

/* ---------------------------------------------------------------- sharding */

static int expected_shards(uint64_t limit)
{
    int nsh = 1;
    uint64_t used = 0;
    for (int i = 0; i < N_SPECS; i++) {
        uint64_t nb = spec_bytes(&g_specs[i]);
        if (used > 0 && nb > 0 && used + nb > limit) {
            nsh++;
            used = 0;
        }
        used += nb;
    }
    return nsh;
}

static void test_sharded(void)
{
    size_t total;
    uint8_t *data = spec_data(&total, 777);
    const uint64_t limit = 64; /* the f32 matrix (60 B), the bf16 cube (48 B), ... */
    const char *dir = tpath("sharded");
    int nsh = expected_shards(limit);
    lmp_st_writer *w;
    int rc = lmp_st_writer_new(&w, dir, limit, false);
    CHECK(rc == 0, "writer_new: %s", lmp_errmsg());
    if (rc) {
        free(data);
        return;
    }
    declare_all(w, true);
    CHECK(lmp_st_writer_begin(w) == 0, "begin: %s", lmp_errmsg());
    for (size_t off = 0; off < total; off += 5)
        lmp_st_writer_write(w, data + off, total - off < 5 ? total - off : 5);
    CHECK(count_entries(dir) == 0 || count_entries(dir) <= nsh,
          "unexpected files while writing");
    rc = lmp_st_writer_finish(w);
    CHECK(rc == 0, "sharded finish: %s", lmp_errmsg());
    CHECK(nsh >= 4, "test expects several shards, got %d", nsh);
    CHECK(count_entries(dir) == nsh + 1, "%d files in %s, expected %d shards + index",
          count_entries(dir), dir, nsh);
    char name[256], *p;
    snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", nsh, nsh);
    p = lmp_path_join(dir, name);
    CHECK(lmp_path_exists(p), "%s missing", p);
    free(p);
    p = lmp_path_join(dir, "model.safetensors");
    CHECK(!lmp_path_exists(p), "model.safetensors written for a sharded output");
    free(p);

    /* every shard's data within the limit (or one tensor), all with the metadata */
    uint64_t sum = 0;
    for (int s = 1; s <= nsh; s++) {
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s, nsh);
        p = lmp_path_join(dir, name);
        lmp_st_reader r;
        rc = lmp_st_open(&r, p);
        CHECK(rc == 0, "shard %s: %s", name, lmp_errmsg());
        if (rc == 0) {
            uint64_t bytes = 0;
            for (int i = 0; i < r.n_tensors; i++)
                bytes += r.tensors[i].nbytes;
            CHECK(bytes <= limit || r.n_tensors == 1 || bytes == r.tensors[0].nbytes,
                  "shard %s holds %" PRIu64 " bytes", name, bytes);
            CHECK(lmp_st_meta(&r, "format") != NULL, "shard %s has no metadata", name);
            sum += bytes;
        }
        lmp_st_close(&r);
        free(p);
    }
    CHECK(sum == total, "shards hold %" PRIu64 " bytes, expected %zu", sum, total);

    /* index: total_size and a weight_map entry per tensor */
    char *idx = lmp_path_join(dir, "model.safetensors.index.json"), *text = NULL;
    size_t tl;
    CHECK(lmp_read_file(idx, &text, &tl) == 0, "no index: %s", lmp_errmsg());
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    CHECK(j != NULL, "index is not JSON");
    if (j) {
        cJSON *ts = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "metadata"), "total_size");
        CHECK(ts && cJSON_IsNumber(ts) && ts->valuedouble == (double)total, "total_size");
        cJSON *wm = cJSON_GetObjectItem(j, "weight_map");
        CHECK(cJSON_GetArraySize(wm) == N_SPECS, "weight_map has %d entries",
              cJSON_GetArraySize(wm));
        cJSON *e = cJSON_GetObjectItemCaseSensitive(wm, "f32.matrix");
        CHECK(e && cJSON_IsString(e) && strncmp(e->valuestring, "model-00001-of-", 15) == 0,
              "weight_map entry");
    }
    cJSON_Delete(j);
    free(text);

    /* read back through the folder and through the index */
    const char *ways[2] = {dir, idx};
    for (int k = 0; k < 2; k++) {
        lmp_st_reader r;
        rc = lmp_st_open(&r, ways[k]);
        CHECK(rc == 0, "open %s: %s", ways[k], lmp_errmsg());
        if (rc == 0) {
            check_specs(&r, data, ways[k]);
            CHECK(r.n_files == nsh, "%d files mapped", r.n_files);
            CHECK(lmp_st_meta(&r, "format") && strcmp(lmp_st_meta(&r, "format"), "pt") == 0,
                  "sharded metadata");
            int mono = 1;
            for (int i = 1; i < r.n_tensors; i++)
                mono &= r.tensor_file[i] >= r.tensor_file[i - 1];
            CHECK(mono, "tensors not grouped shard by shard");
        }
        lmp_st_close(&r);
    }
    free(idx);

    /* everything fits in one shard: model.safetensors and no index */
    const char *dir1 = tpath("one-shard");
    rc = lmp_st_writer_new(&w, dir1, 1 << 20, false);
    CHECK(rc == 0, "writer_new: %s", lmp_errmsg());
    if (rc == 0) {
        declare_all(w, false);
        lmp_st_writer_begin(w);
        lmp_st_writer_write(w, data, total);
        CHECK(lmp_st_writer_finish(w) == 0, "finish: %s", lmp_errmsg());
        CHECK(count_entries(dir1) == 1, "%d files for a one-shard output", count_entries(dir1));
        p = lmp_path_join(dir1, "model.safetensors");
        lmp_st_reader r;
        rc = lmp_st_open(&r, dir1);
        CHECK(rc == 0 && lmp_path_exists(p), "one shard: %s", lmp_errmsg());
        if (rc == 0)
            check_specs(&r, data, "one shard");
        lmp_st_close(&r);
        free(p);
    }

    /* a folder that already holds a model is refused without force; with force the
     * sharded output replaces model.safetensors (which would shadow it) */
    rc = lmp_st_writer_new(&w, dir1, limit, false);
    if (rc == 0) {
        declare_all(w, false);
        rc = lmp_st_writer_begin(w);
        lmp_st_writer_abort(w);
    }
    CHECK(rc == LMP_EEXIST, "existing folder output not refused: %d", rc);
    CHECK(count_entries(dir1) == 1, "refused write left files");
    rc = lmp_st_writer_new(&w, dir1, limit, true);
    if (rc == 0) {
        declare_all(w, false);
        lmp_st_writer_begin(w);
        lmp_st_writer_write(w, data, total);
        rc = lmp_st_writer_finish(w);
    }
    CHECK(rc == 0, "forced sharded write: %s", lmp_errmsg());
    CHECK(count_entries(dir1) == nsh + 1, "%d files after forced sharded write",
          count_entries(dir1));
    free(data);
}

/* ---------------------------------------------------------------- atomicity */

static void test_abort_and_failures(void)
{
    int64_t sh[2] = {4, 4};
    float v[16] = {0};
    lmp_st_writer *w;

    /* abort after a partial write into a new folder: nothing left, folder removed */
    const char *dir = tpath("aborted/deeper");
    int rc = lmp_st_writer_new(&w, dir, 32, false);
    CHECK(rc == 0, "writer_new: %s", lmp_errmsg());
    if (rc == 0) {
        lmp_st_writer_add(w, "a", LMP_DT_F32, 2, sh);
        lmp_st_writer_add(w, "b", LMP_DT_F32, 2, sh);
        lmp_st_writer_add(w, "c", LMP_DT_F32, 2, sh);
        CHECK(lmp_st_writer_begin(w) == 0, "begin: %s", lmp_errmsg());
        lmp_st_writer_write(w, v, sizeof v);
        lmp_st_writer_write(w, v, 10);
        lmp_st_writer_abort(w);
    }
    CHECK(!lmp_path_exists(dir) && !lmp_path_exists(tpath("aborted")),
          "abort left the folders it created");
    lmp_st_writer_abort(NULL);

    /* abort in an existing (empty) folder: still empty */
    dir = tpath("abort-existing");
    mkdir(dir, 0777);
    rc = lmp_st_writer_new(&w, dir, 0, false);
    if (rc == 0) {
        lmp_st_writer_add(w, "a", LMP_DT_F32, 2, sh);
        lmp_st_writer_begin(w);
        lmp_st_writer_write(w, v, 8);
        lmp_st_writer_abort(w);
    }
    CHECK(lmp_path_is_dir(dir) && count_entries(dir) == 0, "abort left %d files in %s",
          count_entries(dir), dir);

    /* finish with a tensor short: refused, nothing left */
    rc = lmp_st_writer_new(&w, dir, 0, false);
    if (rc == 0) {
        lmp_st_writer_add(w, "a", LMP_DT_F32, 2, sh);
        lmp_st_writer_add(w, "b", LMP_DT_F32, 2, sh);
        lmp_st_writer_begin(w);
        lmp_st_writer_write(w, v, sizeof v);
        rc = lmp_st_writer_finish(w);
        CHECK(rc != 0 && strstr(lmp_errmsg(), "'b'") && strstr(lmp_errmsg(), "0 of 64"),
              "short finish: rc %d, %s", rc, lmp_errmsg());
    }
    CHECK(count_entries(dir) == 0, "failed finish left %d files", count_entries(dir));

    /* more bytes than declared: refused at once, nothing left */
    rc = lmp_st_writer_new(&w, dir, 0, false);
    if (rc == 0) {
        lmp_st_writer_add(w, "a", LMP_DT_F32, 1, sh);
        lmp_st_writer_begin(w);
        rc = lmp_st_writer_write(w, v, 20);
        CHECK(rc != 0 && strstr(lmp_errmsg(), "past the last"), "overlong write: %s",
              lmp_errmsg());
        CHECK(count_entries(dir) == 0, "failed write left files");
        CHECK(lmp_st_writer_finish(w) != 0, "finish after failure succeeded");
    }
    CHECK(count_entries(dir) == 0, "failed write left %d files", count_entries(dir));

    /* declaration errors */
    rc = lmp_st_writer_new(&w, tpath("bad-decl.safetensors"), 0, false);
    if (rc == 0) {
        int64_t neg[1] = {-1}, five[5] = {1, 1, 1, 1, 1};
        CHECK(lmp_st_writer_add(w, "q", LMP_DT_Q4_0, 1, sh) == LMP_EUNSUPPORTED, "q4_0 accepted");
        CHECK(lmp_st_writer_add(w, "n", LMP_DT_F32, 1, neg) != 0, "negative dim accepted");
        CHECK(lmp_st_writer_add(w, "5", LMP_DT_F32, 5, five) != 0, "5 dims accepted");
        CHECK(lmp_st_writer_add(w, "", LMP_DT_F32, 1, sh) != 0, "empty name accepted");
        CHECK(lmp_st_writer_add(w, "__metadata__", LMP_DT_F32, 1, sh) != 0, "__metadata__ name");
        CHECK(lmp_st_writer_add(w, "bad\xff", LMP_DT_F32, 1, sh) != 0, "invalid UTF-8 name");
        CHECK(lmp_st_writer_meta(w, "k", "v") == 0 && lmp_st_writer_meta(w, "k", "w") != 0,
              "duplicate metadata key accepted");
        CHECK(lmp_st_writer_add(w, "x", LMP_DT_F32, 1, sh) == 0, "add");
        CHECK(lmp_st_writer_add(w, "x", LMP_DT_F32, 1, sh) == 0, "add (checked at begin)");
        rc = lmp_st_writer_begin(w);
        CHECK(rc != 0 && strstr(lmp_errmsg(), "'x'"), "duplicate name accepted: %s",
              lmp_errmsg());
        lmp_st_writer_abort(w);
    }
    CHECK(!lmp_path_exists(tpath("bad-decl.safetensors")), "refused declaration left a file");
    CHECK(lmp_st_writer_new(&w, tpath("x.safetensors"), 100, false) == LMP_EINVAL,
          "sharding a single file accepted");
}

/* ---------------------------------------------------------------- broken files */

typedef struct {
    const char *file;
    const char *json;
    size_t data_len;
    const char *word; /* must appear in the message */
    int code;         /* expected status, 0: any non-zero */
} bad_case;

static const bad_case g_bad[] = {
    {"bad-not-brace.safetensors", "[1, 2]      ", 0, "'{'", LMP_EFORMAT},
    {"bad-space-first.safetensors", " {}", 0, "'{'", LMP_EFORMAT},
    {"bad-json.safetensors", "{\"a\": {\"dtype\": ", 0, "not valid JSON", LMP_EFORMAT},
    {"bad-trailing-json.safetensors", "{} x", 0, "not valid JSON", LMP_EFORMAT},
    {"bad-overlap.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, "overlap", LMP_EFORMAT},
    {"bad-hole.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, "hole", LMP_EFORMAT},
    {"bad-hole-first.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole", LMP_EFORMAT},
    {"bad-trailing.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
     8, "trailing", LMP_EFORMAT},
    {"bad-trailing-empty.safetensors", "{}", 3, "trailing", LMP_EFORMAT},
    {"model.safetensors", "{\"a.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}",
     12, "tensor 'a.weight': data_offsets [0, 12] span 12 bytes but shape [2, 2] x F32 needs 16",
     LMP_EFORMAT},
    {"bad-dtype.safetensors", "{\"a\":{\"dtype\":\"F7\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "unknown dtype 'F7'", LMP_EUNSUPPORTED},
    {"bad-f8.safetensors", "{\"w\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}",
     2, "'w': dtype F8_E4M3", LMP_EUNSUPPORTED},
    {"bad-dtype-type.safetensors", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
     "dtype is not a string", LMP_EFORMAT},
    {"bad-dup.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     2, "duplicate tensor name 'a'", LMP_EFORMAT},
    {"bad-dup-meta.safetensors", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate",
     LMP_EFORMAT},
    {"bad-dup-field.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     "duplicate field", LMP_EFORMAT},
    {"bad-bounds.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}",
     4, "out of bounds", LMP_EFORMAT},
    {"bad-bounds-huge.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[18446744073709551615,0]}}", 4,
     "end < begin", LMP_EFORMAT},
    {"bad-shape-float.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "shape entry 0",
     LMP_EFORMAT},
    {"bad-shape-1.0.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}",
     4, "shape entry 0", LMP_EFORMAT},
    {"bad-shape-exp.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}",
     4, "shape entry 0", LMP_EFORMAT},
    {"bad-shape-neg.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,-1],\"data_offsets\":[0,8]}}", 8,
     "shape entry 1 is not a non-negative integer", LMP_EFORMAT},
    {"bad-shape-zero-lead.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, "shape entry 0",
     LMP_EFORMAT},
    {"bad-shape-str.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}",
     4, "shape entry 0", LMP_EFORMAT},
    {"bad-shape-type.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":3,\"data_offsets\":[0,12]}}",
     12, "shape is not an array", LMP_EFORMAT},
    {"bad-5d.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "5 dims",
     LMP_EUNSUPPORTED},
    {"bad-overflow.safetensors",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 0,
     "overflows", LMP_EFORMAT},
    {"bad-offset-float.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1.0]}}", 1, "data_offsets",
     LMP_EFORMAT},
    {"bad-offset-three.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}", 1, "two",
     LMP_EFORMAT},
    {"bad-end-before-begin.safetensors",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[8,4]}}", 8, "end < begin",
     LMP_EFORMAT},
    {"bad-missing.safetensors", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 0,
     "missing field \"data_offsets\"", LMP_EFORMAT},
    {"bad-entry.safetensors", "{\"a\":[1,2]}", 0, "not an object", LMP_EFORMAT},
    {"bad-meta-value.safetensors", "{\"__metadata__\":{\"format\":1}}", 0, "not a string",
     LMP_EFORMAT},
    {"bad-meta-type.safetensors", "{\"__metadata__\":[\"a\"]}", 0, "__metadata__ is not an object",
     LMP_EFORMAT},
    {"bad-utf8.safetensors", "{\"\xc3\x28\":{}}", 0, "UTF-8", LMP_EFORMAT},
    {"bad-control.safetensors", "{\"a\tb\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}",
     0, "control character", LMP_EFORMAT},
    {"bad-nul-escape.safetensors",
     "{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, "NUL",
     LMP_EUNSUPPORTED},
};

/* Writes bytes to tmp/<file> (in a folder of its own, so names can repeat), opens it, and
 * checks the refusal: code, file name and defect word in the message; the same bytes
 * through lmp_st_open_mem. */
static void expect_refused(const char *file, const uint8_t *b, size_t n, const char *word, int code)
{
    char sub[256];
    static int k;
    snprintf(sub, sizeof sub, "bad%d", k++);
    char *d = tpath(sub);
    mkdir(d, 0777);
    char *p = lmp_path_join(d, file);
    write_file(p, b, n);
    lmp_st_reader r;
    int rc = lmp_st_open(&r, p);
    const char *m = lmp_errmsg();
    CHECK(rc != 0, "%s accepted", file);
    CHECK(code == 0 || rc == code, "%s: rc %d (%s), expected %d", file, rc, lmp_strstatus(rc), code);
    CHECK(strstr(m, p) != NULL, "%s: message does not name the file: %s", file, m);
    CHECK(strstr(m, word) != NULL, "%s: message lacks '%s': %s", file, word, m);
    CHECK(r.tensors == NULL && r.n_tensors == 0 && r.files == NULL, "%s: reader not cleared", file);
    lmp_st_close(&r);
    rc = lmp_st_open_mem(&r, b, n, file);
    CHECK(rc != 0 && strstr(lmp_errmsg(), word) && strstr(lmp_errmsg(), file),
          "%s: open_mem rc %d: %s", file, rc, lmp_errmsg());
    lmp_st_close(&r);
    save_seed(file, b, n);
    free(p);
}

static void test_broken(void)
{
    int cases = 0;
    for (size_t i = 0; i < sizeof g_bad / sizeof g_bad[0]; i++) {
        size_t n;
        uint8_t *b = image(g_bad[i].json, NULL, g_bad[i].data_len, &n);
        expect_refused(g_bad[i].file, b, n, g_bad[i].word, g_bad[i].code);
        free(b);
        cases++;
    }

    /* truncated: shorter than the length field */
    uint8_t t5[5] = {8, 0, 0, 0, 0};
    expect_refused("bad-truncated.safetensors", t5, sizeof t5, "truncated", LMP_EFORMAT);
    expect_refused("bad-empty.safetensors", t5, 0, "truncated", LMP_EFORMAT);
    /* a valid file cut short: the header length now runs past the end */
    size_t n;
    uint8_t *b = image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", NULL, 8, &n);
    expect_refused("bad-cut-header.safetensors", b, 30, "past the end", LMP_EFORMAT);
    /* cut in the data: the last tensor now reaches out of bounds */
    expect_refused("bad-cut-data.safetensors", b, n - 3, "out of bounds", LMP_EFORMAT);
    free(b);
    /* header length past EOF / over the cap / 2^64 - 1 */
    uint8_t h[16] = {0x10, 0, 0, 0, 0, 0, 0, 0, '{', '}'};
    expect_refused("bad-len-eof.safetensors", h, 10, "past the end", LMP_EFORMAT);
    uint64_t big = LMP_ST_MAX_HEADER + 1ull;
    for (int i = 0; i < 8; i++)
        h[i] = (uint8_t)(big >> (8 * i));
    expect_refused("bad-len-cap.safetensors", h, 10, "exceeds the cap", LMP_EFORMAT);
    memset(h, 0xff, 8);
    expect_refused("bad-len-max.safetensors", h, 10, "exceeds the cap", LMP_EFORMAT);
    uint8_t z[8] = {0};
    expect_refused("bad-len-zero.safetensors", z, 8, "'{'", LMP_EFORMAT);
    uint8_t nul[12] = {4, 0, 0, 0, 0, 0, 0, 0, '{', 0, '}', ' '};
    expect_refused("bad-nul.safetensors", nul, 12, "NUL", LMP_EFORMAT);
    cases += 10;
    CHECK(cases >= 40, "only %d broken cases", cases);

    /* accepted edge cases: empty header object, null __metadata__, unknown fields, two
     * empty tensors at the same offset, an empty tensor at the end */
    const char *ok[] = {
        "{}",
        "{\"__metadata__\":null}",
        "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1],\"extra\":[1.5]}}",
        "{\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"y\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
        "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
        "\"w\":{\"dtype\":\"BOOL\",\"shape\":[3,0],\"data_offsets\":[1,1]}}",
    };
    size_t dl[] = {0, 0, 1, 1};
    for (int i = 0; i < 4; i++) {
        b = image(ok[i], "\x07", dl[i], &n);
        lmp_st_reader r;
        int rc = lmp_st_open_mem(&r, b, n, "ok.safetensors");
        CHECK(rc == 0, "edge case %d refused: %s", i, lmp_errmsg());
        if (i == 3 && rc == 0)
            CHECK(r.n_tensors == 4 && strcmp(r.tensors[0].name, "z") == 0 &&
                      strcmp(r.tensors[2].name, "x") == 0 && strcmp(r.tensors[3].name, "w") == 0 &&
                      *(const uint8_t *)r.tensors[2].data == 7,
                  "edge case order");
        char sn[64];
        snprintf(sn, sizeof sn, "valid-edge-%d.safetensors", i);
        save_seed(sn, b, n);
        lmp_st_close(&r);
        free(b);
    }
}

/* ---------------------------------------------------------------- broken shards */

static void write_shard(const char *dir, const char *name, const char *json, size_t dn)
{
    size_t n;
    uint8_t *b = image(json, NULL, dn, &n);
    char *p = lmp_path_join(dir, name);
    write_file(p, b, n);
    free(p);
    free(b);
}

static void expect_index_refused(const char *what, const char *dir, const char *index_json,
                                 int code, const char *w1, const char *w2)
{
    char *idx = lmp_path_join(dir, "model.safetensors.index.json");
    write_file(idx, index_json, strlen(index_json));
    lmp_st_reader r;
    int rc = lmp_st_open(&r, idx);
    const char *m = lmp_errmsg();
    CHECK(rc != 0 && (code == 0 || rc == code), "%s: rc %d (%s)", what, rc, m);
    CHECK(strstr(m, idx) && strstr(m, w1) && (!w2 || strstr(m, w2)),
          "%s: message lacks index/'%s'/'%s': %s", what, w1, w2 ? w2 : "", m);
    lmp_st_close(&r);
    rc = lmp_st_open(&r, dir); /* the folder finds the index */
    CHECK(rc != 0, "%s: folder accepted", what);
    lmp_st_close(&r);
    free(idx);
}

static void test_broken_shards(void)
{
    const char *dir = tpath("bad-shards");
    mkdir(dir, 0777);
    write_shard(dir, "s1.safetensors",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4);
    write_shard(dir, "s2.safetensors",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
                8);
    write_shard(dir, "s3.safetensors", "{\"c\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                4);

    expect_index_refused("missing shard", dir,
                         "{\"metadata\":{},\"weight_map\":{\"a\":\"s1.safetensors\","
                         "\"x\":\"model-00009-of-00009.safetensors\"}}",
                         LMP_ENOTFOUND, "model-00009-of-00009.safetensors", "not found");
    expect_index_refused("tensor absent from its shard", dir,
                         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"zz\":\"s1.safetensors\"}}",
                         LMP_ENOTFOUND, "'zz'", "s1.safetensors");
    expect_index_refused("tensor in another shard", dir,
                         "{\"weight_map\":{\"b\":\"s1.safetensors\",\"a\":\"s1.safetensors\"}}",
                         LMP_ENOTFOUND, "'b'", "absent");
    expect_index_refused("tensor in two shards", dir,
                         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"b\":\"s2.safetensors\"}}",
                         LMP_EFORMAT, "'a'", "both");
    expect_index_refused("malformed index", dir, "{\"weight_map\": {\"a\": \"s1.safetensors\",", LMP_EFORMAT,
                         "not valid JSON", NULL);
    expect_index_refused("index not an object", dir, "[]", LMP_EFORMAT, "not a JSON object", NULL);
    expect_index_refused("no weight_map", dir, "{\"metadata\":{}}", LMP_EFORMAT, "weight_map", NULL);
    expect_index_refused("weight_map value", dir, "{\"weight_map\":{\"a\":1}}", LMP_EFORMAT,
                         "not a string", NULL);
    expect_index_refused("listed twice", dir,
                         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"a\":\"s2.safetensors\"}}",
                         LMP_EFORMAT, "twice", NULL);
    expect_index_refused("escaping shard path", dir,
                         "{\"weight_map\":{\"a\":\"../s1.safetensors\"}}", LMP_EFORMAT, "inside",
                         NULL);
    expect_index_refused("broken shard", dir,
                         "{\"weight_map\":{\"a\":\"s1.safetensors\",\"c\":\"s3.safetensors\"}}",
                         LMP_EFORMAT, "s3.safetensors", "needs 8");

    /* a good index over the same shards */
    char *idx = lmp_path_join(dir, "model.safetensors.index.json");
    const char *good = "{\"metadata\":{\"total_size\":12},\"weight_map\":{\"a\":\"s1.safetensors\"}}";
    write_file(idx, good, strlen(good));
    lmp_st_reader r;
    int rc = lmp_st_open(&r, dir);
    CHECK(rc == 0 && r.n_tensors == 1 && lmp_st_find(&r, "a"), "good index: %s", lmp_errmsg());
    lmp_st_close(&r);
    free(idx);

    /* missing inputs */
    rc = lmp_st_open(&r, tpath("nothing-here.safetensors"));
    CHECK(rc == LMP_ENOTFOUND && strstr(lmp_errmsg(), "nothing-here"), "missing file: %s",
          lmp_errmsg());
    mkdir(tpath("empty-folder"), 0777);
    rc = lmp_st_open(&r, tpath("empty-folder"));
    CHECK(rc == LMP_ENOTFOUND, "empty folder: %s", lmp_errmsg());

    /* real index files whose weights are absent */
    const char *metas[] = {"hf-meta/llama-2", "hf-meta/llama-3.2-3b", "hf-meta/mistral-7b-instruct-v0.2",
                           "hf-meta/qwen2.5-14b-sakura-v1.0", "hf-meta/granite-3.1-1b-a400m-instruct"};
    int seen = 0;
    for (int i = 0; i < 5; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/model.safetensors.index.json", metas[i]);
        const char *p = fixture(rel);
        if (!p)
            continue;
        seen++;
        rc = lmp_st_open(&r, p);
        CHECK(rc == LMP_ENOTFOUND && strstr(lmp_errmsg(), "shard") &&
                  strstr(lmp_errmsg(), ".safetensors'") && strstr(lmp_errmsg(), "not found") &&
                  strstr(lmp_errmsg(), p),
              "%s: rc %d: %s", rel, rc, lmp_errmsg());
        lmp_st_close(&r);
        const char *d = fixture(metas[i]);
        rc = lmp_st_open(&r, d);
        CHECK(rc == LMP_ENOTFOUND, "%s folder: rc %d: %s", metas[i], rc, lmp_errmsg());
        lmp_st_close(&r);
    }
    if (!seen)
        SKIP("hf-meta fixtures absent (../shared/fixtures)");
}

/* ---------------------------------------------------------------- real data */

static void test_stories(void)
{
    const char *p = fixture("models/stories260K/model.safetensors");
    if (!p) {
        SKIP("models/stories260K absent (../shared/fixtures)");
        return;
    }
    lmp_st_reader r;
    int rc = lmp_st_open(&r, p);
    CHECK(rc == 0, "stories260K: %s", lmp_errmsg());
    if (rc)
        return;
    CHECK(r.n_tensors == 47, "%d tensors", r.n_tensors);
    const lmp_tensor *e = lmp_st_find(&r, "model.embed_tokens.weight");
    CHECK(e && e->dtype == LMP_DT_F32 && e->ndim == 2 && e->shape[0] == 512 && e->shape[1] == 64 &&
              e->nbytes == 512 * 64 * 4,
          "embed_tokens");
    const lmp_tensor *g = lmp_st_find(&r, "model.layers.0.mlp.gate_proj.weight");
    CHECK(g && g->dtype == LMP_DT_F32 && g->ndim == 2 && g->shape[0] == 172 && g->shape[1] == 64,
          "gate_proj");
    CHECK(lmp_st_find(&r, "lm_head.weight") == NULL, "tied embeddings: no lm_head");
    CHECK(lmp_st_meta(&r, "format") && strcmp(lmp_st_meta(&r, "format"), "pt") == 0, "format=pt");
    int all_f32 = 1, finite = 1;
    for (int i = 0; i < r.n_tensors; i++) {
        all_f32 &= r.tensors[i].dtype == LMP_DT_F32;
        const float *f = r.tensors[i].data;
        for (size_t k = 0; k < r.tensors[i].nbytes / 4; k++)
            finite &= f[k] == f[k] && f[k] - f[k] == 0;
    }
    CHECK(all_f32 && finite, "dtypes / finite values");

    /* re-written tensor by tensor with the same metadata, the file is byte-identical to
     * the one Python's safetensors wrote */
    lmp_st_writer *w;
    const char *out = tpath("stories-copy.safetensors");
    rc = lmp_st_writer_new(&w, out, 0, false);
    if (rc == 0) {
        for (int i = 0; i < r.n_meta; i++)
            lmp_st_writer_meta(w, r.meta_keys[i], r.meta_vals[i]);
        for (int i = 0; i < r.n_tensors; i++)
            lmp_st_writer_add(w, r.tensors[i].name, r.tensors[i].dtype, r.tensors[i].ndim,
                              r.tensors[i].shape);
        lmp_st_writer_begin(w);
        for (int i = 0; i < r.n_tensors; i++)
            lmp_st_writer_write(w, r.tensors[i].data, r.tensors[i].nbytes);
        rc = lmp_st_writer_finish(w);
    }
    CHECK(rc == 0, "copy: %s", lmp_errmsg());
    size_t n1 = 0, n2 = 0;
    uint8_t *a = slurp(p, &n1), *b = slurp(out, &n2);
    CHECK(a && b && n1 == n2 && memcmp(a, b, n1) == 0,
          "rewritten stories260K differs from the original (%zu vs %zu bytes)", n1, n2);
    free(a);
    free(b);

    /* resharded into 64 KiB pieces and read back identical */
    const char *dir = tpath("stories-sharded");
    rc = lmp_st_writer_new(&w, dir, 64 * 1024, false);
    if (rc == 0) {
        for (int i = 0; i < r.n_tensors; i++)
            lmp_st_writer_add(w, r.tensors[i].name, r.tensors[i].dtype, r.tensors[i].ndim,
                              r.tensors[i].shape);
        lmp_st_writer_begin(w);
        for (int i = 0; i < r.n_tensors; i++)
            lmp_st_writer_write(w, r.tensors[i].data, r.tensors[i].nbytes);
        rc = lmp_st_writer_finish(w);
    }
    CHECK(rc == 0, "reshard: %s", lmp_errmsg());
    lmp_st_reader s;
    rc = lmp_st_open(&s, dir);
    CHECK(rc == 0 && s.n_tensors == 47 && s.n_files > 4, "resharded: rc %d files %d: %s", rc,
          s.n_files, lmp_errmsg());
    int bad = 0;
    for (int i = 0; rc == 0 && i < r.n_tensors; i++) {
        const lmp_tensor *t = lmp_st_find(&s, r.tensors[i].name);
        bad += !t || t->nbytes != r.tensors[i].nbytes ||
               memcmp(t->data, r.tensors[i].data, t->nbytes) != 0;
    }
    CHECK(bad == 0, "%d resharded tensors differ", bad);
    lmp_st_close(&s);
    lmp_st_close(&r);
}

static void test_gutenberg_bf16(void)
{
    const char *pf = fixture("models/gutenberg-5M/model.safetensors");
    const char *pb = fixture("models/gutenberg-5M/model-bf16");
    if (!pf || !pb) {
        SKIP("models/gutenberg-5M absent (../shared/fixtures)");
        return;
    }
    lmp_st_reader f, b;
    int rc1 = lmp_st_open(&f, pf), rc2 = lmp_st_open(&b, pb);
    CHECK(rc1 == 0 && rc2 == 0, "gutenberg: %s", lmp_errmsg());
    if (rc1 == 0 && rc2 == 0) {
        CHECK(f.n_tensors == b.n_tensors && f.n_tensors > 0, "%d vs %d tensors", f.n_tensors,
              b.n_tensors);
        long mismatched = 0, checked = 0;
        int wrong = 0;
        for (int i = 0; i < f.n_tensors; i++) {
            const lmp_tensor *x = &f.tensors[i], *y = lmp_st_find(&b, x->name);
            if (!y || y->dtype != LMP_DT_BF16 || x->dtype != LMP_DT_F32 || y->ndim != x->ndim ||
                memcmp(y->shape, x->shape, sizeof x->shape) != 0) {
                wrong++;
                continue;
            }
            const float *xf = x->data;
            const uint8_t *yb = y->data;
            int64_t n = lmp_tensor_nelem(x);
            for (int64_t k = 0; k < n; k++) {
                float v;
                memcpy(&v, &xf[k], 4);
                uint16_t bits = (uint16_t)(yb[2 * k] | yb[2 * k + 1] << 8);
                mismatched += lmp_f32_to_bf16(v) != bits;
                checked++;
            }
        }
        CHECK(wrong == 0, "%d tensors missing or with another dtype/shape in model-bf16", wrong);
        CHECK(mismatched == 0 && checked == 4852992, "bf16: %ld of %ld values differ", mismatched,
              checked);
    }
    lmp_st_close(&f);
    lmp_st_close(&b);
}

int main(void)
{
    seed_dir = getenv("LMP_SEED_CORPUS");
    test_round_trip();
    test_sharded();
    test_abort_and_failures();
    test_broken();
    test_broken_shards();
    test_stories();
    test_gutenberg_bf16();
    return test_finish();
}
