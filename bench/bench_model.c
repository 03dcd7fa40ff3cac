// The C side of the engine benchmarks; bench/run_bench.sh runs it beside bench/bench_torch.py
// with the same shapes and threads and prints the ratios. One configuration per process so that
// peak memory belongs to it. Prints one JSON line (same keys as bench_torch.py, plus FLOP
// figures for training):
//   bench_model --mode sgemm                      sgemm ceiling (GFLOP/s) at 2048^3
//   bench_model --mode train --preset gpt2 --B 4 --T 256 [--steps 5]
//   bench_model --mode train --preset smollm2-135m --B 4 --T 256  (Llama-style; any mode)
//   bench_model --mode generate --preset gpt2 --B 8 [--prompt 16 --new 64]
//   bench_model --mode decode --preset gpt2 --B 8  the decoding step's kernels alone: the layer
//       products and the LM head at B rows, as GB/s of weights streamed, beside a plain parallel
//       read of the same bytes (the memory bandwidth they are bound by), in the same process
//   bench_model --mode decode_lowp --preset gpt2 --B 1 [--prompt 4 --new 32]  decoding steps with
//       fp32, bf16 and int8 weights (one line each), beside the read limit of their bytes
//   bench_model --mode decode_turns --preset gpt2 [--steps 9 --new 12]  B=1 decoding in fp32,
//       bf16 and int8 in turns, each beside a read of its bytes, --steps rounds: the medians of
//       the fractions of the read limit and of the speed-ups (for a machine others load)
//   bench_model --mode forward_lowp --preset gpt2 --B 4 --T 64  a frozen model's full forward
//       with its matrices in fp32, bf16 and int8 (one line each)
//   bench_model --mode attention --preset gpt2 --B 64 --prompt 512 [--new 64 --steps 10]  a
//       decoding step's attention alone (every layer) at position --prompt of a cache sized for
//       prompt + new positions, fp32 and bf16 caches: time, CPU time, cache GB/s
#include "benchlib.h"
#include "blas.h"
#include "cli.h"
#include "generate.h"
#include "kernels.h"
#include "lowp.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "util.h"
#include <cblas.h>
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

// The benchmarks' shapes. GPT-2's; the Llama-style SmolLM2-135M (30 layers, 576 wide, 9 heads
// over 3 KV heads, 1536 MLP, tied) and a small Llama-style shape for smoke runs. bench_torch.py
// holds the same table.
typedef struct {
    const char *name;
    int arch, L, NH, KVH, C, F, V, ctx;
    float theta;
} BenchPreset;

static const BenchPreset bench_presets[] = {
    {"gpt2", MODEL_ARCH_GPT2, 12, 12, 0, 768, 0, 50257, 1024, 0.0f},
    {"small", MODEL_ARCH_GPT2, 4, 4, 0, 256, 0, 8192, 256, 0.0f},
    {"smollm2-135m", MODEL_ARCH_LLAMA, 30, 9, 3, 576, 1536, 49152, 2048, 100000.0f},
    {"llama-small", MODEL_ARCH_LLAMA, 4, 4, 2, 256, 688, 8192, 256, 10000.0f},
};

static int preset(const char *name, ModelConfig *c) {
    for (size_t i = 0; i < sizeof bench_presets / sizeof bench_presets[0]; i++) {
        const BenchPreset *p = &bench_presets[i];
        if (strcmp(name, p->name)) continue;
        *c = (ModelConfig){.arch = p->arch, .n_layer = p->L, .n_head = p->NH, .n_embd = p->C,
                           .vocab_size = p->V, .max_seq_len = p->ctx, .ln_eps = 1e-5f,
                           .lm_head = 1, .n_kv_head = p->KVH, .d_ff = p->F,
                           .rope_theta = p->theta};
        if (p->arch == MODEL_ARCH_LLAMA) c->family = MODEL_FAMILY_LLAMA;
        return 0;
    }
    return -1;
}

// sgemm ceiling: the best of a few square products large enough to reach OpenBLAS's peak.
static double sgemm_ceiling(void) {
    int n = 2048;
    float *a = ALIGNED_CHECK((size_t)n * n * 4), *b = ALIGNED_CHECK((size_t)n * n * 4),
          *c = ALIGNED_CHECK((size_t)n * n * 4);
    Rng r; rng_init(&r, 1);
    rng_fill_normal(&r, a, (int64_t)n * n, 0, 1); rng_fill_normal(&r, b, (int64_t)n * n, 0, 1);
    double best = 0;
    for (int it = 0; it < 4; it++) {
        double t0 = util_time_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        double dt = util_time_s() - t0;
        double g = 2.0 * n * n * (double)n / dt / 1e9;
        if (it > 0 && g > best) best = g;
    }
    free(a); free(b); free(c);
    return best;
}

// Widths of one layer's four products for either block kind: qkv (C -> QKV), the attention
// output (A -> C), the MLP's input product (C -> FC) and its output (ACT -> C).
typedef struct { int64_t QKV, A, FC, ACT; } LayerWidths;

static LayerWidths layer_widths(const ModelConfig *c) {
    int64_t C = c->n_embd, hd = model_head_dim(c), F = model_ff(c);
    int llama = c->arch == MODEL_ARCH_LLAMA;
    return (LayerWidths){.QKV = (c->n_head + 2 * (int64_t)model_kv_heads(c)) * hd,
                         .A = c->n_head * hd, .FC = llama ? 2 * F : 4 * C,
                         .ACT = llama ? F : 4 * C};
}

// FLOPs of one training step (forward + backward = 3x forward; attention counted causally).
static double train_flops(const ModelConfig *c, int B, int T) {
    LayerWidths w = layer_widths(c);
    double C = c->n_embd, L = c->n_layer, V = c->vocab_size, tok = (double)B * T;
    double per_tok = 2.0 * L * ((double)C * w.QKV + w.A * C + C * w.FC + w.ACT * C) + 2.0 * C * V;
    double attn = 2.0 * 2.0 * L * (double)w.A * B * T * (T + 1) / 2.0;
    return 3.0 * (per_tok * tok + attn);
}

// Sums every float of x (n) in parallel: the read bandwidth the decoding kernels compare with.
static float read_all(const float *x, int64_t n) {
    float total = 0.0f;
    #pragma omp parallel for reduction(+:total) schedule(static)
    for (int64_t c = 0; c < (n + 4095) / 4096; c++) {
        int64_t i0 = c * 4096, i1 = i0 + 4096 < n ? i0 + 4096 : n;
        float s = 0.0f;
        #pragma omp simd reduction(+:s)
        for (int64_t i = i0; i < i1; i++) s += x[i];
        total += s;
    }
    return total;
}

// A product out (N,OC) = [out +] inp (N,C) W + bias in the block kind's weight layout.
typedef void (*ProductFn)(float *out, const float *inp, const float *weight, const float *bias,
                          int64_t N, int C, int OC, int beta_one);

// Layer l's slice of a bias of `width` per layer, or NULL where the model has none.
static const float *bias_at(const Model *m, int slot, const float *b, int64_t l, int64_t width) {
    return m->param_sizes[slot] ? b + l * width : NULL;
}

// The decoding step's weight-bound kernels at B rows: the 4 products of every layer, then the LM
// head. Best of 5 after a warm-up; GB/s of weights read.
static void bench_decode(const Model *m, int B) {
    const ModelConfig *c = &m->config;
    const ModelParams *p = &m->params;
    int64_t C = c->n_embd, L = c->n_layer, V = c->vocab_size;
    LayerWidths w = layer_widths(c);
    // the decoding entries (kernels.h), as the KV-cache step calls them
    ProductFn prod = c->arch == MODEL_ARCH_LLAMA ? linear_forward_decode : matmul_forward_decode;
    int64_t widest = w.QKV > w.FC ? w.QKV : w.FC;
    float *x = ALIGNED_CHECK((size_t)B * widest * sizeof(float)),
          *y = ALIGNED_CHECK((size_t)B * widest * sizeof(float));
    float *lg = ALIGNED_CHECK((size_t)B * V * sizeof(float));
    for (int64_t i = 0; i < B * widest; i++) x[i] = 0.01f * (float)(i % 97);
    double best_mm = 1e30, best_lg = 1e30, best_rd = 1e30;
    volatile float sink = 0.0f;
    for (int it = 0; it < 6; it++) {
        double t0 = util_time_s();
        for (int64_t l = 0; l < L; l++) {
            prod(y, x, p->qkvw + l * C * w.QKV, bias_at(m, P_QKVB, p->qkvb, l, w.QKV), B, (int)C,
                 (int)w.QKV, 0);
            prod(y, x, p->attprojw + l * w.A * C, bias_at(m, P_ATTPROJB, p->attprojb, l, C), B,
                 (int)w.A, (int)C, 1);
            prod(y, x, p->fcw + l * C * w.FC, bias_at(m, P_FCB, p->fcb, l, w.FC), B, (int)C,
                 (int)w.FC, 0);
            prod(y, x, p->fcprojw + l * w.ACT * C, bias_at(m, P_FCPROJB, p->fcprojb, l, C), B,
                 (int)w.ACT, (int)C, 1);
        }
        double t1 = util_time_s();
        logits_forward_decode(lg, x, p->wte, B, (int)V, (int)C);
        double t2 = util_time_s();
        // the layers' weights, in memory order
        sink += read_all(p->qkvw, (int64_t)(p->lnfw - p->qkvw));
        double t3 = util_time_s();
        if (it == 0) continue;
        if (t1 - t0 < best_mm) best_mm = t1 - t0;
        if (t2 - t1 < best_lg) best_lg = t2 - t1;
        if (t3 - t2 < best_rd) best_rd = t3 - t2;
    }
    double mm_bytes = 4.0 * L * (C * w.QKV + w.A * C + C * w.FC + w.ACT * C);
    double lg_bytes = (double)V * C * 4, rd_bytes = (double)(p->lnfw - p->qkvw) * 4;
    printf("{\"impl\":\"rlhf.c\",\"mode\":\"decode\",\"B\":%d,\"threads\":%d,"
           "\"layers_ms\":%.2f,\"layers_gb_s\":%.1f,\"lm_head_ms\":%.2f,\"lm_head_gb_s\":%.1f,"
           "\"read_gb_s\":%.1f}\n",
           B, omp_get_max_threads(), best_mm * 1e3, mm_bytes / best_mm / 1e9, best_lg * 1e3,
           lg_bytes / best_lg / 1e9, rd_bytes / best_rd / 1e9);
    free(x); free(y); free(lg);
}

static double bench_rusage_cpu_s(const struct rusage *r) {
    return (double)r->ru_utime.tv_sec + 1e-6 * (double)r->ru_utime.tv_usec +
           (double)r->ru_stime.tv_sec + 1e-6 * (double)r->ru_stime.tv_usec;
}

// --mode train: median seconds of `steps` optimizer steps (after 2 warm-ups) on random tokens
static int bench_train(const char *pname, const ModelConfig *c, int B, int T, int steps) {
    char err[256];
    Model m;
    double ti = util_time_s();
    if (model_init(&m, c, B, T, 1, 1, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    fprintf(stderr, "init: %.2f s\n", util_time_s() - ti);
    int32_t *tok = MALLOC_CHECK((size_t)B * T * 4), *tgt = MALLOC_CHECK((size_t)B * T * 4),
            *len = MALLOC_CHECK((size_t)B * 4);
    float *w = MALLOC_CHECK((size_t)B * T * 4);
    Rng r; rng_init(&r, 1);
    for (int i = 0; i < B * T; i++) {
        tok[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
        tgt[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
        w[i] = 1.0f / (B * T);
    }
    for (int i = 0; i < B; i++) len[i] = T;
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len, .targets = tgt, .weights = w};
    AdamWConfig oc = {.lr = 1e-4f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .grad_clip = 1.0f};
    double *times = MALLOC_CHECK((size_t)(steps + 2) * sizeof(double));
    struct rusage ru0 = {0};
    for (int s = 0; s < steps + 2; s++) {
        if (s == 2) getrusage(RUSAGE_SELF, &ru0);
        double t0 = util_time_s();
        if (model_forward(&m, &b, 0, err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
        model_zero_grad(&m);
        model_backward(&m, &b, NULL, NULL);
        optim_adamw_step(&m, &oc, oc.lr, s + 1);
        double dt = util_time_s() - t0;
        times[s] = dt;
        fprintf(stderr, "step %d: loss %.4f, %.3f s\n", s, m.loss, dt);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    fprintf(stderr, "page faults per timed step: %.0f\n",
            (double)(ru.ru_minflt - ru0.ru_minflt) / steps);
    // CPU time (user + sys, all threads) and voluntary context switches (a thread going to sleep:
    // OpenMP's waits under OMP_WAIT_POLICY=passive) per timed step; bench_torch.py counts the same
    double cpu_step = (bench_rusage_cpu_s(&ru) - bench_rusage_cpu_s(&ru0)) / steps;
    double sleeps_step = (double)(ru.ru_nvcsw - ru0.ru_nvcsw) / steps;
    // the median of the timed steps: robust to a stray slow step on a shared machine
    double step_s = bench_median(times + 2, steps), fl = train_flops(c, B, T);
    free(times);
    double rss = bench_peak_rss_mb();
    // the ceiling again, in this process right after the steps: on a shared machine the load
    // changes between processes, and the fraction should compare like with like
    double ceil_now = sgemm_ceiling();
    printf("{\"impl\":\"rlhf.c\",\"mode\":\"train\",\"preset\":\"%s\",\"B\":%d,\"T\":%d,"
           "\"threads\":%d,\"tokens_per_s\":%.1f,\"step_s\":%.4f,\"gflops\":%.1f,"
           "\"ceiling_gflops\":%.1f,\"peak_rss_mb\":%.1f,\"cpu_s_per_step\":%.4f,"
           "\"sleeps_per_step\":%.1f}\n",
           pname, B, T, omp_get_max_threads(), B * T / step_s, step_s, fl / step_s / 1e9, ceil_now,
           rss, cpu_step, sleeps_step);
    free(tok); free(tgt); free(len); free(w);
    model_free(&m);
    return 0;
}

// --mode generate: B sequences of `prompt` random tokens, `new_tok` greedy tokens each, timed
// after a short warm-up
static int bench_generate(const char *pname, const ModelConfig *c, int B, int prompt, int new_tok) {
    char err[256];
    Model m;
    int maxT = prompt + new_tok;
    if (model_init(&m, c, 1, 1, 0, 1, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    KVCache kv;
    if (kv_init(&kv, &m, B, maxT, B * prompt, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    Sampler s;
    sampler_init(&s, c->vocab_size);
    int32_t *pr = MALLOC_CHECK((size_t)B * prompt * 4), *pl = MALLOC_CHECK((size_t)B * 4);
    int32_t *out = MALLOC_CHECK((size_t)B * new_tok * 4), *ol = MALLOC_CHECK((size_t)B * 4);
    Rng r; rng_init(&r, 1);
    for (int i = 0; i < B * prompt; i++) pr[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    for (int i = 0; i < B; i++) pl[i] = prompt;
    GenConfig g = {.max_new_tokens = new_tok, .eot_id = -1,
                   .sampler = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f}};
    GenConfig warm = g; warm.max_new_tokens = 4;
    if (gen_generate(&m, &kv, &s, &warm, &r, pr, pl, 1, prompt, out, ol, NULL, NULL, err,
                     sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double t0 = util_time_s();
    if (gen_generate(&m, &kv, &s, &g, &r, pr, pl, B, prompt, out, ol, NULL, NULL, err,
                     sizeof err)) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    double dt = util_time_s() - t0;
    printf("{\"impl\":\"rlhf.c\",\"mode\":\"generate\",\"preset\":\"%s\",\"B\":%d,\"T\":%d,"
           "\"threads\":%d,\"tokens_per_s\":%.1f,\"step_s\":%.4f,\"peak_rss_mb\":%.1f,"
           "\"prompt_len\":%d,\"new_tokens\":%d}\n",
           pname, B, maxT, omp_get_max_threads(), (double)B * new_tok / dt, dt, bench_peak_rss_mb(),
           prompt, new_tok);
    kv_free(&kv); sampler_free(&s);
    free(pr); free(pl); free(out); free(ol);
    model_free(&m);
    return 0;
}

// Steps of decoding alone: a prefill of the prompts, then `new_tok` one-token steps (each
// sequence's argmax fed back), each step timed on its own; the median step (robust to a machine
// busy with other work) in *step_s. Returns tokens/s (B per step) or -1.
static double decode_rate(const Model *m, KVCache *kv, const int32_t *pr, const int32_t *pl,
                          int B, int prompt, int new_tok, double *step_s) {
    char err[256];
    int V = m->config.vocab_size;
    int32_t *cur = MALLOC_CHECK((size_t)B * 4), *one = MALLOC_CHECK((size_t)B * 4);
    double *t = MALLOC_CHECK((size_t)new_tok * sizeof(double));
    kv_reset(kv);
    int rc = kv_forward(m, kv, pr, pl, B, prompt, NULL, err, sizeof err);
    for (int s = 0; s < new_tok && rc == 0; s++) {
        for (int b = 0; b < B; b++) {
            const float *lg = kv->logits + (size_t)b * V;
            int k = 0;
            for (int v = 1; v < V; v++) if (lg[v] > lg[k]) k = v;
            cur[b] = k;
            one[b] = 1;
        }
        double t0 = util_time_s();
        rc = kv_forward(m, kv, cur, one, B, 1, NULL, err, sizeof err);
        t[s] = util_time_s() - t0;
    }
    if (rc) fprintf(stderr, "bench_model: %s\n", err);
    *step_s = rc ? 0 : bench_median(t, new_tok);
    free(cur); free(one); free(t);
    return rc ? -1 : B / *step_s;
}

// XORs n bytes of x (whole 64-byte lines) in parallel: the read bandwidth decoding is bound by
static uint64_t read_lines(const void *x, int64_t n) {
    const uint64_t *u = x;
    uint64_t acc = 0;
    #pragma omp parallel for reduction(^:acc) schedule(static)
    for (int64_t l = 0; l < n / 64; l++) {
        const uint64_t *q = u + 8 * l;
        acc ^= (q[0] ^ q[1] ^ q[2] ^ q[3]) ^ (q[4] ^ q[5] ^ q[6] ^ q[7]);
    }
    return acc;
}

// Best of 5 reads of n bytes (a buffer of its own, touched first): bytes per second. huge: the
// buffer in huge pages as the narrow copies are (lowp.h's LowpArena), else 4 KiB pages.
static double read_rate(int64_t n, int huge) {
    LowpArena a = {0};
    if (huge) lowp_arena_init(&a, (size_t)n + 64);
    char *buf = huge ? a.base : ALIGNED_CHECK((size_t)n + 64);
    memset(buf, 1, (size_t)n);
    volatile uint64_t sink = 0;
    double best = 1e30;
    for (int k = 0; k < 6; k++) {
        double t0 = util_time_s();
        sink ^= read_lines(buf, n);
        double dt = util_time_s() - t0;
        if (k > 0 && dt < best) best = dt;
    }
    if (huge) lowp_arena_free(&a);
    else free(buf);
    return (double)n / best;
}

// --mode decode_lowp: decoding steps (greedy, prefill excluded, median step) at B sequences
// with the weights in fp32, bf16 and int8 (model_lowp_attach; the narrow ones with a bf16 KV
// cache), one JSON line per format: tokens/s, the bytes of weights one step reads, the read
// bandwidth measured right after over as many bytes, and the limit it sets (B tokens per read of
// the weights); the copies' refresh time.
static int bench_decode_lowp(const char *pname, const ModelConfig *c, int B, int prompt,
                             int new_tok) {
    char err[256];
    Model m;
    int maxT = prompt + new_tok;
    if (model_init(&m, c, 1, 1, 0, 0, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    int32_t *pr = MALLOC_CHECK((size_t)B * prompt * 4), *pl = MALLOC_CHECK((size_t)B * 4);
    Rng r; rng_init(&r, 1);
    for (int i = 0; i < B * prompt; i++) pr[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    for (int i = 0; i < B; i++) pl[i] = prompt;
    static const LowpFormat fmts[3] = {LOWP_FP32, LOWP_BF16, LOWP_INT8};
    for (int f = 0; f < 3; f++) {
        LowpFormat fmt = fmts[f];
        KVCache kv;
        double refresh = 0.0, step_s = 0.0;
        if (model_lowp_attach(&m, fmt, 0, err, sizeof err) ||
            kv_init_as(&kv, &m, B, maxT, B * prompt, fmt ? LOWP_BF16 : LOWP_FP32, err,
                       sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            return 1;
        }
        if (fmt) {
            double t0 = util_time_s();
            model_lowp_refresh(&m, err, sizeof err);
            refresh = util_time_s() - t0;
        }
        double tps = decode_rate(&m, &kv, pr, pl, B, prompt, new_tok, &step_s);
        if (tps < 0) return 1;
        int64_t bytes = fmt ? model_lowp_bytes(c, fmt) : model_lowp_fp32_bytes(c);
        double bw = read_rate(bytes, 1), bw4k = read_rate(bytes, 0);
        printf("{\"impl\":\"rlhf.c\",\"mode\":\"decode_lowp\",\"preset\":\"%s\","
               "\"precision\":\"%s\",\"B\":%d,\"threads\":%d,\"tokens_per_s\":%.1f,"
               "\"step_ms\":%.3f,\"weight_bytes\":%lld,\"read_gb_s\":%.2f,"
               "\"read_4k_pages_gb_s\":%.2f,\"limit_tokens_per_s\":%.1f,\"refresh_s\":%.4f,"
               "\"peak_rss_mb\":%.1f}\n",
               pname, lowp_format_name(fmt), B, omp_get_max_threads(), tps, step_s * 1e3,
               (long long)bytes, bw / 1e9, bw4k / 1e9, B * bw / (double)bytes, refresh,
               bench_peak_rss_mb());
        fflush(stdout);
        kv_free(&kv);
    }
    free(pr); free(pl);
    model_free(&m);
    return 0;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

// --mode decode_turns: B=1 decoding in fp32, bf16 and int8 taken in turns, `rounds` times, each
// format's median step of new_tok steps right beside the best of 2 reads of its weight bytes
// (huge pages, as the copies), so that a machine loaded by other work slows both alike. Prints
// the medians over the rounds of each format's fraction of its read limit and of the speed-ups
// over fp32, one JSON line.
static int bench_decode_turns(const char *pname, const ModelConfig *c, int rounds, int new_tok) {
    char err[256];
    Model m;
    if (model_init(&m, c, 1, 1, 0, 0, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    int32_t pr[4] = {1, 2, 3, 4}, pl[1] = {4};
    KVCache kv[2];
    memset(kv, 0, sizeof kv);
    int64_t bytes[3] = {model_lowp_fp32_bytes(c), model_lowp_bytes(c, LOWP_BF16),
                        model_lowp_bytes(c, LOWP_INT8)};
    LowpArena rd;
    lowp_arena_init(&rd, (size_t)bytes[0]);
    memset(rd.base, 1, (size_t)bytes[0]);
    double *v = MALLOC_CHECK((size_t)5 * rounds * sizeof(double));   // 3 fractions, 2 speed-ups
    volatile uint64_t sink = 0;
    int rc = 0;
    for (int k = 0; k < 2 && rc == 0; k++)
        rc = kv_init_as(&kv[k], &m, 1, 4 + new_tok, 4, k ? LOWP_BF16 : LOWP_FP32, err, sizeof err);
    for (int r = 0; r < rounds && rc == 0; r++) {
        double step[3];
        for (int f = 0; f < 3 && rc == 0; f++) {
            rc = model_lowp_attach(&m, (LowpFormat)f, 0, err, sizeof err);
            if (rc || decode_rate(&m, &kv[f > 0], pr, pl, 1, 4, new_tok, &step[f]) < 0) {
                rc = 1;
                break;
            }
            double best = 1e30;
            for (int k = 0; k < 2; k++) {
                double t0 = util_time_s();
                sink ^= read_lines(rd.base, bytes[f]);
                double dt = util_time_s() - t0;
                best = dt < best ? dt : best;
            }
            v[f * rounds + r] = best / step[f];
        }
        if (rc == 0) {
            v[3 * rounds + r] = step[0] / step[1];
            v[4 * rounds + r] = step[0] / step[2];
        }
    }
    if (rc) fprintf(stderr, "bench_model: %s\n", err);
    double med[5];
    for (int k = 0; k < 5 && rc == 0; k++) {
        qsort(v + k * rounds, (size_t)rounds, sizeof(double), bench_cmp_double);
        med[k] = v[k * rounds + rounds / 2];
    }
    if (rc == 0)
        printf("{\"impl\":\"rlhf.c\",\"mode\":\"decode_turns\",\"preset\":\"%s\",\"B\":1,"
               "\"threads\":%d,\"rounds\":%d,\"steps\":%d,\"fp32_of_limit\":%.3f,"
               "\"bf16_of_limit\":%.3f,\"int8_of_limit\":%.3f,\"bf16_vs_fp32\":%.3f,"
               "\"int8_vs_fp32\":%.3f}\n",
               pname, omp_get_max_threads(), rounds, new_tok, med[0], med[1], med[2], med[3],
               med[4]);
    for (int k = 0; k < 2; k++) kv_free(&kv[k]);
    lowp_arena_free(&rd);
    free(v);
    model_free(&m);
    return rc;
}

// --mode forward_lowp: a frozen model's full-sequence forward (reference log-probs, reward
// scores) over B x T rows with its matrices in fp32, bf16 and int8 (MODEL_LOWP_FULL: more than 16
// rows widen tiles of the copies to fp32 for sgemm), the median of 3 after a warm-up; one JSON
// line per format.
static int bench_forward_lowp(const char *pname, const ModelConfig *c, int B, int T) {
    char err[256];
    Model m;
    if (model_init(&m, c, B, T, 0, 0, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    int32_t *tok = MALLOC_CHECK((size_t)B * T * 4), *tgt = MALLOC_CHECK((size_t)B * T * 4);
    int32_t *len = MALLOC_CHECK((size_t)B * 4);
    Rng r; rng_init(&r, 1);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)c->vocab_size);
    for (int i = 0; i < B * T; i++) tgt[i] = i % T + 1 < T ? tok[i + 1] : -1;
    for (int b = 0; b < B; b++) len[b] = T;
    ModelBatch batch = {.B = B, .T = T, .tokens = tok, .lengths = len, .targets = tgt};
    static const LowpFormat fmts[3] = {LOWP_FP32, LOWP_BF16, LOWP_INT8};
    for (int f = 0; f < 3; f++) {
        if (model_lowp_attach(&m, fmts[f], MODEL_LOWP_FULL, err, sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            return 1;
        }
        double t[4];
        for (int k = 0; k < 4; k++) {
            double t0 = util_time_s();
            if (model_forward(&m, &batch, 0, err, sizeof err)) {
                fprintf(stderr, "bench_model: %s\n", err);
                return 1;
            }
            t[k] = util_time_s() - t0;
        }
        double med = bench_median(t + 1, 3);
        printf("{\"impl\":\"rlhf.c\",\"mode\":\"forward_lowp\",\"preset\":\"%s\","
               "\"precision\":\"%s\",\"B\":%d,\"T\":%d,\"threads\":%d,\"tokens_per_s\":%.1f,"
               "\"forward_s\":%.4f}\n",
               pname, lowp_format_name(fmts[f]), B, T, omp_get_max_threads(), B * T / med, med);
        fflush(stdout);
    }
    free(tok); free(tgt); free(len);
    model_free(&m);
    return 0;
}

// Fills n floats with uniform values in [-1, 1) from a cheap generator (caches of gigabytes).
static void bench_fill_uniform(float *x, size_t n, uint32_t seed) {
    uint32_t u = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        u = u * 1664525u + 1013904223u;
        x[i] = (float)(int32_t)u * (1.0f / 2147483648.0f);
    }
}

// FNV-1a of n bytes: two builds' attention outputs compare bit for bit through it
static uint64_t bench_hash(const void *p, size_t n) {
    const unsigned char *b = p;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

// --mode attention: a decoding step's attention alone (kv_attention of every layer), B rows each
// at position `prompt` (prompt + 1 cached positions of random keys, values and queries) in a cache
// sized as generation sizes it, for prompt + new_tok positions,
// fp32 and bf16 caches (one line each): the median step of `steps`, its CPU time, the cache bytes
// it reads per second, its GFLOP/s and a hash of the last layer's outputs (the cache is filled
// as raw memory: hashes compare builds with the same cache layout).
static int bench_attention(const char *pname, const ModelConfig *c, int B, int prompt, int new_tok,
                           int steps) {
    char err[256];
    Model m;
    if (model_init(&m, c, 1, 1, 0, 0, err, sizeof err)) {
        fprintf(stderr, "bench_model: %s\n", err);
        return 1;
    }
    LowpFormat fmts[2] = {LOWP_FP32, LOWP_BF16};
    double *t = MALLOC_CHECK((size_t)steps * sizeof(double));
    for (int f = 0; f < 2; f++) {
        KVCache kv;
        if (kv_init_as(&kv, &m, B, prompt + new_tok, B, fmts[f], err, sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            model_free(&m);
            free(t);
            return 1;
        }
        // the whole keys' slot, and as much of the values' after it (kv_init's carving)
        size_t n = kv.k ? (size_t)(kv.v - kv.k) : (size_t)(kv.v16 - kv.k16);
        size_t chunk = (size_t)1 << 20;
        float *buf = MALLOC_CHECK(chunk * sizeof(float));
        for (size_t at = 0; at < n; at += chunk) {
            size_t k = n - at < chunk ? n - at : chunk;
            for (int kvv = 0; kvv < 2; kvv++) {
                bench_fill_uniform(buf, k, (uint32_t)(2 * (at / chunk) + kvv));
                if (kv.k16) lowp_bf16_round((kvv ? kv.v16 : kv.k16) + at, buf, k);
                else memcpy((kvv ? kv.v : kv.k) + at, buf, k * sizeof(float));
            }
        }
        free(buf);
        bench_fill_uniform(kv.qkv, (size_t)B * kv.qkv_w, 7);
        for (int r = 0; r < B; r++) {
            kv.row_seq[r] = r;
            kv.row_pos[r] = prompt;
        }
        struct rusage r0, r1;
        getrusage(RUSAGE_SELF, &r0);
        for (int s = 0; s < steps; s++) {
            double t0 = util_time_s();
            for (int l = 0; l < kv.L; l++) kv_attention(kv.atty, &kv, B, l);
            t[s] = util_time_s() - t0;
        }
        getrusage(RUSAGE_SELF, &r1);
        double cpu = (bench_rusage_cpu_s(&r1) - bench_rusage_cpu_s(&r0)) / steps;
        double med = bench_median(t, steps);
        double bytes = 2.0 * kv.L * B * kv.KVH * (prompt + 1.0) * kv.hd * (f ? 2 : 4);
        double flops = 4.0 * kv.L * B * kv.NH * (prompt + 1.0) * kv.hd;
        printf("{\"impl\":\"rlhf.c\",\"mode\":\"attention\",\"preset\":\"%s\",\"cache\":\"%s\","
               "\"B\":%d,\"positions\":%d,\"threads\":%d,\"step_ms\":%.3f,\"cpu_ms\":%.3f,"
               "\"cache_gb_s\":%.2f,\"gflops\":%.2f,\"hash\":\"%016llx\"}\n",
               pname, lowp_format_name(fmts[f]), B, prompt + 1, omp_get_max_threads(), med * 1e3,
               cpu * 1e3, bytes / med / 1e9, flops / med / 1e9,
               (unsigned long long)bench_hash(kv.atty, (size_t)B * kv.NH * kv.hd * 4));
        fflush(stdout);
        kv_free(&kv);
    }
    free(t);
    model_free(&m);
    return 0;
}

static const char bench_model_usage[] =
    "usage: bench_model --mode sgemm|train|generate|decode|decode_lowp|decode_turns|forward_lowp|\n"
    "                          attention\n"
    "                   [--preset gpt2|small|smollm2-135m|llama-small] [--B N] [--T N]\n"
    "                   [--steps N] [--prompt N] [--new N]\n";

int main(int argc, char **argv) {
    blas_startup("bench_model", argv); // the best OpenBLAS kernel for this CPU, as the programs run
    const char *mode = NULL, *pname = "gpt2";
    int64_t B_opt = -1, T_opt = -1, steps_opt = -1, prompt_opt = 16, new_opt = 64;   // -1: preset's
    CliOption opts[] = {CLI_STRING("--mode", &mode, .required = 1),
                        CLI_STRING("--preset", &pname),
                        CLI_INT("--B", &B_opt, 1, INT_MAX),
                        CLI_INT("--T", &T_opt, 1, INT_MAX),
                        CLI_INT("--steps", &steps_opt, 1, INT_MAX),
                        CLI_INT("--prompt", &prompt_opt, 1, INT_MAX),
                        CLI_INT("--new", &new_opt, 4, INT_MAX),   // the warm-up makes 4
                        {0}};
    CliCommand cmd = {.prog = "bench_model", .usage = bench_model_usage, .opts = opts};
    int status;
    if (cli_parse(&cmd, argc - 1, argv + 1, &status)) return status;
    int B = (int)B_opt, T = (int)T_opt, steps = (int)steps_opt, prompt = (int)prompt_opt,
        new_tok = (int)new_opt;
    if (!strcmp(mode, "sgemm")) {
        printf("{\"impl\":\"openblas\",\"mode\":\"sgemm\",\"threads\":%d,\"gflops\":%.1f}\n",
               omp_get_max_threads(), sgemm_ceiling());
        return 0;
    }
    ModelConfig c;
    if (preset(pname, &c)) { fprintf(stderr, "bench_model: unknown preset %s\n", pname); return 2; }
    // the small shapes' defaults: a bigger batch, shorter sequences, more steps
    int small = !strcmp(pname, "small") || !strcmp(pname, "llama-small");
    if (!strcmp(mode, "train")) {
        return bench_train(pname, &c, B < 0 ? (small ? 16 : 4) : B, T < 0 ? (small ? 128 : 256) : T,
                           steps < 0 ? (small ? 20 : 5) : steps);
    } else if (!strcmp(mode, "decode")) {
        char err[256];
        Model m;
        if (model_init(&m, &c, 1, 1, 0, 1, err, sizeof err)) {
            fprintf(stderr, "bench_model: %s\n", err);
            return 1;
        }
        model_init_weights(&m, 1234);
        bench_decode(&m, B < 0 ? 8 : B);
        model_free(&m);
        return 0;
    } else if (!strcmp(mode, "forward_lowp")) {
        return bench_forward_lowp(pname, &c, B < 0 ? 4 : B, T < 0 ? 64 : T);
    } else if (!strcmp(mode, "decode_turns")) {
        return bench_decode_turns(pname, &c, steps < 0 ? 9 : steps, new_tok);
    } else if (!strcmp(mode, "decode_lowp")) {
        return bench_decode_lowp(pname, &c, B < 0 ? 1 : B, prompt, new_tok);
    } else if (!strcmp(mode, "attention")) {
        return bench_attention(pname, &c, B < 0 ? 8 : B, prompt, new_tok, steps < 0 ? 10 : steps);
    } else if (!strcmp(mode, "generate")) {
        return bench_generate(pname, &c, B < 0 ? 1 : B, prompt, new_tok);
    }
    fprintf(stderr, "bench_model: unknown mode %s\n", mode);
    return 2;
}
