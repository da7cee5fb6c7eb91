/*
 * The leaf of formats/' integer-group files: lmp_intq_config defaults, lmp_packed_linear
 * bookkeeping and safetensors glue, tensor checks, scale reads and quantization_config
 * field readers. The layout files (fmt_gptq.c, fmt_awq.c, fmt_ct.c) and the table
 * (fmt_table.c) call these; this file calls nothing else in formats/.
 */
#include "fmt_internal.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

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

int lmp_fmt_check_tensor(const lmp_tensor *t, const char *fmt, const char *name, int dt,
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

float lmp_fmt_scale_at(const lmp_tensor *t, int64_t i)
{
    switch (t->dtype) {
    case LMP_DT_F16: return lmp_f16_to_f32(((const uint16_t *)t->data)[i]);
    case LMP_DT_BF16: return lmp_bf16_to_f32(((const uint16_t *)t->data)[i]);
    default: return ((const float *)t->data)[i];
    }
}

bool lmp_fmt_scale_dtype_ok(const lmp_tensor *t)
{
    return t->dtype == LMP_DT_F16 || t->dtype == LMP_DT_BF16 || t->dtype == LMP_DT_F32;
}

int lmp_fmt_json_int(const cJSON *o, const char *key, int def, int *out)
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

bool lmp_fmt_json_bool(const cJSON *o, const char *key, bool def)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : def;
}

const char *lmp_fmt_json_str(const cJSON *o, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---------------------------------------------------------------- mixed configs -- */

int lmp_fmt_rule_add(lmp_intq_rules *r, const char *pattern, int kind, bool skip, const lmp_intq_config *c,
                     const char *what)
{
    lmp_intq_rule *nr = realloc(r->r, sizeof *nr * (size_t)(r->n + 1));
    if (!nr)
        return lmp_err(LMP_ENOMEM, "out of memory");
    r->r = nr;
    lmp_intq_rule *x = &nr[r->n];
    memset(x, 0, sizeof *x);
    x->kind = kind;
    x->skip = skip;
    x->c = *c;
    if (!(x->pattern = strdup(pattern)))
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (kind == 1) {
        int e;
        PCRE2_SIZE off;
        x->code = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_ANCHORED, &e, &off, NULL);
        if (!x->code) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(e, msg, sizeof msg);
            free(x->pattern);
            return lmp_err(LMP_EFORMAT, "%s: regular expression \"%s\" does not compile at offset %d: %s", what,
                           pattern, (int)off, (const char *)msg);
        }
    }
    r->n++;
    return LMP_OK;
}

void lmp_intq_rules_free(lmp_intq_rules *r)
{
    if (!r)
        return;
    for (int i = 0; i < r->n; i++) {
        free(r->r[i].pattern);
        pcre2_code_free(r->r[i].code);
    }
    free(r->r);
    memset(r, 0, sizeof *r);
}

static bool rule_match(const lmp_intq_rule *x, const char *name)
{
    if (x->kind == 0)
        return strcmp(x->pattern, name) == 0;
    if (x->kind == 2)
        return strcmp(x->pattern, "Linear") == 0; /* every module asked about is a linear */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(x->code, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(x->code, (PCRE2_SPTR)name, strlen(name), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

void lmp_intq_rules_resolve(const lmp_intq_rules *r, const lmp_intq_config *base, const char *name,
                            lmp_intq_config *out, bool *skip)
{
    *out = *base;
    *skip = false;
    if (!r || r->n == 0)
        return;
    if (!r->ct) { /* GPTQModel / vLLM: the first matching key decides */
        for (int i = 0; i < r->n; i++)
            if (rule_match(&r->r[i], name)) {
                *skip = r->r[i].skip;
                *out = r->r[i].c;
                return;
            }
        return;
    }
    const lmp_intq_rule *best = NULL;
    for (int i = 0; i < r->n; i++) {
        const lmp_intq_rule *x = &r->r[i];
        if (!rule_match(x, name))
            continue;
        if (x->skip) { /* ignore wins */
            *skip = true;
            return;
        }
        if (!best || x->kind < best->kind)
            best = x;
    }
    if (best)
        *out = best->c;
    else if (r->has_groups)
        *skip = true; /* no group targets it */
}

void lmp_fmt_regex_escape(const char *s, char *buf, size_t n)
{
    size_t k = 0;
    for (; *s && k + 2 < n; s++) {
        if (strchr(".^$*+?()[]{}|\\", *s))
            buf[k++] = '\\';
        buf[k++] = *s;
    }
    if (n)
        buf[k < n ? k : n - 1] = 0;
}
