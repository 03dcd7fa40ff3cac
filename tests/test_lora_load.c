// A frozen base loaded straight into bf16 or int8 (adapter_load_base, lora.base_dtype): every
// copy, every fp32 weight kept and the logits equal, byte for byte, those of the old way
// (the whole fp32 model loaded, then adapter_narrow_base), on both block kinds, tied and untied
// heads, F32 and BF16 files, one file and shards, a plain checkpoint and an adapter on top of
// one (merged as it is read); and the load's peak memory holds the copies and a few fp32
// matrices in flight, not the fp32 model.
#include "adapter.h"
#include "checkpoint.h"
#include "lora.h"
#include "model.h"
#include "peft.h"
#include "rng.h"
#include "testlib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BB = 2, TT = 5 };

// 0: GPT-2 (tied head, score head); 1: Qwen2-style (tied, q/k/v biases); 2: Qwen3-style (untied
// lm_head, per-head q/k norms)
static ModelConfig cfg_of(int kind) {
    if (kind == 0) {
        ModelConfig c = {.max_seq_len = 16, .vocab_size = 23, .n_layer = 2, .n_head = 2,
                         .n_embd = 12, .ln_eps = 1e-5f, .lm_head = 1, .score_head = 1};
        return c;
    }
    ModelConfig c = {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_QWEN2, .max_seq_len = 16,
                     .vocab_size = 23, .n_layer = 2, .n_head = 4, .n_embd = 16, .ln_eps = 1e-5f,
                     .lm_head = 1, .n_kv_head = 2, .d_ff = 20, .rope_theta = 10000.0f,
                     .qkv_bias = 1};
    if (kind == 2) {
        c.family = MODEL_FAMILY_QWEN3;
        c.qkv_bias = 0;
        c.qk_norm = 1;
        c.untied = 1;
    }
    return c;
}

static void save_ok(const char *dir, const Model *m, int dtype, int64_t shard) {
    CkptSaveOptions o = {.save_dtype = dtype, .max_shard_bytes = shard};
    char err[512];
    CHECK_MSG(ckpt_save(dir, m, &o, err, sizeof err) == 0, "%s", err);
}

// An adapter on every linear layer of base c with B drawn (a fresh B is zero: nothing merged),
// saved as PEFT does into dir over the base base_dir.
static void adapter_write(const char *dir, const ModelConfig *c, const char *base_dir) {
    LoraConfig lc = {.r = 2, .alpha = 4.0f};
    char err[512];
    const char *t = c->arch == MODEL_ARCH_GPT2
                        ? "c_attn,c_proj,c_fc"
                        : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
    Lora lo;
    CHECK_MSG(lora_parse_targets(&lc, t, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(lora_init(&lo, &lc, c, 1, 1, err, sizeof err) == 0, "%s", err);
    lora_init_weights(&lo, 3, NULL);
    Rng g;
    rng_init(&g, 4);
    for (int l = 0; l < c->n_layer; l++)
        for (int s = 0; s < lo.nsite; s++) {
            float *b = lora_b(&lo, l, s, 0);
            for (int64_t i = 0; i < lo.site[s].out * lc.r; i++) b[i] = 0.3f * rng_normal(&g);
        }
    CHECK_MSG(peft_save(&lo, dir, base_dir, 0, err, sizeof err) == 0, "%s", err);
    lora_free(&lo);
}

static void frozen_init(Model *m, const ModelConfig *c) {
    char err[256];
    CHECK_MSG(model_init(m, c, BB, TT, MODEL_TRAIN_FROZEN, 0, err, sizeof err) == 0, "%s", err);
}

// the old way: the fp32 model, then its matrices narrowed
static void load_then_narrow(Model *m, const ModelConfig *c, const char *dir, LowpFormat fmt) {
    char err[512];
    frozen_init(m, c);
    CHECK_MSG(adapter_load_weights(dir, m, 0, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(adapter_narrow_base(m, fmt, err, sizeof err) == 0, "%s", err);
}

static void load_streamed(Model *m, const ModelConfig *c, const char *dir, LowpFormat fmt) {
    char err[512];
    frozen_init(m, c);
    CHECK_MSG(adapter_load_base(dir, m, 0, fmt, err, sizeof err) == 0, "%s", err);
}

// the same format, shape, kernels and bytes (bf16 bits; int8 values and scales)
static int same_matrix(const LowpMatrix *a, const LowpMatrix *b) {
    size_t n = (size_t)a->C * (size_t)a->OC;
    if (a->fmt != b->fmt || a->C != b->C || a->OC != b->OC || a->path != b->path) return 0;
    if (!a->OC) return 1;
    if (a->fmt == LOWP_BF16) return memcmp(a->bf16, b->bf16, n * 2) == 0;
    return memcmp(a->q, b->q, n) == 0 && memcmp(a->scale, b->scale, (size_t)a->OC * 4) == 0;
}

static void logits_of(Model *m, float *out) {
    int32_t tok[BB * TT], len[BB] = {TT, 3};
    for (int i = 0; i < BB * TT; i++) tok[i] = (int32_t)((i * 7 + 3) % m->config.vocab_size);
    ModelBatch b = {.B = BB, .T = TT, .tokens = tok, .lengths = len};
    char err[256];
    CHECK_MSG(model_forward(m, &b, MODEL_LOGITS_ALL, err, sizeof err) == 0, "%s", err);
    memcpy(out, m->logits, (size_t)m->M * (size_t)m->config.vocab_size * sizeof(float));
}

static void compare(Model *a, Model *b, const char *what) {
    const ModelConfig *c = &a->config;
    int bad = -1;
    for (int l = 0; l < c->n_layer && bad < 0; l++)
        for (int w = 0; w < MODEL_NUM_W; w++)
            if (!same_matrix(model_lowp_matrix(a, l, w), model_lowp_matrix(b, l, w))) bad = w;
    CHECK_MSG(bad < 0, "%s: the bf16 copy of matrix %d differs", what, bad);
    CHECK_MSG(same_matrix(model_lowp_matrix(a, 0, MODEL_NUM_W),
                          model_lowp_matrix(b, 0, MODEL_NUM_W)),
              "%s: the LM head's bf16 copy differs", what);
    CHECK_MSG(a->num_params == b->num_params &&
                  memcmp(a->param_sizes, b->param_sizes, sizeof a->param_sizes) == 0 &&
                  memcmp(a->params_memory, b->params_memory, a->num_params * sizeof(float)) == 0,
              "%s: the fp32 weights kept differ", what);
    size_t n = (size_t)BB * TT * (size_t)c->vocab_size;
    float *x = calloc(n, sizeof(float)), *y = calloc(n, sizeof(float));
    logits_of(a, x);
    logits_of(b, y);
    CHECK_MSG(memcmp(x, y, n * sizeof(float)) == 0, "%s: the logits differ", what);
    free(x);
    free(y);
}

static void rm_rf(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
}

static void test_streamed_equals_narrowed(void) {
    for (int kind = 0; kind < 3; kind++)
        for (int file = 0; file < 2; file++) {   // F32 in one file; BF16 in shards
            ModelConfig c = cfg_of(kind);
            Model src;
            frozen_init(&src, &c);
            model_init_weights(&src, 11 + (uint64_t)kind);
            char dir[] = "/tmp/lora_load_XXXXXX", base[600], ad[600];
            CHECK(mkdtemp(dir) != NULL);
            snprintf(base, sizeof base, "%s/base", dir);
            snprintf(ad, sizeof ad, "%s/adapter", dir);
            save_ok(base, &src, file ? CKPT_DTYPE_BFLOAT16 : CKPT_DTYPE_FLOAT32, file ? 2048 : 0);
            adapter_write(ad, &c, base);
            for (int chain = 0; chain < 4; chain++) {   // 0, 1: bf16; 2, 3: int8
                LowpFormat fmt = chain < 2 ? LOWP_BF16 : LOWP_INT8;
                const char *from = chain & 1 ? ad : base;
                Model old, now;
                char what[128];
                snprintf(what, sizeof what, "%s%s, %s%s, %s", model_kind_name(&c),
                         c.untied ? " (untied head)" : "", file ? "BF16 shards" : "F32",
                         chain & 1 ? ", adapter merged" : "", lowp_format_name(fmt));
                load_then_narrow(&old, &c, from, fmt);
                load_streamed(&now, &c, from, fmt);
                CHECK_MSG(model_lowp_format(&now) == fmt && now.num_params < src.num_params,
                          "%s: the streamed base kept its fp32 matrices", what);
                compare(&old, &now, what);
                model_free(&old);
                model_free(&now);
            }
            model_free(&src);
            rm_rf(dir);
        }
}

// kB of a /proc/self/status line ("VmRSS:", "VmHWM:")
static long status_kb(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t n = strlen(key);
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, key, n)) v = atol(line + n);
    if (f) fclose(f);
    return v;
}

// The peak of a streamed load (VmHWM, reset first through /proc/self/clear_refs) rises by at most
// the bf16 copies, the fp32 weights kept and 4 matrices' fp32 in flight (those the file's pages
// and the one being converted take), far below the fp32 model the old way held (plus the file).
static void test_streamed_peak(void) {
    ModelConfig c = {.max_seq_len = 16, .vocab_size = 256, .n_layer = 8, .n_head = 4,
                     .n_embd = 256, .ln_eps = 1e-5f, .lm_head = 1};
    Model src;
    frozen_init(&src, &c);
    model_init_weights(&src, 5);
    char dir[] = "/tmp/lora_load_XXXXXX", base[600];
    CHECK(mkdtemp(dir) != NULL);
    snprintf(base, sizeof base, "%s/base", dir);
    save_ok(base, &src, CKPT_DTYPE_FLOAT32, 0);
    double fp32 = (double)src.num_params * 4;
    model_free(&src);
    FILE *f = fopen("/proc/self/clear_refs", "w");
    CHECK_MSG(f && fputs("5", f) >= 0 && fclose(f) == 0,
              "cannot reset the peak RSS (/proc/self/clear_refs)");
    long before = status_kb("VmRSS:");
    Model m;
    load_streamed(&m, &c, base, LOWP_BF16);
    double rise = (double)(status_kb("VmHWM:") - before) * 1024;
    double bound = (double)model_lowp_bytes(&c, LOWP_BF16) + (double)m.num_params * 4 +
                   4.0 * (double)model_matrix_floats(&m, MODEL_W_FC) * 4;
    printf("streamed bf16 load of a %.1f MiB fp32 model: peak rose %.1f MiB (bound %.1f MiB)\n",
           fp32 / 1048576.0, rise / 1048576.0, bound / 1048576.0);
    CHECK_MSG(rise <= bound, "the load's peak rose %.1f MiB, above the %.1f MiB of the copies, "
              "the kept weights and 4 matrices (the fp32 model is %.1f MiB)", rise / 1048576.0,
              bound / 1048576.0, fp32 / 1048576.0);
    model_free(&m);
    rm_rf(dir);
}

int main(void) {
    test_case("lora load: a base streamed into bf16 / int8 = loaded in fp32 then narrowed, byte "
              "for byte (GPT-2, Qwen2, Qwen3 untied; F32, BF16 shards; an adapter merged)",
              test_streamed_equals_narrowed);
    test_case("lora load: the streamed load's peak holds no fp32 model", test_streamed_peak);
    return test_summary();
}
