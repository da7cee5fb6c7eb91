/*
 * One way to open any checkpoint lmpress reads: an HF folder (config.json +
 * safetensors, single or sharded, + tokenizer.json), a bare .safetensors file or index,
 * or a .gguf file. Also the HF <-> GGUF (llama.cpp) tensor-name mapping. Part of lib/io.
 */
#ifndef LMP_CHECKPOINT_H
#define LMP_CHECKPOINT_H

#include "config.h"
#include "gguf.h"
#include "safetensors.h"

typedef enum { LMP_CKPT_HF = 0, LMP_CKPT_SAFETENSORS, LMP_CKPT_GGUF } lmp_ckpt_kind;

typedef struct {
    lmp_ckpt_kind kind;
    char *path;              /* as given */
    char *dir;               /* folder holding config/tokenizer files (HF), else NULL */
    bool has_config;
    lmp_config config;       /* from config.json or GGUF metadata */
    lmp_st_reader st;        /* HF / SAFETENSORS */
    lmp_gguf_reader gguf;    /* GGUF */
    int n_tensors;
    const lmp_tensor *tensors; /* borrowed from st or gguf; names as stored in the file */
    char *tokenizer_path;    /* tokenizer.json next to the weights, or NULL */
    /* GGUF llama-architecture files hold attn_q/attn_k rows in ggml's interleaved RoPE
     * order (convert_hf_to_gguf's permute); true when that applies to this file. */
    bool qk_interleaved;
    char config_error[512];  /* why has_config is false (lenient opens only) */
} lmp_ckpt;

/* Opens `path`; the hyper-parameters must be readable and supported. */
int lmp_ckpt_open(lmp_ckpt *c, const char *path);
/* require_config=false still opens the tensors when the config is missing or unsupported
 * (has_config false, config_error says why): for inspect. */
int lmp_ckpt_open_ex(lmp_ckpt *c, const char *path, bool require_config);
void lmp_ckpt_close(lmp_ckpt *c); /* accepts NULL */
const lmp_tensor *lmp_ckpt_find(const lmp_ckpt *c, const char *name); /* stored name */
/* Finds a tensor by its HF name in any kind of checkpoint (GGUF names are mapped). */
const lmp_tensor *lmp_ckpt_find_hf(const lmp_ckpt *c, const char *hf_name);

/* HF <-> llama.cpp tensor names ("model.layers.3.mlp.down_proj.weight" <->
 * "blk.3.ffn_down.weight"). Return LMP_ENOTFOUND for names with no mapping. */
int lmp_name_hf_to_gguf(const char *hf, char *out, size_t n);
int lmp_name_gguf_to_hf(const char *gg, char *out, size_t n);
/* The same for a GGUF architecture whose names differ from llama's (gemma2/gemma3/olmo2
 * post-norms, phi3's attn_qkv and fused ffn_up); arch NULL or any other: as above. */
int lmp_name_hf_to_gguf_arch(const char *arch, const char *hf, char *out, size_t n);
int lmp_name_gguf_to_hf_arch(const char *arch, const char *gg, char *out, size_t n);

/* Row permutation between HF rotate-half and ggml interleaved RoPE layouts for a q or k
 * projection with n_head heads (rows = n_head * head_dim). to_gguf selects direction.
 * Returns the source row for destination row `row`. */
int64_t lmp_qk_perm_row(int64_t row, int n_head, int64_t head_dim, bool to_gguf);

#endif
