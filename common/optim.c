#include "optim.h"
#include "util.h"
#include <math.h>

float lr_at(const LrSchedule *s, float peak, int64_t step) {
    if (s->warmup_steps > 0 && step < s->warmup_steps)
        return peak * (float)(step + 1) / (float)s->warmup_steps;
    if (s->kind == LR_CONSTANT) return peak;
    float floor = peak * s->min_lr_frac;
    int64_t span = s->total_steps - s->warmup_steps;
    if (span <= 0 || step >= s->total_steps) return floor;
    double frac = (double)(step - s->warmup_steps) / (double)span;
    return floor + (peak - floor) * 0.5f * (float)(1.0 + cos(M_PI * frac));
}

// Summed in 1024 fixed chunks, then the chunks in order: an OpenMP reduction would combine the
// threads' partial sums in arrival order, and the last bit of the norm (hence of the clipped
// update) would change from run to run, breaking bit-exact resume.
#define NORM_CHUNKS 1024
float optim_grad_norm(const Model *m) {
    double part[NORM_CHUNKS];
    const float *g = m->grads_memory;
    int64_t n = (int64_t)m->num_params, per = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < NORM_CHUNKS; c++) {
        int64_t i0 = c * per, i1 = i0 + per < n ? i0 + per : n;
        double s = 0.0;
        for (int64_t i = i0; i < i1; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < NORM_CHUNKS; c++) s += part[c];
    return (float)sqrt(s);
}

static int param_decays(int p) {
    return p == P_WTE || p == P_WPE || p == P_QKVW || p == P_ATTPROJW || p == P_FCW ||
           p == P_FCPROJW || p == P_SCOREW;
}

float optim_adamw_step(Model *m, const AdamWConfig *c, float lr, int64_t t) {
    if (!m->trainable) DIE("optimizer step on a model without gradients");
    float norm = optim_grad_norm(m);
    float gscale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) gscale = c->grad_clip / (norm + 1e-6f);
    float bc1 = 1.0f - powf(c->beta1, (float)t), bc2 = 1.0f - powf(c->beta2, (float)t);
    size_t base = 0;
    for (int p = 0; p < MODEL_NUM_PARAMS; p++) {
        int64_t n = (int64_t)m->param_sizes[p];
        float wd = param_decays(p) ? c->weight_decay : 0.0f;
        float *w = m->params_memory + base, *g = m->grads_memory + base;
        float *mm = m->m_memory + base, *vv = m->v_memory + base;
        #pragma omp parallel for simd schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float gi = g[i] * gscale;
            float mi = c->beta1 * mm[i] + (1.0f - c->beta1) * gi;
            float vi = c->beta2 * vv[i] + (1.0f - c->beta2) * gi * gi;
            mm[i] = mi; vv[i] = vi;
            float update = (mi / bc1) / (sqrtf(vi / bc2) + c->eps);
            w[i] -= lr * (update + wd * w[i]);
        }
        base += (size_t)n;
    }
    return norm;
}
