/*
 * Size-targeted plan (lib/quant/plan.c): Pareto fronts, and the budget solver checked
 * against brute force over every combination on small random cases; out-of-range
 * targets refused; the measurement on a tiny GGUF (errors decrease with bits, bytes as
 * the block layouts say); block weights in context (lmp_plan_context) on gutenberg-5M
 * (skipped without fixtures): one block-restored pass per block and round, the kept plan
 * within the budget and the least validation KLD of the plans measured, the candidates'
 * predictions left as they were.
 */
#include "test.h"
#include "lib/core/core.h"
#include "lib/quant/plan.h"
#include "lib/infer/kernels.h"
#include "formats/formats.h"

#include <math.h>

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_pareto(void)
{
    lmp_plan_cand c[] = {{.dt = LMP_DT_Q4_K, .bytes = 40, .err = 0.3},  {.dt = LMP_DT_Q2_K, .bytes = 20, .err = 1.0},
                         {.dt = LMP_DT_Q3_K, .bytes = 30, .err = 1.2},  {.dt = LMP_DT_Q6_K, .bytes = 60, .err = 0.1},
                         {.dt = LMP_DT_Q5_K, .bytes = 50, .err = 0.1},  {.dt = LMP_DT_Q8_0, .bytes = 80, .err = 0.05}};
    int n = lmp_plan_pareto(c, 6);
    CHECK(n == 4, "front of %d points, expected 4 (q3_K dominated by q2_K, q6_K by q5_K)", n);
    CHECK(c[0].dt == LMP_DT_Q2_K && c[1].dt == LMP_DT_Q4_K && c[2].dt == LMP_DT_Q5_K && c[3].dt == LMP_DT_Q8_0,
          "front order %d %d %d %d", c[0].dt, c[1].dt, c[2].dt, c[3].dt);
    for (int i = 1; i < n; i++)
        CHECK(c[i].bytes > c[i - 1].bytes && c[i].err < c[i - 1].err, "front point %d not monotone", i);
}

/* Exhaustive minimum over every combination; returns the best error (INFINITY if none). */
static double brute(const lmp_plan *p, uint64_t budget, int i, uint64_t used, double err)
{
    if (used > budget)
        return INFINITY;
    if (i == p->n)
        return err;
    double best = INFINITY;
    for (int k = 0; k < p->t[i].n_cand; k++) {
        double v = brute(p, budget, i + 1, used + p->t[i].cand[k].bytes, err + p->t[i].cand[k].err);
        if (v < best)
            best = v;
    }
    return best;
}

static void test_solver_brute(void)
{
    int cases = 0, exact = 0;
    for (int trial = 0; trial < 300; trial++) {
        lmp_plan p = {0};
        lmp_plan_tensor t[6];
        memset(t, 0, sizeof t);
        p.n = 2 + (int)(rnd() % 5);
        p.t = t;
        p.fixed_bytes = rnd() % 50;
        p.params = 1000;
        for (int i = 0; i < p.n; i++) {
            int nc = 1 + (int)(rnd() % 6);
            for (int k = 0; k < nc; k++) {
                t[i].cand[k].dt = (lmp_dtype)(LMP_DT_Q2_K + k % 5);
                t[i].cand[k].bytes = 1 + rnd() % 200;
                t[i].cand[k].err = (double)(rnd() % 100000) / 1000.0;
            }
            t[i].n_cand = lmp_plan_pareto(t[i].cand, nc);
        }
        uint64_t lo = p.fixed_bytes, hi = p.fixed_bytes;
        for (int i = 0; i < p.n; i++) {
            lo += t[i].cand[0].bytes;
            hi += t[i].cand[t[i].n_cand - 1].bytes;
        }
        uint64_t budget = lo + rnd() % (hi - lo + 1);
        int rc = lmp_plan_solve(&p, budget);
        cases++;
        if (rc) {
            CHECK(rc == 0, "solve failed on case %d: %s", trial, lmp_errmsg());
            continue;
        }
        double want = brute(&p, budget - p.fixed_bytes, 0, 0, 0);
        uint64_t bytes = p.fixed_bytes;
        double err = 0;
        for (int i = 0; i < p.n; i++) {
            bytes += t[i].cand[t[i].choice].bytes;
            err += t[i].cand[t[i].choice].err;
        }
        exact += fabs(err - want) < 1e-9 && bytes <= budget && bytes == p.bytes && fabs(err - p.err) < 1e-9;
    }
    CHECK(exact == cases, "%d of %d random cases equal the brute-force optimum within the budget", exact, cases);
}

/* Coarse cells (budget above LMP_PLAN_GRID bytes): the plan still fits the budget and is
 * no worse than the best plan under a budget reduced by n cells. */
static void test_solver_coarse(void)
{
    lmp_plan p = {0};
    lmp_plan_tensor t[4];
    memset(t, 0, sizeof t);
    p.n = 4;
    p.t = t;
    p.params = 10000000;
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < 5; k++) {
            t[i].cand[k].dt = (lmp_dtype)(LMP_DT_Q2_K + k);
            t[i].cand[k].bytes = (uint64_t)(1000003 + 377777 * k + 1231 * i);
            t[i].cand[k].err = 1.0 / (1 + k) / (1 + i);
        }
        t[i].n_cand = 5;
    }
    uint64_t budget = 6000000;
    CHECK(lmp_plan_solve(&p, budget) == 0, "coarse solve: %s", lmp_errmsg());
    CHECK(p.bytes <= budget, "coarse plan %llu bytes over the budget", (unsigned long long)p.bytes);
    uint64_t unit = (budget + LMP_PLAN_GRID - 1) / LMP_PLAN_GRID;
    double slack = brute(&p, budget - 4 * unit, 0, 0, 0), best = brute(&p, budget, 0, 0, 0);
    CHECK(p.err <= slack + 1e-12 && p.err >= best - 1e-12, "coarse plan error %g outside [%g, %g]", p.err, best,
          slack);
}

static void test_solver_range(void)
{
    lmp_plan p = {0};
    lmp_plan_tensor t[1];
    memset(t, 0, sizeof t);
    p.n = 1;
    p.t = t;
    p.fixed_bytes = 10;
    p.params = 100;
    t[0].cand[0] = (lmp_plan_cand){.dt = LMP_DT_Q2_K, .bytes = 20, .err = 1.0};
    t[0].cand[1] = (lmp_plan_cand){.dt = LMP_DT_Q4_K, .bytes = 40, .err = 0.2};
    t[0].n_cand = 2;
    CHECK(lmp_plan_solve(&p, 29) == LMP_EINVAL && strstr(lmp_errmsg(), "below the smallest"), "29 bytes: %s",
          lmp_errmsg());
    CHECK(lmp_plan_solve(&p, 51) == LMP_EINVAL && strstr(lmp_errmsg(), "above the largest"), "51 bytes: %s",
          lmp_errmsg());
    CHECK(lmp_plan_solve(&p, 30) == 0 && t[0].choice == 0 && p.bytes == 30, "30 bytes: the cheapest point");
    CHECK(lmp_plan_solve(&p, 49) == 0 && t[0].choice == 0, "49 bytes: q4_K does not fit");
    CHECK(lmp_plan_solve(&p, 50) == 0 && t[0].choice == 1 && p.bytes == 50, "50 bytes: the best point");
}

/* Every default candidate can be written and run: a quantizer, a matrix kernel, distinct,
 * and the imatrix-only types only with an importance matrix. */
static void test_default_types(void)
{
    lmp_dtype a[LMP_PLAN_MAX_CAND], b[LMP_PLAN_MAX_CAND];
    int na = lmp_plan_default_types(false, a, LMP_PLAN_MAX_CAND), nb = lmp_plan_default_types(true, b, LMP_PLAN_MAX_CAND);
    CHECK(na == 13 && nb == 19, "default candidates: %d without, %d with an importance matrix (13, 19 expected)", na, nb);
    bool dup = false, bad = false, imx_free = true;
    for (int i = 0; i < nb; i++) {
        const lmp_dtype_traits *t = lmp_dtype_info(b[i]);
        bad |= !t->from_f32 || !t->to_f32 || !lmp_gemm_supports(b[i]);
        for (int j = 0; j < i; j++)
            dup |= b[i] == b[j];
    }
    for (int i = 0; i < na; i++)
        imx_free &= a[i] != LMP_DT_IQ2_XXS && a[i] != LMP_DT_IQ2_XS && a[i] != LMP_DT_IQ2_S && a[i] != LMP_DT_IQ3_XXS &&
                    a[i] != LMP_DT_IQ1_S && a[i] != LMP_DT_IQ1_M;
    CHECK(!bad, "a default candidate lacks a quantizer or a matrix kernel");
    CHECK(!dup, "a default candidate is listed twice");
    CHECK(imx_free, "an imatrix-only type is offered without an importance matrix");
    CHECK(lmp_plan_default_types(true, b, 4) == 4, "the list is cut at max");
}

/* lmp_plan_context on gutenberg-5M (its HF folder through the converter's source), two
 * candidate types so that it stays fast: q4_0 and q8_0, 512 probe tokens. */
static void test_context(void)
{
    const char *model = fixture("models/gutenberg-5M");
    const char *text = fixture("text/tinystories-valid-sample.txt");
    if (!model || !text) {
        SKIP("fixtures models/gutenberg-5M and text/tinystories-valid-sample.txt not found (LMP_FIXTURES)");
        return;
    }
    lmp_gguf_src s;
    memset(&s, 0, sizeof s);
    if (lmp_convert_src_open(model, &s)) {
        CHECK(0, "open %s: %s", model, lmp_errmsg());
        lmp_convert_src_close(&s);
        return;
    }
    lmp_dtype types[2] = {LMP_DT_Q4_0, LMP_DT_Q8_0};
    lmp_plan_params pp = {0};
    pp.types = types;
    pp.n_types = 2;
    pp.src = &s;
    lmp_plan p;
    int rc = lmp_plan_measure(model, &pp, &p);
    CHECK(rc == 0, "measure: %s", lmp_errmsg());
    if (rc) {
        lmp_convert_src_close(&s);
        return;
    }
    lmp_plan_calib_params cp;
    lmp_plan_calib_default_params(&cp);
    cp.calib_path = text;
    cp.tokens = 512;
    cp.probes = 1;
    uint64_t budget = p.min_bytes + (p.max_bytes - p.min_bytes) / 2;
    rc = lmp_plan_calibrate(model, &pp, &cp, &p);
    CHECK(rc == 0 && p.calibrated, "calibrate: %s", lmp_errmsg());
    rc = rc ? rc : lmp_plan_solve(&p, budget);
    CHECK(rc == 0, "solve: %s", lmp_errmsg());
    int n = p.n, mixed = 0;
    double *err = malloc(sizeof(double) * (size_t)n * LMP_PLAN_MAX_CAND);
    int *solved = malloc(sizeof(int) * (size_t)n);
    for (int i = 0; err && solved && i < n; i++) {
        solved[i] = p.t[i].choice;
        mixed |= 1 << p.t[i].choice;
        for (int k = 0; k < p.t[i].n_cand; k++)
            err[(size_t)i * LMP_PLAN_MAX_CAND + k] = p.t[i].cand[k].err;
    }
    CHECK(mixed == 3, "the solved plan mixes q4_0 and q8_0 (%d)", mixed);
    lmp_plan_context_params xp;
    lmp_plan_context_default_params(&xp);
    CHECK(xp.iters == 2, "default rounds %d", xp.iters);
    xp.iters = 3;
    if (!rc && err && solved) {
        rc = lmp_plan_context(model, &pp, &cp, &xp, &p, budget);
        CHECK(rc == 0, "context: %s", lmp_errmsg());
    }
    if (!rc && err && solved) {
        CHECK(p.ctx_blocks == 6, "6 blocks measured (%d)", p.ctx_blocks);
        /* rounds measured: those re-solved and measured, plus one that moved nothing */
        CHECK(p.ctx_probes == 6 * p.ctx_tried || p.ctx_probes == 6 * (p.ctx_tried + 1), "%d block passes, %d plans",
              p.ctx_probes, p.ctx_tried);
        CHECK(p.val_windows == 2 && p.kld_solved > 0 && p.kld_val_solved > 0, "validation windows %d, KLD %g / %g",
              p.val_windows, p.kld_solved, p.kld_val_solved);
        /* restoring every block in turn: the falls add up to a positive amount (a single block's
         * may not: the in-context difference of a block at q8_0 is below the noise) */
        double fall = 0;
        bool pos = true;
        for (int b = 0; b < p.ctx_blocks; b++) {
            fall += p.kld_solved - p.ctx_block_kld[b];
            pos = pos && p.ctx_block_kld[b] > 0;
        }
        CHECK(pos && fall > 0.2 * p.kld_solved, "the blocks restored in context: %g of %g", fall, p.kld_solved);
        double vmin = p.kld_val_solved;
        for (int r = 0; r < p.ctx_tried; r++)
            vmin = p.ctx_kld_val[r] < vmin ? p.ctx_kld_val[r] : vmin;
        CHECK(p.kld_val_refined == vmin, "kept validation KLD %g, least measured %g", p.kld_val_refined, vmin);
        CHECK(p.ctx_kept > 0 || p.kld_refined == p.kld_solved, "kept the solved plan: its KLD");
        uint64_t bytes = p.fixed_bytes;
        double e = 0;
        bool same = true, back = true;
        for (int i = 0; i < n; i++) {
            bytes += p.t[i].cand[p.t[i].choice].bytes;
            e += p.t[i].cand[p.t[i].choice].err;
            same = same && p.t[i].choice == solved[i];
            for (int k = 0; k < p.t[i].n_cand; k++)
                back = back && p.t[i].cand[k].err == err[(size_t)i * LMP_PLAN_MAX_CAND + k];
        }
        CHECK(bytes == p.bytes && bytes <= budget, "kept plan %llu bytes, budget %llu", (unsigned long long)bytes,
              (unsigned long long)budget);
        CHECK(fabs(e - p.err) <= 1e-12 * e, "predicted error of the kept plan");
        CHECK(back, "the candidates' predictions changed");
        CHECK(p.ctx_kept > 0 || same, "kept 0 but the choices moved");
        CHECK(p.ctx_kept == 0 || !same, "kept a re-solved plan but the choices are the solved ones");
    }
    free(err);
    free(solved);
    lmp_plan_free(&p);
    lmp_convert_src_close(&s);
}

int main(void)
{
    test_default_types();
    test_pareto();
    test_solver_brute();
    test_solver_coarse();
    test_solver_range();
    test_context();
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}
