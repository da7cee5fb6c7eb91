/*
 * lmpress compare: perplexity, KL divergence against the base, size on disk, bits per
 * weight and speed of model variants, written as report.md, report.json and two SVG
 * scatter plots (bits per weight against perplexity and against KLD) drawn by the small
 * SVG writer below. Not here: the statistics themselves (eval.c, lib/infer/ppl.c).
 */
#include "distill_internal.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------------------------------------------------------- SVG ------------- */

typedef struct {
    lmp_outfile o;
    int rc;
} svgw;

static void svg_printf(svgw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void svg_printf(svgw *w, const char *fmt, ...)
{
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof buf)
        n = sizeof buf - 1;
    if (!w->rc)
        w->rc = lmp_outfile_write(&w->o, buf, (size_t)n);
}

/* XML-escaped copy of s (at most n-1 bytes). */
static const char *xml_esc(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    for (; *s && k + 7 < n; s++) {
        const char *e = *s == '&' ? "&amp;" : *s == '<' ? "&lt;" : *s == '>' ? "&gt;" : *s == '"' ? "&quot;" : NULL;
        if (e) {
            memcpy(buf + k, e, strlen(e));
            k += strlen(e);
        } else {
            buf[k++] = *s;
        }
    }
    buf[k] = 0;
    return buf;
}

/* Tick step 1, 2 or 5 x 10^n giving about `want` intervals over [lo, hi]. */
static double nice_step(double lo, double hi, int want)
{
    double raw = (hi - lo) / want;
    if (!(raw > 0))
        return 1;
    double p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void axis_range(const double *v, int n, double *lo, double *hi, double *step)
{
    double a = INFINITY, b = -INFINITY;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i])) {
            a = v[i] < a ? v[i] : a;
            b = v[i] > b ? v[i] : b;
        }
    if (!isfinite(a)) {
        a = 0;
        b = 1;
    }
    if (b - a < 1e-12 * (fabs(a) + 1e-30) || b == a) {
        double d = fabs(a) > 0 ? fabs(a) * 0.1 : 1;
        a -= d;
        b += d;
    }
    double pad = (b - a) * 0.08;
    a -= pad;
    b += pad;
    *step = nice_step(a, b, 5);
    *lo = floor(a / *step) * *step;
    *hi = ceil(b / *step) * *step;
}

static void tick_label(double v, double step, char *buf, size_t n)
{
    if (fabs(v) < step * 1e-9)
        v = 0;
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 8 || fabs(v) >= 1e6)
        snprintf(buf, n, "%.3g", v);
    else
        snprintf(buf, n, "%.*f", dec, v);
}

int lmp_svg_scatter(const char *path, const char *title, const char *xlabel, const char *ylabel,
                    const double *x, const double *y, const char *const *labels, int n, bool force)
{
    const double W = 720, H = 480, L = 80, R = 40, T = 50, B = 70;
    double x0, x1, xs, y0, y1, ys;
    svgw w = {0};
    char e1[512];
    int rc = lmp_outfile_open(&w.o, path, force);
    if (rc)
        return rc;
    axis_range(x, n, &x0, &x1, &xs);
    axis_range(y, n, &y0, &y1, &ys);
#define PX(v) (L + ((v) - x0) / (x1 - x0) * (W - L - R))
#define PY(v) (H - B - ((v) - y0) / (y1 - y0) * (H - T - B))
    svg_printf(&w, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                   "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
                   "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n",
               W, H, W, H);
    svg_printf(&w, "<text x=\"%.1f\" y=\"28\" text-anchor=\"middle\" font-size=\"16\">%s</text>\n", W / 2,
               xml_esc(title, e1, sizeof e1));
    /* grid, ticks and tick labels */
    for (double v = x0; v <= x1 + xs * 1e-6; v += xs) {
        char t[64];
        tick_label(v, xs, t, sizeof t);
        svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n",
                   PX(v), T, PX(v), H - B, PX(v), H - B, PX(v), H - B + 5, PX(v), H - B + 20, t);
    }
    for (double v = y0; v <= y1 + ys * 1e-6; v += ys) {
        char t[64];
        tick_label(v, ys, t, sizeof t);
        svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e0e0e0\"/>\n"
                       "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
                       "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"end\">%s</text>\n",
                   L, PY(v), W - R, PY(v), L - 5, PY(v), L, PY(v), L - 8, PY(v) + 4, t);
    }
    /* axes and titles */
    svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n"
                   "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"black\"/>\n",
               L, H - B, W - R, H - B, L, T, L, H - B);
    svg_printf(&w, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">%s</text>\n", (L + W - R) / 2, H - 25,
               xml_esc(xlabel, e1, sizeof e1));
    svg_printf(&w, "<text x=\"20\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 20 %.1f)\">%s</text>\n",
               (T + H - B) / 2, (T + H - B) / 2, xml_esc(ylabel, e1, sizeof e1));
    /* points, then labels placed greedily where they overlap no earlier label or point
     * (estimated 6.2 px per character at font-size 11), with a leader line when a label
     * had to move away from its point */
    enum { MAXL = 256 };
    double bx0[MAXL + MAXL], by0[MAXL + MAXL], bx1[MAXL + MAXL], by1[MAXL + MAXL];
    int nb = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        svg_printf(&w, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"#1f77b4\" stroke=\"black\"/>\n", PX(x[i]),
                   PY(y[i]));
        if (nb < MAXL) {
            bx0[nb] = PX(x[i]) - 5;
            bx1[nb] = PX(x[i]) + 5;
            by0[nb] = PY(y[i]) - 5;
            by1[nb] = PY(y[i]) + 5;
            nb++;
        }
    }
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]))
            continue;
        double px = PX(x[i]), py = PY(y[i]), tw = 6.2 * (double)strlen(labels[i]), th = 12;
        double best_x = px + 8, best_y = py - 8, best_cost = INFINITY;
        for (int k = 0; k < 24 && best_cost > 0; k++) {
            int ring = k / 4, side = k % 4;
            double dy = (side & 1 ? 16 + 14 * ring : -8 - 14 * ring);
            double lx = side & 2 ? px - 8 - tw : px + 8, ly = py + dy; /* ly = text baseline */
            double x0 = lx, x1 = lx + tw, y0 = ly - th + 2, y1 = ly + 2, cost = 0;
            if (x0 < 2 || x1 > W - 2 || y0 < T || y1 > H - B)
                cost += 1e6;
            for (int b = 0; b < nb; b++) {
                double ox = fmin(x1, bx1[b]) - fmax(x0, bx0[b]), oy = fmin(y1, by1[b]) - fmax(y0, by0[b]);
                if (ox > 0 && oy > 0)
                    cost += ox * oy;
            }
            cost += k * 1e-3; /* prefer the nearest position among equals */
            if (cost < best_cost - 1e-9 || k == 0) {
                best_cost = cost;
                best_x = lx;
                best_y = ly;
            }
            if (cost < 1)
                break;
        }
        if (nb < MAXL + MAXL) {
            bx0[nb] = best_x;
            bx1[nb] = best_x + tw;
            by0[nb] = best_y - th + 2;
            by1[nb] = best_y + 2;
            nb++;
        }
        if (fabs(best_y - (py - 8)) > 20)
            svg_printf(&w, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#999\" stroke-width=\"0.7\"/>\n",
                       px, py, best_x < px ? best_x + tw : best_x, best_y - 4);
        svg_printf(&w, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\">%s</text>\n", best_x, best_y,
                   xml_esc(labels[i], e1, sizeof e1));
    }
#undef PX
#undef PY
    svg_printf(&w, "</svg>\n");
    if (w.rc) {
        lmp_outfile_abort(&w.o);
        return w.rc;
    }
    return lmp_outfile_commit(&w.o);
}

/* ---------------------------------------------------------------- compare --------- */

lmp_compare_params lmp_compare_default_params(void)
{
    lmp_compare_params p;
    memset(&p, 0, sizeof p);
    p.protocol = LMP_PPL_GPTQ;
    return p;
}

static uint64_t file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
}

/* Bytes of the weights on disk as the user gave them: the file, or a folder's
 * *.safetensors (a quantized or sparse folder may be loaded through a temporary copy, so
 * the path given is measured, not the checkpoint the engine opened). */
static uint64_t weights_size(const char *path)
{
    if (!lmp_path_is_dir(path))
        return file_size(path);
    uint64_t s = 0;
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (lmp_str_endswith(de->d_name, ".safetensors")) {
            char *p = lmp_path_join(path, de->d_name);
            s += file_size(p);
            free(p);
        }
    if (d)
        closedir(d);
    return s;
}

static void row_basics(lmp_compare_row *r, const char *path, const lmp_model *m)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    const char *b = strrchr(path, '/');
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    snprintf(r->path, sizeof r->path, "%.*s", (int)n, path);
    b = NULL;
    for (size_t i = 0; i < n; i++)
        if (r->path[i] == '/')
            b = r->path + i;
    snprintf(r->name, sizeof r->name, "%.127s", b ? b + 1 : r->path);
    r->size_bytes = weights_size(r->path);
    /* parameters of the model the config describes (packed quantized tensors and sparse
     * encodings would miscount); tied embeddings counted once */
    r->n_params = lmp_config_n_params(lmp_model_config(m));
    if (r->n_params <= 0)
        for (int i = 0; i < c->n_tensors; i++)
            r->n_params += lmp_tensor_nelem(&c->tensors[i]);
    r->bpw = r->n_params ? 8.0 * (double)r->size_bytes / (double)r->n_params : 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}

/* JSON number or null */
static void json_num(FILE *f, double v)
{
    if (isfinite(v))
        fprintf(f, "%.9g", v);
    else
        fputs("null", f);
}

/* The figure compare reports for a task: acc_norm under llama.cpp's protocol (what
 * llama-perplexity prints), acc under lm-eval's and for completion tasks. */
static void task_primary(const lmp_task_result *t, lmp_task_protocol pr, double *v, double *se)
{
    bool norm = pr == LMP_TASK_LLAMACPP && t->kind != LMP_TASK_COMPLETION;
    *v = norm ? t->acc_norm : t->acc;
    *se = norm ? t->acc_norm_stderr : t->acc_stderr;
}

static void write_task_table(FILE *f, const lmp_compare_row *rows, int n, const lmp_compare_params *p)
{
    int nt = p->n_tasks < LMP_COMPARE_MAX_TASKS ? p->n_tasks : LMP_COMPARE_MAX_TASKS;
    fprintf(f, "\n## Tasks\n\n%s protocol; %s. Each cell: accuracy ± standard error "
               "(sqrt(p(1-p)/(n-1))) and the change against the base in points; `*` marks a change larger "
               "than twice the two standard errors combined (sqrt(se_base² + se²); unpaired, so "
               "conservative). Completion tasks (LAMBADA) add the continuation's perplexity.\n\n| variant |",
            lmp_task_protocol_name(p->task.protocol),
            p->task.protocol == LMP_TASK_LLAMACPP ? "accuracy = acc_norm, llama-perplexity's figure"
                                                  : "accuracy = acc (argmax of the summed log-likelihood)");
    for (int t = 0; t < nt; t++)
        fprintf(f, " %s (n %d) |", p->task_names[t], rows[0].task[t].n);
    fprintf(f, "\n|---|");
    for (int t = 0; t < nt; t++)
        fprintf(f, "---:|");
    fprintf(f, "\n");
    for (int i = 0; i < n; i++) {
        fprintf(f, "| %s%s |", rows[i].name, i == 0 ? " (base)" : "");
        for (int t = 0; t < nt; t++) {
            const lmp_task_result *r = &rows[i].task[t], *b = &rows[0].task[t];
            double v, se, bv, bse;
            task_primary(r, p->task.protocol, &v, &se);
            task_primary(b, p->task.protocol, &bv, &bse);
            fprintf(f, " %.2f%% ± %.2f", 100 * v, 100 * se);
            if (i > 0) {
                double d = v - bv;
                fprintf(f, " (%+.2f%s)", 100 * d, fabs(d) > 2 * sqrt(se * se + bse * bse) ? "*" : "");
            }
            if (r->kind == LMP_TASK_COMPLETION)
                fprintf(f, "; ppl %.4g ± %.3g", r->ppl, r->ppl_stderr);
            fprintf(f, " |");
        }
        fprintf(f, "\n");
    }
    fprintf(f, "\nChance levels:");
    for (int t = 0; t < nt; t++)
        if (isfinite(rows[0].task[t].chance))
            fprintf(f, " %s %.2f%%;", p->task_names[t], 100 * rows[0].task[t].chance);
    fprintf(f, "\n\n![task accuracy](tasks.svg)\n");
}

static void write_task_json(FILE *f, const lmp_compare_row *rows, int i, const lmp_compare_params *p)
{
    int nt = p->n_tasks < LMP_COMPARE_MAX_TASKS ? p->n_tasks : LMP_COMPARE_MAX_TASKS;
    fprintf(f, ", \"tasks\": {");
    for (int t = 0; t < nt; t++) {
        const lmp_task_result *r = &rows[i].task[t], *b = &rows[0].task[t];
        fprintf(f, "%s", t ? ", " : "");
        json_str(f, p->task_names[t]);
        fprintf(f, ": {\"n\": %d", r->n);
        const char *keys[] = {"acc", "acc_stderr", "acc_norm", "acc_norm_stderr", "chance", "ppl", "ppl_stderr",
                              "delta_acc", "delta_acc_norm"};
        double vals[] = {r->acc, r->acc_stderr, r->acc_norm, r->acc_norm_stderr, r->chance, r->ppl, r->ppl_stderr,
                         r->acc - b->acc, r->acc_norm - b->acc_norm};
        for (int k = 0; k < 9; k++) {
            fprintf(f, ", \"%s\": ", keys[k]);
            json_num(f, vals[k]);
        }
        fputc('}', f);
    }
    fputc('}', f);
}

static int write_task_plot(const char *dir, const lmp_compare_row *rows, int n, const lmp_compare_params *p,
                           const char **labels)
{
    int nt = p->n_tasks < LMP_COMPARE_MAX_TASKS ? p->n_tasks : LMP_COMPARE_MAX_TASKS;
    double *a = malloc(sizeof(double) * (size_t)(2 * nt * n + nt));
    if (!a)
        return lmp_err(LMP_ENOMEM, "out of memory");
    double *e = a + nt * n, *ch = e + nt * n;
    for (int t = 0; t < nt; t++) {
        ch[t] = rows[0].task[t].chance;
        for (int i = 0; i < n; i++)
            task_primary(&rows[i].task[t], p->task.protocol, &a[t * n + i], &e[t * n + i]);
    }
    char *path = lmp_path_join(dir, "tasks.svg");
    char title[160];
    snprintf(title, sizeof title, "Task accuracy (%s protocol, %s)", lmp_task_protocol_name(p->task.protocol),
             p->task.protocol == LMP_TASK_LLAMACPP ? "acc_norm" : "acc");
    int rc = lmp_svg_tasks(path, title, labels, n, p->task_names, nt, a, e, ch, true);
    free(path);
    free(a);
    return rc;
}

static int write_reports(const char *dir, const lmp_compare_row *rows, int n, const char *text_path,
                         const lmp_compare_params *p, int ctx, int kld_seqs, bool exact)
{
    char *md = lmp_path_join(dir, "report.md"), *js = lmp_path_join(dir, "report.json");
    FILE *f = fopen(md, "w");
    int rc = LMP_OK;
    if (!f) {
        rc = lmp_err(LMP_EIO, "%s: cannot write", md);
        goto done;
    }
    fprintf(f, "# lmpress compare\n\n");
    fprintf(f, "Base: `%s`. Text: `%s`. Perplexity: %s protocol, ctx %d%s. KLD against the base: "
               "%d sequences of %d tokens (first token of each replaced by BOS), %s.\n\n",
            rows[0].path, text_path, lmp_ppl_protocol_name(p->protocol), ctx,
            p->chunks ? " (first windows only, --chunks)" : "", kld_seqs, ctx,
            exact ? "exact (full log-probs)" : "top-k estimate (a lower bound)");
    fprintf(f, "| variant | size | bits/weight | ppl | KLD | KLD 99%% | same top p | RMS dp | tokens/s |\n"
               "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        const lmp_compare_row *r = &rows[i];
        fprintf(f, "| %s%s | %.2f MiB | %.3f | %.4f ± %.4f | %.6f ± %.6f | %.6f | %.2f%% | %.3f%% | %.0f |\n",
                r->name, i == 0 ? " (base)" : "", (double)r->size_bytes / 1048576.0, r->bpw, r->ppl,
                r->ppl_stderr, r->kld, r->kld_stderr, r->kld_p99, 100 * r->same_top, 100 * r->dp_rms,
                r->tokens_per_s);
    }
    fprintf(f, "\nSize: the weight files on disk; bits/weight = 8 x size / parameters. tokens/s: the "
               "perplexity run (model time).\n\n![bits per weight vs perplexity](bpw_ppl.svg)\n\n"
               "![bits per weight vs KLD](bpw_kld.svg)\n");
    if (p->n_tasks > 0)
        write_task_table(f, rows, n, p);
    if (fclose(f) != 0)
        rc = lmp_err(LMP_EIO, "%s: write failed", md);
    if (rc)
        goto done;
    if (!(f = fopen(js, "w"))) {
        rc = lmp_err(LMP_EIO, "%s: cannot write", js);
        goto done;
    }
    fprintf(f, "{\"lmpress_version\": \"%s\", \"base\": ", LMP_VERSION);
    json_str(f, rows[0].path);
    fprintf(f, ", \"text\": ");
    json_str(f, text_path);
    fprintf(f, ", \"protocol\": \"%s\", \"ctx\": %d, \"chunks\": %d, \"kld_sequences\": %d, \"kld_exact\": %s, "
               "\"variants\": [",
            lmp_ppl_protocol_name(p->protocol), ctx, p->chunks, kld_seqs, exact ? "true" : "false");
    for (int i = 0; i < n; i++) {
        const lmp_compare_row *r = &rows[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        json_str(f, r->name);
        fprintf(f, ", \"path\": ");
        json_str(f, r->path);
        fprintf(f, ", \"base\": %s, \"size_bytes\": %llu, \"params\": %lld, \"bpw\": ", i == 0 ? "true" : "false",
                (unsigned long long)r->size_bytes, (long long)r->n_params);
        json_num(f, r->bpw);
        const char *keys[] = {"ppl", "ppl_stderr", "kld", "kld_stderr", "kld_p99", "same_top", "dp_rms",
                              "tokens_per_s"};
        double vals[] = {r->ppl, r->ppl_stderr, r->kld, r->kld_stderr, r->kld_p99, r->same_top, r->dp_rms,
                         r->tokens_per_s};
        for (int k = 0; k < 8; k++) {
            fprintf(f, ", \"%s\": ", keys[k]);
            json_num(f, vals[k]);
        }
        if (p->n_tasks > 0)
            write_task_json(f, rows, i, p);
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    if (fclose(f) != 0)
        rc = lmp_err(LMP_EIO, "%s: write failed", js);
    if (rc)
        goto done;
    {
        double *x = malloc(sizeof(double) * (size_t)n * 3);
        const char **lab = malloc(sizeof(char *) * (size_t)n);
        if (!x || !lab) {
            free(x);
            free(lab);
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        double *yp = x + n, *yk = x + 2 * n;
        for (int i = 0; i < n; i++) {
            x[i] = rows[i].bpw;
            yp[i] = rows[i].ppl;
            yk[i] = rows[i].kld;
            lab[i] = rows[i].name;
        }
        char *s1 = lmp_path_join(dir, "bpw_ppl.svg"), *s2 = lmp_path_join(dir, "bpw_kld.svg");
        char t1[128], t2[128];
        snprintf(t1, sizeof t1, "Perplexity (%s, ctx %d) against bits per weight",
                 lmp_ppl_protocol_name(p->protocol), ctx);
        snprintf(t2, sizeof t2, "KL divergence from the base against bits per weight");
        rc = lmp_svg_scatter(s1, t1, "bits per weight", "perplexity", x, yp, lab, n, true);
        if (!rc)
            rc = lmp_svg_scatter(s2, t2, "bits per weight", "mean KLD (nats)", x, yk, lab, n, true);
        if (!rc && p->n_tasks > 0)
            rc = write_task_plot(dir, rows, n, p, lab);
        free(s1);
        free(s2);
        free(x);
        free(lab);
    }
done:
    free(md);
    free(js);
    return rc;
}

int lmp_distill_compare(const char *base, const char *const *variants, int n_variants, const char *text,
                        size_t len, const char *text_path, const char *out_dir, const lmp_compare_params *p,
                        lmp_compare_row **rows_out)
{
    const int n = n_variants + 1;
    lmp_compare_row *rows = calloc((size_t)n, sizeof *rows);
    char *tmp = NULL, *logits = NULL;
    lmp_model *m = NULL;
    if (rows_out)
        *rows_out = NULL;
    if (!rows)
        return lmp_err(LMP_ENOMEM, "out of memory");
    int rc = lmp_dir_begin(out_dir, p->force, &tmp);
    if (rc) {
        free(rows);
        return rc;
    }
    logits = lmp_path_join(tmp, "base-logits.h5");
    lmp_ppl_params pp = lmp_ppl_default_params();
    pp.protocol = p->protocol;
    pp.ctx = p->ctx;
    pp.max_chunks = p->chunks;
    int ctx = 0, kld_seqs = 0;
    bool exact = p->top_k == 0;
    for (int i = 0; i < n; i++) {
        const char *path = i == 0 ? base : variants[i - 1];
        lmp_compare_row *r = &rows[i];
        lmp_ppl_result pr;
        if ((rc = (p->load ? p->load : lmp_model_load)(&m, path)))
            goto fail;
        row_basics(r, path, m);
        lmp_info("[%d/%d] %s: perplexity (%s)", i + 1, n, r->name, lmp_ppl_protocol_name(p->protocol));
        if ((rc = lmp_ppl_text(m, text, len, &pp, &pr))) {
            rc = lmp_err_prefix(rc, "%s", path);
            goto fail;
        }
        r->ppl = pr.ppl;
        r->ppl_stderr = pr.ppl_stderr;
        r->tokens_per_s = pr.tokens_per_s;
        if (i == 0) {
            ctx = pr.ctx;
            lmp_distill_params dp = lmp_distill_default_params();
            lmp_distill_stats st;
            dp.ctx = ctx;
            dp.max_seqs = p->chunks;
            dp.f32 = true;
            dp.full = exact;
            dp.top_k = exact ? 0 : (p->top_k < lmp_model_n_vocab(m) ? p->top_k : lmp_model_n_vocab(m));
            dp.force = true;
            lmp_info("[%d/%d] %s: exporting base logits (%s)", i + 1, n, r->name,
                     exact ? "full log-probs" : "top-k");
            if ((rc = lmp_distill_export(m, path, text, len, logits, &dp, &st))) {
                rc = lmp_err_prefix(rc, "%s", path);
                goto fail;
            }
            kld_seqs = st.n_seqs;
        } else {
            lmp_kld_params kp = lmp_kld_default_params();
            lmp_kld_result kr;
            lmp_info("[%d/%d] %s: KL divergence against the base", i + 1, n, r->name);
            if ((rc = lmp_distill_eval(m, logits, &kp, &kr))) {
                rc = lmp_err_prefix(rc, "%s", path);
                goto fail;
            }
            r->kld = kr.kld_mean;
            r->kld_stderr = kr.kld_stderr;
            r->kld_p99 = kr.kld_pct[2];
            r->same_top = kr.same_top;
            r->dp_rms = kr.dp_rms;
            r->kld_exact = kr.exact;
        }
        if (i == 0) {
            r->same_top = 1;
            r->kld_exact = exact;
        }
        for (int t = 0; t < p->n_tasks && t < LMP_COMPARE_MAX_TASKS; t++) {
            lmp_info("[%d/%d] %s: task %s (%s)", i + 1, n, r->name, p->task_names[t],
                     lmp_task_protocol_name(p->task.protocol));
            if ((rc = lmp_task_eval(m, p->tasks[t], &p->task, &r->task[t]))) {
                rc = lmp_err_prefix(rc, "%s", path);
                goto fail;
            }
        }
        lmp_model_free(m);
        m = NULL;
    }
    if (!p->keep_logits)
        remove(logits);
    if ((rc = write_reports(tmp, rows, n, text_path, p, ctx, kld_seqs, exact)))
        goto fail;
    if ((rc = lmp_dir_commit(tmp, out_dir)))
        goto fail;
    free(tmp);
    free(logits);
    if (rows_out)
        *rows_out = rows;
    else
        free(rows);
    return LMP_OK;
fail:
    lmp_model_free(m);
    lmp_dir_remove(tmp);
    free(tmp);
    free(logits);
    free(rows);
    return rc;
}
