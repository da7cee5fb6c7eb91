/*
 * Deployment helpers around a written GGUF (issue 18 item 11): an Ollama Modelfile
 * beside it. Splitting is lib/io/gguf_split.h.
 */
#ifndef LMP_FORMATS_DEPLOY_H
#define LMP_FORMATS_DEPLOY_H

#include "lib/io/io.h"

/* The families and their detection: lib/io/chat.h. */

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
