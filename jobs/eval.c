/*
 * The `lmpress eval` job (jobs/eval.h).
 */
#include "jobs/eval.h"
#include "jobs/args.h"
#include "formats/qmodel.h"
#include "jobs/report.h"

#include <stdio.h>
#include <string.h>

void lmp_job_eval_default_params(lmp_job_eval_params *p)
{
    memset(p, 0, sizeof *p);
    p->kld = lmp_kld_default_params();
}

int lmp_job_eval_check(const lmp_job_eval_params *p)
{
    if (!p->model || !p->base)
        return lmp_err(LMP_EINVAL, "need one MODEL and --base FILE (see --help)");
    return lmp_kld_check(&p->kld);
}

int lmp_job_eval(const lmp_job_eval_params *p, lmp_kld_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = lmp_job_eval_check(p);
    if (rc)
        return rc;
    lmp_model *m = NULL;
    if ((rc = lmp_model_load_any(&m, p->model)))
        return rc;
    lmp_progress bar;
    lmp_progress_begin(&bar, "eval", 0);
    lmp_kld_params q = p->kld;
    q.progress = lmp_job_progress;
    q.user = &bar;
    rc = lmp_distill_eval(m, p->base, &q, r);
    lmp_progress_end(&bar);
    lmp_model_free(m);
    return rc;
}

void lmp_report_eval(const lmp_job_eval_params *p, const lmp_kld_result *k, bool json)
{
    if (json) {
        printf("{\"model\": ");
        lmp_report_json_str(p->model);
        printf(", \"base\": ");
        lmp_report_json_str(p->base);
        printf(", \"exact\": %s, \"k\": %d, \"kld\": %.9g, \"kld_stderr\": %.9g, \"kld_percentiles\": {",
               k->exact ? "true" : "false", k->k, k->kld_mean, k->kld_stderr);
        for (int i = 0; i < LMP_KLD_NPCT; i++)
            printf("%s\"%s\": %.9g", i ? ", " : "", lmp_kld_pct_name[i], k->kld_pct[i]);
        printf("}");
        if (k->has_topk)
            printf(", \"kld_topk\": %.9g, \"kld_topk_gap_bound\": %.9g", k->kld_topk, k->kld_topk_gap_bound);
        printf(", \"kld_negative_positions\": %lld, \"kld_min_raw\": %.9g", (long long)k->n_kld_negative, k->kld_min_raw);
        printf(", \"same_top\": %.9g, \"same_top_stderr\": %.9g, \"dp_mean\": %.9g, \"dp_stderr\": %.9g, "
               "\"dp_rms\": %.9g, \"dp_rms_stderr\": %.9g, \"ppl_base\": %.9g, \"ppl_base_stderr\": %.9g, "
               "\"ppl\": %.9g, \"ppl_stderr\": %.9g, \"ppl_ratio\": %.9g, \"ln_ppl_ratio\": %.9g, "
               "\"ln_ppl_ratio_stderr\": %.9g, \"positions\": %lld, \"scored\": %lld, \"sequences\": %d, "
               "\"ctx\": %d, \"temperature\": %g, \"seconds\": %.3f, \"tokens_per_s\": %.1f}\n",
               k->same_top, k->same_top_stderr, k->dp_mean, k->dp_stderr, k->dp_rms, k->dp_rms_stderr, k->ppl_base,
               k->ppl_base_stderr, k->ppl_model, k->ppl_model_stderr, k->ppl_ratio, k->ln_ppl_ratio,
               k->ln_ppl_ratio_stderr, (long long)k->n_kld, (long long)k->n_scored, k->n_seqs, k->ctx,
               k->temperature, k->seconds, k->tokens_per_s);
        return;
    }
    printf("%d sequences x %d positions (%lld in the statistics, %lld with a next token), %s\n", k->n_seqs,
           k->ctx, (long long)k->n_kld, (long long)k->n_scored,
           k->exact ? "exact (full log-probs)" : "top-k estimate");
    printf("Mean    KLD: %10.6f +/- %10.6f\n", k->kld_mean, k->kld_stderr);
    for (int i = 0; i < LMP_KLD_NPCT; i++) {
        const char *nm = lmp_kld_pct_name[i];
        if (i == 0)
            printf("Maximum KLD: %10.6f\n", k->kld_pct[i]);
        else if (i == LMP_KLD_NPCT - 1)
            printf("Minimum KLD: %10.6f\n", k->kld_pct[i]);
        else if (i == 5)
            printf("Median  KLD: %10.6f\n", k->kld_pct[i]);
        else
            printf("%5s%%  KLD: %10.6f\n", nm, k->kld_pct[i]);
    }
    if (k->n_kld_negative)
        printf("(%lld positions had a KLD below 0 by rounding, lowest %.3g: the percentiles show them as 0)\n",
               (long long)k->n_kld_negative, k->kld_min_raw);
    if (k->has_topk)
        printf("top-%d  KLD: %10.6f  (a lower bound; the true KLD is at most %.6f more: gap bound, a worst case)\n",
               k->k, k->kld_topk, k->kld_topk_gap_bound);
    printf("Same top p : %9.4f%% +/- %.4f%%\n", 100 * k->same_top, 100 * k->same_top_stderr);
    printf("Mean     dp: %9.4f%% +/- %.4f%%\n", 100 * k->dp_mean, 100 * k->dp_stderr);
    printf("RMS      dp: %9.4f%% +/- %.4f%%\n", 100 * k->dp_rms, 100 * k->dp_rms_stderr);
    printf("PPL (base) : %10.4f +/- %.5f\n", k->ppl_base, k->ppl_base_stderr);
    printf("PPL (model): %10.4f +/- %.5f\n", k->ppl_model, k->ppl_model_stderr);
    printf("PPL ratio  : %10.6f  (ln ratio %.6f +/- %.6f)\n", k->ppl_ratio, k->ln_ppl_ratio, k->ln_ppl_ratio_stderr);
    printf("%.1f tokens/s\n", k->tokens_per_s);
}
