/*
 * libFuzzer target for tokenizer.json parsing (lib/infer/tokenizer_json.c): the input is
 * the JSON text. When it is accepted, a fixed set of texts (ASCII, multi-byte UTF-8,
 * invalid UTF-8, special-token text) is encoded, every id must be inside the vocabulary,
 * the ids are decoded again, and every vocabulary piece is read, so the sanitizers see
 * any index or length the tokenizer got wrong. tests/fuzz/replay.c gives it a main() for
 * the seed corpus in `make test`.
 */
#include "lib/infer/tokenizer.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t g_sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const texts[] = {
        "Hello world", " the  cat\n\tsat", "\xc3\xa9t\xc3\xa9 \xe2\x82\xac 10", "\xff\xfe bad \xc3",
        "<s>Once upon</s> a time", "", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    };
    lmp_tokenizer *t = NULL;
    if (lmp_tokenizer_from_json(&t, (const char *)data, size, "fuzz.json") != 0)
        return 0;
    int nv = lmp_tokenizer_n_vocab(t);
    assert(nv > 0);
    for (int32_t id = 0; id < nv && id < 4096; id++) {
        size_t len = 0;
        const char *p = lmp_tokenizer_piece(t, id, &len);
        if (p && len)
            g_sink += (uint8_t)p[0] + (uint8_t)p[len - 1];
    }
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (lmp_tokenizer_encode(t, texts[i], strlen(texts[i]), i & 1, &ids, &n) == 0) {
            for (size_t j = 0; j < n; j++)
                assert(ids[j] >= 0 && ids[j] < nv);
            char *out = NULL;
            size_t olen = 0;
            if (lmp_tokenizer_decode(t, ids, n, i & 2, &out, &olen) == 0)
                g_sink += olen;
            free(out);
        }
        free(ids);
    }
    g_sink += lmp_tokenizer_hash(t);
    lmp_tokenizer_free(t);
    return 0;
}
