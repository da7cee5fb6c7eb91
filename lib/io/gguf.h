/*
 * GGUF v3 reader (mmap, every KV type and arrays, tensor infos, alignment; refuses bad
 * magic/version, counts or lengths beyond the file, out-of-bounds or overlapping tensor
 * data) and streaming writer. Part of lib/io; include "io.h".
 *
 * Shapes: GGUF stores dims innermost first; lmp_tensor.shape is outermost first, so the
 * reader and writer reverse them. An HF [out, in] weight is GGUF dims {in, out}.
 */
#ifndef LMP_GGUF_H
#define LMP_GGUF_H

#include "../core/core.h"

typedef enum {
    LMP_GGUF_U8 = 0,
    LMP_GGUF_I8 = 1,
    LMP_GGUF_U16 = 2,
    LMP_GGUF_I16 = 3,
    LMP_GGUF_U32 = 4,
    LMP_GGUF_I32 = 5,
    LMP_GGUF_F32 = 6,
    LMP_GGUF_BOOL = 7,
    LMP_GGUF_STRING = 8,
    LMP_GGUF_ARRAY = 9,
    LMP_GGUF_U64 = 10,
    LMP_GGUF_I64 = 11,
    LMP_GGUF_F64 = 12,
    LMP_GGUF_NTYPES
} lmp_gguf_type;

#define LMP_GGUF_DEFAULT_ALIGNMENT 32

/* One key/value. Scalars in `v`; strings NUL-terminated and owned (`v.str`, length in
 * `str_len`, may contain NUL bytes); arrays: `arr_type`, `n`, and `arr` = owned copy of
 * n elements of the element type (for string arrays, a char*[n] of owned NUL-terminated
 * strings with lengths in `arr_lens`). Nested arrays are refused by the reader. */
typedef struct {
    char *key;
    lmp_gguf_type type;
    lmp_gguf_type arr_type;
    uint64_t n;
    union {
        uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32;
        float f32; bool b; uint64_t u64; int64_t i64; double f64; char *str;
    } v;
    uint64_t str_len;
    void *arr;
    uint64_t *arr_lens;
} lmp_gguf_kv;

typedef struct {
    lmp_mmap map;            /* zeroed when opened from memory */
    const uint8_t *data;     /* the file image */
    size_t size;
    char *path;
    uint32_t version;
    uint32_t alignment;      /* general.alignment or 32 */
    uint64_t n_kv;
    lmp_gguf_kv *kv;
    uint64_t n_tensors;
    lmp_tensor *tensors;     /* shape outermost first; data borrowed from the image */
    uint64_t *tensor_offsets;/* relative to data_offset, as stored */
    size_t data_offset;      /* start of the tensor data section */
} lmp_gguf_reader;

/* Opens a GGUF v2/v3 file (mapped) or a caller's image (borrowed: it must outlive r; `name`
 * is used in messages, NULL gives "<memory>"). Validates the whole layout before returning;
 * on failure returns LMP_EFORMAT (malformed), LMP_EUNSUPPORTED (version, ggml type) or
 * LMP_EIO/LMP_ENOMEM with a message naming the file and the defect, and leaves r cleared
 * (nothing to free; closing it again is harmless).
 * KV keys and tensor names never contain NUL bytes; a file without tensors may end right
 * after its metadata (data_offset may then lie past the end). Not thread safe per reader;
 * distinct readers are independent. */
int lmp_gguf_open(lmp_gguf_reader *r, const char *path);
int lmp_gguf_open_mem(lmp_gguf_reader *r, const uint8_t *data, size_t size, const char *name);
void lmp_gguf_close(lmp_gguf_reader *r); /* accepts NULL and zeroed structs */

const lmp_gguf_kv *lmp_gguf_find_kv(const lmp_gguf_reader *r, const char *key);
const lmp_tensor *lmp_gguf_find_tensor(const lmp_gguf_reader *r, const char *name);
/* Typed getters: LMP_ENOTFOUND when absent, LMP_EFORMAT when the type does not fit
 * (any integer type converts to an integer if the value fits; f32/f64 to double). */
int lmp_gguf_get_int(const lmp_gguf_reader *r, const char *key, int64_t *out);
int lmp_gguf_get_float(const lmp_gguf_reader *r, const char *key, double *out);
int lmp_gguf_get_str(const lmp_gguf_reader *r, const char *key, const char **out);
const char *lmp_gguf_type_name(lmp_gguf_type t);
size_t lmp_gguf_type_size(lmp_gguf_type t); /* 0 for STRING/ARRAY */

/* Streaming writer. Protocol: new -> set_* (any order; a key set twice is replaced) and
 * add_tensor (in the order the data will be written) -> begin (writes header, KVs, tensor
 * infos) -> write (bytes of each tensor in order, padded to the alignment automatically)
 * -> finish (renames into place). general.alignment, if set, must be a power of two.
 * Details: set_scalar takes numeric/bool types only (val points to the C type: uint8_t,
 * ..., bool, double); set_* and add_tensor after begin are refused; finish without begin
 * begins first (fine for metadata-only files) and refuses, removing the temporary, when
 * a tensor is short of bytes. With no tensors the file ends right after the KVs, with no
 * padding (as llama.cpp's vocab files do); with tensors every tensor and the file end are
 * padded to the alignment. The writer holds copies of all values; it is not thread safe. */
typedef struct lmp_gguf_writer lmp_gguf_writer;

int lmp_gguf_writer_new(lmp_gguf_writer **w, const char *path, bool force);
int lmp_gguf_set_scalar(lmp_gguf_writer *w, const char *key, lmp_gguf_type t, const void *val);
int lmp_gguf_set_u32(lmp_gguf_writer *w, const char *key, uint32_t v);
int lmp_gguf_set_i32(lmp_gguf_writer *w, const char *key, int32_t v);
int lmp_gguf_set_u64(lmp_gguf_writer *w, const char *key, uint64_t v);
int lmp_gguf_set_f32(lmp_gguf_writer *w, const char *key, float v);
int lmp_gguf_set_bool(lmp_gguf_writer *w, const char *key, bool v);
int lmp_gguf_set_str(lmp_gguf_writer *w, const char *key, const char *v);
/* Numeric array: n elements of elem_type (not STRING/ARRAY), copied. */
int lmp_gguf_set_arr(lmp_gguf_writer *w, const char *key, lmp_gguf_type elem_type,
                     const void *data, uint64_t n);
/* String array, copied; lens NULL means strlen of each. */
int lmp_gguf_set_arr_str(lmp_gguf_writer *w, const char *key, const char *const *strs,
                         const uint64_t *lens, uint64_t n);
/* Copies one KV read by lmp_gguf_reader. */
int lmp_gguf_set_kv(lmp_gguf_writer *w, const lmp_gguf_kv *kv);
int lmp_gguf_writer_add_tensor(lmp_gguf_writer *w, const char *name, lmp_dtype dt, int ndim,
                               const int64_t *shape);
int lmp_gguf_writer_begin(lmp_gguf_writer *w);
int lmp_gguf_writer_write(lmp_gguf_writer *w, const void *data, size_t n);
int lmp_gguf_writer_finish(lmp_gguf_writer *w); /* frees w whatever the result */
void lmp_gguf_writer_abort(lmp_gguf_writer *w); /* frees w; accepts NULL */

#endif
