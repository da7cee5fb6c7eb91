/*
 * `lmpress quantize --method gptq|rtn|awq` as one library call: model + calibration +
 * lib/quant pipeline + formats/qmodel.c writer. See quantize_model.h.
 */
#include "quantize_model.h"
#include "jobs/args.h"

#include <stdio.h>

#include <regex.h>
#include <stdlib.h>
#include <string.h>

void lmp_qmodel_quant_default_params(lmp_qmodel_quant_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_qpipe_default_params(&p->pipe);
    lmp_calib_default_params(&p->calib);
    lmp_qmodel_write_default_params(&p->write);
}

void lmp_qmodel_quant_result_free(lmp_qmodel_quant_result *r)
{
    if (r)
        lmp_qpipe_result_free(&r->pipe);
}

int lmp_qmodel_quant_check(const lmp_qmodel_quant_params *p)
{
    const lmp_qpipe_params *q = &p->pipe;
    const bool awq = q->method == LMP_QMETHOD_AWQ;
    int rc = lmp_qpipe_check(NULL, q);
    if (rc)
        return rc;
    if (q->method == LMP_QMETHOD_RTN && q->act_order)
        return lmp_err(LMP_EINVAL, "--act-order applies to GPTQ only (RTN rounds each column on its own)");
    if (!awq && (!q->awq_clip || !q->awq_duo_scaling))
        return lmp_err(LMP_EINVAL, "--no-clip / --no-duo-scaling apply to AWQ only (--method awq)");
    if ((unsigned)p->write.format >= LMP_QFMT_COUNT)
        return lmp_err(LMP_EINVAL, "--format: unknown format %d", (int)p->write.format);
    if (p->write.format == LMP_QFMT_GPTQ_V1 && !q->sym)
        return lmp_err(LMP_EINVAL, "--format gptq (checkpoint_format v1) holds symmetric weights only: "
                                   "asymmetric GPTQ is gptq_v2");
    if (p->write.format == LMP_QFMT_AWQ_GEMM && (q->bits != 4 || q->act_order))
        return lmp_err(LMP_EINVAL, "--format awq (AutoAWQ GEMM) holds 4-bit weights without act-order%s",
                       q->act_order ? " (add --no-act-order)" : "");
    if (p->write.convert_dense && p->write.dense_dtype != LMP_DT_F16 && p->write.dense_dtype != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "--dtype: the unquantized tensors are written in f16 or bf16");
    if ((q->method == LMP_QMETHOD_GPTQ || awq) && !p->calib_path)
        return lmp_err(LMP_EINVAL, "%s needs calibration text: --calib FILE (plain or .gz)", awq ? "AWQ" : "GPTQ");
    return lmp_calib_check(&p->calib);
}

int lmp_qmodel_quant_prefs(lmp_qmodel_quant_params *p, int sym, int act, const char *format, const char *dtype,
                           bool notes)
{
    const bool awq = p->pipe.method == LMP_QMETHOD_AWQ;
    p->pipe.sym = sym >= 0 ? sym == 1 : !awq; /* AWQ's convention: zero points */
    p->pipe.act_order = act >= 0 ? act == 1 : p->pipe.method == LMP_QMETHOD_GPTQ;
    /* by name or alias from formats/fmt_table.c's table (the parser checked it against
     * the same table); gptq is v1, or v2 when asymmetric (v1 stores zero-1, which overflows) */
    lmp_qformat fmt = awq ? LMP_QFMT_AWQ_GEMM : LMP_QFMT_GPTQ_V1;
    int e = format ? lmp_qformat_by_name(format, &fmt) : 0;
    if (e)
        return e;
    p->write.format = lmp_qformat_for_zeros(fmt, p->pipe.sym);
    if (dtype) {
        p->write.convert_dense = true;
        p->write.dense_dtype = strcmp(dtype, "bf16") == 0 ? LMP_DT_BF16 : LMP_DT_F16;
    }
    if ((e = lmp_qmodel_quant_check(p)))
        return e;
    if (p->write.format != fmt && notes)
        fprintf(stderr, "note: asymmetric GPTQ is written as checkpoint_format gptq_v2 (v1 stores zero-1, which "
                        "overflows)\n");
    return LMP_OK;
}

int lmp_qmodel_quant_check_args(const char *model, const char *out, const lmp_qmodel_quant_params *p)
{
    static const char *const method_name[] = {"gptq", "rtn", "awq"};
    if (!model || !out)
        return lmp_err(LMP_EINVAL, "need MODEL and -o OUTDIR (see --help)");
    if (lmp_job_filelike_name(out))
        return lmp_err(LMP_EINVAL, "--method %s writes a Hugging Face folder, and '%s' is a file name; give a "
                                   "folder name with -o, or use --type TYPE for a GGUF file",
                       (unsigned)p->pipe.method < 3 ? method_name[p->pipe.method] : "?", out);
    return LMP_OK;
}

int lmp_qmodel_quantize(const char *model, const char *out, const lmp_qmodel_quant_params *p,
                        lmp_qmodel_quant_result *r)
{
    memset(r, 0, sizeof *r);
    double t0 = lmp_time_s();
    if (!p->write.force && lmp_path_exists(out))
        return lmp_err(LMP_EEXIST, "%s exists (use --force to replace it)", out);
    if (p->pipe.method == LMP_QMETHOD_GPTQ && !p->calib_path)
        return lmp_err(LMP_EINVAL, "GPTQ needs calibration text (--calib FILE)");
    if (p->pipe.method == LMP_QMETHOD_AWQ && !p->calib_path)
        return lmp_err(LMP_EINVAL, "AWQ needs calibration text (--calib FILE)");
    lmp_model *m = NULL;
    lmp_calib_data cal = {0};
    lmp_qmodel_writer *w = NULL;
    uint8_t *keep = NULL;
    int rc;
    if ((rc = lmp_model_load(&m, model)))
        return rc;
    if ((rc = lmp_qpipe_check(m, &p->pipe)))
        goto done;
    lmp_intq_config qc;
    lmp_intq_config_init(&qc, NULL);
    qc.bits = p->pipe.bits;
    qc.group_size = p->pipe.group_size;
    qc.sym = p->pipe.sym;
    qc.desc_act = p->pipe.act_order && p->pipe.method == LMP_QMETHOD_GPTQ;
    qc.static_groups = p->pipe.static_groups && qc.desc_act;
    qc.true_sequential = p->pipe.true_sequential;
    qc.damp_percent = p->pipe.damp;
    qc.scale_dtype = p->write.scale_dtype ? p->write.scale_dtype : LMP_DT_F16;
    if (lmp_model_ckpt(m)->kind == LMP_CKPT_GGUF) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: GGUF input cannot be written as GPTQ / compressed-tensors; convert it to "
                                       "a Hugging Face folder first (lmpress convert)", model);
        goto done;
    }
    if (p->calib_path) {
        lmp_calib_params cpar = p->calib;
        if (p->pipe.method == LMP_QMETHOD_AWQ && cpar.seq_len == 0) { /* AutoAWQ's max_calib_seq_len */
            int ctx = lmp_model_config(m)->max_pos > 0 ? lmp_model_config(m)->max_pos : 512;
            cpar.seq_len = ctx < 512 ? ctx : 512;
        }
        if ((rc = lmp_calib_load(m, p->calib_path, &cpar, &cal)))
            goto done;
        r->calib_text_tokens = cal.n_text_tokens;
        uint64_t ab = lmp_qpipe_act_bytes(m, &cal);
        if (ab >= (256ull << 20))
            lmp_info("calibration activations: %d x %d tokens x hidden %d in f32 = %.2f GiB held for the whole run "
                     "(fewer --calib-samples or a shorter --calib-seqlen use less)",
                     cal.n_samples, cal.seq_len, lmp_model_config(m)->hidden_size, ab / 1073741824.0);
    }
    lmp_qmodel_write_params wp = p->write;
    if (p->n_keep) {
        if (p->pipe.method == LMP_QMETHOD_AWQ) {
            rc = lmp_err(LMP_EUNSUPPORTED, "--keep with --method awq: AWQ folds its scales into the neighbouring "
                                           "norms and linears; use --method gptq or rtn to keep linears dense");
            goto done;
        }
        const int nl = lmp_model_config(m)->n_layers;
        if (!(keep = calloc((size_t)nl * LMP_LIN_COUNT, 1))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        for (int i = 0; i < p->n_keep && !rc; i++) {
            regex_t re;
            int e = regcomp(&re, p->keep[i], REG_EXTENDED | REG_NOSUB);
            if (e) {
                rc = lmp_err(LMP_EINVAL, "--keep '%s': bad regular expression", p->keep[i]);
                break;
            }
            int hits = 0;
            for (int l = 0; l < nl; l++)
                for (int k = 0; k < LMP_LIN_COUNT; k++) {
                    char hf[LMP_MAX_NAME], full[LMP_MAX_NAME + 8], gg[LMP_MAX_NAME];
                    lmp_linear_hf_prefix(l, (lmp_linear)k, hf, sizeof hf);
                    snprintf(full, sizeof full, "%s.weight", hf);
                    bool hit = regexec(&re, full, 0, NULL, 0) == 0 ||
                               (lmp_name_hf_to_gguf(full, gg, sizeof gg) == 0 && regexec(&re, gg, 0, NULL, 0) == 0);
                    if (hit) {
                        keep[l * LMP_LIN_COUNT + k] = 1;
                        hits++;
                    }
                }
            regfree(&re);
            if (!hits)
                lmp_warn("--keep '%s' matches no linear layer (names: model.layers.N.self_attn.q_proj or "
                         "blk.N.attn_q.weight; embeddings, norms and lm_head always stay unquantized)", p->keep[i]);
        }
        if (rc)
            goto done;
        wp.keep = keep;
    }
    if ((rc = lmp_qmodel_writer_open(&w, m, out, &qc, &wp)))
        goto done;
    lmp_qpipe_params pp = p->pipe;
    pp.keep = keep;
    pp.act_order = qc.desc_act;
    pp.sink = lmp_qmodel_writer_layer;
    pp.sink_ctx = w;
    pp.fold_sink = lmp_qmodel_writer_fold;
    pp.expert_sink = lmp_qmodel_writer_experts;
    if ((rc = lmp_qpipe_run(m, p->calib_path ? &cal : NULL, &pp, &r->pipe)))
        goto done;
    rc = lmp_qmodel_writer_finish(w, &r->write);
    w = NULL;
done:
    lmp_qmodel_writer_abort(w);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    free(keep);
    r->seconds = lmp_time_s() - t0;
    r->peak_rss = lmp_peak_rss();
    return rc;
}
