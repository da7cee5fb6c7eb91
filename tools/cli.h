/*
 * The lmpress command's shared helpers: one option table per subcommand drives both
 * parsing and --help (curl's way); numbers are parsed strictly. No algorithms here.
 */
#ifndef LMP_CLI_H
#define LMP_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    OPT_FLAG,   /* bool *; no argument */
    OPT_STR,    /* const char **; */
    OPT_INT,    /* long long *; strict decimal */
    OPT_FLOAT,  /* double *; strict */
    OPT_MULTI,  /* cli_strlist *; repeatable */
    OPT_NAME,   /* const char **; a name (method, type, protocol, format...): stored lower-cased,
                 * so that `--method GPTQ` = `--method gptq`; a metavar "a|b|c" lists the
                 * accepted values (checked here, with "did you mean") */
    /* Rows that point straight into a library parameter struct (filled first by its
     * *_default_params): the parser only converts; ranges are the library check's. */
    OPT_I32,    /* int *; strict decimal within int */
    OPT_F32,    /* float *; strict */
    OPT_U64,    /* uint64_t *; strict non-negative decimal */
    OPT_ENUM,   /* int * (an enum field: GCC/Clang store enums without negative values as
                 * unsigned int, which int may access); metavar "a|b|c": stores the index of
                 * the value given (case-insensitive, "did you mean"), so the list is in the
                 * enum's order */
    OPT_OFF,    /* bool *; no argument; sets false (`--no-clip` clears awq_clip) */
    OPT_TRI,    /* int *, -1 until given; no argument; `--lng` sets 1 and `--METAVAR` (the
                 * opposite name, e.g. "asym" for "sym") sets 0; both given is refused as a
                 * conflict. For preferences whose default depends on another option. */
} cli_opt_kind;

typedef struct {
    const char **v;
    int n;
} cli_strlist;

typedef struct {
    const char *lng;     /* "--output" without dashes: "output" */
    char shrt;           /* 'o' or 0 */
    cli_opt_kind kind;
    void *dst;
    const char *metavar; /* "FILE" */
    const char *help;
} cli_opt;

typedef struct {
    const char *name;    /* "convert" */
    const char *usage;   /* "IN -o OUT [--dtype f32|f16|bf16]" */
    const char *summary; /* one line */
    const char *details; /* extra paragraphs printed after the options, or NULL */
} cli_cmd_info;
/* A usage that starts with MODEL, IN, BASE or TEACHER has the model as its first positional
 * argument: `-m/--model MODEL` supplies it there (llama.cpp's -m). */

/* Parses argv (argv[0] is the subcommand). Positional arguments are returned in pos[]
 * (pointers into argv; *npos set). "--json" and "--help" are the caller's to put in the
 * table; -h/--help print help. Returns 0 to go on, 1 when help was printed (exit 0), -1
 * on a bad option (message printed; exit 2). */
/* Conventions (issue 18 item 7), the same in every subcommand and matching llama.cpp:
 * -m model (wherever the usage starts with MODEL, IN, BASE or TEACHER), -f input file, -o output,
 * -t threads, -c context, -n tokens to generate, -p prompt, -k top-k; --force never has
 * a short form. Unknown options get a "did you mean". */
int cli_parse(int argc, char **argv, const cli_opt *opts, const cli_cmd_info *info,
              const char ***pos, int *npos);
void cli_help(const cli_opt *opts, const cli_cmd_info *info);

/* Several tables under one command (quantize: options common to both paths, GGUF block
 * types, integer groups). A name may be a row of several tables: the value is written to
 * every such row's dst (the calibration windows serve either path). --help prints each
 * table under its title (NULL: "options"). */
#define CLI_MAX_GROUPS 8
typedef struct {
    const char *title;  /* "GGUF block types (--type)" or NULL */
    const cli_opt *opts;
} cli_group;
/* Which tables the options given came from. */
typedef struct {
    unsigned only;      /* AND over the options given of the tables holding each one
                         * (all bits when none was given): the tables every option fits.
                         * Table 0 is common to all: its rows do not narrow. */
    const char *first[CLI_MAX_GROUPS]; /* first option given that is a row of table g only */
} cli_seen;
int cli_parse_groups(int argc, char **argv, const cli_group *groups, int ngroups, const cli_cmd_info *info,
                     const char ***pos, int *npos, cli_seen *seen);
void cli_help_groups(const cli_group *groups, int ngroups, const cli_cmd_info *info);
/* Prints "lmpress <cmd>: <lmp_errmsg()>" and returns the exit status for `rc`. */
int cli_fail(const char *cmd, int rc);
/* Prints a JSON string literal (escaped) to stdout. */
void cli_json_str(const char *s);
/* Output kinds by name (issue 18 item 2), the same rule in every subcommand: a name ending
 * in .gguf (any case) is a GGUF file; a name with another file extension (.ggml, .bin,
 * .safetensors, .pt, .pth, .h5, .json, .txt, .gz, .zip, .tar, .ckpt, .onnx) is file-like and
 * is refused where a folder would be written. */
bool cli_is_gguf_name(const char *path);
bool cli_filelike_name(const char *path);
/* --split-max-size N, NK, NM, NG (10^3, 10^6, 10^9, as llama-gguf-split): 0 or -1
 * (message printed). */
int cli_parse_size(const char *cmd, const char *s, uint64_t *out);
/* After a GGUF was written to `out` from `src` (issue 18 item 11): splits it when
 * split_max > 0 (llama.cpp's PREFIX-0000i-of-0000N.gguf layout, `out` removed) and writes
 * an Ollama Modelfile beside it when the model has a chat template. Notes go to stderr
 * (not with json). Returns 0 or an exit status (message printed). */
int cli_gguf_deploy(const char *cmd, const char *out, const char *src, uint64_t split_max, bool force, bool json);
/* Levenshtein distance, capped; for "did you mean" suggestions. */
int cli_edit_distance(const char *a, const char *b);
/* Of `cands` (n names), the closest to `s` within a small distance, or NULL. */
const char *cli_suggest(const char *s, const char *const *cands, int n);
/* "; elapsed 12.3s, ETA 45.6s" into buf: the whole job's, from the layers done (layers take
 * about the same time each); t0 points at the job's start (lmp_time_s), NULL gives "". */
void cli_eta_text(const void *t0, int layer, int n_layers, char *buf, size_t n);
/* "1.23 MiB" into buf. */
const char *cli_bytes(double n, char *buf, int len);

/* Subcommands: int cmd_<name>(int argc, char **argv), argv[0] = "<name>". */
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_prune(int argc, char **argv);
int cmd_distill(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_compare(int argc, char **argv);
int cmd_tasks(int argc, char **argv);
int cmd_merge(int argc, char **argv);

/* LoRA options shared by merge, quantize, prune, distill export, ppl and run (cli_lora.c).
 * --scale S applies to the --lora given before it (1 when none follows an adapter): fills
 * scales[0..n_loras) from argv; -1 (message printed) on a --scale before any --lora. */
int cli_lora_scales(int argc, char **argv, const char *cmd, int n_loras, double *scales);
/* For commands that merge on the fly: when loras->n > 0, merges them into a temporary
 * copy of *model (lmp_merge_temp) and points *model at it; *tmpdir is what
 * cli_lora_cleanup removes. Returns the exit status (0 to go on). */
int cli_lora_prepare(const char *cmd, int argc, char **argv, const cli_strlist *loras,
                     const char **model, char **tmpdir);
void cli_lora_cleanup(char *tmpdir);
/* For run and ppl: attaches the adapters unmerged to a loaded model
 * (lmp_model_add_lora). Returns the exit status (0 to go on). */
struct lmp_model;
int cli_lora_attach(const char *cmd, int argc, char **argv, const cli_strlist *loras,
                    struct lmp_model *m);

#endif
