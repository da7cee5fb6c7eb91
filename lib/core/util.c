/*
 * Small services shared by every module: whole-file mappings, atomic output files,
 * paths, time, peak RSS, threads, the progress bar, a seeded PRNG and FNV hashing.
 */

#include "core.h"
#include "dist.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* ---------------------------------------------------------------- mmap */

int lmp_mmap_open(lmp_mmap *m, const char *path)
{
    struct stat st;
    memset(m, 0, sizeof *m);
    m->fd = -1;
    lmp_input_note(path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lmp_err(LMP_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lmp_err(LMP_EIO, "%s: not a regular file", path);
    }
    m->path = strdup(path);
    m->size = (size_t)st.st_size;
    m->fd = fd;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            lmp_mmap_close(m);
            return lmp_err(LMP_EIO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->data = p;
    }
    return LMP_OK;
}

void lmp_mmap_close(lmp_mmap *m)
{
    if (!m)
        return;
    if (m->data && m->size)
        munmap((void *)m->data, m->size);
    if (m->fd >= 0 && m->path)
        close(m->fd);
    free(m->path);
    memset(m, 0, sizeof *m);
    m->fd = -1;
}

void lmp_mmap_release(const void *p, size_t n)
{
    static long page;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
    if (b > a)
        madvise((void *)a, b - a, MADV_DONTNEED);
}

void lmp_mem_hugepages(void *p, size_t n)
{
    /* only worth it for buffers of several 2 MiB pages; the kernel backs the aligned
     * 2 MiB stretches inside [p, p+n) with huge pages where THP is in "madvise" mode */
    enum { MIN = 4u << 20 };
    static long page;
    if (!p || n < MIN)
        return;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    uintptr_t a = ((uintptr_t)p + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t b = ((uintptr_t)p + n) & ~(uintptr_t)(page - 1);
#ifdef MADV_HUGEPAGE
    if (b > a)
        madvise((void *)a, b - a, MADV_HUGEPAGE);
#else
    (void)a;
    (void)b;
#endif
}

void *lmp_malloc_big(size_t n)
{
    void *p = malloc(n);
    lmp_mem_hugepages(p, n);
    return p;
}

void *lmp_calloc_big(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (p)
        lmp_mem_hugepages(p, n * size);
    return p;
}

void lmp_mmap_prefetch(const void *p, size_t n)
{
    static long page;
    if (!page)
        page = sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(page - 1);
    if (n)
        madvise((void *)a, (uintptr_t)p + n - a, MADV_WILLNEED);
}

/* ---------------------------------------------------------------- atomic output */

int lmp_outfile_open(lmp_outfile *o, const char *path, bool force)
{
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
    int lock_fd, rc = lmp_output_begin(path, force, false, &lock_fd);
    if (rc)
        return rc;
    o->lock_fd = lock_fd;
    size_t n = strlen(path) + 32;
    o->path = strdup(path);
    o->tmp_path = malloc(n);
    if (!o->path || !o->tmp_path) {
        lmp_outfile_abort(o);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    snprintf(o->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    char *rank_tmp = lmp_rank_temp_path(path); /* not rank 0 of an MPI job: a private copy */
    if (rank_tmp) {
        free(o->tmp_path);
        o->tmp_path = rank_tmp;
    }
    lmp_temp_register(o->tmp_path, false);
    o->fp = fopen(o->tmp_path, "wb");
    if (!o->fp) {
        int e = errno;
        lmp_temp_unregister(o->tmp_path);
        lmp_output_unlock(path, o->lock_fd);
        free(o->path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
        o->lock_fd = -1;
        return lmp_err(LMP_EIO, "%s: cannot create: %s", path, strerror(e));
    }
    setvbuf(o->fp, NULL, _IOFBF, 1 << 20);
    /* test hook (tests/cli/test_reliability.sh): hold the temporary open for N seconds so
     * that a signal can be delivered mid-write */
    const char *stall = getenv("LMP_DEBUG_STALL_OUTPUT");
    if (stall && atoi(stall) > 0)
        sleep((unsigned)atoi(stall));
    return LMP_OK;
}

int lmp_outfile_write(lmp_outfile *o, const void *buf, size_t n)
{
    if (o->failed)
        return LMP_EIO;
    if (n && fwrite(buf, 1, n, o->fp) != n) {
        o->failed = 1;
        return lmp_err(LMP_EIO, "%s: write failed: %s", o->path, strerror(errno));
    }
    o->written += n;
    return LMP_OK;
}

int lmp_outfile_pad(lmp_outfile *o, size_t alignment)
{
    static const uint8_t zeros[64];
    uint64_t pos = (uint64_t)ftello(o->fp);
    size_t pad = (size_t)((alignment - pos % alignment) % alignment);
    while (pad > 0) {
        size_t k = pad < sizeof zeros ? pad : sizeof zeros;
        int rc = lmp_outfile_write(o, zeros, k);
        if (rc)
            return rc;
        pad -= k;
    }
    return LMP_OK;
}

int lmp_outfile_seek(lmp_outfile *o, uint64_t offset)
{
    if (fseeko(o->fp, (off_t)offset, SEEK_SET) != 0) {
        o->failed = 1;
        return lmp_err(LMP_EIO, "%s: seek failed: %s", o->path, strerror(errno));
    }
    return LMP_OK;
}

int lmp_outfile_commit(lmp_outfile *o)
{
    int rc = LMP_OK;
    if (!o->fp)
        return lmp_err(LMP_EIO, "output file not open");
    if (o->failed)
        rc = LMP_EIO;
    /* another rank than 0's copy is dropped: no need to reach the disk */
    if (fflush(o->fp) != 0 || (lmp_dist_root() && fsync(fileno(o->fp)) != 0))
        rc = lmp_err(LMP_EIO, "%s: flush failed: %s", o->path, strerror(errno));
    if (fclose(o->fp) != 0 && rc == LMP_OK)
        rc = lmp_err(LMP_EIO, "%s: close failed: %s", o->path, strerror(errno));
    o->fp = NULL;
    if (!lmp_dist_root()) { /* rank 0 writes the output; this rank's copy is dropped */
        unlink(o->tmp_path);
        lmp_temp_unregister(o->tmp_path);
        free(o->path);
        free(o->tmp_path);
        memset(o, 0, sizeof *o);
        o->lock_fd = -1;
        return rc;
    }
    /* inputs read since the output was opened count too */
    if (rc == LMP_OK)
        rc = lmp_output_check(o->path);
    if (rc == LMP_OK && rename(o->tmp_path, o->path) != 0)
        rc = lmp_err(LMP_EIO, "%s: rename failed: %s", o->path, strerror(errno));
    if (rc != LMP_OK)
        unlink(o->tmp_path);
    else
        lmp_output_note_written(o->path);
    lmp_temp_unregister(o->tmp_path);
    lmp_output_unlock(o->path, o->lock_fd);
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
    return rc;
}

void lmp_outfile_renamed(lmp_outfile *o)
{
    lmp_output_note_written(o->path);
    if (o->tmp_path)
        lmp_temp_unregister(o->tmp_path);
    if (o->path)
        lmp_output_unlock(o->path, o->lock_fd);
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
}

void lmp_outfile_abort(lmp_outfile *o)
{
    if (!o)
        return;
    if (o->fp)
        fclose(o->fp);
    if (o->tmp_path) {
        unlink(o->tmp_path);
        lmp_temp_unregister(o->tmp_path);
    }
    if (o->path)
        lmp_output_unlock(o->path, o->lock_fd);
    free(o->path);
    free(o->tmp_path);
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
}

/* ---------------------------------------------------------------- paths */

int lmp_read_file(const char *path, char **out, size_t *len)
{
    lmp_input_note(path);
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0;
    *out = NULL;
    if (!f)
        return lmp_err(errno == ENOENT ? LMP_ENOTFOUND : LMP_EIO, "%s: cannot open: %s", path,
                       strerror(errno));
    for (;;) {
        if (n + 65536 + 1 > cap) {
            cap = cap ? cap * 2 : 65536 * 2;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return lmp_err(LMP_ENOMEM, "%s: out of memory", path);
            }
            buf = nb;
        }
        size_t k = fread(buf + n, 1, cap - n - 1, f);
        n += k;
        if (k == 0)
            break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return lmp_err(LMP_EIO, "%s: read failed", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len)
        *len = n;
    return LMP_OK;
}

bool lmp_path_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

bool lmp_path_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

char *lmp_path_join(const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (!s)
        return NULL;
    memcpy(s, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/')
        s[k++] = '/';
    memcpy(s + k, name, b + 1);
    return s;
}

bool lmp_str_endswith(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool lmp_str_endswith_ci(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

int lmp_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            /* a swap of two neighbours counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *lmp_suggest(const char *s, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 99;
    size_t ls = strlen(s);
    for (int i = 0; i < n; i++) {
        int dd = lmp_edit_distance(s, cands[i]);
        /* a prefix of a longer name ("--calib-sample") is a good guess too */
        if (ls >= 3 && strncmp(cands[i], s, ls) == 0 && dd > 1)
            dd = 1;
        if (dd < bd) {
            bd = dd;
            best = cands[i];
        }
    }
    int lim = ls <= 4 ? 1 : ls <= 8 ? 2 : 3;
    return bd <= lim ? best : NULL;
}

/* ---------------------------------------------------------------- threads, time */

int lmp_num_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

void lmp_set_num_threads(int n)
{
#ifdef _OPENMP
    if (n > 0)
        omp_set_num_threads(n);
#else
    (void)n;
#endif
}

double lmp_time_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

uint64_t lmp_peak_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    uint64_t kb = 0;
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) {
            kb = strtoull(line + 6, NULL, 10);
            break;
        }
    fclose(f);
    return kb * 1024;
}

/* ---------------------------------------------------------------- progress */

void lmp_progress_begin(lmp_progress *p, const char *label, uint64_t total)
{
    const char *env = getenv("LMP_PROGRESS");
    memset(p, 0, sizeof *p);
    p->label = label;
    p->total = total;
    p->t_start = p->t_last = lmp_time_s();
    p->enabled = lmp_dist_root() && (env ? atoi(env) != 0 : isatty(STDERR_FILENO)); /* rank 0's only */
}

static void progress_draw(lmp_progress *p, double now)
{
    double frac = p->total ? (double)p->done / (double)p->total : 0.0;
    double el = now - p->t_start;
    double eta = frac > 0 ? el * (1 - frac) / frac : 0;
    char bar[31];
    int fill = (int)(frac * 30);
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = 0;
    fprintf(stderr, "\r%s [%s] %5.1f%% %llu/%llu%s%s  %.1fs ETA %.1fs\x1b[K", p->label, bar, 100 * frac,
            (unsigned long long)p->done, (unsigned long long)p->total, p->unit ? " " : "", p->unit ? p->unit : "", el,
            eta);
    fflush(stderr);
    p->drawn = true;
}

void lmp_progress_update(lmp_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double now = lmp_time_s();
    if (now - p->t_last < 0.16 && done < p->total)
        return;
    p->t_last = now;
    progress_draw(p, now);
}

void lmp_progress_end(lmp_progress *p)
{
    if (p->enabled && p->drawn) {
        fprintf(stderr, "\r\x1b[K");
        fflush(stderr);
    }
    p->drawn = false;
}

/* ---------------------------------------------------------------- rng, hash */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lmp_rng_seed(lmp_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

/* xoshiro256** */
uint64_t lmp_rng_next(lmp_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double lmp_rng_uniform(lmp_rng *r) { return (double)(lmp_rng_next(r) >> 11) * 0x1.0p-53; }

float lmp_rng_normal(lmp_rng *r)
{
    double u1 = lmp_rng_uniform(r), u2 = lmp_rng_uniform(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t lmp_fnv1a(uint64_t h, const void *data, size_t n)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* ---------------------------------------------------------------- folders */

#include <ftw.h>

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

/* Output folders being written: temporary path -> final path and lock. */
enum { MAX_OPEN_DIRS = 16 };
static struct {
    char *tmp, *dir;
    int fd;
} g_open_dirs[MAX_OPEN_DIRS];

static void dir_release(const char *tmp)
{
    for (int i = 0; i < MAX_OPEN_DIRS; i++)
        if (g_open_dirs[i].tmp && strcmp(g_open_dirs[i].tmp, tmp) == 0) {
            lmp_temp_unregister(g_open_dirs[i].tmp);
            lmp_output_unlock(g_open_dirs[i].dir, g_open_dirs[i].fd);
            free(g_open_dirs[i].tmp);
            free(g_open_dirs[i].dir);
            g_open_dirs[i].tmp = g_open_dirs[i].dir = NULL;
            return;
        }
}

int lmp_dir_remove(const char *path)
{
    dir_release(path);
    if (!lmp_path_exists(path))
        return LMP_OK;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return lmp_err(LMP_EIO, "%s: cannot remove: %s", path, strerror(errno));
    return LMP_OK;
}

int lmp_dir_begin(const char *dir, bool force, char **tmp)
{
    *tmp = NULL;
    int fd, rc = lmp_output_begin(dir, force, true, &fd);
    if (rc)
        return rc;
    size_t n = strlen(dir) + 32;
    char *t = malloc(n);
    int slot = -1;
    for (int i = 0; i < MAX_OPEN_DIRS && slot < 0; i++)
        if (!g_open_dirs[i].tmp)
            slot = i;
    if (!t || slot < 0) {
        free(t);
        lmp_output_unlock(dir, fd);
        return lmp_err(LMP_ENOMEM, "out of memory (or too many output folders open)");
    }
    snprintf(t, n, "%s.tmp.%ld", dir, (long)getpid());
    char *rank_tmp = lmp_rank_temp_path(dir); /* not rank 0 of an MPI job: a private copy */
    if (rank_tmp) {
        free(t);
        t = rank_tmp;
    }
    lmp_dir_remove(t);
    if (mkdir(t, 0755) != 0) {
        int e = errno;
        free(t);
        lmp_output_unlock(dir, fd);
        return lmp_err(LMP_EIO, "%s: cannot create folder: %s", dir, strerror(e));
    }
    g_open_dirs[slot].tmp = strdup(t);
    g_open_dirs[slot].dir = strdup(dir);
    g_open_dirs[slot].fd = fd;
    lmp_temp_register(t, true);
    *tmp = t;
    return LMP_OK;
}

int lmp_dir_commit(const char *tmp, const char *dir)
{
    if (!lmp_dist_root()) /* rank 0 writes the output; this rank's copy is dropped */
        return lmp_dir_remove(tmp);
    int rc = lmp_output_check(dir); /* inputs read since lmp_dir_begin count too */
    if (rc)
        return rc;
    char *marker = lmp_path_join(tmp, LMP_DIR_MARKER);
    rc = marker ? lmp_write_text(marker, "written by lmpress " LMP_VERSION) : lmp_err(LMP_ENOMEM, "out of memory");
    free(marker);
    if (rc)
        return rc;
    if (lmp_path_exists(dir) && !lmp_dir_is_ours(dir))
        return lmp_err(LMP_EEXIST, "%s: folder exists and was not written by lmpress: refusing to replace it", dir);
    if (lmp_path_exists(dir) && (rc = lmp_dir_remove(dir)))
        return rc;
    if (rename(tmp, dir) != 0)
        return lmp_err(LMP_EIO, "%s: rename failed: %s", dir, strerror(errno));
    lmp_output_note_written(dir);
    dir_release(tmp);
    return LMP_OK;
}

int lmp_write_text(const char *path, const char *text)
{
    lmp_outfile o;
    int rc = lmp_outfile_open(&o, path, true);
    if (rc)
        return rc;
    rc = lmp_outfile_write(&o, text, strlen(text));
    if (rc == 0)
        rc = lmp_outfile_write(&o, "\n", 1);
    if (rc == 0)
        return lmp_outfile_commit(&o);
    lmp_outfile_abort(&o);
    return rc;
}

int lmp_copy_file(const char *src, const char *dst)
{
    char *buf;
    size_t len;
    lmp_outfile o;
    int rc = lmp_read_file(src, &buf, &len);
    if (rc)
        return rc;
    if ((rc = lmp_outfile_open(&o, dst, true)) == 0) {
        rc = lmp_outfile_write(&o, buf, len);
        if (rc == 0)
            rc = lmp_outfile_commit(&o);
        else
            lmp_outfile_abort(&o);
    }
    free(buf);
    return rc;
}
