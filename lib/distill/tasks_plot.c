/*
 * compare's task plot (distill.h lmp_svg_tasks): accuracy of each variant on each task,
 * one series per task with standard-error bars and the task's chance level, written with
 * report.c's SVG helpers (distill_internal.h).
 */
#include "distill.h"
#include "distill_internal.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int lmp_svg_tasks(const char *path, const char *title, const char *const *variants, int nv,
                  const char *const *tasks, int nt, const double *acc, const double *err,
                  const double *chance, bool force)
{
    static const char *colors[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};
    const double L = 70, R = 170, T = 50, B = 110, colw = nv > 8 ? 60 : 90;
    const double W = L + R + colw * (nv > 0 ? nv : 1), H = 440;
    double lo = 1, hi = 0;
    for (int t = 0; t < nt; t++) {
        for (int v = 0; v < nv; v++) {
            double a = acc[t * nv + v], e = isfinite(err[t * nv + v]) ? err[t * nv + v] : 0;
            if (!isfinite(a))
                continue;
            lo = fmin(lo, a - e);
            hi = fmax(hi, a + e);
        }
        if (chance && isfinite(chance[t])) {
            lo = fmin(lo, chance[t]);
            hi = fmax(hi, chance[t]);
        }
    }
    if (!(hi > lo)) {
        lo = 0;
        hi = 1;
    }
    /* axis in steps of 5 or 10 percentage points */
    double step = hi - lo > 0.4 ? 0.1 : hi - lo > 0.1 ? 0.05 : 0.02;
    lo = fmax(0, floor((lo - 0.01) / step) * step);
    hi = fmin(1, ceil((hi + 0.01) / step) * step);
    if (hi <= lo)
        hi = lo + step;
    svgw w = {0};
    char e1[512];
    int rc = lmp_outfile_open(&w.o, path, force);
    if (rc)
        return rc;
#define PY(v) (H - B - ((v) - lo) / (hi - lo) * (H - T - B))
    svg_printf(&w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" "
            "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
            "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
        W, H, W, H);
    svg_printf(&w, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"15\">%s</text>\n", W / 2,
        xml_esc(title, e1, sizeof e1));
    for (double v = lo; v <= hi + step * 1e-6; v += step)
        svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
                "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n",
            L, PY(v), W - R, PY(v), L - 6, PY(v) + 4, 100 * v);
    svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
            "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
        L, H - B, W - R, H - B, L, T, L, H - B);
    svg_printf(&w, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">accuracy "
            "(&#177; 1 standard error)</text>\n",
        (T + H - B) / 2, (T + H - B) / 2);
    for (int v = 0; v < nv; v++) {
        double x = L + colw * (v + 0.5);
        svg_printf(&w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\" transform=\"rotate(-35 %.1f %.1f)\">%s</text>\n", x,
            H - B + 16, x, H - B + 16, xml_esc(variants[v], e1, sizeof e1));
    }
    for (int t = 0; t < nt; t++) {
        const char *c = colors[t % 10];
        double dx = nt > 1 ? (colw * 0.6) * ((double)t / (nt - 1) - 0.5) : 0;
        if (chance && isfinite(chance[t]))
            svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-dasharray=\"5,4\" "
                    "stroke-width=\"1\"/>\n",
                L, PY(chance[t]), W - R, PY(chance[t]), c);
        double px = NAN, py = NAN;
        for (int v = 0; v < nv; v++) {
            double a = acc[t * nv + v], e = err[t * nv + v], x = L + colw * (v + 0.5) + dx;
            if (!isfinite(a))
                continue;
            if (isfinite(px))
                svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-opacity=\"0.4\"/>\n",
                    px, py, x, PY(a), c);
            if (isfinite(e) && e > 0)
                svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"/>\n", x,
                    PY(fmin(hi, a + e)), x, PY(fmax(lo, a - e)), c);
            svg_printf(&w, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/>\n", x, PY(a), c);
            px = x;
            py = PY(a);
        }
        double ly = T + 10 + 18 * t;
        svg_printf(&w, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"4\" fill=\"%s\"/><text x=\"%.1f\" y=\"%.1f\">%s</text>\n",
            W - R + 14, ly, c, W - R + 24, ly + 4, xml_esc(tasks[t], e1, sizeof e1));
    }
    svg_printf(&w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" fill=\"#555\">dashed: chance</text>\n", W - R + 14,
        T + 10 + 18 * nt + 4);
#undef PY
    svg_printf(&w, "</svg>\n");
    if (w.rc) {
        lmp_outfile_abort(&w.o);
        return w.rc;
    }
    return lmp_outfile_commit(&w.o);
}
