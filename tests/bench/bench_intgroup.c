/*
 * lmp_gemm throughput on intgroup weights (GPTQ-style 4-bit codes, groups of 128, with and
 * without act-order g_idx) on TinyLlama-1.1B's linear shapes: GFLOP/s at M = 512 (the
 * batched path: the driver's tiles over the variant's strip decoder) and microseconds per
 * call at M = 1 (the streaming path: fused rows; four copies of W rotated so the weights
 * come from memory). Best of several runs. Not a test: prints a table.
 *
 * Usage: bench_intgroup [-t THREADS,...] [-r REPS] [--cpu]
 *   --cpu: time by the process CPU clock (steadier with -t 1 on a busy machine)
 * LMP_ISA=ref|avx2|avx512 picks the variant.
 */
#include "lib/core/qtensor.h"
#include "lib/infer/kernels.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct { const char *name; int64_t K, N; } layer;
static const layer k_layers[] = {
    {"tinyllama q/o 2048->2048", 2048, 2048},
    {"tinyllama up 2048->5632", 2048, 5632},
    {"tinyllama down 5632->2048", 5632, 2048},
};

static int g_cpu_clock;
static double now(void)
{
    if (g_cpu_clock) {
        struct timespec ts;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
        return ts.tv_sec + ts.tv_nsec * 1e-9;
    }
    return omp_get_wtime();
}

static uint32_t g_rs = 99;
static float rnd(void)
{
    g_rs = g_rs * 1664525u + 1013904223u;
    return (float)(g_rs >> 8) / 16777216.0f;
}

/* a random 4-bit g128 tensor (asymmetric zeros), g_idx when gidx */
static int make(lmp_qtensor *q, int64_t N, int64_t K, bool gidx)
{
    if (lmp_qtensor_intgroup_init(q, N, K, 4, 128, false, gidx))
        return -1;
    lmp_intgroup *ig = &q->ig;
    for (int64_t i = 0; i < N * ig->row_bytes; i++)
        ig->codes[i] = (uint8_t)(rnd() * 256);
    for (int64_t i = 0; i < N * ig->n_groups; i++) {
        ig->scales[i] = 0.01f + 0.02f * rnd();
        ig->zeros[i] = (uint8_t)(rnd() * 16);
    }
    if (gidx)
        for (int64_t k = 0; k < K; k++)
            ig->g_idx[k] = (int32_t)((k * 37) % ig->n_groups);
    return 0;
}

/* best seconds per call over reps runs (each at least ~50 ms of calls), W rotated */
static double time_gemm(float *Y, const float *X, lmp_wmat *W, int nw, int64_t M, int reps)
{
    double best = INFINITY;
    int calls = 1, c = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        for (int i = 0; i < calls; i++)
            lmp_gemm(Y, X, &W[c++ % nw], NULL, M);
        double dt = (now() - t0) / calls;
        if (dt < best)
            best = dt;
        if (dt * calls < 0.05 && r == 0) {
            calls = (int)(0.05 / dt) + 1;
            r--;
            best = INFINITY;
        }
    }
    return best;
}

int main(int argc, char **argv)
{
    int threads[8] = {1, 2}, nthreads = 2, reps = 5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) {
            nthreads = 0;
            for (char *s = argv[++i]; *s && nthreads < 8; s++) {
                threads[nthreads++] = (int)strtol(s, &s, 10);
                if (!*s)
                    break;
            }
        } else if (!strcmp(argv[i], "-r") && i + 1 < argc) {
            reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--cpu")) {
            g_cpu_clock = 1;
        } else {
            fprintf(stderr, "usage: bench_intgroup [-t THREADS,...] [-r REPS] [--cpu]\n");
            return 2;
        }
    }
    printf("intgroup 4-bit g128, isa %s; M=512 GFLOP/s, M=1 us/call (4 copies of W)\n",
           lmp_isa_name(lmp_kernels_isa()));
    printf("%-28s %-6s %8s", "layer", "g_idx", "threads");
    printf(" %10s %10s\n", "M=512", "M=1");
    enum { NW = 4 };
    for (size_t l = 0; l < sizeof k_layers / sizeof k_layers[0]; l++) {
        const int64_t K = k_layers[l].K, N = k_layers[l].N, M = 512;
        float *X = malloc(sizeof(float) * (size_t)(M * K)), *Y = malloc(sizeof(float) * (size_t)(M * N));
        for (int64_t i = 0; i < M * K; i++)
            X[i] = rnd() - 0.5f;
        for (int g = 0; g < 2; g++) {
            lmp_qtensor q[NW];
            lmp_wmat W[NW];
            for (int c = 0; c < NW; c++)
                if (make(&q[c], N, K, g) || lmp_wmat_intgroup(&W[c], &q[c])) {
                    fprintf(stderr, "bench_intgroup: out of memory\n");
                    return 1;
                }
            for (int t = 0; t < nthreads; t++) {
                omp_set_num_threads(threads[t]);
                const double tb = time_gemm(Y, X, W, NW, M, reps);
                const double t1 = time_gemm(Y, X, W, NW, 1, reps);
                printf("%-28s %-6s %8d %10.1f %10.1f\n", k_layers[l].name, g ? "yes" : "no",
                       threads[t], 2.0 * M * N * K / tb * 1e-9, t1 * 1e6);
                fflush(stdout);
            }
            for (int c = 0; c < NW; c++)
                lmp_qtensor_free(&q[c]);
        }
        free(X);
        free(Y);
    }
    lmp_kernels_scratch_free();
    return 0;
}
