// LoRA adapters (common/lora.h) on both block kinds: a zero B is exactly the base; adapters off
// (MODEL_NO_LORA) is the base bit for bit; merged weights give the adapter's logits; gradients of
// A, B and the score copy against finite differences, with and without dropout, through a
// frozen base (MODEL_TRAIN_FROZEN: no base gradients); AdamW moves only the adapters; bad
// configurations are one-line errors; and the memory plan of a GPT-2 124M shape, full vs r=16.
#include "checkpoint.h"
#include "generate.h"
#include "lora.h"
#include "model.h"
#include "optim.h"
#include "peft.h"
#include "rng.h"
#include "safetensors.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BB = 3, TT = 7 };

static ModelConfig cfg_of(int arch) {
    if (arch == MODEL_ARCH_GPT2) {
        ModelConfig c = {.max_seq_len = 16, .vocab_size = 23, .n_layer = 2, .n_head = 2,
                         .n_embd = 12, .ln_eps = 1e-5f, .lm_head = 1, .score_head = 1};
        return c;
    }
    ModelConfig c = {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_QWEN2, .max_seq_len = 16,
                     .vocab_size = 23, .n_layer = 2, .n_head = 4, .n_embd = 16, .ln_eps = 1e-5f,
                     .lm_head = 1, .score_head = 1, .n_kv_head = 2, .d_ff = 20,
                     .rope_theta = 10000.0f, .qkv_bias = 1};
    return c;
}

// Qwen3's block: per-head q/k RMSNorms, no q/k/v biases
static ModelConfig qwen3_cfg(void) {
    ModelConfig c = cfg_of(MODEL_ARCH_LLAMA);
    c.family = MODEL_FAMILY_QWEN3;
    c.qkv_bias = 0;
    c.qk_norm = 1;
    return c;
}

static const char *all_targets(int arch) {
    return arch == MODEL_ARCH_GPT2 ? "c_attn, c_proj, c_fc"
                                   : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
}

typedef struct {
    int32_t tok[BB * TT], tgt[BB * TT], len[BB];
    float w[BB * TT], dv[BB * TT];
    ModelBatch b;
} Batch;

static void batch_make(Batch *bt, int V) {
    Rng g;
    rng_init(&g, 7);
    int lens[BB] = {7, 4, 6};
    for (int i = 0; i < BB * TT; i++) {
        bt->tok[i] = (int32_t)rng_below(&g, (uint64_t)V);
        bt->tgt[i] = (int32_t)rng_below(&g, (uint64_t)V);
        bt->w[i] = 0.5f + rng_float(&g);
        bt->dv[i] = rng_float(&g) - 0.5f;
    }
    memcpy(bt->len, lens, sizeof lens);
    bt->b = (ModelBatch){.B = BB, .T = TT, .tokens = bt->tok, .lengths = bt->len,
                         .targets = bt->tgt, .weights = bt->w};
}

static void base_make(Model *m, const ModelConfig *c, int trainable) {
    char err[256];
    CHECK_MSG(model_init(m, c, BB, TT, trainable, 0, err, sizeof err) == 0, "%s", err);
    model_init_weights(m, 11);
}

// Adapters with B drawn too (a fresh adapter's B is zero, which would test nothing), and
// trained biases (bias LORA_BIAS_*) drawn as well.
static void lora_make_bias(Lora *lo, const ModelConfig *c, const char *targets, float dropout,
                           int train_score, const float *score, int bias, int norms) {
    LoraConfig lc = {.r = 3, .alpha = 6.0f, .dropout = dropout, .train_score = train_score,
                     .bias = bias, .norms = norms};
    char err[256];
    CHECK_MSG(lora_parse_targets(&lc, targets, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(lora_init(lo, &lc, c, BB * TT, 1, err, sizeof err) == 0, "%s", err);
    lora_init_weights(lo, 5, score);
    Rng g;
    rng_init(&g, 9);
    for (int l = 0; l < c->n_layer; l++)
        for (int s = 0; s < lo->nsite; s++) {
            float *b = lora_b(lo, l, s, 0);
            for (int64_t i = 0; i < lo->site[s].out * lc.r; i++) b[i] = 0.3f * rng_normal(&g);
        }
    if (lo->score)
        for (int i = 0; i < c->n_embd; i++) lo->score[i] += 0.1f * rng_normal(&g);
    float *bv = lo->nbias ? lora_bias_values(lo, 0, 0) : NULL;
    for (size_t i = 0; bv && i < lo->num_params - lo->bias_at; i++) bv[i] = 0.2f * rng_normal(&g);
}

static void lora_make(Lora *lo, const ModelConfig *c, const char *targets, float dropout,
                      int train_score, const float *score) {
    lora_make_bias(lo, c, targets, dropout, train_score, score, LORA_BIAS_NONE, 0);
}

// A frozen base of arch with adapters on targets attached, and the test batch.
static void rig(Model *m, Lora *lo, Batch *bt, int arch, const char *targets, float dropout,
                int score) {
    ModelConfig c = cfg_of(arch);
    base_make(m, &c, MODEL_TRAIN_FROZEN);
    lora_make(lo, &c, targets, dropout, score, score ? m->params.scorew : NULL);
    char err[256];
    CHECK_MSG(lora_attach(m, lo, err, sizeof err) == 0, "%s", err);
    batch_make(bt, c.vocab_size);
}

static void forward_ok(Model *m, const ModelBatch *b, int flags) {
    char err[256];
    CHECK_MSG(model_forward(m, b, flags, err, sizeof err) == 0, "%s", err);
}

// log-probs and values of a forward, (BB*TT) each
static void outputs(Model *m, const ModelBatch *b, int flags, float *logp, float *val) {
    forward_ok(m, b, flags);
    model_get_logp(m, logp);
    model_get_values(m, val);
}

static void test_zero_b_and_off_are_base(void) {
    for (int arch = 0; arch < 2; arch++) {
        ModelConfig c = cfg_of(arch);
        Model m;
        base_make(&m, &c, MODEL_TRAIN_FROZEN);
        Batch bt;
        batch_make(&bt, c.vocab_size);
        float lp0[BB * TT], v0[BB * TT], lp1[BB * TT], v1[BB * TT];
        outputs(&m, &bt.b, 0, lp0, v0);
        Lora lo;
        LoraConfig lc = {.r = 4, .alpha = 8.0f};
        char err[256];
        CHECK(lora_parse_targets(&lc, all_targets(arch), err, sizeof err) == 0);
        CHECK_MSG(lora_init(&lo, &lc, &c, BB * TT, 1, err, sizeof err) == 0, "%s", err);
        lora_init_weights(&lo, 3, NULL);   // PEFT's start: A random, B zero
        CHECK(lora_attach(&m, &lo, err, sizeof err) == 0);
        outputs(&m, &bt.b, 0, lp1, v1);
        CHECK_MSG(memcmp(lp0, lp1, sizeof lp0) == 0 && memcmp(v0, v1, sizeof v0) == 0,
                  "%s: a zero B changed the base's outputs", model_kind_name(&c));
        lora_free(&lo);
        lora_make(&lo, &c, all_targets(arch), 0.0f, 1, m.params.scorew);
        CHECK(lora_attach(&m, &lo, err, sizeof err) == 0);
        outputs(&m, &bt.b, 0, lp1, v1);
        CHECK_MSG(memcmp(lp0, lp1, sizeof lp0) != 0, "adapters changed nothing");
        outputs(&m, &bt.b, MODEL_NO_LORA, lp1, v1);
        CHECK_MSG(memcmp(lp0, lp1, sizeof lp0) == 0 && memcmp(v0, v1, sizeof v0) == 0,
                  "%s: adapters off is not the base bit for bit", model_kind_name(&c));
        lora_free(&lo);
        model_free(&m);
    }
}

static void test_merge_equals_adapters(void) {
    for (int arch = 0; arch < 2; arch++) {
        ModelConfig c = cfg_of(arch);
        // each target alone too: a q_proj adapter touches only q's rows of the fused product
        const char *sets[] = {all_targets(arch), arch ? "k_proj" : "attn.c_proj",
                              arch ? "up_proj,v_proj" : "mlp.c_proj"};
        for (int k = 0; k < 3; k++) {
            Model m, merged;
            base_make(&m, &c, 0);
            char err[256];
            CHECK(model_init(&merged, &c, BB, TT, 0, 0, err, sizeof err) == 0);
            Lora lo;
            lora_make(&lo, &c, sets[k], 0.0f, 1, m.params.scorew);
            CHECK(lora_attach(&m, &lo, err, sizeof err) == 0);
            Batch bt;
            batch_make(&bt, c.vocab_size);
            float lp[BB * TT], v[BB * TT], lpm[BB * TT], vm[BB * TT];
            outputs(&m, &bt.b, 0, lp, v);
            CHECK(lora_merge_copy(&lo, &m, &merged, err, sizeof err) == 0);
            outputs(&merged, &bt.b, 0, lpm, vm);
            char what[96];
            snprintf(what, sizeof what, "%s [%s] merged log-probs", model_kind_name(&c), sets[k]);
            CHECK_CLOSE(lpm, lp, BB * TT, 2e-5, 2e-5, what);
            CHECK_CLOSE(vm, v, BB * TT, 2e-5, 2e-5, "merged values");
            lora_free(&lo);
            model_free(&m);
            model_free(&merged);
        }
    }
}

// loss = sum w * CE + sum dv * value, as model_backward's dlogp = -w and dvalues = dv
// KV-cache decoding with the adapters attached (unmerged, what sampling uses) gives the logits of
// a merged copy, over more rows than the adapters' scratch holds (lora_apply's chunks), and the
// last position's logits equal the full forward's.
static void test_kv_unmerged_equals_merged(void) {
    enum { KB = 6 };
    for (int arch = 0; arch < 2; arch++) {
        Model m, mc;
        Lora lo;
        Batch bt;
        rig(&m, &lo, &bt, arch, all_targets(arch), 0.0f, 0);
        char err[256];
        CHECK_MSG(model_init(&mc, &m.config, 1, 1, 0, 0, err, sizeof err) == 0, "%s", err);
        CHECK_MSG(lora_merge_copy(&lo, &m, &mc, err, sizeof err) == 0, "%s", err);
        int32_t tok[KB * TT], n[KB];
        for (int b = 0; b < KB; b++) {   // the test batch's rows twice: 2 x 17 rows > max_N 21
            n[b] = bt.len[b % BB];
            memcpy(tok + b * TT, bt.tok + (b % BB) * TT, TT * sizeof(int32_t));
        }
        int V = m.config.vocab_size, rows = 0;
        for (int b = 0; b < KB; b++) rows += n[b];
        CHECK(rows > lo.max_N);
        float *a = malloc((size_t)rows * V * sizeof(float)), *c = malloc((size_t)rows * V * 4);
        Model *ms[2] = {&m, &mc};
        float *outs[2] = {a, c};
        for (int k = 0; k < 2; k++) {
            KVCache kv = {0};
            CHECK_MSG(kv_init(&kv, ms[k], KB, TT, rows, err, sizeof err) == 0, "%s", err);
            CHECK_MSG(kv_forward(ms[k], &kv, tok, n, KB, TT, outs[k], err, sizeof err) == 0, "%s",
                      err);
            kv_free(&kv);
        }
        double worst = 0;
        for (int64_t i = 0; i < (int64_t)rows * V; i++)
            worst = fmax(worst, fabs((double)a[i] - c[i]));
        CHECK_MSG(worst < 1e-4, "arch %d: unmerged vs merged logits differ by %g", arch, worst);
        // and with the adapters detached the cache gives the base, not the adapters
        CHECK(lora_attach(&m, NULL, err, sizeof err) == 0);
        KVCache kv = {0};
        CHECK(kv_init(&kv, &m, KB, TT, rows, err, sizeof err) == 0);
        CHECK(kv_forward(&m, &kv, tok, n, KB, TT, a, err, sizeof err) == 0);
        kv_free(&kv);
        double off = 0;
        for (int64_t i = 0; i < (int64_t)rows * V; i++) off = fmax(off, fabs((double)a[i] - c[i]));
        CHECK_MSG(off > 1e-3, "arch %d: the adapters changed nothing (%g)", arch, off);
        free(a);
        free(c);
        model_free(&mc);
        model_free(&m);
        lora_free(&lo);
    }
}

static double loss_of(Model *m, Batch *bt, int flags) {
    forward_ok(m, &bt->b, flags);
    float val[BB * TT];
    model_get_values(m, val);
    double s = m->loss;
    for (int i = 0; i < BB; i++)
        for (int t = 0; t < bt->len[i]; t++) s += (double)bt->dv[i * TT + t] * val[i * TT + t];
    return s;
}

static void check_fd(Model *m, Lora *lo, Batch *bt, int flags, const char *label) {
    lora_zero_grad(lo);
    uint64_t call0 = lo->dropout_call;
    forward_ok(m, &bt->b, flags);
    model_backward(m, &bt->b, NULL, bt->dv);
    uint64_t call = lo->dropout_call;
    Rng g;
    rng_init(&g, 21);
    int bad = 0, checked = 0;
    for (int k = 0; k < 60; k++) {
        size_t i = (size_t)rng_below(&g, lo->num_params);
        float keep = lo->params[i], h = 3e-3f;
        lo->dropout_call = call0;   // the same masks as the analytic forward
        lo->params[i] = keep + h;
        double up = loss_of(m, bt, flags);
        lo->dropout_call = call0;
        lo->params[i] = keep - h;
        double dn = loss_of(m, bt, flags);
        lo->params[i] = keep;
        double fd = (up - dn) / (2.0 * h), an = lo->grads[i];
        checked++;
        if (fabs(fd - an) > 2e-3 + 2e-2 * fabs(fd)) {
            if (bad++ < 3)
                fprintf(stderr, "%s: param %zu analytic %g, finite differences %g\n", label, i, an,
                        fd);
        }
    }
    lo->dropout_call = call;
    CHECK_MSG(bad == 0, "%s: %d of %d gradients off", label, bad, checked);
}

static void test_gradients(void) {
    for (int arch = 0; arch < 2; arch++)
        for (int drop = 0; drop < 2; drop++) {
            Model m;
            Lora lo;
            Batch bt;
            rig(&m, &lo, &bt, arch, all_targets(arch), drop ? 0.3f : 0.0f, 1);
            CHECK(m.grads_memory == NULL && m.m_memory == NULL);
            char label[96];
            snprintf(label, sizeof label, "%s%s", model_kind_name(&m.config),
                     drop ? " with dropout" : "");
            check_fd(&m, &lo, &bt, drop ? MODEL_DROPOUT : 0, label);
            lora_free(&lo);
            model_free(&m);
        }
}

static void test_dropout_masks(void) {
    Model m;
    Lora lo;
    Batch bt;
    rig(&m, &lo, &bt, MODEL_ARCH_LLAMA, "q_proj", 0.25f, 0);
    float a[BB * TT], b[BB * TT], v[BB * TT], e[BB * TT];
    outputs(&m, &bt.b, 0, e, v);          // evaluation: no dropout
    outputs(&m, &bt.b, MODEL_DROPOUT, a, v);
    CHECK_MSG(memcmp(a, e, sizeof a) != 0, "dropout changed nothing");
    outputs(&m, &bt.b, MODEL_DROPOUT, b, v);
    CHECK_MSG(memcmp(a, b, sizeof a) != 0, "two training forwards drew the same masks");
    outputs(&m, &bt.b, 0, b, v);
    CHECK_MSG(memcmp(e, b, sizeof e) == 0, "evaluation forwards differ");
    // the share of dropped inputs is near p (layer 0's q_proj reads ln1 rows: N x C elements)
    outputs(&m, &bt.b, MODEL_DROPOUT, a, v);
    int64_t n = (int64_t)m.N * m.config.n_embd, zero = 0;
    for (int64_t i = 0; i < n; i++) zero += lo.xd[i] == 0.0f;
    CHECK_MSG(zero > n / 8 && zero < n * 3 / 8, "%lld of %lld inputs dropped at p = 0.25",
              (long long)zero, (long long)n);
    lora_free(&lo);
    model_free(&m);
}

// n AdamW steps with dropout on the adapters of m
static void train_steps(Model *m, Lora *lo, Batch *bt, int64_t first, int n) {
    AdamWConfig ac = {.lr = 1e-2f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.1f, .grad_clip = 1.0f};
    for (int64_t step = first; step < first + n; step++) {
        lora_zero_grad(lo);
        forward_ok(m, &bt->b, MODEL_DROPOUT);
        model_backward(m, &bt->b, NULL, bt->dv);
        lora_adamw_step(lo, &ac, ac.lr, step);
    }
}

static void test_adamw_moves_adapters_only(void) {
    Model m;
    Lora lo;
    Batch bt;
    rig(&m, &lo, &bt, MODEL_ARCH_GPT2, "c_attn,c_proj", 0.1f, 0);
    size_t nb = m.num_params * sizeof(float);
    float *before = malloc(nb);
    memcpy(before, m.params_memory, nb);
    double first = loss_of(&m, &bt, 0);
    train_steps(&m, &lo, &bt, 1, 8);
    double last = loss_of(&m, &bt, 0);
    CHECK_MSG(memcmp(before, m.params_memory, nb) == 0, "the frozen base moved");
    CHECK_MSG(last < first, "8 adapter steps did not lower the loss (%g -> %g)", first, last);
    free(before);
    lora_free(&lo);
    model_free(&m);
}

static void test_exact_resume(void) {
    for (int arch = 0; arch < 2; arch++) {
        ModelConfig c = cfg_of(arch);
        Model m;
        base_make(&m, &c, MODEL_TRAIN_FROZEN);
        Batch bt;
        batch_make(&bt, c.vocab_size);
        Lora straight, first, resumed;
        char err[512], dir[256];
        lora_make(&straight, &c, all_targets(arch), 0.2f, 1, m.params.scorew);
        lora_make(&first, &c, all_targets(arch), 0.2f, 1, m.params.scorew);
        CHECK(lora_attach(&m, &straight, err, sizeof err) == 0);
        train_steps(&m, &straight, &bt, 1, 5);
        CHECK(lora_attach(&m, &first, err, sizeof err) == 0);
        train_steps(&m, &first, &bt, 1, 3);
        CHECK(test_scratch_dir(dir, sizeof dir, "lora_resume") == 0);
        CkptTrainerState st = {.step = 3};
        CHECK_MSG(peft_save(&first, dir, "tiny", 1, err, sizeof err) == 0 &&
                      peft_save_moments(&first, dir, err, sizeof err) == 0 &&
                      peft_state_put(&first, &st, err, sizeof err) == 0,
                  "%s", err);
        lora_free(&first);   // as a killed run: nothing but the files and the trainer state
        CHECK_MSG(peft_load(&resumed, dir, &c, BB * TT, 1, err, sizeof err) == 0 &&
                      peft_load_moments(&resumed, dir, err, sizeof err) == 0 &&
                      peft_state_get(&resumed, &st, err, sizeof err) == 0,
                  "%s", err);
        CHECK(lora_attach(&m, &resumed, err, sizeof err) == 0);
        train_steps(&m, &resumed, &bt, st.step + 1, 2);
        CHECK_MSG(memcmp(straight.params, resumed.params, straight.num_params * 4) == 0 &&
                      memcmp(straight.m, resumed.m, straight.num_params * 4) == 0 &&
                      memcmp(straight.v, resumed.v, straight.num_params * 4) == 0,
                  "%s: 3 steps + resume + 2 are not 5 steps bit for bit", model_kind_name(&c));
        lora_free(&straight);
        lora_free(&resumed);
        model_free(&m);
        test_rm_rf(dir);
    }
}

static void test_bad_inputs(void) {
    ModelConfig g = cfg_of(MODEL_ARCH_GPT2), l = cfg_of(MODEL_ARCH_LLAMA);
    LoraConfig lc = {.r = 4, .alpha = 8.0f};
    char err[256];
    CHECK(lora_parse_targets(&lc, "q_proj", err, sizeof err) == 0);
    CHECK_ERR(lora_validate(&lc, &g, err, sizeof err), err, "'q_proj' is no linear layer",
              "c_attn");
    CHECK(lora_parse_targets(&lc, "c_attn", err, sizeof err) == 0);
    CHECK_ERR(lora_validate(&lc, &l, err, sizeof err), err, "'c_attn'", "q_proj");
    CHECK_ERR(lora_parse_targets(&lc, " , ", err, sizeof err), err, "target_modules is empty",
              NULL);
    CHECK(lora_parse_targets(&lc, "c_attn", err, sizeof err) == 0);
    lc.r = 0;
    CHECK_ERR(lora_validate(&lc, &g, err, sizeof err), err, "lora r must be", "got 0");
    lc.r = 4; lc.alpha = 0.0f;
    CHECK_ERR(lora_validate(&lc, &g, err, sizeof err), err, "lora_alpha", NULL);
    lc.alpha = 8.0f; lc.dropout = 1.0f;
    CHECK_ERR(lora_validate(&lc, &g, err, sizeof err), err, "lora_dropout", NULL);
    lc.dropout = 0.0f;
    // Qwen3's per-head q/k norms: a Llama-style name, only on a base that has them
    CHECK_ERR(lora_add_module(&lc, MODEL_ARCH_GPT2, "q_norm", err, sizeof err), err,
              "'q_norm' is not supported", "ln_f)");
    LoraConfig lq = lc;
    CHECK(lora_parse_targets(&lq, "q_proj", err, sizeof err) == 0);
    CHECK(lora_add_module(&lq, MODEL_ARCH_LLAMA, "k_norm", err, sizeof err) == 0);
    CHECK_ERR(lora_validate(&lq, &l, err, sizeof err), err, "modules_to_save k_norm",
              "no per-head q/k norms");
    ModelConfig q3 = qwen3_cfg();
    CHECK_MSG(lora_validate(&lq, &q3, err, sizeof err) == 0, "%s", err);
    Lora lo;
    CHECK(lora_init(&lo, &lc, &g, BB * TT, 1, err, sizeof err) == 0);
    Model m;
    ModelConfig wider = g;
    wider.n_embd = 16;
    base_make(&m, &wider, MODEL_TRAIN_FROZEN);
    CHECK_ERR(lora_attach(&m, &lo, err, sizeof err), err, "another base shape", "C=16");
    model_free(&m);
    lora_free(&lo);
}

// Biases trained beside the adapters (PEFT's bias "all" / "lora_only"), and norms (PEFT's
// modules_to_save: weight, and GPT-2's bias; Qwen3's per-head q_norm and k_norm): the model
// reads them with the adapters on and the base's own with them off (bit for bit, before and
// after); their gradients match finite differences; a merged copy gives the adapters' outputs;
// PEFT's files carry them under the base's names and read back equal; "lora_only" picks the
// adapted layers'.
static void test_trained_biases(void) {
    for (int run = 0; run < 5; run++) {
        // runs 0, 1: bias all; 2, 3: the norms through modules_to_save, bias none; 4: a
        // Qwen3-style base's every norm, its per-head q_norm and k_norm included
        int arch = run == 4 ? 1 : run & 1,
            norms = run >= 2 ? LORA_NORM_1 | LORA_NORM_2 | LORA_NORM_F : 0;
        ModelConfig c = run == 4 ? qwen3_cfg() : cfg_of(arch);
        if (run == 4) norms |= LORA_NORM_Q | LORA_NORM_K;
        Model m, merged;
        Lora lo;
        Batch bt;
        char err[256];
        base_make(&m, &c, MODEL_TRAIN_FROZEN);
        CHECK(model_init(&merged, &c, BB, TT, 0, 0, err, sizeof err) == 0);
        lora_make_bias(&lo, &c, all_targets(arch), 0.0f, 1, m.params.scorew,
                       norms ? LORA_BIAS_NONE : LORA_BIAS_ALL, norms);
        CHECK_MSG(lo.nbias == (run == 4 ? 5 : norms ? (arch ? 3 : 6) : arch ? 3 : 7),
                  "%d trained vector kinds", lo.nbias);
        batch_make(&bt, c.vocab_size);
        float base_lp[BB * TT], base_v[BB * TT], lp[BB * TT], v[BB * TT], lp2[BB * TT];
        outputs(&m, &bt.b, 0, base_lp, base_v);
        size_t nb = m.num_params * sizeof(float);
        float *before = malloc(nb);
        memcpy(before, m.params_memory, nb);
        CHECK(lora_attach(&m, &lo, err, sizeof err) == 0);
        outputs(&m, &bt.b, 0, lp, v);
        CHECK_MSG(memcmp(lp, base_lp, sizeof lp) != 0, "trained biases changed nothing");
        outputs(&m, &bt.b, MODEL_NO_LORA, lp2, v);
        CHECK_MSG(memcmp(lp2, base_lp, sizeof lp2) == 0 && memcmp(v, base_v, sizeof v) == 0,
                  "%s: adapters off is not the base with trained biases", model_kind_name(&c));
        outputs(&m, &bt.b, 0, lp2, v);
        CHECK_MSG(memcmp(lp2, lp, sizeof lp) == 0, "the trained biases did not come back");
        CHECK(lora_merge_copy(&lo, &m, &merged, err, sizeof err) == 0);
        float lpm[BB * TT], vm[BB * TT];
        outputs(&merged, &bt.b, 0, lpm, vm);
        CHECK_CLOSE(lpm, lp, BB * TT, 2e-5, 2e-5, "merged log-probs with trained biases");
        CHECK_CLOSE(vm, v, BB * TT, 2e-5, 2e-5, "merged values with trained biases");
        // finite differences on the bias values (check_fd samples all parameters; these are
        // only a share of them, so each bias kind's first value is checked by name as well)
        check_fd(&m, &lo, &bt, 0, arch ? "llama-style biases / norms" : "gpt2 biases / norms");
        lora_zero_grad(&lo);
        forward_ok(&m, &bt.b, 0);
        model_backward(&m, &bt.b, NULL, bt.dv);
        for (int k = 0; k < lo.nbias; k++) {
            float *pv = lora_bias_values(&lo, k, 0), keep = pv[0], h = 3e-3f;
            double an = lora_bias_values(&lo, k, 1)[0];
            pv[0] = keep + h;
            double up = loss_of(&m, &bt, 0);
            pv[0] = keep - h;
            double dn = loss_of(&m, &bt, 0);
            pv[0] = keep;
            double fd = (up - dn) / (2.0 * h);
            CHECK_MSG(fabs(fd - an) <= 2e-3 + 2e-2 * fabs(fd), "%s: d/d %s[0] %g, fd %g",
                      model_kind_name(&c), lo.bias[k].name, an, fd);
        }
        outputs(&m, &bt.b, MODEL_NO_LORA, lp2, v);   // the base's own bias values are back
        CHECK_MSG(memcmp(m.params_memory, before, nb) == 0, "the base's biases were not restored");
        // PEFT's files: the biases under the base's names, read back equal
        char dir[] = "/tmp/lora_bias_XXXXXX";
        CHECK(mkdtemp(dir) != NULL);
        CHECK_MSG(peft_save(&lo, dir, "tiny", 0, err, sizeof err) == 0, "%s", err);
        char path[512];
        snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
        StFile f;
        CHECK_MSG(st_open(&f, path, err, sizeof err) == 0, "%s", err);
        const char *want = run == 4 ? "base_model.model.model.layers.1.self_attn.k_norm.weight"
                           : norms ? (arch ? "base_model.model.model.norm.weight"
                                         : "base_model.model.transformer.h.1.ln_2.weight")
                           : arch ? "base_model.model.model.layers.1.self_attn.k_proj.bias"
                                  : "base_model.model.transformer.ln_f.bias";
        CHECK_MSG(st_find(&f, want) != NULL, "no tensor %s", want);
        st_close(&f);
        Lora back;
        CHECK_MSG(peft_load(&back, dir, &c, BB * TT, 0, err, sizeof err) == 0, "%s", err);
        CHECK(back.cfg.bias == lo.cfg.bias && back.cfg.norms == norms &&
              back.num_params == lo.num_params &&
              memcmp(back.params, lo.params, lo.num_params * sizeof(float)) == 0);
        lora_free(&back);
        snprintf(path, sizeof path, "rm -rf %s", dir);
        CHECK(system(path) == 0);
        // lora_only: the adapted layers' biases (GPT-2 c_attn; Llama q_proj: q's slice only;
        // Qwen3's block has none)
        Lora only;
        lora_make_bias(&only, &c, arch ? "q_proj" : "c_attn", 0.0f, 0, NULL,
                       LORA_BIAS_LORA_ONLY, 0);
        CHECK_MSG(run == 4 ? only.nbias == 0
                           : only.nbias == 1 &&
                                 !strcmp(only.bias[0].name, arch ? "self_attn.q_proj.bias"
                                                                 : "attn.c_attn.bias") &&
                                 only.bias[0].n == (arch ? c.n_embd : 3 * c.n_embd),
                  "lora_only picked %d biases", only.nbias);
        lora_free(&only);
        free(before);
        lora_free(&lo);
        model_free(&m);
        model_free(&merged);
    }
}

// The largest |a - b| over the largest |a| (1 when a is all zero).
static double rel_diff(const float *a, const float *b, size_t n) {
    double d = 0.0, s = 0.0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        s = fmax(s, fabs((double)a[i]));
    }
    return d / (s > 0.0 ? s : 1.0);
}

// logits of every row, values, and the adapters' gradients of one forward and backward
static void narrow_outputs(Model *m, Lora *lo, Batch *bt, float *logits, float *val,
                           float *grads) {
    lora_zero_grad(lo);
    forward_ok(m, &bt->b, MODEL_LOGITS_ALL);
    size_t V = (size_t)m->config.vocab_size;
    memcpy(logits, m->logits, (size_t)m->M * V * sizeof(float));
    model_get_values(m, val);
    model_backward(m, &bt->b, NULL, bt->dv);
    memcpy(grads, lo->grads, lo->num_params * sizeof(float));
}

// w's rows (rows x C) through fmt and back, as a tied head's copy reads them
static void round_rows(float *w, int rows, int C, LowpFormat fmt) {
    LowpMatrix q;
    char err[256];
    CHECK_MSG(lowp_matrix_init(&q, fmt, w, LOWP_OUT_IN, C, rows, err, sizeof err) == 0, "%s",
              err);
    for (int r = 0; r < rows; r++) lowp_matrix_row(w + (size_t)r * C, &q, r);
    lowp_matrix_free(&q);
}

// dst's fp32 matrices := nar's narrow copies widened back (in the block kind's layout)
static void widen_into(Model *dst, const Model *nar) {
    const int slots[MODEL_NUM_W] = {P_QKVW, P_ATTPROJW, P_FCW, P_FCPROJW};
    int L = dst->config.n_layer, gpt2 = dst->config.arch == MODEL_ARCH_GPT2;
    for (int w = 0; w < MODEL_NUM_W; w++) {
        size_t n;
        float *s = model_slot(dst, slots[w], &n);
        for (int l = 0; l < L; l++) {
            const LowpMatrix *lm = model_lowp_matrix(nar, l, w);
            float *d = s + (size_t)l * (n / (size_t)L), *row = malloc((size_t)lm->C * 4);
            for (int r = 0; r < lm->OC; r++) {
                lowp_matrix_row(row, lm, r);
                for (int c = 0; c < lm->C; c++)   // GPT-2's Conv1D: [in, out]
                    d[gpt2 ? (size_t)c * lm->OC + r : (size_t)r * lm->C + c] = row[c];
            }
            free(row);
        }
    }
}

// A frozen base stored in fmt (lora.base_dtype: its matrices in bf16 or int8 for every forward
// and backward, their fp32 freed) is the model whose matrices are its narrow weights widened:
// logits, values and the adapters' gradients (through dX = dY W on those weights, fp32
// activations) agree to sgemm's reassociation (1e-5 of the largest); and 5 adapter steps on it
// stay within loss_tol (relative loss) and w_tol (adapter weights, of the largest) of the same
// steps on the fp32 base.
static void narrow_base_case(LowpFormat fmt, double loss_tol, double w_tol) {
    const char *f = lowp_format_name(fmt);
    for (int arch = 0; arch < 2; arch++) {
        ModelConfig c = cfg_of(arch);
        Model full, nar, rounded;
        Lora lf, ln, lr;
        Batch bt;
        base_make(&full, &c, MODEL_TRAIN_FROZEN);
        // tied embeddings: the lookup reads fp32 and the head its copy; rounded here, one value
        round_rows(full.params.wte, c.vocab_size, c.n_embd, fmt);
        base_make(&nar, &c, MODEL_TRAIN_FROZEN);
        base_make(&rounded, &c, MODEL_TRAIN_FROZEN);
        memcpy(nar.params_memory, full.params_memory, full.num_params * sizeof(float));
        memcpy(rounded.params_memory, full.params_memory, full.num_params * sizeof(float));
        size_t fp32_params = nar.num_params;
        char err[256];
        CHECK_MSG(model_lowp_attach(&nar, fmt, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, err,
                                    sizeof err) == 0, "%s", err);
        CHECK_MSG(nar.num_params < fp32_params && model_lowp_format(&nar) == fmt,
                  "the %s base kept its fp32 matrices (%zu of %zu floats)", f, nar.num_params,
                  fp32_params);
        widen_into(&rounded, &nar);
        Lora *los[3] = {&lf, &ln, &lr};
        Model *ms[3] = {&full, &nar, &rounded};
        for (int i = 0; i < 3; i++) {
            lora_make_bias(los[i], &c, all_targets(arch), 0.0f, 1, ms[i]->params.scorew,
                           LORA_BIAS_ALL, 0);   // the biases' gradients through the narrow path
            CHECK_MSG(lora_attach(ms[i], los[i], err, sizeof err) == 0, "%s", err);
        }
        batch_make(&bt, c.vocab_size);
        size_t nl = (size_t)BB * TT * c.vocab_size, np = ln.num_params;
        float *lg[2], val[2][BB * TT], *gr[2];
        for (int i = 0; i < 2; i++) {
            lg[i] = calloc(nl, sizeof(float));
            gr[i] = calloc(np, sizeof(float));
            narrow_outputs(i ? &rounded : &nar, i ? &lr : &ln, &bt, lg[i], val[i], gr[i]);
        }
        size_t M = (size_t)nar.M * c.vocab_size;
        double dl = rel_diff(lg[1], lg[0], M), dv = rel_diff(val[1], val[0], BB * TT),
               dg = rel_diff(gr[1], gr[0], np);
        printf("%s: %s base vs fp32 on its widened matrices: logits %.2g, values %.2g, adapter "
               "gradients %.2g (relative to the largest)\n", model_kind_name(&c), f, dl, dv, dg);
        CHECK_MSG(dl <= 1e-5 && dv <= 1e-5 && dg <= 1e-5, "%s %s: logits %g values %g grads %g",
                  model_kind_name(&c), f, dl, dv, dg);
        // training: 5 steps on the narrow base against 5 on the fp32 one, same adapters
        train_steps(&nar, &ln, &bt, 1, 5);
        train_steps(&full, &lf, &bt, 1, 5);
        double a = loss_of(&nar, &bt, 0), b = loss_of(&full, &bt, 0);
        double dp = rel_diff(lf.params, ln.params, np);
        printf("%s: 5 adapter steps, %s base vs fp32 base: loss %.6g vs %.6g (%.2g relative), "
               "adapters %.2g\n", model_kind_name(&c), f, a, b, fabs(a - b) / fabs(b), dp);
        CHECK_MSG(fabs(a - b) <= fabs(b) * loss_tol && dp <= w_tol,
                  "%s: %s base strays: loss %g vs %g, adapters %g", model_kind_name(&c), f, a, b,
                  dp);
        CHECK_MSG(a != b, "the %s base gave the fp32 base's loss: were its weights rounded?", f);
        for (int i = 0; i < 2; i++) { free(lg[i]); free(gr[i]); }
        for (int i = 0; i < 3; i++) { lora_free(los[i]); model_free(ms[i]); }
    }
}

// bf16 (relative 2^-8 a weight): the loss within 2^-8, the adapters within 2^-5
static void test_bf16_base(void) { narrow_base_case(LOWP_BF16, 1.0 / 256, 1.0 / 32); }
// int8 (one scale per output channel): the loss within 2^-8, the adapters within 2^-4
static void test_int8_base(void) { narrow_base_case(LOWP_INT8, 1.0 / 256, 1.0 / 16); }

// The memory plan of a GPT-2 124M shape (B=8, T=256): every weight trained vs a frozen base
// with r=16 adapters on c_attn, c_proj and c_fc (the figure the README quotes).
static void test_memory_plan(void) {
    ModelConfig c = {.max_seq_len = 1024, .vocab_size = 50257, .n_layer = 12, .n_head = 12,
                     .n_embd = 768, .ln_eps = 1e-5f, .lm_head = 1};
    LoraConfig lc = {.r = 16, .alpha = 32.0f};
    char err[256];
    CHECK(lora_parse_targets(&lc, "c_attn,c_proj,c_fc", err, sizeof err) == 0);
    int Bm = 8, Tm = 256;
    size_t full = model_memory_bytes(&c, Bm, Tm, 1);
    size_t frozen = model_memory_bytes(&c, Bm, Tm, MODEL_TRAIN_FROZEN);
    size_t ad = lora_memory_bytes(&lc, &c, (int64_t)Bm * Tm, 1);
    size_t np = lora_param_count(&lc, &c);
    printf("memory (GPT-2 124M shape, B=%d T=%d): full fine-tuning %.1f MiB; frozen base %.1f "
           "MiB + LoRA r=16 (%zu parameters) %.1f MiB = %.1f MiB (%.2fx)\n",
           Bm, Tm, full / 1048576.0, frozen / 1048576.0, np, ad / 1048576.0,
           (frozen + ad) / 1048576.0, (double)(frozen + ad) / (double)full);
    // weights 124M x 4 bytes x (params, grads, m, v) vs x 1: the base's three copies are gone
    CHECK(frozen + ad < full);
    CHECK(full - frozen == 3 * sizeof(float) * (size_t)124439808);
    CHECK(np == 12 * 16 * ((768 + 2304) + (768 + 768) + (768 + 3072) + (3072 + 768)));
}

static void test_peft_round_trip(void) {
    for (int arch = 0; arch < 2; arch++) {
        ModelConfig c = cfg_of(arch);
        Model m;
        base_make(&m, &c, MODEL_TRAIN_FROZEN);
        Lora lo, back;
        lora_make(&lo, &c, arch ? "q_proj,v_proj,down_proj" : "c_attn,c_proj", 0.1f, 1,
                  m.params.scorew);
        char dir[256], err[512], path[512];
        CHECK(test_scratch_dir(dir, sizeof dir, "lora") == 0);
        CHECK_MSG(peft_save(&lo, dir, "tiny-base", 1, err, sizeof err) == 0, "%s", err);
        CHECK_MSG(peft_load(&back, dir, &c, BB * TT, 1, err, sizeof err) == 0, "%s", err);
        CHECK(back.num_params == lo.num_params && back.cfg.r == lo.cfg.r &&
              back.cfg.alpha == lo.cfg.alpha && back.cfg.train_score);
        CHECK(memcmp(back.params, lo.params, lo.num_params * sizeof(float)) == 0);
        lora_free(&back);
        snprintf(path, sizeof path, "%s/%s", dir, PEFT_CONFIG);
        char *js = test_read_file(path, NULL);
        cJSON *cj = js ? cJSON_Parse(js) : NULL;
        CHECK(cj != NULL);
        if (cj) {
            const cJSON *pt = cJSON_GetObjectItem(cj, "peft_type"),
                        *tt = cJSON_GetObjectItem(cj, "task_type"),
                        *ff = cJSON_GetObjectItem(cj, "fan_in_fan_out"),
                        *dr = cJSON_GetObjectItem(cj, "lora_dropout");
            CHECK(cJSON_IsString(pt) && !strcmp(pt->valuestring, "LORA"));
            CHECK(cJSON_IsString(tt) && !strcmp(tt->valuestring, "SEQ_CLS"));
            CHECK(cJSON_IsBool(ff) && cJSON_IsTrue(ff) == !arch);
            CHECK(cJSON_IsNumber(dr) && dr->valuedouble == 0.1);
        }
        cJSON_Delete(cj);
        free(js);
        StFile f;
        snprintf(path, sizeof path, "%s/%s", dir, PEFT_WEIGHTS);
        CHECK_MSG(st_open(&f, path, err, sizeof err) == 0, "%s", err);
        const char *want = arch ? "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"
                                : "base_model.model.transformer.h.1.attn.c_attn.lora_B.weight";
        StEntry *e = st_find(&f, want);
        CHECK_MSG(e != NULL, "%s lacks %s", path, want);
        if (e)
            CHECK(e->shape[0] == (arch ? 3 : 3 * c.n_embd) && e->shape[1] == (arch ? c.n_embd : 3));
        CHECK(st_find(&f, "base_model.model.score.weight") != NULL);
        st_close(&f);
        // an adapter for another base: the shapes say so
        ModelConfig other = c;
        other.n_layer = 1;
        CHECK_ERR(peft_load(&back, dir, &other, BB * TT, 1, err, sizeof err), err,
                  "is no adapter of this base", NULL);
        other = c;
        other.n_embd = arch ? 24 : 16;
        CHECK_ERR(peft_load(&back, dir, &other, BB * TT, 1, err, sizeof err), err,
                  "another base shape", NULL);
        ModelConfig noscore = c;
        noscore.score_head = 0;
        CHECK_ERR(peft_load(&back, dir, &noscore, BB * TT, 1, err, sizeof err), err,
                  "no score head", NULL);
        lora_free(&back);
        lora_free(&lo);
        model_free(&m);
        test_rm_rf(dir);
    }
}

// --export DIR ARCH: the files tests/ref/lora_ref.py checks: DIR/base.safetensors (the base's
// HF tensors; DIR/base the same as a checkpoint), DIR/config.txt, DIR/adapter/ (PEFT files),
// DIR/out.safetensors (the batch, our logits with the adapters and the gradients of every A and B
// for sum w * CE).
static int export_case(const char *dir, int arch) {
    int q3 = arch == 2;   // 2: a Qwen3-style base, its q_norm and k_norm trained too
    ModelConfig c = q3 ? qwen3_cfg() : cfg_of(arch);
    arch = c.arch;
    Model m;
    base_make(&m, &c, MODEL_TRAIN_FROZEN);
    Lora lo;
    lora_make_bias(&lo, &c, all_targets(arch), 0.0f, 0, NULL, LORA_BIAS_ALL,
                   LORA_NORM_1 | LORA_NORM_2 | LORA_NORM_F |
                       (q3 ? LORA_NORM_Q | LORA_NORM_K : 0));
    char err[512], path[512];
    if (lora_attach(&m, &lo, err, sizeof err)) goto fail;
    snprintf(path, sizeof path, "%s/adapter", dir);
    if (peft_save(&lo, path, "tiny", 0, err, sizeof err)) goto fail;
    int nt = model_tensor_count(&m);
    StOut *o = calloc((size_t)nt + 8 + (2 * (size_t)lo.nsite + lo.nbias) * c.n_layer, sizeof *o);
    for (int i = 0; i < nt; i++) {
        ModelTensor t;
        model_tensor(&m, i, &t);
        snprintf(o[i].name, sizeof o[i].name, "%s", t.name);
        o[i].ndim = t.ndim; o[i].shape[0] = t.shape[0]; o[i].shape[1] = t.shape[1];
        o[i].data = t.data;
    }
    snprintf(path, sizeof path, "%s/base.safetensors", dir);
    if (st_write(path, o, nt, 0, err, sizeof err)) goto fail;
    snprintf(path, sizeof path, "%s/base", dir);   // the same as a checkpoint, for rlhf merge
    if (ckpt_save(path, &m, NULL, err, sizeof err)) goto fail;
    Batch bt;
    batch_make(&bt, c.vocab_size);
    static float ftok[BB * TT], ftgt[BB * TT], flen[BB], logits[BB * TT * 64];
    for (int i = 0; i < BB * TT; i++) {
        if (i % TT >= bt.len[i / TT]) bt.tgt[i] = -1;
        ftok[i] = (float)bt.tok[i];
        ftgt[i] = (float)bt.tgt[i];
    }
    for (int i = 0; i < BB; i++) flen[i] = (float)bt.len[i];
    lora_zero_grad(&lo);
    if (model_forward(&m, &bt.b, MODEL_LOGITS_ALL, err, sizeof err)) goto fail;
    for (int b = 0; b < BB; b++)
        for (int t = 0; t < bt.len[b]; t++)
            memcpy(logits + (size_t)(b * TT + t) * c.vocab_size, model_logits_at(&m, b, t),
                   (size_t)c.vocab_size * sizeof(float));
    // the loss's gradient: a forward with targets (logits only where a loss is)
    if (model_forward(&m, &bt.b, 0, err, sizeof err)) goto fail;
    model_backward(&m, &bt.b, NULL, NULL);
    int n = 0;
    StOut *x = o;
#define OUT2(nm, d0, d1, ptr) \
    snprintf(x[n].name, sizeof x[n].name, "%s", nm); x[n].ndim = 2; x[n].shape[0] = d0; \
    x[n].shape[1] = d1; x[n].data = ptr; n++
    OUT2("tokens", BB, TT, ftok);
    OUT2("targets", BB, TT, ftgt);
    OUT2("weights", BB, TT, bt.w);
    OUT2("lengths", 1, BB, flen);
    OUT2("logits", BB * TT, c.vocab_size, logits);
    for (int l = 0; l < c.n_layer; l++)
        for (int s = 0; s < lo.nsite; s++)
            for (int w = 0; w < 2; w++) {
                char nm[96];
                snprintf(nm, sizeof nm, "grad.%d.%s.lora_%c", l, lo.site[s].name, w ? 'B' : 'A');
                OUT2(nm, w ? lo.site[s].out : lo.cfg.r, w ? lo.cfg.r : lo.site[s].in,
                     w ? lora_b(&lo, l, s, 1) : lora_a(&lo, l, s, 1));
            }
    for (int k = 0; k < lo.nbias; k++)   // the trained biases' gradients, a layer a row
        for (int l = 0; l < (lo.bias[k].layered ? c.n_layer : 1); l++) {
            char nm[96];
            if (lo.bias[k].layered) snprintf(nm, sizeof nm, "grad.%d.%s", l, lo.bias[k].name);
            else snprintf(nm, sizeof nm, "grad.%s", lo.bias[k].name);
            OUT2(nm, 1, lo.bias[k].n, lora_bias_values(&lo, k, 1) + (size_t)l * lo.bias[k].n);
        }
#undef OUT2
    snprintf(path, sizeof path, "%s/out.safetensors", dir);
    if (st_write(path, o, n, 0, err, sizeof err)) goto fail;
    free(o);
    snprintf(path, sizeof path, "%s/config.txt", dir);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "arch %d\nV %d\nC %d\nL %d\nNH %d\nKVH %d\nF %d\nmax_seq_len %d\nqkv_bias %d\n"
            "qk_norm %d\n", arch, c.vocab_size, c.n_embd, c.n_layer, c.n_head, model_kv_heads(&c),
            model_ff(&c), c.max_seq_len, c.qkv_bias, c.qk_norm);
    fclose(f);
    lora_free(&lo);
    model_free(&m);
    return 0;
fail:
    fprintf(stderr, "export: %s\n", err);
    return 1;
}

int main(int argc, char **argv) {
    if (argc == 4 && !strcmp(argv[1], "--export")) return export_case(argv[2], atoi(argv[3]));
    test_case("lora: a zero B and adapters off are the base bit for bit (GPT-2, Llama)",
              test_zero_b_and_off_are_base);
    test_case("lora: merged weights equal the adapters (every target, fused q|k|v and gate|up)",
              test_merge_equals_adapters);
    test_case("lora: KV-cache decoding with unmerged adapters = a merged copy (chunked rows)",
              test_kv_unmerged_equals_merged);
    test_case("lora: gradients of A, B and the score copy vs finite differences, frozen base",
              test_gradients);
    test_case("lora: dropout masks differ per training forward, none in evaluation",
              test_dropout_masks);
    test_case("lora: AdamW moves only the adapters", test_adamw_moves_adapters_only);
    test_case("lora: bad configurations are one-line errors", test_bad_inputs);
    test_case("lora: 3 steps, save, load, 2 steps = 5 steps bit for bit (dropout, moments)",
              test_exact_resume);
    test_case("lora: trained biases (all, lora_only) and norms (Qwen3 q_norm, k_norm too): on "
              "with the adapters, off without, gradients, merge, PEFT names", test_trained_biases);
    test_case("lora: a bf16 base = fp32 on bf16-rounded matrices; training stays near fp32's",
              test_bf16_base);
    test_case("lora: an int8 base = fp32 on its dequantised matrices; training stays near fp32's",
              test_int8_base);
    test_case("lora: memory plan of a GPT-2 124M shape, full vs r=16", test_memory_plan);
    test_case("lora: PEFT files written and read back; another base's adapter is an error",
              test_peft_round_trip);
    return test_summary();
}
