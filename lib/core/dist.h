/*
 * The process group of a data-parallel run. Under `mpirun -np N lmpress ...` every rank
 * runs the same command on its share of the work (calibration windows, evaluation
 * windows) and these collectives combine the results; a process started on its own is a
 * group of one, where every collective is the identity. Only rank 0 writes outputs and
 * prints results.
 *
 * Determinism: a reduction gives every rank the same bits (it is reduced on rank 0 in
 * rank order and broadcast), so all ranks install the same compressed weights.
 *
 * Every collective must be called by every rank in the same order. A rank that fails
 * locally still calls lmp_dist_status so that the others do not wait forever.
 */
#ifndef LMP_DIST_H
#define LMP_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Joins the group (MPI_Init when started under an MPI launcher). Idempotent; called by
 * the command's main. Returns 0 or a status. */
int lmp_dist_init(int *argc, char ***argv);
/* Leaves the group (MPI_Finalize). Safe to call without init. */
void lmp_dist_finalize(void);
/* Leaves the group at the end of a command whose status on this rank is rc, and returns
 * rc: MPI_Finalize when rc is 0 or when every rank learnt of the failure through
 * lmp_dist_status; otherwise the other ranks may be waiting in a collective, so it prints
 * this rank's message and calls MPI_Abort, which ends every rank of the job. */
int lmp_dist_end(int rc);
/* Whether this process runs under an MPI launcher (mpirun, srun) with MPI initialised. */
bool lmp_dist_active(void);

int lmp_dist_rank(void); /* 0 when alone */
int lmp_dist_size(void); /* 1 when alone */
static inline bool lmp_dist_root(void) { return lmp_dist_rank() == 0; }

/* This rank's share [*lo, *hi) of n items: contiguous, sizes differ by at most one, rank
 * order. */
void lmp_dist_share(int64_t n, int64_t *lo, int64_t *hi);

/* In-place sums over ranks; every rank ends with the same bits. */
int lmp_dist_sum_f64(double *buf, size_t n);
int lmp_dist_sum_f32(float *buf, size_t n);
int lmp_dist_sum_i64(int64_t *buf, size_t n);

/* As allgather_rows, but only `root` ends with all rows (the others' buf is untouched
 * outside their own share): the way per-window results reach the rank that writes. */
int lmp_dist_gather_rows(void *buf, int64_t n_rows, size_t row_bytes, int root);

/* Point to point: `bytes` to rank `to` / from rank `from` (messages between two ranks
 * arrive in the order they were sent). */
int lmp_dist_send(const void *buf, size_t bytes, int to);
int lmp_dist_recv(void *buf, size_t bytes, int from);

/* Payload bytes this rank has sent and received through the collectives above since it
 * started (a broadcast counts its payload once on every rank); 0 when alone. */
uint64_t lmp_dist_bytes(void);

/* Waits for every rank. */
int lmp_dist_barrier(void);

/* Copies bytes from rank `root` to every rank. */
int lmp_dist_bcast(void *buf, size_t bytes, int root);

/* buf holds n_rows rows of row_bytes; each rank has filled its lmp_dist_share(n_rows)
 * rows. Afterwards every rank holds all rows. */
int lmp_dist_allgather_rows(void *buf, int64_t n_rows, size_t row_bytes);

/* Collective error agreement: returns rc when this rank failed, otherwise LMP_EIO with a
 * message naming the failing rank when any other rank failed, otherwise 0. */
int lmp_dist_status(int rc);

#endif
