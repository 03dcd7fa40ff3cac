// The preference losses (see loss.h for the formulas and their sources).
#include "loss.h"
#include "util.h"
#include <math.h>
#include <string.h>

int dpo_loss_parse(const char *name, DpoLossKind *kind) {
    static const char *const names[] = {"sigmoid", "ipo", "simpo"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(name, names[i])) {
            *kind = (DpoLossKind)i;
            return 0;
        }
    return -1;
}

int dpo_loss_check(const DpoLossConfig *c, char *err, size_t errlen) {
    if (!(c->beta > 0) || !isfinite(c->beta))
        return util_err(err, errlen, "loss.beta must be > 0 (got %g): it scales the implicit "
                        "rewards beta * (log pi - log pi_ref)", c->beta);
    if (!(c->label_smoothing >= 0 && c->label_smoothing < 0.5))
        return util_err(err, errlen, "loss.label_smoothing must be in [0, 0.5) (got %g): the "
                        "share of pairs assumed mislabeled (cDPO)", c->label_smoothing);
    if (c->label_smoothing > 0 && c->kind == DPO_LOSS_IPO)
        return util_err(err, errlen, "loss.label_smoothing applies to loss.type sigmoid and simpo, "
                        "not ipo");
    if (!isfinite(c->gamma))
        return util_err(err, errlen, "loss.simpo_gamma must be finite (got %g)", c->gamma);
    if (c->listwise && (c->kind != DPO_LOSS_SIGMOID || c->label_smoothing > 0))
        return util_err(err, errlen, "data.pairs listwise (Plackett-Luce) needs loss.type sigmoid "
                        "and loss.label_smoothing 0");
    return 0;
}

// d r / d logp of an item.
static double reward_slope(const DpoLossConfig *c, int64_t n) {
    return c->kind == DPO_LOSS_SIMPO ? c->beta / (double)(n > 0 ? n : 1) : c->beta;
}

double dpo_reward(const DpoLossConfig *c, double logp, double ref, int64_t n) {
    if (c->kind == DPO_LOSS_SIMPO) return c->beta * logp / (double)(n > 0 ? n : 1);
    return c->beta * (logp - ref);
}

static double log_sigmoid(double x) {
    return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x));
}
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

double dpo_pair_loss(const DpoLossConfig *c, const double *logp, const double *ref,
                     const int64_t *n, double *dlogp) {
    double eps = c->label_smoothing, loss, dx;
    if (c->kind == DPO_LOSS_IPO) {   // x: the difference of the log-ratios
        double x = (logp[0] - ref[0]) - (logp[1] - ref[1]), d = x - 1.0 / (2.0 * c->beta);
        loss = d * d;
        dx = 2.0 * d;
        if (dlogp) { dlogp[0] = dx; dlogp[1] = -dx; }
        return loss;
    }
    double x = dpo_reward(c, logp[0], ref[0], n[0]) - dpo_reward(c, logp[1], ref[1], n[1]);
    if (c->kind == DPO_LOSS_SIMPO) x -= c->gamma;
    loss = -(1.0 - eps) * log_sigmoid(x) - eps * log_sigmoid(-x);
    dx = sigmoid(x) - (1.0 - eps);
    if (dlogp) {
        dlogp[0] = dx * reward_slope(c, n[0]);
        dlogp[1] = -dx * reward_slope(c, n[1]);
    }
    return loss;
}

double dpo_listwise_loss(const DpoLossConfig *c, int k, const double *logp, const double *ref,
                         const int64_t *n, const int *ranks, double *dlogp) {
    double r[DPO_MAX_K], g[DPO_MAX_K];
    int worst = 0;
    for (int i = 0; i < k; i++) {
        r[i] = dpo_reward(c, logp[i], ref[i], n[i]);
        g[i] = 0;
        if (ranks[i] > worst) worst = ranks[i];
    }
    double loss = 0;
    for (int i = 0; i < k; i++) {
        if (ranks[i] == worst) continue;
        double mx = -INFINITY, s = 0;   // log-sum-exp over the items not ranked above i
        for (int j = 0; j < k; j++)
            if (ranks[j] >= ranks[i] && r[j] > mx) mx = r[j];
        for (int j = 0; j < k; j++)
            if (ranks[j] >= ranks[i]) s += exp(r[j] - mx);
        double lse = mx + log(s);
        loss -= r[i] - lse;
        g[i] -= 1.0;
        for (int j = 0; j < k; j++)
            if (ranks[j] >= ranks[i]) g[j] += exp(r[j] - lse);
    }
    if (dlogp)
        for (int i = 0; i < k; i++) dlogp[i] = g[i] * reward_slope(c, n[i]);
    return loss;
}

void dpo_stats_add_pairs(DpoStats *st, const DpoLossConfig *c, int k, const double *logp,
                         const double *ref, const int64_t *n, const int *ranks) {
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) {
            if (ranks[i] >= ranks[j]) continue;   // i chosen over j
            double rc = dpo_reward(c, logp[i], ref[i], n[i]);
            double rl = dpo_reward(c, logp[j], ref[j], n[j]);
            st->pairs++;
            st->chosen += rc;
            st->rejected += rl;
            st->correct += rc > rl;
            st->logp_chosen += logp[i];
            st->logp_rejected += logp[j];
        }
}
