/*
 * GGUF split writer (gguf_split.h), llama-gguf-split's layout.
 */
#include "gguf_split.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *lmp_gguf_split_path(const char *path, int i, int n)
{
    size_t k = strlen(path);
    if (lmp_str_endswith_ci(path, ".gguf"))
        k -= 5;
    size_t len = k + 32;
    char *s = malloc(len);
    if (s)
        snprintf(s, len, "%.*s-%05d-of-%05d.gguf", (int)k, path, i + 1, n);
    return s;
}

int lmp_gguf_split(const char *in, const char *out, uint64_t max_bytes, bool force, int *n_files)
{
    if (n_files)
        *n_files = 0;
    if (max_bytes == 0)
        return lmp_err(LMP_EINVAL, "--split-max-size must be positive");
    lmp_gguf_reader r;
    int rc = lmp_gguf_open(&r, in);
    if (rc)
        return rc;
    const uint64_t nt = r.n_tensors, al = r.alignment ? r.alignment : 32;
    int *file_of = malloc(sizeof(int) * (size_t)(nt ? nt : 1));
    char **paths = NULL;
    int nf = 0;
    if (!file_of) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    /* the plan: gguf-split's rule on padded tensor sizes */
    uint64_t cur = 0;
    for (uint64_t t = 0; t < nt; t++) {
        uint64_t b = (r.tensors[t].nbytes + al - 1) / al * al;
        if (t > 0 && cur + b > max_bytes) {
            nf++;
            cur = b;
        } else {
            cur += b;
        }
        file_of[t] = nf;
    }
    nf++;
    if (nf > 99999) {
        rc = lmp_err(LMP_EINVAL, "--split-max-size %llu gives %d files (at most 99999)", (unsigned long long)max_bytes, nf);
        goto done;
    }
    paths = calloc((size_t)nf, sizeof(char *));
    if (!paths) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    for (int f = 0; f < nf; f++) {
        if (!(paths[f] = lmp_gguf_split_path(out, f, nf))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        if (!force && lmp_path_exists(paths[f])) {
            rc = lmp_err(LMP_EEXIST, "%s exists (use --force to replace it)", paths[f]);
            goto done;
        }
    }
    uint64_t t0 = 0;
    int written = 0;
    for (int f = 0; f < nf && !rc; f++) {
        lmp_gguf_writer *w = NULL;
        if ((rc = lmp_gguf_writer_new(&w, paths[f], force)))
            break;
        if (f == 0)
            for (uint64_t k = 0; k < r.n_kv && !rc; k++)
                if (strncmp(r.kv[k].key, "split.", 6) != 0)
                    rc = lmp_gguf_set_kv(w, &r.kv[k]);
        uint16_t no = (uint16_t)f, cnt = (uint16_t)nf;
        if (!rc)
            rc = lmp_gguf_set_scalar(w, "split.no", LMP_GGUF_U16, &no);
        /* llama-gguf-split's key order: its split.count is set again last */
        if (!rc)
            rc = lmp_gguf_set_i32(w, "split.tensors.count", (int32_t)nt);
        if (!rc)
            rc = lmp_gguf_set_scalar(w, "split.count", LMP_GGUF_U16, &cnt);
        if (!rc && f > 0 && lmp_gguf_find_kv(&r, "general.alignment"))
            rc = lmp_gguf_set_kv(w, lmp_gguf_find_kv(&r, "general.alignment"));
        uint64_t t1 = t0;
        while (t1 < nt && file_of[t1] == f)
            t1++;
        for (uint64_t t = t0; t < t1 && !rc; t++) {
            const lmp_tensor *x = &r.tensors[t];
            rc = lmp_gguf_writer_add_tensor(w, x->name, x->dtype, x->ndim, x->shape);
        }
        if (!rc)
            rc = lmp_gguf_writer_begin(w);
        for (uint64_t t = t0; t < t1 && !rc; t++)
            rc = lmp_gguf_writer_write(w, r.tensors[t].data, r.tensors[t].nbytes);
        if (rc) {
            lmp_gguf_writer_abort(w);
            break;
        }
        if ((rc = lmp_gguf_writer_finish(w)))
            break;
        written++;
        t0 = t1;
    }
    if (rc)
        for (int f = 0; f < written; f++)
            remove(paths[f]);
    else if (n_files)
        *n_files = nf;
done:
    if (paths)
        for (int f = 0; f < nf; f++)
            free(paths[f]);
    free(paths);
    free(file_of);
    lmp_gguf_close(&r);
    return rc;
}
