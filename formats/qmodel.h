/*
 * Whole quantized model folders in the integer-group formats that transformers, vLLM and
 * GPTQModel load: GPTQ (checkpoint_format "gptq" = v1, or "gptq_v2") and
 * compressed-tensors "pack-quantized". The writer streams: it declares every tensor up
 * front (packed shapes come from packing an empty tensor of each linear's shape, so they
 * follow formats/packing.h exactly), writes the tensors that are not quantized at once,
 * then each block's tensors as lib/quant's pipeline hands it over; at no point does it
 * hold more than one block's packed tensors. The folder is built under a temporary name
 * and renamed when complete. The reader opens such a folder and returns each linear as
 * the canonical intgroup lmp_qtensor, for the engine to run next.
 *
 * Not here: the per-Linear packings (fmt_gptq.c, fmt_awq.c, fmt_ct.c through the table in
 * fmt_table.c), the algorithms (lib/quant), the whole-model job `lmpress quantize
 * --method gptq|rtn|awq` runs (jobs/quantize_model.h).
 */
#ifndef LMP_QMODEL_H
#define LMP_QMODEL_H

#include "formats/packing.h"
#include "lib/infer/infer.h"
#include "lib/quant/pipeline.h"

/* ---------------------------------------------------------------- writer ---------- */

typedef struct {
    lmp_qformat format;      /* LMP_QFMT_GPTQ_V1 (sym only), LMP_QFMT_GPTQ_V2, LMP_QFMT_CT_PACKED,
                                LMP_QFMT_AWQ_GEMM (4-bit, no act-order; folded norms via
                                lmp_qmodel_writer_fold) */
    lmp_dtype scale_dtype;   /* compressed-tensors weight_scale: F16 (default), BF16 or F32 */
    bool force;              /* replace an existing folder */
    uint64_t shard_bytes;    /* 0 = one model.safetensors (default) */
    /* Precision of everything left unquantized (embeddings, norms, lm_head, biases, folded
     * vectors) and config.json's torch_dtype: with convert_dense, every f32/f16/bf16
     * tensor is written as dense_dtype (F16 or BF16); otherwise as the input has it. */
    bool convert_dense;
    lmp_dtype dense_dtype;
    /* Linears written dense ("<prefix>.weight", [n_layers * LMP_LIN_COUNT], 1 = dense; NULL
     * = none) and listed in quantization_config (modules_to_not_convert; compressed-tensors
     * ignore). */
    const uint8_t *keep;
} lmp_qmodel_write_params;

typedef struct {
    int n_tensors;           /* tensors written */
    int n_quantized;         /* linears packed */
    uint64_t bytes;          /* tensor data written */
    uint64_t qbytes;         /* of which packed linears */
    uint64_t qparams;        /* weights of the packed linears */
    uint64_t params;         /* every weight, packed linears counted by their weights */
} lmp_qmodel_write_stats;

void lmp_qmodel_write_default_params(lmp_qmodel_write_params *p);

typedef struct lmp_qmodel_writer lmp_qmodel_writer;

/* Starts the folder `dir` for model `m` (an HF folder or safetensors checkpoint; GGUF
 * input is LMP_EUNSUPPORTED: its q/k rows are permuted and its names are llama.cpp's).
 * `qc` is what quantization_config will say (bits, group_size, sym, desc_act, ...).
 * Every tensor is declared here; shapes a packing cannot hold (GPTQ's whole words, v1
 * with asymmetric zeros, ...) fail here, before any calibration work. An existing `dir`
 * is LMP_EEXIST unless force. The model must outlive the writer. */
int lmp_qmodel_writer_open(lmp_qmodel_writer **w, const lmp_model *m, const char *dir,
                           const lmp_intq_config *qc, const lmp_qmodel_write_params *p);
/* Writes block `layer` (blocks in order 0, 1, ...): its other tensors (norms, biases)
 * as they are in the input, and q[LMP_LIN_COUNT] packed. Has the lmp_qpipe_sink
 * signature (ctx = the writer; st unused). */
int lmp_qmodel_writer_layer(void *w, int layer, const lmp_qtensor *q, const lmp_qlinear_stats *st);
/* Mixture of experts: the experts of block `layer` (qe[3 * n_experts], expert e's gate, up,
 * down at 3e + 0, 1, 2), called before lmp_qmodel_writer_layer of the same block (the
 * lmp_qpipe_expert_sink signature); borrowed until that call, which writes them after the
 * block's attention linears as "<prefix>.<packed tensor>" with each family's expert names
 * (mixtral block_sparse_moe.experts.E.w1|w3|w2, qwen3_moe mlp.experts.E.gate_proj|up_proj|
 * down_proj). The routers are written as they are and listed with the linears not
 * converted (GPTQ modules_to_not_convert, compressed-tensors ignore). granitemoe (fused
 * 3-D expert parameters) is refused by lmp_qmodel_writer_open. */
int lmp_qmodel_writer_experts(void *w, int layer, int n_experts, const lmp_qtensor *qe);
/* AWQ's folded vectors of block `layer` (called before lmp_qmodel_writer_layer of the
 * same block; the lmp_qpipe_fold_sink signature): the norms and biases given are written
 * instead of the input's, in the input tensor's dtype (f32, f16 or bf16). */
int lmp_qmodel_writer_fold(void *w, int layer, const lmp_qfold *f);
/* Completes the safetensors, writes config.json (the input's, with
 * "quantization_config"), quantize_config.json (GPTQ), copies tokenizer.json,
 * tokenizer_config.json, generation_config.json, special_tokens_map.json, and renames the
 * folder into place. Frees w whatever the result; st may be NULL. */
int lmp_qmodel_writer_finish(lmp_qmodel_writer *w, lmp_qmodel_write_stats *st);
void lmp_qmodel_writer_abort(lmp_qmodel_writer *w); /* removes the temporary; accepts NULL */

/* ---------------------------------------------------------------- reader ---------- */

typedef struct lmp_qmodel lmp_qmodel;

/* Opens a GPTQ / compressed-tensors (pack-quantized) / AWQ folder: config.json with a
 * quantization_config lmp_qformat_config_parse accepts, and its safetensors. A folder
 * without quantization_config is LMP_EFORMAT. *out owned (lmp_qmodel_close). */
int lmp_qmodel_open(lmp_qmodel **out, const char *dir);
void lmp_qmodel_close(lmp_qmodel *q); /* accepts NULL */
lmp_qformat lmp_qmodel_format(const lmp_qmodel *q);
const lmp_intq_config *lmp_qmodel_qconfig(const lmp_qmodel *q); /* borrowed */
const lmp_config *lmp_qmodel_config(const lmp_qmodel *q);       /* borrowed */
const lmp_st_reader *lmp_qmodel_tensors(const lmp_qmodel *q);   /* borrowed; every tensor */
/* true when "<prefix>.<packed weight>" exists (qweight or weight_packed). */
bool lmp_qmodel_has_linear(const lmp_qmodel *q, const char *prefix);
/* Unpacks the Linear "<prefix>" (e.g. "model.layers.0.self_attn.q_proj") into a new
 * canonical intgroup tensor named prefix (*out owned, lmp_qtensor_free). Shapes and
 * value ranges are checked (formats/packing.h); missing tensors are LMP_ENOTFOUND. */
int lmp_qmodel_linear(const lmp_qmodel *q, const char *prefix, lmp_qtensor *out);
/* Rows [r0, r0 + rows) of an INTGROUP tensor as a new one (*out initialized here): the
 * q/k/v or gate/up part of a fused phi3 linear. Returns status. */
int lmp_qtensor_intgroup_rows(const lmp_qtensor *q, int64_t r0, int64_t rows, lmp_qtensor *out);
int lmp_qmodel_layer_linear(const lmp_qmodel *q, int layer, lmp_linear which, lmp_qtensor *out);

/* ---------------------------------------------------------------- engine loading --
 * (formats/qload.c) */

/* lmp_model_load for quantized folders too: the GPTQ / AWQ / compressed-tensors linears
 * are unpacked once into canonical intgroup tensors owned by the model and run natively
 * by the engine (lmp_model_set_linear_q); every other tensor is loaded as
 * lmp_model_load does. A folder without quantization_config loads exactly as with
 * lmp_model_load. Returns status; *out owned (lmp_model_free). */
int lmp_qmodel_load(lmp_model **out, const char *path);
/* The tools' single entry point: sparse-compressed folders (formats/sparse.h),
 * quantized folders (lmp_qmodel_load), anything else lmp_model_load opens. */
int lmp_model_load_any(lmp_model **out, const char *path);

#endif
