/*
 * Tokenizers out to Hugging Face files, and the one place every writer of an output folder
 * gets its tokenizer files from.
 *
 * lmp_tokenizer_to_json writes the loaded pipeline back as a tokenizer.json (the format of
 * the `tokenizers` library): the vocabulary, merges, added tokens with their flags,
 * normalizers, pre-tokenizers, post-processor and decoders. A GGUF "llama" vocabulary has
 * scores instead of merges: llama.cpp merges the adjacent pair whose concatenation is the
 * best-scoring token, so every split (a, b) of a token c with both halves in the vocabulary
 * becomes a merge, ranked by the score of c (highest first). The two agree whenever
 * distinct tokens have distinct scores, which SentencePiece vocabularies give; the test
 * holds the result to llama.cpp's vectors.
 *
 * lmp_tokenizer_files_write: from an HF folder the tokenizer files are copied as they are;
 * from a GGUF, tokenizer.json and tokenizer_config.json are made from its vocabulary.
 */
#include "tokenizer_internal.h"

#include "../io/checkpoint.h"

#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

static char *piece_str(const tk_str *p)
{
    char *s = malloc((size_t)p->len + 1);
    if (s) {
        memcpy(s, p->s, p->len);
        s[p->len] = 0;
    }
    return s;
}

/* cJSON keeps NUL-terminated strings: a piece holding a NUL byte cannot be written. */
static bool has_nul(const tk_str *p)
{
    return p->s && memchr(p->s, 0, p->len) != NULL;
}

static cJSON *add_str_n(cJSON *o, const char *k, const char *s, size_t n)
{
    char *tmp = malloc(n + 1);
    if (!tmp)
        return NULL;
    memcpy(tmp, s, n);
    tmp[n] = 0;
    cJSON *r = cJSON_AddStringToObject(o, k, tmp);
    free(tmp);
    return r;
}

static cJSON *typed(const char *type)
{
    cJSON *o = cJSON_CreateObject();
    if (o)
        cJSON_AddStringToObject(o, "type", type);
    return o;
}

static const char *scheme_name(int ps)
{
    return ps == TK_PS_FIRST ? "first" : ps == TK_PS_NEVER ? "never" : "always";
}

/* One of a list, or a Sequence of them (list_key names the array), or null. */
static cJSON *seq_or_one(cJSON *arr, const char *list_key)
{
    int n = cJSON_GetArraySize(arr);
    if (n == 0) {
        cJSON_Delete(arr);
        return cJSON_CreateNull();
    }
    if (n == 1) {
        cJSON *one = cJSON_DetachItemFromArray(arr, 0);
        cJSON_Delete(arr);
        return one;
    }
    cJSON *s = typed("Sequence");
    cJSON_AddItemToObject(s, list_key, arr);
    return s;
}

static cJSON *pattern(const char *s, size_t n, bool regex)
{
    cJSON *p = cJSON_CreateObject();
    add_str_n(p, regex ? "Regex" : "String", s, n);
    return p;
}

static cJSON *normalizers_json(const lmp_tokenizer *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < t->n_norms; k++) {
        const tk_norm *nm = &t->norms[k];
        cJSON *o;
        switch (nm->type) {
        case TK_N_PREPEND:
            o = typed("Prepend");
            add_str_n(o, "prepend", nm->pat, nm->pat_len);
            break;
        case TK_N_REPLACE:
            o = typed("Replace");
            cJSON_AddItemToObject(o, "pattern", pattern(nm->pat, nm->pat_len, nm->re != NULL));
            add_str_n(o, "content", nm->content, nm->content_len);
            break;
        default:
            o = typed(nm->type == TK_N_NFKC ? "NFKC" : "NFC");
            break;
        }
        cJSON_AddItemToArray(arr, o);
    }
    return seq_or_one(arr, "normalizers");
}

static cJSON *pretok_json(const lmp_tokenizer *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < t->n_pres; k++) {
        const tk_pre *p = &t->pres[k];
        cJSON *o = NULL;
        switch (p->type) {
        case TK_P_SPLIT:
            o = typed("Split");
            cJSON_AddItemToObject(o, "pattern", pattern(p->lit, p->lit_len, p->lit_is_regex));
            cJSON_AddStringToObject(o, "behavior", tk_behavior_names[p->behavior]);
            cJSON_AddBoolToObject(o, "invert", p->invert);
            break;
        case TK_P_BYTELEVEL:
            o = typed("ByteLevel");
            cJSON_AddBoolToObject(o, "add_prefix_space", p->add_prefix_space);
            cJSON_AddBoolToObject(o, "trim_offsets", true);
            cJSON_AddBoolToObject(o, "use_regex", p->use_regex);
            break;
        case TK_P_METASPACE:
            o = typed("Metaspace");
            add_str_n(o, "replacement", p->repl, (size_t)p->repl_len);
            cJSON_AddStringToObject(o, "prepend_scheme", scheme_name(p->prepend_scheme));
            cJSON_AddBoolToObject(o, "split", p->split);
            break;
        case TK_P_DIGITS:
            o = typed("Digits");
            cJSON_AddBoolToObject(o, "individual_digits", p->individual);
            break;
        case TK_P_PUNCT:
            o = typed("Punctuation");
            cJSON_AddStringToObject(o, "behavior", tk_behavior_names[p->behavior]);
            break;
        case TK_P_WSPLIT:
            o = typed("WhitespaceSplit");
            break;
        }
        cJSON_AddItemToArray(arr, o);
    }
    return seq_or_one(arr, "pretokenizers");
}

static cJSON *decoders_json(const lmp_tokenizer *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < t->n_decs; k++) {
        const tk_dec *d = &t->decs[k];
        cJSON *o = NULL;
        switch (d->type) {
        case TK_D_BYTELEVEL:
            o = typed("ByteLevel");
            cJSON_AddBoolToObject(o, "add_prefix_space", true);
            cJSON_AddBoolToObject(o, "trim_offsets", true);
            cJSON_AddBoolToObject(o, "use_regex", true);
            break;
        case TK_D_METASPACE:
            o = typed("Metaspace");
            add_str_n(o, "replacement", d->repl, (size_t)d->repl_len);
            cJSON_AddStringToObject(o, "prepend_scheme", scheme_name(d->prepend_scheme));
            cJSON_AddBoolToObject(o, "split", true);
            break;
        case TK_D_REPLACE:
            o = typed("Replace");
            cJSON_AddItemToObject(o, "pattern", pattern(d->pat, d->pat_len, false));
            add_str_n(o, "content", d->content, d->content_len);
            break;
        case TK_D_BYTEFALLBACK:
            o = typed("ByteFallback");
            break;
        case TK_D_FUSE:
            o = typed("Fuse");
            break;
        case TK_D_STRIP:
            o = typed("Strip");
            add_str_n(o, "content", d->content, d->content_len);
            cJSON_AddNumberToObject(o, "start", d->start);
            cJSON_AddNumberToObject(o, "stop", d->stop);
            break;
        }
        cJSON_AddItemToArray(arr, o);
    }
    return seq_or_one(arr, "decoders");
}

static cJSON *special_piece(const lmp_tokenizer *t, int32_t id, int type_id)
{
    cJSON *o = cJSON_CreateObject(), *st = cJSON_AddObjectToObject(o, "SpecialToken");
    add_str_n(st, "id", t->pieces[id].s, t->pieces[id].len);
    cJSON_AddNumberToObject(st, "type_id", type_id);
    return o;
}

static cJSON *seq_piece(const char *id, int type_id)
{
    cJSON *o = cJSON_CreateObject(), *sq = cJSON_AddObjectToObject(o, "Sequence");
    cJSON_AddStringToObject(sq, "id", id);
    cJSON_AddNumberToObject(sq, "type_id", type_id);
    return o;
}

static cJSON *post_json(const lmp_tokenizer *t)
{
    if (t->post_kind == TK_POST_ROBERTA || t->post_kind == TK_POST_BERT) {
        cJSON *o = typed(t->post_kind == TK_POST_ROBERTA ? "RobertaProcessing" : "BertProcessing");
        const int32_t ids[2] = {t->suffix[0], t->prefix[0]};
        static const char *keys[] = {"sep", "cls"};
        for (int k = 0; k < 2; k++) {
            cJSON *a = cJSON_AddArrayToObject(o, keys[k]), *s = cJSON_CreateObject();
            add_str_n(s, "x", t->pieces[ids[k]].s, t->pieces[ids[k]].len);
            cJSON_AddItemToArray(a, cJSON_DetachItemFromObject(s, "x"));
            cJSON_Delete(s);
            cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[k]));
        }
        if (t->post_kind == TK_POST_ROBERTA) {
            cJSON_AddBoolToObject(o, "trim_offsets", true);
            cJSON_AddBoolToObject(o, "add_prefix_space", false);
        }
        return o;
    }
    if (t->n_prefix + t->n_suffix == 0) {
        if (!t->byte_level)
            return cJSON_CreateNull();
        cJSON *o = typed("ByteLevel");
        cJSON_AddBoolToObject(o, "add_prefix_space", true);
        cJSON_AddBoolToObject(o, "trim_offsets", false);
        cJSON_AddBoolToObject(o, "use_regex", true);
        return o;
    }
    cJSON *o = typed("TemplateProcessing");
    /* single: prefix A suffix; pair: prefix A suffix prefix B suffix (HF's layout) */
    cJSON *single = cJSON_AddArrayToObject(o, "single"), *pair = cJSON_AddArrayToObject(o, "pair");
    for (int part = 0; part < 3; part++) {
        cJSON *dst = part == 0 ? single : pair;
        int type_id = part == 2 ? 1 : 0;
        for (int i = 0; i < t->n_prefix; i++)
            cJSON_AddItemToArray(dst, special_piece(t, t->prefix[i], type_id));
        cJSON_AddItemToArray(dst, seq_piece(part == 2 ? "B" : "A", type_id));
        for (int i = 0; i < t->n_suffix; i++)
            cJSON_AddItemToArray(dst, special_piece(t, t->suffix[i], type_id));
    }
    cJSON *sp = cJSON_AddObjectToObject(o, "special_tokens");
    for (int side = 0; side < 2; side++) {
        const int32_t *ids = side ? t->suffix : t->prefix;
        int n = side ? t->n_suffix : t->n_prefix;
        for (int i = 0; i < n; i++) {
            char *name = piece_str(&t->pieces[ids[i]]);
            if (!name)
                continue;
            if (!cJSON_GetObjectItemCaseSensitive(sp, name)) {
                cJSON *e = cJSON_AddObjectToObject(sp, name);
                cJSON_AddStringToObject(e, "id", name);
                cJSON *a = cJSON_AddArrayToObject(e, "ids"), *b = cJSON_AddArrayToObject(e, "tokens");
                cJSON_AddItemToArray(a, cJSON_CreateNumber(ids[i]));
                cJSON_AddItemToArray(b, cJSON_CreateString(name));
            }
            free(name);
        }
    }
    return o;
}

/* ---------------------------------------------------------------- merges ----------- */

typedef struct {
    float score;
    int32_t c, a, b;
} tk_smerge;

static int smerge_cmp(const void *x, const void *y)
{
    const tk_smerge *p = x, *q = y;
    if (p->score != q->score)
        return p->score > q->score ? -1 : 1;
    if (p->c != q->c)
        return p->c < q->c ? -1 : 1;
    return p->a < q->a ? -1 : p->a > q->a;
}

/* Merges equivalent to a score-driven vocabulary (see the file comment). */
static int score_merges(const lmp_tokenizer *t, tk_smerge **out, size_t *n_out)
{
    size_t n = 0, cap = 1024;
    tk_smerge *m = malloc(sizeof *m * cap);
    if (!m)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    for (int32_t c = 0; c < t->n_model; c++) {
        const tk_str *p = &t->pieces[c];
        if (!p->s || p->len < 2 || t->ttype[c] == TK_T_BYTE)
            continue;
        for (uint32_t cut = 1; cut < p->len; cut++) {
            if (((unsigned char)p->s[cut] & 0xC0) == 0x80)
                continue;
            int32_t a = tk_strmap_get(&t->vocab, p->s, cut), b = tk_strmap_get(&t->vocab, p->s + cut, p->len - cut);
            if (a < 0 || b < 0)
                continue;
            if (n == cap) {
                tk_smerge *nm = realloc(m, sizeof *m * (cap *= 2));
                if (!nm) {
                    free(m);
                    return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
                }
                m = nm;
            }
            m[n++] = (tk_smerge){t->scores[c], c, a, b};
        }
    }
    qsort(m, n, sizeof *m, smerge_cmp);
    *out = m;
    *n_out = n;
    return 0;
}

static cJSON *merge_pair(const lmp_tokenizer *t, int32_t a, int32_t b)
{
    cJSON *arr = cJSON_CreateArray(), *tmp = cJSON_CreateObject();
    add_str_n(tmp, "a", t->pieces[a].s, t->pieces[a].len);
    add_str_n(tmp, "b", t->pieces[b].s, t->pieces[b].len);
    cJSON_AddItemToArray(arr, cJSON_DetachItemFromObject(tmp, "a"));
    cJSON_AddItemToArray(arr, cJSON_DetachItemFromObject(tmp, "b"));
    cJSON_Delete(tmp);
    return arr;
}

static int model_json(const lmp_tokenizer *t, cJSON *root)
{
    cJSON *m = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    if (t->unk_id >= 0 && t->pieces[t->unk_id].s)
        add_str_n(m, "unk_token", t->pieces[t->unk_id].s, t->pieces[t->unk_id].len);
    else
        cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", t->fuse_unk || t->model == TK_MODEL_SCORES);
    cJSON_AddBoolToObject(m, "byte_fallback", t->byte_fallback);
    cJSON_AddBoolToObject(m, "ignore_merges", t->ignore_merges);
    cJSON *vocab = cJSON_AddObjectToObject(m, "vocab");
    int64_t dropped = 0;
    for (int32_t i = 0; i < t->n_model; i++) {
        const tk_str *p = &t->pieces[i];
        if (!p->s)
            continue;
        /* a duplicate string keeps its first id (the one lookups find), as a JSON map must */
        if (has_nul(p) || tk_strmap_get(&t->vocab, p->s, p->len) != i) {
            dropped++;
            continue;
        }
        char *k = piece_str(p);
        if (!k)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        cJSON_AddItemToObject(vocab, k, cJSON_CreateNumber(i));
        free(k);
    }
    if (dropped)
        lmp_warn("%s: %lld vocabulary entries repeat an earlier token's text (or hold a NUL byte) and are left out "
                 "of tokenizer.json's vocab", t->name, (long long)dropped);
    cJSON *merges = cJSON_AddArrayToObject(m, "merges");
    if (t->model == TK_MODEL_SCORES) {
        tk_smerge *sm = NULL;
        size_t n = 0;
        int rc = score_merges(t, &sm, &n);
        if (rc)
            return rc;
        for (size_t i = 0; i < n; i++)
            cJSON_AddItemToArray(merges, merge_pair(t, sm[i].a, sm[i].b));
        free(sm);
    } else {
        for (int32_t k = 0; k < t->n_merges; k++)
            cJSON_AddItemToArray(merges, merge_pair(t, t->merge_list[k][0], t->merge_list[k][1]));
    }
    return 0;
}

static cJSON *added_json(const lmp_tokenizer *t)
{
    cJSON *arr = cJSON_CreateArray();
    for (int k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        if (has_nul(&a->content))
            continue;
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "id", a->id);
        add_str_n(o, "content", a->content.s, a->content.len);
        cJSON_AddBoolToObject(o, "single_word", a->single_word);
        cJSON_AddBoolToObject(o, "lstrip", a->lstrip);
        cJSON_AddBoolToObject(o, "rstrip", a->rstrip);
        cJSON_AddBoolToObject(o, "normalized", a->normalized);
        cJSON_AddBoolToObject(o, "special", a->special);
        cJSON_AddItemToArray(arr, o);
    }
    return arr;
}

int lmp_tokenizer_to_json(const lmp_tokenizer *t, char **json)
{
    *json = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    cJSON_AddStringToObject(root, "version", "1.0");
    cJSON_AddNullToObject(root, "truncation");
    cJSON_AddNullToObject(root, "padding");
    cJSON_AddItemToObject(root, "added_tokens", added_json(t));
    cJSON_AddItemToObject(root, "normalizer", normalizers_json(t));
    cJSON_AddItemToObject(root, "pre_tokenizer", pretok_json(t));
    cJSON_AddItemToObject(root, "post_processor", post_json(t));
    cJSON_AddItemToObject(root, "decoder", decoders_json(t));
    int rc = model_json(t, root);
    if (rc == 0 && !(*json = cJSON_PrintUnformatted(root)))
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    cJSON_Delete(root);
    return rc;
}

static void add_token_name(cJSON *o, const char *key, const lmp_tokenizer *t, int32_t id)
{
    if (id >= 0 && id < t->n_vocab && t->pieces[id].s && !has_nul(&t->pieces[id]))
        add_str_n(o, key, t->pieces[id].s, t->pieces[id].len);
    else
        cJSON_AddNullToObject(o, key);
}

int lmp_tokenizer_config_to_json(const lmp_tokenizer *t, char **json)
{
    *json = NULL;
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    cJSON_AddStringToObject(o, "tokenizer_class", "PreTrainedTokenizerFast");
    add_token_name(o, "bos_token", t, t->bos);
    add_token_name(o, "eos_token", t, t->eos);
    add_token_name(o, "unk_token", t, t->unk_id);
    add_token_name(o, "pad_token", t, t->pad);
    cJSON_AddBoolToObject(o, "add_bos_token", t->n_prefix > 0);
    cJSON_AddBoolToObject(o, "add_eos_token", t->n_suffix > 0);
    cJSON_AddBoolToObject(o, "clean_up_tokenization_spaces", false);
    if (t->n_templates) {
        cJSON *arr = cJSON_AddArrayToObject(o, "chat_template");
        for (int k = -1; k < t->n_templates; k++) {
            if (k < 0 && !t->chat_template)
                continue;
            cJSON *e = cJSON_CreateObject();
            cJSON_AddStringToObject(e, "name", k < 0 ? "default" : t->tmpl_name[k]);
            cJSON_AddStringToObject(e, "template", k < 0 ? t->chat_template : t->tmpl_text[k]);
            cJSON_AddItemToArray(arr, e);
        }
    } else if (t->chat_template) {
        cJSON_AddStringToObject(o, "chat_template", t->chat_template);
    }
    cJSON *dec = cJSON_AddObjectToObject(o, "added_tokens_decoder");
    for (int k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        char key[16];
        snprintf(key, sizeof key, "%d", (int)a->id);
        if (has_nul(&a->content) || cJSON_GetObjectItemCaseSensitive(dec, key))
            continue;
        cJSON *e = cJSON_AddObjectToObject(dec, key);
        add_str_n(e, "content", a->content.s, a->content.len);
        cJSON_AddBoolToObject(e, "lstrip", a->lstrip);
        cJSON_AddBoolToObject(e, "normalized", a->normalized);
        cJSON_AddBoolToObject(e, "rstrip", a->rstrip);
        cJSON_AddBoolToObject(e, "single_word", a->single_word);
        cJSON_AddBoolToObject(e, "special", a->special);
    }
    *json = cJSON_Print(o);
    cJSON_Delete(o);
    return *json ? 0 : lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
}

int lmp_tokenizer_write_hf(const lmp_tokenizer *t, const char *dir)
{
    char *tj = NULL, *cj = NULL, *p1 = lmp_path_join(dir, "tokenizer.json"), *p2 = lmp_path_join(dir, "tokenizer_config.json");
    int rc = !p1 || !p2 ? lmp_err(LMP_ENOMEM, "out of memory") : 0;
    if (!rc && !(rc = lmp_tokenizer_to_json(t, &tj)) && !(rc = lmp_tokenizer_config_to_json(t, &cj)) &&
        !(rc = lmp_write_text(p1, tj)))
        rc = lmp_write_text(p2, cj);
    free(tj);
    free(cj);
    free(p1);
    free(p2);
    return rc;
}

/* ---------------------------------------------------------------- output folders --- */

/* The files a Hugging Face folder's tokenizer may consist of (and generation_config.json,
 * which travels with them). */
static const char *const g_tok_files[] = {
    "tokenizer.json",    "tokenizer_config.json", "special_tokens_map.json", "generation_config.json",
    "tokenizer.model",   "vocab.json",            "merges.txt",              "added_tokens.json",
    "chat_template.jinja", "chat_template.json",
};

int lmp_tokenizer_files_from(const char *src, const char *dst)
{
    int rc = 0;
    if (!src)
        return 0;
    if (lmp_str_endswith(src, ".gguf") && !lmp_path_is_dir(src)) {
        lmp_gguf_reader r = {0};
        if ((rc = lmp_gguf_open(&r, src)))
            return rc;
        rc = lmp_tokenizer_files_from_gguf(&r, dst);
        lmp_gguf_close(&r);
        return rc;
    }
    for (size_t k = 0; k < sizeof g_tok_files / sizeof g_tok_files[0] && !rc; k++) {
        char *s = lmp_path_join(src, g_tok_files[k]), *d = lmp_path_join(dst, g_tok_files[k]);
        if (!s || !d)
            rc = lmp_err(LMP_ENOMEM, "out of memory");
        else if (lmp_path_exists(s))
            rc = lmp_copy_file(s, d);
        free(s);
        free(d);
    }
    return rc;
}

int lmp_tokenizer_files_from_gguf(const lmp_gguf_reader *r, const char *dst)
{
    const char *model = NULL;
    if (lmp_gguf_get_str(r, "tokenizer.ggml.model", &model) || !strcmp(model, "none")) {
        lmp_warn("%s: no vocabulary in the GGUF: %s gets no tokenizer files", r->path ? r->path : "gguf", dst);
        return 0;
    }
    lmp_tokenizer *t = NULL;
    int rc = lmp_tokenizer_from_gguf(&t, r);
    if (rc == LMP_EUNSUPPORTED) {
        lmp_warn("%s: %s gets no tokenizer files (%s)", r->path ? r->path : "gguf", dst, lmp_errmsg());
        return 0;
    }
    if (rc == 0)
        rc = lmp_tokenizer_write_hf(t, dst);
    lmp_tokenizer_free(t);
    return rc;
}

int lmp_tokenizer_files_write(const lmp_ckpt *c, const char *dst)
{
    if (c->kind == LMP_CKPT_GGUF)
        return lmp_tokenizer_files_from_gguf(&c->gguf, dst);
    return lmp_tokenizer_files_from(c->dir, dst);
}
