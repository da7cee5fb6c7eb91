/*
 * Unit tests for lib/io/gguf.c: hand-written header bytes, a bit-exact write -> read round
 * trip over every KV type and several tensor types, writer protocol errors, broken files
 * built byte by byte (each must be refused with a message naming the file and the
 * defect), every prefix of a valid file, and the llama.cpp vocab fixtures (read, checked
 * against known vocabulary facts, rewritten byte for byte).
 */
#include "lib/io/io.h"
#include "tests/unit/test.h"

#include <glob.h>
#include <math.h>
#include <stdint.h>

/* ---------------------------------------------------------------- byte builder */

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bb;

static void bb_put(bb *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void bb_u8(bb *b, uint8_t v)
{
    bb_put(b, &v, 1);
}
static void bb_u32(bb *b, uint32_t v)
{
    bb_put(b, &v, 4);
}
static void bb_u64(bb *b, uint64_t v)
{
    bb_put(b, &v, 8);
}
static void bb_str(bb *b, const char *s)
{
    bb_u64(b, strlen(s));
    bb_put(b, s, strlen(s));
}
static void bb_pad(bb *b, size_t a)
{
    while (b->n % a)
        bb_u8(b, 0);
}
static void bb_hdr(bb *b, uint32_t version, uint64_t n_t, uint64_t n_kv)
{
    bb_put(b, "GGUF", 4);
    bb_u32(b, version);
    bb_u64(b, n_t);
    bb_u64(b, n_kv);
}
static void bb_kv_u32(bb *b, const char *key, uint32_t v)
{
    bb_str(b, key);
    bb_u32(b, 4);
    bb_u32(b, v);
}
/* dims innermost first, as stored */
static void bb_tinfo(bb *b, const char *name, uint32_t n_dims, const uint64_t *dims, uint32_t type,
                     uint64_t offset)
{
    bb_str(b, name);
    bb_u32(b, n_dims);
    for (uint32_t i = 0; i < n_dims; i++)
        bb_u64(b, dims[i]);
    bb_u32(b, type);
    bb_u64(b, offset);
}

static bool contains(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

/* Opens an exact-size heap copy (so ASan sees any over-read) and expects a refusal whose
 * message names the file and contains `needle`. */
static void expect_bad(bb *b, const char *label, const char *needle)
{
    uint8_t *copy = malloc(b->n ? b->n : 1);
    if (b->n)
        memcpy(copy, b->p, b->n);
    lmp_gguf_reader r;
    int rc = lmp_gguf_open_mem(&r, copy, b->n, label);
    const char *msg = lmp_errmsg();
    CHECK(rc != 0, "%s: broken file was accepted", label);
    CHECK(contains(msg, label) && contains(msg, needle), "%s: message \"%s\" lacks the file name or \"%s\"",
          label, msg, needle);
    CHECK(r.kv == NULL && r.tensors == NULL && r.path == NULL, "%s: reader not cleared after failure", label);
    lmp_gguf_close(&r);
    free(copy);
    free(b->p);
    memset(b, 0, sizeof *b);
}

static int open_bb(bb *b, lmp_gguf_reader *r, const char *label)
{
    return lmp_gguf_open_mem(r, b->p, b->n, label);
}

static bool read_whole(const char *path, uint8_t **out, size_t *n)
{
    char *buf;
    if (lmp_read_file(path, &buf, n) != 0)
        return false;
    *out = (uint8_t *)buf;
    return true;
}

/* ---------------------------------------------------------------- hand-written bytes */

static void test_header_bytes(void)
{
    char path[512];
    lmp_gguf_writer *w;
    snprintf(path, sizeof path, "%s/tiny.gguf", tmpdir());
    CHECK(lmp_gguf_writer_new(&w, path, true) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_set_u32(w, "a", 7) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_finish(w) == 0, "%s", lmp_errmsg());
    /* clang-format off */
    static const uint8_t expect[] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0,  /* magic, version 3 */
        0, 0, 0, 0, 0, 0, 0, 0,          /* tensor_count 0 */
        1, 0, 0, 0, 0, 0, 0, 0,          /* kv_count 1 */
        1, 0, 0, 0, 0, 0, 0, 0, 'a',     /* key "a" */
        4, 0, 0, 0, 7, 0, 0, 0,          /* u32 7; no tensors: no padding */
    };
    /* clang-format on */
    uint8_t *got = NULL;
    size_t n = 0;
    CHECK(read_whole(path, &got, &n), "cannot read %s", path);
    CHECK(n == sizeof expect && got && memcmp(got, expect, n) == 0, "tiny KV file: %zu bytes, expected %zu",
          n, sizeof expect);
    free(got);

    /* one f32 tensor of shape {1, 2} (outermost first) = GGUF dims {2, 1} */
    snprintf(path, sizeof path, "%s/tiny-tensor.gguf", tmpdir());
    CHECK(lmp_gguf_writer_new(&w, path, true) == 0, "%s", lmp_errmsg());
    int64_t shape[2] = {1, 2};
    float vals[2] = {1.0f, 2.0f};
    CHECK(lmp_gguf_writer_add_tensor(w, "t", LMP_DT_F32, 2, shape) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_begin(w) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_write(w, vals, sizeof vals) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_finish(w) == 0, "%s", lmp_errmsg());
    /* clang-format off */
    uint8_t ex2[128] = {
        'G', 'G', 'U', 'F', 3, 0, 0, 0,
        1, 0, 0, 0, 0, 0, 0, 0,          /* tensor_count 1 */
        0, 0, 0, 0, 0, 0, 0, 0,          /* kv_count 0 */
        1, 0, 0, 0, 0, 0, 0, 0, 't',     /* name "t" (offset 24) */
        2, 0, 0, 0,                      /* n_dims 2 (offset 33) */
        2, 0, 0, 0, 0, 0, 0, 0,          /* dims[0] = 2, innermost */
        1, 0, 0, 0, 0, 0, 0, 0,          /* dims[1] = 1 */
        0, 0, 0, 0,                      /* ggml type F32 */
        0, 0, 0, 0, 0, 0, 0, 0,          /* offset 0; infos end at 65, padded to 96 */
    };
    static const uint8_t data[8] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00, 0x00, 0x40}; /* 1.0f, 2.0f */
    /* clang-format on */
    memcpy(ex2 + 96, data, 8); /* then zeros to 128 */
    CHECK(read_whole(path, &got, &n), "cannot read %s", path);
    CHECK(n == 128 && got && memcmp(got, ex2, 128) == 0, "tiny tensor file: %zu bytes, expected 128", n);
    free(got);

    lmp_gguf_reader r;
    CHECK(lmp_gguf_open(&r, path) == 0, "%s", lmp_errmsg());
    CHECK(r.version == 3 && r.n_tensors == 1 && r.n_kv == 0 && r.data_offset == 96, "header fields");
    if (r.n_tensors == 1) {
        const lmp_tensor *t = &r.tensors[0];
        CHECK(t->ndim == 2 && t->shape[0] == 1 && t->shape[1] == 2, "shape not reversed to outermost first");
        CHECK(t->nbytes == 8 && ((const float *)t->data)[1] == 2.0f && !t->owned, "tensor bytes");
    }
    lmp_gguf_close(&r);
    lmp_gguf_close(&r); /* twice: must be harmless */
    lmp_gguf_close(NULL);
}

/* ---------------------------------------------------------------- round trip */

typedef struct {
    const char *name;
    lmp_dtype dt;
    int ndim;
    int64_t shape[4];
    size_t nbytes; /* hand-computed */
} ttcase;

static const ttcase g_tt[] = {
    {"vec.f32", LMP_DT_F32, 1, {3}, 12},
    {"mat.f16", LMP_DT_F16, 2, {2, 5}, 20},
    {"cube.bf16", LMP_DT_BF16, 3, {2, 3, 4}, 48},
    {"empty.f32", LMP_DT_F32, 2, {0, 4}, 0},
    {"blk.0.q8_0", LMP_DT_Q8_0, 2, {3, 64}, 3 * 2 * 34},
    {"blk.1.q4_0", LMP_DT_Q4_0, 4, {2, 2, 2, 32}, 8 * 18},
    {"blk.2.q6_k", LMP_DT_Q6_K, 2, {2, 256}, 2 * 210},
    {"tail.q4_0", LMP_DT_Q4_0, 1, {64}, 2 * 18},
};
#define N_TT (sizeof g_tt / sizeof g_tt[0])

static const uint8_t g_u8[] = {0, 1, 255};
static const int8_t g_i8[] = {-128, 0, 127};
static const uint16_t g_u16[] = {0, 65535, 1234};
static const int16_t g_i16[] = {-32768, 32767};
static const uint32_t g_u32[] = {0, 4294967295u, 77};
static const int32_t g_i32[] = {INT32_MIN, -1, INT32_MAX};
static const float g_f32[] = {1.5f, -0.0f, INFINITY, 1e-40f};
static const bool g_bool[] = {true, false, true};
static const uint64_t g_u64[] = {UINT64_MAX, 0, 1ull << 40};
static const int64_t g_i64[] = {INT64_MIN, INT64_MAX, -7};
static const double g_f64[] = {1.0 / 3.0, -2.5e300};

static void test_round_trip(void)
{
    char path[512];
    lmp_gguf_writer *w;
    snprintf(path, sizeof path, "%s/rt.gguf", tmpdir());
    CHECK(lmp_gguf_writer_new(&w, path, true) == 0, "%s", lmp_errmsg());
    if (!w)
        return;
    uint8_t u8 = 200;
    int8_t i8 = -100;
    uint16_t u16 = 60000;
    int16_t i16 = -30000;
    int32_t i32 = -2000000000;
    int64_t i64 = -(1ll << 62) - 3;
    double f64 = 1.0 / 3.0;
    int rc = 0;
    rc |= lmp_gguf_set_str(w, "replaced", "first");
    rc |= lmp_gguf_set_scalar(w, "s.u8", LMP_GGUF_U8, &u8);
    rc |= lmp_gguf_set_scalar(w, "s.i8", LMP_GGUF_I8, &i8);
    rc |= lmp_gguf_set_scalar(w, "s.u16", LMP_GGUF_U16, &u16);
    rc |= lmp_gguf_set_scalar(w, "s.i16", LMP_GGUF_I16, &i16);
    rc |= lmp_gguf_set_u32(w, "s.u32", 4000000000u);
    rc |= lmp_gguf_set_i32(w, "s.i32", i32);
    rc |= lmp_gguf_set_f32(w, "s.f32", 3.25f);
    rc |= lmp_gguf_set_bool(w, "s.bool", true);
    rc |= lmp_gguf_set_bool(w, "s.bool0", false);
    rc |= lmp_gguf_set_str(w, "s.str", "hello");
    rc |= lmp_gguf_set_str(w, "s.str_empty", "");
    rc |= lmp_gguf_set_u64(w, "s.u64", (1ull << 63) + 5);
    rc |= lmp_gguf_set_scalar(w, "s.i64", LMP_GGUF_I64, &i64);
    rc |= lmp_gguf_set_scalar(w, "s.f64", LMP_GGUF_F64, &f64);
    rc |= lmp_gguf_set_u32(w, "general.alignment", 64);
    rc |= lmp_gguf_set_arr(w, "a.u8", LMP_GGUF_U8, g_u8, 3);
    rc |= lmp_gguf_set_arr(w, "a.i8", LMP_GGUF_I8, g_i8, 3);
    rc |= lmp_gguf_set_arr(w, "a.u16", LMP_GGUF_U16, g_u16, 3);
    rc |= lmp_gguf_set_arr(w, "a.i16", LMP_GGUF_I16, g_i16, 2);
    rc |= lmp_gguf_set_arr(w, "a.u32", LMP_GGUF_U32, g_u32, 3);
    rc |= lmp_gguf_set_arr(w, "a.i32", LMP_GGUF_I32, g_i32, 3);
    rc |= lmp_gguf_set_arr(w, "a.f32", LMP_GGUF_F32, g_f32, 4);
    rc |= lmp_gguf_set_arr(w, "a.bool", LMP_GGUF_BOOL, g_bool, 3);
    rc |= lmp_gguf_set_arr(w, "a.u64", LMP_GGUF_U64, g_u64, 3);
    rc |= lmp_gguf_set_arr(w, "a.i64", LMP_GGUF_I64, g_i64, 3);
    rc |= lmp_gguf_set_arr(w, "a.f64", LMP_GGUF_F64, g_f64, 2);
    rc |= lmp_gguf_set_arr(w, "a.empty", LMP_GGUF_U32, NULL, 0);
    const char *strs[] = {"a", "", "x\0y", "last"};
    const uint64_t lens[] = {1, 0, 3, 4};
    rc |= lmp_gguf_set_arr_str(w, "a.str", strs, lens, 4);
    const char *strs2[] = {"one", "two"};
    rc |= lmp_gguf_set_arr_str(w, "a.str_nolens", strs2, NULL, 2);
    rc |= lmp_gguf_set_arr_str(w, "a.str_empty", NULL, NULL, 0);
    rc |= lmp_gguf_set_u32(w, "replaced", 99); /* replaced in place, type changes */
    CHECK(rc == 0, "set_*: %s", lmp_errmsg());

    /* deterministic tensor bytes */
    size_t total = 0;
    for (size_t i = 0; i < N_TT; i++) {
        rc = lmp_gguf_writer_add_tensor(w, g_tt[i].name, g_tt[i].dt, g_tt[i].ndim, g_tt[i].shape);
        CHECK(rc == 0, "add_tensor %s: %s", g_tt[i].name, lmp_errmsg());
        total += g_tt[i].nbytes;
    }
    uint8_t *all = malloc(total);
    lmp_rng rng;
    lmp_rng_seed(&rng, 1234);
    for (size_t i = 0; i < total; i++)
        all[i] = (uint8_t)(lmp_rng_next(&rng) >> 56);
    CHECK(lmp_gguf_writer_begin(w) == 0, "begin: %s", lmp_errmsg());
    CHECK(lmp_gguf_set_u32(w, "late", 1) != 0, "set after begin accepted");
    /* stream in uneven chunks that cross tensor boundaries */
    size_t pos = 0, step = 1;
    while (pos < total) {
        size_t k = step < total - pos ? step : total - pos;
        rc = lmp_gguf_writer_write(w, all + pos, k);
        CHECK(rc == 0, "write at %zu: %s", pos, lmp_errmsg());
        pos += k;
        step = step * 3 + 1;
    }
    CHECK(lmp_gguf_writer_finish(w) == 0, "finish: %s", lmp_errmsg());

    lmp_gguf_reader r;
    rc = lmp_gguf_open(&r, path);
    CHECK(rc == 0, "reopen: %s", lmp_errmsg());
    if (rc) {
        free(all);
        return;
    }
    CHECK(r.version == 3 && r.alignment == 64, "version %u alignment %u", r.version, r.alignment);
    CHECK(r.n_kv == 31, "n_kv %llu", (unsigned long long)r.n_kv);
    CHECK(r.n_kv > 0 && strcmp(r.kv[0].key, "replaced") == 0 && r.kv[0].type == LMP_GGUF_U32 &&
              r.kv[0].v.u32 == 99,
          "replaced key not in place");
    CHECK(r.n_kv > 15 && strcmp(r.kv[15].key, "general.alignment") == 0, "insertion order");
    const lmp_gguf_kv *kv;
#define SCAL(key, T, field, val)                                                                             \
    kv = lmp_gguf_find_kv(&r, key);                                                                          \
    CHECK(kv && kv->type == T && kv->v.field == (val), "%s", key)
    SCAL("s.u8", LMP_GGUF_U8, u8, 200);
    SCAL("s.i8", LMP_GGUF_I8, i8, -100);
    SCAL("s.u16", LMP_GGUF_U16, u16, 60000);
    SCAL("s.i16", LMP_GGUF_I16, i16, -30000);
    SCAL("s.u32", LMP_GGUF_U32, u32, 4000000000u);
    SCAL("s.i32", LMP_GGUF_I32, i32, -2000000000);
    SCAL("s.f32", LMP_GGUF_F32, f32, 3.25f);
    SCAL("s.bool", LMP_GGUF_BOOL, b, true);
    SCAL("s.bool0", LMP_GGUF_BOOL, b, false);
    SCAL("s.u64", LMP_GGUF_U64, u64, (1ull << 63) + 5);
    SCAL("s.i64", LMP_GGUF_I64, i64, -(1ll << 62) - 3);
    SCAL("s.f64", LMP_GGUF_F64, f64, 1.0 / 3.0);
    kv = lmp_gguf_find_kv(&r, "s.str");
    CHECK(kv && kv->type == LMP_GGUF_STRING && kv->str_len == 5 && strcmp(kv->v.str, "hello") == 0, "s.str");
    kv = lmp_gguf_find_kv(&r, "s.str_empty");
    CHECK(kv && kv->type == LMP_GGUF_STRING && kv->str_len == 0 && kv->v.str && kv->v.str[0] == 0,
          "s.str_empty");
#define ARR(key, T, src, cnt)                                                                                \
    kv = lmp_gguf_find_kv(&r, key);                                                                          \
    CHECK(kv && kv->type == LMP_GGUF_ARRAY && kv->arr_type == T && kv->n == (cnt) &&                         \
              memcmp(kv->arr, src, (cnt)*lmp_gguf_type_size(T)) == 0,                                        \
          "%s", key)
    ARR("a.u8", LMP_GGUF_U8, g_u8, 3);
    ARR("a.i8", LMP_GGUF_I8, g_i8, 3);
    ARR("a.u16", LMP_GGUF_U16, g_u16, 3);
    ARR("a.i16", LMP_GGUF_I16, g_i16, 2);
    ARR("a.u32", LMP_GGUF_U32, g_u32, 3);
    ARR("a.i32", LMP_GGUF_I32, g_i32, 3);
    ARR("a.f32", LMP_GGUF_F32, g_f32, 4);
    ARR("a.bool", LMP_GGUF_BOOL, g_bool, 3);
    ARR("a.u64", LMP_GGUF_U64, g_u64, 3);
    ARR("a.i64", LMP_GGUF_I64, g_i64, 3);
    ARR("a.f64", LMP_GGUF_F64, g_f64, 2);
    kv = lmp_gguf_find_kv(&r, "a.empty");
    CHECK(kv && kv->type == LMP_GGUF_ARRAY && kv->arr_type == LMP_GGUF_U32 && kv->n == 0, "a.empty");
    kv = lmp_gguf_find_kv(&r, "a.str");
    CHECK(kv && kv->type == LMP_GGUF_ARRAY && kv->arr_type == LMP_GGUF_STRING && kv->n == 4, "a.str");
    if (kv && kv->n == 4) {
        char **s = kv->arr;
        for (int i = 0; i < 4; i++)
            CHECK(kv->arr_lens[i] == lens[i] && memcmp(s[i], strs[i], lens[i]) == 0 && s[i][lens[i]] == 0,
                  "a.str[%d]", i);
    }
    kv = lmp_gguf_find_kv(&r, "a.str_nolens");
    CHECK(kv && kv->n == 2 && kv->arr_lens[1] == 3 && strcmp(((char **)kv->arr)[1], "two") == 0,
          "a.str_nolens");
    kv = lmp_gguf_find_kv(&r, "a.str_empty");
    CHECK(kv && kv->arr_type == LMP_GGUF_STRING && kv->n == 0, "a.str_empty");

    /* getters */
    int64_t iv;
    double dv;
    const char *sv;
    CHECK(lmp_gguf_get_int(&r, "s.u8", &iv) == 0 && iv == 200, "get_int u8");
    CHECK(lmp_gguf_get_int(&r, "s.i8", &iv) == 0 && iv == -100, "get_int i8");
    CHECK(lmp_gguf_get_int(&r, "s.i16", &iv) == 0 && iv == -30000, "get_int i16");
    CHECK(lmp_gguf_get_int(&r, "s.u32", &iv) == 0 && iv == 4000000000ll, "get_int u32");
    CHECK(lmp_gguf_get_int(&r, "s.i64", &iv) == 0 && iv == -(1ll << 62) - 3, "get_int i64");
    CHECK(lmp_gguf_get_int(&r, "s.u64", &iv) == LMP_EFORMAT, "u64 2^63+5 must not fit int64");
    CHECK(lmp_gguf_get_int(&r, "s.str", &iv) == LMP_EFORMAT && contains(lmp_errmsg(), "s.str"),
          "get_int on string");
    CHECK(lmp_gguf_get_int(&r, "nope", &iv) == LMP_ENOTFOUND && contains(lmp_errmsg(), "nope"),
          "missing key");
    CHECK(lmp_gguf_get_float(&r, "s.f32", &dv) == 0 && dv == 3.25, "get_float f32");
    CHECK(lmp_gguf_get_float(&r, "s.f64", &dv) == 0 && dv == 1.0 / 3.0, "get_float f64");
    CHECK(lmp_gguf_get_float(&r, "s.u32", &dv) == LMP_EFORMAT, "get_float on u32");
    CHECK(lmp_gguf_get_str(&r, "s.str", &sv) == 0 && strcmp(sv, "hello") == 0, "get_str");
    CHECK(lmp_gguf_get_str(&r, "s.u8", &sv) == LMP_EFORMAT, "get_str on u8");
    CHECK(lmp_gguf_get_str(&r, "nope", &sv) == LMP_ENOTFOUND, "get_str missing");

    /* tensors */
    CHECK(r.n_tensors == N_TT, "n_tensors %llu", (unsigned long long)r.n_tensors);
    CHECK(r.data_offset % 64 == 0 && r.data_offset <= r.size, "data_offset %zu", r.data_offset);
    size_t off = 0;
    for (size_t i = 0; i < N_TT && i < r.n_tensors; i++) {
        const lmp_tensor *t = &r.tensors[i];
        const ttcase *e = &g_tt[i];
        CHECK(strcmp(t->name, e->name) == 0 && lmp_gguf_find_tensor(&r, e->name) == t, "name %s", e->name);
        CHECK(t->dtype == e->dt && t->ndim == e->ndim, "%s dtype/ndim", e->name);
        for (int d = 0; d < e->ndim; d++)
            CHECK(t->shape[d] == e->shape[d], "%s shape[%d] = %lld", e->name, d, (long long)t->shape[d]);
        CHECK(t->nbytes == e->nbytes, "%s nbytes %zu, expected %zu", e->name, t->nbytes, e->nbytes);
        CHECK(r.tensor_offsets[i] % 64 == 0, "%s offset %llu not 64-aligned", e->name,
              (unsigned long long)r.tensor_offsets[i]);
        CHECK((size_t)((const uint8_t *)t->data - r.data) % 64 == 0, "%s data not aligned in file", e->name);
        CHECK(e->nbytes == 0 || memcmp(t->data, all + off, e->nbytes) == 0, "%s data differs", e->name);
        off += e->nbytes;
    }
    CHECK(r.size % 64 == 0, "file end not padded: %zu", r.size);
    CHECK(lmp_gguf_find_tensor(&r, "absent") == NULL, "find_tensor absent");

    /* every strict prefix that cuts tensor data must be refused, without over-reads */
    size_t need = 0;
    for (size_t i = 0; i < r.n_tensors; i++)
        if (r.tensors[i].nbytes) {
            size_t end = r.data_offset + r.tensor_offsets[i] + r.tensors[i].nbytes;
            need = end > need ? end : need;
        }
    int bad_accepts = 0, bad_refusals = 0;
    for (size_t n = 0; n <= r.size; n++) {
        uint8_t *cp = malloc(n ? n : 1);
        if (n)
            memcpy(cp, r.data, n);
        lmp_gguf_reader q;
        int qrc = lmp_gguf_open_mem(&q, cp, n, "prefix.gguf");
        if (n < need && qrc == 0)
            bad_accepts++;
        if (n >= need && qrc != 0)
            bad_refusals++;
        if (qrc && !contains(lmp_errmsg(), "prefix.gguf"))
            bad_refusals++;
        lmp_gguf_close(&q);
        free(cp);
    }
    CHECK(bad_accepts == 0 && bad_refusals == 0,
          "prefixes: %d truncated accepted, %d bad refusals (need %zu of %zu)", bad_accepts, bad_refusals,
          need, r.size);
    lmp_gguf_close(&r);
    free(all);
}

/* ---------------------------------------------------------------- writer protocol */

static void test_writer_errors(void)
{
    char path[512], tmp[600];
    lmp_gguf_writer *w = NULL;
    snprintf(path, sizeof path, "%s/rt.gguf", tmpdir()); /* exists from the round trip */
    CHECK(lmp_gguf_writer_new(&w, path, false) == LMP_EEXIST && w == NULL && contains(lmp_errmsg(), path),
          "force=false must refuse an existing file");

    snprintf(path, sizeof path, "%s/w-err.gguf", tmpdir());
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(lmp_gguf_writer_new(&w, path, false) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_set_u32(w, "general.alignment", 48) == LMP_EINVAL, "alignment 48 accepted");
    CHECK(lmp_gguf_set_u32(w, "general.alignment", 0) == LMP_EINVAL, "alignment 0 accepted");
    CHECK(lmp_gguf_set_u64(w, "general.alignment", 64) == LMP_EINVAL, "u64 alignment accepted");
    CHECK(lmp_gguf_set_str(w, "", "x") == LMP_EINVAL, "empty key accepted");
    uint8_t twos[2] = {0, 2};
    CHECK(lmp_gguf_set_arr(w, "b", LMP_GGUF_BOOL, twos, 2) == LMP_EINVAL, "bool 2 accepted");
    CHECK(lmp_gguf_set_arr(w, "n", LMP_GGUF_ARRAY, twos, 1) == LMP_EINVAL, "nested array accepted");
    CHECK(lmp_gguf_set_scalar(w, "s", LMP_GGUF_STRING, "x") == LMP_EINVAL, "set_scalar string accepted");
    int64_t sh[2] = {4, 33};
    CHECK(lmp_gguf_writer_add_tensor(w, "q", LMP_DT_Q8_0, 2, sh) != 0 && contains(lmp_errmsg(), "block size"),
          "q8_0 row of 33 accepted");
    CHECK(lmp_gguf_writer_add_tensor(w, "u", LMP_DT_U8, 2, sh) != 0, "u8 (no ggml type) accepted");
    CHECK(lmp_gguf_writer_add_tensor(w, "z", LMP_DT_F32, 0, sh) != 0, "ndim 0 accepted");
    int64_t sh2[1] = {4};
    CHECK(lmp_gguf_writer_add_tensor(w, "a", LMP_DT_F32, 1, sh2) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_add_tensor(w, "a", LMP_DT_F32, 1, sh2) != 0, "duplicate tensor accepted");
    CHECK(lmp_gguf_writer_begin(w) == 0, "%s", lmp_errmsg());
    CHECK(lmp_path_exists(tmp), "temporary %s missing while writing", tmp);
    float f[5] = {0};
    CHECK(lmp_gguf_writer_write(w, f, sizeof f) != 0, "more bytes than declared accepted");
    lmp_gguf_writer_abort(w);
    CHECK(!lmp_path_exists(tmp) && !lmp_path_exists(path), "abort left files behind");
    lmp_gguf_writer_abort(NULL);

    CHECK(lmp_gguf_writer_new(&w, path, false) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_add_tensor(w, "a", LMP_DT_F32, 1, sh2) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_begin(w) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_write(w, f, 8) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gguf_writer_finish(w) != 0 && contains(lmp_errmsg(), "\"a\""),
          "finish with 8 of 16 bytes accepted");
    CHECK(!lmp_path_exists(tmp) && !lmp_path_exists(path), "failed finish left files behind");
}

/* ---------------------------------------------------------------- broken files */

/* A valid file with two f32 tensors of 8 elements each at offsets o1 and o2 (alignment a,
 * written as general.alignment when a != 32), and `data_bytes` bytes of data. */
static void build_tensors(bb *b, uint64_t o1, uint64_t o2, uint32_t a, size_t data_bytes, const char *n2)
{
    uint64_t d[1] = {8};
    bb_hdr(b, 3, 2, a != 32 ? 1 : 0);
    if (a != 32)
        bb_kv_u32(b, "general.alignment", a);
    bb_tinfo(b, "t1", 1, d, 0, o1);
    bb_tinfo(b, n2, 1, d, 0, o2);
    bb_pad(b, a);
    for (size_t i = 0; i < data_bytes; i++)
        bb_u8(b, (uint8_t)i);
}

static void test_broken(void)
{
    bb b = {0};
    lmp_gguf_reader r;
    uint64_t d1[1] = {32}, d5[5] = {32, 1, 1, 1, 1};

    /* baselines: the builders make valid files, so each refusal below is the defect's */
    build_tensors(&b, 0, 32, 32, 64, "t2");
    CHECK(open_bb(&b, &r, "good.gguf") == 0 && r.n_tensors == 2, "baseline: %s", lmp_errmsg());
    lmp_gguf_close(&r);
    free(b.p);
    memset(&b, 0, sizeof b);
    build_tensors(&b, 0, 64, 64, 128, "t2");
    CHECK(open_bb(&b, &r, "good64.gguf") == 0 && r.alignment == 64 && r.data_offset % 64 == 0,
          "baseline64: %s", lmp_errmsg());
    lmp_gguf_close(&r);
    free(b.p);
    memset(&b, 0, sizeof b);
    /* version 2 (same layout) is accepted */
    bb_hdr(&b, 2, 0, 1);
    bb_kv_u32(&b, "k", 1);
    CHECK(open_bb(&b, &r, "v2.gguf") == 0 && r.version == 2, "version 2: %s", lmp_errmsg());
    lmp_gguf_close(&r);
    free(b.p);
    memset(&b, 0, sizeof b);

    bb_put(&b, "GGUX", 4);
    bb_u32(&b, 3);
    bb_u64(&b, 0);
    bb_u64(&b, 0);
    expect_bad(&b, "magic.gguf", "magic");

    bb_hdr(&b, 1, 0, 0);
    expect_bad(&b, "v1.gguf", "version 1");
    bb_hdr(&b, 4, 0, 0);
    expect_bad(&b, "v4.gguf", "version 4");
    bb_hdr(&b, 0x03000000u, 0, 0);
    expect_bad(&b, "bigendian.gguf", "big-endian");

    bb_hdr(&b, 3, 0, 0);
    b.n = 10;
    expect_bad(&b, "trunc.gguf", "truncated");
    expect_bad(&b, "empty.gguf", "truncated");

    bb_hdr(&b, 3, 0, 1ull << 60);
    bb_kv_u32(&b, "k", 1);
    expect_bad(&b, "kvcount.gguf", "kv_count");
    bb_hdr(&b, 3, 1ull << 60, 0);
    expect_bad(&b, "tcount.gguf", "tensor_count");
    bb_hdr(&b, 3, 0, 2); /* two KVs announced, one present */
    bb_kv_u32(&b, "k", 1);
    expect_bad(&b, "kvmissing.gguf", "kv_count");

    bb_hdr(&b, 3, 0, 1);
    bb_u64(&b, 1000); /* key length past EOF */
    bb_put(&b, "abcdefghijklmnop", 16);
    expect_bad(&b, "keylen.gguf", "string length 1000");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 8);
    bb_u64(&b, 1ull << 62); /* string value length */
    bb_put(&b, "abcdefgh", 8);
    expect_bad(&b, "strlen.gguf", "runs past the end");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 9);
    bb_u32(&b, 4);
    bb_u64(&b, 1ull << 40);
    bb_u64(&b, 0);
    expect_bad(&b, "arrlen.gguf", "array length");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 9);
    bb_u32(&b, 8);
    bb_u64(&b, UINT64_MAX);
    bb_u64(&b, 0);
    expect_bad(&b, "strarrlen.gguf", "array length");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 13);
    bb_u64(&b, 0);
    expect_bad(&b, "kvtype.gguf", "unknown value type 13");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 9);
    bb_u32(&b, 14);
    bb_u64(&b, 0);
    expect_bad(&b, "elemtype.gguf", "element type 14");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 9);
    bb_u32(&b, 9);
    bb_u64(&b, 1);
    bb_u32(&b, 4);
    bb_u64(&b, 0);
    expect_bad(&b, "nested.gguf", "nested array");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 7);
    bb_u8(&b, 2);
    bb_put(&b, "pad.pad.pad.", 12);
    expect_bad(&b, "bool.gguf", "bool value 2");

    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "k");
    bb_u32(&b, 9);
    bb_u32(&b, 7);
    bb_u64(&b, 2);
    bb_u8(&b, 1);
    bb_u8(&b, 5);
    expect_bad(&b, "boolarr.gguf", "bool array element 1");

    bb_hdr(&b, 3, 0, 2);
    bb_kv_u32(&b, "dup", 1);
    bb_kv_u32(&b, "dup", 2);
    expect_bad(&b, "dupkey.gguf", "duplicate key \"dup\"");

    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "", 1);
    expect_bad(&b, "emptykey.gguf", "empty key");

    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 0);
    expect_bad(&b, "align0.gguf", "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_kv_u32(&b, "general.alignment", 48);
    expect_bad(&b, "align48.gguf", "power of two");
    bb_hdr(&b, 3, 0, 1);
    bb_str(&b, "general.alignment");
    bb_u32(&b, 10);
    bb_u64(&b, 64);
    expect_bad(&b, "align64.gguf", "expected u32");

    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "weird", 1, d1, 99, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", 64);
    expect_bad(&b, "ggmltype.gguf", "\"weird\": unknown or unsupported ggml type 99");

    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "t0", 0, d1, 0, 0);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_bad(&b, "ndims0.gguf", "n_dims 0");
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "t5", 5, d5, 0, 0);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_bad(&b, "ndims5.gguf", "n_dims 5");

    uint64_t big[2] = {1ull << 32, 1ull << 32};
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "huge", 2, big, 0, 0);
    bb_pad(&b, 32);
    expect_bad(&b, "overflow.gguf", "overflow");
    uint64_t big0[3] = {0, 1ull << 32, 1ull << 32}; /* zero elements, but the dims still overflow */
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "huge0", 3, big0, 0, 0);
    bb_pad(&b, 32);
    expect_bad(&b, "overflow0.gguf", "overflow");
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "cut", 1, d1, 0, 0);
    bb_put(&b, "0123456789abcdef0123456789abcdef", 32);
    b.n -= 32 + 1; /* the offset field is cut short */
    expect_bad(&b, "cutinfo.gguf", "truncated");

    uint64_t d33[1] = {33};
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "q", 1, d33, 8, 0);
    bb_pad(&b, 32);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_bad(&b, "block.gguf", "block size");

    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, "", 1, d1, 0, 0);
    bb_put(&b, "0123456789abcdef0123456789abcdef0123456789abcdef", 48);
    expect_bad(&b, "noname.gguf", "empty name");
    char longname[300];
    memset(longname, 'x', 299);
    longname[299] = 0;
    bb_hdr(&b, 3, 1, 0);
    bb_tinfo(&b, longname, 1, d1, 0, 0);
    bb_pad(&b, 32);
    bb_put(&b, longname, 128);
    expect_bad(&b, "longname.gguf", "longer than 255");

    build_tensors(&b, 0, 32, 32, 63, "t2"); /* one byte short */
    expect_bad(&b, "pasteof.gguf", "\"t2\"");
    build_tensors(&b, 0, 1ull << 62, 32, 64, "t2");
    expect_bad(&b, "farpast.gguf", "past the end");
    build_tensors(&b, 0, 0, 32, 64, "t2");
    expect_bad(&b, "overlap.gguf", "overlap");
    build_tensors(&b, 32, 0, 32, 64, "t2"); /* out of order but disjoint: fine */
    CHECK(open_bb(&b, &r, "swapped.gguf") == 0, "disjoint out-of-order tensors refused: %s", lmp_errmsg());
    lmp_gguf_close(&r);
    free(b.p);
    memset(&b, 0, sizeof b);
    build_tensors(&b, 0, 16, 32, 64, "t2");
    expect_bad(&b, "misaligned.gguf", "not a multiple of the alignment 32");
    build_tensors(&b, 0, 32, 64, 128, "t2"); /* aligned to 32 but general.alignment = 64 */
    expect_bad(&b, "misaligned64.gguf", "alignment 64");
    build_tensors(&b, 0, 32, 32, 64, "t1");
    expect_bad(&b, "duptensor.gguf", "duplicate tensor name \"t1\"");

    /* through a real file path (mmap) as well */
    char path[512];
    snprintf(path, sizeof path, "%s/broken-on-disk.gguf", tmpdir());
    bb_hdr(&b, 3, 0, 1ull << 60);
    FILE *f = fopen(path, "wb");
    if (f) {
        fwrite(b.p, 1, b.n, f);
        fclose(f);
    }
    CHECK(lmp_gguf_open(&r, path) == LMP_EFORMAT && contains(lmp_errmsg(), path), "on-disk: %s",
          lmp_errmsg());
    lmp_gguf_close(&r);
    CHECK(lmp_gguf_open(&r, "/nonexistent/x.gguf") != 0, "missing file opened");
    lmp_gguf_close(&r);
    free(b.p);
}

/* ---------------------------------------------------------------- fixtures */

static void check_rewrite(const char *src, const lmp_gguf_reader *r, int k)
{
    char out[512];
    lmp_gguf_writer *w;
    snprintf(out, sizeof out, "%s/rewrite-%d.gguf", tmpdir(), k);
    int rc = lmp_gguf_writer_new(&w, out, true);
    for (uint64_t i = 0; i < r->n_kv && !rc; i++)
        rc = lmp_gguf_set_kv(w, &r->kv[i]);
    if (rc) {
        CHECK(0, "%s: rewrite: %s", src, lmp_errmsg());
        lmp_gguf_writer_abort(w);
        return;
    }
    CHECK(lmp_gguf_writer_finish(w) == 0, "%s: finish: %s", src, lmp_errmsg());
    uint8_t *a = NULL;
    size_t na = 0;
    CHECK(read_whole(out, &a, &na), "cannot read %s", out);
    CHECK(a && na == r->size && memcmp(a, r->data, na) == 0,
          "%s: rewrite is not byte-identical (%zu vs %zu bytes)", src, na, r->size);
    free(a);
    remove(out);
}

static void test_fixtures(void)
{
    const char *one = fixture("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf");
    if (!one) {
        SKIP("fixtures absent: tokenizers/llamacpp-vocab (GGUF vocab files)");
        return;
    }
    char pat[4200];
    snprintf(pat, sizeof pat, "%.*s/ggml-vocab-*.gguf", (int)(strrchr(one, '/') - one), one);
    glob_t g;
    int n_files = 0;
    if (glob(pat, 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            lmp_gguf_reader r;
            int rc = lmp_gguf_open(&r, g.gl_pathv[i]);
            CHECK(rc == 0, "%s: %s", g.gl_pathv[i], lmp_errmsg());
            if (rc)
                continue;
            n_files++;
            const char *model = NULL;
            const lmp_gguf_kv *tok = lmp_gguf_find_kv(&r, "tokenizer.ggml.tokens");
            CHECK(r.version == 3 && r.n_tensors == 0 && r.n_kv > 5, "%s: header", g.gl_pathv[i]);
            CHECK(lmp_gguf_get_str(&r, "tokenizer.ggml.model", &model) == 0, "%s: no tokenizer.ggml.model",
                  g.gl_pathv[i]);
            CHECK(tok && tok->type == LMP_GGUF_ARRAY && tok->arr_type == LMP_GGUF_STRING && tok->n > 1000,
                  "%s: tokens", g.gl_pathv[i]);
            check_rewrite(g.gl_pathv[i], &r, (int)i);
            lmp_gguf_close(&r);
        }
        globfree(&g);
    }
    CHECK(n_files == 5, "expected the 5 llama.cpp vocab files, opened %d", n_files);

    /* GPT-2: 256 byte tokens + 50000 merges + <|endoftext|> = 50257 tokens */
    lmp_gguf_reader r;
    if (lmp_gguf_open(&r, one) == 0) {
        const char *model = NULL;
        int64_t eos = -1;
        CHECK(lmp_gguf_get_str(&r, "tokenizer.ggml.model", &model) == 0 && strcmp(model, "gpt2") == 0,
              "gpt-2 model");
        const lmp_gguf_kv *tok = lmp_gguf_find_kv(&r, "tokenizer.ggml.tokens");
        const lmp_gguf_kv *mer = lmp_gguf_find_kv(&r, "tokenizer.ggml.merges");
        CHECK(tok && tok->arr_type == LMP_GGUF_STRING && tok->n == 50257, "gpt-2 tokens %llu",
              tok ? (unsigned long long)tok->n : 0ull);
        CHECK(mer && mer->arr_type == LMP_GGUF_STRING && mer->n == 50000, "gpt-2 merges %llu",
              mer ? (unsigned long long)mer->n : 0ull);
        if (tok && tok->n == 50257 && mer && mer->n == 50000) {
            char **s = tok->arr, **m = mer->arr;
            CHECK(tok->n == mer->n + 256 + 1, "tokens = merges + 256 bytes + <|endoftext|>");
            CHECK(strcmp(s[0], "!") == 0 && strcmp(s[50256], "<|endoftext|>") == 0 &&
                      tok->arr_lens[50256] == 13,
                  "gpt-2 token 0 \"%s\", 50256 \"%s\"", s[0], s[50256]);
            CHECK(strcmp(m[0], "\xc4\xa0 t") == 0, "gpt-2 first merge \"%s\" (expected \"Ġ t\")", m[0]);
        }
        CHECK(lmp_gguf_get_int(&r, "tokenizer.ggml.eos_token_id", &eos) == 0 && eos == 50256,
              "gpt-2 eos %lld", (long long)eos);
        lmp_gguf_close(&r);
    } else {
        CHECK(0, "%s", lmp_errmsg());
    }

    const char *spm = fixture("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf");
    if (spm && lmp_gguf_open(&r, spm) == 0) {
        const char *model = NULL;
        CHECK(lmp_gguf_get_str(&r, "tokenizer.ggml.model", &model) == 0 && strcmp(model, "llama") == 0,
              "spm model");
        const lmp_gguf_kv *tok = lmp_gguf_find_kv(&r, "tokenizer.ggml.tokens");
        const lmp_gguf_kv *sc = lmp_gguf_find_kv(&r, "tokenizer.ggml.scores");
        const lmp_gguf_kv *tt = lmp_gguf_find_kv(&r, "tokenizer.ggml.token_type");
        CHECK(tok && tok->arr_type == LMP_GGUF_STRING && tok->n == 32000, "spm tokens");
        CHECK(sc && sc->type == LMP_GGUF_ARRAY && sc->arr_type == LMP_GGUF_F32 && sc->n == 32000,
              "spm scores");
        CHECK(tt && tt->type == LMP_GGUF_ARRAY && tt->arr_type == LMP_GGUF_I32 && tt->n == 32000,
              "spm token_type");
        if (tok && tok->n == 32000 && tt && tt->n == 32000) {
            char **s = tok->arr;
            const int32_t *ty = tt->arr;
            /* Llama SentencePiece vocab: <unk> <s> </s>, then 256 byte tokens <0x00>..<0xFF> */
            CHECK(strcmp(s[0], "<unk>") == 0 && strcmp(s[1], "<s>") == 0 && strcmp(s[2], "</s>") == 0 &&
                      strcmp(s[3], "<0x00>") == 0 && strcmp(s[258], "<0xFF>") == 0,
                  "spm special tokens");
            CHECK(ty[0] == 2 && ty[1] == 3 && ty[2] == 3 && ty[3] == 6 && ty[258] == 6 && ty[259] == 1,
                  "spm token types %d %d %d %d %d", ty[0], ty[1], ty[2], ty[3], ty[259]);
        }
        lmp_gguf_close(&r);
    }
}

int main(void)
{
    test_header_bytes();
    test_round_trip();
    test_writer_errors();
    test_broken();
    test_fixtures();
    return test_finish();
}
