/*
 * Tokenizers with Hugging Face parity: byte-pair encoding as the `tokenizers` library runs
 * it from a tokenizer.json (model BPE with its normalizers, pre-tokenizers, added tokens,
 * post-processor and decoders), and the GGUF vocabularies llama.cpp reads
 * (tokenizer.ggml.model "llama": score-driven SentencePiece BPE with byte fallback;
 * "gpt2": ranked merges with the pre-tokenizer named by tokenizer.ggml.pre). Part of
 * lib/infer.
 *
 * Not here: WordPiece, Unigram and WordLevel models, NFD/NFKD normalization, the
 * Whitespace/BertPreTokenizer/UnicodeScripts pre-tokenizers (refused with LMP_EUNSUPPORTED
 * naming the component), truncation and padding (a tokenizer.json's
 * "truncation"/"padding" settings are ignored: lmpress always encodes the whole text).
 *
 * Text is raw bytes. Invalid UTF-8 never crashes: SentencePiece-style vocabularies with
 * byte_fallback encode each invalid byte as its <0xXX> token; every other tokenizer first
 * replaces each maximal invalid subsequence by U+FFFD (what Python's
 * bytes.decode("utf-8", "replace") hands to Hugging Face).
 *
 * A loaded tokenizer is immutable: encode/decode/accessors are thread safe.
 */
#ifndef LMP_TOKENIZER_H
#define LMP_TOKENIZER_H

#include "../core/core.h"
#include "../io/checkpoint.h"
#include "../io/gguf.h"

typedef struct lmp_tokenizer lmp_tokenizer;

/* Loads from `path`: an HF folder (tokenizer.json inside, plus tokenizer_config.json when
 * present for the bos/eos/pad names and the chat template, or chat_template.jinja), a
 * tokenizer.json, or a .gguf file. A folder without tokenizer.json but with vocab.json +
 * merges.txt (or the path of such a vocab.json) is built as transformers' converter for
 * tokenizer_config.json's tokenizer_class builds it (Qwen2Tokenizer, GPT2Tokenizer,
 * CodeGenTokenizer, RobertaTokenizer, BartTokenizer; others are LMP_EUNSUPPORTED), with
 * the added tokens of added_tokens_decoder or added_tokens.json. *tok is owned by
 * the caller (lmp_tokenizer_free). @return 0, LMP_EIO/LMP_ENOTFOUND (file), LMP_EFORMAT
 * (malformed), LMP_EUNSUPPORTED (a component named in the message). */
int lmp_tokenizer_load(lmp_tokenizer **tok, const char *path);

/* Parses tokenizer.json text (len bytes, need not be NUL-terminated); `name` is used in
 * messages. @return as lmp_tokenizer_load. */
int lmp_tokenizer_from_json(lmp_tokenizer **tok, const char *json, size_t len, const char *name);

/* Builds from the tokenizer.ggml.* keys of an open GGUF (the reader may be closed after).
 * An unknown tokenizer.ggml.model or .pre is LMP_EUNSUPPORTED naming it. */
int lmp_tokenizer_from_gguf(lmp_tokenizer **tok, const lmp_gguf_reader *r);

void lmp_tokenizer_free(lmp_tokenizer *tok); /* accepts NULL */

/* Encodes len bytes of text. add_special: apply the post-processor (BOS/EOS template) as
 * HF's encode(add_special_tokens=True) does; for GGUF vocabularies add BOS/EOS as
 * tokenizer.ggml.add_bos_token/add_eos_token say (defaults: llama BOS yes, gpt2 no).
 * Special tokens written in the text are always recognised (HF behaviour).
 * *ids is malloc'd (owned by the caller, non-NULL even when *n_ids is 0).
 * @return 0 or LMP_ENOMEM / LMP_EUNSUPPORTED (NFC on text it cannot normalize). */
int lmp_tokenizer_encode(const lmp_tokenizer *tok, const char *text, size_t len, bool add_special,
                         int32_t **ids, size_t *n_ids);

/* Decodes ids back to text with the tokenizer's decoders (HF decode()); skip_special drops
 * special tokens, otherwise they are rendered as their text. *text is malloc'd and
 * NUL-terminated, *len excludes the NUL. @return 0, LMP_EINVAL for an id out of range. */
int lmp_tokenizer_decode(const lmp_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                         char **text, size_t *len);

int lmp_tokenizer_n_vocab(const lmp_tokenizer *tok); /* including added tokens */
int lmp_tokenizer_bos(const lmp_tokenizer *tok);     /* -1 when none */
int lmp_tokenizer_eos(const lmp_tokenizer *tok);     /* -1 when none */
int lmp_tokenizer_pad(const lmp_tokenizer *tok);     /* -1 when none */
int lmp_tokenizer_unk(const lmp_tokenizer *tok);     /* -1 when none */
/* Whether id is a special (control) token: HF added token with special=true, GGUF type
 * control/unknown. */
bool lmp_tokenizer_is_special(const lmp_tokenizer *tok, int32_t id);

/* The raw vocabulary string of id ("Ġthe", "▁the", "<0x0A>", "<s>"), borrowed, not
 * NUL-terminated in general; NULL for an id out of range or an unused id. */
const char *lmp_tokenizer_piece(const lmp_tokenizer *tok, int32_t id, size_t *len);

/* Identity hash of vocabulary + merges (or scores) + added tokens (FNV-1a, lmp_fnv1a). */
uint64_t lmp_tokenizer_hash(const lmp_tokenizer *tok);

/* "llama" or "gpt2": the tokenizer.ggml.model this tokenizer maps to. */
const char *lmp_tokenizer_model_name(const lmp_tokenizer *tok);

/* Writes the complete tokenizer.ggml.* metadata into a GGUF being written (before
 * lmp_gguf_writer_begin): model, pre (gpt2: recognised from the pre-tokenizer, an
 * unrecognisable one is LMP_EUNSUPPORTED), tokens, scores (llama: chosen so llama.cpp's
 * score-driven merge order reproduces the HF merge ranks), token_type, merges (gpt2), the
 * bos/eos/unknown/padding ids when known, add_bos_token/add_eos_token (from the
 * post-processor), add_space_prefix (llama). A tokenizer whose pipeline GGUF cannot express
 * is LMP_EUNSUPPORTED with the reason. */
/* n_rows: the model's embedding rows; when larger than the vocabulary, [PADn] tokens of
 * type unused fill the gap (llama.cpp sizes the embedding by the vocabulary). 0 = none. */
int lmp_tokenizer_write_gguf(const lmp_tokenizer *tok, lmp_gguf_writer *w, int32_t n_rows);

/* Hugging Face files out (tokenizer_hf.c). lmp_tokenizer_to_json: a tokenizer.json with
 * this tokenizer's vocabulary, merges (a score-driven GGUF "llama" vocabulary gets every
 * split of a token into two tokens as a merge, ranked by the token's score), added tokens
 * and pipeline, which loads back into the same ids. lmp_tokenizer_config_to_json: a
 * tokenizer_config.json with the bos/eos/unk/pad tokens, add_bos_token/add_eos_token, the
 * chat template(s) and added_tokens_decoder. Both malloc'd. */
int lmp_tokenizer_to_json(const lmp_tokenizer *tok, char **json);
int lmp_tokenizer_config_to_json(const lmp_tokenizer *tok, char **json);
/* Writes tokenizer.json and tokenizer_config.json into dir. */
int lmp_tokenizer_write_hf(const lmp_tokenizer *tok, const char *dir);

/* The one way every writer of an output folder gets its tokenizer files. From an HF
 * folder `src`: copies tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 * generation_config.json, tokenizer.model, vocab.json, merges.txt, added_tokens.json,
 * chat_template.jinja and chat_template.json where present. From a .gguf `src`: writes
 * tokenizer.json and tokenizer_config.json made from its vocabulary (a GGUF without one, or
 * with one lmpress cannot read, is a warning: no files). NULL src: nothing. */
int lmp_tokenizer_files_from(const char *src, const char *dst);
int lmp_tokenizer_files_from_gguf(const lmp_gguf_reader *r, const char *dst);
/* The same for an open checkpoint (its folder, or its GGUF vocabulary). */
int lmp_tokenizer_files_write(const lmp_ckpt *c, const char *dst);

/* What `lmpress tokenize` encodes: exactly one of text (a C string) and file (its bytes,
 * exactly), with or without the post-processor's special tokens. */
typedef struct {
    const char *text;
    const char *file;
    bool no_bos;   /* add_special = false */
} lmp_tokenize_params;

void lmp_tokenize_default_params(lmp_tokenize_params *p);
/* LMP_EINVAL naming the lmpress options unless exactly one of text and file is given. */
int lmp_tokenize_check(const lmp_tokenize_params *p);
/* Loads the tokenizer of `path` (as lmp_tokenizer_load) into *tok and encodes p's text
 * into *ids / *n_ids (as lmp_tokenizer_encode). *tok and *ids are the caller's, also on
 * failure (NULL when not made). */
int lmp_tokenize(const char *path, const lmp_tokenize_params *p, lmp_tokenizer **tok, int32_t **ids,
                 size_t *n_ids);

#endif
