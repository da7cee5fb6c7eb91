/*
 * The size-targeted plan of `lmpress quantize` (see quantize_plan.h): one lib/quant
 * measurement, one solve, the printing, and the overrides for lmp_gguf_quantize.
 */
#include "quantize_plan.h"
#include "cli.h"
#include "jobs/quantize_gguf.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void print_plan(const lmp_plan *p, const char *model, uint64_t budget, FILE *f, bool json, bool table)
{
    double bpw = p->params ? p->bytes * 8.0 / (double)p->params : 0;
    const bool whole = p->refine_probes || p->ctx_probes; /* the plan measured whole */
    if (json) {
        printf("{\"input\": ");
        cli_json_str(model);
        printf(", \"target_bytes\": %llu, \"bytes\": %llu, \"params\": %llu, \"bpw\": %.4f, \"predicted_err\": %.6g, "
               "\"min_bytes\": %llu, \"max_bytes\": %llu, \"fixed_bytes\": %llu, \"measure_seconds\": %.3f, "
               "\"calibrated\": %s, \"calib_windows\": %d, \"calib_seqlen\": %d, \"probes\": %d, "
               "\"calib_seconds\": %.3f, \"refine_rounds\": %d, \"refine_probes\": %d, \"refine_seconds\": %.3f, "
               "\"calib_kld_solved\": %.6g, \"calib_kld\": %.6g, \"val_windows\": %d, \"val_kld_solved\": %.6g, "
               "\"val_kld\": %.6g, ",
               (unsigned long long)budget, (unsigned long long)p->bytes, (unsigned long long)p->params, bpw, p->err,
               (unsigned long long)p->min_bytes, (unsigned long long)p->max_bytes,
               (unsigned long long)p->fixed_bytes, p->seconds, p->calibrated ? "true" : "false", p->calib_windows,
               p->calib_seqlen, p->n_probes, p->calib_seconds, p->refine_rounds, p->refine_probes, p->refine_seconds,
               whole ? p->kld_solved : -1, whole ? p->kld_refined : -1, p->val_windows,
               whole ? p->kld_val_solved : -1, whole ? p->kld_val_refined : -1);
        printf("\"context_probes\": %d, \"context_seconds\": %.3f, \"context_kept\": %d, \"context_tried\": [",
               p->ctx_probes, p->ctx_seconds, p->ctx_kept);
        for (int r = 0; r < p->ctx_tried; r++)
            printf("%s{\"moved\": %d, \"calib_kld\": %.6g, \"val_kld\": %.6g}", r ? ", " : "", p->ctx_moved[r],
                   p->ctx_kld[r], p->ctx_kld_val[r]);
        printf("], \"context_blocks\": [");
        for (int b = 0; b < p->ctx_blocks; b++)
            printf("%s%.6g", b ? ", " : "", p->ctx_block_kld[b]);
        printf("], ");
        printf("\"refine_tried\": [");
        for (int r = 0; r < p->refine_tried; r++)
            printf("%s{\"moved\": %d, \"calib_kld\": %.6g, \"val_kld\": %.6g}", r ? ", " : "", p->refine_moved[r],
                   p->refine_kld[r], p->refine_kld_val[r]);
        printf("], \"refine_pairs\": %d, \"refine_pairs_tried\": %d, \"tensors\": [", p->refine_pairs,
               p->refine_pairs_tried);
        for (int i = 0; i < p->n; i++) {
            const lmp_plan_tensor *t = &p->t[i];
            const lmp_plan_cand *c = &t->cand[t->choice];
            printf("%s{\"name\": ", i ? ", " : "");
            cli_json_str(t->name);
            printf(", \"type\": \"%s\", \"bytes\": %llu, \"bpw\": %.4f, \"predicted_err\": %.6g, \"front\": [",
                   lmp_dtype_info(c->dt)->name, (unsigned long long)c->bytes, c->bytes * 8.0 / (double)t->params,
                   c->err);
            for (int k = 0; k < t->n_cand; k++)
                printf("%s{\"type\": \"%s\", \"bytes\": %llu, \"err\": %.6g, \"rel_err\": %.6g, \"kld\": %.6g}",
                       k ? ", " : "", lmp_dtype_info(t->cand[k].dt)->name, (unsigned long long)t->cand[k].bytes,
                       t->cand[k].err, t->cand[k].rel_err, t->cand[k].kld);
            printf("]}");
        }
        printf("]}\n");
        return;
    }
    char b1[32], b2[32], b3[32];
    if (table)
        fprintf(f, "%-36s %-8s %12s %7s %12s\n", "tensor", "type", "bytes", "bpw",
                p->calibrated ? "pred. KLD" : "predicted err");
    for (int i = 0; table && i < p->n; i++) {
        const lmp_plan_tensor *t = &p->t[i];
        const lmp_plan_cand *c = &t->cand[t->choice];
        fprintf(f, "%-36s %-8s %12llu %7.3f %12.4g\n", t->name, lmp_dtype_info(c->dt)->name,
                (unsigned long long)c->bytes, c->bytes * 8.0 / (double)t->params, c->err);
    }
    fprintf(f, "plan: %s of %s target (%.4f bits per weight), predicted %s %.5g; "
               "%s kept as they are; achievable %.3f .. %.3f bits per weight\n",
            cli_bytes((double)p->bytes, b1, sizeof b1), cli_bytes((double)budget, b2, sizeof b2), bpw,
            p->calibrated ? "KL divergence (sum of the tensors' calibrated contributions)"
                          : "error (uncalibrated sum of relative output errors)", p->err,
            cli_bytes((double)p->fixed_bytes, b3, sizeof b3), p->min_bytes * 8.0 / (double)p->params,
            p->max_bytes * 8.0 / (double)p->params);
    if (p->calibrated)
        fprintf(f, "plan: types measured in %.1f s; %d end-to-end probes on %d x %d calibration tokens in %.1f s\n",
                p->seconds, p->n_probes, p->calib_windows, p->calib_seqlen, p->calib_seconds);
    if (p->refine_probes)
        fprintf(f, "plan: in context, %d probes, %d round(s) kept in %.1f s: the whole plan's KL divergence on the "
                   "calibration text %.5g as solved, %.5g kept; on %d validation windows %.5g as solved, %.5g kept\n",
                p->refine_probes, p->refine_rounds, p->refine_seconds, p->kld_solved, p->kld_refined, p->val_windows,
                p->kld_val_solved, p->kld_val_refined);
    for (int r = 0; r < p->refine_tried; r++)
        fprintf(f, "plan: round %d moved %d tensors: calibration KL divergence %.5g, validation %.5g%s\n", r + 1,
                p->refine_moved[r], p->refine_kld[r], p->refine_kld_val[r],
                r < p->refine_rounds ? "" : " (not lower: not kept)");
    if (p->ctx_probes)
        fprintf(f, "plan: in context, %d block passes in %.1f s: the whole plan's KL divergence on the calibration "
                   "text %.5g as solved, %.5g kept; on %d validation windows %.5g as solved, %.5g kept (plan %d of %d "
                   "re-solved kept; 0: as solved)\n",
                p->ctx_probes, p->ctx_seconds, p->kld_solved, p->kld_refined, p->val_windows, p->kld_val_solved,
                p->kld_val_refined, p->ctx_kept, p->ctx_tried);
    for (int r = 0; r < p->ctx_tried; r++)
        fprintf(f, "plan: context round %d moved %d tensors: calibration KL divergence %.5g, validation %.5g\n", r + 1,
                p->ctx_moved[r], p->ctx_kld[r], p->ctx_kld_val[r]);
    if (p->refine_probes)
        fprintf(f, "plan: %d of %d move(s) kept (a tensor a type dearer, others cheaper; kept where the validation "
                   "KL divergence falls)\n", p->refine_pairs, p->refine_pairs_tried);
}

int quantize_plan_make(const char *src, const char *model, const quantize_plan_opts *o, char ***rules, int *n_rules)
{
    *rules = NULL;
    *n_rules = 0;
    lmp_plan_params pp = {0};
    pp.weights = o->weights;
    pp.weights_ctx = o->weights_ctx;
    pp.weights_len = o->weights_len;
    pp.progress = false;
    pp.src = o->gsrc;
    lmp_plan p;
    int rc = lmp_plan_measure(src, &pp, &p);
    if (rc)
        return rc;
    double want = o->target_bpw > 0 ? o->target_bpw * (double)p.params / 8.0 : 0;
    if (o->target_bpw <= 0 && !lmp_job_parse_bytes(o->target_size, &want)) {
        lmp_plan_free(&p);
        return lmp_err(LMP_EINVAL, "--target-size '%s': expected bytes, e.g. 600M or 1.5GiB", o->target_size);
    }
    uint64_t budget = want >= 1.8e19 ? UINT64_MAX : (uint64_t)floor(want);
    lmp_plan_calib_params cp;
    lmp_plan_calib_default_params(&cp);
    if (o->calib_path) {
        cp.calib_path = o->calib_path;
        cp.cp.text_field = o->calib_field;
        cp.target_bpw = p.params ? (double)budget * 8.0 / (double)p.params : 0;
        if (o->probes)
            cp.probes = o->probes < 0 ? 0 : o->probes;
        if (o->tokens > 0)
            cp.tokens = o->tokens;
        if ((rc = lmp_plan_calibrate(src, &pp, &cp, &p))) {
            lmp_plan_free(&p);
            return rc;
        }
    } else if (!o->json || o->dry_run) {
        fprintf(stderr, "lmpress quantize: warning: no calibration text (--imatrix-calib or --target-calib): the "
                        "plan minimises the uncalibrated sum of relative output errors, not the model's KL "
                        "divergence\n");
    }
    if ((rc = lmp_plan_solve(&p, budget))) {
        char m[1024];
        snprintf(m, sizeof m, "%s", lmp_errmsg());
        lmp_plan_free(&p);
        return lmp_err(LMP_EINVAL, "%s: %s", model, m);
    }
    if (p.calibrated && o->refine >= 0) {
        lmp_plan_refine_params rp;
        lmp_plan_refine_default_params(&rp);
        if (o->refine > 0)
            rp.rounds = o->refine;
        if ((rc = lmp_plan_refine(src, &pp, &cp, &rp, &p, budget))) {
            lmp_plan_free(&p);
            return rc;
        }
    }
    if (p.calibrated && o->context > 0) {
        lmp_plan_context_params xp;
        lmp_plan_context_default_params(&xp);
        xp.iters = o->context;
        if ((rc = lmp_plan_context(src, &pp, &cp, &xp, &p, budget))) {
            lmp_plan_free(&p);
            return rc;
        }
    }
    if (o->dry_run) {
        print_plan(&p, model, budget, stdout, o->json, true);
        lmp_plan_free(&p);
        return LMP_OK;
    }
    print_plan(&p, model, budget, stderr, false, !o->json); /* with --json: the summary lines only */
    char **r = calloc((size_t)p.n + 1, sizeof *r);
    if (!r) {
        lmp_plan_free(&p);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    for (int i = 0; i < p.n; i++) {
        const lmp_plan_tensor *t = &p.t[i];
        char rx[2 * LMP_MAX_NAME + 64];
        size_t k = 0;
        rx[k++] = '^';
        for (const char *s = t->name; *s && k + 4 < sizeof rx; s++) {
            if (!isalnum((unsigned char)*s) && *s != '_')
                rx[k++] = '\\';
            rx[k++] = *s;
        }
        snprintf(rx + k, sizeof rx - k, "$=%s", lmp_dtype_info(t->cand[t->choice].dt)->name);
        if (!(r[i] = strdup(rx))) {
            for (int j = 0; j < i; j++)
                free(r[j]);
            free(r);
            lmp_plan_free(&p);
            return lmp_err(LMP_ENOMEM, "out of memory");
        }
    }
    *rules = r;
    *n_rules = p.n;
    lmp_plan_free(&p);
    return LMP_OK;
}

int quantize_plan_hook(void *ctx, const char *src, const lmp_gguf_src *s, const lmp_gguf_quant_params *q,
                       char ***rules, int *n_rules)
{
    quantize_plan_ctx *c = ctx;
    const lmp_job_gguf_params *p = c->gp;
    c->po.target_bpw = p->target_bpw;
    c->po.target_size = p->target_size;
    c->po.dry_run = p->dry_run;
    c->po.gsrc = s;
    c->po.weights = q->weights;
    c->po.weights_ctx = q->weights_ctx;
    c->po.weights_len = q->weights_len;
    c->po.calib_path = p->target_calib ? p->target_calib : p->imatrix_calib; /* the probes' default text */
    c->po.calib_field = p->calib.text_field;
    c->po.probes = p->target_probes < 0 ? 0 : p->target_probes == 0 ? -1 : p->target_probes;
    c->po.refine = p->target_refine <= 0 ? -1 : p->target_refine; /* off unless asked (docs/results.md) */
    c->po.tokens = p->target_tokens;
    c->po.context = p->target_context;
    return quantize_plan_make(src, c->model, &c->po, rules, n_rules);
}
