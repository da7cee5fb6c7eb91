/*
 * lmpress convert: HF checkpoint <-> GGUF, and dtype changes.
 */
#include "cli.h"
#include "formats/formats.h"
#include "jobs/args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_convert(int argc, char **argv)
{
    const char *out = NULL, *dtype = NULL, *split = NULL, *base = NULL;
    uint64_t split_max = 0;
    long long shard_mb = 0, threads = 0;
    bool force = false, json = false;
    const cli_opt opts[] = {
        {"output", 'o', OPT_STR, &out, "OUT", "output: *.gguf, *.safetensors, or a folder (HF layout)"},
        {"dtype", 0, OPT_NAME, &dtype, "T", "f32, f16 or bf16 for weight matrices (default: keep the input's)"},
        {"base", 0, OPT_STR, &base, "BASE", "IN is a PEFT LoRA adapter: write llama.cpp's adapter GGUF for BASE"},
        {"shard-mb", 0, OPT_INT, &shard_mb, "MB", "folder output: shard safetensors above MB (default: one file)"},
        {"split-max-size", 0, OPT_STR, &split, "N[M|G]", "GGUF: split into files of at most N bytes of tensors "
                                                        "(llama-gguf-split's layout; M = 10^6, G = 10^9)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &force, NULL, "replace an existing output"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "convert", "IN -o OUT [--dtype f32|f16|bf16] [--force] [--json]",
        "Convert a checkpoint. IN is an HF folder, a .safetensors file or index, or a .gguf file.\n"
        "OUT ending in .gguf (any case) writes GGUF for llama.cpp: llama.cpp tensor names, Q/K rows permuted to\n"
        "ggml's RoPE order (llama architecture), 1-D tensors in f32, the general.* and <arch>.* keys,\n"
        "and the full tokenizer.ggml.* vocabulary from tokenizer.json (or vocab.json + merges.txt) with\n"
        "the special-token ids and the chat template (tokenizer_config.json or chat_template.jinja).\n"
        "A folder or a .safetensors path writes safetensors with Hugging Face names (a folder also gets\n"
        "config.json and the tokenizer files: copied from an HF input, made from a GGUF's vocabulary as\n"
        "tokenizer.json + tokenizer_config.json with the special tokens and chat template).\n"
        "Other file-like names (x.ggml, x.bin) are refused rather than made into a folder.\n"
        "The conversion streams tensor by tensor; the output appears only when complete. Converting to\n"
        "f16 warns when values exceed the f16 range. A GGUF written from a model with a chat template gets\n"
        "an Ollama Modelfile beside it (NAME.Modelfile); --split-max-size writes llama.cpp split files.\n"
        "IN a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) with --base BASE and\n"
        "OUT.gguf writes llama.cpp's LoRA adapter GGUF (llama-cli / llama-perplexity --lora OUT.gguf):\n"
        "<tensor>.lora_a/.lora_b under llama.cpp names, B's Q/K rows in ggml's RoPE order (llama),\n"
        "adapter.lora.alpha (scales other than alpha/rank folded into B), factors in f32 (or --dtype).",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    const char *in = np == 1 ? pos[0] : NULL;
    char *cfg = in ? lmp_path_join(in, "adapter_config.json") : NULL;
    bool is_adapter = (cfg && lmp_path_exists(cfg)) || base;
    free(cfg);
    if (split && cli_parse_size("convert", split, &split_max) && in && out)
        return 2;
    int e = lmp_job_convert_args(in, out, split, dtype, shard_mb, is_adapter);
    if (e)
        return cli_fail("convert", e);
    lmp_convert_params p;
    lmp_convert_default_params(&p);
    if (dtype)
        p.dtype = lmp_dtype_from_name(dtype);
    if (is_adapter) {
        lmp_convert_result ar;
        int arc = lmp_lora_to_gguf(pos[0], base, out, force, p.dtype, &ar);
        if (arc)
            return cli_fail("convert", arc);
        if (json) {
            printf("{\"input\": ");
            cli_json_str(pos[0]);
            printf(", \"output\": ");
            cli_json_str(out);
            printf(", \"format\": \"gguf-lora\", \"tensors\": %d, \"parameters\": %llu, \"seconds\": %.4f}\n",
                   ar.n_tensors, (unsigned long long)ar.params, ar.seconds);
        } else {
            printf("wrote %s: llama.cpp LoRA adapter, %d tensors, %llu parameters in %.2fs\n", out, ar.n_tensors,
                   (unsigned long long)ar.params, ar.seconds);
        }
        return 0;
    }
    p.shard_bytes = (uint64_t)shard_mb << 20;
    p.force = force;
    lmp_set_num_threads((int)threads);
    lmp_convert_result res;
    int rc = lmp_convert(pos[0], out, &p, &res);
    if (rc)
        return cli_fail("convert", rc);
    if (res.to_gguf && (rc = cli_gguf_deploy("convert", out, pos[0], split_max, force, json)))
        return rc;
    double gbps = res.seconds > 0 ? (double)res.bytes_in / res.seconds / 1e9 : 0;
    if (json) {
        printf("{\"input\": ");
        cli_json_str(pos[0]);
        printf(", \"output\": ");
        cli_json_str(out);
        printf(", \"format\": \"%s\", \"tensors\": %d, \"parameters\": %llu, \"bytes_in\": %llu, "
               "\"bytes_out\": %llu, \"seconds\": %.4f, \"gb_per_s\": %.3f, \"peak_rss\": %llu, "
               "\"f16_overflow\": %llu}\n",
               res.to_gguf ? "gguf" : "safetensors", res.n_tensors, (unsigned long long)res.params,
               (unsigned long long)res.bytes_in, (unsigned long long)res.bytes_out, res.seconds, gbps,
               (unsigned long long)res.peak_rss, (unsigned long long)res.f16_overflow);
    } else {
        char b1[32], b2[32], b3[32];
        printf("wrote %s: %d tensors, %s -> %s in %.2fs (%.2f GB/s), peak RSS %s\n", out, res.n_tensors,
               cli_bytes((double)res.bytes_in, b1, sizeof b1), cli_bytes((double)res.bytes_out, b2, sizeof b2),
               res.seconds, gbps, cli_bytes((double)res.peak_rss, b3, sizeof b3));
    }
    return 0;
}
