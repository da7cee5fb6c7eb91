/*
 * lmpress core: status codes and error messages, logging, the dtype traits table,
 * lmp_tensor, exact f16/bf16 conversion, file mapping, atomic output files, threads and
 * the progress bar. Everything else in liblmpress builds on this header; it knows nothing
 * of file formats or models.
 */
#ifndef LMP_CORE_H
#define LMP_CORE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdbool.h>

#define LMP_VERSION "0.1.0"

/* ---------------------------------------------------------------- status ---------- */

/* Fallible functions return 0 on success or one of these negative codes; the human
 * detail (file, tensor, what was expected) is in lmp_errmsg(). */
enum {
    LMP_OK = 0,
    LMP_EINVAL = -1,       /* bad argument or option value */
    LMP_EIO = -2,          /* open/read/write/rename failed */
    LMP_ENOMEM = -3,       /* allocation failed */
    LMP_EFORMAT = -4,      /* malformed input file */
    LMP_EUNSUPPORTED = -5, /* well-formed but not supported (dtype, model_type, ...) */
    LMP_ENOTFOUND = -6,    /* missing tensor, key, shard, file */
    LMP_EEXIST = -7,       /* output exists and overwriting was not asked for */
    LMP_ERANGE = -8,       /* value out of range (NaN weights, overflow, ...) */
};

/* Sets the calling thread's error message (printf-style) and returns `code`, so
 * `return lmp_err(LMP_EFORMAT, "%s: ...", path);` is the idiom. */
int lmp_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The calling thread's last message (borrowed; valid until the next lmp_err). */
const char *lmp_errmsg(void);
/* Whether n bytes are valid UTF-8 without NUL (no overlongs, surrogates or code points
 * past U+10FFFF). Messages are always printable: lmp_err and lmp_log escape invalid
 * bytes and control characters as \xNN. */
bool lmp_utf8_valid(const char *s, size_t n);
/* Short name of a status code ("format error", ...). */
const char *lmp_strstatus(int code);
/* Prepends "prefix: " to the current message (keeps the code). Returns code. */
int lmp_err_prefix(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---------------------------------------------------------------- logging --------- */

enum { LMP_LOG_ERROR = 0, LMP_LOG_WARN = 1, LMP_LOG_INFO = 2, LMP_LOG_DEBUG = 3 };
extern int lmp_log_level; /* default LMP_LOG_INFO; messages above it are dropped */
/* Writes "lmpress: warning: ..." etc. to stderr. Thread safe (one fprintf per line). */
void lmp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define lmp_warn(...) lmp_log(LMP_LOG_WARN, __VA_ARGS__)
#define lmp_info(...) lmp_log(LMP_LOG_INFO, __VA_ARGS__)
#define lmp_debug(...) lmp_log(LMP_LOG_DEBUG, __VA_ARGS__)

/* ---------------------------------------------------------------- dtypes ---------- */

/* One row per element type, dense or block-quantized, in a static const table
 * (lib/core/dtype.c) whose converters are bound at compile time: nothing registers or
 * initializes anything at run time. Adding a block format to the table means an enum value
 * here and a row there naming its block size, bytes, GGUF id and its two row codecs (the
 * codecs declared in lib/core/blockcodec.h when their code lives in lib/quant); the
 * engine's reference kernels then read it through to_f32. docs/architecture.md ("Adding a
 * GGUF block type") lists the rest: block struct, kernels, tests. */
typedef enum {
    LMP_DT_F32 = 0,
    LMP_DT_F16,
    LMP_DT_BF16,
    LMP_DT_F64,
    LMP_DT_I8,
    LMP_DT_U8,
    LMP_DT_I16,
    LMP_DT_I32,
    LMP_DT_I64,
    LMP_DT_BOOL,
    /* GGUF block types (quantized along the innermost axis) */
    LMP_DT_Q4_0,
    LMP_DT_Q4_1,
    LMP_DT_Q5_0,
    LMP_DT_Q5_1,
    LMP_DT_Q8_0,
    LMP_DT_Q2_K,
    LMP_DT_Q3_K,
    LMP_DT_Q4_K,
    LMP_DT_Q5_K,
    LMP_DT_Q6_K,
    /* low-bit GGUF types (lib/quant/iquants.c, tquants.c) */
    LMP_DT_IQ4_NL,
    LMP_DT_IQ4_XS,
    LMP_DT_MXFP4,
    LMP_DT_TQ1_0,
    LMP_DT_TQ2_0,
    LMP_DT_Q1_0,
    LMP_DT_Q2_0,
    LMP_DT_IQ3_XXS,
    LMP_DT_IQ3_S,
    LMP_DT_IQ2_XXS,
    LMP_DT_IQ2_XS,
    LMP_DT_IQ2_S,
    LMP_DT_IQ1_S,
    LMP_DT_IQ1_M,
    LMP_DT_COUNT
} lmp_dtype;

typedef struct {
    const char *name;        /* lower case: "f32", "q4_0", ... */
    const char *st_name;     /* safetensors dtype string or NULL: "F32", "BF16", ... */
    int ggml_type;           /* GGUF ggml_type id, or -1 if GGUF cannot hold it */
    int block_size;          /* elements per block (1 for dense types) */
    size_t type_size;        /* bytes per block */
    bool is_float;           /* dense floating point */
    bool is_quant;           /* block-quantized */
    /* Row conversion to f32, n a multiple of block_size. NULL when not convertible. */
    void (*to_f32)(const void *src, float *dst, int64_t n);
    /* Row conversion from f32 (reference quantizer for block types). NULL if none. */
    void (*from_f32)(const float *src, void *dst, int64_t n);
} lmp_dtype_traits;

/* The row of t (never NULL for 0 <= t < LMP_DT_COUNT; NULL otherwise). Constant. */
const lmp_dtype_traits *lmp_dtype_info(lmp_dtype t);
/* Lookups; return -1 (as int) when unknown. */
int lmp_dtype_from_name(const char *name);        /* "f16", "Q4_0" (case-insensitive) */
int lmp_dtype_from_st_name(const char *st_name);  /* safetensors "F16", ... */
int lmp_dtype_from_ggml(int ggml_type);
/* Bytes for n elements (n must be a multiple of the block size; returns 0 otherwise). */
size_t lmp_dtype_row_bytes(lmp_dtype t, int64_t n);

/* Exact conversions, round to nearest even; NaN stays NaN (quiet), Inf stays Inf,
 * subnormals are handled exactly in both directions. */
float lmp_f16_to_f32(uint16_t h);
uint16_t lmp_f32_to_f16(float f);
float lmp_bf16_to_f32(uint16_t h);
uint16_t lmp_f32_to_bf16(float f);
/* Row versions (vectorized with F16C where the CPU has it). */
void lmp_f16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void lmp_f32_to_f16_row(const float *src, uint16_t *dst, int64_t n);
void lmp_bf16_to_f32_row(const uint16_t *src, float *dst, int64_t n);
void lmp_f32_to_bf16_row(const float *src, uint16_t *dst, int64_t n);
/* Converts n elements between any two types that have to_f32/from_f32 (dense or block),
 * through an f32 buffer of at most `chunk` elements; same-type is a memcpy. */
int lmp_convert_row(lmp_dtype from, const void *src, lmp_dtype to, void *dst, int64_t n);

/* ---------------------------------------------------------------- tensor ---------- */

#define LMP_MAX_DIMS 4
#define LMP_MAX_NAME 256

/* A named n-d array. shape[] is row-major, outermost first, as safetensors and PyTorch
 * write it (an HF Linear weight is {out_features, in_features}); GGUF's reversed dims are
 * converted at the GGUF boundary. `data` is either borrowed (from a file mapping that
 * outlives the tensor) or owned (freed by lmp_tensor_free). */
typedef struct {
    char name[LMP_MAX_NAME];
    lmp_dtype dtype;
    int ndim;
    int64_t shape[LMP_MAX_DIMS];
    void *data;
    size_t nbytes;
    bool owned;
} lmp_tensor;

int64_t lmp_tensor_nelem(const lmp_tensor *t);
/* Allocates owned, zeroed storage for name/dtype/shape. Returns status. */
int lmp_tensor_alloc(lmp_tensor *t, const char *name, lmp_dtype dt, int ndim,
                     const int64_t *shape);
/* Frees owned data (borrowed data is left alone); accepts NULL. */
void lmp_tensor_free(lmp_tensor *t);
/* Dequantizes/converts the whole tensor to a new owned f32 buffer (caller frees). */
int lmp_tensor_to_f32(const lmp_tensor *t, float **out);
/* Formats the shape as "[64, 172]" into buf. */
const char *lmp_shape_str(const lmp_tensor *t, char *buf, size_t len);

/* ---------------------------------------------------------------- files ----------- */

/* A read-only mapping of a whole file. */
typedef struct {
    char *path;
    const uint8_t *data;
    size_t size;
    int fd;
} lmp_mmap;

int lmp_mmap_open(lmp_mmap *m, const char *path);
void lmp_mmap_close(lmp_mmap *m); /* accepts NULL and zeroed structs */
/* Drops the pages of [p, p+n) (inside a read-only file mapping) from this process's
 * resident set; a later access reads them again. Streaming readers call it on what they
 * have consumed so that RSS stays bounded however large the file is. */
void lmp_mmap_release(const void *p, size_t n);
/* Large working buffers (Hessians, weight copies, calibration states): asks the kernel
 * to back [p, p+n) with transparent huge pages (MADV_HUGEPAGE; a no-op below 4 MiB or
 * where THP is off). Allocations that large are fresh mappings from malloc, and with
 * 4 KiB pages their first touch cost one page fault per 4 KiB (~8 us each on this
 * project's VM: a tenth of a GPTQ run's CPU time); the contents are the same either way.
 * lmp_malloc_big / lmp_calloc_big: malloc / calloc followed by the hint. */
void lmp_mem_hugepages(void *p, size_t n);
void *lmp_malloc_big(size_t n);
void *lmp_calloc_big(size_t n, size_t size);
/* Asks the kernel to start reading [p, p+n) of a file mapping now (readahead). */
void lmp_mmap_prefetch(const void *p, size_t n);

/* Output file written under "<path>.tmp.<pid>" and renamed onto `path` only by
 * lmp_outfile_commit; lmp_outfile_abort (or a commit failure) removes the temporary.
 * Writes are buffered. */
typedef struct {
    char *path;
    char *tmp_path;
    FILE *fp;
    uint64_t written;
    int failed;
    int lock_fd; /* lmp_output_lock on path, -1 when none */
} lmp_outfile;

/* force=false refuses an existing `path` with LMP_EEXIST. Every output goes through
 * lmp_output_begin (below): never onto, around or inside an input, one writer at a time,
 * temporaries removed on SIGINT/SIGTERM. */
int lmp_outfile_open(lmp_outfile *o, const char *path, bool force);
int lmp_outfile_write(lmp_outfile *o, const void *buf, size_t n);
int lmp_outfile_pad(lmp_outfile *o, size_t alignment); /* zero bytes up to a multiple */
int lmp_outfile_seek(lmp_outfile *o, uint64_t offset);  /* absolute; for back-patching */
int lmp_outfile_commit(lmp_outfile *o);
void lmp_outfile_abort(lmp_outfile *o); /* accepts NULL / already finished */
/* For writers that close and rename tmp_path themselves (sharded safetensors): releases
 * the lock and the temporary's registration and frees o. */
void lmp_outfile_renamed(lmp_outfile *o);

/* Reads a whole (small) file into a NUL-terminated malloc'd buffer. */
int lmp_read_file(const char *path, char **out, size_t *len);
bool lmp_path_exists(const char *path);
bool lmp_path_is_dir(const char *path);
/* Joins dir and name into a malloc'd string. */
char *lmp_path_join(const char *dir, const char *name);
bool lmp_str_endswith(const char *s, const char *suffix);
/* The same, ignoring ASCII case: file extensions ("X.GGUF" is a GGUF file). */
bool lmp_str_endswith_ci(const char *s, const char *suffix);
/* Edit distance ignoring ASCII case (a swap of neighbours is one edit), capped at 99. */
int lmp_edit_distance(const char *a, const char *b);
/* Of cands[0..n), the closest to s within a small distance (a prefix of a longer name
 * counts as close), or NULL: for "did you mean" in messages. */
const char *lmp_suggest(const char *s, const char *const *cands, int n);
/* Output folders: lmp_dir_begin creates "<dir>.tmp.<pid>" (refusing an existing dir
 * unless force) and returns its malloc'd path; fill it, then lmp_dir_commit renames it
 * onto dir (replacing an existing one); on failure lmp_dir_remove(tmp). */
int lmp_dir_begin(const char *dir, bool force, char **tmp);
int lmp_dir_commit(const char *tmp, const char *dir);
int lmp_dir_remove(const char *path); /* recursive; no error when absent */
int lmp_copy_file(const char *src, const char *dst); /* atomic, replaces dst */
/* Writes text followed by a newline to path, atomically, replacing an existing file. */
int lmp_write_text(const char *path, const char *text);

/* Output safety (safeout.c), used by the helpers above and lib/io's HDF5 files:
 * lmp_input_note records a file or folder being read (device + inode; lmp_mmap_open,
 * lmp_read_file and the checkpoint/HDF5 readers call it). lmp_output_check refuses an
 * output that is an input, a folder containing one, or a path inside an input folder.
 * lmp_output_begin = that check + the --force rules (a folder is replaced only when it
 * holds LMP_DIR_MARKER, which lmp_dir_commit writes, or is empty) + an advisory lock
 * (flock on "<dir>/.<name>.lmpress-lock"; a second writer gets LMP_EEXIST) + removal of
 * the stale temporaries ("<name>...tmp.<pid>") of dead processes, with a message.
 * Temporaries registered with lmp_temp_register are removed if SIGINT, SIGTERM or SIGHUP
 * kill the process (handlers installed on first use where the disposition is default). */
#define LMP_DIR_MARKER ".lmpress-output"
void lmp_input_note(const char *path);
void lmp_output_note_written(const char *path); /* what we wrote is never an input */
int lmp_output_check(const char *path);
int lmp_output_begin(const char *path, bool force, bool dir, int *lock_fd);
int lmp_output_lock(const char *path, int *fd);
void lmp_output_unlock(const char *path, int fd); /* accepts fd -1 */
bool lmp_dir_is_ours(const char *dir);
void lmp_temp_register(const char *path, bool dir);
void lmp_temp_unregister(const char *path);
void lmp_temp_clean_stale(const char *path);
/* Root-only writing under MPI (dist.h): ranks other than 0 compute what rank 0 computes
 * but their outputs must not reach the user's paths. lmp_output_begin skips the checks and
 * the lock there (rank 0 does them), and every temporary (lmp_outfile, lmp_dir_begin, HDF5)
 * is placed in a private scratch folder "${TMPDIR:-/tmp}/lmpress-rank<r>.<pid>" and
 * removed instead of renamed at commit. lmp_rank_temp_path returns a fresh malloc'd path
 * in that folder (NULL on rank 0 or when it cannot be created); lmp_rank_scratch_remove
 * deletes the folder (lmp_dist_end). */
char *lmp_rank_temp_path(const char *path);
void lmp_rank_scratch_remove(void);

/* ---------------------------------------------------------------- threads/progress */

int lmp_num_threads(void);       /* OpenMP max threads (LMP_THREADS / OMP_NUM_THREADS) */
void lmp_set_num_threads(int n); /* n <= 0 leaves the default */
double lmp_time_s(void);         /* monotonic seconds */
/* Peak resident set size of this process in bytes (from /proc/self/status VmHWM). */
uint64_t lmp_peak_rss(void);

/* Progress bar on stderr: throttled to ~6 redraws/s, silent unless stderr is a TTY (or
 * LMP_PROGRESS=1), cleared by lmp_progress_end. */
typedef struct {
    const char *label;
    uint64_t total;
    uint64_t done;
    double t_start, t_last;
    bool enabled;
    bool drawn;
    const char *unit; /* what done/total count ("block passes"), shown after them; may be NULL */
} lmp_progress;

void lmp_progress_begin(lmp_progress *p, const char *label, uint64_t total);
void lmp_progress_update(lmp_progress *p, uint64_t done);
void lmp_progress_end(lmp_progress *p);

/* SplitMix64/xoshiro-style deterministic PRNG used by synth, sampling and tests. */
typedef struct { uint64_t s[4]; } lmp_rng;
void lmp_rng_seed(lmp_rng *r, uint64_t seed);
uint64_t lmp_rng_next(lmp_rng *r);
double lmp_rng_uniform(lmp_rng *r); /* [0, 1) */
float lmp_rng_normal(lmp_rng *r);   /* standard normal (Box-Muller) */

/* FNV-1a 64-bit over bytes, chainable (start with LMP_FNV_INIT). */
#define LMP_FNV_INIT 0xcbf29ce484222325ULL
uint64_t lmp_fnv1a(uint64_t h, const void *data, size_t n);

#endif
