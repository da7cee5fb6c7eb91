/*
 * lib/core: exact f16/bf16 conversions against an independent reference formula (all
 * 65,536 values each way, every rounding midpoint, random floats through the vectorized
 * rows), the dtype table, block round trips, atomic output files, the PRNG.
 */
#include "lib/core/core.h"
#include "lib/core/blocks.h"
#include "test.h"

#include <math.h>
#include <sys/stat.h>

/* Reference decoding straight from the IEEE definition, in double. */
static double ref_f16(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 31)
        return m ? NAN : (s ? -INFINITY : INFINITY);
    v = e ? ldexp(1.0 + m / 1024.0, e - 15) : ldexp(m / 1024.0, -14);
    return s ? -v : v;
}

static double ref_bf16(uint16_t h)
{
    int s = h >> 15, e = (h >> 7) & 255, m = h & 127;
    double v;
    if (e == 255)
        return m ? NAN : (s ? -INFINITY : INFINITY);
    v = e ? ldexp(1.0 + m / 128.0, e - 127) : ldexp(m / 128.0, -126);
    return s ? -v : v;
}

/* Reference encoding: the nearest representable value by search, ties to even code. */
static uint16_t ref_to_half(double x, double (*dec)(uint16_t), uint16_t inf_code)
{
    if (isnan(x))
        return 0xffff;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    /* positive finite codes are ordered; binary search the largest code <= a */
    int lo = 0, hi = inf_code; /* dec(inf_code) = +Inf */
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (dec((uint16_t)mid) <= a)
            lo = mid;
        else
            hi = mid;
    }
    double vlo = dec((uint16_t)lo);
    if (a == vlo)
        return sign | (uint16_t)lo;
    /* above the largest finite: compare with the virtual next value */
    double vhi = hi == inf_code ? 2 * dec((uint16_t)(inf_code - 1)) - dec((uint16_t)(inf_code - 2)) : dec((uint16_t)hi);
    double mid = (vlo + vhi) / 2;
    int code = a < mid ? lo : a > mid ? hi : ((lo & 1) ? hi : lo);
    return sign | (uint16_t)code;
}

static void test_f16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmp_f16_to_f32((uint16_t)h);
        double r = ref_f16((uint16_t)h);
        if (isnan(r) ? !isnan(f) : (double)f != r || !!signbit(f) != !!signbit(r))
            bad++;
        /* round trip: every non-NaN code must come back exactly */
        if (!isnan(r) && lmp_f32_to_f16(f) != h)
            bad++;
        if (isnan(r) && !isnan(lmp_f16_to_f32(lmp_f32_to_f16(f))))
            bad++;
    }
    CHECK(bad == 0, "%d f16 decode/round-trip mismatches", bad);

    /* Every midpoint between consecutive positive codes, and a hair either side. */
    bad = 0;
    for (uint32_t h = 0; h < 0x7c00; h++) {
        double lo = ref_f16((uint16_t)h), hi = h + 1 < 0x7c00 ? ref_f16((uint16_t)(h + 1)) : 65536.0;
        double mid = (lo + hi) / 2;
        float probes[3] = {(float)mid, nextafterf((float)mid, 0), nextafterf((float)mid, INFINITY)};
        for (int k = 0; k < 3; k++) {
            if ((double)probes[k] != mid && k == 0)
                continue; /* midpoint not representable in f32 (never for f16) */
            uint16_t want = ref_to_half(probes[k], ref_f16, 0x7c00), got = lmp_f32_to_f16(probes[k]);
            if (want != got) {
                if (bad < 5)
                    fprintf(stderr, "f16 round %.9g: got %04x want %04x\n", probes[k], got, want);
                bad++;
            }
            got = lmp_f32_to_f16(-probes[k]);
            if (got != (want | 0x8000) && !(probes[k] == 0 && got == 0x8000)) {
                bad++;
            }
        }
    }
    CHECK(bad == 0, "%d f16 rounding mismatches at midpoints", bad);

    /* Random floats of every magnitude through the row (SIMD) path vs the scalar one. */
    lmp_rng r;
    lmp_rng_seed(&r, 1234);
    enum { N = 1 << 16 };
    static float src[N], back[N];
    static uint16_t h1[N];
    for (int i = 0; i < N; i++) {
        uint32_t u = (uint32_t)lmp_rng_next(&r);
        memcpy(&src[i], &u, 4);
    }
    src[0] = 65519.99f;
    src[1] = 65520.0f;
    src[2] = -0.0f;
    src[3] = 5.9604645e-08f;  /* 2^-24 */
    src[4] = 2.9802322e-08f;  /* 2^-25: ties to zero */
    src[5] = 2.9802326e-08f;  /* just above: smallest subnormal */
    lmp_f32_to_f16_row(src, h1, N);
    bad = 0;
    for (int i = 0; i < N; i++) {
        uint16_t want = ref_to_half(src[i], ref_f16, 0x7c00);
        bool nan_ok = isnan(src[i]) && (h1[i] & 0x7c00) == 0x7c00 && (h1[i] & 0x3ff);
        if (h1[i] != want && !nan_ok) {
            if (bad < 5)
                fprintf(stderr, "f16 row %.9g: got %04x want %04x\n", src[i], h1[i], want);
            bad++;
        }
        if (lmp_f32_to_f16(src[i]) != h1[i] && !nan_ok)
            bad++;
    }
    CHECK(bad == 0, "%d f16 random conversion mismatches (seed 1234)", bad);
    lmp_f16_to_f32_row(h1, back, N);
    bad = 0;
    for (int i = 0; i < N; i++) {
        float want = lmp_f16_to_f32(h1[i]);
        if (memcmp(&want, &back[i], 4) != 0 && !(isnan(want) && isnan(back[i])))
            bad++;
    }
    CHECK(bad == 0, "%d f16 row decode mismatches", bad);
}

static void test_bf16(void)
{
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = lmp_bf16_to_f32((uint16_t)h);
        double r = ref_bf16((uint16_t)h);
        if (isnan(r) ? !isnan(f) : (double)f != r || !!signbit(f) != !!signbit(r))
            bad++;
        if (!isnan(r) && lmp_f32_to_bf16(f) != h)
            bad++;
        if (isnan(r) && !isnan(lmp_bf16_to_f32(lmp_f32_to_bf16(f))))
            bad++;
    }
    CHECK(bad == 0, "%d bf16 decode/round-trip mismatches", bad);
    bad = 0;
    lmp_rng r;
    lmp_rng_seed(&r, 99);
    for (int i = 0; i < 200000; i++) {
        uint32_t u = (uint32_t)lmp_rng_next(&r);
        if (i % 4 == 0)
            u = (u & 0xffff0000u) | 0x8000u; /* exact midpoints */
        float x;
        memcpy(&x, &u, 4);
        if (isnan(x))
            continue;
        uint16_t want = ref_to_half(x, ref_bf16, 0x7f80), got = lmp_f32_to_bf16(x);
        if (want != got) {
            if (bad < 5)
                fprintf(stderr, "bf16 %.9g (%08x): got %04x want %04x\n", x, u, got, want);
            bad++;
        }
    }
    CHECK(bad == 0, "%d bf16 rounding mismatches (seed 99)", bad);
    uint16_t q = lmp_f32_to_bf16(NAN);
    CHECK((q & 0x7f80) == 0x7f80 && (q & 0x7f), "bf16 NaN stays NaN: %04x", q);
}

static void test_dtypes(void)
{
    CHECK(lmp_dtype_from_name("Q4_0") == LMP_DT_Q4_0, "q4_0 lookup");
    CHECK(lmp_dtype_from_st_name("BF16") == LMP_DT_BF16, "BF16 lookup");
    CHECK(lmp_dtype_from_ggml(8) == LMP_DT_Q8_0, "ggml 8 = q8_0");
    CHECK(lmp_dtype_from_name("nope") == -1, "unknown name");
    CHECK(lmp_dtype_row_bytes(LMP_DT_Q4_0, 64) == 36, "q4_0 row bytes");
    CHECK(lmp_dtype_row_bytes(LMP_DT_Q4_0, 33) == 0, "q4_0 partial block refused");
    CHECK(lmp_dtype_row_bytes(LMP_DT_Q6_K, 512) == 420, "q6_k row bytes");

    /* Block types: quantize-dequantize error within each format's bound. */
    lmp_rng r;
    lmp_rng_seed(&r, 7);
    enum { N = 1024 };
    float x[N], y[N];
    uint8_t buf[N * 2];
    for (int i = 0; i < N; i++)
        x[i] = lmp_rng_normal(&r);
    struct { lmp_dtype t; double levels; } cases[] = {
        {LMP_DT_Q8_0, 127}, {LMP_DT_Q4_0, 8}, {LMP_DT_Q4_1, 15}, {LMP_DT_Q5_0, 16}, {LMP_DT_Q5_1, 31}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        const lmp_dtype_traits *tr = lmp_dtype_info(cases[c].t);
        tr->from_f32(x, buf, N);
        tr->to_f32(buf, y, N);
        double worst = 0;
        for (int b = 0; b < N / 32; b++) {
            float mn = INFINITY, mx = -INFINITY;
            for (int j = 0; j < 32; j++) {
                mn = fminf(mn, x[b * 32 + j]);
                mx = fmaxf(mx, x[b * 32 + j]);
            }
            double range = cases[c].levels == 127 || cases[c].levels == 8 || cases[c].levels == 16
                               ? fmax(fabs(mn), fabs(mx)) / cases[c].levels
                               : (mx - mn) / cases[c].levels;
            for (int j = 0; j < 32; j++) {
                double e = fabs(y[b * 32 + j] - x[b * 32 + j]) / range;
                worst = fmax(worst, e);
            }
        }
        /* half a step, plus slack for the f16 scale */
        CHECK(worst <= 0.5 + 0.07 || (cases[c].t == LMP_DT_Q4_0 && worst <= 1.0 + 0.02) ||
                  (cases[c].t == LMP_DT_Q5_0 && worst <= 1.0 + 0.02),
              "%s worst error %.3f steps", tr->name, worst);
    }
    /* q4_0 by hand: block with max -8 -> d = 1, values -8..7 exact */
    float hand[32];
    for (int j = 0; j < 32; j++)
        hand[j] = (float)(j % 16) - 8;
    lmp_block_q4_0 blk;
    lmp_dtype_info(LMP_DT_Q4_0)->from_f32(hand, &blk, 32);
    CHECK(lmp_f16_to_f32(blk.d) == 1.0f, "q4_0 d = %g", lmp_f16_to_f32(blk.d));
    CHECK(blk.qs[0] == 0x00 && blk.qs[15] == 0xff, "q4_0 nibbles %02x %02x", blk.qs[0], blk.qs[15]);
}

/* The dtype table is complete without any initialization call: every row named, sized,
 * findable by name and GGUF id, and every block type has both row codecs (this binary
 * calls nothing in lib/quant; before issue 14 the k-quant and low-bit rows stayed empty
 * here until lmp_quant_init ran). Each block type round-trips a smooth row to within a
 * coarse bound, so a row bound to another type's codecs is caught too. */
static void test_dtype_table(void)
{
    CHECK(lmp_dtype_info(LMP_DT_COUNT) == NULL && lmp_dtype_info((lmp_dtype)-1) == NULL,
          "out-of-range dtypes have no row");
    enum { N = 512 };
    float x[N], y[N];
    static uint8_t buf[N * 8];
    for (int i = 0; i < N; i++)
        x[i] = sinf(0.37f * (float)i) + 0.25f * cosf(0.11f * (float)i);
    int nquant = 0;
    for (int t = 0; t < LMP_DT_COUNT; t++) {
        const lmp_dtype_traits *tr = lmp_dtype_info((lmp_dtype)t);
        CHECK(tr && tr->name && tr->block_size > 0 && tr->type_size > 0, "dtype %d: empty row", t);
        if (!tr || !tr->name)
            continue;
        CHECK(lmp_dtype_from_name(tr->name) == t, "%s: found by name as %d", tr->name,
              lmp_dtype_from_name(tr->name));
        CHECK(tr->ggml_type < 0 || lmp_dtype_from_ggml(tr->ggml_type) == t,
              "%s: ggml type %d maps to %d", tr->name, tr->ggml_type, lmp_dtype_from_ggml(tr->ggml_type));
        CHECK(tr->to_f32 != NULL, "%s: no to_f32", tr->name);
        if (!tr->is_quant)
            continue;
        nquant++;
        CHECK(tr->from_f32 != NULL && N % tr->block_size == 0 &&
                  lmp_dtype_row_bytes((lmp_dtype)t, N) <= sizeof buf,
              "%s: block type without a quantizer or too large a block", tr->name);
        if (!tr->from_f32 || !tr->to_f32)
            continue;
        tr->from_f32(x, buf, N);
        tr->to_f32(buf, y, N);
        double e = 0, s2 = 0;
        for (int i = 0; i < N; i++) {
            e += (double)(y[i] - x[i]) * (y[i] - x[i]);
            s2 += (double)x[i] * x[i];
        }
        /* the 1-bit and ternary types are coarse; 0.9 still tells a decoder from noise */
        CHECK(sqrt(e / s2) < 0.9, "%s: relative rms error %.3f after a round trip", tr->name,
              sqrt(e / s2));
    }
    CHECK(nquant == LMP_DT_COUNT - LMP_DT_Q4_0, "%d block types with codecs", nquant);
}

static void test_outfile(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/out.bin", tmpdir());
    lmp_outfile o;
    CHECK(lmp_outfile_open(&o, path, false) == 0, "open: %s", lmp_errmsg());
    lmp_outfile_write(&o, "abc", 3);
    CHECK(!lmp_path_exists(path), "not visible before commit");
    CHECK(lmp_outfile_commit(&o) == 0, "commit");
    CHECK(lmp_path_exists(path), "visible after commit");
    CHECK(lmp_outfile_open(&o, path, false) == LMP_EEXIST, "existing output refused");
    CHECK(strstr(lmp_errmsg(), path) != NULL, "message names the file: %s", lmp_errmsg());
    CHECK(lmp_outfile_open(&o, path, true) == 0, "force");
    lmp_outfile_write(&o, "xy", 2);
    lmp_outfile_abort(&o);
    char *txt;
    size_t len;
    CHECK(lmp_read_file(path, &txt, &len) == 0 && len == 3 && memcmp(txt, "abc", 3) == 0,
          "abort leaves the old file intact");
    free(txt);
}

/* lib/core/safeout.c: inputs never overwritten, folders replaced only when ours, one
 * writer per output, printable messages. */
static void test_safeout(void)
{
    char in[512], dir[512], other[512], sub[600];
    snprintf(in, sizeof in, "%s/input.txt", tmpdir());
    snprintf(dir, sizeof dir, "%s/infolder", tmpdir());
    snprintf(other, sizeof other, "%s/foreign", tmpdir());
    FILE *f = fopen(in, "w"); /* not through lmpress: what it wrote itself is no input */
    if (f) {
        fputs("precious\n", f);
        fclose(f);
    }
    char *txt = NULL;
    size_t n = 0;
    CHECK(lmp_read_file(in, &txt, &n) == 0, "read input"); /* notes it as an input */
    free(txt);
    lmp_outfile o;
    CHECK(lmp_outfile_open(&o, in, true) == LMP_EINVAL && strstr(lmp_errmsg(), "is the input"),
          "--force onto an input refused: %s", lmp_errmsg());
    /* an input folder: outputs inside it and the folder itself are refused */
    mkdir(dir, 0755);
    lmp_input_note(dir);
    snprintf(sub, sizeof sub, "%s/new.bin", dir);
    CHECK(lmp_outfile_open(&o, sub, false) == LMP_EINVAL && strstr(lmp_errmsg(), "inside the input folder"),
          "output inside an input folder refused: %s", lmp_errmsg());
    char *tmp = NULL;
    CHECK(lmp_dir_begin(dir, true, &tmp) == LMP_EINVAL, "input folder as output refused: %s", lmp_errmsg());
    /* a folder lmpress did not write */
    mkdir(other, 0755);
    snprintf(sub, sizeof sub, "%s/notes.txt", other);
    lmp_write_text(sub, "mine");
    CHECK(lmp_dir_begin(other, true, &tmp) == LMP_EEXIST && strstr(lmp_errmsg(), "not written by lmpress"),
          "foreign folder refused: %s", lmp_errmsg());
    CHECK(lmp_path_exists(sub), "foreign folder kept");
    /* ours: written by lmp_dir_commit (marker), then replaced with --force */
    snprintf(sub, sizeof sub, "%s/ours", tmpdir());
    int rc = lmp_dir_begin(sub, false, &tmp);
    CHECK(rc == 0 && lmp_dir_commit(tmp, sub) == 0, "write a folder: %s", lmp_errmsg());
    free(tmp);
    rc = lmp_dir_begin(sub, true, &tmp);
    CHECK(rc == 0, "--force replaces a folder lmpress wrote: %s", lmp_errmsg());
    /* one writer at a time: a second lock on the same output is refused */
    char out[600];
    snprintf(out, sizeof out, "%s/locked.bin", tmpdir());
    int fd1 = -1, fd2 = -1;
    CHECK(lmp_output_lock(out, &fd1) == 0, "first lock: %s", lmp_errmsg());
    CHECK(lmp_output_lock(out, &fd2) == LMP_EEXIST && strstr(lmp_errmsg(), "another lmpress process"),
          "second writer refused: %s", lmp_errmsg());
    lmp_output_unlock(out, fd1);
    CHECK(lmp_output_lock(out, &fd2) == 0, "lock again once released: %s", lmp_errmsg());
    lmp_output_unlock(out, fd2);
    if (rc == 0) {
        lmp_dir_remove(tmp);
        free(tmp);
    }
    /* messages are printable UTF-8 */
    lmp_err(LMP_EFORMAT, "name \xff\x1b[31m end");
    CHECK(strcmp(lmp_errmsg(), "name \\xff\\x1b[31m end") == 0, "escaped: %s", lmp_errmsg());
    CHECK(lmp_utf8_valid("h\xc3\xa9", 3) && !lmp_utf8_valid("a\0b", 3) && !lmp_utf8_valid("\xed\xa0\x80", 3),
          "utf8 validity");
}

static void test_rng(void)
{
    lmp_rng a, b;
    lmp_rng_seed(&a, 42);
    lmp_rng_seed(&b, 42);
    int same = 1;
    for (int i = 0; i < 100; i++)
        same &= lmp_rng_next(&a) == lmp_rng_next(&b);
    CHECK(same, "rng deterministic for a seed");
    double s = 0, s2 = 0;
    for (int i = 0; i < 100000; i++) {
        double v = lmp_rng_normal(&a);
        s += v;
        s2 += v * v;
    }
    CHECK(fabs(s / 1e5) < 0.02 && fabs(s2 / 1e5 - 1) < 0.03, "normal moments %g %g", s / 1e5, s2 / 1e5);
}

int main(void)
{
    test_f16();
    test_bf16();
    test_dtypes();
    test_dtype_table();
    test_outfile();
    test_safeout();
    test_rng();
    return test_finish();
}
