/*
 * The lmpress command: git-style subcommands. Each subcommand lives in tools/cmd_*.c,
 * parses its options and makes library calls; no algorithm code lives in tools/.
 */
#include "cli.h"
#include "lib/core/core.h"
#include "lib/core/dist.h"
#include "lib/io/io.h"
#include "lib/quant/quant.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} command;

static const command g_commands[] = {
    {"inspect", cmd_inspect, "show architecture, tensors and metadata of a checkpoint"},
    {"convert", cmd_convert, "convert a checkpoint to GGUF or safetensors (f32/f16/bf16)"},
    {"merge", cmd_merge, "merge PEFT LoRA adapters into a base checkpoint"},
    {"quantize", cmd_quantize, "quantize to GGUF (q8_0, q4_0, q4_k_m, ...; llama.cpp mixes)"},
    {"prune", cmd_prune, "prune weights (magnitude, Wanda, SparseGPT, N:M) or heads/FFN channels/layers"},
    {"synth", cmd_synth, "write a random-weight HF checkpoint for tests and benchmarks"},
    {"run", cmd_run, "generate text from a prompt (greedy or sampled)"},
    {"ppl", cmd_ppl, "perplexity of a text file (gptq, llamacpp or windows protocol)"},
    {"distill", cmd_distill, "export teacher logits to HDF5 (top-k or full), merge shards"},
    {"eval", cmd_eval, "KL divergence of a model against exported teacher logits"},
    {"tasks", cmd_tasks, "task accuracy (HellaSwag, ARC, PIQA, WinoGrande, LAMBADA) by log-likelihood"},
    {"compare", cmd_compare, "report: perplexity, KLD, size, bits per weight of variants"},
    {"tokenize", cmd_tokenize, "encode text with a model's tokenizer (ids, pieces or count)"},
};

static void usage(FILE *f)
{
    fprintf(f, "lmpress %s: convert, compress and evaluate language-model checkpoints\n\n"
               "usage: lmpress <command> [options]\n\ncommands:\n",
            LMP_VERSION);
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        fprintf(f, "  %-10s %s\n", g_commands[i].name, g_commands[i].summary);
    fprintf(f, "\n'lmpress <command> --help' or 'lmpress help <command>' describes each command.\n"
               "Global option (any command, anywhere after it): --allow-extra reads checkpoints\n"
               "that hold tensors their architecture does not use, ignoring them (reported);\n"
               "without it they are refused.\n"
               "Environment: LMP_THREADS (threads), LMP_PROGRESS=0|1 (progress bar),\n"
               "LMP_ALLOW_EXTRA=1 (as --allow-extra).\n");
}

static int run(int argc, char **argv)
{
    /* --allow-extra: a policy of the checkpoint validation (lib/io/validate.h) that every
     * command shares, taken out before the command parses its own options */
    int k = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            while (i < argc)
                argv[k++] = argv[i++];
            break;
        }
        if (strcmp(argv[i], "--allow-extra") == 0)
            lmp_allow_extra = true;
        else
            argv[k++] = argv[i];
    }
    argc = k;
    argv[argc] = NULL;
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const size_t ncmd = sizeof g_commands / sizeof g_commands[0];
    if (strcmp(argv[1], "help") == 0 && argc >= 3) {
        /* lmpress help CMD = lmpress CMD --help */
        for (size_t i = 0; i < ncmd; i++)
            if (strcasecmp(argv[2], g_commands[i].name) == 0) {
                char *hv[] = {(char *)g_commands[i].name, "--help", NULL};
                return g_commands[i].fn(2, hv);
            }
        argv[1] = argv[2]; /* unknown: the message below, with a suggestion */
    } else if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lmpress %s\n", LMP_VERSION);
        return 0;
    }
    for (size_t i = 0; i < ncmd; i++)
        if (strcasecmp(argv[1], g_commands[i].name) == 0) {
            int rc = g_commands[i].fn(argc - 1, argv + 1);
            /* results go to stdout: a failed write (a full disk, /dev/full, a closed pipe)
             * is a failure of the command, not a success with the output lost */
            errno = 0;
            if (fflush(stdout) != 0 || ferror(stdout)) {
                fprintf(stderr, "lmpress %s: error: writing to standard output failed: %s\n", argv[1],
                        errno ? strerror(errno) : "I/O error");
                return rc ? rc : 1;
            }
            return rc;
        }
    const char *names[64];
    for (size_t i = 0; i < ncmd && i < 64; i++)
        names[i] = g_commands[i].name;
    const char *sg = cli_suggest(argv[1], names, (int)ncmd);
    if (sg)
        fprintf(stderr, "lmpress: unknown command '%s'; did you mean '%s'?\n\n", argv[1], sg);
    else
        fprintf(stderr, "lmpress: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

/* The same binary runs alone or under mpirun (lib/core/dist.h): every rank runs the
 * command on its share; only rank 0 prints and writes. */
int main(int argc, char **argv)
{
    if (lmp_dist_init(&argc, &argv)) {
        fprintf(stderr, "lmpress: error: %s\n", lmp_errmsg());
        return 1;
    }
    return lmp_dist_end(run(argc, argv));
}
