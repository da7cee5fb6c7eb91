/*
 * Private layout of lmp_tokenizer, shared by tokenizer.c (engine: added-token split,
 * normalizers, pre-tokenizers, BPE, decoders), tokenizer_json.c (tokenizer.json) and
 * tokenizer_gguf.c (tokenizer.ggml.* in and out). Not a public header.
 */
#ifndef LMP_TOKENIZER_INTERNAL_H
#define LMP_TOKENIZER_INTERNAL_H

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer.h"

/* GGUF token types (llama.cpp's llama_token_type). */
enum { TK_T_NORMAL = 1, TK_T_UNKNOWN = 2, TK_T_CONTROL = 3, TK_T_USER = 4, TK_T_UNUSED = 5,
       TK_T_BYTE = 6 };

/* Model kinds: HF BPE (merge ranks keyed by id pairs; GGUF gpt2 maps onto it) or
 * SentencePiece score-driven BPE (GGUF llama: any adjacent pair whose concatenation is a
 * token merges, highest score first). */
enum { TK_MODEL_MERGES = 0, TK_MODEL_SCORES = 1 };

typedef struct {
    char *s;      /* owned, NUL-terminated (may contain no NUL otherwise) */
    uint32_t len;
} tk_str;

/* string -> id, open addressing over an external tk_str table. */
typedef struct {
    int32_t *slot; /* id or -1 */
    uint32_t mask;
    const tk_str *strs;
} tk_strmap;

/* (left id, right id) -> (rank, new id). */
typedef struct {
    uint64_t *key; /* (left << 32 | right) + 1, 0 empty */
    int32_t *rank;
    int32_t *new_id;
    uint32_t mask;
} tk_pairmap;

enum { TK_N_PREPEND, TK_N_REPLACE, TK_N_NFC, TK_N_NFKC };
typedef struct {
    int type;
    char *pat;        /* Replace: literal pattern (when re is NULL); Prepend: the prefix */
    size_t pat_len;
    char *content;    /* Replace: replacement */
    size_t content_len;
    pcre2_code *re;   /* Replace with a Regex pattern */
} tk_norm;

/* Punctuation (one character each: Unicode P or ASCII punctuation) and WhitespaceSplit
 * (Unicode White_Space, behavior Removed) split like Split with a one-character class. */
enum { TK_P_SPLIT, TK_P_BYTELEVEL, TK_P_METASPACE, TK_P_DIGITS, TK_P_PUNCT, TK_P_WSPLIT };
enum { TK_B_REMOVED, TK_B_ISOLATED, TK_B_MERGED_PREV, TK_B_MERGED_NEXT, TK_B_CONTIGUOUS };
enum { TK_PS_ALWAYS, TK_PS_FIRST, TK_PS_NEVER };
typedef struct {
    int type;
    pcre2_code *re;      /* Split regex, ByteLevel regex, Digits \p{N} */
    char *lit;           /* Split literal pattern (re NULL) / source text of the regex */
    size_t lit_len;
    bool lit_is_regex;
    int behavior;
    bool invert;
    bool add_prefix_space, use_regex; /* ByteLevel */
    char repl[8];        /* Metaspace replacement (UTF-8) */
    int repl_len;
    int prepend_scheme;
    bool split;          /* Metaspace */
    bool individual;     /* Digits */
    bool mapped;         /* after a ByteLevel step: matches run on the byte-level alphabet */
} tk_pre;

enum { TK_D_BYTELEVEL, TK_D_METASPACE, TK_D_REPLACE, TK_D_BYTEFALLBACK, TK_D_FUSE, TK_D_STRIP };
typedef struct {
    int type;
    char *pat;           /* Replace: literal pattern */
    size_t pat_len;
    char *content;       /* Replace: replacement; Strip: the char (UTF-8) */
    size_t content_len;
    int start, stop;     /* Strip */
    char repl[8];        /* Metaspace */
    int repl_len;
    int prepend_scheme;
} tk_dec;

typedef struct {
    int32_t id;
    tk_str content;
    tk_str norm;         /* normalized content (normalized tokens) */
    bool special, normalized, lstrip, rstrip, single_word;
} tk_added;

struct lmp_tokenizer {
    char *name;
    int model;                 /* TK_MODEL_* */
    int32_t n_vocab;           /* all ids, added tokens included */
    int32_t n_model;           /* ids held by the model vocabulary (pieces[] entries set) */
    tk_str *pieces;            /* [n_vocab] model vocab string or added content; s NULL = hole */
    uint8_t *ttype;            /* [n_vocab] TK_T_* */
    float *scores;             /* [n_vocab] TK_MODEL_SCORES only */
    tk_strmap vocab;           /* model vocabulary: piece -> id */
    tk_str *raw;               /* byte-level: [n_vocab] piece decoded to bytes (or NULL) */
    tk_strmap rawvocab;        /* byte-level: raw bytes -> id */
    tk_pairmap merges;
    int32_t (*merge_list)[2];  /* [n_merges] in rank order */
    int32_t n_merges;
    bool byte_fallback, fuse_unk, ignore_merges, byte_level, sanitize_utf8;
    int32_t unk_id;
    int32_t byte_tok[256];     /* <0xXX> ids, -1 when absent */
    int32_t byte_char[256];    /* byte-level single-byte token ids, -1 when absent */
    tk_norm *norms;
    int n_norms;
    tk_pre *pres;
    int n_pres;
    tk_dec *decs;
    int n_decs;
    bool has_decoder;
    tk_added *added;
    int n_added;
    int32_t *prefix, *suffix;  /* post-processor ids around the sequence */
    int n_prefix, n_suffix;
    int32_t bos, eos, pad;
    bool from_gguf;
    char *gguf_pre;            /* tokenizer.ggml.pre read (gguf) */
    bool add_space_prefix;     /* gguf llama */
    /* Code-point pairs that occur inside some token (SentencePiece-style vocabularies):
     * a word is cut where its adjacent characters form no such pair, since no merge can
     * ever join across that point; the pieces are then cached like pre-tokenized words. */
    uint64_t *bigram;          /* (a << 32 | b) + 1, 0 empty */
    uint32_t bigram_mask;
    bool segment;
    pcre2_code *word_re;       /* one \\w character (Rust's Unicode \\w), for single_word */
    /* Chat templates (Jinja text): the default one, then named ones (tokenizer_config.json
     * list form, GGUF tokenizer.chat_template.<name>). */
    char *chat_template;
    int n_templates;
    char **tmpl_name, **tmpl_text;
    int post_kind;             /* TK_POST_*: how the prefix/suffix ids were given */
};

enum { TK_POST_NONE, TK_POST_TEMPLATE, TK_POST_ROBERTA, TK_POST_BERT };

/* Engine helpers (tokenizer.c). */
tk_str tk_str_dup(const char *s, size_t len);
int tk_strmap_build(tk_strmap *m, const tk_str *strs, int32_t n, const char *name);
int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t len);
int tk_pairmap_build(lmp_tokenizer *t);
int tk_pair_get(const tk_pairmap *m, int32_t a, int32_t b, int32_t *rank, int32_t *new_id);
/* Compiles a regex (UTF, UCP, invalid UTF allowed, JIT). */
int tk_regex(pcre2_code **re, const char *pat, size_t len, const char *name, bool multiline);
/* Byte-level alphabet: byte -> code point, code point -> byte (or -1). */
uint32_t tk_byte_to_cp(uint8_t b);
int tk_cp_to_byte(uint32_t cp);
int tk_utf8_encode(uint32_t cp, char *out);
/* Decodes one UTF-8 char at s[0..n): returns its length (1 for an invalid byte, *cp set to
 * 0xFFFFFFFF then). */
int tk_utf8_next(const unsigned char *s, size_t n, uint32_t *cp);
/* Finishes a tokenizer built by a loader: byte tables, raw vocab, pair map, added-token
 * normalized forms, ttype defaults. */
int tk_finalize(lmp_tokenizer *t);
/* Appends a normalizer/pre-tokenizer/decoder, zeroed, returning it (NULL: ENOMEM set). */
tk_norm *tk_add_norm(lmp_tokenizer *t);
tk_pre *tk_add_pre(lmp_tokenizer *t);
tk_dec *tk_add_dec(lmp_tokenizer *t);
/* Sets up the pre-tokenizer regex list of llama.cpp's tokenizer.ggml.pre `pre` followed by
 * a ByteLevel step; LMP_EUNSUPPORTED for an unknown name. */
int tk_gguf_pre_setup(lmp_tokenizer *t, const char *pre, const char *name);

extern const char tk_gpt2_regex[];
extern const char tk_punct_regex[], tk_ws_regex[];
extern const char *const tk_behavior_names[5]; /* TK_B_* as tokenizer.json spells them */

#endif
