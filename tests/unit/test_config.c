/*
 * lib/io config.json parsing (real configs of popular models and broken ones), the
 * HF <-> GGUF name mapping and the Q/K row permutation.
 */
#include "lib/io/io.h"
#include "test.h"

#include <math.h>

static void test_real_configs(void)
{
    lmp_config c;
    const char *p = fixture("hf-meta/llama-3.2-3b/config.json");
    if (!p) {
        SKIP("fixtures absent: real configs");
        return;
    }
    CHECK(lmp_config_load(&c, p) == 0, "llama-3.2: %s", lmp_errmsg());
    CHECK(c.rope_type == LMP_ROPE_LLAMA3 && c.rope_factor == 32 && c.rope_orig_max_pos == 8192 &&
              c.rope_high_freq_factor == 4,
          "llama3 rope scaling parsed");
    CHECK(c.head_dim == 128 && c.n_kv_heads == 8 && c.tie_embeddings && c.rope_theta == 500000,
          "llama-3.2 shapes");
    CHECK(c.eos_id == 128001 && c.bos_id == 128000, "llama-3.2 special ids");

    CHECK(lmp_config_load(&c, fixture("hf-meta/llama-2/config.json")) == 0, "llama-2: %s", lmp_errmsg());
    CHECK(c.hidden_size == 4096 && c.n_layers == 32 && c.head_dim == 128 && !c.tie_embeddings &&
              c.vocab_size == 32000,
          "llama-2 shapes");
    CHECK(lmp_config_n_params(&c) == 6738415616LL, "llama-2-7b params %lld", (long long)lmp_config_n_params(&c));

    CHECK(lmp_config_load(&c, fixture("hf-meta/mistral-7b-instruct-v0.2/config.json")) == 0, "mistral: %s",
          lmp_errmsg());
    CHECK(strcmp(c.model_type, "mistral") == 0 && strcmp(c.arch, "llama") == 0 && c.rope_theta == 1e6f &&
              c.n_kv_heads == 8,
          "mistral");

    CHECK(lmp_config_load(&c, fixture("hf-meta/qwen2.5-14b-sakura-v1.0/config.json")) == 0, "qwen2: %s",
          lmp_errmsg());
    CHECK(strcmp(c.arch, "qwen2") == 0 && c.attn_bias && !c.o_bias && c.vocab_size == 152064, "qwen2 bias");

    /* a classification head is not a language model: refused, naming the class */
    CHECK(lmp_config_load(&c, fixture("hf-meta/smollm-135m-seqcls-ft/config.json")) == LMP_EUNSUPPORTED &&
              strstr(lmp_errmsg(), "LlamaForSequenceClassification") &&
              strstr(lmp_errmsg(), "smollm-135m-seqcls-ft/config.json"),
          "seqcls refused: %s", lmp_errmsg());

    int rc = lmp_config_load(&c, fixture("hf-meta/granite-3.1-1b-a400m-instruct/config.json"));
    CHECK(rc == 0 && c.n_experts == 32, "granitemoe: %s", lmp_errmsg());
    const char *bert = "{\"model_type\":\"bert\"}";
    rc = lmp_config_parse(&c, bert, strlen(bert), "bert.json");
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "bert") && strstr(lmp_errmsg(), "llama, mistral, qwen2"),
          "unknown model_type lists supported ones: %s", lmp_errmsg());

    CHECK(lmp_config_load(&c, fixture("models/stories260K/config.json")) == 0, "stories: %s", lmp_errmsg());
    CHECK(lmp_config_load(&c, fixture("models/gutenberg-5M/config.json")) == 0, "gutenberg");
    CHECK(lmp_config_n_params(&c) == 4852992, "gutenberg-5M params %lld (README: 4,852,992)",
          (long long)lmp_config_n_params(&c));
}

/* issue 16: the real configs of every dense family, parsed with their features */
static void test_family_configs(void)
{
    lmp_config c;
    const char *p = fixture("hf-meta/configs/phi4-mini.json");
    if (!p) {
        SKIP("fixtures absent: hf-meta/configs");
        return;
    }
    CHECK(lmp_config_load(&c, p) == 0, "phi4-mini: %s", lmp_errmsg());
    CHECK(strcmp(c.arch, "phi3") == 0 && c.fused_qkv && c.fused_gate_up && c.rope_dim == 96 &&
              c.rope_type == LMP_ROPE_LONGROPE && c.n_rope_factors == 48 && c.rope_orig_max_pos == 4096 &&
              c.tie_embeddings && fabsf(c.rope_long[47] - 47.77f) < 1e-4f && c.rope_short[0] == 1.0f,
          "phi4-mini: partial rotary 96 of 128, longrope 48 factors, tied");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/phi3-mini-4k.json")) == 0 && c.sliding_window == 2047 &&
              !c.swa_layers && c.rope_type == LMP_ROPE_NONE && lmp_config_window(&c, 5) == 2047,
          "phi3-mini-4k: window 2047 on every layer");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/gemma-2b.json")) == 0 && c.norm_plus1 && c.embed_sqrt &&
              c.act == LMP_ACT_GELU_TANH && c.head_dim == 256 && c.tie_embeddings && c.norms == LMP_NORM_PRE,
          "gemma-2b");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/gemma2-2b.json")) == 0 && c.norms == LMP_NORM_SANDWICH &&
              c.attn_softcap == 50 && c.final_softcap == 30 && c.query_pre_attn_scalar == 256 &&
              lmp_config_window(&c, 0) == 4096 && lmp_config_window(&c, 1) == 0 && c.eos_id == 1,
          "gemma2-2b: soft-caps, even layers local");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/gemma3-1b.json")) == 0 && c.qk_norm == LMP_QKNORM_HEAD &&
              c.rope_local_theta == 10000 && c.rope_theta == 1e6f && lmp_config_window(&c, 4) == 512 &&
              lmp_config_window(&c, 5) == 0 && lmp_config_window(&c, 11) == 0 && c.attn_softcap == 0,
          "gemma3-1b: 5 local : 1 global");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/gemma3-270m.json")) == 0 && lmp_config_window(&c, 17) == 0 &&
              lmp_config_window(&c, 16) == 512,
          "gemma3-270m: layer_types");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/qwen3-0.6b.json")) == 0 && c.qk_norm == LMP_QKNORM_HEAD &&
              c.head_dim == 128 && !c.attn_bias && c.sliding_window == 0,
          "qwen3-0.6b");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/smollm3-3b.json")) == 0 &&
              (c.layer_flags[3] & LMP_LAYER_NOROPE) && !(c.layer_flags[2] & LMP_LAYER_NOROPE) &&
              (c.layer_flags[35] & LMP_LAYER_NOROPE),
          "smollm3: no RoPE on every 4th layer");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/granite-3.3-8b.json")) == 0 && c.embed_multiplier == 12 &&
              c.attn_multiplier == 0.0078125f && c.residual_multiplier == 0.22f && c.logits_scaling == 16,
          "granite multipliers");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/olmo2-7b.json")) == 0 && c.norms == LMP_NORM_POST &&
              c.qk_norm == LMP_QKNORM_FULL && !c.tie_embeddings,
          "olmo2");
    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/phi4-14b.json")) == 0 && c.rope_dim == c.head_dim,
          "phi4-14b (keys defaulted)");

    /* config -> JSON -> config keeps every feature */
    static const char *files[] = {"phi4-mini", "phi3-mini-4k", "gemma-2b", "gemma2-2b", "gemma3-1b",
                                  "gemma3-270m", "qwen3-0.6b", "smollm3-3b", "granite-3.3-8b", "olmo2-7b"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char rel[128], *txt = NULL;
        lmp_config back;
        snprintf(rel, sizeof rel, "hf-meta/configs/%s.json", files[i]);
        int rc = lmp_config_load(&c, fixture(rel));
        if (!rc)
            rc = lmp_config_to_json(&c, &txt);
        if (!rc)
            rc = lmp_config_parse(&back, txt, strlen(txt), "roundtrip");
        CHECK(rc == 0 && memcmp(&back, &c, sizeof c) == 0, "%s: config -> json -> config identical (%s)",
              files[i], rc ? lmp_errmsg() : "differs");
        if (rc == 0 && strcmp(files[i], "olmo2-7b") == 0) /* as OLMo 2's own config: llama.cpp's
                                                             converter fails on a null one */
            CHECK(strstr(txt, "sliding_window") == NULL, "olmo2 config written without sliding_window");
        free(txt);
    }

    /* v5 rope_parameters, per layer type, and text_config nesting */
    const char *v5 = "{\"architectures\":[\"Gemma3ForConditionalGeneration\"],\"model_type\":\"gemma3\","
                     "\"text_config\":{\"model_type\":\"gemma3_text\",\"hidden_size\":64,"
                     "\"intermediate_size\":128,\"num_hidden_layers\":2,\"num_attention_heads\":2,"
                     "\"head_dim\":32,\"vocab_size\":300,\"sliding_window\":8,"
                     "\"layer_types\":[\"sliding_attention\",\"full_attention\"],"
                     "\"rope_parameters\":{\"full_attention\":{\"rope_type\":\"linear\",\"factor\":8.0,"
                     "\"rope_theta\":1000000.0},\"sliding_attention\":{\"rope_type\":\"default\","
                     "\"rope_theta\":10000.0}}}}";
    CHECK(lmp_config_parse(&c, v5, strlen(v5), "v5.json") == 0 && c.rope_theta == 1e6f &&
              c.rope_local_theta == 1e4f && c.rope_type == LMP_ROPE_LINEAR && c.rope_factor == 8 &&
              c.hidden_size == 64 && lmp_config_window(&c, 0) == 8 && lmp_config_window(&c, 1) == 0,
          "v5 per-layer-type rope_parameters inside text_config: %s", lmp_errmsg());
    const char *v5b = "{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,"
                      "\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10,"
                      "\"rope_parameters\":{\"rope_type\":\"llama3\",\"rope_theta\":500000.0,\"factor\":32.0,"
                      "\"low_freq_factor\":1.0,\"high_freq_factor\":4.0,"
                      "\"original_max_position_embeddings\":8192}}";
    CHECK(lmp_config_parse(&c, v5b, strlen(v5b), "v5b.json") == 0 && c.rope_theta == 500000 &&
              c.rope_type == LMP_ROPE_LLAMA3 && c.rope_factor == 32,
          "v5 rope_parameters read (not theta 10000): %s", lmp_errmsg());
}

static void test_broken_configs(void)
{
    static const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"model_type\":\"llama\",\"hidden_size\":\"64\",\"intermediate_size\":1,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":1,\"vocab_size\":1}",
         "hidden_size"},
        {"{\"model_type\":\"llama\",\"intermediate_size\":1,\"num_hidden_layers\":1,\"num_attention_heads\":1,"
         "\"vocab_size\":1}",
         "hidden_size"},
        {"{\"model_type\":\"bert\"}", "bert"},
        {"{\"hidden_size\":1}", "model_type"},
        {"[1,2]", "object"},
        {"{\"model_type\":\"llama\",", "JSON"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":6,\"num_key_value_heads\":4,\"vocab_size\":10}",
         "multiple"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1.5,"
         "\"num_attention_heads\":4,\"vocab_size\":10}",
         "num_hidden_layers"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"rope_scaling\":{\"rope_type\":\"yarn\",\"factor\":2}}",
         "yarn"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":-3}",
         "positive"},
        {"{\"model_type\":\"llama\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"hidden_act\":\"gelu\"}",
         "gelu"},
        /* issue 16 keys out of range */
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"partial_rotary_factor\":1.5}",
         "partial_rotary_factor"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"partial_rotary_factor\":0}",
         "partial_rotary_factor"},
        {"{\"model_type\":\"phi3\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"rope_scaling\":{\"type\":\"longrope\","
         "\"short_factor\":[1,1,1,1,1,1,1,1],\"long_factor\":[1,2,3]}}",
         "long_factor"},
        {"{\"model_type\":\"gemma2\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":3,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"sliding_window\":8,"
         "\"layer_types\":[\"sliding_attention\",\"full_attention\"]}",
         "layer_types"},
        {"{\"model_type\":\"smollm3\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":3,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"no_rope_layers\":[1,1]}",
         "no_rope_layers"},
        {"{\"model_type\":\"llama\",\"architectures\":[\"LlamaForSequenceClassification\"],\"hidden_size\":64,"
         "\"intermediate_size\":8,\"num_hidden_layers\":1,\"num_attention_heads\":4,\"vocab_size\":10}",
         "LlamaForSequenceClassification"},
        {"{\"model_type\":\"gemma\",\"hidden_size\":64,\"intermediate_size\":8,\"num_hidden_layers\":1,"
         "\"num_attention_heads\":4,\"vocab_size\":10,\"hidden_activation\":\"relu\"}",
         "relu"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmp_config c;
        int rc = lmp_config_parse(&c, bad[i].json, strlen(bad[i].json), "bad.json");
        CHECK(rc != 0 && strstr(lmp_errmsg(), "bad.json") && strstr(lmp_errmsg(), bad[i].want),
              "case %zu refused naming file and '%s': rc %d, %s", i, bad[i].want, rc, lmp_errmsg());
    }
}

static void test_names(void)
{
    static const char *pairs[][2] = {
        {"model.embed_tokens.weight", "token_embd.weight"},
        {"model.norm.weight", "output_norm.weight"},
        {"lm_head.weight", "output.weight"},
        {"model.layers.0.input_layernorm.weight", "blk.0.attn_norm.weight"},
        {"model.layers.11.post_attention_layernorm.weight", "blk.11.ffn_norm.weight"},
        {"model.layers.3.self_attn.q_proj.weight", "blk.3.attn_q.weight"},
        {"model.layers.3.self_attn.k_proj.bias", "blk.3.attn_k.bias"},
        {"model.layers.3.self_attn.v_proj.weight", "blk.3.attn_v.weight"},
        {"model.layers.3.self_attn.o_proj.weight", "blk.3.attn_output.weight"},
        {"model.layers.7.mlp.gate_proj.weight", "blk.7.ffn_gate.weight"},
        {"model.layers.7.mlp.up_proj.weight", "blk.7.ffn_up.weight"},
        {"model.layers.7.mlp.down_proj.weight", "blk.7.ffn_down.weight"},
    };
    char buf[256];
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
        CHECK(lmp_name_hf_to_gguf(pairs[i][0], buf, sizeof buf) == 0 && strcmp(buf, pairs[i][1]) == 0,
              "%s -> %s (got %s)", pairs[i][0], pairs[i][1], buf);
        CHECK(lmp_name_gguf_to_hf(pairs[i][1], buf, sizeof buf) == 0 && strcmp(buf, pairs[i][0]) == 0,
              "%s -> %s (got %s)", pairs[i][1], pairs[i][0], buf);
    }
    CHECK(lmp_name_hf_to_gguf("model.layers.0.self_attn.rotary_emb.inv_freq", buf, sizeof buf) ==
              LMP_ENOTFOUND,
          "unmapped name");
    CHECK(lmp_name_hf_to_gguf("model.layers.x.mlp.up_proj.weight", buf, sizeof buf) == LMP_ENOTFOUND, "bad layer");

    /* The permutation by hand for head_dim 4: HF rows (t,i) = 0:(0,0) 1:(0,1) 2:(1,0)
     * 3:(1,1); ggml row 2i+t: 0 <- HF 0, 1 <- HF 2, 2 <- HF 1, 3 <- HF 3. */
    int64_t want[8] = {0, 2, 1, 3, 4, 6, 5, 7};
    int ok = 1;
    for (int r = 0; r < 8; r++)
        ok &= lmp_qk_perm_row(r, 2, 4, true) == want[r];
    CHECK(ok, "q/k permutation to gguf by hand");
    ok = 1;
    for (int r = 0; r < 64 * 3; r++)
        ok &= lmp_qk_perm_row(lmp_qk_perm_row(r, 3, 64, true), 3, 64, false) == r;
    CHECK(ok, "q/k permutation inverts");
}

/* llama.cpp's own Llama 3 GGUFs: rope_freqs divisors only. lmp_config_to_json must give the
 * llama3 parameters back (GGUF -> HF folder), or refuse divisors that no llama3 parameters
 * give. The divisors are computed here from Llama 3.2 1B's parameters with the rule of
 * llama.cpp's converter (wavelength bounds orig/lo and orig/hi, linear smoothing). */
static void test_llama3_from_rope_freqs(void)
{
    lmp_config c;
    const char *p = fixture("hf-meta/configs/llama3.2-1b.json");
    if (!p) {
        SKIP("fixtures absent: llama3.2-1b config");
        return;
    }
    if (lmp_config_load(&c, p) != 0) {
        CHECK(0, "load %s: %s", p, lmp_errmsg());
        return;
    }
    const int n = c.head_dim / 2;
    const double theta = c.rope_theta, factor = 32, lo = 1, hi = 4, old = 8192;
    c.rope_type = LMP_ROPE_FREQS;
    c.n_rope_factors = n;
    for (int i = 0; i < n; i++) {
        double f = 1.0 / pow(theta, 2.0 * i / (2.0 * n)), w = 2 * M_PI / f, r;
        if (w < old / hi)
            r = 1;
        else if (w > old / lo)
            r = factor;
        else {
            double sm = (old / w - lo) / (hi - lo);
            r = 1.0 / ((1 - sm) / factor + sm);
        }
        c.rope_short[i] = (float)r;
    }
    char *txt = NULL;
    lmp_config back;
    int rc = lmp_config_to_json(&c, &txt);
    if (rc == 0)
        rc = lmp_config_parse(&back, txt, strlen(txt), "rope_freqs");
    CHECK(rc == 0 && back.rope_type == LMP_ROPE_LLAMA3 && back.rope_factor == 32 &&
              back.rope_low_freq_factor == 1 && back.rope_high_freq_factor == 4 && back.rope_orig_max_pos == 8192,
          "rope_freqs of Llama 3.2 1B -> config.json llama3 32/1/4/8192 (%s: %g %g %g %d)",
          rc ? lmp_errmsg() : "got", rc ? 0 : back.rope_factor, rc ? 0 : back.rope_low_freq_factor,
          rc ? 0 : back.rope_high_freq_factor, rc ? 0 : back.rope_orig_max_pos);
    free(txt);
    txt = NULL;
    c.rope_short[n / 2] *= 1.01f; /* off the rule: refused, not approximated */
    rc = lmp_config_to_json(&c, &txt);
    CHECK(rc == LMP_EUNSUPPORTED && txt == NULL, "rope_freqs off the llama3 rule refused (rc %d)", rc);
    free(txt);
}

int main(void)
{
    test_real_configs();
    test_family_configs();
    test_broken_configs();
    test_names();
    test_llama3_from_rope_freqs();
    return test_finish();
}
