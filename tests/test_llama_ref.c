// The Llama-style block kind against tests/ref/llama_ref.py (hand-written PyTorch, float64 truth
// that proves itself), one fixture per shape nobody tunes for: 9 query heads on 3 KV heads,
// multi-query with head_dim 48 and an untied head, Qwen2's q/k/v biases, Qwen3's q/k norms with
// head_dim 64, and 1030 positions under rope_theta 1e6 with Llama 3 scaling. For each: logits
// (1e-4), masked loss (1e-5), every gradient (1e-4 of that tensor's largest), the scalar head's
// values and gradients, each sequence run alone, and 10 AdamW steps through the optimizer as sft
// drives it. Each case prints the worst differences it measured.
#include "model.h"
#include "optim.h"
#include "testlib.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const REF_CASES[] = {"llama_gqa", "llama_mqa_hd48", "llama_qwen2_bias",
                                        "llama_qwen3_hd64", "llama_long_rope"};

// The case under test (test_case takes a plain function): its fixture and batch.
typedef struct {
    const char *name;
    Fixture fx;
    int B, T, V;
    const int32_t *tokens, *targets, *lengths;
    const float *weights;
} RefCase;
static RefCase rc;

static const FixtureTensor *need(const char *name) {
    const FixtureTensor *t = fixture_get(&rc.fx, name);
    if (!t) {
        printf("FAIL %s.bin lacks %s (rerun tests/ref/llama_ref.py)\n0 passed, 1 failed\n", rc.name,
               name);
        exit(1);
    }
    return t;
}
static int need_int(const char *name) { return *(const int32_t *)need(name)->data; }
static float need_float(const char *name) { return *(const float *)need(name)->data; }

static ModelConfig ref_config(int score) {
    ModelConfig c = {.arch = MODEL_ARCH_LLAMA,
                     .family = need_int("config.family"),
                     .max_seq_len = need_int("config.max_seq_len"),
                     .vocab_size = need_int("config.vocab_size"),
                     .n_layer = need_int("config.n_layer"),
                     .n_head = need_int("config.n_head"),
                     .n_embd = need_int("config.n_embd"),
                     .ln_eps = need_float("config.ln_eps"),
                     .lm_head = 1,
                     .score_head = score,
                     .n_kv_head = need_int("config.n_kv_head"),
                     .head_dim = need_int("config.head_dim"),
                     .d_ff = need_int("config.d_ff"),
                     .rope_theta = need_float("config.rope_theta"),
                     .rope_scaling = need_int("config.rope_scaling"),
                     .rope_factor = need_float("config.rope_factor"),
                     .rope_low_freq_factor = need_float("config.rope_low_freq_factor"),
                     .rope_high_freq_factor = need_float("config.rope_high_freq_factor"),
                     .rope_original_max_pos = need_int("config.rope_original_max_pos"),
                     .qkv_bias = need_int("config.qkv_bias"),
                     .qk_norm = need_int("config.qk_norm"),
                     .untied = need_int("config.untied")};
    return c;
}

// Parameters of the fixture: every "final.<name>" (all but score.weight) plus score.weight.
static int ref_param_count(int score) {
    int n = score;
    for (int i = 0; i < rc.fx.n; i++) n += strncmp(rc.fx.t[i].name, "final.", 6) == 0;
    return n;
}

// A trainable model of the fixture's config with its weights copied in by HF name; 0, or -1
// after recording a failure (the engine refused the config, or its tensors are not the HF ones).
static int ref_model(Model *m, int score) {
    ModelConfig c = ref_config(score);
    char err[256];
    if (model_init(m, &c, rc.B, rc.T, 1, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s: model_init: %s", rc.name, err);
        return -1;
    }
    int count = model_tensor_count(m), want = ref_param_count(score), bad = 0;
    CHECK_MSG(count == want, "%s: the engine has %d tensors, the reference %d", rc.name, count,
              want);
    for (int i = 0; i < count && !bad; i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        const FixtureTensor *f = fixture_get(&rc.fx, t.name);
        int64_t n = t.ndim == 2 ? t.shape[0] * t.shape[1] : t.shape[0];
        bad = !f || f->numel != n || (f->ndim == t.ndim && t.ndim == 2 && f->dims[0] != t.shape[0]);
        if (bad)
            test_fail_at(__FILE__, __LINE__, "%s: engine tensor %s [%lld x %lld] %s", rc.name,
                         t.name, (long long)t.shape[0], (long long)(t.ndim == 2 ? t.shape[1] : 1),
                         f ? "has another shape in the reference" : "is not in the reference");
        else
            memcpy(t.data, f->data, (size_t)n * sizeof(float));
        // the reference decays exactly the matrices (torch's AdamW groups by ndim)
        CHECK_MSG(bad || t.decay == (f->ndim >= 2), "%s: %s: decay %d, reference ndim %d", rc.name,
                  t.name, t.decay, f ? f->ndim : 0);
    }
    if (bad || count != want) {
        model_free(m);
        return -1;
    }
    return 0;
}

static ModelBatch ref_batch(int with_targets) {
    ModelBatch b = {.B = rc.B,
                    .T = rc.T,
                    .tokens = rc.tokens,
                    .lengths = rc.lengths,
                    .targets = with_targets ? rc.targets : NULL,
                    .weights = with_targets ? rc.weights : NULL};
    return b;
}

// Largest |a - b| over n values, divided by scale (1 when scale is 0).
static double worst_diff(const float *a, const float *b, int64_t n, double scale) {
    double w = 0;
    for (int64_t i = 0; i < n; i++) w = fmax(w, fabs((double)a[i] - b[i]));
    return scale > 0 ? w / scale : w;
}

static double max_abs(const float *x, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

// Every tensor's gradient against PREFIX.<name>: |d| <= 1e-4 of the tensor's largest |grad|
// (exactly 0 where the reference is all 0). Returns the worst ratio seen.
static double check_grads(const Model *m, const char *prefix, int with_score) {
    double worst = 0;
    for (int i = 0; i < model_tensor_count(m); i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        if (!with_score && !strcmp(t.name, "score.weight")) continue;
        char name[96];
        snprintf(name, sizeof name, "%s.%s", prefix, t.name);
        const FixtureTensor *g = need(name);
        double mx = max_abs(g->data, g->numel), d = worst_diff(t.grad, g->data, g->numel, 0);
        double r = mx > 0 ? d / mx : d;
        CHECK_MSG(mx > 0 ? r <= 1e-4 : d == 0, "%s: %s differs by %.3g (%.3g of its largest %.3g)",
                  rc.name, name, d, r, mx);
        worst = fmax(worst, r);
    }
    return worst;
}

static void test_forward_backward(void) {
    Model m;
    if (ref_model(&m, 1)) return;
    ModelBatch b = ref_batch(1);
    char err[256], what[96];
    int rc_fwd = model_forward(&m, &b, MODEL_LOGITS_ALL, err, sizeof err);
    CHECK_MSG(rc_fwd == 0, "%s: forward: %s", rc.name, err);
    if (rc_fwd) { model_free(&m); return; }
    const float *ref = need("logits")->data;
    double worst_logit = 0;
    int64_t row = 0;
    snprintf(what, sizeof what, "%s: logits", rc.name);
    for (int bi = 0; bi < rc.B; bi++)
        for (int t = 0; t < rc.lengths[bi]; t++, row++) {
            const float *got = model_logits_at(&m, bi, t), *want = ref + row * rc.V;
            CHECK_MSG(got != NULL, "%s: no logits at (%d, %d)", rc.name, bi, t);
            if (!got) continue;
            CHECK_CLOSE(got, want, (size_t)rc.V, 1e-4, 1e-4, what);
            worst_logit = fmax(worst_logit, worst_diff(got, want, rc.V, 0));
        }
    CHECK(row == need("logits")->dims[0]);
    float want_loss = *(const float *)need("loss")->data;
    snprintf(what, sizeof what, "%s: masked loss", rc.name);
    CHECK_CLOSE(&m.loss, &want_loss, 1, 1e-5, 1e-5, what);
    model_zero_grad(&m);
    model_backward(&m, &b, NULL, NULL);
    double worst_grad = check_grads(&m, "grad", 0);
    printf("   %s: logits |d| %.2g, loss |d| %.2g, gradients |d| %.2g of the tensor's max\n",
           rc.name, worst_logit, fabs((double)m.loss - want_loss), worst_grad);
    model_free(&m);
}

static void test_scalar_head(void) {
    Model m;
    if (ref_model(&m, 1)) return;
    ModelBatch b = ref_batch(0);
    char err[256], what[96];
    int rc_fwd = model_forward(&m, &b, 0, err, sizeof err);
    CHECK_MSG(rc_fwd == 0, "%s: forward: %s", rc.name, err);
    if (rc_fwd) { model_free(&m); return; }
    float *vals = malloc((size_t)rc.B * rc.T * sizeof(float));
    model_get_values(&m, vals);
    const float *ref = need("values")->data;
    double worst_val = 0;
    snprintf(what, sizeof what, "%s: values", rc.name);
    for (int bi = 0; bi < rc.B; bi++) {
        size_t at = (size_t)bi * rc.T;
        CHECK_CLOSE(vals + at, ref + at, (size_t)rc.lengths[bi], 1e-5, 1e-4, what);
        worst_val = fmax(worst_val, worst_diff(vals + at, ref + at, rc.lengths[bi], 0));
    }
    model_zero_grad(&m);
    model_backward(&m, &b, NULL, need("dvalues")->data);
    double worst_grad = check_grads(&m, "sgrad", 1);
    printf("   %s: values |d| %.2g, their gradients |d| %.2g of the tensor's max\n", rc.name,
           worst_val, worst_grad);
    free(vals);
    model_free(&m);
}

// Each sequence run alone (a batch of one, T = its length) gives the reference's logits too.
static void test_alone(void) {
    Model m;
    if (ref_model(&m, 0)) return;
    const float *ref = need("logits")->data;
    char err[256], what[96];
    double worst = 0;
    int64_t row = 0;
    snprintf(what, sizeof what, "%s: logits of a sequence alone", rc.name);
    for (int bi = 0; bi < rc.B; bi++) {
        size_t at = (size_t)bi * rc.T;
        ModelBatch s = {.B = 1,
                        .T = rc.lengths[bi],
                        .tokens = rc.tokens + at,
                        .lengths = &rc.lengths[bi],
                        .targets = rc.targets + at,
                        .weights = rc.weights + at};
        int rc_fwd = model_forward(&m, &s, MODEL_LOGITS_ALL, err, sizeof err);
        CHECK_MSG(rc_fwd == 0, "%s: forward of sequence %d alone: %s", rc.name, bi, err);
        for (int t = 0; t < rc.lengths[bi] && rc_fwd == 0; t++, row++) {
            const float *got = model_logits_at(&m, 0, t), *want = ref + row * rc.V;
            CHECK_MSG(got != NULL, "%s: no logits at (0, %d)", rc.name, t);
            if (!got) continue;
            CHECK_CLOSE(got, want, (size_t)rc.V, 1e-4, 1e-4, what);
            worst = fmax(worst, worst_diff(got, want, rc.V, 0));
        }
    }
    printf("   %s: each sequence alone: logits |d| %.2g\n", rc.name, worst);
    model_free(&m);
}

// 10 steps as sft takes them: forward, zero_grad, backward, optim_adamw_step at lr_at's rate.
static void test_adamw(void) {
    Model m;
    if (ref_model(&m, 0)) return;
    ModelBatch b = ref_batch(1);
    AdamWConfig oc = {.lr = need_float("adam.lr"),
                      .beta1 = need_float("adam.beta1"),
                      .beta2 = need_float("adam.beta2"),
                      .eps = need_float("adam.eps"),
                      .weight_decay = need_float("adam.weight_decay"),
                      .grad_clip = need_float("adam.grad_clip")};
    LrSchedule sch = {.kind = LR_CONSTANT};
    const float *losses = need("adam_losses")->data, *norms = need("adam_gradnorm")->data;
    int steps = (int)need("adam_losses")->numel;
    char err[256], what[96];
    double worst_loss = 0, worst_norm = 0;
    for (int step = 0; step < steps; step++) {
        int rc_fwd = model_forward(&m, &b, 0, err, sizeof err);
        CHECK_MSG(rc_fwd == 0, "%s: forward: %s", rc.name, err);
        if (rc_fwd) { model_free(&m); return; }
        model_zero_grad(&m);
        model_backward(&m, &b, NULL, NULL);
        float norm = optim_adamw_step(&m, &oc, lr_at(&sch, oc.lr, step), step + 1);
        snprintf(what, sizeof what, "%s: loss before AdamW step %d", rc.name, step + 1);
        CHECK_CLOSE(&m.loss, &losses[step], 1, 1e-5, 1e-5, what);
        snprintf(what, sizeof what, "%s: gradient norm at AdamW step %d", rc.name, step + 1);
        CHECK_CLOSE(&norm, &norms[step], 1, 1e-5, 1e-4, what);
        worst_loss = fmax(worst_loss, fabs((double)m.loss - losses[step]));
        worst_norm = fmax(worst_norm, fabs((double)norm - norms[step]));
    }
    double worst_param = 0;
    for (int i = 0; i < model_tensor_count(&m); i++) {
        ModelTensor t;
        model_tensor(&m, i, &t);
        char name[96];
        snprintf(name, sizeof name, "final.%s", t.name);
        const FixtureTensor *f = need(name);
        double d = worst_diff(t.data, f->data, f->numel, 0);
        CHECK_MSG(d <= 1e-4, "%s: %s after %d AdamW steps differs by %.3g", rc.name, name, steps,
                  d);
        worst_param = fmax(worst_param, d);
    }
    printf("   %s: %d AdamW steps: losses |d| %.2g, norms |d| %.2g, weights |d| %.2g\n", rc.name,
           steps, worst_loss, worst_norm, worst_param);
    model_free(&m);
}

// Loads fixture `name` into rc; 0, or -1 (fixture_load has said why on stderr).
static int ref_load(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "%s/fixtures/%s.bin", test_data_dir(), name);
    memset(&rc, 0, sizeof rc);
    rc.name = name;
    if (fixture_load(&rc.fx, path)) return -1;
    const FixtureTensor *tok = need("tokens");
    rc.B = (int)tok->dims[0];
    rc.T = (int)tok->dims[1];
    rc.V = need_int("config.vocab_size");
    rc.tokens = tok->data;
    rc.targets = need("targets")->data;
    rc.lengths = need("lengths")->data;
    rc.weights = need("weights")->data;
    return 0;
}

static void test_fixture_missing(void) {
    test_fail_at(__FILE__, __LINE__, "%s.bin cannot be read: run tests/ref/llama_ref.py", rc.name);
}

int main(void) {
    for (size_t i = 0; i < sizeof REF_CASES / sizeof REF_CASES[0]; i++) {
        char title[160];
        if (ref_load(REF_CASES[i])) {
            snprintf(title, sizeof title, "%s: fixture", rc.name);
            test_case(title, test_fixture_missing);
            continue;
        }
        snprintf(title, sizeof title, "%s: logits, masked loss and every gradient vs PyTorch",
                 rc.name);
        test_case(title, test_forward_backward);
        snprintf(title, sizeof title, "%s: scalar head values and gradients vs PyTorch", rc.name);
        test_case(title, test_scalar_head);
        snprintf(title, sizeof title, "%s: each sequence alone vs PyTorch", rc.name);
        test_case(title, test_alone);
        snprintf(title, sizeof title, "%s: 10 AdamW steps vs PyTorch", rc.name);
        test_case(title, test_adamw);
        fixture_free(&rc.fx);
    }
    return test_summary();
}
