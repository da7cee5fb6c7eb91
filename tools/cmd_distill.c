/*
 * lmpress distill: `export` writes a teacher's next-token distributions to HDF5 (one job
 * call, jobs/distill.h), `merge` joins shard files (lmp_distill_merge). The file
 * layout is docs/formats/logits.md; the work is in lib/distill.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/distill.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int distill_export(int argc, char **argv)
{
    lmp_job_export_params p;
    lmp_job_export_default_params(&p);
    long long threads = 0;
    bool json = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into TEACHER first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"file", 'f', OPT_STR, &p.text, "TEXT", "text to run the teacher on (required)"},
        {"output", 'o', OPT_STR, &p.out, "FILE", "output .h5 file (required)"},
        {"top-k", 'k', OPT_I32, &p.distill.top_k, "K", "log-probs kept per position (default 64; 0 with --full)"},
        {"ctx", 'c', OPT_I32, &p.distill.ctx, "N", "tokens per sequence (default 512, at most the model's context)"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.distill.allow_long_ctx, NULL, "accept --ctx above the model's max_position_embeddings"},
        {"temperature", 0, OPT_FLOAT, &p.distill.temperature, "T", "log-probs of softmax(logits/T) (default 1)"},
        {"full", 0, OPT_FLAG, &p.distill.full, NULL, "also store every log-prob (exact KLD; small vocabularies)"},
        {"f32", 0, OPT_FLAG, &p.distill.f32, NULL, "log-probs in f32 (default f16)"},
        {"shard", 0, OPT_STR, &p.shard, "i/n", "export only the sequences s with s % n == i"},
        {"chunks", 0, OPT_I32, &p.distill.max_seqs, "K", "use only the first K sequences of the text"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"force", 0, OPT_FLAG, &p.distill.force, NULL, "overwrite the output; restart a mismatching partial export"},
        {"json", 0, OPT_FLAG, &json, NULL, "print one JSON object on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "distill export",
        "TEACHER -f TEXT -o logits.h5 [--top-k K] [--ctx N] [--temperature T] [--full] [--f32] "
        "[--shard i/n] [--force]",
        "Runs TEACHER over TEXT and stores its next-token distributions for distillation and for\n"
        "lmpress eval: token ids, top-k ids and log-probs, log-sum-exp, the mass outside the top-k\n"
        "and the log-prob of the correct next token (HDF5, chunked, deflate).",
        "The text is tokenized once and cut into non-overlapping windows of N tokens; the first token\n"
        "of every window is replaced by BOS (llama.cpp's KL-divergence convention) and every position\n"
        "is stored. Layout: docs/formats/logits.md.\n"
        "Interrupted runs leave finished sequences in OUT.partial/; the same command resumes them.\n"
        "Shards (--shard i/n on several machines) are joined with 'lmpress distill merge'."};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    p.teacher = np == 1 ? pos[0] : NULL;
    int rc = lmp_job_export_check(&p);
    if (rc || (rc = lmp_job_threads(threads))) {
        free(loras.v);
        return cli_fail("distill export", rc);
    }
    const char *stop = getenv("LMP_DISTILL_STOP_AFTER"); /* tests: simulated interruption */
    p.distill.stop_after = stop ? atoi(stop) : 0;
    /* the teacher attribute names the base and its adapters, not the temporary merge */
    char label[4096];
    int ll = snprintf(label, sizeof label, "%s", pos[0]);
    for (int i = 0; i < loras.n && ll > 0 && ll < (int)sizeof label; i++)
        ll += snprintf(label + ll, sizeof label - (size_t)ll, " --lora %s", loras.v[i]);
    p.label = label;
    rc = cli_lora_prepare("distill export", argc, argv, &loras, &p.teacher, &lora_tmp);
    free(loras.v);
    if (rc)
        return rc;
    lmp_job_export_result res;
    if ((rc = lmp_job_export(&p, &res)))
        return cli_fail("distill export", rc);
    lmp_report_export(&p, &res, json);
    return res.st.complete ? 0 : 3;
}

static int distill_merge(int argc, char **argv)
{
    bool force = false;
    const cli_opt opts[] = {
        {"force", 0, OPT_FLAG, &force, NULL, "overwrite OUT"},
        {0},
    };
    const cli_cmd_info info = {"distill merge", "OUT IN... [--force]",
                               "Joins the shard files of one export (lmpress distill export --shard i/n)\n"
                               "into the file a single unsharded export gives.",
                               NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (r)
        return r > 0 ? 0 : 2;
    int rc = lmp_job_merge_logits_check(np ? pos[0] : NULL, np - 1);
    if (rc || (rc = lmp_distill_merge(pos[0], pos + 1, np - 1, force)))
        return cli_fail("distill merge", rc);
    printf("wrote %s from %d file(s)\n", pos[0], np - 1);
    return 0;
}

int cmd_distill(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "export") == 0)
        return distill_export(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "merge") == 0)
        return distill_merge(argc - 1, argv + 1);
    FILE *f = argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) ? stdout : stderr;
    fprintf(f, "usage: lmpress distill export TEACHER -f TEXT -o logits.h5 [options]\n"
               "       lmpress distill merge OUT IN... [--force]\n\n"
               "Teacher logits for distillation and KL-divergence evaluation (lmpress eval).\n"
               "'lmpress distill export --help' lists the options.\n");
    return f == stdout ? 0 : 2;
}
