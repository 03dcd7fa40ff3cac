// PPO arithmetic (common/ppo.c) against hand-computed values and finite differences, and the
// way the ppo program uses the engine: a custom d/dlogp and d/dvalue through model_backward give
// the gradient of the clipped losses (plus the ptx LM loss accumulated into the same gradients),
// and a policy equal to its frozen reference gives KL exactly 0 and ratio exactly 1.
#include "model.h"
#include "ppo.h"
#include "rng.h"
#include "testlib.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_kl_estimators(void) {
    // d = ref - logp = -0.5: k1 = 0.5, k3 = e^-0.5 - 1 + 0.5
    CHECK(fabs(ppo_kl_k1(-1.0f, -1.5f) - 0.5) < 1e-12);
    CHECK(fabs(ppo_kl_k3(-1.0f, -1.5f) - (exp(-0.5) - 0.5)) < 1e-12);
    CHECK(ppo_kl_k1(-2.25f, -2.25f) == 0.0 && ppo_kl_k3(-2.25f, -2.25f) == 0.0);
    CHECK(ppo_kl_k3(-3.0f, -1.0f) > 0.0 && ppo_kl_k3(-1.0f, -3.0f) > 0.0);   // k3 >= 0 both ways
}

static void test_rewards_and_score(void) {
    float logp[3] = {-1.0f, -2.0f, -0.5f}, ref[3] = {-1.5f, -2.0f, -1.0f}, r[3];
    double ns = ppo_rewards(logp, ref, 3, 0.1f, 3.0f, r);
    float want[3] = {-0.05f, 0.0f, 2.95f};
    CHECK_CLOSE(r, want, 3, 1e-7, 0, "rewards = -beta*(logp-ref), score at the last token");
    CHECK(fabs(ns - (-0.1)) < 1e-7);
    CHECK(ppo_shape_score(1.5f, 1, 1.0f, 0.0f) == 1.5f);    // ended: no penalty
    CHECK(ppo_shape_score(1.5f, 0, 1.0f, 0.0f) == 0.5f);    // missing end token: penalty
    CHECK(ppo_shape_score(5.0f, 1, 0.0f, 2.0f) == 2.0f);    // clipped
    CHECK(ppo_shape_score(-5.0f, 0, 1.0f, 2.0f) == -2.0f);
}

static void test_gae(void) {
    float r[3] = {1.0f, 0.0f, 2.0f}, v[3] = {0.5f, 1.0f, 1.5f}, a[3], ret[3];
    // gamma 1, lambda 0.95, worked by hand:
    //   t=2: delta = 2 - 1.5 = 0.5                 A = 0.5
    //   t=1: delta = 0 + 1.5 - 1.0 = 0.5           A = 0.5 + 0.95*0.5 = 0.975
    //   t=0: delta = 1 + 1.0 - 0.5 = 1.5           A = 1.5 + 0.95*0.975 = 2.42625
    ppo_gae(r, v, 3, 1.0f, 0.95f, a, ret);
    float wa[3] = {2.42625f, 0.975f, 0.5f}, wr[3] = {2.92625f, 1.975f, 2.0f};
    CHECK_CLOSE(a, wa, 3, 1e-6, 0, "GAE gamma=1 lambda=0.95");
    CHECK_CLOSE(ret, wr, 3, 1e-6, 0, "returns = A + V");
    // gamma 0.9, lambda 0.5:
    //   t=2: delta = 0.5, A = 0.5;  t=1: delta = 0.9*1.5 - 1 = 0.35, A = 0.35 + 0.45*0.5 = 0.575
    //   t=0: delta = 1 + 0.9 - 0.5 = 1.4, A = 1.4 + 0.45*0.575 = 1.65875
    ppo_gae(r, v, 3, 0.9f, 0.5f, a, ret);
    float wb[3] = {1.65875f, 0.575f, 0.5f};
    CHECK_CLOSE(a, wb, 3, 1e-6, 0, "GAE gamma=0.9 lambda=0.5");
    // lambda = gamma = 1: Monte Carlo returns minus the baseline
    ppo_gae(r, v, 3, 1.0f, 1.0f, a, ret);
    float wc[3] = {3.0f - 0.5f, 2.0f - 1.0f, 2.0f - 1.5f}, wrc[3] = {3.0f, 2.0f, 2.0f};
    CHECK_CLOSE(a, wc, 3, 1e-6, 0, "GAE lambda=1 is the Monte Carlo advantage");
    CHECK_CLOSE(ret, wrc, 3, 1e-6, 0, "lambda=1 returns are the reward-to-go");
    // lambda = 0: one-step TD errors
    ppo_gae(r, v, 3, 1.0f, 0.0f, a, ret);
    float wd[3] = {1.5f, 0.5f, 0.5f};
    CHECK_CLOSE(a, wd, 3, 1e-6, 0, "GAE lambda=0 is the TD error");
}

static void test_whiten(void) {
    // masked entries 1, 2, 4: mean 7/3, unbiased variance (16/9 + 1/9 + 25/9) / 2 = 7/3
    float x[4] = {1.0f, 2.0f, 3.0f, 4.0f};
    uint8_t m[4] = {1, 1, 0, 1};
    double mean, var;
    CHECK(ppo_masked_moments(x, m, 4, &mean, &var) == 3);
    CHECK(fabs(mean - 7.0 / 3) < 1e-12 && fabs(var - 7.0 / 3) < 1e-12);
    ppo_whiten(x, m, 4, 1);
    double s = sqrt(7.0 / 3 + 1e-8);
    float want[4] = {(float)((1 - 7.0 / 3) / s), (float)((2 - 7.0 / 3) / s), 3.0f,
                     (float)((4 - 7.0 / 3) / s)};
    CHECK_CLOSE(x, want, 4, 1e-6, 0, "whitened (unmasked entry untouched)");
    CHECK(ppo_masked_moments(x, m, 4, &mean, &var) == 3 && fabs(mean) < 1e-6 &&
          fabs(var - 1.0) < 1e-6);
    float y[3] = {1.0f, 2.0f, 4.0f};
    ppo_whiten(y, NULL, 3, 0);   // without shifting the mean: mean stays 7/3
    CHECK(ppo_masked_moments(y, NULL, 3, &mean, &var) == 3 && fabs(mean - 7.0 / 3) < 1e-6 &&
          fabs(var - 1.0) < 1e-6);
    float one[1] = {5.0f};
    ppo_whiten(one, NULL, 1, 1);
    CHECK(one[0] == 0.0f);       // a single value: variance 0, centred
}

static void test_explained_variance(void) {
    // residual (0,0,0,1): unbiased var 0.25; Var(target) = 5/3 -> 1 - 0.25 / (5/3) = 0.85
    float t[4] = {1, 2, 3, 4}, p[4] = {1, 2, 3, 3};
    CHECK(fabs(ppo_explained_variance(p, t, NULL, 4) - 0.85) < 1e-9);
    CHECK(fabs(ppo_explained_variance(t, t, NULL, 4) - 1.0) < 1e-12);
    float c[3] = {2, 2, 2};
    CHECK(isnan(ppo_explained_variance(p, c, NULL, 3)));
}

static void test_policy_loss_hand(void) {
    // old = 0 so logp = log r; clip 0.2; weights 1/5 on five tokens, a sixth masked out
    //   r=1.1 A=+1: max(-1.1, -1.1)  = -1.1 unclipped, d/dlogp = -A r = -1.1
    //   r=1.5 A=+1: max(-1.5, -1.2)  = -1.2 clipped,   0
    //   r=1.5 A=-1: max( 1.5,  1.2)  =  1.5 unclipped,  1.5
    //   r=0.5 A=+1: max(-0.5, -0.8)  = -0.5 unclipped, -0.5
    //   r=0.5 A=-1: max( 0.5,  0.8)  =  0.8 clipped,   0
    // loss = (-1.1 - 1.2 + 1.5 - 0.5 + 0.8) / 5 = -0.1, clip fraction 2/5
    float old[6] = {0}, logp[6], adv[6] = {1, 1, -1, 1, -1, 7},
          w[6] = {0.2f, 0.2f, 0.2f, 0.2f, 0.2f, 0.0f};
    float r[6] = {1.1f, 1.5f, 1.5f, 0.5f, 0.5f, 3.0f}, d[6];
    for (int i = 0; i < 6; i++) logp[i] = logf(r[i]);
    PpoPolicyStats st;
    ppo_policy_loss(logp, old, adv, w, 6, 0.2f, d, &st);
    CHECK(fabs(st.loss - (-0.1)) < 1e-6);
    CHECK(fabs(st.clip_frac - 0.4) < 1e-9);
    CHECK(st.n_tokens == 5 && st.n_nonfinite == 0);
    CHECK(fabs(st.max_ratio_dev - 0.5) < 1e-6);
    float want[6] = {0.2f * -1.1f, 0, 0.2f * 1.5f, 0.2f * -0.5f, 0, 0};
    CHECK_CLOSE(d, want, 6, 1e-6, 0, "d loss / d logp (hand)");
    // approx KL = mean of 0.5 (log r)^2
    double kl = 0;
    for (int i = 0; i < 5; i++) kl += 0.5 * log(r[i]) * log(r[i]) / 5;
    CHECK(fabs(st.approx_kl - kl) < 1e-6);
    // ratio exactly 1 when logp == old
    ppo_policy_loss(old, old, adv, w, 6, 0.2f, d, &st);
    CHECK(st.max_ratio_dev == 0.0 && st.ratio_mean == 1.0 && st.clip_frac == 0.0);
    // a NaN anywhere is reported
    logp[2] = NAN;
    ppo_policy_loss(logp, old, adv, w, 6, 0.2f, d, &st);
    CHECK(st.n_nonfinite == 1 && isnan(st.loss));
}

// (loss(x with x[i] + h) - loss(x with x[i] - h)) / 2h, x[i] left as it was
static double central_diff(float *x, int i, float h,
                           double (*loss)(const float *x, const void *ctx), const void *ctx) {
    float save = x[i];
    x[i] = save + h; double lp = loss(x, ctx);
    x[i] = save - h; double lm = loss(x, ctx);
    x[i] = save;
    return (lp - lm) / (2.0 * h);
}

// the clipped policy loss (clip 0.2) at log-probs logp, all else fixed
typedef struct { const float *old, *adv, *w; int n; } PolicyLossAt;
static double policy_loss_at(const float *logp, const void *ctx) {
    const PolicyLossAt *a = ctx;
    PpoPolicyStats st;
    ppo_policy_loss(logp, a->old, a->adv, a->w, a->n, 0.2f, NULL, &st);
    return st.loss;
}

// the clipped value loss (clip 0.2) at values v, all else fixed
typedef struct { const float *old, *R, *w; int n; } ValueLossAt;
static double value_loss_at(const float *v, const void *ctx) {
    const ValueLossAt *a = ctx;
    PpoValueStats st;
    ppo_value_loss(v, a->old, a->R, a->w, a->n, 0.2f, NULL, &st);
    return st.loss;
}

// Central differences of the loss in double precision around random points away from the kinks.
static void test_policy_loss_fd(void) {
    enum { N = 64 };
    float logp[N], old[N], adv[N], w[N], d[N];
    Rng r; rng_init(&r, 11);
    for (int i = 0; i < N; i++) {
        old[i] = -1.0f - 2.0f * rng_float(&r);
        logp[i] = old[i] + 0.5f * rng_normal(&r);
        adv[i] = rng_normal(&r);
        w[i] = i % 7 == 3 ? 0.0f : 1.0f / N;
    }
    PpoPolicyStats st;
    ppo_policy_loss(logp, old, adv, w, N, 0.2f, d, &st);
    int checked = 0, clipped = 0;
    for (int i = 0; i < N; i++) {
        double rr = exp((double)logp[i] - old[i]);
        if (fabs(rr - 0.8) < 0.02 || fabs(rr - 1.2) < 0.02) continue; // a kink: not differentiable
        PolicyLossAt at = {old, adv, w, N};
        double fd = central_diff(logp, i, 1e-2f, policy_loss_at, &at);
        // (exp is curved: the central difference is exact to O(h^2) = 1e-4 relative)
        CHECK_MSG(fabs(fd - d[i]) <= 2e-4 * fabs(d[i]) + 1e-7,
                  "token %d: analytic %g vs finite difference %g", i, d[i], fd);
        checked++;
        clipped += d[i] == 0.0f && w[i] > 0;
    }
    CHECK(checked > 40 && clipped > 3);   // both regimes were exercised
}

static void test_value_loss_hand(void) {
    // clip 0.2, weights 1/4:
    //   v=1.0 old=0.9 R=2: v_clip = 1.0; max(1, 1) = 1         unclipped, d = v - R = -1
    //   v=1.5 old=1.0 R=2: v_clip = 1.2; max(0.25, 0.64) = .64  clipped,   0
    //   v=1.5 old=1.0 R=1: v_clip = 1.2; max(0.25, 0.04) = .25  unclipped, 0.5
    //   v=0.0 old=1.0 R=2: v_clip = 0.8; max(4, 1.44) = 4        unclipped, -2
    // loss = 0.25 * 0.5 * (1 + 0.64 + 0.25 + 4) = 0.73625, clip fraction 1/4
    float v[5] = {1.0f, 1.5f, 1.5f, 0.0f, 9.0f}, old[5] = {0.9f, 1.0f, 1.0f, 1.0f, 0.0f},
          R[5] = {2, 2, 1, 2, 0};
    float w[5] = {0.25f, 0.25f, 0.25f, 0.25f, 0.0f}, d[5];
    PpoValueStats st;
    ppo_value_loss(v, old, R, w, 5, 0.2f, d, &st);
    CHECK(fabs(st.loss - 0.73625) < 1e-6);
    CHECK(fabs(st.clip_frac - 0.25) < 1e-9 && st.n_tokens == 4 && st.n_nonfinite == 0);
    float want[5] = {-0.25f, 0.0f, 0.125f, -0.5f, 0.0f};
    CHECK_CLOSE(d, want, 5, 1e-6, 0, "d value loss / d v (hand)");
    // without clipping: plain 0.5 (v - R)^2
    ppo_value_loss(v, old, R, w, 5, 0.0f, d, &st);
    CHECK(fabs(st.loss - 0.125 * (1 + 0.25 + 0.25 + 4)) < 1e-6 && st.clip_frac == 0.0);
    // finite differences over random points
    enum { N = 48 };
    float vv[N], oo[N], rr[N], ww[N], dd[N];
    Rng r; rng_init(&r, 5);
    for (int i = 0; i < N; i++) {
        oo[i] = rng_normal(&r);
        vv[i] = oo[i] + 0.4f * rng_normal(&r);
        rr[i] = rng_normal(&r);
        ww[i] = 1.0f / N;
    }
    ppo_value_loss(vv, oo, rr, ww, N, 0.2f, dd, &st);
    int checked = 0;
    for (int i = 0; i < N; i++) {
        if (fabs(fabs(vv[i] - oo[i]) - 0.2) < 0.02) continue;
        float save = vv[i], h = 1e-2f;
        ValueLossAt at = {oo, rr, ww, N};
        double fd = central_diff(vv, i, h, value_loss_at, &at);
        // the loss switches branch where (v - R)^2 = (v_clip - R)^2: skip a token whose branch
        // changes within h
        if (fabs(fd - dd[i]) > 1e-5) {
            PpoValueStats s2; float d2[N];
            vv[i] = save + 0.5f * h; ppo_value_loss(vv, oo, rr, ww, N, 0.2f, d2, &s2); vv[i] = save;
            if ((d2[i] == 0.0f) != (dd[i] == 0.0f)) continue;   // the branch changes within h: skip
        }
        CHECK_MSG(fabs(fd - dd[i]) <= 1e-5, "value %d: analytic %g vs finite difference %g", i,
                  dd[i], fd);
        checked++;
    }
    CHECK(checked > 30);
}

static void test_kl_controller(void) {
    PpoKlController c = {.beta = 0.1, .adaptive = 1, .target = 6.0, .horizon = 10000.0};
    ppo_kl_update(&c, 9.0, 64);     // error 0.5 clipped to 0.2: beta * (1 + 0.2 * 64 / 10000)
    CHECK(fabs(c.beta - 0.1 * 1.00128) < 1e-15);
    c.beta = 0.1;
    ppo_kl_update(&c, 5.4, 64);     // error -0.1: beta * (1 - 0.1 * 0.0064)
    CHECK(fabs(c.beta - 0.1 * 0.99936) < 1e-15);
    c.beta = 0.1;
    ppo_kl_update(&c, 0.0, 64);     // error -1 clipped to -0.2
    CHECK(fabs(c.beta - 0.1 * (1 - 0.2 * 0.0064)) < 1e-15);
    PpoKlController f = {.beta = 0.02, .adaptive = 0, .target = 6.0, .horizon = 10000.0};
    ppo_kl_update(&f, 100.0, 64);
    CHECK(f.beta == 0.02);          // fixed
}

static void test_ema(void) {
    float e[3] = {1, 2, 3}, w[3] = {3, 2, 1};
    ppo_ema_update(e, w, 3, 0.75f);
    float want[3] = {1.5f, 2.0f, 2.5f};
    CHECK_CLOSE(e, want, 3, 1e-7, 0, "ema = d*ema + (1-d)*w");
}

// ---------------------------------------------------------------------------------------------
// Through the engine: a tiny GPT-2 with the policy's batch layout (prompt positions carry no
// target, response positions do).

enum { TB = 3, TT = 10, TV = 23 };
static const int32_t t_len[TB] = {10, 6, 8}, t_plen[TB] = {4, 2, 5};

static void tiny(Model *m, int lm, int score, int trainable, uint64_t seed) {
    ModelConfig c = {.max_seq_len = 16, .vocab_size = TV, .n_layer = 2, .n_head = 2, .n_embd = 8,
                     .ln_eps = 1e-5f, .lm_head = lm, .score_head = score};
    char err[256];
    if (model_init(m, &c, TB, TT, trainable, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    Rng r; rng_init(&r, seed);
    rng_fill_normal(&r, m->params_memory, (int64_t)m->num_params, 0.0f, 0.3f);
    for (int i = 0; i < c.n_layer * c.n_embd; i++) {
        m->params.ln1w[i] += 1.0f;
        m->params.ln2w[i] += 1.0f;
    }
}

static void tiny_batch(int32_t *tok, int32_t *tgt, ModelBatch *b) {
    Rng r; rng_init(&r, 3);
    for (int i = 0; i < TB; i++)
        for (int t = 0; t < TT; t++) {
            tok[i * TT + t] = t < t_len[i] ? (int32_t)rng_below(&r, TV) : 0;
            tgt[i * TT + t] = -1;
        }
    for (int i = 0; i < TB; i++)   // target at t = the next token, on response positions only
        for (int t = t_plen[i] - 1; t < t_len[i] - 1; t++) tgt[i * TT + t] = tok[i * TT + t + 1];
    *b = (ModelBatch){
        .B = TB, .T = TT, .tokens = tok, .lengths = t_len, .targets = tgt, .weights = NULL};
}

// ptx: one plain LM batch, every position a target, weight coef / tokens.
static void ptx_batch(int32_t *tok, int32_t *tgt, float *w, int32_t *len, ModelBatch *b,
                      float coef) {
    Rng r; rng_init(&r, 9);
    for (int i = 0; i < 2 * 7; i++) {
        tok[i] = (int32_t)rng_below(&r, TV);
        tgt[i] = (int32_t)rng_below(&r, TV);
        w[i] = coef / 14.0f;
    }
    len[0] = len[1] = 7;
    *b = (ModelBatch){.B = 2, .T = 7, .tokens = tok, .lengths = len, .targets = tgt, .weights = w};
}

typedef struct { float old[TB * TT], adv[TB * TT], w[TB * TT]; } PgInputs;

static double pg_objective(Model *m, const ModelBatch *b, const PgInputs *in, float coef,
                           const ModelBatch *pb) {
    char err[256];
    float logp[TB * TT];
    if (model_forward(m, b, 0, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
    model_get_logp(m, logp);
    PpoPolicyStats st;
    ppo_policy_loss(logp, in->old, in->adv, in->w, TB * TT, 0.2f, NULL, &st);
    double total = st.loss;
    if (pb) {
        if (model_forward(m, pb, 0, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
        total += m->loss;   // sum w * CE with w = coef / tokens
    }
    (void)coef;
    return total;
}

static void test_policy_gradient_through_model(void) {
    Model m; tiny(&m, 1, 0, 1, 21);
    int32_t tok[TB * TT], tgt[TB * TT], ptok[14], ptgt[14], plen[2];
    float pw[14];
    ModelBatch b, pb;
    tiny_batch(tok, tgt, &b);
    const float coef = 2.5f;
    ptx_batch(ptok, ptgt, pw, plen, &pb, coef);
    char err[256];
    float logp[TB * TT], dlogp[TB * TT];
    CHECK(model_forward(&m, &b, 0, err, sizeof err) == 0);
    model_get_logp(&m, logp);
    PgInputs in;
    Rng r; rng_init(&r, 4);
    int ntok = 0;
    for (int i = 0; i < TB * TT; i++) ntok += tgt[i] >= 0;
    for (int i = 0; i < TB * TT; i++) {
        in.w[i] = tgt[i] >= 0 ? 1.0f / ntok : 0.0f;
        in.old[i] =
            logp[i] + 0.3f * rng_normal(&r); // some ratios outside [0.8, 1.2]: clipped tokens
        in.adv[i] = rng_normal(&r);
    }
    PpoPolicyStats st;
    ppo_policy_loss(logp, in.old, in.adv, in.w, TB * TT, 0.2f, dlogp, &st);
    CHECK(st.clip_frac > 0.05 && st.clip_frac < 0.95);
    // the program's order: PPO backward with its d/dlogp, then the ptx batch's LM loss backward
    model_zero_grad(&m);
    model_backward(&m, &b, dlogp, NULL);
    CHECK(model_forward(&m, &pb, 0, err, sizeof err) == 0);
    model_backward(&m, &pb, NULL, NULL);
    // central differences of (clipped PPO loss + coef * mean CE) on a spread of parameters
    int checked = 0, bad = 0;
    for (size_t k = 0; k < m.num_params; k += m.num_params / 60) {
        float save = m.params_memory[k], h = 2e-3f;
        m.params_memory[k] = save + h; double lp = pg_objective(&m, &b, &in, coef, &pb);
        m.params_memory[k] = save - h; double lm = pg_objective(&m, &b, &in, coef, &pb);
        m.params_memory[k] = save;
        double fd = (lp - lm) / (2.0 * h), g = m.grads_memory[k];
        if (fabs(fd - g) > 2e-3 + 2e-2 * fabs(g)) {
            bad++;
            fprintf(stderr, "    param %zu: backward %g vs finite difference %g\n", k, g, fd);
        }
        checked++;
    }
    // a few may sit on a clipping kink within h; the rest must agree
    CHECK_MSG(bad <= 2, "%d of %d parameters disagree", bad, checked);
    model_free(&m);
}

static void test_value_gradient_through_model(void) {
    Model m; tiny(&m, 0, 1, 1, 8);
    int32_t tok[TB * TT], tgt[TB * TT];
    ModelBatch b;
    tiny_batch(tok, tgt, &b);
    ModelBatch vb = b; vb.targets = NULL;   // the value model has no LM head: values only
    char err[256];
    float v[TB * TT], old[TB * TT], ret[TB * TT], w[TB * TT], dv[TB * TT];
    CHECK(model_forward(&m, &vb, 0, err, sizeof err) == 0);
    model_get_values(&m, v);
    Rng r; rng_init(&r, 2);
    int ntok = 0;
    for (int i = 0; i < TB * TT; i++) ntok += tgt[i] >= 0;
    for (int i = 0; i < TB * TT; i++) {
        w[i] = tgt[i] >= 0 ? 1.0f / ntok : 0.0f;
        old[i] = v[i] + 0.3f * rng_normal(&r);
        ret[i] = rng_normal(&r);
    }
    PpoValueStats st;
    ppo_value_loss(v, old, ret, w, TB * TT, 0.2f, dv, &st);
    model_zero_grad(&m);
    model_backward(&m, &vb, NULL, dv);
    int bad = 0, checked = 0;
    for (size_t k = 0; k < m.num_params; k += m.num_params / 60) {
        float save = m.params_memory[k], h = 2e-3f;
        double l[2];
        for (int s = 0; s < 2; s++) {
            m.params_memory[k] = save + (s ? -h : h);
            float vv[TB * TT];
            CHECK(model_forward(&m, &vb, 0, err, sizeof err) == 0);
            model_get_values(&m, vv);
            PpoValueStats s2;
            ppo_value_loss(vv, old, ret, w, TB * TT, 0.2f, NULL, &s2);
            l[s] = s2.loss;
        }
        m.params_memory[k] = save;
        double fd = (l[0] - l[1]) / (2.0 * h), g = m.grads_memory[k];
        if (fabs(fd - g) > 1e-3 + 2e-2 * fabs(g)) {
            bad++;
            fprintf(stderr, "    param %zu: backward %g vs finite difference %g\n", k, g, fd);
        }
        checked++;
    }
    CHECK_MSG(bad <= 2, "%d of %d parameters disagree", bad, checked);
    model_free(&m);
}

// The first minibatch of an iteration: the trained policy, its frozen reference and the rollout's
// own log-probs all come from the same weights and the same batch, so they agree to the bit.
static void test_policy_equals_reference(void) {
    Model pol, ref;
    tiny(&pol, 1, 0, 1, 77);
    tiny(&ref, 1, 0, 0, 77);
    int32_t tok[TB * TT], tgt[TB * TT];
    ModelBatch b;
    tiny_batch(tok, tgt, &b);
    char err[256];
    float lp[TB * TT], lr[TB * TT], lp2[TB * TT], adv[TB * TT], w[TB * TT], d[TB * TT];
    // ppo's forwards of its models are row-invariant (PPO_FWD in ppo/iteration.c): the frozen
    // reference's always are, so the policy's must be for the bits to agree on every BLAS
    CHECK(model_forward(&pol, &b, MODEL_ENTROPY | MODEL_FIXED_ROWS, err, sizeof err) == 0);
    model_get_logp(&pol, lp);
    CHECK(model_forward(&ref, &b, 0, err, sizeof err) == 0);
    model_get_logp(&ref, lr);
    CHECK(model_forward(&pol, &b, MODEL_FIXED_ROWS, err, sizeof err) == 0);   // training pass
    model_get_logp(&pol, lp2);
    double k1 = 0, k3 = 0;
    for (int i = 0; i < TB * TT; i++) {
        if (tgt[i] < 0) { w[i] = 0; adv[i] = 0; continue; }
        k1 += fabs(ppo_kl_k1(lp[i], lr[i]));
        k3 += ppo_kl_k3(lp[i], lr[i]);
        w[i] = 0.05f; adv[i] = 1.0f;
    }
    CHECK_MSG(k1 == 0.0 && k3 == 0.0, "KL between equal models: k1 %g, k3 %g", k1, k3);
    PpoPolicyStats st;
    ppo_policy_loss(lp2, lp, adv, w, TB * TT, 0.2f, d, &st);
    CHECK_MSG(st.max_ratio_dev == 0.0 && st.ratio_mean == 1.0, "ratio deviates from 1 by %g",
              st.max_ratio_dev);
    model_free(&pol);
    model_free(&ref);
}

static void test_group_advantages(void) {
    // two groups of three: rewards {1, 2, 6} and {0, 0, 0}
    float r[6] = {1, 2, 6, 0, 0, 0}, a[6];
    // GRPO: mean 3, unbiased std sqrt(((-2)^2 + (-1)^2 + 3^2) / 2) = sqrt(7)
    ppo_group_advantages(r, 2, 3, PPO_ADV_GRPO, 1, a);
    double sd = sqrt(7.0) + 1e-4;
    CHECK(fabs(a[0] - (-2.0 / sd)) < 1e-6 && fabs(a[1] - (-1.0 / sd)) < 1e-6 &&
          fabs(a[2] - 3.0 / sd) < 1e-6);
    CHECK(a[3] == 0.0f && a[4] == 0.0f && a[5] == 0.0f);   // equal rewards: no signal
    // without the std: r - mean
    ppo_group_advantages(r, 2, 3, PPO_ADV_GRPO, 0, a);
    CHECK(a[0] == -2.0f && a[1] == -1.0f && a[2] == 3.0f && a[3] == 0.0f);
    // RLOO: r_i - mean of the others: 1 - 4, 2 - 3.5, 6 - 1.5
    ppo_group_advantages(r, 2, 3, PPO_ADV_RLOO, 1, a);
    CHECK(a[0] == -3.0f && a[1] == -1.5f && a[2] == 4.5f && a[5] == 0.0f);
    // RLOO is (g / (g - 1)) times the mean-centred advantage
    CHECK(fabs(a[2] - 1.5 * 3.0) < 1e-6);
    // a group of one has no baseline to compare with: 0
    float one[1] = {5}, a1[1] = {9};
    ppo_group_advantages(one, 1, 1, PPO_ADV_RLOO, 1, a1);
    CHECK(a1[0] == 0.0f);
    ppo_group_advantages(one, 1, 1, PPO_ADV_GRPO, 1, a1);
    CHECK(a1[0] == 0.0f);
}

static void test_kl_loss(void) {
    // beta 0.5, weights 1/2 on two tokens, the third masked out
    float logp[3] = {-1.0f, -2.0f, -0.3f}, ref[3] = {-1.5f, -1.0f, -9.0f}, w[3] = {0.5f, 0.5f, 0};
    float d[3] = {0.25f, 0, 7};   // added to what is there
    double l = ppo_kl_loss(logp, ref, w, 3, 0.5f, d);
    // k3(d) = e^d - 1 - d with d = ref - logp = -0.5 and 1
    double k0 = exp(-0.5) - 1 + 0.5, k1 = exp(1.0) - 1 - 1;
    CHECK(fabs(l - 0.5 * 0.5 * (k0 + k1)) < 1e-7);
    CHECK(fabs(d[0] - (0.25 + 0.25 * (1 - exp(-0.5)))) < 1e-6);
    CHECK(fabs(d[1] - 0.25 * (1 - exp(1.0))) < 1e-6);
    CHECK(d[2] == 7.0f);
    // central differences of the loss in logp
    for (int i = 0; i < 2; i++) {
        float lp[3], lm[3];
        memcpy(lp, logp, sizeof lp);
        memcpy(lm, logp, sizeof lm);
        lp[i] += 1e-3f;
        lm[i] -= 1e-3f;
        double fd = (ppo_kl_loss(lp, ref, w, 3, 0.5f, NULL) -
                     ppo_kl_loss(lm, ref, w, 3, 0.5f, NULL)) / (lp[i] - lm[i]);
        float g[3] = {0, 0, 0};
        ppo_kl_loss(logp, ref, w, 3, 0.5f, g);
        CHECK(fabs(fd - g[i]) < 1e-3);
    }
    // equal to the reference: loss and gradient exactly 0
    float z[2] = {0, 0};
    CHECK(ppo_kl_loss(ref, ref, w, 2, 0.5f, z) == 0.0 && z[0] == 0.0f && z[1] == 0.0f);
}

static void test_reward_parts(void) {
    // three models' scores of two episodes, one row per model
    float sc[6] = {1, -2, 3, 0, 2, 1}, out[2];
    ppo_combine_scores(sc, 3, 2, 2, 0, out);
    CHECK(out[0] == 2.0f && fabsf(out[1] - (-1.0f / 3.0f)) < 1e-7f);
    ppo_combine_scores(sc, 3, 2, 2, 1, out);
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
    ppo_combine_scores(sc, 1, 2, 2, 1, out);   // one model: its score
    CHECK(out[0] == 1.0f && out[1] == -2.0f);
    // over-length: zone 4 of 16 tokens, coefficient 2
    CHECK(ppo_overlong_penalty(12, 16, 4, 2.0) == 0.0);
    CHECK(ppo_overlong_penalty(13, 16, 4, 2.0) == 0.5);
    CHECK(ppo_overlong_penalty(16, 16, 4, 2.0) == 2.0);
    CHECK(ppo_overlong_penalty(15, 16, 0, 2.0) == 0.0);
    CHECK(ppo_overlong_penalty(16, 16, 0, 2.0) == 2.0);
    // running normalisation: two batches give the moments of all four values
    PpoRunningMoments m = {0};
    float a[2] = {1, 3}, b[2] = {5, 7}, o[2];
    ppo_running_normalize(&m, a, 2, o);
    CHECK(m.count == 2 && m.mean == 2.0 && fabs(m.m2 - 2.0) < 1e-12);
    CHECK(fabs(o[0] - (-1.0 / sqrt(2.0 + 1e-8))) < 1e-6);
    ppo_running_normalize(&m, b, 2, o);
    // {1,3,5,7}: mean 4, sum of squares 20, unbiased variance 20/3
    CHECK(m.count == 4 && fabs(m.mean - 4.0) < 1e-12 && fabs(m.m2 - 20.0) < 1e-12);
    CHECK(fabs(o[1] - 3.0 / sqrt(20.0 / 3 + 1e-8)) < 1e-6);
}

int main(void) {
    test_case("KL estimators k1 and k3 (hand values, zero at equality)", test_kl_estimators);
    test_case("per-token rewards, score shaping (missing end token, clipping)",
              test_rewards_and_score);
    test_case("GAE against hand-computed advantages and returns (four lambda/gamma cases)",
              test_gae);
    test_case("masked whitening (hand values, unbiased variance, single value)", test_whiten);
    test_case("explained variance", test_explained_variance);
    test_case("clipped policy loss: hand values, d/dlogp, clip fraction, approx KL, NaN",
              test_policy_loss_hand);
    test_case("clipped policy loss: gradient vs central differences", test_policy_loss_fd);
    test_case("clipped value loss: hand values, d/dv, central differences", test_value_loss_hand);
    test_case("adaptive KL controller (hand values) and fixed beta", test_kl_controller);
    test_case("EMA of weights", test_ema);
    test_case("PPO d/dlogp + ptx LM loss through model_backward vs finite differences",
              test_policy_gradient_through_model);
    test_case("clipped value loss d/dv through model_backward vs finite differences",
              test_value_gradient_through_model);
    test_case("policy equal to the frozen reference: KL exactly 0, ratio exactly 1",
              test_policy_equals_reference);
    test_case("GRPO (with and without the std) and RLOO advantages by hand", test_group_advantages);
    test_case("k3 KL loss term: hand values, d/dlogp, central differences", test_kl_loss);
    test_case("reward ensemble mean/min, over-length penalty, running normalisation by hand",
              test_reward_parts);
    return test_summary();
}
