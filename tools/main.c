/*
 * The lmpress command: git-style subcommands. Each subcommand lives in tools/cmd_*.c,
 * parses its options and makes library calls; no algorithm code lives in tools/.
 */
#include "cli.h"
#include "lib/core/core.h"
#include "lib/quant/quant.h"

#include <stdio.h>
#include <string.h>

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
    fprintf(f, "\n'lmpress <command> --help' describes each command.\n"
               "Environment: LMP_THREADS (threads), LMP_PROGRESS=0|1 (progress bar).\n");
}

int main(int argc, char **argv)
{
    lmp_quant_init(); /* k-quant rows of the dtype table, for every command */
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lmpress %s\n", LMP_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof g_commands / sizeof g_commands[0]; i++)
        if (strcmp(argv[1], g_commands[i].name) == 0)
            return g_commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "lmpress: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
