/*
 * Random-weight Hugging Face checkpoints with real model shapes, for tests, benchmarks
 * and the demo: config.json, model.safetensors (sharded above a size), a byte-level BPE
 * tokenizer.json trained on built-in text, tokenizer_config.json,
 * generation_config.json and corpus.txt (that built-in text, usable as evaluation text).
 * Deterministic for a seed. Part of lib/io.
 */
#ifndef LMP_SYNTH_H
#define LMP_SYNTH_H

#include "config.h"

typedef struct {
    const char *name;
    const char *summary;
    lmp_config config; /* vocab_size 0 = the size of the generated tokenizer */
} lmp_synth_preset;

/* NULL-terminated table (name == NULL ends it). */
const lmp_synth_preset *lmp_synth_presets(void);
const lmp_synth_preset *lmp_synth_find(const char *name);
/* true for the presets whose mixture-of-experts routers tie the last expert's row to
 * expert 0's, so that tokens meet routing ties (the tiny MoE presets, for tests): pass
 * it on as lmp_synth_params.router_tie. */
bool lmp_synth_router_tie(const char *preset);

typedef struct {
    /* The shapes: a preset's (its router_tie too), else a config.json's, else `config`. */
    const char *preset;      /* lmp_synth_find name, or NULL */
    const char *config_path; /* HF config.json, or NULL */
    lmp_config config;       /* shapes when neither is given; vocab_size 0 = tokenizer size */
    int layers;              /* keep only the first `layers` decoder layers (0 = all) */
    uint64_t seed;
    lmp_dtype dtype;         /* f32, f16 or bf16 */
    uint64_t shard_mb;       /* shard safetensors above this many MiB (default 2048, like HF) */
    bool force;
    int tokenizer_merges;  /* upper bound of BPE merges trained (<= vocab - 256 - specials) */
    bool router_tie;       /* lmp_synth_router_tie(preset) */
} lmp_synth_params;

void lmp_synth_default_params(lmp_synth_params *p);
/* The parameters (LMP_EINVAL naming the lmpress option): not both preset and config_path,
 * a known preset, layers in [0, LMP_MAX_LAYERS], dtype f32/f16/bf16, shard_mb in
 * [1, 2^40]. lmp_synth_write calls it. */
int lmp_synth_check(const lmp_synth_params *p);
/* The shapes p describes (preset, config.json or config, then layers) into *c. */
int lmp_synth_config(const lmp_synth_params *p, lmp_config *c);
/* Writes the checkpoint folder `dir` atomically (built under a temporary name, renamed
 * when complete). Streams tensor by tensor: memory does not grow with model size. */
int lmp_synth_write(const lmp_synth_params *p, const char *dir);
/* The built-in English text the tokenizer is trained on (also used by the demo). */
const char *lmp_synth_corpus(void);

#endif
