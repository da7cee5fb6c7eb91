/*
 * Mixture-of-experts feed-forward layers (mixtral, qwen3_moe, granitemoe): loading the
 * router and the experts from any checkpoint layout, routing, and running the routed
 * experts on the engine's matrix kernels. A sparse layer replaces the dense SwiGLU FFN of
 * a block with n_experts SwiGLU experts of width moe_ff and a linear router; each token
 * goes through the top-k experts by router logit and the outputs are summed with the
 * routing weights.
 *
 * Routing, per the transformers model definitions:
 *   mixtral    p = softmax(router logits) over all experts, the k largest, divided by
 *              their sum (MixtralSparseMoeBlock);
 *   qwen3_moe  the same, divided by their sum only with norm_topk_prob
 *              (Qwen3MoeSparseMoeBlock);
 *   granitemoe softmax over the k largest logits (GraniteMoeTopKGating), which is the same
 *              distribution computed another way.
 * Ties: experts are chosen by logit (softmax is monotone), largest first, and among equal
 * logits the lowest expert index first, as torch.topk returns them on CPU (the float64
 * reference in tests/reference/moe_ref.py makes the same choice and the tiny synth presets
 * build a tie on purpose: golden/tiny-*moe*.h5, tiny-mixtral.h5).
 *
 * Batched tokens are grouped per expert (each expert multiplies the rows of the tokens
 * routed to it, one lmp_gemm per projection); a token's expert outputs are accumulated in
 * ascending expert index whatever the batch, so decoding (lmp_moe_decode_team, one token,
 * only the k routed experts' weights read) gives the batched path's bits for n == 1 and
 * every result is independent of the thread count.
 *
 * Checkpoint layouts: HF per-expert tensors (mixtral block_sparse_moe.experts.E.w1/w3/w2,
 * qwen3_moe mlp.experts.E.gate_proj/up_proj/down_proj), HF fused 3-D tensors (granitemoe
 * block_sparse_moe.input_linear [E, 2 ff, d] = [gate; up] rows per expert, output_linear
 * [E, d, ff]), and llama.cpp's stacked GGUF tensors (blk.N.ffn_{gate,up,down}_exps [E, rows,
 * cols], ffn_gate_inp [E, d]). An expert is a contiguous row range of a 3-D tensor.
 */
#include "infer.h"
#include "infer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Bounds of the routing scratch (Qwen3-MoE: 128 experts, top-8). */
#define MOE_MAX_E 1024
#define MOE_MAX_K 64

typedef enum {
    ROUTE_SOFTMAX_TOPK = 0, /* softmax over every expert, then the top k (renormalised or not) */
    ROUTE_TOPK_SOFTMAX,     /* the top k logits, then their softmax (granitemoe) */
} route_kind;

struct lmp_moe {
    int n_experts, top_k;
    int64_t ff;          /* expert FFN width */
    bool norm_topk;      /* ROUTE_SOFTMAX_TOPK: divide the k weights by their sum */
    route_kind kind;
    float *router;       /* (n_experts, hidden) f32, owned */
    lmp_wmat *w;         /* (n_experts * 3): expert e's gate, up, down at 3e + 0, 1, 2;
                            gate/up (ff, hidden), down (hidden, ff); borrowed views */
    uint64_t *hits;      /* (n_experts) tokens routed to each expert (relaxed atomics) */
};

/* ---------------------------------------------------------------- loading --------- */

static int need_t(lmp_model *m, const char *name, bool gguf_name, const lmp_tensor **t)
{
    *t = gguf_name ? lmp_ckpt_find(&m->ckpt, name) : lmp_ckpt_find_hf(&m->ckpt, name);
    if (!*t)
        return lmp_err(LMP_ENOTFOUND, "%s: tensor %s is missing (config: %s, %d experts in layer)",
                       m->ckpt.path, name, m->cfg.model_type, m->cfg.n_experts);
    return 0;
}

static int shape_err(const lmp_tensor *t, const char *name, int64_t a, int64_t b, int64_t c)
{
    char got[64];
    lmp_shape_str(t, got, sizeof got);
    if (c)
        return lmp_err(LMP_EFORMAT, "tensor %s has shape %s but the model's config implies "
                       "[%lld, %lld, %lld]", name, got, (long long)a, (long long)b, (long long)c);
    return lmp_err(LMP_EFORMAT, "tensor %s has shape %s but the model's config implies [%lld, %lld]",
                   name, got, (long long)a, (long long)b);
}

/* Expert e's rows of a stacked 3-D tensor [E, per_rows, cols] (per_rows = nparts * rows:
 * granitemoe's input_linear holds gate then up), part `part`. */
static int stacked_view(lmp_model *m, const lmp_tensor *t, const char *name, int E, int e,
                        int64_t per_rows, int64_t row_in, int64_t rows, int64_t cols, lmp_wmat *w)
{
    if (t->ndim != 3 || t->shape[0] != E || t->shape[1] != per_rows || t->shape[2] != cols)
        return shape_err(t, name, E, per_rows, cols);
    return lmp_model_wmat_view(m, t, name, (int64_t)e * per_rows + row_in, rows, cols, w);
}

static int plain_view(lmp_model *m, const char *name, int64_t rows, int64_t cols, lmp_wmat *w)
{
    const lmp_tensor *t;
    int rc = need_t(m, name, false, &t);
    if (rc)
        return rc;
    if (t->ndim != 2 || t->shape[0] != rows || t->shape[1] != cols)
        return shape_err(t, name, rows, cols, 0);
    return lmp_model_wmat_view(m, t, name, 0, rows, cols, w);
}

/* An expert's per-expert HF tensor (mixtral, qwen3_moe), or when it is absent and the
 * loader has a hook for it (quantized folders: formats/qload.c), the intgroup weight the
 * hook unpacks, adopted by the model and run natively. */
static int expert_view(lmp_model *m, const char *name, int l, int x, int p, int64_t rows, int64_t cols,
                       lmp_wmat *w)
{
    const lmp_model_load_hooks *h = m->hooks;
    if (h && h->missing_expert && !lmp_ckpt_find_hf(&m->ckpt, name)) {
        char prefix[LMP_MAX_NAME];
        snprintf(prefix, sizeof prefix, "%.*s", (int)(strlen(name) - strlen(".weight")), name);
        lmp_qtensor q;
        memset(&q, 0, sizeof q);
        int rc = h->missing_expert(h->user, m, l, x, (lmp_linear)(LMP_LIN_GATE + p), prefix, &q);
        if (rc < 0)
            return rc;
        if (rc == 0) {
            const lmp_qtensor *own = NULL;
            if (q.rows != rows || q.cols != cols)
                rc = lmp_err(LMP_EFORMAT, "%s: %s is [%lld, %lld], the config implies [%lld, %lld]", m->ckpt.path,
                             prefix, (long long)q.rows, (long long)q.cols, (long long)rows, (long long)cols);
            if (rc == 0)
                rc = lmp_model_own_q(m, &q, &own);
            if (rc == 0)
                rc = lmp_wmat_intgroup(w, own);
            lmp_qtensor_free(&q);
            return rc;
        }
    }
    return plain_view(m, name, rows, cols, w);
}

int lmp_moe_load(lmp_model *m, int l, lmp_moe **out)
{
    const lmp_config *c = &m->cfg;
    const bool gguf = m->ckpt.kind == LMP_CKPT_GGUF;
    const bool mixtral = strcmp(c->model_type, "mixtral") == 0;
    const bool granite = strcmp(c->model_type, "granitemoe") == 0;
    const int E = c->n_experts;
    const int64_t d = c->hidden_size, ff = c->moe_ff;
    char name[LMP_MAX_NAME];
    int rc;
    *out = NULL;
    if (E <= 0 || c->n_experts_used <= 0 || c->n_experts_used > E || ff <= 0)
        return lmp_err(LMP_EFORMAT, "%s: inconsistent expert config (%d experts, top-%d, ffn %lld)",
                       m->ckpt.path, E, c->n_experts_used, (long long)ff);
    if (E > MOE_MAX_E || c->n_experts_used > MOE_MAX_K)
        return lmp_err(LMP_EUNSUPPORTED, "%s: %d experts, top-%d: at most %d experts and top-%d "
                       "are supported", m->ckpt.path, E, c->n_experts_used, MOE_MAX_E, MOE_MAX_K);
    lmp_moe *e = calloc(1, sizeof *e);
    if (!e)
        return lmp_err(LMP_ENOMEM, "out of memory");
    *out = e;
    e->n_experts = E;
    e->top_k = c->n_experts_used;
    e->ff = ff;
    e->norm_topk = c->moe_norm_topk;
    e->kind = granite ? ROUTE_TOPK_SOFTMAX : ROUTE_SOFTMAX_TOPK;
    e->router = malloc(sizeof(float) * (size_t)E * (size_t)d);
    e->w = calloc((size_t)E * 3, sizeof *e->w);
    e->hits = calloc((size_t)E, sizeof *e->hits);
    if (!e->router || !e->w || !e->hits)
        return lmp_err(LMP_ENOMEM, "out of memory (layer %d experts)", l);

    /* router: converted to f32 (small; every token reads all of it) */
    if (gguf)
        snprintf(name, sizeof name, "blk.%d.ffn_gate_inp.weight", l);
    else
        snprintf(name, sizeof name, "model.layers.%d.%s.weight", l,
                 granite ? "block_sparse_moe.router.layer"
                 : mixtral ? "block_sparse_moe.gate" : "mlp.gate");
    const lmp_tensor *t;
    if ((rc = need_t(m, name, gguf, &t)))
        return rc;
    if (t->ndim != 2 || t->shape[0] != E || t->shape[1] != d)
        return shape_err(t, name, E, d, 0);
    const lmp_dtype_traits *tr = lmp_dtype_info(t->dtype);
    size_t rb = lmp_dtype_row_bytes(t->dtype, d);
    if (!tr->to_f32 || d % tr->block_size || rb == 0 || t->nbytes < rb * (size_t)E)
        return lmp_err(LMP_EUNSUPPORTED, "tensor %s: dtype %s cannot be read as f32 rows of %lld",
                       name, tr->name, (long long)d);
    for (int r = 0; r < E; r++)
        tr->to_f32((const uint8_t *)t->data + (size_t)r * rb, e->router + (size_t)r * d, d);

    if (gguf) {
        static const char *const part[3] = {"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"};
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "blk.%d.%s.weight", l, part[p]);
            if ((rc = need_t(m, name, true, &t)))
                return rc;
            const int64_t rows = p < 2 ? ff : d, cols = p < 2 ? d : ff;
            for (int x = 0; x < E; x++)
                if ((rc = stacked_view(m, t, name, E, x, rows, 0, rows, cols, &e->w[3 * x + p])))
                    return rc;
        }
        return 0;
    }
    if (granite) {
        const lmp_tensor *ti, *to;
        char ni[LMP_MAX_NAME], no[LMP_MAX_NAME];
        snprintf(ni, sizeof ni, "model.layers.%d.block_sparse_moe.input_linear.weight", l);
        snprintf(no, sizeof no, "model.layers.%d.block_sparse_moe.output_linear.weight", l);
        if ((rc = need_t(m, ni, false, &ti)) || (rc = need_t(m, no, false, &to)))
            return rc;
        for (int x = 0; x < E; x++)
            if ((rc = stacked_view(m, ti, ni, E, x, 2 * ff, 0, ff, d, &e->w[3 * x])) ||
                (rc = stacked_view(m, ti, ni, E, x, 2 * ff, ff, ff, d, &e->w[3 * x + 1])) ||
                (rc = stacked_view(m, to, no, E, x, d, 0, d, ff, &e->w[3 * x + 2])))
                return rc;
        return 0;
    }
    static const char *const mix[3] = {"w1", "w3", "w2"}; /* gate, up, down */
    static const char *const q3[3] = {"gate_proj", "up_proj", "down_proj"};
    for (int x = 0; x < E; x++)
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "model.layers.%d.%s.%d.%s.weight", l,
                     mixtral ? "block_sparse_moe.experts" : "mlp.experts", x,
                     mixtral ? mix[p] : q3[p]);
            if ((rc = expert_view(m, name, l, x, p, p < 2 ? ff : d, p < 2 ? d : ff, &e->w[3 * x + p])))
                return rc;
        }
    return 0;
}

void lmp_moe_free(lmp_moe *e)
{
    if (!e)
        return;
    free(e->router);
    free(e->w);
    free(e->hits);
    free(e);
}

/* ---------------------------------------------------------------- routing --------- */

/* Router logits of one normed row: lg[E] = router . x (f32 dots in a fixed order, so
 * experts with equal router rows get equal logits). */
static void router_logits(const lmp_moe *e, const float *x, int64_t d, float *lg)
{
    for (int i = 0; i < e->n_experts; i++)
        lg[i] = lmp_dot_f32(e->router + (size_t)i * d, x, d);
}

/* The k experts of one token and their weights, in ascending expert index (the order in
 * which their outputs are added). lg: the token's E logits. */
static void route_row(const lmp_moe *e, const float *lg, int *sel, float *wt)
{
    const int E = e->n_experts, k = e->top_k;
    double p[MOE_MAX_K];
    int chosen[MOE_MAX_K] = {0};
    uint64_t taken[MOE_MAX_E / 64] = {0};
    /* top-k by logit, largest first; ties: lowest index (strict >) */
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < E; i++) {
            if (taken[i >> 6] >> (i & 63) & 1)
                continue;
            if (best < 0 || lg[i] > lg[best])
                best = i;
        }
        taken[best >> 6] |= 1ull << (best & 63);
        chosen[j] = best;
    }
    double mx = lg[chosen[0]], sum = 0;
    if (e->kind == ROUTE_TOPK_SOFTMAX) {
        for (int j = 0; j < k; j++)
            sum += p[j] = exp((double)lg[chosen[j]] - mx);
        for (int j = 0; j < k; j++)
            p[j] /= sum;
    } else {
        for (int i = 0; i < E; i++)
            sum += exp((double)lg[i] - mx);
        double s = 0;
        for (int j = 0; j < k; j++)
            s += p[j] = exp((double)lg[chosen[j]] - mx) / sum;
        if (e->norm_topk)
            for (int j = 0; j < k; j++)
                p[j] /= s;
    }
    /* ascending expert index (insertion sort; k is small) */
    for (int j = 0; j < k; j++) {
        int i = j;
        while (i > 0 && chosen[i - 1] > chosen[j])
            i--;
        int cj = chosen[j];
        double pj = p[j];
        memmove(chosen + i + 1, chosen + i, sizeof(int) * (size_t)(j - i));
        memmove(p + i + 1, p + i, sizeof(double) * (size_t)(j - i));
        chosen[i] = cj;
        p[i] = pj;
    }
    for (int j = 0; j < k; j++) {
        sel[j] = chosen[j];
        wt[j] = (float)p[j];
        __atomic_fetch_add(&e->hits[chosen[j]], 1, __ATOMIC_RELAXED);
    }
}

/* ---------------------------------------------------------------- batched -------- */

#define ROWS_PAR_MIN 65536

size_t lmp_moe_floats(const lmp_model *m, int n)
{
    const lmp_config *c = &m->cfg;
    const size_t d = (size_t)c->hidden_size, ff = (size_t)c->moe_ff, E = (size_t)c->n_experts;
    const size_t k = (size_t)c->n_experts_used;
    /* logits, Xe, G, U, D per token; sel, wt, per-expert token lists; counts */
    return (size_t)n * (E + 2 * d + 2 * ff + 4 * k) + E + 1;
}

static _Thread_local int g_hook_expert = -1;
static _Thread_local const int *g_hook_rows;

int lmp_hook_expert(void) { return g_hook_expert; }
const int *lmp_hook_expert_rows(void) { return g_hook_expert >= 0 ? g_hook_rows : NULL; }

int lmp_moe_run(const lmp_model *m, const lmp_moe *e, const float *xn, int n, float *out,
                float *buf, int layer, lmp_linear_hook hook, void *user)
{
    const int64_t d = m->cfg.hidden_size, ff = e->ff;
    const int E = e->n_experts, k = e->top_k;
    float *lg = buf, *Xe = lg + (size_t)n * E, *G = Xe + (size_t)n * d, *U = G + (size_t)n * ff;
    float *D = U + (size_t)n * ff, *wt = D + (size_t)n * d, *lw = wt + (size_t)n * k;
    int *sel = (int *)(lw + (size_t)n * k), *lt = sel + (size_t)n * k, *cnt = lt + (size_t)n * k;

#pragma omp parallel for schedule(static) if ((int64_t)n * E * d >= ROWS_PAR_MIN)
    for (int i = 0; i < n; i++)
        router_logits(e, xn + (int64_t)i * d, d, lg + (size_t)i * E);
    for (int i = 0; i < n; i++)
        route_row(e, lg + (size_t)i * E, sel + (size_t)i * k, wt + (size_t)i * k);
    /* tokens per expert, in token order: counting sort */
    memset(cnt, 0, sizeof(int) * (size_t)(E + 1));
    for (int64_t j = 0; j < (int64_t)n * k; j++)
        cnt[sel[j] + 1]++;
    for (int x = 0; x < E; x++)
        cnt[x + 1] += cnt[x];
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            const int x = sel[(size_t)i * k + j], at = cnt[x]++;
            lt[at] = i;
            lw[at] = wt[(size_t)i * k + j];
        }
    for (int x = E; x > 0; x--) /* back to start offsets */
        cnt[x] = cnt[x - 1];
    cnt[0] = 0;

    memset(out, 0, sizeof(float) * (size_t)n * (size_t)d);
    for (int x = 0; x < E; x++) {
        const int c0 = cnt[x], nc = cnt[x + 1] - c0;
        if (nc == 0)
            continue;
        const bool par = (int64_t)nc * d >= ROWS_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
        for (int r = 0; r < nc; r++)
            memcpy(Xe + (int64_t)r * d, xn + (int64_t)lt[c0 + r] * d, sizeof(float) * (size_t)d);
        int rc;
        g_hook_expert = x;
        g_hook_rows = lt + c0;
        rc = hook ? hook(user, layer, LMP_LIN_GATE, Xe, nc, d) : 0;
        g_hook_expert = -1;
        if (rc)
            return rc;
        lmp_gemm(G, Xe, &e->w[3 * x], NULL, nc);
        lmp_gemm(U, Xe, &e->w[3 * x + 1], NULL, nc);
#pragma omp parallel for schedule(static) if ((int64_t)nc * ff >= ROWS_PAR_MIN)
        for (int r = 0; r < nc; r++)
            lmp_silu_mul(G + (int64_t)r * ff, U + (int64_t)r * ff, ff);
        g_hook_expert = x;
        g_hook_rows = lt + c0;
        rc = hook ? hook(user, layer, LMP_LIN_DOWN, G, nc, ff) : 0;
        g_hook_expert = -1;
        if (rc)
            return rc;
        lmp_gemm(D, G, &e->w[3 * x + 2], NULL, nc);
        /* each token appears once per expert: rows are disjoint */
#pragma omp parallel for schedule(static) if (par)
        for (int r = 0; r < nc; r++)
            lmp_axpy_f32(out + (int64_t)lt[c0 + r] * d, lw[c0 + r], D + (int64_t)r * d, d);
    }
    return 0;
}

/* ---------------------------------------------------------------- decoding ------- */

size_t lmp_moe_decode_floats(const lmp_model *m)
{
    const lmp_config *c = &m->cfg;
    return (size_t)c->n_experts + 2 * (size_t)c->moe_ff + (size_t)c->hidden_size +
           2 * (size_t)c->n_experts_used;
}

void lmp_moe_decode_team(const lmp_model *m, const lmp_moe *e, const float *xn, float *out,
                         float *scratch, lmp_team *team)
{
    const int64_t d = m->cfg.hidden_size, ff = e->ff;
    const int E = e->n_experts, k = e->top_k;
    float *lg = scratch, *g = lg + E, *u = g + ff, *tmp = u + ff, *wt = tmp + d;
    int *sel = (int *)(wt + k);
#pragma omp single
    {
        router_logits(e, xn, d, lg);
        route_row(e, lg, sel, wt);
        memset(out, 0, sizeof(float) * (size_t)d);
    }
    for (int j = 0; j < k; j++) { /* only the k routed experts' weights are read */
        const lmp_wmat *w = &e->w[3 * sel[j]];
        lmp_gemv_team(g, xn, &w[0], NULL, false, team);
        lmp_gemv_team(u, xn, &w[1], NULL, false, team);
#pragma omp barrier
#pragma omp single
        lmp_silu_mul(g, u, ff);
        lmp_gemv_team(tmp, g, &w[2], NULL, false, team);
#pragma omp barrier
#pragma omp single
        lmp_axpy_f32(out, wt[j], tmp, d);
    }
}

/* ---------------------------------------------------------------- public ---------- */

bool lmp_model_is_moe(const lmp_model *m)
{
    for (int l = 0; l < m->cfg.n_layers; l++)
        if (m->layers[l].moe)
            return true;
    return false;
}

int lmp_model_n_experts(const lmp_model *m, int layer)
{
    if (layer < 0 || layer >= m->cfg.n_layers || !m->layers[layer].moe)
        return 0;
    return m->layers[layer].moe->n_experts;
}

const lmp_wmat *lmp_model_expert_linear(const lmp_model *m, int layer, int expert, lmp_linear which)
{
    const lmp_moe *e = layer >= 0 && layer < m->cfg.n_layers ? m->layers[layer].moe : NULL;
    if (!e || expert < 0 || expert >= e->n_experts || which < LMP_LIN_GATE || which > LMP_LIN_DOWN)
        return NULL;
    return &e->w[3 * expert + (which - LMP_LIN_GATE)];
}

int lmp_model_set_expert_linear(lmp_model *m, int layer, int expert, lmp_linear which,
                                const lmp_wmat *w)
{
    lmp_moe *e = layer >= 0 && layer < m->cfg.n_layers ? m->layers[layer].moe : NULL;
    if (!e || expert < 0 || expert >= e->n_experts || which < LMP_LIN_GATE || which > LMP_LIN_DOWN)
        return lmp_err(LMP_EINVAL, "layer %d has no expert %d %s", layer, expert,
                       lmp_linear_name(which));
    lmp_wmat *cur = &e->w[3 * expert + (which - LMP_LIN_GATE)];
    if (w->rows != cur->rows || w->cols != cur->cols)
        return lmp_err(LMP_EINVAL, "layer %d expert %d %s: replacement is [%lld, %lld], expected "
                       "[%lld, %lld]", layer, expert, lmp_linear_name(which), (long long)w->rows,
                       (long long)w->cols, (long long)cur->rows, (long long)cur->cols);
    if (!w->q && (!lmp_gemm_supports(w->dtype) || !w->data ||
                  w->row_bytes < lmp_dtype_row_bytes(w->dtype, w->cols)))
        return lmp_err(LMP_EINVAL, "layer %d expert %d %s: unusable replacement weight", layer,
                       expert, lmp_linear_name(which));
    *cur = *w;
    return 0;
}

int lmp_model_expert_hits(const lmp_model *m, int layer, uint64_t *counts)
{
    const lmp_moe *e = layer >= 0 && layer < m->cfg.n_layers ? m->layers[layer].moe : NULL;
    if (!e)
        return lmp_err(LMP_EINVAL, "layer %d is not a mixture of experts", layer);
    for (int x = 0; x < e->n_experts; x++)
        counts[x] = __atomic_load_n(&e->hits[x], __ATOMIC_RELAXED);
    return 0;
}
