/*
 * lmpress tasks: accuracy of a model on multiple-choice and completion tasks (HellaSwag,
 * ARC, PIQA, WinoGrande, LAMBADA, ...) by log-likelihood. Reads the task files, loads the
 * model, makes one lmp_task_eval call per task and prints; the protocols live in
 * lib/distill/tasks.c (docs/tasks.md).
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/distill/tasks.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    lmp_task_params p = lmp_task_default_params();
    const char *proto = "lm-eval", *items = NULL;
    long long threads = 0;
    bool json = false, force = false;
    const cli_opt opts[] = {
        {"task", 0, OPT_MULTI, &tasks, "NAME=FILE", "a task to run (repeatable; required)"},
        {"protocol", 0, OPT_STR, &proto, "P", "lm-eval (default) or llamacpp"},
        {"limit", 0, OPT_I32, &p.limit, "N", "score a random subset of N items per task (default all)"},
        {"seed", 0, OPT_U64, &p.seed, "S", "seed of that subset (default 1)"},
        {"ctx", 'c', OPT_I32, &p.ctx, "N",
         "lm-eval: model length, longer inputs cut from the left (default max_position_embeddings); "
         "llamacpp: longest sequence allowed (default 4096)"},
        {"add-bos", 0, OPT_FLAG, &p.add_bos, NULL, "lm-eval: prepend BOS (lm-eval's add_bos_token=True)"},
        {"items", 0, OPT_STR, &items, "FILE", "write one JSON line per item (scores, prediction)"},
        {"force", 0, OPT_FLAG, &force, NULL, "replace an existing --items file"},
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
    int rc = 0;
    int pr = lmp_task_protocol_from_name(proto);
    if (np != 1 || tasks.n == 0) {
        fprintf(stderr, "lmpress tasks: need one MODEL and at least one --task NAME=FILE (see --help)\n");
        free(tasks.v);
        return 2;
    }
    if (pr < 0) {
        fprintf(stderr, "lmpress tasks: unknown protocol '%s' (lm-eval, llamacpp)\n", proto);
        free(tasks.v);
        return 2;
    }
    p.protocol = (lmp_task_protocol)pr;
    if (threads < 0) {
        fprintf(stderr, "lmpress tasks: --threads must be >= 0\n");
        free(tasks.v);
        return 2;
    }
    if ((rc = lmp_task_check(&p))) {
        free(tasks.v);
        return cli_fail("tasks", rc);
    }
    lmp_set_num_threads((int)threads);
    lmp_task_set **sets = calloc((size_t)tasks.n, sizeof *sets);
    char **names = calloc((size_t)tasks.n, sizeof *names);
    lmp_task_result *res = calloc((size_t)tasks.n, sizeof *res);
    lmp_model *m = NULL;
    lmp_outfile io;
    bool io_open = false;
    if (!sets || !names || !res) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    /* every task file is read and checked before the model is loaded */
    for (int i = 0; i < tasks.n; i++) {
        const char *eq = strchr(tasks.v[i], '=');
        if (!eq || eq == tasks.v[i] || !eq[1]) {
            fprintf(stderr, "lmpress tasks: --task '%s': expected NAME=FILE\n", tasks.v[i]);
            rc = 2;
            goto done;
        }
        names[i] = strndup(tasks.v[i], (size_t)(eq - tasks.v[i]));
        for (int j = 0; j < i; j++)
            if (names[i] && strcmp(names[i], names[j]) == 0) {
                fprintf(stderr, "lmpress tasks: task name '%s' given twice\n", names[i]);
                rc = 2;
                goto done;
            }
        for (const char *c = names[i]; c && *c; c++)
            if (*c == '"' || *c == '\\' || (unsigned char)*c < 0x20) {
                fprintf(stderr, "lmpress tasks: task name '%s': no quotes, backslashes or control characters\n",
                        names[i]);
                rc = 2;
                goto done;
            }
        if ((rc = lmp_task_load(eq + 1, &sets[i])))
            goto fail;
    }
    if ((rc = lmp_model_load_any(&m, pos[0])))
        goto fail;
    if (items) {
        if ((rc = lmp_outfile_open(&io, items, force)))
            goto fail;
        io_open = true;
    }
    for (int i = 0; i < tasks.n; i++) {
        tasks_ctx c = {.items = io_open ? &io : NULL, .task = names[i]};
        lmp_progress_begin(&c.bar, names[i], 0);
        p.progress = on_progress;
        p.on_item = on_item;
        p.user = &c;
        rc = lmp_task_eval(m, sets[i], &p, &res[i]);
        lmp_progress_end(&c.bar);
        if (!rc && c.rc)
            rc = c.rc;
        if (rc)
            goto fail;
        if (!json) {
            const lmp_task_result *t = &res[i];
            if (t->kind == LMP_TASK_COMPLETION)
                printf("%-16s n %5d  acc %6.2f%% +/- %5.2f  ppl %10.3f +/- %.3f  (%.1fs)\n", names[i], t->n,
                       100 * t->acc, 100 * t->acc_stderr, t->ppl, t->ppl_stderr, t->seconds);
            else
                printf("%-16s n %5d  acc %6.2f%% +/- %5.2f  acc_norm %6.2f%% +/- %5.2f  chance %5.2f%%  (%.1fs)\n",
                       names[i], t->n, 100 * t->acc, 100 * t->acc_stderr, 100 * t->acc_norm,
                       100 * t->acc_norm_stderr, 100 * t->chance, t->seconds);
            fflush(stdout);
        }
    }
    if (io_open) {
        io_open = false;
        if ((rc = lmp_outfile_commit(&io)))
            goto fail;
    }
    if (json) {
        printf("{\"model\": ");
        cli_json_str(pos[0]);
        printf(", \"protocol\": \"%s\", \"limit\": %lld, \"seed\": %lld, \"add_bos\": %s, \"tasks\": {",
               lmp_task_protocol_name(p.protocol), (long long)p.limit, (long long)p.seed, p.add_bos ? "true" : "false");
        for (int i = 0; i < tasks.n; i++) {
            const lmp_task_result *t = &res[i];
            printf("%s\"%s\": {\"file\": ", i ? ", " : "", names[i]);
            cli_json_str(sets[i]->path);
            printf(", \"format\": \"%s\", \"kind\": \"%s\", \"n\": %d, \"items_in_file\": %d, \"acc\": ",
                   sets[i]->format, kind_name(t->kind), t->n, sets[i]->n_items);
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
    goto done;
fail:
    rc = cli_fail("tasks", rc);
done:
    if (io_open)
        lmp_outfile_abort(&io);
    lmp_model_free(m);
    for (int i = 0; sets && i < tasks.n; i++)
        lmp_task_free(sets[i]);
    for (int i = 0; names && i < tasks.n; i++)
        free(names[i]);
    free(sets);
    free(names);
    free(res);
    free(tasks.v);
    return rc;
}
