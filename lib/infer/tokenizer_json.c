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

const char *const tk_behavior_names[5] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous"};

/* "behavior" of Split (required) or Punctuation (default Isolated). */
static int get_behavior(lmp_tokenizer *t, const cJSON *o, const char *what, bool required, int *out)
{
    const char *beh = get_str(o, "behavior");
    if (!beh && !required)
        return 0;
    for (int i = 0; i < 5; i++)
        if (beh && !strcmp(beh, tk_behavior_names[i])) {
            *out = i;
            return 0;
        }
    return lmp_err(LMP_EFORMAT, "%s: %s: unknown behavior \"%s\"", t->name, what, beh ? beh : "(none)");
}

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
        const char *pat;
        bool rx;
        int b;
        if ((rc = get_pattern(t, o, "Split pre-tokenizer", &pat, &rx)) ||
            (rc = get_behavior(t, o, "Split pre-tokenizer", true, &b)))
            return rc;
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
    if (!strcmp(ty, "Punctuation") || !strcmp(ty, "WhitespaceSplit")) {
        bool punct = ty[0] == 'P';
        int b = punct ? TK_B_ISOLATED : TK_B_REMOVED;
        if (punct && (rc = get_behavior(t, o, "Punctuation pre-tokenizer", false, &b)))
            return rc;
        tk_pre *p = tk_add_pre(t);
        if (!p)
            return LMP_ENOMEM;
        p->type = punct ? TK_P_PUNCT : TK_P_WSPLIT;
        p->behavior = b;
        const char *rx = punct ? tk_punct_regex : tk_ws_regex;
        return tk_regex(&p->re, rx, strlen(rx), t->name, false);
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: pre-tokenizer \"%s\" is not supported (supported: Sequence, Split, "
                                     "ByteLevel, Metaspace, Digits, Punctuation, WhitespaceSplit)", t->name, ty);
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
        t->post_kind = TK_POST_TEMPLATE;
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
    if (!strcmp(ty, "RobertaProcessing") || !strcmp(ty, "BertProcessing")) {
        /* single sequence: cls $A sep; "cls"/"sep" are [content, id] */
        int32_t ids[2];
        static const char *keys[] = {"cls", "sep"};
        for (int k = 0; k < 2; k++) {
            const cJSON *v = get(o, keys[k]), *id = cJSON_GetArrayItem(v, 1);
            if (!cJSON_IsArray(v) || !cJSON_IsString(cJSON_GetArrayItem(v, 0)) || !cJSON_IsNumber(id) ||
                id->valuedouble != floor(id->valuedouble) || id->valuedouble < 0 || id->valuedouble >= 2147483647.0)
                return lmp_err(LMP_EFORMAT, "%s: %s needs \"%s\": [token, id]", t->name, ty, keys[k]);
            ids[k] = (int32_t)id->valuedouble;
        }
        free(t->prefix);
        free(t->suffix);
        t->prefix = malloc(sizeof(int32_t));
        t->suffix = malloc(sizeof(int32_t));
        if (!t->prefix || !t->suffix)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        t->prefix[0] = ids[0];
        t->suffix[0] = ids[1];
        t->n_prefix = t->n_suffix = 1;
        t->post_kind = ty[0] == 'R' ? TK_POST_ROBERTA : TK_POST_BERT;
        return 0;
    }
    return lmp_err(LMP_EUNSUPPORTED, "%s: post-processor \"%s\" is not supported (supported: TemplateProcessing, "
                                     "RobertaProcessing, BertProcessing, ByteLevel, Sequence)", t->name, ty);
}

/* ---------------------------------------------------------------- model ------------ */

static int grow_vocab(lmp_tokenizer *t, int32_t n)
{
    if (n <= t->n_vocab)
        return 0;
    /* the vocabulary's hash map points into pieces[]: follow the move (added tokens past
     * the vocabulary grow it after the map is built, and look ids up in it meanwhile) */
    bool follow = t->vocab.slot && t->vocab.strs == t->pieces;
    tk_str *p = realloc(t->pieces, sizeof(tk_str) * (size_t)n);
    if (!p)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    if (follow)
        t->vocab.strs = p;
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

/* Builds from a parsed tokenizer.json tree (root is not freed). */
static int from_tree(lmp_tokenizer **tokp, const cJSON *root, const char *name)
{
    int rc = 0;
    lmp_tokenizer *t = calloc(1, sizeof *t);
    *tokp = NULL;
    if (!t || !(t->name = xstrdup(name ? name : "tokenizer.json"))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto cleanup;
    }
    t->bos = t->eos = t->pad = t->unk_id = -1;
    if (!cJSON_IsObject(root)) {
        rc = lmp_err(LMP_EFORMAT, "%s: not a JSON object", t->name);
        goto cleanup;
    }
    t->model = TK_MODEL_MERGES;
    if ((rc = parse_model(t, get(root, "model"))) || (rc = parse_added(t, get(root, "added_tokens"))) ||
        (rc = parse_normalizer(t, get(root, "normalizer"))) || (rc = parse_pretok(t, get(root, "pre_tokenizer"))) ||
        (rc = parse_post(t, get(root, "post_processor"))) || (rc = parse_decoder(t, get(root, "decoder"))))
        goto cleanup;
    /* steps after ByteLevel see the byte-level alphabet (Falcon: Digits and a Split) */
    for (int k = 0; k < t->n_pres; k++) {
        tk_pre *p = &t->pres[k];
        if (t->byte_level) {
            if (p->type == TK_P_BYTELEVEL || p->type == TK_P_METASPACE) {
                rc = lmp_err(LMP_EUNSUPPORTED, "%s: a %s pre-tokenizer after ByteLevel is not supported", t->name,
                             p->type == TK_P_BYTELEVEL ? "second ByteLevel" : "Metaspace");
                goto cleanup;
            }
            p->mapped = true;
        }
        if (p->type == TK_P_BYTELEVEL)
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
    lmp_tokenizer_free(t);
    return rc;
}

int lmp_tokenizer_from_json(lmp_tokenizer **tokp, const char *json, size_t len, const char *name)
{
    *tokp = NULL;
    const char *nm = name ? name : "tokenizer.json";
    if (memmem(json, len, "\\u0000", 6)) /* cJSON would cut the string there */
        return lmp_err(LMP_EFORMAT, "%s: a string holds a NUL character (\\u0000)", nm);
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!root) {
        const char *ep = cJSON_GetErrorPtr();
        size_t at = ep && ep >= json && ep <= json + len ? (size_t)(ep - json) : 0;
        return lmp_err(LMP_EFORMAT, "%s: invalid JSON (near byte %zu)", nm, at);
    }
    int rc = from_tree(tokp, root, nm);
    cJSON_Delete(root);
    return rc;
}

/* ---------------------------------------------------------------- folder files ----- */

/* Chat templates: tokenizer_config.json "chat_template" (a string, or a list of
 * {"name", "template"} where "default" is the main one), else chat_template.jinja, else
 * chat_template.json {"chat_template": ...} in the folder (gguf-py's order). Names are
 * kept as written; the GGUF writer filters them as gguf-py does. */
static int take_templates(lmp_tokenizer *t, const cJSON *v, const char *from)
{
    if (cJSON_IsString(v)) {
        free(t->chat_template);
        return (t->chat_template = xstrdup(v->valuestring)) ? 0 : lmp_err(LMP_ENOMEM, "out of memory");
    }
    if (!cJSON_IsArray(v)) {
        if (v && !cJSON_IsNull(v))
            lmp_warn("%s: \"chat_template\" is neither a string nor a list: ignored", from);
        return 0;
    }
    const cJSON *it;
    cJSON_ArrayForEach(it, v)
    {
        const char *nm = get_str(it, "name"), *tx = get_str(it, "template");
        if (!nm || !tx || !*nm) {
            lmp_warn("%s: a \"chat_template\" list entry without \"name\" or \"template\" is ignored", from);
            continue;
        }
        if (!strcmp(nm, "default")) {
            free(t->chat_template);
            if (!(t->chat_template = xstrdup(tx)))
                return lmp_err(LMP_ENOMEM, "out of memory");
            continue;
        }
        char **a = realloc(t->tmpl_name, sizeof(char *) * (size_t)(t->n_templates + 1));
        if (a)
            t->tmpl_name = a;
        char **b = a ? realloc(t->tmpl_text, sizeof(char *) * (size_t)(t->n_templates + 1)) : NULL;
        if (b)
            t->tmpl_text = b;
        if (!a || !b)
            return lmp_err(LMP_ENOMEM, "out of memory");
        t->tmpl_name[t->n_templates] = xstrdup(nm);
        t->tmpl_text[t->n_templates] = xstrdup(tx);
        t->n_templates++;
        if (!t->tmpl_name[t->n_templates - 1] || !t->tmpl_text[t->n_templates - 1])
            return lmp_err(LMP_ENOMEM, "out of memory");
    }
    return 0;
}

static int read_templates(lmp_tokenizer *t, const cJSON *cfg, const char *cfg_path, const char *dir)
{
    const cJSON *v = cfg ? get(cfg, "chat_template") : NULL;
    if (v && !cJSON_IsNull(v))
        return take_templates(t, v, cfg_path);
    if (!dir)
        return 0;
    char *jp = lmp_path_join(dir, "chat_template.jinja"), *js = lmp_path_join(dir, "chat_template.json");
    char *txt = NULL;
    size_t len = 0;
    int rc = 0;
    if (!jp || !js) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
    } else if (lmp_path_exists(jp)) {
        if ((rc = lmp_read_file(jp, &txt, &len)) == 0) {
            free(t->chat_template);
            t->chat_template = txt;
            txt = NULL;
        }
    } else if (lmp_path_exists(js) && (rc = lmp_read_file(js, &txt, &len)) == 0) {
        cJSON *r = cJSON_ParseWithLength(txt, len);
        if (!r)
            rc = lmp_err(LMP_EFORMAT, "%s: invalid JSON", js);
        else
            rc = take_templates(t, get(r, "chat_template"), js);
        cJSON_Delete(r);
    }
    free(txt);
    free(jp);
    free(js);
    return rc;
}

/* A special-token entry of tokenizer_config.json / special_tokens_map.json: a string or
 * {"content": ...}. */
static const char *token_text(const cJSON *v)
{
    return cJSON_IsString(v) ? v->valuestring : get_str(v, "content");
}

/* tokenizer_config.json next to the tokenizer: bos/eos/pad token names and the chat
 * templates. A missing file is not an error; a malformed one is ignored for the token
 * names (as before) but its chat template is not guessed. */
static int apply_config(lmp_tokenizer *t, const char *path, const char *dir)
{
    char *txt = NULL;
    size_t len;
    cJSON *root = NULL;
    if (lmp_read_file(path, &txt, &len) == 0)
        root = cJSON_ParseWithLength(txt, len);
    static const char *keys[] = {"bos_token", "eos_token", "pad_token"};
    int32_t *dst[] = {&t->bos, &t->eos, &t->pad};
    for (int k = 0; k < 3 && root; k++) {
        const char *s = token_text(get(root, keys[k]));
        if (s) {
            int32_t id = find_token(t, s);
            if (id >= 0)
                *dst[k] = id;
        }
    }
    int rc = read_templates(t, root, path, dir);
    cJSON_Delete(root);
    free(txt);
    return rc;
}

/* ---------------------------------------------------------------- vocab.json form -- */

#define RX_QWEN2_HF                                                                                \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

static cJSON *obj_type(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (o && !cJSON_AddStringToObject(o, "type", type)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static bool is_class(const char *cls, const char *base)
{
    size_t n = strlen(base);
    return cls && !strncmp(cls, base, n) && (!cls[n] || !strcmp(cls + n, "Fast"));
}

/* Hugging Face folders without tokenizer.json: vocab.json + merges.txt, which transformers
 * turns into a fast tokenizer with the converter of tokenizer_config.json's
 * tokenizer_class (convert_slow_tokenizer.py). Built here as the tokenizer.json those
 * converters produce, then read by the same code:
 * - Qwen2Tokenizer: NFC, Split(Qwen2 regex, Isolated), ByteLevel(use_regex false);
 * - GPT2Tokenizer / CodeGenTokenizer (also when no class is named): ByteLevel with the
 *   config's add_prefix_space; BOS added when add_bos_token is true;
 * - RobertaTokenizer / BartTokenizer / LongformerTokenizer: ByteLevel, <s> A </s>.
 * Added tokens: added_tokens_decoder (with its flags), else added_tokens.json; the special
 * tokens the config names (bos/eos/unk/pad/sep/cls/mask, additional_special_tokens) are
 * added as special tokens as transformers does. */
static int from_vocab_merges(lmp_tokenizer **tokp, const char *dir, const char *vocab_path)
{
    char *vtxt = NULL, *mtxt = NULL, *ctxt = NULL, *atxt = NULL, *stxt = NULL;
    char *merges_path = lmp_path_join(dir, "merges.txt"), *cfg_path = lmp_path_join(dir, "tokenizer_config.json");
    char *added_path = lmp_path_join(dir, "added_tokens.json"), *smap_path = lmp_path_join(dir, "special_tokens_map.json");
    cJSON *root = NULL, *cfg = NULL, *addj = NULL, *smap = NULL, *vocab = NULL;
    size_t vl, ml, cl, al, sl;
    int rc = 0;
    *tokp = NULL;
    if (!merges_path || !cfg_path || !added_path || !smap_path) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = lmp_read_file(vocab_path, &vtxt, &vl)) || (rc = lmp_read_file(merges_path, &mtxt, &ml)))
        goto done;
    if (!(vocab = cJSON_ParseWithLength(vtxt, vl)) || !cJSON_IsObject(vocab)) {
        rc = lmp_err(LMP_EFORMAT, "%s: not a JSON object of token -> id", vocab_path);
        goto done;
    }
    if (lmp_read_file(cfg_path, &ctxt, &cl) == 0 && !(cfg = cJSON_ParseWithLength(ctxt, cl))) {
        rc = lmp_err(LMP_EFORMAT, "%s: invalid JSON", cfg_path);
        goto done;
    }
    if (lmp_read_file(smap_path, &stxt, &sl) == 0 && !(smap = cJSON_ParseWithLength(stxt, sl))) {
        rc = lmp_err(LMP_EFORMAT, "%s: invalid JSON", smap_path);
        goto done;
    }
    const char *cls = cfg ? get_str(cfg, "tokenizer_class") : NULL;
    int kind = !cls || is_class(cls, "GPT2Tokenizer") || is_class(cls, "CodeGenTokenizer") ? 0
               : is_class(cls, "Qwen2Tokenizer")                                             ? 1
               : is_class(cls, "RobertaTokenizer") || is_class(cls, "BartTokenizer") ||
                       is_class(cls, "LongformerTokenizer")
                   ? 2
                   : -1;
    if (kind < 0) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: tokenizer_class \"%s\" with vocab.json + merges.txt and no tokenizer.json "
                                       "is not supported (supported: GPT2Tokenizer, CodeGenTokenizer, Qwen2Tokenizer, "
                                       "RobertaTokenizer, BartTokenizer)", cfg_path, cls);
        goto done;
    }
    bool prefix_space = cfg && cJSON_IsTrue(get(cfg, "add_prefix_space"));
    bool add_bos = cfg && cJSON_IsTrue(get(cfg, "add_bos_token"));

    root = cJSON_CreateObject();
    cJSON *model = cJSON_AddObjectToObject(root, "model"), *merges = cJSON_CreateArray();
    if (!model || !merges) {
        cJSON_Delete(merges);
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", vocab);
    cJSON *vocab_ref = vocab;
    vocab = NULL;
    cJSON_AddItemToObject(model, "merges", merges);
    /* merges.txt: one "a b" per line; "#version" header lines and blank lines skipped */
    for (char *line = mtxt, *end = mtxt + ml; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t n = nl ? (size_t)(nl - line) : (size_t)(end - line);
        if (n && line[n - 1] == '\r')
            n--;
        if (n && strncmp(line, "#version", 8)) {
            char save = line[n];
            line[n] = 0;
            cJSON *m = cJSON_CreateString(line);
            line[n] = save;
            if (!m || !cJSON_AddItemToArray(merges, m)) {
                cJSON_Delete(m);
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto done;
            }
        }
        if (!nl)
            break;
        line = nl + 1;
    }
    /* added tokens */
    cJSON *added = cJSON_AddArrayToObject(root, "added_tokens");
    const cJSON *dec = cfg ? get(cfg, "added_tokens_decoder") : NULL, *it;
    if (cJSON_IsObject(dec)) {
        cJSON_ArrayForEach(it, dec)
        {
            char *e;
            long id = strtol(it->string, &e, 10);
            if (*e || id < 0 || !get_str(it, "content")) {
                rc = lmp_err(LMP_EFORMAT, "%s: added_tokens_decoder entry \"%s\" is not an id with a content", cfg_path,
                             it->string);
                goto done;
            }
            cJSON *a = cJSON_Duplicate(it, true);
            if (!a) {
                rc = lmp_err(LMP_ENOMEM, "out of memory");
                goto done;
            }
            cJSON_DeleteItemFromObjectCaseSensitive(a, "id");
            cJSON_AddNumberToObject(a, "id", (double)id);
            cJSON_DeleteItemFromObjectCaseSensitive(a, "__type");
            cJSON_AddItemToArray(added, a);
        }
    } else if (lmp_read_file(added_path, &atxt, &al) == 0) {
        if (!(addj = cJSON_ParseWithLength(atxt, al)) || !cJSON_IsObject(addj)) {
            rc = lmp_err(LMP_EFORMAT, "%s: not a JSON object of token -> id", added_path);
            goto done;
        }
        cJSON_ArrayForEach(it, addj)
        {
            if (!cJSON_IsNumber(it)) {
                rc = lmp_err(LMP_EFORMAT, "%s: \"%s\" has no integer id", added_path, it->string);
                goto done;
            }
            cJSON *a = cJSON_CreateObject();
            cJSON_AddNumberToObject(a, "id", it->valuedouble);
            cJSON_AddStringToObject(a, "content", it->string);
            cJSON_AddBoolToObject(a, "special", false);
            cJSON_AddBoolToObject(a, "normalized", true);
            cJSON_AddItemToArray(added, a);
        }
    }
    /* the special tokens the config names are special added tokens (when they exist) */
    static const char *sk[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"};
    for (int src = 0; src < 2; src++) {
        const cJSON *c = src ? smap : cfg;
        if (!c)
            continue;
        const char *names[64];
        int nn = 0;
        for (int k = 0; k < 7; k++)
            if (token_text(get(c, sk[k])))
                names[nn++] = token_text(get(c, sk[k]));
        const cJSON *extra = get(c, "additional_special_tokens");
        cJSON_ArrayForEach(it, extra) if (nn < 64 && token_text(it)) names[nn++] = token_text(it);
        for (int k = 0; k < nn; k++) {
            bool have = false;
            const cJSON *a;
            cJSON_ArrayForEach(a, added)
            {
                const char *ct = get_str(a, "content");
                if (ct && !strcmp(ct, names[k])) {
                    /* a token listed as special is special (transformers marks it so) */
                    cJSON_DeleteItemFromObjectCaseSensitive((cJSON *)a, "special");
                    cJSON_AddBoolToObject((cJSON *)a, "special", true);
                    have = true;
                }
            }
            const cJSON *vid = get(vocab_ref, names[k]);
            if (have || !cJSON_IsNumber(vid))
                continue;
            cJSON *a2 = cJSON_CreateObject();
            cJSON_AddNumberToObject(a2, "id", vid->valuedouble);
            cJSON_AddStringToObject(a2, "content", names[k]);
            cJSON_AddBoolToObject(a2, "special", true);
            cJSON_AddBoolToObject(a2, "normalized", false);
            cJSON_AddItemToArray(added, a2);
        }
    }
    /* pipeline */
    cJSON *pre = NULL, *post = NULL;
    if (kind == 1) {
        cJSON_AddItemToObject(root, "normalizer", obj_type("NFC"));
        pre = obj_type("Sequence");
        cJSON *arr = cJSON_AddArrayToObject(pre, "pretokenizers"), *sp = obj_type("Split"), *bl = obj_type("ByteLevel");
        cJSON *pat = cJSON_AddObjectToObject(sp, "pattern");
        cJSON_AddStringToObject(pat, "Regex", RX_QWEN2_HF);
        cJSON_AddStringToObject(sp, "behavior", "Isolated");
        cJSON_AddBoolToObject(sp, "invert", false);
        cJSON_AddBoolToObject(bl, "add_prefix_space", prefix_space);
        cJSON_AddBoolToObject(bl, "use_regex", false);
        cJSON_AddItemToArray(arr, sp);
        cJSON_AddItemToArray(arr, bl);
    } else {
        pre = obj_type("ByteLevel");
        cJSON_AddBoolToObject(pre, "add_prefix_space", prefix_space);
        cJSON_AddBoolToObject(pre, "use_regex", true);
    }
    cJSON_AddItemToObject(root, "pre_tokenizer", pre);
    cJSON_AddItemToObject(root, "decoder", obj_type("ByteLevel"));
    const char *bos = cfg ? token_text(get(cfg, "bos_token")) : NULL;
    if (!bos && smap)
        bos = token_text(get(smap, "bos_token"));
    if (kind == 2) {
        const char *cs = cfg ? token_text(get(cfg, "cls_token")) : NULL, *ss = cfg ? token_text(get(cfg, "sep_token")) : NULL;
        cs = cs ? cs : "<s>";
        ss = ss ? ss : "</s>";
        const cJSON *ci = get(vocab_ref, cs), *si = get(vocab_ref, ss);
        if (!cJSON_IsNumber(ci) || !cJSON_IsNumber(si)) {
            rc = lmp_err(LMP_EFORMAT, "%s: the cls/sep tokens \"%s\"/\"%s\" are not in the vocabulary", vocab_path, cs, ss);
            goto done;
        }
        post = obj_type("RobertaProcessing");
        cJSON *a = cJSON_AddArrayToObject(post, "cls"), *b = cJSON_AddArrayToObject(post, "sep");
        cJSON_AddItemToArray(a, cJSON_CreateString(cs));
        cJSON_AddItemToArray(a, cJSON_CreateNumber(ci->valuedouble));
        cJSON_AddItemToArray(b, cJSON_CreateString(ss));
        cJSON_AddItemToArray(b, cJSON_CreateNumber(si->valuedouble));
    } else if (add_bos && bos) {
        const cJSON *bi = get(vocab_ref, bos);
        int32_t id = -1;
        cJSON_ArrayForEach(it, added) if (get_str(it, "content") && !strcmp(get_str(it, "content"), bos))
            id = (int32_t)get(it, "id")->valuedouble;
        if (id < 0 && cJSON_IsNumber(bi))
            id = (int32_t)bi->valuedouble;
        if (id < 0) {
            rc = lmp_err(LMP_EFORMAT, "%s: add_bos_token is true but bos_token \"%s\" is not a token", cfg_path, bos);
            goto done;
        }
        post = obj_type("TemplateProcessing");
        cJSON *single = cJSON_AddArrayToObject(post, "single"), *st = cJSON_CreateObject(), *sq = cJSON_CreateObject();
        cJSON *sti = cJSON_AddObjectToObject(st, "SpecialToken"), *sqi = cJSON_AddObjectToObject(sq, "Sequence");
        cJSON_AddStringToObject(sti, "id", bos);
        cJSON_AddNumberToObject(sti, "type_id", 0);
        cJSON_AddStringToObject(sqi, "id", "A");
        cJSON_AddNumberToObject(sqi, "type_id", 0);
        cJSON_AddItemToArray(single, st);
        cJSON_AddItemToArray(single, sq);
        cJSON *sp = cJSON_AddObjectToObject(post, "special_tokens"), *e = cJSON_AddObjectToObject(sp, bos);
        cJSON *ids = cJSON_AddArrayToObject(e, "ids");
        cJSON_AddStringToObject(e, "id", bos);
        cJSON_AddItemToArray(ids, cJSON_CreateNumber(id));
    }
    if (post)
        cJSON_AddItemToObject(root, "post_processor", post);
    if ((rc = from_tree(tokp, root, vocab_path)))
        goto done;
    if ((rc = apply_config(*tokp, cfg_path, dir))) {
        lmp_tokenizer_free(*tokp);
        *tokp = NULL;
    }
done:
    cJSON_Delete(root);
    cJSON_Delete(vocab);
    cJSON_Delete(cfg);
    cJSON_Delete(addj);
    cJSON_Delete(smap);
    free(vtxt);
    free(mtxt);
    free(ctxt);
    free(atxt);
    free(stxt);
    free(merges_path);
    free(cfg_path);
    free(added_path);
    free(smap_path);
    return rc;
}

/* The folder of a file path ("." when it has none), malloc'd. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, path, n);
        d[n] = 0;
    }
    return d;
}

/* A file named vocab.json is the vocab.json + merges.txt form when merges.txt is beside it
 * and the file is not itself a tokenizer.json (no "model" object). */
static bool is_vocab_form(const char *path, const char *txt, size_t len)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strcmp(base, "vocab.json"))
        return false;
    cJSON *r = cJSON_ParseWithLength(txt, len);
    bool ok = cJSON_IsObject(r) && !cJSON_IsObject(get(r, "model")); /* "model" may be a token */
    cJSON_Delete(r);
    if (!ok)
        return false;
    char *d = dir_of(path), *m = d ? lmp_path_join(d, "merges.txt") : NULL;
    ok = m && lmp_path_exists(m);
    free(d);
    free(m);
    return ok;
}

int lmp_tokenizer_load(lmp_tokenizer **tok, const char *path)
{
    int rc;
    *tok = NULL;
    if (lmp_str_endswith_ci(path, ".gguf")) {
        lmp_gguf_reader r = {0};
        if ((rc = lmp_gguf_open(&r, path)))
            return rc;
        rc = lmp_tokenizer_from_gguf(tok, &r);
        lmp_gguf_close(&r);
        return rc;
    }
    char *dir = NULL, *json_path = NULL, *cfg_path = NULL, *txt = NULL;
    size_t len;
    bool is_dir = lmp_path_is_dir(path);
    dir = is_dir ? xstrdup(path) : dir_of(path);
    json_path = is_dir ? lmp_path_join(path, "tokenizer.json") : xstrdup(path);
    cfg_path = dir ? lmp_path_join(dir, "tokenizer_config.json") : NULL;
    if (!dir || !json_path || !cfg_path) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (is_dir && !lmp_path_exists(json_path)) {
        char *vp = lmp_path_join(path, "vocab.json"), *mp = lmp_path_join(path, "merges.txt");
        if (vp && mp && lmp_path_exists(vp) && lmp_path_exists(mp))
            rc = from_vocab_merges(tok, path, vp);
        else
            rc = lmp_err(LMP_ENOTFOUND, "%s: no tokenizer.json (nor vocab.json + merges.txt) in this folder", path);
        free(vp);
        free(mp);
        goto cleanup;
    }
    if ((rc = lmp_read_file(json_path, &txt, &len)))
        goto cleanup;
    if (!is_dir && is_vocab_form(json_path, txt, len)) {
        rc = from_vocab_merges(tok, dir, json_path);
        goto cleanup;
    }
    if ((rc = lmp_tokenizer_from_json(tok, txt, len, json_path)))
        goto cleanup;
    if ((rc = apply_config(*tok, cfg_path, dir))) {
        lmp_tokenizer_free(*tok);
        *tok = NULL;
    }
cleanup:
    free(txt);
    free(dir);
    free(json_path);
    free(cfg_path);
    return rc;
}
