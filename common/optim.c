#include "optim.h"
#include "util.h"
#include <math.h>
#include <string.h>

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
// update) would change from run to run, breaking bit-exact resume. Inside a chunk, eight double
// lanes in a fixed order: one serial double sum is bound by the add latency (4 cycles per float,
// ~3x slower than streaming the gradients from memory).
#define NORM_CHUNKS 1024
typedef float v8f __attribute__((vector_size(32)));
typedef double v8d __attribute__((vector_size(64)));
float optim_grad_norm(const Model *m) {
    double part[NORM_CHUNKS];
    const float *g = m->grads_memory;
    int64_t n = (int64_t)m->num_params, per = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
    #pragma omp parallel for schedule(static)
    for (int c = 0; c < NORM_CHUNKS; c++) {
        int64_t i0 = c * per, i1 = i0 + per < n ? i0 + per : n, i = i0;
        v8d acc = {0};
        for (; i + 8 <= i1; i += 8) {
            v8f x;
            memcpy(&x, g + i, sizeof x);
            v8d d = __builtin_convertvector(x, v8d);
            acc += d * d;
        }
        double s = 0.0;
        for (int j = 0; j < 8; j++) s += acc[j];
        for (; i < i1; i++) s += (double)g[i] * g[i];
        part[c] = s;
    }
    double s = 0.0;
    for (int c = 0; c < NORM_CHUNKS; c++) s += part[c];
    return (float)sqrt(s);
}

static int param_decays(int p) {
    return p == P_WTE || p == P_WPE || p == P_QKVW || p == P_ATTPROJW || p == P_FCW ||
           p == P_FCPROJW || p == P_SCOREW || p == P_LMHEADW;
}

// One tensor's AdamW constants, hoisted so the loop has one sqrt and one division per element:
// with two divisions and a sqrt it was bound by the divider rather than by memory (28
// bytes/element).
typedef struct { float step, inv_sqrt_bc2, b1, b2, eps, decay, gscale; } AdamWConsts;

static AdamWConsts adamw_consts(const AdamWConfig *c, float lr, int64_t t, float gscale,
                                int decays) {
    float bc1 = 1.0f - powf(c->beta1, (float)t), bc2 = 1.0f - powf(c->beta2, (float)t);
    return (AdamWConsts){.step = lr / bc1, .inv_sqrt_bc2 = 1.0f / sqrtf(bc2), .b1 = c->beta1,
                         .b2 = c->beta2, .eps = c->eps,
                         .decay = 1.0f - lr * (decays ? c->weight_decay : 0.0f), .gscale = gscale};
}

// As torch.optim.AdamW: w *= 1 - lr wd; w -= (lr / bc1) m / (sqrt(v) / sqrt(bc2) + eps).
// A worksharing loop without its own region (and no barrier at its end): called inside one.
static void adamw_loop(float *w, const float *g, float *mm, float *vv, int64_t n,
                       const AdamWConsts *k) {
    float step = k->step, inv_sqrt_bc2 = k->inv_sqrt_bc2, b1 = k->b1, b2 = k->b2, eps = k->eps;
    float decay = k->decay, gscale = k->gscale;
    #pragma omp for simd schedule(static) nowait
    for (int64_t i = 0; i < n; i++) {
        float gi = g[i] * gscale;
        float mi = b1 * mm[i] + (1.0f - b1) * gi;
        float vi = b2 * vv[i] + (1.0f - b2) * gi * gi;
        mm[i] = mi; vv[i] = vi;
        w[i] = w[i] * decay - step * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

void optim_adamw_update(float *w, const float *g, float *mm, float *vv, int64_t n,
                        const AdamWConfig *c, float lr, int64_t t, float gscale, int decays) {
    AdamWConsts k = adamw_consts(c, lr, t, gscale, decays);
    #pragma omp parallel
    adamw_loop(w, g, mm, vv, n, &k);
}

float optim_adamw_step(Model *m, const AdamWConfig *c, float lr, int64_t t) {
    if (!m->grads_memory) DIE("optimizer step on a model without gradients (frozen or inference)");
    float norm = optim_grad_norm(m);
    float gscale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) gscale = c->grad_clip / (norm + 1e-6f);
    // every tensor in one parallel region (a region per tensor was ~20 hand-overs per step,
    // each waiting for a sleeping thread under OMP_WAIT_POLICY=passive); elementwise, so the
    // bits do not depend on how the loops are split
    AdamWConsts k[MODEL_NUM_PARAMS];
    size_t base[MODEL_NUM_PARAMS], b = 0;
    for (int p = 0; p < MODEL_NUM_PARAMS; p++) {
        k[p] = adamw_consts(c, lr, t, gscale, param_decays(p));
        base[p] = b;
        b += m->param_sizes[p];
    }
    #pragma omp parallel
    for (int p = 0; p < MODEL_NUM_PARAMS; p++)
        adamw_loop(m->params_memory + base[p], m->grads_memory + base[p], m->m_memory + base[p],
                   m->v_memory + base[p], (int64_t)m->param_sizes[p], &k[p]);
    return norm;
}

int optim_adamw_validate(double beta1, double beta2, double eps, char *err, size_t errlen) {
    if (!(beta1 >= 0 && beta1 < 1))
        return util_err(err, errlen, "train.beta1 %g: AdamW needs 0 <= beta1 < 1", beta1);
    if (!(beta2 >= 0 && beta2 < 1))
        return util_err(err, errlen, "train.beta2 %g: AdamW needs 0 <= beta2 < 1", beta2);
    if (!((float)eps > 0))
        return util_err(err, errlen,
                        "train.eps %g: AdamW needs eps > 0 (as a 32-bit float: at least 1e-38)",
                        eps);
    return 0;
}
