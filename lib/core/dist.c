/*
 * Process group, single-process build: a group of one, every collective the identity.
 * The MPI implementation replaces these bodies (issue 15); the contract is dist.h's.
 */
#include "dist.h"
#include "core.h"

int lmp_dist_init(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

void lmp_dist_finalize(void) {}
int lmp_dist_rank(void) { return 0; }
int lmp_dist_size(void) { return 1; }

void lmp_dist_share(int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t r = lmp_dist_rank(), s = lmp_dist_size();
    int64_t q = n / s, e = n % s;
    *lo = r * q + (r < e ? r : e);
    *hi = *lo + q + (r < e);
}

int lmp_dist_sum_f64(double *buf, size_t n)
{
    (void)buf;
    (void)n;
    return 0;
}

int lmp_dist_sum_f32(float *buf, size_t n)
{
    (void)buf;
    (void)n;
    return 0;
}

int lmp_dist_sum_i64(int64_t *buf, size_t n)
{
    (void)buf;
    (void)n;
    return 0;
}

int lmp_dist_bcast(void *buf, size_t bytes, int root)
{
    (void)buf;
    (void)bytes;
    (void)root;
    return 0;
}

int lmp_dist_allgather_rows(void *buf, int64_t n_rows, size_t row_bytes)
{
    (void)buf;
    (void)n_rows;
    (void)row_bytes;
    return 0;
}

int lmp_dist_status(int rc) { return rc; }
