/*
 * The logits file: writer (lib/io's extendable HDF5 datasets, one chunk per sequence,
 * shuffle + deflate) and reader (HDF5 hyperslabs, one sequence at a time). The layout is
 * docs/formats/logits.md; this file is the only code that knows dataset names.
 */
#include "distill_internal.h"

#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static size_t lp_size(const lw_header *h) { return h->f32 ? 4 : 2; }

int lw_seq_alloc(lw_seq *s, const lw_header *h)
{
    memset(s, 0, sizeof *s);
    size_t c = (size_t)h->ctx, k = (size_t)h->k;
    s->tokens = malloc(c * 4);
    s->targets = malloc(c * 4);
    s->target_lp = malloc(c * 4);
    s->lse = malloc(c * 4);
    s->rest = malloc(c * 4);
    s->topk_ids = malloc(c * k * 4 + 4);
    s->topk_lp = malloc(c * k * lp_size(h) + 4);
    if (h->full)
        s->full_lp = malloc(c * (size_t)h->vocab * lp_size(h));
    if (!s->tokens || !s->targets || !s->target_lp || !s->lse || !s->rest || !s->topk_ids ||
        !s->topk_lp || (h->full && !s->full_lp)) {
        lw_seq_free(s);
        return lmp_err(LMP_ENOMEM, "out of memory for one sequence (ctx %d, vocab %d)", h->ctx,
                       h->vocab);
    }
    return LMP_OK;
}

void lw_seq_free(lw_seq *s)
{
    if (!s)
        return;
    free(s->tokens);
    free(s->targets);
    free(s->target_lp);
    free(s->lse);
    free(s->rest);
    free(s->topk_ids);
    free(s->topk_lp);
    free(s->full_lp);
    memset(s, 0, sizeof *s);
}

void lw_export_id(const lw_header *h, char *buf, size_t n)
{
    snprintf(buf, n,
             "teacher=%016" PRIx64 " tokenizer=%016" PRIx64 " text=%016" PRIx64
             " vocab=%d k=%d ctx=%d temperature=%.17g logprobs=%s full=%d protocol=%s windows=%d",
             h->teacher_hash, h->tokenizer_hash, h->text_hash, h->vocab, h->k, h->ctx,
             h->temperature, h->f32 ? "f32" : "f16", h->full ? 1 : 0, h->protocol, h->n_windows);
}

/* ---------------------------------------------------------------- writer ---------- */

struct lw_writer {
    lmp_h5 *f;
    lw_header h;
    int64_t n;
};

static int set_hex(lmp_h5 *f, const char *key, uint64_t v)
{
    char b[24];
    snprintf(b, sizeof b, "%016" PRIx64, v);
    return lmp_h5_attr_set_str(f, "/", key, b);
}

int lw_writer_open(lw_writer **out, const char *path, const lw_header *h, int deflate, bool force)
{
    *out = NULL;
    lw_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lmp_err(LMP_ENOMEM, "out of memory");
    w->h = *h;
    int rc = lmp_h5_create(&w->f, path, force);
    if (rc) {
        free(w);
        return rc;
    }
    lmp_h5 *f = w->f;
    const lmp_dtype lpt = h->f32 ? LMP_DT_F32 : LMP_DT_F16;
    const int64_t c = h->ctx, ck[2] = {h->ctx, h->k}, cv[2] = {h->ctx, h->vocab};
    char id[512];
    lw_export_id(h, id, sizeof id);
    if ((rc = lmp_h5_attr_set_str(f, "/", "format", LMP_LOGITS_FORMAT)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "format_version", LMP_LOGITS_VERSION)) ||
        (rc = lmp_h5_attr_set_str(f, "/", "lmpress_version", LMP_VERSION)) ||
        (rc = lmp_h5_attr_set_str(f, "/", "teacher", h->teacher)) ||
        (rc = set_hex(f, "teacher_hash", h->teacher_hash)) ||
        (rc = set_hex(f, "tokenizer_hash", h->tokenizer_hash)) ||
        (rc = set_hex(f, "vocab_hash", h->vocab_hash)) ||
        (rc = set_hex(f, "text_hash", h->text_hash)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "vocab_size", h->vocab)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "k", h->k)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "ctx", h->ctx)) ||
        (rc = lmp_h5_attr_set_f64(f, "/", "temperature", h->temperature)) ||
        (rc = lmp_h5_attr_set_str(f, "/", "logprob_dtype", h->f32 ? "f32" : "f16")) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "full", h->full)) ||
        (rc = lmp_h5_attr_set_str(f, "/", "protocol", h->protocol)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "bos", h->bos)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "n_text_tokens", h->n_text_tokens)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "n_windows", h->n_windows)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "shard_index", h->shard_index)) ||
        (rc = lmp_h5_attr_set_i64(f, "/", "shard_count", h->shard_count)) ||
        (rc = lmp_h5_attr_set_str(f, "/", "export_id", id)) ||
        (rc = lmp_h5_ext_create(f, "seq_index", LMP_DT_I64, 1, NULL, 1, deflate)) ||
        (rc = lmp_h5_ext_create(f, "tokens", LMP_DT_I32, 2, &c, 1, deflate)) ||
        (rc = lmp_h5_ext_create(f, "targets", LMP_DT_I32, 2, &c, 1, deflate)) ||
        (rc = lmp_h5_ext_create(f, "target_logprob", LMP_DT_F32, 2, &c, 1, deflate)) ||
        (rc = lmp_h5_ext_create(f, "logsumexp", LMP_DT_F32, 2, &c, 1, deflate)))
        goto fail;
    if (h->k > 0 && ((rc = lmp_h5_ext_create(f, "rest_mass", LMP_DT_F32, 2, &c, 1, deflate)) ||
                     (rc = lmp_h5_ext_create(f, "topk_ids", LMP_DT_I32, 3, ck, 1, deflate)) ||
                     (rc = lmp_h5_ext_create(f, "topk_logprobs", lpt, 3, ck, 1, deflate))))
        goto fail;
    if (h->full && (rc = lmp_h5_ext_create(f, "logprobs", lpt, 3, cv, 1, deflate)))
        goto fail;
    *out = w;
    return LMP_OK;
fail:
    lmp_h5_close(w->f, false);
    free(w);
    return rc;
}

int lw_writer_append(lw_writer *w, const lw_seq *s)
{
    lmp_h5 *f = w->f;
    int rc;
    if ((rc = lmp_h5_ext_append(f, "seq_index", &s->seq_index, 1)) ||
        (rc = lmp_h5_ext_append(f, "tokens", s->tokens, 1)) ||
        (rc = lmp_h5_ext_append(f, "targets", s->targets, 1)) ||
        (rc = lmp_h5_ext_append(f, "target_logprob", s->target_lp, 1)) ||
        (rc = lmp_h5_ext_append(f, "logsumexp", s->lse, 1)))
        return rc;
    if (w->h.k > 0 && ((rc = lmp_h5_ext_append(f, "rest_mass", s->rest, 1)) ||
                       (rc = lmp_h5_ext_append(f, "topk_ids", s->topk_ids, 1)) ||
                       (rc = lmp_h5_ext_append(f, "topk_logprobs", s->topk_lp, 1))))
        return rc;
    if (w->h.full && (rc = lmp_h5_ext_append(f, "logprobs", s->full_lp, 1)))
        return rc;
    w->n++;
    return LMP_OK;
}

int lw_writer_close(lw_writer *w, bool commit)
{
    if (!w)
        return LMP_OK;
    int rc = LMP_OK;
    if (commit)
        rc = lmp_h5_attr_set_i64(w->f, "/", "n_sequences", w->n);
    int rc2 = lmp_h5_close(w->f, commit && rc == LMP_OK);
    free(w);
    return rc ? rc : rc2;
}

/* ---------------------------------------------------------------- reader ---------- */

struct lw_reader {
    hid_t file;
    char *path;
    lw_header h;
    hid_t half;
    uint8_t *seen; /* (vocab) scratch for the duplicate top-k id check */
};

static hid_t half_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

static int rd_attr(lw_reader *r, const char *key, hid_t mt, void *val, bool str)
{
    if (H5Aexists(r->file, key) <= 0)
        return lmp_err(LMP_EFORMAT, "%s: attribute '%s' missing (not an lmpress logits file?)",
                       r->path, key);
    hid_t a = H5Aopen(r->file, key, H5P_DEFAULT);
    hid_t t = H5Aget_type(a);
    int rc = LMP_OK;
    if (str) {
        char *s = NULL;
        size_t n = H5Tget_size(t);
        if (H5Tget_class(t) != H5T_STRING || H5Tis_variable_str(t) > 0 || n == 0 || n > 4096) {
            rc = lmp_err(LMP_EFORMAT, "%s: attribute '%s' is not a fixed-length string", r->path, key);
        } else if (!(s = calloc(1, n + 1)) || H5Aread(a, t, s) < 0) {
            rc = lmp_err(LMP_EFORMAT, "%s: attribute '%s' unreadable", r->path, key);
            free(s);
        } else {
            *(char **)val = s;
        }
    } else {
        H5T_class_t cl = H5Tget_class(t);
        if ((cl != H5T_INTEGER && cl != H5T_FLOAT) || H5Aread(a, mt, val) < 0)
            rc = lmp_err(LMP_EFORMAT, "%s: attribute '%s' is not numeric", r->path, key);
    }
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

static int rd_i64(lw_reader *r, const char *key, int64_t lo, int64_t hi, int64_t *v)
{
    int rc = rd_attr(r, key, H5T_NATIVE_INT64, v, false);
    if (rc == LMP_OK && (*v < lo || *v > hi))
        rc = lmp_err(LMP_EFORMAT, "%s: attribute %s = %lld out of range [%lld, %lld]", r->path, key,
                     (long long)*v, (long long)lo, (long long)hi);
    return rc;
}

static int rd_int(lw_reader *r, const char *key, int64_t lo, int64_t hi, int *v)
{
    int64_t x;
    int rc = rd_i64(r, key, lo, hi, &x);
    *v = (int)x;
    return rc;
}

static int rd_hex(lw_reader *r, const char *key, uint64_t *v)
{
    char *s = NULL, *end;
    int rc = rd_attr(r, key, 0, &s, true);
    if (rc)
        return rc;
    *v = strtoull(s, &end, 16);
    if (end == s || *end)
        rc = lmp_err(LMP_EFORMAT, "%s: attribute %s = '%s' is not a hex hash", r->path, key, s);
    free(s);
    return rc;
}

static int rd_str(lw_reader *r, const char *key, char *buf, size_t n)
{
    char *s = NULL;
    int rc = rd_attr(r, key, 0, &s, true);
    if (rc)
        return rc;
    snprintf(buf, n, "%s", s);
    free(s);
    return LMP_OK;
}

/* Checks dataset `name`: rank nd, dims[1..] as given, dims[0] == rows (or sets *rows when
 * it is negative), element class/size. */
static int check_ds(lw_reader *r, const char *name, int nd, const int64_t *dims, int64_t *rows,
                    H5T_class_t cl, size_t size)
{
    if (H5Lexists(r->file, name, H5P_DEFAULT) <= 0)
        return lmp_err(LMP_EFORMAT, "%s: dataset '%s' missing", r->path, name);
    hid_t ds = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (ds < 0)
        return lmp_err(LMP_EFORMAT, "%s: dataset '%s' unreadable", r->path, name);
    hid_t sp = H5Dget_space(ds), t = H5Dget_type(ds);
    hsize_t d[8];
    int rc = LMP_OK, got = H5Sget_simple_extent_ndims(sp);
    if (got != nd) {
        rc = lmp_err(LMP_EFORMAT, "%s: dataset '%s' has rank %d, expected %d", r->path, name, got, nd);
    } else {
        H5Sget_simple_extent_dims(sp, d, NULL);
        if (*rows < 0)
            *rows = (int64_t)d[0];
        if ((int64_t)d[0] != *rows)
            rc = lmp_err(LMP_EFORMAT, "%s: dataset '%s' has %lld sequences, expected %lld (truncated?)",
                         r->path, name, (long long)d[0], (long long)*rows);
        for (int i = 1; i < nd && !rc; i++)
            if ((int64_t)d[i] != dims[i - 1])
                rc = lmp_err(LMP_EFORMAT, "%s: dataset '%s' axis %d is %lld, expected %lld", r->path,
                             name, i, (long long)d[i], (long long)dims[i - 1]);
        if (!rc && (H5Tget_class(t) != cl || H5Tget_size(t) != size))
            rc = lmp_err(LMP_EFORMAT, "%s: dataset '%s' has the wrong element type", r->path, name);
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Dclose(ds);
    return rc;
}

int lw_reader_open(lw_reader **out, const char *path)
{
    *out = NULL;
    lmp_h5_init();
    if (!lmp_path_exists(path))
        return lmp_err(LMP_ENOTFOUND, "%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0)
        return lmp_err(LMP_EFORMAT, "%s: not an HDF5 file (or truncated/corrupt)", path);
    lw_reader *r = calloc(1, sizeof *r);
    if (!r)
        return lmp_err(LMP_ENOMEM, "out of memory");
    r->path = strdup(path);
    lmp_input_note(path);
    r->half = half_type();
    r->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    int rc = LMP_OK;
    if (r->file < 0) {
        rc = lmp_err(LMP_EFORMAT, "%s: cannot open HDF5 file (truncated or corrupt?)", path);
        goto fail;
    }
    lw_header *h = &r->h;
    char fmt[64], dt[16];
    int ver, full;
    if ((rc = rd_str(r, "format", fmt, sizeof fmt)))
        goto fail;
    if (strcmp(fmt, LMP_LOGITS_FORMAT) != 0) {
        rc = lmp_err(LMP_EFORMAT, "%s: format is '%s', expected '%s'", path, fmt, LMP_LOGITS_FORMAT);
        goto fail;
    }
    if ((rc = rd_int(r, "format_version", 1, LMP_LOGITS_VERSION, &ver)) ||
        (rc = rd_str(r, "teacher", h->teacher, sizeof h->teacher)) ||
        (rc = rd_hex(r, "teacher_hash", &h->teacher_hash)) ||
        (rc = rd_hex(r, "tokenizer_hash", &h->tokenizer_hash)) ||
        (rc = rd_hex(r, "vocab_hash", &h->vocab_hash)) ||
        (rc = rd_hex(r, "text_hash", &h->text_hash)) ||
        (rc = rd_int(r, "vocab_size", 1, 1 << 24, &h->vocab)) ||
        (rc = rd_int(r, "k", 0, h->vocab, &h->k)) ||
        (rc = rd_int(r, "ctx", 1, 1 << 22, &h->ctx)) ||
        (rc = rd_attr(r, "temperature", H5T_NATIVE_DOUBLE, &h->temperature, false)) ||
        (rc = rd_str(r, "logprob_dtype", dt, sizeof dt)) ||
        (rc = rd_int(r, "full", 0, 1, &full)) ||
        (rc = rd_str(r, "protocol", h->protocol, sizeof h->protocol)) ||
        (rc = rd_int(r, "bos", -1, h->vocab - 1, &h->bos)) ||
        (rc = rd_i64(r, "n_text_tokens", 0, INT64_MAX, &h->n_text_tokens)) ||
        (rc = rd_int(r, "n_windows", 1, INT32_MAX, &h->n_windows)) ||
        (rc = rd_int(r, "shard_count", 1, INT32_MAX, &h->shard_count)) ||
        (rc = rd_int(r, "shard_index", 0, h->shard_count - 1, &h->shard_index)))
        goto fail;
    h->full = full;
    if (!(h->temperature > 0) || !isfinite(h->temperature) || (strcmp(dt, "f16") && strcmp(dt, "f32")) ||
        (h->k == 0 && !h->full)) {
        rc = lmp_err(LMP_EFORMAT, "%s: bad attributes (temperature %g, logprob_dtype '%s', k %d, full %d)",
                     path, h->temperature, dt, h->k, full);
        goto fail;
    }
    h->f32 = strcmp(dt, "f32") == 0;
    int64_t rows = -1, c = h->ctx, ck[2] = {h->ctx, h->k}, cv[2] = {h->ctx, h->vocab};
    size_t lps = h->f32 ? 4 : 2;
    if ((rc = check_ds(r, "seq_index", 1, NULL, &rows, H5T_INTEGER, 8)) ||
        (rc = check_ds(r, "tokens", 2, &c, &rows, H5T_INTEGER, 4)) ||
        (rc = check_ds(r, "targets", 2, &c, &rows, H5T_INTEGER, 4)) ||
        (rc = check_ds(r, "target_logprob", 2, &c, &rows, H5T_FLOAT, 4)) ||
        (rc = check_ds(r, "logsumexp", 2, &c, &rows, H5T_FLOAT, 4)))
        goto fail;
    if (h->k > 0 && ((rc = check_ds(r, "rest_mass", 2, &c, &rows, H5T_FLOAT, 4)) ||
                     (rc = check_ds(r, "topk_ids", 3, ck, &rows, H5T_INTEGER, 4)) ||
                     (rc = check_ds(r, "topk_logprobs", 3, ck, &rows, H5T_FLOAT, lps))))
        goto fail;
    if (h->full && (rc = check_ds(r, "logprobs", 3, cv, &rows, H5T_FLOAT, lps)))
        goto fail;
    int64_t nseq;
    if ((rc = rd_i64(r, "n_sequences", 0, INT32_MAX, &nseq)))
        goto fail;
    if (nseq != rows) {
        rc = lmp_err(LMP_EFORMAT, "%s: n_sequences is %lld but the datasets hold %lld", path,
                     (long long)nseq, (long long)rows);
        goto fail;
    }
    h->n_seqs = rows;
    /* Files written before checksums (no Fletcher32 filter) are read with their values
     * range-checked only: they hold nothing else that could be verified. */
    if (lmp_h5_ds_checksummed((int64_t)r->file, "target_logprob") == 0)
        lmp_warn("%s: written without checksums (an older lmpress): values are range-checked but a "
                 "damaged byte cannot be detected; export it again to get checksums", path);
    if (!(r->seen = calloc((size_t)h->vocab, 1))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    *out = r;
    return LMP_OK;
fail:
    lw_reader_close(r);
    return rc;
}

const lw_header *lw_reader_header(const lw_reader *r) { return &r->h; }

static int rd_row(lw_reader *r, const char *name, int64_t row, hid_t mt, void *buf)
{
    hid_t ds = H5Dopen2(r->file, name, H5P_DEFAULT);
    if (ds < 0)
        return lmp_err(LMP_EFORMAT, "%s: dataset '%s' unreadable", r->path, name);
    hid_t fs = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(fs);
    hsize_t dims[8], start[8] = {0};
    H5Sget_simple_extent_dims(fs, dims, NULL);
    dims[0] = 1;
    start[0] = (hsize_t)row;
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, dims, NULL);
    hid_t ms = H5Screate_simple(nd, dims, NULL);
    int rc = H5Dread(ds, mt, ms, fs, H5P_DEFAULT, buf) < 0
                 ? lmp_err(LMP_EFORMAT,
                           "%s: cannot read sequence %lld of '%s' (checksum mismatch: the file is damaged "
                           "or truncated)",
                           r->path, (long long)row, name)
                 : LMP_OK;
    H5Sclose(ms);
    H5Sclose(fs);
    H5Dclose(ds);
    return rc;
}

static float lp_get(const lw_header *h, const void *lp, int64_t i)
{
    return h->f32 ? ((const float *)lp)[i] : lmp_f16_to_f32(((const uint16_t *)lp)[i]);
}

/* The values every consumer relies on: finite log-sum-exps, log-probs that are log-probs
 * (not NaN, <= 0; -inf is a probability that underflowed), the rest mass a probability,
 * top-k ids distinct. Anything else is a damaged or forged file, refused naming the place. */
static int check_values(lw_reader *r, int64_t row, const lw_seq *s)
{
    const lw_header *h = &r->h;
    const int k = h->k;
    for (int j = 0; j < h->ctx; j++) {
        if (!isfinite(s->lse[j]))
            return lmp_err(LMP_EFORMAT, "%s: sequence %lld position %d: logsumexp is %g (not finite)",
                           r->path, (long long)row, j, (double)s->lse[j]);
        if (s->targets[j] >= 0 && !(s->target_lp[j] <= 0 && s->target_lp[j] > -INFINITY))
            return lmp_err(LMP_EFORMAT,
                           "%s: sequence %lld position %d: target_logprob is %g (a log-prob is finite and <= 0)",
                           r->path, (long long)row, j, (double)s->target_lp[j]);
        if (k > 0 && !(s->rest[j] >= 0 && s->rest[j] <= 1))
            return lmp_err(LMP_EFORMAT, "%s: sequence %lld position %d: rest_mass is %g (outside [0, 1])",
                           r->path, (long long)row, j, (double)s->rest[j]);
        const int32_t *ids = s->topk_ids + (int64_t)j * k;
        int bad = -1;
        for (int a = 0; a < k && bad < 0; a++) {
            if (r->seen[ids[a]])
                bad = a;
            r->seen[ids[a]] = 1;
        }
        for (int a = 0; a < k; a++)
            r->seen[ids[a]] = 0;
        if (bad >= 0)
            return lmp_err(LMP_EFORMAT, "%s: sequence %lld position %d: top-k id %d appears twice", r->path,
                           (long long)row, j, ids[bad]);
        for (int a = 0; a < k; a++) {
            float v = lp_get(h, s->topk_lp, (int64_t)j * k + a);
            if (!(v <= 0))
                return lmp_err(LMP_EFORMAT,
                               "%s: sequence %lld position %d: top-k log-prob %g of id %d (a log-prob is <= 0)",
                               r->path, (long long)row, j, (double)v, ids[a]);
        }
    }
    if (h->full)
        for (int64_t i = 0; i < (int64_t)h->ctx * h->vocab; i++) {
            float v = lp_get(h, s->full_lp, i);
            if (!(v <= 0))
                return lmp_err(LMP_EFORMAT,
                               "%s: sequence %lld position %lld: log-prob %g of id %lld (a log-prob is <= 0)",
                               r->path, (long long)row, (long long)(i / h->vocab), (double)v,
                               (long long)(i % h->vocab));
        }
    return LMP_OK;
}

int lw_reader_read(lw_reader *r, int64_t row, lw_seq *s)
{
    const lw_header *h = &r->h;
    if (row < 0 || row >= h->n_seqs)
        return lmp_err(LMP_EINVAL, "%s: sequence %lld out of range (%lld)", r->path, (long long)row,
                       (long long)h->n_seqs);
    hid_t lpt = h->f32 ? H5T_NATIVE_FLOAT : r->half;
    int rc;
    if ((rc = rd_row(r, "seq_index", row, H5T_NATIVE_INT64, &s->seq_index)) ||
        (rc = rd_row(r, "tokens", row, H5T_NATIVE_INT32, s->tokens)) ||
        (rc = rd_row(r, "targets", row, H5T_NATIVE_INT32, s->targets)) ||
        (rc = rd_row(r, "target_logprob", row, H5T_NATIVE_FLOAT, s->target_lp)) ||
        (rc = rd_row(r, "logsumexp", row, H5T_NATIVE_FLOAT, s->lse)))
        return rc;
    if (h->k > 0 && ((rc = rd_row(r, "rest_mass", row, H5T_NATIVE_FLOAT, s->rest)) ||
                     (rc = rd_row(r, "topk_ids", row, H5T_NATIVE_INT32, s->topk_ids)) ||
                     (rc = rd_row(r, "topk_logprobs", row, lpt, s->topk_lp))))
        return rc;
    if (h->full && (rc = rd_row(r, "logprobs", row, lpt, s->full_lp)))
        return rc;
    /* ids index the model's rows: check them before anyone uses them */
    for (int j = 0; j < h->ctx; j++)
        if (s->tokens[j] < 0 || s->tokens[j] >= h->vocab || s->targets[j] < -1 ||
            s->targets[j] >= h->vocab)
            return lmp_err(LMP_EFORMAT, "%s: sequence %lld position %d: token id out of range", r->path,
                           (long long)row, j);
    for (int64_t j = 0; j < (int64_t)h->ctx * h->k; j++)
        if (s->topk_ids[j] < 0 || s->topk_ids[j] >= h->vocab)
            return lmp_err(LMP_EFORMAT, "%s: sequence %lld: top-k id %d out of range", r->path,
                           (long long)row, s->topk_ids[j]);
    return check_values(r, row, s);
}

int lw_reader_seq_indices(lw_reader *r, int64_t *out)
{
    if (r->h.n_seqs == 0)
        return LMP_OK;
    hid_t ds = H5Dopen2(r->file, "seq_index", H5P_DEFAULT);
    int rc = ds >= 0 && H5Dread(ds, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) >= 0
                 ? LMP_OK
                 : lmp_err(LMP_EFORMAT, "%s: cannot read 'seq_index' (truncated or corrupt?)", r->path);
    if (ds >= 0)
        H5Dclose(ds);
    return rc;
}

void lw_reader_close(lw_reader *r)
{
    if (!r)
        return;
    if (r->file > 0)
        H5Fclose(r->file);
    if (r->half > 0)
        H5Tclose(r->half);
    free(r->path);
    free(r->seen);
    free(r);
}
