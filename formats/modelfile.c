/*
 * Ollama Modelfile beside a GGUF (deploy.h). The Go templates follow Ollama's own
 * templates for each family (.System, .Messages with .Role and .Content; the final
 * assistant header left open for generation).
 */
#include "deploy.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    const char *tmpl;
    const char *stops[4];
} family_row;

static const family_row g_fam[] = {
    [LMP_CHAT_NONE] = {"none", NULL, {0}},
    [LMP_CHAT_CHATML] = {"chatml",
                         "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
                         "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
                         "<|im_start|>assistant\n",
                         {"<|im_end|>", "<|im_start|>", NULL}},
    [LMP_CHAT_LLAMA3] = {"llama3",
                         "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
                         "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}"
                         "<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n",
                         {"<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", NULL}},
    [LMP_CHAT_LLAMA2] = {"llama2",
                         "{{- range $i, $_ := .Messages }}{{- if eq .Role \"user\" }}[INST] "
                         "{{ if and (eq $i 0) $.System }}{{ $.System }}\n\n{{ end }}{{ .Content }} [/INST]"
                         "{{- else if eq .Role \"assistant\" }} {{ .Content }}</s>{{ end }}{{ end }}",
                         {"[INST]", "[/INST]", NULL}},
    [LMP_CHAT_ZEPHYR] = {"zephyr",
                         "{{- if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}"
                         "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}</s>\n{{ end }}<|assistant|>\n",
                         {"</s>", "<|user|>", "<|system|>", NULL}},
    [LMP_CHAT_PHI3] = {"phi3",
                       "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
                       "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n",
                       {"<|end|>", "<|user|>", "<|assistant|>", NULL}},
    [LMP_CHAT_GEMMA] = {"gemma",
                        "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}"
                        "{{ .Role }}{{ end }}\n{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n",
                        {"<end_of_turn>", "<start_of_turn>", NULL}},
    [LMP_CHAT_UNKNOWN] = {"unknown", NULL, {0}},
};

char *lmp_chat_template_find(const char *gguf, const char *src)
{
    lmp_gguf_reader r;
    char *out = NULL;
    if (gguf && lmp_gguf_open(&r, gguf) == 0) {
        const char *s = NULL;
        if (lmp_gguf_get_str(&r, "tokenizer.chat_template", &s) == 0 && s && *s)
            out = strdup(s);
        lmp_gguf_close(&r);
    }
    if (!out && src) {
        if (lmp_path_is_dir(src)) {
            out = lmp_chat_template_of_dir(src);
        } else {
            /* a .safetensors file: its folder */
            const char *sl = strrchr(src, '/');
            char *d = sl ? strndup(src, (size_t)(sl - src)) : strdup(".");
            if (d && !lmp_str_endswith_ci(src, ".gguf"))
                out = lmp_chat_template_of_dir(d);
            free(d);
        }
    }
    return out;
}

/* A Modelfile string: """...""" unless the text holds three quotes (not in ours). */
static int put(lmp_outfile *o, const char *s)
{
    return lmp_outfile_write(o, s, strlen(s));
}

int lmp_modelfile_write(const char *gguf, const char *from, const char *jinja, bool force, char **path_out)
{
    if (path_out)
        *path_out = NULL;
    size_t k = strlen(gguf);
    if (lmp_str_endswith_ci(gguf, ".gguf"))
        k -= 5;
    char *path = malloc(k + 16);
    if (!path)
        return lmp_err(LMP_ENOMEM, "out of memory");
    snprintf(path, k + 16, "%.*s.Modelfile", (int)k, gguf);
    const char *file = from ? from : gguf;
    const char *base = strrchr(file, '/');
    base = base ? base + 1 : file;
    lmp_chat_family fam = lmp_chat_family_of(jinja);
    lmp_outfile o;
    int rc = lmp_outfile_open(&o, path, force);
    if (rc) {
        free(path);
        return rc;
    }
    char line[1024];
    snprintf(line, sizeof line, "# Ollama Modelfile written by lmpress: ollama create NAME -f %s\nFROM ./%s\n",
             strrchr(path, '/') ? strrchr(path, '/') + 1 : path, base);
    rc = put(&o, line);
    if (!rc && g_fam[fam].tmpl) {
        snprintf(line, sizeof line, "# chat template family: %s (translated from the model's Jinja template)\n",
                 g_fam[fam].name);
        rc = put(&o, line);
        if (!rc)
            rc = put(&o, "TEMPLATE \"\"\"");
        if (!rc)
            rc = put(&o, g_fam[fam].tmpl);
        if (!rc)
            rc = put(&o, "\"\"\"\n");
        for (int i = 0; !rc && g_fam[fam].stops[i]; i++) {
            snprintf(line, sizeof line, "PARAMETER stop \"%s\"\n", g_fam[fam].stops[i]);
            rc = put(&o, line);
        }
    } else if (!rc) {
        rc = put(&o, "# The model's chat template is not one lmpress translates (ChatML, Llama 3, Llama 2/Mistral "
                     "[INST], Zephyr, Phi-3, Gemma): add TEMPLATE and PARAMETER stop by hand.\n");
    }
    if (rc) {
        lmp_outfile_abort(&o);
        free(path);
        return rc;
    }
    if ((rc = lmp_outfile_commit(&o))) {
        free(path);
        return rc;
    }
    if (path_out)
        *path_out = path;
    else
        free(path);
    return LMP_OK;
}
