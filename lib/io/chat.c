/*
 * Chat-template families and their renderers (chat.h).
 */
#include "chat.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const g_names[] = {"none", "chatml", "llama3", "llama2", "zephyr", "phi3", "gemma", "unknown"};

lmp_chat_family lmp_chat_family_of(const char *j)
{
    if (!j || !*j)
        return LMP_CHAT_NONE;
    if (strstr(j, "<|im_start|>"))
        return LMP_CHAT_CHATML;
    if (strstr(j, "<|start_header_id|>"))
        return LMP_CHAT_LLAMA3;
    if (strstr(j, "<start_of_turn>"))
        return LMP_CHAT_GEMMA;
    if (strstr(j, "<|user|>") && strstr(j, "<|end|>"))
        return LMP_CHAT_PHI3;
    if (strstr(j, "<|user|>"))
        return LMP_CHAT_ZEPHYR;
    if (strstr(j, "[INST]"))
        return LMP_CHAT_LLAMA2;
    return LMP_CHAT_UNKNOWN;
}

const char *lmp_chat_family_name(lmp_chat_family f)
{
    return (unsigned)f <= LMP_CHAT_UNKNOWN ? g_names[f] : "?";
}

char *lmp_chat_template_of_dir(const char *dir)
{
    char *p = lmp_path_join(dir, "tokenizer_config.json"), *txt = NULL, *out = NULL;
    if (!p || lmp_read_file(p, &txt, NULL) != 0) {
        free(p);
        return NULL;
    }
    free(p);
    cJSON *root = cJSON_Parse(txt);
    free(txt);
    const cJSON *ct = root ? cJSON_GetObjectItemCaseSensitive(root, "chat_template") : NULL;
    if (cJSON_IsString(ct)) {
        out = strdup(ct->valuestring);
    } else if (cJSON_IsArray(ct)) {
        const cJSON *e;
        cJSON_ArrayForEach(e, ct)
        {
            const cJSON *n = cJSON_GetObjectItemCaseSensitive(e, "name");
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(e, "template");
            if (cJSON_IsString(n) && cJSON_IsString(t) && strcmp(n->valuestring, "default") == 0 && !out)
                out = strdup(t->valuestring);
        }
    }
    cJSON_Delete(root);
    return out;
}

typedef struct {
    char *s;
    size_t n, cap;
    int rc;
} sbuf;

static void add(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add(sbuf *b, const char *fmt, ...)
{
    if (b->rc)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
        b->rc = LMP_EINVAL;
        return;
    }
    if (b->n + (size_t)k + 1 > b->cap) {
        size_t c = (b->cap + (size_t)k + 1) * 2;
        char *ns = realloc(b->s, c);
        if (!ns) {
            b->rc = lmp_err(LMP_ENOMEM, "out of memory");
            return;
        }
        b->s = ns;
        b->cap = c;
    }
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

int lmp_chat_render(lmp_chat_family f, const lmp_chat_msg *m, int n, char **out)
{
    *out = NULL;
    if (f == LMP_CHAT_NONE || f >= LMP_CHAT_UNKNOWN)
        return lmp_err(LMP_EUNSUPPORTED, "chat template family %s cannot be rendered (supported: %s)",
                       lmp_chat_family_name(f), LMP_CHAT_SUPPORTED);
    sbuf b = {0};
    add(&b, "%s", "");
    const char *sys = NULL;
    for (int i = 0; i < n; i++) {
        const char *r = m[i].role, *c = m[i].content;
        bool is_sys = strcmp(r, "system") == 0, is_user = strcmp(r, "user") == 0;
        switch (f) {
        case LMP_CHAT_CHATML: add(&b, "<|im_start|>%s\n%s<|im_end|>\n", r, c); break;
        case LMP_CHAT_LLAMA3: add(&b, "<|start_header_id|>%s<|end_header_id|>\n\n%s<|eot_id|>", r, c); break;
        case LMP_CHAT_ZEPHYR: add(&b, "<|%s|>\n%s</s>\n", r, c); break;
        case LMP_CHAT_PHI3: add(&b, "<|%s|>\n%s<|end|>\n", r, c); break;
        case LMP_CHAT_LLAMA2: /* the system prompt goes into the first [INST] */
            if (is_sys)
                sys = c;
            else if (is_user && sys) {
                add(&b, "[INST] <<SYS>>\n%s\n<</SYS>>\n\n%s [/INST]", sys, c);
                sys = NULL;
            } else if (is_user)
                add(&b, "[INST] %s [/INST]", c);
            else
                add(&b, " %s</s>", c);
            break;
        case LMP_CHAT_GEMMA: /* no system role: it opens the first user turn */
            if (is_sys)
                sys = c;
            else if (is_user && sys) {
                add(&b, "<start_of_turn>user\n%s\n\n%s<end_of_turn>\n", sys, c);
                sys = NULL;
            } else
                add(&b, "<start_of_turn>%s\n%s<end_of_turn>\n", is_user ? "user" : "model", c);
            break;
        default: break;
        }
    }
    if (b.rc) {
        free(b.s);
        return b.rc;
    }
    *out = b.s;
    return LMP_OK;
}
