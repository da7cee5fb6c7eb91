/*
 * lmpress synth: writes a random-weight HF checkpoint (preset shapes or a config.json).
 */
#include "cli.h"
#include "lib/io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_synth(int argc, char **argv)
{
    const char *preset = NULL, *config = NULL, *out = NULL, *dtype = "f32";
    long long seed = 1, shard_mb = 2048, layers = 0;
    bool force = false, json = false, list = false;
    const cli_opt opts[] = {
        {"preset", 0, OPT_STR, &preset, "NAME", "model shapes to use (see --list)"},
        {"config", 0, OPT_STR, &config, "FILE", "take the shapes from an HF config.json instead"},
        {"output", 'o', OPT_STR, &out, "DIR", "output folder (must not exist unless --force)"},
        {"seed", 0, OPT_INT, &seed, "S", "random seed (default 1); same seed, same bytes"},
        {"dtype", 0, OPT_STR, &dtype, "T", "f32 (default), f16 or bf16"},
        {"layers", 0, OPT_INT, &layers, "N", "keep only the first N decoder layers (test big shapes)"},
        {"shard-mb", 0, OPT_INT, &shard_mb, "MB", "shard safetensors above this size (default 2048)"},
        {"force", 'f', OPT_FLAG, &force, NULL, "replace an existing output folder"},
        {"list", 0, OPT_FLAG, &list, NULL, "list the presets and exit"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "synth", "(--preset NAME | --config config.json) -o DIR [--seed S] [--dtype f32|f16|bf16]",
        "Write a random-weight Hugging Face checkpoint (config.json, model.safetensors, a byte-level BPE\n"
        "tokenizer.json trained on built-in text, tokenizer_config.json, generation_config.json, and corpus.txt,\n"
        "the built-in text the tokenizer was trained on) for tests,\n"
        "benchmarks and the demo. Weights are deterministic for a seed whatever the thread count.",
        "Presets: tiny, tiny-qwen2, tiny-mistral, tiny-llama3, tiny-phi3, tiny-gemma, tiny-gemma2,\n"
        "tiny-gemma3, tiny-qwen3, tiny-smollm3, tiny-granite, tiny-olmo2 (fast tests); smollm2-135m,\n"
        "qwen2.5-0.5b, tinyllama-1.1b, llama-3.2-1b, phi-4-mini, phi-3.5-mini, gemma-3-1b, gemma-3-270m,\n"
        "gemma-2-2b, qwen3-0.6b, qwen3-4b, smollm3-3b, granite-3.3-2b, olmo2-1b (real shapes; their\n"
        "tokenizer is smaller than vocab_size). --config accepts the config.json of every supported\n"
        "family (see lmpress inspect); --layers N shrinks it in depth."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (list) {
        for (const lmp_synth_preset *p = lmp_synth_presets(); p->name; p++)
            printf("%-16s %s (%.1fM parameters)\n", p->name, p->summary,
                   p->config.vocab_size ? lmp_config_n_params(&p->config) / 1e6 : 0.0);
        return 0;
    }
    if (np) {
        fprintf(stderr, "lmpress synth: unexpected argument '%s'\n", pos[0]);
        return 2;
    }
    if (!out || (!preset == !config)) {
        fprintf(stderr, "lmpress synth: need -o DIR and exactly one of --preset or --config (see --help)\n");
        return 2;
    }
    lmp_synth_params p;
    lmp_synth_default_params(&p);
    if (preset) {
        const lmp_synth_preset *ps = lmp_synth_find(preset);
        if (!ps) {
            fprintf(stderr, "lmpress synth: unknown preset '%s' (see --list)\n", preset);
            return 2;
        }
        p.config = ps->config;
    } else {
        int rc = lmp_config_load(&p.config, config);
        if (rc)
            return cli_fail("synth", rc);
    }
    if (layers) {
        int rc = lmp_config_set_layers(&p.config, layers > 0 && layers <= LMP_MAX_LAYERS ? (int)layers : -1);
        if (rc)
            return cli_fail("synth", lmp_err_prefix(rc, "--layers"));
    }
    int dt = lmp_dtype_from_name(dtype);
    if (dt != LMP_DT_F32 && dt != LMP_DT_F16 && dt != LMP_DT_BF16) {
        fprintf(stderr, "lmpress synth: --dtype must be f32, f16 or bf16\n");
        return 2;
    }
    if (shard_mb < 1) {
        fprintf(stderr, "lmpress synth: --shard-mb must be at least 1\n");
        return 2;
    }
    p.dtype = (lmp_dtype)dt;
    p.seed = (uint64_t)seed;
    p.force = force;
    p.shard_bytes = (uint64_t)shard_mb << 20;
    double t0 = lmp_time_s();
    int rc = lmp_synth_write(&p, out);
    if (rc)
        return cli_fail("synth", rc);
    double dt_s = lmp_time_s() - t0;
    int64_t np_ = lmp_config_n_params(&p.config);
    if (json) {
        printf("{\"output\": ");
        cli_json_str(out);
        printf(", \"preset\": ");
        cli_json_str(preset ? preset : "");
        printf(", \"seed\": %lld, \"dtype\": \"%s\", \"seconds\": %.3f}\n", seed, dtype, dt_s);
    } else {
        printf("wrote %s (%s, %s, seed %lld) in %.2fs\n", out, preset ? preset : config, dtype, seed, dt_s);
    }
    (void)np_;
    return 0;
}
