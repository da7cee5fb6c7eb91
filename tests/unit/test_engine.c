/*
 * Engine tests (lib/infer: model.c, forward.c, sample.c, ppl.c) against the fixtures'
 * independent references: llama2.c run.c logits, greedy text and perplexities for
 * stories260K, PyTorch logits for gutenberg-5M (F32 and its BF16 copy). Also: batched vs
 * token-by-token decoding, the interleaved RoPE pairing (q/k rows permuted the GGUF way),
 * the block runner's hooks, thread-count independence, sampling, and bad inputs.
 * Skipped (and said so) when the fixtures folder is absent.
 */
#include "lib/infer/infer.h"
#include "lib/infer/infer_internal.h"
#include "lib/infer/kernels_internal.h"
#include "lib/io/synth.h"
#include "quant_gguf.h"
#include "test.h"

#include <math.h>

#define STORIES "models/stories260K"
#define GUTEN "models/gutenberg-5M"

static int read_ids(const char *path, int32_t *ids, int cap)
{
    FILE *f = fopen(path, "r");
    int n = 0, v;
    if (!f)
        return -1;
    while (n < cap && fscanf(f, "%d", &v) == 1)
        ids[n++] = v;
    fclose(f);
    return n;
}

static float *read_f32(const char *path, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    float *x = malloc(n * sizeof(float));
    size_t got = x ? fread(x, sizeof(float), n, f) : 0;
    fclose(f);
    if (got != n) {
        free(x);
        return NULL;
    }
    return x;
}

/* Worst |a - b| / (1 + |b|*rel_scale) style report: returns max |a-b| and prints the
 * worst element (llm.c check_tensor habit). */
static double max_abs_diff(const char *what, const float *a, const float *ref, size_t n, int cols)
{
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= worst)) { /* NaN counts as worst */
            worst = isnan(d) ? INFINITY : d;
            at = i;
        }
    }
    fprintf(stderr, "  %s: max |diff| %.3g at [%zu][%zu] (got %.6f, ref %.6f)\n", what, worst,
            at / cols, at % cols, a[at], ref[at]);
    return worst;
}

/* Logits of the whole prompt in one batch. */
static float *logits_batched(const lmp_model *m, const int32_t *ids, int n)
{
    lmp_session *s;
    if (lmp_session_new(&s, m, 0))
        return NULL;
    float *lg = malloc(sizeof(float) * (size_t)n * lmp_model_n_vocab(m));
    if (lmp_eval(s, ids, n, lg, true)) {
        free(lg);
        lg = NULL;
    }
    lmp_session_free(s);
    return lg;
}

/* The same in consecutive batches of the given sizes (each after the cached positions
 * of the ones before: the session's block scratch grows with them). */
static float *logits_pieces(const lmp_model *m, const int32_t *ids, const int *sizes, int np)
{
    lmp_session *s;
    int n = 0;
    for (int i = 0; i < np; i++)
        n += sizes[i];
    if (lmp_session_new(&s, m, n))
        return NULL;
    const int V = lmp_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    for (int i = 0, off = 0; i < np && lg; off += sizes[i++])
        if (lmp_eval(s, ids + off, sizes[i], lg + (size_t)off * V, true)) {
            free(lg);
            lg = NULL;
        }
    lmp_session_free(s);
    return lg;
}

/* The same, one token at a time through the KV cache. */
static float *logits_stepwise(const lmp_model *m, const int32_t *ids, int n)
{
    lmp_session *s;
    if (lmp_session_new(&s, m, n))
        return NULL;
    int V = lmp_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    for (int i = 0; i < n; i++)
        if (lmp_eval(s, ids + i, 1, lg + (size_t)i * V, false)) {
            free(lg);
            lg = NULL;
            break;
        }
    lmp_session_free(s);
    return lg;
}

/* lmp_eval with one token runs the token through every block in one parallel region
 * (forward.c decode_one); it must give the bits of the block runner (lmp_model_embed,
 * lmp_block_run with n == 1 per layer, lmp_model_head) for 1, 2 and 3 threads. */
static bool decode_matches_blocks(const lmp_model *m, const int32_t *ids, int n)
{
    const lmp_config *c = lmp_model_config(m);
    const int64_t d = c->hidden_size, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    const int V = lmp_model_n_vocab(m), nl = c->n_layers;
    float *kvm = malloc(sizeof(float) * (size_t)(2 * n * kvd * nl));
    float *ref = malloc(sizeof(float) * (size_t)n * V), *x = malloc(sizeof(float) * d);
    lmp_kv_layer *kv = malloc(sizeof *kv * (size_t)nl);
    bool ok = kvm && ref && x && kv;
    for (int l = 0; ok && l < nl; l++)
        kv[l] = (lmp_kv_layer){kvm + (size_t)(2 * l) * n * kvd, kvm + (size_t)(2 * l + 1) * n * kvd, n};
    lmp_set_num_threads(2);
    for (int i = 0; ok && i < n; i++) {
        ok = lmp_model_embed(m, ids + i, 1, x) == 0;
        for (int l = 0; ok && l < nl; l++)
            ok = lmp_block_run(m, l, x, 1, i, &kv[l], NULL, NULL) == 0;
        if (ok)
            lmp_model_head(m, x, 1, ref + (size_t)i * V);
    }
    for (int t = 1; ok && t <= 3; t++) {
        lmp_set_num_threads(t);
        float *got = logits_stepwise(m, ids, n);
        ok = got && memcmp(got, ref, sizeof(float) * (size_t)n * V) == 0;
        free(got);
    }
    lmp_set_num_threads(2);
    free(kvm), free(ref), free(x), free(kv);
    return ok;
}

/* ---------------------------------------------------------------- stories260K ----- */

static void test_stories_logits(lmp_model *m)
{
    int32_t ids[64];
    int n = read_ids(fixture(STORIES "/reference/prompt1_ids.txt"), ids, 64);
    CHECK(n == 32, "prompt1_ids: %d ids", n);
    float *ref = read_f32(fixture(STORIES "/reference/prompt1_logits_f32.bin"), 32 * 512);
    CHECK(ref != NULL, "reading reference logits");
    if (n != 32 || !ref)
        return;
    float *a = logits_batched(m, ids, n), *b = logits_stepwise(m, ids, n);
    CHECK(a && b, "eval failed: %s", lmp_errmsg());
    if (a && b) {
        CHECK(max_abs_diff("stories260K batched", a, ref, 32 * 512, 512) <= 1e-4, "batched logits");
        CHECK(max_abs_diff("stories260K KV decode", b, ref, 32 * 512, 512) <= 1e-4, "decode logits");
    }
    free(a);
    free(b);
    /* batches of 8, 10 and 14 after cached positions (two-gemm attention over the cache) */
    static const int pieces[] = {8, 10, 14};
    float *pc = logits_pieces(m, ids, pieces, 3);
    CHECK(pc != NULL, "eval in pieces failed: %s", lmp_errmsg());
    if (pc)
        CHECK(max_abs_diff("stories260K in batches 8+10+14", pc, ref, 32 * 512, 512) <= 1e-4,
              "logits in pieces");
    free(pc);

    /* thread-count independence: bitwise */
    int nt = lmp_num_threads();
    lmp_set_num_threads(1);
    float *t1 = logits_batched(m, ids, n), *d1 = logits_stepwise(m, ids, n);
    lmp_set_num_threads(2);
    float *t2 = logits_batched(m, ids, n), *d2 = logits_stepwise(m, ids, n);
    lmp_set_num_threads(nt);
    CHECK(t1 && t2 && memcmp(t1, t2, sizeof(float) * 32 * 512) == 0,
          "batched logits differ between 1 and 2 threads");
    CHECK(d1 && d2 && memcmp(d1, d2, sizeof(float) * 32 * 512) == 0,
          "decoded logits differ between 1 and 2 threads");
    free(t1);
    free(t2);
    free(d1);
    free(d2);

    /* the interleaved RoPE pairing: permute q/k rows the way convert_hf_to_gguf does and
     * run with the GGUF flag; the logits must not change */
    const lmp_config *c = lmp_model_config(m);
    int L = c->n_layers;
    lmp_wmat saved[64][2];
    float *perm[64][2];
    for (int l = 0; l < L; l++)
        for (int w = 0; w < 2; w++) {
            const lmp_wmat *W = lmp_model_linear(m, l, w == 0 ? LMP_LIN_Q : LMP_LIN_K);
            saved[l][w] = *W;
            int nh = w == 0 ? c->n_heads : c->n_kv_heads;
            perm[l][w] = malloc(W->row_bytes * (size_t)W->rows);
            for (int64_t r = 0; r < W->rows; r++)
                memcpy((char *)perm[l][w] + r * W->row_bytes,
                       (const char *)W->data + lmp_qk_perm_row(r, nh, c->head_dim, true) * W->row_bytes,
                       W->row_bytes);
            lmp_wmat P = *W;
            P.data = perm[l][w];
            CHECK(lmp_model_set_linear(m, l, w == 0 ? LMP_LIN_Q : LMP_LIN_K, &P) == 0, "set_linear");
        }
    m->interleaved = true;
    float *pi = logits_batched(m, ids, n);
    m->interleaved = false;
    float *pn = logits_batched(m, ids, n); /* permuted rows, wrong pairing: must differ */
    for (int l = 0; l < L; l++)
        for (int w = 0; w < 2; w++) {
            lmp_model_set_linear(m, l, w == 0 ? LMP_LIN_Q : LMP_LIN_K, &saved[l][w]);
            free(perm[l][w]);
        }
    CHECK(pi && max_abs_diff("interleaved RoPE", pi, ref, 32 * 512, 512) <= 1e-4,
          "interleaved pairing");
    CHECK(pn && max_abs_diff("permuted rows, HF pairing", pn, ref, 32 * 512, 512) > 1e-2,
          "a wrong pairing must show");
    free(pi);
    free(pn);
    free(ref);
}

typedef struct {
    int calls[LMP_LIN_COUNT];
    int bad;
    const lmp_config *c;
} hook_log;

static int count_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n,
                      int64_t in)
{
    hook_log *h = user;
    (void)layer;
    int64_t want = which == LMP_LIN_O ? (int64_t)h->c->n_heads * h->c->head_dim
                   : which == LMP_LIN_DOWN ? h->c->intermediate_size
                                           : h->c->hidden_size;
    if (in != want || n != 7 || !X || !isfinite(X[0]))
        h->bad++;
    h->calls[which]++;
    return 0;
}

static int abort_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n,
                      int64_t in)
{
    (void)user, (void)layer, (void)X, (void)n, (void)in;
    return which == LMP_LIN_UP ? LMP_ERANGE : 0;
}

/* The block runner driven by hand (embed -> blocks without a cache -> head) equals the
 * session's logits; the hook sees every linear of every block. */
static void test_block_runner(lmp_model *m)
{
    const lmp_config *c = lmp_model_config(m);
    int32_t ids[7] = {1, 403, 407, 261, 378, 432, 383};
    int V = lmp_model_n_vocab(m), d = c->hidden_size;
    float *x = malloc(sizeof(float) * 7 * d), *lg = malloc(sizeof(float) * 7 * V);
    hook_log h = {{0}, 0, c};
    CHECK(lmp_model_embed(m, ids, 7, x) == 0, "embed");
    for (int l = 0; l < c->n_layers; l++)
        CHECK(lmp_block_run(m, l, x, 7, 0, NULL, count_hook, &h) == 0, "block %d", l);
    lmp_model_head(m, x, 7, lg);
    float *ref = logits_batched(m, ids, 7);
    CHECK(ref && memcmp(ref, lg, sizeof(float) * 7 * V) == 0, "block runner != session");
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        CHECK(h.calls[w] == c->n_layers, "%s hooked %d times", lmp_linear_name(w), h.calls[w]);
    CHECK(h.bad == 0, "hook saw %d wrong shapes", h.bad);
    CHECK(lmp_block_run(m, 0, x, 7, 0, NULL, abort_hook, NULL) == LMP_ERANGE, "hook status");
    int32_t bad = 100000;
    CHECK(lmp_model_embed(m, &bad, 1, x) == LMP_EINVAL, "bad id");
    free(x);
    free(lg);
    free(ref);
}

/* lmp_block_run_stages: every split of a block into stages, with only x and the stage
 * buffer carried between them (the rest of the scratch overwritten), gives the bits of
 * lmp_block_run; each linear is hooked once. n = 7 (attention loop) and 24 (GEMM). */
static void test_block_stages(lmp_model *m)
{
    const lmp_config *c = lmp_model_config(m);
    const int64_t d = c->hidden_size;
    static const int splits[][6] = {
        {0, 1, 2, 3, 4, -1}, {0, 2, 4, -1}, {0, 3, 4, -1}, {0, 1, 4, -1}, {0, 4, -1},
    };
    for (int ni = 0; ni < 2; ni++) {
        const int n = ni ? 24 : 7;
        int32_t ids[24];
        for (int i = 0; i < n; i++)
            ids[i] = (3 + i * 71) % 512;
        const size_t sf = lmp_block_scratch_floats(m, n, 0);
        float *x0 = malloc(sizeof(float) * n * d), *ref = malloc(sizeof(float) * n * d);
        float *x = malloc(sizeof(float) * n * d), *scr = malloc(sizeof(float) * sf);
        float *keep = malloc(sizeof(float) * n * (c->intermediate_size + d));
        CHECK(lmp_model_embed(m, ids, n, x0) == 0, "embed");
        for (int l = 0; l < c->n_layers; l++) {
            memcpy(ref, x0, sizeof(float) * n * d);
            CHECK(lmp_block_run(m, l, ref, n, 0, NULL, NULL, NULL) == 0, "block %d", l);
            for (size_t si = 0; si < sizeof splits / sizeof splits[0]; si++) {
                memcpy(x, x0, sizeof(float) * n * d);
                hook_log h = {{0}, 0, c};
                int ok = 1;
                for (int k = 0; splits[si][k + 1] >= 0 && ok; k++) {
                    const int a = splits[si][k], b = splits[si][k + 1];
                    int64_t w;
                    float *sb = lmp_block_stage_buf(m, scr, n, a, &w);
                    if (sb)
                        memcpy(keep, sb, sizeof(float) * n * w);
                    for (size_t i = 0; i < sf; i++) /* nothing else survives */
                        scr[i] = NAN;
                    if (sb)
                        memcpy(sb, keep, sizeof(float) * n * w);
                    hook_log *hp = n == 7 ? &h : NULL;
                    ok = lmp_block_run_stages(m, l, x, n, a, b, hp ? count_hook : NULL, hp, scr) == 0;
                }
                CHECK(ok, "layer %d split %zu: %s", l, si, lmp_errmsg());
                CHECK(memcmp(x, ref, sizeof(float) * n * d) == 0, "layer %d split %zu n %d: stages != block", l,
                      si, n);
                for (int wq = 0; wq < LMP_LIN_COUNT && n == 7; wq++)
                    CHECK(h.calls[wq] == 1, "layer %d split %zu: %s hooked %d times", l, si,
                          lmp_linear_name(wq), h.calls[wq]);
                CHECK(h.bad == 0, "hook shapes");
            }
            memcpy(x0, ref, sizeof(float) * n * d);
        }
        CHECK(lmp_block_run_stages(m, 0, x, n, 3, 1, NULL, NULL, scr) == LMP_EINVAL, "from > to refused");
        CHECK(lmp_block_run_stages(m, 0, x, n, 0, 5, NULL, NULL, scr) == LMP_EINVAL, "past OUT refused");
        CHECK(lmp_block_run_stages(m, 0, x, n, 0, 4, NULL, NULL, NULL) == LMP_EINVAL, "no scratch refused");
        int64_t w;
        CHECK(lmp_block_stage_buf(m, scr, n, LMP_STAGE_O, &w) && w == (int64_t)c->n_heads * c->head_dim,
              "o input width");
        CHECK(lmp_block_stage_buf(m, scr, n, LMP_STAGE_DOWN, &w) && w == c->intermediate_size, "down input width");
        CHECK(!lmp_block_stage_buf(m, scr, n, LMP_STAGE_MLP, &w) && w == 0, "no buffer at MLP");
        free(x0), free(ref), free(x), free(scr), free(keep);
    }
}

static int32_t *encode(const lmp_model *m, const char *s, bool bos, int64_t *n)
{
    int32_t *ids = NULL;
    if (lmp_model_tokenize(m, s, strlen(s), bos, &ids, n))
        return NULL;
    return ids;
}

static void test_stories_greedy(lmp_model *m)
{
    char *ref = NULL;
    size_t rlen = 0;
    const char *path = fixture(STORIES "/reference/stories260K_greedy_256.txt");
    CHECK(path && lmp_read_file(path, &ref, &rlen) == 0, "reading greedy reference");
    if (!ref)
        return;
    /* run.c -n 256: 256 forward steps from BOS, each printing the token it yields: the
     * prompt after BOS and then the continuation, 256 tokens in all, then a newline. */
    int64_t np = 0;
    int32_t *prompt = encode(m, "Once upon a time", true, &np);
    CHECK(prompt && np > 1 && prompt[0] == 1, "prompt encoding: %s", lmp_errmsg());
    if (!prompt) {
        free(ref);
        return;
    }
    lmp_session *s;
    lmp_session_new(&s, m, 0);
    int32_t all[257];
    memcpy(all, prompt, sizeof(int32_t) * (size_t)np);
    int ng = 0;
    int rc = lmp_generate(s, prompt, (int)np, 257 - (int)np, NULL, true, NULL, NULL, all + np,
                          &ng, NULL);
    CHECK(rc == 0, "generate: %s", lmp_errmsg());
    char *text = NULL;
    size_t tlen = 0;
    CHECK(lmp_model_detokenize(m, all, np + ng, &text, &tlen) == 0, "decode");
    CHECK(text && tlen + 1 == rlen && memcmp(text, ref, tlen) == 0 && ref[tlen] == '\n',
          "greedy text differs from run.c (%zu vs %zu bytes):\n%s", tlen, rlen, text ? text : "");
    free(text);
    free(prompt);
    free(ref);

    /* sampling: top-k 1 is greedy; a seed reproduces itself; temperature changes things */
    int32_t p2[2] = {1, 403}, g1[40], g2[40], g3[40], g4[40];
    int n1, n2, n3, n4;
    lmp_sampler_params sp = {0.8f, 1, 1.0f, 7};
    lmp_session_reset(s);
    lmp_generate(s, p2, 2, 40, &sp, false, NULL, NULL, g1, &n1, NULL);
    lmp_session_reset(s);
    lmp_generate(s, p2, 2, 40, NULL, false, NULL, NULL, g2, &n2, NULL);
    CHECK(n1 == 40 && n2 == 40 && memcmp(g1, g2, sizeof g1) == 0, "top-k 1 != greedy");
    sp.top_k = 0;
    sp.top_p = 0.95f;
    lmp_session_reset(s);
    lmp_generate(s, p2, 2, 40, &sp, false, NULL, NULL, g3, &n3, NULL);
    lmp_session_reset(s);
    lmp_generate(s, p2, 2, 40, &sp, false, NULL, NULL, g4, &n4, NULL);
    CHECK(n3 == 40 && n4 == 40 && memcmp(g3, g4, sizeof g3) == 0, "seeded sampling not reproducible");
    CHECK(memcmp(g3, g2, sizeof g3) != 0, "T=0.8 gave the greedy sequence");
    lmp_sampler_params badp = {-1.0f, 0, 1.0f, 0};
    lmp_sampler *sm = NULL;
    CHECK(lmp_sampler_new(&sm, &badp, 512) == LMP_EINVAL, "negative temperature accepted");

    /* a prompt longer than the context is refused, and nothing is fed */
    int32_t longp[600];
    for (int i = 0; i < 600; i++)
        longp[i] = 1 + i % 400;
    lmp_session_reset(s);
    CHECK(lmp_generate(s, longp, 600, 4, NULL, true, NULL, NULL, NULL, NULL, NULL) == LMP_ERANGE,
          "prompt longer than the context");
    CHECK(lmp_eval(s, longp, 600, NULL, false) == LMP_ERANGE && lmp_session_pos(s) == 0,
          "eval past the context");
    lmp_session_free(s);
}

/* run.c protocol, first 20,000 bytes without CRs (fixture README). */
static void test_stories_ppl(lmp_model *m)
{
    static const struct {
        const char *file;
        double ppl;
        int64_t scored;
    } cases[] = {
        {"text/tinystories-valid-sample.txt", 6.1420, 9984},
        {"text/wiki.test.raw", 114.462, 12288},
        {"text/wikitext2-test.gptq-join.txt", 119.377, 12288},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *path = fixture(cases[i].file);
        char *text = NULL;
        size_t len = 0;
        CHECK(path && lmp_read_file(path, &text, &len) == 0, "reading %s", cases[i].file);
        if (!text)
            continue;
        lmp_ppl_params p = lmp_ppl_default_params();
        p.protocol = LMP_PPL_WINDOWS;
        p.max_bytes = 20000;
        p.strip_cr = true;
        lmp_ppl_result r;
        int rc = lmp_ppl_text(m, text, len, &p, &r);
        CHECK(rc == 0, "%s: %s", cases[i].file, lmp_errmsg());
        fprintf(stderr, "  windows ppl %s: %.4f (run.c %.4f), %lld scored, %.0f tok/s\n",
                cases[i].file, r.ppl, cases[i].ppl, (long long)r.n_scored, r.tokens_per_s);
        CHECK(fabs(r.ppl / cases[i].ppl - 1) <= 1e-3, "%s: ppl %.4f vs %.4f", cases[i].file, r.ppl,
              cases[i].ppl);
        CHECK(r.n_scored == cases[i].scored, "%s: %lld tokens scored, expected %lld",
              cases[i].file, (long long)r.n_scored, (long long)cases[i].scored);
        CHECK(r.ppl_stderr > 0 && r.ppl_stderr < r.ppl, "stderr %g", r.ppl_stderr);

        if (i == 1) {
            /* the other protocols run and count what their originals count */
            p.protocol = LMP_PPL_LLAMACPP;
            p.ctx = 128;
            rc = lmp_ppl_text(m, text, len, &p, &r);
            CHECK(rc == 0 && r.n_scored == (int64_t)r.n_windows * 63 && r.ppl > 1,
                  "llamacpp: rc %d, %lld scored over %d chunks", rc, (long long)r.n_scored,
                  r.n_windows);
            p.protocol = LMP_PPL_GPTQ;
            p.max_chunks = 3;
            rc = lmp_ppl_text(m, text, len, &p, &r);
            CHECK(rc == 0 && r.n_windows == 3 && r.n_scored == 3 * 127 && r.ppl > 1,
                  "gptq: rc %d, %d windows, %lld scored", rc, r.n_windows, (long long)r.n_scored);
            /* too short for one window; empty */
            p.ctx = 0;
            rc = lmp_ppl_text(m, text, 300, &p, &r);
            CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), "needs at least"), "short text: %s",
                  lmp_errmsg());
            rc = lmp_ppl_text(m, "", 0, &p, &r);
            CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), "empty"), "empty text: %s",
                  lmp_errmsg());
        }
        free(text);
    }
}

/* The window slicing of gptq and llamacpp, recomputed here the way the originals write
 * it (llama.py llama_eval; perplexity.cpp perplexity()) from per-window logits. */
static void test_ppl_slicing(lmp_model *m)
{
    enum { CTX = 64, N = 3 * CTX + 10 };
    int32_t toks[N];
    for (int i = 0; i < N; i++)
        toks[i] = 3 + (i * 7919 + i / 3) % 500;
    int V = lmp_model_n_vocab(m);
    double g_sum = 0, l_sum = 0;
    int l_count = 0;
    for (int w = 0; w < N / CTX; w++) {
        int32_t in[CTX];
        memcpy(in, toks + w * CTX, sizeof in);
        float *lg = logits_batched(m, in, CTX);
        double wsum = 0;
        for (int j = 0; j < CTX - 1; j++)
            wsum += lmp_nll(lg + (size_t)j * V, V, toks[w * CTX + j + 1]);
        g_sum += wsum / (CTX - 1) * CTX; /* loss.float() * seqlen */
        free(lg);
        in[0] = lmp_model_bos(m);
        lg = logits_batched(m, in, CTX);
        for (int j = CTX / 2; j < CTX - 1; j++, l_count++)
            l_sum += lmp_nll(lg + (size_t)j * V, V, toks[w * CTX + j + 1]);
        free(lg);
    }
    double g_ppl = exp(g_sum / ((N / CTX) * CTX)), l_ppl = exp(l_sum / l_count);
    lmp_ppl_params p = lmp_ppl_default_params();
    lmp_ppl_result r;
    p.ctx = CTX;
    CHECK(lmp_ppl_tokens(m, toks, N, &p, &r) == 0 && fabs(r.ppl / g_ppl - 1) < 1e-9 &&
              r.n_scored == 3 * (CTX - 1),
          "gptq slicing: %.6f vs %.6f", r.ppl, g_ppl);
    p.protocol = LMP_PPL_LLAMACPP;
    CHECK(lmp_ppl_tokens(m, toks, N, &p, &r) == 0 && fabs(r.ppl / l_ppl - 1) < 1e-9 &&
              r.n_scored == l_count,
          "llamacpp slicing: %.6f vs %.6f", r.ppl, l_ppl);
    p.max_chunks = 2;
    CHECK(lmp_ppl_tokens(m, toks, N, &p, &r) == 0 && r.n_windows == 2, "--chunks");
    CHECK(lmp_ppl_tokens(m, toks, CTX + 5, &p, &r) == LMP_EINVAL, "llamacpp needs 2 x ctx tokens");
}

/* A folder whose config.json does not match its tensors: copy of the fixture's config
 * with hidden_size 96, next to a symlink to its model.safetensors. */
static void test_bad_config(void)
{
    const char *cfg = fixture(STORIES "/config.json");
    const char *st = fixture(STORIES "/model.safetensors");
    char *json = NULL;
    size_t len;
    if (!cfg || !st || lmp_read_file(cfg, &json, &len))
        return;
    char dir[512], path[600];
    snprintf(dir, sizeof dir, "%s/badcfg", tmpdir());
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    CHECK(system(path) == 0, "mkdir");
    char *p = strstr(json, "\"hidden_size\"");
    CHECK(p != NULL, "hidden_size in config.json");
    if (p) {
        char *colon = strchr(p, ':'), *end = colon + 1;
        while (*end == ' ')
            end++;
        while (*end >= '0' && *end <= '9')
            end++;
        snprintf(path, sizeof path, "%s/config.json", dir);
        FILE *f = fopen(path, "w");
        fprintf(f, "%.*s: 96%s", (int)(colon - json), json, end);
        fclose(f);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        unlink(path);
        CHECK(symlink(st, path) == 0, "symlink");
        lmp_model *m = NULL;
        int rc = lmp_model_load(&m, dir);
        fprintf(stderr, "  mismatched config: %s\n", lmp_errmsg());
        CHECK(rc != 0 && m == NULL, "a config that does not match the tensors was accepted");
        CHECK(strstr(lmp_errmsg(), "embed_tokens") && strstr(lmp_errmsg(), "[512, 64]") &&
                  strstr(lmp_errmsg(), "[512, 96]"),
              "message should name the tensor, its shape and the expected one: %s", lmp_errmsg());
    }
    free(json);
}

/* ---------------------------------------------------------------- gutenberg-5M ---- */

static void test_gutenberg(void)
{
    int32_t ids[128];
    int n = read_ids(fixture(GUTEN "/reference/prompt_ids.txt"), ids, 128);
    float *ref = read_f32(fixture(GUTEN "/reference/prompt_logits_f32.bin"), 64 * 512);
    CHECK(n == 64 && ref, "gutenberg reference: %d ids", n);
    if (n != 64 || !ref) {
        free(ref);
        return;
    }
    lmp_model *m = NULL;
    int rc = lmp_model_load(&m, fixture(GUTEN));
    CHECK(rc == 0, "load gutenberg-5M: %s", lmp_errmsg());
    if (m) {
        float *a = logits_batched(m, ids, n), *b = logits_stepwise(m, ids, n);
        CHECK(a && max_abs_diff("gutenberg-5M batched", a, ref, 64 * 512, 512) <= 1e-4, "logits");
        CHECK(b && max_abs_diff("gutenberg-5M KV decode", b, ref, 64 * 512, 512) <= 1e-4, "decode");
        free(a);
        free(b);
        /* every linear re-quantized to Q8_0 and used in place through lmp_set_linear:
         * the block-quantized path of the engine (what GGUF Q8_0 files and calibrated
         * models go through) stays close to the F32 reference */
        const lmp_config *c = lmp_model_config(m);
        const lmp_dtype_traits *q8 = lmp_dtype_info(LMP_DT_Q8_0);
        void *qbuf[64][LMP_LIN_COUNT] = {{0}};
        bool ok = lmp_gemm_supports(LMP_DT_Q8_0) && q8->from_f32 && c->n_layers <= 64;
        for (int l = 0; ok && l < c->n_layers; l++)
            for (int w = 0; w < LMP_LIN_COUNT; w++) {
                const lmp_wmat *W = lmp_model_linear(m, l, w);
                lmp_wmat Q = {LMP_DT_Q8_0, W->rows, W->cols, NULL,
                              lmp_dtype_row_bytes(LMP_DT_Q8_0, W->cols), NULL, LMP_WL_ROWS};
                qbuf[l][w] = malloc(Q.row_bytes * (size_t)W->rows);
                for (int64_t r = 0; r < W->rows; r++)
                    q8->from_f32((const float *)W->data + r * W->cols,
                                 (char *)qbuf[l][w] + r * Q.row_bytes, W->cols);
                Q.data = qbuf[l][w];
                ok = lmp_model_set_linear(m, l, w, &Q) == 0;
            }
        CHECK(ok, "Q8_0 linears: %s", lmp_errmsg());
        if (ok) {
            float *q = logits_batched(m, ids, n);
            double scale = 0;
            for (int i = 0; i < 64 * 512; i++)
                scale = fmax(scale, fabs(ref[i]));
            double worst = q ? max_abs_diff("gutenberg-5M Q8_0 linears", q, ref, 64 * 512, 512) : 1e9;
            CHECK(worst / scale <= 2e-2, "Q8_0 logits: %g relative", worst / scale);
            free(q);
        }
        lmp_model_free(m);
        for (int l = 0; l < 64; l++)
            for (int w = 0; w < LMP_LIN_COUNT; w++)
                free(qbuf[l][w]);
    }
    m = NULL;
    rc = lmp_model_load(&m, fixture(GUTEN "/model-bf16"));
    CHECK(rc == 0, "load gutenberg-5M bf16: %s", lmp_errmsg());
    if (m) {
        CHECK(lmp_model_linear(m, 0, LMP_LIN_Q)->dtype == LMP_DT_BF16, "bf16 used in place");
        float *a = logits_batched(m, ids, n);
        /* relative to the logits' scale: max |diff| / max |ref| */
        double worst = a ? max_abs_diff("gutenberg-5M bf16", a, ref, 64 * 512, 512) : INFINITY;
        double scale = 0, e2 = 0, r2 = 0;
        for (int i = 0; a && i < 64 * 512; i++) {
            scale = fmax(scale, fabs(ref[i]));
            e2 += ((double)a[i] - ref[i]) * ((double)a[i] - ref[i]);
            r2 += (double)ref[i] * ref[i];
        }
        fprintf(stderr, "  gutenberg-5M bf16: max|diff|/max|ref| %.3g, rel L2 %.3g\n",
                worst / scale, sqrt(e2 / r2));
        CHECK(a && worst / scale <= 2e-2, "bf16 logits: %g relative", worst / scale);
        free(a);
        lmp_model_free(m);
    }
    free(ref);
}

/* gutenberg-5M as a q4_0 GGUF (lmp_convert, lmp_gguf_quantize): loaded with the q4_0
 * weights repacked into the decoding kernel's interleaved layout (where the kernels in use
 * have it) and without (LMP_Q4_REPACK=0): the batched path gives the same bits (its
 * panels come from the same rows), decoding agrees to f32 accumulation order, the
 * one-region decoder equals the block runner, and the same perplexity comes out. */
static void test_q4_repack(const int32_t *ids, int n)
{
    char f32path[600], path[600];
    snprintf(f32path, sizeof f32path, "%s/g5m-f32.gguf", tmpdir());
    snprintf(path, sizeof path, "%s/g5m-q4_0.gguf", tmpdir());
    int rc = quant_gguf(fixture(GUTEN), f32path, path, "q4_0", NULL, 0);
    CHECK(rc == 0, "%s", lmp_errmsg());
    lmp_model *rows = NULL, *x16 = NULL;
    setenv("LMP_Q4_REPACK", "0", 1);
    if (rc == 0)
        rc = lmp_model_load(&rows, path);
    unsetenv("LMP_Q4_REPACK");
    if (rc == 0)
        rc = lmp_model_load(&x16, path);
    CHECK(rc == 0, "load %s: %s", path, lmp_errmsg());
    if (rc) {
        lmp_model_free(rows);
        return;
    }
    const lmp_wmat *wr = lmp_model_linear(rows, 0, LMP_LIN_UP), *wx = lmp_model_linear(x16, 0, LMP_LIN_UP);
    const bool want = lmp_k_impl(lmp_kernels_isa())->q4x16_simd;
    CHECK(wr->dtype == LMP_DT_Q4_0 && wr->layout == LMP_WL_ROWS, "LMP_Q4_REPACK=0 keeps the rows");
    CHECK(wx->layout == (want ? LMP_WL_Q4_0X16 : LMP_WL_ROWS) && x16->n_repacked == (want ? 42 : 0),
          "q4_0 linears repacked where the kernels have the layout (%d)", x16->n_repacked);
    const int V = lmp_model_n_vocab(rows);
    float *a = logits_batched(rows, ids, n), *b = logits_batched(x16, ids, n);
    CHECK(a && b && memcmp(a, b, sizeof(float) * n * V) == 0, "q4_0 batched logits: repacked != rows");
    /* decoding: the f32 sums of the two kernels differ in order (~1e-6), and that can
     * move an activation of a later layer across a rounding boundary of its int8
     * quantization: one step (d / 2 of a block) shifts some logits by ~1e-2 whatever
     * the layout (the row kernel's decoding differs from its own batched pass alike), so
     * the bound is relative to the logits' scale, as for Q8_0 above */
    float *c = logits_stepwise(rows, ids, n), *d = logits_stepwise(x16, ids, n);
    double scale = 0;
    for (size_t i = 0; b && i < (size_t)n * V; i++)
        scale = fmax(scale, fabs(b[i]));
    CHECK(c && d && max_abs_diff("q4_0 decode repacked vs rows", d, c, (size_t)n * V, V) <= 2e-2 * scale,
          "q4_0 decoding: repacked vs rows");
    CHECK(c && d && max_abs_diff("q4_0 decode vs batched", d, b, (size_t)n * V, V) <= 2e-2 * scale,
          "q4_0 repacked: decoding vs batched");
    CHECK(decode_matches_blocks(x16, ids, n), "q4_0 repacked: one-region decoding != block runner");
    free(a), free(b), free(c), free(d);
    lmp_model_free(rows);
    lmp_model_free(x16);
    remove(f32path);
    remove(path);
}

/* ---------------------------------------------------------------- synthetic ------- */

/* Random-weight models of the other supported shapes (lib/io synth presets): qwen2 with
 * q/k/v biases, Llama 3 RoPE scaling with 4/1 GQA and head_dim != hidden/heads, mistral
 * with a sliding window. No reference logits exist for them here (an independent
 * pure-Python forward matched them to 6e-6 when this was written); these check what must
 * hold whatever the weights: batched == token-by-token decoding, and a sliding window of
 * W leaves the first W positions bit-identical and changes the later ones. */
static void test_synthetic(void)
{
    static const char *const presets[] = {"tiny-qwen2", "tiny-llama3", "tiny-mistral"};
    int32_t ids[40];
    for (int i = 0; i < 40; i++)
        ids[i] = (5 + i * 37) % 250;
    for (int k = 0; k < 3; k++) {
        const lmp_synth_preset *ps = lmp_synth_find(presets[k]);
        CHECK(ps != NULL, "preset %s", presets[k]);
        if (!ps)
            continue;
        lmp_synth_params sp;
        lmp_synth_default_params(&sp);
        sp.config = ps->config;
        sp.seed = 11;
        sp.force = true;
        if (k == 1)
            sp.config.head_dim = 48; /* 4 heads x 48 != hidden 256 (as Gemma/Qwen3 do) */
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", tmpdir(), presets[k]);
        int rc = lmp_synth_write(&sp, dir);
        CHECK(rc == 0, "synth %s: %s", presets[k], lmp_errmsg());
        lmp_model *m = NULL;
        if (rc || (rc = lmp_model_load(&m, dir))) {
            CHECK(rc == 0, "load %s: %s", presets[k], lmp_errmsg());
            continue;
        }
        const lmp_config *c = lmp_model_config(m);
        int V = lmp_model_n_vocab(m);
        if (k == 0)
            CHECK(m->layers[0].bias[LMP_LIN_Q] && !m->layers[0].bias[LMP_LIN_O], "qwen2 biases");
        if (k == 1)
            CHECK(c->rope_type == LMP_ROPE_LLAMA3 && c->head_dim == 48 && c->n_heads * 48 != c->hidden_size,
                  "llama3 preset shape");
        float *a = logits_batched(m, ids, 40), *b = logits_stepwise(m, ids, 40);
        CHECK(decode_matches_blocks(m, ids, 40), "%s: one-region decoding != block runner",
              presets[k]);
        char what[64];
        snprintf(what, sizeof what, "%s batched vs decode", presets[k]);
        CHECK(a && b && max_abs_diff(what, b, a, 40 * (size_t)V, V) <= 1e-4, "%s", what);
        if (k == 2 && a) {
            m->cfg.sliding_window = 16;
            float *w = logits_batched(m, ids, 40), *ws = logits_stepwise(m, ids, 40);
            CHECK(decode_matches_blocks(m, ids, 40), "window 16: one-region decoding != block runner");
            CHECK(w && memcmp(w, a, sizeof(float) * 16 * V) == 0,
                  "window 16 changed the first 16 positions");
            double late = 0;
            for (size_t i = 16 * (size_t)V; w && i < 40 * (size_t)V; i++)
                late = fmax(late, fabs(w[i] - a[i]));
            CHECK(late > 1e-3, "window 16 changed nothing after position 16 (%g)", late);
            CHECK(w && ws && max_abs_diff("sliding window batched vs decode", ws, w, 40 * (size_t)V, V) <= 1e-4,
                  "sliding window decode");
            free(w);
            free(ws);
        }
        free(a);
        free(b);
        lmp_model_free(m);
    }
}

int main(int argc, char **argv)
{
    /* libgomp reads OMP_WAIT_POLICY when it loads: spinning waiters make this test ~10x
     * slower when the cores are shared (parallel test jobs, CI), so run it once more with
     * passive waiting unless the caller chose. Results do not depend on it. */
    (void)argc;
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        execv("/proc/self/exe", argv);
    }
    if (!fixture(STORIES "/model.safetensors")) {
        SKIP("fixtures not found (set LMP_FIXTURES): engine tests skipped");
        return test_finish();
    }
    lmp_model *m = NULL;
    int rc = lmp_model_load(&m, fixture(STORIES));
    CHECK(rc == 0, "load stories260K: %s", lmp_errmsg());
    if (m) {
        CHECK(lmp_model_n_vocab(m) == 512 && !lmp_model_rope_interleaved(m), "stories260K shape");
        CHECK(lmp_model_tokenizer(m) != NULL && lmp_model_bos(m) == 1, "tokenizer, BOS");
        test_stories_logits(m);
        int32_t ids[24];
        for (int i = 0; i < 24; i++)
            ids[i] = (1 + i * 53) % 512;
        CHECK(decode_matches_blocks(m, ids, 24), "stories260K: one-region decoding != block runner");
        test_block_runner(m);
        test_block_stages(m);
        test_stories_greedy(m);
        test_stories_ppl(m);
        test_ppl_slicing(m);
        lmp_model_free(m);
    }
    test_bad_config();
    test_synthetic();
    if (fixture(GUTEN "/model.safetensors")) {
        test_gutenberg();
        int32_t gids[64];
        if (read_ids(fixture(GUTEN "/reference/prompt_ids.txt"), gids, 64) == 64)
            test_q4_repack(gids, 40);
    }
    else
        SKIP("gutenberg-5M not found");
    return test_finish();
}
