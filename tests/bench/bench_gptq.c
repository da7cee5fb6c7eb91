/*
 * GPTQ per-layer phase times: the work of lmp_qpipe_run (true-sequential GPTQ, 4-bit
 * g128 act-order, the quantize defaults) on one decoder block, split into
 *   forward  the block passes (4 partial passes that stop at the linear they need, one
 *            full pass with the quantized block that makes the next block's inputs),
 *   stats    the Hessian updates (lmp_gptq_hessian_add on every window),
 *   solve    lmp_quant_gptq of the 7 linears,
 *   measure  the driver's error report per linear (tr(D H D^T) for GPTQ and RTN),
 *   install  lmp_model_set_linear_q.
 * The sequence of calls is the driver's (pipeline.c); only the clocks are added. Tokens
 * are random ids (the arithmetic does not depend on them).
 * -x: the depth to extrapolate the per-layer time to (default the model's; 22 for a
 * TinyLlama cut to fewer layers).
 * Usage: bench_gptq MODEL [-n WINDOWS 32] [-l SEQLEN 512] [-L LAYER 0] [-t THREADS] [-x LAYERS]
 */
#include "lib/quant/intquant.h"
#include "lib/quant/pipeline.h"
#include "lib/quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* CPU seconds of the whole process (all threads): on a loaded machine wall time says
 * little, CPU time / threads is what the phase would take on idle cores */
static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
    double wall, cpu;
} clk;

static clk clk_now(void)
{
    return (clk){lmp_time_s(), cpu_s()};
}

static void clk_add(clk *acc, clk t0)
{
    clk t1 = clk_now();
    acc->wall += t1.wall - t0.wall;
    acc->cpu += t1.cpu - t0.cpu;
}

typedef struct {
    double *H[LMP_IN_COUNT];
    int64_t ns[LMP_IN_COUNT];
    lmp_linear stop_at;
    clk stats;
} hctx;

static int hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    hctx *h = user;
    int cls = lmp_linear_input(which);
    if (which == lmp_input_first(cls) && h->H[cls]) {
        clk t = clk_now();
        int rc = lmp_gptq_hessian_add(h->H[cls], in, X, n, &h->ns[cls]);
        clk_add(&h->stats, t);
        if (rc)
            return rc;
    }
    return which == h->stop_at ? LMP_PASS_DONE : 0;
}

static void row(const char *name, clk c, int T, const char *note)
{
    printf("  %-8s %8.2fs wall %8.2fs cpu/%d%s\n", name, c.wall, c.cpu / T, T, note);
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int N = 32, L = 512, layer = 0, T = 0, X = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
            N = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-l") == 0)
            L = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-L") == 0)
            layer = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-t") == 0)
            T = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-x") == 0)
            X = atoi(argv[++i]);
        else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: bench_gptq MODEL [-n WINDOWS 32] [-l SEQLEN 512] [-L LAYER 0] [-t THREADS] [-x LAYERS]\n");
        return 2;
    }
    lmp_set_num_threads(T);
    lmp_model *m;
    if (lmp_model_load(&m, path)) {
        fprintf(stderr, "bench_gptq: %s\n", lmp_errmsg());
        return 1;
    }
    const lmp_config *c = lmp_model_config(m);
    const int64_t d = c->hidden_size;
    if (layer < 0 || layer >= c->n_layers) {
        fprintf(stderr, "bench_gptq: layer %d of %d\n", layer, c->n_layers);
        return 2;
    }
    int nv = lmp_model_n_vocab(m);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)N * (size_t)L);
    float *states = malloc(sizeof(float) * (size_t)N * (size_t)L * (size_t)d);
    float *scratch = malloc(sizeof(float) * (size_t)L * (size_t)d);
    if (!tok || !states || !scratch) {
        fprintf(stderr, "bench_gptq: out of memory\n");
        return 1;
    }
    lmp_rng r;
    lmp_rng_seed(&r, 1);
    for (int64_t i = 0; i < (int64_t)N * L; i++)
        tok[i] = (int32_t)(lmp_rng_next(&r) % (uint64_t)nv);
    int rc = 0;
    for (int s = 0; s < N && !rc; s++)
        rc = lmp_model_embed(m, tok + (int64_t)s * L, L, states + (int64_t)s * L * d);
    /* blocks before `layer` run once, untimed, so that the block sees realistic inputs */
    for (int l = 0; l < layer && !rc; l++)
        for (int s = 0; s < N && !rc; s++)
            rc = lmp_block_run(m, l, states + (int64_t)s * L * d, L, 0, NULL, NULL, NULL);
    if (rc) {
        fprintf(stderr, "bench_gptq: %s\n", lmp_errmsg());
        return 1;
    }

    lmp_qpipe_params p;
    lmp_qpipe_default_params(&p);
    lmp_gptq_params gp;
    lmp_gptq_default_params(&gp);
    gp.bits = p.bits;
    gp.group_size = p.group_size;
    gp.sym = p.sym;
    gp.act_order = p.act_order;
    gp.percdamp = p.damp;
    gp.blocksize = p.blocksize;
    lmp_rtn_params rp;
    lmp_rtn_default_params(&rp);
    rp.bits = p.bits;
    rp.group_size = p.group_size;
    rp.sym = p.sym;

    lmp_wmat orig[LMP_LIN_COUNT];
    lmp_qtensor qt[LMP_LIN_COUNT];
    memset(qt, 0, sizeof qt);
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        orig[w] = *lmp_model_linear(m, layer, (lmp_linear)w);
    int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1];
    const int ng = lmp_input_groups(true, groups);
    clk fwd = {0}, stats = {0}, solve = {0}, meas = {0}, inst = {0}, last = {0}, layer_t = {0};
    const clk t_layer = clk_now();
    for (int g = 0; g < ng; g++) {
        hctx h;
        memset(&h, 0, sizeof h);
        int lastc = -1;
        for (int k = 0; groups[g][k] >= 0; k++) {
            int cls = groups[g][k];
            int64_t cols = orig[lmp_input_first(cls)].cols;
            h.H[cls] = calloc((size_t)(cols * cols), sizeof(double));
            lastc = cls;
        }
        h.stop_at = lmp_input_first(lastc);
        uint64_t done = 0;
        clk t = clk_now();
        if ((rc = lmp_calib_block_pass(m, layer, states, N, L, scratch, hook, &h, NULL, &done)))
            goto fail;
        clk_add(&fwd, t);
        fwd.wall -= h.stats.wall;
        fwd.cpu -= h.stats.cpu;
        stats.wall += h.stats.wall;
        stats.cpu += h.stats.cpu;
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            int cls = lmp_linear_input((lmp_linear)w);
            if (!h.H[cls])
                continue;
            const lmp_wmat *wm = &orig[w];
            float *W = malloc(sizeof(float) * (size_t)(wm->rows * wm->cols));
            float *Q = malloc(sizeof(float) * (size_t)(wm->rows * wm->cols));
            for (int64_t i = 0; i < wm->rows; i++)
                lmp_wmat_row_f32(wm, i, W + i * wm->cols);
            clk s1 = {0};
            t = clk_now();
            double loss;
            if ((rc = lmp_quant_gptq(W, wm->rows, wm->cols, h.H[cls], &gp, &qt[w], &loss)))
                goto fail;
            clk_add(&s1, t);
            solve.wall += s1.wall;
            solve.cpu += s1.cpu;
            t = clk_now();
            lmp_qtensor rq;
            lmp_qtensor_dequant(&qt[w], Q);
            double e = lmp_qpipe_rel_error(W, Q, h.H[cls], wm->rows, wm->cols);
            if ((rc = lmp_quant_rtn(W, wm->rows, wm->cols, &rp, &rq)))
                goto fail;
            lmp_qtensor_dequant(&rq, Q);
            double er = lmp_qpipe_rel_error(W, Q, h.H[cls], wm->rows, wm->cols);
            lmp_qtensor_free(&rq);
            clk_add(&meas, t);
            printf("  %-5s [%5lld x %5lld]  solve %6.2fs wall %6.2fs cpu  loss %.6g  rel err %.6f (rtn %.6f)\n",
                   lmp_linear_name((lmp_linear)w), (long long)wm->rows, (long long)wm->cols, s1.wall, s1.cpu,
                   loss, e, er);
            free(W);
            free(Q);
            t = clk_now();
            if ((rc = lmp_model_set_linear_q(m, layer, (lmp_linear)w, &qt[w])))
                goto fail;
            clk_add(&inst, t);
        }
        for (int k = 0; k < LMP_IN_COUNT; k++)
            free(h.H[k]);
    }
    /* the last pass on one reused scratch (lmp_block_run_buf), first filled with NaN bytes:
     * window 0 must come out as lmp_block_run's own allocation gives it */
    const size_t nsc = lmp_block_scratch_floats(m, L, 0);
    float *sc = malloc(sizeof(float) * nsc), *w0 = malloc(sizeof(float) * (size_t)L * (size_t)d);
    if (!sc || !w0) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    memset(sc, 0xff, sizeof(float) * nsc);
    memcpy(w0, states, sizeof(float) * (size_t)L * (size_t)d);
    if ((rc = lmp_block_run(m, layer, w0, L, 0, NULL, NULL, NULL)))
        goto fail;
    clk t = clk_now();
    for (int s = 0; s < N; s++)
        if ((rc = lmp_block_run_buf(m, layer, states + (int64_t)s * L * d, L, 0, NULL, NULL, NULL, sc)))
            goto fail;
    clk_add(&last, t);
    if (memcmp(w0, states, sizeof(float) * (size_t)L * (size_t)d) != 0) {
        fprintf(stderr, "bench_gptq: lmp_block_run_buf on a reused scratch differs from lmp_block_run\n");
        return 1;
    }
    free(sc);
    free(w0);
    fwd.wall += last.wall;
    fwd.cpu += last.cpu;
    clk_add(&layer_t, t_layer);
    T = lmp_num_threads();
    /* a digest of the next block's inputs: the same bits for any thread count */
    uint64_t hsh = 1469598103934665603ull;
    const unsigned char *sb = (const unsigned char *)states;
    for (size_t i = 0; i < sizeof(float) * (size_t)N * (size_t)L * (size_t)d; i++)
        hsh = (hsh ^ sb[i]) * 1099511628211ull;
    printf("bench_gptq: layer %d of %s, %d x %d tokens, %d threads, output digest %016llx\n", layer, path, N, L,
           T, (unsigned long long)hsh);
    char note[96];
    snprintf(note, sizeof note, "  (full pass with the quantized block %.2fs wall)", last.wall);
    row("forward", fwd, T, note);
    row("stats", stats, T, "");
    row("solve", solve, T, "");
    row("measure", meas, T, "");
    row("install", inst, T, "");
    if (X <= 0)
        X = c->n_layers;
    snprintf(note, sizeof note, "  (x %d layers: %.1f min wall, %.1f min cpu/%d)", X, layer_t.wall * X / 60.0,
             layer_t.cpu / T * X / 60.0, T);
    row("layer", layer_t, T, note);
    lmp_model_free(m);
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        lmp_qtensor_free(&qt[w]);
    free(tok);
    free(states);
    free(scratch);
    return 0;
fail:
    fprintf(stderr, "bench_gptq: %s\n", lmp_errmsg());
    return 1;
}
