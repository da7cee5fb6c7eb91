/*
 * Shared by test_kernels.c and test_intgroup.c: lmp_gemv_team (decoding: one parallel
 * region per token) must equal lmp_gemm's M == 1 path bitwise for 1 to 4 threads, with and
 * without work shares, and add onto y exactly (y + (dot + bias)) when accumulating. x is
 * one row of W->cols.
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
    float *y3 = malloc(sizeof(float) * 3 * N);
    lmp_set_num_threads(1);
    lmp_gemm(ref, x, W, b, 1);
    bool ok = true;
    lmp_team *team = lmp_team_new(4);
    if (!team)
        ok = false;
    /* fixed shares (no team), then work shares for 1-4 threads (4 on a 2-core machine:
     * threads finishing early take over the rest of others' shares), twice in one region
     * as decoding calls it (the second call reopens the slots) */
    for (int t = 1; t <= 4 && team; t++)
        for (int with = 0; with < 2; with++) {
            lmp_team *tm = with ? team : NULL;
            /* three products without barriers between them (as q, k and v): a thread
             * may start the next while another still works on the last */
            for (int64_t n = 0; n < 3 * N; n++)
                y3[n] = NAN;
#pragma omp parallel num_threads(t)
            for (int i = 0; i < 3; i++)
                lmp_gemv_team(y3 + i * N, x, W, b, false, tm);
            for (int i = 0; i < 3; i++)
                ok = ok && memcmp(y3 + i * N, ref, sizeof(float) * N) == 0;
            for (int64_t n = 0; n < N; n++)
                y[n] = (float)n * 0.25f - 1.0f;
#pragma omp parallel num_threads(t)
            {
                lmp_gemv_team(y, x, W, b, true, tm);
#pragma omp barrier
                lmp_gemv_team(y, x, W, b, true, tm);
            }
            for (int64_t n = 0; n < N; n++)
                ok = ok && y[n] == ((float)n * 0.25f - 1.0f) + ref[n] + ref[n];
        }
    lmp_team_free(team);
    free(y3);
    free(ref);
    free(y);
    return ok;
}

#endif
