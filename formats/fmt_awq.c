/*
 * AWQ "gemm" checkpoint packing (AutoAWQ awq/modules/linear/gemm.py WQLinear_GEMM,
 * awq/utils/packing_utils.py) <-> the canonical intgroup lmp_qtensor, and AWQ's
 * quantization_config. 4-bit only; packed along the OUTPUT axis with the interleave
 * order {0,2,4,6,1,3,5,7}; zeros are true zeros. The row LMP_QFMT_AWQ_GEMM of fmt_table.c
 * points here; uses only fmt_common.c. Not the AWQ algorithm (lib/quant/awq.c).
 */
#include "fmt_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* nibble i of a word holds output column 8c + awq_order[i] */
static const int awq_order[8] = {0, 2, 4, 6, 1, 3, 5, 7};

int lmp_fmt_awq_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out)
{
    (void)f; /* one format */
    (void)scale_dtype; /* AWQ stores f16 scales */
    memset(out, 0, sizeof *out);
    out->format = LMP_QFMT_AWQ_GEMM;
    if (q->scheme != LMP_QS_INTGROUP)
        return lmp_err(LMP_EINVAL, "awq pack: %s is not integer-group quantized", q->name);
    const lmp_intgroup *ig = &q->ig;
    const int64_t in = q->cols, outf = q->rows, ng = ig->n_groups;
    if (ig->bits != 4)
        return lmp_err(LMP_EUNSUPPORTED, "awq pack: %s: %d-bit codes (AWQ GEMM is 4-bit only)",
                       q->name, ig->bits);
    if (ig->g_idx)
        return lmp_err(LMP_EUNSUPPORTED,
                       "awq pack: %s: act-order (g_idx) cannot be stored in AWQ, which has no g_idx; write GPTQ or compressed-tensors",
                       q->name);
    if (ig->group_size == -1)
        return lmp_err(LMP_EUNSUPPORTED,
                       "awq pack: %s: per-channel (group_size -1) is not an AWQ layout; use group_size = in_features (%lld)",
                       q->name, (long long)in);
    if (outf % 8 || in % ig->gs)
        return lmp_err(LMP_EUNSUPPORTED,
                       "awq pack: %s: [%lld, %lld]: out_features must be a multiple of 8 and in_features of group_size %d",
                       q->name, (long long)outf, (long long)in, ig->gs);
    for (int64_t i = 0; i < outf * ng; i++)
        if (ig->zeros[i] > 15)
            return lmp_err(LMP_ERANGE, "awq pack: %s: zero point %d does not fit 4 bits", q->name,
                           ig->zeros[i]);
    int64_t sh_w[2] = {in, outf / 8}, sh_z[2] = {ng, outf / 8}, sh_s[2] = {ng, outf};
    int rc;
    if ((rc = lmp_tensor_alloc(&out->t[0], "qweight", LMP_DT_I32, 2, sh_w)) ||
        (rc = lmp_tensor_alloc(&out->t[1], "qzeros", LMP_DT_I32, 2, sh_z)) ||
        (rc = lmp_tensor_alloc(&out->t[2], "scales", LMP_DT_F16, 2, sh_s))) {
        out->n = 3;
        lmp_packed_linear_free(out);
        return rc;
    }
    out->n = 3;
    uint32_t *qw = out->t[0].data, *qz = out->t[1].data;
    uint16_t *sc = out->t[2].data;
    const int64_t wc = outf / 8;
    #pragma omp parallel for schedule(static)
    for (int64_t k = 0; k < in; k++)
        for (int64_t c = 0; c < wc; c++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++)
                v |= (uint32_t)lmp_ig_code(ig, 8 * c + awq_order[i], k) << (4 * i);
            qw[k * wc + c] = v;
        }
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t c = 0; c < wc; c++) {
            uint32_t v = 0;
            for (int i = 0; i < 8; i++)
                v |= (uint32_t)ig->zeros[(8 * c + awq_order[i]) * ng + g] << (4 * i);
            qz[g * wc + c] = v;
        }
        for (int64_t r = 0; r < outf; r++)
            sc[g * outf + r] = lmp_f32_to_f16(ig->scales[r * ng + g]);
    }
    return LMP_OK;
}

int lmp_fmt_awq_unpack(const lmp_packed_linear *pl, const lmp_intq_config *cfg, lmp_qtensor *out)
{
    const char *fmt = "awq";
    const lmp_tensor *tw = lmp_packed_linear_find(pl, "qweight");
    const lmp_tensor *tz = lmp_packed_linear_find(pl, "qzeros");
    const lmp_tensor *ts = lmp_packed_linear_find(pl, "scales");
    int rc;
    memset(out, 0, sizeof *out);
    if (cfg->bits != 4)
        return lmp_err(LMP_EUNSUPPORTED, "awq: bits %d (AWQ GEMM is 4-bit only)", cfg->bits);
    int64_t any2[2] = {-1, -1};
    if ((rc = lmp_fmt_check_tensor(tw, fmt, "qweight", LMP_DT_I32, 2, any2)))
        return rc;
    const int64_t in = tw->shape[0], wc = tw->shape[1], outf = wc * 8;
    if (in < 1 || wc < 1 || in > INT32_MAX)
        return lmp_err(LMP_EFORMAT, "awq: qweight shape [%lld, %lld]", (long long)in, (long long)wc);
    int64_t gs = cfg->group_size == -1 ? in : cfg->group_size;
    if (gs < 1 || in % gs)
        return lmp_err(LMP_EFORMAT, "awq: in_features %lld not a multiple of group_size %d",
                       (long long)in, cfg->group_size);
    const int64_t ng = in / gs;
    int64_t sh_z[2] = {ng, wc}, sh_s[2] = {ng, outf};
    if ((rc = lmp_fmt_check_tensor(tz, fmt, "qzeros", LMP_DT_I32, 2, sh_z)) ||
        (rc = lmp_fmt_check_tensor(ts, fmt, "scales", -1, 2, sh_s)))
        return rc;
    if (!lmp_fmt_scale_dtype_ok(ts))
        return lmp_err(LMP_EFORMAT, "awq: scales dtype %s (expected f16, bf16 or f32)",
                       lmp_dtype_info(ts->dtype)->name);
    rc = lmp_qtensor_intgroup_init(out, outf, in, 4, cfg->group_size, false, false);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    const uint32_t *qw = tw->data, *qz = tz->data;
    /* the codes of row r are a stream along the input axis: walk each output row, reading
     * its nibble from every input row's word */
    #pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < wc; c++)
        for (int i = 0; i < 8; i++) {
            int64_t r = 8 * c + awq_order[i];
            for (int64_t k = 0; k < in; k++)
                lmp_ig_set_code(ig, r, k, (qw[k * wc + c] >> (4 * i)) & 15);
        }
    bool all_mid = true;
    for (int64_t g = 0; g < ng; g++) {
        for (int64_t c = 0; c < wc; c++)
            for (int i = 0; i < 8; i++) {
                int z = (int)((qz[g * wc + c] >> (4 * i)) & 15);
                ig->zeros[(8 * c + awq_order[i]) * ng + g] = (uint8_t)z;
                all_mid &= z == 8;
            }
        for (int64_t r = 0; r < outf; r++)
            ig->scales[r * ng + g] = lmp_fmt_scale_at(ts, g * outf + r);
    }
    ig->sym = all_mid; /* AWQ always stores zeros; symmetric when they are all 8 */
    return LMP_OK;
}

cJSON *lmp_fmt_awq_config_json(const lmp_intq_config *c, lmp_qformat f)
{
    (void)f;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "quant_method", "awq");
    cJSON_AddBoolToObject(o, "zero_point", true); /* GEMM always stores zeros */
    cJSON_AddNumberToObject(o, "group_size", c->group_size);
    cJSON_AddNumberToObject(o, "bits", c->bits);
    cJSON_AddStringToObject(o, "version", "gemm");
    cJSON_AddNullToObject(o, "modules_to_not_convert"); /* the model writer lists kept linears */
    return o;
}

int lmp_fmt_awq_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c)
{
    int rc;
    const char *v = lmp_fmt_json_str(qc, "version");
    if (v && strcasecmp(v, "gemm") != 0)
        return lmp_err(LMP_EUNSUPPORTED,
                       "quantization_config: AWQ version \"%s\" (only \"gemm\" is supported)", v);
    *f = LMP_QFMT_AWQ_GEMM;
    if ((rc = lmp_fmt_json_int(qc, "bits", 4, &c->bits)) ||
        (rc = lmp_fmt_json_int(qc, "group_size", 128, &c->group_size)))
        return rc;
    if (!(rc = lmp_fmt_json_int(qc, "w_bit", c->bits, &c->bits)))
        rc = lmp_fmt_json_int(qc, "q_group_size", c->group_size, &c->group_size);
    if (rc)
        return rc;
    c->sym = !lmp_fmt_json_bool(qc, "zero_point", true);
    return LMP_OK;
}
