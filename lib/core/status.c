/*
 * Status codes, the thread-local error message and logging. Only tools/ prints the
 * message and exits; the library just records what went wrong.
 */
#include "core.h"

#include <stdarg.h>
#include <string.h>

static _Thread_local char g_errmsg[1024];

int lmp_log_level = LMP_LOG_INFO;

/* Length of the valid UTF-8 sequence at s (1-4), or 0 when it is not one. */
static int utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    int n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (n == 0 || (n == 2 && c < 0xc2) || (n == 4 && c > 0xf4))
        return 0;
    for (int i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0)))
        return 0; /* overlong, surrogate */
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90)))
        return 0;
    return n;
}

/* Rewrites `s` (cap bytes) so that it is printable UTF-8: invalid bytes and control
 * characters other than newline and tab become "\xNN". Messages echo file names, keys
 * and tensor names taken from hostile files; a terminal must never receive them raw. */
static void sanitize(char *s, size_t cap)
{
    size_t len = strlen(s);
    bool clean = true;
    for (size_t i = 0; i < len && clean;) {
        int n = utf8_len((const unsigned char *)s + i);
        clean = n > 0 && !(n == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) && s[i] != '\n' && s[i] != '\t');
        i += n > 0 ? (size_t)n : 1;
    }
    if (clean)
        return;
    char out[4096];
    size_t o = 0;
    for (size_t i = 0; i < len && o + 5 < sizeof out;) {
        unsigned char c = (unsigned char)s[i];
        int n = utf8_len((const unsigned char *)s + i);
        if (n == 0 || (n == 1 && (c < 0x20 || c == 0x7f) && c != '\n' && c != '\t')) {
            o += (size_t)snprintf(out + o, sizeof out - o, "\\x%02x", c);
            i++;
        } else {
            memcpy(out + o, s + i, (size_t)n);
            o += (size_t)n;
            i += (size_t)n;
        }
    }
    out[o] = 0;
    /* cut at a character boundary */
    if (o >= cap) {
        o = cap - 1;
        while (o > 0 && ((unsigned char)out[o] & 0xc0) == 0x80)
            o--;
        out[o] = 0;
    }
    memcpy(s, out, o + 1);
}

bool lmp_utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (p[i] == 0)
            return false;
        size_t need = p[i] < 0x80 ? 1 : (p[i] & 0xe0) == 0xc0 ? 2 : (p[i] & 0xf0) == 0xe0 ? 3 : 4;
        if (i + need > n)
            return false;
        unsigned char b[5] = {0};
        memcpy(b, p + i, need);
        if (utf8_len(b) != (int)need)
            return false;
        i += need;
    }
    return true;
}

int lmp_err(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_errmsg, sizeof g_errmsg, fmt, ap);
    va_end(ap);
    sanitize(g_errmsg, sizeof g_errmsg);
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
    sanitize(g_errmsg, sizeof g_errmsg);
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
    sanitize(line, sizeof line);
    fprintf(stderr, "%s\n", line);
}
