/*
 * GPTQ checkpoint packing (AutoGPTQ qlinear pack / GPTQModel v1 and v2) <-> the canonical
 * intgroup lmp_qtensor, GPTQ's quantization_config, and the pieces every integer packing
 * shares (lmp_packed_linear, safetensors glue, dispatch, config parsing). Layout facts are
 * in formats/packing.h. Not the GPTQ algorithm (lib/quant/gptq.c).
 */
#include "packing.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ================================================================ shared pieces === */

const char *lmp_qformat_name(lmp_qformat f)
{
    static const char *names[] = {"gptq", "gptq_v2", "awq", "pack-quantized"};
    return (unsigned)f < LMP_QFMT_COUNT ? names[f] : "?";
}

void lmp_intq_config_init(lmp_intq_config *c, const lmp_qtensor *q)
{
    memset(c, 0, sizeof *c);
    c->bits = 4;
    c->group_size = 128;
    c->sym = true;
    c->true_sequential = true;
    c->damp_percent = 0.01f;
    c->scale_dtype = LMP_DT_F16;
    if (q && q->scheme == LMP_QS_INTGROUP) {
        c->bits = q->ig.bits;
        c->group_size = q->ig.group_size;
        c->sym = q->ig.sym;
        c->desc_act = q->ig.g_idx != NULL;
    }
}

void lmp_packed_linear_free(lmp_packed_linear *p)
{
    if (!p)
        return;
    for (int i = 0; i < p->n; i++)
        lmp_tensor_free(&p->t[i]);
    memset(p, 0, sizeof *p);
}

const lmp_tensor *lmp_packed_linear_find(const lmp_packed_linear *p, const char *suffix)
{
    for (int i = 0; i < p->n; i++)
        if (strcmp(p->t[i].name, suffix) == 0)
            return &p->t[i];
    return NULL;
}

int lmp_packed_linear_declare(lmp_st_writer *w, const char *prefix, const lmp_packed_linear *p)
{
    for (int i = 0; i < p->n; i++) {
        char name[2 * LMP_MAX_NAME];
        snprintf(name, sizeof name, "%s.%s", prefix, p->t[i].name);
        int rc = lmp_st_writer_add(w, name, p->t[i].dtype, p->t[i].ndim, p->t[i].shape);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

int lmp_packed_linear_write(lmp_st_writer *w, const lmp_packed_linear *p)
{
    for (int i = 0; i < p->n; i++) {
        int rc = lmp_st_writer_write(w, p->t[i].data, p->t[i].nbytes);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

int lmp_packed_linear_from_st(const lmp_st_reader *r, const char *prefix, lmp_qformat f,
                              lmp_packed_linear *out)
{
    static const char *req[LMP_QFMT_COUNT][4] = {
        {"qweight", "qzeros", "scales", NULL},
        {"qweight", "qzeros", "scales", NULL},
        {"qweight", "qzeros", "scales", NULL},
        {"weight_packed", "weight_scale", "weight_shape", NULL},
    };
    static const char *opt[LMP_QFMT_COUNT][3] = {
        {"g_idx", NULL}, {"g_idx", NULL}, {NULL}, {"weight_zero_point", "weight_g_idx", NULL},
    };
    memset(out, 0, sizeof *out);
    if ((unsigned)f >= LMP_QFMT_COUNT)
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)f);
    out->format = f;
    for (int pass = 0; pass < 2; pass++) {
        const char *const *list = pass == 0 ? req[f] : opt[f];
        for (int i = 0; list[i]; i++) {
            char name[2 * LMP_MAX_NAME];
            snprintf(name, sizeof name, "%s.%s", prefix, list[i]);
            const lmp_tensor *t = lmp_st_find(r, name);
            if (!t) {
                if (pass == 0)
                    return lmp_err(LMP_ENOTFOUND, "%s: %s checkpoint lacks tensor %s",
                                   r->path ? r->path : "?", lmp_qformat_name(f), name);
                continue;
            }
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
    switch (f) {
    case LMP_QFMT_GPTQ_V1:
    case LMP_QFMT_GPTQ_V2:
        return lmp_gptq_pack(q, f, out);
    case LMP_QFMT_AWQ_GEMM:
        return lmp_awq_pack(q, out);
    case LMP_QFMT_CT_PACKED:
        return lmp_ct_pack(q, scale_dtype, out);
    default:
        memset(out, 0, sizeof *out);
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)f);
    }
}

int lmp_qformat_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg,
                       lmp_qtensor *out)
{
    switch (in->format) {
    case LMP_QFMT_GPTQ_V1:
    case LMP_QFMT_GPTQ_V2:
        return lmp_gptq_unpack(in, in->format, cfg, out);
    case LMP_QFMT_AWQ_GEMM:
        return lmp_awq_unpack(in, cfg, out);
    case LMP_QFMT_CT_PACKED:
        return lmp_ct_unpack(in, cfg, out);
    default:
        memset(out, 0, sizeof *out);
        return lmp_err(LMP_EINVAL, "unknown packing %d", (int)in->format);
    }
}

cJSON *lmp_qformat_config_json(lmp_qformat f, const lmp_intq_config *c)
{
    switch (f) {
    case LMP_QFMT_GPTQ_V1:
    case LMP_QFMT_GPTQ_V2:
        return lmp_gptq_config_json(c, f);
    case LMP_QFMT_AWQ_GEMM:
        return lmp_awq_config_json(c, NULL);
    case LMP_QFMT_CT_PACKED:
        return lmp_ct_config_json(c, NULL);
    default:
        return NULL;
    }
}

static int json_int(const cJSON *o, const char *key, int def, int *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v || cJSON_IsNull(v)) {
        *out = def;
        return LMP_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != (double)(int)v->valuedouble)
        return lmp_err(LMP_EFORMAT, "quantization_config: \"%s\" is not an integer", key);
    *out = (int)v->valuedouble;
    return LMP_OK;
}

static bool json_bool(const cJSON *o, const char *key, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

static const char *json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

int lmp_qformat_config_parse(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c)
{
    int rc;
    lmp_intq_config_init(c, NULL);
    if (!cJSON_IsObject(qc))
        return lmp_err(LMP_EFORMAT, "quantization_config is not an object");
    const char *method = json_str(qc, "quant_method");
    if (!method)
        return lmp_err(LMP_EFORMAT, "quantization_config: no \"quant_method\"");
    if (strcasecmp(method, "gptq") == 0) {
        const char *cf = json_str(qc, "checkpoint_format");
        if (!cf || strcmp(cf, "gptq") == 0)
            *f = LMP_QFMT_GPTQ_V1;
        else if (strcmp(cf, "gptq_v2") == 0)
            *f = LMP_QFMT_GPTQ_V2;
        else
            return lmp_err(LMP_EUNSUPPORTED,
                           "quantization_config: GPTQ checkpoint_format \"%s\" (expected gptq or gptq_v2)", cf);
        if ((rc = json_int(qc, "bits", 4, &c->bits)) || (rc = json_int(qc, "group_size", -1, &c->group_size)))
            return rc;
        c->sym = json_bool(qc, "sym", true);
        c->desc_act = json_bool(qc, "desc_act", false);
        c->static_groups = json_bool(qc, "static_groups", false);
        c->true_sequential = json_bool(qc, "true_sequential", true);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(qc, "damp_percent");
        if (cJSON_IsNumber(d))
            c->damp_percent = (float)d->valuedouble;
    } else if (strcasecmp(method, "awq") == 0) {
        const char *v = json_str(qc, "version");
        if (v && strcasecmp(v, "gemm") != 0)
            return lmp_err(LMP_EUNSUPPORTED,
                           "quantization_config: AWQ version \"%s\" (only \"gemm\" is supported)", v);
        *f = LMP_QFMT_AWQ_GEMM;
        if ((rc = json_int(qc, "bits", 4, &c->bits)) || (rc = json_int(qc, "group_size", 128, &c->group_size)))
            return rc;
        if (!(rc = json_int(qc, "w_bit", c->bits, &c->bits)))
            rc = json_int(qc, "q_group_size", c->group_size, &c->group_size);
        if (rc)
            return rc;
        c->sym = !json_bool(qc, "zero_point", true);
    } else if (strcasecmp(method, "compressed-tensors") == 0) {
        const char *fmt = json_str(qc, "format");
        if (!fmt || strcmp(fmt, "pack-quantized") != 0)
            return lmp_err(LMP_EUNSUPPORTED,
                           "quantization_config: compressed-tensors format \"%s\" (only pack-quantized)",
                           fmt ? fmt : "(none)");
        *f = LMP_QFMT_CT_PACKED;
        const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
        if (!cJSON_IsObject(groups) || cJSON_GetArraySize(groups) != 1)
            return lmp_err(LMP_EUNSUPPORTED,
                           "quantization_config: expected exactly one entry in config_groups");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(groups->child, "weights");
        if (!cJSON_IsObject(w))
            return lmp_err(LMP_EFORMAT, "quantization_config: config_groups entry has no weights");
        const char *type = json_str(w, "type");
        if (type && strcmp(type, "int") != 0)
            return lmp_err(LMP_EUNSUPPORTED, "quantization_config: weights type \"%s\" (expected int)", type);
        if ((rc = json_int(w, "num_bits", 4, &c->bits)))
            return rc;
        c->sym = json_bool(w, "symmetric", true);
        const char *strat = json_str(w, "strategy");
        if (strat && strcmp(strat, "channel") == 0) {
            c->group_size = -1;
        } else if (strat && strcmp(strat, "group") == 0) {
            if ((rc = json_int(w, "group_size", 128, &c->group_size)))
                return rc;
        } else {
            return lmp_err(LMP_EUNSUPPORTED,
                           "quantization_config: weight strategy \"%s\" (expected group or channel)",
                           strat ? strat : "(none)");
        }
        const char *ao = json_str(w, "actorder");
        c->desc_act = ao != NULL;
        c->static_groups = ao && (strcmp(ao, "weight") == 0 || strcmp(ao, "static") == 0);
    } else {
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: quant_method \"%s\" (expected gptq, awq or compressed-tensors)", method);
    }
    if (c->bits < 2 || c->bits > 8)
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: bits %d not in 2..8", c->bits);
    if (c->group_size == 0 || c->group_size < -1)
        return lmp_err(LMP_EFORMAT, "quantization_config: group_size %d", c->group_size);
    return LMP_OK;
}

/* ================================================================ GPTQ ============ */

/* OR `v` (bits wide) into an LSB-first stream of 32-bit words spaced `stride` apart. */
static inline void put_bits(uint32_t *w, int64_t stride, int64_t bitpos, uint32_t v, int bits)
{
    int64_t k = bitpos >> 5;
    int off = (int)(bitpos & 31);
    w[k * stride] |= v << off;
    if (off + bits > 32)
        w[(k + 1) * stride] |= v >> (32 - off);
}

static inline uint32_t get_bits(const uint32_t *w, int64_t stride, int64_t bitpos, int bits)
{
    int64_t k = bitpos >> 5;
    int off = (int)(bitpos & 31);
    uint64_t v = w[k * stride] >> off;
    if (off + bits > 32)
        v |= (uint64_t)w[(k + 1) * stride] << (32 - off);
    return (uint32_t)v & ((1u << bits) - 1);
}

int lmp_gptq_pack(const lmp_qtensor *q, lmp_qformat f, lmp_packed_linear *out)
{
    memset(out, 0, sizeof *out);
    out->format = f;
    if (f != LMP_QFMT_GPTQ_V1 && f != LMP_QFMT_GPTQ_V2)
        return lmp_err(LMP_EINVAL, "gptq pack: format %s is not GPTQ", lmp_qformat_name(f));
    if (q->scheme != LMP_QS_INTGROUP)
        return lmp_err(LMP_EINVAL, "gptq pack: %s is not integer-group quantized", q->name);
    const lmp_intgroup *ig = &q->ig;
    const int bits = ig->bits, maxq = (1 << bits) - 1;
    const int64_t in = q->cols, outf = q->rows, ng = ig->n_groups;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return lmp_err(LMP_EUNSUPPORTED, "gptq pack: %s: %d-bit codes (GPTQ packs 2, 3, 4, 8)",
                       q->name, bits);
    if ((in * bits) % 32 || (outf * bits) % 32)
        return lmp_err(LMP_EUNSUPPORTED,
                       "gptq pack: %s: [%lld, %lld] at %d bits: in_features and out_features must fill whole int32 words (multiples of %d)",
                       q->name, (long long)outf, (long long)in, bits, bits == 3 ? 32 : 32 / bits);
    if (f == LMP_QFMT_GPTQ_V1 && !ig->sym)
        return lmp_err(LMP_EUNSUPPORTED,
                       "gptq pack: %s: asymmetric quantization cannot be written as GPTQ v1 (checkpoint_format \"gptq\" stores zero-1, which overflows for zero 0); write gptq_v2",
                       q->name);
    for (int64_t i = 0; i < outf * ng; i++)
        if (ig->zeros[i] > maxq || (f == LMP_QFMT_GPTQ_V1 && ig->zeros[i] == 0))
            return lmp_err(LMP_ERANGE, "gptq pack: %s: zero point %d does not fit %s at %d bits",
                           q->name, ig->zeros[i], lmp_qformat_name(f), bits);

    int64_t sh_w[2] = {in * bits / 32, outf}, sh_z[2] = {ng, outf * bits / 32};
    int64_t sh_s[2] = {ng, outf}, sh_g[1] = {in};
    int rc;
    if ((rc = lmp_tensor_alloc(&out->t[0], "qweight", LMP_DT_I32, 2, sh_w)) ||
        (rc = lmp_tensor_alloc(&out->t[1], "qzeros", LMP_DT_I32, 2, sh_z)) ||
        (rc = lmp_tensor_alloc(&out->t[2], "scales", LMP_DT_F16, 2, sh_s)) ||
        (rc = lmp_tensor_alloc(&out->t[3], "g_idx", LMP_DT_I32, 1, sh_g))) {
        out->n = 4;
        lmp_packed_linear_free(out);
        return rc;
    }
    out->n = 4;
    uint32_t *qw = out->t[0].data, *qz = out->t[1].data;
    uint16_t *sc = out->t[2].data;
    int32_t *gi = out->t[3].data;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outf; r++)
        for (int64_t c = 0; c < in; c++)
            put_bits(qw + r, outf, c * bits, lmp_ig_code(ig, r, c), bits);
    const int zoff = f == LMP_QFMT_GPTQ_V1 ? 1 : 0;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t r = 0; r < outf; r++) {
            put_bits(qz + g * sh_z[1], 1, r * bits,
                     (uint32_t)(ig->zeros[r * ng + g] - zoff), bits);
            sc[g * outf + r] = lmp_f32_to_f16(ig->scales[r * ng + g]);
        }
    for (int64_t c = 0; c < in; c++)
        gi[c] = lmp_ig_group(ig, c);
    return LMP_OK;
}

int lmp_pack_check_tensor(const lmp_tensor *t, const char *fmt, const char *name, int dt,
                        int ndim, const int64_t *shape)
{
    if (!t)
        return lmp_err(LMP_ENOTFOUND, "%s: missing tensor %s", fmt, name);
    if (dt >= 0 && t->dtype != (lmp_dtype)dt)
        return lmp_err(LMP_EFORMAT, "%s: %s has dtype %s (expected %s)", fmt, name,
                       lmp_dtype_info(t->dtype)->name, lmp_dtype_info((lmp_dtype)dt)->name);
    if (t->ndim != ndim)
        return lmp_err(LMP_EFORMAT, "%s: %s has %d dimensions (expected %d)", fmt, name,
                       t->ndim, ndim);
    for (int i = 0; i < ndim; i++)
        if (shape[i] >= 0 && t->shape[i] != shape[i]) {
            char b[64];
            return lmp_err(LMP_EFORMAT, "%s: %s has shape %s (dimension %d expected %lld)",
                           fmt, name, lmp_shape_str(t, b, sizeof b), i, (long long)shape[i]);
        }
    if (t->nbytes != lmp_dtype_row_bytes(t->dtype, lmp_tensor_nelem(t)) || !t->data)
        return lmp_err(LMP_EFORMAT, "%s: %s holds %zu bytes for its shape", fmt, name, t->nbytes);
    return LMP_OK;
}

float lmp_pack_scale_at(const lmp_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case LMP_DT_F16: return lmp_f16_to_f32(((const uint16_t *)t->data)[i]);
    case LMP_DT_BF16: return lmp_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

bool lmp_pack_scale_dtype_ok(const lmp_tensor *t)
{
    return t->dtype == LMP_DT_F16 || t->dtype == LMP_DT_BF16 || t->dtype == LMP_DT_F32;
}

int lmp_gptq_unpack(const lmp_packed_linear *pl, lmp_qformat f, const lmp_intq_config *cfg,
                    lmp_qtensor *out)
{
    const char *fmt = f == LMP_QFMT_GPTQ_V1 ? "gptq" : "gptq_v2";
    const lmp_tensor *tw = lmp_packed_linear_find(pl, "qweight");
    const lmp_tensor *tz = lmp_packed_linear_find(pl, "qzeros");
    const lmp_tensor *ts = lmp_packed_linear_find(pl, "scales");
    const lmp_tensor *tg = lmp_packed_linear_find(pl, "g_idx");
    const int bits = cfg->bits;
    int rc;
    memset(out, 0, sizeof *out);
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        return lmp_err(LMP_EUNSUPPORTED, "%s: bits %d (GPTQ packs 2, 3, 4, 8)", fmt, bits);
    int64_t any2[2] = {-1, -1};
    if ((rc = lmp_pack_check_tensor(tw, fmt, "qweight", LMP_DT_I32, 2, any2)))
        return rc;
    int64_t in = tw->shape[0] * 32 / bits, outf = tw->shape[1];
    if ((tw->shape[0] * 32) % bits || in < 1 || outf < 1 || (outf * bits) % 32 || in > INT32_MAX)
        return lmp_err(LMP_EFORMAT, "%s: qweight shape [%lld, %lld] impossible at %d bits", fmt,
                       (long long)tw->shape[0], (long long)tw->shape[1], bits);
    int64_t gs = cfg->group_size == -1 ? in : cfg->group_size;
    if (gs < 1)
        return lmp_err(LMP_EFORMAT, "%s: group_size %d", fmt, cfg->group_size);
    int64_t ng = (in + gs - 1) / gs;
    int64_t sh_z[2] = {ng, outf * bits / 32}, sh_s[2] = {ng, outf}, sh_g[1] = {in};
    if ((rc = lmp_pack_check_tensor(tz, fmt, "qzeros", LMP_DT_I32, 2, sh_z)) ||
        (rc = lmp_pack_check_tensor(ts, fmt, "scales", -1, 2, sh_s)) ||
        (tg && (rc = lmp_pack_check_tensor(tg, fmt, "g_idx", LMP_DT_I32, 1, sh_g))))
        return rc;
    if (!lmp_pack_scale_dtype_ok(ts))
        return lmp_err(LMP_EFORMAT, "%s: scales dtype %s (expected f16, bf16 or f32)", fmt,
                       lmp_dtype_info(ts->dtype)->name);
    rc = lmp_qtensor_intgroup_init(out, outf, in, bits, cfg->group_size, false, tg != NULL);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    const uint32_t *qw = tw->data, *qz = tz->data;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outf; r++)
        for (int64_t c = 0; c < in; c++)
            lmp_ig_set_code(ig, r, c, get_bits(qw + r, outf, c * bits, bits));
    const int zoff = f == LMP_QFMT_GPTQ_V1 ? 1 : 0, mid = 1 << (bits - 1);
    bool all_mid = true;
    for (int64_t g = 0; g < ng; g++)
        for (int64_t r = 0; r < outf; r++) {
            int z = (int)get_bits(qz + g * sh_z[1], 1, r * bits, bits) + zoff;
            float s = lmp_pack_scale_at(ts, g * outf + r);
            if (z > 255) { /* 8-bit v1 storing 255: its loaders' zero 256 has no u8 */
                lmp_qtensor_free(out);
                return lmp_err(LMP_EUNSUPPORTED, "%s: qzeros[%lld] of column %lld is 255 + 1 = 256, not representable",
                               fmt, (long long)g, (long long)r);
            }
            ig->zeros[r * ng + g] = (uint8_t)z;
            ig->scales[r * ng + g] = s;
            all_mid &= z == mid;
        }
    ig->sym = cfg->sym && all_mid;
    if (cfg->sym && !all_mid)
        lmp_warn("%s: config says sym but zero points differ from %d; reading as asymmetric",
                 fmt, mid);
    if (tg) {
        memcpy(ig->g_idx, tg->data, (size_t)in * sizeof(int32_t));
        if ((rc = lmp_qtensor_gidx_normalize(out))) {
            lmp_qtensor_free(out);
            return lmp_err_prefix(rc, "%s", fmt);
        }
    }
    return LMP_OK;
}

cJSON *lmp_gptq_config_json(const lmp_intq_config *c, lmp_qformat f)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "bits", c->bits);
    cJSON_AddNumberToObject(o, "group_size", c->group_size);
    char b[32];
    snprintf(b, sizeof b, "%.6g", (double)c->damp_percent); /* 0.01, not 0.0099999998 */
    cJSON_AddNumberToObject(o, "damp_percent", strtod(b, NULL));
    cJSON_AddBoolToObject(o, "desc_act", c->desc_act);
    cJSON_AddBoolToObject(o, "static_groups", c->static_groups);
    cJSON_AddBoolToObject(o, "sym", c->sym);
    cJSON_AddBoolToObject(o, "true_sequential", c->true_sequential);
    cJSON_AddStringToObject(o, "quant_method", "gptq");
    cJSON_AddStringToObject(o, "checkpoint_format",
                            f == LMP_QFMT_GPTQ_V2 ? "gptq_v2" : "gptq");
    return o;
}
