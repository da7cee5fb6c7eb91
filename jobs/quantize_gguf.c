/*
 * The GGUF quantize job (jobs/quantize_gguf.h): importance weights, the source (a GGUF
 * file, or an HF checkpoint read through formats' converter without a temporary GGUF),
 * plan, writer. Moved here from tools/cmd_quantize.c (issue 14) so that the command only
 * sets preferences, makes this one call and prints.
 */
#include "jobs/quantize_gguf.h"
#include "formats/formats.h"
#include "lib/core/dist.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

void lmp_job_gguf_default_params(lmp_job_gguf_params *p)
{
    memset(p, 0, sizeof *p);
    lmp_gguf_quant_default_params(&p->q);
    lmp_calib_default_params(&p->calib);
    p->calib.mode = LMP_CALIB_CHUNKS; /* llama-imatrix: consecutive chunks, BOS first */
    p->notes = true;
    p->target_bpw = -1;
    p->target_probes = -1;
    p->target_refine = -1;
    p->target_tokens = -1;
    p->target_context = -1;
}

bool lmp_job_parse_bytes(const char *s, double *bytes)
{
    if (!s || !*s)
        return false;
    char *end;
    double v = strtod(s, &end);
    if (end == s || !(v > 0) || !isfinite(v))
        return false;
    static const struct {
        const char *suf;
        double mul;
    } sx[] = {{"", 1},          {"B", 1},           {"K", 1e3},         {"KB", 1e3},        {"M", 1e6},
              {"MB", 1e6},      {"G", 1e9},         {"GB", 1e9},        {"T", 1e12},        {"TB", 1e12},
              {"KiB", 1024.0},  {"MiB", 1048576.0}, {"GiB", 1073741824.0}, {"TiB", 1099511627776.0}};
    for (size_t i = 0; i < sizeof sx / sizeof *sx; i++)
        if (strcasecmp(end, sx[i].suf) == 0 && (strchr(sx[i].suf, 'i') == NULL || strcmp(end, sx[i].suf) == 0)) {
            *bytes = v * sx[i].mul;
            return true;
        }
    return false;
}

int lmp_job_gguf_check_args(const char *model, const char *out, const lmp_job_gguf_params *p)
{
    const bool target = p->target_bpw != -1 || p->target_size;
    double sz;
    if (p->target_bpw != -1 && p->target_size)
        return lmp_err(LMP_EINVAL, "--target-bpw / --target-size choose the types: not with --type, "
                                   "--tensor-type or each other");
    if (p->target_bpw != -1 && !(p->target_bpw > 0 && p->target_bpw <= 64))
        return lmp_err(LMP_EINVAL, "--target-bpw %g: must be a positive number of bits per weight (at most 64)",
                       p->target_bpw);
    if (p->target_probes < -1 || p->target_probes > 16)
        return lmp_err(LMP_EINVAL, "--target-probes %d: must be 0 (every point) to 16", p->target_probes);
    if (p->target_refine < -1 || p->target_refine > 10)
        return lmp_err(LMP_EINVAL, "--target-refine %d: must be 0 (none) to 10", p->target_refine);
    if (p->target_tokens != -1 && (p->target_tokens < 64 || p->target_tokens > 1048576))
        return lmp_err(LMP_EINVAL, "--target-tokens %d: must be 64 to 1048576", p->target_tokens);
    if (p->target_context < -1 || p->target_context > 10)
        return lmp_err(LMP_EINVAL, "--target-context %d: must be 0 (none) to 10", p->target_context);
    if (p->target_context > 0 && p->target_refine > 0)
        return lmp_err(LMP_EINVAL, "--target-context and --target-refine: give one of them");
    if ((p->target_calib || p->target_probes != -1 || p->target_refine != -1 || p->target_tokens != -1 ||
         p->target_context != -1) && !target)
        return lmp_err(LMP_EINVAL, "--target-calib / --target-probes / --target-refine / --target-tokens / --target-context need --target-bpw or "
                       "--target-size");
    if (p->dry_run && !target)
        return lmp_err(LMP_EINVAL, "--dry-run needs --target-bpw or --target-size");
    if (p->target_size && !lmp_job_parse_bytes(p->target_size, &sz))
        return lmp_err(LMP_EINVAL, "--target-size '%s': expected bytes, e.g. 600M or 1.5GiB", p->target_size);
    if (!model || (!out && !(target && p->dry_run)))
        return lmp_err(LMP_EINVAL, "need MODEL, -o OUT and --type TYPE (see --help)");
    return LMP_OK;
}

/* "unknown type 'x'; did you mean 'y'? (one of a, b, ...)" */
static int unknown_type(const char *type)
{
    const char *names[96];
    char list[768];
    int n = 0;
    size_t k = 0;
    list[0] = 0;
    for (const lmp_gguf_qtype *q = lmp_gguf_qtype_list(); q->name && n < 96; q++) {
        names[n++] = q->name;
        if (k < sizeof list)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", q->name);
    }
    const char *sg = lmp_suggest(type, names, n);
    if (sg)
        return lmp_err(LMP_EINVAL, "--type: unknown type '%s'; did you mean '%s'? (one of %s)", type, sg, list);
    return lmp_err(LMP_EINVAL, "--type: unknown type '%s' (one of %s)", type, list);
}

int lmp_job_gguf_check(const lmp_job_gguf_params *p, const char *out)
{
    if (p->plan && (p->q.type || p->q.n_tensor_type))
        return lmp_err(LMP_EINVAL, "--target-bpw / --target-size choose the types: not with --type, "
                                   "--tensor-type or each other");
    if (!p->plan && !p->q.type)
        return lmp_err(LMP_EINVAL, "need MODEL, -o OUT and --type TYPE (see --help)");
    if (p->q.type && !lmp_gguf_qtype_find(p->q.type))
        return unknown_type(p->q.type);
    if (out && !(p->plan && p->dry_run) && !lmp_str_endswith_ci(out, ".gguf"))
        return lmp_err(LMP_EINVAL, "--type %s writes a GGUF file, so the output must end in .gguf (not '%s'); "
                                   "--method gptq|rtn|awq writes a Hugging Face folder",
                       p->q.type ? p->q.type : "(planned)", out);
    if (p->imatrix_file && p->imatrix_calib)
        return lmp_err(LMP_EINVAL, "--imatrix FILE and --imatrix-calib TEXT conflict (one source of weights)");
    if (p->imatrix_out && !p->imatrix_calib)
        return lmp_err(LMP_EINVAL, "--imatrix-out needs --imatrix-calib (it saves the computed importance)");
    if (p->imatrix_calib)
        return lmp_calib_check(&p->calib);
    return LMP_OK;
}

/* Tells which experts of a mixture no calibration token was routed to (their tensors
 * are quantized without importance weights). */
static void note_experts(const lmp_imatrix *im, bool notes)
{
    int unreached = 0;
    for (int l = 0; l < im->n_layers; l++) {
        const int64_t *cnt = im->ecount + (int64_t)l * im->n_experts;
        bool sparse = false;
        int in_layer = 0;
        for (int x = 0; x < im->n_experts; x++)
            sparse |= cnt[x] > 0;
        for (int x = 0; sparse && x < im->n_experts; x++) {
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
    else if (notes)
        fprintf(stderr, "imatrix: every expert was reached by the calibration tokens\n");
}

/* Runs the plan hook on the GGUF `model` (s NULL) or on source s (an HF checkpoint through
 * the converter) and makes its rules the writer's overrides: every planned tensor is
 * overridden, q8_0 gives the file type, the plan was printed. */
static int run_plan(const lmp_job_gguf_params *p, const char *model, const lmp_gguf_src *s, lmp_gguf_quant_params *q,
                    char ***rules, int *n_rules)
{
    int rc = p->plan(p->plan_ctx, model, s, q, rules, n_rules);
    if (rc || p->dry_run)
        return rc;
    q->type = "q8_0";
    q->tensor_type = (const char *const *)*rules;
    q->n_tensor_type = *n_rules;
    q->on_tensor = NULL;
    return LMP_OK;
}

int lmp_job_quantize_gguf(const char *model, const char *out, const lmp_job_gguf_params *p, lmp_job_gguf_result *r)
{
    memset(r, 0, sizeof *r);
    const double t0 = lmp_time_s();
    int rc = lmp_job_gguf_check(p, out);
    if (rc)
        return rc;
    const bool dry = p->plan && p->dry_run;
    if (!p->q.force && !dry && lmp_path_exists(out)) /* refuse before any conversion work */
        return lmp_err(LMP_EEXIST, "%s exists (use --force to replace it)", out);
    lmp_gguf_quant_params q = p->q;
    lmp_imatrix im = {0};
    lmp_imatrix_file imf = {0};
    char **rules = NULL;
    int n_rules = 0;

    if (p->imatrix_file) { /* read first: a broken file fails before any conversion */
        if ((rc = lmp_imatrix_file_load(p->imatrix_file, &imf)))
            goto done;
        if (p->notes)
            fprintf(stderr, "imatrix: %d entries, %d chunks%s%s from %s\n", imf.n_entries, imf.chunks,
                    imf.dataset ? " of " : "", imf.dataset ? imf.dataset : "", p->imatrix_file);
        q.weights = lmp_imatrix_file_weights;
        q.weights_ctx = &imf;
        q.weights_len = lmp_imatrix_file_len; /* refuses entries of another model's shapes */
        q.imatrix_file = p->imatrix_file;     /* the keys llama-quantize writes for --imatrix */
        q.imatrix_dataset = imf.dataset;
        q.imatrix_entries = imf.n_entries;
        q.imatrix_chunks = imf.chunks;
    }
    if (p->imatrix_calib) { /* a bad calibration text fails before conversion */
        double ti = lmp_time_s();
        rc = lmp_imatrix_compute(model, p->imatrix_calib, &p->calib, p->notes, &im);
        r->imatrix_seconds = lmp_time_s() - ti;
        if (rc)
            goto done;
        r->imatrix = true;
        r->imatrix_chunks = im.n_chunks;
        r->imatrix_entries = im.n_entries;
        r->imatrix_tokens = im.n_tokens;
        if (p->notes)
            fprintf(stderr, "imatrix: %d chunks (%lld tokens) from %s, %d linears\n", im.n_chunks,
                    (long long)im.n_tokens, p->imatrix_calib, im.n_entries);
        if (im.ev) {
            note_experts(&im, p->notes);
            if (p->imatrix_out) {
                rc = lmp_err(LMP_EUNSUPPORTED, "--imatrix-out: writing the per-expert importance of a mixture of "
                                               "experts is not supported");
                goto done;
            }
        }
        if (p->imatrix_out && (rc = lmp_imatrix_file_save(p->imatrix_out, &im, p->imatrix_calib, p->q.force)))
            goto done;
        q.weights = lmp_imatrix_weights;
        q.weights_ctx = &im;
        /* no imatrix file exists: both keys name the calibration text it came from */
        q.imatrix_file = p->imatrix_calib;
        q.imatrix_dataset = p->imatrix_calib;
        q.imatrix_entries = im.n_entries;
        q.imatrix_chunks = im.n_chunks;
    }

    /* Under mpirun the importance weights above were computed by every rank (data
     * parallel); the rest (plan, conversion, writing) is rank 0's alone, and the others
     * wait for its status below, so no rank reads a file another one is writing. */
    if (!lmp_dist_root())
        goto done;
    const bool hf = lmp_path_is_dir(model) || !lmp_str_endswith_ci(model, ".gguf");
    if (hf) { /* tensors streamed from the converter, for the plan and the writer: no temporary GGUF */
        lmp_gguf_src s;
        if (p->notes)
            fprintf(stderr, "reading %s through the GGUF converter (llama.cpp names and vocabulary)\n", model);
        if (!(rc = lmp_convert_src_open(model, &s)) && p->plan)
            rc = run_plan(p, model, &s, &q, &rules, &n_rules);
        if (!rc && !dry)
            rc = lmp_gguf_quantize_src(&s, out, &q, &r->q);
        lmp_convert_src_close(&s);
        goto done;
    }
    if (p->plan && ((rc = run_plan(p, model, NULL, &q, &rules, &n_rules)) || dry))
        goto done;
    rc = lmp_gguf_quantize(model, out, &q, &r->q);
done:
    rc = lmp_dist_status(rc);
    for (int i = 0; i < n_rules; i++)
        free(rules[i]);
    free(rules);
    lmp_imatrix_free(&im);
    lmp_imatrix_file_free(&imf);
    r->seconds = lmp_time_s() - t0;
    return rc;
}
