/*
 * Checkpoint conversion: HF safetensors <-> GGUF and dtype changes (f32/f16/bf16),
 * streamed tensor by tensor through a bounded buffer. GGUF output follows what llama.cpp's
 * loader expects (facts from convert_hf_to_gguf.py and llama-model.cpp): llama.cpp tensor
 * names, 1-D tensors kept in f32, Q/K rows of the llama architecture permuted to ggml's
 * interleaved RoPE order, the <arch>.* hyper-parameter keys, rope_freqs for Llama 3
 * scaling, and the full tokenizer.ggml.* vocabulary (padded to the embedding rows).
 */
#include "formats.h"
#include "lib/infer/tokenizer.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void lmp_convert_default_params(lmp_convert_params *p)
{
    memset(p, 0, sizeof *p);
    p->dtype = -1;
    p->shard_bytes = 0;
}

int lmp_gguf_file_type(lmp_dtype dt)
{
    switch (dt) {
    case LMP_DT_F32: return 0;
    case LMP_DT_F16: return 1;
    case LMP_DT_Q4_0: return 2;
    case LMP_DT_Q4_1: return 3;
    case LMP_DT_Q8_0: return 7;
    case LMP_DT_Q5_0: return 8;
    case LMP_DT_Q5_1: return 9;
    case LMP_DT_Q2_K: return 10;
    case LMP_DT_Q3_K: return 12;
    case LMP_DT_Q4_K: return 15;
    case LMP_DT_Q5_K: return 17;
    case LMP_DT_Q6_K: return 18;
    case LMP_DT_BF16: return 32;
    default: return 0;
    }
}

/* One tensor of the plan: where it comes from and how it is written. */
typedef struct {
    const lmp_tensor *src;
    char out_name[LMP_MAX_NAME];
    lmp_dtype out_dtype;
    int perm_heads; /* > 0: permute rows (Q/K) with this many heads */
    int perm_dir;   /* 1: HF -> ggml order, -1: ggml -> HF order */
    const float *synthetic; /* rope_freqs: values computed here */
    float add;      /* added to every value (gemma norms: HF w <-> GGUF 1 + w) */
    struct lora_bind *lora;  /* LoRA updates merged into this tensor, or NULL */
} conv_item;

/* The LoRA updates of one tensor (lmpress merge): adapters' targets with their factors in
 * f32 (loaded just before the tensor streams, freed after it). */
#define MAX_LORAS 16
typedef struct lora_bind {
    int n;
    const lmp_lora_target *t[MAX_LORAS];
    double mult[MAX_LORAS];
    float *A[MAX_LORAS], *B[MAX_LORAS];
    double *acc;    /* cols doubles */
    float *row;     /* cols floats: a row's update */
    int gg_heads;   /* > 0: the source rows are in ggml's Q/K order (HF row = perm) */
} lora_bind;

static bool is_matrix(const lmp_tensor *t) { return t->ndim >= 2; }

/* Converts rows [r0, r0+nr) of `it` into dst (out dtype), through f32 when the types
 * differ, using the f32 row `tmp` (maxcols floats). Counts values that overflow f16.
 * Single-threaded on purpose: conversion is bound by page faults and memory bandwidth, and
 * a second thread measured slower (2.2 GB bf16 -> f16: 2.3 s on one thread, 4.2-5.7 s on
 * two, docs/benchmarks.md). */
static int convert_rows(const conv_item *it, int64_t r0, int64_t nr, void *dst, float *tmp, uint64_t *overflow)
{
    const lmp_tensor *t = it->src;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    size_t in_row = lmp_dtype_row_bytes(t->dtype, cols), out_row = lmp_dtype_row_bytes(it->out_dtype, cols);
    const lmp_dtype_traits *ti = lmp_dtype_info(t->dtype), *to = lmp_dtype_info(it->out_dtype);
    bool same = t->dtype == it->out_dtype && !it->lora && it->add == 0;
    if (!same && (!ti->to_f32 || !to->from_f32))
        return lmp_err(LMP_EUNSUPPORTED, "%s: cannot convert %s to %s", t->name, ti->name, to->name);
    bool check16 = it->out_dtype == LMP_DT_F16;
    uint64_t over = 0;
    for (int64_t r = 0; r < nr; r++) {
        int64_t src_row = r0 + r;
        if (it->perm_heads > 0)
            src_row = lmp_qk_perm_row(r0 + r, it->perm_heads, t->shape[0] / it->perm_heads, it->perm_dir > 0);
        const uint8_t *s = (const uint8_t *)t->data + (size_t)src_row * in_row;
        uint8_t *d = (uint8_t *)dst + (size_t)r * out_row;
        if (same) {
            memcpy(d, s, in_row);
            continue;
        }
        float *x = tmp;
        ti->to_f32(s, x, cols);
        if (it->add != 0)
            for (int64_t j = 0; j < cols; j++)
                x[j] += it->add;
        if (it->lora) {
            const lora_bind *lb = it->lora;
            /* the update's rows are in HF order: the source row's HF index */
            int64_t hf_row = it->perm_heads > 0 && it->perm_dir < 0 ? r0 + r
                             : lb->gg_heads > 0 ? lmp_qk_perm_row(src_row, lb->gg_heads, t->shape[0] / lb->gg_heads, true)
                                                : src_row;
            for (int64_t j = 0; j < cols; j++)
                lb->row[j] = 0;
            for (int k = 0; k < lb->n; k++)
                lmp_lora_add_rows(lb->t[k], lb->A[k], lb->B[k], lb->mult[k], hf_row, 1, lb->row, lb->acc);
            for (int64_t j = 0; j < cols; j++)
                x[j] += lb->row[j];
        }
        if (check16)
            for (int64_t j = 0; j < cols; j++)
                over += isfinite(x[j]) && fabsf(x[j]) >= 65520.0f;
        to->from_f32(x, d, cols);
    }
    *overflow += over;
    return LMP_OK;
}

static void lora_unload(lora_bind *lb)
{
    for (int k = 0; k < lb->n; k++) {
        free(lb->A[k]);
        free(lb->B[k]);
        lb->A[k] = lb->B[k] = NULL;
    }
    free(lb->acc);
    free(lb->row);
    lb->acc = NULL;
    lb->row = NULL;
}

static int lora_load(lora_bind *lb, int64_t cols)
{
    int rc = 0;
    for (int k = 0; k < lb->n && !rc; k++)
        rc = lmp_lora_target_f32(lb->t[k], &lb->A[k], &lb->B[k]);
    lb->acc = malloc(sizeof(double) * (size_t)cols);
    lb->row = malloc(sizeof(float) * (size_t)cols);
    if (!rc && (!lb->acc || !lb->row))
        rc = lmp_err(LMP_ENOMEM, "merge: out of memory");
    if (rc)
        lora_unload(lb);
    return rc;
}

/* Binds the adapters of p to the planned tensors of checkpoint c: checks every adapter
 * against c, attaches LoRA updates, and makes saved modules replace their base tensor.
 * *binds (n entries, caller frees) holds the updates. */
static int bind_loras(const lmp_ckpt *c, conv_item *items, int n, const lmp_convert_params *p, lora_bind **binds,
                      lmp_convert_result *res)
{
    *binds = NULL;
    if (p->n_loras <= 0)
        return 0;
    if (p->n_loras > MAX_LORAS)
        return lmp_err(LMP_EINVAL, "merge: at most %d adapters", MAX_LORAS);
    for (int k = 0; k < p->n_loras; k++) {
        int rc = lmp_lora_check(p->loras[k], c);
        if (rc)
            return rc;
    }
    lora_bind *lb = calloc((size_t)n + 1, sizeof *lb);
    if (!lb)
        return lmp_err(LMP_ENOMEM, "merge: out of memory");
    int used = 0;
    for (int i = 0; i < n; i++) {
        conv_item *it = &items[i];
        if (!it->src)
            continue;
        char hf[LMP_MAX_NAME];
        if (c->kind == LMP_CKPT_GGUF) {
            if (lmp_name_gguf_to_hf(it->src->name, hf, sizeof hf))
                continue;
        } else {
            snprintf(hf, sizeof hf, "%s", it->src->name);
        }
        bool qk = strstr(hf, "self_attn.q_proj.") || strstr(hf, "self_attn.k_proj.");
        int heads = strstr(hf, "q_proj") ? c->config.n_heads : c->config.n_kv_heads;
        const lmp_tensor *base = it->src;
        for (int k = 0; k < p->n_loras; k++) {
            const lmp_lora_full *f = lmp_lora_find_full(p->loras[k], hf);
            if (!f)
                continue;
            /* a saved module replaces the tensor (the last adapter wins), in HF row order */
            it->src = f->t;
            if (c->kind == LMP_CKPT_GGUF && c->qk_interleaved && qk && lmp_str_endswith(it->out_name, ".weight") &&
                strncmp(it->out_name, "blk.", 4) == 0) {
                it->perm_heads = heads;
                it->perm_dir = 1;
            } else if (c->kind == LMP_CKPT_GGUF && it->perm_dir < 0) {
                it->perm_heads = 0; /* GGUF -> HF: the saved module is already in HF order */
            }
            if (lmp_dtype_info(it->out_dtype)->is_quant && !lmp_dtype_info(base->dtype)->is_quant)
                it->out_dtype = base->dtype;
        }
        lora_bind *b = &lb[used];
        for (int k = 0; k < p->n_loras; k++) {
            const lmp_lora_target *t = lmp_lora_find(p->loras[k], hf);
            if (!t)
                continue;
            b->t[b->n] = t;
            b->mult[b->n] = p->lora_scales ? p->lora_scales[k] : 1.0;
            b->n++;
        }
        if (it->src != base)
            res->n_merged++;
        if (!b->n)
            continue;
        /* stored rows in ggml order: the source is a GGUF llama file and is not un-permuted */
        if (it->src == base && c->kind == LMP_CKPT_GGUF && c->qk_interleaved && qk && it->perm_dir >= 0)
            b->gg_heads = heads;
        if (it->src != base)
            return free(lb), lmp_err(LMP_EINVAL, "merge: '%s' is both saved whole and LoRA-adapted", hf);
        if (!lmp_dtype_info(base->dtype)->is_float && !lmp_dtype_info(base->dtype)->is_quant)
            return free(lb), lmp_err(LMP_EUNSUPPORTED, "merge: '%s' has dtype %s", hf, lmp_dtype_info(base->dtype)->name);
        const lmp_dtype_traits *to = lmp_dtype_info(it->out_dtype);
        if (!to->from_f32 || !lmp_dtype_info(base->dtype)->to_f32)
            return free(lb), lmp_err(LMP_EUNSUPPORTED, "merge: cannot re-quantize '%s' to %s", hf, to->name);
        if (to->is_quant)
            res->n_requantized++;
        it->lora = b;
        used++;
        res->n_merged++;
    }
    *binds = lb;
    return 0;
}

/* Streams every planned tensor into `write(ctx, bytes, n)`. */
typedef int (*write_fn)(void *ctx, const void *data, size_t n);

static int stream_items(const conv_item *items, int n, write_fn wr, void *ctx, lmp_convert_result *res,
                        bool quiet)
{
    enum { BUF = 8 << 20 };
    int rc = LMP_OK;
    uint8_t *buf = malloc(BUF);
    float *tmp = NULL;
    int64_t maxcols = 1;
    for (int i = 0; i < n; i++)
        if (items[i].src && items[i].src->ndim)
            maxcols = items[i].src->shape[items[i].src->ndim - 1] > maxcols ? items[i].src->shape[items[i].src->ndim - 1]
                                                                            : maxcols;
    tmp = malloc(sizeof(float) * (size_t)maxcols);
    if (!buf || !tmp) {
        rc = lmp_err(LMP_ENOMEM, "convert: out of memory");
        goto done;
    }
    lmp_progress prog;
    uint64_t total = 0, done_b = 0;
    for (int i = 0; i < n; i++)
        total += items[i].src ? items[i].src->nbytes : 0;
    lmp_progress_begin(&prog, "convert", total);
    for (int i = 0; i < n && rc == 0; i++) {
        const conv_item *it = &items[i];
        if (it->synthetic) {
            rc = wr(ctx, it->synthetic, sizeof(float) * (size_t)it->perm_heads);
            continue;
        }
        const lmp_tensor *t = it->src;
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1, rows = cols ? lmp_tensor_nelem(t) / cols : 0;
        size_t out_row = lmp_dtype_row_bytes(it->out_dtype, cols);
        if (it->lora && (rc = lora_load(it->lora, cols)))
            break;
        if (cols && !out_row) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: %lld columns do not fit %s blocks", t->name, (long long)cols,
                         lmp_dtype_info(it->out_dtype)->name);
            break;
        }
        int64_t per = out_row ? (int64_t)(BUF / out_row) : rows;
        if (per < 1) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: row too large", t->name);
            break;
        }
        size_t in_row = rows ? t->nbytes / (size_t)rows : 0;
        for (int64_t r = 0; r < rows && rc == 0; r += per) {
            int64_t nr = rows - r < per ? rows - r : per;
            if (r + nr < rows) /* read the next chunk while this one is converted and written */
                lmp_mmap_prefetch((const uint8_t *)t->data + (size_t)(r + nr) * in_row,
                                  (size_t)(rows - r - nr < per ? rows - r - nr : per) * in_row);
            rc = convert_rows(it, r, nr, buf, tmp, &res->f16_overflow);
            if (rc == 0)
                rc = wr(ctx, buf, (size_t)nr * out_row);
            if (!it->perm_heads) { /* rows consumed in order: drop their pages */
                lmp_mmap_release((const uint8_t *)t->data + (size_t)r * in_row, (size_t)nr * in_row);
            }
            res->bytes_out += (uint64_t)nr * out_row;
        }
        if (rows == 0 && cols == 0 && rc == 0)
            rc = wr(ctx, buf, 0);
        if (it->lora)
            lora_unload(it->lora);
        lmp_mmap_release(t->data, t->nbytes); /* keep RSS bounded on large inputs */
        done_b += t->nbytes;
        res->bytes_in += t->nbytes;
        res->params += (uint64_t)lmp_tensor_nelem(t);
        lmp_progress_update(&prog, done_b);
        if (!quiet && !prog.enabled) {
            char sh[96];
            lmp_debug("[%d/%d] %-40s %-16s %s -> %s", i + 1, n, it->out_name, lmp_shape_str(t, sh, sizeof sh),
                      lmp_dtype_info(t->dtype)->name, lmp_dtype_info(it->out_dtype)->name);
        }
    }
    lmp_progress_end(&prog);
done:
    free(buf);
    free(tmp);
    return rc;
}

static int gguf_write_cb(void *ctx, const void *d, size_t n) { return lmp_gguf_writer_write(ctx, d, n); }
static int st_write_cb(void *ctx, const void *d, size_t n) { return lmp_st_writer_write(ctx, d, n); }

/* Chooses the output dtype of a tensor. */
static int out_dtype_for(const lmp_tensor *t, int want, bool to_gguf)
{
    if (!lmp_dtype_info(t->dtype)->is_float && !lmp_dtype_info(t->dtype)->is_quant)
        return t->dtype; /* integer tensors are copied */
    if (to_gguf && !is_matrix(t))
        return LMP_DT_F32; /* llama.cpp keeps norms and biases in f32 */
    if (want >= 0)
        return want;
    if (lmp_dtype_info(t->dtype)->is_quant && !to_gguf)
        return LMP_DT_F32; /* safetensors cannot hold GGUF blocks: dequantize */
    return t->dtype;
}

/* ---------------------------------------------------------------- GGUF output */

static void llama3_rope_factors(const lmp_config *c, float *f)
{
    int dim = c->head_dim;
    double lo_wl = c->rope_orig_max_pos / c->rope_low_freq_factor;
    double hi_wl = c->rope_orig_max_pos / c->rope_high_freq_factor;
    for (int i = 0; i < dim / 2; i++) {
        double freq = 1.0 / pow(c->rope_theta, (2.0 * i) / dim);
        double wl = 2 * M_PI / freq;
        if (wl < hi_wl)
            f[i] = 1.0f;
        else if (wl > lo_wl)
            f[i] = c->rope_factor;
        else {
            double smooth = (c->rope_orig_max_pos / wl - c->rope_low_freq_factor) /
                            (c->rope_high_freq_factor - c->rope_low_freq_factor);
            f[i] = (float)(1.0 / ((1 - smooth) / c->rope_factor + smooth));
        }
    }
}

static int set_arch_keys(lmp_gguf_writer *w, const lmp_config *c, const char *name, int file_type)
{
    char k[128];
    int rc = 0;
    const char *a = c->arch;
#define KU32(key, v)                                                                                       \
    do {                                                                                                   \
        snprintf(k, sizeof k, "%s.%s", a, key);                                                            \
        if (!rc)                                                                                           \
            rc = lmp_gguf_set_u32(w, k, (uint32_t)(v));                                                    \
    } while (0)
    rc = lmp_gguf_set_str(w, "general.architecture", a);
    if (!rc)
        rc = lmp_gguf_set_str(w, "general.name", name);
    if (!rc)
        rc = lmp_gguf_set_u32(w, "general.file_type", (uint32_t)file_type);
    KU32("context_length", c->max_pos);
    KU32("embedding_length", c->hidden_size);
    KU32("block_count", c->n_layers);
    KU32("feed_forward_length", c->intermediate_size);
    KU32("attention.head_count", c->n_heads);
    KU32("attention.head_count_kv", c->n_kv_heads);
    KU32("rope.dimension_count", c->rope_dim > 0 && c->rope_dim < c->head_dim ? c->rope_dim : c->head_dim);
    KU32("vocab_size", c->vocab_size);
    if (c->head_dim * c->n_heads != c->hidden_size) {
        KU32("attention.key_length", c->head_dim);
        KU32("attention.value_length", c->head_dim);
    }
    snprintf(k, sizeof k, "%s.attention.layer_norm_rms_epsilon", a);
    if (!rc)
        rc = lmp_gguf_set_f32(w, k, c->rms_eps);
    snprintf(k, sizeof k, "%s.rope.freq_base", a);
    if (!rc)
        rc = lmp_gguf_set_f32(w, k, c->rope_theta);
    if (c->rope_type == LMP_ROPE_LINEAR) {
        snprintf(k, sizeof k, "%s.rope.scaling.type", a);
        if (!rc)
            rc = lmp_gguf_set_str(w, k, "linear");
        snprintf(k, sizeof k, "%s.rope.scaling.factor", a);
        if (!rc)
            rc = lmp_gguf_set_f32(w, k, c->rope_factor);
    } else if (c->rope_type == LMP_ROPE_LLAMA3 && !rc) {
        rc = lmp_gguf_set_f32(w, "lmpress.rope.llama3.factor", c->rope_factor);
        if (!rc)
            rc = lmp_gguf_set_f32(w, "lmpress.rope.llama3.low_freq_factor", c->rope_low_freq_factor);
        if (!rc)
            rc = lmp_gguf_set_f32(w, "lmpress.rope.llama3.high_freq_factor", c->rope_high_freq_factor);
        if (!rc)
            rc = lmp_gguf_set_u32(w, "lmpress.rope.llama3.original_max_position_embeddings",
                                  (uint32_t)c->rope_orig_max_pos);
    }
    if (c->sliding_window > 0)
        KU32("attention.sliding_window", c->sliding_window);
#define KF32(key, v)                                                                                       \
    do {                                                                                                   \
        snprintf(k, sizeof k, "%s.%s", a, key);                                                            \
        if (!rc)                                                                                           \
            rc = lmp_gguf_set_f32(w, k, (float)(v));                                                       \
    } while (0)
    /* issue 16 families: the keys llama.cpp's converter writes for each architecture */
    if (c->rope_type == LMP_ROPE_LONGROPE) {
        KU32("rope.scaling.original_context_length", c->rope_orig_max_pos);
        double orig = c->rope_orig_max_pos, factor = (double)c->max_pos / orig;
        double af = c->rope_attn_factor > 0 ? c->rope_attn_factor
                    : factor > 1.0         ? sqrt(1.0 + log(factor) / log(orig))
                                           : 1.0;
        KF32("rope.scaling.attn_factor", af);
    }
    if (strcmp(a, "phi3") == 0 && c->sliding_window <= 0)
        KU32("attention.sliding_window", 0); /* as llama.cpp's converter (Phi-4) */
    if (c->attn_softcap > 0)
        KF32("attn_logit_softcapping", c->attn_softcap);
    if (c->final_softcap > 0)
        KF32("final_logit_softcapping", c->final_softcap);
    if (c->swa_layers) {
        /* the period of the local/global pattern (llama.cpp: layer l local iff l % p < p - 1) */
        int p = 0;
        for (int cand = 1; cand <= c->n_layers + 1 && !p; cand++) {
            bool ok = true;
            for (int l = 0; l < c->n_layers && ok; l++)
                ok = ((c->layer_flags[l] & LMP_LAYER_SLIDING) != 0) == (l % cand < cand - 1);
            if (ok)
                p = cand;
        }
        if (!p && !rc)
            rc = lmp_err(LMP_EUNSUPPORTED, "GGUF: the local/global layer pattern is not periodic "
                                           "(llama.cpp's sliding_window_pattern cannot express it)");
        KU32("attention.sliding_window_pattern", p);
    }
    if (c->rope_local_theta > 0)
        KF32("rope.freq_base_swa", c->rope_local_theta);
    /* llama.cpp derives the scale (head_dim; hidden / heads for the 27B gemma2/3); a
     * query_pre_attn_scalar it would not derive is kept in an lmpress key */
    const bool big = (strcmp(a, "gemma2") == 0 && c->n_layers == 46) || (strcmp(a, "gemma3") == 0 && c->n_layers == 62);
    const float derived = big ? (float)(c->hidden_size / c->n_heads) : (float)c->head_dim;
    if (c->query_pre_attn_scalar > 0 && c->query_pre_attn_scalar != derived && !rc)
        rc = lmp_gguf_set_f32(w, "lmpress.query_pre_attn_scalar", c->query_pre_attn_scalar);
    if (strcmp(c->model_type, "granite") == 0) {
        KF32("attention.scale", c->attn_multiplier > 0 ? c->attn_multiplier : 1);
        KF32("embedding_scale", c->embed_multiplier > 0 ? c->embed_multiplier : 1);
        KF32("residual_scale", c->residual_multiplier > 0 ? c->residual_multiplier : 1);
        KF32("logit_scale", c->logits_scaling > 0 ? c->logits_scaling : 1);
    }
    if (strcmp(c->model_type, "smollm3") == 0 && !rc)
        for (int l = 0; l < c->n_layers; l++)
            if (((c->layer_flags[l] & LMP_LAYER_NOROPE) != 0) != ((l + 1) % 4 == 0)) {
                rc = lmp_err(LMP_EUNSUPPORTED, "GGUF: smollm3 without RoPE on other layers than "
                                               "every 4th (llama.cpp assumes every 4th)");
                break;
            }
#undef KF32
    if (!rc && strcmp(c->model_type, c->arch) != 0 && strcmp(c->model_type, "gemma3_text") != 0)
        rc = lmp_gguf_set_str(w, "lmpress.model_type", c->model_type);
#undef KU32
    return rc;
}

static const char *base_name(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    static char buf[256];
    size_t s = n;
    while (s > 0 && path[s - 1] != '/')
        s--;
    snprintf(buf, sizeof buf, "%.*s", (int)(n - s), path + s);
    char *dot = strrchr(buf, '.');
    if (dot && dot != buf && (strcmp(dot, ".gguf") == 0 || strcmp(dot, ".safetensors") == 0))
        *dot = 0;
    return buf;
}

static int write_vocab(lmp_gguf_writer *w, const lmp_ckpt *c)
{
    int rc;
    if (c->kind == LMP_CKPT_GGUF) { /* copy the vocabulary as it is */
        for (uint64_t i = 0; i < c->gguf.n_kv; i++)
            if (strncmp(c->gguf.kv[i].key, "tokenizer.", 10) == 0 && (rc = lmp_gguf_set_kv(w, &c->gguf.kv[i])))
                return rc;
        return LMP_OK;
    }
    if (!c->tokenizer_path) {
        lmp_warn("%s: no tokenizer.json: the GGUF gets no vocabulary (tokenizer.ggml.model = \"none\")", c->path);
        return lmp_gguf_set_str(w, "tokenizer.ggml.model", "none");
    }
    lmp_tokenizer *tok;
    if ((rc = lmp_tokenizer_load(&tok, c->tokenizer_path)))
        return rc;
    rc = lmp_tokenizer_write_gguf(tok, w, c->config.vocab_size);
    lmp_tokenizer_free(tok);
    return rc;
}

static int plan_gguf(const lmp_ckpt *c, int want, conv_item **out, int *n_out, float *rope_factors)
{
    conv_item *items = calloc((size_t)c->n_tensors + 3, sizeof *items);
    int n = 0;
    if (!items)
        return lmp_err(LMP_ENOMEM, "convert: out of memory");
    const lmp_family *fam = lmp_family_find(c->config.model_type);
    bool permute = c->kind != LMP_CKPT_GGUF && fam && fam->qk_interleaved;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        conv_item *it = &items[n];
        if (c->kind == LMP_CKPT_GGUF) {
            snprintf(it->out_name, sizeof it->out_name, "%s", t->name);
        } else if (lmp_name_hf_to_gguf_arch(c->config.arch, t->name, it->out_name, sizeof it->out_name)) {
            if (strstr(t->name, "rotary_emb.inv_freq"))
                continue; /* recomputed from rope_theta */
            free(items);
            return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' has no llama.cpp name", c->path, t->name);
        }
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, true);
        if (it->out_dtype != t->dtype && lmp_dtype_info(t->dtype)->is_quant)
            it->out_dtype = t->dtype; /* never requantize here */
        if (c->kind != LMP_CKPT_GGUF && c->config.norm_plus1 && lmp_str_endswith(t->name, "norm.weight"))
            it->add = 1.0f; /* llama.cpp stores gemma's (1 + w) */
        if (permute && (strstr(t->name, "self_attn.q_proj.") || strstr(t->name, "self_attn.k_proj."))) {
            it->perm_heads = strstr(t->name, "q_proj") ? c->config.n_heads : c->config.n_kv_heads;
            it->perm_dir = 1;
            int64_t want_rows = (int64_t)it->perm_heads * c->config.head_dim;
            if (t->shape[0] != want_rows) {
                free(items);
                return lmp_err(LMP_EFORMAT, "%s: '%s' has %lld rows, config implies %lld", c->path, t->name,
                               (long long)t->shape[0], (long long)want_rows);
            }
        }
        n++;
    }
    if (c->kind != LMP_CKPT_GGUF && c->config.rope_type == LMP_ROPE_LLAMA3) {
        llama3_rope_factors(&c->config, rope_factors);
        conv_item *it = &items[n++];
        snprintf(it->out_name, sizeof it->out_name, "rope_freqs.weight");
        it->out_dtype = LMP_DT_F32;
        it->synthetic = rope_factors;
        it->perm_heads = c->config.head_dim / 2; /* element count for synthetic items */
    }
    if (c->kind != LMP_CKPT_GGUF && c->config.rope_type == LMP_ROPE_LONGROPE) {
        /* phi3: the long and short factors as tensors (convert_hf_to_gguf) */
        for (int k = 0; k < 2; k++) {
            conv_item *it = &items[n++];
            snprintf(it->out_name, sizeof it->out_name, k ? "rope_factors_short.weight" : "rope_factors_long.weight");
            it->out_dtype = LMP_DT_F32;
            it->synthetic = k ? c->config.rope_short : c->config.rope_long;
            it->perm_heads = c->config.n_rope_factors;
        }
    }
    *out = items;
    *n_out = n;
    return LMP_OK;
}

static int convert_to_gguf(const lmp_ckpt *c, const char *out, const lmp_convert_params *p,
                           lmp_convert_result *res)
{
    conv_item *items = NULL;
    lmp_gguf_writer *w = NULL;
    float rope_factors[1024];
    int n = 0, rc;
    if (c->config.head_dim / 2 > 1024)
        return lmp_err(LMP_EUNSUPPORTED, "%s: head_dim too large", c->path);
    lora_bind *binds = NULL;
    if ((rc = plan_gguf(c, p->dtype, &items, &n, rope_factors)))
        return rc;
    if ((rc = bind_loras(c, items, n, p, &binds, res))) {
        free(items);
        return rc;
    }
    /* file type from the most common matrix dtype */
    int counts[LMP_DT_COUNT] = {0}, best = LMP_DT_F32;
    for (int i = 0; i < n; i++)
        if (items[i].src && is_matrix(items[i].src))
            counts[items[i].out_dtype]++;
    for (int d = 0; d < LMP_DT_COUNT; d++)
        if (counts[d] > counts[best])
            best = d;
    if ((rc = lmp_gguf_writer_new(&w, out, p->force)))
        goto done;
    if ((rc = set_arch_keys(w, &c->config, base_name(c->path), lmp_gguf_file_type((lmp_dtype)best))))
        goto done;
    if (lmp_dtype_info((lmp_dtype)best)->is_quant && (rc = lmp_gguf_set_u32(w, "general.quantization_version", 2)))
        goto done;
    if ((rc = write_vocab(w, c)))
        goto done;
    for (int i = 0; i < n && rc == 0; i++) {
        if (items[i].synthetic) {
            int64_t sh[1] = {items[i].perm_heads};
            rc = lmp_gguf_writer_add_tensor(w, items[i].out_name, LMP_DT_F32, 1, sh);
        } else {
            rc = lmp_gguf_writer_add_tensor(w, items[i].out_name, items[i].out_dtype, items[i].src->ndim,
                                            items[i].src->shape);
        }
    }
    if (rc || (rc = lmp_gguf_writer_begin(w)))
        goto done;
    if ((rc = stream_items(items, n, gguf_write_cb, w, res, p->quiet)))
        goto done;
    rc = lmp_gguf_writer_finish(w);
    w = NULL;
    res->n_tensors = n;
done:
    lmp_gguf_writer_abort(w);
    free(items);
    free(binds);
    return rc;
}

/* ---------------------------------------------------------------- safetensors output */

static int write_config_json(const lmp_ckpt *c, const char *dir, int dtype)
{
    char *txt = NULL, *src = NULL, *path = lmp_path_join(dir, "config.json");
    int rc;
    char *orig = c->dir ? lmp_path_join(c->dir, "config.json") : NULL;
    const char *td = dtype == LMP_DT_F16 ? "float16" : dtype == LMP_DT_BF16 ? "bfloat16" : "float32";
    if (c->kind != LMP_CKPT_GGUF && orig && lmp_read_file(orig, &src, NULL) == 0) {
        /* keep every key of the original, update torch_dtype */
        cJSON *j = cJSON_Parse(src);
        if (j && dtype >= 0) {
            cJSON_DeleteItemFromObject(j, "torch_dtype");
            cJSON_AddStringToObject(j, "torch_dtype", td);
        }
        txt = j ? cJSON_Print(j) : NULL;
        cJSON_Delete(j);
        rc = txt ? LMP_OK : lmp_err(LMP_EFORMAT, "%s: cannot re-read config.json", orig);
    } else {
        lmp_config cf = c->config;
        if (dtype >= 0)
            snprintf(cf.torch_dtype, sizeof cf.torch_dtype, "%s", td);
        rc = lmp_config_to_json(&cf, &txt);
    }
    if (rc == 0)
        rc = lmp_write_text(path, txt);
    free(txt);
    free(src);
    free(orig);
    free(path);
    return rc;
}

static int convert_to_safetensors(const lmp_ckpt *c, const char *out, const lmp_convert_params *p,
                                  lmp_convert_result *res)
{
    bool folder = !lmp_str_endswith(out, ".safetensors");
    char *tmp = NULL;
    lmp_st_writer *w = NULL;
    conv_item *items = calloc((size_t)c->n_tensors + 1, sizeof *items);
    lora_bind *binds = NULL;
    int n = 0, rc = LMP_OK;
    if (!items)
        return lmp_err(LMP_ENOMEM, "convert: out of memory");
    bool unpermute = c->kind == LMP_CKPT_GGUF && c->qk_interleaved;
    const lmp_family *fam = lmp_family_find(c->config.model_type);
    bool minus1 = c->kind == LMP_CKPT_GGUF && fam && fam->norm_plus1; /* GGUF 1 + w -> HF w */
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        conv_item *it = &items[n];
        if (c->kind == LMP_CKPT_GGUF) {
            if (strcmp(t->name, "rope_freqs.weight") == 0 || strcmp(t->name, "rope_factors_long.weight") == 0 ||
                strcmp(t->name, "rope_factors_short.weight") == 0)
                continue; /* in config.json (rope_scaling) */
            if (lmp_name_gguf_to_hf_arch(c->config.arch, t->name, it->out_name, sizeof it->out_name)) {
                rc = lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' has no Hugging Face name", c->path, t->name);
                goto done;
            }
        } else {
            snprintf(it->out_name, sizeof it->out_name, "%s", t->name);
        }
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, p->dtype, false);
        if (minus1 && lmp_str_endswith(t->name, "norm.weight"))
            it->add = -1.0f;
        if (unpermute && (strstr(t->name, "attn_q.") || strstr(t->name, "attn_k."))) {
            it->perm_heads = strstr(t->name, "attn_q.") ? c->config.n_heads : c->config.n_kv_heads;
            it->perm_dir = -1;
        }
        n++;
    }
    if ((rc = bind_loras(c, items, n, p, &binds, res)))
        goto done;
    const char *target = out;
    if (folder) {
        if ((rc = lmp_dir_begin(out, p->force, &tmp)))
            goto done;
        target = tmp;
    }
    if ((rc = lmp_st_writer_new(&w, target, folder ? p->shard_bytes : 0, folder ? true : p->force)))
        goto done;
    for (int i = 0; i < n && rc == 0; i++)
        rc = lmp_st_writer_add(w, items[i].out_name, items[i].out_dtype, items[i].src->ndim, items[i].src->shape);
    if (rc || (rc = lmp_st_writer_meta(w, "format", "pt")) || (rc = lmp_st_writer_begin(w)))
        goto done;
    if ((rc = stream_items(items, n, st_write_cb, w, res, p->quiet)))
        goto done;
    rc = lmp_st_writer_finish(w);
    w = NULL;
    if (rc)
        goto done;
    res->n_tensors = n;
    if (folder) {
        if (c->has_config && (rc = write_config_json(c, tmp, p->dtype)))
            goto done;
        static const char *extra[] = {"tokenizer.json", "tokenizer_config.json", "generation_config.json",
                                      "special_tokens_map.json", "tokenizer.model"};
        for (size_t k = 0; c->dir && c->kind != LMP_CKPT_GGUF && k < sizeof extra / sizeof extra[0] && !rc; k++) {
            char *s = lmp_path_join(c->dir, extra[k]), *d = lmp_path_join(tmp, extra[k]);
            if (lmp_path_exists(s))
                rc = lmp_copy_file(s, d);
            free(s);
            free(d);
        }
        if (c->kind == LMP_CKPT_GGUF)
            lmp_warn("%s: GGUF input: no tokenizer.json is written (the vocabulary stays in the GGUF)", out);
        if (rc == 0)
            rc = lmp_dir_commit(tmp, out);
    }
done:
    lmp_st_writer_abort(w);
    if (rc && tmp)
        lmp_dir_remove(tmp);
    free(tmp);
    free(items);
    free(binds);
    return rc;
}

int lmp_convert(const char *in, const char *out, const lmp_convert_params *p, lmp_convert_result *res)
{
    lmp_ckpt c;
    int rc;
    memset(res, 0, sizeof *res);
    double t0 = lmp_time_s();
    if (p->dtype >= 0 && p->dtype != LMP_DT_F32 && p->dtype != LMP_DT_F16 && p->dtype != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "convert: --dtype must be f32, f16 or bf16 (quantized types: lmpress quantize)");
    if ((rc = lmp_ckpt_open(&c, in)))
        return rc;
    res->to_gguf = lmp_str_endswith(out, ".gguf");
    rc = res->to_gguf ? convert_to_gguf(&c, out, p, res) : convert_to_safetensors(&c, out, p, res);
    lmp_ckpt_close(&c);
    res->seconds = lmp_time_s() - t0;
    res->peak_rss = lmp_peak_rss();
    if (rc == 0 && res->f16_overflow)
        lmp_warn("%llu values exceed the f16 range (|x| > 65504) and were written as +/-Inf",
                 (unsigned long long)res->f16_overflow);
    return rc;
}
