/*
 * Pruned model folders: the writers for lib/prune's results and the reader that gives the
 * engine something it runs.
 *
 * Unstructured / N:M results are written as a Hugging Face folder in one of
 *   - dense safetensors (the zeros kept; the input's dtype),
 *   - compressed-tensors "sparse-bitmask" (neuralmagic/compressed-tensors
 *     compressors/sparse_compressors/sparse_bitmask.py): per Linear X, X.shape I64 [2],
 *     X.compressed [nnz] (the kept values in row-major order, the input's dtype),
 *     X.bitmask U8 [rows, ceil(cols/8)] (bit j%8 of byte j/8 of a row, little bit order,
 *     1 = kept), X.row_offsets I64 [rows] (index in X.compressed where each row starts),
 *   - compressed-tensors "sparse-24-bitmask" (sparse_24_bitmask.py): X.shape I64 [2, 1],
 *     X.compressed [rows, cols/2], X.bitmask U8 [rows, ceil(cols/8)],
 * with config.json "quantization_config": {"quant_method": "compressed-tensors",
 * "sparsity_config": {"format", "sparsity_structure" ("unstructured" | "N:M"),
 * "global_sparsity" (fraction of all model parameters that are zero), "targets":
 * ["Linear"], "ignore": ["lm_head"]}}. The bitmask is the pruning mask itself (a kept
 * weight that happens to be 0 is stored), so every count is known before the first
 * forward pass and the writer streams block by block, like formats/qmodel.c.
 * GGUF output is the dense folder converted with lmp_convert.
 *
 * The engine and compressed folders: lmp_sparse_model_load decompresses each Linear to
 * its stored dtype into a temporary dense safetensors folder, loads that with
 * lmp_model_load and removes the folder at once (the mapping keeps the data alive until
 * lmp_model_free). No f32 copy of the model is made; disk use is the dense model's size.
 *
 * Structured results are a physically smaller dense model (lmp_struct_write).
 * The whole-model job `lmpress prune` runs is jobs/prune_model.h.
 */
#ifndef LMP_FORMATS_SPARSE_H
#define LMP_FORMATS_SPARSE_H

#include "formats/folder.h"
#include "lib/prune/prune.h"

#include <cjson/cJSON.h>

typedef enum {
    LMP_SPFMT_DENSE = 0,  /* safetensors, zeros kept */
    LMP_SPFMT_BITMASK,    /* compressed-tensors sparse-bitmask */
    LMP_SPFMT_24,         /* compressed-tensors sparse-24-bitmask (2:4 only) */
    LMP_SPFMT_COUNT
} lmp_sparse_format;

/* The sparse formats, one static const row each (sparse.c's g_spformats): the writer,
 * the reader's format match and its checks read the row, not the enum. */
typedef struct {
    const char *name;  /* sparsity_config "format"; "dense" writes none */
    bool compressed;   /* per Linear X: X.shape, X.compressed (kept values), X.bitmask */
    bool row_offsets;  /* also X.row_offsets I64 [rows]; X.shape I64 [2], X.compressed [nnz] */
    bool two_of_four;  /* the 2:4 pattern only; X.shape I64 [2, 1], X.compressed [rows, cols/2] */
} lmp_sparse_format_row;

const lmp_sparse_format_row *lmp_sparse_format_get(lmp_sparse_format f); /* NULL: none */
const char *lmp_sparse_format_name(lmp_sparse_format f); /* "dense", "sparse-bitmask", "sparse-24-bitmask" */

typedef struct {
    int n_tensors;
    uint64_t bytes;         /* tensor data written */
    uint64_t params;        /* parameters of the model */
    uint64_t linear_params; /* of which in pruned linears */
    uint64_t zeros;         /* pruned weights */
} lmp_sparse_write_stats;

typedef struct lmp_sparse_writer lmp_sparse_writer;

/* Starts folder `dir` for model m (HF folder or safetensors; dense linears). spec gives the
 * pattern and the number of zeros of every linear (declared up front). sparse-24-bitmask
 * needs spec 2:4. Existing dir: LMP_EEXIST unless force. */
int lmp_sparse_writer_open(lmp_sparse_writer **w, const lmp_model *m, const char *dir, lmp_sparse_format f,
                           const lmp_prune_spec *spec, bool force);
/* lmp_prune_sink: writes block `layer` (in order). Each mask must have exactly the declared
 * number of zeros (LMP_EINVAL otherwise). */
int lmp_sparse_writer_layer(void *w, int layer, const float *const *W, const uint8_t *const *mask,
                            const lmp_qtensor *q, const lmp_prune_linear_stats *st);
/* Completes the folder (config.json, tokenizer files) and renames it into place. Frees w. */
int lmp_sparse_writer_finish(lmp_sparse_writer *w, lmp_sparse_write_stats *st);
void lmp_sparse_writer_abort(lmp_sparse_writer *w); /* accepts NULL */

/* One Linear for writers with their own walk over a checkpoint (jobs/prune_model.c's
 * expert models) and for fused tensors: `parts` stacked by rows make the stored matrix
 * (phi3's qkv_proj is q, k, v; gate_up_proj gate, up), each with its f32 weights and mask
 * (1 = kept) of rows x cols. Declare first (kept: the number of mask entries that are 1),
 * then write in the declared order; sparse-24-bitmask checks that every group of 4 of
 * every row keeps 2. bytes (may be NULL) is incremented by the bytes written. */
typedef struct {
    const float *W;
    const uint8_t *mask;
    int64_t rows;
} lmp_sparse_part;
int lmp_sparse_linear_declare(lmp_st_writer *sw, lmp_sparse_format f, const char *prefix, lmp_dtype dt,
                              int64_t rows, int64_t cols, int64_t kept);
int lmp_sparse_linear_write(lmp_st_writer *sw, lmp_sparse_format f, const char *prefix, lmp_dtype dt,
                            const lmp_sparse_part *parts, int n_parts, int64_t cols, uint64_t *bytes);
/* The mask of pruned weights W (rows x cols) whose pattern is s: 1 where W != 0; where a
 * kept weight is exactly 0 (more zeros in a row, group or matrix than s prunes) the first
 * such zeros are marked kept, so every count is s's. LMP_EINVAL (naming `name`) when a unit
 * has fewer zeros than s prunes. */
int lmp_sparse_mask_of(const float *W, int64_t rows, int64_t cols, const lmp_prune_spec *s, uint8_t *mask,
                       const char *name);

/* true when `path` is a folder whose config.json has a compressed-tensors sparsity_config
 * with format sparse-bitmask or sparse-24-bitmask. */
bool lmp_sparse_is_compressed(const char *path);
/* Decompresses such a folder into a dense one at `out` (every tensor in its stored dtype,
 * config.json without the sparsity config, tokenizer files copied). Every shape, bitmask
 * count and row offset is checked; errors name the tensor. */
int lmp_sparse_decompress(const char *in, const char *out, bool force);
/* lmp_model_load for any folder, compressed sparse ones included (see above). */
int lmp_sparse_model_load(lmp_model **m, const char *path);

/* Writes the smaller dense model of a structured plan (the input's dtype; dense dtypes
 * only), config.json with the new sizes (num_hidden_layers, num_attention_heads,
 * num_key_value_heads, head_dim, intermediate_size), tokenizer files. */
int lmp_struct_write(const lmp_model *m, const lmp_struct_plan *p, const char *dir, bool force,
                     lmp_sparse_write_stats *st);

/* ---------------------------------------------------------------- sparsity_config -- */

/* compressed-tensors "sparsity_config" object (owned) for `format` ("sparse-bitmask",
 * "sparse-24-bitmask", or "dense" beside a pack-quantized config), the pattern of s and
 * the fraction of all parameters that are zero. */
cJSON *lmp_sparse_config_json(const char *format, const lmp_prune_spec *s, double global);

#endif
