/*
 * Shared by tests that need a block-quantized GGUF of a fixture model: the HF folder
 * converted to an f32 GGUF (formats' lmp_convert), then quantized (lmp_gguf_quantize).
 */
#ifndef LMP_TEST_QUANT_GGUF_H
#define LMP_TEST_QUANT_GGUF_H

#include "formats/formats.h"
#include "lib/quant/quant.h"

/* hf -> f32path (f32 GGUF) -> out (GGUF of block type `type`; tensors matching keep[0..n_keep)
 * are copied as they are). Both files replaced if present. Returns status; on failure the
 * message names the step. */
static int quant_gguf(const char *hf, const char *f32path, const char *out, const char *type,
                      const char **keep, int n_keep)
{
    lmp_convert_params cvp;
    lmp_convert_default_params(&cvp);
    cvp.force = true;
    cvp.quiet = true;
    lmp_convert_result cvr;
    int rc = lmp_convert(hf, f32path, &cvp, &cvr);
    if (rc)
        return lmp_err_prefix(rc, "convert %s to GGUF", hf);
    lmp_gguf_quant_params gp;
    lmp_gguf_quant_default_params(&gp);
    gp.type = type;
    gp.keep = keep;
    gp.n_keep = n_keep;
    gp.force = true;
    lmp_gguf_quant_result gr;
    rc = lmp_gguf_quantize(f32path, out, &gp, &gr);
    return rc ? lmp_err_prefix(rc, "%s GGUF", type) : 0;
}

#endif
