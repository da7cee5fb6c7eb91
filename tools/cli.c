/*
 * Option parsing and help printing for every subcommand, driven by one table each.
 */
#include "cli.h"
#include "formats/deploy.h"
#include "jobs/args.h"
#include "jobs/report.h"
#include "lib/core/core.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
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

static void help_row(const cli_opt *o)
{
    char left[96];
    const char *mv = o->kind == OPT_FLAG || o->kind == OPT_OFF || o->kind == OPT_TRI ? NULL : o->metavar;
    if (o->kind == OPT_TRI)
        snprintf(left, sizeof left, "%s--%s, --%s", o->shrt ? "" : "    ", o->lng, o->metavar);
    else if (o->shrt)
        snprintf(left, sizeof left, "-%c, --%s%s%s", o->shrt, o->lng, mv ? " " : "", mv ? mv : "");
    else
        snprintf(left, sizeof left, "    --%s%s%s", o->lng, mv ? " " : "", mv ? mv : "");
    if (strlen(left) > 28)
        printf("  %s\n  %-28s %s\n", left, "", o->help);
    else
        printf("  %-28s %s\n", left, o->help);
}

void cli_help_groups(const cli_group *groups, int ngroups, const cli_cmd_info *info)
{
    printf("usage: lmpress %s %s\n\n%s\n", info->name, info->usage, info->summary);
    for (int g = 0; g < ngroups; g++) {
        const cli_opt *opts = groups[g].opts;
        bool rows = opts && opts[0].lng;
        if (!rows && !(g == 0 && model_pos(info)) && g != 0)
            continue;
        printf("\n%s:\n", groups[g].title ? groups[g].title : "options");
        if (g == 0 && model_pos(info))
            printf("  %-28s %s\n", "-m, --model MODEL", "the model, as an option instead of the first argument");
        for (const cli_opt *o = opts; rows && o->lng; o++)
            help_row(o);
        if (g == 0)
            printf("  %-28s %s\n", "-h, --help", "show this help");
    }
    if (info->details)
        printf("\n%s\n", info->details);
}

void cli_help(const cli_opt *opts, const cli_cmd_info *info)
{
    const cli_group g = {NULL, opts};
    cli_help_groups(&g, 1, info);
}


bool cli_is_gguf_name(const char *path)
{
    return lmp_job_is_gguf_name(path);
}

bool cli_filelike_name(const char *path)
{
    return lmp_job_filelike_name(path);
}

int cli_edit_distance(const char *a, const char *b)
{
    return lmp_edit_distance(a, b);
}

const char *cli_suggest(const char *s, const char *const *cands, int n)
{
    return lmp_suggest(s, cands, n);
}

/* Checks a value against an OPT_NAME / OPT_ENUM metavar "a|b|c": returns its index in
 * the list (0 when there is no list), or -1 with the error printed, with a suggestion. */
static int check_choice(const cli_opt *o, const char *cmd, const char *val)
{
    if (!o->metavar || !strchr(o->metavar, '|'))
        return 0;
    const char *cands[64];
    char buf[64][40];
    int n = 0, idx = 0;
    for (const char *p = o->metavar; *p && n < 64; idx++) {
        size_t k = strcspn(p, "|");
        if (k < sizeof buf[0]) {
            memcpy(buf[n], p, k);
            buf[n][k] = 0;
            if (strcmp(buf[n], val) == 0)
                return idx;
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

static int parse_int(const cli_opt *o, const char *cmd, const char *val, long long lo, long long hi,
                     long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(val, &end, 10);
    if (errno || end == val || *end) {
        fprintf(stderr, "lmpress %s: --%s: '%s' is not an integer\n", cmd, o->lng, val);
        return -1;
    }
    if (v < lo || v > hi) {
        fprintf(stderr, "lmpress %s: --%s: %s is out of range (%lld..%lld)\n", cmd, o->lng, val, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_value(const cli_opt *o, const char *cmd, const char *val)
{
    char *end;
    long long iv;
    switch (o->kind) {
    case OPT_NAME:
    case OPT_ENUM: {
        /* argv's strings are the program's to modify (C11 5.1.2.2.1) */
        for (char *c = (char *)val; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        int k = check_choice(o, cmd, val);
        if (k < 0)
            return -1;
        if (o->kind == OPT_ENUM)
            *(int *)o->dst = k;
        else
            *(const char **)o->dst = val;
        return 0;
    }
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
    case OPT_INT:
        return parse_int(o, cmd, val, LLONG_MIN, LLONG_MAX, (long long *)o->dst);
    case OPT_I32:
        if (parse_int(o, cmd, val, INT_MIN, INT_MAX, &iv))
            return -1;
        *(int *)o->dst = (int)iv;
        return 0;
    case OPT_U64:
        if (val[0] == '-' || parse_int(o, cmd, val, 0, LLONG_MAX, &iv)) {
            if (val[0] == '-')
                fprintf(stderr, "lmpress %s: --%s: '%s': must be non-negative\n", cmd, o->lng, val);
            return -1;
        }
        *(uint64_t *)o->dst = (uint64_t)iv;
        return 0;
    case OPT_FLOAT:
    case OPT_F32: {
        errno = 0;
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || (o->kind == OPT_F32 && fabs(v) > 3.0e38)) {
            fprintf(stderr, "lmpress %s: --%s: '%s' is not a number\n", cmd, o->lng, val);
            return -1;
        }
        if (o->kind == OPT_F32)
            *(float *)o->dst = (float)v;
        else
            *(double *)o->dst = v;
        return 0;
    }
    default:
        return -1;
    }
}

/* A flag row: sets its bool / tri-state. `neg` is true for OPT_TRI's opposite name. Both
 * names of a tri-state given is a conflict (-1, message printed). */
static int set_flag(const cli_opt *o, const char *cmd, bool neg)
{
    if (o->kind == OPT_TRI) {
        int *t = o->dst, v = neg ? 0 : 1;
        if (*t >= 0 && *t != v) {
            fprintf(stderr, "lmpress %s: --%s and --%s conflict\n", cmd, o->lng, o->metavar);
            return -1;
        }
        *t = v;
    } else {
        *(bool *)o->dst = o->kind != OPT_OFF;
    }
    return 0;
}

static bool is_flag(const cli_opt *o)
{
    return o->kind == OPT_FLAG || o->kind == OPT_OFF || o->kind == OPT_TRI;
}

/* Does row o answer to the long name nm[0..len)? *neg: by OPT_TRI's opposite name. */
static bool long_match(const cli_opt *o, const char *nm, size_t len, bool *neg)
{
    *neg = false;
    if (strlen(o->lng) == len && strncmp(o->lng, nm, len) == 0)
        return true;
    if (o->kind == OPT_TRI && o->metavar && strlen(o->metavar) == len && strncmp(o->metavar, nm, len) == 0) {
        *neg = true;
        return true;
    }
    return false;
}

int cli_parse_groups(int argc, char **argv, const cli_group *groups, int ngroups, const cli_cmd_info *info,
                     const char ***pos, int *npos, cli_seen *seen)
{
    static const char *posbuf[65];
    const char *model = NULL;
    int np = 0, only_pos = 0;
    unsigned only = ~0u;
    const char *first[CLI_MAX_GROUPS] = {0};
    if (ngroups > CLI_MAX_GROUPS)
        ngroups = CLI_MAX_GROUPS;
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
            cli_help_groups(groups, ngroups, info);
            return 1;
        }
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
        /* every row with this name, in every table */
        const cli_opt *hit[CLI_MAX_GROUPS] = {0};
        bool neg[CLI_MAX_GROUPS] = {0};
        unsigned mask = 0;
        const cli_opt *o = NULL;
        const char *inl = NULL;
        for (int g = 0; g < ngroups; g++) {
            for (const cli_opt *p = groups[g].opts; p && p->lng; p++) {
                bool ng = false;
                if (a[1] == '-') {
                    const char *nm = a + 2, *eq = strchr(nm, '=');
                    if (!long_match(p, nm, eq ? (size_t)(eq - nm) : strlen(nm), &ng))
                        continue;
                    inl = eq ? eq + 1 : NULL;
                } else {
                    if (p->shrt != a[1])
                        continue;
                    inl = a[2] ? a + 2 : NULL;
                }
                hit[g] = p;
                neg[g] = ng;
                o = p;
                mask |= 1u << g;
            }
        }
        if (!o) {
            const char *cands[160];
            char names[160][48];
            int n = 0;
            for (int g = 0; g < ngroups; g++)
                for (const cli_opt *p = groups[g].opts; p && p->lng && n < 156; p++) {
                    snprintf(names[n], sizeof names[n], "--%s", p->lng);
                    cands[n] = names[n];
                    n++;
                    if (p->kind == OPT_TRI && p->metavar) {
                        snprintf(names[n], sizeof names[n], "--%s", p->metavar);
                        cands[n] = names[n];
                        n++;
                    }
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
        if (!(mask & 1u)) /* table 0 is common to all: its rows do not narrow */
            only &= mask;
        for (int g = 0; g < ngroups; g++)
            if (mask == 1u << g && !first[g])
                first[g] = o->lng;
        const char *val = NULL;
        if (is_flag(o)) {
            if (inl) {
                fprintf(stderr, "lmpress %s: --%s takes no value\n", info->name, o->lng);
                return -1;
            }
        } else {
            val = inl;
            if (!val) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "lmpress %s: --%s needs a value (%s)\n", info->name, o->lng,
                            o->metavar ? o->metavar : "VALUE");
                    return -1;
                }
                val = argv[++i];
            }
        }
        for (int g = 0; g < ngroups; g++) {
            if (!hit[g])
                continue;
            if (is_flag(hit[g]) ? set_flag(hit[g], info->name, neg[g]) : parse_value(hit[g], info->name, val))
                return -1;
        }
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
    if (seen) {
        seen->only = only;
        memcpy(seen->first, first, sizeof first);
    }
    return 0;
}

int cli_parse(int argc, char **argv, const cli_opt *opts, const cli_cmd_info *info,
              const char ***pos, int *npos)
{
    const cli_group g = {NULL, opts};
    return cli_parse_groups(argc, argv, &g, 1, info, pos, npos, NULL);
}

int cli_fail(const char *cmd, int rc)
{
    fprintf(stderr, "lmpress %s: error: %s\n", cmd, lmp_errmsg());
    return rc == LMP_EINVAL ? 2 : 1;
}

void cli_json_str(const char *s)
{
    lmp_report_json_str(s);
}

void cli_eta_text(const void *t0, int layer, int n_layers, char *buf, size_t n)
{
    lmp_report_eta(t0, layer, n_layers, buf, n);
}

const char *cli_bytes(double n, char *buf, int len)
{
    return lmp_report_bytes(n, buf, len);
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
