/*
 * formats/: the on-disk layouts lmpress writes, on top of lib/io's containers. This
 * header: checkpoint conversion (HF <-> GGUF, dtype changes), with the llama.cpp naming,
 * Q/K row permutation, metadata keys and tokenizer metadata that llama.cpp expects.
 */
#ifndef LMP_FORMATS_H
#define LMP_FORMATS_H

#include "lib/io/io.h"

typedef struct {
    int dtype;          /* LMP_DT_F32/F16/BF16 for matrices, or -1 to keep the input's */
    bool force;         /* replace existing output */
    uint64_t shard_bytes; /* safetensors output: shard above this (0 = one file) */
    bool quiet;         /* no per-tensor lines on stderr */
} lmp_convert_params;

typedef struct {
    int n_tensors;
    uint64_t bytes_in, bytes_out, params;
    uint64_t f16_overflow; /* finite values beyond f16's range that became Inf */
    double seconds;
    uint64_t peak_rss;
    bool to_gguf;
} lmp_convert_result;

void lmp_convert_default_params(lmp_convert_params *p);
/* Converts IN (HF folder, .safetensors/index, .gguf) to OUT: a path ending in .gguf gives
 * GGUF (llama.cpp layout and metadata, tokenizer from tokenizer.json or the input GGUF);
 * a folder or a .safetensors path gives safetensors with HF names (a folder also gets
 * config.json and the tokenizer files). Streams tensor by tensor; OUT appears only when
 * complete. */
int lmp_convert(const char *in, const char *out, const lmp_convert_params *p, lmp_convert_result *res);

/* llama.cpp general.file_type for a checkpoint whose matrices are mostly `dt`. */
int lmp_gguf_file_type(lmp_dtype dt);

#endif
