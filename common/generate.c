// KV-cache decoding. The per-layer math is the model's (same kernels); only attention differs:
// a new token at position p attends to the cached keys/values 0..p of its own sequence. What
// differs between the block kinds is in the table kv_steps below; kv_forward (the rows of a call,
// the layers in order, the LM head at each sequence's newest row) is shared.
#include "generate.h"
#include "kernels.h"
#include "lora.h"
#include "lowp.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

// One block kind's decoding step. R rows of this call are in kv->row_tok / row_pos / row_seq; each
// function reads and writes the step activations of kv.
typedef struct {
    int layernorm;   // 1: LayerNorm (means kept per row); 0: RMSNorm
    int rope;        // 1: rotary positions (inv_freq kept)
    // row widths of the fused qkv product, the MLP's input product and its activation
    void (*widths)(const ModelConfig *c, int *qkv_w, int *fc_w, int *act_w);
    void (*embed)(const Model *m, KVCache *kv, int64_t R);             // kv->x = the rows' input
    void (*layer)(const Model *m, KVCache *kv, int l, int64_t R);      // kv->x through layer l
    void (*final_norm)(const Model *m, KVCache *kv, int64_t R);        // kv->ln = norm(kv->x)
} KVStep;

// Appends the keys and values of this call's rows (kv->qkv, after RoPE where used) to each
// sequence's cache of layer l, head by head.
static void kv_append(KVCache *kv, int l, int64_t R) {
    int hd = kv->hd, NH = kv->NH, KVH = kv->KVH;
    for (int64_t j = 0; j < R; j++) {
        int b = kv->row_seq[j], pos = kv->row_pos[j];
        const float *row = kv->qkv + (size_t)j * kv->qkv_w;
        for (int h = 0; h < KVH; h++) {
            size_t dst = ((((size_t)l * kv->max_B + b) * KVH + h) * kv->max_T + pos) * hd;
            const float *k = row + (size_t)(NH + h) * hd, *v = row + (size_t)(NH + KVH + h) * hd;
            if (kv->k16) {
                lowp_bf16_round(kv->k16 + dst, k, (size_t)hd);
                lowp_bf16_round(kv->v16 + dst, v, (size_t)hd);
            } else {
                memcpy(kv->k + dst, k, (size_t)hd * sizeof(float));
                memcpy(kv->v + dst, v, (size_t)hd * sizeof(float));
            }
        }
    }
}

// bf16 bits -> fp32 (exact), inlined in the attention loops
static inline float kv_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// q . cached key (hd values at offset at), and y += w * cached value, in either cache format
static inline float kv_dot_key(const KVCache *kv, size_t at, const float *q, int hd) {
    float d = 0.0f;
    if (kv->k16) {
        const uint16_t *k = kv->k16 + at;
        #pragma omp simd reduction(+:d)
        for (int i = 0; i < hd; i++) d += q[i] * kv_bf16(k[i]);
    } else {
        const float *k = kv->k + at;
        #pragma omp simd reduction(+:d)
        for (int i = 0; i < hd; i++) d += q[i] * k[i];
    }
    return d;
}

static inline void kv_add_value(const KVCache *kv, size_t at, float w, float *y, int hd) {
    if (kv->v16) {
        const uint16_t *v = kv->v16 + at;
        #pragma omp simd
        for (int i = 0; i < hd; i++) y[i] += w * kv_bf16(v[i]);
    } else {
        const float *v = kv->v + at;
        #pragma omp simd
        for (int i = 0; i < hd; i++) y[i] += w * v[i];
    }
}

// Below this many multiply-adds (cached positions x heads x head size, twice) the attention runs
// on the calling thread: a decoding step's early positions take less than waking the others.
#define KV_ATT_SERIAL_MAX 65536

// Attention of each new row against its sequence's cache of layer l (which already holds the row
// itself): query head h reads KV head h / (NH / KVH). out (R, NH * hd). Each (row, head) is
// computed the same way whichever thread takes it.
static void kv_attention(float *out, const KVCache *kv, int64_t R, int l) {
    int NH = kv->NH, hd = kv->hd, group = kv->NH / kv->KVH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = 0;
    for (int64_t r = 0; r < R; r++) work += 2 * ((int64_t)kv->row_pos[r] + 1) * NH * hd;
    #pragma omp parallel for collapse(2) schedule(dynamic, 1) if (work >= KV_ATT_SERIAL_MAX)
    for (int64_t r = 0; r < R; r++) {
        for (int h = 0; h < NH; h++) {
            int b = kv->row_seq[r], pos = kv->row_pos[r];
            size_t base =
                (((size_t)l * kv->max_B + b) * kv->KVH + h / group) * (size_t)kv->max_T * hd;
            const float *q = kv->qkv + (size_t)r * kv->qkv_w + (size_t)h * hd;
            float sc[pos + 1];
            float mx = -INFINITY;
            for (int s = 0; s <= pos; s++) {
                sc[s] = kv_dot_key(kv, base + (size_t)s * hd, q, hd) * scale;
                if (sc[s] > mx) mx = sc[s];
            }
            float sum = 0.0f;
            for (int s = 0; s <= pos; s++) { sc[s] = expf(sc[s] - mx); sum += sc[s]; }
            float inv = 1.0f / sum;
            float *y = out + (size_t)r * NH * hd + (size_t)h * hd;
            for (int i = 0; i < hd; i++) y[i] = 0.0f;
            for (int s = 0; s <= pos; s++)
                kv_add_value(kv, base + (size_t)s * hd, sc[s] * inv, y, hd);
        }
    }
}

// ---- GPT-2: LayerNorm, learned positions, GELU MLP, weights [in, out] ----

static void kv_widths_gpt2(const ModelConfig *c, int *qkv_w, int *fc_w, int *act_w) {
    *qkv_w = 3 * c->n_embd;
    *fc_w = *act_w = 4 * c->n_embd;
}

static void kv_embed_gpt2(const Model *m, KVCache *kv, int64_t R) {
    encoder_forward(kv->x, kv->row_tok, kv->row_pos, m->params.wte, m->params.wpe, R, kv->C);
}

// The attached adapters' share of product `at` (unmerged adapters while sampling: lora.h).
static void kv_lora(const Model *m, int l, int at, const float *in, float *out, size_t ld,
                    int64_t R) {
    if (m->lora) lora_apply(m->lora, l, at, in, out, (int64_t)ld, R);
}

static void kv_layer_gpt2(const Model *m, KVCache *kv, int l, int64_t R) {
    const ModelParams *p = &m->params;
    int C = kv->C;
    float eps = m->config.ln_eps;
    size_t lc = (size_t)l * C;
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln1w + lc, p->ln1b + lc, R, C, eps);
    model_decode_product(m, l, MODEL_W_QKV, kv->qkv, kv->ln, R, 0);
    kv_lora(m, l, LORA_AT_QKV, kv->ln, kv->qkv, 3 * (size_t)C, R);
    kv_append(kv, l, R);
    kv_attention(kv->atty, kv, R, l);
    model_decode_product(m, l, MODEL_W_ATTPROJ, kv->x, kv->atty, R, 1);
    kv_lora(m, l, LORA_AT_O, kv->atty, kv->x, (size_t)C, R);
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln2w + lc, p->ln2b + lc, R, C, eps);
    model_decode_product(m, l, MODEL_W_FC, kv->fch, kv->ln, R, 0);
    kv_lora(m, l, LORA_AT_FC, kv->ln, kv->fch, 4 * (size_t)C, R);
    gelu_forward(kv->fchg, kv->fch, R * 4 * C);
    model_decode_product(m, l, MODEL_W_FCPROJ, kv->x, kv->fchg, R, 1);
    kv_lora(m, l, LORA_AT_DOWN, kv->fchg, kv->x, (size_t)C, R);
}

static void kv_final_norm_gpt2(const Model *m, KVCache *kv, int64_t R) {
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, m->params.lnfw, m->params.lnfb, R, kv->C,
                      m->config.ln_eps);
}

// ---- Llama-style: RMSNorm, RoPE, GQA, optional q/k/v biases and q/k norms, SwiGLU, [out, in] ----

static void kv_widths_llama(const ModelConfig *c, int *qkv_w, int *fc_w, int *act_w) {
    *qkv_w = (c->n_head + 2 * model_kv_heads(c)) * model_head_dim(c);
    *fc_w = 2 * model_ff(c);
    *act_w = model_ff(c);
}

static void kv_embed_llama(const Model *m, KVCache *kv, int64_t R) {
    size_t C = (size_t)kv->C;
    for (int64_t r = 0; r < R; r++)
        memcpy(kv->x + (size_t)r * C, m->params.wte + (size_t)kv->row_tok[r] * C,
               C * sizeof(float));
}

// Qwen3's per-head RMSNorm of nheads heads starting at column col of every qkv row: the heads are
// gathered into (R * nheads, hd) rows, normalised by weight w (hd), and put back.
static void kv_head_norm(KVCache *kv, int col, int nheads, const float *w, int64_t R, float eps) {
    size_t width = (size_t)nheads * kv->hd;
    for (int64_t r = 0; r < R; r++)
        memcpy(kv->hn_in + (size_t)r * width, kv->qkv + (size_t)r * kv->qkv_w + col,
               width * sizeof(float));
    rmsnorm_forward(kv->hn_out, kv->hn_rstd, kv->hn_in, w, R * nheads, kv->hd, eps);
    for (int64_t r = 0; r < R; r++)
        memcpy(kv->qkv + (size_t)r * kv->qkv_w + col, kv->hn_out + (size_t)r * width,
               width * sizeof(float));
}

static void kv_layer_llama(const Model *m, KVCache *kv, int l, int64_t R) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    int C = kv->C, NH = kv->NH, KVH = kv->KVH, hd = kv->hd, QKV = kv->qkv_w, F = kv->act_w;
    size_t lc = (size_t)l * C;
    rmsnorm_forward(kv->ln, kv->rstd, kv->x, p->ln1w + lc, R, C, c->ln_eps);
    model_decode_product(m, l, MODEL_W_QKV, kv->qkv, kv->ln, R, 0);
    kv_lora(m, l, LORA_AT_QKV, kv->ln, kv->qkv, (size_t)QKV, R);
    if (c->qk_norm) {
        kv_head_norm(kv, 0, NH, p->qnormw + (size_t)l * hd, R, c->ln_eps);
        kv_head_norm(kv, NH * hd, KVH, p->knormw + (size_t)l * hd, R, c->ln_eps);
    }
    // q and k heads are adjacent in a row: one rotation at each row's own position
    rope_forward(kv->qkv, kv->row_pos, kv->inv_freq, R, NH + KVH, hd, QKV);
    kv_append(kv, l, R);
    kv_attention(kv->atty, kv, R, l);
    model_decode_product(m, l, MODEL_W_ATTPROJ, kv->x, kv->atty, R, 1);
    kv_lora(m, l, LORA_AT_O, kv->atty, kv->x, (size_t)C, R);
    rmsnorm_forward(kv->ln, kv->rstd, kv->x, p->ln2w + lc, R, C, c->ln_eps);
    model_decode_product(m, l, MODEL_W_FC, kv->fch, kv->ln, R, 0);
    kv_lora(m, l, LORA_AT_FC, kv->ln, kv->fch, 2 * (size_t)F, R);
    swiglu_forward(kv->fchg, kv->fch, R, F);
    model_decode_product(m, l, MODEL_W_FCPROJ, kv->x, kv->fchg, R, 1);
    kv_lora(m, l, LORA_AT_DOWN, kv->fchg, kv->x, (size_t)C, R);
}

static void kv_final_norm_llama(const Model *m, KVCache *kv, int64_t R) {
    rmsnorm_forward(kv->ln, kv->rstd, kv->x, m->params.lnfw, R, kv->C, m->config.ln_eps);
}

static const KVStep kv_steps[] = {
    [MODEL_ARCH_GPT2] = {1, 0, kv_widths_gpt2, kv_embed_gpt2, kv_layer_gpt2, kv_final_norm_gpt2},
    [MODEL_ARCH_LLAMA] = {0, 1, kv_widths_llama, kv_embed_llama, kv_layer_llama,
                          kv_final_norm_llama},
};

static const KVStep *kv_step(int arch) {
    int n = (int)(sizeof kv_steps / sizeof kv_steps[0]);
    return arch >= 0 && arch < n && kv_steps[arch].layer ? &kv_steps[arch] : NULL;
}

// The floats of a cache whose sizes kv holds: one table for kv_init's carving and
// kv_memory_bytes, so they cannot disagree.
typedef struct { float **ptr; size_t n; } KVSlot;

static int kv_layout(KVCache *kv, const KVStep *st, int qk_norm, KVSlot *t) {
    size_t R = (size_t)kv->max_rows, B = (size_t)kv->max_B, C = (size_t)kv->C;
    size_t cache = (size_t)kv->L * B * kv->KVH * kv->max_T * kv->hd;
    if (kv->cache_fmt == LOWP_BF16) cache = (cache + 1) / 2;   // floats holding bf16 pairs
    size_t att = (size_t)kv->NH * kv->hd, hn = qk_norm ? R * att : 0;
    int k = 0;
#define SLOT(field, count) t[k].ptr = &kv->field; t[k].n = (count); k++
    SLOT(k, cache);  SLOT(v, cache);
    SLOT(x, R * C);  SLOT(ln, R * C);  SLOT(mean, st->layernorm ? R : 0);  SLOT(rstd, R);
    SLOT(qkv, R * kv->qkv_w);  SLOT(atty, R * att);
    SLOT(fch, R * kv->fc_w);  SLOT(fchg, R * kv->act_w);
    SLOT(hn_in, hn);  SLOT(hn_out, hn);  SLOT(hn_rstd, qk_norm ? R * kv->NH : 0);
    SLOT(inv_freq, st->rope ? (size_t)kv->hd / 2 : 0);
    SLOT(head_in, B * C);  SLOT(logits, B * kv->V);  SLOT(head_logits, B * kv->V);
#undef SLOT
    return k;
}

// kv's sizes for model c (no memory); NULL step when the architecture has none.
static const KVStep *kv_sizes(KVCache *kv, const ModelConfig *c, int max_B, int max_T,
                              int max_rows, LowpFormat cache_fmt) {
    memset(kv, 0, sizeof(*kv));
    kv->cache_fmt = cache_fmt;
    const KVStep *st = kv_step(c->arch);
    if (!st) return NULL;
    kv->max_B = max_B; kv->max_T = max_T; kv->max_rows = max_rows;
    kv->arch = c->arch;
    kv->L = c->n_layer; kv->NH = c->n_head; kv->KVH = model_kv_heads(c);
    kv->hd = model_head_dim(c); kv->C = c->n_embd; kv->V = c->vocab_size;
    st->widths(c, &kv->qkv_w, &kv->fc_w, &kv->act_w);
    return st;
}

// len, last_row (max_B) and row_tok, row_pos, row_seq, chunk_tok (max_rows)
static size_t kv_int_count(int max_B, int max_rows) {
    return (size_t)max_B * 2 + 4 * (size_t)max_rows;
}

int kv_init(KVCache *kv, const Model *m, int max_B, int max_T, int max_rows, char *err,
            size_t errlen) {
    return kv_init_as(kv, m, max_B, max_T, max_rows, LOWP_FP32, err, errlen);
}

int kv_init_as(KVCache *kv, const Model *m, int max_B, int max_T, int max_rows,
               LowpFormat cache_fmt, char *err, size_t errlen) {
    const ModelConfig *c = &m->config;
    memset(kv, 0, sizeof(*kv));
    if (cache_fmt != LOWP_FP32 && cache_fmt != LOWP_BF16)
        return util_err(err, errlen, "the KV cache is fp32 or bf16, not %s",
                        lowp_format_name(cache_fmt));
    if (!c->lm_head) return util_err(err, errlen, "generation needs a model with an LM head");
    if (max_B <= 0 || max_T <= 0 || max_rows <= 0)
        return util_err(err, errlen, "KV cache sizes must be positive (B=%d T=%d rows=%d)", max_B,
                        max_T, max_rows);
    if (max_T > c->max_seq_len)
        return util_err(err, errlen,
                        "KV cache length %d exceeds the model's context of %d positions "
                        "(n_positions / max_position_embeddings)",
                        max_T, c->max_seq_len);
    const KVStep *st = kv_sizes(kv, c, max_B, max_T, max_rows, cache_fmt);
    if (!st) return util_err(err, errlen, "no KV-cache decoding for architecture %d", c->arch);
    KVSlot t[32];
    int n = kv_layout(kv, st, c->qk_norm, t);
    size_t floats = 0;
    for (int i = 0; i < n; i++) floats += (t[i].n + 15) & ~(size_t)15;   // 64-byte aligned slots
    kv->memory = ALIGNED_CHECK(floats * sizeof(float));
    float *p = kv->memory;
    for (int i = 0; i < n; i++) { *t[i].ptr = t[i].n ? p : NULL; p += (t[i].n + 15) & ~(size_t)15; }
    if (cache_fmt == LOWP_BF16) {   // the cache's slots hold bf16 values, read only as such
        kv->k16 = (uint16_t *)kv->k;
        kv->v16 = (uint16_t *)kv->v;
        kv->k = kv->v = NULL;
    }
    if (st->rope)
        rope_inv_freq(kv->inv_freq, kv->hd, c->rope_theta, c->rope_scaling, c->rope_factor,
                      c->rope_low_freq_factor, c->rope_high_freq_factor,
                      c->rope_original_max_pos);
    size_t R = (size_t)max_rows;
    kv->len = CALLOC_CHECK(kv_int_count(max_B, max_rows), sizeof(int32_t));
    kv->last_row = kv->len + max_B;
    kv->row_tok = kv->last_row + max_B;
    kv->row_pos = kv->row_tok + R;
    kv->row_seq = kv->row_pos + R;
    kv->chunk_tok = kv->row_seq + R;
    kv_release(kv);   // resident only once sequences fill it
    return 0;
}

void kv_free(KVCache *kv) { free(kv->memory); free(kv->len); memset(kv, 0, sizeof(*kv)); }

void kv_reset(KVCache *kv) { memset(kv->len, 0, (size_t)kv->max_B * sizeof(int32_t)); }

size_t kv_cache_bytes(const KVCache *kv) {
    // the keys and values (the first two slots, nearly all of it); the RoPE frequencies are kept
    size_t cache = (size_t)kv->L * kv->max_B * kv->KVH * kv->max_T * kv->hd;
    if (kv->cache_fmt == LOWP_BF16) cache = (cache + 1) / 2;   // floats holding bf16 pairs
    return 2 * ((cache + 15) & ~(size_t)15) * sizeof(float);
}

void kv_release(KVCache *kv) {
    kv_reset(kv);
    util_release_pages(kv->memory, kv_cache_bytes(kv));
}

// Checks a call's sizes and token ids and lays its rows out packed (kv->row_*, last_row);
// returns the number of rows or -1 with a message.
static int64_t kv_rows(KVCache *kv, const int32_t *tokens, const int32_t *n_new, int B, int Tc,
                       char *err, size_t errlen) {
    if (B <= 0 || B > kv->max_B)
        return util_err(err, errlen, "batch size %d is outside 1..%d of the KV cache", B,
                        kv->max_B);
    int64_t R = 0;
    for (int b = 0; b < B; b++) {
        if (n_new[b] < 0 || n_new[b] > Tc)
            return util_err(err, errlen, "sequence %d: %d new tokens outside 0..%d", b, n_new[b],
                            Tc);
        if (kv->len[b] + n_new[b] > kv->max_T)
            return util_err(err, errlen,
                            "sequence %d would reach %d positions, more than the cache's %d", b,
                            kv->len[b] + n_new[b], kv->max_T);
        R += n_new[b];
    }
    if (R > kv->max_rows)
        return util_err(err, errlen, "%lld new tokens exceed the cache's %d rows per call",
                        (long long)R, kv->max_rows);
    int64_t r = 0;
    for (int b = 0; b < B; b++) {
        kv->last_row[b] = -1;
        for (int i = 0; i < n_new[b]; i++, r++) {
            int32_t tok = tokens[(size_t)b * Tc + i];
            if (tok < 0 || tok >= kv->V)
                return util_err(err, errlen, "token id %d is outside the vocabulary 0..%d", tok,
                                kv->V - 1);
            kv->row_tok[r] = tok; kv->row_pos[r] = kv->len[b] + i; kv->row_seq[r] = b;
            kv->last_row[b] = (int32_t)r;
        }
    }
    return R;
}

int kv_forward(const Model *m, KVCache *kv, const int32_t *tokens, const int32_t *n_new, int B,
               int Tc, float *all_logits, char *err, size_t errlen) {
    const ModelConfig *c = &m->config;
    const KVStep *st = kv_step(kv->arch);
    int C = kv->C, V = kv->V;
    if (!st || c->arch != kv->arch || c->n_layer != kv->L || c->n_embd != C ||
        c->vocab_size != V || model_kv_heads(c) != kv->KVH)
        return util_err(err, errlen, "the KV cache was made for another model's shape");
    int64_t R = kv_rows(kv, tokens, n_new, B, Tc, err, errlen);
    if (R <= 0) return (int)R;
    lora_bias_install(m, m->lora);   // decoding is with the attached adapters, biases included
    st->embed(m, kv, R);
    for (int l = 0; l < c->n_layer; l++) st->layer(m, kv, l, R);
    st->final_norm(m, kv, R);
    for (int b = 0; b < B; b++) kv->len[b] += n_new[b];
    // the LM head: embed_tokens when tied (GPT-2 always), lm_head when untied; its narrow copy
    // when the model has one
    if (all_logits) model_decode_head(m, all_logits, kv->ln, R);
    // logits at each sequence's newest position only: the rest are not needed to sample
    int nb = 0;
    for (int b = 0; b < B; b++)
        if (kv->last_row[b] >= 0)
            memcpy(kv->head_in + (size_t)nb++ * C, kv->ln + (size_t)kv->last_row[b] * C,
                   (size_t)C * sizeof(float));
    model_decode_head(m, kv->head_logits, kv->head_in, nb);
    // each sequence's slot is written only when it had new tokens: earlier logits survive
    for (int b = 0, j = 0; b < B; b++)
        if (kv->last_row[b] >= 0)
            memcpy(kv->logits + (size_t)b * V, kv->head_logits + (size_t)j++ * V,
                   (size_t)V * sizeof(float));
    return 0;
}

// rng_stride 0: one generator for the whole batch; 1: rng[b] for sequence b.
static int generate(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rng,
                    int rng_stride, const int32_t *prompts, const int32_t *prompt_lens, int B,
                    int Tp, int32_t *out, int32_t *out_lens, GenCallback cb, void *user, char *err,
                    size_t errlen) {
    if (B > kv->max_B)
        return util_err(err, errlen, "batch of %d prompts exceeds the KV cache's %d", B, kv->max_B);
    if (g->max_new_tokens < 0) return util_err(err, errlen, "max_new_tokens must be >= 0");
    for (int b = 0; b < B; b++) {
        if (prompt_lens[b] <= 0 || prompt_lens[b] > Tp)
            return util_err(err, errlen, "prompt %d has length %d outside 1..%d", b, prompt_lens[b],
                            Tp);
        if (prompt_lens[b] + g->max_new_tokens > kv->max_T)
            return util_err(err, errlen,
                            "prompt %d (%d tokens) plus %d new tokens exceeds the context of %d", b,
                            prompt_lens[b], g->max_new_tokens, kv->max_T);
        out_lens[b] = 0;
    }
    if (g->max_new_tokens == 0) return 0;
    kv_reset(kv);
    // prefill in chunks of at most max_rows tokens in total; a prompt that ends in an earlier
    // chunk keeps its logits while the longer ones go on
    int chunk = kv->max_rows / B;
    if (chunk < 1)
        return util_err(err, errlen,
                        "the KV cache's %d rows per call cannot hold one row per prompt",
                        kv->max_rows);
    int32_t nn[B], done[B], cur[B];
    int32_t *tok_chunk = kv->chunk_tok;   // B * chunk <= max_rows
    for (int b = 0; b < B; b++) done[b] = 0;
    for (int start = 0; start < Tp; start += chunk) {
        int any = 0;
        for (int b = 0; b < B; b++) {
            int left = prompt_lens[b] - start;
            nn[b] = left <= 0 ? 0 : left < chunk ? left : chunk;
            for (int i = 0; i < nn[b]; i++)
                tok_chunk[(size_t)b * chunk + i] = prompts[(size_t)b * Tp + start + i];
            any |= nn[b] > 0;
        }
        if (!any) break;
        if (kv_forward(m, kv, tok_chunk, nn, B, chunk, NULL, err, errlen)) return -1;
    }
    for (int step = 0; step < g->max_new_tokens; step++) {
        if (g->cancel && g->cancel(g->cancel_user)) return 1;
        int active = 0;
        for (int b = 0; b < B; b++) {
            nn[b] = 0;
            if (done[b]) continue;
            int32_t t = sampler_sample(s, &g->sampler, kv->logits + (size_t)b * kv->V,
                                       rng + (size_t)b * rng_stride);
            out[(size_t)b * g->max_new_tokens + out_lens[b]++] = t;
            if (cb) cb(user, b, t);
            if (gen_is_stop(g, t) || out_lens[b] == g->max_new_tokens) { done[b] = 1; continue; }
            cur[b] = t; nn[b] = 1; active++;
        }
        if (!active) break;
        if (kv_forward(m, kv, cur, nn, B, 1, NULL, err, errlen)) return -1;
    }
    return 0;
}

// ---- continuous batching: n sequences through B slots ----

// What gen_generate_queue keeps per slot: the sequence in it (-1: free), how many of its prompt
// tokens the cache holds, and (g->share_prompts) the slot whose prompt it waits to copy (-1: none).
typedef struct { int seq, fed, src; } GenSlot;

// Copies the first n cached positions of slot src (keys and values of every layer and KV head)
// and its newest logits into slot dst, whose cached length becomes n.
static void kv_copy_slot(KVCache *kv, int dst, int src, int n) {
    size_t span = (size_t)n * kv->hd, stride = (size_t)kv->max_T * kv->hd;
    for (int l = 0; l < kv->L; l++)
        for (int h = 0; h < kv->KVH; h++) {
            size_t from = (((size_t)l * kv->max_B + src) * kv->KVH + h) * stride;
            size_t to = (((size_t)l * kv->max_B + dst) * kv->KVH + h) * stride;
            if (kv->k16) {
                memcpy(kv->k16 + to, kv->k16 + from, span * sizeof(uint16_t));
                memcpy(kv->v16 + to, kv->v16 + from, span * sizeof(uint16_t));
            } else {
                memcpy(kv->k + to, kv->k + from, span * sizeof(float));
                memcpy(kv->v + to, kv->v + from, span * sizeof(float));
            }
        }
    memcpy(kv->logits + (size_t)dst * kv->V, kv->logits + (size_t)src * kv->V,
           (size_t)kv->V * sizeof(float));
    kv->len[dst] = n;
}

// Slots waiting for a prompt (g->share_prompts) whose source now holds all of it, and has not yet
// sampled from its logits, take their copy: they sample in this step beside the source.
static void queue_copy(KVCache *kv, const int32_t *prompt_lens, GenSlot *slot, int B) {
    for (int b = 0; b < B; b++) {
        int src = slot[b].src;
        if (src < 0) continue;
        int n = prompt_lens[slot[b].seq];
        if (slot[src].fed < n) continue;   // still prefilling
        kv_copy_slot(kv, b, src, n);
        slot[b].fed = n;
        slot[b].src = -1;
    }
}

// A slot other than b whose sequence has prompt q's tokens and has not sampled yet (so that its
// cache will hold just that prompt and its logits those of the prompt's end), or -1.
static int queue_source(const int32_t *prompts, const int32_t *prompt_lens, int Tp,
                        const GenSlot *slot, int B, int b, int q, const int32_t *out_lens) {
    for (int o = 0; o < B; o++) {
        int p = slot[o].seq;
        if (o == b || p < 0 || slot[o].src >= 0 || out_lens[p] > 0 ||
            prompt_lens[p] != prompt_lens[q])
            continue;
        if (!memcmp(prompts + (size_t)p * Tp, prompts + (size_t)q * Tp,
                    (size_t)prompt_lens[q] * sizeof(int32_t)))
            return o;
    }
    return -1;
}

// Samples the next token of every slot whose prompt is in the cache (its logits are those of its
// newest position): a sequence that ends frees its slot (seq -1), one that goes on gets its token
// as this call's row (nn 1). Returns the rows used.
static int queue_sample(KVCache *kv, Sampler *s, const GenConfig *g, Rng *rngs,
                        const int32_t *prompt_lens, GenSlot *slot, int B, int Tc, int32_t *tok,
                        int32_t *nn, int32_t *out, int32_t *out_lens, GenCallback cb, void *user) {
    int rows = 0;
    for (int b = 0; b < B; b++) {
        nn[b] = 0;
        int q = slot[b].seq;
        if (q < 0 || slot[b].src >= 0 || slot[b].fed < prompt_lens[q]) continue;
        int32_t t = sampler_sample(s, &g->sampler, kv->logits + (size_t)b * kv->V, &rngs[q]);
        out[(size_t)q * g->max_new_tokens + out_lens[q]++] = t;
        if (cb) cb(user, q, t);
        if (gen_is_stop(g, t) || out_lens[q] == g->max_new_tokens) { slot[b].seq = -1; continue; }
        tok[(size_t)b * Tc] = t;
        nn[b] = 1;
        rows++;
    }
    return rows;
}

// Puts the next waiting sequences (from *next) into the free slots, their cache emptied (with
// share, one whose prompt another slot is prefilling waits for its copy), and gives the prompts
// not yet in the cache up to `budget` rows of this call, in slot order (a prompt longer than
// what is left goes on in the next calls). Returns the rows used.
static int queue_prefill(KVCache *kv, const int32_t *prompts, const int32_t *prompt_lens, int n,
                         int Tp, GenSlot *slot, int B, int Tc, int *next, int budget, int share,
                         const int32_t *out_lens, int32_t *tok, int32_t *nn) {
    int rows = 0;
    for (int b = 0; b < B; b++) {
        if (slot[b].seq < 0 && *next < n) {
            slot[b] = (GenSlot){(*next)++, 0, -1};
            kv->len[b] = 0;
            if (share)
                slot[b].src = queue_source(prompts, prompt_lens, Tp, slot, B, b, slot[b].seq,
                                           out_lens);
        }
        int q = slot[b].seq;
        if (q < 0 || slot[b].src >= 0 || slot[b].fed >= prompt_lens[q] || rows >= budget)
            continue;
        int k = prompt_lens[q] - slot[b].fed;
        if (k > Tc) k = Tc;
        if (k > budget - rows) k = budget - rows;
        memcpy(tok + (size_t)b * Tc, prompts + (size_t)q * Tp + slot[b].fed,
               (size_t)k * sizeof(int32_t));
        nn[b] = k;
        slot[b].fed += k;
        rows += k;
    }
    return rows;
}

int gen_generate_queue(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rngs,
                       const int32_t *prompts, const int32_t *prompt_lens, int n, int Tp, int B,
                       int32_t *out, int32_t *out_lens, GenCallback cb, void *user, char *err,
                       size_t errlen) {
    if (B <= 0 || B > kv->max_B)
        return util_err(err, errlen, "%d slots are outside 1..%d of the KV cache", B, kv->max_B);
    if (B > kv->max_rows)
        return util_err(err, errlen,
                        "the KV cache's %d rows per call cannot hold one row per slot (%d)",
                        kv->max_rows, B);
    if (g->max_new_tokens < 0) return util_err(err, errlen, "max_new_tokens must be >= 0");
    for (int q = 0; q < n; q++) {
        if (prompt_lens[q] <= 0 || prompt_lens[q] > Tp)
            return util_err(err, errlen, "prompt %d has length %d outside 1..%d", q,
                            prompt_lens[q], Tp);
        if (prompt_lens[q] + g->max_new_tokens > kv->max_T)
            return util_err(err, errlen,
                            "prompt %d (%d tokens) plus %d new tokens exceeds the context of %d", q,
                            prompt_lens[q], g->max_new_tokens, kv->max_T);
        out_lens[q] = 0;
    }
    if (g->max_new_tokens == 0 || n <= 0) return 0;
    // a call's tokens: (B, Tc), a prefill chunk of at most Tc tokens per slot
    int Tc = Tp < kv->max_rows ? Tp : kv->max_rows, next = 0, rc = 0;
    int32_t *tok = MALLOC_CHECK((size_t)B * Tc * sizeof(int32_t)), nn[B];
    GenSlot slot[B];
    for (int b = 0; b < B; b++) slot[b] = (GenSlot){-1, 0, -1};
    for (;;) {
        if (g->cancel && g->cancel(g->cancel_user)) { rc = 1; break; }
        queue_copy(kv, prompt_lens, slot, B);
        int rows = queue_sample(kv, s, g, rngs, prompt_lens, slot, B, Tc, tok, nn, out, out_lens,
                                cb, user);
        rows += queue_prefill(kv, prompts, prompt_lens, n, Tp, slot, B, Tc, &next,
                              kv->max_rows - rows, g->share_prompts, out_lens, tok, nn);
        if (rows == 0) break;   // every slot free and no sequence waiting
        if (kv_forward(m, kv, tok, nn, B, Tc, NULL, err, errlen)) { rc = -1; break; }
    }
    free(tok);
    return rc;
}

int gen_is_stop(const GenConfig *g, int32_t token) {
    if (token == g->eot_id) return 1;
    for (int i = 0; i < g->n_stop && i < GEN_MAX_STOP; i++)
        if (token == g->stop_ids[i]) return 1;
    return 0;
}

int gen_generate(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rng,
                 const int32_t *prompts, const int32_t *prompt_lens, int B, int Tp, int32_t *out,
                 int32_t *out_lens, GenCallback cb, void *user, char *err, size_t errlen) {
    return generate(m, kv, s, g, rng, 0, prompts, prompt_lens, B, Tp, out, out_lens, cb, user, err,
                    errlen);
}

int gen_generate_each(const Model *m, KVCache *kv, Sampler *s, const GenConfig *g, Rng *rngs,
                      const int32_t *prompts, const int32_t *prompt_lens, int B, int Tp,
                      int32_t *out, int32_t *out_lens, GenCallback cb, void *user, char *err,
                      size_t errlen) {
    return generate(m, kv, s, g, rngs, 1, prompts, prompt_lens, B, Tp, out, out_lens, cb, user, err,
                    errlen);
}

size_t kv_memory_bytes(const ModelConfig *c, int max_B, int max_T, int max_rows) {
    return kv_memory_bytes_as(c, max_B, max_T, max_rows, LOWP_FP32);
}

size_t kv_memory_bytes_as(const ModelConfig *c, int max_B, int max_T, int max_rows,
                          LowpFormat cache_fmt) {
    // the same table as kv_init: cache, step activations, logits, then the int32 bookkeeping
    KVCache d;
    const KVStep *st = kv_sizes(&d, c, max_B, max_T, max_rows, cache_fmt);
    if (!st) return 0;
    KVSlot t[32];
    int n = kv_layout(&d, st, c->qk_norm, t);
    size_t floats = 0;
    for (int i = 0; i < n; i++) floats += (t[i].n + 15) & ~(size_t)15;
    return floats * sizeof(float) + kv_int_count(max_B, max_rows) * sizeof(int32_t);
}
