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

#include "formats/formats.h"
#include "lib/infer/tokenizer.h"
#include "lib/io/synth.h"

#include <stdbool.h>
#include <stdint.h>

struct lmp_model;

bool lmp_job_is_gguf_name(const char *path);
bool lmp_job_filelike_name(const char *path);
/* --threads N: N >= 0 (0: LMP_THREADS or all cores) sets the thread count; a negative N is
 * LMP_EINVAL naming the option. */
int lmp_job_threads(long long n);
/* A (done, total) progress callback of the library's loops whose user pointer is an
 * lmp_progress bar (ppl, eval, distill export). */
void lmp_job_progress(void *user, int done, int total);
/* Attaches n PEFT adapters unmerged to a loaded model (lmp_model_add_lora), each with its
 * scale (scales NULL: all 1). Returns status. */
int lmp_job_attach_loras(struct lmp_model *m, const char *const *paths, const double *scales, int n);

/* The arguments of the commands whose library call takes them as parameters (the call's
 * own check then refuses bad preferences); each is LMP_EINVAL naming what is wrong. */
/* convert IN -o OUT: both given; OUT not a file name other than *.gguf / *.safetensors;
 * --split-max-size (split_given) only for GGUF output; --dtype f32, f16 or bf16 (dtype is
 * the name given, or NULL); --shard-mb >= 0; an adapter (adapter: IN holds
 * adapter_config.json, or --base) only to *.gguf. */
int lmp_job_convert_args(const char *in, const char *out, bool split_given, const char *dtype, long long shard_mb,
                         bool adapter);
/* merge BASE --lora ADAPTER -o OUT: all given, then lmp_convert_check. */
int lmp_job_merge_args(const char *base, int n_loras, const char *out, const lmp_convert_params *p);
/* synth -o DIR (--preset NAME | --config FILE): no positional argument (extra: the first
 * one, or NULL), DIR and one source given, then lmp_synth_check. */
int lmp_job_synth_args(const char *extra, const char *out, const lmp_synth_params *p);
/* tokenize MODEL: given, --json and --count not together, then lmp_tokenize_check. */
int lmp_job_tokenize_args(const char *model, bool json, bool count, const lmp_tokenize_params *p);

#endif
