/*
 * lmpress run: generates text from a prompt (greedy by default). Parses options, makes
 * one job call (lmp_job_run: load, tokenize, generate) and prints the text it streams.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_text(void *user, const char *bytes, size_t n)
{
    (void)user;
    fwrite(bytes, 1, n, stdout);
    fflush(stdout);
}

int cmd_run(int argc, char **argv)
{
    lmp_job_run_params p;
    lmp_job_run_default_params(&p);
    lmp_sampler_params *sp = &p.sampler;
    long long threads = 0;
    cli_strlist loras = {0};
    double lora_scale = 1;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter run unmerged beside the weights (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"prompt", 'p', OPT_STR, &p.prompt, "TEXT", "the prompt (required)"},
        {"n-predict", 'n', OPT_I32, &p.n_predict, "N", "tokens to generate (default 256)"},
        {"temp", 0, OPT_F32, &sp->temperature, "T", "temperature; 0 = greedy (default)"},
        {"top-k", 0, OPT_I32, &sp->top_k, "K", "sample from the K most likely tokens (0 = all)"},
        {"top-p", 0, OPT_F32, &sp->top_p, "P", "nucleus sampling threshold in (0, 1] (default 1)"},
        {"seed", 0, OPT_U64, &sp->seed, "S", "random seed for sampling (default 0)"},
        {"ctx", 'c', OPT_I32, &p.ctx, "N", "context size (default: the model's max positions)"},
        {"no-bos", 0, OPT_FLAG, &p.no_bos, NULL, "do not start the prompt with BOS"},
        {"ignore-eos", 0, OPT_FLAG, &p.ignore_eos, NULL, "keep going after EOS"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {0},
    };
    const cli_cmd_info info = {
        "run", "MODEL -p PROMPT [-n N] [--temp T] [--top-k K] [--top-p P] [--seed S] [--no-bos]",
        "Generate text. MODEL is an HF folder, a .safetensors file or a .gguf file. The prompt and its\n"
        "continuation are printed to stdout as they are produced, followed by a newline; timings go to\n"
        "stderr. Generation stops after N tokens, at EOS (or BOS, which ends a sequence in llama2.c-style\n"
        "models) unless --ignore-eos, or when the context is full.",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    /* all settings are checked before the model loads and before any output */
    p.model = np == 1 ? pos[0] : NULL;
    int rc = lmp_job_run_check(&p);
    if (!rc)
        rc = lmp_job_threads(threads);
    double *scales = loras.n ? malloc(sizeof(double) * (size_t)loras.n) : NULL;
    if (!rc && loras.n && !scales)
        rc = lmp_err(LMP_ENOMEM, "out of memory");
    if (rc || (loras.n && cli_lora_scales(argc, argv, "run", loras.n, scales))) {
        free(loras.v);
        free(scales);
        return rc ? cli_fail("run", rc) : 2;
    }
    p.loras = loras.v;
    p.lora_scales = scales;
    p.n_loras = loras.n;
    p.on_text = on_text;
    lmp_job_run_result res;
    rc = lmp_job_run(&p, &res);
    if (res.streamed) {
        putchar('\n');
        fflush(stdout);
    }
    free(loras.v);
    free(scales);
    if (rc)
        return cli_fail("run", rc);
    const lmp_gen_stats gs = res.gen;
    fprintf(stderr, "lmpress run: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in "
                    "%.3f s (%.2f tok/s)\n",
            gs.n_prompt, gs.prompt_s, gs.prompt_s > 0 ? gs.n_prompt / gs.prompt_s : 0, gs.n_gen,
            gs.gen_s, gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0);
    return 0;
}
