/*
 * lmpress ppl: perplexity of a text file under a named protocol. Parses options into
 * lmp_job_ppl_params, makes one job call (jobs/ppl.h: read, load, adapters, score) and
 * prints; the protocols live in lib/infer/ppl.c.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/ppl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_ppl(int argc, char **argv)
{
    lmp_job_ppl_params p;
    lmp_job_ppl_default_params(&p);
    long long threads = 0;
    bool json = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter run unmerged beside the weights (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"file", 'f', OPT_STR, &p.text, "TEXT", "text file to score (required)"},
        /* the metavar lists lmp_ppl_protocol in its order */
        {"protocol", 0, OPT_ENUM, &p.ppl.protocol, "gptq|llamacpp|windows", "gptq (default), llamacpp or windows"},
        {"ctx", 'c', OPT_I32, &p.ppl.ctx, "N", "window size (default: 2048 / 512 / 256 by protocol, at most the model's)"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.ppl.allow_long_ctx, NULL, "accept --ctx above the model's max_position_embeddings"},
        {"chunks", 0, OPT_I32, &p.ppl.max_chunks, "K", "score at most K windows (default all)"},
        {"max-bytes", 0, OPT_U64, &p.ppl.max_bytes, "N", "use only the first N bytes of the text"},
        {"strip-cr", 0, OPT_FLAG, &p.ppl.strip_cr, NULL, "remove carriage returns before tokenizing"},
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
    p.model = np == 1 ? pos[0] : NULL;
    p.n_loras = loras.n;
    p.loras = loras.v;
    double *scales = loras.n ? malloc(sizeof(double) * (size_t)loras.n) : NULL;
    int rc = loras.n && !scales ? lmp_err(LMP_ENOMEM, "out of memory") : lmp_job_ppl_check(&p);
    if (!rc)
        rc = lmp_job_threads(threads);
    if (rc || (loras.n && cli_lora_scales(argc, argv, "ppl", loras.n, scales))) {
        free(loras.v);
        free(scales);
        return rc ? cli_fail("ppl", rc) : 2;
    }
    p.lora_scales = scales;
    lmp_ppl_result res;
    rc = lmp_job_ppl(&p, &res);
    if (!rc)
        lmp_report_ppl(&p, &res, json);
    free(loras.v);
    free(scales);
    return rc ? cli_fail("ppl", rc) : 0;
}
