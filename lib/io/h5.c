/*
 * HDF5 helpers over the C library: whole and extendable (appendable) datasets, chunked
 * and deflate-compressed, with string/integer/float attributes. f16 is stored as a 16-bit
 * IEEE half type that h5py reads as float16. Created files are written under a
 * temporary name and renamed by lmp_h5_close(f, true).
 *
 * Integrity: files are created with the HDF5 1.8 file format as the lowest version
 * (superblock v2, object headers v2), whose metadata (attributes, dataset layouts, chunk
 * indexes) carries Jenkins checksums, and every dataset is chunked with the Fletcher32
 * filter applied last (so it covers the stored, compressed bytes). HDF5 verifies both on
 * every read: a flipped byte is a read error, never a different number. Files written
 * before this (no Fletcher32 filter) still read; lmp_h5_checksummed says which they are.
 */
#include "h5.h"
#include "../core/dist.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ": No space left on device" when the C library left an errno behind, else "". */
static const char *why(int e) { return e ? strerror(e) : "HDF5 library error"; }

struct lmp_h5 {
    hid_t file;
    char *path;
    char *tmp_path; /* non-NULL for created files until committed */
    int lock_fd;    /* lmp_output_lock of created files */
};

static void h5_quiet(void) { lmp_h5_init(); }

void lmp_h5_init(void)
{
    static int done;
    if (!done) {
        /* No termination at exit: after a write that failed (a full disk), H5Fclose fails
         * and leaves the file open inside the library, whose atexit handler then crashes
         * closing it again (libhdf5 1.10.8). Every file is closed by lmpress itself. */
        H5dont_atexit();
        H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* errors are reported through lmp_err */
        done = 1;
    }
}

static hid_t half_type(void)
{
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

/* File (storage) type and memory type for a dtype; both must be closed by the caller. */
static int h5_types(lmp_dtype dt, hid_t *file_t, hid_t *mem_t)
{
    switch (dt) {
    case LMP_DT_F32: *file_t = H5Tcopy(H5T_IEEE_F32LE); *mem_t = H5Tcopy(H5T_NATIVE_FLOAT); break;
    case LMP_DT_F64: *file_t = H5Tcopy(H5T_IEEE_F64LE); *mem_t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
    case LMP_DT_F16: *file_t = half_type(); *mem_t = half_type(); break;
    case LMP_DT_I32: *file_t = H5Tcopy(H5T_STD_I32LE); *mem_t = H5Tcopy(H5T_NATIVE_INT32); break;
    case LMP_DT_I64: *file_t = H5Tcopy(H5T_STD_I64LE); *mem_t = H5Tcopy(H5T_NATIVE_INT64); break;
    case LMP_DT_U8: *file_t = H5Tcopy(H5T_STD_U8LE); *mem_t = H5Tcopy(H5T_NATIVE_UINT8); break;
    case LMP_DT_I8: *file_t = H5Tcopy(H5T_STD_I8LE); *mem_t = H5Tcopy(H5T_NATIVE_INT8); break;
    default:
        return lmp_err(LMP_EUNSUPPORTED, "HDF5: dtype %s not supported", lmp_dtype_info(dt)->name);
    }
    return LMP_OK;
}

int lmp_h5_create(lmp_h5 **out, const char *path, bool force)
{
    h5_quiet();
    *out = NULL;
    int lock_fd, rc = lmp_output_begin(path, force, false, &lock_fd);
    if (rc)
        return rc;
    lmp_h5 *f = calloc(1, sizeof *f);
    size_t n = strlen(path) + 32;
    f->path = strdup(path);
    f->tmp_path = malloc(n);
    f->lock_fd = lock_fd;
    snprintf(f->tmp_path, n, "%s.tmp.%ld", path, (long)getpid());
    char *rank_tmp = lmp_rank_temp_path(path); /* not rank 0 of an MPI job: a private copy */
    if (rank_tmp) {
        free(f->tmp_path);
        f->tmp_path = rank_tmp;
    }
    lmp_temp_register(f->tmp_path, false);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V18, H5F_LIBVER_LATEST);
    errno = 0;
    f->file = H5Fcreate(f->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    int e = errno;
    H5Pclose(fapl);
    if (f->file < 0) {
        lmp_h5_close(f, false);
        return lmp_err(LMP_EIO, "%s: cannot create: %s", path, why(e));
    }
    *out = f;
    return LMP_OK;
}

int lmp_h5_open(lmp_h5 **out, const char *path, bool writable)
{
    h5_quiet();
    *out = NULL;
    if (!lmp_path_exists(path))
        return lmp_err(LMP_ENOTFOUND, "%s: no such file", path);
    if (H5Fis_hdf5(path) <= 0)
        return lmp_err(LMP_EFORMAT, "%s: not an HDF5 file (or truncated/corrupt)", path);
    lmp_h5 *f = calloc(1, sizeof *f);
    f->path = strdup(path);
    f->lock_fd = -1;
    if (!writable)
        lmp_input_note(path);
    f->file = H5Fopen(path, writable ? H5F_ACC_RDWR : H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f->file < 0) {
        lmp_h5_close(f, false);
        return lmp_err(LMP_EFORMAT, "%s: cannot open HDF5 file (truncated or corrupt?)", path);
    }
    *out = f;
    return LMP_OK;
}

int lmp_h5_close(lmp_h5 *f, bool commit)
{
    int rc = LMP_OK;
    if (!f)
        return LMP_OK;
    errno = 0;
    if (f->file >= 0 && f->file != 0 && H5Fclose(f->file) < 0)
        rc = lmp_err(LMP_EIO, "%s: write failed: %s", f->path, why(errno));
    if (f->tmp_path) {
        if (commit && rc == LMP_OK && lmp_dist_root()) {
            int fd = open(f->tmp_path, O_RDONLY);
            if (fd >= 0 && fsync(fd) != 0)
                rc = lmp_err(LMP_EIO, "%s: write failed: %s", f->path, strerror(errno));
            if (fd >= 0)
                close(fd);
            if (rc == LMP_OK)
                rc = lmp_output_check(f->path);
            if (rc == LMP_OK && rename(f->tmp_path, f->path) != 0)
                rc = lmp_err(LMP_EIO, "%s: rename failed: %s", f->path, strerror(errno));
            if (rc == LMP_OK)
                lmp_output_note_written(f->path);
            if (rc != LMP_OK)
                unlink(f->tmp_path);
            lmp_temp_unregister(f->tmp_path);
        } else {
            unlink(f->tmp_path);
            lmp_temp_unregister(f->tmp_path);
        }
        lmp_output_unlock(f->path, f->lock_fd);
    }
    free(f->path);
    free(f->tmp_path);
    free(f);
    return rc;
}

int lmp_h5_checksummed(lmp_h5 *f, const char *name)
{
    return lmp_h5_ds_checksummed((int64_t)f->file, name);
}

int lmp_h5_ds_checksummed(int64_t loc, const char *name)
{
    hid_t ds = H5Dopen2((hid_t)loc, name, H5P_DEFAULT);
    if (ds < 0)
        return -1;
    hid_t dcpl = H5Dget_create_plist(ds);
    int n = H5Pget_nfilters(dcpl), found = 0;
    for (int i = 0; i < n; i++) {
        unsigned flags, cd[8];
        size_t ncd = 8;
        char nm[64];
        unsigned cfg;
        if (H5Pget_filter2(dcpl, (unsigned)i, &flags, &ncd, cd, sizeof nm, nm, &cfg) == H5Z_FILTER_FLETCHER32)
            found = 1;
    }
    H5Pclose(dcpl);
    H5Dclose(ds);
    return found;
}

bool lmp_h5_exists(lmp_h5 *f, const char *name)
{
    return H5Lexists(f->file, name, H5P_DEFAULT) > 0;
}

static int write_ds(lmp_h5 *f, const char *name, lmp_dtype dt, int ndim, const int64_t *shape,
                    const int64_t *maxshape, const void *data, int64_t chunk_rows, int level)
{
    hsize_t dims[8], maxd[8], chunk[8];
    hid_t ft, mt, space = -1, dcpl = -1, ds = -1;
    int rc = h5_types(dt, &ft, &mt);
    if (rc)
        return rc;
    for (int i = 0; i < ndim; i++) {
        dims[i] = (hsize_t)shape[i];
        maxd[i] = maxshape && maxshape[i] < 0 ? H5S_UNLIMITED : (hsize_t)shape[i];
        chunk[i] = i == 0 ? (hsize_t)(chunk_rows > 0 ? chunk_rows : 1) : (hsize_t)(shape[i] ? shape[i] : 1);
    }
    space = H5Screate_simple(ndim, dims, maxd);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (chunk_rows > 0 && ndim > 0) {
        H5Pset_chunk(dcpl, ndim, chunk);
        if (level > 0) {
            H5Pset_shuffle(dcpl);
            H5Pset_deflate(dcpl, (unsigned)level);
        }
        H5Pset_fletcher32(dcpl); /* last: checksums the bytes as stored */
    }
    errno = 0;
    ds = H5Dcreate2(f->file, name, ft, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (ds < 0)
        rc = lmp_err(LMP_EIO, "%s: cannot create dataset %s: %s", f->path, name, why(errno));
    else if (data && H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        rc = lmp_err(LMP_EIO, "%s: cannot write dataset %s: %s", f->path, name, why(errno));
    if (ds >= 0)
        H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    H5Tclose(ft);
    H5Tclose(mt);
    return rc;
}

int lmp_h5_write(lmp_h5 *f, const char *name, lmp_dtype dt, int ndim, const int64_t *shape,
                 const void *data, int64_t chunk_rows, int level)
{
    if (ndim < 1 || ndim > 8)
        return lmp_err(LMP_EINVAL, "%s: dataset %s: bad rank %d", f->path, name, ndim);
    if (chunk_rows > shape[0] || chunk_rows <= 0)
        chunk_rows = shape[0]; /* always chunked: the Fletcher32 filter needs chunks */
    return write_ds(f, name, dt, ndim, shape, NULL, data, shape[0] ? chunk_rows : 0, level);
}

int lmp_h5_read(lmp_h5 *f, const char *name, lmp_dtype dt, int *ndim, int64_t *shape, void **data)
{
    hid_t ft, mt;
    int rc = h5_types(dt, &ft, &mt);
    *data = NULL;
    if (rc)
        return rc;
    H5Tclose(ft);
    hid_t ds = lmp_h5_exists(f, name) ? H5Dopen2(f->file, name, H5P_DEFAULT) : -1;
    if (ds < 0) {
        H5Tclose(mt);
        return lmp_err(LMP_ENOTFOUND, "%s: no dataset %s", f->path, name);
    }
    hid_t space = H5Dget_space(ds);
    hsize_t dims[8];
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 1 || nd > 8) {
        rc = lmp_err(LMP_EFORMAT, "%s: dataset %s has rank %d", f->path, name, nd);
        goto done;
    }
    H5Sget_simple_extent_dims(space, dims, NULL);
    size_t n = 1;
    for (int i = 0; i < nd; i++) {
        shape[i] = (int64_t)dims[i];
        n *= dims[i];
    }
    *ndim = nd;
    *data = malloc(n * H5Tget_size(mt) + 1);
    if (!*data) {
        rc = lmp_err(LMP_ENOMEM, "%s: dataset %s too large", f->path, name);
        goto done;
    }
    if (n && H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, *data) < 0) {
        free(*data);
        *data = NULL;
        rc = lmp_err(LMP_EFORMAT, "%s: cannot read dataset %s (checksum mismatch, corrupt or truncated)",
                     f->path, name);
    }
done:
    H5Sclose(space);
    H5Dclose(ds);
    H5Tclose(mt);
    return rc;
}

/* ---------------------------------------------------------------- attributes */

static hid_t open_obj(lmp_h5 *f, const char *obj)
{
    if (!obj || !*obj || strcmp(obj, "/") == 0)
        return H5Gopen2(f->file, "/", H5P_DEFAULT);
    return H5Oopen(f->file, obj, H5P_DEFAULT);
}

static void close_obj(hid_t o) { H5Oclose(o); }

static int attr_write(lmp_h5 *f, const char *obj, const char *key, hid_t type, const void *val)
{
    hid_t o = open_obj(f, obj);
    if (o < 0)
        return lmp_err(LMP_ENOTFOUND, "%s: no object %s", f->path, obj ? obj : "/");
    if (H5Aexists(o, key) > 0)
        H5Adelete(o, key);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(o, key, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a >= 0 && H5Awrite(a, type, val) >= 0 ? LMP_OK
                                                   : lmp_err(LMP_EIO, "%s: cannot write attribute %s", f->path, key);
    if (a >= 0)
        H5Aclose(a);
    H5Sclose(sp);
    close_obj(o);
    return rc;
}

int lmp_h5_attr_set_str(lmp_h5 *f, const char *obj, const char *key, const char *val)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, strlen(val) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    H5Tset_cset(t, H5T_CSET_UTF8);
    int rc = attr_write(f, obj, key, t, val);
    H5Tclose(t);
    return rc;
}

int lmp_h5_attr_set_i64(lmp_h5 *f, const char *obj, const char *key, int64_t val)
{
    return attr_write(f, obj, key, H5T_NATIVE_INT64, &val);
}

int lmp_h5_attr_set_f64(lmp_h5 *f, const char *obj, const char *key, double val)
{
    return attr_write(f, obj, key, H5T_NATIVE_DOUBLE, &val);
}

static int attr_open(lmp_h5 *f, const char *obj, const char *key, hid_t *o, hid_t *a)
{
    *o = open_obj(f, obj);
    if (*o < 0)
        return lmp_err(LMP_ENOTFOUND, "%s: no object %s", f->path, obj ? obj : "/");
    if (H5Aexists(*o, key) <= 0) {
        close_obj(*o);
        return lmp_err(LMP_ENOTFOUND, "%s: attribute %s missing", f->path, key);
    }
    *a = H5Aopen(*o, key, H5P_DEFAULT);
    return LMP_OK;
}

int lmp_h5_attr_get_str(lmp_h5 *f, const char *obj, const char *key, char **val)
{
    hid_t o, a;
    int rc = attr_open(f, obj, key, &o, &a);
    *val = NULL;
    if (rc)
        return rc;
    hid_t t = H5Aget_type(a);
    if (H5Tget_class(t) != H5T_STRING) {
        rc = lmp_err(LMP_EFORMAT, "%s: attribute %s is not a string", f->path, key);
    } else if (H5Tis_variable_str(t) > 0) {
        char *s = NULL;
        hid_t mt = H5Tcopy(H5T_C_S1);
        H5Tset_size(mt, H5T_VARIABLE);
        H5Tset_cset(mt, H5Tget_cset(t)); /* h5py writes UTF-8; the conversion must not change it */
        if (H5Aread(a, mt, &s) >= 0 && s) {
            *val = strdup(s);
            H5free_memory(s);
        } else {
            rc = lmp_err(LMP_EFORMAT, "%s: attribute %s unreadable", f->path, key);
        }
        H5Tclose(mt);
    } else {
        size_t n = H5Tget_size(t);
        char *s = calloc(1, n + 1);
        if (H5Aread(a, t, s) < 0) {
            free(s);
            rc = lmp_err(LMP_EFORMAT, "%s: attribute %s unreadable", f->path, key);
        } else {
            *val = s;
        }
    }
    H5Tclose(t);
    H5Aclose(a);
    close_obj(o);
    return rc;
}

static int attr_get_num(lmp_h5 *f, const char *obj, const char *key, hid_t mt, void *val)
{
    hid_t o, a;
    int rc = attr_open(f, obj, key, &o, &a);
    if (rc)
        return rc;
    hid_t t = H5Aget_type(a);
    H5T_class_t cl = H5Tget_class(t);
    if ((cl != H5T_INTEGER && cl != H5T_FLOAT) || H5Aread(a, mt, val) < 0)
        rc = lmp_err(LMP_EFORMAT, "%s: attribute %s is not numeric", f->path, key);
    H5Tclose(t);
    H5Aclose(a);
    close_obj(o);
    return rc;
}

int lmp_h5_attr_get_i64(lmp_h5 *f, const char *obj, const char *key, int64_t *val)
{
    return attr_get_num(f, obj, key, H5T_NATIVE_INT64, val);
}

int lmp_h5_attr_get_f64(lmp_h5 *f, const char *obj, const char *key, double *val)
{
    return attr_get_num(f, obj, key, H5T_NATIVE_DOUBLE, val);
}

/* ---------------------------------------------------------------- extendable */

int lmp_h5_ext_create(lmp_h5 *f, const char *name, lmp_dtype dt, int ndim, const int64_t *row_shape,
                      int64_t chunk_rows, int level)
{
    int64_t shape[8], maxs[8];
    if (ndim < 1 || ndim > 8)
        return lmp_err(LMP_EINVAL, "%s: dataset %s: bad rank %d", f->path, name, ndim);
    shape[0] = 0;
    maxs[0] = -1;
    for (int i = 1; i < ndim; i++)
        shape[i] = maxs[i] = row_shape[i - 1];
    return write_ds(f, name, dt, ndim, shape, maxs, NULL, chunk_rows > 0 ? chunk_rows : 1, level);
}

int lmp_h5_ext_rows(lmp_h5 *f, const char *name, int64_t *n_rows)
{
    hid_t ds = lmp_h5_exists(f, name) ? H5Dopen2(f->file, name, H5P_DEFAULT) : -1;
    if (ds < 0)
        return lmp_err(LMP_ENOTFOUND, "%s: no dataset %s", f->path, name);
    hid_t sp = H5Dget_space(ds);
    hsize_t dims[8];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    *n_rows = (int64_t)dims[0];
    H5Sclose(sp);
    H5Dclose(ds);
    return LMP_OK;
}

static int ext_resize(lmp_h5 *f, const char *name, int64_t rows, hid_t *ds_out, hsize_t *dims,
                      int *nd_out)
{
    hid_t ds = lmp_h5_exists(f, name) ? H5Dopen2(f->file, name, H5P_DEFAULT) : -1;
    if (ds < 0)
        return lmp_err(LMP_ENOTFOUND, "%s: no dataset %s", f->path, name);
    hid_t sp = H5Dget_space(ds);
    int nd = H5Sget_simple_extent_ndims(sp);
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    hsize_t nd2[8];
    memcpy(nd2, dims, sizeof(hsize_t) * (size_t)nd);
    nd2[0] = (hsize_t)rows;
    if (H5Dset_extent(ds, nd2) < 0) {
        H5Dclose(ds);
        return lmp_err(LMP_EIO, "%s: cannot resize dataset %s", f->path, name);
    }
    *ds_out = ds;
    *nd_out = nd;
    return LMP_OK;
}

int lmp_h5_ext_append(lmp_h5 *f, const char *name, const void *rows, int64_t n_rows)
{
    hid_t ds;
    hsize_t dims[8];
    int nd, rc;
    int64_t have;
    if ((rc = lmp_h5_ext_rows(f, name, &have)))
        return rc;
    if ((rc = ext_resize(f, name, have + n_rows, &ds, dims, &nd)))
        return rc;
    hid_t ft = H5Dget_type(ds);
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_ASCEND);
    if (H5Tget_class(ft) == H5T_FLOAT && H5Tget_size(ft) == 2) {
        H5Tclose(mt);
        mt = half_type();
    }
    hid_t fs = H5Dget_space(ds);
    hsize_t start[8] = {0}, count[8];
    start[0] = (hsize_t)have;
    count[0] = (hsize_t)n_rows;
    for (int i = 1; i < nd; i++)
        count[i] = dims[i];
    H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
    hid_t ms = H5Screate_simple(nd, count, NULL);
    if (H5Dwrite(ds, mt, ms, fs, H5P_DEFAULT, rows) < 0)
        rc = lmp_err(LMP_EIO, "%s: cannot append to dataset %s", f->path, name);
    H5Sclose(ms);
    H5Sclose(fs);
    H5Tclose(mt);
    H5Tclose(ft);
    H5Dclose(ds);
    return rc;
}

int lmp_h5_ext_truncate(lmp_h5 *f, const char *name, int64_t n_rows)
{
    hid_t ds;
    hsize_t dims[8];
    int nd;
    int rc = ext_resize(f, name, n_rows, &ds, dims, &nd);
    if (rc == LMP_OK)
        H5Dclose(ds);
    return rc;
}
