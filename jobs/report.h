/*
 * jobs/: what the commands print about a finished job. Each job's summary (text or JSON on
 * stdout, byte for byte what the command printed before the printers moved here) and its
 * per-layer / per-tensor progress lines (stderr) are one function each, so a command is
 * parse -> check -> one job call -> one print call. Shared helpers first.
 */
#ifndef LMP_JOBS_REPORT_H
#define LMP_JOBS_REPORT_H

#include "jobs/prune_model.h"
#include "jobs/quantize_gguf.h"
#include "jobs/quantize_model.h"
#include "lib/io/bpw.h"

#include <stdbool.h>
#include <stddef.h>

/* A JSON string literal (escaped) on stdout. */
void lmp_report_json_str(const char *s);
/* "1.23 MiB" into buf (powers of 1024; whole bytes below 1 KiB). */
const char *lmp_report_bytes(double n, char *buf, int len);
/* "; elapsed 12.3s, ETA 45.6s" into buf: the whole job's, from the layers done (layers take
 * about the same time each); t0 points at the job's start (lmp_time_s), NULL gives "". */
void lmp_report_eta(const void *t0, int layer, int n_layers, char *buf, size_t n);

/* ---- quantize --type (jobs/quantize_gguf.h) ---- */
/* The writer's on_tensor callback: one line per tensor on stderr (none with a progress bar). */
void lmp_report_gguf_tensor(void *ctx, const lmp_gguf_quant_tensor_info *t);
/* The summary of a finished job written to `out` from `model`; bw measured on `out` before
 * any split (lmp_path_bpw). */
void lmp_report_gguf(const char *model, const char *out, const lmp_job_gguf_params *p, const lmp_job_gguf_result *r,
                     const lmp_bpw *bw, bool json);

/* ---- quantize --method (jobs/quantize_model.h) ---- */
/* The pipeline's on_layer_done callback: one line per layer on stderr; ctx is a double *
 * holding the job's start time (lmp_time_s) for the ETA. */
void lmp_report_qmodel_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_qlinear_stats *st);
/* The summary (verbose: the per-linear table first; text only). Measures bits per weight
 * on `out`. */
void lmp_report_qmodel(const char *model, const char *out, const lmp_qmodel_quant_params *p,
                       const lmp_qmodel_quant_result *r, bool verbose, bool json);

/* ---- prune (jobs/prune_model.h) ---- */
void lmp_report_prune_layer(void *ctx, int layer, int n_layers, double seconds, const lmp_prune_linear_stats *st);
void lmp_report_prune(const char *model, const char *out, const lmp_prune_model_params *p,
                      const lmp_prune_model_result *r, bool verbose, bool json);

#endif
