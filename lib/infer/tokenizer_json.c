/*
 * tokenizer.json (as the Hugging Face `tokenizers` library writes it) into an
 * lmp_tokenizer, and lmp_tokenizer_load, which picks the reader from the path (folder,
 * tokenizer.json, .gguf). Every component this engine does not implement is refused with
 * LMP_EUNSUPPORTED naming it; nothing is approximated.
 *
 * Not here: the engine (tokenizer.c), GGUF (tokenizer_gguf.c).
 */
#include "tokenizer_internal.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *get(const cJSON *o, const char *k)
{
    return cJSON_GetObjectItemCaseSensitive(o, k);
}

static bool get_bool(const cJSON *o, const char *k, bool dflt)
{
    const cJSON *v = get(o, k);
    if (cJSON_IsBool(v))
        return cJSON_IsTrue(v);
    return dflt;
}

/* A string member, or NULL (absent/null/not a string). */
static const char *get_str(const cJSON *o, const char *k)
{
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *type_of(const cJSON *o)
{
    const char *t = get_str(o, "type");
    return t ? t : "";
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s);
    char *r = malloc(n + 1);
    if (r)
        memcpy(r, s, n + 1);
    return r;
}

/* {"String": s} or {"Regex": r}: *is_regex tells which. */
static int get_pattern(lmp_tokenizer *t, const cJSON *o, const char *what, const char **pat, bool *is_regex)
{
    const cJSON *p = get(o, "pattern");
    const char *s;
    if ((s = get_str(p, "String"))) {
        *pat = s;
        *is_regex = false;
        return 0;
    }
    if ((s = get_str(p, "Regex"))) {
        *pat = s;
        *is_regex = true;
        return 0;
    }
    return lmp_err(LMP_EFORMAT, "%s: %s has no pattern {\"String\"|\"Regex\": ...}", t->name, what);
}

/* A single-character string (Metaspace replacement, Strip content) as UTF-8. */
static int get_char(lmp_tokenizer *t, const cJSON *o, const char *k, const char *dflt, char *out, int *out_len,
                    const char *what)
{
    const char *s = get_str(o, k);
    if (!s)
        s = dflt;
    if (!s)
        return lmp_err(LMP_EFORMAT, "%s: %s needs \"%s\"", t->name, what, k);
    size_t n = strlen(s);
    uint32_t cp;
    if (n == 0 || n > 4 || (size_t)tk_utf8_next((const unsigned char *)s, n, &cp) != n || cp == 0xFFFFFFFFu)
        return lmp_err(LMP_EFORMAT, "%s: %s \"%s\" must be one character", t->name, what, k);
    memcpy(out, s, n);
    *out_len = (int)n;
    return 0;
}

static int prepend_scheme(lmp_tokenizer *t, const cJSON *o, const char *what, int *out)
{
    const char *ps = get_str(o, "prepend_scheme");
    const cJSON *aps = get(o, "add_prefix_space");
    *out = TK_PS_ALWAYS;
    if (ps) {
        if (!strcmp(ps, "always"))
            *out = TK_PS_ALWAYS;
        else if (!strcmp(ps, "first"))
            *out = TK_PS_FIRST;
        else if (!strcmp(ps, "never"))
            *out = TK_PS_NEVER;
        else
            return lmp_err(LMP_EFORMAT, "%s: %s: unknown prepend_scheme \"%s\"", t->name, what, ps);
    }
    if (cJSON_IsFalse(aps)) {
        if (ps && *out != TK_PS_NEVER)
            return lmp_err(LMP_EFORMAT, "%s: %s: add_prefix_space does not match prepend_scheme", t->name, what);
        *out = TK_PS_NEVER;
    }
    return 0;
}

/* ---------------------------------------------------------------- components ------- */

static int parse_normalizer(lmp_tokenizer *t, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return lmp_err(LMP_EFORMAT, "%s: \"normalizer\" is not an object", t->name);
    const char *ty = type_of(o);
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = get(o, "normalizers"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err(LMP_EFORMAT, "%s: Sequence normalizer without \"normalizers\"", t->name);
        cJSON_ArrayForEach(it, arr) if ((rc = parse_normalizer(t, it))) return rc;
        return 0;
    }
    if (!strcmp(ty, "Prepend")) {
        const char *p = get_str(o, "prepend");
        if (!p)
            return lmp_err(LMP_EFORMAT, "%s: Prepend normalizer without \"prepend\"", t->name);
        tk_norm *n = tk_add_norm(t);
        if (!n || !(n->pat = xstrdup(p)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        n->type = TK_N_PREPEND;
        n->pat_len = strlen(p);
        return 0;
    }
    if (!strcmp(ty, "Replace")) {
        const char *pat, *content = get_str(o, "content");
        bool rx;
        if ((rc = get_pattern(t, o, "Replace normalizer", &pat, &rx)))
            return rc;
        if (!content)
            return lmp_err(LMP_EFORMAT, "%s: Replace normalizer without \"content\"", t->name);
        tk_norm *n = tk_add_norm(t);
        if (!n || !(n->pat = xstrdup(pat)) || !(n->content = xstrdup(content)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        n->type = TK_N_REPLACE;
        n->pat_len = strlen(pat);
        n->content_len = strlen(content);
        if (rx && (rc = tk_regex(&n->re, pat, strlen(pat), t->name, true)))
            return rc;
        return 0;
    }
    if (!strcmp(ty, "NFC") || !strcmp(ty, "NFKC")) {
        tk_norm *n = tk_add_norm(t);
        if (!n)
            return LMP_ENOMEM;
        n->type = ty[2] == 'K' ? TK_N_NFKC : TK_N_NFC;
        return 0;
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: normalizer \"%s\" is not supported (supported: Sequence, Prepend, "
                                     "Replace, NFC, NFKC)", t->name, ty);
}

static int parse_pretok(lmp_tokenizer *t, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return lmp_err(LMP_EFORMAT, "%s: \"pre_tokenizer\" is not an object", t->name);
    const char *ty = type_of(o);
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = get(o, "pretokenizers"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err(LMP_EFORMAT, "%s: Sequence pre-tokenizer without \"pretokenizers\"", t->name);
        cJSON_ArrayForEach(it, arr) if ((rc = parse_pretok(t, it))) return rc;
        return 0;
    }
    if (!strcmp(ty, "Split")) {
        const char *pat, *beh = get_str(o, "behavior");
        bool rx;
        if ((rc = get_pattern(t, o, "Split pre-tokenizer", &pat, &rx)))
            return rc;
        static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};
        int b = -1;
        for (int i = 0; i < 5; i++)
            if (beh && !strcmp(beh, names[i]))
                b = i;
        if (b < 0)
            return lmp_err(LMP_EFORMAT, "%s: Split pre-tokenizer: unknown behavior \"%s\"", t->name, beh ? beh : "(none)");
        tk_pre *p = tk_add_pre(t);
        if (!p || !(p->lit = xstrdup(pat)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        p->type = TK_P_SPLIT;
        p->lit_len = strlen(pat);
        p->lit_is_regex = rx;
        p->behavior = b;
        p->invert = get_bool(o, "invert", false);
        if (rx && (rc = tk_regex(&p->re, pat, strlen(pat), t->name, true)))
            return rc;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel")) {
        tk_pre *p = tk_add_pre(t);
        if (!p)
            return LMP_ENOMEM;
        p->type = TK_P_BYTELEVEL;
        p->add_prefix_space = get_bool(o, "add_prefix_space", true);
        p->use_regex = get_bool(o, "use_regex", true);
        if (p->use_regex && (rc = tk_regex(&p->re, tk_gpt2_regex, strlen(tk_gpt2_regex), t->name, true)))
            return rc;
        return 0;
    }
    if (!strcmp(ty, "Metaspace")) {
        tk_pre *p = tk_add_pre(t);
        if (!p)
            return LMP_ENOMEM;
        p->type = TK_P_METASPACE;
        if ((rc = get_char(t, o, "replacement", "\xE2\x96\x81", p->repl, &p->repl_len, "Metaspace")) ||
            (rc = prepend_scheme(t, o, "Metaspace", &p->prepend_scheme)))
            return rc;
        p->split = get_bool(o, "split", true);
        return 0;
    }
    if (!strcmp(ty, "Digits")) {
        tk_pre *p = tk_add_pre(t);
        if (!p)
            return LMP_ENOMEM;
        p->type = TK_P_DIGITS;
        p->individual = get_bool(o, "individual_digits", false);
        return tk_regex(&p->re, "\\p{N}", 5, t->name, false);
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, "
                                     "ByteLevel, Metaspace, Digits)", t->name, ty);
}

static int parse_decoder(lmp_tokenizer *t, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return lmp_err(LMP_EFORMAT, "%s: \"decoder\" is not an object", t->name);
    const char *ty = type_of(o);
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = get(o, "decoders"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err(LMP_EFORMAT, "%s: Sequence decoder without \"decoders\"", t->name);
        t->has_decoder = true;
        cJSON_ArrayForEach(it, arr) if ((rc = parse_decoder(t, it))) return rc;
        return 0;
    }
    tk_dec *d;
    if (!strcmp(ty, "ByteLevel") || !strcmp(ty, "ByteFallback") || !strcmp(ty, "Fuse")) {
        if (!(d = tk_add_dec(t)))
            return LMP_ENOMEM;
        d->type = ty[4] == 'L' ? TK_D_BYTELEVEL : ty[0] == 'F' ? TK_D_FUSE : TK_D_BYTEFALLBACK;
        return 0;
    }
    if (!strcmp(ty, "Metaspace")) {
        if (!(d = tk_add_dec(t)))
            return LMP_ENOMEM;
        d->type = TK_D_METASPACE;
        if ((rc = get_char(t, o, "replacement", "\xE2\x96\x81", d->repl, &d->repl_len, "Metaspace decoder")))
            return rc;
        return prepend_scheme(t, o, "Metaspace decoder", &d->prepend_scheme);
    }
    if (!strcmp(ty, "Replace")) {
        const char *pat, *content = get_str(o, "content");
        bool rx;
        if ((rc = get_pattern(t, o, "Replace decoder", &pat, &rx)))
            return rc;
        if (rx)
            return lmp_err(LMP_EUNSUPPORTED, "%s: Replace decoder with a Regex pattern is not supported", t->name);
        if (!content)
            return lmp_err(LMP_EFORMAT, "%s: Replace decoder without \"content\"", t->name);
        if (!(d = tk_add_dec(t)) || !(d->pat = xstrdup(pat)) || !(d->content = xstrdup(content)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        d->type = TK_D_REPLACE;
        d->pat_len = strlen(pat);
        d->content_len = strlen(content);
        return 0;
    }
    if (!strcmp(ty, "Strip")) {
        char ch[8];
        int n;
        if ((rc = get_char(t, o, "content", NULL, ch, &n, "Strip decoder")))
            return rc;
        const cJSON *st = get(o, "start"), *sp = get(o, "stop");
        if (!cJSON_IsNumber(st) || !cJSON_IsNumber(sp) || st->valuedouble < 0 || sp->valuedouble < 0)
            return lmp_err(LMP_EFORMAT, "%s: Strip decoder needs non-negative \"start\" and \"stop\"", t->name);
        if (!(d = tk_add_dec(t)) || !(d->content = malloc((size_t)n + 1)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        memcpy(d->content, ch, (size_t)n);
        d->content[n] = 0;
        d->content_len = (size_t)n;
        d->type = TK_D_STRIP;
        d->start = st->valueint;
        d->stop = sp->valueint;
        return 0;
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: decoder \"%s\" is not supported (supported: Sequence, ByteLevel, "
                                     "Metaspace, Replace, ByteFallback, Fuse, Strip)", t->name, ty);
}

static int push_ids(lmp_tokenizer *t, int32_t **arr, int *n, const cJSON *ids)
{
    const cJSON *it;
    cJSON_ArrayForEach(it, ids)
    {
        if (!cJSON_IsNumber(it) || it->valuedouble != floor(it->valuedouble) || it->valuedouble < 0 ||
            it->valuedouble >= 2147483647.0)
            return lmp_err(LMP_EFORMAT, "%s: post-processor special token id is not a non-negative integer", t->name);
        int32_t *na = realloc(*arr, sizeof(int32_t) * (size_t)(*n + 1));
        if (!na)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        *arr = na;
        na[(*n)++] = (int32_t)it->valuedouble;
    }
    return 0;
}

static int parse_post(lmp_tokenizer *t, const cJSON *o)
{
    if (!o || cJSON_IsNull(o))
        return 0;
    if (!cJSON_IsObject(o))
        return lmp_err(LMP_EFORMAT, "%s: \"post_processor\" is not an object", t->name);
    const char *ty = type_of(o);
    int rc;
    if (!strcmp(ty, "Sequence")) {
        const cJSON *arr = get(o, "processors"), *it;
        if (!cJSON_IsArray(arr))
            return lmp_err(LMP_EFORMAT, "%s: Sequence post-processor without \"processors\"", t->name);
        cJSON_ArrayForEach(it, arr) if ((rc = parse_post(t, it))) return rc;
        return 0;
    }
    if (!strcmp(ty, "ByteLevel"))
        return 0; /* offsets only */
    if (!strcmp(ty, "TemplateProcessing")) {
        const cJSON *single = get(o, "single"), *sp = get(o, "special_tokens"), *it;
        if (!cJSON_IsArray(single))
            return lmp_err(LMP_EFORMAT, "%s: TemplateProcessing without \"single\"", t->name);
        free(t->prefix);
        free(t->suffix);
        t->prefix = t->suffix = NULL;
        t->n_prefix = t->n_suffix = 0;
        bool seen_seq = false;
        cJSON_ArrayForEach(it, single)
        {
            const cJSON *st = get(it, "SpecialToken"), *sq = get(it, "Sequence");
            if (sq) {
                if (seen_seq)
                    return lmp_err(LMP_EFORMAT, "%s: TemplateProcessing single template has two sequences", t->name);
                seen_seq = true;
                continue;
            }
            const char *name = get_str(st, "id");
            if (!name)
                return lmp_err(LMP_EFORMAT, "%s: TemplateProcessing piece is neither SpecialToken nor Sequence", t->name);
            const cJSON *spt = get(sp, name), *ids = get(spt, "ids");
            if (!cJSON_IsArray(ids))
                return lmp_err(LMP_EFORMAT, "%s: TemplateProcessing: special token \"%s\" has no ids", t->name, name);
            if ((rc = seen_seq ? push_ids(t, &t->suffix, &t->n_suffix, ids) : push_ids(t, &t->prefix, &t->n_prefix, ids)))
                return rc;
        }
        return 0;
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: post-processor \"%s\" is not supported (supported: TemplateProcessing, "
                                     "ByteLevel, Sequence)", t->name, ty);
}

/* ---------------------------------------------------------------- model ------------ */

static int grow_vocab(lmp_tokenizer *t, int32_t n)
{
    if (n <= t->n_vocab)
        return 0;
    tk_str *p = realloc(t->pieces, sizeof(tk_str) * (size_t)n);
    if (!p)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    t->pieces = p;
    uint8_t *ty = realloc(t->ttype, (size_t)n);
    if (!ty)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    t->ttype = ty;
    for (int32_t i = t->n_vocab; i < n; i++) {
        p[i] = (tk_str){NULL, 0};
        ty[i] = TK_T_UNUSED;
    }
    t->n_vocab = n;
    return 0;
}

static int json_id(lmp_tokenizer *t, const cJSON *v, const char *what, const char *key, int32_t *id)
{
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble >= 16777216.0)
        return lmp_err(LMP_EFORMAT, "%s: %s \"%s\": id is not a non-negative integer", t->name, what, key);
    *id = (int32_t)v->valuedouble;
    return 0;
}

static int parse_model(lmp_tokenizer *t, const cJSON *m)
{
    int rc;
    if (!cJSON_IsObject(m))
        return lmp_err(LMP_EFORMAT, "%s: no \"model\" object", t->name);
    const char *ty = get_str(m, "type");
    if (!ty && !get(m, "merges"))
        return lmp_err(LMP_EUNSUPPORTED, "%s: model without a type and without merges (only BPE is supported)", t->name);
    if (ty && strcmp(ty, "BPE"))
        return lmp_err(LMP_EUNSUPPORTED, "%s: model type \"%s\" is not supported (only BPE)", t->name, ty);
    const cJSON *vocab = get(m, "vocab"), *merges = get(m, "merges"), *it;
    if (!cJSON_IsObject(vocab))
        return lmp_err(LMP_EFORMAT, "%s: BPE model without a \"vocab\" object", t->name);
    if (!cJSON_IsArray(merges))
        return lmp_err(LMP_EFORMAT, "%s: BPE model without a \"merges\" array", t->name);
    const cJSON *dropout = get(m, "dropout");
    if (cJSON_IsNumber(dropout) && dropout->valuedouble > 0)
        return lmp_err(LMP_EUNSUPPORTED, "%s: BPE dropout %g is not supported (encoding would be random)", t->name,
                       dropout->valuedouble);
    const char *csp = get_str(m, "continuing_subword_prefix"), *ews = get_str(m, "end_of_word_suffix");
    if ((csp && *csp) || (ews && *ews))
        return lmp_err(LMP_EUNSUPPORTED, "%s: BPE continuing_subword_prefix/end_of_word_suffix is not supported", t->name);

    int32_t maxid = -1, count = 0;
    cJSON_ArrayForEach(it, vocab)
    {
        int32_t id;
        if ((rc = json_id(t, it, "vocab entry", it->string, &id)))
            return rc;
        if (!lmp_utf8_valid(it->string, strlen(it->string)))
            return lmp_err(LMP_EFORMAT, "%s: vocab entry %d is not valid UTF-8", t->name, (int)id);
        if (id > maxid)
            maxid = id;
        count++;
    }
    /* ids index the embedding rows: a vocabulary is dense, not a few ids spread up to 2^24 */
    if (maxid >= 2 * count + 1024)
        return lmp_err(LMP_EFORMAT, "%s: vocab has %d entries but ids up to %d", t->name, (int)count, (int)maxid);
    if ((rc = grow_vocab(t, maxid + 1)))
        return rc;
    t->n_model = maxid + 1;
    cJSON_ArrayForEach(it, vocab)
    {
        int32_t id = (int32_t)it->valuedouble;
        if (t->pieces[id].s)
            return lmp_err(LMP_EFORMAT, "%s: vocab: id %d is given to both \"%s\" and \"%s\"", t->name, (int)id,
                           t->pieces[id].s, it->string);
        t->pieces[id] = tk_str_dup(it->string, strlen(it->string));
        if (!t->pieces[id].s)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        t->ttype[id] = TK_T_NORMAL;
    }
    if ((rc = tk_strmap_build(&t->vocab, t->pieces, t->n_model, t->name)))
        return rc;

    int n = cJSON_GetArraySize(merges), k = 0;
    t->merge_list = malloc(sizeof *t->merge_list * (size_t)(n ? n : 1));
    if (!t->merge_list)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    cJSON_ArrayForEach(it, merges)
    {
        const char *a, *b;
        size_t la, lb;
        if (cJSON_IsString(it)) {
            const char *s = it->valuestring, *sp = strchr(s, ' ');
            if (!strncmp(s, "#version", 8))
                continue;
            if (!sp || strchr(sp + 1, ' '))
                return lmp_err(LMP_EFORMAT, "%s: merge %d \"%s\" is not two tokens separated by one space", t->name,
                               k + 1, s);
            a = s;
            la = (size_t)(sp - s);
            b = sp + 1;
            lb = strlen(b);
        } else if (cJSON_IsArray(it) && cJSON_GetArraySize(it) == 2 && cJSON_IsString(cJSON_GetArrayItem(it, 0)) &&
                   cJSON_IsString(cJSON_GetArrayItem(it, 1))) {
            a = cJSON_GetArrayItem(it, 0)->valuestring;
            b = cJSON_GetArrayItem(it, 1)->valuestring;
            la = strlen(a);
            lb = strlen(b);
        } else {
            return lmp_err(LMP_EFORMAT, "%s: merge %d is neither \"a b\" nor [\"a\", \"b\"]", t->name, k + 1);
        }
        int32_t ia = tk_strmap_get(&t->vocab, a, la), ib = tk_strmap_get(&t->vocab, b, lb);
        if (ia < 0 || ib < 0)
            return lmp_err(LMP_EFORMAT, "%s: merge %d names token \"%.*s\" which is not in the vocabulary", t->name,
                           k + 1, ia < 0 ? (int)la : (int)lb, ia < 0 ? a : b);
        t->merge_list[k][0] = ia;
        t->merge_list[k][1] = ib;
        k++;
    }
    t->n_merges = k;
    t->byte_fallback = get_bool(m, "byte_fallback", false);
    t->fuse_unk = get_bool(m, "fuse_unk", false);
    t->ignore_merges = get_bool(m, "ignore_merges", false);
    t->unk_id = -1;
    const char *unk = get_str(m, "unk_token");
    if (unk) {
        t->unk_id = tk_strmap_get(&t->vocab, unk, strlen(unk));
        if (t->unk_id < 0)
            return lmp_err(LMP_EFORMAT, "%s: unk_token \"%s\" is not in the vocabulary", t->name, unk);
        t->ttype[t->unk_id] = TK_T_UNKNOWN;
    }
    return 0;
}

static int parse_added(lmp_tokenizer *t, const cJSON *arr)
{
    const cJSON *it;
    int rc;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return lmp_err(LMP_EFORMAT, "%s: \"added_tokens\" is not an array", t->name);
    int n = cJSON_GetArraySize(arr);
    t->added = calloc((size_t)(n ? n : 1), sizeof(tk_added));
    if (!t->added)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    cJSON_ArrayForEach(it, arr)
    {
        const char *content = get_str(it, "content");
        int32_t id;
        if (!content)
            return lmp_err(LMP_EFORMAT, "%s: added token without \"content\"", t->name);
        if ((rc = json_id(t, get(it, "id"), "added token", content, &id)))
            return rc;
        if (!lmp_utf8_valid(content, strlen(content)) || !*content)
            return lmp_err(LMP_EFORMAT, "%s: added token %d is empty or not valid UTF-8", t->name, (int)id);
        if (id >= t->n_vocab + 2 * n + 1024)
            return lmp_err(LMP_EFORMAT, "%s: added token \"%s\" has id %d, far past the vocabulary (%d entries)",
                           t->name, content, (int)id, t->n_vocab);
        /* a special token the model's vocabulary also holds must keep that id: another one
         * would feed the model a different row for <s> */
        int32_t vid = t->vocab.slot ? tk_strmap_get(&t->vocab, content, strlen(content)) : -1;
        if (vid >= 0 && vid != id)
            return lmp_err(LMP_EFORMAT, "%s: added token \"%s\" has id %d but the vocabulary gives it id %d", t->name,
                           content, (int)id, (int)vid);
        if (id < t->n_model && t->pieces[id].s && vid < 0)
            return lmp_err(LMP_EFORMAT, "%s: added token \"%s\" has id %d, which the vocabulary gives to \"%.*s\"",
                           t->name, content, (int)id, (int)t->pieces[id].len, t->pieces[id].s);
        tk_added *a = &t->added[t->n_added++];
        a->id = id;
        a->content = tk_str_dup(content, strlen(content));
        if (!a->content.s)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        a->special = get_bool(it, "special", false);
        a->normalized = get_bool(it, "normalized", !a->special);
        a->lstrip = get_bool(it, "lstrip", false);
        a->rstrip = get_bool(it, "rstrip", false);
        a->single_word = get_bool(it, "single_word", false);
        if ((rc = grow_vocab(t, id + 1)))
            return rc;
        if (!t->pieces[id].s) {
            t->pieces[id] = tk_str_dup(content, strlen(content));
            if (!t->pieces[id].s)
                return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        }
        t->ttype[id] = a->special ? TK_T_CONTROL : TK_T_USER;
    }
    return 0;
}

static int32_t find_token(const lmp_tokenizer *t, const char *s)
{
    size_t n = strlen(s);
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].content.len == n && !memcmp(t->added[k].content.s, s, n))
            return t->added[k].id;
    return tk_strmap_get(&t->vocab, s, n);
}

int lmp_tokenizer_from_json(lmp_tokenizer **tokp, const char *json, size_t len, const char *name)
{
    int rc = 0;
    cJSON *root = NULL;
    lmp_tokenizer *t = calloc(1, sizeof *t);
    *tokp = NULL;
    if (!t || !(t->name = xstrdup(name ? name : "tokenizer.json"))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto cleanup;
    }
    t->bos = t->eos = t->pad = t->unk_id = -1;
    if (memmem(json, len, "\\u0000", 6)) { /* cJSON would cut the string there */
        rc = lmp_err(LMP_EFORMAT, "%s: a string holds a NUL character (\\u0000)", t->name);
        goto cleanup;
    }
    root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t at = ep && ep >= json && ep <= json + len ? (size_t)(ep - json) : 0;
        rc = lmp_err(LMP_EFORMAT, "%s: invalid JSON (near byte %zu)", t->name, at);
        goto cleanup;
    }
    if (!cJSON_IsObject(root)) {
        rc = lmp_err(LMP_EFORMAT, "%s: not a JSON object", t->name);
        goto cleanup;
    }
    t->model = TK_MODEL_MERGES;
    if ((rc = parse_model(t, get(root, "model"))) || (rc = parse_added(t, get(root, "added_tokens"))) ||
        (rc = parse_normalizer(t, get(root, "normalizer"))) || (rc = parse_pretok(t, get(root, "pre_tokenizer"))) ||
        (rc = parse_post(t, get(root, "post_processor"))) || (rc = parse_decoder(t, get(root, "decoder"))))
        goto cleanup;
    for (int k = 0; k < t->n_pres; k++) {
        if (t->pres[k].type != TK_P_BYTELEVEL)
            continue;
        if (k != t->n_pres - 1) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: a pre-tokenizer after ByteLevel is not supported", t->name);
            goto cleanup;
        }
        t->byte_level = true;
    }
    if (t->byte_fallback)
        for (int32_t i = 0; i < t->n_model; i++)
            if (t->pieces[i].s && t->pieces[i].len == 6 && !strncmp(t->pieces[i].s, "<0x", 3) &&
                t->pieces[i].s[5] == '>' && t->ttype[i] == TK_T_NORMAL)
                t->ttype[i] = TK_T_BYTE;
    t->sanitize_utf8 = t->byte_level || !t->byte_fallback;
    for (int i = 0; i < t->n_prefix; i++)
        if (t->prefix[i] >= t->n_vocab) {
            rc = lmp_err(LMP_EFORMAT, "%s: post-processor token id %d is beyond the vocabulary", t->name, (int)t->prefix[i]);
            goto cleanup;
        }
    for (int i = 0; i < t->n_suffix; i++)
        if (t->suffix[i] >= t->n_vocab) {
            rc = lmp_err(LMP_EFORMAT, "%s: post-processor token id %d is beyond the vocabulary", t->name, (int)t->suffix[i]);
            goto cleanup;
        }
    if (t->n_prefix)
        t->bos = t->prefix[0];
    if (t->n_suffix)
        t->eos = t->suffix[t->n_suffix - 1];
    if ((rc = tk_finalize(t)))
        goto cleanup;
    *tokp = t;
    t = NULL;
cleanup:
    cJSON_Delete(root);
    lmp_tokenizer_free(t);
    return rc;
}

/* tokenizer_config.json: bos/eos/pad token names (string or {"content": ...}). */
static void apply_config(lmp_tokenizer *t, const char *path)
{
    char *txt = NULL;
    size_t len;
    if (lmp_read_file(path, &txt, &len) != 0)
        return; /* optional file */
    cJSON *root = cJSON_ParseWithLength(txt, len);
    static const char *keys[] = {"bos_token", "eos_token", "pad_token"};
    int32_t *dst[] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3 && root; k++) {
        const cJSON *v = get(root, keys[k]);
        const char *s = cJSON_IsString(v) ? v->valuestring : get_str(v, "content");
        if (s) {
            int32_t id = find_token(t, s);
            if (id >= 0)
                *dst[k] = id;
        }
    }
    cJSON_Delete(root);
    free(txt);
}

int lmp_tokenizer_load(lmp_tokenizer **tok, const char *path)
{
    int rc;
    *tok = NULL;
    if (lmp_str_endswith(path, ".gguf")) {
        lmp_gguf_reader r = {0};
        if ((rc = lmp_gguf_open(&r, path)))
            return rc;
        rc = lmp_tokenizer_from_gguf(tok, &r);
        lmp_gguf_close(&r);
        return rc;
    }
    char *json_path = NULL, *cfg_path = NULL, *txt = NULL;
    size_t len;
    if (lmp_path_is_dir(path)) {
        json_path = lmp_path_join(path, "tokenizer.json");
        cfg_path = lmp_path_join(path, "tokenizer_config.json");
    } else {
        json_path = xstrdup(path);
        const char *slash = strrchr(path, '/');
        if (slash) {
            size_t dl = (size_t)(slash - path);
            cfg_path = malloc(dl + 32);
            if (cfg_path)
                snprintf(cfg_path, dl + 32, "%.*s/tokenizer_config.json", (int)dl, path);
        } else {
            cfg_path = xstrdup("tokenizer_config.json");
        }
    }
    if (!json_path || !cfg_path) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (lmp_path_is_dir(path) && !lmp_path_exists(json_path)) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: no tokenizer.json in this folder", path);
        goto cleanup;
    }
    if ((rc = lmp_read_file(json_path, &txt, &len)))
        goto cleanup;
    if ((rc = lmp_tokenizer_from_json(tok, txt, len, json_path)))
        goto cleanup;
    apply_config(*tok, cfg_path);
cleanup:
    free(txt);
    free(json_path);
    free(cfg_path);
    return rc;
}
