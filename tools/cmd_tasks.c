/*
 * lmpress tasks: accuracy of a model on multiple-choice and completion tasks (HellaSwag,
 * ARC, PIQA, WinoGrande, LAMBADA, ...) by log-likelihood. Parses options, makes one job
 * call (lmp_job_tasks: task files, model, one lmp_task_eval per task) and prints; the
 * protocols live in lib/distill/tasks.c (docs/tasks.md).
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_task(void *user, int i, const char *name, const lmp_task_set *set, const lmp_task_result *t)
{
    (void)i;
    (void)set;
    if (*(const bool *)user)
        return; /* --json: one object at the end */
    if (t->kind == LMP_TASK_COMPLETION)
        printf("%-16s n %5d  acc %6.2f%% +/- %5.2f  ppl %10.3f +/- %.3f  (%.1fs)\n", name, t->n, 100 * t->acc,
               100 * t->acc_stderr, t->ppl, t->ppl_stderr, t->seconds);
    else
        printf("%-16s n %5d  acc %6.2f%% +/- %5.2f  acc_norm %6.2f%% +/- %5.2f  chance %5.2f%%  (%.1fs)\n", name,
               t->n, 100 * t->acc, 100 * t->acc_stderr, 100 * t->acc_norm, 100 * t->acc_norm_stderr,
               100 * t->chance, t->seconds);
    fflush(stdout);
}

static void json_num(double v)
{
    if (isfinite(v))
        printf("%.9g", v);
    else
        printf("null");
}

static const char *kind_name(lmp_task_kind k)
{
    return k == LMP_TASK_CHOICE ? "choice" : k == LMP_TASK_PARTIAL ? "partial" : "completion";
}

int cmd_tasks(int argc, char **argv)
{
    cli_strlist tasks = {0};
    lmp_job_tasks_params jp;
    lmp_job_tasks_default_params(&jp);
    lmp_task_params *p = &jp.task;
    long long threads = 0;
    bool json = false;
    const cli_opt opts[] = {
        {"task", 0, OPT_MULTI, &tasks, "NAME=FILE", "a task to run (repeatable; required)"},
        {"protocol", 0, OPT_STR, &jp.protocol, "P", "lm-eval (default) or llamacpp"},
        {"limit", 0, OPT_I32, &p->limit, "N", "score a random subset of N items per task (default all)"},
        {"seed", 0, OPT_U64, &p->seed, "S", "seed of that subset (default 1)"},
        {"ctx", 'c', OPT_I32, &p->ctx, "N",
         "lm-eval: model length, longer inputs cut from the left (default max_position_embeddings); "
         "llamacpp: longest sequence allowed (default 4096)"},
        {"add-bos", 0, OPT_FLAG, &p->add_bos, NULL, "lm-eval: prepend BOS (lm-eval's add_bos_token=True)"},
        {"items", 0, OPT_STR, &jp.items, "FILE", "write one JSON line per item (scores, prediction)"},
        {"force", 0, OPT_FLAG, &jp.force, NULL, "replace an existing --items file"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "tasks",
        "MODEL --task NAME=FILE [--task ...] [--protocol lm-eval|llamacpp] [--limit N] [--seed S] [--json]",
        "Task accuracy of MODEL by log-likelihood: for each item the log-likelihood of every choice's\n"
        "continuation given its context (the context's KV cache computed once per item and shared by\n"
        "its choices). Prints acc (argmax of the summed log-likelihood), acc_norm (length-normalised),\n"
        "their standard errors sqrt(p(1-p)/(n-1)), n and the chance level; completion tasks (LAMBADA)\n"
        "give the greedy accuracy of the last word and its perplexity.",
        "Task files (the format is taken from the content and the name):\n"
        "  *.jsonl    one JSON object per line: query/choices/gold (ARC, PIQA, ...; a query starting\n"
        "             with \"Question:\" gets lm-eval's \"\\nAnswer:\"), context_options/continuation/gold\n"
        "             (WinoGrande, partial scoring), context/continuation (LAMBADA)\n"
        "  *.txt      llama.cpp's HellaSwag layout: context, gold index, four endings (6 lines)\n"
        "  *.csv      llama.cpp's WinoGrande CSV: index,sentence with _,option1,option2,answer(1|2)\n"
        "  *.bin      llama.cpp's --multiple-choice binary (mc1 answers scored)\n"
        "Protocols (docs/tasks.md):\n"
        "  lm-eval   lm-evaluation-harness: context and context+continuation tokenized separately, no\n"
        "            BOS (--add-bos adds it), acc_norm divides by the choice's length in characters\n"
        "  llamacpp  llama-perplexity --hellaswag/--winogrande/--multiple-choice: BOS, whole sequences\n"
        "            tokenized, acc_norm = its per-token mean over the tokens after the common prefix\n"
        "            (WinoGrande: its partial rule), acc = the unnormalised sum\n"
        "JSON: {\"tasks\": {NAME: {\"acc\", \"acc_stderr\", \"acc_norm\", \"acc_norm_stderr\", \"n\", ...}}}."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r) {
        free(tasks.v);
        return r > 0 ? 0 : 2;
    }
    jp.model = np == 1 ? pos[0] : NULL;
    jp.specs = tasks.v;
    jp.n_tasks = tasks.n;
    int rc = lmp_job_tasks_check(&jp);
    if (rc || (rc = lmp_job_threads(threads))) {
        free(tasks.v);
        return cli_fail("tasks", rc);
    }
    jp.on_task = on_task;
    jp.user = &json;
    lmp_job_tasks_result res;
    rc = lmp_job_tasks(&jp, &res);
    free(tasks.v);
    if (rc) {
        lmp_job_tasks_result_free(&res);
        return cli_fail("tasks", rc);
    }
    if (json) {
        printf("{\"model\": ");
        cli_json_str(pos[0]);
        printf(", \"protocol\": \"%s\", \"limit\": %lld, \"seed\": %lld, \"add_bos\": %s, \"tasks\": {",
               lmp_task_protocol_name(res.protocol), (long long)p->limit, (long long)p->seed,
               p->add_bos ? "true" : "false");
        for (int i = 0; i < res.n; i++) {
            const lmp_task_result *t = &res.res[i];
            const lmp_task_set *set = res.sets[i];
            printf("%s\"%s\": {\"file\": ", i ? ", " : "", res.names[i]);
            cli_json_str(set->path);
            printf(", \"format\": \"%s\", \"kind\": \"%s\", \"n\": %d, \"items_in_file\": %d, \"acc\": ",
                   set->format, kind_name(t->kind), t->n, set->n_items);
            json_num(t->acc);
            printf(", \"acc_stderr\": ");
            json_num(t->acc_stderr);
            printf(", \"acc_norm\": ");
            json_num(t->acc_norm);
            printf(", \"acc_norm_stderr\": ");
            json_num(t->acc_norm_stderr);
            printf(", \"chance\": ");
            json_num(t->chance);
            printf(", \"ppl\": ");
            json_num(t->ppl);
            printf(", \"ppl_stderr\": ");
            json_num(t->ppl_stderr);
            printf(", \"tokens_fed\": %lld, \"tokens_shared\": %lld, \"seconds\": %.3f}", (long long)t->tokens_fed,
                   (long long)t->tokens_saved, t->seconds);
        }
        printf("}}\n");
    }
    lmp_job_tasks_result_free(&res);
    return 0;
}
