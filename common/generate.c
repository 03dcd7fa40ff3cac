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
#include <omp.h>
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

// bf16 bits -> fp32 (exact)
static inline float kv_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

// Keys are cached transposed in blocks of KV_BLOCK positions, (hd, KV_BLOCK) per block, so that a
// block's scores are vectors over its positions; values are cached as rows of hd. Each
// (layer, sequence, KV head) holds pos_stride positions (max_T rounded up to KV_BLOCK).
#define KV_BLOCK 16

// Offset of the cache of layer l, sequence b, KV head h (keys and values alike).
static size_t kv_slot_at(const KVCache *kv, int l, int b, int h) {
    return (((size_t)l * kv->max_B + b) * kv->KVH + h) * (size_t)kv->pos_stride * kv->hd;
}

// Partial sums of a dot product of the attention scores (kv_score_block): 16 for fp32, 32 for
// bf16 caches
static inline int kv_lanes(int bf16) { return bf16 ? 32 : 16; }

// The row of element i of a key within its block: the rows are stored in the order the scores
// read them, partial sum by partial sum (elements u, u + lanes, ... for u = 0, 1, ...), then the
// elements past the last whole `lanes`, so that a block is read from start to end.
static inline int kv_key_row(int i, int hd, int bf16) {
    int lanes = kv_lanes(bf16), hv = hd - hd % lanes;
    return i < hv ? i % lanes * (hv / lanes) + i / lanes : i;
}

// Appends the keys and values of this call's rows (kv->qkv, after RoPE where used) to each
// sequence's cache of layer l, head by head.
static void kv_append(KVCache *kv, int l, int64_t R) {
    int hd = kv->hd, NH = kv->NH, KVH = kv->KVH;
    uint16_t k16[hd];
    for (int64_t j = 0; j < R; j++) {
        int b = kv->row_seq[j], pos = kv->row_pos[j];
        const float *row = kv->qkv + (size_t)j * kv->qkv_w;
        for (int h = 0; h < KVH; h++) {
            size_t at = kv_slot_at(kv, l, b, h);
            size_t kat = at + (size_t)(pos - pos % KV_BLOCK) * hd + pos % KV_BLOCK;
            size_t vat = at + (size_t)pos * hd;
            const float *k = row + (size_t)(NH + h) * hd, *v = row + (size_t)(NH + KVH + h) * hd;
            if (kv->k16) {
                lowp_bf16_round(k16, k, (size_t)hd);
                for (int i = 0; i < hd; i++)
                    kv->k16[kat + (size_t)kv_key_row(i, hd, 1) * KV_BLOCK] = k16[i];
                lowp_bf16_round(kv->v16 + vat, v, (size_t)hd);
            } else {
                for (int i = 0; i < hd; i++)
                    kv->k[kat + (size_t)kv_key_row(i, hd, 0) * KV_BLOCK] = k[i];
                memcpy(kv->v + vat, v, (size_t)hd * sizeof(float));
            }
        }
    }
}

// KV_BLOCK floats (one per position of a key block, or KV_BLOCK values of a row): a GCC vector
// type, lowered to whatever width the target has. Its products and sums are contracted into
// fused multiply-adds on targets with FMA (every x86-64 CPU with AVX2), as the scalar kernel
// before it was.
typedef float KVVec __attribute__((vector_size(KV_BLOCK * sizeof(float))));

// Query heads of a group scored and weighted together (each key and value read once for them)
#define KV_SET 4
#define KV_INLINE static inline __attribute__((always_inline))

// KV_BLOCK cached floats at offset at of the keys (key = 1) or values, bf16 or fp32 (a constant
// in each caller's copy; bf16 -> fp32 is exact)
KV_INLINE KVVec kv_load(const KVCache *kv, int bf16, int key, size_t at) {
    KVVec f;
    if (bf16) {
        const uint16_t *h = (key ? kv->k16 : kv->v16) + at;
        float t[KV_BLOCK];
        #pragma omp simd
        for (int i = 0; i < KV_BLOCK; i++) t[i] = kv_bf16(h[i]);
        memcpy(&f, t, sizeof f);
    } else {
        memcpy(&f, (key ? kv->k : kv->v) + at, sizeof f);
    }
    return f;
}

// The scores q[j] . key of the KV_BLOCK positions of the key block at kb, for nh <= KV_SET heads,
// into d[j]. Each dot product is summed in one fixed order, that of a vector loop of `lanes`
// partial sums (16 for fp32, 32 for bf16 caches; the order the one-position kernel before this
// one compiled to on AVX-512): partial sum u takes elements u, u + lanes, ... below
// hv = hd - hd % lanes by multiply-adds (fused where the build contracts them, as from -O2); the
// rest are multiplied, then added to partial 0;
// the dot is 0 + partial 0 + partial 1 + ... in turn. So a score does not depend on the block,
// the heads beside it or the thread.
KV_INLINE void kv_score_block(KVVec *d, const float *const *q, int nh, int bf16,
                              const KVCache *kv, size_t kb, int hd) {
    int lanes = kv_lanes(bf16), hv = hd - hd % lanes;
    KVVec dd[KV_SET];
    #pragma GCC unroll 4
    for (int j = 0; j < nh; j++) dd[j] = (KVVec){0};
    size_t row = kb;   // the block's rows in order (kv_key_row)
    for (int u = 0; u < lanes; u++) {
        KVVec a[KV_SET];
        #pragma GCC unroll 4
        for (int j = 0; j < nh; j++) a[j] = (KVVec){0};
        #pragma GCC unroll 4
        for (int i = u; i < hv; i += lanes, row += KV_BLOCK) {
            KVVec k = kv_load(kv, bf16, 1, row);
            #pragma GCC unroll 4
            for (int j = 0; j < nh; j++) a[j] += q[j][i] * k;
        }
        for (int i = hv; u == 0 && i < hd; i++) {
            KVVec k = kv_load(kv, bf16, 1, kb + (size_t)i * KV_BLOCK);   // the rows at the end
            #pragma GCC unroll 4
            for (int j = 0; j < nh; j++) {
                KVVec p = q[j][i] * k;
                __asm__("" : "+m"(p));   // rounded product, then the sum: not fused
                a[j] = a[j] + p;
            }
        }
        #pragma GCC unroll 4
        for (int j = 0; j < nh; j++) dd[j] = dd[j] + a[j];
    }
    #pragma GCC unroll 4
    for (int j = 0; j < nh; j++) d[j] = dd[j];
}

// y[j][c .. c + nc * KV_BLOCK) = sum over positions s < n of w[j][s] * value s, fused
// multiply-adds in position order from 0 (for nh <= KV_SET heads, nc <= 4 chunks of KV_BLOCK)
KV_INLINE void kv_value_chunks(float *const *y, const float *const *w, int nh, int nc, int bf16,
                               const KVCache *kv, size_t vb, int hd, int c, int n) {
    KVVec acc[KV_SET][4];
    #pragma GCC unroll 16
    for (int j = 0; j < nh * nc; j++) acc[j / nc][j % nc] = (KVVec){0};
    for (int s = 0; s < n; s++) {
        #pragma GCC unroll 4
        for (int u = 0; u < nc; u++) {
            KVVec v = kv_load(kv, bf16, 0, vb + (size_t)s * hd + c + u * KV_BLOCK);
            #pragma GCC unroll 4
            for (int j = 0; j < nh; j++) acc[j][u] += w[j][s] * v;
        }
    }
    #pragma GCC unroll 16
    for (int j = 0; j < nh * nc; j++)
        memcpy(y[j / nc] + c + (j % nc) * KV_BLOCK, &acc[j / nc][j % nc], sizeof(KVVec));
}

// The scalar rest of y (elements hv .. hd), the same sums one element at a time (fmaf: GCC does
// not fuse a product and a sum across the format's branches by itself)
static void kv_value_rest(float *const *y, const float *const *w, int nh, const KVCache *kv,
                          size_t vb, int hd, int hv, int n) {
    for (int j = 0; j < nh; j++)
        for (int i = hv; i < hd; i++) {
            float acc = 0.0f;
            if (kv->v16) {
                for (int s = 0; s < n; s++)
                    acc = fmaf(w[j][s], kv_bf16(kv->v16[vb + (size_t)s * hd + i]), acc);
            } else {
                for (int s = 0; s < n; s++)
                    acc = fmaf(w[j][s], kv->v[vb + (size_t)s * hd + i], acc);
            }
            y[j][i] = acc;
        }
}

// Softmax of each of nh rows w[j] of n scores, in place: the exponentials of (score - max), then
// their sum in position order, then each times the sum's inverse.
static void kv_softmax(float *const *w, int nh, int n) {
    for (int j = 0; j < nh; j++) {
        float mx = -INFINITY, sum = 0.0f;
        for (int s = 0; s < n; s++) if (w[j][s] > mx) mx = w[j][s];
        for (int s = 0; s < n; s++) w[j][s] = expf(w[j][s] - mx);
        for (int s = 0; s < n; s++) sum += w[j][s];
        float inv = 1.0f / sum;
        for (int s = 0; s < n; s++) w[j][s] *= inv;
    }
}

// Attention of nh query heads (queries q[j], outputs y[j]) over the n = pos + 1 cached positions
// of the KV head cached at `at`; sc: nh rows of n rounded up to KV_BLOCK floats.
KV_INLINE void kv_attend_heads(float *const *y, const float *const *q, int nh, int bf16,
                               const KVCache *kv, size_t at, int n, float *sc, float scale) {
    int hd = kv->hd, np = (n + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK;
    float *w[KV_SET];
    for (int j = 0; j < nh; j++) w[j] = sc + (size_t)j * np;
    for (int s0 = 0; s0 < n; s0 += KV_BLOCK) {
        KVVec d[KV_SET];
        kv_score_block(d, q, nh, bf16, kv, at + (size_t)s0 * hd, hd);
        #pragma GCC unroll 4
        for (int j = 0; j < nh; j++) {
            KVVec t = d[j] * scale;
            memcpy(w[j] + s0, &t, sizeof t);
        }
    }
    kv_softmax(w, nh, n);
    const float *const *wc = (const float *const *)w;
    int c = 0;
    if (nh <= 2)
        for (; c + 4 * KV_BLOCK <= hd; c += 4 * KV_BLOCK)
            kv_value_chunks(y, wc, nh, 4, bf16, kv, at, hd, c, n);
    for (; c + 2 * KV_BLOCK <= hd; c += 2 * KV_BLOCK)
        kv_value_chunks(y, wc, nh, 2, bf16, kv, at, hd, c, n);
    for (; c + KV_BLOCK <= hd; c += KV_BLOCK) kv_value_chunks(y, wc, nh, 1, bf16, kv, at, hd, c, n);
    kv_value_rest(y, wc, nh, kv, at, hd, c, n);
}

// kv_attend_heads with nh and the cache format constants in each branch (its loops unrolled,
// partial sums kept in registers)
static void kv_attend_set(float *const *y, const float *const *q, int nh, const KVCache *kv,
                          size_t at, int n, float *sc, float scale) {
#define KV_CASE(NHC, BF)                                                  \
    case NHC * 2 + BF: kv_attend_heads(y, q, NHC, BF, kv, at, n, sc, scale); break
    switch ((nh < KV_SET ? nh : KV_SET) * 2 + (kv->k16 != NULL)) {
    KV_CASE(1, 0); KV_CASE(1, 1); KV_CASE(2, 0); KV_CASE(2, 1);
    KV_CASE(3, 0); KV_CASE(3, 1); KV_CASE(4, 0); default: KV_CASE(4, 1);
    }
#undef KV_CASE
}

// Below this many multiply-adds (cached positions x heads x head size, twice) the attention runs
// on the calling thread: a decoding step's early positions take less than waking the others.
#define KV_ATT_SERIAL_MAX 65536
// The most floats a set of query heads keeps for its scores (128 KiB of its thread's stack);
// past that, sets shrink down to one head, whose scores take one float per position.
#define KV_SET_SCORES 32768

// Attention of each new row against its sequence's cache of layer l (which already holds the row
// itself): query head h reads KV head h / (NH / KVH). out (R, NH * hd). One task per row, KV head
// and set of up to KV_SET of its query heads (single heads when that gives the threads too few
// tasks); each (row, head) is computed the same way whichever set, task or thread has it.
void kv_attention(float *out, const KVCache *kv, int64_t R, int l) {
    int NH = kv->NH, KVH = kv->KVH, hd = kv->hd, group = NH / KVH;
    float scale = 1.0f / sqrtf((float)hd);
    int64_t work = 0;
    for (int64_t r = 0; r < R; r++) work += 2 * ((int64_t)kv->row_pos[r] + 1) * NH * hd;
    int per = group < KV_SET ? group : KV_SET;
    if (R * KVH * ((group + per - 1) / per) < 4 * (int64_t)omp_get_max_threads()) per = 1;
    // a set's scores live on its thread's stack: long contexts take smaller sets (each head's
    // bits are the same in any set), so that the buffer stays within KV_SET_SCORES floats
    int64_t nmax = 0;
    for (int64_t r = 0; r < R; r++)
        if (kv->row_pos[r] + 1 > nmax) nmax = kv->row_pos[r] + 1;
    while (per > 1 && per * (nmax + KV_BLOCK) > KV_SET_SCORES) per--;
    int sets = (group + per - 1) / per;
    #pragma omp parallel for collapse(3) schedule(dynamic, 1) if (work >= KV_ATT_SERIAL_MAX)
    for (int64_t r = 0; r < R; r++) {
        for (int g = 0; g < KVH; g++) {
            for (int e = 0; e < sets; e++) {
                int b = kv->row_seq[r], n = kv->row_pos[r] + 1;
                int h0 = g * group + e * per, nh = group - e * per < per ? group - e * per : per;
                const float *q[KV_SET];
                float *y[KV_SET];
                for (int j = 0; j < nh; j++) {
                    q[j] = kv->qkv + (size_t)r * kv->qkv_w + (size_t)(h0 + j) * hd;
                    y[j] = out + (size_t)r * NH * hd + (size_t)(h0 + j) * hd;
                }
                float sc[(size_t)nh * ((n + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK)];
                kv_attend_set(y, q, nh, kv, kv_slot_at(kv, l, b, g), n, sc, scale);
            }
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
    size_t cache = (size_t)kv->L * B * kv->KVH * kv->pos_stride * kv->hd;
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

// kv's float slots placed from p on, the ones kept (inv_freq) skipped when keep_rope; returns the
// floats placed
static size_t kv_carve(KVCache *kv, const KVSlot *t, int n, float *p, int keep_rope) {
    size_t floats = 0;
    for (int i = 0; i < n; i++) {
        if (keep_rope && t[i].ptr == &kv->inv_freq) continue;
        *t[i].ptr = t[i].n ? p + floats : NULL;
        floats += (t[i].n + 15) & ~(size_t)15;   // 64-byte aligned slots
    }
    if (kv->cache_fmt == LOWP_BF16) {   // the cache's slots hold bf16 values, read only as such
        kv->k16 = (uint16_t *)kv->k;
        kv->v16 = (uint16_t *)kv->v;
        kv->k = kv->v = NULL;
    }
    return floats;
}

// kv's sizes for model c (no memory); NULL step when the architecture has none.
static const KVStep *kv_sizes(KVCache *kv, const ModelConfig *c, int max_B, int max_T,
                              int max_rows, LowpFormat cache_fmt) {
    memset(kv, 0, sizeof(*kv));
    kv->cache_fmt = cache_fmt;
    const KVStep *st = kv_step(c->arch);
    if (!st) return NULL;
    kv->max_B = max_B; kv->max_T = max_T; kv->max_rows = max_rows;
    kv->pos_stride = (max_T + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK;
    kv->arch = c->arch;
    kv->L = c->n_layer; kv->NH = c->n_head; kv->KVH = model_kv_heads(c);
    kv->hd = model_head_dim(c); kv->C = c->n_embd; kv->V = c->vocab_size;
    st->widths(c, &kv->qkv_w, &kv->fc_w, &kv->act_w);
    return st;
}

// the floats of a cache of these sizes (the same table as kv_init), the RoPE frequencies only
// with rope; 0 when the architecture has no decoding step
static size_t kv_floats(const ModelConfig *c, int max_B, int max_T, int max_rows,
                        LowpFormat cache_fmt, int rope) {
    KVCache d;
    const KVStep *st = kv_sizes(&d, c, max_B, max_T, max_rows, cache_fmt);
    if (!st) return 0;
    KVSlot t[32];
    int n = kv_layout(&d, st, c->qk_norm, t);
    size_t floats = 0;
    for (int i = 0; i < n; i++)
        if (rope || t[i].ptr != &d.inv_freq) floats += (t[i].n + 15) & ~(size_t)15;
    return floats;
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
    size_t floats = kv_floats(c, max_B, max_T, max_rows, cache_fmt, 1);
    kv->memory = ALIGNED_CHECK(floats * sizeof(float));
    kv_carve(kv, t, n, kv->memory, 0);
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

size_t kv_shared_bytes(const ModelConfig *c, int max_B, int max_T, int max_rows,
                       LowpFormat cache_fmt) {
    return kv_floats(c, max_B, max_T, max_rows, cache_fmt, 0) * sizeof(float);
}

int kv_share_memory(KVCache *kv, const Model *m, float *block, size_t bytes) {
    if (kv->shared || !kv->memory ||
        kv_shared_bytes(&m->config, kv->max_B, kv->max_T, kv->max_rows, kv->cache_fmt) > bytes)
        return -1;
    kv_release(kv);   // its own pages: not resident (nothing writes them now)
    KVSlot t[32];
    int n = kv_layout(kv, kv_step(kv->arch), m->config.qk_norm, t);
    kv_carve(kv, t, n, block, 1);
    kv->shared = 1;
    return 0;
}

void kv_free(KVCache *kv) { free(kv->memory); free(kv->len); memset(kv, 0, sizeof(*kv)); }

void kv_reset(KVCache *kv) { memset(kv->len, 0, (size_t)kv->max_B * sizeof(int32_t)); }

size_t kv_cache_bytes(const KVCache *kv) {
    if (kv->shared) return 0;
    // the keys and values (the first two slots, nearly all of it); the RoPE frequencies are kept
    size_t cache = (size_t)kv->L * kv->max_B * kv->KVH * kv->pos_stride * kv->hd;
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
    // whole key blocks: the positions past n in the last one are written before they are read
    size_t span = (size_t)(n + KV_BLOCK - 1) / KV_BLOCK * KV_BLOCK * kv->hd;
    for (int l = 0; l < kv->L; l++)
        for (int h = 0; h < kv->KVH; h++) {
            size_t from = kv_slot_at(kv, l, src, h), to = kv_slot_at(kv, l, dst, h);
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
    // the due slots' draws first, in parallel (each from its sequence's own stream), then their
    // bookkeeping in slot order
    int due[B], n = 0;
    const float *lg[B];
    Rng *rg[B];
    int32_t drawn[B];
    for (int b = 0; b < B; b++) {
        nn[b] = 0;
        int q = slot[b].seq;
        if (q < 0 || slot[b].src >= 0 || slot[b].fed < prompt_lens[q]) continue;
        due[n] = b;
        lg[n] = kv->logits + (size_t)b * kv->V;
        rg[n++] = &rngs[q];
    }
    sampler_sample_rows(s, &g->sampler, lg, rg, n, drawn);
    int rows = 0;
    for (int i = 0; i < n; i++) {
        int b = due[i], q = slot[b].seq;
        int32_t t = drawn[i];
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
    // cache, step activations, logits, then the int32 bookkeeping
    size_t floats = kv_floats(c, max_B, max_T, max_rows, cache_fmt, 1);
    if (!floats) return 0;
    return floats * sizeof(float) + kv_int_count(max_B, max_rows) * sizeof(int32_t);
}
