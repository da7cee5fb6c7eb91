/*
 * GGUF quantization driver: the per-tensor type choice of llama.cpp's mixes (q4_k_m and
 * friends, llama architecture) with llama.cpp's block-size fallbacks, --tensor-type and
 * --keep patterns, and the streaming GGUF -> GGUF re-encoding (round-to-nearest with the
 * block quantizers of kquants.c, optionally importance-weighted).
 *
 * Facts followed: llama.cpp src/llama-quant.cpp (tensor_allows_quantization,
 * llama_tensor_get_type_impl, tensor_type_fallback, llama_ftype_get_default_type) and
 * include/llama.h (LLAMA_FTYPE_* values). The tensors come from an lmp_gguf_src: a GGUF
 * file here, or an HF checkpoint through formats' converter (lmp_convert_src_open; lib/quant
 * does not read HF layouts). Not here: calibration (the weights hook), other
 * architectures' special cases (Falcon, MoE, 70B GQA), the IQ types.
 */
#include "quant.h"
#include "../io/io.h"

#include <math.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- --type table */

enum { /* llama.h LLAMA_FTYPE_* */
    FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
    FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_BF16 = 32,
    FT_IQ2_XXS = 19, FT_IQ2_XS = 20, FT_IQ3_XS = 22, FT_IQ3_XXS = 23, FT_IQ1_S = 24, FT_IQ3_S = 26, FT_IQ3_M = 27,
    FT_IQ2_S = 28, FT_IQ2_M = 29, FT_IQ1_M = 31,
    FT_IQ4_NL = 25, FT_IQ4_XS = 30, FT_TQ1_0 = 36, FT_TQ2_0 = 37, FT_MXFP4_MOE = 38, FT_Q1_0 = 40, FT_Q2_0 = 41,
};

static const lmp_gguf_qtype g_qtypes[] = {
    {"q8_0", FT_Q8_0, LMP_DT_Q8_0, "8.50 bpw, 32-value blocks"},
    {"q6_k", FT_Q6_K, LMP_DT_Q6_K, "6.56 bpw k-quant"},
    {"q5_k_m", FT_Q5_K_M, LMP_DT_Q5_K, "q5_K, half of attn_v/ffn_down in q6_K"},
    {"q5_k_s", FT_Q5_K_S, LMP_DT_Q5_K, "q5_K everywhere but the output"},
    {"q5_1", FT_Q5_1, LMP_DT_Q5_1, "6.0 bpw legacy, with min"},
    {"q5_0", FT_Q5_0, LMP_DT_Q5_0, "5.5 bpw legacy"},
    {"q4_k_m", FT_Q4_K_M, LMP_DT_Q4_K, "q4_K, half of attn_v/ffn_down in q6_K"},
    {"iq4_xs", FT_IQ4_XS, LMP_DT_IQ4_XS, "4.25 bpw non-linear (imatrix advised)"},
    {"iq4_nl", FT_IQ4_NL, LMP_DT_IQ4_NL, "4.50 bpw non-linear, 32-value blocks"},
    {"iq3_m", FT_IQ3_M, LMP_DT_IQ3_S, "iq3_s, attn_v/attn_output and first ffn_down in q4_K"},
    {"iq3_s", FT_IQ3_S, LMP_DT_IQ3_S, "3.44 bpw lattice"},
    {"iq3_xs", FT_IQ3_XS, LMP_DT_IQ3_S, "iq3_s, attn_q/attn_k and middle ffn_up/gate in iq3_xxs"},
    {"iq3_xxs", FT_IQ3_XXS, LMP_DT_IQ3_XXS, "3.06 bpw lattice (needs an imatrix)"},
    {"iq2_m", FT_IQ2_M, LMP_DT_IQ2_S, "iq2_s, attn_v/attn_output/first ffn_down in iq3_s (imatrix)"},
    {"iq2_s", FT_IQ2_S, LMP_DT_IQ2_XS, "iq2_xs, attn_v/attn_output/first ffn_down in iq3_s (imatrix)"},
    {"iq2_xs", FT_IQ2_XS, LMP_DT_IQ2_XS, "2.31 bpw lattice (needs an imatrix)"},
    {"iq2_xxs", FT_IQ2_XXS, LMP_DT_IQ2_XXS, "2.06 bpw lattice (needs an imatrix)"},
    {"iq1_m", FT_IQ1_M, LMP_DT_IQ1_M, "1.75 bpw lattice (needs an imatrix)"},
    {"iq1_s", FT_IQ1_S, LMP_DT_IQ1_S, "1.56 bpw lattice (needs an imatrix)"},
    {"q4_k_s", FT_Q4_K_S, LMP_DT_Q4_K, "q4_K, first layers' attn_v/ffn_down in q5_K"},
    {"q4_1", FT_Q4_1, LMP_DT_Q4_1, "5.0 bpw legacy, with min"},
    {"q4_0", FT_Q4_0, LMP_DT_Q4_0, "4.5 bpw legacy"},
    {"q3_k_l", FT_Q3_K_L, LMP_DT_Q3_K, "q3_K, attn_v/attn_output/ffn_down in q5_K"},
    {"q3_k_m", FT_Q3_K_M, LMP_DT_Q3_K, "q3_K, attn_v/attn_output/ffn_down in q4_K/q5_K"},
    {"q3_k_s", FT_Q3_K_S, LMP_DT_Q3_K, "q3_K everywhere but the output"},
    {"q2_k", FT_Q2_K, LMP_DT_Q2_K, "q2_K, attn_v/attn_output/ffn_down in q3_K/q4_K"},
    {"q2_0", FT_Q2_0, LMP_DT_Q2_0, "2.25 bpw, {-1,0,1,2} x scale per 64"},
    {"tq2_0", FT_TQ2_0, LMP_DT_TQ2_0, "2.06 bpw ternary (for ternary-trained models)"},
    {"tq1_0", FT_TQ1_0, LMP_DT_TQ1_0, "1.69 bpw ternary (for ternary-trained models)"},
    {"q1_0", FT_Q1_0, LMP_DT_Q1_0, "1.13 bpw, sign x mean |w| per 128"},
    {"mxfp4_moe", FT_MXFP4_MOE, LMP_DT_MXFP4, "MXFP4 experts, everything else q8_0"},
    {"f16", FT_F16, LMP_DT_F16, "no quantization, f16 matrices"},
    {"bf16", FT_BF16, LMP_DT_BF16, "no quantization, bf16 matrices"},
    {"f32", FT_F32, LMP_DT_F32, "no quantization, f32 matrices"},
    {NULL, 0, LMP_DT_F32, NULL},
};

const lmp_gguf_qtype *lmp_gguf_qtype_list(void) { return g_qtypes; }

const lmp_gguf_qtype *lmp_gguf_qtype_find(const char *name)
{
    static const char *alias[][2] = {{"q3_k", "q3_k_m"}, {"q4_k", "q4_k_m"}, {"q5_k", "q5_k_m"}};
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (strcasecmp(name, alias[i][0]) == 0)
            name = alias[i][1];
    for (const lmp_gguf_qtype *q = g_qtypes; q->name; q++)
        if (strcasecmp(name, q->name) == 0)
            return q;
    return NULL;
}

/* ---------------------------------------------------------------- the mix rules */

static bool more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && strcmp(s + a - b, suf) == 0;
}

int lmp_gguf_mix_type(const lmp_gguf_qtype *qt, const lmp_gguf_mix_info *mi, const char *name, int ndim,
                      const int64_t *shape)
{
    /* tensor_allows_quantization: 2-D+ tensors named *weight, not norms, not expert routers */
    if (ndim < 2 || !ends_with(name, "weight") || strstr(name, "_norm.weight") ||
        strstr(name, "ffn_gate_inp.weight"))
        return -1;
    lmp_dtype t = qt->dtype;
    if (!lmp_dtype_info(t)->is_quant)
        return t;
    int ft = qt->ftype, layer = 0;
    int64_t nx = shape[ndim - 1];
    if (sscanf(name, "blk.%d.", &layer) != 1)
        layer = 0;
    int n = mi->n_layers > 0 ? mi->n_layers : 1;
    int gqa = mi->n_head_kv > 0 ? mi->n_head / mi->n_head_kv : 1;

    /* the output (and a tied token embedding, which doubles as the output) */
    const bool iq2 = ft == FT_IQ2_XXS || ft == FT_IQ2_XS || ft == FT_IQ1_S || ft == FT_IQ2_S || ft == FT_IQ2_M ||
                     ft == FT_IQ1_M; /* llama.cpp's very-low-bit group */
    const bool iq2s = ft == FT_IQ2_S || ft == FT_IQ2_M, iq4 = ft == FT_IQ4_NL || ft == FT_IQ4_XS;
    if (strcmp(name, "output.weight") == 0 || (mi->tied && strcmp(name, "token_embd.weight") == 0)) {
        if (ft == FT_MXFP4_MOE || nx % lmp_dtype_info(t)->block_size != 0)
            return LMP_DT_Q8_0;
        if (iq2 || ft == FT_IQ3_XXS)
            return LMP_DT_Q5_K;
        return t == LMP_DT_Q8_0 ? t : LMP_DT_Q6_K;
    }
    if (ft == FT_MXFP4_MOE) /* experts (3-D) in MXFP4, the rest q8_0 */
        return ndim >= 3 && shape[ndim - 3] > 1 ? LMP_DT_MXFP4 : LMP_DT_Q8_0;
    if (strcmp(name, "token_embd.weight") == 0) {
        if (ft == FT_IQ2_XXS || ft == FT_IQ2_XS || ft == FT_IQ1_S || ft == FT_IQ1_M)
            return LMP_DT_Q2_K;
        if (iq2s || ft == FT_IQ3_XXS)
            return LMP_DT_IQ3_S;
        return ft == FT_TQ1_0 || ft == FT_TQ2_0 || ft == FT_Q2_0 ? LMP_DT_Q4_K : t;
    }
    const bool attn_v = strstr(name, "attn_qkv.weight") || strstr(name, "attn_kv_b.weight") ||
                        strstr(name, "attn_v.weight");
    if (iq2) {
        if (attn_v)
            return gqa >= 4 || mi->n_expert >= 4 ? LMP_DT_Q4_K : iq2s ? LMP_DT_IQ3_S : LMP_DT_Q2_K;
        if (mi->n_expert == 8 && strstr(name, "attn_k.weight"))
            return LMP_DT_Q4_K;
        if (strstr(name, "ffn_down"))
            return layer < n / 8 ? (iq2s ? LMP_DT_IQ3_S : LMP_DT_Q2_K) : t;
        if (strstr(name, "attn_output.weight"))
            return mi->n_expert == 8                   ? LMP_DT_Q5_K
                   : ft == FT_IQ1_S || ft == FT_IQ1_M ? LMP_DT_IQ2_XXS
                   : iq2s                             ? LMP_DT_IQ3_S
                                                      : t;
        return t;
    }
    /* llama.cpp's 8-expert rules (Mixtral; llama-quant.cpp "for the 8-expert model"):
     * attn_v and attn_k in q8_0, attn_output in q5_K for the low-bit mixes */
    const bool moe8 = mi->n_expert == 8;
    if (moe8 && (attn_v || strstr(name, "attn_k.weight")))
        return LMP_DT_Q8_0;
    if (moe8 && strstr(name, "attn_output.weight"))
        return ft == FT_Q2_K || ft == FT_IQ3_XS || ft == FT_IQ3_XXS || ft == FT_Q3_K_S || ft == FT_Q3_K_M ||
                       ft == FT_IQ4_NL || ft == FT_Q4_K_S || ft == FT_Q4_K_M || ft == FT_IQ3_S || ft == FT_IQ3_M ||
                       ft == FT_IQ4_XS
                   ? LMP_DT_Q5_K
                   : t;
    if (attn_v) {
        int i = layer, nv = mi->n_attn_v > 0 ? mi->n_attn_v : n;
        if (ft == FT_Q2_K)
            return gqa >= 4 ? LMP_DT_Q4_K : LMP_DT_Q3_K;
        if (ft == FT_IQ3_XXS)
            return gqa >= 4 ? LMP_DT_Q4_K : !mi->has_imatrix ? LMP_DT_IQ3_S : LMP_DT_IQ3_XXS;
        if ((ft == FT_IQ3_XS || ft == FT_IQ3_S) && gqa >= 4)
            return LMP_DT_Q4_K;
        if (ft == FT_IQ3_M)
            return LMP_DT_Q4_K;
        if (ft == FT_Q3_K_M)
            return i < 2 ? LMP_DT_Q5_K : LMP_DT_Q4_K;
        if (ft == FT_Q3_K_L)
            return LMP_DT_Q5_K;
        if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && more_bits(i, nv))
            return LMP_DT_Q6_K;
        if (iq4 && gqa >= 4)
            return LMP_DT_Q5_K;
        if (ft == FT_Q4_K_S && i < 4)
            return LMP_DT_Q5_K;
        return t;
    }
    if (strstr(name, "attn_k.weight") || strstr(name, "attn_q.weight"))
        return ft == FT_IQ3_XS ? LMP_DT_IQ3_XXS : ft == FT_IQ3_XXS ? LMP_DT_IQ2_S : t;
    if (strstr(name, "attn_output.weight")) {
        if (ft == FT_Q2_K)
            return LMP_DT_Q3_K;
        if (ft == FT_IQ3_XXS)
            return LMP_DT_IQ3_S;
        if (ft == FT_Q3_K_M || ft == FT_IQ3_M)
            return LMP_DT_Q4_K;
        if (ft == FT_Q3_K_L)
            return LMP_DT_Q5_K;
        return t;
    }
    if (strstr(name, "ffn_up") || strstr(name, "ffn_gate"))
        return ft == FT_IQ3_XS && layer >= n / 8 && layer < 7 * n / 8 ? LMP_DT_IQ3_XXS : t;
    if (strstr(name, "ffn_down")) {
        int i = layer;
        if (ft == FT_Q2_K)
            return LMP_DT_Q3_K;
        if (ft == FT_IQ3_XXS && !mi->has_imatrix)
            return i < n / 8 ? LMP_DT_Q4_K : LMP_DT_Q3_K;
        if (ft == FT_Q3_K_M)
            return i < n / 16 ? LMP_DT_Q5_K : LMP_DT_Q4_K;
        if (ft == FT_IQ3_M && (i < n / 8 || (mi->n_expert == 8 && more_bits(i, n))))
            return LMP_DT_Q4_K;
        if (ft == FT_Q3_K_L)
            return LMP_DT_Q5_K;
        if (ft == FT_Q4_K_M)
            return more_bits(i, n) ? LMP_DT_Q6_K : t;
        if (iq4 && i < n / 8 && !mi->has_imatrix)
            return LMP_DT_Q5_K;
        if (ft == FT_Q5_K_M && more_bits(i, n))
            return LMP_DT_Q6_K;
        if (ft == FT_Q4_K_S && i < n / 8)
            return LMP_DT_Q5_K;
        if ((ft == FT_Q4_0 || ft == FT_Q5_0) && mi->has_imatrix && i < n / 8)
            return ft == FT_Q4_0 ? LMP_DT_Q4_1 : LMP_DT_Q5_1;
        return t;
    }
    return t;
}

lmp_dtype lmp_gguf_fallback_type(lmp_dtype t, int64_t cols)
{
    const lmp_dtype_traits *tr = lmp_dtype_info(t);
    if (!tr || cols % tr->block_size == 0)
        return t;
    lmp_dtype r;
    switch (t) {
    case LMP_DT_Q2_K:
    case LMP_DT_Q3_K:
    case LMP_DT_Q2_0:
    case LMP_DT_TQ1_0:
    case LMP_DT_TQ2_0: r = LMP_DT_Q4_0; break;
    case LMP_DT_IQ4_XS:
    case LMP_DT_IQ3_S:
    case LMP_DT_IQ3_XXS:
    case LMP_DT_IQ2_S:
    case LMP_DT_IQ2_XS:
    case LMP_DT_IQ2_XXS:
    case LMP_DT_IQ1_M:
    case LMP_DT_IQ1_S: r = LMP_DT_IQ4_NL; break;
    case LMP_DT_Q4_K: r = LMP_DT_Q5_0; break;
    case LMP_DT_Q5_K: r = LMP_DT_Q5_1; break;
    case LMP_DT_Q6_K: r = LMP_DT_Q8_0; break;
    default: r = LMP_DT_F16; break; /* llama.cpp has none for 32-value types, MXFP4, Q1_0 */
    }
    return cols % lmp_dtype_info(r)->block_size == 0 ? r : LMP_DT_F16;
}

/* ---------------------------------------------------------------- patterns */

typedef struct {
    regex_t re;
    lmp_dtype dt; /* override type; unused for --keep */
    bool ok;
    int hits;     /* tensors it matched (a pattern matching nothing is warned about) */
    const char *text;
} pattern;

static void patterns_free(pattern *p, int n)
{
    for (int i = 0; p && i < n; i++)
        if (p[i].ok)
            regfree(&p[i].re);
    free(p);
}

static int compile_one(pattern *p, const char *rx, const char *what)
{
    int e = regcomp(&p->re, rx, REG_EXTENDED | REG_NOSUB);
    if (e) {
        char msg[256];
        regerror(e, &p->re, msg, sizeof msg);
        return lmp_err(LMP_EINVAL, "%s '%s': bad regular expression: %s", what, rx, msg);
    }
    p->ok = true;
    p->text = rx;
    return LMP_OK;
}

static int compile_patterns(const lmp_gguf_quant_params *p, pattern **ov, pattern **keep)
{
    int rc = LMP_OK;
    *ov = calloc((size_t)p->n_tensor_type + 1, sizeof **ov);
    *keep = calloc((size_t)p->n_keep + 1, sizeof **keep);
    if (!*ov || !*keep)
        return lmp_err(LMP_ENOMEM, "quantize: out of memory");
    for (int i = 0; i < p->n_tensor_type && !rc; i++) {
        const char *s = p->tensor_type[i], *eq = strrchr(s, '=');
        if (!eq || eq == s || !eq[1])
            return lmp_err(LMP_EINVAL, "--tensor-type '%s': expected REGEX=TYPE", s);
        int dt = lmp_dtype_from_name(eq + 1);
        const lmp_dtype_traits *tr = dt >= 0 ? lmp_dtype_info((lmp_dtype)dt) : NULL;
        if (!tr || tr->ggml_type < 0 || !tr->from_f32 || !(tr->is_quant || dt == LMP_DT_F32 || dt == LMP_DT_F16 ||
                                                           dt == LMP_DT_BF16))
            return lmp_err(LMP_EINVAL, "--tensor-type '%s': unknown tensor type '%s' (q2_k..q6_k, q4_0, q4_1, q5_0, "
                                       "q5_1, q8_0, iq4_nl, iq4_xs, iq3_s, iq3_xxs, iq2_s, iq2_xs, iq2_xxs, iq1_m, iq1_s, mxfp4, tq1_0, tq2_0, q1_0, q2_0, f16, bf16, f32)", s, eq + 1);
        char *rx = strndup(s, (size_t)(eq - s));
        if (!rx)
            return lmp_err(LMP_ENOMEM, "quantize: out of memory");
        rc = compile_one(&(*ov)[i], rx, "--tensor-type");
        (*ov)[i].dt = (lmp_dtype)dt;
        (*ov)[i].text = s;
        free(rx);
    }
    for (int i = 0; i < p->n_keep && !rc; i++)
        rc = compile_one(&(*keep)[i], p->keep[i], "--keep");
    return rc;
}

/* Patterns match the GGUF name (llama.cpp's: blk.3.attn_q.weight) or the Hugging Face
 * name of the same tensor (model.layers.3.self_attn.q_proj.weight), whichever the user
 * wrote (issue 18 item 8). */
static pattern *match(pattern *p, int n, const char *name)
{
    char hf[LMP_MAX_NAME];
    bool has_hf = lmp_name_gguf_to_hf(name, hf, sizeof hf) == 0;
    for (int i = 0; i < n; i++)
        if (p[i].ok && (regexec(&p[i].re, name, 0, NULL, 0) == 0 ||
                        (has_hf && regexec(&p[i].re, hf, 0, NULL, 0) == 0))) {
            p[i].hits++;
            return &p[i];
        }
    return NULL;
}

static void warn_unmatched(const pattern *p, int n, const char *what)
{
    for (int i = 0; i < n; i++)
        if (p[i].ok && !p[i].hits)
            lmp_warn("%s '%s' matches no tensor (names: llama.cpp's blk.N.attn_q.weight or Hugging Face's "
                     "model.layers.N.self_attn.q_proj.weight; see lmpress inspect)", what, p[i].text);
}

/* ---------------------------------------------------------------- the plan */

typedef struct {
    lmp_dtype out;
    char note[192];
} plan_item;

void lmp_gguf_quant_default_params(lmp_gguf_quant_params *p) { memset(p, 0, sizeof *p); }

static int make_plan(const lmp_gguf_src *c, const lmp_gguf_qtype *qt, const lmp_gguf_quant_params *p, pattern *ov,
                     pattern *keep, plan_item *plan, lmp_gguf_quant_result *res)
{
    lmp_gguf_mix_info mi = {0};
    mi.n_layers = c->n_layers;
    mi.n_head = c->n_head;
    mi.n_head_kv = c->n_head_kv;
    mi.tied = true;
    mi.has_imatrix = p->weights != NULL;
    mi.n_expert = c->n_expert;
    for (int i = 0; i < c->n_tensors; i++) {
        const char *nm = c->tensors[i].name;
        if (strstr(nm, "attn_v.weight") || strstr(nm, "attn_qkv.weight") || strstr(nm, "attn_kv_b.weight"))
            mi.n_attn_v++;
        if (strcmp(nm, "output.weight") == 0)
            mi.tied = false;
    }
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        const lmp_dtype_traits *st = lmp_dtype_info(t->dtype);
        plan_item *it = &plan[i];
        it->out = t->dtype;
        it->note[0] = 0;
        if (st->is_quant && !p->allow_requantize)
            return lmp_err(LMP_EUNSUPPORTED,
                           "%s: tensor '%s' is already quantized (%s): requantizing loses accuracy; pass "
                           "--allow-requantize to do it anyway",
                           c->path, t->name, st->name);
        int mt = lmp_gguf_mix_type(qt, &mi, t->name, t->ndim, t->shape);
        if (match(keep, p->n_keep, t->name)) {
            snprintf(it->note, sizeof it->note, "kept as %s (--keep)", st->name);
            continue;
        }
        if (mt < 0)
            continue; /* 1-D tensors and norms stay as they are */
        lmp_dtype want = (lmp_dtype)mt;
        pattern *o = match(ov, p->n_tensor_type, t->name);
        if (o) {
            want = o->dt;
            snprintf(it->note, sizeof it->note, "%s (--tensor-type)", lmp_dtype_info(want)->name);
        }
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
        lmp_dtype fb = lmp_gguf_fallback_type(want, cols);
        if (fb != want) {
            const lmp_dtype_traits *tw = lmp_dtype_info(want), *tf = lmp_dtype_info(fb);
            if (fb == LMP_DT_F16 && tw->block_size > 32)
                snprintf(it->note, sizeof it->note, "%lld columns do not fit %s blocks (%d) nor 32-value blocks, "
                         "using %s", (long long)cols, tw->name, tw->block_size, tf->name);
            else
                snprintf(it->note, sizeof it->note, "%lld columns do not fit %s blocks (%d), using %s",
                         (long long)cols, tw->name, tw->block_size, tf->name);
            lmp_warn("%s: %s", t->name, it->note);
            res->n_fallback++;
        }
        it->out = fb;
        if (it->out != t->dtype && !lmp_dtype_info(fb)->from_f32)
            return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' is planned as %s, which lmpress cannot write yet",
                           c->path, t->name, lmp_dtype_info(fb)->name);
        if (it->out != t->dtype && !st->to_f32)
            return lmp_err(LMP_EUNSUPPORTED, "%s: tensor '%s' is %s, which cannot be converted", c->path, t->name,
                           st->name);
    }
    warn_unmatched(keep, p->n_keep, "--keep");
    warn_unmatched(ov, p->n_tensor_type, "--tensor-type");
    return LMP_OK;
}

/* llama.cpp tensor_requires_imatrix: the very low-bit types are garbage without
 * importance weights (token_embd and output are exempt). */
static bool requires_imatrix(lmp_dtype t, const char *name)
{
    if (strcmp(name, "token_embd.weight") == 0 || strcmp(name, "output.weight") == 0)
        return false;
    switch (t) {
    case LMP_DT_IQ3_XXS:
    case LMP_DT_IQ2_XXS:
    case LMP_DT_IQ2_XS:
    case LMP_DT_IQ2_S:
    case LMP_DT_IQ1_S:
    case LMP_DT_IQ1_M: return true;
    default: return false;
    }
}

/* Before anything is written: a type that needs importance weights gets them for every
 * tensor, and importance weights that match none of the tensors they would serve (an
 * imatrix of another model: other names or other row lengths) are refused. */
static int check_weights(const lmp_gguf_src *c, const plan_item *plan, const lmp_gguf_quant_params *p)
{
    int wanted = 0, found = 0;
    const char *first_miss = NULL;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        lmp_dtype o = plan[i].out;
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
        if (o == t->dtype || !lmp_dtype_info(o)->is_quant)
            continue;
        bool need = requires_imatrix(o, t->name);
        if (!p->weights) {
            if (need)
                return lmp_err(LMP_EINVAL, "%s: tensor '%s' is planned as %s, which needs an importance matrix "
                               "(--imatrix FILE or --imatrix-calib TEXT), as llama-quantize requires", c->path,
                               t->name, lmp_dtype_info(o)->name);
            continue;
        }
        if (p->weights_len && strcmp(t->name, "token_embd.weight") != 0) {
            int64_t len = p->weights_len(p->weights_ctx, t->name);
            if (len > 0 && len != cols)
                return lmp_err(LMP_EINVAL, "%s: the importance matrix entry for tensor '%s' holds %lld values, its "
                               "rows have %lld (an imatrix of another model?)", c->path, t->name, (long long)len,
                               (long long)cols);
        }
        if (!lmp_quant_uses_weights(o) || strncmp(t->name, "blk.", 4) != 0)
            continue;
        wanted++;
        const float *w = p->weights(p->weights_ctx, t->name, cols);
        found += w != NULL;
        if (!w && !first_miss)
            first_miss = t->name;
        if (!w && need)
            return lmp_err(LMP_EINVAL, "%s: the importance matrix has no entry of %lld values for tensor '%s', "
                           "and %s needs one (an imatrix of another model?)", c->path, (long long)cols, t->name,
                           lmp_dtype_info(o)->name);
    }
    if (p->weights && wanted > 0 && found == 0)
        return lmp_err(LMP_EINVAL, "%s: the importance matrix matches none of the %d tensors it would weight "
                       "(first: '%s'): tensor names or row lengths differ (an imatrix of another model?)", c->path,
                       wanted, first_miss);
    return LMP_OK;
}

/* ---------------------------------------------------------------- streaming */

typedef struct {
    uint8_t *in;     /* (rows_per, in_row) source rows when the source copies them */
    float *f;        /* (rows_per, cols) source rows in f32 */
    uint8_t *q;      /* (rows_per, out_row) */
    double *err, *ref; /* (rows_per) per-row squared error and squared norm */
    int64_t *bad;    /* (rows_per) first non-finite column or -1 */
    int64_t rows_per;
} buffers;

/* Converts, checks, quantizes and writes one tensor in chunks of rows. */
/* qw: importance weights of `cols` values shared by every row, or, with qw_rows > 0, one
 * vector per qw_rows consecutive rows (the experts of a 3-D tensor, llama-imatrix's layout
 * of nval = cols x n_matrices). */
/* Rows [r0, r0 + nr) of tensor i from the source into *p. Returns status. */
static int src_rows(const lmp_gguf_src *s, int i, int64_t r0, int64_t nr, buffers *b, const uint8_t **p)
{
    const void *v = NULL;
    int rc = s->rows(s->ctx, i, r0, nr, b->in, &v);
    *p = v;
    if (!rc && !v)
        rc = lmp_err(LMP_EIO, "%s: cannot read tensor '%s'", s->path, s->tensors[i].name);
    return rc;
}

/* Drops the pages of source rows that lie in the source's mapping (never our buffer). */
static void release_rows(const buffers *b, const uint8_t *p, size_t n)
{
    if (p != b->in)
        lmp_mmap_release(p, n);
}

static int stream_tensor(lmp_gguf_writer *w, const lmp_gguf_src *s, int ti_index, lmp_dtype out, const float *qw,
                         int64_t qw_rows, bool measure, buffers *b, double *sum_err, double *sum_ref)
{
    const lmp_tensor *t = &s->tensors[ti_index];
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1, rows = cols ? lmp_tensor_nelem(t) / cols : 0;
    const lmp_dtype_traits *ti = lmp_dtype_info(t->dtype), *to = lmp_dtype_info(out);
    size_t in_row = lmp_dtype_row_bytes(t->dtype, cols), out_row = lmp_dtype_row_bytes(out, cols);
    int rc = LMP_OK;
    if (rows == 0 || cols == 0)
        return lmp_gguf_writer_write(w, b->in, 0);
    if (ti->is_quant && t->dtype == out) { /* same block type: copy the bytes */
        for (int64_t r = 0; r < rows && !rc; r += b->rows_per) {
            int64_t nr = rows - r < b->rows_per ? rows - r : b->rows_per;
            const uint8_t *p;
            if ((rc = src_rows(s, ti_index, r, nr, b, &p)))
                return rc;
            rc = lmp_gguf_writer_write(w, p, (size_t)nr * in_row);
            release_rows(b, p, (size_t)nr * in_row);
        }
        return rc;
    }
    bool dense = !ti->is_quant;
    for (int64_t r0 = 0; r0 < rows && !rc; r0 += b->rows_per) {
        int64_t nr = rows - r0 < b->rows_per ? rows - r0 : b->rows_per;
        const uint8_t *src;
        if ((rc = src_rows(s, ti_index, r0, nr, b, &src)))
            return rc;
        /* rows are independent and written to their own slots: dynamic scheduling keeps
         * both threads busy when one is descheduled (shared machines), and the bytes do
         * not depend on which thread quantized which row */
#pragma omp parallel for schedule(dynamic, 4)
        for (int64_t r = 0; r < nr; r++) {
            float *x = b->f + r * cols;
            ti->to_f32(src + (size_t)r * in_row, x, cols);
            b->bad[r] = -1;
            if (dense)
                for (int64_t j = 0; j < cols; j++)
                    if (!isfinite(x[j])) {
                        b->bad[r] = j;
                        break;
                    }
            if (b->bad[r] >= 0 || t->dtype == out)
                continue;
            const float *wr = qw && qw_rows > 0 ? qw + ((r0 + r) / qw_rows) * cols : qw;
            if (wr && qw_rows > 0) { /* an all-zero slice: an expert calibration never reached */
                bool any = false;
                for (int64_t j = 0; j < cols && !any; j++)
                    any = wr[j] != 0.0f;
                if (!any)
                    wr = NULL;
            }
            lmp_quant_rows(out, x, b->q + (size_t)r * out_row, 1, cols, wr);
            if (measure) {
                float *y = malloc(sizeof(float) * (size_t)cols);
                double e = 0, n2 = 0;
                if (y) {
                    to->to_f32(b->q + (size_t)r * out_row, y, cols);
                    for (int64_t j = 0; j < cols; j++) {
                        double d = (double)x[j] - y[j];
                        e += d * d;
                        n2 += (double)x[j] * x[j];
                    }
                    free(y);
                }
                b->err[r] = e;
                b->ref[r] = n2;
            }
        }
        for (int64_t r = 0; r < nr; r++) /* report the first bad value in row order */
            if (b->bad[r] >= 0) {
                float v = b->f[r * cols + b->bad[r]];
                return lmp_err(LMP_ERANGE, "%s: tensor '%s' holds %s at row %lld, column %lld: refusing to quantize",
                               s->path, t->name, isnan(v) ? "NaN" : "Inf", (long long)(r0 + r), (long long)b->bad[r]);
            }
        if (t->dtype == out) /* dense, same type: the input bytes as they are */
            rc = lmp_gguf_writer_write(w, src, (size_t)nr * in_row);
        else
            rc = lmp_gguf_writer_write(w, b->q, (size_t)nr * out_row);
        if (measure && t->dtype != out)
            for (int64_t r = 0; r < nr; r++) { /* fixed order: independent of threads */
                *sum_err += b->err[r];
                *sum_ref += b->ref[r];
            }
        release_rows(b, src, (size_t)nr * in_row);
    }
    return rc;
}

/* ---------------------------------------------------------------- a GGUF file as the source */

static int ckpt_meta(void *ctx, lmp_gguf_writer *w)
{
    const lmp_ckpt *c = ctx;
    int rc = LMP_OK;
    for (uint64_t i = 0; i < c->gguf.n_kv && !rc; i++)
        rc = lmp_gguf_set_kv(w, &c->gguf.kv[i]);
    return rc;
}

static int ckpt_rows(void *ctx, int i, int64_t r0, int64_t nr, void *buf, const void **out)
{
    (void)nr;
    (void)buf;
    const lmp_tensor *t = &((const lmp_ckpt *)ctx)->tensors[i];
    int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
    *out = (const uint8_t *)t->data + (size_t)r0 * lmp_dtype_row_bytes(t->dtype, cols);
    return LMP_OK;
}

void lmp_gguf_file_src_close(lmp_gguf_src *s)
{
    if (!s)
        return;
    if (s->ctx) {
        lmp_ckpt_close(s->ctx);
        free(s->ctx);
    }
    memset(s, 0, sizeof *s);
}

int lmp_gguf_file_src_open(const char *in, lmp_gguf_src *s)
{
    memset(s, 0, sizeof *s);
    lmp_ckpt *c = calloc(1, sizeof *c);
    if (!c)
        return lmp_err(LMP_ENOMEM, "quantize: out of memory");
    int rc = lmp_ckpt_open(c, in);
    if (rc) {
        free(c);
        return rc;
    }
    if (c->kind != LMP_CKPT_GGUF) {
        lmp_ckpt_close(c);
        free(c);
        return lmp_err(LMP_EINVAL, "%s: not a GGUF file (an HF checkpoint is read through formats' "
                                   "lmp_convert_src_open)", in);
    }
    *s = (lmp_gguf_src){.path = c->path,
                        .n_tensors = c->n_tensors,
                        .tensors = c->tensors,
                        .n_layers = c->config.n_layers,
                        .n_head = c->config.n_heads,
                        .n_head_kv = c->config.n_kv_heads,
                        .n_expert = c->config.n_experts,
                        .qk_interleaved = c->qk_interleaved,
                        .ctx = c,
                        .write_meta = ckpt_meta,
                        .rows = ckpt_rows};
    return LMP_OK;
}

int lmp_gguf_quantize(const char *in, const char *out, const lmp_gguf_quant_params *p, lmp_gguf_quant_result *res)
{
    lmp_gguf_src s;
    int rc;
    if (!lmp_gguf_qtype_find(p->type) || !lmp_str_endswith_ci(in, ".gguf") || lmp_path_is_dir(in)) {
        memset(res, 0, sizeof *res);
        res->rel_rms_max = -1;
        if (lmp_gguf_qtype_find(p->type))
            return lmp_err(LMP_EINVAL, "%s: lmp_gguf_quantize reads GGUF (an HF checkpoint goes through formats' "
                                       "lmp_convert_src_open and lmp_gguf_quantize_src)", in);
        lmp_gguf_src none = {.path = in};
        return lmp_gguf_quantize_src(&none, out, p, res); /* refuses the type with the list */
    }
    if ((rc = lmp_gguf_file_src_open(in, &s))) {
        memset(res, 0, sizeof *res);
        res->rel_rms_max = -1;
        return rc;
    }
    rc = lmp_gguf_quantize_src(&s, out, p, res);
    lmp_gguf_file_src_close(&s);
    return rc;
}

int lmp_gguf_quantize_src(const lmp_gguf_src *c, const char *out, const lmp_gguf_quant_params *p,
                          lmp_gguf_quant_result *res)
{
    lmp_gguf_writer *w = NULL;
    pattern *ov = NULL, *keep = NULL;
    plan_item *plan = NULL;
    buffers b = {0};
    int rc;
    double t0 = lmp_time_s();

    memset(res, 0, sizeof *res);
    res->rel_rms_max = -1;
    const lmp_gguf_qtype *qt = lmp_gguf_qtype_find(p->type);
    if (!qt) {
        char list[512];
        size_t k = 0;
        for (const lmp_gguf_qtype *q = g_qtypes; q->name && k < sizeof list; q++)
            k += (size_t)snprintf(list + k, sizeof list - k, "%s%s", k ? ", " : "", q->name);
        return lmp_err(LMP_EINVAL, "unknown quantization type '%s' (one of: %s)", p->type ? p->type : "(none)", list);
    }
    res->ftype = qt->ftype;
    if ((rc = compile_patterns(p, &ov, &keep)))
        goto done;
    plan = calloc((size_t)c->n_tensors + 1, sizeof *plan);
    if (!plan) {
        rc = lmp_err(LMP_ENOMEM, "quantize: out of memory");
        goto done;
    }
    if ((rc = make_plan(c, qt, p, ov, keep, plan, res)) || (rc = check_weights(c, plan, p)))
        goto done;

    /* metadata: every input KV, then file type and quantization version */
    if ((rc = lmp_gguf_writer_new(&w, out, p->force)))
        goto done;
    rc = c->write_meta(c->ctx, w); /* file_type is replaced in place below */
    if (!rc)
        rc = lmp_gguf_set_u32(w, "general.file_type", (uint32_t)qt->ftype);
    if (!rc)
        rc = lmp_gguf_set_u32(w, "general.quantization_version", 2);
    /* imatrix provenance: the keys of llama.cpp tools/quantize/quantize.cpp
     * (LLM_KV_QUANTIZE_IMATRIX_*; counts as u32, as llama-quant.cpp writes int overrides) */
    if (!rc && p->weights && p->imatrix_file)
        rc = lmp_gguf_set_str(w, "quantize.imatrix.file", p->imatrix_file);
    if (!rc && p->weights && p->imatrix_dataset)
        rc = lmp_gguf_set_str(w, "quantize.imatrix.dataset", p->imatrix_dataset);
    if (!rc && p->weights && p->imatrix_entries > 0)
        rc = lmp_gguf_set_u32(w, "quantize.imatrix.entries_count", (uint32_t)p->imatrix_entries);
    if (!rc && p->weights && p->imatrix_chunks > 0)
        rc = lmp_gguf_set_u32(w, "quantize.imatrix.chunks_count", (uint32_t)p->imatrix_chunks);
    for (int i = 0; i < c->n_tensors && !rc; i++)
        rc = lmp_gguf_writer_add_tensor(w, c->tensors[i].name, plan[i].out, c->tensors[i].ndim, c->tensors[i].shape);
    if (rc || (rc = lmp_gguf_writer_begin(w)))
        goto done;

    /* buffers sized for the widest tensor: about 16 MiB of f32 rows per chunk */
    int64_t maxcols = 1;
    size_t max_out_row = 1, max_in_row = 1;
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[i];
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1;
        if (cols > maxcols)
            maxcols = cols;
        size_t orow = lmp_dtype_row_bytes(plan[i].out, cols), irow = lmp_dtype_row_bytes(t->dtype, cols);
        max_in_row = irow > max_in_row ? irow : max_in_row;
        orow = orow > irow ? orow : irow;
        max_out_row = orow > max_out_row ? orow : max_out_row;
    }
    b.rows_per = (4 << 20) / maxcols;
    if (b.rows_per < 1)
        b.rows_per = 1;
    b.in = malloc(max_in_row * (size_t)b.rows_per);
    b.f = malloc(sizeof(float) * (size_t)(b.rows_per * maxcols));
    b.q = malloc(max_out_row * (size_t)b.rows_per);
    b.err = calloc((size_t)b.rows_per, sizeof(double));
    b.ref = calloc((size_t)b.rows_per, sizeof(double));
    b.bad = calloc((size_t)b.rows_per, sizeof(int64_t));
    if (!b.in || !b.f || !b.q || !b.err || !b.ref || !b.bad) {
        rc = lmp_err(LMP_ENOMEM, "quantize: out of memory");
        goto done;
    }

    uint64_t total = 0, done_n = 0;
    for (int i = 0; i < c->n_tensors; i++)
        total += (uint64_t)lmp_tensor_nelem(&c->tensors[i]);
    lmp_progress prog;
    lmp_progress_begin(&prog, "quantize", total);
    for (int i = 0; i < c->n_tensors && !rc; i++) {
        const lmp_tensor *t = &c->tensors[i];
        int64_t cols = t->ndim ? t->shape[t->ndim - 1] : 1, n = lmp_tensor_nelem(t);
        lmp_dtype o = plan[i].out;
        const bool use_w = p->weights && o != t->dtype && lmp_quant_uses_weights(o);
        const float *qw = NULL;
        int64_t qw_rows = 0;
        if (use_w && t->ndim == 3) /* stacked experts: one vector per expert matrix */
            qw_rows = (qw = p->weights(p->weights_ctx, t->name, cols * t->shape[0])) ? t->shape[1] : 0;
        else if (use_w)
            qw = p->weights(p->weights_ctx, t->name, cols);
        double se = 0, sr = 0;
        rc = stream_tensor(w, c, i, o, qw, qw_rows, p->measure_error, &b, &se, &sr);
        if (c->done)
            c->done(c->ctx, i);
        if (rc)
            break;
        uint64_t bo = (uint64_t)lmp_dtype_row_bytes(o, cols) * (uint64_t)(cols ? n / cols : 0);
        res->n_tensors++;
        res->n_quantized += lmp_dtype_info(o)->is_quant && o != t->dtype;
        res->params += (uint64_t)n;
        res->bytes_in += t->nbytes;
        res->bytes_out += bo;
        res->type_count[o]++;
        double rel = -1;
        if (p->measure_error && o != t->dtype) {
            rel = sr > 0 ? sqrt(se / sr) : 0;
            if (rel > res->rel_rms_max) {
                res->rel_rms_max = rel;
                snprintf(res->rel_rms_max_name, sizeof res->rel_rms_max_name, "%s", t->name);
            }
        }
        done_n += (uint64_t)n;
        lmp_progress_update(&prog, done_n);
        if (p->on_tensor) {
            lmp_gguf_quant_tensor_info info = {i + 1, c->n_tensors, t->name, t,     o,
                                               t->nbytes, bo,  rel,     plan[i].note, prog.enabled};
            p->on_tensor(p->on_tensor_ctx, &info);
        }
    }
    lmp_progress_end(&prog);
    if (rc)
        goto done;
    rc = lmp_gguf_writer_finish(w);
    w = NULL;
done:
    lmp_gguf_writer_abort(w);
    patterns_free(ov, p->n_tensor_type);
    patterns_free(keep, p->n_keep);
    free(plan);
    free(b.in);
    free(b.f);
    free(b.q);
    free(b.err);
    free(b.ref);
    free(b.bad);
    res->seconds = lmp_time_s() - t0;
    res->peak_rss = lmp_peak_rss();
    res->bpw = res->params ? (double)res->bytes_out * 8.0 / (double)res->params : 0;
    return rc;
}
