/* lib/prune internal: Wanda / SparseGPT on the experts of mixture-of-experts blocks
 * (pexperts.c), the expert half of the rows in run.c. Not installed. */
#ifndef LMP_PRUNE_MOE_H
#define LMP_PRUNE_MOE_H

#include "prune.h"

typedef struct {
    int n;            /* experts of the current block (0: none pruned yet) */
    float **W;        /* [3 n] pruned f32 weights, expert e's gate, up, down at 3e + p */
    lmp_wmat *pw;     /* [3 n] their views, installed */
    lmp_wmat *orig;   /* [3 n] the weights at the block's start */
    int cap;
} lmp_pexperts;

/* Prunes linear w (GATE, UP or DOWN) of every expert of sparse block b->layer: Wanda from
 * the sums of x^2 over the tokens routed to each expert (b->st.exsq), SparseGPT from each
 * expert's own Hessian (b->st.eH); experts no token reached by magnitude, named in a
 * warning. Installs the results; st gets the block's summary for w. */
int lmp_pexperts_linear(lmp_pexperts *x, const lmp_prune_params *p, lmp_prune_result *res, lmp_calib_block *b,
                        lmp_linear w, lmp_prune_linear_stats *st);
void lmp_pexperts_restore(lmp_pexperts *x, lmp_model *m, int layer);
void lmp_pexperts_free(lmp_pexperts *x);

#endif
