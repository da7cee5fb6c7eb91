/*
 * The arguments' shared rules (jobs/args.h).
 */
#include "jobs/args.h"
#include "lib/infer/infer.h"

#include <stddef.h>
#include <string.h>
#include <strings.h>

static const char *ext_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot : NULL;
}

bool lmp_job_is_gguf_name(const char *path)
{
    const char *e = ext_of(path);
    return e && strcasecmp(e, ".gguf") == 0;
}

bool lmp_job_filelike_name(const char *path)
{
    static const char *const exts[] = {".gguf", ".ggml", ".bin", ".safetensors", ".pt", ".pth", ".h5", ".json",
                                       ".txt", ".gz", ".zip", ".tar", ".ckpt", ".onnx", ".ggjt", ".llamafile"};
    const char *e = ext_of(path);
    if (!e)
        return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(e, exts[i]) == 0)
            return true;
    return false;
}

int lmp_job_threads(long long n)
{
    if (n < 0)
        return lmp_err(LMP_EINVAL, "--threads %lld: must be >= 0", n);
    lmp_set_num_threads((int)n);
    return LMP_OK;
}

int lmp_job_attach_loras(struct lmp_model *m, const char *const *paths, const double *scales, int n)
{
    if (n <= 0)
        return LMP_OK;
    lmp_lora **a = NULL;
    int rc = lmp_loras_open(paths, n, &a);
    for (int i = 0; rc == 0 && i < n; i++)
        rc = lmp_model_add_lora(m, a[i], scales ? scales[i] : 1.0);
    if (a)
        lmp_loras_close(a, n);
    return rc;
}

int lmp_job_convert_args(const char *in, const char *out, bool split_given, const char *dtype, long long shard_mb,
                         bool adapter)
{
    if (!in || !out)
        return lmp_err(LMP_EINVAL, "need IN and -o OUT (see --help)");
    if (!lmp_job_is_gguf_name(out) && !lmp_str_endswith_ci(out, ".safetensors") && lmp_job_filelike_name(out))
        return lmp_err(LMP_EINVAL, "'%s' looks like a file, but only a name ending in .gguf (GGUF) or .safetensors "
                                   "(one safetensors file) is written as a file; any other name is a Hugging Face "
                                   "folder. Use -o NAME.gguf for GGUF, or a folder name", out);
    if (split_given && !lmp_job_is_gguf_name(out))
        return lmp_err(LMP_EINVAL, "--split-max-size applies to GGUF output (-o NAME.gguf)");
    if (dtype) {
        lmp_dtype t = lmp_dtype_from_name(dtype);
        if (t != LMP_DT_F32 && t != LMP_DT_F16 && t != LMP_DT_BF16)
            return lmp_err(LMP_EINVAL, "--dtype must be f32, f16 or bf16 (for quantized types use lmpress quantize)");
    }
    if (shard_mb < 0)
        return lmp_err(LMP_EINVAL, "--shard-mb must be positive");
    if (adapter && !lmp_str_endswith(out, ".gguf"))
        return lmp_err(LMP_EINVAL, "an adapter converts to llama.cpp's adapter GGUF: OUT must end in .gguf");
    return LMP_OK;
}

int lmp_job_merge_args(const char *base, int n_loras, const char *out, const lmp_convert_params *p)
{
    if (!base || !out || n_loras < 1)
        return lmp_err(LMP_EINVAL, "need BASE, --lora ADAPTER and -o OUT (see --help)");
    return lmp_convert_check(p);
}

int lmp_job_synth_args(const char *extra, const char *out, const lmp_synth_params *p)
{
    if (extra)
        return lmp_err(LMP_EINVAL, "unexpected argument '%s'", extra);
    if (!out || (!p->preset && !p->config_path))
        return lmp_err(LMP_EINVAL, "need -o DIR and exactly one of --preset or --config (see --help)");
    return lmp_synth_check(p);
}

int lmp_job_tokenize_args(const char *model, bool json, bool count, const lmp_tokenize_params *p)
{
    if (!model)
        return lmp_err(LMP_EINVAL, "expected one MODEL argument (see lmpress tokenize --help)");
    if (json && count)
        return lmp_err(LMP_EINVAL, "--json and --count cannot be combined");
    return lmp_tokenize_check(p);
}

void lmp_job_progress(void *user, int done, int total)
{
    lmp_progress *p = user;
    p->total = (uint64_t)total;
    lmp_progress_update(p, (uint64_t)done);
}
