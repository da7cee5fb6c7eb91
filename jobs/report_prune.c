/*
 * `lmpress prune`'s printers (jobs/report.h): per-layer lines, and the summary of a
 * structured or an unstructured job.
 */
#include "jobs/report.h"

#include <stdio.h>

void lmp_report_prune_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_prune_linear_stats *st)
{
    char eta[64];
    lmp_report_eta(ctx, layer, n_layers, eta, sizeof eta);
    double we = -1;
    const char *wn = "";
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (st[k].err > we) {
            we = st[k].err;
            wn = lmp_linear_name(st[k].which);
        }
    if (we >= 0)
        fprintf(stderr, "[%d/%d] layer %d  %.2fs  worst output error %.5f (%s)%s\n", layer + 1, n_layers, layer, seconds,
                we, wn, eta);
    else
        fprintf(stderr, "[%d/%d] layer %d  %.2fs%s\n", layer + 1, n_layers, layer, seconds, eta);
}

static void print_structured(const char *model, const char *out, const lmp_prune_model_result *r, bool json)
{
    char b1[32], b2[32];
    const lmp_struct_plan *pl = &r->plan;
    double shrink = 1.0 - (double)pl->params_out / (double)pl->params_in;
    if (json) {
        printf("{\"input\": ");
        lmp_report_json_str(model);
        printf(", \"output\": ");
        lmp_report_json_str(out);
        printf(", \"structured\": \"%s\", \"ratio\": %.6g, \"format\": \"%s\", \"params_in\": %lld, "
               "\"params_out\": %lld, \"params_written\": %llu, \"shrink\": %.6f, \"layers\": %d, \"heads\": %d, "
               "\"kv_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"out_bytes\": %llu, "
               "\"seconds\": %.4f, \"peak_rss\": %llu, \"keep_layers\": [",
               lmp_struct_kind_name(pl->kind), pl->ratio, r->format, (long long)pl->params_in,
               (long long)pl->params_out, (unsigned long long)r->write.params, shrink, pl->out.n_layers,
               pl->out.n_heads, pl->out.n_kv_heads, pl->out.head_dim, pl->out.intermediate_size,
               (unsigned long long)r->out_bytes, r->seconds, (unsigned long long)r->peak_rss);
        for (int i = 0; i < pl->out.n_layers; i++)
            printf("%s%d", i ? ", " : "", pl->keep_layers[i]);
        printf("]}\n");
        return;
    }
    printf("wrote %s: %s pruned by %.3g: %d layers, %d heads / %d KV heads (head_dim %d), FFN %d; "
           "%lld -> %lld parameters (%.1f%% fewer), %s\n",
           out, lmp_struct_kind_name(pl->kind), pl->ratio, pl->out.n_layers, pl->out.n_heads, pl->out.n_kv_heads,
           pl->out.head_dim, pl->out.intermediate_size, (long long)pl->params_in, (long long)pl->params_out,
           100 * shrink, lmp_report_bytes((double)r->out_bytes, b1, sizeof b1));
    if (pl->kind == LMP_STRUCT_LAYERS) {
        printf("kept layers:");
        for (int i = 0; i < pl->out.n_layers; i++)
            printf(" %d", pl->keep_layers[i]);
        printf("\nblock influence:");
        for (int i = 0; i < pl->in.n_layers; i++)
            printf(" %.4f", pl->score[i]);
        printf("\n");
    }
    printf("%.2fs, peak RSS %s\n", r->seconds, lmp_report_bytes((double)r->peak_rss, b2, sizeof b2));
}

void lmp_report_prune(const char *model, const char *out, const lmp_prune_model_params *p,
                      const lmp_prune_model_result *r, bool verbose, bool json)
{
    if (p->structured) {
        print_structured(model, out, r, json);
        return;
    }
    const lmp_prune_spec *s = &p->prune.spec;
    const lmp_prune_result *pr2 = &r->prune;
    int n_lin = pr2->n_layers * LMP_LIN_COUNT;
    double worst = -1;
    const char *wn = "";
    for (int i = 0; i < n_lin; i++)
        if (pr2->lin[i].err > worst) {
            worst = pr2->lin[i].err;
            wn = pr2->lin[i].name;
        }
    if (json) {
        printf("{\"input\": ");
        lmp_report_json_str(model);
        printf(", \"output\": ");
        lmp_report_json_str(out);
        printf(", \"method\": \"%s\", \"sparsity\": %.6g, \"pattern\": \"", lmp_prune_method_name(s->method),
               s->m ? 0.0 : s->sparsity);
        if (s->m)
            printf("%d:%d", s->n, s->m);
        printf("\", \"format\": \"%s\", \"then_quantize\": %d, \"calib_samples\": %d, \"calib_seqlen\": %d, "
               "\"calib_text_tokens\": %lld, \"linear_params\": %llu, \"zeros\": %llu, \"linear_sparsity\": %.6f, "
               "\"params\": %llu, \"bytes\": %llu, \"out_bytes\": %llu, \"seconds\": %.4f, \"peak_rss\": %llu, "
               "\"layers\": [",
               r->format, s->qbits, pr2->n_samples, pr2->seq_len, (long long)r->calib_text_tokens,
               (unsigned long long)pr2->params, (unsigned long long)pr2->zeros, pr2->sparsity,
               (unsigned long long)r->write.params, (unsigned long long)r->write.bytes,
               (unsigned long long)r->out_bytes, r->seconds, (unsigned long long)r->peak_rss);
        for (int i = 0; i < n_lin; i++) {
            const lmp_prune_linear_stats *st = &pr2->lin[i];
            printf("%s{\"name\": ", i ? ", " : "");
            lmp_report_json_str(st->name);
            printf(", \"rows\": %lld, \"cols\": %lld, \"zeros\": %lld, \"err\": %.6g, \"loss\": %.6g, "
                   "\"seconds\": %.4f}",
                   (long long)st->rows, (long long)st->cols, (long long)st->zeros, st->err, st->loss, st->seconds);
        }
        printf("]}\n");
        return;
    }
    if (verbose) {
        printf("%-36s %-12s %10s %10s %12s %7s\n", "linear", "shape", "zeros", "err", "loss", "secs");
        for (int i = 0; i < n_lin; i++) {
            const lmp_prune_linear_stats *st = &pr2->lin[i];
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)st->rows, (long long)st->cols);
            printf("%-36s %-12s %10lld %10.6f %12.5g %7.3f\n", st->name, shape, (long long)st->zeros, st->err,
                   st->loss, st->seconds);
        }
    }
    char pat[32], b1[32], b2[32];
    if (s->m)
        snprintf(pat, sizeof pat, "%d:%d", s->n, s->m);
    else
        snprintf(pat, sizeof pat, "%.4g unstructured", s->sparsity);
    printf("wrote %s (%s): %s %s, %llu of %llu linear weights zero (%.2f%%), %s on disk\n", out, r->format,
           lmp_prune_method_name(s->method), pat, (unsigned long long)pr2->zeros, (unsigned long long)pr2->params,
           100 * pr2->sparsity, lmp_report_bytes((double)r->out_bytes, b1, sizeof b1));
    if (pr2->n_samples)
        printf("calibration: %d x %d tokens; worst relative output error %.5f (%s)\n", pr2->n_samples, pr2->seq_len,
               worst, wn);
    printf("%.2fs, peak RSS %s\n", r->seconds, lmp_report_bytes((double)r->peak_rss, b2, sizeof b2));
}
