/*
 * Teacher-logit export (resumable, shardable) and the merge of logits files. Protocol:
 * docs/formats/logits.md ("kld-bos": llama.cpp's --kl-divergence-base windows). Each
 * finished sequence is one small HDF5 file in "<out>.partial/" (atomic rename), so an
 * interruption at any moment leaves whole sequences only; the final file is assembled by
 * the same code as `lmpress distill merge`, which makes the datasets of resumed, sharded
 * and uninterrupted runs identical. Not here: the file layout (logits_file.c).
 */
#include "distill_internal.h"
#include "../core/dist.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define EXPORT_BATCH 512 /* positions per lmp_eval call: bounds the logits buffer */

/* ---------------------------------------------------------------- identity -------- */

static const lmp_tensor *g_sort_tensors; /* qsort context (single-threaded use) */

static int cmp_tensor_name(const void *a, const void *b)
{
    return strcmp(g_sort_tensors[*(const int *)a].name, g_sort_tensors[*(const int *)b].name);
}

uint64_t lmp_distill_weights_hash(const lmp_model *m)
{
    const lmp_ckpt *c = lmp_model_ckpt(m);
    int *order = malloc(sizeof(int) * (size_t)(c->n_tensors + 1));
    uint64_t h = LMP_FNV_INIT;
    if (!order)
        return 0;
    for (int i = 0; i < c->n_tensors; i++)
        order[i] = i;
    g_sort_tensors = c->tensors;
    qsort(order, (size_t)c->n_tensors, sizeof(int), cmp_tensor_name);
    for (int i = 0; i < c->n_tensors; i++) {
        const lmp_tensor *t = &c->tensors[order[i]];
        const char *dn = lmp_dtype_info(t->dtype)->name;
        h = lmp_fnv1a(h, t->name, strlen(t->name) + 1);
        h = lmp_fnv1a(h, dn, strlen(dn) + 1);
        for (int d = 0; d < t->ndim; d++) {
            int64_t s = t->shape[d];
            h = lmp_fnv1a(h, &s, sizeof s);
        }
        if (t->data)
            h = lmp_fnv1a(h, t->data, t->nbytes);
    }
    free(order);
    return h;
}

uint64_t lmp_distill_vocab_hash(const lmp_tokenizer *tok)
{
    if (!tok)
        return 0;
    int32_t n = lmp_tokenizer_n_vocab(tok);
    uint64_t h = lmp_fnv1a(LMP_FNV_INIT, &n, sizeof n);
    for (int32_t i = 0; i < n; i++) {
        size_t len = 0;
        const char *s = lmp_tokenizer_piece(tok, i, &len);
        uint32_t l = s ? (uint32_t)len : 0xFFFFFFFFu;
        h = lmp_fnv1a(h, &l, sizeof l);
        if (s)
            h = lmp_fnv1a(h, s, len);
    }
    return h;
}

/* ---------------------------------------------------------------- top-k ----------- */

typedef struct {
    float v;
    int32_t id;
} kv;

/* a ranks before b: larger value, then smaller id (deterministic ties) */
static inline bool kv_before(kv a, kv b) { return a.v > b.v || (a.v == b.v && a.id < b.id); }

static void heap_down(kv *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && kv_before(h[w], h[l]))
            w = l;
        if (r < n && kv_before(h[w], h[r]))
            w = r;
        if (w == i)
            return;
        kv t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* The k best entries of y[V] in rank order into out[k]. heap: k scratch entries. */
static void topk_select(const float *y, int V, int k, kv *heap, kv *out)
{
    /* min-heap (root = the worst kept) of the first k, then replace the root */
    for (int i = 0; i < k; i++)
        heap[i] = (kv){y[i], i};
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_down(heap, k, i);
    for (int i = k; i < V; i++) {
        kv c = {y[i], i};
        if (kv_before(c, heap[0])) {
            heap[0] = c;
            heap_down(heap, k, 0);
        }
    }
    /* pop worst-first into the tail of out */
    for (int n = k; n > 0; n--) {
        out[n - 1] = heap[0];
        heap[0] = heap[n - 1];
        heap_down(heap, n - 1, 0);
    }
}

/* ---------------------------------------------------------------- one sequence ---- */

typedef struct {
    const lmp_model *m;
    lw_header h;
    lmp_session *s;
    float *logits; /* (EXPORT_BATCH, V) */
} exporter;

/* Position j of a sequence from y[V] (logits / T): fills every per-position field of seq. */
static int export_position(const lw_header *h, const float *y, int j, lw_seq *seq, kv *heap,
                           kv *best, uint8_t *mask, float *row /* (max(k, V)) scratch */)
{
    const int V = h->vocab, k = h->k;
    double lse = lmp_logsumexp_f32(y, V);
    if (!isfinite(lse))
        return -1;
    seq->lse[j] = (float)lse;
    int t = seq->targets[j];
    seq->target_lp[j] = t >= 0 ? (float)((double)y[t] - lse) : NAN;
    if (k > 0) {
        topk_select(y, V, k, heap, best);
        int32_t *ids = seq->topk_ids + (size_t)j * k;
        float *lp = row;
        for (int i = 0; i < k; i++) {
            ids[i] = best[i].id;
            lp[i] = (float)((double)best[i].v - lse);
            mask[best[i].id] = 1;
        }
        /* the outside mass summed directly (1 - sum(top-k) would lose it when tiny) */
        double rest = 0;
        for (int i = 0; i < V; i++)
            if (!mask[i])
                rest += exp((double)y[i] - lse);
        for (int i = 0; i < k; i++)
            mask[best[i].id] = 0;
        seq->rest[j] = (float)rest;
        if (h->f32)
            memcpy((float *)seq->topk_lp + (size_t)j * k, lp, sizeof(float) * (size_t)k);
        else
            lmp_f32_to_f16_row(lp, (uint16_t *)seq->topk_lp + (size_t)j * k, k);
    }
    if (h->full) {
        for (int i = 0; i < V; i++)
            row[i] = (float)((double)y[i] - lse);
        if (h->f32)
            memcpy((float *)seq->full_lp + (size_t)j * V, row, sizeof(float) * (size_t)V);
        else
            lmp_f32_to_f16_row(row, (uint16_t *)seq->full_lp + (size_t)j * V, V);
    }
    return 0;
}

/* Feeds seq->tokens to a fresh session and fills every other field. */
static int export_sequence(exporter *e, lw_seq *seq)
{
    const lw_header *h = &e->h;
    const int V = h->vocab, ctx = h->ctx;
    lmp_session_reset(e->s);
    for (int off = 0; off < ctx; off += EXPORT_BATCH) {
        int cnt = ctx - off < EXPORT_BATCH ? ctx - off : EXPORT_BATCH;
        int rc = lmp_eval(e->s, seq->tokens + off, cnt, e->logits, true);
        if (rc)
            return rc;
        if (h->temperature != 1.0) {
            const float inv = (float)(1.0 / h->temperature);
            for (size_t i = 0; i < (size_t)cnt * (size_t)V; i++)
                e->logits[i] *= inv;
        }
        int bad = 0;
#pragma omp parallel reduction(| : bad)
        {
            kv *heap = malloc(sizeof(kv) * (size_t)(h->k + 1));
            kv *best = malloc(sizeof(kv) * (size_t)(h->k + 1));
            uint8_t *mask = calloc((size_t)V, 1);
            float *row = malloc(sizeof(float) * (size_t)V);
            if (!heap || !best || !mask || !row)
                bad |= 2;
#pragma omp for schedule(static)
            for (int j = 0; j < cnt; j++) {
                if (bad & 2)
                    continue;
                int r = export_position(h, e->logits + (size_t)j * V, off + j, seq, heap, best, mask, row);
                if (r)
                    bad |= r == -1 ? 1 : 2;
            }
            free(heap);
            free(best);
            free(mask);
            free(row);
        }
        if (bad & 2)
            return lmp_err(LMP_ENOMEM, "out of memory");
        if (bad)
            return lmp_err(LMP_ERANGE, "sequence %lld: the teacher produced non-finite logits",
                           (long long)seq->seq_index);
    }
    return LMP_OK;
}

/* ---------------------------------------------------------------- merge ----------- */

typedef struct {
    int64_t seq;
    int file;
    int64_t row;
} entry;

static int cmp_entry(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    return x->seq < y->seq ? -1 : x->seq > y->seq ? 1 : x->file - y->file;
}

/* The merge shared by lmp_distill_merge and the assembly of an export. */
static int merge_files(const char *out, const char *const *in, int n_in, bool force)
{
    lw_reader **rd = calloc((size_t)n_in + 1, sizeof *rd);
    entry *ent = NULL;
    lw_writer *w = NULL;
    lw_seq seq = {0};
    lw_header oh;
    char id0[512], id[512];
    int64_t n_ent = 0;
    int rc = LMP_OK, open_file = -1;
    const bool keep_open = n_in <= 64;
    if (!rd)
        return lmp_err(LMP_ENOMEM, "out of memory");
    if (n_in < 1) {
        rc = lmp_err(LMP_EINVAL, "nothing to merge");
        goto done;
    }
    bool same_shard = true;
    for (int i = 0; i < n_in; i++) {
        lw_reader *r;
        if ((rc = lw_reader_open(&r, in[i])))
            goto done;
        const lw_header *h = lw_reader_header(r);
        lw_export_id(h, id, sizeof id);
        if (i == 0) {
            oh = *h;
            memcpy(id0, id, sizeof id);
        } else if (strcmp(id, id0) != 0) {
            rc = lmp_err(LMP_EINVAL, "%s and %s come from different exports:\n  %s\n  %s", in[0], in[i],
                         id0, id);
            lw_reader_close(r);
            goto done;
        }
        if (h->shard_index != oh.shard_index || h->shard_count != oh.shard_count)
            same_shard = false;
        entry *ne = realloc(ent, sizeof *ent * (size_t)(n_ent + h->n_seqs + 1));
        int64_t *idx = malloc(sizeof(int64_t) * (size_t)(h->n_seqs + 1));
        if (!ne || !idx) {
            free(idx);
            ent = ne ? ne : ent;
            lw_reader_close(r);
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
        ent = ne;
        if ((rc = lw_reader_seq_indices(r, idx))) {
            free(idx);
            lw_reader_close(r);
            goto done;
        }
        for (int64_t j = 0; j < h->n_seqs; j++)
            ent[n_ent++] = (entry){idx[j], i, j};
        free(idx);
        if (keep_open)
            rd[i] = r;
        else
            lw_reader_close(r);
    }
    qsort(ent, (size_t)n_ent, sizeof *ent, cmp_entry);
    /* Which windows must be there: all of them, or those of the one shard every input
     * belongs to. */
    int si = 0, sn = 1;
    if (same_shard && (int64_t)n_ent != oh.n_windows) {
        si = oh.shard_index;
        sn = oh.shard_count;
    }
    int64_t want = 0;
    for (int64_t wi = si; wi < oh.n_windows; wi += sn, want++) {
        if (want >= n_ent || ent[want].seq != wi) {
            rc = lmp_err(LMP_EINVAL, "%s%s: window %lld of %d is %s (shard %d/%d)", in[0],
                         n_in > 1 ? " ..." : "", (long long)wi, oh.n_windows,
                         want < n_ent && ent[want].seq < wi ? "duplicated" : "missing", si, sn);
            goto done;
        }
    }
    if (want != n_ent) {
        rc = lmp_err(LMP_EINVAL, "%s: %lld sequences where shard %d/%d has %lld (duplicates or "
                     "windows of another shard)", in[0], (long long)n_ent, si, sn, (long long)want);
        goto done;
    }
    oh.shard_index = si;
    oh.shard_count = sn;
    if ((rc = lw_seq_alloc(&seq, &oh)) || (rc = lw_writer_open(&w, out, &oh, 4, force)))
        goto done;
    for (int64_t j = 0; j < n_ent; j++) {
        int f = ent[j].file;
        if (!rd[f]) {
            if (open_file >= 0 && !keep_open) {
                lw_reader_close(rd[open_file]);
                rd[open_file] = NULL;
            }
            if ((rc = lw_reader_open(&rd[f], in[f])))
                goto done;
            open_file = f;
        }
        if ((rc = lw_reader_read(rd[f], ent[j].row, &seq)) || (rc = lw_writer_append(w, &seq)))
            goto done;
    }
    rc = lw_writer_close(w, true);
    w = NULL;
done:
    lw_writer_close(w, false);
    lw_seq_free(&seq);
    for (int i = 0; i < n_in; i++)
        lw_reader_close(rd[i]);
    free(rd);
    free(ent);
    return rc;
}

int lmp_distill_merge(const char *out, const char *const *inputs, int n_inputs, bool force)
{
    if (!force && lmp_path_exists(out))
        return lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)", out);
    return merge_files(out, inputs, n_inputs, force);
}

/* ---------------------------------------------------------------- export ---------- */

lmp_distill_params lmp_distill_default_params(void)
{
    lmp_distill_params p;
    memset(&p, 0, sizeof p);
    p.ctx = 512;
    p.top_k = 64;
    p.temperature = 1.0;
    p.shard_count = 1;
    p.deflate = 4;
    return p;
}

int lmp_distill_check(const lmp_distill_params *p)
{
    if (p->top_k < 0 || p->top_k > 1 << 24)
        return lmp_err(LMP_EINVAL, "--top-k %d: must be >= 0", p->top_k);
    if (p->top_k == 0 && !p->full)
        return lmp_err(LMP_EINVAL, "--top-k 0 needs --full");
    if ((p->ctx != 0 && p->ctx < 2) || p->ctx < 0 || p->ctx > 1 << 22)
        return lmp_err(LMP_EINVAL, "--ctx %d: must be at least 2 (at most %d)", p->ctx, 1 << 22);
    if (p->max_seqs < 0 || p->max_seqs > 1 << 30)
        return lmp_err(LMP_EINVAL, "--chunks %d: must be >= 0 (0 = all)", p->max_seqs);
    if (!(p->temperature > 0) || !isfinite(p->temperature))
        return lmp_err(LMP_EINVAL, "--temperature %g: must be > 0", p->temperature);
    if (p->shard_count < 1 || p->shard_index < 0 || p->shard_index >= p->shard_count)
        return lmp_err(LMP_EINVAL, "--shard %d/%d: expected i/n with 0 <= i < n", p->shard_index, p->shard_count);
    if (p->deflate < 0 || p->deflate > 9)
        return lmp_err(LMP_EINVAL, "deflate level %d: 0..9", p->deflate);
    return LMP_OK;
}

static char *seg_path(const char *dir, int64_t w)
{
    char name[64];
    snprintf(name, sizeof name, "seq-%09lld.h5", (long long)w);
    return lmp_path_join(dir, name);
}

/* Removes temporaries left by a killed run ("*.tmp.<pid>"). */
static void clean_partial(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d)))
        if (strstr(de->d_name, ".tmp.")) {
            char *p = lmp_path_join(dir, de->d_name);
            remove(p);
            free(p);
        }
    closedir(d);
}

/* Is segment `path` a complete sequence `w` of this export? Broken ones are removed. */
static bool segment_ok(const char *path, const lw_header *h, int64_t w, const char *id, int *mismatch)
{
    lw_reader *r;
    if (lw_reader_open(&r, path)) {
        lmp_warn("%s: unreadable piece of an interrupted export, recomputing it (%s)", path,
                 lmp_errmsg());
        remove(path);
        return false;
    }
    const lw_header *g = lw_reader_header(r);
    char gid[512];
    int64_t idx = -1;
    lw_export_id(g, gid, sizeof gid);
    bool ok = g->n_seqs == 1 && lw_reader_seq_indices(r, &idx) == 0 && idx == w;
    if (strcmp(gid, id) != 0 || g->shard_index != h->shard_index || g->shard_count != h->shard_count) {
        *mismatch = 1;
        ok = false;
    }
    lw_reader_close(r);
    return ok;
}

/* One computed sequence as a flat row for lmp_dist_gather_rows: an int64 sequence index
 * (-1: this rank had none this round), then every array of lw_seq in a fixed order. */
static size_t seq_row_bytes(const lw_header *h)
{
    size_t c = (size_t)h->ctx, k = (size_t)h->k, lp = h->f32 ? 4 : 2;
    return 8 + c * 4 * 5 + c * k * (4 + lp) + (h->full ? c * (size_t)h->vocab * lp : 0);
}

static void seq_pack(const lw_header *h, const lw_seq *q, char *row, bool valid)
{
    size_t c = (size_t)h->ctx, k = (size_t)h->k, lp = h->f32 ? 4 : 2;
    int64_t idx = valid ? q->seq_index : -1;
    memcpy(row, &idx, 8);
    if (!valid)
        return;
    char *p = row + 8;
#define PUT(ptr, n) (memcpy(p, (ptr), (n)), p += (n))
    PUT(q->tokens, c * 4);
    PUT(q->targets, c * 4);
    PUT(q->target_lp, c * 4);
    PUT(q->lse, c * 4);
    PUT(q->rest, c * 4);
    PUT(q->topk_ids, c * k * 4);
    PUT(q->topk_lp, c * k * lp);
    if (h->full)
        PUT(q->full_lp, c * (size_t)h->vocab * lp);
#undef PUT
}

static bool seq_unpack(const lw_header *h, const char *row, lw_seq *q)
{
    size_t c = (size_t)h->ctx, k = (size_t)h->k, lp = h->f32 ? 4 : 2;
    int64_t idx;
    memcpy(&idx, row, 8);
    if (idx < 0)
        return false;
    q->seq_index = idx;
    const char *p = row + 8;
#define GET(ptr, n) (memcpy((ptr), p, (n)), p += (n))
    GET(q->tokens, c * 4);
    GET(q->targets, c * 4);
    GET(q->target_lp, c * 4);
    GET(q->lse, c * 4);
    GET(q->rest, c * 4);
    GET(q->topk_ids, c * k * 4);
    GET(q->topk_lp, c * k * lp);
    if (h->full)
        GET(q->full_lp, c * (size_t)h->vocab * lp);
#undef GET
    return true;
}

int lmp_distill_export(const lmp_model *m, const char *model_path, const char *text, size_t len,
                       const char *out, const lmp_distill_params *p, lmp_distill_stats *st)
{
    memset(st, 0, sizeof *st);
    const int V = lmp_model_n_vocab(m);
    const int ctx = lmp_ctx_resolve(m, p->ctx, 512, p->allow_long_ctx);
    if (ctx < 0)
        return ctx;
    st->ctx = ctx;
    if (p->top_k < 0 || p->top_k > V)
        return lmp_err(LMP_EINVAL, "--top-k %d: must be in 0..%d (the vocabulary)", p->top_k, V);
    if (p->top_k == 0 && !p->full)
        return lmp_err(LMP_EINVAL, "--top-k 0 stores nothing without --full");
    if (!(p->temperature > 0) || !isfinite(p->temperature))
        return lmp_err(LMP_EINVAL, "--temperature %g: must be > 0", p->temperature);
    if (p->shard_count < 1 || p->shard_index < 0 || p->shard_index >= p->shard_count)
        return lmp_err(LMP_EINVAL, "--shard %d/%d: need 0 <= i < n", p->shard_index, p->shard_count);
    if (ctx < 2)
        return lmp_err(LMP_EINVAL, "--ctx %d: need at least 2", ctx);
    if (p->deflate < 0 || p->deflate > 9)
        return lmp_err(LMP_EINVAL, "deflate level %d: need 0..9", p->deflate);
    if (!p->force && lmp_path_exists(out))
        return lmp_err(LMP_EEXIST, "%s: output exists (use --force to overwrite)", out);
    const lmp_tokenizer *tok = lmp_model_tokenizer(m);
    if (!tok)
        return lmp_err(LMP_EUNSUPPORTED, "%s: the model has no tokenizer", model_path);
    if (len == 0)
        return lmp_err(LMP_EINVAL, "the text is empty");

    exporter e = {.m = m};
    lw_header *h = &e.h;
    lw_seq seq = {0};
    lw_writer *w = NULL;
    int32_t *ids = NULL;
    int64_t n = 0;
    char *pdir = NULL, **segs = NULL, *seg = NULL, *rows = NULL;
    bool *have = NULL;
    int *todo = NULL;
    int rc = lmp_model_tokenize(m, text, len, true, &ids, &n);
    if (rc)
        goto done;
    st->n_text_tokens = n;
    if (n < ctx) {
        rc = lmp_err(LMP_EINVAL, "the text gives %lld tokens; one sequence of --ctx %d needs at least %d",
                     (long long)n, ctx, ctx);
        goto done;
    }
    int64_t nw = n / ctx;
    if (p->max_seqs > 0 && p->max_seqs < nw)
        nw = p->max_seqs;
    if (nw > INT32_MAX) {
        rc = lmp_err(LMP_ERANGE, "too many sequences");
        goto done;
    }
    snprintf(h->teacher, sizeof h->teacher, "%s", model_path);
    h->teacher_hash = lmp_distill_weights_hash(m);
    h->tokenizer_hash = lmp_tokenizer_hash(tok);
    h->vocab_hash = lmp_distill_vocab_hash(tok);
    h->text_hash = lmp_fnv1a(LMP_FNV_INIT, text, len);
    h->vocab = V;
    h->k = p->top_k;
    h->ctx = ctx;
    h->temperature = p->temperature;
    h->full = p->full;
    h->f32 = p->f32;
    h->bos = lmp_model_bos(m);
    snprintf(h->protocol, sizeof h->protocol, "%s", h->bos >= 0 ? "kld-bos" : "kld-plain");
    h->n_text_tokens = n;
    h->n_windows = (int)nw;
    h->shard_index = p->shard_index;
    h->shard_count = p->shard_count;
    st->weights_hash = h->teacher_hash;
    st->tokenizer_hash = h->tokenizer_hash;
    st->n_windows = (int)nw;
    char id[512];
    lw_export_id(h, id, sizeof id);

    /* The partial folder: resume what matches, refuse (or with force restart) what not.
     * Under MPI (dist.h) rank 0 owns the folder and the output: it decides what is done
     * and tells the others; every rank computes its share of the rest, and rank 0 writes
     * the sequences it gathers. Gather to rank 0 rather than parallel HDF5: each sequence
     * is already written whole by one writer (the resumable segment files), Debian's
     * parallel HDF5 is another build of the library (libhdf5-openmpi-dev) that every serial
     * path would then link, and the ranks need no shared filesystem. */
    const bool root = lmp_dist_root();
    int n_mine = 0;
    for (int64_t wi = p->shard_index; wi < nw; wi += p->shard_count)
        n_mine++;
    st->n_seqs = n_mine;
    size_t pl = strlen(out) + 16;
    pdir = malloc(pl);
    segs = calloc((size_t)n_mine + 1, sizeof *segs);
    have = calloc((size_t)n_mine + 1, 1);
    if (!pdir || !segs || !have) {
        rc = lmp_err(LMP_ENOMEM, "out of memory");
        goto done;
    }
    snprintf(pdir, pl, "%s.partial", out);
    for (int i = 0; i < n_mine; i++)
        if (!(segs[i] = seg_path(pdir, p->shard_index + (int64_t)i * p->shard_count))) {
            rc = lmp_err(LMP_ENOMEM, "out of memory");
            goto done;
        }
    if (root && lmp_path_exists(pdir) && !lmp_path_is_dir(pdir))
        rc = lmp_err(LMP_EEXIST, "%s exists and is not a folder", pdir);
    else if (root && !lmp_path_exists(pdir) && mkdir(pdir, 0777) != 0)
        rc = lmp_err(LMP_EIO, "%s: cannot create folder: %s", pdir, strerror(errno));
    if (root && !rc)
        clean_partial(pdir);
    for (int i = 0, mismatch = 0; root && !rc && i < n_mine; i++) {
        if (lmp_path_exists(segs[i]) &&
            segment_ok(segs[i], h, p->shard_index + (int64_t)i * p->shard_count, id, &mismatch))
            have[i] = true;
        if (mismatch) {
            if (!p->force) {
                rc = lmp_err(LMP_EEXIST, "%s holds an interrupted export with other settings or "
                             "another teacher/text; remove it or use --force to restart", pdir);
                break;
            }
            lmp_info("%s: interrupted export with other settings, restarting (--force)", pdir);
            lmp_dir_remove(pdir);
            if (mkdir(pdir, 0777) != 0) {
                rc = lmp_err(LMP_EIO, "%s: cannot create folder: %s", pdir, strerror(errno));
                break;
            }
            memset(have, 0, (size_t)n_mine);
            mismatch = 0;
        }
    }
    if ((rc = lmp_dist_status(rc)) || (rc = lmp_dist_bcast(have, (size_t)n_mine, 0)))
        goto done;
    for (int i = 0; i < n_mine; i++)
        st->n_resumed += have[i];
    if (st->n_resumed)
        lmp_info("resuming %s: %d of %d sequences already done", out, st->n_resumed, n_mine);

    /* the sequences to compute now, in order (at most stop_after of them) */
    int n_todo = 0;
    const int nr = lmp_dist_size();
    const size_t row_bytes = seq_row_bytes(h);
    todo = malloc(sizeof(int) * ((size_t)n_mine + 1));
    if (todo)
        for (int i = 0; i < n_mine; i++)
            if (!have[i] && !(p->stop_after > 0 && n_todo >= p->stop_after))
                todo[n_todo++] = i;
    if (!todo)
        rc = lmp_err(LMP_ENOMEM, "out of memory");
    else if (!(rc = lw_seq_alloc(&seq, h)) && !(rc = lmp_session_new(&e.s, m, ctx))) {
        e.logits = malloc(sizeof(float) * (size_t)(ctx < EXPORT_BATCH ? ctx : EXPORT_BATCH) * (size_t)V);
        /* one row per rank (pages past a non-root rank's own row are never touched) */
        if (!e.logits)
            rc = lmp_err(LMP_ENOMEM, "out of memory (logits of %d positions)", EXPORT_BATCH);
        else if (nr > 1 && !(rows = malloc(row_bytes * (size_t)nr)))
            rc = lmp_err(LMP_ENOMEM, "out of memory (%d sequences of %zu bytes to gather)", nr, row_bytes);
    }
    if ((rc = lmp_dist_status(rc)))
        goto done;
    double t0 = lmp_time_s();
    int done_count = st->n_resumed;
    int64_t tlo, thi;
    lmp_dist_share(n_todo, &tlo, &thi);
    const int rounds = (n_todo + nr - 1) / nr; /* the largest share */
    for (int k = 0; k < rounds; k++) {
        const int64_t ti = tlo + k;
        const bool mine = ti < thi;
        if (mine) {
            const int i = todo[ti];
            const int64_t wi = p->shard_index + (int64_t)i * p->shard_count;
            const int32_t *win = ids + wi * ctx;
            seq.seq_index = wi;
            memcpy(seq.tokens, win, sizeof(int32_t) * (size_t)ctx);
            if (h->bos >= 0)
                seq.tokens[0] = h->bos; /* llama.cpp --kl-divergence-base */
            for (int j = 0; j < ctx; j++) {
                int64_t t = wi * ctx + j + 1;
                seq.targets[j] = t < n ? win[j + 1] : -1; /* win[ctx] is the next window's first */
            }
            rc = export_sequence(&e, &seq);
        }
        if (nr > 1) { /* this round's sequence of every rank to rank 0: row r is rank r's */
            if ((rc = lmp_dist_status(rc)))
                break;
            seq_pack(h, &seq, rows + row_bytes * (size_t)lmp_dist_rank(), mine);
            if ((rc = lmp_dist_gather_rows(rows, nr, row_bytes, 0)))
                break;
        }
        for (int r = 0; root && !rc && r < nr; r++) { /* rank 0 writes them in rank order */
            if (nr > 1 ? !seq_unpack(h, rows + row_bytes * (size_t)r, &seq) : !mine)
                continue;
            const int i = (int)((seq.seq_index - p->shard_index) / p->shard_count);
            if ((rc = lw_writer_open(&w, segs[i], h, p->deflate, true)) || (rc = lw_writer_append(w, &seq)))
                break;
            rc = lw_writer_close(w, true);
            w = NULL;
            if (rc)
                break;
            if (p->progress)
                p->progress(p->user, ++done_count, n_mine);
        }
        if (rc)
            break;
        st->n_computed += n_todo - k * nr < nr ? n_todo - k * nr : nr;
    }
    st->seconds = lmp_time_s() - t0;
    st->n_tokens = (int64_t)st->n_computed * ctx;
    st->tokens_per_s = st->seconds > 0 ? (double)st->n_tokens / st->seconds : 0;
    if ((rc = lmp_dist_status(rc)))
        goto done;
    if (st->n_resumed + st->n_computed < n_mine)
        goto done; /* stopped early: the partial folder stays for the next run */
    if (root && !(rc = merge_files(out, (const char *const *)segs, n_mine, p->force))) {
        lmp_dir_remove(pdir);
        struct stat sb;
        st->file_bytes = stat(out, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    }
    /* the output exists (on rank 0's filesystem) when any rank returns */
    if ((rc = lmp_dist_status(rc)) || (rc = lmp_dist_bcast(&st->file_bytes, sizeof st->file_bytes, 0)))
        goto done;
    st->complete = true;
done:
    lw_writer_close(w, false);
    free(have);
    free(todo);
    free(rows);
    lw_seq_free(&seq);
    lmp_session_free(e.s);
    free(e.logits);
    free(ids);
    if (segs)
        for (int i = 0; i < st->n_seqs; i++)
            free(segs[i]);
    free(segs);
    free(seg);
    free(pdir);
    return rc;
}
