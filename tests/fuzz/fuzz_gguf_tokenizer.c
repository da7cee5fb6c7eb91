/*
 * libFuzzer target for the GGUF tokenizer metadata (lib/infer/tokenizer_gguf.c). The input
 * is not a raw GGUF (fuzz_gguf covers the container) but a description of the
 * tokenizer.ggml.* keys that this target writes into a well-formed GGUF image in memory:
 *
 *   byte 0      flags: bit0 model "gpt2" (else "llama"), bit1 add scores, bit2 add
 *               token_type, bit3 add merges, bit4 add bos id, bit5 add eos id,
 *               bit6 add_bos_token, bit7 pre = "llama-bpe" (else "default")
 *   bytes 1-4   bos id, eos id as two little-endian int16 (may be out of range)
 *   rest        the token strings, separated by '\n' (may hold NUL, invalid UTF-8);
 *               scores and types are derived from the bytes; merges pair neighbours.
 *
 * When the vocabulary is accepted, texts are encoded (every id inside the vocabulary),
 * decoded, and every piece is read.
 */
#include "lib/infer/tokenizer.h"
#include "lib/io/io.h"

#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static volatile uint64_t g_sink;

typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *d, size_t n)
{
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n)
            c *= 2;
        b->p = realloc(b->p, c);
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void u32(buf *b, uint32_t v) { put(b, &v, 4); }
static void u64(buf *b, uint64_t v) { put(b, &v, 8); }
static void str(buf *b, const char *s, size_t n)
{
    u64(b, n);
    put(b, s, n);
}
static void key(buf *b, const char *k, uint32_t type)
{
    str(b, k, strlen(k));
    u32(b, type);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    const uint8_t fl = data[0];
    int16_t bos, eos;
    memcpy(&bos, data + 1, 2);
    memcpy(&eos, data + 3, 2);
    const char *toks = (const char *)data + 5;
    size_t tn = size - 5;
    /* split into tokens */
    size_t nt = 1;
    for (size_t i = 0; i < tn; i++)
        nt += toks[i] == '\n';
    const char **tp = malloc(nt * sizeof *tp);
    size_t *tl = malloc(nt * sizeof *tl);
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= tn; i++)
        if (i == tn || toks[i] == '\n') {
            tp[k] = toks + start;
            tl[k++] = i - start;
            start = i + 1;
        }
    buf b = {0};
    uint64_t nkv = 2 + !!(fl & 2) + !!(fl & 4) + !!(fl & 8) + !!(fl & 16) + !!(fl & 32) +
                   !!(fl & 64) + 1;
    put(&b, "GGUF", 4);
    u32(&b, 3);
    u64(&b, 0);
    u64(&b, nkv);
    key(&b, "tokenizer.ggml.model", 8);
    str(&b, fl & 1 ? "gpt2" : "llama", fl & 1 ? 4 : 5);
    key(&b, "tokenizer.ggml.pre", 8);
    str(&b, fl & 128 ? "llama-bpe" : "default", fl & 128 ? 9 : 7);
    key(&b, "tokenizer.ggml.tokens", 9);
    u32(&b, 8);
    u64(&b, nt);
    for (size_t i = 0; i < nt; i++)
        str(&b, tp[i], tl[i]);
    if (fl & 2) {
        key(&b, "tokenizer.ggml.scores", 9);
        u32(&b, 6);
        u64(&b, nt);
        for (size_t i = 0; i < nt; i++) {
            float s = tl[i] ? -(float)(uint8_t)tp[i][0] / 8.0f : -1e9f;
            put(&b, &s, 4);
        }
    }
    if (fl & 4) {
        key(&b, "tokenizer.ggml.token_type", 9);
        u32(&b, 5);
        u64(&b, nt);
        for (size_t i = 0; i < nt; i++) {
            int32_t ty = tl[i] ? 1 + (uint8_t)tp[i][tl[i] - 1] % 6 : 1;
            put(&b, &ty, 4);
        }
    }
    if (fl & 8) {
        key(&b, "tokenizer.ggml.merges", 9);
        u32(&b, 8);
        u64(&b, nt > 1 ? nt - 1 : 0);
        for (size_t i = 0; i + 1 < nt; i++) {
            char m[512];
            size_t a = tl[i] < 200 ? tl[i] : 200, c = tl[i + 1] < 200 ? tl[i + 1] : 200;
            memcpy(m, tp[i], a);
            m[a] = ' ';
            memcpy(m + a + 1, tp[i + 1], c);
            str(&b, m, a + 1 + c);
        }
    }
    if (fl & 16) {
        key(&b, "tokenizer.ggml.bos_token_id", 5);
        int32_t v = bos;
        put(&b, &v, 4);
    }
    if (fl & 32) {
        key(&b, "tokenizer.ggml.eos_token_id", 5);
        int32_t v = eos;
        put(&b, &v, 4);
    }
    if (fl & 64) {
        key(&b, "tokenizer.ggml.add_bos_token", 7);
        uint8_t v = 1;
        put(&b, &v, 1);
    }
    key(&b, "general.architecture", 8);
    str(&b, "llama", 5);
    free(tp);
    free(tl);

    lmp_gguf_reader r;
    if (lmp_gguf_open_mem(&r, b.p, b.n, "fuzz.gguf") != 0) {
        free(b.p);
        return 0;
    }
    lmp_tokenizer *t = NULL;
    if (lmp_tokenizer_from_gguf(&t, &r) == 0) {
        static const char *const texts[] = {"Hello world", " a\n\tb", "\xc3\xa9\xe2\x82\xac",
                                            "\xff\xfe\xc3", "<s>x</s>", ""};
        int nv = lmp_tokenizer_n_vocab(t);
        assert(nv > 0);
        for (int32_t id = 0; id < nv && id < 2048; id++) {
            size_t len = 0;
            const char *p = lmp_tokenizer_piece(t, id, &len);
            if (p && len)
                g_sink += (uint8_t)p[len - 1];
        }
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
            int32_t *ids = NULL;
            size_t n = 0;
            if (lmp_tokenizer_encode(t, texts[i], strlen(texts[i]), true, &ids, &n) == 0) {
                for (size_t j = 0; j < n; j++)
                    assert(ids[j] >= 0 && ids[j] < nv);
                char *out = NULL;
                size_t olen = 0;
                if (lmp_tokenizer_decode(t, ids, n, i & 1, &out, &olen) == 0)
                    g_sink += olen;
                free(out);
            }
            free(ids);
        }
        lmp_tokenizer_free(t);
    }
    lmp_gguf_close(&r);
    free(b.p);
    return 0;
}
