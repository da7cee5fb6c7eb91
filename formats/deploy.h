/*
 * Deployment helpers around a written GGUF (issue 18 item 11): an Ollama Modelfile
 * beside it. Splitting is lib/io/gguf_split.h.
 */
#ifndef LMP_FORMATS_DEPLOY_H
#define LMP_FORMATS_DEPLOY_H

#include "lib/io/io.h"

/* The chat-template families lmpress translates to Ollama's Go template. */
typedef enum {
    LMP_CHAT_NONE = 0,  /* no chat template */
    LMP_CHAT_CHATML,    /* <|im_start|>role ... <|im_end|> (Qwen2/2.5, SmolLM2, many fine-tunes) */
    LMP_CHAT_LLAMA3,    /* <|start_header_id|>role<|end_header_id|> ... <|eot_id|> */
    LMP_CHAT_LLAMA2,    /* [INST] ... [/INST] (Llama 2, Mistral v0.1-v0.3) */
    LMP_CHAT_ZEPHYR,    /* <|user|>\n ... </s> (Zephyr, TinyLlama-Chat) */
    LMP_CHAT_PHI3,      /* <|user|>\n ... <|end|> */
    LMP_CHAT_GEMMA,     /* <start_of_turn>user ... <end_of_turn> */
    LMP_CHAT_UNKNOWN,   /* a template lmpress does not translate */
} lmp_chat_family;

/* Recognises the family of a Jinja chat template by its markers. */
lmp_chat_family lmp_chat_family_of(const char *jinja);
const char *lmp_chat_family_name(lmp_chat_family f);

/* The chat template of a GGUF (tokenizer.chat_template) or, when it has none, of the
 * Hugging Face folder it was made from (tokenizer_config.json "chat_template": a string,
 * or the entry named "default" of a list). malloc'd; NULL when neither has one. */
char *lmp_chat_template_find(const char *gguf, const char *src_model);

/* Writes <gguf less .gguf>.Modelfile: FROM ./<file name> (`from` overrides the file
 * named, for split GGUFs), TEMPLATE translated from `jinja`, PARAMETER stop for each of
 * the family's end markers. An unknown family gets FROM and a comment saying the template
 * must be added by hand. Atomic; force as lmp_outfile_open. *path_out (may be NULL)
 * receives the path (malloc'd). */
int lmp_modelfile_write(const char *gguf, const char *from, const char *jinja, bool force, char **path_out);

#endif
