// LoRA adapters: low-rank updates beside a frozen base Model's linear layers, as PEFT defines
// them. For a chosen layer with input x (N,in) and output y (N,out):
//     y = base(x) + scale * (dropout(x) A^T) B^T,   A (r,in), B (out,r), scale = lora_alpha / r
// A starts as PEFT's kaiming-uniform (bound 1/sqrt(in)), B at zero (so a new adapter is exactly
// the base). Targets are PEFT's target_modules names: GPT-2 "c_attn" (the fused q|k|v Conv1D, one
// adapter over all 3C outputs), "c_proj" (both attn.c_proj and mlp.c_proj, as PEFT's suffix match),
// "attn.c_proj", "mlp.c_proj", "c_fc"; Llama-style "q_proj", "k_proj", "v_proj", "o_proj",
// "gate_proj", "up_proj", "down_proj" (an adapter on q_proj adds only to q's rows of the fused
// q|k|v product; gate/up likewise). Optionally the scalar head trains as a copy (PEFT's
// modules_to_save ["score"]).
//
// Ownership: a Lora owns its adapter weights, their gradients and AdamW moments, and the
// activations its forward keeps for backward. It borrows nothing: lora_attach stores a pointer
// to it in a Model (the base), which never frees it. A base Model initialised with
// MODEL_TRAIN_FROZEN keeps activations for backward but has no gradients and no moments of its
// own. Any number of Loras may be made for one base config; the one attached at forward time is
// the one used (attach another to switch: e.g. a reward Lora and a value Lora on one base, run
// one after the other). The base's activations are one set: a forward and its backward run with
// the same adapters attached (model_backward stops the program otherwise). The forward flag
// MODEL_NO_LORA runs the base alone (PPO's reference is the policy's base with adapters off).
// Not thread-safe; no global state.
//
// A training step with adapters:
//     model_init(&base, &cfg, B, T, MODEL_TRAIN_FROZEN, ...); load the base's weights
//     lora_init(&lo, &lcfg, &cfg, B * T, 1, ...); lora_init_weights(&lo, seed, base.params.scorew)
//       (or peft_load: peft.h); lora_attach(&base, &lo, ...)
//     lora_zero_grad(&lo); model_forward(&base, &batch, MODEL_DROPOUT, ...);
//     model_backward(&base, ...); lora_adamw_step(&lo, &adamw, lr, step)
// and the reference: model_forward(&base, &batch, MODEL_NO_LORA, ...).
#ifndef LORA_H
#define LORA_H
#include "model.h"
#include "optim.h"
#include <stddef.h>
#include <stdint.h>

#define LORA_MAX_TARGETS 16
#define LORA_MAX_SITES 8

// Where an adapter adds to a block: the four linear products of a layer.
enum { LORA_AT_QKV, LORA_AT_O, LORA_AT_FC, LORA_AT_DOWN };

typedef struct {
    int r;                  // rank, > 0
    float alpha;            // lora_alpha; scale = alpha / r
    float dropout;          // lora_dropout in [0, 1): on the adapter's input, training only
    int n_targets;
    char targets[LORA_MAX_TARGETS][32];   // target_modules, PEFT names
    int train_score;        // the scalar head trains (a copy, modules_to_save ["score"])
    int bias;               // LORA_BIAS_*: PEFT's bias "none", "all" or "lora_only"
    int norms;              // LORA_NORM_* bits: norms trained as copies (PEFT's modules_to_save)
} LoraConfig;

// Norm modules that train beside the adapters (modules_to_save names them: GPT-2 "ln_1", "ln_2",
// "ln_f", weight and bias; Llama-style "input_layernorm", "post_attention_layernorm", "norm", and
// on a base with Qwen3's per-head q/k RMSNorms "q_norm", "k_norm": one head_dim weight a layer,
// shared by every head).
enum { LORA_NORM_1 = 1, LORA_NORM_2 = 2, LORA_NORM_F = 4, LORA_NORM_Q = 8, LORA_NORM_K = 16,
       LORA_NORM_LAST = LORA_NORM_K };
// The modules_to_save name of norm bit `bit` on a base of arch (NULL: GPT-2 has no q/k norms).
const char *lora_norm_name(int arch, int bit);
// One modules_to_save name into cfg: "score" (train_score) or a norm of arch (norms). -1 with
// an error naming it otherwise.
int lora_add_module(LoraConfig *cfg, int arch, const char *name, char *err, size_t errlen);

// PEFT's `bias`: which of the base's biases train beside the adapters. "all": every bias of the
// model (GPT-2: ln_1, c_attn, attn.c_proj, ln_2, c_fc, mlp.c_proj of every layer and ln_f;
// Llama-style: q/k/v where the model has them); "lora_only": the biases of the adapted layers.
enum { LORA_BIAS_NONE = 0, LORA_BIAS_ALL = 1, LORA_BIAS_LORA_ONLY = 2 };
#define LORA_MAX_BIAS 16

// One trained vector kind (a bias, or a norm's weight through modules_to_save; "bias" below names
// them all): the columns [c0, c0 + n) of every layer's row of the base's parameter slot (model.h
// P_*, width floats a layer), or of its one row (the final norm's).
typedef struct {
    char name[40];          // the module after "h.L." / "model.layers.L.", or the whole name
    int slot, layered;
    int64_t width, c0, n;
} LoraBias;

// One adapted linear layer kind (the same in every layer).
typedef struct {
    const char *name;       // the module name after "h.L." / "model.layers.L."
    int at;                 // LORA_AT_*
    int64_t col0, out, in;  // output columns [col0, col0+out) of the product, input width
    int fan_in_fan_out;     // GPT-2 Conv1D: the base weight is [in, out]
} LoraSite;

typedef struct Lora {
    LoraConfig cfg;
    ModelConfig base;       // the base's config (shapes are checked against it)
    float scale;
    int nsite;
    LoraSite site[LORA_MAX_SITES];
    size_t per_layer;       // floats of one layer's A and B over all sites
    size_t num_params;      // L * per_layer (+ C with the score head)
    float *params, *grads, *m, *v;  // one buffer each: layer-major, site, A then B; then score
    float *score, *dscore;  // the score head copy (C) and its gradient, else NULL
    int trainable;
    int64_t max_N;
    float *u;               // (L, nsite, max_N, r): dropout(x) A^T, kept for backward
    float *xd;              // (L, nsite, max_N, in) dropped inputs, only with dropout > 0
    float *du, *dx;         // scratch (max_N, r), (max_N, max in)
    uint64_t seed;          // dropout stream
    uint64_t dropout_call;  // forwards with dropout so far (part of the mask's key)
    int last_drop;          // the last forward applied dropout (its backward follows it)
    // trained biases (cfg.bias): their values in params after the score copy, bias kind by kind,
    // layer-major; the base's own values while these are written into it (lora_bias_install)
    int nbias;
    LoraBias bias[LORA_MAX_BIAS];
    size_t bias_at;         // params offset of the first bias value
    float *bias_orig;       // (bias floats): the base's values, saved while installed
    float *bias_grad[MODEL_NUM_PARAMS];   // a whole slot's gradient where a bias of it trains
} Lora;

// Parses "q_proj,v_proj" (commas, spaces) into cfg->targets. 0 or -1 with a message.
int lora_parse_targets(LoraConfig *cfg, const char *list, char *err, size_t errlen);
// Checks cfg against the base config (rank, alpha, dropout, every target a module of that
// architecture). 0 or -1 with a message naming the problem.
int lora_validate(const LoraConfig *cfg, const ModelConfig *base, char *err, size_t errlen);
// Allocates adapters for batches of up to max_N packed rows (the base's max_B * max_T);
// trainable: gradients, moments and the activations backward needs. Weights start zero.
int lora_init(Lora *lo, const LoraConfig *cfg, const ModelConfig *base, int64_t max_N,
              int trainable, char *err, size_t errlen);
void lora_free(Lora *lo);
// PEFT's initialisation: A kaiming-uniform from seed, B zero, the score copy from base_score.
void lora_init_weights(Lora *lo, uint64_t seed, const float *base_score);
// Bytes lora_init allocates (the memory plan).
size_t lora_memory_bytes(const LoraConfig *cfg, const ModelConfig *base, int64_t max_N,
                         int trainable);
// Parameters of the adapters (A, B and the score copy).
size_t lora_param_count(const LoraConfig *cfg, const ModelConfig *base);

// The base uses lo (NULL: none) from its next forward on. lo's shapes must be the base's.
int lora_attach(Model *base, Lora *lo, char *err, size_t errlen);

// Called by model_forward before the first layer: a new dropout draw when drop (and p > 0).
void lora_begin(Lora *lo, int drop);
// Called by model.c's blocks after the base product `at` of layer l (out rows ld_out floats
// apart); drop: dropout on. And in backward, after the base's input gradient: dout the product's
// gradient rows, dinp += the adapter's share; gradients of A and B accumulate.
void lora_forward(Lora *lo, int l, int at, const float *in, float *out, int64_t ld_out, int64_t N,
                  int drop);
// Inference (KV-cache decoding, generate.c): out += the adapter's share for any number of rows
// (in chunks of max_N through the du scratch), no dropout, nothing kept for backward.
void lora_apply(const Lora *lo, int l, int at, const float *in, float *out, int64_t ld_out,
                int64_t N);
void lora_backward(Lora *lo, int l, int at, const float *in, const float *dout, int64_t ld_out,
                   float *dinp, int64_t N);

void lora_zero_grad(Lora *lo);
// Global L2 norm of the adapter gradients, and one AdamW step on the adapters only (matrices
// decay; clipping over the adapters' norm). Returns the norm before clipping.
float lora_grad_norm(const Lora *lo);
float lora_adamw_step(Lora *lo, const AdamWConfig *c, float lr, int64_t t);

// A and B of (layer, site) inside params (or grads with grad = 1).
float *lora_a(const Lora *lo, int l, int s, int grad);
float *lora_b(const Lora *lo, int l, int s, int grad);

// "none" | "all" | "lora_only" -> *bias; -1 with an error naming s.
int lora_parse_bias(const char *s, int *bias, char *err, size_t errlen);
const char *lora_bias_name(int bias);
// The values of trained bias k in params (layer-major, n floats a layer) and their gradients.
float *lora_bias_values(const Lora *lo, int k, int grad);
// Trained biases in the base (model.c calls these; the base's bias memory is the one the kernels
// read): install writes lo's values in place of the base's (saving them the first time; lo NULL:
// the base's own back), so that a forward with the adapters on uses the trained biases and one
// with them off the base's. *base->bias_in says whose are in. Writes only the base's bias
// values (and lo's saved copy of them).
void lora_bias_install(const Model *base, const Lora *lo);
// After a backward with lo on: the bias gradients of the slots into lo->grads.
void lora_bias_gather(Lora *lo);
// The biases' starting values: the base's (fresh adapters are the base). After lora_init.
void lora_bias_from_base(Lora *lo, const Model *base);

// Adds scale * B A into the base's weights (a plain model afterwards; Conv1D transposed).
void lora_merge(const Lora *lo, Model *base);
// lora_merge in parts, the same bits: the adapters of layer l's product at (LORA_AT_*) into that
// matrix alone, and the trained score head, biases and norms (written over the base's). A base
// loaded matrix by matrix (ckpt_load_weights_each) merges each as it is complete.
void lora_merge_matrix(const Lora *lo, Model *base, int l, int at);
void lora_merge_vectors(const Lora *lo, Model *base);
// dst (initialised with the base's config, any batch size, e.g. for sampling) gets the base's
// weights with lo merged in; the base is untouched. -1 when the shapes differ.
int lora_merge_copy(const Lora *lo, const Model *base, Model *dst, char *err, size_t errlen);
#endif
