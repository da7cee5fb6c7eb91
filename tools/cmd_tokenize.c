/*
 * lmpress tokenize: encodes text with a model's tokenizer (HF folder, tokenizer.json or
 * GGUF) and prints the ids, the ids with their pieces (--json) or their count. Parsing
 * only; the work is lmp_tokenizer_* in lib/infer.
 */
#include "cli.h"
#include "lib/infer/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenize(int argc, char **argv)
{
    const char *text = NULL, *file = NULL;
    bool no_bos = false, json = false, count = false;
    const cli_opt opts[] = {
        {"prompt", 'p', OPT_STR, &text, "STR", "text to tokenize (llama-tokenize's -p)"},
        {"text", 0, OPT_STR, &text, "STR", "the same as --prompt"},
        {"file", 'f', OPT_STR, &file, "FILE", "tokenize the bytes of FILE exactly"},
        {"no-bos", 0, OPT_FLAG, &no_bos, NULL, "do not add the BOS/EOS tokens of the post-processor"},
        {"json", 0, OPT_FLAG, &json, NULL, "print {\"ids\": [...], \"pieces\": [...]}"},
        {"count", 0, OPT_FLAG, &count, NULL, "print only the number of tokens"},
        {0},
    };
    const cli_cmd_info info = {
        "tokenize", "MODEL (-p TEXT | -f FILE) [--no-bos] [--json] [--count]",
        "Encode text with the tokenizer of MODEL (an HF folder with tokenizer.json or with vocab.json +\n"
        "merges.txt, a tokenizer.json, a vocab.json or a .gguf).",
        "By default the ids are printed on one line separated by spaces. Special tokens written\n"
        "in the text are recognised. The tokenizer.json truncation and padding settings are\n"
        "ignored: the whole text is always encoded."};
    const char **pos;
    int npos;
    int r = cli_parse(argc, argv, opts, &info, &pos, &npos);
    if (r)
        return r > 0 ? 0 : 2;
    if (npos != 1) {
        fprintf(stderr, "lmpress tokenize: expected one MODEL argument (see lmpress tokenize --help)\n");
        return 2;
    }
    if (!!text == !!file) {
        fprintf(stderr, "lmpress tokenize: give exactly one of --text and -f\n");
        return 2;
    }
    if (json && count) {
        fprintf(stderr, "lmpress tokenize: --json and --count cannot be combined\n");
        return 2;
    }
    lmp_tokenizer *tok = NULL;
    char *buf = NULL;
    int32_t *ids = NULL;
    size_t len = 0, n = 0;
    int rc = 0, status = 0;
    if (file) {
        if ((rc = lmp_read_file(file, &buf, &len)))
            goto fail;
    } else {
        len = strlen(text);
    }
    if ((rc = lmp_tokenizer_load(&tok, pos[0])))
        goto fail;
    if ((rc = lmp_tokenizer_encode(tok, file ? buf : text, len, !no_bos, &ids, &n)))
        goto fail;
    if (count) {
        printf("%zu\n", n);
    } else if (json) {
        printf("{\"ids\": [");
        for (size_t i = 0; i < n; i++)
            printf(i ? ", %d" : "%d", (int)ids[i]);
        printf("], \"pieces\": [");
        for (size_t i = 0; i < n; i++) {
            size_t pl;
            const char *p = lmp_tokenizer_piece(tok, ids[i], &pl);
            char *z = malloc(pl + 1);
            if (!z) {
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto fail;
            }
            memcpy(z, p ? p : "", pl);
            z[pl] = 0;
            if (i)
                printf(", ");
            cli_json_str(z);
            free(z);
        }
        printf("]}\n");
    } else {
        for (size_t i = 0; i < n; i++)
            printf(i ? " %d" : "%d", (int)ids[i]);
        printf("\n");
    }
    goto done;
fail:
    status = cli_fail("tokenize", rc);
done:
    free(ids);
    free(buf);
    lmp_tokenizer_free(tok);
    return status;
}
