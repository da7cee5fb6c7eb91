/*
 * Size-targeted mixed precision for integer-group folders (issue 21): per block unit
 * (q/k/v, o, gate/up, down) the error of each candidate (bits, group) on the block's
 * Hessians, then lib/quant/plan.c's exact budget solve. See intplan.h.
 *
 * Not here: the bytes of a candidate in a file format (the caller's function, formats/),
 * writing the plan (formats/qmodel.c), the options (tools/).
 */
#include "intplan.h"
#include "plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const int g_def_bits[] = {2, 3, 4, 8};
static const int g_def_groups[] = {32, 64, 128, -1};

void lmp_intplan_default_params(lmp_intplan_params *p)
{
    /* probes = 0: nothing kept for lmp_intplan_calibrate (the caller asks for it) */
    memset(p, 0, sizeof *p);
    p->method = LMP_QMETHOD_GPTQ;
    p->sym = true;
    p->act_order = true;
    p->damp = 0.01f;
    p->progress = true;
}

static void free_probes(lmp_intplan *p)
{
    for (int i = 0; p->u && i < p->n; i++) {
        for (int j = 0; j < p->u[i].n_probe; j++)
            for (int k = 0; k < 3; k++)
                lmp_qtensor_free(&p->u[i].probe_q[j][k]);
        p->u[i].n_probe = 0;
    }
}

void lmp_intplan_free(lmp_intplan *p)
{
    if (!p)
        return;
    free_probes(p);
    free(p->u);
    memset(p, 0, sizeof *p);
}

/* The unit's name: "model.layers.3.self_attn.{q,k,v}_proj", "model.layers.3.mlp.down_proj". */
static void unit_name(int layer, int cls, char *buf, size_t n)
{
    static const char *const nm[LMP_IN_COUNT] = {"self_attn.{q,k,v}_proj", "self_attn.o_proj",
                                                  "mlp.{gate,up}_proj", "mlp.down_proj"};
    snprintf(buf, n, "model.layers.%d.%s", layer, nm[cls]);
}

typedef struct {
    const lmp_intplan_params *pp;
    lmp_intplan *plan;
    bool have_h;
} meas_ctx;

/* One linear at (bits, group): *err = tr(D H D^T) / tr(W H W^T) (H NULL: ||D||^2 / ||W||^2). */
static int linear_err(const meas_ctx *c, const float *W, int64_t rows, int64_t cols, const double *H, int bits,
                      int group, float *D, double den, const char *name, double *err, lmp_qtensor *keep)
{
    const lmp_intplan_params *pp = c->pp;
    lmp_qtensor q = {0};
    int rc;
    if (pp->method == LMP_QMETHOD_GPTQ && H) {
        lmp_gptq_params gp;
        lmp_gptq_default_params(&gp);
        gp.bits = bits;
        gp.group_size = group;
        gp.sym = pp->sym;
        gp.act_order = pp->act_order;
        gp.percdamp = pp->damp;
        rc = lmp_quant_gptq(W, rows, cols, H, &gp, &q, NULL);
    } else if (pp->method == LMP_QMETHOD_AWQ) {
        rc = lmp_awq_quant(W, rows, cols, bits, group, pp->sym, &q);
    } else {
        lmp_rtn_params rp;
        lmp_rtn_default_params(&rp);
        rp.bits = bits;
        rp.group_size = group;
        rp.sym = pp->sym;
        rc = lmp_quant_rtn(W, rows, cols, &rp, &q);
    }
    if (rc)
        return lmp_err_prefix(rc, "plan: %s at %d bits, group %d", name, bits, group);
    lmp_qtensor_dequant(&q, D);
    if (keep)
        *keep = q; /* moved: the probe's weights */
    else
        lmp_qtensor_free(&q);
    for (int64_t i = 0; i < rows * cols; i++)
        D[i] = W[i] - D[i];
    double num;
    if (H) {
        num = lmp_gptq_quad_trace(D, H, rows, cols);
        if (num < 0)
            return lmp_err(LMP_ENOMEM, "plan: out of memory measuring %s", name);
    } else {
        num = 0;
        for (int64_t i = 0; i < rows * cols; i++)
            num += (double)D[i] * D[i];
    }
    *err = den > 0 ? num / den : 0;
    return LMP_OK;
}

typedef struct {
    int bits, group;
    uint64_t bytes;
    bool keep;
} fit_cand;

static int meas_block(void *ctx, lmp_calib_block *b)
{
    meas_ctx *c = ctx;
    const lmp_intplan_params *pp = c->pp;
    const int nb = pp->bits ? pp->n_bits : 4, ng = pp->groups ? pp->n_groups : 4;
    const int *bl = pp->bits ? pp->bits : g_def_bits, *gl = pp->groups ? pp->groups : g_def_groups;
    const int l = b->layer;
    int rc = LMP_OK;
    for (int cls = 0; cls < LMP_IN_COUNT && !rc; cls++) {
        lmp_intplan_unit *u = &c->plan->u[l * LMP_INTPLAN_UNITS + cls];
        u->layer = l;
        u->cls = cls;
        u->choice = -1;
        unit_name(l, cls, u->name, sizeof u->name);
        const double *H = c->have_h ? b->st.H[cls] : NULL;
        lmp_linear lin[3];
        int nlin = 0;
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            if ((int)lmp_linear_input((lmp_linear)w) == cls)
                lin[nlin++] = (lmp_linear)w;
        float *W[3] = {0}, *D = NULL;
        double den[3] = {0};
        int64_t maxn = 0;
        u->params = 0;
        for (int i = 0; i < nlin && !rc; i++) {
            char name[LMP_MAX_NAME];
            lmp_linear_hf_prefix(l, lin[i], name, sizeof name);
            const lmp_wmat *wm = &b->orig[lin[i]];
            if ((rc = lmp_calib_weight_f32(wm, name, &W[i])))
                break;
            u->params += wm->rows * wm->cols;
            maxn = wm->rows * wm->cols > maxn ? wm->rows * wm->cols : maxn;
            if (H) {
                den[i] = lmp_gptq_quad_trace(W[i], H, wm->rows, wm->cols);
                if (den[i] < 0)
                    rc = lmp_err(LMP_ENOMEM, "plan: out of memory measuring %s", name);
            } else {
                for (int64_t e = 0; e < wm->rows * wm->cols; e++)
                    den[i] += (double)W[i][e] * W[i][e];
            }
        }
        if (!rc && !(D = malloc(sizeof(float) * (size_t)(maxn ? maxn : 1))))
            rc = lmp_err(LMP_ENOMEM, "plan: out of memory");
        /* the candidates that fit, then which of them to keep for the KLD probes (the
         * nearest pp->probe_bpw in bits per weight) */
        fit_cand fit[LMP_INTPLAN_MAX_CAND];
        int nfit = 0;
        for (int bi = 0; bi < nb; bi++)
            for (int gi = 0; gi < ng; gi++) {
                const int bits = bl[bi], group = gl[gi];
                uint64_t bytes = 0;
                bool fits = true;
                for (int i = 0; i < nlin && fits; i++) {
                    const lmp_wmat *wm = &b->orig[lin[i]];
                    uint64_t by = (group > 0 && wm->cols % group) ? 0
                                  : pp->bytes(pp->bytes_ctx, wm->rows, wm->cols, bits, group);
                    fits = by > 0;
                    bytes += by;
                }
                if (fits && nfit < LMP_INTPLAN_MAX_CAND)
                    fit[nfit++] = (fit_cand){bits, group, bytes, false};
            }
        int nkeep = pp->probes > LMP_INTPLAN_MAX_PROBES ? LMP_INTPLAN_MAX_PROBES : pp->probes;
        if (!H)
            nkeep = 0; /* no calibration text: nothing to probe on */
        for (int j = 0; j < nkeep && j < nfit; j++) {
            int best = -1;
            double bd = INFINITY;
            for (int k = 0; k < nfit; k++) {
                double d = fabs(fit[k].bytes * 8.0 / (double)(u->params ? u->params : 1) - pp->probe_bpw);
                if (!fit[k].keep && d < bd) {
                    bd = d;
                    best = k;
                }
            }
            fit[best].keep = true;
        }
        u->n_cand = 0;
        u->n_probe = 0;
        for (int k = 0; k < nfit && !rc; k++) {
            const int bits = fit[k].bits, group = fit[k].group;
            lmp_qtensor *keep = fit[k].keep ? u->probe_q[u->n_probe] : NULL;
            double err = 0;
            for (int i = 0; i < nlin && !rc; i++) {
                const lmp_wmat *wm = &b->orig[lin[i]];
                char name[LMP_MAX_NAME];
                lmp_linear_hf_prefix(l, lin[i], name, sizeof name);
                double e = 0;
                rc = linear_err(c, W[i], wm->rows, wm->cols, H, bits, group, D, den[i], name, &e, keep ? &keep[i] : NULL);
                err += e;
            }
            if (keep)
                u->probe_k[u->n_probe++] = u->n_cand; /* its weights are owned by the unit now */
            if (!rc)
                u->cand[u->n_cand++] = (lmp_intplan_cand){bits, group, fit[k].bytes, err, err, -1};
        }
        if (!rc && u->n_cand == 0)
            rc = lmp_err(LMP_EINVAL, "plan: %s: no candidate (bits, group size) fits its shape in the target format",
                         u->name);
        for (int i = 0; i < nlin; i++)
            free(W[i]);
        free(D);
    }
    if (!rc)
        lmp_calib_tick(b);
    return rc;
}

int lmp_intplan_measure(lmp_model *m, const lmp_calib_data *cal, const lmp_intplan_params *pp, lmp_intplan *out)
{
    memset(out, 0, sizeof *out);
    double t0 = lmp_time_s();
    if (!pp->bytes)
        return lmp_err(LMP_EINVAL, "plan: no bytes function");
    const int nb = pp->bits ? pp->n_bits : 4, ng = pp->groups ? pp->n_groups : 4;
    if (nb < 1 || ng < 1 || nb * ng > LMP_INTPLAN_MAX_CAND)
        return lmp_err(LMP_EINVAL, "plan: %d bit widths x %d group sizes: at most %d candidates", nb, ng,
                       LMP_INTPLAN_MAX_CAND);
    for (int i = 0; pp->bits && i < nb; i++)
        if (pp->bits[i] < 2 || pp->bits[i] > 8)
            return lmp_err(LMP_EINVAL, "plan: candidate bit width %d not in 2..8", pp->bits[i]);
    for (int i = 0; pp->groups && i < ng; i++)
        if (pp->groups[i] == 0 || pp->groups[i] < -1)
            return lmp_err(LMP_EINVAL, "plan: candidate group size %d (positive, or -1 per channel)", pp->groups[i]);
    if (!cal && pp->method != LMP_QMETHOD_RTN)
        return lmp_err(LMP_EINVAL, "plan: %s needs calibration text", pp->method == LMP_QMETHOD_AWQ ? "AWQ" : "GPTQ");
    if (lmp_model_is_moe(m))
        return lmp_err(LMP_EUNSUPPORTED, "plan: mixture-of-experts models are not planned (integer groups)");
    const int nl = lmp_model_config(m)->n_layers;
    out->n_layers = nl;
    out->n = nl * LMP_INTPLAN_UNITS;
    out->u = calloc((size_t)out->n, sizeof *out->u);
    if (!out->u)
        return lmp_err(LMP_ENOMEM, "out of memory");
    meas_ctx c = {pp, out, cal != NULL};
    const lmp_calib_method row = {
        .name = "plan",
        .stats = LMP_STAT_HESSIAN,
        .hessian_add = lmp_gptq_hessian_add,
        .block = meas_block,
    };
    lmp_calib_opts o = {.true_sequential = false, .calib_bos = pp->calib_bos, .progress = pp->progress};
    int rc = lmp_calib_run(m, cal, &row, &c, &o);
    if (rc) {
        lmp_intplan_free(out);
        return rc;
    }
    for (int i = 0; i < out->n; i++)
        out->lin_params += (uint64_t)out->u[i].params;
    out->calibrated = cal != NULL;
    out->seconds = lmp_time_s() - t0;
    return LMP_OK;
}

int lmp_intplan_solve(lmp_intplan *p, uint64_t budget, uint64_t fixed)
{
    lmp_plan pl;
    memset(&pl, 0, sizeof pl);
    pl.n = p->n;
    pl.fixed_bytes = fixed;
    pl.params = p->lin_params;
    pl.t = calloc((size_t)(p->n ? p->n : 1), sizeof *pl.t);
    if (!pl.t)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int i = 0; i < p->n; i++) {
        const lmp_intplan_unit *u = &p->u[i];
        lmp_plan_tensor *t = &pl.t[i];
        snprintf(t->name, sizeof t->name, "%s", u->name);
        t->params = u->params;
        for (int k = 0; k < u->n_cand && k < LMP_PLAN_MAX_CAND; k++) {
            t->cand[k].bytes = u->cand[k].bytes;
            t->cand[k].err = u->cand[k].err;
            t->cand[k].rel_err = u->cand[k].err;
            t->cand[k].kld = -1;
        }
        t->n_cand = lmp_plan_pareto(t->cand, u->n_cand < LMP_PLAN_MAX_CAND ? u->n_cand : LMP_PLAN_MAX_CAND);
    }
    int rc = lmp_plan_solve(&pl, budget);
    p->min_bytes = pl.min_bytes;
    p->max_bytes = pl.max_bytes;
    if (!rc) {
        p->budget = budget;
        p->fixed_bytes = fixed;
        p->bytes = fixed;
        p->err = 0;
        for (int i = 0; i < p->n && !rc; i++) {
            lmp_intplan_unit *u = &p->u[i];
            const lmp_plan_cand *ch = &pl.t[i].cand[pl.t[i].choice];
            u->choice = -1;
            for (int k = 0; k < u->n_cand && u->choice < 0; k++) /* the Pareto point's origin */
                if (u->cand[k].bytes == ch->bytes && u->cand[k].err == ch->err)
                    u->choice = k;
            if (u->choice < 0) {
                rc = lmp_err(LMP_EINVAL, "plan: %s: solved point not among its candidates", u->name);
                break;
            }
            p->bytes += u->cand[u->choice].bytes;
            p->err += u->cand[u->choice].err;
        }
    }
    free(pl.t);
    return rc;
}

int lmp_intplan_uniform(const lmp_intplan *p, int bits, int group_size, uint64_t *bytes, double *err)
{
    *bytes = 0;
    *err = 0;
    for (int i = 0; i < p->n; i++) {
        const lmp_intplan_unit *u = &p->u[i];
        int k = 0;
        while (k < u->n_cand && !(u->cand[k].bits == bits && u->cand[k].group_size == group_size))
            k++;
        if (k == u->n_cand)
            return lmp_err(LMP_EINVAL, "plan: %s has no %d-bit group %d candidate", u->name, bits, group_size);
        *bytes += u->cand[k].bytes;
        *err += u->cand[k].err;
    }
    return LMP_OK;
}

void lmp_intplan_settings(const lmp_intplan *p, lmp_qsetting *out)
{
    for (int l = 0; l < p->n_layers; l++)
        for (int w = 0; w < LMP_LIN_COUNT; w++) {
            const lmp_intplan_unit *u = &p->u[l * LMP_INTPLAN_UNITS + lmp_linear_input((lmp_linear)w)];
            lmp_qsetting *s = &out[l * LMP_LIN_COUNT + w];
            if (u->choice >= 0) {
                s->bits = u->cand[u->choice].bits;
                s->group_size = u->cand[u->choice].group_size;
            } else {
                s->bits = 0;
                s->group_size = 0;
            }
        }
}

/* ---------------------------------------------------------------- KLD calibration */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y ? 1 : 0;
}

static double log_ratio(const lmp_intplan_cand *c)
{
    return log((c->kld > 1e-12 ? c->kld : 1e-12) / c->rel_err);
}

int lmp_intplan_calibrate(lmp_model *m, const lmp_calib_data *cal, int windows, int seq_len, bool calib_bos,
                          bool progress, lmp_intplan *p)
{
    double t0 = lmp_time_s();
    if (!cal || cal->n_samples < 1 || cal->seq_len < 1)
        return lmp_err(LMP_EINVAL, "plan: KLD calibration needs calibration windows");
    int W = windows < cal->n_samples ? windows : cal->n_samples;
    int S = seq_len < cal->seq_len ? seq_len : cal->seq_len;
    if (W < 1 || S < 2)
        return lmp_err(LMP_EINVAL, "plan: KLD calibration on %d x %d tokens", W, S);
    int32_t *tok = malloc(sizeof *tok * (size_t)W * (size_t)S);
    double *ls = malloc(sizeof *ls * (size_t)(p->n ? p->n : 1));
    if (!tok || !ls) {
        free(tok);
        free(ls);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    const int bos = lmp_model_bos(m);
    for (int w = 0; w < W; w++) {
        memcpy(tok + (size_t)w * S, cal->tokens + (size_t)w * cal->seq_len, sizeof *tok * (size_t)S);
        if (calib_bos && bos >= 0)
            tok[(size_t)w * S] = bos; /* as the statistics passes saw the window */
    }
    lmp_plan_probe *pr = NULL;
    int rc = lmp_plan_probe_open(m, tok, W, S, &pr);
    free(tok);
    int n_probes = 0, n_ls = 0;
    for (int i = 0; i < p->n && !rc; i++) {
        lmp_intplan_unit *u = &p->u[i];
        lmp_linear lin[3];
        int nlin = 0;
        for (int w = 0; w < LMP_LIN_COUNT; w++)
            if ((int)lmp_linear_input((lmp_linear)w) == u->cls)
                lin[nlin++] = (lmp_linear)w;
        for (int j = 0; j < u->n_probe && !rc; j++) {
            lmp_wmat keep[3];
            int set = 0;
            for (int k = 0; k < nlin && !rc; k++) {
                keep[k] = *lmp_model_linear(m, u->layer, lin[k]);
                rc = lmp_model_set_linear_q(m, u->layer, lin[k], &u->probe_q[j][k]);
                set += !rc;
            }
            double kld = 0;
            if (!rc)
                rc = lmp_plan_probe_kld(pr, u->layer, &kld);
            for (int k = 0; k < set; k++) {
                int r2 = lmp_model_set_linear(m, u->layer, lin[k], &keep[k]);
                rc = rc ? rc : r2;
            }
            if (rc)
                break;
            u->cand[u->probe_k[j]].kld = kld;
            n_probes++;
        }
        /* the unit's ratio (log, geometric mean of its probes) for the median */
        double s = 0;
        int ns = 0;
        for (int k = 0; k < u->n_cand; k++)
            if (u->cand[k].kld >= 0 && u->cand[k].rel_err > 0) {
                s += log_ratio(&u->cand[k]);
                ns++;
            }
        if (ns)
            ls[n_ls++] = s / ns;
        if (!rc && progress)
            fprintf(stderr, "[plan %d/%d] %-40s KLD per unit error %.4g (%d probes)\n", i + 1, p->n, u->name,
                    ns ? exp(s / ns) : 0.0, ns);
    }
    lmp_plan_probe_close(pr);
    if (!rc) {
        double med = 0;
        if (n_ls) {
            qsort(ls, (size_t)n_ls, sizeof *ls, cmp_double);
            med = ls[n_ls / 2];
        }
        for (int i = 0; i < p->n; i++) {
            lmp_intplan_unit *u = &p->u[i];
            for (int k = 0; k < u->n_cand; k++) {
                lmp_intplan_cand *c = &u->cand[k];
                if (c->kld >= 0) {
                    c->err = c->kld;
                    continue;
                }
                int lo = -1, hi = -1; /* probed candidates with more / less error */
                for (int j = 0; j < u->n_cand; j++) {
                    const lmp_intplan_cand *d = &u->cand[j];
                    if (d->kld < 0 || d->rel_err <= 0)
                        continue;
                    if (d->rel_err >= c->rel_err && (lo < 0 || d->rel_err < u->cand[lo].rel_err))
                        lo = j;
                    if (d->rel_err <= c->rel_err && (hi < 0 || d->rel_err > u->cand[hi].rel_err))
                        hi = j;
                }
                double r;
                if (c->rel_err <= 0) {
                    c->err = 0;
                    continue;
                } else if (lo >= 0 && hi >= 0 && u->cand[lo].rel_err > u->cand[hi].rel_err) {
                    double a = (log(c->rel_err) - log(u->cand[hi].rel_err)) /
                               (log(u->cand[lo].rel_err) - log(u->cand[hi].rel_err));
                    r = log_ratio(&u->cand[hi]) + a * (log_ratio(&u->cand[lo]) - log_ratio(&u->cand[hi]));
                } else if (lo >= 0 || hi >= 0) {
                    r = log_ratio(&u->cand[lo >= 0 ? lo : hi]);
                } else {
                    r = med;
                }
                c->err = c->rel_err * exp(r);
            }
        }
        p->kld_calibrated = true;
        p->n_probes = n_probes;
        p->probe_windows = W;
        p->probe_seqlen = S;
    }
    free(ls);
    free_probes(p);
    p->calib_seconds = lmp_time_s() - t0;
    return rc;
}
