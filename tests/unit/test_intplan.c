/*
 * Size-targeted mixed precision for integer-group folders (issue 21; lib/quant/intplan.c,
 * formats/ mixed configs, jobs/quantize_model.c):
 *  - GPTQModel "dynamic" read back: "+:" / "-:" / bare keys, first match wins (vLLM's
 *    get_dynamic_override), bad regex and bad bits refused naming the key;
 *  - compressed-tensors with several config_groups: exact name before regex before the
 *    class "Linear", ignore wins, a module no group names is not quantized;
 *  - the writers' mixed configs resolve back to every module's setting, and vLLM's fused
 *    names (qkv_proj, gate_up_proj) get the setting of their parts;
 *  - the bytes of a candidate equal the packed tensors' bytes (GPTQ formula);
 *  - the solve: never over budget, equal to brute force on small random plans, targets
 *    outside the achievable range refused;
 *  - gutenberg-5M (skipped without fixtures), RTN with a 3.6 bpw target among 3/4 bits x
 *    groups 64/128, written as GPTQ (dynamic; errors on 4 x 32 calibration tokens) and
 *    compressed-tensors (config_groups; no calibration: weight errors): the packed bytes equal the plan's,
 *    the plan is below the uniform 4-bit group-128 setting's error at that setting's own
 *    size, every linear reads back to exactly the in-memory RTN tensor at its planned
 *    setting, the loaded folder's logits equal the in-memory quantized model's, and
 *    unreachable targets / dry runs write nothing;
 *  - KLD calibration (lmp_intplan_calibrate): every unit probed, probed candidates predict
 *    their measured KLD, and one probe's KLD equals the session engine's KLD of the model
 *    with that unit RTN-quantized again and installed.
 */
#include "formats/packing.h"
#include "formats/qmodel.h"
#include "jobs/quantize_model.h"
#include "lib/quant/intplan.h"
#include "lib/quant/plan.h"
#include "test.h"

#include <math.h>
#include <sys/stat.h>

static bool exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* ---------------------------------------------------------------- configs --------- */

static void test_gptq_dynamic(void)
{
    const char *js =
        "{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128,\"sym\":true,\"desc_act\":false,"
        "\"dynamic\":{\"-:model\\\\.layers\\\\.0\\\\.mlp\\\\..*\":{},"
        "\"+:model\\\\.layers\\\\.1\\\\..*\":{\"bits\":8,\"group_size\":32},"
        "\"model\\\\.layers\\\\.[12]\\\\.self_attn\\\\..*\":{\"bits\":2},"
        "\".*down_proj\":{\"group_size\":-1,\"sym\":false}}}";
    cJSON *j = cJSON_Parse(js);
    lmp_qformat f;
    lmp_intq_config base, c;
    lmp_intq_rules r;
    bool skip;
    CHECK(j && lmp_qformat_config_parse(j, &f, &base) == 0 && base.bits == 4, "base parsed");
    CHECK(lmp_intq_rules_parse(j, f, &base, &r) == 0 && r.n == 4, "4 rules: %s", lmp_errmsg());
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.mlp.up_proj", &c, &skip);
    CHECK(skip, "-: leaves layer 0's MLP unquantized");
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.self_attn.q_proj", &c, &skip);
    CHECK(!skip && c.bits == 4 && c.group_size == 128, "no rule: base");
    lmp_intq_rules_resolve(&r, &base, "model.layers.1.self_attn.q_proj", &c, &skip);
    CHECK(!skip && c.bits == 8 && c.group_size == 32, "first match wins (8-bit g32, not the 2-bit key after it)");
    lmp_intq_rules_resolve(&r, &base, "model.layers.2.self_attn.k_proj", &c, &skip);
    CHECK(!skip && c.bits == 2 && c.group_size == 128, "bare key: an override, other fields from the base");
    lmp_intq_rules_resolve(&r, &base, "model.layers.12.mlp.down_proj", &c, &skip);
    CHECK(!skip && c.bits == 4 && c.group_size == -1 && !c.sym, "re.match is anchored at the start only");
    lmp_intq_rules_resolve(&r, &base, "xmodel.layers.1.self_attn.q_proj", &c, &skip);
    CHECK(!skip && c.bits == 4, "anchored at the start");
    lmp_intq_rules_free(&r);
    cJSON_Delete(j);

    j = cJSON_Parse("{\"quant_method\":\"gptq\",\"bits\":4,\"dynamic\":{\"+:model(\\\\.\":{\"bits\":8}}}");
    CHECK(lmp_qformat_config_parse(j, &f, &base) == 0 && lmp_intq_rules_parse(j, f, &base, &r) == LMP_EFORMAT &&
              strstr(lmp_errmsg(), "dynamic[\"+:model(\\.\"]") && strstr(lmp_errmsg(), "does not compile"),
          "bad regex named: %s", lmp_errmsg());
    CHECK(r.n == 0 && r.r == NULL, "cleared on error");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"gptq\",\"bits\":4,\"dynamic\":{\".*\":{\"bits\":5}}}");
    CHECK(lmp_qformat_config_parse(j, &f, &base) == 0 && lmp_intq_rules_parse(j, f, &base, &r) == LMP_EUNSUPPORTED &&
              strstr(lmp_errmsg(), "bits 5"),
          "5-bit override refused: %s", lmp_errmsg());
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"gptq\",\"bits\":4,\"dynamic\":[1]}");
    CHECK(lmp_qformat_config_parse(j, &f, &base) == 0 && lmp_intq_rules_parse(j, f, &base, &r) == LMP_EFORMAT,
          "dynamic not an object");
    cJSON_Delete(j);
}

static void test_ct_groups(void)
{
    const char *js =
        "{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"ignore\":[\"lm_head\","
        "\"re:.*layers\\\\.3\\\\..*\"],\"config_groups\":{"
        "\"a\":{\"targets\":[\"re:.*mlp\\\\..*\"],\"weights\":{\"num_bits\":3,\"type\":\"int\",\"symmetric\":true,"
        "\"strategy\":\"group\",\"group_size\":64}},"
        "\"b\":{\"targets\":[\"Linear\"],\"weights\":{\"num_bits\":4,\"type\":\"int\",\"symmetric\":true,"
        "\"strategy\":\"group\",\"group_size\":128}},"
        "\"c\":{\"targets\":[\"model.layers.0.mlp.down_proj\"],\"weights\":{\"num_bits\":8,\"type\":\"int\","
        "\"symmetric\":false,\"strategy\":\"channel\"}}}}";
    cJSON *j = cJSON_Parse(js);
    lmp_qformat f;
    lmp_intq_config base, c;
    lmp_intq_rules r;
    bool skip;
    CHECK(j && lmp_qformat_config_parse(j, &f, &base) == 0 && f == LMP_QFMT_CT_PACKED && base.bits == 4 &&
              base.group_size == 128,
          "several groups accepted, the Linear group is the base: %s", lmp_errmsg());
    CHECK(lmp_intq_rules_parse(j, f, &base, &r) == 0, "rules: %s", lmp_errmsg());
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.mlp.down_proj", &c, &skip);
    CHECK(!skip && c.bits == 8 && c.group_size == -1 && !c.sym, "exact name before regex and class");
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.mlp.up_proj", &c, &skip);
    CHECK(!skip && c.bits == 3 && c.group_size == 64, "regex before class");
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.self_attn.o_proj", &c, &skip);
    CHECK(!skip && c.bits == 4 && c.group_size == 128, "class Linear");
    lmp_intq_rules_resolve(&r, &base, "model.layers.3.mlp.up_proj", &c, &skip);
    CHECK(skip, "ignore wins");
    lmp_intq_rules_free(&r);
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"config_groups\":{"
                    "\"g\":{\"targets\":[\"model.layers.0.mlp.up_proj\"],\"weights\":{\"num_bits\":4,"
                    "\"strategy\":\"group\",\"group_size\":32}},\"h\":{\"targets\":[\"x.y\"],\"weights\":{"
                    "\"num_bits\":4,\"type\":\"float\",\"strategy\":\"group\",\"group_size\":32}}}}");
    CHECK(lmp_qformat_config_parse(j, &f, &base) == 0 && lmp_intq_rules_parse(j, f, &base, &r) == LMP_EUNSUPPORTED &&
              strstr(lmp_errmsg(), "h weights type \"float\""),
          "a float group refused naming it: %s", lmp_errmsg());
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"compressed-tensors\",\"format\":\"pack-quantized\",\"config_groups\":{"
                    "\"g\":{\"targets\":[\"model.layers.0.mlp.up_proj\"],\"weights\":{\"num_bits\":4,"
                    "\"strategy\":\"group\",\"group_size\":32}}}}");
    CHECK(lmp_qformat_config_parse(j, &f, &base) == 0 && lmp_intq_rules_parse(j, f, &base, &r) == 0, "one group");
    lmp_intq_rules_resolve(&r, &base, "model.layers.0.mlp.down_proj", &c, &skip);
    CHECK(skip, "a module no group targets is not quantized");
    lmp_intq_rules_free(&r);
    cJSON_Delete(j);
}

/* The writers' mixed configs resolve back, fused names included. */
static void test_mixed_roundtrip(void)
{
    static const char *const leaves[LMP_LIN_COUNT] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                                      "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj",
                                                      "mlp.down_proj"};
    static const int bits[4] = {2, 3, 4, 8}, groups[4] = {32, 64, 128, -1};
    char names[12 * LMP_LIN_COUNT][LMP_MAX_NAME];
    lmp_intq_module mods[12 * LMP_LIN_COUNT];
    lmp_rng rng;
    lmp_rng_seed(&rng, 7);
    int n = 0;
    for (int l = 0; l < 12; l++) {
        int unit[4];
        for (int u = 0; u < 4; u++)
            unit[u] = (int)(lmp_rng_next(&rng) % 16);
        for (int k = 0; k < LMP_LIN_COUNT; k++) {
            int u = lmp_linear_input((lmp_linear)k);
            snprintf(names[n], LMP_MAX_NAME, "model.layers.%d.%s", l, leaves[k]);
            mods[n] = (lmp_intq_module){names[n], bits[unit[u] / 4], groups[unit[u] % 4]};
            n++;
        }
    }
    for (int fi = 0; fi < 2; fi++) {
        const lmp_qformat f = fi ? LMP_QFMT_CT_PACKED : LMP_QFMT_GPTQ_V2;
        lmp_intq_config base;
        lmp_intq_config_init(&base, NULL);
        base.bits = 4;
        base.group_size = 128;
        cJSON *j = lmp_qformat_config_json(f, &base);
        CHECK(lmp_qformat_get(f)->config_mixed(j, &base, mods, n) == 0, "%s mixed config", lmp_qformat_name(f));
        char *txt = cJSON_PrintUnformatted(j);
        cJSON_Delete(j);
        j = cJSON_Parse(txt); /* through the text, as a reader sees it */
        free(txt);
        lmp_qformat rf;
        lmp_intq_config rb, c;
        lmp_intq_rules r;
        bool skip;
        CHECK(lmp_qformat_config_parse(j, &rf, &rb) == 0 && rf == f && lmp_intq_rules_parse(j, rf, &rb, &r) == 0,
              "%s parsed back: %s", lmp_qformat_name(f), lmp_errmsg());
        int bad = 0, bad_fused = 0;
        for (int i = 0; i < n; i++) {
            lmp_intq_rules_resolve(&r, &rb, mods[i].name, &c, &skip);
            bad += skip || c.bits != mods[i].bits || c.group_size != mods[i].group_size;
        }
        if (f == LMP_QFMT_GPTQ_V2) /* vLLM asks about its fused modules */
            for (int l = 0; l < 12; l++) {
                char nm[LMP_MAX_NAME];
                snprintf(nm, sizeof nm, "model.layers.%d.self_attn.qkv_proj", l);
                lmp_intq_rules_resolve(&r, &rb, nm, &c, &skip);
                const lmp_intq_module *q = &mods[l * LMP_LIN_COUNT + LMP_LIN_Q];
                bad_fused += skip || c.bits != q->bits || c.group_size != q->group_size;
                snprintf(nm, sizeof nm, "model.layers.%d.mlp.gate_up_proj", l);
                lmp_intq_rules_resolve(&r, &rb, nm, &c, &skip);
                const lmp_intq_module *g = &mods[l * LMP_LIN_COUNT + LMP_LIN_GATE];
                bad_fused += skip || c.bits != g->bits || c.group_size != g->group_size;
            }
        CHECK(bad == 0, "%s: %d of %d modules resolve to another setting", lmp_qformat_name(f), bad, n);
        CHECK(bad_fused == 0, "%s: %d fused names resolve to another setting", lmp_qformat_name(f), bad_fused);
        lmp_intq_rules_free(&r);
        cJSON_Delete(j);
    }
}

static void test_bytes(void)
{
    int bad = 0;
    for (int b = 2; b <= 8; b++) {
        if (b != 2 && b != 3 && b != 4 && b != 8)
            continue;
        for (int gi = 0; gi < 4; gi++) {
            const int g = (int[]){32, 64, 128, -1}[gi];
            const int64_t out = 256, in = 768, ng = g > 0 ? in / g : 1;
            uint64_t want = (uint64_t)(in * b / 32 * out * 4 + ng * (out * b / 32) * 4 + ng * out * 2 + in * 4);
            bad += lmp_qformat_linear_bytes(LMP_QFMT_GPTQ_V1, out, in, b, g, true, true, LMP_DT_F16) != want;
        }
    }
    CHECK(bad == 0, "GPTQ bytes: %d of 16 differ from qweight + qzeros + scales + g_idx", bad);
    CHECK(lmp_qformat_linear_bytes(LMP_QFMT_GPTQ_V1, 256, 768, 4, 100, true, true, LMP_DT_F16) == 0,
          "a group that does not divide: 0");
    CHECK(lmp_qformat_linear_bytes(LMP_QFMT_GPTQ_V1, 256, 768, 4, 128, false, true, LMP_DT_F16) == 0,
          "asymmetric v1: 0");
    /* compressed-tensors 3-bit: 10 codes per word; zero points only when asymmetric */
    uint64_t ct = lmp_qformat_linear_bytes(LMP_QFMT_CT_PACKED, 256, 768, 3, 64, true, false, LMP_DT_F16);
    CHECK(ct == (uint64_t)(256 * 77 * 4 + 256 * 12 * 2 + 16), "ct 3-bit g64 sym: %llu", (unsigned long long)ct);
}

/* ---------------------------------------------------------------- the solve ------- */

static void test_solve(void)
{
    lmp_rng rng;
    lmp_rng_seed(&rng, 3);
    int bad = 0, over = 0;
    for (int t = 0; t < 200; t++) {
        lmp_intplan p;
        memset(&p, 0, sizeof p);
        p.n = 1 + (int)(lmp_rng_next(&rng) % 4);
        lmp_intplan_unit u[4];
        memset(u, 0, sizeof u);
        p.u = u;
        for (int i = 0; i < p.n; i++) {
            u[i].n_cand = 1 + (int)(lmp_rng_next(&rng) % 5);
            snprintf(u[i].name, sizeof u[i].name, "u%d", i);
            u[i].params = 100;
            for (int k = 0; k < u[i].n_cand; k++)
                u[i].cand[k] = (lmp_intplan_cand){.bits = 2 + k, .group_size = 32,
                                                  .bytes = 10 + lmp_rng_next(&rng) % 200,
                                                  .err = (double)(lmp_rng_next(&rng) % 1000) / 100.0, .kld = -1};
        }
        p.lin_params = 100 * (uint64_t)p.n;
        /* brute force */
        uint64_t lo = 0, hi = 0;
        for (int i = 0; i < p.n; i++) {
            uint64_t mn = UINT64_MAX, mx = 0;
            for (int k = 0; k < u[i].n_cand; k++) {
                mn = u[i].cand[k].bytes < mn ? u[i].cand[k].bytes : mn;
                mx = u[i].cand[k].bytes > mx ? u[i].cand[k].bytes : mx;
            }
            lo += mn;
            hi += mx;
        }
        (void)hi;
        uint64_t budget = lo + lmp_rng_next(&rng) % 300;
        double best = INFINITY;
        int idx[4] = {0};
        for (;;) {
            uint64_t by = 0;
            double e = 0;
            for (int i = 0; i < p.n; i++) {
                by += u[i].cand[idx[i]].bytes;
                e += u[i].cand[idx[i]].err;
            }
            if (by + 7 <= budget && e < best)
                best = e;
            int i = 0;
            while (i < p.n && ++idx[i] == u[i].n_cand)
                idx[i++] = 0;
            if (i == p.n)
                break;
        }
        /* the pareto front's largest point: budgets above it are refused */
        int rc = lmp_intplan_solve(&p, budget, 7);
        if (rc == 0) {
            over += p.bytes > budget;
            bad += fabs(p.err - best) > 1e-9;
        } else {
            bad += !((budget > p.max_bytes && strstr(lmp_errmsg(), "above the largest")) ||
                     (budget < p.min_bytes && strstr(lmp_errmsg(), "below the smallest") && best == INFINITY));
        }
    }
    CHECK(bad == 0, "%d of 200 random plans differ from brute force", bad);
    CHECK(over == 0, "%d plans over budget", over);
}

/* ---------------------------------------------------------------- gutenberg-5M ---- */

static int logits_of(const lmp_model *m, const int32_t *tok, int n, float *out)
{
    lmp_session *s;
    int rc = lmp_session_new(&s, m, n);
    if (rc)
        return rc;
    rc = lmp_eval(s, tok, n, out, true);
    lmp_session_free(s);
    return rc;
}

static void test_model(void)
{
    const char *model = fixture("models/gutenberg-5M");
    const char *text = fixture("text/wikitext2-test.gptq-join.txt");
    if (!model || !text) {
        SKIP("gutenberg-5M / wikitext2 fixtures not found");
        return;
    }
    char cal[4096];
    snprintf(cal, sizeof cal, "%s", text);
    lmp_model *orig = NULL;
    CHECK(lmp_model_load(&orig, model) == 0, "load %s", lmp_errmsg());
    if (!orig)
        return;
    const lmp_config *cfg = lmp_model_config(orig);
    const int nl = cfg->n_layers, V = lmp_model_n_vocab(orig), n = 40;
    int32_t tok[40];
    for (int i = 0; i < n; i++)
        tok[i] = (int32_t)((i * 37 + 11) % V);
    float *la = malloc(sizeof(float) * (size_t)n * V), *lb = malloc(sizeof(float) * (size_t)n * V);
    static const int cb[2] = {3, 4}, cg[2] = {64, 128};
    for (int fi = 0; fi < 2; fi++) {
        const lmp_qformat f = fi ? LMP_QFMT_CT_PACKED : LMP_QFMT_GPTQ_V1;
        char out[600];
        snprintf(out, sizeof out, "%s/intplan-%d", tmpdir(), fi);
        lmp_qmodel_quant_params p;
        lmp_qmodel_quant_default_params(&p);
        p.pipe.method = LMP_QMETHOD_RTN;
        p.pipe.act_order = false;
        p.pipe.progress = false;
        p.calib_path = fi ? NULL : cal; /* compressed-tensors: RTN's weight errors (H = I) */
        p.calib.n_samples = 4;
        p.calib.seq_len = 32;
        p.write.format = f;
        p.target_bpw = 3.6;
        p.target_bits = cb;
        p.n_target_bits = 2;
        p.target_groups = cg;
        p.n_target_groups = 2;
        lmp_qmodel_quant_result r;
        int rc = lmp_qmodel_quantize(model, out, &p, &r);
        CHECK(rc == 0, "%s: quantize with a target: %s", lmp_qformat_name(f), lmp_errmsg());
        if (rc) {
            lmp_qmodel_quant_result_free(&r);
            continue;
        }
        const lmp_intplan *pl = &r.plan;
        const uint64_t budget = (uint64_t)floor(3.6 * (double)pl->lin_params / 8);
        CHECK(pl->calibrated == !fi, "%s: calibrated iff calibration text", lmp_qformat_name(f));
        CHECK(pl->n == nl * 4 && pl->bytes <= budget && pl->budget == budget,
              "%s: plan within the budget: %llu <= %llu", lmp_qformat_name(f), (unsigned long long)pl->bytes,
              (unsigned long long)budget);
        CHECK(r.write.qbytes == pl->bytes, "%s: packed bytes written %llu = the plan's %llu", lmp_qformat_name(f),
              (unsigned long long)r.write.qbytes, (unsigned long long)pl->bytes);
        int nb[2] = {0};
        for (int i = 0; i < pl->n; i++)
            nb[pl->u[i].cand[pl->u[i].choice].bits == 4]++;
        CHECK(nb[0] > 0 && nb[1] > 0, "%s: mixed (%d units at 3 bits, %d at 4)", lmp_qformat_name(f), nb[0], nb[1]);
        /* the plan at the uniform 4-bit g128 size is below its error */
        lmp_intplan q = *pl;
        lmp_intplan_unit *u2 = malloc(sizeof *u2 * (size_t)pl->n);
        memcpy(u2, pl->u, sizeof *u2 * (size_t)pl->n);
        q.u = u2;
        uint64_t ub;
        double ue;
        CHECK(lmp_intplan_uniform(&q, 4, 128, &ub, &ue) == 0 && lmp_intplan_solve(&q, ub - 1, 0) == 0 &&
                  q.bytes < ub && q.err < ue,
              "%s: plan below uniform 4-bit g128 (%llu bytes, error %.5f) at fewer bytes: %llu, %.5f",
              lmp_qformat_name(f), (unsigned long long)ub, ue, (unsigned long long)q.bytes, q.err);
        CHECK(lmp_intplan_uniform(&q, 3, 64, &ub, &ue) == 0 && lmp_intplan_solve(&q, ub, 0) == 0 && q.err <= ue,
              "%s: plan at uniform 3-bit g64's size not above its error (%.5f vs %.5f)", lmp_qformat_name(f), q.err,
              ue);
        free(u2);
        /* every linear reads back to exactly the in-memory RTN at its setting */
        lmp_qsetting *set = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *set);
        lmp_intplan_settings(pl, set);
        lmp_qmodel *qm = NULL;
        CHECK(lmp_qmodel_open(&qm, out) == 0, "open %s: %s", out, lmp_errmsg());
        lmp_qtensor *mem = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *mem);
        int diff = 0;
        for (int l = 0; qm && l < nl; l++)
            for (int k = 0; k < LMP_LIN_COUNT; k++) {
                const lmp_wmat *wm = lmp_model_linear(orig, l, (lmp_linear)k);
                float *W = malloc(sizeof(float) * (size_t)(wm->rows * wm->cols));
                for (int64_t row = 0; row < wm->rows; row++)
                    lmp_wmat_row_f32(wm, row, W + row * wm->cols);
                lmp_rtn_params rp;
                lmp_rtn_default_params(&rp);
                rp.bits = set[l * LMP_LIN_COUNT + k].bits;
                rp.group_size = set[l * LMP_LIN_COUNT + k].group_size;
                lmp_qtensor *a = &mem[l * LMP_LIN_COUNT + k], b;
                lmp_quant_rtn(W, wm->rows, wm->cols, &rp, a);
                free(W);
                if (lmp_qmodel_layer_linear(qm, l, (lmp_linear)k, &b)) {
                    diff++;
                    continue;
                }
                const int64_t ng = a->ig.n_groups;
                bool same = b.ig.bits == a->ig.bits && b.ig.group_size == a->ig.group_size && b.ig.n_groups == ng &&
                            memcmp(a->ig.codes, b.ig.codes, (size_t)(a->rows * a->ig.row_bytes)) == 0 &&
                            memcmp(a->ig.zeros, b.ig.zeros, (size_t)(a->rows * ng)) == 0;
                for (int64_t e = 0; same && e < a->rows * ng; e++)
                    same = a->ig.scales[e] == b.ig.scales[e];
                diff += !same;
                lmp_qtensor_free(&b);
            }
        CHECK(qm && diff == 0, "%s: %d of %d linears differ from RTN at their planned setting", lmp_qformat_name(f),
              diff, nl * LMP_LIN_COUNT);
        lmp_qmodel_close(qm);
        /* logits: the loaded folder against the in-memory quantized model */
        lmp_model *lm = NULL;
        rc = lmp_model_load_any(&lm, out);
        CHECK(rc == 0, "load the mixed folder: %s", lmp_errmsg());
        for (int l = 0; l < nl && !rc; l++)
            for (int k = 0; k < LMP_LIN_COUNT && !rc; k++)
                rc = lmp_model_set_linear_q(orig, l, (lmp_linear)k, &mem[l * LMP_LIN_COUNT + k]);
        if (lm && rc == 0 && logits_of(orig, tok, n, la) == 0 && logits_of(lm, tok, n, lb) == 0) {
            double md = 0;
            for (int64_t i = 0; i < (int64_t)n * V; i++)
                md = fmax(md, fabs((double)la[i] - lb[i]));
            CHECK(md == 0, "%s: logits of the loaded folder differ from the in-memory model by %g", lmp_qformat_name(f),
                  md);
        } else {
            CHECK(0, "logits: %s", lmp_errmsg());
        }
        lmp_model_free(lm);
        lmp_model_free(orig); /* restore: reload the original */
        orig = NULL;
        for (int i = 0; i < nl * LMP_LIN_COUNT; i++)
            lmp_qtensor_free(&mem[i]);
        free(mem);
        free(set);
        lmp_qmodel_quant_result_free(&r);
        CHECK(lmp_model_load(&orig, model) == 0, "reload");
        if (!orig)
            break;
    }
    /* unreachable targets and dry runs write nothing */
    for (int t = 0; t < 3; t++) {
        char out[600];
        snprintf(out, sizeof out, "%s/intplan-bad-%d", tmpdir(), t);
        lmp_qmodel_quant_params p;
        lmp_qmodel_quant_default_params(&p);
        p.pipe.method = LMP_QMETHOD_RTN;
        p.pipe.act_order = false;
        p.pipe.progress = false;
        p.calib_path = NULL;
        p.target_bits = cb;
        p.n_target_bits = 2;
        p.target_groups = cg;
        p.n_target_groups = 2;
        p.target_bpw = t == 0 ? 2.0 : t == 1 ? 6.0 : 3.6;
        p.dry_run = t == 2;
        lmp_qmodel_quant_result r;
        int rc = lmp_qmodel_quantize(model, out, &p, &r);
        if (t < 2)
            CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), t == 0 ? "below the smallest" : "above the largest") &&
                      strstr(lmp_errmsg(), "--target-bpw"),
                  "target %.1f refused: %s", p.target_bpw, lmp_errmsg());
        else
            CHECK(rc == 0 && r.plan.n == nl * 4, "dry run plans: %s", lmp_errmsg());
        CHECK(!exists(out), "nothing written at %s", out);
        lmp_qmodel_quant_result_free(&r);
    }
    lmp_model_free(orig);
    free(la);
    free(lb);
}

/* ---------------------------------------------------------------- KLD calibration - */

static uint64_t gptq_bytes(void *ctx, int64_t rows, int64_t cols, int bits, int gs)
{
    (void)ctx;
    return lmp_qformat_linear_bytes(LMP_QFMT_GPTQ_V1, rows, cols, bits, gs, true, false, LMP_DT_F16);
}

/* Sum over n positions of KLD(a || b), logits [n][V], in double. */
static double kld_rows(const float *a, const float *b, int n, int V)
{
    double s = 0;
    for (int r = 0; r < n; r++) {
        const float *x = a + (size_t)r * V, *y = b + (size_t)r * V;
        double mx = x[0], my = y[0], zx = 0, zy = 0;
        for (int v = 1; v < V; v++) {
            mx = fmax(mx, x[v]);
            my = fmax(my, y[v]);
        }
        for (int v = 0; v < V; v++) {
            zx += exp(x[v] - mx);
            zy += exp(y[v] - my);
        }
        double k = 0, lx = mx + log(zx), ly = my + log(zy);
        for (int v = 0; v < V; v++)
            k += exp(x[v] - lx) * ((x[v] - lx) - (y[v] - ly));
        s += k > 0 ? k : 0;
    }
    return s;
}

/* lmp_intplan_calibrate on gutenberg-5M (RTN, 3/4 bits x groups 64/128, probes nearest 3.6
 * bpw): every unit probed twice, a probed candidate's predicted error is its measured KLD,
 * and one probe's KLD equals an independent one: the unit's linears RTN-quantized again,
 * installed, and the whole model run through the session engine on every window. */
static void test_kld_calib(void)
{
    const char *model = fixture("models/gutenberg-5M");
    const char *text = fixture("text/wikitext2-test.gptq-join.txt");
    if (!model || !text) {
        SKIP("gutenberg-5M / wikitext2 fixtures not found");
        return;
    }
    lmp_model *m = NULL;
    CHECK(lmp_model_load(&m, model) == 0, "load %s", lmp_errmsg());
    if (!m)
        return;
    lmp_calib_params cp;
    lmp_calib_default_params(&cp);
    cp.mode = LMP_CALIB_CHUNKS;
    cp.n_samples = 3;
    cp.seq_len = 32;
    lmp_calib_data cal;
    memset(&cal, 0, sizeof cal);
    int rc = lmp_calib_load(m, text, &cp, &cal);
    CHECK(rc == 0, "calibration windows: %s", lmp_errmsg());
    static const int cb[2] = {3, 4}, cg[2] = {64, 128};
    lmp_intplan_params pp;
    lmp_intplan_default_params(&pp);
    pp.method = LMP_QMETHOD_RTN;
    pp.act_order = false;
    pp.progress = false;
    pp.bits = cb;
    pp.n_bits = 2;
    pp.groups = cg;
    pp.n_groups = 2;
    pp.bytes = gptq_bytes;
    pp.probes = 2;
    pp.probe_bpw = 3.6;
    lmp_intplan pl;
    memset(&pl, 0, sizeof pl);
    if (!rc)
        rc = lmp_intplan_measure(m, &cal, &pp, &pl);
    CHECK(rc == 0, "measure: %s", lmp_errmsg());
    int kept = 0;
    for (int i = 0; !rc && i < pl.n; i++)
        kept += pl.u[i].n_probe == 2;
    CHECK(!rc && kept == pl.n, "%d of %d units keep 2 probes", kept, pl.n);
    const int ui = 2; /* layer 0 gate/up: two linears */
    int pk = !rc && pl.n > ui ? pl.u[ui].probe_k[0] : 0;
    if (!rc)
        rc = lmp_intplan_calibrate(m, &cal, 8, 32, false, false, &pl);
    CHECK(rc == 0 && pl.kld_calibrated && pl.n_probes == 2 * pl.n && pl.probe_windows == 3 && pl.probe_seqlen == 32,
          "calibrate: %d probes on %d x %d tokens: %s", pl.n_probes, pl.probe_windows, pl.probe_seqlen,
          rc ? lmp_errmsg() : "ok");
    int bad = 0, probed = 0, left = 0;
    for (int i = 0; !rc && i < pl.n; i++) {
        left += pl.u[i].n_probe;
        for (int k = 0; k < pl.u[i].n_cand; k++) {
            const lmp_intplan_cand *c = &pl.u[i].cand[k];
            bad += !(isfinite(c->err) && c->err > 0) || (c->kld >= 0 && c->err != c->kld);
            probed += c->kld >= 0;
        }
    }
    CHECK(!rc && bad == 0 && probed == 2 * pl.n && left == 0,
          "predicted KLD finite and positive, the probed ones as measured (%d bad, %d probed, %d kept)", bad, probed,
          left);
    /* the independent KLD of one probe */
    if (!rc) {
        const lmp_intplan_cand *c = &pl.u[ui].cand[pk];
        const int V = lmp_model_n_vocab(m), S = cal.seq_len, W = cal.n_samples;
        float *la = malloc(sizeof(float) * (size_t)W * S * V), *lb = malloc(sizeof(float) * (size_t)W * S * V);
        for (int w = 0; w < W && !rc; w++)
            rc = logits_of(m, cal.tokens + (size_t)w * S, S, la + (size_t)w * S * V);
        lmp_qtensor q[2];
        memset(q, 0, sizeof q);
        lmp_wmat keep[2];
        static const lmp_linear gu[2] = {LMP_LIN_GATE, LMP_LIN_UP};
        for (int k = 0; k < 2 && !rc; k++) {
            const lmp_wmat *wm = lmp_model_linear(m, 0, gu[k]);
            keep[k] = *wm;
            float *Wf = malloc(sizeof(float) * (size_t)(wm->rows * wm->cols));
            for (int64_t row = 0; row < wm->rows; row++)
                lmp_wmat_row_f32(wm, row, Wf + row * wm->cols);
            lmp_rtn_params rp;
            lmp_rtn_default_params(&rp);
            rp.bits = c->bits;
            rp.group_size = c->group_size;
            rp.sym = true;
            rc = lmp_quant_rtn(Wf, wm->rows, wm->cols, &rp, &q[k]);
            free(Wf);
        }
        for (int k = 0; k < 2 && !rc; k++)
            rc = lmp_model_set_linear_q(m, 0, gu[k], &q[k]);
        for (int w = 0; w < W && !rc; w++)
            rc = logits_of(m, cal.tokens + (size_t)w * S, S, lb + (size_t)w * S * V);
        double kl = rc ? -1 : kld_rows(la, lb, W * S, V) / (W * S);
        CHECK(rc == 0 && fabs(kl - c->kld) <= 1e-3 * kl,
              "probe of %s at %d-bit group %d: KLD %.6g, independently %.6g", pl.u[ui].name, c->bits, c->group_size,
              c->kld, kl);
        for (int k = 0; k < 2; k++)
            lmp_model_set_linear(m, 0, gu[k], &keep[k]);
        lmp_qtensor_free(&q[0]);
        lmp_qtensor_free(&q[1]);
        free(la);
        free(lb);
    }
    lmp_intplan_free(&pl);
    lmp_calib_free(&cal);
    lmp_model_free(m);
}

int main(void)
{
    test_gptq_dynamic();
    test_ct_groups();
    test_mixed_roundtrip();
    test_bytes();
    test_solve();
    test_model();
    test_kld_calib();
    printf("%d passed, %d failed\n", t_pass, t_fail);
    return t_fail ? 1 : 0;
}
