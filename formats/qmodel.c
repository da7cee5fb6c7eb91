/*
 * Quantized model folders (GPTQ v1/v2, AWQ, compressed-tensors pack-quantized): the
 * streaming writer and the reader that hands each linear back as a canonical lmp_qtensor.
 * What differs between formats comes from their row in fmt_table.c. See qmodel.h.
 *
 * Streaming with safetensors' header-first layout: every packed shape is known before
 * the first forward pass, because it depends only on the linear's shape and the
 * configuration. We pack an all-zero tensor once per distinct linear shape to learn the
 * tensor names, dtypes and shapes (so this file never restates a packing rule), declare
 * everything, write the unquantized tensors, and then each block as it arrives; the
 * actual packing of each linear is checked against its declaration.
 */
#include "qmodel.h"
#include "folder.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- writer ---------- */

/* The declared layout of one packed linear shape. */
typedef struct {
    int64_t rows, cols;
    int n;
    char name[LMP_PACKED_MAX][LMP_MAX_NAME];
    lmp_dtype dtype[LMP_PACKED_MAX];
    int ndim[LMP_PACKED_MAX];
    int64_t shape[LMP_PACKED_MAX][LMP_MAX_DIMS];
} packed_shape;

struct lmp_qmodel_writer {
    const lmp_model *m;
    const lmp_ckpt *ck;
    lmp_intq_config qc;
    lmp_qmodel_write_params p;
    char *dir, *tmp;
    lmp_st_writer *sw;
    int n_layers, next_layer;
    int *tensor_layer;   /* per ckpt tensor: -2 skip (a quantized linear's weight), -1 not in a block, else block */
    packed_shape shapes[8];
    int n_shapes;
    bool gidx;           /* declared with g_idx */
    lmp_qmodel_write_stats st;
    /* AWQ: block fold_layer's folded vectors (lmp_qmodel_writer_fold), written instead of
     * the input's: [0] input_layernorm, [1] post_attention_layernorm, [2 + k] linear k's
     * bias; NULL = as in the input */
    float *fold[3 + LMP_LIN_COUNT];    /* [2 + LMP_LIN_COUNT]: a sparse block's router */
    int64_t fold_n[3 + LMP_LIN_COUNT];
    int fold_layer;
    /* mixture of experts: block qe_layer's experts (lmp_qmodel_writer_experts), borrowed
     * until its lmp_qmodel_writer_layer */
    const lmp_qtensor *qe;
    int qe_n, qe_layer;
};

void lmp_qmodel_write_default_params(lmp_qmodel_write_params *p)
{
    memset(p, 0, sizeof *p);
    p->format = LMP_QFMT_GPTQ_V1;
    p->scale_dtype = LMP_DT_F16;
}

static int pack_one(const lmp_qmodel_writer *w, const lmp_qtensor *q, lmp_packed_linear *out)
{
    return lmp_qformat_pack(w->p.format, q, w->qc.scale_dtype, out);
}

/* Shape table entry for [rows, cols], packing an empty tensor on first use. */
static int shape_for(lmp_qmodel_writer *w, int64_t rows, int64_t cols, const char *name, const packed_shape **out)
{
    for (int i = 0; i < w->n_shapes; i++)
        if (w->shapes[i].rows == rows && w->shapes[i].cols == cols) {
            *out = &w->shapes[i];
            return LMP_OK;
        }
    if (w->n_shapes == (int)(sizeof w->shapes / sizeof w->shapes[0]))
        return lmp_err(LMP_EUNSUPPORTED, "quantized writer: too many distinct linear shapes");
    lmp_qtensor q;
    int rc = lmp_qtensor_intgroup_init(&q, rows, cols, w->qc.bits, w->qc.group_size, w->qc.sym, w->gidx);
    if (rc)
        return rc;
    snprintf(q.name, sizeof q.name, "%s", name);
    if (q.ig.g_idx)
        for (int64_t c = 0; c < cols; c++)
            q.ig.g_idx[c] = (int32_t)(c / q.ig.gs);
    lmp_packed_linear pl;
    rc = pack_one(w, &q, &pl);
    lmp_qtensor_free(&q);
    if (rc)
        return rc;
    packed_shape *s = &w->shapes[w->n_shapes++];
    s->rows = rows;
    s->cols = cols;
    s->n = pl.n;
    for (int i = 0; i < pl.n; i++) {
        snprintf(s->name[i], LMP_MAX_NAME, "%s", pl.t[i].name);
        s->dtype[i] = pl.t[i].dtype;
        s->ndim[i] = pl.t[i].ndim;
        memcpy(s->shape[i], pl.t[i].shape, sizeof s->shape[i]);
    }
    lmp_packed_linear_free(&pl);
    *out = s;
    return LMP_OK;
}

/* Block index of an HF tensor name "model.layers.<N>.", else -1. */
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

/* The tensors a block's linears are stored as ("slots"): one per linear, except that phi3
 * stores q/k/v as one qkv_proj and gate/up as one gate_up_proj, rows concatenated, and so
 * do its published GPTQ/AWQ checkpoints. */
typedef struct {
    lmp_linear first;
    int n;             /* linears in the slot (rows concatenated in order) */
    const char *fused; /* module path of the fused tensor, or NULL */
} lin_slot;

/* sparse: a mixture-of-experts block, whose gate/up/down are its experts' (written after
 * the slots, expert by expert: expert_prefix) */
static int block_slots(const lmp_config *c, bool sparse, lin_slot out[LMP_LIN_COUNT])
{
    int n = 0;
    for (int k = 0; k < (sparse ? LMP_LIN_GATE : LMP_LIN_COUNT); k++) {
        if (c->fused_qkv && k == LMP_LIN_Q) {
            out[n++] = (lin_slot){LMP_LIN_Q, 3, "self_attn.qkv_proj"};
            k = LMP_LIN_V;
        } else if (c->fused_gate_up && k == LMP_LIN_GATE) {
            out[n++] = (lin_slot){LMP_LIN_GATE, 2, "mlp.gate_up_proj"};
            k = LMP_LIN_UP;
        } else {
            out[n++] = (lin_slot){(lmp_linear)k, 1, NULL};
        }
    }
    return n;
}

static const char *slot_prefix(int layer, const lin_slot *s, char *buf, size_t n)
{
    if (!s->fused)
        return lmp_linear_hf_prefix(layer, s->first, buf, n);
    snprintf(buf, n, "model.layers.%d.%s", layer, s->fused);
    return buf;
}

/* Rows and columns of a slot in model m. */
static void slot_shape(const lmp_model *m, int layer, const lin_slot *s, int64_t *rows, int64_t *cols)
{
    *rows = 0;
    *cols = lmp_model_linear(m, layer, s->first)->cols;
    for (int i = 0; i < s->n; i++)
        *rows += lmp_model_linear(m, layer, (lmp_linear)(s->first + i))->rows;
}

static bool is_linear_weight(const lmp_model *m, const char *name, int layer)
{
    char buf[LMP_MAX_NAME];
    lin_slot sl[LMP_LIN_COUNT];
    const lmp_config *c = lmp_model_config(m);
    const int E = lmp_model_n_experts(m, layer);
    int ns = block_slots(c, E > 0, sl);
    for (int e = 0; e < E; e++) /* the experts' weights: packed in their place */
        for (int k = LMP_LIN_GATE; k <= LMP_LIN_DOWN; k++) {
            lmp_expert_hf_prefix(c, layer, e, (lmp_linear)k, buf, sizeof buf);
            size_t n = strlen(buf);
            if (strncmp(name, buf, n) == 0 && strcmp(name + n, ".weight") == 0)
                return true;
        }
    for (int w = 0; w < ns; w++) {
        slot_prefix(layer, &sl[w], buf, sizeof buf);
        size_t k = strlen(buf);
        if (strncmp(name, buf, k) == 0 && strcmp(name + k, ".weight") == 0)
            return true;
    }
    return false;
}

/* The fused INTGROUP tensor of a slot: its linears' rows one after the other (they see
 * the same input, so act-order gives them the same g_idx; anything else is refused). */
static int slot_concat(const lmp_qtensor *q, const lin_slot *s, const char *name, lmp_qtensor *out)
{
    const lmp_qtensor *a = &q[s->first];
    int64_t rows = 0;
    for (int i = 0; i < s->n; i++) {
        const lmp_qtensor *b = &q[s->first + i];
        if (b->cols != a->cols || b->ig.bits != a->ig.bits || b->ig.gs != a->ig.gs || b->ig.sym != a->ig.sym ||
            !b->ig.g_idx != !a->ig.g_idx ||
            (a->ig.g_idx && memcmp(a->ig.g_idx, b->ig.g_idx, sizeof(int32_t) * (size_t)a->cols) != 0))
            return lmp_err(LMP_EINVAL, "%s: the fused linears were quantized differently (group order); "
                                       "they cannot share one tensor", name);
        rows += b->rows;
    }
    int rc = lmp_qtensor_intgroup_init(out, rows, a->cols, a->ig.bits, a->ig.group_size, a->ig.sym,
                                       a->ig.g_idx != NULL);
    if (rc)
        return rc;
    snprintf(out->name, sizeof out->name, "%s", name);
    int64_t r0 = 0;
    for (int i = 0; i < s->n; i++) {
        const lmp_qtensor *b = &q[s->first + i];
        const int64_t ng = out->ig.n_groups;
        memcpy(out->ig.codes + r0 * out->ig.row_bytes, b->ig.codes, (size_t)(b->rows * out->ig.row_bytes));
        memcpy(out->ig.scales + r0 * ng, b->ig.scales, sizeof(float) * (size_t)(b->rows * ng));
        memcpy(out->ig.zeros + r0 * ng, b->ig.zeros, (size_t)(b->rows * ng));
        r0 += b->rows;
    }
    if (a->ig.g_idx)
        memcpy(out->ig.g_idx, a->ig.g_idx, sizeof(int32_t) * (size_t)a->cols);
    return LMP_OK;
}

/* Rows [r0, r0 + rows) of a fused INTGROUP tensor as a tensor of their own. */
int lmp_qtensor_intgroup_rows(const lmp_qtensor *q, int64_t r0, int64_t rows, lmp_qtensor *out)
{
    if (r0 < 0 || rows < 1 || r0 + rows > q->rows)
        return lmp_err(LMP_EINVAL, "%s: rows %lld..%lld of %lld", q->name, (long long)r0,
                       (long long)(r0 + rows), (long long)q->rows);
    int rc = lmp_qtensor_intgroup_init(out, rows, q->cols, q->ig.bits, q->ig.group_size, q->ig.sym,
                                       q->ig.g_idx != NULL);
    if (rc)
        return rc;
    const int64_t ng = q->ig.n_groups;
    memcpy(out->ig.codes, q->ig.codes + r0 * q->ig.row_bytes, (size_t)(rows * q->ig.row_bytes));
    memcpy(out->ig.scales, q->ig.scales + r0 * ng, sizeof(float) * (size_t)(rows * ng));
    memcpy(out->ig.zeros, q->ig.zeros + r0 * ng, (size_t)(rows * ng));
    if (q->ig.g_idx)
        memcpy(out->ig.g_idx, q->ig.g_idx, sizeof(int32_t) * (size_t)q->cols);
    return LMP_OK;
}

/* The dtype a non-packed tensor is written in (--dtype for integer-group folders). */
static lmp_dtype out_dtype(const lmp_qmodel_writer *w, lmp_dtype dt)
{
    if (w->p.convert_dense && (dt == LMP_DT_F32 || dt == LMP_DT_F16 || dt == LMP_DT_BF16))
        return w->p.dense_dtype;
    return dt;
}

/* f32 values into `od` (F32/F16/BF16) bytes; *bytes set. */
static void *encode_f32(const float *x, int64_t n, lmp_dtype od, size_t *bytes)
{
    size_t es = od == LMP_DT_F32 ? 4 : 2;
    void *buf = malloc(es * (size_t)(n ? n : 1));
    if (!buf)
        return NULL;
    if (od == LMP_DT_F32)
        memcpy(buf, x, es * (size_t)n);
    else if (od == LMP_DT_F16)
        lmp_f32_to_f16_row(x, buf, n);
    else
        lmp_f32_to_bf16_row(x, buf, n);
    *bytes = es * (size_t)n;
    return buf;
}

static int write_tensor(lmp_qmodel_writer *w, const lmp_tensor *t)
{
    lmp_dtype od = out_dtype(w, t->dtype);
    if (od != t->dtype) { /* row by row through f32 */
        int64_t n = lmp_tensor_nelem(t), cols = t->ndim ? t->shape[t->ndim - 1] : 1, rows = cols ? n / cols : 0;
        float *row = malloc(sizeof(float) * (size_t)(cols ? cols : 1));
        size_t in_es = lmp_dtype_info(t->dtype)->type_size, nb = 0;
        int rc = row ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory");
        for (int64_t r = 0; r < rows && !rc; r++) {
            lmp_dtype_info(t->dtype)->to_f32((const uint8_t *)t->data + (size_t)r * (size_t)cols * in_es, row, cols);
            void *enc = encode_f32(row, cols, od, &nb);
            rc = enc ? lmp_st_writer_write(w->sw, enc, nb) : lmp_err(LMP_ENOMEM, "out of memory");
            free(enc);
            if (!rc)
                w->st.bytes += nb;
        }
        free(row);
        if (!t->owned)
            lmp_mmap_release(t->data, t->nbytes);
        if (rc == 0) {
            w->st.params += (uint64_t)n;
            w->st.n_tensors++;
        }
        return rc;
    }
    int rc = lmp_st_writer_write(w->sw, t->data, t->nbytes);
    if (!t->owned) /* a checkpoint tensor in its read-only file mapping: drop the pages read */
        lmp_mmap_release(t->data, t->nbytes);
    if (rc == 0) {
        w->st.bytes += t->nbytes;
        w->st.params += (uint64_t)lmp_tensor_nelem(t);
        w->st.n_tensors++;
    }
    return rc;
}

/* --keep on a slot: 1 when every linear of it is kept, 0 when none is, an error when a
 * fused tensor (phi3's qkv_proj / gate_up_proj) would be split between kept and packed. */
static int slot_kept(const uint8_t *keep, int layer, const lin_slot *s, const char *name)
{
    if (!keep)
        return 0;
    int n = 0;
    for (int i = 0; i < s->n; i++)
        n += keep[layer * LMP_LIN_COUNT + s->first + i] != 0;
    if (n == 0)
        return 0;
    if (n < s->n || s->n > 1)
        return lmp_err(LMP_EUNSUPPORTED, "%s: --keep on a fused projection is not supported (it would be "
                                         "written as one dense tensor beside packed ones)", name);
    return 1;
}

/* A kept linear is written in its input dtype (f32/f16/bf16; --dtype applies), else f16. */
static lmp_dtype keep_dtype(const lmp_qmodel_writer *w, const lmp_wmat *wm)
{
    lmp_dtype dt = wm->q ? LMP_DT_F16 : wm->dtype;
    if (dt != LMP_DT_F32 && dt != LMP_DT_F16 && dt != LMP_DT_BF16)
        dt = LMP_DT_F16;
    return out_dtype(w, dt);
}

static int write_kept_linear(lmp_qmodel_writer *w, int layer, int k)
{
    const lmp_wmat *wm = lmp_model_linear(w->m, layer, (lmp_linear)k);
    lmp_dtype od = keep_dtype(w, wm);
    float *row = malloc(sizeof(float) * (size_t)wm->cols);
    int rc = row ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory");
    size_t nb = 0;
    for (int64_t r = 0; r < wm->rows && !rc; r++) {
        lmp_wmat_row_f32(wm, r, row);
        void *enc = encode_f32(row, wm->cols, od, &nb);
        rc = enc ? lmp_st_writer_write(w->sw, enc, nb) : lmp_err(LMP_ENOMEM, "out of memory");
        free(enc);
        if (!rc)
            w->st.bytes += nb;
    }
    free(row);
    if (!rc) {
        w->st.params += (uint64_t)(wm->rows * wm->cols);
        w->st.n_tensors++;
    }
    return rc;
}

int lmp_qmodel_writer_open(lmp_qmodel_writer **out, const lmp_model *m, const char *dir,
                           const lmp_intq_config *qc, const lmp_qmodel_write_params *p)
{
    *out = NULL;
    const lmp_ckpt *ck = lmp_model_ckpt(m);
    const lmp_config *cfg = lmp_model_config(m);
    if (ck->kind == LMP_CKPT_GGUF)
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: GGUF input cannot be written as GPTQ / compressed-tensors (llama.cpp names and "
                       "permuted q/k rows); convert it to a Hugging Face folder first (lmpress convert)",
                       ck->path);
    const lmp_qformat_row *row = lmp_qformat_get(p->format);
    if (!row) {
        char list[256];
        return lmp_err(LMP_EUNSUPPORTED, "quantized writer: format %s (%s)", lmp_qformat_name(p->format),
                       lmp_qformat_list(list, sizeof list, false));
    }
    if (row->asym_refusal && !qc->sym)
        return lmp_err(LMP_EINVAL, "%s", row->asym_refusal);
    if (lmp_model_is_moe(m) && strcmp(cfg->model_type, "granitemoe") == 0)
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: granitemoe keeps each layer's experts in two fused 3-D parameters "
                       "(block_sparse_moe.input_linear [experts, 2 x ffn, hidden] and output_linear); transformers' "
                       "GPTQ / compressed-tensors loaders quantize Linear modules only, vLLM's granitemoe loader "
                       "reads only the dense 3-D tensors, and GPTQModel writes per-expert "
                       "input_linear.E.linear modules that neither of them reads: there is no integer-group layout "
                       "that loads, so none is written. Use GGUF types (lmpress quantize --type q4_k_m ...) or "
                       "prune (dense output)",
                       ck->path);
    lmp_qmodel_writer *w = calloc(1, sizeof *w);
    if (!w)
        return lmp_err(LMP_ENOMEM, "out of memory");
    w->m = m;
    w->ck = ck;
    w->qc = *qc;
    w->p = *p;
    if (row->scale_dtypes)
        w->qc.scale_dtype = p->scale_dtype ? p->scale_dtype : LMP_DT_F16;
    w->n_layers = cfg->n_layers;
    w->gidx = qc->desc_act && !qc->static_groups;
    int rc;
    w->dir = strdup(dir);
    w->tensor_layer = calloc((size_t)ck->n_tensors + 1, sizeof(int));
    if (!w->dir || !w->tensor_layer) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    /* classify every input tensor; each linear weight must be there */
    int found = 0;
    for (int i = 0; i < ck->n_tensors; i++) {
        const char *nm = ck->tensors[i].name;
        int l = name_layer(nm);
        if (l >= w->n_layers) {
            rc = lmp_err(LMP_EFORMAT, "%s: tensor %s names block %d of a %d-block model", ck->path, nm, l,
                         w->n_layers);
            goto fail;
        }
        w->tensor_layer[i] = l >= 0 && is_linear_weight(m, nm, l) ? -2 : l;
        found += w->tensor_layer[i] == -2;
    }
    lin_slot sl[LMP_LIN_COUNT];
    int expect = 0;
    for (int l = 0; l < w->n_layers; l++)
        expect += block_slots(cfg, lmp_model_n_experts(m, l) > 0, sl) + 3 * lmp_model_n_experts(m, l);
    if (found != expect) {
        rc = lmp_err(LMP_EFORMAT, "%s: found %d linear weights with Hugging Face names, expected %d", ck->path,
                     found, expect);
        goto fail;
    }
    /* learn packed shapes first: a format constraint fails before the folder exists */
    for (int l = 0; l < w->n_layers; l++) {
        const int E = lmp_model_n_experts(m, l), ns = block_slots(cfg, E > 0, sl);
        for (int k = 0; k < 3 * E; k++) {
            const packed_shape *s;
            char name[LMP_MAX_NAME];
            const lmp_wmat *wm = lmp_model_expert_linear(m, l, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3));
            lmp_expert_hf_prefix(cfg, l, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3), name, sizeof name);
            if ((rc = shape_for(w, wm->rows, wm->cols, name, &s)))
                goto fail;
        }
        for (int k = 0; k < ns; k++) {
            const packed_shape *s;
            char name[LMP_MAX_NAME];
            int64_t rows, cols;
            slot_prefix(l, &sl[k], name, sizeof name);
            if ((rc = slot_kept(p->keep, l, &sl[k], name)) != 0) {
                if (rc < 0)
                    goto fail;
                rc = LMP_OK;
                continue;
            }
            slot_shape(m, l, &sl[k], &rows, &cols);
            if ((rc = shape_for(w, rows, cols, name, &s)))
                goto fail;
        }
    }
    if ((rc = lmp_dir_begin(dir, p->force, &w->tmp)))
        goto fail;
    if ((rc = lmp_st_writer_new(&w->sw, w->tmp, p->shard_bytes, true)))
        goto fail;
    /* declaration order = write order: tensors outside the blocks, then block by block
     * its other tensors and its seven packed linears */
    for (int i = 0; i < ck->n_tensors; i++)
        if (w->tensor_layer[i] == -1) {
            const lmp_tensor *t = &ck->tensors[i];
            if ((rc = lmp_st_writer_add(w->sw, t->name, out_dtype(w, t->dtype), t->ndim, t->shape)))
                goto fail;
        }
    for (int l = 0; l < w->n_layers; l++) {
        const int E = lmp_model_n_experts(m, l), ns = block_slots(cfg, E > 0, sl);
        for (int i = 0; i < ck->n_tensors; i++)
            if (w->tensor_layer[i] == l) {
                const lmp_tensor *t = &ck->tensors[i];
                if ((rc = lmp_st_writer_add(w->sw, t->name, out_dtype(w, t->dtype), t->ndim, t->shape)))
                    goto fail;
            }
        for (int k = 0; k < ns; k++) {
            const packed_shape *s;
            char prefix[LMP_MAX_NAME], name[2 * LMP_MAX_NAME];
            int64_t rows, cols;
            slot_prefix(l, &sl[k], prefix, sizeof prefix);
            if (p->keep && p->keep[l * LMP_LIN_COUNT + sl[k].first]) { /* --keep: a dense weight */
                const lmp_wmat *wm = lmp_model_linear(m, l, sl[k].first);
                int64_t shape[2] = {wm->rows, wm->cols};
                snprintf(name, sizeof name, "%s.weight", prefix);
                if ((rc = lmp_st_writer_add(w->sw, name, keep_dtype(w, wm), 2, shape)))
                    goto fail;
                continue;
            }
            slot_shape(m, l, &sl[k], &rows, &cols);
            if ((rc = shape_for(w, rows, cols, prefix, &s)))
                goto fail;
            for (int j = 0; j < s->n; j++) {
                snprintf(name, sizeof name, "%s.%s", prefix, s->name[j]);
                if ((rc = lmp_st_writer_add(w->sw, name, s->dtype[j], s->ndim[j], s->shape[j])))
                    goto fail;
            }
        }
        for (int k = 0; k < 3 * E; k++) { /* the experts, in expert order: gate, up, down */
            const packed_shape *s;
            char prefix[LMP_MAX_NAME], name[2 * LMP_MAX_NAME];
            const lmp_wmat *wm = lmp_model_expert_linear(m, l, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3));
            lmp_expert_hf_prefix(cfg, l, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3), prefix, sizeof prefix);
            if ((rc = shape_for(w, wm->rows, wm->cols, prefix, &s)))
                goto fail;
            for (int j = 0; j < s->n; j++) {
                snprintf(name, sizeof name, "%s.%s", prefix, s->name[j]);
                if ((rc = lmp_st_writer_add(w->sw, name, s->dtype[j], s->ndim[j], s->shape[j])))
                    goto fail;
            }
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
    lmp_qmodel_writer_abort(w);
    return rc;
}

static void fold_clear(lmp_qmodel_writer *w)
{
    for (int i = 0; i < 3 + LMP_LIN_COUNT; i++) {
        free(w->fold[i]);
        w->fold[i] = NULL;
    }
}

int lmp_qmodel_writer_fold(void *ctx, int layer, const lmp_qfold *f)
{
    lmp_qmodel_writer *w = ctx;
    if (layer != w->next_layer)
        return lmp_err(LMP_EINVAL, "quantized writer: folded vectors of block %d arrived, expected %d", layer,
                       w->next_layer);
    fold_clear(w);
    const float *src[3 + LMP_LIN_COUNT] = {f->attn_norm, f->ffn_norm};
    int64_t d = lmp_model_config(w->m)->hidden_size;
    w->fold_n[0] = w->fold_n[1] = d;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const lmp_wmat *lw = lmp_model_linear(w->m, layer, (lmp_linear)k); /* NULL: a sparse block's FFN */
        src[2 + k] = lw ? f->bias[k] : NULL;
        w->fold_n[2 + k] = lw ? lw->rows : 0;
    }
    src[2 + LMP_LIN_COUNT] = lmp_model_n_experts(w->m, layer) > 0 ? f->router : NULL;
    w->fold_n[2 + LMP_LIN_COUNT] = (int64_t)lmp_model_n_experts(w->m, layer) * d;
    for (int i = 0; i < 3 + LMP_LIN_COUNT; i++)
        if (src[i]) {
            if (!(w->fold[i] = malloc(sizeof(float) * (size_t)w->fold_n[i]))) {
                fold_clear(w);
                return lmp_err(LMP_ENOMEM, "out of memory");
            }
            memcpy(w->fold[i], src[i], sizeof(float) * (size_t)w->fold_n[i]);
        }
    w->fold_layer = layer;
    return LMP_OK;
}

/* A block tensor: the folded replacement when there is one (in the input's dtype), else
 * the input's bytes. */
static int write_layer_tensor(lmp_qmodel_writer *w, int layer, const lmp_tensor *t)
{
    int idx = -1;
    char name[LMP_MAX_NAME + 16];
    const lmp_config *cfg = lmp_model_config(w->m);
    for (int i = 0; i < 3 + LMP_LIN_COUNT && idx < 0; i++) {
        if (i == 2 + LMP_LIN_COUNT) { /* the router (AWQ's gate/up scales in its columns) */
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer,
                     strcmp(cfg->model_type, "mixtral") == 0 ? "block_sparse_moe.gate" : "mlp.gate");
        } else if (i < 2) { /* the norms in front of q/k/v and gate/up (gemma2/3: pre_feedforward) */
            snprintf(name, sizeof name, "model.layers.%d.%s.weight", layer,
                     i == 0                              ? "input_layernorm"
                     : cfg->norms == LMP_NORM_SANDWICH ? "pre_feedforward_layernorm"
                                                         : "post_attention_layernorm");
        } else {
            char prefix[LMP_MAX_NAME];
            snprintf(name, sizeof name, "%s.bias", lmp_linear_hf_prefix(layer, (lmp_linear)(i - 2), prefix,
                                                                          sizeof prefix));
        }
        if (strcmp(t->name, name) == 0)
            idx = i;
    }
    if (idx < 0 || w->fold_layer != layer || !w->fold[idx])
        return write_tensor(w, t);
    const int64_t n = w->fold_n[idx];
    if (lmp_tensor_nelem(t) != n)
        return lmp_err(LMP_EFORMAT, "quantized writer: %s has %lld elements, the folded vector %lld", t->name,
                       (long long)lmp_tensor_nelem(t), (long long)n);
    if (t->dtype != LMP_DT_F32 && t->dtype != LMP_DT_F16 && t->dtype != LMP_DT_BF16)
        return lmp_err(LMP_EUNSUPPORTED, "quantized writer: %s is %s; folded vectors are written as f32/f16/bf16",
                       t->name, lmp_dtype_info(t->dtype)->name);
    if (idx < 2 && cfg->norm_plus1) /* the engine's (1 + w) back to the stored w (gemma) */
        for (int64_t j = 0; j < n; j++)
            w->fold[idx][j] -= 1.0f;
    size_t nb = 0;
    void *buf = encode_f32(w->fold[idx], n, out_dtype(w, t->dtype), &nb);
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory");
    int rc = lmp_st_writer_write(w->sw, buf, nb);
    free(buf);
    if (rc == 0) {
        w->st.bytes += nb;
        w->st.params += (uint64_t)n;
        w->st.n_tensors++;
    }
    return rc;
}

/* Packs qk (declared as `prefix`) and writes its tensors. */
static int write_packed(lmp_qmodel_writer *w, const lmp_qtensor *qk, const char *prefix)
{
    const packed_shape *s;
    int rc;
    if (qk->scheme != LMP_QS_INTGROUP || qk->ig.bits != w->qc.bits || qk->ig.group_size != w->qc.group_size ||
        qk->ig.sym != w->qc.sym)
        return lmp_err(LMP_EINVAL, "quantized writer: %s does not match the declared %d-bit group %d %s scheme",
                       prefix, w->qc.bits, w->qc.group_size, w->qc.sym ? "symmetric" : "asymmetric");
    if ((rc = shape_for(w, qk->rows, qk->cols, prefix, &s)))
        return rc;
    /* act-order can leave a trivial permutation, which the canonical object drops;
     * the declaration promised a g_idx, so give the packer the trivial one */
    lmp_qtensor tmp = *qk;
    int32_t *gi = NULL;
    if (w->gidx && !qk->ig.g_idx) {
        gi = malloc((size_t)qk->cols * sizeof(int32_t));
        if (!gi)
            return lmp_err(LMP_ENOMEM, "out of memory");
        for (int64_t c = 0; c < qk->cols; c++)
            gi[c] = (int32_t)(c / qk->ig.gs);
        tmp.ig.g_idx = gi;
    }
    lmp_packed_linear pl;
    rc = pack_one(w, &tmp, &pl);
    free(gi);
    if (rc)
        return lmp_err_prefix(rc, "%s", prefix);
    bool same = pl.n == s->n;
    for (int j = 0; same && j < pl.n; j++)
        same = strcmp(pl.t[j].name, s->name[j]) == 0 && pl.t[j].dtype == s->dtype[j] &&
               pl.t[j].ndim == s->ndim[j] && memcmp(pl.t[j].shape, s->shape[j], sizeof s->shape[j]) == 0;
    if (!same) {
        lmp_packed_linear_free(&pl);
        return lmp_err(LMP_EINVAL, "quantized writer: %s packs to other tensors than declared (g_idx without "
                                   "act-order?)", prefix);
    }
    for (int j = 0; j < pl.n && rc == 0; j++) {
        rc = lmp_st_writer_write(w->sw, pl.t[j].data, pl.t[j].nbytes);
        w->st.bytes += pl.t[j].nbytes;
        w->st.qbytes += pl.t[j].nbytes;
        w->st.n_tensors++;
    }
    lmp_packed_linear_free(&pl);
    if (rc)
        return rc;
    w->st.params += (uint64_t)(qk->rows * qk->cols);
    w->st.qparams += (uint64_t)(qk->rows * qk->cols);
    w->st.n_quantized++;
    return LMP_OK;
}

int lmp_qmodel_writer_experts(void *ctx, int layer, int n_experts, const lmp_qtensor *qe)
{
    lmp_qmodel_writer *w = ctx;
    if (layer != w->next_layer || n_experts != lmp_model_n_experts(w->m, layer))
        return lmp_err(LMP_EINVAL, "quantized writer: %d experts of block %d arrived, expected block %d with %d",
                       n_experts, layer, w->next_layer, lmp_model_n_experts(w->m, w->next_layer));
    w->qe = qe;
    w->qe_n = n_experts;
    w->qe_layer = layer;
    return LMP_OK;
}

int lmp_qmodel_writer_layer(void *ctx, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st)
{
    (void)st;
    lmp_qmodel_writer *w = ctx;
    if (layer != w->next_layer)
        return lmp_err(LMP_EINVAL, "quantized writer: block %d arrived, expected %d", layer, w->next_layer);
    const int E = lmp_model_n_experts(w->m, layer);
    if (E > 0 && (!w->qe || w->qe_layer != layer || w->qe_n != E))
        return lmp_err(LMP_EINVAL, "quantized writer: block %d has %d experts but their tensors did not arrive "
                                   "(lmp_qmodel_writer_experts)", layer, E);
    int rc;
    for (int i = 0; i < w->ck->n_tensors; i++)
        if (w->tensor_layer[i] == layer && (rc = write_layer_tensor(w, layer, &w->ck->tensors[i])))
            return rc;
    lin_slot sl[LMP_LIN_COUNT];
    const int ns = block_slots(lmp_model_config(w->m), E > 0, sl);
    for (int k = 0; k < ns; k++) {
        char prefix[LMP_MAX_NAME];
        slot_prefix(layer, &sl[k], prefix, sizeof prefix);
        if (w->p.keep && w->p.keep[layer * LMP_LIN_COUNT + sl[k].first]) {
            if ((rc = write_kept_linear(w, layer, sl[k].first)))
                return lmp_err_prefix(rc, "%s", prefix);
            continue;
        }
        lmp_qtensor fused = {0};
        const lmp_qtensor *qk = &q[sl[k].first];
        if (sl[k].n > 1) {
            if ((rc = slot_concat(q, &sl[k], prefix, &fused)))
                return rc;
            qk = &fused;
        }
        rc = write_packed(w, qk, prefix);
        lmp_qtensor_free(&fused);
        if (rc)
            return rc;
    }
    for (int k = 0; k < 3 * E; k++) {
        char prefix[LMP_MAX_NAME];
        lmp_expert_hf_prefix(lmp_model_config(w->m), layer, k / 3, (lmp_linear)(LMP_LIN_GATE + k % 3), prefix,
                             sizeof prefix);
        if ((rc = write_packed(w, &w->qe[k], prefix)))
            return rc;
    }
    w->qe = NULL;
    w->next_layer++;
    return LMP_OK;
}

static cJSON *qconfig_json(const lmp_qmodel_writer *w)
{
    cJSON *j = lmp_qformat_config_json(w->p.format, &w->qc);
    if (!j || (!w->p.keep && !lmp_model_is_moe(w->m)))
        return j;
    /* the linears --keep left dense: compressed-tensors lists them in "ignore", GPTQ and
     * AWQ configs in "modules_to_not_convert" */
    const char *key = lmp_qformat_get(w->p.format)->skip_key;
    cJSON *arr = cJSON_GetObjectItemCaseSensitive(j, key);
    if (!cJSON_IsArray(arr)) {
        cJSON_DeleteItemFromObjectCaseSensitive(j, key);
        arr = cJSON_AddArrayToObject(j, key);
    }
    const lmp_config *cfg = lmp_model_config(w->m);
    for (int l = 0; arr && l < w->n_layers; l++)
        if (lmp_model_n_experts(w->m, l) > 0) { /* the routers stay in full precision */
            char r[LMP_MAX_NAME];
            snprintf(r, sizeof r, "model.layers.%d.%s", l,
                     strcmp(cfg->model_type, "mixtral") == 0 ? "block_sparse_moe.gate" : "mlp.gate");
            cJSON_AddItemToArray(arr, cJSON_CreateString(r));
        }
    for (int l = 0; arr && w->p.keep && l < w->n_layers; l++)
        for (int k = 0; k < LMP_LIN_COUNT; k++)
            if (w->p.keep[l * LMP_LIN_COUNT + k]) {
                char prefix[LMP_MAX_NAME];
                lmp_linear_hf_prefix(l, (lmp_linear)k, prefix, sizeof prefix);
                cJSON_AddItemToArray(arr, cJSON_CreateString(prefix));
            }
    return j;
}

static int write_configs(lmp_qmodel_writer *w)
{
    const lmp_ckpt *ck = w->ck;
    cJSON *j = NULL;
    int rc = lmp_fmt_config_json(ck->dir, lmp_model_config(w->m), &j);
    if (rc)
        goto done;
    cJSON_DeleteItemFromObjectCaseSensitive(j, "quantization_config");
    cJSON *qc = qconfig_json(w);
    if (!qc) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_AddItemToObject(j, "quantization_config", qc);
    if (w->p.convert_dense) { /* the precision of the unquantized tensors */
        cJSON_DeleteItemFromObjectCaseSensitive(j, "torch_dtype");
        cJSON_AddStringToObject(j, "torch_dtype", w->p.dense_dtype == LMP_DT_BF16 ? "bfloat16" : "float16");
    }
    if ((rc = lmp_fmt_write_json(w->tmp, "config.json", j)))
        goto done;
    if (lmp_qformat_get(w->p.format)->quantize_config_json) {
        cJSON *q2 = qconfig_json(w);
        if (!q2) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        rc = lmp_fmt_write_json(w->tmp, "quantize_config.json", q2);
        cJSON_Delete(q2);
        if (rc)
            goto done;
    }
    rc = lmp_tokenizer_files_write(ck, w->tmp);
done:
    cJSON_Delete(j);
    return rc;
}

int lmp_qmodel_writer_finish(lmp_qmodel_writer *w, lmp_qmodel_write_stats *st)
{
    int rc;
    if (w->next_layer != w->n_layers) {
        rc = lmp_err(LMP_EINVAL, "quantized writer: finished after %d of %d blocks", w->next_layer, w->n_layers);
        goto done;
    }
    rc = lmp_st_writer_finish(w->sw);
    w->sw = NULL;
    if (rc == 0)
        rc = write_configs(w);
    if (rc == 0)
        rc = lmp_dir_commit(w->tmp, w->dir);
    if (rc == 0 && st)
        *st = w->st;
done:
    if (rc == 0) {
        free(w->tmp);
        w->tmp = NULL;
    }
    lmp_qmodel_writer_abort(w);
    return rc;
}

void lmp_qmodel_writer_abort(lmp_qmodel_writer *w)
{
    if (!w)
        return;
    fold_clear(w);
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

struct lmp_qmodel {
    char *dir;
    lmp_config cfg;
    lmp_qformat format;
    lmp_intq_config qc;
    lmp_st_reader st;
};

int lmp_qmodel_open(lmp_qmodel **out, const char *dir)
{
    *out = NULL;
    lmp_qmodel *q = calloc(1, sizeof *q);
    char *path = lmp_path_join(dir, "config.json"), *txt = NULL;
    cJSON *j = NULL;
    size_t len = 0;
    int rc;
    if (!q || !path || !(q->dir = strdup(dir))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = lmp_read_file(path, &txt, &len)))
        goto fail;
    if ((rc = lmp_config_parse(&q->cfg, txt, len, path)))
        goto fail;
    j = cJSON_Parse(txt);
    const cJSON *qcj = j ? cJSON_GetObjectItemCaseSensitive(j, "quantization_config") : NULL;
    if (!qcj) {
        rc = lmp_err(LMP_EFORMAT, "%s: no \"quantization_config\": not a quantized checkpoint", path);
        goto fail;
    }
    if ((rc = lmp_qformat_config_parse(qcj, &q->format, &q->qc))) {
        rc = lmp_err_prefix(rc, "%s", path);
        goto fail;
    }
    if ((rc = lmp_st_open(&q->st, dir)))
        goto fail;
    cJSON_Delete(j);
    free(txt);
    free(path);
    *out = q;
    return LMP_OK;
fail:
    cJSON_Delete(j);
    free(txt);
    free(path);
    lmp_qmodel_close(q);
    return rc;
}

void lmp_qmodel_close(lmp_qmodel *q)
{
    if (!q)
        return;
    lmp_st_close(&q->st);
    free(q->dir);
    free(q);
}

lmp_qformat lmp_qmodel_format(const lmp_qmodel *q) { return q->format; }
const lmp_intq_config *lmp_qmodel_qconfig(const lmp_qmodel *q) { return &q->qc; }
const lmp_config *lmp_qmodel_config(const lmp_qmodel *q) { return &q->cfg; }
const lmp_st_reader *lmp_qmodel_tensors(const lmp_qmodel *q) { return &q->st; }

bool lmp_qmodel_has_linear(const lmp_qmodel *q, const char *prefix)
{
    char name[2 * LMP_MAX_NAME];
    snprintf(name, sizeof name, "%s.%s", prefix, lmp_qformat_get(q->format)->required[0]);
    return lmp_st_find(&q->st, name) != NULL;
}

int lmp_qmodel_linear(const lmp_qmodel *q, const char *prefix, lmp_qtensor *out)
{
    memset(out, 0, sizeof *out);
    lmp_packed_linear pl;
    int rc = lmp_packed_linear_from_st(&q->st, prefix, q->format, &pl);
    if (rc)
        return rc;
    rc = lmp_qformat_unpack(&pl, &q->qc, out);
    lmp_packed_linear_free(&pl);
    if (rc)
        return lmp_err_prefix(rc, "%s: %s", q->dir, prefix);
    snprintf(out->name, sizeof out->name, "%s", prefix);
    return LMP_OK;
}

int lmp_qmodel_layer_linear(const lmp_qmodel *q, int layer, lmp_linear which, lmp_qtensor *out)
{
    char prefix[LMP_MAX_NAME];
    if (layer < 0 || layer >= q->cfg.n_layers || (unsigned)which >= LMP_LIN_COUNT) {
        memset(out, 0, sizeof *out);
        return lmp_err(LMP_EINVAL, "%s: no linear %d in block %d", q->dir, (int)which, layer);
    }
    return lmp_qmodel_linear(q, lmp_linear_hf_prefix(layer, which, prefix, sizeof prefix), out);
}
