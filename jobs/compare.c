/*
 * The `lmpress compare` job (jobs/compare.h).
 */
#include "jobs/compare.h"
#include "formats/qmodel.h"
#include "jobs/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_job_compare_default_params(lmp_job_compare_params *p)
{
    memset(p, 0, sizeof *p);
    p->cmp = lmp_compare_default_params();
    p->cmp.task = lmp_task_default_params();
    p->protocol = "gptq";
    p->task_protocol = "lm-eval";
}

void lmp_job_compare_result_free(lmp_job_compare_result *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n_tasks; i++)
        free(r->task_names[i]);
    free(r->rows);
    memset(r, 0, sizeof *r);
}

/* The library's parameters with the names resolved. */
static int resolve(const lmp_job_compare_params *p, lmp_compare_params *q)
{
    *q = p->cmp;
    if (!p->base || p->n_variants < 1 || !p->variants || !p->text || !p->out)
        return lmp_err(LMP_EINVAL, "need BASE, at least one VARIANT, -f TEXT and -o DIR (see --help)");
    int pr = lmp_ppl_protocol_from_name(p->protocol), tpr = lmp_task_protocol_from_name(p->task_protocol);
    if (pr < 0 || tpr < 0)
        return lmp_err(LMP_EINVAL, "unknown %s '%s' (%s)", pr < 0 ? "protocol" : "task protocol",
                       pr < 0 ? p->protocol : p->task_protocol, pr < 0 ? "gptq, llamacpp, windows" : "lm-eval, llamacpp");
    q->protocol = (lmp_ppl_protocol)pr;
    q->task.protocol = (lmp_task_protocol)tpr;
    q->n_tasks = p->n_tasks;
    int rc = lmp_compare_check(q);
    for (int i = 0; i < p->n_tasks && !rc; i++) {
        const char *eq = strchr(p->tasks[i], '=');
        if (!eq || eq == p->tasks[i] || !eq[1])
            rc = lmp_err(LMP_EINVAL, "--task '%s': expected NAME=FILE", p->tasks[i]);
    }
    return rc;
}

int lmp_job_compare_check(const lmp_job_compare_params *p)
{
    lmp_compare_params q;
    return resolve(p, &q);
}

int lmp_job_compare(const lmp_job_compare_params *p, lmp_job_compare_result *r)
{
    memset(r, 0, sizeof *r);
    lmp_compare_params q;
    int rc = resolve(p, &q);
    if (rc)
        return rc;
    r->task_protocol = q.task.protocol;
    lmp_task_set *sets[LMP_COMPARE_MAX_TASKS] = {0};
    for (int i = 0; i < p->n_tasks && !rc; i++) {
        const char *eq = strchr(p->tasks[i], '=');
        if (!(r->task_names[i] = strndup(p->tasks[i], (size_t)(eq - p->tasks[i]))))
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        else
            rc = lmp_task_load(eq + 1, &sets[i]);
        r->n_tasks = i + 1;
    }
    char *text = NULL;
    size_t len = 0;
    if (!rc)
        rc = lmp_read_file(p->text, &text, &len);
    if (!rc) {
        q.load = lmp_model_load_any; /* HF, GGUF, GPTQ/AWQ/compressed-tensors and sparse folders */
        q.tasks = (const lmp_task_set *const *)sets;
        q.task_names = (const char *const *)r->task_names;
        rc = lmp_distill_compare(p->base, p->variants, p->n_variants, text, len, p->text, p->out, &q, &r->rows);
        if (!rc)
            r->n_rows = 1 + p->n_variants;
    }
    free(text);
    for (int i = 0; i < p->n_tasks; i++)
        lmp_task_free(sets[i]);
    return rc;
}

void lmp_report_compare(const lmp_job_compare_params *p, const lmp_job_compare_result *r, bool json)
{
    const lmp_compare_row *rows = r->rows;
    if (json) {
        printf("{\"report\": ");
        lmp_report_json_str(p->out);
        printf(", \"variants\": [");
        for (int i = 0; i < r->n_rows; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            lmp_report_json_str(rows[i].name);
            printf(", \"protocol\": \"%s\", \"ctx\": %d, \"kld_ctx\": %d, \"resumed\": %s, \"bpw\": %.6f, "
                   "\"bpw_linear\": %.6f, \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"kld\": %.9g, \"kld_stderr\": %.9g, "
                   "\"same_top\": %.6f, \"size_bytes\": %llu, \"tokens_per_s\": %.1f",
                   rows[i].protocol, rows[i].ctx, rows[i].kld_ctx, rows[i].resumed ? "true" : "false", rows[i].bpw,
                   rows[i].bpw_linear, rows[i].ppl, rows[i].ppl_stderr, rows[i].kld, rows[i].kld_stderr,
                   rows[i].same_top, (unsigned long long)rows[i].size_bytes, rows[i].tokens_per_s);
            if (r->n_tasks > 0) {
                printf(", \"tasks\": {");
                for (int t = 0; t < r->n_tasks; t++) {
                    const lmp_task_result *tr = &rows[i].task[t];
                    printf("%s\"%s\": {\"n\": %d, \"acc\": %.9g, \"acc_stderr\": %.9g", t ? ", " : "", r->task_names[t],
                           tr->n, tr->acc, tr->acc_stderr);
                    if (tr->kind != LMP_TASK_COMPLETION)
                        printf(", \"acc_norm\": %.9g, \"acc_norm_stderr\": %.9g", tr->acc_norm, tr->acc_norm_stderr);
                    else
                        printf(", \"acc_norm\": null, \"acc_norm_stderr\": null, \"ppl\": %.9g", tr->ppl);
                    printf("}");
                }
                printf("}");
            }
            printf("}");
        }
        printf("]}\n");
        return;
    }
    printf("%-28s %-14s %10s %8s %8s %20s %12s %9s\n", "variant", "protocol ctx", "size MiB", "bpw", "bpw lin",
           "ppl", "KLD", "same top");
    for (int i = 0; i < r->n_rows; i++) {
        char pc[32], pp[48];
        snprintf(pc, sizeof pc, "%s %d", rows[i].protocol, rows[i].ctx);
        snprintf(pp, sizeof pp, "%.4f +/- %.4f", rows[i].ppl, rows[i].ppl_stderr);
        printf("%-28s %-14s %10.2f %8.3f %8.3f %20s %12.6f %8.2f%%%s\n", rows[i].name, pc,
               (double)rows[i].size_bytes / 1048576.0, rows[i].bpw, rows[i].bpw_linear, pp, rows[i].kld,
               100 * rows[i].same_top, rows[i].resumed ? "  (resumed)" : "");
    }
    printf("bpw: whole weight files; bpw lin: the linear layers' tensors (see report.md)\n");
    for (int t = 0; t < r->n_tasks; t++) {
        printf("%-28s", r->task_names[t]);
        for (int i = 0; i < r->n_rows; i++) {
            const lmp_task_result *tr = &rows[i].task[t];
            bool norm = r->task_protocol == LMP_TASK_LLAMACPP && tr->kind != LMP_TASK_COMPLETION;
            printf(" %s%.1f%%", i ? "| " : "", 100 * (norm ? tr->acc_norm : tr->acc));
        }
        printf("   (task accuracy per variant)\n");
    }
    printf("report: %s/report.md\n", p->out);
}
