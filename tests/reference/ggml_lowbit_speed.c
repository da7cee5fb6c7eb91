/*
 * Offline benchmark (not part of `make test` or `make bench`: it links a local llama.cpp
 * build): one-row products (decoding, M = 1) of the low-bit GGUF types, lmpress's
 * lmp_gemm against ggml's CPU kernels (ggml_get_type_traits_cpu: the activation row
 * converted to vec_dot_type by that type's from_float, then vec_dot per weight row), on the same
 * weight bytes (ggml_quantize_chunk; lmpress's quantizers write the same bytes), one
 * thread, process CPU time (steadier than wall time on the shared machine), best of R
 * alternating rounds. Weights: K x N of TinyLlama's up projection (2048 -> 5632) in
 * enough copies (>= 64 MiB) that each call streams them from memory.
 *
 *   LLAMA=/work/llamacpp
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -I$LLAMA/ggml/include \
 *      tests/reference/ggml_lowbit_speed.c build/liblmpress.a \
 *      -L$LLAMA/build/bin -lggml-cpu -lggml-base -Wl,-rpath,$LLAMA/build/bin \
 *      -fopenmp -lcjson -lpcre2-8 -lutf8proc -llapacke -lopenblas \
 *      -L/usr/lib/x86_64-linux-gnu/hdf5/serial -lhdf5 $(pkg-config --libs cairo fontconfig) \
 *      $(mpicc --showme:link) -lz -lm -lpthread \
 *      -o /tmp/ggml_lowbit_speed && /tmp/ggml_lowbit_speed [TYPE ...]
 * LMP_ISA=ref|avx2|avx512 picks lmpress's variant. Prints, per type, microseconds per
 * product of each tool and lmpress's speed relative to ggml's (> 1: lmpress faster).
 */
#include "lib/infer/kernels.h"
#include "lib/quant/quant.h"

#include <ggml-cpu.h>
#include <ggml.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const struct {
    const char *name;
    lmp_dtype t;
    enum ggml_type g;
} TYPES[] = {
    {"iq4_xs", LMP_DT_IQ4_XS, GGML_TYPE_IQ4_XS},   {"iq3_s", LMP_DT_IQ3_S, GGML_TYPE_IQ3_S},
    {"iq2_xs", LMP_DT_IQ2_XS, GGML_TYPE_IQ2_XS},   {"iq4_nl", LMP_DT_IQ4_NL, GGML_TYPE_IQ4_NL},
    {"iq3_xxs", LMP_DT_IQ3_XXS, GGML_TYPE_IQ3_XXS}, {"iq2_xxs", LMP_DT_IQ2_XXS, GGML_TYPE_IQ2_XXS},
    {"iq2_s", LMP_DT_IQ2_S, GGML_TYPE_IQ2_S},       {"iq1_s", LMP_DT_IQ1_S, GGML_TYPE_IQ1_S},
    {"iq1_m", LMP_DT_IQ1_M, GGML_TYPE_IQ1_M},       {"mxfp4", LMP_DT_MXFP4, GGML_TYPE_MXFP4},
    {"tq2_0", LMP_DT_TQ2_0, GGML_TYPE_TQ2_0},       {"tq1_0", LMP_DT_TQ1_0, GGML_TYPE_TQ1_0},
    {"q2_0", LMP_DT_Q2_0, GGML_TYPE_Q2_0},          {"q1_0", LMP_DT_Q1_0, GGML_TYPE_Q1_0},
};
#define NT (int)(sizeof TYPES / sizeof TYPES[0])

static double cpu_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const int64_t K = 2048, N = 5632;
    const int R = getenv("ROUNDS") ? atoi(getenv("ROUNDS")) : 5;
    lmp_set_num_threads(1);
    ggml_cpu_init();
    lmp_rng rng;
    lmp_rng_seed(&rng, 7);
    float *wf = malloc(sizeof(float) * K * N), *x = malloc(sizeof(float) * K);
    float *im = malloc(sizeof(float) * K), *y1 = malloc(sizeof(float) * N), *y2 = malloc(sizeof(float) * N);
    for (int64_t i = 0; i < K * N; i++)
        wf[i] = lmp_rng_normal(&rng) * 0.02f;
    for (int64_t i = 0; i < K; i++) {
        x[i] = lmp_rng_normal(&rng);
        im[i] = 0.5f + (float)(lmp_rng_next(&rng) % 1000) / 1000.0f;
    }
    printf("%-8s %12s %12s %8s %10s  (1 thread, CPU us per %ld x %ld product, best of %d)\n", "type",
           "lmpress us", "ggml us", "ratio", "max|dy|", (long)N, (long)K, R);
    for (int k = 0; k < NT; k++) {
        bool want = argc < 2;
        for (int a = 1; a < argc; a++)
            want |= !strcmp(argv[a], TYPES[k].name);
        if (!want)
            continue;
        const struct ggml_type_traits_cpu *tc = ggml_get_type_traits_cpu(TYPES[k].g);
        const size_t rb = ggml_row_size(TYPES[k].g, K), bytes = rb * N;
        const int ncopies = (int)((64u << 20) / bytes) + 1;
        uint8_t *w = malloc(bytes * ncopies);
        ggml_quantize_init(TYPES[k].g);
        ggml_quantize_chunk(TYPES[k].g, wf, w, 0, N, K, im);
        for (int c = 1; c < ncopies; c++)
            memcpy(w + c * bytes, w, bytes);
        const size_t xb = ggml_row_size(tc->vec_dot_type, K);
        /* the activation row's converter is the vec_dot_type's (Q8_K, Q8_0) */
        ggml_from_float_t to_xq = ggml_get_type_traits_cpu(tc->vec_dot_type)->from_float;
        void *xq = malloc(xb);
        double best_l = 1e30, best_g = 1e30;
        int c = 0;
        for (int r = 0; r < R; r++) {
            double t0 = cpu_s();
            for (int i = 0; i < ncopies; i++) {
                lmp_wmat W = {TYPES[k].t, N, K, w + (size_t)((c + i) % ncopies) * bytes, rb, NULL, LMP_WL_ROWS};
                lmp_gemm(y1, x, &W, NULL, 1);
            }
            double t = (cpu_s() - t0) / ncopies;
            best_l = t < best_l ? t : best_l;
            t0 = cpu_s();
            for (int i = 0; i < ncopies; i++) {
                const uint8_t *wc = w + (size_t)((c + i) % ncopies) * bytes;
                to_xq(x, xq, K);
                for (int64_t n = 0; n < N; n++)
                    tc->vec_dot((int)K, &y2[n], 0, wc + n * rb, 0, xq, 0, 1);
            }
            t = (cpu_s() - t0) / ncopies;
            best_g = t < best_g ? t : best_g;
            c++;
        }
        double dmax = 0, ymax = 0;
        for (int64_t n = 0; n < N; n++) {
            const double d = y1[n] > y2[n] ? y1[n] - y2[n] : y2[n] - y1[n];
            dmax = d > dmax ? d : dmax;
            ymax = y2[n] > ymax ? y2[n] : -y2[n] > ymax ? -y2[n] : ymax;
        }
        printf("%-8s %12.1f %12.1f %8.2f %10.3g  (max|y| %.3g, %s)\n", TYPES[k].name, best_l * 1e6, best_g * 1e6,
               best_g / best_l, dmax, ymax, lmp_isa_name(lmp_kernels_isa()));
        fflush(stdout);
        free(w);
        free(xq);
    }
    free(wf), free(x), free(im), free(y1), free(y2);
    return 0;
}
