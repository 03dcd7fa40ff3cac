// AdamW with decoupled weight decay on matrices only, global gradient-norm clipping and
// learning-rate schedules. The optimizer walks the model's flat parameter buffer in one loop per
// parameter group; moments live in the Model (m_memory, v_memory) so checkpoints carry them.
#ifndef OPTIM_H
#define OPTIM_H
#include "model.h"

typedef struct {
    float lr;            // peak learning rate
    float beta1, beta2;  // 0.9, 0.95 (GPT-3 / InstructGPT style)
    float eps;           // 1e-8
    float weight_decay;  // applied to matrices (ndim >= 2) only
    float grad_clip;     // global-norm clip; <= 0 disables
} AdamWConfig;

typedef enum { LR_CONSTANT = 0, LR_COSINE = 1 } LrKind;

typedef struct {
    LrKind kind;
    int64_t warmup_steps;   // linear warmup from 0 over these steps
    int64_t total_steps;    // cosine reaches min_lr here
    float min_lr_frac;      // floor as a fraction of the peak (0.1 = 10%)
} LrSchedule;

// Learning rate for optimizer step `step` (0-based).
float lr_at(const LrSchedule *s, float peak, int64_t step);
// Global L2 norm of all gradients (accumulated in double).
float optim_grad_norm(const Model *m);
// The AdamW settings every trainer reads as train.beta1, train.beta2 and train.eps: betas in [0, 1)
// (1 never forgets: the moments stay at their first value, the bias correction divides by 0),
// eps > 0 as a float (0 divides by 0 where a gradient is 0). -1 with a message naming the key.
int optim_adamw_validate(double beta1, double beta2, double eps, char *err, size_t errlen);
// One AdamW step: clips (if configured), updates params and moments. `t` is the 1-based step
// count used for bias correction. Returns the gradient norm before clipping.
float optim_adamw_step(Model *m, const AdamWConfig *c, float lr, int64_t t);
// The AdamW update of n parameters w with gradients g (times gscale, the clip) and moments mm,
// vv; decays: weight decay applies. optim_adamw_step runs it per parameter slot (lora.c too).
void optim_adamw_update(float *w, const float *g, float *mm, float *vv, int64_t n,
                        const AdamWConfig *c, float lr, int64_t t, float gscale, int decays);
#endif
