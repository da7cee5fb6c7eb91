/*
 * Calibration data for the layer-by-layer quantizers: a text file (plain or gzip) read,
 * tokenized with the model's tokenizer, and cut into token windows, either at seeded
 * random starts as IST-DASLab/gptq datautils.py get_wikitext2 draws them, or as
 * consecutive chunks with a leading BOS as llama.cpp's imatrix does. Not the forward
 * passes (pipeline.c). Several files, JSONL documents and chat JSONL rendered with the
 * model's chat template (lib/io/chat.h) go through lmp_calib_load.
 */
#include "calib.h"

#include <cjson/cJSON.h>
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

int lmp_calib_check(const lmp_calib_params *p)
{
    if (p->n_samples < 1 || p->n_samples > 1 << 20)
        return lmp_err(LMP_EINVAL, "--calib-samples %d: must be positive (at most %d)", p->n_samples, 1 << 20);
    if (p->seq_len < 0 || p->seq_len == 1 || p->seq_len > 1 << 20)
        return lmp_err(LMP_EINVAL, "--calib-seqlen %d: must be at least 2 (at most %d; 0 = the default)",
                       p->seq_len, 1 << 20);
    if (p->mode != LMP_CALIB_RANDOM && p->mode != LMP_CALIB_CHUNKS)
        return lmp_err(LMP_EINVAL, "--calib-mode: unknown mode %d (random or chunks)", (int)p->mode);
    return LMP_OK;
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

/* ---------------------------------------------------------------- files, JSONL ---- */

static bool looks_jsonl(const char *path, const char *text)
{
    if (lmp_str_endswith_ci(path, ".jsonl") || lmp_str_endswith_ci(path, ".jsonl.gz"))
        return true;
    while (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n')
        text++;
    return *text == '{';
}

/* The model's chat template: its HF folder's tokenizer_config.json, or a GGUF's key. */
static char *model_chat_template(const lmp_model *m)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    if (!c)
        return NULL;
    if (c->kind == LMP_CKPT_GGUF) {
        const char *s = NULL;
        if (lmp_gguf_get_str(&c->gguf, "tokenizer.chat_template", &s) == 0 && s && *s)
            return strdup(s);
        return NULL;
    }
    return c->dir ? lmp_chat_template_of_dir(c->dir) : NULL;
}

static int cat(char **buf, size_t *n, size_t *cap, const char *s, size_t k)
{
    if (*n + k + 3 > *cap) {
        size_t c = (*cap + k + 3) * 2;
        char *nb = realloc(*buf, c);
        if (!nb)
            return lmp_err(LMP_ENOMEM, "out of memory");
        *buf = nb;
        *cap = c;
    }
    if (*n) { /* documents separated by a blank line */
        memcpy(*buf + *n, "\n\n", 2);
        *n += 2;
    }
    memcpy(*buf + *n, s, k);
    *n += k;
    (*buf)[*n] = 0;
    return LMP_OK;
}

/* JSONL -> the documents' texts joined by blank lines. */
static int jsonl_text(const lmp_model *m, const char *path, const char *src, size_t len, const char *field,
                      char **text, size_t *tlen, lmp_calib_source *info)
{
    char *buf = NULL, *tmpl = NULL;
    size_t n = 0, cap = 0;
    int rc = LMP_OK, line = 0;
    lmp_chat_family fam = LMP_CHAT_NONE;
    bool fam_known = false;
    for (size_t a = 0; a < len && !rc;) {
        size_t b = a;
        while (b < len && src[b] != '\n')
            b++;
        line++;
        size_t k = b - a;
        const char *ln = src + a;
        a = b + 1;
        while (k && (ln[k - 1] == '\r' || ln[k - 1] == ' '))
            k--;
        if (!k)
            continue;
        cJSON *o = cJSON_ParseWithLength(ln, k);
        if (!cJSON_IsObject(o)) {
            cJSON_Delete(o);
            rc = lmp_err(LMP_EFORMAT, "%s line %d: not a JSON object (JSONL: one object per line)", path, line);
            break;
        }
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, field ? field : "text");
        const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(o, "messages");
        if (!msgs)
            msgs = cJSON_GetObjectItemCaseSensitive(o, "conversations");
        if (cJSON_IsString(t)) {
            rc = cat(&buf, &n, &cap, t->valuestring, strlen(t->valuestring));
        } else if (field) {
            rc = lmp_err(LMP_EFORMAT, "%s line %d: no string field '%s' (--calib-field)", path, line, field);
        } else if (cJSON_IsArray(msgs)) {
            if (!fam_known) {
                tmpl = model_chat_template(m);
                fam = lmp_chat_family_of(tmpl);
                fam_known = true;
                if (fam == LMP_CHAT_NONE)
                    rc = lmp_err(LMP_EUNSUPPORTED, "%s: chat-formatted JSONL needs the model's chat template, and the "
                                                   "model has none (give a text field with --calib-field)", path);
                else if (fam == LMP_CHAT_UNKNOWN)
                    rc = lmp_err(LMP_EUNSUPPORTED, "%s: the model's chat template is not one lmpress renders (supported: "
                                                   "%s); give a text field with --calib-field", path, LMP_CHAT_SUPPORTED);
            }
            int nm = cJSON_GetArraySize(msgs);
            lmp_chat_msg *mv = rc ? NULL : calloc((size_t)(nm ? nm : 1), sizeof *mv);
            if (!rc && !mv)
                rc = lmp_err(LMP_ENOMEM, "out of memory");
            int q = 0;
            const cJSON *e;
            cJSON_ArrayForEach(e, msgs)
            {
                if (rc)
                    break;
                const cJSON *r = cJSON_GetObjectItemCaseSensitive(e, "role");
                const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "content");
                if (!r && !c) { /* ShareGPT */
                    r = cJSON_GetObjectItemCaseSensitive(e, "from");
                    c = cJSON_GetObjectItemCaseSensitive(e, "value");
                }
                if (!cJSON_IsString(r) || !cJSON_IsString(c)) {
                    rc = lmp_err(LMP_EFORMAT, "%s line %d: message %d has no string role/content", path, line, q + 1);
                    break;
                }
                const char *role = r->valuestring;
                if (strcmp(role, "human") == 0)
                    role = "user";
                else if (strcmp(role, "gpt") == 0)
                    role = "assistant";
                mv[q].role = role;
                mv[q].content = c->valuestring;
                q++;
            }
            char *chat = NULL;
            if (!rc && (rc = lmp_chat_render(fam, mv, q, &chat)) == 0) {
                rc = cat(&buf, &n, &cap, chat, strlen(chat));
                info->chat = true;
            }
            free(chat);
            free(mv);
        } else {
            rc = lmp_err(LMP_EFORMAT, "%s line %d: no \"text\" string and no \"messages\" list (name the text field "
                                      "with --calib-field)", path, line);
        }
        cJSON_Delete(o);
        info->n_docs++;
    }
    free(tmpl);
    if (!rc && !n)
        rc = lmp_err(LMP_EINVAL, "%s: no documents", path);
    if (rc) {
        free(buf);
        return rc;
    }
    *text = buf;
    *tlen = n;
    return LMP_OK;
}

int lmp_calib_load(const lmp_model *m, const char *paths, const lmp_calib_params *p, lmp_calib_data *out)
{
    memset(out, 0, sizeof *out);
    char *list = strdup(paths);
    if (!list)
        return lmp_err(LMP_ENOMEM, "out of memory");
    const char *files[LMP_CALIB_MAX_SOURCES];
    int nf = 0, rc = LMP_OK;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (nf == LMP_CALIB_MAX_SOURCES) {
            free(list);
            return lmp_err(LMP_EINVAL, "--calib: at most %d files", LMP_CALIB_MAX_SOURCES);
        }
        files[nf++] = t;
    }
    if (!nf) {
        free(list);
        return lmp_err(LMP_EINVAL, "--calib: no file given");
    }
    int32_t *ids[LMP_CALIB_MAX_SOURCES] = {0};
    int64_t nt[LMP_CALIB_MAX_SOURCES] = {0}, total = 0;
    size_t bytes = 0;
    const lmp_config *cfg = lmp_model_config(m);
    int ctx = cfg->max_pos > 0 ? cfg->max_pos : 2048;
    int L = p->seq_len > 0 ? p->seq_len : (ctx < 2048 ? ctx : 2048);
    for (int f = 0; f < nf && !rc; f++) {
        lmp_calib_source *si = &out->sources[f];
        snprintf(si->name, sizeof si->name, "%s", files[f]);
        char *text = NULL;
        size_t len = 0;
        if ((rc = lmp_calib_read_text(files[f], p->max_bytes, &text, &len)))
            break;
        if (looks_jsonl(files[f], text)) {
            char *doc = NULL;
            size_t dl = 0;
            si->jsonl = true;
            rc = jsonl_text(m, files[f], text, len, p->text_field, &doc, &dl, si);
            free(text);
            text = doc;
            len = dl;
            if (rc)
                break;
        } else if (nf == 1 && !p->text_field) {
            /* one plain file: exactly as before */
            rc = lmp_calib_from_text(m, text, len, files[f], p, out);
            free(text);
            if (!rc) {
                out->n_sources = 1;
                out->sources[0].tokens = out->n_text_tokens;
                out->sources[0].windows = out->n_samples;
                lmp_info("calibration: %s: %lld tokens, %d windows of %d", files[0], (long long)out->n_text_tokens,
                         out->n_samples, out->seq_len);
            }
            free(list);
            return rc;
        }
        bytes += len;
        rc = lmp_model_tokenize(m, text, len, true, &ids[f], &nt[f]);
        free(text);
        if (rc) {
            rc = lmp_err_prefix(rc, "%s", files[f]);
            break;
        }
        si->tokens = nt[f];
        total += nt[f];
    }
    const int N = p->n_samples;
    if (!rc && (N <= 0 || L < 2 || L > ctx))
        rc = lmp_err(LMP_EINVAL, "calibration: %d samples of %d tokens (need samples >= 1, 2 <= length <= the "
                                 "model's context %d)", N, L, ctx);
    if (!rc && !(out->tokens = malloc((size_t)N * L * sizeof(int32_t))))
        rc = lmp_err(LMP_ENOMEM, "out of memory for %d x %d calibration tokens", N, L);
    if (!rc && p->mode == LMP_CALIB_CHUNKS) {
        /* consecutive chunks through the files in order, BOS first in each */
        if (total < (int64_t)N * L)
            rc = lmp_err(LMP_EINVAL, "calibration: the files give %lld tokens; %d chunks of %d need %lld",
                         (long long)total, N, L, (long long)N * L);
        int bos = lmp_model_bos(m), f = 0;
        int64_t at = 0;
        for (int s = 0; s < N && !rc; s++) {
            for (int j = 0; j < L; j++) {
                while (at >= nt[f]) {
                    f++;
                    at = 0;
                }
                out->tokens[(int64_t)s * L + j] = ids[f][at++];
                if (j == 0)
                    out->sources[f].windows++;
            }
            if (bos >= 0)
                out->tokens[(int64_t)s * L] = bos;
        }
    } else if (!rc) {
        /* random windows shared out by tokens (largest remainder), each file's drawn as
         * get_wikitext2 draws them */
        int64_t elig = 0;
        for (int f = 0; f < nf; f++)
            elig += nt[f] > L ? nt[f] : 0;
        if (!elig)
            rc = lmp_err(LMP_EINVAL, "calibration: no file gives the %d tokens of one window (%lld in all)", L + 1,
                         (long long)total);
        int given = 0;
        double rem[LMP_CALIB_MAX_SOURCES] = {0};
        for (int f = 0; f < nf && !rc; f++) {
            if (nt[f] <= L)
                continue;
            double share = (double)N * (double)nt[f] / (double)elig;
            out->sources[f].windows = (int)share;
            rem[f] = share - (int)share;
            given += out->sources[f].windows;
        }
        while (!rc && given < N) {
            int best = -1;
            for (int f = 0; f < nf; f++)
                if (nt[f] > L && (best < 0 || rem[f] > rem[best]))
                    best = f;
            out->sources[best].windows++;
            rem[best] = -1;
            given++;
        }
        lmp_rng rng;
        lmp_rng_seed(&rng, p->seed);
        int s = 0;
        for (int f = 0; f < nf && !rc; f++)
            for (int w = 0; w < out->sources[f].windows; w++, s++) {
                int64_t i = (int64_t)(lmp_rng_next(&rng) % (uint64_t)(nt[f] - L));
                memcpy(out->tokens + (int64_t)s * L, ids[f] + i, (size_t)L * sizeof(int32_t));
            }
    }
    for (int f = 0; f < nf; f++)
        free(ids[f]);
    free(list);
    if (rc) {
        lmp_calib_free(out);
        return rc;
    }
    out->n_samples = N;
    out->seq_len = L;
    out->n_text_tokens = total;
    out->text_bytes = bytes;
    out->n_sources = nf;
    for (int f = 0; f < nf; f++) {
        const lmp_calib_source *si = &out->sources[f];
        lmp_info("calibration: %s: %lld tokens%s%s, %d of %d windows of %d", si->name, (long long)si->tokens,
                 si->jsonl ? (si->chat ? " (JSONL chats rendered with the chat template)" : " (JSONL)") : "",
                 "", si->windows, N, L);
    }
    return LMP_OK;
}
