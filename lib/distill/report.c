/*
 * lmpress compare: perplexity, KL divergence against the base, size on disk, bits per
 * weight and speed of model variants, written as report.md, report.json and two SVG
 * scatter plots (bits per weight against perplexity and against KLD) drawn by the small
 * SVG writer below. Not here: the statistics themselves (eval.c, lib/infer/ppl.c).
 */
#include "distill_internal.h"
#include "../core/dist.h"

#include <cjson/cJSON.h>

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* ---------------------------------------------------------------- SVG ------------- */

void svg_printf(svgw *w, const char *fmt, ...)
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

const char *xml_esc(const char *s, char *buf, size_t n)
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

int lmp_compare_check(const lmp_compare_params *p)
{
    if (p->ctx < 0 || p->ctx > 1 << 22)
        return lmp_err(LMP_EINVAL, "--ctx %d: must be >= 0 (0 = the protocol's), at most %d", p->ctx, 1 << 22);
    if (p->chunks < 0 || p->chunks > 1 << 30)
        return lmp_err(LMP_EINVAL, "--chunks %d: must be >= 0 (0 = all)", p->chunks);
    if (p->top_k < 0 || p->top_k > 1 << 24)
        return lmp_err(LMP_EINVAL, "--top-k %d: must be >= 0 (0 = exact)", p->top_k);
    if (p->n_tasks < 0 || p->n_tasks > LMP_COMPARE_MAX_TASKS)
        return lmp_err(LMP_EINVAL, "--task: at most %d tasks", LMP_COMPARE_MAX_TASKS);
    int rc = lmp_task_check(&p->task);
    return rc ? lmp_err_prefix(rc, "task options (--task-*)") : LMP_OK;
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
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--;
    snprintf(r->path, sizeof r->path, "%.*s", (int)n, path);
    const char *b = NULL;
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
    /* the linear figure from the path as given (bpw.h): a packed folder's own tensors */
    lmp_bpw bw;
    if (lmp_path_bpw(r->path, &bw) == 0 && bw.params > 0) {
        r->bpw_linear = bw.bpw_linear;
        r->n_params = bw.params;
        r->size_bytes = bw.file_bytes;
        r->bpw = bw.bpw;
    }
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

/* report.json (and the --resume partial record): settings and every row so far. */
static int write_json(const char *path, const lmp_compare_row *rows, int n, const char *text_path,
                      const lmp_compare_params *p, int ctx, int kld_seqs, bool exact, const char *kld_base)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return lmp_err(LMP_EIO, "%s: cannot write", path);
    fprintf(f, "{\"lmpress_version\": \"%s\", \"base\": ", LMP_VERSION);
    json_str(f, rows[0].path);
    fprintf(f, ", \"text\": ");
    json_str(f, text_path);
    fprintf(f, ", \"protocol\": \"%s\", \"ctx\": %d, \"chunks\": %d, \"top_k\": %d, \"kld_sequences\": %d, "
               "\"kld_exact\": %s, \"kld_base\": ",
            lmp_ppl_protocol_name(p->protocol), ctx, p->chunks, p->top_k, kld_seqs, exact ? "true" : "false");
    json_str(f, kld_base);
    fprintf(f, ", \"bpw_definition\": \"bpw: 8 x weight files' bytes / logical parameters; bpw_linear: 8 x "
               "bytes of the linear layers' stored tensors / their logical parameters\", \"variants\": [");
    for (int i = 0; i < n; i++) {
        const lmp_compare_row *r = &rows[i];
        fprintf(f, "%s\n  {\"name\": ", i ? "," : "");
        json_str(f, r->name);
        fprintf(f, ", \"path\": ");
        json_str(f, r->path);
        fprintf(f, ", \"base\": %s, \"protocol\": \"%s\", \"ctx\": %d, \"kld_ctx\": %d, \"size_bytes\": %llu, "
                   "\"params\": %lld, \"bpw\": ",
                i == 0 ? "true" : "false", r->protocol, r->ctx, r->kld_ctx, (unsigned long long)r->size_bytes,
                (long long)r->n_params);
        json_num(f, r->bpw);
        const char *keys[] = {"bpw_linear", "ppl", "ppl_stderr", "kld", "kld_stderr", "kld_p99", "same_top",
                              "dp_rms", "tokens_per_s"};
        double vals[] = {r->bpw_linear, r->ppl, r->ppl_stderr, r->kld, r->kld_stderr, r->kld_p99, r->same_top,
                         r->dp_rms, r->tokens_per_s};
        for (int k = 0; k < 9; k++) {
            fprintf(f, ", \"%s\": ", keys[k]);
            json_num(f, vals[k]);
        }
        fprintf(f, ", \"kld_exact\": %s", r->kld_exact ? "true" : "false");
        if (p->n_tasks > 0)
            write_task_json(f, rows, i, p);
        fputc('}', f);
    }
    fprintf(f, "\n]}\n");
    if (fclose(f) != 0)
        return lmp_err(LMP_EIO, "%s: write failed", path);
    return LMP_OK;
}

/* "within error": the variant's difference from the base is smaller than twice the
 * combined standard error (independent errors assumed: a conservative test here, since
 * both are measured on the same text) */
static bool ppl_within_error(const lmp_compare_row *b, const lmp_compare_row *r)
{
    return fabs(r->ppl - b->ppl) <= 2 * sqrt(r->ppl_stderr * r->ppl_stderr + b->ppl_stderr * b->ppl_stderr);
}

static int write_reports(const char *dir, const lmp_compare_row *rows, int n, const char *text_path,
                         const lmp_compare_params *p, int ctx, int kld_seqs, bool exact, const char *kld_base)
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
               "%d sequences of %d tokens (first token of each replaced by BOS), %s, from %s.\n\n",
            rows[0].path, text_path, lmp_ppl_protocol_name(p->protocol), ctx,
            p->chunks ? " (first windows only, --chunks)" : "", kld_seqs, rows[0].kld_ctx,
            exact ? "exact (full log-probs)" : "top-k estimate (a lower bound)", kld_base);
    fprintf(f, "| variant | protocol, ctx | size | bpw (file) | bpw (linear) | ppl | KLD | KLD 99%% | same top p | "
               "RMS dp | tokens/s |\n"
               "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    int n_within = 0;
    for (int i = 0; i < n; i++) {
        const lmp_compare_row *r = &rows[i];
        const char *mark = "";
        if (i > 0 && r->ppl < rows[0].ppl && ppl_within_error(&rows[0], r)) {
            mark = " (within error)";
            n_within++;
        }
        fprintf(f, "| %s%s%s | %s, %d (KLD %d) | %.2f MiB | %.3f | %.3f | %.4f ± %.4f%s | %.6f ± %.6f | %.6f | "
                   "%.2f%% | %.3f%% | %.0f |\n",
                r->name, i == 0 ? " (base)" : "", r->resumed ? " (resumed)" : "", r->protocol, r->ctx, r->kld_ctx,
                (double)r->size_bytes / 1048576.0, r->bpw, r->bpw_linear, r->ppl, r->ppl_stderr, mark, r->kld,
                r->kld_stderr, r->kld_p99, 100 * r->same_top, 100 * r->dp_rms, r->tokens_per_s);
    }
    fprintf(f, "\nBits per weight, two figures: bpw (file) = 8 x the weight files' bytes on disk / the model's "
               "logical parameters; bpw (linear) = 8 x the bytes of the linear layers' stored tensors (codes, "
               "scales, zeros) / their logical parameters. tokens/s: the perplexity run (model time). ± is one "
               "standard error.%s\n\n![bits per weight vs perplexity](bpw_ppl.svg)\n\n"
               "![bits per weight vs KLD](bpw_kld.svg)\n",
            n_within ? " A lower perplexity than the base marked \"within error\" differs from it by less than "
                       "two standard errors: not an improvement."
                     : "");
    if (p->n_tasks > 0)
        write_task_table(f, rows, n, p);
    if (fclose(f) != 0)
        rc = lmp_err(LMP_EIO, "%s: write failed", md);
    if (rc)
        goto done;
    if ((rc = write_json(js, rows, n, text_path, p, ctx, kld_seqs, exact, kld_base)))
        goto done;
    rc = lmp_compare_plots(dir, rows, n, p, ctx);
    if (!rc && p->n_tasks > 0) {
        const char **lab = malloc(sizeof(char *) * (size_t)n);
        if (!lab) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < n; i++)
            lab[i] = rows[i].name;
        rc = write_task_plot(dir, rows, n, p, lab);
        free(lab);
    }
done:
    free(md);
    free(js);
    return rc;
}

/* What the first pass learns of a model without keeping it loaded. */
typedef struct {
    int n_vocab, max_pos;
    uint64_t vocab_hash;
    bool has_tok;
} model_facts;

static int model_facts_of(const lmp_compare_params *p, const char *path, model_facts *mf)
{
    if (!lmp_path_exists(path))
        return lmp_err(LMP_ENOTFOUND, "%s: no such file or folder", path);
    lmp_model *m = NULL;
    int rc = (p->load ? p->load : lmp_model_load)(&m, path);
    if (rc)
        return rc;
    mf->n_vocab = lmp_model_n_vocab(m);
    mf->max_pos = lmp_model_config(m)->max_pos;
    const lmp_tokenizer *tok = lmp_model_tokenizer(m);
    mf->has_tok = tok != NULL;
    mf->vocab_hash = tok ? lmp_distill_vocab_hash(tok) : 0;
    lmp_model_free(m);
    return LMP_OK;
}

/* Rows of an earlier run (report.json or the partial record) that match these settings. */
static void resume_rows(const char *json_path, lmp_compare_row *rows, int n, const char *const *paths,
                        const char *text_path, const lmp_compare_params *p, int ctx, int *kld_seqs)
{
    char *txt = NULL;
    /* the earlier run's record belongs to the output this run continues: reading it does
     * not make the report folder an input (lib/core/safeout.c) */
    lmp_output_note_written(json_path);
    if (lmp_read_file(json_path, &txt, NULL) != 0)
        return;
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    if (!root)
        return;
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(root, "protocol");
    const cJSON *cx = cJSON_GetObjectItemCaseSensitive(root, "ctx");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "chunks");
    const cJSON *tk = cJSON_GetObjectItemCaseSensitive(root, "top_k");
    const cJSON *tx = cJSON_GetObjectItemCaseSensitive(root, "text");
    const cJSON *vs = cJSON_GetObjectItemCaseSensitive(root, "variants");
    if (!cJSON_IsString(pr) || strcmp(pr->valuestring, lmp_ppl_protocol_name(p->protocol)) != 0 ||
        !cJSON_IsNumber(cx) || cx->valueint != ctx || !cJSON_IsNumber(ch) || ch->valueint != p->chunks ||
        !cJSON_IsNumber(tk) || tk->valueint != p->top_k || !cJSON_IsString(tx) ||
        strcmp(tx->valuestring, text_path) != 0 || !cJSON_IsArray(vs)) {
        lmp_info("%s: made with other settings (protocol, ctx, chunks, top-k or text): not reused", json_path);
        cJSON_Delete(root);
        return;
    }
    const cJSON *ks = cJSON_GetObjectItemCaseSensitive(root, "kld_sequences");
    if (cJSON_IsNumber(ks) && ks->valueint > 0)
        *kld_seqs = ks->valueint;
    const cJSON *v;
    cJSON_ArrayForEach(v, vs)
    {
        const cJSON *path = cJSON_GetObjectItemCaseSensitive(v, "path");
        if (!cJSON_IsString(path))
            continue;
        for (int i = 0; i < n; i++) {
            size_t k = strlen(paths[i]);
            while (k > 1 && paths[i][k - 1] == '/')
                k--;
            if (rows[i].resumed || strlen(path->valuestring) != k || strncmp(path->valuestring, paths[i], k) != 0)
                continue;
            if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "base")) != (i == 0))
                continue;
            lmp_compare_row *r = &rows[i];
            const char *keys[] = {"bpw", "bpw_linear", "ppl", "ppl_stderr", "kld", "kld_stderr", "kld_p99",
                                  "same_top", "dp_rms", "tokens_per_s"};
            double *dst[] = {&r->bpw, &r->bpw_linear, &r->ppl, &r->ppl_stderr, &r->kld, &r->kld_stderr,
                             &r->kld_p99, &r->same_top, &r->dp_rms, &r->tokens_per_s};
            bool okrow = true;
            for (int q = 0; q < 10; q++) {
                const cJSON *x = cJSON_GetObjectItemCaseSensitive(v, keys[q]);
                if (cJSON_IsNumber(x))
                    *dst[q] = x->valuedouble;
                else if (q >= 2 && q <= 3)
                    okrow = false; /* no perplexity: evaluate again */
            }
            const cJSON *kc = cJSON_GetObjectItemCaseSensitive(v, "kld_ctx");
            const cJSON *sz = cJSON_GetObjectItemCaseSensitive(v, "size_bytes");
            const cJSON *pa = cJSON_GetObjectItemCaseSensitive(v, "params");
            const cJSON *nm = cJSON_GetObjectItemCaseSensitive(v, "name");
            if (!okrow || !cJSON_IsNumber(kc) || !cJSON_IsNumber(sz) || !cJSON_IsNumber(pa) || !cJSON_IsString(nm))
                continue;
            r->kld_ctx = kc->valueint;
            r->size_bytes = (uint64_t)sz->valuedouble;
            r->n_params = (int64_t)pa->valuedouble;
            r->kld_exact = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(v, "kld_exact"));
            snprintf(r->name, sizeof r->name, "%s", nm->valuestring);
            snprintf(r->path, sizeof r->path, "%s", path->valuestring);
            snprintf(r->protocol, sizeof r->protocol, "%s", lmp_ppl_protocol_name(p->protocol));
            r->ctx = ctx;
            r->resumed = true;
        }
    }
    cJSON_Delete(root);
}

int lmp_distill_compare(const char *base, const char *const *variants, int n_variants, const char *text,
                        size_t len, const char *text_path, const char *out_dir, const lmp_compare_params *p,
                        lmp_compare_row **rows_out)
{
    const int n = n_variants + 1;
    lmp_compare_row *rows = calloc((size_t)n, sizeof *rows);
    const char **paths = malloc(sizeof(char *) * (size_t)n);
    char *tmp = NULL, *logits = NULL, *partial = NULL, *report_json = NULL;
    lmp_model *m = NULL;
    bool logits_ours = false; /* logits is <out_dir>.base-logits.h5, made by this command */
    if (rows_out)
        *rows_out = NULL;
    if (!rows || !paths) {
        free(rows);
        free(paths);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    paths[0] = base;
    for (int i = 1; i < n; i++)
        paths[i] = variants[i - 1];
    int rc = LMP_OK;
    if (p->resume && p->n_tasks > 0) { /* resumed rows carry no task scores */
        rc = lmp_err(LMP_EINVAL, "--resume and --task cannot be combined (the earlier run's rows have no task "
                                 "scores); run the tasks with lmpress tasks, or compare without --resume");
        goto fail;
    }
    /* ---- first, every input: exists, loads, same vocabulary, context within each model's */
    model_facts bf = {0};
    int ctx = 0, kld_seqs = 0;
    for (int i = 0; i < n; i++) {
        model_facts mf = {0};
        lmp_info("checking %s", paths[i]);
        if ((rc = model_facts_of(p, paths[i], &mf))) {
            rc = lmp_err_prefix(rc, "%s %s (nothing was evaluated)", i ? "variant" : "base", paths[i]);
            goto fail;
        }
        if (i == 0) {
            bf = mf;
            if (!mf.has_tok) {
                rc = lmp_err(LMP_EUNSUPPORTED, "base %s has no tokenizer (nothing was evaluated)", base);
                goto fail;
            }
            int want = lmp_ppl_protocol_ctx(p->protocol);
            ctx = p->ctx > 0 ? p->ctx : (mf.max_pos > 0 && mf.max_pos < want ? mf.max_pos : want);
        } else if (mf.n_vocab != bf.n_vocab || (mf.has_tok && mf.vocab_hash != bf.vocab_hash)) {
            rc = lmp_err(LMP_EINVAL, "variant %s has another vocabulary than base %s (%d tokens%s against %d): KLD "
                                     "and perplexity would not compare (nothing was evaluated)",
                         paths[i], base, mf.n_vocab, mf.n_vocab == bf.n_vocab ? ", other pieces" : "", bf.n_vocab);
            goto fail;
        }
        if (mf.max_pos > 0 && ctx > mf.max_pos && !p->allow_long_ctx) {
            rc = lmp_err(LMP_EINVAL, "context %d is longer than %s's %d (max_position_embeddings); use a shorter "
                                     "--ctx or --allow-long-ctx (nothing was evaluated)",
                         ctx, paths[i], mf.max_pos);
            goto fail;
        }
    }
    if (p->base_logits) {
        lw_reader *rd = NULL;
        if ((rc = lw_reader_open(&rd, p->base_logits))) {
            rc = lmp_err_prefix(rc, "--base-logits (nothing was evaluated)");
            goto fail;
        }
        const lw_header *h = lw_reader_header(rd);
        int hv = h->vocab;
        bool hfull = h->full;
        lw_reader_close(rd);
        if (hv != bf.n_vocab) {
            rc = lmp_err(LMP_EINVAL, "--base-logits %s has a vocabulary of %d tokens; base %s has %d (nothing was "
                                     "evaluated)", p->base_logits, hv, base, bf.n_vocab);
            goto fail;
        }
        if (p->top_k == 0 && !hfull)
            lmp_info("%s has top-k log-probs only: the KLD is the top-k estimate (a lower bound)", p->base_logits);
    }
    /* ---- earlier rows (--resume) */
    partial = malloc(strlen(out_dir) + 32);
    report_json = lmp_path_join(out_dir, "report.json");
    if (!partial || !report_json) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    {
        size_t k = strlen(out_dir);
        while (k > 1 && out_dir[k - 1] == '/')
            k--;
        snprintf(partial, strlen(out_dir) + 32, "%.*s.partial.json", (int)k, out_dir);
    }
    if (p->resume) {
        resume_rows(report_json, rows, n, paths, text_path, p, ctx, &kld_seqs);
        resume_rows(partial, rows, n, paths, text_path, p, ctx, &kld_seqs);
        int nr = 0;
        for (int i = 0; i < n; i++)
            nr += rows[i].resumed;
        lmp_info("--resume: %d of %d rows taken from the earlier run", nr, n);
    } else if (!p->force && lmp_path_exists(out_dir)) {
        rc = lmp_err(LMP_EEXIST, "%s exists (use --force to replace it, or --resume to add to it)", out_dir);
        goto fail;
    }
    if ((rc = lmp_dir_begin(out_dir, p->force || p->resume, &tmp)))
        goto fail;
    if (p->base_logits) {
        logits = strdup(p->base_logits);
    } else {
        logits = malloc(strlen(partial) + 32);
        if (logits)
            snprintf(logits, strlen(partial) + 32, "%.*s.base-logits.h5", (int)(strlen(partial) - 13), partial);
        logits_ours = true;
    }
    if (!logits) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto fail;
    }
    if (logits_ours && p->resume && !lmp_path_exists(logits) && lmp_dist_root()) { /* kept by --keep-logits before */
        char *kept = lmp_path_join(out_dir, "base-logits.h5");
        if (kept && lmp_path_exists(kept))
            rename(kept, logits);
        free(kept);
    }
    bool need_logits = false;
    for (int i = 1; i < n; i++)
        need_logits |= !rows[i].resumed;
    if (!p->base_logits && p->resume && lmp_path_exists(logits))
        lmp_info("--resume: reusing the base's logits %s", logits);
    else if (!p->base_logits && !rows[0].resumed)
        need_logits = true; /* exported with the base's perplexity below */
    bool exact = p->top_k == 0;
    int kld_ctx = 0;
    const char *kld_base = p->base_logits ? p->base_logits : "the base's logits, exported by this command";
    lmp_ppl_params pp = lmp_ppl_default_params();
    pp.protocol = p->protocol;
    pp.ctx = ctx;
    pp.max_chunks = p->chunks;
    pp.allow_long_ctx = p->allow_long_ctx;
    for (int i = 0; i < n; i++) {
        lmp_compare_row *r = &rows[i];
        const char *path = paths[i];
        bool export_now = i == 0 && logits_ours && need_logits && !(p->resume && lmp_path_exists(logits));
        if (r->resumed && !export_now) {
            if (i > 0 && !kld_ctx)
                kld_ctx = r->kld_ctx;
            continue;
        }
        lmp_ppl_result pr;
        if ((rc = (p->load ? p->load : lmp_model_load)(&m, path)))
            goto fail;
        if (!r->resumed) {
            row_basics(r, path, m);
            snprintf(r->protocol, sizeof r->protocol, "%s", lmp_ppl_protocol_name(p->protocol));
            lmp_info("[%d/%d] %s: perplexity (%s, ctx %d)", i + 1, n, r->name, r->protocol, ctx);
            if ((rc = lmp_ppl_text(m, text, len, &pp, &pr))) {
                rc = lmp_err_prefix(rc, "%s", path);
                goto fail;
            }
            r->ppl = pr.ppl;
            r->ppl_stderr = pr.ppl_stderr;
            r->tokens_per_s = pr.tokens_per_s;
            r->ctx = pr.ctx;
        }
        if (export_now) {
            lmp_distill_params dp = lmp_distill_default_params();
            lmp_distill_stats st;
            dp.ctx = ctx;
            dp.max_seqs = p->chunks;
            dp.f32 = true;
            dp.full = exact;
            dp.allow_long_ctx = p->allow_long_ctx;
            dp.top_k = exact ? 0 : (p->top_k < lmp_model_n_vocab(m) ? p->top_k : lmp_model_n_vocab(m));
            dp.force = true;
            lmp_info("[%d/%d] %s: exporting base logits (%s)", i + 1, n, r->name,
                     exact ? "full log-probs" : "top-k");
            if ((rc = lmp_distill_export(m, path, text, len, logits, &dp, &st))) {
                rc = lmp_err_prefix(rc, "%s", path);
                goto fail;
            }
            kld_seqs = st.n_seqs;
            kld_ctx = st.ctx;
        } else if (i > 0) {
            lmp_kld_params kp = lmp_kld_default_params();
            lmp_kld_result kr;
            kp.max_seqs = p->base_logits ? p->chunks : 0;
            kp.allow_long_ctx = p->allow_long_ctx;
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
            kld_seqs = kr.n_seqs;
            kld_ctx = kr.ctx;
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
        if (p->resume) /* the record --resume reads if this run is interrupted */
            for (int q = 0; q <= i; q++)
                rows[q].kld_ctx = rows[q].kld_ctx ? rows[q].kld_ctx : kld_ctx;
        if (p->resume && (rc = write_json(partial, rows, i + 1, text_path, p, ctx, kld_seqs, exact, kld_base)))
            goto fail;
    }
    for (int i = 0; i < n; i++)
        if (!rows[i].kld_ctx)
            rows[i].kld_ctx = kld_ctx;
    /* under MPI the files beside the output are rank 0's (dist.h) */
    if (p->keep_logits && logits_ours && lmp_path_exists(logits) && lmp_dist_root()) {
        char *dst = lmp_path_join(tmp, "base-logits.h5");
        if (!dst || rename(logits, dst) != 0) {
            free(dst);
            rc = lmp_err(LMP_EIO, "%s: cannot move into the report folder", logits);
            goto fail;
        }
        free(dst);
        kld_base = "base-logits.h5 (kept, --keep-logits)";
    }
    if ((rc = write_reports(tmp, rows, n, text_path, p, ctx, kld_seqs, exact, kld_base)))
        goto fail;
    if ((rc = lmp_dir_commit(tmp, out_dir)))
        goto fail;
    if (logits_ours && lmp_dist_root())
        remove(logits);
    if (lmp_dist_root())
        remove(partial);
    free(tmp);
    free(logits);
    free(partial);
    free(report_json);
    free(paths);
    if (rows_out)
        *rows_out = rows;
    else
        free(rows);
    return LMP_OK;
fail:
    lmp_model_free(m);
    if (tmp)
        lmp_dir_remove(tmp);
    /* without --resume nothing stays behind; with it the record and the base's logits
     * stay for the next run */
    if (logits && logits_ours && !p->resume && lmp_dist_root())
        remove(logits);
    free(tmp);
    free(logits);
    free(partial);
    free(report_json);
    free(paths);
    free(rows);
    return rc;
}
