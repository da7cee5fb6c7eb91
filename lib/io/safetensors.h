/*
 * safetensors reader (mmap, validated like the reference parser, sharded checkpoints
 * through model.safetensors.index.json) and streaming writer (tensor by tensor, optional
 * sharding by size, atomic). Part of lib/io; include "io.h".
 */
#ifndef LMP_SAFETENSORS_H
#define LMP_SAFETENSORS_H

#include "../core/core.h"

#define LMP_ST_MAX_HEADER (100u * 1000u * 1000u) /* reference parser's cap */

/* A safetensors checkpoint: one file, or every shard named by an index. Tensor data is
 * borrowed from the mappings and valid until lmp_st_close. */
typedef struct {
    char *path;             /* what was opened (file, index or folder) */
    int n_files;
    lmp_mmap *files;        /* one mapping per shard (fd < 0: caller's bytes, not mapped) */
    int n_tensors;
    lmp_tensor *tensors;    /* in file order (shard by shard, by data offset) */
    int *tensor_file;       /* index into files[] per tensor */
    int *by_name;           /* private: tensor indices sorted by name (lmp_st_find) */
    int n_meta;
    char **meta_keys;       /* __metadata__ of the first file (owned) */
    char **meta_vals;
} lmp_st_reader;

/* Opens `path`: a .safetensors file, a model.safetensors.index.json, or a folder holding
 * either (index preferred when both exist). Every shard is validated: header length cap,
 * JSON object, known dtype, shape x dtype size == span, offsets in bounds, contiguous,
 * non-overlapping, no holes, no duplicate names; with an index, a missing shard or a
 * tensor listed in the index but absent from its shard is an error. Errors name the file
 * and the defect. */
int lmp_st_open(lmp_st_reader *r, const char *path);
/* Parses one in-memory safetensors image (for fuzzing and tests). `data` must outlive r;
 * `name` is used in messages. */
int lmp_st_open_mem(lmp_st_reader *r, const uint8_t *data, size_t size, const char *name);
void lmp_st_close(lmp_st_reader *r); /* accepts NULL and zeroed structs */
/* Borrowed pointer or NULL. */
const lmp_tensor *lmp_st_find(const lmp_st_reader *r, const char *name);
const char *lmp_st_meta(const lmp_st_reader *r, const char *key); /* NULL if absent */

/* Streaming writer. Protocol: new -> add (every tensor, in the order it will be written)
 * and meta -> begin -> write (bytes of each tensor in order, any number of calls per
 * tensor) -> finish. Nothing is visible under the final name until finish succeeds;
 * abort (or any failure) removes the temporaries. */
typedef struct lmp_st_writer lmp_st_writer;

/* `path` ending in ".safetensors": one file (shard_bytes must be 0). Otherwise `path` is a
 * folder (created if missing): model.safetensors when everything fits in shard_bytes (or
 * shard_bytes is 0), else model-0000i-of-0000N.safetensors plus
 * model.safetensors.index.json. force=false refuses to replace existing outputs. In a
 * folder, model.safetensors and the index shadow each other, so without force either one
 * already there is refused, and with force the one not written is removed after success.
 * Tensors are written in declared order (no reordering, no padding between tensors), so a
 * tensor's data is aligned to its element size only if the bytes before it keep it so. */
int lmp_st_writer_new(lmp_st_writer **w, const char *path, uint64_t shard_bytes, bool force);
int lmp_st_writer_add(lmp_st_writer *w, const char *name, lmp_dtype dt, int ndim,
                      const int64_t *shape);
int lmp_st_writer_meta(lmp_st_writer *w, const char *key, const char *val);
int lmp_st_writer_begin(lmp_st_writer *w);
int lmp_st_writer_write(lmp_st_writer *w, const void *data, size_t n);
int lmp_st_writer_finish(lmp_st_writer *w); /* frees w whatever the result */
void lmp_st_writer_abort(lmp_st_writer *w); /* frees w; accepts NULL */

#endif
