/*
 * formats/: the on-disk packings of integer group quantization, translated to and from
 * the canonical intgroup lmp_qtensor (lib/quant/intquant.h): GPTQ v1/v2 (AutoGPTQ,
 * GPTQModel, transformers, vLLM), AWQ GEMM (AutoAWQ) and compressed-tensors
 * pack-quantized (llm-compressor, vLLM), plus their config.json "quantization_config"
 * blocks. Per Linear only; the model-level writer (whole folder) lives elsewhere.
 *
 * Packings (facts from the reference implementations, see docs FORMATS.md):
 *   GPTQ   qweight I32 [in*bits/32, out]: for each output column an LSB-first bit stream
 *          along the input axis (4-bit: word w of column j holds rows 8w..8w+7, row 8w+k
 *          at bits 4k; 3-bit: 32 rows per 3 words, values straddle word boundaries as in
 *          AutoGPTQ's pack); qzeros I32 [n_groups, out*bits/32], the same stream along
 *          the output axis, holding z-1 (v1, "gptq") or z (v2, "gptq_v2"); scales F16
 *          [n_groups, out]; g_idx I32 [in]. bits 2, 3, 4, 8.
 *   AWQ    qweight I32 [in, out/8]: nibble i of word c holds output column 8c+order[i],
 *          order = {0,2,4,6,1,3,5,7}; qzeros I32 [n_groups, out/8] same interleave, true
 *          zero; scales F16 [n_groups, out]. 4-bit only, no g_idx, in % group_size == 0.
 *   CT     weight_packed I32 [out, ceil(in/(32/bits))]: 32/bits whole values per word,
 *          LSB first (no straddling; 3-bit uses 30 bits of each word), value = signed
 *          code + 2^(bits-1) = our unsigned code; weight_scale [out, n_groups] (F16 by
 *          default, BF16/F32 on request); weight_zero_point I32 [ceil(out/(32/bits)),
 *          n_groups], packed the same way along the output axis, only when asymmetric;
 *          weight_g_idx I32 [in] only with (group) act-order; weight_shape I64 [2] =
 *          {out, in}. bits 2..8.
 * The layer's bias, if any, is written by the caller as "<prefix>.bias".
 */
#ifndef LMP_PACKING_H
#define LMP_PACKING_H

#include "lib/io/io.h"
#include "lib/quant/intquant.h"

#include <cjson/cJSON.h>

/* The integer-group formats. One row each in formats/fmt_table.c's table (g_qformats);
 * adding a format: a value here, its row there, its layout file (see docs/architecture.md,
 * "How to add a quant format"). */
typedef enum {
    LMP_QFMT_GPTQ_V1 = 0, /* checkpoint_format "gptq": qzeros hold z-1; sym only */
    LMP_QFMT_GPTQ_V2,     /* checkpoint_format "gptq_v2": qzeros hold z */
    LMP_QFMT_AWQ_GEMM,    /* AutoAWQ version "gemm" */
    LMP_QFMT_CT_PACKED,   /* compressed-tensors format "pack-quantized" */
    LMP_QFMT_COUNT
} lmp_qformat;

/* What a checkpoint's quantization_config says (and what a reader needs besides the
 * tensors). */
typedef struct {
    int bits;
    int group_size;       /* -1 = per output channel */
    bool sym;
    bool desc_act;        /* act-order */
    bool static_groups;
    bool true_sequential;
    float damp_percent;
    lmp_dtype scale_dtype; /* compressed-tensors weight_scale dtype (F16, BF16 or F32) */
} lmp_intq_config;

/* Defaults (4 bits, group 128, sym, damp 0.01, true_sequential, F16 scales), then the
 * fields a qtensor determines (bits, group_size, sym, desc_act = has g_idx) when q != NULL. */
void lmp_intq_config_init(lmp_intq_config *c, const lmp_qtensor *q);

/* ---------------------------------------------------------------- mixed configs --
 * Per-module settings (issue 21, mixed precision) in the two forms vLLM loads:
 *   GPTQ (GPTQModel) "dynamic": an object of regex keys, each optionally prefixed "+:"
 *     (override, the default) or "-:" (module not quantized), values overriding "bits",
 *     "group_size", "sym", "desc_act"; matched with Python's re.match (anchored at the
 *     start only) against the module name; the first matching key in order wins (vLLM's
 *     get_dynamic_override). vLLM matches its FUSED modules (qkv_proj, gate_up_proj), so
 *     our writer's keys name both: "model\.layers\.3\.self_attn\.(q_proj|k_proj|
 *     v_proj|qkv_proj)$".
 *   compressed-tensors "config_groups": several groups, each with "targets" (exact module
 *     names, "re:"-prefixed regexes, or a class name such as "Linear") and "weights"
 *     args; "ignore" lists modules (names or "re:") left unquantized. Precedence as
 *     compressed-tensors / vLLM: an exact name, then a regex, then the class.
 * Regexes are PCRE2 (Python's re syntax for the usual patterns), anchored at the start. */
typedef struct {
    char *pattern;      /* owned: a module name, a regex, or a class name */
    int kind;           /* 0 exact name, 1 regex, 2 class name ("Linear") */
    bool skip;          /* module left unquantized ("-:", compressed-tensors ignore) */
    lmp_intq_config c;  /* the module's setting (base with the rule's overrides) */
    void *code;         /* compiled regex (pcre2_code), owned */
} lmp_intq_rule;

typedef struct {
    int n;
    lmp_intq_rule *r;   /* owned */
    bool ct;            /* compressed-tensors precedence (else first match in order) */
    bool has_groups;    /* compressed-tensors: targets decide; a module none names is not quantized */
} lmp_intq_rules;

/* Reads the per-module part of a quantization_config already parsed into (f, base):
 * GPTQ "dynamic" (absent or null: no rules), compressed-tensors config_groups + ignore.
 * A bad regex, a value that is not an object, bits outside 2..8 are LMP_EFORMAT /
 * LMP_EUNSUPPORTED naming the key. *out owned (lmp_intq_rules_free), cleared on error. */
int lmp_intq_rules_parse(const cJSON *qc, lmp_qformat f, const lmp_intq_config *base, lmp_intq_rules *out);
void lmp_intq_rules_free(lmp_intq_rules *r); /* accepts NULL and cleared structs */
/* The setting of module `name` ("model.layers.0.mlp.down_proj"): *out = base, or the
 * matching rule's; *skip true when the module is not quantized. */
void lmp_intq_rules_resolve(const lmp_intq_rules *r, const lmp_intq_config *base, const char *name,
                            lmp_intq_config *out, bool *skip);

/* One module's setting for a mixed quantization_config (the writer's input). */
typedef struct {
    const char *name;   /* "model.layers.3.self_attn.q_proj" */
    int bits, group_size;
} lmp_intq_module;

/* The tensors of one quantized Linear in one packing. Names are suffixes ("qweight");
 * after pack they are owned, after lmp_packed_linear_from_st borrowed. */
#define LMP_PACKED_MAX 6
typedef struct {
    lmp_qformat format;
    int n;
    lmp_tensor t[LMP_PACKED_MAX];
} lmp_packed_linear;

void lmp_packed_linear_free(lmp_packed_linear *p); /* accepts NULL */
/* Borrowed pointer to the tensor named `suffix`, or NULL. */
const lmp_tensor *lmp_packed_linear_find(const lmp_packed_linear *p, const char *suffix);

/* ---------------------------------------------------------------- the table ------- */

/* One integer-group format: everything the model writer, the reader and the commands
 * need to know about it. The functions live in the format's own file (fmt_gptq.c,
 * fmt_awq.c, fmt_ct.c), which uses only fmt_common.c, never another format's file nor
 * the table. */
typedef struct {
    const char *name;            /* "gptq", "gptq_v2", "awq", "pack-quantized" */
    const char *const *aliases;  /* other names the commands accept (NULL-terminated or NULL) */
    const char *quant_method;    /* quantization_config "quant_method" it is read from */
    const char *const *required; /* tensor suffixes of one Linear, NULL-terminated;
                                    required[0] is the packed weight ("is this linear packed") */
    const char *const *optional; /* read when present (g_idx, zero points) */
    const char *skip_key;        /* quantization_config list of the linears left dense */
    const char *asym_refusal;    /* non-NULL: symmetric only; the writer's refusal */
    lmp_qformat asym_format;     /* with asym_refusal: the format that holds asymmetric zeros */
    bool scale_dtypes;           /* scales stored as F16, BF16 or F32 on request (else F16) */
    bool quantize_config_json;   /* the folder also gets quantize_config.json */
    /* canonical -> packing (scale_dtype only where scale_dtypes); *out owned */
    int (*pack)(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out);
    /* packing (in->format) -> canonical, every shape and range checked against cfg */
    int (*unpack)(const lmp_packed_linear *in, const lmp_intq_config *cfg, lmp_qtensor *out);
    /* the quantization_config object (owned cJSON) */
    cJSON *(*config_json)(const lmp_intq_config *c, lmp_qformat f);
    /* reads a quantization_config whose quant_method is this row's: which of the formats
     * sharing that quant_method (*f) and its config; LMP_EUNSUPPORTED for variants not
     * in the table, with a message */
    int (*config_read)(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c);
    /* per-module settings into the quantization_config qc made by config_json (base =
     * its setting): GPTQ's "dynamic", compressed-tensors' config_groups; NULL: the format
     * holds one setting only (AWQ GEMM). n modules, every quantized linear. */
    int (*config_mixed)(cJSON *qc, const lmp_intq_config *base, const lmp_intq_module *m, int n);
    /* reads the per-module part back (lmp_intq_rules_parse); NULL: none */
    int (*config_rules)(const cJSON *qc, const lmp_intq_config *base, lmp_intq_rules *out);
} lmp_qformat_row;

/* The row of f, or NULL when f is not a format. */
const lmp_qformat_row *lmp_qformat_get(lmp_qformat f);
const char *lmp_qformat_name(lmp_qformat f); /* row's name, "?" for none */
/* Format by its name or one of its aliases ("compressed-tensors", "ct", "gptq-v2"),
 * case-insensitive; LMP_EINVAL naming the known ones otherwise. */
int lmp_qformat_by_name(const char *name, lmp_qformat *f);
/* "gptq, gptq_v2, awq or pack-quantized" (the names, or with quant_methods = true the
 * distinct quant_methods) into buf. Returns buf. */
const char *lmp_qformat_list(char *buf, size_t n, bool quant_methods);
/* Every name and alias of the formats whose quant_method is `quant_method` (all when
 * NULL), joined by '|' in table order ("gptq|gptq_v2|gptq-v2|awq|..."): the accepted
 * values of a command's format option, its metavar. Returns buf. */
const char *lmp_qformat_choices(char *buf, size_t n, const char *quant_method);
/* The format to write for zero points that are (a)symmetric: f itself, or its row's
 * asym_format when f is symmetric-only and sym is false. */
lmp_qformat lmp_qformat_for_zeros(lmp_qformat f, bool sym);

/* ---------------------------------------------------------------- per format ------ */

/* Canonical -> packing. `scale_dtype` matters only for compressed-tensors: LMP_DT_F16
 * (the usual), LMP_DT_BF16 or LMP_DT_F32; GPTQ and AWQ always store f16 (AWQ and CT
 * ignore f: they have one format each). Scales are rounded to the stored dtype (exact when
 * the quantizer ran with scale_f16). Refuses, with a message naming the constraint: bits
 * the packing lacks, shapes it cannot hold, asymmetric GPTQ v1, act-order in AWQ, zero
 * points above 2^bits-1. *out is owned by the caller (lmp_packed_linear_free). */
int lmp_fmt_gptq_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out);
int lmp_fmt_awq_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out);
int lmp_fmt_ct_pack(const lmp_qtensor *q, lmp_qformat f, lmp_dtype scale_dtype, lmp_packed_linear *out);
/* Dispatch through the table. */
int lmp_qformat_pack(lmp_qformat f, const lmp_qtensor *q, lmp_dtype scale_dtype,
                     lmp_packed_linear *out);

/* Packing -> canonical. `cfg` gives bits, group_size and sym (from the checkpoint's
 * quantization_config); every shape, dtype and value range is checked against it before
 * use, and errors name the tensor. sym is kept only when every zero equals 2^(bits-1)
 * (AWQ: decided by the zeros alone). GPTQ v1 zeros are read as stored + 1, what its
 * loaders compute (the variant is in->format). A trivial g_idx is dropped. *out is
 * initialized here. */
int lmp_fmt_gptq_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg, lmp_qtensor *out);
int lmp_fmt_awq_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg, lmp_qtensor *out);
int lmp_fmt_ct_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg, lmp_qtensor *out);
int lmp_qformat_unpack(const lmp_packed_linear *in, const lmp_intq_config *cfg,
                       lmp_qtensor *out);

/* Safetensors glue. declare adds "<prefix>.<suffix>" for every tensor (before
 * lmp_st_writer_begin); write then emits their bytes in the same order. from_st collects
 * a Linear's tensors of format f from a reader (borrowed views; missing required tensors
 * are LMP_ENOTFOUND naming them). */
int lmp_packed_linear_declare(lmp_st_writer *w, const char *prefix, const lmp_packed_linear *p);
int lmp_packed_linear_write(lmp_st_writer *w, const lmp_packed_linear *p);
int lmp_packed_linear_from_st(const lmp_st_reader *r, const char *prefix, lmp_qformat f,
                              lmp_packed_linear *out);

/* quantization_config objects (owned cJSON, cJSON_Delete). GPTQ's is also the whole of
 * quantize_config.json. AWQ: "modules_to_not_convert" null; compressed-tensors: "ignore"
 * ["lm_head"] (the model writer fills in the linears it keeps dense). */
cJSON *lmp_fmt_gptq_config_json(const lmp_intq_config *c, lmp_qformat f);
cJSON *lmp_fmt_awq_config_json(const lmp_intq_config *c, lmp_qformat f);
cJSON *lmp_fmt_ct_config_json(const lmp_intq_config *c, lmp_qformat f);
cJSON *lmp_qformat_config_json(lmp_qformat f, const lmp_intq_config *c);
int lmp_fmt_gptq_config_mixed(cJSON *qc, const lmp_intq_config *base, const lmp_intq_module *m, int n);
int lmp_fmt_ct_config_mixed(cJSON *qc, const lmp_intq_config *base, const lmp_intq_module *m, int n);
int lmp_fmt_gptq_config_rules(const cJSON *qc, const lmp_intq_config *base, lmp_intq_rules *out);
int lmp_fmt_ct_config_rules(const cJSON *qc, const lmp_intq_config *base, lmp_intq_rules *out);
/* Bytes linear [rows, cols] takes in format f at (bits, group_size, sym, g_idx) with
 * scale_dtype (compressed-tensors): the sum of the tensors its packing writes (an empty
 * tensor packed); 0 when the packing cannot hold that shape. */
uint64_t lmp_qformat_linear_bytes(lmp_qformat f, int64_t rows, int64_t cols, int bits, int group_size, bool sym,
                                  bool gidx, lmp_dtype scale_dtype);
/* Each format's quantization_config reader (the rows' config_read). */
int lmp_fmt_gptq_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c);
int lmp_fmt_awq_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c);
int lmp_fmt_ct_config_read(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c);
/* Reads a quantization_config object: the row whose quant_method it names reads it, then
 * bits and group_size are range-checked. LMP_EUNSUPPORTED for other quant_methods /
 * formats / several weight groups, with a message. */
int lmp_qformat_config_parse(const cJSON *qc, lmp_qformat *f, lmp_intq_config *c);

#endif
