// dpo loss: the preference losses of the `dpo` program on plain numbers (no model), so that each
// can be checked by hand, by finite differences and against a PyTorch float64 reference
// (tests/ref/dpo_ref.py).
//
// An item is one completion of a prompt; its inputs are the policy's log-probability of the
// response logp (summed over the response tokens, the end token included), the frozen reference's
// ref (the same sum) and the number of response tokens n. Its implicit reward (TRL's
// rewards/chosen and rewards/rejected) is
//     DPO, IPO:  r = beta * (logp - ref)
//     SimPO:     r = beta * logp / n                  (reference-free, length-normalised)
// For a pair (chosen c, rejected l), with h = r_c - r_l:
//     sigmoid (DPO; cDPO when eps = label_smoothing > 0):
//                loss = -(1 - eps) log sigmoid(h) - eps log sigmoid(-h)
//     IPO:       loss = (h / beta - 1 / (2 beta))^2   (Azar et al. 2023, on summed log-probs)
//     SimPO:     loss = -(1 - eps) log sigmoid(h - gamma) - eps log sigmoid(gamma - h)
// Listwise (Plackett-Luce, DPO paper appendix A.3) over a whole ranking of k items with ranks
// (1 = best, equal = tie) and the DPO rewards r:
//     loss = - sum over items i whose rank is not the worst of
//              [ r_i - log sum_{j: rank_j >= rank_i} exp r_j ]
// Without ties this is the Plackett-Luce negative log-likelihood of the order (k - 1 terms); for
// k = 2 it equals the sigmoid loss. Tied items share their denominators (each item competes with
// everything not ranked above it) and the worst-ranked group adds no term.
//
// Every function computes in double with stable log-sigmoid / log-sum-exp. Errors: none (the
// caller checks the settings with dpo_loss_check). No global state.
#ifndef DPO_LOSS_H
#define DPO_LOSS_H
#include <stddef.h>
#include <stdint.h>

#define DPO_MAX_K 64   // most items in one group (as reward.h's REWARD_MAX_K)

typedef enum { DPO_LOSS_SIGMOID = 0, DPO_LOSS_IPO, DPO_LOSS_SIMPO } DpoLossKind;

typedef struct {
    DpoLossKind kind;
    double beta;              // > 0
    double label_smoothing;   // eps in [0, 0.5): cDPO (sigmoid and SimPO)
    double gamma;             // SimPO's target margin (reward units)
    int listwise;             // Plackett-Luce over whole rankings (sigmoid only, eps = 0)
} DpoLossConfig;

// Parses "sigmoid" | "ipo" | "simpo" (-1 when unknown).
int dpo_loss_parse(const char *name, DpoLossKind *kind);
// Checks the settings: beta > 0, label_smoothing in [0, 0.5), gamma finite, listwise only with
// sigmoid and no label smoothing. 0, or -1 with a message naming the key (loss.*).
int dpo_loss_check(const DpoLossConfig *c, char *err, size_t errlen);

// The implicit reward of an item (see above).
double dpo_reward(const DpoLossConfig *c, double logp, double ref, int64_t n);

// One pair: item 0 chosen, item 1 rejected; logp, ref, n of 2. Returns the loss; dlogp (2), when
// not NULL, receives d loss / d logp of each item.
double dpo_pair_loss(const DpoLossConfig *c, const double *logp, const double *ref,
                     const int64_t *n, double *dlogp);
// One ranking of 2 <= k <= DPO_MAX_K items, listwise (see above). Returns the loss (0 when all
// are tied); dlogp (k), when not NULL, receives d loss / d logp.
double dpo_listwise_loss(const DpoLossConfig *c, int k, const double *logp, const double *ref,
                         const int64_t *n, const int *ranks, double *dlogp);

// What TRL logs, summed over pairs (divide by pairs for the means).
typedef struct {
    double loss;              // summed over groups (pairs, or rankings when listwise)
    int64_t groups, pairs;
    double chosen, rejected;  // rewards/chosen, rewards/rejected (sums over pairs)
    double correct;           // rewards/accuracies: pairs with r_c > r_l (strictly, as TRL)
    double logp_chosen, logp_rejected;   // logps/chosen, logps/rejected (sums over pairs)
} DpoStats;
// Adds the non-tied pairs of k items (chosen = the better rank of each pair) to *st.
void dpo_stats_add_pairs(DpoStats *st, const DpoLossConfig *c, int k, const double *logp,
                         const double *ref, const int64_t *n, const int *ranks);
#endif
