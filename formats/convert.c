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

int lmp_convert_check(const lmp_convert_params *p)
{
    if (p->dtype != -1 && p->dtype != LMP_DT_F32 && p->dtype != LMP_DT_F16 && p->dtype != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "--dtype must be f32, f16 or bf16 (for quantized types use lmpress quantize)");
    return LMP_OK;
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
    /* Mixture of experts: row ranges of one or more sources written one after another
     * (experts stacked into llama.cpp's 3-D *_exps tensors, or split out of them); when
     * n_parts > 0 they replace src's rows (src = the first part's tensor) and the output
     * has out_shape. */
    int n_parts;
    struct conv_part *parts; /* (n_parts), owned */
    int out_ndim;
    int64_t out_shape[3];
    const char *file;       /* the input, for messages */
    float add;      /* added to every value (gemma norms: HF w <-> GGUF 1 + w) */
    struct lora_bind *lora;  /* LoRA updates merged into this tensor, or NULL */
} conv_item;

typedef struct conv_part {
    const lmp_tensor *t;
    int64_t row0, rows; /* rows of t (t's elements / its last dimension) */
} conv_part;

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
    bool same = t->dtype == it->out_dtype && it->add == 0 && !it->lora;
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
            /* non-finite values are refused, reported at the row the input file holds */
            int rc = lmp_check_finite_rows(it->file, t, src_row, 1, NULL, NULL);
            if (rc)
                return rc;
            memcpy(d, s, in_row);
            continue;
        }
        float *x = tmp;
        ti->to_f32(s, x, cols);
        int64_t bad = lmp_first_nonfinite(x, cols);
        if (bad >= 0)
            return lmp_err(LMP_ERANGE, "%s: tensor %s row %lld column %lld is %s: non-finite weights are refused",
                           it->file, t->name, (long long)src_row, (long long)bad,
                           isnan(x[bad]) ? "NaN" : x[bad] > 0 ? "+Inf" : "-Inf");
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
            if ((bad = lmp_first_nonfinite(x, cols)) >= 0)
                return lmp_err(LMP_ERANGE, "%s: tensor %s row %lld column %lld is not finite once the LoRA update "
                                           "is added (the adapter overflows it)",
                               it->file, t->name, (long long)src_row, (long long)bad);
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
        for (int pi = 0; pi < it->n_parts; pi++) /* expert tensors stacked or split here */
            for (int k = 0; k < p->n_loras; k++)
                if (lmp_lora_find(p->loras[k], it->parts[pi].t->name) ||
                    lmp_lora_find_full(p->loras[k], it->parts[pi].t->name))
                    return free(lb), lmp_err(LMP_EUNSUPPORTED, "merge: adapters on mixture-of-experts expert "
                                             "tensors ('%s') are not supported", it->parts[pi].t->name);
        if (it->n_parts)
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

#define STREAM_BUF (8 << 20)

/* Rows [row0, row0 + rows) of it->src (rows < 0: all of them) through `wr`. */
static int stream_rows(const conv_item *it, int64_t row0, int64_t rows, uint8_t *buf, float *tmp, write_fn wr,
                       void *ctx, lmp_convert_result *res, uint64_t *done_b)
{
    int rc = LMP_OK;
    const lmp_tensor *t = it->src;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1, all = cols ? lmp_tensor_nelem(t) / cols : 0;
    if (rows < 0)
        rows = all;
    if (row0 < 0 || row0 + rows > all)
        return lmp_err(LMP_EFORMAT, "%s: rows %lld..%lld of %lld", t->name, (long long)row0,
                       (long long)(row0 + rows), (long long)all);
    size_t out_row = lmp_dtype_row_bytes(it->out_dtype, cols);
    if (cols && !out_row)
        return lmp_err(LMP_EUNSUPPORTED, "%s: %lld columns do not fit %s blocks", t->name, (long long)cols,
                       lmp_dtype_info(it->out_dtype)->name);
    int64_t per = out_row ? (int64_t)(STREAM_BUF / out_row) : rows;
    if (per < 1)
        return lmp_err(LMP_EUNSUPPORTED, "%s: row too large", t->name);
    size_t in_row = all ? t->nbytes / (size_t)all : 0;
    for (int64_t r = row0; r < row0 + rows && rc == 0; r += per) {
        int64_t end = row0 + rows, nr = end - r < per ? end - r : per;
        if (r + nr < end) /* read the next chunk while this one is converted and written */
            lmp_mmap_prefetch((const uint8_t *)t->data + (size_t)(r + nr) * in_row,
                              (size_t)(end - r - nr < per ? end - r - nr : per) * in_row);
        rc = convert_rows(it, r, nr, buf, tmp, &res->f16_overflow);
        if (rc == 0)
            rc = wr(ctx, buf, (size_t)nr * out_row);
        if (!it->perm_heads) /* rows consumed in order: drop their pages */
            lmp_mmap_release((const uint8_t *)t->data + (size_t)r * in_row, (size_t)nr * in_row);
        res->bytes_out += (uint64_t)nr * out_row;
    }
    if (rows == 0 && cols == 0 && rc == 0)
        rc = wr(ctx, buf, 0);
    *done_b += (uint64_t)rows * in_row;
    res->bytes_in += (uint64_t)rows * in_row;
    res->params += (uint64_t)(rows * cols);
    return rc;
}

static int stream_items(const conv_item *items, int n, write_fn wr, void *ctx, lmp_convert_result *res,
                        bool quiet)
{
    int rc = LMP_OK;
    uint8_t *buf = malloc(STREAM_BUF);
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
    for (int i = 0; i < n; i++) {
        if (!items[i].n_parts) {
            total += items[i].src ? items[i].src->nbytes : 0;
            continue;
        }
        for (int pi = 0; pi < items[i].n_parts; pi++) {
            const lmp_tensor *t = items[i].parts[pi].t;
            int64_t cols = t->shape[t->ndim - 1], all = lmp_tensor_nelem(t) / cols;
            total += (uint64_t)items[i].parts[pi].rows * (t->nbytes / (size_t)all);
        }
    }
    lmp_progress_begin(&prog, "convert", total);
    for (int i = 0; i < n && rc == 0; i++) {
        const conv_item *it = &items[i];
        if (it->synthetic) {
            rc = wr(ctx, it->synthetic, sizeof(float) * (size_t)it->perm_heads);
            continue;
        }
        if (it->lora && (rc = lora_load(it->lora, it->src->shape[it->src->ndim - 1])))
            break;
        const int np = it->n_parts ? it->n_parts : 1;
        for (int pi = 0; pi < np && rc == 0; pi++) {
            conv_item one = *it;
            int64_t row0 = 0, rows = -1;
            if (it->n_parts) {
                one.src = it->parts[pi].t;
                row0 = it->parts[pi].row0;
                rows = it->parts[pi].rows;
            }
            rc = stream_rows(&one, row0, rows, buf, tmp, wr, ctx, res, &done_b);
        }
        if (it->lora)
            lora_unload(it->lora);
        const lmp_tensor *t = it->src;
        if (!it->n_parts)
            lmp_mmap_release(t->data, t->nbytes); /* keep RSS bounded on large inputs */
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
    if (c->n_experts > 0) { /* mixture of experts, as llama.cpp's converter writes it */
        KU32("expert_count", c->n_experts);
        KU32("expert_used_count", c->n_experts_used);
        if (c->moe_ff != c->intermediate_size)
            KU32("expert_feed_forward_length", c->moe_ff);
        if (!c->moe_norm_topk && !rc) /* llama.cpp always renormalises: lmpress's own key */
            rc = lmp_gguf_set_bool(w, "lmpress.moe.norm_topk_prob", false);
        if (strcmp(c->model_type, "granitemoe") == 0) { /* granite's multipliers, as granite */
            KF32("attention.scale", c->attn_multiplier > 0 ? c->attn_multiplier : 1);
            KF32("embedding_scale", c->embed_multiplier > 0 ? c->embed_multiplier : 1);
            KF32("residual_scale", c->residual_multiplier > 0 ? c->residual_multiplier : 1);
            KF32("logit_scale", c->logits_scaling > 0 ? c->logits_scaling : 1);
        }
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

/* ---------------------------------------------------------------- experts */

/* Mixture-of-experts tensors between Hugging Face and llama.cpp layouts, as llama.cpp's
 * converter writes them (convert_hf_to_gguf: Mixtral and Qwen3-MoE experts stacked per
 * projection into blk.N.ffn_{gate,up,down}_exps [E, rows, cols]; GraniteMoE's fused
 * input_linear [E, 2 ff, d] split into ffn_gate_exps and ffn_up_exps, output_linear renamed
 * ffn_down_exps; every router is blk.N.ffn_gate_inp, kept in f32) and back. */

static void free_items(conv_item *items, int n)
{
    for (int i = 0; items && i < n; i++)
        free(items[i].parts);
    free(items);
}

/* The HF router name of layer l for the model type. */
static void hf_router_name(const lmp_config *c, int l, char *out, size_t n)
{
    snprintf(out, n, "model.layers.%d.%s.weight", l,
             strcmp(c->model_type, "granitemoe") == 0 ? "block_sparse_moe.router.layer"
             : strcmp(c->model_type, "mixtral") == 0  ? "block_sparse_moe.gate"
                                                      : "mlp.gate");
}

/* Per-expert HF name of projection p (0 gate, 1 up, 2 down) of expert e in layer l. */
static void hf_expert_name(const lmp_config *c, int l, int e, int p, char *out, size_t n)
{
    static const char *const mix[3] = {"w1", "w3", "w2"}, *const q3[3] = {"gate_proj", "up_proj", "down_proj"};
    const bool mixtral = strcmp(c->model_type, "mixtral") == 0;
    snprintf(out, n, "model.layers.%d.%s.%d.%s.weight", l, mixtral ? "block_sparse_moe.experts" : "mlp.experts",
             e, mixtral ? mix[p] : q3[p]);
}

static const char *const g_exps[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};

/* An item of E parts (or 2E for granite's input_linear), output [d0, d1, d2]. */
static int parts_item(conv_item *it, int np, int64_t d0, int64_t d1, int64_t d2)
{
    it->parts = calloc((size_t)np, sizeof *it->parts);
    if (!it->parts)
        return lmp_err(LMP_ENOMEM, "convert: out of memory");
    it->n_parts = np;
    it->out_ndim = 3;
    it->out_shape[0] = d0;
    it->out_shape[1] = d1;
    it->out_shape[2] = d2;
    return 0;
}

/* HF -> GGUF: plans tensor t when it is an expert or router tensor. Returns 1 when handled
 * (items appended to items[*n], possibly none: experts after the first are stacked into
 * expert 0's item), 0 when t is not a mixture-of-experts tensor, or a negative status. */
static int moe_plan_to_gguf(const lmp_ckpt *c, const lmp_tensor *t, int want, conv_item *items, int *n)
{
    const lmp_config *cf = &c->config;
    int l, used = 0;
    if (cf->n_experts <= 0 || sscanf(t->name, "model.layers.%d.%n", &l, &used) != 1 || !used)
        return 0;
    const char *rest = t->name + used;
    const int E = cf->n_experts;
    char nm[LMP_MAX_NAME];
    conv_item *it = &items[*n];
    it->file = c->path;
    hf_router_name(cf, l, nm, sizeof nm);
    if (strcmp(t->name, nm) == 0) {
        it->src = t;
        snprintf(it->out_name, sizeof it->out_name, "blk.%d.ffn_gate_inp.weight", l);
        it->out_dtype = LMP_DT_F32; /* llama.cpp keeps routers in f32 */
        ++*n;
        return 1;
    }
    if (strcmp(rest, "block_sparse_moe.input_linear.weight") == 0) {
        const int64_t ff = cf->moe_ff, d = cf->hidden_size;
        if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != 2 * ff || t->shape[2] != d)
            return lmp_err(LMP_EFORMAT, "%s: %s is not [%d, %lld, %lld]", c->path, t->name, E,
                           (long long)(2 * ff), (long long)d);
        for (int p = 0; p < 2; p++, it++) {
            int rc = parts_item(it, E, E, ff, d);
            if (rc)
                return rc;
            it->src = t;
            it->out_dtype = (lmp_dtype)out_dtype_for(t, want, true);
            snprintf(it->out_name, sizeof it->out_name, "blk.%d.%s.weight", l, g_exps[p]);
            for (int e = 0; e < E; e++)
                it->parts[e] = (conv_part){t, (int64_t)e * 2 * ff + p * ff, ff};
            ++*n;
        }
        return 1;
    }
    if (strcmp(rest, "block_sparse_moe.output_linear.weight") == 0) {
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, true);
        snprintf(it->out_name, sizeof it->out_name, "blk.%d.ffn_down_exps.weight", l);
        ++*n;
        return 1;
    }
    for (int p = 0; p < 3; p++) {
        hf_expert_name(cf, l, 0, p, nm, sizeof nm);
        char pre[LMP_MAX_NAME];
        int e = -1, k = 0;
        /* "<...experts.>E<.w1.weight>": match expert E of projection p */
        const char *dot = strstr(nm, ".experts.0.");
        if (!dot)
            continue;
        dot += strlen(".experts");
        snprintf(pre, sizeof pre, "%.*s", (int)(dot - nm + 1), nm);
        if (strncmp(t->name, pre, strlen(pre)) != 0 || sscanf(t->name + strlen(pre), "%d%n", &e, &k) != 1 ||
            strcmp(t->name + strlen(pre) + k, dot + 2) != 0)
            continue;
        if (e != 0)
            return 1; /* stacked into expert 0's item */
        if (t->ndim != 2)
            return lmp_err(LMP_EFORMAT, "%s: %s is not a matrix", c->path, t->name);
        int rc = parts_item(it, E, E, t->shape[0], t->shape[1]);
        if (rc)
            return rc;
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, true);
        snprintf(it->out_name, sizeof it->out_name, "blk.%d.%s.weight", l, g_exps[p]);
        for (int x = 0; x < E; x++) {
            hf_expert_name(cf, l, x, p, nm, sizeof nm);
            const lmp_tensor *tx = lmp_ckpt_find(c, nm);
            if (!tx)
                return lmp_err(LMP_ENOTFOUND, "%s: expert tensor %s is missing (%d experts)", c->path, nm, E);
            if (tx->ndim != 2 || tx->shape[0] != t->shape[0] || tx->shape[1] != t->shape[1] || tx->dtype != t->dtype)
                return lmp_err(LMP_EFORMAT, "%s: %s differs in shape or dtype from expert 0's", c->path, nm);
            it->parts[x] = (conv_part){tx, 0, t->shape[0]};
        }
        ++*n;
        return 1;
    }
    return 0;
}

/* GGUF -> HF: the inverse. Same return convention. */
static int moe_plan_to_hf(const lmp_ckpt *c, const lmp_tensor *t, conv_item *items, int *n, int want)
{
    const lmp_config *cf = &c->config;
    int l, used = 0;
    if (cf->n_experts <= 0 || sscanf(t->name, "blk.%d.%n", &l, &used) != 1 || !used)
        return 0;
    const char *rest = t->name + used;
    const int E = cf->n_experts;
    const bool granite = strcmp(cf->model_type, "granitemoe") == 0;
    conv_item *it = &items[*n];
    it->file = c->path;
    if (strcmp(rest, "ffn_gate_inp.weight") == 0) {
        it->src = t;
        hf_router_name(cf, l, it->out_name, sizeof it->out_name);
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, false);
        ++*n;
        return 1;
    }
    int p = -1;
    for (int k = 0; k < 3; k++) {
        char want_name[64];
        snprintf(want_name, sizeof want_name, "%s.weight", g_exps[k]);
        if (strcmp(rest, want_name) == 0)
            p = k;
    }
    if (p < 0)
        return 0;
    if (t->ndim != 3 || t->shape[0] != E)
        return lmp_err(LMP_EFORMAT, "%s: %s is not [%d, rows, cols]", c->path, t->name, E);
    const int64_t rows = t->shape[1], cols = t->shape[2];
    if (granite && p == 2) {
        it->src = t;
        snprintf(it->out_name, sizeof it->out_name, "model.layers.%d.block_sparse_moe.output_linear.weight", l);
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, false);
        ++*n;
        return 1;
    }
    if (granite) { /* input_linear = [gate; up] rows per expert, written at ffn_gate_exps */
        if (p == 1)
            return 1;
        char un[LMP_MAX_NAME];
        snprintf(un, sizeof un, "blk.%d.ffn_up_exps.weight", l);
        const lmp_tensor *up = lmp_ckpt_find(c, un);
        if (!up || up->ndim != 3 || up->shape[0] != E || up->shape[1] != rows || up->shape[2] != cols ||
            up->dtype != t->dtype)
            return lmp_err(LMP_EFORMAT, "%s: %s missing or unlike %s", c->path, un, t->name);
        int rc = parts_item(it, 2 * E, E, 2 * rows, cols);
        if (rc)
            return rc;
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, false);
        snprintf(it->out_name, sizeof it->out_name, "model.layers.%d.block_sparse_moe.input_linear.weight", l);
        for (int e = 0; e < E; e++) {
            it->parts[2 * e] = (conv_part){t, (int64_t)e * rows, rows};
            it->parts[2 * e + 1] = (conv_part){up, (int64_t)e * rows, rows};
        }
        ++*n;
        return 1;
    }
    for (int e = 0; e < E; e++, it++) { /* one HF tensor per expert */
        int rc = parts_item(it, 1, rows, cols, 0);
        if (rc)
            return rc;
        it->out_ndim = 2;
        it->src = t;
        it->out_dtype = (lmp_dtype)out_dtype_for(t, want, false);
        hf_expert_name(cf, l, e, p, it->out_name, sizeof it->out_name);
        it->parts[0] = (conv_part){t, (int64_t)e * rows, rows};
        ++*n;
    }
    return 1;
}

static int plan_gguf(const lmp_ckpt *c, int want, conv_item **out, int *n_out, float *rope_factors)
{
    conv_item *items = calloc((size_t)c->n_tensors + 3 + (size_t)c->config.n_layers, sizeof *items);
    int n = 0;
    if (!items)
        return lmp_err(LMP_ENOMEM, "convert: out of memory");
    const lmp_family *fam = lmp_family_find(c->config.model_type);
    bool permute = c->kind != LMP_CKPT_GGUF && fam && fam->qk_interleaved;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        conv_item *it = &items[n];
        int mrc = c->kind == LMP_CKPT_GGUF ? 0 : moe_plan_to_gguf(c, t, want, items, &n);
        if (mrc < 0) {
            free_items(items, n + 2);
            return mrc;
        }
        if (mrc)
            continue;
        if (c->kind == LMP_CKPT_GGUF) {
            snprintf(it->out_name, sizeof it->out_name, "%s", t->name);
        } else if (lmp_name_hf_to_gguf_arch(c->config.arch, t->name, it->out_name, sizeof it->out_name)) {
            if (strstr(t->name, "rotary_emb.inv_freq"))
                continue; /* recomputed from rope_theta */
            if (lmp_allow_extra_tensors())
                continue; /* --allow-extra: reported by the validation, not written */
            free_items(items, n);
            return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' has no llama.cpp name", c->path, t->name);
        }
        it->src = t;
        it->file = c->path;
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
                free_items(items, n);
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
        it->out_shape[0] = it->perm_heads;
    }
    if (c->kind != LMP_CKPT_GGUF && c->config.rope_type == LMP_ROPE_LONGROPE) {
        /* phi3: the long and short factors as tensors (convert_hf_to_gguf) */
        for (int k = 0; k < 2; k++) {
            conv_item *it = &items[n++];
            snprintf(it->out_name, sizeof it->out_name, k ? "rope_factors_short.weight" : "rope_factors_long.weight");
            it->out_dtype = LMP_DT_F32;
            it->synthetic = k ? c->config.rope_short : c->config.rope_long;
            it->perm_heads = c->config.n_rope_factors;
            it->out_shape[0] = it->perm_heads;
        }
    }
    *out = items;
    *n_out = n;
    return LMP_OK;
}

/* The shape a planned tensor is written with (*ndim set). */
static const int64_t *item_shape(const conv_item *it, int *ndim)
{
    if (it->synthetic) {
        *ndim = 1;
        return &it->out_shape[0];
    }
    if (it->n_parts) {
        *ndim = it->out_ndim;
        return it->out_shape;
    }
    *ndim = it->src->ndim;
    return it->src->shape;
}

/* Every KV of the GGUF of the planned tensors: the architecture's keys with the file type
 * of the most common matrix dtype, then the vocabulary. */
static int gguf_meta(lmp_gguf_writer *w, const lmp_ckpt *c, const conv_item *items, int n)
{
    int counts[LMP_DT_COUNT] = {0}, best = LMP_DT_F32, rc;
    for (int i = 0; i < n; i++)
        if (items[i].src && is_matrix(items[i].src))
            counts[items[i].out_dtype]++;
    for (int d = 0; d < LMP_DT_COUNT; d++)
        if (counts[d] > counts[best])
            best = d;
    if ((rc = set_arch_keys(w, &c->config, base_name(c->path), lmp_gguf_file_type((lmp_dtype)best))))
        return rc;
    if (lmp_dtype_info((lmp_dtype)best)->is_quant && (rc = lmp_gguf_set_u32(w, "general.quantization_version", 2)))
        return rc;
    return write_vocab(w, c);
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
        free_items(items, n);
        return rc;
    }
    if ((rc = lmp_gguf_writer_new(&w, out, p->force)) || (rc = gguf_meta(w, c, items, n)))
        goto done;
    for (int i = 0; i < n && rc == 0; i++) {
        int ndim;
        const int64_t *shape = item_shape(&items[i], &ndim);
        rc = lmp_gguf_writer_add_tensor(w, items[i].out_name, items[i].out_dtype, ndim, shape);
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
    free_items(items, n);
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
    bool folder = !lmp_str_endswith_ci(out, ".safetensors");
    char *tmp = NULL;
    lmp_st_writer *w = NULL;
    const size_t cap = (size_t)c->n_tensors + 1 + (size_t)c->config.n_layers * 3 * (size_t)c->config.n_experts;
    conv_item *items = calloc(cap, sizeof *items);
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
            int mrc = moe_plan_to_hf(c, t, items, &n, p->dtype);
            if (mrc < 0) {
                rc = mrc;
                goto done;
            }
            if (mrc)
                continue;
            if (lmp_name_gguf_to_hf_arch(c->config.arch, t->name, it->out_name, sizeof it->out_name) &&
                lmp_allow_extra_tensors())
                continue; /* --allow-extra: reported by the validation, not written */
            if (lmp_name_gguf_to_hf_arch(c->config.arch, t->name, it->out_name, sizeof it->out_name)) {
                rc = lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' has no Hugging Face name", c->path, t->name);
                goto done;
            }
        } else {
            snprintf(it->out_name, sizeof it->out_name, "%s", t->name);
        }
        it->src = t;
        it->file = c->path;
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
        rc = items[i].n_parts ? lmp_st_writer_add(w, items[i].out_name, items[i].out_dtype, items[i].out_ndim,
                                                  items[i].out_shape)
                              : lmp_st_writer_add(w, items[i].out_name, items[i].out_dtype, items[i].src->ndim,
                                                  items[i].src->shape);
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
        /* tokenizer files: copied from an HF folder, made from a GGUF's vocabulary */
        rc = lmp_tokenizer_files_write(c, tmp);
        if (rc == 0)
            rc = lmp_dir_commit(tmp, out);
    }
done:
    lmp_st_writer_abort(w);
    if (rc && tmp)
        lmp_dir_remove(tmp);
    free(tmp);
    free_items(items, (int)cap); /* unused entries are zero */
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
    res->to_gguf = lmp_str_endswith_ci(out, ".gguf");
    rc = res->to_gguf ? convert_to_gguf(&c, out, p, res) : convert_to_safetensors(&c, out, p, res);
    lmp_ckpt_close(&c);
    res->seconds = lmp_time_s() - t0;
    res->peak_rss = lmp_peak_rss();
    if (rc == 0 && res->f16_overflow)
        lmp_warn("%llu values exceed the f16 range (|x| > 65504) and were written as +/-Inf",
                 (unsigned long long)res->f16_overflow);
    return rc;
}

/* ---------------------------------------------------------------- a source for the GGUF quantizer */

/* What lmp_convert(in, "x.gguf") would write, handed out row chunk by row chunk. */
typedef struct {
    lmp_ckpt c;
    conv_item *items;
    int n;
    lmp_tensor *tensors;    /* (n) the GGUF tensors: names, dtypes, shapes, nbytes */
    float rope_factors[1024];
    float *tmp;             /* one f32 row */
    uint64_t f16_overflow;
} conv_src;

static int src_meta(void *ctx, lmp_gguf_writer *w)
{
    const conv_src *s = ctx;
    return gguf_meta(w, &s->c, s->items, s->n);
}

/* Whether an item's GGUF rows are the source's bytes as they are. */
static bool item_plain(const conv_item *it)
{
    return !it->synthetic && !it->n_parts && !it->perm_heads && it->add == 0 && !it->lora &&
           it->src->dtype == it->out_dtype;
}

static int src_rows(void *ctx, int i, int64_t r0, int64_t nr, void *buf, const void **out)
{
    conv_src *s = ctx;
    const conv_item *it = &s->items[i];
    *out = NULL;
    if (it->synthetic) { /* one row of f32 factors */
        *out = it->synthetic;
        return LMP_OK;
    }
    const lmp_tensor *t = it->src;
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    size_t out_row = lmp_dtype_row_bytes(it->out_dtype, cols);
    if (!it->n_parts) {
        int64_t all = cols ? lmp_tensor_nelem(t) / cols : 0;
        size_t in_row = lmp_dtype_row_bytes(t->dtype, cols);
        if (r0 < 0 || nr < 0 || r0 + nr > all)
            return lmp_err(LMP_EFORMAT, "%s: %s rows %lld..%lld of %lld", it->file, t->name, (long long)r0,
                           (long long)(r0 + nr), (long long)all);
        if (!it->perm_heads && r0 + nr < all) /* read the next chunk while this one is quantized */
            lmp_mmap_prefetch((const uint8_t *)t->data + (size_t)(r0 + nr) * in_row,
                              (size_t)(all - r0 - nr < nr ? all - r0 - nr : nr) * in_row);
        if (item_plain(it)) { /* handed out of the mapping (the quantizer drops the pages) */
            *out = (const uint8_t *)t->data + (size_t)r0 * in_row;
            /* non-finite values refused as the converter refuses them: at the file's row */
            return lmp_check_finite_rows(it->file, t, r0, nr, NULL, NULL);
        }
        *out = buf;
        return convert_rows(it, r0, nr, buf, s->tmp, &s->f16_overflow);
    }
    /* experts: the output's rows run through the parts one after another */
    int64_t at = 0;
    for (int pi = 0; pi < it->n_parts && at < r0 + nr; pi++) {
        const conv_part *pt = &it->parts[pi];
        int64_t lo = r0 > at ? r0 : at, hi = r0 + nr < at + pt->rows ? r0 + nr : at + pt->rows;
        if (lo < hi) {
            conv_item one = *it;
            one.src = pt->t;
            int rc = convert_rows(&one, pt->row0 + (lo - at), hi - lo, (uint8_t *)buf + (size_t)(lo - r0) * out_row,
                                  s->tmp, &s->f16_overflow);
            if (rc)
                return rc;
        }
        at += pt->rows;
    }
    if (at < r0 + nr)
        return lmp_err(LMP_EFORMAT, "%s: %s: rows %lld..%lld beyond its %lld expert rows", it->file, it->out_name,
                       (long long)r0, (long long)(r0 + nr), (long long)at);
    *out = buf;
    return LMP_OK;
}

static void src_done(void *ctx, int i)
{
    const conv_item *it = &((conv_src *)ctx)->items[i];
    if (it->synthetic)
        return;
    if (!it->n_parts) { /* keep RSS bounded on large inputs */
        lmp_mmap_release(it->src->data, it->src->nbytes);
        return;
    }
    for (int pi = 0; pi < it->n_parts; pi++) {
        const lmp_tensor *t = it->parts[pi].t;
        size_t row = t->nbytes / (size_t)(lmp_tensor_nelem(t) / t->shape[t->ndim - 1]);
        lmp_mmap_release((const uint8_t *)t->data + (size_t)it->parts[pi].row0 * row, (size_t)it->parts[pi].rows * row);
    }
}

void lmp_convert_src_close(lmp_gguf_src *s)
{
    conv_src *cs = s ? s->ctx : NULL;
    if (!cs)
        return;
    if (cs->f16_overflow)
        lmp_warn("%llu values exceed the f16 range (|x| > 65504) and were written as +/-Inf",
                 (unsigned long long)cs->f16_overflow);
    free_items(cs->items, cs->n);
    free(cs->tensors);
    free(cs->tmp);
    lmp_ckpt_close(&cs->c);
    free(cs);
    memset(s, 0, sizeof *s);
}

int lmp_convert_src_open(const char *in, lmp_gguf_src *s)
{
    memset(s, 0, sizeof *s);
    conv_src *cs = calloc(1, sizeof *cs);
    if (!cs)
        return lmp_err(LMP_ENOMEM, "convert: out of memory");
    int rc = lmp_ckpt_open(&cs->c, in);
    if (rc) {
        free(cs);
        return rc;
    }
    s->ctx = cs;
    const lmp_config *cf = &cs->c.config;
    if (cf->head_dim / 2 > 1024) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: head_dim too large", cs->c.path);
        goto fail;
    }
    if ((rc = plan_gguf(&cs->c, -1, &cs->items, &cs->n, cs->rope_factors)))
        goto fail;
    cs->tensors = calloc((size_t)cs->n + 1, sizeof *cs->tensors);
    int64_t maxcols = 1;
    for (int i = 0; cs->tensors && i < cs->n; i++) {
        const conv_item *it = &cs->items[i];
        lmp_tensor *t = &cs->tensors[i];
        const int64_t *shape = item_shape(it, &t->ndim);
        snprintf(t->name, sizeof t->name, "%s", it->out_name);
        t->dtype = it->out_dtype;
        for (int d = 0; d < t->ndim; d++)
            t->shape[d] = shape[d];
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
        t->nbytes = cols ? lmp_dtype_row_bytes(t->dtype, cols) * (size_t)(lmp_tensor_nelem(t) / cols) : 0;
        maxcols = cols > maxcols ? cols : maxcols;
    }
    cs->tmp = malloc(sizeof(float) * (size_t)maxcols);
    if (!cs->tensors || !cs->tmp) {
        rc = lmp_err(LMP_ENOMEM, "convert: out of memory");
        goto fail;
    }
    s->path = cs->c.path;
    s->n_tensors = cs->n;
    s->tensors = cs->tensors;
    s->n_layers = cf->n_layers;
    s->n_head = cf->n_heads;
    s->n_head_kv = cf->n_kv_heads;
    s->n_expert = cf->n_experts;
    /* as plan_gguf permutes (an HF llama) or keeps (a GGUF's own layout) the q/k rows */
    const lmp_family *fam = lmp_family_find(cf->model_type);
    s->qk_interleaved = cs->c.kind == LMP_CKPT_GGUF ? cs->c.qk_interleaved : fam && fam->qk_interleaved;
    s->write_meta = src_meta;
    s->rows = src_rows;
    s->done = src_done;
    return LMP_OK;
fail:
    lmp_convert_src_close(s);
    return rc;
}
