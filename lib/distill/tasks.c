/*
 * Task accuracy by log-likelihood (tasks.h): the task-file readers and the scorer.
 *
 * Each item becomes one token sequence per choice. The sequences of one item are fed
 * through one session: their longest common prefix once, then, after rewinding the
 * session to the end of that prefix, the rest of each sequence (lmp_session_rewind), so
 * the context's KV cache is computed once per item and shared by its choices. Which
 * tokens form a sequence and which of them are scored is the protocol's business
 * (docs/tasks.md):
 *   lm-eval   lm-evaluation-harness HFLM loglikelihood: context and context+continuation
 *             tokenized separately (no BOS unless add_bos), the continuation's tokens are
 *             those of the joint encoding after the context's; inputs longer than the
 *             model's length cut from the left; acc = argmax of the summed log-probs,
 *             acc_norm = argmax of the sum over the choice's length in characters.
 *   llamacpp  llama-perplexity: each choice tokenized whole with BOS; HellaSwag and
 *             multiple-choice score the mean log-prob of every token after the common
 *             prefix of all choices; WinoGrande its partial rule (tokens after
 *             context+option when every choice has more than 3 tokens after the common
 *             prefix, the last token left out, the "wrong first logits" of its second
 *             choice reproduced) and its tie rule.
 * Log-probabilities are log-softmax in f32 with the sum of exponentials in double
 * (lmp_nll), accumulated in double.
 */
#include "tasks.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CHOICES 100 /* llama.cpp's limit for the binary format */
#define FEED_CHUNK 64   /* positions whose logits are held at once */

/* ---------------------------------------------------------------- names ----------- */

const char *lmp_task_protocol_name(lmp_task_protocol p)
{
    return p == LMP_TASK_LLAMACPP ? "llamacpp" : p == LMP_TASK_LMEVAL ? "lm-eval" : "?";
}

int lmp_task_protocol_from_name(const char *name)
{
    if (strcmp(name, "lm-eval") == 0 || strcmp(name, "lmeval") == 0)
        return LMP_TASK_LMEVAL;
    if (strcmp(name, "llamacpp") == 0 || strcmp(name, "llama.cpp") == 0)
        return LMP_TASK_LLAMACPP;
    return -1;
}

lmp_task_params lmp_task_default_params(void)
{
    lmp_task_params p;
    memset(&p, 0, sizeof p);
    p.protocol = LMP_TASK_LMEVAL;
    p.seed = 1;
    return p;
}

int lmp_task_check(const lmp_task_params *p)
{
    if ((unsigned)p->protocol > LMP_TASK_LLAMACPP)
        return lmp_err(LMP_EINVAL, "--protocol: unknown protocol %d (lm-eval, llamacpp)", (int)p->protocol);
    if (p->limit < 0 || p->limit > 1 << 30)
        return lmp_err(LMP_EINVAL, "--limit %d: must be >= 0 (0 = every item)", p->limit);
    if (p->ctx < 0 || p->ctx > 1 << 22)
        return lmp_err(LMP_EINVAL, "--ctx %d: must be >= 0 (0 = the default), at most %d", p->ctx, 1 << 22);
    return LMP_OK;
}

double lmp_task_stderr01(double p, int n)
{
    return n < 2 ? 0 : sqrt(p * (1 - p) / (double)(n - 1));
}

void lmp_task_subset(int n, int limit, uint64_t seed, int *idx)
{
    int k = limit < n ? limit : n;
    int *perm = malloc(sizeof(int) * (size_t)(n > 0 ? n : 1));
    if (!perm) { /* fall back to the first k: never reached in practice */
        for (int i = 0; i < k; i++)
            idx[i] = i;
        return;
    }
    for (int i = 0; i < n; i++)
        perm[i] = i;
    lmp_rng r;
    lmp_rng_seed(&r, seed);
    for (int i = 0; i < k; i++) {
        int j = i + (int)(lmp_rng_next(&r) % (uint64_t)(n - i));
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    /* ascending order: a counting pass over the chosen marks */
    unsigned char *mark = calloc((size_t)(n > 0 ? n : 1), 1);
    if (mark) {
        for (int i = 0; i < k; i++)
            mark[perm[i]] = 1;
        for (int i = 0, o = 0; i < n; i++)
            if (mark[i])
                idx[o++] = i;
        free(mark);
    } else {
        memcpy(idx, perm, sizeof(int) * (size_t)k);
    }
    free(perm);
}

/* ---------------------------------------------------------------- items ----------- */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static char *cat2(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    char *d = malloc(na + nb + 1);
    if (d) {
        memcpy(d, a, na);
        memcpy(d + na, b, nb + 1);
    }
    return d;
}

static void item_free(lmp_task_item *it)
{
    for (int i = 0; i < it->n_choices; i++) {
        /* CHOICE items share one context string, PARTIAL items one continuation */
        if (it->ctx && it->ctx[i] && (i == 0 || it->ctx[i] != it->ctx[0]))
            free(it->ctx[i]);
        if (it->cont && it->cont[i] && (i == 0 || it->cont[i] != it->cont[0]))
            free(it->cont[i]);
        if (it->norm && it->norm[i])
            free(it->norm[i]);
    }
    free(it->ctx);
    free(it->cont);
    free(it->norm);
    free(it->correct);
    free(it->lc_tail);
    memset(it, 0, sizeof *it);
}

void lmp_task_free(lmp_task_set *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n_items; i++)
        item_free(&t->items[i]);
    free(t->items);
    free(t->path);
    free(t);
}

static int item_alloc(lmp_task_item *it, int n)
{
    it->n_choices = n;
    it->ctx = calloc((size_t)n, sizeof(char *));
    it->cont = calloc((size_t)n, sizeof(char *));
    it->norm = calloc((size_t)n, sizeof(char *));
    it->correct = calloc((size_t)n, 1);
    if (!it->ctx || !it->cont || !it->norm || !it->correct)
        return lmp_err(LMP_ENOMEM, "out of memory");
    return 0;
}

/* CHOICE item: one context, continuations " " + choice (lm-eval's target delimiter,
 * llama.cpp's " " between question and answer). ctx is taken over. */
static int item_choice(lmp_task_item *it, char *ctx, const char *const *choices, int n)
{
    int rc = item_alloc(it, n);
    if (rc) {
        free(ctx);
        return rc;
    }
    for (int i = 0; i < n; i++) {
        it->ctx[i] = ctx;
        it->cont[i] = cat2(" ", choices[i]);
        it->norm[i] = xstrdup(choices[i]);
        if (!it->cont[i] || !it->norm[i])
            return lmp_err(LMP_ENOMEM, "out of memory");
    }
    return 0;
}

/* PARTIAL item: contexts (taken as given), one continuation " " + cont. */
static int item_partial(lmp_task_item *it, const char *const *ctxs, int n, const char *cont)
{
    int rc = item_alloc(it, n);
    if (rc)
        return rc;
    char *c = cat2(" ", cont);
    if (!c)
        return lmp_err(LMP_ENOMEM, "out of memory");
    for (int i = 0; i < n; i++) {
        it->ctx[i] = xstrdup(ctxs[i]);
        it->cont[i] = c;
        it->norm[i] = xstrdup(ctxs[i]);
        if (!it->ctx[i] || !it->norm[i])
            return lmp_err(LMP_ENOMEM, "out of memory");
    }
    return 0;
}

char *lmp_task_query_context(const char *query)
{
    if (strncmp(query, "Question:", 9) != 0)
        return xstrdup(query);
    size_t n = strlen(query);
    if (n >= 7 && strcmp(query + n - 7, "Answer:") == 0)
        return xstrdup(query);
    return cat2(query, n && query[n - 1] == '\n' ? "Answer:" : "\nAnswer:");
}

/* ---------------------------------------------------------------- readers --------- */

typedef struct {
    lmp_task_set *t;
    int cap;
} builder;

static lmp_task_item *push(builder *b, int line)
{
    if (b->t->n_items == b->cap) {
        int nc = b->cap ? 2 * b->cap : 256;
        lmp_task_item *ni = realloc(b->t->items, sizeof *ni * (size_t)nc);
        if (!ni)
            return NULL;
        b->t->items = ni;
        b->cap = nc;
    }
    lmp_task_item *it = &b->t->items[b->t->n_items++];
    memset(it, 0, sizeof *it);
    it->line = line;
    return it;
}

static const char *kind_fields(lmp_task_kind k)
{
    return k == LMP_TASK_CHOICE    ? "query/choices/gold"
           : k == LMP_TASK_PARTIAL ? "context_options/continuation/gold"
                                   : "context/continuation";
}

/* Strings of a JSON array field, checked: present, an array of non-empty strings. */
static int json_strings(const char *path, int line, const cJSON *o, const char *key,
                        const char **out, int *n)
{
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!a)
        return lmp_err(LMP_EFORMAT, "%s:%d: item without '%s'", path, line, key);
    if (!cJSON_IsArray(a))
        return lmp_err(LMP_EFORMAT, "%s:%d: '%s' is not an array", path, line, key);
    int k = cJSON_GetArraySize(a);
    if (k == 0)
        return lmp_err(LMP_EFORMAT, "%s:%d: item without choices ('%s' is empty)", path, line, key);
    if (k > MAX_CHOICES)
        return lmp_err(LMP_EFORMAT, "%s:%d: %d choices (at most %d)", path, line, k, MAX_CHOICES);
    int i = 0;
    for (const cJSON *e = a->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e))
            return lmp_err(LMP_EFORMAT, "%s:%d: '%s'[%d] is not a string", path, line, key, i);
        if (!e->valuestring[0])
            return lmp_err(LMP_EFORMAT, "%s:%d: '%s'[%d] is empty", path, line, key, i);
        out[i] = e->valuestring;
    }
    *n = k;
    return 0;
}

static int json_string(const char *path, int line, const cJSON *o, const char *key, const char **s)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v)
        return lmp_err(LMP_EFORMAT, "%s:%d: item without '%s'", path, line, key);
    if (!cJSON_IsString(v))
        return lmp_err(LMP_EFORMAT, "%s:%d: '%s' is not a string", path, line, key);
    *s = v->valuestring;
    return 0;
}

static int json_gold(const char *path, int line, const cJSON *o, int n, int *gold)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "gold");
    if (!v)
        return lmp_err(LMP_EFORMAT, "%s:%d: item without 'gold'", path, line);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble))
        return lmp_err(LMP_EFORMAT, "%s:%d: 'gold' is not an integer", path, line);
    if (v->valuedouble < 0 || v->valuedouble >= n)
        return lmp_err(LMP_EFORMAT, "%s:%d: gold index %.0f out of range (the item has %d choices)",
                       path, line, v->valuedouble, n);
    *gold = (int)v->valuedouble;
    return 0;
}

static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isspace((unsigned char)s[i]))
            return false;
    return true;
}

static int read_jsonl(builder *b, const char *path, const char *text, size_t len)
{
    int line = 0, rc = 0;
    bool have_kind = false;
    const char *vals[MAX_CHOICES];
    for (size_t off = 0; off < len && !rc;) {
        const char *s = text + off, *e = memchr(s, '\n', len - off);
        size_t n = e ? (size_t)(e - s) : len - off;
        off += n + 1;
        line++;
        if (blank(s, n))
            continue;
        cJSON *o = cJSON_ParseWithLength(s, n);
        if (!o || !cJSON_IsObject(o)) {
            const char *ep = cJSON_GetErrorPtr();
            int col = ep && ep >= s && ep <= s + n ? (int)(ep - s) + 1 : 0;
            cJSON_Delete(o);
            if (col)
                return lmp_err(LMP_EFORMAT, "%s:%d: malformed JSON (column %d)", path, line, col);
            return lmp_err(LMP_EFORMAT, "%s:%d: malformed JSON (not one object per line)", path, line);
        }
        lmp_task_kind k = cJSON_GetObjectItemCaseSensitive(o, "context_options") ? LMP_TASK_PARTIAL
                          : cJSON_GetObjectItemCaseSensitive(o, "choices") ||
                                  cJSON_GetObjectItemCaseSensitive(o, "query")
                              ? LMP_TASK_CHOICE
                          : cJSON_GetObjectItemCaseSensitive(o, "context") ? LMP_TASK_COMPLETION
                                                                           : (lmp_task_kind)-1;
        if ((int)k < 0) {
            cJSON_Delete(o);
            return lmp_err(LMP_EFORMAT,
                           "%s:%d: unknown item: expected the fields query/choices/gold, "
                           "context_options/continuation/gold or context/continuation",
                           path, line);
        }
        if (!have_kind) {
            b->t->kind = k;
            have_kind = true;
        } else if (k != b->t->kind) {
            cJSON_Delete(o);
            return lmp_err(LMP_EFORMAT, "%s:%d: a %s item in a file of %s items", path, line,
                           kind_fields(k), kind_fields(b->t->kind));
        }
        lmp_task_item *it = push(b, line);
        if (!it) {
            cJSON_Delete(o);
            return lmp_err(LMP_ENOMEM, "out of memory");
        }
        int nc = 0, gold = 0;
        const char *q = NULL, *c = NULL;
        if (k == LMP_TASK_CHOICE) {
            if (!(rc = json_string(path, line, o, "query", &q)) &&
                !(rc = json_strings(path, line, o, "choices", vals, &nc)) &&
                !(rc = json_gold(path, line, o, nc, &gold))) {
                char *ctx = lmp_task_query_context(q);
                rc = ctx ? item_choice(it, ctx, vals, nc) : lmp_err(LMP_ENOMEM, "out of memory");
            }
        } else if (k == LMP_TASK_PARTIAL) {
            if (!(rc = json_strings(path, line, o, "context_options", vals, &nc)) &&
                !(rc = json_string(path, line, o, "continuation", &c)) &&
                !(rc = json_gold(path, line, o, nc, &gold)))
                rc = item_partial(it, vals, nc, c);
        } else {
            if (!(rc = json_string(path, line, o, "context", &q)) &&
                !(rc = json_string(path, line, o, "continuation", &c))) {
                if (!c[0])
                    rc = lmp_err(LMP_EFORMAT, "%s:%d: 'continuation' is empty", path, line);
                else {
                    char *ctx = xstrdup(q);
                    rc = ctx ? item_choice(it, ctx, &c, 1) : lmp_err(LMP_ENOMEM, "out of memory");
                }
            }
        }
        if (!rc) {
            it->gold = gold;
            it->correct[gold] = 1;
        }
        cJSON_Delete(o);
    }
    return rc;
}

/* llama.cpp's HellaSwag layout: context, gold index (0-3), four endings. */
static int read_hellaswag(builder *b, const char *path, const char *text, size_t len)
{
    int nl = 0;
    for (size_t i = 0; i < len; i++)
        nl += text[i] == '\n';
    if (len && text[len - 1] != '\n')
        nl++; /* a last line without its newline */
    if (nl % 6 != 0)
        return lmp_err(LMP_EFORMAT,
                       "%s: %d lines, not a multiple of 6 (llama.cpp's HellaSwag layout: a context, "
                       "the gold index, four endings)",
                       path, nl);
    b->t->kind = LMP_TASK_CHOICE;
    const char *lines[6];
    size_t lens[6];
    size_t off = 0;
    int rc = 0;
    for (int item = 0; item < nl / 6 && !rc; item++) {
        for (int k = 0; k < 6; k++) {
            const char *s = text + off, *e = memchr(s, '\n', len - off);
            lens[k] = e ? (size_t)(e - s) : len - off;
            lines[k] = s;
            off += lens[k] + 1;
        }
        int line = item * 6 + 1;
        char gbuf[16];
        size_t gl = lens[1] < sizeof gbuf - 1 ? lens[1] : sizeof gbuf - 1;
        memcpy(gbuf, lines[1], gl);
        gbuf[gl] = 0;
        char *end;
        errno = 0;
        long g = strtol(gbuf, &end, 10);
        while (*end == ' ' || *end == '\r' || *end == '\t')
            end++;
        if (end == gbuf || *end || errno || g < 0 || g > 3)
            return lmp_err(LMP_EFORMAT, "%s:%d: gold index '%s' is not 0, 1, 2 or 3", path, line + 1,
                           gbuf);
        char *strs[5];
        for (int k = 0; k < 5; k++) {
            int li = k == 0 ? 0 : k + 1;
            strs[k] = malloc(lens[li] + 1);
            if (strs[k]) {
                memcpy(strs[k], lines[li], lens[li]);
                strs[k][lens[li]] = 0;
            }
        }
        lmp_task_item *it = push(b, line);
        if (!it || !strs[0] || !strs[1] || !strs[2] || !strs[3] || !strs[4])
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        for (int k = 1; k < 5 && !rc; k++)
            if (!strs[k][0])
                rc = lmp_err(LMP_EFORMAT, "%s:%d: ending %d is empty", path, line + 1 + k, k - 1);
        if (!rc) {
            rc = item_choice(it, strs[0], (const char *const *)(strs + 1), 4);
            strs[0] = NULL;
            it->gold = (int)g;
            if (!rc)
                it->correct[g] = 1;
        }
        for (int k = 0; k < 5; k++)
            free(strs[k]);
    }
    return rc;
}

/* llama.cpp's WinoGrande CSV: index,sentence,option1,option2,answer(1|2); the first four
 * commas outside double quotes separate the fields; a quoted sentence loses its quotes;
 * the sentence holds '_' where an option goes. An optional header line (first field not
 * a number) is skipped. */
static int read_wino_csv(builder *b, const char *path, const char *text, size_t len)
{
    b->t->kind = LMP_TASK_PARTIAL;
    int line = 0, rc = 0;
    for (size_t off = 0; off < len && !rc;) {
        const char *s = text + off, *e = memchr(s, '\n', len - off);
        size_t n = e ? (size_t)(e - s) : len - off;
        off += n + 1;
        line++;
        if (blank(s, n))
            continue;
        size_t cp[4];
        int ip = 0;
        bool q = false;
        for (size_t i = 0; i < n && ip < 4; i++) {
            if (!q) {
                if (s[i] == ',')
                    cp[ip++] = i;
                else if (s[i] == '"')
                    q = true;
            } else if (s[i] == '"') {
                q = false;
            }
        }
        size_t f0 = ip > 0 ? cp[0] : n;
        bool numeric = f0 > 0;
        for (size_t i = 0; i < f0; i++)
            if (!isdigit((unsigned char)s[i]))
                numeric = false;
        if (line == 1 && !numeric)
            continue; /* header */
        if (ip != 4)
            return lmp_err(LMP_EFORMAT,
                           "%s:%d: expected 5 comma-separated fields (index,sentence,option1,option2,answer)",
                           path, line);
        size_t s0 = cp[0] + 1, s1 = cp[1];
        if (s[s0] == '"' && s1 >= s0 + 2) { /* llama.cpp: substr(c0 + 2, c1 - c0 - 3) */
            s0++;
            s1--;
        }
        char *sent = strndup(s + s0, s1 - s0);
        char *o1 = strndup(s + cp[1] + 1, cp[2] - cp[1] - 1);
        char *o2 = strndup(s + cp[2] + 1, cp[3] - cp[2] - 1);
        char *ans = strndup(s + cp[3] + 1, n - cp[3] - 1);
        char *blank_at = sent ? strchr(sent, '_') : NULL;
        char *end = NULL;
        long a = ans ? strtol(ans, &end, 10) : 0;
        if (!sent || !o1 || !o2 || !ans)
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        else if (!blank_at)
            rc = lmp_err(LMP_EFORMAT, "%s:%d: the sentence has no '_' for the options", path, line);
        else if (end == ans || (a != 1 && a != 2))
            rc = lmp_err(LMP_EFORMAT, "%s:%d: answer '%s' is not 1 or 2", path, line, ans);
        else if (!o1[0] || !o2[0])
            rc = lmp_err(LMP_EFORMAT, "%s:%d: an empty option", path, line);
        if (!rc) {
            *blank_at = 0;
            const char *tail = blank_at + 1;
            char *c1 = cat2(sent, o1), *c2 = cat2(sent, o2);
            /* lm-eval's partial_target: the sentence after the blank, stripped */
            const char *ts = tail;
            while (isspace((unsigned char)*ts))
                ts++;
            size_t tl = strlen(ts);
            while (tl && isspace((unsigned char)ts[tl - 1]))
                tl--;
            char *stripped = strndup(ts, tl);
            lmp_task_item *it = push(b, line);
            const char *ctxs[2] = {c1, c2};
            if (!c1 || !c2 || !stripped || !it)
                rc = lmp_err(LMP_ENOMEM, "out of memory");
            else if (!(rc = item_partial(it, ctxs, 2, stripped))) {
                it->lc_tail = xstrdup(tail);
                it->gold = (int)a - 1;
                it->correct[a - 1] = 1;
                if (!it->lc_tail)
                    rc = lmp_err(LMP_ENOMEM, "out of memory");
            }
            free(c1);
            free(c2);
            free(stripped);
        }
        free(sent);
        free(o1);
        free(o2);
        free(ans);
    }
    return rc;
}

/* llama.cpp's --multiple-choice binary: u32 n_tasks, u32 offsets[n_tasks], then per task
 * a string (u32 length + bytes) question and two answer sets (u32 n <= 100, n strings,
 * n i32 labels): mc1 (one correct answer, label 1) is scored, mc2 is read and ignored. */
typedef struct {
    const unsigned char *p;
    size_t n, off;
} rd;

static bool rd_u32(rd *r, uint32_t *v)
{
    if (r->n - r->off < 4)
        return false;
    memcpy(v, r->p + r->off, 4);
    r->off += 4;
    return true;
}

static bool rd_str(rd *r, char **s)
{
    uint32_t l;
    if (!rd_u32(r, &l) || r->n - r->off < l)
        return false;
    if (s) {
        *s = strndup((const char *)r->p + r->off, l);
        if (!*s)
            return false;
    }
    r->off += l;
    return true;
}

static int read_mc_binary(builder *b, const char *path, const char *text, size_t len)
{
    b->t->kind = LMP_TASK_CHOICE;
    rd r = {(const unsigned char *)text, len, 0};
    uint32_t nt;
    if (!rd_u32(&r, &nt) || nt == 0)
        return lmp_err(LMP_EFORMAT, "%s: no tasks (multiple-choice binary: the first u32 is the task count)",
                       path);
    if ((uint64_t)nt * 4 > len - 4)
        return lmp_err(LMP_EFORMAT, "%s: %u tasks announced but the file has only %zu bytes", path, nt, len);
    r.off += (size_t)nt * 4; /* offsets: tasks are read in order, as llama.cpp does for all */
    int rc = 0;
    for (uint32_t t = 0; t < nt && !rc; t++) {
        char *q = NULL, *ans[MAX_CHOICES] = {0};
        int32_t lab[MAX_CHOICES];
        uint32_t na = 0, n2 = 0;
        int rec = (int)t + 1;
        if (!rd_str(&r, &q) || !rd_u32(&r, &na)) {
            free(q);
            return lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated (at byte %zu)", path, rec, nt, r.off);
        }
        if (na == 0 || na > MAX_CHOICES)
            rc = lmp_err(LMP_EFORMAT, "%s: task %d: %u answers (1 to %d)", path, rec, na, MAX_CHOICES);
        for (uint32_t i = 0; i < na && !rc; i++)
            if (!rd_str(&r, &ans[i]))
                rc = lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated (at byte %zu)", path, rec, nt, r.off);
        if (!rc && (len - r.off < (size_t)na * 4))
            rc = lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated labels", path, rec, nt);
        if (!rc) {
            memcpy(lab, text + r.off, (size_t)na * 4);
            r.off += (size_t)na * 4;
            /* mc2: skipped */
            if (!rd_u32(&r, &n2) || n2 > MAX_CHOICES)
                rc = lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated or bad second answer set", path, rec, nt);
            for (uint32_t i = 0; i < n2 && !rc; i++)
                if (!rd_str(&r, NULL))
                    rc = lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated", path, rec, nt);
            if (!rc && len - r.off < (size_t)n2 * 4)
                rc = lmp_err(LMP_EFORMAT, "%s: task %d of %u: truncated labels", path, rec, nt);
            r.off += rc ? 0 : (size_t)n2 * 4;
        }
        if (!rc && !q[0])
            rc = lmp_err(LMP_EFORMAT, "%s: task %d: empty question", path, rec);
        for (uint32_t i = 0; i < na && !rc; i++)
            if (!ans[i][0])
                rc = lmp_err(LMP_EFORMAT, "%s: task %d: answer %u is empty", path, rec, i);
        int gold = -1;
        for (uint32_t i = 0; i < na && !rc; i++)
            if (lab[i] == 1 && gold < 0)
                gold = (int)i;
        if (!rc && gold < 0)
            rc = lmp_err(LMP_EFORMAT, "%s: task %d: no answer is labelled correct (1)", path, rec);
        if (!rc) {
            lmp_task_item *it = push(b, rec);
            if (!it)
                rc = lmp_err(LMP_ENOMEM, "out of memory");
            else if (!(rc = item_choice(it, q, (const char *const *)ans, (int)na))) {
                q = NULL;
                it->gold = gold;
                for (uint32_t i = 0; i < na; i++)
                    it->correct[i] = lab[i] == 1;
            } else {
                q = NULL;
            }
        }
        free(q);
        for (uint32_t i = 0; i < na && i < MAX_CHOICES; i++)
            free(ans[i]);
    }
    return rc;
}

int lmp_task_load(const char *path, lmp_task_set **out)
{
    *out = NULL;
    char *text = NULL;
    size_t len = 0;
    int rc = lmp_read_file(path, &text, &len);
    if (rc)
        return rc;
    lmp_task_set *t = calloc(1, sizeof *t);
    builder b = {t, 0};
    if (!t || !(t->path = xstrdup(path))) {
        free(text);
        lmp_task_free(t);
        return lmp_err(LMP_ENOMEM, "out of memory");
    }
    size_t k = 0;
    while (k < len && isspace((unsigned char)text[k]))
        k++;
    if (k == len) {
        rc = lmp_err(LMP_EINVAL, "%s: empty task file (no items)", path);
    } else if (lmp_str_endswith(path, ".bin")) {
        t->format = "mc-binary";
        rc = read_mc_binary(&b, path, text, len);
    } else if (text[k] == '{' || lmp_str_endswith(path, ".jsonl") || lmp_str_endswith(path, ".json")) {
        t->format = "jsonl";
        rc = read_jsonl(&b, path, text, len);
    } else if (memchr(text, 0, len)) {
        t->format = "mc-binary";
        rc = read_mc_binary(&b, path, text, len);
    } else if (lmp_str_endswith(path, ".csv")) {
        t->format = "winogrande-csv";
        rc = read_wino_csv(&b, path, text, len);
    } else {
        t->format = "hellaswag-txt";
        rc = read_hellaswag(&b, path, text, len);
    }
    free(text);
    if (!rc && t->n_items == 0)
        rc = lmp_err(LMP_EINVAL, "%s: empty task file (no items)", path);
    if (rc) {
        lmp_task_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

/* ---------------------------------------------------------------- scorer ---------- */

typedef struct {
    const lmp_model *m;
    lmp_session *s;
    int64_t V;
    int n_ctx;
    float *buf;  /* [FEED_CHUNK][V] */
    float *plog; /* [V] logits at the last position of the shared prefix */
    float *alt;  /* [V] logits kept by keep_last */
    int64_t fed, saved;
} scorer;

/* One sequence of a group: tokens tok[0..n); tokens [from, to) are scored, each by the
 * logits of the position before it. */
typedef struct {
    int32_t *tok;
    int n, from, to;
    bool keep_last;      /* feed all n tokens and keep the logits of position n-1 in alt */
    bool first_from_alt; /* score token `from` with alt (llama.cpp WinoGrande's 2nd choice) */
    double sum;
    int count;
    bool greedy;
} seqreq;

static void add_token(seqreq *q, const float *logits, int64_t V, int t)
{
    q->sum -= lmp_nll(logits, V, q->tok[t]);
    q->count++;
    if (lmp_argmax(logits, V) != q->tok[t])
        q->greedy = false;
}

/* Scores every sequence of the group, sharing their common prefix. */
static int score_group(scorer *sc, seqreq *q, int k, int line)
{
    int cp = q[0].n, P;
    for (int i = 0; i < k; i++) {
        if (q[i].n > sc->n_ctx)
            return lmp_err(LMP_ERANGE, "item at line %d: a sequence of %d tokens exceeds the context of %d "
                           "(raise --ctx)", line, q[i].n, sc->n_ctx);
        if (q[i].from < 1)
            q[i].from = 1; /* token 0 has no logits before it */
        if (q[i].to > q[i].n)
            q[i].to = q[i].n;
        int c = 0;
        while (c < cp && c < q[i].n && q[i].tok[c] == q[0].tok[c])
            c++;
        cp = c;
        q[i].sum = 0;
        q[i].count = 0;
        q[i].greedy = true;
    }
    P = cp;
    for (int i = 0; i < k; i++)
        if (q[i].from < P)
            P = q[i].from;
    lmp_session_reset(sc->s);
    int rc;
    if (P > 0) {
        if ((rc = lmp_eval(sc->s, q[0].tok, P, sc->plog, false)))
            return rc;
        sc->fed += P;
        sc->saved += (int64_t)(k - 1) * P;
    }
    for (int i = 0; i < k; i++) {
        seqreq *r = &q[i];
        if ((rc = lmp_session_rewind(sc->s, P)))
            return rc;
        int t0 = r->from;
        if (r->first_from_alt && t0 < r->to) {
            add_token(r, sc->alt, sc->V, t0);
            t0++;
        }
        if (t0 < r->to && t0 - 1 == P - 1) {
            add_token(r, sc->plog, sc->V, t0);
            t0++;
        }
        /* positions P .. end-1 are fed; their logits score tokens P+1 .. end */
        int end = r->keep_last ? r->n : r->to - 1;
        if (r->keep_last && r->n == P) /* the sequence is all prefix: its last logits are P-1's */
            memcpy(sc->alt, sc->plog, sizeof(float) * (size_t)sc->V);
        for (int a = P; a < end; a += FEED_CHUNK) {
            int c = end - a < FEED_CHUNK ? end - a : FEED_CHUNK;
            if ((rc = lmp_eval(sc->s, r->tok + a, c, sc->buf, true)))
                return rc;
            sc->fed += c;
            for (int t = t0 > a + 1 ? t0 : a + 1; t <= a + c && t < r->to; t++)
                add_token(r, sc->buf + (int64_t)(t - 1 - a) * sc->V, sc->V, t);
            if (r->keep_last && a + c == r->n)
                memcpy(sc->alt, sc->buf + (int64_t)(c - 1) * sc->V, sizeof(float) * (size_t)sc->V);
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- protocols ------- */

static int tokenize(const lmp_model *m, const char *s, bool bos, int32_t **ids, int64_t *n)
{
    return lmp_model_tokenize(m, s, strlen(s), bos, ids, n);
}

/* Unicode characters (code points) of UTF-8 text: Python's len(). */
static int64_t n_chars(const char *s)
{
    int64_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* lm-eval: one (context, continuation) request as HFLM builds it. */
static int lmeval_request(const lmp_model *m, const char *ctx, const char *cont, bool bos, int max_len,
                          seqreq *q)
{
    size_t nc = strlen(ctx), sp = 0;
    while (sp < nc && isspace((unsigned char)ctx[nc - 1 - sp]))
        sp++;
    /* trailing whitespace of the context moves to the continuation */
    char *c2 = strndup(ctx, nc - sp), *k2 = cat2(ctx + nc - sp, cont), *whole = NULL;
    int32_t *wi = NULL, *ci = NULL;
    int64_t wn = 0, cn = 0;
    int rc = 0;
    if (!c2 || !k2 || !(whole = cat2(c2, k2))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if (!c2[0]) { /* empty context: lm-eval's prefix token (BOS, else EOS) */
        int pre = lmp_model_bos(m) >= 0 ? lmp_model_bos(m) : lmp_model_eos(m);
        if (pre < 0) {
            rc = lmp_err(LMP_EUNSUPPORTED, "empty context and the model has neither BOS nor EOS");
            goto done;
        }
        if ((rc = tokenize(m, k2, bos, &wi, &wn)))
            goto done;
        int32_t *t = malloc(sizeof(int32_t) * (size_t)(wn + 1));
        if (!t) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        t[0] = pre;
        memcpy(t + 1, wi, sizeof(int32_t) * (size_t)wn);
        free(wi);
        wi = t;
        cn = 1;
        wn += 1;
    } else {
        if ((rc = tokenize(m, whole, bos, &wi, &wn)) || (rc = tokenize(m, c2, bos, &ci, &cn)))
            goto done;
        /* context_enc + whole[len(context_enc):] */
        if (cn > wn)
            cn = wn;
        memcpy(wi, ci, sizeof(int32_t) * (size_t)cn);
    }
    int64_t ncont = wn - cn, start = wn - (int64_t)(max_len + 1) > 0 ? wn - (int64_t)(max_len + 1) : 0;
    q->n = (int)(wn - start);
    q->tok = malloc(sizeof(int32_t) * (size_t)(q->n > 0 ? q->n : 1));
    if (!q->tok) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    memcpy(q->tok, wi + start, sizeof(int32_t) * (size_t)q->n);
    q->from = (int)(q->n - ncont);
    q->to = q->n;
done:
    free(c2);
    free(k2);
    free(whole);
    free(wi);
    free(ci);
    return rc;
}

/* Index of the largest score (first on ties; last when last_on_tie). */
static int argmax_d(const double *v, int n, bool last_on_tie)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[b] || (last_on_tie && v[i] == v[b]))
            b = i;
    return b;
}

static void free_reqs(seqreq *q, int k)
{
    for (int i = 0; i < k; i++) {
        free(q[i].tok);
        q[i].tok = NULL;
    }
}

static int eval_item(scorer *sc, const lmp_task_set *t, const lmp_task_item *it, const lmp_task_params *p,
                     int max_len, lmp_task_item_result *res)
{
    const lmp_model *m = sc->m;
    const int k = it->n_choices;
    seqreq q[MAX_CHOICES];
    memset(q, 0, sizeof(seqreq) * (size_t)k);
    int rc = 0;
    bool wino_lc = false;
    if (p->protocol == LMP_TASK_LMEVAL) {
        for (int i = 0; i < k && !rc; i++)
            rc = lmeval_request(m, it->ctx[i], it->cont[i], p->add_bos, max_len, &q[i]);
    } else if (t->kind != LMP_TASK_PARTIAL) {
        /* llama.cpp HellaSwag / multiple-choice: tokenize(context + " " + answer, BOS);
         * scored: every token after the common prefix of all choices. LAMBADA (no
         * llama.cpp mode): the tokens after those of the context. */
        int64_t n;
        for (int i = 0; i < k && !rc; i++) {
            char *s = cat2(it->ctx[i], it->cont[i]);
            rc = s ? tokenize(m, s, true, &q[i].tok, &n) : lmp_err(LMP_ENOMEM, "out of memory");
            free(s);
            q[i].n = (int)n;
            q[i].to = (int)n;
        }
        if (!rc && t->kind == LMP_TASK_COMPLETION) {
            int32_t *ci = NULL;
            int64_t cn = 0;
            if (!(rc = tokenize(m, it->ctx[0], true, &ci, &cn)))
                q[0].from = (int)cn;
            free(ci);
        } else if (!rc) {
            int cp = q[0].n;
            for (int i = 1; i < k; i++) {
                int c = 0;
                while (c < cp && c < q[i].n && q[i].tok[c] == q[0].tok[c])
                    c++;
                cp = c;
            }
            for (int i = 0; i < k; i++)
                q[i].from = cp;
        }
    } else {
        /* llama.cpp WinoGrande: first + option + second tokenized with BOS; n_base =
         * tokens of first + option. */
        wino_lc = true;
        const char *tail = it->lc_tail ? it->lc_tail : it->cont[0];
        int nb[MAX_CHOICES];
        int64_t n;
        for (int i = 0; i < k && !rc; i++) {
            char *s = cat2(it->ctx[i], tail);
            int32_t *bi = NULL;
            rc = s ? tokenize(m, s, true, &q[i].tok, &n) : lmp_err(LMP_ENOMEM, "out of memory");
            q[i].n = (int)n;
            free(s);
            if (!rc && !(rc = tokenize(m, it->ctx[i], true, &bi, &n)))
                nb[i] = (int)n;
            free(bi);
        }
        if (!rc) {
            int cp = q[0].n;
            for (int i = 1; i < k; i++) {
                int c = 0;
                while (c < cp && c < q[i].n && q[i].tok[c] == q[0].tok[c])
                    c++;
                cp = c;
            }
            bool skip = true;
            for (int i = 0; i < k; i++)
                skip = skip && q[i].n - cp > 3;
            for (int i = 0; i < k; i++) {
                int base = skip ? nb[i] : cp;
                int last = q[i].n - base > 1 ? 1 : 0;
                q[i].from = base;
                q[i].to = q[i].n - last;
            }
            /* llama.cpp's "wrong first logits" (its FIXME): the second choice's logits are
             * read at index (n_0 - cp) + (j + 1 - cp) of a batch holding the last shared
             * position, then the first choice's positions cp.., then the second's; for
             * j = cp - 1 (the scored tokens start right after the common prefix: always
             * when the option is not skipped, and when the second option's tokens end
             * inside the prefix) that is the first choice's last position. */
            if (k == 2 && q[1].from == cp && cp > 0) {
                q[0].keep_last = true;
                q[1].first_from_alt = true;
            }
        }
    }
    if (!rc)
        rc = score_group(sc, q, k, it->line);
    if (rc) {
        free_reqs(q, k);
        return rc;
    }
    double s[MAX_CHOICES], sn[MAX_CHOICES];
    for (int i = 0; i < k; i++) {
        s[i] = q[i].count > 0 ? q[i].sum : -INFINITY;
        if (p->protocol == LMP_TASK_LMEVAL) {
            int64_t len = n_chars(it->norm[i]);
            sn[i] = s[i] / (double)(len > 0 ? len : 1);
        } else {
            sn[i] = q[i].count > 0 ? q[i].sum / q[i].count : -INFINITY;
        }
        if (i < 16) {
            res->ll[i] = s[i];
            res->ll_norm[i] = sn[i];
            res->n_tokens[i] = q[i].count;
        }
    }
    res->n_choices = k;
    res->gold = it->gold;
    res->line = it->line;
    res->greedy = q[0].greedy && q[0].count > 0;
    if (t->kind == LMP_TASK_COMPLETION) {
        res->pred = res->pred_norm = 0;
        res->acc = res->acc_norm = res->greedy;
    } else {
        res->pred = argmax_d(s, k, wino_lc);
        res->pred_norm = argmax_d(sn, k, wino_lc);
        res->acc = it->correct[res->pred];
        res->acc_norm = it->correct[res->pred_norm];
    }
    free_reqs(q, k);
    return 0;
}

int lmp_task_eval(const lmp_model *m, const lmp_task_set *t, const lmp_task_params *p, lmp_task_result *r)
{
    memset(r, 0, sizeof *r);
    r->kind = t->kind;
    r->acc_norm = r->acc_norm_stderr = r->ppl = r->ppl_stderr = r->chance = NAN;
    if (!lmp_model_tokenizer(m))
        return lmp_err(LMP_EUNSUPPORTED, "the model has no tokenizer: tasks need one");
    if (p->protocol != LMP_TASK_LMEVAL && p->protocol != LMP_TASK_LLAMACPP)
        return lmp_err(LMP_EINVAL, "unknown task protocol %d", (int)p->protocol);
    if (p->limit < 0 || p->ctx < 0)
        return lmp_err(LMP_EINVAL, "limit and ctx must be >= 0");
    const int max_pos = lmp_model_config(m)->max_pos;
    int max_len = p->ctx > 0 ? p->ctx : max_pos > 0 ? max_pos : 2048;
    int n_ctx = p->protocol == LMP_TASK_LMEVAL ? max_len + 1 : (p->ctx > 0 ? p->ctx : 4096);
    int n = p->limit > 0 && p->limit < t->n_items ? p->limit : t->n_items;
    int *idx = malloc(sizeof(int) * (size_t)n);
    scorer sc = {.m = m, .V = lmp_model_n_vocab(m), .n_ctx = n_ctx};
    double *lls = t->kind == LMP_TASK_COMPLETION ? malloc(sizeof(double) * (size_t)n) : NULL;
    int rc = 0;
    if (!idx || (t->kind == LMP_TASK_COMPLETION && !lls)) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    sc.buf = malloc(sizeof(float) * (size_t)sc.V * FEED_CHUNK);
    sc.plog = malloc(sizeof(float) * (size_t)sc.V);
    sc.alt = malloc(sizeof(float) * (size_t)sc.V);
    if (!sc.buf || !sc.plog || !sc.alt) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = lmp_session_new(&sc.s, m, n_ctx)))
        goto done;
    if (n < t->n_items)
        lmp_task_subset(t->n_items, n, p->seed, idx);
    else
        for (int i = 0; i < n; i++)
            idx[i] = i;
    double t0 = lmp_time_s();
    int64_t acc = 0, accn = 0;
    double chance = 0;
    for (int j = 0; j < n; j++) {
        const lmp_task_item *it = &t->items[idx[j]];
        lmp_task_item_result res;
        memset(&res, 0, sizeof res);
        res.index = idx[j];
        if ((rc = eval_item(&sc, t, it, p, max_len, &res))) {
            rc = lmp_err_prefix(rc, "%s", t->path);
            goto done;
        }
        acc += res.acc;
        accn += res.acc_norm;
        int nc = 0;
        for (int i = 0; i < it->n_choices; i++)
            nc += it->correct[i];
        chance += (double)nc / it->n_choices;
        if (lls)
            lls[j] = res.ll[0];
        if (p->on_item)
            p->on_item(p->user, &res);
        if (p->progress)
            p->progress(p->user, j + 1, n);
    }
    r->seconds = lmp_time_s() - t0;
    r->n = n;
    r->acc = (double)acc / n;
    r->acc_stderr = lmp_task_stderr01(r->acc, n);
    r->tokens_fed = sc.fed;
    r->tokens_saved = sc.saved;
    if (t->kind == LMP_TASK_COMPLETION) {
        double s = 0, s2 = 0;
        for (int j = 0; j < n; j++)
            s += lls[j];
        double mean = s / n;
        for (int j = 0; j < n; j++)
            s2 += (lls[j] - mean) * (lls[j] - mean);
        r->ppl = exp(-mean);
        r->ppl_stderr = n > 1 ? r->ppl * sqrt(s2 / (n - 1) / n) : 0;
    } else {
        r->acc_norm = (double)accn / n;
        r->acc_norm_stderr = lmp_task_stderr01(r->acc_norm, n);
        r->chance = chance / n;
    }
done:
    lmp_session_free(sc.s);
    free(sc.buf);
    free(sc.plog);
    free(sc.alt);
    free(idx);
    free(lls);
    return rc;
}
