/*
 * lmpress run: generates text from a prompt (greedy by default). Parses options, makes
 * the library calls (lmp_model_load, lmp_model_tokenize, lmp_generate) and prints; no
 * algorithm code here.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/infer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Streams the text as it grows: the whole sequence (prompt + new tokens) is decoded
 * after each token and the bytes not yet printed are written, holding back a trailing
 * U+FFFD that may still become a character when the next byte token arrives. */
typedef struct {
    const lmp_model *m;
    int32_t *ids;
    int n, cap;
    size_t printed;
    int rc;
} stream;

static int stream_flush(stream *st, bool final)
{
    char *text = NULL;
    size_t len = 0;
    int rc = lmp_model_detokenize(st->m, st->ids, st->n, &text, &len);
    if (rc)
        return rc;
    size_t upto = len;
    if (!final && len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0)
        upto = len - 3;
    if (upto > st->printed) {
        fwrite(text + st->printed, 1, upto - st->printed, stdout);
        fflush(stdout);
        st->printed = upto;
    }
    free(text);
    return 0;
}

static int on_token(void *user, int32_t tok)
{
    stream *st = user;
    if (st->n < st->cap)
        st->ids[st->n++] = tok;
    return (st->rc = stream_flush(st, false));
}

int cmd_run(int argc, char **argv)
{
    const char *prompt = NULL;
    lmp_sampler_params sp = lmp_sampler_default_params();
    long long n_new = 256, ctx = 0, threads = 0;
    bool no_bos = false, ignore_eos = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter run unmerged beside the weights (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"prompt", 'p', OPT_STR, &prompt, "TEXT", "the prompt (required)"},
        {"n-predict", 'n', OPT_INT, &n_new, "N", "tokens to generate (default 256)"},
        {"temp", 0, OPT_F32, &sp.temperature, "T", "temperature; 0 = greedy (default)"},
        {"top-k", 0, OPT_I32, &sp.top_k, "K", "sample from the K most likely tokens (0 = all)"},
        {"top-p", 0, OPT_F32, &sp.top_p, "P", "nucleus sampling threshold in (0, 1] (default 1)"},
        {"seed", 0, OPT_U64, &sp.seed, "S", "random seed for sampling (default 0)"},
        {"ctx", 'c', OPT_INT, &ctx, "N", "context size (default: the model's max positions)"},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not start the prompt with BOS"},
        {"ignore-eos", 0, OPT_FLAG, &ignore_eos, NULL, "keep going after EOS"},
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
    if (np != 1 || !prompt) {
        fprintf(stderr, "lmpress run: need one MODEL and -p PROMPT (see --help)\n");
        return 2;
    }
    if (n_new < 0 || n_new > 1000000 || ctx < 0 || ctx > 1 << 24 || threads < 0) {
        fprintf(stderr, "lmpress run: -n, --ctx and --threads must be >= 0 (and sane)\n");
        return 2;
    }
    /* sampling settings are checked before the model loads and before any output */
    int rc = lmp_sampler_check(&sp);
    if (rc)
        return cli_fail("run", rc);
    lmp_set_num_threads((int)threads);

    lmp_model *m = NULL;
    lmp_session *s = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    stream st = {0};
    rc = lmp_model_load_any(&m, pos[0]);
    if (rc) {
        free(loras.v);
        return cli_fail("run", rc);
    }
    if ((rc = cli_lora_attach("run", argc, argv, &loras, m))) {
        free(loras.v);
        lmp_model_free(m);
        return rc;
    }
    if ((rc = lmp_model_tokenize(m, prompt, strlen(prompt), !no_bos, &ids, &n_ids)))
        goto done;
    if (n_ids == 0) {
        rc = lmp_err(LMP_EINVAL, "the prompt gives no tokens (try without --no-bos)");
        goto done;
    }
    if ((rc = lmp_session_new(&s, m, (int)ctx)))
        goto done;
    if (n_ids > lmp_session_n_ctx(s)) {
        rc = lmp_err(LMP_EINVAL, "the prompt is %lld tokens, longer than the context of %d",
                     (long long)n_ids, lmp_session_n_ctx(s));
        goto done;
    }
    st.m = m;
    st.cap = (int)n_ids + (int)n_new;
    st.ids = malloc(sizeof(int32_t) * (size_t)(st.cap > 0 ? st.cap : 1));
    if (!st.ids) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(st.ids, ids, sizeof(int32_t) * (size_t)n_ids);
    st.n = (int)n_ids;
    if ((rc = stream_flush(&st, false)))
        goto done;
    lmp_gen_stats gs;
    int n_out = 0;
    rc = lmp_generate(s, ids, (int)n_ids, (int)n_new, &sp, !ignore_eos, on_token, &st, NULL,
                      &n_out, &gs);
    if (!rc)
        rc = st.rc;
    if (!rc)
        rc = stream_flush(&st, true);
    putchar('\n');
    fflush(stdout);
    if (rc)
        goto done;
    fprintf(stderr, "lmpress run: prompt %d tokens in %.3f s (%.1f tok/s); generated %d tokens in "
                    "%.3f s (%.2f tok/s)\n",
            gs.n_prompt, gs.prompt_s, gs.prompt_s > 0 ? gs.n_prompt / gs.prompt_s : 0, gs.n_gen,
            gs.gen_s, gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0);
done:
    free(loras.v);
    free(st.ids);
    free(ids);
    lmp_session_free(s);
    lmp_model_free(m);
    return rc ? cli_fail("run", rc) : 0;
}
