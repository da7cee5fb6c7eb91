/*
 * Fuzz target for the safetensors header parser: lmp_st_open_mem on arbitrary bytes and,
 * when it accepts them, a read of every byte of every tensor (so a span the validator let
 * through that reaches past the input shows up under ASan). Seeds: corpus/safetensors.
 */
#include "lib/io/safetensors.h"

#include <stdint.h>
#include <stddef.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_st_reader r;
    if (lmp_st_open_mem(&r, data, size, "fuzz.safetensors") == LMP_OK) {
        volatile uint64_t sum = 0;
        for (int i = 0; i < r.n_tensors; i++) {
            const lmp_tensor *t = &r.tensors[i];
            const uint8_t *p = t->data;
            for (size_t k = 0; k < t->nbytes; k++)
                sum += p[k];
            if (lmp_st_find(&r, t->name) == NULL)
                __builtin_trap(); /* every tensor must be found by name */
        }
        for (int i = 0; i < r.n_meta; i++)
            if (lmp_st_meta(&r, r.meta_keys[i]) == NULL)
                __builtin_trap();
        (void)sum;
    }
    lmp_st_close(&r);
    return 0;
}
