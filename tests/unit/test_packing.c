/*
 * Integer group packings (formats/packing.h): words computed by hand for GPTQ v1/v2, AWQ
 * GEMM and compressed-tensors pack-quantized; round trips canonical -> format ->
 * canonical for bits 2/3/4/8, group sizes 32/64/128/-1, with and without act-order;
 * identical dequantized values across formats; refusals; through safetensors files;
 * config JSON; malformed tensors; the format tables (fmt_table.c, sparse.c).
 */
#include "formats/packing.h"
#include "formats/sparse.h"
#include "test.h"

#include <math.h>

static const uint32_t *words(const lmp_packed_linear *p, const char *name)
{
    const lmp_tensor *t = lmp_packed_linear_find(p, name);
    return t ? (const uint32_t *)t->data : NULL;
}

static bool shape_is(const lmp_packed_linear *p, const char *name, int64_t a, int64_t b)
{
    const lmp_tensor *t = lmp_packed_linear_find(p, name);
    if (!t)
        return false;
    if (b < 0)
        return t->ndim == 1 && t->shape[0] == a;
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

/* A qtensor with given codes: code(r, c), one group of size gs, scale 0.5 + r/8 (exact
 * in f16), zero = sym ? 2^(bits-1) : zero_of_row(r). */
static void make_hand(lmp_qtensor *q, int64_t rows, int64_t cols, int bits, int gs, bool sym,
                      unsigned (*code)(int64_t, int64_t), int (*zero)(int64_t))
{
    int rc = lmp_qtensor_intgroup_init(q, rows, cols, bits, gs, sym, false);
    CHECK(rc == 0, "init: %s", lmp_errmsg());
    for (int64_t r = 0; r < rows; r++) {
        for (int g = 0; g < q->ig.n_groups; g++) {
            q->ig.scales[r * q->ig.n_groups + g] = 0.5f + (float)r / 8.0f;
            if (!sym)
                q->ig.zeros[r * q->ig.n_groups + g] = (uint8_t)zero(r);
        }
        for (int64_t c = 0; c < cols; c++)
            lmp_ig_set_code(&q->ig, r, c, code(r, c));
    }
}

static unsigned code_rpc(int64_t r, int64_t c) { return (unsigned)((r + c) & 15); }
static unsigned code_c7(int64_t r, int64_t c) { (void)r; return (unsigned)(c & 7); }
static unsigned code_c3(int64_t r, int64_t c) { (void)r; return (unsigned)(c & 3); }
static unsigned code_c8(int64_t r, int64_t c) { (void)r; return (unsigned)((c * 7) & 255); }
static int zero_r(int64_t r) { return (int)r; }

static void test_hand_4bit(void)
{
    lmp_qtensor q;
    lmp_packed_linear p;
    /* 8x8, code (r, c) = r + c, one group of 8. Along the input axis row r holds the
     * nibbles r, r+1, ..., r+7 from the least significant end: 0x76543210 + r*0x11111111. */
    make_hand(&q, 8, 8, 4, 8, true, code_rpc, NULL);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "qweight", 1, 8) && shape_is(&p, "qzeros", 1, 1) &&
          shape_is(&p, "scales", 1, 8) && shape_is(&p, "g_idx", 8, -1), "gptq shapes");
    for (int r = 0; r < 8; r++)
        CHECK(words(&p, "qweight")[r] == 0x76543210u + 0x11111111u * r, "gptq qweight[0][%d] = %08x",
              r, words(&p, "qweight")[r]);
    CHECK(words(&p, "qzeros")[0] == 0x88888888u, "v2 sym qzeros %08x", words(&p, "qzeros")[0]);
    const uint16_t *sc = lmp_packed_linear_find(&p, "scales")->data;
    CHECK(sc[0] == 0x3800 && sc[7] == 0x3d80, "scales f16 %04x %04x", sc[0], sc[7]); /* 0.5, 1.375 */
    const int32_t *gi = lmp_packed_linear_find(&p, "g_idx")->data;
    CHECK(gi[0] == 0 && gi[7] == 0, "g_idx");
    lmp_packed_linear_free(&p);

    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V1, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(words(&p, "qzeros")[0] == 0x77777777u, "v1 sym qzeros %08x", words(&p, "qzeros")[0]);
    CHECK(words(&p, "qweight")[3] == 0xa9876543u, "v1 qweight %08x", words(&p, "qweight")[3]);
    lmp_packed_linear_free(&p);

    /* AWQ packs along the output axis: nibble i of input row k holds column order[i],
     * order = 0,2,4,6,1,3,5,7, so row k = 0 reads 0,2,4,6,1,3,5,7 -> 0x75316420. */
    CHECK(lmp_fmt_awq_pack(&q, LMP_QFMT_AWQ_GEMM, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "qweight", 8, 1) && shape_is(&p, "qzeros", 1, 1) &&
          shape_is(&p, "scales", 1, 8) && p.n == 3, "awq shapes");
    for (int k = 0; k < 8; k++)
        CHECK(words(&p, "qweight")[k] == 0x75316420u + 0x11111111u * k, "awq qweight[%d] = %08x",
              k, words(&p, "qweight")[k]);
    CHECK(words(&p, "qzeros")[0] == 0x88888888u, "awq qzeros %08x", words(&p, "qzeros")[0]);
    lmp_packed_linear_free(&p);

    /* compressed-tensors: weight_packed [8, 1], row r = the GPTQ column word; sym has no
     * zero point; weight_scale [out, n_groups]; weight_shape {8, 8}. */
    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "weight_packed", 8, 1) && shape_is(&p, "weight_scale", 8, 1) &&
          shape_is(&p, "weight_shape", 2, -1), "ct shapes");
    CHECK(!lmp_packed_linear_find(&p, "weight_zero_point") &&
          !lmp_packed_linear_find(&p, "weight_g_idx"), "ct sym has no zero point / g_idx");
    for (int r = 0; r < 8; r++)
        CHECK(words(&p, "weight_packed")[r] == 0x76543210u + 0x11111111u * r,
              "ct weight_packed[%d] = %08x", r, words(&p, "weight_packed")[r]);
    const int64_t *ws = lmp_packed_linear_find(&p, "weight_shape")->data;
    CHECK(lmp_packed_linear_find(&p, "weight_shape")->dtype == LMP_DT_I64 && ws[0] == 8 &&
          ws[1] == 8, "weight_shape");
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);

    /* asymmetric, zero of row r = r: v2 / CT zeros 0x76543210 (nibble r at bit 4r); AWQ
     * interleaved 0x75316420; v1 refused. */
    make_hand(&q, 8, 8, 4, 8, false, code_rpc, zero_r);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(words(&p, "qzeros")[0] == 0x76543210u, "v2 asym qzeros %08x", words(&p, "qzeros")[0]);
    lmp_packed_linear_free(&p);
    int rc = lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V1, LMP_DT_F16, &p);
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "asymmetric"), "v1 asym refused: %d %s",
          rc, lmp_errmsg());
    CHECK(lmp_fmt_awq_pack(&q, LMP_QFMT_AWQ_GEMM, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(words(&p, "qzeros")[0] == 0x75316420u, "awq asym qzeros %08x", words(&p, "qzeros")[0]);
    lmp_packed_linear_free(&p);
    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "weight_zero_point", 1, 1) && words(&p, "weight_zero_point")[0] == 0x76543210u,
          "ct asym zero point");
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);
}

static void test_hand_other_bits(void)
{
    lmp_qtensor q;
    lmp_packed_linear p;
    /* 3-bit 32x32, code (r, c) = c & 7. GPTQ: 32 rows in 3 words per column; word 0 holds
     * rows 0..9 at bits 3k (0 | 1<<3 | 2<<6 | ... | 1<<27 = 0x08fac688) and the low two
     * bits of row 10 (value 2 = 0b010) at bits 30-31 -> 0x88fac688; its high bit opens
     * word 1 (0), rows 11..20 at bits 1..30, row 21's low bit at 31, and so on. */
    make_hand(&q, 32, 32, 3, 32, true, code_c7, NULL);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "qweight", 3, 32) && shape_is(&p, "qzeros", 1, 3), "gptq 3-bit shapes");
    const uint32_t *w = words(&p, "qweight");
    CHECK(w[0] == 0x88fac688u && w[32] == 0xc688fac6u && w[64] == 0xfac688fau && w[31] == w[0],
          "gptq 3-bit qweight %08x %08x %08x", w[0], w[32], w[64]);
    /* zeros 4 = 0b100 repeated along the output axis */
    const uint32_t *z = words(&p, "qzeros");
    CHECK(z[0] == 0x24924924u && z[1] == 0x49249249u && z[2] == 0x92492492u, "v2 3-bit qzeros");
    lmp_packed_linear_free(&p);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V1, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    z = words(&p, "qzeros"); /* stored 3 = 0b011 */
    CHECK(z[0] == 0xdb6db6dbu && z[1] == 0xb6db6db6u && z[2] == 0x6db6db6du, "v1 3-bit qzeros");
    lmp_packed_linear_free(&p);
    /* compressed-tensors 3-bit: 10 whole values per word, bits 30-31 unused:
     * word 0 = 0x08fac688 (rows 0..9), word 1 = values 2,3,4,5,6,7,0,1,2,3 = 0x1a23eb1a,
     * word 2 = 0x2c688fac, word 3 = values 6, 7 = 0x3e */
    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "weight_packed", 32, 4), "ct 3-bit shape");
    w = words(&p, "weight_packed");
    CHECK(w[0] == 0x08fac688u && w[1] == 0x1a23eb1au && w[2] == 0x2c688facu && w[3] == 0x3eu &&
          w[4] == w[0], "ct 3-bit words %08x %08x %08x %08x", w[0], w[1], w[2], w[3]);
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);

    /* 2-bit 16x16, code c & 3: 0,1,2,3 repeating from the low end = 0xe4e4e4e4 */
    make_hand(&q, 16, 16, 2, -1, true, code_c3, NULL);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V1, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(shape_is(&p, "qweight", 1, 16) && words(&p, "qweight")[5] == 0xe4e4e4e4u &&
          words(&p, "qzeros")[0] == 0x55555555u, "gptq 2-bit words"); /* v1 zero 2-1 = 01 */
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);

    /* 8-bit 4x4, code 7c: bytes 0, 7, 14, 21 = 0x150e0700 */
    make_hand(&q, 4, 4, 8, -1, true, code_c8, NULL);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(words(&p, "qweight")[2] == 0x150e0700u && words(&p, "qzeros")[0] == 0x80808080u,
          "gptq 8-bit words %08x", words(&p, "qweight")[2]);
    lmp_packed_linear_free(&p);
    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    CHECK(words(&p, "weight_packed")[1] == 0x150e0700u, "ct 8-bit word");
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);
}

/* Random intgroup tensor: codes, f16-exact scales, zeros (asym), optional act-order g_idx
 * g_idx[perm[j]] = j / gs as GPTQ makes it. */
static void make_random(lmp_qtensor *q, int64_t rows, int64_t cols, int bits, int gs, bool sym,
                        bool act, uint64_t seed)
{
    lmp_rng rng;
    lmp_rng_seed(&rng, seed);
    bool grouped_act = act && gs != -1;
    CHECK(lmp_qtensor_intgroup_init(q, rows, cols, bits, gs, sym, grouped_act) == 0, "%s",
          lmp_errmsg());
    lmp_intgroup *ig = &q->ig;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            lmp_ig_set_code(ig, r, c, (unsigned)(lmp_rng_next(&rng) >> 40) & ((1u << bits) - 1));
    for (int64_t i = 0; i < rows * ig->n_groups; i++) {
        ig->scales[i] = lmp_f16_to_f32(lmp_f32_to_f16((float)(0.001 + 0.05 * lmp_rng_uniform(&rng))));
        if (!sym)
            ig->zeros[i] = (uint8_t)((lmp_rng_next(&rng) >> 40) & ((1u << bits) - 1));
    }
    if (grouped_act) {
        int *perm = malloc((size_t)cols * sizeof(int));
        for (int64_t i = 0; i < cols; i++)
            perm[i] = (int)i;
        for (int64_t i = cols - 1; i > 0; i--) {
            int64_t j = (int64_t)(lmp_rng_next(&rng) % (uint64_t)(i + 1));
            int t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        for (int64_t j = 0; j < cols; j++)
            ig->g_idx[perm[j]] = (int32_t)(j / ig->gs);
        free(perm);
        CHECK(lmp_qtensor_gidx_normalize(q) == 0, "%s", lmp_errmsg());
    }
}

static void test_round_trips(void)
{
    static const int bitsv[] = {2, 3, 4, 8};
    static const int gsv[] = {32, 64, 128, -1};
    const int64_t rows = 64, cols = 256;
    int n_trips = 0, n_refused = 0;
    float *ref = malloc((size_t)(rows * cols) * sizeof(float));
    float *got = malloc((size_t)(rows * cols) * sizeof(float));
    uint64_t seed = 1000;
    for (int bi = 0; bi < 4; bi++)
        for (int gi = 0; gi < 4; gi++)
            for (int act = 0; act < 2; act++)
                for (int sym = 0; sym < 2; sym++) {
                    int bits = bitsv[bi], gs = gsv[gi];
                    lmp_qtensor q;
                    make_random(&q, rows, cols, bits, gs, sym, act, ++seed);
                    if (act && gs != -1)
                        CHECK(q.ig.g_idx != NULL, "act-order g_idx kept (seed %llu)",
                              (unsigned long long)seed);
                    lmp_qtensor_dequant(&q, ref);
                    for (int f = 0; f < LMP_QFMT_COUNT; f++) {
                        bool ok = true;
                        if (f == LMP_QFMT_GPTQ_V1 && !sym)
                            ok = false;
                        if (f == LMP_QFMT_AWQ_GEMM && (bits != 4 || q.ig.g_idx || gs == -1))
                            ok = false;
                        lmp_packed_linear p;
                        int rc = lmp_qformat_pack((lmp_qformat)f, &q, LMP_DT_F16, &p);
                        if (!ok) {
                            CHECK(rc == LMP_EUNSUPPORTED, "%s b%d gs%d act%d sym%d must be refused: %d",
                                  lmp_qformat_name(f), bits, gs, act, sym, rc);
                            n_refused++;
                            continue;
                        }
                        CHECK(rc == 0, "%s pack b%d gs%d act%d sym%d: %s", lmp_qformat_name(f),
                              bits, gs, act, sym, lmp_errmsg());
                        if (rc)
                            continue;
                        lmp_intq_config cfg;
                        lmp_intq_config_init(&cfg, &q);
                        lmp_qtensor back;
                        rc = lmp_qformat_unpack(&p, &cfg, &back);
                        CHECK(rc == 0, "%s unpack b%d gs%d: %s", lmp_qformat_name(f), bits, gs,
                              lmp_errmsg());
                        if (rc == 0) {
                            char why[256];
                            bool eq = lmp_qtensor_intgroup_equal(&q, &back, why, sizeof why);
                            CHECK(eq, "%s b%d gs%d act%d sym%d seed %llu: %s", lmp_qformat_name(f),
                                  bits, gs, act, sym, (unsigned long long)seed, why);
                            lmp_qtensor_dequant(&back, got);
                            CHECK(memcmp(ref, got, (size_t)(rows * cols) * sizeof(float)) == 0,
                                  "%s b%d gs%d dequant differs", lmp_qformat_name(f), bits, gs);
                            n_trips++;
                        }
                        lmp_qtensor_free(&back);
                        lmp_packed_linear_free(&p);
                    }
                    lmp_qtensor_free(&q);
                }
    printf("round trips: %d identical, %d refused as expected\n", n_trips, n_refused);
    free(ref);
    free(got);
}

static void test_dequant(void)
{
    /* long 3-bit rows (chunked unpacking) with act-order, against the formula */
    lmp_qtensor q;
    make_random(&q, 3, 5000, 3, 100, false, true, 77);
    float *row = malloc(5000 * sizeof(float));
    int bad = 0;
    for (int64_t r = 0; r < 3; r++) {
        lmp_qtensor_dequant_row(&q, r, row);
        for (int64_t c = 0; c < 5000; c++) {
            int g = lmp_ig_group(&q.ig, c);
            float e = q.ig.scales[r * q.ig.n_groups + g] *
                      (float)((int)lmp_ig_code(&q.ig, r, c) - q.ig.zeros[r * q.ig.n_groups + g]);
            bad += row[c] != e;
        }
    }
    CHECK(bad == 0, "%d dequantized values differ from the formula", bad);
    CHECK((int64_t)lmp_qtensor_nbytes(&q) == 3 * q.ig.row_bytes + 3 * 50 * 5 + 5000 * 4, "nbytes %zu",
          lmp_qtensor_nbytes(&q));
    CHECK(q.ig.row_bytes == 1880, "row_bytes %lld", (long long)q.ig.row_bytes); /* ceil(15000/64)*8 */
    free(row);
    lmp_qtensor_free(&q);
    /* dense view */
    float d[6] = {1, 2, 3, 4, 5, 6}, o[3];
    CHECK(lmp_qtensor_view(&q, LMP_DT_F32, 2, 3, d) == 0, "view");
    lmp_qtensor_dequant_row(&q, 1, o);
    CHECK(o[0] == 4 && o[2] == 6 && lmp_qtensor_nbytes(&q) == 24, "dense view row");
    lmp_qtensor_free(&q);
}

static void test_safetensors(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/packed.safetensors", tmpdir());
    lmp_qtensor q[LMP_QFMT_COUNT];
    lmp_packed_linear p[LMP_QFMT_COUNT];
    char prefix[LMP_QFMT_COUNT][64];
    lmp_st_writer *w = NULL;
    int rc = lmp_st_writer_new(&w, path, 0, true);
    CHECK(rc == 0, "%s", lmp_errmsg());
    for (int f = 0; f < LMP_QFMT_COUNT; f++) {
        bool act = f != LMP_QFMT_AWQ_GEMM;
        make_random(&q[f], 32, 128, 4, 32, f == LMP_QFMT_GPTQ_V1, act, 500 + f);
        snprintf(prefix[f], sizeof prefix[f], "model.layers.%d.mlp.down_proj", f);
        CHECK(lmp_qformat_pack((lmp_qformat)f, &q[f], LMP_DT_BF16, &p[f]) == 0, "%s", lmp_errmsg());
        CHECK(lmp_packed_linear_declare(w, prefix[f], &p[f]) == 0, "%s", lmp_errmsg());
    }
    CHECK(lmp_st_writer_begin(w) == 0, "%s", lmp_errmsg());
    for (int f = 0; f < LMP_QFMT_COUNT; f++)
        CHECK(lmp_packed_linear_write(w, &p[f]) == 0, "%s", lmp_errmsg());
    CHECK(lmp_st_writer_finish(w) == 0, "%s", lmp_errmsg());

    lmp_st_reader r;
    rc = lmp_st_open(&r, path);
    CHECK(rc == 0, "%s", lmp_errmsg());
    if (rc == 0) {
        CHECK(lmp_st_find(&r, "model.layers.0.mlp.down_proj.qweight") != NULL &&
              lmp_st_find(&r, "model.layers.3.mlp.down_proj.weight_g_idx") != NULL, "names");
        for (int f = 0; f < LMP_QFMT_COUNT; f++) {
            lmp_packed_linear in;
            rc = lmp_packed_linear_from_st(&r, prefix[f], (lmp_qformat)f, &in);
            CHECK(rc == 0, "from_st %s: %s", lmp_qformat_name(f), lmp_errmsg());
            lmp_intq_config cfg;
            lmp_intq_config_init(&cfg, &q[f]);
            lmp_qtensor back;
            rc = lmp_qformat_unpack(&in, &cfg, &back);
            CHECK(rc == 0, "unpack %s: %s", lmp_qformat_name(f), lmp_errmsg());
            char why[256] = "";
            /* bf16 scales only matter for compressed-tensors; compare dequantized there */
            if (f != LMP_QFMT_CT_PACKED)
                CHECK(rc == 0 && lmp_qtensor_intgroup_equal(&q[f], &back, why, sizeof why),
                      "%s via file: %s", lmp_qformat_name(f), why);
            else
                CHECK(rc == 0 && lmp_ig_code(&back.ig, 5, 7) == lmp_ig_code(&q[f].ig, 5, 7) &&
                      back.ig.g_idx && fabsf(back.ig.scales[3] - q[f].ig.scales[3]) <= q[f].ig.scales[3] / 128,
                      "ct via file (bf16 scales)");
            lmp_qtensor_free(&back);
            lmp_packed_linear_free(&in); /* borrowed views: no-op on data */
        }
        lmp_packed_linear missing;
        rc = lmp_packed_linear_from_st(&r, "model.layers.9.mlp.up_proj", LMP_QFMT_GPTQ_V2, &missing);
        CHECK(rc == LMP_ENOTFOUND && strstr(lmp_errmsg(), "up_proj.qweight"), "missing: %s",
              lmp_errmsg());
        lmp_st_close(&r);
    }
    for (int f = 0; f < LMP_QFMT_COUNT; f++) {
        lmp_packed_linear_free(&p[f]);
        lmp_qtensor_free(&q[f]);
    }
}

static void test_refusals_and_broken(void)
{
    lmp_qtensor q;
    lmp_packed_linear p;
    lmp_intq_config cfg;
    int rc;
    /* shapes that do not fill words */
    make_random(&q, 8, 40, 3, 8, true, false, 1);
    rc = lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p);
    CHECK(rc == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "multiples of 32"), "3-bit 40 cols: %s",
          lmp_errmsg());
    lmp_qtensor_free(&q);
    make_random(&q, 8, 64, 5, 32, true, false, 2);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == LMP_EUNSUPPORTED, "5-bit GPTQ refused");
    CHECK(lmp_fmt_awq_pack(&q, LMP_QFMT_AWQ_GEMM, LMP_DT_F16, &p) == LMP_EUNSUPPORTED, "5-bit AWQ refused");
    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "5-bit CT packs: %s", lmp_errmsg());
    lmp_intq_config_init(&cfg, &q);
    lmp_qtensor back;
    CHECK(lmp_fmt_ct_unpack(&p, &cfg, &back) == 0 && lmp_qtensor_intgroup_equal(&q, &back, NULL, 0),
          "5-bit CT round trip");
    lmp_qtensor_free(&back);
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);
    make_random(&q, 12, 64, 4, 32, true, false, 3);
    CHECK(lmp_fmt_awq_pack(&q, LMP_QFMT_AWQ_GEMM, LMP_DT_F16, &p) == LMP_EUNSUPPORTED, "AWQ out %% 8 refused");
    lmp_qtensor_free(&q);

    /* malformed GPTQ tensors */
    make_random(&q, 32, 128, 4, 32, false, true, 4);
    CHECK(lmp_fmt_gptq_pack(&q, LMP_QFMT_GPTQ_V2, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    lmp_intq_config_init(&cfg, &q);
    lmp_tensor *tz = (lmp_tensor *)lmp_packed_linear_find(&p, "qzeros");
    tz->shape[0] = 3; /* wrong group count */
    rc = lmp_fmt_gptq_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_EFORMAT && strstr(lmp_errmsg(), "qzeros"), "bad qzeros shape: %s", lmp_errmsg());
    tz->shape[0] = 4;
    int32_t *gi = lmp_packed_linear_find(&p, "g_idx")->data;
    gi[17] = 4; /* out of range */
    rc = lmp_fmt_gptq_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_EFORMAT && strstr(lmp_errmsg(), "g_idx[17]"), "bad g_idx: %s", lmp_errmsg());
    gi[17] = 0;
    cfg.group_size = 64;
    rc = lmp_fmt_gptq_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_EFORMAT, "group_size mismatch refused: %s", lmp_errmsg());
    cfg.group_size = 32;
    lmp_tensor *ts = (lmp_tensor *)lmp_packed_linear_find(&p, "scales");
    ts->dtype = LMP_DT_I16;
    rc = lmp_fmt_gptq_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_EFORMAT && strstr(lmp_errmsg(), "scales"), "int scales refused: %s", lmp_errmsg());
    ts->dtype = LMP_DT_F16;
    /* the same tensors read as another format */
    p.format = LMP_QFMT_CT_PACKED;
    rc = lmp_qformat_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_ENOTFOUND, "gptq tensors as compressed-tensors: %s", lmp_errmsg());
    lmp_packed_linear_free(&p);

    CHECK(lmp_fmt_ct_pack(&q, LMP_QFMT_CT_PACKED, LMP_DT_F16, &p) == 0, "%s", lmp_errmsg());
    int64_t *sh = lmp_packed_linear_find(&p, "weight_shape")->data;
    sh[1] = 129;
    rc = lmp_fmt_ct_unpack(&p, &cfg, &back);
    CHECK(rc == LMP_EFORMAT, "weight_shape mismatch: %s", lmp_errmsg());
    sh[1] = 128;
    cfg.sym = true; /* config says sym but a zero point is present: data wins */
    rc = lmp_fmt_ct_unpack(&p, &cfg, &back);
    CHECK(rc == 0 && !back.ig.sym, "asym data under sym config");
    lmp_qtensor_free(&back);
    lmp_packed_linear_free(&p);
    lmp_qtensor_free(&q);
}

static void test_config_json(void)
{
    lmp_intq_config c, back;
    lmp_qformat f;
    lmp_intq_config_init(&c, NULL);
    c.bits = 3;
    c.group_size = 64;
    c.desc_act = true;
    c.sym = false;
    for (int fi = 0; fi < LMP_QFMT_COUNT; fi++) {
        lmp_intq_config cc = c;
        if (fi == LMP_QFMT_AWQ_GEMM) {
            cc.bits = 4;
            cc.desc_act = false;
        }
        cJSON *j = lmp_qformat_config_json((lmp_qformat)fi, &cc);
        CHECK(j != NULL, "config json %d", fi);
        char *s = cJSON_PrintUnformatted(j);
        int rc = lmp_qformat_config_parse(j, &f, &back);
        CHECK(rc == 0 && (int)f == fi && back.bits == cc.bits && back.group_size == cc.group_size &&
              back.sym == cc.sym && back.desc_act == cc.desc_act,
              "%s config round trip: %s (%s)", lmp_qformat_name(fi), s, lmp_errmsg());
        if (fi == LMP_QFMT_GPTQ_V2)
            CHECK(strstr(s, "\"checkpoint_format\":\"gptq_v2\"") && strstr(s, "\"damp_percent\":0.01,") &&
                  strstr(s, "\"quant_method\":\"gptq\""), "gptq json: %s", s);
        if (fi == LMP_QFMT_AWQ_GEMM)
            CHECK(strstr(s, "\"version\":\"gemm\"") && strstr(s, "\"zero_point\":true") &&
                  strstr(s, "\"modules_to_not_convert\":null"), "awq json: %s", s);
        if (fi == LMP_QFMT_CT_PACKED)
            CHECK(strstr(s, "\"format\":\"pack-quantized\"") && strstr(s, "\"ignore\":[\"lm_head\"]") &&
                  strstr(s, "\"quantization_status\":\"compressed\"") && strstr(s, "\"actorder\":\"group\"") &&
                  strstr(s, "\"strategy\":\"group\""), "ct json: %s", s);
        free(s);
        cJSON_Delete(j);
    }
    cJSON *j = cJSON_Parse("{\"quant_method\":\"bitsandbytes\"}");
    CHECK(lmp_qformat_config_parse(j, &f, &back) == LMP_EUNSUPPORTED, "bnb refused");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"awq\",\"version\":\"gemv\",\"bits\":4}");
    CHECK(lmp_qformat_config_parse(j, &f, &back) == LMP_EUNSUPPORTED, "gemv refused");
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"gptq\",\"bits\":4,\"group_size\":128}");
    CHECK(lmp_qformat_config_parse(j, &f, &back) == 0 && f == LMP_QFMT_GPTQ_V1 && back.sym,
          "gptq without checkpoint_format is v1");
    cJSON_Delete(j);
}

/* The format table (formats/fmt_table.c): complete rows, names and aliases, the messages'
 * lists, the symmetric-only fallback, the errors the reader names; the sparse table. */
static void test_table(void)
{
    char list[256];
    for (int fi = 0; fi < LMP_QFMT_COUNT; fi++) {
        const lmp_qformat_row *r = lmp_qformat_get((lmp_qformat)fi);
        CHECK(r && r->name && r->quant_method && r->required && r->required[0] && r->optional && r->skip_key &&
                  r->pack && r->unpack && r->config_json && r->config_read,
              "row %d complete", fi);
        if (!r)
            continue;
        lmp_qformat f = LMP_QFMT_COUNT;
        CHECK(lmp_qformat_by_name(r->name, &f) == 0 && (int)f == fi, "by name %s", r->name);
        for (const char *const *a = r->aliases; a && *a; a++)
            CHECK(lmp_qformat_by_name(*a, &f) == 0 && (int)f == fi, "alias %s", *a);
        CHECK(!r->asym_refusal || lmp_qformat_get(r->asym_format)->asym_refusal == NULL,
              "%s: the asymmetric fallback holds asymmetric zeros", r->name);
    }
    CHECK(lmp_qformat_get(LMP_QFMT_COUNT) == NULL && lmp_qformat_get((lmp_qformat)-1) == NULL &&
              strcmp(lmp_qformat_name(LMP_QFMT_COUNT), "?") == 0,
          "out of range");
    lmp_qformat f;
    CHECK(lmp_qformat_by_name("COMPRESSED-TENSORS", &f) == 0 && f == LMP_QFMT_CT_PACKED, "ct alias, any case");
    CHECK(lmp_qformat_by_name("gptq-v2", &f) == 0 && f == LMP_QFMT_GPTQ_V2, "gptq-v2 alias");
    CHECK(lmp_qformat_by_name("marlin", &f) == LMP_EINVAL && strstr(lmp_errmsg(), "marlin") &&
              strstr(lmp_errmsg(), "gptq, gptq_v2, awq or pack-quantized"),
          "unknown name: %s", lmp_errmsg());
    CHECK(strcmp(lmp_qformat_list(list, sizeof list, false), "gptq, gptq_v2, awq or pack-quantized") == 0,
          "names: %s", list);
    CHECK(strcmp(lmp_qformat_list(list, sizeof list, true), "gptq, awq or compressed-tensors") == 0,
          "quant_methods: %s", list);
    CHECK(strcmp(lmp_qformat_list(list, 8, false), "gptq, g") == 0, "list truncated: %s", list);
    CHECK(lmp_qformat_for_zeros(LMP_QFMT_GPTQ_V1, false) == LMP_QFMT_GPTQ_V2 &&
              lmp_qformat_for_zeros(LMP_QFMT_GPTQ_V1, true) == LMP_QFMT_GPTQ_V1 &&
              lmp_qformat_for_zeros(LMP_QFMT_CT_PACKED, false) == LMP_QFMT_CT_PACKED &&
              lmp_qformat_for_zeros(LMP_QFMT_AWQ_GEMM, false) == LMP_QFMT_AWQ_GEMM,
          "asymmetric fallback");
    lmp_intq_config c;
    cJSON *j = cJSON_Parse("{\"quant_method\":\"fp8\"}");
    CHECK(lmp_qformat_config_parse(j, &f, &c) == LMP_EUNSUPPORTED &&
              strstr(lmp_errmsg(), "\"fp8\" (expected gptq, awq or compressed-tensors)"),
          "unknown quant_method: %s", lmp_errmsg());
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"gptq\",\"checkpoint_format\":\"marlin\"}");
    CHECK(lmp_qformat_config_parse(j, &f, &c) == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "marlin"),
          "unknown GPTQ variant: %s", lmp_errmsg());
    cJSON_Delete(j);
    j = cJSON_Parse("{\"quant_method\":\"GPTQ\",\"checkpoint_format\":\"gptq_v2\",\"bits\":9}");
    CHECK(lmp_qformat_config_parse(j, &f, &c) == LMP_EUNSUPPORTED && strstr(lmp_errmsg(), "bits 9"),
          "bits range checked after the row's reader: %s", lmp_errmsg());
    cJSON_Delete(j);
    static const char *const sp[LMP_SPFMT_COUNT] = {"dense", "sparse-bitmask", "sparse-24-bitmask"};
    for (int i = 0; i < LMP_SPFMT_COUNT; i++) {
        const lmp_sparse_format_row *r = lmp_sparse_format_get((lmp_sparse_format)i);
        CHECK(r && strcmp(r->name, sp[i]) == 0 && strcmp(lmp_sparse_format_name((lmp_sparse_format)i), sp[i]) == 0 &&
                  r->compressed == (i != LMP_SPFMT_DENSE) && r->row_offsets == (i == LMP_SPFMT_BITMASK) &&
                  r->two_of_four == (i == LMP_SPFMT_24),
              "sparse row %d", i);
    }
    CHECK(lmp_sparse_format_get(LMP_SPFMT_COUNT) == NULL && strcmp(lmp_sparse_format_name(LMP_SPFMT_COUNT), "?") == 0,
          "sparse out of range");
}

int main(void)
{
    test_hand_4bit();
    test_hand_other_bits();
    test_round_trips();
    test_dequant();
    test_safetensors();
    test_refusals_and_broken();
    test_config_json();
    test_table();
    return test_finish();
}
