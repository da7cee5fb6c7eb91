/*
 * AWQ, activation-aware weight quantization (Lin et al. 2023), layer by layer on the
 * engine's block runner. Facts from casper-hansen/AutoAWQ (awq/quantize/quantizer.py:
 * _search_best_scale, _compute_best_scale, _search_best_clip, _compute_best_clip,
 * pseudo_quantize_tensor; awq/quantize/scale.py: apply_scale, apply_clip; awq/models/
 * llama.py: get_layers_for_scaling); the code is ours. See pipeline.h for the steps.
 *
 * Losses, as the reference measures them: the q/k/v group by the attention module's
 * output (the engine's block runner is run with the candidate q/k/v installed up to
 * o_proj's input, which we multiply by o_proj ourselves: the bias cancels), gate/up by
 * the MLP's output (computed here from the captured normed input), o and down by their
 * own output. Linear output errors use ||X D^T||^2 with D the weight difference.
 *
 * Not here: file layouts (formats/qmodel.c writes the AWQ GEMM folder, including the
 * folded norm weights handed over through lmp_qpipe_params.fold_sink).
 */
#include "qpipe_internal.h"
#include "quant.h"
#include "../core/dist.h"
#include "../infer/kernels.h"
/* Interim: the f32 norm and bias vectors live in lib/infer's private model struct and
 * lib/infer has no public accessor yet (lmp_awq_model_norm / _bias below are the only
 * users; replace them by lmp_model_norm / lmp_model_bias when lib/infer has them). */

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CH 256      /* tokens per chunk in the output-error products */

/* input class and linears of each scaling group (LMP_LIN_COUNT ends a list) */
static const int g_class[LMP_AWQ_NGROUPS] = {LMP_IN_ATTN, LMP_IN_O, LMP_IN_MLP, LMP_IN_DOWN};
static const lmp_linear g_lins[LMP_AWQ_NGROUPS][4] = {
    {LMP_LIN_Q, LMP_LIN_K, LMP_LIN_V, LMP_LIN_COUNT},
    {LMP_LIN_O, LMP_LIN_COUNT},
    {LMP_LIN_GATE, LMP_LIN_UP, LMP_LIN_COUNT},
    {LMP_LIN_DOWN, LMP_LIN_COUNT},
};

/* ---------------------------------------------------------------- accessors ------- */

float *lmp_awq_model_norm(lmp_model *m, int layer, bool ffn) { return lmp_model_norm_mut(m, layer, ffn); }

float *lmp_awq_model_bias(lmp_model *m, int layer, lmp_linear which)
{
    return lmp_model_bias_mut(m, layer, which);
}

static bool lmp_awq_any_experts(const lmp_model *m)
{
    for (int l = 0; l < lmp_model_config(m)->n_layers; l++)
        if (lmp_model_n_experts(m, l) > 0)
            return true;
    return false;
}

/* ---------------------------------------------------------------- folding --------- */

bool lmp_awq_has_vo(const lmp_config *c)
{
    int64_t d = c->hidden_size, qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    return kvd == d && qd == d;
}

static void scale_cols(float *W, int64_t rows, int64_t cols, const float *s)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < cols; j++)
            W[r * cols + j] *= s[j];
}

int lmp_awq_fold(lmp_awq_block *b, const lmp_config *c, const float *const s[LMP_AWQ_NGROUPS])
{
    const int64_t d = c->hidden_size, ff = c->intermediate_size;
    const int64_t qd = (int64_t)c->n_heads * c->head_dim, kvd = (int64_t)c->n_kv_heads * c->head_dim;
    if (s[LMP_AWQ_VO] && !lmp_awq_has_vo(c))
        return lmp_err(LMP_EINVAL, "AWQ: v_proj [%lld, %lld] and o_proj [%lld, %lld] differ in shape (grouped-query "
                                   "attention); the v -> o scales do not apply",
                       (long long)kvd, (long long)d, (long long)d, (long long)qd);
    if (s[LMP_AWQ_QKV]) { /* scale_ln_fcs: ln.weight /= s; fc.weight *= s */
        const float *v = s[LMP_AWQ_QKV];
        for (int64_t j = 0; j < d; j++)
            b->attn_norm[j] /= v[j];
        scale_cols(b->w[LMP_LIN_Q], qd, d, v);
        scale_cols(b->w[LMP_LIN_K], kvd, d, v);
        scale_cols(b->w[LMP_LIN_V], kvd, d, v);
    }
    if (s[LMP_AWQ_VO]) { /* scale_fc_fc: fc1 rows (and bias) /= s; fc2 columns *= s */
        const float *v = s[LMP_AWQ_VO];
        for (int64_t r = 0; r < kvd; r++) {
            for (int64_t j = 0; j < d; j++)
                b->w[LMP_LIN_V][r * d + j] /= v[r];
            if (b->bias[LMP_LIN_V])
                b->bias[LMP_LIN_V][r] /= v[r];
        }
        scale_cols(b->w[LMP_LIN_O], d, qd, v);
    }
    if (s[LMP_AWQ_MLP]) {
        const float *v = s[LMP_AWQ_MLP];
        for (int64_t j = 0; j < d; j++)
            b->ffn_norm[j] /= v[j];
        scale_cols(b->w[LMP_LIN_GATE], ff, d, v);
        scale_cols(b->w[LMP_LIN_UP], ff, d, v);
    }
    if (s[LMP_AWQ_DOWN]) {
        const float *v = s[LMP_AWQ_DOWN];
        for (int64_t r = 0; r < ff; r++) {
            for (int64_t j = 0; j < d; j++)
                b->w[LMP_LIN_UP][r * d + j] /= v[r];
            if (b->bias[LMP_LIN_UP])
                b->bias[LMP_LIN_UP][r] /= v[r];
        }
        scale_cols(b->w[LMP_LIN_DOWN], d, ff, v);
    }
    return LMP_OK;
}

/* ---------------------------------------------------------------- quantizer ------- */

static float f16_round(float s)
{
    if (!(s >= 0x1p-24f))
        s = 0x1p-24f;
    if (s > 65504.0f)
        s = 65504.0f;
    return lmp_f16_to_f32(lmp_f32_to_f16(s));
}

/* The parameters from a group's extremes (sym: amax = max |w|; else mn, mx). */
static void params_of(float amax, float mn, float mx, int bits, bool sym, float *scale, int *zero)
{
    const int maxq = (1 << bits) - 1;
    if (sym) {
        *scale = f16_round(fmaxf(amax, 1e-5f) / (float)((1 << (bits - 1)) - 1));
        *zero = 1 << (bits - 1);
        return;
    }
    float s = f16_round(fmaxf(mx - mn, 1e-5f) / (float)maxq);
    float z = -rintf(mn / s);
    *scale = s;
    *zero = z < 0.0f ? 0 : z > (float)maxq ? maxq : (int)z;
}

/* pseudo_quantize_tensor's parameters of one group w[0..n). */
static void group_params(const float *w, int64_t n, int bits, bool sym, float *scale, int *zero)
{
    if (sym) {
        float amax = 0.0f;
        for (int64_t i = 0; i < n; i++)
            amax = fmaxf(amax, fabsf(w[i]));
        params_of(amax, 0, 0, bits, sym, scale, zero);
        return;
    }
    float mn = w[0], mx = w[0];
    for (int64_t i = 1; i < n; i++) {
        mn = fminf(mn, w[i]);
        mx = fmaxf(mx, w[i]);
    }
    params_of(0, mn, mx, bits, sym, scale, zero);
}

/* q[i] = dequant(quant(w[i])) for one group (portable). */
static void group_fake_ref(const float *w, float *q, int64_t n, int bits, bool sym)
{
    float s;
    int z;
    group_params(w, n, bits, sym, &s, &z);
    const int maxq = (1 << bits) - 1;
    for (int64_t i = 0; i < n; i++)
        q[i] = s * (float)(lmp_intq_code(w[i], s, z, maxq) - z);
}

/* The same with AVX-512F, the same bits: the extremes of finite values do not depend on
 * the order they are taken in (a zero's sign may differ, which moves neither the scale
 * nor the zero point), and per element the same IEEE division, round-to-nearest-even,
 * clamp and integer difference as lmp_intq_code. Optionally clamps w to [-clip, clip]
 * first (clip > 0: the clip search) and scales it by sc / unscales by sc (sc != NULL:
 * the scale search's Q(w s) / s). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define AWQ_AVX512 1
#define TQ __attribute__((target("avx512f")))
TQ static void group_fake_512(const float *w, float *q, int64_t n, int bits, bool sym, const float *sc, float clip)
{
    const __mmask16 tail = (__mmask16)((1u << (n % 16)) - 1);
    const int64_t nf = n - n % 16;
    const __m512 vc = _mm512_set1_ps(clip);
    const __m512 nvc = _mm512_set1_ps(-clip);
#define AWQ_LOAD(i, m)                                                                                                 \
    ({                                                                                                                 \
        __m512 x_ = _mm512_maskz_loadu_ps((m), w + (i));                                                               \
        if (sc)                                                                                                        \
            x_ = _mm512_mul_ps(x_, _mm512_maskz_loadu_ps((m), sc + (i)));                                              \
        if (clip > 0)                                                                                                  \
            x_ = _mm512_min_ps(_mm512_max_ps(x_, nvc), vc);                                                            \
        x_;                                                                                                            \
    })
    float amax = 0, mn = 0, mx = 0;
    if (sym) {
        __m512 a = _mm512_setzero_ps();
        for (int64_t i = 0; i < nf; i += 16)
            a = _mm512_max_ps(a, _mm512_abs_ps(AWQ_LOAD(i, (__mmask16)0xffff)));
        if (tail)
            a = _mm512_max_ps(a, _mm512_abs_ps(AWQ_LOAD(nf, tail)));
        amax = _mm512_reduce_max_ps(a);
    } else {
        __m512 lo = _mm512_set1_ps(INFINITY), hi = _mm512_set1_ps(-INFINITY);
        for (int64_t i = 0; i < nf; i += 16) {
            __m512 x = AWQ_LOAD(i, (__mmask16)0xffff);
            lo = _mm512_min_ps(lo, x);
            hi = _mm512_max_ps(hi, x);
        }
        if (tail) {
            __m512 x = AWQ_LOAD(nf, tail);
            lo = _mm512_mask_min_ps(lo, tail, lo, x);
            hi = _mm512_mask_max_ps(hi, tail, hi, x);
        }
        mn = _mm512_reduce_min_ps(lo);
        mx = _mm512_reduce_max_ps(hi);
    }
    float s;
    int z;
    params_of(amax, mn, mx, bits, sym, &s, &z);
    const __m512 vs = _mm512_set1_ps(s), vzf = _mm512_set1_ps((float)z), vmax = _mm512_set1_ps((float)((1 << bits) - 1));
    const __m512i vz = _mm512_set1_epi32(z);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = i < nf ? (__mmask16)0xffff : tail;
        __m512 x = AWQ_LOAD(i, m);
        __m512 r = _mm512_roundscale_ps(_mm512_div_ps(x, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        r = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(r, vzf), _mm512_setzero_ps()), vmax);
        __m512 o = _mm512_mul_ps(vs, _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvttps_epi32(r), vz)));
        if (sc)
            o = _mm512_div_ps(o, _mm512_maskz_loadu_ps(m, sc + i));
        _mm512_mask_storeu_ps(q + i, m, o);
    }
#undef AWQ_LOAD
}
#endif

static bool use_512(void)
{
#ifdef AWQ_AVX512
    return lmp_kernels_isa() == LMP_ISA_AVX512;
#else
    return false;
#endif
}

/* q = Q(clamp(w, +-clip) sc) / sc for one group of n (sc NULL: no scaling; clip 0: no
 * clamp); q may equal w only without sc and clip. */
static void group_fake_x(const float *w, float *q, int64_t n, int bits, bool sym, const float *sc, float clip, bool v512)
{
#ifdef AWQ_AVX512
    if (v512) {
        group_fake_512(w, q, n, bits, sym, sc, clip);
        return;
    }
#endif
    (void)v512;
    if (!sc && !(clip > 0)) {
        group_fake_ref(w, q, n, bits, sym);
        return;
    }
    for (int64_t j = 0; j < n; j++) { /* in q (which then must not be w) */
        float x = sc ? w[j] * sc[j] : w[j];
        q[j] = clip > 0 ? fminf(fmaxf(x, -clip), clip) : x;
    }
    group_fake_ref(q, q, n, bits, sym);
    if (sc)
        for (int64_t j = 0; j < n; j++)
            q[j] /= sc[j];
}

static void group_fake(const float *w, float *q, int64_t n, int bits, bool sym)
{
    group_fake_x(w, q, n, bits, sym, NULL, 0, use_512());
}

/* Q = fake-quantized W (rows, cols), groups of gs columns. */
static void fake_quant(const float *W, float *Q, int64_t rows, int64_t cols, int gs, int bits, bool sym)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += gs)
            group_fake(W + r * cols + c0, Q + r * cols + c0, cols - c0 < gs ? cols - c0 : gs, bits, sym);
}

/* out = Q(W diag(s)) diag(s)^-1 for W (rows, cols), groups of gs columns: per group
 * scaled, fake-quantized and unscaled (group_fake_x: the same arithmetic per element as
 * the three whole-matrix passes it replaces), rows in parallel. */
static void scaled_fake_quant(const float *W, const float *s, float *out, int64_t rows, int64_t cols, int gs, int bits,
                              bool sym)
{
    const bool v = use_512();
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c0 = 0; c0 < cols; c0 += gs)
            group_fake_x(W + r * cols + c0, out + r * cols + c0, cols - c0 < gs ? cols - c0 : gs, bits, sym, s + c0, 0,
                         v);
}

int lmp_awq_quant(const float *W, int64_t rows, int64_t cols, int bits, int group_size, bool sym, lmp_qtensor *out)
{
    int rc = lmp_qtensor_intgroup_init(out, rows, cols, bits, group_size, sym, false);
    if (rc)
        return rc;
    lmp_intgroup *ig = &out->ig;
    const int maxq = (1 << bits) - 1;
    int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad)
    for (int64_t r = 0; r < rows; r++) {
        const float *w = W + r * cols;
        for (int g = 0; g < ig->n_groups; g++) {
            int64_t c0 = (int64_t)g * ig->gs, c1 = c0 + ig->gs < cols ? c0 + ig->gs : cols;
            for (int64_t c = c0; c < c1; c++)
                bad |= !isfinite(w[c]);
            float s;
            int z;
            group_params(w + c0, c1 - c0, bits, sym, &s, &z);
            ig->scales[r * ig->n_groups + g] = s;
            ig->zeros[r * ig->n_groups + g] = (uint8_t)z;
            for (int64_t c = c0; c < c1; c++)
                lmp_ig_set_code(ig, r, c, (unsigned)lmp_intq_code(w[c], s, z, maxq));
        }
    }
    if (bad) {
        lmp_qtensor_free(out);
        return lmp_err(LMP_ERANGE, "AWQ quantizer: non-finite weight");
    }
    return LMP_OK;
}

/* ---------------------------------------------------------------- the run --------- */

typedef struct {
    lmp_model *m;
    const lmp_qpipe_params *p;
    int layer;
    int64_t d, qd, kvd, ff, T;
    int N, L;
    int64_t cols[LMP_IN_COUNT];
    float *xmean[LMP_IN_COUNT];   /* (cols) mean |x| */
    float *G[LMP_IN_COUNT];       /* (cols, cols) X^T X, built on first use when tokens > cols */
    lmp_wmat orig[LMP_LIN_COUNT];
    lmp_awq_block blk;            /* owned f32 copies: weights, norms, biases */
    float *wfold[LMP_LIN_COUNT];  /* scaled, not clipped (for the error figures) */
    float *scratch, *xo, *obuf;   /* (L, d), (L, qd), (CH, max rows) */
    int gs;                       /* effective group size for a cols count: see eff_gs */
    lmp_calib_block *b;           /* the driver's block: progress */
    lmp_qpipe_result *res;
    lmp_qtensor qt[LMP_LIN_COUNT];
    /* a sparse block (mixture of experts): its experts, see awq_moe */
    int E;                        /* this block's experts (0: a dense block) */
    int64_t eff;                  /* expert FFN width */
    float **ew, **ewfold;         /* (3E) expert e's gate, up, down f32 (folded in place); scaled, not clipped */
    lmp_qtensor *eqt;             /* (3E) */
    float *router;                /* (E, d) f32, folded */
    /* Expert models: a sparse block's window in cap holds q/k/v's, o's and the experts'
     * (every token's) gate/up inputs, then the routed down inputs at roff, expert by expert
     * (window order, tokens ascending in each); wcnt (N x Emax, every rank's windows,
     * gathered) counts each window's rows per expert, rtok (this rank's windows, L x topk
     * each) their token rows in the window. */
    bool moe;
    int Emax, topk;
    int64_t roff;
    int *wcnt, *rtok;
    int64_t *ecnt;                /* (Emax) routed rows per expert, all windows */
    float *exm;                   /* (Emax, eff) mean |down input| per expert */
    float *exg;                   /* (L, d) one window's gate/up inputs of one expert, gathered */
    float *const *esd;            /* after the fold: expert e's down scale (NULL: none), divided on load */
    /* The windows (lib/calib/calib_dist.h): the row walks this rank's windows [wlo, whi)
     * itself (LMP_CALIB_SELF_WALK) and keeps each window's captured inputs (and the MLP's
     * reference activations, or a sparse block's routed inputs) in cap, spilled like the
     * hidden states. Every sum over tokens is taken per window group and the groups
     * combined in group order (lmp_calib_gsum), so the bits do not depend on the rank
     * count. */
    bool self, split;
    bool prenorm; /* this block has norms in front of q/k/v and gate/up (the QKV / MLP folds) */
    int wlo, whi, ng;             /* ng: window groups */
    lmp_calib_store cap;
    uint64_t cap_bytes;
    int64_t coff[LMP_IN_COUNT], hoff; /* a window's classes' inputs and href in cap */
    float *wbuf;                  /* self: one window of cap */
    int wcur;                     /* the window in wbuf, -1: none */
    const float *wx[LMP_IN_COUNT], *whref; /* the current window's inputs (L rows), href */
    const float *xs[LMP_IN_COUNT]; /* self, after the fold: the inputs are divided by these on load */
    float *sv[LMP_AWQ_NGROUPS];   /* the block's chosen scales */
    bool gram[LMP_IN_COUNT];      /* class gets a Gram matrix (more tokens than columns) */
    float *gw;                    /* one window's f32 Gram (largest width squared) */
    float *Xs[LMP_IN_COUNT];      /* the clip search's sampled tokens (ns_clip rows), every rank */
    int64_t ns_clip, step_clip;
    /* The search sample (dense models, 0 < awq_search_tokens < T, see search_sample): the
     * grid searches' losses and the error figures on ns sampled tokens (one per stratum of
     * T / ns tokens) and, for q/k/v, on nqw whole windows, held on every rank, the grid's
     * candidates split among the ranks. No captured-input store, no Gram matrix. */
    bool samp;
    int64_t ns, *stok;            /* sampled token indices, ascending */
    float *S[LMP_IN_COUNT];       /* (ns, cols) their inputs (divided by the scales after the fold) */
    float *Sh;                    /* (ns, ff) the float block's act(gate x) * up x of them */
    int nqw, *qw;                 /* the q/k/v search's windows, ascending */
    float *qin, *qref;            /* (nqw, L, d) their block inputs, (nqw, L, qd) their o_proj inputs */
    float *bscr;                  /* lmp_block_scratch_floats(m, L, 0) */
    /* bf16 calibration (dense models; not --calib-f32): the block's float passes run on
     * bf16 copies of its linears (the engine's bf16 products: X rounded to bf16, f32 sums),
     * and, in sample mode, the searches' losses and the error figures too (candidates
     * rounded to bf16). wb: the original weights' bf16 values (borrowed from the model
     * when it holds them as plain bf16 rows, else owned in bwown and installed for the
     * walk); worig: the model's own linears, put back at the end of the block. */
    bool bf16;
    const uint16_t *wb[LMP_LIN_COUNT];
    uint16_t *bwown[LMP_LIN_COUNT];
    lmp_wmat worig[LMP_LIN_COUNT];
    uint16_t *db, *db2;           /* sample mode: two bf16 buffers of the largest linear */
} awq_ctx;

typedef struct {
    float *xo;   /* search pass: o_proj's input of one sample, then stop */
} cap_ctx;

static int cap_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    cap_ctx *c = user;
    if (which != LMP_LIN_O)
        return 0;
    memcpy(c->xo, X, (size_t)(n * in) * sizeof(float));
    return LMP_PASS_DONE;
}

/* The group width of a cols-wide input at the run's one setting (the experts' path). */
static int eff_gs(const lmp_qpipe_params *p, int64_t cols)
{
    return p->group_size > 0 ? p->group_size : (int)cols;
}

/* The group width linear k of block `layer` is quantized with (per-linear plans). */
static int eff_gs_lin(const lmp_qpipe_params *p, int layer, lmp_linear k, int64_t cols)
{
    const int g = lmp_qpipe_lin_group(p, layer, k);
    return g > 0 ? g : (int)cols;
}

static void tick(awq_ctx *a)
{
    lmp_calib_tick(a->b);
}

/* ---------------------------------------------------------------- windows --------- */

/* The window group of window s. */
static int wgroup(const awq_ctx *a, int s) { return lmp_calib_window_group(a->N, a->ng, s); }

/* Block input of window s (L x d) into dst. */
static int get_state(awq_ctx *a, int s, float *dst)
{
    return lmp_calib_state_get(a->b, s, dst);
}

/* Window s's routed rows before expert e's (a sparse block). */
static int64_t expert_off(const awq_ctx *a, int s, int e)
{
    int64_t off = 0;
    for (int x = 0; x < e; x++)
        off += a->wcnt[(int64_t)s * a->Emax + x];
    return off;
}

/* Points wx / whref at window s's captured inputs, read from cap and divided by the
 * folded scales (a sparse block: no down / href class; its routed down inputs by their
 * expert's down scale). */
static int load_window(awq_ctx *a, int s)
{
    if (a->wcur == s)
        return LMP_OK;
    a->wcur = -1;
    int rc = lmp_calib_store_get(&a->cap, s - a->wlo, a->wbuf);
    if (rc)
        return rc;
    const int nc = a->E > 0 ? LMP_IN_DOWN : LMP_IN_COUNT;
    for (int c = 0; c < LMP_IN_COUNT; c++) {
        float *x = a->wbuf + a->coff[c];
        const int64_t in = a->cols[c];
        if (c < nc && a->xs[c])
            for (int64_t t = 0; t < a->L; t++)
                for (int64_t j = 0; j < in; j++)
                    x[t * in + j] /= a->xs[c][j];
        a->wx[c] = c < nc ? x : NULL;
    }
    a->whref = a->E > 0 ? NULL : a->wbuf + a->hoff;
    for (int e = 0; a->E > 0 && a->esd && e < a->E; e++) {
        const int64_t n = a->wcnt[(int64_t)s * a->Emax + e], ff = a->eff;
        float *x = a->wbuf + a->roff + expert_off(a, s, e) * ff;
        const float *sd = a->esd[e];
        for (int64_t t = 0; sd && t < n; t++)
            for (int64_t j = 0; j < ff; j++)
                x[t * ff + j] /= sd[j];
    }
    a->wcur = s;
    return LMP_OK;
}

/* Expert e's routed rows of window s (loaded): their gate/up inputs gathered into xg
 * (n x d), *xd pointed at their down inputs (n x eff); returns n. */
static int64_t win_expert(const awq_ctx *a, int s, int e, float *xg, const float **xd)
{
    const int64_t off = expert_off(a, s, e), n = a->wcnt[(int64_t)s * a->Emax + e], d = a->d;
    const int *tok = a->rtok + (int64_t)(s - a->wlo) * a->L * a->topk + off;
    for (int64_t i = 0; xg && i < n; i++)
        memcpy(xg + i * d, a->wx[LMP_IN_MLP] + (int64_t)tok[i] * d, sizeof(float) * (size_t)d);
    *xd = a->wbuf + a->roff + off * a->eff;
    return n;
}

/* ||X D^T||_F^2 for X (T, in), D (rows, in), in chunks of CH tokens (buf: CH * rows). */
static double out_sq(const float *X, int64_t T, int64_t in, const float *D, int64_t rows, float *buf)
{
    double acc = 0;
    for (int64_t t0 = 0; t0 < T; t0 += CH) {
        int64_t k = T - t0 < CH ? T - t0 : CH;
        lmp_sgemm_fixed(false, true, k, rows, in, 1.0f, X + t0 * in, in, D, in, 0.0f, buf, rows);
        for (int64_t i = 0; i < k * rows; i++)
            acc += (double)buf[i] * buf[i];
    }
    return acc;
}

static int64_t lin_rows(const awq_ctx *a, lmp_linear k) { return a->orig[k].rows; }

/* ||X_cls D^T||_F^2 for D (rows, cols of class cls) over every token: as tr(D G D^T) with
 * the class's Gram matrix G = X^T X when it has one (more tokens than columns: one product
 * per block instead of one T x rows x cols product per evaluation), else directly, per
 * window, summed per window group (collective when split). */
static int lin_sq(awq_ctx *a, int cls, const float *D, int64_t rows, double *out)
{
    const int64_t in = a->cols[cls];
    if (a->G[cls]) {
        double acc = 0;
        for (int64_t r0 = 0; r0 < rows; r0 += CH) { /* obuf holds CH x max(cols) */
            int64_t k = rows - r0 < CH ? rows - r0 : CH;
            lmp_sgemm_fixed(false, false, k, in, in, 1.0f, D + r0 * in, in, a->G[cls], in, 0.0f, a->obuf, in);
            for (int64_t i = 0; i < k * in; i++)
                acc += (double)D[r0 * in + i] * a->obuf[i];
        }
        *out = acc;
        return LMP_OK;
    }
    lmp_calib_gsum gs;
    int rc = lmp_calib_gsum_open(&gs, 1, a->ng, a->split);
    for (int s = a->wlo; s < a->whi && !rc; s++)
        if (!(rc = load_window(a, s)))
            *lmp_calib_gsum_at(&gs, wgroup(a, s)) += out_sq(a->wx[cls], a->L, in, D, rows, a->obuf);
    if (!rc)
        rc = lmp_calib_gsum_end(&gs);
    *out = rc ? 0 : gs.total[0];
    lmp_calib_gsum_close(&gs);
    return rc;
}

/* q/k/v candidates installed: attention-module output error against the float block,
 * per window, summed per window group. */
static int qkv_loss(awq_ctx *a, float *const cand[3], double *loss)
{
    lmp_wmat w[3];
    lmp_calib_gsum gs;
    int rc = lmp_calib_gsum_open(&gs, 1, a->ng, a->split);
    for (int i = 0; i < 3 && !rc; i++) {
        lmp_linear k = (lmp_linear)(LMP_LIN_Q + i);
        w[i] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = a->orig[k].rows, .cols = a->orig[k].cols, .data = cand[i],
                          .row_bytes = (size_t)a->orig[k].cols * sizeof(float)};
        rc = lmp_model_set_linear(a->m, a->layer, k, &w[i]);
    }
    cap_ctx cc = {a->xo};
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        if ((rc = get_state(a, s, a->scratch)))
            break;
        rc = lmp_block_run(a->m, a->layer, a->scratch, a->L, 0, NULL, cap_hook, &cc);
        if (rc != LMP_PASS_DONE) {
            if (rc == 0)
                rc = lmp_err(LMP_EINVAL, "AWQ: block %d ran without reaching o_proj", a->layer);
            break;
        }
        if ((rc = load_window(a, s)))
            break;
        const float *ref = a->wx[LMP_IN_O];
        for (int64_t i = 0; i < a->L * a->qd; i++)
            a->xo[i] -= ref[i];
        *lmp_calib_gsum_at(&gs, wgroup(a, s)) += out_sq(a->xo, a->L, a->qd, a->blk.w[LMP_LIN_O], a->d, a->obuf);
        tick(a);
    }
    for (int i = 0; i < 3; i++)
        lmp_model_set_linear(a->m, a->layer, (lmp_linear)(LMP_LIN_Q + i), &a->orig[LMP_LIN_Q + i]);
    if (!rc)
        rc = lmp_calib_gsum_end(&gs);
    if (!rc)
        *loss = gs.total[0] / ((double)a->T * (double)a->d);
    lmp_calib_gsum_close(&gs);
    return rc;
}

/* act(g) * u in place on n values: SwiGLU, or GeGLU with the tanh GELU (gemma; the
 * engine's forward.c computes the same) */
static void act_mul1(const awq_ctx *a, float *g, const float *u, int64_t n)
{
    if (lmp_model_config(a->m)->act != LMP_ACT_GELU_TANH) {
        lmp_silu_mul(g, u, n);
        return;
    }
    const float k = 0.7978845608028654f;
    for (int64_t j = 0; j < n; j++) {
        const float x = g[j];
        g[j] = 0.5f * x * (1.0f + tanhf(k * (x + 0.044715f * x * x * x))) * u[j];
    }
}

/* act_mul1 on rows of width w (n = rows * w values), one call per row, rows in parallel:
 * the same bits for any thread count. */
static void act_mul(const awq_ctx *a, float *g, const float *u, int64_t n, int64_t w)
{
    const int64_t rows = n / w;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        act_mul1(a, g + r * w, u + r * w, w);
}

/* gate/up outputs (with biases) of weights wg, wu on k tokens x into g, u (k x ff). */
static void mlp_gu(const awq_ctx *a, const float *x, int64_t k, const float *wg, const float *wu, float *g, float *u)
{
    const int64_t d = a->d, ff = a->ff;
    const float *ws[2] = {wg, wu}, *bs[2] = {a->blk.bias[LMP_LIN_GATE], a->blk.bias[LMP_LIN_UP]};
    float *outs[2] = {g, u};
    for (int i = 0; i < 2; i++) {
        lmp_sgemm_fixed(false, true, k, ff, d, 1.0f, x, d, ws[i], d, 0.0f, outs[i], ff);
        if (bs[i])
            for (int64_t t = 0; t < k; t++)
                for (int64_t j = 0; j < ff; j++)
                    outs[i][t * ff + j] += bs[i][j];
    }
}

/* The original block's act(gate x) * up x of n tokens x (n x d) into href (n x ff), in
 * chunks of CH tokens; buf holds 2 CH ff. */
static void mlp_ref(const awq_ctx *a, const float *x, int64_t n, float *href, float *buf)
{
    const int64_t ff = a->ff;
    for (int64_t t0 = 0; t0 < n; t0 += CH) {
        const int64_t k = n - t0 < CH ? n - t0 : CH;
        mlp_gu(a, x + t0 * a->d, k, a->blk.w[LMP_LIN_GATE], a->blk.w[LMP_LIN_UP], buf, buf + CH * ff);
        act_mul(a, buf, buf + CH * ff, k * ff, ff);
        if (href + t0 * ff != buf) /* (mlp_loss computes one chunk in place) */
            memcpy(href + t0 * ff, buf, sizeof(float) * (size_t)(k * ff));
    }
}

/* MLP output error: down(act(gate x) * up x) with candidate gate/up against the float
 * block's (href, captured with the window), per window
 * in chunks of CH tokens, summed per window group. */
static int mlp_loss(awq_ctx *a, const float *cg, const float *cu, double *loss)
{
    const int64_t d = a->d, ff = a->ff;
    float *buf = malloc(sizeof(float) * (size_t)(2 * CH * ff));
    lmp_calib_gsum gs;
    int rc = lmp_calib_gsum_open(&gs, 1, a->ng, a->split);
    if (!rc && !buf)
        rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ MLP search)");
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        if ((rc = load_window(a, s)))
            break;
        double *acc = lmp_calib_gsum_at(&gs, wgroup(a, s));
        for (int64_t t0 = 0; t0 < a->L; t0 += CH) {
            const int64_t k = a->L - t0 < CH ? a->L - t0 : CH;
            float *gc = buf, *uc = buf + CH * ff;
            mlp_gu(a, a->wx[LMP_IN_MLP] + t0 * d, k, cg, cu, gc, uc);
            act_mul(a, gc, uc, k * ff, ff);
            const float *ref = a->whref + t0 * ff;
            for (int64_t i = 0; i < k * ff; i++)
                gc[i] -= ref[i];
            *acc += out_sq(gc, k, ff, a->blk.w[LMP_LIN_DOWN], d, a->obuf);
        }
    }
    free(buf);
    if (!rc)
        rc = lmp_calib_gsum_end(&gs);
    if (!rc)
        *loss = gs.total[0] / ((double)a->T * (double)d);
    lmp_calib_gsum_close(&gs);
    return rc;
}

/* ---------------------------------------------------------------- the search sample */

#define CHS 512 /* tokens per chunk of the sample's products */

/* dst = W (rows, cols) rounded to bf16 (nearest even), rows in parallel. */
static void to_bf16(const float *W, int64_t rows, int64_t cols, uint16_t *dst)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        lmp_f32_to_bf16_row(W + r * cols, dst + r * cols, cols);
}

static lmp_wmat bmat(const uint16_t *w, int64_t rows, int64_t cols)
{
    return (lmp_wmat){.dtype = LMP_DT_BF16, .rows = rows, .cols = cols, .data = w,
                      .row_bytes = (size_t)cols * sizeof(uint16_t)};
}

/* ||X D^T||_F^2 with the engine's bf16 products (X rounded to bf16, f32 sums) for X
 * (T, in), D bf16 (rows, in), in chunks of CHS tokens (buf: CHS * rows); each token's
 * squares summed in double, the tokens in order (any thread count: the same bits). */
static double out_sq_b(const float *X, int64_t T, int64_t in, const uint16_t *D, int64_t rows, float *buf)
{
    const lmp_wmat w = bmat(D, rows, in);
    double acc = 0, rs[CHS];
    for (int64_t t0 = 0; t0 < T; t0 += CHS) {
        const int64_t k = T - t0 < CHS ? T - t0 : CHS;
        lmp_gemm(buf, X + t0 * in, &w, NULL, k);
#pragma omp parallel for schedule(static)
        for (int64_t t = 0; t < k; t++) {
            double e = 0;
            for (int64_t i = 0; i < rows; i++)
                e += (double)buf[t * rows + i] * buf[t * rows + i];
            rs[t] = e;
        }
        for (int64_t t = 0; t < k; t++)
            acc += rs[t];
    }
    return acc;
}

/* The bf16 copies of the block's linears for its float passes (bf16 mode, see awq_ctx). */
static int bf16_walk(awq_ctx *a, int nlin)
{
    for (int k = 0; k < nlin; k++) {
        const lmp_wmat *o = &a->orig[k];
        const int64_t rows = o->rows, cols = o->cols;
        a->worig[k] = *o;
        if (o->dtype == LMP_DT_BF16 && !o->q && o->layout == LMP_WL_ROWS && o->row_bytes == (size_t)cols * 2) {
            a->wb[k] = o->data;
            continue;
        }
        if (!(a->bwown[k] = malloc(sizeof(uint16_t) * (size_t)(rows * cols))))
            return lmp_err(LMP_ENOMEM, "out of memory for a bf16 copy of layer %d %s", a->layer,
                           lmp_linear_name((lmp_linear)k));
        to_bf16(a->blk.w[k], rows, cols, a->bwown[k]);
        a->wb[k] = a->bwown[k];
        a->orig[k] = bmat(a->bwown[k], rows, cols);
        int rc = lmp_model_set_linear(a->m, a->layer, (lmp_linear)k, &a->orig[k]);
        if (rc)
            return rc;
    }
    return LMP_OK;
}

/* The model's own linears back (after the block's last float pass). */
static void bf16_unwalk(awq_ctx *a)
{
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        if (a->bwown[k]) {
            lmp_model_set_linear(a->m, a->layer, (lmp_linear)k, &a->worig[k]);
            a->orig[k] = a->worig[k];
        }
        free(a->bwown[k]);
        a->bwown[k] = NULL;
        a->wb[k] = NULL;
    }
    free(a->db);
    free(a->db2);
    a->db = a->db2 = NULL;
}

/* splitmix64's finalizer: a fixed hash of a stratum's index */
static uint64_t mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The sample of n_tok (< T) tokens: T cut into ns = T / floor(T / n_tok) strata of step =
 * floor(T / n_tok) consecutive tokens, one token from each at a fixed pseudo-random offset
 * (a plain stride that divides the window length would take the same positions of every
 * window, every window's first token among them); the q/k/v windows, ceil(ns / L) of the N,
 * evenly spread. Depends on T, L and n_tok only (not on ranks or threads). */
static int search_sample(awq_ctx *a, int64_t n_tok)
{
    const int64_t step = a->T / n_tok;
    a->ns = a->T / step;
    a->nqw = (int)((a->ns + a->L - 1) / a->L);
    a->nqw = a->nqw > a->N ? a->N : a->nqw;
    a->stok = malloc(sizeof(int64_t) * (size_t)a->ns);
    a->qw = malloc(sizeof(int) * (size_t)a->nqw);
    a->Sh = malloc(sizeof(float) * (size_t)(a->ns * a->ff));
    a->qin = malloc(sizeof(float) * (size_t)(a->nqw * a->L * a->d));
    a->qref = malloc(sizeof(float) * (size_t)(a->nqw * a->L * a->qd));
    bool ok = a->stok && a->qw && a->Sh && a->qin && a->qref;
    for (int c = 0; c < LMP_IN_COUNT && ok; c++)
        ok = (a->S[c] = malloc(sizeof(float) * (size_t)(a->ns * a->cols[c]))) != NULL;
    if (!ok)
        return lmp_err(LMP_ENOMEM, "out of memory (AWQ's search sample, %lld tokens)", (long long)a->ns);
    for (int64_t i = 0; i < a->ns; i++)
        a->stok[i] = i * step + (int64_t)(mix64((uint64_t)i) % (uint64_t)step);
    for (int j = 0; j < a->nqw; j++)
        a->qw[j] = (int)(((int64_t)(2 * j + 1) * a->N) / (2 * a->nqw));
    return LMP_OK;
}

static void sample_free(awq_ctx *a)
{
    free(a->stok);
    free(a->qw);
    free(a->Sh);
    free(a->qin);
    free(a->qref);
    for (int c = 0; c < LMP_IN_COUNT; c++)
        free(a->S[c]);
}

/* The first sample at or after token t. */
static int64_t sample_at(const awq_ctx *a, int64_t t)
{
    int64_t lo = 0, hi = a->ns;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (a->stok[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Windows [*w0, *w1) rank r of the run holds. */
static void rank_windows(const awq_ctx *a, int r, int *w0, int *w1)
{
    int glo, ghi, x;
    *w0 = *w1 = 0;
    lmp_calib_own_groups(a->ng, r, lmp_dist_size(), &glo, &ghi);
    if (ghi <= glo)
        return;
    lmp_calib_group_windows(a->N, a->ng, glo, w0, &x);
    lmp_calib_group_windows(a->N, a->ng, ghi - 1, &x, w1);
}

/* q[j] += |x[t][j]| over L tokens of width in, every column's sum in token order (columns
 * in parallel: the bits of the serial loop). */
static void add_abs(const float *x, int64_t L, int64_t in, double *q)
{
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < in; j0 += 256) {
        const int64_t j1 = j0 + 256 < in ? j0 + 256 : in;
        for (int64_t t = 0; t < L; t++)
            for (int64_t j = j0; j < j1; j++)
                q[j] += fabs((double)x[t * in + j]);
    }
}

/* Self: window s's inputs of every linear (the float block run with a capture hook) into
 * wbuf, and the MLP's reference activations. */
typedef struct {
    float *buf;
    const int64_t *coff;
    /* a sparse block: the window's routed rows per expert (cnt), their token rows (tok),
     * the down inputs at buf + roff, filled expert by expert (at: rows so far) */
    int *cnt, *tok;
    int64_t roff, at, cap; /* cap: the routed rows a window holds (L x topk) */
} wcap_ctx;

static int wcap_hook(void *user, int layer, lmp_linear which, const float *X, int64_t n, int64_t in)
{
    (void)layer;
    wcap_ctx *c = user;
    const int cls = lmp_linear_input(which), e = lmp_hook_expert();
    if (e < 0) {
        if (which == lmp_input_first(cls))
            memcpy(c->buf + c->coff[cls], X, sizeof(float) * (size_t)(n * in));
        return 0;
    }
    const int *rows = lmp_hook_expert_rows();
    if (!c->cnt || !rows)
        return lmp_err(LMP_EINVAL, "AWQ: expert inputs of a block it did not expect to be sparse");
    if (which == LMP_LIN_GATE) /* every token's normed input: the rows of the tokens routed here */
        for (int64_t i = 0; i < n; i++)
            memcpy(c->buf + c->coff[LMP_IN_MLP] + (int64_t)rows[i] * in, X + i * in, sizeof(float) * (size_t)in);
    else if (which == LMP_LIN_DOWN) { /* experts in ascending order, each called once */
        if (c->at + n > c->cap)
            return lmp_err(LMP_EINVAL, "AWQ: more routed rows in a window than its tokens x experts per token");
        memcpy(c->buf + c->roff + c->at * in, X, sizeof(float) * (size_t)(n * in));
        memcpy(c->tok + c->at, rows, sizeof(int) * (size_t)n);
        c->cnt[e] = (int)n;
        c->at += n;
    }
    return 0;
}

/* Sample mode, step 1: one float run of each of this rank's windows, whose outputs go
 * forward at once (the next block's inputs); from its captured inputs: mean |x| per class
 * (summed per window group), the sampled tokens' inputs, the q/k/v windows' block and
 * o_proj inputs, and (need) the clip search's tokens; then every rank gets the others'
 * rows (exact copies) and computes the samples' MLP references. */
static int awq_inputs_s(awq_ctx *a, const bool need[LMP_IN_COUNT])
{
    const int64_t L = a->L, d = a->d, qd = a->qd;
    int64_t off[LMP_IN_COUNT + 1] = {0};
    for (int c = 0; c < LMP_IN_COUNT; c++)
        off[c + 1] = off[c] + a->cols[c];
    int64_t step = a->T / a->p->awq_clip_tokens;
    step = step < 1 ? 1 : step;
    const int64_t nsc = (a->T + step - 1) / step;
    a->ns_clip = nsc;
    a->step_clip = step;
    lmp_calib_gsum gx;
    int rc = lmp_calib_gsum_open(&gx, (size_t)off[LMP_IN_COUNT], a->ng, a->split);
    for (int c = 0; c < LMP_IN_COUNT && !rc; c++)
        if (need[c] && !(a->Xs[c] = malloc(sizeof(float) * (size_t)(nsc * a->cols[c]))))
            rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ clip samples)");
    wcap_ctx wc = {a->wbuf, a->coff, NULL, NULL, 0, 0, 0};
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        int j = -1;
        for (int q = 0; q < a->nqw; q++)
            if (a->qw[q] == s)
                j = q;
        if ((rc = get_state(a, s, a->scratch)))
            break;
        if (j >= 0)
            memcpy(a->qin + j * L * d, a->scratch, sizeof(float) * (size_t)(L * d));
        if ((rc = lmp_block_run_buf(a->m, a->layer, a->scratch, (int)L, 0, NULL, wcap_hook, &wc, a->bscr)) ||
            (rc = lmp_calib_state_put(a->b, s, a->scratch)))
            break;
        if (j >= 0)
            memcpy(a->qref + j * L * qd, a->wbuf + a->coff[LMP_IN_O], sizeof(float) * (size_t)(L * qd));
        double *acc = lmp_calib_gsum_at(&gx, wgroup(a, s));
        for (int c = 0; c < LMP_IN_COUNT; c++)
            add_abs(a->wbuf + a->coff[c], L, a->cols[c], acc + off[c]);
        const int64_t t0 = (int64_t)s * L, t1 = t0 + L;
        for (int64_t i = sample_at(a, t0); i < a->ns && a->stok[i] < t1; i++)
            for (int c = 0; c < LMP_IN_COUNT; c++)
                memcpy(a->S[c] + i * a->cols[c], a->wbuf + a->coff[c] + (a->stok[i] - t0) * a->cols[c],
                       sizeof(float) * (size_t)a->cols[c]);
        for (int64_t t = (t0 + step - 1) / step; t < nsc && t * step < t1; t++)
            for (int c = 0; c < LMP_IN_COUNT; c++)
                if (need[c])
                    memcpy(a->Xs[c] + t * a->cols[c], a->wbuf + a->coff[c] + (t * step - t0) * a->cols[c],
                           sizeof(float) * (size_t)a->cols[c]);
        tick(a);
    }
    if (!rc)
        rc = lmp_calib_gsum_end(&gx);
    for (int c = 0; c < LMP_IN_COUNT && !rc; c++)
        for (int64_t j = 0; j < a->cols[c]; j++)
            a->xmean[c][j] = (float)(gx.total[off[c] + j] / (double)a->T);
    lmp_calib_gsum_close(&gx);
    if (!rc && a->split && lmp_dist_size() > 1)
        for (int r = 0; r < lmp_dist_size() && !rc; r++) {
            int w0, w1;
            rank_windows(a, r, &w0, &w1);
            if (w1 <= w0)
                continue;
            const int64_t i0 = sample_at(a, (int64_t)w0 * L), i1 = sample_at(a, (int64_t)w1 * L);
            for (int c = 0; c < LMP_IN_COUNT && !rc && i1 > i0; c++)
                rc = lmp_dist_bcast(a->S[c] + i0 * a->cols[c], sizeof(float) * (size_t)((i1 - i0) * a->cols[c]), r);
            for (int q = 0; q < a->nqw && !rc; q++)
                if (a->qw[q] >= w0 && a->qw[q] < w1 &&
                    !(rc = lmp_dist_bcast(a->qin + q * L * d, sizeof(float) * (size_t)(L * d), r)))
                    rc = lmp_dist_bcast(a->qref + q * L * qd, sizeof(float) * (size_t)(L * qd), r);
            int64_t c0 = ((int64_t)w0 * L + step - 1) / step, c1 = ((int64_t)w1 * L + step - 1) / step;
            c1 = c1 < nsc ? c1 : nsc;
            for (int c = 0; c < LMP_IN_COUNT && !rc && c1 > c0; c++)
                if (need[c])
                    rc = lmp_dist_bcast(a->Xs[c] + c0 * a->cols[c], sizeof(float) * (size_t)((c1 - c0) * a->cols[c]),
                                        r);
        }
    if (rc)
        return rc;
    float *buf = malloc(sizeof(float) * (size_t)(2 * CH * a->ff));
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory (AWQ inputs)");
    if (a->bf16) { /* the float block's products, as the candidates' in mlp_loss_s */
        const lmp_wmat wg = bmat(a->wb[LMP_LIN_GATE], a->ff, a->d), wu = bmat(a->wb[LMP_LIN_UP], a->ff, a->d);
        for (int64_t t0 = 0; t0 < a->ns; t0 += CH) {
            const int64_t k = a->ns - t0 < CH ? a->ns - t0 : CH;
            lmp_gemm(buf, a->S[LMP_IN_MLP] + t0 * d, &wg, a->blk.bias[LMP_LIN_GATE], k);
            lmp_gemm(buf + CH * a->ff, a->S[LMP_IN_MLP] + t0 * d, &wu, a->blk.bias[LMP_LIN_UP], k);
            act_mul(a, buf, buf + CH * a->ff, k * a->ff, a->ff);
            memcpy(a->Sh + t0 * a->ff, buf, sizeof(float) * (size_t)(k * a->ff));
        }
    } else {
        mlp_ref(a, a->S[LMP_IN_MLP], a->ns, a->Sh, buf);
    }
    free(buf);
    return LMP_OK;
}

/* ||X D^T||^2 over the sample's tokens of class cls. */
static double samp_sq(awq_ctx *a, int cls, const float *D, int64_t rows)
{
    return out_sq(a->S[cls], a->ns, a->cols[cls], D, rows, a->obuf);
}

/* The same in bf16 (D rounded into buf). */
static double samp_sq_b(awq_ctx *a, int cls, const float *D, int64_t rows, uint16_t *buf)
{
    to_bf16(D, rows, a->cols[cls], buf);
    return out_sq_b(a->S[cls], a->ns, a->cols[cls], buf, rows, a->obuf);
}

/* Sample mode: the q/k/v candidates' attention-module output error on the q/k/v windows. */
static int qkv_loss_s(awq_ctx *a, float *const cand[3], double *loss)
{
    const int64_t L = a->L, d = a->d, qd = a->qd;
    lmp_wmat w[3];
    int rc = LMP_OK;
    int64_t boff = 0;
    for (int i = 0; i < 3 && !rc; i++) {
        lmp_linear k = (lmp_linear)(LMP_LIN_Q + i);
        const int64_t rows = a->orig[k].rows, cols = a->orig[k].cols;
        if (a->bf16) { /* the candidates in bf16, as the walk's linears */
            to_bf16(cand[i], rows, cols, a->db + boff);
            w[i] = bmat(a->db + boff, rows, cols);
            boff += rows * cols;
        } else {
            w[i] = (lmp_wmat){.dtype = LMP_DT_F32, .rows = rows, .cols = cols, .data = cand[i],
                              .row_bytes = (size_t)cols * sizeof(float)};
        }
        rc = lmp_model_set_linear(a->m, a->layer, k, &w[i]);
    }
    double acc = 0;
    for (int j = 0; j < a->nqw && !rc; j++) {
        memcpy(a->scratch, a->qin + j * L * d, sizeof(float) * (size_t)(L * d));
        if ((rc = lmp_block_run_stages(a->m, a->layer, a->scratch, (int)L, LMP_STAGE_IN, LMP_STAGE_O, NULL, NULL,
                                       a->bscr)))
            break;
        int64_t wd;
        const float *o = lmp_block_stage_buf(a->m, a->bscr, (int)L, LMP_STAGE_O, &wd), *ref = a->qref + j * L * qd;
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < L * qd; i++)
            a->xo[i] = o[i] - ref[i];
        acc += a->bf16 ? out_sq_b(a->xo, L, qd, a->wb[LMP_LIN_O], d, a->obuf)
                       : out_sq(a->xo, L, qd, a->blk.w[LMP_LIN_O], d, a->obuf);
    }
    for (int i = 0; i < 3; i++)
        lmp_model_set_linear(a->m, a->layer, (lmp_linear)(LMP_LIN_Q + i), &a->orig[LMP_LIN_Q + i]);
    *loss = acc / ((double)a->nqw * (double)L * (double)d);
    return rc;
}

/* Sample mode: the MLP's output error with candidate gate/up on the sampled tokens. */
static int mlp_loss_s(awq_ctx *a, const float *cg, const float *cu, double *loss)
{
    const int64_t d = a->d, ff = a->ff;
    float *buf = malloc(sizeof(float) * (size_t)(2 * CHS * ff));
    if (!buf)
        return lmp_err(LMP_ENOMEM, "out of memory (AWQ MLP search)");
    double acc = 0;
    lmp_wmat wg, wu;
    if (a->bf16) {
        to_bf16(cg, ff, d, a->db);
        to_bf16(cu, ff, d, a->db2);
        wg = bmat(a->db, ff, d);
        wu = bmat(a->db2, ff, d);
    }
    for (int64_t t0 = 0; t0 < a->ns; t0 += CHS) {
        const int64_t k = a->ns - t0 < CHS ? a->ns - t0 : CHS;
        float *gc = buf, *uc = buf + CHS * ff;
        const float *ref = a->Sh + t0 * ff;
        if (a->bf16) {
            lmp_gemm(gc, a->S[LMP_IN_MLP] + t0 * d, &wg, a->blk.bias[LMP_LIN_GATE], k);
            lmp_gemm(uc, a->S[LMP_IN_MLP] + t0 * d, &wu, a->blk.bias[LMP_LIN_UP], k);
        } else {
            mlp_gu(a, a->S[LMP_IN_MLP] + t0 * d, k, cg, cu, gc, uc);
        }
        act_mul(a, gc, uc, k * ff, ff);
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < k * ff; i++)
            gc[i] -= ref[i];
        acc += a->bf16 ? out_sq_b(gc, k, ff, a->wb[LMP_LIN_DOWN], d, a->obuf)
                       : out_sq(gc, k, ff, a->blk.w[LMP_LIN_DOWN], d, a->obuf);
    }
    free(buf);
    *loss = acc / ((double)a->ns * (double)d);
    return LMP_OK;
}

/* s = mean|x|^r (/ (w_mean^(1-r) + 1e-4) with duo scaling), clamped at 1e-4, divided by
 * sqrt(max * min); non-finite entries 1 (_compute_best_scale). */
static void make_scales(const float *xm, const float *wm, int64_t n, float ratio, float *s)
{
    float mx = -FLT_MAX, mn = FLT_MAX;
    for (int64_t j = 0; j < n; j++) {
        float v = powf(xm[j], ratio);
        if (wm)
            v = v / (powf(wm[j], 1.0f - ratio) + 1e-4f);
        v = fmaxf(v, 1e-4f);
        s[j] = v;
        mx = fmaxf(mx, v);
        mn = fminf(mn, v);
    }
    float norm = sqrtf(mx * mn);
    for (int64_t j = 0; j < n; j++) {
        s[j] /= norm;
        if (!isfinite(s[j]))
            s[j] = 1.0f;
    }
}

/* w_mean of _search_best_scale: the group's weights stacked, |w| / (max |w| of its
 * quantization group + 1e-6), averaged over all rows. */
static void weight_mean(const awq_ctx *a, int g, int64_t in, float *wm)
{
    const int gs = eff_gs_lin(a->p, a->layer, g_lins[g][0], in); /* a plan gives a group's linears one setting */
    double *acc = calloc((size_t)in, sizeof(double));
    int64_t nrows = 0;
    if (!acc) { /* degrade to x-only scales rather than fail */
        for (int64_t c = 0; c < in; c++)
            wm[c] = 1.0f;
        return;
    }
    for (int i = 0; g_lins[g][i] != LMP_LIN_COUNT; i++) {
        lmp_linear k = g_lins[g][i];
        const float *W = a->blk.w[k];
        int64_t rows = lin_rows(a, k);
        /* column groups in parallel, each column's rows in order: the serial loop's sums */
#pragma omp parallel for schedule(static)
        for (int64_t c0 = 0; c0 < in; c0 += gs)
            for (int64_t r = 0; r < rows; r++) {
                int64_t c1 = c0 + gs < in ? c0 + gs : in;
                float amax = 0;
                for (int64_t c = c0; c < c1; c++)
                    amax = fmaxf(amax, fabsf(W[r * in + c]));
                for (int64_t c = c0; c < c1; c++)
                    acc[c] += fabsf(W[r * in + c]) / (amax + 1e-6f);
            }
        nrows += rows;
    }
    for (int64_t c = 0; c < in; c++)
        wm[c] = (float)(acc[c] / (double)nrows);
    free(acc);
}

/* Grid search of group g's scales into best (in). *ratio gets the chosen alpha. The
 * losses of q/k/v and gate/up run over this rank's windows (summed per window group);
 * o's and down's, from the Gram matrix every rank holds, are split among the ranks by
 * candidate and their losses shared (split runs); the first smallest loss wins. */
static int search_scales(awq_ctx *a, int g, float *best, float *ratio_out)
{
    const int cls = g_class[g];
    const int64_t in = a->cols[cls];
    const int grid = a->p->awq_grid;
    const bool sym = a->p->sym;
    float *s = malloc(sizeof(float) * (size_t)in), *wm = NULL, *cand[3] = {0};
    double *losses = malloc(sizeof(double) * (size_t)(grid > 0 ? grid : 1));
    int n = 0, rc = LMP_OK;
    for (; g_lins[g][n] != LMP_LIN_COUNT; n++) {
        int64_t r = lin_rows(a, g_lins[g][n]);
        cand[n] = malloc(sizeof(float) * (size_t)(r * in));
        if (!cand[n])
            rc = LMP_ENOMEM;
    }
    if (a->p->awq_duo_scaling)
        wm = malloc(sizeof(float) * (size_t)in);
    if (rc || !s || !losses || (a->p->awq_duo_scaling && !wm)) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ scale search)");
        goto done;
    }
    if (wm)
        weight_mean(a, g, in, wm);
    /* candidates [ilo, ihi) here: all, or this rank's share when the loss needs no window */
    const bool share =
        a->split && lmp_dist_size() > 1 && (a->samp || ((g == LMP_AWQ_VO || g == LMP_AWQ_DOWN) && a->G[cls]));
    int64_t ilo = 0, ihi = grid;
    if (share)
        lmp_dist_share(grid, &ilo, &ihi);
    for (int i = (int)ilo; i < (int)ihi; i++) {
        float r = (float)i / (float)grid;
        make_scales(a->xmean[cls], wm, in, r, s);
        for (int k = 0; k < n; k++) { /* Q(W diag(s)) diag(s)^-1 */
            lmp_linear lk = g_lins[g][k];
            scaled_fake_quant(a->blk.w[lk], s, cand[k], lin_rows(a, lk), in, eff_gs_lin(a->p, a->layer, lk, in),
                              lmp_qpipe_lin_bits(a->p, a->layer, lk), sym);
        }
        double loss = 0;
        if (a->samp && g == LMP_AWQ_QKV) {
            if ((rc = qkv_loss_s(a, cand, &loss)))
                goto done;
            tick(a);
        } else if (a->samp && g == LMP_AWQ_MLP) {
            if ((rc = mlp_loss_s(a, cand[0], cand[1], &loss)))
                goto done;
            tick(a);
        } else if (g == LMP_AWQ_QKV) {
            if ((rc = qkv_loss(a, cand, &loss)))
                goto done;
        } else if (g == LMP_AWQ_MLP) {
            if ((rc = mlp_loss(a, cand[0], cand[1], &loss)))
                goto done;
            tick(a);
        } else {
            lmp_linear lk = g_lins[g][0];
            int64_t rows = lin_rows(a, lk);
            const float *W = a->blk.w[lk];
            float *D = cand[0];
#pragma omp parallel for schedule(static)
            for (int64_t e = 0; e < rows * in; e++)
                D[e] = W[e] - D[e];
            if (a->samp)
                loss = (a->bf16 ? samp_sq_b(a, cls, D, rows, a->db) : samp_sq(a, cls, D, rows)) /
                       ((double)a->ns * (double)rows);
            else if ((rc = lin_sq(a, cls, D, rows, &loss)))
                goto done;
            else
                loss /= (double)a->T * (double)rows;
            tick(a);
        }
        losses[i] = loss;
    }
    if (share) /* every rank's candidates' losses, from it */
        for (int r = 0; r < lmp_dist_size() && !rc; r++) {
            const int64_t q = grid / lmp_dist_size(), e = grid % lmp_dist_size();
            const int64_t lo = r * q + (r < e ? r : e), hi = lo + q + (r < e);
            if (hi > lo)
                rc = lmp_dist_bcast(losses + lo, sizeof(double) * (size_t)(hi - lo), r);
        }
    if (rc)
        goto done;
    double best_loss = INFINITY;
    int bi = -1;
    for (int i = 0; i < grid; i++)
        if (losses[i] < best_loss) {
            best_loss = losses[i];
            bi = i;
        }
    if (!(best_loss < INFINITY)) {
        rc = lmp_err(LMP_ERANGE, "AWQ: layer %d: no finite loss in the scale search of %s", a->layer,
                     lmp_linear_name(g_lins[g][0]));
        goto done;
    }
    *ratio_out = (float)bi / (float)grid;
    if (getenv("LMP_AWQ_TRACE")) /* measurements (docs/benchmarks.md): the chosen ratio and the losses */
        lmp_info("awq trace: layer %d group %d ratio %d/%d loss %.9g (ratio 0: %.9g)", a->layer, g, bi, grid, best_loss,
                 losses[0]);
    make_scales(a->xmean[cls], wm, in, *ratio_out, best);
done:
    free(s);
    free(wm);
    free(losses);
    for (int k = 0; k < 3; k++)
        free(cand[k]);
    return rc;
}

/* _compute_best_clip for linear k: per (row, group) the max |w| shrunk by 1 - i/20
 * (i < 10) minimizing mean over sampled tokens of (x . (Q(clamp(w)) - w))^2, computed
 * as d^T G d with G = X^T X / n of the group's columns; then W clamped. The sampled tokens
 * (every step-th of all windows, a->Xs) are gathered on every rank (clip_samples). */
static int clip_core(awq_ctx *a, float *W, int64_t rows, int64_t in, const float *Xs, int64_t ns, int gs, int bits,
                     float *thr);

static int clip_linear(awq_ctx *a, lmp_linear k)
{
    const int cls = lmp_linear_input(k);
    const int64_t in = a->cols[cls];
    return clip_core(a, a->blk.w[k], lin_rows(a, k), in, a->Xs[cls], a->ns_clip, eff_gs_lin(a->p, a->layer, k, in),
                     lmp_qpipe_lin_bits(a->p, a->layer, k), NULL);
}

/* The sampled token t of every step-th: its rows per class from this rank's windows, then
 * each rank's rows from it (exact copies: the same rows as one process samples). */
static int clip_samples(awq_ctx *a, const bool need[LMP_IN_COUNT])
{
    int64_t step = a->T / a->p->awq_clip_tokens;
    if (step < 1)
        step = 1;
    const int64_t ns = (a->T + step - 1) / step, L = a->L;
    a->ns_clip = ns;
    a->step_clip = step;
    for (int c = 0; c < LMP_IN_COUNT; c++)
        if (need[c] && !(a->Xs[c] = malloc(sizeof(float) * (size_t)(ns * a->cols[c]))))
            return lmp_err(LMP_ENOMEM, "out of memory (AWQ clip samples)");
    int rc = LMP_OK;
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        int64_t t = ((int64_t)s * L + step - 1) / step; /* the first sample at or after the window's start */
        if (t >= ns || t * step >= (int64_t)(s + 1) * L || (rc = load_window(a, s)))
            continue;
        for (; t < ns && t * step < (int64_t)(s + 1) * L; t++)
            for (int c = 0; c < LMP_IN_COUNT; c++)
                if (need[c])
                    memcpy(a->Xs[c] + t * a->cols[c], a->wx[c] + (t * step - (int64_t)s * L) * a->cols[c],
                           sizeof(float) * (size_t)a->cols[c]);
    }
    if (rc || !a->split || lmp_dist_size() < 2)
        return rc;
    for (int r = 0; r < lmp_dist_size() && !rc; r++) {
        int glo, ghi, wlo, whi, x;
        lmp_calib_own_groups(a->ng, r, lmp_dist_size(), &glo, &ghi);
        if (ghi <= glo)
            continue;
        lmp_calib_group_windows(a->N, a->ng, glo, &wlo, &x);
        lmp_calib_group_windows(a->N, a->ng, ghi - 1, &x, &whi);
        int64_t t0 = ((int64_t)wlo * L + step - 1) / step, t1 = ((int64_t)whi * L + step - 1) / step;
        t1 = t1 < ns ? t1 : ns;
        for (int c = 0; c < LMP_IN_COUNT && !rc && t1 > t0; c++)
            if (need[c])
                rc = lmp_dist_bcast(a->Xs[c] + t0 * a->cols[c], sizeof(float) * (size_t)((t1 - t0) * a->cols[c]), r);
    }
    return rc;
}

/* W (rows, in) clamped per (row, group of gs columns) at thr (rows x in / gs). */
static void clip_apply(float *W, int64_t rows, int64_t in, int gs, const float *thr)
{
    const int64_t ng = in / gs;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++)
        for (int64_t j = 0; j < in; j++) {
            const float b = thr[r * ng + j / gs];
            W[r * in + j] = fminf(fmaxf(W[r * in + j], -b), b);
        }
}

/* (thr: when not NULL, the chosen clamp of every (row, group), rows x in / gs, for
 * clip_apply elsewhere) */
static int clip_core(awq_ctx *a, float *W, int64_t rows, int64_t in, const float *Xs, int64_t ns, int gs, int bits,
                     float *thr)
{
    const bool sym = a->p->sym;
    enum { N_GRID = 20, N_SHRINK = 10 }; /* n_grid 20, max_shrink 0.5 */
    const bool v512 = use_512();
    float *G = malloc(sizeof(float) * (size_t)gs * gs);
    float *D = malloc(sizeof(float) * (size_t)(rows * gs)), *P = malloc(sizeof(float) * (size_t)(rows * gs));
    float *orgmax = malloc(sizeof(float) * (size_t)rows), *best = malloc(sizeof(float) * (size_t)rows);
    double *minerr = malloc(sizeof(double) * (size_t)rows);
    int rc = LMP_OK;
    if (!G || !D || !P || !orgmax || !best || !minerr) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ clip search)");
        goto done;
    }
    for (int64_t c0 = 0; c0 < in; c0 += gs) {
        lmp_sgemm_fixed(true, false, gs, gs, ns, 1.0f / (float)ns, Xs + c0, in, Xs + c0, in, 0.0f, G, gs);
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++) {
            float m = 0;
            for (int j = 0; j < gs; j++)
                m = fmaxf(m, fabsf(W[r * in + c0 + j]));
            orgmax[r] = best[r] = m;
            minerr[r] = 1e9;
        }
        for (int i = 0; i < N_SHRINK; i++) {
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                const float *w = W + r * in + c0;
                float mx = orgmax[r] * (1.0f - (float)i / N_GRID), *d = D + r * gs;
                group_fake_x(w, d, gs, bits, sym, NULL, mx > 0 ? mx : 0, v512);
                for (int j = 0; j < gs; j++)
                    d[j] -= w[j];
            }
            lmp_sgemm_fixed(false, false, rows, gs, gs, 1.0f, D, gs, G, gs, 0.0f, P, gs);
#pragma omp parallel for schedule(static)
            for (int64_t r = 0; r < rows; r++) {
                double e = 0;
                for (int j = 0; j < gs; j++)
                    e += (double)D[r * gs + j] * P[r * gs + j];
                if (e < minerr[r]) {
                    minerr[r] = e;
                    best[r] = orgmax[r] * (1.0f - (float)i / N_GRID);
                }
            }
        }
#pragma omp parallel for schedule(static)
        for (int64_t r = 0; r < rows; r++)
            for (int j = 0; j < gs; j++) {
                float *w = &W[r * in + c0 + j];
                *w = fminf(fmaxf(*w, -best[r]), best[r]);
            }
        for (int64_t r = 0; thr && r < rows; r++)
            thr[r * (in / gs) + c0 / gs] = best[r];
    }
done:
    free(G);
    free(D);
    free(P);
    free(orgmax);
    free(best);
    free(minerr);
    return rc;
}

/* sqrt(||X (Wref - Q)^T||^2 / ||X Wref^T||^2) over all captured tokens into *out. */
static int rel_err(awq_ctx *a, int cls, const float *Wref, const float *Q, int64_t rows, float *D, double *out)
{
    int64_t in = a->cols[cls];
#pragma omp parallel for schedule(static)
    for (int64_t e = 0; e < rows * in; e++)
        D[e] = Wref[e] - Q[e];
    double num = 0, den = 0;
    int rc = LMP_OK;
    if (a->samp && a->bf16) {
        num = samp_sq_b(a, cls, D, rows, a->db);
        den = samp_sq_b(a, cls, Wref, rows, a->db2);
    } else if (a->samp) {
        num = samp_sq(a, cls, D, rows);
        den = samp_sq(a, cls, Wref, rows);
    } else if (!(rc = lin_sq(a, cls, D, rows, &num)))
        rc = lin_sq(a, cls, Wref, rows, &den);
    *out = den > 0 ? sqrt(num / den) : 0.0;
    return rc;
}

static float *dup_vec(const float *v, int64_t n)
{
    float *o = malloc(sizeof(float) * (size_t)n);
    if (o)
        memcpy(o, v, sizeof(float) * (size_t)n);
    return o;
}

static void block_free(awq_ctx *a)
{
    for (int c = 0; c < LMP_IN_COUNT; c++) {
        free(a->G[c]);
        free(a->Xs[c]);
        a->G[c] = NULL;
        a->Xs[c] = NULL;
        a->xs[c] = NULL;
    }
    for (int g = 0; g < LMP_AWQ_NGROUPS; g++) {
        free(a->sv[g]);
        a->sv[g] = NULL;
    }
    a->wcur = -1;
    free(a->blk.attn_norm);
    free(a->blk.ffn_norm);
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        free(a->blk.bias[k]);
        free(a->blk.w[k]);
        free(a->wfold[k]);
        a->wfold[k] = NULL;
    }
    memset(&a->blk, 0, sizeof a->blk);
}

static int awq_moe_block(awq_ctx *a, lmp_qlinear_stats *st);


/* 1. the inputs of every linear of this rank's windows (captured here into cap) and
 * their sums per window group: mean |x| per class (a sparse block: and per expert of its
 * routed down inputs) and the Gram matrices X^T X of the classes with more tokens than
 * columns (f32 per window, added in double); a sparse block's routed rows per window and
 * expert then reach every rank (wcnt). */
static int awq_inputs(awq_ctx *a, int nclass)
{
    const bool sparse = a->E > 0;
    int64_t off[LMP_IN_COUNT + 1] = {0};
    for (int c = 0; c < nclass; c++)
        off[c + 1] = off[c] + a->cols[c];
    const int64_t eoff = off[nclass], en = sparse ? (int64_t)a->E * a->eff : 0; /* the experts' |x| sums */
    lmp_calib_gsum gx, gg[LMP_IN_COUNT];
    memset(gg, 0, sizeof gg);
    int rc = lmp_calib_gsum_open(&gx, (size_t)(eoff + en), a->ng, a->split);
    for (int c = 0; c < nclass && !rc; c++)
        if (a->gram[c])
            rc = lmp_calib_gsum_open(&gg[c], (size_t)(a->cols[c] * a->cols[c]), a->ng, a->split);
    float *mbuf = sparse ? NULL : malloc(sizeof(float) * (size_t)(2 * CH * a->ff));
    if (!rc && !sparse && !mbuf)
        rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ inputs)");
    wcap_ctx wc = {a->wbuf, a->coff, NULL, NULL, a->roff, 0, (int64_t)a->L * a->topk};
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        a->wcur = -1;
        if (sparse) {
            wc.cnt = a->wcnt + (int64_t)s * a->Emax;
            wc.tok = a->rtok + (int64_t)(s - a->wlo) * a->L * a->topk;
            wc.at = 0;
            memset(wc.cnt, 0, sizeof(int) * (size_t)a->Emax);
        }
        if ((rc = get_state(a, s, a->scratch)) ||
            (rc = lmp_block_run(a->m, a->layer, a->scratch, a->L, 0, NULL, wcap_hook, &wc)))
            break;
        if (sparse && wc.at != (int64_t)a->L * a->topk) {
            rc = lmp_err(LMP_EINVAL, "AWQ: layer %d: %lld routed rows in a window of %d tokens, expected %d per token",
                         a->layer, (long long)wc.at, a->L, a->topk);
            break;
        }
        if (!sparse)
            mlp_ref(a, a->wbuf + a->coff[LMP_IN_MLP], a->L, a->wbuf + a->hoff, mbuf);
        if ((rc = lmp_calib_store_put(&a->cap, s - a->wlo, a->wbuf)))
            break;
        tick(a);
        if ((rc = load_window(a, s)))
            break;
        const int g = wgroup(a, s);
        double *acc = lmp_calib_gsum_at(&gx, g);
        for (int c = 0; c < nclass; c++) {
            const int64_t in = a->cols[c];
            const float *x = a->wx[c];
            add_abs(x, a->L, in, acc + off[c]); /* every token, in order */
            if (!a->gram[c])
                continue;
            double *h = lmp_calib_gsum_at(&gg[c], g);
            const float *gw = a->gw;
            lmp_ssyrk_fixed_upper(a->gw, in, x, a->L, 1.0f);
#pragma omp parallel for schedule(dynamic, 16)
            for (int64_t i = 0; i < in; i++)
                for (int64_t j = i; j < in; j++)
                    h[i * in + j] += gw[i * in + j];
        }
        for (int e = 0; e < a->E; e++) { /* each expert's routed rows, in order */
            const float *xd;
            const int64_t n = win_expert(a, s, e, NULL, &xd);
            add_abs(xd, n, a->eff, acc + eoff + (int64_t)e * a->eff);
        }
    }
    free(mbuf);
    if (sparse && !rc) { /* every rank's windows' routed rows per expert */
        for (int r = 0; r < lmp_dist_size() && a->split && !rc; r++) {
            int w0, w1;
            rank_windows(a, r, &w0, &w1);
            if (w1 > w0)
                rc = lmp_dist_bcast(a->wcnt + (int64_t)w0 * a->Emax, sizeof(int) * (size_t)((w1 - w0) * a->Emax), r);
        }
        for (int e = 0; e < a->E; e++) {
            a->ecnt[e] = 0;
            for (int s = 0; s < a->N; s++)
                a->ecnt[e] += a->wcnt[(int64_t)s * a->Emax + e];
        }
    }
    if (!rc)
        rc = lmp_calib_gsum_end(&gx);
    for (int e = 0; e < a->E && !rc; e++)
        for (int64_t j = 0; j < a->eff; j++)
            a->exm[e * a->eff + j] =
                a->ecnt[e] ? (float)(gx.total[eoff + e * a->eff + j] / (double)a->ecnt[e]) : 0.0f;
    for (int c = 0; c < nclass && !rc; c++) {
        for (int64_t j = 0; j < a->cols[c]; j++)
            a->xmean[c][j] = (float)(gx.total[off[c] + j] / (double)a->T);
        if (!a->gram[c] || (rc = lmp_calib_gsum_end(&gg[c])))
            continue;
        const int64_t in = a->cols[c];
        if (!(a->G[c] = malloc(sizeof(float) * (size_t)(in * in)))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ Gram matrix %lld x %lld)", (long long)in, (long long)in);
            break;
        }
        for (int64_t i = 0; i < in; i++)
            for (int64_t j = i; j < in; j++)
                a->G[c][i * in + j] = a->G[c][j * in + i] = (float)gg[c].total[i * in + j];
        lmp_calib_gsum_close(&gg[c]);
    }
    lmp_calib_gsum_close(&gx);
    for (int c = 0; c < LMP_IN_COUNT; c++)
        lmp_calib_gsum_close(&gg[c]);
    return rc;
}

/* Self: the float block's outputs of this rank's windows become the next block's inputs. */
static int awq_forward(awq_ctx *a)
{
    int rc = LMP_OK;
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        if (!(rc = get_state(a, s, a->scratch)) &&
            !(rc = lmp_block_run(a->m, a->layer, a->scratch, a->L, 0, NULL, NULL, NULL)))
            rc = lmp_calib_state_put(a->b, s, a->scratch);
        tick(a);
    }
    return rc;
}

/* One block: inputs, search, fold, clip, quantize (self: then the float outputs forward).
 * qt / st are filled for the sinks. */
static int awq_block(awq_ctx *a, lmp_qtensor *qt, lmp_qlinear_stats *st)
{
    const lmp_qpipe_params *p = a->p;
    const int l = a->layer;
    int rc = LMP_OK;
    float **s = a->sv, *Q = NULL, *D = NULL;
    int64_t maxw = 0;
    const bool sparse = a->E > 0;
    const int nlin = sparse ? LMP_LIN_GATE : LMP_LIN_COUNT; /* a sparse block's FFN: awq_moe_block */
    for (int k = 0; k < nlin; k++) {
        a->orig[k] = *lmp_model_linear(a->m, l, (lmp_linear)k);
        char name[LMP_MAX_NAME];
        lmp_linear_hf_prefix(l, (lmp_linear)k, name, sizeof name);
        if ((rc = lmp_calib_weight_f32(&a->orig[k], name, &a->blk.w[k])))
            goto done;
        int64_t n = a->orig[k].rows * a->orig[k].cols;
        maxw = n > maxw ? n : maxw;
        const float *b = lmp_awq_model_bias(a->m, l, (lmp_linear)k);
        if (b && !(a->blk.bias[k] = dup_vec(b, a->orig[k].rows)))
            goto oom;
    }
    a->prenorm = lmp_model_config(a->m)->norms != LMP_NORM_POST && lmp_awq_model_norm(a->m, l, false) &&
                 lmp_awq_model_norm(a->m, l, true);
    if (a->prenorm && (!(a->blk.attn_norm = dup_vec(lmp_awq_model_norm(a->m, l, false), a->d)) ||
                       !(a->blk.ffn_norm = dup_vec(lmp_awq_model_norm(a->m, l, true), a->d))))
        goto oom;
    Q = malloc(sizeof(float) * (size_t)maxw);
    D = malloc(sizeof(float) * (size_t)maxw);
    if (!Q || !D)
        goto oom;
    if (a->bf16 && (rc = bf16_walk(a, nlin)))
        goto done;
    if (a->bf16 && a->samp) {
        const int64_t qkv = (a->qd + 2 * a->kvd) * a->d, n = qkv > maxw ? qkv : maxw;
        a->db = malloc(sizeof(uint16_t) * (size_t)n);
        a->db2 = malloc(sizeof(uint16_t) * (size_t)n);
        if (!a->db || !a->db2)
            goto oom;
    }

    /* 1. the inputs of every linear, their means and Gram matrices (the Grams of the
     * classes the dense linears read: a sparse block's FFN has its own path) */
    const int nclass = sparse ? LMP_IN_DOWN : LMP_IN_COUNT;
    bool need[LMP_IN_COUNT] = {0}; /* the classes the clip search reads */
    for (int k = LMP_LIN_V; k < nlin && p->awq_clip; k++)
        need[lmp_linear_input((lmp_linear)k)] = true;
    for (int c = 0; c < LMP_IN_COUNT; c++)
        a->gram[c] = !a->samp && c < (sparse ? LMP_IN_MLP : LMP_IN_COUNT) && a->T > a->cols[c];
    if ((rc = a->samp ? awq_inputs_s(a, need) : awq_inputs(a, nclass)))
        goto done;
    /* RTN (AWQ's quantizer, no scales, no clip) on the original weights, for comparison */
    for (int k = 0; k < nlin && p->compare_rtn; k++) {
        int64_t rows = a->orig[k].rows, in = a->orig[k].cols;
        fake_quant(a->blk.w[k], Q, rows, in, eff_gs_lin(p, l, (lmp_linear)k, in), lmp_qpipe_lin_bits(p, l, (lmp_linear)k),
                   p->sym);
        if ((rc = rel_err(a, lmp_linear_input((lmp_linear)k), a->blk.w[k], Q, rows, D, &st[k].err_rtn)))
            goto done;
    }

    /* 2. scale search, every group on the original block (as the reference) */
    for (int g = 0; g < LMP_AWQ_NGROUPS; g++) {
        if ((g == LMP_AWQ_VO && !lmp_awq_has_vo(lmp_model_config(a->m))) || (sparse && g >= LMP_AWQ_MLP) ||
            (!a->prenorm && (g == LMP_AWQ_QKV || g == LMP_AWQ_MLP)))
            continue;
        float ratio = 0;
        if (!(s[g] = malloc(sizeof(float) * (size_t)a->cols[g_class[g]])))
            goto oom;
        if ((rc = search_scales(a, g, s[g], &ratio)))
            goto done;
    }
    /* 3. fold; the captured inputs become the inputs of the folded block (self: divided
     * as they are read) */
    if ((rc = lmp_awq_fold(&a->blk, lmp_model_config(a->m), (const float *const *)s)))
        goto done;
    for (int g = 0; g < LMP_AWQ_NGROUPS; g++) {
        if (!s[g])
            continue;
        int c = g_class[g];
        const int64_t in = a->cols[c];
        if (a->samp) {
            for (int64_t t = 0; t < a->ns; t++)
                for (int64_t j = 0; j < in; j++)
                    a->S[c][t * in + j] /= s[g][j];
            for (int64_t t = 0; a->Xs[c] && t < a->ns_clip; t++)
                for (int64_t j = 0; j < in; j++)
                    a->Xs[c][t * in + j] /= s[g][j];
        } else {
            a->xs[c] = s[g];
            a->wcur = -1;
        }
        if (a->G[c]) /* X diag(1/s): G -> diag(1/s) G diag(1/s) */
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < in; i++)
                for (int64_t j = 0; j < in; j++)
                    a->G[c][i * in + j] /= s[g][i] * s[g][j];
    }
    for (int k = 0; k < nlin; k++)
        if (!(a->wfold[k] = dup_vec(a->blk.w[k], a->orig[k].rows * a->orig[k].cols)))
            goto oom;
    /* clipping (not q/k: "due to qk bmm, it is hard to clip precisely") on sampled tokens */
    if (p->awq_clip) {
        if (!a->samp && (rc = clip_samples(a, need)))
            goto done;
        for (int k = LMP_LIN_V; k < nlin; k++) {
            if ((rc = clip_linear(a, (lmp_linear)k)))
                goto done;
            tick(a);
        }
    }
    /* 4. quantize */
    for (int k = 0; k < nlin; k++) {
        double t0 = lmp_time_s();
        int64_t rows = a->orig[k].rows, in = a->orig[k].cols;
        lmp_qlinear_stats *sk = &st[k];
        sk->layer = l;
        sk->which = (lmp_linear)k;
        sk->rows = rows;
        sk->cols = in;
        sk->loss = -1;
        if (!p->compare_rtn)
            sk->err_rtn = -1;
        lmp_linear_hf_prefix(l, (lmp_linear)k, sk->name, sizeof sk->name);
        if ((rc = lmp_awq_quant(a->blk.w[k], rows, in, lmp_qpipe_lin_bits(p, l, (lmp_linear)k),
                                 lmp_qpipe_lin_group(p, l, (lmp_linear)k), p->sym, &qt[k]))) {
            rc = lmp_err_prefix(rc, "%s.weight", sk->name);
            goto done;
        }
        snprintf(qt[k].name, sizeof qt[k].name, "%s", sk->name);
        lmp_qtensor_dequant(&qt[k], Q);
        if ((rc = rel_err(a, lmp_linear_input((lmp_linear)k), a->wfold[k], Q, rows, D, &sk->err)))
            goto done;
        sk->seconds = lmp_time_s() - t0;
        tick(a);
    }
    if (sparse && (rc = awq_moe_block(a, st)))
        goto done;
    if (!a->samp) /* (sample mode: forwarded as the inputs were captured) */
        rc = awq_forward(a);
    goto done;
oom:
    rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ, block %d)", l);
done:
    bf16_unwalk(a);
    free(Q);
    free(D);
    return rc;
}

/* ---------------------------------------------------------------- experts -------- */
/* AWQ on a sparse block (mixtral, qwen3_moe), as AutoAWQ's Mixtral / Qwen3-MoE mappings
 * (awq/models/mixtral.py, qwen3_moe.py) group it: ONE scale for every expert's gate and
 * up projections, since they all read post_attention_layernorm's output and the scale is
 * folded into that norm, searched on the inputs of every token (the whole MoE input); then
 * per expert its own up -> down scale from the tokens routed to it. The router reads the
 * same normed input: its columns are multiplied by the scale (it stays unquantized), so
 * routing is unchanged by the fold; AutoAWQ's mappings leave the router out (its input
 * then changes), llm-compressor added it to the balanced layers (vllm-project/
 * llm-compressor#2451), which is what is done here. The gate/up search loss is the sum,
 * over routed (token, expert) pairs, of that expert's output error (AutoAWQ measures the
 * whole block's output, which weights the pairs by their routing weights). Clipping and
 * the error figures use each expert's routed tokens. Experts no calibration token reached
 * get the shared scale (the fold must hold for every expert), no down scale and no
 * clipping, and are named in a warning. */

/* The windows (calib_dist.h): every sum over an expert's routed rows is taken per window
 * over this rank's windows, summed per window group and the groups combined in group order
 * (lmp_calib_gsum, collective when split), so the bits do not depend on the rank count.
 * fn adds n doubles into acc for the rows of one window: xg their gate/up inputs (rows x d,
 * gathered when asked), xd their down inputs (rows x eff). */
typedef void (*erows_fn)(awq_ctx *a, const float *xg, const float *xd, int64_t rows, double *acc, void *u);

static int expert_sum(awq_ctx *a, int e, size_t n, bool gather, erows_fn fn, void *u, double *out)
{
    lmp_calib_gsum gs;
    int rc = lmp_calib_gsum_open(&gs, n, a->ng, a->split);
    for (int s = a->wlo; s < a->whi && !rc; s++) {
        double *acc = lmp_calib_gsum_at(&gs, wgroup(a, s));
        if (!a->wcnt[(int64_t)s * a->Emax + e] || (rc = load_window(a, s)))
            continue;
        const float *xd;
        const int64_t k = win_expert(a, s, e, gather ? a->exg : NULL, &xd);
        fn(a, a->exg, xd, k, acc, u);
    }
    if (!rc)
        rc = lmp_calib_gsum_end(&gs);
    if (!rc)
        memcpy(out, gs.total, sizeof(double) * n);
    lmp_calib_gsum_close(&gs);
    return rc;
}

/* error figures: ||X D_q^T||^2 and ||X W_q^T||^2 of gate, up (X: gate/up inputs) and down */
typedef struct {
    const float *D[3], *W[3];
} erel_ctx;

static void rel_rows(awq_ctx *a, const float *xg, const float *xd, int64_t n, double *acc, void *u)
{
    const erel_ctx *r = u;
    for (int q = 0; q < 3; q++) {
        const float *X = q < 2 ? xg : xd;
        const int64_t in = q < 2 ? a->d : a->eff, rows = q < 2 ? a->eff : a->d;
        acc[2 * q] += out_sq(X, n, in, r->D[q], rows, a->obuf);
        acc[2 * q + 1] += out_sq(X, n, in, r->W[q], rows, a->obuf);
    }
}

/* expert e's three figures sqrt(||X (Wref - Q)^T||^2 / ||X Wref^T||^2) over its routed rows
 * (D: Wref - Q of gate, up, down) */
static int expert_rel(awq_ctx *a, int e, float *const D[3], float *const W[3], double rel[3])
{
    erel_ctx u = {{D[0], D[1], D[2]}, {W[0], W[1], W[2]}};
    double t[6];
    int rc = expert_sum(a, e, 6, true, rel_rows, &u, t);
    for (int q = 0; q < 3; q++)
        rel[q] = !rc && t[2 * q + 1] > 0 ? sqrt(t[2 * q] / t[2 * q + 1]) : 0.0;
    return rc;
}

/* the gate/up search: the expert's output error with candidate gate/up (cg, cu) against
 * the float block's down input */
typedef struct {
    const float *cg, *cu, *wd;
    float *gc, *uc; /* CH x eff each */
} egu_ctx;

static void gu_rows(awq_ctx *a, const float *xg, const float *xd, int64_t n, double *acc, void *u)
{
    const egu_ctx *c = u;
    const int64_t d = a->d, ff = a->eff;
    for (int64_t t0 = 0; t0 < n; t0 += CH) {
        const int64_t k = n - t0 < CH ? n - t0 : CH;
        lmp_sgemm_fixed(false, true, k, ff, d, 1.0f, xg + t0 * d, d, c->cg, d, 0.0f, c->gc, ff);
        lmp_sgemm_fixed(false, true, k, ff, d, 1.0f, xg + t0 * d, d, c->cu, d, 0.0f, c->uc, ff);
        act_mul(a, c->gc, c->uc, k * ff, ff);
        for (int64_t j = 0; j < k * ff; j++)
            c->gc[j] -= xd[t0 * ff + j];
        acc[0] += out_sq(c->gc, k, ff, c->wd, d, a->obuf);
    }
}

/* the down search: ||X D^T||^2 over the down inputs */
static void down_rows(awq_ctx *a, const float *xg, const float *xd, int64_t n, double *acc, void *u)
{
    (void)xg;
    acc[0] += out_sq(xd, n, a->eff, (const float *)u, a->d, a->obuf);
}

/* The clip search's rows of expert e: every step-th of its routed rows (all windows, in
 * window order; ns of them), their gate/up inputs into sg (ns x d) and down inputs into
 * sdn (ns x eff), as loaded (after the fold: divided by the scales); on rank `owner`, the
 * other ranks' rows sent to it (exact copies: the rows one process samples). */
static int expert_clip_rows(awq_ctx *a, int e, int64_t step, int64_t ns, float *sg, float *sdn, int owner)
{
    const int64_t d = a->d, ff = a->eff;
    int64_t base = 0;
    int rc = LMP_OK;
    for (int s = 0; s < a->N && !rc; s++) {
        const int64_t n = a->wcnt[(int64_t)s * a->Emax + e];
        int64_t t = (base + step - 1) / step; /* the first sample at or after the window's first row */
        if (s >= a->wlo && s < a->whi && t < ns && t * step < base + n && !(rc = load_window(a, s))) {
            const float *xd;
            win_expert(a, s, e, NULL, &xd);
            const int *tok = a->rtok + (int64_t)(s - a->wlo) * a->L * a->topk + expert_off(a, s, e);
            for (; t < ns && t * step < base + n; t++) {
                const int64_t i = t * step - base;
                memcpy(sg + t * d, a->wx[LMP_IN_MLP] + (int64_t)tok[i] * d, sizeof(float) * (size_t)d);
                memcpy(sdn + t * ff, xd + i * ff, sizeof(float) * (size_t)ff);
            }
        }
        base += n;
    }
    for (int r = 0; r < lmp_dist_size() && a->split && lmp_dist_size() > 1 && !rc; r++) {
        int w0, w1;
        rank_windows(a, r, &w0, &w1);
        int64_t b0 = 0, b1 = 0;
        for (int s = 0; s < w1; s++) {
            b1 += a->wcnt[(int64_t)s * a->Emax + e];
            b0 += s < w0 ? a->wcnt[(int64_t)s * a->Emax + e] : 0;
        }
        int64_t t0 = (b0 + step - 1) / step, t1 = (b1 + step - 1) / step;
        t1 = t1 < ns ? t1 : ns;
        if (w1 <= w0 || t1 <= t0 || r == owner) /* (every rank walks the same (expert, rank) order) */
            continue;
        const size_t bg = sizeof(float) * (size_t)((t1 - t0) * d), bd = sizeof(float) * (size_t)((t1 - t0) * ff);
        if (lmp_dist_rank() == r && !(rc = lmp_dist_send(sg + t0 * d, bg, owner)))
            rc = lmp_dist_send(sdn + t0 * ff, bd, owner);
        else if (lmp_dist_rank() == owner && !(rc = lmp_dist_recv(sg + t0 * d, bg, r)))
            rc = lmp_dist_recv(sdn + t0 * ff, bd, r);
    }
    return rc;
}

/* The weight mean of duo scaling over `n` matrices (rows, in) of ws. */
static void awq_wmean(const awq_ctx *a, float *const *ws, int n, int64_t rows, int64_t in, float *wm)
{
    const int gs = eff_gs(a->p, in);
    double *acc = calloc((size_t)in, sizeof(double));
    if (!acc) {
        for (int64_t c = 0; c < in; c++)
            wm[c] = 1.0f;
        return;
    }
    for (int i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c0 = 0; c0 < in; c0 += gs) {
                const float *W = ws[i] + r * in;
                int64_t c1 = c0 + gs < in ? c0 + gs : in;
                float amax = 0;
                for (int64_t c = c0; c < c1; c++)
                    amax = fmaxf(amax, fabsf(W[c]));
                for (int64_t c = c0; c < c1; c++)
                    acc[c] += fabsf(W[c]) / (amax + 1e-6f);
            }
    for (int64_t c = 0; c < in; c++)
        wm[c] = (float)(acc[c] / ((double)n * (double)rows));
    free(acc);
}

/* Q(W diag(s)) diag(s)^-1 of W (rows, in) into out. */
static void awq_cand(const awq_ctx *a, const float *W, const float *s, int64_t rows, int64_t in, float *out)
{
    scaled_fake_quant(W, s, out, rows, in, eff_gs(a->p, in), a->p->bits, a->p->sym);
}

/* The rank whose lmp_dist_share of n items holds item i. */
static int share_owner(int64_t n, int64_t i)
{
    const int64_t size = lmp_dist_size(), q = n / size, e = n % size;
    return (int)(i < e * (q + 1) ? i / (q + 1) : e + (i - e * (q + 1)) / q);
}

/* Step 4 of awq_moe_block: every reached expert's gate, up and down clipped (as clip_core)
 * on its sampled routed rows, gathered on the rank that searches the expert's clamps. */
static int moe_clip(awq_ctx *a)
{
    const lmp_qpipe_params *p = a->p;
    const int E = a->E;
    const int64_t d = a->d, ff = a->eff;
    const int64_t ntg = ff * (d / eff_gs(p, d)), nt = 2 * ntg + d * (ff / eff_gs(p, ff)); /* clamps per expert */
    const bool share = a->split && lmp_dist_size() > 1;
    int64_t elo = 0, ehi = E;
    if (share)
        lmp_dist_share(E, &elo, &ehi);
    float *thr = malloc(sizeof(float) * (size_t)(E * nt));
    float **xg = calloc((size_t)E, sizeof *xg), **xd = calloc((size_t)E, sizeof *xd);
    int64_t *ns = calloc((size_t)E, sizeof *ns);
    int rc = thr && xg && xd && ns ? LMP_OK : lmp_err(LMP_ENOMEM, "out of memory (AWQ experts' clip search)");
    for (int e = 0; e < E && !rc; e++) { /* the rows (collective when split): this rank's experts' kept */
        const int64_t ne = a->ecnt[e];
        if (!ne)
            continue;
        int64_t step = ne / p->awq_clip_tokens;
        step = step < 1 ? 1 : step;
        ns[e] = (ne + step - 1) / step;
        xg[e] = malloc(sizeof(float) * (size_t)(ns[e] * d));
        xd[e] = malloc(sizeof(float) * (size_t)(ns[e] * ff));
        if (!xg[e] || !xd[e])
            rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ clip samples of expert %d)", e);
        else
            rc = expert_clip_rows(a, e, step, ns[e], xg[e], xd[e], share ? share_owner(E, e) : 0);
        if (e < elo || e >= ehi) {
            free(xg[e]);
            free(xd[e]);
            xg[e] = xd[e] = NULL;
        }
    }
    for (int e = (int)elo; e < ehi && !rc; e++) { /* this rank's experts */
        for (int q = 0; q < 3 && xg[e] && !rc; q++) {
            const int64_t rows = q < 2 ? ff : d, in = q < 2 ? d : ff;
            rc = clip_core(a, a->ew[3 * e + q], rows, in, q < 2 ? xg[e] : xd[e], ns[e], eff_gs(p, in), p->bits,
                           thr + e * nt + q * ntg);
        }
        tick(a);
    }
    if (share)
        rc = lmp_dist_status(rc);
    for (int e = 0; e < E && share && !rc; e++) { /* the others' clamps, from their rank */
        if (!a->ecnt[e] || (rc = lmp_dist_bcast(thr + e * nt, sizeof(float) * (size_t)nt, share_owner(E, e))) ||
            (e >= elo && e < ehi))
            continue;
        for (int q = 0; q < 3; q++) {
            const int64_t rows = q < 2 ? ff : d, in = q < 2 ? d : ff;
            clip_apply(a->ew[3 * e + q], rows, in, eff_gs(p, in), thr + e * nt + q * ntg);
        }
    }
    for (int e = 0; xg && xd && e < E; e++) {
        free(xg[e]);
        free(xd[e]);
    }
    free(xg);
    free(xd);
    free(ns);
    free(thr);
    return rc;
}

static int awq_moe_block(awq_ctx *a, lmp_qlinear_stats *st)
{
    const lmp_qpipe_params *p = a->p;
    const lmp_config *c = lmp_model_config(a->m);
    const int l = a->layer, E = a->E, grid = p->awq_grid;
    const int64_t d = a->d, ff = a->eff, mw = d * ff;
    int rc = LMP_OK;
    float *s = NULL, *sb = NULL, *wm = NULL, *cg = NULL, *cu = NULL, *tmp = NULL, *gc = NULL, *uc = NULL;
    float **sd = NULL;
    double err[3] = {0}, err_rtn[3] = {0}, wsum = 0;
    char missed[512];
    size_t mlen = 0;
    int n_missed = 0;
    missed[0] = 0;
    a->ew = calloc((size_t)3 * E, sizeof *a->ew);
    a->ewfold = calloc((size_t)3 * E, sizeof *a->ewfold);
    a->eqt = calloc((size_t)3 * E, sizeof *a->eqt);
    a->router = malloc(sizeof(float) * (size_t)(E * d));
    sd = calloc((size_t)E, sizeof *sd);
    s = malloc(sizeof(float) * (size_t)d);
    sb = malloc(sizeof(float) * (size_t)(d > ff ? d : ff));
    wm = malloc(sizeof(float) * (size_t)(d > ff ? d : ff));
    cg = malloc(sizeof(float) * (size_t)mw);
    cu = malloc(sizeof(float) * (size_t)mw);
    tmp = malloc(sizeof(float) * (size_t)mw);
    gc = malloc(sizeof(float) * (size_t)(CH * ff));
    uc = malloc(sizeof(float) * (size_t)(CH * ff));
    if (!a->ew || !a->ewfold || !a->eqt || !a->router || !sd || !s || !sb || !wm || !cg || !cu || !tmp || !gc || !uc)
        goto oom;
    for (int k = 0; k < 3 * E; k++) {
        char name[LMP_MAX_NAME];
        const lmp_linear w = (lmp_linear)(LMP_LIN_GATE + k % 3);
        lmp_expert_hf_prefix(c, l, k / 3, w, name, sizeof name);
        if ((rc = lmp_calib_weight_f32(lmp_model_expert_linear(a->m, l, k / 3, w), name, &a->ew[k])))
            goto done;
    }
    { /* the router, f32 */
        char name[LMP_MAX_NAME];
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                 strcmp(c->model_type, "mixtral") == 0 ? "block_sparse_moe.gate" : "mlp.gate");
        const lmp_tensor *t = lmp_ckpt_find_hf(lmp_model_ckpt(a->m), name);
        const lmp_dtype_traits *tr = t ? lmp_dtype_info(t->dtype) : NULL;
        if (!t || !tr->to_f32 || tr->is_quant || lmp_tensor_nelem(t) != E * d) {
            rc = lmp_err(LMP_EUNSUPPORTED, "AWQ: %s: the router %s must be an f32/f16/bf16 [%d, %lld] tensor to fold "
                         "the scales into", lmp_model_ckpt(a->m)->path, name, E, (long long)d);
            goto done;
        }
        tr->to_f32(t->data, a->router, E * d);
    }
    float *const dq[3] = {cg, cu, tmp};
    /* RTN (AWQ's quantizer, no scales, no clip) on the original experts, routed inputs */
    for (int e = 0; e < E && p->compare_rtn; e++) {
        const int64_t ne = a->ecnt[e];
        if (!ne)
            continue;
        for (int q = 0; q < 3; q++) {
            const int64_t rows = q < 2 ? ff : d, in = q < 2 ? d : ff;
            const float *W = a->ew[3 * e + q];
            fake_quant(W, dq[q], rows, in, eff_gs(p, in), p->bits, p->sym);
            for (int64_t j = 0; j < mw; j++)
                dq[q][j] = W[j] - dq[q][j];
        }
        double rel[3];
        if ((rc = expert_rel(a, e, dq, &a->ew[3 * e], rel)))
            goto done;
        for (int q = 0; q < 3; q++)
            err_rtn[q] += (double)ne * rel[q];
    }
    /* 1. the shared gate/up scale: every expert's output error on its routed tokens */
    if (p->awq_duo_scaling) {
        float **gu = malloc(sizeof(float *) * (size_t)(2 * E));
        if (!gu)
            goto oom;
        for (int e = 0; e < E; e++) {
            gu[2 * e] = a->ew[3 * e];
            gu[2 * e + 1] = a->ew[3 * e + 1];
        }
        awq_wmean(a, gu, 2 * E, ff, d, wm);
        free(gu);
    }
    double best = INFINITY;
    for (int i = 0; i < grid; i++) {
        const float r = (float)i / (float)grid;
        make_scales(a->xmean[LMP_IN_MLP], p->awq_duo_scaling ? wm : NULL, d, r, s);
        double loss = 0;
        int64_t pairs = 0;
        for (int e = 0; e < E; e++) {
            const int64_t ne = a->ecnt[e];
            if (!ne)
                continue;
            awq_cand(a, a->ew[3 * e], s, ff, d, cg);
            awq_cand(a, a->ew[3 * e + 1], s, ff, d, cu);
            egu_ctx u = {cg, cu, a->ew[3 * e + 2], gc, uc};
            double le;
            if ((rc = expert_sum(a, e, 1, true, gu_rows, &u, &le)))
                goto done;
            loss += le;
            pairs += ne;
        }
        tick(a);
        if (pairs == 0)
            break;
        loss /= (double)pairs * (double)d;
        if (loss < best) {
            best = loss;
            memcpy(sb, s, sizeof(float) * (size_t)d);
        }
    }
    if (!(best < INFINITY))
        for (int64_t j = 0; j < d; j++) /* no expert reached: no scale */
            sb[j] = 1.0f;
    memcpy(s, sb, sizeof(float) * (size_t)d);
    /* 2. per expert: up -> down on its routed down inputs */
    for (int e = 0; e < E; e++) {
        const int64_t ne = a->ecnt[e];
        if (!ne) {
            n_missed++;
            if (mlen + 8 < sizeof missed)
                mlen += (size_t)snprintf(missed + mlen, sizeof missed - mlen, " %d", e);
            continue;
        }
        if (!(sd[e] = malloc(sizeof(float) * (size_t)ff)))
            goto oom;
        const float *xm = a->exm + e * ff;
        if (p->awq_duo_scaling)
            awq_wmean(a, &a->ew[3 * e + 2], 1, d, ff, wm);
        double bl = INFINITY;
        for (int i = 0; i < grid; i++) {
            const float r = (float)i / (float)grid;
            make_scales(xm, p->awq_duo_scaling ? wm : NULL, ff, r, sb);
            awq_cand(a, a->ew[3 * e + 2], sb, d, ff, cg);
            for (int64_t j = 0; j < mw; j++)
                cg[j] = a->ew[3 * e + 2][j] - cg[j];
            double loss;
            if ((rc = expert_sum(a, e, 1, false, down_rows, cg, &loss)))
                goto done;
            loss /= (double)ne * (double)d;
            if (loss < bl) {
                bl = loss;
                memcpy(sd[e], sb, sizeof(float) * (size_t)ff);
            }
        }
        tick(a);
        if (!(bl < INFINITY)) {
            rc = lmp_err(LMP_ERANGE, "AWQ: layer %d expert %d: no finite loss in the down scale search", l, e);
            goto done;
        }
    }
    /* 3. fold: ffn norm / s, every expert's gate/up and the router's columns * s; per
     * expert up rows / sd, down columns * sd; the captured inputs follow (divided as they
     * are loaded) */
    for (int64_t j = 0; j < d; j++)
        a->blk.ffn_norm[j] /= s[j];
    for (int e = 0; e < E; e++) {
        scale_cols(a->ew[3 * e], ff, d, s);
        scale_cols(a->ew[3 * e + 1], ff, d, s);
        if (sd[e]) {
            for (int64_t r = 0; r < ff; r++)
                for (int64_t j = 0; j < d; j++)
                    a->ew[3 * e + 1][r * d + j] /= sd[e][r];
            scale_cols(a->ew[3 * e + 2], d, ff, sd[e]);
        }
    }
    scale_cols(a->router, E, d, s);
    a->xs[LMP_IN_MLP] = s;
    a->esd = sd;
    a->wcur = -1;
    for (int k = 0; k < 3 * E; k++) {
        const int64_t n = mw;
        if (!(a->ewfold[k] = dup_vec(a->ew[k], n)))
            goto oom;
    }
    /* 4. clipping on every step-th routed token of the expert: each expert's search on one
     * rank (lmp_dist_share over the experts, split runs), which the others send their rows
     * to; its clamps (one per row and group) then broadcast, and applied by the others */
    if (p->awq_clip && (rc = moe_clip(a)))
        goto done;
    /* 5. quantization and the error figures */
    for (int e = 0; e < E; e++) {
        const int64_t ne = a->ecnt[e];
        for (int q = 0; q < 3; q++) {
            const int k = 3 * e + q;
            const int64_t rows = q < 2 ? ff : d, in = q < 2 ? d : ff;
            char name[LMP_MAX_NAME];
            lmp_expert_hf_prefix(c, l, e, (lmp_linear)(LMP_LIN_GATE + q), name, sizeof name);
            if ((rc = lmp_awq_quant(a->ew[k], rows, in, p->bits, p->group_size, p->sym, &a->eqt[k]))) {
                rc = lmp_err_prefix(rc, "%s.weight", name);
                goto done;
            }
            snprintf(a->eqt[k].name, sizeof a->eqt[k].name, "%s", name);
            lmp_qtensor_dequant(&a->eqt[k], dq[q]);
            for (int64_t j = 0; j < mw; j++)
                dq[q][j] = a->ewfold[k][j] - dq[q][j];
            a->res->params += (uint64_t)(rows * in);
            a->res->qbytes += lmp_qtensor_nbytes(&a->eqt[k]);
            a->res->n_expert_linears++;
        }
        if (ne) {
            double rel[3];
            if ((rc = expert_rel(a, e, dq, &a->ewfold[3 * e], rel)))
                goto done;
            for (int q = 0; q < 3; q++)
                err[q] += (double)ne * rel[q];
        }
        wsum += (double)ne;
        tick(a);
    }
    for (int q = 0; q < 3; q++) {
        lmp_qlinear_stats *sk = &st[LMP_LIN_GATE + q];
        sk->layer = l;
        sk->which = (lmp_linear)(LMP_LIN_GATE + q);
        sk->rows = q < 2 ? ff : d;
        sk->cols = q < 2 ? d : ff;
        sk->loss = -1;
        lmp_expert_hf_prefix(c, l, 0, sk->which, sk->name, sizeof sk->name);
        sk->err = wsum > 0 ? err[q] / wsum : -1;
        sk->err_rtn = wsum > 0 && p->compare_rtn ? err_rtn[q] / wsum : -1;
    }
    a->res->n_expert_unreached += 3 * n_missed;
    if (n_missed)
        lmp_warn("awq: layer %d: %d of %d experts saw no calibration token (none was routed to them); quantized "
                 "with the shared gate/up scale only (no down scale, no clipping): experts%s",
                 l, n_missed, E, missed);
    goto done;
oom:
    rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ experts, block %d)", l);
done:
    a->xs[LMP_IN_MLP] = NULL; /* (s and sd are freed here; the windows are not read again) */
    a->esd = NULL;
    a->wcur = -1;
    for (int e = 0; sd && e < E; e++)
        free(sd[e]);
    free(sd);
    free(s);
    free(sb);
    free(wm);
    free(cg);
    free(cu);
    free(tmp);
    free(gc);
    free(uc);
    return rc;
}

static void awq_moe_free(awq_ctx *a)
{
    for (int k = 0; k < 3 * a->E; k++) {
        if (a->ew)
            free(a->ew[k]);
        if (a->ewfold)
            free(a->ewfold[k]);
        if (a->eqt)
            lmp_qtensor_free(&a->eqt[k]);
    }
    free(a->ew);
    free(a->ewfold);
    free(a->eqt);
    free(a->router);
    a->ew = a->ewfold = NULL;
    a->eqt = NULL;
    a->router = NULL;
}

/* ---------------------------------------------------------------- the row --------- */

/* The captured inputs' store (this rank's windows), once for the run: a window of a dense
 * block holds its four inputs and the MLP's reference outputs, one of a sparse block its
 * q/k/v, o and gate/up inputs and every token's topk routed down inputs (roff on). */
static bool any_dense(const awq_ctx *a)
{
    for (int l = 0; l < lmp_model_config(a->m)->n_layers; l++)
        if (lmp_model_n_experts(a->m, l) <= 0)
            return true;
    return false;
}

static int64_t cap_window(const awq_ctx *a)
{
    const int64_t dense = a->L * (2 * a->d + a->qd + 2 * a->ff), sparse = a->roff + a->L * a->topk * a->eff;
    if (!a->moe)
        return dense;
    return any_dense(a) && dense > sparse ? dense : sparse;
}

static int awq_row_block(void *ctx, lmp_calib_block *b)
{
    awq_ctx *a = ctx;
    a->b = b;
    a->layer = b->layer;
    a->wlo = b->w_lo;
    a->whi = b->w_hi;
    a->ng = b->G;
    a->split = b->split;
    a->wcur = -1;
    if (!a->wbuf) {
        const int64_t win = cap_window(a);
        a->coff[LMP_IN_ATTN] = 0;
        a->coff[LMP_IN_O] = a->L * a->d;
        a->coff[LMP_IN_MLP] = a->L * (a->d + a->qd);
        a->coff[LMP_IN_DOWN] = a->L * (2 * a->d + a->qd);
        a->hoff = a->L * (2 * a->d + a->qd + a->ff);
        const uint64_t held = b->states ? (uint64_t)(a->whi - a->wlo) * (uint64_t)(a->L * a->d) * sizeof(float) : 0;
        const char *what = a->moe ? "AWQ's captured inputs (q/k/v's, o's, the experts' gate/up and routed down inputs)"
                                  : "AWQ's captured inputs (every linear's, and the MLP's reference outputs)";
        int rc = a->samp ? LMP_OK : lmp_calib_store_open(&a->cap, a->cap_bytes, win, true, held, what);
        if (rc)
            return rc;
        if (!(a->wbuf = malloc(sizeof(float) * (size_t)win)))
            return lmp_err(LMP_ENOMEM, "out of memory (one window of AWQ's captured inputs, %.1f MiB)",
                           (double)win * 4 / 1048576.0);
    }
    a->E = lmp_model_n_experts(b->m, b->layer);
    if (a->E > a->Emax)
        return lmp_err(LMP_EINVAL, "AWQ: layer %d has %d experts, the config %d", b->layer, a->E, a->Emax);
    return awq_block(a, a->qt, &a->res->lin[b->layer * LMP_LIN_COUNT]);
}

static int awq_row_end(void *ctx, lmp_calib_block *b)
{
    awq_ctx *a = ctx;
    const lmp_qpipe_params *p = a->p;
    lmp_qpipe_result *res = a->res;
    const int l = b->layer;
    lmp_qlinear_stats *st = &res->lin[l * LMP_LIN_COUNT];
    int rc = LMP_OK;
    if (p->fold_sink) {
        lmp_qfold f;
        memset(&f, 0, sizeof f);
        f.attn_norm = a->blk.attn_norm;
        f.ffn_norm = a->blk.ffn_norm;
        for (int k = 0; k < LMP_LIN_COUNT; k++)
            f.bias[k] = a->blk.bias[k];
        f.router = a->E > 0 ? a->router : NULL;
        if ((rc = p->fold_sink(p->sink_ctx, l, &f)))
            return rc;
    }
    if (a->E > 0 && p->expert_sink && (rc = p->expert_sink(p->sink_ctx, l, a->E, a->eqt)))
        return rc;
    for (int k = 0; k < LMP_LIN_COUNT; k++) {
        res->params += (uint64_t)(a->qt[k].rows * a->qt[k].cols);
        res->qbytes += lmp_qtensor_nbytes(&a->qt[k]);
        if (st[k].err > res->worst_err) {
            res->worst_err = st[k].err;
            snprintf(res->worst_name, sizeof res->worst_name, "%s", st[k].name);
        }
        if (st[k].err_rtn >= 0 && st[k].err > st[k].err_rtn)
            res->n_worse_than_rtn++;
    }
    if (p->sink && (rc = p->sink(p->sink_ctx, l, a->qt, st)))
        return rc;
    res->layer_seconds[l] = lmp_time_s() - b->t0;
    if (p->on_layer_done)
        p->on_layer_done(p->log_ctx, l, b->n_layers, res->layer_seconds[l], st);
    return LMP_OK;
}

static void awq_row_cleanup(void *ctx, lmp_calib_block *b)
{
    (void)b;
    awq_ctx *a = ctx;
    for (int k = 0; k < LMP_LIN_COUNT; k++)
        lmp_qtensor_free(&a->qt[k]);
    awq_moe_free(a);
    a->E = 0;
    block_free(a);
}

static uint64_t awq_row_steps(void *ctx, const lmp_calib_block *b)
{
    awq_ctx *a = ctx;
    const lmp_qpipe_params *p = a->p;
    const bool vo = lmp_awq_has_vo(lmp_model_config(b->m));
    const uint64_t n = (uint64_t)(b->w_hi - b->w_lo); /* this rank's windows; self: inputs and forward too */
    if (a->samp) /* the windows once; each candidate once (at most the whole grid on this rank) */
        return n + (uint64_t)p->awq_grid * (vo ? 4 : 3) + (p->awq_clip ? 5 : 0) + LMP_LIN_COUNT;
    if (a->moe) /* (a sparse block: the gate/up candidates, each expert's down search and quantization) */
        return n * (uint64_t)(2 + p->awq_grid) + (uint64_t)p->awq_grid * (vo ? 2 : 1) + 2 * (uint64_t)a->Emax +
               (p->awq_clip ? 2 : 0) + LMP_LIN_GATE;
    return n * (uint64_t)(2 + p->awq_grid) + (uint64_t)p->awq_grid * (vo ? 3 : 2) + (p->awq_clip ? 5 : 0) +
           LMP_LIN_COUNT;
}

/* AWQ: the row walks this rank's windows itself (inputs captured into its own store,
 * losses summed per window group, the float block's outputs forward). */
static const lmp_calib_method g_awq_row = {
    .name = "awq",
    .flags = LMP_CALIB_SELF_WALK,
    .block = awq_row_block,
    .end = awq_row_end,
    .cleanup = awq_row_cleanup,
    .steps = awq_row_steps,
};

int lmp_awq_run(lmp_model *m, const lmp_calib_data *cal, const lmp_qpipe_params *p, lmp_qpipe_result *res)
{
    memset(res, 0, sizeof *res);
    double t_start = lmp_time_s();
    int rc = lmp_qpipe_check(m, p);
    if (rc)
        return rc;
    if (p->method != LMP_QMETHOD_AWQ)
        return lmp_err(LMP_EINVAL, "lmp_awq_run: method is not AWQ");
    if (!cal || cal->n_samples < 1)
        return lmp_err(LMP_EINVAL, "quantize: AWQ needs calibration text (--calib FILE)");
    const lmp_config *c = lmp_model_config(m);
    const int nl = c->n_layers;
    /* AWQ folds the scales of q/k/v and gate/up into the RMSNorm in front of them. A block
     * without one (olmo2: its norms follow the attention and the MLP) has nowhere exact to
     * put those two, so they are not searched (scale 1: clipping and quantization only, as
     * llm-compressor does when a mapping has no smoothing layer); the v -> o and up -> down
     * scales fold into the linears themselves and are searched as for every family. A
     * post-norm after o/down (gemma2/3, olmo2) does not matter: those folds leave the
     * linears' outputs unchanged. */
    const bool prenorm = c->norms != LMP_NORM_POST && lmp_model_norm_mut(m, 0, false) && lmp_model_norm_mut(m, 0, true);
    if (!prenorm && lmp_awq_any_experts(m))
        return lmp_err(LMP_EUNSUPPORTED,
                       "quantize: AWQ on an expert model needs a norm in front of the experts to fold "
                       "their shared scale into; %s has none: use --method gptq or rtn",
                       c->model_type);
    if (!prenorm)
        lmp_info("awq: %s has no norm in front of q/k/v and gate/up: their scales are not searched (scale 1; "
                 "clipping still applies); v->o and up->down are",
                 c->model_type);
    res->n_layers = nl;
    res->lin = calloc((size_t)nl * LMP_LIN_COUNT, sizeof *res->lin);
    res->layer_seconds = calloc((size_t)nl, sizeof *res->layer_seconds);
    if (!res->lin || !res->layer_seconds)
        return lmp_err(LMP_ENOMEM, "out of memory");

    awq_ctx a;
    memset(&a, 0, sizeof a);
    a.m = m;
    a.p = p;
    a.res = res;
    a.d = c->hidden_size;
    a.qd = (int64_t)c->n_heads * c->head_dim;
    a.kvd = (int64_t)c->n_kv_heads * c->head_dim;
    a.ff = c->intermediate_size;
    a.N = cal->n_samples;
    a.L = cal->seq_len;
    a.T = (int64_t)a.N * a.L;
    a.cols[LMP_IN_ATTN] = a.d;
    a.cols[LMP_IN_O] = a.qd;
    a.cols[LMP_IN_MLP] = a.d;
    a.cols[LMP_IN_DOWN] = a.ff;
    res->n_samples = a.N;
    res->seq_len = a.L;
    a.moe = lmp_model_is_moe(m);
    a.cap.fd = -1;
    a.wcur = -1;
    /* expert models: the full search in f32 (no search sample, no bf16 calibration yet) */
    const int64_t nst = p->awq_search_tokens < 0 ? LMP_AWQ_SEARCH_TOKENS : p->awq_search_tokens;
    a.samp = !a.moe && nst > 0 && nst < a.T;
    a.bf16 = !a.moe && !p->calib_f32;
    if (a.moe) {
        a.Emax = c->n_experts;
        a.topk = c->n_experts_used;
        a.eff = c->moe_ff;
        a.roff = a.L * (2 * a.d + a.qd);
    }
    const bool exact0 = lmp_gemm_exact(); /* bf16: X rounded to bf16 in lmp_gemm (its exact mode off for the run) */
    if (a.bf16)
        lmp_gemm_set_exact(false);
    if (!(a.bscr = malloc(sizeof(float) * lmp_block_scratch_floats(m, (int)a.L, 0)))) {
        rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ block scratch)");
        goto done;
    }
    if (a.samp) { /* the search sample: no captured-input store, no Gram matrix */
        if ((rc = search_sample(&a, nst)))
            goto done;
        const uint64_t sb = (uint64_t)a.ns * (uint64_t)(cap_window(&a) / a.L) * sizeof(float) +
                            (uint64_t)a.nqw * (uint64_t)(a.L * (a.d + a.qd)) * sizeof(float);
        res->act_bytes = (uint64_t)a.N * (uint64_t)(a.L * a.d) * sizeof(float) + sb;
        lmp_info("awq: grid searches and error figures on %lld sampled tokens of %lld (q/k/v: %d whole window%s of "
                 "%d; --awq-search-tokens, 0: all); the sample %.1f MiB f32 on every rank, no captured-input store",
                 (long long)a.ns, (long long)a.T, a.nqw, a.nqw == 1 ? "" : "s", a.L, sb / 1048576.0);
    } else { /* this rank's windows (calib_dist.h), as the driver splits them */
        const int G = a.N < LMP_CALIB_GROUPS ? a.N : LMP_CALIB_GROUPS;
        int glo, ghi, wlo = 0, whi = 0, x;
        lmp_calib_own_groups(G, lmp_dist_rank(), lmp_dist_size(), &glo, &ghi);
        if (ghi > glo) {
            lmp_calib_group_windows(a.N, G, glo, &wlo, &x);
            lmp_calib_group_windows(a.N, G, ghi - 1, &x, &whi);
        }
        a.cap_bytes = (uint64_t)(whi - wlo) * (uint64_t)cap_window(&a) * sizeof(float);
        /* a sparse block's Grams: q/k/v's and o's inputs only; a dense block's every input */
        const int ngram = a.moe && !any_dense(&a) ? LMP_IN_MLP : LMP_IN_COUNT;
        uint64_t gram = 0, gmax = 0;
        for (int k = 0; k < ngram; k++)
            if (a.T > a.cols[k]) { /* f32 matrix, double total and one double group partial */
                gram += (uint64_t)(a.cols[k] * a.cols[k]) * 20;
                gmax = (uint64_t)(a.cols[k] * a.cols[k]) > gmax ? (uint64_t)(a.cols[k] * a.cols[k]) : gmax;
            }
        res->act_bytes = (uint64_t)(whi - wlo) * (uint64_t)(a.L * a.d) * sizeof(float) + a.cap_bytes;
        if (!a.moe)
            lmp_info("awq memory: captured inputs and MLP reference outputs %.1f MiB f32 (%d of %d windows x %d tokens "
                     "x %lld floats), held like the hidden states (in memory up to LMP_CALIB_SPILL, else spilled, one "
                     "window resident); Gram matrices %.1f MiB (f32, double sums), one window's f32 Gram %.1f MiB",
                     a.cap_bytes / 1048576.0, whi - wlo, a.N, a.L, (long long)(cap_window(&a) / a.L),
                     gram / 1048576.0, gmax * 4 / 1048576.0);
        else { /* the routing: rows per window and expert (every rank's windows), token rows (this rank's) */
            const uint64_t route = ((uint64_t)a.N * (uint64_t)a.Emax + (uint64_t)(whi - wlo) * (uint64_t)(a.L * a.topk)) *
                                   sizeof(int);
            lmp_info("awq memory: captured inputs %.1f MiB f32 (%d of %d windows x %d tokens x %lld floats: q/k/v's, "
                     "o's and the experts' gate/up inputs, and each token's %d routed down inputs), held like the "
                     "hidden states (in memory up to LMP_CALIB_SPILL, else spilled, one window resident); routing "
                     "%.2f MiB; Gram matrices %.1f MiB (f32, double sums), one window's f32 Gram %.1f MiB",
                     a.cap_bytes / 1048576.0, whi - wlo, a.N, a.L, (long long)(cap_window(&a) / a.L), a.topk,
                     route / 1048576.0, gram / 1048576.0, gmax * 4 / 1048576.0);
            a.wcnt = calloc((size_t)a.N * (size_t)a.Emax, sizeof(int));
            a.rtok = malloc(sizeof(int) * ((size_t)(whi - wlo) * (size_t)(a.L * a.topk) + 1));
            a.ecnt = calloc((size_t)a.Emax, sizeof(int64_t));
            a.exm = malloc(sizeof(float) * (size_t)(a.Emax * a.eff));
            a.exg = malloc(sizeof(float) * (size_t)(a.L * a.d));
            if (!a.wcnt || !a.rtok || !a.ecnt || !a.exm || !a.exg) {
                rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ's routing, %.1f MiB)", route / 1048576.0);
                goto done;
            }
        }
        if (gmax && !(a.gw = malloc(sizeof(float) * (size_t)gmax))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory (AWQ Gram matrices, %.1f MiB)", gmax * 4 / 1048576.0);
            goto done;
        }
    }
    int64_t maxrows = a.d > a.ff ? a.d : a.ff;
    maxrows = c->moe_ff > maxrows ? c->moe_ff : maxrows;
    maxrows = a.qd > maxrows ? a.qd : maxrows;
    a.scratch = malloc(sizeof(float) * (size_t)(a.L * a.d));
    a.xo = malloc(sizeof(float) * (size_t)(a.L * a.qd));
    a.obuf = malloc(sizeof(float) * (size_t)(CHS * maxrows)); /* (out_sq: CH rows of it) */
    bool ok = a.scratch && a.xo && a.obuf;
    for (int k = 0; k < LMP_IN_COUNT; k++) {
        a.xmean[k] = malloc(sizeof(float) * (size_t)a.cols[k]);
        ok = ok && a.xmean[k];
    }
    if (!ok) {
        rc = lmp_err(LMP_ENOMEM, "out of memory for AWQ's calibration activations (%d x %d tokens: %.1f MiB)", a.N,
                     a.L, res->act_bytes / 1048576.0);
        goto done;
    }
    lmp_calib_opts o = {.calib_bos = p->calib_bos, .progress = p->progress, .times = &res->phases};
    rc = lmp_calib_run(m, cal, &g_awq_row, &a, &o);
done:
    if (a.bf16)
        lmp_gemm_set_exact(exact0);
    block_free(&a);
    sample_free(&a);
    free(a.bscr);
    free(a.wcnt);
    free(a.rtok);
    free(a.ecnt);
    free(a.exm);
    free(a.exg);
    lmp_calib_store_close(&a.cap);
    free(a.wbuf);
    free(a.gw);
    free(a.scratch);
    free(a.xo);
    free(a.obuf);
    for (int k = 0; k < LMP_IN_COUNT; k++)
        free(a.xmean[k]);
    res->seconds = lmp_time_s() - t_start;
    res->peak_rss = lmp_peak_rss();
    return rc;
}
