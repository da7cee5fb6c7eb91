/*
 * Calibration data for the layer-by-layer quantizers: a text file (plain or gzip) read,
 * tokenized with the model's tokenizer, and cut into token windows, either at seeded
 * random starts as IST-DASLab/gptq datautils.py get_wikitext2 draws them, or as
 * consecutive chunks with a leading BOS as llama.cpp's imatrix does. Not the forward
 * passes (pipeline.c).
 */
#include "pipeline.h"

#include <stdlib.h>
#include <string.h>
#include <zlib.h>

void lmp_calib_default_params(lmp_calib_params *p)
{
    memset(p, 0, sizeof *p);
    p->n_samples = 128;
    p->seq_len = 0;
    p->mode = LMP_CALIB_RANDOM;
    p->seed = 0;
    p->max_bytes = 0;
}

void lmp_calib_free(lmp_calib_data *d)
{
    if (!d)
        return;
    free(d->tokens);
    memset(d, 0, sizeof *d);
}

int lmp_calib_read_text(const char *path, size_t max_bytes, char **text, size_t *len)
{
    *text = NULL;
    *len = 0;
    /* gzread passes a file without the gzip magic through unchanged, so one reader
     * serves plain text and .gz alike. */
    lmp_input_note(path); /* never an output of this run (lib/core/safeout.c) */
    gzFile f = gzopen(path, "rb");
    if (!f)
        return lmp_err(LMP_EIO, "%s: cannot open calibration text", path);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap + 1);
    int rc = LMP_OK;
    if (!buf) {
        rc = lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
        goto done;
    }
    for (;;) {
        if (max_bytes && n >= max_bytes)
            break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                rc = lmp_err(LMP_ENOMEM, "out of memory reading %s", path);
                goto done;
            }
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - n;
        if (max_bytes && want > max_bytes - n)
            want = max_bytes - n;
        if (want > (1u << 30))
            want = 1u << 30;
        int got = gzread(f, buf + n, (unsigned)want);
        if (got < 0) {
            int zerr;
            const char *msg = gzerror(f, &zerr);
            rc = lmp_err(LMP_EIO, "%s: read error (%s)", path, msg ? msg : "?");
            goto done;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n == 0) {
        rc = lmp_err(LMP_EINVAL, "%s: calibration text is empty", path);
        goto done;
    }
    buf[n] = 0;
    *text = buf;
    *len = n;
    buf = NULL;
done:
    free(buf);
    gzclose(f);
    return rc;
}

int lmp_calib_from_text(const lmp_model *m, const char *text, size_t len, const char *name,
                        const lmp_calib_params *p, lmp_calib_data *out)
{
    memset(out, 0, sizeof *out);
    const lmp_config *c = lmp_model_config(m);
    int ctx = c->max_pos > 0 ? c->max_pos : 2048;
    int L = p->seq_len > 0 ? p->seq_len : (ctx < 2048 ? ctx : 2048);
    if (p->n_samples <= 0)
        return lmp_err(LMP_EINVAL, "calibration: %d samples (need at least 1)", p->n_samples);
    if (p->seq_len < 0 || L < 2)
        return lmp_err(LMP_EINVAL, "calibration: sequence length %d (need at least 2)", p->seq_len);
    if (L > ctx)
        return lmp_err(LMP_EINVAL, "calibration: sequence length %d exceeds the model's context of %d tokens",
                       L, ctx);
    int32_t *ids = NULL;
    int64_t n = 0;
    int rc = lmp_model_tokenize(m, text, len, true, &ids, &n);
    if (rc)
        return lmp_err_prefix(rc, "%s", name);
    const int N = p->n_samples;
    int64_t need = p->mode == LMP_CALIB_CHUNKS ? (int64_t)N * L : (int64_t)L + 1;
    if (n < need) {
        if (p->mode == LMP_CALIB_CHUNKS)
            rc = lmp_err(LMP_EINVAL,
                         "%s: calibration text gives %lld tokens (%zu bytes); %d consecutive chunks of %d tokens need %lld",
                         name, (long long)n, len, N, L, (long long)need);
        else
            rc = lmp_err(LMP_EINVAL,
                         "%s: calibration text gives %lld tokens (%zu bytes); random windows of %d tokens need at least %lld",
                         name, (long long)n, len, L, (long long)need);
        free(ids);
        return rc;
    }
    out->tokens = malloc((size_t)N * L * sizeof(int32_t));
    if (!out->tokens) {
        free(ids);
        return lmp_err(LMP_ENOMEM, "out of memory for %d x %d calibration tokens", N, L);
    }
    if (p->mode == LMP_CALIB_CHUNKS) {
        int bos = lmp_model_bos(m);
        for (int s = 0; s < N; s++) {
            memcpy(out->tokens + (int64_t)s * L, ids + (int64_t)s * L, (size_t)L * sizeof(int32_t));
            if (bos >= 0)
                out->tokens[(int64_t)s * L] = bos;
        }
    } else {
        /* random.randint(0, n - L - 1) per sample, as get_wikitext2 draws */
        lmp_rng rng;
        lmp_rng_seed(&rng, p->seed);
        uint64_t span = (uint64_t)(n - L); /* starts 0 .. n-L-1 */
        for (int s = 0; s < N; s++) {
            int64_t i = (int64_t)(lmp_rng_next(&rng) % span);
            memcpy(out->tokens + (int64_t)s * L, ids + i, (size_t)L * sizeof(int32_t));
        }
    }
    free(ids);
    out->n_samples = N;
    out->seq_len = L;
    out->n_text_tokens = n;
    out->text_bytes = len;
    return LMP_OK;
}

int lmp_calib_load(const lmp_model *m, const char *path, const lmp_calib_params *p, lmp_calib_data *out)
{
    char *text;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = lmp_calib_read_text(path, p->max_bytes, &text, &len);
    if (rc)
        return rc;
    rc = lmp_calib_from_text(m, text, len, path, p, out);
    free(text);
    return rc;
}
