/*
 * Bits per weight: one definition for every command (quantize's summary, inspect,
 * compare's report). Two figures, always shown together:
 *   whole file:  8 x (bytes of the weight files on disk: the .gguf, or a folder's
 *                *.safetensors; metadata and tokenizer included) / (logical parameters)
 *   linear:      8 x (bytes of the stored tensors of the decoder blocks' linear layers:
 *                codes, scales, zeros, g_idx, sparse encodings; biases and norms excluded)
 *                / (their logical parameters, rows x columns)
 * "Logical" counts a weight once whatever its storage: a packed int32 of eight 4-bit
 * codes is eight parameters. Packed checkpoints (GPTQ, AWQ, compressed-tensors) take
 * their logical counts from the config; dense and GGUF checkpoints count elements.
 */
#ifndef LMP_IO_BPW_H
#define LMP_IO_BPW_H

#include "checkpoint.h"

typedef struct {
    int64_t params;        /* logical parameters of the whole model */
    uint64_t bytes;        /* bytes of every tensor */
    uint64_t file_bytes;   /* bytes of the weight files (lmp_path_bpw; else = bytes) */
    int64_t linear_params; /* logical parameters of the linear layers */
    uint64_t linear_bytes; /* bytes of their stored tensors */
    double bpw, bpw_linear;
    bool packed;           /* packed integer codes found: logical counts from the config */
} lmp_bpw;

/* Fills *out from c's tensor table (no tensor data is read); file_bytes = bytes. */
void lmp_ckpt_bpw(const lmp_ckpt *c, lmp_bpw *out);
/* The same for a path (opened leniently, closed again), with the files' sizes on disk;
 * status as lmp_ckpt_open_ex. */
int lmp_path_bpw(const char *path, lmp_bpw *out);

#endif
