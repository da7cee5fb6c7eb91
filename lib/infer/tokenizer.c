/*
 * The tokenizer engine: what Hugging Face `tokenizers` does in Tokenizer::encode and
 * decode, for the BPE model. Encoding runs, on raw bytes: added-token extraction (raw,
 * then normalized), normalizers, pre-tokenizers, the BPE model (a heap over adjacent pairs,
 * a per-call cache of pre-tokenized chunks), the post-processor. Decoding runs the decoder
 * chain. The loaders (tokenizer_json.c, tokenizer_gguf.c) only fill struct lmp_tokenizer.
 *
 * Not here: file formats, the regex tables of GGUF pre-tokenizer names.
 *
 * Byte-level vocabularies are held twice: as written ("Ġthe") and decoded to the bytes
 * they stand for (" the"); the model runs on raw bytes, which is the same computation as
 * HF's map-to-alphabet-then-merge, without the mapping.
 */
#include "tokenizer_internal.h"

#include <utf8proc.h>

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- strings, maps ---- */

tk_str tk_str_dup(const char *s, size_t len)
{
    tk_str r = {NULL, 0};
    r.s = malloc(len + 1);
    if (!r.s)
        return r;
    if (len)
        memcpy(r.s, s, len);
    r.s[len] = 0;
    r.len = (uint32_t)len;
    return r;
}

static inline uint64_t hash_bytes(const void *p, size_t n)
{
    return lmp_fnv1a(LMP_FNV_INIT, p, n);
}

int tk_strmap_build(tk_strmap *m, const tk_str *strs, int32_t n, const char *name)
{
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 16)
        cap <<= 1;
    m->slot = malloc(sizeof(int32_t) * cap);
    if (!m->slot)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", name);
    memset(m->slot, 0xff, sizeof(int32_t) * cap);
    m->mask = cap - 1;
    m->strs = strs;
    for (int32_t i = 0; i < n; i++) {
        if (!strs[i].s)
            continue;
        uint32_t h = (uint32_t)hash_bytes(strs[i].s, strs[i].len) & m->mask;
        while (m->slot[h] >= 0) {
            const tk_str *o = &strs[m->slot[h]];
            if (o->len == strs[i].len && memcmp(o->s, strs[i].s, o->len) == 0)
                break; /* duplicate: the first id wins */
            h = (h + 1) & m->mask;
        }
        if (m->slot[h] < 0)
            m->slot[h] = i;
    }
    return 0;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t len)
{
    if (!m->slot)
        return -1;
    uint32_t h = (uint32_t)hash_bytes(s, len) & m->mask;
    for (;;) {
        int32_t id = m->slot[h];
        if (id < 0)
            return -1;
        const tk_str *o = &m->strs[id];
        if (o->len == len && memcmp(o->s, s, len) == 0)
            return id;
        h = (h + 1) & m->mask;
    }
}

static inline uint64_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

int tk_pairmap_build(lmp_tokenizer *t)
{
    tk_pairmap *m = &t->merges;
    uint32_t cap = 16;
    while (cap < (uint32_t)t->n_merges * 2 + 16)
        cap <<= 1;
    m->key = calloc(cap, sizeof(uint64_t));
    m->rank = malloc(sizeof(int32_t) * cap);
    m->new_id = malloc(sizeof(int32_t) * cap);
    if (!m->key || !m->rank || !m->new_id)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    m->mask = cap - 1;
    for (int32_t i = 0; i < t->n_merges; i++) {
        int32_t a = t->merge_list[i][0], b = t->merge_list[i][1];
        const tk_str *sa = &t->pieces[a], *sb = &t->pieces[b];
        char stack[256];
        size_t n = (size_t)sa->len + sb->len;
        char *cat = n <= sizeof stack ? stack : malloc(n);
        if (!cat)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        memcpy(cat, sa->s, sa->len);
        memcpy(cat + sa->len, sb->s, sb->len);
        int32_t nid = tk_strmap_get(&t->vocab, cat, n);
        if (cat != stack)
            free(cat);
        if (nid < 0)
            return lmp_err(LMP_EFORMAT, "%s: merge %d \"%s %s\" makes a token that is not in the vocabulary",
                           t->name, (int)i, sa->s, sb->s);
        uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
        uint32_t h = (uint32_t)pair_hash(k) & m->mask;
        while (m->key[h] && m->key[h] != k)
            h = (h + 1) & m->mask;
        if (m->key[h])
            continue; /* duplicate merge: the first rank wins */
        m->key[h] = k;
        m->rank[h] = i;
        m->new_id[h] = nid;
    }
    return 0;
}

int tk_pair_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id)
{
    if (!m->key)
        return 0;
    uint64_t k = ((uint64_t)(uint32_t)a << 32 | (uint32_t)b) + 1;
    uint32_t h = (uint32_t)pair_hash(k) & m->mask;
    for (;;) {
        uint64_t x = m->key[h];
        if (!x)
            return 0;
        if (x == k) {
            *rank = m->rank[h];
            *new_id = m->new_id[h];
            return 1;
        }
        h = (h + 1) & m->mask;
    }
}

/* ---------------------------------------------------------------- UTF-8 ------------ */

int tk_utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    uint32_t v;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        *cp = 0xFFFFFFFFu;
        return 1;
    }
    /* maximal subpart: the longest prefix of a well-formed sequence (Unicode 3.9, U+FFFD
     * substitution of maximal subparts, which Python and Rust follow) */
    size_t i = 1;
    for (; i <= (size_t)need; i++) {
        if (i >= n) {
            *cp = 0xFFFFFFFFu;
            return (int)i;
        }
        unsigned d = s[i];
        unsigned l = i == 1 ? lo : 0x80, h = i == 1 ? hi : 0xBF;
        if (d < l || d > h) {
            *cp = 0xFFFFFFFFu;
            return (int)i;
        }
        v = v << 6 | (d & 0x3F);
    }
    *cp = v;
    return need + 1;
}

int tk_utf8_encode(uint32_t cp, char *out)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* GPT-2's byte alphabet: printable Latin-1 bytes map to themselves, the other 68 bytes to
 * U+0100.. in byte order. */
static bool printable_byte(unsigned b)
{
    return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
}

uint32_t tk_byte_to_cp(uint8_t b)
{
    if (printable_byte(b))
        return b;
    uint32_t n = 0;
    for (unsigned i = 0; i < b; i++)
        if (!printable_byte(i))
            n++;
    return 256 + n;
}

int tk_cp_to_byte(uint32_t cp)
{
    if (cp < 256)
        return printable_byte(cp) ? (int)cp : -1;
    if (cp >= 256 + 68)
        return -1;
    uint32_t n = cp - 256;
    for (unsigned i = 0; i < 256; i++)
        if (!printable_byte(i) && n-- == 0)
            return (int)i;
    return -1;
}

/* Appends src with each maximal invalid subsequence replaced by U+FFFD. */
static size_t utf8_lossy(const char *src, size_t n, char *dst)
{
    const unsigned char *s = (const unsigned char *)src;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int l = tk_utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFFFFFFu) {
            memcpy(dst + o, "\xEF\xBF\xBD", 3);
            o += 3;
        } else {
            memcpy(dst + o, s + i, (size_t)l);
            o += (size_t)l;
        }
        i += (size_t)l;
    }
    return o;
}

static bool utf8_valid(const char *src, size_t n)
{
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        i += (size_t)tk_utf8_next(s + i, n - i, &cp);
        if (cp == 0xFFFFFFFFu)
            return false;
    }
    return true;
}

/* Unicode White_Space (what Rust's and Oniguruma's \s match). */
static bool is_ws(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* ---------------------------------------------------------------- regex ------------ */

int tk_regex(pcre2_code **re, const char *pat, size_t len, const char *name, bool multiline)
{
    int err;
    PCRE2_SIZE off;
    uint32_t opt = PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF | (multiline ? PCRE2_MULTILINE : 0);
    *re = pcre2_compile((PCRE2_SPTR)pat, len, opt, &err, &off, NULL);
    if (!*re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return lmp_err(LMP_EFORMAT, "%s: bad regex /%.*s/ at offset %zu: %s", name, (int)len, pat,
                       (size_t)off, (const char *)msg);
    }
    pcre2_jit_compile(*re, PCRE2_JIT_COMPLETE); /* falls back to the interpreter if no JIT */
    return 0;
}

/* Punctuation: Rust's is_ascii_punctuation or Unicode P*; WhitespaceSplit: White_Space. */
const char tk_punct_regex[] = "[\\p{P}\\$\\+<=>\\^`\\|~]";
const char tk_ws_regex[] =
    "[\\t-\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}]";

const char tk_gpt2_regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------- work state ------- */

typedef struct {
    size_t off, len;
    int32_t id;    /* >= 0: an extracted added token */
    uint8_t first; /* starts at offset 0 of the original text */
} tk_piece;

typedef struct {
    size_t s, e;
    bool m;
} tk_match;

typedef struct {
    int32_t id;
    uint32_t start, len;
    int32_t prev, next;
} tk_sym;

typedef struct {
    uint64_t key;
    int32_t left, right, new_id;
    uint32_t size;
} tk_hent;

typedef struct {
    uint32_t koff, klen; /* key in ckey */
    uint32_t ioff, n;    /* ids in cids */
} tk_centry;

typedef struct {
    const lmp_tokenizer *t;
    char *buf;
    size_t blen, bcap;
    tk_piece *p, *q;
    size_t np, nq, cp, cq;
    tk_match *mt;
    size_t nm, cm;
    pcre2_match_data *md;
    pcre2_match_context *mctx;
    pcre2_jit_stack *js;
    tk_sym *sym;
    size_t csym;
    tk_hent *heap;
    size_t nh, ch;
    int32_t *out;
    size_t nout, cout;
    /* word cache */
    tk_centry *cent;
    uint32_t cmask, ccount;
    char *ckey;
    size_t nckey, cckey;
    int32_t *cids;
    size_t ncids, ccids;
    /* steps after ByteLevel: the mapped text and mapped offset -> raw offset */
    char *mbuf;
    size_t cmbuf;
    size_t *m2r;
    size_t cm2r;
    int err;
} tk_ctx;

#define GROW(ptr, cap, need, fail)                                                        \
    do {                                                                                 \
        if ((need) > (cap)) {                                                            \
            size_t nc_ = (cap) ? (cap) : 16;                                             \
            while (nc_ < (need))                                                         \
                nc_ *= 2;                                                                \
            void *np_ = realloc((ptr), nc_ * sizeof(*(ptr)));                            \
            if (!np_) {                                                                  \
                fail;                                                                    \
            }                                                                            \
            (ptr) = np_;                                                                 \
            (cap) = nc_;                                                                 \
        }                                                                                \
    } while (0)

static int nomem(tk_ctx *c)
{
    c->err = lmp_err(LMP_ENOMEM, "%s: out of memory while tokenizing", c->t->name);
    return c->err;
}

/* Reserves n bytes at the end of buf; returns the offset. */
static int buf_reserve(tk_ctx *c, size_t n, size_t *off)
{
    GROW(c->buf, c->bcap, c->blen + n + 1, return nomem(c));
    *off = c->blen;
    return 0;
}

static int emit(tk_ctx *c, size_t off, size_t len, int32_t id, uint8_t first)
{
    if (len == 0 && id < 0)
        return 0; /* HF drops empty splits */
    GROW(c->q, c->cq, c->nq + 1, return nomem(c));
    c->q[c->nq++] = (tk_piece){off, len, id, first};
    return 0;
}

static void swap_pieces(tk_ctx *c)
{
    tk_piece *tp = c->p;
    size_t tc = c->cp;
    c->p = c->q;
    c->cp = c->cq;
    c->np = c->nq;
    c->q = tp;
    c->cq = tc;
    c->nq = 0;
}

static int add_match(tk_ctx *c, size_t s, size_t e, bool m)
{
    GROW(c->mt, c->cm, c->nm + 1, return nomem(c));
    c->mt[c->nm++] = (tk_match){s, e, m};
    return 0;
}

/* HF Pattern::find_matches for a regex: matches and the gaps between them, covering
 * [0, len); empty matches advance by one character. */
static int regex_matches(tk_ctx *c, const pcre2_code *re, const char *s, size_t len)
{
    c->nm = 0;
    if (len == 0)
        return add_match(c, 0, 0, false);
    size_t pos = 0, prev = 0;
    while (pos <= len) {
        int rc = pcre2_match(re, (PCRE2_SPTR)s, len, pos, 0, c->md, c->mctx);
        if (rc == PCRE2_ERROR_NOMATCH)
            break;
        if (rc < 0 && rc != 0) {
            PCRE2_UCHAR msg[160];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return c->err = lmp_err(LMP_EINVAL, "%s: regex match failed: %s", c->t->name, (const char *)msg);
        }
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (prev != ms && add_match(c, prev, ms, false))
            return c->err;
        if (add_match(c, ms, me, true))
            return c->err;
        prev = me;
        if (me == ms) {
            if (me >= len)
                break;
            uint32_t cp;
            pos = me + (size_t)tk_utf8_next((const unsigned char *)s + me, len - me, &cp);
        } else {
            pos = me;
        }
    }
    if (prev != len && add_match(c, prev, len, false))
        return c->err;
    return 0;
}

/* Literal pattern (HF escapes it into a regex: same matches). */
static int literal_matches(tk_ctx *c, const char *pat, size_t plen, const char *s, size_t len)
{
    c->nm = 0;
    if (plen == 0)
        return add_match(c, 0, len, false);
    if (len == 0)
        return add_match(c, 0, 0, false);
    size_t prev = 0;
    for (size_t i = 0; i + plen <= len;) {
        if (memcmp(s + i, pat, plen) == 0) {
            if (prev != i && add_match(c, prev, i, false))
                return c->err;
            if (add_match(c, i, i + plen, true))
                return c->err;
            i += plen;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev != len && add_match(c, prev, len, false))
        return c->err;
    return 0;
}

/* NormalizedString::split: applies a delimiter behavior to c->mt and emits the pieces of
 * piece p (content at c->buf + p->off). */
static int split_emit(tk_ctx *c, const tk_piece *p, int behavior, bool invert)
{
    tk_match *m = c->mt;
    size_t n = c->nm, k = 0;
    if (invert)
        for (size_t i = 0; i < n; i++)
            m[i].m = !m[i].m;
    /* compute (offsets, remove) in place: m[i].m now means "remove" */
    switch (behavior) {
    case TK_B_ISOLATED:
        for (size_t i = 0; i < n; i++)
            m[i].m = false;
        k = n;
        break;
    case TK_B_REMOVED:
        k = n;
        break;
    case TK_B_CONTIGUOUS: {
        bool prev = false;
        for (size_t i = 0; i < n; i++) {
            bool im = m[i].m;
            if (im == prev && k > 0)
                m[k - 1].e = m[i].e;
            else
                m[k++] = (tk_match){m[i].s, m[i].e, false};
            prev = im;
        }
        break;
    }
    case TK_B_MERGED_PREV: {
        bool prev = false;
        for (size_t i = 0; i < n; i++) {
            bool im = m[i].m;
            if (im && !prev && k > 0)
                m[k - 1].e = m[i].e;
            else
                m[k++] = (tk_match){m[i].s, m[i].e, false};
            prev = im;
        }
        break;
    }
    case TK_B_MERGED_NEXT: {
        /* built right to left, written from the end of the array */
        bool prev = false;
        size_t w = n;
        for (size_t i = n; i-- > 0;) {
            bool im = m[i].m;
            tk_match cur = m[i];
            if (im && !prev && w < n)
                m[w].s = cur.s;
            else
                m[--w] = (tk_match){cur.s, cur.e, false};
            prev = im;
        }
        memmove(m, m + w, (n - w) * sizeof *m);
        k = n - w;
        break;
    }
    }
    for (size_t i = 0; i < k; i++) {
        if (m[i].m)
            continue;
        uint8_t first = p->first && m[i].s == 0;
        if (emit(c, p->off + m[i].s, m[i].e - m[i].s, -1, first))
            return c->err;
    }
    return 0;
}

/* ---------------------------------------------------------------- added tokens ----- */

static bool word_char_at(tk_ctx *c, const char *s, size_t len, size_t at, bool before)
{
    const pcre2_code *w = c->t->word_re;
    if (!w)
        return false;
    size_t pos = at;
    if (before) {
        if (at == 0)
            return false;
        pos = at - 1;
        while (pos > 0 && ((unsigned char)s[pos] & 0xC0) == 0x80)
            pos--;
    } else if (at >= len) {
        return false;
    }
    uint32_t cp;
    int l = tk_utf8_next((const unsigned char *)s + pos, len - pos, &cp);
    if (cp == 0xFFFFFFFFu)
        return false;
    char tmp[8];
    int n = tk_utf8_encode(cp, tmp);
    (void)l;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md)
        return false;
    int rc = pcre2_match(w, (PCRE2_SPTR)tmp, (size_t)n, 0, PCRE2_ANCHORED, md, NULL);
    pcre2_match_data_free(md);
    return rc >= 0;
}

/* AddedVocabulary::find_matches + split_with_indices over one piece, for the tokens with
 * normalized == want_norm (leftmost-longest, the Aho-Corasick order). */
static int split_added(tk_ctx *c, const tk_piece *p, bool want_norm)
{
    const lmp_tokenizer *t = c->t;
    const char *s = c->buf + p->off;
    size_t len = p->len, start_offset = 0;
    for (size_t i = 0; i < len;) {
        int best = -1;
        size_t blen = 0;
        for (int k = 0; k < t->n_added; k++) {
            const tk_added *a = &t->added[k];
            if (a->normalized != want_norm)
                continue;
            const tk_str *pat = want_norm ? &a->norm : &a->content;
            if (pat->len == 0 || pat->len <= blen || pat->len > len - i)
                continue;
            if ((unsigned char)pat->s[0] != (unsigned char)s[i] || memcmp(pat->s, s + i, pat->len) != 0)
                continue;
            best = k;
            blen = pat->len;
        }
        if (best < 0) {
            i++;
            continue;
        }
        const tk_added *a = &t->added[best];
        size_t ms = i, me = i + blen;
        i = me; /* the matcher resumes after the raw match whatever happens to it */
        if (a->single_word) {
            bool start_space = ms == 0 || !word_char_at(c, s, len, ms, true);
            bool stop_space = me == len || !word_char_at(c, s, len, me, false);
            if (!start_space || !stop_space)
                continue;
        }
        if (a->lstrip) {
            size_t ns = ms;
            while (ns > 0) {
                size_t q = ns - 1;
                while (q > 0 && ((unsigned char)s[q] & 0xC0) == 0x80)
                    q--;
                uint32_t cp;
                tk_utf8_next((const unsigned char *)s + q, len - q, &cp);
                if (!is_ws(cp))
                    break;
                ns = q;
            }
            ms = ns > start_offset ? ns : start_offset;
        }
        if (a->rstrip) {
            while (me < len) {
                uint32_t cp;
                int l = tk_utf8_next((const unsigned char *)s + me, len - me, &cp);
                if (!is_ws(cp))
                    break;
                me += (size_t)l;
            }
        }
        if (start_offset < ms && emit(c, p->off + start_offset, ms - start_offset, -1, p->first && start_offset == 0))
            return c->err;
        if (emit(c, p->off + ms, me - ms, a->id, 0))
            return c->err;
        start_offset = me;
    }
    if (start_offset < len && emit(c, p->off + start_offset, len - start_offset, -1, p->first && start_offset == 0))
        return c->err;
    return 0;
}

static int stage_added(tk_ctx *c, bool want_norm)
{
    bool any = false;
    for (int k = 0; k < c->t->n_added; k++)
        if (c->t->added[k].normalized == want_norm)
            any = true;
    if (!any)
        return 0;
    c->nq = 0;
    for (size_t i = 0; i < c->np; i++) {
        tk_piece p = c->p[i];
        if (p.id >= 0) {
            if (emit(c, p.off, p.len, p.id, p.first))
                return c->err;
            continue;
        }
        if (split_added(c, &p, want_norm))
            return c->err;
    }
    swap_pieces(c);
    return 0;
}

/* ---------------------------------------------------------------- normalizers ------ */

/* Replaces the content of p by the matches' complement joined with `with` (c->mt holds
 * the matches of the pattern). */
static int replace_matches(tk_ctx *c, tk_piece *p, const char *with, size_t wlen)
{
    size_t need = 0;
    for (size_t i = 0; i < c->nm; i++)
        need += c->mt[i].m ? wlen : c->mt[i].e - c->mt[i].s;
    size_t off;
    if (buf_reserve(c, need, &off))
        return c->err;
    char *d = c->buf + off;
    const char *s = c->buf + p->off;
    for (size_t i = 0; i < c->nm; i++) {
        if (c->mt[i].m) {
            memcpy(d, with, wlen);
            d += wlen;
        } else {
            memcpy(d, s + c->mt[i].s, c->mt[i].e - c->mt[i].s);
            d += c->mt[i].e - c->mt[i].s;
        }
    }
    c->blen += need;
    p->off = off;
    p->len = need;
    return 0;
}

static int prepend(tk_ctx *c, tk_piece *p, const char *pre, size_t n)
{
    size_t off;
    if (buf_reserve(c, n + p->len, &off))
        return c->err;
    memcpy(c->buf + off, pre, n);
    memcpy(c->buf + off + n, c->buf + p->off, p->len);
    c->blen += n + p->len;
    p->off = off;
    p->len += n;
    return 0;
}

static int normalize_piece(tk_ctx *c, tk_piece *p)
{
    const lmp_tokenizer *t = c->t;
    for (int k = 0; k < t->n_norms; k++) {
        const tk_norm *nm = &t->norms[k];
        switch (nm->type) {
        case TK_N_PREPEND:
            if (p->len && prepend(c, p, nm->pat, nm->pat_len))
                return c->err;
            break;
        case TK_N_REPLACE:
            if (nm->re ? regex_matches(c, nm->re, c->buf + p->off, p->len)
                       : literal_matches(c, nm->pat, nm->pat_len, c->buf + p->off, p->len))
                return c->err;
            if (replace_matches(c, p, nm->content, nm->content_len))
                return c->err;
            break;
        case TK_N_NFC:
        case TK_N_NFKC: {
            /* Unicode normalization through utf8proc (Unicode composition tables). Text
             * made only of code points below U+00A0 is unchanged by NFC and NFKC. */
            const unsigned char *s = (const unsigned char *)c->buf + p->off;
            size_t i = 0;
            while (i < p->len && s[i] < 0xC2)
                i++;
            if (i == p->len)
                break;
            utf8proc_uint8_t *out = NULL;
            int opts = UTF8PROC_STABLE | UTF8PROC_COMPOSE | (nm->type == TK_N_NFKC ? UTF8PROC_COMPAT : 0);
            utf8proc_ssize_t n = utf8proc_map(s, (utf8proc_ssize_t)p->len, &out, (utf8proc_option_t)opts);
            if (n < 0)
                return c->err = lmp_err(LMP_EFORMAT, "%s: Unicode normalization failed: %s", t->name,
                                        utf8proc_errmsg(n));
            size_t off;
            if (buf_reserve(c, (size_t)n, &off)) {
                free(out);
                return c->err;
            }
            memcpy(c->buf + off, out, (size_t)n);
            free(out);
            c->blen += (size_t)n;
            p->off = off;
            p->len = (size_t)n;
            break;
        }
        }
    }
    return 0;
}

static int stage_normalize(tk_ctx *c)
{
    if (!c->t->n_norms)
        return 0;
    for (size_t i = 0; i < c->np; i++)
        if (c->p[i].id < 0 && normalize_piece(c, &c->p[i]))
            return c->err;
    return 0;
}

/* ---------------------------------------------------------------- pre-tokenizers --- */

/* Matches of a pre-tokenizer step that follows ByteLevel: HF runs it on the text mapped
 * to the byte-level alphabet (one code point per byte), so the pattern sees e.g. U+00B2 for
 * byte 0xB2 and U+0120 for a space. The engine keeps raw bytes: map, match, and turn the
 * match offsets back into byte offsets (mapped character k is raw byte k). */
static int mapped_matches(tk_ctx *c, const tk_pre *pr, const char *s, size_t len)
{
    GROW(c->mbuf, c->cmbuf, len * 2 + 1, return nomem(c));
    GROW(c->m2r, c->cm2r, len * 2 + 1, return nomem(c));
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char u[4];
        int l = tk_utf8_encode(tk_byte_to_cp((uint8_t)s[i]), u);
        for (int k = 0; k < l; k++) {
            c->m2r[n] = i;
            c->mbuf[n++] = u[k];
        }
    }
    c->m2r[n] = len;
    int rc = pr->re ? regex_matches(c, pr->re, c->mbuf, n) : literal_matches(c, pr->lit, pr->lit_len, c->mbuf, n);
    if (rc)
        return rc;
    for (size_t i = 0; i < c->nm; i++) {
        c->mt[i].s = c->m2r[c->mt[i].s];
        c->mt[i].e = c->m2r[c->mt[i].e];
    }
    return 0;
}

static int step_matches(tk_ctx *c, const tk_pre *pr, const char *s, size_t len)
{
    if (pr->mapped)
        return mapped_matches(c, pr, s, len);
    return pr->re ? regex_matches(c, pr->re, s, len) : literal_matches(c, pr->lit, pr->lit_len, s, len);
}

static int pre_one(tk_ctx *c, const tk_pre *pr, tk_piece p)
{
    switch (pr->type) {
    case TK_P_PUNCT:
    case TK_P_WSPLIT:
        if (step_matches(c, pr, c->buf + p.off, p.len))
            return c->err;
        return split_emit(c, &p, pr->behavior, false);
    case TK_P_SPLIT:
        if (pr->mapped) {
            if (mapped_matches(c, pr, c->buf + p.off, p.len))
                return c->err;
            return split_emit(c, &p, pr->behavior, pr->invert);
        }
        if (pr->re ? regex_matches(c, pr->re, c->buf + p.off, p.len)
                   : literal_matches(c, pr->lit, pr->lit_len, c->buf + p.off, p.len))
            return c->err;
        return split_emit(c, &p, pr->behavior, pr->invert);
    case TK_P_DIGITS:
        if (step_matches(c, pr, c->buf + p.off, p.len))
            return c->err;
        return split_emit(c, &p, pr->individual ? TK_B_ISOLATED : TK_B_CONTIGUOUS, false);
    case TK_P_BYTELEVEL:
        if (pr->add_prefix_space && (p.len == 0 || c->buf[p.off] != ' ') && prepend(c, &p, " ", 1))
            return c->err;
        if (!pr->use_regex)
            return emit(c, p.off, p.len, -1, p.first);
        if (regex_matches(c, pr->re, c->buf + p.off, p.len))
            return c->err;
        return split_emit(c, &p, TK_B_ISOLATED, false);
    case TK_P_METASPACE: {
        if (literal_matches(c, " ", 1, c->buf + p.off, p.len) || replace_matches(c, &p, pr->repl, (size_t)pr->repl_len))
            return c->err;
        bool starts = p.len >= (size_t)pr->repl_len && memcmp(c->buf + p.off, pr->repl, (size_t)pr->repl_len) == 0;
        if (!starts && (pr->prepend_scheme == TK_PS_ALWAYS || (pr->prepend_scheme == TK_PS_FIRST && p.first)))
            if (prepend(c, &p, pr->repl, (size_t)pr->repl_len))
                return c->err;
        if (!pr->split)
            return emit(c, p.off, p.len, -1, p.first);
        if (literal_matches(c, pr->repl, (size_t)pr->repl_len, c->buf + p.off, p.len))
            return c->err;
        return split_emit(c, &p, TK_B_MERGED_NEXT, false);
    }
    }
    return 0;
}

static int stage_pretokenize(tk_ctx *c)
{
    const lmp_tokenizer *t = c->t;
    for (int k = 0; k < t->n_pres; k++) {
        c->nq = 0;
        for (size_t i = 0; i < c->np; i++) {
            tk_piece p = c->p[i];
            if (p.id >= 0) {
                if (emit(c, p.off, p.len, p.id, p.first))
                    return c->err;
                continue;
            }
            if (pre_one(c, &t->pres[k], p))
                return c->err;
        }
        swap_pieces(c);
    }
    return 0;
}

/* ---------------------------------------------------------------- BPE -------------- */

static int out_push(tk_ctx *c, int32_t id)
{
    GROW(c->out, c->cout, c->nout + 1, return nomem(c));
    c->out[c->nout++] = id;
    return 0;
}

static void heap_push(tk_ctx *c, tk_hent e)
{
    size_t i = c->nh++;
    while (i > 0) {
        size_t par = (i - 1) / 2;
        if (c->heap[par].key <= e.key)
            break;
        c->heap[i] = c->heap[par];
        i = par;
    }
    c->heap[i] = e;
}

static tk_hent heap_pop(tk_ctx *c)
{
    tk_hent top = c->heap[0], last = c->heap[--c->nh];
    size_t i = 0, n = c->nh;
    for (;;) {
        size_t l = 2 * i + 1;
        if (l >= n)
            break;
        size_t r = l + 1, m = (r < n && c->heap[r].key < c->heap[l].key) ? r : l;
        if (c->heap[m].key >= last.key)
            break;
        c->heap[i] = c->heap[m];
        i = m;
    }
    if (n)
        c->heap[i] = last;
    return top;
}

static inline uint32_t float_order(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

static void try_pair(tk_ctx *c, const char *w, int32_t l, int32_t r)
{
    const lmp_tokenizer *t = c->t;
    if (l < 0 || r < 0)
        return;
    tk_sym *a = &c->sym[l], *b = &c->sym[r];
    tk_hent e;
    if (t->model == TK_MODEL_SCORES) {
        int32_t id = tk_strmap_get(&t->vocab, w + a->start, (size_t)a->len + b->len);
        if (id < 0)
            return;
        e.key = (uint64_t)(~float_order(t->scores[id])) << 32 | (uint32_t)l;
        e.new_id = id;
    } else {
        int32_t rank, nid;
        if (a->id < 0 || b->id < 0 || !tk_pair_get(&t->merges, a->id, b->id, &rank, &nid))
            return;
        e.key = (uint64_t)(uint32_t)rank << 32 | (uint32_t)l;
        e.new_id = nid;
    }
    e.left = l;
    e.right = r;
    e.size = a->len + b->len;
    heap_push(c, e);
}

static int add_sym(tk_ctx *c, size_t *ns, int32_t id, size_t start, size_t len)
{
    GROW(c->sym, c->csym, *ns + 1, return nomem(c));
    c->sym[*ns] = (tk_sym){id, (uint32_t)start, (uint32_t)len, (int32_t)*ns - 1, -1};
    if (*ns > 0)
        c->sym[*ns - 1].next = (int32_t)*ns;
    (*ns)++;
    return 0;
}

/* Tokenizes one pre-tokenized word (bytes; raw bytes for byte-level vocabularies),
 * appending ids to c->out. HF BPE::merge_word + Word::merge_all, or llama.cpp's SPM. */
static int bpe_word_uncached(tk_ctx *c, const char *w, size_t n)
{
    const lmp_tokenizer *t = c->t;
    const unsigned char *u = (const unsigned char *)w;
    size_t ns = 0;
    if (n > UINT32_MAX)
        return c->err = lmp_err(LMP_ERANGE, "%s: text piece longer than 4 GiB", t->name);
    if (t->model == TK_MODEL_SCORES) {
        for (size_t i = 0; i < n;) {
            uint32_t cp;
            int l = tk_utf8_next(u + i, n - i, &cp);
            if (add_sym(c, &ns, tk_strmap_get(&t->vocab, w + i, (size_t)l), i, (size_t)l))
                return c->err;
            i += (size_t)l;
        }
    } else {
        int32_t unk = -1;
        size_t unk_start = 0, unk_len = 0;
        for (size_t i = 0; i < n;) {
            int l = 1;
            int32_t id;
            if (t->byte_level) {
                id = t->byte_char[u[i]];
            } else {
                uint32_t cp;
                l = tk_utf8_next(u + i, n - i, &cp);
                id = tk_strmap_get(&t->vocab, w + i, (size_t)l);
            }
            if (id >= 0) {
                if (unk >= 0) {
                    if (add_sym(c, &ns, unk, unk_start, unk_len))
                        return c->err;
                    unk = -1;
                }
                if (add_sym(c, &ns, id, i, (size_t)l))
                    return c->err;
                i += (size_t)l;
                continue;
            }
            if (t->byte_fallback) {
                bool all = true;
                for (int k = 0; k < l; k++)
                    if (t->byte_tok[u[i + (size_t)k]] < 0)
                        all = false;
                if (all) {
                    for (int k = 0; k < l; k++)
                        if (add_sym(c, &ns, t->byte_tok[u[i + (size_t)k]], i + (size_t)k, 1))
                            return c->err;
                    i += (size_t)l;
                    continue;
                }
            }
            if (t->unk_id >= 0) {
                if (unk >= 0 && t->fuse_unk) {
                    unk_len += (size_t)l;
                } else {
                    if (unk >= 0 && add_sym(c, &ns, unk, unk_start, unk_len))
                        return c->err;
                    unk = t->unk_id;
                    unk_start = i;
                    unk_len = (size_t)l;
                }
            }
            i += (size_t)l;
        }
        if (unk >= 0 && add_sym(c, &ns, unk, unk_start, unk_len))
            return c->err;
    }
    if (ns == 0)
        return 0;
    GROW(c->heap, c->ch, ns + 1, return nomem(c));
    c->nh = 0;
    for (size_t i = 1; i < ns; i++)
        try_pair(c, w, (int32_t)i - 1, (int32_t)i);
    while (c->nh) {
        tk_hent e = heap_pop(c);
        tk_sym *a = &c->sym[e.left], *b = &c->sym[e.right];
        if (a->len == 0 || b->len == 0 || a->next != e.right || a->len + b->len != e.size)
            continue; /* stale */
        a->len += b->len;
        a->id = e.new_id;
        b->len = 0;
        a->next = b->next;
        if (b->next >= 0)
            c->sym[b->next].prev = e.left;
        /* each merge adds at most two pairs and removes at least one symbol */
        GROW(c->heap, c->ch, c->nh + 2, return nomem(c));
        try_pair(c, w, a->prev, e.left);
        try_pair(c, w, e.left, a->next);
    }
    for (int32_t i = 0; i >= 0; i = c->sym[i].next) {
        const tk_sym *s = &c->sym[i];
        if (s->id >= 0) {
            if (out_push(c, s->id))
                return c->err;
            continue;
        }
        for (uint32_t k = 0; k < s->len; k++) {
            int32_t b = t->byte_tok[u[s->start + k]];
            if (b < 0)
                b = t->unk_id;
            if (b >= 0 && out_push(c, b))
                return c->err;
        }
    }
    return 0;
}

#define TK_CACHE_MAX_WORD 256

static int bpe_word(tk_ctx *c, const char *w, size_t n, bool cache)
{
    const lmp_tokenizer *t = c->t;
    if (n == 0)
        return 0;
    if (t->ignore_merges) {
        int32_t id = t->byte_level ? tk_strmap_get(&t->rawvocab, w, n) : tk_strmap_get(&t->vocab, w, n);
        if (id >= 0)
            return out_push(c, id);
    }
    if (!cache || n > TK_CACHE_MAX_WORD)
        return bpe_word_uncached(c, w, n);
    if (!c->cent) {
        c->cmask = 4095;
        c->cent = calloc(c->cmask + 1, sizeof *c->cent);
        if (!c->cent)
            return nomem(c);
    }
    uint32_t h = (uint32_t)hash_bytes(w, n);
    uint32_t slot = h & c->cmask;
    while (c->cent[slot].klen) {
        tk_centry *e = &c->cent[slot];
        if (e->klen == n && memcmp(c->ckey + e->koff, w, n) == 0) {
            GROW(c->out, c->cout, c->nout + e->n, return nomem(c));
            if (e->n) /* a word may encode to no id: the arrays may still be NULL */
                memcpy(c->out + c->nout, c->cids + e->ioff, e->n * sizeof(int32_t));
            c->nout += e->n;
            return 0;
        }
        slot = (slot + 1) & c->cmask;
    }
    size_t before = c->nout;
    if (bpe_word_uncached(c, w, n))
        return c->err;
    size_t got = c->nout - before;
    /* remember it (the table is grown at half load) */
    GROW(c->ckey, c->cckey, c->nckey + n, return nomem(c));
    GROW(c->cids, c->ccids, c->ncids + got, return nomem(c));
    memcpy(c->ckey + c->nckey, w, n);
    if (got) /* fuzz_tokenizer_json: a word with no id, NULL arrays */
        memcpy(c->cids + c->ncids, c->out + before, got * sizeof(int32_t));
    c->cent[slot] = (tk_centry){(uint32_t)c->nckey, (uint32_t)n, (uint32_t)c->ncids, (uint32_t)got};
    c->nckey += n;
    c->ncids += got;
    if (++c->ccount * 2 > c->cmask) {
        uint32_t nmask = c->cmask * 2 + 1;
        tk_centry *ne = calloc((size_t)nmask + 1, sizeof *ne);
        if (!ne)
            return nomem(c);
        for (uint32_t i = 0; i <= c->cmask; i++) {
            tk_centry *e = &c->cent[i];
            if (!e->klen)
                continue;
            uint32_t s = (uint32_t)hash_bytes(c->ckey + e->koff, e->klen) & nmask;
            while (ne[s].klen)
                s = (s + 1) & nmask;
            ne[s] = *e;
        }
        free(c->cent);
        c->cent = ne;
        c->cmask = nmask;
    }
    return 0;
}

/* ---------------------------------------------------------------- segmentation ----- */

static inline uint64_t bigram_key(uint32_t a, uint32_t b)
{
    return ((uint64_t)a << 32 | b) + 1;
}

static bool bigram_has(const lmp_tokenizer *t, uint64_t k)
{
    uint32_t h = (uint32_t)pair_hash(k) & t->bigram_mask;
    for (;;) {
        uint64_t x = t->bigram[h];
        if (!x)
            return false;
        if (x == k)
            return true;
        h = (h + 1) & t->bigram_mask;
    }
}

static int bigram_build(lmp_tokenizer *t)
{
    size_t total = 0;
    for (int32_t i = 0; i < t->n_model; i++)
        if (t->pieces[i].s)
            total += t->pieces[i].len;
    uint32_t cap = 1024;
    while (cap < total * 2 + 16)
        cap <<= 1;
    t->bigram = calloc(cap, sizeof(uint64_t));
    if (!t->bigram)
        return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
    t->bigram_mask = cap - 1;
    for (int32_t i = 0; i < t->n_model; i++) {
        const unsigned char *s = (const unsigned char *)t->pieces[i].s;
        size_t n = t->pieces[i].len;
        if (!s)
            continue;
        uint32_t prev = 0;
        for (size_t k = 0; k < n;) {
            uint32_t cp;
            int l = tk_utf8_next(s + k, n - k, &cp);
            if (cp == 0xFFFFFFFFu)
                cp = 0x80000000u | s[k]; /* an invalid byte is its own unit */
            if (k > 0) {
                uint64_t key = bigram_key(prev, cp);
                uint32_t h = (uint32_t)pair_hash(key) & t->bigram_mask;
                while (t->bigram[h] && t->bigram[h] != key)
                    h = (h + 1) & t->bigram_mask;
                t->bigram[h] = key;
            }
            prev = cp;
            k += (size_t)l;
        }
    }
    return 0;
}

/* Cuts a word where no token spans the boundary and tokenizes the parts (cached). Exact:
 * a pair across such a point never enters the merge queue, so both sides evolve as if
 * alone. With HF merges, a boundary next to a character that is not itself a token (byte
 * fallback or unk fusion) is never cut. */
static int bpe_segmented(tk_ctx *c, const char *w, size_t n)
{
    const lmp_tokenizer *t = c->t;
    const unsigned char *u = (const unsigned char *)w;
    size_t seg = 0;
    uint32_t prev = 0;
    bool prev_known = false;
    for (size_t k = 0; k < n;) {
        uint32_t cp;
        int l = tk_utf8_next(u + k, n - k, &cp);
        if (cp == 0xFFFFFFFFu)
            cp = 0x80000000u | u[k];
        bool known = t->model == TK_MODEL_SCORES || tk_strmap_get(&t->vocab, w + k, (size_t)l) >= 0;
        if (k > 0 && known && prev_known && !bigram_has(t, bigram_key(prev, cp))) {
            if (bpe_word(c, w + seg, k - seg, true))
                return c->err;
            seg = k;
        }
        prev = cp;
        prev_known = known;
        k += (size_t)l;
    }
    return bpe_word(c, w + seg, n - seg, true);
}

/* ---------------------------------------------------------------- encode ----------- */

static void ctx_free(tk_ctx *c)
{
    free(c->buf);
    free(c->p);
    free(c->q);
    free(c->mt);
    free(c->sym);
    free(c->heap);
    free(c->cent);
    free(c->ckey);
    free(c->cids);
    free(c->mbuf);
    free(c->m2r);
    if (c->md)
        pcre2_match_data_free(c->md);
    if (c->mctx)
        pcre2_match_context_free(c->mctx);
    if (c->js)
        pcre2_jit_stack_free(c->js);
}

int lmp_tokenizer_encode(const lmp_tokenizer *t, const char *text, size_t len, bool add_special,
                         int32_t **ids, size_t *n_ids)
{
    tk_ctx c = {0};
    c.t = t;
    *ids = NULL;
    *n_ids = 0;
    if (!text && len)
        return lmp_err(LMP_EINVAL, "%s: encode: NULL text", t->name);
    c.md = pcre2_match_data_create(4, NULL);
    c.mctx = pcre2_match_context_create(NULL);
    c.js = pcre2_jit_stack_create(32 * 1024, 4 * 1024 * 1024, NULL);
    if (!c.md || !c.mctx || !c.js) {
        nomem(&c);
        goto cleanup;
    }
    pcre2_jit_stack_assign(c.mctx, NULL, c.js);

    if (add_special)
        for (int i = 0; i < t->n_prefix; i++)
            if (out_push(&c, t->prefix[i]))
                goto cleanup;
    if (len) {
        size_t off;
        bool clean = !t->sanitize_utf8 || utf8_valid(text, len);
        if (buf_reserve(&c, clean ? len : len * 3, &off))
            goto cleanup;
        if (clean) {
            memcpy(c.buf, text, len);
            c.blen = len;
        } else {
            c.blen = utf8_lossy(text, len, c.buf);
        }
        c.nq = 0;
        if (emit(&c, 0, c.blen, -1, 1))
            goto cleanup;
        swap_pieces(&c);
        if (stage_added(&c, false) || stage_normalize(&c) || stage_added(&c, true) || stage_pretokenize(&c))
            goto cleanup;
        bool cache = t->n_pres > 0;
        for (size_t i = 0; i < c.np; i++) {
            const tk_piece *p = &c.p[i];
            if (p->id >= 0) {
                if (out_push(&c, p->id))
                    goto cleanup;
            } else if (t->segment && p->len > TK_CACHE_MAX_WORD) {
                if (bpe_segmented(&c, c.buf + p->off, p->len))
                    goto cleanup;
            } else if (bpe_word(&c, c.buf + p->off, p->len, cache || t->segment)) {
                goto cleanup;
            }
        }
    }
    if (add_special)
        for (int i = 0; i < t->n_suffix; i++)
            if (out_push(&c, t->suffix[i]))
                goto cleanup;
    if (!c.out) {
        c.out = malloc(sizeof(int32_t));
        if (!c.out) {
            nomem(&c);
            goto cleanup;
        }
    }
    *ids = c.out;
    *n_ids = c.nout;
    c.out = NULL;
cleanup:
    free(c.out);
    ctx_free(&c);
    return c.err;
}

/* ---------------------------------------------------------------- decode ----------- */

typedef struct {
    char *buf;
    size_t blen, bcap;
    size_t *off, *len;
    size_t n, cap;
} tk_list;

static void list_free(tk_list *l)
{
    free(l->buf);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static int list_push(tk_list *l, const char *s, size_t n)
{
    GROW(l->buf, l->bcap, l->blen + n + 1, return LMP_ENOMEM);
    if (l->n + 1 > l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 64;
        size_t *a = realloc(l->off, nc * sizeof(size_t));
        if (!a)
            return LMP_ENOMEM;
        l->off = a;
        size_t *b = realloc(l->len, nc * sizeof(size_t));
        if (!b)
            return LMP_ENOMEM;
        l->len = b;
        l->cap = nc;
    }
    if (n)
        memcpy(l->buf + l->blen, s, n);
    l->off[l->n] = l->blen;
    l->len[l->n] = n;
    l->blen += n;
    l->n++;
    return 0;
}

/* Appends to the last string (which must be the most recent push). */
static int list_append(tk_list *l, const char *s, size_t n)
{
    GROW(l->buf, l->bcap, l->blen + n + 1, return LMP_ENOMEM);
    if (n)
        memcpy(l->buf + l->blen, s, n);
    l->blen += n;
    l->len[l->n - 1] += n;
    return 0;
}

static int decode_step(const tk_dec *d, const tk_list *in, tk_list *out)
{
    switch (d->type) {
    case TK_D_BYTELEVEL: {
        tk_list raw = {0};
        if (list_push(&raw, "", 0))
            return LMP_ENOMEM;
        for (size_t i = 0; i < in->n; i++) {
            const unsigned char *s = (const unsigned char *)in->buf + in->off[i];
            size_t n = in->len[i], start = raw.blen;
            bool ok = true;
            for (size_t k = 0; k < n;) {
                uint32_t cp;
                int l = tk_utf8_next(s + k, n - k, &cp);
                int b = cp == 0xFFFFFFFFu ? -1 : tk_cp_to_byte(cp);
                if (b < 0) {
                    ok = false;
                    break;
                }
                char ch = (char)b;
                if (list_append(&raw, &ch, 1))
                    goto bl_fail;
                k += (size_t)l;
            }
            if (!ok) {
                raw.len[0] -= raw.blen - start;
                raw.blen = start;
                if (list_append(&raw, (const char *)s, n))
                    goto bl_fail;
            }
        }
        {
            char *tmp = malloc(raw.blen * 3 + 1);
            if (!tmp)
                goto bl_fail;
            size_t m = utf8_lossy(raw.buf, raw.blen, tmp);
            int rc = list_push(out, tmp, m);
            free(tmp);
            list_free(&raw);
            return rc;
        }
    bl_fail:
        list_free(&raw);
        return LMP_ENOMEM;
    }
    case TK_D_METASPACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->buf + in->off[i];
            size_t n = in->len[i];
            if (list_push(out, "", 0))
                return LMP_ENOMEM;
            for (size_t k = 0; k < n;) {
                if (n - k >= (size_t)d->repl_len && memcmp(s + k, d->repl, (size_t)d->repl_len) == 0) {
                    if (!(i == 0 && d->prepend_scheme != TK_PS_NEVER) && list_append(out, " ", 1))
                        return LMP_ENOMEM;
                    k += (size_t)d->repl_len;
                } else {
                    uint32_t cp;
                    int l = tk_utf8_next((const unsigned char *)s + k, n - k, &cp);
                    if (list_append(out, s + k, (size_t)l))
                        return LMP_ENOMEM;
                    k += (size_t)l;
                }
            }
        }
        return 0;
    case TK_D_REPLACE:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->buf + in->off[i];
            size_t n = in->len[i], prev = 0;
            if (list_push(out, "", 0))
                return LMP_ENOMEM;
            for (size_t k = 0; d->pat_len && k + d->pat_len <= n;) {
                if (memcmp(s + k, d->pat, d->pat_len) == 0) {
                    if (list_append(out, s + prev, k - prev) || list_append(out, d->content, d->content_len))
                        return LMP_ENOMEM;
                    k += d->pat_len;
                    prev = k;
                } else {
                    k++;
                }
            }
            if (list_append(out, s + prev, n - prev))
                return LMP_ENOMEM;
        }
        return 0;
    case TK_D_BYTEFALLBACK: {
        unsigned char bytes[4096];
        size_t nb = 0;
        for (size_t i = 0; i <= in->n; i++) {
            const char *s = i < in->n ? in->buf + in->off[i] : NULL;
            size_t n = i < in->n ? in->len[i] : 0;
            int byte = -1;
            if (s && n == 6 && memcmp(s, "<0x", 3) == 0 && s[5] == '>') {
                char hx[3] = {s[3], s[4], 0}, *end;
                long v = strtol(hx, &end, 16);
                bool hex = ((hx[0] >= '0' && hx[0] <= '9') || (hx[0] >= 'a' && hx[0] <= 'f') || (hx[0] >= 'A' && hx[0] <= 'F')) &&
                           ((hx[1] >= '0' && hx[1] <= '9') || (hx[1] >= 'a' && hx[1] <= 'f') || (hx[1] >= 'A' && hx[1] <= 'F'));
                if (hex && *end == 0)
                    byte = (int)v;
            }
            if (byte >= 0 && nb < sizeof bytes) {
                bytes[nb++] = (unsigned char)byte;
                continue;
            }
            if (nb) {
                if (utf8_valid((const char *)bytes, nb)) {
                    if (list_push(out, (const char *)bytes, nb))
                        return LMP_ENOMEM;
                } else {
                    for (size_t k = 0; k < nb; k++)
                        if (list_push(out, "\xEF\xBF\xBD", 3))
                            return LMP_ENOMEM;
                }
                nb = 0;
            }
            if (byte >= 0) { /* run longer than the buffer: start a new one */
                bytes[nb++] = (unsigned char)byte;
                continue;
            }
            if (s && list_push(out, s, n))
                return LMP_ENOMEM;
        }
        return 0;
    }
    case TK_D_FUSE:
        if (list_push(out, "", 0))
            return LMP_ENOMEM;
        for (size_t i = 0; i < in->n; i++)
            if (list_append(out, in->buf + in->off[i], in->len[i]))
                return LMP_ENOMEM;
        return 0;
    case TK_D_STRIP:
        for (size_t i = 0; i < in->n; i++) {
            const char *s = in->buf + in->off[i];
            size_t n = in->len[i], a = 0, b = n, cl = d->content_len;
            for (int k = 0; k < d->start && a + cl <= b && memcmp(s + a, d->content, cl) == 0; k++)
                a += cl;
            for (int k = 0; k < d->stop && b >= a + cl && memcmp(s + b - cl, d->content, cl) == 0; k++)
                b -= cl;
            if (list_push(out, s + a, b - a))
                return LMP_ENOMEM;
        }
        return 0;
    }
    return 0;
}

int lmp_tokenizer_decode(const lmp_tokenizer *t, const int32_t *ids, size_t n, bool skip_special,
                         char **text, size_t *len)
{
    tk_list a = {0}, b = {0};
    int rc = 0;
    *text = NULL;
    *len = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t id = ids[i];
        if (id < 0 || id >= t->n_vocab || !t->pieces[id].s) {
            rc = lmp_err(LMP_EINVAL, "%s: decode: token id %d out of range (vocabulary %d)", t->name,
                         (int)id, (int)t->n_vocab);
            goto cleanup;
        }
        if (skip_special && lmp_tokenizer_is_special(t, id))
            continue;
        if (list_push(&a, t->pieces[id].s, t->pieces[id].len))
            goto oom;
    }
    if (t->has_decoder) {
        for (int k = 0; k < t->n_decs; k++) {
            b.n = 0;
            b.blen = 0;
            if (decode_step(&t->decs[k], &a, &b))
                goto oom;
            tk_list tmp = a;
            a = b;
            b = tmp;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < a.n; i++)
        total += a.len[i] + (t->has_decoder ? 0 : 1);
    char *o = malloc(total + 1);
    if (!o)
        goto oom;
    size_t w = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (!t->has_decoder && i > 0)
            o[w++] = ' '; /* HF joins with spaces when there is no decoder */
        memcpy(o + w, a.buf + a.off[i], a.len[i]);
        w += a.len[i];
    }
    o[w] = 0;
    *text = o;
    *len = w;
    goto cleanup;
oom:
    rc = lmp_err(LMP_ENOMEM, "%s: out of memory while decoding", t->name);
cleanup:
    list_free(&a);
    list_free(&b);
    return rc;
}

/* ---------------------------------------------------------------- accessors -------- */

int lmp_tokenizer_n_vocab(const lmp_tokenizer *t) { return t->n_vocab; }
int lmp_tokenizer_bos(const lmp_tokenizer *t) { return t->bos; }
int lmp_tokenizer_eos(const lmp_tokenizer *t) { return t->eos; }
int lmp_tokenizer_pad(const lmp_tokenizer *t) { return t->pad; }
int lmp_tokenizer_unk(const lmp_tokenizer *t) { return t->unk_id; }

bool lmp_tokenizer_is_special(const lmp_tokenizer *t, int32_t id)
{
    if (id < 0 || id >= t->n_vocab)
        return false;
    return t->ttype[id] == TK_T_CONTROL || (t->from_gguf && t->ttype[id] == TK_T_UNKNOWN);
}

const char *lmp_tokenizer_piece(const lmp_tokenizer *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab || !t->pieces[id].s) {
        if (len)
            *len = 0;
        return NULL;
    }
    if (len)
        *len = t->pieces[id].len;
    return t->pieces[id].s;
}

const char *lmp_tokenizer_model_name(const lmp_tokenizer *t)
{
    return t->byte_level ? "gpt2" : "llama";
}

uint64_t lmp_tokenizer_hash(const lmp_tokenizer *t)
{
    uint64_t h = LMP_FNV_INIT;
    int32_t hdr[3] = {t->model, t->n_vocab, t->n_merges};
    h = lmp_fnv1a(h, hdr, sizeof hdr);
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint32_t l = t->pieces[i].s ? t->pieces[i].len : 0xFFFFFFFFu;
        h = lmp_fnv1a(h, &l, sizeof l);
        if (t->pieces[i].s)
            h = lmp_fnv1a(h, t->pieces[i].s, t->pieces[i].len);
        h = lmp_fnv1a(h, &t->ttype[i], 1);
    }
    if (t->scores)
        h = lmp_fnv1a(h, t->scores, sizeof(float) * (size_t)t->n_vocab);
    if (t->n_merges)
        h = lmp_fnv1a(h, t->merge_list, sizeof(int32_t) * 2 * (size_t)t->n_merges);
    for (int k = 0; k < t->n_added; k++) {
        const tk_added *a = &t->added[k];
        uint8_t f[5] = {a->special, a->normalized, a->lstrip, a->rstrip, a->single_word};
        h = lmp_fnv1a(h, &a->id, sizeof a->id);
        h = lmp_fnv1a(h, a->content.s, a->content.len);
        h = lmp_fnv1a(h, f, sizeof f);
    }
    return h;
}

/* ---------------------------------------------------------------- build/free ------- */

tk_norm *tk_add_norm(lmp_tokenizer *t)
{
    tk_norm *n = realloc(t->norms, sizeof *n * (size_t)(t->n_norms + 1));
    if (!n) {
        lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        return NULL;
    }
    t->norms = n;
    memset(&n[t->n_norms], 0, sizeof *n);
    return &n[t->n_norms++];
}

tk_pre *tk_add_pre(lmp_tokenizer *t)
{
    tk_pre *n = realloc(t->pres, sizeof *n * (size_t)(t->n_pres + 1));
    if (!n) {
        lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        return NULL;
    }
    t->pres = n;
    memset(&n[t->n_pres], 0, sizeof *n);
    return &n[t->n_pres++];
}

tk_dec *tk_add_dec(lmp_tokenizer *t)
{
    tk_dec *n = realloc(t->decs, sizeof *n * (size_t)(t->n_decs + 1));
    if (!n) {
        lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        return NULL;
    }
    t->decs = n;
    memset(&n[t->n_decs], 0, sizeof *n);
    t->has_decoder = true;
    return &n[t->n_decs++];
}

/* Normalizes a standalone string with the tokenizer's normalizers (added tokens with
 * normalized=true match their normalized form). */
static int normalize_string(lmp_tokenizer *t, const tk_str *in, tk_str *out)
{
    tk_ctx c = {0};
    int rc = 0;
    c.t = t;
    c.md = pcre2_match_data_create(4, NULL);
    if (!c.md) {
        rc = nomem(&c);
        goto cleanup;
    }
    size_t off;
    if (buf_reserve(&c, in->len, &off)) {
        rc = c.err;
        goto cleanup;
    }
    memcpy(c.buf, in->s, in->len);
    c.blen = in->len;
    tk_piece p = {0, in->len, -1, 1};
    if (normalize_piece(&c, &p)) {
        rc = c.err;
        goto cleanup;
    }
    *out = tk_str_dup(c.buf + p.off, p.len);
    if (!out->s)
        rc = lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
cleanup:
    ctx_free(&c);
    return rc;
}

int tk_finalize(lmp_tokenizer *t)
{
    int rc;
    /* pieces[] may have moved since a loader built the map (added tokens grow it) */
    t->vocab.strs = t->pieces;
    if (!t->vocab.slot && (rc = tk_strmap_build(&t->vocab, t->pieces, t->n_model, t->name)))
        return rc;
    for (int b = 0; b < 256; b++) {
        char hx[8];
        snprintf(hx, sizeof hx, "<0x%02X>", b);
        t->byte_tok[b] = tk_strmap_get(&t->vocab, hx, 6);
        t->byte_char[b] = -1;
    }
    if (t->byte_level) {
        t->raw = calloc((size_t)t->n_vocab, sizeof(tk_str));
        if (!t->raw)
            return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
        for (int32_t i = 0; i < t->n_model; i++) {
            const tk_str *p = &t->pieces[i];
            if (!p->s)
                continue;
            char *r = malloc((size_t)p->len + 1);
            if (!r)
                return lmp_err(LMP_ENOMEM, "%s: out of memory", t->name);
            size_t n = 0;
            bool ok = true;
            for (size_t k = 0; k < p->len;) {
                uint32_t cp;
                int l = tk_utf8_next((const unsigned char *)p->s + k, p->len - k, &cp);
                int b = cp == 0xFFFFFFFFu ? -1 : tk_cp_to_byte(cp);
                if (b < 0) {
                    ok = false;
                    break;
                }
                r[n++] = (char)b;
                k += (size_t)l;
            }
            if (!ok) {
                free(r);
                continue;
            }
            r[n] = 0;
            t->raw[i].s = r;
            t->raw[i].len = (uint32_t)n;
        }
        if ((rc = tk_strmap_build(&t->rawvocab, t->raw, t->n_model, t->name)))
            return rc;
        for (int b = 0; b < 256; b++) {
            char ch = (char)b;
            t->byte_char[b] = tk_strmap_get(&t->rawvocab, &ch, 1);
        }
    }
    if (t->model == TK_MODEL_MERGES && (rc = tk_pairmap_build(t)))
        return rc;
    for (int k = 0; k < t->n_added; k++) {
        tk_added *a = &t->added[k];
        if (a->normalized && (rc = normalize_string(t, &a->content, &a->norm)))
            return rc;
    }
    /* with ignore_merges a whole word found in the vocabulary is one token: no cutting */
    for (int k = 0; k < t->n_added; k++)
        if (t->added[k].single_word && !t->word_re) {
            /* Rust's Unicode \w: letters, marks, decimal digits, connector punctuation, ZWNJ/ZWJ */
            static const char wre[] = "[\\p{L}\\p{M}\\p{Nd}\\p{Pc}\\x{200C}\\x{200D}]";
            if ((rc = tk_regex(&t->word_re, wre, sizeof wre - 1, t->name, false)))
                return rc;
        }
    if (!t->byte_level && !t->ignore_merges) {
        if ((rc = bigram_build(t)))
            return rc;
        t->segment = true;
    }
    return 0;
}

void lmp_tokenizer_free(lmp_tokenizer *t)
{
    if (!t)
        return;
    if (t->pieces)
        for (int32_t i = 0; i < t->n_vocab; i++)
            free(t->pieces[i].s);
    if (t->raw)
        for (int32_t i = 0; i < t->n_vocab; i++)
            free(t->raw[i].s);
    free(t->pieces);
    free(t->raw);
    free(t->ttype);
    free(t->scores);
    free(t->vocab.slot);
    free(t->rawvocab.slot);
    free(t->merges.key);
    free(t->merges.rank);
    free(t->merges.new_id);
    free(t->merge_list);
    for (int k = 0; k < t->n_norms; k++) {
        free(t->norms[k].pat);
        free(t->norms[k].content);
        if (t->norms[k].re)
            pcre2_code_free(t->norms[k].re);
    }
    free(t->norms);
    for (int k = 0; k < t->n_pres; k++) {
        free(t->pres[k].lit);
        if (t->pres[k].re)
            pcre2_code_free(t->pres[k].re);
    }
    free(t->pres);
    for (int k = 0; k < t->n_decs; k++) {
        free(t->decs[k].pat);
        free(t->decs[k].content);
    }
    free(t->decs);
    for (int k = 0; k < t->n_added; k++) {
        free(t->added[k].content.s);
        free(t->added[k].norm.s);
    }
    free(t->added);
    free(t->prefix);
    free(t->suffix);
    free(t->bigram);
    if (t->word_re)
        pcre2_code_free(t->word_re);
    free(t->gguf_pre);
    free(t->chat_template);
    for (int k = 0; k < t->n_templates; k++) {
        free(t->tmpl_name[k]);
        free(t->tmpl_text[k]);
    }
    free(t->tmpl_name);
    free(t->tmpl_text);
    free(t->name);
    free(t);
}

void lmp_tokenize_default_params(lmp_tokenize_params *p)
{
    memset(p, 0, sizeof *p);
}

int lmp_tokenize_check(const lmp_tokenize_params *p)
{
    if (!p->text == !p->file)
        return lmp_err(LMP_EINVAL, "give exactly one of --prompt (--text) and -f (--file)");
    return LMP_OK;
}

int lmp_tokenize(const char *path, const lmp_tokenize_params *p, lmp_tokenizer **tok, int32_t **ids,
                 size_t *n_ids)
{
    *tok = NULL;
    *ids = NULL;
    *n_ids = 0;
    int rc = lmp_tokenize_check(p);
    if (rc)
        return rc;
    char *buf = NULL;
    size_t len;
    if (p->file) {
        if ((rc = lmp_read_file(p->file, &buf, &len)))
            return rc;
    } else {
        len = strlen(p->text);
    }
    if ((rc = lmp_tokenizer_load(tok, path)) == 0)
        rc = lmp_tokenizer_encode(*tok, p->file ? buf : p->text, len, !p->no_bos, ids, n_ids);
    free(buf);
    return rc;
}
