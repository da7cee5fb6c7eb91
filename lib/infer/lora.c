/*
 * LoRA adapters run unmerged by the engine (lmp_model_add_lora, infer.h): each adapted
 * linear keeps its base weight and adds (X A^T) B^T beside it, with the adapters' ranks
 * stacked into one A and one B and each adapter's scale folded into its columns of B.
 * Both products go through lmp_gemm on f32 weights (f32 activations).
 */
#include "infer_internal.h"

#include <stdlib.h>
#include <string.h>

void lmp_lora_lin_free(lmp_lora_lin *l)
{
    if (!l)
        return;
    free(l->a);
    free(l->b);
    free(l);
}

void lmp_lora_lin_apply(const lmp_lora_lin *l, float *Y, const float *X, int64_t n)
{
    const int64_t rows = l->B.rows;
    float *T = malloc(sizeof(float) * (size_t)(n * l->r + n * rows));
    if (!T) { /* out of memory: row by row with the stack */
        for (int64_t i = 0; i < n; i++) {
            float t[l->r > 0 ? l->r : 1];
            lmp_gemm(t, X + i * l->A.cols, &l->A, NULL, 1);
            for (int64_t o = 0; o < rows; o++) {
                float acc = 0;
                for (int k = 0; k < l->r; k++)
                    acc += t[k] * l->b[o * l->r + k];
                Y[i * rows + o] += acc;
            }
        }
        return;
    }
    float *U = T + n * l->r;
    lmp_gemm(T, X, &l->A, NULL, n);
    lmp_gemm(U, T, &l->B, NULL, n);
    for (int64_t i = 0; i < n * rows; i++)
        Y[i] += U[i];
    free(T);
}

/* Which linear an adapted HF module is: layer and lmp_linear, or -1. */
static int linear_of(const char *module, int *layer)
{
    int used = 0;
    if (sscanf(module, "model.layers.%d.%n", layer, &used) != 1 || used == 0)
        return -1;
    for (int w = 0; w < LMP_LIN_COUNT; w++) {
        const char *nm = lmp_linear_name((lmp_linear)w);
        size_t ln = strlen(module + used), lw = strlen(nm);
        if (ln > lw && strcmp(module + used + ln - lw, nm) == 0 && module[used + ln - lw - 1] == '.')
            return w;
    }
    return -1;
}

int lmp_model_add_lora(lmp_model *m, const lmp_lora *a, double scale)
{
    /* checked against the assembled model, so that packed (GPTQ/AWQ) linears qualify */
    const char *base = m->ckpt.path;
    int rc;
    if (a->n_full)
        return lmp_err(LMP_EUNSUPPORTED,
                       "%s: the adapter saves '%s' whole (modules_to_save); the engine runs adapters on the block "
                       "linears only: merge it first (lmpress merge BASE --lora ADAPTER -o MERGED)",
                       a->weights_path, a->full[0].weight);
    for (int i = 0; i < a->n_targets; i++) {
        const lmp_lora_target *t = &a->targets[i];
        int layer = -1, w = t->embedding ? -1 : linear_of(t->module, &layer);
        if (w < 0 || layer < 0 || layer >= m->cfg.n_layers) {
            if (lmp_ckpt_find_hf(&m->ckpt, t->weight))
                return lmp_err(LMP_EUNSUPPORTED,
                               "%s: the adapter changes '%s'; the engine runs adapters on the block linears only "
                               "(q/k/v/o/gate/up/down): merge it first (lmpress merge BASE --lora ADAPTER -o MERGED)",
                               a->weights_path, t->module);
            return lmp_err(LMP_ENOTFOUND,
                           "%s: the adapter targets module '%s', which %s does not have (%s architecture); is the "
                           "adapter for another model?",
                           a->weights_path, t->module, base, m->cfg.model_type);
        }
        const lmp_wmat *W = &m->layers[layer].w[w];
        if (t->A->shape[1] != W->cols || t->B->shape[0] != W->rows) {
            char s1[64], s2[64];
            return lmp_err(LMP_EFORMAT,
                           "%s: module '%s': lora_A %s and lora_B %s give an update of [%lld, %lld], but %s holds "
                           "it as [%lld, %lld]: the adapter was trained for another model",
                           a->weights_path, t->module, lmp_shape_str(t->A, s1, sizeof s1),
                           lmp_shape_str(t->B, s2, sizeof s2), (long long)t->B->shape[0], (long long)t->A->shape[1],
                           base, (long long)W->rows, (long long)W->cols);
        }
    }
    for (int i = 0; i < a->n_targets; i++) {
        const lmp_lora_target *t = &a->targets[i];
        int layer, w = linear_of(t->module, &layer);
        lmp_layer *L = &m->layers[layer];
        const int64_t rows = L->w[w].rows, cols = L->w[w].cols;
        float *A, *B;
        if ((rc = lmp_lora_target_f32(t, &A, &B)))
            return rc;
        lmp_lora_lin *old = L->lora[w], *nl = calloc(1, sizeof *nl);
        int r0 = old ? old->r : 0, r = r0 + t->r;
        if (nl) {
            nl->a = malloc(sizeof(float) * (size_t)(r * cols));
            nl->b = malloc(sizeof(float) * (size_t)(r * rows));
        }
        if (!nl || !nl->a || !nl->b) {
            lmp_lora_lin_free(nl);
            free(A);
            free(B);
            return lmp_err(LMP_ENOMEM, "out of memory (LoRA factors)");
        }
        nl->r = r;
        if (old)
            memcpy(nl->a, old->a, sizeof(float) * (size_t)(r0 * cols));
        memcpy(nl->a + (int64_t)r0 * cols, A, sizeof(float) * (size_t)(t->r * cols));
        bool perm = m->interleaved && (w == LMP_LIN_Q || w == LMP_LIN_K);
        int heads = w == LMP_LIN_Q ? m->cfg.n_heads : m->cfg.n_kv_heads;
        const float s = (float)(scale * t->scale);
        for (int64_t o = 0; o < rows; o++) {
            int64_t src = perm ? lmp_qk_perm_row(o, heads, rows / heads, true) : o;
            for (int k = 0; k < r0; k++)
                nl->b[o * r + k] = old->b[o * r0 + k];
            for (int k = 0; k < t->r; k++)
                nl->b[o * r + r0 + k] = s * B[src * t->r + k];
        }
        free(A);
        free(B);
        nl->A = (lmp_wmat){.dtype = LMP_DT_F32, .rows = r, .cols = cols, .data = nl->a,
                           .row_bytes = sizeof(float) * (size_t)cols};
        nl->B = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = r, .data = nl->b,
                           .row_bytes = sizeof(float) * (size_t)r};
        L->lora[w] = nl;
        lmp_lora_lin_free(old);
    }
    m->n_lora++;
    return 0;
}
