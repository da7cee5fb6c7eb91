/*
 * The layer-wise calibration driver (lib/calib/driver.c) on the gutenberg-5M fixture:
 *  - its contract with a row of hooks: passes per input class (true-sequential or one),
 *    the linears handed over in order with exactly their pass's statistics, the column
 *    sums of squares equal to an independent computation (the block runner's hook on the
 *    embedded windows, summed here), what a row installs seen by the next block, every
 *    weight restored on return;
 *  - activations spilled to a temporary file (LMP_CALIB_SPILL=0) give the same bits as
 *    in memory, for GPTQ, Wanda and the structured layer scores (re-run with each window's
 *    input and output);
 *  - calib_bos (every method: GPTQ and Wanda here) is exactly the windows with their
 *    first token replaced by BOS;
 *  - weights that are not finite are refused naming the tensor, for pruning too.
 * Skipped without the fixtures.
 */
#include "lib/prune/prune.h"
#include "lib/quant/quant.h"
#include "test.h"

#include <math.h>

#define CAL_OFF 100000
#define CAL_LEN 100000

/* ---------------------------------------------------------------- a probe row ----- */

typedef struct {
    int calls;                 /* linear calls */
    int pass_of[64];           /* pass index of each call, in call order */
    int which[64];
    int bad;                   /* statistics present where they should not be, or absent */
    int begins, ends;
    double *xsq0;              /* layer 0 class ATTN sums, copied */
    int64_t d;
    float *zero_down;          /* installed as layer 0's down_proj */
    lmp_wmat zw;
    int rerun_down_calls;
    bool ts;
} probe;

static int probe_begin(void *ctx, lmp_calib_block *b)
{
    (void)b;
    ((probe *)ctx)->begins++;
    return 0;
}

static int probe_linear(void *ctx, lmp_calib_block *b, lmp_linear w)
{
    probe *p = ctx;
    const int cls = lmp_linear_input(w);
    if (p->calls < 64) {
        p->pass_of[p->calls] = b->pass;
        p->which[p->calls] = (int)w;
    }
    p->calls++;
    for (int k = 0; k < LMP_IN_COUNT; k++) /* true-sequential: its pass's class only; else all */
        p->bad += (b->st.xsq[k] != NULL) != (p->ts ? k == cls : true);
    if (b->layer == 0 && w == LMP_LIN_Q && !p->xsq0) {
        p->xsq0 = malloc(sizeof(double) * (size_t)p->d);
        memcpy(p->xsq0, b->st.xsq[cls], sizeof(double) * (size_t)p->d);
    }
    if (b->layer == 0 && w == LMP_LIN_DOWN)
        b->install_w[w] = &p->zw;
    return 0;
}

static int probe_rerun(void *ctx, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)X;
    (void)n;
    (void)in;
    probe *p = ctx;
    if (layer == 0 && which == LMP_LIN_DOWN)
        p->rerun_down_calls++;
    return 0;
}

static int probe_end(void *ctx, lmp_calib_block *b)
{
    (void)b;
    ((probe *)ctx)->ends++;
    return 0;
}

static const lmp_calib_method g_probe_row = {
    .name = "probe",
    .stats = LMP_STAT_XSQ,
    .begin = probe_begin,
    .linear = probe_linear,
    .rerun_hook = probe_rerun,
    .end = probe_end,
};

/* independent: the block runner's hook on the embedded windows */
typedef struct {
    double *q;
} ind_ctx;
static int ind_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    if (which != LMP_LIN_Q)
        return 0;
    double *q = ((ind_ctx *)user)->q;
    for (int64_t t = 0; t < n; t++)
        for (int64_t j = 0; j < in; j++)
            q[j] += (double)X[t * in + j] * X[t * in + j];
    return 1; /* stop */
}

static void test_contract(lmp_model *m, const lmp_calib_data *cal)
{
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    lmp_wmat saved[LMP_LIN_COUNT];
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        saved[w] = *lmp_model_linear(m, 0, (lmp_linear)w);
    const lmp_wmat *down = &saved[LMP_LIN_DOWN];
    for (int ts = 0; ts < 2; ts++) {
        probe p;
        memset(&p, 0, sizeof p);
        p.d = c->hidden_size;
        p.ts = ts;
        p.zero_down = calloc((size_t)(down->rows * down->cols), sizeof(float));
        p.zw = (lmp_wmat){LMP_DT_F32, down->rows, down->cols, p.zero_down, (size_t)down->cols * 4, NULL, LMP_WL_ROWS};
        lmp_calib_opts o = {.true_sequential = ts};
        CHECK(lmp_calib_run(m, cal, &g_probe_row, &p, &o) == 0, "probe run: %s", lmp_errmsg());
        CHECK(p.calls == nl * LMP_LIN_COUNT && p.begins == nl && p.ends == nl, "ts %d: %d calls, %d begins, %d ends",
              ts, p.calls, p.begins, p.ends);
        static const int pass_ts[LMP_LIN_COUNT] = {0, 0, 0, 1, 2, 2, 3};
        bool order = true;
        for (int i = 0; i < LMP_LIN_COUNT; i++)
            order &= p.which[i] == i && p.pass_of[i] == (ts ? pass_ts[i] : 0);
        CHECK(order, "ts %d: linears or passes out of order", ts);
        CHECK(p.bad == 0, "ts %d: a linear without its statistics", ts);
        CHECK(p.rerun_down_calls == cal->n_samples, "ts %d: re-run saw down_proj %d times", ts, p.rerun_down_calls);
        /* the statistics against an independent sum over the embedded windows */
        const int L = cal->seq_len;
        float *x = malloc(sizeof(float) * (size_t)(L * p.d));
        double *q = calloc((size_t)p.d, sizeof(double));
        ind_ctx ic = {q};
        for (int s = 0; s < cal->n_samples; s++) {
            lmp_model_embed(m, cal->tokens + (int64_t)s * L, L, x);
            lmp_block_run(m, 0, x, L, 0, NULL, ind_hook, &ic);
        }
        CHECK(p.xsq0 && memcmp(p.xsq0, q, sizeof(double) * (size_t)p.d) == 0, "ts %d: sums of squares differ", ts);
        bool restored = true;
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            restored &= lmp_model_linear(m, 0, (lmp_linear)w)->data == saved[w].data;
        CHECK(restored, "ts %d: weights not restored", ts);
        free(x);
        free(q);
        free(p.xsq0);
        free(p.zero_down);
    }
}

/* ---------------------------------------------------------------- same bits ------- */

typedef struct {
    int n;
    uint64_t h;   /* FNV-1a over every quantized tensor's payload */
} qhash;

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

static int q_sink(void *ctx, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st)
{
    (void)layer;
    qhash *r = ctx;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        const lmp_intgroup *ig = &q[k].ig;
        r->h = fnv(r->h, ig->codes, (size_t)(q[k].rows * ig->row_bytes));
        r->h = fnv(r->h, ig->scales, (size_t)(q[k].rows * ig->n_groups) * sizeof(float));
        r->h = fnv(r->h, &st[k].err, sizeof st[k].err);
        r->n++;
    }
    return 0;
}

static int p_sink(void *ctx, int layer, const float *const *W, const uint8_t *const *mask, const lmp_qtensor *q,
                  const lmp_prune_linear_stats *st)
{
    (void)layer;
    (void)q;
    qhash *r = ctx;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        r->h = fnv(r->h, W[k], (size_t)(st[k].rows * st[k].cols) * sizeof(float));
        r->h = fnv(r->h, mask[k], (size_t)(st[k].rows * st[k].cols));
        r->h = fnv(r->h, &st[k].err, sizeof st[k].err);
        r->n++;
    }
    return 0;
}

static uint64_t gptq_hash(lmp_model *m, const lmp_calib_data *cal, bool bos)
{
    lmp_qpipe_params pp;
    lmp_qpipe_default_params(&pp);
    pp.progress = false;
    pp.compare_rtn = false;
    pp.calib_bos = bos;
    qhash r = {0, 1469598103934665603ull};
    pp.sink = q_sink;
    pp.sink_ctx = &r;
    lmp_qpipe_result res;
    int rc = lmp_qpipe_run(m, cal, &pp, &res);
    CHECK(rc == 0 && r.n == lmp_model_config(m)->n_layers * LMP_LIN_COUNT, "gptq: %s", lmp_errmsg());
    lmp_qpipe_result_free(&res);
    return r.h;
}

static uint64_t wanda_hash(lmp_model *m, const lmp_calib_data *cal, bool bos)
{
    lmp_prune_params pp;
    lmp_prune_default_params(&pp);
    pp.progress = false;
    pp.calib_bos = bos;
    qhash r = {0, 1469598103934665603ull};
    pp.sink = p_sink;
    pp.sink_ctx = &r;
    lmp_prune_result res;
    int rc = lmp_prune_run(m, cal, &pp, &res);
    CHECK(rc == 0 && r.n == lmp_model_config(m)->n_layers * LMP_LIN_COUNT, "wanda: %s", lmp_errmsg());
    lmp_prune_result_free(&res);
    return r.h;
}

static uint64_t layers_hash(lmp_model *m, const lmp_calib_data *cal)
{
    lmp_struct_plan pl;
    int rc = lmp_struct_plan_make(m, cal, LMP_STRUCT_LAYERS, 0.34, &pl);
    CHECK(rc == 0, "layers: %s", lmp_errmsg());
    uint64_t h = rc ? 0 : fnv(1469598103934665603ull, pl.score, sizeof(double) * (size_t)pl.in.n_layers);
    lmp_struct_plan_free(&pl);
    return h;
}

int main(void)
{
    const char *model = fixture("models/gutenberg-5M");
    const char *text = fixture("text/wikitext2-test.gptq-join.txt");
    if (!model || !text) {
        SKIP("fixtures models/gutenberg-5M and text/wikitext2-test.gptq-join.txt not found (LMP_FIXTURES)");
        return test_finish();
    }
    lmp_model *m;
    if (lmp_model_load(&m, model)) {
        CHECK(0, "load %s: %s", model, lmp_errmsg());
        return test_finish();
    }
    char *txt = NULL;
    size_t len = 0;
    CHECK(lmp_calib_read_text(text, CAL_OFF + CAL_LEN, &txt, &len) == 0 && len == CAL_OFF + CAL_LEN, "%s",
          lmp_errmsg());
    lmp_calib_params cp;
    lmp_calib_default_params(&cp);
    cp.n_samples = 4;
    cp.seq_len = 32;
    lmp_calib_data cal;
    CHECK(lmp_calib_from_text(m, txt + CAL_OFF, CAL_LEN, "wikitext2", &cp, &cal) == 0, "%s", lmp_errmsg());

    test_contract(m, &cal);

    /* spilled activations: the same bits */
    unsetenv("LMP_CALIB_SPILL");
    uint64_t g_mem = gptq_hash(m, &cal, false), w_mem = wanda_hash(m, &cal, false), l_mem = layers_hash(m, &cal);
    setenv("LMP_CALIB_SPILL", "0", 1);
    uint64_t g_sp = gptq_hash(m, &cal, false), w_sp = wanda_hash(m, &cal, false), l_sp = layers_hash(m, &cal);
    unsetenv("LMP_CALIB_SPILL");
    CHECK(g_mem == g_sp, "gptq: spilled activations change the result");
    CHECK(w_mem == w_sp, "wanda: spilled activations change the result");
    CHECK(l_mem == l_sp, "layer scores: spilled activations change the result");

    /* calib_bos == the windows with BOS in front */
    const int bos = lmp_model_bos(m);
    CHECK(bos >= 0, "gutenberg-5M has a BOS");
    lmp_calib_data cb = cal;
    cb.tokens = malloc(sizeof(int32_t) * (size_t)cal.n_samples * cal.seq_len);
    memcpy(cb.tokens, cal.tokens, sizeof(int32_t) * (size_t)cal.n_samples * cal.seq_len);
    bool changed = false;
    for (int s = 0; s < cal.n_samples; s++) {
        changed |= cb.tokens[(int64_t)s * cal.seq_len] != bos;
        cb.tokens[(int64_t)s * cal.seq_len] = bos;
    }
    CHECK(changed, "no window changed by BOS");
    uint64_t g_bos = gptq_hash(m, &cal, true), g_manual = gptq_hash(m, &cb, false);
    CHECK(g_bos == g_manual, "gptq: calib_bos differs from BOS in the windows");
    CHECK(g_bos != g_mem, "gptq: calib_bos changed nothing");
    uint64_t w_bos = wanda_hash(m, &cal, true), w_manual = wanda_hash(m, &cb, false);
    CHECK(w_bos == w_manual && w_bos != w_mem, "wanda: calib_bos is not BOS in the windows");
    free(cb.tokens);

    /* NaN in layer 1's gate_proj: pruning refuses it, naming the tensor */
    {
        const lmp_wmat *g = lmp_model_linear(m, 1, LMP_LIN_GATE);
        lmp_wmat orig = *g;
        float *bad = malloc((size_t)(g->rows * g->cols) * sizeof(float));
        lmp_dtype_info(g->dtype)->to_f32(g->data, bad, g->rows * g->cols);
        bad[5] = INFINITY;
        lmp_wmat bw = {LMP_DT_F32, g->rows, g->cols, bad, (size_t)g->cols * 4, NULL, LMP_WL_ROWS};
        CHECK(lmp_model_set_linear(m, 1, LMP_LIN_GATE, &bw) == 0, "%s", lmp_errmsg());
        lmp_prune_params pp;
        lmp_prune_default_params(&pp);
        pp.progress = false;
        lmp_prune_result res;
        CHECK(lmp_prune_run(m, &cal, &pp, &res) == LMP_ERANGE, "Inf weight accepted by pruning");
        CHECK(strstr(lmp_errmsg(), "model.layers.1.mlp.gate_proj.weight"), "message: %s", lmp_errmsg());
        lmp_prune_result_free(&res);
        lmp_model_set_linear(m, 1, LMP_LIN_GATE, &orig);
        free(bad);
    }
    lmp_calib_free(&cal);
    free(txt);
    lmp_model_free(m);
    return test_finish();
}
