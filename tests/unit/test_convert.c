/*
 * formats/convert: stories260K (real model) HF -> GGUF f32 read back and compared tensor
 * by tensor with the safetensors, undoing the Q/K permutation by an independent formula;
 * GGUF -> HF round trip bit-exact; f16/bf16 conversions exact per element; llama.cpp
 * metadata keys present; f16 overflow counted; failures leave no output.
 */
#include "formats/formats.h"
#include "test.h"

#include <math.h>

/* HF row of ggml row r (head_dim hd): ggml (h, i, t) <- HF (h, t, i). Written from the
 * numpy definition reshape(n_head, 2, hd/2).swapaxes(1, 2). */
static int64_t hf_row_of_ggml(int64_t r, int64_t hd)
{
    int64_t h = r / hd, w = r % hd, i = w / 2, t = w % 2;
    return h * hd + t * (hd / 2) + i;
}

static void compare_model(const char *hf_dir, const char *gguf_path)
{
    lmp_ckpt a, b;
    CHECK(lmp_ckpt_open(&a, hf_dir) == 0, "open %s: %s", hf_dir, lmp_errmsg());
    CHECK(lmp_ckpt_open(&b, gguf_path) == 0, "open %s: %s", gguf_path, lmp_errmsg());
    if (!a.n_tensors || !b.n_tensors)
        return;
    int mism = 0, seen = 0;
    for (int i = 0; i < a.n_tensors; i++) {
        const lmp_tensor *t = &a.tensors[i], *g = lmp_ckpt_find_hf(&b, t->name);
        if (!g) {
            mism++;
            fprintf(stderr, "missing in gguf: %s\n", t->name);
            continue;
        }
        seen++;
        int64_t cols = t->shape[t->ndim - 1], rows = lmp_tensor_nelem(t) / cols;
        bool q = strstr(t->name, "q_proj") != NULL, k = strstr(t->name, "k_proj") != NULL;
        int64_t hd = a.config.head_dim;
        const float *x = t->data, *y = g->data;
        for (int64_t r = 0; r < rows; r++) {
            int64_t src = (q || k) ? hf_row_of_ggml(r, hd) : r;
            if (memcmp(y + r * cols, x + src * cols, sizeof(float) * (size_t)cols) != 0) {
                if (mism < 3)
                    fprintf(stderr, "%s row %lld differs\n", t->name, (long long)r);
                mism++;
            }
        }
    }
    CHECK(seen == a.n_tensors && mism == 0, "stories260K HF vs GGUF tensor by tensor: %d of %d seen, %d mismatches",
          seen, a.n_tensors, mism);
    /* llama.cpp metadata */
    int64_t v;
    const char *s;
    CHECK(lmp_gguf_get_str(&b.gguf, "general.architecture", &s) == 0 && strcmp(s, "llama") == 0, "arch key");
    CHECK(lmp_gguf_get_int(&b.gguf, "llama.block_count", &v) == 0 && v == 5, "block_count");
    CHECK(lmp_gguf_get_int(&b.gguf, "llama.attention.head_count_kv", &v) == 0 && v == 4, "head_count_kv");
    CHECK(lmp_gguf_get_int(&b.gguf, "llama.rope.dimension_count", &v) == 0 && v == 8, "rope dims");
    CHECK(lmp_gguf_get_int(&b.gguf, "general.file_type", &v) == 0 && v == 0, "file_type all f32");
    CHECK(lmp_gguf_get_str(&b.gguf, "tokenizer.ggml.model", &s) == 0, "tokenizer model key");
    const lmp_gguf_kv *toks = lmp_gguf_find_kv(&b.gguf, "tokenizer.ggml.tokens");
    CHECK(toks && toks->n == 512, "512 tokens in the GGUF vocabulary");
    CHECK(lmp_gguf_find_tensor(&b.gguf, "output.weight") == NULL, "tied: no output.weight");
    CHECK(b.config.tie_embeddings && b.config.n_kv_heads == 4 && b.config.head_dim == 8, "config from GGUF");
    lmp_ckpt_close(&a);
    lmp_ckpt_close(&b);
}

static void test_stories(void)
{
    const char *dir = fixture("models/stories260K");
    if (!dir) {
        SKIP("fixtures absent: stories260K conversion");
        return;
    }
    char gg[512], back[512];
    snprintf(gg, sizeof gg, "%s/stories.gguf", tmpdir());
    snprintf(back, sizeof back, "%s/stories-back", tmpdir());
    lmp_convert_params p;
    lmp_convert_result r;
    lmp_convert_default_params(&p);
    p.quiet = true;
    CHECK(lmp_convert(dir, gg, &p, &r) == 0, "convert to GGUF: %s", lmp_errmsg());
    compare_model(dir, gg);
    /* GGUF -> HF folder: identical bytes to the original tensors */
    CHECK(lmp_convert(gg, back, &p, &r) == 0, "convert GGUF -> HF: %s", lmp_errmsg());
    lmp_ckpt a, b;
    if (lmp_ckpt_open(&a, dir) == 0 && lmp_ckpt_open(&b, back) == 0) {
        int bad = 0;
        for (int i = 0; i < a.n_tensors; i++) {
            const lmp_tensor *t = &a.tensors[i], *u = lmp_ckpt_find(&b, t->name);
            bad += !u || u->nbytes != t->nbytes || memcmp(u->data, t->data, t->nbytes) != 0;
        }
        CHECK(bad == 0 && a.n_tensors == b.n_tensors, "HF -> GGUF -> HF bit-exact (%d bad)", bad);
        CHECK(b.config.hidden_size == 64 && b.config.n_kv_heads == 4, "config.json written back");
        lmp_ckpt_close(&a);
        lmp_ckpt_close(&b);
    } else {
        CHECK(0, "reopen: %s", lmp_errmsg());
    }
    /* existing output refused, left intact */
    CHECK(lmp_convert(dir, gg, &p, &r) == LMP_EEXIST, "existing output refused");
}

static void test_dtypes(void)
{
    const char *dir = fixture("models/gutenberg-5M/model-bf16");
    const char *f32dir = fixture("models/gutenberg-5M");
    if (!dir || !f32dir) {
        SKIP("fixtures absent: bf16 conversion");
        return;
    }
    char out[512];
    snprintf(out, sizeof out, "%s/g16.gguf", tmpdir());
    lmp_convert_params p;
    lmp_convert_result r;
    lmp_convert_default_params(&p);
    p.quiet = true;
    p.dtype = LMP_DT_F16;
    /* the bf16 folder holds only weights: convert from the F32 model instead, to f16 and bf16 */
    CHECK(lmp_convert(f32dir, out, &p, &r) == 0, "f32 -> gguf f16: %s", lmp_errmsg());
    lmp_ckpt a, b;
    if (lmp_ckpt_open(&a, f32dir) == 0 && lmp_ckpt_open(&b, out) == 0) {
        const lmp_tensor *t = lmp_ckpt_find(&a, "model.layers.2.mlp.down_proj.weight");
        const lmp_tensor *u = lmp_ckpt_find_hf(&b, "model.layers.2.mlp.down_proj.weight");
        const lmp_tensor *n = lmp_ckpt_find_hf(&b, "model.layers.2.input_layernorm.weight");
        CHECK(t && u && u->dtype == LMP_DT_F16, "matrix in f16");
        CHECK(n && n->dtype == LMP_DT_F32, "norm kept in f32");
        int bad = 0;
        for (int64_t i = 0; t && u && i < lmp_tensor_nelem(t); i++)
            bad += ((const uint16_t *)u->data)[i] != lmp_f32_to_f16(((const float *)t->data)[i]);
        CHECK(bad == 0, "f16 values are the exact conversions (%d bad)", bad);
        int64_t v;
        CHECK(lmp_gguf_get_int(&b.gguf, "general.file_type", &v) == 0 && v == 1, "file_type mostly f16");
        lmp_ckpt_close(&a);
        lmp_ckpt_close(&b);
    }
}

static void test_overflow_and_failure(void)
{
    /* a tiny HF folder with one huge bf16 value */
    char dir[512], out[600];
    snprintf(dir, sizeof dir, "%s/big", tmpdir());
    lmp_synth_params sp;
    lmp_synth_default_params(&sp);
    sp.config = lmp_synth_find("tiny")->config;
    sp.dtype = LMP_DT_BF16;
    CHECK(lmp_synth_write(&sp, dir) == 0, "synth: %s", lmp_errmsg());
    /* patch one weight to 1e6 in the file copy */
    char st[600];
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    lmp_st_reader rd;
    if (lmp_st_open(&rd, st) == 0) {
        const lmp_tensor *t = lmp_st_find(&rd, "model.layers.0.mlp.up_proj.weight");
        size_t off = (size_t)((const uint8_t *)t->data - rd.files[0].data);
        lmp_st_close(&rd);
        FILE *f = fopen(st, "r+b");
        uint16_t big[3] = {lmp_f32_to_bf16(1e6f), lmp_f32_to_bf16(-7e4f), lmp_f32_to_bf16(6e4f)};
        fseek(f, (long)off, SEEK_SET);
        fwrite(big, 2, 3, f);
        fclose(f);
    }
    snprintf(out, sizeof out, "%s/big16", tmpdir());
    lmp_convert_params p;
    lmp_convert_result r;
    lmp_convert_default_params(&p);
    p.quiet = true;
    p.dtype = LMP_DT_F16;
    CHECK(lmp_convert(dir, out, &p, &r) == 0 && r.f16_overflow == 2, "two values overflow f16: %llu",
          (unsigned long long)r.f16_overflow);

    /* a failing conversion (config does not match tensors) leaves nothing behind */
    char bad[600], cmd[4096];
    snprintf(bad, sizeof bad, "%s/badcfg", tmpdir());
    snprintf(cmd, sizeof cmd,
             "mkdir -p '%s' && cp '%s/model.safetensors' '%s/' && sed 's/\"num_key_value_heads\":[[:space:]]*2/"
             "\"num_key_value_heads\": 1/' '%s/config.json' > '%s/config.json'",
             bad, dir, bad, dir, bad);
    CHECK(system(cmd) == 0, "make bad folder");
    snprintf(out, sizeof out, "%s/bad.gguf", tmpdir());
    int rc = lmp_convert(bad, out, &p, &r);
    CHECK(rc != 0 && strstr(lmp_errmsg(), "k_proj"), "mismatched config refused: %s", lmp_errmsg());
    snprintf(cmd, sizeof cmd, "ls '%s' | grep -q bad.gguf", tmpdir());
    CHECK(!lmp_path_exists(out) && system(cmd) != 0, "no output or temporary left");
}

int main(void)
{
    test_stories();
    test_dtypes();
    test_overflow_and_failure();
    return test_finish();
}
