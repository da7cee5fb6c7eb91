/*
 * Sampling (greedy, temperature, top-k, top-p with a seeded lmp_rng) and the generation
 * loop on a session. Not here: text decoding (the caller's, through the tokenizer).
 */
#include "infer.h"
#include "infer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmp_sampler {
    lmp_sampler_params p;
    int n_vocab;
    lmp_rng rng;
    int32_t *idx;  /* (n_vocab) candidate ids */
    float *prob;   /* (n_vocab) their probabilities */
};

lmp_sampler_params lmp_sampler_default_params(void)
{
    lmp_sampler_params p = {0.0f, 0, 1.0f, 0};
    return p;
}

int32_t lmp_argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

int lmp_sampler_check(const lmp_sampler_params *p)
{
    if (p->temperature < 0 || !isfinite(p->temperature))
        return lmp_err(LMP_EINVAL, "--temp %g: the temperature must be >= 0 (0 = greedy)", (double)p->temperature);
    if (p->top_k < 0 || p->top_k > 1 << 30)
        return lmp_err(LMP_EINVAL, "--top-k %d: must be >= 0 (0 = all tokens)", p->top_k);
    if (!(p->top_p > 0 && p->top_p <= 1))
        return lmp_err(LMP_EINVAL, "--top-p %g: must be in (0, 1]", (double)p->top_p);
    return LMP_OK;
}

int lmp_sampler_new(lmp_sampler **out, const lmp_sampler_params *p, int n_vocab)
{
    *out = NULL;
    int rc = lmp_sampler_check(p);
    if (rc)
        return rc;
    lmp_sampler *s = calloc(1, sizeof *s);
    if (!s)
        return lmp_err(LMP_ENOMEM, "out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    lmp_rng_seed(&s->rng, p->seed);
    s->idx = malloc(sizeof(int32_t) * (size_t)n_vocab);
    s->prob = malloc(sizeof(float) * (size_t)n_vocab);
    if (!s->idx || !s->prob) {
        lmp_sampler_free(s);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    *out = s;
    return 0;
}

void lmp_sampler_free(lmp_sampler *s)
{
    if (!s)
        return;
    free(s->idx);
    free(s->prob);
    free(s);
}

/* Descending probability, then ascending id: a total order, so the result does not
 * depend on qsort's algorithm. */
static int by_prob_desc(const void *a, const void *b, void *arg)
{
    const float *prob = arg;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    float pi = prob[i], pj = prob[j];
    if (pi != pj)
        return pi > pj ? -1 : 1;
    return (i > j) - (i < j);
}

int32_t lmp_sampler_sample(lmp_sampler *s, const float *logits)
{
    const int n = s->n_vocab;
    if (s->p.temperature == 0)
        return lmp_argmax(logits, n);
    /* softmax(logits / T) with max subtraction */
    float mx = logits[lmp_argmax(logits, n)];
    double sum = 0;
    float *pr = s->prob;
    for (int i = 0; i < n; i++) {
        pr[i] = expf((logits[i] - mx) / s->p.temperature);
        sum += pr[i];
    }
    for (int i = 0; i < n; i++) {
        pr[i] = (float)(pr[i] / sum);
        s->idx[i] = i;
    }
    int cand = n;
    if (s->p.top_k > 0 || s->p.top_p < 1) {
        /* sort candidates (ids, probabilities stay indexed by id) */
        qsort_r(s->idx, (size_t)n, sizeof(int32_t), by_prob_desc, pr);
        if (s->p.top_k > 0 && s->p.top_k < cand)
            cand = s->p.top_k;
        if (s->p.top_p < 1) {
            double cum = 0;
            for (int i = 0; i < cand; i++) {
                cum += pr[s->idx[i]];
                if (cum >= s->p.top_p) {
                    cand = i + 1;
                    break;
                }
            }
        }
    }
    double total = 0;
    for (int i = 0; i < cand; i++)
        total += pr[s->idx[i]];
    double r = lmp_rng_uniform(&s->rng) * total, acc = 0;
    for (int i = 0; i < cand; i++) {
        acc += pr[s->idx[i]];
        if (r < acc)
            return s->idx[i];
    }
    return s->idx[cand - 1];
}

int lmp_generate(lmp_session *s, const int32_t *prompt, int n_prompt, int n_new,
                 const lmp_sampler_params *sp, bool stop_on_eos, lmp_token_fn on_token,
                 void *user, int32_t *out, int *n_out, lmp_gen_stats *stats)
{
    const lmp_model *m = s->m;
    lmp_gen_stats st = {0, 0, n_prompt, 0};
    if (n_out)
        *n_out = 0;
    if (n_prompt <= 0)
        return lmp_err(LMP_EINVAL, "empty prompt");
    if (s->pos + n_prompt > s->n_ctx)
        return lmp_err(LMP_ERANGE, "the prompt (%d tokens) does not fit in the context of %d",
                       n_prompt, s->n_ctx - s->pos);
    lmp_sampler_params def = lmp_sampler_default_params();
    lmp_sampler *smp = NULL;
    float *logits = malloc(sizeof(float) * (size_t)m->n_vocab);
    int rc = logits ? lmp_sampler_new(&smp, sp ? sp : &def, m->n_vocab)
                    : lmp_err(LMP_ENOMEM, "out of memory");
    if (rc)
        goto done;
    double t0 = lmp_time_s();
    if ((rc = lmp_eval(s, prompt, n_prompt, logits, false)))
        goto done;
    double t1 = lmp_time_s();
    st.prompt_s = t1 - t0;
    const int eos = lmp_model_eos(m), bos = lmp_model_bos(m);
    for (int i = 0; i < n_new; i++) {
        int32_t tok = lmp_sampler_sample(smp, logits);
        if (stop_on_eos && ((eos >= 0 && tok == eos) || (bos >= 0 && tok == bos)))
            break;
        if (out)
            out[st.n_gen] = tok;
        st.n_gen++;
        if (on_token && on_token(user, tok))
            break;
        if (i + 1 == n_new || s->pos >= s->n_ctx)
            break;
        if ((rc = lmp_eval(s, &tok, 1, logits, false)))
            break;
    }
    st.gen_s = lmp_time_s() - t1;
done:
    if (n_out)
        *n_out = st.n_gen;
    if (stats)
        *stats = st;
    lmp_sampler_free(smp);
    free(logits);
    return rc;
}
