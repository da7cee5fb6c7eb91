/*
 * The `lmpress ppl` job (jobs/ppl.h).
 */
#include "jobs/ppl.h"
#include "formats/qmodel.h"
#include "jobs/args.h"
#include "jobs/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_job_ppl_default_params(lmp_job_ppl_params *p)
{
    memset(p, 0, sizeof *p);
    p->ppl = lmp_ppl_default_params();
}

int lmp_job_ppl_check(const lmp_job_ppl_params *p)
{
    if (!p->model || !p->text)
        return lmp_err(LMP_EINVAL, "need one MODEL and -f TEXT (see --help)");
    if (p->n_loras < 0 || (p->n_loras > 0 && !p->loras))
        return lmp_err(LMP_EINVAL, "--lora: %d adapters without paths", p->n_loras);
    return lmp_ppl_check(&p->ppl);
}

int lmp_job_ppl(const lmp_job_ppl_params *p, lmp_ppl_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = lmp_job_ppl_check(p);
    if (rc)
        return rc;
    char *text = NULL;
    size_t len = 0;
    lmp_model *m = NULL;
    if ((rc = lmp_read_file(p->text, &text, &len)))
        return rc;
    if (len == 0) {
        free(text);
        return lmp_err(LMP_EINVAL, "%s: the text file is empty", p->text);
    }
    if ((rc = lmp_model_load_any(&m, p->model)) ||
        (rc = lmp_job_attach_loras(m, p->loras, p->lora_scales, p->n_loras))) {
        free(text);
        lmp_model_free(m);
        return rc;
    }
    lmp_progress bar;
    lmp_progress_begin(&bar, "ppl", 0);
    lmp_ppl_params q = p->ppl;
    q.progress = lmp_job_progress;
    q.user = &bar;
    rc = lmp_ppl_text(m, text, len, &q, r);
    lmp_progress_end(&bar);
    if (rc)
        rc = lmp_err_prefix(rc, "%s", p->text);
    free(text);
    lmp_model_free(m);
    return rc;
}

void lmp_report_ppl(const lmp_job_ppl_params *p, const lmp_ppl_result *res, bool json)
{
    if (json) {
        printf("{\"ppl\": %.6f, \"stderr\": %.6f, \"tokens\": %lld, \"tokens_per_s\": %.1f, "
               "\"protocol\": \"%s\", \"ctx\": %d, \"windows\": %d, \"nll\": %.6f, "
               "\"tokens_fed\": %lld, \"seconds\": %.3f, \"model\": ",
               res->ppl, res->ppl_stderr, (long long)res->n_scored, res->tokens_per_s,
               lmp_ppl_protocol_name(p->ppl.protocol), res->ctx, res->n_windows, res->nll_mean,
               (long long)res->n_fed, res->seconds);
        lmp_report_json_str(p->model);
        printf(", \"text\": ");
        lmp_report_json_str(p->text);
        printf("}\n");
    } else {
        printf("ppl %.4f +/- %.5f  (%s protocol, ctx %d, %d windows, %lld tokens scored, "
               "%.1f tokens/s)\n",
               res->ppl, res->ppl_stderr, lmp_ppl_protocol_name(p->ppl.protocol), res->ctx,
               res->n_windows, (long long)res->n_scored, res->tokens_per_s);
    }
}
