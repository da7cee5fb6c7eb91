/*
 * The `lmpress tasks` job (jobs/tasks.h).
 */
#include "jobs/tasks.h"
#include "formats/qmodel.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_job_tasks_default_params(lmp_job_tasks_params *p)
{
    memset(p, 0, sizeof *p);
    p->task = lmp_task_default_params();
    p->protocol = "lm-eval";
}

/* The name of spec "NAME=FILE" (malloc'd) and its file, or LMP_EINVAL. */
static int split_spec(const char *spec, char **name, const char **file)
{
    const char *eq = strchr(spec, '=');
    *name = NULL;
    if (!eq || eq == spec || !eq[1])
        return lmp_err(LMP_EINVAL, "--task '%s': expected NAME=FILE", spec);
    for (const char *c = spec; c < eq; c++)
        if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20)
            return lmp_err(LMP_EINVAL, "--task: task name '%.*s': no quotes, backslashes or control characters",
                           (int)(eq - spec), spec);
    if (!(*name = strndup(spec, (size_t)(eq - spec))))
        return lmp_err(LMP_ENOMEM, "out of memory");
    *file = eq + 1;
    return LMP_OK;
}

int lmp_job_tasks_check(const lmp_job_tasks_params *p)
{
    if (!p->model || p->n_tasks < 1 || !p->specs)
        return lmp_err(LMP_EINVAL, "need one MODEL and at least one --task NAME=FILE (see --help)");
    if (!p->protocol || lmp_task_protocol_from_name(p->protocol) < 0)
        return lmp_err(LMP_EINVAL, "--protocol: unknown protocol '%s' (lm-eval, llamacpp)",
                       p->protocol ? p->protocol : "");
    if (p->n_tasks < 1 || !p->specs)
        return lmp_err(LMP_EINVAL, "--task NAME=FILE: at least one is required");
    int rc = LMP_OK;
    char **names = calloc((size_t)p->n_tasks, sizeof *names);
    if (!names)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int i = 0; rc == 0 && i < p->n_tasks; i++) {
        const char *file;
        if ((rc = split_spec(p->specs[i], &names[i], &file)))
            break;
        for (int j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0) {
                rc = lmp_err(LMP_EINVAL, "--task: task name '%s' given twice", names[i]);
                break;
            }
    }
    for (int i = 0; i < p->n_tasks; i++)
        free(names[i]);
    free(names);
    return rc ? rc : lmp_task_check(&p->task);
}

typedef struct {
    lmp_progress bar;
    lmp_outfile *items;
    const char *task;
    int rc;
} tasks_ctx;

static void on_progress(void *user, int done, int total)
{
    tasks_ctx *c = user;
    c->bar.total = (uint64_t)total;
    lmp_progress_update(&c->bar, (uint64_t)done);
}

static void on_item(void *user, const lmp_task_item_result *r)
{
    tasks_ctx *c = user;
    if (!c->items || c->rc)
        return;
    char buf[4096];
    int n = snprintf(buf, sizeof buf,
                     "{\"task\": \"%s\", \"index\": %d, \"line\": %d, \"gold\": %d, \"pred\": %d, "
                     "\"pred_norm\": %d, \"acc\": %d, \"acc_norm\": %d, \"ll\": [",
                     c->task, r->index, r->line, r->gold, r->pred, r->pred_norm, r->acc, r->acc_norm);
    int k = r->n_choices < 16 ? r->n_choices : 16;
    for (int i = 0; i < k && n < (int)sizeof buf - 64; i++)
        n += isfinite(r->ll[i]) ? snprintf(buf + n, sizeof buf - (size_t)n, "%s%.9g", i ? ", " : "", r->ll[i])
                                : snprintf(buf + n, sizeof buf - (size_t)n, "%snull", i ? ", " : "");
    n += snprintf(buf + n, sizeof buf - (size_t)n, "], \"ll_norm\": [");
    for (int i = 0; i < k && n < (int)sizeof buf - 64; i++)
        n += isfinite(r->ll_norm[i])
                 ? snprintf(buf + n, sizeof buf - (size_t)n, "%s%.9g", i ? ", " : "", r->ll_norm[i])
                 : snprintf(buf + n, sizeof buf - (size_t)n, "%snull", i ? ", " : "");
    n += snprintf(buf + n, sizeof buf - (size_t)n, "], \"tokens\": [");
    for (int i = 0; i < k && n < (int)sizeof buf - 32; i++)
        n += snprintf(buf + n, sizeof buf - (size_t)n, "%s%d", i ? ", " : "", r->n_tokens[i]);
    n += snprintf(buf + n, sizeof buf - (size_t)n, "], \"greedy\": %s}\n", r->greedy ? "true" : "false");
    c->rc = lmp_outfile_write(c->items, buf, (size_t)n);
}

int lmp_job_tasks(const lmp_job_tasks_params *p, lmp_job_tasks_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = lmp_job_tasks_check(p);
    if (rc)
        return rc;
    lmp_task_params tp = p->task;
    tp.protocol = (lmp_task_protocol)lmp_task_protocol_from_name(p->protocol);
    r->protocol = tp.protocol;
    r->sets = calloc((size_t)p->n_tasks, sizeof *r->sets);
    r->names = calloc((size_t)p->n_tasks, sizeof *r->names);
    r->res = calloc((size_t)p->n_tasks, sizeof *r->res);
    if (!r->sets || !r->names || !r->res)
        return lmp_err(LMP_ENOMEM, "out of memory");
    r->n = p->n_tasks;
    lmp_model *m = NULL;
    lmp_outfile io;
    bool io_open = false;
    /* every task file is read and checked before the model is loaded */
    for (int i = 0; i < p->n_tasks; i++) {
        const char *file;
        if ((rc = split_spec(p->specs[i], &r->names[i], &file)) || (rc = lmp_task_load(file, &r->sets[i])))
            goto done;
    }
    if ((rc = lmp_model_load_any(&m, p->model)))
        goto done;
    if (p->items) {
        if ((rc = lmp_outfile_open(&io, p->items, p->force)))
            goto done;
        io_open = true;
    }
    for (int i = 0; i < p->n_tasks; i++) {
        tasks_ctx c = {.items = io_open ? &io : NULL, .task = r->names[i]};
        lmp_progress_begin(&c.bar, r->names[i], 0);
        tp.progress = on_progress;
        tp.on_item = on_item;
        tp.user = &c;
        rc = lmp_task_eval(m, r->sets[i], &tp, &r->res[i]);
        lmp_progress_end(&c.bar);
        if (!rc && c.rc)
            rc = c.rc;
        if (rc)
            goto done;
        if (p->on_task)
            p->on_task(p->user, i, r->names[i], r->sets[i], &r->res[i]);
    }
    if (io_open) {
        io_open = false;
        rc = lmp_outfile_commit(&io);
    }
done:
    if (io_open)
        lmp_outfile_abort(&io);
    lmp_model_free(m);
    return rc;
}

void lmp_job_tasks_result_free(lmp_job_tasks_result *r)
{
    for (int i = 0; r->sets && i < r->n; i++)
        lmp_task_free(r->sets[i]);
    for (int i = 0; r->names && i < r->n; i++)
        free(r->names[i]);
    free(r->sets);
    free(r->names);
    free(r->res);
    memset(r, 0, sizeof *r);
}
