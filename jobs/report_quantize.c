/*
 * `lmpress quantize`'s printers (jobs/report.h): the GGUF path's per-tensor lines and
 * summary, the integer-group path's per-layer lines and summary.
 */
#include "jobs/report.h"

#include <stdio.h>
#include <string.h>

static const char *const method_name[] = {"gptq", "rtn", "awq"};

void lmp_report_gguf_tensor(void *ctx, const lmp_gguf_quant_tensor_info *t)
{
    (void)ctx;
    if (t->progress_bar)
        return; /* the bar is on stderr; per-tensor lines only when it is not */
    char shape[96];
    size_t k = 0;
    shape[0] = 0;
    for (int d = 0; d < t->src->ndim && k < sizeof shape; d++)
        k += (size_t)snprintf(shape + k, sizeof shape - k, "%s%lld", d ? "x" : "", (long long)t->src->shape[d]);
    char err[48] = "";
    if (t->rel_rms >= 0)
        snprintf(err, sizeof err, "  rel RMS %.5f", t->rel_rms);
    fprintf(stderr, "[%*d/%d] %-32s [%s] %s -> %s  %.2f -> %.2f MiB%s%s%s\n", t->count >= 100 ? 3 : 2, t->index,
            t->count, t->name, shape, lmp_dtype_info(t->src->dtype)->name, lmp_dtype_info(t->out_dtype)->name,
            t->bytes_in / 1048576.0, t->bytes_out / 1048576.0, err, t->note[0] ? "  " : "", t->note);
}

void lmp_report_gguf(const char *model, const char *out, const lmp_job_gguf_params *p, const lmp_job_gguf_result *jr,
                     const lmp_bpw *gbw, bool json)
{
    const lmp_gguf_qtype *qt = lmp_gguf_qtype_find(p->q.type ? p->q.type : "q8_0");
    const lmp_gguf_quant_result res = jr->q;
    const double t_total = jr->seconds, t_imatrix = jr->imatrix_seconds, t_conv = jr->convert_seconds;
    if (json) {
        printf("{\"input\": ");
        lmp_report_json_str(model);
        printf(", \"output\": ");
        lmp_report_json_str(out);
        printf(", \"type\": \"%s\", \"file_type\": %d, \"tensors\": %d, \"quantized\": %d, \"fallbacks\": %d, "
               "\"parameters\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"bpw\": %.4f, \"bpw_linear\": %.4f, "
               "\"seconds\": %.4f, \"quantize_seconds\": %.4f, \"imatrix_seconds\": %.4f, \"convert_seconds\": %.4f, "
               "\"peak_rss\": %llu, \"tensor_types\": {",
               qt->name, res.ftype, res.n_tensors, res.n_quantized, res.n_fallback, (unsigned long long)res.params,
               (unsigned long long)res.bytes_in, (unsigned long long)res.bytes_out, gbw->bpw, gbw->bpw_linear, t_total,
               res.seconds, t_imatrix, t_conv,
               (unsigned long long)res.peak_rss);
        int first = 1;
        for (int d = 0; d < LMP_DT_COUNT; d++)
            if (res.type_count[d]) {
                printf("%s\"%s\": %d", first ? "" : ", ", lmp_dtype_info((lmp_dtype)d)->name, res.type_count[d]);
                first = 0;
            }
        printf("}");
        if (res.rel_rms_max >= 0) {
            printf(", \"rel_rms_max\": %.6g, \"rel_rms_max_tensor\": ", res.rel_rms_max);
            lmp_report_json_str(res.rel_rms_max_name);
        }
        if (jr->imatrix)
            printf(", \"imatrix_chunks\": %d, \"imatrix_tokens\": %lld, \"imatrix_entries\": %d", jr->imatrix_chunks,
                   (long long)jr->imatrix_tokens, jr->imatrix_entries);
        printf("}\n");
        return;
    }
    char b1[32], b2[32], b3[32], types[512];
    size_t k = 0;
    types[0] = 0;
    for (int d = 0; d < LMP_DT_COUNT && k < sizeof types; d++)
        if (res.type_count[d])
            k += (size_t)snprintf(types + k, sizeof types - k, "%s%s %d", k ? ", " : "",
                                  lmp_dtype_info((lmp_dtype)d)->name, res.type_count[d]);
    printf("wrote %s: %s (file type %d), %d tensors (%s), %s -> %s, bits per weight %.3f linear layers, "
           "%.3f whole file, peak RSS %s\n",
           out, qt->name, res.ftype, res.n_tensors, types, lmp_report_bytes((double)res.bytes_in, b1, sizeof b1),
           lmp_report_bytes((double)res.bytes_out, b2, sizeof b2), gbw->bpw_linear, gbw->bpw,
           lmp_report_bytes((double)res.peak_rss, b3, sizeof b3));
    printf("%.2fs in all: %.2fs quantizing", t_total, res.seconds);
    if (jr->imatrix)
        printf(", %.2fs importance weights", t_imatrix);
    if (t_conv > 0)
        printf(", %.2fs converting to GGUF", t_conv);
    printf("\n");
    if (res.n_fallback)
        printf("%d tensor(s) did not fit their block size and used a fallback type\n", res.n_fallback);
    if (res.rel_rms_max >= 0)
        printf("largest relative RMS error: %.5f (%s)\n", res.rel_rms_max, res.rel_rms_max_name);
}

void lmp_report_qmodel_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_qlinear_stats *st)
{
    char eta[64];
    lmp_report_eta(ctx, layer, n_layers, eta, sizeof eta);
    double we = -1, wr = -1;
    const char *wn = "";
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        if (st[k].err > we) {
            we = st[k].err;
            wr = st[k].err_rtn;
            wn = lmp_linear_name(st[k].which);
        }
    if (we >= 0 && wr >= 0)
        fprintf(stderr, "[%d/%d] layer %d  %.2fs  worst output error %.5f (%s; RTN %.5f)%s\n", layer + 1, n_layers,
                layer, seconds, we, wn, wr, eta);
    else if (we >= 0)
        fprintf(stderr, "[%d/%d] layer %d  %.2fs  worst output error %.5f (%s)%s\n", layer + 1, n_layers, layer,
                seconds, we, wn, eta);
    else
        fprintf(stderr, "[%d/%d] layer %d  %.2fs%s\n", layer + 1, n_layers, layer, seconds, eta);
}

void lmp_report_qmodel(const char *model, const char *out, const lmp_qmodel_quant_params *p,
                       const lmp_qmodel_quant_result *r, bool verbose, bool json)
{
    const bool awq = p->pipe.method == LMP_QMETHOD_AWQ;
    const lmp_qpipe_result *pr = &r->pipe;
    const lmp_qmodel_write_stats *ws = &r->write;
    /* the one definition of bits per weight (lib/io/bpw.h), measured on the output */
    lmp_bpw bw;
    if (lmp_path_bpw(out, &bw) != 0)
        memset(&bw, 0, sizeof bw);
    double bpw_lin = bw.bpw_linear, bpw_all = bw.bpw;
    int n_lin = pr->n_layers * LMP_LIN_COUNT, n_cmp = 0;
    for (int i = 0; i < n_lin; i++)
        n_cmp += pr->lin[i].err >= 0 && pr->lin[i].err_rtn >= 0;
    const char *fname = lmp_qformat_name(p->write.format);
    if (json) {
        printf("{\"input\": ");
        lmp_report_json_str(model);
        printf(", \"output\": ");
        lmp_report_json_str(out);
        printf(", \"method\": \"%s\", \"format\": \"%s\", \"bits\": %d, \"group_size\": %d, \"sym\": %s, "
               "\"act_order\": %s, \"damp\": %.6g, \"true_sequential\": %s, \"calib_samples\": %d, "
               "\"calib_seqlen\": %d, \"calib_text_tokens\": %lld, \"activation_bytes\": %llu, "
               "\"linears\": %d, \"quantized_params\": %llu, \"quantized_bytes\": %llu, \"bpw_linear\": %.4f, "
               "\"params\": %llu, \"bytes\": %llu, \"bpw\": %.4f, \"worse_than_rtn\": %d, \"compared\": %d, "
               "\"seconds\": %.4f, \"peak_rss\": %llu, \"layers\": [",
               method_name[p->pipe.method], fname, p->pipe.bits, p->pipe.group_size, p->pipe.sym ? "true" : "false",
               p->pipe.act_order ? "true" : "false", (double)p->pipe.damp, p->pipe.true_sequential ? "true" : "false",
               pr->n_samples, pr->seq_len, (long long)r->calib_text_tokens, (unsigned long long)pr->act_bytes,
               ws->n_quantized, (unsigned long long)ws->qparams, (unsigned long long)ws->qbytes, bpw_lin,
               (unsigned long long)ws->params, (unsigned long long)ws->bytes, bpw_all, pr->n_worse_than_rtn,
               n_cmp, r->seconds, (unsigned long long)r->peak_rss);
        for (int i = 0; i < n_lin; i++) {
            const lmp_qlinear_stats *st = &pr->lin[i];
            printf("%s{\"name\": ", i ? ", " : "");
            lmp_report_json_str(st->name);
            printf(", \"rows\": %lld, \"cols\": %lld, \"loss\": %.6g, \"err\": %.6g, \"err_rtn\": %.6g, "
                   "\"seconds\": %.4f}",
                   (long long)st->rows, (long long)st->cols, st->loss, st->err, st->err_rtn, st->seconds);
        }
        printf("]}\n");
        return;
    }
    if (verbose) {
        printf("%-36s %-12s %12s %10s %10s %7s\n", "linear", "shape", "gptq loss", "err", "rtn err", "secs");
        for (int i = 0; i < n_lin; i++) {
            const lmp_qlinear_stats *st = &pr->lin[i];
            char shape[32];
            snprintf(shape, sizeof shape, "%lldx%lld", (long long)st->rows, (long long)st->cols);
            printf("%-36s %-12s %12.5g %10.6f %10.6f %7.3f\n", st->name, shape, st->loss, st->err, st->err_rtn,
                   st->seconds);
        }
    }
    char b1[32], b2[32], b3[32];
    printf("wrote %s: %s %d-bit group %d %s%s (%s), %d linears: %s of packed weights; %s on disk; bits per "
           "weight %.3f linear layers, %.3f whole file\n",
           out, method_name[p->pipe.method], p->pipe.bits, p->pipe.group_size, p->pipe.sym ? "sym" : "asym",
           p->pipe.act_order ? " act-order" : "", fname, ws->n_quantized,
           lmp_report_bytes((double)ws->qbytes, b1, sizeof b1), lmp_report_bytes((double)bw.file_bytes, b2, sizeof b2),
           bpw_lin, bpw_all);
    if (pr->n_samples)
        printf("calibration: %d x %d tokens (of %lld in the text), activations %s\n", pr->n_samples, pr->seq_len,
               (long long)r->calib_text_tokens, lmp_report_bytes((double)pr->act_bytes, b3, sizeof b3));
    if (n_cmp && (p->pipe.method == LMP_QMETHOD_GPTQ || awq))
        printf("%s output error below RTN's on %d of %d linears; worst %.5f (%s)\n", awq ? "AWQ" : "GPTQ",
               n_cmp - pr->n_worse_than_rtn, n_cmp, pr->worst_err, pr->worst_name);
    else if (n_cmp)
        printf("worst output error %.5f (%s)\n", pr->worst_err, pr->worst_name);
    printf("%.2fs, peak RSS %s\n", r->seconds, lmp_report_bytes((double)r->peak_rss, b3, sizeof b3));
}
