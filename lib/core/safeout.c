/*
 * Output safety shared by every writer (lmp_outfile, lmp_dir_*, lib/io's HDF5 files):
 *  - inputs are remembered by device and inode as they are opened (lmp_input_note), and
 *    an output that is, contains or lies inside an input is refused;
 *  - an existing folder is replaced only when lmpress wrote it (marker file) or it is
 *    empty;
 *  - an advisory lock (flock) on "<dir>/.<name>.lock" beside the output, held from open
 *    to commit/abort, refuses a second concurrent writer;
 *  - temporaries are registered; SIGINT/SIGTERM remove them before the process dies, and
 *    a later run removes the temporaries of dead processes next to its output.
 */
#include "core.h"
#include "dist.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---------------------------------------------------------------- inputs */

enum { MAX_INPUTS = 1024 };
typedef struct {
    dev_t dev;
    ino_t ino;
    bool dir;
    char *real; /* realpath */
} input_rec;

static input_rec g_inputs[MAX_INPUTS];
static int g_n_inputs;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* What this process wrote: reading it back later (a writer that post-processes its own
 * output) does not make it an input. */
enum { MAX_WRITTEN = 1024 };
static struct {
    dev_t dev;
    ino_t ino;
} g_written[MAX_WRITTEN];
static int g_n_written;

void lmp_output_note_written(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return;
    pthread_mutex_lock(&g_lock);
    if (g_n_written < MAX_WRITTEN) {
        g_written[g_n_written].dev = st.st_dev;
        g_written[g_n_written++].ino = st.st_ino;
    }
    pthread_mutex_unlock(&g_lock);
}

void lmp_input_note(const char *path)
{
    struct stat st;
    if (!path || stat(path, &st) != 0)
        return;
    pthread_mutex_lock(&g_lock);
    bool seen = false;
    for (int i = 0; i < g_n_written && !seen; i++)
        seen = g_written[i].dev == st.st_dev && g_written[i].ino == st.st_ino;
    for (int i = 0; i < g_n_inputs && !seen; i++)
        seen = g_inputs[i].dev == st.st_dev && g_inputs[i].ino == st.st_ino;
    if (!seen && g_n_inputs < MAX_INPUTS) {
        char *r = realpath(path, NULL);
        if (r) {
            g_inputs[g_n_inputs++] = (input_rec){st.st_dev, st.st_ino, S_ISDIR(st.st_mode), r};
        }
    }
    pthread_mutex_unlock(&g_lock);
}

/* The folder that holds `path` (malloc'd realpath) even when path itself does not exist. */
static char *real_parent(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *slash = strrchr(copy, '/');
    while (slash && slash != copy && slash[1] == 0) { /* "dir/" */
        *slash = 0;
        slash = strrchr(copy, '/');
    }
    char *r;
    if (!slash)
        r = realpath(".", NULL);
    else if (slash == copy)
        r = strdup("/");
    else {
        *slash = 0;
        r = realpath(copy, NULL);
    }
    free(copy);
    return r;
}

/* Whether directory `dir` (a realpath) is `p` or one of p's ancestors. */
static bool is_ancestor(const char *dir, const char *p)
{
    size_t n = strlen(dir);
    if (strcmp(dir, "/") == 0)
        return true;
    return strncmp(dir, p, n) == 0 && (p[n] == 0 || p[n] == '/');
}

int lmp_output_check(const char *path)
{
    struct stat st;
    int rc = LMP_OK;
    bool exists = stat(path, &st) == 0;
    char *parent = real_parent(path);
    char *self = exists ? realpath(path, NULL) : NULL;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < g_n_inputs && !rc; i++) {
        const input_rec *in = &g_inputs[i];
        if (exists && st.st_dev == in->dev && st.st_ino == in->ino)
            rc = lmp_err(LMP_EINVAL, "%s: the output is the input %s: refusing to overwrite it", path, in->real);
        else if (exists && S_ISDIR(st.st_mode) && self && is_ancestor(self, in->real))
            rc = lmp_err(LMP_EINVAL, "%s: the output folder contains the input %s: refusing to replace it", path,
                         in->real);
        else if (in->dir && parent && is_ancestor(in->real, parent))
            rc = lmp_err(LMP_EINVAL, "%s: the output would be inside the input folder %s: choose another place",
                         path, in->real);
    }
    pthread_mutex_unlock(&g_lock);
    free(parent);
    free(self);
    return rc;
}

/* ---------------------------------------------------------------- temporaries and signals */

enum { MAX_TEMPS = 256, TEMP_PATH = 4200 };
typedef struct {
    volatile sig_atomic_t used;
    bool dir;
    char path[TEMP_PATH];
} temp_rec;
static temp_rec g_temps[MAX_TEMPS];
static volatile sig_atomic_t g_in_handler;

/* Recursive removal with system calls only (async-signal-safe). */
static void rm_tree_at(int dfd, const char *name, int depth)
{
    if (unlinkat(dfd, name, 0) == 0 || depth > 16)
        return;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[4096] __attribute__((aligned(8)));
    for (;;) {
        long n = syscall(SYS_getdents64, fd, buf, sizeof buf);
        if (n <= 0)
            break;
        for (long off = 0; off < n;) {
            struct {
                uint64_t ino;
                int64_t off;
                unsigned short reclen;
                unsigned char type;
                char name[];
            } *d = (void *)(buf + off);
            if (!(d->name[0] == '.' && (d->name[1] == 0 || (d->name[1] == '.' && d->name[2] == 0))))
                rm_tree_at(fd, d->name, depth + 1);
            off += d->reclen;
        }
    }
    close(fd);
    unlinkat(dfd, name, AT_REMOVEDIR);
}

static void on_signal(int sig)
{
    if (!g_in_handler) {
        g_in_handler = 1;
        for (int i = 0; i < MAX_TEMPS; i++)
            if (g_temps[i].used) {
                if (g_temps[i].dir)
                    rm_tree_at(AT_FDCWD, g_temps[i].path, 0);
                else
                    unlink(g_temps[i].path);
            }
        static const char msg[] = "lmpress: interrupted: temporary files removed\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

static void install_handlers(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_signal;
            sigemptyset(&sa.sa_mask);
            sigaction(sigs[i], &sa, NULL);
        }
    }
}

/* dst (TEMP_PATH bytes) = path made absolute; false when it does not fit. */
static bool abs_path(char *dst, const char *path)
{
    size_t pl = strlen(path), cl = 0;
    char cwd[2048];
    if (path[0] != '/') {
        if (!getcwd(cwd, sizeof cwd))
            return false;
        cl = strlen(cwd);
    }
    if (cl + pl + 2 > TEMP_PATH)
        return false;
    if (cl) {
        memcpy(dst, cwd, cl);
        dst[cl++] = '/';
    }
    memcpy(dst + cl, path, pl + 1);
    return true;
}

void lmp_temp_register(const char *path, bool dir)
{
    if (!path || strlen(path) >= TEMP_PATH)
        return;
    pthread_mutex_lock(&g_lock);
    install_handlers();
    for (int i = 0; i < MAX_TEMPS; i++)
        if (!g_temps[i].used) {
            g_temps[i].dir = dir;
            /* an absolute path: the handler must not depend on a later chdir */
            if (!abs_path(g_temps[i].path, path))
                break;
            g_temps[i].used = 1;
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

void lmp_temp_unregister(const char *path)
{
    if (!path)
        return;
    char abs[TEMP_PATH];
    if (!abs_path(abs, path))
        return;
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < MAX_TEMPS; i++)
        if (g_temps[i].used && strcmp(g_temps[i].path, abs) == 0) {
            g_temps[i].used = 0;
            break;
        }
    pthread_mutex_unlock(&g_lock);
}

/* Removes "<base>...tmp.<pid>..." entries beside `path` whose process is gone. */
void lmp_temp_clean_stale(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    size_t L = strlen(copy);
    while (L > 1 && copy[L - 1] == '/')
        copy[--L] = 0;
    char *slash = strrchr(copy, '/');
    const char *dir = slash ? (slash == copy ? "/" : copy) : ".";
    const char *base = slash ? slash + 1 : copy;
    if (slash && slash != copy)
        *slash = 0;
    size_t bl = strlen(base);
    DIR *d = bl ? opendir(dir) : NULL;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (strncmp(e->d_name, base, bl) != 0 || e->d_name[bl] != '.')
            continue;
        const char *t = strstr(e->d_name + bl, ".tmp.");
        if (!t)
            continue;
        char *end;
        long pid = strtol(t + 5, &end, 10);
        if (end == t + 5 || pid <= 0 || (*end && *end != '.') || pid == (long)getpid())
            continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue; /* alive (or not ours to judge) */
        char *p = lmp_path_join(dir, e->d_name);
        if (p) {
            if (lmp_path_is_dir(p))
                lmp_dir_remove(p);
            else
                unlink(p);
            if (!lmp_path_exists(p))
                lmp_info("removed %s, a temporary left by an interrupted run (process %ld is gone)", p, pid);
            free(p);
        }
    }
    if (d)
        closedir(d);
    free(copy);
}

/* ---------------------------------------------------------------- locks */

/* "<dir>/.<name>.lmpress-lock" for `path` (malloc'd). */
static char *lock_path(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    size_t L = strlen(copy);
    while (L > 1 && copy[L - 1] == '/')
        copy[--L] = 0;
    char *slash = strrchr(copy, '/');
    size_t n = L + 32;
    char *lp = malloc(n);
    if (lp) {
        if (slash) {
            *slash = 0;
            snprintf(lp, n, "%s/.%s.lmpress-lock", slash == copy ? "" : copy, slash + 1);
        } else {
            snprintf(lp, n, ".%s.lmpress-lock", copy);
        }
    }
    free(copy);
    return lp;
}

int lmp_output_lock(const char *path, int *fd_out)
{
    *fd_out = -1;
    char *lp = lock_path(path);
    if (!lp)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int attempt = 0; attempt < 8; attempt++) {
        int fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) {
            int e = errno;
            free(lp);
            return lmp_err(LMP_EIO, "%s: cannot create the lock file beside it: %s", path, strerror(e));
        }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            char pid[32] = "";
            ssize_t k = pread(fd, pid, sizeof pid - 1, 0);
            pid[k > 0 ? k : 0] = 0;
            pid[strcspn(pid, "\n")] = 0;
            close(fd);
            free(lp);
            return lmp_err(LMP_EEXIST, "%s: another lmpress process%s%s is writing this output; wait for it to finish",
                           path, pid[0] ? " (pid " : "", pid[0] ? strcat(pid, ")") : "");
        }
        /* the holder before us may have removed the file after we opened it */
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(lp, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            char pid[32];
            int k = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
            if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)k, 0) < 0)
                (void)0;
            lmp_temp_register(lp, false); /* a signal removes it with the temporaries */
            free(lp);
            *fd_out = fd;
            return LMP_OK;
        }
        close(fd);
    }
    free(lp);
    return lmp_err(LMP_EIO, "%s: cannot take the output lock", path);
}

void lmp_output_unlock(const char *path, int fd)
{
    if (fd < 0)
        return;
    char *lp = lock_path(path);
    if (lp) {
        unlink(lp); /* while still holding the lock (see lmp_output_lock) */
        lmp_temp_unregister(lp);
    }
    free(lp);
    close(fd);
}

/* ---------------------------------------------------------------- begin/end of an output */

int lmp_output_begin(const char *path, bool force, bool dir, int *lock_fd)
{
    *lock_fd = -1;
    if (!lmp_dist_root())
        return LMP_OK; /* rank 0 checks, locks and writes; this rank's copy goes to scratch */
    if (!force && lmp_path_exists(path))
        return lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)", path);
    int rc = lmp_output_check(path);
    if (rc)
        return rc;
    if (lmp_path_exists(path)) {
        bool is_dir = lmp_path_is_dir(path);
        if (is_dir && !dir)
            return lmp_err(LMP_EEXIST, "%s: is a folder; refusing to replace it with a file", path);
        if (is_dir && !lmp_dir_is_ours(path))
            return lmp_err(LMP_EEXIST,
                           "%s: folder exists and was not written by lmpress (no %s marker): refusing to replace it "
                           "and its contents; remove it yourself or choose another name",
                           path, LMP_DIR_MARKER);
    }
    if ((rc = lmp_output_lock(path, lock_fd)))
        return rc;
    lmp_temp_clean_stale(path);
    return LMP_OK;
}

bool lmp_dir_is_ours(const char *dir)
{
    char *m = lmp_path_join(dir, LMP_DIR_MARKER);
    bool ours = m && lmp_path_exists(m);
    free(m);
    if (ours)
        return true;
    DIR *d = opendir(dir);
    bool empty = d != NULL;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            empty = false;
    if (d)
        closedir(d);
    return empty;
}

/* ---------------------------------------------------------------- non-root ranks */

static char g_scratch[TEMP_PATH];
static unsigned long g_scratch_seq;

char *lmp_rank_temp_path(const char *path)
{
    if (lmp_dist_root())
        return NULL;
    pthread_mutex_lock(&g_lock);
    if (!g_scratch[0]) {
        const char *base = getenv("TMPDIR");
        char d[TEMP_PATH];
        snprintf(d, sizeof d, "%s/lmpress-rank%d.%ld", base && *base ? base : "/tmp", lmp_dist_rank(),
                 (long)getpid());
        if (mkdir(d, 0700) == 0 || errno == EEXIST)
            memcpy(g_scratch, d, sizeof d);
        /* the folders of ranks that were killed (SIGKILL leaves them) */
        DIR *dir = opendir(base && *base ? base : "/tmp");
        struct dirent *e;
        while (dir && (e = readdir(dir))) {
            const char *dot = strncmp(e->d_name, "lmpress-rank", 12) == 0 ? strchr(e->d_name + 12, '.') : NULL;
            long pid = dot ? strtol(dot + 1, NULL, 10) : 0;
            if (pid > 0 && pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH)
                rm_tree_at(dirfd(dir), e->d_name, 0);
        }
        if (dir)
            closedir(dir);
    }
    unsigned long k = ++g_scratch_seq;
    bool have = g_scratch[0] != 0;
    pthread_mutex_unlock(&g_lock);
    if (!have)
        return NULL;
    if (k == 1)
        lmp_temp_register(g_scratch, true); /* a signal removes the folder */
    const char *slash = strrchr(path, '/');
    const char *name = slash && slash[1] ? slash + 1 : path;
    size_t n = strlen(g_scratch) + strlen(name) + 48;
    char *t = malloc(n);
    if (t) {
        int at = snprintf(t, n, "%s/%lu.", g_scratch, k);
        snprintf(t + at, n - (size_t)at, "%s", name);
        for (char *c = t + at; *c; c++)
            if (*c == '/')
                *c = '_';
    }
    return t;
}

void lmp_rank_scratch_remove(void)
{
    if (!g_scratch[0])
        return;
    rm_tree_at(AT_FDCWD, g_scratch, 0);
    lmp_temp_unregister(g_scratch);
    g_scratch[0] = 0;
}
