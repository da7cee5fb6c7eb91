/*
 * The --lora options shared by merge, quantize, prune, distill export, ppl and run
 * (declared in cli.h): scales per adapter, the temporary merged model, unmerged adapters.
 */
#include "cli.h"
#include "formats/formats.h"
#include "lib/infer/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_lora_scales(int argc, char **argv, const char *cmd, int n_loras, double *scales)
{
    int k = -1;
    for (int i = 0; i < n_loras; i++)
        scales[i] = 1.0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--lora") == 0 || strncmp(a, "--lora=", 7) == 0) {
            k++;
            i += a[6] == 0; /* its value */
        } else if (strcmp(a, "--scale") == 0 || strncmp(a, "--scale=", 8) == 0) {
            const char *v = a[7] == '=' ? a + 8 : (i + 1 < argc ? argv[++i] : "");
            if (k < 0) {
                fprintf(stderr, "lmpress %s: --scale applies to the --lora ADAPTER before it; give --lora first\n",
                        cmd);
                return -1;
            }
            if (k < n_loras)
                scales[k] = strtod(v, NULL);
        }
    }
    return 0;
}

/* the temporary merged model of this process, removed at exit whatever the path out */
static char *g_lora_tmp;
static char *g_lora_model; /* the merged copy's path the command reads instead of MODEL */
static void lora_tmp_atexit(void)
{
    lmp_merge_temp_remove(g_lora_tmp);
    g_lora_tmp = NULL;
    free(g_lora_model);
    g_lora_model = NULL;
}

/* The n adapters' --scale values (malloc'd into *scales): 0, or the exit code (1: out of
 * memory, 2: a bad --scale, already said). */
static int lora_scales(const char *cmd, int argc, char **argv, int n, double **scales)
{
    *scales = malloc(sizeof(double) * (size_t)n);
    if (!*scales)
        return 1;
    if (cli_lora_scales(argc, argv, cmd, n, *scales)) {
        free(*scales);
        *scales = NULL;
        return 2;
    }
    return 0;
}

int cli_lora_prepare(const char *cmd, int argc, char **argv, const cli_strlist *loras, const char **model,
                     char **tmpdir)
{
    *tmpdir = NULL;
    if (!loras->n)
        return 0;
    double *scales;
    int e = lora_scales(cmd, argc, argv, loras->n, &scales);
    if (e)
        return e;
    char *merged = NULL;
    int rc = lmp_merge_temp(*model, loras->v, scales, loras->n, &merged, tmpdir);
    free(scales);
    if (rc)
        return cli_fail(cmd, rc);
    *model = merged; /* until cli_lora_cleanup (or exit): the folder and this path go there */
    if (!g_lora_tmp && !g_lora_model)
        atexit(lora_tmp_atexit);
    free(g_lora_model);
    g_lora_model = merged;
    g_lora_tmp = *tmpdir;
    return 0;
}

void cli_lora_cleanup(char *tmpdir)
{
    if (tmpdir && tmpdir == g_lora_tmp) {
        g_lora_tmp = NULL;
        free(g_lora_model);
        g_lora_model = NULL;
    }
    lmp_merge_temp_remove(tmpdir);
}

int cli_lora_attach(const char *cmd, int argc, char **argv, const cli_strlist *loras, struct lmp_model *m)
{
    if (!loras->n)
        return 0;
    double *scales;
    int e = lora_scales(cmd, argc, argv, loras->n, &scales);
    if (e)
        return e;
    lmp_lora **a = NULL;
    int rc = lmp_loras_open(loras->v, loras->n, &a);
    for (int i = 0; rc == 0 && i < loras->n; i++)
        rc = lmp_model_add_lora(m, a[i], scales[i]);
    if (a)
        lmp_loras_close(a, loras->n);
    free(scales);
    return rc ? cli_fail(cmd, rc) : 0;
}
