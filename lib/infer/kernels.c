/*
 * Kernel driver, the only one: variant selection (ref / AVX2 / AVX-512, chosen once,
 * LMP_ISA overrides) and the threading and cache blocking of lmp_gemm and lmp_gemv_team,
 * for every weight kind (dense, GGUF blocks, the interleaved q4_0 layout, intgroup). The
 * arithmetic lives in the leaves (kernels_ref.c, kernels_avx2.c, kernels_avx512*.c,
 * kernels_lowbit.c, kernels_repack.c, kernels_intgroup.c), which fill the variants'
 * tables through g_leaves below and never call back; this file only decides which rows
 * of W and X each thread touches, and in which order. Intgroup weights take the same
 * paths with the variant's strip decoder (ig_deq) in place of a dtype's to_f32 and its
 * fused rows (ig_rows) in place of dot/dotn.
 *
 * Two regimes:
 *  - M < LMP_K_SMALL_M (decoding, M == 1, small batches): memory bound. Each thread
 *    takes a contiguous range of W rows and streams each row once through the variant's
 *    fused dequantize-and-dot, four rows of X at a time (X stays in cache).
 *  - M >= LMP_K_SMALL_M (prompt processing): compute bound, Goto/BLIS-style blocking.
 *    X is packed once per call (all threads) into row tiles of mr rows, k-major, laid
 *    out by K block of LMP_K_KC then tile, so one K block of up to 512 rows is contiguous
 *    and stays in L2. W is cut into strips of nr rows; per K block a strip is
 *    dequantized to f32 and packed k-major into a per-thread buffer (KC x nr floats,
 *    never a full f32 copy of W) and every row tile of X streams past it through the
 *    variant's mr x nr register tile (outer-product FMAs: 12 x 32 on AVX-512, 6 x 16 on
 *    AVX2). From 128 rows of X per thread (LMP_K_OWN_ROWS) each thread packs its own row
 *    tiles and multiplies them by every strip, so X and Y stay on its core; below that
 *    (strip, row block) tasks are handed out dynamically in groups of 128 output
 *    columns. K blocks outermost within a group either way; on a busy machine a thread
 *    the OS delays leaves its units to the others.
 *    Measured on the 2-core Zen 4 dev VM (one thread, M = 512): 91-101 GFLOP/s for every
 *    dtype, within 0-8% of OpenBLAS sgemm on the same f32 shapes.
 * Rounded activations (kernels.h: lmp_gemm_set_exact; lmp_k_act picks the format per
 * dtype). bf16 weights: X rounded to bf16, products with vdpbf16ps (AVX512-BF16) in a
 * 12 x 32 tile over pairs of k; q8_0/q4_0/q5_0 weights: X quantized per block of 32 to
 * int8 + f32 scale, integer dots with vpdpbusd (AVX512-VNNI) in a 12 x 16 tile whose
 * panels hold the weights as signed bytes (kernels_avx512_act.c). Measured on the Zen 4
 * dev VM, one thread, M = 512: bf16 ~180-200 GFLOP/s and q8_0/q4_0 ~250-310 against
 * ~95 for the f32 panels. X is converted once per call (packed tiles for M >= 16,
 * converted rows for the streaming path), and the reference rounds identically, so the
 * variants agree to f32 accumulation order. A variant without a tile of the format runs
 * the f32 panels on the rounded X (same values). IQ4_XS, IQ3_S and IQ2_XS weights: X
 * quantized per super-block of 256 (LMP_ACT_Q8K, one scale per 256 values), so their dots
 * sum each super-block in integers and take one float step per 256 values (the batched
 * path: f32 panels on that rounded X). f16 weights: X rounded to f16 on the
 * streaming path only (M < LMP_K_SMALL_M; lmp_k_act_m), the batched one keeps f32 X and
 * panels; decoding then reads half the bytes of X (a 5632-wide f32 row and the streamed
 * weight rows overflow the 32 KiB L1: ~16 GB/s a core against ~28 with the f16 row).
 * q4_K likewise rounds X (to Q8, with its integer dot where the variant has one) on the
 * streaming path only.
 * Other dtypes (f32, q4_1, q5_1, k-quants but q6_K) keep f32 activations and f32 panels
 * (dequantized once per KC x nr panel and shared by up to 512 rows of X).
 * M == 1 (decoding): rows in fixed groups of four through a four-row kernel (dot4 /
 * dotq4) that shares the horizontal sums, in work shares (lmp_k_share: each thread's
 * contiguous share first, then the rest of the others'; q4_0 and iq4_nl repacked
 * into the interleaved layout, kernels.h LMP_WL_Q4_0X16: groups of 16 rows through
 * gemv_q4x16 / gemv_iq4nlx16, one result per lane; the other paths read its rows back);
 * matrices under LMP_K_PAR_MIN_BYTES (env LMP_GEMM_PAR_MIN) run on the calling thread (no fork/join).
 * Batched path: the next weight panel is prefetched
 * into L2 while the current one is multiplied (the weights come from DRAM once per
 * call; without it the panel decode was ~10% of a pp512 profile).
 *
 * Determinism: threads split only output columns (W strips) and row tiles of X, never
 * the K reduction; every element is bias + (sum over K block 0) + (sum over block 1) ...
 * in the same order whatever the split, so results are bitwise identical for any thread
 * count.
 */
#include "kernels_internal.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Below this many rows of X the row-streaming path wins (measured on Zen 4, 2048x2048:
 * decoding each weight once for 4 rows of X beats packing panels for a 12-row tile up to
 * M = 16; from M = 24 on the tiled path is faster). */
#define LMP_K_SMALL_M 16
/* Rows of X sharing one packed W panel: 512 x KC floats = 512 KiB stays in L2. */
#define LMP_K_MB_ROWS 512
/* Output columns a thread finishes before moving on (Y: 512 x 128 floats = 256 KiB). */
#define LMP_K_GROUP_COLS 128
/* Rows of X per thread from which each thread multiplies its own rows by all of W rather
 * than the threads sharing rows and splitting W. The two vCPUs of the benchmark VM sit on
 * one CCD at times and on two at others (a cache line handed between them: ~40 vs
 * ~180 ns); on two, every line of packed X or Y that one thread writes and the other reads
 * crosses the fabric, and pp512 fell by a quarter (smollm2 f32: 510 vs 685 t/s). Own rows
 * keep X, Y and the rows of the element-wise steps around the product on one core; each
 * thread then packs every W panel, which 128 rows amortize (own rows: 635 and 715 t/s in
 * the two states). */
#define LMP_K_OWN_ROWS 128

static int64_t g_small_m = LMP_K_SMALL_M; /* LMP_GEMM_SMALL_M overrides (tuning) */
static int64_t g_own_rows = LMP_K_OWN_ROWS; /* LMP_GEMM_OWN_ROWS overrides (tuning, tests) */
/* Weight bytes below which the streaming path runs on the calling thread alone: a
 * fork/join costs about what streaming this much takes (~20 GB/s per core), and a
 * region the busy machine's scheduler delays costs far more. */
#define LMP_K_PAR_MIN_BYTES (64 * 1024)
static size_t g_par_min = LMP_K_PAR_MIN_BYTES; /* LMP_GEMM_PAR_MIN overrides (tuning) */
static lmp_kimpl g_impl[4];
static bool g_avail[4];
static const lmp_kimpl *g_cur;
static lmp_isa g_cur_isa;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static lmp_isa best_isa(void)
{
    return g_avail[LMP_ISA_AVX512] ? LMP_ISA_AVX512
           : g_avail[LMP_ISA_AVX2] ? LMP_ISA_AVX2
                                   : LMP_ISA_REF;
}

static void select_isa(lmp_isa isa)
{
    if (isa == LMP_ISA_AUTO || isa < 0 || isa > LMP_ISA_AVX512)
        isa = best_isa();
    while (!g_avail[isa]) /* a variant this CPU lacks falls back to the next simpler one */
        isa--;
    g_cur_isa = isa;
    g_cur = &g_impl[isa];
}

/* ---------------------------------------------------------------- the variant table */

#if defined(__x86_64__)
static bool cpu_vnni(void)
{
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi");
}
static bool cpu_bf16(void) { return __builtin_cpu_supports("avx512bf16"); }
#endif

/* Every leaf's fill function (kernels_internal.h), by variant, in the order applied: a
 * variant starts as a copy of the next simpler one (ref from zero) and its rows run top
 * to bottom, a later row overriding what an earlier one set. `has`: a CPU extension the
 * row needs beyond its variant's (NULL: none); a row whose test fails is skipped. A new
 * leaf is one row here plus its declaration in kernels_internal.h. */
typedef struct {
    lmp_isa isa;
    bool (*has)(void);
    void (*fill)(lmp_kimpl *k);
} kleaf;

static const kleaf g_leaves[] = {
    {LMP_ISA_REF, NULL, lmp_kimpl_fill_ref},
    {LMP_ISA_REF, NULL, lmp_kimpl_fill_lowbit_ref},
    {LMP_ISA_REF, NULL, lmp_kimpl_fill_lowbit_q8_ref},
    {LMP_ISA_REF, NULL, lmp_kimpl_fill_repack_ref},
    {LMP_ISA_REF, NULL, lmp_kimpl_fill_intgroup_ref},
#if defined(__x86_64__)
    {LMP_ISA_AVX2, NULL, lmp_kimpl_fill_avx2},
    {LMP_ISA_AVX2, NULL, lmp_kimpl_fill_lowbit_avx2},
    {LMP_ISA_AVX2, NULL, lmp_kimpl_fill_lowbit_q8_avx2},
    {LMP_ISA_AVX512, NULL, lmp_kimpl_fill_avx512},
    {LMP_ISA_AVX512, NULL, lmp_kimpl_fill_avx512_kq},
    {LMP_ISA_AVX512, cpu_vnni, lmp_kimpl_fill_avx512_vnni},
    {LMP_ISA_AVX512, cpu_vnni, lmp_kimpl_fill_lowbit_avx512_vnni},
    {LMP_ISA_AVX512, cpu_vnni, lmp_kimpl_fill_lowbit_q8_avx512},
    {LMP_ISA_AVX512, cpu_bf16, lmp_kimpl_fill_avx512_bf16},
#endif
};

static void init_once(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    g_avail[LMP_ISA_AVX2] = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                            __builtin_cpu_supports("f16c");
    g_avail[LMP_ISA_AVX512] = g_avail[LMP_ISA_AVX2] && __builtin_cpu_supports("avx512f") &&
                              __builtin_cpu_supports("avx512bw") &&
                              __builtin_cpu_supports("avx512vl") &&
                              __builtin_cpu_supports("avx512dq");
#endif
    g_avail[LMP_ISA_REF] = true;
    for (int isa = LMP_ISA_REF; isa <= LMP_ISA_AVX512; isa++) {
        if (isa > LMP_ISA_REF)
            g_impl[isa] = g_impl[isa - 1];
        for (size_t i = 0; i < sizeof g_leaves / sizeof g_leaves[0]; i++)
            if (g_leaves[i].isa == (lmp_isa)isa && (!g_leaves[i].has || g_leaves[i].has()))
                g_leaves[i].fill(&g_impl[isa]);
    }
    const char *pm = getenv("LMP_GEMM_PAR_MIN");
    if (pm && *pm)
        g_par_min = (size_t)strtoull(pm, NULL, 10);
    const char *orows = getenv("LMP_GEMM_OWN_ROWS");
    if (orows && *orows)
        g_own_rows = strtol(orows, NULL, 10);
    const char *sm = getenv("LMP_GEMM_SMALL_M");
    if (sm && *sm)
        g_small_m = strtol(sm, NULL, 10);
    lmp_isa isa = LMP_ISA_AUTO;
    const char *e = getenv("LMP_ISA");
    if (e && *e) {
        if (!strcmp(e, "ref"))
            isa = LMP_ISA_REF;
        else if (!strcmp(e, "avx2"))
            isa = LMP_ISA_AVX2;
        else if (!strcmp(e, "avx512"))
            isa = LMP_ISA_AVX512;
        else if (strcmp(e, "auto"))
            lmp_warn("LMP_ISA=%s: expected ref, avx2, avx512 or auto; using auto", e);
    }
    select_isa(isa);
}

static inline const lmp_kimpl *impl(void)
{
    pthread_once(&g_once, init_once);
    return g_cur;
}

lmp_isa lmp_kernels_set_isa(lmp_isa isa)
{
    pthread_once(&g_once, init_once);
    select_isa(isa);
    return g_cur_isa;
}

const lmp_kimpl *lmp_k_impl(lmp_isa isa)
{
    pthread_once(&g_once, init_once);
    return isa > LMP_ISA_AUTO && isa <= LMP_ISA_AVX512 && g_avail[isa] ? &g_impl[isa] : NULL;
}

lmp_isa lmp_kernels_isa(void)
{
    pthread_once(&g_once, init_once);
    return g_cur_isa;
}

const char *lmp_isa_name(lmp_isa isa)
{
    switch (isa) {
    case LMP_ISA_AUTO: return "auto";
    case LMP_ISA_REF: return "ref";
    case LMP_ISA_AVX2: return "avx2";
    case LMP_ISA_AVX512: return "avx512";
    }
    return "?";
}

bool lmp_gemm_supports(lmp_dtype dt)
{
    if ((int)dt < 0 || dt >= LMP_DT_COUNT)
        return false;
    const lmp_dtype_traits *t = lmp_dtype_info(dt);
    return t && t->to_f32 && (t->is_float || t->is_quant) && impl()->dt[dt].dot;
}

/* ---------------------------------------------------------------- gemm */

static int g_exact = -1; /* -1: not decided yet (LMP_GEMM_EXACT env) */

void lmp_gemm_set_exact(bool exact) { g_exact = exact; }

bool lmp_gemm_exact(void)
{
    if (g_exact < 0) {
        const char *e = getenv("LMP_GEMM_EXACT");
        g_exact = e && *e && strcmp(e, "0") != 0;
    }
    return g_exact;
}

lmp_act lmp_k_act(lmp_dtype dt)
{
    if (lmp_gemm_exact() || (int)dt < 0 || dt >= LMP_DT_COUNT || !impl()->dt[dt].dotq)
        return LMP_ACT_F32;
    return dt == LMP_DT_BF16 ? LMP_ACT_BF16
           : dt == LMP_DT_F16 ? LMP_ACT_F16
           : impl()->dt[dt].q8k ? LMP_ACT_Q8K
                                : LMP_ACT_Q8;
}

lmp_act lmp_k_act_m(lmp_dtype dt, int64_t M)
{
    const lmp_act act = lmp_k_act(dt);
    /* f16 and q4_K round X only where they stream the weights: the batched path's f32
     * panels gain nothing from it and would pay a pass over X (q4_K: 8% of qwen3-0.6b's
     * pp512; its batched sums stay those of f32 activations, as before its integer dot) */
    return (act == LMP_ACT_F16 || (act == LMP_ACT_Q8 && dt == LMP_DT_Q4_K)) && impl()->ukr &&
                   M >= g_small_m
               ? LMP_ACT_F32
               : act;
}

/* Bytes of one row of K elements in an activation format. */
static size_t act_row_bytes(lmp_act act, int64_t K)
{
    size_t b = act == LMP_ACT_Q8                             ? LMP_XQ8_BYTES(K)
               : act == LMP_ACT_Q8K                          ? LMP_XQ8K_BYTES(K)
               : act == LMP_ACT_BF16 || act == LMP_ACT_F16 ? 2 * (size_t)K
                                                             : 4 * (size_t)K;
    return (b + 63) & ~(size_t)63;
}

/* Per-calling-thread scratch, grown on demand and reused across calls: [0] packed X
 * tiles or converted rows of X, [1] X rounded to the activation format as f32. */
static _Thread_local void *tl_buf[2];
static _Thread_local size_t tl_cap[2];

static void *scratch(int i, size_t bytes)
{
    if (bytes > tl_cap[i]) {
        free(tl_buf[i]);
        bytes = (bytes + 63) & ~(size_t)63;
        tl_buf[i] = aligned_alloc(64, bytes);
        tl_cap[i] = tl_buf[i] ? bytes : 0;
    }
    return tl_buf[i];
}

void lmp_kernels_scratch_free(void)
{
    for (int i = 0; i < 2; i++) {
        free(tl_buf[i]);
        tl_buf[i] = NULL;
        tl_cap[i] = 0;
    }
}

/* Row r of X in activation format act (xa[r * rb ...]). Nonzero when the format cannot
 * hold X (f16: a finite value overflowed): the caller then uses f32 activations. */
static int convert_rows(const lmp_kimpl *k, lmp_act act, const float *X, int64_t M, int64_t K,
                        void *xa, size_t rb)
{
    int over = 0;
    for (int64_t m = 0; m < M; m++) {
        void *dst = (uint8_t *)xa + (size_t)m * rb;
        if (act == LMP_ACT_Q8)
            k->quant_q8(X + m * K, K, dst);
        else if (act == LMP_ACT_Q8K)
            k->quant_q8k(X + m * K, K, dst);
        else if (act == LMP_ACT_BF16)
            k->to_bf16(X + m * K, K, dst);
        else
            over |= k->to_f16(X + m * K, K, dst);
    }
    return over;
}


/* Rows 16g..16g+15 of an LMP_WL_Q4_0X16 weight against one row of X: o[r] = dot. The
 * interleaved kernel on the converted row xa; without one (f32 activations: exact mode
 * switched on after the weights were repacked) each row is read back into row layout
 * and dotted by the row kernel. */
static void x16_group(const lmp_wmat *W, const lmp_kimpl *k, int64_t g, const float *x,
                      const void *xa, float o[16])
{
    const int64_t K = W->cols;
    if (xa) {
        const uint8_t *grp = (const uint8_t *)W->data + (size_t)g * 16 * W->row_bytes;
        if (W->dtype == LMP_DT_IQ4_NL)
            k->gemv_iq4nlx16(grp, xa, K, o);
        else
            k->gemv_q4x16(grp, xa, K, o);
        return;
    }
    void *row = malloc(W->row_bytes);
    for (int r = 0; r < 16; r++) {
        if (!row) {
            o[r] = NAN; /* out of memory: visible, never silent */
            continue;
        }
        lmp_k_x16_rows(W, 16 * g + r, 1, 0, K / 32, row);
        o[r] = k->dt[W->dtype].dot(row, x, K);
    }
    free(row);
}

/* Group g of a one-row product on an interleaved weight: Y[n] = dot + bias[n], or
 * Y[n] += that when acc (as row_task). */
static inline void x16_task(float *Y, const float *X, const void *xa, const lmp_wmat *W,
                            const float *bias, const lmp_kimpl *k, int64_t g, bool acc)
{
    float o[16];
    x16_group(W, k, g, X, xa, o);
    for (int r = 0; r < 16; r++) {
        const int64_t n = 16 * g + r;
        const float v = o[r] + (bias ? bias[n] : 0.0f);
        Y[n] = acc ? Y[n] + v : v;
    }
}

/* ---------------------------------------------------------------- work shares */

/* Slots before any call: every slot on call 0, nothing claimed. */
static void slots_init(lmp_k_slot *s, int n)
{
    for (int i = 0; i < n; i++) {
        atomic_init(&s[i].next, 0);
        s[i].calls = 0;
    }
}

lmp_team *lmp_team_new(int n)
{
    lmp_team *t = malloc(sizeof *t);
    if (n < 1)
        n = 1;
    lmp_k_slot *s = t ? aligned_alloc(64, sizeof(lmp_k_slot) * (size_t)n) : NULL;
    if (!s) {
        free(t);
        return NULL;
    }
    slots_init(s, n);
    t->n = n;
    t->slot = s;
    return t;
}

void lmp_team_free(lmp_team *t)
{
    if (t)
        free(t->slot);
    free(t);
}

int64_t lmp_k_claim(lmp_k_slot *s, uint64_t c, int64_t units, bool owner)
{
    uint64_t v = atomic_load_explicit(&s->next, memory_order_relaxed);
    for (;;) {
        const uint64_t seq = v >> 32;
        int64_t idx = (int64_t)(v & 0xffffffffu);
        uint64_t want;
        if (seq < c && owner && units > 0)
            want = (c << 32) | 1, idx = 0; /* opens call c, claiming unit 0 */
        else if (seq == c && idx < units)
            want = v + 1;
        else
            return -1;
        if (atomic_compare_exchange_weak_explicit(&s->next, &v, want, memory_order_relaxed,
                                                  memory_order_relaxed))
            return idx;
    }
}

void lmp_k_share(lmp_team *team, int64_t ntask, int64_t unit, lmp_k_range_fn fn, void *ctx)
{
    const int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    if (unit < 1)
        unit = 1;
    if (!team || nt == 1 || team->n < nt) {
        const int64_t lo = ntask * tid / nt, hi = ntask * (tid + 1) / nt;
        for (int64_t a = lo; a < hi; a += unit)
            fn(ctx, a, a + unit < hi ? a + unit : hi);
        return;
    }
    const uint64_t c = ++team->slot[tid].calls;
    for (int i = 0; i < nt; i++) {
        const int o = (tid + i) % nt;
        const int64_t lo = ntask * o / nt, hi = ntask * (o + 1) / nt;
        const int64_t units = (hi - lo + unit - 1) / unit;
        for (int64_t u; (u = lmp_k_claim(&team->slot[o], c, units, o == tid)) >= 0;)
            fn(ctx, lo + u * unit, lo + (u + 1) * unit < hi ? lo + (u + 1) * unit : hi);
    }
}

/* lmp_k_share in a parallel region of its own (par false: the calling thread alone),
 * with a team on the stack. */
static void share_region(bool par, int64_t ntask, int64_t unit, lmp_k_range_fn fn, void *ctx)
{
    const int nth = omp_get_max_threads() > 0 ? omp_get_max_threads() : 1;
    lmp_k_slot slot[nth];
    slots_init(slot, nth);
    lmp_team team = {nth, slot};
#pragma omp parallel if (par)
    lmp_k_share(&team, ntask, unit, fn, ctx);
}

/* Tasks of a unit: about this many bytes of weights (a claim costs tens of cycles, a unit
 * streams for about a microsecond). */
#define LMP_K_UNIT_BYTES 32768

static inline int64_t unit_tasks(size_t task_bytes)
{
    return task_bytes >= LMP_K_UNIT_BYTES ? 1 : (int64_t)(LMP_K_UNIT_BYTES / (task_bytes ? task_bytes : 1));
}

/* Bytes of one weight row as stored (intgroup: its codes). */
static inline size_t wrow_bytes(const lmp_wmat *W)
{
    return W->q ? (size_t)W->q->ig.row_bytes : W->row_bytes;
}

/* A streaming product's operands, for the units of lmp_k_share. */
typedef struct {
    float *Y;
    const float *X, *bias;
    const void *xa; /* converted rows of X, xrb bytes apart, or NULL: f32 X */
    size_t xrb;
    const lmp_wmat *W;
    const lmp_kimpl *k;
    const lmp_kdt *d;
    int64_t M, ng; /* ng: four-row tasks before the single rows (row layout) */
    bool acc;
} stream;

static void x16_range(void *ctx, int64_t lo, int64_t hi)
{
    const stream *s = ctx;
    const int64_t K = s->W->cols, N = s->W->rows;
    for (int64_t g = lo; g < hi; g++)
        for (int64_t m = 0; m < s->M; m++)
            x16_task(s->Y + m * N, s->X ? s->X + m * K : NULL,
                     s->xa ? (const uint8_t *)s->xa + (size_t)m * s->xrb : NULL, s->W, s->bias,
                     s->k, g, s->acc);
}

/* The streaming path (M < LMP_K_SMALL_M) on an interleaved weight: X as f32 rows, or
 * converted rows xa (xrb bytes apart) when xa != NULL. Groups of 16 rows in work shares;
 * each group's arithmetic is fixed, so any thread count gives the same bits. */
static void gemm_x16(float *Y, const float *X, const void *xa, size_t xrb, const lmp_wmat *W,
                     const float *bias, int64_t M, const lmp_kimpl *k)
{
    const int64_t N = W->rows;
    stream s = {.Y = Y, .X = X, .bias = bias, .xa = xa, .xrb = xrb, .W = W, .k = k, .M = M};
    share_region((size_t)N * W->row_bytes * M >= g_par_min, N / 16,
                 unit_tasks(16 * W->row_bytes), x16_range, &s);
}

/* Task g of a one-row product: rows 4g..4g+3 through the four-row kernel when g < ng,
 * else row 4ng + (g - ng) alone. xa: the converted row (dotq4 / dotq), or NULL for the
 * f32 row X (dot4 / dot). Y[n] = dot + bias[n], or Y[n] += that when acc. */
static inline void row_task(float *Y, const float *X, const void *xa, const lmp_wmat *W,
                            const float *bias, const lmp_kdt *d, int64_t ng, int64_t g, bool acc)
{
    const int64_t K = W->cols;
    const size_t rb = W->row_bytes;
    const uint8_t *w = W->data;
    if (g < ng) {
        float o[4];
        const uint8_t *row = w + (size_t)(4 * g) * rb;
        if (xa)
            d->dotq4(row, rb, xa, K, o);
        else
            d->dot4(row, rb, X, K, o);
        for (int r = 0; r < 4; r++) {
            const float v = o[r] + (bias ? bias[4 * g + r] : 0.0f);
            Y[4 * g + r] = acc ? Y[4 * g + r] + v : v;
        }
    } else {
        const int64_t n = 4 * ng + (g - ng);
        const void *row = w + (size_t)n * rb;
        const float v = (xa ? d->dotq(row, xa, K) : d->dot(row, X, K)) + (bias ? bias[n] : 0.0f);
        Y[n] = acc ? Y[n] + v : v;
    }
}

/* Rows [lo, hi) of a one-row intgroup product (the arithmetic of gemm_rows, M == 1). */
static void ig_range(void *ctx, int64_t lo, int64_t hi)
{
    const stream *s = ctx;
    for (int64_t n = lo; n < hi; n++) {
        float out[4];
        s->k->ig_rows(s->W->q, n, s->X, s->W->cols, 1, out);
        const float v = out[0] + (s->bias ? s->bias[n] : 0.0f);
        s->Y[n] = s->acc ? s->Y[n] + v : v;
    }
}

static void rows4_range(void *ctx, int64_t lo, int64_t hi)
{
    const stream *s = ctx;
    for (int64_t g = lo; g < hi; g++)
        row_task(s->Y, s->X, s->xa, s->W, s->bias, s->d, s->ng, g, s->acc);
}

/* M == 1 with a four-row kernel: rows in fixed groups of four (the last N % 4 rows one
 * at a time), so each row's arithmetic is the same for any thread count. xa: the
 * converted row when act (dotq4 / dotq), else X (dot4 / dot). Work shares: a thread the
 * OS delays (a busy machine) leaves the rest of its share to the others. */
static void gemm_rows4(float *Y, const float *X, const void *xa, const lmp_wmat *W,
                       const float *bias, const lmp_kdt *d)
{
    const int64_t N = W->rows, ng = N / 4, ntask = ng + N % 4;
    const size_t rb = W->row_bytes;
    stream s = {.Y = Y, .X = X, .bias = bias, .xa = xa, .W = W, .d = d, .M = 1, .ng = ng};
    share_region((size_t)N * rb >= g_par_min, ntask, unit_tasks(4 * rb), rows4_range, &s);
}

static void gemm_rows(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                      int64_t M, const lmp_kimpl *k, const lmp_kdt *d)
{
    const int64_t N = W->rows, K = W->cols;
    const uint8_t *w = W->data;
    const size_t rb = wrow_bytes(W);
    if (W->q) {
        /* intgroup: the variant's fused rows, each weight row decoded once for up to four
         * rows of X */
#pragma omp parallel for schedule(static) if ((size_t)N * rb * M >= g_par_min)
        for (int64_t n = 0; n < N; n++) {
            const float b = bias ? bias[n] : 0.0f;
            for (int64_t m = 0; m < M; m += 4) {
                float out[4];
                const int nx = (int)(M - m < 4 ? M - m : 4);
                k->ig_rows(W->q, n, X + m * K, K, nx, out);
                for (int r = 0; r < nx; r++)
                    Y[(m + r) * N + n] = out[r] + b;
            }
        }
        return;
    }
    if (W->layout == LMP_WL_Q4_0X16) {
        gemm_x16(Y, X, NULL, 0, W, bias, M, k);
        return;
    }
    if (M == 1 && d->dot4) {
        gemm_rows4(Y, X, NULL, W, bias, d);
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)N * rb * M >= g_par_min)
    for (int64_t n = 0; n < N; n++) {
        const void *row = w + (size_t)n * rb;
        float b = bias ? bias[n] : 0.0f;
        if (M == 1 || !d->dotn) {
            for (int64_t m = 0; m < M; m++)
                Y[m * N + n] = d->dot(row, X + m * K, K) + b;
            continue;
        }
        for (int64_t m = 0; m < M; m += 4) {
            float out[4];
            int nx = (int)(M - m < 4 ? M - m : 4);
            d->dotn(row, X + m * K, K, nx, K, out);
            for (int r = 0; r < nx; r++)
                Y[(m + r) * N + n] = out[r] + b;
        }
    }
}

/* The streaming path on converted activation rows (xa: M rows of xrb bytes). */
static void gemm_rows_act(float *Y, const void *xa, size_t xrb, const lmp_wmat *W,
                          const float *bias, int64_t M, const lmp_kimpl *k, const lmp_kdt *d)
{
    const int64_t N = W->rows, K = W->cols;
    const uint8_t *w = W->data;
    const size_t rb = W->row_bytes;
    if (W->layout == LMP_WL_Q4_0X16) {
        gemm_x16(Y, NULL, xa, xrb, W, bias, M, k);
        return;
    }
    if (M == 1 && d->dotq4) {
        gemm_rows4(Y, NULL, xa, W, bias, d);
        return;
    }
#pragma omp parallel for schedule(static) if ((size_t)N * rb * M >= g_par_min)
    for (int64_t n = 0; n < N; n++) {
        const void *row = w + (size_t)n * rb;
        const float b = bias ? bias[n] : 0.0f;
        for (int64_t m = 0; m < M; m++)
            Y[m * N + n] = d->dotq(row, (const uint8_t *)xa + (size_t)m * xrb, K) + b;
    }
}

/* Prefetch (to L2) rows [n0, n0 + nr) of W, elements [k0, k0 + LMP_K_KC). */
static inline void prefetch_panel(const lmp_wmat *W, int64_t n0, int nr, int64_t k0)
{
    if (W->q) /* intgroup: its strip decoder reads codes, scales and zeros as it goes */
        return;
    const int64_t kc = W->cols - k0 < LMP_K_KC ? W->cols - k0 : LMP_K_KC;
    const size_t off = lmp_dtype_row_bytes(W->dtype, k0), len = lmp_dtype_row_bytes(W->dtype, kc);
    const int64_t n1 = n0 + nr < W->rows ? n0 + nr : W->rows;
    if (W->layout == LMP_WL_Q4_0X16) {
        /* each group of 16 rows holds the K range contiguously */
        for (int64_t g = n0 / 16; g * 16 < n1; g++) {
            const char *p = (const char *)W->data + (size_t)g * 16 * W->row_bytes;
            const size_t nb = (size_t)(W->cols / 32), b0 = (size_t)(k0 / 32), nk = (size_t)(kc / 32);
            for (size_t b = 0; b < nk * 256; b += 64)
                __builtin_prefetch(p + 256 * b0 + b, 0, 2);
            for (size_t b = 0; b < nk * 32; b += 64)
                __builtin_prefetch(p + 256 * nb + 32 * b0 + b, 0, 2);
        }
        return;
    }
    for (int64_t n = n0; n < n1; n++) {
        const char *p = (const char *)W->data + (size_t)n * W->row_bytes + off;
        for (size_t b = 0; b < len; b += 64)
            __builtin_prefetch(p + b, 0, 2);
    }
}

/* Strip s of W (rows s*nr .. s*nr+nv-1), elements [k0, k0+kc), packed into wp for the
 * tile (d->pack_wq) or for the f32 ukr (d->to_f32, or the intgroup strip decoder
 * k->ig_deq, into wtmp, then k->pack_w); xrows: the interleaved layout's rows read back
 * into row layout. */
static void pack_strip(const lmp_wmat *W, const lmp_kimpl *k, const lmp_kdt *d,
                       const lmp_ktile *tile, int64_t n0, int nv, int64_t k0, int64_t kc,
                       float *wtmp, void *wp, uint8_t *xrows)
{
    if (W->q) {
        for (int r = 0; r < nv; r++)
            k->ig_deq(W->q, n0 + r, k0, kc, wtmp + r * LMP_K_KC);
        k->pack_w(wtmp, LMP_K_KC, nv, kc, wp);
        return;
    }
    const uint8_t *src = (const uint8_t *)W->data + (size_t)n0 * W->row_bytes;
    size_t srb = W->row_bytes;
    int64_t sk0 = k0;
    if (W->layout == LMP_WL_Q4_0X16) {
        lmp_k_x16_rows(W, n0, nv, k0 / 32, kc / 32, xrows);
        src = xrows;
        srb = (size_t)(kc / 32) * 18;
        sk0 = 0;
    }
    if (tile) {
        d->pack_wq(src, srb, nv, sk0, kc, wp);
        return;
    }
    if (d->pack_wf && nv == k->nr && kc % 16 == 0) {
        d->pack_wf(src, srb, sk0, kc, wp);
        return;
    }
    /* f32 rows go through the copy too: transposing straight from W reads rows K floats
     * apart, which alias in L1 when K is a power of two */
    for (int r = 0; r < nv; r++)
        d->to_f32(src + (size_t)r * srb, sk0, kc, wtmp + r * LMP_K_KC);
    k->pack_w(wtmp, LMP_K_KC, nv, kc, wp);
}

/* Y rows [m0, m1), columns [n0, n1) set to the bias (or zero) before the K blocks add up. */
static void init_y(float *Y, const float *bias, int64_t N, int64_t m0, int64_t m1, int64_t n0,
                   int64_t n1)
{
    for (int64_t m = m0; m < m1; m++) {
        float *y = Y + m * N + n0;
        if (bias)
            memcpy(y, bias + n0, (size_t)(n1 - n0) * sizeof(float));
        else
            memset(y, 0, (size_t)(n1 - n0) * sizeof(float));
    }
}

/* Row tiles per row block of a batched product whose threads share the rows of X: at
 * most tpb_l2 (what L2 holds), fewer when there are too few W strips (nstrips) to keep
 * nth threads busy (this changes who computes what, never the arithmetic). */
static inline int64_t block_tiles(int64_t mtiles, int64_t nstrips, int nth, int64_t tpb_l2)
{
    int64_t tpb = tpb_l2;
    if (nstrips < 4 * nth) {
        const int64_t want_blocks = (4 * nth + nstrips - 1) / nstrips;
        const int64_t t2 = (mtiles + want_blocks - 1) / want_blocks;
        if (t2 < tpb)
            tpb = t2 > 0 ? t2 : 1;
    }
    return tpb;
}

/* One product of the batched path: the operands and the layout of packed X. */
typedef struct {
    float *Y;
    const float *X, *bias;
    const lmp_wmat *W;
    const lmp_kimpl *k;
    const lmp_kdt *d;
    const lmp_ktile *tile;
    int64_t M, N, K, mtiles, nstrips;
    int mr, nr;
    uint8_t *xp;      /* packed X: K block kb, tile t at xp + kb * kbstride + t * xtile(kc) */
    size_t kbstride;
} tiled;

/* Packs row tiles [t0, t1) of X into xp (every K block). */
static void pack_tiles(const tiled *g, int64_t t0, int64_t t1)
{
    for (int64_t t = t0; t < t1; t++) {
        const int rows = (int)(g->M - t * g->mr < g->mr ? g->M - t * g->mr : g->mr);
        for (int64_t k0 = 0; k0 < g->K; k0 += LMP_K_KC) {
            const int64_t kc = g->K - k0 < LMP_K_KC ? g->K - k0 : LMP_K_KC;
            const float *src = g->X + t * g->mr * g->K + k0;
            uint8_t *kb = g->xp + (k0 / LMP_K_KC) * g->kbstride;
            if (g->tile)
                g->tile->pack_x(src, g->K, rows, kc, kb + (size_t)t * g->tile->x_bytes(kc));
            else if (g->k->pack_x)
                g->k->pack_x(src, g->K, rows, kc, (float *)kb + t * g->mr * kc);
            else
                lmp_k_pack_x(src, g->K, rows, kc, g->mr, (float *)kb + t * g->mr * kc);
        }
    }
}

/* Per-thread panels (on the stack: 2 x 32 KiB and the interleaved rows). */
typedef struct {
    _Alignas(64) float wtmp[LMP_K_NR_MAX * LMP_K_KC];
    _Alignas(64) float wp[LMP_K_WPANEL_MAX / sizeof(float)];
    _Alignas(64) uint8_t xrows[LMP_K_NR_MAX * (LMP_K_KC / 32) * 18];
} panels;

/* Row tiles [t0, t1) times W strip s, K block k0 (wp holds the strip's panel). */
static void tiles_times_panel(const tiled *g, const void *wp, int64_t t0, int64_t t1, int64_t s,
                              int64_t k0)
{
    const int64_t kc = g->K - k0 < LMP_K_KC ? g->K - k0 : LMP_K_KC, n0 = s * g->nr;
    const int nv = (int)(g->N - n0 < g->nr ? g->N - n0 : g->nr);
    const uint8_t *xk = g->xp + (k0 / LMP_K_KC) * g->kbstride;
    const size_t xt = g->tile ? g->tile->x_bytes(kc) : sizeof(float) * g->mr * kc;
    for (int64_t t = t0; t < t1; t++) {
        const int m = (int)(g->M - t * g->mr < g->mr ? g->M - t * g->mr : g->mr);
        float *y = g->Y + t * g->mr * g->N + n0;
        if (g->tile)
            g->tile->ukr(kc, xk + (size_t)t * xt, wp, y, g->N, m, nv);
        else
            g->k->ukr(kc, (const float *)(xk + (size_t)t * xt), wp, y, g->N, m, nv);
    }
}

/* Strip s's panel for K block k0 into p->wp, after prefetching the panel of strip ps,
 * K block pk (the next one this thread packs; none when pk >= K): its weights are likely
 * still in DRAM, fetched into L2 while this one is multiplied. */
static void panel(const tiled *g, panels *p, int64_t s, int64_t k0, int64_t ps, int64_t pk)
{
    if (pk < g->K)
        prefetch_panel(g->W, ps * g->nr, g->nr, pk);
    const int64_t kc = g->K - k0 < LMP_K_KC ? g->K - k0 : LMP_K_KC, n0 = s * g->nr;
    const int nv = (int)(g->N - n0 < g->nr ? g->N - n0 : g->nr);
    pack_strip(g->W, g->k, g->d, g->tile, n0, nv, k0, kc, p->wtmp, p->wp, p->xrows);
}

/* Row tiles [t0, t1) times strips [s0, s1): Y set to the bias, then K blocks outermost
 * (the tiles' Y and one K block of their X stay in L2 across the strips). */
static void tiles_times_strips(const tiled *g, panels *p, int64_t t0, int64_t t1, int64_t s0,
                               int64_t s1)
{
    const int64_t m1 = t1 * g->mr < g->M ? t1 * g->mr : g->M;
    init_y(g->Y, g->bias, g->N, t0 * g->mr, m1, s0 * g->nr, s1 * g->nr < g->N ? s1 * g->nr : g->N);
    for (int64_t k0 = 0; k0 < g->K; k0 += LMP_K_KC)
        for (int64_t s = s0; s < s1; s++) {
            const bool last = s + 1 == s1;
            panel(g, p, s, k0, last ? s0 : s + 1, last ? k0 + LMP_K_KC : k0);
            tiles_times_panel(g, p->wp, t0, t1, s, k0);
        }
}

/* A thread's own rows (LMP_K_OWN_ROWS): thread i of nt owns row tiles
 * [own_lo(i), own_lo(i + 1)). */
static inline int64_t own_lo(const tiled *g, int i, int nt) { return g->mtiles * i / nt; }

/* Units of owner o: its row tiles in blocks of at most tpb tiles, times groups of
 * `group` strips, block-major; unit u of owner o multiplied by the calling thread. */
static void own_unit(const tiled *g, panels *p, int o, int nt, int64_t tpb, int64_t group,
                     int64_t u)
{
    const int64_t ngroups = (g->nstrips + group - 1) / group;
    const int64_t t0 = own_lo(g, o, nt) + u / ngroups * tpb, tend = own_lo(g, o + 1, nt);
    const int64_t s0 = u % ngroups * group;
    tiles_times_strips(g, p, t0, t0 + tpb < tend ? t0 + tpb : tend, s0,
                       s0 + group < g->nstrips ? s0 + group : g->nstrips);
}

/* The batched path. tile == NULL: f32 panels (W dequantized by d->to_f32 and packed by
 * k->pack_w, X packed by k->pack_x, k->ukr); otherwise the tile's own format (W packed
 * by d->pack_wq). Each output is the same sum of the same ukr calls in the same K order
 * whichever thread computes it, so the thread count never changes a bit. */
static void gemm_tiled(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                       int64_t M, const lmp_kimpl *k, const lmp_kdt *d, const lmp_ktile *tile,
                       void *xpv)
{
    tiled g = {.Y = Y, .X = X, .bias = bias, .W = W, .k = k, .d = d, .tile = tile, .M = M,
               .N = W->rows, .K = W->cols, .mr = tile ? tile->mr : k->mr,
               .nr = tile ? tile->nr : k->nr, .xp = xpv};
    g.mtiles = (M + g.mr - 1) / g.mr;
    g.nstrips = (g.N + g.nr - 1) / g.nr;
    g.kbstride = (size_t)g.mtiles *
                 (tile ? tile->x_bytes(LMP_K_KC) : sizeof(float) * g.mr * LMP_K_KC);
    const int64_t mtiles = g.mtiles, nstrips = g.nstrips;
    const int mr = g.mr;
    const int nth = omp_get_max_threads();
    const int64_t group = g.nr >= LMP_K_GROUP_COLS ? 1 : LMP_K_GROUP_COLS / g.nr;
    const int64_t tpb_l2 = (LMP_K_MB_ROWS + mr - 1) / mr;
    lmp_k_slot slot[nth > 0 ? nth : 1]; /* own rows: one call, opened by each owner */
    slots_init(slot, nth > 0 ? nth : 1);

#pragma omp parallel
    {
        const int tid = omp_get_thread_num(), nt = omp_get_num_threads();
        panels p;
        if (nt > 1 && nt <= nth && M >= g_own_rows * nt && g_own_rows > 0) {
            /* Own rows: each thread packs its tiles of X and multiplies them by every
             * strip (units of L2-sized row blocks times strip groups); a thread done with
             * its own units takes the next ones of another (a thread the OS delays leaves
             * its share), so only then does a row cross to another core. */
            const int64_t ngroups = (nstrips + group - 1) / group;
            pack_tiles(&g, own_lo(&g, tid, nt), own_lo(&g, tid + 1, nt));
#pragma omp barrier
            for (int i = 0; i < nt; i++) {
                const int o = (tid + i) % nt;
                const int64_t ntile = own_lo(&g, o + 1, nt) - own_lo(&g, o, nt);
                const int64_t units = (ntile + tpb_l2 - 1) / tpb_l2 * ngroups;
                for (int64_t u; (u = lmp_k_claim(&slot[o], 1, units, o == tid)) >= 0;)
                    own_unit(&g, &p, o, nt, tpb_l2, group, u);
            }
        } else {
            /* Shared rows: row blocks of X (block_tiles); tasks (W strip s, row
             * block b) = s * nmb + b in groups of about LMP_K_GROUP_COLS output columns,
             * handed out dynamically. A thread walks K blocks outermost inside a group:
             * the group's Y and one K block of X share L2, and X is streamed from L3 once
             * per group rather than once per strip. */
            const int64_t tpb = block_tiles(mtiles, nstrips, nt, tpb_l2);
            const int64_t nmb = (mtiles + tpb - 1) / tpb, ntasks = nstrips * nmb;
            const int64_t ngroups = (ntasks + group - 1) / group;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < mtiles; t++)
                pack_tiles(&g, t, t + 1);
            /* implicit barrier: xp complete */
#pragma omp for schedule(dynamic, 1) nowait
            for (int64_t gi = 0; gi < ngroups; gi++) {
                const int64_t g0 = gi * group, g1 = g0 + group < ntasks ? g0 + group : ntasks;
                for (int64_t task = g0; task < g1; task++) {
                    const int64_t n0 = task / nmb * g.nr, b = task % nmb;
                    const int64_t m1 = (b + 1) * tpb * mr < M ? (b + 1) * tpb * mr : M;
                    init_y(Y, bias, g.N, b * tpb * mr, m1, n0, n0 + g.nr < g.N ? n0 + g.nr : g.N);
                }
                const int64_t last_s = (g1 - 1) / nmb;
                for (int64_t k0 = 0; k0 < g.K; k0 += LMP_K_KC) {
                    int64_t packed = -1; /* strip now in p.wp */
                    for (int64_t task = g0; task < g1; task++) {
                        const int64_t s = task / nmb, b = task % nmb;
                        if (s != packed) {
                            const bool last = s + 1 > last_s;
                            panel(&g, &p, s, k0, last ? g0 / nmb : s + 1,
                                  last ? k0 + LMP_K_KC : k0);
                            packed = s;
                        }
                        const int64_t t0 = b * tpb;
                        const int64_t t1 = t0 + tpb < mtiles ? t0 + tpb : mtiles;
                        tiles_times_panel(&g, p.wp, t0, t1, s, k0);
                    }
                }
            }
        }
    }
}

int64_t lmp_k_set_own_rows(int64_t rows)
{
    impl(); /* the environment's value is read first, then replaced */
    const int64_t old = g_own_rows;
    g_own_rows = rows;
    return old;
}

/* Bytes of the packed X of the batched path. */
static size_t xp_bytes(const lmp_kimpl *k, const lmp_ktile *tile, int64_t M, int64_t K)
{
    const int mr = tile ? tile->mr : k->mr;
    const int64_t mtiles = (M + mr - 1) / mr, nkb = (K + LMP_K_KC - 1) / LMP_K_KC;
    const int64_t last = K - (nkb - 1) * LMP_K_KC;
    size_t per = tile ? (size_t)(nkb - 1) * tile->x_bytes(LMP_K_KC) + tile->x_bytes(last)
                      : sizeof(float) * (size_t)mr * (size_t)K;
    return per * (size_t)mtiles;
}

void lmp_gemm(float *Y, const float *X, const lmp_wmat *W, const float *bias, int64_t M)
{
    const lmp_kimpl *k = impl();
    const int64_t N = W->rows, K = W->cols;
    if (M <= 0 || N <= 0)
        return;
    if (W->q) {
        /* intgroup: f32 activations; the variant's strip decoder feeds the batched path,
         * its fused rows the streaming one */
        if (K > 0 && k->ukr && M >= g_small_m) {
            void *xp = scratch(0, xp_bytes(k, NULL, M, K));
            if (xp) {
                gemm_tiled(Y, X, W, bias, M, k, NULL, NULL, xp);
                return;
            }
        }
        gemm_rows(Y, X, W, bias, M, k, NULL);
        return;
    }
    const bool ok = lmp_gemm_supports(W->dtype);
    if (K == 0 || !ok) {
        /* nothing to sum (an unsupported dtype is a caller bug: lmp_gemm_supports) */
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++)
                Y[m * N + n] = bias ? bias[n] : 0.0f;
        if (!ok)
            lmp_warn("lmp_gemm: no kernel for weights of dtype %d", (int)W->dtype);
        return;
    }
    const lmp_kdt *d = &k->dt[W->dtype];
    const lmp_act act = lmp_k_act_m(W->dtype, M);
    const bool batched = k->ukr && M >= g_small_m;
    if (act != LMP_ACT_F32) {
        const lmp_ktile *tile = act == LMP_ACT_Q8     ? &k->tile_q8
                                : act == LMP_ACT_BF16 ? &k->tile_bf16
                                                      : NULL;
        if (batched && tile && tile->ukr && d->pack_wq && K % tile->kb == 0) {
            void *xp = scratch(0, xp_bytes(k, tile, M, K));
            if (xp) {
                gemm_tiled(Y, X, W, bias, M, k, d, tile, xp);
                return;
            }
        }
        if (batched) {
            /* no tile of this format here (a variant without the q8 or bf16 tile): f32
             * panels on X rounded to the format (rows rounded in parallel, each thread
             * through a row buffer of its own) */
            float *xr = scratch(1, sizeof(float) * (size_t)(M * K));
            const size_t rb = act_row_bytes(act, K);
            const int nth = omp_get_max_threads();
            uint8_t *tmp = aligned_alloc(64, rb * (size_t)nth);
            void *xp = xr && tmp ? scratch(0, xp_bytes(k, NULL, M, K)) : NULL;
            if (xp) {
#pragma omp parallel for schedule(static) num_threads(nth)
                for (int64_t m = 0; m < M; m++) {
                    void *t = tmp + rb * (size_t)omp_get_thread_num();
                    convert_rows(k, act, X + m * K, 1, K, t, rb); /* never f16 here */
                    float *dst = xr + m * K;
                    if (act == LMP_ACT_BF16)
                        lmp_bf16_to_f32_row(t, dst, K);
                    else if (act == LMP_ACT_Q8K)
                        for (int64_t i = 0; i < K; i++)
                            dst[i] = (float)((const int8_t *)t)[i] * lmp_xq8k_d(t, K)[i / 256];
                    else
                        for (int64_t i = 0; i < K; i++)
                            dst[i] = (float)((const int8_t *)t)[i] * lmp_xq8_d(t, K)[i / 32];
                }
                free(tmp);
                gemm_tiled(Y, xr, W, bias, M, k, d, NULL, xp);
                return;
            }
            free(tmp);
        }
        const size_t rb = act_row_bytes(act, K);
        void *xa = scratch(0, rb * (size_t)M);
        if (xa && convert_rows(k, act, X, M, K, xa, rb) == 0) {
            gemm_rows_act(Y, xa, rb, W, bias, M, k, d);
            return;
        }
        if (!xa)
            lmp_warn("lmp_gemm: out of memory for rounded activations; using f32 activations");
    }
    if (batched) {
        void *xp = scratch(0, xp_bytes(k, NULL, M, K));
        if (xp) {
            gemm_tiled(Y, X, W, bias, M, k, d, NULL, xp);
            return;
        }
        /* no memory for the packed copy of X: the streaming path needs none */
    }
    gemm_rows(Y, X, W, bias, M, k, d);
}

void lmp_gemm_intgroup_ref(float *Y, const float *X, const lmp_wmat *W, const float *bias,
                           int64_t M)
{
    const lmp_kimpl *ref = lmp_k_impl(LMP_ISA_REF);
    if (W->q && M > 0 && W->rows > 0)
        gemm_rows(Y, X, W, bias, M, ref, NULL);
}

/* ---------------------------------------------------------------- weights */

bool lmp_wmat_repack_wanted(const lmp_wmat *w)
{
    if (!w || w->q || w->layout != LMP_WL_ROWS ||
        (w->dtype != LMP_DT_Q4_0 && w->dtype != LMP_DT_IQ4_NL) || w->rows <= 0 || w->rows % 16 || w->cols <= 0 || w->cols % 32 || !w->data)
        return false;
    const char *e = getenv("LMP_Q4_REPACK");
    if (e && !strcmp(e, "0"))
        return false;
    const lmp_kimpl *k = lmp_k_impl(lmp_kernels_isa());
    return k && (w->dtype == LMP_DT_IQ4_NL ? k->iq4nlx16_simd : k->q4x16_simd) && !lmp_gemm_exact();
}

void lmp_wmat_row_f32(const lmp_wmat *w, int64_t r, float *out)
{
    if (w->q) {
        lmp_qtensor_dequant_row(w->q, r, out);
        return;
    }
    if (w->layout == LMP_WL_Q4_0X16) {
        /* read back one block at a time into row layout, then the dtype's decoder */
        uint8_t blk[18];
        for (int64_t b = 0; b < w->cols / 32; b++) {
            lmp_k_x16_rows(w, r, 1, b, 1, blk);
            lmp_dtype_info(w->dtype)->to_f32(blk, out + 32 * b, 32);
        }
        return;
    }
    lmp_dtype_info(w->dtype)->to_f32((const uint8_t *)w->data + (size_t)r * w->row_bytes, out,
                                     w->cols);
}

/* ---------------------------------------------------------------- team matrix-vector */

void lmp_gemv_team(float *y, const float *x, const lmp_wmat *W, const float *bias, bool acc,
                   lmp_team *team)
{
    const lmp_kimpl *k = impl();
    const int64_t N = W->rows, K = W->cols;
    if (N <= 0)
        return;
    if (W->q) {
        /* intgroup: one row per task through the variant's fused rows (as gemm_rows) */
        stream s = {.Y = y, .X = x, .bias = bias, .W = W, .k = k, .M = 1, .acc = acc};
        lmp_k_share(team, N, unit_tasks(wrow_bytes(W)), ig_range, &s);
        return;
    }
    if (K == 0 || !lmp_gemm_supports(W->dtype)) {
        /* nothing to sum, or a caller bug (see lmp_gemm) */
#pragma omp for schedule(static) nowait
        for (int64_t n = 0; n < N; n++)
            y[n] = (acc ? y[n] : 0.0f) + (bias ? bias[n] : 0.0f);
        return;
    }
    const lmp_kdt *d = &k->dt[W->dtype];
    const lmp_act act = lmp_k_act(W->dtype);
    /* every thread rounds x into a buffer of its own (a few microseconds) rather than
     * waiting at a barrier for one thread to do it; all get the same bytes. On the stack
     * up to 64 KiB (K <= 32768 in bf16): worker threads come and go with the team size,
     * and a thread-local heap buffer would leak with them. */
    _Alignas(64) uint8_t stack_xa[65536];
    void *heap_xa = NULL;
    const void *xa = NULL;
    if (act != LMP_ACT_F32) {
        const size_t xrb = act_row_bytes(act, K);
        void *buf = xrb <= sizeof stack_xa ? stack_xa : (heap_xa = aligned_alloc(64, xrb));
        /* no memory, or f16 overflow: f32 activations (every thread decides alike) */
        if (!buf) {
            if (omp_get_thread_num() == 0)
                lmp_warn("lmp_gemv_team: out of memory for rounded activations; using f32");
        } else if (convert_rows(k, act, x, 1, K, buf, xrb) == 0) {
            xa = buf;
        }
    }
    stream s = {.Y = y, .X = x, .bias = bias, .xa = xa, .W = W, .k = k, .d = d, .M = 1,
                .acc = acc};
    if (W->layout == LMP_WL_Q4_0X16) {
        /* as gemm_x16 */
        lmp_k_share(team, N / 16, unit_tasks(16 * W->row_bytes), x16_range, &s);
    } else {
        /* as gemm_rows4 */
        const bool four = xa ? d->dotq4 != NULL : d->dot4 != NULL;
        s.ng = four ? N / 4 : 0;
        lmp_k_share(team, s.ng + (four ? N % 4 : N), unit_tasks((four ? 4 : 1) * W->row_bytes),
                    rows4_range, &s);
    }
    free(heap_xa);
}

/* ---------------------------------------------------------------- small kernels */

void lmp_rmsnorm(float *y, const float *x, const float *w, int64_t n, float eps)
{
    impl()->rmsnorm(y, x, w, n, eps);
}

void lmp_silu_mul(float *gate_inout, const float *up, int64_t n)
{
    impl()->silu_mul(gate_inout, up, n);
}

void lmp_gelu_mul(float *gate_inout, const float *up, int64_t n)
{
    impl()->gelu_mul(gate_inout, up, n);
}

float lmp_dot_f32(const float *a, const float *b, int64_t n) { return impl()->dot_f32(a, b, n); }

void lmp_axpy_f32(float *y, float a, const float *x, int64_t n) { impl()->axpy_f32(y, a, x, n); }

void lmp_softmax_f32(float *x, int64_t n) { impl()->softmax(x, n); }

double lmp_logsumexp_f32(const float *x, int64_t n) { return impl()->logsumexp(x, n); }
