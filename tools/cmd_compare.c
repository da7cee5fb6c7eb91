/*
 * lmpress compare: evaluates a base model and its variants (perplexity, KLD against the
 * base, size, bits per weight, tokens/s) and writes a report folder. One job call
 * (jobs/compare.h: task files, text, lmp_distill_compare) and its printer; the work is in
 * lib/distill/report.c.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/compare.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_compare(int argc, char **argv)
{
    lmp_job_compare_params p;
    lmp_job_compare_default_params(&p);
    long long threads = 0;
    bool json = false;
    cli_strlist tasks = {0};
    const cli_opt opts[] = {
        {"file", 'f', OPT_STR, &p.text, "TEXT", "evaluation text (required)"},
        {"output", 'o', OPT_STR, &p.out, "DIR", "report folder (required)"},
        {"protocol", 0, OPT_NAME, &p.protocol, "gptq|llamacpp|windows", "perplexity protocol: gptq (default), llamacpp, windows"},
        {"ctx", 'c', OPT_I32, &p.cmp.ctx, "N", "window size (default: the protocol's, at most the base's context); also the KLD window"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.cmp.allow_long_ctx, NULL, "accept --ctx above a model's max_position_embeddings"},
        {"base-logits", 0, OPT_STR, &p.cmp.base_logits, "FILE", "KLD against these teacher logits (lmpress distill export) "
                                                          "instead of exporting the base's"},
        {"resume", 0, OPT_FLAG, &p.cmp.resume, NULL, "reuse the rows of an earlier (or interrupted) run into REPORT_DIR "
                                               "with the same settings"},
        {"chunks", 0, OPT_I32, &p.cmp.chunks, "K", "use at most K windows (default all)"},
        {"top-k", 'k', OPT_I32, &p.cmp.top_k, "K", "KLD from the base's top-K (default 0: exact, full log-probs)"},
        {"keep-logits", 0, OPT_FLAG, &p.cmp.keep_logits, NULL, "keep DIR/base-logits.h5"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"force", 0, OPT_FLAG, &p.cmp.force, NULL, "replace an existing report folder"},
        {"json", 0, OPT_FLAG, &json, NULL, "print report.json's rows as one JSON object on stdout"},
        {"task", 0, OPT_MULTI, &tasks, "NAME=FILE", "also score this task on every variant (repeatable; see lmpress tasks)"},
        {"task-protocol", 0, OPT_STR, &p.task_protocol, "P", "task protocol: lm-eval (default) or llamacpp"},
        {"task-limit", 0, OPT_I32, &p.cmp.task.limit, "N", "score a random subset of N items per task (default all)"},
        {"task-seed", 0, OPT_U64, &p.cmp.task.seed, "S", "seed of that subset (default 1)"},
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
    p.base = np >= 1 ? pos[0] : NULL;
    p.variants = pos + 1;
    p.n_variants = np - 1;
    p.tasks = tasks.v;
    p.n_tasks = tasks.n;
    int rc = lmp_job_compare_check(&p);
    lmp_job_compare_result res = {0};
    if (!rc && !(rc = lmp_job_threads(threads)) && !(rc = lmp_job_compare(&p, &res)))
        lmp_report_compare(&p, &res, json);
    lmp_job_compare_result_free(&res);
    free(tasks.v);
    return rc ? cli_fail("compare", rc) : 0;
}
