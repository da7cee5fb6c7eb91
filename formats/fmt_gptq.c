/*
 * GPTQ checkpoint packing (AutoGPTQ qlinear pack / GPTQModel v1 and v2) <-> the canonical
 * intgroup lmp_qtensor, and GPTQ's quantization_config (writer and reader). Layout facts
 * are in formats/packing.h; the rows LMP_QFMT_GPTQ_V1 / _V2 of fmt_table.c point here.
 * Uses only fmt_common.c. Not the GPTQ algorithm (lib/quant/gptq.c).
 */
#include "fmt_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

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

static const char *gptq_name(lmp_qformat f)
{
    return f == LMP_QFMT_GPTQ_V1 ? "gptq" : "gptq_v2";
}

int lmp_fmt_gptq_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out)
{
    (void)scale_dtype; /* GPTQ stores f16 scales */
    memset(out, 0, sizeof *out);
    out->format = f;
    if (f != LMP_QFMT_GPTQ_V1 && f != LMP_QFMT_GPTQ_V2)
        return lmp_err(LMP_EINVAL, "gptq pack: format %d is not GPTQ", (int)f);
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
                           q->name, ig->zeros[i], gptq_name(f), bits);

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




int lmp_fmt_gptq_unpack(const lmp_packed_linear *pl, const lmp_intq_config *cfg, lmp_qtensor *out)
{
    const lmp_qformat f = pl->format;
    const char *fmt = gptq_name(f);
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
    if ((rc = lmp_fmt_check_tensor(tw, fmt, "qweight", LMP_DT_I32, 2, any2)))
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
    if ((rc = lmp_fmt_check_tensor(tz, fmt, "qzeros", LMP_DT_I32, 2, sh_z)) ||
        (rc = lmp_fmt_check_tensor(ts, fmt, "scales", -1, 2, sh_s)) ||
        (tg && (rc = lmp_fmt_check_tensor(tg, fmt, "g_idx", LMP_DT_I32, 1, sh_g))))
        return rc;
    if (!lmp_fmt_scale_dtype_ok(ts))
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
            float s = lmp_fmt_scale_at(ts, g * outf + r);
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

cJSON *lmp_fmt_gptq_config_json(const lmp_intq_config *c, lmp_qformat f)
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

int lmp_fmt_gptq_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c)
{
    int rc;
    const char *cf = lmp_fmt_json_str(qc, "checkpoint_format");
    if (!cf || strcmp(cf, "gptq") == 0)
        *f = LMP_QFMT_GPTQ_V1;
    else if (strcmp(cf, "gptq_v2") == 0)
        *f = LMP_QFMT_GPTQ_V2;
    else
        return lmp_err(LMP_EUNSUPPORTED,
                       "quantization_config: GPTQ checkpoint_format \"%s\" (expected gptq or gptq_v2)", cf);
    if ((rc = lmp_fmt_json_int(qc, "bits", 4, &c->bits)) ||
        (rc = lmp_fmt_json_int(qc, "group_size", -1, &c->group_size)))
        return rc;
    c->sym = lmp_fmt_json_bool(qc, "sym", true);
    c->desc_act = lmp_fmt_json_bool(qc, "desc_act", false);
    c->static_groups = lmp_fmt_json_bool(qc, "static_groups", false);
    c->true_sequential = lmp_fmt_json_bool(qc, "true_sequential", true);
    const cJSON *d = cJSON_GetObjectItemCaseSensitive(qc, "damp_percent");
    if (cJSON_IsNumber(d))
        c->damp_percent = (float)d->valuedouble;
    return LMP_OK;
}

/* ---------------------------------------------------------------- mixed ---------- */

int lmp_fmt_gptq_config_rules(const cJSON *qc, const lmp_intq_config *base, lmp_intq_rules *out)
{
    const cJSON *dyn = cJSON_GetObjectItemCaseSensitive(qc, "dynamic");
    if (!dyn || cJSON_IsNull(dyn))
        return LMP_OK;
    if (!cJSON_IsObject(dyn))
        return lmp_err(LMP_EFORMAT, "quantization_config: \"dynamic\" is not an object");
    for (const cJSON *e = dyn->child; e; e = e->next) {
        const char *key = e->string ? e->string : "";
        char what[LMP_MAX_NAME + 64];
        snprintf(what, sizeof what, "quantization_config.dynamic[\"%.200s\"]", key);
        const bool skip = strncmp(key, "-:", 2) == 0;
        const char *pat = skip || strncmp(key, "+:", 2) == 0 ? key + 2 : key;
        lmp_intq_config c = *base;
        if (!skip) {
            if (!cJSON_IsObject(e))
                return lmp_err(LMP_EFORMAT, "%s: the overrides are not an object", what);
            int rc;
            if ((rc = lmp_fmt_json_int(e, "bits", base->bits, &c.bits)) ||
                (rc = lmp_fmt_json_int(e, "group_size", base->group_size, &c.group_size)))
                return lmp_err_prefix(rc, "%s", what);
            c.sym = lmp_fmt_json_bool(e, "sym", base->sym);
            c.desc_act = lmp_fmt_json_bool(e, "desc_act", base->desc_act);
            if (c.bits != 2 && c.bits != 3 && c.bits != 4 && c.bits != 8)
                return lmp_err(LMP_EUNSUPPORTED, "%s: bits %d (GPTQ packs 2, 3, 4, 8)", what, c.bits);
            if (c.group_size == 0 || c.group_size < -1)
                return lmp_err(LMP_EFORMAT, "%s: group_size %d", what, c.group_size);
        }
        int rc = lmp_fmt_rule_add(out, pat, 1, skip, &c, what);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

/* The last component of a module name ("q_proj") and the length of its parent path. */
static const char *leaf(const char *name, size_t *parent_len)
{
    const char *d = strrchr(name, '.');
    *parent_len = d ? (size_t)(d - name) : 0;
    return d ? d + 1 : name;
}

int lmp_fmt_gptq_config_mixed(cJSON *qc, const lmp_intq_config *base, const lmp_intq_module *m, int n)
{
    cJSON_DeleteItemFromObjectCaseSensitive(qc, "dynamic");
    cJSON *dyn = cJSON_AddObjectToObject(qc, "dynamic");
    char *done = calloc((size_t)(n ? n : 1), 1);
    if (!dyn || !done) {
        free(done);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    /* one key per parent module and setting: its linears' leaf names, plus vLLM's fused
     * name when the whole fused set is there (q/k/v -> qkv_proj, gate/up -> gate_up_proj) */
    for (int i = 0; i < n; i++) {
        if (done[i] || (m[i].bits == base->bits && m[i].group_size == base->group_size))
            continue;
        size_t pl;
        leaf(m[i].name, &pl);
        char alt[256] = "";
        size_t al = 0;
        bool q = false, k = false, v = false, g = false, u = false;
        for (int j = i; j < n; j++) {
            size_t pj;
            const char *lf = leaf(m[j].name, &pj);
            if (done[j] || pj != pl || strncmp(m[j].name, m[i].name, pl) != 0 || m[j].bits != m[i].bits ||
                m[j].group_size != m[i].group_size)
                continue;
            done[j] = 1;
            char esc[128];
            lmp_fmt_regex_escape(lf, esc, sizeof esc);
            al += (size_t)snprintf(alt + al, al < sizeof alt ? sizeof alt - al : 0, "%s%s", al ? "|" : "", esc);
            q |= strcmp(lf, "q_proj") == 0;
            k |= strcmp(lf, "k_proj") == 0;
            v |= strcmp(lf, "v_proj") == 0;
            g |= strcmp(lf, "gate_proj") == 0;
            u |= strcmp(lf, "up_proj") == 0;
        }
        if (q && k && v)
            al += (size_t)snprintf(alt + al, al < sizeof alt ? sizeof alt - al : 0, "|qkv_proj");
        if (g && u)
            al += (size_t)snprintf(alt + al, al < sizeof alt ? sizeof alt - al : 0, "|gate_up_proj");
        char parent[LMP_MAX_NAME], esc[2 * LMP_MAX_NAME], key[3 * LMP_MAX_NAME + 300];
        snprintf(parent, sizeof parent, "%.*s", (int)pl, m[i].name);
        lmp_fmt_regex_escape(parent, esc, sizeof esc);
        snprintf(key, sizeof key, "+:%s\\.(%s)$", esc, alt);
        cJSON *o = cJSON_AddObjectToObject(dyn, key);
        if (!o) {
            free(done);
            return lmp_err(LMP_ENOMEM, "out of memory");
        }
        cJSON_AddNumberToObject(o, "bits", m[i].bits);
        cJSON_AddNumberToObject(o, "group_size", m[i].group_size);
    }
    free(done);
    return LMP_OK;
}
