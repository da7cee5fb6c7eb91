/*
 * lmpress quantize: two paths sharing one option table.
 *   GGUF (--type): llama.cpp's types and per-tensor mixes (round-to-nearest). Converts an
 *   HF checkpoint to a temporary GGUF with formats' lmp_convert when needed, and makes one
 *   lib/quant call.
 *   Integer groups (--method gptq|rtn): calibrated layer-by-layer GPTQ or RTN written as
 *   a GPTQ or compressed-tensors folder: one formats/qmodel.h call (lmp_qmodel_quantize).
 */
#include "cli.h"
#include "formats/formats.h"
#include "jobs/quantize_model.h"
#include "lib/quant/pipeline.h"
#include "lib/quant/quant.h"
#include "quantize_plan.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

typedef struct {
    const char *method, *format, *calib, *calib_mode, *calib_field, *dtype;
    long long bits, group_size, samples, seqlen, seed;
    double damp;
    bool sym, asym, act_order, no_act_order, no_true_seq, force, json, verbose;
    bool no_clip, no_duo;   /* AWQ */
    const char *const *keep; /* --keep: linears left dense */
    int n_keep;
} int_opts;

/* "elapsed 12.3s, ETA 45.6s": the whole job's, from the layers done (layers take about
 * the same time each) */
static void eta_text(const void *ctx, int layer, int n_layers, char *buf, size_t n)
{
    const double *t0 = ctx;
    if (!t0) {
        buf[0] = 0;
        return;
    }
    double el = lmp_time_s() - *t0;
    double eta = el / (layer + 1) * (n_layers - layer - 1);
    snprintf(buf, n, "; elapsed %.1fs, ETA %.1fs", el, eta);
}

static void print_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_qlinear_stats *st)
{
    char eta[64];
    eta_text(ctx, layer, n_layers, eta, sizeof eta);
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

static int quantize_int(const char *model, const char *out, const int_opts *o)
{
    lmp_qmodel_quant_params p;
    lmp_qmodel_quant_default_params(&p);
    const char *method = o->method ? o->method : "gptq";
    if (strcmp(method, "gptq") == 0)
        p.pipe.method = LMP_QMETHOD_GPTQ;
    else if (strcmp(method, "rtn") == 0)
        p.pipe.method = LMP_QMETHOD_RTN;
    else if (strcmp(method, "awq") == 0)
        p.pipe.method = LMP_QMETHOD_AWQ;
    else {
        fprintf(stderr, "lmpress quantize: --method must be gptq, rtn or awq\n");
        return 2;
    }
    const bool awq = p.pipe.method == LMP_QMETHOD_AWQ;
    if ((o->no_clip || o->no_duo) && !awq) {
        fprintf(stderr, "lmpress quantize: --no-clip / --no-duo-scaling apply to AWQ only\n");
        return 2;
    }
    if (o->sym && o->asym) {
        fprintf(stderr, "lmpress quantize: --sym and --asym conflict\n");
        return 2;
    }
    if (o->act_order && o->no_act_order) {
        fprintf(stderr, "lmpress quantize: --act-order and --no-act-order conflict\n");
        return 2;
    }
    p.pipe.sym = awq ? o->sym : !o->asym; /* AWQ's convention: zero points */
    if (o->no_act_order)
        p.pipe.act_order = false;
    if (awq) {
        if (o->act_order) {
            fprintf(stderr, "lmpress quantize: AWQ has no act-order (--act-order applies to GPTQ only)\n");
            return 2;
        }
        p.pipe.act_order = false;
        p.pipe.awq_clip = !o->no_clip;
        p.pipe.awq_duo_scaling = !o->no_duo;
    }
    if (p.pipe.method == LMP_QMETHOD_RTN) {
        if (o->act_order) {
            fprintf(stderr, "lmpress quantize: --act-order applies to GPTQ only\n");
            return 2;
        }
        p.pipe.act_order = false;
    }
    p.pipe.true_sequential = !o->no_true_seq;
    if (o->bits != -1) {
        if (o->bits < 2 || o->bits > 8) {
            fprintf(stderr, "lmpress quantize: --bits must be 2..8\n");
            return 2;
        }
        p.pipe.bits = (int)o->bits;
    }
    if (o->group_size != -2) {
        if (o->group_size == 0 || o->group_size < -1 || o->group_size > 1 << 20) {
            fprintf(stderr, "lmpress quantize: --group-size must be positive, or -1 (one group per row)\n");
            return 2;
        }
        p.pipe.group_size = (int)o->group_size;
    }
    if (o->damp >= 0) {
        if (!(o->damp > 0 && o->damp < 1)) {
            fprintf(stderr, "lmpress quantize: --damp must be in (0, 1)\n");
            return 2;
        }
        p.pipe.damp = (float)o->damp;
    }
    const char *fmt = o->format ? o->format : awq ? "awq" : "gptq";
    /* AWQ GEMM holds any 4-bit grouped weights without act-order (checked below) */
    if (strcmp(fmt, "awq") == 0)
        p.write.format = LMP_QFMT_AWQ_GEMM;
    else if (strcmp(fmt, "gptq") == 0)
        p.write.format = p.pipe.sym ? LMP_QFMT_GPTQ_V1 : LMP_QFMT_GPTQ_V2;
    else if (strcmp(fmt, "gptq_v2") == 0 || strcmp(fmt, "gptq-v2") == 0)
        p.write.format = LMP_QFMT_GPTQ_V2;
    else if (strcmp(fmt, "compressed-tensors") == 0 || strcmp(fmt, "ct") == 0)
        p.write.format = LMP_QFMT_CT_PACKED;
    else {
        fprintf(stderr, "lmpress quantize: --format must be gptq, gptq_v2, awq or compressed-tensors\n");
        return 2;
    }
    if (strcmp(fmt, "gptq") == 0 && !p.pipe.sym && !o->json)
        fprintf(stderr, "note: asymmetric GPTQ is written as checkpoint_format gptq_v2 (v1 stores zero-1, which "
                        "overflows)\n");
    if (o->samples != -1) {
        if (o->samples < 1 || o->samples > 1 << 20) {
            fprintf(stderr, "lmpress quantize: --calib-samples must be positive\n");
            return 2;
        }
        p.calib.n_samples = (int)o->samples;
    }
    if (o->seqlen != -1) {
        if (o->seqlen < 2 || o->seqlen > 1 << 20) {
            fprintf(stderr, "lmpress quantize: --calib-seqlen must be at least 2\n");
            return 2;
        }
        p.calib.seq_len = (int)o->seqlen;
    }
    if (o->seed != -1) {
        if (o->seed < 0) {
            fprintf(stderr, "lmpress quantize: --seed must be non-negative\n");
            return 2;
        }
        p.calib.seed = (uint64_t)o->seed;
    }
    if (o->calib_mode) {
        if (strcmp(o->calib_mode, "random") == 0)
            p.calib.mode = LMP_CALIB_RANDOM;
        else if (strcmp(o->calib_mode, "chunks") == 0)
            p.calib.mode = LMP_CALIB_CHUNKS;
        else {
            fprintf(stderr, "lmpress quantize: --calib-mode must be random or chunks\n");
            return 2;
        }
    }
    if (p.write.format == LMP_QFMT_AWQ_GEMM && (p.pipe.bits != 4 || p.pipe.act_order)) {
        fprintf(stderr, "lmpress quantize: --format awq (AutoAWQ GEMM) holds 4-bit weights without act-order%s\n",
                p.pipe.act_order ? " (add --no-act-order)" : "");
        return 2;
    }
    if ((p.pipe.method == LMP_QMETHOD_GPTQ || awq) && !o->calib) {
        fprintf(stderr, "lmpress quantize: %s needs calibration text: --calib FILE (plain or .gz)\n",
                awq ? "AWQ" : "GPTQ");
        return 2;
    }
    p.calib_path = o->calib;
    p.calib.text_field = o->calib_field;
    p.keep = o->keep;
    p.n_keep = o->n_keep;
    if (o->dtype) {
        p.write.convert_dense = true;
        p.write.dense_dtype = strcmp(o->dtype, "bf16") == 0 ? LMP_DT_BF16 : LMP_DT_F16;
    }
    p.write.force = o->force;
    p.pipe.on_layer_done = o->json ? NULL : print_layer;
    double t_start = lmp_time_s();
    p.pipe.log_ctx = &t_start;

    lmp_qmodel_quant_result r;
    int e = lmp_qmodel_quantize(model, out, &p, &r);
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
    const char *fname = lmp_qformat_name(p.write.format);
    if (o->json) {
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
               method, fname, p.pipe.bits, p.pipe.group_size, p.pipe.sym ? "true" : "false",
               p.pipe.act_order ? "true" : "false", (double)p.pipe.damp, p.pipe.true_sequential ? "true" : "false",
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
        if (o->verbose) {
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
               out, method, p.pipe.bits, p.pipe.group_size, p.pipe.sym ? "sym" : "asym",
               p.pipe.act_order ? " act-order" : "", fname, ws->n_quantized, cli_bytes((double)ws->qbytes, b1, sizeof b1),
               cli_bytes((double)bw.file_bytes, b2, sizeof b2), bpw_lin, bpw_all);
        if (pr->n_samples)
            printf("calibration: %d x %d tokens (of %lld in the text), activations %s\n", pr->n_samples, pr->seq_len,
                   (long long)r.calib_text_tokens, cli_bytes((double)pr->act_bytes, b3, sizeof b3));
        if (n_cmp && (p.pipe.method == LMP_QMETHOD_GPTQ || awq))
            printf("%s output error below RTN's on %d of %d linears; worst %.5f (%s)\n", awq ? "AWQ" : "GPTQ",
                   n_cmp - pr->n_worse_than_rtn, n_cmp, pr->worst_err, pr->worst_name);
        else if (n_cmp)
            printf("worst output error %.5f (%s)\n", pr->worst_err, pr->worst_name);
        printf("%.2fs, peak RSS %s\n", r.seconds, cli_bytes((double)r.peak_rss, b3, sizeof b3));
    }
    lmp_qmodel_quant_result_free(&r);
    return 0;
}

int cmd_quantize(int argc, char **argv)
{
    const char *out = NULL, *type = NULL, *imatrix_calib = NULL, *imatrix_file = NULL, *imatrix_out = NULL,
               *split = NULL;
    uint64_t split_max = 0;
    cli_strlist tt = {0}, keep = {0};
    lmp_imatrix im = {0};
    lmp_imatrix_file imf = {0};
    long long threads = 0;
    bool force = false, json = false, verbose = false, requant = false;
    int_opts io = {0};
    quantize_plan_opts po = {0}; /* --target-bpw / --target-size (quantize_plan.c) */
    char **plan_rules = NULL;
    int n_plan_rules = 0;
    po.target_bpw = -1;
    io.bits = -1;
    io.group_size = -2;
    io.samples = -1;
    io.seqlen = -1;
    io.seed = -1;
    io.damp = -1;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into MODEL first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"output", 'o', OPT_STR, &out, "OUT", "output GGUF file, or folder (--method)"},
        {"type", 0, OPT_NAME, &type, "TYPE", "q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, iq4_xs, iq4_nl, "
                                            "q4_1, q4_0, q3_k_l, q3_k_m, q3_k_s, iq3_m, iq3_s, iq3_xs, iq3_xxs, "
                                            "q2_k, iq2_m, iq2_s, iq2_xs, iq2_xxs, q2_0, tq2_0, tq1_0, iq1_m, iq1_s, "
                                            "q1_0, mxfp4_moe, f16, bf16 or f32 (iq3_xs, iq3_xxs, iq2_* and iq1_* "
                                            "need an importance matrix)"},
        {"target-bpw", 0, OPT_FLOAT, &po.target_bpw, "X", "instead of --type: each tensor's type chosen among the "
                                                        "GGUF types to least measured error at X bits per weight"},
        {"target-size", 0, OPT_STR, &po.target_size, "SIZE", "as --target-bpw, for a file of SIZE bytes (600M, "
                                                             "1.5GiB)"},
        {"dry-run", 0, OPT_FLAG, &po.dry_run, NULL, "with a target: print the plan (tensor, type, bytes, "
                                                    "predicted error) and write nothing"},
        {"tensor-type", 0, OPT_MULTI, &tt, "REGEX=TYPE", "tensors whose GGUF name matches REGEX get TYPE (repeatable; "
                                                         "first match wins)"},
        {"keep", 0, OPT_MULTI, &keep, "REGEX", "tensors (GGUF) or linears (--method gptq|rtn) matching REGEX, by llama.cpp or HF name, stay unquantized (repeatable)"},
        {"allow-requantize", 0, OPT_FLAG, &requant, NULL, "accept an input that is already quantized"},
        {"split-max-size", 0, OPT_STR, &split, "N[M|G]", "GGUF: split into files of at most N bytes of tensors "
                                                        "(llama-gguf-split's layout; M = 10^6, G = 10^9)"},
        {"method", 0, OPT_NAME, &io.method, "gptq|rtn|awq", "gptq, rtn or awq: integer groups written as a GPTQ / AWQ / "
                                                 "compressed-tensors folder (instead of --type)"},
        {"bits", 0, OPT_INT, &io.bits, "N", "--method: bits per weight, 2..8 (default 4)"},
        {"group-size", 0, OPT_INT, &io.group_size, "N", "--method: columns per group, or -1 per row (default 128)"},
        {"sym", 0, OPT_FLAG, &io.sym, NULL, "--method: symmetric (default for gptq/rtn)"},
        {"asym", 0, OPT_FLAG, &io.asym, NULL, "--method: asymmetric (zero points; always for awq unless --sym)"},
        {"no-clip", 0, OPT_FLAG, &io.no_clip, NULL, "AWQ: skip the clipping-range search"},
        {"no-duo-scaling", 0, OPT_FLAG, &io.no_duo, NULL, "AWQ: scales from activations only (s = x^a, the paper's) "
                                                          "instead of AutoAWQ's x^a / w^(1-a)"},
        {"act-order", 0, OPT_FLAG, &io.act_order, NULL, "GPTQ: columns by decreasing Hessian diagonal (default)"},
        {"no-act-order", 0, OPT_FLAG, &io.no_act_order, NULL, "GPTQ: columns in order"},
        {"no-true-sequential", 0, OPT_FLAG, &io.no_true_seq, NULL,
         "GPTQ: all Hessians of a block from one pass over the original block"},
        {"damp", 0, OPT_FLOAT, &io.damp, "F", "GPTQ: dampening, a fraction of mean(diag(H)) (default 0.01)"},
        {"format", 0, OPT_NAME, &io.format, "gptq|gptq_v2|gptq-v2|awq|compressed-tensors|ct", "--method: gptq (v1; v2 when asymmetric), gptq_v2, awq (AutoAWQ "
                                                "GEMM) or compressed-tensors (default gptq; awq for --method awq)"},
        {"dtype", 0, OPT_NAME, &io.dtype, "f16|bf16", "--method: precision of every tensor left unquantized "
                                                     "(embeddings, norms, lm_head) and torch_dtype (default: the input's)"},
        {"calib", 0, OPT_STR, &io.calib, "FILE[,FILE]", "calibration data (required for GPTQ and AWQ): plain or gzip "
                                                       "text, JSONL (text field or chats), several files mixed"},
        {"calib-field", 0, OPT_STR, &io.calib_field, "NAME", "JSONL calibration: the string field with the text "
                                                             "(default \"text\"; chats in \"messages\" otherwise)"},
        {"imatrix-calib", 0, OPT_STR, &imatrix_calib, "FILE", "--type: importance weights (llama.cpp imatrix, E[x^2] "
                                                            "per input column) from this calibration text"},
        {"imatrix", 0, OPT_STR, &imatrix_file, "FILE", "--type: importance weights from a llama.cpp imatrix file "
                                                      "(llama-imatrix output, legacy .dat or GGUF)"},
        {"imatrix-out", 0, OPT_STR, &imatrix_out, "FILE", "with --imatrix-calib: also write the computed importance "
                                                         "as a llama.cpp legacy imatrix .dat"},
        {"calib-samples", 0, OPT_INT, &io.samples, "N", "calibration windows (default 128)"},
        {"calib-seqlen", 0, OPT_INT, &io.seqlen, "L", "tokens per window (default 2048, AWQ and imatrix 512; capped "
                                                     "to the context)"},
        {"calib-mode", 0, OPT_NAME, &io.calib_mode, "random|chunks", "random (GPTQ's random windows, default) or chunks "
                                                         "(consecutive, llama.cpp imatrix)"},
        {"seed", 0, OPT_INT, &io.seed, "S", "seed of the random windows (default 0)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &force, NULL, "replace an existing output"},
        {"verbose", 'v', OPT_FLAG, &verbose, NULL, "GGUF: measure each tensor's relative RMS error; --method: print "
                                                   "the per-linear error table"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
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
        "quantized with each candidate type (q2_K..q6_K, q8_0, iq4_xs, iq3_s; with an importance matrix also\n"
        "iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m), its relative output error on the imatrix statistics measured\n"
        "(E[x^2] per column; 1 without one), and the types that minimise the summed error within the size\n"
        "chosen by dynamic programming over the Pareto points of each tensor. --dry-run prints the plan.\n"
        "--imatrix-calib FILE (GGUF path): llama.cpp-style importance weights, E[x^2] per input column of\n"
        "every linear over consecutive chunks of FILE (default 128 x 512 tokens) through the float model;\n"
        "recorded as quantize.imatrix.* keys. --imatrix FILE uses llama-imatrix's file instead (the weights\n"
        "llama-quantize --imatrix FILE uses: legacy .dat values / ncall, GGUF in_sum2 / counts).",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np), rc = 0;
    if (r) {
        free(tt.v);
        free(keep.v);
        free(loras.v);
        return r > 0 ? 0 : 2;
    }
    char *tmp = NULL;
    const double t_cmd = lmp_time_s(); /* the summary's time covers conversion and imatrix too */
    double t_imatrix = 0, t_conv = 0;
    bool int_any = io.method || io.format || io.calib || io.bits != -1 || io.group_size != -2;
    if (!int_any && !out && !type && (np == 3 || np == 4)) {
        /* llama-quantize's form: IN.gguf OUT.gguf TYPE [NTHREADS] */
        out = pos[1];
        for (char *c = (char *)pos[2]; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        type = pos[2];
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
    if (np == 1 && (rc = cli_lora_prepare("quantize", argc, argv, &loras, &pos[0], &lora_tmp)))
        goto done;
    io.force = force;
    io.json = json;
    io.verbose = verbose;
    /* the calibration window options serve --imatrix-calib on the GGUF path */
    bool calib_opts = io.samples != -1 || io.seqlen != -1 || io.seed != -1 || io.calib_mode || io.calib_field;
    bool int_path = io.method || io.format || io.calib || io.dtype || io.bits != -1 || io.group_size != -2 || io.asym ||
                    io.sym || io.act_order || io.no_act_order || io.damp >= 0 || io.no_true_seq || io.no_clip ||
                    io.no_duo || (calib_opts && !imatrix_calib);
    if (int_path) {
        io.keep = keep.v;
        io.n_keep = keep.n;
        if (type || tt.n || requant || imatrix_calib || imatrix_file || imatrix_out || split) {
            fprintf(stderr, "lmpress quantize: --type/--tensor-type/--allow-requantize/--imatrix-calib/--split-max-size (GGUF) "
                            "and --method/--bits/--format/--calib (GPTQ, RTN, AWQ) do not mix\n");
            rc = 2;
        } else if (np != 1 || !out) {
            fprintf(stderr, "lmpress quantize: need MODEL and -o OUTDIR (see --help)\n");
            rc = 2;
        } else if (cli_filelike_name(out)) {
            fprintf(stderr, "lmpress quantize: --method %s writes a Hugging Face folder, and '%s' is a file name; "
                            "give a folder name with -o, or use --type TYPE for a GGUF file\n",
                    io.method ? io.method : "gptq", out);
            rc = 2;
        } else if (threads < 0) {
            fprintf(stderr, "lmpress quantize: --threads must be positive\n");
            rc = 2;
        } else {
            lmp_set_num_threads((int)threads);
            rc = quantize_int(pos[0], out, &io);
        }
        goto done;
    }
    bool target = po.target_bpw != -1 || po.target_size;
    if (target && (type || tt.n || (po.target_bpw != -1 && po.target_size))) {
        fprintf(stderr, "lmpress quantize: --target-bpw / --target-size choose the types: not with --type, "
                        "--tensor-type or each other\n");
        rc = 2;
        goto done;
    }
    if (target && po.target_bpw != -1 && !(po.target_bpw > 0 && po.target_bpw <= 64)) {
        fprintf(stderr, "lmpress quantize: --target-bpw must be a positive number of bits per weight\n");
        rc = 2;
        goto done;
    }
    if (po.dry_run && !target) {
        fprintf(stderr, "lmpress quantize: --dry-run needs --target-bpw or --target-size\n");
        rc = 2;
        goto done;
    }
    if (target) {
        double sz;
        if (po.target_size && !quantize_parse_size(po.target_size, &sz)) {
            fprintf(stderr, "lmpress quantize: --target-size '%s': expected bytes, e.g. 600M or 1.5GiB\n",
                    po.target_size);
            rc = 2;
            goto done;
        }
        type = "q8_0"; /* every planned tensor is overridden; q8_0 gives the file type */
        if (po.dry_run && !out)
            out = "(dry run).gguf";
    }
    if (np != 1 || !out || !type) {
        fprintf(stderr, "lmpress quantize: need MODEL, -o OUT and --type TYPE (see --help)\n");
        rc = 2;
        goto done;
    }
    if (!lmp_gguf_qtype_find(type)) {
        const char *names[64];
        int nn = 0;
        for (const lmp_gguf_qtype *q = lmp_gguf_qtype_list(); q->name && nn < 64; q++)
            names[nn++] = q->name;
        const char *sg = cli_suggest(type, names, nn);
        if (sg)
            fprintf(stderr, "lmpress quantize: unknown type '%s'; did you mean '%s'? One of:\n", type, sg);
        else
            fprintf(stderr, "lmpress quantize: unknown type '%s'; one of:\n", type);
        for (const lmp_gguf_qtype *q = lmp_gguf_qtype_list(); q->name; q++)
            fprintf(stderr, "  %-8s %s\n", q->name, q->help);
        rc = 2;
        goto done;
    }
    if (split && cli_parse_size("quantize", split, &split_max)) {
        rc = 2;
        goto done;
    }
    if (!cli_is_gguf_name(out)) {
        fprintf(stderr, "lmpress quantize: --type %s writes a GGUF file, so the output must end in .gguf (not '%s'); "
                        "--method gptq|rtn|awq writes a Hugging Face folder\n", type, out);
        rc = 2;
        goto done;
    }
    if (!force && !po.dry_run && lmp_path_exists(out)) { /* refuse before any conversion work */
        fprintf(stderr, "lmpress quantize: error: %s exists (use --force to replace it)\n", out);
        rc = 1;
        goto done;
    }
    if (threads < 0) {
        fprintf(stderr, "lmpress quantize: --threads must be positive\n");
        rc = 2;
        goto done;
    }
    if (imatrix_file && imatrix_calib) {
        fprintf(stderr, "lmpress quantize: --imatrix FILE and --imatrix-calib TEXT conflict (one source of weights)\n");
        rc = 2;
        goto done;
    }
    if (imatrix_out && !imatrix_calib) {
        fprintf(stderr, "lmpress quantize: --imatrix-out needs --imatrix-calib (it saves the computed importance)\n");
        rc = 2;
        goto done;
    }
    lmp_set_num_threads((int)threads);

    if (imatrix_file) { /* read first: a broken file fails before any conversion */
        int e = lmp_imatrix_file_load(imatrix_file, &imf);
        if (e) {
            rc = cli_fail("quantize", e);
            goto done;
        }
        if (!json)
            fprintf(stderr, "imatrix: %d entries, %d chunks%s%s from %s\n", imf.n_entries, imf.chunks,
                    imf.dataset ? " of " : "", imf.dataset ? imf.dataset : "", imatrix_file);
    }
    if (imatrix_calib) { /* importance weights first: a bad calibration text fails before conversion */
        lmp_calib_params cp;
        lmp_calib_default_params(&cp);
        cp.mode = LMP_CALIB_CHUNKS; /* llama-imatrix: consecutive chunks, BOS first */
        if (io.samples != -1) {
            if (io.samples < 1 || io.samples > 1 << 20) {
                fprintf(stderr, "lmpress quantize: --calib-samples must be positive\n");
                rc = 2;
                goto done;
            }
            cp.n_samples = (int)io.samples;
        }
        if (io.seqlen != -1) {
            if (io.seqlen < 2 || io.seqlen > 1 << 20) {
                fprintf(stderr, "lmpress quantize: --calib-seqlen must be at least 2\n");
                rc = 2;
                goto done;
            }
            cp.seq_len = (int)io.seqlen;
        }
        if (io.seed > 0)
            cp.seed = (uint64_t)io.seed;
        cp.text_field = io.calib_field;
        if (io.calib_mode) {
            if (strcmp(io.calib_mode, "random") == 0)
                cp.mode = LMP_CALIB_RANDOM;
            else if (strcmp(io.calib_mode, "chunks") != 0) {
                fprintf(stderr, "lmpress quantize: --calib-mode must be random or chunks\n");
                rc = 2;
                goto done;
            }
        }
        double ti = lmp_time_s();
        int e = lmp_imatrix_compute(pos[0], imatrix_calib, &cp, !json, &im);
        t_imatrix = lmp_time_s() - ti;
        if (e) {
            rc = cli_fail("quantize", e);
            goto done;
        }
        if (!json)
            fprintf(stderr, "imatrix: %d chunks (%lld tokens) from %s, %d linears\n", im.n_chunks,
                    (long long)im.n_tokens, imatrix_calib, im.n_entries);
        if (im.ev) { /* mixture of experts: say which experts the calibration never reached */
            int unreached = 0;
            for (int l = 0; l < im.n_layers; l++) {
                const int64_t *cnt = im.ecount + (int64_t)l * im.n_experts;
                bool sparse = false;
                int in_layer = 0;
                for (int x = 0; x < im.n_experts; x++)
                    sparse |= cnt[x] > 0;
                for (int x = 0; sparse && x < im.n_experts; x++) {
                    if (cnt[x])
                        continue;
                    if (!unreached++)
                        fprintf(stderr, "imatrix: experts no calibration token was routed to are quantized "
                                        "without importance weights (as RTN):");
                    if (in_layer++)
                        fprintf(stderr, " %d", x);
                    else
                        fprintf(stderr, " layer %d experts %d", l, x);
                }
                if (in_layer)
                    fprintf(stderr, ";");
            }
            if (unreached)
                fprintf(stderr, " %d in all\n", unreached);
            else if (!json)
                fprintf(stderr, "imatrix: every expert was reached by the calibration tokens\n");
            if (imatrix_out) {
                rc = cli_fail("quantize", lmp_err(LMP_EUNSUPPORTED, "--imatrix-out: writing the per-expert "
                                                  "importance of a mixture of experts is not supported"));
                goto done;
            }
        }
        if (imatrix_out && (e = lmp_imatrix_file_save(imatrix_out, &im, imatrix_calib, force))) {
            rc = cli_fail("quantize", e);
            goto done;
        }
    }

    const char *src = pos[0];
    if (lmp_path_is_dir(src) || !cli_is_gguf_name(src)) {
        size_t n = strlen(out) + 64;
        tmp = malloc(n);
        if (!tmp) {
            rc = cli_fail("quantize", lmp_err(LMP_ENOMEM, "out of memory"));
            goto done;
        }
        snprintf(tmp, n, "%s.src.tmp.%ld.gguf", out, (long)getpid());
        lmp_temp_register(tmp, false); /* removed on SIGINT/SIGTERM */
        lmp_convert_params cp;
        lmp_convert_result cr;
        lmp_convert_default_params(&cp);
        cp.force = true;
        cp.quiet = true;
        if (!json)
            fprintf(stderr, "converting %s to GGUF (llama.cpp names and vocabulary) first\n", src);
        double tc = lmp_time_s();
        int e = lmp_convert(src, tmp, &cp, &cr);
        t_conv = lmp_time_s() - tc;
        if (e) {
            unlink(tmp);
            lmp_temp_unregister(tmp);
            /* the temporary is ours, not the user's: name the output they asked for */
            char msg[1024];
            const char *m = lmp_errmsg(), *at = strstr(m, tmp);
            if (at) {
                snprintf(msg, sizeof msg, "%.*s%s%s", (int)(at - m), m, out, at + strlen(tmp));
                lmp_err(e, "%s", msg);
            }
            rc = cli_fail("quantize", e);
            goto done;
        }
        src = tmp;
    }

    lmp_gguf_quant_params p;
    lmp_gguf_quant_default_params(&p);
    p.type = type;
    p.tensor_type = tt.v;
    p.n_tensor_type = tt.n;
    p.keep = keep.v;
    p.n_keep = keep.n;
    p.allow_requantize = requant;
    p.force = force;
    p.measure_error = verbose;
    p.on_tensor = json ? NULL : print_tensor;
    if (imatrix_calib) {
        p.weights = lmp_imatrix_weights;
        p.weights_ctx = &im;
        /* no imatrix file exists: both keys name the calibration text it came from */
        p.imatrix_file = imatrix_calib;
        p.imatrix_dataset = imatrix_calib;
        p.imatrix_entries = im.n_entries;
        p.imatrix_chunks = im.n_chunks;
    } else if (imatrix_file) { /* the keys llama-quantize writes for --imatrix */
        p.weights = lmp_imatrix_file_weights;
        p.weights_ctx = &imf;
        p.weights_len = lmp_imatrix_file_len; /* refuses entries of another model's shapes */
        p.imatrix_file = imatrix_file;
        p.imatrix_dataset = imf.dataset;
        p.imatrix_entries = imf.n_entries;
        p.imatrix_chunks = imf.chunks;
    }
    if (target) { /* measure, solve, and override every planned tensor */
        po.json = json;
        po.weights = p.weights;
        po.weights_ctx = p.weights_ctx;
        po.weights_len = p.weights_len;
        int e = quantize_plan_make(src, pos[0], &po, &plan_rules, &n_plan_rules);
        if (e || po.dry_run) {
            if (tmp) {
                unlink(tmp);
                lmp_temp_unregister(tmp);
            }
            rc = e ? cli_fail("quantize", e) : 0;
            goto done;
        }
        p.tensor_type = (const char *const *)plan_rules;
        p.n_tensor_type = n_plan_rules;
        p.on_tensor = NULL; /* the plan was printed */
    }
    lmp_gguf_quant_result res;
    int e = lmp_gguf_quantize(src, out, &p, &res);
    if (tmp) {
        unlink(tmp);
        lmp_temp_unregister(tmp);
    }
    if (e) {
        rc = cli_fail("quantize", e);
        goto done;
    }
    const lmp_gguf_qtype *qt = lmp_gguf_qtype_find(type);
    lmp_bpw gbw; /* bits per weight by the one definition (lib/io/bpw.h), before any split */
    if (lmp_path_bpw(out, &gbw) != 0)
        memset(&gbw, 0, sizeof gbw);
    if ((rc = cli_gguf_deploy("quantize", out, pos[0], split_max, force, json)))
        goto done;
    const double t_total = lmp_time_s() - t_cmd;
    if (json) {
        printf("{\"input\": ");
        cli_json_str(pos[0]);
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
        if (imatrix_calib)
            printf(", \"imatrix_chunks\": %d, \"imatrix_tokens\": %lld, \"imatrix_entries\": %d", im.n_chunks,
                   (long long)im.n_tokens, im.n_entries);
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
        if (imatrix_calib)
            printf(", %.2fs importance weights", t_imatrix);
        if (t_conv > 0)
            printf(", %.2fs converting to GGUF", t_conv);
        printf("\n");
        if (res.n_fallback)
            printf("%d tensor(s) did not fit their block size and used a fallback type\n", res.n_fallback);
        if (res.rel_rms_max >= 0)
            printf("largest relative RMS error: %.5f (%s)\n", res.rel_rms_max, res.rel_rms_max_name);
    }
done:
    for (int i = 0; i < n_plan_rules; i++)
        free(plan_rules[i]);
    free(plan_rules);
    lmp_imatrix_free(&im);
    lmp_imatrix_file_free(&imf);
    free(tmp);
    free(tt.v);
    free(keep.v);
    free(loras.v);
    cli_lora_cleanup(lora_tmp);
    return rc;
}
