/*
 * lmpress tokenize: encodes text with a model's tokenizer (HF folder, tokenizer.json or
 * GGUF) and prints the ids, the ids with their pieces (--json) or their count. Parsing
 * only; the work is lmp_tokenizer_* in lib/infer.
 */
#include "cli.h"
#include "jobs/args.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_tokenize(int argc, char **argv)
{
    lmp_tokenize_params p;
    lmp_tokenize_default_params(&p);
    bool json = false, count = false;
    const cli_opt opts[] = {
        {"prompt", 'p', OPT_STR, &p.text, "STR", "text to tokenize (llama-tokenize's -p)"},
        {"text", 0, OPT_STR, &p.text, "STR", "the same as --prompt"},
        {"file", 'f', OPT_STR, &p.file, "FILE", "tokenize the bytes of FILE exactly"},
        {"no-bos", 0, OPT_FLAG, &p.no_bos, NULL, "do not add the BOS/EOS tokens of the post-processor"},
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
    lmp_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int status = 0, rc = lmp_job_tokenize_args(npos == 1 ? pos[0] : NULL, json, count, &p);
    if (rc || (rc = lmp_tokenize(pos[0], &p, &tok, &ids, &n)))
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
            const char *pc = lmp_tokenizer_piece(tok, ids[i], &pl);
            char *z = malloc(pl + 1);
            if (!z) {
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto fail;
            }
            memcpy(z, pc ? pc : "", pl);
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
    lmp_tokenizer_free(tok);
    return status;
}
