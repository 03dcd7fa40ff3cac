// Decoding with reduced-precision weights (model_lowp_attach) and a bf16 KV cache, on tiny models
// of both block kinds trained here on a sequence rule (so that greedy decoding is mostly
// confident, as a trained policy's is), not on random weights whose logits are all near ties.
//
// The tolerances come from the formats' rounding. Each converted matrix's rounding noise is
// measured exactly: rho = rms(W' - W) / rms(W) over its weights (bf16 about u / sqrt 3,
// u = 2^-8; int8 (s / sqrt 12) / rms(W) with s = max|w| / 127 of each channel, larger where a
// channel has outliers). The AVX512 bf16 kernels round the activations too (another u / sqrt 3),
// and so does every product of more than lowp_rowdot_rows rows on AVX512-BF16 (int8 as well: the
// NP rows decoded here are that many). Independent roundings add in quadrature, so a product
// y_v = sum_i w_vi x_i is off by a deviation of about rho sqrt(sum_i (w_vi x_i)^2). A logit
// carries the errors of the LM head's own product and of the 4L residual-branch products before
// it, two in series in each branch (attention's input and output projections, the MLP's two; each
// normalised on its way by the next norm, so of the same relative size): LOWP_PATHS(L) = 4L + 1
// terms, again in quadrature. A bf16 KV cache rounds keys and values (u / sqrt 3 each) instead;
// a value's error reaches the attention output at its own relative size (one term per layer),
// a key's through its score: s_j = q.k_j / sqrt(hd) moves by a deviation rho S_j, S_j =
// sqrt(sum_i q_i^2 k_ji^2 / hd), and the output sum_j p_j v_j by sum_j ds_j p_j (v_j - y), where
// |v_j - y| <= 2 (1 - p_j) max|v|: a deviation of at most rho max|v| F, F = 2 sqrt(sum_j (S_j p_j
// (1 - p_j))^2), the largest F over layers, heads and queries measured on the fp32 forward of the
// sequences: 1 + F^2 terms per layer; the head's none, LOWP_KV_PATHS(L, F). (Counting a key as one
// unit, as a value, held for some trained models and not for others, whose scores are large.)
// The bound is LOWP_SIGMAS = 6 deviations of that sum with the worst matrix's rho, computed per
// decoding step from the head's weights and its input row at that step. It is checked (every
// teacher-forced step within it) and then used: greedy decoding may only diverge from fp32 at a
// step whose fp32 top-2 margin is within twice it.
#include "generate.h"
#include "lowp.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "sampler.h"
#include "testlib.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { VOC = 48, TRAIN_B = 16, TRAIN_T = 24, TRAIN_STEPS = 300 };
enum { NP = 24, PROMPT = 4, NEW = 16, TT = PROMPT + NEW };

#define LOWP_PATHS(L) (4.0 * (L) + 1.0)
#define LOWP_KV_PATHS(L, F) ((L) * (1.0 + (F) * (F)))
#define LOWP_SIGMAS 6.0
#define BF16_U 0.00390625   // 2^-8

static const ModelConfig gpt2_cfg = {.max_seq_len = 32, .vocab_size = VOC, .n_layer = 2,
                                     .n_head = 4, .n_embd = 48, .ln_eps = 1e-5f, .lm_head = 1};
// grouped-query attention (6 heads over 2), untied head, q/k/v biases
static const ModelConfig llama_cfg = {
    .arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 32, .vocab_size = VOC,
    .n_layer = 2, .n_head = 6, .n_embd = 48, .ln_eps = 1e-5f, .lm_head = 1, .n_kv_head = 2,
    .head_dim = 8, .d_ff = 80, .rope_theta = 10000.0f, .qkv_bias = 1, .untied = 1};

// The language: x[t+1] = (x[t] + x[t-1]) mod VOC from two random start tokens, so the next
// token needs attention to two positions.
static void rule_seq(int32_t *x, int n, Rng *r) {
    x[0] = (int32_t)rng_below(r, VOC);
    x[1] = (int32_t)rng_below(r, VOC);
    for (int t = 2; t < n; t++) x[t] = (x[t - 1] + x[t - 2]) % VOC;
}

static void train_tiny(Model *m, const ModelConfig *c) {
    char err[256];
    if (model_init(m, c, TRAIN_B, TRAIN_T, 1, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    model_init_weights(m, 11);
    AdamWConfig o = {.lr = 3e-3f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                     .weight_decay = 0.0f, .grad_clip = 1.0f};
    int32_t tok[TRAIN_B * TRAIN_T], tgt[TRAIN_B * TRAIN_T], len[TRAIN_B];
    Rng r; rng_init(&r, 3);
    int threads = omp_get_max_threads();
    omp_set_num_threads(1);   // tiny products: one thread is faster than two on a loaded machine
    for (int step = 1; step <= TRAIN_STEPS; step++) {
        for (int b = 0; b < TRAIN_B; b++) {
            int32_t x[TRAIN_T + 1];
            rule_seq(x, TRAIN_T + 1, &r);
            for (int t = 0; t < TRAIN_T; t++) {
                tok[b * TRAIN_T + t] = x[t];
                tgt[b * TRAIN_T + t] = t >= 1 ? x[t + 1] : -1;   // the first is unpredictable
            }
            len[b] = TRAIN_T;
        }
        ModelBatch batch = {.B = TRAIN_B, .T = TRAIN_T, .tokens = tok, .lengths = len,
                            .targets = tgt};
        model_zero_grad(m);
        if (model_forward(m, &batch, 0, err, sizeof err)) { fprintf(stderr, "%s\n", err); exit(1); }
        model_backward(m, &batch, NULL, NULL);
        optim_adamw_step(m, &o, o.lr, step);
    }
    omp_set_num_threads(threads);
}

// The LM head's matrix (V, C) in fp32.
static const float *head_w(const Model *m) {
    return m->config.untied ? m->params.lmheadw : m->params.wte;
}

// rms(W' - W) / rms(W) of the model's worst matrix converted to fmt (the copies' own layout:
// GPT-2's Conv1D weights are [in, out]), plus the activations' rounding on the AVX512 bf16 path.
// LOWP_FP32 stands for the bf16 KV cache: keys and values rounded (u / sqrt 3).
static double rounding_rho(const Model *m, LowpFormat fmt) {
    double act = BF16_U / sqrt(3.0);
    if (fmt == LOWP_FP32) return act;
    double worst = 0.0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        if (t.ndim != 2 || t.shape[0] == 1 || strstr(t.name, "wpe")) continue;   // score, positions
        int tied = strstr(t.name, "wte") || strstr(t.name, "embed") || strstr(t.name, "lm_head");
        LowpLayout layout = m->config.arch == MODEL_ARCH_GPT2 && !tied ? LOWP_IN_OUT : LOWP_OUT_IN;
        int rows = (int)t.shape[0], cols = (int)t.shape[1];
        int C = layout == LOWP_OUT_IN ? cols : rows, OC = layout == LOWP_OUT_IN ? rows : cols;
        LowpMatrix lm;
        char err[256];
        if (lowp_matrix_init(&lm, fmt, t.data, layout, C, OC, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s: %s", t.name, err);
            continue;
        }
        float *row = malloc((size_t)C * sizeof(float));
        double e2 = 0.0, w2 = 0.0;
        for (int o = 0; o < OC; o++) {
            lowp_matrix_row(row, &lm, o);
            for (int c = 0; c < C; c++) {
                double w = layout == LOWP_OUT_IN ? t.data[(size_t)o * C + c]
                                                 : t.data[(size_t)c * OC + o];
                e2 += (row[c] - w) * (row[c] - w);
                w2 += w * w;
            }
        }
        worst = fmax(worst, sqrt(e2 / w2));
        free(row);
        lowp_matrix_free(&lm);
    }
    int rounds = fmt == LOWP_BF16 && lowp_default_path(fmt) == LOWP_PATH_AVX512;
    LowpMatrix probe = {.fmt = fmt, .path = lowp_default_path(fmt)};
    rounds = rounds || (NP > lowp_rowdot_rows(&probe) && lowp_gemm_rounds(&probe));
    return rounds ? sqrt(worst * worst + act * act) : worst;
}

// F of LOWP_KV_PATHS: the largest 2 sqrt(sum_j (S_j p_j (1 - p_j))^2) over the layers, heads and
// queries of the fp32 forward of seqs (NP, TT), j the keys a query attends to (its position and
// earlier ones), p its softmax row. The forward keeps q and k as the cache holds them (m->qkv,
// RoPE applied in place) and the softmax rows (m->att).
static double key_factor(Model *m, const int32_t *seqs) {
    const ModelConfig *c = &m->config;
    int NH = c->n_head, KVH = model_kv_heads(c), hd = model_head_dim(c), L = c->n_layer;
    int QKV = (NH + 2 * KVH) * hd;
    size_t att_layer = (size_t)m->max_B * NH * m->max_T * m->max_T;
    char err[256];
    double F = 0.0;
    for (int b0 = 0; b0 < NP; b0 += TRAIN_B) {
        int B = NP - b0 < TRAIN_B ? NP - b0 : TRAIN_B, lens[TRAIN_B];
        for (int b = 0; b < B; b++) lens[b] = TT;
        ModelBatch mb = {.tokens = seqs + (size_t)b0 * TT, .lengths = lens, .B = B, .T = TT};
        CHECK_MSG(model_forward(m, &mb, 0, err, sizeof err) == 0, "%s", err);
        int64_t N = (int64_t)B * TT;   // rows packed sequence after sequence
        for (int l = 0; l < L; l++) {
            const float *qkv = m->qkv + (size_t)l * N * QKV, *att = m->att + l * att_layer;
            for (int64_t r = 0; r < N; r++)
                for (int h = 0; h < NH; h++) {
                    const float *q = qkv + (size_t)r * QKV + (size_t)h * hd;
                    int64_t b = r / TT, t = r % TT;
                    const float *p = att + ((size_t)b * NH + h) * TT * TT + (size_t)t * TT;
                    double f2 = 0.0;
                    for (int64_t j = 0; j <= t; j++) {
                        const float *k = qkv + (size_t)(b * TT + j) * QKV +
                                         (size_t)(NH + h / (NH / KVH)) * hd;
                        double s2 = 0.0;
                        for (int i = 0; i < hd; i++) s2 += (double)q[i] * q[i] * k[i] * k[i];
                        double e = sqrt(s2 / hd) * p[j] * (1.0 - p[j]);
                        f2 += e * e;
                    }
                    F = fmax(F, 2.0 * sqrt(f2));
                }
        }
    }
    return F;
}

// The bound on a step's logit error with rounding noise rho (of the weights, or of the cached
// keys and values) along paths independent ways (LOWP_PATHS or LOWP_KV_PATHS), from the head's
// rows and its input row h at that step.
static double logit_bound(const Model *m, double rho, double paths, const float *h) {
    int V = m->config.vocab_size, C = m->config.n_embd;
    const float *W = head_w(m);
    double worst = 0.0;
    for (int v = 0; v < V; v++) {
        double wx2 = 0.0;
        for (int i = 0; i < C; i++) {
            double w = W[(size_t)v * C + i];
            wx2 += w * w * h[i] * h[i];
        }
        worst = fmax(worst, rho * sqrt(wx2));
    }
    return LOWP_SIGMAS * sqrt(paths) * worst;
}

static int argmax(const float *x, int n) {
    int k = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[k]) k = i;
    return k;
}

// Greedy decoding of the NP prompts (PROMPT tokens each) for NEW tokens: out (NP, TT) prompt +
// tokens, logits (NP, NEW, V) at each step, heads (NP, NEW, C) the final-norm rows. With force
// not NULL (NP, TT) the next token is force's (teacher forcing), not the argmax.
static void greedy(const Model *m, LowpFormat cache, const int32_t *force, int32_t *out,
                   float *logits, float *heads) {
    int V = m->config.vocab_size, C = m->config.n_embd;
    char err[256];
    KVCache kv;
    CHECK(kv_init_as(&kv, m, NP, TT, NP * PROMPT, cache, err, sizeof err) == 0);
    Rng r; rng_init(&r, 99);
    int32_t pl[NP], one[NP], next[NP];
    for (int b = 0; b < NP; b++) {
        int32_t x[TT];
        rule_seq(x, TT, &r);
        memcpy(out + (size_t)b * TT, x, PROMPT * sizeof(int32_t));
        pl[b] = PROMPT;
        one[b] = 1;
    }
    int32_t pre[NP * PROMPT];
    for (int b = 0; b < NP; b++) memcpy(pre + b * PROMPT, out + (size_t)b * TT, PROMPT * 4);
    CHECK(kv_forward(m, &kv, pre, pl, NP, PROMPT, NULL, err, sizeof err) == 0);
    for (int s = 0; s < NEW; s++) {
        for (int b = 0; b < NP; b++) {
            const float *lg = kv.logits + (size_t)b * V;
            memcpy(logits + ((size_t)b * NEW + s) * V, lg, (size_t)V * sizeof(float));
            memcpy(heads + ((size_t)b * NEW + s) * C, kv.head_in + (size_t)b * C,
                   (size_t)C * sizeof(float));
            next[b] = force ? force[(size_t)b * TT + PROMPT + s] : argmax(lg, V);
            out[(size_t)b * TT + PROMPT + s] = next[b];
        }
        if (s + 1 < NEW) CHECK(kv_forward(m, &kv, next, one, NP, 1, NULL, err, sizeof err) == 0);
    }
    kv_free(&kv);
}

typedef struct {
    double agree;        // tokens before the first divergence / all new tokens
    double safe;         // the same for the first step whose fp32 margin is within 2 bounds
    double worst_ratio;  // largest logit error / bound over the teacher-forced steps
    double key_factor;   // F of LOWP_KV_PATHS (a bf16 cache), else 0
} Agreement;

// Greedy decoding with m's narrow copies (attached by the caller, cache format cache) against
// fp32 weights and an fp32 cache (ref: the same model without copies, or m itself detached).
static Agreement compare_greedy(Model *m, LowpFormat fmt, LowpFormat cache) {
    int V = m->config.vocab_size, C = m->config.n_embd;
    size_t nl = (size_t)NP * NEW * V, nh = (size_t)NP * NEW * C;
    int32_t ref_tok[NP * TT], narrow_tok[NP * TT], forced_tok[NP * TT];
    float *ref_lg = malloc(nl * sizeof(float)), *ref_h = malloc(nh * sizeof(float));
    float *nar_lg = malloc(nl * sizeof(float)), *nar_h = malloc(nh * sizeof(float));
    char err[256];
    // fp32: the copies off
    struct ModelLowp *saved = m->lowp;
    m->lowp = NULL;
    greedy(m, LOWP_FP32, NULL, ref_tok, ref_lg, ref_h);
    m->lowp = saved;
    greedy(m, cache, NULL, narrow_tok, nar_lg, nar_h);
    Agreement a = {0, 0, 0, 0};
    double rho = rounding_rho(m, fmt), F = 0.0;
    if (fmt == LOWP_FP32) {   // the bf16 cache: the copies off for the fp32 forward
        m->lowp = NULL;
        F = key_factor(m, ref_tok);
        m->lowp = saved;
        a.key_factor = F;
    }
    double paths = fmt == LOWP_FP32 ? LOWP_KV_PATHS(m->config.n_layer, F)
                                    : LOWP_PATHS(m->config.n_layer);
    for (int b = 0; b < NP; b++) {
        int first = NEW, first_unsafe = NEW;
        for (int s = 0; s < NEW; s++)
            if (narrow_tok[b * TT + PROMPT + s] != ref_tok[b * TT + PROMPT + s]) {
                first = s;
                break;
            }
        for (int s = 0; s < NEW && first_unsafe == NEW; s++) {
            const float *lg = ref_lg + ((size_t)b * NEW + s) * V;
            int k = argmax(lg, V);
            double second = -INFINITY;
            for (int v = 0; v < V; v++) if (v != k) second = fmax(second, lg[v]);
            double bound = logit_bound(m, rho, paths, ref_h + ((size_t)b * NEW + s) * C);
            if (lg[k] - second <= 2 * bound) first_unsafe = s;
        }
        a.agree += first;
        a.safe += first_unsafe;
        CHECK_MSG(first >= first_unsafe,
                  "prompt %d: %s decoding diverged at step %d, before the first step whose "
                  "margin is within the rounding bound (%d)", b, lowp_format_name(fmt), first,
                  first_unsafe);
    }
    a.agree /= (double)NP * NEW;
    a.safe /= (double)NP * NEW;
    // teacher forcing along the fp32 tokens: every step's logits within the bound
    greedy(m, cache, ref_tok, forced_tok, nar_lg, nar_h);
    for (size_t j = 0; j < (size_t)NP * NEW; j++) {
        double d = 0;
        for (int v = 0; v < V; v++)
            d = fmax(d, fabs((double)nar_lg[j * V + v] - ref_lg[j * V + v]));
        double bound = logit_bound(m, rho, paths, ref_h + j * C);
        a.worst_ratio = fmax(a.worst_ratio, d / bound);
    }
    CHECK_MSG(a.worst_ratio <= 1.0, "%s weights, %s cache: a logit error is %.2fx its bound",
              lowp_format_name(fmt), lowp_format_name(cache), a.worst_ratio);
    (void)err;
    free(ref_lg); free(ref_h); free(nar_lg); free(nar_h);
    return a;
}

static Model gpt2_model, llama_model;

static void check_format(Model *m, const char *kind, LowpFormat fmt) {
    char err[256];
    CHECK(model_lowp_attach(m, fmt, 0, err, sizeof err) == 0);
    Agreement a = compare_greedy(m, fmt, LOWP_FP32);
    printf("  %s %s: greedy agrees with fp32 on %.1f%% of the new tokens before the first "
           "divergence (margins guarantee %.1f%%); worst logit error %.2f of its bound\n",
           kind, lowp_format_name(fmt), 100 * a.agree, 100 * a.safe, a.worst_ratio);
    // most tokens: more than half, and never fewer than the margins guarantee (checked above)
    CHECK_MSG(a.agree > 0.5, "%s %s: only %.1f%% agree", kind, lowp_format_name(fmt),
              100 * a.agree);
    model_lowp_detach(m);
}

static void test_greedy_bf16(void) {
    check_format(&gpt2_model, "gpt2", LOWP_BF16);
    check_format(&llama_model, "llama-style", LOWP_BF16);
}

static void test_greedy_int8(void) {
    check_format(&gpt2_model, "gpt2", LOWP_INT8);
    check_format(&llama_model, "llama-style", LOWP_INT8);
}

// fp32 weights, keys and values cached in bf16: the logits within the bound for relative u on
// keys and values (logit_bound with LOWP_FP32)
static void test_kv_cache_bf16(void) {
    Model *ms[2] = {&gpt2_model, &llama_model};
    for (int i = 0; i < 2; i++) {
        Agreement a = compare_greedy(ms[i], LOWP_FP32, LOWP_BF16);
        printf("  %s bf16 KV cache: greedy agrees on %.1f%%; worst logit error %.2f of its bound "
               "(key factor F %.2f)\n", model_kind_name(&ms[i]->config), 100 * a.agree,
               a.worst_ratio, a.key_factor);
    }
    // half the cache's memory: the keys and values are all but a few rows of activations
    const ModelConfig *c = &llama_cfg;
    size_t full = kv_memory_bytes_as(c, 4, 32, 8, LOWP_FP32);
    size_t half = kv_memory_bytes_as(c, 4, 32, 8, LOWP_BF16);
    size_t cache = (size_t)2 * c->n_layer * 4 * model_kv_heads(c) * 32 * model_head_dim(c);
    CHECK_MSG(full - half == cache * 2, "bf16 cache saves %zu bytes, want %zu", full - half,
              cache * 2);
}

// Prefill and 8 one-token steps with the narrow copies: logits (8, NP, V)
static void narrow_steps(const Model *m, int threads, float *out) {
    int V = m->config.vocab_size;
    int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    int32_t tok[NP * TT], logits_tok[NP * TT];
    float *lg = malloc((size_t)NP * NEW * V * sizeof(float));
    float *h = malloc((size_t)NP * NEW * m->config.n_embd * sizeof(float));
    greedy(m, LOWP_BF16, NULL, tok, lg, h);
    greedy(m, LOWP_BF16, tok, logits_tok, out, h);
    omp_set_num_threads(saved);
    free(lg); free(h);
}

static void test_threads_agree(void) {
    Model *m = &llama_model;
    char err[256];
    CHECK(model_lowp_attach(m, LOWP_BF16, 0, err, sizeof err) == 0);
    size_t n = (size_t)NP * NEW * VOC;
    float *one = malloc(n * sizeof(float)), *two = malloc(n * sizeof(float));
    narrow_steps(m, 1, one);
    narrow_steps(m, 2, two);
    // the prefill's rows (NP * PROMPT = 96 > 16) go through sgemm, whose sums may split by thread
    CHECK_CLOSE(two, one, n, 0.0, 1e-5, "bf16 decoding logits on 2 threads vs 1");
    model_lowp_detach(m);
    free(one); free(two);
}

// RLHF_LOWP=portable (AVX2 widening, fp32 activations) against the default path (AVX512-BF16
// where the CPU has it: activations rounded to bf16 too): the same decode within the bound.
static void test_portable_path(void) {
    Model *ms[2] = {&gpt2_model, &llama_model};
    for (int i = 0; i < 2; i++) {
        Model *m = ms[i];
        char err[256];
        int V = VOC, C = m->config.n_embd;
        size_t nl = (size_t)NP * NEW * V, nh = (size_t)NP * NEW * C;
        float *lg1 = malloc(nl * 4), *lg2 = malloc(nl * 4), *h = malloc(nh * 4);
        int32_t t1[NP * TT], t2[NP * TT];
        CHECK(model_lowp_attach(m, LOWP_BF16, 0, err, sizeof err) == 0);
        greedy(m, LOWP_FP32, NULL, t1, lg1, h);
        setenv("RLHF_LOWP", "portable", 1);
        CHECK(model_lowp_attach(m, LOWP_BF16, 0, err, sizeof err) == 0);
        unsetenv("RLHF_LOWP");
        greedy(m, LOWP_FP32, t1, t2, lg2, h);   // teacher-forced along the default path's tokens
        double worst = 0, rho = rounding_rho(m, LOWP_BF16);
        for (size_t j = 0; j < (size_t)NP * NEW; j++) {
            double d = 0;
            for (int v = 0; v < V; v++) d = fmax(d, fabs((double)lg2[j * V + v] - lg1[j * V + v]));
            double paths = LOWP_PATHS(m->config.n_layer);
            worst = fmax(worst, d / logit_bound(m, rho, paths, h + j * C));
        }
        CHECK_MSG(worst <= 1.0, "%s: portable vs default path logits differ by %.2fx the bound",
                  model_kind_name(&m->config), worst);
        int same = 0;
        greedy(m, LOWP_FP32, NULL, t2, lg2, h);
        for (int b = 0; b < NP; b++)
            for (int s = 0; s < NEW; s++)
                same += t1[b * TT + PROMPT + s] == t2[b * TT + PROMPT + s];
        printf("  %s: portable path greedy tokens equal to the default path's: %d of %d\n",
               model_kind_name(&m->config), same, NP * NEW);
        model_lowp_detach(m);
        free(lg1); free(lg2); free(h);
    }
}

// A sampling copy leaves model_forward in fp32 (the log-probs PPO trains with); a frozen model
// (MODEL_LOWP_FULL) runs its full-sequence forward on the copies, agreeing with its decoding.
static void test_forward_uses_copies_only_when_full(void) {
    Model *m = &gpt2_model;
    char err[256];
    enum { B = 3 };
    int32_t tok[B * TT], len[B] = {TT, 11, 17}, tgt[B * TT];
    Rng r; rng_init(&r, 4);
    for (int b = 0; b < B; b++) rule_seq(tok + b * TT, TT, &r);
    for (int i = 0; i < B * TT; i++) tgt[i] = i % TT + 1 < TT ? tok[i + 1] : -1;
    ModelBatch batch = {.B = B, .T = TT, .tokens = tok, .lengths = len, .targets = tgt};
    float want[B * TT], got[B * TT], full[B * TT];
    CHECK(model_forward(m, &batch, 0, err, sizeof err) == 0);
    model_get_logp(m, want);
    CHECK(model_lowp_attach(m, LOWP_INT8, 0, err, sizeof err) == 0);
    CHECK(model_forward(m, &batch, 0, err, sizeof err) == 0);
    model_get_logp(m, got);
    CHECK_MSG(memcmp(got, want, sizeof got) == 0, "a sampling copy changed model_forward");
    CHECK(model_lowp_attach(m, LOWP_INT8, MODEL_LOWP_FULL, err, sizeof err) == 0);
    CHECK(model_forward(m, &batch, 0, err, sizeof err) == 0);
    model_get_logp(m, full);
    double d = 0;
    for (int i = 0; i < B * TT; i++) d = fmax(d, fabs((double)full[i] - want[i]));
    CHECK_MSG(d > 0, "MODEL_LOWP_FULL left model_forward in fp32");
    // log-probs move by at most twice the logit error (log-softmax is 2-Lipschitz in max norm)
    CHECK_MSG(d < 0.5, "int8 full forward log-probs off by %.3g", d);
    model_lowp_detach(m);
}

// The copy follows the fp32 weights only when refreshed; a refresh equals a fresh attach.
static void test_refresh(void) {
    Model *m = &llama_model;
    char err[256];
    int V = VOC, C = m->config.n_embd;
    size_t nl = (size_t)NP * NEW * V, nh = (size_t)NP * NEW * C;
    float *a = malloc(nl * 4), *b = malloc(nl * 4), *h = malloc(nh * 4);
    int32_t ta[NP * TT], tb[NP * TT];
    float *saved = malloc(m->num_params * sizeof(float));
    memcpy(saved, m->params_memory, m->num_params * sizeof(float));
    CHECK(model_lowp_attach(m, LOWP_BF16, 0, err, sizeof err) == 0);
    for (size_t i = 0; i < m->num_params; i++) m->params_memory[i] *= 0.9f;
    CHECK(model_lowp_refresh(m, err, sizeof err) == 0);
    greedy(m, LOWP_FP32, NULL, ta, a, h);
    CHECK(model_lowp_attach(m, LOWP_BF16, 0, err, sizeof err) == 0);
    greedy(m, LOWP_FP32, NULL, tb, b, h);
    CHECK_MSG(memcmp(a, b, nl * 4) == 0 && memcmp(ta, tb, sizeof ta) == 0,
              "refreshed copy decodes differently from a fresh one");
    // a NaN weight is refused, naming where
    m->params.qkvw[5] = NAN;
    CHECK_ERR(model_lowp_refresh(m, err, sizeof err), err, "layer 0 matrix 0", "NaN");
    CHECK_ERR(model_lowp_attach(m, LOWP_INT8, 0, err, sizeof err), err, "layer 0", NULL);
    CHECK(m->lowp == NULL);
    memcpy(m->params_memory, saved, m->num_params * sizeof(float));
    KVCache kv;
    CHECK_ERR(kv_init_as(&kv, m, 1, 8, 8, LOWP_INT8, err, sizeof err), err, "KV cache",
              "int8");
    model_lowp_detach(m);
    free(a); free(b); free(h); free(saved);
}

// A frozen model may free its fp32 matrices (MODEL_LOWP_DROP_FP32): it decodes and scores exactly
// as with them, holds fewer floats, and refuses what would need them; a trained one refuses.
static void test_drop_fp32(void) {
    const Model *src = &llama_model;
    const ModelConfig *c = &src->config;
    char err[256];
    Model f, d;
    CHECK(model_init(&f, c, 3, TT, 0, 0, err, sizeof err) == 0);
    CHECK(model_init(&d, c, 3, TT, 0, 0, err, sizeof err) == 0);
    memcpy(f.params_memory, src->params_memory, src->num_params * sizeof(float));
    memcpy(d.params_memory, src->params_memory, src->num_params * sizeof(float));
    int flags = MODEL_LOWP_FULL;
    CHECK(model_lowp_attach(&f, LOWP_BF16, flags, err, sizeof err) == 0);
    CHECK(model_lowp_attach(&d, LOWP_BF16, flags | MODEL_LOWP_DROP_FP32, err, sizeof err) == 0);
    CHECK((int64_t)(f.num_params - d.num_params) * 4 == model_lowp_dropped_bytes(c));
    size_t nl = (size_t)NP * NEW * VOC, nh = (size_t)NP * NEW * c->n_embd;
    float *a = malloc(nl * 4), *b = malloc(nl * 4), *h = malloc(nh * 4);
    int32_t ta[NP * TT], tb[NP * TT];
    greedy(&f, LOWP_FP32, NULL, ta, a, h);
    greedy(&d, LOWP_FP32, NULL, tb, b, h);
    CHECK_MSG(memcmp(a, b, nl * 4) == 0 && memcmp(ta, tb, sizeof ta) == 0,
              "freeing the fp32 matrices changed decoding");
    int32_t len[3] = {TT, 9, 14};
    ModelBatch batch = {.B = 3, .T = TT, .tokens = ta, .lengths = len};
    CHECK(model_forward(&f, &batch, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    CHECK(model_forward(&d, &batch, MODEL_LOGITS_ALL, err, sizeof err) == 0);
    CHECK_MSG(memcmp(f.logits, d.logits, (size_t)f.M * VOC * 4) == 0,
              "freeing the fp32 matrices changed model_forward");
    CHECK_ERR(model_lowp_refresh(&d, err, sizeof err), err, "freed", NULL);
    CHECK_ERR(model_lowp_attach(&d, LOWP_INT8, 0, err, sizeof err), err, "freed", NULL);
    CHECK_ERR(model_lowp_attach(&gpt2_model, LOWP_BF16, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32,
                                err, sizeof err), err, "only a frozen model", NULL);
    CHECK(gpt2_model.lowp == NULL);
    model_free(&f); model_free(&d);
    free(a); free(b); free(h);
}

// What the copies cost, as memory plans print it.
static void test_bytes(void) {
    const ModelConfig *c = &gpt2_cfg;
    int64_t f = model_lowp_fp32_bytes(c);
    int64_t C = c->n_embd, L = c->n_layer;
    CHECK(f == 4 * (L * 12 * C * C + (int64_t)c->vocab_size * C));
    CHECK(model_lowp_bytes(c, LOWP_BF16) * 2 == f);
    CHECK(model_lowp_bytes(c, LOWP_FP32) == 0);
    CHECK(model_lowp_bytes(c, LOWP_INT8) == f / 4 + 4 * (L * (3 * C + C + 4 * C + C) + VOC));
}

int main(void) {
    train_tiny(&gpt2_model, &gpt2_cfg);
    train_tiny(&llama_model, &llama_cfg);
    test_case("greedy decoding with bf16 weights vs fp32 (both kinds)", test_greedy_bf16);
    test_case("greedy decoding with int8 weights vs fp32 (both kinds)", test_greedy_int8);
    test_case("bf16 KV cache vs fp32, and its memory", test_kv_cache_bf16);
    test_case("bf16 decoding: 1 and 2 threads agree", test_threads_agree);
    test_case("RLHF_LOWP=portable decodes as the default path", test_portable_path);
    test_case("model_forward reads the copies only with MODEL_LOWP_FULL",
              test_forward_uses_copies_only_when_full);
    test_case("refresh equals a fresh copy; NaN and int8 cache refused", test_refresh);
    test_case("a frozen model frees its fp32 matrices and decodes the same", test_drop_fp32);
    test_case("bytes of the copies", test_bytes);
    model_free(&gpt2_model);
    model_free(&llama_model);
    return test_summary();
}
