/*
 * Importance matrix for the GGUF quantizers, as llama.cpp's llama-imatrix computes it
 * (tools/imatrix/imatrix.cpp: for every matrix multiplication with a weight, the sum of
 * x^2 per input column over all tokens, divided by the number of tokens): calibration
 * windows run through every block of the float model in order, a linear-input hook
 * accumulating in double. q/k/v read the same normed input, as do gate/up, so they share
 * one vector (llama.cpp stores identical copies). The output matrix is not collected
 * (llama-imatrix skips it unless --process-output). Not here: the block quantizers that
 * use the weights (kquants.c), the GGUF provenance keys (gguf_quant.c).
 */
#include "pipeline.h"
#include "quant.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_imatrix_free(lmp_imatrix *im)
{
    if (!im)
        return;
    free(im->v);
    free(im->ev);
    free(im->ecount);
    memset(im, 0, sizeof *im);
}

/* The imatrix row: E[x^2] per input class (and per expert over its routed tokens), on
 * the float model, streamed window by window through all blocks. */
typedef struct {
    lmp_imatrix *out;
    int64_t off[LMP_IN_COUNT];    /* offset of each class within a layer's run */
    int64_t per_layer;
    double ntok;
} im_ctx;

static int im_block(void *ctx, lmp_calib_block *b)
{
    im_ctx *c = ctx;
    lmp_imatrix *out = c->out;
    const int l = b->layer;
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        const double *a = b->st.xsq[k];
        float *o = out->v + (int64_t)l * c->per_layer + c->off[k];
        for (int64_t j = 0; j < b->cols[k]; j++)
            o[j] = (float)(a[j] / c->ntok);
    }
    if (b->st.exsq) { /* each expert: the mean over ITS tokens; never reached: zeros */
        const int E = b->n_experts;
        const int64_t ed = b->e_hidden, eff = b->e_ff, per = (int64_t)E * (ed + eff);
        memcpy(out->ecount + (int64_t)l * E, b->st.ecount, sizeof(int64_t) * (size_t)E);
        const double *a = b->st.exsq;
        float *o = out->ev + (int64_t)l * per;
        for (int e = 0; e < E; e++) {
            const int64_t cnt = b->st.ecount[e];
            if (!cnt)
                continue;
            for (int64_t j = 0; j < ed; j++)
                o[(int64_t)e * ed + j] = (float)(a[(int64_t)e * ed + j] / (double)cnt);
            const int64_t base = (int64_t)E * ed + (int64_t)e * eff;
            for (int64_t j = 0; j < eff; j++)
                o[base + j] = (float)(a[base + j] / (double)cnt);
        }
    }
    return LMP_OK;
}

static const lmp_calib_method g_imatrix_row = {
    .name = "imatrix",
    .stats = LMP_STAT_XSQ | LMP_STAT_EXPERTS,
    .flags = LMP_CALIB_STREAM,
    .block = im_block,
};

int lmp_imatrix_collect(const lmp_model *m, const lmp_calib_data *cal, bool progress, lmp_imatrix *out)
{
    memset(out, 0, sizeof *out);
    if (!cal || cal->n_samples < 1 || cal->seq_len < 1)
        return lmp_err(LMP_EINVAL, "imatrix: no calibration windows");
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers, L = cal->seq_len;
    im_ctx ic;
    memset(&ic, 0, sizeof ic);
    ic.out = out;
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        ic.off[k] = ic.per_layer;
        ic.per_layer += lmp_calib_class_width(c, k);
    }
    ic.ntok = (double)cal->n_samples * L;
    int rc = LMP_OK;
    out->v = malloc(sizeof(float) * (size_t)(nl * ic.per_layer));
    if (!out->v) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (imatrix)");
        goto done;
    }
    if (lmp_model_is_moe(m)) {
        out->n_experts = c->n_experts;
        out->e_hidden = c->hidden_size;
        out->e_ff = c->moe_ff;
        const int64_t per = (int64_t)out->n_experts * (out->e_hidden + out->e_ff);
        out->ev = calloc((size_t)(nl * per), sizeof(float));
        out->ecount = malloc(sizeof(int64_t) * (size_t)nl * (size_t)out->n_experts);
        if (!out->ev || !out->ecount) {
            rc = lmp_err(LMP_ENOMEM, "out of memory (imatrix experts)");
            goto done;
        }
    }
    lmp_calib_opts o = {.progress = progress};
    /* the walk installs nothing: the model is only read */
    if ((rc = lmp_calib_run((lmp_model *)m, cal, &g_imatrix_row, &ic, &o)))
        goto done;
    out->n_layers = nl;
    for (int k = 0; k < LMP_LIN_COUNT; k++) /* the dense widths (experts: e_hidden, e_ff) */
        out->cols[k] = lmp_calib_class_width(c, lmp_linear_input((lmp_linear)k));
    out->n_chunks = cal->n_samples;
    out->n_tokens = (int64_t)cal->n_samples * L;
    out->n_entries = nl * LMP_LIN_COUNT;
done:
    if (rc)
        lmp_imatrix_free(out);
    return rc;
}

int lmp_imatrix_compute(const char *model, const char *calib_path, const lmp_calib_params *cp, bool progress,
                        lmp_imatrix *out)
{
    memset(out, 0, sizeof *out);
    lmp_model *m = NULL;
    lmp_calib_data cal = {0};
    int rc = lmp_model_load(&m, model);
    if (!rc) /* an HF llama computes as its GGUF does: the same importance to the last bit */
        rc = lmp_model_gguf_qk_order(m);
    if (rc) {
        lmp_model_free(m);
        return rc;
    }
    lmp_calib_params p = *cp;
    if (p.seq_len == 0) {
        int ctx = lmp_model_config(m)->max_pos > 0 ? lmp_model_config(m)->max_pos : 512;
        p.seq_len = ctx < 512 ? ctx : 512;
    }
    if ((rc = lmp_calib_load(m, calib_path, &p, &cal)) == 0)
        rc = lmp_imatrix_collect(m, &cal, progress, out);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    return rc;
}

const float *lmp_imatrix_get(const lmp_imatrix *im, int layer, lmp_linear which)
{
    if (!im || !im->v || layer < 0 || layer >= im->n_layers || (unsigned)which >= LMP_LIN_COUNT)
        return NULL;
    int64_t per = 0, off = 0;
    int cls = lmp_linear_input(which);
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        if (k == cls)
            off = per;
        per += im->cols[lmp_input_first(k)];
    }
    return im->v + (int64_t)layer * per + off;
}

const float *lmp_imatrix_weights(void *ctx, const char *gguf_name, int64_t cols)
{
    static const char *names[LMP_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
    const lmp_imatrix *im = ctx;
    int layer, n = 0;
    char what[32];
    if (!im || sscanf(gguf_name, "blk.%d.%31[a-z_].weight%n", &layer, what, &n) != 2 || gguf_name[n] != 0)
        return NULL;
    if (im->ev && layer >= 0 && layer < im->n_layers) { /* stacked experts: one slice each */
        const int64_t E = im->n_experts, per = E * (im->e_hidden + im->e_ff);
        const float *base = im->ev + (int64_t)layer * per;
        bool any = false; /* a dense layer (qwen3_moe mlp_only_layers) has no expert counts */
        for (int64_t e = 0; e < E; e++)
            any |= im->ecount[(int64_t)layer * E + e] > 0;
        if ((strcmp(what, "ffn_gate_exps") == 0 || strcmp(what, "ffn_up_exps") == 0) && any)
            return cols == E * im->e_hidden ? base : NULL;
        if (strcmp(what, "ffn_down_exps") == 0 && any)
            return cols == E * im->e_ff ? base + E * im->e_hidden : NULL;
    }
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (strcmp(what, names[k]) == 0)
            return im->cols[k] == cols ? lmp_imatrix_get(im, layer, (lmp_linear)k) : NULL;
    return NULL;
}

/* ---------------------------------------------------------------- imatrix files --- */

/* llama.cpp's two imatrix files, as common/imatrix-loader.cpp reads them and
 * tools/quantize/quantize.cpp turns them into per-column weights:
 *  - legacy binary (.dat): int32 n_entries; per entry int32 name_len, the name, int32
 *    ncall, int32 nval, float[nval] (stored as E[x^2] * ncall); then optionally int32
 *    chunk count and int32 len + dataset name. Weight = value / ncall (value when
 *    ncall <= 0), in float.
 *  - GGUF: tensors "<name>.in_sum2" (f32, nval = ne0 x n_mat) and "<name>.counts" (f32,
 *    n_mat), keys imatrix.chunk_count / imatrix.datasets. Weight = in_sum2 / count of its
 *    matrix (1 where the count is 0), in float.
 * Stricter than llama.cpp where its reader would accept garbage: negative lengths,
 * counts or sizes, values that are not finite and non-negative, duplicate names and
 * bytes after the trailer are refused with the offset and entry named. */

static int imf_add(lmp_imatrix_file *f, const char *name, size_t name_len, int64_t nval, const char *path)
{
    for (int i = 0; i < f->n_entries; i++)
        if (strlen(f->names[i]) == name_len && memcmp(f->names[i], name, name_len) == 0)
            return lmp_err(LMP_EFORMAT, "%s: imatrix entry '%.*s' appears twice", path, (int)name_len, name);
    if (f->n_entries % 64 == 0) {
        size_t cap = (size_t)f->n_entries + 64;
        char **nn = realloc(f->names, cap * sizeof *nn);
        if (nn)
            f->names = nn;
        float **vv = realloc(f->values, cap * sizeof *vv);
        if (vv)
            f->values = vv;
        int64_t *ll = realloc(f->nval, cap * sizeof *ll);
        if (ll)
            f->nval = ll;
        if (!nn || !vv || !ll)
            return lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
    }
    int i = f->n_entries;
    f->names[i] = strndup(name, name_len);
    f->values[i] = malloc((size_t)nval * sizeof(float));
    f->nval[i] = nval;
    f->n_entries++; /* counted now so that lmp_imatrix_file_free releases both */
    if (!f->names[i] || !f->values[i])
        return lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
    return LMP_OK;
}

static int imf_check_values(const lmp_imatrix_file *f, int i, const char *path)
{
    for (int64_t j = 0; j < f->nval[i]; j++)
        if (!isfinite(f->values[i][j]) || f->values[i][j] < 0)
            return lmp_err(LMP_EFORMAT, "%s: imatrix entry '%s' value %lld is %g (importance must be finite and "
                                        "non-negative)", path, f->names[i], (long long)j, (double)f->values[i][j]);
    return LMP_OK;
}

static int imf_load_legacy(lmp_imatrix_file *f, const uint8_t *d, size_t size, const char *path)
{
    size_t pos = 0;
    int32_t v;
#define RD32(what)                                                                                              \
    do {                                                                                                        \
        if (size - pos < 4)                                                                                     \
            return lmp_err(LMP_EFORMAT, "%s: imatrix file truncated at byte %zu (reading %s)", path, pos, what); \
        memcpy(&v, d + pos, 4);                                                                                 \
        pos += 4;                                                                                               \
    } while (0)
    RD32("the entry count");
    if (v < 1)
        return lmp_err(LMP_EFORMAT, "%s: not an imatrix file (entry count %d; llama.cpp's legacy .dat or GGUF "
                                    "imatrix expected)", path, (int)v);
    int32_t n = v;
    if ((size_t)n > size / 17 + 1) /* an entry takes at least 17 bytes */
        return lmp_err(LMP_EFORMAT, "%s: imatrix entry count %d does not fit a %zu-byte file", path, (int)n, size);
    for (int e = 0; e < n; e++) {
        char what[64];
        snprintf(what, sizeof what, "entry %d of %d", e + 1, (int)n);
        RD32(what);
        if (v < 1 || v > 4096 || (size_t)v > size - pos)
            return lmp_err(LMP_EFORMAT, "%s: imatrix %s: name length %d at byte %zu is out of range", path, what,
                           (int)v, pos - 4);
        const char *name = (const char *)d + pos;
        size_t name_len = (size_t)v;
        if (memchr(name, 0, name_len))
            return lmp_err(LMP_EFORMAT, "%s: imatrix %s: name holds a NUL byte", path, what);
        pos += name_len;
        RD32(what);
        int32_t ncall = v;
        RD32(what);
        int32_t nval = v;
        if (ncall < 0)
            return lmp_err(LMP_EFORMAT, "%s: imatrix entry '%.*s': negative call count %d", path, (int)name_len, name,
                           (int)ncall);
        if (nval < 1 || (size_t)nval > (size - pos) / 4)
            return lmp_err(LMP_EFORMAT, "%s: imatrix entry '%.*s': %d values at byte %zu do not fit the file "
                                        "(%zu bytes left)", path, (int)name_len, name, (int)nval, pos, size - pos);
        int rc = imf_add(f, name, name_len, nval, path);
        if (rc)
            return rc;
        float *out = f->values[f->n_entries - 1];
        memcpy(out, d + pos, (size_t)nval * 4);
        pos += (size_t)nval * 4;
        if (ncall > 0) /* quantize.cpp: sums / ncall (float / int64 -> float) */
            for (int32_t j = 0; j < nval; j++)
                out[j] = out[j] / (float)ncall;
        if ((rc = imf_check_values(f, f->n_entries - 1, path)))
            return rc;
    }
    f->chunks = 0;
    if (pos < size) { /* trailer: chunk count, then the dataset name */
        RD32("the chunk count after the last entry");
        f->chunks = v;
        if (pos < size) {
            RD32("the dataset name length");
            if (v < 0 || (size_t)v > size - pos)
                return lmp_err(LMP_EFORMAT, "%s: imatrix dataset name length %d at byte %zu does not fit the file",
                               path, (int)v, pos - 4);
            if (v > 0 && !(f->dataset = strndup((const char *)d + pos, (size_t)v)))
                return lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
            pos += (size_t)v;
        }
        if (pos != size)
            return lmp_err(LMP_EFORMAT, "%s: %zu unexpected bytes after the imatrix trailer (byte %zu)", path,
                           size - pos, pos);
    }
#undef RD32
    return LMP_OK;
}

static int imf_load_gguf(lmp_imatrix_file *f, const char *path)
{
    lmp_gguf_reader r;
    int rc = lmp_gguf_open(&r, path);
    if (rc)
        return rc;
    int64_t iv;
    if (lmp_gguf_get_int(&r, "imatrix.chunk_count", &iv) == 0)
        f->chunks = (int)iv;
    const lmp_gguf_kv *ds = lmp_gguf_find_kv(&r, "imatrix.datasets");
    if (ds && ds->type == LMP_GGUF_ARRAY && ds->arr_type == LMP_GGUF_STRING && ds->n > 0) {
        const char *const *strs = ds->arr;
        if (!(f->dataset = strndup(strs[0], ds->arr_lens ? ds->arr_lens[0] : strlen(strs[0])))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
            goto done;
        }
    }
    for (uint64_t i = 0; i < r.n_tensors && !rc; i++) {
        const lmp_tensor *s = &r.tensors[i];
        size_t nl = strlen(s->name);
        if (nl <= 8 || strcmp(s->name + nl - 8, ".in_sum2") != 0)
            continue;
        char cname[LMP_MAX_NAME + 8];
        snprintf(cname, sizeof cname, "%.*s.counts", (int)(nl - 8), s->name);
        const lmp_tensor *c = lmp_gguf_find_tensor(&r, cname);
        if (!c) {
            rc = lmp_err(LMP_EFORMAT, "%s: imatrix tensor %s has no %s", path, s->name, cname);
            break;
        }
        if (s->dtype != LMP_DT_F32 || c->dtype != LMP_DT_F32) {
            rc = lmp_err(LMP_EFORMAT, "%s: imatrix tensors %s / %s must be f32", path, s->name, cname);
            break;
        }
        int64_t nval = lmp_tensor_nelem(s), nmat = lmp_tensor_nelem(c);
        if (nval < 1 || nmat < 1 || nval % nmat != 0) {
            rc = lmp_err(LMP_EFORMAT, "%s: imatrix %s holds %lld values for %lld matrices", path, s->name,
                         (long long)nval, (long long)nmat);
            break;
        }
        if ((rc = imf_add(f, s->name, nl - 8, nval, path)))
            break;
        float *out = f->values[f->n_entries - 1];
        const float *sum = s->data, *cnt = c->data;
        int64_t ne0 = nval / nmat;
        for (int64_t j = 0; j < nmat; j++) {
            float cf = cnt[j];
            if (!isfinite(cf) || cf < 0) {
                rc = lmp_err(LMP_EFORMAT, "%s: imatrix %s count %lld is %g", path, cname, (long long)j, (double)cf);
                break;
            }
            float count = (float)lroundf(cf);
            for (int64_t k = 0; k < ne0; k++)
                out[j * ne0 + k] = count > 0.0f ? sum[j * ne0 + k] / count : 1.0f;
        }
        if (!rc)
            rc = imf_check_values(f, f->n_entries - 1, path);
    }
    if (!rc && f->n_entries == 0)
        rc = lmp_err(LMP_EFORMAT, "%s: GGUF without imatrix tensors (<name>.in_sum2 / .counts)", path);
done:
    lmp_gguf_close(&r);
    return rc;
}

int lmp_imatrix_file_load(const char *path, lmp_imatrix_file *f)
{
    memset(f, 0, sizeof *f);
    char *d = NULL;
    size_t size = 0;
    int rc = lmp_read_file(path, &d, &size);
    if (rc)
        return rc;
    if (size >= 4 && memcmp(d, "GGUF", 4) == 0)
        rc = imf_load_gguf(f, path);
    else
        rc = imf_load_legacy(f, (const uint8_t *)d, size, path);
    free(d);
    if (rc)
        lmp_imatrix_file_free(f);
    return rc;
}

void lmp_imatrix_file_free(lmp_imatrix_file *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->n_entries; i++) {
        free(f->names[i]);
        free(f->values[i]);
    }
    free(f->names);
    free(f->values);
    free(f->nval);
    free(f->dataset);
    memset(f, 0, sizeof *f);
}

const float *lmp_imatrix_file_get(const lmp_imatrix_file *f, const char *name, int64_t *nval)
{
    for (int i = 0; f && i < f->n_entries; i++)
        if (strcmp(f->names[i], name) == 0) {
            if (nval)
                *nval = f->nval[i];
            return f->values[i];
        }
    return NULL;
}

const float *lmp_imatrix_file_weights(void *ctx, const char *gguf_name, int64_t cols)
{
    int64_t n = 0;
    const float *v = lmp_imatrix_file_get(ctx, gguf_name, &n);
    if (v && n != cols) {
        lmp_warn("imatrix entry %s holds %lld values, the tensor's rows have %lld: not used", gguf_name, (long long)n,
                 (long long)cols);
        return NULL;
    }
    return v;
}

int64_t lmp_imatrix_file_len(void *ctx, const char *gguf_name)
{
    int64_t n = 0;
    return lmp_imatrix_file_get(ctx, gguf_name, &n) ? n : 0;
}

int lmp_imatrix_file_save(const char *path, const lmp_imatrix *im, const char *dataset, bool force)
{
    static const char *names[LMP_LIN_COUNT] = {"attn_q", "attn_k", "attn_v", "attn_output",
                                               "ffn_gate", "ffn_up", "ffn_down"};
    if (!im || !im->v || im->n_layers < 1)
        return lmp_err(LMP_EINVAL, "imatrix: nothing to save");
    /* llama-imatrix's order: entries sorted by name */
    int n = im->n_layers * LMP_LIN_COUNT;
    char (*nm)[64] = malloc((size_t)n * sizeof *nm);
    int *ord = malloc((size_t)n * sizeof *ord);
    if (!nm || !ord) {
        free(nm);
        free(ord);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < n; i++) {
        snprintf(nm[i], sizeof nm[i], "blk.%d.%s.weight", i / LMP_LIN_COUNT, names[i % LMP_LIN_COUNT]);
        ord[i] = i;
    }
    for (int i = 1; i < n; i++) /* insertion sort: a few hundred names */
        for (int j = i; j > 0 && strcmp(nm[ord[j - 1]], nm[ord[j]]) > 0; j--) {
            int t = ord[j];
            ord[j] = ord[j - 1];
            ord[j - 1] = t;
        }
    lmp_outfile o;
    int rc = lmp_outfile_open(&o, path, force);
    int32_t ncall = im->n_chunks > 0 ? im->n_chunks : 1;
    for (int k = -1; k < n && !rc; k++) {
        if (k < 0) {
            int32_t ne = n;
            rc = lmp_outfile_write(&o, &ne, 4);
            continue;
        }
        int i = ord[k], layer = i / LMP_LIN_COUNT;
        lmp_linear w = (lmp_linear)(i % LMP_LIN_COUNT);
        const float *v = lmp_imatrix_get(im, layer, w);
        int32_t len = (int32_t)strlen(nm[i]), nval = (int32_t)im->cols[w];
        rc = lmp_outfile_write(&o, &len, 4);
        if (!rc)
            rc = lmp_outfile_write(&o, nm[i], (size_t)len);
        if (!rc)
            rc = lmp_outfile_write(&o, &ncall, 4);
        if (!rc)
            rc = lmp_outfile_write(&o, &nval, 4);
        float *buf = rc ? NULL : malloc((size_t)nval * sizeof(float));
        if (!rc && !buf)
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        for (int32_t j = 0; buf && j < nval; j++) /* stored as E[x^2] * ncall, as llama-imatrix does */
            buf[j] = v[j] * (float)ncall;
        if (buf)
            rc = lmp_outfile_write(&o, buf, (size_t)nval * sizeof(float));
        free(buf);
    }
    if (!rc) {
        int32_t chunks = im->n_chunks, len = dataset ? (int32_t)strlen(dataset) : 0;
        rc = lmp_outfile_write(&o, &chunks, 4);
        if (!rc)
            rc = lmp_outfile_write(&o, &len, 4);
        if (!rc && len)
            rc = lmp_outfile_write(&o, dataset, (size_t)len);
    }
    if (!rc)
        rc = lmp_outfile_commit(&o);
    else
        lmp_outfile_abort(&o);
    free(nm);
    free(ord);
    return rc;
}
