/*
 * lmpress prune: unstructured / N:M pruning (magnitude, Wanda, SparseGPT, optionally
 * SparseGPT with joint integer quantization) or structured pruning (heads, KV heads, FFN
 * channels, layers) of a Hugging Face checkpoint. Two option tables (--method,
 * --structured) whose rows point into lmp_prune_model_params and lmp_prune_prefs;
 * lmp_prune_prefs_apply resolves and checks them; one job call (jobs/prune_model.h,
 * lmp_prune_model) and one print call (jobs/report.h); no algorithm code here.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/dense_input.h"
#include "jobs/prune_prefs.h"
#include "jobs/report.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

_Static_assert(sizeof(size_t) == sizeof(uint64_t), "--calib-offset / --calib-bytes rows are OPT_U64");

enum { G_COMMON, G_UNSTR, G_STRUCT };

int cmd_prune(int argc, char **argv)
{
    lmp_prune_model_params p;
    lmp_prune_model_default_params(&p);
    lmp_prune_spec *s = &p.prune.spec;
    lmp_prune_prefs a; /* the preferences resolved into p by lmp_prune_prefs_apply */
    lmp_prune_prefs_default(&a);
    const char *split = NULL;
    char qfmt_choices[64]; /* --qformat: the format table's GPTQ rows, names and aliases */
    lmp_qformat_choices(qfmt_choices, sizeof qfmt_choices, "gptq");
    uint64_t split_max = 0;
    long long threads = 0;
    bool json = false, verbose = false;
    cli_strlist loras = {0};
    double lora_scale = 1;
    char *lora_tmp = NULL;
    const cli_opt common[] = {
        {"lora", 0, OPT_MULTI, &loras, "ADAPTER", "PEFT LoRA adapter merged into MODEL first (repeatable)"},
        {"scale", 0, OPT_FLOAT, &lora_scale, "S", "multiplier of the --lora before it (default 1)"},
        {"output", 'o', OPT_STR, &a.out, "OUT", "output folder, or a .gguf file (GGUF: by the extension or --format gguf)"},
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
        {"format", 0, OPT_ENUM, &a.format, "safetensors|compressed-tensors|gguf|ct", "safetensors (dense, zeros kept; "
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
        {"method", 0, OPT_ENUM, &a.method, "magnitude|wanda|sparsegpt", "magnitude, wanda or sparsegpt"},
        {"sparsity", 0, OPT_FLOAT, &a.sparsity, "S", "fraction of each row's weights set to zero, in [0, 1)"},
        {"pattern", 0, OPT_STR, &a.pattern, "N:M", "keep N of every M consecutive inputs (2:4, 4:8)"},
        {"scope", 0, OPT_ENUM, &s->scope, "row|matrix", "magnitude: compare within each row (default) or per matrix"},
        {"then-quantize", 0, OPT_I32, &s->qbits, "BITS", "sparsegpt: quantize to BITS-bit integer groups in the same "
                                                        "pass (GPTQ folder, or pack-quantized with --format "
                                                        "compressed-tensors)"},
        {"group-size", 0, OPT_I32, &s->qgroup, "N", "--then-quantize: group size, or -1 per row (default 128)"},
        {"asym", 0, OPT_OFF, &s->qsym, NULL, "--then-quantize: asymmetric (zero points)"},
        {"qformat", 0, OPT_NAME, &a.qformat, qfmt_choices, "--then-quantize on safetensors: gptq (default; v2 "
                                                        "when asymmetric) or gptq_v2"},
        {"damp", 0, OPT_F32, &s->damp, "F", "sparsegpt: dampening fraction of mean(diag(H)) (default 0.01)"},
        {"blocksize", 0, OPT_I32, &s->blocksize, "N", "sparsegpt: columns per mask block (default 128)"},
        {"true-sequential", 0, OPT_TRI, &p.prune.true_sequential, "no-true-sequential",
         "q/k/v, o, gate/up, down pruned in turn, each on the outputs of the ones before (default for sparsegpt), "
         "or all statistics of a block from one pass over the original block (default for wanda, as its "
         "reference code)"},
        {"calib-f32", 0, OPT_FLAG, &p.prune.calib_f32, NULL,
         "true-sequential sparsegpt: calibration forward and Hessians in f32 (default: activations rounded to bf16 "
         "for their products, as GPTQ's; faster)"},
        {0},
    };
    const cli_opt strct[] = {
        {"structured", 0, OPT_ENUM, &a.structured, "heads|kv-heads|ffn|layers", "heads, kv-heads, ffn or layers: a "
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
    a.model = np == 1 ? pos[0] : NULL;
    if (!(seen.only & (1u << G_UNSTR | 1u << G_STRUCT)) && a.model && a.out) {
        if (a.method >= 0 && seen.first[G_STRUCT])
            fprintf(stderr, "lmpress prune: --%s applies to --structured, not --method\n", seen.first[G_STRUCT]);
        else if (a.structured >= 0 && seen.first[G_UNSTR])
            fprintf(stderr, "lmpress prune: --%s applies to --method, not --structured\n", seen.first[G_UNSTR]);
        else
            fprintf(stderr, "lmpress prune: give exactly one of --method (unstructured / N:M) and --structured\n");
        free(loras.v);
        return 2;
    }
    int e = lmp_prune_prefs_apply(&a, &p);
    if (!e)
        e = lmp_job_threads(threads);
    if (e || (split && (cli_parse_size("prune", split, &split_max) || p.out != LMP_PRUNE_OUT_GGUF))) {
        if (!e && split_max)
            fprintf(stderr, "lmpress prune: --split-max-size applies to GGUF output (-o NAME.gguf)\n");
        free(loras.v);
        return e ? cli_fail("prune", e) : 2;
    }
    p.prune.on_layer_done = json ? NULL : lmp_report_prune_layer;
    double t_start = lmp_time_s();
    p.prune.log_ctx = &t_start;
    lmp_prune_model_result r;
    const char *model = a.model;
    int lr = cli_lora_prepare("prune", argc, argv, &loras, &model, &lora_tmp);
    free(loras.v);
    if (lr)
        return lr;
    /* the writers take f32/f16/bf16 Hugging Face checkpoints: refused from the headers */
    e = lmp_job_dense_input_check(model, "; prune writes f32 weights from an f32/f16/bf16 Hugging Face "
                                         "checkpoint: prune the checkpoint this model was quantized from (then "
                                         "quantize the pruned model, or use --method sparsegpt --then-quantize)");
    if (e)
        return cli_fail("prune", e);
    e = lmp_prune_model(model, a.out, &p, &r);
    if (e) {
        lmp_prune_model_result_free(&r);
        return cli_fail("prune", e);
    }
    if (p.out == LMP_PRUNE_OUT_GGUF && (e = cli_gguf_deploy("prune", a.out, model, split_max, p.force, json))) {
        lmp_prune_model_result_free(&r);
        return e;
    }
    lmp_report_prune(model, a.out, &p, &r, verbose, json);
    lmp_prune_model_result_free(&r);
    return 0;
}
