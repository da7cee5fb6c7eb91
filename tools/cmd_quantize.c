/*
 * lmpress quantize: two paths, one option table each, under one command.
 *   GGUF block types (--type): llama.cpp's types and mixes; the job (importance weights,
 *   conversion of an HF checkpoint, plan, writer) is jobs/quantize_gguf.h's one call.
 *   Integer groups (--method gptq|rtn|awq): calibrated layer-by-layer quantization written
 *   as a GPTQ / AWQ / compressed-tensors folder: jobs/quantize_model.h's one call.
 * Which path runs follows from the tables the options given belong to (cli_parse_groups);
 * options of both is refused. The rows point into the two jobs' parameter structs, filled
 * first from their defaults; every rule is the jobs' check functions'; the summaries are
 * jobs/report.h's.
 */
#include "cli.h"
#include "jobs/args.h"
#include "jobs/quantize_gguf.h"
#include "jobs/quantize_model.h"
#include "jobs/report.h"
#include "jobs/report_intplan.h"
#include "lib/core/dist.h"
#include "quantize_plan.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { G_COMMON, G_GGUF, G_INT };

int cmd_quantize(int argc, char **argv)
{
    lmp_job_gguf_params gp;       /* --type: jobs/quantize_gguf.h */
    lmp_qmodel_quant_params ip;   /* --method: jobs/quantize_model.h */
    lmp_job_gguf_default_params(&gp);
    lmp_qmodel_quant_default_params(&ip);
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
        {"target-bpw", 0, OPT_FLOAT, &gp.target_bpw, "X", "instead of --type: each tensor's type chosen among the "
                                                           "GGUF types to least predicted KL divergence at X "
                                                           "bits per weight"},
        {"target-size", 0, OPT_STR, &gp.target_size, "SIZE", "as --target-bpw, for a file of SIZE bytes (600M, "
                                                                "1.5GiB)"},
        {"target-calib", 0, OPT_STR, &gp.target_calib, "FILE", "with a target: the text on which each tensor's "
                                                               "probes are compared with the original model (KL "
                                                               "divergence; default: the --imatrix-calib text)"},
        {"target-probes", 0, OPT_I32, &gp.target_probes, "N", "with a target: types probed end to end per tensor "
                                                       "(default 2; 0: every point of its front)"},
        {"target-tokens", 0, OPT_I32, &gp.target_tokens, "N", "with a target and calibration text: positions the "
                                                              "probes measure, in windows of the model's context up "
                                                              "to 256 (default 1024; the refinement decides on as "
                                                              "many more)"},
        {"target-refine", 0, OPT_I32, &gp.target_refine, "N", "with a target and calibration text: rounds in which "
                                                              "the solved plan is measured whole and each tensor moved "
                                                              "to its neighbouring types in its context, then single "
                                                              "moves (default 0: none; on gutenberg-5M it did not "
                                                              "lower the KLD on other text)"},
        {"target-context", 0, OPT_I32, &gp.target_context, "N", "with a target and calibration text: rounds in "
                                                                "which the solved plan is measured whole, each "
                                                                "block restored in its context, the predictions "
                                                                "weighted per block and the budget solved again; "
                                                                "the plan of least KLD on further tokens kept "
                                                                "(default 0: none)"},
        {"dry-run", 0, OPT_FLAG, &gp.dry_run, NULL, "with a target: print the plan (tensor, type, bytes, "
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
        {"awq-search-tokens", 0, OPT_I32, &ip.pipe.awq_search_tokens, "N",
         "AWQ: the scale searches' losses and the error figures on about N sampled calibration tokens (q/k/v: "
         "whole windows holding as many), not all (default 1024; 0: all tokens, as AutoAWQ)"},
        {"act-order", 0, OPT_TRI, &act, "no-act-order", "GPTQ: columns by decreasing Hessian diagonal (default), "
                                                         "or in order"},
        {"no-true-sequential", 0, OPT_OFF, &ip.pipe.true_sequential, NULL,
         "GPTQ: all Hessians of a block from one pass over the original block"},
        {"calib-bos", 0, OPT_FLAG, &ip.pipe.calib_bos, NULL,
         "replace the first token of every calibration window by BOS (as inference inputs start)"},
        {"calib-f32", 0, OPT_FLAG, &ip.pipe.calib_f32, NULL,
         "GPTQ and AWQ: calibration forward, Hessians and AWQ's search products in f32, GPTQ's factor of H^-1 in "
         "double (default: activations rounded to bf16 for their products and the factor in f32, as the references "
         "run them; about twice as fast)"},
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
        {"target-bpw", 0, OPT_FLOAT, &ip.target_bpw, "X", "instead of --bits / --group-size: bits (2, 3, 4, 8) and "
                                                        "group (32, 64, 128, per channel) per linear, least summed "
                                                        "output error at X bits per weight of the packed linears "
                                                        "(stored bytes x 8 / weights); gptq, gptq_v2 or "
                                                        "compressed-tensors"},
        {"target-size", 0, OPT_STR, &ip.target_size_text, "SIZE", "as --target-bpw, for SIZE bytes of tensors in the folder "
                                                      "(600M, 1.5GiB)"},
        {"dry-run", 0, OPT_FLAG, &ip.dry_run, NULL, "with a target: print the plan (linears, bits, group, bytes, "
                                                    "predicted error) and write nothing"},
        {"target-bits", 0, OPT_STR, &ip.target_bits_text, "LIST", "with a target: the candidate widths (default 2,3,4,8; e.g. 4,8 "
                                                   "for vLLM's Marlin kernels)"},
        {"target-groups", 0, OPT_STR, &ip.target_groups_text, "LIST", "with a target: the candidate group sizes, -1 per channel "
                                                       "(default 32,64,128,-1)"},
        {"target-kld-probes", 0, OPT_I32, &ip.target_kld_probes, "N", "with a target and --calib: settings per unit "
                                                       "(those nearest the target) installed alone and the model's KL "
                                                       "divergence measured on 8 x 128 calibration tokens, to turn "
                                                       "the errors into predicted KLD (default 2, at most 4; 0: none)"},
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
                    "       lmpress quantize MODEL -o OUTDIR --method awq [--group-size 128] [--no-clip] [--awq-search-tokens N] "
                    "[--no-duo-scaling] [--format awq|gptq_v2|compressed-tensors] --calib FILE [...]",
        "Quantize a checkpoint to GGUF with llama.cpp's block types (round to nearest). MODEL is an HF folder\n"
        "or .safetensors (read as `lmpress convert` would write its GGUF, no temporary file) or an\n"
        "f32/f16/bf16 GGUF.\n"
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
        "calibration text and folded into the preceding RMSNorm / v_proj / up_proj (olmo2 has no norm in front\n"
        "of q/k/v and gate/up: those scales stay 1), a clipping search, then\n"
        "asymmetric 4-bit group quantization; written as an AutoAWQ GEMM folder (the folded norm weights\n"
        "included) or, with --format, gptq_v2 / compressed-tensors. Calibration default 128 x 512 tokens;\n"
        "the scale searches measure their losses on 1024 sampled tokens of them (--awq-search-tokens).\n"
        "--target-bpw X / --target-size SIZE with --method (instead of --bits / --group-size): bits and group\n"
        "size per linear (q/k/v share one, gate/up share one: vLLM fuses them), among --target-bits (2,3,4,8)\n"
        "x --target-groups (32,64,128,-1), to least summed relative output error tr(dW H dW^T) / tr(W H W^T)\n"
        "on the float model's calibration Hessians (each candidate made by the method's own quantizer; AWQ's\n"
        "without its scales); with --calib, the --target-kld-probes settings per unit nearest the target\n"
        "(default 2) are installed alone and the model's KL divergence measured on 8 x 128 calibration\n"
        "tokens, turning the errors into predicted KLD; solved exactly within the size. Bits per weight\n"
        "here: the packed linears'\n"
        "stored bytes (qweight, qzeros, scales, g_idx; or weight_packed, weight_scale, zero points, g_idx,\n"
        "weight_shape) x 8 / their weights; --target-size counts every tensor of the folder. Written as GPTQ\n"
        "with GPTQModel's \"dynamic\" overrides or compressed-tensors with one config group per setting (vLLM\n"
        "loads both; --method awq writes gptq_v2 then). --dry-run prints the plan.\n"
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
        "(--target-probes, default 2) and the model's KL divergence against the original measured on\n"
        "--target-tokens of it (default 1,024, in windows of the model's context up to 256); the other types'\n"
        "errors are scaled by that KLD per unit of error. The types that minimise the summed (predicted KLD)\n"
        "error within the size are chosen by dynamic programming over the Pareto points of each tensor. Then\n"
        "(--target-refine N rounds; off by default) the solved plan is run whole on the same tokens, each tensor\n"
        "moved alone to its neighbouring types in that context, the budget solved again on those measured\n"
        "differences; then up to 24 moves (a tensor a type dearer, one or two others cheaper) in the order of\n"
        "their measured gain. A new plan is kept only if its KL divergence on as many FURTHER tokens of the\n"
        "text (validation, not probed) is at least 0.1% lower. Or (--target-context N rounds; off by\n"
        "default) the solved plan is run whole, each block's tensors restored to the original in that\n"
        "context, the block's fall of KL divergence over its alone prediction weights its tensors'\n"
        "predictions, the budget is solved again; of the plans measured the one of least KL divergence on\n"
        "the further tokens is kept. --dry-run prints the plan.\n"
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
    const char *model = np == 1 ? pos[0] : NULL;
    const bool target = gp.target_bpw != -1 || gp.target_size;
    quantize_plan_ctx pc = {.po = {.json = json}, .gp = &gp};
    if (target) {
        gp.plan = quantize_plan_hook;
        gp.plan_ctx = &pc;
    }
    ip.keep = gp.q.keep = keep.v;
    ip.n_keep = gp.q.n_keep = keep.n;
    ip.write.force = gp.q.force = force;
    gp.q.tensor_type = tt.v;
    gp.q.n_tensor_type = tt.n;
    gp.q.measure_error = verbose;
    gp.q.on_tensor = json ? NULL : lmp_report_gguf_tensor;
    gp.notes = !json;
    double t_start = lmp_time_s();
    ip.pipe.on_layer_done = json ? NULL : lmp_report_qmodel_layer;
    ip.pipe.log_ctx = &t_start;
    const bool int_target = int_path && (ip.target_bpw > 0 || ip.target_size_text);
    if (int_target && ip.dry_run && !out)
        out = "(dry run)";
    int e = int_path ? lmp_qmodel_quant_targets(&ip) : LMP_OK;
    if (!e)
        e = int_path ? lmp_qmodel_quant_check_args(model, out, &ip) : lmp_job_gguf_check_args(model, out, &gp);
    if (!e)
        e = lmp_job_threads(threads);
    if (!e && int_path)
        e = lmp_qmodel_quant_prefs(&ip, sym, act, format, dtype, !json);
    if (e || (split && !int_path && cli_parse_size("quantize", split, &split_max))) {
        rc = e ? cli_fail("quantize", e) : 2;
        goto done;
    }
    if ((rc = cli_lora_prepare("quantize", argc, argv, &loras, &model, &lora_tmp)))
        goto done;
    pc.model = model;
    if (int_path) {
        lmp_qmodel_quant_result r;
        if ((e = lmp_qmodel_quantize(model, out, &ip, &r))) {
            rc = cli_fail("quantize", e);
        } else if (int_target && ip.dry_run) { /* the plan only */
            if (json)
                lmp_report_intplan_json(&ip, &r), printf("\n");
            else
                lmp_report_intplan_print(stdout, &ip, &r);
        } else {
            if (int_target && !json)
                lmp_report_intplan_print(stderr, &ip, &r);
            lmp_report_qmodel(model, out, &ip, &r, verbose, json);
        }
        lmp_qmodel_quant_result_free(&r);
        goto done;
    }
    if (!out)
        out = "(dry run).gguf";
    lmp_job_gguf_result jr;
    lmp_bpw bw; /* bits per weight by the one definition (lib/io/bpw.h), before any split */
    if ((e = lmp_job_quantize_gguf(model, out, &gp, &jr)))
        rc = cli_fail("quantize", e);
    else if (!(gp.plan && gp.dry_run) && lmp_dist_root()) { /* rank 0 wrote it, and reports */
        if (lmp_path_bpw(out, &bw) != 0)
            memset(&bw, 0, sizeof bw);
        if (!(rc = cli_gguf_deploy("quantize", out, model, split_max, force, json)))
            lmp_report_gguf(model, out, &gp, &jr, &bw, json);
    }
done:
    free(tt.v);
    free(keep.v);
    free(loras.v);
    cli_lora_cleanup(lora_tmp);
    return rc;
}
