/*
 * safetensors reader and streaming writer.
 *
 * Reader: maps each file and validates its header the way the reference parser does
 * (huggingface/safetensors, safetensors/src/tensor.rs: read_metadata and
 * Metadata::validate): u64 LE header length capped at 100 MB and inside the file, UTF-8
 * JSON object starting with '{', every entry {"dtype", "shape", "data_offsets"} with a
 * known dtype and shape x dtype size == end - begin (overflow-checked), and the spans,
 * sorted by offset, tiling the data buffer exactly (no overlap, no hole, no trailing
 * bytes). It is stricter in a few places: duplicate keys (which serde silently collapses)
 * are refused, and so are "\u0000" in strings and shapes of more than LMP_MAX_DIMS dims.
 * cJSON parses the JSON; a lexical pass beside it refuses what serde_json refuses and
 * cJSON lets through (raw control characters), and records every number token so that
 * shape entries and offsets are read exactly from their text (cJSON keeps only a double)
 * and floats, exponents, signs and leading zeros are refused as serde refuses them for
 * usize. Sharded checkpoints are read through model.safetensors.index.json.
 *
 * Writer: tensors are declared first, so every header is known before the first data
 * byte; data is then streamed straight into temporary files that are renamed only when
 * everything was written (index last). It does not reorder tensors (the reference writer
 * sorts by dtype alignment then name; readers accept any order).
 */
#include "safetensors.h"
#include "../core/dist.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

/* ---------------------------------------------------------------- small helpers */

static uint64_t rd_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Strict UTF-8 (no overlong forms, no surrogates, nothing above U+10FFFF), as Rust's
 * str::from_utf8 checks it. */
static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f, min = 0x80;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f, min = 0x800;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i < len)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3fu);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* Growable string for the JSON the writer produces. */
typedef struct {
    char *p;
    size_t n, cap;
    bool oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0)
        sb_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

/* JSON string literal; s must be valid UTF-8 (checked when it was declared). */
static void sb_json_str(sbuf *b, const char *s)
{
    sb_put(b, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[2] = {'\\', (char)*p};
            sb_put(b, e, 2);
        } else if (*p < 0x20) {
            sb_printf(b, "\\u%04x", *p);
        } else {
            sb_put(b, (const char *)p, 1);
        }
    }
    sb_put(b, "\"", 1);
}

static const char *fmt_shape(const uint64_t *dims, int nd, char *buf, size_t len)
{
    size_t k = 0;
    k += (size_t)snprintf(buf + k, len - k, "[");
    for (int i = 0; i < nd && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, "%s%" PRIu64, i ? ", " : "", dims[i]);
    if (k < len)
        snprintf(buf + k, len - k, "]");
    return buf;
}

typedef struct {
    const char *name;
    int idx;
} name_ref;

static int cmp_name_ref(const void *a, const void *b)
{
    const name_ref *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->idx > y->idx) - (x->idx < y->idx);
}

/* ---------------------------------------------------------------- header lexing */

/* Position of one number token in the header text. Headers are at most 100 MB, so 32
 * bits hold any offset. */
typedef struct {
    uint32_t off, len;
} st_numtok;

/* Lexical pass over a header that cJSON accepted: refuses raw control characters (serde
 * allows only space, \t, \n, \r outside strings and none inside) and "\u0000" (a NUL
 * cannot live in a C string), and records every number token in document order. */
static int json_lex(const char *file, const char *s, size_t n, st_numtok **out, size_t *nout)
{
    st_numtok *t = NULL;
    size_t cnt = 0, cap = 0, i = 0;
    *out = NULL;
    *nout = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') {
            for (i++; i < n && s[i] != '"'; i++) {
                unsigned char d = (unsigned char)s[i];
                if (d < 0x20) {
                    free(t);
                    return lmp_err(LMP_EFORMAT,
                                   "%s: header has a raw control character (0x%02x) inside a "
                                   "string at byte %zu",
                                   file, d, i);
                }
                if (d == '\\') {
                    if (i + 5 < n && memcmp(s + i + 1, "u0000", 5) == 0) {
                        free(t);
                        return lmp_err(LMP_EUNSUPPORTED,
                                       "%s: header has a \\u0000 (NUL) escape in a string at "
                                       "byte %zu",
                                       file, i);
                    }
                    i++; /* skip the escaped character */
                }
            }
            i++;
        } else if (c == '-' || (c >= '0' && c <= '9')) {
            size_t st = i;
            while (i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '-' || s[i] == '+' ||
                             s[i] == '.' || s[i] == 'e' || s[i] == 'E'))
                i++;
            if (cnt == cap) {
                size_t nc = cap ? cap * 2 : 64;
                st_numtok *nt = realloc(t, nc * sizeof *t);
                if (!nt) {
                    free(t);
                    return lmp_err(LMP_ENOMEM, "%s: out of memory", file);
                }
                t = nt;
                cap = nc;
            }
            t[cnt].off = (uint32_t)st;
            t[cnt].len = (uint32_t)(i - st);
            cnt++;
        } else {
            if (c < 0x20 && c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                free(t);
                return lmp_err(LMP_EFORMAT,
                               "%s: header has a raw control character (0x%02x) at byte %zu",
                               file, c, i);
            }
            i++;
        }
    }
    *out = t;
    *nout = cnt;
    return LMP_OK;
}

/* Numbers every cJSON number node in document order (pre-order), in valueint, so it can
 * be matched with its token. Depth is bounded by cJSON's nesting limit. */
static void number_nodes(cJSON *item, size_t *k)
{
    for (; item; item = item->next) {
        if (cJSON_IsNumber(item))
            item->valueint = (int)(*k)++;
        if (item->child)
            number_nodes(item->child, k);
    }
}

typedef struct {
    const char *text;
    const st_numtok *tok;
    size_t ntok;
} st_lex;

/* Reads a JSON value as serde reads a usize: a number token of decimal digits, no sign,
 * no fraction or exponent, no leading zero, that fits 64 bits. */
static bool json_u64(const st_lex *lx, const cJSON *item, uint64_t *v)
{
    if (!cJSON_IsNumber(item) || item->valueint < 0 || (size_t)item->valueint >= lx->ntok)
        return false;
    const st_numtok *t = &lx->tok[item->valueint];
    const char *p = lx->text + t->off;
    if (t->len == 0 || (t->len > 1 && p[0] == '0'))
        return false;
    uint64_t x = 0;
    for (uint32_t i = 0; i < t->len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (__builtin_mul_overflow(x, 10u, &x) || __builtin_add_overflow(x, (uint64_t)(p[i] - '0'), &x))
            return false;
    }
    *v = x;
    return true;
}

/* ---------------------------------------------------------------- one image */

typedef struct {
    lmp_tensor *t; /* in data-offset order */
    int n;
    char **mk, **mv; /* __metadata__ (owned) */
    int nm;
} st_image;

static void image_free(st_image *im)
{
    free(im->t);
    for (int i = 0; i < im->nm; i++) {
        free(im->mk[i]);
        free(im->mv[i]);
    }
    free(im->mk);
    free(im->mv);
    memset(im, 0, sizeof *im);
}

typedef struct {
    const cJSON *item;
    const char *name;
    uint64_t begin, end;
    int decl;
} st_ent;

static int cmp_ent_name(const void *a, const void *b)
{
    const st_ent *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->decl > y->decl) - (x->decl < y->decl);
}

static int cmp_ent_offset(const void *a, const void *b)
{
    const st_ent *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end)
        return x->end < y->end ? -1 : 1;
    return (x->decl > y->decl) - (x->decl < y->decl);
}

/* dtypes the reference knows but lmpress does not hold */
static bool known_unsupported_dtype(const char *s)
{
    static const char *names[] = {"F8_E4M3", "F8_E5M2", "F8_E8M0", "F4", "F6_E2M3", "F6_E3M2",
                                  "U16",     "U32",     "U64",     "C64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(s, names[i]) == 0)
            return true;
    return false;
}

#define FAIL(code, ...)                                                                   \
    do {                                                                                  \
        rc = lmp_err(code, __VA_ARGS__);                                                  \
        goto cleanup;                                                                     \
    } while (0)

/* Validates one tensor entry and fills *t (data pointer relative to `buf`). */
static int parse_entry(const char *file, const st_lex *lx, st_ent *e, const uint8_t *buf,
                       uint64_t buflen, lmp_tensor *t)
{
    const char *name = e->name;
    const cJSON *it = e->item, *dtype = NULL, *shape = NULL, *offs = NULL;
    uint64_t dims[LMP_MAX_DIMS], b = 0, en = 0;
    char sbuf_[160];

    if (strlen(name) >= LMP_MAX_NAME)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor name '%.60s...' is %zu bytes long (at most %d)",
                       file, name, strlen(name), LMP_MAX_NAME - 1);
    if (!cJSON_IsObject(it))
        return lmp_err(LMP_EFORMAT, "%s: tensor '%s': entry is not an object", file, name);
    for (const cJSON *f = it->child; f; f = f->next) {
        const cJSON **slot = strcmp(f->string, "dtype") == 0          ? &dtype
                             : strcmp(f->string, "shape") == 0        ? &shape
                             : strcmp(f->string, "data_offsets") == 0 ? &offs
                                                                      : NULL;
        if (!slot)
            continue; /* serde ignores unknown fields */
        if (*slot)
            return lmp_err(LMP_EFORMAT, "%s: tensor '%s': duplicate field \"%s\"", file, name,
                           f->string);
        *slot = f;
    }
    if (!dtype || !shape || !offs)
        return lmp_err(LMP_EFORMAT, "%s: tensor '%s': missing field \"%s\"", file, name,
                       !dtype ? "dtype" : !shape ? "shape" : "data_offsets");

    if (!cJSON_IsString(dtype))
        return lmp_err(LMP_EFORMAT, "%s: tensor '%s': dtype is not a string", file, name);
    int dt = lmp_dtype_from_st_name(dtype->valuestring);
    if (dt < 0) {
        if (known_unsupported_dtype(dtype->valuestring))
            return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s': dtype %s is not supported", file,
                           name, dtype->valuestring);
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s': unknown dtype '%.40s'", file, name,
                       dtype->valuestring);
    }

    if (!cJSON_IsArray(shape))
        return lmp_err(LMP_EFORMAT, "%s: tensor '%s': shape is not an array", file, name);
    int nd = 0;
    for (const cJSON *d = shape->child; d; d = d->next, nd++) {
        uint64_t v;
        if (!json_u64(lx, d, &v))
            return lmp_err(LMP_EFORMAT,
                           "%s: tensor '%s': shape entry %d is not a non-negative integer", file,
                           name, nd);
        if (v > (uint64_t)INT64_MAX)
            return lmp_err(LMP_EFORMAT, "%s: tensor '%s': shape entry %d (%" PRIu64 ") is too large",
                           file, name, nd, v);
        if (nd < LMP_MAX_DIMS)
            dims[nd] = v;
    }
    if (nd > LMP_MAX_DIMS)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s': shape has %d dims (at most %d supported)",
                       file, name, nd, LMP_MAX_DIMS);

    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2 || !json_u64(lx, offs->child, &b) ||
        !json_u64(lx, offs->child->next, &en))
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor '%s': data_offsets is not an array of two non-negative integers",
                       file, name);
    if (en < b)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "]: end < begin",
                       file, name, b, en);
    if (en > buflen)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                       "] out of bounds of the %" PRIu64 "-byte data buffer",
                       file, name, b, en, buflen);

    const lmp_dtype_traits *tr = lmp_dtype_info((lmp_dtype)dt);
    uint64_t nelem = 1, need;
    bool ovf = false;
    for (int i = 0; i < nd; i++)
        ovf |= __builtin_mul_overflow(nelem, dims[i], &nelem);
    ovf |= __builtin_mul_overflow(nelem, (uint64_t)tr->type_size, &need);
    if (ovf)
        return lmp_err(LMP_EFORMAT, "%s: tensor '%s': size of shape %s x %s overflows", file, name,
                       fmt_shape(dims, nd, sbuf_, sizeof sbuf_), tr->st_name);
    if (need != en - b)
        return lmp_err(LMP_EFORMAT,
                       "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64 "] span %" PRIu64
                       " bytes but shape %s x %s needs %" PRIu64,
                       file, name, b, en, en - b, fmt_shape(dims, nd, sbuf_, sizeof sbuf_),
                       tr->st_name, need);

    memset(t, 0, sizeof *t);
    memcpy(t->name, name, strlen(name) + 1);
    t->dtype = (lmp_dtype)dt;
    t->ndim = nd;
    for (int i = 0; i < nd; i++)
        t->shape[i] = (int64_t)dims[i];
    t->data = (void *)(buf + b);
    t->nbytes = (size_t)need;
    t->owned = false;
    e->begin = b;
    e->end = en;
    return LMP_OK;
}

/* Parses and validates one safetensors image; `file` names it in messages. */
static int parse_image(const char *file, const uint8_t *data, size_t size, st_image *im)
{
    int rc = LMP_OK;
    char *text = NULL;
    cJSON *root = NULL;
    st_numtok *toks = NULL;
    st_ent *ents = NULL;
    name_ref *mref = NULL;
    size_t ntok = 0;
    int ne = 0;

    memset(im, 0, sizeof *im);
    if (size < 8)
        FAIL(LMP_EFORMAT, "%s: truncated: %zu bytes, too short for the 8-byte header length",
             file, size);
    uint64_t n = rd_le64(data);
    if (n > LMP_ST_MAX_HEADER)
        FAIL(LMP_EFORMAT, "%s: header length %" PRIu64 " exceeds the cap of %u bytes", file, n,
             LMP_ST_MAX_HEADER);
    if (n > size - 8)
        FAIL(LMP_EFORMAT,
             "%s: header length %" PRIu64 " runs past the end of the file (%zu bytes follow "
             "the length; truncated?)",
             file, n, size - 8);
    const char *hdr = (const char *)data + 8;
    const uint8_t *buf = data + 8 + n;
    uint64_t buflen = size - 8 - n;
    if (n == 0 || hdr[0] != '{')
        FAIL(LMP_EFORMAT, "%s: header does not start with '{' (not a JSON object)", file);
    if (memchr(hdr, 0, (size_t)n))
        FAIL(LMP_EFORMAT, "%s: header contains a NUL byte (not valid JSON)", file);
    if (!utf8_valid((const uint8_t *)hdr, (size_t)n))
        FAIL(LMP_EFORMAT, "%s: header is not valid UTF-8", file);

    text = malloc((size_t)n + 1);
    if (!text)
        FAIL(LMP_ENOMEM, "%s: out of memory for a %" PRIu64 "-byte header", file, n);
    memcpy(text, hdr, (size_t)n);
    text[n] = 0;
    const char *end = NULL;
    root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root)
        FAIL(LMP_EFORMAT, "%s: header is not valid JSON (error near byte %td of %" PRIu64 ")",
             file, end ? end - text : (ptrdiff_t)-1, n);
    if (!cJSON_IsObject(root))
        FAIL(LMP_EFORMAT, "%s: header is not a JSON object", file);
    if ((rc = json_lex(file, text, (size_t)n, &toks, &ntok)) != LMP_OK)
        goto cleanup;
    size_t nnum = 0;
    number_nodes(root, &nnum);
    if (nnum != ntok)
        FAIL(LMP_EFORMAT, "%s: header numbers could not be read (%zu tokens, %zu values)", file,
             ntok, nnum);
    st_lex lx = {text, toks, ntok};

    int nitems = 0;
    for (cJSON *it = root->child; it; it = it->next)
        nitems++;
    ents = calloc((size_t)nitems + 1, sizeof *ents);
    if (!ents)
        FAIL(LMP_ENOMEM, "%s: out of memory", file);

    bool seen_meta = false;
    for (cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "__metadata__") != 0) {
            ents[ne].item = it;
            ents[ne].name = it->string;
            ents[ne].decl = ne;
            ne++;
            continue;
        }
        if (seen_meta)
            FAIL(LMP_EFORMAT, "%s: duplicate \"__metadata__\" key in the header", file);
        seen_meta = true;
        if (cJSON_IsNull(it))
            continue; /* serde reads null as an absent Option */
        if (!cJSON_IsObject(it))
            FAIL(LMP_EFORMAT, "%s: __metadata__ is not an object", file);
        int m = 0;
        for (cJSON *kv = it->child; kv; kv = kv->next)
            m++;
        im->mk = calloc((size_t)m + 1, sizeof(char *));
        im->mv = calloc((size_t)m + 1, sizeof(char *));
        mref = calloc((size_t)m + 1, sizeof *mref);
        if (!im->mk || !im->mv || !mref)
            FAIL(LMP_ENOMEM, "%s: out of memory", file);
        for (cJSON *kv = it->child; kv; kv = kv->next) {
            if (!cJSON_IsString(kv))
                FAIL(LMP_EFORMAT, "%s: __metadata__ value of key '%.100s' is not a string", file,
                     kv->string);
            mref[im->nm].name = kv->string;
            mref[im->nm].idx = im->nm;
            im->mk[im->nm] = strdup(kv->string);
            im->mv[im->nm] = strdup(kv->valuestring);
            im->nm++;
            if (!im->mk[im->nm - 1] || !im->mv[im->nm - 1])
                FAIL(LMP_ENOMEM, "%s: out of memory", file);
        }
        qsort(mref, (size_t)im->nm, sizeof *mref, cmp_name_ref);
        for (int i = 1; i < im->nm; i++)
            if (strcmp(mref[i - 1].name, mref[i].name) == 0)
                FAIL(LMP_EFORMAT, "%s: duplicate __metadata__ key '%.100s'", file, mref[i].name);
    }

    im->t = calloc((size_t)ne + 1, sizeof *im->t);
    lmp_tensor *tmp = calloc((size_t)ne + 1, sizeof *tmp);
    if (!im->t || !tmp) {
        free(tmp);
        FAIL(LMP_ENOMEM, "%s: out of memory for %d tensors", file, ne);
    }
    for (int i = 0; i < ne; i++)
        if ((rc = parse_entry(file, &lx, &ents[i], buf, buflen, &tmp[i])) != LMP_OK) {
            free(tmp);
            goto cleanup;
        }

    /* duplicate names: cJSON keeps every copy of a repeated key */
    qsort(ents, (size_t)ne, sizeof *ents, cmp_ent_name);
    for (int i = 1; i < ne; i++)
        if (strcmp(ents[i - 1].name, ents[i].name) == 0) {
            free(tmp);
            FAIL(LMP_EFORMAT, "%s: duplicate tensor name '%s' in the header", file, ents[i].name);
        }

    /* the spans sorted by offset must tile [0, buflen) exactly */
    qsort(ents, (size_t)ne, sizeof *ents, cmp_ent_offset);
    uint64_t pos = 0;
    for (int i = 0; i < ne; i++) {
        const st_ent *e = &ents[i];
        if (e->begin < pos) {
            rc = lmp_err(LMP_EFORMAT,
                         "%s: tensor '%s': data_offsets [%" PRIu64 ", %" PRIu64
                         "] overlap tensor '%s' (which ends at %" PRIu64 ")",
                         file, e->name, e->begin, e->end, ents[i - 1].name, pos);
            free(tmp);
            goto cleanup;
        }
        if (e->begin > pos) {
            if (i)
                rc = lmp_err(LMP_EFORMAT,
                             "%s: hole of %" PRIu64 " bytes between tensor '%s' (ends at %" PRIu64
                             ") and tensor '%s' (begins at %" PRIu64 ")",
                             file, e->begin - pos, ents[i - 1].name, pos, e->name, e->begin);
            else
                rc = lmp_err(LMP_EFORMAT,
                             "%s: hole of %" PRIu64 " bytes before the first tensor '%s' "
                             "(begins at %" PRIu64 ", not 0)",
                             file, e->begin, e->name, e->begin);
            free(tmp);
            goto cleanup;
        }
        pos = e->end;
        im->t[i] = tmp[e->decl];
    }
    free(tmp);
    if (pos != buflen)
        FAIL(LMP_EFORMAT,
             "%s: %" PRIu64 " trailing bytes after the last tensor (tensors end at %" PRIu64
             ", the data buffer holds %" PRIu64 ")",
             file, buflen - pos, pos, buflen);
    im->n = ne;

cleanup:
    if (rc != LMP_OK)
        image_free(im);
    cJSON_Delete(root);
    free(text);
    free(toks);
    free(ents);
    free(mref);
    return rc;
}

/* ---------------------------------------------------------------- reader */

void lmp_st_close(lmp_st_reader *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_files; i++) {
        if (r->files[i].fd >= 0)
            lmp_mmap_close(&r->files[i]);
        else
            free(r->files[i].path); /* lmp_st_open_mem: caller's bytes */
    }
    for (int i = 0; i < r->n_meta; i++) {
        free(r->meta_keys[i]);
        free(r->meta_vals[i]);
    }
    free(r->files);
    free(r->tensors);
    free(r->tensor_file);
    free(r->by_name);
    free(r->meta_keys);
    free(r->meta_vals);
    free(r->path);
    memset(r, 0, sizeof *r);
}

/* Moves the parsed images into r (tensors concatenated, file by file), takes the first
 * image's metadata, builds the name index and refuses a name found in two files. */
static int reader_assemble(lmp_st_reader *r, st_image *ims, int nim, const char *label)
{
    int total = 0;
    for (int i = 0; i < nim; i++) {
        if (ims[i].n > INT32_MAX - total)
            return lmp_err(LMP_EUNSUPPORTED, "%s: too many tensors", label);
        total += ims[i].n;
    }
    r->tensors = calloc((size_t)total + 1, sizeof *r->tensors);
    r->tensor_file = calloc((size_t)total + 1, sizeof *r->tensor_file);
    r->by_name = calloc((size_t)total + 1, sizeof *r->by_name);
    name_ref *refs = calloc((size_t)total + 1, sizeof *refs);
    if (!r->tensors || !r->tensor_file || !r->by_name || !refs) {
        free(refs);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", label);
    }
    int k = 0;
    for (int i = 0; i < nim; i++)
        for (int j = 0; j < ims[i].n; j++, k++) {
            r->tensors[k] = ims[i].t[j];
            r->tensor_file[k] = i;
        }
    r->n_tensors = total;
    for (int i = 0; i < total; i++) {
        refs[i].name = r->tensors[i].name;
        refs[i].idx = i;
    }
    qsort(refs, (size_t)total, sizeof *refs, cmp_name_ref);
    for (int i = 0; i < total; i++) {
        r->by_name[i] = refs[i].idx;
        if (i && strcmp(refs[i - 1].name, refs[i].name) == 0) {
            int a = refs[i - 1].idx, b = refs[i].idx;
            int rc = lmp_err(LMP_EFORMAT, "%s: tensor '%s' is in both %s and %s", label,
                             refs[i].name, r->files[r->tensor_file[a]].path,
                             r->files[r->tensor_file[b]].path);
            free(refs);
            return rc;
        }
    }
    free(refs);
    if (nim > 0) {
        r->meta_keys = ims[0].mk;
        r->meta_vals = ims[0].mv;
        r->n_meta = ims[0].nm;
        ims[0].mk = ims[0].mv = NULL;
        ims[0].nm = 0;
    }
    return LMP_OK;
}

int lmp_st_open_mem(lmp_st_reader *r, const uint8_t *data, size_t size, const char *name)
{
    st_image im;
    int rc;
    memset(r, 0, sizeof *r);
    if (!name)
        name = "<memory>";
    r->path = strdup(name);
    r->files = calloc(1, sizeof *r->files);
    if (!r->path || !r->files || !(r->files[0].path = strdup(name))) {
        lmp_st_close(r);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", name);
    }
    r->n_files = 1;
    r->files[0].fd = -1;
    r->files[0].data = data;
    r->files[0].size = size;
    if (!data && size) {
        lmp_st_close(r);
        return lmp_err(LMP_EINVAL, "%s: NULL data", name);
    }
    rc = parse_image(name, data ? data : (const uint8_t *)"", size, &im);
    if (rc == LMP_OK) {
        rc = reader_assemble(r, &im, 1, name);
        image_free(&im);
    }
    if (rc != LMP_OK)
        lmp_st_close(r);
    return rc;
}

static int open_single(lmp_st_reader *r, const char *file)
{
    st_image im;
    r->files = calloc(1, sizeof *r->files);
    if (!r->files)
        return lmp_err(LMP_ENOMEM, "out of memory");
    r->files[0].fd = -1;
    int rc = lmp_mmap_open(&r->files[0], file);
    if (rc != LMP_OK)
        return rc;
    r->n_files = 1;
    rc = parse_image(file, r->files[0].data, r->files[0].size, &im);
    if (rc != LMP_OK)
        return rc;
    rc = reader_assemble(r, &im, 1, file);
    image_free(&im);
    return rc;
}

/* A shard name from an index must stay inside the index's folder. */
static bool shard_name_ok(const char *s)
{
    if (!*s || s[0] == '/')
        return false;
    for (const char *p = s; *p;) {
        const char *q = strchr(p, '/');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.')
            return false;
        p += len;
        if (*p == '/')
            p++;
    }
    return true;
}

typedef struct {
    const char *tensor, *shard;
    int shard_idx;
} wm_ent;

static int cmp_wm_tensor(const void *a, const void *b)
{
    return strcmp(((const wm_ent *)a)->tensor, ((const wm_ent *)b)->tensor);
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int open_index(lmp_st_reader *r, const char *idx)
{
    int rc = LMP_OK, nw = 0, nsh = 0;
    char *text = NULL, *dir = NULL;
    cJSON *root = NULL;
    wm_ent *wm = NULL;
    const char **shards = NULL;
    st_image *ims = NULL;
    size_t len = 0;

    if ((rc = lmp_read_file(idx, &text, &len)) != LMP_OK)
        return rc;
    if (memchr(text, 0, len) || !utf8_valid((const uint8_t *)text, len))
        FAIL(LMP_EFORMAT, "%s: index is not valid UTF-8 JSON text", idx);
    const char *end = NULL;
    root = cJSON_ParseWithOpts(text, &end, 1);
    if (!root)
        FAIL(LMP_EFORMAT, "%s: index is not valid JSON (error near byte %td)", idx,
             end ? end - text : (ptrdiff_t)-1);
    if (!cJSON_IsObject(root))
        FAIL(LMP_EFORMAT, "%s: index is not a JSON object", idx);
    const cJSON *map = NULL, *meta = NULL;
    for (const cJSON *it = root->child; it; it = it->next) {
        if (strcmp(it->string, "weight_map") == 0) {
            if (map)
                FAIL(LMP_EFORMAT, "%s: duplicate \"weight_map\" key in the index", idx);
            map = it;
        } else if (strcmp(it->string, "metadata") == 0) {
            if (meta)
                FAIL(LMP_EFORMAT, "%s: duplicate \"metadata\" key in the index", idx);
            meta = it;
        }
    }
    if (!map || !cJSON_IsObject(map))
        FAIL(LMP_EFORMAT, "%s: index has no \"weight_map\" object", idx);
    if (meta && !cJSON_IsObject(meta) && !cJSON_IsNull(meta))
        FAIL(LMP_EFORMAT, "%s: index \"metadata\" is not an object", idx);
    for (const cJSON *it = map->child; it; it = it->next)
        nw++;
    if (nw == 0)
        FAIL(LMP_EFORMAT, "%s: index weight_map is empty", idx);
    wm = calloc((size_t)nw, sizeof *wm);
    shards = calloc((size_t)nw, sizeof *shards);
    if (!wm || !shards)
        FAIL(LMP_ENOMEM, "%s: out of memory", idx);
    int k = 0;
    for (const cJSON *it = map->child; it; it = it->next, k++) {
        if (!cJSON_IsString(it))
            FAIL(LMP_EFORMAT, "%s: weight_map entry for tensor '%.200s' is not a string", idx,
                 it->string);
        if (!shard_name_ok(it->valuestring))
            FAIL(LMP_EFORMAT,
                 "%s: weight_map entry for tensor '%.200s': shard '%.200s' is not a path inside "
                 "the index's folder",
                 idx, it->string, it->valuestring);
        wm[k].tensor = it->string;
        wm[k].shard = it->valuestring;
        shards[k] = it->valuestring;
    }
    qsort(wm, (size_t)nw, sizeof *wm, cmp_wm_tensor);
    for (int i = 1; i < nw; i++)
        if (strcmp(wm[i - 1].tensor, wm[i].tensor) == 0)
            FAIL(LMP_EFORMAT, "%s: tensor '%.200s' is listed twice in weight_map (%s, %s)", idx,
                 wm[i].tensor, wm[i - 1].shard, wm[i].shard);
    /* distinct shards, in name order (model-00001-of-N first) */
    qsort(shards, (size_t)nw, sizeof *shards, cmp_str_ptr);
    for (int i = 0; i < nw; i++)
        if (i == 0 || strcmp(shards[i], shards[nsh - 1]) != 0)
            shards[nsh++] = shards[i];

    const char *slash = strrchr(idx, '/');
    dir = slash ? strndup(idx, (size_t)(slash - idx) + 1) : strdup("");
    r->files = calloc((size_t)nsh, sizeof *r->files);
    ims = calloc((size_t)nsh, sizeof *ims);
    if (!dir || !r->files || !ims)
        FAIL(LMP_ENOMEM, "%s: out of memory", idx);
    for (int i = 0; i < nsh; i++)
        r->files[i].fd = -1;
    for (int i = 0; i < nsh; i++) {
        char *p = lmp_path_join(dir, shards[i]);
        if (!p)
            FAIL(LMP_ENOMEM, "%s: out of memory", idx);
        if (!lmp_path_exists(p)) {
            rc = lmp_err(LMP_ENOTFOUND, "%s: shard '%s' not found (%s)", idx, shards[i], p);
            free(p);
            goto cleanup;
        }
        rc = lmp_mmap_open(&r->files[i], p);
        free(p);
        if (rc != LMP_OK) {
            lmp_err_prefix(rc, "%s", idx);
            goto cleanup;
        }
        r->n_files = i + 1;
        if ((rc = parse_image(r->files[i].path, r->files[i].data, r->files[i].size, &ims[i])) !=
            LMP_OK) {
            lmp_err_prefix(rc, "%s", idx);
            goto cleanup;
        }
    }
    if ((rc = reader_assemble(r, ims, nsh, idx)) != LMP_OK)
        goto cleanup;
    /* every tensor of the weight_map must be in the shard it is listed for */
    for (int i = 0; i < nw; i++) {
        const lmp_tensor *t = lmp_st_find(r, wm[i].tensor);
        int f = t ? r->tensor_file[t - r->tensors] : -1;
        if (t && strcmp(shards[f], wm[i].shard) == 0) /* files[f] is shards[f] */
            continue;
        if (t)
            FAIL(LMP_ENOTFOUND,
                 "%s: tensor '%s' listed for shard '%s' is absent from it (found in %s)", idx,
                 wm[i].tensor, wm[i].shard, shards[f]);
        FAIL(LMP_ENOTFOUND, "%s: tensor '%s' listed for shard '%s' is absent from it", idx,
             wm[i].tensor, wm[i].shard);
    }

cleanup:
    if (ims)
        for (int i = 0; i < nsh; i++)
            image_free(&ims[i]);
    free(ims);
    free(dir);
    free(wm);
    free(shards);
    cJSON_Delete(root);
    free(text);
    return rc;
}

int lmp_st_open(lmp_st_reader *r, const char *path)
{
    int rc;
    char *idx = NULL, *single = NULL;
    memset(r, 0, sizeof *r);
    if (!path)
        return lmp_err(LMP_EINVAL, "lmp_st_open: NULL path");
    if (!(r->path = strdup(path)))
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (lmp_path_is_dir(path)) {
        idx = lmp_path_join(path, INDEX_NAME);
        single = lmp_path_join(path, SINGLE_NAME);
        if (!idx || !single)
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        else if (lmp_path_exists(idx))
            rc = open_index(r, idx);
        else if (lmp_path_exists(single))
            rc = open_single(r, single);
        else
            rc = lmp_err(LMP_ENOTFOUND, "%s: folder has neither %s nor %s", path, INDEX_NAME,
                         SINGLE_NAME);
    } else if (!lmp_path_exists(path)) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: no such file or folder", path);
    } else if (lmp_str_endswith(path, ".json")) {
        rc = open_index(r, path);
    } else {
        rc = open_single(r, path);
    }
    free(idx);
    free(single);
    if (rc != LMP_OK)
        lmp_st_close(r);
    return rc;
}

const lmp_tensor *lmp_st_find(const lmp_st_reader *r, const char *name)
{
    if (!r || !name || !r->tensors)
        return NULL;
    if (!r->by_name) {
        for (int i = 0; i < r->n_tensors; i++)
            if (strcmp(r->tensors[i].name, name) == 0)
                return &r->tensors[i];
        return NULL;
    }
    int lo = 0, hi = r->n_tensors;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(r->tensors[r->by_name[mid]].name, name);
        if (c == 0)
            return &r->tensors[r->by_name[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

const char *lmp_st_meta(const lmp_st_reader *r, const char *key)
{
    if (!r || !key)
        return NULL;
    for (int i = 0; i < r->n_meta; i++)
        if (strcmp(r->meta_keys[i], key) == 0)
            return r->meta_vals[i];
    return NULL;
}

/* ---------------------------------------------------------------- writer */

typedef struct {
    char *name;
    lmp_dtype dtype;
    int ndim;
    int64_t shape[LMP_MAX_DIMS];
    uint64_t nbytes;
    uint64_t offset; /* in its shard's data buffer */
    int shard;
} st_wtensor;

typedef struct {
    char *path;   /* final name */
    lmp_outfile out;
    char *header; /* 8-byte length + padded JSON, built by begin */
    size_t header_len;
    uint64_t data_bytes;
    int state;    /* 0 not opened, 1 open, 2 closed (temporary complete), 3 renamed */
} st_wshard;

struct lmp_st_writer {
    char *path;        /* as given */
    char *dir;         /* folder mode: the folder; NULL for a single .safetensors file */
    uint64_t shard_bytes;
    bool force, begun;
    int rc;            /* first failure, sticky */
    st_wtensor *t;
    int nt, tcap;
    char **mk, **mv;
    int nm, mcap;
    st_wshard *sh;
    int nsh;
    char *index_path;  /* sharded output only */
    char **made_dirs;  /* folders begin created, removed again on failure */
    int n_made;
    int cur;           /* tensor being written */
    uint64_t cur_done; /* its bytes written so far */
};

static void writer_free(lmp_st_writer *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->nt; i++)
        free(w->t[i].name);
    for (int i = 0; i < w->nm; i++) {
        free(w->mk[i]);
        free(w->mv[i]);
    }
    for (int i = 0; i < w->nsh; i++) {
        free(w->sh[i].path);
        free(w->sh[i].header);
    }
    for (int i = 0; i < w->n_made; i++)
        free(w->made_dirs[i]);
    free(w->made_dirs);
    free(w->t);
    free(w->mk);
    free(w->mv);
    free(w->sh);
    free(w->index_path);
    free(w->dir);
    free(w->path);
    free(w);
}

/* Removes every temporary (and any output already renamed by a failing finish) and the
 * folders begin created. Keeps the current error message. */
static void writer_discard(lmp_st_writer *w)
{
    for (int i = 0; i < w->nsh; i++) {
        st_wshard *s = &w->sh[i];
        if (s->state == 3)
            unlink(s->path);
        else if (s->state == 1 || s->state == 2)
            lmp_outfile_abort(&s->out);
        s->state = 0;
    }
    for (int i = w->n_made - 1; i >= 0; i--)
        rmdir(w->made_dirs[i]);
}

static int writer_fail(lmp_st_writer *w, int rc)
{
    if (!w->rc) {
        w->rc = rc;
        writer_discard(w);
    }
    return rc;
}

int lmp_st_writer_new(lmp_st_writer **wp, const char *path, uint64_t shard_bytes, bool force)
{
    if (!wp || !path || !*path)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_new: no output path");
    *wp = NULL;
    bool single = lmp_str_endswith(path, ".safetensors");
    if (single && shard_bytes)
        return lmp_err(LMP_EINVAL,
                       "%s: a .safetensors file cannot be sharded (give a folder to shard into)",
                       path);
    if (single && !force && lmp_path_exists(path))
        return lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)", path);
    if (!single && lmp_path_exists(path) && !lmp_path_is_dir(path))
        return lmp_err(LMP_EEXIST, "%s: exists and is not a folder", path);
    lmp_st_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path)) || (!single && !(w->dir = strdup(path)))) {
        writer_free(w);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    w->shard_bytes = shard_bytes;
    w->force = force;
    *wp = w;
    return LMP_OK;
}

int lmp_st_writer_add(lmp_st_writer *w, const char *name, lmp_dtype dt, int ndim,
                      const int64_t *shape)
{
    if (!w)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_add: NULL writer");
    if (w->rc)
        return w->rc;
    if (w->begun)
        return lmp_err(LMP_EINVAL, "%s: tensor added after begin", w->path);
    if (!name || !*name)
        return lmp_err(LMP_EINVAL, "%s: tensor with an empty name", w->path);
    size_t len = strlen(name);
    if (len >= LMP_MAX_NAME)
        return lmp_err(LMP_EINVAL, "%s: tensor name '%.60s...' longer than %d bytes", w->path,
                       name, LMP_MAX_NAME - 1);
    if (!utf8_valid((const uint8_t *)name, len))
        return lmp_err(LMP_EINVAL, "%s: tensor name '%s' is not valid UTF-8", w->path, name);
    if (strcmp(name, "__metadata__") == 0)
        return lmp_err(LMP_EINVAL, "%s: '__metadata__' cannot name a tensor", w->path);
    if ((unsigned)dt >= LMP_DT_COUNT || !lmp_dtype_info(dt)->st_name)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s': safetensors cannot hold dtype %s",
                       w->path, name, (unsigned)dt < LMP_DT_COUNT ? lmp_dtype_info(dt)->name : "?");
    if (ndim < 0 || ndim > LMP_MAX_DIMS || (ndim && !shape))
        return lmp_err(LMP_EINVAL, "%s: tensor '%s': %d dims (0 to %d)", w->path, name, ndim,
                       LMP_MAX_DIMS);
    uint64_t nbytes = lmp_dtype_info(dt)->type_size;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0)
            return lmp_err(LMP_EINVAL, "%s: tensor '%s': negative dim %" PRId64, w->path, name,
                           shape[i]);
        if (__builtin_mul_overflow(nbytes, (uint64_t)shape[i], &nbytes))
            return lmp_err(LMP_ERANGE, "%s: tensor '%s': size overflows", w->path, name);
    }
    if (w->nt == w->tcap) {
        int cap = w->tcap ? w->tcap * 2 : 64;
        st_wtensor *t = realloc(w->t, (size_t)cap * sizeof *t);
        if (!t)
            return lmp_err(LMP_ENOMEM, "out of memory");
        w->t = t;
        w->tcap = cap;
    }
    st_wtensor *t = &w->t[w->nt];
    memset(t, 0, sizeof *t);
    if (!(t->name = strdup(name)))
        return lmp_err(LMP_ENOMEM, "out of memory");
    t->dtype = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        t->shape[i] = shape[i];
    t->nbytes = nbytes;
    w->nt++;
    return LMP_OK;
}

int lmp_st_writer_meta(lmp_st_writer *w, const char *key, const char *val)
{
    if (!w)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_meta: NULL writer");
    if (w->rc)
        return w->rc;
    if (w->begun)
        return lmp_err(LMP_EINVAL, "%s: metadata added after begin", w->path);
    if (!key || !val)
        return lmp_err(LMP_EINVAL, "%s: NULL metadata key or value", w->path);
    if (!utf8_valid((const uint8_t *)key, strlen(key)) ||
        !utf8_valid((const uint8_t *)val, strlen(val)))
        return lmp_err(LMP_EINVAL, "%s: metadata '%.100s' is not valid UTF-8", w->path, key);
    for (int i = 0; i < w->nm; i++)
        if (strcmp(w->mk[i], key) == 0)
            return lmp_err(LMP_EINVAL, "%s: metadata key '%.100s' given twice", w->path, key);
    if (w->nm == w->mcap) {
        int cap = w->mcap ? w->mcap * 2 : 8;
        char **a = realloc(w->mk, (size_t)cap * sizeof *a);
        if (!a)
            return lmp_err(LMP_ENOMEM, "out of memory");
        w->mk = a;
        char **b = realloc(w->mv, (size_t)cap * sizeof *b);
        if (!b)
            return lmp_err(LMP_ENOMEM, "out of memory");
        w->mv = b;
        w->mcap = cap;
    }
    char *k = strdup(key), *v = strdup(val);
    if (!k || !v) {
        free(k);
        free(v);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    w->mk[w->nm] = k;
    w->mv[w->nm] = v;
    w->nm++;
    return LMP_OK;
}

/* The 8-byte length and the JSON header of shard s, padded with spaces so the data
 * buffer starts at a multiple of 8 (as the reference writer does). */
static int build_header(lmp_st_writer *w, int s)
{
    sbuf b = {0};
    bool first = true;
    sb_put(&b, "\0\0\0\0\0\0\0\0{", 9);
    if (w->nm) {
        sb_puts(&b, "\"__metadata__\":{");
        for (int i = 0; i < w->nm; i++) {
            if (i)
                sb_puts(&b, ",");
            sb_json_str(&b, w->mk[i]);
            sb_puts(&b, ":");
            sb_json_str(&b, w->mv[i]);
        }
        sb_puts(&b, "}");
        first = false;
    }
    for (int i = 0; i < w->nt; i++) {
        const st_wtensor *t = &w->t[i];
        if (t->shard != s)
            continue;
        if (!first)
            sb_puts(&b, ",");
        first = false;
        sb_json_str(&b, t->name);
        sb_printf(&b, ":{\"dtype\":\"%s\",\"shape\":[", lmp_dtype_info(t->dtype)->st_name);
        for (int d = 0; d < t->ndim; d++)
            sb_printf(&b, "%s%" PRId64, d ? "," : "", t->shape[d]);
        sb_printf(&b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", t->offset,
                  t->offset + t->nbytes);
    }
    sb_puts(&b, "}");
    while ((b.n - 8) % 8)
        sb_puts(&b, " ");
    if (b.oom) {
        free(b.p);
        return lmp_err(LMP_ENOMEM, "%s: out of memory for the header", w->sh[s].path);
    }
    uint64_t n = b.n - 8;
    if (n > LMP_ST_MAX_HEADER) {
        free(b.p);
        return lmp_err(LMP_ERANGE, "%s: header of %" PRIu64 " bytes exceeds the %u-byte cap",
                       w->sh[s].path, n, LMP_ST_MAX_HEADER);
    }
    for (int i = 0; i < 8; i++)
        b.p[i] = (char)(n >> (8 * i));
    w->sh[s].header = b.p;
    w->sh[s].header_len = b.n;
    return LMP_OK;
}

static int mkdirs(lmp_st_writer *w, const char *dir)
{
    char *p = strdup(dir);
    int rc = LMP_OK;
    if (!p)
        return lmp_err(LMP_ENOMEM, "out of memory");
    size_t n = strlen(p);
    for (size_t i = 1; i <= n && rc == LMP_OK; i++) {
        if (p[i] != '/' && p[i] != 0)
            continue;
        char c = p[i];
        p[i] = 0;
        if (!lmp_path_exists(p)) {
            if (mkdir(p, 0777) != 0) {
                if (errno != EEXIST)
                    rc = lmp_err(LMP_EIO, "%s: cannot create folder: %s", p, strerror(errno));
            } else {
                char **md = realloc(w->made_dirs, (size_t)(w->n_made + 1) * sizeof *md);
                if (md) {
                    w->made_dirs = md;
                    if ((md[w->n_made] = strdup(p)))
                        w->n_made++;
                }
            }
        }
        p[i] = c;
    }
    free(p);
    return rc;
}

static int shard_open(lmp_st_writer *w, int s)
{
    st_wshard *sh = &w->sh[s];
    int rc = lmp_outfile_open(&sh->out, sh->path, w->force);
    if (rc != LMP_OK)
        return rc;
    sh->state = 1;
    rc = lmp_outfile_write(&sh->out, sh->header, sh->header_len);
    free(sh->header);
    sh->header = NULL;
    return rc;
}

/* Completes shard s's temporary file (flushed, synced, closed); renamed by finish. */
static int shard_close(lmp_st_writer *w, int s)
{
    st_wshard *sh = &w->sh[s];
    lmp_outfile *o = &sh->out;
    int rc = LMP_OK;
    if (o->failed)
        rc = LMP_EIO;
    else if (o->written != sh->header_len + sh->data_bytes)
        rc = lmp_err(LMP_EIO, "%s: wrote %" PRIu64 " bytes, expected %" PRIu64, sh->path,
                     o->written, (uint64_t)sh->header_len + sh->data_bytes);
    if (fflush(o->fp) != 0 || fsync(fileno(o->fp)) != 0)
        rc = lmp_err(LMP_EIO, "%s: flush failed: %s", sh->path, strerror(errno));
    if (fclose(o->fp) != 0 && rc == LMP_OK)
        rc = lmp_err(LMP_EIO, "%s: close failed: %s", sh->path, strerror(errno));
    o->fp = NULL;
    sh->state = 2;
    return rc;
}

/* Steps past completed (and empty) tensors, closing a shard when its last tensor is done
 * and opening the next. */
static int writer_advance(lmp_st_writer *w)
{
    while (w->cur < w->nt && w->cur_done == w->t[w->cur].nbytes) {
        int s = w->t[w->cur].shard, rc;
        w->cur++;
        w->cur_done = 0;
        if (w->cur < w->nt && w->t[w->cur].shard == s)
            continue;
        if ((rc = shard_close(w, s)) != LMP_OK)
            return rc;
        if (w->cur < w->nt && (rc = shard_open(w, w->t[w->cur].shard)) != LMP_OK)
            return rc;
    }
    return LMP_OK;
}

static int writer_begin(lmp_st_writer *w)
{
    int rc;

    /* names must be unique */
    name_ref *refs = calloc((size_t)w->nt + 1, sizeof *refs);
    if (!refs)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int i = 0; i < w->nt; i++)
        refs[i] = (name_ref){w->t[i].name, i};
    qsort(refs, (size_t)w->nt, sizeof *refs, cmp_name_ref);
    for (int i = 1; i < w->nt; i++)
        if (strcmp(refs[i - 1].name, refs[i].name) == 0) {
            rc = lmp_err(LMP_EINVAL, "%s: tensor '%s' added twice", w->path, refs[i].name);
            free(refs);
            return rc;
        }
    free(refs);

    /* greedy shard assignment in declared order */
    int nsh = 1;
    uint64_t used = 0;
    for (int i = 0; i < w->nt; i++) {
        st_wtensor *t = &w->t[i];
        /* a new shard only for a tensor with bytes that does not fit beside the bytes
         * already there: empty tensors never open a shard, a tensor larger than the limit
         * gets one of its own */
        if (w->shard_bytes && used > 0 && t->nbytes > 0 &&
            (used >= w->shard_bytes || t->nbytes > w->shard_bytes - used)) {
            nsh++;
            used = 0;
        }
        t->shard = nsh - 1;
        t->offset = used;
        used += t->nbytes;
    }
    w->sh = calloc((size_t)nsh, sizeof *w->sh);
    if (!w->sh)
        return lmp_err(LMP_ENOMEM, "out of memory");
    w->nsh = nsh;
    for (int i = 0; i < w->nt; i++)
        w->sh[w->t[i].shard].data_bytes += w->t[i].nbytes;
    for (int s = 0; s < nsh; s++) {
        char name[64];
        if (!w->dir) {
            w->sh[s].path = strdup(w->path);
        } else {
            if (nsh == 1)
                snprintf(name, sizeof name, SINGLE_NAME);
            else
                snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, nsh);
            w->sh[s].path = lmp_path_join(w->dir, name);
        }
        if (!w->sh[s].path)
            return lmp_err(LMP_ENOMEM, "out of memory");
    }
    if (nsh > 1 && !(w->index_path = lmp_path_join(w->dir, INDEX_NAME)))
        return lmp_err(LMP_ENOMEM, "out of memory");

    /* refuse existing outputs before writing anything; in a folder, model.safetensors and
     * the index shadow each other, so either one counts */
    if (!w->force) {
        for (int s = 0; s < nsh; s++)
            if (lmp_path_exists(w->sh[s].path))
                return lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)",
                               w->sh[s].path);
        if (w->dir) {
            const char *other[2] = {SINGLE_NAME, INDEX_NAME};
            for (int i = 0; i < 2; i++) {
                char *p = lmp_path_join(w->dir, other[i]);
                bool ex = p && lmp_path_exists(p);
                if (ex) {
                    rc = lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)", p);
                    free(p);
                    return rc;
                }
                free(p);
            }
        }
    }
    for (int s = 0; s < nsh; s++)
        if ((rc = build_header(w, s)) != LMP_OK)
            return rc;

    w->begun = true;
    if (w->dir && (rc = mkdirs(w, w->dir)) != LMP_OK)
        return rc;
    if ((rc = shard_open(w, 0)) != LMP_OK)
        return rc;
    return writer_advance(w);
}

int lmp_st_writer_begin(lmp_st_writer *w)
{
    if (!w)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_begin: NULL writer");
    if (w->rc)
        return w->rc;
    if (w->begun)
        return lmp_err(LMP_EINVAL, "%s: begin called twice", w->path);
    int rc = writer_begin(w);
    return rc ? writer_fail(w, rc) : LMP_OK;
}

int lmp_st_writer_write(lmp_st_writer *w, const void *data, size_t n)
{
    const uint8_t *p = data;
    int rc;
    if (!w)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_write: NULL writer");
    if (w->rc)
        return w->rc;
    if (!w->begun)
        return lmp_err(LMP_EINVAL, "%s: write before begin", w->path);
    while (n > 0) {
        if (w->cur >= w->nt)
            return writer_fail(w, lmp_err(LMP_EINVAL,
                                          "%s: %zu bytes written past the last declared tensor",
                                          w->path, n));
        const st_wtensor *t = &w->t[w->cur];
        uint64_t left = t->nbytes - w->cur_done;
        size_t k = n < left ? n : (size_t)left;
        if ((rc = lmp_outfile_write(&w->sh[t->shard].out, p, k)) != LMP_OK)
            return writer_fail(w, rc);
        w->cur_done += k;
        p += k;
        n -= k;
        if ((rc = writer_advance(w)) != LMP_OK)
            return writer_fail(w, rc);
    }
    return LMP_OK;
}

static int write_index(lmp_st_writer *w, lmp_outfile *o)
{
    sbuf b = {0};
    uint64_t total = 0;
    for (int i = 0; i < w->nt; i++)
        total += w->t[i].nbytes;
    sb_printf(&b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {",
              total);
    for (int i = 0; i < w->nt; i++) {
        const char *p = w->sh[w->t[i].shard].path, *base = strrchr(p, '/');
        sb_puts(&b, i ? ",\n    " : "\n    ");
        sb_json_str(&b, w->t[i].name);
        sb_puts(&b, ": ");
        sb_json_str(&b, base ? base + 1 : p);
    }
    sb_puts(&b, "\n  }\n}\n");
    if (b.oom) {
        free(b.p);
        return lmp_err(LMP_ENOMEM, "%s: out of memory", w->index_path);
    }
    int rc = lmp_outfile_open(o, w->index_path, w->force);
    if (rc == LMP_OK)
        rc = lmp_outfile_write(o, b.p, b.n);
    free(b.p);
    return rc;
}

int lmp_st_writer_finish(lmp_st_writer *w)
{
    int rc = LMP_OK;
    lmp_outfile idx;
    memset(&idx, 0, sizeof idx);
    if (!w)
        return lmp_err(LMP_EINVAL, "lmp_st_writer_finish: NULL writer");
    if (w->rc) {
        rc = w->rc;
        goto done;
    }
    if (!w->begun) {
        rc = lmp_err(LMP_EINVAL, "%s: finish without begin", w->path);
        goto done;
    }
    if (w->cur < w->nt) {
        rc = lmp_err(LMP_EINVAL, "%s: tensor '%s': %" PRIu64 " of %" PRIu64
                                 " bytes written (%d of %d tensors complete)",
                     w->path, w->t[w->cur].name, w->cur_done, w->t[w->cur].nbytes, w->cur, w->nt);
        goto done;
    }
    for (int s = 0; s < w->nsh; s++)
        if (w->sh[s].state == 1 && (rc = shard_close(w, s)) != LMP_OK)
            goto done;
    if (w->index_path && (rc = write_index(w, &idx)) != LMP_OK)
        goto done;
    /* shards first, the index last, so no reader sees an index whose shards are missing */
    for (int s = 0; s < w->nsh; s++) {
        st_wshard *sh = &w->sh[s];
        if (!lmp_dist_root()) /* rank 0 writes the output; this rank's copy is dropped */
            unlink(sh->out.tmp_path);
        else if (rename(sh->out.tmp_path, sh->path) != 0) {
            rc = lmp_err(LMP_EIO, "%s: rename failed: %s", sh->path, strerror(errno));
            goto done;
        }
        sh->state = 3;
        lmp_outfile_renamed(&sh->out);
    }
    if (w->index_path && (rc = lmp_outfile_commit(&idx)) != LMP_OK)
        goto done;
    /* with force, a stale model.safetensors or index from an earlier run would shadow
     * (or be shadowed by) what was just written */
    if (w->dir && w->force && lmp_dist_root()) {
        char *stale = lmp_path_join(w->dir, w->index_path ? SINGLE_NAME : INDEX_NAME);
        if (stale && lmp_path_exists(stale) && unlink(stale) == 0)
            lmp_info("removed stale %s", stale);
        free(stale);
    }
    for (int s = 0; s < w->nsh; s++)
        w->sh[s].state = 0;
done:
    if (rc != LMP_OK) {
        lmp_outfile_abort(&idx);
        writer_fail(w, rc);
    }
    writer_free(w);
    return rc;
}

void lmp_st_writer_abort(lmp_st_writer *w)
{
    if (!w)
        return;
    if (!w->rc)
        writer_discard(w);
    writer_free(w);
}
