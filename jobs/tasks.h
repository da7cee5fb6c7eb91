/*
 * The `lmpress tasks` job: reads and checks every task file, loads the model (any format
 * lmp_model_load_any reads), runs lmp_task_eval on each task in turn (a progress bar per
 * task on stderr), and writes the per-item JSON lines file when asked.
 */
#ifndef LMP_JOBS_TASKS_H
#define LMP_JOBS_TASKS_H

#include "lib/distill/tasks.h"

typedef struct {
    const char *model;          /* MODEL (required) */
    lmp_task_params task;       /* limit, seed, ctx, add_bos (protocol: from `protocol`) */
    const char *protocol;       /* "lm-eval" (default; "lmeval") or "llamacpp" ("llama.cpp") */
    const char *const *specs;   /* n_tasks "NAME=FILE" */
    int n_tasks;
    const char *items;          /* one JSON line per item into this file, or NULL */
    bool force;                 /* replace an existing items file */
    /* Called after each task (may be NULL): its index, name, file and result. */
    void (*on_task)(void *user, int i, const char *name, const lmp_task_set *set, const lmp_task_result *r);
    void *user;
} lmp_job_tasks_params;

typedef struct {
    int n;
    char **names;          /* n task names */
    lmp_task_set **sets;   /* n task files as read */
    lmp_task_result *res;  /* n results */
    lmp_task_protocol protocol;
} lmp_job_tasks_result;

void lmp_job_tasks_default_params(lmp_job_tasks_params *p);
/* LMP_EINVAL naming the lmpress argument or option: a model and at least one task, a
 * known protocol, each NAME=FILE
 * with a non-empty name free of quotes, backslashes and control characters, no name twice,
 * and lmp_task_check's ranges. lmp_job_tasks calls it. */
int lmp_job_tasks_check(const lmp_job_tasks_params *p);
/* The whole evaluation; *r holds what was made (also on failure) until
 * lmp_job_tasks_result_free. Returns status. */
int lmp_job_tasks(const lmp_job_tasks_params *p, lmp_job_tasks_result *r);
void lmp_job_tasks_result_free(lmp_job_tasks_result *r);

#endif
