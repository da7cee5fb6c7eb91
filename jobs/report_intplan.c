/*
 * The integer-group size plan's table and JSON (see quantize_intplan.h).
 */
#include "report_intplan.h"
#include "report.h"

#include <stdio.h>

static void group_text(int g, char *buf, size_t n)
{
    if (g > 0)
        snprintf(buf, n, "%d", g);
    else
        snprintf(buf, n, "channel");
}

void lmp_report_intplan_print(FILE *f, const lmp_qmodel_quant_params *p, const lmp_qmodel_quant_result *r)
{
    const lmp_intplan *pl = &r->plan;
    fprintf(f, "%-40s %4s %7s %12s %12s\n", "linears", "bits", "group", "bytes", "pred. error");
    for (int i = 0; i < pl->n; i++) {
        const lmp_intplan_unit *u = &pl->u[i];
        const lmp_intplan_cand *c = &u->cand[u->choice];
        char g[16];
        group_text(c->group_size, g, sizeof g);
        fprintf(f, "%-40s %4d %7s %12llu %12.6g\n", u->name, c->bits, g, (unsigned long long)c->bytes, c->err);
    }
    const uint64_t lin = pl->bytes - pl->fixed_bytes;
    char g[16];
    group_text(r->base_group, g, sizeof g);
    fprintf(f, "plan: %llu bytes of packed linears (%.4f bits per weight over %llu weights)", (unsigned long long)lin,
            pl->lin_params ? lin * 8.0 / (double)pl->lin_params : 0, (unsigned long long)pl->lin_params);
    if (p->target_size)
        fprintf(f, " + %llu bytes of other tensors = %llu <= target %llu", (unsigned long long)pl->fixed_bytes,
                (unsigned long long)pl->bytes, (unsigned long long)pl->budget);
    else
        fprintf(f, " <= target %.4f (%llu bytes)", p->target_bpw, (unsigned long long)pl->budget);
    fprintf(f, "; predicted error %.6g (%s); base setting %d-bit group %s\n", pl->err,
            pl->kld_calibrated ? "sum of predicted KLD contributions, relative output errors scaled by KLD probes"
            : pl->calibrated   ? "sum of relative squared output errors on the calibration Hessians"
                               : "sum of relative squared weight errors, no calibration",
            r->base_bits, g);
    if (pl->kld_calibrated)
        fprintf(f, "KLD calibration: %d probes (each unit alone) on %d x %d calibration tokens, %.1f s\n", pl->n_probes,
                pl->probe_windows, pl->probe_seqlen, pl->calib_seconds);
    static const int ub[2] = {4, 3};
    for (int i = 0; i < 2; i++)
        if (r->uni_bytes[i])
            fprintf(f, "uniform %d-bit group 128: %llu bytes (%.4f bits per weight), predicted error %.6g\n", ub[i],
                    (unsigned long long)r->uni_bytes[i],
                    pl->lin_params ? r->uni_bytes[i] * 8.0 / (double)pl->lin_params : 0, r->uni_err[i]);
}

void lmp_report_intplan_json(const lmp_qmodel_quant_params *p, const lmp_qmodel_quant_result *r)
{
    const lmp_intplan *pl = &r->plan;
    const uint64_t lin = pl->bytes - pl->fixed_bytes;
    printf("{\"target_bpw\": %.6g, \"target_size\": %llu, \"budget\": %llu, \"bytes\": %llu, \"fixed_bytes\": %llu, "
           "\"linear_bytes\": %llu, \"linear_params\": %llu, \"bpw_linear\": %.6f, \"min_bytes\": %llu, "
           "\"max_bytes\": %llu, \"err\": %.9g, \"calibrated\": %s, \"base_bits\": %d, \"base_group_size\": %d, "
           "\"seconds\": %.4f, \"kld_calibrated\": %s, \"kld_probes\": %d, \"kld_windows\": %d, "
           "\"kld_seqlen\": %d, \"uniform\": [",
           p->target_bpw > 0 ? p->target_bpw : 0, (unsigned long long)p->target_size, (unsigned long long)pl->budget,
           (unsigned long long)pl->bytes, (unsigned long long)pl->fixed_bytes, (unsigned long long)lin,
           (unsigned long long)pl->lin_params, pl->lin_params ? lin * 8.0 / (double)pl->lin_params : 0,
           (unsigned long long)pl->min_bytes, (unsigned long long)pl->max_bytes, pl->err,
           pl->calibrated ? "true" : "false", r->base_bits, r->base_group, pl->seconds,
           pl->kld_calibrated ? "true" : "false", pl->n_probes, pl->probe_windows, pl->probe_seqlen);
    static const int ub[2] = {4, 3};
    for (int i = 0, k = 0; i < 2; i++)
        if (r->uni_bytes[i])
            printf("%s{\"bits\": %d, \"group_size\": 128, \"bytes\": %llu, \"err\": %.9g}", k++ ? ", " : "", ub[i],
                   (unsigned long long)r->uni_bytes[i], r->uni_err[i]);
    printf("], \"units\": [");
    for (int i = 0; i < pl->n; i++) {
        const lmp_intplan_unit *u = &pl->u[i];
        const lmp_intplan_cand *c = &u->cand[u->choice];
        printf("%s{\"name\": ", i ? ", " : "");
        lmp_report_json_str(u->name);
        printf(", \"params\": %lld, \"bits\": %d, \"group_size\": %d, \"bytes\": %llu, \"err\": %.9g, \"candidates\": [",
               (long long)u->params, c->bits, c->group_size, (unsigned long long)c->bytes, c->err);
        for (int k = 0; k < u->n_cand; k++)
            printf("%s[%d, %d, %llu, %.9g]", k ? ", " : "", u->cand[k].bits, u->cand[k].group_size,
                   (unsigned long long)u->cand[k].bytes, u->cand[k].err);
        printf("]}");
    }
    printf("]}");
}
