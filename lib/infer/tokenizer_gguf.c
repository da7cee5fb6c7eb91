/*
 * GGUF vocabularies (tokenizer.ggml.*) in and out of an lmp_tokenizer.
 *
 * In: "llama" is SentencePiece-style BPE driven by token scores with byte fallback (the
 * llama.cpp SPM tokenizer: space prefix, ' ' -> U+2581); "gpt2" is byte-level BPE with ranked
 * merges and the pre-tokenizer regexes that llama.cpp (src/llama-vocab.cpp) selects by the
 * tokenizer.ggml.pre name; where llama.cpp rewrote a Hugging Face regex for its own regex
 * engine, the original tokenizer.json regex is used (PCRE2 runs it as Oniguruma does).
 * Control, unknown and user-defined tokens are matched in the raw text before the model,
 * as Hugging Face matches its added tokens.
 *
 * Out: lmp_tokenizer_write_gguf maps a tokenizer.json tokenizer onto those two models, or
 * refuses with the reason when GGUF cannot express its pipeline.
 */
#include "tokenizer_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- pre table -------- */

#define RX_LLAMA3                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_QWEN2                                                                                   \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"     \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RX_GPT2_LCPP "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RX_CJK "[\\x{4E00}-\\x{9FA5}\\x{0800}-\\x{4E00}\\x{AC00}-\\x{D7FF}]+"
/* Unicode cased letters (LC), as DeepSeek LLM's tokenizer.json lists them */
#define RX_DS_LETTERS                                                                              \
    "\\s?[A-Za-z\\x{B5}\\x{C0}-\\x{D6}\\x{D8}-\\x{F6}\\x{F8}-\\x{1BA}\\x{1BC}-\\x{1BF}\\x{1C4}-\\x{293}"      \
    "\\x{295}-\\x{2AF}\\x{370}-\\x{373}\\x{376}\\x{377}\\x{37B}-\\x{37D}\\x{37F}\\x{386}\\x{388}-\\x{38A}"     \
    "\\x{38C}\\x{38E}-\\x{3A1}\\x{3A3}-\\x{3F5}\\x{3F7}-\\x{481}\\x{48A}-\\x{52F}\\x{531}-\\x{556}"             \
    "\\x{10A0}-\\x{10C5}\\x{13A0}-\\x{13F5}\\x{13F8}-\\x{13FD}\\x{1C90}-\\x{1CBA}\\x{1CBD}-\\x{1CBF}"           \
    "\\x{1D00}-\\x{1D2B}\\x{1D6B}-\\x{1D77}\\x{1D79}-\\x{1D9A}\\x{1E00}-\\x{1F15}\\x{1F18}-\\x{1F1D}"          \
    "\\x{1F20}-\\x{1F45}\\x{1F48}-\\x{1F4D}\\x{1F50}-\\x{1F57}\\x{1F59}\\x{1F5B}\\x{1F5D}\\x{1F5F}-\\x{1F7D}"   \
    "\\x{1F80}-\\x{1FB4}\\x{1FB6}-\\x{1FBC}\\x{1FBE}\\x{1FC2}-\\x{1FC4}\\x{1FC6}-\\x{1FCC}\\x{1FD0}-\\x{1FD3}" \
    "\\x{1FD6}-\\x{1FDB}\\x{1FE0}-\\x{1FEC}\\x{1FF2}-\\x{1FF4}\\x{1FF6}-\\x{1FFC}\\x{2102}\\x{2107}"           \
    "\\x{210A}-\\x{2113}\\x{2115}\\x{2119}-\\x{211D}\\x{2124}\\x{2126}\\x{2128}\\x{212A}-\\x{212D}"            \
    "\\x{212F}-\\x{2134}\\x{2139}\\x{213C}-\\x{213F}\\x{2145}-\\x{2149}\\x{214E}\\x{2183}\\x{2184}"            \
    "\\x{2C00}-\\x{2C7B}\\x{2C7E}-\\x{2CE4}\\x{2CEB}-\\x{2CEE}\\x{2CF2}\\x{2CF3}\\x{A640}-\\x{A66D}"            \
    "\\x{A680}-\\x{A69B}\\x{A722}-\\x{A76F}\\x{A771}-\\x{A787}\\x{A78B}-\\x{A78E}\\x{AB70}-\\x{ABBF}"          \
    "\\x{FB00}-\\x{FB06}\\x{FB13}-\\x{FB17}\\x{FF21}-\\x{FF3A}\\x{FF41}-\\x{FF5A}\\x{10400}-\\x{1044F}"        \
    "\\x{104B0}-\\x{104D3}\\x{104D8}-\\x{104FB}\\x{10C80}-\\x{10CB2}\\x{10CC0}-\\x{10CF2}\\x{118A0}-\\x{118DF}" \
    "\\x{1E900}-\\x{1E943}]+"
#define RX_PORO " ?[^(\\s|.,!?\\x{2026}\\x{3002}\\x{FF0C}\\x{3001}\\x{0964}\\x{06D4}\\x{060C})]+"
#define RX_TEKKEN                                                                                  \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"             \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|\\p{N}|"       \
    " ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RX_GPT4O                                                                                   \
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+"              \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+"              \
    "[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

typedef struct {
    const char *names;      /* '|'-separated; the first is the one written on export */
    const char *rx[7];      /* NULL-terminated */
    bool ignore_merges;     /* llama.cpp sets it for these names */
    bool add_bos;           /* llama.cpp's default for tokenizer.ggml.add_bos_token */
} tk_pre_def;

/* Order matters for export: the first entry whose regex list matches is written. */
static const tk_pre_def g_pre[] = {
    {"gpt-2|phi-2|mpt|olmo|jais|jina-es|jina-de|jina-v2-es|jina-v2-de|gigachat|exaone4|trillion", {RX_GPT2}, false, false},
    {"llama-bpe|llama3|llama-v3|falcon3|falcon-h1|pixtral|midm-2.0|lfm2", {RX_LLAMA3}, true, true},
    {"qwen2|stablelm2|deepseek-r1-qwen|megrez|hunyuan", {RX_QWEN2}, false, false},
    {"smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b", {"\\p{N}", RX_GPT2}, false, false},
    {"deepseek-coder", {"[\\r\\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", RX_CJK, "\\p{N}"}, false, false},
    {"deepseek-llm",
     {"[\\r\\n]", RX_DS_LETTERS,
      "\\s?[!-/:-~\\x{FF01}-\\x{FF0F}\\x{FF1A}-\\x{FF5E}\\x{2018}-\\x{201F}\\x{3000}-\\x{3002}]+", "\\s+$", RX_CJK,
      "\\p{N}+"},
     false, false},
    {"falcon", {"[\\p{P}\\$\\+<=>\\^~\\|`]+", RX_GPT2_LCPP, "[0-9][0-9][0-9]"}, false, false},
    {"default", {"[\\p{P}\\$\\+<=>\\^~\\|]+", RX_GPT2_LCPP, "\\p{N}+", "[0-9][0-9][0-9]"}, false, false},
    {"chatglm-bpe|glm4", {RX_LLAMA3}, false, false},
    {"poro-chat|bloom|gpt3-finnish", {RX_PORO}, false, false},
    {"viking", {RX_PORO, "\\p{N}"}, false, false},
    {"tekken", {RX_TEKKEN}, true, true},
    {"gpt-4o|llama4", {RX_GPT4O}, false, false},
};
#define N_PRE (sizeof g_pre / sizeof g_pre[0])

static bool name_in(const char *names, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = names; *p;) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == n && !memcmp(p, name, n))
            return true;
        p += l + (bar ? 1 : 0);
    }
    return false;
}

static const tk_pre_def *pre_find(const char *name)
{
    for (size_t i = 0; i < N_PRE; i++)
        if (name_in(g_pre[i].names, name))
            return &g_pre[i];
    return NULL;
}

/* Falcon's own tokenizer.json pipeline: Punctuation(Contiguous), ByteLevel (GPT-2 regex),
 * then Digits and a [0-9]{3} Split on the byte-level alphabet. llama.cpp approximates it
 * with the "falcon" regex list above (used only to recognise the name); lmpress runs the
 * original, which Hugging Face's ids follow. */
#define RX_DIGITS3 "[0-9][0-9][0-9]"

static int falcon_setup(lmp_tokenizer *t, const char *name)
{
    int rc;
    tk_pre *p;
    static const int types[] = {TK_P_PUNCT, TK_P_BYTELEVEL, TK_P_DIGITS, TK_P_SPLIT};
    static const char *const rx[] = {NULL, NULL, "\\p{N}", RX_DIGITS3};
    for (int k = 0; k < 4; k++) {
        if (!(p = tk_add_pre(t)))
            return LMP_ENOMEM;
        p->type = types[k];
        p->mapped = k >= 2;
        const char *r = k == 0 ? tk_punct_regex : k == 1 ? tk_gpt2_regex : rx[k];
        if (k == 0)
            p->behavior = TK_B_CONTIGUOUS;
        if (k == 1)
            p->use_regex = true;
        if (k == 3) {
            p->behavior = TK_B_ISOLATED;
            p->lit_is_regex = true;
            p->lit_len = strlen(r);
            if (!(p->lit = malloc(p->lit_len + 1)))
                return lmp_err(LMP_ENOMEM, "%s: out of memory", name);
            memcpy(p->lit, r, p->lit_len + 1);
        }
        if ((rc = tk_regex(&p->re, r, strlen(r), name, k != 2 && k != 0)))
            return rc;
    }
    return 0;
}

/* Whether a pipeline is Falcon's (falcon_setup's steps, as tokenizer.json gives them). */
static bool is_falcon(const lmp_tokenizer *t)
{
    const tk_pre *p = t->pres;
    return t->n_pres == 4 && p[0].type == TK_P_PUNCT && p[0].behavior == TK_B_CONTIGUOUS && !p[0].mapped &&
           p[1].type == TK_P_BYTELEVEL && !p[1].add_prefix_space && p[1].use_regex && p[2].type == TK_P_DIGITS &&
           !p[2].individual && p[2].mapped && p[3].type == TK_P_SPLIT && p[3].mapped && p[3].lit_is_regex &&
           !strcmp(p[3].lit, RX_DIGITS3) && p[3].behavior == TK_B_ISOLATED && !p[3].invert && t->n_norms == 0 &&
           !t->ignore_merges;
}

int tk_gguf_pre_setup(lmp_tokenizer *t, const char *pre, const char *name)
{
    const tk_pre_def *d = pre_find(pre);
    int rc;
    if (!d)
        return lmp_err(LMP_EUNSUPPORTED, "%s: tokenizer.ggml.pre \"%s\" is not supported", name, pre);
    if (!strcmp(pre, "falcon"))
        return falcon_setup(t, name);
    for (int i = 0; d->rx[i]; i++) {
        tk_pre *p = tk_add_pre(t);
        if (!p)
            return LMP_ENOMEM;
        p->type = TK_P_SPLIT;
        p->behavior = TK_B_ISOLATED;
        p->lit_is_regex = true;
        p->lit_len = strlen(d->rx[i]);
        if (!(p->lit = malloc(p->lit_len + 1)))
            return lmp_err(LMP_ENOMEM, "%s: out of memory", name);
        memcpy(p->lit, d->rx[i], p->lit_len + 1);
        if ((rc = tk_regex(&p->re, d->rx[i], p->lit_len, name, true)))
            return rc;
    }
    tk_pre *p = tk_add_pre(t);
    if (!p)
        return LMP_ENOMEM;
    p->type = TK_P_BYTELEVEL; /* the mapping only: the regexes above did the splitting */
    t->ignore_merges = d->ignore_merges;
    return 0;
}

/* ---------------------------------------------------------------- reader ----------- */

static const lmp_gguf_kv *find_arr(const lmp_gguf_reader *r, const char *key, lmp_gguf_type at)
{
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(r, key);
    if (!kv || kv->type != LMP_GGUF_ARRAY || kv->arr_type != at)
        return NULL;
    return kv;
}

static int get_id(const lmp_gguf_reader *r, const lmp_tokenizer *t, const char *key, int32_t *dst)
{
    int64_t v;
    int rc = lmp_gguf_get_int(r, key, &v);
    if (rc == LMP_ENOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (v < 0 || v >= t->n_vocab) {
        /* llama.cpp treats -1 as "none" */
        if (v == -1 || v == 0xFFFFFFFFll) {
            *dst = -1;
            return 0;
        }
        return lmp_err(LMP_EFORMAT, "%s: %s = %lld is outside the vocabulary (%d tokens)", t->name, key, (long long)v,
                       (int)t->n_vocab);
    }
    *dst = (int32_t)v;
    return 0;
}

static int get_flag(const lmp_gguf_reader *r, const char *key, bool *dst)
{
    const lmp_gguf_kv *kv = lmp_gguf_find_kv(r, key);
    if (kv && kv->type == LMP_GGUF_BOOL)
        *dst = kv->v.b;
    return 0;
}

static char *dup_n(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = 0;
    }
    return d;
}

/* tokenizer.chat_template, and the named ones listed in tokenizer.chat_templates. */
static int read_gguf_templates(const lmp_gguf_reader *r, lmp_tokenizer *t)
{
    const char *s = NULL;
    if (lmp_gguf_get_str(r, "tokenizer.chat_template", &s) == 0 && !(t->chat_template = dup_n(s, strlen(s))))
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    const lmp_gguf_kv *names = find_arr(r, "tokenizer.chat_templates", LMP_GGUF_STRING);
    if (!names || !names->n)
        return 0;
    if (!(t->tmpl_name = calloc(names->n, sizeof(char *))) || !(t->tmpl_text = calloc(names->n, sizeof(char *))))
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    char **arr = names->arr;
    for (uint64_t i = 0; i < names->n; i++) {
        char key[320];
        snprintf(key, sizeof key, "tokenizer.chat_template.%.*s", (int)(names->arr_lens[i] < 256 ? names->arr_lens[i] : 256),
                 arr[i]);
        if (lmp_gguf_get_str(r, key, &s)) {
            lmp_warn("%s: tokenizer.chat_templates names \"%s\" but %s is missing", t->name, arr[i], key);
            continue;
        }
        t->tmpl_name[t->n_templates] = dup_n(arr[i], names->arr_lens[i]);
        t->tmpl_text[t->n_templates] = dup_n(s, strlen(s));
        if (!t->tmpl_name[t->n_templates] || !t->tmpl_text[t->n_templates])
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        t->n_templates++;
    }
    return 0;
}

int lmp_tokenizer_from_gguf(lmp_tokenizer **tokp, const lmp_gguf_reader *r)
{
    int rc = 0;
    const char *model = NULL, *pre = NULL;
    const char *fname = r->path ? r->path : "gguf";
    lmp_tokenizer *t = calloc(1, sizeof *t);
    *tokp = NULL;
    if (!t || !(t->name = malloc(strlen(fname) + 1))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto cleanup;
    }
    strcpy(t->name, fname);
    t->from_gguf = true;
    t->bos = t->eos = t->pad = t->unk_id = -1;
    if (lmp_gguf_get_str(r, "tokenizer.ggml.model", &model)) {
        rc = lmp_err(LMP_ENOTFOUND, "%s: no tokenizer.ggml.model (not a GGUF with a vocabulary)", t->name);
        goto cleanup;
    }
    bool llama = !strcmp(model, "llama"), gpt2 = !strcmp(model, "gpt2");
    if (!llama && !gpt2) {
        rc = lmp_err(LMP_EUNSUPPORTED, "%s: tokenizer.ggml.model \"%s\" is not supported (llama, gpt2)", t->name, model);
        goto cleanup;
    }
    const lmp_gguf_kv *toks = find_arr(r, "tokenizer.ggml.tokens", LMP_GGUF_STRING);
    if (!toks || toks->n == 0 || toks->n > INT32_MAX / 2) {
        rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.tokens is missing or not a string array", t->name);
        goto cleanup;
    }
    int32_t n = (int32_t)toks->n;
    t->n_vocab = t->n_model = n;
    t->pieces = calloc((size_t)n, sizeof(tk_str));
    t->ttype = malloc((size_t)n);
    if (!t->pieces || !t->ttype) {
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        goto cleanup;
    }
    char **strs = toks->arr;
    for (int32_t i = 0; i < n; i++) {
        if (!lmp_utf8_valid(strs[i], toks->arr_lens[i])) {
            rc = lmp_err(LMP_EFORMAT, "%s: token %d of tokenizer.ggml.tokens is not valid UTF-8 (or holds a NUL)",
                         t->name, (int)i);
            goto cleanup;
        }
        t->pieces[i] = tk_str_dup(strs[i], toks->arr_lens[i]);
        if (!t->pieces[i].s) {
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            goto cleanup;
        }
        t->ttype[i] = TK_T_NORMAL;
    }
    const lmp_gguf_kv *tt = find_arr(r, "tokenizer.ggml.token_type", LMP_GGUF_I32);
    if (tt) {
        if (tt->n < (uint64_t)n) {
            rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.token_type has %llu entries for %d tokens", t->name,
                         (unsigned long long)tt->n, (int)n);
            goto cleanup;
        }
        const int32_t *ty = tt->arr;
        for (int32_t i = 0; i < n; i++)
            t->ttype[i] = ty[i] >= 1 && ty[i] <= 6 ? (uint8_t)ty[i] : TK_T_NORMAL;
    }
    if ((rc = tk_strmap_build(&t->vocab, t->pieces, n, t->name)))
        goto cleanup;

    if (llama) {
        t->model = TK_MODEL_SCORES;
        t->scores = calloc((size_t)n, sizeof(float));
        if (!t->scores) {
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            goto cleanup;
        }
        const lmp_gguf_kv *sc = find_arr(r, "tokenizer.ggml.scores", LMP_GGUF_F32);
        const lmp_gguf_kv *isc = find_arr(r, "tokenizer.ggml.scores", LMP_GGUF_I32);
        if ((sc && sc->n < (uint64_t)n) || (isc && isc->n < (uint64_t)n)) {
            rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.scores is shorter than the vocabulary", t->name);
            goto cleanup;
        }
        for (int32_t i = 0; i < n; i++)
            t->scores[i] = sc ? ((const float *)sc->arr)[i] : isc ? (float)((const int32_t *)isc->arr)[i] : 0.0f;
        t->byte_fallback = true;
        t->bos = 1 < n ? 1 : -1;
        t->eos = 2 < n ? 2 : -1;
        t->unk_id = 0;
        t->add_space_prefix = true;
        get_flag(r, "tokenizer.ggml.add_space_prefix", &t->add_space_prefix);
        /* normalizers: [Prepend U+2581 when add_space_prefix], Replace ' ' -> U+2581 */
        tk_norm *nm;
        if (t->add_space_prefix) {
            if (!(nm = tk_add_norm(t)) || !(nm->pat = malloc(4))) {
                rc = LMP_ENOMEM;
                goto cleanup;
            }
            nm->type = TK_N_PREPEND;
            memcpy(nm->pat, "\xE2\x96\x81", 4);
            nm->pat_len = 3;
        }
        if (!(nm = tk_add_norm(t)) || !(nm->pat = malloc(2)) || !(nm->content = malloc(4))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        nm->type = TK_N_REPLACE;
        memcpy(nm->pat, " ", 2);
        nm->pat_len = 1;
        memcpy(nm->content, "\xE2\x96\x81", 4);
        nm->content_len = 3;
        /* decoders as HF's Llama: Replace U+2581 -> ' ', ByteFallback, Fuse, Strip(' ', 1, 0) */
        tk_dec *d;
        if (!(d = tk_add_dec(t)) || !(d->pat = malloc(4)) || !(d->content = malloc(2))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        d->type = TK_D_REPLACE;
        memcpy(d->pat, "\xE2\x96\x81", 4);
        d->pat_len = 3;
        memcpy(d->content, " ", 2);
        d->content_len = 1;
        if (!(d = tk_add_dec(t))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        d->type = TK_D_BYTEFALLBACK;
        if (!(d = tk_add_dec(t))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        d->type = TK_D_FUSE;
        if (!(d = tk_add_dec(t)) || !(d->content = malloc(2))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        d->type = TK_D_STRIP;
        memcpy(d->content, " ", 2);
        d->content_len = 1;
        d->start = t->add_space_prefix ? 1 : 0;
    } else {
        t->model = TK_MODEL_MERGES;
        t->byte_level = true;
        t->sanitize_utf8 = true;
        if (lmp_gguf_get_str(r, "tokenizer.ggml.pre", &pre))
            pre = "default"; /* llama.cpp's fallback for old files */
        if ((rc = tk_gguf_pre_setup(t, pre, t->name)))
            goto cleanup;
        const tk_pre_def *d = pre_find(pre);
        if (!(t->gguf_pre = malloc(strlen(pre) + 1))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        strcpy(t->gguf_pre, pre);
        const lmp_gguf_kv *mg = find_arr(r, "tokenizer.ggml.merges", LMP_GGUF_STRING);
        if (!mg) {
            rc = lmp_err(LMP_EFORMAT, "%s: gpt2 vocabulary without tokenizer.ggml.merges", t->name);
            goto cleanup;
        }
        t->merge_list = malloc(sizeof *t->merge_list * (size_t)(mg->n ? mg->n : 1));
        if (!t->merge_list) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        char **ms = mg->arr;
        for (uint64_t i = 0; i < mg->n; i++) {
            const char *s = ms[i];
            size_t l = mg->arr_lens[i];
            const char *sp = l > 1 ? memchr(s + 1, ' ', l - 1) : NULL;
            if (!sp) {
                rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%s\" has no space", t->name,
                             (unsigned long long)i, s);
                goto cleanup;
            }
            int32_t a = tk_strmap_get(&t->vocab, s, (size_t)(sp - s));
            int32_t b = tk_strmap_get(&t->vocab, sp + 1, l - (size_t)(sp - s) - 1);
            if (a < 0 || b < 0) {
                rc = lmp_err(LMP_EFORMAT, "%s: tokenizer.ggml.merges[%llu] \"%s\" names a token not in the vocabulary",
                             t->name, (unsigned long long)i, s);
                goto cleanup;
            }
            t->merge_list[t->n_merges][0] = a;
            t->merge_list[t->n_merges][1] = b;
            t->n_merges++;
        }
        t->add_space_prefix = false;
        tk_dec *dd = tk_add_dec(t);
        if (!dd) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        dd->type = TK_D_BYTELEVEL;
        (void)d;
    }
    if ((rc = get_id(r, t, "tokenizer.ggml.bos_token_id", &t->bos)) ||
        (rc = get_id(r, t, "tokenizer.ggml.eos_token_id", &t->eos)) ||
        (rc = get_id(r, t, "tokenizer.ggml.unknown_token_id", &t->unk_id)) ||
        (rc = get_id(r, t, "tokenizer.ggml.padding_token_id", &t->pad)))
        goto cleanup;
    bool add_bos = llama, add_eos = false;
    if (gpt2) {
        const tk_pre_def *d = pre_find(pre);
        add_bos = d && d->add_bos;
    }
    get_flag(r, "tokenizer.ggml.add_bos_token", &add_bos);
    get_flag(r, "tokenizer.ggml.add_eos_token", &add_eos);
    if (add_bos && t->bos >= 0) {
        if (!(t->prefix = malloc(sizeof(int32_t)))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        t->prefix[0] = t->bos;
        t->n_prefix = 1;
    }
    if (add_eos && t->eos >= 0) {
        if (!(t->suffix = malloc(sizeof(int32_t)))) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        t->suffix[0] = t->eos;
        t->n_suffix = 1;
    }
    if ((rc = read_gguf_templates(r, t)))
        goto cleanup;
    /* control, unknown and user-defined tokens are split out of the raw text first */
    int n_added = 0;
    for (int32_t i = 0; i < n; i++)
        if (t->ttype[i] == TK_T_CONTROL || t->ttype[i] == TK_T_UNKNOWN || t->ttype[i] == TK_T_USER)
            n_added++;
    t->added = calloc((size_t)(n_added ? n_added : 1), sizeof(tk_added));
    if (!t->added) {
        rc = LMP_ENOMEM;
        goto cleanup;
    }
    for (int32_t i = 0; i < n; i++) {
        if (!(t->ttype[i] == TK_T_CONTROL || t->ttype[i] == TK_T_UNKNOWN || t->ttype[i] == TK_T_USER))
            continue;
        tk_added *a = &t->added[t->n_added++];
        a->id = i;
        a->content = tk_str_dup(t->pieces[i].s, t->pieces[i].len);
        if (!a->content.s) {
            rc = LMP_ENOMEM;
            goto cleanup;
        }
        a->special = t->ttype[i] != TK_T_USER;
    }
    if ((rc = tk_finalize(t)))
        goto cleanup;
    *tokp = t;
    t = NULL;
cleanup:
    if (rc == LMP_ENOMEM && strstr(lmp_errmsg(), "memory") == NULL)
        lmp_err(LMP_ENOMEM, "%s: out of memory", fname);
    lmp_tokenizer_free(t);
    return rc;
}

/* ---------------------------------------------------------------- writer ----------- */

/* The regex list a tokenizer.json pre-tokenizer amounts to, in llama.cpp's terms (a list
 * of Isolated splits followed by the byte-level mapping). Returns the count or -1 with a
 * reason in why. */
static int pre_as_list(const lmp_tokenizer *t, const char **rx, int max, char *why, size_t wn)
{
    int n = 0;
    for (int k = 0; k < t->n_pres; k++) {
        const tk_pre *p = &t->pres[k];
        if (p->mapped || p->type == TK_P_PUNCT || p->type == TK_P_WSPLIT) {
            snprintf(why, wn, "%s", p->mapped ? "a pre-tokenizer step after ByteLevel"
                                             : "a Punctuation or WhitespaceSplit pre-tokenizer");
            return -1;
        }
        if (n >= max) {
            snprintf(why, wn, "too many pre-tokenizer steps");
            return -1;
        }
        switch (p->type) {
        case TK_P_SPLIT:
            if (!p->lit_is_regex || p->behavior != TK_B_ISOLATED || p->invert) {
                snprintf(why, wn, "Split pre-tokenizer other than an Isolated regex");
                return -1;
            }
            rx[n++] = p->lit;
            break;
        case TK_P_DIGITS:
            rx[n++] = p->individual ? "\\p{N}" : "\\p{N}+";
            break;
        case TK_P_BYTELEVEL:
            if (p->add_prefix_space) {
                snprintf(why, wn, "ByteLevel add_prefix_space=true");
                return -1;
            }
            if (p->use_regex)
                rx[n++] = tk_gpt2_regex;
            break;
        default:
            snprintf(why, wn, "Metaspace pre-tokenizer in a byte-level tokenizer");
            return -1;
        }
    }
    return n;
}

/* tokenizer.chat_template and, for named templates, tokenizer.chat_template.<name> plus
 * the tokenizer.chat_templates list (gguf-py's add_chat_template: names reduced to
 * [A-Za-z0-9_]). */
static int write_templates(const lmp_tokenizer *t, lmp_gguf_writer *w)
{
    int rc = 0;
    if (t->chat_template && (rc = lmp_gguf_set_str(w, "tokenizer.chat_template", t->chat_template)))
        return rc;
    if (!t->n_templates)
        return 0;
    char **names = calloc((size_t)t->n_templates, sizeof(char *));
    if (!names)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    for (int k = 0; k < t->n_templates && !rc; k++) {
        size_t n = strlen(t->tmpl_name[k]);
        char *key = malloc(n + 32);
        if (!key || !(names[k] = malloc(n + 1))) {
            free(key);
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            break;
        }
        for (size_t i = 0; i <= n; i++) {
            char ch = t->tmpl_name[k][i];
            names[k][i] = !ch || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ? ch : '_';
        }
        snprintf(key, n + 32, "tokenizer.chat_template.%s", names[k]);
        rc = lmp_gguf_set_str(w, key, t->tmpl_text[k]);
        free(key);
    }
    if (!rc)
        rc = lmp_gguf_set_arr_str(w, "tokenizer.chat_templates", (const char *const *)names, NULL,
                                  (uint64_t)t->n_templates);
    for (int k = 0; k < t->n_templates; k++)
        free(names[k]);
    free(names);
    return rc;
}

static int write_ids(const lmp_tokenizer *t, lmp_gguf_writer *w)
{
    int rc;
    int32_t unk = t->unk_id;
    if ((t->bos >= 0 && (rc = lmp_gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)t->bos))) ||
        (t->eos >= 0 && (rc = lmp_gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)t->eos))) ||
        (unk >= 0 && (rc = lmp_gguf_set_u32(w, "tokenizer.ggml.unknown_token_id", (uint32_t)unk))) ||
        (t->pad >= 0 && (rc = lmp_gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)t->pad))))
        return rc;
    bool add_bos = t->n_prefix > 0, add_eos = t->n_suffix > 0;
    if (t->n_prefix > 1 || t->n_suffix > 1 || (add_bos && t->prefix[0] != t->bos) ||
        (add_eos && t->suffix[0] != t->eos))
        return lmp_err(LMP_EUNSUPPORTED, "%s: the post-processor template adds more than a BOS and an EOS token, "
                                         "which GGUF cannot express", t->name);
    if ((rc = lmp_gguf_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos)) ||
        (rc = lmp_gguf_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos)))
        return rc;
    return 0;
}

int lmp_tokenizer_write_gguf(const lmp_tokenizer *t, lmp_gguf_writer *w, int32_t n_rows)
{
    int rc = 0;
    for (int k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        if (a->lstrip || a->rstrip || a->single_word) {
            lmp_warn("%s: added token \"%.*s\" has lstrip/rstrip/single_word, which GGUF cannot hold "
                     "(the GGUF keeps the token without them)", t->name, (int)a->content.len, a->content.s);
            break;
        }
    }
    rc = write_templates(t, w);
    if (rc)
        return rc;
    /* llama.cpp sizes the embedding by the vocabulary: pad with [PADn] tokens up to the
     * model's rows, as convert_hf_to_gguf does. */
    int32_t n = n_rows > t->n_vocab ? n_rows : t->n_vocab;
    const char **strs = NULL;
    uint64_t *lens = NULL;
    int32_t *types = NULL;
    float *scores = NULL;
    char **pads = NULL;
    char **mstr = NULL;
    strs = malloc(sizeof(char *) * (size_t)n);
    lens = malloc(sizeof(uint64_t) * (size_t)n);
    types = malloc(sizeof(int32_t) * (size_t)n);
    pads = calloc((size_t)n, sizeof(char *));
    if (!strs || !lens || !types || !pads) {
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        goto cleanup;
    }
    for (int32_t i = 0; i < n; i++) {
        if (i < t->n_vocab && t->pieces[i].s) {
            strs[i] = t->pieces[i].s;
            lens[i] = t->pieces[i].len;
            types[i] = t->ttype[i];
        } else {
            if (!(pads[i] = malloc(24))) {
                rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
                goto cleanup;
            }
            snprintf(pads[i], 24, "[PAD%d]", (int)i);
            strs[i] = pads[i];
            lens[i] = strlen(pads[i]);
            types[i] = TK_T_UNUSED;
        }
    }
    if (t->from_gguf && t->model == TK_MODEL_SCORES) {
        /* a GGUF llama vocabulary: copy as read */
        if (!(scores = malloc(sizeof(float) * (size_t)n))) {
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            goto cleanup;
        }
        for (int32_t i = 0; i < n; i++)
            scores[i] = i < t->n_vocab ? t->scores[i] : -1e9f;
        if ((rc = lmp_gguf_set_str(w, "tokenizer.ggml.model", "llama")) ||
            (rc = lmp_gguf_set_str(w, "tokenizer.ggml.pre", "default")) ||
            (rc = lmp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n)) ||
            (rc = lmp_gguf_set_arr(w, "tokenizer.ggml.scores", LMP_GGUF_F32, scores, (uint64_t)n)) ||
            (rc = lmp_gguf_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, types, (uint64_t)n)) ||
            (rc = lmp_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", t->add_space_prefix)))
            goto cleanup;
        rc = write_ids(t, w);
        goto cleanup;
    }
    if (!t->byte_level) {
        /* SentencePiece-style: normalizers must be [Prepend U+2581]? + Replace ' ' -> U+2581,
         * no pre-tokenizer, since that is all llama.cpp's SPM tokenizer does. */
        bool prefix = false, ok = t->n_pres == 0 && !t->ignore_merges;
        int k = 0;
        if (ok && k < t->n_norms && t->norms[k].type == TK_N_PREPEND) {
            ok = t->norms[k].pat_len == 3 && !memcmp(t->norms[k].pat, "\xE2\x96\x81", 3);
            prefix = true;
            k++;
        }
        if (ok && k < t->n_norms && t->norms[k].type == TK_N_REPLACE && !t->norms[k].re &&
            t->norms[k].pat_len == 1 && t->norms[k].pat[0] == ' ' && t->norms[k].content_len == 3 &&
            !memcmp(t->norms[k].content, "\xE2\x96\x81", 3))
            k++;
        else
            ok = false;
        if (!ok || k != t->n_norms) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: GGUF \"llama\" vocabularies need the SentencePiece pipeline "
                                           "(normalizer Prepend \"\u2581\" + Replace \" \" -> \"\u2581\", no pre-tokenizer, "
                                           "no ignore_merges); this tokenizer differs", t->name);
            goto cleanup;
        }
        /* score of a token = -(rank of the first merge that makes it): llama.cpp merges the
         * adjacent pair whose result scores highest, which is then the lowest HF rank. */
        if (!(scores = malloc(sizeof(float) * (size_t)n))) {
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            goto cleanup;
        }
        for (int32_t i = 0; i < n; i++)
            scores[i] = -1e9f;
        for (int32_t m = t->n_merges - 1; m >= 0; m--) {
            int32_t rank, nid;
            if (tk_pair_get(&t->merges, t->merge_list[m][0], t->merge_list[m][1], &rank, &nid) && rank == m)
                scores[nid] = -(float)m;
        }
        /* llama.cpp merges any adjacent pair whose concatenation is a token; HF only listed
         * pairs. Count pairs where the two could disagree. */
        int64_t unlisted = 0;
        for (int32_t i = 0; i < t->n_model; i++) {
            const tk_str *p = &t->pieces[i];
            if (!p->s || t->ttype[i] != TK_T_NORMAL)
                continue;
            for (uint32_t cut = 1; cut < p->len; cut++) {
                if (((unsigned char)p->s[cut] & 0xC0) == 0x80)
                    continue;
                int32_t a = tk_strmap_get(&t->vocab, p->s, cut), b = tk_strmap_get(&t->vocab, p->s + cut, p->len - cut);
                int32_t rk, nid;
                if (a >= 0 && b >= 0 && !tk_pair_get(&t->merges, a, b, &rk, &nid))
                    unlisted++;
            }
        }
        if (unlisted)
            lmp_warn("%s: %lld token splits are not HF merges; llama.cpp may tokenize some words differently",
                     t->name, (long long)unlisted);
        if ((rc = lmp_gguf_set_str(w, "tokenizer.ggml.model", "llama")) ||
            (rc = lmp_gguf_set_str(w, "tokenizer.ggml.pre", "default")) ||
            (rc = lmp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n)) ||
            (rc = lmp_gguf_set_arr(w, "tokenizer.ggml.scores", LMP_GGUF_F32, scores, (uint64_t)n)) ||
            (rc = lmp_gguf_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, types, (uint64_t)n)) ||
            (rc = lmp_gguf_set_bool(w, "tokenizer.ggml.add_space_prefix", prefix)))
            goto cleanup;
        rc = write_ids(t, w);
        goto cleanup;
    }
    /* byte-level BPE */
    const char *pre = t->gguf_pre;
    if (!pre && is_falcon(t))
        pre = "falcon";
    if (!pre) {
        const char *rx[8];
        char why[128] = "";
        int nr = pre_as_list(t, rx, 8, why, sizeof why);
        for (int k = 0; k < t->n_norms && nr >= 0; k++)
            if (t->norms[k].type != TK_N_NFC) {
                snprintf(why, sizeof why, "a normalizer other than NFC");
                nr = -1;
            }
        for (size_t i = 0; nr >= 0 && i < N_PRE && !pre; i++) {
            int m = 0;
            while (g_pre[i].rx[m])
                m++;
            if (m != nr)
                continue;
            bool same = true;
            for (int j = 0; j < m; j++)
                if (strcmp(g_pre[i].rx[j], rx[j]))
                    same = false;
            if (same && g_pre[i].ignore_merges == t->ignore_merges)
                pre = g_pre[i].names; /* first name of the '|' list, cut below */
        }
        if (!pre) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: cannot name this pre-tokenizer for tokenizer.ggml.pre%s%s", t->name,
                         why[0] ? ": " : " (no llama.cpp pre-tokenizer has these regexes)", why);
            goto cleanup;
        }
    }
    char prename[64];
    size_t pl = strcspn(pre, "|");
    snprintf(prename, sizeof prename, "%.*s", (int)pl, pre);
    if (!(mstr = calloc((size_t)(t->n_merges ? t->n_merges : 1), sizeof(char *)))) {
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        goto cleanup;
    }
    for (int32_t m = 0; m < t->n_merges; m++) {
        const tk_str *a = &t->pieces[t->merge_list[m][0]], *b = &t->pieces[t->merge_list[m][1]];
        if (memchr(a->s, ' ', a->len) || memchr(b->s, ' ', b->len)) {
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: merge %d has a token with a space, which GGUF merges cannot hold",
                         t->name, (int)m);
            goto cleanup;
        }
        if (!(mstr[m] = malloc((size_t)a->len + b->len + 2))) {
            rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            goto cleanup;
        }
        memcpy(mstr[m], a->s, a->len);
        mstr[m][a->len] = ' ';
        memcpy(mstr[m] + a->len + 1, b->s, b->len);
        mstr[m][a->len + 1 + b->len] = 0;
    }
    if ((rc = lmp_gguf_set_str(w, "tokenizer.ggml.model", "gpt2")) ||
        (rc = lmp_gguf_set_str(w, "tokenizer.ggml.pre", prename)) ||
        (rc = lmp_gguf_set_arr_str(w, "tokenizer.ggml.tokens", strs, lens, (uint64_t)n)) ||
        (rc = lmp_gguf_set_arr(w, "tokenizer.ggml.token_type", LMP_GGUF_I32, types, (uint64_t)n)) ||
        (rc = lmp_gguf_set_arr_str(w, "tokenizer.ggml.merges", (const char *const *)mstr, NULL, (uint64_t)t->n_merges)))
        goto cleanup;
    rc = write_ids(t, w);
cleanup:
    if (mstr)
        for (int32_t m = 0; m < t->n_merges; m++)
            free(mstr[m]);
    free(mstr);
    if (pads)
        for (int32_t i = 0; i < n; i++)
            free(pads[i]);
    free(pads);
    free(strs);
    free(lens);
    free(types);
    free(scores);
    return rc;
}
