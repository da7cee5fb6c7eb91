/*
 * Mixture-of-experts models (mixtral, qwen3_moe, granitemoe): config keys and their range
 * checks on the real configs and broken ones, synth presets, and engine properties the
 * golden files cannot show: decoding gives the block runner's bits for any thread count,
 * batched results do not depend on the thread count, decoding reads only the routed
 * experts' weights (the others are replaced by NaN matrices and nothing changes), and
 * calibration through expert layers is refused. Logits against the float64 reference are
 * in test_golden.c (golden/tiny-mixtral.h5 and the other MoE files).
 */
#include "formats/formats.h"
#include "jobs/prune_model.h"
#include "lib/infer/infer.h"
#include "lib/io/h5.h"
#include "lib/calib/calib.h"
#include "lib/quant/pipeline.h"
#include "lib/prune/prune.h"
#include "lib/quant/quant.h"
#include "test.h"

#include <math.h>

/* ---------------------------------------------------------------- config */

static void test_real_configs(void)
{
    lmp_config c;
    const char *p = fixture("hf-meta/configs/mixtral-8x7b.json");
    if (!p) {
        SKIP("fixtures absent: real MoE configs");
        return;
    }
    CHECK(lmp_config_load(&c, p) == 0, "mixtral: %s", lmp_errmsg());
    CHECK(strcmp(c.arch, "llama") == 0 && c.n_experts == 8 && c.n_experts_used == 2 &&
              c.moe_ff == 14336 && c.moe_norm_topk && lmp_config_layer_is_moe(&c, 0) &&
              lmp_config_layer_is_moe(&c, 31),
          "mixtral experts: %d top-%d ff %d", c.n_experts, c.n_experts_used, c.moe_ff);
    /* Mixtral-8x7B has 46.7B parameters (Mistral AI's announcement) */
    CHECK(llabs(lmp_config_n_params(&c) - 46702792704LL) < 1000000, "mixtral params %lld",
          (long long)lmp_config_n_params(&c));

    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/qwen3-30b-a3b.json")) == 0, "qwen3_moe: %s",
          lmp_errmsg());
    CHECK(strcmp(c.arch, "qwen3moe") == 0 && c.n_experts == 128 && c.n_experts_used == 8 &&
              c.moe_ff == 768 && c.moe_norm_topk && c.moe_sparse_step == 1 && c.n_mlp_only == 0 &&
              c.head_dim == 128,
          "qwen3_moe experts");
    /* Qwen3-30B-A3B: 30.5B parameters (model card) */
    CHECK(llabs(lmp_config_n_params(&c) - 30532122624LL) < 1000000, "qwen3-30b params %lld",
          (long long)lmp_config_n_params(&c));

    CHECK(lmp_config_load(&c, fixture("hf-meta/configs/granite-3.1-1b-a400m-moe.json")) == 0,
          "granitemoe: %s", lmp_errmsg());
    CHECK(strcmp(c.arch, "granitemoe") == 0 && c.n_experts == 32 && c.n_experts_used == 8 &&
              c.moe_ff == 512 && c.tie_embeddings,
          "granitemoe experts");
    CHECK(lmp_config_set_layers(&c, 2) == 0 && c.n_layers == 2, "depth override");
    CHECK(lmp_config_set_layers(&c, 0) != 0, "depth override of 0 layers refused");
}

static void test_broken_configs(void)
{
#define BASE(mt) "{\"model_type\":\"" mt "\",\"hidden_size\":64,\"intermediate_size\":32," \
                 "\"num_hidden_layers\":4,\"num_attention_heads\":4,\"vocab_size\":100"
    static const struct {
        const char *json, *want;
    } bad[] = {
        {BASE("mixtral") ",\"num_local_experts\":8,\"num_experts_per_tok\":9}", "num_experts_per_tok"},
        {BASE("mixtral") ",\"num_local_experts\":0}", "num_local_experts"},
        {BASE("granitemoe") ",\"num_local_experts\":4,\"num_experts_per_tok\":0}", "num_experts_per_tok"},
        {BASE("qwen3_moe") ",\"num_experts\":16,\"num_experts_per_tok\":17}", "num_experts_per_tok"},
        {BASE("qwen3_moe") ",\"num_experts\":4,\"num_experts_per_tok\":2,\"moe_intermediate_size\":-1}",
         "moe_intermediate_size"},
        {BASE("qwen3_moe") ",\"num_experts\":4,\"num_experts_per_tok\":2,\"decoder_sparse_step\":0}",
         "decoder_sparse_step"},
        {BASE("qwen3_moe") ",\"num_experts\":4,\"num_experts_per_tok\":2,\"mlp_only_layers\":[1,4]}",
         "mlp_only_layers"},
        {BASE("qwen3_moe") ",\"num_experts\":4,\"num_experts_per_tok\":2,\"mlp_only_layers\":3}",
         "mlp_only_layers"},
        {BASE("qwen3_moe") ",\"num_experts\":4,\"num_experts_per_tok\":2,\"norm_topk_prob\":1}",
         "norm_topk_prob"},
    };
#undef BASE
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lmp_config c;
        int rc = lmp_config_parse(&c, bad[i].json, strlen(bad[i].json), "bad.json");
        CHECK(rc != 0 && strstr(lmp_errmsg(), "bad.json") && strstr(lmp_errmsg(), bad[i].want),
              "case %zu refused naming bad.json and %s: rc %d, %s", i, bad[i].want, rc, lmp_errmsg());
    }
    /* qwen3_moe: mlp_only_layers and decoder_sparse_step pick the dense layers */
    const char *ok = "{\"model_type\":\"qwen3_moe\",\"hidden_size\":64,\"intermediate_size\":32,"
                     "\"num_hidden_layers\":6,\"num_attention_heads\":4,\"vocab_size\":100,"
                     "\"num_experts\":4,\"num_experts_per_tok\":2,\"decoder_sparse_step\":2,"
                     "\"mlp_only_layers\":[3]}";
    lmp_config c;
    CHECK(lmp_config_parse(&c, ok, strlen(ok), "ok.json") == 0, "sparse step config: %s", lmp_errmsg());
    bool want[6] = {false, true, false, false, false, true};
    for (int l = 0; l < 6; l++)
        CHECK(lmp_config_layer_is_moe(&c, l) == want[l], "layer %d sparse %d", l, want[l]);
    /* the JSON written back parses to the same routing */
    char *js = NULL;
    lmp_config c2;
    CHECK(lmp_config_to_json(&c, &js) == 0 && lmp_config_parse(&c2, js, strlen(js), "round") == 0 &&
              c2.n_experts == 4 && c2.moe_sparse_step == 2 && c2.n_mlp_only == 1 && c2.mlp_only[0] == 3,
          "MoE keys survive config_to_json: %s", lmp_errmsg());
    free(js);
}

/* ---------------------------------------------------------------- engine */

static char g_dir[512];

static lmp_model *tiny_model(const char *preset)
{
    snprintf(g_dir, sizeof g_dir, "%s/%s", tmpdir(), preset);
    if (!lmp_path_exists(g_dir)) {
        lmp_synth_params sp;
        lmp_synth_default_params(&sp);
        const lmp_synth_preset *ps = lmp_synth_find(preset);
        sp.config = ps->config;
        sp.router_tie = lmp_synth_router_tie(ps->name);
        sp.seed = 5;
        if (lmp_synth_write(&sp, g_dir)) {
            CHECK(0, "synth %s: %s", preset, lmp_errmsg());
            return NULL;
        }
    }
    lmp_model *m = NULL;
    int rc = lmp_model_load(&m, g_dir);
    CHECK(rc == 0, "load %s: %s", preset, lmp_errmsg());
    return m;
}

static float *eval_seq(const lmp_model *m, const int32_t *ids, int n, bool stepwise)
{
    lmp_session *s;
    if (lmp_session_new(&s, m, n))
        return NULL;
    const int V = lmp_model_n_vocab(m);
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    int rc = 0;
    if (stepwise)
        for (int i = 0; rc == 0 && i < n; i++)
            rc = lmp_eval(s, ids + i, 1, lg + (size_t)i * V, false);
    else
        rc = lmp_eval(s, ids, n, lg, true);
    lmp_session_free(s);
    if (rc) {
        free(lg);
        return NULL;
    }
    return lg;
}

typedef struct {
    int64_t gate_rows, down_rows;
    int dense_ffn, attn;
} hook_count;

static int count_hook(void *u, int l, lmp_linear w, const float *X, int64_t n, int64_t k)
{
    hook_count *h = u;
    (void)l, (void)X, (void)k;
    const int e = lmp_hook_expert();
    if (e >= 0 && w == LMP_LIN_GATE)
        h->gate_rows += n;
    else if (e >= 0 && w == LMP_LIN_DOWN)
        h->down_rows += n;
    else if (w >= LMP_LIN_GATE)
        h->dense_ffn++;
    else
        h->attn++;
    return 0;
}

static void test_engine(const char *preset)
{
    lmp_model *m = tiny_model(preset);
    if (!m)
        return;
    const lmp_config *c = lmp_model_config(m);
    const int V = lmp_model_n_vocab(m), n = 40;
    const int64_t d = c->hidden_size, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    int32_t ids[40];
    for (int i = 0; i < n; i++)
        ids[i] = (int32_t)((i * 7919 + 13) % V);
    CHECK(lmp_model_is_moe(m), "%s is a mixture of experts", preset);
    for (int l = 0; l < c->n_layers; l++)
        CHECK((lmp_model_n_experts(m, l) > 0) == lmp_config_layer_is_moe(c, l) &&
                  (lmp_model_linear(m, l, LMP_LIN_GATE) == NULL) == lmp_config_layer_is_moe(c, l),
              "%s layer %d: experts %d", preset, l, lmp_model_n_experts(m, l));

    /* thread-count independence, batched and decoding: bitwise */
    int nt = lmp_num_threads();
    lmp_set_num_threads(1);
    float *b1 = eval_seq(m, ids, n, false), *s1 = eval_seq(m, ids, n, true);
    lmp_set_num_threads(2);
    float *b2 = eval_seq(m, ids, n, false), *s2 = eval_seq(m, ids, n, true);
    lmp_set_num_threads(3);
    float *s3 = eval_seq(m, ids, n, true);
    lmp_set_num_threads(nt);
    const size_t bytes = sizeof(float) * (size_t)n * V;
    CHECK(b1 && b2 && memcmp(b1, b2, bytes) == 0, "%s: batched logits differ between 1 and 2 threads",
          preset);
    CHECK(s1 && s2 && s3 && memcmp(s1, s2, bytes) == 0 && memcmp(s1, s3, bytes) == 0,
          "%s: decoded logits differ between 1, 2 and 3 threads", preset);
    /* batched (tokens grouped per expert) and decoded agree to f32 rounding */
    double worst = 0;
    for (size_t i = 0; b1 && s1 && i < (size_t)n * V; i++)
        worst = fmax(worst, fabs((double)b1[i] - s1[i]));
    CHECK(b1 && s1 && worst < 1e-4, "%s: batched vs decoded max |diff| %.3g", preset, worst);

    /* decoding = the block runner with n == 1, bitwise */
    float *kvm = calloc((size_t)(2 * n * kvd * c->n_layers), sizeof(float));
    float *x = malloc(sizeof(float) * (size_t)d), *ref = malloc(sizeof(float) * (size_t)V);
    lmp_kv_layer *kv = malloc(sizeof *kv * (size_t)c->n_layers);
    for (int l = 0; l < c->n_layers; l++)
        kv[l] = (lmp_kv_layer){kvm + (size_t)(2 * l) * n * kvd, kvm + (size_t)(2 * l + 1) * n * kvd, n};
    bool ok = true;
    for (int i = 0; ok && i < 8; i++) {
        ok = lmp_model_embed(m, ids + i, 1, x) == 0;
        for (int l = 0; ok && l < c->n_layers; l++)
            ok = lmp_block_run(m, l, x, 1, i, &kv[l], NULL, NULL) == 0;
        if (ok)
            lmp_model_head(m, x, 1, ref);
        ok = ok && s2 && memcmp(ref, s2 + (size_t)i * V, sizeof(float) * V) == 0;
    }
    CHECK(ok, "%s: decoding differs from lmp_block_run with one token", preset);

    /* calibration hooks see each reached expert's routed rows (lmp_hook_expert) */
    int moe_l = 0;
    while (moe_l < c->n_layers && !lmp_model_n_experts(m, moe_l))
        moe_l++;
    lmp_model_embed(m, ids, 4, kvm);
    hook_count hcnt = {0};
    int rc = lmp_block_run(m, moe_l, kvm, 4, 0, NULL, count_hook, &hcnt);
    CHECK(rc == 0 && hcnt.gate_rows == 4 * c->n_experts_used && hcnt.down_rows == hcnt.gate_rows &&
              hcnt.dense_ffn == 0 && hcnt.attn == 4,
          "%s: hook sees %lld routed gate rows (want %d), %lld down rows, %d dense FFN calls, %d attention "
          "calls", preset, (long long)hcnt.gate_rows, 4 * c->n_experts_used, (long long)hcnt.down_rows,
          hcnt.dense_ffn, hcnt.attn);
    free(kvm), free(x), free(ref), free(kv);

    /* decoding reads only the routed experts: replay the last token with every other
     * expert's weights replaced by NaN and compare the bits */
    const int L = c->n_layers;
    const int E = c->n_experts;
    uint64_t *h0 = calloc((size_t)L * E, sizeof *h0), *h1 = calloc((size_t)L * E, sizeof *h1);
    lmp_session *s = NULL;
    float *want = malloc(sizeof(float) * V), *got = malloc(sizeof(float) * V);
    rc = lmp_session_new(&s, m, n);
    rc = rc ? rc : lmp_eval(s, ids, n - 1, NULL, false);
    for (int l = 0; l < L; l++)
        if (lmp_model_n_experts(m, l))
            lmp_model_expert_hits(m, l, h0 + (size_t)l * E);
    rc = rc ? rc : lmp_eval(s, ids + n - 1, 1, want, false);
    int routed = 0, poisoned = 0;
    for (int l = 0; l < L; l++)
        if (lmp_model_n_experts(m, l)) {
            lmp_model_expert_hits(m, l, h1 + (size_t)l * E);
            for (int e = 0; e < E; e++)
                routed += h1[(size_t)l * E + e] != h0[(size_t)l * E + e];
        }
    int sparse = 0;
    for (int l = 0; l < L; l++)
        sparse += lmp_model_n_experts(m, l) > 0;
    CHECK(rc == 0 && routed == sparse * c->n_experts_used, "%s: one token routed to %d experts (%d layers x %d)",
          preset, routed, sparse, c->n_experts_used);
    lmp_session_reset(s);
    rc = rc ? rc : lmp_eval(s, ids, n - 1, NULL, false);
    /* poison after the prompt: the batched pass above used the real weights */
    size_t nmax = (size_t)(c->moe_ff > d ? c->moe_ff : d) * (size_t)(c->moe_ff > d ? c->moe_ff : d);
    float *nan = malloc(sizeof(float) * nmax);
    for (size_t i = 0; i < nmax; i++)
        nan[i] = NAN;
    lmp_wmat saved[3 * 64 * 4];
    for (int l = 0; l < L && l < 4; l++)
        for (int e = 0; e < E && e < 64; e++)
            for (int w = 0; w < 3; w++) {
                const lmp_wmat *cur = lmp_model_expert_linear(m, l, e, (lmp_linear)(LMP_LIN_GATE + w));
                if (!cur)
                    continue;
                saved[(l * 64 + e) * 3 + w] = *cur;
                if (h1[(size_t)l * E + e] != h0[(size_t)l * E + e])
                    continue;
                lmp_wmat pw = {.dtype = LMP_DT_F32, .rows = cur->rows, .cols = cur->cols, .data = nan,
                               .row_bytes = sizeof(float) * (size_t)cur->cols};
                poisoned += lmp_model_set_expert_linear(m, l, e, (lmp_linear)(LMP_LIN_GATE + w), &pw) == 0;
            }
    rc = rc ? rc : lmp_eval(s, ids + n - 1, 1, got, false);
    CHECK(rc == 0 && poisoned == 3 * (sparse * E - routed) && memcmp(want, got, sizeof(float) * V) == 0,
          "%s: decoding with the %d unrouted expert matrices poisoned gives the same bits", preset,
          poisoned);
    for (int l = 0; l < L && l < 4; l++)
        for (int e = 0; e < E && e < 64; e++)
            for (int w = 0; w < 3; w++)
                if (lmp_model_expert_linear(m, l, e, (lmp_linear)(LMP_LIN_GATE + w)))
                    lmp_model_set_expert_linear(m, l, e, (lmp_linear)(LMP_LIN_GATE + w),
                                                &saved[(l * 64 + e) * 3 + w]);
    CHECK(lmp_model_set_expert_linear(m, 0, E, LMP_LIN_GATE, &saved[0]) == LMP_EINVAL,
          "expert out of range refused");
    lmp_session_free(s);
    free(nan), free(h0), free(h1), free(want), free(got);
    free(b1), free(b2), free(s1), free(s2), free(s3);
    lmp_model_free(m);
}

/* ---------------------------------------------------------------- GGUF */

/* HF -> GGUF -> HF: every tensor of the original back with the same name, shape and
 * bytes (f32 in, f32 out), and the GGUF's experts stacked as llama.cpp names them. */
static void test_gguf_round_trip(const char *preset)
{
    char dir[512], gg[600], back[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir(), preset);
    snprintf(gg, sizeof gg, "%s/%s.gguf", tmpdir(), preset);
    snprintf(back, sizeof back, "%s/%s-back", tmpdir(), preset);
    lmp_convert_params cp;
    lmp_convert_result cr;
    lmp_convert_default_params(&cp);
    cp.quiet = cp.force = true;
    int rc = lmp_convert(dir, gg, &cp, &cr);
    CHECK(rc == 0, "%s -> GGUF: %s", preset, lmp_errmsg());
    rc = rc ? rc : lmp_convert(gg, back, &cp, &cr);
    CHECK(rc == 0, "%s GGUF -> HF: %s", preset, lmp_errmsg());
    if (rc)
        return;
    lmp_ckpt a, b, g;
    if (lmp_ckpt_open(&a, dir) || lmp_ckpt_open(&b, back) || lmp_ckpt_open(&g, gg)) {
        CHECK(0, "reopen: %s", lmp_errmsg());
        return;
    }
    const lmp_config *c = &g.config;
    CHECK(strcmp(c->model_type, a.config.model_type) == 0 && c->n_experts == a.config.n_experts &&
              c->n_experts_used == a.config.n_experts_used && c->moe_ff == a.config.moe_ff &&
              c->n_mlp_only == a.config.n_mlp_only && c->moe_norm_topk == a.config.moe_norm_topk,
          "%s: GGUF config %s, %d experts top-%d ff %d", preset, c->model_type, c->n_experts,
          c->n_experts_used, c->moe_ff);
    const lmp_tensor *ge = lmp_ckpt_find(&g, "blk.0.ffn_down_exps.weight");
    const lmp_tensor *gi = lmp_ckpt_find(&g, "blk.0.ffn_gate_inp.weight");
    CHECK(ge && ge->ndim == 3 && ge->shape[0] == c->n_experts && ge->shape[1] == c->hidden_size &&
              ge->shape[2] == c->moe_ff && gi && gi->dtype == LMP_DT_F32,
          "%s: stacked blk.0.ffn_down_exps [E, d, ff] and an f32 ffn_gate_inp", preset);
    int same = 0;
    for (int i = 0; i < a.n_tensors; i++) {
        const lmp_tensor *t = &a.tensors[i], *u = lmp_ckpt_find(&b, t->name);
        bool ok = u && u->ndim == t->ndim && u->dtype == t->dtype && u->nbytes == t->nbytes &&
                  memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) == 0 &&
                  memcmp(u->data, t->data, t->nbytes) == 0;
        if (!ok)
            fprintf(stderr, "  %s: %s differs after the round trip\n", preset, t->name);
        same += ok;
    }
    CHECK(same == a.n_tensors && b.n_tensors == a.n_tensors, "%s: %d of %d tensors identical after "
          "HF -> GGUF -> HF (%d tensors back)", preset, same, a.n_tensors, b.n_tensors);
    lmp_ckpt_close(&a);
    lmp_ckpt_close(&b);
    lmp_ckpt_close(&g);
}

/* A llama-architecture GGUF holding expert tensors without llama.expert_count is refused
 * naming the problem (and so by every command that opens it). */
static void test_gguf_refusal(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/experts-no-count.gguf", tmpdir());
    lmp_gguf_writer *w = NULL;
    int64_t sh[3] = {2, 4, 64};
    static float zeros[2 * 4 * 64];
    int rc = lmp_gguf_writer_new(&w, path, true);
    rc = rc ? rc : lmp_gguf_set_str(w, "general.architecture", "llama");
    rc = rc ? rc : lmp_gguf_set_u32(w, "llama.embedding_length", 64);
    rc = rc ? rc : lmp_gguf_set_u32(w, "llama.feed_forward_length", 4);
    rc = rc ? rc : lmp_gguf_set_u32(w, "llama.block_count", 1);
    rc = rc ? rc : lmp_gguf_set_u32(w, "llama.attention.head_count", 4);
    rc = rc ? rc : lmp_gguf_writer_add_tensor(w, "blk.0.ffn_gate_exps.weight", LMP_DT_F32, 3, sh);
    rc = rc ? rc : lmp_gguf_writer_begin(w);
    rc = rc ? rc : lmp_gguf_writer_write(w, zeros, sizeof zeros);
    if (rc)
        lmp_gguf_writer_abort(w);
    else
        rc = lmp_gguf_writer_finish(w);
    CHECK(rc == 0, "writing the broken GGUF: %s", lmp_errmsg());
    lmp_ckpt c;
    rc = lmp_ckpt_open(&c, path);
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "experts-no-count.gguf") &&
              strstr(lmp_errmsg(), "expert_count"),
          "expert tensors without expert_count refused: %d %s", rc, lmp_errmsg());
    if (rc == 0)
        lmp_ckpt_close(&c);
}

/* llama.cpp's per-tensor rules for experts (llama-quant.cpp). */
static void test_quant_rules(void)
{
    lmp_gguf_mix_info mi = {.n_layers = 32, .n_head = 32, .n_head_kv = 8, .n_attn_v = 32, .n_expert = 8};
    const lmp_gguf_qtype *q4km = lmp_gguf_qtype_find("q4_k_m"), *q40 = lmp_gguf_qtype_find("q4_0");
    const int64_t sq[2] = {4096, 4096}, se[3] = {8, 14336, 4096}, sr[2] = {8, 4096};
    CHECK(lmp_gguf_mix_type(q4km, &mi, "blk.3.ffn_gate_inp.weight", 2, sr) < 0, "routers never quantized");
    CHECK(lmp_gguf_mix_type(q4km, &mi, "blk.3.attn_v.weight", 2, sq) == LMP_DT_Q8_0 &&
              lmp_gguf_mix_type(q40, &mi, "blk.3.attn_k.weight", 2, sq) == LMP_DT_Q8_0,
          "8 experts: attn_v/attn_k in q8_0");
    CHECK(lmp_gguf_mix_type(q4km, &mi, "blk.3.attn_output.weight", 2, sq) == LMP_DT_Q5_K &&
              lmp_gguf_mix_type(q40, &mi, "blk.3.attn_output.weight", 2, sq) == LMP_DT_Q4_0,
          "8 experts: attn_output q5_K for q4_k_m only");
    CHECK(lmp_gguf_mix_type(q4km, &mi, "blk.0.ffn_down_exps.weight", 3, se) == LMP_DT_Q6_K &&
              lmp_gguf_mix_type(q4km, &mi, "blk.5.ffn_down_exps.weight", 3, se) == LMP_DT_Q4_K &&
              lmp_gguf_mix_type(q4km, &mi, "blk.5.ffn_gate_exps.weight", 3, se) == LMP_DT_Q4_K,
          "expert ffn_down follows the layer rule of ffn_down");
    mi.n_expert = 128;
    CHECK(lmp_gguf_mix_type(q4km, &mi, "blk.3.attn_k.weight", 2, sq) == LMP_DT_Q4_K,
          "128 experts: no 8-expert rule");
}

/* Magnitude pruning of every linear including each expert (no calibration needed): each
 * row of each matrix loses exactly its share, every zeroed |w| is at most every kept |w|
 * of its row (N:M: of its group), routers and embeddings are untouched, and the pruned
 * model runs. */
static void test_prune_experts(const char *preset, int n, int mm)
{
    char dir[512], out[600];
    snprintf(dir, sizeof dir, "%s/%s", tmpdir(), preset);
    snprintf(out, sizeof out, "%s/%s-pruned-%d-%d", tmpdir(), preset, n, mm);
    lmp_prune_model_params pp;
    lmp_prune_model_result pr;
    lmp_prune_model_default_params(&pp);
    pp.prune.spec.method = LMP_PRUNE_MAGNITUDE;
    pp.prune.spec.sparsity = 0.5;
    pp.prune.spec.n = n;
    pp.prune.spec.m = mm;
    pp.force = true;
    pp.prune.progress = false;
    int rc = lmp_prune_model(dir, out, &pp, &pr);
    CHECK(rc == 0, "%s: magnitude prune %d:%d: %s", preset, n, mm, lmp_errmsg());
    lmp_prune_model_result_free(&pr);
    if (rc)
        return;
    lmp_ckpt a, b;
    if (lmp_ckpt_open(&a, dir) || lmp_ckpt_open(&b, out)) {
        CHECK(0, "reopen: %s", lmp_errmsg());
        return;
    }
    int bad = 0, experts = 0, kept_same = 0, other = 0;
    for (int i = 0; i < a.n_tensors; i++) {
        const lmp_tensor *t = &a.tensors[i], *u = lmp_ckpt_find(&b, t->name);
        if (!u || u->nbytes != t->nbytes) {
            bad++;
            continue;
        }
        const bool router = strstr(t->name, ".gate.weight") || strstr(t->name, "router");
        const bool lin = t->ndim >= 2 && strstr(t->name, "model.layers.") && !router;
        if (!lin) {
            other++;
            kept_same += memcmp(t->data, u->data, t->nbytes) == 0;
            continue;
        }
        experts += strstr(t->name, "experts") || strstr(t->name, "_linear") ? 1 : 0;
        const float *w0 = t->data, *w1 = u->data;
        const int64_t cols = t->shape[t->ndim - 1], rows = lmp_tensor_nelem(t) / cols;
        const int64_t grp = mm ? mm : cols, want = mm ? (mm - n) : (int64_t)(0.5 * cols);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g0 = 0; g0 < cols; g0 += grp) {
                int64_t z = 0;
                float maxz = 0, mink = INFINITY;
                for (int64_t j = g0; j < g0 + grp; j++) {
                    float x = w0[r * cols + j], y = w1[r * cols + j];
                    if (y == 0.0f) {
                        z++;
                        maxz = fmaxf(maxz, fabsf(x));
                    } else {
                        bad += y != x;
                        mink = fminf(mink, fabsf(x));
                    }
                }
                bad += z != want || maxz > mink;
            }
    }
    CHECK(bad == 0 && experts > 0 && kept_same == other && b.n_tensors == a.n_tensors,
          "%s %d:%d: every row (group) of every linear and expert pruned by magnitude (%d defects, %d "
          "expert tensors, %d of %d other tensors unchanged)", preset, n, mm, bad, experts, kept_same, other);
    lmp_ckpt_close(&a);
    lmp_ckpt_close(&b);
    lmp_model *m = NULL;
    rc = lmp_model_load(&m, out);
    float *lg = rc ? NULL : eval_seq(m, (const int32_t[]){1, 2, 3, 4}, 4, false);
    bool finite = lg != NULL;
    for (int i = 0; lg && i < 4 * lmp_model_n_vocab(m); i++)
        finite &= isfinite(lg[i]);
    CHECK(finite, "%s: the pruned model runs: %s", preset, lmp_errmsg());
    free(lg);
    lmp_model_free(m);
    /* structured FFN pruning of experts is refused before reading anything, nothing written
     * (heads, KV heads, layers, Wanda and SparseGPT on experts: tests/cli/test_moe.sh) */
    char out2[600];
    snprintf(out2, sizeof out2, "%s/%s-struct", tmpdir(), preset);
    pp.structured = true;
    pp.kind = LMP_STRUCT_FFN;
    pp.ratio = 0.25;
    pp.calib_path = "unused.txt";
    rc = lmp_prune_model(dir, out2, &pp, &pr);
    lmp_prune_model_result_free(&pr);
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "structured ffn") && !lmp_path_exists(out2),
          "%s: structured FFN pruning of experts refused: %s", preset, lmp_errmsg());
}

/* Importance weights for stacked experts (llama-imatrix's layout: cols x n_experts values
 * for a *_exps tensor) are applied per expert: the quantized rows of expert e equal
 * lmp_quant_rows of those rows with expert e's slice. */
static int64_t g_wcalls_stack;
static const float *expert_weights(void *ctx, const char *name, int64_t cols)
{
    static float w[8 * 4096];
    if (!strstr(name, "ffn_up_exps") || cols > (int64_t)(sizeof w / sizeof w[0]))
        return NULL;
    g_wcalls_stack++;
    for (int64_t j = 0; j < cols; j++) /* a different profile per 64-column slice */
        w[j] = 0.1f + (float)((j * 37 + (j / 64) * 11) % 97);
    (void)ctx;
    return w;
}

static void test_expert_imatrix(void)
{
    char gg[600], out[600];
    snprintf(gg, sizeof gg, "%s/tiny-mixtral.gguf", tmpdir()); /* from test_gguf_round_trip */
    snprintf(out, sizeof out, "%s/tiny-mixtral-q4_0-w.gguf", tmpdir());
    lmp_gguf_quant_params qp;
    lmp_gguf_quant_result qr;
    lmp_gguf_quant_default_params(&qp);
    qp.type = "q4_0";
    qp.force = true;
    qp.weights = expert_weights;
    int rc = lmp_gguf_quantize(gg, out, &qp, &qr);
    CHECK(rc == 0 && g_wcalls_stack > 0, "quantize with expert weights: %s", lmp_errmsg());
    lmp_ckpt a, b;
    if (rc || lmp_ckpt_open(&a, gg) || lmp_ckpt_open(&b, out)) {
        CHECK(0, "reopen: %s", lmp_errmsg());
        return;
    }
    const lmp_tensor *t = lmp_ckpt_find(&a, "blk.0.ffn_up_exps.weight"), *u = lmp_ckpt_find(&b, "blk.0.ffn_up_exps.weight");
    bool ok = t && u && t->ndim == 3 && u->dtype == LMP_DT_Q4_0;
    int differ_from_first = 0;
    if (ok) {
        const int64_t E = t->shape[0], R = t->shape[1], C = t->shape[2];
        const float *w = expert_weights(NULL, "ffn_up_exps", C * E);
        const size_t orow = lmp_dtype_row_bytes(LMP_DT_Q4_0, C);
        uint8_t *q = malloc(orow), *q0 = malloc(orow);
        for (int64_t e = 0; e < E && ok; e++)
            for (int64_t r = 0; r < R && ok; r++) {
                const float *x = (const float *)t->data + (e * R + r) * C;
                lmp_quant_rows(LMP_DT_Q4_0, x, q, 1, C, w + e * C);
                lmp_quant_rows(LMP_DT_Q4_0, x, q0, 1, C, w);
                ok = memcmp(q, (const uint8_t *)u->data + (size_t)(e * R + r) * orow, orow) == 0;
                differ_from_first += memcmp(q, q0, orow) != 0;
            }
        free(q);
        free(q0);
    }
    CHECK(ok && differ_from_first > 0, "every expert quantized with its own importance slice (%d rows "
          "differ from using expert 0's)", differ_from_first);
    lmp_ckpt_close(&a);
    lmp_ckpt_close(&b);
}

/* lmpress's own importance matrix on experts: each expert's statistics over the tokens
 * routed to it (counts equal the engine's routing counters), experts no token reached get
 * no weights (their rows are quantized as without an imatrix), the others their slice. */
static void test_moe_imatrix_calib(void)
{
    char dir[512], gg[600], out[600], txt[600];
    snprintf(dir, sizeof dir, "%s/tiny-mixtral", tmpdir());
    snprintf(gg, sizeof gg, "%s/tiny-mixtral.gguf", tmpdir());
    snprintf(out, sizeof out, "%s/tiny-mixtral-q4_0-im.gguf", tmpdir());
    snprintf(txt, sizeof txt, "%s/corpus.txt", dir);
    lmp_model *m = NULL;
    if (lmp_model_load(&m, dir)) {
        CHECK(0, "load: %s", lmp_errmsg());
        return;
    }
    const lmp_config *c = lmp_model_config(m);
    const int E = c->n_experts, L = c->n_layers;
    uint64_t h0[2][8], h1[2][8];
    for (int l = 0; l < L && l < 2; l++)
        lmp_model_expert_hits(m, l, h0[l]);
    lmp_calib_params cp;
    lmp_calib_default_params(&cp);
    cp.n_samples = 1;
    cp.seq_len = 5; /* few tokens: some experts are never reached */
    lmp_calib_data cal = {0};
    lmp_imatrix im = {0};
    int rc = lmp_calib_load(m, txt, &cp, &cal);
    rc = rc ? rc : lmp_imatrix_collect(m, &cal, false, &im);
    CHECK(rc == 0 && im.ev && im.n_experts == E, "imatrix on experts: %s", lmp_errmsg());
    for (int l = 0; l < L && l < 2; l++)
        lmp_model_expert_hits(m, l, h1[l]);
    int same = 0, unreached = 0;
    for (int l = 0; rc == 0 && l < L && l < 2; l++)
        for (int e = 0; e < E; e++) {
            same += (uint64_t)im.ecount[l * E + e] == h1[l][e] - h0[l][e];
            unreached += im.ecount[l * E + e] == 0;
        }
    CHECK(rc == 0 && same == 2 * E && unreached > 0, "per-expert token counts = routing counters (%d of %d), "
          "%d experts unreached", same, 2 * E, unreached);
    lmp_calib_free(&cal);
    lmp_model_free(m);
    lmp_gguf_quant_params qp;
    lmp_gguf_quant_result qr;
    lmp_gguf_quant_default_params(&qp);
    qp.type = "q4_0";
    qp.force = true;
    qp.weights = lmp_imatrix_weights;
    qp.weights_ctx = &im;
    rc = rc ? rc : lmp_gguf_quantize(gg, out, &qp, &qr);
    CHECK(rc == 0, "quantize with the expert imatrix: %s", lmp_errmsg());
    lmp_ckpt a, b;
    if (rc || lmp_ckpt_open(&a, gg) || lmp_ckpt_open(&b, out)) {
        lmp_imatrix_free(&im);
        return;
    }
    const lmp_tensor *t = lmp_ckpt_find(&a, "blk.1.ffn_down_exps.weight"), *u = lmp_ckpt_find(&b, "blk.1.ffn_down_exps.weight");
    bool ok = t && u && u->dtype == LMP_DT_Q4_0;
    if (ok) {
        const int64_t R = t->shape[1], C = t->shape[2];
        const size_t orow = lmp_dtype_row_bytes(LMP_DT_Q4_0, C);
        const float *ev = im.ev + (int64_t)1 * E * (im.e_hidden + im.e_ff) + (int64_t)E * im.e_hidden;
        uint8_t *q = malloc(orow);
        for (int64_t e = 0; e < E && ok; e++)
            for (int64_t r = 0; r < R && ok; r++) {
                const float *x = (const float *)t->data + (e * R + r) * C;
                lmp_quant_rows(LMP_DT_Q4_0, x, q, 1, C, im.ecount[1 * E + e] ? ev + e * C : NULL);
                ok = memcmp(q, (const uint8_t *)u->data + (size_t)(e * R + r) * orow, orow) == 0;
            }
        free(q);
    }
    CHECK(ok, "reached experts quantized with their own slice, unreached ones without weights");
    lmp_ckpt_close(&a);
    lmp_ckpt_close(&b);
    lmp_imatrix_free(&im);
}

/* Per-expert Hessians (lib/calib/experts.c through the driver) against the float64
 * reference: golden/tiny-mixtral-experts.h5 holds, for one window through block 0 of
 * `lmpress synth --preset tiny-mixtral --seed 5`, the FFN-normed inputs x, the routed
 * experts sel and each routed pair's down input g (tests/reference/moe_ref.py experts);
 * the driver's eH must be 2/n_e sum x x^T over exactly the tokens routed to e (gate/up
 * input) and the same over g (down input), with n_e tokens counted. */
typedef struct {
    int64_t n, k, d, ff;
    double *x, *g;
    int64_t *sel;
    int checked;
} eh_ref;

static void cmp_expert_h(const double *H, int64_t ns, const eh_ref *r, int e, bool down)
{
    const int64_t c = down ? r->ff : r->d;
    int64_t ne = 0;
    double *R = calloc((size_t)(c * c), sizeof(double));
    for (int64_t t = 0; t < r->n; t++)
        for (int64_t j = 0; j < r->k; j++)
            if (r->sel[t * r->k + j] == e) {
                const double *v = down ? r->g + (t * r->k + j) * r->ff : r->x + t * r->d;
                for (int64_t a = 0; a < c; a++)
                    for (int64_t b = 0; b < c; b++)
                        R[a * c + b] += v[a] * v[b];
                ne++;
            }
    double md = 0, mx = 0;
    for (int64_t i = 0; i < c * c; i++) {
        double ref = ne ? 2.0 * R[i] / (double)ne : 0;
        md = fmax(md, fabs(ref - (H ? H[i] : 0)));
        mx = fmax(mx, fabs(ref));
    }
    CHECK(ns == ne && md <= 1e-5 * (mx > 0 ? mx : 1), "expert %d %s Hessian: %lld tokens (reference %lld), "
          "max |diff| %.3g of %.3g", e, down ? "down" : "gate/up", (long long)ns, (long long)ne, md, mx);
    free(R);
}

static int eh_block(void *ctx, lmp_calib_block *b)
{
    eh_ref *r = ctx;
    if (b->layer != 0)
        return 0;
    CHECK(b->st.eH[LMP_IN_MLP] && b->st.eH[LMP_IN_DOWN] && b->st.e_n == 8, "expert Hessians gathered");
    if (!b->st.eH[LMP_IN_MLP] || !b->st.eH[LMP_IN_DOWN])
        return 0;
    int reached = 0;
    for (int e = 0; e < b->st.e_n; e++) {
        cmp_expert_h(b->st.eH[LMP_IN_MLP][e], b->st.ens[LMP_IN_MLP][e], r, e, false);
        cmp_expert_h(b->st.eH[LMP_IN_DOWN][e], b->st.ens[LMP_IN_DOWN][e], r, e, true);
        reached += b->st.ens[LMP_IN_MLP][e] > 0;
    }
    CHECK(reached > 1, "several experts reached (%d)", reached);
    r->checked = 1;
    return 0;
}

static void test_expert_hessian_ref(void)
{
    const char *gd = getenv("LMP_GOLDEN");
    char path[600];
    snprintf(path, sizeof path, "%s/tiny-mixtral-experts.h5", gd && *gd ? gd : "golden");
    lmp_h5 *f = NULL;
    eh_ref r;
    memset(&r, 0, sizeof r);
    int nd;
    int64_t sh[4];
    int64_t *tok = NULL;
    int rc = lmp_h5_open(&f, path, false);
    CHECK(rc == 0, "open %s: %s", path, lmp_errmsg());
    if (rc)
        return;
    rc = lmp_h5_read(f, "tokens", LMP_DT_I64, &nd, sh, (void **)&tok);
    if (!rc) {
        r.n = sh[0];
        rc = lmp_h5_read(f, "x", LMP_DT_F64, &nd, sh, (void **)&r.x);
    }
    if (!rc) {
        r.d = sh[1];
        rc = lmp_h5_read(f, "sel", LMP_DT_I64, &nd, sh, (void **)&r.sel);
    }
    if (!rc) {
        r.k = sh[1];
        rc = lmp_h5_read(f, "g", LMP_DT_F64, &nd, sh, (void **)&r.g);
        r.ff = sh[2];
    }
    lmp_h5_close(f, false);
    CHECK(rc == 0, "read %s: %s", path, lmp_errmsg());
    /* the model the reference read: synth --preset tiny-mixtral --seed 5 (tiny_model's) */
    lmp_model *m = rc ? NULL : tiny_model("tiny-mixtral");
    if (m) {
        lmp_calib_data cal;
        memset(&cal, 0, sizeof cal);
        cal.n_samples = 1;
        cal.seq_len = (int)r.n;
        cal.tokens = malloc(sizeof(int32_t) * (size_t)r.n);
        for (int64_t i = 0; i < r.n; i++)
            cal.tokens[i] = (int32_t)tok[i];
        const lmp_calib_method row = {.name = "expert-hessians", .stats = LMP_STAT_EXPERT_HESSIAN,
                                      .hessian_add = lmp_gptq_hessian_add, .block = eh_block};
        lmp_calib_opts o = {.true_sequential = false};
        rc = lmp_calib_run(m, &cal, &row, &r, &o);
        CHECK(rc == 0 && r.checked, "driver run with expert Hessians: %s", rc ? lmp_errmsg() : "");
        free(cal.tokens);
        lmp_model_free(m);
    }
    free(tok);
    free(r.x);
    free(r.g);
    free(r.sel);
}

/* GPTQ / RTN / Wanda / SparseGPT on experts end to end (library level): the folder the
 * quantize job writes loads and runs, with every expert's packed tensors; AWQ and joint
 * quantization are refused clearly. */
static void test_calibrated_experts(void)
{
    lmp_model *m = tiny_model("tiny-mixtral");
    if (!m)
        return;
    lmp_qpipe_params qp;
    lmp_qpipe_default_params(&qp);
    qp.group_size = 32;
    int rc = lmp_qpipe_check(m, &qp);
    CHECK(rc == 0, "GPTQ accepted on experts: %s", rc ? lmp_errmsg() : "");
    qp.method = LMP_QMETHOD_AWQ;
    qp.act_order = false;
    rc = lmp_qpipe_check(m, &qp);
    CHECK(rc == 0, "AWQ accepted on mixtral experts: %s", rc ? lmp_errmsg() : "");
    lmp_prune_spec ps;
    lmp_prune_default_spec(&ps);
    ps.qbits = 4;
    rc = lmp_prune_check(m, &ps);
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "joint quantization"), "joint quantization refused: %s",
          lmp_errmsg());
    /* GPTQ with one 4-token window: most experts unreached -> RTN, counted */
    lmp_calib_data cal;
    memset(&cal, 0, sizeof cal);
    cal.n_samples = 1;
    cal.seq_len = 4;
    int32_t toks[4] = {1, 50, 60, 70};
    cal.tokens = toks;
    lmp_qpipe_default_params(&qp);
    qp.group_size = 32;
    qp.progress = false;
    lmp_qpipe_result res;
    int lvl = lmp_log_level;
    lmp_log_level = LMP_LOG_ERROR; /* the unreached experts' warning */
    rc = lmp_qpipe_run(m, &cal, &qp, &res);
    lmp_log_level = lvl;
    const lmp_config *c = lmp_model_config(m);
    CHECK(rc == 0 && res.n_expert_linears == c->n_layers * 3 * c->n_experts && res.n_expert_unreached > 0 &&
              res.n_expert_unreached < res.n_expert_linears,
          "GPTQ on experts: %d expert linears, %d unreached (RTN): %s", res.n_expert_linears, res.n_expert_unreached,
          rc ? lmp_errmsg() : "");
    /* the model is restored */
    const lmp_wmat *w0 = lmp_model_expert_linear(m, 0, 0, LMP_LIN_GATE);
    CHECK(w0 && !w0->q, "experts restored after the run");
    lmp_qpipe_result_free(&res);
    /* AWQ: every expert quantized, the shared gate/up scale folded (router included), the
     * model unchanged afterwards */
    lmp_qpipe_default_params(&qp);
    qp.method = LMP_QMETHOD_AWQ;
    qp.act_order = false;
    qp.group_size = 32;
    qp.awq_grid = 4;
    qp.progress = false;
    lmp_log_level = LMP_LOG_ERROR;
    rc = lmp_qpipe_run(m, &cal, &qp, &res);
    lmp_log_level = lvl;
    CHECK(rc == 0 && res.n_expert_linears == c->n_layers * 3 * c->n_experts && res.n_expert_unreached > 0,
          "AWQ on experts: %d expert linears, %d unreached: %s", res.n_expert_linears, res.n_expert_unreached,
          rc ? lmp_errmsg() : "");
    lmp_qpipe_result_free(&res);
    lmp_model_free(m);
    m = tiny_model("tiny-granitemoe");
    if (m) {
        rc = lmp_qpipe_check(m, &qp);
        CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "granitemoe"), "AWQ on granitemoe refused: %s",
              lmp_errmsg());
        lmp_model_free(m);
    }
}

/* The mask of the pruned weights the calibrated expert path hands over (values only):
 * where a kept weight is exactly 0 the unit (group of M, row, matrix) has more zeros than
 * the pattern prunes, and the first of them are marked kept so every count is the
 * pattern's; fewer zeros than the pattern prunes is an error naming the tensor. */
static void test_sparse_mask_of(void)
{
    lmp_prune_spec s;
    lmp_prune_default_spec(&s);
    s.m = 4;
    s.n = 2;
    /* 2 rows x 8: group 0 prunes 2 (two zeros), group 1 has a kept 0 (three zeros) */
    const float W[16] = {1, 0, 2, 0, 0, 0, 3, 0, 0, 5, 6, 0, 7, 0, 0, 0};
    uint8_t mask[16];
    int rc = lmp_sparse_mask_of(W, 2, 8, &s, mask, "w");
    const uint8_t want[16] = {1, 0, 1, 0, 1, 0, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0};
    CHECK(rc == 0 && memcmp(mask, want, 16) == 0, "2:4 mask from values: kept zeros marked first (%s)",
          lmp_errmsg());
    const float dense[8] = {1, 2, 3, 0, 4, 5, 6, 7};
    rc = lmp_sparse_mask_of(dense, 1, 8, &s, mask, "model.layers.0.x.weight");
    CHECK(rc == LMP_EINVAL && strstr(lmp_errmsg(), "model.layers.0.x.weight"), "too few zeros refused: %s",
          lmp_errmsg());
    s.m = s.n = 0;
    s.sparsity = 0.5f;
    s.scope = LMP_PRUNE_SCOPE_MATRIX; /* 8 of 16 in the matrix, wherever they are */
    rc = lmp_sparse_mask_of(W, 2, 8, &s, mask, "w");
    int kept = 0;
    for (int i = 0; i < 16; i++)
        kept += mask[i] != 0;
    bool nonzero_kept = true;
    for (int i = 0; i < 16; i++)
        nonzero_kept &= W[i] == 0 || mask[i];
    CHECK(rc == 0 && kept == 8 && nonzero_kept, "matrix scope: %d kept of 16, every nonzero kept", kept);
}

int main(void)
{
    lmp_log_level = LMP_LOG_WARN;
    test_real_configs();
    test_broken_configs();
    lmp_gemm_set_exact(true);
    test_engine("tiny-mixtral");
    test_engine("tiny-qwen3-moe");
    test_engine("tiny-granitemoe");
    test_gguf_round_trip("tiny-mixtral");
    test_gguf_round_trip("tiny-qwen3-moe");
    test_gguf_round_trip("tiny-granitemoe");
    test_gguf_refusal();
    test_quant_rules();
    test_expert_imatrix();
    test_moe_imatrix_calib();
    test_expert_hessian_ref();
    test_calibrated_experts();
    test_sparse_mask_of();
    test_prune_experts("tiny-mixtral", 0, 0);
    test_prune_experts("tiny-granitemoe", 2, 4);
    test_prune_experts("tiny-qwen3-moe", 2, 4);
    return test_finish();
}
