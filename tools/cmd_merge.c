/*
 * lmpress merge: PEFT LoRA adapters merged into a base checkpoint (one lmp_merge call).
 * The --lora helpers the other subcommands share are in cli_lora.c.
 */
#include "cli.h"
#include "formats/formats.h"
#include "jobs/args.h"
#include "lib/infer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_merge(int argc, char **argv)
{
    lmp_convert_params p;
    lmp_convert_default_params(&p);
    const char *out = NULL;
    cli_strlist loras = {0};
    double scale_dummy = 1;
    long long threads = 0;
    bool json = false;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT adapter folder (adapter_config.json + "
                                                  "adapter_model.safetensors); repeatable"},
        {"scale", 0, OPT_FLOAT, &scale_dummy, "S", "multiplier of the --lora before it (default 1)"},
        {"output", 'o', OPT_STR, &out, "OUT", "output: *.gguf, *.safetensors, or a folder (HF layout)"},
        /* the metavar lists lmp_dtype's first three values in their order */
        {"dtype", 0, OPT_ENUM, &p.dtype, "f32|f16|bf16", "f32, f16 or bf16 for weight matrices (default: the base's)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &p.force, NULL, "replace an existing output"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "merge", "BASE --lora ADAPTER [--scale S] [--lora ADAPTER2 [--scale S2]] -o OUT [--dtype T] [--force]",
        "Merge PEFT LoRA adapters into BASE: W' = W + S * (lora_alpha / r) * B A for every adapted weight\n"
        "(lora_alpha / sqrt(r) with use_rslora; rank_pattern / alpha_pattern per module; embeddings'\n"
        "lora_embedding_A/B; modules_to_save replace their tensor), computed in f32 and written in the\n"
        "base's dtype or --dtype. BASE is an HF folder, a .safetensors file or a .gguf; OUT's extension picks\n"
        "GGUF or safetensors as in lmpress convert. Streams tensor by tensor. A quantized GGUF base is\n"
        "dequantized, merged and re-quantized tensor by tensor to its own types; a GPTQ/AWQ/compressed-tensors\n"
        "base is refused (merge into its full-precision base, then quantize; or run it unmerged with\n"
        "lmpress ppl/run BASE --lora ADAPTER). Every adapter is checked against BASE first (modules, shapes,\n"
        "ranks): nothing is written on error. DoRA adapters are refused.",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r) {
        free(loras.v);
        return r > 0 ? 0 : 2;
    }
    double *scales = malloc(sizeof(double) * (size_t)(loras.n ? loras.n : 1));
    int ret = 0;
    int rc = lmp_job_merge_args(np == 1 ? pos[0] : NULL, loras.n, out, &p);
    if (rc || (rc = lmp_job_threads(threads))) {
        ret = cli_fail("merge", rc);
        goto done;
    }
    if (!scales || cli_lora_scales(argc, argv, "merge", loras.n, scales)) {
        ret = 2;
        goto done;
    }
    lmp_convert_result res;
    rc = lmp_merge(pos[0], loras.v, scales, loras.n, out, &p, &res);
    if (rc) {
        ret = cli_fail("merge", rc);
        goto done;
    }
    if (json) {
        printf("{\"base\": ");
        cli_json_str(pos[0]);
        printf(", \"adapters\": [");
        for (int i = 0; i < loras.n; i++) {
            printf(i ? ", {\"path\": " : "{\"path\": ");
            cli_json_str(loras.v[i]);
            printf(", \"scale\": %g}", scales[i]);
        }
        printf("], \"output\": ");
        cli_json_str(out);
        printf(", \"format\": \"%s\", \"tensors\": %d, \"merged\": %d, \"requantized\": %d, \"seconds\": %.4f, "
               "\"peak_rss\": %llu}\n",
               res.to_gguf ? "gguf" : "safetensors", res.n_tensors, res.n_merged, res.n_requantized, res.seconds,
               (unsigned long long)res.peak_rss);
    } else {
        char b1[32];
        printf("wrote %s: %d tensors, %d changed by %d adapter(s)%s in %.2fs, peak RSS %s\n", out, res.n_tensors,
               res.n_merged, loras.n, res.n_requantized ? " (quantized ones re-quantized to their type)" : "",
               res.seconds, cli_bytes((double)res.peak_rss, b1, sizeof b1));
    }
done:
    free(scales);
    free(loras.v);
    return ret;
}
