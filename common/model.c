// GPT-2 model: sizes, allocation, forward and backward. See model.h.
#include "model.h"
#include "kernels.h"
#include "rng.h"
#include "util.h"
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int model_config_validate(const ModelConfig *c, char *err, size_t errlen) {
    if (c->n_layer <= 0 || c->n_layer > 1024)
        return util_err(err, errlen, "n_layer must be in 1..1024 (got %d)", c->n_layer);
    if (c->n_head <= 0) return util_err(err, errlen, "n_head must be positive (got %d)", c->n_head);
    if (c->n_embd <= 0 || c->n_embd > 65536)
        return util_err(err, errlen, "n_embd must be in 1..65536 (got %d)", c->n_embd);
    if (c->n_embd % c->n_head)
        return util_err(err, errlen, "n_embd (%d) must be divisible by n_head (%d)", c->n_embd,
                        c->n_head);
    if (c->vocab_size <= 0 || c->vocab_size > (1 << 24))
        return util_err(err, errlen, "vocab_size must be in 1..16777216 (got %d)", c->vocab_size);
    if (c->max_seq_len <= 0 || c->max_seq_len > (1 << 20))
        return util_err(err, errlen, "n_positions must be in 1..1048576 (got %d)", c->max_seq_len);
    if (!(c->ln_eps > 0.0f) || !(c->ln_eps < 1.0f))
        return util_err(err, errlen, "layer_norm_epsilon must be in (0, 1) (got %g)",
                        (double)c->ln_eps);
    if (!c->lm_head && !c->score_head)
        return util_err(err, errlen, "a model needs the LM head, the score head or both");
    return 0;
}

static void param_sizes(const ModelConfig *c, size_t *s) {
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

static void carve_params(ModelParams *p, float *mem, const size_t *s) {
    float **ptrs[MODEL_NUM_PARAMS] = {
        &p->wte, &p->wpe, &p->ln1w, &p->ln1b, &p->qkvw, &p->qkvb, &p->attprojw, &p->attprojb,
        &p->ln2w, &p->ln2b, &p->fcw, &p->fcb, &p->fcprojw, &p->fcprojb, &p->lnfw, &p->lnfb,
        &p->scorew, &p->qnormw, &p->knormw, &p->lmheadw};
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) { *ptrs[i] = mem; mem += s[i]; }
}

// Activation table: name -> number of floats. One place defines the layout for both the size
// computation and the carving, so they cannot disagree.
typedef struct { float **ptr; size_t n; } ActSlot;

static int act_table(Model *m, const ModelConfig *c, int max_B, int max_T, int trainable,
                     ActSlot *t) {
    size_t N = (size_t)max_B * max_T, C = (size_t)c->n_embd, V = (size_t)c->vocab_size;
    size_t L = (size_t)c->n_layer, NH = (size_t)c->n_head;
    size_t La = trainable ? L : 1, Lr = trainable ? L + 1 : 2;
    size_t lm = c->lm_head ? 1 : 0, tr = trainable ? 1 : 0;
    int k = 0;
#define SLOT(field, count) t[k].ptr = m ? &m->field : NULL; t[k].n = (count); k++
    SLOT(resid, Lr * N * C);
    SLOT(resmid, La * N * C);
    SLOT(ln1, La * N * C);  SLOT(ln1_mean, La * N);  SLOT(ln1_rstd, La * N);
    SLOT(qkv, La * N * 3 * C);
    SLOT(att, La * (size_t)max_B * NH * max_T * max_T);
    SLOT(atty, La * N * C);
    SLOT(ln2, La * N * C);  SLOT(ln2_mean, La * N);  SLOT(ln2_rstd, La * N);
    SLOT(fch, La * N * 4 * C);  SLOT(fch_gelu, La * N * 4 * C);
    SLOT(lnf, N * C);  SLOT(lnf_mean, N);  SLOT(lnf_rstd, N);
    SLOT(head_in, lm * N * C);  SLOT(logits, lm * N * V);
    SLOT(lse, N);  SLOT(head_logp, N);  SLOT(head_ent, N);  SLOT(values, N);
    SLOT(dresid, tr * N * C);  SLOT(dln, tr * N * C);  SLOT(datty, tr * N * C);
    SLOT(dqkv, tr * N * 3 * C);  SLOT(dfch, tr * N * 4 * C);  SLOT(dfch_gelu, tr * N * 4 * C);
    SLOT(dhead_in, tr * lm * N * C);  SLOT(head_dlogp, tr * N);
    SLOT(datt, tr * (size_t)max_B * NH * max_T * max_T);
#undef SLOT
    return k;
}

// Integer bookkeeping per batch: row_tok, row_pos, row_tgt, row_seq, head_rows, head_tgt
// (N int32 each), off (B+1) and att_off (B) int64.
static size_t int_bytes(int max_B, int max_T) {
    size_t N = (size_t)max_B * max_T;
    return 6 * N * sizeof(int32_t) + (2 * (size_t)max_B + 1) * sizeof(int64_t);
}

size_t model_memory_bytes(const ModelConfig *c, int max_B, int max_T, int trainable) {
    size_t s[MODEL_NUM_PARAMS], np = 0, na = 0;
    param_sizes(c, s);
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) np += s[i];
    ActSlot t[64];
    int k = act_table(NULL, c, max_B, max_T, trainable, t);
    for (int i = 0; i < k; i++) na += t[i].n;
    return (np * (trainable ? 4 : 1) + na) * sizeof(float) + int_bytes(max_B, max_T);
}

int model_init(Model *m, const ModelConfig *c, int max_B, int max_T, int trainable, int verbose,
               char *err, size_t errlen) {
    memset(m, 0, sizeof(*m));
    if (model_config_validate(c, err, errlen)) return -1;
    if (max_B <= 0 || max_T <= 0)
        return util_err(err, errlen,
                        "batch size and sequence length must be positive (got B=%d T=%d)", max_B,
                        max_T);
    if (max_T > c->max_seq_len)
        return util_err(err, errlen,
                        "sequence length %d exceeds the model's context n_positions=%d", max_T,
                        c->max_seq_len);
    m->config = *c;
    m->max_B = max_B; m->max_T = max_T; m->trainable = trainable;
    param_sizes(c, m->param_sizes);
    m->num_params = 0;
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) m->num_params += m->param_sizes[i];
    size_t pbytes = m->num_params * sizeof(float);
    m->params_memory = ALIGNED_CHECK(pbytes);
    carve_params(&m->params, m->params_memory, m->param_sizes);
    if (trainable) {
        m->grads_memory = ALIGNED_CHECK(pbytes);
        carve_params(&m->grads, m->grads_memory, m->param_sizes);
        m->m_memory = ALIGNED_CHECK(pbytes);
        m->v_memory = ALIGNED_CHECK(pbytes);
    }
    ActSlot t[64];
    int k = act_table(m, c, max_B, max_T, trainable, t);
    m->acts_floats = 0;
    for (int i = 0; i < k; i++)
        m->acts_floats += (t[i].n + 15) & ~(size_t)15; // 64-byte aligned slots
    m->acts_memory = ALIGNED_CHECK(m->acts_floats * sizeof(float));
    float *p = m->acts_memory;
    for (int i = 0; i < k; i++) { *t[i].ptr = t[i].n ? p : NULL; p += (t[i].n + 15) & ~(size_t)15; }
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
    if (verbose) {
        char a[32], b[32], tot[32];
        util_format_bytes(a, sizeof a, (double)pbytes * (trainable ? 4 : 1));
        util_format_bytes(b, sizeof b, (double)m->acts_floats * sizeof(float));
        util_format_bytes(tot, sizeof tot, (double)model_memory_bytes(c, max_B, max_T, trainable));
        fprintf(stderr, "model: %zu parameters; memory: weights%s %s, activations (B=%d, T=%d) %s, "
                "total %s\n", m->num_params, trainable ? "+grads+AdamW" : "", a, max_B, max_T, b,
                tot);
    }
    return 0;
}

void model_free(Model *m) {
    free(m->params_memory); free(m->grads_memory); free(m->m_memory); free(m->v_memory);
    free(m->acts_memory); free(m->off);
    memset(m, 0, sizeof(*m));
}

void model_init_weights(Model *m, uint64_t seed) {
    const ModelConfig *c = &m->config;
    ModelParams *p = &m->params;
    memset(m->params_memory, 0, m->num_params * sizeof(float));
    float proj_std = 0.02f / sqrtf(2.0f * c->n_layer);
    // one stream per tensor: adding a head does not change the other tensors' values
    rng_fill_normal_chunked(seed, P_WTE, p->wte, (int64_t)m->param_sizes[P_WTE], 0.0f, 0.02f);
    rng_fill_normal_chunked(seed, P_WPE, p->wpe, (int64_t)m->param_sizes[P_WPE], 0.0f, 0.01f);
    rng_fill_normal_chunked(seed, P_QKVW, p->qkvw, (int64_t)m->param_sizes[P_QKVW], 0.0f, 0.02f);
    rng_fill_normal_chunked(seed, P_ATTPROJW, p->attprojw, (int64_t)m->param_sizes[P_ATTPROJW],
                            0.0f, proj_std);
    rng_fill_normal_chunked(seed, P_FCW, p->fcw, (int64_t)m->param_sizes[P_FCW], 0.0f, 0.02f);
    rng_fill_normal_chunked(seed, P_FCPROJW, p->fcprojw, (int64_t)m->param_sizes[P_FCPROJW], 0.0f,
                            proj_std);
    if (c->score_head)
        rng_fill_normal_chunked(seed, P_SCOREW, p->scorew, (int64_t)m->param_sizes[P_SCOREW], 0.0f,
                                0.02f);
    for (size_t i = 0; i < m->param_sizes[P_LN1W]; i++) { p->ln1w[i] = 1.0f; p->ln2w[i] = 1.0f; }
    for (int i = 0; i < c->n_embd; i++) p->lnfw[i] = 1.0f;
}

void model_zero_grad(Model *m) {
    if (m->grads_memory) vec_zero(m->grads_memory, (int64_t)m->num_params);
}

// Per-layer activation pointers: trainable models keep every layer for backward; inference-only
// models reuse one layer's buffers (and two alternating residual slots).
#define LAYER(field, l, per) (m->field + (m->trainable ? (size_t)(l) : 0) * (per))
static float *resid_at(const Model *m, int l, size_t NC) {
    return m->resid + (size_t)(m->trainable ? l : (l & 1)) * NC;
}

int model_forward(Model *m, const ModelBatch *b, int flags, char *err, size_t errlen) {
    const ModelConfig *c = &m->config;
    int B = b->B, T = b->T, C = c->n_embd, V = c->vocab_size, L = c->n_layer, NH = c->n_head;
    m->has_lm_out = 0; m->has_entropy = 0; m->N = 0; m->M = 0; m->loss = 0.0f;
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
    size_t NC = (size_t)N * C;
    const ModelParams *p = &m->params;

    encoder_forward(resid_at(m, 0, NC), m->row_tok, m->row_pos, p->wte, p->wpe, N, C);
    for (int l = 0; l < L; l++) {
        float *x = resid_at(m, l, NC), *xo = resid_at(m, l + 1, NC);
        float *ln1 = LAYER(ln1, l, NC), *ln1m = LAYER(ln1_mean, l, N),
              *ln1r = LAYER(ln1_rstd, l, N);
        float *qkv = LAYER(qkv, l, 3 * NC),
              *att = LAYER(att, l, (size_t)m->max_B * NH * m->max_T * m->max_T);
        float *atty = LAYER(atty, l, NC), *rm = LAYER(resmid, l, NC);
        float *ln2 = LAYER(ln2, l, NC), *ln2m = LAYER(ln2_mean, l, N),
              *ln2r = LAYER(ln2_rstd, l, N);
        float *fch = LAYER(fch, l, 4 * NC), *fchg = LAYER(fch_gelu, l, 4 * NC);
        size_t lc = (size_t)l * C;
        layernorm_forward(ln1, ln1m, ln1r, x, p->ln1w + lc, p->ln1b + lc, N, C, c->ln_eps);
        matmul_forward(qkv, ln1, p->qkvw + lc * 3 * C, p->qkvb + lc * 3, N, C, 3 * C, 0);
        attention_forward(atty, att, qkv, m->off, m->att_off, B, C, NH);
        vec_copy(rm, x, (int64_t)NC);   // residual fused into the projection's sgemm
        matmul_forward(rm, atty, p->attprojw + lc * C, p->attprojb + lc, N, C, C, 1);
        layernorm_forward(ln2, ln2m, ln2r, rm, p->ln2w + lc, p->ln2b + lc, N, C, c->ln_eps);
        matmul_forward(fch, ln2, p->fcw + lc * 4 * C, p->fcb + lc * 4, N, C, 4 * C, 0);
        gelu_forward(fchg, fch, (int64_t)N * 4 * C);
        vec_copy(xo, rm, (int64_t)NC);
        matmul_forward(xo, fchg, p->fcprojw + lc * 4 * C, p->fcprojb + lc, N, 4 * C, C, 1);
    }
    layernorm_forward(m->lnf, m->lnf_mean, m->lnf_rstd, resid_at(m, L, NC), p->lnfw, p->lnfb, N, C,
                      c->ln_eps);

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
        if (M > 0) {  // logits (M,V) = head_in (M,C) @ wte^T
            logits_forward(m->logits, m->head_in, p->wte, M, V, C);
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
    if (c->score_head) score_forward(m->values, m->lnf, p->scorew, N, C);
    return 0;
}

void model_backward(Model *m, const ModelBatch *b, const float *dlogp, const float *dvalues) {
    if (!m->trainable) DIE("model_backward on a model initialised without gradients");
    if (m->N == 0 || b->B != m->cur_B || b->T != m->cur_T)
        DIE("model_backward without a matching model_forward");
    const ModelConfig *c = &m->config;
    int B = b->B, T = b->T, C = c->n_embd, V = c->vocab_size, L = c->n_layer, NH = c->n_head;
    int64_t N = m->N, M = m->M;
    size_t NC = (size_t)N * C;
    const ModelParams *p = &m->params;
    ModelParams *g = &m->grads;

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
        // dhead_in (M,C) = dlogits (M,V) @ wte (V,C); dwte (V,C) += dlogits^T @ head_in (M,C)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)M, C, V, 1.0f, m->logits, V,
                    p->wte, C, 0.0f, m->dhead_in, C);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, V, C, (blasint)M, 1.0f, m->logits, V,
                    m->head_in, C, 1.0f, g->wte, C);
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
        score_backward(m->dln, g->scorew, dv, m->lnf, p->scorew, N, C);
    }
    vec_zero(m->dresid, (int64_t)(NC));
    layernorm_backward(m->dresid, g->lnfw, g->lnfb, m->dln, resid_at(m, L, NC), p->lnfw,
                       m->lnf_mean, m->lnf_rstd, N, C);
    for (int l = L - 1; l >= 0; l--) {
        size_t lc = (size_t)l * C;
        float *x = resid_at(m, l, NC);
        float *ln1 = LAYER(ln1, l, NC), *ln1m = LAYER(ln1_mean, l, N),
              *ln1r = LAYER(ln1_rstd, l, N);
        float *qkv = LAYER(qkv, l, 3 * NC),
              *att = LAYER(att, l, (size_t)m->max_B * NH * m->max_T * m->max_T);
        float *atty = LAYER(atty, l, NC), *rm = LAYER(resmid, l, NC);
        float *ln2 = LAYER(ln2, l, NC), *ln2m = LAYER(ln2_mean, l, N),
              *ln2r = LAYER(ln2_rstd, l, N);
        float *fch = LAYER(fch, l, 4 * NC), *fchg = LAYER(fch_gelu, l, 4 * NC);
        // MLP: resid[l+1] = rm + gelu(ln2(rm) @ fcw + fcb) @ fcprojw + fcprojb
        vec_zero(m->dfch_gelu, (int64_t)(4 * NC));
        matmul_backward(m->dfch_gelu, g->fcprojw + lc * 4 * C, g->fcprojb + lc, m->dresid, fchg,
                        p->fcprojw + lc * 4 * C, N, 4 * C, C);
        vec_zero(m->dfch, (int64_t)(4 * NC));
        gelu_backward(m->dfch, fch, m->dfch_gelu, (int64_t)N * 4 * C);
        vec_zero(m->dln, (int64_t)(NC));
        matmul_backward(m->dln, g->fcw + lc * 4 * C, g->fcb + lc * 4, m->dfch, ln2,
                        p->fcw + lc * 4 * C, N, C, 4 * C);
        layernorm_backward(m->dresid, g->ln2w + lc, g->ln2b + lc, m->dln, rm, p->ln2w + lc, ln2m,
                           ln2r, N, C);
        // attention: rm = x + attn(ln1(x)) @ attprojw + attprojb
        vec_zero(m->datty, (int64_t)(NC));
        matmul_backward(m->datty, g->attprojw + lc * C, g->attprojb + lc, m->dresid, atty,
                        p->attprojw + lc * C, N, C, C);
        vec_zero(m->dqkv, (int64_t)(3 * NC));
        attention_backward(m->dqkv, m->datt, m->datty, qkv, att, m->off, m->att_off, B, C, NH);
        vec_zero(m->dln, (int64_t)(NC));
        matmul_backward(m->dln, g->qkvw + lc * 3 * C, g->qkvb + lc * 3, m->dqkv, ln1,
                        p->qkvw + lc * 3 * C, N, C, 3 * C);
        layernorm_backward(m->dresid, g->ln1w + lc, g->ln1b + lc, m->dln, x, p->ln1w + lc, ln1m,
                           ln1r, N, C);
    }
    encoder_backward(g->wte, g->wpe, m->dresid, m->row_tok, m->row_pos, N, C, V, c->max_seq_len);
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

int model_tensor_count(const Model *m) {
    return 2 + 12 * m->config.n_layer + 2 + (m->config.score_head ? 1 : 0);
}

void model_tensor(const Model *m, int i, ModelTensor *t) {
    static const char *layer_names[12] = {
        "ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
        "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
        "mlp.c_proj.weight", "mlp.c_proj.bias"};
    static const int layer_param[12] = {P_LN1W, P_LN1B, P_QKVW, P_QKVB, P_ATTPROJW, P_ATTPROJB,
                                        P_LN2W, P_LN2B, P_FCW, P_FCB, P_FCPROJW, P_FCPROJB};
    const ModelConfig *c = &m->config;
    int64_t C = c->n_embd, L = c->n_layer;
    memset(t, 0, sizeof(*t));
    int pi;
    size_t offset = 0;
    if (i == 0) {
        pi = P_WTE;
        snprintf(t->name, sizeof t->name, "wte.weight");
        t->ndim = 2;
        t->shape[0] = c->vocab_size;
        t->shape[1] = C;
    } else if (i == 1) {
        pi = P_WPE;
        snprintf(t->name, sizeof t->name, "wpe.weight");
        t->ndim = 2;
        t->shape[0] = c->max_seq_len;
        t->shape[1] = C;
    } else if (i < 2 + 12 * L) {
        int l = (i - 2) / 12, k = (i - 2) % 12;
        pi = layer_param[k];
        snprintf(t->name, sizeof t->name, "h.%d.%s", l, layer_names[k]);
        size_t per = m->param_sizes[pi] / (size_t)L;
        offset = (size_t)l * per;
        switch (pi) {
            case P_QKVW:    t->ndim = 2; t->shape[0] = C;     t->shape[1] = 3 * C; break;
            case P_ATTPROJW:t->ndim = 2; t->shape[0] = C;     t->shape[1] = C; break;
            case P_FCW:     t->ndim = 2; t->shape[0] = C;     t->shape[1] = 4 * C; break;
            case P_FCPROJW: t->ndim = 2; t->shape[0] = 4 * C; t->shape[1] = C; break;
            default:        t->ndim = 1; t->shape[0] = (int64_t)per; break;
        }
    } else if (i == 2 + 12 * L) {
        pi = P_LNFW;
        snprintf(t->name, sizeof t->name, "ln_f.weight");
        t->ndim = 1;
        t->shape[0] = C;
    } else if (i == 3 + 12 * L) {
        pi = P_LNFB;
        snprintf(t->name, sizeof t->name, "ln_f.bias");
        t->ndim = 1;
        t->shape[0] = C;
    } else {
        pi = P_SCOREW;
        snprintf(t->name, sizeof t->name, "score.weight");
        t->ndim = 2;
        t->shape[0] = 1;
        t->shape[1] = C;
    }
    size_t base = 0;
    for (int k = 0; k < pi; k++) base += m->param_sizes[k];
    t->data = m->params_memory + base + offset;
    t->grad = m->grads_memory ? m->grads_memory + base + offset : NULL;
    t->decay = t->ndim >= 2;
}
