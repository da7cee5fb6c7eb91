/*
 * lmpress quantize: GGUF quantization with llama.cpp's types and per-tensor mixes
 * (round-to-nearest). Parses options, converts an HF checkpoint to a temporary GGUF with
 * formats' lmp_convert when needed, and makes one lib/quant call.
 */
#include "cli.h"
#include "formats/formats.h"
#include "lib/quant/quant.h"

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

int cmd_quantize(int argc, char **argv)
{
    const char *out = NULL, *type = NULL;
    cli_strlist tt = {0}, keep = {0};
    long long threads = 0;
    bool force = false, json = false, verbose = false, requant = false;
    const cli_opt opts[] = {
        {"output", 'o', OPT_STR, &out, "OUT", "output GGUF file"},
        {"type", 0, OPT_STR, &type, "TYPE", "q8_0, q6_k, q5_k_m, q5_k_s, q5_1, q5_0, q4_k_m, q4_k_s, q4_1, q4_0, "
                                            "q3_k_l, q3_k_m, q3_k_s, q2_k, f16, bf16 or f32"},
        {"tensor-type", 0, OPT_MULTI, &tt, "REGEX=TYPE", "tensors whose GGUF name matches REGEX get TYPE (repeatable; "
                                                         "first match wins)"},
        {"keep", 0, OPT_MULTI, &keep, "REGEX", "tensors matching REGEX are written as they are (repeatable)"},
        {"allow-requantize", 0, OPT_FLAG, &requant, NULL, "accept an input that is already quantized"},
        {"threads", 't', OPT_INT, &threads, "N", "threads (default: all cores)"},
        {"force", 'f', OPT_FLAG, &force, NULL, "replace an existing output"},
        {"verbose", 'v', OPT_FLAG, &verbose, NULL, "measure each tensor's relative RMS quantization error"},
        {"json", 0, OPT_FLAG, &json, NULL, "print a JSON summary on stdout"},
        {0},
    };
    const cli_cmd_info info = {
        "quantize", "MODEL -o OUT.gguf --type TYPE [--tensor-type REGEX=TYPE ...] [--keep REGEX ...] "
                    "[--allow-requantize] [--force] [--verbose] [--json]",
        "Quantize a checkpoint to GGUF with llama.cpp's block types (round to nearest). MODEL is an HF folder\n"
        "or .safetensors (converted to GGUF first, as `lmpress convert` does) or an f32/f16/bf16 GGUF.\n"
        "The _s/_m/_l types are llama.cpp's mixes: e.g. q4_k_m writes the output (or tied token embedding)\n"
        "and half of the attn_v and ffn_down tensors in q6_K. 1-D tensors and norms stay as they are. A\n"
        "tensor whose row length does not fit the block size falls back as llama.cpp does (q4_K -> q5_0,\n"
        "q6_K -> q8_0, ..., f16 when 32 does not divide it), and says so. The output appears only when\n"
        "complete; per-tensor lines go to stderr when it is not a terminal, a progress bar when it is.",
        NULL};
    const char **pos;
    int np, r = cli_parse(argc, argv, opts, &info, &pos, &np), rc = 0;
    if (r) {
        free(tt.v);
        free(keep.v);
        return r > 0 ? 0 : 2;
    }
    char *tmp = NULL;
    if (np != 1 || !out || !type) {
        fprintf(stderr, "lmpress quantize: need MODEL, -o OUT and --type TYPE (see --help)\n");
        rc = 2;
        goto done;
    }
    if (!lmp_gguf_qtype_find(type)) {
        fprintf(stderr, "lmpress quantize: unknown type '%s'; one of:\n", type);
        for (const lmp_gguf_qtype *q = lmp_gguf_qtype_list(); q->name; q++)
            fprintf(stderr, "  %-8s %s\n", q->name, q->help);
        rc = 2;
        goto done;
    }
    if (!lmp_str_endswith(out, ".gguf")) {
        fprintf(stderr, "lmpress quantize: the output must be a .gguf file\n");
        rc = 2;
        goto done;
    }
    if (!force && lmp_path_exists(out)) { /* refuse before any conversion work */
        fprintf(stderr, "lmpress quantize: error: %s exists (use --force to replace it)\n", out);
        rc = 1;
        goto done;
    }
    if (threads < 0) {
        fprintf(stderr, "lmpress quantize: --threads must be positive\n");
        rc = 2;
        goto done;
    }
    lmp_set_num_threads((int)threads);
    lmp_quant_init();

    const char *src = pos[0];
    if (lmp_path_is_dir(src) || !lmp_str_endswith(src, ".gguf")) {
        size_t n = strlen(out) + 64;
        tmp = malloc(n);
        if (!tmp) {
            rc = cli_fail("quantize", lmp_err(LMP_ENOMEM, "out of memory"));
            goto done;
        }
        snprintf(tmp, n, "%s.src.tmp.%ld.gguf", out, (long)getpid());
        lmp_convert_params cp;
        lmp_convert_result cr;
        lmp_convert_default_params(&cp);
        cp.force = true;
        cp.quiet = true;
        if (!json)
            fprintf(stderr, "converting %s to GGUF (llama.cpp names and vocabulary) first\n", src);
        int e = lmp_convert(src, tmp, &cp, &cr);
        if (e) {
            unlink(tmp);
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
    lmp_gguf_quant_result res;
    int e = lmp_gguf_quantize(src, out, &p, &res);
    if (tmp)
        unlink(tmp);
    if (e) {
        rc = cli_fail("quantize", e);
        goto done;
    }
    const lmp_gguf_qtype *qt = lmp_gguf_qtype_find(type);
    if (json) {
        printf("{\"input\": ");
        cli_json_str(pos[0]);
        printf(", \"output\": ");
        cli_json_str(out);
        printf(", \"type\": \"%s\", \"file_type\": %d, \"tensors\": %d, \"quantized\": %d, \"fallbacks\": %d, "
               "\"parameters\": %llu, \"bytes_in\": %llu, \"bytes_out\": %llu, \"bpw\": %.4f, \"seconds\": %.4f, "
               "\"peak_rss\": %llu, \"tensor_types\": {",
               qt->name, res.ftype, res.n_tensors, res.n_quantized, res.n_fallback, (unsigned long long)res.params,
               (unsigned long long)res.bytes_in, (unsigned long long)res.bytes_out, res.bpw, res.seconds,
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
        printf("}\n");
    } else {
        char b1[32], b2[32], b3[32], types[512];
        size_t k = 0;
        types[0] = 0;
        for (int d = 0; d < LMP_DT_COUNT && k < sizeof types; d++)
            if (res.type_count[d])
                k += (size_t)snprintf(types + k, sizeof types - k, "%s%s %d", k ? ", " : "",
                                      lmp_dtype_info((lmp_dtype)d)->name, res.type_count[d]);
        printf("wrote %s: %s (file type %d), %d tensors (%s), %s -> %s, %.2f bits per weight, %.2fs, peak RSS %s\n",
               out, qt->name, res.ftype, res.n_tensors, types, cli_bytes((double)res.bytes_in, b1, sizeof b1),
               cli_bytes((double)res.bytes_out, b2, sizeof b2), res.bpw, res.seconds,
               cli_bytes((double)res.peak_rss, b3, sizeof b3));
        if (res.n_fallback)
            printf("%d tensor(s) did not fit their block size and used a fallback type\n", res.n_fallback);
        if (res.rel_rms_max >= 0)
            printf("largest relative RMS error: %.5f (%s)\n", res.rel_rms_max, res.rel_rms_max_name);
    }
done:
    free(tmp);
    free(tt.v);
    free(keep.v);
    return rc;
}
