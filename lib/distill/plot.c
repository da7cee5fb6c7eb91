/*
 * The comparison report's plots (issue 18 item 5): bits per weight against perplexity
 * and against KLD, each written as SVG (text, hand-written) and PNG (cairo), both drawn by
 * one layout routine through a two-backend canvas, so the two files show the same thing.
 *   - error bars: +/- one standard error (perplexity, KLD);
 *   - one colour and legend entry per method family (base, GGUF, GPTQ, AWQ, RTN, pruned,
 *     other), the family read from the variant's name;
 *   - labels placed greedily where they overlap no other label, point or the legend;
 *   - KLD on a log scale (the base, KLD 0, is left out and the caption says so);
 *   - perplexity: the band base +/- 2 standard errors is shaded, and a variant below
 *     the base inside that band is labelled "within error".
 */
#include "distill_internal.h"

#include <cairo/cairo.h>
#include <fontconfig/fontconfig.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- canvas ---------- */

typedef struct {
    FILE *svg;       /* one of the two backends */
    cairo_t *cr;
} canvas;

typedef struct {
    double r, g, b;
} rgb;

static void svg_esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '&')
            fputs("&amp;", f);
        else if (*s == '<')
            fputs("&lt;", f);
        else if (*s == '>')
            fputs("&gt;", f);
        else if (*s == '"')
            fputs("&quot;", f);
        else
            fputc(*s, f);
    }
}

static void hex(const rgb c, char *buf)
{
    snprintf(buf, 8, "#%02x%02x%02x", (int)(c.r * 255 + 0.5), (int)(c.g * 255 + 0.5), (int)(c.b * 255 + 0.5));
}

static void cv_line(canvas *cv, double x1, double y1, double x2, double y2, rgb c, double w, bool dash)
{
    if (cv->svg) {
        char h[8];
        hex(c, h);
        fprintf(cv->svg, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%.1f\"%s/>\n",
                x1, y1, x2, y2, h, w, dash ? " stroke-dasharray=\"4,3\"" : "");
        return;
    }
    cairo_set_source_rgb(cv->cr, c.r, c.g, c.b);
    cairo_set_line_width(cv->cr, w);
    double d[] = {4, 3};
    cairo_set_dash(cv->cr, d, dash ? 2 : 0, 0);
    cairo_new_path(cv->cr);
    cairo_move_to(cv->cr, x1, y1);
    cairo_line_to(cv->cr, x2, y2);
    cairo_stroke(cv->cr);
    cairo_set_dash(cv->cr, d, 0, 0);
}

static void cv_rect(canvas *cv, double x, double y, double w, double h, rgb fill, double alpha, bool stroke)
{
    if (cv->svg) {
        char f[8];
        hex(fill, f);
        fprintf(cv->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" fill-opacity=\"%.2f\"%s/>\n",
                x, y, w, h, f, alpha, stroke ? " stroke=\"#888888\" stroke-width=\"0.8\"" : "");
        return;
    }
    cairo_new_path(cv->cr);
    cairo_rectangle(cv->cr, x, y, w, h);
    cairo_set_source_rgba(cv->cr, fill.r, fill.g, fill.b, alpha);
    if (stroke) {
        cairo_fill_preserve(cv->cr);
        cairo_set_source_rgb(cv->cr, 0.53, 0.53, 0.53);
        cairo_set_line_width(cv->cr, 0.8);
        cairo_stroke(cv->cr);
    } else {
        cairo_fill(cv->cr);
    }
}

static void cv_marker(canvas *cv, double x, double y, double r, rgb c, bool square)
{
    if (cv->svg) {
        char h[8];
        hex(c, h);
        if (square)
            fprintf(cv->svg, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#000000\" "
                             "stroke-width=\"0.8\"/>\n", x - r, y - r, 2 * r, 2 * r, h);
        else
            fprintf(cv->svg, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" stroke=\"#000000\" "
                             "stroke-width=\"0.8\"/>\n", x, y, r, h);
        return;
    }
    cairo_new_path(cv->cr);
    if (square)
        cairo_rectangle(cv->cr, x - r, y - r, 2 * r, 2 * r);
    else
        cairo_arc(cv->cr, x, y, r, 0, 2 * M_PI);
    cairo_set_source_rgb(cv->cr, c.r, c.g, c.b);
    cairo_fill_preserve(cv->cr);
    cairo_set_source_rgb(cv->cr, 0, 0, 0);
    cairo_set_line_width(cv->cr, 0.8);
    cairo_stroke(cv->cr);
}

/* anchor: 0 start, 1 middle, 2 end; rot: text along the y axis */
static void cv_text(canvas *cv, double x, double y, const char *s, double size, int anchor, rgb c, bool bold, bool rot)
{
    if (cv->svg) {
        char h[8];
        hex(c, h);
        static const char *an[] = {"start", "middle", "end"};
        fprintf(cv->svg, "<text x=\"%.1f\" y=\"%.1f\" font-family=\"sans-serif\" font-size=\"%.0f\" fill=\"%s\" "
                         "text-anchor=\"%s\"%s",
                x, y, size, h, an[anchor], bold ? " font-weight=\"bold\"" : "");
        if (rot)
            fprintf(cv->svg, " transform=\"rotate(-90 %.1f %.1f)\"", x, y);
        fputc('>', cv->svg);
        svg_esc(cv->svg, s);
        fputs("</text>\n", cv->svg);
        return;
    }
    cairo_select_font_face(cv->cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL,
                           bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cv->cr, size);
    cairo_text_extents_t e;
    cairo_text_extents(cv->cr, s, &e);
    double dx = anchor == 0 ? 0 : anchor == 1 ? -e.x_advance / 2 : -e.x_advance;
    cairo_save(cv->cr);
    cairo_translate(cv->cr, x, y);
    if (rot)
        cairo_rotate(cv->cr, -M_PI / 2);
    cairo_move_to(cv->cr, dx, 0);
    cairo_set_source_rgb(cv->cr, c.r, c.g, c.b);
    cairo_show_text(cv->cr, s);
    cairo_restore(cv->cr);
}

/* A width estimate both backends respect (sans-serif averages ~0.56 em; digits 0.56). */
static double text_w(const char *s, double size)
{
    return 0.58 * size * (double)strlen(s);
}

/* ---------------------------------------------------------------- families -------- */

enum { FAM_BASE, FAM_GGUF, FAM_GPTQ, FAM_AWQ, FAM_RTN, FAM_PRUNED, FAM_OTHER, FAM_COUNT };
static const char *const g_fam_name[FAM_COUNT] = {"base", "GGUF", "GPTQ", "AWQ", "RTN", "pruned", "other"};
static const rgb g_fam_col[FAM_COUNT] = {
    {0.10, 0.10, 0.10}, {0.12, 0.47, 0.71}, {0.84, 0.15, 0.16}, {0.17, 0.63, 0.17},
    {1.00, 0.50, 0.05}, {0.58, 0.40, 0.74}, {0.55, 0.34, 0.29},
};

static bool has_ci(const char *s, const char *w)
{
    return strcasestr(s, w) != NULL;
}

static int family_of(const lmp_compare_row *r, int i)
{
    if (i == 0)
        return FAM_BASE;
    const char *n = r->name;
    if (has_ci(n, "wanda") || has_ci(n, "sparsegpt") || has_ci(n, "magnitude") || has_ci(n, "prune") ||
        has_ci(n, "2of4") || has_ci(n, "2-4") || has_ci(n, "sparse"))
        return FAM_PRUNED;
    if (has_ci(n, "gptq"))
        return FAM_GPTQ;
    if (has_ci(n, "awq"))
        return FAM_AWQ;
    if (has_ci(n, "rtn"))
        return FAM_RTN;
    if (lmp_str_endswith_ci(n, ".gguf"))
        return FAM_GGUF;
    return FAM_OTHER;
}

/* ---------------------------------------------------------------- axes ------------ */

static double nice_step(double span, int want)
{
    double raw = span / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void fmt_tick(double v, double step, char *buf, size_t n)
{
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6)
        dec = 6;
    snprintf(buf, n, "%.*f", dec, v);
}

typedef struct {
    double x0, y0, w, h;       /* plot area in pixels */
    double xlo, xhi, ylo, yhi; /* data range (log10 values when ylog) */
    bool ylog;
} frame;

static double fx(const frame *f, double x)
{
    return f->x0 + (x - f->xlo) / (f->xhi - f->xlo) * f->w;
}

static double fy(const frame *f, double y)
{
    double v = f->ylog ? log10(y) : y;
    return f->y0 + f->h - (v - f->ylo) / (f->yhi - f->ylo) * f->h;
}

typedef struct {
    double x0, y0, x1, y1;
} box;

static bool overlaps(box a, box b)
{
    return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

/* ---------------------------------------------------------------- the chart ------- */

#define PW 860
#define PH 560

typedef struct {
    const char *title, *xlabel, *ylabel, *caption;
    const double *x, *y, *err; /* err: one standard error, or NULL */
    const lmp_compare_row *rows;
    int n;
    bool ylog;
    bool skip_base;            /* the KLD chart: the base is 0 */
    double band_lo, band_hi;   /* shaded y band (NaN: none) */
    const char *band_label;
    const bool *within;        /* per point: "within error" */
} chart;

static void draw(canvas *cv, const chart *c)
{
    const rgb black = {0, 0, 0}, grey = {0.45, 0.45, 0.45}, light = {0.88, 0.88, 0.88}, white = {1, 1, 1};
    cv_rect(cv, 0, 0, PW, PH, white, 1, false);
    frame f = {.x0 = 80, .y0 = 50, .w = PW - 80 - 190, .h = PH - 50 - 90, .ylog = c->ylog};
    /* data range with error bars */
    double xl = INFINITY, xh = -INFINITY, yl = INFINITY, yh = -INFINITY;
    int shown = 0;
    for (int i = 0; i < c->n; i++) {
        if ((c->skip_base && i == 0) || !isfinite(c->x[i]) || !isfinite(c->y[i]) || (c->ylog && !(c->y[i] > 0)))
            continue;
        shown++;
        double e = c->err && isfinite(c->err[i]) ? c->err[i] : 0;
        double lo = c->y[i] - e, hi = c->y[i] + e;
        if (c->ylog && !(lo > 0))
            lo = c->y[i] / 2;
        xl = fmin(xl, c->x[i]);
        xh = fmax(xh, c->x[i]);
        yl = fmin(yl, c->ylog ? log10(lo) : lo);
        yh = fmax(yh, c->ylog ? log10(hi) : hi);
    }
    if (isfinite(c->band_lo) && !c->ylog) {
        yl = fmin(yl, c->band_lo);
        yh = fmax(yh, c->band_hi);
    }
    if (!shown) {
        xl = 0;
        xh = 1;
        yl = 0;
        yh = 1;
    }
    if (xh - xl < 1e-9) {
        xl -= 0.5;
        xh += 0.5;
    }
    if (yh - yl < 1e-12) {
        yl -= c->ylog ? 0.5 : fabs(yl) * 0.05 + 1e-6;
        yh += c->ylog ? 0.5 : fabs(yh) * 0.05 + 1e-6;
    }
    double xs = nice_step(xh - xl, 6), ys = c->ylog ? 1 : nice_step(yh - yl, 6);
    f.xlo = floor(xl / xs) * xs;
    f.xhi = ceil(xh / xs) * xs;
    if (f.xhi - (xh) < xs * 0.2)
        f.xhi += xs; /* room for labels on the right */
    f.ylo = c->ylog ? floor(yl) : floor(yl / ys) * ys;
    f.yhi = c->ylog ? ceil(yh) : ceil(yh / ys) * ys;
    if (f.yhi - f.ylo < 1e-12)
        f.yhi = f.ylo + ys;
    /* grid, ticks */
    char buf[64];
    for (double v = f.xlo; v <= f.xhi + xs * 1e-6; v += xs) {
        double px = fx(&f, v);
        cv_line(cv, px, f.y0, px, f.y0 + f.h, light, 1, false);
        fmt_tick(v, xs, buf, sizeof buf);
        cv_text(cv, px, f.y0 + f.h + 18, buf, 12, 1, black, false, false);
    }
    for (double v = f.ylo; v <= f.yhi + ys * 1e-6; v += ys) {
        double py = f.y0 + f.h - (v - f.ylo) / (f.yhi - f.ylo) * f.h;
        cv_line(cv, f.x0, py, f.x0 + f.w, py, light, 1, false);
        if (c->ylog)
            snprintf(buf, sizeof buf, "%g", pow(10, v));
        else
            fmt_tick(v, ys, buf, sizeof buf);
        cv_text(cv, f.x0 - 8, py + 4, buf, 12, 2, black, false, false);
    }
    cv_line(cv, f.x0, f.y0 + f.h, f.x0 + f.w, f.y0 + f.h, black, 1.2, false);
    cv_line(cv, f.x0, f.y0, f.x0, f.y0 + f.h, black, 1.2, false);
    cv_text(cv, f.x0 + f.w / 2, 28, c->title, 15, 1, black, true, false);
    cv_text(cv, f.x0 + f.w / 2, f.y0 + f.h + 42, c->xlabel, 13, 1, black, false, false);
    cv_text(cv, 22, f.y0 + f.h / 2, c->ylabel, 13, 1, black, false, true);
    if (c->caption)
        cv_text(cv, 20, PH - 14, c->caption, 11, 0, grey, false, false);
    /* the base's band */
    if (isfinite(c->band_lo) && !c->ylog) {
        double a = fy(&f, c->band_hi), b = fy(&f, c->band_lo);
        cv_rect(cv, f.x0, a, f.w, b - a, g_fam_col[FAM_BASE], 0.10, false);
        cv_line(cv, f.x0, fy(&f, (c->band_lo + c->band_hi) / 2), f.x0 + f.w, fy(&f, (c->band_lo + c->band_hi) / 2),
                grey, 1, true);
    }
    /* points and error bars; their boxes keep labels off them */
    enum { MAXBOX = 1024 };
    box taken[MAXBOX];
    int nt = 0;
    bool fam_used[FAM_COUNT] = {0};
    /* the legend box (right margin) */
    double lx = f.x0 + f.w + 20, ly = f.y0 + 10;
    for (int i = 0; i < c->n; i++) {
        if ((c->skip_base && i == 0) || !isfinite(c->x[i]) || !isfinite(c->y[i]) || (c->ylog && !(c->y[i] > 0)))
            continue;
        int fam = family_of(&c->rows[i], i);
        fam_used[fam] = true;
        double px = fx(&f, c->x[i]), py = fy(&f, c->y[i]);
        if (c->err && isfinite(c->err[i]) && c->err[i] > 0) {
            double lo = c->y[i] - c->err[i], hi = c->y[i] + c->err[i];
            if (c->ylog && !(lo > 0))
                lo = pow(10, f.ylo);
            double a = fy(&f, hi), b = fy(&f, lo);
            cv_line(cv, px, a, px, b, g_fam_col[fam], 1.4, false);
            cv_line(cv, px - 4, a, px + 4, a, g_fam_col[fam], 1.4, false);
            cv_line(cv, px - 4, b, px + 4, b, g_fam_col[fam], 1.4, false);
            if (nt < MAXBOX)
                taken[nt++] = (box){px - 4, a - 1, px + 4, b + 1};
        }
        cv_marker(cv, px, py, 5, g_fam_col[fam], fam == FAM_BASE);
        if (nt < MAXBOX)
            taken[nt++] = (box){px - 6, py - 6, px + 6, py + 6};
    }
    {
        int nl0 = 0;
        for (int q = 0; q < FAM_COUNT; q++)
            nl0 += fam_used[q];
        if (nt < MAXBOX) /* the legend */
            taken[nt++] = (box){lx - 8, ly - 8, lx + 160, ly + 22.0 * (nl0 + 1) + 2};
    }
    /* labels: the first free spot of eight around the point, else the least crowded */
    for (int i = 0; i < c->n; i++) {
        if ((c->skip_base && i == 0) || !isfinite(c->x[i]) || !isfinite(c->y[i]) || (c->ylog && !(c->y[i] > 0)))
            continue;
        char lab[192];
        snprintf(lab, sizeof lab, "%s%s%s", c->rows[i].name, i == 0 ? " (base)" : "",
                 c->within && c->within[i] ? " (within error)" : "");
        double px = fx(&f, c->x[i]), py = fy(&f, c->y[i]), tw = text_w(lab, 11), th = 11;
        /* rings of candidate spots, nearest first: right, left, above, below, diagonals */
        double best_x = px + 9, best_y = py + 4;
        int best_hits = 1 << 30;
        for (int ring = 0; ring < 7 && best_hits; ring++) {
            double r = 14.0 * ring;
            const double cand[][2] = {{9 + r, 4},       {-9 - r - tw, 4},  {-tw / 2, -9 - r},     {-tw / 2, 17 + r},
                                      {9 + r, -9 - r},  {9 + r, 17 + r},   {-9 - r - tw, -9 - r}, {-9 - r - tw, 17 + r}};
            for (int k = 0; k < 8; k++) {
                box b = {px + cand[k][0], py + cand[k][1] - th, px + cand[k][0] + tw, py + cand[k][1] + 3};
                int hits = 0;
                if (b.x0 < f.x0 + 2 || b.x1 > f.x0 + f.w + 10 || b.y0 < f.y0 - 12 || b.y1 > f.y0 + f.h - 2)
                    hits += 1000;
                for (int q = 0; q < nt; q++)
                    hits += overlaps(b, taken[q]);
                if (hits < best_hits) {
                    best_hits = hits;
                    best_x = b.x0;
                    best_y = py + cand[k][1];
                }
                if (!hits)
                    break;
            }
        }
        if (nt < MAXBOX)
            taken[nt++] = (box){best_x, best_y - th, best_x + tw, best_y + 3};
        /* a leader line when the label had to move away from its point */
        double cx = best_x < px ? best_x + tw : best_x, cy = best_y - 4;
        if (fabs(cx - px) > 14 || fabs(cy - py) > 14)
            cv_line(cv, px, py, cx, cy, grey, 0.6, false);
        cv_text(cv, best_x, best_y, lab, 11, 0, black, false, false);
    }
    /* legend */
    int nl = 0;
    for (int q = 0; q < FAM_COUNT; q++)
        nl += fam_used[q];
    int extra = isfinite(c->band_lo) && !c->ylog ? 1 : 0;
    cv_rect(cv, lx - 8, ly - 8, 168, 22.0 * (nl + extra) + 10, white, 1, true);
    double yy = ly + 8;
    for (int q = 0; q < FAM_COUNT; q++) {
        if (!fam_used[q])
            continue;
        cv_marker(cv, lx + 6, yy - 4, 5, g_fam_col[q], q == FAM_BASE);
        cv_text(cv, lx + 18, yy, g_fam_name[q], 12, 0, black, false, false);
        yy += 22;
    }
    if (extra) {
        cv_rect(cv, lx, yy - 10, 12, 10, g_fam_col[FAM_BASE], 0.15, false);
        cv_text(cv, lx + 18, yy, c->band_label, 11, 0, black, false, false);
    }
}

/* cairo and fontconfig keep font caches for the process; released at exit so that leak
 * checkers see nothing (registered once, on the first PNG). */
static void release_font_caches(void)
{
    cairo_debug_reset_static_data();
    FcFini();
}

static int write_chart(const char *dir, const char *stem, const chart *c)
{
    static bool registered;
    if (!registered) {
        registered = true;
        atexit(release_font_caches);
    }
    char *svg = NULL, *png = NULL;
    {
        char b[128];
        snprintf(b, sizeof b, "%s.svg", stem);
        svg = lmp_path_join(dir, b);
        snprintf(b, sizeof b, "%s.png", stem);
        png = lmp_path_join(dir, b);
    }
    int rc = LMP_OK;
    if (!svg || !png) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    FILE *f = fopen(svg, "w");
    if (!f) {
        rc = lmp_err(LMP_EIO, "%s: cannot write", svg);
        goto done;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
               "width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", PW, PH, PW, PH);
    canvas cv = {.svg = f};
    draw(&cv, c);
    fputs("</svg>\n", f);
    if (fclose(f) != 0) {
        rc = lmp_err(LMP_EIO, "%s: write failed", svg);
        goto done;
    }
    cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, PW, PH);
    cairo_t *cr = cairo_create(s);
    canvas cc = {.cr = cr};
    draw(&cc, c);
    cairo_destroy(cr);
    cairo_surface_flush(s);
    cairo_status_t st = cairo_surface_write_to_png(s, png);
    cairo_surface_destroy(s);
    if (st != CAIRO_STATUS_SUCCESS)
        rc = lmp_err(LMP_EIO, "%s: cannot write the PNG (%s)", png, cairo_status_to_string(st));
done:
    free(svg);
    free(png);
    return rc;
}

int lmp_compare_plots(const char *dir, const lmp_compare_row *rows, int n, const lmp_compare_params *p, int ctx)
{
    double *v = malloc(sizeof(double) * (size_t)n * 5);
    bool *within = calloc((size_t)n, sizeof(bool));
    if (!v || !within) {
        free(v);
        free(within);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    double *x = v, *yp = v + n, *ep = v + 2 * n, *yk = v + 3 * n, *ek = v + 4 * n;
    bool linear = true;
    for (int i = 0; i < n; i++)
        linear &= rows[i].bpw_linear > 0;
    for (int i = 0; i < n; i++) {
        x[i] = linear ? rows[i].bpw_linear : rows[i].bpw;
        yp[i] = rows[i].ppl;
        ep[i] = rows[i].ppl_stderr;
        yk[i] = rows[i].kld;
        ek[i] = rows[i].kld_stderr;
        within[i] = i > 0 && rows[i].ppl < rows[0].ppl &&
                    fabs(rows[i].ppl - rows[0].ppl) <=
                        2 * sqrt(rows[i].ppl_stderr * rows[i].ppl_stderr + rows[0].ppl_stderr * rows[0].ppl_stderr);
    }
    const char *xl = linear ? "bits per weight (linear layers)" : "bits per weight (whole file)";
    char t1[160], cap1[200];
    snprintf(t1, sizeof t1, "Perplexity (%s protocol, ctx %d) against bits per weight", lmp_ppl_protocol_name(p->protocol),
             ctx);
    snprintf(cap1, sizeof cap1, "Error bars: +/- one standard error. Shaded: base +/- 2 standard errors; a variant "
                                "below the base inside it is not better.");
    chart c1 = {.title = t1, .xlabel = xl, .ylabel = "perplexity", .caption = cap1, .x = x, .y = yp, .err = ep,
                .rows = rows, .n = n, .band_lo = rows[0].ppl - 2 * rows[0].ppl_stderr,
                .band_hi = rows[0].ppl + 2 * rows[0].ppl_stderr, .band_label = "base +/- 2 s.e.", .within = within};
    int rc = write_chart(dir, "bpw_ppl", &c1);
    if (!rc) {
        chart c2 = {.title = "KL divergence from the base against bits per weight (log scale)", .xlabel = xl,
                    .ylabel = "mean KLD (nats, log scale)",
                    .caption = "Error bars: +/- one standard error. The base (KLD 0) cannot be shown on a log scale.",
                    .x = x, .y = yk, .err = ek, .rows = rows, .n = n, .ylog = true, .skip_base = true,
                    .band_lo = NAN, .band_hi = NAN};
        rc = write_chart(dir, "bpw_kld", &c2);
    }
    free(v);
    free(within);
    return rc;
}
