/*
 * lmpress synth: writes a random-weight HF checkpoint (preset shapes or a config.json).
 */
#include "cli.h"
#include "jobs/args.h"
#include "lib/io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_synth(int argc, char **argv)
{
    lmp_synth_params p;
    lmp_synth_default_params(&p);
    const char *out = NULL;
    bool json = false, list = false;
    const cli_opt opts[] = {
        {"preset", 0, OPT_NAME, &p.preset, "NAME", "model shapes to use (see --list)"},
        {"config", 0, OPT_STR, &p.config_path, "FILE", "take the shapes from an HF config.json instead"},
        {"output", 'o', OPT_STR, &out, "DIR", "output folder (must not exist unless --force)"},
        {"seed", 0, OPT_U64, &p.seed, "S", "random seed (default 1); same seed, same bytes"},
        /* the metavar lists lmp_dtype's first three values in their order */
        {"dtype", 0, OPT_ENUM, &p.dtype, "f32|f16|bf16", "f32 (default), f16 or bf16"},
        {"layers", 0, OPT_I32, &p.layers, "N", "keep only the first N decoder layers (test big shapes)"},
        {"shard-mb", 0, OPT_U64, &p.shard_mb, "MB", "shard safetensors above this size (default 2048)"},
        {"force", 0, OPT_FLAG, &p.force, NULL, "replace an existing output folder"},
        {"list", 0, OPT_FLAG, &list, NULL, "list the presets and exit"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "synth", "(--preset NAME | --config config.json) -o DIR [--layers N] [--seed S] [--dtype f32|f16|bf16]",
        "Write a random-weight Hugging Face checkpoint (config.json, model.safetensors, a byte-level BPE\n"
        "tokenizer.json trained on built-in text, tokenizer_config.json, generation_config.json, and corpus.txt,\n"
        "the built-in text the tokenizer was trained on) for tests,\n"
        "benchmarks and the demo. Weights are deterministic for a seed whatever the thread count.",
        "Presets: tiny, tiny-qwen2, tiny-mistral, tiny-llama3, tiny-phi3, tiny-gemma, tiny-gemma2,\n"
        "tiny-gemma3, tiny-qwen3, tiny-smollm3, tiny-granite, tiny-olmo2 (fast tests); smollm2-135m,\n"
        "qwen2.5-0.5b, tinyllama-1.1b, llama-3.2-1b, phi-4-mini, phi-3.5-mini, gemma-3-1b, gemma-3-270m,\n"
        "gemma-2-2b, qwen3-0.6b, qwen3-4b, smollm3-3b, granite-3.3-2b, olmo2-1b (real shapes; their\n"
        "tokenizer is smaller than vocab_size). Mixture of experts: tiny-mixtral, tiny-qwen3-moe,\n"
        "tiny-granitemoe (fast tests; their routers tie the last expert's row to expert 0's, so routing\n"
        "ties occur), mixtral-8x7b and qwen3-30b-a3b (real shapes in 2 layers). --config accepts the config.json of every supported\n"
        "family (see lmpress inspect); --layers N shrinks it in depth."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (list) {
        if (json)
            printf("{\"presets\": [");
        int i = 0;
        for (const lmp_synth_preset *ps = lmp_synth_presets(); ps->name; ps++, i++) {
            /* vocab_size 0: the vocabulary is the tokenizer trained when writing, so the
             * count leaves the embeddings out and says so */
            int64_t n = lmp_config_n_params(&ps->config);
            bool no_emb = ps->config.vocab_size == 0;
            if (json) {
                printf("%s{\"name\": ", i ? ", " : "");
                cli_json_str(ps->name);
                printf(", \"summary\": ");
                cli_json_str(ps->summary);
                printf(", \"parameters\": %lld, \"embeddings_included\": %s}", (long long)n, no_emb ? "false" : "true");
                continue;
            }
            char num[32];
            if (n >= 1000000000)
                snprintf(num, sizeof num, "%.2fB", (double)n / 1e9);
            else if (n >= 1000000)
                snprintf(num, sizeof num, "%.1fM", (double)n / 1e6);
            else
                snprintf(num, sizeof num, "%.1fK", (double)n / 1e3);
            printf("%-16s %s (%s parameters%s)\n", ps->name, ps->summary, num,
                   no_emb ? " without the embeddings: the vocabulary is the tokenizer trained when writing" : "");
        }
        if (json)
            printf("]}\n");
        return 0;
    }
    static const char *const dt_name[] = {"f32", "f16", "bf16"};
    double t0 = lmp_time_s();
    int rc = lmp_job_synth_args(np ? pos[0] : NULL, out, &p);
    if (rc || (rc = lmp_synth_write(&p, out)))
        return cli_fail("synth", rc);
    double dt_s = lmp_time_s() - t0;
    if (json) {
        printf("{\"output\": ");
        cli_json_str(out);
        printf(", \"preset\": ");
        cli_json_str(p.preset ? p.preset : "");
        printf(", \"seed\": %llu, \"dtype\": \"%s\", \"seconds\": %.3f}\n", (unsigned long long)p.seed,
               dt_name[p.dtype], dt_s);
    } else {
        printf("wrote %s (%s, %s, seed %llu) in %.2fs\n", out, p.preset ? p.preset : p.config_path,
               dt_name[p.dtype], (unsigned long long)p.seed, dt_s);
    }
    return 0;
}
