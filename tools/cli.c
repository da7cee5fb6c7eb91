/*
 * Option parsing and help printing for every subcommand, driven by one table each.
 */
#include "cli.h"
#include "formats/deploy.h"
#include "lib/core/core.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool model_pos(const cli_cmd_info *info)
{
    const char *u = info->usage;
    return strncmp(u, "MODEL", 5) == 0 || strncmp(u, "IN ", 3) == 0 || strncmp(u, "IN.", 3) == 0 ||
           strncmp(u, "BASE", 4) == 0 || strncmp(u, "TEACHER", 7) == 0;
}

void cli_help(const cli_opt *opts, const cli_cmd_info *info)
{
    printf("usage: lmpress %s %s\n\n%s\n", info->name, info->usage, info->summary);
    if ((opts && opts[0].lng) || model_pos(info)) {
        printf("\noptions:\n");
        if (model_pos(info))
            printf("  %-28s %s\n", "-m, --model MODEL", "the model, as an option instead of the first argument");
    }
    if (opts && opts[0].lng) {
        for (const cli_opt *o = opts; o->lng; o++) {
            char left[64];
            if (o->shrt)
                snprintf(left, sizeof left, "-%c, --%s%s%s", o->shrt, o->lng, o->metavar ? " " : "",
                         o->metavar ? o->metavar : "");
            else
                snprintf(left, sizeof left, "    --%s%s%s", o->lng, o->metavar ? " " : "",
                         o->metavar ? o->metavar : "");
            if (strlen(left) > 28)
                printf("  %s\n  %-28s %s\n", left, "", o->help);
            else
                printf("  %-28s %s\n", left, o->help);
        }
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
    if (info->details)
        printf("\n%s\n", info->details);
}

static const char *ext_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    const char *dot = strrchr(base, '.');
    return dot && dot != base ? dot : NULL;
}

bool cli_is_gguf_name(const char *path)
{
    const char *e = ext_of(path);
    return e && strcasecmp(e, ".gguf") == 0;
}

bool cli_filelike_name(const char *path)
{
    static const char *const exts[] = {".gguf", ".ggml", ".bin", ".safetensors", ".pt", ".pth", ".h5", ".json",
                                       ".txt", ".gz", ".zip", ".tar", ".ckpt", ".onnx", ".ggjt", ".llamafile"};
    const char *e = ext_of(path);
    if (!e)
        return false;
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++)
        if (strcasecmp(e, exts[i]) == 0)
            return true;
    return false;
}

int cli_edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int d[64][64];
    for (size_t i = 0; i <= la; i++)
        d[i][0] = (int)i;
    for (size_t j = 0; j <= lb; j++)
        d[0][j] = (int)j;
    for (size_t i = 1; i <= la; i++)
        for (size_t j = 1; j <= lb; j++) {
            int c = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
            int v = d[i - 1][j - 1] + c;
            if (d[i - 1][j] + 1 < v)
                v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v)
                v = d[i][j - 1] + 1;
            /* a swap of two neighbours counts as one edit */
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    return d[la][lb];
}

const char *cli_suggest(const char *s, const char *const *cands, int n)
{
    const char *best = NULL;
    int bd = 99;
    size_t ls = strlen(s);
    for (int i = 0; i < n; i++) {
        int dd = cli_edit_distance(s, cands[i]);
        /* a prefix of a longer name ("--calib-sample") is a good guess too */
        if (ls >= 3 && strncmp(cands[i], s, ls) == 0 && dd > 1)
            dd = 1;
        if (dd < bd) {
            bd = dd;
            best = cands[i];
        }
    }
    int lim = ls <= 4 ? 1 : ls <= 8 ? 2 : 3;
    return bd <= lim ? best : NULL;
}

/* Checks an OPT_NAME value against "a|b|c"; prints the error with a suggestion. */
static int check_choice(const cli_opt *o, const char *cmd, const char *val)
{
    if (!o->metavar || !strchr(o->metavar, '|'))
        return 0;
    const char *cands[64];
    char buf[64][32];
    int n = 0;
    for (const char *p = o->metavar; *p && n < 64;) {
        size_t k = strcspn(p, "|");
        if (k < sizeof buf[0]) {
            memcpy(buf[n], p, k);
            buf[n][k] = 0;
            if (strcmp(buf[n], val) == 0)
                return 0;
            cands[n] = buf[n];
            n++;
        }
        p += k;
        if (*p)
            p++;
    }
    const char *s = cli_suggest(val, cands, n);
    if (s)
        fprintf(stderr, "lmpress %s: --%s: unknown %s '%s' (did you mean '%s'?; one of %s)\n", cmd, o->lng,
                o->lng, val, s, o->metavar);
    else
        fprintf(stderr, "lmpress %s: --%s: unknown %s '%s' (one of %s)\n", cmd, o->lng, o->lng, val, o->metavar);
    return -1;
}

static int parse_value(const cli_opt *o, const char *cmd, const char *val)
{
    char *end;
    switch (o->kind) {
    case OPT_NAME:
        /* argv's strings are the program's to modify (C11 5.1.2.2.1) */
        for (char *c = (char *)val; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        if (check_choice(o, cmd, val))
            return -1;
        *(const char **)o->dst = val;
        return 0;
    case OPT_STR:
        *(const char **)o->dst = val;
        return 0;
    case OPT_MULTI: {
        cli_strlist *l = o->dst;
        const char **nv = realloc(l->v, sizeof(char *) * (size_t)(l->n + 1));
        if (!nv)
            return -1;
        nv[l->n++] = val;
        l->v = nv;
        return 0;
    }
    case OPT_INT: {
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (errno || end == val || *end) {
            fprintf(stderr, "lmpress %s: --%s: '%s' is not an integer\n", cmd, o->lng, val);
            return -1;
        }
        *(long long *)o->dst = v;
        return 0;
    }
    case OPT_FLOAT: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v)) {
            fprintf(stderr, "lmpress %s: --%s: '%s' is not a number\n", cmd, o->lng, val);
            return -1;
        }
        *(double *)o->dst = v;
        return 0;
    }
    default:
        return -1;
    }
}

int cli_parse(int argc, char **argv, const cli_opt *opts, const cli_cmd_info *info,
              const char ***pos, int *npos)
{
    static const char *posbuf[65];
    const char *model = NULL;
    int np = 0, only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_pos || a[0] != '-' || a[1] == 0) {
            if (np >= 64) {
                fprintf(stderr, "lmpress %s: too many arguments\n", info->name);
                return -1;
            }
            posbuf[np++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_pos = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            cli_help(opts, info);
            return 1;
        }
        const cli_opt *o = NULL;
        const char *inl = NULL;
        if (model_pos(info) && (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0 ||
                                strncmp(a, "--model=", 8) == 0 || (a[1] == 'm' && a[2] && a[1] != '-'))) {
            const char *v = a[1] == 'm' ? (a[2] ? a + 2 : NULL) : a[7] == '=' ? a + 8 : NULL;
            if (!v) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "lmpress %s: --model needs a value (MODEL)\n", info->name);
                    return -1;
                }
                v = argv[++i];
            }
            if (model) {
                fprintf(stderr, "lmpress %s: -m/--model given twice\n", info->name);
                return -1;
            }
            model = v;
            continue;
        }
        if (a[1] == '-') {
            const char *nm = a + 2, *eq = strchr(nm, '=');
            size_t len = eq ? (size_t)(eq - nm) : strlen(nm);
            for (const cli_opt *p = opts; p && p->lng; p++)
                if (strlen(p->lng) == len && strncmp(p->lng, nm, len) == 0)
                    o = p;
            if (eq)
                inl = eq + 1;
        } else {
            for (const cli_opt *p = opts; p && p->lng; p++)
                if (p->shrt == a[1])
                    o = p;
            if (o && a[2])
                inl = a + 2;
        }
        if (!o) {
            const char *cands[128];
            char names[128][48];
            int n = 0;
            for (const cli_opt *p = opts; p && p->lng && n < 126; p++) {
                snprintf(names[n], sizeof names[n], "--%s", p->lng);
                cands[n] = names[n];
                n++;
            }
            cands[n++] = "--help";
            if (model_pos(info))
                cands[n++] = "--model";
            char key[64];
            snprintf(key, sizeof key, "%.*s", (int)strcspn(a, "="), a);
            const char *sg = a[1] == '-' ? cli_suggest(key, cands, n) : NULL;
            if (sg)
                fprintf(stderr, "lmpress %s: unknown option '%s'; did you mean '%s'? (see lmpress %s --help)\n",
                        info->name, a, sg, info->name);
            else
                fprintf(stderr, "lmpress %s: unknown option '%s' (see lmpress %s --help)\n", info->name, a,
                        info->name);
            return -1;
        }
        if (o->kind == OPT_FLAG) {
            if (inl) {
                fprintf(stderr, "lmpress %s: --%s takes no value\n", info->name, o->lng);
                return -1;
            }
            *(bool *)o->dst = true;
            continue;
        }
        const char *val = inl;
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lmpress %s: --%s needs a value (%s)\n", info->name, o->lng,
                        o->metavar ? o->metavar : "VALUE");
                return -1;
            }
            val = argv[++i];
        }
        if (parse_value(o, info->name, val) != 0)
            return -1;
    }
    if (model) {
        memmove(posbuf + 1, posbuf, sizeof(char *) * (size_t)np);
        posbuf[0] = model;
        np++;
    }
    if (pos)
        *pos = posbuf;
    if (npos)
        *npos = np;
    return 0;
}

int cli_fail(const char *cmd, int rc)
{
    fprintf(stderr, "lmpress %s: error: %s\n", cmd, lmp_errmsg());
    return rc == LMP_EINVAL ? 2 : 1;
}

void cli_json_str(const char *s)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"': fputs("\\\"", stdout); break;
        case '\\': fputs("\\\\", stdout); break;
        case '\n': fputs("\\n", stdout); break;
        case '\r': fputs("\\r", stdout); break;
        case '\t': fputs("\\t", stdout); break;
        default:
            if (*p < 0x20)
                printf("\\u%04x", *p);
            else
                putchar(*p);
        }
    }
    putchar('"');
}

const char *cli_bytes(double n, char *buf, int len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (n >= 1024 && i < 4) {
        n /= 1024;
        i++;
    }
    snprintf(buf, (size_t)len, i ? "%.2f %s" : "%.0f %s", n, u[i]);
    return buf;
}

int cli_parse_size(const char *cmd, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    double mul = 1;
    if (end != s && *end) {
        char u = (char)toupper((unsigned char)*end);
        mul = u == 'K' ? 1e3 : u == 'M' ? 1e6 : u == 'G' ? 1e9 : u == 'T' ? 1e12 : 0;
        if (mul && (end[1] == 0 || ((end[1] == 'B' || end[1] == 'b') && end[2] == 0)))
            end += end[1] ? 2 : 1;
    }
    if (errno || end == s || *end || !mul || !(v > 0) || v * mul > 1e18) {
        fprintf(stderr, "lmpress %s: --split-max-size '%s': expected a size such as 500M or 2G\n", cmd, s);
        return -1;
    }
    *out = (uint64_t)(v * mul);
    return 0;
}

int cli_gguf_deploy(const char *cmd, const char *out, const char *src, uint64_t split_max, bool force, bool json)
{
    char *tmpl = lmp_chat_template_find(out, src);
    char *first = NULL;
    int nf = 1, rc = 0;
    if (split_max > 0) {
        rc = lmp_gguf_split(out, out, split_max, force, &nf);
        if (rc) {
            free(tmpl);
            return cli_fail(cmd, rc);
        }
        remove(out);
        first = lmp_gguf_split_path(out, 0, nf);
        if (!json)
            fprintf(stderr, "split into %d file(s) of at most %.3g MB of tensors: %s ... (llama.cpp loads the first)\n",
                    nf, split_max / 1e6, first ? first : "?");
    }
    if (tmpl) {
        char *mf = NULL;
        lmp_chat_family fam = lmp_chat_family_of(tmpl);
        rc = lmp_modelfile_write(out, first, tmpl, force, &mf);
        if (rc == LMP_EEXIST) {
            if (!json)
                fprintf(stderr, "note: %s; the Modelfile was not replaced\n", lmp_errmsg());
            rc = 0;
        } else if (rc) {
            rc = cli_fail(cmd, rc);
        } else if (!json) {
            fprintf(stderr, "wrote %s (Ollama; chat template %s%s)\n", mf, lmp_chat_family_name(fam),
                    fam == LMP_CHAT_UNKNOWN ? ": TEMPLATE to be added by hand" : "");
        }
        free(mf);
    }
    free(tmpl);
    free(first);
    return rc;
}
