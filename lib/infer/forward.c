/*
 * The forward pass: the block runner (one Llama decoder block on a batch of hidden
 * states: RMSNorm, q/k/v projections, RoPE in either pairing, causal grouped-query
 * attention over the KV cache, output projection, RMSNorm, SwiGLU MLP, residuals),
 * sessions that run every block in order with an f32 KV cache, and the final norm and
 * output projection. Matrix products go through lmp_gemm (weights in place, any
 * supported dtype); everything else here is f32 with fixed-order reductions, so results
 * do not depend on the thread count. Not here: weight loading (model.c).
 */
#include "infer.h"
#include "infer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Largest number of tokens pushed through the blocks at once by lmp_eval: bounds the
 * activation buffers ([n][ffn] floats) and the logits of one step. */
#define EVAL_BATCH 512

/* ---------------------------------------------------------------- small kernels --- */

/* Element-wise work of a batch (norms, RoPE, residuals, SwiGLU) is split over threads by
 * rows from this many elements on (each row computed alike whatever the split; below it
 * a fork/join costs more than the work, and decoding's one row stays on its thread). */
#define ROWS_PAR_MIN 65536

/* Row-wise RMSNorm (transformers' LlamaRMSNorm) with lmp_rmsnorm. */
static void rmsnorm_rows(float *y, const float *x, const float *w, int64_t n, int64_t d, float eps)
{
#pragma omp parallel for schedule(static) if (n > 1 && n * d >= ROWS_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        lmp_rmsnorm(y + i * d, x + i * d, w, d, eps);
}

/* x[i] += y[i] for the n rows of d. */
static void add_rows(float *x, const float *y, int64_t n, int64_t d)
{
#pragma omp parallel for schedule(static) if (n > 1 && n * d >= ROWS_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            x[i * d + j] += y[i * d + j];
}

/* x[i] += y[i] * s for the n rows of d (granite's residual_multiplier). */
static void add_scaled_rows(float *x, const float *y, float s, int64_t n, int64_t d)
{
#pragma omp parallel for schedule(static) if (n > 1 && n * d >= ROWS_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < d; j++)
            x[i * d + j] += y[i * d + j] * s;
}

/* The FFN activation of the model on one row of ff: SwiGLU or GeGLU. */
static void act_mul(const lmp_model *m, float *g, const float *u, int64_t ff)
{
    if (m->cfg.act == LMP_ACT_GELU_TANH)
        lmp_gelu_mul(g, u, ff); /* transformers' gelu_pytorch_tanh */
    else
        lmp_silu_mul(g, u, ff);
}

/* Residual add of a branch output y (post-norm and multiplier applied here, in place on
 * y): x += post_norm(y) * resid_mult. */
static void residual_rows(const lmp_model *m, float *x, float *y, const float *post_norm, int64_t n)
{
    const int64_t d = m->cfg.hidden_size;
    if (post_norm)
        rmsnorm_rows(y, y, post_norm, n, d, m->cfg.rms_eps);
    const float rm = m->cfg.residual_multiplier;
    if (rm > 0 && rm != 1.0f)
        add_scaled_rows(x, y, rm, n, d);
    else
        add_rows(x, y, n, d);
}

/* Logits post-processing: granite's logits_scaling (divided) and gemma2's final soft-cap,
 * on n rows of V. */
static void logits_post(const lmp_model *m, float *lg, int64_t n)
{
    const float ls = m->cfg.logits_scaling, cap = m->cfg.final_softcap;
    if ((ls <= 0 || ls == 1.0f) && cap <= 0)
        return;
    const int64_t V = m->n_vocab;
#pragma omp parallel for schedule(static) if (n > 1 && n * V >= ROWS_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        for (int64_t v = 0; v < V; v++) {
            float z = lg[i * V + v];
            if (ls > 0 && ls != 1.0f)
                z = z / ls;
            if (cap > 0)
                z = tanhf(z / cap) * cap;
            lg[i * V + v] = z;
        }
}

/* q/k RMSNorm (qwen3, gemma3: per head; olmo2: whole width) of n rows in place. */
static void qk_norm_rows(const lmp_model *m, const lmp_layer *L, float *q, float *k, int64_t n)
{
    const lmp_config *c = &m->cfg;
    if (!L->q_norm)
        return;
    const int64_t hd = c->head_dim;
    if (c->qk_norm == LMP_QKNORM_HEAD) {
        rmsnorm_rows(q, q, L->q_norm, n * c->n_heads, hd, c->rms_eps);
        rmsnorm_rows(k, k, L->k_norm, n * c->n_kv_heads, hd, c->rms_eps);
    } else {
        rmsnorm_rows(q, q, L->q_norm, n, c->n_heads * hd, c->rms_eps);
        rmsnorm_rows(k, k, L->k_norm, n, c->n_kv_heads * hd, c->rms_eps);
    }
}

/* gate[i] = silu(gate[i]) * up[i], row by row (as decoding does it). */
static void act_mul_rows(const lmp_model *m, float *g, const float *u, int64_t n, int64_t ff)
{
#pragma omp parallel for schedule(static) if (n > 1 && n * ff >= ROWS_PAR_MIN)
    for (int64_t i = 0; i < n; i++)
        act_mul(m, g + i * ff, u + i * ff, ff);
}

/* ---------------------------------------------------------------- RoPE ------------ */

/* The RoPE of one layer: its frequency table (NULL: no RoPE on this layer, smollm3) and
 * the cos/sin scale (longrope's attention factor). */
typedef struct {
    const float *inv;
    float mscale;
} rope_par;

/* Layer l's RoPE for a sequence of n_ctx positions: gemma3's local layers have their own
 * base; longrope uses its long factors when the context exceeds the original one (the
 * choice is the context's, as llama.cpp makes it, so batched and token-by-token
 * evaluation agree; transformers picks by the longest position of each call). */
static rope_par layer_rope(const lmp_model *m, int l, int n_ctx)
{
    const lmp_config *c = &m->cfg;
    rope_par r = {m->inv_freq, m->rope_mscale};
    if (l < LMP_MAX_LAYERS && (c->layer_flags[l] & LMP_LAYER_NOROPE))
        r.inv = NULL;
    else if (m->inv_freq_local && lmp_config_window(c, l) > 0)
        r.inv = m->inv_freq_local, r.mscale = 1.0f;
    else if (m->inv_freq_long && n_ctx > c->rope_orig_max_pos)
        r.inv = m->inv_freq_long;
    return r;
}

/* Rotates each head of x[n][n_heads * head_dim] in place; token i is at position
 * pos0 + i. HF's rotate-half pairs element j with j + rope_dim/2 (the first rope_dim of
 * each head; the rest pass through: partial rotary); ggml's interleaved layout (GGUF llama
 * files) pairs 2j with 2j+1. Pair j turns by pos * inv[j]; cos and sin are scaled by
 * mscale. */
/* Token i of rope_apply: angles into cosv / sinv (half floats each), then every head. */
static void rope_token(const lmp_model *m, float *x, int i, int pos0, int n_heads, float *cosv,
                       float *sinv, rope_par rp)
{
    const int hd = m->cfg.head_dim, half = m->rope_dim / 2;
    const float *inv = rp.inv, ms = rp.mscale;
    float p = (float)(pos0 + i);
    for (int j = 0; j < half; j++) {
        float a = p * inv[j]; /* f32 angle, as transformers computes it */
        cosv[j] = cosf(a) * ms;
        sinv[j] = sinf(a) * ms;
    }
    for (int h = 0; h < n_heads; h++) {
        float *v = x + ((int64_t)i * n_heads + h) * hd;
        if (m->interleaved) {
            for (int j = 0; j < half; j++) {
                float x0 = v[2 * j], x1 = v[2 * j + 1];
                v[2 * j] = x0 * cosv[j] - x1 * sinv[j];
                v[2 * j + 1] = x0 * sinv[j] + x1 * cosv[j];
            }
        } else {
            for (int j = 0; j < half; j++) {
                float x0 = v[j], x1 = v[j + half];
                v[j] = x0 * cosv[j] - x1 * sinv[j];
                v[j + half] = x0 * sinv[j] + x1 * cosv[j];
            }
        }
    }
}

static void rope_apply(const lmp_model *m, float *x, int n, int pos0, int n_heads, float *cs,
                       rope_par rp)
{
    if (!rp.inv)
        return;
    const int hd = m->cfg.head_dim, half = m->rope_dim / 2;
    /* tokens over threads when each can keep its angles on the stack (head_dim <= 512) */
    const bool par = n > 1 && half <= 256 && (int64_t)n * n_heads * hd >= ROWS_PAR_MIN;
    if (!par) { /* no parallel region at all: even an inactive one ends in a futex wake */
        for (int i = 0; i < n; i++)
            rope_token(m, x, i, pos0, n_heads, cs, cs + half, rp);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        float own[512];
        rope_token(m, x, i, pos0, n_heads, own, own + half, rp);
    }
}

/* ---------------------------------------------------------------- attention ------- */

/* out[i][h*hd..] = softmax(q_i,h . K^T / sqrt(hd)) V over the keys token i may see.
 * K, V: [.][kvd]; key t is visible to query i when t < base + i + 1 (base = number of
 * cached positions before the batch) and, with a sliding window (Mistral; Qwen2 with
 * use_sliding_window), when (base + i) - t < window, as transformers' sliding-window
 * causal mask has it. Query head h reads KV head h / (n_heads/n_kv) (transformers'
 * repeat_kv order). */

/* First key visible to the query at absolute position p. */
static inline int first_key(int p, int sw) { return sw > 0 && p + 1 > sw ? p + 1 - sw : 0; }

/* One layer's attention: score scale, soft-cap (gemma2; 0 = none), window (0 = full). */
typedef struct {
    float scale, cap;
    int window;
} attn_par;

static attn_par layer_attn(const lmp_model *m, int l)
{
    attn_par a = {m->attn_scale, m->cfg.attn_softcap, lmp_config_window(&m->cfg, l)};
    return a;
}

/* score -> scaled (and soft-capped) score, as transformers computes it in f32 */
static inline float score_of(float dot, const attn_par *ap)
{
    float s = dot * ap->scale;
    return ap->cap > 0 ? tanhf(s / ap->cap) * ap->cap : s;
}

/* The widest window of any layer, for sizing scratch (0 = some layer attends fully). */
static int size_window(const lmp_model *m)
{
    return m->cfg.swa_layers ? 0 : m->cfg.sliding_window;
}

/* Few queries (decoding): one serial task per (token, head), parallel over tasks. */
static int attention_loop(const lmp_model *m, const float *q, int n, int base, const float *K,
                     const float *V, float *out, const attn_par *ap)
{
    const int hd = m->cfg.head_dim, nh = m->cfg.n_heads, nkv = m->cfg.n_kv_heads;
    const int group = nh / nkv;
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    const int max_keys = base + n;
    const int sw = ap->window;
    int nthr = 1;
#ifdef _OPENMP
    nthr = omp_get_max_threads();
#endif
    float *scores = malloc(sizeof(float) * (size_t)max_keys * (size_t)nthr);
    if (!scores)
        return lmp_err(LMP_ENOMEM, "out of memory (attention scores, %d keys)", max_keys);
    const int64_t tasks = (int64_t)n * nh;
#pragma omp parallel for schedule(dynamic, 4) if (tasks * max_keys > 4096)
    for (int64_t task = 0; task < tasks; task++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        const int i = (int)(task / nh), h = (int)(task % nh), kh = h / group;
        const int nk = base + i + 1, t0 = first_key(base + i, sw);
        const float *qh = q + i * qd + (int64_t)h * hd;
        float *s = scores + (size_t)tid * (size_t)max_keys;
        for (int t = t0; t < nk; t++)
            s[t - t0] = score_of(lmp_dot_f32(qh, K + t * kvd + (int64_t)kh * hd, hd), ap);
        lmp_softmax_f32(s, nk - t0);
        float *o = out + i * qd + (int64_t)h * hd;
        memset(o, 0, sizeof(float) * (size_t)hd);
        for (int t = t0; t < nk; t++)
            lmp_axpy_f32(o, s[t - t0], V + t * kvd + (int64_t)kh * hd, hd);
    }
    free(scores);
    return 0;
}

/* Many queries (prompt processing): per KV head, the scores of all its query heads and
 * tokens against the visible key span as one lmp_gemm (S = Q K^T), masked row softmax,
 * and a second lmp_gemm (O = P V), in causal chunks of ATTN_CHUNK query tokens: chunk c
 * only multiplies the keys up to its last token (from its first token's window start), so
 * the work above the diagonal is cut to what lies inside the chunks (512 tokens: 5/8 of
 * the full square). Rows of a chunk: its tokens for each query head of the group, head
 * major. The masked entries inside a chunk are zeros (adding them changes no sum). Each
 * row is reduced in a fixed order whatever the thread count. */
#define ATTN_CHUNK 128

/* Floats of attention_gemm's scratch for n queries after base cached positions. */
static size_t attention_gemm_floats(const lmp_model *m, int n, int base)
{
    const int hd = m->cfg.head_dim, group = m->cfg.n_heads / m->cfg.n_kv_heads;
    const size_t nkeys = (size_t)(base + n - first_key(base, size_window(m)));
    const size_t rows = (size_t)group * (size_t)n;
    return nkeys * (size_t)hd * 2 + rows * (2 * (size_t)hd + nkeys);
}

static void attention_gemm(const lmp_model *m, const float *q, int n, int base, const float *K,
                           const float *V, float *out, float *buf, const attn_par *ap)
{
    const int hd = m->cfg.head_dim, nh = m->cfg.n_heads, nkv = m->cfg.n_kv_heads;
    const int group = nh / nkv, sw = ap->window;
    const int64_t qd = (int64_t)nh * hd, kvd = (int64_t)nkv * hd;
    const int kt0 = first_key(base, sw), nkeys = base + n - kt0;
    const int64_t rows = (int64_t)group * n;
    float *Kh = buf, *Vt = Kh + (size_t)nkeys * hd, *Qg = Vt + (size_t)nkeys * hd;
    float *O = Qg + (size_t)rows * hd, *S = O + (size_t)rows * hd;
    for (int kh = 0; kh < nkv; kh++) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < nkeys; t++) {
            const float *kr = K + (int64_t)(kt0 + t) * kvd + (int64_t)kh * hd;
            const float *vr = V + (int64_t)(kt0 + t) * kvd + (int64_t)kh * hd;
            memcpy(Kh + (size_t)t * hd, kr, sizeof(float) * (size_t)hd);
            for (int j = 0; j < hd; j++)
                Vt[(size_t)j * nkeys + t] = vr[j];
        }
        for (int t0 = 0; t0 < n; t0 += ATTN_CHUNK) {
            const int t1 = t0 + ATTN_CHUNK < n ? t0 + ATTN_CHUNK : n, cnt = t1 - t0;
            const int klo = first_key(base + t0, sw) - kt0, nk = base + t1 - kt0 - klo;
            const int64_t r0 = (int64_t)group * t0, nr = (int64_t)group * cnt;
            /* local row g * cnt + i = query head kh*group + g, token t0 + i */
            for (int64_t r = 0; r < nr; r++)
                memcpy(Qg + (r0 + r) * hd,
                       q + (t0 + r % cnt) * qd + (int64_t)(kh * group + r / cnt) * hd,
                       sizeof(float) * (size_t)hd);
            const lmp_wmat wk = {.dtype = LMP_DT_F32, .rows = nk, .cols = hd,
                                 .data = Kh + (size_t)klo * hd,
                                 .row_bytes = sizeof(float) * (size_t)hd};
            const lmp_wmat wv = {.dtype = LMP_DT_F32, .rows = hd, .cols = nk, .data = Vt + klo,
                                 .row_bytes = sizeof(float) * (size_t)nkeys};
            float *Sc = S + r0 * nkeys; /* nr x nk, dense */
            lmp_gemm(Sc, Qg + r0 * hd, &wk, NULL, nr);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < nr; r++) {
                const int p = base + t0 + (int)(r % cnt);
                const int lo = first_key(p, sw) - kt0 - klo, hi = p + 1 - kt0 - klo;
                float *sr = Sc + r * nk;
                if (ap->cap > 0) {
                    for (int t = lo; t < hi; t++)
                        sr[t] = score_of(sr[t], ap);
                } else {
                    const float scale = ap->scale;
                    for (int t = lo; t < hi; t++)
                        sr[t] *= scale;
                }
                lmp_softmax_f32(sr + lo, hi - lo);
                memset(sr, 0, sizeof(float) * (size_t)lo);
                memset(sr + hi, 0, sizeof(float) * (size_t)(nk - hi));
            }
            lmp_gemm(O + r0 * hd, Sc, &wv, NULL, nr);
            for (int64_t r = 0; r < nr; r++)
                memcpy(out + (t0 + r % cnt) * qd + (int64_t)(kh * group + r / cnt) * hd,
                       O + (r0 + r) * hd, sizeof(float) * (size_t)hd);
        }
    }
}

/* Queries per batch from which the two-gemm attention pays off. */
#define ATTN_GEMM_MIN 8

/* abuf: attention_gemm_floats(m, n, base) floats when n >= ATTN_GEMM_MIN */
static int attention(const lmp_model *m, const float *q, int n, int base, const float *K,
                     const float *V, float *out, float *abuf, const attn_par *ap)
{
    if (n >= ATTN_GEMM_MIN) {
        attention_gemm(m, q, n, base, K, V, out, abuf, ap);
        return 0;
    }
    return attention_loop(m, q, n, base, K, V, out, ap);
}

/* ---------------------------------------------------------------- block runner ---- */

static int linear(const lmp_layer *L, lmp_linear w, float *Y, const float *X, int64_t n, int layer,
                  lmp_linear_hook hook, void *user)
{
    if (hook) {
        int rc = hook(user, layer, w, X, n, L->w[w].cols);
        if (rc)
            return rc;
    }
    lmp_gemm(Y, X, &L->w[w], L->bias[w], n);
    if (L->lora[w])
        lmp_lora_lin_apply(L->lora[w], Y, X, n);
    return 0;
}

/* Floats of block_run's scratch for n tokens after base cached positions: the block's
 * activations, then attention_gemm's. */
static size_t block_floats(const lmp_model *m, int n, int base)
{
    const lmp_config *c = &m->cfg;
    const int64_t d = c->hidden_size, hd = c->head_dim, ff = c->intermediate_size;
    const int64_t qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    size_t moe = c->n_experts > 0 ? (size_t)n * (size_t)d + lmp_moe_floats(m, n) : 0;
    return (size_t)n * (size_t)(d + qd + qd + 2 * kvd + 2 * ff) + (size_t)hd + moe +
           (n >= ATTN_GEMM_MIN ? attention_gemm_floats(m, n, base) : 0);
}

/* Where a block's scratch (block_floats) holds its buffers: xn normed input; q, a queries
 * then attention output; kb, vb this batch's keys and values (when there is no cache);
 * g, u the FFN; cs RoPE's table; mo, mbuf the experts' output and scratch; then the
 * attention's scratch. */
typedef struct {
    float *xn, *q, *a, *kb, *vb, *g, *u, *cs, *mo, *mbuf, *abuf;
} block_bufs;

static block_bufs block_layout(const lmp_model *m, int n, float *buf)
{
    const lmp_config *c = &m->cfg;
    const int64_t d = c->hidden_size, hd = c->head_dim, ff = c->intermediate_size;
    const int64_t qd = c->n_heads * hd, kvd = c->n_kv_heads * hd;
    block_bufs b;
    b.xn = buf;
    b.q = b.xn + n * d;
    b.a = b.q + n * qd;
    b.kb = b.a + n * qd;
    b.vb = b.kb + n * kvd;
    b.g = b.vb + n * kvd;
    b.u = b.g + n * ff;
    b.cs = b.u + n * ff;
    b.mo = b.cs + hd;
    b.mbuf = b.mo + (c->n_experts > 0 ? n * d : 0);
    b.abuf = b.mbuf + (c->n_experts > 0 ? lmp_moe_floats(m, n) : 0);
    return b;
}

/* lmp_block_run on a caller's scratch of block_floats(m, n, kv ? pos0 : 0) floats
 * (sessions keep theirs across layers and calls: a fresh buffer per block of a 512-token
 * TinyLlama batch is 37 MB of pages faulted in and zeroed by the kernel every time), from
 * stage boundary `from` to `to` (LMP_STAGE_*; the whole block: LMP_STAGE_IN to
 * LMP_STAGE_OUT). The stages are cut where a linear's input is ready, so running [a, b)
 * then [b, c) performs exactly the arithmetic of [a, c). */
static int block_run(const lmp_model *m, int layer, float *x, int n, int pos0, lmp_kv_layer *kv,
                     lmp_linear_hook hook, void *user, float *buf, int from, int to)
{
    const lmp_config *c = &m->cfg;
    const lmp_layer *L = &m->layers[layer];
    const int64_t d = c->hidden_size, ff = c->intermediate_size;
    const int64_t kvd = c->n_kv_heads * c->head_dim;
    const block_bufs B = block_layout(m, n, buf);
    float *xn = B.xn, *q = B.q, *a = B.a, *g = B.g, *u = B.u;
    float *k = kv ? kv->k + (int64_t)pos0 * kvd : B.kb;
    float *v = kv ? kv->v + (int64_t)pos0 * kvd : B.vb;
    int rc;
    const float *in;

    if (from <= LMP_STAGE_IN && to > LMP_STAGE_IN) {
        /* attention (olmo2 has no pre-norm: the projections read x itself) */
        in = x;
        if (L->attn_norm) {
            rmsnorm_rows(xn, x, L->attn_norm, n, d, c->rms_eps);
            in = xn;
        }
        if ((rc = linear(L, LMP_LIN_Q, q, in, n, layer, hook, user)) ||
            (rc = linear(L, LMP_LIN_K, k, in, n, layer, hook, user)) ||
            (rc = linear(L, LMP_LIN_V, v, in, n, layer, hook, user)))
            return rc;
        qk_norm_rows(m, L, q, k, n);
        const rope_par rp = layer_rope(m, layer, kv ? kv->n_ctx : pos0 + n);
        rope_apply(m, q, n, pos0, c->n_heads, B.cs, rp);
        rope_apply(m, k, n, pos0, c->n_kv_heads, B.cs, rp);
        const attn_par ap = layer_attn(m, layer);
        if (kv)
            rc = attention(m, q, n, pos0, kv->k, kv->v, a, B.abuf, &ap);
        else
            rc = attention(m, q, n, 0, k, v, a, B.abuf, &ap);
        if (rc)
            return rc;
    }
    if (from <= LMP_STAGE_O && to > LMP_STAGE_O) {
        if ((rc = linear(L, LMP_LIN_O, xn, a, n, layer, hook, user)))
            return rc;
        residual_rows(m, x, xn, L->post_attn_norm, n);
    }
    if (from <= LMP_STAGE_MLP && to > LMP_STAGE_MLP) {
        /* MLP: down(act(gate(x)) * up(x)), or the routed experts' weighted sum of it (moe.c) */
        in = x;
        if (L->ffn_norm) {
            rmsnorm_rows(xn, x, L->ffn_norm, n, d, c->rms_eps);
            in = xn;
        }
        if (L->moe) {
            if (to < LMP_STAGE_OUT)
                return lmp_err(LMP_EINVAL, "lmp_block_run_stages: layer %d is a mixture of experts: its FFN "
                               "is one stage", layer);
            if ((rc = lmp_moe_run(m, L->moe, in, n, B.mo, B.mbuf, layer, hook, user)))
                return rc;
            residual_rows(m, x, B.mo, L->post_ffn_norm, n);
            return 0;
        }
        if ((rc = linear(L, LMP_LIN_GATE, g, in, n, layer, hook, user)) ||
            (rc = linear(L, LMP_LIN_UP, u, in, n, layer, hook, user)))
            return rc;
        act_mul_rows(m, g, u, n, ff);
    }
    if (from <= LMP_STAGE_DOWN && to > LMP_STAGE_DOWN) {
        if (L->moe)
            return lmp_err(LMP_EINVAL, "lmp_block_run_stages: layer %d is a mixture of experts: its FFN "
                           "is one stage", layer);
        if ((rc = linear(L, LMP_LIN_DOWN, xn, g, n, layer, hook, user)))
            return rc;
        residual_rows(m, x, xn, L->post_ffn_norm, n);
    }
    return 0;
}

size_t lmp_block_scratch_floats(const lmp_model *m, int n, int pos0)
{
    return block_floats(m, n > 0 ? n : 1, pos0 > 0 ? pos0 : 0);
}

int lmp_block_run_buf(const lmp_model *m, int layer, float *x, int n, int pos0, lmp_kv_layer *kv,
                      lmp_linear_hook hook, void *user, float *scratch)
{
    if (layer < 0 || layer >= m->cfg.n_layers || n <= 0 || pos0 < 0)
        return lmp_err(LMP_EINVAL, "lmp_block_run: layer %d, %d tokens at position %d", layer, n,
                       pos0);
    if (kv && pos0 + n > kv->n_ctx)
        return lmp_err(LMP_ERANGE, "positions %d..%d exceed the KV cache of %d", pos0,
                       pos0 + n - 1, kv->n_ctx);
    float *buf = scratch ? scratch : malloc(sizeof(float) * block_floats(m, n, kv ? pos0 : 0));
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory (block activations for %d tokens)", n);
    int rc = block_run(m, layer, x, n, pos0, kv, hook, user, buf, LMP_STAGE_IN, LMP_STAGE_OUT);
    if (!scratch)
        free(buf);
    return rc;
}

int lmp_block_run(const lmp_model *m, int layer, float *x, int n, int pos0, lmp_kv_layer *kv,
                  lmp_linear_hook hook, void *user)
{
    return lmp_block_run_buf(m, layer, x, n, pos0, kv, hook, user, NULL);
}

int lmp_block_run_stages(const lmp_model *m, int layer, float *x, int n, int from, int to,
                         lmp_linear_hook hook, void *user, float *scratch)
{
    if (layer < 0 || layer >= m->cfg.n_layers || n <= 0 || !scratch || from < LMP_STAGE_IN || to > LMP_STAGE_OUT ||
        from > to)
        return lmp_err(LMP_EINVAL, "lmp_block_run_stages: layer %d, %d tokens, stages [%d, %d)", layer, n, from, to);
    if (m->layers[layer].moe && from == LMP_STAGE_DOWN)
        return lmp_err(LMP_EINVAL, "lmp_block_run_stages: layer %d is a mixture of experts: its FFN is one stage",
                       layer);
    return block_run(m, layer, x, n, 0, NULL, hook, user, scratch, from, to);
}

float *lmp_block_stage_buf(const lmp_model *m, float *scratch, int n, int stage, int64_t *width)
{
    const block_bufs B = block_layout(m, n, scratch);
    const lmp_config *c = &m->cfg;
    switch (stage) {
    case LMP_STAGE_O:
        *width = (int64_t)c->n_heads * c->head_dim;
        return B.a;
    case LMP_STAGE_DOWN:
        *width = c->intermediate_size;
        return B.g;
    default:
        *width = 0;
        return NULL;
    }
}

void lmp_model_head(const lmp_model *m, float *x, int64_t n, float *logits)
{
    const int64_t d = m->cfg.hidden_size;
    rmsnorm_rows(x, x, m->final_norm, n, d, m->cfg.rms_eps);
    lmp_gemm(logits, x, &m->output, NULL, n);
    logits_post(m, logits, n);
}

/* ---------------------------------------------------------------- decoding -------- */

/* One token through every block and the head inside a single OpenMP parallel region.
 * Decoding does so little arithmetic per matrix that opening a region for each product
 * (7 per block plus attention) cost more than the products on a loaded 2-core machine;
 * here the team meets at barriers instead. The arithmetic is that of lmp_block_run with
 * n == 1 and of lmp_model_head, operation for operation (lmp_gemv_team is lmp_gemm's
 * M == 1 path; the residual adds fold into the output rows, x + (dot + bias) as before),
 * so logits are bitwise identical to lmp_block_run's for one token (tests/unit/
 * test_engine.c checks it) and to any thread count's. */
typedef struct {
    float *xn, *q, *a, *g, *u, *cs, *scores; /* scores: one row of n_ctx per thread */
    float *mo, *mscratch;                    /* experts' output (hidden), moe.c scratch */
    lmp_team *team;                          /* the products' work shares */
} decode_buf;

static void decode_team(const lmp_model *m, lmp_session *s, float *x, float *logits,
                        const decode_buf *b, int nthr)
{
    const lmp_config *c = &m->cfg;
    const int64_t d = c->hidden_size, hd = c->head_dim, ff = c->intermediate_size;
    const int nh = c->n_heads, group = c->n_heads / c->n_kv_heads;
    const int64_t kvd = (int64_t)c->n_kv_heads * hd;
    const int pos = s->pos, nk = pos + 1;
    /* the residual add folds into the output rows unless a post-norm or multiplier sits
     * between the product and the add (then: product, then residual_rows as batched) */
    const bool fold = c->norms == LMP_NORM_PRE &&
                      !(c->residual_multiplier > 0 && c->residual_multiplier != 1.0f);
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    float *sc = b->scores + (size_t)(tid < nthr ? tid : 0) * (size_t)s->n_ctx;
    for (int l = 0; l < c->n_layers; l++) {
        const lmp_layer *L = &m->layers[l];
        float *k = s->kv[l].k + (int64_t)pos * kvd, *v = s->kv[l].v + (int64_t)pos * kvd;
        const attn_par ap = layer_attn(m, l);
        const rope_par rp = layer_rope(m, l, s->n_ctx);
        const int t0 = first_key(pos, ap.window);
        const float *in = L->attn_norm ? b->xn : x;
        if (L->attn_norm) {
#pragma omp single
            lmp_rmsnorm(b->xn, x, L->attn_norm, d, c->rms_eps);
        }
        lmp_gemv_team(b->q, in, &L->w[LMP_LIN_Q], L->bias[LMP_LIN_Q], false, b->team);
        lmp_gemv_team(k, in, &L->w[LMP_LIN_K], L->bias[LMP_LIN_K], false, b->team);
        lmp_gemv_team(v, in, &L->w[LMP_LIN_V], L->bias[LMP_LIN_V], false, b->team);
#pragma omp barrier
#pragma omp single
        {
            qk_norm_rows(m, L, b->q, k, 1);
            rope_apply(m, b->q, 1, pos, nh, b->cs, rp);
            rope_apply(m, k, 1, pos, c->n_kv_heads, b->cs, rp);
        }
        /* attention_loop's arithmetic, one task per head */
#pragma omp for schedule(dynamic, 1)
        for (int h = 0; h < nh; h++) {
            const int kh = h / group;
            const float *qh = b->q + (int64_t)h * hd;
            const float *K = s->kv[l].k, *V = s->kv[l].v;
            for (int t = t0; t < nk; t++)
                sc[t - t0] = score_of(lmp_dot_f32(qh, K + t * kvd + (int64_t)kh * hd, hd), &ap);
            lmp_softmax_f32(sc, nk - t0);
            float *o = b->a + (int64_t)h * hd;
            memset(o, 0, sizeof(float) * (size_t)hd);
            for (int t = t0; t < nk; t++)
                lmp_axpy_f32(o, sc[t - t0], V + t * kvd + (int64_t)kh * hd, hd);
        }
        if (fold) {
            lmp_gemv_team(x, b->a, &L->w[LMP_LIN_O], L->bias[LMP_LIN_O], true, b->team);
#pragma omp barrier
        } else {
            lmp_gemv_team(b->xn, b->a, &L->w[LMP_LIN_O], L->bias[LMP_LIN_O], false, b->team);
#pragma omp barrier
#pragma omp single
            residual_rows(m, x, b->xn, L->post_attn_norm, 1);
        }
        in = L->ffn_norm ? b->xn : x;
        if (L->ffn_norm) {
#pragma omp single
            lmp_rmsnorm(b->xn, x, L->ffn_norm, d, c->rms_eps);
        }
        if (L->moe) { /* residual_rows as batched: x += mo (times the multiplier) */
            lmp_moe_decode_team(m, L->moe, in, b->mo, b->mscratch, b->team);
#pragma omp single
            residual_rows(m, x, b->mo, L->post_ffn_norm, 1);
            continue;
        }
        lmp_gemv_team(b->g, in, &L->w[LMP_LIN_GATE], L->bias[LMP_LIN_GATE], false, b->team);
        lmp_gemv_team(b->u, in, &L->w[LMP_LIN_UP], L->bias[LMP_LIN_UP], false, b->team);
#pragma omp barrier
#pragma omp single
        act_mul(m, b->g, b->u, ff);
        if (fold) {
            lmp_gemv_team(x, b->g, &L->w[LMP_LIN_DOWN], L->bias[LMP_LIN_DOWN], true, b->team);
#pragma omp barrier
        } else {
            lmp_gemv_team(b->xn, b->g, &L->w[LMP_LIN_DOWN], L->bias[LMP_LIN_DOWN], false, b->team);
#pragma omp barrier
#pragma omp single
            residual_rows(m, x, b->xn, L->post_ffn_norm, 1);
        }
    }
    if (logits) {
#pragma omp single
        lmp_rmsnorm(x, x, m->final_norm, d, c->rms_eps);
        lmp_gemv_team(logits, x, &m->output, NULL, false, b->team);
        if ((c->logits_scaling > 0 && c->logits_scaling != 1.0f) || c->final_softcap > 0) {
#pragma omp barrier
#pragma omp single
            logits_post(m, logits, 1);
        }
    }
}

/* lmp_eval for one token: the single-region path above. */
static int decode_one(lmp_session *s, const int32_t *token, float *logits)
{
    const lmp_model *m = s->m;
    const lmp_config *c = &m->cfg;
    const int64_t d = c->hidden_size, hd = c->head_dim, ff = c->intermediate_size;
    const int64_t qd = (int64_t)c->n_heads * hd;
    int nthr = 1;
#ifdef _OPENMP
    nthr = omp_get_max_threads();
#endif
    const size_t moe = c->n_experts > 0 ? (size_t)d + lmp_moe_decode_floats(m) : 0;
    size_t nf = (size_t)(2 * d + 2 * qd + 2 * ff + hd) + (size_t)nthr * (size_t)s->n_ctx + moe;
    float *buf = malloc(sizeof(float) * nf);
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory (decoding buffers)");
    float *x = buf;
    decode_buf b = {.xn = x + d, .q = x + 2 * d, .a = x + 2 * d + qd, .g = x + 2 * d + 2 * qd};
    b.u = b.g + ff;
    b.cs = b.u + ff;
    b.scores = b.cs + hd;
    b.mo = b.scores + (size_t)nthr * (size_t)s->n_ctx;
    b.mscratch = b.mo + d;
    b.team = lmp_team_new(nthr);
    int rc = b.team ? lmp_model_embed(m, token, 1, x)
                    : lmp_err(LMP_ENOMEM, "out of memory (decoding buffers)");
    if (!rc) {
        /* one thread: no region, so the team's barriers and singles are plain calls (in a
         * team of one, libgomp still ends each with a futex wake: ~390 system calls a
         * token on SmolLM2-135M, ~7% of its decoding time on this VM) */
        if (nthr == 1) {
            decode_team(m, s, x, logits, &b, nthr);
        } else {
#pragma omp parallel num_threads(nthr)
            decode_team(m, s, x, logits, &b, nthr);
        }
        s->pos += 1;
    }
    lmp_team_free(b.team);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- sessions -------- */

int lmp_session_new(lmp_session **out, const lmp_model *m, int n_ctx)
{
    *out = NULL;
    const lmp_config *c = &m->cfg;
    if (n_ctx <= 0)
        n_ctx = c->max_pos > 0 ? c->max_pos : 2048;
    const int64_t kvd = (int64_t)c->n_kv_heads * c->head_dim;
    lmp_session *s = calloc(1, sizeof *s);
    if (!s)
        return lmp_err(LMP_ENOMEM, "out of memory");
    s->m = m;
    s->n_ctx = n_ctx;
    s->kv = calloc((size_t)c->n_layers, sizeof *s->kv);
    size_t per = (size_t)n_ctx * (size_t)kvd;
    s->kv_mem = malloc(sizeof(float) * per * 2 * (size_t)c->n_layers);
    if (!s->kv || !s->kv_mem) {
        lmp_session_free(s);
        return lmp_err(LMP_ENOMEM, "out of memory (KV cache: %d positions x %d layers)", n_ctx,
                       c->n_layers);
    }
    for (int l = 0; l < c->n_layers; l++) {
        s->kv[l].k = s->kv_mem + per * 2 * (size_t)l;
        s->kv[l].v = s->kv[l].k + per;
        s->kv[l].n_ctx = n_ctx;
    }
    *out = s;
    return 0;
}

void lmp_session_free(lmp_session *s)
{
    if (!s)
        return;
    free(s->kv);
    free(s->kv_mem);
    free(s->work);
    free(s);
}

void lmp_session_reset(lmp_session *s) { s->pos = 0; }
int lmp_session_rewind(lmp_session *s, int pos)
{
    if (pos < 0 || pos > s->pos)
        return lmp_err(LMP_EINVAL, "cannot rewind a session at position %d to %d", s->pos, pos);
    s->pos = pos;
    return 0;
}
int lmp_session_pos(const lmp_session *s) { return s->pos; }
int lmp_session_n_ctx(const lmp_session *s) { return s->n_ctx; }

int lmp_eval(lmp_session *s, const int32_t *tokens, int n, float *logits, bool all_positions)
{
    const lmp_model *m = s->m;
    const int64_t d = m->cfg.hidden_size, V = m->n_vocab;
    if (n <= 0)
        return lmp_err(LMP_EINVAL, "lmp_eval: %d tokens", n);
    if (s->pos + n > s->n_ctx)
        return lmp_err(LMP_ERANGE, "%d tokens after %d would exceed the context of %d", n,
                       s->pos, s->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= m->n_vocab)
            return lmp_err(LMP_EINVAL, "token id %d out of range [0, %d)", (int)tokens[i],
                           m->n_vocab);
    if (n == 1 && !m->n_lora) /* unmerged adapters run in the block runner */
        return decode_one(s, tokens, logits);
    int nb = n < EVAL_BATCH ? n : EVAL_BATCH;
    float *x = malloc(sizeof(float) * (size_t)nb * (size_t)d);
    if (!x)
        return lmp_err(LMP_ENOMEM, "out of memory");
    int rc = 0;
    for (int off = 0; off < n; off += nb) {
        int cnt = n - off < nb ? n - off : nb;
        /* the blocks' scratch, kept by the session (grown when a batch needs more) */
        const size_t need = block_floats(m, cnt, s->pos);
        if (need > s->work_cap) {
            free(s->work);
            s->work_cap = 0;
            if (!(s->work = malloc(sizeof(float) * need))) {
                rc = lmp_err(LMP_ENOMEM, "out of memory (block activations for %d tokens)", cnt);
                break;
            }
            s->work_cap = need;
        }
        if ((rc = lmp_model_embed(m, tokens + off, cnt, x)))
            break;
        /* arguments valid by construction (n and the context checked above) */
        for (int l = 0; l < m->cfg.n_layers; l++)
            if ((rc = block_run(m, l, x, cnt, s->pos, &s->kv[l], NULL, NULL, s->work, LMP_STAGE_IN, LMP_STAGE_OUT)))
                goto done;
        s->pos += cnt;
        if (!logits)
            continue;
        if (all_positions)
            lmp_model_head(m, x, cnt, logits + (int64_t)off * V);
        else if (off + cnt == n)
            lmp_model_head(m, x + (int64_t)(cnt - 1) * d, 1, logits);
    }
done:
    free(x);
    return rc;
}
