/*
 * `lmpress prune`'s preferences (jobs/prune_prefs.h).
 */
#include "jobs/prune_prefs.h"
#include "jobs/args.h"

#include <errno.h>
#include <stdlib.h>

void lmp_prune_prefs_default(lmp_prune_prefs *a)
{
    *a = (lmp_prune_prefs){.method = -1, .structured = -1, .sparsity = -1, .format = -1};
}

static int parse_pattern(const char *s, int *n, int *m)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || *end != ':')
        return -1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (errno || end == t || *end || a <= 0 || b <= 0 || a >= b || b > 64)
        return -1;
    *n = (int)a;
    *m = (int)b;
    return 0;
}

int lmp_prune_prefs_apply(const lmp_prune_prefs *a, lmp_prune_model_params *p)
{
    lmp_prune_spec *s = &p->prune.spec;
    int rc;
    if (!a->model || !a->out)
        return lmp_err(LMP_EINVAL, "need MODEL and -o OUT (see --help)");
    if ((a->method >= 0) + (a->structured >= 0) != 1)
        return lmp_err(LMP_EINVAL, "give exactly one of --method (unstructured / N:M) and --structured");
    if (a->method >= 0 && (a->sparsity != -1) == !!a->pattern)
        return lmp_err(LMP_EINVAL, "give exactly one of --sparsity S and --pattern N:M");
    if (a->pattern && parse_pattern(a->pattern, &s->n, &s->m))
        return lmp_err(LMP_EINVAL, "--pattern must be N:M with 0 < N < M <= 64 (e.g. 2:4)");
    if (a->structured >= 0 && p->ratio == 0)
        return lmp_err(LMP_EINVAL, "--structured needs --ratio R");
    if (a->qformat && (rc = lmp_qformat_by_name(a->qformat, &p->qformat)))
        return rc;
    if (a->method >= 0)
        s->method = (lmp_prune_method)a->method;
    if (a->sparsity != -1)
        s->sparsity = a->sparsity;
    p->structured = a->structured >= 0;
    p->kind = (lmp_struct_kind)(a->structured >= 0 ? a->structured : 0);
    static const lmp_prune_out outs[] = {LMP_PRUNE_OUT_SAFETENSORS, LMP_PRUNE_OUT_CT, LMP_PRUNE_OUT_GGUF,
                                         LMP_PRUNE_OUT_CT};
    if (a->format >= 0)
        p->out = outs[a->format];
    else if (lmp_job_is_gguf_name(a->out))
        p->out = LMP_PRUNE_OUT_GGUF; /* the extension decides, as in convert and quantize */
    if (p->out == LMP_PRUNE_OUT_GGUF && !lmp_job_is_gguf_name(a->out))
        return lmp_err(LMP_EINVAL, "--format gguf writes a GGUF file: the output must end in .gguf (not '%s')",
                       a->out);
    if (p->out != LMP_PRUNE_OUT_GGUF && lmp_job_filelike_name(a->out))
        return lmp_err(LMP_EINVAL, "--format %s writes a Hugging Face folder, and '%s' is a file name; give a "
                                   "folder name, or -o NAME.gguf for a GGUF file",
                       p->out == LMP_PRUNE_OUT_CT ? "compressed-tensors" : "safetensors", a->out);
    return lmp_prune_model_check(p);
}
