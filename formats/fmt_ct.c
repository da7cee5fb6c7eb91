/*
 * compressed-tensors "pack-quantized" (neuralmagic/compressed-tensors
 * compressors/quantized_compressors/pack_quantized.py pack_to_int32 / unpack_from_int32,
 * quantization/lifecycle/forward.py) <-> the canonical intgroup lmp_qtensor, and its
 * quantization_config. Their codes are signed (q_s in [-2^(b-1), 2^(b-1)-1], zero point
 * z_s, w = s * (q_s - z_s)); packing adds 2^(b-1), so the stored values are exactly our
 * unsigned codes and zeros. 32/bits whole values per int32 word, least significant first.
 * For bits 2, 4 and 8 a weight_packed row is byte-identical (little-endian) to our
 * canonical row, so those rows are copied. Not sparse-24-bitmask. The row
 * LMP_QFMT_CT_PACKED of fmt_table.c points here; uses only fmt_common.c.
 */
#include "fmt_internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "row copies below assume little-endian int32 words"
#endif

int lmp_fmt_ct_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out)
{
    (void)f; /* one format */
    memset(out, 0, sizeof *out);
    out->format = LMP_QFMT_CT_PACKED;
    if (q->scheme != LMP_QS_INTGROUP)
        return lmp_err(LMP_EINVAL, "compressed-tensors pack: %s is not integer-group quantized",
                       q->name);
    if (scale_dtype != LMP_DT_F16 && scale_dtype != LMP_DT_BF16 && scale_dtype != LMP_DT_F32)
        return lmp_err(LMP_EINVAL, "compressed-tensors pack: weight_scale dtype %s (f16, bf16 or f32)",
                       lmp_dtype_info(scale_dtype) ? lmp_dtype_info(scale_dtype)->name : "?");
    const lmp_intgroup *ig = &q->ig;
    const int bits = ig->bits, pf = 32 / bits, maxq = (1 << bits) - 1;
    const int64_t in = q->cols, outf = q->rows, ng = ig->n_groups;
    if (ig->group_size != -1 && in % ig->gs)
        return lmp_err(LMP_EUNSUPPORTED,
                       "compressed-tensors pack: %s: in_features %lld not a multiple of group_size %d",
                       q->name, (long long)in, ig->gs);
    for (int64_t i = 0; i < outf * ng; i++)
        if (ig->zeros[i] > maxq)
            return lmp_err(LMP_ERANGE, "compressed-tensors pack: %s: zero point %d does not fit %d bits",
                           q->name, ig->zeros[i], bits);
    const int64_t wpr = (in + pf - 1) / pf; /* words per row */
    int64_t sh_w[2] = {outf, wpr}, sh_s[2] = {outf, ng}, sh_z[2] = {(outf + pf - 1) / pf, ng};
    int64_t sh_g[1] = {in}, sh_shape[1] = {2};
    int rc, n = 0;
    lmp_tensor *tw = &out->t[n++], *ts = &out->t[n++], *tz = NULL, *tg = NULL, *tsh;
    if ((rc = lmp_tensor_alloc(tw, "weight_packed", LMP_DT_I32, 2, sh_w)) ||
        (rc = lmp_tensor_alloc(ts, "weight_scale", scale_dtype, 2, sh_s)))
        goto fail;
    if (!ig->sym) {
        tz = &out->t[n++];
        if ((rc = lmp_tensor_alloc(tz, "weight_zero_point", LMP_DT_I32, 2, sh_z)))
            goto fail;
    }
    if (ig->g_idx) {
        tg = &out->t[n++];
        if ((rc = lmp_tensor_alloc(tg, "weight_g_idx", LMP_DT_I32, 1, sh_g)))
            goto fail;
    }
    tsh = &out->t[n++];
    if ((rc = lmp_tensor_alloc(tsh, "weight_shape", LMP_DT_I64, 1, sh_shape)))
        goto fail;
    out->n = n;

    uint32_t *pw = tw->data;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outf; r++) {
        uint32_t *dst = pw + r * wpr;
        if (32 % bits == 0) {
            memcpy(dst, ig->codes + r * ig->row_bytes, (size_t)wpr * 4);
        } else {
            for (int64_t c = 0; c < in; c++)
                dst[c / pf] |= lmp_ig_code(ig, r, c) << (bits * (c % pf));
        }
    }
    for (int64_t i = 0; i < outf * ng; i++) {
        float s = ig->scales[i];
        if (scale_dtype == LMP_DT_F16)
            ((uint16_t *)ts->data)[i] = lmp_f32_to_f16(s);
        else if (scale_dtype == LMP_DT_BF16)
            ((uint16_t *)ts->data)[i] = lmp_f32_to_bf16(s);
        else
            ((float *)ts->data)[i] = s;
    }
    if (tz) {
        uint32_t *zw = tz->data;
        for (int64_t r = 0; r < outf; r++)
            for (int64_t g = 0; g < ng; g++)
                zw[(r / pf) * ng + g] |= (uint32_t)ig->zeros[r * ng + g] << (bits * (r % pf));
    }
    if (tg)
        memcpy(tg->data, ig->g_idx, (size_t)in * sizeof(int32_t));
    ((int64_t *)tsh->data)[0] = outf;
    ((int64_t *)tsh->data)[1] = in;
    return LMP_OK;
fail:
    out->n = n;
    lmp_packed_linear_free(out);
    return rc;
}

static int64_t int_at(const lmp_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case LMP_DT_I64: return ((const int64_t *)t->data)[i];
    case LMP_DT_I32: return ((const int32_t *)t->data)[i];
    case LMP_DT_I16: return ((const int16_t *)t->data)[i];
    case LMP_DT_I8: return ((const int8_t *)t->data)[i];
    case LMP_DT_U8: return ((const uint8_t *)t->data)[i];
    default: return INT64_MIN;
    }
}

int lmp_fmt_ct_unpack(const lmp_packed_linear *pl, const lmp_intq_config *cfg, lmp_qtensor *out)
{
    const char *fmt = "compressed-tensors";
    const lmp_tensor *tw = lmp_packed_linear_find(pl, "weight_packed");
    const lmp_tensor *ts = lmp_packed_linear_find(pl, "weight_scale");
    const lmp_tensor *tz = lmp_packed_linear_find(pl, "weight_zero_point");
    const lmp_tensor *tg = lmp_packed_linear_find(pl, "weight_g_idx");
    const lmp_tensor *tsh = lmp_packed_linear_find(pl, "weight_shape");
    const int bits = cfg->bits;
    int rc;
    memset(out, 0, sizeof *out);
    if (bits < 2 || bits > 8)
        return lmp_err(LMP_EUNSUPPORTED, "%s: num_bits %d not in 2..8", fmt, bits);
    const int pf = 32 / bits, maxq = (1 << bits) - 1, mid = 1 << (bits - 1);
    int64_t sh1[1] = {2};
    if ((rc = lmp_fmt_check_tensor(tsh, fmt, "weight_shape", -1, 1, sh1)))
        return rc;
    if (tsh->dtype != LMP_DT_I64 && tsh->dtype != LMP_DT_I32)
        return lmp_err(LMP_EFORMAT, "%s: weight_shape dtype %s (expected i64 or i32)", fmt,
                       lmp_dtype_info(tsh->dtype)->name);
    const int64_t outf = int_at(tsh, 0), in = int_at(tsh, 1);
    if (outf < 1 || in < 1 || in > INT32_MAX || outf > ((int64_t)1 << 40))
        return lmp_err(LMP_EFORMAT, "%s: weight_shape [%lld, %lld]", fmt, (long long)outf,
                       (long long)in);
    int64_t gs = cfg->group_size == -1 ? in : cfg->group_size;
    if (gs < 1 || in % gs)
        return lmp_err(LMP_EFORMAT, "%s: in_features %lld not a multiple of group_size %d", fmt,
                       (long long)in, cfg->group_size);
    const int64_t ng = in / gs, wpr = (in + pf - 1) / pf;
    int64_t sh_w[2] = {outf, wpr}, sh_s[2] = {outf, ng}, sh_g[1] = {in};
    if ((rc = lmp_fmt_check_tensor(tw, fmt, "weight_packed", LMP_DT_I32, 2, sh_w)) ||
        (rc = lmp_fmt_check_tensor(ts, fmt, "weight_scale", -1, 2, sh_s)) ||
        (tg && (rc = lmp_fmt_check_tensor(tg, fmt, "weight_g_idx", -1, 1, sh_g))))
        return rc;
    if (!lmp_fmt_scale_dtype_ok(ts))
        return lmp_err(LMP_EFORMAT, "%s: weight_scale dtype %s (expected f16, bf16 or f32)", fmt,
                       lmp_dtype_info(ts->dtype)->name);
    if (tg && tg->dtype != LMP_DT_I32 && tg->dtype != LMP_DT_I64)
        return lmp_err(LMP_EFORMAT, "%s: weight_g_idx dtype %s (expected i32 or i64)", fmt,
                       lmp_dtype_info(tg->dtype)->name);
    bool zp_packed = false;
    if (tz) {
        /* current writers pack zeros along the output axis (I32); older ones stored the
         * signed zeros unpacked, [out, n_groups] */
        if (tz->dtype == LMP_DT_I32 && tz->ndim == 2 && tz->shape[0] == (outf + pf - 1) / pf &&
            tz->shape[1] == ng && tz->nbytes == (size_t)(tz->shape[0] * ng * 4) && tz->data) {
            zp_packed = true;
        } else {
            int64_t sh_z[2] = {outf, ng};
            if ((rc = lmp_fmt_check_tensor(tz, fmt, "weight_zero_point", -1, 2, sh_z)))
                return rc;
            if (int_at(tz, 0) == INT64_MIN)
                return lmp_err(LMP_EFORMAT, "%s: weight_zero_point dtype %s (expected integers)",
                               fmt, lmp_dtype_info(tz->dtype)->name);
        }
    } else if (!cfg->sym) {
        return lmp_err(LMP_ENOTFOUND, "%s: asymmetric config but no weight_zero_point", fmt);
    }
    rc = lmp_qtensor_intgroup_init(out, outf, in, bits, cfg->group_size, tz == NULL, tg != NULL);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    const uint32_t *pw = tw->data;
    #pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < outf; r++) {
        const uint32_t *src = pw + r * wpr;
        if (32 % bits == 0) {
            uint8_t *row = ig->codes + r * ig->row_bytes;
            memcpy(row, src, (size_t)wpr * 4);
            int64_t used = in * bits; /* clear padding bits past the last code */
            if (used % 8)
                row[used / 8] &= (uint8_t)((1u << (used % 8)) - 1);
            memset(row + (used + 7) / 8, 0, (size_t)(ig->row_bytes - (used + 7) / 8));
        } else {
            for (int64_t c = 0; c < in; c++)
                lmp_ig_set_code(ig, r, c, (src[c / pf] >> (bits * (c % pf))) & (uint32_t)maxq);
        }
    }
    for (int64_t i = 0; i < outf * ng; i++)
        ig->scales[i] = lmp_fmt_scale_at(ts, i);
    if (tz) {
        bool all_mid = true;
        for (int64_t r = 0; r < outf; r++)
            for (int64_t g = 0; g < ng; g++) {
                int64_t z;
                if (zp_packed)
                    z = (((const uint32_t *)tz->data)[(r / pf) * ng + g] >> (bits * (r % pf))) & (uint32_t)maxq;
                else
                    z = int_at(tz, r * ng + g) + mid; /* signed zero point */
                if (z < 0 || z > maxq) {
                    lmp_qtensor_free(out);
                    return lmp_err(LMP_EFORMAT, "%s: weight_zero_point (%lld, %lld) out of range",
                                   fmt, (long long)r, (long long)g);
                }
                ig->zeros[r * ng + g] = (uint8_t)z;
                all_mid &= z == mid;
            }
        ig->sym = all_mid && cfg->sym;
    }
    if (tg) {
        bool column_order = false;
        for (int64_t c = 0; c < in; c++) {
            int64_t g = int_at(tg, c);
            if (g == -1)
                column_order = true; /* their marker for "not initialized" */
            ig->g_idx[c] = (int32_t)(g < INT32_MIN ? INT32_MIN : g > INT32_MAX ? INT32_MAX : g);
        }
        if (column_order) {
            free(ig->g_idx);
            ig->g_idx = NULL;
        } else if ((rc = lmp_qtensor_gidx_normalize(out))) {
            lmp_qtensor_free(out);
            return lmp_err_prefix(rc, "%s: weight_g_idx", fmt);
        }
    }
    return LMP_OK;
}

cJSON *lmp_fmt_ct_config_json(const lmp_intq_config *c, lmp_qformat f)
{
    (void)f;
    static const char *const def_ignore[] = {"lm_head", NULL};
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON *groups = cJSON_AddObjectToObject(o, "config_groups");
    cJSON *g0 = cJSON_AddObjectToObject(groups, "group_0");
    cJSON_AddNullToObject(g0, "input_activations");
    cJSON_AddNullToObject(g0, "output_activations");
    cJSON *targets = cJSON_AddArrayToObject(g0, "targets");
    cJSON_AddItemToArray(targets, cJSON_CreateString("Linear"));
    cJSON *w = cJSON_AddObjectToObject(g0, "weights");
    if (c->desc_act)
        cJSON_AddStringToObject(w, "actorder", c->static_groups ? "weight" : "group");
    else
        cJSON_AddNullToObject(w, "actorder");
    cJSON_AddNullToObject(w, "block_structure");
    cJSON_AddBoolToObject(w, "dynamic", false);
    if (c->group_size == -1)
        cJSON_AddNullToObject(w, "group_size");
    else
        cJSON_AddNumberToObject(w, "group_size", c->group_size);
    cJSON_AddNumberToObject(w, "num_bits", c->bits);
    cJSON_AddStringToObject(w, "observer", "minmax");
    cJSON_AddObjectToObject(w, "observer_kwargs");
    cJSON_AddStringToObject(w, "strategy", c->group_size == -1 ? "channel" : "group");
    cJSON_AddBoolToObject(w, "symmetric", c->sym);
    cJSON_AddStringToObject(w, "type", "int");
    cJSON_AddStringToObject(o, "format", "pack-quantized");
    cJSON_AddNullToObject(o, "global_compression_ratio");
    cJSON *ig = cJSON_AddArrayToObject(o, "ignore");
    for (const char *const *p = def_ignore; *p; p++) /* the model writer adds kept linears */
        cJSON_AddItemToArray(ig, cJSON_CreateString(*p));
    cJSON_AddNullToObject(o, "kv_cache_scheme");
    cJSON_AddStringToObject(o, "quant_method", "compressed-tensors");
    cJSON_AddStringToObject(o, "quantization_status", "compressed");
    return o;
}

/* One config_groups entry's "weights" into c (the rest of c as given). */
static int ct_weights(const cJSON *w, lmp_intq_config *c, const char *gname)
{
    int rc;
    if (!cJSON_IsObject(w))
        return lmp_err(LMP_EFORMAT, "quantization_config: config_groups entry \"%s\" has no weights", gname);
    const char *type = lmp_fmt_json_str(w, "type");
    if (type && strcmp(type, "int") != 0)
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: %s weights type \"%s\" (expected int)", gname, type);
    if ((rc = lmp_fmt_json_int(w, "num_bits", 4, &c->bits)))
        return rc;
    if (c->bits < 2 || c->bits > 8)
        return lmp_err(LMP_EUNSUPPORTED, "quantization_config: %s num_bits %d not in 2..8", gname, c->bits);
    c->sym = lmp_fmt_json_bool(w, "symmetric", true);
    const char *strat = lmp_fmt_json_str(w, "strategy");
    if (strat && strcmp(strat, "channel") == 0) {
        c->group_size = -1;
    } else if (strat && strcmp(strat, "group") == 0) {
        if ((rc = lmp_fmt_json_int(w, "group_size", 128, &c->group_size)))
            return rc;
        if (c->group_size < 1)
            return lmp_err(LMP_EFORMAT, "quantization_config: %s group_size %d", gname, c->group_size);
    } else {
        return lmp_err(LMP_EUNSUPPORTED,
                       "quantization_config: %s weight strategy \"%s\" (expected group or channel)", gname,
                       strat ? strat : "(none)");
    }
    const char *ao = lmp_fmt_json_str(w, "actorder");
    c->desc_act = ao != NULL;
    c->static_groups = ao && (strcmp(ao, "weight") == 0 || strcmp(ao, "static") == 0);
    return LMP_OK;
}

/* true when the group's targets include the class "Linear" */
static bool targets_linear(const cJSON *g)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(g, "targets"), *e;
    cJSON_ArrayForEach(e, t)
        if (cJSON_IsString(e) && strcmp(e->valuestring, "Linear") == 0)
            return true;
    return false;
}

int lmp_fmt_ct_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c)
{
    const char *fmt = lmp_fmt_json_str(qc, "format");
    if (!fmt || strcmp(fmt, "pack-quantized") != 0)
        return lmp_err(LMP_EUNSUPPORTED,
                       "quantization_config: compressed-tensors format \"%s\" (only pack-quantized)",
                       fmt ? fmt : "(none)");
    *f = LMP_QFMT_CT_PACKED;
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    if (!cJSON_IsObject(groups) || cJSON_GetArraySize(groups) < 1)
        return lmp_err(LMP_EFORMAT, "quantization_config: no config_groups");
    /* the base setting: the group targeting the class Linear, else the first (several
     * groups: each module's own by lmp_intq_rules_parse) */
    const cJSON *g = groups->child;
    for (const cJSON *e = groups->child; e; e = e->next)
        if (targets_linear(e)) {
            g = e;
            break;
        }
    return ct_weights(cJSON_GetObjectItemCaseSensitive(g, "weights"), c, g->string ? g->string : "group");
}

/* A target or ignore entry: "re:REGEX", a dotted module name, or a class name. */
static int add_target(lmp_intq_rules *out, const char *t, bool skip, const lmp_intq_config *c, const char *what)
{
    if (strncmp(t, "re:", 3) == 0)
        return lmp_fmt_rule_add(out, t + 3, 1, skip, c, what);
    return lmp_fmt_rule_add(out, t, strchr(t, '.') || skip ? 0 : 2, skip, c, what);
}

int lmp_fmt_ct_config_rules(const cJSON *qc, const lmp_intq_config *base, lmp_intq_rules *out)
{
    const cJSON *groups = cJSON_GetObjectItemCaseSensitive(qc, "config_groups");
    out->ct = true;
    out->has_groups = true;
    const cJSON *ig = cJSON_GetObjectItemCaseSensitive(qc, "ignore"), *e;
    int rc;
    cJSON_ArrayForEach(e, ig)
        if (cJSON_IsString(e) && (rc = add_target(out, e->valuestring, true, base, "quantization_config.ignore")))
            return rc;
    for (const cJSON *g = groups ? groups->child : NULL; g; g = g->next) {
        const char *gname = g->string ? g->string : "group";
        lmp_intq_config c = *base;
        if ((rc = ct_weights(cJSON_GetObjectItemCaseSensitive(g, "weights"), &c, gname)))
            return rc;
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(g, "targets");
        if (!cJSON_IsArray(t))
            return lmp_err(LMP_EFORMAT, "quantization_config: config_groups entry \"%s\" has no targets list", gname);
        char what[128];
        snprintf(what, sizeof what, "quantization_config.config_groups.%.80s.targets", gname);
        cJSON_ArrayForEach(e, t) {
            if (!cJSON_IsString(e))
                return lmp_err(LMP_EFORMAT, "%s: a target that is not a string", what);
            if ((rc = add_target(out, e->valuestring, false, &c, what)))
                return rc;
        }
    }
    return LMP_OK;
}

int lmp_fmt_ct_config_mixed(cJSON *qc, const lmp_intq_config *base, const lmp_intq_module *m, int n)
{
    /* one group per distinct setting, in order of first use, targets the exact module
     * names (no "Linear" catch-all: vLLM matches a fused layer's class name before its
     * shards' names, and would give qkv_proj the catch-all's scheme) */
    cJSON_DeleteItemFromObjectCaseSensitive(qc, "config_groups");
    cJSON *groups = cJSON_CreateObject();
    char *done = calloc((size_t)(n ? n : 1), 1);
    int ng = 0, rc = LMP_OK;
    if (!groups || !done) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < n && !rc; i++) {
        if (done[i])
            continue;
        lmp_intq_config c = *base;
        c.bits = m[i].bits;
        c.group_size = m[i].group_size;
        cJSON *one = lmp_fmt_ct_config_json(&c, LMP_QFMT_CT_PACKED);
        cJSON *g = one ? cJSON_DetachItemFromObjectCaseSensitive(
                             cJSON_GetObjectItemCaseSensitive(one, "config_groups"), "group_0")
                       : NULL;
        cJSON_Delete(one);
        if (!g) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            break;
        }
        cJSON_DeleteItemFromObjectCaseSensitive(g, "targets");
        cJSON *t = cJSON_AddArrayToObject(g, "targets");
        for (int j = i; j < n && t; j++)
            if (!done[j] && m[j].bits == m[i].bits && m[j].group_size == m[i].group_size) {
                done[j] = 1;
                cJSON_AddItemToArray(t, cJSON_CreateString(m[j].name));
            }
        char name[32];
        snprintf(name, sizeof name, "group_%d", ng++);
        cJSON_AddItemToObject(groups, name, g);
    }
out:
    free(done);
    if (rc) {
        cJSON_Delete(groups);
        return rc;
    }
    cJSON_AddItemToObject(qc, "config_groups", groups);
    return LMP_OK;
}
