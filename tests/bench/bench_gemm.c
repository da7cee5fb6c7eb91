/*
 * lmp_gemm throughput on the linear layers of SmolLM2-135M and TinyLlama-1.1B:
 * GFLOP/s for prompt processing (M = 512 rows of X) and calls/s for decoding (M = 1,
 * weights streamed from memory: enough copies of W are rotated to defeat the caches),
 * per weight dtype and thread count, with OpenBLAS cblas_sgemm on the f32 shapes as the
 * machine's practical peak. Not a test: prints a table (best of several runs).
 *
 * Build (from the repository root, after `make BUILD=build-kern`):
 *   cc -O2 -std=c11 -fopenmp -D_GNU_SOURCE -I. tests/bench/bench_gemm.c \
 *      build-kern/liblmpress.a -lopenblas -lm -o build-kern/bench_gemm
 * Usage: bench_gemm [-t THREADS,...] [-d DTYPE,...] [-m M] [-r REPS] [-s SUBSTR] [--no-blas]
 *                   [--cpu]  (time by process CPU clock: steadier with -t 1 on a busy machine)
 * LMP_ISA=ref|avx2|avx512 picks the variant.
 */
#include "lib/infer/kernels.h"
#include "lib/quant/quant.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int64_t K, N; } layer;

static const layer k_layers[] = {
    {"smollm2 q/o 576->576", 576, 576},     {"smollm2 k/v 576->192", 576, 192},
    {"smollm2 up 576->1536", 576, 1536},    {"smollm2 down 1536->576", 1536, 576},
    {"tinyllama q/o 2048->2048", 2048, 2048}, {"tinyllama k/v 2048->256", 2048, 256},
    {"tinyllama up 2048->5632", 2048, 5632}, {"tinyllama down 5632->2048", 5632, 2048},
};

static int g_cpu_clock; /* --cpu: process CPU time (steadier on a shared machine, -t 1) */

static double now(void)
{
    if (g_cpu_clock) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    return omp_get_wtime();
}

/* best seconds per call over reps runs (each run at least ~50 ms of calls) */
static double time_gemm(float *Y, const float *X, lmp_wmat *W, int ncopies, const void **copies,
                        int64_t M, int reps)
{
    double best = INFINITY;
    int calls = 1, c = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++) {
            W->data = copies[c++ % ncopies];
            lmp_gemm(Y, X, W, NULL, M);
        }
        double dt = (now() - t0) / calls;
        if (dt < best)
            best = dt;
        if (dt * calls < 0.05 && r == 0) { /* calibrate, and redo this run */
            calls = (int)(0.05 / dt) + 1;
            r--;
            best = INFINITY;
        }
    }
    return best;
}

static double time_blas(float *Y, const float *X, const float *W, int64_t M, int64_t N,
                        int64_t K, int reps)
{
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)N, (int)K, 1.0f, X,
                    (int)K, W, (int)K, 0.0f, Y, (int)N);
        double dt = now() - t0;
        best = dt < best ? dt : best;
    }
    return best;
}

int main(int argc, char **argv)
{
    int threads[8] = {1, 2}, nthreads = 2, reps = 5, blas = 1;
    int64_t Mbig = 512;
    const char *dtnames = "f32,f16,bf16,q8_0,q4_0", *filter = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            nthreads = 0;
            for (char *p = argv[++i]; *p && nthreads < 8;) {
                threads[nthreads++] = (int)strtol(p, &p, 10);
                if (*p == ',')
                    p++;
            }
        } else if (!strcmp(argv[i], "-d") && i + 1 < argc) {
            dtnames = argv[++i];
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) {
            Mbig = strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            reps = (int)strtol(argv[++i], NULL, 10);
        } else if (!strcmp(argv[i], "-s") && i + 1 < argc) {
            filter = argv[++i];
        } else if (!strcmp(argv[i], "--cpu")) {
            g_cpu_clock = 1;
        } else if (!strcmp(argv[i], "--no-blas")) {
            blas = 0;
        } else {
            fprintf(stderr, "usage: %s [-t 1,2] [-d f32,q4_0] [-m 512] [-r 5] [-s name] [--no-blas] [--cpu]\n",
                    argv[0]);
            return 2;
        }
    }
    printf("variant %s; M=%ld GFLOP/s (best of %d); M=1 us/call and GB/s of weights "
           "streamed from memory\n",
           lmp_isa_name(lmp_kernels_isa()), (long)Mbig, reps);
    printf("%-27s %-5s %3s %9s %9s %9s %8s\n", "layer", "dtype", "thr", "GFLOP/s", "M=1 us",
           "M=1 GB/s", "BLAS");
    lmp_rng rng;
    lmp_rng_seed(&rng, 42);
    for (size_t l = 0; l < sizeof k_layers / sizeof *k_layers; l++) {
        const layer *L = &k_layers[l];
        if (filter && !strstr(L->name, filter))
            continue;
        const int64_t K = L->K, N = L->N;
        float *X = malloc(sizeof(float) * Mbig * K), *Y = malloc(sizeof(float) * Mbig * N);
        float *Wf = malloc(sizeof(float) * N * K);
        for (int64_t i = 0; i < Mbig * K; i++)
            X[i] = lmp_rng_normal(&rng);
        for (int64_t i = 0; i < N * K; i++)
            Wf[i] = lmp_rng_normal(&rng) * 0.02f;
        char dts[128];
        snprintf(dts, sizeof dts, "%s", dtnames);
        for (char *save = NULL, *dn = strtok_r(dts, ",", &save); dn; dn = strtok_r(NULL, ",", &save)) {
            int dt = lmp_dtype_from_name(dn);
            if (dt < 0 || !lmp_gemm_supports(dt)) {
                fprintf(stderr, "dtype %s: not supported\n", dn);
                continue;
            }
            const lmp_dtype_traits *t = lmp_dtype_info(dt);
            size_t rb = lmp_dtype_row_bytes(dt, K), bytes = rb * N;
            /* copies of W rotated in the M=1 runs: at least 256 MiB in all */
            int ncopies = (int)((256u << 20) / bytes) + 1;
            const void **copies = malloc(sizeof *copies * ncopies);
            uint8_t *w0 = malloc(bytes);
            for (int64_t n = 0; n < N; n++)
                t->from_f32(Wf + n * K, w0 + n * rb, K);
            copies[0] = w0;
            for (int c = 1; c < ncopies; c++) {
                void *p = malloc(bytes);
                memcpy(p, w0, bytes);
                copies[c] = p;
            }
            lmp_wmat W = {dt, N, K, w0, rb, NULL, LMP_WL_ROWS};
            /* q4_0 runs in the interleaved layout where the engine would load it so
             * (LMP_Q4_REPACK=0: the rows) */
            const bool x16 = lmp_wmat_repack_wanted(&W);
            for (int c = 0; x16 && c < ncopies; c++) {
                lmp_wmat v = W;
                void *buf = NULL;
                v.data = copies[c];
                if (lmp_wmat_repack(&v, &buf) == 0) {
                    free((void *)copies[c]);
                    copies[c] = buf;
                }
            }
            if (x16) {
                W.data = copies[0];
                W.layout = LMP_WL_Q4_0X16;
            }
            for (int ti = 0; ti < nthreads; ti++) {
                lmp_set_num_threads(threads[ti]);
                openblas_set_num_threads(threads[ti]);
                double tb = time_gemm(Y, X, &W, 1, copies, Mbig, reps);
                double t1 = time_gemm(Y, X, &W, ncopies, copies, 1, reps);
                char bl[32] = "";
                if (blas && dt == LMP_DT_F32)
                    snprintf(bl, sizeof bl, "%8.1f",
                             2.0 * Mbig * N * K / time_blas(Y, X, Wf, Mbig, N, K, reps) * 1e-9);
                printf("%-27s %-5s %3d %9.1f %9.1f %9.1f %8s\n", L->name, x16 ? "q4x16" : t->name, threads[ti],
                       2.0 * Mbig * N * K / tb * 1e-9, t1 * 1e6, bytes / t1 * 1e-9, bl);
                fflush(stdout);
            }
            for (int c = 0; c < ncopies; c++)
                free((void *)copies[c]);
            free(copies);
        }
        free(X), free(Y), free(Wf);
    }
    return 0;
}
