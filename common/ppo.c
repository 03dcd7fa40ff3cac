// PPO arithmetic: rewards, GAE, whitening, clipped losses, KL controller, EMA. See ppo.h.
#include "ppo.h"
#include <math.h>

float ppo_shape_score(float score, int ended, float missing_eos_penalty, float clip) {
    if (!ended && missing_eos_penalty != 0.0f) score -= missing_eos_penalty;
    if (clip > 0.0f) score = score > clip ? clip : score < -clip ? -clip : score;
    return score;
}

double ppo_rewards(const float *logp, const float *ref, int n, float beta, float score,
                   float *rewards) {
    double nonscore = 0.0;
    for (int t = 0; t < n; t++) {
        rewards[t] = (float)(-(double)beta * ppo_kl_k1(logp[t], ref[t]));
        nonscore += rewards[t];
    }
    if (n > 0) rewards[n - 1] += score;
    return nonscore;
}

void ppo_gae(const float *rewards, const float *values, int n, float gamma, float lam, float *adv,
             float *ret) {
    double last = 0.0;
    for (int t = n - 1; t >= 0; t--) {
        double next = t + 1 < n ? values[t + 1] : 0.0;   // the episode ends after the last token
        double delta = (double)rewards[t] + (double)gamma * next - (double)values[t];
        last = delta + (double)gamma * (double)lam * last;
        adv[t] = (float)last;
        ret[t] = (float)(last + (double)values[t]);
    }
}

int64_t ppo_masked_moments(const float *x, const uint8_t *mask, int64_t n, double *mean,
                           double *var) {
    double s = 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) { s += x[i]; k++; }
    double m = k ? s / (double)k : 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) { double d = x[i] - m; ss += d * d; }
    *mean = m;
    *var = k > 1 ? ss / (double)(k - 1) : 0.0;
    return k;
}

void ppo_whiten(float *x, const uint8_t *mask, int64_t n, int shift_mean) {
    double mean, var;
    if (ppo_masked_moments(x, mask, n, &mean, &var) == 0) return;
    double inv = 1.0 / sqrt(var + 1e-8);
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i])
            x[i] = (float)(((double)x[i] - mean) * inv + (shift_mean ? 0.0 : mean));
}

double ppo_explained_variance(const float *pred, const float *target, const uint8_t *mask,
                              int64_t n) {
    double mt, vt;
    if (ppo_masked_moments(target, mask, n, &mt, &vt) < 2 || vt == 0.0) return NAN;
    // variance of the residual, with the same (unbiased) normalisation
    double s = 0.0, ss = 0.0;
    int64_t k = 0;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) { s += (double)target[i] - pred[i]; k++; }
    double m = s / (double)k;
    for (int64_t i = 0; i < n; i++)
        if (!mask || mask[i]) { double d = (double)target[i] - pred[i] - m; ss += d * d; }
    return 1.0 - (ss / (double)(k - 1)) / vt;
}

void ppo_policy_loss(const float *logp, const float *old_logp, const float *adv, const float *w,
                     int64_t n, float clip, float *dlogp, PpoPolicyStats *st) {
    double loss = 0.0, wsum = 0.0, wclip = 0.0, kl = 0.0, rsum = 0.0, maxdev = 0.0;
    int64_t k = 0, bad = 0;
    double lo = 1.0 - (double)clip, hi = 1.0 + (double)clip;
    for (int64_t i = 0; i < n; i++) {
        if (!(w[i] > 0.0f)) { if (dlogp) dlogp[i] = 0.0f; continue; }
        double d = (double)logp[i] - (double)old_logp[i];
        double r = exp(d), a = adv[i];
        double rc = r < lo ? lo : r > hi ? hi : r;
        double pg1 = -a * r, pg2 = -a * rc;
        int clipped = pg2 > pg1;   // the clipped term is the max: its gradient w.r.t. logp is 0
        double term = clipped ? pg2 : pg1;
        if (!isfinite(r) || !isfinite(term)) bad++;
        loss += w[i] * term;
        wsum += w[i];
        if (clipped) wclip += w[i];
        kl += w[i] * 0.5 * d * d;
        rsum += w[i] * r;
        if (fabs(r - 1.0) > maxdev || isnan(r)) maxdev = isnan(r) ? NAN : fabs(r - 1.0);
        if (dlogp) dlogp[i] = clipped ? 0.0f : (float)(w[i] * pg1);   // d(-a e^d)/dd = -a r
        k++;
    }
    if (st) {
        st->loss = loss;
        st->clip_frac = wsum > 0 ? wclip / wsum : 0.0;
        st->approx_kl = wsum > 0 ? kl / wsum : 0.0;
        st->ratio_mean = wsum > 0 ? rsum / wsum : 0.0;
        st->max_ratio_dev = maxdev;
        st->n_tokens = k;
        st->n_nonfinite = bad;
    }
}

void ppo_value_loss(const float *v, const float *old_v, const float *ret, const float *w, int64_t n,
                    float clip, float *dv, PpoValueStats *st) {
    double loss = 0.0, wsum = 0.0, wclip = 0.0;
    int64_t k = 0, bad = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!(w[i] > 0.0f)) { if (dv) dv[i] = 0.0f; continue; }
        double e1 = (double)v[i] - ret[i], l1 = e1 * e1;
        int clipped = 0;
        double term = l1;
        if (clip > 0.0f) {
            double dd = (double)v[i] - old_v[i];
            dd = dd < -clip ? -clip : dd > clip ? clip : dd;
            double e2 = (double)old_v[i] + dd - ret[i], l2 = e2 * e2;
            if (l2 > l1) { clipped = 1; term = l2; }   // v is outside the clip range: no gradient
        }
        if (!isfinite(term)) bad++;
        loss += w[i] * 0.5 * term;
        wsum += w[i];
        if (clipped) wclip += w[i];
        if (dv) dv[i] = clipped ? 0.0f : (float)(w[i] * e1);
        k++;
    }
    if (st) {
        st->loss = loss;
        st->clip_frac = wsum > 0 ? wclip / wsum : 0.0;
        st->n_tokens = k;
        st->n_nonfinite = bad;
    }
}

void ppo_kl_update(PpoKlController *c, double kl, int64_t n_steps) {
    if (!c->adaptive || !(c->target > 0) || !(c->horizon > 0) || !isfinite(kl)) return;
    double e = kl / c->target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    c->beta *= 1.0 + e * (double)n_steps / c->horizon;
}

void ppo_ema_update(float *ema, const float *w, int64_t n, float decay) {
    float a = 1.0f - decay;
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) ema[i] = decay * ema[i] + a * w[i];
}

void ppo_group_advantages(const float *r, int64_t n_groups, int g, int kind, int scale_std,
                          float *adv) {
    for (int64_t k = 0; k < n_groups; k++) {
        const float *x = r + k * g;
        float *a = adv + k * g;
        double sum = 0.0, ss = 0.0;
        for (int i = 0; i < g; i++) sum += x[i];
        double mean = sum / g;
        for (int i = 0; i < g; i++) ss += ((double)x[i] - mean) * ((double)x[i] - mean);
        double sd = g > 1 ? sqrt(ss / (g - 1)) : 0.0;
        for (int i = 0; i < g; i++) {
            double v;
            if (kind == PPO_ADV_RLOO) v = g > 1 ? x[i] - (sum - x[i]) / (g - 1) : 0.0;
            else v = scale_std ? (x[i] - mean) / (sd + 1e-4) : x[i] - mean;
            a[i] = (float)v;
        }
    }
}

double ppo_kl_loss(const float *logp, const float *ref, const float *w, int64_t n, float beta,
                   float *dlogp) {
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        if (w[i] <= 0.0f) continue;
        loss += (double)w[i] * ppo_kl_k3(logp[i], ref[i]);
        if (dlogp)
            dlogp[i] += (float)((double)beta * w[i] * -expm1((double)ref[i] - (double)logp[i]));
    }
    return (double)beta * loss;
}

void ppo_combine_scores(const float *scores, int K, int64_t stride, int64_t n, int min,
                        float *out) {
    for (int64_t b = 0; b < n; b++) {
        double acc = scores[b];
        for (int k = 1; k < K; k++) {
            double v = scores[k * stride + b];
            acc = min ? (v < acc ? v : acc) : acc + v;
        }
        out[b] = (float)(min ? acc : acc / K);
    }
}

double ppo_overlong_penalty(int len, int max_new, int zone, double coef) {
    if (zone <= 0) return len >= max_new ? coef : 0.0;
    int start = max_new - zone;
    if (len <= start) return 0.0;
    double f = (double)(len - start) / zone;
    return coef * (f > 1.0 ? 1.0 : f);
}

void ppo_running_normalize(PpoRunningMoments *m, const float *x, int64_t n, float *out) {
    if (n <= 0) return;
    double s = 0.0, ss = 0.0;
    for (int64_t i = 0; i < n; i++) s += x[i];
    double bm = s / (double)n;
    for (int64_t i = 0; i < n; i++) ss += ((double)x[i] - bm) * ((double)x[i] - bm);
    double tot = m->count + (double)n, d = bm - m->mean;
    m->m2 += ss + d * d * m->count * (double)n / tot;
    m->mean += d * (double)n / tot;
    m->count = tot;
    double var = m->count > 1 ? m->m2 / (m->count - 1) : 0.0, sd = sqrt(var + 1e-8);
    for (int64_t i = 0; i < n; i++) out[i] = (float)(((double)x[i] - m->mean) / sd);
}
