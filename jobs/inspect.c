/*
 * The `lmpress inspect` job (jobs/inspect.h): architecture, hyper-parameters, tensor
 * table, totals and metadata, as text or JSON on stdout.
 */
#include "jobs/inspect.h"
#include "jobs/report.h"
#include "lib/io/io.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static const char *kind_name(lmp_ckpt_kind k)
{
    return k == LMP_CKPT_HF ? "hf-folder" : k == LMP_CKPT_GGUF ? "gguf" : "safetensors";
}

/* One GGUF value as text (arrays summarized by type and length, with a few elements). */
static void print_kv_value(const lmp_gguf_kv *kv, bool json)
{
    char buf[64];
    if (kv->type == LMP_GGUF_STRING) {
        if (json)
            lmp_report_json_str(kv->v.str);
        else
            printf("%.*s%s", 80, kv->v.str, kv->str_len > 80 ? "..." : "");
        return;
    }
    if (kv->type == LMP_GGUF_ARRAY) {
        if (json) {
            printf("{\"array\": \"%s\", \"n\": %" PRIu64 "}", lmp_gguf_type_name(kv->arr_type), kv->n);
            return;
        }
        printf("[%s x %" PRIu64 "]", lmp_gguf_type_name(kv->arr_type), kv->n);
        if (kv->arr_type == LMP_GGUF_STRING && kv->n) {
            char **s = kv->arr;
            printf(" ");
            for (uint64_t i = 0; i < kv->n && i < 4; i++)
                printf("%s\"%.20s\"", i ? ", " : "", s[i]);
            if (kv->n > 4)
                printf(", ...");
        }
        return;
    }
    switch (kv->type) {
    case LMP_GGUF_U8: snprintf(buf, sizeof buf, "%u", kv->v.u8); break;
    case LMP_GGUF_I8: snprintf(buf, sizeof buf, "%d", kv->v.i8); break;
    case LMP_GGUF_U16: snprintf(buf, sizeof buf, "%u", kv->v.u16); break;
    case LMP_GGUF_I16: snprintf(buf, sizeof buf, "%d", kv->v.i16); break;
    case LMP_GGUF_U32: snprintf(buf, sizeof buf, "%u", kv->v.u32); break;
    case LMP_GGUF_I32: snprintf(buf, sizeof buf, "%d", kv->v.i32); break;
    case LMP_GGUF_U64: snprintf(buf, sizeof buf, "%" PRIu64, kv->v.u64); break;
    case LMP_GGUF_I64: snprintf(buf, sizeof buf, "%" PRId64, kv->v.i64); break;
    case LMP_GGUF_F32: snprintf(buf, sizeof buf, "%.9g", kv->v.f32); break;
    case LMP_GGUF_F64: snprintf(buf, sizeof buf, "%.17g", kv->v.f64); break;
    case LMP_GGUF_BOOL: snprintf(buf, sizeof buf, "%s", kv->v.b ? "true" : "false"); break;
    default: snprintf(buf, sizeof buf, "?");
    }
    printf("%s", buf);
}

/* The mixture-of-experts line (text) or object member (JSON); nothing for dense models. */
static void print_experts(const lmp_config *cf, bool json)
{
    if (cf->n_experts <= 0)
        return;
    int sparse = 0;
    for (int l = 0; l < cf->n_layers; l++)
        sparse += lmp_config_layer_is_moe(cf, l);
    if (json)
        printf(", \"moe\": {\"experts\": %d, \"experts_used\": %d, \"expert_ffn\": %d, "
               "\"norm_topk\": %s, \"sparse_layers\": %d}",
               cf->n_experts, cf->n_experts_used, cf->moe_ff, cf->moe_norm_topk ? "true" : "false", sparse);
    else
        printf("experts:       %d of FFN %d per sparse layer, top-%d%s; %d of %d layers sparse\n",
               cf->n_experts, cf->moe_ff, cf->n_experts_used,
               cf->moe_norm_topk ? " (weights renormalised)" : " (softmax weights)", sparse, cf->n_layers);
}

/* A bare config.json: what lmpress reads from it (no weights). */
static int inspect_config(const char *path, bool json)
{
    lmp_config c;
    int rc = lmp_config_load(&c, path);
    if (rc)
        return rc;
    char feat[512];
    lmp_config_features(&c, feat, sizeof feat);
    long long np = (long long)lmp_config_n_params(&c);
    if (json) {
        printf("{\"path\": ");
        lmp_report_json_str(path);
        printf(", \"format\": \"config\", \"config\": {\"model_type\": \"%s\", \"arch\": \"%s\", "
               "\"hidden_size\": %d, \"intermediate_size\": %d, \"n_layers\": %d, \"n_heads\": %d, "
               "\"n_kv_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"context_length\": %d, "
               "\"rope_theta\": %g, \"rms_eps\": %g, \"tie_embeddings\": %s, \"attn_bias\": %s}, "
               "\"features\": ",
               c.model_type, c.arch, c.hidden_size, c.intermediate_size, c.n_layers, c.n_heads,
               c.n_kv_heads, c.head_dim, c.vocab_size, c.max_pos, c.rope_theta, c.rms_eps,
               c.tie_embeddings ? "true" : "false", c.attn_bias ? "true" : "false");
        lmp_report_json_str(feat);
        print_experts(&c, true);
        printf(", \"parameters\": %lld}\n", np);
        return 0;
    }
    printf("path:          %s\n", path);
    printf("format:        config.json (no weights)\n");
    printf("architecture:  %s (model_type %s)\n", c.arch, c.model_type);
    printf("hyper-params:  hidden %d, layers %d, heads %d (kv %d), head_dim %d, ffn %d, vocab %d, ctx %d\n",
           c.hidden_size, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.intermediate_size,
           c.vocab_size, c.max_pos);
    printf("               rope theta %g%s, rms eps %g, tied embeddings %s, q/k/v bias %s\n", c.rope_theta,
           c.rope_type == LMP_ROPE_LLAMA3     ? " (llama3 scaling)"
           : c.rope_type == LMP_ROPE_LINEAR   ? " (linear scaling)"
           : c.rope_type == LMP_ROPE_LONGROPE ? " (longrope)"
                                              : "",
           c.rms_eps, c.tie_embeddings ? "yes" : "no", c.attn_bias ? "yes" : "no");
    if (feat[0])
        printf("               %s\n", feat);
    print_experts(&c, false);
    printf("parameters:    %lld (%.2fM) implied by the config\n", np, (double)np / 1e6);
    return 0;
}

void lmp_job_inspect_default_params(lmp_job_inspect_params *p)
{
    memset(p, 0, sizeof *p);
}

int lmp_job_inspect_check(const lmp_job_inspect_params *p)
{
    if (!p->path)
        return lmp_err(LMP_EINVAL, "need exactly one PATH (see --help)");
    return LMP_OK;
}

int lmp_job_inspect(const lmp_job_inspect_params *p)
{
    int rc = lmp_job_inspect_check(p);
    if (rc)
        return rc;
    if (lmp_str_endswith(p->path, ".json") && !lmp_str_endswith(p->path, ".index.json"))
        return inspect_config(p->path, p->json);
    lmp_ckpt c;
    rc = lmp_ckpt_open_ex(&c, p->path, false);
    if (rc)
        return rc;
    /* one definition of parameters and bits per weight (lib/io/bpw.h): logical counts
     * (a packed int32 of eight 4-bit codes is eight parameters), whole file and linears */
    lmp_bpw bw;
    lmp_ckpt_bpw(&c, &bw);
    {
        lmp_bpw bf;
        if (lmp_path_bpw(p->path, &bf) == 0)
            bw = bf;
    }
    uint64_t params = (uint64_t)bw.params, bytes = bw.bytes;
    double bpw = bw.bpw;
    const lmp_config *cf = &c.config;
    char sh[128], b1[32];
    if (p->json) {
        printf("{\"path\": ");
        lmp_report_json_str(p->path);
        printf(", \"format\": \"%s\"", kind_name(c.kind));
        if (c.kind == LMP_CKPT_GGUF)
            printf(", \"gguf_version\": %u, \"alignment\": %u", c.gguf.version, c.gguf.alignment);
        else
            printf(", \"files\": %d", c.st.n_files);
        if (c.has_config)
            printf(", \"config\": {\"model_type\": \"%s\", \"arch\": \"%s\", \"hidden_size\": %d, "
                   "\"intermediate_size\": %d, \"n_layers\": %d, \"n_heads\": %d, \"n_kv_heads\": %d, "
                   "\"head_dim\": %d, \"vocab_size\": %d, \"context_length\": %d, \"rope_theta\": %g, "
                   "\"rms_eps\": %g, \"tie_embeddings\": %s, \"attn_bias\": %s}",
                   cf->model_type, cf->arch, cf->hidden_size, cf->intermediate_size, cf->n_layers, cf->n_heads,
                   cf->n_kv_heads, cf->head_dim, cf->vocab_size, cf->max_pos, cf->rope_theta, cf->rms_eps,
                   cf->tie_embeddings ? "true" : "false", cf->attn_bias ? "true" : "false");
        if (c.has_config) {
            char feat[512];
            lmp_config_features(cf, feat, sizeof feat);
            printf(", \"features\": ");
            lmp_report_json_str(feat);
        }
        if (c.has_config)
            print_experts(cf, true);
        printf(", \"n_tensors\": %d, \"parameters\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"file_bytes\": %" PRIu64
               ", \"bits_per_weight\": %.4f, \"linear_parameters\": %lld, \"linear_bytes\": %" PRIu64
               ", \"bits_per_weight_linear\": %.4f, \"packed\": %s",
               c.n_tensors, params, bytes, bw.file_bytes, bpw, (long long)bw.linear_params, bw.linear_bytes,
               bw.bpw_linear, bw.packed ? "true" : "false");
        if (!p->no_tensors) {
            printf(", \"tensors\": [");
            for (int i = 0; i < c.n_tensors; i++) {
                const lmp_tensor *t = &c.tensors[i];
                printf("%s{\"name\": ", i ? ", " : "");
                lmp_report_json_str(t->name);
                printf(", \"dtype\": \"%s\", \"shape\": [", lmp_dtype_info(t->dtype)->name);
                for (int d = 0; d < t->ndim; d++)
                    printf("%s%" PRId64, d ? ", " : "", t->shape[d]);
                printf("], \"bytes\": %zu}", t->nbytes);
            }
            printf("]");
        }
        printf(", \"metadata\": {");
        if (c.kind == LMP_CKPT_GGUF) {
            for (uint64_t i = 0; i < c.gguf.n_kv; i++) {
                printf("%s", i ? ", " : "");
                lmp_report_json_str(c.gguf.kv[i].key);
                printf(": ");
                print_kv_value(&c.gguf.kv[i], true);
            }
        } else {
            for (int i = 0; i < c.st.n_meta; i++) {
                printf("%s", i ? ", " : "");
                lmp_report_json_str(c.st.meta_keys[i]);
                printf(": ");
                lmp_report_json_str(c.st.meta_vals[i]);
            }
        }
        printf("}}\n");
        lmp_ckpt_close(&c);
        return 0;
    }
    printf("path:          %s\n", p->path);
    if (c.kind == LMP_CKPT_GGUF)
        printf("format:        GGUF v%u (alignment %u)\n", c.gguf.version, c.gguf.alignment);
    else
        printf("format:        %s (%d safetensors file%s)\n", kind_name(c.kind), c.st.n_files,
               c.st.n_files == 1 ? "" : "s");
    if (c.has_config) {
        printf("architecture:  %s (model_type %s)\n", cf->arch, cf->model_type);
        printf("hyper-params:  hidden %d, layers %d, heads %d (kv %d), head_dim %d, ffn %d, vocab %d, ctx %d\n",
               cf->hidden_size, cf->n_layers, cf->n_heads, cf->n_kv_heads, cf->head_dim, cf->intermediate_size,
               cf->vocab_size, cf->max_pos);
        printf("               rope theta %g%s, rms eps %g, tied embeddings %s, q/k/v bias %s\n", cf->rope_theta,
               cf->rope_type == LMP_ROPE_LLAMA3     ? " (llama3 scaling)"
               : cf->rope_type == LMP_ROPE_LINEAR   ? " (linear scaling)"
               : cf->rope_type == LMP_ROPE_LONGROPE ? " (longrope)"
                                                    : "",
               cf->rms_eps, cf->tie_embeddings ? "yes" : "no", cf->attn_bias ? "yes" : "no");
        print_experts(cf, false);
        char feat[512];
        lmp_config_features(cf, feat, sizeof feat);
        if (feat[0])
            printf("               %s\n", feat);
    } else {
        const char *gt = NULL, *ga = NULL;
        if (c.kind == LMP_CKPT_GGUF && lmp_gguf_get_str(&c.gguf, "general.type", &gt) == 0 && strcmp(gt, "adapter") == 0 &&
            lmp_gguf_get_str(&c.gguf, "general.architecture", &ga) == 0)
            printf("architecture:  %s LoRA adapter (llama.cpp adapter GGUF: load it with --lora beside a %s model)\n",
                   ga, ga);
        else
            printf("architecture:  unknown (%s)\n", c.config_error[0] ? c.config_error : "no config.json next to the weights");
    }
    if (!p->no_tensors) {
        printf("\n%-48s %-6s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
        for (int i = 0; i < c.n_tensors; i++) {
            const lmp_tensor *t = &c.tensors[i];
            printf("%-48s %-6s %-16s %12zu\n", t->name, lmp_dtype_info(t->dtype)->name, lmp_shape_str(t, sh, sizeof sh),
                   t->nbytes);
        }
    }
    char b2[32];
    printf("\ntotals:        %d tensors, %" PRIu64 " parameters (%.2fM%s), %s in tensors, %s on disk\n", c.n_tensors,
           params, (double)params / 1e6, bw.packed ? ", logical: packed codes counted one per weight" : "",
           lmp_report_bytes((double)bytes, b1, sizeof b1), lmp_report_bytes((double)bw.file_bytes, b2, sizeof b2));
    printf("bits/weight:   %.3f whole file, %.3f linear layers (%.2fM parameters)\n", bpw, bw.bpw_linear,
           (double)bw.linear_params / 1e6);
    if (c.kind == LMP_CKPT_GGUF && c.gguf.n_kv) {
        printf("\nmetadata (%" PRIu64 " keys):\n", c.gguf.n_kv);
        for (uint64_t i = 0; i < c.gguf.n_kv; i++) {
            printf("  %-40s ", c.gguf.kv[i].key);
            print_kv_value(&c.gguf.kv[i], false);
            printf("\n");
        }
    } else if (c.kind != LMP_CKPT_GGUF && c.st.n_meta) {
        printf("\nmetadata:\n");
        for (int i = 0; i < c.st.n_meta; i++)
            printf("  %-40s %s\n", c.st.meta_keys[i], c.st.meta_vals[i]);
    }
    lmp_ckpt_close(&c);
    return 0;
}
