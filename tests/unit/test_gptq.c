/*
 * RTN and GPTQ (lib/quant/intquant.h) on synthetic correlated data: GPTQ's output error
 * below RTN's for 3 and 4 bits, sym and asym, with and without act-order and static
 * groups; GPTQ with an identity Hessian reproduces RTN; lazy batches agree with a plain
 * column-by-column implementation in double; dead columns; RTN within half a step;
 * thread-count independence.
 */
#include "lib/quant/intquant.h"
#include "test.h"

#include <math.h>
#include <string.h>

enum { N = 512, IN = 128, OUT = 64 };

static float X[N * IN], W[OUT * IN];
static double H[IN * IN];

/* X = Z A with A = I + 0.4 * (random rank-8 mixing), channels 3, 40, 77, 120 scaled x8:
 * strongly correlated inputs with a few high-variance channels. */
static void make_data(uint64_t seed)
{
    lmp_rng rng;
    lmp_rng_seed(&rng, seed);
    static float Z[N * IN], U[IN * 8], V[8 * IN];
    for (int i = 0; i < N * IN; i++)
        Z[i] = lmp_rng_normal(&rng);
    for (int i = 0; i < IN * 8; i++)
        U[i] = lmp_rng_normal(&rng);
    for (int i = 0; i < 8 * IN; i++)
        V[i] = lmp_rng_normal(&rng);
    for (int n = 0; n < N; n++)
        for (int j = 0; j < IN; j++) {
            double s = Z[n * IN + j];
            for (int k = 0; k < 8; k++) {
                double zu = 0;
                for (int m = 0; m < IN; m += 16) /* cheap partial projection */
                    zu += Z[n * IN + m] * U[m * 8 + k];
                s += 0.4 * zu / 3.0 * V[k * IN + j];
            }
            if (j == 3 || j == 40 || j == 77 || j == 120)
                s *= 8.0;
            X[n * IN + j] = (float)s;
        }
    for (int i = 0; i < OUT * IN; i++)
        W[i] = 0.05f * lmp_rng_normal(&rng);
}

static void build_hessian(void)
{
    memset(H, 0, sizeof H);
    int64_t ns = 0;
    /* three uneven batches exercise the running average */
    CHECK(lmp_gptq_hessian_add(H, IN, X, 100, &ns) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gptq_hessian_add(H, IN, X + 100 * IN, 300, &ns) == 0, "%s", lmp_errmsg());
    CHECK(lmp_gptq_hessian_add(H, IN, X + 400 * IN, N - 400, &ns) == 0, "%s", lmp_errmsg());
    CHECK(ns == N, "nsamples %lld", (long long)ns);
    /* equals 2/N X^T X (products summed in f32 per window of up to 512 tokens, added in
     * double: errors measured against sqrt(H_ii H_jj), the scale of |H_ij|) */
    double worst = 0;
    for (int i = 0; i < IN; i += 7)
        for (int j = 0; j < IN; j += 5) {
            double s = 0, si = 0, sj = 0;
            for (int n = 0; n < N; n++) {
                s += (double)X[n * IN + i] * X[n * IN + j];
                si += (double)X[n * IN + i] * X[n * IN + i];
                sj += (double)X[n * IN + j] * X[n * IN + j];
            }
            s *= 2.0 / N;
            double e = fabs(s - H[i * IN + j]) / (sqrt(si * sj) * (2.0 / N));
            if (e > worst)
                worst = e;
        }
    CHECK(worst < 1e-5, "running Hessian vs 2/N X^T X: worst error %g of sqrt(H_ii H_jj)", worst);
}

/* ||W X^T - Q X^T||_F^2 / ||W X^T||_F^2 */
static double out_err(const lmp_qtensor *q)
{
    static float Qd[OUT * IN];
    lmp_qtensor_dequant(q, Qd);
    double num = 0, den = 0;
    for (int r = 0; r < OUT; r++)
        for (int n = 0; n < N; n++) {
            double a = 0, b = 0;
            for (int j = 0; j < IN; j++) {
                a += (double)W[r * IN + j] * X[n * IN + j];
                b += (double)Qd[r * IN + j] * X[n * IN + j];
            }
            num += (a - b) * (a - b);
            den += a * a;
        }
    return num / den;
}

static void test_rtn_half_step(void)
{
    static const int bitsv[] = {2, 3, 4, 8};
    static const int gsv[] = {32, -1, 48};
    int bad = 0, total = 0;
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 3; gi++)
            for (int sym = 0; sym < 2; sym++)
                for (int f16 = 0; f16 < 2; f16++) {
                    lmp_rtn_params p;
                    lmp_rtn_default_params(&p);
                    p.bits = bitsv[bi];
                    p.group_size = gsv[gi];
                    p.sym = sym;
                    p.scale_f16 = f16;
                    lmp_qtensor q;
                    CHECK(lmp_quant_rtn(W, OUT, IN, &p, &q) == 0, "%s", lmp_errmsg());
                    static float Qd[OUT * IN];
                    lmp_qtensor_dequant(&q, Qd);
                    for (int r = 0; r < OUT; r++)
                        for (int c = 0; c < IN; c++) {
                            int g = lmp_ig_group(&q.ig, c);
                            float s = q.ig.scales[r * q.ig.n_groups + g];
                            /* at the clamped end the error is s/2 up to the rounding of s
                             * (f32: ~maxq * 2^-24 steps; f16 scales: maxq * 2^-11 steps) */
                            float tol = 0.5f * s + s * (float)(1 << p.bits) * 1e-6f +
                                        (f16 ? s * (float)((1 << p.bits) * 0x1p-11) : 0.0f);
                            total++;
                            if (!(fabsf(W[r * IN + c] - Qd[r * IN + c]) <= tol)) {
                                if (bad++ < 5)
                                    fprintf(stderr, "rtn b%d gs%d sym%d f16 %d (%d,%d): w %g q %g s %g\n",
                                            p.bits, p.group_size, sym, f16, r, c, W[r * IN + c],
                                            Qd[r * IN + c], s);
                            }
                        }
                    if (f16) {
                        bool exact = true;
                        for (int i = 0; i < OUT * q.ig.n_groups; i++)
                            exact &= lmp_f16_to_f32(lmp_f32_to_f16(q.ig.scales[i])) == q.ig.scales[i];
                        CHECK(exact, "scale_f16 gives f16-exact scales");
                    }
                    if (sym)
                        CHECK(q.ig.zeros[0] == 1 << (p.bits - 1), "sym zero %d", q.ig.zeros[0]);
                    lmp_qtensor_free(&q);
                }
    CHECK(bad == 0, "%d of %d RTN errors above half a step", bad, total);

    /* find_params facts of quant.py */
    float s;
    int z;
    lmp_intq_find_params(-1.0f, 3.0f, 4, true, false, &s, &z);
    CHECK(s == 6.0f / 15.0f && z == 8, "sym [-1,3]: s %g z %d", s, z);
    lmp_intq_find_params(-1.0f, 3.0f, 4, false, false, &s, &z);
    CHECK(s == 4.0f / 15.0f && z == 4, "asym [-1,3]: s %g z %d", s, z); /* round(3.75) */
    lmp_intq_find_params(0.5f, 3.0f, 4, false, false, &s, &z);
    CHECK(s == 3.0f / 15.0f && z == 0, "asym all positive keeps 0 in range: s %g z %d", s, z);
    lmp_intq_find_params(0.0f, 0.0f, 3, false, false, &s, &z);
    /* -xmin / scale = 1 / f32(2/7) = 3.4999998 in f32, as in torch: 3 */
    CHECK(s == 2.0f / 7.0f && z == 3, "all zero -> [-1, 1]: s %g z %d", s, z);
    lmp_intq_find_params(0.25f, 2.0f, 4, true, false, &s, &z);
    CHECK(s == 2.0f / 15.0f && z == 8, "sym non-negative group: xmin stays 0: s %g", s);
    CHECK(lmp_intq_code(0.5f * s + 8 * s, s, 8, 15) == 15 + 0 && lmp_intq_code(2.5f, 1.0f, 0, 15) == 2,
          "codes round half to even and clamp");
}

/* GPTQ's parameters for one of the tests' four modes (0 plain, 1 act-order, 2 act-order
 * with static groups, 3 per channel): groups of 32, lazy batches of 48 (not a multiple of
 * the group size: partial blocks) */
static void mode_params(lmp_gptq_params *gp, int bits, bool sym, int mode)
{
    lmp_gptq_default_params(gp);
    gp->bits = bits;
    gp->sym = sym;
    gp->group_size = mode == 3 ? -1 : 32;
    gp->act_order = mode == 1 || mode == 2;
    gp->static_groups = mode == 2;
    gp->blocksize = 48;
}

static void test_gptq_beats_rtn(void)
{
    static const int bitsv[] = {3, 4};
    for (int bi = 0; bi < 2; bi++)
        for (int sym = 0; sym < 2; sym++)
            for (int mode = 0; mode < 4; mode++) { /* plain, act-order, act+static, per-channel */
                lmp_gptq_params gp;
                mode_params(&gp, bitsv[bi], sym, mode);
                lmp_rtn_params rp;
                lmp_rtn_default_params(&rp);
                rp.bits = gp.bits;
                rp.sym = sym;
                rp.group_size = gp.group_size;
                lmp_qtensor qg, qr;
                double loss = -1;
                int rc = lmp_quant_gptq(W, OUT, IN, H, &gp, &qg, &loss);
                CHECK(rc == 0, "gptq: %s", lmp_errmsg());
                CHECK(lmp_quant_rtn(W, OUT, IN, &rp, &qr) == 0, "%s", lmp_errmsg());
                if (rc)
                    continue;
                double eg = out_err(&qg), er = out_err(&qr);
                printf("b%d %s %-10s rel. output error: rtn %.5f gptq %.5f (%.2fx), loss %.4g\n",
                       gp.bits, sym ? "sym " : "asym",
                       mode == 0 ? "g32" : mode == 1 ? "g32 act" : mode == 2 ? "g32 static" : "channel",
                       er, eg, er / eg, loss);
                CHECK(eg < er, "b%d sym%d mode %d: gptq %g not below rtn %g", gp.bits, sym, mode, eg, er);
                CHECK(isfinite(loss) && loss > 0, "loss %g", loss);
                CHECK((qg.ig.g_idx != NULL) == (mode == 1), "g_idx only for dynamic act-order");
                if (mode == 1) {
                    int counts[4] = {0};
                    for (int c = 0; c < IN; c++)
                        counts[qg.ig.g_idx[c]]++;
                    CHECK(counts[0] == 32 && counts[3] == 32, "act-order groups hold 32 columns each");
                    /* the high-variance channels come first: group 0 */
                    CHECK(qg.ig.g_idx[3] == 0 && qg.ig.g_idx[40] == 0 && qg.ig.g_idx[77] == 0,
                          "largest diag(H) columns in group 0");
                }
                lmp_qtensor_free(&qg);
                lmp_qtensor_free(&qr);
            }
}

static void test_identity_hessian(void)
{
    /* H = c I: no error propagates (Hinv is diagonal), so GPTQ is RTN with the same
     * parameters; act-order keeps the order (all diagonals equal, stable sort). */
    static double Hi[IN * IN];
    memset(Hi, 0, sizeof Hi);
    for (int i = 0; i < IN; i++)
        Hi[i * IN + i] = 3.0;
    for (int bits = 2; bits <= 8; bits += 2)
        for (int sym = 0; sym < 2; sym++)
            for (int act = 0; act < 2; act++) {
                lmp_gptq_params gp;
                lmp_gptq_default_params(&gp);
                gp.bits = bits;
                gp.sym = sym;
                gp.act_order = act;
                gp.group_size = act ? 64 : -1;
                lmp_rtn_params rp;
                lmp_rtn_default_params(&rp);
                rp.bits = bits;
                rp.sym = sym;
                rp.group_size = gp.group_size;
                lmp_qtensor qg, qr;
                CHECK(lmp_quant_gptq(W, OUT, IN, Hi, &gp, &qg, NULL) == 0, "%s", lmp_errmsg());
                CHECK(lmp_quant_rtn(W, OUT, IN, &rp, &qr) == 0, "%s", lmp_errmsg());
                char why[256];
                CHECK(lmp_qtensor_intgroup_equal(&qg, &qr, why, sizeof why),
                      "identity H, b%d sym%d act%d: gptq != rtn: %s", bits, sym, act, why);
                lmp_qtensor_free(&qg);
                lmp_qtensor_free(&qr);
            }
}

/* Plain Alg. 1 without lazy batches, in double, per channel, no act-order: after column
 * j, W[:, j+1:] -= err_j * Hinv[j, j+1:]. */
static void naive_gptq(int bits, bool sym, uint8_t *codes)
{
    static double Wd[OUT * IN], A[IN * IN];
    int maxq = (1 << bits) - 1;
    for (int i = 0; i < OUT * IN; i++)
        Wd[i] = W[i];
    memcpy(A, H, sizeof A);
    double mean = 0;
    for (int i = 0; i < IN; i++)
        mean += A[i * IN + i];
    for (int i = 0; i < IN; i++)
        A[i * IN + i] += 0.01 * mean / IN;
    /* inverse by Gauss-Jordan, then upper Cholesky factor U (Hinv = U^T U) */
    static double inv[IN * IN], U[IN * IN];
    for (int i = 0; i < IN; i++)
        for (int j = 0; j < IN; j++)
            inv[i * IN + j] = i == j;
    for (int k = 0; k < IN; k++) {
        double p = A[k * IN + k];
        for (int j = 0; j < IN; j++) {
            A[k * IN + j] /= p;
            inv[k * IN + j] /= p;
        }
        for (int i = 0; i < IN; i++)
            if (i != k) {
                double f = A[i * IN + k];
                for (int j = 0; j < IN; j++) {
                    A[i * IN + j] -= f * A[k * IN + j];
                    inv[i * IN + j] -= f * inv[k * IN + j];
                }
            }
    }
    memset(U, 0, sizeof U);
    for (int i = 0; i < IN; i++) { /* U^T U = inv, row by row */
        double s = inv[i * IN + i];
        for (int k = 0; k < i; k++)
            s -= U[k * IN + i] * U[k * IN + i];
        U[i * IN + i] = sqrt(s);
        for (int j = i + 1; j < IN; j++) {
            double t = inv[i * IN + j];
            for (int k = 0; k < i; k++)
                t -= U[k * IN + i] * U[k * IN + j];
            U[i * IN + j] = t / U[i * IN + i];
        }
    }
    for (int r = 0; r < OUT; r++) {
        float mn = W[r * IN], mx = W[r * IN];
        for (int c = 0; c < IN; c++) {
            mn = fminf(mn, W[r * IN + c]);
            mx = fmaxf(mx, W[r * IN + c]);
        }
        float s;
        int z;
        lmp_intq_find_params(mn, mx, bits, sym, true, &s, &z);
        double *w = Wd + r * IN;
        for (int j = 0; j < IN; j++) {
            int q = lmp_intq_code((float)w[j], s, z, maxq);
            codes[r * IN + j] = (uint8_t)q;
            double err = (w[j] - (double)s * (q - z)) / U[j * IN + j];
            for (int k = j + 1; k < IN; k++)
                w[k] -= err * U[j * IN + k];
        }
    }
}

static void test_lazy_vs_naive(void)
{
    static uint8_t ref[OUT * IN];
    for (int bits = 3; bits <= 4; bits++) {
        naive_gptq(bits, false, ref);
        for (int f64 = 0; f64 <= 1; f64++)
            for (int bs = 16; bs <= 128; bs *= 8) {
                lmp_gptq_params gp;
                lmp_gptq_default_params(&gp);
                gp.bits = bits;
                gp.sym = false;
                gp.group_size = -1;
                gp.blocksize = bs;
                gp.factor_f64 = f64;
                lmp_qtensor q;
                CHECK(lmp_quant_gptq(W, OUT, IN, H, &gp, &q, NULL) == 0, "%s", lmp_errmsg());
                int diff = 0;
                for (int r = 0; r < OUT; r++)
                    for (int c = 0; c < IN; c++)
                        diff += lmp_ig_code(&q.ig, r, c) != ref[r * IN + c];
                /* f32 vs double can flip a code sitting on a rounding boundary */
                CHECK(diff <= OUT * IN / 200, "b%d blocksize %d factor %s: %d of %d codes differ from plain Alg. 1",
                      bits, bs, f64 ? "f64" : "f32", diff, OUT * IN);
                printf("b%d blocksize %3d factor %s: %d of %d codes differ from the plain double version\n", bits,
                       bs, f64 ? "f64" : "f32", diff, OUT * IN);
                lmp_qtensor_free(&q);
            }
    }
}

/* Hd = the Hessian of X with input columns 5 and 77 never active (dead) */
static void dead_hessian(double *Hd)
{
    static float Xd[N * IN];
    memcpy(Xd, X, sizeof Xd);
    for (int n = 0; n < N; n++)
        Xd[n * IN + 5] = Xd[n * IN + 77] = 0.0f;
    memset(Hd, 0, sizeof(double) * IN * IN);
    int64_t ns = 0;
    lmp_gptq_hessian_add(Hd, IN, Xd, N, &ns);
}

static void test_dead_and_threads(void)
{
    static double Hd[IN * IN];
    dead_hessian(Hd);
    for (int act = 0; act < 2; act++) {
        lmp_gptq_params gp;
        lmp_gptq_default_params(&gp);
        gp.group_size = 32;
        gp.sym = false;
        gp.act_order = act;
        lmp_qtensor q;
        double loss;
        CHECK(lmp_quant_gptq(W, OUT, IN, Hd, &gp, &q, &loss) == 0, "%s", lmp_errmsg());
        static float Qd[OUT * IN];
        lmp_qtensor_dequant(&q, Qd);
        int nonfinite = 0, dead_nonzero = 0;
        for (int i = 0; i < OUT * IN; i++)
            nonfinite += !isfinite(Qd[i]);
        for (int r = 0; r < OUT; r++)
            dead_nonzero += Qd[r * IN + 5] != 0.0f || Qd[r * IN + 77] != 0.0f;
        CHECK(nonfinite == 0 && isfinite(loss), "dead columns: %d non-finite values", nonfinite);
        CHECK(dead_nonzero == 0, "dead columns dequantize to 0 (%d rows differ)", dead_nonzero);
        lmp_qtensor_free(&q);
    }

    /* same result with 1 and 2 threads */
    lmp_gptq_params gp;
    lmp_gptq_default_params(&gp);
    gp.group_size = 32;
    gp.act_order = true;
    lmp_qtensor a, b;
    double la, lb;
    lmp_set_num_threads(1);
    CHECK(lmp_quant_gptq(W, OUT, IN, H, &gp, &a, &la) == 0, "%s", lmp_errmsg());
    lmp_set_num_threads(2);
    CHECK(lmp_quant_gptq(W, OUT, IN, H, &gp, &b, &lb) == 0, "%s", lmp_errmsg());
    CHECK(lmp_qtensor_intgroup_equal(&a, &b, NULL, 0) && la == lb, "1 vs 2 threads differ");
    lmp_qtensor_free(&a);
    lmp_qtensor_free(&b);

    /* refusals */
    static float Wn[OUT * IN];
    memcpy(Wn, W, sizeof Wn);
    Wn[100] = NAN;
    CHECK(lmp_quant_gptq(Wn, OUT, IN, H, &gp, &a, NULL) == LMP_ERANGE, "NaN weight refused");
    CHECK(a.ig.codes == NULL, "nothing left allocated");
    lmp_rtn_params rp;
    lmp_rtn_default_params(&rp);
    CHECK(lmp_quant_rtn(Wn, OUT, IN, &rp, &a) == LMP_ERANGE, "rtn NaN refused");
    static double Hneg[IN * IN];
    memcpy(Hneg, H, sizeof Hneg);
    Hneg[0] = -50.0;
    gp.percdamp = 0;
    CHECK(lmp_quant_gptq(W, OUT, IN, Hneg, &gp, &a, NULL) == LMP_ERANGE, "indefinite H refused: %s",
          lmp_errmsg());
    /* positive definite in double, singular once rounded to f32 (1 - 1e-9 -> 1): the f32
     * factor meets a zero pivot and is redone in double (the same codes as factor_f64);
     * exactly singular is refused */
    {
        enum { R2 = 4, C2 = 2 };
        const float w2[R2 * C2] = {0.5f, -0.25f, 0.125f, 1.0f, -0.75f, 0.3f, 0.9f, -0.1f};
        double h2[C2 * C2] = {1.0, 1.0 - 1e-9, 1.0 - 1e-9, 1.0};
        lmp_gptq_params g2;
        lmp_gptq_default_params(&g2);
        g2.group_size = -1;
        g2.percdamp = 0;
        lmp_qtensor qa, qb;
        CHECK(lmp_quant_gptq(w2, R2, C2, h2, &g2, &qa, NULL) == 0, "f32 pivot lost: not redone in double: %s",
              lmp_errmsg());
        g2.factor_f64 = true;
        CHECK(lmp_quant_gptq(w2, R2, C2, h2, &g2, &qb, NULL) == 0, "%s", lmp_errmsg());
        CHECK(lmp_qtensor_intgroup_equal(&qa, &qb, NULL, 0), "the redone factor differs from factor_f64's");
        lmp_qtensor_free(&qa);
        lmp_qtensor_free(&qb);
        h2[1] = h2[2] = 1.0;
        g2.factor_f64 = false;
        CHECK(lmp_quant_gptq(w2, R2, C2, h2, &g2, &qa, NULL) == LMP_ERANGE &&
                  strstr(lmp_errmsg(), "not positive definite"),
              "singular H refused: %s", lmp_errmsg());
    }
    gp.percdamp = 0.01f;
    gp.bits = 9;
    CHECK(lmp_quant_gptq(W, OUT, IN, H, &gp, &a, NULL) == LMP_EINVAL, "9 bits refused");
}

/* The factor cache (q/k/v share a Hessian): a second and third linear on the same H
 * through lmp_quant_gptq_cached give the bits of lmp_quant_gptq (act-order and not); a
 * different tag or percdamp recomputes. */
static void test_factor_cache(void)
{
    static float W2[OUT * IN];
    for (int i = 0; i < OUT * IN; i++)
        W2[i] = W[(i * 7) % (OUT * IN)] * 1.5f;
    lmp_gptq_cache c = {0};
    for (int ao = 0; ao < 2; ao++)
        for (int k = 0; k < 4; k++) {
            const float *w = k % 2 ? W2 : W;
            lmp_gptq_params gp;
            lmp_gptq_default_params(&gp);
            gp.act_order = ao;
            gp.percdamp = k == 3 ? 0.05f : 0.01f;
            lmp_qtensor a, b;
            double la, lb;
            CHECK(lmp_quant_gptq(w, OUT, IN, H, &gp, &a, &la) == 0, "%s", lmp_errmsg());
            CHECK(lmp_quant_gptq_cached(w, OUT, IN, H, &gp, &c, 5 + (uint64_t)ao, &b, &lb) == 0, "%s", lmp_errmsg());
            bool same = la == lb && a.ig.n_groups == b.ig.n_groups &&
                        memcmp(a.ig.scales, b.ig.scales, sizeof(float) * (size_t)(OUT * a.ig.n_groups)) == 0;
            for (int r = 0; r < OUT && same; r++)
                for (int j = 0; j < IN && same; j++)
                    same = lmp_ig_code(&a.ig, r, j) == lmp_ig_code(&b.ig, r, j);
            CHECK(same, "cached factor (act-order %d, call %d) differs from lmp_quant_gptq", ao, k);
            CHECK(c.Hinv && c.tag == 5 + (uint64_t)ao && c.percdamp == gp.percdamp, "cache holds call %d's factor", k);
            lmp_qtensor_free(&a);
            lmp_qtensor_free(&b);
        }
    lmp_gptq_cache_free(&c);
    CHECK(!c.Hinv && !c.perm, "cache freed");
}

/* lmp_gptq_err_trace (GPTQ's tr(D H D^T) from its Losses, the error report's figure)
 * against the product lmp_gptq_quad_trace in double: bits 2-8, sym / asym, plain,
 * act-order, static groups, per channel, two dampings, a Hessian with dead columns. */
static void test_err_trace(void)
{
    static float Qd[OUT * IN], D[OUT * IN];
    static double Hd[IN * IN];
    dead_hessian(Hd);
    static const int bitsv[] = {2, 3, 4, 8};
    double worst = 0, worst_damp = 0;
    int cases = 0;
    for (int dead = 0; dead < 2; dead++)
        for (int bi = 0; bi < 4; bi++)
            for (int sym = 0; sym < 2; sym++)
                for (int mode = 0; mode < 4; mode++)
                    for (int dp = 0; dp < 2; dp++) {
                        const double *h = dead ? Hd : H;
                        lmp_gptq_params gp;
                        mode_params(&gp, bitsv[bi], sym, mode);
                        gp.percdamp = dp ? 0.1f : 0.01f;
                        lmp_qtensor q;
                        double loss = -1;
                        if (lmp_quant_gptq(W, OUT, IN, h, &gp, &q, &loss)) {
                            CHECK(0, "gptq: %s", lmp_errmsg());
                            continue;
                        }
                        lmp_qtensor_dequant(&q, Qd);
                        for (int i = 0; i < OUT * IN; i++)
                            D[i] = W[i] - Qd[i];
                        const double ref = lmp_gptq_quad_trace(D, h, OUT, IN);
                        const double id = lmp_gptq_err_trace(D, h, OUT, IN, gp.percdamp, loss);
                        const double rel = fabs(id - ref) / ref;
                        /* the damping term's share of 2 loss: how much cancellation */
                        const double share = (2.0 * loss - id) / (2.0 * loss);
                        if (rel > worst)
                            worst = rel;
                        if (share > worst_damp)
                            worst_damp = share;
                        CHECK(ref > 0 && rel < 1e-5, "dead %d b%d sym%d mode %d damp %g: identity %.10g vs product %.10g",
                              dead, gp.bits, sym, mode, gp.percdamp, id, ref);
                        cases++;
                        lmp_qtensor_free(&q);
                    }
    printf("GPTQ's tr(D H D^T) from its Losses vs the double product: worst relative difference %.3g over %d cases "
           "(damping term up to %.1f%% of 2 loss)\n", worst, cases, 100.0 * worst_damp);
}

int main(void)
{
    uint64_t seed = 20240611;
    make_data(seed);
    build_hessian();
    test_rtn_half_step();
    test_gptq_beats_rtn();
    test_identity_hessian();
    test_lazy_vs_naive();
    test_dead_and_threads();
    test_factor_cache();
    test_err_trace();
    if (t_fail)
        fprintf(stderr, "seed %llu\n", (unsigned long long)seed);
    return test_finish();
}
