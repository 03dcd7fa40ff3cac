// The transformer: sizes, allocation, forward and backward for both block kinds. See model.h.
// Legend: B sequences, T longest sequence, N packed rows, C channels, V vocabulary, L layers,
// NH query heads, KVH key/value heads, hd head size, F SwiGLU width, QKV fused q|k|v row width.
#include "model.h"
#include "kernels.h"
#include "lora.h"
#include "rng.h"
#include "util.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---- block kinds ----
// Everything that differs between GPT-2 and the Llama-style block lives in one BlockKind per
// architecture (model_kind()): config checks, parameter sizes, activation widths, the embedding,
// one layer's forward and backward, the final norm and the tensor names. The rest of this file
// (batch packing, the heads, memory planning, initialisation) is shared and loops through it.

// Per-row widths of one layer's activations; they size the activation slots and the scratch.
typedef struct {
    size_t qkv;       // fused q|k|v row (GPT-2 3C; Llama (NH + 2 KVH) hd)
    size_t atty;      // attention output (GPT-2 C; Llama NH hd)
    size_t fch;       // MLP input projection (GPT-2 4C; Llama 2F gate|up)
    size_t fch_act;   // MLP activation (GPT-2 4C GELU; Llama F SwiGLU)
    size_t ln_mean;   // 1: the norms keep a mean (LayerNorm); 0: RMSNorm
    size_t qk_heads;  // heads normed per row (Qwen3: NH + KVH), else 0
    size_t hd;        // head size
    size_t rope;      // RoPE inverse frequencies (hd/2), else 0
} BlockDims;

// What the Hugging Face config.json of a kind calls the common fields (for error messages).
typedef struct {
    const char *n_layer, *n_head, *n_embd, *max_pos, *eps;
} KindKeys;

typedef struct {
    const char *name;                                  // as the memory plan prints it
    KindKeys keys;
    int (*validate)(const ModelConfig *c, char *err, size_t errlen);  // the kind's own fields
    void (*param_sizes)(const ModelConfig *c, size_t *s);
    BlockDims (*dims)(const ModelConfig *c);
    void (*setup)(Model *m);                           // after allocation; NULL: nothing to do
    void (*embed_forward)(Model *m);                   // tokens -> resid[0]
    void (*embed_backward)(Model *m);                  // dresid -> dwte (and dwpe)
    void (*layer_forward)(Model *m, int l);            // resid[l] -> resid[l+1]
    // on entry dresid = d/d resid[l+1], on return d/d resid[l]
    void (*layer_backward)(Model *m, int l);
    void (*final_forward)(Model *m);                   // resid[L] -> lnf
    void (*final_backward)(Model *m);                  // dln (= d lnf) -> dresid (overwritten)
    int (*tensor_count)(const Model *m);
    // the fp32 product of a layer's matrix in the kind's weight layout (model_product), its
    // decoding counterpart (model_decode_product: kernels.h), and that layout as lowp.h names it
    // (how the narrow copies are converted)
    void (*product)(float *out, const float *inp, const float *weight, const float *bias,
                    int64_t N, int C, int OC, int beta_one);
    void (*decode_product)(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int C, int OC, int beta_one);
    void (*fixed_product)(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one);   // Model.fixed_rows
    LowpLayout layout;
    // tensor i's name and shape, and where it lives: parameter slot and offset into the slot
    void (*tensor)(const Model *m, int i, ModelTensor *t, int *slot, size_t *offset);
} BlockKind;

// A gradient slice of a frozen base is NULL (the kernels then skip that weight's gradient).
static float *GA(float *g, size_t off) { return g ? g + off : NULL; }

// Per-layer activation pointers: trainable models keep every layer for backward; inference-only
// models reuse one layer's buffers (and two alternating residual slots).
static float *layer_slot(const Model *m, float *base, int l, size_t per) {
    return base ? base + (m->trainable ? (size_t)l : 0) * per : NULL;
}
static float *resid_at(const Model *m, int l, size_t NC) {
    return m->resid + (size_t)(m->trainable ? l : (l & 1)) * NC;
}

// One layer's activations in the current batch.
typedef struct {
    float *x, *xo;                  // residual in and out (N,C)
    float *ln1, *ln1m, *ln1r;       // first norm output (N,C), mean (N) or NULL, rstd (N)
    float *qkv, *att, *atty, *rm;   // fused q|k|v, softmax rows, attention output, resid mid
    float *ln2, *ln2m, *ln2r;       // second norm
    float *fch, *fchg;              // MLP projection and activation
    float *qk_in, *qk_rstd;         // Qwen3 q/k norm input and rstd, else NULL
} LayerActs;

static LayerActs layer_acts(const Model *m, int l, const BlockDims *d) {
    size_t N = (size_t)m->N, NC = N * (size_t)m->config.n_embd;
    size_t att = (size_t)m->max_B * m->config.n_head * m->max_T * m->max_T;
    LayerActs a = {
        .x = resid_at(m, l, NC), .xo = resid_at(m, l + 1, NC),
        .ln1 = layer_slot(m, m->ln1, l, NC), .ln1m = layer_slot(m, m->ln1_mean, l, N),
        .ln1r = layer_slot(m, m->ln1_rstd, l, N), .qkv = layer_slot(m, m->qkv, l, N * d->qkv),
        .att = layer_slot(m, m->att, l, att), .atty = layer_slot(m, m->atty, l, N * d->atty),
        .rm = layer_slot(m, m->resmid, l, NC), .ln2 = layer_slot(m, m->ln2, l, NC),
        .ln2m = layer_slot(m, m->ln2_mean, l, N), .ln2r = layer_slot(m, m->ln2_rstd, l, N),
        .fch = layer_slot(m, m->fch, l, N * d->fch),
        .fchg = layer_slot(m, m->fch_gelu, l, N * d->fch_act),
        .qk_in = layer_slot(m, m->qk_in, l, N * d->qk_heads * d->hd),
        .qk_rstd = layer_slot(m, m->qk_rstd, l, N * d->qk_heads)};
    return a;
}

// The attached adapters after the base product `at` of layer l (forward) and after its input
// gradient (backward); nothing when none are on. ld: floats per row of the product.
static void lora_fwd(Model *m, int l, int at, const float *in, float *out, size_t ld) {
    if (m->lora_on) lora_forward(m->lora, l, at, in, out, (int64_t)ld, m->N, m->lora_on > 1);
}
static void lora_bwd(Model *m, int l, int at, const float *in, const float *dout, size_t ld,
                     float *dinp) {
    if (m->lora_on) lora_backward(m->lora, l, at, in, dout, (int64_t)ld, dinp, m->N);
}

// Reduced-precision copies of the matrices (model.h, lowp.h): layer l's matrix w at
// w[l * MODEL_NUM_W + w], the LM head's (when the model has one) in head.
typedef struct ModelLowp ModelLowp;
struct ModelLowp {
    LowpFormat fmt;        // LOWP_BF16 or LOWP_INT8
    int full;              // model_forward reads them too (MODEL_LOWP_FULL)
    int dropped;           // the fp32 matrices are freed (MODEL_LOWP_DROP_FP32)
    LowpMatrix *w;         // (L * MODEL_NUM_W)
    LowpMatrix head;       // (V, C), fmt 0 (empty) without an LM head
    LowpArena arena;       // every copy above, in one block (huge pages where the kernel has them)
};

// whether model_forward's products read the narrow copies
static int full_narrow(const Model *m) { return m->lowp && m->lowp->full; }

// whether model_backward's input gradients go through them too: a frozen base read in full
// (a model whose weights train keeps its fp32 backward, weight gradients included)
static int narrow_back(const Model *m) { return full_narrow(m) && m->trainable != 1; }

// Backward through layer l's matrix w of a frozen model read from its narrow copies: dinp
// [+]= dout W on the narrow weights (no weight gradient: frozen). 0 when the model's products
// are fp32 (the caller's fp32 backward then runs).
static int narrow_backward(const Model *m, int l, int w, float *dinp, float *dbias,
                           const float *dout, int beta_one) {
    if (!narrow_back(m)) return 0;
    const LowpMatrix *lm = &m->lowp->w[(size_t)l * MODEL_NUM_W + w];
    lowp_backward_input(dinp, dout, lm, m->N, beta_one);
    if (dbias)   // a bias trained beside the adapters: the column sums of dout only
        matmul_backward(NULL, NULL, dbias, dout, NULL, NULL, m->N, lm->C, lm->OC);
    return 1;
}

static size_t slot_base(const size_t *sizes, int slot);

// The gradient of parameter slot `slot` (P_*, a bias or a norm's weight): the model's own (NULL
// for a frozen base), or the attached adapters' where they train it (lora.h: LORA_BIAS_*,
// LORA_NORM_*).
static float *dslot(const Model *m, int slot) {
    if (m->lora_on && m->lora->bias_grad[slot]) return m->lora->bias_grad[slot];
    return m->grads_memory ? m->grads_memory + slot_base(m->param_sizes, slot) : NULL;
}

// ---- GPT-2: pre-LN LayerNorm, learned positions, GELU MLP, Conv1D weights [in, out] ----

static int gpt2_validate(const ModelConfig *c, char *err, size_t errlen) {
    if (c->n_embd % c->n_head)
        return util_err(err, errlen, "n_embd (%d) must be divisible by n_head (%d)", c->n_embd,
                        c->n_head);
    if (c->head_dim && c->head_dim != c->n_embd / c->n_head)
        return util_err(err, errlen, "head_dim %d: GPT-2's heads are n_embd / n_head = %d wide",
                        c->head_dim, c->n_embd / c->n_head);
    if (c->n_kv_head && c->n_kv_head != c->n_head)
        return util_err(err, errlen,
                        "num_key_value_heads %d: GPT-2 has no grouped-query attention (n_head %d)",
                        c->n_kv_head, c->n_head);
    if (c->d_ff && c->d_ff != 4 * c->n_embd)
        return util_err(err, errlen, "n_inner %d: the GPT-2 block's MLP is 4 * n_embd = %d wide",
                        c->d_ff, 4 * c->n_embd);
    if (c->untied)
        return util_err(err, errlen,
                        "tie_word_embeddings false: GPT-2's LM head is always tied to wte");
    if (c->qk_norm || c->qkv_bias)
        return util_err(err, errlen, "GPT-2 has neither q/k norms nor a separate q/k/v bias flag");
    if (c->rope_scaling)
        return util_err(err, errlen, "rope_scaling: GPT-2 has learned positions, not RoPE");
    return 0;
}

static void gpt2_param_sizes(const ModelConfig *c, size_t *s) {
    size_t V = (size_t)c->vocab_size, C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    size_t maxT = (size_t)c->max_seq_len;
    s[P_WTE] = V * C;          s[P_WPE] = maxT * C;
    s[P_LN1W] = L * C;         s[P_LN1B] = L * C;
    s[P_QKVW] = L * C * 3 * C; s[P_QKVB] = L * 3 * C;
    s[P_ATTPROJW] = L * C * C; s[P_ATTPROJB] = L * C;
    s[P_LN2W] = L * C;         s[P_LN2B] = L * C;
    s[P_FCW] = L * C * 4 * C;  s[P_FCB] = L * 4 * C;
    s[P_FCPROJW] = L * 4 * C * C; s[P_FCPROJB] = L * C;
    s[P_LNFW] = C;             s[P_LNFB] = C;
    s[P_SCOREW] = c->score_head ? C : 0;
    s[P_QNORMW] = 0; s[P_KNORMW] = 0; s[P_LMHEADW] = 0;
}

static BlockDims gpt2_dims(const ModelConfig *c) {
    size_t C = (size_t)c->n_embd;
    BlockDims d = {.qkv = 3 * C, .atty = C, .fch = 4 * C, .fch_act = 4 * C, .ln_mean = 1,
                   .qk_heads = 0, .hd = C / (size_t)c->n_head, .rope = 0};
    return d;
}

static void gpt2_embed_forward(Model *m) {
    int C = m->config.n_embd;
    encoder_forward(resid_at(m, 0, (size_t)m->N * C), m->row_tok, m->row_pos, m->params.wte,
                    m->params.wpe, m->N, C);
}

static void gpt2_embed_backward(Model *m) {
    const ModelConfig *c = &m->config;
    encoder_backward(m->grads.wte, m->grads.wpe, m->dresid, m->row_tok, m->row_pos, m->N,
                     c->n_embd, c->vocab_size, c->max_seq_len);
}

static void gpt2_layer_forward(Model *m, int l) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    BlockDims d = gpt2_dims(c);
    LayerActs a = layer_acts(m, l, &d);
    int64_t N = m->N;
    int C = c->n_embd, NH = c->n_head;
    size_t NC = (size_t)N * C, lc = (size_t)l * C;
    int nw = full_narrow(m);
    layernorm_forward(a.ln1, a.ln1m, a.ln1r, a.x, p->ln1w + lc, p->ln1b + lc, N, C, c->ln_eps);
    model_product(m, l, MODEL_W_QKV, nw, a.qkv, a.ln1, N, 0);
    lora_fwd(m, l, LORA_AT_QKV, a.ln1, a.qkv, 3 * (size_t)C);
    attention_forward(a.atty, a.att, a.qkv, m->off, m->att_off, m->cur_B, C, NH);
    vec_copy(a.rm, a.x, (int64_t)NC);   // residual fused into the projection's sgemm
    model_product(m, l, MODEL_W_ATTPROJ, nw, a.rm, a.atty, N, 1);
    lora_fwd(m, l, LORA_AT_O, a.atty, a.rm, (size_t)C);
    layernorm_forward(a.ln2, a.ln2m, a.ln2r, a.rm, p->ln2w + lc, p->ln2b + lc, N, C, c->ln_eps);
    model_product(m, l, MODEL_W_FC, nw, a.fch, a.ln2, N, 0);
    lora_fwd(m, l, LORA_AT_FC, a.ln2, a.fch, 4 * (size_t)C);
    gelu_forward(a.fchg, a.fch, (int64_t)N * 4 * C);
    vec_copy(a.xo, a.rm, (int64_t)NC);
    model_product(m, l, MODEL_W_FCPROJ, nw, a.xo, a.fchg, N, 1);
    lora_fwd(m, l, LORA_AT_DOWN, a.fchg, a.xo, (size_t)C);
}

static void gpt2_layer_backward(Model *m, int l) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    ModelParams *g = &m->grads;
    BlockDims d = gpt2_dims(c);
    LayerActs a = layer_acts(m, l, &d);
    int64_t N = m->N;
    int C = c->n_embd, NH = c->n_head;
    size_t NC = (size_t)N * C, lc = (size_t)l * C;
    // MLP: resid[l+1] = rm + gelu(ln2(rm) @ fcw + fcb) @ fcprojw + fcprojb
    vec_zero(m->dfch_gelu, (int64_t)(4 * NC));
    if (!narrow_backward(m, l, MODEL_W_FCPROJ, m->dfch_gelu, GA(dslot(m, P_FCPROJB), lc),
                         m->dresid, 1))
        matmul_backward(m->dfch_gelu, GA(g->fcprojw, lc * 4 * C), GA(dslot(m, P_FCPROJB), lc),
                        m->dresid, a.fchg, p->fcprojw + lc * 4 * C, N, 4 * C, C);
    lora_bwd(m, l, LORA_AT_DOWN, a.fchg, m->dresid, (size_t)C, m->dfch_gelu);
    vec_zero(m->dfch, (int64_t)(4 * NC));
    gelu_backward(m->dfch, a.fch, m->dfch_gelu, (int64_t)N * 4 * C);
    vec_zero(m->dln, (int64_t)(NC));
    if (!narrow_backward(m, l, MODEL_W_FC, m->dln, GA(dslot(m, P_FCB), lc * 4), m->dfch, 1))
        matmul_backward(m->dln, GA(g->fcw, lc * 4 * C), GA(dslot(m, P_FCB), lc * 4), m->dfch, a.ln2,
                        p->fcw + lc * 4 * C, N, C, 4 * C);
    lora_bwd(m, l, LORA_AT_FC, a.ln2, m->dfch, 4 * (size_t)C, m->dln);
    layernorm_backward(m->dresid, GA(dslot(m, P_LN2W), lc), GA(dslot(m, P_LN2B), lc), m->dln,
                       a.rm, p->ln2w + lc, a.ln2m, a.ln2r, N, C);
    // attention: rm = x + attn(ln1(x)) @ attprojw + attprojb
    vec_zero(m->datty, (int64_t)(NC));
    if (!narrow_backward(m, l, MODEL_W_ATTPROJ, m->datty, GA(dslot(m, P_ATTPROJB), lc),
                         m->dresid, 1))
        matmul_backward(m->datty, GA(g->attprojw, lc * C), GA(dslot(m, P_ATTPROJB), lc),
                        m->dresid, a.atty, p->attprojw + lc * C, N, C, C);
    lora_bwd(m, l, LORA_AT_O, a.atty, m->dresid, (size_t)C, m->datty);
    vec_zero(m->dqkv, (int64_t)(3 * NC));
    attention_backward(m->dqkv, m->datt, m->datty, a.qkv, a.att, m->off, m->att_off, m->cur_B, C,
                       NH);
    vec_zero(m->dln, (int64_t)(NC));
    if (!narrow_backward(m, l, MODEL_W_QKV, m->dln, GA(dslot(m, P_QKVB), lc * 3), m->dqkv, 1))
        matmul_backward(m->dln, GA(g->qkvw, lc * 3 * C), GA(dslot(m, P_QKVB), lc * 3), m->dqkv,
                        a.ln1, p->qkvw + lc * 3 * C, N, C, 3 * C);
    lora_bwd(m, l, LORA_AT_QKV, a.ln1, m->dqkv, 3 * (size_t)C, m->dln);
    layernorm_backward(m->dresid, GA(dslot(m, P_LN1W), lc), GA(dslot(m, P_LN1B), lc), m->dln,
                       a.x, p->ln1w + lc, a.ln1m, a.ln1r, N, C);
}

static void gpt2_final_forward(Model *m) {
    const ModelConfig *c = &m->config;
    int C = c->n_embd;
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, resid_at(m, c->n_layer, (size_t)m->N * C),
                      m->params.lnfw, m->params.lnfb, m->N, C, c->ln_eps);
}

static void gpt2_final_backward(Model *m) {
    const ModelConfig *c = &m->config;
    int C = c->n_embd;
    size_t NC = (size_t)m->N * C;
    vec_zero(m->dresid, (int64_t)(NC));
    layernorm_backward(m->dresid, dslot(m, P_LNFW), dslot(m, P_LNFB), m->dln,
                       resid_at(m, c->n_layer, NC), m->params.lnfw, m->lnf_mean, m->lnf_rstd,
                       m->N, C);
}

static int gpt2_tensor_count(const Model *m) {
    return 2 + 12 * m->config.n_layer + 2 + (m->config.score_head ? 1 : 0);
}

static void tensor_shape(ModelTensor *t, int ndim, int64_t d0, int64_t d1) {
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = ndim == 2 ? d1 : 0;
}

static void gpt2_tensor(const Model *m, int i, ModelTensor *t, int *slot, size_t *offset) {
    static const char *layer_names[12] = {
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
        "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
        "mlp.c_proj.weight", "mlp.c_proj.bias"};
    static const int layer_param[12] = {P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB,
                                        P_LN2W, P_LN2B, P_FCW, P_FCB, P_FCPROJW, P_FCPROJB};
    const ModelConfig *c = &m->config;
    int64_t C = c->n_embd, L = c->n_layer;
    if (i == 0) {
        *slot = P_WTE;
        snprintf(t->name, sizeof t->name, "wte.weight");
        tensor_shape(t, 2, c->vocab_size, C);
    } else if (i == 1) {
        *slot = P_WPE;
        snprintf(t->name, sizeof t->name, "wpe.weight");
        tensor_shape(t, 2, c->max_seq_len, C);
    } else if (i < 2 + 12 * L) {
        int l = (i - 2) / 12, k = (i - 2) % 12;
        int pi = layer_param[k];
        *slot = pi;
        snprintf(t->name, sizeof t->name, "h.%d.%s", l, layer_names[k]);
        size_t per = m->param_sizes[pi] / (size_t)L;
        *offset = (size_t)l * per;
        switch (pi) {
            case P_QKVW:     tensor_shape(t, 2, C, 3 * C); break;
            case P_ATTPROJW: tensor_shape(t, 2, C, C); break;
            case P_FCW:      tensor_shape(t, 2, C, 4 * C); break;
            case P_FCPROJW:  tensor_shape(t, 2, 4 * C, C); break;
            default:         tensor_shape(t, 1, (int64_t)per, 0); break;
        }
    } else if (i == 2 + 12 * L) {
        *slot = P_LNFW;
        snprintf(t->name, sizeof t->name, "ln_f.weight");
        tensor_shape(t, 1, C, 0);
    } else if (i == 3 + 12 * L) {
        *slot = P_LNFB;
        snprintf(t->name, sizeof t->name, "ln_f.bias");
        tensor_shape(t, 1, C, 0);
    } else {
        *slot = P_SCOREW;
        snprintf(t->name, sizeof t->name, "score.weight");
        tensor_shape(t, 2, 1, C);
    }
}

// ---- Llama-style: RMSNorm, RoPE, grouped-query attention, SwiGLU, nn.Linear [out, in] ----

static int llama_validate(const ModelConfig *c, char *err, size_t errlen) {
    int NH = c->n_head, KVH = model_kv_heads(c);
    if (c->n_kv_head < 0 || KVH > NH || NH % KVH)
        return util_err(err, errlen,
                        "num_key_value_heads (%d) must divide num_attention_heads (%d)",
                        c->n_kv_head, NH);
    if (c->head_dim < 0 || c->head_dim > 1024)
        return util_err(err, errlen, "head_dim must be in 1..1024 (got %d)", c->head_dim);
    if (!c->head_dim && c->n_embd % NH)
        return util_err(err, errlen,
                        "hidden_size (%d) must be divisible by num_attention_heads (%d) when "
                        "head_dim is not given",
                        c->n_embd, NH);
    int hd = model_head_dim(c);
    if (hd <= 0 || hd % 2)
        return util_err(err, errlen, "head_dim must be even and positive for RoPE (got %d)", hd);
    if ((int64_t)(NH + 2 * KVH) * hd > (1 << 20))
        return util_err(err, errlen,
                        "(num_attention_heads + 2 num_key_value_heads) * head_dim must be at most "
                        "1048576 (got %lld)",
                        (long long)(NH + 2 * KVH) * hd);
    if (c->d_ff <= 0 || c->d_ff > (1 << 20))
        return util_err(err, errlen, "intermediate_size must be in 1..1048576 (got %d)", c->d_ff);
    if (!(c->rope_theta > 0.0f) || !isfinite(c->rope_theta))
        return util_err(err, errlen, "rope_theta must be positive and finite (got %g)",
                        (double)c->rope_theta);
    if (c->rope_scaling != MODEL_ROPE_DEFAULT && c->rope_scaling != MODEL_ROPE_LLAMA3)
        return util_err(err, errlen, "rope_scaling: only rope_type llama3 is supported (got %d)",
                        c->rope_scaling);
    if (c->rope_scaling == MODEL_ROPE_LLAMA3) {
        if (!(c->rope_factor > 0.0f) || !isfinite(c->rope_factor))
            return util_err(err, errlen, "rope_scaling.factor must be positive (got %g)",
                            (double)c->rope_factor);
        if (!(c->rope_low_freq_factor > 0.0f) || !isfinite(c->rope_low_freq_factor))
            return util_err(err, errlen, "rope_scaling.low_freq_factor must be positive (got %g)",
                            (double)c->rope_low_freq_factor);
        if (!(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
            !isfinite(c->rope_high_freq_factor))
            return util_err(err, errlen,
                            "rope_scaling.high_freq_factor (%g) must exceed low_freq_factor (%g)",
                            (double)c->rope_high_freq_factor, (double)c->rope_low_freq_factor);
        if (c->rope_original_max_pos <= 0)
            return util_err(err, errlen,
                            "rope_scaling.original_max_position_embeddings must be positive "
                            "(got %d)",
                            c->rope_original_max_pos);
    }
    return 0;
}

static void llama_param_sizes(const ModelConfig *c, size_t *s) {
    size_t V = (size_t)c->vocab_size, C = (size_t)c->n_embd, L = (size_t)c->n_layer;
    size_t NH = (size_t)c->n_head, KVH = (size_t)model_kv_heads(c);
    size_t hd = (size_t)model_head_dim(c), F = (size_t)model_ff(c), QKV = (NH + 2 * KVH) * hd;
    memset(s, 0, MODEL_NUM_PARAMS * sizeof(*s));   // no wpe and no LayerNorm/MLP biases
    s[P_WTE] = V * C;
    s[P_LN1W] = L * C;
    s[P_QKVW] = L * QKV * C;
    s[P_QKVB] = c->qkv_bias ? L * QKV : 0;
    s[P_ATTPROJW] = L * C * NH * hd;
    s[P_LN2W] = L * C;
    s[P_FCW] = L * 2 * F * C;
    s[P_FCPROJW] = L * C * F;
    s[P_LNFW] = C;
    s[P_SCOREW] = c->score_head ? C : 0;
    s[P_QNORMW] = c->qk_norm ? L * hd : 0;
    s[P_KNORMW] = c->qk_norm ? L * hd : 0;
    s[P_LMHEADW] = c->untied && c->lm_head ? V * C : 0;
}

static BlockDims llama_dims(const ModelConfig *c) {
    size_t NH = (size_t)c->n_head, KVH = (size_t)model_kv_heads(c);
    size_t hd = (size_t)model_head_dim(c), F = (size_t)model_ff(c);
    BlockDims d = {.qkv = (NH + 2 * KVH) * hd, .atty = NH * hd, .fch = 2 * F, .fch_act = F,
                   .ln_mean = 0, .qk_heads = c->qk_norm ? NH + KVH : 0, .hd = hd,
                   .rope = hd / 2};
    return d;
}

static void llama_setup(Model *m) {
    const ModelConfig *c = &m->config;
    rope_inv_freq(m->inv_freq, model_head_dim(c), c->rope_theta, c->rope_scaling, c->rope_factor,
                  c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    rope_table(m->rope_cs, m->inv_freq, m->max_T, model_head_dim(c));
}

// No position table: resid[0] rows are the token embeddings.
static void llama_embed_forward(Model *m) {
    int C = m->config.n_embd;
    float *out = resid_at(m, 0, (size_t)m->N * C);
    const float *wte = m->params.wte;
    #pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < m->N; i++)
        memcpy(out + (size_t)i * C, wte + (size_t)m->row_tok[i] * C, (size_t)C * sizeof(float));
}

static void llama_embed_backward(Model *m) {
    int C = m->config.n_embd, nchunk = (C + 63) / 64;
    // several rows can share a token: each thread owns a slice of channels, rows in order
    #pragma omp parallel for schedule(static)
    for (int ch = 0; ch < nchunk; ch++) {
        int c0 = ch * 64, c1 = c0 + 64 < C ? c0 + 64 : C;
        for (int64_t i = 0; i < m->N; i++) {
            const float *d = m->dresid + (size_t)i * C;
            float *te = m->grads.wte + (size_t)m->row_tok[i] * C;
            for (int k = c0; k < c1; k++) te[k] += d[k];
        }
    }
}

// Qwen3's per-head q/k RMSNorm works on contiguous head rows: `rows` holds the q heads of every
// packed row (N*NH rows of hd), then the k heads (N*KVH rows). to_rows copies them out of the
// fused q|k|v rows, else back in.
static void qk_move(float *rows, float *qkv, int64_t N, size_t QKV, size_t NH, size_t KVH,
                    size_t hd, int to_rows) {
    size_t qn = NH * hd, kn = KVH * hd;
    float *krows = rows + (size_t)N * qn;
    #pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; n++) {
        float *f = qkv + (size_t)n * QKV, *q = rows + (size_t)n * qn, *k = krows + (size_t)n * kn;
        if (to_rows) {
            memcpy(q, f, qn * sizeof(float));
            memcpy(k, f + qn, kn * sizeof(float));
        } else {
            memcpy(f, q, qn * sizeof(float));
            memcpy(f + qn, k, kn * sizeof(float));
        }
    }
}

static void qk_norm_forward(Model *m, int l, const LayerActs *a, const BlockDims *d) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    int64_t N = m->N, NH = c->n_head, KVH = model_kv_heads(c);
    int hd = (int)d->hd;
    size_t lh = (size_t)l * hd, qn = (size_t)N * NH * hd;
    qk_move(a->qk_in, a->qkv, N, d->qkv, (size_t)NH, (size_t)KVH, d->hd, 1);
    rmsnorm_forward(m->qk_tmp, a->qk_rstd, a->qk_in, p->qnormw + lh, N * NH, hd, c->ln_eps);
    rmsnorm_forward(m->qk_tmp + qn, a->qk_rstd + N * NH, a->qk_in + qn, p->knormw + lh, N * KVH,
                    hd, c->ln_eps);
    qk_move(m->qk_tmp, a->qkv, N, d->qkv, (size_t)NH, (size_t)KVH, d->hd, 0);
}

// dqkv's q and k parts: d(normed) in, d(projection output) out
static void qk_norm_backward(Model *m, int l, const LayerActs *a, const BlockDims *d) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    int64_t N = m->N, NH = c->n_head, KVH = model_kv_heads(c);
    int hd = (int)d->hd;
    size_t lh = (size_t)l * hd, qn = (size_t)N * NH * hd;
    qk_move(m->qk_tmp, m->dqkv, N, d->qkv, (size_t)NH, (size_t)KVH, d->hd, 1);
    vec_zero(m->dqk_tmp, (int64_t)((size_t)N * d->qk_heads * d->hd));
    rmsnorm_backward(m->dqk_tmp, GA(dslot(m, P_QNORMW), lh), m->qk_tmp, a->qk_in, p->qnormw + lh,
                     a->qk_rstd, N * NH, hd);
    rmsnorm_backward(m->dqk_tmp + qn, GA(dslot(m, P_KNORMW), lh), m->qk_tmp + qn, a->qk_in + qn,
                     p->knormw + lh, a->qk_rstd + N * NH, N * KVH, hd);
    qk_move(m->dqk_tmp, m->dqkv, N, d->qkv, (size_t)NH, (size_t)KVH, d->hd, 0);
}

static void llama_layer_forward(Model *m, int l) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    BlockDims d = llama_dims(c);
    LayerActs a = layer_acts(m, l, &d);
    int64_t N = m->N;
    int C = c->n_embd, NH = c->n_head, KVH = model_kv_heads(c), hd = (int)d.hd;
    int QKV = (int)d.qkv, F = (int)d.fch_act;
    size_t lc = (size_t)l * C;
    int nw = full_narrow(m);
    // rm starts as a copy of x: the residual, fused into the attention projection's sgemm
    rmsnorm_forward_copy(a.ln1, a.ln1r, a.x, p->ln1w + lc, a.rm, N, C, c->ln_eps);
    model_product(m, l, MODEL_W_QKV, nw, a.qkv, a.ln1, N, 0);
    lora_fwd(m, l, LORA_AT_QKV, a.ln1, a.qkv, (size_t)QKV);
    if (c->qk_norm) qk_norm_forward(m, l, &a, &d);
    // RoPE on q and k inside the attention's tasks (one parallel region)
    attention_gqa_rope_forward(a.atty, a.att, a.qkv, m->off, m->att_off, m->cur_B, NH, KVH, hd,
                               m->row_pos, m->rope_cs);
    model_product(m, l, MODEL_W_ATTPROJ, nw, a.rm, a.atty, N, 1);
    lora_fwd(m, l, LORA_AT_O, a.atty, a.rm, (size_t)C);
    rmsnorm_forward_copy(a.ln2, a.ln2r, a.rm, p->ln2w + lc, a.xo, N, C, c->ln_eps);
    model_product(m, l, MODEL_W_FC, nw, a.fch, a.ln2, N, 0);
    lora_fwd(m, l, LORA_AT_FC, a.ln2, a.fch, 2 * (size_t)F);
    swiglu_forward(a.fchg, a.fch, N, F);
    model_product(m, l, MODEL_W_FCPROJ, nw, a.xo, a.fchg, N, 1);
    lora_fwd(m, l, LORA_AT_DOWN, a.fchg, a.xo, (size_t)C);
}

static void llama_layer_backward(Model *m, int l) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    ModelParams *g = &m->grads;
    BlockDims d = llama_dims(c);
    LayerActs a = layer_acts(m, l, &d);
    int64_t N = m->N;
    int C = c->n_embd, NH = c->n_head, KVH = model_kv_heads(c), hd = (int)d.hd;
    int QKV = (int)d.qkv, AH = (int)d.atty, F = (int)d.fch_act;
    size_t lc = (size_t)l * C, lq = (size_t)l * QKV;
    // MLP: resid[l+1] = rm + swiglu(rmsnorm(rm) @ fcw^T) @ fcprojw^T
    // the _set kernels write the input gradients that nothing else has added to yet
    if (!narrow_backward(m, l, MODEL_W_FCPROJ, m->dfch_gelu, NULL, m->dresid, 0))
        linear_backward_set(m->dfch_gelu, GA(g->fcprojw, lc * F), NULL, m->dresid, a.fchg,
                            p->fcprojw + lc * F, N, F, C);
    lora_bwd(m, l, LORA_AT_DOWN, a.fchg, m->dresid, (size_t)C, m->dfch_gelu);
    swiglu_backward_set(m->dfch, m->dfch_gelu, a.fch, N, F);
    if (!narrow_backward(m, l, MODEL_W_FC, m->dln, NULL, m->dfch, 0))
        linear_backward_set(m->dln, GA(g->fcw, lc * 2 * F), NULL, m->dfch, a.ln2,
                            p->fcw + lc * 2 * F, N, C, 2 * F);
    lora_bwd(m, l, LORA_AT_FC, a.ln2, m->dfch, 2 * (size_t)F, m->dln);
    rmsnorm_backward(m->dresid, GA(dslot(m, P_LN2W), lc), m->dln, a.rm, p->ln2w + lc, a.ln2r, N, C);
    // attention: rm = x + attn(rope(qknorm(rmsnorm(x) @ qkvw^T + qkvb))) @ attprojw^T
    if (!narrow_backward(m, l, MODEL_W_ATTPROJ, m->datty, NULL, m->dresid, 0))
        linear_backward_set(m->datty, GA(g->attprojw, lc * AH), NULL, m->dresid, a.atty,
                            p->attprojw + lc * AH, N, AH, C);
    lora_bwd(m, l, LORA_AT_O, a.atty, m->dresid, (size_t)C, m->datty);
    attention_gqa_rope_backward_set(m->dqkv, m->datt, m->datty, a.qkv, a.att, m->off,
                                    m->att_off, m->cur_B, NH, KVH, hd, m->row_pos, m->rope_cs);
    if (c->qk_norm) qk_norm_backward(m, l, &a, &d);
    if (!narrow_backward(m, l, MODEL_W_QKV, m->dln,
                         c->qkv_bias ? GA(dslot(m, P_QKVB), lq) : NULL, m->dqkv, 0))
        linear_backward_set(m->dln, GA(g->qkvw, lq * C),
                            c->qkv_bias ? GA(dslot(m, P_QKVB), lq) : NULL,
                            m->dqkv, a.ln1, p->qkvw + lq * C, N, C, QKV);
    lora_bwd(m, l, LORA_AT_QKV, a.ln1, m->dqkv, (size_t)QKV, m->dln);
    rmsnorm_backward(m->dresid, GA(dslot(m, P_LN1W), lc), m->dln, a.x, p->ln1w + lc, a.ln1r, N, C);
}

static void llama_final_forward(Model *m) {
    const ModelConfig *c = &m->config;
    int C = c->n_embd;
    rmsnorm_forward(m->lnf, m->lnf_rstd, resid_at(m, c->n_layer, (size_t)m->N * C),
                    m->params.lnfw, m->N, C, c->ln_eps);
}

static void llama_final_backward(Model *m) {
    const ModelConfig *c = &m->config;
    int C = c->n_embd;
    size_t NC = (size_t)m->N * C;
    vec_zero(m->dresid, (int64_t)(NC));
    rmsnorm_backward(m->dresid, dslot(m, P_LNFW), m->dln, resid_at(m, c->n_layer, NC),
                     m->params.lnfw, m->lnf_rstd, m->N, C);
}

// The tensors of one Llama-style layer in save_pretrained's order; q/k/v and gate/up are row
// slices of the fused qkvw / fcw (and qkvb).
enum { LT_NORM1, LT_Q, LT_K, LT_V, LT_QB, LT_KB, LT_VB, LT_QN, LT_KN, LT_O, LT_NORM2, LT_GATE,
       LT_UP, LT_DOWN, LT_COUNT };
static const char *const llama_layer_names[LT_COUNT] = {
    "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight",
    "self_attn.v_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.bias",
    "self_attn.v_proj.bias", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
    "self_attn.o_proj.weight", "post_attention_layernorm.weight", "mlp.gate_proj.weight",
    "mlp.up_proj.weight", "mlp.down_proj.weight"};

static int llama_layer_has(const ModelConfig *c, int k) {
    if (k >= LT_QB && k <= LT_VB) return c->qkv_bias != 0;
    if (k == LT_QN || k == LT_KN) return c->qk_norm != 0;
    return 1;
}

static int llama_layer_tensors(const ModelConfig *c) {
    int n = 0;
    for (int k = 0; k < LT_COUNT; k++) n += llama_layer_has(c, k);
    return n;
}

static int llama_tensor_count(const Model *m) {
    const ModelConfig *c = &m->config;
    return 1 + c->n_layer * llama_layer_tensors(c) + 1 + (m->param_sizes[P_LMHEADW] ? 1 : 0) +
           (c->score_head ? 1 : 0);
}

// layer tensor k: slot, shape and offset inside the layer's part of the slot
static void llama_layer_tensor(const ModelConfig *c, int k, ModelTensor *t, int *slot,
                               size_t *inner) {
    int64_t C = c->n_embd, NH = c->n_head, KVH = model_kv_heads(c), hd = model_head_dim(c);
    int64_t F = model_ff(c), q = NH * hd, kv = KVH * hd;
    static const int slots[LT_COUNT] = {P_LN1W, P_QKVW, P_QKVW, P_QKVW, P_QKVB, P_QKVB, P_QKVB,
                                        P_QNORMW, P_KNORMW, P_ATTPROJW, P_LN2W, P_FCW, P_FCW,
                                        P_FCPROJW};
    // first row of the slice in the fused tensor (q/k/v, gate/up)
    static const int first[LT_COUNT] = {0, 0, 1, 2, 0, 1, 2, 0, 0, 0, 0, 0, 1, 0};
    int64_t rows = 0, cols = 0;
    switch (k) {
        case LT_NORM1: case LT_NORM2: rows = C; break;
        case LT_Q: rows = q; cols = C; break;
        case LT_K: case LT_V: rows = kv; cols = C; break;
        case LT_QB: rows = q; break;
        case LT_KB: case LT_VB: rows = kv; break;
        case LT_QN: case LT_KN: rows = hd; break;
        case LT_O: rows = C; cols = q; break;
        case LT_GATE: case LT_UP: rows = F; cols = C; break;
        default: rows = C; cols = F; break;   // LT_DOWN
    }
    *slot = slots[k];
    int64_t row0 = first[k] == 0 ? 0 : (k == LT_UP ? F : first[k] == 1 ? q : q + kv);
    *inner = (size_t)(row0 * (cols ? cols : 1));
    tensor_shape(t, cols ? 2 : 1, rows, cols);
}

static void llama_tensor(const Model *m, int i, ModelTensor *t, int *slot, size_t *offset) {
    const ModelConfig *c = &m->config;
    int per = llama_layer_tensors(c), L = c->n_layer;
    int64_t C = c->n_embd, V = c->vocab_size;
    if (i == 0) {
        *slot = P_WTE;
        snprintf(t->name, sizeof t->name, "model.embed_tokens.weight");
        tensor_shape(t, 2, V, C);
    } else if (i < 1 + L * per) {
        int l = (i - 1) / per, j = (i - 1) % per, k = 0;
        for (;; k++)   // the j-th tensor this configuration has
            if (llama_layer_has(c, k) && j-- == 0) break;
        size_t inner;
        llama_layer_tensor(c, k, t, slot, &inner);
        *offset = (size_t)l * (m->param_sizes[*slot] / (size_t)L) + inner;
        snprintf(t->name, sizeof t->name, "model.layers.%d.%s", l, llama_layer_names[k]);
    } else if (i == 1 + L * per) {
        *slot = P_LNFW;
        snprintf(t->name, sizeof t->name, "model.norm.weight");
        tensor_shape(t, 1, C, 0);
    } else if (i == 2 + L * per && m->param_sizes[P_LMHEADW]) {
        *slot = P_LMHEADW;
        snprintf(t->name, sizeof t->name, "lm_head.weight");
        tensor_shape(t, 2, V, C);
    } else {
        *slot = P_SCOREW;
        snprintf(t->name, sizeof t->name, "score.weight");
        tensor_shape(t, 2, 1, C);
    }
}

static const BlockKind MODEL_KINDS[2] = {
    [MODEL_ARCH_GPT2] = {
        .name = "gpt2",
        .keys = {"n_layer", "n_head", "n_embd", "n_positions", "layer_norm_epsilon"},
        .validate = gpt2_validate, .param_sizes = gpt2_param_sizes, .dims = gpt2_dims,
        .setup = NULL, .embed_forward = gpt2_embed_forward,
        .embed_backward = gpt2_embed_backward, .layer_forward = gpt2_layer_forward,
        .layer_backward = gpt2_layer_backward, .final_forward = gpt2_final_forward,
        .final_backward = gpt2_final_backward, .tensor_count = gpt2_tensor_count,
        .product = matmul_forward, .decode_product = matmul_forward_decode,
        .fixed_product = matmul_forward_fixed,
        .layout = LOWP_IN_OUT, .tensor = gpt2_tensor},
    [MODEL_ARCH_LLAMA] = {
        .name = "llama-style",
        .keys = {"num_hidden_layers", "num_attention_heads", "hidden_size",
                 "max_position_embeddings", "rms_norm_eps"},
        .validate = llama_validate, .param_sizes = llama_param_sizes, .dims = llama_dims,
        .setup = llama_setup, .embed_forward = llama_embed_forward,
        .embed_backward = llama_embed_backward, .layer_forward = llama_layer_forward,
        .layer_backward = llama_layer_backward, .final_forward = llama_final_forward,
        .final_backward = llama_final_backward, .tensor_count = llama_tensor_count,
        .product = linear_forward, .decode_product = linear_forward_decode,
        .fixed_product = linear_forward_fixed,
        .layout = LOWP_OUT_IN, .tensor = llama_tensor},
};

static const BlockKind *model_kind(const ModelConfig *c) {
    return &MODEL_KINDS[c->arch == MODEL_ARCH_LLAMA ? MODEL_ARCH_LLAMA : MODEL_ARCH_GPT2];
}

const char *model_kind_name(const ModelConfig *c) { return model_kind(c)->name; }

// ---- shared: configuration, memory plan, allocation ----

static int validate_common(const ModelConfig *c, const KindKeys *k, char *err, size_t errlen) {
    if (c->n_layer <= 0 || c->n_layer > 1024)
        return util_err(err, errlen, "%s must be in 1..1024 (got %d)", k->n_layer, c->n_layer);
    if (c->n_head <= 0)
        return util_err(err, errlen, "%s must be positive (got %d)", k->n_head, c->n_head);
    if (c->n_embd <= 0 || c->n_embd > 65536)
        return util_err(err, errlen, "%s must be in 1..65536 (got %d)", k->n_embd, c->n_embd);
    if (c->vocab_size <= 0 || c->vocab_size > (1 << 24))
        return util_err(err, errlen, "vocab_size must be in 1..16777216 (got %d)", c->vocab_size);
    if (c->max_seq_len <= 0 || c->max_seq_len > (1 << 20))
        return util_err(err, errlen, "%s must be in 1..1048576 (got %d)", k->max_pos,
                        c->max_seq_len);
    if (!(c->ln_eps > 0.0f) || !(c->ln_eps < 1.0f))
        return util_err(err, errlen, "%s must be in (0, 1) (got %g)", k->eps, (double)c->ln_eps);
    if (!c->lm_head && !c->score_head)
        return util_err(err, errlen, "a model needs the LM head, the score head or both");
    return 0;
}

int model_config_validate(const ModelConfig *c, char *err, size_t errlen) {
    if (c->arch != MODEL_ARCH_GPT2 && c->arch != MODEL_ARCH_LLAMA)
        return util_err(err, errlen, "unknown architecture %d (0 gpt2, 1 llama-style)", c->arch);
    if (c->family < MODEL_FAMILY_GPT2 || c->family > MODEL_FAMILY_QWEN3)
        return util_err(err, errlen, "unknown model_type family %d", c->family);
    if ((c->family == MODEL_FAMILY_GPT2) != (c->arch == MODEL_ARCH_GPT2))
        return util_err(err, errlen,
                        "model_type and architecture disagree: gpt2 is the GPT-2 block, "
                        "llama, mistral, qwen2 and qwen3 the Llama-style block");
    const BlockKind *k = model_kind(c);
    if (validate_common(c, &k->keys, err, errlen)) return -1;
    return k->validate(c, err, errlen);
}

static void carve_params(ModelParams *p, float *mem, const size_t *s) {
    float **ptrs[MODEL_NUM_PARAMS] = {
        &p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb, &p->attprojw, &p->attprojb,
        &p->ln2w, &p->ln2b, &p->fcw, &p->fcb, &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb,
        &p->scorew, &p->qnormw, &p->knormw, &p->lmheadw};
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) { *ptrs[i] = mem; mem += s[i]; }
}

// first float of parameter slot `slot`
static size_t slot_base(const size_t *sizes, int slot) {
    size_t base = 0;
    for (int k = 0; k < slot; k++) base += sizes[k];
    return base;
}

// Activation table: name -> number of floats. One place defines the layout for both the size
// computation and the carving, so they cannot disagree; the kind gives the widths. Slots a kind
// does not use have 0 floats (NULL pointers).
typedef struct { float **ptr; size_t n; } ActSlot;

static int act_table(Model *m, const ModelConfig *c, int max_B, int max_T, int trainable,
                     ActSlot *t) {
    BlockDims d = model_kind(c)->dims(c);
    size_t N = (size_t)max_B * max_T, C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    size_t L = (size_t)c->n_layer, NH = (size_t)c->n_head;
    size_t La = trainable ? L : 1, Lr = trainable ? L + 1 : 2;
    size_t lm = c->lm_head ? 1 : 0, tr = trainable ? 1 : 0, qk = d.qk_heads * d.hd;
    int k = 0;
#define SLOT(field, count) t[k].ptr = m ? &m->field : NULL; t[k].n = (count); k++
    SLOT(resid, Lr * N * C);
    SLOT(resmid, La * N * C);
    SLOT(ln1, La * N * C);  SLOT(ln1_mean, La * N * d.ln_mean);  SLOT(ln1_rstd, La * N);
    SLOT(qkv, La * N * d.qkv);
    SLOT(att, La * (size_t)max_B * NH * max_T * max_T);
    SLOT(atty, La * N * d.atty);
    SLOT(ln2, La * N * C);  SLOT(ln2_mean, La * N * d.ln_mean);  SLOT(ln2_rstd, La * N);
    SLOT(fch, La * N * d.fch);  SLOT(fch_gelu, La * N * d.fch_act);
    SLOT(lnf, N * C);  SLOT(lnf_mean, N * d.ln_mean);  SLOT(lnf_rstd, N);
    SLOT(head_in, lm * N * C);  SLOT(logits, lm * N * V);
    SLOT(lse, N);  SLOT(head_logp, N);  SLOT(head_ent, N);  SLOT(values, N);
    SLOT(dresid, tr * N * C);  SLOT(dln, tr * N * C);  SLOT(datty, tr * N * d.atty);
    SLOT(dqkv, tr * N * d.qkv);  SLOT(dfch, tr * N * d.fch);  SLOT(dfch_gelu, tr * N * d.fch_act);
    SLOT(dhead_in, tr * lm * N * C);  SLOT(head_dlogp, tr * N);
    SLOT(datt, tr * (size_t)max_B * NH * max_T * max_T);
    SLOT(qk_in, La * N * qk);  SLOT(qk_rstd, La * N * d.qk_heads);
    SLOT(qk_tmp, N * qk);  SLOT(dqk_tmp, tr * N * qk);
    SLOT(inv_freq, d.rope);  SLOT(rope_cs, (size_t)max_T * 2 * d.rope);
#undef SLOT
    return k;
}

// Integer bookkeeping per batch: row_tok, row_pos, row_tgt, row_seq, head_rows, head_tgt
// (N int32 each), off (B+1) and att_off (B) int64.
static size_t int_bytes(int max_B, int max_T) {
    size_t N = (size_t)max_B * max_T;
    return 6 * N * sizeof(int32_t) + (2 * (size_t)max_B + 1) * sizeof(int64_t);
}

// the first k slots of t in p, 64-byte aligned each; returns the floats they take. The RoPE
// frequencies and table are the last two slots (computed at init): k - 2 leaves them out.
static size_t act_carve(const ActSlot *t, int k, float *p) {
    size_t n = 0;
    for (int i = 0; i < k; i++) {
        if (p) *t[i].ptr = t[i].n ? p + n : NULL;
        n += (t[i].n + 15) & ~(size_t)15;
    }
    return n;
}

size_t model_activation_bytes_for(const ModelConfig *c, int max_B, int max_T, int trainable) {
    ActSlot t[64];
    int k = act_table(NULL, c, max_B, max_T, trainable, t);
    return act_carve(t, k - 2, NULL) * sizeof(float);
}

size_t model_memory_bytes(const ModelConfig *c, int max_B, int max_T, int trainable) {
    size_t s[MODEL_NUM_PARAMS], np = 0, na = 0;
    model_kind(c)->param_sizes(c, s);
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) np += s[i];
    ActSlot t[64];
    int k = act_table(NULL, c, max_B, max_T, trainable, t);
    for (int i = 0; i < k; i++) na += t[i].n;
    return (np * (trainable == 1 ? 4 : 1) + na) * sizeof(float) + int_bytes(max_B, max_T);
}

int model_init(Model *m, const ModelConfig *c, int max_B, int max_T, int trainable, int verbose,
               char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    if (model_config_validate(c, err, errlen)) return -1;
    const BlockKind *kind = model_kind(c);
    if (max_B <= 0 || max_T <= 0)
        return util_err(err, errlen,
                        "batch size and sequence length must be positive (got B=%d T=%d)", max_B,
                        max_T);
    if (max_T > c->max_seq_len)
        return util_err(err, errlen,
                        "sequence length %d exceeds the model's context %s=%d", max_T,
                        kind->keys.max_pos, c->max_seq_len);
    m->config = *c;
    m->max_B = max_B; m->max_T = max_T; m->trainable = trainable;
    kind->param_sizes(c, m->param_sizes);
    m->num_params = 0;
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) m->num_params += m->param_sizes[i];
    size_t pbytes = m->num_params * sizeof(float);
    // pages of their own, resident as the weights are written: a frozen base loaded into bf16
    // copies (model_lowp_stream_*) never holds them all; huge pages (util_pages_alloc) for the
    // decoding step's streams of fp32 weights (SmolLM2 shape, B=1: 40 -> 52 tokens/s)
    m->params_memory = PAGES_CHECK(pbytes);
    m->params_bytes = pbytes;
    m->bias_in = CALLOC_CHECK(1, sizeof *m->bias_in);
    carve_params(&m->params, m->params_memory, m->param_sizes);
    if (trainable == 1) {   // MODEL_TRAIN_FROZEN: m->grads stays all NULL (no base gradients)
        m->grads_memory = ALIGNED_CHECK(pbytes);
        carve_params(&m->grads, m->grads_memory, m->param_sizes);
        m->m_memory = ALIGNED_CHECK(pbytes);
        m->v_memory = ALIGNED_CHECK(pbytes);
    }
    ActSlot t[64];
    int k = act_table(m, c, max_B, max_T, trainable, t);
    m->acts_floats = act_carve(t, k, NULL);
    // small pages: in huge ones (util_pages_alloc) PPO's scoring forwards, which touch
    // activations given back before generation, spent more system time, not less (GPT-2 124M,
    // B=16: 0.58 against 0.23 s for the policy's, 1.7 against 0.5 s at the first touch)
    m->acts_memory = ALIGNED_CHECK(m->acts_floats * sizeof(float));
    act_carve(t, k, m->acts_memory);
    size_t N = (size_t)max_B * max_T;
    char *ib = ALIGNED_CHECK(int_bytes(max_B, max_T));
    m->off = (int64_t *)ib;                       ib += ((size_t)max_B + 1) * sizeof(int64_t);
    m->att_off = (int64_t *)ib;                   ib += (size_t)max_B * sizeof(int64_t);
    m->row_tok = (int32_t *)ib;                   ib += N * sizeof(int32_t);
    m->row_pos = (int32_t *)ib;                   ib += N * sizeof(int32_t);
    m->row_tgt = (int32_t *)ib;                   ib += N * sizeof(int32_t);
    m->row_seq = (int32_t *)ib;                   ib += N * sizeof(int32_t);
    m->head_rows = (int32_t *)ib;                 ib += N * sizeof(int32_t);
    m->head_tgt = (int32_t *)ib;
    if (kind->setup) kind->setup(m);
    // zeroed by the allocation but not resident until a forward writes them: a model that runs
    // smaller batches than planned, or waits while others run, costs only what it touches
    model_release_activations(m);
    if (verbose) {
        char a[32], b[32], tot[32];
        util_format_bytes(a, sizeof a, (double)pbytes * (trainable == 1 ? 4 : 1));
        util_format_bytes(b, sizeof b, (double)m->acts_floats * sizeof(float));
        util_format_bytes(tot, sizeof tot, (double)model_memory_bytes(c, max_B, max_T, trainable));
        fprintf(stderr,
                "model (%s): %zu parameters; memory: weights%s %s, activations (B=%d, T=%d) %s, "
                "total %s\n",
                kind->name, m->num_params,
                trainable == 1 ? "+grads+AdamW" : trainable ? " (frozen)" : "", a, max_B, max_T, b,
                tot);
    }
    return 0;
}

void model_free(Model *m) {
    model_lowp_detach(m);
    util_pages_free(m->params_memory, m->params_bytes);
    free(m->grads_memory); free(m->m_memory); free(m->v_memory);
    free(m->acts_memory); free(m->off); free(m->bias_in);
    memset(m, 0, sizeof(*m));
}

void model_init_weights(Model *m, uint64_t seed) {
    const ModelConfig *c = &m->config;
    memset(m->params_memory, 0, m->num_params * sizeof(float));
    float proj_std = 0.02f / sqrtf(2.0f * c->n_layer);
    // one stream per slot: adding a head (or a kind's own slot) does not change the others
    static const int normal[] = {P_WTE, P_WPE, P_QKVW, P_ATTPROJW, P_FCW, P_FCPROJW, P_SCOREW,
                                 P_LMHEADW};
    static const int ones[] = {P_LN1W, P_LN2W, P_LNFW, P_QNORMW, P_KNORMW};
    for (size_t k = 0; k < sizeof normal / sizeof normal[0]; k++) {
        int slot = normal[k];
        float std = slot == P_WPE ? 0.01f
                    : slot == P_ATTPROJW || slot == P_FCPROJW ? proj_std : 0.02f;
        int64_t n = (int64_t)m->param_sizes[slot];
        if (n) rng_fill_normal_chunked(seed, (uint64_t)slot,
                                       m->params_memory + slot_base(m->param_sizes, slot), n, 0.0f,
                                       std);
    }
    for (size_t k = 0; k < sizeof ones / sizeof ones[0]; k++) {
        float *w = m->params_memory + slot_base(m->param_sizes, ones[k]);
        for (size_t i = 0; i < m->param_sizes[ones[k]]; i++) w[i] = 1.0f;
    }
}

void model_zero_grad(Model *m) {
    if (m->grads_memory) vec_zero(m->grads_memory, (int64_t)m->num_params);
}

// The scalar head's weights: the adapters' trained copy when they are on and have one.
static const float *model_score_w(const Model *m) {
    return m->lora_on && m->lora->score ? m->lora->score : m->params.scorew;
}

int model_share_activations(Model *m, const Model *host) {
    if (m == host || m->acts_host || host->acts_host || !host->acts_memory ||
        model_activation_bytes(m) > model_activation_bytes(host))
        return -1;
    ActSlot t[64];
    int k = act_table(m, &m->config, m->max_B, m->max_T, m->trainable, t);
    act_carve(t, k - 2, host->acts_memory);   // the RoPE slots stay where they are
    model_release_activations(m);   // its own pages: not resident (nothing writes them now)
    m->acts_host = host;
    return 0;
}

size_t model_activation_bytes(const Model *m) {
    if (m->acts_host) return 0;
    // everything before the RoPE frequencies and table (the last slots, computed once at init,
    // kept)
    const float *end = m->inv_freq ? m->inv_freq : m->acts_memory + m->acts_floats;
    return (size_t)(end - m->acts_memory) * sizeof(float);
}

void model_release_activations(Model *m) {
    model_release_activations_tail(m, model_activation_bytes(m));
}

size_t model_release_activations_tail(Model *m, size_t bytes) {
    size_t all = model_activation_bytes(m);
    if (bytes > all) bytes = all;
    // from the end (act_table): the backward's buffers, which a forward does not write, lie
    // there, after the forward's (but a QK-norm's few, and the RoPE tables, kept)
    util_release_pages((char *)m->acts_memory + (all - bytes), bytes);
    m->has_lm_out = 0; m->has_entropy = 0; m->N = 0; m->M = 0;
    return bytes;
}

int model_forward(Model *m, const ModelBatch *b, int flags, char *err, size_t errlen) {
    const ModelConfig *c = &m->config;
    int B = b->B, T = b->T, C = c->n_embd, V = c->vocab_size, L = c->n_layer, NH = c->n_head;
    m->has_lm_out = 0; m->has_entropy = 0; m->N = 0; m->M = 0; m->loss = 0.0f;
    // 2: adapters with dropout (training), 1: adapters, 0: the base alone
    m->lora_on = !m->lora || (flags & MODEL_NO_LORA) ? 0 : (flags & MODEL_DROPOUT) ? 2 : 1;
    m->fixed_rows = !m->trainable || (flags & MODEL_FIXED_ROWS);
    if (m->lora_on) lora_begin(m->lora, m->lora_on > 1);
    m->lora_fwd = m->lora_on ? m->lora : NULL;
    lora_bias_install(m, m->lora_fwd);   // trained biases with the adapters, the base's without
    if (B <= 0 || B > m->max_B)
        return util_err(err, errlen, "batch size %d is outside 1..%d chosen at init", B, m->max_B);
    if (T <= 0 || T > m->max_T)
        return util_err(err, errlen, "sequence length %d is outside 1..%d chosen at init", T,
                        m->max_T);
    // pack the real tokens into rows and check every id
    int64_t N = 0, A = 0;
    for (int bi = 0; bi < B; bi++) {
        int len = b->lengths[bi];
        if (len <= 0 || len > T)
            return util_err(err, errlen, "sequence %d has length %d outside 1..%d", bi, len, T);
        m->off[bi] = N;
        m->att_off[bi] = A;
        A += (int64_t)NH * len * len;
        for (int t = 0; t < len; t++) {
            int32_t tok = b->tokens[(size_t)bi * T + t];
            int32_t tgt = b->targets ? b->targets[(size_t)bi * T + t] : -1;
            if (tok < 0 || tok >= V)
                return util_err(err, errlen,
                                "token id %d at (%d,%d) is outside the vocabulary 0..%d", tok, bi,
                                t, V - 1);
            if (tgt < -1 || tgt >= V)
                return util_err(err, errlen,
                                "target id %d at (%d,%d) is outside the vocabulary 0..%d", tgt, bi,
                                t, V - 1);
            m->row_tok[N] = tok; m->row_pos[N] = t; m->row_tgt[N] = tgt; m->row_seq[N] = bi;
            N++;
        }
    }
    m->off[B] = N;
    m->N = N; m->cur_B = B; m->cur_T = T;
    const BlockKind *kind = model_kind(c);

    kind->embed_forward(m);
    for (int l = 0; l < L; l++) kind->layer_forward(m, l);
    kind->final_forward(m);

    if (c->lm_head && (b->targets || (flags & MODEL_LOGITS_ALL))) {
        // the LM head only on the rows that need it: a loss, or an explicit request
        int64_t M = 0;
        for (int64_t r = 0; r < N; r++) {
            int bi = m->row_seq[r], t = m->row_pos[r];
            float w = b->weights ? b->weights[(size_t)bi * T + t] : 1.0f;
            if ((flags & MODEL_LOGITS_ALL) || (m->row_tgt[r] >= 0 && w != 0.0f)) {
                m->head_rows[M] = (int32_t)r;
                m->head_tgt[M] = m->row_tgt[r];
                M++;
            }
        }
        m->M = M;
        #pragma omp parallel for schedule(static)
        for (int64_t j = 0; j < M; j++)
            memcpy(m->head_in + (size_t)j * C, m->lnf + (size_t)m->head_rows[j] * C,
                   (size_t)C * sizeof(float));
        // the LM head's matrix W: the embeddings (tied) or lm_head.weight (untied)
        if (M > 0) {  // logits (M,V) = head_in (M,C) @ W^T
            model_head_product(m, full_narrow(m), m->logits, m->head_in, M);
            logprob_forward(m->head_logp, (flags & MODEL_ENTROPY) ? m->head_ent : NULL, m->lse,
                            m->logits, m->head_tgt, M, V);
        }
        double loss = 0.0;
        for (int64_t j = 0; j < M; j++) {
            int64_t r = m->head_rows[j];
            if (m->head_tgt[j] < 0) continue;
            float w = b->weights ? b->weights[(size_t)m->row_seq[r] * T + m->row_pos[r]] : 1.0f;
            loss -= (double)w * m->head_logp[j];
        }
        m->loss = (float)loss;
        m->has_lm_out = 1;
        m->has_entropy = (flags & MODEL_ENTROPY) != 0;
    }
    if (c->score_head) score_forward(m->values, m->lnf, model_score_w(m), N, C);
    return 0;
}

void model_backward(Model *m, const ModelBatch *b, const float *dlogp, const float *dvalues) {
    if (!m->trainable) DIE("model_backward on a model initialised without gradients");
    if (m->N == 0 || b->B != m->cur_B || b->T != m->cur_T)
        DIE("model_backward without a matching model_forward");
    if (m->lora_fwd != (m->lora_on ? m->lora : NULL))
        DIE("model_backward: other adapters attached since the forward");
    const ModelConfig *c = &m->config;
    int T = b->T, C = c->n_embd, V = c->vocab_size, L = c->n_layer;
    int64_t N = m->N, M = m->M;
    size_t NC = (size_t)N * C;
    const ModelParams *p = &m->params;
    ModelParams *g = &m->grads;
    const BlockKind *kind = model_kind(c);
    const float *head_w = c->untied ? p->lmheadw : p->wte;
    float *head_dw = c->untied ? g->lmheadw : g->wte;

    // gradient w.r.t. the ln_f output accumulates in dln
    vec_zero(m->dln, (int64_t)(NC));
    if (m->has_lm_out && M > 0) {
        for (int64_t j = 0; j < M; j++) {
            int64_t r = m->head_rows[j];
            size_t bt = (size_t)m->row_seq[r] * T + m->row_pos[r];
            float w = b->weights ? b->weights[bt] : 1.0f;
            m->head_dlogp[j] = m->head_tgt[j] < 0 ? 0.0f : dlogp ? dlogp[bt] : -w;
        }
        logprob_backward(m->logits, m->lse, m->head_tgt, m->head_dlogp, M, V);
        // dhead_in (M,C) = dlogits (M,V) @ W (V,C); dW (V,C) += dlogits^T @ head_in (M,C)
        if (narrow_back(m) && m->lowp->head.OC)   // the narrow head the forward read
            lowp_backward_input(m->dhead_in, m->logits, &m->lowp->head, M, 0);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)M, C, V, 1.0f,
                        m->logits, V, head_w, C, 0.0f, m->dhead_in, C);
        if (head_dw)   // a frozen base: no embedding gradient
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, (blasint)M, 1.0f, m->logits,
                        V, m->head_in, C, 1.0f, head_dw, C);
        #pragma omp parallel for schedule(static)   // head rows are distinct: no two write one row
        for (int64_t j = 0; j < M; j++) {
            float *d = m->dln + (size_t)m->head_rows[j] * C;
            const float *s = m->dhead_in + (size_t)j * C;
            for (int i = 0; i < C; i++) d[i] += s[i];
        }
        m->has_lm_out = 0;   // logits now hold d-logits
    }
    if (dvalues && c->score_head) {
        float *dv = m->head_dlogp;  // free again once the LM head is done: (N) value gradients
        for (int64_t r = 0; r < N; r++) dv[r] = dvalues[(size_t)m->row_seq[r] * T + m->row_pos[r]];
        float *dscore = m->lora_on && m->lora->score ? m->lora->dscore : g->scorew;
        score_backward(m->dln, dscore, dv, m->lnf, model_score_w(m), N, C);
    }
    kind->final_backward(m);
    for (int l = L - 1; l >= 0; l--) kind->layer_backward(m, l);
    if (m->grads_memory) kind->embed_backward(m);   // a frozen base's embeddings never train
    if (m->lora_on) lora_bias_gather(m->lora);
}

static void to_bt(const Model *m, const float *rows_val, const int32_t *rows, int64_t nrows,
                  float *out) {
    memset(out, 0, (size_t)m->cur_B * m->cur_T * sizeof(float));
    for (int64_t j = 0; j < nrows; j++) {
        int64_t r = rows ? rows[j] : j;
        out[(size_t)m->row_seq[r] * m->cur_T + m->row_pos[r]] = rows_val[j];
    }
}

void model_get_logp(const Model *m, float *out) { to_bt(m, m->head_logp, m->head_rows, m->M, out); }
void model_get_entropy(const Model *m, float *out) {
    if (!m->has_entropy) DIE("model_get_entropy without MODEL_ENTROPY in the forward");
    to_bt(m, m->head_ent, m->head_rows, m->M, out);
}
void model_get_values(const Model *m, float *out) {
    if (!m->config.score_head) DIE("model_get_values on a model without a score head");
    to_bt(m, m->values, NULL, m->N, out);
}

const float *model_logits_at(const Model *m, int b, int t) {
    if (!m->has_lm_out || b < 0 || b >= m->cur_B || t < 0 || m->off[b] + t >= m->off[b + 1])
        return NULL;
    int64_t r = m->off[b] + t;
    // head rows are in increasing row order: binary search
    int64_t lo = 0, hi = m->M - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (m->head_rows[mid] == r) return m->logits + (size_t)mid * m->config.vocab_size;
        if (m->head_rows[mid] < r) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

int model_tensor_count(const Model *m) { return model_kind(&m->config)->tensor_count(m); }

float *model_slot(const Model *m, int slot, size_t *n) {
    if (n) *n = m->param_sizes[slot];
    return m->params_memory + slot_base(m->param_sizes, slot);
}

void model_tensor(const Model *m, int i, ModelTensor *t) {
    if (m->lowp && m->lowp->dropped) DIE("model_tensor on a model whose fp32 matrices were freed");
    memset(t, 0, sizeof(*t));
    int slot = 0;
    size_t offset = 0;
    model_kind(&m->config)->tensor(m, i, t, &slot, &offset);
    size_t base = slot_base(m->param_sizes, slot) + offset;
    t->data = m->params_memory + base;
    t->grad = m->grads_memory ? m->grads_memory + base : NULL;
    t->decay = t->ndim >= 2;
}

// ---- reduced precision: the narrow copies and the products that choose between them ----

static const int LOWP_W_SLOT[MODEL_NUM_W] = {P_QKVW, P_ATTPROJW, P_FCW, P_FCPROJW};
static const int LOWP_B_SLOT[MODEL_NUM_W] = {P_QKVB, P_ATTPROJB, P_FCB, P_FCPROJB};

// in and out widths of a layer's matrix w, from the kind's activation widths
static void lowp_w_dims(const ModelConfig *c, int w, int *in, int *out) {
    BlockDims d = model_kind(c)->dims(c);
    int C = c->n_embd;
    const int ins[MODEL_NUM_W] = {C, (int)d.atty, C, (int)d.fch_act};
    const int outs[MODEL_NUM_W] = {(int)d.qkv, C, (int)d.fch, C};
    *in = ins[w];
    *out = outs[w];
}

// layer l's fp32 matrix w (and bias, NULL when the kind has none)
static const float *layer_weight(const Model *m, int l, int w, const float **bias) {
    int L = m->config.n_layer, ws = LOWP_W_SLOT[w], bs = LOWP_B_SLOT[w];
    size_t wper = m->param_sizes[ws] / (size_t)L, bper = m->param_sizes[bs] / (size_t)L;
    *bias = bper ? m->params_memory + slot_base(m->param_sizes, bs) + (size_t)l * bper : NULL;
    return m->params_memory + slot_base(m->param_sizes, ws) + (size_t)l * wper;
}

static const float *head_weight(const Model *m) {
    return m->config.untied ? m->params.lmheadw : m->params.wte;
}

// model_product and model_decode_product: decode picks the kind's decoding kernel for fp32; a
// model that does not train, or a forward flagged MODEL_FIXED_ROWS, the row-invariant full
// forward (kernels.h: `_fixed`), so those log-probabilities and scores never depend on the
// sequences beside them
static void layer_product(const Model *m, int l, int w, int narrow, int decode, float *out,
                          const float *inp, int64_t N, int beta_one) {
    const float *bias;
    const float *fw = layer_weight(m, l, w, &bias);
    if (m->lowp && (narrow || m->lowp->dropped)) {
        lowp_forward(out, inp, &m->lowp->w[(size_t)l * MODEL_NUM_W + w], bias, N, beta_one);
        return;
    }
    int in, outw;
    lowp_w_dims(&m->config, w, &in, &outw);
    const BlockKind *k = model_kind(&m->config);
    (decode ? k->decode_product : m->fixed_rows ? k->fixed_product : k->product)(
        out, inp, fw, bias, N, in, outw, beta_one);
}

void model_product(const Model *m, int l, int w, int narrow, float *out, const float *inp,
                   int64_t N, int beta_one) {
    layer_product(m, l, w, narrow, 0, out, inp, N, beta_one);
}

void model_decode_product(const Model *m, int l, int w, float *out, const float *inp, int64_t N,
                          int beta_one) {
    layer_product(m, l, w, 1, 1, out, inp, N, beta_one);
}

// model_head_product and model_decode_head, as layer_product
static void head_product(const Model *m, int narrow, int decode, float *out, const float *inp,
                         int64_t M) {
    if (m->lowp && (narrow || m->lowp->dropped) && m->lowp->head.OC) {
        lowp_forward(out, inp, &m->lowp->head, NULL, M, 0);
        return;
    }
    (decode ? logits_forward_decode : m->fixed_rows ? logits_forward_fixed : logits_forward)(
        out, inp, head_weight(m), M, m->config.vocab_size, m->config.n_embd);
}

void model_head_product(const Model *m, int narrow, float *out, const float *inp, int64_t M) {
    head_product(m, narrow, 0, out, inp, M);
}

void model_decode_head(const Model *m, float *out, const float *inp, int64_t M) {
    head_product(m, 1, 1, out, inp, M);
}

// (re)builds the copy of layer l's matrix w (w MODEL_NUM_W: the LM head) from the fp32 weights:
// init takes its storage from the arena, refresh reuses its buffers
static int lowp_convert_one(Model *m, int l, int w, int init, char *err, size_t errlen) {
    ModelLowp *lp = m->lowp;
    const ModelConfig *c = &m->config;
    char e[256];
    if (w == MODEL_NUM_W) {
        int rc = init ? lowp_matrix_init_in(&lp->head, &lp->arena, lp->fmt, head_weight(m),
                                            LOWP_OUT_IN, c->n_embd, c->vocab_size, e, sizeof e)
                      : lowp_matrix_refresh(&lp->head, head_weight(m), LOWP_OUT_IN, e, sizeof e);
        return rc ? util_err(err, errlen, "LM head: %s", e) : 0;
    }
    LowpLayout layout = model_kind(c)->layout;
    const float *bias;
    const float *fw = layer_weight(m, l, w, &bias);
    LowpMatrix *lm = &lp->w[(size_t)l * MODEL_NUM_W + w];
    int in, out;
    lowp_w_dims(c, w, &in, &out);
    int rc = init ? lowp_matrix_init_in(lm, &lp->arena, lp->fmt, fw, layout, in, out, e, sizeof e)
                  : lowp_matrix_refresh(lm, fw, layout, e, sizeof e);
    return rc ? util_err(err, errlen, "layer %d matrix %d: %s", l, w, e) : 0;
}

// (re)builds every copy from the fp32 weights: init allocates, refresh reuses the buffers
static int lowp_convert(Model *m, int init, char *err, size_t errlen) {
    for (int l = 0; l < m->config.n_layer; l++)
        for (int w = 0; w < MODEL_NUM_W; w++)
            if (lowp_convert_one(m, l, w, init, err, errlen)) return -1;
    return m->config.lm_head ? lowp_convert_one(m, 0, MODEL_NUM_W, init, err, errlen) : 0;
}

// Frees the fp32 matrices the copies stand for: the weights move to a smaller allocation without
// the four layer products' slots (and an untied lm_head's); the tied embeddings stay (the lookup).
static void lowp_drop_fp32(Model *m) {
    size_t keep[MODEL_NUM_PARAMS], total = 0;
    memcpy(keep, m->param_sizes, sizeof keep);
    for (int w = 0; w < MODEL_NUM_W; w++) keep[LOWP_W_SLOT[w]] = 0;
    if (m->config.lm_head) keep[P_LMHEADW] = 0;
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) total += keep[i];
    float *mem = PAGES_CHECK(total * sizeof(float));
    for (int i = 0; i < MODEL_NUM_PARAMS; i++)
        if (keep[i])
            memcpy(mem + slot_base(keep, i), m->params_memory + slot_base(m->param_sizes, i),
                   keep[i] * sizeof(float));
    util_pages_free(m->params_memory, m->params_bytes);
    m->params_memory = mem;
    m->params_bytes = total * sizeof(float);
    memcpy(m->param_sizes, keep, sizeof keep);
    m->num_params = total;
    carve_params(&m->params, mem, keep);
    m->lowp->dropped = 1;
}

// the bytes of the block holding every copy in fmt (lowp_convert's matrices, in its order)
static size_t lowp_storage(const ModelConfig *c, LowpFormat fmt) {
    size_t total = 0;
    for (int w = 0; w < MODEL_NUM_W; w++) {
        int in, out;
        lowp_w_dims(c, w, &in, &out);
        total += (size_t)c->n_layer * lowp_matrix_storage(fmt, in, out);
    }
    return total + (c->lm_head ? lowp_matrix_storage(fmt, c->n_embd, c->vocab_size) : 0);
}

// A frozen base under adapters keeps its activations in fp32: the kernels that round them to
// bf16 (the AVX512 path: vdpbf16ps) give way to the portable ones, so the forward is the model
// whose matrices are the narrow ones, exactly as the backward (lowp_backward_input, fp32
// activations) differentiates it.
static void lowp_fp32_activations(Model *m) {
    LowpPath path = lowp_path_supported(LOWP_PATH_PORTABLE, m->lowp->fmt) ? LOWP_PATH_PORTABLE
                                                                          : LOWP_PATH_SCALAR;
    size_t n = (size_t)m->config.n_layer * MODEL_NUM_W;
    char e[128];   // the path is supported: no error
    for (size_t i = 0; i <= n; i++) {
        LowpMatrix *x = i < n ? &m->lowp->w[i] : &m->lowp->head;
        if (x->OC && x->path == LOWP_PATH_AVX512) lowp_matrix_set_path(x, path, e, sizeof e);
    }
}

// m->lowp for copies in fmt (flags as model_lowp_attach's), storage reserved, nothing converted
static void lowp_reserve(Model *m, LowpFormat fmt, int flags) {
    m->lowp = CALLOC_CHECK(1, sizeof *m->lowp);
    m->lowp->fmt = fmt;
    m->lowp->full = (flags & MODEL_LOWP_FULL) != 0;
    m->lowp->w = CALLOC_CHECK((size_t)m->config.n_layer * MODEL_NUM_W, sizeof *m->lowp->w);
    lowp_arena_init(&m->lowp->arena, lowp_storage(&m->config, fmt));
}

// the last step of attaching: the fp32 matrices freed (flags), a frozen base's kernels chosen
static void lowp_settle(Model *m, int flags) {
    if (flags & MODEL_LOWP_DROP_FP32) lowp_drop_fp32(m);
    if (m->trainable == MODEL_TRAIN_FROZEN && m->lowp->full) lowp_fp32_activations(m);
}

static int lowp_check_attach(const Model *m, LowpFormat fmt, int flags, char *err,
                             size_t errlen) {
    if (m->lowp && m->lowp->dropped)
        return util_err(err, errlen, "the model's fp32 matrices were freed: no new copies");
    if (fmt != LOWP_FP32 && (flags & MODEL_LOWP_DROP_FP32) &&
        (!(flags & MODEL_LOWP_FULL) || m->trainable == 1))
        return util_err(err, errlen, "only a frozen model read in full from its copies may free "
                        "its fp32 matrices");
    return 0;
}

int model_lowp_attach(Model *m, LowpFormat fmt, int flags, char *err, size_t errlen) {
    if (lowp_check_attach(m, fmt, flags, err, errlen)) return -1;
    model_lowp_detach(m);
    if (fmt == LOWP_FP32) return 0;
    lowp_reserve(m, fmt, flags);
    if (lowp_convert(m, 1, err, errlen)) {
        model_lowp_detach(m);
        return -1;
    }
    lowp_settle(m, flags);
    return 0;
}

int model_lowp_stream_begin(Model *m, LowpFormat fmt, char *err, size_t errlen) {
    if (fmt == LOWP_FP32 || m->lowp)
        return util_err(err, errlen, "loading into copies needs a narrow format and a model "
                        "without copies");
    if (lowp_check_attach(m, fmt, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, err, errlen)) return -1;
    lowp_reserve(m, fmt, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32);
    // each matrix is written, converted and released in turn: in 2 MiB pages its neighbours
    // would stay resident with it
    util_pages_small(m->params_memory, m->params_bytes);
    return 0;
}

int model_lowp_stream_matrix(Model *m, int l, int w, char *err, size_t errlen) {
    if (lowp_convert_one(m, l, w, 1, err, errlen)) return -1;
    const float *bias, *fw = w == MODEL_NUM_W ? head_weight(m) : layer_weight(m, l, w, &bias);
    util_release_pages((void *)fw, (size_t)model_matrix_floats(m, w) * sizeof(float));
    return 0;
}

int model_lowp_stream_end(Model *m, char *err, size_t errlen) {
    ModelLowp *lp = m->lowp;
    for (int l = 0; l < m->config.n_layer; l++)
        for (int w = 0; w < MODEL_NUM_W; w++)
            if (!lp->w[(size_t)l * MODEL_NUM_W + w].OC &&
                lowp_convert_one(m, l, w, 1, err, errlen))
                return -1;
    if (m->config.lm_head && !lp->head.OC &&
        lowp_convert_one(m, 0, MODEL_NUM_W, 1, err, errlen))
        return -1;
    lowp_settle(m, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32);
    return 0;
}

int64_t model_matrix_floats(const Model *m, int w) {
    if (w == MODEL_NUM_W) return (int64_t)m->config.vocab_size * m->config.n_embd;
    int in, out;
    lowp_w_dims(&m->config, w, &in, &out);
    return (int64_t)in * out;
}

int model_matrix_of(const Model *m, const float *p, int *l, int *w) {
    if (m->lowp && m->lowp->dropped) return 0;
    for (int k = 0; k <= MODEL_NUM_W; k++) {
        int slot = k < MODEL_NUM_W ? LOWP_W_SLOT[k] : P_LMHEADW;
        const float *base = m->params_memory + slot_base(m->param_sizes, slot);
        size_t n = m->param_sizes[slot];
        if (!n || p < base || p >= base + n) continue;
        *w = k;
        *l = k < MODEL_NUM_W ? (int)((size_t)(p - base) / (n / (size_t)m->config.n_layer)) : 0;
        return 1;
    }
    return 0;
}

int model_lowp_refresh(Model *m, char *err, size_t errlen) {
    if (m->lowp && m->lowp->dropped)
        return util_err(err, errlen,
                        "the model's fp32 matrices were freed: nothing to refresh from");
    return m->lowp ? lowp_convert(m, 0, err, errlen) : 0;
}

void model_lowp_detach(Model *m) {
    if (!m->lowp) return;
    for (size_t i = 0; i < (size_t)m->config.n_layer * MODEL_NUM_W; i++)
        lowp_matrix_free(&m->lowp->w[i]);
    lowp_matrix_free(&m->lowp->head);
    lowp_arena_free(&m->lowp->arena);
    free(m->lowp->w);
    free(m->lowp);
    m->lowp = NULL;
}

LowpFormat model_lowp_format(const Model *m) { return m->lowp ? m->lowp->fmt : LOWP_FP32; }

// bytes of one in x out matrix in fmt: bf16 2 per weight; int8 1 per weight + a float scale
static int64_t lowp_matrix_size(LowpFormat fmt, int64_t in, int64_t out) {
    return fmt == LOWP_BF16 ? 2 * in * out : fmt == LOWP_INT8 ? in * out + 4 * out : 4 * in * out;
}

static int64_t lowp_bytes_as(const ModelConfig *c, LowpFormat fmt) {
    int64_t total = 0;
    for (int w = 0; w < MODEL_NUM_W; w++) {
        int in, out;
        lowp_w_dims(c, w, &in, &out);
        total += (int64_t)c->n_layer * lowp_matrix_size(fmt, in, out);
    }
    if (c->lm_head) total += lowp_matrix_size(fmt, c->n_embd, c->vocab_size);
    return total;
}

int64_t model_lowp_bytes(const ModelConfig *c, LowpFormat fmt) {
    return fmt == LOWP_FP32 ? 0 : lowp_bytes_as(c, fmt);
}

int64_t model_lowp_fp32_bytes(const ModelConfig *c) { return lowp_bytes_as(c, LOWP_FP32); }

int64_t model_lowp_dropped_bytes(const ModelConfig *c) {
    int64_t head = c->lm_head && !c->untied ? 4 * (int64_t)c->n_embd * c->vocab_size : 0;
    return lowp_bytes_as(c, LOWP_FP32) - head;   // tied embeddings stay for the lookup
}

const LowpMatrix *model_lowp_matrix(const Model *m, int l, int w) {
    if (!m->lowp) return NULL;
    return w == MODEL_NUM_W ? &m->lowp->head : &m->lowp->w[(size_t)l * MODEL_NUM_W + w];
}
