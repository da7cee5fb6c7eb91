/*
 * LoRA adapters as whole-model jobs (formats.h): lmpress merge (lmp_convert with the
 * adapters bound to its tensor stream), the temporary merged checkpoint behind `--lora`
 * on quantize / prune / distill export, and the llama.cpp LoRA adapter GGUF (facts from
 * llama.cpp's convert_lora_to_gguf.py and llama-adapter.cpp: general.type "adapter",
 * adapter.type "lora", adapter.lora.alpha; per tensor scale alpha / rank with rank =
 * lora_b's columns; "<name>.lora_a" (r, in) and ".lora_b" (out, r) under the base's
 * llama.cpp names; token_embd's lora_a stored transposed (vocab, r)).
 */
#include "formats.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int lmp_loras_open(const char *const *paths, int n, lmp_lora ***out)
{
    *out = NULL;
    lmp_lora **a = calloc((size_t)(n > 0 ? n : 1), sizeof *a);
    if (!a)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        int rc = lmp_lora_open(&a[i], paths[i]);
        if (rc) {
            lmp_loras_close(a, i);
            return rc;
        }
    }
    *out = a;
    return 0;
}

void lmp_loras_close(lmp_lora **a, int n)
{
    if (!a)
        return;
    for (int i = 0; i < n; i++)
        lmp_lora_close(a[i]);
    free(a);
}

int lmp_merge(const char *base, const char *const *adapters, const double *scales, int n, const char *out,
              const lmp_convert_params *p, lmp_convert_result *res)
{
    memset(res, 0, sizeof *res);
    int crc = lmp_convert_check(p);
    if (crc)
        return crc;
    if (n <= 0)
        return lmp_err(LMP_EINVAL, "merge: no adapter (--lora ADAPTER)");
    for (int i = 0; scales && i < n; i++)
        if (!isfinite(scales[i]))
            return lmp_err(LMP_EINVAL, "merge: --scale must be finite");
    lmp_lora **a;
    int rc = lmp_loras_open(adapters, n, &a);
    if (rc)
        return rc;
    lmp_convert_params q = *p;
    q.loras = (const lmp_lora *const *)a;
    q.lora_scales = scales;
    q.n_loras = n;
    rc = lmp_convert(base, out, &q, res);
    lmp_loras_close(a, n);
    if (rc == 0 && res->n_requantized)
        lmp_info("%d quantized tensors re-quantized to their own type after merging", res->n_requantized);
    return rc;
}

static const char *last_component(const char *path, char *buf, size_t n)
{
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t s = len;
    while (s > 0 && path[s - 1] != '/')
        s--;
    snprintf(buf, n, "%.*s", (int)(len - s), path + s);
    return buf;
}

int lmp_merge_temp(const char *base, const char *const *adapters, const double *scales, int n, char **merged,
                   char **tmpdir)
{
    *merged = *tmpdir = NULL;
    const char *td = getenv("TMPDIR");
    char tmpl[4096];
    snprintf(tmpl, sizeof tmpl, "%s/lmpress-lora.XXXXXX", td && *td ? td : "/tmp");
    if (!mkdtemp(tmpl))
        return lmp_err(LMP_EIO, "%s: cannot create a temporary folder for the merged model", tmpl);
    char name[1024];
    last_component(base, name, sizeof name);
    bool gguf = lmp_str_endswith(base, ".gguf");
    if (!gguf && lmp_str_endswith(name, ".safetensors"))
        snprintf(name, sizeof name, "merged");
    char *out = lmp_path_join(tmpl, name);
    char *dir = strdup(tmpl);
    if (!out || !dir) {
        free(out);
        free(dir);
        rmdir(tmpl);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    lmp_convert_params p;
    lmp_convert_default_params(&p);
    p.quiet = true;
    lmp_convert_result res;
    int rc = lmp_merge(base, adapters, scales, n, out, &p, &res);
    if (rc) {
        free(out);
        lmp_merge_temp_remove(dir);
        return rc;
    }
    lmp_info("merged %d adapter(s) into %s (%d tensors changed), temporary copy %s", n, base, res.n_merged, out);
    *merged = out;
    *tmpdir = dir;
    return 0;
}

void lmp_merge_temp_remove(char *tmpdir)
{
    if (!tmpdir)
        return;
    lmp_dir_remove(tmpdir);
    free(tmpdir);
}

/* ---------------------------------------------------------------- adapter GGUF */

typedef struct {
    const lmp_lora_target *t;
    char name[LMP_MAX_NAME]; /* llama.cpp tensor name of the base weight */
    int perm_heads;          /* > 0: B's rows to ggml's Q/K order */
    double fold;             /* factor folded into B */
} ad_item;

/* Writes A (or A^T for embeddings) and B (rows permuted, times fold) as `dt` rows. */
static int write_factor(lmp_gguf_writer *w, const ad_item *it, bool b, lmp_dtype dt)
{
    const lmp_tensor *t = b ? it->t->B : it->t->A;
    float *f;
    int rc = lmp_tensor_to_f32(t, &f);
    if (rc)
        return rc;
    int64_t rows = t->shape[0], cols = t->shape[1];
    bool transpose = !b && it->t->embedding;
    int64_t orows = transpose ? cols : rows, ocols = transpose ? rows : cols;
    float *row = malloc(sizeof(float) * (size_t)ocols);
    void *dst = malloc(lmp_dtype_row_bytes(dt, ocols));
    if (!row || !dst)
        rc = lmp_err(LMP_ENOMEM, "out of memory");
    for (int64_t r = 0; r < orows && !rc; r++) {
        if (transpose) {
            for (int64_t j = 0; j < ocols; j++)
                row[j] = f[j * cols + r];
        } else {
            int64_t src = r;
            if (b && it->perm_heads > 0)
                src = lmp_qk_perm_row(r, it->perm_heads, rows / it->perm_heads, true);
            for (int64_t j = 0; j < ocols; j++)
                row[j] = b ? (float)(f[src * cols + j] * it->fold) : f[src * cols + j];
        }
        if ((rc = lmp_convert_row(LMP_DT_F32, row, dt, dst, ocols)) == 0)
            rc = lmp_gguf_writer_write(w, dst, lmp_dtype_row_bytes(dt, ocols));
    }
    free(row);
    free(dst);
    free(f);
    return rc;
}

int lmp_lora_to_gguf(const char *adapter, const char *base, const char *out, bool force, int dtype,
                     lmp_convert_result *res)
{
    memset(res, 0, sizeof *res);
    double t0 = lmp_time_s();
    lmp_dtype dt = dtype < 0 ? LMP_DT_F32 : (lmp_dtype)dtype;
    if (dt != LMP_DT_F32 && dt != LMP_DT_F16 && dt != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "convert: an adapter GGUF holds f32, f16 or bf16 factors");
    if (!base)
        return lmp_err(LMP_EINVAL, "convert: an adapter needs --base BASE (the model it was trained on) for its "
                                   "architecture and llama.cpp tensor names");
    lmp_ckpt c;
    lmp_lora *a = NULL;
    ad_item *items = NULL;
    lmp_gguf_writer *w = NULL;
    int rc = lmp_ckpt_open(&c, base);
    if (rc)
        return rc;
    if ((rc = lmp_lora_open(&a, adapter)) || (rc = lmp_lora_check(a, &c)))
        goto done;
    if (a->n_full) {
        rc = lmp_err(LMP_EUNSUPPORTED,
                     "%s: the adapter saves '%s' whole (modules_to_save), which a llama.cpp LoRA GGUF cannot hold; "
                     "merge it instead (lmpress merge BASE --lora ADAPTER -o OUT)",
                     a->weights_path, a->full[0].weight);
        goto done;
    }
    items = calloc((size_t)a->n_targets, sizeof *items);
    if (!items) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    /* llama.cpp scales each pair by alpha / rank: alpha from the first module, and any
     * module whose own scale differs (rsLoRA, rank/alpha patterns) has it folded into B */
    double alpha = a->targets[0].scale * a->targets[0].r;
    bool permute = strcmp(c.config.arch, "llama") == 0;
    for (int i = 0; i < a->n_targets; i++) {
        ad_item *it = &items[i];
        it->t = &a->targets[i];
        if (lmp_name_hf_to_gguf(it->t->weight, it->name, sizeof it->name)) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: module '%s' has no llama.cpp name", a->weights_path, it->t->module);
            goto done;
        }
        if (strcmp(it->name, "output.weight") == 0 && !lmp_ckpt_find_hf(&c, "lm_head.weight")) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: lm_head is tied to the embeddings in %s", a->weights_path, base);
            goto done;
        }
        it->fold = it->t->scale * it->t->r / alpha;
        if (permute && (strstr(it->t->module, "self_attn.q_proj") || strstr(it->t->module, "self_attn.k_proj")))
            it->perm_heads = strstr(it->t->module, "q_proj") ? c.config.n_heads : c.config.n_kv_heads;
    }
    if ((rc = lmp_gguf_writer_new(&w, out, force)))
        goto done;
    rc = lmp_gguf_set_str(w, "general.architecture", c.config.arch);
    if (!rc)
        rc = lmp_gguf_set_str(w, "general.type", "adapter");
    if (!rc)
        rc = lmp_gguf_set_str(w, "adapter.type", "lora");
    if (!rc)
        rc = lmp_gguf_set_f32(w, "adapter.lora.alpha", (float)alpha);
    for (int i = 0; i < a->n_targets && !rc; i++) {
        const ad_item *it = &items[i];
        char nm[LMP_MAX_NAME + 8];
        int64_t sa[2] = {it->t->A->shape[0], it->t->A->shape[1]};
        if (it->t->embedding) {
            sa[0] = it->t->A->shape[1];
            sa[1] = it->t->A->shape[0];
        }
        snprintf(nm, sizeof nm, "%s.lora_a", it->name);
        rc = lmp_gguf_writer_add_tensor(w, nm, dt, 2, sa);
        snprintf(nm, sizeof nm, "%s.lora_b", it->name);
        if (!rc)
            rc = lmp_gguf_writer_add_tensor(w, nm, dt, 2, it->t->B->shape);
    }
    if (rc || (rc = lmp_gguf_writer_begin(w)))
        goto done;
    for (int i = 0; i < a->n_targets && !rc; i++) {
        rc = write_factor(w, &items[i], false, dt);
        if (!rc)
            rc = write_factor(w, &items[i], true, dt);
        res->params += (uint64_t)(lmp_tensor_nelem(items[i].t->A) + lmp_tensor_nelem(items[i].t->B));
        res->bytes_in += items[i].t->A->nbytes + items[i].t->B->nbytes;
    }
    if (rc)
        goto done;
    rc = lmp_gguf_writer_finish(w);
    w = NULL;
    res->n_tensors = 2 * a->n_targets;
    res->to_gguf = true;
done:
    lmp_gguf_writer_abort(w);
    free(items);
    lmp_lora_close(a);
    lmp_ckpt_close(&c);
    res->seconds = lmp_time_s() - t0;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
