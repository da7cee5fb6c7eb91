/*
 * libFuzzer target for the GGUF reader (lib/io/gguf.c): parses the input as a file image
 * and, when it is accepted, reads every KV value (each string byte, each array element)
 * and every byte of every tensor, so the sanitizers see any pointer or length the reader
 * got wrong. tests/fuzz/replay.c gives it a main() for the seed corpus in `make test`.
 */
#include "lib/io/io.h"

#include <stdint.h>
#include <string.h>

static volatile uint64_t g_sink;

static uint64_t touch(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0;
    for (size_t i = 0; i < n; i++)
        h = h * 31 + b[i];
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_gguf_reader r;
    if (lmp_gguf_open_mem(&r, data, size, "fuzz.gguf") != 0)
        return 0;
    uint64_t h = r.alignment + r.data_offset;
    for (uint64_t i = 0; i < r.n_kv; i++) {
        const lmp_gguf_kv *kv = &r.kv[i];
        h += touch(kv->key, strlen(kv->key) + 1);
        if (kv->type == LMP_GGUF_STRING) {
            h += touch(kv->v.str, kv->str_len + 1);
        } else if (kv->type == LMP_GGUF_ARRAY) {
            if (kv->arr_type == LMP_GGUF_STRING) {
                char **s = kv->arr;
                for (uint64_t j = 0; j < kv->n; j++)
                    h += touch(s[j], kv->arr_lens[j] + 1);
            } else {
                h += touch(kv->arr, (size_t)kv->n * lmp_gguf_type_size(kv->arr_type));
            }
        } else {
            h += touch(&kv->v, lmp_gguf_type_size(kv->type));
        }
        int64_t iv;
        double dv;
        const char *sv;
        if (lmp_gguf_get_int(&r, kv->key, &iv) == 0)
            h += (uint64_t)iv;
        if (lmp_gguf_get_float(&r, kv->key, &dv) == 0)
            h += dv == dv;
        if (lmp_gguf_get_str(&r, kv->key, &sv) == 0)
            h += (uint8_t)sv[0];
    }
    for (uint64_t i = 0; i < r.n_tensors; i++) {
        const lmp_tensor *t = &r.tensors[i];
        h += touch(t->name, strlen(t->name)) + (uint64_t)lmp_tensor_nelem(t);
        h += touch(t->data, t->nbytes);
        h += lmp_gguf_find_tensor(&r, t->name) == t;
    }
    g_sink = h;
    lmp_gguf_close(&r);
    return 0;
}
