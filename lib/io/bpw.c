/*
 * Bits per weight, one definition (bpw.h): whole file and linear layers.
 */
#include "bpw.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* A tensor of a decoder block's linear layer: inside "layers.N." (HF) or "blk.N." (GGUF),
 * not a norm, not a bias. */
static bool linear_tensor(const char *n)
{
    if (!strstr(n, "layers.") && strncmp(n, "blk.", 4) != 0)
        return false;
    if (strstr(n, "norm") || strstr(n, "rotary") || lmp_str_endswith(n, ".bias"))
        return false;
    return true;
}

static bool packed_tensor(const char *n)
{
    return lmp_str_endswith(n, ".qweight") || lmp_str_endswith(n, ".weight_packed") || strstr(n, ".bitmask") ||
           strstr(n, ".compressed");
}

void lmp_ckpt_bpw(const lmp_ckpt *c, lmp_bpw *o)
{
    memset(o, 0, sizeof *o);
    int64_t elems = 0, lin_elems = 0;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        int64_t ne = lmp_tensor_nelem(t);
        elems += ne;
        o->bytes += t->nbytes;
        if (packed_tensor(t->name))
            o->packed = true;
        if (linear_tensor(t->name)) {
            o->linear_bytes += t->nbytes;
            /* dense: the weight matrices' elements (GGUF block types count logical ones) */
            if (t->ndim >= 2)
                lin_elems += ne;
        }
    }
    o->params = elems;
    o->linear_params = lin_elems;
    if (o->packed && c->has_config) {
        const lmp_config *f = &c->config;
        int64_t d = f->hidden_size, ff = f->intermediate_size, hd = f->head_dim;
        int64_t q = (int64_t)f->n_heads * hd, kv = (int64_t)f->n_kv_heads * hd;
        o->linear_params = (d * q + 2 * d * kv + q * d + 3 * d * ff) * f->n_layers;
        o->params = lmp_config_n_params(f);
    }
    o->file_bytes = o->bytes;
    o->bpw = o->params ? 8.0 * (double)o->file_bytes / (double)o->params : 0;
    o->bpw_linear = o->linear_params ? 8.0 * (double)o->linear_bytes / (double)o->linear_params : 0;
}

int lmp_path_bpw(const char *path, lmp_bpw *out)
{
    lmp_ckpt c;
    memset(out, 0, sizeof *out);
    if (!lmp_path_exists(path))
        return lmp_err(LMP_ENOTFOUND, "%s: no such file or folder", path);
    int rc = lmp_ckpt_open_ex(&c, path, false);
    if (rc)
        return rc;
    lmp_ckpt_bpw(&c, out);
    lmp_ckpt_close(&c);
    struct stat sb;
    uint64_t fb = 0;
    if (lmp_path_is_dir(path)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (lmp_str_endswith_ci(de->d_name, ".safetensors")) {
                char *p = lmp_path_join(path, de->d_name);
                if (p && stat(p, &sb) == 0)
                    fb += (uint64_t)sb.st_size;
                free(p);
            }
        if (d)
            closedir(d);
    } else if (stat(path, &sb) == 0) {
        fb = (uint64_t)sb.st_size;
    }
    if (fb) {
        out->file_bytes = fb;
        out->bpw = out->params ? 8.0 * (double)fb / (double)out->params : 0;
    }
    return LMP_OK;
}
