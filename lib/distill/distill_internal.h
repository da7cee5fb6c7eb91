/*
 * Private to lib/distill: the logits file (docs/formats/logits.md) as a header struct, a
 * one-sequence record, a streaming writer over lib/io's HDF5 helpers and a row reader
 * over the HDF5 C API (lib/io's helpers read whole datasets only; eval and merge must
 * read one sequence at a time).
 */
#ifndef LMP_DISTILL_INTERNAL_H
#define LMP_DISTILL_INTERNAL_H

#include "distill.h"

typedef struct {
    char teacher[1024];       /* path as given */
    uint64_t teacher_hash, tokenizer_hash, vocab_hash, text_hash;
    int vocab;                /* log-prob row width (the model's output rows) */
    int k;                    /* top-k (0 = none) */
    int ctx;
    double temperature;
    bool full, f32;
    char protocol[32];        /* "kld-bos" | "kld-plain" */
    int bos;                  /* BOS id fed at position 0 (-1 for kld-plain) */
    int64_t n_text_tokens;
    int n_windows;            /* windows of the whole export */
    int shard_index, shard_count;
    int64_t n_seqs;           /* rows in this file */
} lw_header;

/* One sequence: every array has ctx rows. Log-prob arrays hold uint16 (f16 bits) or
 * float, as h->f32 says. */
typedef struct {
    int64_t seq_index;
    int32_t *tokens;          /* (ctx) model input */
    int32_t *targets;         /* (ctx) next token, -1 when none */
    float *target_lp;         /* (ctx) log p(target), NaN when none */
    float *lse;               /* (ctx) log-sum-exp of logits / T */
    float *rest;              /* (ctx) probability mass outside the top-k (k > 0) */
    int32_t *topk_ids;        /* (ctx, k) */
    void *topk_lp;            /* (ctx, k) */
    void *full_lp;            /* (ctx, vocab) when full */
} lw_seq;

int lw_seq_alloc(lw_seq *s, const lw_header *h);
void lw_seq_free(lw_seq *s);

/* "teacher=... k=..." : every setting that must agree for files to be joined. */
void lw_export_id(const lw_header *h, char *buf, size_t n);

typedef struct lw_writer lw_writer;
/* Creates `path` (temporary name until lw_writer_close(w, true)) with h's attributes
 * and empty extendable datasets. */
int lw_writer_open(lw_writer **w, const char *path, const lw_header *h, int deflate, bool force);
int lw_writer_append(lw_writer *w, const lw_seq *s);
/* Writes n_sequences, closes; commit renames into place, otherwise removes. NULL ok. */
int lw_writer_close(lw_writer *w, bool commit);

typedef struct lw_reader lw_reader;
/* Opens and validates (attributes, dataset shapes and row counts): LMP_EFORMAT naming the
 * defect for anything else, LMP_ENOTFOUND for a missing file. */
int lw_reader_open(lw_reader **r, const char *path);
const lw_header *lw_reader_header(const lw_reader *r);
int lw_reader_read(lw_reader *r, int64_t row, lw_seq *s);
/* The whole seq_index dataset (h->n_seqs values) into out. */
int lw_reader_seq_indices(lw_reader *r, int64_t *out);
void lw_reader_close(lw_reader *r);

/* ---------------------------------------------------------------- SVG output (report.c) */

/* An SVG being written to an atomic output file; the first write error sticks in rc. */
typedef struct {
    lmp_outfile o;
    int rc;
} svgw;

void svg_printf(svgw *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* XML-escaped copy of s (at most n-1 bytes). */
const char *xml_esc(const char *s, char *buf, size_t n);

#endif
