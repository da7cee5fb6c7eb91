/*
 * Process group on OpenMPI (contract: dist.h). A process joins MPI only when an MPI
 * launcher started it (mpirun/orterun set OMPI_COMM_WORLD_SIZE, PMIx launchers such as
 * `srun --mpi=pmix` set PMIX_RANK, Hydra sets PMI_RANK); started on its own it stays the
 * group of one and never calls MPI_Init, so plain runs and the test suite neither pay
 * for MPI's start-up nor depend on an MPI environment.
 *
 * Every collective works on a private duplicate of MPI_COMM_WORLD with MPI_ERRORS_RETURN,
 * so an MPI failure becomes an lmpress status with a message instead of OpenMPI's default
 * abort. Reductions are done on rank 0 in rank order ((b0 + b1) + b2 ...) and broadcast,
 * which gives every rank the same bits. Counts passed to MPI are ints, so every transfer
 * is cut into chunks of at most DIST_CHUNK bytes.
 *
 * Under mpirun, ranks other than 0 print nothing: standard output goes to /dev/null,
 * log messages below errors are off, progress bars are off (lmp_progress_begin), and
 * once a failure has been agreed through lmp_dist_status their standard error goes too,
 * since rank 0 prints the failing rank's message. Output files are written by rank 0
 * only (safeout.c, util.c).
 */
#include "dist.h"
#include "core.h"

#include <fcntl.h>
#include <signal.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* bytes per MPI call: 256 MiB, far below INT_MAX; LMP_DEBUG_DIST_CHUNK (bytes) lowers it
 * so that the tests cross chunk boundaries with small buffers */
#define DIST_CHUNK dist_chunk()
#define DIST_TAG 4242

static int g_rank, g_size = 1;
static bool g_mpi;          /* joined: collectives go through MPI */
static bool g_owner;        /* MPI_Init was ours, so MPI_Finalize is too */
static bool g_agreed;       /* a failure was agreed by every rank (lmp_dist_status) */
static MPI_Comm g_comm;
static char g_host[MPI_MAX_PROCESSOR_NAME];
static int g_stderr = -1;   /* the original standard error of a non-root rank */
static uint64_t g_bytes;    /* payload bytes sent and received (lmp_dist_bytes) */

static size_t dist_chunk(void)
{
    static size_t c;
    if (!c) {
        const char *e = getenv("LMP_DEBUG_DIST_CHUNK");
        long long v = e ? atoll(e) : 0;
        c = v >= 16 ? (size_t)v : (size_t)1 << 28;
    }
    return c;
}

/* Test hook (tests/cli/test_mpi.sh): LMP_DEBUG_DIST_KILL="R:N" makes rank R kill itself
 * with SIGKILL on entering its N-th collective, as the kernel's OOM killer or a lost host
 * would. */
static void debug_kill_point(void)
{
    static int calls, rank = -2, at;
    if (rank == -2) {
        const char *e = getenv("LMP_DEBUG_DIST_KILL");
        rank = -1;
        if (e && sscanf(e, "%d:%d", &rank, &at) != 2)
            rank = -1;
    }
    if (rank == g_rank && ++calls == at)
        raise(SIGKILL);
}

static bool launched_by_mpi(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v)
            return true;
    }
    return false;
}

static int mpi_fail(int mrc, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int n = 0;
    if (MPI_Error_string(mrc, s, &n) != MPI_SUCCESS)
        snprintf(s, sizeof s, "MPI error %d", mrc);
    return lmp_err(LMP_EIO, "MPI %s failed on rank %d of %d (%s): %s (a rank died or a host cannot be reached?)",
                   what, g_rank, g_size, g_host, s);
}

/* Redirects fd to /dev/null. */
static void to_null(int fd)
{
    int nul = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (nul >= 0) {
        dup2(nul, fd);
        close(nul);
    }
}

int lmp_dist_init(int *argc, char ***argv)
{
    if (g_mpi || !launched_by_mpi())
        return LMP_OK;
    int inited = 0, prov = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &prov) != MPI_SUCCESS)
        return lmp_err(LMP_EIO, "MPI_Init failed (started by an MPI launcher: OMPI_COMM_WORLD_SIZE, PMIX_RANK or "
                                "PMI_RANK is set)");
    g_mpi = true;
    g_owner = !inited;
    MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
    MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(g_comm, &g_rank);
    MPI_Comm_size(g_comm, &g_size);
    int len = 0;
    if (MPI_Get_processor_name(g_host, &len) != MPI_SUCCESS)
        snprintf(g_host, sizeof g_host, "?");
    if (g_rank != 0) {
        fflush(stdout);
        to_null(STDOUT_FILENO);
        g_stderr = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, 3);
        if (lmp_log_level > LMP_LOG_ERROR)
            lmp_log_level = LMP_LOG_ERROR;
    }
    return LMP_OK;
}

void lmp_dist_finalize(void)
{
    lmp_rank_scratch_remove();
    if (!g_mpi)
        return;
    MPI_Comm_free(&g_comm);
    if (g_owner)
        MPI_Finalize();
    g_mpi = g_owner = false;
    g_rank = 0;
    g_size = 1;
}

int lmp_dist_end(int rc)
{
    if (!g_mpi)
        return rc;
    if (rc != 0 && !g_agreed && g_size > 1) {
        /* the others may wait for this rank in a collective: end the whole job. Rank 0 has
         * printed its message; another rank says which it is. */
        char line[1400];
        int n = snprintf(line, sizeof line, "lmpress: rank %d of %d (%s) stopped on an error the other ranks do not know of; "
                         "ending the job (MPI_Abort): %s\n",
                         g_rank, g_size, g_host, lmp_errmsg());
        if (n > 0 && g_rank != 0) {
            ssize_t w = write(g_stderr >= 0 ? g_stderr : STDERR_FILENO, line,
                              (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
            (void)w;
        }
        fflush(stdout);
        lmp_rank_scratch_remove();
        MPI_Abort(MPI_COMM_WORLD, rc > 0 && rc < 256 ? rc : 1);
    }
    lmp_dist_finalize();
    return rc;
}

bool lmp_dist_active(void) { return g_mpi; }
int lmp_dist_rank(void) { return g_rank; }
int lmp_dist_size(void) { return g_size; }

void lmp_dist_share(int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t r = lmp_dist_rank(), s = lmp_dist_size();
    int64_t q = n / s, e = n % s;
    *lo = r * q + (r < e ? r : e);
    *hi = *lo + q + (r < e);
}

/* ---------------------------------------------------------------- point to point, bcast */

static int send_bytes(const void *buf, size_t bytes, int to)
{
    const char *p = buf;
    for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
        size_t k = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        int mrc = MPI_Send(p + off, (int)k, MPI_BYTE, to, DIST_TAG, g_comm);
        if (mrc != MPI_SUCCESS)
            return mpi_fail(mrc, "send");
        g_bytes += k;
    }
    return LMP_OK;
}

static int recv_bytes(void *buf, size_t bytes, int from)
{
    char *p = buf;
    for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
        size_t k = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        int mrc = MPI_Recv(p + off, (int)k, MPI_BYTE, from, DIST_TAG, g_comm, MPI_STATUS_IGNORE);
        if (mrc != MPI_SUCCESS)
            return mpi_fail(mrc, "receive");
        g_bytes += k;
    }
    return LMP_OK;
}

int lmp_dist_bcast(void *buf, size_t bytes, int root)
{
    debug_kill_point();
    if (g_size == 1)
        return LMP_OK;
    if (root < 0 || root >= g_size)
        return lmp_err(LMP_EINVAL, "lmp_dist_bcast: root %d outside 0..%d", root, g_size - 1);
    char *p = buf;
    for (size_t off = 0; off < bytes; off += DIST_CHUNK) {
        size_t k = bytes - off < DIST_CHUNK ? bytes - off : DIST_CHUNK;
        int mrc = MPI_Bcast(p + off, (int)k, MPI_BYTE, root, g_comm);
        if (mrc != MPI_SUCCESS)
            return mpi_fail(mrc, "broadcast");
        g_bytes += k;
    }
    return LMP_OK;
}

uint64_t lmp_dist_bytes(void) { return g_bytes; }

int lmp_dist_send(const void *buf, size_t bytes, int to)
{
    debug_kill_point();
    if (g_size == 1 || to == g_rank)
        return lmp_err(LMP_EINVAL, "lmp_dist_send: to rank %d from itself", to);
    if (to < 0 || to >= g_size)
        return lmp_err(LMP_EINVAL, "lmp_dist_send: rank %d outside 0..%d", to, g_size - 1);
    return send_bytes(buf, bytes, to);
}

int lmp_dist_recv(void *buf, size_t bytes, int from)
{
    debug_kill_point();
    if (g_size == 1 || from == g_rank)
        return lmp_err(LMP_EINVAL, "lmp_dist_recv: from rank %d to itself", from);
    if (from < 0 || from >= g_size)
        return lmp_err(LMP_EINVAL, "lmp_dist_recv: rank %d outside 0..%d", from, g_size - 1);
    return recv_bytes(buf, bytes, from);
}

int lmp_dist_barrier(void)
{
    debug_kill_point();
    if (g_size == 1)
        return LMP_OK;
    int mrc = MPI_Barrier(g_comm);
    return mrc == MPI_SUCCESS ? LMP_OK : mpi_fail(mrc, "barrier");
}

/* ---------------------------------------------------------------- sums */

/* Rank 0 adds the buffers of ranks 1, 2, ... to its own, in that order, then broadcasts:
 * the same bits on every rank whatever the network does. */
#define DEFINE_SUM(NAME, T)                                                                        \
    int NAME(T *buf, size_t n)                                                                     \
    {                                                                                              \
        debug_kill_point();                                                                        \
        if (g_size == 1 || n == 0)                                                                 \
            return LMP_OK;                                                                         \
        const size_t per = DIST_CHUNK / sizeof(T);                                                 \
        int rc = LMP_OK;                                                                           \
        if (g_rank == 0) {                                                                         \
            T *tmp = malloc(sizeof(T) * (n < per ? n : per));                                      \
            if (!tmp)                                                                              \
                rc = lmp_err(LMP_ENOMEM, "out of memory (reduction buffer)");                      \
            for (int r = 1; r < g_size && !rc; r++)                                                \
                for (size_t off = 0; off < n && !rc; off += per) {                                 \
                    size_t k = n - off < per ? n - off : per;                                      \
                    if ((rc = recv_bytes(tmp, sizeof(T) * k, r)))                                  \
                        break;                                                                     \
                    for (size_t i = 0; i < k; i++)                                                 \
                        buf[off + i] += tmp[i];                                                    \
                }                                                                                  \
            free(tmp);                                                                             \
        } else {                                                                                   \
            rc = send_bytes(buf, sizeof(T) * n, 0);                                                \
        }                                                                                          \
        if (rc) /* rank 0 could not receive: MPI is broken, the job ends in lmp_dist_end */        \
            return rc;                                                                             \
        return lmp_dist_bcast(buf, sizeof(T) * n, 0);                                              \
    }

DEFINE_SUM(lmp_dist_sum_f64, double)
DEFINE_SUM(lmp_dist_sum_f32, float)
DEFINE_SUM(lmp_dist_sum_i64, int64_t)

/* ---------------------------------------------------------------- rows */

/* Share of rank r of n rows. */
static void share_of(int r, int64_t n, int64_t *lo, int64_t *hi)
{
    int64_t q = n / g_size, e = n % g_size;
    *lo = r * q + (r < e ? r : e);
    *hi = *lo + q + (r < e);
}

int lmp_dist_allgather_rows(void *buf, int64_t n_rows, size_t row_bytes)
{
    debug_kill_point();
    if (g_size == 1)
        return LMP_OK;
    for (int r = 0; r < g_size; r++) {
        int64_t lo, hi;
        share_of(r, n_rows, &lo, &hi);
        int rc = lmp_dist_bcast((char *)buf + (size_t)lo * row_bytes, (size_t)(hi - lo) * row_bytes, r);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

int lmp_dist_gather_rows(void *buf, int64_t n_rows, size_t row_bytes, int root)
{
    debug_kill_point();
    if (g_size == 1)
        return LMP_OK;
    if (root < 0 || root >= g_size)
        return lmp_err(LMP_EINVAL, "lmp_dist_gather_rows: root %d outside 0..%d", root, g_size - 1);
    int64_t lo, hi;
    if (g_rank != root) {
        share_of(g_rank, n_rows, &lo, &hi);
        return send_bytes((char *)buf + (size_t)lo * row_bytes, (size_t)(hi - lo) * row_bytes, root);
    }
    for (int r = 0; r < g_size; r++) {
        if (r == root)
            continue;
        share_of(r, n_rows, &lo, &hi);
        int rc = recv_bytes((char *)buf + (size_t)lo * row_bytes, (size_t)(hi - lo) * row_bytes, r);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

/* ---------------------------------------------------------------- errors */

int lmp_dist_status(int rc)
{
    debug_kill_point();
    if (g_size == 1)
        return rc;
    int *all = malloc(sizeof(int) * (size_t)g_size);
    if (!all) /* cannot agree: lmp_dist_end ends the job */
        return lmp_err(LMP_ENOMEM, "out of memory");
    int mrc = MPI_Allgather(&rc, 1, MPI_INT, all, 1, MPI_INT, g_comm);
    if (mrc != MPI_SUCCESS) {
        free(all);
        return mpi_fail(mrc, "error agreement");
    }
    int first = -1;
    for (int r = 0; r < g_size && first < 0; r++)
        if (all[r] != 0)
            first = r;
    int n_failed = 0;
    for (int r = 0; r < g_size; r++)
        n_failed += all[r] != 0;
    free(all);
    if (first < 0)
        return LMP_OK;
    /* the first failing rank's message, for rank 0 to print */
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", g_rank == first ? lmp_errmsg() : "");
    if ((mrc = MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, g_comm)) != MPI_SUCCESS)
        return mpi_fail(mrc, "error agreement");
    msg[sizeof msg - 1] = 0;
    char host[MPI_MAX_PROCESSOR_NAME];
    memcpy(host, g_host, sizeof host);
    if ((mrc = MPI_Bcast(host, (int)sizeof host, MPI_CHAR, first, g_comm)) != MPI_SUCCESS)
        return mpi_fail(mrc, "error agreement");
    host[sizeof host - 1] = 0;
    g_agreed = true;
    if (g_rank != 0) {
        /* rank 0 reports it; the other ranks go quiet */
        fflush(stderr);
        to_null(STDERR_FILENO);
    }
    if (rc != 0)
        return rc; /* its own message (rank 0 prints it when it is the first) */
    if (n_failed > 1)
        return lmp_err(LMP_EIO, "rank %d of %d (host %s) failed (and %d other rank%s): %s", first, g_size, host,
                       n_failed - 1, n_failed > 2 ? "s" : "", msg);
    return lmp_err(LMP_EIO, "rank %d of %d (host %s) failed: %s", first, g_size, host, msg);
}
