/*
 * lmpress inspect: architecture, hyper-parameters, tensor table, totals and metadata of
 * an HF folder, a .safetensors file or index, or a .gguf file.
 */
#include "cli.h"
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
            cli_json_str(kv->v.str);
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

/* A bare config.json: what lmpress reads from it (no weights). */
static int inspect_config(const char *path, bool json)
{
    lmp_config c;
    int rc = lmp_config_load(&c, path);
    if (rc)
        return cli_fail("inspect", rc);
    char feat[512];
    lmp_config_features(&c, feat, sizeof feat);
    long long np = (long long)lmp_config_n_params(&c);
    if (json) {
        printf("{\"path\": ");
        cli_json_str(path);
        printf(", \"format\": \"config\", \"config\": {\"model_type\": \"%s\", \"arch\": \"%s\", "
               "\"hidden_size\": %d, \"intermediate_size\": %d, \"n_layers\": %d, \"n_heads\": %d, "
               "\"n_kv_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d, \"context_length\": %d, "
               "\"rope_theta\": %g, \"rms_eps\": %g, \"tie_embeddings\": %s, \"attn_bias\": %s}, "
               "\"features\": ",
               c.model_type, c.arch, c.hidden_size, c.intermediate_size, c.n_layers, c.n_heads,
               c.n_kv_heads, c.head_dim, c.vocab_size, c.max_pos, c.rope_theta, c.rms_eps,
               c.tie_embeddings ? "true" : "false", c.attn_bias ? "true" : "false");
        cli_json_str(feat);
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
    printf("parameters:    %lld (%.2fM) implied by the config\n", np, (double)np / 1e6);
    return 0;
}

int cmd_inspect(int argc, char **argv)
{
    bool json = false, no_tensors = false;
    const cli_opt opts[] = {
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
        {"no-tensors", 0, OPT_FLAG, &no_tensors, NULL, "omit the per-tensor table"},
        {0},
    };
    const cli_cmd_info info = {
        "inspect", "PATH [--json] [--no-tensors]",
        "Show the architecture and hyper-parameters, a tensor table (name, dtype, shape, bytes), totals\n"
        "(parameters, bytes, bits per weight) and metadata of PATH: an HF folder, a .safetensors file,\n"
        "a model.safetensors.index.json, or a .gguf file. A bare config.json is described too (what\n"
        "lmpress reads from it, the parameter count it implies).",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (np != 1) {
        fprintf(stderr, "lmpress inspect: need exactly one PATH (see --help)\n");
        return 2;
    }
    if (lmp_str_endswith(pos[0], ".json") && !lmp_str_endswith(pos[0], ".index.json"))
        return inspect_config(pos[0], json);
    lmp_ckpt c;
    int rc = lmp_ckpt_open_ex(&c, pos[0], false);
    if (rc)
        return cli_fail("inspect", rc);
    uint64_t params = 0, bytes = 0;
    for (int i = 0; i < c.n_tensors; i++) {
        params += (uint64_t)lmp_tensor_nelem(&c.tensors[i]);
        bytes += c.tensors[i].nbytes;
    }
    double bpw = params ? 8.0 * (double)bytes / (double)params : 0;
    const lmp_config *cf = &c.config;
    char sh[128], b1[32];
    if (json) {
        printf("{\"path\": ");
        cli_json_str(pos[0]);
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
            cli_json_str(feat);
        }
        printf(", \"n_tensors\": %d, \"parameters\": %" PRIu64 ", \"bytes\": %" PRIu64 ", \"bits_per_weight\": %.4f",
               c.n_tensors, params, bytes, bpw);
        if (!no_tensors) {
            printf(", \"tensors\": [");
            for (int i = 0; i < c.n_tensors; i++) {
                const lmp_tensor *t = &c.tensors[i];
                printf("%s{\"name\": ", i ? ", " : "");
                cli_json_str(t->name);
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
                cli_json_str(c.gguf.kv[i].key);
                printf(": ");
                print_kv_value(&c.gguf.kv[i], true);
            }
        } else {
            for (int i = 0; i < c.st.n_meta; i++) {
                printf("%s", i ? ", " : "");
                cli_json_str(c.st.meta_keys[i]);
                printf(": ");
                cli_json_str(c.st.meta_vals[i]);
            }
        }
        printf("}}\n");
        lmp_ckpt_close(&c);
        return 0;
    }
    printf("path:          %s\n", pos[0]);
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
    if (!no_tensors) {
        printf("\n%-48s %-6s %-16s %12s\n", "tensor", "dtype", "shape", "bytes");
        for (int i = 0; i < c.n_tensors; i++) {
            const lmp_tensor *t = &c.tensors[i];
            printf("%-48s %-6s %-16s %12zu\n", t->name, lmp_dtype_info(t->dtype)->name, lmp_shape_str(t, sh, sizeof sh),
                   t->nbytes);
        }
    }
    printf("\ntotals:        %d tensors, %" PRIu64 " parameters (%.2fM), %s, %.3f bits per weight\n", c.n_tensors,
           params, (double)params / 1e6, cli_bytes((double)bytes, b1, sizeof b1), bpw);
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
