/*
 * Engine throughput in llama-bench's terms: pp (prompt processing: a fresh context fed
 * P random tokens in one batch) and tg (text generation: a fresh context fed N tokens
 * one at a time), tokens per second, best and mean of R repetitions.
 * Usage: bench_engine MODEL [-p 512] [-n 128] [-r 3] [-t THREADS]
 */
#include "lib/infer/infer.h"
#include "lib/quant/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *path = NULL;
    int P = 512, N = 128, R = 3, T = 0;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "-p") == 0)
            P = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-n") == 0)
            N = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-r") == 0)
            R = atoi(argv[++i]);
        else if (i + 1 < argc && strcmp(argv[i], "-t") == 0)
            T = atoi(argv[++i]);
        else
            path = argv[i];
    }
    if (!path) {
        fprintf(stderr, "usage: bench_engine MODEL [-p 512] [-n 128] [-r 3] [-t THREADS]\n");
        return 2;
    }
    lmp_set_num_threads(T);
    lmp_model *m;
    lmp_session *s;
    if (lmp_model_load(&m, path) || lmp_session_new(&s, m, P > N ? P : N)) {
        fprintf(stderr, "bench_engine: %s\n", lmp_errmsg());
        return 1;
    }
    int nv = lmp_model_n_vocab(m);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(P > N ? P : N));
    float *logits = malloc(sizeof(float) * (size_t)nv);
    lmp_rng r;
    lmp_rng_seed(&r, 1);
    for (int i = 0; i < (P > N ? P : N); i++)
        tok[i] = (int32_t)(lmp_rng_next(&r) % (uint64_t)nv);
    double best_pp = 0, sum_pp = 0, best_tg = 0, sum_tg = 0;
    for (int rep = 0; rep <= R; rep++) { /* rep 0 warms up */
        lmp_session_reset(s);
        double t0 = lmp_time_s();
        if (lmp_eval(s, tok, P, logits, false)) {
            fprintf(stderr, "bench_engine: %s\n", lmp_errmsg());
            return 1;
        }
        double pp = P / (lmp_time_s() - t0);
        lmp_session_reset(s);
        t0 = lmp_time_s();
        for (int i = 0; i < N; i++)
            if (lmp_eval(s, &tok[i], 1, logits, false)) {
                fprintf(stderr, "bench_engine: %s\n", lmp_errmsg());
                return 1;
            }
        double tg = N / (lmp_time_s() - t0);
        if (rep == 0)
            continue;
        sum_pp += pp;
        sum_tg += tg;
        best_pp = pp > best_pp ? pp : best_pp;
        best_tg = tg > best_tg ? tg : best_tg;
    }
    printf("%s threads=%d pp%d %.2f t/s (mean %.2f)  tg%d %.2f t/s (mean %.2f)\n", path, lmp_num_threads(), P,
           best_pp, sum_pp / R, N, best_tg, sum_tg / R);
    lmp_session_free(s);
    lmp_model_free(m);
    free(tok);
    free(logits);
    return 0;
}
