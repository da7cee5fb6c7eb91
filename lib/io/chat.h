/*
 * Chat templates by family (issue 18 items 9 and 11): lmpress recognises the common
 * families of Hugging Face Jinja chat templates by their markers and renders
 * conversations for them directly (no Jinja interpreter). Supported: ChatML (Qwen2/2.5,
 * SmolLM2 and many fine-tunes), Llama 3, Llama 2 / Mistral [INST], Zephyr / TinyLlama-Chat,
 * Phi-3, Gemma. Any other template is LMP_CHAT_UNKNOWN, refused by the renderer.
 */
#ifndef LMP_IO_CHAT_H
#define LMP_IO_CHAT_H

#include "../core/core.h"

typedef enum {
    LMP_CHAT_NONE = 0,  /* no chat template */
    LMP_CHAT_CHATML,    /* <|im_start|>role ... <|im_end|> */
    LMP_CHAT_LLAMA3,    /* <|start_header_id|>role<|end_header_id|> ... <|eot_id|> */
    LMP_CHAT_LLAMA2,    /* [INST] ... [/INST] */
    LMP_CHAT_ZEPHYR,    /* <|user|>\n ... </s> */
    LMP_CHAT_PHI3,      /* <|user|>\n ... <|end|> */
    LMP_CHAT_GEMMA,     /* <start_of_turn>user ... <end_of_turn> */
    LMP_CHAT_UNKNOWN,   /* a template lmpress does not recognise */
} lmp_chat_family;

lmp_chat_family lmp_chat_family_of(const char *jinja);
const char *lmp_chat_family_name(lmp_chat_family f);
#define LMP_CHAT_SUPPORTED "ChatML, Llama 3, Llama 2/Mistral [INST], Zephyr, Phi-3, Gemma"

/* "chat_template" of dir/tokenizer_config.json (a string, or the list entry named
 * "default"); malloc'd, NULL when none. */
char *lmp_chat_template_of_dir(const char *dir);

typedef struct {
    const char *role;    /* "system", "user", "assistant" */
    const char *content;
} lmp_chat_msg;

/* Renders a whole conversation (no generation prompt) as the family's template would:
 * malloc'd NUL-terminated text in *out. LMP_EUNSUPPORTED for NONE/UNKNOWN. */
int lmp_chat_render(lmp_chat_family f, const lmp_chat_msg *msgs, int n, char **out);

#endif
