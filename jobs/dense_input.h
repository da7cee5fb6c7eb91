/*
 * Jobs that write f32 weights from an f32/f16/bf16 checkpoint (prune) refuse natively
 * quantized input up front, from the file's header and config alone: no weights are read.
 */
#ifndef LMP_JOBS_DENSE_INPUT_H
#define LMP_JOBS_DENSE_INPUT_H

/* LMP_EUNSUPPORTED naming the first natively quantized linear of `model` (a GGUF tensor of a
 * block type, or a GPTQ / AWQ / compressed-tensors folder's packed linear) and its storage,
 * with `advice` appended; LMP_OK for anything else, including a path that cannot be opened
 * (the job reports that itself). Reads the GGUF / safetensors headers and config.json only. */
int lmp_job_dense_input_check(const char *model, const char *advice);

#endif
