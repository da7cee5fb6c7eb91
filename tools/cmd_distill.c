/*
 * lmpress distill: `export` writes a teacher's next-token distributions to HDF5 (one
 * lmp_distill_export call), `merge` joins shard files (lmp_distill_merge). The file
 * layout is docs/formats/logits.md; the work is in lib/distill.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "lib/distill/distill.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_progress(void *user, int done, int total)
{
    lmp_progress *p = user;
    p->total = (uint64_t)total;
    lmp_progress_update(p, (uint64_t)done);
}

/* "i/n" strictly */
static int parse_shard(const char *s, int *i, int *n)
{
    char *end;
    long a = strtol(s, &end, 10);
    if (end == s || *end != '/')
        return -1;
    const char *b = end + 1;
    long c = strtol(b, &end, 10);
    if (end == b || *end || a < 0 || c < 1 || a >= c || c > 1 << 20)
        return -1;
    *i = (int)a;
    *n = (int)c;
    return 0;
}

static int distill_export(int argc, char **argv)
{
    lmp_distill_params p = lmp_distill_default_params();
    p.ctx = 0; /* the command's default: min(512, the model's context) */
    const char *file = NULL, *out = NULL, *shard = NULL;
    long long threads = 0;
    bool json = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into TEACHER first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"file", 'f', OPT_STR, &file, "TEXT", "text to run the teacher on (required)"},
        {"output", 'o', OPT_STR, &out, "FILE", "output .h5 file (required)"},
        {"top-k", 'k', OPT_I32, &p.top_k, "K", "log-probs kept per position (default 64; 0 with --full)"},
        {"ctx", 'c', OPT_I32, &p.ctx, "N", "tokens per sequence (default 512, at most the model's context)"},
        {"allow-long-ctx", 0, OPT_FLAG, &p.allow_long_ctx, NULL, "accept --ctx above the model's max_position_embeddings"},
        {"temperature", 0, OPT_FLOAT, &p.temperature, "T", "log-probs of softmax(logits/T) (default 1)"},
        {"full", 0, OPT_FLAG, &p.full, NULL, "also store every log-prob (exact KLD; small vocabularies)"},
        {"f32", 0, OPT_FLAG, &p.f32, NULL, "log-probs in f32 (default f16)"},
        {"shard", 0, OPT_STR, &shard, "i/n", "export only the sequences s with s % n == i"},
        {"chunks", 0, OPT_I32, &p.max_seqs, "K", "use only the first K sequences of the text"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: LMP_THREADS or all cores)"},
        {"force", 0, OPT_FLAG, &p.force, NULL, "overwrite the output; restart a mismatching partial export"},
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
    if (np != 1 || !file || !out) {
        fprintf(stderr, "lmpress distill export: need one TEACHER, -f TEXT and -o FILE (see --help)\n");
        return 2;
    }
    if (shard && parse_shard(shard, &p.shard_index, &p.shard_count)) {
        fprintf(stderr, "lmpress distill export: --shard '%s': expected i/n with 0 <= i < n\n", shard);
        return 2;
    }
    int rc = threads < 0 ? lmp_err(LMP_EINVAL, "--threads must be >= 0") : lmp_distill_check(&p);
    if (rc) {
        free(loras.v);
        return cli_fail("distill export", rc);
    }
    const char *stop = getenv("LMP_DISTILL_STOP_AFTER"); /* tests: simulated interruption */
    p.stop_after = stop ? atoi(stop) : 0;
    lmp_set_num_threads((int)threads);

    char *text = NULL;
    size_t len = 0;
    lmp_model *m = NULL;
    rc = lmp_read_file(file, &text, &len);
    if (rc)
        return cli_fail("distill export", rc);
    /* the teacher attribute names the base and its adapters, not the temporary merge */
    char label[4096];
    int ll = snprintf(label, sizeof label, "%s", pos[0]);
    for (int i = 0; i < loras.n && ll > 0 && ll < (int)sizeof label; i++)
        ll += snprintf(label + ll, sizeof label - (size_t)ll, " --lora %s", loras.v[i]);
    if ((rc = cli_lora_prepare("distill export", argc, argv, &loras, &pos[0], &lora_tmp))) {
        free(text);
        free(loras.v);
        return rc;
    }
    free(loras.v);
    if ((rc = lmp_model_load_any(&m, pos[0]))) {
        free(text);
        return cli_fail("distill export", rc);
    }
    if (p.top_k > lmp_model_n_vocab(m))
        p.top_k = lmp_model_n_vocab(m);
    lmp_progress bar;
    lmp_progress_begin(&bar, "export", 0);
    p.progress = on_progress;
    p.user = &bar;
    lmp_distill_stats st;
    rc = lmp_distill_export(m, label, text, len, out, &p, &st);
    lmp_progress_end(&bar);
    if (rc) {
        /* name the text only when the message names no file of its own (an output's
         * write error must not read as a problem of the text) */
        if (!strchr(lmp_errmsg(), '/') && !strstr(lmp_errmsg(), out))
            rc = lmp_err_prefix(rc, "%s", file);
        goto done;
    }
    if (!st.complete) {
        fprintf(stderr, "lmpress distill export: stopped after %d new sequence(s) (%d of %d done); run the "
                        "same command again to resume\n",
                st.n_computed, st.n_resumed + st.n_computed, st.n_seqs);
        rc = 3;
        goto done;
    }
    p.ctx = st.ctx; /* the context used (the default is the model's when shorter) */
    double bpt = (double)st.file_bytes / ((double)st.n_seqs * p.ctx);
    if (json) {
        printf("{\"output\": ");
        cli_json_str(out);
        printf(", \"sequences\": %d, \"resumed\": %d, \"ctx\": %d, \"k\": %d, \"full\": %s, "
               "\"tokens\": %lld, \"seconds\": %.3f, \"tokens_per_s\": %.1f, \"bytes\": %llu, "
               "\"bytes_per_token\": %.2f, \"windows\": %d, \"text_tokens\": %lld, "
               "\"teacher_hash\": \"%016" PRIx64 "\", \"tokenizer_hash\": \"%016" PRIx64 "\"}\n",
               st.n_seqs, st.n_resumed, p.ctx, p.top_k, p.full ? "true" : "false", (long long)st.n_tokens,
               st.seconds, st.tokens_per_s, (unsigned long long)st.file_bytes, bpt, st.n_windows,
               (long long)st.n_text_tokens, st.weights_hash, st.tokenizer_hash);
    } else {
        char b[32];
        printf("wrote %s: %d sequences x %d tokens (%d resumed), top-%d%s, %s (%.1f bytes/token), "
               "%.1f tokens/s\n",
               out, st.n_seqs, p.ctx, st.n_resumed, p.top_k, p.full ? " + full log-probs" : "",
               cli_bytes((double)st.file_bytes, b, sizeof b), bpt, st.tokens_per_s);
    }
done:
    free(text);
    lmp_model_free(m);
    if (rc == 3)
        return 3;
    return rc ? cli_fail("distill export", rc) : 0;
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
    if (np < 2) {
        fprintf(stderr, "lmpress distill merge: need OUT and at least one IN (see --help)\n");
        return 2;
    }
    int rc = lmp_distill_merge(pos[0], pos + 1, np - 1, force);
    if (rc)
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
