/*
 * Thin HDF5 helpers: chunked, deflate-compressed datasets with attributes, used for
 * golden outputs and distillation logits. Part of lib/io; include "io.h".
 */
#ifndef LMP_H5_H
#define LMP_H5_H

#include "../core/core.h"

typedef struct lmp_h5 lmp_h5;

/* Called before any other HDF5 call (every lmp_h5_* function does): silences HDF5's own
 * error printing and keeps its exit handler from touching files a failed write left
 * open. Code using the HDF5 C API directly calls it first. */
void lmp_h5_init(void);

/* create: written to a temporary name, renamed by lmp_h5_close(f, true). */
int lmp_h5_create(lmp_h5 **f, const char *path, bool force);
int lmp_h5_open(lmp_h5 **f, const char *path, bool writable);
/* commit=true renames a created file into place; false removes it. Accepts NULL. */
int lmp_h5_close(lmp_h5 *f, bool commit);

/* Writes a whole dataset (dtype f32, f16 stored as IEEE half, i32, i64, u8, f64), chunked
 * along the first axis by `chunk_rows` (0 = one chunk) with deflate `level` (0 = none);
 * every chunk carries a Fletcher32 checksum. */
int lmp_h5_write(lmp_h5 *f, const char *name, lmp_dtype dt, int ndim, const int64_t *shape,
                 const void *data, int64_t chunk_rows, int level);
/* Reads a whole dataset converted to `dt` (f32/f64/i32/i64/u8); shape out, data malloc'd. */
int lmp_h5_read(lmp_h5 *f, const char *name, lmp_dtype dt, int *ndim, int64_t *shape,
                void **data);
bool lmp_h5_exists(lmp_h5 *f, const char *name);
/* 1 when dataset `name` carries the Fletcher32 checksum filter (every dataset lmpress
 * writes does; HDF5 then verifies each chunk on read), 0 for an older file without it,
 * -1 when there is no such dataset. The _ds form takes an HDF5 file or group id. */
int lmp_h5_checksummed(lmp_h5 *f, const char *name);
int lmp_h5_ds_checksummed(int64_t loc, const char *name);
/* Attributes on the root group ("/") or a dataset name. */
int lmp_h5_attr_set_str(lmp_h5 *f, const char *obj, const char *key, const char *val);
int lmp_h5_attr_set_i64(lmp_h5 *f, const char *obj, const char *key, int64_t val);
int lmp_h5_attr_set_f64(lmp_h5 *f, const char *obj, const char *key, double val);
int lmp_h5_attr_get_str(lmp_h5 *f, const char *obj, const char *key, char **val);
int lmp_h5_attr_get_i64(lmp_h5 *f, const char *obj, const char *key, int64_t *val);
int lmp_h5_attr_get_f64(lmp_h5 *f, const char *obj, const char *key, double *val);

/* Extendable datasets for streaming (rows appended along axis 0). */
int lmp_h5_ext_create(lmp_h5 *f, const char *name, lmp_dtype dt, int ndim,
                      const int64_t *row_shape /* ndim-1 dims */, int64_t chunk_rows, int level);
int lmp_h5_ext_append(lmp_h5 *f, const char *name, const void *rows, int64_t n_rows);
int lmp_h5_ext_rows(lmp_h5 *f, const char *name, int64_t *n_rows);
int lmp_h5_ext_truncate(lmp_h5 *f, const char *name, int64_t n_rows);

#endif
