/*
 * The printers' shared helpers (jobs/report.h).
 */
#include "jobs/report.h"

#include <stdio.h>

void lmp_report_json_str(const char *s)
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

const char *lmp_report_bytes(double n, char *buf, int len)
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

void lmp_report_eta(const void *t0, int layer, int n_layers, char *buf, size_t n)
{
    if (!t0) {
        buf[0] = 0;
        return;
    }
    double el = lmp_time_s() - *(const double *)t0;
    double eta = el / (layer + 1) * (n_layers - layer - 1);
    snprintf(buf, n, "; elapsed %.1fs, ETA %.1fs", el, eta);
}
