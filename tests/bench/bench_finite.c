/*
 * Cost of the finite-value check of weights (issue 17): times lmp_ckpt_check_finite (the
 * check the model loader runs once per load) over every tensor of a checkpoint, next to
 * a plain read of the same bytes (the floor: the pages have to be read either way), and
 * the row check the converters fuse into their copy loop on one large tensor.
 *   build/bench/bench_finite MODEL   (default: $LMP_BENCH_MODEL, else skipped)
 * Run it on a big model, e.g. `lmpress synth --preset tinyllama-1.1b --dtype bf16`.
 */
#include "lib/io/io.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t g_sink;

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : getenv("LMP_BENCH_MODEL");
    if (!path) {
        printf("bench_finite: no model (argument or LMP_BENCH_MODEL); skipped\n");
        return 0;
    }
    lmp_ckpt c;
    if (lmp_ckpt_open_ex(&c, path, false)) { /* a config is not needed to read tensors */
        fprintf(stderr, "bench_finite: %s\n", lmp_errmsg());
        return 1;
    }
    uint64_t bytes = 0;
    for (int i = 0; i < c.n_tensors; i++)
        bytes += c.tensors[i].nbytes;
    /* warm the page cache, then time a plain read (sum of one byte per 64) */
    for (int rep = 0; rep < 2; rep++) {
        double t0 = lmp_time_s();
        uint64_t s = 0;
        for (int i = 0; i < c.n_tensors; i++) {
            const uint8_t *p = c.tensors[i].data;
#pragma omp parallel for reduction(+ : s)
            for (size_t j = 0; j < c.tensors[i].nbytes; j += 64)
                s += p[j];
        }
        g_sink += s;
        if (rep)
            printf("read every cache line:  %.3f s  (%.2f GB/s)\n", lmp_time_s() - t0,
                   (double)bytes / 1e9 / (lmp_time_s() - t0));
    }
    double t0 = lmp_time_s();
    int rc = lmp_ckpt_check_finite(&c);
    double t1 = lmp_time_s() - t0;
    printf("lmp_ckpt_check_finite:  %.3f s  (%.2f GB/s, %d threads) over %.2f GB, %d tensors: %s\n", t1,
           (double)bytes / 1e9 / t1, lmp_num_threads(), (double)bytes / 1e9, c.n_tensors, rc ? lmp_errmsg() : "all finite");
    lmp_set_num_threads(1);
    t0 = lmp_time_s();
    rc = lmp_ckpt_check_finite(&c);
    t1 = lmp_time_s() - t0;
    printf("  one thread:           %.3f s  (%.2f GB/s)\n", t1, (double)bytes / 1e9 / t1);
    lmp_ckpt_close(&c);
    /* the scan itself, on memory already resident: 256 MiB per dtype, one thread */
    const int64_t rows = 32768, cols = 4096;
    const lmp_dtype dts[] = {LMP_DT_BF16, LMP_DT_F16, LMP_DT_F32};
    for (int k = 0; k < 3; k++) {
        lmp_tensor t;
        int64_t sh[2] = {rows, cols / (dts[k] == LMP_DT_F32 ? 2 : 1)};
        if (lmp_tensor_alloc(&t, "resident", dts[k], 2, sh))
            continue;
        memset(t.data, 0x3c, t.nbytes); /* finite values */
        lmp_check_finite_rows("mem", &t, 0, rows, NULL, NULL); /* touch */
        t0 = lmp_time_s();
        rc = lmp_check_finite_rows("mem", &t, 0, rows, NULL, NULL);
        t1 = lmp_time_s() - t0;
        printf("resident %-4s scan:     %.3f s for %.0f MiB (%.2f GB/s, one thread)%s\n",
               lmp_dtype_info(dts[k])->name, t1, (double)t.nbytes / 1048576.0, (double)t.nbytes / 1e9 / t1,
               rc ? " (non-finite?)" : "");
        lmp_tensor_free(&t);
    }
    return 0;
}
