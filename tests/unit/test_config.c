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

    CHECK(lmp_config_load(&c, fixture("hf-meta/smollm-135m-seqcls-ft/config.json")) == 0, "smollm: %s",
          lmp_errmsg());
    CHECK(c.n_kv_heads == 3 && c.head_dim == 64 && c.pad_id == 49152, "smollm");

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

int main(void)
{
    test_real_configs();
    test_broken_configs();
    test_names();
    return test_finish();
}
