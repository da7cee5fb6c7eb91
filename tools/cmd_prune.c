/*
 * lmpress prune: unstructured / N:M pruning (magnitude, Wanda, SparseGPT, optionally
 * SparseGPT with joint integer quantization) or structured pruning (heads, KV heads, FFN
 * channels, layers) of a Hugging Face checkpoint. Parses options and makes one
 * formats/sparse.h call (lmp_prune_model); no algorithm code here.
 */
#include "cli.h"
#include "formats/qmodel.h"
#include "jobs/prune_model.h"
#include "lib/prune/prune.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_prune(int argc, char **argv);

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

static void print_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_prune_linear_stats *st)
{
    char eta[64];
    eta_text(ctx, layer, n_layers, eta, sizeof eta);
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

/* A GGUF or a quantized folder (GPTQ / AWQ / compressed-tensors) whose linears are natively
 * quantized: the pruning algorithms read such weights (lib/prune dequantizes rows with
 * lmp_wmat_row_f32), but the writers of lmp_prune_model take Hugging Face f32/f16/bf16
 * checkpoints only. Refused here naming the first quantized linear and its storage, before
 * anything is loaded twice or written. Returns 0 when the input is not quantized. */
static int refuse_quantized(const char *model)
{
    bool gguf = lmp_str_endswith_ci(model, ".gguf"), qdir = false;
    if (!gguf && lmp_path_is_dir(model)) {
        char *cfg = lmp_path_join(model, "config.json"), *txt = NULL;
        if (cfg && lmp_read_file(cfg, &txt, NULL) == 0)
            qdir = strstr(txt, "\"quantization_config\"") != NULL;
        free(cfg);
        free(txt);
    }
    if (!gguf && !qdir)
        return 0;
    lmp_model *m = NULL;
    if (lmp_model_load_any(&m, model))
        return 0; /* lmp_prune_model reports the loading error itself */
    const lmp_config *c = lmp_model_config(m);
    int rc = 0;
    for (int l = 0; l < c->n_layers && !rc; l++)
        for (int w = 0; w < LMP_LIN_COUNT && !rc; w++) {
            const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
            lmp_dtype dt = wm->dtype;
            if (!wm->q && (dt == LMP_DT_F32 || dt == LMP_DT_F16 || dt == LMP_DT_BF16))
                continue;
            char name[LMP_MAX_NAME], what[64];
            lmp_linear_hf_prefix(l, (lmp_linear)w, name, sizeof name);
            if (wm->q)
                snprintf(what, sizeof what, "%d-bit integer groups", wm->q->ig.bits);
            else
                snprintf(what, sizeof what, "%s", lmp_dtype_info(dt)->name);
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: %s.weight is natively quantized (%s); prune writes f32 weights from an "
                         "f32/f16/bf16 Hugging Face checkpoint: prune the checkpoint this model was quantized from "
                         "(then quantize the pruned model, or use --method sparsegpt --then-quantize)",
                         model, name, what);
        }
    lmp_model_free(m);
    return rc;
}

static int bad(const char *msg)
{
    fprintf(stderr, "lmpress prune: %s\n", msg);
    return 2;
}

int cmd_prune(int argc, char **argv)
{
    const char *out = NULL, *method = NULL, *pattern = NULL, *scope = NULL, *structured = NULL, *calib = NULL,
               *format = NULL, *qformat = NULL, *split = NULL, *calib_field = NULL;
    uint64_t split_max = 0;
    double sparsity = -1e300, ratio = -1e300, damp = -1;
    long long samples = -1, seqlen = -1, seed = -1, threads = 0, tq = -1, group = -2, blocksize = -1,
              coff = -1, cbytes = -1;
    bool asym = false, no_ts = false, yes_ts = false, calib_bos = false, force = false, json = false, verbose = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt opts[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into MODEL first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"output", 'o', OPT_STR, &out, "OUT", "output folder, or a .gguf file (GGUF: by the extension or --format gguf)"},
        {"method", 0, OPT_NAME, &method, "magnitude|wanda|sparsegpt", "magnitude, wanda or sparsegpt (unstructured / N:M)"},
        {"sparsity", 0, OPT_FLOAT, &sparsity, "S", "fraction of each row's weights set to zero, in [0, 1)"},
        {"pattern", 0, OPT_STR, &pattern, "N:M", "keep N of every M consecutive inputs (2:4, 4:8)"},
        {"scope", 0, OPT_NAME, &scope, "row|matrix", "magnitude: compare within each row (default) or per matrix"},
        {"structured", 0, OPT_NAME, &structured, "heads|kv-heads|ffn|layers", "heads, kv-heads, ffn or layers: a smaller dense model"},
        {"ratio", 0, OPT_FLOAT, &ratio, "R", "structured: fraction removed (of each KV group's query heads, of the "
                                             "KV heads, of the FFN channels, of the layers)"},
        {"calib", 0, OPT_STR, &calib, "FILE[,FILE]", "calibration data (all but magnitude): plain or gzip text, "
                                                    "JSONL (text field or chats), several files mixed"},
        {"calib-field", 0, OPT_STR, &calib_field, "NAME", "JSONL calibration: the string field with the text"},
        {"calib-samples", 0, OPT_INT, &samples, "N", "calibration windows (default 128)"},
        {"calib-seqlen", 0, OPT_INT, &seqlen, "L", "tokens per window (default 2048, capped to the context)"},
        {"calib-offset", 0, OPT_INT, &coff, "BYTES", "use the calibration file from this byte (default 0)"},
        {"calib-bytes", 0, OPT_INT, &cbytes, "BYTES", "use at most this many bytes of it (default all)"},
        {"calib-bos", 0, OPT_FLAG, &calib_bos, NULL, "replace the first token of every calibration window by BOS "
                                                    "(as inference inputs start; default: the windows as drawn)"},
        {"seed", 0, OPT_INT, &seed, "S", "seed of the random windows (default 0)"},
        {"format", 0, OPT_NAME, &format, "safetensors|compressed-tensors|ct|gguf", "safetensors (dense, zeros kept; default), compressed-tensors "
                                             "(sparse-24-bitmask for 2:4, else sparse-bitmask) or gguf"},
        {"then-quantize", 0, OPT_INT, &tq, "BITS", "sparsegpt: quantize to BITS-bit integer groups in the same pass "
                                                   "(GPTQ folder, or pack-quantized with --format compressed-tensors)"},
        {"group-size", 0, OPT_INT, &group, "N", "--then-quantize: group size, or -1 per row (default 128)"},
        {"asym", 0, OPT_FLAG, &asym, NULL, "--then-quantize: asymmetric (zero points)"},
        {"qformat", 0, OPT_NAME, &qformat, "gptq|gptq_v2", "--then-quantize on safetensors: gptq (default) or gptq_v2"},
        {"damp", 0, OPT_FLOAT, &damp, "F", "sparsegpt: dampening fraction of mean(diag(H)) (default 0.01)"},
        {"blocksize", 0, OPT_INT, &blocksize, "N", "sparsegpt: columns per mask block (default 128)"},
        {"no-true-sequential", 0, OPT_FLAG, &no_ts, NULL, "all statistics of a block from one pass over the original "
                                                           "block (default for wanda, as its reference code)"},
        {"true-sequential", 0, OPT_FLAG, &yes_ts, NULL, "q/k/v, o, gate/up, down pruned in turn, each on the outputs "
                                                       "of the ones before (default for sparsegpt)"},
        {"split-max-size", 0, OPT_STR, &split, "N[M|G]", "GGUF output: split into files of at most N bytes of "
                                                        "tensors (llama-gguf-split's layout)"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 0, OPT_FLAG, &force, NULL, "replace an existing output"},
        {"verbose", 'v', OPT_FLAG, &verbose, NULL, "print the per-linear table"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
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
    int np, pr = cli_parse(argc, argv, opts, &info, &pos, &np);
    if (pr)
        return pr > 0 ? 0 : 2;
    if (np != 1 || !out)
        return bad("need MODEL and -o OUT (see --help)");
    lmp_prune_model_params p;
    lmp_prune_model_default_params(&p);
    lmp_prune_spec *s = &p.prune.spec;
    if (!!method + !!structured != 1)
        return bad("give exactly one of --method (unstructured / N:M) and --structured");
    if (method) {
        int mm = lmp_prune_method_from_name(method);
        if (mm < 0)
            return bad("--method must be magnitude, wanda or sparsegpt");
        s->method = (lmp_prune_method)mm;
        if ((sparsity > -1e299) == !!pattern)
            return bad("give exactly one of --sparsity S and --pattern N:M");
        if (ratio > -1e299)
            return bad("--ratio applies to --structured");
        if (pattern) {
            if (parse_pattern(pattern, &s->n, &s->m))
                return bad("--pattern must be N:M with 0 < N < M <= 64 (e.g. 2:4)");
        } else {
            if (!(sparsity >= 0.0 && sparsity < 1.0))
                return bad("--sparsity must be in [0, 1)");
            s->sparsity = sparsity;
        }
        if (scope) {
            if (strcmp(scope, "row") == 0)
                s->scope = LMP_PRUNE_SCOPE_ROW;
            else if (strcmp(scope, "matrix") == 0)
                s->scope = LMP_PRUNE_SCOPE_MATRIX;
            else
                return bad("--scope must be row or matrix");
            if (s->scope == LMP_PRUNE_SCOPE_MATRIX && (s->method != LMP_PRUNE_MAGNITUDE || pattern))
                return bad("--scope matrix applies to unstructured magnitude pruning only");
        }
        if (tq != -1) {
            if (s->method != LMP_PRUNE_SPARSEGPT)
                return bad("--then-quantize needs --method sparsegpt (joint pruning and quantization)");
            if (tq < 2 || tq > 8)
                return bad("--then-quantize BITS must be 2..8");
            s->qbits = (int)tq;
            s->qsym = !asym;
            if (group != -2) {
                if (group == 0 || group < -1 || group > 1 << 20)
                    return bad("--group-size must be positive, or -1");
                s->qgroup = (int)group;
            }
        } else if (asym || group != -2 || qformat) {
            return bad("--asym, --group-size and --qformat apply to --then-quantize");
        }
        if (damp >= 0) {
            if (!(damp > 0 && damp < 1))
                return bad("--damp must be in (0, 1)");
            s->damp = (float)damp;
        }
        if (blocksize != -1) {
            if (blocksize < 1 || blocksize > 1 << 16)
                return bad("--blocksize must be positive");
            s->blocksize = (int)blocksize;
        }
        if (no_ts && yes_ts)
            return bad("give at most one of --true-sequential and --no-true-sequential");
        p.prune.true_sequential = no_ts ? 0 : yes_ts ? 1 : -1;
    } else {
        int k = lmp_struct_kind_from_name(structured);
        if (k < 0)
            return bad("--structured must be heads, kv-heads, ffn or layers");
        if (ratio < -1e299)
            return bad("--structured needs --ratio R");
        if (!(ratio > 0 && ratio < 1))
            return bad("--ratio must be in (0, 1)");
        if (sparsity > -1e299 || pattern || scope || tq != -1)
            return bad("--sparsity, --pattern, --scope and --then-quantize apply to --method");
        p.structured = true;
        p.kind = (lmp_struct_kind)k;
        p.ratio = ratio;
    }
    if (format) {
        if (strcmp(format, "safetensors") == 0)
            p.out = LMP_PRUNE_OUT_SAFETENSORS;
        else if (strcmp(format, "compressed-tensors") == 0 || strcmp(format, "ct") == 0)
            p.out = LMP_PRUNE_OUT_CT;
        else if (strcmp(format, "gguf") == 0)
            p.out = LMP_PRUNE_OUT_GGUF;
        else
            return bad("--format must be safetensors, compressed-tensors or gguf");
    } else if (cli_is_gguf_name(out)) {
        p.out = LMP_PRUNE_OUT_GGUF; /* the extension decides, as in convert and quantize */
    }
    if (p.out == LMP_PRUNE_OUT_GGUF && !cli_is_gguf_name(out)) {
        fprintf(stderr, "lmpress prune: --format gguf writes a GGUF file: the output must end in .gguf (not '%s')\n",
                out);
        return 2;
    }
    if (p.out != LMP_PRUNE_OUT_GGUF && cli_filelike_name(out)) {
        fprintf(stderr, "lmpress prune: --format %s writes a Hugging Face folder, and '%s' is a file name; give a "
                        "folder name, or -o NAME.gguf for a GGUF file\n",
                format ? format : "safetensors", out);
        return 2;
    }
    if (qformat) {
        if (strcmp(qformat, "gptq") == 0)
            p.qformat = LMP_QFMT_GPTQ_V1;
        else if (strcmp(qformat, "gptq_v2") == 0)
            p.qformat = LMP_QFMT_GPTQ_V2;
        else
            return bad("--qformat must be gptq or gptq_v2");
    }
    if (samples != -1) {
        if (samples < 1 || samples > 1 << 20)
            return bad("--calib-samples must be positive");
        p.calib.n_samples = (int)samples;
    }
    if (seqlen != -1) {
        if (seqlen < 2 || seqlen > 1 << 20)
            return bad("--calib-seqlen must be at least 2");
        p.calib.seq_len = (int)seqlen;
    }
    if (seed != -1) {
        if (seed < 0)
            return bad("--seed must be non-negative");
        p.calib.seed = (uint64_t)seed;
    }
    if (coff != -1) {
        if (coff < 0)
            return bad("--calib-offset must be non-negative");
        p.calib_offset = (size_t)coff;
    }
    if (cbytes != -1) {
        if (cbytes < 1)
            return bad("--calib-bytes must be positive");
        p.calib_bytes = (size_t)cbytes;
    }
    if (threads < 0)
        return bad("--threads must be positive");
    if (!calib && (p.structured || s->method != LMP_PRUNE_MAGNITUDE))
        return bad("this method needs calibration text: --calib FILE (plain or .gz)");
    lmp_set_num_threads((int)threads);
    p.prune.calib_bos = calib_bos;
    p.calib_path = calib;
    p.calib.text_field = calib_field;
    p.force = force;
    p.prune.on_layer_done = json ? NULL : print_layer;
    double t_start = lmp_time_s();
    p.prune.log_ctx = &t_start;

    lmp_prune_model_result r;
    if (split && (cli_parse_size("prune", split, &split_max) || p.out != LMP_PRUNE_OUT_GGUF)) {
        if (split_max)
            fprintf(stderr, "lmpress prune: --split-max-size applies to GGUF output (-o NAME.gguf)\n");
        return 2;
    }
    int lr = cli_lora_prepare("prune", argc, argv, &loras, &pos[0], &lora_tmp);
    free(loras.v);
    if (lr)
        return lr;
    int e = refuse_quantized(pos[0]);
    if (e)
        return cli_fail("prune", e);
    e = lmp_prune_model(pos[0], out, &p, &r);
    if (e) {
        lmp_prune_model_result_free(&r);
        return cli_fail("prune", e);
    }
    if (p.out == LMP_PRUNE_OUT_GGUF && (e = cli_gguf_deploy("prune", out, pos[0], split_max, force, json))) {
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
