/*
 * Natively quantized input refused from headers alone (jobs/dense_input.h).
 */
#include "jobs/dense_input.h"
#include "formats/packing.h"
#include "lib/io/checkpoint.h"
#include "lib/quant/pipeline.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A folder whose config.json has a quantization_config: the bits it declares (0 when the
 * config is not one lmpress reads), or -1 when there is none. */
static int folder_bits(const char *model)
{
    char *cfg = lmp_path_join(model, "config.json"), *txt = NULL;
    int bits = -1;
    if (cfg && lmp_read_file(cfg, &txt, NULL) == 0) {
        cJSON *j = cJSON_Parse(txt);
        const cJSON *qc = j ? cJSON_GetObjectItemCaseSensitive(j, "quantization_config") : NULL;
        if (cJSON_IsObject(qc)) {
            lmp_qformat f;
            lmp_intq_config c;
            bits = lmp_qformat_config_parse(qc, &f, &c) == 0 ? c.bits : 0;
        }
        cJSON_Delete(j);
    }
    free(cfg);
    free(txt);
    return bits;
}

int lmp_job_dense_input_check(const char *model, const char *advice)
{
    const bool gguf = lmp_str_endswith_ci(model, ".gguf");
    const int bits = !gguf && lmp_path_is_dir(model) ? folder_bits(model) : -1;
    if (!gguf && bits < 0)
        return LMP_OK;
    lmp_ckpt c;
    if (lmp_ckpt_open(&c, model))
        return LMP_OK; /* the job reports the opening error itself */
    int rc = LMP_OK;
    for (int l = 0; l < c.config.n_layers && !rc; l++)
        for (int w = 0; w < LMP_LIN_COUNT && !rc; w++) {
            char prefix[LMP_MAX_NAME], name[LMP_MAX_NAME + 16], what[64];
            lmp_linear_hf_prefix(l, (lmp_linear)w, prefix, sizeof prefix);
            snprintf(name, sizeof name, "%s.weight", prefix);
            const lmp_tensor *t = lmp_ckpt_find_hf(&c, name);
            if (gguf) {
                if (!t || t->dtype == LMP_DT_F32 || t->dtype == LMP_DT_F16 || t->dtype == LMP_DT_BF16)
                    continue;
                snprintf(what, sizeof what, "%s", lmp_dtype_info(t->dtype)->name);
            } else {
                if (t)
                    continue; /* left dense (modules_to_not_convert) */
                if (bits > 0)
                    snprintf(what, sizeof what, "%d-bit integer groups", bits);
                else
                    snprintf(what, sizeof what, "integer groups");
            }
            rc = lmp_err(LMP_EUNSUPPORTED, "%s: %s is natively quantized (%s)%s", model, name, what,
                         advice ? advice : "");
        }
    lmp_ckpt_close(&c);
    return rc;
}
