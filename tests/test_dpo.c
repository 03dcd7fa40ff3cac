// The dpo losses (dpo/loss.h): hand-computed values, a float64 PyTorch reference
// (tests/ref/dpo_ref.py, its printed table below), central finite differences of every loss,
// DPO with the policy equal to the reference (loss log 2, zero rewards and margins), the
// listwise loss of two items equal to the pairwise one, TRL's statistics on a ranking with ties,
// and the settings that are refused.
#include "loss.h"
#include "testlib.h"
#include <math.h>
#include <string.h>

#define CLOSE(a, b, tol) CHECK_MSG(fabs((a) - (b)) <= (tol), "%s = %.17g, want %.17g", #a, \
                                   (double)(a), (double)(b))

static DpoLossConfig cfg(DpoLossKind kind, double beta, double eps, double gamma, int listwise) {
    return (DpoLossConfig){.kind = kind, .beta = beta, .label_smoothing = eps, .gamma = gamma,
                           .listwise = listwise};
}

static void test_hand_values(void) {
    double lp[2] = {-12.5, -15.25}, ref[2] = {-13.0, -14.0}, d[2];
    int64_t n[2] = {5, 7};
    // DPO: h = 0.1 * ((-12.5 + 13) - (-15.25 + 14)) = 0.175, loss = log(1 + e^-0.175)
    DpoLossConfig c = cfg(DPO_LOSS_SIGMOID, 0.1, 0, 0, 0);
    CLOSE(dpo_pair_loss(&c, lp, ref, n, d), log1p(exp(-0.175)), 1e-15);
    CLOSE(d[0], -0.1 / (1 + exp(0.175)), 1e-15);
    CLOSE(d[1], 0.1 / (1 + exp(0.175)), 1e-15);
    CLOSE(dpo_reward(&c, lp[0], ref[0], n[0]), 0.05, 1e-15);
    // IPO: the log-ratio difference 1.75 against the target 1 / (2 * 0.1) = 5
    c = cfg(DPO_LOSS_IPO, 0.1, 0, 0, 0);
    CLOSE(dpo_pair_loss(&c, lp, ref, n, d), 3.25 * 3.25, 1e-12);
    CLOSE(d[0], -6.5, 1e-12);
    // cDPO with eps = 0.25: 0.75 log(1 + e^-h) + 0.25 log(1 + e^h), h = 0.875 (beta 0.5)
    c = cfg(DPO_LOSS_SIGMOID, 0.5, 0.25, 0, 0);
    CLOSE(dpo_pair_loss(&c, lp, ref, n, d), 0.75 * log1p(exp(-0.875)) + 0.25 * log1p(exp(0.875)),
          1e-15);
    // SimPO: h = 2 (-12.5 / 5 + 15.25 / 7) - 0.5, no reference; d/dlogp_c = beta/5 * (s(h) - 1)
    c = cfg(DPO_LOSS_SIMPO, 2.0, 0, 0.5, 0);
    double h = 2 * (-2.5 + 15.25 / 7) - 0.5, s = 1 / (1 + exp(-h));
    double junk[2] = {123.0, -77.0};   // the reference is not read
    CLOSE(dpo_pair_loss(&c, lp, junk, n, d), log1p(exp(-h)), 1e-14);
    CLOSE(d[0], 0.4 * (s - 1), 1e-14);
    CLOSE(d[1], -2.0 / 7 * (s - 1), 1e-14);
    // Plackett-Luce of three items in order, rewards 0.3 (logp - ref) = 0.15, -0.06, -0.15
    c = cfg(DPO_LOSS_SIGMOID, 0.3, 0, 0, 1);
    double l3[3] = {-3.0, -4.0, -2.5}, r3[3] = {-3.5, -3.8, -2.0};
    int64_t n3[3] = {1, 1, 1};
    int rk[3] = {1, 2, 3};
    double want = -(0.15 - log(exp(0.15) + exp(-0.06) + exp(-0.15))) -
                  (-0.06 - log(exp(-0.06) + exp(-0.15)));
    CLOSE(dpo_listwise_loss(&c, 3, l3, r3, n3, rk, NULL), want, 1e-14);
}

// tests/ref/dpo_ref.py's output (float64 PyTorch autograd), pasted as printed.
typedef struct { const char *name; double loss, grad[5]; } RefRow;
static const RefRow REF[] = {
    {"dpo", 0.60947043066304685, {-0.045636131276292118, 0.045636131276292118}},
    {"dpo_wrong_way", 1.7014132779827524, {-0.40878723809682183, 0.40878723809682183}},
    {"cdpo", 0.52344458100505575, {-0.047107486081494371, 0.047107486081494371}},
    {"ipo", 10.5625, {-6.5, 6.5}},
    {"ipo_beta2", 0.5625, {1.5, -1.5}},
    {"simpo", 1.4196601705073377, {-0.30328153103703598, 0.21662966502645428}},
    {"simpo_ls", 2.453267073682504, {-0.52125686906798829, 0.69500915875731772}},
    {"listwise", 2.7741328427627607, {-0.20592752597577774, -0.11265822472503821,
                                      0.032446444330986757, 0.2861393063698292}},
    {"listwise_ties", 4.0773012524612735, {-0.05078796029196616, -0.24194951148596044,
                                           0.1846208198289673, 0.15890461224092556,
                                           -0.05078796029196616}},
};
// The same cases as dpo_ref.py's CASES.
typedef struct {
    DpoLossConfig c;
    int k;
    double logp[5], ref[5];
    int64_t n[5];
    int ranks[5];
} Case;
static const Case CASES[] = {
    {{DPO_LOSS_SIGMOID, 0.1, 0, 0, 0}, 2, {-12.5, -15.25}, {-13, -14}, {5, 7}, {1, 2}},
    {{DPO_LOSS_SIGMOID, 0.5, 0, 0, 0}, 2, {-20, -3}, {-18, -4}, {9, 2}, {1, 2}},
    {{DPO_LOSS_SIGMOID, 0.5, 0.2, 0, 0}, 2, {-12.5, -15.25}, {-13, -14}, {5, 7}, {1, 2}},
    {{DPO_LOSS_IPO, 0.1, 0, 0, 0}, 2, {-12.5, -15.25}, {-13, -14}, {5, 7}, {1, 2}},
    {{DPO_LOSS_IPO, 2.0, 0, 0, 0}, 2, {-1, -2.5}, {-1.5, -2}, {3, 4}, {1, 2}},
    {{DPO_LOSS_SIMPO, 2.0, 0, 0.5, 0}, 2, {-12.5, -15.25}, {0, 0}, {5, 7}, {1, 2}},
    {{DPO_LOSS_SIMPO, 2.5, 0.1, 1.4, 0}, 2, {-6, -3}, {0, 0}, {4, 3}, {1, 2}},
    {{DPO_LOSS_SIGMOID, 0.3, 0, 0, 1}, 4, {-3, -4, -2.5, -6}, {-3.5, -3.8, -2, -5}, {2, 3, 2, 4},
     {1, 2, 3, 4}},
    {{DPO_LOSS_SIGMOID, 0.3, 0, 0, 1}, 5, {-3, -4, -2.5, -6, -1}, {-3.5, -3.8, -2, -5, -1.5},
     {2, 3, 2, 4, 1}, {2, 1, 3, 3, 2}},
};
enum { NCASES = sizeof CASES / sizeof CASES[0] };

static double case_loss(const Case *t, const double *logp, double *d) {
    return t->c.listwise ? dpo_listwise_loss(&t->c, t->k, logp, t->ref, t->n, t->ranks, d)
                         : dpo_pair_loss(&t->c, logp, t->ref, t->n, d);
}

static void test_pytorch_reference(void) {
    CHECK(NCASES == sizeof REF / sizeof REF[0]);
    for (int i = 0; i < NCASES; i++) {
        double d[5];
        double loss = case_loss(&CASES[i], CASES[i].logp, d);
        CHECK_MSG(fabs(loss - REF[i].loss) <= 1e-12 * (1 + fabs(REF[i].loss)),
                  "%s: loss %.17g, PyTorch %.17g", REF[i].name, loss, REF[i].loss);
        for (int j = 0; j < CASES[i].k; j++)
            CHECK_MSG(fabs(d[j] - REF[i].grad[j]) <= 1e-12, "%s: d/dlogp[%d] %.17g, PyTorch %.17g",
                      REF[i].name, j, d[j], REF[i].grad[j]);
    }
}

// Central differences of every case's loss, and of the same cases moved to other points.
static void test_finite_differences(void) {
    for (int i = 0; i < NCASES; i++)
        for (int shift = 0; shift < 3; shift++) {
            const Case *t = &CASES[i];
            double x[5], d[5];
            for (int j = 0; j < t->k; j++) x[j] = t->logp[j] + shift * (j % 2 ? 1.7 : -0.9);
            case_loss(t, x, d);
            for (int j = 0; j < t->k; j++) {
                double e = 1e-5, xp[5], xm[5];
                memcpy(xp, x, sizeof x);
                memcpy(xm, x, sizeof x);
                xp[j] += e;
                xm[j] -= e;
                double fd = (case_loss(t, xp, NULL) - case_loss(t, xm, NULL)) / (2 * e);
                CHECK_MSG(fabs(fd - d[j]) <= 1e-7 * (1 + fabs(fd)),
                          "%s shift %d item %d: analytic %.10g, finite difference %.10g",
                          REF[i].name, shift, j, d[j], fd);
            }
        }
}

// The policy equal to the reference: every implicit reward 0, the DPO loss log 2, margins 0,
// accuracy 0 (TRL counts chosen > rejected strictly), the gradient -+beta/2.
static void test_policy_is_reference(void) {
    DpoLossConfig c = cfg(DPO_LOSS_SIGMOID, 0.1, 0, 0, 0);
    double lp[2] = {-7.25, -19.5}, d[2];
    int64_t n[2] = {3, 9};
    CLOSE(dpo_pair_loss(&c, lp, lp, n, d), log(2.0), 1e-15);
    CLOSE(d[0], -0.05, 1e-15);
    CLOSE(d[1], 0.05, 1e-15);
    DpoStats st = {0};
    dpo_stats_add_pairs(&st, &c, 2, lp, lp, n, (const int[]){1, 2});
    CHECK(st.pairs == 1 && st.chosen == 0 && st.rejected == 0 && st.correct == 0);
    CLOSE(st.logp_chosen, -7.25, 0);
    CLOSE(st.logp_rejected, -19.5, 0);
}

// Two items listwise are one pair: Plackett-Luce of k = 2 is the sigmoid loss.
static void test_listwise_two_is_pairwise(void) {
    DpoLossConfig p = cfg(DPO_LOSS_SIGMOID, 0.7, 0, 0, 0), l = cfg(DPO_LOSS_SIGMOID, 0.7, 0, 0, 1);
    double lp[2] = {-4.5, -2.0}, ref[2] = {-4.0, -3.5}, dp[2], dl[2];
    int64_t n[2] = {2, 2};
    CLOSE(dpo_listwise_loss(&l, 2, lp, ref, n, (const int[]){1, 2}, dl),
          dpo_pair_loss(&p, lp, ref, n, dp), 1e-14);
    CLOSE(dl[0], dp[0], 1e-14);
    CLOSE(dl[1], dp[1], 1e-14);
    // all tied: no term
    CLOSE(dpo_listwise_loss(&l, 2, lp, ref, n, (const int[]){1, 1}, dl), 0.0, 0);
}

// A 4-wise ranking with a tie: its 5 untied pairs, rewards summed as TRL averages them.
static void test_stats_with_ties(void) {
    DpoLossConfig c = cfg(DPO_LOSS_SIGMOID, 1.0, 0, 0, 0);
    double lp[4] = {1, 2, 3, 4}, ref[4] = {0, 0, 0, 0};
    int64_t n[4] = {1, 1, 1, 1};
    int ranks[4] = {1, 2, 2, 3};   // pairs: 0>1 0>2 0>3 1>3 2>3
    DpoStats st = {0};
    dpo_stats_add_pairs(&st, &c, 4, lp, ref, n, ranks);
    CHECK(st.pairs == 5);
    CLOSE(st.chosen, 1 + 1 + 1 + 2 + 3, 0);
    CLOSE(st.rejected, 2 + 3 + 4 + 4 + 4, 0);
    CLOSE(st.correct, 0, 0);   // every chosen has the lower reward here
}

static void test_bad_settings(void) {
    char err[256];
    DpoLossConfig c = cfg(DPO_LOSS_SIGMOID, 0, 0, 0, 0);
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "loss.beta must be > 0", "got 0");
    c.beta = -1;
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "loss.beta must be > 0", "got -1");
    c.beta = NAN;
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "loss.beta", NULL);
    c = cfg(DPO_LOSS_SIGMOID, 0.1, 0.5, 0, 0);
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "loss.label_smoothing", NULL);
    c = cfg(DPO_LOSS_IPO, 0.1, 0.1, 0, 0);
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "not ipo", NULL);
    c = cfg(DPO_LOSS_IPO, 0.1, 0, 0, 1);
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "listwise", NULL);
    c = cfg(DPO_LOSS_SIMPO, 0.1, 0, INFINITY, 0);
    CHECK_ERR(dpo_loss_check(&c, err, sizeof err), err, "loss.simpo_gamma", NULL);
    DpoLossKind k;
    CHECK(dpo_loss_parse("hinge", &k) == -1);
    CHECK(dpo_loss_parse("ipo", &k) == 0 && k == DPO_LOSS_IPO);
    c = cfg(DPO_LOSS_SIMPO, 2.0, 0.1, 0.5, 0);
    CHECK(dpo_loss_check(&c, err, sizeof err) == 0);
}

int main(void) {
    test_case("hand-computed DPO, IPO, cDPO, SimPO and Plackett-Luce", test_hand_values);
    test_case("every loss and gradient equals float64 PyTorch (tests/ref/dpo_ref.py)",
              test_pytorch_reference);
    test_case("every gradient equals central finite differences", test_finite_differences);
    test_case("policy = reference: loss log 2, zero rewards and margins", test_policy_is_reference);
    test_case("listwise of two items = the pairwise sigmoid loss", test_listwise_two_is_pairwise);
    test_case("TRL statistics over a ranking's untied pairs", test_stats_with_ties);
    test_case("bad settings are one-line errors naming the key", test_bad_settings);
    return test_summary();
}
