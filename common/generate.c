// KV-cache decoding. The per-layer math is the model's (same kernels); only attention differs:
// a new token at position p attends to the cached keys/values 0..p of its own sequence.
#include "generate.h"
#include "kernels.h"
#include "util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

int kv_init(KVCache *kv, const Model *m, int max_B, int max_T, int max_rows, char *err,
            size_t errlen) {
    memset(kv, 0, sizeof(*kv));
    const ModelConfig *c = &m->config;
    if (!c->lm_head) return util_err(err, errlen, "generation needs a model with an LM head");
    if (max_B <= 0 || max_T <= 0 || max_rows <= 0)
        return util_err(err, errlen, "KV cache sizes must be positive (B=%d T=%d rows=%d)", max_B,
                        max_T, max_rows);
    if (max_T > c->max_seq_len)
        return util_err(err, errlen,
                        "KV cache length %d exceeds the model's context n_positions=%d", max_T,
                        c->max_seq_len);
    kv->max_B = max_B; kv->max_T = max_T; kv->max_rows = max_rows;
    kv->L = c->n_layer; kv->NH = c->n_head; kv->C = c->n_embd; kv->V = c->vocab_size;
    size_t C = (size_t)kv->C, R = (size_t)max_rows;
    size_t cache = (size_t)kv->L * max_B * max_T * C;   // NH * hd = C
    size_t floats = 2 * cache + R * (C + C + 1 + 1 + 3 * C + C + 4 * C + 4 * C) +
                    (size_t)max_B * (C + 2 * (size_t)kv->V);
    kv->memory = ALIGNED_CHECK(floats * sizeof(float));
    float *p = kv->memory;
    kv->k = p; p += cache;
    kv->v = p; p += cache;
    kv->x = p; p += R * C;
    kv->ln = p; p += R * C;
    kv->mean = p; p += R;
    kv->rstd = p; p += R;
    kv->qkv = p; p += R * 3 * C;
    kv->atty = p; p += R * C;
    kv->fch = p; p += R * 4 * C;
    kv->fchg = p; p += R * 4 * C;
    kv->head_in = p; p += (size_t)max_B * C;
    kv->logits = p; p += (size_t)max_B * kv->V;
    kv->head_logits = p;
    kv->len = CALLOC_CHECK((size_t)max_B * 2 + 4 * R, sizeof(int32_t));
    kv->last_row = kv->len + max_B;
    kv->row_tok = kv->last_row + max_B;
    kv->row_pos = kv->row_tok + R;
    kv->row_seq = kv->row_pos + R;
    kv->chunk_tok = kv->row_seq + R;
    return 0;
}

void kv_free(KVCache *kv) { free(kv->memory); free(kv->len); memset(kv, 0, sizeof(*kv)); }

void kv_reset(KVCache *kv) { memset(kv->len, 0, (size_t)kv->max_B * sizeof(int32_t)); }

// Attention of each new row against its sequence's cache (which already holds the row itself).
static void kv_attention(float *out, const float *qkv, const float *kc, const float *vc,
                         const KVCache *kv, int64_t R, int layer) {
    int C = kv->C, NH = kv->NH, hd = C / NH;
    float scale = 1.0f / sqrtf((float)hd);
    #pragma omp parallel for collapse(2) schedule(dynamic, 1)
    for (int64_t r = 0; r < R; r++) {
        for (int h = 0; h < NH; h++) {
            int b = kv->row_seq[r], pos = kv->row_pos[r];
            size_t base = (((size_t)layer * kv->max_B + b) * NH + h) * (size_t)kv->max_T * hd;
            const float *q = qkv + (size_t)r * 3 * C + (size_t)h * hd;
            float sc[pos + 1];
            float mx = -INFINITY;
            for (int s = 0; s <= pos; s++) {
                const float *k = kc + base + (size_t)s * hd;
                float d = 0.0f;
                #pragma omp simd reduction(+:d)
                for (int i = 0; i < hd; i++) d += q[i] * k[i];
                sc[s] = d * scale;
                if (sc[s] > mx) mx = sc[s];
            }
            float sum = 0.0f;
            for (int s = 0; s <= pos; s++) { sc[s] = expf(sc[s] - mx); sum += sc[s]; }
            float inv = 1.0f / sum;
            float *y = out + (size_t)r * C + (size_t)h * hd;
            for (int i = 0; i < hd; i++) y[i] = 0.0f;
            for (int s = 0; s <= pos; s++) {
                const float *v = vc + base + (size_t)s * hd;
                float w = sc[s] * inv;
                #pragma omp simd
                for (int i = 0; i < hd; i++) y[i] += w * v[i];
            }
        }
    }
}

int kv_forward(const Model *m, KVCache *kv, const int32_t *tokens, const int32_t *n_new, int B,
               int Tc, float *all_logits, char *err, size_t errlen) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    int C = kv->C, NH = kv->NH, hd = C / NH, V = kv->V;
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
            if (tok < 0 || tok >= V)
                return util_err(err, errlen, "token id %d is outside the vocabulary 0..%d", tok,
                                V - 1);
            kv->row_tok[r] = tok; kv->row_pos[r] = kv->len[b] + i; kv->row_seq[r] = b;
            kv->last_row[b] = (int32_t)r;
        }
    }
    if (R == 0) return 0;
    encoder_forward(kv->x, kv->row_tok, kv->row_pos, p->wte, p->wpe, R, C);
    for (int l = 0; l < c->n_layer; l++) {
        size_t lc = (size_t)l * C;
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln1w + lc, p->ln1b + lc, R, C,
                          c->ln_eps);
        matmul_forward(kv->qkv, kv->ln, p->qkvw + lc * 3 * C, p->qkvb + lc * 3, R, C, 3 * C, 0);
        // append this call's keys and values, head by head, to each sequence's cache
        for (int64_t j = 0; j < R; j++) {
            int b = kv->row_seq[j], pos = kv->row_pos[j];
            for (int h = 0; h < NH; h++) {
                size_t dst = ((((size_t)l * kv->max_B + b) * NH + h) * kv->max_T + pos) * hd;
                memcpy(kv->k + dst, kv->qkv + (size_t)j * 3 * C + C + (size_t)h * hd,
                       (size_t)hd * sizeof(float));
                memcpy(kv->v + dst, kv->qkv + (size_t)j * 3 * C + 2 * C + (size_t)h * hd,
                       (size_t)hd * sizeof(float));
            }
        }
        kv_attention(kv->atty, kv->qkv, kv->k, kv->v, kv, R, l);
        matmul_forward(kv->x, kv->atty, p->attprojw + lc * C, p->attprojb + lc, R, C, C, 1);
        layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->ln2w + lc, p->ln2b + lc, R, C,
                          c->ln_eps);
        matmul_forward(kv->fch, kv->ln, p->fcw + lc * 4 * C, p->fcb + lc * 4, R, C, 4 * C, 0);
        gelu_forward(kv->fchg, kv->fch, R * 4 * C);
        matmul_forward(kv->x, kv->fchg, p->fcprojw + lc * 4 * C, p->fcprojb + lc, R, 4 * C, C, 1);
    }
    layernorm_forward(kv->ln, kv->mean, kv->rstd, kv->x, p->lnfw, p->lnfb, R, C, c->ln_eps);
    for (int b = 0; b < B; b++) kv->len[b] += n_new[b];
    if (all_logits)
        logits_forward(all_logits, kv->ln, p->wte, R, V, C);
    // logits at each sequence's newest position only: the rest are not needed to sample
    int nb = 0;
    for (int b = 0; b < B; b++)
        if (kv->last_row[b] >= 0)
            memcpy(kv->head_in + (size_t)nb++ * C, kv->ln + (size_t)kv->last_row[b] * C,
                   (size_t)C * sizeof(float));
    logits_forward(kv->head_logits, kv->head_in, p->wte, nb, V, C);
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
    // the same sizes as kv_init: cache, step activations, logits, then the int32 bookkeeping
    size_t C = (size_t)c->n_embd, R = (size_t)max_rows;
    size_t cache = (size_t)c->n_layer * max_B * max_T * C;
    size_t floats = 2 * cache + R * (C + C + 1 + 1 + 3 * C + C + 4 * C + 4 * C) +
                    (size_t)max_B * (C + 2 * (size_t)c->vocab_size);
    return floats * sizeof(float) + ((size_t)max_B * 2 + 4 * R) * sizeof(int32_t);
}
