/*
 * Data-parallel calibration (issue 15, "Across machines: MPI"): how lib/calib's driver
 * splits a calibrated run among the ranks of lmp_dist (lib/core/dist.h), implemented in
 * dist_stats.c. Included by calib.h; the driver calls it at a few marked sites.
 *
 * Windows. The N calibration windows are cut into G = min(N, LMP_CALIB_GROUPS) window
 * groups (contiguous, sizes differing by at most one), a number that does NOT depend on
 * the rank count. Each rank owns the groups lmp_dist_share gives it (contiguous, so rank
 * 0 owns the first ones) and holds, embeds and runs through every block only the windows
 * of its groups: the hidden states, the largest part of calibration memory, divide by
 * the rank count (up to G ranks; more ranks than groups have no windows).
 *
 * Statistics. Every group's statistics (Hessian, xsq, the experts' sums and counts) are
 * gathered from zero over that group's windows in window order, exactly as one process
 * would; then the groups are combined in group order along the ranks (rank 0 folds its
 * groups as they end and sends the running totals to rank 1, which folds its groups into
 * them and sends them on, ...; the last rank with groups broadcasts the result, so each
 * rank moves the totals about twice whatever G): the first group is copied (never added to a zero, which would turn a -0.0 into +0.0), xsq / exsq
 * / counts are added, and the Hessians, which the rows keep as running means (H = 2/ns
 * sum x x^T, lmp_gptq_hessian_add), are merged as means:
 *   H = H * (ns / (ns + ns_g)) + H_g * (ns_g / (ns + ns_g)),  ns += ns_g.
 * The same arithmetic in the same order whatever the rank count: 1, 2, 3 ... ranks give
 * the same bits. Sums the row keeps itself during the re-run (its output-error figures,
 * structured pruning's layer scores) are grouped the same way through the row's
 * rerun_sums hook.
 *
 * Solves. When the row has a linear_share hook, each rank runs the per-linear action
 * (GPTQ, RTN, SparseGPT, Wanda, magnitude) only for its lmp_dist_share of the pass's
 * linears (in lmp_linear order), every rank then learns of any failure
 * (lmp_dist_status), and linear_share broadcasts each result from its owner in linear
 * order, so that every rank installs the same compressed block.
 *
 * Rows that walk the windows themselves (LMP_CALIB_SELF_WALK: AWQ, dense and expert
 * models) get this rank's windows and combine their sums through lmp_calib_gsum below.
 *
 * Experts (mixtral, qwen3_moe): every expert's Hessian and token count (eH / ens) is
 * gathered per group and combined as the dense Hessians (the same running-mean merge,
 * expert by expert); the expert linears' solves run on every rank (every rank installs the
 * same experts; not split).
 *
 * Not split (every rank computes everything, as one process): rows that capture inputs
 * through the driver or feed the float block forward (no row does at present), and rows
 * with re-run hooks but no rerun_sums.
 *
 * Memory per rank: its windows' hidden states, one total per statistic, one group's
 * partial on rank 0, and on other ranks the partials of their groups until the pass
 * ends (ceil(G / ranks) of them). Those cannot be folded earlier without changing the
 * bits: rank r may only add its groups onto the running total of groups 0 .. glo-1, which
 * exists once the ranks before it have finished their windows, and adding its own groups
 * together first would change the association (and so depend on the rank count).
 */
#ifndef LMP_CALIB_DIST_H
#define LMP_CALIB_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Window groups (see above): G = min(N, LMP_CALIB_GROUPS). Changing it changes the
 * bits of every grouped statistic. */
#define LMP_CALIB_GROUPS 8

/* Grouped sums for rows that walk the windows themselves (LMP_CALIB_SELF_WALK: AWQ's
 * activation means, Gram matrices and grid-search losses): n doubles per window group,
 * each group's from zero in window order, the groups combined in group order (the first
 * copied, the others added) along the ranks as the driver's statistics, so that every
 * rank ends with the same bits whatever the rank count. Not split (split false): every
 * group is this process's, the same arithmetic. Rank 0 (and an unsplit process) folds
 * each group as the next one opens and holds one partial; other ranks hold their groups'
 * partials until the end (ceil(G / ranks) of them). */
typedef struct {
    size_t n;
    int G, glo, ghi, rank, size;
    bool split;
    int cur;           /* the open group, -1: none */
    int slots;
    double *part;      /* [slots][n] */
    double *total;     /* [n]: after lmp_calib_gsum_end, the combined sums */
} lmp_calib_gsum;

int lmp_calib_gsum_open(lmp_calib_gsum *s, size_t n, int G, bool split);
/* The partial of group g to add to (zeroed when g opens); g must not decrease between
 * two ends, and every group whose windows this rank holds must be opened. */
double *lmp_calib_gsum_at(lmp_calib_gsum *s, int g);
/* Combines the groups: s->total on every rank (collective when split); then s can be
 * used again from zero. */
int lmp_calib_gsum_end(lmp_calib_gsum *s);
void lmp_calib_gsum_close(lmp_calib_gsum *s); /* accepts a zeroed s */
/* The groups [*glo, *ghi) rank `rank` of `size` owns. */
void lmp_calib_own_groups(int G, int rank, int size, int *glo, int *ghi);
/* The group holding window s of N windows in G groups. */
int lmp_calib_window_group(int N, int G, int s);

/* Windows [*lo, *hi) of group g of G over N windows. */
void lmp_calib_group_windows(int N, int G, int g, int *lo, int *hi);
/* Rank that owns group g of G (lmp_dist_share over groups). */
int lmp_calib_group_owner(int G, int g, int size);

#endif
