/*
 * Shared by test_kernels.c and test_intgroup.c: lmp_gemv_team (decoding: one parallel
 * region per token) must equal lmp_gemm's M == 1 path bitwise for 1, 2 and 3 threads, and
 * add onto y exactly (y + (dot + bias)) when accumulating. x is one row of W->cols.
 */
#ifndef LMP_TEST_TEAM_CHECK_H
#define LMP_TEST_TEAM_CHECK_H

#include "lib/infer/kernels.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static bool team_equal(const lmp_wmat *W, const float *x, const float *b)
{
    const int64_t N = W->rows;
    float *ref = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    lmp_set_num_threads(1);
    lmp_gemm(ref, x, W, b, 1);
    bool ok = true;
    for (int t = 1; t <= 3; t++) {
        for (int64_t n = 0; n < N; n++)
            y[n] = NAN;
#pragma omp parallel num_threads(t)
        lmp_gemv_team(y, x, W, b, false);
        ok = ok && memcmp(y, ref, sizeof(float) * N) == 0;
        for (int64_t n = 0; n < N; n++)
            y[n] = (float)n * 0.25f - 1.0f;
#pragma omp parallel num_threads(t)
        lmp_gemv_team(y, x, W, b, true);
        for (int64_t n = 0; n < N; n++)
            ok = ok && y[n] == ((float)n * 0.25f - 1.0f) + ref[n];
    }
    free(ref);
    free(y);
    return ok;
}

#endif
