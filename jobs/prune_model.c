/*
 * `lmpress prune` as one library call (see prune_model.h): lib/prune's layer-by-layer
 * driver or structured plan, with formats/' sparse, quantized or structured writers as
 * the sink; mixture-of-experts models through their own writer (moe_write: every tensor in
 * the checkpoint's order, experts by their Hugging Face names) to dense safetensors,
 * compressed-tensors sparse folders or GGUF (the dense folder converted).
 */
#include "prune_model.h"
#include "formats/formats.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void lmp_prune_model_default_params(lmp_prune_model_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_prune_default_params(&p->prune);
    lmp_calib_default_params(&p->calib);
    p->calib.n_samples = 128;
    p->qformat = LMP_QFMT_GPTQ_V1;
}

void lmp_prune_model_result_free(lmp_prune_model_result *r)
{
    if (!r)
        return;
    lmp_prune_result_free(&r->prune);
    lmp_struct_plan_free(&r->plan);
}

int lmp_prune_model_check(const lmp_prune_model_params *p)
{
    lmp_prune_model_params d;
    lmp_prune_model_default_params(&d);
    const lmp_prune_spec *s = &p->prune.spec;
    int rc;
    if (p->structured) {
        if ((unsigned)p->kind > LMP_STRUCT_LAYERS)
            return lmp_err(LMP_EINVAL, "--structured: unknown kind %d", (int)p->kind);
        if (!(p->ratio > 0 && p->ratio < 1))
            return lmp_err(LMP_EINVAL, "--ratio %g: must be in (0, 1)", p->ratio);
    } else {
        if ((rc = lmp_prune_spec_check(s, 0, "linear")))
            return rc;
        if (!s->qbits && (s->qsym != d.prune.spec.qsym || s->qgroup != d.prune.spec.qgroup || p->qformat != d.qformat))
            return lmp_err(LMP_EINVAL, "--asym, --group-size and --qformat apply to --then-quantize");
        if (s->qbits && s->qgroup > 1 << 20)
            return lmp_err(LMP_EINVAL, "--group-size %d: must be positive, or -1", s->qgroup);
        if (s->blocksize > 1 << 16)
            return lmp_err(LMP_EINVAL, "--blocksize %d: must be positive (at most 65536)", s->blocksize);
        if (p->prune.true_sequential < -1 || p->prune.true_sequential > 1)
            return lmp_err(LMP_EINVAL, "true_sequential %d: -1, 0 or 1", p->prune.true_sequential);
    }
    if (p->qformat != LMP_QFMT_GPTQ_V1 && p->qformat != LMP_QFMT_GPTQ_V2)
        return lmp_err(LMP_EINVAL, "--qformat: gptq or gptq_v2");
    if ((unsigned)p->out > LMP_PRUNE_OUT_GGUF)
        return lmp_err(LMP_EINVAL, "--format: unknown output %d", (int)p->out);
    if (!p->calib_path && (p->structured || s->method != LMP_PRUNE_MAGNITUDE))
        return lmp_err(LMP_EINVAL, "this method needs calibration text: --calib FILE (plain or .gz)");
    return lmp_calib_check(&p->calib);
}

typedef struct {
    lmp_qmodel_writer *w;
} qsink_ctx;

static int qsink(void *ctx, int layer, const float *const *W, const uint8_t *const *mask, const lmp_qtensor *q,
                 const lmp_prune_linear_stats *st)
{
    (void)W;
    (void)mask;
    (void)st;
    return lmp_qmodel_writer_layer(((qsink_ctx *)ctx)->w, layer, q, NULL);
}

/* adds sparsity_config (format "dense": the zeros are in the packed codes) to a
 * compressed-tensors pack-quantized folder's config.json */
static int patch_ct_sparsity(const char *dir, const lmp_prune_spec *s, double global)
{
    char *path = lmp_path_join(dir, "config.json"), *txt = NULL;
    int rc = path ? lmp_read_file(path, &txt, NULL) : lmp_err(LMP_ENOMEM, "out of memory");
    cJSON *j = rc == 0 ? cJSON_Parse(txt) : NULL;
    cJSON *qc = j ? cJSON_GetObjectItemCaseSensitive(j, "quantization_config") : NULL;
    if (rc == 0 && !qc)
        rc = lmp_err(LMP_EFORMAT, "%s: no quantization_config", path);
    if (rc == 0) {
        cJSON_AddItemToObject(qc, "sparsity_config", lmp_sparse_config_json("dense", s, global));
        rc = lmp_fmt_write_json(dir, "config.json", j);
    }
    cJSON_Delete(j);
    free(txt);
    free(path);
    return rc;
}

/* ---------------------------------------------------------------- experts */

/* Mixture-of-experts models: magnitude pruning (unstructured or N:M; it needs no
 * calibration, so an expert's mask depends on its own weights only) of every linear
 * weight of the blocks: attention projections, dense FFNs and each expert's matrices (a
 * 3-D tensor, granite's input_linear / output_linear, is pruned matrix by matrix); the
 * routers, embeddings and lm_head are kept. Written with the input's names and dtypes,
 * config.json and tokenizer files copied. Wanda / SparseGPT hand their pruned weights over
 * through the store below (each expert calibrated on the tokens routed to it). */
static bool moe_pruned(const lmp_tensor *t)
{
    const char *nm = t->name;
    if (t->ndim < 2 || t->ndim > 3 || !lmp_str_endswith(nm, ".weight") || !strstr(nm, "model.layers."))
        return false;
    return !strstr(nm, "block_sparse_moe.gate.weight") && !strstr(nm, ".mlp.gate.weight") &&
           !strstr(nm, "router.layer.weight");
}

/* Wanda / SparseGPT on a mixture of experts: the pruned f32 weights of every linear
 * (attention, dense FFNs, each expert's matrices) kept by name until the whole model is
 * written (4 bytes per linear weight held). */
typedef struct {
    const lmp_model *m;
    int n, cap;
    char (*name)[LMP_MAX_NAME + 8];
    float **W;
    int64_t *nel;
} moe_store;

static int store_put(moe_store *s, const char *name, const float *W, int64_t nel)
{
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        void *a = realloc(s->name, sizeof *s->name * (size_t)cap), *b = NULL, *c = NULL;
        if (a)
            s->name = a;
        if (a && (b = realloc(s->W, sizeof *s->W * (size_t)cap)))
            s->W = b;
        if (b && (c = realloc(s->nel, sizeof *s->nel * (size_t)cap)))
            s->nel = c;
        if (!a || !b || !c)
            return lmp_err(LMP_ENOMEM, "out of memory");
        s->cap = cap;
    }
    float *copy = malloc(sizeof(float) * (size_t)nel);
    if (!copy)
        return lmp_err(LMP_ENOMEM, "out of memory holding the pruned %s", name);
    memcpy(copy, W, sizeof(float) * (size_t)nel);
    snprintf(s->name[s->n], sizeof s->name[0], "%s", name);
    s->W[s->n] = copy;
    s->nel[s->n++] = nel;
    return LMP_OK;
}

static const float *store_get(const moe_store *s, const char *name, int64_t nel)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0)
            return s->nel[i] == nel ? s->W[i] : NULL;
    return NULL;
}

static void store_free(moe_store *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->W[i]);
    free(s->name);
    free(s->W);
    free(s->nel);
    memset(s, 0, sizeof *s);
}

static int store_sink(void *ctx, int layer, const float *const *W, const uint8_t *const *mask, const lmp_qtensor *q,
                      const lmp_prune_linear_stats *st)
{
    (void)mask;
    (void)q;
    moe_store *s = ctx;
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (W[k]) {
            char pre[LMP_MAX_NAME], nm[LMP_MAX_NAME + 8];
            snprintf(nm, sizeof nm, "%s.weight", lmp_linear_hf_prefix(layer, (lmp_linear)k, pre, sizeof pre));
            int rc = store_put(s, nm, W[k], st[k].rows * st[k].cols);
            if (rc)
                return rc;
        }
    return LMP_OK;
}

static int store_experts(void *ctx, int layer, int n_experts, const float *const *We)
{
    moe_store *s = ctx;
    for (int k = 0; k < 3 * n_experts; k++) {
        const lmp_linear w = (lmp_linear)(LMP_LIN_GATE + k % 3);
        const lmp_wmat *wm = lmp_model_expert_linear(s->m, layer, k / 3, w);
        char pre[LMP_MAX_NAME], nm[LMP_MAX_NAME + 8];
        lmp_expert_hf_prefix(lmp_model_config(s->m), layer, k / 3, w, pre, sizeof pre);
        snprintf(nm, sizeof nm, "%s.weight", pre);
        int rc = store_put(s, nm, We[k], wm->rows * wm->cols);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

/* Matrix k of checkpoint tensor t from the store into buf (rows x cols): a 2-D linear by
 * its name; granitemoe's 3-D input_linear (expert k's gate rows then up rows) and
 * output_linear from expert k's entries. */
static int store_matrix(const moe_store *s, const lmp_tensor *t, int64_t k, int64_t rows, int64_t cols, float *buf)
{
    const lmp_config *c = lmp_model_config(s->m);
    const float *a = NULL, *b = NULL;
    char nm[LMP_MAX_NAME + 8], pre[LMP_MAX_NAME];
    int l = -1;
    if (t->ndim == 2) {
        a = store_get(s, t->name, rows * cols);
    } else if (sscanf(t->name, "model.layers.%d.", &l) == 1 && strstr(t->name, "input_linear")) {
        lmp_expert_hf_prefix(c, l, (int)k, LMP_LIN_GATE, pre, sizeof pre);
        snprintf(nm, sizeof nm, "%s.weight", pre);
        a = store_get(s, nm, rows / 2 * cols);
        lmp_expert_hf_prefix(c, l, (int)k, LMP_LIN_UP, pre, sizeof pre);
        snprintf(nm, sizeof nm, "%s.weight", pre);
        b = store_get(s, nm, rows / 2 * cols);
        if (!b)
            a = NULL;
    } else if (l >= 0 && strstr(t->name, "output_linear")) {
        lmp_expert_hf_prefix(c, l, (int)k, LMP_LIN_DOWN, pre, sizeof pre);
        snprintf(nm, sizeof nm, "%s.weight", pre);
        a = store_get(s, nm, rows * cols);
    }
    if (!a)
        return lmp_err(LMP_EINVAL, "prune: %s (matrix %lld) was not pruned by the calibrated run", t->name,
                       (long long)k);
    const int64_t na = b ? rows / 2 * cols : rows * cols;
    memcpy(buf, a, sizeof(float) * (size_t)na);
    if (b)
        memcpy(buf + na, b, sizeof(float) * (size_t)na);
    return LMP_OK;
}

/* The routers compressed-tensors must leave alone (they are Linear modules, kept dense):
 * "re:" patterns in the sparsity_config's ignore list, as llm-compressor's Mixtral /
 * Qwen3-MoE recipes name them. */
static void moe_ignore(const lmp_ckpt *c, cJSON *sc)
{
    static const char *const routers[][2] = {
        {"block_sparse_moe.gate.weight", "re:.*block_sparse_moe\\.gate$"},
        {".mlp.gate.weight", "re:.*mlp\\.gate$"},
        {"router.layer.weight", "re:.*router\\.layer$"},
    };
    cJSON *ig = cJSON_GetObjectItemCaseSensitive(sc, "ignore");
    for (size_t k = 0; k < sizeof routers / sizeof routers[0] && ig; k++)
        for (int i = 0; i < c->n_tensors; i++)
            if (lmp_str_endswith(c->tensors[i].name, routers[k][0])) {
                cJSON_AddItemToArray(ig, cJSON_CreateString(routers[k][1]));
                break;
            }
}

/* store NULL: magnitude, matrix by matrix; else the calibrated run's pruned weights.
 * Format f: dense safetensors, or compressed-tensors sparse-bitmask / sparse-24-bitmask,
 * where every 2-D pruned weight (attention, dense FFNs, each expert's w1/w2/w3 or
 * gate/up/down_proj: Linear modules) is compressed and granitemoe's 3-D expert tensors
 * (ParallelExperts parameters, not Linear modules, which compressed-tensors' "Linear"
 * target does not reach) are written dense with their zeros. */
static int moe_write(const lmp_model *m, const char *out, bool force, lmp_sparse_format f,
                     const lmp_prune_model_params *p, lmp_prune_model_result *r, const moe_store *store)
{
    const lmp_sparse_format_row *fr = lmp_sparse_format_get(f);
    uint8_t *mask = NULL;
    const lmp_ckpt *c = lmp_model_ckpt(m);
    const lmp_prune_spec *spec = &p->prune.spec;
    lmp_st_writer *w = NULL;
    char *tmp = NULL;
    float *buf = NULL;
    void *conv = NULL;
    cJSON *cfg = NULL;
    int rc = LMP_OK;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        if (!moe_pruned(t))
            continue;
        const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
        if (!tr->to_f32 || !tr->from_f32 || tr->is_quant)
            return lmp_err(LMP_EUNSUPPORTED, "%s: %s is %s (pruning reads f32, f16 or bf16 weights)", c->path,
                           t->name, tr->name);
        if ((rc = lmp_prune_spec_check(spec, t->shape[t->ndim - 1], t->name)))
            return rc;
    }
    if ((rc = lmp_dir_begin(out, force, &tmp)) || (rc = lmp_st_writer_new(&w, tmp, 0, true)))
        goto done;
    int64_t maxel = 0;
    char prefix[LMP_MAX_NAME];
    for (int i = 0; i < c->n_tensors && !rc; i++) {
        const lmp_tensor *t = &c->tensors[i];
        const bool comp = fr->compressed && moe_pruned(t) && t->ndim == 2;
        if (comp) {
            snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
            rc = lmp_sparse_linear_declare(w, f, prefix, t->dtype, t->shape[0], t->shape[1],
                                           t->shape[0] * t->shape[1] -
                                               lmp_prune_matrix_zeros(spec, t->shape[0], t->shape[1]));
        } else {
            rc = lmp_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape);
        }
        if (moe_pruned(t) && t->shape[t->ndim - 1] * t->shape[t->ndim - 2] > maxel)
            maxel = t->shape[t->ndim - 1] * t->shape[t->ndim - 2];
    }
    if (rc || (rc = lmp_st_writer_meta(w, "format", "pt")) || (rc = lmp_st_writer_begin(w)))
        goto done;
    buf = malloc(sizeof(float) * (size_t)(maxel > 0 ? maxel : 1));
    conv = malloc(sizeof(float) * (size_t)(maxel > 0 ? maxel : 1));
    mask = malloc((size_t)(maxel > 0 ? maxel : 1));
    if (!buf || !conv || !mask) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    for (int i = 0; i < c->n_tensors && !rc; i++) {
        const lmp_tensor *t = &c->tensors[i];
        r->write.params += (uint64_t)lmp_tensor_nelem(t);
        r->write.bytes += t->nbytes;
        if (!moe_pruned(t)) {
            rc = lmp_st_writer_write(w, t->data, t->nbytes);
            continue;
        }
        const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
        const int64_t rows = t->shape[t->ndim - 2], cols = t->shape[t->ndim - 1];
        const int64_t nmat = t->ndim == 3 ? t->shape[0] : 1, el = rows * cols;
        const size_t mb = (size_t)el * tr->type_size;
        for (int64_t k = 0; k < nmat && !rc; k++) {
            if (store) {
                if ((rc = store_matrix(store, t, k, rows, cols, buf)))
                    break;
            } else {
                tr->to_f32((const uint8_t *)t->data + (size_t)k * mb, buf, el);
            }
            if (!store && (rc = lmp_prune_linear_norms(buf, rows, cols, NULL, spec, mask))) {
                rc = lmp_err_prefix(rc, "%s (matrix %lld)", t->name, (long long)k);
                break;
            }
            for (int64_t j = 0; j < el; j++)
                r->write.zeros += buf[j] == 0.0f;
            if (fr->compressed && t->ndim == 2) {
                /* the calibrated run hands over weights: their mask is where they are 0 */
                if (store && (rc = lmp_sparse_mask_of(buf, rows, cols, spec, mask, t->name)))
                    break;
                snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(t->name) - strlen(".weight")), t->name);
                lmp_sparse_part part = {.W = buf, .mask = mask, .rows = rows};
                r->write.bytes -= t->nbytes;
                rc = lmp_sparse_linear_write(w, f, prefix, t->dtype, &part, 1, cols, &r->write.bytes);
                r->write.n_tensors += fr->row_offsets ? 3 : 2;
                continue;
            }
            tr->from_f32(buf, conv, el);
            rc = lmp_st_writer_write(w, conv, mb);
        }
        r->write.linear_params += (uint64_t)(nmat * el);
        r->prune.params += (uint64_t)(nmat * el);
    }
    r->prune.zeros = r->write.zeros;
    r->prune.sparsity = r->prune.params ? (double)r->prune.zeros / (double)r->prune.params : 0;
    r->write.n_tensors += c->n_tensors;
    if (rc)
        goto done;
    rc = lmp_st_writer_finish(w);
    w = NULL;
    if (rc || (rc = lmp_fmt_config_json(c->dir, lmp_model_config(m), &cfg)))
        goto done;
    cJSON_DeleteItemFromObjectCaseSensitive(cfg, "quantization_config");
    if (fr->compressed) { /* as lmp_sparse_writer_finish writes it */
        cJSON *qc = cJSON_CreateObject();
        cJSON_AddStringToObject(qc, "quant_method", "compressed-tensors");
        cJSON *sc = lmp_sparse_config_json(fr->name, spec, r->write.params ? (double)r->write.zeros /
                                                                                 (double)r->write.params : 0);
        moe_ignore(c, sc);
        cJSON_AddItemToObject(qc, "sparsity_config", sc);
        cJSON_AddItemToObject(cfg, "quantization_config", qc);
    }
    if ((rc = lmp_fmt_write_json(tmp, "config.json", cfg)) || (rc = lmp_tokenizer_files_write(c, tmp)))
        goto done;
    rc = lmp_dir_commit(tmp, out);
    r->format = fr->name;
done:
    lmp_st_writer_abort(w);
    if (rc && tmp)
        lmp_dir_remove(tmp);
    cJSON_Delete(cfg);
    free(tmp);
    free(buf);
    free(conv);
    free(mask);
    return rc;
}

int lmp_prune_model(const char *model, const char *out, const lmp_prune_model_params *p, lmp_prune_model_result *r)
{
    memset(r, 0, sizeof *r);
    double t0 = lmp_time_s();
    const bool gguf = p->out == LMP_PRUNE_OUT_GGUF;
    const lmp_prune_spec *spec = &p->prune.spec;
    if (!p->force && lmp_path_exists(out))
        return lmp_err(LMP_EEXIST, "%s exists (use --force to replace it)", out);
    if (gguf && !lmp_str_endswith_ci(out, ".gguf"))
        return lmp_err(LMP_EINVAL, "GGUF output: %s must end in .gguf", out);
    if (gguf && spec->qbits && !p->structured)
        return lmp_err(LMP_EINVAL, "joint quantization (--then-quantize) writes GPTQ or compressed-tensors folders, "
                                   "not GGUF");
    if (!p->calib_path && (p->structured || spec->method != LMP_PRUNE_MAGNITUDE))
        return lmp_err(LMP_EINVAL, "%s needs calibration text (--calib FILE)",
                       p->structured ? "structured pruning" : lmp_prune_method_name(spec->method));
    lmp_model *m = NULL;
    lmp_calib_data cal = {0};
    lmp_sparse_writer *sw = NULL;
    lmp_qmodel_writer *qw = NULL;
    char *text = NULL, *dense_dir = NULL, *dense_sub = NULL;
    size_t len = 0;
    int rc;
    if ((rc = lmp_model_load(&m, model)))
        return rc;
    const lmp_config *cfg = lmp_model_config(m);
    if (lmp_model_ckpt(m)->kind == LMP_CKPT_GGUF) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: GGUF input is not supported by prune (llama.cpp names, permuted q/k "
                                       "rows); prune the Hugging Face checkpoint", model);
        goto done;
    }
    const bool moe = lmp_model_is_moe(m);
    if (moe && !p->structured && spec->qbits) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: mixture-of-experts model: joint quantization (--then-quantize) is not "
                     "implemented (SparseGPT's quantized experts would need the GPTQ writer's per-expert tensors "
                     "fed from the pruning pass); prune, then quantize the pruned folder (lmpress quantize "
                     "--method gptq); nothing was written", model);
        goto done;
    }
    /* refuse what can be refused before any forward pass */
    if (p->structured) {
        int k;
        if ((rc = lmp_struct_check(m, p->kind)) || (rc = lmp_struct_count(cfg, p->kind, p->ratio, &k)))
            goto done;
    } else if ((rc = lmp_prune_check(m, spec))) {
        goto done;
    }
    lmp_sparse_format sf = LMP_SPFMT_DENSE;
    if (p->out == LMP_PRUNE_OUT_CT && !p->structured && !spec->qbits)
        sf = spec->m == 4 && spec->n == 2 ? LMP_SPFMT_24 : LMP_SPFMT_BITMASK;
    if (p->structured && p->out == LMP_PRUNE_OUT_CT) {
        rc = lmp_err(LMP_EINVAL, "structured pruning writes a smaller dense model: --format safetensors or gguf");
        goto done;
    }
    if (p->calib_path && !p->calib_offset && !p->calib_bytes) {
        /* several files, JSONL, chats: lmp_calib_load (one plain file: the same windows) */
        if ((rc = lmp_calib_load(m, p->calib_path, &p->calib, &cal)))
            goto done;
        r->calib_text_tokens = cal.n_text_tokens;
    } else if (p->calib_path) {
        if ((rc = lmp_calib_read_text(p->calib_path, 0, &text, &len)))
            goto done;
        if (p->calib_offset >= len) {
            rc = lmp_err(LMP_EINVAL, "%s: calibration offset %zu is past its end (%zu bytes)", p->calib_path,
                         p->calib_offset, len);
            goto done;
        }
        size_t n = len - p->calib_offset;
        if (p->calib_bytes && p->calib_bytes < n)
            n = p->calib_bytes;
        if ((rc = lmp_calib_from_text(m, text + p->calib_offset, n, p->calib_path, &p->calib, &cal)))
            goto done;
        r->calib_text_tokens = cal.n_text_tokens;
    }
    if (gguf) {
        /* the dense folder is OUT.dense.tmp.PID/STEM: lmp_convert names the model
         * (general.name) after the folder, so the GGUF gets the output's stem */
        size_t n = 2 * strlen(out) + 64;
        dense_dir = malloc(n);
        dense_sub = malloc(n);
        if (!dense_dir || !dense_sub) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        snprintf(dense_dir, n, "%s.dense.tmp.%ld", out, (long)getpid());
        lmp_temp_register(dense_dir, true); /* removed on SIGINT/SIGTERM */
        const char *slash = strrchr(out, '/'), *stem = slash ? slash + 1 : out;
        snprintf(dense_sub, n, "%s/%.*s", dense_dir, (int)(strlen(stem) - strlen(".gguf")), stem);
        if (mkdir(dense_dir, 0755) != 0) {
            rc = lmp_err(LMP_EIO, "cannot create the temporary folder %s", dense_dir);
            goto done;
        }
    }
    const char *dst = gguf ? dense_sub : out;
    if (moe && !p->structured && spec->method == LMP_PRUNE_MAGNITUDE) { /* no calibration: matrix by matrix */
        if ((rc = moe_write(m, dst, p->force || gguf, sf, p, r, NULL)))
            goto done;
    } else if (moe && !p->structured) { /* Wanda / SparseGPT: each expert on the tokens routed to it (lib/prune/pexperts.c) */
        moe_store ms = {.m = m};
        lmp_prune_params pp = p->prune;
        pp.sink = store_sink;
        pp.expert_sink = store_experts;
        pp.sink_ctx = &ms;
        rc = lmp_prune_run(m, &cal, &pp, &r->prune);
        lmp_prune_result pr = r->prune;
        r->prune.params = 0; /* counted again as the weights are written */
        if (rc == 0)
            rc = moe_write(m, dst, p->force || gguf, sf, p, r, &ms);
        r->prune.n_expert_linears = pr.n_expert_linears;
        r->prune.n_expert_unreached = pr.n_expert_unreached;
        store_free(&ms);
        if (rc)
            goto done;
    } else if (p->structured) {
        if ((rc = lmp_struct_plan_make(m, &cal, p->kind, p->ratio, &r->plan)))
            goto done;
        if ((rc = lmp_struct_write(m, &r->plan, dst, p->force || gguf, &r->write)))
            goto done;
        r->format = "dense";
    } else {
        lmp_prune_params pp = p->prune;
        qsink_ctx qctx;
        if (spec->qbits) {
            lmp_intq_config qc;
            lmp_intq_config_init(&qc, NULL);
            qc.bits = spec->qbits;
            qc.group_size = spec->qgroup;
            qc.sym = spec->qsym;
            qc.damp_percent = spec->damp;
            lmp_qmodel_write_params wp;
            lmp_qmodel_write_default_params(&wp);
            wp.format = lmp_qformat_for_zeros(p->out == LMP_PRUNE_OUT_CT ? LMP_QFMT_CT_PACKED : p->qformat, qc.sym);
            wp.force = p->force;
            if ((rc = lmp_qmodel_writer_open(&qw, m, out, &qc, &wp)))
                goto done;
            qctx.w = qw;
            pp.sink = qsink;
            pp.sink_ctx = &qctx;
            r->format = lmp_qformat_name(wp.format);
        } else {
            if ((rc = lmp_sparse_writer_open(&sw, m, dst, sf, spec, p->force || gguf)))
                goto done;
            pp.sink = lmp_sparse_writer_layer;
            pp.sink_ctx = sw;
            r->format = lmp_sparse_format_name(sf);
        }
        if ((rc = lmp_prune_run(m, p->calib_path ? &cal : NULL, &pp, &r->prune)))
            goto done;
        if (qw) {
            lmp_qmodel_write_stats ws;
            rc = lmp_qmodel_writer_finish(qw, &ws);
            qw = NULL;
            if (rc)
                goto done;
            r->write.bytes = ws.bytes;
            r->write.params = ws.params;
            r->write.n_tensors = ws.n_tensors;
            r->write.linear_params = ws.qparams;
            r->write.zeros = r->prune.zeros;
            if (p->out == LMP_PRUNE_OUT_CT &&
                (rc = patch_ct_sparsity(out, spec, ws.params ? (double)r->prune.zeros / (double)ws.params : 0)))
                goto done;
        } else {
            rc = lmp_sparse_writer_finish(sw, &r->write);
            sw = NULL;
            if (rc)
                goto done;
        }
    }
    if (gguf) {
        lmp_convert_params cp;
        lmp_convert_result cr;
        lmp_convert_default_params(&cp);
        cp.force = p->force;
        cp.quiet = true;
        rc = lmp_convert(dense_sub, out, &cp, &cr);
        if (rc)
            goto done;
        r->format = "gguf";
    }
    r->out_bytes = lmp_fmt_path_bytes(out);
done:
    lmp_sparse_writer_abort(sw);
    lmp_qmodel_writer_abort(qw);
    free(dense_sub);
    if (dense_dir) {
        lmp_dir_remove(dense_dir);
        lmp_temp_unregister(dense_dir);
        free(dense_dir);
    }
    free(text);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    r->seconds = lmp_time_s() - t0;
    r->peak_rss = lmp_peak_rss();
    return rc;
}
