/*
 * The `lmpress run` job (jobs/run.h).
 */
#include "jobs/run.h"
#include "formats/formats.h"
#include "formats/qmodel.h"
#include "jobs/args.h"

#include <stdlib.h>
#include <string.h>

void lmp_job_run_default_params(lmp_job_run_params *p)
{
    memset(p, 0, sizeof *p);
    p->sampler = lmp_sampler_default_params();
    p->n_predict = 256;
}

int lmp_job_run_check(const lmp_job_run_params *p)
{
    if (!p->model || !p->prompt)
        return lmp_err(LMP_EINVAL, "need one MODEL and -p PROMPT (see --help)");
    if (p->n_predict < 0 || p->n_predict > 1000000)
        return lmp_err(LMP_EINVAL, "-n %d: must be in [0, 1000000]", p->n_predict);
    if (p->ctx < 0 || p->ctx > 1 << 24)
        return lmp_err(LMP_EINVAL, "--ctx %d: must be >= 0 (0 = the model's; at most %d)", p->ctx, 1 << 24);
    if (p->n_loras < 0 || (p->n_loras > 0 && !p->loras))
        return lmp_err(LMP_EINVAL, "--lora: %d adapters without paths", p->n_loras);
    return lmp_sampler_check(&p->sampler);
}

typedef struct {
    const lmp_model *m;
    const lmp_job_run_params *p;
    int32_t *ids;
    int n, cap;
    size_t given;
    int rc;
} stream;

static int stream_flush(stream *st, bool final)
{
    char *text = NULL;
    size_t len = 0;
    int rc = lmp_model_detokenize(st->m, st->ids, st->n, &text, &len);
    if (rc)
        return rc;
    size_t upto = len;
    if (!final && len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0)
        upto = len - 3;
    if (upto > st->given) {
        if (st->p->on_text)
            st->p->on_text(st->p->user, text + st->given, upto - st->given);
        st->given = upto;
    }
    free(text);
    return 0;
}

static int on_token(void *user, int32_t tok)
{
    stream *st = user;
    if (st->n < st->cap)
        st->ids[st->n++] = tok;
    return (st->rc = stream_flush(st, false));
}

int lmp_job_run(const lmp_job_run_params *p, lmp_job_run_result *r)
{
    memset(r, 0, sizeof *r);
    int rc = lmp_job_run_check(p);
    if (rc)
        return rc;
    lmp_model *m = NULL;
    lmp_session *s = NULL;
    int32_t *ids = NULL;
    int64_t n_ids = 0;
    stream st = {0};
    if ((rc = lmp_model_load_any(&m, p->model)) || (rc = lmp_job_attach_loras(m, p->loras, p->lora_scales, p->n_loras)))
        goto done;
    if ((rc = lmp_model_tokenize(m, p->prompt, strlen(p->prompt), !p->no_bos, &ids, &n_ids)))
        goto done;
    if (n_ids == 0) {
        rc = lmp_err(LMP_EINVAL, "the prompt gives no tokens (try without --no-bos)");
        goto done;
    }
    if ((rc = lmp_session_new(&s, m, p->ctx)))
        goto done;
    if (n_ids > lmp_session_n_ctx(s)) {
        rc = lmp_err(LMP_EINVAL, "the prompt is %lld tokens, longer than the context of %d",
                     (long long)n_ids, lmp_session_n_ctx(s));
        goto done;
    }
    st.m = m;
    st.p = p;
    st.cap = (int)n_ids + p->n_predict;
    st.ids = malloc(sizeof(int32_t) * (size_t)(st.cap > 0 ? st.cap : 1));
    if (!st.ids) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(st.ids, ids, sizeof(int32_t) * (size_t)n_ids);
    st.n = (int)n_ids;
    if ((rc = stream_flush(&st, false)))
        goto done;
    r->streamed = true;
    int n_out = 0;
    rc = lmp_generate(s, ids, (int)n_ids, p->n_predict, &p->sampler, !p->ignore_eos, on_token, &st, NULL,
                      &n_out, &r->gen);
    if (!rc)
        rc = st.rc;
    if (!rc)
        rc = stream_flush(&st, true);
done:
    free(st.ids);
    free(ids);
    lmp_session_free(s);
    lmp_model_free(m);
    return rc;
}
