/*
 * Status codes, the thread-local error message and logging. Only tools/ prints the
 * message and exits; the library just records what went wrong.
 */
#include "core.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_errmsg[1024];

int lmp_log_level = LMP_LOG_INFO;

int lmp_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    return code;
}

int lmp_err_prefix(int code, const char *fmt, ...)
{
    char prefix[512], old[sizeof g_errmsg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, g_errmsg, sizeof old);
    snprintf(g_errmsg, sizeof g_errmsg, "%.500s: %.500s", prefix, old);
    return code;
}

const char *lmp_errmsg(void)
{
    return g_errmsg[0] ? g_errmsg : "no error";
}

const char *lmp_strstatus(int code)
{
    switch (code) {
    case LMP_OK: return "ok";
    case LMP_EINVAL: return "invalid argument";
    case LMP_EIO: return "i/o error";
    case LMP_ENOMEM: return "out of memory";
    case LMP_EFORMAT: return "format error";
    case LMP_EUNSUPPORTED: return "unsupported";
    case LMP_ENOTFOUND: return "not found";
    case LMP_EEXIST: return "already exists";
    case LMP_ERANGE: return "out of range";
    default: return "unknown error";
    }
}

void lmp_log(int level, const char *fmt, ...)
{
    static const char *tags[] = {"error: ", "warning: ", "", ""};
    char line[2048];
    va_list ap;
    int n;

    if (level > lmp_log_level)
        return;
    n = snprintf(line, sizeof line, "lmpress: %s", tags[level < 0 ? 0 : level > 3 ? 3 : level]);
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s\n", line);
}
