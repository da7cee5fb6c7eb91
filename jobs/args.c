/*
 * The arguments' shared rules (jobs/args.h).
 */
#include "jobs/args.h"
#include "formats/formats.h"
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

int lmp_job_need(const void *value, const char *what)
{
    return value ? LMP_OK : lmp_err(LMP_EINVAL, "need %s (see --help)", what);
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
