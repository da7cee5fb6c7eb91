/*
 * Fuzz target: config.json parsing (lmp_config_parse) on arbitrary bytes. Must never
 * crash; on success the derived sizes must be consistent.
 */
#include "lib/io/io.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    lmp_config c;
    if (lmp_config_parse(&c, (const char *)data, size, "fuzz.json") == 0) {
        assert(c.n_heads > 0 && c.n_kv_heads > 0 && c.n_heads % c.n_kv_heads == 0);
        assert(c.head_dim > 0 && c.hidden_size > 0 && c.vocab_size > 0);
        char *out = NULL;
        if (lmp_config_to_json(&c, &out) == 0) {
            lmp_config d;
            int rc = lmp_config_parse(&d, out, strlen(out), "roundtrip.json");
            assert(rc == 0 && d.hidden_size == c.hidden_size && d.n_layers == c.n_layers);
            (void)rc;
        }
        free(out);
    }
    return 0;
}
