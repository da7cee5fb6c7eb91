/*
 * The lmpress command's shared helpers: one option table per subcommand drives both
 * parsing and --help (curl's way); numbers are parsed strictly. No algorithms here.
 */
#ifndef LMP_CLI_H
#define LMP_CLI_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
    OPT_FLAG,   /* bool *; no argument */
    OPT_STR,    /* const char **; */
    OPT_INT,    /* long long *; strict decimal */
    OPT_FLOAT,  /* double *; strict */
    OPT_MULTI,  /* cli_strlist *; repeatable */
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

/* Parses argv (argv[0] is the subcommand). Positional arguments are returned in pos[]
 * (pointers into argv; *npos set). "--json" and "--help" are the caller's to put in the
 * table; -h/--help print help. Returns 0 to go on, 1 when help was printed (exit 0), -1
 * on a bad option (message printed; exit 2). */
int cli_parse(int argc, char **argv, const cli_opt *opts, const cli_cmd_info *info,
              const char ***pos, int *npos);
void cli_help(const cli_opt *opts, const cli_cmd_info *info);
/* Prints "lmpress <cmd>: <lmp_errmsg()>" and returns the exit status for `rc`. */
int cli_fail(const char *cmd, int rc);
/* Prints a JSON string literal (escaped) to stdout. */
void cli_json_str(const char *s);
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
int cmd_merge(int argc, char **argv);

/* LoRA options shared by merge, quantize, prune, distill export, ppl and run (cmd_merge.c).
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
