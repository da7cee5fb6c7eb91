/*
 * Perplexity under the three protocols people report, which give different numbers for
 * the same model and text (see infer.h and docs FORMATS.md):
 *   gptq      IST-DASLab/gptq llama.py llama_eval + datautils.py (also AWQ, Wanda);
 *   llamacpp  llama.cpp tools/perplexity/perplexity.cpp, perplexity();
 *   windows   llama2.c run.c as used for the fixtures' reference figures.
 * The NLL of each scored token is a log-softmax in f32 with max subtraction (sum in
 * double), accumulated in double in token order, so the result does not depend on the
 * thread count. Not here: the forward pass (forward.c), tokenization (tokenizer.c).
 */
#include "infer.h"
#include "infer_internal.h"
#include "../core/dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tokens per lmp_eval call inside a window: bounds the logits buffer ([B][vocab]). */
#define PPL_BATCH 512

static const char *const g_proto_names[] = {"gptq", "llamacpp", "windows"};
static const int g_proto_ctx[] = {2048, 512, 256};

const char *lmp_ppl_protocol_name(lmp_ppl_protocol p)
{
    return (unsigned)p < 3 ? g_proto_names[p] : "?";
}

int lmp_ppl_protocol_ctx(lmp_ppl_protocol p)
{
    return (unsigned)p <= LMP_PPL_WINDOWS ? g_proto_ctx[p] : 0;
}

int lmp_ctx_resolve(const lmp_model *m, int requested, int want, bool allow_long)
{
    const int mp = lmp_model_config(m)->max_pos;
    if (requested <= 0)
        return mp > 0 && mp < want ? mp : want;
    if (mp > 0 && requested > mp) {
        if (!allow_long)
            return lmp_err(LMP_EINVAL, "context %d is longer than the model's %d (max_position_embeddings): "
                                       "positions past it were never trained (use --allow-long-ctx to run anyway)",
                           requested, mp);
        lmp_warn("context %d is longer than the model's max_position_embeddings %d (--allow-long-ctx)", requested,
                 mp);
    }
    return requested;
}

int lmp_ppl_protocol_from_name(const char *name)
{
    for (int i = 0; i < 3; i++)
        if (strcmp(name, g_proto_names[i]) == 0)
            return i;
    return -1;
}

lmp_ppl_params lmp_ppl_default_params(void)
{
    lmp_ppl_params p;
    memset(&p, 0, sizeof p);
    p.protocol = LMP_PPL_GPTQ;
    return p;
}

int lmp_ppl_check(const lmp_ppl_params *p)
{
    if ((unsigned)p->protocol > LMP_PPL_WINDOWS)
        return lmp_err(LMP_EINVAL, "--protocol: unknown perplexity protocol %d", (int)p->protocol);
    if (p->ctx < 0 || p->ctx > 1 << 24)
        return lmp_err(LMP_EINVAL, "--ctx %d: must be >= 0 (0 = the protocol's default; at most %d)", p->ctx,
                       1 << 24);
    if (p->max_chunks < 0 || p->max_chunks > 1 << 30)
        return lmp_err(LMP_EINVAL, "--chunks %d: must be >= 0 (0 = every window)", p->max_chunks);
    return LMP_OK;
}

double lmp_nll(const float *logits, int64_t n_vocab, int32_t target)
{
    return lmp_logsumexp_f32(logits, n_vocab) - (double)logits[target];
}

/* One window: feeds in[0..ctx) to a fresh session and stores -log p(target[j] | in[0..j])
 * for every j in [j0, j1) in nll[j - j0]. */
static int score_window(lmp_session *s, const int32_t *in, const int32_t *target, int ctx, int j0,
                        int j1, float *logits, double *nll)
{
    const int64_t V = lmp_model_n_vocab(s->m);
    lmp_session_reset(s);
    for (int off = 0; off < ctx; off += PPL_BATCH) {
        int cnt = ctx - off < PPL_BATCH ? ctx - off : PPL_BATCH;
        bool want = off + cnt > j0 && off < j1; /* any scored position in this batch */
        int rc = lmp_eval(s, in + off, cnt, want ? logits : NULL, true);
        if (rc)
            return rc;
        if (!want)
            continue;
        for (int j = off > j0 ? off : j0; j < off + cnt && j < j1; j++)
            nll[j - j0] = lmp_nll(logits + (int64_t)(j - off) * V, V, target[j]);
    }
    return 0;
}

int lmp_ppl_tokens(const lmp_model *m, const int32_t *tokens, int64_t n, const lmp_ppl_params *p,
                   lmp_ppl_result *r)
{
    memset(r, 0, sizeof *r);
    int crc = lmp_ppl_check(p);
    if (crc)
        return crc;
    const char *pname = g_proto_names[p->protocol];
    const int ctx = lmp_ctx_resolve(m, p->ctx, g_proto_ctx[p->protocol], p->allow_long_ctx);
    if (ctx < 0)
        return ctx;
    if (ctx < 2 || (p->protocol == LMP_PPL_LLAMACPP && ctx < 4))
        return lmp_err(LMP_EINVAL, "context %d is too small for protocol %s", ctx, pname);
    const int bos = lmp_model_bos(m);
    if (p->protocol != LMP_PPL_GPTQ && bos < 0)
        return lmp_err(LMP_EUNSUPPORTED, "protocol %s needs a BOS token and the model has none",
                       pname);
    int64_t need = p->protocol == LMP_PPL_LLAMACPP ? 2 * (int64_t)ctx : ctx;
    if (n < need)
        return lmp_err(LMP_EINVAL,
                       "the text gives %lld tokens; protocol %s with context %d needs at least %lld",
                       (long long)n, pname, ctx, (long long)need);
    int64_t nw64 = n / ctx;
    if (p->max_chunks > 0 && p->max_chunks < nw64)
        nw64 = p->max_chunks;
    if (nw64 > INT32_MAX)
        return lmp_err(LMP_ERANGE, "too many windows");
    const int nw = (int)nw64;
    const int64_t V = lmp_model_n_vocab(m);
    const int B = ctx < PPL_BATCH ? ctx : PPL_BATCH;

    /* scored positions [j0, j1) of every window */
    const int j0 = p->protocol == LMP_PPL_LLAMACPP ? ctx / 2 : 0;
    const int j1 = p->protocol == LMP_PPL_WINDOWS ? ctx : ctx - 1;
    const int K = j1 - j0;

    lmp_session *s = NULL;
    float *logits = malloc(sizeof(float) * (size_t)B * (size_t)V);
    int32_t *in = malloc(sizeof(int32_t) * (size_t)ctx);
    /* per-token NLLs of every window: under MPI each rank scores its share of the windows
     * (lmp_dist_share) and the rows are gathered, so the sums below run over the same
     * values in the same order as in a single process (same bits, any rank count) */
    double *nll = malloc(sizeof(double) * (size_t)nw * (size_t)K);
    int rc = 0;
    if (!logits || !in || !nll)
        rc = lmp_err(LMP_ENOMEM, "out of memory (logits of %d positions, %d x %d NLLs)", B, nw, K);
    else
        rc = lmp_session_new(&s, m, ctx);

    int64_t wlo, whi;
    lmp_dist_share(nw, &wlo, &whi);
    double t0 = lmp_time_s();
    for (int64_t w = wlo; w < whi && !rc; w++) {
        const int32_t *win = tokens + w * ctx;
        double *row = nll + (size_t)w * (size_t)K;
        switch (p->protocol) {
        case LMP_PPL_GPTQ: /* logits[:-1] vs labels[1:] */
            rc = score_window(s, win, win + 1, ctx, j0, j1, logits, row);
            break;
        case LMP_PPL_LLAMACPP: /* first token -> BOS; logits[first..ctx-2] vs tokens +1 */
            memcpy(in, win, sizeof(int32_t) * (size_t)ctx);
            in[0] = bos;
            rc = score_window(s, in, win + 1, ctx, j0, j1, logits, row);
            break;
        case LMP_PPL_WINDOWS: /* BOS + window[0..ctx-1) predicts window[0..ctx) */
            in[0] = bos;
            memcpy(in + 1, win, sizeof(int32_t) * (size_t)(ctx - 1));
            rc = score_window(s, in, win, ctx, j0, j1, logits, row);
            break;
        }
        if (!rc && p->progress)
            p->progress(p->user, (int)(w - wlo + 1), (int)(whi - wlo));
    }
    if ((rc = lmp_dist_status(rc)) || (rc = lmp_dist_allgather_rows(nll, nw, sizeof(double) * (size_t)K)))
        goto done;

    double sum = 0, sum2 = 0, window_sum = 0;
    int64_t count = 0;
    for (int w = 0; w < nw; w++) {
        const double *row = nll + (size_t)w * (size_t)K;
        double ws = 0;
        for (int j = 0; j < K; j++) {
            ws += row[j];
            sum2 += row[j] * row[j];
        }
        if (p->protocol == LMP_PPL_GPTQ) /* loss.float() * seqlen per window */
            window_sum += ws / (ctx - 1) * ctx;
        count += K;
        sum += ws;
    }
    r->seconds = lmp_time_s() - t0;

    /* llama.cpp's estimate: mean and variance of the per-token NLL, the standard error
     * of the mean propagated through exp. */
    double mean = sum / (double)count, var = sum2 / (double)count - mean * mean;
    if (p->protocol == LMP_PPL_GPTQ)
        mean = window_sum / ((double)nw * ctx); /* torch.exp(stack(nlls).sum() / (n * seqlen)) */
    r->nll_mean = mean;
    r->ppl = exp(mean);
    r->ppl_stderr = var > 0 && count > 1 ? r->ppl * sqrt(var / (double)(count - 1)) : 0;
    r->n_scored = count;
    r->n_fed = (int64_t)nw * ctx;
    r->n_windows = nw;
    r->ctx = ctx;
    r->tokens_per_s = r->seconds > 0 ? (double)r->n_fed / r->seconds : 0;
    /* a perplexity that is not a number is an error, never a result (nor "nan" in JSON) */
    if (!isfinite(r->ppl) || !isfinite(r->ppl_stderr))
        rc = lmp_err(LMP_ERANGE, "perplexity is not finite (mean NLL %g): the model's outputs overflowed", mean);
done:
    lmp_session_free(s);
    free(logits);
    free(in);
    free(nll);
    return rc;
}

int lmp_ppl_text(const lmp_model *m, const char *text, size_t len, const lmp_ppl_params *p,
                 lmp_ppl_result *r)
{
    memset(r, 0, sizeof *r);
    int crc = lmp_ppl_check(p);
    if (crc)
        return crc;
    if (p->max_bytes && len > p->max_bytes)
        len = (size_t)p->max_bytes;
    char *buf = malloc(len + 1);
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (!(p->strip_cr && text[i] == '\r'))
            buf[n++] = text[i];
    buf[n] = 0;
    int rc;
    if (n == 0) {
        rc = lmp_err(LMP_EINVAL, "the text is empty");
        goto done;
    }
    const lmp_tokenizer *tok = lmp_model_tokenizer(m);
    if (!tok) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: the model has no tokenizer", lmp_model_ckpt(m)->path);
        goto done;
    }
    int32_t *ids = NULL;
    int64_t nids = 0;
    /* gptq and llamacpp: the tokenizer's own BOS rule (HF add_special_tokens=True,
     * llama.cpp common_tokenize(..., true)); windows: never a BOS in the stream. */
    rc = lmp_model_tokenize(m, buf, n, p->protocol != LMP_PPL_WINDOWS, &ids, &nids);
    if (rc == 0)
        rc = lmp_ppl_tokens(m, ids, nids, p, r);
    free(ids);
done:
    free(buf);
    return rc;
}
