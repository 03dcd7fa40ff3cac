// ppo: the arithmetic of PPO as used for RLHF (Schulman et al. 2017; Ziegler et al. 2019;
// Ouyang et al. 2022): KL-shaped per-token rewards, generalised advantage estimation, whitening,
// the clipped policy and value losses with their gradients, KL estimators, the adaptive KL
// controller and an exponential moving average of weights. Pure functions over caller-owned
// arrays: no model, no allocation, no global state. The ppo program (ppo/) feeds them the
// per-token log-probabilities and values of the models and hands the gradients to model_backward.
//
// Letters: n tokens of one response (t = 0 .. n-1: the t-th generated token, sampled in state
// s_t = prompt + response[0..t)); logp_t = log pi(a_t | s_t) under the policy, ref_t the same
// under the frozen reference (SFT) model, V_t = V(s_t) the value model's prediction.
//
// Masked arrays: the loss functions take a weight per entry (w_t >= 0; 0 = not a response token,
// whose other inputs are ignored and whose gradient is 0), so that they work directly on the
// models' right-padded (B,T) layout. Sums are accumulated in double.
#ifndef PPO_H
#define PPO_H
#include <math.h>
#include <stddef.h>
#include <stdint.h>

// KL estimators of KL(pi || pi_ref) from one sample a ~ pi, with d = ref - logp (Schulman's
// "Approximating KL divergence"): k1 = -d (the log-ratio: unbiased, can be negative) and
// k3 = (e^d - 1) - d (unbiased, always >= 0, lower variance). Both are exactly 0 when logp == ref.
static inline double ppo_kl_k1(float logp, float ref) { return (double)logp - (double)ref; }
static inline double ppo_kl_k3(float logp, float ref) {
    double d = (double)ref - (double)logp;
    return expm1(d) - d;
}

// The reward-model score as used for the reward: minus missing_eos_penalty when the response did
// not end with the end token (penalty 0: off), then clipped to [-clip, clip] (clip <= 0: off).
float ppo_shape_score(float score, int ended, float missing_eos_penalty, float clip);

// Per-token rewards of one response: rewards[t] = -beta * (logp[t] - ref[t]), and the shaped
// score is added at the last token t = n-1. Returns the non-score reward sum_t -beta*(logp-ref).
double ppo_rewards(const float *logp, const float *ref, int n, float beta, float score,
                   float *rewards);

// Generalised advantage estimation over one response, the episode ending after token n-1
// (V_n = 0):  delta_t = r_t + gamma V_{t+1} - V_t,  A_t = delta_t + gamma lam A_{t+1},
// returns R_t = A_t + V_t (the value model's regression target). adv and ret may not alias the
// inputs.
void ppo_gae(const float *rewards, const float *values, int n, float gamma, float lam, float *adv,
             float *ret);

// Mean and unbiased variance (divided by count - 1; 0 when count < 2) of x over the entries
// whose mask is non-zero; returns the count. mask NULL: every entry.
int64_t ppo_masked_moments(const float *x, const uint8_t *mask, int64_t n, double *mean,
                           double *var);

// Whitening in place over the masked entries: x = (x - mean) / sqrt(var + 1e-8) with the
// moments above (as TRL's masked_whiten); shift_mean = 0 adds the mean back. Unmasked entries
// are left as they are.
void ppo_whiten(float *x, const uint8_t *mask, int64_t n, int shift_mean);

// 1 - Var(target - pred) / Var(target) over the masked entries (NaN when Var(target) is 0).
double ppo_explained_variance(const float *pred, const float *target, const uint8_t *mask,
                              int64_t n);

typedef struct {
    double loss;          // sum_t w_t * max(-A_t r_t, -A_t clip(r_t, 1-eps, 1+eps))
    double clip_frac;     // sum of w over tokens where the clipped term is strictly larger / sum w
    double approx_kl;     // sum w * 0.5 (logp - old)^2 / sum w  (TRL's approxkl)
    double ratio_mean;    // sum w * r / sum w
    double max_ratio_dev; // max |r - 1| over the weighted tokens
    int64_t n_tokens;     // entries with w > 0
    int64_t n_nonfinite;  // of those, tokens whose ratio or loss term is NaN or infinite
} PpoPolicyStats;

// The clipped surrogate objective, r_t = exp(logp_t - old_t). dlogp (may be NULL) receives
// d loss / d logp_t: -w_t A_t r_t where the unclipped term is the larger (or equal), else 0 (the
// clipped term does not depend on logp there). With w = 1/(tokens of the minibatch) the loss is
// the per-token mean. Entries with w <= 0 get dlogp 0.
void ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, const float *w,
                     int64_t n, float clip, float *dlogp, PpoPolicyStats *st);

typedef struct {
    double loss;          // sum_t w_t * 0.5 * max((v - R)^2, (v_clip - R)^2)
    double clip_frac;     // sum of w where the clipped term is strictly larger / sum w
    int64_t n_tokens, n_nonfinite;
} PpoValueStats;

// The clipped value loss: v_clip = old + clamp(v - old, -clip, clip) (clip <= 0: no clipping,
// the loss is 0.5 (v - R)^2). dv (may be NULL) receives d loss / d v_t: w_t (v_t - R_t) where the
// unclipped term is the larger (or equal), else 0.
void ppo_value_loss(const float *v, const float *old_v, const float *ret, const float *w, int64_t n,
                    float clip, float *dv, PpoValueStats *st);

// KL coefficient beta: fixed, or the adaptive controller of Ziegler et al. (2019):
//   e = clamp(KL / target - 1, -0.2, 0.2);  beta <- beta * (1 + e * n_steps / horizon)
// where KL is the mean over the iteration's episodes of sum_t (logp - ref) and n_steps the
// number of episodes (so the controller moves by the same amount per episode, whatever the batch).
typedef struct {
    double beta;
    int adaptive;
    double target, horizon;
} PpoKlController;
void ppo_kl_update(PpoKlController *c, double kl, int64_t n_steps);

// Critic-free advantages (one scalar per episode, given to each of its response tokens) from the
// rewards r of n_groups groups of g completions of the same prompt, stored group after group:
//   PPO_ADV_GRPO  A_i = (r_i - mean) / (std + 1e-4), std the group's unbiased standard deviation
//                 (Shao et al. 2024, as TRL); scale_std = 0: A_i = r_i - mean (Dr. GRPO)
//   PPO_ADV_RLOO  A_i = r_i - (sum_{j != i} r_j) / (g - 1), the leave-one-out baseline
//                 (Ahmadian et al. 2024); needs g >= 2
// With g = 1 GRPO gives 0 (a lone completion has no group to compare with).
enum { PPO_ADV_GRPO = 1, PPO_ADV_RLOO = 2 };
void ppo_group_advantages(const float *r, int64_t n_groups, int g, int kind, int scale_std,
                          float *adv);

// The KL penalty as a loss term (GRPO): beta * sum_t w_t k3(logp_t, ref_t), returned, with
// d/dlogp_t = beta w_t (1 - e^(ref_t - logp_t)) added to dlogp (entries with w <= 0 untouched).
double ppo_kl_loss(const float *logp, const float *ref, const float *w, int64_t n, float beta,
                   float *dlogp);

// Reward ensemble: out[b] = the mean (or, min = 1, the minimum) over k of scores[k * stride + b],
// b < n: K reward models' scores of n episodes, one row per model.
void ppo_combine_scores(const float *scores, int K, int64_t stride, int64_t n, int min,
                        float *out);

// The over-length penalty (DAPO's soft one): 0 up to max_new - zone tokens, then rising linearly
// to coef at max_new tokens (zone <= 0: coef for a response of max_new tokens, else 0).
double ppo_overlong_penalty(int len, int max_new, int zone, double coef);

// Running reward normalisation: the count, mean and sum of squared deviations of every reward
// seen (Chan et al.'s pairwise update, in double); ppo_running_normalize adds x[0..n) to them,
// then writes (x - mean) / sqrt(var + 1e-8) with the updated unbiased variance.
typedef struct { double count, mean, m2; } PpoRunningMoments;
void ppo_running_normalize(PpoRunningMoments *m, const float *x, int64_t n, float *out);

// ema = decay * ema + (1 - decay) * w over n floats (parallel; the same result for any thread
// count: element-wise).
void ppo_ema_update(float *ema, const float *w, int64_t n, float decay);
#endif
