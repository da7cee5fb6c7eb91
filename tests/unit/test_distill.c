/*
 * lib/distill: export (values against llama2.c run.c reference logits, top-k consistency,
 * outside mass), self-KLD 0, top-k KLD within its documented bound of the exact one,
 * interrupted + resumed export == uninterrupted, merged shards == single export, thread
 * count independence, refusals (other tokenizer/vocabulary, truncated file, short text,
 * existing output, mismatching partial), SVG writer. Uses the stories260K fixture (vocab
 * 512); skipped when the fixtures folder is absent.
 */
#include "lib/distill/distill.h"
#include "test.h"

#include <math.h>
#include <sys/stat.h>

static const char *g_text;
static size_t g_len;

static char *tpath(const char *name)
{
    return lmp_path_join(tmpdir(), name);
}

static int export_to(const lmp_model *m, const char *out, lmp_distill_params p, lmp_distill_stats *st)
{
    lmp_distill_stats dummy;
    return lmp_distill_export(m, "stories260K", g_text, g_len, out, &p, st ? st : &dummy);
}

static lmp_distill_params small_params(void)
{
    lmp_distill_params p = lmp_distill_default_params();
    p.ctx = 64;
    p.top_k = 16;
    p.max_seqs = 6;
    return p;
}

/* Every dataset of a and b equal (values, shapes); f16 read back as f32 is exact. */
static int same_datasets(const char *a, const char *b)
{
    static const char *names[] = {"seq_index", "tokens", "targets", "target_logprob", "logsumexp",
                                  "rest_mass", "topk_ids", "topk_logprobs", "logprobs"};
    lmp_h5 *fa = NULL, *fb = NULL;
    int same = lmp_h5_open(&fa, a, false) == 0 && lmp_h5_open(&fb, b, false) == 0;
    for (size_t i = 0; same && i < sizeof names / sizeof names[0]; i++) {
        bool ea = lmp_h5_exists(fa, names[i]), eb = lmp_h5_exists(fb, names[i]);
        if (ea != eb) {
            same = 0;
            break;
        }
        if (!ea)
            continue;
        int na, nb;
        int64_t sa[8], sb[8];
        void *da = NULL, *db = NULL;
        lmp_dtype dt = i == 0 ? LMP_DT_I64 : (i == 1 || i == 2 || i == 6) ? LMP_DT_I32 : LMP_DT_F32;
        if (lmp_h5_read(fa, names[i], dt, &na, sa, &da) || lmp_h5_read(fb, names[i], dt, &nb, sb, &db) ||
            na != nb || memcmp(sa, sb, sizeof(int64_t) * (size_t)na) != 0) {
            same = 0;
        } else {
            size_t n = lmp_dtype_info(dt)->type_size;
            for (int d = 0; d < na; d++)
                n *= (size_t)sa[d];
            if (memcmp(da, db, n) != 0) {
                fprintf(stderr, "dataset %s differs between %s and %s\n", names[i], a, b);
                same = 0;
            }
        }
        free(da);
        free(db);
    }
    lmp_h5_close(fa, false);
    lmp_h5_close(fb, false);
    return same;
}

static void test_values(const lmp_model *m, const char *model_dir)
{
    /* prompt1: the run.c reference logits for ids[0..32) (BOS first), which is exactly
     * the first window of ctx 32 under the kld-bos protocol */
    char ref[1024], txt[1024];
    snprintf(ref, sizeof ref, "%s/reference/prompt1_logits_f32.bin", model_dir);
    snprintf(txt, sizeof txt, "%s/reference/prompt1.txt", model_dir);
    char *text = NULL, *logits = NULL;
    size_t tl = 0, ll = 0;
    if (lmp_read_file(txt, &text, &tl) || lmp_read_file(ref, &logits, &ll) || ll != 32 * 512 * 4) {
        SKIP("stories260K reference files missing");
        free(text);
        free(logits);
        return;
    }
    lmp_distill_params p = lmp_distill_default_params();
    p.ctx = 32;
    p.top_k = 8;
    p.full = true;
    p.f32 = true;
    char *out = tpath("prompt1.h5");
    lmp_distill_stats st;
    int rc = lmp_distill_export(m, "stories260K", text, tl, out, &p, &st);
    CHECK(rc == 0 && st.complete && st.n_seqs == 1, "export prompt1: %s", lmp_errmsg());
    lmp_h5 *f = NULL;
    float *lp = NULL, *tk = NULL, *rest = NULL, *tlp = NULL;
    int32_t *ids = NULL, *tg = NULL;
    int nd;
    int64_t sh[8];
    if (rc == 0 && lmp_h5_open(&f, out, false) == 0 &&
        lmp_h5_read(f, "logprobs", LMP_DT_F32, &nd, sh, (void **)&lp) == 0 &&
        lmp_h5_read(f, "topk_logprobs", LMP_DT_F32, &nd, sh, (void **)&tk) == 0 &&
        lmp_h5_read(f, "topk_ids", LMP_DT_I32, &nd, sh, (void **)&ids) == 0 &&
        lmp_h5_read(f, "rest_mass", LMP_DT_F32, &nd, sh, (void **)&rest) == 0 &&
        lmp_h5_read(f, "targets", LMP_DT_I32, &nd, sh, (void **)&tg) == 0 &&
        lmp_h5_read(f, "target_logprob", LMP_DT_F32, &nd, sh, (void **)&tlp) == 0) {
        const float *L = (const float *)logits;
        double worst = 0, worst_mass = 0, worst_tk = 0;
        int order_ok = 1, tgt_ok = 1;
        for (int j = 0; j < 32; j++) {
            double mx = -INFINITY, s = 0;
            for (int i = 0; i < 512; i++)
                mx = L[j * 512 + i] > mx ? L[j * 512 + i] : mx;
            for (int i = 0; i < 512; i++)
                s += exp(L[j * 512 + i] - mx);
            for (int i = 0; i < 512; i++) {
                double want = L[j * 512 + i] - mx - log(s);
                double d = fabs(want - lp[j * 512 + i]);
                worst = d > worst ? d : worst;
            }
            double mass = rest[j];
            for (int i = 0; i < 8; i++) {
                mass += exp(tk[j * 8 + i]);
                double d = fabs(tk[j * 8 + i] - lp[j * 512 + ids[j * 8 + i]]);
                worst_tk = d > worst_tk ? d : worst_tk;
                if (i && tk[j * 8 + i] > tk[j * 8 + i - 1])
                    order_ok = 0;
            }
            /* nothing outside the top-k beats the k-th */
            for (int i = 0; i < 512; i++)
                if (lp[j * 512 + i] > tk[j * 8 + 7]) {
                    int in = 0;
                    for (int q = 0; q < 8; q++)
                        in |= ids[j * 8 + q] == i;
                    order_ok &= in;
                }
            worst_mass = fabs(mass - 1) > worst_mass ? fabs(mass - 1) : worst_mass;
            if (tg[j] >= 0 && fabs(tlp[j] - lp[j * 512 + tg[j]]) > 1e-6)
                tgt_ok = 0;
        }
        CHECK(worst < 2e-4, "log-probs vs run.c reference: worst |diff| %g", worst);
        CHECK(worst_tk == 0, "top-k log-probs equal the full ones at their ids: worst %g", worst_tk);
        CHECK(order_ok, "top-k sorted and complete");
        CHECK(worst_mass < 1e-5, "sum(exp(top-k)) + rest == 1: worst %g", worst_mass);
        CHECK(tgt_ok, "target_logprob == logprobs[target]");
        CHECK(tg[30] == 1 * tg[30] && tg[31] >= 0, "last target is the token after the window (%d)", tg[31]);
    } else {
        CHECK(0, "reading %s back: %s", out, lmp_errmsg());
    }
    lmp_h5_close(f, false);
    free(lp);
    free(tk);
    free(ids);
    free(rest);
    free(tg);
    free(tlp);
    free(text);
    free(logits);
    free(out);
}

/* A perturbed copy of every linear of layer 0 (seeded): the "student". */
static float *g_noisy[LMP_LIN_COUNT];
static lmp_wmat g_noisy_w[LMP_LIN_COUNT];

static int perturb(lmp_model *m, float scale)
{
    lmp_rng r;
    lmp_rng_seed(&r, 1234);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const lmp_wmat *w = lmp_model_linear(m, 0, (lmp_linear)k);
        if (!w || w->dtype != LMP_DT_F32)
            return -1;
        size_t n = (size_t)(w->rows * w->cols);
        g_noisy[k] = malloc(n * sizeof(float));
        const float *src = w->data;
        for (size_t i = 0; i < n; i++)
            g_noisy[k][i] = src[i] * (1 + scale * lmp_rng_normal(&r));
        g_noisy_w[k] = *w;
        g_noisy_w[k].data = g_noisy[k];
        if (lmp_model_set_linear(m, 0, (lmp_linear)k, &g_noisy_w[k]))
            return -1;
    }
    return 0;
}

static void test_kld(const lmp_model *m, const char *model_path)
{
    lmp_distill_params p = small_params();
    p.full = true;
    p.f32 = true;
    p.top_k = 32;
    char *out = tpath("kld.h5");
    int rc = export_to(m, out, p, NULL);
    CHECK(rc == 0, "export full+top-k: %s", lmp_errmsg());
    lmp_kld_params kp = lmp_kld_default_params();
    lmp_kld_result r;
    rc = lmp_distill_eval(m, out, &kp, &r);
    CHECK(rc == 0 && r.exact, "self eval: %s", lmp_errmsg());
    CHECK(fabs(r.kld_mean) < 1e-6 && fabs(r.kld_pct[0]) < 1e-5, "self KLD %g (max %g) == 0", r.kld_mean,
          r.kld_pct[0]);
    CHECK(r.same_top == 1.0 && fabs(r.ppl_ratio - 1) < 1e-6 && fabs(r.dp_rms) < 1e-6,
          "self: same top %g, ppl ratio %g, rms dp %g", r.same_top, r.ppl_ratio, r.dp_rms);
    CHECK(r.n_kld == 6 * 64 && r.n_scored == 6 * 64, "positions %lld, scored %lld", (long long)r.n_kld,
          (long long)r.n_scored);

    /* the student: layer 0 perturbed */
    lmp_model *s = NULL;
    if (lmp_model_load(&s, model_path) || perturb(s, 0.3f)) {
        CHECK(0, "perturbed model: %s", lmp_errmsg());
        lmp_model_free(s);
        free(out);
        return;
    }
    lmp_kld_result full, tk;
    rc = lmp_distill_eval(s, out, &kp, &full);
    kp.use_topk = true;
    rc |= lmp_distill_eval(s, out, &kp, &tk);
    CHECK(rc == 0 && full.exact && !tk.exact, "student evals: %s", lmp_errmsg());
    printf("student KLD exact %.6f, top-32 %.6f, gap bound %.6f, same top %.4f, ppl %.4f vs %.4f\n",
           full.kld_mean, tk.kld_mean, tk.kld_topk_gap_bound, full.same_top, full.ppl_model, full.ppl_base);
    CHECK(full.kld_mean > 1e-3, "student KLD %g > 0", full.kld_mean);
    CHECK(tk.kld_mean <= full.kld_mean + 1e-7, "top-k KLD %.8f <= exact %.8f (lower bound)", tk.kld_mean,
          full.kld_mean);
    CHECK(full.kld_mean <= tk.kld_mean + tk.kld_topk_gap_bound + 1e-7, "exact %.8f <= top-k %.8f + bound %.8f",
          full.kld_mean, tk.kld_mean, tk.kld_topk_gap_bound);
    CHECK(fabs(full.kld_topk - tk.kld_mean) < 1e-12, "the top-k figure is reported beside the exact one");
    CHECK(fabs(full.ppl_base - r.ppl_base) < 1e-9, "teacher ppl from the file does not depend on the student");
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        free(g_noisy[k]);
    lmp_model_free(s);
    free(out);
}

static void test_resume_shards(const lmp_model *m)
{
    lmp_distill_params p = small_params();
    char *u = tpath("u.h5"), *r = tpath("r.h5"), *s0 = tpath("s0.h5"), *s1 = tpath("s1.h5"),
         *mg = tpath("m.h5"), *t1 = tpath("t1.h5"), *part = tpath("r.h5.partial");
    lmp_distill_stats st;
    CHECK(export_to(m, u, p, &st) == 0 && st.complete && st.n_seqs == 6, "uninterrupted: %s", lmp_errmsg());

    lmp_distill_params q = p;
    q.stop_after = 2;
    CHECK(export_to(m, r, q, &st) == 0 && !st.complete && st.n_computed == 2, "interrupted after 2");
    CHECK(!lmp_path_exists(r) && lmp_path_is_dir(part), "partial folder left, no output");
    /* a killed writer's temporary is ignored and cleaned */
    char *junk = lmp_path_join(part, "seq-000000002.h5.tmp.99999");
    FILE *fj = fopen(junk, "w");
    if (fj) {
        fputs("half", fj);
        fclose(fj);
    }
    q.stop_after = 1;
    CHECK(export_to(m, r, q, &st) == 0 && !st.complete && st.n_resumed == 2 && st.n_computed == 1,
          "second interruption (resumed %d, computed %d)", st.n_resumed, st.n_computed);
    CHECK(!lmp_path_exists(junk), "stale temporary removed");
    /* other settings against the partial folder: refused */
    lmp_distill_params o = p;
    o.top_k = 8;
    CHECK(export_to(m, r, o, &st) == LMP_EEXIST, "partial export with other settings refused");
    CHECK(export_to(m, r, p, &st) == 0 && st.complete && st.n_resumed == 3 && st.n_computed == 3,
          "resumed to completion: %s", lmp_errmsg());
    CHECK(!lmp_path_exists(part), "partial folder removed");
    CHECK(same_datasets(u, r), "resumed == uninterrupted");
    CHECK(export_to(m, r, p, &st) == LMP_EEXIST, "existing output refused without force");

    lmp_distill_params a = p, b = p;
    a.shard_index = 0;
    a.shard_count = 2;
    b.shard_index = 1;
    b.shard_count = 2;
    CHECK(export_to(m, s0, a, &st) == 0 && st.n_seqs == 3, "shard 0/2");
    CHECK(export_to(m, s1, b, &st) == 0 && st.n_seqs == 3, "shard 1/2");
    const char *in[2] = {s1, s0};
    CHECK(lmp_distill_merge(mg, in, 2, false) == 0, "merge: %s", lmp_errmsg());
    CHECK(same_datasets(u, mg), "merged shards == single export");
    char *one = tpath("one.h5"), *t0 = tpath("t0.h5"), *t1b = tpath("t1b.h5");
    CHECK(lmp_distill_merge(one, in, 1, false) == 0, "one shard's pieces merge into that shard");
    lmp_distill_params c = p;
    c.shard_count = 3;
    c.shard_index = 0;
    CHECK(export_to(m, t0, c, &st) == 0 && st.n_seqs == 2, "shard 0/3");
    c.shard_index = 1;
    CHECK(export_to(m, t1b, c, &st) == 0 && st.n_seqs == 2, "shard 1/3");
    const char *two[2] = {t0, t1b};
    CHECK(lmp_distill_merge(mg, two, 2, true) == LMP_EINVAL && strstr(lmp_errmsg(), "window 2 of 6 is missing"),
          "merge without shard 2/3 refused: %s", lmp_errmsg());
    free(one);
    free(t0);
    free(t1b);
    const char *dup[3] = {s0, s1, s1};
    CHECK(lmp_distill_merge(mg, dup, 3, true) == LMP_EINVAL, "duplicated shard refused");
    const char *mix[2] = {s0, u};
    CHECK(lmp_distill_merge(mg, mix, 2, true) == LMP_EINVAL, "overlapping files refused");

    /* thread count does not change the values */
    int nt = lmp_num_threads();
    lmp_set_num_threads(1);
    CHECK(export_to(m, t1, p, &st) == 0, "1 thread");
    lmp_set_num_threads(nt);
    CHECK(same_datasets(u, t1), "1 thread == %d threads", nt);
    free(junk);
    free(u);
    free(r);
    free(s0);
    free(s1);
    free(mg);
    free(t1);
    free(part);
}

static void test_refusals(const lmp_model *m)
{
    lmp_distill_params p = small_params();
    char *out = tpath("bad.h5"), *trunc = tpath("trunc.h5"), *other = tpath("other.h5");
    lmp_distill_stats st;
    int rc = lmp_distill_export(m, "stories260K", "Once upon a time", 16, out, &p, &st);
    CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), "tokens"), "short text: %s", lmp_errmsg());
    CHECK(!lmp_path_exists(out), "no output for a short text");
    p.top_k = 0;
    CHECK(export_to(m, out, p, &st) == LMP_EINVAL, "k 0 without full refused");
    p = small_params();
    p.shard_index = 2;
    p.shard_count = 2;
    CHECK(export_to(m, out, p, &st) == LMP_EINVAL, "bad shard refused");
    p = small_params();
    CHECK(export_to(m, out, p, &st) == 0, "export: %s", lmp_errmsg());

    /* truncated copy */
    char *data = NULL;
    size_t len = 0;
    if (lmp_read_file(out, &data, &len) == 0) {
        FILE *f = fopen(trunc, "wb");
        fwrite(data, 1, len / 2, f);
        fclose(f);
        lmp_kld_params kp = lmp_kld_default_params();
        lmp_kld_result r;
        rc = lmp_distill_eval(m, trunc, &kp, &r);
        CHECK(rc == LMP_EFORMAT, "truncated file refused (%d): %s", rc, lmp_errmsg());
        /* another tokenizer: same file with other hashes */
        f = fopen(other, "wb");
        fwrite(data, 1, len, f);
        fclose(f);
        lmp_h5 *h = NULL;
        if (lmp_h5_open(&h, other, true) == 0) {
            lmp_h5_attr_set_str(h, "/", "tokenizer_hash", "0123456789abcdef");
            lmp_h5_attr_set_str(h, "/", "vocab_hash", "0123456789abcdef");
            lmp_h5_close(h, false);
            rc = lmp_distill_eval(m, other, &kp, &r);
            CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), "0123456789abcdef") &&
                      strstr(lmp_errmsg(), "fd18e01bff74b38d"),
                  "other tokenizer refused with both hashes: %s", lmp_errmsg());
            /* only the full tokenizer hash differs (HF vs GGUF): accepted */
            lmp_h5_open(&h, other, true);
            lmp_h5_attr_set_str(h, "/", "vocab_hash", "ae099c6e72555faf");
            lmp_h5_close(h, false);
            rc = lmp_distill_eval(m, other, &kp, &r);
            CHECK(rc == 0, "same vocabulary, other tokenizer hash accepted: %s", lmp_errmsg());
            lmp_h5_open(&h, other, true);
            lmp_h5_attr_set_i64(h, "/", "vocab_size", 1000);
            lmp_h5_close(h, false);
            rc = lmp_distill_eval(m, other, &kp, &r);
            CHECK(rc != 0 && strstr(lmp_errmsg(), "vocabulary"), "other vocabulary size refused: %s",
                  lmp_errmsg());
        }
        free(data);
    }
    lmp_kld_params kp = lmp_kld_default_params();
    lmp_kld_result r;
    CHECK(lmp_distill_eval(m, "/nonexistent.h5", &kp, &r) == LMP_ENOTFOUND, "missing file");
    kp.skip = 64;
    CHECK(lmp_distill_eval(m, out, &kp, &r) == LMP_EINVAL, "--skip >= ctx refused");
    free(out);
    free(trunc);
    free(other);
}

static void test_svg(void)
{
    char *svg = tpath("plot.svg");
    double x[3] = {4.5, 8.5, 16}, y[3] = {0.07, 0.001, NAN};
    const char *lab[3] = {"q4_0 & co", "q8_0", "f16"};
    int rc = lmp_svg_scatter(svg, "KLD <vs> bpw", "bits per weight", "KLD", x, y, lab, 3, true);
    char *s = NULL;
    size_t n = 0;
    CHECK(rc == 0 && lmp_read_file(svg, &s, &n) == 0, "svg written");
    if (s) {
        CHECK(strstr(s, "<svg") && strstr(s, "</svg>"), "svg element");
        CHECK(strstr(s, "q4_0 &amp; co") && strstr(s, "KLD &lt;vs&gt; bpw") && strstr(s, ">q8_0<"),
              "labels escaped");
        CHECK(!strstr(s, ">f16<"), "non-finite point left out");
        CHECK(strstr(s, ">0.04<") || strstr(s, ">0.05<") || strstr(s, ">0.02<"), "y ticks");
    }
    CHECK(lmp_svg_scatter(svg, "t", "x", "y", x, y, lab, 3, false) == LMP_EEXIST, "no overwrite without force");
    free(s);
    free(svg);
}

int main(void)
{
    test_svg();
    const char *dir = fixture("models/stories260K");
    const char *txt = fixture("text/tinystories-valid-sample.txt");
    if (!dir || !txt) {
        SKIP("fixtures absent: distillation tests need models/stories260K");
        return test_finish();
    }
    char *text = NULL;
    lmp_model *m = NULL;
    char dirbuf[4096];
    snprintf(dirbuf, sizeof dirbuf, "%s", dir);
    if (lmp_read_file(txt, &text, &g_len) || lmp_model_load(&m, dirbuf)) {
        CHECK(0, "fixtures: %s", lmp_errmsg());
        return test_finish();
    }
    g_text = text;
    test_values(m, dirbuf);
    test_kld(m, dirbuf);
    test_resume_shards(m);
    test_refusals(m);
    lmp_model_free(m);
    free(text);
    return test_finish();
}
