/*
 * GGUF split files in llama.cpp's layout (llama-gguf-split --split-max-size): the tensors
 * in order, a new file whenever the next tensor's bytes (padded to the alignment) would
 * take the current file's tensor bytes above the limit; every file carries split.no (u16,
 * from 0), split.count (u16) and split.tensors.count (i32, all files' tensors); the first
 * file also carries every other key. Files are named PREFIX-00001-of-0000N.gguf, PREFIX
 * being the path without its .gguf; llama.cpp loads the first and finds the others.
 */
#ifndef LMP_IO_GGUF_SPLIT_H
#define LMP_IO_GGUF_SPLIT_H

#include "gguf.h"

/* "<prefix>-%05d-of-%05d.gguf" for split i (0-based) of n, prefix = path less ".gguf". */
char *lmp_gguf_split_path(const char *path, int i, int n);

/* Splits the GGUF file `in` into files of at most max_bytes of tensor data each (a tensor
 * larger than max_bytes gets a file of its own), named after `out` as above. Refuses
 * existing outputs unless force. On failure no output is left. *n_files (may be NULL)
 * receives the number of files written. */
int lmp_gguf_split(const char *in, const char *out, uint64_t max_bytes, bool force, int *n_files);

#endif
