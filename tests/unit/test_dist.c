/*
 * The process group (lib/core/dist.h). Alone (make test) it is the group of one: shares
 * cover everything, collectives are the identity, status passes through. Under
 * `mpirun -np N` (tests/cli/test_mpi.sh, with LMP_DEBUG_DIST_CHUNK small so that every
 * transfer crosses chunk boundaries) it checks against values computed independently on
 * each rank: shares tile [0, n) in rank order with sizes differing by at most one; sums
 * equal the rank-order sum (b0 + b1) + b2 ... bit for bit on every rank, and sums of exact
 * values equal their closed form whatever the rank count; allgather, gather and bcast move
 * the right rows; a failing rank is reported by every rank, naming it and its message.
 * Grouped calibration statistics (lib/calib/dist_stats.c): every rank's windows are its
 * window groups' windows, and the Hessian / xsq totals equal, bit for bit on every rank,
 * the groups summed from zero in window order and combined in group order computed here
 * alone (so 1, 2, 3 ranks give the same bits); a first group of -0.0 keeps its sign; the
 * experts' Hessians and token counts likewise (an expert absent from some groups); the
 * grouped sums of self-walking rows (lmp_calib_gsum, AWQ) split or not.
 * Failures of all ranks are summed so that rank 0's closing line counts them.
 */
#include "lib/core/core.h"
#include "lib/core/dist.h"
#include "lib/calib/dist_stats.h"
#include "lib/quant/intquant.h"
#include "test.h"

#include <string.h>

#include <math.h>

/* the value rank r contributes at index i: not exactly representable, so the order of
 * the additions shows in the bits */
static double val(int r, size_t i) { return 0.1 * (r + 1) + 1.0 / (double)(i + 3) + 1e-9 * (double)(r * 7 + 1); }

static void test_share(void)
{
    const int R = lmp_dist_rank(), S = lmp_dist_size();
    const int64_t ns[] = {0, 1, 2, 3, 5, 7, 100, 1001};
    for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
        int64_t n = ns[t];
        int64_t *all = calloc((size_t)S, 2 * sizeof(int64_t));
        lmp_dist_share(n, &all[2 * R], &all[2 * R + 1]);
        CHECK(lmp_dist_allgather_rows(all, S, 2 * sizeof(int64_t)) == 0, "allgather of shares");
        int64_t at = 0, mn = INT64_MAX, mx = 0;
        for (int r = 0; r < S; r++) {
            CHECK(all[2 * r] == at, "n=%lld: rank %d starts at %lld, want %lld", (long long)n, r,
                  (long long)all[2 * r], (long long)at);
            int64_t k = all[2 * r + 1] - all[2 * r];
            mn = k < mn ? k : mn;
            mx = k > mx ? k : mx;
            at = all[2 * r + 1];
        }
        CHECK(at == n, "n=%lld: shares end at %lld", (long long)n, (long long)at);
        CHECK(mx - mn <= 1, "n=%lld: share sizes %lld..%lld", (long long)n, (long long)mn, (long long)mx);
        free(all);
    }
}

static void test_sums(void)
{
    const int R = lmp_dist_rank(), S = lmp_dist_size();
    const size_t n = 10007; /* several chunks under LMP_DEBUG_DIST_CHUNK */
    double *d = malloc(n * sizeof *d), *want = malloc(n * sizeof *want);
    float *f = malloc(n * sizeof *f);
    int64_t *q = malloc(n * sizeof *q);
    double *x = malloc(n * sizeof *x);
    for (size_t i = 0; i < n; i++) {
        d[i] = val(R, i);
        want[i] = val(0, i);
        for (int r = 1; r < S; r++)
            want[i] += val(r, i); /* rank order */
        f[i] = (float)(R + 1) * 0.25f + (float)i;
        q[i] = (int64_t)(R + 1) * 1000000007LL + (int64_t)i * (i % 2 ? -1 : 1);
        x[i] = ldexp((double)((R + 1) * (int64_t)(i + 1)), -20); /* exact in any order */
    }
    CHECK(lmp_dist_sum_f64(d, n) == 0, "sum f64");
    CHECK(lmp_dist_sum_f32(f, n) == 0, "sum f32");
    CHECK(lmp_dist_sum_i64(q, n) == 0, "sum i64");
    CHECK(lmp_dist_sum_f64(x, n) == 0, "sum f64 exact");
    size_t bad = 0, badf = 0, badq = 0, badx = 0;
    const double tri = (double)S * (S + 1) / 2; /* sum of r + 1 */
    for (size_t i = 0; i < n; i++) {
        bad += memcmp(&d[i], &want[i], sizeof(double)) != 0;
        float wf = 0;
        for (int r = 0; r < S; r++)
            wf += (float)(r + 1) * 0.25f + (float)i;
        badf += memcmp(&f[i], &wf, sizeof(float)) != 0;
        badq += q[i] != (int64_t)tri * 1000000007LL + (int64_t)S * (int64_t)i * (i % 2 ? -1 : 1);
        badx += x[i] != ldexp(tri * (double)(i + 1), -20);
    }
    CHECK(bad == 0, "%zu f64 sums differ from the rank-order sum", bad);
    CHECK(badf == 0, "%zu f32 sums differ from the rank-order sum", badf);
    CHECK(badq == 0, "%zu i64 sums wrong", badq);
    CHECK(badx == 0, "%zu exact sums differ from the closed form (rank count %d)", badx, S);
    /* every rank holds the same bits: gather everyone's result and compare with rank 0's */
    double *all = malloc(sizeof(double) * (size_t)S * 64);
    memcpy(all + (size_t)R * 64, d + 5000, 64 * sizeof(double));
    CHECK(lmp_dist_allgather_rows(all, S, 64 * sizeof(double)) == 0, "allgather of results");
    for (int r = 1; r < S; r++)
        CHECK(memcmp(all, all + (size_t)r * 64, 64 * sizeof(double)) == 0, "rank %d's sum differs from rank 0's", r);
    free(all);
    CHECK(lmp_dist_sum_f64(NULL, 0) == 0, "empty sum");
    free(d);
    free(want);
    free(f);
    free(q);
    free(x);
}

static void test_rows(void)
{
    const int R = lmp_dist_rank(), S = lmp_dist_size();
    const int64_t n = 23;
    const size_t rb = 3001; /* odd row size, crosses chunk boundaries */
    unsigned char *a = malloc((size_t)n * rb), *g = malloc((size_t)n * rb);
    memset(a, 0xEE, (size_t)n * rb);
    memset(g, 0xEE, (size_t)n * rb);
    int64_t lo, hi;
    lmp_dist_share(n, &lo, &hi);
    for (int64_t i = lo; i < hi; i++)
        for (size_t b = 0; b < rb; b++)
            a[i * rb + b] = g[i * rb + b] = (unsigned char)(i * 31 + b * 7 + 1);
    CHECK(lmp_dist_allgather_rows(a, n, rb) == 0, "allgather rows");
    CHECK(lmp_dist_gather_rows(g, n, rb, 0) == 0, "gather rows");
    size_t bad = 0, badg = 0;
    for (int64_t i = 0; i < n; i++)
        for (size_t b = 0; b < rb; b++) {
            unsigned char w = (unsigned char)(i * 31 + b * 7 + 1);
            bad += a[i * rb + b] != w;
            /* gather: rank 0 has every row; another rank only its own, the rest untouched */
            unsigned char wg = R == 0 || (i >= lo && i < hi) ? w : 0xEE;
            badg += g[i * rb + b] != wg;
        }
    CHECK(bad == 0, "%zu bytes wrong after allgather", bad);
    CHECK(badg == 0, "%zu bytes wrong after gather to rank 0", badg);
    for (int root = 0; root < S; root++) {
        char buf[5003];
        for (size_t b = 0; b < sizeof buf; b++)
            buf[b] = (char)(R == root ? (int)(b * 13 + root) : -1);
        CHECK(lmp_dist_bcast(buf, sizeof buf, root) == 0, "bcast from %d", root);
        size_t wrong = 0;
        for (size_t b = 0; b < sizeof buf; b++)
            wrong += buf[b] != (char)(int)(b * 13 + root);
        CHECK(wrong == 0, "bcast from %d: %zu bytes wrong", root, wrong);
    }
    CHECK(lmp_dist_barrier() == 0, "barrier");
    free(a);
    free(g);
}

/* ---------------------------------------------------------------- grouped statistics */

enum { GC = 5, GT = 3 }; /* columns, tokens per window */

static void window_x(int s, float *X)
{
    for (int i = 0; i < GT * GC; i++)
        X[i] = (float)(0.37 * sin(1.3 * s + 0.7 * i) + 0.01 * (s + 1));
}

/* what one window adds, as the driver's hook would */
static void window_add(lmp_calib_stats *st, int s)
{
    float X[GT * GC];
    window_x(s, X);
    lmp_gptq_hessian_add(st->H[0], GC, X, GT, &st->ns[0]);
    for (int t = 0; t < GT; t++)
        for (int j = 0; j < GC; j++)
            st->xsq[0][j] += (double)X[t * GC + j] * X[t * GC + j];
    for (int j = 0; j < GC; j++)
        st->xsq[1][j] = -0.0; /* a statistic that is -0.0: its sign must survive */
    /* experts (awqdist): expert 0 sees every token of the window, expert 1 the first
     * token of every third window only (groups where it saw nothing merge as ens 0) */
    if (st->eH[LMP_IN_MLP]) {
        lmp_gptq_hessian_add(st->eH[LMP_IN_MLP][0], GC, X, GT, &st->ens[LMP_IN_MLP][0]);
        if (s % 3 == 1)
            lmp_gptq_hessian_add(st->eH[LMP_IN_MLP][1], GC, X + GC, 1, &st->ens[LMP_IN_MLP][1]);
    }
}

/* Expert Hessians (class MLP, 2 experts) of a stats set: allocated / freed. */
static void experts_alloc(lmp_calib_stats *st, double *buf)
{
    st->e_n = 2;
    st->eH[LMP_IN_MLP] = calloc(2, sizeof(double *));
    st->ens[LMP_IN_MLP] = calloc(2, sizeof(int64_t));
    st->eH[LMP_IN_MLP][0] = buf;
    st->eH[LMP_IN_MLP][1] = buf + GC * GC;
}
static void experts_release(lmp_calib_stats *st)
{
    free(st->eH[LMP_IN_MLP]);
    free(st->ens[LMP_IN_MLP]);
    st->eH[LMP_IN_MLP] = NULL;
    st->ens[LMP_IN_MLP] = NULL;
}

/* H <- H merged with group mean P as calib_dist.h says (computed here alone) */
static void ref_merge(double *H, const double *P, int64_t *n, int64_t nP, bool first)
{
    if (first || *n == 0) {
        memcpy(H, P, sizeof(double) * GC * GC);
    } else if (nP > 0) {
        double keep = (double)*n / (double)(*n + nP), take = (double)nP / (double)(*n + nP);
        for (int i = 0; i < GC * GC; i++)
            H[i] = H[i] * keep + P[i] * take;
    }
    *n = (first ? 0 : *n) + nP;
}

static void test_grouped(int N)
{
    const int S = lmp_dist_size(), R = lmp_dist_rank();
    lmp_calib_method row = {.name = "t", .stats = LMP_STAT_HESSIAN | LMP_STAT_XSQ};
    lmp_calib_dist d;
    lmp_calib_dist_open(&d, &row, N);
    const int G = N < LMP_CALIB_GROUPS ? N : LMP_CALIB_GROUPS;
    CHECK(d.grouped && d.G == G, "N=%d: %d groups (want %d)", N, d.G, G);
    /* this rank's windows are exactly those of its groups */
    int64_t glo, ghi;
    lmp_dist_share(G, &glo, &ghi);
    int wlo = 0, whi = 0, a, b;
    if (ghi > glo) {
        lmp_calib_group_windows(N, G, (int)glo, &wlo, &a);
        lmp_calib_group_windows(N, G, (int)ghi - 1, &b, &whi);
    }
    CHECK(d.lo == wlo && d.hi == whi, "N=%d rank %d: windows [%d, %d), want [%d, %d)", N, R, d.lo, d.hi, wlo, whi);
    for (int g = 0; g < G; g++)
        CHECK(lmp_calib_group_owner(G, g, S) == (g >= glo && g < ghi ? R : lmp_calib_group_owner(G, g, S)) &&
                  ((g >= glo && g < ghi) == (lmp_calib_group_owner(G, g, S) == R)),
              "N=%d: owner of group %d", N, g);
    int64_t share = d.hi - d.lo, total_w = share;
    lmp_dist_sum_i64(&total_w, 1);
    CHECK(total_w == N, "N=%d: the ranks' windows add up to %lld", N, (long long)total_w);

    lmp_calib_block blk;
    memset(&blk, 0, sizeof blk);
    for (int k = 0; k < LMP_IN_COUNT; k++)
        blk.cols[k] = GC;
    blk.n_experts = 2;
    blk.e_hidden = blk.e_ff = GC;
    lmp_calib_stats tot;
    memset(&tot, 0, sizeof tot);
    double *teH = calloc(2 * GC * GC, sizeof(double));
    experts_alloc(&tot, teH);
    tot.H[0] = calloc(GC * GC, sizeof(double));
    tot.xsq[0] = calloc(GC, sizeof(double));
    tot.xsq[1] = calloc(GC, sizeof(double));
    CHECK(lmp_calib_dist_pass_begin(&d, &tot, 1, &blk) == 0, "pass begin");
    for (int s = d.lo; s < d.hi; s++) {
        lmp_calib_stats *into = NULL;
        CHECK(lmp_calib_dist_window(&d, s, &into) == 0 && into, "window %d", s);
        if (into)
            window_add(into, s);
    }
    CHECK(lmp_calib_dist_pass_end(&d) == 0, "pass end");

    /* the reference, alone: groups from zero in window order, combined in group order */
    double H[GC * GC], q[GC], q1[GC], gH[GC * GC], gq[GC], gq1[GC], eH[2 * GC * GC], geH[2 * GC * GC];
    int64_t ns = 0, ens[2] = {0, 0};
    for (int g = 0; g < G; g++) {
        lmp_calib_stats p;
        memset(&p, 0, sizeof p);
        memset(gH, 0, sizeof gH);
        memset(gq, 0, sizeof gq);
        memset(gq1, 0, sizeof gq1);
        memset(geH, 0, sizeof geH);
        experts_alloc(&p, geH);
        p.H[0] = gH;
        p.xsq[0] = gq;
        p.xsq[1] = gq1;
        int lo, hi;
        lmp_calib_group_windows(N, G, g, &lo, &hi);
        for (int s = lo; s < hi; s++)
            window_add(&p, s);
        for (int e = 0; e < 2; e++)
            ref_merge(eH + e * GC * GC, geH + e * GC * GC, &ens[e], p.ens[LMP_IN_MLP][e], g == 0);
        experts_release(&p);
        if (g == 0) {
            memcpy(H, gH, sizeof H);
            memcpy(q, gq, sizeof q);
            memcpy(q1, gq1, sizeof q1);
            ns = p.ns[0];
            continue;
        }
        double keep = (double)ns / (double)(ns + p.ns[0]), take = (double)p.ns[0] / (double)(ns + p.ns[0]);
        for (int i = 0; i < GC * GC; i++)
            H[i] = H[i] * keep + gH[i] * take;
        for (int j = 0; j < GC; j++) {
            q[j] += gq[j];
            q1[j] += gq1[j];
        }
        ns += p.ns[0];
    }
    CHECK(tot.ns[0] == ns && ns == (int64_t)N * GT, "N=%d: %lld tokens, want %lld", N, (long long)tot.ns[0],
          (long long)ns);
    CHECK(memcmp(tot.H[0], H, sizeof H) == 0, "N=%d: the Hessian is the group-order combination, bit for bit", N);
    CHECK(memcmp(tot.xsq[0], q, sizeof q) == 0, "N=%d: xsq is the group-order sum, bit for bit", N);
    CHECK(signbit(tot.xsq[1][0]) && tot.xsq[1][0] == 0.0, "N=%d: a -0.0 statistic keeps its sign", N);
    CHECK(tot.ens[LMP_IN_MLP][0] == ns && tot.ens[LMP_IN_MLP][1] == ens[1] && ens[1] == (N + 1) / 3,
          "N=%d: expert token counts %lld / %lld, want %lld / %lld", N, (long long)tot.ens[LMP_IN_MLP][0],
          (long long)tot.ens[LMP_IN_MLP][1], (long long)ns, (long long)ens[1]);
    CHECK(memcmp(teH, eH, sizeof eH) == 0, "N=%d: the experts' Hessians are the group-order combination, bit for bit",
          N);
    /* and the result is not that of one running sum over all windows (the grouping is real) */
    if (N > G) {
        double H1[GC * GC] = {0};
        lmp_calib_stats one;
        memset(&one, 0, sizeof one);
        double o0[GC] = {0}, o1[GC] = {0};
        one.H[0] = H1;
        one.xsq[0] = o0;
        one.xsq[1] = o1;
        for (int s = 0; s < N; s++)
            window_add(&one, s);
        double err = 0;
        for (int i = 0; i < GC * GC; i++)
            err = fmax(err, fabs(H1[i] - H[i]) / (fabs(H1[i]) + 1e-30));
        CHECK(err < 1e-12, "N=%d: grouped Hessian within %.1e of the running one", N, err);
    }
    lmp_calib_dist_close(&d);
    experts_release(&tot);
    free(teH);
    free(tot.H[0]);
    free(tot.xsq[0]);
    free(tot.xsq[1]);
}

/* Grouped sums of self-walking rows (lmp_calib_gsum, AWQ): n values per group, each
 * rank adding only its groups' windows, against the group-order combination computed
 * alone; an unsplit gsum (every group here) gives the same bits. */
static void test_gsum(int N)
{
    enum { GN = 7 };
    const int G = N < LMP_CALIB_GROUPS ? N : LMP_CALIB_GROUPS;
    double ref[GN], gp[GN];
    for (int g = 0; g < G; g++) {
        int lo, hi;
        lmp_calib_group_windows(N, G, g, &lo, &hi);
        memset(gp, 0, sizeof gp);
        for (int s = lo; s < hi; s++)
            for (int i = 0; i < GN; i++)
                gp[i] += val(s, (size_t)i) * (1 + 1e-3 * s);
        for (int i = 0; i < GN; i++)
            ref[i] = g == 0 ? gp[i] : ref[i] + gp[i];
    }
    for (int split = 0; split < 2; split++) {
        lmp_calib_gsum gs;
        CHECK(lmp_calib_gsum_open(&gs, GN, G, split) == 0, "gsum open");
        int glo, ghi, wlo = 0, whi = 0, x;
        lmp_calib_own_groups(G, gs.rank, gs.size, &glo, &ghi);
        if (ghi > glo) {
            lmp_calib_group_windows(N, G, glo, &wlo, &x);
            lmp_calib_group_windows(N, G, ghi - 1, &x, &whi);
        }
        for (int s = wlo; s < whi; s++) {
            double *p = lmp_calib_gsum_at(&gs, lmp_calib_window_group(N, G, s));
            for (int i = 0; i < GN; i++)
                p[i] += val(s, (size_t)i) * (1 + 1e-3 * s);
        }
        CHECK(lmp_calib_gsum_end(&gs) == 0, "gsum end");
        CHECK(memcmp(gs.total, ref, sizeof ref) == 0, "N=%d %s: grouped sums are the group-order combination, bit for bit",
              N, split ? "split" : "unsplit");
        lmp_calib_gsum_close(&gs);
    }
}

static void test_status(void)
{
    const int R = lmp_dist_rank(), S = lmp_dist_size();
    CHECK(lmp_dist_status(0) == 0, "status: nobody failed");
    if (S == 1) {
        CHECK(lmp_dist_status(LMP_EFORMAT) == LMP_EFORMAT, "alone, status passes rc through");
        return;
    }
    /* the last rank fails; every rank must learn it, rank 0 with its message */
    int rc = R == S - 1 ? lmp_err(LMP_EFORMAT, "boom from the last rank") : 0;
    int got = lmp_dist_status(rc);
    if (R == S - 1) {
        CHECK(got == LMP_EFORMAT, "the failing rank keeps its rc (%d)", got);
    } else {
        char want[64];
        snprintf(want, sizeof want, "rank %d of %d", S - 1, S);
        CHECK(got == LMP_EIO, "another rank gets LMP_EIO (%d)", got);
        CHECK(strstr(lmp_errmsg(), want) && strstr(lmp_errmsg(), "boom from the last rank"),
              "message names the rank and its error: %s", lmp_errmsg());
    }
}

int main(int argc, char **argv)
{
    if (lmp_dist_init(&argc, &argv)) {
        fprintf(stderr, "init: %s\n", lmp_errmsg());
        return 1;
    }
    const int S = lmp_dist_size();
    if (S == 1) {
        int64_t lo, hi;
        lmp_dist_share(10, &lo, &hi);
        CHECK(lo == 0 && hi == 10 && lmp_dist_root() && !lmp_dist_active(), "alone: the group of one");
        double x[3] = {0.1, 0.2, 0.3};
        CHECK(lmp_dist_sum_f64(x, 3) == 0 && x[0] == 0.1 && x[2] == 0.3, "alone: sums are the identity");
    }
    test_share();
    test_sums();
    test_rows();
    test_grouped(1);
    test_grouped(5);
    test_grouped(8);
    test_grouped(21);
    test_gsum(1);
    test_gsum(5);
    test_gsum(8);
    test_gsum(21);
    /* the counts of every rank, before the status test silences the others' stderr */
    int64_t counts[2] = {t_pass, t_fail};
    if (lmp_dist_sum_i64(counts, 2) == 0) {
        t_pass = (int)counts[0];
        t_fail = (int)counts[1];
    } else {
        t_fail++;
    }
    if (lmp_dist_root())
        fprintf(stderr, "%d ranks\n", S);
    int before = t_fail;
    test_status();
    /* status failures of other ranks: one more agreement round tells rank 0 */
    int64_t sf = t_fail - before;
    lmp_dist_sum_i64(&sf, 1);
    t_fail = before + (int)sf;
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return lmp_dist_end(t_fail ? 1 : 0);
}
