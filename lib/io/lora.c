/*
 * PEFT LoRA adapter reader (see lora.h). Facts from PEFT's LoRA tuner and its
 * save/load code: tensors are saved as "base_model.model.<module>.lora_A.weight" (r, in)
 * and ".lora_B.weight" (out, r); embeddings as "<module>.lora_embedding_A" (r, vocab) and
 * "lora_embedding_B" (dim, r), with the update (B A)^T; modules_to_save as
 * "<module>.modules_to_save[.<adapter>].<param>"; DoRA adds "lora_magnitude_vector".
 * The scale is lora_alpha / r (use_rslora: lora_alpha / sqrt(r)), with r and alpha
 * overridden per module by rank_pattern / alpha_pattern, whose keys are regexes matched
 * against the module name as "(.*\.)?(KEY)$" from its start. fan_in_fan_out only applies
 * to Conv1D bases (GPT-2); PEFT resets it to false on Linear layers, as we do.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "lora.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#define PREFIX "base_model.model."

void lmp_lora_close(lmp_lora *a)
{
    if (!a)
        return;
    lmp_st_close(&a->st);
    free(a->targets);
    free(a->full);
    free(a->path);
    free(a->config_path);
    free(a->weights_path);
    free(a);
}

/* PEFT's get_pattern_key: the first key (insertion order) whose regex matches the module
 * name or a dot-separated suffix of it. Returns the matching item or NULL. */
static const cJSON *pattern_match(const cJSON *patterns, const char *module, const char *cfg_path, int *rc)
{
    *rc = 0;
    if (!cJSON_IsObject(patterns))
        return NULL;
    for (const cJSON *it = patterns->child; it; it = it->next) {
        char pat[LMP_MAX_NAME + 32];
        snprintf(pat, sizeof pat, "(.*\\.)?(%s)$", it->string);
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &err, &off, NULL);
        if (!re) {
            *rc = lmp_err(LMP_EFORMAT, "%s: rank/alpha pattern '%s' is not a valid regular expression", cfg_path,
                          it->string);
            return NULL;
        }
        pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
        int m = md ? pcre2_match(re, (PCRE2_SPTR)module, strlen(module), 0, 0, md, NULL) : -1;
        pcre2_match_data_free(md);
        pcre2_code_free(re);
        if (m >= 0)
            return it;
    }
    return NULL;
}

static lmp_lora_target *target_for(lmp_lora *a, const char *module, bool embedding)
{
    for (int i = 0; i < a->n_targets; i++)
        if (strcmp(a->targets[i].module, module) == 0)
            return &a->targets[i];
    lmp_lora_target *t = &a->targets[a->n_targets++];
    memset(t, 0, sizeof *t);
    snprintf(t->module, sizeof t->module, "%s", module);
    snprintf(t->weight, sizeof t->weight, "%.240s.weight", module);
    t->embedding = embedding;
    return t;
}

/* Splits a PEFT tensor name. Returns 1 for lora A/B (module, is_b, embedding), 2 for a
 * full tensor (weight = base tensor name), 3 for a DoRA magnitude, 0 when unknown. */
static int classify(const char *name, char *module, size_t n, bool *is_b, bool *embedding)
{
    static const struct {
        const char *suffix;
        bool b, emb;
    } kinds[] = {{".lora_A.weight", false, false},
                 {".lora_B.weight", true, false},
                 {".lora_embedding_A", false, true},
                 {".lora_embedding_B", true, true}};
    if (strncmp(name, PREFIX, strlen(PREFIX)) != 0)
        return 0;
    const char *rest = name + strlen(PREFIX);
    size_t len = strlen(rest);
    if (strstr(rest, "lora_magnitude_vector"))
        return 3;
    for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
        size_t sl = strlen(kinds[k].suffix);
        if (len > sl && strcmp(rest + len - sl, kinds[k].suffix) == 0) {
            snprintf(module, n, "%.*s", (int)(len - sl), rest);
            *is_b = kinds[k].b;
            *embedding = kinds[k].emb;
            return 1;
        }
    }
    if (strstr(rest, "lora_"))
        return 0;
    /* "<module>.modules_to_save[.<adapter>].<param>" or a saved base tensor */
    const char *mts = strstr(rest, ".modules_to_save.");
    if (mts) {
        const char *param = strrchr(rest, '.');
        snprintf(module, n, "%.*s%s", (int)(mts - rest), rest, param);
        return 2;
    }
    snprintf(module, n, "%s", rest);
    return 2;
}

static int read_config(lmp_lora *a, cJSON **out)
{
    char *txt = NULL;
    int rc = lmp_read_file(a->config_path, &txt, NULL);
    if (rc)
        return rc;
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!cJSON_IsObject(j)) {
        cJSON_Delete(j);
        return lmp_err(LMP_EFORMAT, "%s: not a JSON object", a->config_path);
    }
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(j, "peft_type");
    if (cJSON_IsString(pt) && strcmp(pt->valuestring, "LORA") != 0) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: peft_type is %s; only LORA adapters are supported", a->config_path,
                     pt->valuestring);
        goto fail;
    }
    const cJSON *dora = cJSON_GetObjectItemCaseSensitive(j, "use_dora");
    if (cJSON_IsTrue(dora)) {
        rc = lmp_err(LMP_EUNSUPPORTED,
                     "%s: DoRA adapters (use_dora: true) are not supported: their update is rescaled by a "
                     "per-column magnitude; merge it with PEFT (merge_and_unload) and give lmpress the merged model",
                     a->config_path);
        goto fail;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(j, "lora_alpha");
    if (!cJSON_IsNumber(r) || r->valuedouble < 1 || r->valuedouble != floor(r->valuedouble)) {
        rc = lmp_err(LMP_EFORMAT, "%s: 'r' must be a positive integer", a->config_path);
        goto fail;
    }
    a->r = (int)r->valuedouble;
    a->alpha = cJSON_IsNumber(al) ? al->valuedouble : 8.0; /* PEFT's default lora_alpha */
    if (!isfinite(a->alpha) || a->alpha == 0) {
        rc = lmp_err(LMP_EFORMAT,
                     "%s: lora_alpha is %g: the update alpha/r * B A would be %s; fix lora_alpha (PEFT's "
                     "default is 8)",
                     a->config_path, a->alpha, a->alpha == 0 ? "zero" : "undefined");
        goto fail;
    }
    a->rslora = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "use_rslora"));
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "fan_in_fan_out")))
        lmp_warn("%s: fan_in_fan_out is true, but the base's layers are Linear (out, in): ignored, as PEFT does",
                 a->config_path);
    *out = j;
    return 0;
fail:
    cJSON_Delete(j);
    return rc;
}

int lmp_lora_open(lmp_lora **out, const char *path)
{
    *out = NULL;
    lmp_lora *a = calloc(1, sizeof *a);
    cJSON *cfg = NULL;
    int rc = 0;
    if (!a)
        return lmp_err(LMP_ENOMEM, "out of memory");
    a->path = strdup(path);
    if (!lmp_path_exists(path)) {
        lmp_lora_close(a);
        return lmp_err(LMP_ENOTFOUND, "%s: no such adapter (a PEFT folder with adapter_config.json and "
                                      "adapter_model.safetensors)", path);
    }
    if (lmp_path_is_dir(path)) {
        a->config_path = lmp_path_join(path, "adapter_config.json");
        a->weights_path = lmp_path_join(path, "adapter_model.safetensors");
    } else {
        a->weights_path = strdup(path);
        const char *slash = strrchr(path, '/');
        char *dir = slash ? strndup(path, (size_t)(slash - path)) : strdup(".");
        a->config_path = dir ? lmp_path_join(dir, "adapter_config.json") : NULL;
        free(dir);
    }
    if (!a->path || !a->config_path || !a->weights_path) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if (!lmp_path_exists(a->config_path)) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: no adapter_config.json (%s): not a PEFT adapter", path, a->config_path);
        goto done;
    }
    if (!lmp_path_exists(a->weights_path)) {
        char *bin = lmp_path_is_dir(path) ? lmp_path_join(path, "adapter_model.bin") : NULL;
        bool has_bin = bin && lmp_path_exists(bin);
        free(bin);
        rc = lmp_err(LMP_ENOTFOUND, "%s: no adapter_model.safetensors%s", path,
                     has_bin ? " (adapter_model.bin is a pickle: re-save with safe_serialization=True)" : "");
        goto done;
    }
    if ((rc = read_config(a, &cfg)))
        goto done;
    if ((rc = lmp_st_open(&a->st, a->weights_path)))
        goto done;
    a->targets = calloc((size_t)a->st.n_tensors + 1, sizeof *a->targets);
    a->full = calloc((size_t)a->st.n_tensors + 1, sizeof *a->full);
    if (!a->targets || !a->full) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    const cJSON *rank_pat = cJSON_GetObjectItemCaseSensitive(cfg, "rank_pattern");
    const cJSON *alpha_pat = cJSON_GetObjectItemCaseSensitive(cfg, "alpha_pattern");
    for (int i = 0; i < a->st.n_tensors; i++) {
        const lmp_tensor *t = &a->st.tensors[i];
        char module[LMP_MAX_NAME];
        bool is_b = false, emb = false;
        int kind = classify(t->name, module, sizeof module, &is_b, &emb);
        if (kind == 3) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: '%s' is a DoRA magnitude vector: DoRA adapters are not supported",
                         a->weights_path, t->name);
            goto done;
        }
        if (kind == 0) {
            rc = lmp_err(LMP_EFORMAT, "%s: tensor '%s' is not in PEFT's LoRA layout (base_model.model.<module>."
                                      "lora_A.weight / lora_B.weight)",
                         a->weights_path, t->name);
            goto done;
        }
        if (!lmp_dtype_info(t->dtype)->is_float || !lmp_dtype_info(t->dtype)->to_f32) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' has dtype %s (need f32, f16 or bf16)", a->weights_path,
                         t->name, lmp_dtype_info(t->dtype)->name);
            goto done;
        }
        if (kind == 2) {
            snprintf(a->full[a->n_full].weight, sizeof a->full[0].weight, "%s", module);
            a->full[a->n_full++].t = t;
            continue;
        }
        if (t->ndim != 2) {
            rc = lmp_err(LMP_EFORMAT, "%s: '%s' has %d dimensions, a LoRA factor has 2", a->weights_path, t->name,
                         t->ndim);
            goto done;
        }
        lmp_lora_target *tg = target_for(a, module, emb);
        if (tg->embedding != emb) {
            rc = lmp_err(LMP_EFORMAT, "%s: module '%s' mixes lora_A/B and lora_embedding_A/B", a->weights_path,
                         module);
            goto done;
        }
        if (is_b)
            tg->B = t;
        else
            tg->A = t;
    }
    for (int i = 0; i < a->n_targets; i++) {
        lmp_lora_target *t = &a->targets[i];
        if (!t->A || !t->B) {
            rc = lmp_err(LMP_EFORMAT, "%s: module '%s' has lora_%s but no lora_%s", a->weights_path, t->module,
                         t->A ? "A" : "B", t->A ? "B" : "A");
            goto done;
        }
        const cJSON *rp = pattern_match(rank_pat, t->module, a->config_path, &rc);
        if (rc)
            goto done;
        const cJSON *ap = pattern_match(alpha_pat, t->module, a->config_path, &rc);
        if (rc)
            goto done;
        t->r = rp && cJSON_IsNumber(rp) ? (int)rp->valuedouble : a->r;
        t->alpha = ap && cJSON_IsNumber(ap) ? ap->valuedouble : a->alpha;
        if (t->r < 1 || t->alpha == 0 || !isfinite(t->alpha)) {
            rc = lmp_err(LMP_EFORMAT, "%s: module '%s': rank %d, alpha %g from rank_pattern/alpha_pattern",
                         a->config_path, t->module, t->r, t->alpha);
            goto done;
        }
        /* linear: A (r, in), B (out, r); embedding: A (r, vocab), B (dim, r) */
        if (t->A->shape[0] != t->r || t->B->shape[1] != t->r) {
            rc = lmp_err(LMP_EFORMAT,
                         "%s: module '%s': rank %d in %s, but lora_A has %lld rows and lora_B %lld columns",
                         a->weights_path, t->module, t->r, a->config_path, (long long)t->A->shape[0],
                         (long long)t->B->shape[1]);
            goto done;
        }
        t->scale = a->rslora ? t->alpha / sqrt((double)t->r) : t->alpha / t->r;
    }
    if (a->n_targets == 0 && a->n_full == 0) {
        rc = lmp_err(LMP_EFORMAT, "%s: no LoRA tensors", a->weights_path);
        goto done;
    }
done:
    cJSON_Delete(cfg);
    if (rc) {
        lmp_lora_close(a);
        return rc;
    }
    *out = a;
    return 0;
}

const lmp_lora_target *lmp_lora_find(const lmp_lora *a, const char *hf_weight)
{
    for (int i = 0; i < a->n_targets; i++)
        if (strcmp(a->targets[i].weight, hf_weight) == 0)
            return &a->targets[i];
    return NULL;
}

const lmp_lora_full *lmp_lora_find_full(const lmp_lora *a, const char *hf_weight)
{
    for (int i = 0; i < a->n_full; i++)
        if (strcmp(a->full[i].weight, hf_weight) == 0)
            return &a->full[i];
    return NULL;
}

int lmp_lora_check(const lmp_lora *a, const lmp_ckpt *base)
{
    char s1[64], s2[64], s3[64];
    for (int i = 0; i < a->n_targets; i++) {
        const lmp_lora_target *t = &a->targets[i];
        const lmp_tensor *w = lmp_ckpt_find_hf(base, t->weight);
        if (!w && strcmp(t->weight, "lm_head.weight") == 0 && lmp_ckpt_find_hf(base, "model.embed_tokens.weight"))
            return lmp_err(LMP_EUNSUPPORTED,
                           "%s: the adapter changes lm_head, but %s ties lm_head to the embeddings (no lm_head "
                           "tensor): not supported",
                           a->weights_path, base->path);
        if (!w) {
            bool quant = lmp_ckpt_find_hf(base, "model.embed_tokens.weight") &&
                         base->kind != LMP_CKPT_GGUF && (lmp_st_find(&base->st, "model.layers.0.self_attn.q_proj.qweight") ||
                                                          lmp_st_find(&base->st, "model.layers.0.self_attn.q_proj.weight_packed"));
            if (quant)
                return lmp_err(LMP_EUNSUPPORTED,
                               "%s: %s is an integer-group quantized folder (GPTQ/AWQ/compressed-tensors): an adapter "
                               "cannot be merged into it without calibration data. Merge into the full-precision base "
                               "(lmpress merge FP_BASE --lora ADAPTER -o MERGED), then quantize MERGED; or run it "
                               "unmerged (lmpress ppl/run BASE --lora ADAPTER)",
                               a->weights_path, base->path);
            return lmp_err(LMP_ENOTFOUND,
                           "%s: the adapter targets module '%s', which %s does not have (%s architecture); is the "
                           "adapter for another model?",
                           a->weights_path, t->module, base->path, base->config.model_type[0] ? base->config.model_type : "unknown");
        }
        if (w->ndim != 2)
            return lmp_err(LMP_EFORMAT, "%s: '%s' of %s has %d dimensions, a LoRA target needs 2", a->weights_path,
                           t->weight, base->path, w->ndim);
        int64_t rows = w->shape[0], cols = w->shape[1];
        int64_t want_rows = t->embedding ? t->A->shape[1] : t->B->shape[0];
        int64_t want_cols = t->embedding ? t->B->shape[0] : t->A->shape[1];
        if (rows != want_rows || cols != want_cols)
            return lmp_err(LMP_EFORMAT,
                           "%s: module '%s': lora_A %s and lora_B %s give an update of [%lld, %lld], but %s holds "
                           "'%s' as %s: the adapter was trained for another model",
                           a->weights_path, t->module, lmp_shape_str(t->A, s1, sizeof s1),
                           lmp_shape_str(t->B, s2, sizeof s2), (long long)want_rows, (long long)want_cols,
                           base->path, t->weight, lmp_shape_str(w, s3, sizeof s3));
    }
    for (int i = 0; i < a->n_full; i++) {
        const lmp_lora_full *f = &a->full[i];
        const lmp_tensor *w = lmp_ckpt_find_hf(base, f->weight);
        if (!w)
            return lmp_err(LMP_ENOTFOUND, "%s: the adapter saves '%s' whole, which %s does not have",
                           a->weights_path, f->weight, base->path);
        bool same = w->ndim == f->t->ndim;
        for (int d = 0; same && d < w->ndim; d++)
            same = w->shape[d] == f->t->shape[d];
        if (!same)
            return lmp_err(LMP_EFORMAT,
                           "%s: saved module '%s' is %s but %s holds it as %s (a resized vocabulary is not "
                           "supported)",
                           a->weights_path, f->weight, lmp_shape_str(f->t, s1, sizeof s1), base->path,
                           lmp_shape_str(w, s2, sizeof s2));
    }
    return 0;
}

int lmp_lora_target_f32(const lmp_lora_target *t, float **A, float **B)
{
    *A = *B = NULL;
    int rc = lmp_tensor_to_f32(t->A, A);
    if (rc == 0 && (rc = lmp_tensor_to_f32(t->B, B))) {
        free(*A);
        *A = NULL;
    }
    return rc;
}

void lmp_lora_add_rows(const lmp_lora_target *t, const float *A, const float *B, double mult, int64_t r0,
                       int64_t nr, float *dst, double *acc)
{
    const int r = t->r;
    const double s = mult * t->scale;
    if (!t->embedding) { /* dW[i][j] = s * sum_k B[i][k] A[k][j]; A (r, cols) */
        const int64_t cols = t->A->shape[1];
        double *own = acc ? NULL : malloc(sizeof(double) * (size_t)cols);
        if (!acc)
            acc = own;
        for (int64_t i = 0; i < nr; i++) {
            const float *b = B + (r0 + i) * r;
            float *d = dst + i * cols;
            if (!acc) { /* out of memory: the same sums in float */
                for (int64_t j = 0; j < cols; j++) {
                    float v = 0;
                    for (int k = 0; k < r; k++)
                        v += b[k] * A[(int64_t)k * cols + j];
                    d[j] += (float)(s * v);
                }
                continue;
            }
            for (int64_t j = 0; j < cols; j++)
                acc[j] = 0;
            for (int k = 0; k < r; k++) {
                const float *ak = A + (int64_t)k * cols;
                const double bk = b[k];
                for (int64_t j = 0; j < cols; j++)
                    acc[j] += bk * ak[j];
            }
            for (int64_t j = 0; j < cols; j++)
                d[j] += (float)(s * acc[j]);
        }
        free(own);
    } else { /* dE[v][j] = s * sum_k B[j][k] A[k][v]; A (r, vocab), B (dim, r) */
        const int64_t vocab = t->A->shape[1], dim = t->B->shape[0];
        for (int64_t i = 0; i < nr; i++) {
            const int64_t v = r0 + i;
            float *d = dst + i * dim;
            for (int64_t j = 0; j < dim; j++) {
                double acc = 0;
                for (int k = 0; k < r; k++)
                    acc += (double)B[j * r + k] * A[(int64_t)k * vocab + v];
                d[j] += (float)(s * acc);
            }
        }
    }
}
