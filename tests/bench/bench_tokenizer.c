/*
 * Tokenizer throughput: encodes a text file (default: the fixtures' WikiText-2
 * wiki.test.raw) with several tokenizers and prints MB/s on one thread (best of 3).
 * Build: make BUILD=build build/liblmpress.a, then
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. tests/bench/bench_tokenizer.c build/liblmpress.a \
 *      -lcjson -lpcre2-8 -lm -fopenmp -o build/bench_tokenizer
 * Usage: bench_tokenizer [TEXT] (fixtures from LMP_FIXTURES, default ../shared/fixtures).
 */
#include "lib/infer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    const char *root = getenv("LMP_FIXTURES");
    if (!root || !*root)
        root = "../shared/fixtures";
    char text_path[1024];
    if (argc > 1)
        snprintf(text_path, sizeof text_path, "%s", argv[1]);
    else
        snprintf(text_path, sizeof text_path, "%s/text/wiki.test.raw", root);
    char *text = NULL;
    size_t len = 0;
    if (lmp_read_file(text_path, &text, &len)) {
        fprintf(stderr, "bench_tokenizer: %s\n", lmp_errmsg());
        return 1;
    }
    static const char *toks[][2] = {
        {"gpt-2 (GGUF)", "tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf"},
        {"llama-spm (GGUF)", "tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf"},
        {"stories260K (tokenizer.json)", "models/stories260K/tokenizer.json"},
        {"smollm-135m (tokenizer.json)", "hf-meta/smollm-135m-seqcls-ft/tokenizer.json"},
        {"llama-2 (tokenizer.json)", "hf-meta/llama-2/tokenizer.json"},
    };
    printf("text: %s (%.2f MB)\n", text_path, len / 1e6);
    for (size_t i = 0; i < sizeof toks / sizeof toks[0]; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", root, toks[i][1]);
        lmp_tokenizer *t = NULL;
        double t0 = lmp_time_s();
        if (lmp_tokenizer_load(&t, p)) {
            printf("%-30s skipped: %s\n", toks[i][0], lmp_errmsg());
            continue;
        }
        double load_s = lmp_time_s() - t0, best = 1e9;
        size_t n = 0;
        for (int rep = 0; rep < 3; rep++) {
            int32_t *ids = NULL;
            t0 = lmp_time_s();
            if (lmp_tokenizer_encode(t, text, len, false, &ids, &n)) {
                printf("%-30s failed: %s\n", toks[i][0], lmp_errmsg());
                break;
            }
            double s = lmp_time_s() - t0;
            if (s < best)
                best = s;
            free(ids);
        }
        printf("%-30s load %6.3f s  encode %6.3f s  %7.2f MB/s  %zu tokens\n", toks[i][0], load_s, best,
               len / 1e6 / best, n);
        lmp_tokenizer_free(t);
    }
    free(text);
    return 0;
}
