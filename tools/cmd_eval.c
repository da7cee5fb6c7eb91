/*
 * lmpress eval: KL divergence of a model against teacher logits stored by
 * `lmpress distill export`, with llama.cpp's statistics. One job call (jobs/eval.h:
 * load, lmp_distill_eval) and its printer.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/eval.h"

#include <stdio.h>
#include <stdlib.h>

int cmd_eval(int argc, char **argv)
{
    lmp_job_eval_params p;
    lmp_job_eval_default_params(&p);
    long long threads = 0;
    bool json = false;
    const cli_opt opts[] = {
        {"base", 0, OPT_STR, &p.base, "FILE", "teacher logits (lmpress distill export; required)"},
        {"chunks", 0, OPT_I32, &p.kld.max_seqs, "K", "evaluate at most K sequences (default all)"},
        {"skip", 0, OPT_I32, &p.kld.skip, "N", "ignore the first N positions of each sequence (llama.cpp: ctx/2)"},
        {"topk", 0, OPT_FLAG, &p.kld.use_topk, NULL, "use the top-k estimate even when full log-probs are stored"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.kld.allow_long_ctx, NULL, "accept a file whose sequences are longer than MODEL's context"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "eval", "MODEL --base logits.h5 [--json] [--chunks K] [--skip N] [--topk]",
        "KL divergence of MODEL against the stored teacher on the stored tokens: mean with its\n"
        "standard error, percentiles, same top p, delta-p (mean, RMS), both perplexities and their ratio.",
        "With full log-probs in the file the KLD is exact. With top-k only it is KL over the k ids plus\n"
        "one bucket for the rest: a lower bound of the true KLD; 'gap bound' is the mean of a per-position\n"
        "upper bound of the difference (docs/formats/logits.md): the true KLD lies between the estimate and\n"
        "the estimate plus the gap bound. It is a worst case, not an estimate, so it can exceed the KLD.\n"
        "A per-position KLD below 0 is rounding noise of stored log-probs (f16 above all); the percentiles\n"
        "clamp it at 0 and say how many positions it was, the mean keeps it. The perplexities are at the file's\n"
        "temperature (1 unless exported otherwise) and count the positions that have a next token."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    p.model = np == 1 ? pos[0] : NULL;
    int rc = lmp_job_eval_check(&p);
    lmp_kld_result k;
    if (rc || (rc = lmp_job_threads(threads)) || (rc = lmp_job_eval(&p, &k)))
        return cli_fail("eval", rc);
    lmp_report_eval(&p, &k, json);
    return 0;
}
