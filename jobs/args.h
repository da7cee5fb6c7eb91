/*
 * jobs/: rules every command's arguments follow, checked here so that the commands only
 * parse. The output kinds by name (issue 18 item 2), the same rule in every job and
 * command: a name ending in .gguf (any case) is a GGUF file; a name with another file
 * extension (.ggml, .bin, .safetensors, .pt, .pth, .h5, .json, .txt, .gz, .zip, .tar,
 * .ckpt, .onnx, .ggjt, .llamafile) is file-like and is refused where a folder would be
 * written.
 */
#ifndef LMP_JOBS_ARGS_H
#define LMP_JOBS_ARGS_H

#include <stdbool.h>

struct lmp_model;

bool lmp_job_is_gguf_name(const char *path);
bool lmp_job_filelike_name(const char *path);
/* --threads N: N >= 0 (0: LMP_THREADS or all cores) sets the thread count; a negative N is
 * LMP_EINVAL naming the option. */
int lmp_job_threads(long long n);
/* A required argument: LMP_EINVAL "need WHAT (see --help)" when value is NULL. */
int lmp_job_need(const void *value, const char *what);
/* Attaches n PEFT adapters unmerged to a loaded model (lmp_model_add_lora), each with its
 * scale (scales NULL: all 1). Returns status. */
int lmp_job_attach_loras(struct lmp_model *m, const char *const *paths, const double *scales, int n);

#endif
