/*
 * Loading integer-group quantized folders (GPTQ v1/v2, AWQ GEMM, compressed-tensors
 * pack-quantized) into the engine natively: lmp_model_load_ex assembles everything that
 * is stored as in a plain checkpoint (embeddings, norms, biases, lm_head) and calls our
 * hook for each linear whose ".weight" is absent; the hook unpacks that linear from its
 * on-disk packing into the canonical intgroup lmp_qtensor (formats/qmodel.c reader) and
 * hands it to the model (lmp_model_adopt_linear_q), which keeps it packed and runs it with
 * the intgroup kernels. Memory: the packed payload (about bits/8 bytes per weight plus
 * scales), never an f32 copy. Also lmp_model_load_any, the one entry point the tools use.
 * Not here: the packings (fmt_gptq.c, fmt_awq.c, fmt_ct.c via fmt_table.c), the kernels
 * (lib/infer).
 */
#include "qmodel.h"
#include "sparse.h"

#include <string.h>

typedef struct {
    const char *path;
    lmp_qmodel *qm;
    bool tried;
    int n_linears;
} qload_ctx;

static int qload_hook(void *user, lmp_model *m, int layer, lmp_linear which, const char *prefix)
{
    qload_ctx *c = user;
    if (!c->tried) {
        c->tried = true;
        const lmp_ckpt *ck = lmp_model_ckpt(m);
        const char *dir = ck->dir ? ck->dir : c->path;
        int rc = lmp_qmodel_open(&c->qm, dir);
        if (rc == LMP_EFORMAT && strstr(lmp_errmsg(), "quantization_config"))
            return LMP_MODEL_HOOK_PASS; /* not a quantized folder: the weight is just missing */
        if (rc)
            return rc;
    }
    if (!c->qm)
        return LMP_MODEL_HOOK_PASS;
    /* neither "<prefix>.weight" nor the packed tensors: the reader names what is missing */
    lmp_qtensor q;
    const lmp_config *cfg = lmp_model_config(m);
    const bool qkv = cfg->fused_qkv && which <= LMP_LIN_V, gu = cfg->fused_gate_up &&
                                                                (which == LMP_LIN_GATE || which == LMP_LIN_UP);
    if ((qkv || gu) && !lmp_qmodel_has_linear(c->qm, prefix)) {
        /* phi3: rows of the fused qkv_proj / gate_up_proj */
        char fp[LMP_MAX_NAME];
        snprintf(fp, sizeof fp, "model.layers.%d.%s", layer, qkv ? "self_attn.qkv_proj" : "mlp.gate_up_proj");
        const int64_t qd = (int64_t)cfg->n_heads * cfg->head_dim, kvd = (int64_t)cfg->n_kv_heads * cfg->head_dim;
        const int64_t ff = cfg->intermediate_size;
        const int64_t r0 = which == LMP_LIN_Q ? 0 : which == LMP_LIN_K ? qd : which == LMP_LIN_V ? qd + kvd
                           : which == LMP_LIN_GATE ? 0 : ff;
        const int64_t rows = which == LMP_LIN_Q ? qd : qkv ? kvd : ff;
        lmp_qtensor f;
        int rc = lmp_qmodel_linear(c->qm, fp, &f);
        if (rc == 0 && f.rows != (qkv ? qd + 2 * kvd : 2 * ff))
            rc = lmp_err(LMP_EFORMAT, "%s: %s has %lld rows, the config implies %lld", c->path, fp,
                         (long long)f.rows, (long long)(qkv ? qd + 2 * kvd : 2 * ff));
        if (rc == 0)
            rc = lmp_qtensor_intgroup_rows(&f, r0, rows, &q);
        lmp_qtensor_free(&f);
        if (rc == 0) {
            snprintf(q.name, sizeof q.name, "%s", prefix);
            rc = lmp_model_adopt_linear_q(m, layer, which, &q);
            lmp_qtensor_free(&q);
        }
        if (rc == 0)
            c->n_linears++;
        return rc;
    }
    int rc = lmp_qmodel_linear(c->qm, prefix, &q);
    if (rc == 0)
        rc = lmp_model_adopt_linear_q(m, layer, which, &q);
    lmp_qtensor_free(&q); /* zeroed when adopted */
    if (rc == 0)
        c->n_linears++;
    return rc;
}

/* An expert's linear (mixtral, qwen3_moe folders written with each expert's own packed
 * tensors: lmp_qmodel_writer_experts): unpacked into *q for the model to adopt. */
static int qload_expert(void *user, lmp_model *m, int layer, int expert, lmp_linear which, const char *prefix,
                        lmp_qtensor *q)
{
    (void)layer;
    (void)expert;
    (void)which;
    qload_ctx *c = user;
    if (!c->tried) {
        c->tried = true;
        const lmp_ckpt *ck = lmp_model_ckpt(m);
        int rc = lmp_qmodel_open(&c->qm, ck->dir ? ck->dir : c->path);
        if (rc == LMP_EFORMAT && strstr(lmp_errmsg(), "quantization_config"))
            return LMP_MODEL_HOOK_PASS;
        if (rc)
            return rc;
    }
    if (!c->qm)
        return LMP_MODEL_HOOK_PASS;
    int rc = lmp_qmodel_linear(c->qm, prefix, q);
    if (rc == 0)
        c->n_linears++;
    return rc;
}

int lmp_qmodel_load(lmp_model **out, const char *path)
{
    qload_ctx c = {.path = path};
    lmp_model_load_hooks h = {.missing_linear = qload_hook, .missing_expert = qload_expert, .user = &c};
    int rc = lmp_model_load_ex(out, path, &h);
    if (rc == 0 && c.n_linears)
        lmp_debug("%s: %d linears loaded as %s intgroup weights", path, c.n_linears,
                  lmp_qformat_name(lmp_qmodel_format(c.qm)));
    lmp_qmodel_close(c.qm);
    return rc;
}

int lmp_model_load_any(lmp_model **out, const char *path)
{
    *out = NULL;
    if (lmp_sparse_is_compressed(path))
        return lmp_sparse_model_load(out, path);
    return lmp_qmodel_load(out, path);
}
