/*
 * formats/: the on-disk layouts lmpress writes, on top of lib/io's containers. This
 * header: checkpoint conversion (HF <-> GGUF, dtype changes), with the llama.cpp naming,
 * Q/K row permutation, metadata keys and tokenizer metadata that llama.cpp expects.
 */
#ifndef LMP_FORMATS_H
#define LMP_FORMATS_H

#include "lib/io/io.h"
#include "lib/quant/quant.h"

typedef struct {
    int dtype;          /* LMP_DT_F32/F16/BF16 for matrices, or -1 to keep the input's */
    bool force;         /* replace existing output */
    uint64_t shard_bytes; /* safetensors output: shard above this (0 = one file) */
    bool quiet;         /* no per-tensor lines on stderr */
    /* LoRA adapters merged while converting (lmpress merge): W' = W + scale_i * s_i * B_i A_i
     * in f32, written in the output dtype; quantized base tensors are dequantized and
     * re-quantized to their own type. NULL/0: none. */
    const lmp_lora *const *loras;
    const double *lora_scales; /* per adapter (NULL: 1) */
    int n_loras;
} lmp_convert_params;

typedef struct {
    int n_tensors;
    uint64_t bytes_in, bytes_out, params;
    uint64_t f16_overflow; /* finite values beyond f16's range that became Inf */
    double seconds;
    uint64_t peak_rss;
    bool to_gguf;
    int n_merged;       /* tensors changed by an adapter (LoRA update or saved module) */
    int n_requantized;  /* of which quantized tensors re-quantized to their own type */
} lmp_convert_result;

void lmp_convert_default_params(lmp_convert_params *p);
/* LMP_EINVAL naming the lmpress option unless dtype is -1, f32, f16 or bf16. lmp_merge
 * calls it. */
int lmp_convert_check(const lmp_convert_params *p);
/* Converts IN (HF folder, .safetensors/index, .gguf) to OUT: a path ending in .gguf gives
 * GGUF (llama.cpp layout and metadata, tokenizer from tokenizer.json or the input GGUF);
 * a folder or a .safetensors path gives safetensors with HF names (a folder also gets
 * config.json and the tokenizer files). Streams tensor by tensor; OUT appears only when
 * complete. */
int lmp_convert(const char *in, const char *out, const lmp_convert_params *p, lmp_convert_result *res);

/* IN (any checkpoint lmp_convert reads; meant for HF folders and safetensors) as the GGUF
 * that lmp_convert(IN, "x.gguf") with the default parameters would write: the same
 * tensors (llama.cpp names and order, dtypes, Q/K permutation, experts stacked or split,
 * gemma's 1 + w norms, rope factor tensors) and KVs (architecture keys, vocabulary), as a
 * source for lib/quant's lmp_gguf_quantize_src. Rows are converted chunk by chunk when
 * the quantizer asks for them (unchanged ones are handed out of the mapping), so
 * quantizing an HF folder needs no temporary GGUF and writes the bytes of convert then
 * quantize. Fills *s; lmp_convert_src_close frees it (also after a failed open). Returns
 * status. */
int lmp_convert_src_open(const char *in, lmp_gguf_src *s);
void lmp_convert_src_close(lmp_gguf_src *s); /* accepts a zeroed source */

/* ---------------------------------------------------------------- LoRA (merge.c) */

/* Opens n PEFT adapters (lmp_lora_open); on failure nothing stays open. */
int lmp_loras_open(const char *const *paths, int n, lmp_lora ***out);
void lmp_loras_close(lmp_lora **a, int n); /* accepts NULL */

/* lmpress merge: BASE with every adapter merged (W' = W + scales[i] * s_i * B_i A_i in
 * f32; scales NULL: 1) written to OUT as lmp_convert writes it (OUT's extension picks
 * GGUF or safetensors; p->dtype or the base's dtypes; quantized GGUF tensors re-quantized
 * to their own type). Every adapter is checked against BASE before anything is written.
 * An integer-group quantized base (GPTQ/AWQ/compressed-tensors) is refused with what to
 * do instead. */
int lmp_merge(const char *base, const char *const *adapters, const double *scales, int n,
              const char *out, const lmp_convert_params *p, lmp_convert_result *res);

/* `--lora` on quantize, prune and distill export: merges into a temporary checkpoint of
 * the base's kind (a .gguf for a GGUF base, else an HF folder) under $TMPDIR (streamed
 * like lmp_merge, never the whole model in memory). *merged: the path to read instead of
 * base; *tmpdir: what lmp_merge_temp_remove deletes (both malloc'd). */
int lmp_merge_temp(const char *base, const char *const *adapters, const double *scales, int n,
                   char **merged, char **tmpdir);
void lmp_merge_temp_remove(char *tmpdir); /* removes and frees; accepts NULL */

/* lmpress convert ADAPTER -o OUT.gguf --base BASE: a llama.cpp LoRA adapter GGUF
 * (general.type "adapter", adapter.type "lora", adapter.lora.alpha; "<tensor>.lora_a" /
 * ".lora_b" under llama.cpp names; B's rows in ggml's Q/K order for the llama
 * architecture; token_embd's lora_a transposed as llama.cpp reads it). Per-module
 * scales that differ from alpha / rank (rsLoRA, rank/alpha patterns) are folded into B. */
int lmp_lora_to_gguf(const char *adapter, const char *base, const char *out, bool force,
                     int dtype, lmp_convert_result *res);

/* llama.cpp general.file_type for a checkpoint whose matrices are mostly `dt`. */
int lmp_gguf_file_type(lmp_dtype dt);

#endif
