// KV-cache decoding and sampling: incremental logits equal the full forward's, prompts of
// different lengths batch correctly, chunked prefill equals one pass, the same seed gives the same
// samples, and each sampling rule keeps exactly the tokens it should. Both block kinds: GPT-2 and
// tiny Llama-style models in the shapes nobody tunes for (9 query heads over 3 KV heads,
// multi-query, head_dim 48 apart from n_embd / n_head, Qwen2 biases, Qwen3 q/k norms, untied
// head, Llama 3 RoPE scaling at rope_theta 1e6 with positions past 1000).
#include "generate.h"
#include "kernels.h"
#include "lowp.h"
#include "model.h"
#include "rng.h"
#include "sampler.h"
#include "testlib.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

// A tiny random model with larger-than-usual weights so that logits differ clearly.
static void tiny_model(Model *m, int max_B, int max_T) {
    ModelConfig c = {.max_seq_len = 24, .vocab_size = 61, .n_layer = 2, .n_head = 3, .n_embd = 12,
                     .ln_eps = 1e-5f, .lm_head = 1, .score_head = 0};
    char err[256];
    if (model_init(m, &c, max_B, max_T, 0, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    Rng r; rng_init(&r, 42);
    rng_fill_normal(&r, m->params_memory, (int64_t)m->num_params, 0.0f, 0.3f);
    for (int i = 0; i < c.n_layer * c.n_embd; i++) {
        m->params.ln1w[i] += 1.0f;
        m->params.ln2w[i] += 1.0f;
    }
}

// Plain sampling (temperature 1, no top-k/top-p) of new_tokens tokens, no end token.
static GenConfig pure_sampling(int new_tokens) {
    return (GenConfig){.max_new_tokens = new_tokens, .eot_id = -1,
                       .sampler = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f}};
}

static void test_incremental_equals_full(void) {
    enum { B = 3, T = 20 };
    Model m; tiny_model(&m, B, T);
    int32_t tok[B * T], len[B] = {20, 9, 14};
    Rng r; rng_init(&r, 7);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, 61);
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len};
    char err[256];
    CHECK(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    KVCache kv;
    CHECK(kv_init(&kv, &m, B, T, B * T, err, sizeof err) == 0);
    // prefill different prompt lengths in one packed call, then one token per step
    int32_t pre[B] = {5, 1, 14}, pos[B];
    float *all = malloc((size_t)B * T * 61 * sizeof(float));
    CHECK(kv_forward(&m, &kv, tok, pre, B, T, all, err, sizeof err) == 0);
    int64_t row = 0;
    for (int bi = 0; bi < B; bi++)
        for (int t = 0; t < pre[bi]; t++, row++)
            CHECK_CLOSE(all + row * 61, model_logits_at(&m, bi, t), 61, 1e-4, 1e-4,
                        "prefill logits vs full forward");
    for (int bi = 0; bi < B; bi++) pos[bi] = pre[bi];
    for (;;) {
        int32_t next[B], nn[B], any = 0;
        for (int bi = 0; bi < B; bi++) {
            nn[bi] = pos[bi] < len[bi];
            next[bi] = nn[bi] ? tok[bi * T + pos[bi]] : 0;
            any |= nn[bi];
        }
        if (!any) break;
        CHECK(kv_forward(&m, &kv, next, nn, B, 1, NULL, err, sizeof err) == 0);
        for (int bi = 0; bi < B; bi++)
            if (nn[bi]) {
                CHECK_CLOSE(kv.logits + (size_t)bi * 61, model_logits_at(&m, bi, pos[bi]), 61, 1e-4,
                            1e-4, "incremental logits vs full forward");
                pos[bi]++;
            }
    }
    // a sequence already complete keeps its last logits while others advance
    for (int bi = 0; bi < B; bi++) CHECK(kv.len[bi] == len[bi]);
    // overflow of the cache is an error, not a write past the end
    int32_t one[B] = {1, 0, 0}, z[B] = {0, 0, 0};
    CHECK(kv_forward(&m, &kv, z, one, B, 1, NULL, err, sizeof err) == -1 &&
          strstr(err, "positions"));
    free(all);
    kv_free(&kv);
    model_free(&m);
}

static int gen_count;
static void count_cb(void *u, int b, int32_t t) { (void)u; (void)b; (void)t; gen_count++; }

static void test_generate_determinism_and_chunking(void) {
    enum { B = 3, TP = 6, NEW = 10 };
    Model m; tiny_model(&m, B, 20);
    int32_t prompts[B * TP] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 9, 10, 11, 0, 0, 0};
    int32_t plen[B] = {6, 2, 3};
    int32_t out1[B * NEW], out2[B * NEW], out3[B * NEW], ol1[B], ol2[B], ol3[B];
    GenConfig g = pure_sampling(NEW);
    char err[256];
    KVCache big, small;
    Sampler s;
    sampler_init(&s, 61);
    CHECK(kv_init(&big, &m, B, 20, 64, err, sizeof err) == 0);
    CHECK(kv_init(&small, &m, B, 20, 3, err, sizeof err) ==
          0); // prefill one token per prompt per call
    Rng r1, r2, r3;
    rng_init(&r1, 99); rng_init(&r2, 99); rng_init(&r3, 100);
    gen_count = 0;
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, plen, B, TP, out1, ol1, count_cb, NULL, err,
                       sizeof err) == 0);
    CHECK(gen_count == B * NEW);
    CHECK(gen_generate(&m, &small, &s, &g, &r2, prompts, plen, B, TP, out2, ol2, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(memcmp(out1, out2, sizeof out1) == 0 &&
          memcmp(ol1, ol2, sizeof ol1) == 0); // same seed, chunked prefill
    CHECK(gen_generate(&m, &big, &s, &g, &r3, prompts, plen, B, TP, out3, ol3, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(memcmp(out1, out3, sizeof out1) != 0);   // another seed, other samples
    // greedy decoding equals argmax of the full forward, token by token
    g.sampler.temperature = 0.0f;
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, plen, B, TP, out1, ol1, NULL, NULL, err,
                       sizeof err) == 0);
    Model full; tiny_model(&full, 1, 20);
    for (int bi = 0; bi < B; bi++) {
        int32_t seq[20], len = plen[bi];
        memcpy(seq, prompts + bi * TP, (size_t)len * sizeof(int32_t));
        for (int k = 0; k < NEW; k++) {
            ModelBatch fb = {.B = 1, .T = len, .tokens = seq, .lengths = &len};
            CHECK(model_forward(&full, &fb, MODEL_LOGITS_ALL, err, sizeof err) == 0);
            int32_t want = sampler_argmax(model_logits_at(&full, 0, len - 1), 61);
            CHECK_MSG(out1[bi * NEW + k] == want,
                      "greedy token %d of prompt %d: %d, full forward says %d", k, bi,
                      out1[bi * NEW + k], want);
            seq[len++] = want;
        }
    }
    // stopping at the end token: make the 4th greedy token of prompt 0 the end token
    g.eot_id = out1[3];
    int first = 0;
    while (out1[first] != g.eot_id) first++;
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, plen, B, TP, out2, ol2, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(ol2[0] == first + 1 && out2[first] == g.eot_id);
    // the same token as a stop id (an end-of-turn token) instead of eot_id
    g.eot_id = -1;
    g.n_stop = 1;
    g.stop_ids[0] = out1[3];
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, plen, B, TP, out2, ol2, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(ol2[0] == first + 1 && out2[first] == g.stop_ids[0] && gen_is_stop(&g, out1[3]));
    g.eot_id = out1[3];
    g.n_stop = 0;
    // errors: a prompt too long for the context, an empty prompt
    g.max_new_tokens = 15;
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, plen, B, TP, out2, ol2, NULL, NULL, err,
                       sizeof err) == -1 &&
          strstr(err, "context"));
    int32_t bad[B] = {0, 1, 1};
    g.max_new_tokens = 2;
    CHECK(gen_generate(&m, &big, &s, &g, &r1, prompts, bad, B, TP, out2, ol2, NULL, NULL, err,
                       sizeof err) == -1);
    kv_free(&big); kv_free(&small); sampler_free(&s);
    model_free(&m); model_free(&full);
}

// ---- Llama-style ----

// 9 query heads over 3 KV heads of head_dim 48 (n_embd 72: 8 per head), q/k/v biases, untied
// head, Llama 3 scaling with a short original context so that it changes positions near 1000
static const ModelConfig llama_gqa = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 1100, .vocab_size = 67,
    .n_layer = 2, .n_head = 9, .n_embd = 72, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 3,
    .head_dim = 48, .d_ff = 100, .rope_theta = 1e6f, .rope_scaling = MODEL_ROPE_LLAMA3,
    .rope_factor = 8.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 4.0f,
    .rope_original_max_pos = 256, .qkv_bias = 1, .untied = 1};
// multi-query (one KV head), Qwen3's per-head q/k norms, tied embeddings, head_dim 16
static const ModelConfig llama_mqa = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_QWEN3, .max_seq_len = 64, .vocab_size = 61,
    .n_layer = 3, .n_head = 4, .n_embd = 40, .ln_eps = 1e-6f, .lm_head = 1, .n_kv_head = 1,
    .head_dim = 16, .d_ff = 56, .rope_theta = 10000.0f, .qk_norm = 1};
// all of it at once: GQA, biases, q/k norms, untied, Llama 3 scaling
static const ModelConfig llama_all = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 48, .vocab_size = 53,
    .n_layer = 2, .n_head = 6, .n_embd = 36, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 2,
    .head_dim = 10, .d_ff = 44, .rope_theta = 500000.0f, .rope_scaling = MODEL_ROPE_LLAMA3,
    .rope_factor = 4.0f, .rope_low_freq_factor = 1.0f, .rope_high_freq_factor = 2.0f,
    .rope_original_max_pos = 16, .qkv_bias = 1, .qk_norm = 1, .untied = 1};

// 8 query heads over 2 KV heads of head_dim 80
static const ModelConfig llama_g4 = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 1030, .vocab_size = 59,
    .n_layer = 2, .n_head = 8, .n_embd = 64, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 2,
    .head_dim = 80, .d_ff = 72, .rope_theta = 1e5f, .untied = 1};
// 8 query heads over one KV head of head_dim 72
static const ModelConfig llama_g8 = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 70, .vocab_size = 47,
    .n_layer = 2, .n_head = 8, .n_embd = 48, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 1,
    .head_dim = 72, .d_ff = 40, .rope_theta = 1e4f};

// 4 query heads, each its own KV head (group 1), head_dim 64
static const ModelConfig llama_mha = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 40, .vocab_size = 43,
    .n_layer = 2, .n_head = 4, .n_embd = 32, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 4,
    .head_dim = 64, .d_ff = 40, .rope_theta = 1e4f};

// A tiny random Llama-style model of config c: weights N(0, 0.3) (0.05 for deep products so that
// the residual stream stays of order 1), every RMSNorm weight near 1.
static void tiny_llama(Model *m, const ModelConfig *c, int max_B, int max_T) {
    char err[256];
    if (model_init(m, c, max_B, max_T, 0, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    Rng r; rng_init(&r, 42);
    rng_fill_normal(&r, m->params_memory, (int64_t)m->num_params, 0.0f, 0.3f);
    float *ones[] = {m->params.ln1w, m->params.ln2w, m->params.lnfw, m->params.qnormw,
                     m->params.knormw};
    int sizes[] = {P_LN1W, P_LN2W, P_LNFW, P_QNORMW, P_KNORMW};
    for (int i = 0; i < 5; i++)
        for (size_t j = 0; j < m->param_sizes[sizes[i]]; j++) ones[i][j] = 1.0f + 0.1f * ones[i][j];
}

// got (V) is want (V) within tol of want's largest magnitude
static void check_logits(const float *got, const float *want, int V, double tol, const char *what,
                         int b, int t) {
    double mx = 0, d = 0;
    for (int i = 0; i < V; i++) {
        mx = fmax(mx, fabs(want[i]));
        d = fmax(d, fabs((double)got[i] - want[i]));
    }
    CHECK_MSG(d <= tol * mx, "%s, sequence %d position %d: differs by %.3g of %.3g", what, b, t, d,
              mx);
}

// Feeds sequences b of tok (B, T) row-major, lengths len, to the cache: the first pre[b] tokens
// in calls of at most `chunk` tokens per sequence (chunked prefill, all sequences together), then
// one token per call. Checks every new row's logits against model_logits_at(m, ...), which the
// full forward of the same batch left in m (the cache only reads the weights).
static void feed_and_check(const Model *m, const int32_t *tok, const int32_t *len,
                           const int32_t *pre, int B, int T, int chunk, LowpFormat fmt,
                           double tol) {
    char err[256];
    KVCache kv;
    CHECK(kv_init_as(&kv, m, B, T, B * chunk, fmt, err, sizeof err) == 0);
    int V = m->config.vocab_size;
    float *all = malloc((size_t)B * chunk * V * sizeof(float));
    int32_t pos[B], nn[B], buf[B * chunk];
    for (int b = 0; b < B; b++) pos[b] = 0;
    for (int calls = 0;; calls++) {
        int any = 0, width = 1;
        for (int b = 0; b < B; b++) {
            int left = pos[b] < pre[b] ? pre[b] - pos[b] : (pos[b] < len[b] ? 1 : 0);
            nn[b] = left < chunk ? left : chunk;
            width = nn[b] > width ? nn[b] : width;
            any |= nn[b] > 0;
        }
        if (!any) break;
        for (int b = 0; b < B; b++)
            memcpy(buf + b * width, tok + (size_t)b * T + pos[b], (size_t)nn[b] * sizeof(int32_t));
        CHECK(kv_forward(m, &kv, buf, nn, B, width, all, err, sizeof err) == 0);
        for (int b = 0, row = 0; b < B; b++)
            for (int i = 0; i < nn[b]; i++, row++)
                check_logits(all + (size_t)row * V, model_logits_at(m, b, pos[b] + i), V, tol,
                             "KV-cache logits vs the full forward", b, pos[b] + i);
        for (int b = 0; b < B; b++) {
            if (nn[b]) {
                int at = pos[b] + nn[b] - 1;
                check_logits(kv.logits + (size_t)b * V, model_logits_at(m, b, at), V, tol,
                             "newest logits vs the full forward", b, at);
            }
            pos[b] += nn[b];
        }
    }
    for (int b = 0; b < B; b++) CHECK(kv.len[b] == len[b]);
    free(all);
    kv_free(&kv);
}

// A padded batch of random sequences of lengths len through the full forward (MODEL_LOGITS_ALL)
// and through the cache (prefill of pre[b] tokens in chunks, then one token at a time).
static void llama_kv_case(const ModelConfig *c, int T, const int32_t *len, const int32_t *pre,
                          int chunk, LowpFormat fmt, double tol) {
    enum { B = 3 };
    Model m; tiny_llama(&m, c, B, T);
    int32_t *tok = malloc((size_t)B * T * sizeof(int32_t));
    Rng r; rng_init(&r, 7);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len};
    char err[256];
    CHECK_MSG(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0, "%s", err);
    feed_and_check(&m, tok, len, pre, B, T, chunk, fmt, tol);
    free(tok);
    model_free(&m);
}

static void test_llama_incremental_equals_full(void) {
    // positions past 1000 under rope_theta 1e6 and Llama 3 scaling; the prompts prefill in
    // chunks of up to 128 tokens, then the last tokens one at a time
    int32_t len_gqa[3] = {1030, 700, 9}, pre_gqa[3] = {1010, 690, 1};
    llama_kv_case(&llama_gqa, 1030, len_gqa, pre_gqa, 128, LOWP_FP32, 1e-4);
    int32_t len_mqa[3] = {40, 23, 64}, pre_mqa[3] = {17, 0, 33};
    llama_kv_case(&llama_mqa, 64, len_mqa, pre_mqa, 5, LOWP_FP32, 1e-4);
    int32_t len_all[3] = {48, 2, 31}, pre_all[3] = {30, 2, 7};
    llama_kv_case(&llama_all, 48, len_all, pre_all, 8, LOWP_FP32, 1e-4);
    // groups of 4 (head_dim 80) and 8 (two sets of 4 query heads, head_dim 72: a rest of 8 past
    // the 16 partial sums), each in both cache formats; bf16 keys and values move the logits by
    // about 2^-8 of their size
    int32_t len_g4[3] = {1030, 17, 300}, pre_g4[3] = {1001, 16, 250};
    int32_t len_g8[3] = {70, 33, 5}, pre_g8[3] = {40, 32, 5};
    for (int f = 0; f < 2; f++) {
        LowpFormat fmt = f ? LOWP_BF16 : LOWP_FP32;
        double tol = f ? 5e-2 : 1e-4;
        llama_kv_case(&llama_g4, 1030, len_g4, pre_g4, 128, fmt, tol);
        llama_kv_case(&llama_g8, 70, len_g8, pre_g8, 9, fmt, tol);
    }
    llama_kv_case(&llama_gqa, 1030, len_gqa, pre_gqa, 128, LOWP_BF16, 5e-2);
}

// Each sequence of a padded batch decodes as it would alone (its own cache of one sequence).
static void test_llama_batch_equals_alone(void) {
    enum { B = 3, T = 40 };
    const ModelConfig *cs[] = {&llama_all, &llama_mqa};
    for (int ci = 0; ci < 2; ci++) {
        const ModelConfig *c = cs[ci];
        Model m; tiny_llama(&m, c, 1, 1);
        int V = c->vocab_size;
        int32_t tok[B * T], len[B] = {40, 13, 27};
        Rng r; rng_init(&r, 11);
        for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)V);
        char err[256];
        KVCache batch, alone;
        CHECK(kv_init(&batch, &m, B, T, B * T, err, sizeof err) == 0);
        CHECK(kv_init(&alone, &m, 1, T, T, err, sizeof err) == 0);
        int32_t pre[B] = {12, 13, 1}, one[B];
        float *want = malloc((size_t)B * T * V * sizeof(float));
        for (int b = 0; b < B; b++) {   // each sequence alone, every position one at a time
            kv_reset(&alone);
            for (int t = 0; t < len[b]; t++) {
                int32_t n1 = 1;
                CHECK(kv_forward(&m, &alone, tok + b * T + t, &n1, 1, 1, NULL, err, sizeof err) ==
                      0);
                memcpy(want + ((size_t)b * T + t) * V, alone.logits, (size_t)V * sizeof(float));
            }
        }
        CHECK(kv_forward(&m, &batch, tok, pre, B, T, NULL, err, sizeof err) == 0);
        for (;;) {
            // every sequence's newest logits (kept while the others advance) are its own alone
            int any = 0;
            int32_t next[B];
            for (int b = 0; b < B; b++) {
                int at = batch.len[b] - 1;
                check_logits(batch.logits + (size_t)b * V, want + ((size_t)b * T + at) * V, V,
                             1e-5, "batched vs alone", b, at);
                one[b] = batch.len[b] < len[b];
                next[b] = one[b] ? tok[b * T + batch.len[b]] : 0;
                any |= one[b];
            }
            if (!any) break;
            CHECK(kv_forward(&m, &batch, next, one, B, 1, NULL, err, sizeof err) == 0);
        }
        free(want);
        kv_free(&batch); kv_free(&alone);
        model_free(&m);
    }
}

// Greedy generation equals the argmax of full forwards, token by token, for prompts of
// different lengths decoded together.
static void test_llama_greedy_equals_full(void) {
    enum { B = 3, TP = 7, NEW = 12 };
    const ModelConfig *cs[] = {&llama_gqa, &llama_mqa, &llama_all};
    for (int ci = 0; ci < 3; ci++) {
        const ModelConfig *c = cs[ci];
        Model m; tiny_llama(&m, c, 1, TP + NEW);
        int32_t prompts[B * TP] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0,
                                   10, 11, 12, 0, 0, 0, 0};
        int32_t plen[B] = {7, 2, 3}, out[B * NEW], ol[B];
        GenConfig g = pure_sampling(NEW);
        g.sampler.temperature = 0.0f;
        char err[256];
        KVCache kv;
        Sampler s;
        sampler_init(&s, c->vocab_size);
        CHECK(kv_init(&kv, &m, B, TP + NEW, 4, err, sizeof err) == 0);   // prefill: 1 per prompt
        Rng r; rng_init(&r, 3);
        CHECK(gen_generate(&m, &kv, &s, &g, &r, prompts, plen, B, TP, out, ol, NULL, NULL, err,
                           sizeof err) == 0);
        for (int b = 0; b < B; b++) {
            int32_t seq[TP + NEW], len = plen[b];
            memcpy(seq, prompts + b * TP, (size_t)len * sizeof(int32_t));
            CHECK(ol[b] == NEW);
            for (int k = 0; k < NEW; k++) {
                ModelBatch fb = {.B = 1, .T = len, .tokens = seq, .lengths = &len};
                CHECK(model_forward(&m, &fb, MODEL_LOGITS_ALL, err, sizeof err) == 0);
                int32_t want = sampler_argmax(model_logits_at(&m, 0, len - 1), c->vocab_size);
                CHECK_MSG(out[b * NEW + k] == want,
                          "config %d: greedy token %d of prompt %d: %d, full forward says %d", ci,
                          k, b, out[b * NEW + k], want);
                seq[len++] = want;
            }
        }
        kv_free(&kv); sampler_free(&s);
        model_free(&m);
    }
}

// Prefill and 10 one-token steps of a padded batch, every logit of the steps in out
// (10, B, V): the same on 1 thread as on 2 (bit for bit here; 1e-6 leaves room for a BLAS that
// splits its sums by thread).
static void decode_logits(const Model *m, int threads, float *out) {
    enum { B = 3, T = 40, STEPS = 10 };
    int V = m->config.vocab_size;
    int32_t tok[B * T], pre[B] = {20, 3, 11}, one[B] = {1, 1, 1};
    Rng r; rng_init(&r, 5);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)V);
    char err[256];
    KVCache kv;
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    CHECK(kv_init(&kv, m, B, T, B * T, err, sizeof err) == 0);
    CHECK(kv_forward(m, &kv, tok, pre, B, T, NULL, err, sizeof err) == 0);
    for (int s = 0; s < STEPS; s++) {
        int32_t next[B];
        for (int b = 0; b < B; b++) next[b] = tok[b * T + kv.len[b]];
        CHECK(kv_forward(m, &kv, next, one, B, 1, NULL, err, sizeof err) == 0);
        memcpy(out + (size_t)s * B * V, kv.logits, (size_t)B * V * sizeof(float));
    }
    omp_set_num_threads(saved);
    kv_free(&kv);
}

static void test_llama_threads_agree(void) {
    Model m; tiny_llama(&m, &llama_all, 1, 1);
    size_t n = (size_t)10 * 3 * llama_all.vocab_size;
    float *one = malloc(n * sizeof(float)), *two = malloc(n * sizeof(float));
    decode_logits(&m, 1, one);
    decode_logits(&m, 2, two);
    CHECK_CLOSE(two, one, n, 0.0, 1e-6, "decoding logits on 2 threads vs 1");
    free(one); free(two);
    model_free(&m);
}

// The cache holds keys and values per KV head: T more positions cost 2 L B KVH T hd floats, and
// a cache made for one model refuses another's shape.
static void test_llama_cache_size(void) {
    const ModelConfig *c = &llama_gqa;
    size_t a = kv_memory_bytes(c, 2, 64, 16), b = kv_memory_bytes(c, 2, 128, 16);
    CHECK_MSG(b - a == 2 * sizeof(float) * 2 * 2 * 3 * 64 * 48,
              "64 more positions cost %zu bytes, want %zu", b - a,
              2 * sizeof(float) * 2 * 2 * 3 * 64 * 48);
    Model m, other;
    tiny_llama(&m, c, 1, 1);
    tiny_llama(&other, &llama_all, 1, 1);
    char err[256];
    KVCache kv;
    CHECK(kv_init(&kv, &m, 2, 64, 16, err, sizeof err) == 0);
    size_t cache = (size_t)2 * 2 * 3 * 64 * 48;   // L, B, KVH, T, hd
    CHECK(kv.v - kv.k >= (ptrdiff_t)cache && kv.v - kv.k < (ptrdiff_t)cache + 16);
    int32_t t1 = 1, n1 = 1;
    CHECK_ERR(kv_forward(&other, &kv, &t1, &n1, 1, 1, NULL, err, sizeof err), err, "another model",
              NULL);
    KVCache big;
    CHECK_ERR(kv_init(&big, &m, 1, c->max_seq_len + 1, 4, err, sizeof err), err,
              "max_position_embeddings", "1100");
    kv_free(&kv);
    model_free(&m); model_free(&other);
}

// the streams of B sequences, seeded base, base + 1, ...
static void streams_init(Rng *r, int B, uint64_t base) {
    for (int b = 0; b < B; b++) rng_init(&r[b], base + (uint64_t)b);
}

// gen_generate_each's state for up to 3 sequences of up to 20 positions: the sampler (61 tokens),
// the cache and one stream per sequence
typedef struct {
    KVCache kv;
    Sampler s;
    Rng r[3];
} EachState;

// e for B sequences, the streams seeded from base; each_free releases it
static void each_setup(const Model *m, int B, EachState *e, uint64_t base) {
    char err[256];
    sampler_init(&e->s, 61);
    CHECK(kv_init(&e->kv, m, B, 20, 64, err, sizeof err) == 0);
    streams_init(e->r, B, base);
}
static void each_free(EachState *e) { kv_free(&e->kv); sampler_free(&e->s); }

// One stream per sequence: a batch cut in two samples the same tokens (the logits of a smaller
// batch may differ by rounding, which can move a draw across a boundary only with tiny
// probability; these seeds do not).
static void test_generate_each_streams(void) {
    enum { B = 3, TP = 6, NEW = 10 };
    Model m; tiny_model(&m, B, 20);
    int32_t prompts[B * TP] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 9, 10, 11, 0, 0, 0};
    int32_t plen[B] = {6, 2, 3};
    int32_t out1[B * NEW], out2[B * NEW], ol1[B], ol2[B];
    GenConfig g = pure_sampling(NEW);
    char err[256];
    EachState e;
    each_setup(&m, B, &e, 1000);
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r, prompts, plen, B, TP, out1, ol1, NULL, NULL,
                            err, sizeof err) == 0);
    // the first sequence alone, then the last two, each with its own stream as before
    streams_init(e.r, B, 1000);
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r, prompts, plen, 1, TP, out2, ol2, NULL, NULL,
                            err, sizeof err) == 0);
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r + 1, prompts + TP, plen + 1, 2, TP, out2 + NEW,
                            ol2 + 1, NULL, NULL, err, sizeof err) == 0);
    CHECK(memcmp(out1, out2, sizeof out1) == 0 && memcmp(ol1, ol2, sizeof ol1) == 0);
    // the streams matter: another seed for sequence 1 changes its tokens and only those
    streams_init(e.r, B, 1000);
    rng_init(&e.r[1], 7);
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r, prompts, plen, B, TP, out2, ol2, NULL, NULL,
                            err, sizeof err) == 0);
    CHECK(memcmp(out1, out2, NEW * sizeof(int32_t)) == 0 &&
          memcmp(out1 + NEW, out2 + NEW, NEW * sizeof(int32_t)) != 0 &&
          memcmp(out1 + 2 * NEW, out2 + 2 * NEW, NEW * sizeof(int32_t)) == 0);
    each_free(&e);
    model_free(&m);
}

// g.cancel is asked before every decoding step: the third asking ends the call with 1 after two
// tokens per sequence, and without it the same call runs to max_new_tokens.
static int cancel_third(void *calls) { return ++*(int *)calls >= 3; }
static void test_generate_cancel(void) {
    enum { B = 2, TP = 3, NEW = 8 };
    Model m; tiny_model(&m, B, 20);
    int32_t prompts[B * TP] = {1, 2, 3, 4, 5, 0}, plen[B] = {3, 2}, out[B * NEW], ol[B];
    GenConfig g = pure_sampling(NEW);
    char err[256];
    EachState e;
    each_setup(&m, B, &e, 50);
    int calls = 0;
    g.cancel = cancel_third;
    g.cancel_user = &calls;
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r, prompts, plen, B, TP, out, ol, NULL, NULL,
                            err, sizeof err) == 1);
    CHECK(calls == 3 && ol[0] == 2 && ol[1] == 2);
    g.cancel = NULL;
    CHECK(gen_generate_each(&m, &e.kv, &e.s, &g, e.r, prompts, plen, B, TP, out, ol, NULL, NULL,
                            err, sizeof err) == 0);
    CHECK(ol[0] == NEW && ol[1] == NEW);
    each_free(&e);
    model_free(&m);
}

// ---- continuous batching ----

// The order in which sequences receive tokens (GenCallback): entry i is the sequence of the i-th
// token handed out.
typedef struct { int seq[256]; int n; } TokenOrder;
static void record_order(void *user, int b, int32_t token) {
    TokenOrder *o = user;
    (void)token;
    if (o->n < 256) o->seq[o->n++] = b;
}

// Position in o of sequence q's first (last 0) or last (last 1) token; -1 if none.
static int order_at(const TokenOrder *o, int q, int last) {
    int at = -1;
    for (int i = 0; i < o->n; i++)
        if (o->seq[i] == q) { at = i; if (!last) break; }
    return at;
}

// Sampling for the queue tests: greedy or at temperature 1, new_tokens tokens, ended by any of
// n_stop stop tokens 3, 3 + every, 3 + 2 every, ...
static GenConfig queue_config(int new_tokens, int greedy, int n_stop, int every) {
    GenConfig g = pure_sampling(new_tokens);
    g.sampler.temperature = greedy ? 0.0f : 1.0f;
    g.n_stop = n_stop;
    for (int i = 0; i < n_stop; i++) g.stop_ids[i] = (int32_t)(3 + every * i);
    return g;
}

// Each of the n prompts (n, tp) alone through cache `alone` (gen_generate_each, B = 1), sequence q
// from stream seed + q: tokens into want (n, g->max_new_tokens), counts into wl.
static void queue_alone(const Model *m, KVCache *alone, Sampler *s, const GenConfig *g,
                        uint64_t seed, const int32_t *prompts, const int32_t *plen, int n, int tp,
                        int32_t *want, int32_t *wl) {
    char err[256];
    for (int q = 0; q < n; q++) {
        Rng r;
        rng_init(&r, seed + (uint64_t)q);
        CHECK(gen_generate_each(m, alone, s, g, &r, prompts + q * tp, &plen[q], 1, tp,
                                want + (size_t)q * g->max_new_tokens, &wl[q], NULL, NULL, err,
                                sizeof err) == 0);
    }
}

// gen_generate_queue on model m (vocabulary V): N prompts through 3 slots (5 rows per call, so
// prompts prefill in chunks beside the other slots' tokens), eight stop tokens so that sequences
// end at different steps. Each sequence's tokens equal those it gets alone (gen_generate_each,
// B = 1, its own stream), greedy and sampled, on 1 and 2 threads; and a slot freed by an ended
// sequence is taken by the next one while the others still decode.
static void queue_case(const Model *m, int V, const char *what) {
    enum { N = 7, TP = 6, NEW = 10, SLOTS = 3 };
    int32_t prompts[N * TP] = {1, 2, 3, 4, 5, 6,  7, 8, 0, 0, 0, 0,  9, 10, 11, 0, 0, 0,
                               12, 0, 0, 0, 0, 0,  13, 14, 15, 16, 17, 0,  18, 19, 20, 21, 0, 0,
                               22, 23, 0, 0, 0, 0};
    int32_t plen[N] = {6, 2, 3, 1, 5, 4, 2};
    int32_t out[N * NEW], ol[N], want[N * NEW], wl[N];
    char err[256];
    KVCache kv, alone;
    Sampler s;
    sampler_init(&s, V);
    CHECK(kv_init(&kv, m, SLOTS, TP + NEW, 5, err, sizeof err) == 0);
    CHECK(kv_init(&alone, m, 1, TP + NEW, TP, err, sizeof err) == 0);
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int greedy = 0; greedy <= 1; greedy++) {
            GenConfig g = queue_config(NEW, greedy, 8, 5);
            Rng r[N];
            streams_init(r, N, 77);
            TokenOrder order = {.n = 0};
            CHECK(gen_generate_queue(m, &kv, &s, &g, r, prompts, plen, N, TP, SLOTS, out, ol,
                                     record_order, &order, err, sizeof err) == 0);
            queue_alone(m, &alone, &s, &g, 77, prompts, plen, N, TP, want, wl);
            for (int q = 0; q < N; q++)
                CHECK_MSG(ol[q] == wl[q] && !memcmp(out + q * NEW, want + q * NEW,
                                                    (size_t)wl[q] * sizeof(int32_t)),
                          "%s, %d threads, %s: sequence %d differs from its tokens alone", what,
                          threads, greedy ? "greedy" : "sampled", q);
            if (greedy) continue;
            // the sampled lengths differ, and sequence 3 starts before the longest of the
            // first three ends: it took the slot of one that ended
            int longest = 0;
            for (int q = 1; q < SLOTS; q++) longest = ol[q] > ol[longest] ? q : longest;
            CHECK_MSG(ol[longest] > ol[0] || ol[longest] > ol[1] || ol[longest] > ol[2],
                      "%s: the first three sequences have equal lengths", what);
            CHECK_MSG(order_at(&order, SLOTS, 0) < order_at(&order, longest, 1),
                      "%s: sequence %d waited for the whole first batch", what, SLOTS);
        }
    }
    omp_set_num_threads(saved);
    Rng r1;
    rng_init(&r1, 1);
    GenConfig g = pure_sampling(NEW);
    CHECK_ERR(gen_generate_queue(m, &kv, &s, &g, &r1, prompts, plen, 1, TP, SLOTS + 1, out, ol,
                                 NULL, NULL, err, sizeof err), err, "slots", NULL);
    kv_free(&kv); kv_free(&alone); sampler_free(&s);
}

static void test_generate_queue_equals_alone(void) {
    Model m;
    tiny_model(&m, 1, 1);
    queue_case(&m, 61, "GPT-2");
    model_free(&m);
    tiny_llama(&m, &llama_all, 1, 1);
    queue_case(&m, llama_all.vocab_size, "Llama-style");
    model_free(&m);
}

// gen_generate_queue with g.share_prompts on model m (vocabulary V), keys and values cached in
// fmt: ten sequences through 4 slots, 6 rows per call: a group of three with one prompt (A), a
// pair (B), one alone (C), A's group again later (entering as slots free up) and A's first four
// tokens (the same start, another prompt). Each sequence's tokens equal those without sharing and
// those it gets alone, greedy and sampled, on 1 and 2 threads; with sharing the group's three
// first tokens come in one step (the copies sample beside their source), where without it the
// second one's prompt waits for rows while the first decodes.
static void share_case(const Model *m, int V, LowpFormat fmt, const char *what) {
    enum { N = 10, TP = 6, NEW = 10, SLOTS = 4, ROWS = 6 };
    int32_t A[5] = {4, 9, 1, 7, 2}, B[3] = {5, 6, 8}, C[4] = {11, 12, 13, 14};
    int32_t prompts[N * TP] = {0}, plen[N];
    const int32_t *which[N] = {A, A, A, B, B, C, A, A, A, A};
    for (int q = 0; q < N; q++) {
        plen[q] = which[q] == A ? 5 : which[q] == B ? 3 : 4;
        if (q == N - 1) plen[q] = 4;   // A's first four tokens
        memcpy(prompts + q * TP, which[q], (size_t)plen[q] * sizeof(int32_t));
    }
    int32_t out[N * NEW], ol[N], plain[N * NEW], pl[N], want[N * NEW], wl[N];
    char err[256];
    KVCache kv, alone;
    Sampler s;
    sampler_init(&s, V);
    CHECK(kv_init_as(&kv, m, SLOTS, TP + NEW, ROWS, fmt, err, sizeof err) == 0);
    CHECK(kv_init_as(&alone, m, 1, TP + NEW, TP, fmt, err, sizeof err) == 0);
    int saved = omp_get_max_threads();
    for (int threads = 1; threads <= 2; threads++) {
        omp_set_num_threads(threads);
        for (int greedy = 0; greedy <= 1; greedy++) {
            GenConfig g = queue_config(NEW, greedy, 4, 7);
            Rng r[N];
            TokenOrder shared = {.n = 0}, unshared = {.n = 0};
            for (int share = 1; share >= 0; share--) {
                g.share_prompts = share;
                streams_init(r, N, 91);
                CHECK(gen_generate_queue(m, &kv, &s, &g, r, prompts, plen, N, TP, SLOTS,
                                         share ? out : plain, share ? ol : pl, record_order,
                                         share ? &shared : &unshared, err, sizeof err) == 0);
            }
            queue_alone(m, &alone, &s, &g, 91, prompts, plen, N, TP, want, wl);
            for (int q = 0; q < N; q++) {
                CHECK_MSG(ol[q] == pl[q] && !memcmp(out + q * NEW, plain + q * NEW,
                                                    (size_t)pl[q] * sizeof(int32_t)),
                          "%s, %d threads, %s: sequence %d differs shared and unshared", what,
                          threads, greedy ? "greedy" : "sampled", q);
                CHECK_MSG(ol[q] == wl[q] && !memcmp(out + q * NEW, want + q * NEW,
                                                    (size_t)wl[q] * sizeof(int32_t)),
                          "%s, %d threads, %s: shared sequence %d differs from its tokens alone",
                          what, threads, greedy ? "greedy" : "sampled", q);
            }
            // the first tokens: A's group of three together with sharing
            int first3 = shared.n >= 3 && shared.seq[0] + shared.seq[1] + shared.seq[2] == 3 &&
                         shared.seq[0] != shared.seq[1] && shared.seq[1] != shared.seq[2] &&
                         shared.seq[0] != shared.seq[2];
            CHECK_MSG(first3, "%s: with sharing the first tokens are not sequences 0, 1, 2", what);
            CHECK_MSG(order_at(&unshared, 1, 0) > order_at(&unshared, 0, 0) + 1,
                      "%s: without sharing sequence 1 did not wait for its prompt's rows", what);
        }
    }
    omp_set_num_threads(saved);
    kv_free(&kv); kv_free(&alone); sampler_free(&s);
}

static void test_generate_queue_shares_prompts(void) {
    Model m;
    tiny_model(&m, 1, 1);
    share_case(&m, 61, LOWP_FP32, "GPT-2");
    share_case(&m, 61, LOWP_BF16, "GPT-2, bf16 cache");
    model_free(&m);
    tiny_llama(&m, &llama_all, 1, 1);
    share_case(&m, llama_all.vocab_size, LOWP_FP32, "Llama-style");
    share_case(&m, llama_all.vocab_size, LOWP_BF16, "Llama-style, bf16 cache");
    model_free(&m);
}

// Giving a Llama-style model's activations and a cache's keys and values back to the system
// (model_release_activations, kv_release) keeps what was computed once at init (the RoPE
// frequencies): the same forward and the same greedy tokens afterwards.
static void test_release_keeps_rope(void) {
    enum { TP = 6, NEW = 10 };
    Model m;
    tiny_llama(&m, &llama_all, 1, TP + NEW);
    int32_t prompt[TP] = {1, 2, 3, 4, 5, 6}, plen = TP, out1[NEW], out2[NEW], ol1, ol2, len = TP;
    int V = llama_all.vocab_size;
    char err[256];
    ModelBatch b = {.B = 1, .T = TP, .tokens = prompt, .lengths = &len};
    float *want = malloc((size_t)V * sizeof(float));
    CHECK(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    memcpy(want, model_logits_at(&m, 0, TP - 1), (size_t)V * sizeof(float));
    model_release_activations(&m);
    CHECK(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    CHECK_CLOSE(model_logits_at(&m, 0, TP - 1), want, (size_t)V, 0.0, 0.0,
                "logits after model_release_activations");
    KVCache kv;
    Sampler s;
    sampler_init(&s, V);
    CHECK(kv_init(&kv, &m, 1, TP + NEW, TP, err, sizeof err) == 0);
    GenConfig g = pure_sampling(NEW);
    g.sampler.temperature = 0.0f;
    Rng r;
    rng_init(&r, 1);
    CHECK(gen_generate(&m, &kv, &s, &g, &r, prompt, &plen, 1, TP, out1, &ol1, NULL, NULL, err,
                       sizeof err) == 0);
    kv_release(&kv);
    CHECK(gen_generate(&m, &kv, &s, &g, &r, prompt, &plen, 1, TP, out2, &ol2, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(ol1 == NEW && ol2 == NEW && memcmp(out1, out2, sizeof out1) == 0);
    // the frequencies themselves, as computed from the config (released both ways above)
    const ModelConfig *c = &llama_all;
    int hd = model_head_dim(c);
    float freq[64];
    rope_inv_freq(freq, hd, c->rope_theta, c->rope_scaling, c->rope_factor,
                  c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_original_max_pos);
    CHECK(freq[0] > 0.0f);
    CHECK_CLOSE(m.inv_freq, freq, (size_t)hd / 2, 0.0, 0.0, "the model's RoPE frequencies");
    CHECK_CLOSE(kv.inv_freq, freq, (size_t)hd / 2, 0.0, 0.0, "the cache's RoPE frequencies");
    free(want);
    kv_free(&kv); sampler_free(&s);
    model_free(&m);
}

// Of the whole pages inside p[0..bytes): how many are resident (in), and how many in all.
static void resident_pages(const void *p, size_t bytes, size_t *in, size_t *all) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~(uintptr_t)(page - 1);
    *in = *all = hi > lo ? (hi - lo) / page : 0;
    if (*all == 0) return;
    unsigned char *v = malloc(*all);
    CHECK(mincore((void *)lo, hi - lo, v) == 0);
    *in = 0;
    for (size_t i = 0; i < *all; i++) *in += v[i] & 1;
    free(v);
}

// model_release_activations_tail gives back the last bytes of the activations only (the rest
// stays resident, and a forward afterwards computes what it did); kv_release gives back the
// keys and values of a bf16 cache as of an fp32 one (kv_cache_bytes of them).
static void test_release_tail(void) {
    ModelConfig c = {.max_seq_len = 24, .vocab_size = 61, .n_layer = 2, .n_head = 3, .n_embd = 12,
                     .ln_eps = 1e-5f, .lm_head = 1, .score_head = 0};
    Model m;
    char err[256];
    CHECK(model_init(&m, &c, 16, 24, 1, 0, err, sizeof err) == 0);
    Rng r;
    rng_init(&r, 7);
    rng_fill_normal(&r, m.params_memory, (int64_t)m.num_params, 0.0f, 0.3f);
    size_t all = model_activation_bytes(&m), in, n, page = (size_t)sysconf(_SC_PAGESIZE);
    CHECK(all >= 16 * page);
    enum { B = 16, T = 24 };
    int32_t tok[B * T], len[B];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 7 + 3) % 61;
    for (int i = 0; i < B; i++) len[i] = T;
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len};
    CHECK(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    float *want = malloc((size_t)c.vocab_size * sizeof(float));
    memcpy(want, model_logits_at(&m, 3, T - 1), (size_t)c.vocab_size * sizeof(float));
    memset(m.acts_memory, 1, all);   // every page resident
    size_t tail = all / 3;
    CHECK(model_release_activations_tail(&m, tail) == tail);
    const char *a = (const char *)m.acts_memory;
    resident_pages(a, all - tail - page, &in, &n);   // the head: kept
    CHECK(n > 0 && in == n);
    resident_pages(a + all - tail, tail, &in, &n);   // the tail: given back
    CHECK(n > 0 && in == 0);
    CHECK(model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    CHECK_CLOSE(model_logits_at(&m, 3, T - 1), want, (size_t)c.vocab_size, 0.0, 0.0,
                "logits after model_release_activations_tail");
    CHECK(model_release_activations_tail(&m, all + 4096) == all);   // at most all of them
    resident_pages(a, all, &in, &n);
    CHECK(in == 0);
    // a bf16 cache's keys and values, written by a generation, go back
    KVCache kv;
    Sampler s;
    sampler_init(&s, c.vocab_size);
    CHECK(kv_init_as(&kv, &m, B, T, B * T, LOWP_BF16, err, sizeof err) == 0);
    CHECK(kv_cache_bytes(&kv) >= (size_t)2 * c.n_layer * B * T * c.n_embd * sizeof(uint16_t));
    int32_t out[B * 8], olen[B], plen[B];
    for (int i = 0; i < B; i++) plen[i] = 8;
    GenConfig g = pure_sampling(8);
    Rng rs[B];
    for (int i = 0; i < B; i++) rng_init(&rs[i], (uint64_t)i);
    CHECK(gen_generate_each(&m, &kv, &s, &g, rs, tok, plen, B, 8, out, olen, NULL, NULL, err,
                            sizeof err) == 0);
    resident_pages(kv.memory, kv_cache_bytes(&kv), &in, &n);
    CHECK(n > 0 && in > 0);
    kv_release(&kv);
    resident_pages(kv.memory, kv_cache_bytes(&kv), &in, &n);
    CHECK(in == 0);
    free(want);
    kv_free(&kv); sampler_free(&s);
    model_free(&m);
}

// model_share_activations and kv_share_memory (PPO's frozen models and cache in the policy's
// activations): a Llama-style guest (RoPE tables kept in its own block) and a cache in a trained
// host's block compute what they do alone, bit for bit, interleaved with the host's forwards,
// which compute what they do alone too; releasing the guest's or the shared cache's memory gives
// none of the host's pages back; a larger guest, the host itself, a second sharing and a block
// too small are refused (each keeps its own memory)
static void test_share_activations(void) {
    enum { B = 4, T = 12, NEW = 6 };
    const ModelConfig *c = &llama_all;
    int V = c->vocab_size;
    Model host, guest, alone, big;
    char err[256];
    CHECK(model_init(&host, c, B, T + NEW, 1, 0, err, sizeof err) == 0);
    Rng r;
    rng_init(&r, 3);
    rng_fill_normal(&r, host.params_memory, (int64_t)host.num_params, 0.0f, 0.1f);
    tiny_llama(&guest, c, B, T);
    tiny_llama(&alone, c, B, T);
    tiny_llama(&big, c, 8 * B, T + NEW);   // frozen (one layer), but 8 times the rows
    CHECK(model_share_activations(&big, &host) == -1 && big.acts_host == NULL);
    CHECK(model_share_activations(&host, &host) == -1);
    CHECK(model_activation_bytes(&guest) > 0);
    CHECK(model_share_activations(&guest, &host) == 0 && guest.acts_host == &host);
    CHECK(model_activation_bytes(&guest) == 0);
    CHECK(model_share_activations(&guest, &host) == -1);   // already shares
    CHECK(model_share_activations(&alone, &guest) == -1);  // a host that shares
    int32_t tok[B * T], len[B];
    for (int i = 0; i < B * T; i++) tok[i] = (i * 5 + 1) % V;
    for (int i = 0; i < B; i++) len[i] = T - i;
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len};
    size_t n = (size_t)B * T;
    float *want = malloc(n * sizeof(float)), *got = malloc(n * sizeof(float));
    float *hw = malloc(n * sizeof(float)), *hg = malloc(n * sizeof(float));
    int32_t tgt[B * T];
    for (int i = 0; i < B * T; i++) tgt[i] = (i * 3 + 2) % V;
    ModelBatch bt = b;
    bt.targets = tgt;
    CHECK(model_forward(&alone, &bt, 0, err, sizeof err) == 0);
    model_get_logp(&alone, want);
    CHECK(model_forward(&host, &bt, 0, err, sizeof err) == 0);
    model_get_logp(&host, hw);
    for (int round = 0; round < 2; round++) {   // guest, host, guest, host
        CHECK(model_forward(&guest, &bt, 0, err, sizeof err) == 0);
        model_get_logp(&guest, got);
        CHECK_MSG(memcmp(got, want, n * sizeof(float)) == 0, "round %d: the guest's log-probs "
                  "differ from the same model's alone", round);
        CHECK(model_forward(&host, &bt, 0, err, sizeof err) == 0);
        model_get_logp(&host, hg);
        CHECK_MSG(memcmp(hg, hw, n * sizeof(float)) == 0, "round %d: the host's log-probs "
                  "differ after the guest's forward", round);
    }
    size_t all = model_activation_bytes(&host), in, pages;
    memset(host.acts_memory, 1, all);   // every page resident
    model_release_activations(&guest);
    resident_pages(host.acts_memory, all, &in, &pages);
    CHECK(pages > 0 && in == pages);
    // a cache in the host's block: the same greedy tokens as one of its own; refused when the
    // block is too small
    KVCache kv, kv_own;
    Sampler s;
    sampler_init(&s, V);
    CHECK(kv_init(&kv, &guest, B, T + NEW, B * T, err, sizeof err) == 0);
    CHECK(kv_init(&kv_own, &alone, B, T + NEW, B * T, err, sizeof err) == 0);
    size_t kvb = kv_shared_bytes(c, B, T + NEW, B * T, LOWP_FP32);
    CHECK(kvb > 0 && kvb <= all);
    CHECK(kv_share_memory(&kv, &guest, host.acts_memory, kvb - 64) == -1 && !kv.shared);
    CHECK(kv_share_memory(&kv, &guest, host.acts_memory, all) == 0 && kv.shared);
    CHECK(kv_cache_bytes(&kv) == 0 && kv_share_memory(&kv, &guest, host.acts_memory, all) == -1);
    GenConfig g = pure_sampling(NEW);
    g.sampler.temperature = 0.0f;
    int32_t o1[B * NEW], o2[B * NEW], l1[B], l2[B];
    Rng rs[B];
    for (int round = 0; round < 2; round++) {   // the host's forward between two generations
        for (int i = 0; i < B; i++) rng_init(&rs[i], (uint64_t)i);
        CHECK(gen_generate_each(&guest, &kv, &s, &g, rs, tok, len, B, T, o1, l1, NULL, NULL, err,
                                sizeof err) == 0);
        CHECK(gen_generate_each(&alone, &kv_own, &s, &g, rs, tok, len, B, T, o2, l2, NULL, NULL,
                                err, sizeof err) == 0);
        CHECK_MSG(memcmp(o1, o2, sizeof o1) == 0 && memcmp(l1, l2, sizeof l1) == 0,
                  "round %d: a shared cache decodes other tokens", round);
        CHECK(model_forward(&host, &bt, 0, err, sizeof err) == 0);
    }
    memset(host.acts_memory, 1, all);
    kv_release(&kv);
    resident_pages(host.acts_memory, all, &in, &pages);
    CHECK(in == pages);
    free(want); free(got); free(hw); free(hg);
    kv_free(&kv); kv_free(&kv_own); sampler_free(&s);
    model_free(&guest); model_free(&alone); model_free(&big); model_free(&host);
}

// sampler_sample_rows: each row's token and its stream's state as sampler_sample alone gives
// them, on 1, 2 and 3 threads, with every rule (13 rows over 1000 tokens, random logits)
static void test_sampler_rows(void) {
    enum { V = 1000, N = 13 };
    float *logits = malloc((size_t)N * V * sizeof(float));
    Rng r;
    rng_init(&r, 17);
    rng_fill_normal(&r, logits, (int64_t)N * V, 0.0f, 3.0f);
    const SamplerConfig cfgs[] = {{1.0f, 0, 1.0f}, {0.7f, 0, 1.0f}, {1.0f, 5, 1.0f},
                                  {1.0f, 0, 0.9f}, {0.0f, 0, 1.0f}, {1.3f, 40, 0.95f}};
    Sampler s;
    sampler_init(&s, V);
    const float *rows[N];
    for (int i = 0; i < N; i++) rows[i] = logits + (size_t)i * V;
    int keep = omp_get_max_threads();
    for (size_t c = 0; c < sizeof cfgs / sizeof cfgs[0]; c++) {
        int32_t want[N];
        Rng alone[N];
        for (int i = 0; i < N; i++) {
            rng_init(&alone[i], 1000 * c + (uint64_t)i);
            want[i] = sampler_sample(&s, &cfgs[c], rows[i], &alone[i]);
        }
        for (int nt = 1; nt <= 3; nt++) {
            Rng mine[N], *rp[N];
            int32_t got[N];
            for (int i = 0; i < N; i++) {
                rng_init(&mine[i], 1000 * c + (uint64_t)i);
                rp[i] = &mine[i];
            }
            omp_set_num_threads(nt);
            sampler_sample_rows(&s, &cfgs[c], rows, rp, N, got);
            CHECK_MSG(memcmp(got, want, sizeof got) == 0 && memcmp(mine, alone, sizeof mine) == 0,
                      "config %zu, %d threads: tokens or streams differ from one row at a time",
                      c, nt);
        }
        omp_set_num_threads(keep);
    }
    sampler_free(&s);
    free(logits);
}

static void test_sampler_rules(void) {
    enum { V = 7 };
    float logits[V] = {1.0f, 3.0f, 0.5f, 2.0f, -1.0f, 2.9f, 0.0f};
    Sampler s;
    sampler_init(&s, V);
    Rng r; rng_init(&r, 5);
    SamplerConfig greedy = {0.0f, 0, 1.0f}, k1 = {1.0f, 1, 1.0f}, k2 = {1.0f, 2, 1.0f};
    SamplerConfig p_small = {1.0f, 0, 0.01f}, plain = {1.0f, 0, 1.0f}, cold = {0.5f, 0, 1.0f};
    CHECK(sampler_sample(&s, &greedy, logits, &r) == 1);
    int n = 40000, counts[V] = {0}, counts_cold[V] = {0};
    for (int i = 0; i < 200; i++) {
        CHECK(sampler_sample(&s, &k1, logits, &r) == 1);
        CHECK(sampler_sample(&s, &p_small, logits, &r) == 1);
        int t = sampler_sample(&s, &k2, logits, &r);
        CHECK(t == 1 || t == 5);
    }
    for (int i = 0; i < n; i++) {
        counts[sampler_sample(&s, &plain, logits, &r)]++;
        counts_cold[sampler_sample(&s, &cold, logits, &r)]++;
    }
    // frequencies match softmax(logits / temperature) within 5 standard errors
    for (int pass = 0; pass < 2; pass++) {
        double temp = pass ? 0.5 : 1.0, z = 0;
        for (int i = 0; i < V; i++) z += exp(logits[i] / temp);
        for (int i = 0; i < V; i++) {
            double p = exp(logits[i] / temp) / z, f = (double)(pass ? counts_cold : counts)[i] / n;
            double se = sqrt(p * (1 - p) / n);
            CHECK_MSG(fabs(f - p) <= 5 * se + 1e-4,
                      "T=%.1f token %d: frequency %.4f vs probability %.4f", temp, i, f, p);
        }
    }
    // top-p 0.8: probabilities sorted are 0.391 (1), 0.354 (5), 0.144 (3), ... -> keeps {1, 5, 3}
    SamplerConfig p07 = {1.0f, 0, 0.8f};
    int seen[V] = {0};
    for (int i = 0; i < 5000; i++) seen[sampler_sample(&s, &p07, logits, &r)]++;
    CHECK(seen[1] && seen[5] && seen[3]);
    CHECK(!seen[0] && !seen[2] && !seen[4] && !seen[6]);
    sampler_free(&s);
}

// ---- the attention kernel alone ----

// One query head's attention in the order kv_attention documents, one value at a time: each
// score q . k summed in `lanes` partial sums (u takes elements u, u + lanes, ... below
// hv = hd - hd % lanes, by multiply-adds; the rest multiplied, then added to partial 0), then
// 0 + partial 0 + partial 1 + ...; times 1/sqrt(hd); softmax by expf of (score - max), the sum
// in position order, each times its inverse; the output by multiply-adds in position order.
// keys, values: (n, hd).
// The kernel's vector multiply-adds are fused where the compiler contracts a product and a sum
// (GCC from -O2 on a CPU with FMA), as are its sums past the last whole 16 values and this file's.
static int build_contracts(void) {
    volatile float va = 1.0f + 0x1p-13f, vc = -(1.0f + 0x1p-12f);
    float a = va, c = vc;
    return a * a + c != 0.0f;   // 2^-26 when fused; the product rounded alone cancels c
}

// fmaf(a, b, c) where the build contracts, else the product rounded, then the sum
static float multiply_add(float a, float b, float c, int fused) {
    if (fused) return fmaf(a, b, c);
    volatile float p = a * b;
    return p + c;
}

static void attention_reference(float *y, const float *q, const float *keys, const float *values,
                                int n, int hd, int lanes) {
    int hv = hd - hd % lanes, fused = build_contracts(), hv16 = hd - hd % 16;
    float *w = malloc((size_t)n * sizeof(float)), mx = -INFINITY, sum = 0.0f;
    for (int s = 0; s < n; s++) {
        const float *k = keys + (size_t)s * hd;
        float part[32] = {0};
        for (int i = 0; i < hv; i++)
            part[i % lanes] = multiply_add(q[i], k[i], part[i % lanes], fused);
        for (int i = hv; i < hd; i++) {
            volatile float p = q[i] * k[i];   // rounded: not fused into the sum
            part[0] = part[0] + p;
        }
        float d = 0.0f;
        for (int u = 0; u < lanes; u++) d = d + part[u];
        w[s] = d * (1.0f / sqrtf((float)hd));
        if (w[s] > mx) mx = w[s];
    }
    for (int s = 0; s < n; s++) w[s] = expf(w[s] - mx);
    for (int s = 0; s < n; s++) sum += w[s];
    float inv = 1.0f / sum;
    for (int i = 0; i < hd; i++) y[i] = 0.0f;
    for (int s = 0; s < n; s++)
        for (int i = 0; i < hd; i++)   // the rest past whole 16s always fused (fmaf)
            y[i] = multiply_add(w[s] * inv, values[(size_t)s * hd + i], y[i], fused || i >= hv16);
    free(w);
}

// B sequences of lengths len fed one position per call; the last layer's keys and values of
// every position (after RoPE; rounded to bf16 for a bf16 cache) copied out of kv->qkv after each
// call into keys, values (B, T, KVH, hd).
static void attention_fill(const Model *m, KVCache *kv, const int32_t *len, int B, int T,
                           float *keys, float *values) {
    char err[256];
    int NH = kv->NH, KVH = kv->KVH, hd = kv->hd, V = m->config.vocab_size;
    Rng r; rng_init(&r, 3);
    for (int t = 0; t < T; t++) {
        int32_t tok[B], one[B];
        for (int b = 0; b < B; b++) {
            tok[b] = (int32_t)rng_below(&r, (uint64_t)V);
            one[b] = t < len[b];
        }
        CHECK(kv_forward(m, kv, tok, one, B, 1, NULL, err, sizeof err) == 0);
        for (int b = 0, row = 0; b < B; b++) {
            if (!one[b]) continue;
            const float *qkv = kv->qkv + (size_t)row++ * kv->qkv_w;
            size_t at = ((size_t)b * T + t) * KVH * hd, w = (size_t)KVH * hd;
            memcpy(keys + at, qkv + (size_t)NH * hd, w * sizeof(float));
            memcpy(values + at, qkv + (size_t)(NH + KVH) * hd, w * sizeof(float));
            if (kv->k16) {   // the cache's rounding, read back exactly
                uint16_t h[w];
                lowp_bf16_round(h, keys + at, w);
                for (size_t i = 0; i < w; i++) keys[at + i] = lowp_bf16_to_float(h[i]);
                lowp_bf16_round(h, values + at, w);
                for (size_t i = 0; i < w; i++) values[at + i] = lowp_bf16_to_float(h[i]);
            }
        }
    }
}

// attention_reference of every sequence b's last position (len[b] positions) and query head
// into want (B, NH * hd), its KV head's rows taken out of keys, values (B, T, KVH, hd).
static void attention_expected(float *want, const KVCache *kv, const float *q, const float *keys,
                               const float *values, const int32_t *len, int B, int T) {
    int NH = kv->NH, KVH = kv->KVH, hd = kv->hd, A = NH * hd;
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            size_t bytes = (size_t)len[b] * hd * sizeof(float);
            float *kh = malloc(bytes), *vh = malloc(bytes);
            for (int s = 0; s < len[b]; s++) {
                size_t at = (((size_t)b * T + s) * KVH + h / (NH / KVH)) * hd;
                memcpy(kh + (size_t)s * hd, keys + at, (size_t)hd * sizeof(float));
                memcpy(vh + (size_t)s * hd, values + at, (size_t)hd * sizeof(float));
            }
            attention_reference(want + (size_t)b * A + (size_t)h * hd,
                                q + (size_t)b * A + (size_t)h * hd, kh, vh, len[b], hd,
                                kv->k16 ? 32 : 16);
            free(kh); free(vh);
        }
}

// kv_attention of the rows `rows` (sequence row_seq, its last position) of the last layer, on
// `threads` threads, into out (nrows, NH * hd); queries from q (B, NH * hd) by sequence.
static void attention_rows(KVCache *kv, const int *rows, int nrows, const int32_t *len,
                           const float *q, int threads, float *out) {
    int NH = kv->NH, hd = kv->hd;
    for (int j = 0; j < nrows; j++) {
        kv->row_seq[j] = rows[j];
        kv->row_pos[j] = len[rows[j]] - 1;
        memcpy(kv->qkv + (size_t)j * kv->qkv_w, q + (size_t)rows[j] * NH * hd,
               (size_t)NH * hd * sizeof(float));
    }
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    kv_attention(out, kv, nrows, kv->L - 1);
    omp_set_num_threads(saved);
}

// kv_attention gives every (row, head) the bits of the documented order (attention_reference
// on the keys and values the model made), whichever rows share the call and in whatever order,
// on 1 and 2 threads, its group's query heads taken together (many rows) or one by one (one
// row), in both cache formats: groups 1, 3, 4 (multi-query) and 8, head sizes 10-80 (rests past
// the partial sums included), a sequence past position 1000.
static void test_attention_exact(void) {
    const ModelConfig *cs[] = {&llama_mha, &llama_gqa, &llama_g4, &llama_g8, &llama_mqa,
                               &llama_all};
    enum { B = 5 };
    for (int ci = 0; ci < 6; ci++) {
        const ModelConfig *c = cs[ci];
        int T = c->max_seq_len;
        int32_t len[B] = {T, T / 2, 1, 17 < T ? 17 : T, 16 < T ? 16 : T};
        if (T > 1000) len[1] = 5;   // one long sequence is enough
        Model m; tiny_llama(&m, c, 1, 1);
        for (int f = 0; f < 2; f++) {
            char err[256];
            KVCache kv;
            CHECK(kv_init_as(&kv, &m, B, T, B, f ? LOWP_BF16 : LOWP_FP32, err, sizeof err) == 0);
            int NH = kv.NH, KVH = kv.KVH, hd = kv.hd, A = NH * hd;
            size_t cache = (size_t)B * T * KVH * hd;
            float *keys = malloc(cache * sizeof(float)), *values = malloc(cache * sizeof(float));
            attention_fill(&m, &kv, len, B, T, keys, values);
            float *q = malloc((size_t)B * A * sizeof(float)), *want = malloc((size_t)B * A * 4);
            Rng r; rng_init(&r, 9);
            rng_fill_normal(&r, q, (int64_t)B * A, 0.0f, 1.0f);
            attention_expected(want, &kv, q, keys, values, len, B, T);
            float *got = malloc((size_t)B * A * sizeof(float));
            int all[B] = {0, 1, 2, 3, 4}, back[B] = {4, 2, 0, 3, 1};
            for (int threads = 1; threads <= 2; threads++) {
                attention_rows(&kv, all, B, len, q, threads, got);
                CHECK_MSG(!memcmp(got, want, (size_t)B * A * 4), "%s cache, %d heads over %d, "
                          "head_dim %d, %d threads: all rows differ from the reference",
                          f ? "bf16" : "fp32", NH, KVH, hd, threads);
                attention_rows(&kv, back, B, len, q, threads, got);
                for (int j = 0; j < B; j++)
                    CHECK_MSG(!memcmp(got + (size_t)j * A, want + (size_t)back[j] * A,
                                      (size_t)A * 4),
                              "%s cache, head_dim %d, %d threads: row %d in another order differs",
                              f ? "bf16" : "fp32", hd, threads, back[j]);
                for (int b = 0; b < B; b++) {
                    attention_rows(&kv, &all[b], 1, len, q, threads, got);
                    CHECK_MSG(!memcmp(got, want + (size_t)b * A, (size_t)A * 4),
                              "%s cache, head_dim %d, %d threads: row %d alone differs",
                              f ? "bf16" : "fp32", hd, threads, b);
                }
            }
            free(keys); free(values); free(q); free(want); free(got);
            kv_free(&kv);
        }
        model_free(&m);
    }
}

int main(void) {
    test_case("generate: KV-cache prefill and incremental logits equal the full forward",
              test_incremental_equals_full);
    test_case("generate: seeds, chunked prefill, greedy vs full forward, end token, errors",
              test_generate_determinism_and_chunking);
    test_case("generate: one sampling stream per sequence, the same tokens in a batch cut in two",
              test_generate_each_streams);
    test_case("generate: continuous batching gives each sequence its tokens alone (GPT-2 and "
              "Llama-style, greedy and sampled, 1 and 2 threads) and refills freed slots",
              test_generate_queue_equals_alone);
    test_case("generate: continuous batching with a shared prompt: a group prefills it once, the "
              "copies sample beside their source, every sequence's tokens as without sharing and "
              "alone (GPT-2 and Llama-style, fp32 and bf16 cache, greedy and sampled, 1 and 2 "
              "threads)",
              test_generate_queue_shares_prompts);
    test_case("generate: releasing activations and the cache keeps the RoPE frequencies",
              test_release_keeps_rope);
    test_case("generate: releasing the activations' tail keeps the rest resident and the "
              "forward's results; kv_release gives a bf16 cache's keys and values back",
              test_release_tail);
    test_case("generate: a cancel function ends generation between decoding steps",
              test_generate_cancel);
    test_case("generate: Llama-style KV-cache logits equal the full forward (GQA, MQA, groups of "
              "4 and 8, head_dim 10-80, biases, q/k norms, untied, Llama 3 RoPE past position "
              "1000, fp32 and bf16 caches)",
              test_llama_incremental_equals_full);
    test_case("generate: Llama-style padded batch decodes as each sequence alone",
              test_llama_batch_equals_alone);
    test_case("generate: Llama-style greedy generation equals the argmax of full forwards",
              test_llama_greedy_equals_full);
    test_case("generate: Llama-style decoding on 1 and 2 threads agrees",
              test_llama_threads_agree);
    test_case("generate: Llama-style cache sized by KV heads, refuses another model's shape",
              test_llama_cache_size);
    test_case("generate: the attention kernel gives each row and head the bits of its documented "
              "order, whichever rows share the call, in any order, on 1 and 2 threads (groups 1, "
              "3, 4, 8, head_dim 10-80, fp32 and bf16 caches, past position 1000)",
              test_attention_exact);
    test_case("generate: a frozen model and a cache in another model's activations compute what "
              "they do alone; releasing them keeps the host's pages", test_share_activations);
    test_case("sampler: greedy, top-k, top-p, temperature frequencies", test_sampler_rules);
    test_case("sampler: rows sampled in parallel give the tokens and streams of one at a time",
              test_sampler_rows);
    return test_summary();
}
