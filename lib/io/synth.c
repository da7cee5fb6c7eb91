/*
 * lmpress synth: random-weight checkpoints with the real shapes of popular models. The
 * weights are seeded per tensor and per 1M-element chunk, so the output is the same for
 * a seed whatever the thread count. The tokenizer is a byte-level BPE (GPT-2 byte
 * alphabet, GPT-2 pre-tokenizer regex) trained here on built-in text; its vocabulary is
 * smaller than the presets' vocab_size, which (as in many real models) leaves embedding
 * rows no token reaches.
 */
#include "synth.h"
#include "safetensors.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Written for lmpress; any resemblance to a real text is in the subject matter only. */
static const char g_corpus[] =
    "The river ran past the old mill and under the stone bridge, where the children of the "
    "village came every morning to watch the water. In the spring it was loud and brown, "
    "carrying branches and leaves from the hills; in the summer it grew quiet and clear, and "
    "the fish could be seen resting in the shadow of the rocks.\n\n"
    "Anna was the first to notice that the water had changed. She told her brother, who told "
    "the miller, who said that the weather had been dry for three weeks and that the river "
    "always fell a little in August. But Anna counted the steps on the bank every day, and "
    "every day there was one more step above the water than the day before.\n\n"
    "A language model reads a sequence of tokens and predicts the next one. It is trained on a "
    "large collection of text, and the quality of its predictions is measured by perplexity: "
    "the exponential of the average negative log-likelihood of the correct token. A smaller "
    "model can be made from a larger one by quantization, which stores each weight in fewer "
    "bits, or by pruning, which removes weights that matter least. Both save memory and time, "
    "and both cost some accuracy; the question is always how much.\n\n"
    "The numbers 1, 2, 3 and 4 appear in the table below, together with 10, 20, 30 and 40, "
    "and the year 1999. Prices were $12.50, $7.25 and $100; the distance was 42 km.\n\n"
    "\"Where are you going?\" asked the teacher. \"To the station,\" said the boy, \"because the "
    "train leaves at seven, and I don't want to miss it again.\" They walked together through "
    "the market, past the bakery and the shop that sold maps, until they could hear the bell.\n\n"
    "In the evening the lamps were lit one by one along the harbour. The boats came back with "
    "their nets full, and the people who had waited all day on the pier helped to carry the "
    "baskets up the hill. Nobody spoke much; they were tired, and the wind was cold, but there "
    "would be bread and soup and a fire in every house before the night was over.\n\n"
    "Quantization maps each group of weights to a small set of levels: a scale, sometimes a "
    "zero point, and an integer code for every weight. Round-to-nearest is the simplest method. "
    "GPTQ corrects the remaining weights of a row after each one is quantized, using second-order "
    "information from calibration data. AWQ protects the channels that see the largest "
    "activations by scaling them before quantization. Pruning methods such as Wanda and SparseGPT "
    "decide which weights to remove by looking at the inputs as well as the weights themselves.\n";

const char *lmp_synth_corpus(void) { return g_corpus; }

/* ---------------------------------------------------------------- presets */

#define P(mt, d, ff, nl, nh, nkv, hd, v, ctx, eps, theta, tie)                                       \
    {.model_type = mt, .arch = "", .hidden_size = d, .intermediate_size = ff, .n_layers = nl,        \
     .n_heads = nh, .n_kv_heads = nkv, .head_dim = hd, .vocab_size = v, .max_pos = ctx,              \
     .rms_eps = eps, .rope_theta = theta, .tie_embeddings = tie, .bos_id = -1, .eos_id = -1,         \
     .pad_id = -1, .rope_factor = 1}

static lmp_synth_preset g_presets[] = {
    {"tiny", "llama, 2 layers, d 256, FFN 512, GQA 4/2 (fast tests)",
     P("llama", 256, 512, 2, 4, 2, 64, 0, 512, 1e-5f, 10000.0f, false)},
    {"tiny-qwen2", "qwen2 (q/k/v bias), 2 layers, d 256, tied embeddings",
     P("qwen2", 256, 512, 2, 4, 2, 64, 0, 512, 1e-6f, 1000000.0f, true)},
    {"tiny-mistral", "mistral, 2 layers, d 256, GQA 8/2, head_dim 32",
     P("mistral", 256, 512, 2, 8, 2, 32, 0, 512, 1e-5f, 1000000.0f, false)},
    {"tiny-llama3", "llama with Llama 3 RoPE scaling, 2 layers, d 256, tied",
     P("llama", 256, 512, 2, 4, 1, 64, 0, 512, 1e-5f, 500000.0f, true)},
    {"smollm2-135m", "SmolLM2-135M shapes: d 576, 30 layers, 9/3 heads, FFN 1536, vocab 49152",
     P("llama", 576, 1536, 30, 9, 3, 64, 49152, 8192, 1e-5f, 100000.0f, true)},
    {"qwen2.5-0.5b", "Qwen2.5-0.5B shapes: d 896, 24 layers, 14/2 heads, FFN 4864, vocab 151936",
     P("qwen2", 896, 4864, 24, 14, 2, 64, 151936, 32768, 1e-6f, 1000000.0f, true)},
    {"tinyllama-1.1b", "TinyLlama-1.1B shapes: d 2048, 22 layers, 32/4 heads, FFN 5632, vocab 32000",
     P("llama", 2048, 5632, 22, 32, 4, 64, 32000, 2048, 1e-5f, 10000.0f, false)},
    {"llama-3.2-1b", "Llama-3.2-1B shapes: d 2048, 16 layers, 32/8 heads, FFN 8192, vocab 128256, llama3 RoPE",
     P("llama", 2048, 8192, 16, 32, 8, 64, 128256, 131072, 1e-5f, 500000.0f, true)},
    /* issue 16 families: tiny ones for the golden tests (vocab 512, each feature of the
     * family exercised within 72 positions), then real shapes */
    {"tiny-phi3", "phi3: fused qkv/gate_up, partial RoPE 0.75, longrope (original ctx 32), window 48, tied",
     P("phi3", 128, 256, 2, 4, 2, 32, 512, 128, 1e-5f, 10000.0f, true)},
    {"tiny-gemma", "gemma: (1+w) norms, GeGLU, embeddings x sqrt(d), head_dim 64 != d/heads",
     P("gemma", 128, 256, 2, 4, 1, 64, 512, 512, 1e-6f, 10000.0f, true)},
    {"tiny-gemma2", "gemma2: pre/post norms, soft-caps 20/3, query_pre_attn_scalar 24, window 16 on even layers",
     P("gemma2", 128, 256, 3, 4, 2, 32, 512, 512, 1e-6f, 10000.0f, true)},
    {"tiny-gemma3", "gemma3_text: per-head (1+w) q/k norms, window 16 on 2 of 3 layers, local theta 1e4, global linear x8",
     P("gemma3_text", 128, 256, 3, 4, 1, 64, 512, 512, 1e-6f, 1000000.0f, true)},
    {"tiny-qwen3", "qwen3: per-head q/k RMSNorm, head_dim 64 != d/heads, tied",
     P("qwen3", 128, 256, 2, 4, 2, 64, 512, 512, 1e-6f, 1000000.0f, true)},
    {"tiny-smollm3", "smollm3: no RoPE on every 4th layer (4 layers)",
     P("smollm3", 128, 256, 4, 4, 2, 32, 512, 512, 1e-6f, 2000000.0f, true)},
    {"tiny-granite", "granite: embedding x12, attention 0.1, residual 0.22, logits /8",
     P("granite", 128, 256, 2, 4, 2, 32, 512, 512, 1e-5f, 10000.0f, true)},
    {"tiny-olmo2", "olmo2: post-norms only, full-width q/k RMSNorm, untied",
     P("olmo2", 128, 256, 2, 4, 4, 32, 512, 512, 1e-6f, 500000.0f, false)},
    {"phi-4-mini", "Phi-4-mini shapes: d 3072, 32 layers, 24/8 heads, FFN 8192, vocab 200064, partial RoPE 0.75, longrope",
     P("phi3", 3072, 8192, 32, 24, 8, 128, 200064, 131072, 1e-5f, 10000.0f, true)},
    {"phi-3.5-mini", "Phi-3.5-mini shapes: d 3072, 32 layers, 32/32 heads, FFN 8192, vocab 32064, longrope",
     P("phi3", 3072, 8192, 32, 32, 32, 96, 32064, 131072, 1e-5f, 10000.0f, false)},
    {"gemma-3-1b", "Gemma-3-1B shapes: d 1152, 26 layers, 4/1 heads of 256, FFN 6912, vocab 262144, 5 local : 1 global",
     P("gemma3_text", 1152, 6912, 26, 4, 1, 256, 262144, 32768, 1e-6f, 1000000.0f, true)},
    {"gemma-3-270m", "Gemma-3-270M shapes: d 640, 18 layers, 4/1 heads of 256, FFN 2048, vocab 262144",
     P("gemma3_text", 640, 2048, 18, 4, 1, 256, 262144, 32768, 1e-6f, 1000000.0f, true)},
    {"gemma-2-2b", "Gemma-2-2B shapes: d 2304, 26 layers, 8/4 heads of 256, FFN 9216, vocab 256000, soft-caps",
     P("gemma2", 2304, 9216, 26, 8, 4, 256, 256000, 8192, 1e-6f, 10000.0f, true)},
    {"qwen3-0.6b", "Qwen3-0.6B shapes: d 1024, 28 layers, 16/8 heads of 128, FFN 3072, vocab 151936",
     P("qwen3", 1024, 3072, 28, 16, 8, 128, 151936, 40960, 1e-6f, 1000000.0f, true)},
    {"qwen3-4b", "Qwen3-4B shapes: d 2560, 36 layers, 32/8 heads of 128, FFN 9728, vocab 151936",
     P("qwen3", 2560, 9728, 36, 32, 8, 128, 151936, 40960, 1e-6f, 1000000.0f, true)},
    {"smollm3-3b", "SmolLM3-3B shapes: d 2048, 36 layers, 16/4 heads, FFN 11008, vocab 128256, no RoPE every 4th layer",
     P("smollm3", 2048, 11008, 36, 16, 4, 128, 128256, 65536, 1e-6f, 5000000.0f, true)},
    {"granite-3.3-2b", "Granite-3.3-2B shapes: d 2048, 40 layers, 32/8 heads, FFN 8192, vocab 49159, multipliers",
     P("granite", 2048, 8192, 40, 32, 8, 64, 49159, 131072, 1e-5f, 10000000.0f, true)},
    {"olmo2-1b", "OLMo-2-1B shapes: d 2048, 16 layers, 16/16 heads, FFN 8192, vocab 100352",
     P("olmo2", 2048, 8192, 16, 16, 16, 128, 100352, 4096, 1e-6f, 500000.0f, false)},
    /* mixture of experts (family_preset adds the expert keys); the tiny ones tie the last
     * expert's router row to expert 0's (lmp_synth_router_tie) */
    {"tiny-mixtral", "mixtral, 2 layers, d 64, 8 experts of FFN 96, top-2, GQA 4/2",
     P("mixtral", 64, 96, 2, 4, 2, 16, 0, 512, 1e-5f, 1000000.0f, false)},
    {"tiny-qwen3-moe", "qwen3_moe, 3 layers (layer 1 dense), d 64, 16 experts of FFN 32, top-4, q/k norm",
     P("qwen3_moe", 64, 128, 3, 4, 2, 32, 0, 512, 1e-6f, 1000000.0f, false)},
    {"tiny-granitemoe", "granitemoe, 2 layers, d 64, 8 experts of FFN 48 (fused), top-3, multipliers",
     P("granitemoe", 64, 48, 2, 4, 2, 16, 0, 512, 1e-6f, 1500000.0f, true)},
    {"mixtral-8x7b", "Mixtral-8x7B shapes in 2 of its 32 layers: d 4096, 32/8 heads, 8 experts of FFN 14336, top-2",
     P("mixtral", 4096, 14336, 2, 32, 8, 128, 32000, 32768, 1e-5f, 1000000.0f, false)},
    {"qwen3-30b-a3b", "Qwen3-30B-A3B shapes in 2 of its 48 layers: d 2048, 32/4 heads, 128 experts of FFN 768, top-8",
     P("qwen3_moe", 2048, 6144, 2, 32, 4, 128, 151936, 40960, 1e-6f, 1000000.0f, false)},
    {.name = NULL},
};

/* The family keys of the issue-16 presets (the tiny ones chosen so that each feature
 * shows within the golden tests' 72 positions). */
static void family_preset(const char *name, lmp_config *c)
{
    const char *ty = c->model_type;
    bool tiny = strncmp(name, "tiny-", 5) == 0;
    if (strcmp(ty, "phi3") == 0) {
        c->rope_type = LMP_ROPE_LONGROPE;
        if (strcmp(name, "phi-3.5-mini") != 0) {
            c->partial_rotary = 0.75f;
            c->rope_dim = c->head_dim * 3 / 4;
        }
        c->n_rope_factors = c->rope_dim / 2;
        c->rope_orig_max_pos = tiny ? 32 : 4096;
        c->sliding_window = tiny ? 48 : 262144;
        /* short factors near 1, long ones ramping up to the context ratio (the shape of the
         * published lists, not their values) */
        double ratio = (double)c->max_pos / c->rope_orig_max_pos;
        for (int i = 0; i < c->n_rope_factors; i++) {
            double t = (double)i / (c->n_rope_factors - 1);
            c->rope_short[i] = (float)(1.0 + 0.5 * t * t);
            c->rope_long[i] = (float)(1.0 + (ratio * 1.5 - 1.0) * t * t);
        }
    } else if (strcmp(ty, "gemma2") == 0 || strcmp(ty, "gemma3_text") == 0) {
        bool g2 = strcmp(ty, "gemma2") == 0;
        c->swa_layers = true;
        c->sliding_window = tiny ? 16 : g2 ? 4096 : 512;
        for (int l = 0; l < c->n_layers; l++)
            if (g2 ? l % 2 == 0 : (l + 1) % (tiny ? 3 : 6) != 0)
                c->layer_flags[l] |= LMP_LAYER_SLIDING;
        c->query_pre_attn_scalar = tiny && g2 ? 24.0f : (float)c->head_dim;
        if (g2) {
            c->attn_softcap = tiny ? 20.0f : 50.0f;
            c->final_softcap = tiny ? 3.0f : 30.0f;
        } else {
            c->rope_local_theta = 10000.0f;
            if (tiny) { /* as Gemma 3 4B and up: linear scaling on the global layers */
                c->rope_type = LMP_ROPE_LINEAR;
                c->rope_factor = 8.0f;
            }
        }
    } else if (strcmp(ty, "smollm3") == 0) {
        c->no_rope_interval = 4;
        for (int l = 0; l < c->n_layers; l++)
            if ((l + 1) % 4 == 0)
                c->layer_flags[l] |= LMP_LAYER_NOROPE;
    } else if (strcmp(ty, "granite") == 0) {
        c->embed_multiplier = 12.0f;
        c->attn_multiplier = tiny ? 0.1f : 0.015625f;
        c->residual_multiplier = 0.22f;
        c->logits_scaling = tiny ? 8.0f : 8.0f;
    } else if (strcmp(ty, "mixtral") == 0) {
        c->n_experts = 8;
        c->n_experts_used = 2;
        c->moe_ff = c->intermediate_size;
        c->moe_norm_topk = true;
        c->moe_sparse_step = 1;
    } else if (strcmp(ty, "qwen3_moe") == 0) {
        c->n_experts = tiny ? 16 : 128;
        c->n_experts_used = tiny ? 4 : 8;
        c->moe_ff = tiny ? 32 : 768;
        c->moe_norm_topk = true;
        c->moe_sparse_step = 1;
        if (tiny) { /* a dense layer in the middle: mlp_only_layers */
            c->n_mlp_only = 1;
            c->mlp_only[0] = 1;
        }
    } else if (strcmp(ty, "granitemoe") == 0) { /* Granite-3.1-1B-A400M's multipliers */
        c->n_experts = 8;
        c->n_experts_used = 3;
        c->moe_ff = c->intermediate_size;
        c->moe_norm_topk = true;
        c->moe_sparse_step = 1;
        c->embed_multiplier = 12.0f;
        c->attn_multiplier = 0.015625f;
        c->residual_multiplier = 0.22f;
        c->logits_scaling = 6.0f;
    }
}

bool lmp_synth_router_tie(const char *preset)
{
    return strcmp(preset, "tiny-mixtral") == 0 || strcmp(preset, "tiny-qwen3-moe") == 0 ||
           strcmp(preset, "tiny-granitemoe") == 0;
}

static void fix_presets(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    for (lmp_synth_preset *p = g_presets; p->name; p++) {
        lmp_config *c = &p->config;
        lmp_config_apply_family(c); /* every preset's model_type is in the table */
        c->rope_dim = c->head_dim;
        family_preset(p->name, c);
        if (strcmp(p->name, "tiny-llama3") == 0 || strcmp(p->name, "llama-3.2-1b") == 0) {
            c->rope_type = LMP_ROPE_LLAMA3;
            c->rope_factor = 32;
            c->rope_low_freq_factor = 1;
            c->rope_high_freq_factor = 4;
            c->rope_orig_max_pos = strcmp(p->name, "tiny-llama3") == 0 ? 64 : 8192;
        }
    }
}

const lmp_synth_preset *lmp_synth_presets(void)
{
    fix_presets();
    return g_presets;
}

const lmp_synth_preset *lmp_synth_find(const char *name)
{
    for (const lmp_synth_preset *p = lmp_synth_presets(); p->name; p++)
        if (strcmp(p->name, name) == 0)
            return p;
    return NULL;
}

void lmp_synth_default_params(lmp_synth_params *p)
{
    memset(p, 0, sizeof *p);
    p->seed = 1;
    p->dtype = LMP_DT_F32;
    p->shard_mb = 2048;
    p->tokenizer_merges = 2000;
}

int lmp_synth_check(const lmp_synth_params *p)
{
    if (p->preset && p->config_path)
        return lmp_err(LMP_EINVAL, "--preset and --config: give one of them");
    if (p->preset && !lmp_synth_find(p->preset))
        return lmp_err(LMP_EINVAL, "--preset: unknown preset '%s' (see lmpress synth --list)", p->preset);
    if (p->layers < 0 || p->layers > LMP_MAX_LAYERS)
        return lmp_err(LMP_EINVAL, "--layers %d: must be in [1, %d]", p->layers, LMP_MAX_LAYERS);
    if (p->dtype != LMP_DT_F32 && p->dtype != LMP_DT_F16 && p->dtype != LMP_DT_BF16)
        return lmp_err(LMP_EINVAL, "--dtype: must be f32, f16 or bf16");
    if (p->shard_mb < 1 || p->shard_mb > 1ULL << 40)
        return lmp_err(LMP_EINVAL, "--shard-mb %llu: must be at least 1 (at most 2^40)",
                       (unsigned long long)p->shard_mb);
    return LMP_OK;
}

int lmp_synth_config(const lmp_synth_params *p, lmp_config *c)
{
    int rc = lmp_synth_check(p);
    if (rc)
        return rc;
    if (p->preset)
        *c = lmp_synth_find(p->preset)->config;
    else if (p->config_path) {
        if ((rc = lmp_config_load(c, p->config_path)))
            return rc;
    } else
        *c = p->config;
    if (p->layers && (rc = lmp_config_set_layers(c, p->layers)))
        return lmp_err_prefix(rc, "--layers");
    return LMP_OK;
}

/* ---------------------------------------------------------------- byte-level BPE */

/* GPT-2's reversible byte -> printable code point map. */
static void byte_to_unicode(int map[256])
{
    int n = 0;
    for (int b = 0; b < 256; b++) {
        bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        map[b] = keep ? b : 256 + n++;
    }
}

static int utf8_put(char *o, int cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

typedef struct {
    int *sym;  /* token ids */
    int n;
    int count; /* occurrences in the corpus */
} bpe_word;

static int char_class(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80)
        return 1;
    if (c >= '0' && c <= '9')
        return 2;
    if (c == ' ' || c == '\n' || c == '\t' || c == '\r')
        return 0;
    return 3;
}

/* Splits text roughly as GPT-2's regex does (an optional leading space joined to a run of
 * letters, digits or punctuation; other whitespace alone) and counts unique words. */
static int split_words(const char *text, bpe_word **out)
{
    int cap = 256, n = 0;
    bpe_word *w = calloc((size_t)cap, sizeof *w);
    size_t len = strlen(text), i = 0;
    while (i < len) {
        size_t s = i;
        if (text[i] == ' ' && i + 1 < len && char_class((unsigned char)text[i + 1]) != 0)
            i++;
        int cl = char_class((unsigned char)text[i]);
        while (i < len && char_class((unsigned char)text[i]) == cl && (cl != 0 || i == s || text[i] == text[s]))
            i++;
        if (i == s)
            i++;
        int k;
        for (k = 0; k < n; k++)
            if (w[k].n == (int)(i - s)) {
                int same = 1;
                for (int j = 0; j < w[k].n && same; j++)
                    same = w[k].sym[j] == (unsigned char)text[s + (size_t)j];
                if (same)
                    break;
            }
        if (k < n) {
            w[k].count++;
            continue;
        }
        if (n == cap) {
            cap *= 2;
            w = realloc(w, sizeof *w * (size_t)cap);
        }
        w[n].n = (int)(i - s);
        w[n].sym = malloc(sizeof(int) * (size_t)w[n].n);
        for (int j = 0; j < w[n].n; j++)
            w[n].sym[j] = (unsigned char)text[s + (size_t)j];
        w[n].count = 1;
        n++;
    }
    *out = w;
    return n;
}

typedef struct {
    char **tok;     /* token strings (byte-level unicode), n_tok of them */
    int n_tok;
    int (*merges)[2];
    int n_merges;
} bpe_vocab;

static void bpe_free(bpe_vocab *v)
{
    for (int i = 0; i < v->n_tok; i++)
        free(v->tok[i]);
    free(v->tok);
    free(v->merges);
}

static int bpe_train(bpe_vocab *v, int max_merges)
{
    int map[256];
    byte_to_unicode(map);
    v->tok = calloc((size_t)(256 + max_merges), sizeof(char *));
    v->merges = calloc((size_t)(max_merges + 1), sizeof v->merges[0]);
    if (!v->tok || !v->merges)
        return lmp_err(LMP_ENOMEM, "synth: out of memory");
    for (int b = 0; b < 256; b++) {
        char buf[4] = {0};
        utf8_put(buf, map[b]);
        v->tok[b] = strdup(buf);
    }
    v->n_tok = 256;
    bpe_word *w;
    int nw = split_words(g_corpus, &w);
    int cap = 256 + max_merges;
    enum { HB = 1 << 14 };
    uint64_t *hkey = malloc(sizeof(uint64_t) * HB);
    int *hcnt = malloc(sizeof(int) * HB);
    char *dup = calloc(1, HB); /* pairs whose merged string already exists */
    uint64_t *dupkey = malloc(sizeof(uint64_t) * HB);
    memset(dupkey, 0xff, sizeof(uint64_t) * HB);
    while (v->n_merges < max_merges) {
        /* Count adjacent pairs in a small hash table; pick the most frequent (ties: the
         * smallest ids) whose merged string is new. */
        memset(hkey, 0xff, sizeof(uint64_t) * HB);
        for (int k = 0; k < nw; k++)
            for (int j = 0; j + 1 < w[k].n; j++) {
                uint64_t key = (uint64_t)w[k].sym[j] << 32 | (uint32_t)w[k].sym[j + 1];
                uint64_t hh = (key * 0x9e3779b97f4a7c15ULL) >> 50;
                while (hkey[hh] != UINT64_MAX && hkey[hh] != key)
                    hh = (hh + 1) & (HB - 1);
                if (hkey[hh] == UINT64_MAX) {
                    hkey[hh] = key;
                    hcnt[hh] = 0;
                }
                hcnt[hh] += w[k].count;
            }
        int best_a = -1, best_b = -1, best_c = 1;
        for (int hh = 0; hh < HB; hh++) {
            if (hkey[hh] == UINT64_MAX || hcnt[hh] < best_c)
                continue;
            int a = (int)(hkey[hh] >> 32), b = (int)(uint32_t)hkey[hh];
            if (hcnt[hh] == best_c && best_a >= 0 && (a > best_a || (a == best_a && b > best_b)))
                continue;
            uint64_t dh = (hkey[hh] * 0x9e3779b97f4a7c15ULL) >> 50;
            while (dupkey[dh] != UINT64_MAX && dupkey[dh] != hkey[hh])
                dh = (dh + 1) & (HB - 1);
            if (dupkey[dh] == hkey[hh] && dup[dh])
                continue;
            size_t la = strlen(v->tok[a]), lb = strlen(v->tok[b]);
            char *str = malloc(la + lb + 1);
            memcpy(str, v->tok[a], la);
            memcpy(str + la, v->tok[b], lb + 1);
            bool exists = false;
            for (int t = 0; t < v->n_tok && !exists; t++)
                exists = strcmp(v->tok[t], str) == 0;
            free(str);
            if (exists) {
                dupkey[dh] = hkey[hh];
                dup[dh] = 1;
                continue;
            }
            best_a = a;
            best_b = b;
            best_c = hcnt[hh];
        }
        if (best_a < 0 || v->n_tok >= cap)
            break;
        int id = v->n_tok++;
        size_t la = strlen(v->tok[best_a]), lb = strlen(v->tok[best_b]);
        v->tok[id] = malloc(la + lb + 1);
        memcpy(v->tok[id], v->tok[best_a], la);
        memcpy(v->tok[id] + la, v->tok[best_b], lb + 1);
        v->merges[v->n_merges][0] = best_a;
        v->merges[v->n_merges][1] = best_b;
        v->n_merges++;
        for (int k = 0; k < nw; k++) {
            int o = 0;
            for (int j = 0; j < w[k].n; j++) {
                if (j + 1 < w[k].n && w[k].sym[j] == best_a && w[k].sym[j + 1] == best_b) {
                    w[k].sym[o++] = id;
                    j++;
                } else {
                    w[k].sym[o++] = w[k].sym[j];
                }
            }
            w[k].n = o;
        }
    }
    for (int k = 0; k < nw; k++)
        free(w[k].sym);
    free(w);
    free(hkey);
    free(hcnt);
    free(dup);
    free(dupkey);
    return LMP_OK;
}

static cJSON *added_token(int id, const char *content)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddNumberToObject(t, "id", id);
    cJSON_AddStringToObject(t, "content", content);
    cJSON_AddBoolToObject(t, "single_word", false);
    cJSON_AddBoolToObject(t, "lstrip", false);
    cJSON_AddBoolToObject(t, "rstrip", false);
    cJSON_AddBoolToObject(t, "normalized", false);
    cJSON_AddBoolToObject(t, "special", true);
    return t;
}

#define SYNTH_BOS "<|begin_of_text|>"
#define SYNTH_EOS "<|end_of_text|>"

static char *tokenizer_json(const bpe_vocab *v, int bos, int eos)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "version", "1.0");
    cJSON_AddNullToObject(r, "truncation");
    cJSON_AddNullToObject(r, "padding");
    cJSON *added = cJSON_AddArrayToObject(r, "added_tokens");
    cJSON_AddItemToArray(added, added_token(eos, SYNTH_EOS));
    cJSON_AddItemToArray(added, added_token(bos, SYNTH_BOS));
    cJSON_AddNullToObject(r, "normalizer");
    cJSON *pre = cJSON_AddObjectToObject(r, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddBoolToObject(pre, "add_prefix_space", false);
    cJSON_AddBoolToObject(pre, "trim_offsets", true);
    cJSON_AddBoolToObject(pre, "use_regex", true);
    cJSON *pp = cJSON_AddObjectToObject(r, "post_processor");
    cJSON_AddStringToObject(pp, "type", "TemplateProcessing");
    cJSON *single = cJSON_AddArrayToObject(pp, "single");
    cJSON *pair = cJSON_AddArrayToObject(pp, "pair");
    for (int k = 0; k < 2; k++) {
        cJSON *arr = k ? pair : single;
        for (int s = 0; s <= k; s++) {
            cJSON *st = cJSON_CreateObject(), *sp = cJSON_AddObjectToObject(st, "SpecialToken");
            cJSON_AddStringToObject(sp, "id", SYNTH_BOS);
            cJSON_AddNumberToObject(sp, "type_id", s);
            cJSON_AddItemToArray(arr, st);
            cJSON *sq = cJSON_CreateObject(), *q = cJSON_AddObjectToObject(sq, "Sequence");
            cJSON_AddStringToObject(q, "id", s ? "B" : "A");
            cJSON_AddNumberToObject(q, "type_id", s);
            cJSON_AddItemToArray(arr, sq);
        }
    }
    cJSON *stoks = cJSON_AddObjectToObject(pp, "special_tokens");
    cJSON *b = cJSON_AddObjectToObject(stoks, SYNTH_BOS);
    cJSON_AddStringToObject(b, "id", SYNTH_BOS);
    cJSON *ids = cJSON_AddArrayToObject(b, "ids");
    cJSON_AddItemToArray(ids, cJSON_CreateNumber(bos));
    cJSON *toks = cJSON_AddArrayToObject(b, "tokens");
    cJSON_AddItemToArray(toks, cJSON_CreateString(SYNTH_BOS));
    cJSON *dec = cJSON_AddObjectToObject(r, "decoder");
    cJSON_AddStringToObject(dec, "type", "ByteLevel");
    cJSON_AddBoolToObject(dec, "add_prefix_space", true);
    cJSON_AddBoolToObject(dec, "trim_offsets", true);
    cJSON_AddBoolToObject(dec, "use_regex", true);
    cJSON *m = cJSON_AddObjectToObject(r, "model");
    cJSON_AddStringToObject(m, "type", "BPE");
    cJSON_AddNullToObject(m, "dropout");
    cJSON_AddNullToObject(m, "unk_token");
    cJSON_AddNullToObject(m, "continuing_subword_prefix");
    cJSON_AddNullToObject(m, "end_of_word_suffix");
    cJSON_AddBoolToObject(m, "fuse_unk", false);
    cJSON_AddBoolToObject(m, "byte_fallback", false);
    cJSON_AddBoolToObject(m, "ignore_merges", false);
    cJSON *voc = cJSON_AddObjectToObject(m, "vocab");
    for (int i = 0; i < v->n_tok; i++)
        cJSON_AddNumberToObject(voc, v->tok[i], i);
    cJSON *mg = cJSON_AddArrayToObject(m, "merges");
    for (int i = 0; i < v->n_merges; i++) {
        cJSON *p2 = cJSON_CreateArray();
        cJSON_AddItemToArray(p2, cJSON_CreateString(v->tok[v->merges[i][0]]));
        cJSON_AddItemToArray(p2, cJSON_CreateString(v->tok[v->merges[i][1]]));
        cJSON_AddItemToArray(mg, p2);
    }
    char *s = cJSON_Print(r);
    cJSON_Delete(r);
    return s;
}

/* ---------------------------------------------------------------- files */

static int write_text(const char *dir, const char *name, const char *text)
{
    char *path = lmp_path_join(dir, name);
    int rc = path ? lmp_write_text(path, text) : lmp_err(LMP_ENOMEM, "synth: out of memory");
    free(path);
    return rc;
}

typedef struct {
    char name[LMP_MAX_NAME];
    int ndim;
    int64_t shape[3];
    int kind; /* 0 linear weight, 1 norm, 2 bias, 3 embedding/lm_head, 4 norm stored as w - 1,
                 5 MoE router */
    int64_t fan_in;
} synth_tensor;

static int64_t synth_nelem(const synth_tensor *t)
{
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++)
        n *= t->shape[i];
    return n;
}

static int plan_tensors(const lmp_config *c, synth_tensor **out)
{
    int cap = 16 + c->n_layers * (20 + (c->n_experts > 0 ? 3 * c->n_experts + 2 : 0)), n = 0;
    synth_tensor *t = calloc((size_t)cap, sizeof *t);
    if (!t)
        return -1;
    int64_t d = c->hidden_size, q = (int64_t)c->n_heads * c->head_dim, kv = (int64_t)c->n_kv_heads * c->head_dim,
            f = c->intermediate_size, V = c->vocab_size, E = c->n_experts, ef = c->moe_ff;
#define ADD3(nm, nd, s0, s1, s2, k, fi)                                                                    \
    do {                                                                                               \
        snprintf(t[n].name, sizeof t[n].name, "%s", nm);                                               \
        t[n].ndim = nd;                                                                                \
        t[n].shape[0] = s0;                                                                            \
        t[n].shape[1] = s1;                                                                            \
        t[n].shape[2] = s2;                                                                            \
        t[n].kind = k;                                                                                 \
        t[n].fan_in = fi;                                                                              \
        n++;                                                                                           \
    } while (0)
#define ADD(nm, nd, s0, s1, k, fi) ADD3(nm, nd, s0, s1, 0, k, fi)
    ADD("model.embed_tokens.weight", 2, V, d, 3, d);
    char nm[LMP_MAX_NAME];
    const bool mixtral = strcmp(c->model_type, "mixtral") == 0;
    const bool granite = strcmp(c->model_type, "granitemoe") == 0;
    for (int l = 0; l < c->n_layers; l++) {
#define L(suffix, nd, s0, s1, k, fi)                                                                       \
    do {                                                                                               \
        snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix);                                      \
        ADD(nm, nd, s0, s1, k, fi);                                                                    \
    } while (0)
        const int nk = c->norm_plus1 ? 4 : 1; /* (1 + w) norms: w near 0 */
        if (c->norms != LMP_NORM_POST)
            L("input_layernorm.weight", 1, d, 0, nk, 1);
        if (c->fused_qkv) {
            L("self_attn.qkv_proj.weight", 2, q + 2 * kv, d, 0, d);
        } else {
            L("self_attn.q_proj.weight", 2, q, d, 0, d);
            if (c->attn_bias)
                L("self_attn.q_proj.bias", 1, q, 0, 2, 1);
            L("self_attn.k_proj.weight", 2, kv, d, 0, d);
            if (c->attn_bias)
                L("self_attn.k_proj.bias", 1, kv, 0, 2, 1);
            L("self_attn.v_proj.weight", 2, kv, d, 0, d);
            if (c->attn_bias)
                L("self_attn.v_proj.bias", 1, kv, 0, 2, 1);
        }
        L("self_attn.o_proj.weight", 2, d, q, 0, q);
        if (c->o_bias)
            L("self_attn.o_proj.bias", 1, d, 0, 2, 1);
        if (c->qk_norm == LMP_QKNORM_HEAD) {
            L("self_attn.q_norm.weight", 1, c->head_dim, 0, nk, 1);
            L("self_attn.k_norm.weight", 1, c->head_dim, 0, nk, 1);
        } else if (c->qk_norm == LMP_QKNORM_FULL) {
            L("self_attn.q_norm.weight", 1, q, 0, nk, 1);
            L("self_attn.k_norm.weight", 1, kv, 0, nk, 1);
        }
        L("post_attention_layernorm.weight", 1, d, 0, nk, 1);
        if (c->norms == LMP_NORM_SANDWICH)
            L("pre_feedforward_layernorm.weight", 1, d, 0, nk, 1);
        if (c->norms != LMP_NORM_PRE)
            L("post_feedforward_layernorm.weight", 1, d, 0, nk, 1);
        if (lmp_config_layer_is_moe(c, l)) {
            if (granite) { /* experts stacked: input_linear = [gate; up] rows per expert */
                L("block_sparse_moe.router.layer.weight", 2, E, d, 5, d);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.input_linear.weight", l);
                ADD3(nm, 3, E, 2 * ef, d, 0, d);
                snprintf(nm, sizeof nm, "model.layers.%d.block_sparse_moe.output_linear.weight", l);
                ADD3(nm, 3, E, d, ef, 0, ef);
                continue;
            }
            L(mixtral ? "block_sparse_moe.gate.weight" : "mlp.gate.weight", 2, E, d, 5, d);
            for (int e = 0; e < E; e++) {
                char sub[96];
                const char *pre = mixtral ? "block_sparse_moe.experts" : "mlp.experts";
                snprintf(sub, sizeof sub, "%s.%d.%s.weight", pre, e, mixtral ? "w1" : "gate_proj");
                L(sub, 2, ef, d, 0, d);
                snprintf(sub, sizeof sub, "%s.%d.%s.weight", pre, e, mixtral ? "w2" : "down_proj");
                L(sub, 2, d, ef, 0, ef);
                snprintf(sub, sizeof sub, "%s.%d.%s.weight", pre, e, mixtral ? "w3" : "up_proj");
                L(sub, 2, ef, d, 0, d);
            }
            continue;
        }
        if (c->fused_gate_up) {
            L("mlp.gate_up_proj.weight", 2, 2 * f, d, 0, d);
        } else {
            L("mlp.gate_proj.weight", 2, f, d, 0, d);
            if (c->mlp_bias)
                L("mlp.gate_proj.bias", 1, f, 0, 2, 1);
            L("mlp.up_proj.weight", 2, f, d, 0, d);
            if (c->mlp_bias)
                L("mlp.up_proj.bias", 1, f, 0, 2, 1);
        }
        L("mlp.down_proj.weight", 2, d, f, 0, f);
        if (c->mlp_bias)
            L("mlp.down_proj.bias", 1, d, 0, 2, 1);
#undef L
    }
    ADD("model.norm.weight", 1, d, 0, c->norm_plus1 ? 4 : 1, 1);
    if (!c->tie_embeddings)
        ADD("lm_head.weight", 2, V, d, 3, d);
#undef ADD
#undef ADD3
    *out = t;
    return n;
}

#define CHUNK (1 << 20)

/* Fills chunk `ci` of tensor `t` (elements [ci*CHUNK, ci*CHUNK+n)). A router (kind 5)
 * is drawn row by row, each row from its own stream, so that with `tie` its last row can
 * repeat row 0 exactly. */
static void fill_chunk(const synth_tensor *t, uint64_t seed, int64_t ci, float *x, int64_t n, bool tie)
{
    lmp_rng r;
    uint64_t h = lmp_fnv1a(LMP_FNV_INIT, t->name, strlen(t->name));
    h = lmp_fnv1a(h, &seed, sizeof seed);
    float std = t->kind == 0 || t->kind == 3 || t->kind == 5 ? 1.0f / sqrtf((float)t->fan_in) : 0.02f;
    float base = t->kind == 1 ? 1.0f : 0.0f;
    if (t->kind == 5) {
        const int64_t cols = t->shape[1];
        for (int64_t i = 0; i < n; i++) {
            const int64_t e = ci * CHUNK + i;
            if (i == 0 || e % cols == 0) {
                int64_t row = e / cols;
                if (tie && row == t->shape[0] - 1)
                    row = 0;
                uint64_t hr = lmp_fnv1a(h, &row, sizeof row);
                lmp_rng_seed(&r, hr);
                for (int64_t k = 0; k < e % cols; k++) /* a chunk starting inside a row */
                    (void)lmp_rng_normal(&r);
            }
            x[i] = std * lmp_rng_normal(&r);
        }
        return;
    }
    h = lmp_fnv1a(h, &ci, sizeof ci);
    lmp_rng_seed(&r, h);
    for (int64_t i = 0; i < n; i++)
        x[i] = base + std * lmp_rng_normal(&r);
}

int lmp_synth_write(const lmp_synth_params *p, const char *dir)
{
    lmp_config c;
    int rc = lmp_synth_config(p, &c);
    if (rc)
        return rc;
    const bool router_tie = p->router_tie || (p->preset && lmp_synth_router_tie(p->preset));
    bpe_vocab voc = {0};
    synth_tensor *plan = NULL;
    lmp_st_writer *w = NULL;
    float *buf = NULL;
    void *conv = NULL;
    char *tmpdir = NULL, *txt = NULL;
    lmp_progress prog;

    int specials = 2;
    int max_merges = p->tokenizer_merges;
    if (c.vocab_size > 0 && max_merges > c.vocab_size - 256 - specials)
        max_merges = c.vocab_size - 256 - specials;
    if (max_merges < 0)
        return lmp_err(LMP_EINVAL, "synth: vocab_size %d is below the 258 tokens of the byte-level tokenizer",
                       c.vocab_size);
    if ((rc = bpe_train(&voc, max_merges)))
        goto cleanup;
    int eos = voc.n_tok, bos = voc.n_tok + 1, n_tok = voc.n_tok + specials;
    if (c.vocab_size == 0)
        c.vocab_size = n_tok;
    c.bos_id = bos;
    c.eos_id = eos;
    snprintf(c.torch_dtype, sizeof c.torch_dtype, "%s",
             p->dtype == LMP_DT_F32 ? "float32" : p->dtype == LMP_DT_F16 ? "float16" : "bfloat16");

    if ((rc = lmp_dir_begin(dir, p->force, &tmpdir)))
        goto cleanup;
    if ((rc = lmp_config_to_json(&c, &txt)) || (rc = write_text(tmpdir, "config.json", txt)))
        goto cleanup;
    free(txt);
    txt = tokenizer_json(&voc, bos, eos);
    if (!txt || (rc = write_text(tmpdir, "tokenizer.json", txt)))
        goto cleanup;
    free(txt);
    txt = malloc(512);
    snprintf(txt, 512,
             "{\n  \"bos_token\": \"%s\",\n  \"eos_token\": \"%s\",\n  \"add_bos_token\": true,\n"
             "  \"model_max_length\": %d,\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\"\n}",
             SYNTH_BOS, SYNTH_EOS, c.max_pos);
    if ((rc = write_text(tmpdir, "tokenizer_config.json", txt)))
        goto cleanup;
    snprintf(txt, 512, "{\n  \"bos_token_id\": %d,\n  \"eos_token_id\": %d,\n  \"do_sample\": false\n}", bos, eos);
    if ((rc = write_text(tmpdir, "generation_config.json", txt)))
        goto cleanup;
    /* the text the tokenizer was trained on: evaluation text for demos without fixtures */
    if ((rc = write_text(tmpdir, "corpus.txt", g_corpus)))
        goto cleanup;

    int nt = plan_tensors(&c, &plan);
    if (nt < 0) {
        rc = lmp_err(LMP_ENOMEM, "synth: out of memory");
        goto cleanup;
    }
    uint64_t total = 0;
    size_t es = lmp_dtype_info(p->dtype)->type_size;
    for (int i = 0; i < nt; i++)
        total += (uint64_t)synth_nelem(&plan[i]) * es;
    if ((rc = lmp_st_writer_new(&w, tmpdir, total > (p->shard_mb << 20) ? p->shard_mb << 20 : 0, true)))
        goto cleanup;
    for (int i = 0; i < nt && rc == 0; i++)
        rc = lmp_st_writer_add(w, plan[i].name, p->dtype, plan[i].ndim, plan[i].shape);
    if (rc || (rc = lmp_st_writer_meta(w, "format", "pt")) || (rc = lmp_st_writer_begin(w)))
        goto cleanup;

    enum { BATCH = 16 }; /* chunks generated in parallel */
    buf = malloc(sizeof(float) * CHUNK * BATCH);
    conv = malloc(es * CHUNK * BATCH);
    if (!buf || !conv) {
        rc = lmp_err(LMP_ENOMEM, "synth: out of memory");
        goto cleanup;
    }
    lmp_progress_begin(&prog, "synth", total);
    uint64_t done = 0;
    for (int i = 0; i < nt && rc == 0; i++) {
        int64_t ne = synth_nelem(&plan[i]);
        int64_t nchunks = (ne + CHUNK - 1) / CHUNK;
        for (int64_t c0 = 0; c0 < nchunks && rc == 0; c0 += BATCH) {
            int64_t cend = c0 + BATCH < nchunks ? c0 + BATCH : nchunks;
#pragma omp parallel for schedule(dynamic, 1)
            for (int64_t ci = c0; ci < cend; ci++) {
                int64_t off = ci * CHUNK, m = ne - off < CHUNK ? ne - off : CHUNK;
                float *x = buf + (ci - c0) * CHUNK;
                fill_chunk(&plan[i], p->seed, ci, x, m, router_tie);
                lmp_dtype_info(p->dtype)->from_f32(x, (uint8_t *)conv + (size_t)(ci - c0) * CHUNK * es, m);
            }
            int64_t first = c0 * CHUNK, last = cend * CHUNK < ne ? cend * CHUNK : ne;
            rc = lmp_st_writer_write(w, conv, (size_t)(last - first) * es);
            done += (uint64_t)(last - first) * es;
            lmp_progress_update(&prog, done);
        }
    }
    lmp_progress_end(&prog);
    if (rc)
        goto cleanup;
    rc = lmp_st_writer_finish(w);
    w = NULL;
    if (rc)
        goto cleanup;
    rc = lmp_dir_commit(tmpdir, dir);
cleanup:
    lmp_st_writer_abort(w);
    if (rc && tmpdir)
        lmp_dir_remove(tmpdir);
    free(tmpdir);
    free(txt);
    free(plan);
    free(buf);
    free(conv);
    bpe_free(&voc);
    return rc;
}
