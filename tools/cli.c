/*
 * Option parsing and help printing for every subcommand, driven by one table each.
 */
#include "cli.h"
#include "lib/core/core.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cli_help(const cli_opt *opts, const cli_cmd_info *info)
{
    printf("usage: lmpress %s %s\n\n%s\n", info->name, info->usage, info->summary);
    if (opts && opts[0].lng) {
        printf("\noptions:\n");
        for (const cli_opt *o = opts; o->lng; o++) {
            char left[64];
            if (o->shrt)
                snprintf(left, sizeof left, "-%c, --%s%s%s", o->shrt, o->lng, o->metavar ? " " : "",
                         o->metavar ? o->metavar : "");
            else
                snprintf(left, sizeof left, "    --%s%s%s", o->lng, o->metavar ? " " : "",
                         o->metavar ? o->metavar : "");
            printf("  %-28s %s\n", left, o->help);
        }
    }
    printf("  %-28s %s\n", "-h, --help", "show this help");
    if (info->details)
        printf("\n%s\n", info->details);
}

static int parse_value(const cli_opt *o, const char *cmd, const char *val)
{
    char *end;
    switch (o->kind) {
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
    static const char *posbuf[64];
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
