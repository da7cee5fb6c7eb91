/*
 * The `lmpress distill` jobs (jobs/distill.h).
 */
#include "jobs/distill.h"
#include "jobs/args.h"
#include "formats/qmodel.h"
#include "jobs/report.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void lmp_job_export_default_params(lmp_job_export_params *p)
{
    memset(p, 0, sizeof *p);
    p->distill = lmp_distill_default_params();
    p->distill.ctx = 0; /* the command's default: min(512, the model's context) */
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

/* The parameters with the shard resolved. */
static int resolve(const lmp_job_export_params *p, lmp_distill_params *q)
{
    *q = p->distill;
    if (!p->teacher || !p->text || !p->out)
        return lmp_err(LMP_EINVAL, "need one TEACHER, -f TEXT and -o FILE (see --help)");
    if (p->shard && parse_shard(p->shard, &q->shard_index, &q->shard_count))
        return lmp_err(LMP_EINVAL, "--shard '%s': expected i/n with 0 <= i < n", p->shard);
    return lmp_distill_check(q);
}

int lmp_job_export_check(const lmp_job_export_params *p)
{
    lmp_distill_params q;
    return resolve(p, &q);
}

int lmp_job_export(const lmp_job_export_params *p, lmp_job_export_result *r)
{
    memset(r, 0, sizeof *r);
    lmp_distill_params q;
    int rc = resolve(p, &q);
    if (rc)
        return rc;
    char *text = NULL;
    size_t len = 0;
    lmp_model *m = NULL;
    if ((rc = lmp_read_file(p->text, &text, &len)))
        return rc;
    if ((rc = lmp_model_load_any(&m, p->teacher))) {
        free(text);
        return rc;
    }
    if (q.top_k > lmp_model_n_vocab(m))
        q.top_k = lmp_model_n_vocab(m);
    lmp_progress bar;
    lmp_progress_begin(&bar, "export", 0);
    q.progress = lmp_job_progress;
    q.user = &bar;
    rc = lmp_distill_export(m, p->label ? p->label : p->teacher, text, len, p->out, &q, &r->st);
    lmp_progress_end(&bar);
    /* name the text only when the message names no file of its own (an output's write
     * error must not read as a problem of the text) */
    if (rc && !strchr(lmp_errmsg(), '/') && !strstr(lmp_errmsg(), p->out))
        rc = lmp_err_prefix(rc, "%s", p->text);
    r->ctx = r->st.ctx; /* the context used (the default is the model's when shorter) */
    r->top_k = q.top_k;
    free(text);
    lmp_model_free(m);
    return rc;
}

void lmp_report_export(const lmp_job_export_params *p, const lmp_job_export_result *r, bool json)
{
    const lmp_distill_stats *st = &r->st;
    if (!st->complete) {
        fprintf(stderr, "lmpress distill export: stopped after %d new sequence(s) (%d of %d done); run the "
                        "same command again to resume\n",
                st->n_computed, st->n_resumed + st->n_computed, st->n_seqs);
        return;
    }
    double bpt = (double)st->file_bytes / ((double)st->n_seqs * r->ctx);
    if (json) {
        printf("{\"output\": ");
        lmp_report_json_str(p->out);
        printf(", \"sequences\": %d, \"resumed\": %d, \"ctx\": %d, \"k\": %d, \"full\": %s, "
               "\"tokens\": %lld, \"seconds\": %.3f, \"tokens_per_s\": %.1f, \"bytes\": %llu, "
               "\"bytes_per_token\": %.2f, \"windows\": %d, \"text_tokens\": %lld, "
               "\"teacher_hash\": \"%016" PRIx64 "\", \"tokenizer_hash\": \"%016" PRIx64 "\"}\n",
               st->n_seqs, st->n_resumed, r->ctx, r->top_k, p->distill.full ? "true" : "false",
               (long long)st->n_tokens, st->seconds, st->tokens_per_s, (unsigned long long)st->file_bytes, bpt,
               st->n_windows, (long long)st->n_text_tokens, st->weights_hash, st->tokenizer_hash);
    } else {
        char b[32];
        printf("wrote %s: %d sequences x %d tokens (%d resumed), top-%d%s, %s (%.1f bytes/token), "
               "%.1f tokens/s\n",
               p->out, st->n_seqs, r->ctx, st->n_resumed, r->top_k, p->distill.full ? " + full log-probs" : "",
               lmp_report_bytes((double)st->file_bytes, b, sizeof b), bpt, st->tokens_per_s);
    }
}

int lmp_job_merge_logits_check(const char *out, int n_inputs)
{
    if (!out || n_inputs < 1)
        return lmp_err(LMP_EINVAL, "need OUT and at least one IN (see --help)");
    return LMP_OK;
}
