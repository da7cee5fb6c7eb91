/*
 * Pruned model folders: dense / sparse-bitmask / sparse-24-bitmask writers (streaming,
 * block by block), the decompressing reader the engine uses, the structured (smaller
 * model) writer. See sparse.h for the layouts; `lmpress prune` is jobs/prune_model.c.
 */
#include "sparse.h"
#include "folder.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const lmp_sparse_format_row g_spformats[LMP_SPFMT_COUNT] = {
    [LMP_SPFMT_DENSE] = {.name = "dense"},
    [LMP_SPFMT_BITMASK] = {.name = "sparse-bitmask", .compressed = true, .row_offsets = true},
    [LMP_SPFMT_24] = {.name = "sparse-24-bitmask", .compressed = true, .two_of_four = true},
};

const lmp_sparse_format_row *lmp_sparse_format_get(lmp_sparse_format f)
{
    return (unsigned)f < LMP_SPFMT_COUNT ? &g_spformats[f] : NULL;
}

const char *lmp_sparse_format_name(lmp_sparse_format f)
{
    const lmp_sparse_format_row *r = lmp_sparse_format_get(f);
    return r ? r->name : "?";
}

/* ---------------------------------------------------------------- helpers --------- */

static int name_layer(const char *name)
{
    const char *pre = "model.layers.";
    size_t k = strlen(pre);
    if (strncmp(name, pre, k) != 0)
        return -1;
    char *end;
    long v = strtol(name + k, &end, 10);
    return end != name + k && *end == '.' && v >= 0 ? (int)v : -1;
}

/* linear index when `name` is "<prefix of linear k of layer>.<suffix>", else -1 */
static int linear_of(const char *name, int layer, const char *suffix)
{
    char buf[LMP_MAX_NAME];
    for (int w = 0; w < LMP_LIN_COUNT; w++) {
        lmp_linear_hf_prefix(layer, (lmp_linear)w, buf, sizeof buf);
        size_t k = strlen(buf);
        if (strncmp(name, buf, k) == 0 && name[k] == '.' && strcmp(name + k + 1, suffix) == 0)
            return w;
    }
    return -1;
}



static void json_set_num(cJSON *j, const char *key, double v)
{
    cJSON_DeleteItemFromObjectCaseSensitive(j, key);
    cJSON_AddNumberToObject(j, key, v);
}


/* ---------------------------------------------------------------- writer ---------- */

struct lmp_sparse_writer {
    const lmp_model *m;
    const lmp_ckpt *ck;
    lmp_sparse_format f;
    const lmp_sparse_format_row *row;
    lmp_prune_spec spec;
    char *dir, *tmp;
    lmp_st_writer *sw;
    int n_layers, next_layer;
    int *tensor_layer; /* -2 a linear weight (written from the sink), -1 outside blocks, else block */
    lmp_dtype dt[LMP_LIN_COUNT]; /* stored dtype of each linear (same in every block) */
    lmp_sparse_write_stats st;
};

static int write_tensor(lmp_sparse_writer *w, const lmp_tensor *t)
{
    int rc = lmp_st_writer_write(w->sw, t->data, t->nbytes);
    if (rc == 0) {
        w->st.bytes += t->nbytes;
        w->st.params += (uint64_t)lmp_tensor_nelem(t);
        w->st.n_tensors++;
    }
    return rc;
}

/* ------------------------------------------------------- one Linear, maybe fused --- */

int lmp_sparse_linear_declare(lmp_st_writer *sw, lmp_sparse_format f, const char *prefix, lmp_dtype dt,
                              int64_t rows, int64_t cols, int64_t kept)
{
    const lmp_sparse_format_row *row = lmp_sparse_format_get(f);
    char name[2 * LMP_MAX_NAME];
    int rc;
    if (!row)
        return lmp_err(LMP_EINVAL, "sparse writer: unknown format %d", (int)f);
    if (!row->compressed) {
        int64_t sh[2] = {rows, cols};
        snprintf(name, sizeof name, "%s.weight", prefix);
        return lmp_st_writer_add(sw, name, dt, 2, sh);
    }
    if (row->two_of_four && (cols % 4 || kept * 2 != rows * cols))
        return lmp_err(LMP_EINVAL, "sparse-24-bitmask: %s [%lld, %lld] keeping %lld is not 2:4", prefix,
                       (long long)rows, (long long)cols, (long long)kept);
    /* shape, compressed, bitmask (+ row_offsets) */
    const bool t24 = row->two_of_four;
    int64_t s1[2] = {2, 1}, s2[2] = {t24 ? rows : kept, cols / 2}, s3[2] = {rows, (cols + 7) / 8}, s4[1] = {rows};
    snprintf(name, sizeof name, "%s.shape", prefix);
    if ((rc = lmp_st_writer_add(sw, name, LMP_DT_I64, t24 ? 2 : 1, s1)))
        return rc;
    snprintf(name, sizeof name, "%s.compressed", prefix);
    if ((rc = lmp_st_writer_add(sw, name, dt, t24 ? 2 : 1, s2)))
        return rc;
    snprintf(name, sizeof name, "%s.bitmask", prefix);
    if ((rc = lmp_st_writer_add(sw, name, LMP_DT_U8, 2, s3)) || !row->row_offsets)
        return rc;
    snprintf(name, sizeof name, "%s.row_offsets", prefix);
    return lmp_st_writer_add(sw, name, LMP_DT_I64, 1, s4);
}

int lmp_sparse_linear_write(lmp_st_writer *sw, lmp_sparse_format f, const char *prefix, lmp_dtype dt,
                            const lmp_sparse_part *parts, int n_parts, int64_t cols, uint64_t *bytes)
{
    const lmp_sparse_format_row *fr = lmp_sparse_format_get(f);
    const lmp_dtype_traits *tr = lmp_dtype_info(dt);
    if (!fr || !tr->from_f32)
        return lmp_err(LMP_EINVAL, "sparse writer: %s: format %d, dtype %s", prefix, (int)f, tr->name);
    const size_t es = tr->type_size;
    const int64_t mb = (cols + 7) / 8;
    int64_t rows = 0;
    for (int p = 0; p < n_parts; p++)
        rows += parts[p].rows;
    uint8_t *buf = malloc((size_t)cols * (es > 8 ? es : 8) + (size_t)mb + 64);
    float *vals = malloc((size_t)cols * sizeof(float) + 16);
    int rc = LMP_OK;
    uint64_t nb = 0;
#define SP_WRITE(ptr, n) (nb += (n), lmp_st_writer_write(sw, (ptr), (n)))
    if (!buf || !vals) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if (!fr->compressed) {
        for (int p = 0; p < n_parts && rc == 0; p++)
            for (int64_t r = 0; r < parts[p].rows && rc == 0; r++) {
                tr->from_f32(parts[p].W + r * cols, buf, cols);
                rc = SP_WRITE(buf, (size_t)cols * es);
            }
        goto done;
    }
    /* every row of every part: 2:4 in each group of 4 columns (the rows of a fused tensor
     * are the rows of its parts: the pattern holds per row group of the fused weight) */
    if (fr->two_of_four)
        for (int p = 0, base = 0; p < n_parts; base += (int)parts[p].rows, p++)
            for (int64_t r = 0; r < parts[p].rows; r++)
                for (int64_t g = 0; g + 3 < cols; g += 4) {
                    const uint8_t *k = parts[p].mask + r * cols + g;
                    int n = (k[0] != 0) + (k[1] != 0) + (k[2] != 0) + (k[3] != 0);
                    if (n != 2) {
                        rc = lmp_err(LMP_EINVAL, "sparse writer: %s row %lld columns %lld..%lld keep %d (2:4)",
                                     prefix, (long long)(base + r), (long long)g,
                                     (long long)g + 3, n);
                        goto done;
                    }
                }
    {
        int64_t sh[2] = {rows, cols};
        if ((rc = SP_WRITE(sh, sizeof sh)))
            goto done;
    }
    /* the kept values, row by row */
    for (int p = 0; p < n_parts && rc == 0; p++)
        for (int64_t r = 0; r < parts[p].rows && rc == 0; r++) {
            int64_t n = 0;
            const float *W = parts[p].W + r * cols;
            const uint8_t *k = parts[p].mask + r * cols;
            for (int64_t j = 0; j < cols; j++)
                if (k[j])
                    vals[n++] = W[j];
            tr->from_f32(vals, buf, n);
            rc = SP_WRITE(buf, (size_t)n * es);
        }
    /* bitmask, little bit order */
    for (int p = 0; p < n_parts && rc == 0; p++)
        for (int64_t r = 0; r < parts[p].rows && rc == 0; r++) {
            const uint8_t *k = parts[p].mask + r * cols;
            memset(buf, 0, (size_t)mb);
            for (int64_t j = 0; j < cols; j++)
                if (k[j])
                    buf[j >> 3] |= (uint8_t)(1u << (j & 7));
            rc = SP_WRITE(buf, (size_t)mb);
        }
    if (fr->row_offsets) {
        int64_t off = 0;
        for (int p = 0; p < n_parts && rc == 0; p++)
            for (int64_t r = 0; r < parts[p].rows && rc == 0; r++) {
                rc = SP_WRITE(&off, sizeof off);
                const uint8_t *k = parts[p].mask + r * cols;
                for (int64_t j = 0; j < cols; j++)
                    off += k[j] != 0;
            }
    }
#undef SP_WRITE
done:
    free(buf);
    free(vals);
    if (bytes)
        *bytes += nb;
    return rc;
}

int lmp_sparse_mask_of(const float *W, int64_t rows, int64_t cols, const lmp_prune_spec *s, uint8_t *mask,
                       const char *name)
{
    /* the unit whose count of pruned weights is fixed: a group of M (N:M), the matrix
     * (matrix scope), else a row */
    const int64_t n = rows * cols;
    const int64_t unit = s->m ? s->m : s->scope == LMP_PRUNE_SCOPE_MATRIX ? n : cols;
    const int64_t want = s->m ? s->m - s->n : s->scope == LMP_PRUNE_SCOPE_MATRIX ? lmp_prune_matrix_zeros(s, rows, cols)
                                                                              : lmp_prune_row_zeros(s, cols);
    for (int64_t u = 0; u < n; u += unit) {
        int64_t z = 0;
        for (int64_t j = u; j < u + unit; j++) {
            mask[j] = W[j] != 0.0f;
            z += !mask[j];
        }
        if (z < want)
            return lmp_err(LMP_EINVAL, "%s: %lld zeros in weights %lld..%lld, the pattern prunes %lld", name,
                           (long long)z, (long long)u, (long long)(u + unit - 1), (long long)want);
        /* a kept weight that is exactly 0: stored (as a kept value) so the count holds */
        for (int64_t j = u; j < u + unit && z > want; j++)
            if (!mask[j]) {
                mask[j] = 1;
                z--;
            }
    }
    return LMP_OK;
}

/* The Linears of block l as stored: phi3's fused qkv_proj (q, k, v rows) and gate_up_proj
 * (gate, up rows) are one tensor of several parts. Returns the number of groups. */
typedef struct {
    char prefix[LMP_MAX_NAME];
    int first, n;
} lin_group;

static int block_groups(const lmp_config *c, int l, lin_group *g)
{
    int n = 0;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        g[n].first = k;
        g[n].n = 1;
        if (c->fused_qkv && k == LMP_LIN_Q) {
            g[n].n = 3;
            snprintf(g[n].prefix, sizeof g[n].prefix, "model.layers.%d.self_attn.qkv_proj", l);
        } else if (c->fused_gate_up && k == LMP_LIN_GATE) {
            g[n].n = 2;
            snprintf(g[n].prefix, sizeof g[n].prefix, "model.layers.%d.mlp.gate_up_proj", l);
        } else {
            lmp_linear_hf_prefix(l, (lmp_linear)k, g[n].prefix, sizeof g[n].prefix);
        }
        k += g[n].n - 1;
        n++;
    }
    return n;
}

int lmp_sparse_writer_open(lmp_sparse_writer **out, const lmp_model *m, const char *dir, lmp_sparse_format f,
                           const lmp_prune_spec *spec, bool force)
{
    *out = NULL;
    const lmp_ckpt *ck = lmp_model_ckpt(m);
    if (ck->kind == LMP_CKPT_GGUF)
        return lmp_err(LMP_EUNSUPPORTED, "%s: GGUF input cannot be written as a Hugging Face folder (llama.cpp names "
                                         "and permuted q/k rows); convert it first (lmpress convert)", ck->path);
    const lmp_sparse_format_row *row = lmp_sparse_format_get(f);
    if (!row)
        return lmp_err(LMP_EINVAL, "sparse writer: unknown format %d", (int)f);
    if (row->two_of_four && !(spec->m == 4 && spec->n == 2))
        return lmp_err(LMP_EINVAL, "sparse-24-bitmask holds the 2:4 pattern only (--pattern 2:4); use sparse-bitmask "
                                   "for other sparsity");
    lmp_sparse_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lmp_err(LMP_ENOMEM, "out of memory");
    w->m = m;
    w->ck = ck;
    w->f = f;
    w->row = row;
    w->spec = *spec;
    w->n_layers = lmp_model_config(m)->n_layers;
    w->dir = strdup(dir);
    w->tensor_layer = calloc((size_t)ck->n_tensors + 1, sizeof(int));
    int rc;
    if (!w->dir || !w->tensor_layer) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const lmp_wmat *wm = lmp_model_linear(m, 0, (lmp_linear)k);
        w->dt[k] = wm->dtype;
        if (!lmp_dtype_info(wm->dtype)->is_float || !lmp_dtype_info(wm->dtype)->st_name) {
            rc = lmp_err(LMP_EUNSUPPORTED, "sparse writer: linear weights of dtype %s (f32, f16 or bf16 needed)",
                         lmp_dtype_info(wm->dtype)->name);
            goto fail;
        }
    }
    /* phi3: q/k/v and gate/up stored as one qkv_proj / gate_up_proj: written as one Linear
     * of the parts' rows in q, k, v / gate, up order (the fused tensor's layout), in every
     * format, as compressed-tensors compresses the fused module */
    const lmp_config *cfg = lmp_model_config(m);
    const bool fq = cfg->fused_qkv, fg = cfg->fused_gate_up;
    int found = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        const char *nm = ck->tensors[i].name;
        int l = name_layer(nm);
        if (l >= w->n_layers) {
            rc = lmp_err(LMP_EFORMAT, "%s: tensor %s names block %d of a %d-block model", ck->path, nm, l, w->n_layers);
            goto fail;
        }
        char fb[LMP_MAX_NAME];
        bool fused_name = false;
        if (l >= 0 && fq) {
            snprintf(fb, sizeof fb, "model.layers.%d.self_attn.qkv_proj.weight", l);
            fused_name |= strcmp(nm, fb) == 0;
        }
        if (l >= 0 && fg) {
            snprintf(fb, sizeof fb, "model.layers.%d.mlp.gate_up_proj.weight", l);
            fused_name |= strcmp(nm, fb) == 0;
        }
        w->tensor_layer[i] = l >= 0 && (fused_name || linear_of(nm, l, "weight") >= 0) ? -2 : l;
        found += w->tensor_layer[i] == -2;
    }
    const int per_block = LMP_LIN_COUNT - (fq ? 2 : 0) - (fg ? 1 : 0);
    if (found != w->n_layers * per_block) {
        rc = lmp_err(LMP_EFORMAT, "%s: found %d linear weights with Hugging Face names, expected %d", ck->path, found,
                     w->n_layers * per_block);
        goto fail;
    }
    if ((rc = lmp_dir_begin(dir, force, &w->tmp)))
        goto fail;
    if ((rc = lmp_st_writer_new(&w->sw, w->tmp, 0, true)))
        goto fail;
    for (int i = 0; i < ck->n_tensors; i++)
        if (w->tensor_layer[i] == -1) {
            const lmp_tensor *t = &ck->tensors[i];
            if ((rc = lmp_st_writer_add(w->sw, t->name, t->dtype, t->ndim, t->shape)))
                goto fail;
        }
    for (int l = 0; l < w->n_layers; l++) {
        for (int i = 0; i < ck->n_tensors; i++)
            if (w->tensor_layer[i] == l) {
                const lmp_tensor *t = &ck->tensors[i];
                if ((rc = lmp_st_writer_add(w->sw, t->name, t->dtype, t->ndim, t->shape)))
                    goto fail;
            }
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)k);
            if (wm->dtype != w->dt[k]) {
                char prefix[LMP_MAX_NAME];
                lmp_linear_hf_prefix(l, (lmp_linear)k, prefix, sizeof prefix);
                rc = lmp_err(LMP_EUNSUPPORTED, "sparse writer: %s is %s, block 0's is %s", prefix,
                             lmp_dtype_info(wm->dtype)->name, lmp_dtype_info(w->dt[k])->name);
                goto fail;
            }
        }
        lin_group g[LMP_LIN_COUNT];
        const int ng = block_groups(cfg, l, g);
        for (int i = 0; i < ng; i++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)g[i].first);
            int64_t rows = 0;
            for (int k = g[i].first; k < g[i].first + g[i].n; k++) {
                if (lmp_model_linear(m, l, (lmp_linear)k)->dtype != wm->dtype) {
                    rc = lmp_err(LMP_EUNSUPPORTED, "sparse writer: %s holds parts of different dtypes", g[i].prefix);
                    goto fail;
                }
                rows += lmp_model_linear(m, l, (lmp_linear)k)->rows;
            }
            int64_t kept = 0; /* each part's count, summed (matrix scope counts per part) */
            for (int k = g[i].first; k < g[i].first + g[i].n; k++) {
                const lmp_wmat *pk = lmp_model_linear(m, l, (lmp_linear)k);
                kept += pk->rows * pk->cols - lmp_prune_matrix_zeros(&w->spec, pk->rows, pk->cols);
            }
            if ((rc = lmp_sparse_linear_declare(w->sw, w->f, g[i].prefix, wm->dtype, rows, wm->cols, kept)))
                goto fail;
        }
    }
    if ((rc = lmp_st_writer_meta(w->sw, "format", "pt")) || (rc = lmp_st_writer_begin(w->sw)))
        goto fail;
    for (int i = 0; i < ck->n_tensors; i++)
        if (w->tensor_layer[i] == -1 && (rc = write_tensor(w, &ck->tensors[i])))
            goto fail;
    *out = w;
    return LMP_OK;
fail:
    lmp_sparse_writer_abort(w);
    return rc;
}

int lmp_sparse_writer_layer(void *ctx, int layer, const float *const *W, const uint8_t *const *mask,
                            const lmp_qtensor *q, const lmp_prune_linear_stats *st)
{
    (void)q;
    (void)st;
    lmp_sparse_writer *w = ctx;
    if (layer != w->next_layer)
        return lmp_err(LMP_EINVAL, "sparse writer: block %d arrived, expected %d", layer, w->next_layer);
    int rc;
    for (int i = 0; i < w->ck->n_tensors; i++)
        if (w->tensor_layer[i] == layer && (rc = write_tensor(w, &w->ck->tensors[i])))
            return rc;
    lin_group g[LMP_LIN_COUNT];
    const int ng = block_groups(lmp_model_config(w->m), layer, g);
    for (int i = 0; i < ng; i++) {
        lmp_sparse_part parts[3];
        int64_t cols = 0;
        for (int p = 0; p < g[i].n; p++) {
            const int k = g[i].first + p;
            const lmp_wmat *wm = lmp_model_linear(w->m, layer, (lmp_linear)k);
            const int64_t rows = wm->rows;
            cols = wm->cols;
            int64_t zeros = 0, want = lmp_prune_matrix_zeros(&w->spec, rows, cols);
            for (int64_t j = 0; j < rows * cols; j++)
                zeros += !mask[k][j];
            if (zeros != want) {
                char prefix[LMP_MAX_NAME];
                lmp_linear_hf_prefix(layer, (lmp_linear)k, prefix, sizeof prefix);
                return lmp_err(LMP_EINVAL, "sparse writer: %s has %lld pruned weights, %lld declared", prefix,
                               (long long)zeros, (long long)want);
            }
            parts[p] = (lmp_sparse_part){.W = W[k], .mask = mask[k], .rows = rows};
            w->st.params += (uint64_t)(rows * cols);
            w->st.linear_params += (uint64_t)(rows * cols);
            w->st.zeros += (uint64_t)zeros;
        }
        if ((rc = lmp_sparse_linear_write(w->sw, w->f, g[i].prefix, w->dt[g[i].first], parts, g[i].n, cols,
                                          &w->st.bytes)))
            return rc;
        w->st.n_tensors += w->row->compressed ? (w->row->row_offsets ? 4 : 3) : 1;
        /* this block's input pages are not needed again: keep RSS independent of depth
         * (the checkpoint's mapping; the model may hold a pruned copy installed now) */
        char wname[2 * LMP_MAX_NAME];
        snprintf(wname, sizeof wname, "%.*s.weight", (int)(sizeof wname - 8), g[i].prefix);
        const lmp_tensor *src = lmp_ckpt_find(w->ck, wname);
        if (src)
            lmp_mmap_release(src->data, src->nbytes);
    }
    for (int i = 0; i < w->ck->n_tensors; i++)
        if (w->tensor_layer[i] == layer)
            lmp_mmap_release(w->ck->tensors[i].data, w->ck->tensors[i].nbytes);
    w->next_layer++;
    return LMP_OK;
}

cJSON *lmp_sparse_config_json(const char *format, const lmp_prune_spec *s, double global)
{
    cJSON *sc = cJSON_CreateObject();
    char structure[32];
    if (s->m)
        snprintf(structure, sizeof structure, "%d:%d", s->n, s->m);
    else
        snprintf(structure, sizeof structure, "unstructured");
    cJSON_AddStringToObject(sc, "format", format);
    cJSON_AddNumberToObject(sc, "global_sparsity", global);
    cJSON_AddStringToObject(sc, "sparsity_structure", structure);
    cJSON *t = cJSON_AddArrayToObject(sc, "targets");
    cJSON_AddItemToArray(t, cJSON_CreateString("Linear"));
    cJSON *ig = cJSON_AddArrayToObject(sc, "ignore");
    cJSON_AddItemToArray(ig, cJSON_CreateString("lm_head"));
    cJSON_AddBoolToObject(sc, "registry_requires_subclass", false);
    return sc;
}

int lmp_sparse_writer_finish(lmp_sparse_writer *w, lmp_sparse_write_stats *st)
{
    int rc;
    cJSON *j = NULL;
    if (w->next_layer != w->n_layers) {
        rc = lmp_err(LMP_EINVAL, "sparse writer: finished after %d of %d blocks", w->next_layer, w->n_layers);
        goto done;
    }
    rc = lmp_st_writer_finish(w->sw);
    w->sw = NULL;
    if (rc == 0)
        rc = lmp_fmt_config_json(w->ck->dir, lmp_model_config(w->m), &j);
    if (rc == 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, "quantization_config");
        if (w->row->compressed) {
            cJSON *qc = cJSON_CreateObject();
            /* exactly what compressed-tensors reads for a sparse-only model: its
             * ModelCompressor.parse_quantization_config takes every key other than
             * quant_method, version, sparsity_config and transform_config as a
             * quantization config, so the format lives in sparsity_config only */
            cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
            double global = w->st.params ? (double)w->st.zeros / (double)w->st.params : 0;
            cJSON_AddItemToObject(qc, "sparsity_config", lmp_sparse_config_json(lmp_sparse_format_name(w->f), &w->spec, global));
            cJSON_AddItemToObject(j, "quantization_config", qc);
        }
        rc = lmp_fmt_write_json(w->tmp, "config.json", j);
    }
    if (rc == 0)
        rc = lmp_tokenizer_files_write(w->ck, w->tmp);
    if (rc == 0)
        rc = lmp_dir_commit(w->tmp, w->dir);
    if (rc == 0 && st)
        *st = w->st;
done:
    cJSON_Delete(j);
    if (rc == 0) {
        free(w->tmp);
        w->tmp = NULL;
    }
    lmp_sparse_writer_abort(w);
    return rc;
}

void lmp_sparse_writer_abort(lmp_sparse_writer *w)
{
    if (!w)
        return;
    lmp_st_writer_abort(w->sw);
    if (w->tmp) {
        lmp_dir_remove(w->tmp);
        free(w->tmp);
    }
    free(w->dir);
    free(w->tensor_layer);
    free(w);
}

/* ---------------------------------------------------------------- reader ---------- */

/* format of the folder's sparsity_config ("sparse-bitmask" ...) into fmt; 0 when present */
static int read_sparsity(const char *dir, lmp_sparse_format *fmt, cJSON **cfg)
{
    char *path = lmp_path_join(dir, "config.json"), *txt = NULL;
    int rc = path ? lmp_read_file(path, &txt, NULL) : LMP_ENOMEM;
    cJSON *j = rc == 0 ? cJSON_Parse(txt) : NULL;
    free(txt);
    rc = LMP_ENOTFOUND;
    const cJSON *qc = j ? cJSON_GetObjectItemCaseSensitive(j, "quantization_config") : NULL;
    const cJSON *sc = qc ? cJSON_GetObjectItemCaseSensitive(qc, "sparsity_config") : NULL;
    const cJSON *f = sc ? cJSON_GetObjectItemCaseSensitive(sc, "format") : NULL;
    if (cJSON_IsString(f)) {
        for (int i = 0; i < LMP_SPFMT_COUNT && rc; i++)
            if (g_spformats[i].compressed && strcmp(f->valuestring, g_spformats[i].name) == 0) {
                *fmt = (lmp_sparse_format)i;
                rc = 0;
            }
    }
    if (rc == 0 && cfg)
        *cfg = j;
    else
        cJSON_Delete(j);
    free(path);
    return rc;
}

bool lmp_sparse_is_compressed(const char *path)
{
    lmp_sparse_format f;
    return lmp_path_is_dir(path) && read_sparsity(path, &f, NULL) == 0;
}

typedef struct {
    const lmp_tensor *shape, *comp, *mask, *offs;
    int64_t rows, cols;
} sp_parts;

static bool has_suffix_of(const char *name, const char *suffix, char *prefix, size_t n)
{
    size_t a = strlen(name), b = strlen(suffix);
    if (a <= b + 1 || strcmp(name + a - b, suffix) != 0 || name[a - b - 1] != '.')
        return false;
    snprintf(prefix, n, "%.*s", (int)(a - b - 1), name);
    return true;
}

static int find_parts(const lmp_st_reader *st, const char *prefix, lmp_sparse_format f, sp_parts *p)
{
    const lmp_sparse_format_row *row = &g_spformats[f];
    char name[2 * LMP_MAX_NAME];
    memset(p, 0, sizeof *p);
    snprintf(name, sizeof name, "%s.shape", prefix);
    p->shape = lmp_st_find(st, name);
    snprintf(name, sizeof name, "%s.compressed", prefix);
    p->comp = lmp_st_find(st, name);
    snprintf(name, sizeof name, "%s.bitmask", prefix);
    p->mask = lmp_st_find(st, name);
    snprintf(name, sizeof name, "%s.row_offsets", prefix);
    p->offs = lmp_st_find(st, name);
    if (!p->shape || !p->comp || !p->mask || (row->row_offsets && !p->offs))
        return lmp_err(LMP_EFORMAT, "%s: incomplete compressed weight (needs shape, compressed, bitmask%s)", prefix,
                       row->row_offsets ? ", row_offsets" : "");
    if (p->shape->dtype != LMP_DT_I64 || lmp_tensor_nelem(p->shape) != 2)
        return lmp_err(LMP_EFORMAT, "%s.shape: expected two int64 values", prefix);
    const int64_t *sh = p->shape->data;
    p->rows = sh[0];
    p->cols = sh[1];
    if (p->rows <= 0 || p->cols <= 0 || p->rows > (1LL << 31) || p->cols > (1LL << 31))
        return lmp_err(LMP_EFORMAT, "%s.shape: [%lld, %lld]", prefix, (long long)p->rows, (long long)p->cols);
    const lmp_dtype_traits *tr = lmp_dtype_info(p->comp->dtype);
    if (!tr->is_float)
        return lmp_err(LMP_EUNSUPPORTED, "%s.compressed: dtype %s (f32, f16 or bf16)", prefix, tr->name);
    const int64_t mb = (p->cols + 7) / 8;
    if (p->mask->dtype != LMP_DT_U8 || p->mask->ndim != 2 || p->mask->shape[0] != p->rows || p->mask->shape[1] != mb)
        return lmp_err(LMP_EFORMAT, "%s.bitmask: expected U8 [%lld, %lld]", prefix, (long long)p->rows, (long long)mb);
    const uint8_t *bm = p->mask->data;
    int64_t total = 0;
    for (int64_t r = 0; r < p->rows; r++) {
        int64_t n = 0;
        for (int64_t j = 0; j < p->cols; j++)
            n += bm[r * mb + (j >> 3)] >> (j & 7) & 1;
        if (row->row_offsets) {
            if (p->offs->dtype != LMP_DT_I64 || lmp_tensor_nelem(p->offs) != p->rows)
                return lmp_err(LMP_EFORMAT, "%s.row_offsets: expected int64 [%lld]", prefix, (long long)p->rows);
            if (((const int64_t *)p->offs->data)[r] != total)
                return lmp_err(LMP_EFORMAT, "%s.row_offsets[%lld] = %lld, the bitmask gives %lld", prefix, (long long)r,
                               (long long)((const int64_t *)p->offs->data)[r], (long long)total);
        } else if (row->two_of_four) {
            if (p->cols % 4)
                return lmp_err(LMP_EFORMAT, "%s: 2:4 with %lld columns", prefix, (long long)p->cols);
            for (int64_t g = 0; g < p->cols; g += 4) {
                int k = (bm[r * mb + (g >> 3)] >> (g & 7)) & 15;
                if (__builtin_popcount((unsigned)k) != 2)
                    return lmp_err(LMP_EFORMAT, "%s.bitmask: row %lld columns %lld..%lld do not keep exactly 2 of 4",
                                   prefix, (long long)r, (long long)g, (long long)g + 3);
            }
        }
        total += n;
    }
    if (lmp_tensor_nelem(p->comp) != total ||
        (row->two_of_four && (p->comp->ndim != 2 || p->comp->shape[0] != p->rows || p->comp->shape[1] != p->cols / 2)))
        return lmp_err(LMP_EFORMAT, "%s.compressed: %lld values, the bitmask keeps %lld", prefix,
                       (long long)lmp_tensor_nelem(p->comp), (long long)total);
    return LMP_OK;
}

int lmp_sparse_decompress(const char *in, const char *out, bool force)
{
    lmp_sparse_format f;
    cJSON *cfg = NULL;
    lmp_st_reader st;
    memset(&st, 0, sizeof st);
    lmp_st_writer *sw = NULL;
    char *tmp = NULL;
    uint8_t *row = NULL;
    int rc = read_sparsity(in, &f, &cfg);
    if (rc)
        return lmp_err(LMP_EFORMAT, "%s: no compressed-tensors sparse-bitmask / sparse-24-bitmask sparsity_config", in);
    if ((rc = lmp_st_open(&st, in)))
        goto done;
    if ((rc = lmp_dir_begin(out, force, &tmp)) || (rc = lmp_st_writer_new(&sw, tmp, 0, true)))
        goto done;
    char prefix[LMP_MAX_NAME], name[2 * LMP_MAX_NAME];
    size_t maxrow = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < st.n_tensors; i++) {
            const lmp_tensor *t = &st.tensors[i];
            if (has_suffix_of(t->name, "compressed", prefix, sizeof prefix)) {
                sp_parts p;
                if ((rc = find_parts(&st, prefix, f, &p)))
                    goto done;
                size_t es = lmp_dtype_info(p.comp->dtype)->type_size;
                if (pass == 0) {
                    int64_t sh[2] = {p.rows, p.cols};
                    snprintf(name, sizeof name, "%s.weight", prefix);
                    if ((rc = lmp_st_writer_add(sw, name, p.comp->dtype, 2, sh)))
                        goto done;
                    if ((size_t)p.cols * es > maxrow)
                        maxrow = (size_t)p.cols * es;
                    continue;
                }
                const int64_t mb = (p.cols + 7) / 8;
                const uint8_t *bm = p.mask->data, *src = p.comp->data;
                for (int64_t r = 0; r < p.rows && rc == 0; r++) {
                    memset(row, 0, (size_t)p.cols * es);
                    for (int64_t j = 0; j < p.cols; j++)
                        if (bm[r * mb + (j >> 3)] >> (j & 7) & 1) {
                            memcpy(row + j * es, src, es);
                            src += es;
                        }
                    rc = lmp_st_writer_write(sw, row, (size_t)p.cols * es);
                }
                if (rc)
                    goto done;
                continue;
            }
            bool part = false;
            static const char *sfx[] = {"shape", "bitmask", "row_offsets"};
            for (int s = 0; s < 3 && !part; s++)
                if (has_suffix_of(t->name, sfx[s], prefix, sizeof prefix)) {
                    snprintf(name, sizeof name, "%s.compressed", prefix);
                    part = lmp_st_find(&st, name) != NULL;
                }
            if (part)
                continue;
            if (pass == 0)
                rc = lmp_st_writer_add(sw, t->name, t->dtype, t->ndim, t->shape);
            else
                rc = lmp_st_writer_write(sw, t->data, t->nbytes);
            if (rc)
                goto done;
        }
        if (pass == 0) {
            if ((rc = lmp_st_writer_meta(sw, "format", "pt")) || (rc = lmp_st_writer_begin(sw)))
                goto done;
            row = malloc(maxrow ? maxrow : 1);
            if (!row) {
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
    rc = lmp_st_writer_finish(sw);
    sw = NULL;
    if (rc)
        goto done;
    {
        cJSON *qc = cJSON_GetObjectItemCaseSensitive(cfg, "quantization_config");
        if (qc && !cJSON_GetObjectItemCaseSensitive(qc, "config_groups"))
            cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
        else if (qc)
            cJSON_DeleteItemFromObjectCaseSensitive(qc, "sparsity_config");
    }
    if ((rc = lmp_fmt_write_json(tmp, "config.json", cfg)) || (rc = lmp_tokenizer_files_from(in, tmp)))
        goto done;
    rc = lmp_dir_commit(tmp, out);
    if (rc == 0) {
        free(tmp);
        tmp = NULL;
    }
done:
    lmp_st_writer_abort(sw);
    if (tmp) {
        lmp_dir_remove(tmp);
        free(tmp);
    }
    free(row);
    lmp_st_close(&st);
    cJSON_Delete(cfg);
    return rc;
}

int lmp_sparse_model_load(lmp_model **m, const char *path)
{
    *m = NULL;
    if (!lmp_sparse_is_compressed(path))
        return lmp_model_load(m, path);
    const char *td = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/lmpress-sparse.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmpl))
        return lmp_err(LMP_EIO, "cannot create a temporary folder %s for decompressing %s", tmpl, path);
    lmp_temp_register(tmpl, true);
    char *dense = lmp_path_join(tmpl, "model");
    int rc = dense ? lmp_sparse_decompress(path, dense, true) : lmp_err(LMP_ENOMEM, "out of memory");
    if (rc == 0)
        rc = lmp_model_load(m, dense);
    /* the mapping keeps the data; nothing on disk outlives this call */
    lmp_dir_remove(tmpl);
    lmp_temp_unregister(tmpl);
    free(dense);
    return rc;
}

/* ---------------------------------------------------------------- structured ------ */

/* What to keep of one tensor of block l: row/col index lists in element units. */
typedef struct {
    const int *rows;  /* NULL = all */
    int64_t n_rows;
    const int *cols;  /* NULL = all */
    int64_t n_cols;
    int *owned;
} slice;

/* expands kept head indices into kept row indices */
static int *head_rows(const int *heads, int n, int hd)
{
    int *r = malloc((size_t)n * hd * sizeof(int));
    if (r)
        for (int i = 0; i < n; i++)
            for (int j = 0; j < hd; j++)
                r[i * hd + j] = heads[i] * hd + j;
    return r;
}

static int slice_for(const lmp_struct_plan *p, const lmp_tensor *t, int l, slice *s)
{
    memset(s, 0, sizeof *s);
    const lmp_config *o = &p->out;
    const int hd = p->in.head_dim;
    const int *kh = p->keep_heads + (int64_t)l * o->n_heads, *kk = p->keep_kv + (int64_t)l * o->n_kv_heads;
    const int *kf = p->keep_ffn + (int64_t)l * o->intermediate_size;
    int w = linear_of(t->name, l, "weight"), b = linear_of(t->name, l, "bias");
    int k = w >= 0 ? w : b;
    bool need_heads = p->kind == LMP_STRUCT_HEADS || p->kind == LMP_STRUCT_KV_HEADS;
    bool ffn = p->kind == LMP_STRUCT_FFN;
    /* phi3's fused qkv_proj ([q; k; v] rows) and gate_up_proj ([gate; up] rows): the kept
     * rows of each part, in the fused order */
    char fb[LMP_MAX_NAME];
    snprintf(fb, sizeof fb, "model.layers.%d.self_attn.qkv_proj.", l);
    const bool qkv = strncmp(t->name, fb, strlen(fb)) == 0;
    snprintf(fb, sizeof fb, "model.layers.%d.mlp.gate_up_proj.", l);
    const bool gate_up = strncmp(t->name, fb, strlen(fb)) == 0;
    if (qkv && need_heads) {
        const int nh = p->in.n_heads, nkv = p->in.n_kv_heads;
        const bool kv = p->kind == LMP_STRUCT_KV_HEADS;
        const int nkv_out = kv ? o->n_kv_heads : nkv;
        s->n_rows = (int64_t)(o->n_heads + 2 * nkv_out) * hd;
        s->rows = s->owned = malloc((size_t)s->n_rows * sizeof(int));
        if (!s->owned)
            return lmp_err(LMP_ENOMEM, "out of memory");
        int64_t r = 0;
        for (int i = 0; i < o->n_heads; i++)
            for (int j = 0; j < hd; j++)
                s->owned[r++] = kh[i] * hd + j;
        for (int part = 0; part < 2; part++) /* k, then v */
            for (int i = 0; i < nkv_out; i++)
                for (int j = 0; j < hd; j++)
                    s->owned[r++] = (nh + part * nkv + (kv ? kk[i] : i)) * hd + j;
        return LMP_OK;
    }
    /* olmo2's q_norm / k_norm span the whole projection (heads x head_dim): the kept heads'
     * entries (the norm then runs over the smaller width, as the pruned config says) */
    snprintf(fb, sizeof fb, "model.layers.%d.self_attn.q_norm.weight", l);
    const bool qn = p->in.qk_norm == LMP_QKNORM_FULL && strcmp(t->name, fb) == 0;
    snprintf(fb, sizeof fb, "model.layers.%d.self_attn.k_norm.weight", l);
    const bool kn = p->in.qk_norm == LMP_QKNORM_FULL && strcmp(t->name, fb) == 0;
    if (qn && need_heads) {
        s->rows = s->owned = head_rows(kh, o->n_heads, hd);
        s->n_rows = (int64_t)o->n_heads * hd;
        return s->rows ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory");
    }
    if (kn && p->kind == LMP_STRUCT_KV_HEADS) {
        s->rows = s->owned = head_rows(kk, o->n_kv_heads, hd);
        s->n_rows = (int64_t)o->n_kv_heads * hd;
        return s->rows ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory");
    }
    if (gate_up && ffn) {
        const int ff = p->in.intermediate_size;
        s->n_rows = 2 * (int64_t)o->intermediate_size;
        s->rows = s->owned = malloc((size_t)s->n_rows * sizeof(int));
        if (!s->owned)
            return lmp_err(LMP_ENOMEM, "out of memory");
        for (int part = 0; part < 2; part++) /* gate, then up */
            for (int i = 0; i < o->intermediate_size; i++)
                s->owned[part * o->intermediate_size + i] = part * ff + kf[i];
        return LMP_OK;
    }
    if (k < 0)
        return LMP_OK;
    switch (k) {
    case LMP_LIN_Q:
        if (need_heads) {
            s->rows = s->owned = head_rows(kh, o->n_heads, hd);
            s->n_rows = (int64_t)o->n_heads * hd;
        }
        break;
    case LMP_LIN_K: case LMP_LIN_V:
        if (p->kind == LMP_STRUCT_KV_HEADS) {
            s->rows = s->owned = head_rows(kk, o->n_kv_heads, hd);
            s->n_rows = (int64_t)o->n_kv_heads * hd;
        }
        break;
    case LMP_LIN_O:
        if (need_heads && w >= 0) {
            s->cols = s->owned = head_rows(kh, o->n_heads, hd);
            s->n_cols = (int64_t)o->n_heads * hd;
        }
        break;
    case LMP_LIN_GATE: case LMP_LIN_UP:
        if (ffn) {
            s->rows = kf;
            s->n_rows = o->intermediate_size;
        }
        break;
    case LMP_LIN_DOWN:
        if (ffn && w >= 0) {
            s->cols = kf;
            s->n_cols = o->intermediate_size;
        }
        break;
    }
    if (s->n_rows && !s->rows)
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (s->n_cols && !s->cols)
        return lmp_err(LMP_ENOMEM, "out of memory");
    return LMP_OK;
}

int lmp_struct_write(const lmp_model *m, const lmp_struct_plan *p, const char *dir, bool force,
                     lmp_sparse_write_stats *st)
{
    const lmp_ckpt *ck = lmp_model_ckpt(m);
    if (ck->kind == LMP_CKPT_GGUF)
        return lmp_err(LMP_EUNSUPPORTED, "%s: GGUF input cannot be written as a Hugging Face folder; convert it first",
                       ck->path);
    lmp_sparse_write_stats s0;
    memset(&s0, 0, sizeof s0);
    int *newidx = malloc((size_t)p->in.n_layers * sizeof(int));
    if (!newidx)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int l = 0; l < p->in.n_layers; l++)
        newidx[l] = -1;
    for (int i = 0; i < p->out.n_layers; i++)
        newidx[p->keep_layers[i]] = i;
    for (int i = 0; i < ck->n_tensors; i++) {
        const lmp_tensor *t = &ck->tensors[i];
        const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
        if (name_layer(t->name) >= 0 && (tr->block_size != 1 || t->ndim > 3)) {
            free(newidx);
            return lmp_err(LMP_EUNSUPPORTED, "structured pruning: tensor %s is %s (dense dtypes only)", t->name,
                           tr->name);
        }
    }
    lmp_st_writer *sw = NULL;
    char *tmp = NULL;
    cJSON *j = NULL;
    uint8_t *row = NULL;
    int rc;
    if ((rc = lmp_dir_begin(dir, force, &tmp)) || (rc = lmp_st_writer_new(&sw, tmp, 0, true)))
        goto done;
    size_t maxrow = 0;
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < ck->n_tensors; i++) {
            const lmp_tensor *t = &ck->tensors[i];
            int l = name_layer(t->name);
            if (l >= p->in.n_layers) {
                rc = lmp_err(LMP_EFORMAT, "%s: tensor %s names block %d of a %d-block model", ck->path, t->name, l,
                             p->in.n_layers);
                goto done;
            }
            if (l >= 0 && newidx[l] < 0)
                continue;
            char name[LMP_MAX_NAME];
            if (l >= 0) {
                const char *rest = strchr(t->name + strlen("model.layers."), '.');
                snprintf(name, sizeof name, "model.layers.%d%s", newidx[l], rest);
            } else {
                snprintf(name, sizeof name, "%s", t->name);
            }
            slice s;
            memset(&s, 0, sizeof s);
            if (l >= 0 && (rc = slice_for(p, t, l, &s)))
                goto done;
            if (t->ndim > 2 && (s.rows || s.cols)) { /* granitemoe's 3-D experts are never sliced */
                free(s.owned);
                rc = lmp_err(LMP_EUNSUPPORTED, "structured pruning: %s is %d-D", t->name, t->ndim);
                goto done;
            }
            const int64_t R = t->shape[0], C = t->ndim == 2 ? t->shape[1] : 1;
            const size_t es = lmp_dtype_info(t->dtype)->type_size;
            int64_t nr = s.rows ? s.n_rows : R, nc = s.cols ? s.n_cols : C;
            if (pass == 0) {
                int64_t sh[2] = {nr, nc};
                rc = lmp_st_writer_add(sw, name, t->dtype, t->ndim, t->ndim > 2 ? t->shape : sh);
                if ((size_t)nc * es > maxrow)
                    maxrow = (size_t)nc * es;
            } else if (!s.rows && !s.cols) {
                rc = lmp_st_writer_write(sw, t->data, t->nbytes);
                s0.bytes += t->nbytes;
            } else {
                for (int64_t r = 0; r < nr && rc == 0; r++) {
                    const uint8_t *src = (const uint8_t *)t->data + (size_t)(s.rows ? s.rows[r] : r) * C * es;
                    if (s.cols)
                        for (int64_t c = 0; c < nc; c++)
                            memcpy(row + c * es, src + (size_t)s.cols[c] * es, es);
                    else
                        memcpy(row, src, (size_t)nc * es);
                    rc = lmp_st_writer_write(sw, row, (size_t)nc * es);
                }
                s0.bytes += (uint64_t)(nr * nc) * es;
            }
            if (pass == 1) {
                lmp_mmap_release(t->data, t->nbytes);
                s0.n_tensors++;
                s0.params += (uint64_t)(nr * nc);
            }
            free(s.owned);
            if (rc)
                goto done;
        }
        if (pass == 0) {
            if ((rc = lmp_st_writer_meta(sw, "format", "pt")) || (rc = lmp_st_writer_begin(sw)))
                goto done;
            row = malloc(maxrow ? maxrow : 1);
            if (!row) {
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto done;
            }
        }
    }
    rc = lmp_st_writer_finish(sw);
    sw = NULL;
    if (rc || (rc = lmp_fmt_config_json(ck->dir, &p->in, &j)))
        goto done;
    json_set_num(j, "num_hidden_layers", p->out.n_layers);
    /* per-layer lists (gemma2/3 layer_types, smollm3 no_rope_layers) follow the kept layers */
    static const char *per_layer[] = {"layer_types", "no_rope_layers"};
    for (size_t li = 0; li < sizeof per_layer / sizeof per_layer[0]; li++) {
        cJSON *old = cJSON_GetObjectItemCaseSensitive(j, per_layer[li]);
        if (!cJSON_IsArray(old) || cJSON_GetArraySize(old) != p->in.n_layers)
            continue;
        cJSON *nw = cJSON_CreateArray();
        for (int i = 0; i < p->out.n_layers; i++)
            cJSON_AddItemToArray(nw, cJSON_Duplicate(cJSON_GetArrayItem(old, p->keep_layers[i]), true));
        cJSON_ReplaceItemInObjectCaseSensitive(j, per_layer[li], nw);
    }
    /* qwen3_moe: the kept dense layers by their new indices (the plan's step 1 and list) */
    if (p->in.n_experts > 0 && p->out.n_layers != p->in.n_layers &&
        (cJSON_GetObjectItemCaseSensitive(j, "mlp_only_layers") ||
         cJSON_GetObjectItemCaseSensitive(j, "decoder_sparse_step"))) {
        json_set_num(j, "decoder_sparse_step", p->out.moe_sparse_step);
        cJSON *ml = cJSON_CreateArray();
        for (int i = 0; i < p->out.n_mlp_only; i++)
            cJSON_AddItemToArray(ml, cJSON_CreateNumber(p->out.mlp_only[i]));
        cJSON_DeleteItemFromObjectCaseSensitive(j, "mlp_only_layers");
        cJSON_AddItemToObject(j, "mlp_only_layers", ml);
    }
    json_set_num(j, "num_attention_heads", p->out.n_heads);
    json_set_num(j, "num_key_value_heads", p->out.n_kv_heads);
    json_set_num(j, "head_dim", p->out.head_dim);
    json_set_num(j, "intermediate_size", p->out.intermediate_size);
    if ((rc = lmp_fmt_write_json(tmp, "config.json", j)) || (rc = lmp_tokenizer_files_write(ck, tmp)))
        goto done;
    rc = lmp_dir_commit(tmp, dir);
    if (rc == 0) {
        free(tmp);
        tmp = NULL;
        if (st)
            *st = s0;
    }
done:
    lmp_st_writer_abort(sw);
    if (tmp) {
        lmp_dir_remove(tmp);
        free(tmp);
    }
    cJSON_Delete(j);
    free(row);
    free(newidx);
    return rc;
}
