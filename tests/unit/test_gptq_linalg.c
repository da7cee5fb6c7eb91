/*
 * GPTQ / SparseGPT dense kernels (lib/quant/gptq_linalg.c) at sizes where OpenBLAS would
 * split the work among threads: X^T X against a plain double sum; the upper Cholesky
 * factor of H^-1 against LAPACK's potrf / potri / potrf in double (and U^T U H = I);
 * C -= A B, tr(A H A^T) and AWQ's f32 products against plain sums; refusal of an indefinite matrix naming the column; and the
 * same bits with 1, 2 and 3 threads for each kernel and for lmp_quant_gptq with act-order
 * and groups on a 256 x 768 matrix.
 */
#include "lib/quant/intquant.h"
#include "test.h"

#include <lapacke.h>
#include <math.h>

enum { C = 700, N = 1500, R = 256, CQ = 768 };

static float *rand_x(int64_t n, int64_t c, uint64_t seed)
{
    lmp_rng rng;
    lmp_rng_seed(&rng, seed);
    float *X = malloc(sizeof(float) * (size_t)(n * c));
    for (int64_t i = 0; i < n; i++) {
        float common = lmp_rng_normal(&rng);
        for (int64_t j = 0; j < c; j++) /* correlated columns, a few large ones */
            X[i * c + j] = (lmp_rng_normal(&rng) + 0.5f * common) * (j % 97 == 3 ? 6.0f : 1.0f);
    }
    return X;
}

static double xdot(const float *X, int i, int j)
{
    double s = 0;
    for (int n = 0; n < N; n++)
        s += (double)X[n * C + i] * X[n * C + j];
    return s;
}

/* The Hessian sums up to 512 tokens' products in f32 before adding them in double: errors
 * are measured against sqrt(S_ii S_jj) (S = X^T X in double), the scale of |S_ij|;
 * a sum in f32 of 512 products errs by about 1e-6 of it, a wrong tile or token by O(1). */
static void test_syrk(const float *X)
{
    double *dg = malloc(sizeof(double) * C);
    for (int i = 0; i < C; i++)
        dg[i] = xdot(X, i, i);
    double *H = malloc(sizeof(double) * C * C);
    for (int i = 0; i < C * C; i++)
        H[i] = 1.0;
    /* beta scales the old upper triangle; the lower one is not touched */
    CHECK(lmp_gptq_syrk_acc(H, C, X, N, 0.5, 0.25) == 0, "%s", lmp_errmsg());
    double worst = 0;
    int lower_touched = 0;
    for (int i = 0; i < C; i += 13)
        for (int j = 0; j < C; j += 7) {
            if (j < i) {
                lower_touched += H[i * C + j] != 1.0;
                continue;
            }
            double want = 0.25 + 0.5 * xdot(X, i, j);
            double e = fabs(want - H[i * C + j]) / (0.5 * sqrt(dg[i] * dg[j]));
            worst = e > worst ? e : worst;
        }
    CHECK(worst < 1e-5, "upper triangle vs plain double sum: error %g of sqrt(S_ii S_jj)", worst);
    CHECK(lower_touched == 0, "%d lower entries changed", lower_touched);
    lmp_gptq_sym_from_upper(H, C);
    int asym = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++)
            asym += H[i * C + j] != H[j * C + i];
    CHECK(asym == 0, "sym_from_upper: %d entries differ from their mirror", asym);

    /* running Hessian: uneven calls equal 2/N X^T X */
    int64_t ns = 0;
    memset(H, 0, sizeof(double) * C * C);
    CHECK(lmp_gptq_hessian_add(H, C, X, 300, &ns) == 0 && lmp_gptq_hessian_add(H, C, X + 300 * C, N - 300, &ns) == 0,
          "%s", lmp_errmsg());
    worst = 0;
    for (int i = 0; i < C; i += 17)
        for (int j = 0; j < C; j += 11) {
            double s = xdot(X, i, j) * (2.0 / N);
            double e = fabs(s - H[i * C + j]) / (sqrt(dg[i] * dg[j]) * (2.0 / N));
            worst = e > worst ? e : worst;
        }
    CHECK(ns == N && worst < 1e-5, "hessian_add vs 2/N X^T X: error %g of sqrt(S_ii S_jj)", worst);
    /* the upper-triangle form over three uneven windows, mirrored once at the end, is
     * bitwise the full form (the lower triangle, poisoned, is neither read nor written) */
    double *Hu = malloc(sizeof(double) * C * C);
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++)
            Hu[i * C + j] = j >= i ? 0.0 : NAN;
    int64_t nu = 0;
    ns = 0;
    memset(H, 0, sizeof(double) * C * C);
    const int cuts[4] = {0, 137, 300, N};
    int rcs = 0;
    for (int k = 0; k < 3; k++) {
        rcs |= lmp_gptq_hessian_add(H, C, X + cuts[k] * C, cuts[k + 1] - cuts[k], &ns);
        rcs |= lmp_gptq_hessian_add_upper(Hu, C, X + cuts[k] * C, cuts[k + 1] - cuts[k], &nu);
    }
    int lower_nan = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < i; j++)
            lower_nan += isnan(Hu[i * C + j]);
    CHECK(rcs == 0 && nu == N && lower_nan == C * (C - 1) / 2, "hessian_add_upper left the lower triangle (%d)",
          lower_nan);
    lmp_gptq_sym_from_upper(Hu, C);
    CHECK(memcmp(H, Hu, sizeof(double) * C * C) == 0, "hessian_add_upper + one mirror != hessian_add per window");
    free(Hu);
    free(H);
    free(dg);
}

/* H (full) = 2/N X^T X + damp I */
static double *make_h(const float *X)
{
    double *H = calloc((size_t)C * C, sizeof(double));
    int64_t ns = 0;
    lmp_gptq_hessian_add(H, C, X, N, &ns);
    double mean = 0;
    for (int i = 0; i < C; i++)
        mean += H[i * C + i];
    for (int i = 0; i < C; i++)
        H[i * C + i] += 0.01 * mean / C;
    return H;
}

static void test_hinv(const double *H)
{
    double *A = malloc(sizeof(double) * C * C), *B = malloc(sizeof(double) * C * C);
    memcpy(A, H, sizeof(double) * C * C);
    int64_t bad = -1;
    CHECK(lmp_gptq_hinv_upper(A, C, &bad) == 0 && bad == 0, "%s", lmp_errmsg());
    /* LAPACK in double: H^-1 by potrf + potri, then its upper Cholesky factor */
    memcpy(B, H, sizeof(double) * C * C);
    lapack_int info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'L', C, B, C);
    if (!info)
        info = LAPACKE_dpotri(LAPACK_ROW_MAJOR, 'L', C, B, C);
    for (int i = 0; i < C; i++)
        for (int j = i + 1; j < C; j++)
            B[i * C + j] = B[j * C + i];
    if (!info)
        info = LAPACKE_dpotrf(LAPACK_ROW_MAJOR, 'U', C, B, C);
    CHECK(info == 0, "LAPACK reference failed (%d)", (int)info);
    double worst = 0, umax = 0;
    int below = 0, diag = 0;
    for (int i = 0; i < C; i++)
        for (int j = 0; j < C; j++) {
            if (j < i) {
                below += A[i * C + j] != 0.0;
                continue;
            }
            umax = fmax(umax, fabs(B[i * C + j]));
        }
    for (int i = 0; i < C; i++) {
        diag += !(A[i * C + i] > 0);
        for (int j = i; j < C; j++)
            worst = fmax(worst, fabs(A[i * C + j] - B[i * C + j]));
    }
    CHECK(below == 0 && diag == 0, "U upper with a positive diagonal (%d below, %d diagonal)", below, diag);
    CHECK(worst / umax < 1e-10, "U vs LAPACK potrf/potri/potrf: max difference %g of max |U| %g", worst, umax);
    printf("hinv_upper [%d]: max |U - U_lapack| / max |U| = %.3g\n", C, worst / umax);
    /* U^T U H = I on a few columns */
    double res = 0;
    double *v = malloc(sizeof(double) * C), *w = malloc(sizeof(double) * C);
    for (int col = 0; col < C; col += 97) {
        for (int i = 0; i < C; i++)
            v[i] = H[i * C + col];
        for (int i = 0; i < C; i++) { /* w = U v */
            double s = 0;
            for (int j = i; j < C; j++)
                s += A[i * C + j] * v[j];
            w[i] = s;
        }
        for (int j = 0; j < C; j++) { /* v = U^T w */
            double s = 0;
            for (int i = 0; i <= j; i++)
                s += A[i * C + j] * w[i];
            res = fmax(res, fabs(s - (j == col)));
        }
    }
    CHECK(res < 1e-8, "U^T U H - I: max %g", res);
    free(v);
    free(w);

    /* indefinite: a negative diagonal entry is named (1-based column) */
    memcpy(A, H, sizeof(double) * C * C);
    A[300 * C + 300] = -1.0;
    CHECK(lmp_gptq_hinv_upper(A, C, &bad) == LMP_ERANGE && bad > 0 && bad <= C, "indefinite refused (bad %lld)",
          (long long)bad);
    memset(A, 0, sizeof(double) * C * C);
    for (int i = 0; i < C; i++)
        A[i * C + i] = i == C - 5 ? 0.0 : 1.0;
    CHECK(lmp_gptq_hinv_upper(A, C, &bad) == LMP_ERANGE && bad == C - 4, "zero pivot at column %d named (got %lld)",
          C - 4, (long long)bad);
    free(A);
    free(B);
}

/* The float factor (GPTQ's default) against the double one on the same H, thread-count
 * independence, and the refusals. */
static void test_hinv_f32(const double *H)
{
    double *D = malloc(sizeof(double) * C * C);
    float *F[3];
    memcpy(D, H, sizeof(double) * C * C);
    int64_t bad = -1;
    CHECK(lmp_gptq_hinv_upper(D, C, &bad) == 0, "%s", lmp_errmsg());
    for (int t = 0; t < 3; t++) {
        lmp_set_num_threads(t + 1);
        F[t] = malloc(sizeof(float) * C * C);
        for (int64_t i = 0; i < (int64_t)C * C; i++)
            F[t][i] = (float)H[i];
        bad = -1;
        CHECK(lmp_gptq_hinv_upper_f32(F[t], C, &bad) == 0 && bad == 0, "f32: %s", lmp_errmsg());
    }
    lmp_set_num_threads(0);
    for (int t = 1; t < 3; t++)
        CHECK(memcmp(F[0], F[t], sizeof(float) * C * C) == 0, "hinv_upper_f32: 1 and %d threads differ", t + 1);
    double worst = 0, umax = 0;
    int below = 0, diag = 0;
    for (int i = 0; i < C; i++) {
        diag += !(F[0][i * C + i] > 0);
        for (int j = 0; j < C; j++) {
            if (j < i) {
                below += F[0][i * C + j] != 0.0f;
                continue;
            }
            umax = fmax(umax, fabs(D[i * C + j]));
            worst = fmax(worst, fabs(F[0][i * C + j] - D[i * C + j]));
        }
    }
    CHECK(below == 0 && diag == 0, "f32 U upper with a positive diagonal (%d below, %d diagonal)", below, diag);
    /* the float rounding of H alone moves U by ~cond(H) x 6e-8 */
    CHECK(worst / umax < 1e-5 && worst > 0, "f32 U vs double U: max difference %g of max |U| %g", worst, umax);
    printf("hinv_upper_f32 [%d]: max |U_f32 - U_f64| / max |U| = %.3g\n", C, worst / umax);
    /* indefinite: named as in double */
    for (int64_t i = 0; i < (int64_t)C * C; i++)
        F[1][i] = (float)H[i];
    F[1][300 * C + 300] = -1.0f;
    CHECK(lmp_gptq_hinv_upper_f32(F[1], C, &bad) == LMP_ERANGE && bad > 0 && bad <= C,
          "f32 indefinite refused (bad %lld)", (long long)bad);
    memset(F[1], 0, sizeof(float) * C * C);
    for (int i = 0; i < C; i++)
        F[1][i * C + i] = i == C - 5 ? 0.0f : 1.0f;
    CHECK(lmp_gptq_hinv_upper_f32(F[1], C, &bad) == LMP_ERANGE && bad == C - 4,
          "f32 zero pivot at column %d named (got %lld)", C - 4, (long long)bad);
    for (int t = 0; t < 3; t++)
        free(F[t]);
    free(D);
}

static void test_gemm(void)
{
    enum { M = 600, K = 128, NN = 1100 };
    float *A = rand_x(M, K, 5), *B = rand_x(K, NN, 6), *Cm = rand_x(M, NN, 7);
    float *C0 = malloc(sizeof(float) * M * NN);
    memcpy(C0, Cm, sizeof(float) * M * NN);
    lmp_gptq_gemm_sub(Cm, NN, A, K, B, NN, M, NN, K);
    double worst = 0;
    for (int i = 0; i < M; i += 7)
        for (int j = 0; j < NN; j += 5) {
            double s = C0[i * NN + j];
            double mag = fabs(s);
            for (int k = 0; k < K; k++) {
                s -= (double)A[i * K + k] * B[k * NN + j];
                mag += fabs((double)A[i * K + k] * B[k * NN + j]);
            }
            worst = fmax(worst, fabs(s - Cm[i * NN + j]) / mag);
        }
    CHECK(worst < 1e-6, "gemm_sub vs double: error %g of the magnitude", worst);
    free(A);
    free(B);
    free(Cm);
    free(C0);
}

static void test_quad(const double *H)
{
    /* 150 rows: tiles of 64; 1100 rows: tiles of 256 */
    const int rows_of[2] = {150, 1100};
    for (int v = 0; v < 2; v++) {
        const int QR = rows_of[v];
        float *A = rand_x(QR, C, 13 + v);
        double want = 0;
        for (int r = 0; r < QR; r++)
            for (int i = 0; i < C; i++) {
                double s = 0;
                for (int j = 0; j < C; j++)
                    s += H[i * C + j] * A[r * C + j];
                want += A[r * C + i] * s;
            }
        double got[3];
        for (int t = 0; t < 3; t++) {
            lmp_set_num_threads(t + 1);
            got[t] = lmp_gptq_quad_trace(A, H, QR, C);
        }
        lmp_set_num_threads(0);
        CHECK(fabs(got[0] - want) / want < 1e-12, "quad_trace [%d rows] %.17g vs plain %.17g", QR, got[0], want);
        CHECK(got[0] == got[1] && got[0] == got[2], "quad_trace [%d rows]: 1/2/3 threads %.17g %.17g %.17g", QR,
              got[0], got[1], got[2]);
        free(A);
    }
}

/* AWQ's f32 products: every transpose combination against a plain sum, the Gram matrix's
 * upper triangle, and 1/2/3 threads */
static void test_f32(void)
{
    enum { M = 300, K = 700, NN = 600 };
    float *A = rand_x(M, K, 21), *At = malloc(sizeof(float) * M * K), *B = rand_x(K, NN, 22),
          *Bt = malloc(sizeof(float) * K * NN);
    for (int i = 0; i < M; i++)
        for (int k = 0; k < K; k++)
            At[k * M + i] = A[i * K + k];
    for (int k = 0; k < K; k++)
        for (int j = 0; j < NN; j++)
            Bt[j * K + k] = B[k * NN + j];
    float *Cs[4][3];
    for (int v = 0; v < 4; v++) {
        bool ta = v & 1, tb = v & 2;
        for (int t = 0; t < 3; t++) {
            lmp_set_num_threads(t + 1);
            Cs[v][t] = malloc(sizeof(float) * M * NN);
            for (int i = 0; i < M * NN; i++)
                Cs[v][t][i] = 1.0f;
            lmp_sgemm_fixed(ta, tb, M, NN, K, 0.5f, ta ? At : A, ta ? M : K, tb ? Bt : B, tb ? K : NN, 2.0f,
                            Cs[v][t], NN);
        }
        double worst = 0;
        for (int i = 0; i < M; i += 11)
            for (int j = 0; j < NN; j += 7) {
                double s = 0, mag = 0;
                for (int k = 0; k < K; k++) {
                    s += (double)A[i * K + k] * B[k * NN + j];
                    mag += fabs((double)A[i * K + k] * B[k * NN + j]);
                }
                worst = fmax(worst, fabs(2.0 + 0.5 * s - Cs[v][0][i * NN + j]) / (2.0 + 0.5 * mag));
            }
        CHECK(worst < 1e-6, "sgemm_fixed ta %d tb %d vs double: %g", ta, tb, worst);
        for (int t = 1; t < 3; t++)
            CHECK(memcmp(Cs[v][0], Cs[v][t], sizeof(float) * M * NN) == 0, "sgemm_fixed ta %d tb %d: 1 and %d threads "
                  "differ", ta, tb, t + 1);
        for (int t = 0; t < 3; t++)
            free(Cs[v][t]);
    }
    float *G[3];
    for (int t = 0; t < 3; t++) {
        lmp_set_num_threads(t + 1);
        G[t] = calloc((size_t)K * K, sizeof(float));
        lmp_ssyrk_fixed_upper(G[t], K, A, M, 0.25f);
    }
    lmp_set_num_threads(0);
    double worst = 0;
    int lower = 0;
    for (int i = 0; i < K; i++)
        for (int j = 0; j < K; j += (i % 9 == 0 ? 1 : 37)) {
            if (j < i) {
                lower += G[0][i * K + j] != 0.0f;
                continue;
            }
            double s = 0, mag = 0;
            for (int r = 0; r < M; r++) {
                s += (double)A[r * K + i] * A[r * K + j];
                mag += fabs((double)A[r * K + i] * A[r * K + j]);
            }
            worst = fmax(worst, fabs(0.25 * s - G[0][i * K + j]) / (0.25 * mag));
        }
    CHECK(worst < 1e-6 && lower == 0, "ssyrk_fixed_upper: error %g, %d lower entries written", worst, lower);
    for (int t = 1; t < 3; t++)
        CHECK(memcmp(G[0], G[t], sizeof(float) * K * K) == 0, "ssyrk_fixed_upper: 1 and %d threads differ", t + 1);
    for (int t = 0; t < 3; t++)
        free(G[t]);
    free(A);
    free(At);
    free(B);
    free(Bt);
}

/* the same bits for 1, 2 and 3 threads */
static void test_threads(const float *X, const double *H)
{
    double *Hs[3], *Us[3];
    float *Ws[3];
    lmp_qtensor q[3];
    double loss[3];
    float *W = rand_x(R, CQ, 9), *XQ = rand_x(2048, CQ, 10);
    double *HQ = calloc((size_t)CQ * CQ, sizeof(double));
    int64_t ns = 0;
    lmp_gptq_hessian_add(HQ, CQ, XQ, 2048, &ns);
    float *A = rand_x(R, 128, 11), *B = rand_x(128, CQ, 12);
    for (int t = 0; t < 3; t++) {
        lmp_set_num_threads(t + 1);
        Hs[t] = calloc((size_t)C * C, sizeof(double));
        ns = 0;
        lmp_gptq_hessian_add(Hs[t], C, X, 600, &ns);
        lmp_gptq_hessian_add(Hs[t], C, X + 600 * C, N - 600, &ns);
        Us[t] = malloc(sizeof(double) * C * C);
        memcpy(Us[t], H, sizeof(double) * C * C);
        int64_t bad;
        lmp_gptq_hinv_upper(Us[t], C, &bad);
        Ws[t] = malloc(sizeof(float) * R * CQ);
        memcpy(Ws[t], W, sizeof(float) * R * CQ);
        lmp_gptq_gemm_sub(Ws[t], CQ, A, 128, B, CQ, R, CQ, 128);
        lmp_gptq_params gp;
        lmp_gptq_default_params(&gp);
        gp.act_order = true;
        CHECK(lmp_quant_gptq(W, R, CQ, HQ, &gp, &q[t], &loss[t]) == 0, "%s", lmp_errmsg());
    }
    lmp_set_num_threads(0);
    for (int t = 1; t < 3; t++) {
        CHECK(memcmp(Hs[0], Hs[t], sizeof(double) * C * C) == 0, "hessian_add: 1 and %d threads differ", t + 1);
        CHECK(memcmp(Us[0], Us[t], sizeof(double) * C * C) == 0, "hinv_upper: 1 and %d threads differ", t + 1);
        CHECK(memcmp(Ws[0], Ws[t], sizeof(float) * R * CQ) == 0, "gemm_sub: 1 and %d threads differ", t + 1);
        char why[256] = "";
        CHECK(lmp_qtensor_intgroup_equal(&q[0], &q[t], why, sizeof why) && loss[0] == loss[t],
              "gptq [%d x %d] act-order: 1 and %d threads differ: %s (loss %.17g vs %.17g)", R, CQ, t + 1, why,
              loss[0], loss[t]);
    }
    for (int t = 0; t < 3; t++) {
        free(Hs[t]);
        free(Us[t]);
        free(Ws[t]);
        lmp_qtensor_free(&q[t]);
    }
    free(W);
    free(XQ);
    free(HQ);
    free(A);
    free(B);
}

int main(void)
{
    float *X = rand_x(N, C, 20261207);
    test_syrk(X);
    double *H = make_h(X);
    test_hinv(H);
    test_hinv_f32(H);
    test_gemm();
    test_quad(H);
    test_f32();
    test_threads(X, H);
    free(H);
    free(X);
    return test_finish();
}
