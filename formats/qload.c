/*
 * Loading integer-group quantized folders (GPTQ v1/v2, AWQ GEMM, compressed-tensors
 * pack-quantized) into the engine natively: lmp_model_load_ex assembles everything that
 * is stored as in a plain checkpoint (embeddings, norms, biases, lm_head) and calls our
 * hook for each linear whose ".weight" is absent; the hook unpacks that linear from its
 * on-disk packing into the canonical intgroup lmp_qtensor (formats/qmodel.c reader) and
 * hands it to the model (lmp_model_adopt_linear_q), which keeps it packed and runs it with
 * the intgroup kernels. Memory: the packed payload (about bits/8 bytes per weight plus
 * scales), never an f32 copy. Also lmp_model_load_any, the one entry point the tools use.
 * Not here: the packings (gptq.c, awq.c, ctensors.c), the kernels (lib/infer).
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
    int rc = lmp_qmodel_linear(c->qm, prefix, &q);
    if (rc == 0)
        rc = lmp_model_adopt_linear_q(m, layer, which, &q);
    lmp_qtensor_free(&q); /* zeroed when adopted */
    if (rc == 0)
        c->n_linears++;
    return rc;
}

int lmp_qmodel_load(lmp_model **out, const char *path)
{
    qload_ctx c = {.path = path};
    lmp_model_load_hooks h = {.missing_linear = qload_hook, .user = &c};
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
