/*
 * Data-parallel calibration (design: calib_dist.h): window groups, statistics combined
 * in group order whatever the rank count, per-linear solves split among ranks.
 */
#include "dist_stats.h"
#include "../core/dist.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- groups ---------- */

/* Part [*lo, *hi) of n items cut into k parts (contiguous, sizes differ by at most one,
 * the larger first): lmp_dist_share's rule. */
static void part_of(int64_t n, int64_t k, int64_t i, int64_t *lo, int64_t *hi)
{
    int64_t q = n / k, e = n % k;
    *lo = i * q + (i < e ? i : e);
    *hi = *lo + q + (i < e);
}

/* The part of n items cut into k parts that holds item i. */
static int64_t part_holding(int64_t n, int64_t k, int64_t i)
{
    int64_t q = n / k, e = n % k;
    return i < e * (q + 1) ? i / (q + 1) : e + (i - e * (q + 1)) / q;
}

void lmp_calib_group_windows(int N, int G, int g, int *lo, int *hi)
{
    int64_t a, b;
    part_of(N, G, g, &a, &b);
    *lo = (int)a;
    *hi = (int)b;
}

int lmp_calib_group_owner(int G, int g, int size)
{
    return (int)part_holding(G, size, g);
}

void lmp_calib_dist_open(lmp_calib_dist *d, const lmp_calib_method *row, int N)
{
    memset(d, 0, sizeof *d);
    d->N = N;
    d->rank = lmp_dist_rank();
    d->size = lmp_dist_size();
    d->cur = d->rcur = -1;
    d->bytes0 = lmp_dist_bytes();
    /* rows that keep re-run sums the driver cannot see are not split */
    const bool rerun = row->rerun_hook || row->rerun_window;
    d->grouped = N > 0 && (!rerun || row->rerun_sums);
    d->share_solves = row->linear && row->linear_share && d->size > 1;
    d->lo = 0;
    d->hi = N;
    if (!d->grouped)
        return;
    d->G = N < LMP_CALIB_GROUPS ? N : LMP_CALIB_GROUPS;
    int64_t glo, ghi;
    part_of(d->G, d->size, d->rank, &glo, &ghi);
    d->glo = (int)glo;
    d->ghi = (int)ghi;
    if (d->ghi > d->glo) {
        int a, b;
        lmp_calib_group_windows(N, d->G, d->glo, &d->lo, &a);
        lmp_calib_group_windows(N, d->G, d->ghi - 1, &b, &d->hi);
    } else {
        d->lo = d->hi = 0;
    }
    /* rank 0 folds each of its groups into the totals as it ends; the others keep theirs */
    d->slots = d->rank == 0 ? 1 : d->ghi - d->glo;
}

void lmp_calib_dist_whole(lmp_calib_dist *d)
{
    d->grouped = false;
    d->share_solves = false;
    d->G = 0;
    d->glo = d->ghi = 0;
    d->lo = 0;
    d->hi = d->N;
    d->slots = 0;
}

static void stats_release(lmp_calib_stats *st)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        free(st->H[k]);
        free(st->xsq[k]);
        for (int e = 0; st->eH[k] && e < st->e_n; e++) /* awqdist: the experts' Hessians */
            free(st->eH[k][e]);
        free(st->eH[k]);
        free(st->ens[k]);
    }
    free(st->exsq);
    free(st->ecount);
    memset(st, 0, sizeof *st);
}

static void parts_free(lmp_calib_dist *d)
{
    for (int i = 0; d->part && i < d->slots * d->n_sets; i++)
        stats_release(&d->part[i]);
    free(d->part);
    d->part = NULL;
}

void lmp_calib_dist_close(lmp_calib_dist *d)
{
    parts_free(d);
    free(d->rpart);
    free(d->rtot);
    d->rpart = d->rtot = NULL;
}

int lmp_calib_dist_report_share(lmp_calib_dist *d, uint64_t act_bytes)
{
    if (!lmp_dist_active() || d->size < 2)
        return LMP_OK;
    int64_t *all = calloc((size_t)d->size * 2, sizeof(int64_t));
    if (!all)
        return lmp_err(LMP_ENOMEM, "out of memory");
    /* one row per rank: lmp_dist_gather_rows over size rows gives each rank its own */
    all[2 * d->rank] = d->hi - d->lo;
    all[2 * d->rank + 1] = (int64_t)act_bytes;
    int rc = lmp_dist_gather_rows(all, d->size, 2 * sizeof(int64_t), 0);
    if (!rc && d->rank == 0) {
        char w[512] = "", a[512] = "";
        size_t nw = 0, na = 0;
        for (int r = 0; r < d->size; r++) {
            nw += (size_t)snprintf(w + nw, nw < sizeof w ? sizeof w - nw : 0, "%s%lld", r ? "/" : "",
                                   (long long)all[2 * r]);
            na += (size_t)snprintf(a + na, na < sizeof a ? sizeof a - na : 0, "%s%.2f", r ? "/" : "",
                                   all[2 * r + 1] / 1048576.0);
            if (nw >= sizeof w || na >= sizeof a)
                break;
        }
        if (d->grouped)
            lmp_info("calibration over %d ranks: windows per rank %s of %d (%d window groups), activations per "
                     "rank %s MiB",
                     d->size, w, d->N, d->G, a);
        else
            lmp_info("calibration over %d ranks: not split (this method reads every window at once): windows per "
                     "rank %s of %d, activations per rank %s MiB",
                     d->size, w, d->N, a);
    }
    free(all);
    return rc;
}

void lmp_calib_dist_report_bytes(const lmp_calib_dist *d, int n_layers)
{
    if (!lmp_dist_active() || d->size < 2 || d->rank != 0 || n_layers < 1)
        return;
    double mib = (double)(lmp_dist_bytes() - d->bytes0) / 1048576.0;
    lmp_info("calibration: rank 0 sent and received %.1f MiB (%.2f MiB per layer)", mib, mib / n_layers);
}

/* ---------------------------------------------------------------- statistics ------ */

/* Allocates (zeroed) a set shaped like the totals' first set. */
static int set_alloc(const lmp_calib_dist *d, lmp_calib_stats *st)
{
    const lmp_calib_stats *t = &d->total[0];
    memset(st, 0, sizeof *st);
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        const size_t c = (size_t)d->cols[k];
        if (t->H[k] && !(st->H[k] = lmp_calloc_big(c * c, sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory for a window group's %zu x %zu Hessian", c, c);
        if (t->xsq[k] && !(st->xsq[k] = calloc(c, sizeof(double))))
            return lmp_err(LMP_ENOMEM, "out of memory (a window group's statistics)");
    }
    if (t->exsq && (!(st->exsq = calloc(d->ex_n, sizeof(double))) || !(st->ecount = calloc(d->ex_cnt, sizeof(int64_t)))))
        return lmp_err(LMP_ENOMEM, "out of memory (a window group's expert statistics)");
    /* awqdist: the experts' Hessians of a sparse block, shaped as the totals' */
    st->e_n = t->e_n;
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        if (!t->eH[k])
            continue;
        const size_t c = (size_t)d->ecols[k];
        if (!(st->eH[k] = calloc((size_t)t->e_n, sizeof(double *))) ||
            !(st->ens[k] = calloc((size_t)t->e_n, sizeof(int64_t))))
            return lmp_err(LMP_ENOMEM, "out of memory (a window group's expert Hessians)");
        for (int e = 0; e < t->e_n; e++)
            if (t->eH[k][e] && !(st->eH[k][e] = calloc(c * c, sizeof(double))))
                return lmp_err(LMP_ENOMEM, "out of memory for a window group's %d expert Hessians of %zu x %zu",
                               t->e_n, c, c);
    }
    return LMP_OK;
}

/* n doubles at p zeroed / copied in row-sized chunks over the threads (elementwise: the
 * same bits whatever the thread count) */
static void par_zero(double *p, int64_t n)
{
    enum { CH = 1 << 16 };
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += CH)
        memset(p + i, 0, sizeof(double) * (size_t)(n - i < CH ? n - i : CH));
}

static void par_copy(double *h, const double *p, int64_t n)
{
    enum { CH = 1 << 16 };
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i += CH)
        memcpy(h + i, p + i, sizeof(double) * (size_t)(n - i < CH ? n - i : CH));
}

static void set_zero(const lmp_calib_dist *d, lmp_calib_stats *st)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        const size_t c = (size_t)d->cols[k];
        if (st->H[k])
            par_zero(st->H[k], (int64_t)(c * c));
        if (st->xsq[k])
            memset(st->xsq[k], 0, c * sizeof(double));
        st->ns[k] = 0;
    }
    if (st->exsq) {
        memset(st->exsq, 0, d->ex_n * sizeof(double));
        memset(st->ecount, 0, d->ex_cnt * sizeof(int64_t));
    }
    for (int k = 0; k < LMP_IN_COUNT; k++) { /* awqdist: experts */
        const size_t c = (size_t)d->ecols[k];
        for (int e = 0; st->eH[k] && e < st->e_n; e++) {
            if (st->eH[k][e])
                memset(st->eH[k][e], 0, c * c * sizeof(double));
            st->ens[k][e] = 0;
        }
    }
}

/* H <- H merged with the group mean P (nH, nP tokens; first: H = P), see calib_dist.h. */
static void hess_fold(double *h, const double *p, int64_t n2, int64_t nH, int64_t nP, bool first)
{
    if (first || nH == 0) {
        par_copy(h, p, n2);
    } else if (nP > 0) {
        const double keep = (double)nH / (double)(nH + nP), take = (double)nP / (double)(nH + nP);
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n2; i++)
            h[i] = h[i] * keep + p[i] * take;
    }
}

/* T <- T combined with group partial P (first: T = P). Fixed arithmetic, see calib_dist.h. */
static void set_fold(const lmp_calib_dist *d, lmp_calib_stats *T, const lmp_calib_stats *P, bool first)
{
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        const int64_t c = d->cols[k];
        if (T->H[k]) {
            const int64_t nT = first ? 0 : T->ns[k], nP = P->ns[k];
            hess_fold(T->H[k], P->H[k], c * c, nT, nP, first);
            T->ns[k] = nT + nP;
        } else {
            T->ns[k] = first ? P->ns[k] : T->ns[k] + P->ns[k];
        }
        if (T->xsq[k]) {
            if (first)
                memcpy(T->xsq[k], P->xsq[k], sizeof(double) * (size_t)c);
            else
                for (int64_t j = 0; j < c; j++)
                    T->xsq[k][j] += P->xsq[k][j];
        }
    }
    if (T->exsq) {
        if (first) {
            memcpy(T->exsq, P->exsq, sizeof(double) * d->ex_n);
            memcpy(T->ecount, P->ecount, sizeof(int64_t) * d->ex_cnt);
        } else {
            for (size_t i = 0; i < d->ex_n; i++)
                T->exsq[i] += P->exsq[i];
            for (size_t i = 0; i < d->ex_cnt; i++)
                T->ecount[i] += P->ecount[i];
        }
    }
    /* awqdist: every expert's Hessian merged as the dense ones, its token count added */
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        const int64_t c = d->ecols[k];
        for (int e = 0; T->eH[k] && e < T->e_n; e++) {
            const int64_t nT = first ? 0 : T->ens[k][e], nP = P->ens[k][e];
            if (T->eH[k][e])
                hess_fold(T->eH[k][e], P->eH[k][e], c * c, nT, nP, first);
            T->ens[k][e] = nT + nP;
        }
    }
}

/* Sends one set to rank `peer` or receives it from `peer`. */
static int set_xfer(const lmp_calib_dist *d, lmp_calib_stats *st, bool send, int peer)
{
    int rc = LMP_OK;
#define XFER(p, n) (send ? lmp_dist_send((p), (n), peer) : lmp_dist_recv((p), (n), peer))
    for (int k = 0; k < LMP_IN_COUNT && !rc; k++) {
        const size_t c = (size_t)d->cols[k];
        if (!rc && st->H[k])
            rc = XFER(st->H[k], c * c * sizeof(double));
        if (!rc && st->xsq[k])
            rc = XFER(st->xsq[k], c * sizeof(double));
    }
    if (!rc)
        rc = XFER(st->ns, sizeof st->ns);
    if (!rc && st->exsq && !(rc = XFER(st->exsq, d->ex_n * sizeof(double))))
        rc = XFER(st->ecount, d->ex_cnt * sizeof(int64_t));
    for (int k = 0; k < LMP_IN_COUNT && !rc; k++) { /* awqdist: experts */
        const size_t c = (size_t)d->ecols[k];
        for (int e = 0; st->eH[k] && e < st->e_n && !rc; e++)
            if (st->eH[k][e])
                rc = XFER(st->eH[k][e], c * c * sizeof(double));
        if (!rc && st->ens[k])
            rc = XFER(st->ens[k], (size_t)st->e_n * sizeof(int64_t));
    }
#undef XFER
    return rc;
}

static int set_bcast(const lmp_calib_dist *d, lmp_calib_stats *st, int root)
{
    int rc = LMP_OK;
    for (int k = 0; k < LMP_IN_COUNT && !rc; k++) {
        const size_t c = (size_t)d->cols[k];
        if (!rc && st->H[k])
            rc = lmp_dist_bcast(st->H[k], c * c * sizeof(double), root);
        if (!rc && st->xsq[k])
            rc = lmp_dist_bcast(st->xsq[k], c * sizeof(double), root);
    }
    if (!rc)
        rc = lmp_dist_bcast(st->ns, sizeof st->ns, root);
    if (!rc && st->exsq && !(rc = lmp_dist_bcast(st->exsq, d->ex_n * sizeof(double), root)))
        rc = lmp_dist_bcast(st->ecount, d->ex_cnt * sizeof(int64_t), root);
    for (int k = 0; k < LMP_IN_COUNT && !rc; k++) { /* awqdist: experts */
        const size_t c = (size_t)d->ecols[k];
        for (int e = 0; st->eH[k] && e < st->e_n && !rc; e++)
            if (st->eH[k][e])
                rc = lmp_dist_bcast(st->eH[k][e], c * c * sizeof(double), root);
        if (!rc && st->ens[k])
            rc = lmp_dist_bcast(st->ens[k], (size_t)st->e_n * sizeof(int64_t), root);
    }
    return rc;
}

int lmp_calib_dist_pass_begin(lmp_calib_dist *d, lmp_calib_stats *total, int n_sets, const lmp_calib_block *b)
{
    d->total = total;
    d->n_sets = n_sets;
    d->cur = -1;
    if (!d->grouped)
        return LMP_OK;
    for (int k = 0; k < LMP_IN_COUNT; k++)
        d->cols[k] = b->cols[k];
    d->ex_n = (size_t)b->n_experts * (size_t)(b->e_hidden + b->e_ff);
    d->ex_cnt = (size_t)b->n_experts;
    for (int k = 0; k < LMP_IN_COUNT; k++) /* awqdist: the experts' input widths */
        d->ecols[k] = k == LMP_IN_DOWN ? b->e_ff : b->e_hidden;
    parts_free(d);
    if (d->slots == 0)
        return LMP_OK;
    d->part = calloc((size_t)(d->slots * n_sets), sizeof *d->part);
    if (!d->part)
        return lmp_err(LMP_ENOMEM, "out of memory (window groups)");
    for (int i = 0; i < d->slots * n_sets; i++) {
        int rc = set_alloc(d, &d->part[i]);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

/* Rank 0: folds its group g (slot 0) into the totals. */
static void root_fold(lmp_calib_dist *d, int g)
{
    for (int i = 0; i < d->n_sets; i++)
        set_fold(d, &d->total[i], &d->part[i], g == 0);
}

int lmp_calib_dist_window(lmp_calib_dist *d, int s, lmp_calib_stats **into)
{
    if (!d->grouped) {
        *into = d->total;
        return LMP_OK;
    }
    const int g = (int)part_holding(d->N, d->G, s);
    if (g != d->cur) {
        if (d->cur >= 0 && d->rank == 0)
            root_fold(d, d->cur);
        d->cur = g;
        const int slot = d->rank == 0 ? 0 : g - d->glo;
        for (int i = 0; i < d->n_sets; i++)
            set_zero(d, &d->part[slot * d->n_sets + i]);
    }
    *into = &d->part[(d->rank == 0 ? 0 : g - d->glo) * d->n_sets];
    return LMP_OK;
}

/* The groups are combined along the ranks in order, which is group order: rank 0 folds
 * its groups (as they end) and sends the running totals to rank 1, which folds its own
 * groups into them and sends them on, ... ; the last rank that has groups broadcasts the
 * result. Each rank moves the totals about twice, whatever G. */
int lmp_calib_dist_pass_end(lmp_calib_dist *d)
{
    if (!d->grouped)
        return LMP_OK;
    int rc = LMP_OK;
    const int last = (d->G < d->size ? d->G : d->size) - 1; /* the last rank with groups */
    if (d->rank == 0) {
        if (d->cur >= 0)
            root_fold(d, d->cur);
    } else if (d->rank <= last) {
        for (int i = 0; i < d->n_sets && !rc; i++)
            rc = set_xfer(d, &d->total[i], false, d->rank - 1);
        for (int g = d->glo; g < d->ghi && !rc; g++)
            for (int i = 0; i < d->n_sets; i++)
                set_fold(d, &d->total[i], &d->part[(g - d->glo) * d->n_sets + i], false);
    }
    if (d->rank < last)
        for (int i = 0; i < d->n_sets && !rc; i++)
            rc = set_xfer(d, &d->total[i], true, d->rank + 1);
    for (int i = 0; i < d->n_sets && !rc && d->size > 1; i++)
        rc = set_bcast(d, &d->total[i], last);
    d->cur = -1;
    parts_free(d);
    return rc;
}

/* ---------------------------------------------------------------- re-run sums ----- */

int lmp_calib_dist_rerun_begin(lmp_calib_dist *d, const lmp_calib_method *row, void *ctx, lmp_calib_block *b)
{
    d->rs = NULL;
    d->n_rs = 0;
    d->rcur = -1;
    if (!d->grouped || !row->rerun_sums)
        return LMP_OK;
    d->rs = row->rerun_sums(ctx, b, &d->n_rs);
    if (!d->rs || !d->n_rs)
        return LMP_OK;
    free(d->rpart);
    free(d->rtot);
    d->rpart = calloc((size_t)(d->slots ? d->slots : 1) * d->n_rs, sizeof(double));
    d->rtot = calloc(d->n_rs, sizeof(double));
    if (!d->rpart || !d->rtot)
        return lmp_err(LMP_ENOMEM, "out of memory (window groups)");
    return LMP_OK;
}

static void rs_fold(lmp_calib_dist *d, const double *p, bool first)
{
    for (size_t i = 0; i < d->n_rs; i++)
        d->rtot[i] = first ? p[i] : d->rtot[i] + p[i];
}

/* The row's sums of group d->rcur are complete: keep (or, on rank 0, fold) them. */
static void rs_close(lmp_calib_dist *d)
{
    if (d->rank == 0)
        rs_fold(d, d->rs, d->rcur == 0);
    else
        memcpy(d->rpart + (size_t)(d->rcur - d->glo) * d->n_rs, d->rs, d->n_rs * sizeof(double));
}

int lmp_calib_dist_rerun_window(lmp_calib_dist *d, int s)
{
    if (!d->rs)
        return LMP_OK;
    const int g = (int)part_holding(d->N, d->G, s);
    if (g != d->rcur) {
        if (d->rcur >= 0)
            rs_close(d);
        d->rcur = g;
        memset(d->rs, 0, d->n_rs * sizeof(double)); /* the group's sums from zero */
    }
    return LMP_OK;
}

int lmp_calib_dist_rerun_end(lmp_calib_dist *d)
{
    if (!d->rs)
        return LMP_OK;
    int rc = LMP_OK;
    if (d->rcur >= 0)
        rs_close(d);
    const size_t bytes = d->n_rs * sizeof(double);
    if (d->rank == 0) {
        for (int g = d->ghi; g < d->G && !rc; g++)
            if (!(rc = lmp_dist_recv(d->rpart, bytes, lmp_calib_group_owner(d->G, g, d->size))))
                rs_fold(d, d->rpart, g == 0);
    } else {
        for (int g = d->glo; g < d->ghi && !rc; g++) /* one message per group, as rank 0 receives them */
            rc = lmp_dist_send(d->rpart + (size_t)(g - d->glo) * d->n_rs, bytes, 0);
    }
    if (!rc)
        rc = lmp_dist_bcast(d->rtot, bytes, 0);
    if (!rc)
        memcpy(d->rs, d->rtot, bytes);
    d->rs = NULL;
    d->rcur = -1;
    return rc;
}

/* ---------------------------------------------------------------- solves ---------- */

int lmp_calib_dist_solve(lmp_calib_dist *d, const lmp_calib_method *row, void *ctx, lmp_calib_block *b,
                         const bool in_pass[LMP_LIN_COUNT])
{
    int rc = LMP_OK;
    if (!d->share_solves) {
        for (int w = 0; w < LMP_LIN_COUNT && !rc; w++)
            if (in_pass[w])
                rc = row->linear(ctx, b, (lmp_linear)w);
        return rc;
    }
    /* awqdist: a sparse block's expert linears (gate, up, down: every expert of each) run
     * on every rank from the same combined statistics, so that every rank installs the
     * same experts (the rows' linear_share hooks move dense results only) */
    const bool sparse = lmp_model_n_experts(b->m, b->layer) > 0;
    enum { ALL = -2 };
    int n = 0, owner[LMP_LIN_COUNT];
    for (int w = 0; w < LMP_LIN_COUNT; w++)
        if (in_pass[w] && !(sparse && w >= LMP_LIN_GATE))
            n++;
    for (int w = 0, i = 0; w < LMP_LIN_COUNT; w++)
        owner[w] = !in_pass[w] ? -1 : sparse && w >= LMP_LIN_GATE ? ALL : (int)part_holding(n, d->size, i++);
    /* this rank's linears, then every rank learns of any failure, then the results */
    for (int w = 0; w < LMP_LIN_COUNT && !rc; w++)
        if (owner[w] == d->rank || owner[w] == ALL)
            rc = row->linear(ctx, b, (lmp_linear)w);
    if ((rc = lmp_dist_status(rc)))
        return rc;
    for (int w = 0; w < LMP_LIN_COUNT && !rc; w++)
        if (owner[w] >= 0) {
            rc = row->linear_share(ctx, b, (lmp_linear)w, owner[w]);
            rc = lmp_dist_status(rc);
        }
    return rc;
}

int lmp_calib_share_qtensor(lmp_qtensor *q, int owner)
{
    if (lmp_dist_size() == 1)
        return LMP_OK;
    const bool mine = lmp_dist_rank() == owner;
    int64_t h[7] = {0};
    if (mine) {
        if (q->rows > 0 && q->scheme != LMP_QS_INTGROUP)
            return lmp_err(LMP_EUNSUPPORTED, "%s: only integer-group results can be shared among ranks", q->name);
        h[0] = q->rows;
        h[1] = q->cols;
        h[2] = q->ig.bits;
        h[3] = q->ig.group_size;
        h[4] = q->ig.sym;
        h[5] = q->ig.g_idx != NULL;
        h[6] = (int64_t)q->ig.row_bytes;
    }
    int rc = lmp_dist_bcast(h, sizeof h, owner);
    if (rc || h[0] == 0)
        return rc;
    if (!mine) {
        lmp_qtensor_free(q);
        if ((rc = lmp_qtensor_intgroup_init(q, h[0], h[1], (int)h[2], (int)h[3], h[4] != 0, h[5] != 0)))
            return rc;
        if (q->ig.row_bytes != h[6])
            return lmp_err(LMP_EINVAL, "shared tensor: row bytes %lld, expected %lld", (long long)q->ig.row_bytes,
                           (long long)h[6]);
    }
    const size_t ng = (size_t)(q->rows * q->ig.n_groups);
    if (!(rc = lmp_dist_bcast(q->name, sizeof q->name, owner)) &&
        !(rc = lmp_dist_bcast(q->ig.codes, (size_t)(q->rows * q->ig.row_bytes), owner)) &&
        !(rc = lmp_dist_bcast(q->ig.scales, ng * sizeof(float), owner)) &&
        !(rc = lmp_dist_bcast(q->ig.zeros, ng, owner)) && q->ig.g_idx)
        rc = lmp_dist_bcast(q->ig.g_idx, (size_t)q->cols * sizeof(int32_t), owner);
    return rc;
}

/* ---------------------------------------------------------------- grouped sums ---- */
/* (awqdist) for rows that walk the windows themselves: calib_dist.h, lmp_calib_gsum */

void lmp_calib_own_groups(int G, int rank, int size, int *glo, int *ghi)
{
    int64_t a, b;
    part_of(G, size, rank, &a, &b);
    *glo = (int)a;
    *ghi = (int)b;
}

int lmp_calib_window_group(int N, int G, int s)
{
    return (int)part_holding(N, G, s);
}

int lmp_calib_gsum_open(lmp_calib_gsum *s, size_t n, int G, bool split)
{
    memset(s, 0, sizeof *s);
    s->n = n;
    s->G = G;
    s->split = split && lmp_dist_size() > 1;
    s->rank = s->split ? lmp_dist_rank() : 0;
    s->size = s->split ? lmp_dist_size() : 1;
    lmp_calib_own_groups(G, s->rank, s->size, &s->glo, &s->ghi);
    s->cur = -1;
    s->slots = s->rank == 0 ? 1 : s->ghi - s->glo;
    s->part = calloc((size_t)(s->slots > 0 ? s->slots : 1) * (n ? n : 1), sizeof(double));
    s->total = calloc(n ? n : 1, sizeof(double));
    if (!s->part || !s->total)
        return lmp_err(LMP_ENOMEM, "out of memory (window groups' sums, %zu doubles)", n);
    return LMP_OK;
}

static void gsum_fold(lmp_calib_gsum *s, const double *p, bool first)
{
    for (size_t i = 0; i < s->n; i++)
        s->total[i] = first ? p[i] : s->total[i] + p[i];
}

double *lmp_calib_gsum_at(lmp_calib_gsum *s, int g)
{
    const int slot = s->rank == 0 ? 0 : g - s->glo;
    if (g != s->cur) {
        if (s->rank == 0 && s->cur >= 0) /* rank 0: the previous group is complete */
            gsum_fold(s, s->part, s->cur == 0);
        s->cur = g;
        memset(s->part + (size_t)slot * s->n, 0, s->n * sizeof(double));
    }
    return s->part + (size_t)slot * s->n;
}

int lmp_calib_gsum_end(lmp_calib_gsum *s)
{
    int rc = LMP_OK;
    const int last = (s->G < s->size ? s->G : s->size) - 1; /* the last rank with groups */
    const size_t bytes = s->n * sizeof(double);
    if (s->rank == 0) {
        if (s->cur >= 0)
            gsum_fold(s, s->part, s->cur == 0);
    } else if (s->rank <= last) {
        if (!(rc = lmp_dist_recv(s->total, bytes, s->rank - 1)))
            for (int g = s->glo; g < s->ghi; g++)
                gsum_fold(s, s->part + (size_t)(g - s->glo) * s->n, false);
    }
    if (s->split) {
        if (!rc && s->rank < last)
            rc = lmp_dist_send(s->total, bytes, s->rank + 1);
        if (!rc)
            rc = lmp_dist_bcast(s->total, bytes, last);
    }
    s->cur = -1;
    return rc;
}

void lmp_calib_gsum_close(lmp_calib_gsum *s)
{
    free(s->part);
    free(s->total);
    s->part = s->total = NULL;
}
