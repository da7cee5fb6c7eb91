/*
 * lmpress quantize: two paths, one option table each, under one command.
 *   GGUF block types (--type): llama.cpp's types and mixes; the job (importance weights,
 *   conversion of an HF checkpoint, plan, writer) is jobs/quantize_gguf.h's one call.
 *   Integer groups (--method gptq|rtn|awq): calibrated layer-by-layer quantization written
 *   as a GPTQ / AWQ / compressed-tensors folder: formats/qmodel.h's one call.
 * Which path runs follows from the tables the options given belong to (cli_parse_groups);
 * options of both is refused. The rows point into the two jobs' parameter structs, filled
 * first from their defaults; ranges are checked by the jobs' check functions.
 */
#include "cli.h"
#include "jobs/quantize_model.h"
#include "jobs/quantize_gguf.h"
#include "quantize_plan.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const method_name[] = {"gptq", "rtn", "awq"};

static void print_tensor(void *ctx, const lmp_gguf_quant_tensor_info *t)
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

/* ---------------------------------------------------------------- GPTQ / RTN ------ */

static void print_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_qlinear_stats *st)
{
    char eta[64];
    cli_eta_text(ctx, layer, n_layers, eta, sizeof eta);
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


/* --method path: p filled from the table; sym / act-order / format resolved by method. */
static int run_int(const char *model, const char *out, lmp_qmodel_quant_params *p, int sym, int act,
                   const char *format, const char *dtype, bool verbose, bool json)
{
    const bool awq = p->pipe.method == LMP_QMETHOD_AWQ;
    p->pipe.sym = sym >= 0 ? sym == 1 : !awq; /* AWQ's convention: zero points */
    p->pipe.act_order = act >= 0 ? act == 1 : p->pipe.method == LMP_QMETHOD_GPTQ;
    /* by name or alias from formats/fmt_table.c's table (the parser checked it against
     * the same table); gptq is v1, or v2 when asymmetric (v1 stores zero-1, which overflows) */
    lmp_qformat fmt = awq ? LMP_QFMT_AWQ_GEMM : LMP_QFMT_GPTQ_V1;
    int e = format ? lmp_qformat_by_name(format, &fmt) : 0;
    if (e)
        return cli_fail("quantize", e);
    p->write.format = lmp_qformat_for_zeros(fmt, p->pipe.sym);
    if (dtype) {
        p->write.convert_dense = true;
        p->write.dense_dtype = strcmp(dtype, "bf16") == 0 ? LMP_DT_BF16 : LMP_DT_F16;
    }
    if ((e = lmp_qmodel_quant_check(p)))
        return cli_fail("quantize", e);
    if (p->write.format != fmt && !json)
        fprintf(stderr, "note: asymmetric GPTQ is written as checkpoint_format gptq_v2 (v1 stores zero-1, which "
                        "overflows)\n");
    p->pipe.on_layer_done = json ? NULL : print_layer;
    double t_start = lmp_time_s();
    p->pipe.log_ctx = &t_start;

    lmp_qmodel_quant_result r;
    e = lmp_qmodel_quantize(model, out, p, &r);
    if (e) {
        lmp_qmodel_quant_result_free(&r);
        return cli_fail("quantize", e);
    }
    const lmp_qpipe_result *pr = &r.pipe;
    const lmp_qmodel_write_stats *ws = &r.write;
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
        cli_json_str(model);
        printf(", \"output\": ");
        cli_json_str(out);
        printf(", \"method\": \"%s\", \"format\": \"%s\", \"bits\": %d, \"group_size\": %d, \"sym\": %s, "
               "\"act_order\": %s, \"damp\": %.6g, \"true_sequential\": %s, \"calib_samples\": %d, "
               "\"calib_seqlen\": %d, \"calib_text_tokens\": %lld, \"activation_bytes\": %llu, "
               "\"linears\": %d, \"quantized_params\": %llu, \"quantized_bytes\": %llu, \"bpw_linear\": %.4f, "
               "\"params\": %llu, \"bytes\": %llu, \"bpw\": %.4f, \"worse_than_rtn\": %d, \"compared\": %d, "
               "\"seconds\": %.4f, \"peak_rss\": %llu, \"layers\": [",
               method_name[p->pipe.method], fname, p->pipe.bits, p->pipe.group_size, p->pipe.sym ? "true" : "false",
               p->pipe.act_order ? "true" : "false", (double)p->pipe.damp, p->pipe.true_sequential ? "true" : "false",
               pr->n_samples, pr->seq_len, (long long)r.calib_text_tokens, (unsigned long long)pr->act_bytes,
               ws->n_quantized, (unsigned long long)ws->qparams, (unsigned long long)ws->qbytes, bpw_lin,
               (unsigned long long)ws->params, (unsigned long long)ws->bytes, bpw_all, pr->n_worse_than_rtn,
               n_cmp, r.seconds, (unsigned long long)r.peak_rss);
        for (int i = 0; i < n_lin; i++) {
            const lmp_qlinear_stats *st = &pr->lin[i];
            printf("%s{\"name\": ", i ? ", " : "");
            cli_json_str(st->name);
            printf(", \"rows\": %lld, \"cols\": %lld, \"loss\": %.6g, \"err\": %.6g, \"err_rtn\": %.6g, "
                   "\"seconds\": %.4f}",
                   (long long)st->rows, (long long)st->cols, st->loss, st->err, st->err_rtn, st->seconds);
        }
        printf("]}\n");
    } else {
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
               p->pipe.act_order ? " act-order" : "", fname, ws->n_quantized, cli_bytes((double)ws->qbytes, b1, sizeof b1),
               cli_bytes((double)bw.file_bytes, b2, sizeof b2), bpw_lin, bpw_all);
        if (pr->n_samples)
            printf("calibration: %d x %d tokens (of %lld in the text), activations %s\n", pr->n_samples, pr->seq_len,
                   (long long)r.calib_text_tokens, cli_bytes((double)pr->act_bytes, b3, sizeof b3));
        if (n_cmp && (p->pipe.method == LMP_QMETHOD_GPTQ || awq))
            printf("%s output error below RTN's on %d of %d linears; worst %.5f (%s)\n", awq ? "AWQ" : "GPTQ",
                   n_cmp - pr->n_worse_than_rtn, n_cmp, pr->worst_err, pr->worst_name);
        else if (n_cmp)
            printf("worst output error %.5f (%s)\n", pr->worst_err, pr->worst_name);
        printf("%.2fs, peak RSS %s\n", r.seconds, cli_bytes((double)r.peak_rss, b3, sizeof b3));
    }
    lmp_qmodel_quant_result_free(&r);
    return 0;
}


typedef struct {
    quantize_plan_opts po;
    const char *model;
    const char *imatrix_calib; /* the probes' default text */
    const char *calib_field;
    long long probes;          /* --target-probes (-1: not given) */
    long long refine;          /* --target-refine (-1: not given) */
} plan_ctx;

/* The planner (quantize_plan.c) as the job's plan hook. */
static int plan_hook(void *ctx, const char *src, const lmp_gguf_quant_params *q, char ***rules, int *n_rules)
{
    plan_ctx *c = ctx;
    c->po.weights = q->weights;
    c->po.weights_ctx = q->weights_ctx;
    c->po.weights_len = q->weights_len;
    if (!c->po.calib_path)
        c->po.calib_path = c->imatrix_calib;
    c->po.calib_field = c->calib_field;
    c->po.probes = c->probes < 0 ? 0 : c->probes == 0 ? -1 : (int)c->probes;
    c->po.refine = c->refine < 0 ? 0 : c->refine == 0 ? -1 : (int)c->refine;
    return quantize_plan_make(src, c->model, &c->po, rules, n_rules);
}

/* --type path: one job call, the split / Modelfile, the summary. */
static int run_gguf(const char *model, const char *out, const lmp_job_gguf_params *p, uint64_t split_max, bool json)
{
    lmp_job_gguf_result jr;
    int e = lmp_job_quantize_gguf(model, out, p, &jr);
    if (e)
        return cli_fail("quantize", e);
    if (p->plan && p->dry_run)
        return 0;
    const lmp_gguf_qtype *qt = lmp_gguf_qtype_find(p->q.type ? p->q.type : "q8_0");
    lmp_bpw gbw; /* bits per weight by the one definition (lib/io/bpw.h), before any split */
    if (lmp_path_bpw(out, &gbw) != 0)
        memset(&gbw, 0, sizeof gbw);
    int rc = cli_gguf_deploy("quantize", out, model, split_max, p->q.force, json);
    if (rc)
        return rc;
    const lmp_gguf_quant_result res = jr.q;
    const double t_total = jr.seconds, t_imatrix = jr.imatrix_seconds, t_conv = jr.convert_seconds;
    if (json) {
        printf("{\"input\": ");
        cli_json_str(model);
        printf(", \"output\": ");
        cli_json_str(out);
        printf(", \"type\": \"%s\", \"file_type\": %d, \"tensors\": %d, \"quantized\": %d, \"fallbacks\": %d, "
               "\"parameters\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"bpw\": %.4f, \"bpw_linear\": %.4f, "
               "\"seconds\": %.4f, \"quantize_seconds\": %.4f, \"imatrix_seconds\": %.4f, \"convert_seconds\": %.4f, "
               "\"peak_rss\": %llu, \"tensor_types\": {",
               qt->name, res.ftype, res.n_tensors, res.n_quantized, res.n_fallback, (unsigned long long)res.params,
               (unsigned long long)res.bytes_in, (unsigned long long)res.bytes_out, gbw.bpw, gbw.bpw_linear, t_total,
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
            cli_json_str(res.rel_rms_max_name);
        }
        if (jr.imatrix)
            printf(", \"imatrix_chunks\": %d, \"imatrix_tokens\": %lld, \"imatrix_entries\": %d", jr.imatrix_chunks,
                   (long long)jr.imatrix_tokens, jr.imatrix_entries);
        printf("}\n");
    } else {
        char b1[32], b2[32], b3[32], types[512];
        size_t k = 0;
        types[0] = 0;
        for (int d = 0; d < LMP_DT_COUNT && k < sizeof types; d++)
            if (res.type_count[d])
                k += (size_t)snprintf(types + k, sizeof types - k, "%s%s %d", k ? ", " : "",
                                      lmp_dtype_info((lmp_dtype)d)->name, res.type_count[d]);
        printf("wrote %s: %s (file type %d), %d tensors (%s), %s -> %s, bits per weight %.3f linear layers, "
               "%.3f whole file, peak RSS %s\n",
               out, qt->name, res.ftype, res.n_tensors, types, cli_bytes((double)res.bytes_in, b1, sizeof b1),
               cli_bytes((double)res.bytes_out, b2, sizeof b2), gbw.bpw_linear, gbw.bpw,
               cli_bytes((double)res.peak_rss, b3, sizeof b3));
        printf("%.2fs in all: %.2fs quantizing", t_total, res.seconds);
        if (jr.imatrix)
            printf(", %.2fs importance weights", t_imatrix);
        if (t_conv > 0)
            printf(", %.2fs converting to GGUF", t_conv);
        printf("\n");
        if (res.n_fallback)
            printf("%d tensor(s) did not fit their block size and used a fallback type\n", res.n_fallback);
        if (res.rel_rms_max >= 0)
            printf("largest relative RMS error: %.5f (%s)\n", res.rel_rms_max, res.rel_rms_max_name);
    }
    return 0;
}

enum { G_COMMON, G_GGUF, G_INT };

int cmd_quantize(int argc, char **argv)
{
    lmp_job_gguf_params gp;       /* --type: jobs/quantize_gguf.h */
    lmp_qmodel_quant_params ip;   /* --method: formats/qmodel.h */
    lmp_job_gguf_default_params(&gp);
    lmp_qmodel_quant_default_params(&ip);
    plan_ctx pc = {.po = {.target_bpw = -1}, .probes = -1, .refine = -1}; /* --target-bpw / --target-size (quantize_plan.c) */
    const char *out = NULL, *split = NULL, *format = NULL, *dtype = NULL;
    char fmt_choices[160]; /* --format's accepted names: the format table's names and aliases */
    lmp_qformat_choices(fmt_choices, sizeof fmt_choices, NULL);
    int sym = -1, act = -1; /* -1: the method's default */
    uint64_t split_max = 0;
    cli_strlist tt = {0}, keep = {0}, loras = {0};
    long long threads = 0;
    double lora_scale = 1;
    bool json = false, verbose = false, force = false;
    char *lora_tmp = NULL;
    const cli_opt common[] = {
        {"output", 'o', OPT_STR, &out, "OUT", "output GGUF file (--type), or folder (--method)"},
        {"keep", 0, OPT_MULTI, &keep, "REGEX", "tensors (GGUF) or linears (--method gptq|rtn) matching REGEX, by "
                                               "llama.cpp or HF name, stay unquantized (repeatable)"},
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into MODEL first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &force, NULL, "replace an existing output"},
        {"verbose", 'v', OPT_FLAG, &verbose, NULL, "GGUF: measure each tensor's relative RMS error; --method: print "
                                                   "the per-linear error table"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_opt gguf[] = {
        {"type", 0, OPT_NAME, &gp.q.type, "TYPE", "q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, iq4_xs, "
                                                 "iq4_nl, q4_1, q4_0, q3_k_l, q3_k_m, q3_k_s, iq3_m, iq3_s, iq3_xs, "
                                                 "iq3_xxs, q2_k, iq2_m, iq2_s, iq2_xs, iq2_xxs, q2_0, tq2_0, tq1_0, "
                                                 "iq1_m, iq1_s, q1_0, mxfp4_moe, f16, bf16 or f32 (iq3_xs, iq3_xxs, "
                                                 "iq2_* and iq1_* need an importance matrix)"},
        {"target-bpw", 0, OPT_FLOAT, &pc.po.target_bpw, "X", "instead of --type: each tensor's type chosen among the "
                                                           "GGUF types to least predicted KL divergence at X "
                                                           "bits per weight"},
        {"target-size", 0, OPT_STR, &pc.po.target_size, "SIZE", "as --target-bpw, for a file of SIZE bytes (600M, "
                                                                "1.5GiB)"},
        {"target-calib", 0, OPT_STR, &pc.po.calib_path, "FILE", "with a target: the text on which each tensor's "
                                                               "probes are compared with the original model (KL "
                                                               "divergence; default: the --imatrix-calib text)"},
        {"target-probes", 0, OPT_INT, &pc.probes, "N", "with a target: types probed end to end per tensor "
                                                       "(default 2; 0: every point of its front)"},
        {"target-refine", 0, OPT_INT, &pc.refine, "N", "with a target and calibration text: rounds in which the "
                                                       "solved plan is measured whole and each tensor moved to its "
                                                       "neighbouring types in its context (default 2; 0: none)"},
        {"dry-run", 0, OPT_FLAG, &pc.po.dry_run, NULL, "with a target: print the plan (tensor, type, bytes, "
                                                       "predicted error) and write nothing"},
        {"tensor-type", 0, OPT_MULTI, &tt, "REGEX=TYPE", "tensors whose GGUF name matches REGEX get TYPE (repeatable; "
                                                         "first match wins)"},
        {"allow-requantize", 0, OPT_FLAG, &gp.q.allow_requantize, NULL, "accept an input that is already quantized"},
        {"split-max-size", 0, OPT_STR, &split, "N[M|G]", "split into files of at most N bytes of tensors "
                                                        "(llama-gguf-split's layout; M = 10^6, G = 10^9)"},
        {"imatrix-calib", 0, OPT_STR, &gp.imatrix_calib, "FILE", "importance weights (llama.cpp imatrix, E[x^2] "
                                                                 "per input column) from this calibration text"},
        {"imatrix", 0, OPT_STR, &gp.imatrix_file, "FILE", "importance weights from a llama.cpp imatrix file "
                                                         "(llama-imatrix output, legacy .dat or GGUF)"},
        {"imatrix-out", 0, OPT_STR, &gp.imatrix_out, "FILE", "with --imatrix-calib: also write the computed "
                                                             "importance as a llama.cpp legacy imatrix .dat"},
        {"calib-samples", 0, OPT_I32, &gp.calib.n_samples, "N", "--imatrix-calib: chunks (default 128)"},
        {"calib-seqlen", 0, OPT_I32, &gp.calib.seq_len, "L", "--imatrix-calib: tokens per chunk (default 512, capped "
                                                            "to the context)"},
        {"calib-mode", 0, OPT_ENUM, &gp.calib.mode, "random|chunks", "--imatrix-calib: consecutive chunks (default, "
                                                                     "llama-imatrix's) or random windows"},
        {"calib-field", 0, OPT_STR, &gp.calib.text_field, "NAME", "JSONL calibration: the string field with the text "
                                                                  "(default \"text\"; chats in \"messages\" otherwise)"},
        {"seed", 0, OPT_U64, &gp.calib.seed, "S", "seed of random windows (default 0)"},
        {0},
    };
    const cli_opt intg[] = {
        {"method", 0, OPT_ENUM, &ip.pipe.method, "gptq|rtn|awq", "gptq (default), rtn or awq: integer groups written "
                                                                 "as a GPTQ / AWQ / compressed-tensors folder"},
        {"bits", 0, OPT_I32, &ip.pipe.bits, "N", "bits per weight, 2..8 (default 4)"},
        {"group-size", 0, OPT_I32, &ip.pipe.group_size, "N", "columns per group, or -1 per row (default 128)"},
        {"sym", 0, OPT_TRI, &sym, "asym", "symmetric (default for gptq/rtn) or asymmetric (zero points; default "
                                          "for awq)"},
        {"no-clip", 0, OPT_OFF, &ip.pipe.awq_clip, NULL, "AWQ: skip the clipping-range search"},
        {"no-duo-scaling", 0, OPT_OFF, &ip.pipe.awq_duo_scaling, NULL, "AWQ: scales from activations only (s = x^a, "
                                                                       "the paper's) instead of AutoAWQ's x^a / w^(1-a)"},
        {"act-order", 0, OPT_TRI, &act, "no-act-order", "GPTQ: columns by decreasing Hessian diagonal (default), "
                                                         "or in order"},
        {"no-true-sequential", 0, OPT_OFF, &ip.pipe.true_sequential, NULL,
         "GPTQ: all Hessians of a block from one pass over the original block"},
        {"calib-bos", 0, OPT_FLAG, &ip.pipe.calib_bos, NULL,
         "replace the first token of every calibration window by BOS (as inference inputs start)"},
        {"damp", 0, OPT_F32, &ip.pipe.damp, "F", "GPTQ: dampening, a fraction of mean(diag(H)) in (0, 1) "
                                                 "(default 0.01)"},
        {"format", 0, OPT_NAME, &format, fmt_choices,
         "gptq (v1; v2 when asymmetric), gptq_v2, awq (AutoAWQ GEMM) or pack-quantized (compressed-tensors; default "
         "gptq; awq for --method awq)"},
        {"dtype", 0, OPT_NAME, &dtype, "f16|bf16", "precision of every tensor left unquantized (embeddings, norms, "
                                                   "lm_head) and torch_dtype (default: the input's)"},
        {"calib", 0, OPT_STR, &ip.calib_path, "FILE[,FILE]", "calibration data (required for GPTQ and AWQ): plain or "
                                                            "gzip text, JSONL (text field or chats), several files mixed"},
        {"calib-samples", 0, OPT_I32, &ip.calib.n_samples, "N", "calibration windows (default 128)"},
        {"calib-seqlen", 0, OPT_I32, &ip.calib.seq_len, "L", "tokens per window (default 2048, AWQ 512; capped to "
                                                            "the context)"},
        {"calib-mode", 0, OPT_ENUM, &ip.calib.mode, "random|chunks", "random (GPTQ's random windows, default) or "
                                                                     "chunks (consecutive, llama.cpp imatrix)"},
        {"calib-field", 0, OPT_STR, &ip.calib.text_field, "NAME", "JSONL calibration: the string field with the text "
                                                                  "(default \"text\"; chats in \"messages\" otherwise)"},
        {"seed", 0, OPT_U64, &ip.calib.seed, "S", "seed of the random windows (default 0)"},
        {0},
    };
    const cli_group groups[] = {{NULL, common},
                                {"GGUF block types (--type TYPE, or --target-bpw / --target-size)", gguf},
                                {"integer groups (--method gptq|rtn|awq)", intg}};
    const cli_cmd_info info = {
        "quantize", "MODEL -o OUT.gguf --type TYPE [--tensor-type REGEX=TYPE ...] [--keep REGEX ...] "
                    "[--allow-requantize] [--imatrix FILE | --imatrix-calib FILE [--calib-samples N] "
                    "[--calib-seqlen L] [--imatrix-out FILE]] [--force] "
                    "[--verbose] [--json]\n"
                    "       lmpress quantize IN.gguf OUT.gguf TYPE [NTHREADS]   (llama-quantize's form)\n"
                    "       lmpress quantize MODEL -o OUTDIR --method gptq|rtn [--bits 4] [--group-size 128] [--asym] "
                    "[--no-act-order] [--damp 0.01] [--format gptq|gptq_v2|compressed-tensors] --calib FILE "
                    "[--calib-samples N] [--calib-seqlen L] [--seed S] [--force] [--verbose] [--json]\n"
                    "       lmpress quantize MODEL -o OUTDIR --method awq [--group-size 128] [--no-clip] "
                    "[--no-duo-scaling] [--format awq|gptq_v2|compressed-tensors] --calib FILE [...]",
        "Quantize a checkpoint to GGUF with llama.cpp's block types (round to nearest). MODEL is an HF folder\n"
        "or .safetensors (converted to GGUF first, as `lmpress convert` does) or an f32/f16/bf16 GGUF.\n"
        "The _s/_m/_l types are llama.cpp's mixes: e.g. q4_k_m writes the output (or tied token embedding)\n"
        "and half of the attn_v and ffn_down tensors in q6_K. 1-D tensors and norms stay as they are. A\n"
        "tensor whose row length does not fit the block size falls back as llama.cpp does (q4_K -> q5_0,\n"
        "q6_K -> q8_0, ..., f16 when 32 does not divide it), and says so. The output appears only when\n"
        "complete; per-tensor lines go to stderr when it is not a terminal, a progress bar when it is.\n\n"
        "With --method, every linear layer is quantized to integer groups, layer by layer on calibration\n"
        "text (GPTQ: Frantar et al. 2022, true-sequential, as AutoGPTQ; RTN: round to nearest), each block\n"
        "seeing the outputs of the quantized blocks before it, and the model is written as a Hugging Face\n"
        "folder in GPTQ or compressed-tensors (pack-quantized) layout; embeddings, norms and lm_head stay\n"
        "as they are. Memory: the calibration activations, samples x seqlen x hidden x 4 bytes (128 x 2048\n"
        "x 4096 is 4 GiB), plus one block. Per-layer lines and the output error ||WX-QX||/||WX|| against\n"
        "RTN's go to stderr; --verbose prints the per-linear table.\n\n"
        "--method awq (Lin et al. 2023, as AutoAWQ): per layer group, activation-aware scales searched on the\n"
        "calibration text and folded into the preceding RMSNorm / v_proj / up_proj, a clipping search, then\n"
        "asymmetric 4-bit group quantization; written as an AutoAWQ GEMM folder (the folded norm weights\n"
        "included) or, with --format, gptq_v2 / compressed-tensors. Calibration default 128 x 512 tokens.\n"
        "Calibration data (--calib, --imatrix-calib): FILE[,FILE...], each plain or gzip text or JSONL (one\n"
        "object per line: its \"text\" or --calib-field string, or a \"messages\"/\"conversations\" chat rendered\n"
        "with the model's chat template: " LMP_CHAT_SUPPORTED "; others are refused).\n"
        "Random windows are shared among the files by their tokens; the tokens and windows drawn from\n"
        "each file are reported on stderr.\n"
        "--target-bpw X / --target-size SIZE (instead of --type): every tensor llama.cpp's mixes quantize is\n"
        "quantized with each candidate type (q2_K..q6_K, q8_0, iq4_xs, iq3_s, iq4_nl, q4_0, q4_1, q5_0, q5_1;\n"
        "with an importance matrix also iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s), its relative output\n"
        "error on the imatrix statistics measured\n"
        "(E[x^2] per column; 1 without one). With calibration text (--target-calib FILE, or the\n"
        "--imatrix-calib text) each tensor is then quantized ALONE at the types nearest the target\n"
        "(--target-probes, default 2) and the model's KL divergence against the original measured on 8 x 128\n"
        "tokens of it; the other types' errors are scaled by that KLD per unit of error. The types that\n"
        "minimise the summed (predicted KLD) error within the size are chosen by dynamic programming over\n"
        "the Pareto points of each tensor. Then (--target-refine, default 2 rounds) the solved plan is run\n"
        "whole on the same tokens, each tensor moved alone to its neighbouring types in that context, the\n"
        "budget solved again on those measured differences, and the new plan kept only if its KL divergence\n"
        "on the calibration text is lower; after a round that keeps nothing, up to 8 pair moves (a tensor a\n"
        "type dearer, another one cheaper), each measured whole and kept if lower. --dry-run prints the plan.\n"
        "--imatrix-calib FILE (GGUF path): llama.cpp-style importance weights, E[x^2] per input column of\n"
        "every linear over consecutive chunks of FILE (default 128 x 512 tokens) through the float model;\n"
        "recorded as quantize.imatrix.* keys. --imatrix FILE uses llama-imatrix's file instead (the weights\n"
        "llama-quantize --imatrix FILE uses: legacy .dat values / ncall, GGUF in_sum2 / counts).",
        NULL};
    const char **pos;
    cli_seen seen;
    int np, rc = cli_parse_groups(argc, argv, groups, 3, &info, &pos, &np, &seen);
    if (rc) {
        rc = rc > 0 ? 0 : 2;
        goto done;
    }
    const bool int_path = !(seen.only & 1u << G_GGUF);
    if (!(seen.only & (1u << G_GGUF | 1u << G_INT))) {
        fprintf(stderr, "lmpress quantize: --%s (GGUF block types) and --%s (integer groups: GPTQ, RTN, AWQ) do not "
                        "mix\n", seen.first[G_GGUF], seen.first[G_INT]);
        rc = 2;
        goto done;
    }
    if (!int_path && !out && !gp.q.type && (np == 3 || np == 4)) {
        /* llama-quantize's form: IN.gguf OUT.gguf TYPE [NTHREADS] */
        out = pos[1];
        for (char *c = (char *)pos[2]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        gp.q.type = pos[2];
        if (np == 4) {
            char *end;
            threads = strtoll(pos[3], &end, 10);
            if (end == pos[3] || *end || threads < 1) {
                fprintf(stderr, "lmpress quantize: '%s' is not a thread count (IN OUT TYPE [NTHREADS])\n", pos[3]);
                rc = 2;
                goto done;
            }
        }
        np = 1;
    }
    if (threads < 0) {
        fprintf(stderr, "lmpress quantize: --threads must be positive\n");
        rc = 2;
        goto done;
    }
    if (np == 1 && (rc = cli_lora_prepare("quantize", argc, argv, &loras, &pos[0], &lora_tmp)))
        goto done;
    lmp_set_num_threads((int)threads);
    if (int_path) {
        if (np != 1 || !out) {
            fprintf(stderr, "lmpress quantize: need MODEL and -o OUTDIR (see --help)\n");
            rc = 2;
        } else if (cli_filelike_name(out)) {
            fprintf(stderr, "lmpress quantize: --method %s writes a Hugging Face folder, and '%s' is a file name; "
                            "give a folder name with -o, or use --type TYPE for a GGUF file\n",
                    method_name[ip.pipe.method], out);
            rc = 2;
        } else {
            ip.keep = keep.v;
            ip.n_keep = keep.n;
            ip.write.force = force;
            rc = run_int(pos[0], out, &ip, sym, act, format, dtype, verbose, json);
        }
        goto done;
    }
    /* the planner's own options (quantize_plan.c) */
    const bool target = pc.po.target_bpw != -1 || pc.po.target_size;
    double sz;
    if (pc.po.target_bpw != -1 && pc.po.target_size) {
        fprintf(stderr, "lmpress quantize: --target-bpw / --target-size choose the types: not with --type, "
                        "--tensor-type or each other\n");
        rc = 2;
    } else if (pc.po.target_bpw != -1 && !(pc.po.target_bpw > 0 && pc.po.target_bpw <= 64)) {
        fprintf(stderr, "lmpress quantize: --target-bpw must be a positive number of bits per weight\n");
        rc = 2;
    } else if (pc.probes < -1 || pc.probes > 16) {
        fprintf(stderr, "lmpress quantize: --target-probes must be 0 (every point) to 16\n");
        rc = 2;
    } else if (pc.refine < -1 || pc.refine > 10) {
        fprintf(stderr, "lmpress quantize: --target-refine must be 0 (none) to 10\n");
        rc = 2;
    } else if ((pc.po.calib_path || pc.probes != -1 || pc.refine != -1) && !target) {
        fprintf(stderr, "lmpress quantize: --target-calib / --target-probes / --target-refine need --target-bpw or "
                        "--target-size\n");
        rc = 2;
    } else if (pc.po.dry_run && !target) {
        fprintf(stderr, "lmpress quantize: --dry-run needs --target-bpw or --target-size\n");
        rc = 2;
    } else if (pc.po.target_size && !quantize_parse_size(pc.po.target_size, &sz)) {
        fprintf(stderr, "lmpress quantize: --target-size '%s': expected bytes, e.g. 600M or 1.5GiB\n",
                pc.po.target_size);
        rc = 2;
    } else if (np != 1 || (!out && !(target && pc.po.dry_run))) {
        fprintf(stderr, "lmpress quantize: need MODEL, -o OUT and --type TYPE (see --help)\n");
        rc = 2;
    } else if (split && cli_parse_size("quantize", split, &split_max)) {
        rc = 2;
    }
    if (rc)
        goto done;
    if (target) {
        pc.po.json = json;
        pc.model = pos[0];
        pc.imatrix_calib = gp.imatrix_calib;
        pc.calib_field = gp.calib.text_field;
        gp.plan = plan_hook;
        gp.plan_ctx = &pc;
        gp.dry_run = pc.po.dry_run;
        if (!out)
            out = "(dry run).gguf";
    }
    gp.q.tensor_type = tt.v;
    gp.q.n_tensor_type = tt.n;
    gp.q.keep = keep.v;
    gp.q.n_keep = keep.n;
    gp.q.force = force;
    gp.q.measure_error = verbose;
    gp.q.on_tensor = json ? NULL : print_tensor;
    gp.notes = !json;
    rc = run_gguf(pos[0], out, &gp, split_max, json);
done:
    free(tt.v);
    free(keep.v);
    free(loras.v);
    cli_lora_cleanup(lora_tmp);
    return rc;
}
