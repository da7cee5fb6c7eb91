/*
 * lmpress ppl: perplexity of a text file under a named protocol. Parses options, makes
 * one library call (lmp_ppl_text) and prints; the protocols live in lib/infer/ppl.c.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/infer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_progress(void *user, int done, int total)
{
    lmp_progress *p = user;
    p->total = (uint64_t)total;
    lmp_progress_update(p, (uint64_t)done);
}

int cmd_ppl(int argc, char **argv)
{
    lmp_ppl_params p = lmp_ppl_default_params();
    const char *file = NULL;
    long long threads = 0;
    bool json = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter run unmerged beside the weights (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"file", 'f', OPT_STR, &file, "TEXT", "text file to score (required)"},
        /* the metavar lists lmp_ppl_protocol in its order */
        {"protocol", 0, OPT_ENUM, &p.protocol, "gptq|llamacpp|windows", "gptq (default), llamacpp or windows"},
        {"ctx", 'c', OPT_I32, &p.ctx, "N", "window size (default: 2048 / 512 / 256 by protocol, at most the model's)"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.allow_long_ctx, NULL, "accept --ctx above the model's max_position_embeddings"},
        {"chunks", 0, OPT_I32, &p.max_chunks, "K", "score at most K windows (default all)"},
        {"max-bytes", 0, OPT_U64, &p.max_bytes, "N", "use only the first N bytes of the text"},
        {"strip-cr", 0, OPT_FLAG, &p.strip_cr, NULL, "remove carriage returns before tokenizing"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "ppl", "MODEL -f TEXT [--protocol gptq|llamacpp|windows] [--ctx N] [--chunks K] [--json]",
        "Perplexity of MODEL on a text file, with llama.cpp's standard error. The protocols give\n"
        "different numbers for the same model and text; say which one you report.",
        "Protocols:\n"
        "  gptq      IST-DASLab/gptq (GPTQ, AWQ, Wanda papers): the text tokenized once (with BOS at the\n"
        "            start when the tokenizer adds one), non-overlapping windows of ctx tokens (tail\n"
        "            dropped), logits shifted, ctx-1 tokens scored per window. Default ctx 2048.\n"
        "  llamacpp  llama.cpp llama-perplexity: chunks of ctx tokens, the first of each replaced by BOS,\n"
        "            only the second half scored (ctx/2-1 tokens per chunk); needs 2*ctx tokens. ctx 512.\n"
        "  windows   llama2.c run.c: tokenized without BOS, windows of ctx tokens fed as BOS + the first\n"
        "            ctx-1, all ctx scored. Default ctx 256. The fixtures' run.c figures use\n"
        "            --max-bytes 20000 --strip-cr.\n"
        "The default ctx is the protocol's, capped to the model's max_position_embeddings; a longer --ctx\n"
        "is refused unless --allow-long-ctx.\n"
        "tokens/s counts every token evaluated (windows x ctx) over the model time."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (np != 1 || !file) {
        fprintf(stderr, "lmpress ppl: need one MODEL and -f TEXT (see --help)\n");
        return 2;
    }
    int rc = threads < 0 ? lmp_err(LMP_EINVAL, "--threads %lld: must be >= 0", threads) : lmp_ppl_check(&p);
    if (rc) {
        free(loras.v);
        return cli_fail("ppl", rc);
    }
    lmp_set_num_threads((int)threads);

    char *text = NULL;
    size_t len = 0;
    lmp_model *m = NULL;
    rc = lmp_read_file(file, &text, &len);
    if (rc)
        return cli_fail("ppl", rc);
    if (len == 0) {
        free(text);
        lmp_err(LMP_EINVAL, "%s: the text file is empty", file);
        return cli_fail("ppl", LMP_EINVAL);
    }
    if ((rc = lmp_model_load_any(&m, pos[0]))) {
        free(text);
        return cli_fail("ppl", rc);
    }
    if ((rc = cli_lora_attach("ppl", argc, argv, &loras, m))) {
        free(text);
        free(loras.v);
        lmp_model_free(m);
        return rc;
    }
    lmp_progress bar;
    lmp_progress_begin(&bar, "ppl", 0);
    p.progress = on_progress;
    p.user = &bar;
    lmp_ppl_result res;
    rc = lmp_ppl_text(m, text, len, &p, &res);
    lmp_progress_end(&bar);
    if (rc) {
        rc = lmp_err_prefix(rc, "%s", file);
        goto done;
    }
    if (json) {
        printf("{\"ppl\": %.6f, \"stderr\": %.6f, \"tokens\": %lld, \"tokens_per_s\": %.1f, "
               "\"protocol\": \"%s\", \"ctx\": %d, \"windows\": %d, \"nll\": %.6f, "
               "\"tokens_fed\": %lld, \"seconds\": %.3f, \"model\": ",
               res.ppl, res.ppl_stderr, (long long)res.n_scored, res.tokens_per_s,
               lmp_ppl_protocol_name(p.protocol), res.ctx, res.n_windows, res.nll_mean,
               (long long)res.n_fed, res.seconds);
        cli_json_str(pos[0]);
        printf(", \"text\": ");
        cli_json_str(file);
        printf("}\n");
    } else {
        printf("ppl %.4f +/- %.5f  (%s protocol, ctx %d, %d windows, %lld tokens scored, "
               "%.1f tokens/s)\n",
               res.ppl, res.ppl_stderr, lmp_ppl_protocol_name(p.protocol), res.ctx,
               res.n_windows, (long long)res.n_scored, res.tokens_per_s);
    }
done:
    free(text);
    free(loras.v);
    lmp_model_free(m);
    return rc ? cli_fail("ppl", rc) : 0;
}
