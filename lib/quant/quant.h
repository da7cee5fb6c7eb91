/*
 * lib/quant public header: quantization algorithms. They produce quantized weights in
 * memory; they never touch file layouts beyond the GGUF block structs of lib/core.
 */
#ifndef LMP_QUANT_H
#define LMP_QUANT_H

#include "../core/core.h"

/* ================================================================================
 * GGUF block quantizers (lib/quant/kquants.c)
 *
 * Q2_K..Q6_K (256-value super-blocks) and the importance-weighted variants of every
 * GGUF block type. Without weights the codes are those of ggml's reference quantizers
 * (quantize_row_q*_K_ref, the scale searches make_qx_quants / make_q3_quants /
 * make_qkx2_quants): the same input gives the same bytes as llama-quantize without an
 * imatrix. With weights (one non-negative number per column, llama.cpp's imatrix
 * "quant_weights") the searches minimize the weighted squared error instead.
 * Every type's dequantizer and reference quantizer is bound in the dtype table at compile
 * time (lmp_dtype_info(t)->to_f32 / from_f32; lib/core/blockcodec.h): nothing to
 * initialize or register.
 * ================================================================================ */

/* Quantizes `nrows` rows of `n_per_row` floats (src, row-major) into dst as type `t`
 * (any type with a from_f32: block types, f32, f16, bf16). `qw` is NULL (reference
 * quantizer) or n_per_row importance weights shared by all rows; types without a
 * weighted variant (Q8_0, dense types) ignore it. n_per_row must be a multiple of the
 * block size. Deterministic; thread safe (no shared state); runs on the calling thread.
 * @return bytes written (nrows * row bytes), or 0 when t cannot be quantized to or
 *         n_per_row does not fit its blocks. */
size_t lmp_quant_rows(lmp_dtype t, const float *src, void *dst, int64_t nrows, int64_t n_per_row,
                      const float *qw);

/* True when lmp_quant_rows uses `qw` for type t (Q2_K..Q6_K, Q4_0, Q4_1, Q5_0, Q5_1). */
bool lmp_quant_uses_weights(lmp_dtype t);

/* The k-quant searches (Q2_K, Q4_K, Q5_K, Q6_K) run eight sub-blocks at once with AVX2
 * when the CPU has it (bit-identical to the scalar reference: same operations per lane).
 * Turns that on or off (off: the scalar code; LMP_QUANT_SCALAR=1 in the environment does
 * the same at start-up) and returns the previous setting; for tests and benchmarks, not
 * to be called while another thread quantizes. */
bool lmp_quant_set_simd(bool on);

/* ================================================================================
 * GGUF quantization driver (lib/quant/gguf_quant.c): `lmpress quantize`.
 *
 * Round-to-nearest (optionally importance-weighted) quantization of a whole checkpoint
 * into GGUF with llama.cpp's per-tensor mixes (llama_tensor_get_type, llama
 * architecture): q4_k_m keeps attn_v/ffn_down of some layers in q6_K, the output (or the
 * tied token embedding) in q6_K, and so on. A tensor whose row does not fit its block
 * size falls back as llama.cpp does (q2_K/q3_K -> q4_0, q4_K -> q5_0, q5_K -> q5_1,
 * q6_K -> q8_0, then f16 when even 32 does not divide the row).
 * ================================================================================ */

/* A --type choice: llama.cpp's LLAMA_FTYPE_* value and the default tensor type. */
typedef struct {
    const char *name;   /* "q4_k_m" (lower case) */
    int ftype;          /* general.file_type, e.g. 15 for q4_k_m */
    lmp_dtype dtype;    /* default type of quantizable tensors, e.g. LMP_DT_Q4_K */
    const char *help;   /* short description */
} lmp_gguf_qtype;

/* Looks up a --type name (case-insensitive; q3_k, q4_k, q5_k are q3_k_m, q4_k_m,
 * q5_k_m as in llama-quantize). NULL when unknown. Borrowed, static. */
const lmp_gguf_qtype *lmp_gguf_qtype_find(const char *name);
/* The table, terminated by a row with name NULL (for --help). */
const lmp_gguf_qtype *lmp_gguf_qtype_list(void);

/* What the mix rules need to know about the model. */
typedef struct {
    int n_layers;       /* block_count */
    int n_head, n_head_kv;
    int n_attn_v;       /* number of attn_v tensors */
    bool tied;          /* no output.weight: token_embd is treated as the output */
    bool has_imatrix;   /* importance weights are used (changes q4_0/q5_0 ffn_down) */
    int n_expert;       /* <arch>.expert_count (0: dense); 8 raises attn_v/attn_k/attn_output */
} lmp_gguf_mix_info;

/* The type llama.cpp's mix gives GGUF tensor `name` (shape outermost first, `ndim`
 * dims, innermost = row length) for --type `qt`, before the block-size fallback.
 * Returns -1 when the tensor is not quantized at all (1-D tensors, norms): keep it. */
int lmp_gguf_mix_type(const lmp_gguf_qtype *qt, const lmp_gguf_mix_info *mi, const char *name, int ndim,
                      const int64_t *shape);
/* Block-size fallback: the type used for rows of `cols` values when `t` does not fit
 * (t itself when it fits). */
lmp_dtype lmp_gguf_fallback_type(lmp_dtype t, int64_t cols);

/* Per-column importance weights for a tensor (borrowed; NULL = none): a hook for
 * calibration-based importance (imatrix). */
typedef const float *(*lmp_quant_weights_fn)(void *ctx, const char *gguf_name, int64_t cols);

/* Called after each tensor is written (progress lines). */
typedef struct {
    int index, count;          /* 1-based position and tensor count */
    const char *name;          /* GGUF name */
    const lmp_tensor *src;     /* input tensor (shape, dtype) */
    lmp_dtype out_dtype;
    uint64_t bytes_in, bytes_out;
    double rel_rms;            /* sqrt(sum (w - q(w))^2 / sum w^2); -1 when not measured */
    const char *note;          /* fallback / override / keep note, or "" */
    bool progress_bar;         /* a progress bar is being drawn on stderr */
} lmp_gguf_quant_tensor_info;

typedef struct {
    const char *type;          /* --type name (lmp_gguf_qtype_find) */
    const char *const *tensor_type; /* "REGEX=TYPE" overrides, POSIX extended regex */
    int n_tensor_type;
    const char *const *keep;   /* REGEX: matching tensors are written as they are */
    int n_keep;
    bool allow_requantize;     /* accept an input that holds quantized tensors */
    bool force;                /* replace an existing output */
    bool measure_error;        /* fill rel_rms (costs a dequantization per tensor) */
    lmp_quant_weights_fn weights; /* optional importance weights */
    void *weights_ctx;
    /* imatrix provenance, written (as llama-quantize does) only with `weights`:
     * quantize.imatrix.file (string, when set), quantize.imatrix.dataset (string, when
     * set), quantize.imatrix.entries_count and .chunks_count (u32, when > 0). */
    const char *imatrix_file;
    const char *imatrix_dataset;
    int imatrix_entries, imatrix_chunks;
    void (*on_tensor)(void *ctx, const lmp_gguf_quant_tensor_info *info);
    void *on_tensor_ctx;
    /* optional, with `weights`: how many values the weights source holds for a tensor
     * (0: none). An entry whose length differs from the tensor's row length is refused
     * before anything is written (an imatrix of another model), as llama-quantize does
     * (token_embd exempt). */
    int64_t (*weights_len)(void *ctx, const char *gguf_name);
} lmp_gguf_quant_params;

typedef struct {
    int n_tensors, n_quantized, n_fallback;
    int ftype;
    uint64_t params;           /* elements of all tensors */
    uint64_t bytes_in, bytes_out; /* tensor data only */
    double bpw;                /* bytes_out * 8 / params */
    double seconds;
    uint64_t peak_rss;
    int type_count[LMP_DT_COUNT]; /* tensors written per dtype */
    double rel_rms_max;        /* largest per-tensor rel_rms (measure_error), else -1 */
    char rel_rms_max_name[LMP_MAX_NAME];
} lmp_gguf_quant_result;

void lmp_gguf_quant_default_params(lmp_gguf_quant_params *p);
/* Where lmp_gguf_quantize_src takes its tensors from: the GGUF tensors (llama.cpp names,
 * dtypes, shapes, order) and metadata of a GGUF file (lmp_gguf_quantize) or of any
 * checkpoint as formats' converter would write it (formats.h lmp_convert_src_open: an HF
 * folder streamed through the converter, no temporary GGUF). The source hands out rows
 * tensor by tensor, so memory stays at one chunk of rows plus the output. A source may be
 * read in several passes (the size-targeted planner measures every tensor, then the
 * writer streams them), each pass in order. */
typedef struct lmp_gguf_writer lmp_gguf_writer;
typedef struct {
    const char *path;          /* the input, named in messages */
    int n_tensors;
    const lmp_tensor *tensors; /* (n_tensors) GGUF name, dtype, ndim, shape, nbytes; data unused */
    /* the model, for the mixes: block_count, head counts, expert_count (0: dense) */
    int n_layers, n_head, n_head_kv, n_expert;
    bool qk_interleaved;       /* attn_q / attn_k rows in ggml's interleaved RoPE order (llama) */
    void *ctx;
    /* Adds every metadata KV the GGUF holds, in its order (the quantizer then replaces
     * general.file_type in place and adds the quantization keys). Returns status. */
    int (*write_meta)(void *ctx, lmp_gguf_writer *w);
    /* Rows [r0, r0 + nr) of tensor i in its dtype (tensors[i].dtype, row bytes
     * lmp_dtype_row_bytes): *out points into the source's own mapping, or is `buf` (room
     * for nr rows) filled. Rows are asked in order, each tensor once. Returns status
     * (the message names the input file). */
    int (*rows)(void *ctx, int i, int64_t r0, int64_t nr, void *buf, const void **out);
    /* Tensor i is written: its pages may be dropped (NULL: nothing to do). */
    void (*done)(void *ctx, int i);
} lmp_gguf_src;

/* Quantizes the GGUF `in` (f32/f16/bf16 tensors; quantized ones only with
 * allow_requantize) into the GGUF `out`: lmp_gguf_quantize_src on the file's tensors and
 * KVs. An HF checkpoint goes through formats' converter as a source instead (lib/quant
 * does not depend on formats/). */
int lmp_gguf_quantize(const char *in, const char *out, const lmp_gguf_quant_params *p,
                      lmp_gguf_quant_result *res);
/* The GGUF file `in` as a source (its tensors handed out of the mapping). A checkpoint
 * that is not GGUF is LMP_EINVAL (it goes through formats' lmp_convert_src_open).
 * lmp_gguf_file_src_close frees it (accepts a zeroed source). Returns status. */
int lmp_gguf_file_src_open(const char *in, lmp_gguf_src *s);
void lmp_gguf_file_src_close(lmp_gguf_src *s);
/* Quantizes the tensors of `src` into the GGUF `out`: every KV of the source, then
 * general.file_type and general.quantization_version (2) set, tensors keep their order
 * and names. Streams tensor by tensor with bounded memory (rows of one tensor in parallel
 * with OpenMP; the output does not depend on the thread count). Refuses: unknown types
 * or bad patterns (LMP_EINVAL), an existing `out` without force (LMP_EEXIST), quantized
 * input without allow_requantize (LMP_EUNSUPPORTED), NaN/Inf weights (LMP_ERANGE, naming
 * the input and the tensor). `out` appears only when complete. */
int lmp_gguf_quantize_src(const lmp_gguf_src *src, const char *out, const lmp_gguf_quant_params *p,
                          lmp_gguf_quant_result *res);

/* Integer group quantization (lmp_qtensor, RTN, GPTQ): lib/quant/intquant.h */
#include "intquant.h"
/* Calibration and the layer-by-layer pipeline: lib/quant/pipeline.h */
#include "pipeline.h"

#endif
