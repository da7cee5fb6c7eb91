/*
 * Task scoring (lib/distill/tasks.c): the readers (every format, every defect with its
 * file and line), the statistics, and the scores themselves against references that do
 * not go through the scorer:
 *   - llama2.c run.c's logits of stories260K's prompt1 (fixture): the log-likelihood of
 *     a choice summed by hand from them, under both protocols;
 *   - a brute-force evaluation of each choice's whole sequence in a fresh session with
 *     a log-softmax written here, for every task kind and both protocols (the shared
 *     KV prefix, the token ranges, truncation);
 *   - llama.cpp's llama-perplexity --winogrande per-item scores on stories260K
 *     (golden/tasks-llamacpp-winogrande.txt).
 */
#include "lib/distill/tasks.h"
#include "test.h"

#include <math.h>

static const char *write_file(const char *name, const void *data, size_t n)
{
    static char path[8][512];
    static int k;
    char *p = path[k++ & 7];
    snprintf(p, 512, "%s/%s", tmpdir(), name);
    FILE *f = fopen(p, "wb");
    if (f) {
        fwrite(data, 1, n, f);
        fclose(f);
    }
    return p;
}

static const char *write_text(const char *name, const char *text)
{
    return write_file(name, text, strlen(text));
}

/* loads path, expecting failure with `want` in the message */
static void expect_error(const char *what, const char *path, const char *want)
{
    lmp_task_set *t = NULL;
    int rc = lmp_task_load(path, &t);
    CHECK(rc != 0 && t == NULL, "%s: loaded", what);
    CHECK(rc != 0 && strstr(lmp_errmsg(), want) != NULL, "%s: message '%s' lacks '%s'", what, lmp_errmsg(), want);
    CHECK(rc != 0 && strstr(lmp_errmsg(), path) != NULL, "%s: message '%s' lacks the file name", what,
          lmp_errmsg());
    lmp_task_free(t);
}

static void test_readers(void)
{
    lmp_task_set *t = NULL;
    const char *p = write_text("arc.jsonl",
                               "{\"query\": \"Question: Why?\", \"choices\": [\"a b\", \"c\"], \"gold\": 1}\n"
                               "\n"
                               "{\"query\": \"Question: How?\\n\", \"choices\": [\"x\", \"y\", \"z\"], \"gold\": 0}\n"
                               "{\"query\": \"The sky is\", \"choices\": [\"blue\"], \"gold\": 0}\n");
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t) {
        CHECK(t->n_items == 3 && t->kind == LMP_TASK_CHOICE && strcmp(t->format, "jsonl") == 0, "n %d", t->n_items);
        CHECK(strcmp(t->items[0].ctx[0], "Question: Why?\nAnswer:") == 0, "ARC context '%s'", t->items[0].ctx[0]);
        CHECK(strcmp(t->items[1].ctx[2], "Question: How?\nAnswer:") == 0, "PIQA context '%s'", t->items[1].ctx[2]);
        CHECK(strcmp(t->items[2].ctx[0], "The sky is") == 0, "plain query '%s'", t->items[2].ctx[0]);
        CHECK(strcmp(t->items[0].cont[0], " a b") == 0 && strcmp(t->items[0].norm[0], "a b") == 0, "cont '%s'",
              t->items[0].cont[0]);
        CHECK(t->items[0].gold == 1 && t->items[0].correct[1] && !t->items[0].correct[0], "gold");
        CHECK(t->items[1].line == 3 && t->items[1].n_choices == 3, "line %d", t->items[1].line);
    }
    lmp_task_free(t);

    p = write_text("wino.jsonl", "{\"context_options\": [\"A so Tom\", \"A so Ann\"], \"continuation\": \"ran.\", "
                                 "\"gold\": 1}\n");
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t) {
        CHECK(t->kind == LMP_TASK_PARTIAL && strcmp(t->items[0].ctx[1], "A so Ann") == 0 &&
                  strcmp(t->items[0].cont[1], " ran.") == 0 && strcmp(t->items[0].norm[0], "A so Tom") == 0,
              "partial item");
    }
    lmp_task_free(t);

    p = write_text("lambada.jsonl", "{\"context\": \"He said\", \"continuation\": \"hello\"}\n");
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t)
        CHECK(t->kind == LMP_TASK_COMPLETION && t->items[0].n_choices == 1 &&
                  strcmp(t->items[0].cont[0], " hello") == 0,
              "completion item");
    lmp_task_free(t);

    p = write_text("hs.txt", "Ctx one: a man\n2\nruns.\nsits.\njumps.\nsings.\nCtx two\n0\na\nb\nc\nd\n");
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t) {
        CHECK(t->n_items == 2 && strcmp(t->format, "hellaswag-txt") == 0 && t->items[0].gold == 2 &&
                  strcmp(t->items[0].ctx[0], "Ctx one: a man") == 0 && strcmp(t->items[0].cont[3], " sings.") == 0 &&
                  t->items[1].line == 7,
              "hellaswag items");
    }
    lmp_task_free(t);

    p = write_text("wg.csv", "index,sentence,option1,option2,answer\n"
                             "0,Sarah beat Maria so _ always won.,Sarah,Maria,1\n"
                             "1,\"The bed, not the _ was ruined.\",blanket,bed,2\n");
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t) {
        CHECK(t->n_items == 2 && t->kind == LMP_TASK_PARTIAL, "csv n %d", t->n_items);
        CHECK(strcmp(t->items[0].ctx[1], "Sarah beat Maria so Maria") == 0, "csv ctx '%s'", t->items[0].ctx[1]);
        CHECK(strcmp(t->items[0].cont[0], " always won.") == 0 && strcmp(t->items[0].lc_tail, " always won.") == 0,
              "csv tails");
        CHECK(strcmp(t->items[1].ctx[0], "The bed, not the blanket") == 0 && t->items[1].gold == 1 &&
                  t->items[1].line == 3,
              "quoted sentence '%s'", t->items[1].ctx[0]);
    }
    lmp_task_free(t);

    /* multiple-choice binary: 1 task, question "Q", answers "yes"/"no", labels 0/1 */
    unsigned char bin[256];
    size_t o = 0;
#define U32(v) do { uint32_t x_ = (v); memcpy(bin + o, &x_, 4); o += 4; } while (0)
#define STR(s) do { U32((uint32_t)strlen(s)); memcpy(bin + o, s, strlen(s)); o += strlen(s); } while (0)
    U32(1);
    U32(8);
    STR("Q");
    U32(2);
    STR("yes");
    STR("no");
    U32(0);
    U32(1);
    U32(0); /* mc2: none */
    p = write_file("mc.bin", bin, o);
    CHECK(lmp_task_load(p, &t) == 0, "%s", lmp_errmsg());
    if (t)
        CHECK(t->n_items == 1 && t->items[0].gold == 1 && strcmp(t->items[0].cont[1], " no") == 0 &&
                  strcmp(t->items[0].ctx[0], "Q") == 0,
              "binary item");
    lmp_task_free(t);
    expect_error("truncated binary", write_file("mc_trunc.bin", bin, o - 6), "truncated");
    o = 0;
    U32(1);
    U32(8);
    STR("Q");
    U32(2);
    STR("yes");
    STR("no");
    U32(0);
    U32(0);
    U32(0);
    expect_error("binary without a correct answer", write_file("mc_nogold.bin", bin, o), "no answer is labelled");
#undef U32
#undef STR

    /* defects */
    expect_error("empty file", write_text("empty.jsonl", ""), "empty task file");
    expect_error("blank file", write_text("blank.txt", "\n  \n"), "empty task file");
    expect_error("malformed JSON on line 3",
                 write_text("bad.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n\n"
                                         "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0\n"),
                 "bad.jsonl:3: malformed JSON");
    expect_error("no choices", write_text("noch.jsonl", "{\"query\": \"q\", \"choices\": [], \"gold\": 0}\n"),
                 "noch.jsonl:1: item without choices");
    expect_error("choices missing", write_text("noch2.jsonl", "{\"query\": \"q\", \"gold\": 0}\n"),
                 "item without 'choices'");
    expect_error("gold out of range",
                 write_text("gold.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n"
                                          "{\"query\": \"q\", \"choices\": [\"a\", \"b\"], \"gold\": 2}\n"),
                 "gold.jsonl:2: gold index 2 out of range (the item has 2 choices)");
    expect_error("negative gold", write_text("gneg.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": -1}\n"),
                 "out of range");
    expect_error("gold not an integer",
                 write_text("gstr.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": \"0\"}\n"),
                 "'gold' is not an integer");
    expect_error("mixed kinds",
                 write_text("mix.jsonl", "{\"query\": \"q\", \"choices\": [\"a\"], \"gold\": 0}\n"
                                         "{\"context\": \"c\", \"continuation\": \"d\"}\n"),
                 "mix.jsonl:2:");
    expect_error("unknown fields", write_text("unk.jsonl", "{\"text\": \"x\"}\n"), "unk.jsonl:1: unknown item");
    expect_error("wino gold", write_text("wg.jsonl", "{\"context_options\": [\"a\", \"b\"], \"continuation\": \"c\", "
                                                     "\"gold\": 5}\n"),
                 "gold index 5 out of range");
    expect_error("hellaswag lines", write_text("hs7.txt", "c\n0\na\nb\nc\nd\nextra\n"), "7 lines, not a multiple of 6");
    expect_error("hellaswag gold", write_text("hsg.txt", "c\n4\na\nb\nc\nd\n"), "hsg.txt:2: gold index '4'");
    expect_error("csv answer", write_text("a3.csv", "0,A _ b.,x,y,3\n"), "a3.csv:1: answer '3' is not 1 or 2");
    expect_error("csv blank", write_text("nob.csv", "0,A b.,x,y,1\n"), "nob.csv:1: the sentence has no '_'");
    expect_error("csv fields", write_text("f.csv", "0,A _ b.,x\n"), "f.csv:1: expected 5 comma-separated fields");
    expect_error("missing file", "/nonexistent/tasks.jsonl", "tasks.jsonl");
}

static void test_stats(void)
{
    CHECK(fabs(lmp_task_stderr01(0.5, 101) - 0.05) < 1e-15, "stderr(0.5, 101) = %g", lmp_task_stderr01(0.5, 101));
    /* 3 of 4 correct: values 1,1,1,0, mean 0.75, sample variance 0.25, stderr sqrt(0.25/4) */
    CHECK(fabs(lmp_task_stderr01(0.75, 4) - 0.25) < 1e-15, "stderr(0.75, 4) = %g", lmp_task_stderr01(0.75, 4));
    CHECK(lmp_task_stderr01(1, 1) == 0, "n = 1");
    int a[50], b[50];
    lmp_task_subset(1000, 50, 7, a);
    lmp_task_subset(1000, 50, 7, b);
    bool same = memcmp(a, b, sizeof a) == 0, sorted = true, inrange = true;
    for (int i = 0; i < 50; i++) {
        sorted = sorted && (i == 0 || a[i] > a[i - 1]);
        inrange = inrange && a[i] >= 0 && a[i] < 1000;
    }
    CHECK(same && sorted && inrange, "subset reproducible, sorted, distinct, in range");
    lmp_task_subset(1000, 50, 8, b);
    CHECK(memcmp(a, b, sizeof a) != 0, "another seed gives another subset");
    int all[5];
    lmp_task_subset(5, 9, 3, all);
    CHECK(all[0] == 0 && all[4] == 4, "limit above n: every item");
}

/* ---- references ---------------------------------------------------------------- */

typedef struct {
    lmp_task_item_result r[64];
    int n;
} collected;

static void collect(void *user, const lmp_task_item_result *r)
{
    collected *c = user;
    if (c->n < 64)
        c->r[c->n++] = *r;
}

/* log p(tok[t] | tok[<t]) from logits, written independently of lmp_nll */
static double logp_ref(const float *lg, int V, int tok)
{
    double mx = lg[0];
    for (int i = 1; i < V; i++)
        mx = lg[i] > mx ? lg[i] : mx;
    double s = 0;
    for (int i = 0; i < V; i++)
        s += exp((double)lg[i] - mx);
    return (double)lg[tok] - mx - log(s);
}

/* sum of log p over tokens [from, to) of seq, fed whole to a fresh session */
static double brute(const lmp_model *m, const int32_t *seq, int n, int from, int to, int *count)
{
    int V = lmp_model_n_vocab(m);
    lmp_session *s = NULL;
    float *lg = malloc(sizeof(float) * (size_t)V * (size_t)n);
    double sum = 0;
    *count = 0;
    if (lmp_session_new(&s, m, n + 1) == 0 && lg && lmp_eval(s, seq, n, lg, true) == 0)
        for (int t = from < 1 ? 1 : from; t < to; t++) {
            sum += logp_ref(lg + (size_t)(t - 1) * V, V, seq[t]);
            (*count)++;
        }
    lmp_session_free(s);
    free(lg);
    return sum;
}

static int32_t *tok(const lmp_model *m, const char *a, const char *b, bool bos, int *n)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *s = malloc(la + lb + 1);
    memcpy(s, a, la);
    if (b)
        memcpy(s + la, b, lb);
    s[la + lb] = 0;
    int32_t *ids = NULL;
    int64_t k = 0;
    lmp_model_tokenize(m, s, la + lb, bos, &ids, &k);
    free(s);
    *n = (int)k;
    return ids;
}

/* run.c's logits of prompt1 (BOS + 31 tokens) give the log-likelihood of "park." after
 * the rest of the sentence, with no lmpress forward pass involved */
static void test_runc_reference(void)
{
    const char *dir = fixture("models/stories260K");
    const char *lpath = fixture("models/stories260K/reference/prompt1_logits_f32.bin");
    const char *ipath = fixture("models/stories260K/reference/prompt1_ids.txt");
    if (!dir || !lpath || !ipath) {
        SKIP("stories260K fixture absent: run.c reference test");
        return;
    }
    lmp_model *m = NULL;
    CHECK(lmp_model_load(&m, dir) == 0, "%s", lmp_errmsg());
    if (!m)
        return;
    enum { N = 32, V = 512 };
    int32_t ids[N];
    float *ref = malloc(sizeof(float) * N * V);
    FILE *f = fopen(ipath, "r");
    for (int i = 0; f && i < N; i++)
        if (fscanf(f, "%d", &ids[i]) != 1)
            ids[i] = -1;
    if (f)
        fclose(f);
    f = fopen(lpath, "rb");
    CHECK(f && fread(ref, sizeof(float), N * V, f) == N * V, "reading %s", lpath);
    if (f)
        fclose(f);
    const char *ctx = "Once upon a time, there was a little girl named Lily. She loved to play outside in the";
    const char *task = write_text("park.jsonl", "{\"query\": \"Once upon a time, there was a little girl named "
                                                "Lily. She loved to play outside in the\", \"choices\": [\"park.\", "
                                                "\"garden.\"], \"gold\": 0}\n");
    lmp_task_set *t = NULL;
    CHECK(lmp_task_load(task, &t) == 0, "%s", lmp_errmsg());
    int nf = 0, nc = 0, nb = 0;
    int32_t *full = tok(m, ctx, " park.", true, &nf), *cids = tok(m, ctx, NULL, true, &nc),
            *other = tok(m, ctx, " garden.", true, &nb);
    CHECK(nf == N && memcmp(full, ids, sizeof ids) == 0, "the item tokenizes to prompt1's ids (%d tokens)", nf);
    CHECK(nc < N && memcmp(cids, ids, sizeof(int32_t) * (size_t)nc) == 0, "context ids are a prefix");
    if (t && nf == N && nc < N) {
        /* lm-eval with BOS (add_bos_token=True): the tokens after the context's */
        double want = 0;
        for (int i = nc; i < N; i++)
            want += logp_ref(ref + (size_t)(i - 1) * V, V, ids[i]);
        collected c = {0};
        lmp_task_params p = lmp_task_default_params();
        p.add_bos = true;
        p.on_item = collect;
        p.user = &c;
        lmp_task_result r;
        CHECK(lmp_task_eval(m, t, &p, &r) == 0, "%s", lmp_errmsg());
        CHECK(c.n == 1 && fabs(c.r[0].ll[0] - want) < 1e-3, "lm-eval ll %.6f, run.c logits give %.6f", c.r[0].ll[0],
              want);
        CHECK(c.n == 1 && fabs(c.r[0].ll_norm[0] - want / 5) < 2e-4, "acc_norm divides by 5 characters");
        /* llama.cpp: mean over the tokens after the common prefix of both choices */
        int cp = 0;
        while (cp < nf && cp < nb && full[cp] == other[cp])
            cp++;
        double w2 = 0;
        for (int i = cp; i < N; i++)
            w2 += logp_ref(ref + (size_t)(i - 1) * V, V, ids[i]);
        c.n = 0;
        p.protocol = LMP_TASK_LLAMACPP;
        CHECK(lmp_task_eval(m, t, &p, &r) == 0, "%s", lmp_errmsg());
        CHECK(c.n == 1 && fabs(c.r[0].ll[0] - w2) < 1e-3 && c.r[0].n_tokens[0] == N - cp &&
                  fabs(c.r[0].ll_norm[0] - w2 / (N - cp)) < 1e-4,
              "llamacpp sum %.6f (%d tokens), run.c logits give %.6f (%d)", c.r[0].ll[0], c.r[0].n_tokens[0], w2,
              N - cp);
    }
    free(full);
    free(cids);
    free(other);
    free(ref);
    lmp_task_free(t);
    lmp_model_free(m);
}

/* Every item's scores equal a brute-force evaluation of each choice's whole sequence. */
static void brute_check(const lmp_model *m, const char *name, const char *path, lmp_task_protocol proto, int limit,
                        int ctx)
{
    lmp_task_set *t = NULL;
    if (lmp_task_load(path, &t)) {
        CHECK(0, "%s: %s", name, lmp_errmsg());
        return;
    }
    collected c = {0};
    lmp_task_params p = lmp_task_default_params();
    p.protocol = proto;
    p.limit = limit;
    p.seed = 11;
    p.ctx = ctx;
    p.on_item = collect;
    p.user = &c;
    lmp_task_result r;
    int rc = lmp_task_eval(m, t, &p, &r);
    CHECK(rc == 0 && c.n == limit, "%s: %s", name, rc ? lmp_errmsg() : "items");
    int bad = 0, checked = 0, max_len = ctx;
    for (int j = 0; j < c.n; j++) {
        const lmp_task_item_result *res = &c.r[j];
        const lmp_task_item *it = &t->items[res->index];
        int k = it->n_choices;
        double s[8];
        for (int i = 0; i < k && i < 8; i++) {
            int n = 0, cnt = 0;
            if (proto == LMP_TASK_LMEVAL) {
                /* lm-eval: context_enc + whole[len(context_enc):], cut to max_len + 1 */
                int nc = 0;
                int32_t *whole = tok(m, it->ctx[i], it->cont[i], false, &n);
                int32_t *ce = tok(m, it->ctx[i], NULL, false, &nc);
                memcpy(whole, ce, sizeof(int32_t) * (size_t)nc);
                int start = n - (max_len + 1) > 0 ? n - (max_len + 1) : 0;
                s[i] = brute(m, whole + start, n - start, nc - start, n - start, &cnt);
                free(whole);
                free(ce);
            } else if (t->kind == LMP_TASK_PARTIAL) {
                continue; /* checked against llama.cpp's own numbers below */
            } else {
                /* llama.cpp: tokens after the common prefix of all choices, with BOS */
                int32_t *seq = tok(m, it->ctx[i], it->cont[i], true, &n);
                int cp = n;
                if (t->kind == LMP_TASK_COMPLETION) { /* the tokens after the context's */
                    int32_t *ce = tok(m, it->ctx[i], NULL, true, &cp);
                    free(ce);
                }
                for (int o = 0; o < k && t->kind != LMP_TASK_COMPLETION; o++) {
                    int no = 0, q = 0;
                    int32_t *so = tok(m, it->ctx[o], it->cont[o], true, &no);
                    while (q < cp && q < no && so[q] == seq[q])
                        q++;
                    cp = q;
                    free(so);
                }
                s[i] = brute(m, seq, n, cp, n, &cnt);
                free(seq);
            }
            checked++;
            if (fabs(s[i] - res->ll[i]) > 2e-3 * (1 + fabs(s[i])) || cnt != res->n_tokens[i]) {
                if (bad++ < 3)
                    fprintf(stderr, "  %s item %d choice %d: scorer %.6f (%d tokens), brute force %.6f (%d)\n", name,
                            res->index, i, res->ll[i], res->n_tokens[i], s[i], cnt);
            }
        }
    }
    CHECK(bad == 0 && (checked > 0 || (proto == LMP_TASK_LLAMACPP && t->kind == LMP_TASK_PARTIAL)),
          "%s: %d of %d choice scores differ from the brute-force evaluation", name, bad, checked);
    int acc = 0;
    for (int j = 0; j < c.n; j++)
        acc += c.r[j].acc;
    CHECK(c.n > 0 && fabs(r.acc - (double)acc / c.n) < 1e-12 && fabs(r.acc_stderr - lmp_task_stderr01(r.acc, c.n)) < 1e-12,
          "%s: aggregate of the items", name);
    lmp_task_free(t);
}

/* llama-perplexity --winogrande -fa off -ctk f32 -ctv f32 on stories260K converted to
 * GGUF (lmpress convert), the first 40 items of the fixture as llama.cpp's CSV: its two
 * scores and its answer per item (golden/tasks-llamacpp-winogrande.txt). The CSV's
 * first + option + second is the JSONL's context option + " " + continuation, so the
 * JSONL's first 40 lines (copied here at run time) are the same items. */
static void test_llamacpp_golden(const lmp_model *m, const char *wino_jsonl)
{
    const char *g = "golden/tasks-llamacpp-winogrande.txt";
    FILE *f = fopen(g, "r"), *in = fopen(wino_jsonl, "r");
    char path[600], line[4096];
    snprintf(path, sizeof path, "%s/wino40.jsonl", tmpdir());
    FILE *o = fopen(path, "w");
    for (int i = 0; in && o && i < 40 && fgets(line, sizeof line, in); i++)
        fputs(line, o);
    if (in)
        fclose(in);
    if (o)
        fclose(o);
    lmp_task_set *t = NULL;
    if (!f || lmp_task_load(path, &t)) {
        CHECK(0, "golden file %s / %s: %s", g, path, lmp_errmsg());
        if (f)
            fclose(f);
        return;
    }
    collected c = {0};
    lmp_task_params p = lmp_task_default_params();
    p.protocol = LMP_TASK_LLAMACPP;
    p.on_item = collect;
    p.user = &c;
    lmp_task_result r;
    CHECK(lmp_task_eval(m, t, &p, &r) == 0, "%s", lmp_errmsg());
    int i, n = 0, bad = 0, agree = 0, result, answer;
    double acc, s1, s2;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#' || sscanf(line, "%d %lf %lf %lf %d %d", &i, &acc, &s1, &s2, &result, &answer) != 6)
            continue;
        if (i < 1 || i > c.n)
            continue;
        const lmp_task_item_result *x = &c.r[i - 1];
        n++;
        if (fabs(x->ll_norm[0] - s1) > 2e-5 || fabs(x->ll_norm[1] - s2) > 2e-5) {
            if (bad++ < 3)
                fprintf(stderr, "  winogrande %d: lmpress %.6f %.6f, llama.cpp %.6f %.6f\n", i, x->ll_norm[0],
                        x->ll_norm[1], s1, s2);
        }
        agree += x->pred_norm + 1 == result && x->gold + 1 == answer;
    }
    fclose(f);
    CHECK(n == 40 && bad == 0, "%d of %d items differ from llama.cpp's scores by more than 2e-5", bad, n);
    CHECK(agree == n, "same answer as llama.cpp on %d of %d items", agree, n);
    lmp_task_free(t);
}

int main(void)
{
    test_readers();
    test_stats();
    test_runc_reference();
    const char *tdir = fixture("tasks/arc_easy.jsonl");
    const char *sdir = fixture("models/stories260K");
    const char *gdir = fixture("models/gutenberg-5M");
    if (!tdir || !sdir || !gdir) {
        SKIP("fixtures absent: scoring against brute force and llama.cpp");
        return test_finish();
    }
    lmp_model *s = NULL, *g = NULL;
    CHECK(lmp_model_load(&s, sdir) == 0 && lmp_model_load(&g, gdir) == 0, "%s", lmp_errmsg());
    if (s && g) {
        static const char *names[] = {"arc_easy", "piqa", "winogrande", "lambada_openai"};
        for (int i = 0; i < 4; i++) {
            char rel[128];
            snprintf(rel, sizeof rel, "tasks/%s.jsonl", names[i]);
            const char *path = fixture(rel);
            brute_check(g, names[i], path, LMP_TASK_LMEVAL, 6, 256);
            brute_check(g, names[i], path, LMP_TASK_LLAMACPP, 6, 0);
        }
        /* lm-eval's left truncation: a context of 48 tokens */
        brute_check(g, "lambada_openai ctx 48", fixture("tasks/lambada_openai.jsonl"), LMP_TASK_LMEVAL, 4, 48);
        brute_check(s, "hellaswag", fixture("tasks/hellaswag_val_full.txt"), LMP_TASK_LMEVAL, 4, 512);
        brute_check(s, "hellaswag llamacpp", fixture("tasks/hellaswag_val_full.txt"), LMP_TASK_LLAMACPP, 4, 0);
        test_llamacpp_golden(s, fixture("tasks/winogrande.jsonl"));
    }
    lmp_model_free(s);
    lmp_model_free(g);
    return test_finish();
}
