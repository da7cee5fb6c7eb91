/*
 * GGUF v2/v3 reader and streaming writer (ggml-org/ggml docs/gguf.md). The reader parses
 * a whole file image (a mapping or a caller's buffer): header, key/values (every type,
 * one level of arrays), tensor infos; it copies the metadata into owned memory and
 * borrows the tensor bytes from the image. It treats the file as hostile: every count,
 * length and offset is checked against the bytes that remain before anything is
 * allocated or read. The writer streams: metadata first, then the tensor bytes in
 * declaration order, into a temporary file renamed into place only when complete.
 *
 * It is not a model loader: it knows nothing of architectures or tensor names, and it
 * does not convert or dequantize (lib/core's dtype table does that).
 *
 * Byte order: GGUF is little-endian and so must the host be (checked at compile time).
 * A file without tensors ends right after its metadata, with no padding, as the
 * gguf-py writer leaves vocab-only files; with tensors, the data section and each
 * tensor's bytes are padded to the alignment, as ggml's writer does.
 */
#include "gguf.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "lib/io/gguf.c reads and writes GGUF's little-endian fields natively"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_WRITE_VERSION 3u
#define GGUF_MAX_KEY 65535u       /* docs/gguf.md: keys are at most 2^16-1 bytes */
#define KV_MIN_BYTES 13u          /* key length (8) + type (4) + smallest value (1) */
#define TENSOR_INFO_MIN_BYTES 33u /* name length 8 + name 1 + n_dims 4 + dim 8 + type 4 + offset 8 */

static const char *const g_type_names[LMP_GGUF_NTYPES] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};
static const size_t g_type_sizes[LMP_GGUF_NTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

const char *lmp_gguf_type_name(lmp_gguf_type t)
{
    return (unsigned)t < LMP_GGUF_NTYPES ? g_type_names[t] : "unknown";
}

size_t lmp_gguf_type_size(lmp_gguf_type t)
{
    return (unsigned)t < LMP_GGUF_NTYPES ? g_type_sizes[t] : 0;
}

static bool is_scalar_type(uint32_t t)
{
    return t < LMP_GGUF_NTYPES && t != LMP_GGUF_STRING && t != LMP_GGUF_ARRAY;
}

static uint64_t align_up(uint64_t x, uint64_t a)
{
    return (x + a - 1) / a * a;
}

/* Frees a KV's value (not its key) and leaves the value fields zeroed. */
static void kv_clear(lmp_gguf_kv *kv)
{
    if (kv->type == LMP_GGUF_STRING)
        free(kv->v.str);
    if (kv->type == LMP_GGUF_ARRAY) {
        if (kv->arr_type == LMP_GGUF_STRING && kv->arr)
            for (uint64_t i = 0; i < kv->n; i++)
                free(((char **)kv->arr)[i]);
        free(kv->arr);
        free(kv->arr_lens);
    }
    memset(&kv->v, 0, sizeof kv->v);
    kv->arr_type = 0;
    kv->n = 0;
    kv->str_len = 0;
    kv->arr = NULL;
    kv->arr_lens = NULL;
}

/* ---------------------------------------------------------------- reader */

/* Read position in the file image; `name` is the file name used in messages. */
typedef struct {
    const uint8_t *p;
    size_t size;
    size_t pos;
    const char *name;
} cursor;

static size_t cur_left(const cursor *c)
{
    return c->size - c->pos;
}

static int cur_truncated(const cursor *c, const char *what, size_t need)
{
    return lmp_err(LMP_EFORMAT, "%s: truncated: %s needs %zu bytes at offset %zu but the file is %zu bytes",
                   c->name, what, need, c->pos, c->size);
}

static int cur_bytes(cursor *c, void *dst, size_t n, const char *what)
{
    if (cur_left(c) < n)
        return cur_truncated(c, what, n);
    memcpy(dst, c->p + c->pos, n);
    c->pos += n;
    return LMP_OK;
}

static int cur_u32(cursor *c, uint32_t *v, const char *what)
{
    return cur_bytes(c, v, sizeof *v, what);
}

static int cur_u64(cursor *c, uint64_t *v, const char *what)
{
    return cur_bytes(c, v, sizeof *v, what);
}

/* Reads a GGUF string (u64 length + bytes) into an owned NUL-terminated buffer. */
static int cur_str(cursor *c, char **out, uint64_t *len, const char *what)
{
    uint64_t n;
    *out = NULL;
    *len = 0;
    int rc = cur_u64(c, &n, what);
    if (rc)
        return rc;
    if (n > cur_left(c))
        return lmp_err(LMP_EFORMAT,
                       "%s: %s: string length %" PRIu64
                       " at offset %zu runs past the end of the file (%zu bytes left)",
                       c->name, what, n, c->pos - 8, cur_left(c));
    char *s = malloc((size_t)n + 1);
    if (!s)
        return lmp_err(LMP_ENOMEM, "%s: out of memory for %s", c->name, what);
    memcpy(s, c->p + c->pos, (size_t)n);
    s[n] = '\0';
    c->pos += (size_t)n;
    *out = s;
    *len = n;
    return LMP_OK;
}

/* Reads one value of type `t` into kv (kv->type already set); `key` names it in messages. */
static int read_value(cursor *c, lmp_gguf_kv *kv, const char *key)
{
    uint32_t t = kv->type;
    int rc;
    if (is_scalar_type(t)) {
        size_t sz = g_type_sizes[t];
        if (cur_left(c) < sz)
            return cur_truncated(c, "a KV value", sz);
        if (t == LMP_GGUF_BOOL) {
            uint8_t b = c->p[c->pos];
            if (b > 1)
                return lmp_err(LMP_EFORMAT, "%s: key \"%s\": bool value %u is neither 0 nor 1", c->name, key,
                               b);
            kv->v.b = b != 0;
        } else {
            memcpy(&kv->v, c->p + c->pos, sz); /* every union member starts at offset 0 */
        }
        c->pos += sz;
        return LMP_OK;
    }
    if (t == LMP_GGUF_STRING)
        return cur_str(c, &kv->v.str, &kv->str_len, "string value");

    /* array: u32 element type, u64 count, elements */
    uint32_t et;
    uint64_t n;
    if ((rc = cur_u32(c, &et, "array element type")) || (rc = cur_u64(c, &n, "array length")))
        return rc;
    if (et == LMP_GGUF_ARRAY)
        return lmp_err(LMP_EFORMAT, "%s: key \"%s\": nested array (array of arrays) is not supported",
                       c->name, key);
    if (et >= LMP_GGUF_NTYPES)
        return lmp_err(LMP_EFORMAT, "%s: key \"%s\": unknown array element type %" PRIu32, c->name, key, et);
    kv->arr_type = et;
    size_t left = cur_left(c);
    if (et == LMP_GGUF_STRING) {
        /* each element needs at least its 8-byte length */
        if (n > left / 8)
            return lmp_err(LMP_EFORMAT,
                           "%s: key \"%s\": string array length %" PRIu64 " cannot fit in the %zu bytes left",
                           c->name, key, n, left);
        char **strs = calloc(n ? (size_t)n : 1, sizeof *strs);
        uint64_t *lens = calloc(n ? (size_t)n : 1, sizeof *lens);
        kv->arr = strs;
        kv->arr_lens = lens;
        if (!strs || !lens)
            return lmp_err(LMP_ENOMEM, "%s: key \"%s\": out of memory for %" PRIu64 " strings", c->name, key,
                           n);
        kv->n = n;
        for (uint64_t i = 0; i < n; i++)
            if ((rc = cur_str(c, &strs[i], &lens[i], "string array element")))
                return lmp_err_prefix(rc, "key \"%s\" element %" PRIu64, key, i);
        return LMP_OK;
    }
    size_t es = g_type_sizes[et];
    if (n > left / es)
        return lmp_err(LMP_EFORMAT,
                       "%s: key \"%s\": %s array length %" PRIu64 " cannot fit in the %zu bytes left",
                       c->name, key, g_type_names[et], n, left);
    size_t nb = (size_t)n * es;
    uint8_t *a = malloc(nb ? nb : 1);
    if (!a)
        return lmp_err(LMP_ENOMEM, "%s: key \"%s\": out of memory for %zu bytes", c->name, key, nb);
    memcpy(a, c->p + c->pos, nb);
    kv->arr = a;
    kv->n = n;
    if (et == LMP_GGUF_BOOL)
        for (size_t i = 0; i < nb; i++)
            if (a[i] > 1)
                return lmp_err(LMP_EFORMAT, "%s: key \"%s\": bool array element %zu is %u, neither 0 nor 1",
                               c->name, key, i, a[i]);
    c->pos += nb;
    return LMP_OK;
}

static int cmp_kv_key(const void *a, const void *b)
{
    return strcmp((*(const lmp_gguf_kv *const *)a)->key, (*(const lmp_gguf_kv *const *)b)->key);
}

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp((*(const lmp_tensor *const *)a)->name, (*(const lmp_tensor *const *)b)->name);
}

typedef struct {
    uint64_t begin, end, idx;
} span;

static int cmp_span(const void *a, const void *b)
{
    const span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

static int read_kvs(lmp_gguf_reader *r, cursor *c)
{
    int rc;
    char what[64];
    for (uint64_t i = 0; i < r->n_kv; i++) {
        lmp_gguf_kv *kv = &r->kv[i];
        uint64_t klen;
        uint32_t t;
        snprintf(what, sizeof what, "key of KV %" PRIu64, i);
        if ((rc = cur_str(c, &kv->key, &klen, what)))
            return rc;
        if (klen == 0)
            return lmp_err(LMP_EFORMAT, "%s: KV %" PRIu64 " has an empty key", c->name, i);
        if (klen > GGUF_MAX_KEY)
            return lmp_err(LMP_EFORMAT, "%s: KV %" PRIu64 ": key of %" PRIu64 " bytes is longer than %u",
                           c->name, i, klen, GGUF_MAX_KEY);
        if (memchr(kv->key, 0, (size_t)klen))
            return lmp_err(LMP_EFORMAT, "%s: KV %" PRIu64 ": key contains a NUL byte", c->name, i);
        if ((rc = cur_u32(c, &t, "KV value type")))
            return rc;
        if (t >= LMP_GGUF_NTYPES)
            return lmp_err(LMP_EFORMAT, "%s: key \"%s\": unknown value type %" PRIu32 " (expected 0..%d)",
                           c->name, kv->key, t, LMP_GGUF_NTYPES - 1);
        kv->type = t;
        if ((rc = read_value(c, kv, kv->key)))
            return rc;
    }
    if (r->n_kv > 1) {
        const lmp_gguf_kv **idx = malloc((size_t)r->n_kv * sizeof *idx);
        if (!idx)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", c->name);
        for (uint64_t i = 0; i < r->n_kv; i++)
            idx[i] = &r->kv[i];
        qsort(idx, (size_t)r->n_kv, sizeof *idx, cmp_kv_key);
        rc = LMP_OK;
        for (uint64_t i = 1; i < r->n_kv && !rc; i++)
            if (strcmp(idx[i - 1]->key, idx[i]->key) == 0)
                rc = lmp_err(LMP_EFORMAT, "%s: duplicate key \"%s\"", c->name, idx[i]->key);
        free(idx);
        if (rc)
            return rc;
    }
    const lmp_gguf_kv *al = lmp_gguf_find_kv(r, "general.alignment");
    r->alignment = LMP_GGUF_DEFAULT_ALIGNMENT;
    if (al) {
        if (al->type != LMP_GGUF_U32)
            return lmp_err(LMP_EFORMAT, "%s: general.alignment has type %s, expected u32", c->name,
                           lmp_gguf_type_name(al->type));
        uint32_t a = al->v.u32;
        if (a == 0 || (a & (a - 1)) != 0)
            return lmp_err(LMP_EFORMAT, "%s: general.alignment %" PRIu32 " is not a non-zero power of two",
                           c->name, a);
        r->alignment = a;
    }
    return LMP_OK;
}

/* Reads tensor info i; returns its byte size in *nbytes. */
static int read_tensor_info(lmp_gguf_reader *r, cursor *c, uint64_t i, uint64_t *nbytes)
{
    lmp_tensor *t = &r->tensors[i];
    uint64_t len, dims[LMP_MAX_DIMS];
    uint32_t n_dims, gt;
    int rc;
    char what[64];
    snprintf(what, sizeof what, "name of tensor %" PRIu64, i);
    if ((rc = cur_u64(c, &len, what)))
        return rc;
    if (len == 0)
        return lmp_err(LMP_EFORMAT, "%s: tensor %" PRIu64 " has an empty name", c->name, i);
    if (len > LMP_MAX_NAME - 1)
        return lmp_err(LMP_EFORMAT, "%s: tensor %" PRIu64 ": name of %" PRIu64 " bytes is longer than %d",
                       c->name, i, len, LMP_MAX_NAME - 1);
    if ((rc = cur_bytes(c, t->name, (size_t)len, what)))
        return rc;
    t->name[len] = '\0';
    if (memchr(t->name, 0, (size_t)len))
        return lmp_err(LMP_EFORMAT, "%s: tensor %" PRIu64 ": name contains a NUL byte", c->name, i);
    if ((rc = cur_u32(c, &n_dims, "tensor n_dims")))
        return rc;
    if (n_dims < 1 || n_dims > LMP_MAX_DIMS)
        return lmp_err(LMP_EFORMAT, "%s: tensor \"%s\": n_dims %" PRIu32 " is out of range 1..%d", c->name,
                       t->name, n_dims, LMP_MAX_DIMS);
    /* The product of the non-zero dims must fit in int64, so that every partial product
     * (in any order, as lmp_tensor_nelem takes them) fits too. */
    uint64_t nelem = 1, nz = 1;
    for (uint32_t j = 0; j < n_dims; j++) {
        if ((rc = cur_u64(c, &dims[j], "tensor dim")))
            return rc;
        if (dims[j] > (uint64_t)INT64_MAX)
            return lmp_err(LMP_EFORMAT, "%s: tensor \"%s\": dim %" PRIu32 " = %" PRIu64 " is out of range",
                           c->name, t->name, j, dims[j]);
        if (dims[j] && nz > (uint64_t)INT64_MAX / dims[j])
            return lmp_err(LMP_EFORMAT, "%s: tensor \"%s\": element count overflows (dims product)", c->name,
                           t->name);
        nz *= dims[j] ? dims[j] : 1;
        nelem *= dims[j];
    }
    if ((rc = cur_u32(c, &gt, "tensor ggml type")))
        return rc;
    int dt = gt <= 0x7fffffffu ? lmp_dtype_from_ggml((int)gt) : -1;
    if (dt < 0)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor \"%s\": unknown or unsupported ggml type %" PRIu32,
                       c->name, t->name, gt);
    const lmp_dtype_traits *tr = lmp_dtype_info((lmp_dtype)dt);
    if (dims[0] % (uint64_t)tr->block_size)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor \"%s\": innermost dim %" PRIu64 " is not a multiple of %s's block size %d",
                       c->name, t->name, dims[0], tr->name, tr->block_size);
    uint64_t blocks = dims[0] / (uint64_t)tr->block_size, rows = dims[0] ? nelem / dims[0] : 0;
    if (blocks > UINT64_MAX / tr->type_size)
        return lmp_err(LMP_EFORMAT, "%s: tensor \"%s\": byte size overflows", c->name, t->name);
    uint64_t row = blocks * tr->type_size;
    if (rows && row > UINT64_MAX / rows)
        return lmp_err(LMP_EFORMAT, "%s: tensor \"%s\": byte size overflows", c->name, t->name);
    *nbytes = row * rows;
    if ((rc = cur_u64(c, &r->tensor_offsets[i], "tensor offset")))
        return rc;
    if (r->tensor_offsets[i] % r->alignment)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor \"%s\": data offset %" PRIu64
                       " is not a multiple of the alignment %" PRIu32,
                       c->name, t->name, r->tensor_offsets[i], r->alignment);
    t->dtype = (lmp_dtype)dt;
    t->ndim = (int)n_dims;
    for (uint32_t j = 0; j < n_dims; j++)
        t->shape[j] = (int64_t)dims[n_dims - 1 - j];
    t->nbytes = (size_t)*nbytes;
    t->owned = false;
    return LMP_OK;
}

static int read_tensors(lmp_gguf_reader *r, cursor *c)
{
    int rc = LMP_OK;
    uint64_t n = r->n_tensors;
    span *sp = NULL;
    const lmp_tensor **idx = NULL;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t nb;
        if ((rc = read_tensor_info(r, c, i, &nb)))
            return rc;
    }
    r->data_offset = (size_t)align_up(c->pos, r->alignment);
    if (n == 0)
        return LMP_OK;
    uint64_t data_left = r->data_offset <= r->size ? r->size - r->data_offset : 0;
    sp = malloc((size_t)n * sizeof *sp);
    idx = malloc((size_t)n * sizeof *idx);
    if (!sp || !idx) {
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", c->name);
        goto cleanup;
    }
    size_t n_sp = 0;
    for (uint64_t i = 0; i < n; i++) {
        lmp_tensor *t = &r->tensors[i];
        uint64_t off = r->tensor_offsets[i], nb = t->nbytes;
        if (off > data_left || nb > data_left - off) {
            rc = lmp_err(LMP_EFORMAT,
                         "%s: tensor \"%s\": data [%" PRIu64 ", +%" PRIu64
                         ") runs past the end of the file (the data section at %zu holds %" PRIu64 " bytes)",
                         c->name, t->name, off, nb, r->data_offset, data_left);
            goto cleanup;
        }
        /* an empty tensor may sit at the end of an unpadded file: never point past it */
        size_t pos = r->data_offset <= r->size ? r->data_offset + (size_t)off : r->size;
        t->data = (void *)(r->data + pos);
        idx[i] = t;
        if (nb)
            sp[n_sp++] = (span){off, off + nb, i};
    }
    qsort(idx, (size_t)n, sizeof *idx, cmp_tensor_name);
    for (uint64_t i = 1; i < n; i++)
        if (strcmp(idx[i - 1]->name, idx[i]->name) == 0) {
            rc = lmp_err(LMP_EFORMAT, "%s: duplicate tensor name \"%s\"", c->name, idx[i]->name);
            goto cleanup;
        }
    qsort(sp, n_sp, sizeof *sp, cmp_span);
    for (size_t i = 1; i < n_sp; i++)
        if (sp[i - 1].end > sp[i].begin) {
            rc = lmp_err(LMP_EFORMAT,
                         "%s: data of tensors \"%s\" [%" PRIu64 ", %" PRIu64 ") and \"%s\" [%" PRIu64
                         ", %" PRIu64 ") overlap",
                         c->name, r->tensors[sp[i - 1].idx].name, sp[i - 1].begin, sp[i - 1].end,
                         r->tensors[sp[i].idx].name, sp[i].begin, sp[i].end);
            goto cleanup;
        }
    /* The data section must be exactly the tensors' bytes with alignment padding between
     * them: bytes no tensor info accounts for mean a miscounted tensor_count or wrong
     * offsets (every tensor would then be read from the wrong place). */
    uint64_t at = 0;
    for (size_t i = 0; i < n_sp && !rc; i++) {
        if (sp[i].begin - at >= r->alignment)
            rc = lmp_err(LMP_EFORMAT,
                         "%s: %" PRIu64 " bytes of the data section before tensor \"%s\" (at %" PRIu64
                         ") belong to no tensor: tensor_count or the tensor offsets are wrong",
                         c->name, sp[i].begin - at, r->tensors[sp[i].idx].name, sp[i].begin);
        at = align_up(sp[i].end, r->alignment);
    }
    if (!rc && n_sp && data_left > at && data_left - at >= r->alignment)
        rc = lmp_err(LMP_EFORMAT,
                     "%s: the last %" PRIu64 " bytes of the data section belong to no tensor: tensor_count "
                     "(%" PRIu64 ") is too low or the file has trailing data",
                     c->name, data_left - at, n);
cleanup:
    free(sp);
    free(idx);
    return rc;
}

static int parse(lmp_gguf_reader *r)
{
    cursor c = {r->data, r->size, 0, r->path};
    char magic[4];
    uint64_t n_t, n_kv;
    int rc;
    if (r->size < 4)
        return lmp_err(LMP_EFORMAT, "%s: truncated header: %zu bytes, a GGUF header needs 24", r->path,
                       r->size);
    if (memcmp(r->data, GGUF_MAGIC, 4) != 0)
        return lmp_err(LMP_EFORMAT, "%s: bad magic %02x %02x %02x %02x (expected \"GGUF\"): not a GGUF file",
                       r->path, r->data[0], r->data[1], r->data[2], r->data[3]);
    if (r->size < 24)
        return lmp_err(LMP_EFORMAT, "%s: truncated header: %zu bytes, a GGUF header needs 24", r->path,
                       r->size);
    (void)cur_bytes(&c, magic, 4, "magic");
    (void)cur_u32(&c, &r->version, "version");
    if (r->version == 1)
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: GGUF version 1 (32-bit lengths) is not supported; expected version 2 or 3",
                       r->path);
    if (r->version != 2 && r->version != 3) {
        uint32_t sw = __builtin_bswap32(r->version);
        if (sw >= 1 && sw <= 3)
            return lmp_err(LMP_EUNSUPPORTED,
                           "%s: big-endian GGUF (version field %08" PRIx32 ") is not supported", r->path,
                           r->version);
        return lmp_err(LMP_EUNSUPPORTED, "%s: unsupported GGUF version %" PRIu32 "; expected 2 or 3", r->path,
                       r->version);
    }
    (void)cur_u64(&c, &n_t, "tensor_count");
    (void)cur_u64(&c, &n_kv, "kv_count");
    size_t left = cur_left(&c);
    if (n_kv > left / KV_MIN_BYTES)
        return lmp_err(LMP_EFORMAT,
                       "%s: kv_count %" PRIu64
                       " cannot fit in the %zu bytes after the header (a KV needs at least %u)",
                       r->path, n_kv, left, KV_MIN_BYTES);
    if (n_t > left / TENSOR_INFO_MIN_BYTES)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor_count %" PRIu64
                       " cannot fit in the %zu bytes after the header (a tensor info needs at least %u)",
                       r->path, n_t, left, TENSOR_INFO_MIN_BYTES);
    if (n_kv * KV_MIN_BYTES + n_t * TENSOR_INFO_MIN_BYTES > left)
        return lmp_err(LMP_EFORMAT,
                       "%s: kv_count %" PRIu64 " and tensor_count %" PRIu64
                       " cannot fit in the %zu bytes after the header",
                       r->path, n_kv, n_t, left);
    r->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof *r->kv);
    r->tensors = calloc(n_t ? (size_t)n_t : 1, sizeof *r->tensors);
    r->tensor_offsets = calloc(n_t ? (size_t)n_t : 1, sizeof *r->tensor_offsets);
    if (!r->kv || !r->tensors || !r->tensor_offsets)
        return lmp_err(LMP_ENOMEM, "%s: out of memory for %" PRIu64 " KVs and %" PRIu64 " tensors", r->path,
                       n_kv, n_t);
    r->n_kv = n_kv;
    r->n_tensors = n_t;
    if ((rc = read_kvs(r, &c)))
        return rc;
    return read_tensors(r, &c);
}

int lmp_gguf_open_mem(lmp_gguf_reader *r, const uint8_t *data, size_t size, const char *name)
{
    memset(r, 0, sizeof *r);
    r->map.fd = -1;
    r->data = data;
    r->size = size;
    r->path = strdup(name ? name : "<memory>");
    if (!r->path)
        return lmp_err(LMP_ENOMEM, "out of memory");
    int rc = !data && size ? lmp_err(LMP_EINVAL, "%s: NULL image of %zu bytes", r->path, size) : parse(r);
    if (rc)
        lmp_gguf_close(r);
    return rc;
}

int lmp_gguf_open(lmp_gguf_reader *r, const char *path)
{
    lmp_mmap m;
    int rc = lmp_mmap_open(&m, path);
    if (rc) {
        memset(r, 0, sizeof *r);
        r->map.fd = -1;
        return rc;
    }
    rc = lmp_gguf_open_mem(r, m.data, m.size, path);
    if (rc) {
        lmp_mmap_close(&m);
        return rc;
    }
    r->map = m;
    return LMP_OK;
}

void lmp_gguf_close(lmp_gguf_reader *r)
{
    if (!r)
        return;
    if (r->kv)
        for (uint64_t i = 0; i < r->n_kv; i++) {
            kv_clear(&r->kv[i]);
            free(r->kv[i].key);
        }
    free(r->kv);
    free(r->tensors);
    free(r->tensor_offsets);
    free(r->path);
    if (r->map.path)
        lmp_mmap_close(&r->map);
    memset(r, 0, sizeof *r);
    r->map.fd = -1;
}

const lmp_gguf_kv *lmp_gguf_find_kv(const lmp_gguf_reader *r, const char *key)
{
    if (!r || !key || !r->kv)
        return NULL;
    for (uint64_t i = 0; i < r->n_kv; i++)
        if (r->kv[i].key && strcmp(r->kv[i].key, key) == 0)
            return &r->kv[i];
    return NULL;
}

const lmp_tensor *lmp_gguf_find_tensor(const lmp_gguf_reader *r, const char *name)
{
    if (!r || !name || !r->tensors)
        return NULL;
    for (uint64_t i = 0; i < r->n_tensors; i++)
        if (strcmp(r->tensors[i].name, name) == 0)
            return &r->tensors[i];
    return NULL;
}

static int find_for_get(const lmp_gguf_reader *r, const char *key, const lmp_gguf_kv **kv)
{
    *kv = lmp_gguf_find_kv(r, key);
    if (!*kv)
        return lmp_err(LMP_ENOTFOUND, "%s: key \"%s\" not found", r && r->path ? r->path : "gguf",
                       key ? key : "(null)");
    return LMP_OK;
}

int lmp_gguf_get_int(const lmp_gguf_reader *r, const char *key, int64_t *out)
{
    const lmp_gguf_kv *kv;
    int rc = find_for_get(r, key, &kv);
    if (rc)
        return rc;
    switch (kv->type) {
    case LMP_GGUF_U8: *out = kv->v.u8; return LMP_OK;
    case LMP_GGUF_I8: *out = kv->v.i8; return LMP_OK;
    case LMP_GGUF_U16: *out = kv->v.u16; return LMP_OK;
    case LMP_GGUF_I16: *out = kv->v.i16; return LMP_OK;
    case LMP_GGUF_U32: *out = kv->v.u32; return LMP_OK;
    case LMP_GGUF_I32: *out = kv->v.i32; return LMP_OK;
    case LMP_GGUF_I64: *out = kv->v.i64; return LMP_OK;
    case LMP_GGUF_U64:
        if (kv->v.u64 > (uint64_t)INT64_MAX)
            return lmp_err(LMP_EFORMAT, "%s: key \"%s\": u64 value %" PRIu64 " does not fit in int64",
                           r->path, key, kv->v.u64);
        *out = (int64_t)kv->v.u64;
        return LMP_OK;
    default:
        return lmp_err(LMP_EFORMAT, "%s: key \"%s\" has type %s, expected an integer", r->path, key,
                       lmp_gguf_type_name(kv->type));
    }
}

int lmp_gguf_get_float(const lmp_gguf_reader *r, const char *key, double *out)
{
    const lmp_gguf_kv *kv;
    int rc = find_for_get(r, key, &kv);
    if (rc)
        return rc;
    if (kv->type == LMP_GGUF_F32)
        *out = kv->v.f32;
    else if (kv->type == LMP_GGUF_F64)
        *out = kv->v.f64;
    else
        return lmp_err(LMP_EFORMAT, "%s: key \"%s\" has type %s, expected f32 or f64", r->path, key,
                       lmp_gguf_type_name(kv->type));
    return LMP_OK;
}

int lmp_gguf_get_str(const lmp_gguf_reader *r, const char *key, const char **out)
{
    const lmp_gguf_kv *kv;
    int rc = find_for_get(r, key, &kv);
    if (rc)
        return rc;
    if (kv->type != LMP_GGUF_STRING)
        return lmp_err(LMP_EFORMAT, "%s: key \"%s\" has type %s, expected string", r->path, key,
                       lmp_gguf_type_name(kv->type));
    *out = kv->v.str;
    return LMP_OK;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char name[LMP_MAX_NAME];
    lmp_dtype dt;
    int ndim;
    int64_t shape[LMP_MAX_DIMS]; /* outermost first */
    uint64_t nbytes;
    uint64_t offset; /* relative to the data section */
} wtensor;

struct lmp_gguf_writer {
    lmp_outfile out;
    char *path;
    lmp_gguf_kv *kv; /* insertion order */
    uint64_t n_kv, cap_kv;
    wtensor *t; /* write order */
    uint64_t n_t, cap_t;
    bool begun;
    uint32_t alignment;
    uint64_t cur;      /* tensor being written */
    uint64_t cur_done; /* bytes of it written so far */
};

static void writer_free(lmp_gguf_writer *w)
{
    if (!w)
        return;
    for (uint64_t i = 0; i < w->n_kv; i++) {
        kv_clear(&w->kv[i]);
        free(w->kv[i].key);
    }
    free(w->kv);
    free(w->t);
    free(w->path);
    free(w);
}

int lmp_gguf_writer_new(lmp_gguf_writer **wp, const char *path, bool force)
{
    *wp = NULL;
    if (!path || !*path)
        return lmp_err(LMP_EINVAL, "gguf writer: empty output path");
    lmp_gguf_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", path);
    }
    int rc = lmp_outfile_open(&w->out, path, force);
    if (rc) {
        writer_free(w);
        return rc;
    }
    w->alignment = LMP_GGUF_DEFAULT_ALIGNMENT;
    *wp = w;
    return LMP_OK;
}

/* Installs the value held in `val` (moved, not copied) under `key`: replaces an existing
 * key's value in place or appends. On failure frees the value. */
static int writer_put(lmp_gguf_writer *w, const char *key, lmp_gguf_kv *val)
{
    int rc = LMP_OK;
    if (!w) {
        kv_clear(val);
        return lmp_err(LMP_EINVAL, "gguf writer: NULL writer");
    }
    if (w->begun)
        rc = lmp_err(LMP_EINVAL, "%s: key \"%s\" set after lmp_gguf_writer_begin", w->path,
                     key ? key : "(null)");
    else if (!key || !*key)
        rc = lmp_err(LMP_EINVAL, "%s: empty key", w->path);
    else if (strlen(key) > GGUF_MAX_KEY)
        rc = lmp_err(LMP_EINVAL, "%s: key longer than %u bytes", w->path, GGUF_MAX_KEY);
    else if (strcmp(key, "general.alignment") == 0) {
        if (val->type != LMP_GGUF_U32)
            rc = lmp_err(LMP_EINVAL, "%s: general.alignment must be u32, got %s", w->path,
                         lmp_gguf_type_name(val->type));
        else if (val->v.u32 == 0 || (val->v.u32 & (val->v.u32 - 1)))
            rc = lmp_err(LMP_EINVAL, "%s: general.alignment %" PRIu32 " is not a non-zero power of two",
                         w->path, val->v.u32);
        else
            w->alignment = val->v.u32;
    }
    if (rc) {
        kv_clear(val);
        return rc;
    }
    for (uint64_t i = 0; i < w->n_kv; i++)
        if (strcmp(w->kv[i].key, key) == 0) {
            char *k = w->kv[i].key;
            kv_clear(&w->kv[i]);
            w->kv[i] = *val;
            w->kv[i].key = k;
            return LMP_OK;
        }
    if (w->n_kv == w->cap_kv) {
        uint64_t cap = w->cap_kv ? w->cap_kv * 2 : 16;
        lmp_gguf_kv *nk = realloc(w->kv, (size_t)cap * sizeof *nk);
        if (!nk) {
            kv_clear(val);
            return lmp_err(LMP_ENOMEM, "%s: out of memory", w->path);
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    char *k = strdup(key);
    if (!k) {
        kv_clear(val);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", w->path);
    }
    w->kv[w->n_kv] = *val;
    w->kv[w->n_kv].key = k;
    w->n_kv++;
    return LMP_OK;
}

int lmp_gguf_set_scalar(lmp_gguf_writer *w, const char *key, lmp_gguf_type t, const void *val)
{
    lmp_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    if (!is_scalar_type((uint32_t)t) || !val)
        return lmp_err(LMP_EINVAL,
                       "%s: key \"%s\": set_scalar needs a numeric or bool type and a value, got %s",
                       w && w->path ? w->path : "gguf writer", key ? key : "(null)", lmp_gguf_type_name(t));
    kv.type = t;
    if (t == LMP_GGUF_BOOL)
        kv.v.b = *(const bool *)val;
    else
        memcpy(&kv.v, val, g_type_sizes[t]);
    return writer_put(w, key, &kv);
}

int lmp_gguf_set_u32(lmp_gguf_writer *w, const char *key, uint32_t v)
{
    return lmp_gguf_set_scalar(w, key, LMP_GGUF_U32, &v);
}

int lmp_gguf_set_i32(lmp_gguf_writer *w, const char *key, int32_t v)
{
    return lmp_gguf_set_scalar(w, key, LMP_GGUF_I32, &v);
}

int lmp_gguf_set_u64(lmp_gguf_writer *w, const char *key, uint64_t v)
{
    return lmp_gguf_set_scalar(w, key, LMP_GGUF_U64, &v);
}

int lmp_gguf_set_f32(lmp_gguf_writer *w, const char *key, float v)
{
    return lmp_gguf_set_scalar(w, key, LMP_GGUF_F32, &v);
}

int lmp_gguf_set_bool(lmp_gguf_writer *w, const char *key, bool v)
{
    return lmp_gguf_set_scalar(w, key, LMP_GGUF_BOOL, &v);
}

static char *dup_bytes(const char *s, uint64_t n)
{
    if (n >= SIZE_MAX)
        return NULL;
    char *d = malloc((size_t)n + 1);
    if (d) {
        if (n)
            memcpy(d, s, (size_t)n);
        d[n] = '\0';
    }
    return d;
}

static int set_str_n(lmp_gguf_writer *w, const char *key, const char *v, uint64_t n)
{
    lmp_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    if (!v && n)
        return lmp_err(LMP_EINVAL, "%s: key \"%s\": NULL string", w && w->path ? w->path : "gguf writer",
                       key ? key : "(null)");
    kv.type = LMP_GGUF_STRING;
    kv.v.str = dup_bytes(v, n);
    kv.str_len = n;
    if (!kv.v.str)
        return lmp_err(LMP_ENOMEM, "out of memory");
    return writer_put(w, key, &kv);
}

int lmp_gguf_set_str(lmp_gguf_writer *w, const char *key, const char *v)
{
    return set_str_n(w, key, v, v ? strlen(v) : 0);
}

int lmp_gguf_set_arr(lmp_gguf_writer *w, const char *key, lmp_gguf_type elem_type, const void *data,
                     uint64_t n)
{
    const char *wn = w && w->path ? w->path : "gguf writer", *kn = key ? key : "(null)";
    lmp_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    if (!is_scalar_type((uint32_t)elem_type))
        return lmp_err(LMP_EINVAL,
                       "%s: key \"%s\": array element type %s is not numeric or bool (use set_arr_str)", wn,
                       kn, lmp_gguf_type_name(elem_type));
    if (!data && n)
        return lmp_err(LMP_EINVAL, "%s: key \"%s\": NULL array data", wn, kn);
    size_t es = g_type_sizes[elem_type];
    if (n > SIZE_MAX / es)
        return lmp_err(LMP_EINVAL, "%s: key \"%s\": array of %" PRIu64 " elements is too large", wn, kn, n);
    size_t nb = (size_t)n * es;
    if (elem_type == LMP_GGUF_BOOL)
        for (size_t i = 0; i < nb; i++)
            if (((const uint8_t *)data)[i] > 1)
                return lmp_err(LMP_EINVAL, "%s: key \"%s\": bool array element %zu is neither 0 nor 1", wn,
                               kn, i);
    kv.type = LMP_GGUF_ARRAY;
    kv.arr_type = elem_type;
    kv.arr = malloc(nb ? nb : 1);
    if (!kv.arr)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", wn);
    if (nb)
        memcpy(kv.arr, data, nb);
    kv.n = n;
    return writer_put(w, key, &kv);
}

int lmp_gguf_set_arr_str(lmp_gguf_writer *w, const char *key, const char *const *strs, const uint64_t *lens,
                         uint64_t n)
{
    const char *wn = w && w->path ? w->path : "gguf writer", *kn = key ? key : "(null)";
    lmp_gguf_kv kv;
    memset(&kv, 0, sizeof kv);
    if (!strs && n)
        return lmp_err(LMP_EINVAL, "%s: key \"%s\": NULL string array", wn, kn);
    if (n > SIZE_MAX / sizeof(char *))
        return lmp_err(LMP_EINVAL, "%s: key \"%s\": array too large", wn, kn);
    kv.type = LMP_GGUF_ARRAY;
    kv.arr_type = LMP_GGUF_STRING;
    char **a = calloc(n ? (size_t)n : 1, sizeof *a);
    uint64_t *l = calloc(n ? (size_t)n : 1, sizeof *l);
    kv.arr = a;
    kv.arr_lens = l;
    kv.n = n;
    if (!a || !l) {
        kv_clear(&kv);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", wn);
    }
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i] && (lens ? lens[i] : 0)) {
            kv_clear(&kv);
            return lmp_err(LMP_EINVAL, "%s: key \"%s\": element %" PRIu64 " is NULL", wn, kn, i);
        }
        l[i] = lens ? lens[i] : (strs[i] ? strlen(strs[i]) : 0);
        a[i] = dup_bytes(strs[i], l[i]);
        if (!a[i]) {
            kv_clear(&kv);
            return lmp_err(LMP_ENOMEM, "%s: out of memory", wn);
        }
    }
    return writer_put(w, key, &kv);
}

int lmp_gguf_set_kv(lmp_gguf_writer *w, const lmp_gguf_kv *kv)
{
    if (!kv)
        return lmp_err(LMP_EINVAL, "gguf writer: NULL KV");
    if (is_scalar_type((uint32_t)kv->type))
        return lmp_gguf_set_scalar(w, kv->key, kv->type, &kv->v);
    if (kv->type == LMP_GGUF_STRING)
        return set_str_n(w, kv->key, kv->v.str, kv->str_len);
    if (kv->type == LMP_GGUF_ARRAY) {
        if (kv->arr_type == LMP_GGUF_STRING) {
            if (kv->n && !kv->arr_lens)
                return lmp_err(LMP_EINVAL, "gguf writer: key \"%s\": string array without lengths",
                               kv->key ? kv->key : "(null)");
            return lmp_gguf_set_arr_str(w, kv->key, (const char *const *)kv->arr, kv->arr_lens, kv->n);
        }
        return lmp_gguf_set_arr(w, kv->key, kv->arr_type, kv->arr, kv->n);
    }
    return lmp_err(LMP_EINVAL, "gguf writer: key \"%s\": unknown type %d", kv->key ? kv->key : "(null)",
                   (int)kv->type);
}

int lmp_gguf_writer_add_tensor(lmp_gguf_writer *w, const char *name, lmp_dtype dt, int ndim,
                               const int64_t *shape)
{
    if (!w)
        return lmp_err(LMP_EINVAL, "gguf writer: NULL writer");
    if (w->begun)
        return lmp_err(LMP_EINVAL, "%s: tensor \"%s\" added after lmp_gguf_writer_begin", w->path,
                       name ? name : "(null)");
    if (!name || !*name || strlen(name) > LMP_MAX_NAME - 1)
        return lmp_err(LMP_EINVAL, "%s: tensor name must be 1..%d bytes", w->path, LMP_MAX_NAME - 1);
    const lmp_dtype_traits *tr = lmp_dtype_info(dt);
    if (!tr || tr->ggml_type < 0)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor \"%s\": dtype %s cannot be stored in GGUF", w->path,
                       name, tr ? tr->name : "?");
    if (ndim < 1 || ndim > LMP_MAX_DIMS || !shape)
        return lmp_err(LMP_EINVAL, "%s: tensor \"%s\": ndim %d is out of range 1..%d", w->path, name, ndim,
                       LMP_MAX_DIMS);
    uint64_t rows = 1, nz = 1; /* nz: product of the non-zero dims, as the reader checks */
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lmp_err(LMP_EINVAL, "%s: tensor \"%s\": negative dim %" PRId64, w->path, name, shape[i]);
        if (shape[i] && nz > (uint64_t)INT64_MAX / (uint64_t)shape[i])
            return lmp_err(LMP_EINVAL, "%s: tensor \"%s\": element count overflows", w->path, name);
        nz *= shape[i] ? (uint64_t)shape[i] : 1;
        if (i < ndim - 1)
            rows *= (uint64_t)shape[i];
    }
    int64_t inner = shape[ndim - 1];
    if (inner % tr->block_size)
        return lmp_err(LMP_EINVAL,
                       "%s: tensor \"%s\": innermost dim %" PRId64 " is not a multiple of %s's block size %d",
                       w->path, name, inner, tr->name, tr->block_size);
    uint64_t row = (uint64_t)lmp_dtype_row_bytes(dt, inner);
    if (rows && row > UINT64_MAX / 2 / rows)
        return lmp_err(LMP_EINVAL, "%s: tensor \"%s\": byte size overflows", w->path, name);
    for (uint64_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return lmp_err(LMP_EINVAL, "%s: duplicate tensor name \"%s\"", w->path, name);
    if (w->n_t == w->cap_t) {
        uint64_t cap = w->cap_t ? w->cap_t * 2 : 16;
        wtensor *nt = realloc(w->t, (size_t)cap * sizeof *nt);
        if (!nt)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", w->path);
        w->t = nt;
        w->cap_t = cap;
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dt = dt;
    t->ndim = ndim;
    memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->nbytes = row * rows;
    return LMP_OK;
}

static int w_bytes(lmp_gguf_writer *w, const void *p, size_t n)
{
    return lmp_outfile_write(&w->out, p, n);
}

static int w_u32(lmp_gguf_writer *w, uint32_t v)
{
    return w_bytes(w, &v, sizeof v);
}

static int w_u64(lmp_gguf_writer *w, uint64_t v)
{
    return w_bytes(w, &v, sizeof v);
}

static int w_str(lmp_gguf_writer *w, const char *s, uint64_t n)
{
    int rc = w_u64(w, n);
    return rc ? rc : w_bytes(w, s, (size_t)n);
}

static int w_kv(lmp_gguf_writer *w, const lmp_gguf_kv *kv)
{
    int rc;
    if ((rc = w_str(w, kv->key, strlen(kv->key))) || (rc = w_u32(w, (uint32_t)kv->type)))
        return rc;
    if (kv->type == LMP_GGUF_STRING)
        return w_str(w, kv->v.str, kv->str_len);
    if (kv->type != LMP_GGUF_ARRAY) {
        if (kv->type == LMP_GGUF_BOOL) {
            uint8_t b = kv->v.b ? 1 : 0;
            return w_bytes(w, &b, 1);
        }
        return w_bytes(w, &kv->v, g_type_sizes[kv->type]);
    }
    if ((rc = w_u32(w, (uint32_t)kv->arr_type)) || (rc = w_u64(w, kv->n)))
        return rc;
    if (kv->arr_type == LMP_GGUF_STRING) {
        for (uint64_t i = 0; i < kv->n; i++)
            if ((rc = w_str(w, ((char **)kv->arr)[i], kv->arr_lens[i])))
                return rc;
        return LMP_OK;
    }
    return w_bytes(w, kv->arr, (size_t)kv->n * g_type_sizes[kv->arr_type]);
}

/* Skips tensors with no bytes so that w->cur names the next tensor that needs data. */
static void skip_empty(lmp_gguf_writer *w)
{
    while (w->cur < w->n_t && w->cur_done == 0 && w->t[w->cur].nbytes == 0)
        w->cur++;
}

int lmp_gguf_writer_begin(lmp_gguf_writer *w)
{
    int rc;
    if (!w)
        return lmp_err(LMP_EINVAL, "gguf writer: NULL writer");
    if (w->begun)
        return lmp_err(LMP_EINVAL, "%s: lmp_gguf_writer_begin called twice", w->path);
    uint64_t off = 0;
    for (uint64_t i = 0; i < w->n_t; i++) {
        w->t[i].offset = off;
        uint64_t padded = align_up(w->t[i].nbytes, w->alignment);
        if (padded < w->t[i].nbytes || off + padded < off)
            return lmp_err(LMP_EINVAL, "%s: tensor data section overflows", w->path);
        off += padded;
    }
    if ((rc = w_bytes(w, GGUF_MAGIC, 4)) || (rc = w_u32(w, GGUF_WRITE_VERSION)) || (rc = w_u64(w, w->n_t)) ||
        (rc = w_u64(w, w->n_kv)))
        return rc;
    for (uint64_t i = 0; i < w->n_kv; i++)
        if ((rc = w_kv(w, &w->kv[i])))
            return rc;
    for (uint64_t i = 0; i < w->n_t; i++) {
        const wtensor *t = &w->t[i];
        if ((rc = w_str(w, t->name, strlen(t->name))) || (rc = w_u32(w, (uint32_t)t->ndim)))
            return rc;
        for (int j = t->ndim - 1; j >= 0; j--)
            if ((rc = w_u64(w, (uint64_t)t->shape[j])))
                return rc;
        if ((rc = w_u32(w, (uint32_t)lmp_dtype_info(t->dt)->ggml_type)) || (rc = w_u64(w, t->offset)))
            return rc;
    }
    /* A file without tensors has no data section, hence no padding (see the top). */
    if (w->n_t && (rc = lmp_outfile_pad(&w->out, w->alignment)))
        return rc;
    w->begun = true;
    w->cur = 0;
    w->cur_done = 0;
    skip_empty(w);
    return LMP_OK;
}

int lmp_gguf_writer_write(lmp_gguf_writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;
    int rc;
    if (!w)
        return lmp_err(LMP_EINVAL, "gguf writer: NULL writer");
    if (!w->begun)
        return lmp_err(LMP_EINVAL, "%s: lmp_gguf_writer_write before begin", w->path);
    if (!data && n)
        return lmp_err(LMP_EINVAL, "%s: NULL data", w->path);
    while (n > 0) {
        if (w->cur >= w->n_t)
            return lmp_err(LMP_EINVAL, "%s: %zu bytes written beyond the declared tensors", w->path, n);
        wtensor *t = &w->t[w->cur];
        uint64_t want = t->nbytes - w->cur_done;
        size_t k = want < n ? (size_t)want : n;
        if ((rc = w_bytes(w, p, k)))
            return rc;
        p += k;
        n -= k;
        w->cur_done += k;
        if (w->cur_done == t->nbytes) {
            /* the data section starts aligned, so file-absolute padding aligns offsets */
            if ((rc = lmp_outfile_pad(&w->out, w->alignment)))
                return rc;
            w->cur++;
            w->cur_done = 0;
            skip_empty(w);
        }
    }
    return LMP_OK;
}

int lmp_gguf_writer_finish(lmp_gguf_writer *w)
{
    int rc = LMP_OK;
    if (!w)
        return lmp_err(LMP_EINVAL, "gguf writer: NULL writer");
    if (!w->begun)
        rc = lmp_gguf_writer_begin(w);
    if (!rc && w->cur < w->n_t)
        rc = lmp_err(LMP_EINVAL, "%s: tensor \"%s\": only %" PRIu64 " of %" PRIu64 " bytes written", w->path,
                     w->t[w->cur].name, w->cur_done, w->t[w->cur].nbytes);
    if (!rc && w->n_t)
        rc = lmp_outfile_pad(&w->out, w->alignment);
    if (!rc && w->out.failed)
        rc = lmp_err(LMP_EIO, "%s: an earlier write failed", w->path);
    if (!rc)
        rc = lmp_outfile_commit(&w->out);
    else
        lmp_outfile_abort(&w->out);
    writer_free(w);
    return rc;
}

void lmp_gguf_writer_abort(lmp_gguf_writer *w)
{
    if (!w)
        return;
    lmp_outfile_abort(&w->out);
    writer_free(w);
}
