/*
 * lmpress prune: unstructured / N:M pruning (magnitude, Wanda, SparseGPT, optionally
 * SparseGPT with joint integer quantization) or structured pruning (heads, KV heads, FFN
 * channels, layers) of a Hugging Face checkpoint. Two option tables (--method,
 * --structured) whose rows point into lmp_prune_model_params; lmp_prune_model_check
 * refuses bad values; one formats/sparse.h call (lmp_prune_model); no algorithm code here.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "jobs/prune_model.h"
#include "jobs/dense_input.h"
#include "lib/prune/prune.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(size_t) == sizeof(uint64_t), "--calib-offset / --calib-bytes rows are OPT_U64");

static void print_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_prune_linear_stats *st)
{
    char eta[64];
    cli_eta_text(ctx, layer, n_layers, eta, sizeof eta);
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

static int parse_pattern(const char *s, int *n, int *m)
{
    char *end;
    errno = 0;
    long a = strtol(s, &end, 10);
    if (errno || end == s || *end != ':')
        return -1;
    const char *t = end + 1;
    long b = strtol(t, &end, 10);
    if (errno || end == t || *end || a <= 0 || b <= 0 || a >= b || b > 64)
        return -1;
    *n = (int)a;
    *m = (int)b;
    return 0;
}

static int bad(const char *msg)
{
    fprintf(stderr, "lmpress prune: %s\n", msg);
    return 2;
}

enum { G_COMMON, G_UNSTR, G_STRUCT };

int cmd_prune(int argc, char **argv)
{
    lmp_prune_model_params p;
    lmp_prune_model_default_params(&p);
    lmp_prune_spec *s = &p.prune.spec;
    const char *out = NULL, *pattern = NULL, *split = NULL, *qformat = NULL;
    char qfmt_choices[64]; /* --qformat: the format table's GPTQ rows, names and aliases */
    lmp_qformat_choices(qfmt_choices, sizeof qfmt_choices, "gptq");
    int method = -1, format = -1, structured = -1; /* -1: not given */
    uint64_t split_max = 0;
    double sparsity = -1; /* -1: not given (exactly one of --sparsity and --pattern) */
    long long threads = 0;
    bool json = false, verbose = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt common[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into MODEL first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"output", 'o', OPT_STR, &out, "OUT", "output folder, or a .gguf file (GGUF: by the extension or --format gguf)"},
        {"calib", 0, OPT_STR, &p.calib_path, "FILE[,FILE]", "calibration data (all but magnitude): plain or gzip "
                                                           "text, JSONL (text field or chats), several files mixed"},
        {"calib-field", 0, OPT_STR, &p.calib.text_field, "NAME", "JSONL calibration: the string field with the text"},
        {"calib-samples", 0, OPT_I32, &p.calib.n_samples, "N", "calibration windows (default 128)"},
        {"calib-seqlen", 0, OPT_I32, &p.calib.seq_len, "L", "tokens per window (default 2048, capped to the context)"},
        {"calib-offset", 0, OPT_U64, &p.calib_offset, "BYTES", "use the calibration file from this byte (default 0)"},
        {"calib-bytes", 0, OPT_U64, &p.calib_bytes, "BYTES", "use at most this many bytes of it (default all)"},
        {"calib-bos", 0, OPT_FLAG, &p.prune.calib_bos, NULL, "replace the first token of every calibration window by "
                                                            "BOS (as inference inputs start; default: the windows as drawn)"},
        {"seed", 0, OPT_U64, &p.calib.seed, "S", "seed of the random windows (default 0)"},
        {"format", 0, OPT_ENUM, &format, "safetensors|compressed-tensors|gguf|ct", "safetensors (dense, zeros kept; "
                                                     "default), compressed-tensors (sparse-24-bitmask for 2:4, else "
                                                     "sparse-bitmask) or gguf"},
        {"split-max-size", 0, OPT_STR, &split, "N[M|G]", "GGUF output: split into files of at most N bytes of "
                                                        "tensors (llama-gguf-split's layout)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &p.force, NULL, "replace an existing output"},
        {"verbose", 'v', OPT_FLAG, &verbose, NULL, "print the per-linear table"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_opt unstr[] = {
        {"method", 0, OPT_ENUM, &method, "magnitude|wanda|sparsegpt", "magnitude, wanda or sparsegpt"},
        {"sparsity", 0, OPT_FLOAT, &sparsity, "S", "fraction of each row's weights set to zero, in [0, 1)"},
        {"pattern", 0, OPT_STR, &pattern, "N:M", "keep N of every M consecutive inputs (2:4, 4:8)"},
        {"scope", 0, OPT_ENUM, &s->scope, "row|matrix", "magnitude: compare within each row (default) or per matrix"},
        {"then-quantize", 0, OPT_I32, &s->qbits, "BITS", "sparsegpt: quantize to BITS-bit integer groups in the same "
                                                        "pass (GPTQ folder, or pack-quantized with --format "
                                                        "compressed-tensors)"},
        {"group-size", 0, OPT_I32, &s->qgroup, "N", "--then-quantize: group size, or -1 per row (default 128)"},
        {"asym", 0, OPT_OFF, &s->qsym, NULL, "--then-quantize: asymmetric (zero points)"},
        {"qformat", 0, OPT_NAME, &qformat, qfmt_choices, "--then-quantize on safetensors: gptq (default; v2 "
                                                        "when asymmetric) or gptq_v2"},
        {"damp", 0, OPT_F32, &s->damp, "F", "sparsegpt: dampening fraction of mean(diag(H)) (default 0.01)"},
        {"blocksize", 0, OPT_I32, &s->blocksize, "N", "sparsegpt: columns per mask block (default 128)"},
        {"true-sequential", 0, OPT_TRI, &p.prune.true_sequential, "no-true-sequential",
         "q/k/v, o, gate/up, down pruned in turn, each on the outputs of the ones before (default for sparsegpt), "
         "or all statistics of a block from one pass over the original block (default for wanda, as its "
         "reference code)"},
        {0},
    };
    const cli_opt strct[] = {
        {"structured", 0, OPT_ENUM, &structured, "heads|kv-heads|ffn|layers", "heads, kv-heads, ffn or layers: a "
                                                                          "smaller dense model"},
        {"ratio", 0, OPT_FLOAT, &p.ratio, "R", "fraction removed (of each KV group's query heads, of the KV heads, "
                                               "of the FFN channels, of the layers)"},
        {0},
    };
    const cli_group groups[] = {{NULL, common},
                                {"unstructured / N:M (--method)", unstr},
                                {"structured (--structured)", strct}};
    const cli_cmd_info info = {
        "prune",
        "MODEL -o OUT (--method magnitude|wanda|sparsegpt (--sparsity S | --pattern N:M) | --structured "
        "heads|kv-heads|ffn|layers --ratio R) [--calib FILE --calib-samples N --calib-seqlen L --seed S] "
        "[--format safetensors|compressed-tensors|gguf] [--then-quantize BITS] [--json] [--force]",
        "Prune a Hugging Face checkpoint, layer by layer on calibration text (each block sees the outputs of\n"
        "the pruned blocks before it; memory: samples x seqlen x hidden x 4 bytes plus one block).\n\n"
        "Unstructured / N:M (--method): magnitude |W| (per row, or --scope matrix), Wanda |W_ij| * ||X_j||\n"
        "per output row (Sun et al. 2023), SparseGPT (Frantar & Alistarh 2023: Hessian-based masks chosen\n"
        "block by block with the OBS update of the remaining weights). Every row loses exactly\n"
        "floor(S * in_features) weights, or M-N of every M. Output: dense safetensors with the zeros, a\n"
        "compressed-tensors sparse-bitmask / sparse-24-bitmask folder (config.json sparsity_config), GGUF\n"
        "(dense), or with --then-quantize a GPTQ / pack-quantized folder pruned and quantized in one pass.\n\n"
        "Structured (--structured): the result is a physically smaller dense model whose config.json\n"
        "transformers loads; the SAME number of units is removed from every layer so the per-layer sizes\n"
        "stay uniform. heads: R of each KV group's query heads (never all of them); kv-heads: R of the KV\n"
        "heads, each with its query group; ffn: R of the intermediate channels (gate/up rows, down\n"
        "columns); layers: R of the decoder blocks with the lowest block influence (1 - cos(input, output)).\n"
        "Heads and channels are ranked by activation-weighted importance ||X_j||^2 ||W[:, j]||^2.",
        NULL};
    const char **pos;
    cli_seen seen;
    int np, pr = cli_parse_groups(argc, argv, groups, 3, &info, &pos, &np, &seen);
    if (pr) {
        free(loras.v);
        return pr > 0 ? 0 : 2;
    }
    if (np != 1 || !out) {
        free(loras.v);
        return bad("need MODEL and -o OUT (see --help)");
    }
    int rc = 0;
    if ((method >= 0) + (structured >= 0) != 1 || !(seen.only & (1u << G_UNSTR | 1u << G_STRUCT))) {
        if (method >= 0 && seen.first[G_STRUCT])
            fprintf(stderr, "lmpress prune: --%s applies to --structured, not --method\n", seen.first[G_STRUCT]);
        else if (structured >= 0 && seen.first[G_UNSTR])
            fprintf(stderr, "lmpress prune: --%s applies to --method, not --structured\n", seen.first[G_UNSTR]);
        else
            fprintf(stderr, "lmpress prune: give exactly one of --method (unstructured / N:M) and --structured\n");
        rc = 2;
    } else if (method >= 0 && (sparsity != -1) == !!pattern) {
        rc = bad("give exactly one of --sparsity S and --pattern N:M");
    } else if (pattern && parse_pattern(pattern, &s->n, &s->m)) {
        rc = bad("--pattern must be N:M with 0 < N < M <= 64 (e.g. 2:4)");
    } else if (structured >= 0 && p.ratio == 0) {
        rc = bad("--structured needs --ratio R");
    } else if (threads < 0) {
        rc = bad("--threads must be positive");
    } else if (qformat && (rc = lmp_qformat_by_name(qformat, &p.qformat))) {
        rc = cli_fail("prune", rc);
    }
    if (rc) {
        free(loras.v);
        return rc;
    }
    if (method >= 0)
        s->method = (lmp_prune_method)method;
    if (sparsity != -1)
        s->sparsity = sparsity;
    p.structured = structured >= 0;
    p.kind = (lmp_struct_kind)(structured >= 0 ? structured : 0);
    static const lmp_prune_out outs[] = {LMP_PRUNE_OUT_SAFETENSORS, LMP_PRUNE_OUT_CT, LMP_PRUNE_OUT_GGUF,
                                         LMP_PRUNE_OUT_CT};
    if (format >= 0)
        p.out = outs[format];
    else if (cli_is_gguf_name(out))
        p.out = LMP_PRUNE_OUT_GGUF; /* the extension decides, as in convert and quantize */
    if (p.out == LMP_PRUNE_OUT_GGUF && !cli_is_gguf_name(out)) {
        fprintf(stderr, "lmpress prune: --format gguf writes a GGUF file: the output must end in .gguf (not '%s')\n",
                out);
        rc = 2;
    } else if (p.out != LMP_PRUNE_OUT_GGUF && cli_filelike_name(out)) {
        fprintf(stderr, "lmpress prune: --format %s writes a Hugging Face folder, and '%s' is a file name; give a "
                        "folder name, or -o NAME.gguf for a GGUF file\n",
                p.out == LMP_PRUNE_OUT_CT ? "compressed-tensors" : "safetensors", out);
        rc = 2;
    } else if ((rc = lmp_prune_model_check(&p))) {
        rc = cli_fail("prune", rc);
    } else if (split && (cli_parse_size("prune", split, &split_max) || p.out != LMP_PRUNE_OUT_GGUF)) {
        if (split_max)
            fprintf(stderr, "lmpress prune: --split-max-size applies to GGUF output (-o NAME.gguf)\n");
        rc = 2;
    }
    if (rc) {
        free(loras.v);
        return rc;
    }
    lmp_set_num_threads((int)threads);
    p.prune.on_layer_done = json ? NULL : print_layer;
    double t_start = lmp_time_s();
    p.prune.log_ctx = &t_start;
    lmp_prune_model_result r;
    int lr = cli_lora_prepare("prune", argc, argv, &loras, &pos[0], &lora_tmp);
    free(loras.v);
    if (lr)
        return lr;
    /* the writers take f32/f16/bf16 Hugging Face checkpoints: refused from the headers */
    int e = lmp_job_dense_input_check(pos[0], "; prune writes f32 weights from an f32/f16/bf16 Hugging Face "
                                              "checkpoint: prune the checkpoint this model was quantized from (then "
                                              "quantize the pruned model, or use --method sparsegpt --then-quantize)");
    if (e)
        return cli_fail("prune", e);
    e = lmp_prune_model(pos[0], out, &p, &r);
    if (e) {
        lmp_prune_model_result_free(&r);
        return cli_fail("prune", e);
    }
    if (p.out == LMP_PRUNE_OUT_GGUF && (e = cli_gguf_deploy("prune", out, pos[0], split_max, p.force, json))) {
        lmp_prune_model_result_free(&r);
        return e;
    }
    char b1[32], b2[32];
    if (p.structured) {
        const lmp_struct_plan *pl = &r.plan;
        double shrink = 1.0 - (double)pl->params_out / (double)pl->params_in;
        if (json) {
            printf("{\"input\": ");
            cli_json_str(pos[0]);
            printf(", \"output\": ");
            cli_json_str(out);
            printf(", \"structured\": \"%s\", \"ratio\": %.6g, \"format\": \"%s\", \"params_in\": %lld, "
                   "\"params_out\": %lld, \"params_written\": %llu, \"shrink\": %.6f, \"layers\": %d, \"heads\": %d, "
                   "\"kv_heads\": %d, \"head_dim\": %d, \"intermediate_size\": %d, \"out_bytes\": %llu, "
                   "\"seconds\": %.4f, \"peak_rss\": %llu, \"keep_layers\": [",
                   lmp_struct_kind_name(pl->kind), pl->ratio, r.format, (long long)pl->params_in,
                   (long long)pl->params_out, (unsigned long long)r.write.params, shrink, pl->out.n_layers,
                   pl->out.n_heads, pl->out.n_kv_heads, pl->out.head_dim, pl->out.intermediate_size,
                   (unsigned long long)r.out_bytes, r.seconds, (unsigned long long)r.peak_rss);
            for (int i = 0; i < pl->out.n_layers; i++)
                printf("%s%d", i ? ", " : "", pl->keep_layers[i]);
            printf("]}\n");
        } else {
            printf("wrote %s: %s pruned by %.3g: %d layers, %d heads / %d KV heads (head_dim %d), FFN %d; "
                   "%lld -> %lld parameters (%.1f%% fewer), %s\n",
                   out, lmp_struct_kind_name(pl->kind), pl->ratio, pl->out.n_layers, pl->out.n_heads,
                   pl->out.n_kv_heads, pl->out.head_dim, pl->out.intermediate_size, (long long)pl->params_in,
                   (long long)pl->params_out, 100 * shrink, cli_bytes((double)r.out_bytes, b1, sizeof b1));
            if (pl->kind == LMP_STRUCT_LAYERS) {
                printf("kept layers:");
                for (int i = 0; i < pl->out.n_layers; i++)
                    printf(" %d", pl->keep_layers[i]);
                printf("\nblock influence:");
                for (int i = 0; i < pl->in.n_layers; i++)
                    printf(" %.4f", pl->score[i]);
                printf("\n");
            }
            printf("%.2fs, peak RSS %s\n", r.seconds, cli_bytes((double)r.peak_rss, b2, sizeof b2));
        }
    } else {
        const lmp_prune_result *pr2 = &r.prune;
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
            cli_json_str(pos[0]);
            printf(", \"output\": ");
            cli_json_str(out);
            printf(", \"method\": \"%s\", \"sparsity\": %.6g, \"pattern\": \"", lmp_prune_method_name(s->method),
                   s->m ? 0.0 : s->sparsity);
            if (s->m)
                printf("%d:%d", s->n, s->m);
            printf("\", \"format\": \"%s\", \"then_quantize\": %d, \"calib_samples\": %d, \"calib_seqlen\": %d, "
                   "\"calib_text_tokens\": %lld, \"linear_params\": %llu, \"zeros\": %llu, \"linear_sparsity\": %.6f, "
                   "\"params\": %llu, \"bytes\": %llu, \"out_bytes\": %llu, \"seconds\": %.4f, \"peak_rss\": %llu, "
                   "\"layers\": [",
                   r.format, s->qbits, pr2->n_samples, pr2->seq_len, (long long)r.calib_text_tokens,
                   (unsigned long long)pr2->params, (unsigned long long)pr2->zeros, pr2->sparsity,
                   (unsigned long long)r.write.params, (unsigned long long)r.write.bytes,
                   (unsigned long long)r.out_bytes, r.seconds, (unsigned long long)r.peak_rss);
            for (int i = 0; i < n_lin; i++) {
                const lmp_prune_linear_stats *st = &pr2->lin[i];
                printf("%s{\"name\": ", i ? ", " : "");
                cli_json_str(st->name);
                printf(", \"rows\": %lld, \"cols\": %lld, \"zeros\": %lld, \"err\": %.6g, \"loss\": %.6g, "
                       "\"seconds\": %.4f}",
                       (long long)st->rows, (long long)st->cols, (long long)st->zeros, st->err, st->loss, st->seconds);
            }
            printf("]}\n");
        } else {
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
            char pat[32];
            if (s->m)
                snprintf(pat, sizeof pat, "%d:%d", s->n, s->m);
            else
                snprintf(pat, sizeof pat, "%.4g unstructured", s->sparsity);
            printf("wrote %s (%s): %s %s, %llu of %llu linear weights zero (%.2f%%), %s on disk\n", out, r.format,
                   lmp_prune_method_name(s->method), pat, (unsigned long long)pr2->zeros,
                   (unsigned long long)pr2->params, 100 * pr2->sparsity, cli_bytes((double)r.out_bytes, b1, sizeof b1));
            if (pr2->n_samples)
                printf("calibration: %d x %d tokens; worst relative output error %.5f (%s)\n", pr2->n_samples,
                       pr2->seq_len, worst, wn);
            printf("%.2fs, peak RSS %s\n", r.seconds, cli_bytes((double)r.peak_rss, b2, sizeof b2));
        }
    }
    lmp_prune_model_result_free(&r);
    return 0;
}
