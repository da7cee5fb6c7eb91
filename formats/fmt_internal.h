/*
 * Helpers shared by the integer-group layout files (fmt_gptq.c, fmt_awq.c, fmt_ct.c) and
 * the table (fmt_table.c); defined in fmt_common.c, which calls nothing else in formats/.
 * Not installed, not for other callers.
 */
#ifndef LMP_FMT_INTERNAL_H
#define LMP_FMT_INTERNAL_H

#include "formats/packing.h"

/* `t` present (else LMP_ENOTFOUND), dtype `dt` (-1: any), `ndim` dims, shape[i] (-1: any),
 * byte size consistent; messages name `fmt` and `name`. */
int lmp_fmt_check_tensor(const lmp_tensor *t, const char *fmt, const char *name, int dt,
                         int ndim, const int64_t *shape);
/* Element i of an F16/BF16/F32 tensor as f32. */
float lmp_fmt_scale_at(const lmp_tensor *t, int64_t i);
bool lmp_fmt_scale_dtype_ok(const lmp_tensor *t);

/* quantization_config fields. json_int: absent or null gives def; a non-integer is
 * LMP_EFORMAT naming the key. json_bool: def unless a JSON boolean. json_str: NULL unless
 * a string. */
int lmp_fmt_json_int(const cJSON *o, const char *key, int def, int *out);
bool lmp_fmt_json_bool(const cJSON *o, const char *key, bool def);
const char *lmp_fmt_json_str(const cJSON *o, const char *key);

/* Mixed configs (packing.h): appends a rule (kind 0 exact, 1 regex compiled anchored at
 * the start, 2 class name); a regex that does not compile is LMP_EFORMAT naming `what`. */
int lmp_fmt_rule_add(lmp_intq_rules *r, const char *pattern, int kind, bool skip, const lmp_intq_config *c,
                     const char *what);
/* s with the regex metacharacters escaped, into buf (n bytes; truncated). */
void lmp_fmt_regex_escape(const char *s, char *buf, size_t n);

#endif
