/*
 * lmpress eval: KL divergence of a model against teacher logits stored by
 * `lmpress distill export`, with llama.cpp's statistics. One lmp_distill_eval call.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/distill/distill.h"

#include <stdio.h>
#include <stdlib.h>

static void on_progress(void *user, int done, int total)
{
    lmp_progress *p = user;
    p->total = (uint64_t)total;
    lmp_progress_update(p, (uint64_t)done);
}

int cmd_eval(int argc, char **argv)
{
    lmp_kld_params p = lmp_kld_default_params();
    const char *base = NULL;
    long long threads = 0;
    bool json = false;
    const cli_opt opts[] = {
        {"base", 0, OPT_STR, &base, "FILE", "teacher logits (lmpress distill export; required)"},
        {"chunks", 0, OPT_I32, &p.max_seqs, "K", "evaluate at most K sequences (default all)"},
        {"skip", 0, OPT_I32, &p.skip, "N", "ignore the first N positions of each sequence (llama.cpp: ctx/2)"},
        {"topk", 0, OPT_FLAG, &p.use_topk, NULL, "use the top-k estimate even when full log-probs are stored"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.allow_long_ctx, NULL, "accept a file whose sequences are longer than MODEL's context"},
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
    if (np != 1 || !base) {
        fprintf(stderr, "lmpress eval: need one MODEL and --base FILE (see --help)\n");
        return 2;
    }
    int rc = threads < 0 ? lmp_err(LMP_EINVAL, "--threads %lld: must be >= 0", threads) : lmp_kld_check(&p);
    if (rc)
        return cli_fail("eval", rc);
    lmp_set_num_threads((int)threads);
    lmp_model *m = NULL;
    if ((rc = lmp_model_load_any(&m, pos[0])))
        return cli_fail("eval", rc);
    lmp_progress bar;
    lmp_progress_begin(&bar, "eval", 0);
    p.progress = on_progress;
    p.user = &bar;
    lmp_kld_result k;
    rc = lmp_distill_eval(m, base, &p, &k);
    lmp_progress_end(&bar);
    lmp_model_free(m);
    if (rc)
        return cli_fail("eval", rc);
    if (json) {
        printf("{\"model\": ");
        cli_json_str(pos[0]);
        printf(", \"base\": ");
        cli_json_str(base);
        printf(", \"exact\": %s, \"k\": %d, \"kld\": %.9g, \"kld_stderr\": %.9g, \"kld_percentiles\": {",
               k.exact ? "true" : "false", k.k, k.kld_mean, k.kld_stderr);
        for (int i = 0; i < LMP_KLD_NPCT; i++)
            printf("%s\"%s\": %.9g", i ? ", " : "", lmp_kld_pct_name[i], k.kld_pct[i]);
        printf("}");
        if (k.has_topk)
            printf(", \"kld_topk\": %.9g, \"kld_topk_gap_bound\": %.9g", k.kld_topk, k.kld_topk_gap_bound);
        printf(", \"kld_negative_positions\": %lld, \"kld_min_raw\": %.9g", (long long)k.n_kld_negative, k.kld_min_raw);
        printf(", \"same_top\": %.9g, \"same_top_stderr\": %.9g, \"dp_mean\": %.9g, \"dp_stderr\": %.9g, "
               "\"dp_rms\": %.9g, \"dp_rms_stderr\": %.9g, \"ppl_base\": %.9g, \"ppl_base_stderr\": %.9g, "
               "\"ppl\": %.9g, \"ppl_stderr\": %.9g, \"ppl_ratio\": %.9g, \"ln_ppl_ratio\": %.9g, "
               "\"ln_ppl_ratio_stderr\": %.9g, \"positions\": %lld, \"scored\": %lld, \"sequences\": %d, "
               "\"ctx\": %d, \"temperature\": %g, \"seconds\": %.3f, \"tokens_per_s\": %.1f}\n",
               k.same_top, k.same_top_stderr, k.dp_mean, k.dp_stderr, k.dp_rms, k.dp_rms_stderr, k.ppl_base,
               k.ppl_base_stderr, k.ppl_model, k.ppl_model_stderr, k.ppl_ratio, k.ln_ppl_ratio,
               k.ln_ppl_ratio_stderr, (long long)k.n_kld, (long long)k.n_scored, k.n_seqs, k.ctx,
               k.temperature, k.seconds, k.tokens_per_s);
        return 0;
    }
    printf("%d sequences x %d positions (%lld in the statistics, %lld with a next token), %s\n", k.n_seqs,
           k.ctx, (long long)k.n_kld, (long long)k.n_scored,
           k.exact ? "exact (full log-probs)" : "top-k estimate");
    printf("Mean    KLD: %10.6f +/- %10.6f\n", k.kld_mean, k.kld_stderr);
    for (int i = 0; i < LMP_KLD_NPCT; i++) {
        const char *nm = lmp_kld_pct_name[i];
        if (i == 0)
            printf("Maximum KLD: %10.6f\n", k.kld_pct[i]);
        else if (i == LMP_KLD_NPCT - 1)
            printf("Minimum KLD: %10.6f\n", k.kld_pct[i]);
        else if (i == 5)
            printf("Median  KLD: %10.6f\n", k.kld_pct[i]);
        else
            printf("%5s%%  KLD: %10.6f\n", nm, k.kld_pct[i]);
    }
    if (k.n_kld_negative)
        printf("(%lld positions had a KLD below 0 by rounding, lowest %.3g: the percentiles show them as 0)\n",
               (long long)k.n_kld_negative, k.kld_min_raw);
    if (k.has_topk)
        printf("top-%d  KLD: %10.6f  (a lower bound; the true KLD is at most %.6f more: gap bound, a worst case)\n",
               k.k, k.kld_topk, k.kld_topk_gap_bound);
    printf("Same top p : %9.4f%% +/- %.4f%%\n", 100 * k.same_top, 100 * k.same_top_stderr);
    printf("Mean     dp: %9.4f%% +/- %.4f%%\n", 100 * k.dp_mean, 100 * k.dp_stderr);
    printf("RMS      dp: %9.4f%% +/- %.4f%%\n", 100 * k.dp_rms, 100 * k.dp_rms_stderr);
    printf("PPL (base) : %10.4f +/- %.5f\n", k.ppl_base, k.ppl_base_stderr);
    printf("PPL (model): %10.4f +/- %.5f\n", k.ppl_model, k.ppl_model_stderr);
    printf("PPL ratio  : %10.6f  (ln ratio %.6f +/- %.6f)\n", k.ppl_ratio, k.ln_ppl_ratio, k.ln_ppl_ratio_stderr);
    printf("%.1f tokens/s\n", k.tokens_per_s);
    return 0;
}
