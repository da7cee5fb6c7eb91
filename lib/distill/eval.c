/*
 * KL divergence of a model against stored teacher log-probs, with the statistics of
 * llama.cpp's llama-perplexity --kl-divergence (tools/perplexity/perplexity.cpp): mean
 * KLD with its standard error, percentiles by linear interpolation, "same top p", mean
 * and RMS of delta-p, both perplexities and their ratio. Exact from full log-probs;
 * from top-k, KL over the k ids plus one "rest" bucket (a lower bound by the
 * data-processing inequality) with a per-position bound on the gap, see
 * docs/formats/logits.md. Per-position values are computed in parallel and reduced in
 * position order, so results do not depend on the thread count.
 */
#include "distill_internal.h"
#include "../core/dist.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define EVAL_BATCH 512

const double lmp_kld_pct_fraction[LMP_KLD_NPCT] = {1.0,  0.999, 0.99, 0.95,  0.90, 0.5,
                                                    0.10, 0.05,  0.01, 0.001, 0.0};
const char *const lmp_kld_pct_name[LMP_KLD_NPCT] = {"max", "99.9", "99", "95", "90", "median",
                                                     "10",  "5",    "1",  "0.1", "min"};

lmp_kld_params lmp_kld_default_params(void)
{
    lmp_kld_params p;
    memset(&p, 0, sizeof p);
    return p;
}

int lmp_kld_check(const lmp_kld_params *p)
{
    if (p->max_seqs < 0 || p->max_seqs > 1 << 30)
        return lmp_err(LMP_EINVAL, "--chunks %d: must be >= 0 (0 = all)", p->max_seqs);
    if (p->skip < 0 || p->skip > 1 << 22)
        return lmp_err(LMP_EINVAL, "--skip %d: must be in [0, %d]", p->skip, 1 << 22);
    return LMP_OK;
}

/* Per-position results, reduced later in order. */
typedef struct {
    double kld, kld_topk, gap;
    double nll_b, nll_m, dp;
    int same;
    int scored; /* has a target */
} pos_out;

static inline float lp_at(const lw_header *h, const void *base, size_t i)
{
    return h->f32 ? ((const float *)base)[i] : lmp_f16_to_f32(((const uint16_t *)base)[i]);
}

/* Rearranges a[0..n) so that a[0..m) holds its m smallest values (any order);
 * quickselect with median-of-three pivots. */
static void select_smallest(float *a, int n, int m)
{
    int lo = 0, hi = n - 1;
    while (lo < hi && m > lo && m <= hi) {
        int mid = lo + (hi - lo) / 2;
        float x = a[lo], y = a[mid], z = a[hi];
        float piv = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int i = lo, j = hi;
        while (i <= j) {
            while (a[i] < piv)
                i++;
            while (a[j] > piv)
                j--;
            if (i <= j) {
                float t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (m <= j)
            hi = j;
        else if (m >= i)
            lo = i;
        else
            return;
    }
}

/* Upper bound of the top-k estimate's gap at one position (docs/formats/logits.md):
 * the teacher's tail mass pr is spread over ids whose probabilities are at most pk (the
 * k-th top-k probability); sum p_i log(p_i / q_i) over the tail is convex in p, so its
 * maximum is at a vertex: pk on the m - 1 ids the model finds least likely and the
 * remainder on the m-th, m = ceil(pr / pk). Minus the rest bucket's own term. tail[] holds
 * the model's scaled logits of the nt ids outside the top-k (reordered). */
static double tail_gap_bound(float *tail, int nt, double pr, double qr, double pk, double lse)
{
    if (pk <= 0 || nt == 0)
        return 0;
    double mf = ceil(pr / pk - 1e-12);
    int m = mf >= nt ? nt : (int)mf;
    if (m < 1)
        m = 1;
    select_smallest(tail, nt, m);
    /* the m-th smallest gets the remainder: find it among tail[0..m) */
    int imax = 0;
    for (int i = 1; i < m; i++)
        if (tail[i] > tail[imax])
            imax = i;
    double sum = 0, left = pr;
    for (int i = 0; i < m && left > 0; i++) {
        if (i == imax)
            continue;
        double pi = left < pk ? left : pk;
        sum += pi * (log(pi) - ((double)tail[i] - lse));
        left -= pi;
    }
    if (left > 0)
        sum += left * (log(left) - ((double)tail[imax] - lse));
    double g = sum - pr * (log(pr) - log(qr));
    return g > 0 ? g : 0;
}

static void eval_position(const lw_header *h, const lw_seq *t, int j, const float *y, bool use_full,
                          uint8_t *mask, float *tail /* (V) */, pos_out *o)
{
    const int V = h->vocab, k = h->k;
    const double lse = lmp_logsumexp_f32(y, V);
    memset(o, 0, sizeof *o);
    int32_t t_arg;
    if (use_full || k == 0) {
        const size_t base = (size_t)j * V;
        double kl = 0, best = -INFINITY;
        t_arg = 0;
        for (int i = 0; i < V; i++) {
            double lp = lp_at(h, t->full_lp, base + i);
            if (lp > best) {
                best = lp;
                t_arg = i;
            }
            if (lp > -INFINITY)
                kl += exp(lp) * (lp - ((double)y[i] - lse));
        }
        o->kld = kl;
    } else {
        t_arg = t->topk_ids[(size_t)j * k];
    }
    if (k > 0) {
        const int32_t *ids = t->topk_ids + (size_t)j * k;
        double kl = 0, lp_last = 0;
        for (int i = 0; i < k; i++) {
            double lp = lp_at(h, t->topk_lp, (size_t)j * k + i);
            kl += exp(lp) * (lp - ((double)y[ids[i]] - lse));
            mask[ids[i]] = 1;
            lp_last = lp;
        }
        double qr = 0;
        int nt = 0;
        for (int i = 0; i < V; i++)
            if (!mask[i]) {
                qr += exp((double)y[i] - lse);
                tail[nt++] = y[i];
            }
        for (int i = 0; i < k; i++)
            mask[ids[i]] = 0;
        const double pr = t->rest[j];
        if (pr > 0) {
            kl += qr > 0 ? pr * (log(pr) - log(qr)) : INFINITY;
            o->gap = qr > 0 ? tail_gap_bound(tail, nt, pr, qr, exp(lp_last), lse) : INFINITY;
        }
        o->kld_topk = kl;
        if (!use_full)
            o->kld = kl;
    }
    o->same = lmp_argmax(y, V) == t_arg;
    const int32_t tg = t->targets[j];
    if (tg >= 0) {
        const double lq = (double)y[tg] - lse, lb = t->target_lp[j];
        o->scored = 1;
        o->nll_b = -lb;
        o->nll_m = -lq;
        o->dp = exp(lq) - exp(lb);
    }
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* mean and standard error of the mean from sums (llama.cpp's mean_and_uncertainty) */
static void mean_err(double s, double s2, int64_t n, double *mean, double *err)
{
    *mean = n > 0 ? s / (double)n : 0;
    double var = n > 0 ? s2 / (double)n - *mean * *mean : 0;
    *err = n > 1 && var > 0 ? sqrt(var / (double)(n - 1)) : 0;
}

int lmp_distill_eval(const lmp_model *m, const char *path, const lmp_kld_params *p, lmp_kld_result *r)
{
    memset(r, 0, sizeof *r);
    int crc = lmp_kld_check(p);
    if (crc)
        return crc;
    lw_reader *rd = NULL;
    lw_seq t = {0};
    lmp_session *s = NULL;
    float *logits = NULL;
    pos_out *po = NULL;
    double *klds = NULL;
    const char *mpath = lmp_model_ckpt(m)->path;
    int rc = lw_reader_open(&rd, path);
    if (rc)
        return rc;
    const lw_header *h = lw_reader_header(rd);
    const int V = lmp_model_n_vocab(m), ctx = h->ctx;
    if (h->vocab != V) {
        rc = lmp_err(LMP_EINVAL, "%s was made with a vocabulary of %d tokens; %s has %d", path, h->vocab,
                     mpath, V);
        goto done;
    }
    const lmp_tokenizer *tok = lmp_model_tokenizer(m);
    if (tok && lmp_tokenizer_hash(tok) != h->tokenizer_hash) {
        uint64_t th = lmp_tokenizer_hash(tok), vh = lmp_distill_vocab_hash(tok);
        if (vh != h->vocab_hash) {
            rc = lmp_err(LMP_EINVAL,
                         "%s was made with another tokenizer: tokenizer hash %016" PRIx64
                         " (vocab %016" PRIx64 ") in the file, %016" PRIx64 " (vocab %016" PRIx64
                         ") for %s",
                         path, h->tokenizer_hash, h->vocab_hash, th, vh, mpath);
            goto done;
        }
        /* an HF folder and its GGUF differ in how they store the same vocabulary (every
         * HF-vs-GGUF evaluation): identical pieces are not worth a note (issue 18) */
        lmp_debug("tokenizer hashes differ (%016" PRIx64 " in %s, %016" PRIx64
                 " for %s) but the vocabularies are identical: token ids mean the same pieces",
                 h->tokenizer_hash, path, th, mpath);
    } else if (!tok) {
        lmp_warn("%s has no tokenizer: only the vocabulary size (%d) is checked", mpath, V);
    }
    {
        int cr = lmp_ctx_resolve(m, ctx, ctx, p->allow_long_ctx);
        if (cr < 0) {
            rc = lmp_err_prefix(cr, "%s (sequences of %d tokens)", path, ctx);
            goto done;
        }
    }
    if (p->skip < 0 || p->skip >= ctx) {
        rc = lmp_err(LMP_EINVAL, "--skip %d: must be in 0..%d (the file's ctx - 1)", p->skip, ctx - 1);
        goto done;
    }
    const bool use_full = h->full && !(p->use_topk && h->k > 0);
    int64_t nseq = h->n_seqs;
    if (p->max_seqs > 0 && p->max_seqs < nseq)
        nseq = p->max_seqs;
    if (nseq == 0) {
        rc = lmp_err(LMP_EFORMAT, "%s holds no sequences", path);
        goto done;
    }
    const int B = ctx < EVAL_BATCH ? ctx : EVAL_BATCH;
    logits = malloc(sizeof(float) * (size_t)B * (size_t)V);
    /* per-position results of every sequence: under MPI each rank evaluates its share of
     * the sequences (lmp_dist_share) and the rows are gathered, so the sums below run over
     * the same values in the same order as in a single process */
    po = malloc(sizeof *po * (size_t)(nseq * ctx));
    klds = malloc(sizeof(double) * (size_t)(nseq * ctx));
    if (!logits || !po || !klds)
        rc = lmp_err(LMP_ENOMEM, "out of memory (%lld positions)", (long long)(nseq * ctx));
    else if (!(rc = lw_seq_alloc(&t, h)))
        rc = lmp_session_new(&s, m, ctx);

    double seconds = 0;
    int64_t qlo, qhi;
    lmp_dist_share(nseq, &qlo, &qhi);
    for (int64_t q = qlo; q < qhi && !rc; q++) {
        if ((rc = lw_reader_read(rd, q, &t)))
            break;
        lmp_session_reset(s);
        pos_out *pq = po + q * ctx;
        for (int off = 0; off < ctx && !rc; off += B) {
            int cnt = ctx - off < B ? ctx - off : B;
            double t0 = lmp_time_s();
            if ((rc = lmp_eval(s, t.tokens + off, cnt, logits, true)))
                break;
            seconds += lmp_time_s() - t0;
            if (h->temperature != 1.0) {
                const float inv = (float)(1.0 / h->temperature);
                for (size_t i = 0; i < (size_t)cnt * (size_t)V; i++)
                    logits[i] *= inv;
            }
            int oom = 0;
#pragma omp parallel reduction(| : oom)
            {
                uint8_t *mask = calloc((size_t)V, 1);
                float *tail = malloc(sizeof(float) * (size_t)V);
                if (!mask || !tail)
                    oom = 1;
#pragma omp for schedule(static)
                for (int j = 0; j < cnt; j++)
                    if (mask && tail)
                        eval_position(h, &t, off + j, logits + (size_t)j * V, use_full, mask, tail, &pq[off + j]);
                free(mask);
                free(tail);
            }
            if (oom)
                rc = lmp_err(LMP_ENOMEM, "out of memory");
        }
        if (!rc && p->progress)
            p->progress(p->user, (int)(q - qlo + 1), (int)(qhi - qlo));
    }
    if ((rc = lmp_dist_status(rc)) || (rc = lmp_dist_allgather_rows(po, nseq, sizeof *po * (size_t)ctx)))
        goto done;
    /* the evaluation time of the slowest rank (every rank takes the same branch) */
    if (lmp_dist_size() > 1 && lmp_dist_size() <= 256) {
        double ts[256] = {0};
        ts[lmp_dist_rank()] = seconds;
        if (lmp_dist_sum_f64(ts, (size_t)lmp_dist_size()) == 0)
            for (int i = 0; i < lmp_dist_size(); i++)
                seconds = ts[i] > seconds ? ts[i] : seconds;
    }

    double sk = 0, sk2 = 0, skt = 0, sg = 0, sdp = 0, sdp2 = 0, sdp4 = 0;
    double snb = 0, snb2 = 0, snm = 0, snm2 = 0, sd = 0, sd2 = 0;
    int64_t nk = 0, ns = 0, nsame = 0;
    for (int64_t q = 0; q < nseq; q++)
        for (int j = p->skip; j < ctx; j++) {
            const pos_out *o = &po[q * ctx + j];
            klds[nk++] = o->kld;
            sk += o->kld;
            sk2 += o->kld * o->kld;
            skt += o->kld_topk;
            sg += o->gap;
            nsame += o->same;
            if (o->scored) {
                ns++;
                sdp += o->dp;
                sdp2 += o->dp * o->dp;
                sdp4 += o->dp * o->dp * o->dp * o->dp;
                snb += o->nll_b;
                snb2 += o->nll_b * o->nll_b;
                snm += o->nll_m;
                snm2 += o->nll_m * o->nll_m;
                double d = o->nll_m - o->nll_b;
                sd += d;
                sd2 += d * d;
            }
        }

    r->exact = use_full;
    r->k = h->k;
    mean_err(sk, sk2, nk, &r->kld_mean, &r->kld_stderr);
    qsort(klds, (size_t)nk, sizeof(double), cmp_double);
    for (int i = 0; i < LMP_KLD_NPCT; i++) {
        double f = lmp_kld_pct_fraction[i] * (double)(nk - 1);
        int64_t lo = (int64_t)f;
        double fr = f - (double)lo;
        r->kld_pct[i] = lo + 1 < nk ? (1 - fr) * klds[lo] + fr * klds[lo + 1] : klds[lo];
        if (r->kld_pct[i] < 0)
            r->kld_pct[i] = 0; /* rounding noise: a KLD is never negative */
    }
    r->kld_min_raw = nk ? klds[0] : 0;
    for (int64_t i = 0; i < nk && klds[i] < 0; i++)
        r->n_kld_negative++;
    r->has_topk = h->k > 0;
    if (r->has_topk) {
        r->kld_topk = skt / (double)nk;
        r->kld_topk_gap_bound = sg / (double)nk;
    }
    r->same_top = (double)nsame / (double)nk;
    r->same_top_stderr = nk > 1 ? sqrt(r->same_top * (1 - r->same_top) / (double)(nk - 1)) : 0;
    double ms, ms_err, mean, err;
    mean_err(sdp, sdp2, ns, &r->dp_mean, &r->dp_stderr);
    mean_err(sdp2, sdp4, ns, &ms, &ms_err);
    r->dp_rms = sqrt(ms);
    r->dp_rms_stderr = r->dp_rms > 0 ? 0.5 * ms_err / r->dp_rms : 0;
    mean_err(snb, snb2, ns, &mean, &err);
    r->ppl_base = exp(mean);
    r->ppl_base_stderr = r->ppl_base * err;
    mean_err(snm, snm2, ns, &mean, &err);
    r->ppl_model = exp(mean);
    r->ppl_model_stderr = r->ppl_model * err;
    mean_err(sd, sd2, ns, &r->ln_ppl_ratio, &r->ln_ppl_ratio_stderr);
    r->ppl_ratio = exp(r->ln_ppl_ratio);
    r->n_kld = nk;
    r->n_scored = ns;
    r->n_seqs = (int)nseq;
    r->ctx = ctx;
    r->temperature = h->temperature;
    r->seconds = seconds;
    r->tokens_per_s = seconds > 0 ? (double)(nseq * ctx) / seconds : 0;
    /* a result that is not a number is an error, never printed (nor "nan" in JSON) */
    if (!isfinite(r->kld_mean) || !isfinite(r->kld_stderr) || !isfinite(r->ppl_base) || !isfinite(r->ppl_model) ||
        !isfinite(r->ppl_ratio) || !isfinite(r->dp_rms))
        rc = lmp_err(LMP_ERANGE, "%s: the KL divergence or perplexities are not finite (KLD %g, base ppl %g, ppl %g)",
                     path, r->kld_mean, r->ppl_base, r->ppl_model);
done:
    lw_reader_close(rd);
    lw_seq_free(&t);
    lmp_session_free(s);
    free(logits);
    free(po);
    free(klds);
    return rc;
}
