/*
 * Window stores of the calibration driver (calib.h, lmp_calib_store): f32 windows in
 * memory, or above the spill threshold in an unlinked temporary file read and written one
 * window at a time. Moved out of driver.c so that rows holding per-window data of their own
 * (AWQ's captured inputs, lib/quant/awq.c) bound their memory the same way.
 */
#include "calib.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t lmp_calib_spill_threshold(void)
{
    const char *e = getenv("LMP_CALIB_SPILL");
    if (!e || !*e)
        return 2ull << 30;
    if (strcmp(e, "off") == 0)
        return UINT64_MAX;
    char *end;
    double v = strtod(e, &end);
    switch (*end) {
    case 'k': case 'K': v *= 1024; break;
    case 'm': case 'M': v *= 1048576; break;
    case 'g': case 'G': v *= 1073741824.0; break;
    default: break;
    }
    return v <= 0 ? 0 : (uint64_t)v;
}

int lmp_calib_store_open(lmp_calib_store *st, uint64_t bytes, int64_t win, bool allow_spill, uint64_t held,
                         const char *what)
{
    st->mem = NULL;
    st->fd = -1;
    st->win = win;
    if (!allow_spill || held + bytes <= lmp_calib_spill_threshold()) {
        st->mem = lmp_malloc_big(bytes ? bytes : 1);
        return st->mem ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory for the %s (%.1f MiB)", what,
                                          bytes / 1048576.0);
    }
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    char path[4096];
    snprintf(path, sizeof path, "%s/lmpress-calib-XXXXXX", dir);
    st->fd = mkstemp(path);
    if (st->fd < 0)
        return lmp_err(LMP_EIO, "%s: cannot create the calibration activations' temporary file: %s", path,
                       strerror(errno));
    unlink(path); /* gone with the process, whatever happens */
    lmp_info("%s: %.1f MiB f32, spilled to an unlinked temporary file in %s (memory holds one window; "
             "LMP_CALIB_SPILL sets the threshold)",
             what, bytes / 1048576.0, dir);
    return LMP_OK;
}

void lmp_calib_store_close(lmp_calib_store *st)
{
    free(st->mem);
    if (st->fd >= 0)
        close(st->fd);
    st->mem = NULL;
    st->fd = -1;
}

static int store_io(lmp_calib_store *st, int s, float *buf, int64_t count, bool write)
{
    const size_t n = (size_t)count * sizeof(float);
    off_t off = (off_t)s * (off_t)st->win * (off_t)sizeof(float);
    size_t done = 0;
    while (done < n) {
        ssize_t r = write ? pwrite(st->fd, (const char *)buf + done, n - done, off + (off_t)done)
                          : pread(st->fd, (char *)buf + done, n - done, off + (off_t)done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return lmp_err(LMP_EIO, "calibration activations' temporary file: %s of window %d failed: %s",
                           write ? "write" : "read", s, r < 0 ? strerror(errno) : "short read");
        done += (size_t)r;
    }
    return LMP_OK;
}

int lmp_calib_store_get_n(lmp_calib_store *st, int s, float *dst, int64_t count)
{
    if (st->mem) {
        memcpy(dst, st->mem + (int64_t)s * st->win, (size_t)count * sizeof(float));
        return LMP_OK;
    }
    return store_io(st, s, dst, count, false);
}

int lmp_calib_store_put_n(lmp_calib_store *st, int s, const float *src, int64_t count)
{
    if (st->mem) {
        float *d = st->mem + (int64_t)s * st->win;
        if (d != src)
            memcpy(d, src, (size_t)count * sizeof(float));
        return LMP_OK;
    }
    return store_io(st, s, (float *)src, count, true);
}

int lmp_calib_state_get(const lmp_calib_block *b, int s, float *dst)
{
    if (!b->store || s < b->w_lo || s >= b->w_hi)
        return lmp_err(LMP_EINVAL, "calibration: window %d is not held by this rank ([%d, %d))", s, b->w_lo, b->w_hi);
    return lmp_calib_store_get(b->store, s - b->w_lo, dst);
}

int lmp_calib_state_put(const lmp_calib_block *b, int s, const float *src)
{
    if (!b->store || s < b->w_lo || s >= b->w_hi)
        return lmp_err(LMP_EINVAL, "calibration: window %d is not held by this rank ([%d, %d))", s, b->w_lo, b->w_hi);
    return lmp_calib_store_put(b->store, s - b->w_lo, src);
}
