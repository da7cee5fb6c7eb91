/*
 * Intgroup weights in the engine (lib/core/qtensor.c, lib/infer/kernels_intgroup.c,
 * lmp_model_set_linear_q, formats/qload.c):
 *  - kernels: random intgroup tensors (2, 3, 4, 5, 8 bits; groups 32, 64, 128, -1;
 *    symmetric and asymmetric; with and without act-order g_idx) through lmp_gemm on
 *    every variant the CPU has, for M on both sides of the small-M switch: against a
 *    double-precision product of the dequantized weights (relative to the sum of
 *    |terms|, TOL_IG), against the scalar reference, bitwise equal for 1 and 2 threads,
 *    and bitwise equal to lmp_gemm over the dequantized f32 matrix on the tiled path;
 *    lmp_qtensor_dequant_range against dequant_row;
 *  - the model (gutenberg-5M fixture; skipped without it): RTN 4-bit g128 and GPTQ
 *    4-bit g128 act-order (4 windows of 32 tokens) from the pipeline, written as GPTQ v1,
 *    GPTQ v2, compressed-tensors and (RTN, no g_idx) AWQ folders, loaded natively with
 *    lmp_qmodel_load: every folder gives bitwise the same logits (batched and decoded
 *    token by token) as the in-memory result installed with lmp_model_set_linear_q, the
 *    batched logits equal the fake-quantized f32 model's bitwise, and perplexity equals
 *    the fake-quantized figure within 1e-4 relative (windows protocol, first 3,000 bytes); a folder with a missing packed
 *    tensor is refused naming it; (GPTQ skipped with LMP_QUICK);
 *  - GGUF: a q4_0 GGUF read as intgroup g32 gives the GGUF model's logits (TOL_GGUF) and
 *    a GPTQ folder of it bitwise the same logits as the intgroup install.
 */
#include "formats/formats.h"
#include "formats/qmodel.h"
#include "lib/quant/pipeline.h"
#include "lib/quant/quant.h"
#include "lib/core/blocks.h"
#include "quant_gguf.h"
#include "team_check.h"
#include "test.h"

#include <math.h>

/* |y - exact| / sum|terms|: f32 accumulation over K <= 1024 terms */
#define TOL_IG 2e-6

static void fill_qtensor(lmp_rng *r, lmp_qtensor *q, bool asym)
{
    lmp_intgroup *ig = &q->ig;
    const unsigned maxq = (1u << ig->bits) - 1;
    for (int64_t n = 0; n < q->rows; n++)
        for (int64_t c = 0; c < q->cols; c++)
            lmp_ig_set_code(ig, n, c, (unsigned)(lmp_rng_next(r) % (maxq + 1)));
    for (int64_t i = 0; i < q->rows * ig->n_groups; i++) {
        ig->scales[i] = (float)(0.002 + 0.02 * lmp_rng_uniform(r));
        if (asym)
            ig->zeros[i] = (uint8_t)(lmp_rng_next(r) % (maxq + 1));
    }
    if (ig->g_idx) {
        /* act-order: a random permutation of the columns cut into groups */
        int32_t *perm = malloc(sizeof(int32_t) * (size_t)q->cols);
        for (int64_t c = 0; c < q->cols; c++)
            perm[c] = (int32_t)c;
        for (int64_t c = q->cols - 1; c > 0; c--) {
            int64_t j = (int64_t)(lmp_rng_next(r) % (uint64_t)(c + 1));
            int32_t t = perm[c];
            perm[c] = perm[j];
            perm[j] = t;
        }
        for (int64_t i = 0; i < q->cols; i++)
            ig->g_idx[perm[i]] = (int32_t)(i / ig->gs);
        free(perm);
    }
}

typedef struct {
    int bits, gs;
    bool asym, gidx;
    int64_t N, K;
} igcase;

static const igcase k_cases[] = {
    {4, 128, false, false, 67, 384}, {4, 128, true, false, 64, 256}, {4, 32, true, false, 33, 96},
    {4, 64, false, true, 40, 256},   {4, -1, true, false, 35, 272},  {8, 128, true, false, 48, 256},
    {8, 32, false, true, 33, 128},   {2, 64, true, false, 40, 320},  {3, 128, false, false, 36, 384},
    {3, 32, true, true, 33, 96},     {5, 64, true, false, 20, 192},  {4, 128, false, true, 96, 1024},
    {4, 16, true, false, 31, 80},    {4, 32, false, false, 17, 100}, {4, 16, false, true, 24, 640},
    {8, 16, true, true, 19, 608},
};
static const int64_t k_ms[] = {1, 3, 4, 7, 16, 37};

static void test_range(void)
{
    lmp_rng r;
    lmp_rng_seed(&r, 11);
    int bits[] = {2, 3, 4, 5, 6, 7, 8};
    int ok = 0, total = 0;
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++) {
        lmp_qtensor q;
        CHECK(lmp_qtensor_intgroup_init(&q, 3, 4200, bits[b], 64, false, b % 2) == 0, "%s", lmp_errmsg());
        fill_qtensor(&r, &q, true);
        float *a = malloc(sizeof(float) * 4200), *c = malloc(sizeof(float) * 4200);
        for (int64_t row = 0; row < 3; row++) {
            lmp_qtensor_dequant_row(&q, row, a);
            for (int64_t c0 = 0; c0 < 4200; c0 += 8 * 37) {
                int64_t n = 4200 - c0 < 1000 ? 4200 - c0 : 1000;
                lmp_qtensor_dequant_range(&q, row, c0, n, c);
                total++;
                ok += memcmp(a + c0, c, sizeof(float) * (size_t)n) == 0;
            }
            /* against the definition */
            for (int64_t col = 0; col < 4200; col++) {
                int g = lmp_ig_group(&q.ig, col);
                float w = q.ig.scales[row * q.ig.n_groups + g] *
                          (float)((int)lmp_ig_code(&q.ig, row, col) - (int)q.ig.zeros[row * q.ig.n_groups + g]);
                total++;
                ok += memcmp(&w, &a[col], sizeof w) == 0;
            }
        }
        free(a);
        free(c);
        lmp_qtensor_free(&q);
    }
    CHECK(ok == total, "dequant_range / dequant_row / definition: %d of %d agree", ok, total);
}

/* One case on the current variant; returns false on failure (printed). */
static void check_case(const igcase *ic, lmp_isa isa, uint64_t seed)
{
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    const int64_t N = ic->N, K = ic->K, MM = 37;
    lmp_qtensor q;
    int rc = lmp_qtensor_intgroup_init(&q, N, K, ic->bits, ic->gs, !ic->asym, ic->gidx);
    CHECK(rc == 0, "%s", lmp_errmsg());
    if (rc)
        return;
    fill_qtensor(&r, &q, ic->asym);
    float *Wd = malloc(sizeof(float) * N * K), *X = malloc(sizeof(float) * MM * K);
    float *bias = malloc(sizeof(float) * N), *Y1 = malloc(sizeof(float) * MM * N);
    float *Y2 = malloc(sizeof(float) * MM * N), *Yr = malloc(sizeof(float) * MM * N);
    float *Yf = malloc(sizeof(float) * MM * N);
    lmp_qtensor_dequant(&q, Wd);
    for (int64_t i = 0; i < MM * K; i++)
        X[i] = lmp_rng_normal(&r);
    for (int64_t i = 0; i < N; i++)
        bias[i] = lmp_rng_normal(&r);
    lmp_wmat W, Wf = {.dtype = LMP_DT_F32, .rows = N, .cols = K, .data = Wd, .row_bytes = 4 * (size_t)K};
    CHECK(lmp_wmat_intgroup(&W, &q) == 0, "%s", lmp_errmsg());
    CHECK(team_equal(&W, X, bias) && team_equal(&W, X, NULL),
          "intgroup %s N=%ld K=%ld: lmp_gemv_team differs from lmp_gemm M=1", lmp_isa_name(isa),
          (long)N, (long)K);
    for (size_t mi = 0; mi < sizeof k_ms / sizeof k_ms[0]; mi++) {
        const int64_t M = k_ms[mi];
        const float *b = (mi & 1) ? bias : NULL;
        lmp_set_num_threads(1);
        lmp_gemm(Y1, X, &W, b, M);
        lmp_gemm_intgroup_ref(Yr, X, &W, b, M);
        lmp_set_num_threads(2);
        for (int64_t i = 0; i < M * N; i++)
            Y2[i] = NAN;
        lmp_gemm(Y2, X, &W, b, M);
        double worst = 0, worst_ref = 0;
        int64_t wi = 0;
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) {
                double e = b ? b[n] : 0, mag = b ? fabs(b[n]) : 0;
                for (int64_t k = 0; k < K; k++) {
                    e += (double)X[m * K + k] * Wd[n * K + k];
                    mag += fabs((double)X[m * K + k] * Wd[n * K + k]);
                }
                double err = fabs(Y1[m * N + n] - e) / (mag > 0 ? mag : 1);
                double err_ref = fabs(Yr[m * N + n] - e) / (mag > 0 ? mag : 1);
                if (!(err <= worst)) {
                    worst = isnan(err) ? INFINITY : err;
                    wi = m * N + n;
                }
                if (!(err_ref <= worst_ref))
                    worst_ref = isnan(err_ref) ? INFINITY : err_ref;
            }
        CHECK(worst <= TOL_IG && worst_ref <= TOL_IG,
              "%s b%d gs%d asym%d gidx%d M=%lld N=%lld K=%lld: worst rel err %.3g at %lld (ref %.3g), seed %llu",
              lmp_isa_name(isa), ic->bits, ic->gs, ic->asym, ic->gidx, (long long)M, (long long)N, (long long)K,
              worst, (long long)wi, worst_ref, (unsigned long long)seed);
        CHECK(memcmp(Y1, Y2, sizeof(float) * M * N) == 0, "%s b%d gs%d M=%lld: 1 and 2 threads differ",
              lmp_isa_name(isa), ic->bits, ic->gs, (long long)M);
        if (M >= 16 && !lmp_gemm_exact()) {
            /* tiled path: the panels hold exactly the dequantized values */
            lmp_gemm(Yf, X, &Wf, b, M);
            CHECK(memcmp(Y1, Yf, sizeof(float) * M * N) == 0,
                  "%s b%d gs%d gidx%d M=%lld: not bitwise the dequantized f32 matrix's product",
                  lmp_isa_name(isa), ic->bits, ic->gs, ic->gidx, (long long)M);
        }
    }
    free(Wd);
    free(X);
    free(bias);
    free(Y1);
    free(Y2);
    free(Yr);
    free(Yf);
    lmp_qtensor_free(&q);
}

static void test_kernels(void)
{
    const lmp_isa isas[] = {LMP_ISA_REF, LMP_ISA_AVX2, LMP_ISA_AVX512};
    for (size_t v = 0; v < 3; v++) {
        if (lmp_kernels_set_isa(isas[v]) != isas[v]) {
            SKIP("variant %s not available on this CPU", lmp_isa_name(isas[v]));
            continue;
        }
        for (size_t c = 0; c < sizeof k_cases / sizeof k_cases[0]; c++)
            check_case(&k_cases[c], isas[v], 1000 + c);
    }
    lmp_kernels_set_isa(LMP_ISA_AUTO);
    /* the wmat view refuses an inconsistent payload */
    lmp_qtensor q;
    lmp_wmat w;
    CHECK(lmp_qtensor_intgroup_init(&q, 4, 64, 4, 32, true, true) == 0, "%s", lmp_errmsg());
    q.ig.g_idx[5] = 2;
    CHECK(lmp_wmat_intgroup(&w, &q) == LMP_EINVAL && strstr(lmp_errmsg(), "g_idx[5]"), "bad g_idx: %s",
          lmp_errmsg());
    q.ig.g_idx[5] = 0;
    q.ig.n_groups = 3;
    CHECK(lmp_wmat_intgroup(&w, &q) == LMP_EINVAL, "bad n_groups accepted");
    q.ig.n_groups = 2;
    lmp_qtensor_free(&q);
}

/* ---------------------------------------------------------------- the model ------- */

typedef struct {
    int n;
    lmp_qtensor *q; /* [n_layers * LMP_LIN_COUNT] */
    lmp_qmodel_writer *w[4];
} recorder;

static int rec_sink(void *ctx, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st)
{
    recorder *r = ctx;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        int rc = lmp_qtensor_intgroup_copy(&r->q[layer * LMP_LIN_COUNT + k], &q[k]);
        if (rc)
            return rc;
    }
    for (int i = 0; i < 4; i++)
        if (r->w[i]) {
            int rc = lmp_qmodel_writer_layer(r->w[i], layer, q, st);
            if (rc)
                return rc;
        }
    return 0;
}

static const int64_t NTOK = 48;

/* Logits of tokens[0..NTOK) fed at once (tiled path) and one by one (decoding path). */
static int logits_of(const lmp_model *m, const int32_t *tok, float *batched, float *decoded, int n_dec)
{
    lmp_session *s;
    int rc = lmp_session_new(&s, m, 64);
    if (rc)
        return rc;
    rc = lmp_eval(s, tok, (int)NTOK, batched, true);
    if (!rc && decoded) {
        lmp_session_reset(s);
        const int64_t V = lmp_model_n_vocab(m);
        for (int i = 0; i < n_dec && !rc; i++)
            rc = lmp_eval(s, tok + i, 1, decoded + i * V, false);
    }
    lmp_session_free(s);
    return rc;
}

static double ppl_of(const lmp_model *m, const char *text, size_t len)
{
    lmp_ppl_params pp = lmp_ppl_default_params();
    pp.protocol = LMP_PPL_WINDOWS;
    pp.max_bytes = 3000;
    pp.strip_cr = true;
    lmp_ppl_result r;
    return lmp_ppl_text(m, text, len, &pp, &r) == 0 ? r.ppl : -1;
}

/* ---------------------------------------------------------------- GGUF Q4_0 ------- */

/* Q4_0 (one f16 scale per 32 values, w = d * (q - 8)) is intgroup 4-bit, group 32,
 * symmetric, scales f16: the same weights. A Q4_0 GGUF of the model (embeddings kept in
 * f32) is read back as intgroup tensors (q/k rows un-permuted from llama.cpp's order),
 * installed natively in the HF model and written as a GPTQ folder: the three give the
 * same logits (bitwise between the intgroup ones; the GGUF model sums its attention dot
 * products in the permuted order, so within TOL_GGUF). Exact-activation mode for the
 * comparison (the block kernels otherwise round X to q8). */
#define TOL_GGUF 1e-5

static int q4_0_to_intgroup(const lmp_wmat *w, bool unpermute, int n_head, int hd, lmp_qtensor *q)
{
    int rc = lmp_qtensor_intgroup_init(q, w->rows, w->cols, 4, 32, true, false);
    if (rc)
        return rc;
    const int half = hd / 2;
    lmp_block_q4_0 *b = malloc(w->row_bytes);
    for (int64_t r = 0; r < w->rows && b; r++) {
        int64_t src = r;
        if (unpermute) { /* HF row h*hd + j*half + i is GGUF row h*hd + 2i + j */
            int64_t h = r / hd, rem = r % hd, j = rem / half, i = rem % half;
            src = h * hd + 2 * i + j;
        }
        (void)n_head;
        lmp_wmat_row_raw(w, src, b); /* the engine may hold the rows repacked */
        for (int64_t blk = 0; blk < w->cols / 32; blk++) {
            q->ig.scales[r * q->ig.n_groups + blk] = lmp_f16_to_f32(b[blk].d);
            for (int k = 0; k < 16; k++) {
                lmp_ig_set_code(&q->ig, r, blk * 32 + k, b[blk].qs[k] & 15);
                lmp_ig_set_code(&q->ig, r, blk * 32 + k + 16, b[blk].qs[k] >> 4);
            }
        }
    }
    if (!b)
        return lmp_err(LMP_ENOMEM, "out of memory");
    free(b);
    return 0;
}

static void test_gguf(lmp_model *m, const char *mdir, const int32_t *ids, const char *text, size_t len)
{
    char path[600], dir[600];
    snprintf(path, sizeof path, "%s/q4_0.gguf", tmpdir());
    snprintf(dir, sizeof dir, "%s/q4_0-gptq", tmpdir());
    const char *keep[] = {"token_embd"};
    char f32path[600];
    snprintf(f32path, sizeof f32path, "%s/f32.gguf", tmpdir());
    int rc = quant_gguf(mdir, f32path, path, "q4_0", keep, 1);
    CHECK(rc == 0, "%s", lmp_errmsg());
    lmp_model *g = NULL;
    if (rc || (rc = lmp_model_load(&g, path))) {
        CHECK(rc == 0, "load %s: %s", path, lmp_errmsg());
        return;
    }
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers, nlin = nl * LMP_LIN_COUNT;
    const int64_t V = lmp_model_n_vocab(m);
    recorder rec = {.n = nlin, .q = calloc((size_t)nlin, sizeof(lmp_qtensor))};
    int n_q40 = 0;
    for (int i = 0; i < nlin; i++) {
        const lmp_linear which = (lmp_linear)(i % LMP_LIN_COUNT);
        const lmp_wmat *w = lmp_model_linear(g, i / LMP_LIN_COUNT, which);
        if (w->dtype != LMP_DT_Q4_0 || w->q)
            continue;
        n_q40++;
        bool perm = lmp_model_rope_interleaved(g) && (which == LMP_LIN_Q || which == LMP_LIN_K);
        int nh = which == LMP_LIN_Q ? c->n_heads : c->n_kv_heads;
        CHECK(q4_0_to_intgroup(w, perm, nh, c->head_dim, &rec.q[i]) == 0, "%s", lmp_errmsg());
        lmp_linear_hf_prefix(i / LMP_LIN_COUNT, which, rec.q[i].name, sizeof rec.q[i].name);
    }
    CHECK(n_q40 == nlin, "%d of %d linears are q4_0 in the GGUF", n_q40, nlin);
    if (n_q40 != nlin)
        goto done;
    /* the same weights as a GPTQ folder (4-bit, g32, sym, no act-order) */
    lmp_intq_config qc;
    lmp_intq_config_init(&qc, &rec.q[0]);
    lmp_qmodel_write_params wp;
    lmp_qmodel_write_default_params(&wp);
    wp.force = true;
    CHECK(lmp_qmodel_writer_open(&rec.w[0], m, dir, &qc, &wp) == 0, "%s", lmp_errmsg());
    for (int l = 0; l < nl && rec.w[0]; l++)
        CHECK(lmp_qmodel_writer_layer(rec.w[0], l, &rec.q[l * LMP_LIN_COUNT], NULL) == 0, "%s", lmp_errmsg());
    CHECK(rec.w[0] && lmp_qmodel_writer_finish(rec.w[0], NULL) == 0, "%s", lmp_errmsg());

    bool was_exact = lmp_gemm_exact();
    lmp_gemm_set_exact(true);
    float *a = malloc(sizeof(float) * NTOK * V), *b = malloc(sizeof(float) * NTOK * V);
    float *d = malloc(sizeof(float) * NTOK * V);
    lmp_wmat saved[64 * LMP_LIN_COUNT];
    for (int i = 0; i < nlin && nl <= 64; i++) {
        saved[i] = *lmp_model_linear(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT));
        CHECK(lmp_model_set_linear_q(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &rec.q[i]) == 0, "%s",
              lmp_errmsg());
    }
    CHECK(logits_of(m, ids, a, NULL, 0) == 0, "%s", lmp_errmsg());
    double p_native = ppl_of(m, text, len);
    for (int i = 0; i < nlin; i++)
        lmp_model_set_linear(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &saved[i]);
    CHECK(logits_of(g, ids, b, NULL, 0) == 0, "%s", lmp_errmsg());
    double p_gguf = ppl_of(g, text, len);
    double worst = 0, amax = 0;
    for (int64_t i = 0; i < NTOK * V; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        amax = fmax(amax, fabs((double)b[i]));
    }
    CHECK(worst <= TOL_GGUF * amax, "q4_0 GGUF vs the same weights as intgroup: max |diff| %.3g (max |logit| %.3g)",
          worst, amax);
    CHECK(fabs(p_native - p_gguf) <= 1e-5 * p_gguf, "perplexity intgroup %.6f, GGUF q4_0 %.6f", p_native, p_gguf);
    lmp_model *qm;
    rc = lmp_model_load_any(&qm, dir);
    CHECK(rc == 0, "load %s: %s", dir, lmp_errmsg());
    if (rc == 0) {
        CHECK(logits_of(qm, ids, d, NULL, 0) == 0, "%s", lmp_errmsg());
        CHECK(memcmp(a, d, sizeof(float) * NTOK * V) == 0, "GPTQ g32 folder from the q4_0 GGUF: logits differ");
        lmp_model_free(qm);
    }
    printf("q4_0 GGUF as intgroup g32: logits max |diff| %.3g (max |logit| %.3g), perplexity %.6f vs GGUF %.6f\n",
           worst, amax, p_native, p_gguf);
    lmp_gemm_set_exact(was_exact);
    free(a);
    free(b);
    free(d);
done:
    for (int i = 0; i < nlin; i++)
        lmp_qtensor_free(&rec.q[i]);
    free(rec.q);
    lmp_model_free(g);
}

static void test_model(void)
{
    const char *mp = fixture("models/gutenberg-5M/config.json");
    const char *tp = fixture("text/wikitext2-test.gptq-join.txt");
    if (!mp || !tp) {
        SKIP("gutenberg-5M / wikitext2 fixtures not found");
        return;
    }
    char mdir[4096];
    snprintf(mdir, sizeof mdir, "%s", mp);
    *strrchr(mdir, '/') = 0;
    char *text;
    size_t len;
    CHECK(lmp_read_file(tp, &text, &len) == 0, "%s", lmp_errmsg());
    lmp_model *m;
    int rc = lmp_model_load(&m, mdir);
    CHECK(rc == 0, "%s", lmp_errmsg());
    if (rc)
        return;
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers, nlin = nl * LMP_LIN_COUNT;
    const int64_t V = lmp_model_n_vocab(m);
    const int n_dec = 6;
    int32_t *ids;
    int64_t n_ids;
    CHECK(lmp_model_tokenize(m, text, 4000, true, &ids, &n_ids) == 0 && n_ids >= NTOK, "tokenize");
    lmp_calib_params cp;
    lmp_calib_default_params(&cp);
    cp.n_samples = 4;
    cp.seq_len = 32;
    cp.seed = 3;
    lmp_calib_data cal;
    CHECK(lmp_calib_from_text(m, text + 100000, 30000, "calib", &cp, &cal) == 0, "%s", lmp_errmsg());

    const char *fmts[4] = {"gptq", "gptq_v2", "pack-quantized", "awq"};
    const lmp_qformat qf[4] = {LMP_QFMT_GPTQ_V1, LMP_QFMT_GPTQ_V2, LMP_QFMT_CT_PACKED, LMP_QFMT_AWQ_GEMM};
    float *ref_b = malloc(sizeof(float) * NTOK * V), *ref_d = malloc(sizeof(float) * n_dec * V);
    float *lb = malloc(sizeof(float) * NTOK * V), *ld = malloc(sizeof(float) * n_dec * V);
    const bool quick = getenv("LMP_QUICK") && atoi(getenv("LMP_QUICK")) > 0;
    test_gguf(m, mdir, ids, text, len);
    for (int method = 0; method < (quick ? 1 : 2); method++) {
        const bool gptq = method == 1;
        recorder rec = {.n = nlin, .q = calloc((size_t)nlin, sizeof(lmp_qtensor))};
        lmp_qpipe_params pp;
        lmp_qpipe_default_params(&pp);
        pp.method = gptq ? LMP_QMETHOD_GPTQ : LMP_QMETHOD_RTN;
        pp.progress = false;
        pp.compare_rtn = false;
        pp.act_order = gptq;
        pp.sink = rec_sink;
        pp.sink_ctx = &rec;
        char dirs[4][512];
        int nf = gptq ? 3 : 4; /* AWQ holds no g_idx */
        lmp_intq_config qc;
        lmp_intq_config_init(&qc, NULL);
        qc.desc_act = gptq;
        for (int f = 0; f < nf; f++) {
            snprintf(dirs[f], sizeof dirs[f], "%s/%s-%s", tmpdir(), gptq ? "gptq" : "rtn", fmts[f]);
            lmp_qmodel_write_params wp;
            lmp_qmodel_write_default_params(&wp);
            wp.format = qf[f];
            wp.force = true;
            rc = lmp_qmodel_writer_open(&rec.w[f], m, dirs[f], &qc, &wp);
            CHECK(rc == 0, "writer %s: %s", fmts[f], lmp_errmsg());
        }
        lmp_qpipe_result res;
        double t0 = lmp_time_s();
        rc = lmp_qpipe_run(m, gptq ? &cal : NULL, &pp, &res);
        CHECK(rc == 0, "pipeline: %s", lmp_errmsg());
        lmp_qpipe_result_free(&res);
        for (int f = 0; f < nf; f++)
            CHECK(rec.w[f] && lmp_qmodel_writer_finish(rec.w[f], NULL) == 0, "finish %s: %s", fmts[f], lmp_errmsg());
        printf("%s 4-bit g128: quantized and written in %.2fs\n", gptq ? "GPTQ" : "RTN", lmp_time_s() - t0);

        /* the in-memory result installed natively: the reference logits */
        lmp_wmat saved[64 * LMP_LIN_COUNT];
        for (int i = 0; i < nlin && nl <= 64; i++) {
            saved[i] = *lmp_model_linear(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT));
            CHECK(lmp_model_set_linear_q(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &rec.q[i]) == 0,
                  "%s", lmp_errmsg());
        }
        CHECK(lmp_model_n_intgroup(m) == nlin, "%d intgroup linears", lmp_model_n_intgroup(m));
        CHECK(logits_of(m, ids, ref_b, ref_d, n_dec) == 0, "%s", lmp_errmsg());
        double ppl_native = ppl_of(m, text, len);
        for (int i = 0; i < nlin; i++)
            lmp_model_set_linear(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &saved[i]);
        /* the fake-quantized model (dequantized f32 copies) */
        float *bufs[64 * LMP_LIN_COUNT] = {0};
        for (int i = 0; i < nlin; i++)
            CHECK(lmp_qpipe_install(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &rec.q[i], &bufs[i]) == 0,
                  "%s", lmp_errmsg());
        CHECK(logits_of(m, ids, lb, ld, n_dec) == 0, "%s", lmp_errmsg());
        double ppl_fake = ppl_of(m, text, len);
        CHECK(memcmp(lb, ref_b, sizeof(float) * NTOK * V) == 0 || lmp_gemm_exact(),
              "%s: native batched logits are not bitwise the fake-quantized model's", gptq ? "gptq" : "rtn");
        double dd = 0;
        for (int64_t i = 0; i < n_dec * V; i++)
            dd = fmax(dd, fabs(ld[i] - ref_d[i]));
        CHECK(dd < 1e-3, "decoded logits: native vs fake-quant max |diff| %.3g", dd);
        CHECK(fabs(ppl_native - ppl_fake) <= 1e-4 * ppl_fake, "perplexity native %.6f, fake-quantized %.6f",
              ppl_native, ppl_fake);
        printf("%s 4-bit g128 perplexity (windows, 3,000 bytes): native %.6f, fake-quantized %.6f; decoded "
               "logits max |diff| %.3g\n", gptq ? "GPTQ" : "RTN", ppl_native, ppl_fake, dd);
        for (int i = 0; i < nlin; i++) {
            lmp_model_set_linear(m, i / LMP_LIN_COUNT, (lmp_linear)(i % LMP_LIN_COUNT), &saved[i]);
            free(bufs[i]);
        }

        /* every folder, loaded natively: identical logits */
        for (int f = 0; f < nf; f++) {
            lmp_model *qm;
            rc = lmp_model_load_any(&qm, dirs[f]);
            CHECK(rc == 0, "load %s: %s", dirs[f], lmp_errmsg());
            if (rc)
                continue;
            CHECK(lmp_model_n_intgroup(qm) == nlin, "%s: %d intgroup linears", fmts[f], lmp_model_n_intgroup(qm));
            CHECK(logits_of(qm, ids, lb, ld, n_dec) == 0, "%s", lmp_errmsg());
            CHECK(memcmp(lb, ref_b, sizeof(float) * NTOK * V) == 0, "%s %s: batched logits differ",
                  gptq ? "gptq" : "rtn", fmts[f]);
            CHECK(memcmp(ld, ref_d, sizeof(float) * n_dec * V) == 0, "%s %s: decoded logits differ",
                  gptq ? "gptq" : "rtn", fmts[f]);
            lmp_model_free(qm);
        }
        for (int i = 0; i < nlin; i++)
            lmp_qtensor_free(&rec.q[i]);
        free(rec.q);
    }
    /* a folder with a packed tensor missing is refused naming it */
    {
        char bad[600];
        snprintf(bad, sizeof bad, "%s/rtn-gptq", tmpdir());
        lmp_model *qm;
        /* the model without quantization_config: plain load reports the weight missing */
        rc = lmp_model_load(&qm, bad);
        CHECK(rc == LMP_ENOTFOUND && strstr(lmp_errmsg(), "q_proj.weight"), "plain load of a GPTQ folder: %d %s", rc,
              lmp_errmsg());
    }
    free(ref_b);
    free(ref_d);
    free(lb);
    free(ld);
    free(ids);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    free(text);
}

/* ---------------------------------------------------------------- benchmark ------- */

/* LMP_IG_BENCH=1: GFLOP/s of lmp_gemm for int4 g128 (with and without g_idx) and f32
 * weights of the same shape, M = 1 and M = 512, best of several runs (not a test). */
static double best_gflops(const lmp_wmat *W, const float *X, float *Y, int64_t M, int reps)
{
    double best = 1e30;
    lmp_gemm(Y, X, W, NULL, M); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = lmp_time_s();
        lmp_gemm(Y, X, W, NULL, M);
        double t = lmp_time_s() - t0;
        if (t < best)
            best = t;
    }
    return 2.0 * (double)M * (double)W->rows * (double)W->cols / best * 1e-9;
}

static void bench(void)
{
    const int64_t N = 2048, K = 2048, MB = 512;
    lmp_rng r;
    lmp_rng_seed(&r, 5);
    lmp_qtensor q4, q4g;
    lmp_qtensor_intgroup_init(&q4, N, K, 4, 128, true, false);
    lmp_qtensor_intgroup_init(&q4g, N, K, 4, 128, true, true);
    fill_qtensor(&r, &q4, false);
    fill_qtensor(&r, &q4g, false);
    float *Wd = malloc(sizeof(float) * N * K), *X = malloc(sizeof(float) * MB * K), *Y = malloc(sizeof(float) * MB * N);
    lmp_qtensor_dequant(&q4, Wd);
    for (int64_t i = 0; i < MB * K; i++)
        X[i] = lmp_rng_normal(&r);
    lmp_wmat w4, w4g, wf = {.dtype = LMP_DT_F32, .rows = N, .cols = K, .data = Wd, .row_bytes = 4 * (size_t)K};
    lmp_wmat_intgroup(&w4, &q4);
    lmp_wmat_intgroup(&w4g, &q4g);
    const int threads[] = {1, 2};
    for (int ti = 0; ti < 2; ti++) {
        lmp_set_num_threads(threads[ti]);
        printf("%s, %d thread(s), N = K = %lld:\n", lmp_isa_name(lmp_kernels_isa()), threads[ti], (long long)K);
        printf("  M = 1:   f32 %7.1f  int4-g128 %7.1f  int4-g128-act-order %7.1f GFLOP/s\n", best_gflops(&wf, X, Y, 1, 50),
               best_gflops(&w4, X, Y, 1, 50), best_gflops(&w4g, X, Y, 1, 50));
        printf("  M = 512: f32 %7.1f  int4-g128 %7.1f  int4-g128-act-order %7.1f GFLOP/s\n", best_gflops(&wf, X, Y, MB, 5),
               best_gflops(&w4, X, Y, MB, 5), best_gflops(&w4g, X, Y, MB, 5));
    }
    free(Wd);
    free(X);
    free(Y);
    lmp_qtensor_free(&q4);
    lmp_qtensor_free(&q4g);
}

int main(void)
{
    if (getenv("LMP_IG_BENCH") && atoi(getenv("LMP_IG_BENCH")) > 0) {
        bench();
        return 0;
    }
    double t0 = lmp_time_s();
    test_range();
    test_kernels();
    printf("kernels: %.2fs\n", lmp_time_s() - t0);
    test_model();
    return test_finish();
}
