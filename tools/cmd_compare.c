/*
 * lmpress compare: evaluates a base model and its variants (perplexity, KLD against the
 * base, size, bits per weight, tokens/s) and writes a report folder. One
 * lmp_distill_compare call; the work is in lib/distill/report.c.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/distill/distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_compare(int argc, char **argv)
{
    lmp_compare_params p = lmp_compare_default_params();
    p.task = lmp_task_default_params();
    const char *file = NULL, *out = NULL, *proto = "gptq", *task_proto = "lm-eval";
    long long threads = 0;
    bool json = false;
    cli_strlist tasks = {0};
    const cli_opt opts[] = {
        {"file", 'f', OPT_STR, &file, "TEXT", "evaluation text (required)"},
        {"output", 'o', OPT_STR, &out, "DIR", "report folder (required)"},
        {"protocol", 0, OPT_NAME, &proto, "gptq|llamacpp|windows", "perplexity protocol: gptq (default), llamacpp, windows"},
        {"ctx", 'c', OPT_I32, &p.ctx, "N", "window size (default: the protocol's, at most the base's context); also the KLD window"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.allow_long_ctx, NULL, "accept --ctx above a model's max_position_embeddings"},
        {"base-logits", 0, OPT_STR, &p.base_logits, "FILE", "KLD against these teacher logits (lmpress distill export) "
                                                          "instead of exporting the base's"},
        {"resume", 0, OPT_FLAG, &p.resume, NULL, "reuse the rows of an earlier (or interrupted) run into REPORT_DIR "
                                               "with the same settings"},
        {"chunks", 0, OPT_I32, &p.chunks, "K", "use at most K windows (default all)"},
        {"top-k", 'k', OPT_I32, &p.top_k, "K", "KLD from the base's top-K (default 0: exact, full log-probs)"},
        {"keep-logits", 0, OPT_FLAG, &p.keep_logits, NULL, "keep DIR/base-logits.h5"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"force", 0, OPT_FLAG, &p.force, NULL, "replace an existing report folder"},
        {"json", 0, OPT_FLAG, &json, NULL, "print report.json's rows as one JSON object on stdout"},
        {"task", 0, OPT_MULTI, &tasks, "NAME=FILE", "also score this task on every variant (repeatable; see lmpress tasks)"},
        {"task-protocol", 0, OPT_STR, &task_proto, "P", "task protocol: lm-eval (default) or llamacpp"},
        {"task-limit", 0, OPT_I32, &p.task.limit, "N", "score a random subset of N items per task (default all)"},
        {"task-seed", 0, OPT_U64, &p.task.seed, "S", "seed of that subset (default 1)"},
        {0},
    };
    const cli_cmd_info info = {
        "compare", "BASE VARIANT... -f TEXT -o REPORT_DIR [--protocol P] [--ctx N] [--chunks K] [--base-logits FILE] "
                   "[--resume]",
        "Evaluates BASE and each VARIANT (HF folders or GGUF files, quantized ones included):\n"
        "perplexity, KL divergence against BASE, size on disk, bits per weight, tokens/s. Writes\n"
        "REPORT_DIR/report.md, report.json, bpw_ppl.svg and bpw_kld.svg. With --task, every variant is\n"
        "also scored on the tasks (accuracy +/- standard error, change against BASE; tasks.svg).",
        "The KLD uses BASE's log-probs exported once (lmpress distill export, first token of each\n"
        "window replaced by BOS, every position) on windows of the same size as the perplexity, or uses\n"
        "--base-logits FILE. Every input is checked first (exists, loads, same vocabulary as BASE, context\n"
        "within each model's): a bad one fails before any evaluation. With --resume the rows of an\n"
        "earlier run with the same settings (REPORT_DIR/report.json, or REPORT_DIR.partial.json and\n"
        "REPORT_DIR.base-logits.h5 kept after every row of an interrupted --resume run) are reused."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    if (np < 2 || !file || !out) {
        fprintf(stderr, "lmpress compare: need BASE, at least one VARIANT, -f TEXT and -o DIR (see --help)\n");
        return 2;
    }
    int pr = lmp_ppl_protocol_from_name(proto), tpr = lmp_task_protocol_from_name(task_proto);
    if (pr < 0 || tpr < 0) {
        fprintf(stderr, "lmpress compare: unknown %s '%s' (%s)\n", pr < 0 ? "protocol" : "task protocol",
                pr < 0 ? proto : task_proto, pr < 0 ? "gptq, llamacpp, windows" : "lm-eval, llamacpp");
        free(tasks.v);
        return 2;
    }
    p.protocol = (lmp_ppl_protocol)pr;
    p.task.protocol = (lmp_task_protocol)tpr;
    p.n_tasks = tasks.n;
    int rc = threads < 0 ? lmp_err(LMP_EINVAL, "--threads must be >= 0") : lmp_compare_check(&p);
    if (rc) {
        free(tasks.v);
        return cli_fail("compare", rc);
    }
    lmp_set_num_threads((int)threads);
    /* task files are read and checked before any model is evaluated */
    lmp_task_set *sets[LMP_COMPARE_MAX_TASKS] = {0};
    char *tnames[LMP_COMPARE_MAX_TASKS] = {0};
    for (int i = 0; i < tasks.n && !rc; i++) {
        const char *eq = strchr(tasks.v[i], '=');
        if (!eq || eq == tasks.v[i] || !eq[1]) {
            fprintf(stderr, "lmpress compare: --task '%s': expected NAME=FILE\n", tasks.v[i]);
            rc = -2;
        } else if (!(tnames[i] = strndup(tasks.v[i], (size_t)(eq - tasks.v[i])))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        } else {
            rc = lmp_task_load(eq + 1, &sets[i]);
        }
    }
    if (rc) {
        for (int i = 0; i < tasks.n; i++) {
            lmp_task_free(sets[i]);
            free(tnames[i]);
        }
        free(tasks.v);
        return rc == -2 ? 2 : cli_fail("compare", rc);
    }
    char *text = NULL;
    size_t len = 0;
    rc = lmp_read_file(file, &text, &len);
    if (rc) {
        for (int i = 0; i < tasks.n; i++) {
            lmp_task_free(sets[i]);
            free(tnames[i]);
        }
        free(tasks.v);
        return cli_fail("compare", rc);
    }
    p.load = lmp_model_load_any; /* HF, GGUF, GPTQ/AWQ/compressed-tensors and sparse folders */
    p.tasks = (const lmp_task_set *const *)sets;
    p.task_names = (const char *const *)tnames;
    lmp_compare_row *rows = NULL;
    rc = lmp_distill_compare(pos[0], pos + 1, np - 1, text, len, file, out, &p, &rows);
    free(text);
    for (int i = 0; i < tasks.n; i++)
        lmp_task_free(sets[i]);
    free(tasks.v);
    if (rc) {
        for (int i = 0; i < p.n_tasks; i++)
            free(tnames[i]);
        return cli_fail("compare", rc);
    }
    if (json) {
        printf("{\"report\": ");
        cli_json_str(out);
        printf(", \"variants\": [");
        for (int i = 0; i < np; i++) {
            printf("%s{\"name\": ", i ? ", " : "");
            cli_json_str(rows[i].name);
            printf(", \"protocol\": \"%s\", \"ctx\": %d, \"kld_ctx\": %d, \"resumed\": %s, \"bpw\": %.6f, "
                   "\"bpw_linear\": %.6f, \"ppl\": %.6f, \"ppl_stderr\": %.6f, \"kld\": %.9g, \"kld_stderr\": %.9g, "
                   "\"same_top\": %.6f, \"size_bytes\": %llu, \"tokens_per_s\": %.1f",
                   rows[i].protocol, rows[i].ctx, rows[i].kld_ctx, rows[i].resumed ? "true" : "false", rows[i].bpw,
                   rows[i].bpw_linear, rows[i].ppl, rows[i].ppl_stderr, rows[i].kld, rows[i].kld_stderr,
                   rows[i].same_top, (unsigned long long)rows[i].size_bytes, rows[i].tokens_per_s);
            if (p.n_tasks > 0) {
                printf(", \"tasks\": {");
                for (int t = 0; t < p.n_tasks; t++) {
                    const lmp_task_result *tr = &rows[i].task[t];
                    printf("%s\"%s\": {\"n\": %d, \"acc\": %.9g, \"acc_stderr\": %.9g", t ? ", " : "", tnames[t],
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
    } else {
        printf("%-28s %-14s %10s %8s %8s %20s %12s %9s\n", "variant", "protocol ctx", "size MiB", "bpw", "bpw lin",
               "ppl", "KLD", "same top");
        for (int i = 0; i < np; i++) {
            char pc[32], pp[48];
            snprintf(pc, sizeof pc, "%s %d", rows[i].protocol, rows[i].ctx);
            snprintf(pp, sizeof pp, "%.4f +/- %.4f", rows[i].ppl, rows[i].ppl_stderr);
            printf("%-28s %-14s %10.2f %8.3f %8.3f %20s %12.6f %8.2f%%%s\n", rows[i].name, pc,
                   (double)rows[i].size_bytes / 1048576.0, rows[i].bpw, rows[i].bpw_linear, pp, rows[i].kld,
                   100 * rows[i].same_top, rows[i].resumed ? "  (resumed)" : "");
        }
        printf("bpw: whole weight files; bpw lin: the linear layers' tensors (see report.md)\n");
        for (int t = 0; t < p.n_tasks; t++) {
            printf("%-28s", tnames[t]);
            for (int i = 0; i < np; i++) {
                const lmp_task_result *tr = &rows[i].task[t];
                bool norm = p.task.protocol == LMP_TASK_LLAMACPP && tr->kind != LMP_TASK_COMPLETION;
                printf(" %s%.1f%%", i ? "| " : "", 100 * (norm ? tr->acc_norm : tr->acc));
            }
            printf("   (task accuracy per variant)\n");
        }
        printf("report: %s/report.md\n", out);
    }
    for (int i = 0; i < tasks.n; i++)
        free(tnames[i]);
    free(rows);
    return 0;
}
