/*
 * lmpress convert: HF checkpoint <-> GGUF, and dtype changes.
 */
#include "cli.h"
#include "formats/formats.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_convert(int argc, char **argv)
{
    const char *out = NULL, *dtype = NULL, *base = NULL;
    long long shard_mb = 0, threads = 0;
    bool force = false, json = false;
    const cli_opt opts[] = {
        {"output", 'o', OPT_STR, &out, "OUT", "output: *.gguf, *.safetensors, or a folder (HF layout)"},
        {"dtype", 0, OPT_STR, &dtype, "T", "f32, f16 or bf16 for weight matrices (default: keep the input's)"},
        {"base", 0, OPT_STR, &base, "BASE", "IN is a PEFT LoRA adapter: write llama.cpp's adapter GGUF for BASE"},
        {"shard-mb", 0, OPT_INT, &shard_mb, "MB", "folder output: shard safetensors above MB (default: one file)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 'f', OPT_FLAG, &force, NULL, "replace an existing output"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "convert", "IN -o OUT [--dtype f32|f16|bf16] [--force] [--json]",
        "Convert a checkpoint. IN is an HF folder, a .safetensors file or index, or a .gguf file.\n"
        "OUT ending in .gguf writes GGUF for llama.cpp: llama.cpp tensor names, Q/K rows permuted to\n"
        "ggml's RoPE order (llama architecture), 1-D tensors in f32, the general.* and <arch>.* keys,\n"
        "and the full tokenizer.ggml.* vocabulary from tokenizer.json. A folder or a .safetensors path\n"
        "writes safetensors with Hugging Face names (a folder also gets config.json and tokenizer files).\n"
        "The conversion streams tensor by tensor; the output appears only when complete. Converting to\n"
        "f16 warns when values exceed the f16 range.\n"
        "IN a PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors) with --base BASE and\n"
        "OUT.gguf writes llama.cpp's LoRA adapter GGUF (llama-cli / llama-perplexity --lora OUT.gguf):\n"
        "<tensor>.lora_a/.lora_b under llama.cpp names, B's Q/K rows in ggml's RoPE order (llama),\n"
        "adapter.lora.alpha (scales other than alpha/rank folded into B), factors in f32 (or --dtype).",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (np != 1 || !out) {
        fprintf(stderr, "lmpress convert: need IN and -o OUT (see --help)\n");
        return 2;
    }
    lmp_convert_params p;
    lmp_convert_default_params(&p);
    if (dtype) {
        p.dtype = lmp_dtype_from_name(dtype);
        if (p.dtype != LMP_DT_F32 && p.dtype != LMP_DT_F16 && p.dtype != LMP_DT_BF16) {
            fprintf(stderr, "lmpress convert: --dtype must be f32, f16 or bf16 (for quantized types use "
                            "lmpress quantize)\n");
            return 2;
        }
    }
    if (shard_mb < 0) {
        fprintf(stderr, "lmpress convert: --shard-mb must be positive\n");
        return 2;
    }
    char *cfg = lmp_path_join(pos[0], "adapter_config.json");
    bool is_adapter = cfg && lmp_path_exists(cfg);
    free(cfg);
    if (is_adapter || base) {
        if (!lmp_str_endswith(out, ".gguf")) {
            fprintf(stderr, "lmpress convert: an adapter converts to llama.cpp's adapter GGUF: OUT must end in .gguf\n");
            return 2;
        }
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
