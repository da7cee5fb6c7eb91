/*
 * lib/calib private: the driver's side of data-parallel calibration (calib_dist.h for
 * the design; dist_stats.c). The driver (driver.c) calls these at its marked sites.
 */
#ifndef LMP_CALIB_DIST_STATS_H
#define LMP_CALIB_DIST_STATS_H

#include "calib.h"

typedef struct {
    bool grouped;        /* windows in groups, split among ranks */
    bool share_solves;   /* per-linear actions split among ranks (row->linear_share) */
    int N, G, rank, size;
    int lo, hi;          /* this rank's windows [lo, hi) */
    int glo, ghi;        /* this rank's groups [glo, ghi) */
    /* the statistics pass */
    int n_sets;               /* statistics sets per pass: 1, or the layers when streaming */
    lmp_calib_stats *total;   /* [n_sets] the driver's totals */
    lmp_calib_stats *part;    /* [slots * n_sets] partials (rank 0: one slot) */
    int slots;
    int cur;                  /* group being gathered, -1: none */
    int64_t cols[LMP_IN_COUNT];
    size_t ex_n, ex_cnt;      /* experts: exsq and ecount lengths */
    int64_t ecols[LMP_IN_COUNT]; /* experts: the widths of eH's inputs (awqdist) */
    /* the re-run's sums (row->rerun_sums) */
    double *rs;               /* the row's, n_rs of them */
    size_t n_rs;
    double *rpart;            /* [slots][n_rs] */
    double *rtot;             /* rank 0's running total */
    int rcur;
    uint64_t bytes0;          /* lmp_dist_bytes() at open */
} lmp_calib_dist;

/* Decides how row's run over N windows (0: no calibration) is split; fills d. */
void lmp_calib_dist_open(lmp_calib_dist *d, const lmp_calib_method *row, int N);
/* After open: nothing split (every window and every solve on every rank). */
void lmp_calib_dist_whole(lmp_calib_dist *d);
void lmp_calib_dist_close(lmp_calib_dist *d);

/* Info line on rank 0: the windows and activation bytes every rank holds (gathered from
 * the ranks, act_bytes being this rank's). Collective. */
int lmp_calib_dist_report_share(lmp_calib_dist *d, uint64_t act_bytes);
/* Info line on rank 0: bytes communicated per layer. Collective-free. */
void lmp_calib_dist_report_bytes(const lmp_calib_dist *d, int n_layers);

/* A statistics pass: totals (n_sets of them, allocated and zeroed by the driver, shapes
 * from b); then per window s of this rank (in order) the set to gather s into; then the
 * reduction, after which every rank's totals are the same bits. */
int lmp_calib_dist_pass_begin(lmp_calib_dist *d, lmp_calib_stats *total, int n_sets, const lmp_calib_block *b);
int lmp_calib_dist_window(lmp_calib_dist *d, int s, lmp_calib_stats **into);
int lmp_calib_dist_pass_end(lmp_calib_dist *d);

/* The re-run: before it, before each of this rank's windows, after it. */
int lmp_calib_dist_rerun_begin(lmp_calib_dist *d, const lmp_calib_method *row, void *ctx, lmp_calib_block *b);
int lmp_calib_dist_rerun_window(lmp_calib_dist *d, int s);
int lmp_calib_dist_rerun_end(lmp_calib_dist *d);

/* The pass's per-linear actions (in_pass[w]): all on every rank, or each rank its share
 * then linear_share from each owner. */
int lmp_calib_dist_solve(lmp_calib_dist *d, const lmp_calib_method *row, void *ctx, lmp_calib_block *b,
                         const bool in_pass[LMP_LIN_COUNT]);

#endif
