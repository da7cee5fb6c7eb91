/*
 * `lmpress quantize --method gptq|rtn|awq` as one library call: model + calibration +
 * lib/quant pipeline + formats/qmodel.c writer. See quantize_model.h.
 */
#include "quantize_model.h"
#include "jobs/args.h"
#include "jobs/quantize_gguf.h"

#include <stdio.h>

#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>

void lmp_qmodel_quant_default_params(lmp_qmodel_quant_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_qpipe_default_params(&p->pipe);
    lmp_calib_default_params(&p->calib);
    lmp_qmodel_write_default_params(&p->write);
    p->target_kld_probes = 2;
    p->target_kld_windows = 8;
    p->target_kld_seqlen = 128;
}

void lmp_qmodel_quant_result_free(lmp_qmodel_quant_result *r)
{
    if (!r)
        return;
    lmp_qpipe_result_free(&r->pipe);
    lmp_intplan_free(&r->plan);
}

/* ---------------------------------------------------------------- size target ----- */

/* The planner's bytes function: what the writer's packing stores, cached per shape. */
typedef struct {
    lmp_qformat f;
    bool sym, gidx;
    lmp_dtype sdt;
    int n;
    struct size_entry { int64_t rows, cols; int bits, gs; uint64_t bytes; } c[256];
} bytes_ctx;

static uint64_t plan_bytes(void *ctx, int64_t rows, int64_t cols, int bits, int gs)
{
    bytes_ctx *b = ctx;
    for (int i = 0; i < b->n; i++)
        if (b->c[i].rows == rows && b->c[i].cols == cols && b->c[i].bits == bits && b->c[i].gs == gs)
            return b->c[i].bytes;
    uint64_t v = lmp_qformat_linear_bytes(b->f, rows, cols, bits, gs, b->sym, b->gidx, b->sdt);
    if (b->n < (int)(sizeof b->c / sizeof b->c[0]))
        b->c[b->n++] = (struct size_entry){rows, cols, bits, gs, v};
    return v;
}

/* Measures and solves the plan; settings[n_layers * LMP_LIN_COUNT] filled, qc's base set. */
static int make_plan(lmp_model *m, const lmp_calib_data *cal, const lmp_qmodel_quant_params *p,
                     const lmp_qmodel_write_params *wp, lmp_intq_config *qc, lmp_qsetting *settings,
                     lmp_qmodel_quant_result *r)
{
    bytes_ctx *bc = calloc(1, sizeof *bc);
    if (!bc)
        return lmp_err(LMP_ENOMEM, "out of memory");
    bc->f = wp->format;
    bc->sym = qc->sym;
    bc->gidx = qc->desc_act && !qc->static_groups;
    bc->sdt = qc->scale_dtype;
    lmp_intplan_params pp;
    lmp_intplan_default_params(&pp);
    pp.method = p->pipe.method;
    pp.sym = p->pipe.sym;
    pp.act_order = qc->desc_act;
    pp.damp = p->pipe.damp;
    pp.calib_bos = p->pipe.calib_bos;
    pp.progress = p->pipe.progress;
    pp.bytes = plan_bytes;
    pp.bytes_ctx = bc;
    pp.bits = p->target_bits;
    pp.n_bits = p->n_target_bits;
    pp.groups = p->target_groups;
    pp.n_groups = p->n_target_groups;
    /* the KLD probes: the settings nearest the target's bits per weight */
    uint64_t fixed_all = lmp_qmodel_fixed_bytes(m, wp);
    if (cal && p->target_kld_probes > 0) {
        pp.probes = p->target_kld_probes;
        pp.probe_bpw = p->target_bpw;
        if (p->target_size) {
            double lp = 0;
            const lmp_config *cfg = lmp_model_config(m);
            for (int l = 0; l < cfg->n_layers; l++)
                for (int w = 0; w < LMP_LIN_COUNT; w++) {
                    const lmp_wmat *wm = lmp_model_linear(m, l, (lmp_linear)w);
                    lp += wm ? (double)wm->rows * (double)wm->cols : 0;
                }
            pp.probe_bpw = lp > 0 && p->target_size > fixed_all ? (double)(p->target_size - fixed_all) * 8.0 / lp : 4;
        }
    }
    int rc = lmp_intplan_measure(m, cal, &pp, &r->plan);
    free(bc);
    if (!rc && cal && p->target_kld_probes > 0)
        rc = lmp_intplan_calibrate(m, cal, p->target_kld_windows, p->target_kld_seqlen, p->pipe.calib_bos,
                                   p->pipe.progress, &r->plan);
    if (rc)
        return rc;
    lmp_intplan *pl = &r->plan;
    static const int ub[2] = {4, 3};
    for (int i = 0; i < 2; i++)
        if (lmp_intplan_uniform(pl, ub[i], 128, &r->uni_bytes[i], &r->uni_err[i]))
            r->uni_bytes[i] = 0, r->uni_err[i] = -1;
    uint64_t fixed = 0, budget;
    if (p->target_size) {
        fixed = fixed_all;
        budget = p->target_size;
    } else {
        budget = (uint64_t)floor(p->target_bpw * (double)pl->lin_params / 8.0);
    }
    if ((rc = lmp_intplan_solve(pl, budget, fixed)))
        return lmp_err_prefix(rc, "--target-%s", p->target_size ? "size" : "bpw");
    lmp_intplan_settings(pl, settings);
    /* the base: the setting of the most weights */
    uint64_t best = 0;
    for (int i = 0; i < pl->n; i++) {
        const lmp_intplan_cand *c = &pl->u[i].cand[pl->u[i].choice];
        uint64_t w = 0;
        for (int j = 0; j < pl->n; j++) {
            const lmp_intplan_cand *d = &pl->u[j].cand[pl->u[j].choice];
            if (d->bits == c->bits && d->group_size == c->group_size)
                w += (uint64_t)pl->u[j].params;
        }
        if (w > best) {
            best = w;
            qc->bits = c->bits;
            qc->group_size = c->group_size;
        }
    }
    r->base_bits = qc->bits;
    r->base_group = qc->group_size;
    return LMP_OK;
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
    if (!awq && q->awq_search_tokens > 0)
        return lmp_err(LMP_EINVAL, "--awq-search-tokens applies to AWQ only (--method awq)");
    if (q->awq_search_tokens < -1)
        return lmp_err(LMP_EINVAL, "--awq-search-tokens %d: must be 0 (all tokens) or positive", q->awq_search_tokens);
    if ((unsigned)p->write.format >= LMP_QFMT_COUNT)
        return lmp_err(LMP_EINVAL, "--format: unknown format %d", (int)p->write.format);
    if (p->write.format == LMP_QFMT_GPTQ_V1 && !q->sym)
        return lmp_err(LMP_EINVAL, "--format gptq (checkpoint_format v1) holds symmetric weights only: "
                                   "asymmetric GPTQ is gptq_v2");
    if (p->write.format == LMP_QFMT_AWQ_GEMM && (q->bits != 4 || q->act_order) && !(p->target_bpw > 0 || p->target_size > 0))
        return lmp_err(LMP_EINVAL, "--format awq (AutoAWQ GEMM) holds 4-bit weights without act-order%s",
                       q->act_order ? " (add --no-act-order)" : "");
    if (p->write.convert_dense && p->write.dense_dtype != LMP_DT_F16 && p->write.dense_dtype != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "--dtype: the unquantized tensors are written in f16 or bf16");
    if (p->target_bpw > 0 && p->target_size > 0)
        return lmp_err(LMP_EINVAL, "--target-bpw and --target-size: give one");
    if (p->target_kld_probes < 0 || p->target_kld_probes > LMP_INTPLAN_MAX_PROBES)
        return lmp_err(LMP_EINVAL, "--target-kld-probes must be in 0..%d", LMP_INTPLAN_MAX_PROBES);
    if ((p->target_bits || p->target_groups) && !(p->target_bpw > 0 || p->target_size > 0))
        return lmp_err(LMP_EINVAL, "--target-bits / --target-groups need --target-bpw or --target-size");
    if ((p->target_bpw > 0 || p->target_size > 0) && p->n_keep)
        return lmp_err(LMP_EUNSUPPORTED, "--keep with --target-bpw / --target-size is not supported (the plan "
                                         "covers every linear)");
    if (p->target_bpw < 0 || p->target_bpw > 64 || (p->target_bpw == 0 && p->target_size == 0 && p->dry_run))
        return lmp_err(LMP_EINVAL, "%s", p->dry_run && p->target_bpw == 0 ? "--dry-run needs --target-bpw or "
                                                                           "--target-size"
                                                                         : "--target-bpw must be in (0, 64]");
    if ((p->target_bpw > 0 || p->target_size > 0) && p->write.format == LMP_QFMT_AWQ_GEMM)
        return lmp_err(LMP_EINVAL, "--format awq (AutoAWQ GEMM) holds one bit width for the whole model; a size "
                                   "target writes gptq, gptq_v2 or compressed-tensors (--format)");
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
    const bool target = p->target_bpw > 0 || p->target_size; /* mixed: AWQ GEMM holds one setting */
    lmp_qformat fmt = awq ? (target ? LMP_QFMT_GPTQ_V2 : LMP_QFMT_AWQ_GEMM) : LMP_QFMT_GPTQ_V1;
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

int lmp_qmodel_quant_targets(lmp_qmodel_quant_params *p)
{
    double sz = 0;
    const char *size = p->target_size_text;
    if (size && (!lmp_job_parse_bytes(size, &sz) || sz < 1))
        return lmp_err(LMP_EINVAL, "--target-size '%s': expected bytes, e.g. 600M or 1.5GiB", size);
    if (size)
        p->target_size = (uint64_t)sz;
    for (int li = 0; li < 2; li++) { /* comma lists of integers */
        const char *ls = li ? p->target_groups_text : p->target_bits_text;
        int *dst = li ? p->target_groups_buf : p->target_bits_buf, n = 0;
        for (const char *c = ls; c && *c;) {
            char *end;
            long v = strtol(c, &end, 10);
            if (end == c || (*end && *end != ',') || n == 16 || v < INT_MIN || v > INT_MAX) {
                n = -1;
                break;
            }
            dst[n++] = (int)v;
            c = *end ? end + 1 : end;
        }
        if (ls && n < 1)
            return lmp_err(LMP_EINVAL, "--target-%s '%s': expected a comma list of at most 16 integers",
                           li ? "groups" : "bits", ls);
        if (ls && li) {
            p->target_groups = p->target_groups_buf;
            p->n_target_groups = n;
        } else if (ls) {
            p->target_bits = p->target_bits_buf;
            p->n_target_bits = n;
        }
    }
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
    lmp_qsetting *settings = NULL;
    const bool target = p->target_bpw > 0 || p->target_size > 0;
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
        /* the memory the windows take is stated by the driver (lib/calib), in memory or spilled */
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
    if (target) {
        const int nl = lmp_model_config(m)->n_layers;
        if (!(settings = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *settings))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        if ((rc = make_plan(m, p->calib_path ? &cal : NULL, p, &wp, &qc, settings, r)))
            goto done;
        wp.per_linear = settings;
        if (p->dry_run)
            goto done;
    }
    if ((rc = lmp_qmodel_writer_open(&w, m, out, &qc, &wp)))
        goto done;
    r->prep_seconds = lmp_time_s() - t0;
    lmp_qpipe_params pp = p->pipe;
    pp.keep = keep;
    pp.per_linear = settings;
    if (settings) {
        pp.bits = qc.bits;
        pp.group_size = qc.group_size;
    }
    pp.act_order = qc.desc_act;
    pp.sink = lmp_qmodel_writer_layer;
    pp.sink_ctx = w;
    pp.fold_sink = lmp_qmodel_writer_fold;
    pp.expert_sink = lmp_qmodel_writer_experts;
    if ((rc = lmp_qpipe_run(m, p->calib_path ? &cal : NULL, &pp, &r->pipe)))
        goto done;
    double tf = lmp_time_s();
    rc = lmp_qmodel_writer_finish(w, &r->write);
    r->finish_seconds = lmp_time_s() - tf;
    w = NULL;
done:
    lmp_qmodel_writer_abort(w);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    free(keep);
    free(settings);
    r->seconds = lmp_time_s() - t0;
    r->peak_rss = lmp_peak_rss();
    return rc;
}

void lmp_qmodel_quant_phases_json(const lmp_qmodel_quant_result *r, FILE *f)
{
    const lmp_calib_times *t = &r->pipe.phases;
    const double solve = t->solve - r->pipe.report_seconds, write = t->end + r->finish_seconds;
    const double other = r->seconds - r->prep_seconds - t->embed - t->forward - t->stats - t->solve - t->rerun - write;
    fprintf(f,
            "\"phases\": {\"prepare\": %.3f, \"embed\": %.3f, \"forward\": %.3f, \"statistics\": %.3f, \"solve\": %.3f, "
            "\"report\": %.3f, \"write\": %.3f, \"other\": %.3f}, ",
            r->prep_seconds, t->embed, t->forward, t->stats, solve, r->pipe.report_seconds + t->rerun, write,
            other > 0 ? other : 0.0);
}
