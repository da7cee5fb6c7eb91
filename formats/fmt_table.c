/*
 * The table of integer-group formats: one static const row per format (name, the
 * quant_method it is read from, required and optional tensors, what its writer must
 * know, and its pack / unpack / config writer / config reader from the format's own
 * file), and everything that dispatches on a format. Nothing outside this file switches
 * on lmp_qformat; a new format is a value in packing.h, a row here and its layout file.
 */
#include "fmt_internal.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char *const gptq_required[] = {"qweight", "qzeros", "scales", NULL};
static const char *const gptq_optional[] = {"g_idx", NULL};
static const char *const awq_optional[] = {NULL};
static const char *const ct_required[] = {"weight_packed", "weight_scale", "weight_shape", NULL};
static const char *const ct_optional[] = {"weight_zero_point", "weight_g_idx", NULL};
static const char *const gptq_v2_aliases[] = {"gptq-v2", NULL};
static const char *const ct_aliases[] = {"compressed-tensors", "ct", NULL};

static const lmp_qformat_row g_qformats[LMP_QFMT_COUNT] = {
    [LMP_QFMT_GPTQ_V1] = {
        .name = "gptq", .quant_method = "gptq",
        .required = gptq_required, .optional = gptq_optional,
        .skip_key = "modules_to_not_convert",
        .asym_refusal = "GPTQ v1 (checkpoint_format \"gptq\") cannot hold asymmetric zero points; "
                        "write gptq_v2 or compressed-tensors",
        .asym_format = LMP_QFMT_GPTQ_V2,
        .quantize_config_json = true,
        .pack = lmp_fmt_gptq_pack, .unpack = lmp_fmt_gptq_unpack,
        .config_json = lmp_fmt_gptq_config_json, .config_read = lmp_fmt_gptq_config_read,
        .config_mixed = lmp_fmt_gptq_config_mixed, .config_rules = lmp_fmt_gptq_config_rules,
    },
    [LMP_QFMT_GPTQ_V2] = {
        .name = "gptq_v2", .aliases = gptq_v2_aliases, .quant_method = "gptq",
        .required = gptq_required, .optional = gptq_optional,
        .skip_key = "modules_to_not_convert",
        .quantize_config_json = true,
        .pack = lmp_fmt_gptq_pack, .unpack = lmp_fmt_gptq_unpack,
        .config_json = lmp_fmt_gptq_config_json, .config_read = lmp_fmt_gptq_config_read,
        .config_mixed = lmp_fmt_gptq_config_mixed, .config_rules = lmp_fmt_gptq_config_rules,
    },
    [LMP_QFMT_AWQ_GEMM] = {
        .name = "awq", .quant_method = "awq",
        .required = gptq_required, .optional = awq_optional,
        .skip_key = "modules_to_not_convert",
        .pack = lmp_fmt_awq_pack, .unpack = lmp_fmt_awq_unpack,
        .config_json = lmp_fmt_awq_config_json, .config_read = lmp_fmt_awq_config_read,
    },
    [LMP_QFMT_CT_PACKED] = {
        .name = "pack-quantized", .aliases = ct_aliases, .quant_method = "compressed-tensors",
        .required = ct_required, .optional = ct_optional,
        .skip_key = "ignore",
        .scale_dtypes = true,
        .pack = lmp_fmt_ct_pack, .unpack = lmp_fmt_ct_unpack,
        .config_json = lmp_fmt_ct_config_json, .config_read = lmp_fmt_ct_config_read,
        .config_mixed = lmp_fmt_ct_config_mixed, .config_rules = lmp_fmt_ct_config_rules,
    },
};

const lmp_qformat_row *lmp_qformat_get(lmp_qformat f)
{
    return (unsigned)f < LMP_QFMT_COUNT ? &g_qformats[f] : NULL;
}

const char *lmp_qformat_name(lmp_qformat f)
{
    const lmp_qformat_row *r = lmp_qformat_get(f);
    return r ? r->name : "?";
}

const char *lmp_qformat_list(char *buf, size_t n, bool quant_methods)
{
    const char *item[LMP_QFMT_COUNT];
    int k = 0;
    for (int f = 0; f < LMP_QFMT_COUNT; f++) {
        const char *s = quant_methods ? g_qformats[f].quant_method : g_qformats[f].name;
        bool seen = false;
        for (int i = 0; i < k && !seen; i++)
            seen = strcmp(item[i], s) == 0;
        if (!seen)
            item[k++] = s;
    }
    size_t len = 0;
    if (n)
        buf[0] = '\0';
    for (int i = 0; i < k && len < n; i++) {
        const char *sep = i == 0 ? "" : i == k - 1 ? " or " : ", ";
        int w = snprintf(buf + len, n - len, "%s%s", sep, item[i]);
        len += w > 0 ? (size_t)w : 0;
    }
    return buf;
}

const char *lmp_qformat_choices(char *buf, size_t n, const char *quant_method)
{
    size_t len = 0;
    if (n)
        buf[0] = '\0';
    for (int f = 0; f < LMP_QFMT_COUNT; f++) {
        const lmp_qformat_row *r = &g_qformats[f];
        if (quant_method && strcmp(r->quant_method, quant_method) != 0)
            continue;
        const char *const *al = r->aliases;
        for (const char *s = r->name; s && len < n; s = al && *al ? *al++ : NULL) {
            int w = snprintf(buf + len, n - len, "%s%s", len ? "|" : "", s);
            len += w > 0 ? (size_t)w : 0;
        }
    }
    return buf;
}

int lmp_qformat_by_name(const char *name, lmp_qformat *f)
{
    for (int i = 0; i < LMP_QFMT_COUNT; i++)
        if (name && strcasecmp(name, g_qformats[i].name) == 0) {
            *f = (lmp_qformat)i;
            return LMP_OK;
        }
    for (int i = 0; i < LMP_QFMT_COUNT; i++)
        for (const char *const *al = g_qformats[i].aliases; name && al && *al; al++)
            if (strcasecmp(name, *al) == 0) {
                *f = (lmp_qformat)i;
                return LMP_OK;
            }
    char list[256];
    return lmp_err(LMP_EINVAL, "unknown integer-group format \"%s\" (%s)", name ? name : "(null)",
                   lmp_qformat_list(list, sizeof list, false));
}

lmp_qformat lmp_qformat_for_zeros(lmp_qformat f, bool sym)
{
    const lmp_qformat_row *r = lmp_qformat_get(f);
    return r && r->asym_refusal && !sym ? r->asym_format : f;
}

int lmp_packed_linear_from_st(const lmp_st_reader *r, const char *prefix, lmp_qformat f,
                              lmp_packed_linear *out)
{
    memset(out, 0, sizeof *out);
    const lmp_qformat_row *row = lmp_qformat_get(f);
    if (!row)
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)f);
    out->format = f;
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass == 0 ? row->required : row->optional;
        for (int i = 0; list[i]; i++) {
            char name[2 * LMP_MAX_NAME];
            snprintf(name, sizeof name, "%s.%s", prefix, list[i]);
            const lmp_tensor *t = lmp_st_find(r, name);
            if (!t) {
                if (pass == 0)
                    return lmp_err(LMP_ENOTFOUND, "%s: %s checkpoint lacks tensor %s",
                                   r->path ? r->path : "?", row->name, name);
                continue;
            }
            if (out->n == LMP_PACKED_MAX)
                return lmp_err(LMP_EINVAL, "%s: more than %d tensors per linear", row->name, LMP_PACKED_MAX);
            lmp_tensor *d = &out->t[out->n++];
            *d = *t;
            d->owned = false;
            snprintf(d->name, sizeof d->name, "%s", list[i]);
        }
    }
    return LMP_OK;
}

int lmp_qformat_pack(lmp_qformat f, const lmp_qtensor *q, lmp_dtype scale_dtype,
                     lmp_packed_linear *out)
{
    const lmp_qformat_row *r = lmp_qformat_get(f);
    if (!r) {
        memset(out, 0, sizeof *out);
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)f);
    }
    return r->pack(q, f, scale_dtype, out);
}

int lmp_qformat_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg,
                       lmp_qtensor *out)
{
    const lmp_qformat_row *r = lmp_qformat_get(in->format);
    if (!r) {
        memset(out, 0, sizeof *out);
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)in->format);
    }
    return r->unpack(in, cfg, out);
}

cJSON *lmp_qformat_config_json(lmp_qformat f, const lmp_intq_config *c)
{
    const lmp_qformat_row *r = lmp_qformat_get(f);
    return r ? r->config_json(c, f) : NULL;
}

int lmp_qformat_config_parse(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c)
{
    lmp_intq_config_init(c, NULL);
    if (!cJSON_IsObject(qc))
        return lmp_err(LMP_EFORMAT, "quantization_config is not an object");
    const char *method = lmp_fmt_json_str(qc, "quant_method");
    if (!method)
        return lmp_err(LMP_EFORMAT, "quantization_config: no \"quant_method\"");
    const lmp_qformat_row *row = NULL;
    for (int i = 0; i < LMP_QFMT_COUNT && !row; i++)
        if (strcasecmp(method, g_qformats[i].quant_method) == 0)
            row = &g_qformats[i];
    if (!row) {
        char list[256];
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: quant_method \"%s\" (expected %s)", method,
                       lmp_qformat_list(list, sizeof list, true));
    }
    int rc = row->config_read(qc, f, c);
    if (rc)
        return rc;
    if (c->bits < 2 || c->bits > 8)
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: bits %d not in 2..8", c->bits);
    if (c->group_size == 0 || c->group_size < -1)
        return lmp_err(LMP_EFORMAT, "quantization_config: group_size %d", c->group_size);
    return LMP_OK;
}

uint64_t lmp_qformat_linear_bytes(lmp_qformat f, int64_t rows, int64_t cols, int bits, int group_size, bool sym,
                                  bool gidx, lmp_dtype scale_dtype)
{
    const lmp_qformat_row *r = lmp_qformat_get(f);
    if (!r || bits < 2 || bits > 8 || (group_size > 0 && cols % group_size) || (r->asym_refusal && !sym))
        return 0;
    lmp_qtensor q;
    if (lmp_qtensor_intgroup_init(&q, rows, cols, bits, group_size, sym, gidx))
        return 0;
    snprintf(q.name, sizeof q.name, "(size probe)");
    if (q.ig.g_idx)
        for (int64_t c = 0; c < cols; c++)
            q.ig.g_idx[c] = (int32_t)(c / q.ig.gs);
    if (!sym)
        memset(q.ig.zeros, 1, (size_t)(rows * q.ig.n_groups)); /* a zero every packing holds */
    lmp_packed_linear pl;
    uint64_t bytes = 0;
    if (r->pack(&q, f, r->scale_dtypes ? scale_dtype : LMP_DT_F16, &pl) == LMP_OK) {
        for (int i = 0; i < pl.n; i++)
            bytes += pl.t[i].nbytes;
        lmp_packed_linear_free(&pl);
    }
    lmp_qtensor_free(&q);
    return bytes;
}

int lmp_intq_rules_parse(const cJSON *qc, lmp_qformat f, const lmp_intq_config *base, lmp_intq_rules *out)
{
    memset(out, 0, sizeof *out);
    const lmp_qformat_row *r = lmp_qformat_get(f);
    if (!r || !r->config_rules)
        return LMP_OK;
    int rc = r->config_rules(qc, base, out);
    if (rc)
        lmp_intq_rules_free(out);
    return rc;
}
