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
    float *W = malloc((size_t)(w->rows * w->cols) * sizeof(float));
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

/* The windows' hidden states between blocks: in memory, or (when they would exceed the
 * spill threshold) in an unlinked temporary file read and written one window at a time,
 * so that resident memory holds one window whatever the calibration set's size. Both
 * keep the f32 values exactly: results do not depend on where the states live. */
typedef struct {
    float *mem;        /* N * win floats, or NULL when spilled */
    int fd;            /* spilled: the temporary file, else -1 */
    int64_t win;       /* floats per window */
} act_store;

/* Spill threshold in bytes: LMP_CALIB_SPILL (bytes, with an optional K/M/G suffix; 0:
 * always spill; "off": never), default 2 GiB. */
static uint64_t spill_threshold(void)
{
    const char *e = getenv("LMP_CALIB_SPILL");
    if (!e || !*e)
        return 2ull << 30;
    if (strcmp(e, "off") == 0)
        return UINT64_MAX;
    char *end;
    double v = strtod(e, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1048576; break;
    case 'g': case 'G': v *= 1073741824.0; break;
    default: break;
    }
    return v <= 0 ? 0 : (uint64_t)v;
}

static int store_open(act_store *st, uint64_t bytes, int64_t win, bool allow_spill)
{
    st->mem = NULL;
    st->fd = -1;
    st->win = win;
    if (!allow_spill || bytes <= spill_threshold()) {
        st->mem = malloc(bytes ? bytes : 1);
        return st->mem ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%.1f MiB)",
                                          bytes / 1048576.0);
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/lmpress-calib-XXXXXX", dir);
    st->fd = mkstemp(path);
    if (st->fd < 0)
        return lmp_err(LMP_EIO, "%s: cannot create the calibration activations' temporary file: %s", path,
                       strerror(errno));
    unlink(path); /* gone with the process, whatever happens */
    lmp_info("calibration activations: %.1f MiB f32, spilled to an unlinked temporary file in %s (memory holds "
             "one window; LMP_CALIB_SPILL sets the threshold)",
             bytes / 1048576.0, dir);
    return LMP_OK;
}

static void store_close(act_store *st)
{
    free(st->mem);
    if (st->fd >= 0)
        close(st->fd);
    st->mem = NULL;
    st->fd = -1;
}

static int store_io(act_store *st, int s, float *buf, bool write)
{
    const size_t n = (size_t)st->win * sizeof(float);
    off_t off = (off_t)s * (off_t)n;
    size_t done = 0;
    while (done < n) {
        ssize_t r = write ? pwrite(st->fd, (const char *)buf + done, n - done, off + (off_t)done)
                          : pread(st->fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return lmp_err(LMP_EIO, "calibration activations' temporary file: %s of window %d failed: %s",
                           write ? "write" : "read", s, r < 0 ? strerror(errno) : "short read");
        done += (size_t)r;
    }
    return LMP_OK;
}

/* Window s into dst. */
static int store_get(act_store *st, int s, float *dst)
{
    if (st->mem) {
        memcpy(dst, st->mem + (int64_t)s * st->win, (size_t)st->win * sizeof(float));
        return LMP_OK;
    }
    return store_io(st, s, dst, false);
}

/* src as window s (src may be the store's own memory: nothing to do). */
static int store_put(act_store *st, int s, const float *src)
{
    if (st->mem) {
        float *d = st->mem + (int64_t)s * st->win;
        if (d != src)
            memcpy(d, src, (size_t)st->win * sizeof(float));
        return LMP_OK;
    }
    return store_io(st, s, (float *)src, true);
}

/* ---------------------------------------------------------------- statistics ------ */

typedef struct {
    const lmp_calib_method *row;
    lmp_calib_stats *st;     /* one set, or [n_layers] when streaming */
    bool per_layer;
    lmp_linear stop_at;      /* LMP_PASS_DONE after this linear's input; LMP_LIN_COUNT: never */
    int n_experts;
    int64_t e_hidden, e_ff;
} stat_ctx;

static void xsq_add(double *q, const float *X, int64_t n, int64_t in)
{
    for (int64_t t = 0; t < n; t++) { /* every token, in double, in token order */
        const float *x = X + t * in;
        for (int64_t j = 0; j < in; j++)
            q[j] += (double)x[j] * x[j];
    }
}

static int stat_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    stat_ctx *h = user;
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
            int rc = h->row->hessian_add(st->H[cls], in, X, n, &st->ns[cls]);
            if (rc)
                return rc;
        }
        if (st->xsq[cls])
            xsq_add(st->xsq[cls], X, n, in);
        if (st->X[cls])
            memcpy(st->X[cls] + st->off * in, X, (size_t)(n * in) * sizeof(float));
    }
    return which == h->stop_at ? LMP_PASS_DONE : 0;
}

static void stats_free(lmp_calib_stats *st)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        free(st->H[k]);
        free(st->xsq[k]);
        free(st->X[k]);
    }
    free(st->exsq);
    free(st->ecount);
    lmp_calib_expert_free(st);
    memset(st, 0, sizeof *st);
}

/* Allocates the row's statistics for the classes of one pass (group: -1 terminated). */
static int stats_alloc(lmp_calib_stats *st, const lmp_calib_method *row, const lmp_calib_block *b, const int *group,
                       int64_t ntok)
{
    memset(st, 0, sizeof *st);
    for (int k = 0; group[k] >= 0; k++) {
        const int cls = group[k];
        if (row->classes && !(row->classes & (1u << cls)))
            continue;
        const int64_t cols = b->cols[cls];
        if ((row->stats & LMP_STAT_HESSIAN) && !(st->H[cls] = calloc((size_t)(cols * cols), sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory for a %lld x %lld Hessian", (long long)cols, (long long)cols);
        if ((row->stats & LMP_STAT_XSQ) && !(st->xsq[cls] = calloc((size_t)cols, sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory for the statistics of a %lld-column input", (long long)cols);
        if ((row->stats & LMP_STAT_CAPTURE) && !(st->X[cls] = malloc((size_t)(ntok * cols) * sizeof(float))))
            return lmp_err(LMP_ENOMEM, "out of memory for the captured inputs (%lld tokens x %lld columns f32: %.1f MiB)",
                           (long long)ntok, (long long)cols, (double)ntok * (double)cols * 4 / 1048576.0);
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
    if (row->flags & LMP_CALIB_FLOAT_FORWARD)
        return LMP_LIN_COUNT;
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
    if (!st || !x) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (calibration statistics)");
        goto done;
    }
    for (int l = 0; l < nl && !rc; l++) {
        block_setup(b, m, l);
        rc = stats_alloc(&st[l], row, b, all, 0);
    }
    if (rc)
        goto done;
    stat_ctx sc = {row, st, true, LMP_LIN_COUNT, b->n_experts, b->e_hidden, b->e_ff};
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
            rc = lmp_block_run(m, l, x, L, 0, NULL, stat_hook, &sc);
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
    return rc;
}

int lmp_calib_run(lmp_model *m, const lmp_calib_data *cal, const lmp_calib_method *row, void *ctx,
                  const lmp_calib_opts *o)
{
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    const int64_t d = c->hidden_size;
    const int N = cal ? cal->n_samples : 0, L = cal ? cal->seq_len : 0;
    const bool flt = (row->flags & LMP_CALIB_FLOAT_FORWARD) != 0;
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

    bool installed[LMP_LIN_COUNT] = {0};
    /* calmpi: this rank's windows [ds.lo, ds.hi) (all of them when not split); the act
     * store holds those only, window s at s - ds.lo */
    lmp_calib_dist ds;
    lmp_calib_dist_open(&ds, row, N);
    /* calmpi + experts: the per-expert statistics (experts.c) and the expert solves are not
     * combined or shared among ranks yet, so every rank calibrates every window and every
     * linear of an expert model (the same results on each rank, nothing split) */
    for (int l = 0; l < nl; l++)
        if (lmp_model_n_experts(m, l) > 0) {
            lmp_calib_dist_whole(&ds);
            break;
        }
    const int n_own = ds.hi - ds.lo;
    act_store act = {NULL, -1, (int64_t)L * d};
    float *win2 = NULL; /* spilled, with rerun_window: a window's input */
    if (cal) {
        const uint64_t bytes = (uint64_t)n_own * (uint64_t)L * (uint64_t)d * sizeof(float); /* calmpi */
        /* AWQ's rows read every window's states at once: memory */
        if ((rc = store_open(&act, bytes, (int64_t)L * d, !flt)))
            goto done;
        b.states = act.mem;
        b.scratch = malloc((size_t)L * d * sizeof(float));
        if (flt)
            b.next = malloc(bytes);
        if (act.fd >= 0 && row->rerun_window)
            win2 = malloc((size_t)L * d * sizeof(float));
        if (!b.scratch || (flt && !b.next) || (act.fd >= 0 && row->rerun_window && !win2)) {
            rc = lmp_err(LMP_ENOMEM, "out of memory for the calibration activations (%d x %d x %lld f32 = %.1f MiB%s)",
                         N, L, (long long)d, bytes / 1048576.0, flt ? ", twice" : "");
            goto done;
        }
        const int bos = o->calib_bos ? lmp_model_bos(m) : -1;
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
        if ((rc = lmp_calib_dist_report_share(&ds, bytes))) /* calmpi */
            goto done;
    }

    /* Passes over a block's inputs: true-sequential gives one per input class (the
     * linears of the earlier ones already installed), otherwise one for all four. */
    const bool stats = cal && row->stats;
    int groups[LMP_IN_COUNT][LMP_IN_COUNT + 1];
    const int n_groups = lmp_input_groups(stats && o->true_sequential && !flt, groups);

    /* one bar for the whole model (layers x passes), so its ETA is the job's */
    uint64_t per_layer = cal ? (uint64_t)((stats ? n_groups : 0) + (flt ? 0 : 1)) * n_own : LMP_LIN_COUNT;
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
    stat_ctx sc = {row, &b.st, false, LMP_LIN_COUNT, b.n_experts, b.e_hidden, b.e_ff};

    for (int l = 0; l < nl; l++) {
        block_setup(&b, m, l);
        snprintf(label, sizeof label, "%s layer %d/%d", row->name, l + 1, nl);
        b.done = (uint64_t)l * per_layer;
        if (row->begin && (rc = row->begin(ctx, &b)))
            goto layer_end;
        for (int g = 0; g < n_groups; g++) {
            b.pass = g;
            if (stats) {
                if ((rc = stats_alloc(&b.st, row, &b, groups[g], (int64_t)N * L)))
                    goto layer_end;
                sc.stop_at = pass_stop(row, groups[g]);
                if (flt) { /* every window to the end of the block, into next */
                    for (int s = 0; s < N; s++) {
                        const int64_t off = (int64_t)s * L;
                        float *x = b.next + off * d;
                        memcpy(x, b.states + off * d, sizeof(float) * (size_t)(L * d));
                        b.st.off = off;
                        if ((rc = lmp_block_run(m, l, x, L, 0, NULL, stat_hook, &sc)))
                            goto layer_end;
                        lmp_calib_tick(&b);
                    }
                } else {
                    /* calmpi: this rank's windows, each gathered into its window group's
                     * statistics, the groups combined after the pass */
                    if ((rc = lmp_calib_dist_pass_begin(&ds, &b.st, 1, &b)))
                        goto layer_end;
                    for (int s = ds.lo; s < ds.hi; s++) { /* on a copy: the states stay as they are */
                        if ((rc = lmp_calib_dist_window(&ds, s, &sc.st)) || (rc = store_get(&act, s - ds.lo, b.scratch)))
                            goto layer_end;
                        rc = lmp_block_run(m, l, b.scratch, L, 0, NULL, stat_hook, &sc);
                        if (rc != 0 && rc != LMP_PASS_DONE)
                            goto layer_end;
                        rc = LMP_OK;
                        lmp_calib_tick(&b);
                    }
                    if ((rc = lmp_calib_dist_pass_end(&ds)))
                        goto layer_end;
                    sc.st = &b.st;
                }
            }
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
                    if (cal && b.install_q[w]) {
                        if ((rc = lmp_model_set_linear_q(m, l, (lmp_linear)w, b.install_q[w])))
                            goto layer_end;
                        installed[w] = true;
                    } else if (cal && b.install_w[w]) {
                        if ((rc = lmp_model_set_linear(m, l, (lmp_linear)w, b.install_w[w])))
                            goto layer_end;
                        installed[w] = true;
                    }
                    if (!cal)
                        lmp_calib_tick(&b);
                }
            }
            if (g + 1 < n_groups || !row->block)
                stats_free(&b.st);
        }
        if (row->block) {
            if ((rc = row->block(ctx, &b)))
                goto layer_end;
            stats_free(&b.st);
            for (int w = 0; w < LMP_LIN_COUNT && cal && !flt; w++)
                if (b.install_w[w] || b.install_q[w]) {
                    rc = b.install_q[w] ? lmp_model_set_linear_q(m, l, (lmp_linear)w, b.install_q[w])
                                        : lmp_model_set_linear(m, l, (lmp_linear)w, b.install_w[w]);
                    if (rc)
                        goto layer_end;
                    installed[w] = true;
                }
        }
        if (flt) { /* the float outputs are the next block's inputs */
            float *t = act.mem;
            act.mem = b.states = b.next;
            b.next = t;
        } else {
            /* the compressed block produces the next block's inputs */
            float *in = !row->rerun_window ? NULL : act.mem ? b.scratch : win2;
            /* calmpi: this rank's windows; the row's re-run sums per window group */
            if ((rc = lmp_calib_dist_rerun_begin(&ds, row, ctx, &b)))
                goto layer_end;
            for (int s = ds.lo; s < ds.hi; s++) {
                float *x = act.mem ? act.mem + (int64_t)(s - ds.lo) * L * d : b.scratch;
                if ((rc = lmp_calib_dist_rerun_window(&ds, s)))
                    goto layer_end;
                if (!act.mem && (rc = store_get(&act, s - ds.lo, x)))
                    goto layer_end;
                if (in)
                    memcpy(in, x, sizeof(float) * (size_t)(L * d));
                if ((rc = lmp_block_run(m, l, x, L, 0, NULL, row->rerun_hook, ctx)))
                    goto layer_end;
                if (in && (rc = row->rerun_window(ctx, &b, s, in, x)))
                    goto layer_end;
                if ((rc = store_put(&act, s - ds.lo, x)))
                    goto layer_end;
                lmp_calib_tick(&b);
            }
            if ((rc = lmp_calib_dist_rerun_end(&ds)))
                goto layer_end;
        }
        lmp_progress_end(&pg); /* clears the bar's line for the row's per-layer line */
        if (row->end && (rc = row->end(ctx, &b)))
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
        }
        stats_free(&b.st);
        if (row->cleanup)
            row->cleanup(ctx, &b);
        if (rc)
            goto done;
    }
    lmp_progress_end(&pg);
    lmp_calib_dist_report_bytes(&ds, nl); /* calmpi */
done:
    lmp_calib_dist_close(&ds); /* calmpi */
    stats_free(&b.st);
    store_close(&act);
    free(b.next);
    free(b.scratch);
    free(win2);
    return rc;
}
