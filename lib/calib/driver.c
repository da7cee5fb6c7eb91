/*
 * The layer-wise calibration driver (calib.h): the one walk over the model that every
 * calibrated method runs on. The methods are rows of hooks (lmp_calib_method) in
 * lib/quant/pipeline.c (GPTQ, RTN), lib/quant/awq.c, lib/quant/imatrix.c,
 * lib/prune/run.c (magnitude, Wanda, SparseGPT) and lib/prune/structured.c.
 *
 * Not here: the token windows (windows.c), the methods' arithmetic.
 */
#include "calib.h"
#include "dist_stats.h" /* calmpi: data-parallel calibration (calib_dist.h) */

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------- helpers --------- */

const char *lmp_linear_hf_prefix(int layer, lmp_linear which, char *buf, size_t n)
{
    bool attn = which <= LMP_LIN_O;
    snprintf(buf, n, "model.layers.%d.%s.%s", layer, attn ? "self_attn" : "mlp", lmp_linear_name(which));
    return buf;
}

uint64_t lmp_calib_act_bytes(const lmp_model *m, const lmp_calib_data *cal)
{
    if (!cal)
        return 0;
    return (uint64_t)cal->n_samples * (uint64_t)cal->seq_len * (uint64_t)lmp_model_config(m)->hidden_size *
           sizeof(float);
}

int lmp_calib_weight_f32(const lmp_wmat *w, const char *name, float **out)
{
    *out = NULL;
    float *W = lmp_malloc_big((size_t)(w->rows * w->cols) * sizeof(float));
    if (!W)
        return lmp_err(LMP_ENOMEM, "out of memory converting %s.weight to f32", name);
    for (int64_t r = 0; r < w->rows; r++) /* dense, block or intgroup rows */
        lmp_wmat_row_f32(w, r, W + r * w->cols);
    for (int64_t i = 0; i < w->rows * w->cols; i++)
        if (!isfinite(W[i])) {
            int rc = lmp_err(LMP_ERANGE, "%s.weight: non-finite value %g at [%lld, %lld]; refusing to compress it",
                             name, (double)W[i], (long long)(i / w->cols), (long long)(i % w->cols));
            free(W);
            return rc;
        }
    *out = W;
    return LMP_OK;
}

int lmp_calib_block_pass(const lmp_model *m, int layer, const float *states, int n, int L, float *scratch,
                         lmp_linear_hook hook, void *user, lmp_progress *pg, uint64_t *done)
{
    const int64_t d = lmp_model_config(m)->hidden_size;
    for (int s = 0; s < n; s++) {
        memcpy(scratch, states + (int64_t)s * L * d, (size_t)L * (size_t)d * sizeof(float));
        int rc = lmp_block_run(m, layer, scratch, L, 0, NULL, hook, user);
        if (rc != 0 && rc != LMP_PASS_DONE)
            return rc;
        ++*done;
        if (pg)
            lmp_progress_update(pg, *done);
    }
    return LMP_OK;
}

void lmp_calib_tick(lmp_calib_block *b)
{
    ++b->done;
    if (b->pg)
        lmp_progress_update(b->pg, b->done);
}

/* Drops the resident pages of [p, p + n) when that range lies in a tensor the model's
 * checkpoint maps from its file (read-only, private: a later access reads the file
 * again), so that RSS does not grow by every block's weights as the run goes through the
 * model. Memory that is not file-mapped (weights installed by a caller) is left alone. */
static void release_mapped(const lmp_model *m, const void *p, size_t n)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    const uint8_t *a = p;
    for (int i = 0; c && a && i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        const uint8_t *b = t->data;
        if (!t->owned && b && a >= b && a + n <= b + t->nbytes) {
            lmp_mmap_release(p, n);
            return;
        }
    }
}

/* The same for every file-mapped tensor of the checkpoint. */
static void release_all_mapped(const lmp_model *m)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    for (int i = 0; c && i < c->n_tensors; i++)
        if (!c->tensors[i].owned && c->tensors[i].data)
            lmp_mmap_release(c->tensors[i].data, c->tensors[i].nbytes);
}

int64_t lmp_calib_class_width(const lmp_config *c, int cls)
{
    switch (cls) {
    case LMP_IN_ATTN: case LMP_IN_MLP: return c->hidden_size;
    case LMP_IN_O: return (int64_t)c->n_heads * c->head_dim;
    default: return c->intermediate_size;
    }
}

/* ---------------------------------------------------------------- hidden states --- */

/* The windows' hidden states between blocks: a window store (store.c; awqdist moved it
 * there so that AWQ's captured inputs are held the same way). */
typedef lmp_calib_store act_store;
static int store_open(act_store *st, uint64_t bytes, int64_t win, bool allow_spill, uint64_t held, const char *what)
{
    return lmp_calib_store_open(st, bytes, win, allow_spill, held, what);
}
static void store_close(act_store *st) { lmp_calib_store_close(st); }
static int store_get_n(act_store *st, int s, float *dst, int64_t count)
{
    return lmp_calib_store_get_n(st, s, dst, count);
}
static int store_put_n(act_store *st, int s, const float *src, int64_t count)
{
    return lmp_calib_store_put_n(st, s, src, count);
}
static int store_get(act_store *st, int s, float *dst) { return lmp_calib_store_get(st, s, dst); }
static int store_put(act_store *st, int s, const float *src) { return lmp_calib_store_put(st, s, src); }

/* ---------------------------------------------------------------- statistics ------ */

typedef struct {
    const lmp_calib_method *row;
    lmp_calib_stats *st;     /* one set, or [n_layers] when streaming */
    bool per_layer;
    lmp_linear stop_at;      /* LMP_PASS_DONE after this linear's input; LMP_LIN_COUNT: never */
    int n_experts;
    int64_t e_hidden, e_ff;
    double seconds;          /* time inside the hook */
    bool bf16;               /* lmp_calib_opts.bf16: the row's hessian_add_bf16 where it has one */
} stat_ctx;

/* A row's re-run hook, timed. */
typedef struct {
    lmp_linear_hook hook;
    void *user;
    double seconds;
} timed_hook;

static int timed_call(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    timed_hook *t = user;
    double t0 = lmp_time_s();
    int rc = t->hook(t->user, layer, which, X, n, in);
    t->seconds += lmp_time_s() - t0;
    return rc;
}

static void xsq_add(double *q, const float *X, int64_t n, int64_t in)
{
    for (int64_t t = 0; t < n; t++) { /* every token, in double, in token order */
        const float *x = X + t * in;
        for (int64_t j = 0; j < in; j++)
            q[j] += (double)x[j] * x[j];
    }
}

static int stat_hook_body(stat_ctx *h, int layer, lmp_linear which, const float *X, int64_t n, int64_t in);

static int stat_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    stat_ctx *h = user;
    double t0 = lmp_time_s();
    int rc = stat_hook_body(h, layer, which, X, n, in);
    h->seconds += lmp_time_s() - t0;
    return rc;
}

static int stat_hook_body(stat_ctx *h, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    lmp_calib_stats *st = h->per_layer ? &h->st[layer] : h->st;
    const int ex = lmp_hook_expert();
    if (ex >= 0) { /* an expert's routed tokens only */
        int rc = lmp_calib_expert_add(st, h->row, ex, which, X, n, in); /* experts.c (moecal) */
        if (rc || !st->exsq)
            return rc;
        const bool gate = which == LMP_LIN_GATE;
        if (in != (gate ? h->e_hidden : h->e_ff))
            return lmp_err(LMP_EINVAL, "calibration: layer %d expert %d: %lld inputs", layer, ex, (long long)in);
        double *a = st->exsq + (gate ? (int64_t)ex * h->e_hidden
                                     : (int64_t)h->n_experts * h->e_hidden + (int64_t)ex * h->e_ff);
        xsq_add(a, X, n, in);
        if (gate)
            st->ecount[ex] += n;
        return 0;
    }
    const int cls = lmp_linear_input(which);
    if (which == lmp_input_first(cls)) {
        if (st->H[cls]) {
            int rc = h->bf16 && h->row->hessian_add_bf16 ? h->row->hessian_add_bf16(st->H[cls], in, X, n, &st->ns[cls])
                                                          : h->row->hessian_add(st->H[cls], in, X, n, &st->ns[cls]);
            if (rc)
                return rc;
        }
        if (st->xsq[cls])
            xsq_add(st->xsq[cls], X, n, in);
    }
    return which == h->stop_at ? LMP_PASS_DONE : 0;
}

static void stats_free(lmp_calib_stats *st)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        free(st->H[k]);
        free(st->xsq[k]);
    }
    free(st->exsq);
    free(st->ecount);
    lmp_calib_expert_free(st);
    memset(st, 0, sizeof *st);
}

/* Allocates the row's statistics for the classes of one pass (group: -1 terminated). */
static int stats_alloc(lmp_calib_stats *st, const lmp_calib_method *row, const lmp_calib_block *b, const int *group)
{
    memset(st, 0, sizeof *st);
    for (int k = 0; group[k] >= 0; k++) {
        const int cls = group[k];
        if (row->classes && !(row->classes & (1u << cls)))
            continue;
        const int64_t cols = b->cols[cls];
        if ((row->stats & LMP_STAT_HESSIAN) && !(st->H[cls] = lmp_calloc_big((size_t)(cols * cols), sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory for a %lld x %lld Hessian", (long long)cols, (long long)cols);
        if ((row->stats & LMP_STAT_XSQ) && !(st->xsq[cls] = calloc((size_t)cols, sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory for the statistics of a %lld-column input", (long long)cols);
    }
    int rc = lmp_calib_expert_alloc(st, row, b->m, b->layer, group, row->classes); /* experts.c (moecal) */
    if (rc)
        return rc;
    if ((row->stats & LMP_STAT_EXPERTS) && b->n_experts > 0) {
        const size_t per = (size_t)b->n_experts * (size_t)(b->e_hidden + b->e_ff);
        st->exsq = calloc(per, sizeof(double));
        st->ecount = calloc((size_t)b->n_experts, sizeof(int64_t));
        if (!st->exsq || !st->ecount)
            return lmp_err(LMP_ENOMEM, "out of memory (statistics of the experts)");
    }
    return LMP_OK;
}

/* The last class of a pass the row gathers: the pass stops after its first linear. */
static lmp_linear pass_stop(const lmp_calib_method *row, const int *group)
{
    int last = -1;
    for (int k = 0; group[k] >= 0; k++)
        if (!row->classes || (row->classes & (1u << group[k])))
            last = group[k];
    return last < 0 ? LMP_LIN_COUNT : lmp_input_first(last);
}

/* ---------------------------------------------------------------- the walk -------- */

static void block_setup(lmp_calib_block *b, lmp_model *m, int layer)
{
    const lmp_config *c = lmp_model_config(m);
    b->layer = layer;
    for (int w = 0; w < LMP_LIN_COUNT; w++) {
        /* an expert layer has no dense gate/up/down (its experts are routed: the rows
         * that handle them read lmp_model_expert_linear) */
        const lmp_wmat *wm = lmp_model_linear(m, layer, (lmp_linear)w);
        if (wm)
            b->orig[w] = *wm;
        else
            memset(&b->orig[w], 0, sizeof b->orig[w]);
        b->install_q[w] = NULL;
        b->install_w[w] = NULL;
    }
    for (int k = 0; k < LMP_IN_COUNT; k++)
        b->cols[k] = lmp_calib_class_width(c, k);
    b->pass = 0;
    b->t0 = lmp_time_s();
}

/* Window-major walk of a row that installs nothing (LMP_CALIB_STREAM). */
static int run_stream(lmp_model *m, const lmp_calib_data *cal, const lmp_calib_method *row, void *ctx,
                      const lmp_calib_opts *o, lmp_calib_block *b)
{
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers, L = cal->seq_len;
    const int64_t d = c->hidden_size;
    int rc = LMP_OK;
    int all[LMP_IN_COUNT + 1] = {0, 1, 2, 3, -1};
    lmp_calib_stats *st = calloc((size_t)nl, sizeof *st);
    float *x = malloc(sizeof(float) * (size_t)(L * d));
    float *bscr = malloc(sizeof(float) * lmp_block_scratch_floats(m, L, 0));
    if (!st || !x || !bscr) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (calibration statistics)");
        goto done;
    }
    for (int l = 0; l < nl && !rc; l++) {
        block_setup(b, m, l);
        rc = stats_alloc(&st[l], row, b, all);
    }
    if (rc)
        goto done;
    stat_ctx sc = {row, st, true, LMP_LIN_COUNT, b->n_experts, b->e_hidden, b->e_ff, 0, o->bf16};
    /* calmpi: this rank's windows, statistics per window group */
    lmp_calib_dist ds;
    lmp_calib_dist_open(&ds, row, cal->n_samples);
    if ((rc = lmp_calib_dist_report_share(&ds, (uint64_t)L * (uint64_t)d * sizeof(float))) ||
        (rc = lmp_calib_dist_pass_begin(&ds, st, nl, b)))
        goto done_dist;
    lmp_progress pg;
    lmp_progress_begin(&pg, row->name, (uint64_t)(ds.hi - ds.lo));
    pg.unit = "windows";
    if (!o->progress)
        pg.enabled = false;
    const int bos = o->calib_bos ? lmp_model_bos(m) : -1;
    for (int s = ds.lo; s < ds.hi && !rc; s++) {
        const int32_t *tok = cal->tokens + (int64_t)s * L;
        rc = lmp_calib_dist_window(&ds, s, &sc.st); /* calmpi */
        if (!rc)
            rc = lmp_model_embed(m, tok, L, x);
        if (!rc && bos >= 0 && tok[0] != bos)
            rc = lmp_model_embed(m, &(int32_t){bos}, 1, x);
        for (int l = 0; l < nl && !rc; l++)
            rc = lmp_block_run_buf(m, l, x, L, 0, NULL, stat_hook, &sc, bscr);
        lmp_progress_update(&pg, (uint64_t)(s - ds.lo) + 1);
    }
    lmp_progress_end(&pg);
    if (!rc)
        rc = lmp_calib_dist_pass_end(&ds); /* calmpi: the groups combined, every rank the same totals */
    lmp_calib_dist_report_bytes(&ds, nl);
done_dist:
    lmp_calib_dist_close(&ds);
    for (int l = 0; l < nl && !rc; l++) {
        block_setup(b, m, l);
        for (int k = 0; k < LMP_IN_COUNT && row->hessian_finish; k++)
            if (st[l].H[k])
                row->hessian_finish(st[l].H[k], b->cols[k]);
        b->st = st[l];
        if (row->block)
            rc = row->block(ctx, b);
        if (!rc && row->end)
            rc = row->end(ctx, b);
        if (row->cleanup)
            row->cleanup(ctx, b);
        memset(&b->st, 0, sizeof b->st);
    }
done:
    for (int l = 0; st && l < nl; l++)
        stats_free(&st[l]);
    free(st);
    free(x);
    free(bscr);
    return rc;
}

/* The state of window s at stage boundary `stage` beyond x (lmp_block_stage_buf) between
 * the aux store and the block scratch. */
static int aux_io(act_store *aux, const lmp_model *m, float *bscr, int L, int stage, int s, bool put)
{
    int64_t w;
    float *p = lmp_block_stage_buf(m, bscr, L, stage, &w);
    if (!p)
        return LMP_OK;
    return put ? store_put_n(aux, s, p, (int64_t)L * w) : store_get_n(aux, s, p, (int64_t)L * w);
}

/* Installs linear w of block l for the walk: the row's result as it is, or (bf16
 * calibration) a bf16 copy of its values in *bfw (the caller frees it after restoring the
 * original): each row dequantized (lmp_wmat_row_f32, the values the intgroup kernels
 * multiply by) and rounded to nearest even bf16. */
static int install_linear(lmp_model *m, int l, lmp_linear w, const lmp_calib_block *b, bool bf16, uint16_t **bfw)
{
    lmp_wmat src;
    if (b->install_q[w]) {
        int rc = lmp_wmat_intgroup(&src, b->install_q[w]);
        if (rc)
            return rc;
    } else {
        src = *b->install_w[w];
    }
    if (!bf16)
        return b->install_q[w] ? lmp_model_set_linear_q(m, l, w, b->install_q[w]) : lmp_model_set_linear(m, l, w, &src);
    const int64_t rows = src.rows, cols = src.cols;
    free(*bfw);
    *bfw = lmp_malloc_big((size_t)(rows * cols) * sizeof(uint16_t));
    if (!*bfw)
        return lmp_err(LMP_ENOMEM, "out of memory for a bf16 copy of layer %d %s", l, lmp_linear_name(w));
    uint16_t *dst = *bfw;
    int fail = 0;
    #pragma omp parallel
    {
        float *row = malloc((size_t)cols * sizeof(float));
        if (!row) {
            #pragma omp atomic write
            fail = 1;
        }
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            if (!row)
                continue;
            lmp_wmat_row_f32(&src, r, row);
            lmp_f32_to_bf16_row(row, dst + r * cols, cols);
        }
        free(row);
    }
    if (fail)
        return lmp_err(LMP_ENOMEM, "out of memory for a bf16 copy of layer %d %s", l, lmp_linear_name(w));
    const lmp_wmat bw = {.dtype = LMP_DT_BF16, .rows = rows, .cols = cols, .data = dst,
                         .row_bytes = (size_t)cols * sizeof(uint16_t)};
    return lmp_model_set_linear(m, l, w, &bw);
}

int lmp_calib_run(lmp_model *m, const lmp_calib_data *cal, const lmp_calib_method *row, void *ctx,
                  const lmp_calib_opts *o)
{
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    const int64_t d = c->hidden_size;
    const int N = cal ? cal->n_samples : 0, L = cal ? cal->seq_len : 0;
    int rc = LMP_OK;
    lmp_calib_block b;
    memset(&b, 0, sizeof b);
    b.m = m;
    b.n_layers = nl;
    b.cal = cal;
    b.N = N;
    b.L = L;
    if (lmp_model_is_moe(m)) {
        b.n_experts = c->n_experts;
        b.e_hidden = d;
        b.e_ff = c->moe_ff;
    }
    if ((row->flags & LMP_CALIB_STREAM) && cal)
        return run_stream(m, cal, row, ctx, o, &b);

    /* Passes over a block's inputs: true-sequential gives one per input class (the
     * linears of the earlier ones already installed), otherwise one for all four. */
    const bool stats = cal && row->stats;
    int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1];
    const int n_groups = lmp_input_groups(stats && o->true_sequential, groups);
    /* Staged walk (true-sequential, dense blocks): the windows' state is carried from one
     * stage boundary to the next (x in act, the attention output / FFN activation in aux),
     * so each stage of the block runs once per window, after the linears before it are
     * installed; otherwise every pass starts from the block's input. Rows with a per-block
     * action or a per-window re-run callback see the unstaged walk, and so do rows whose
     * re-run hook keeps sums (pruning's error figures): those sums are gathered per window
     * group around the final re-run (calmpi), and the staged walk would call the hook
     * during the passes' advances instead. */
    const bool staged_ok = cal && n_groups > 1 && !row->block && !row->rerun_window && !row->rerun_sums;

    lmp_calib_times T = {0};
    double t_loops = 0, t_rwin = 0; /* window loops' wall, rerun_window's */
    timed_hook th = {row->rerun_hook, ctx, 0};
    lmp_linear_hook rhook = row->rerun_hook ? timed_call : NULL;
    bool installed[LMP_LIN_COUNT] = {0};
    uint16_t *bfw[LMP_LIN_COUNT] = {0}; /* bf16 calibration: the installed copies */
    /* bf16 calibration rounds X to bf16 in lmp_gemm: its exact mode (f32 activations) is
     * off for the run */
    const bool bf16 = o->bf16 && cal, exact0 = lmp_gemm_exact();
    if (bf16)
        lmp_gemm_set_exact(false);
    /* calmpi: this rank's windows [ds.lo, ds.hi) (all of them when not split); the act
     * store holds those only, window s at s - ds.lo */
    lmp_calib_dist ds;
    lmp_calib_dist_open(&ds, row, N);
    /* awqdist: expert models are split too (their Hessians are combined per group,
     * dist_stats.c); rows walking the windows themselves get this rank's windows */
    const bool self_walk = (row->flags & LMP_CALIB_SELF_WALK) != 0;
    const int n_own = ds.hi - ds.lo;
    act_store act = {NULL, -1, (int64_t)L * d}, aux = {NULL, -1, 0};
    b.store = &act; /* awqdist: the row's view of this rank's windows */
    b.w_lo = ds.lo;
    b.w_hi = ds.hi;
    b.G = ds.grouped ? ds.G : (N < LMP_CALIB_GROUPS ? N : LMP_CALIB_GROUPS);
    b.split = ds.grouped;
    float *win2 = NULL; /* spilled, with rerun_window: a window's input */
    float *bscr = NULL; /* the block runner's scratch, for L tokens */
    if (cal) {
        const uint64_t bytes = (uint64_t)n_own * (uint64_t)L * (uint64_t)d * sizeof(float); /* calmpi */
        if ((rc = store_open(&act, bytes, (int64_t)L * d, true, 0, "calibration activations")))
            goto done;
        uint64_t aux_bytes = 0;
        if (staged_ok) {
            const int64_t qd = (int64_t)c->n_heads * c->head_dim, ff = c->intermediate_size;
            const int64_t w = (int64_t)L * (qd > ff ? qd : ff);
            aux_bytes = (uint64_t)n_own * (uint64_t)w * sizeof(float); /* calmpi: this rank's windows */
            if ((rc = store_open(&aux, aux_bytes, w, true, act.mem ? bytes : 0,
                                 "calibration stage states (attention output, FFN activation)")))
                goto done;
        }
        if (act.mem || aux.mem)
            lmp_info("calibration memory: %d x %d tokens, hidden states %.1f MiB f32%s, stage states %.1f MiB%s",
                     N, L, bytes / 1048576.0, act.mem ? " in memory" : " spilled",
                     aux_bytes / 1048576.0, !staged_ok ? " (none)" : aux.mem ? " in memory" : " spilled");
        b.states = act.mem;
        b.scratch = malloc((size_t)L * d * sizeof(float));
        bscr = malloc(lmp_block_scratch_floats(m, L, 0) * sizeof(float));
        if (act.fd >= 0 && row->rerun_window)
            win2 = malloc((size_t)L * d * sizeof(float));
        if (!b.scratch || !bscr || (act.fd >= 0 && row->rerun_window && !win2)) {
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%d x %d x %lld f32 = %.1f MiB)",
                         N, L, (long long)d, bytes / 1048576.0);
            goto done;
        }
        const int bos = o->calib_bos ? lmp_model_bos(m) : -1;
        T.embed -= lmp_time_s();
        for (int s = ds.lo; s < ds.hi; s++) { /* calmpi: this rank's windows */
            const int32_t *tok = cal->tokens + (int64_t)s * L;
            float *x = act.mem ? act.mem + (int64_t)(s - ds.lo) * L * d : b.scratch;
            if ((rc = lmp_model_embed(m, tok, L, x)))
                goto done;
            if (bos >= 0 && tok[0] != bos && (rc = lmp_model_embed(m, &(int32_t){bos}, 1, x)))
                goto done;
            if ((rc = store_put(&act, s - ds.lo, x)))
                goto done;
        }
        release_all_mapped(m); /* the embedding rows just read */
        T.embed += lmp_time_s();
        if ((rc = lmp_calib_dist_report_share(&ds, bytes))) /* calmpi */
            goto done;
    }

    /* one bar for the whole model (layers x passes), so its ETA is the job's */
    uint64_t per_layer = cal ? (uint64_t)((stats ? n_groups : 0) + 1) * n_own : LMP_LIN_COUNT;
    if (row->steps) {
        block_setup(&b, m, 0);
        per_layer = row->steps(ctx, &b);
    }
    char label[64];
    snprintf(label, sizeof label, "%s layer 1/%d", row->name, nl);
    lmp_progress pg;
    lmp_progress_begin(&pg, label, per_layer * (uint64_t)nl);
    pg.unit = o->unit ? o->unit : cal ? "block passes" : "linears";
    if (!o->progress)
        pg.enabled = false;
    b.pg = &pg;
    stat_ctx sc = {row, &b.st, false, LMP_LIN_COUNT, b.n_experts, b.e_hidden, b.e_ff, 0, o->bf16};

    for (int l = 0; l < nl; l++) {
        block_setup(&b, m, l);
        snprintf(label, sizeof label, "%s layer %d/%d", row->name, l + 1, nl);
        b.done = (uint64_t)l * per_layer;
        /* a mixture-of-experts FFN is one stage (no boundary before down_proj) */
        const bool staged = staged_ok && lmp_model_n_experts(m, l) == 0;
        int at = LMP_STAGE_IN; /* the boundary the windows' state in act / aux is at */
        if (row->begin && (rc = row->begin(ctx, &b)))
            goto layer_end;
        for (int g = 0; g < n_groups; g++) {
            b.pass = g;
            int c1 = groups[g][0];
            for (int k = 0; groups[g][k] >= 0; k++)
                c1 = groups[g][k];
            /* staged: the state is first advanced to the group's first class (the linears
             * of the group before it run once, installed); the statistics then start there */
            const int c0 = staged ? groups[g][0] : LMP_STAGE_IN;
            if (stats) {
                if ((rc = stats_alloc(&b.st, row, &b, groups[g])))
                    goto layer_end;
                sc.stop_at = pass_stop(row, groups[g]);
                const bool gather = sc.stop_at != LMP_LIN_COUNT || !staged;
                t_loops -= lmp_time_s();
                /* calmpi: this rank's windows, each gathered into its window group's
                 * statistics, the groups combined after the pass */
                if ((rc = lmp_calib_dist_pass_begin(&ds, &b.st, 1, &b)))
                    goto layer_end;
                for (int s = ds.lo; s < ds.hi; s++) {
                    float *x = act.mem ? act.mem + (int64_t)(s - ds.lo) * L * d : b.scratch;
                    if ((rc = lmp_calib_dist_window(&ds, s, &sc.st)) ||
                        (!act.mem && (rc = store_get(&act, s - ds.lo, x))))
                        goto layer_end;
                    if (at < c0) { /* advance: [at, c0) on the installed linears */
                        if ((rc = aux_io(&aux, m, bscr, L, at, s - ds.lo, false)) ||
                            (rc = lmp_block_run_stages(m, l, x, L, at, c0, rhook, &th, bscr)))
                            goto layer_end;
                        /* x changes in the o_proj stage; the stage buffer is c0's */
                        if ((!act.mem && at <= LMP_STAGE_O && c0 > LMP_STAGE_O &&
                             (rc = store_put(&act, s - ds.lo, x))) ||
                            (rc = aux_io(&aux, m, bscr, L, c0, s - ds.lo, true)))
                            goto layer_end;
                    }
                    if (gather) {
                        if (staged && c1 == c0) {
                            /* stops at the class's first linear: x and the scratch's
                             * state are left as they are */
                            rc = lmp_block_run_stages(m, l, x, L, c0, c0 + 1, stat_hook, &sc, bscr);
                        } else { /* on a copy: the states stay as they are */
                            float *xc = b.scratch;
                            if (x != xc)
                                memcpy(xc, x, sizeof(float) * (size_t)(L * d));
                            rc = lmp_block_run_stages(m, l, xc, L, c0, LMP_STAGE_OUT, stat_hook, &sc, bscr);
                        }
                        if (rc != 0 && rc != LMP_PASS_DONE)
                            goto layer_end;
                        rc = LMP_OK;
                    }
                    lmp_calib_tick(&b);
                }
                at = c0;
                if ((rc = lmp_calib_dist_pass_end(&ds)))
                    goto layer_end;
                sc.st = &b.st;
                t_loops += lmp_time_s();
                T.stats -= lmp_time_s();
                for (int k = 0; k < LMP_IN_COUNT && row->hessian_finish; k++) {
                    if (b.st.H[k])
                        row->hessian_finish(b.st.H[k], b.cols[k]);
                    /* the routed experts' Hessians (experts.c), same row, same form */
                    for (int e = 0; b.st.eH[k] && e < b.st.e_n; e++)
                        if (b.st.eH[k][e])
                            row->hessian_finish(b.st.eH[k][e], k == LMP_IN_DOWN ? b.e_ff : b.e_hidden);
                }
                T.stats += lmp_time_s();
            }
            T.solve -= lmp_time_s();
            if (row->linear) {
                bool in_pass[LMP_LIN_COUNT] = {0};
                for (int w = 0; w < LMP_LIN_COUNT; w++) {
                    const int cls = lmp_linear_input((lmp_linear)w);
                    for (int k = 0; groups[g][k] >= 0; k++)
                        in_pass[w] |= groups[g][k] == cls;
                }
                /* calmpi: the pass's linears, split among ranks when the row can share them */
                if ((rc = lmp_calib_dist_solve(&ds, row, ctx, &b, in_pass)))
                    goto layer_end;
                for (int w = 0; w < LMP_LIN_COUNT; w++) {
                    if (!in_pass[w])
                        continue;
                    if (cal && (b.install_q[w] || b.install_w[w])) {
                        if ((rc = install_linear(m, l, (lmp_linear)w, &b, bf16, &bfw[w])))
                            goto layer_end;
                        installed[w] = true;
                    }
                    if (!cal)
                        lmp_calib_tick(&b);
                }
            }
            T.solve += lmp_time_s();
            if (g + 1 < n_groups || !row->block)
                stats_free(&b.st);
        }
        T.solve -= lmp_time_s();
        if (row->block) {
            if ((rc = row->block(ctx, &b)))
                goto layer_end;
            stats_free(&b.st);
            for (int w = 0; w < LMP_LIN_COUNT && cal; w++)
                if (b.install_w[w] || b.install_q[w]) {
                    if ((rc = install_linear(m, l, (lmp_linear)w, &b, bf16, &bfw[w])))
                        goto layer_end;
                    installed[w] = true;
                }
        }
        T.solve += lmp_time_s();
        if (!self_walk) { /* awqdist: a self-walking row left the next inputs itself */
            /* the compressed block produces the next block's inputs: the rest of it from
             * the boundary the states are at (the whole block when not staged) */
            float *in = !row->rerun_window ? NULL : act.mem ? b.scratch : win2;
            /* calmpi: this rank's windows; the row's re-run sums per window group */
            if ((rc = lmp_calib_dist_rerun_begin(&ds, row, ctx, &b)))
                goto layer_end;
            t_loops -= lmp_time_s();
            for (int s = ds.lo; s < ds.hi; s++) {
                float *x = act.mem ? act.mem + (int64_t)(s - ds.lo) * L * d : b.scratch;
                if ((rc = lmp_calib_dist_rerun_window(&ds, s)))
                    goto layer_end;
                if (!act.mem && (rc = store_get(&act, s - ds.lo, x)))
                    goto layer_end;
                if (in)
                    memcpy(in, x, sizeof(float) * (size_t)(L * d));
                if ((rc = aux_io(&aux, m, bscr, L, at, s - ds.lo, false)) ||
                    (rc = lmp_block_run_stages(m, l, x, L, at, LMP_STAGE_OUT, rhook, &th, bscr)))
                    goto layer_end;
                double tw = lmp_time_s();
                if (in && (rc = row->rerun_window(ctx, &b, s, in, x)))
                    goto layer_end;
                t_rwin += lmp_time_s() - tw;
                if ((rc = store_put(&act, s - ds.lo, x)))
                    goto layer_end;
                lmp_calib_tick(&b);
            }
            if ((rc = lmp_calib_dist_rerun_end(&ds)))
                goto layer_end;
            t_loops += lmp_time_s();
        }
        lmp_progress_end(&pg); /* clears the bar's line for the row's per-layer line */
        T.end -= lmp_time_s();
        rc = row->end ? row->end(ctx, &b) : LMP_OK;
        T.end += lmp_time_s();
        if (rc)
            goto layer_end;
        for (int w = 0; w < LMP_LIN_COUNT; w++) /* block l's weights are not read again */
            if (b.orig[w].data)
                release_mapped(m, b.orig[w].data, (size_t)b.orig[w].rows * b.orig[w].row_bytes);
    layer_end:
        if (rc)
            lmp_progress_end(&pg);
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            if (installed[w])
                lmp_model_set_linear(m, l, (lmp_linear)w, &b.orig[w]);
            installed[w] = false;
            free(bfw[w]);
            bfw[w] = NULL;
        }
        stats_free(&b.st);
        if (row->cleanup)
            row->cleanup(ctx, &b);
        if (rc)
            goto done;
    }
    lmp_progress_end(&pg);
    lmp_calib_dist_report_bytes(&ds, nl); /* calmpi */
    T.stats += sc.seconds;
    T.rerun = th.seconds + t_rwin;
    T.forward = t_loops - sc.seconds - T.rerun;
    lmp_info("%s: embedding %.2f s, forward %.2f s, statistics %.2f s, solve %.2f s, re-run hooks %.2f s, "
              "end hooks %.2f s",
              row->name, T.embed, T.forward, T.stats, T.solve, T.rerun, T.end);
    if (o->times) {
        o->times->embed += T.embed;
        o->times->forward += T.forward;
        o->times->stats += T.stats;
        o->times->solve += T.solve;
        o->times->rerun += T.rerun;
        o->times->end += T.end;
    }
done:
    if (bf16)
        lmp_gemm_set_exact(exact0);
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        free(bfw[w]);
    lmp_calib_dist_close(&ds); /* calmpi */
    stats_free(&b.st);
    store_close(&act);
    store_close(&aux);
    free(b.scratch);
    free(bscr);
    free(win2);
    return rc;
}
