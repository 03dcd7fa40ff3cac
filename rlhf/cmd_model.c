// rlhf init | info | eval | generate: bring a model in, look at it, use it.
#include "blas.h"
#include "lowp.h"
#include "chat.h"
#include "adapter.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "fileio.h"
#include "generate.h"
#include "model.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...) do { fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

// The shapes `rlhf init --preset` makes. vocab_size 0: the tokenizer's (else GPT-2's 50257);
// the Llama family's real shapes carry their own vocabulary.
typedef struct {
    const char *name;
    ModelConfig c;
} Preset;
#define GPT2_PRESET(nm, L, NH, C, ctx)                                                             \
    {nm, {.arch = MODEL_ARCH_GPT2, .family = MODEL_FAMILY_GPT2, .max_seq_len = ctx, .n_layer = L, \
          .n_head = NH, .n_embd = C, .ln_eps = 1e-5f}}
static const Preset presets[] = {
    GPT2_PRESET("tiny", 2, 2, 64, 256),
    GPT2_PRESET("small", 4, 4, 256, 256),
    GPT2_PRESET("gpt2", 12, 12, 768, 1024),
    GPT2_PRESET("gpt2-medium", 24, 16, 1024, 1024),
    {"llama-tiny", {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA, .max_seq_len = 256,
                    .n_layer = 2, .n_head = 4, .n_embd = 64, .ln_eps = 1e-5f, .n_kv_head = 2,
                    .head_dim = 16, .d_ff = 96, .rope_theta = 10000.0f}},
    {"smollm2-135m", {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_LLAMA,
                      .max_seq_len = 2048, .vocab_size = 49152, .n_layer = 30, .n_head = 9,
                      .n_embd = 576, .ln_eps = 1e-5f, .n_kv_head = 3, .head_dim = 64,
                      .d_ff = 1536, .rope_theta = 100000.0f}},
    {"qwen2.5-0.5b", {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_QWEN2,
                      .max_seq_len = 32768, .vocab_size = 151936, .n_layer = 24, .n_head = 14,
                      .n_embd = 896, .ln_eps = 1e-6f, .n_kv_head = 2, .head_dim = 64,
                      .d_ff = 4864, .rope_theta = 1e6f, .qkv_bias = 1}},
    {"qwen3-0.6b", {.arch = MODEL_ARCH_LLAMA, .family = MODEL_FAMILY_QWEN3, .max_seq_len = 40960,
                    .vocab_size = 151936, .n_layer = 28, .n_head = 16, .n_embd = 1024,
                    .ln_eps = 1e-6f, .n_kv_head = 8, .head_dim = 128, .d_ff = 3072,
                    .rope_theta = 1e6f, .qk_norm = 1}},
};
#undef GPT2_PRESET

static const char *init_usage =
    "usage: rlhf init --preset NAME --out DIR [options]\n"
    "  --tokenizer DIR     copy DIR's tokenizer (tokenizer.json and its config files, or\n"
    "                      vocab.json + merges.txt; sets the vocabulary size of the presets\n"
    "                      that have none)\n"
    "  --vocab-size N      vocabulary size (default: the preset's, else the tokenizer's, else\n"
    "                      50257)\n"
    "  --n-layer N --n-head N --n-embd N --n-positions N   override the preset\n"
    "  Llama-family presets only:\n"
    "  --n-kv-head N       key/value heads (grouped-query attention; 1 = multi-query)\n"
    "  --head-dim N        width of one head (default n_embd / n_head when --n-embd or\n"
    "                      --n-head is given, else the preset's)\n"
    "  --d-ff N            SwiGLU MLP width (intermediate_size)\n"
    "  --rope-theta X      RoPE base\n"
    "  --untied            a separate LM head (lm_head.weight) instead of the tied embeddings\n"
    "  --qkv-bias          biases on the q/k/v projections (written as a Qwen2 model)\n"
    "  --qk-norm           per-head RMSNorm of q and k (written as a Qwen3 model)\n"
    "  --score-head        add the scalar head score.weight (reward / value model)\n"
    "  --no-lm-head        reward / value model without the LM head (needs --score-head)\n"
    "  --seed S            initialisation seed (default 1234)\n"
    "GPT-2 presets (learned positions, LayerNorm, GELU, tied):\n"
    "  tiny L2 H2 C64 ctx256 | small L4 H4 C256 ctx256 | gpt2 L12 H12 C768 ctx1024 |\n"
    "  gpt2-medium L24 H16 C1024 ctx1024\n"
    "Llama-family presets (RoPE, RMSNorm, SwiGLU, grouped-query attention, tied):\n"
    "  llama-tiny    L2 H4 KV2 hd16 C64 F96 ctx256, theta 1e4, the tokenizer's vocabulary\n"
    "  smollm2-135m  L30 H9 KV3 hd64 C576 F1536 ctx2048 V49152, theta 1e5 (Llama)\n"
    "  qwen2.5-0.5b  L24 H14 KV2 hd64 C896 F4864 ctx32768 V151936, theta 1e6, q/k/v biases\n"
    "  qwen3-0.6b    L28 H16 KV8 hd128 C1024 F3072 ctx40960 V151936, theta 1e6, q/k norms\n";

// What `rlhf init` was asked beyond the preset (0: not given).
typedef struct {
    int64_t vocab, L, NH, C, ctx, kvh, hd, ff;
    double theta;
    int untied, qkv_bias, qk_norm;
} InitOverrides;

static const Preset *init_find_preset(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

// The preset's config with the overrides applied; vocab is the size chosen (tokenizer included).
// Returns 0, or -1 with a message naming the option that does not apply.
static int init_config(const Preset *p, const InitOverrides *o, int64_t vocab, ModelConfig *c,
                       char *err, size_t errlen) {
    *c = p->c;
    if (c->arch == MODEL_ARCH_GPT2) {
        const char *llama_only = o->kvh     ? "--n-kv-head"
                                 : o->hd    ? "--head-dim"
                                 : o->ff    ? "--d-ff"
                                 : o->theta ? "--rope-theta"
                                 : o->untied ? "--untied"
                                 : o->qkv_bias ? "--qkv-bias"
                                 : o->qk_norm  ? "--qk-norm"
                                               : NULL;
        if (llama_only)
            return util_err(err, errlen, "%s applies to the Llama-family presets (llama-tiny, "
                            "smollm2-135m, qwen2.5-0.5b, qwen3-0.6b), not to GPT-2's %s",
                            llama_only, p->name);
    }
    c->vocab_size = (int)vocab;
    if (o->L) c->n_layer = (int)o->L;
    if (o->NH) c->n_head = (int)o->NH;
    if (o->C) c->n_embd = (int)o->C;
    if (o->ctx) c->max_seq_len = (int)o->ctx;
    if (c->arch == MODEL_ARCH_LLAMA) {
        // a new width or head count makes the preset's head_dim meaningless: C / NH unless given
        if (o->NH || o->C) c->head_dim = 0;
        if (o->hd) c->head_dim = (int)o->hd;
        if (o->kvh) c->n_kv_head = (int)o->kvh;
        if (o->ff) c->d_ff = (int)o->ff;
        if (o->theta) c->rope_theta = (float)o->theta;
        c->untied |= o->untied;
        // Hugging Face has these only as families: q/k/v biases alone are Qwen2's, q/k norms
        // Qwen3's (Llama's attention_bias would add o_proj's too)
        if (o->qkv_bias && (o->qk_norm || c->qk_norm))
            return util_err(err, errlen, "--qkv-bias: no Hugging Face family has q/k/v biases and "
                            "q/k norms together (Qwen2 has the biases, Qwen3 the norms)");
        if (o->qk_norm && c->qkv_bias)
            return util_err(err, errlen, "--qk-norm: no Hugging Face family has q/k/v biases and "
                            "q/k norms together (Qwen2 has the biases, Qwen3 the norms)");
        if (o->qkv_bias) c->family = MODEL_FAMILY_QWEN2;
        if (o->qk_norm) c->family = MODEL_FAMILY_QWEN3;
        c->qkv_bias |= o->qkv_bias;
        c->qk_norm |= o->qk_norm;
    }
    return 0;
}

// The vocabulary size: --vocab-size, else the preset's, else the tokenizer's, else 50257; the
// tokenizer (tv tokens, 0 without one) must fit. Returns it, or -1 with a message.
static int64_t init_vocab(const Preset *p, int64_t asked, int64_t tv, char *err, size_t errlen) {
    int64_t v = asked ? asked : p->c.vocab_size ? p->c.vocab_size : tv ? tv : 50257;
    if (tv > v)
        return util_err(err, errlen, "the tokenizer has %lld tokens, more than the vocabulary "
                        "of %lld (%s); pass --vocab-size",
                        (long long)tv, (long long)v,
                        asked ? "--vocab-size" : p->c.vocab_size ? p->name : "the default");
    return v;
}

// "L2 H4 KV2 hd16 C64 F96 ctx256 V300": the shape in one word per dimension.
static void init_describe(const ModelConfig *c, char *buf, size_t n) {
    if (c->arch == MODEL_ARCH_GPT2)
        snprintf(buf, n, "GPT-2 L%d H%d C%d ctx%d V%d", c->n_layer, c->n_head, c->n_embd,
                 c->max_seq_len, c->vocab_size);
    else
        snprintf(buf, n, "Llama-style L%d H%d KV%d hd%d C%d F%d ctx%d V%d%s", c->n_layer,
                 c->n_head, model_kv_heads(c), model_head_dim(c), c->n_embd, model_ff(c),
                 c->max_seq_len, c->vocab_size, c->untied ? " untied" : "");
}

// --out ws/base in a fresh folder: the parent is made as `mkdir -p` would (the checkpoint itself
// is written whole or not at all by ckpt_save).
static int init_make_parent(const char *out, char *err, size_t errlen) {
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", out);
    char *slash = strrchr(parent, '/');
    while (slash && slash > parent && slash[1] == '\0') {
        *slash = '\0';
        slash = strrchr(parent, '/');
    }
    if (!slash || slash == parent) return 0;
    *slash = '\0';
    if (util_mkdir_p(parent, err, errlen)) return util_err_prefix(err, errlen, "--out %s: ", out);
    return 0;
}

int cmd_init(int argc, char **argv) {
    const char *preset = NULL, *out = NULL, *tokdir = NULL;
    InitOverrides o = {0};
    int64_t seed = 1234;
    int score = 0, nolm = 0, status;
    char err[512];
    CliOption opts[] = {
        CLI_STRING("--preset", &preset, .required = 1),
        CLI_STRING("--out", &out, .required = 1),
        CLI_STRING("--tokenizer", &tokdir),
        CLI_INT("--vocab-size", &o.vocab, 1, 1 << 24),
        CLI_INT("--n-layer", &o.L, 1, 1024),
        CLI_INT("--n-head", &o.NH, 1, 65536),
        CLI_INT("--n-embd", &o.C, 1, 65536),
        CLI_INT("--n-positions", &o.ctx, 1, 1 << 20),
        CLI_INT("--n-kv-head", &o.kvh, 1, 65536),
        CLI_INT("--head-dim", &o.hd, 1, 65536),
        CLI_INT("--d-ff", &o.ff, 1, 1 << 20),
        CLI_DOUBLE("--rope-theta", &o.theta, 1, 1e12),
        CLI_FLAG("--untied", &o.untied),
        CLI_FLAG("--qkv-bias", &o.qkv_bias),
        CLI_FLAG("--qk-norm", &o.qk_norm),
        CLI_INT("--seed", &seed, 0, INT64_MAX),
        CLI_FLAG("--score-head", &score),
        CLI_FLAG("--no-lm-head", &nolm),
        {0}};
    CliCommand cmd = {.prog = "rlhf init", .usage = init_usage, .opts = opts};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    const Preset *p = init_find_preset(preset);
    if (!p) {
        fprintf(stderr, "rlhf init: unknown preset '%s' (tiny, small, gpt2, gpt2-medium, "
                "llama-tiny, smollm2-135m, qwen2.5-0.5b, qwen3-0.6b)\n", preset);
        return 2;
    }
    int eot = -1;
    int64_t tv = 0;
    if (tokdir) {
        Tokenizer *t;
        if (tok_load(&t, tokdir, err, sizeof err)) FAIL("rlhf init: %s", err);
        tv = tok_vocab_size(t);
        eot = tok_eot(t);
        tok_free(t);
    }
    int64_t vocab = init_vocab(p, o.vocab, tv, err, sizeof err);
    ModelConfig c;
    if (vocab < 0 || init_config(p, &o, vocab, &c, err, sizeof err)) FAIL("rlhf init: %s", err);
    c.lm_head = !nolm;
    c.score_head = score;
    if (init_make_parent(out, err, sizeof err)) FAIL("rlhf init: %s", err);
    Model m;
    if (model_init(&m, &c, 1, 1, 0, 0, err, sizeof err)) FAIL("rlhf init: %s", err);
    model_init_weights(&m, (uint64_t)seed);
    CkptSaveOptions so = {.tokenizer_dir = tokdir,
                          .has_token_ids = eot >= 0,
                          .bos_token_id = eot,
                          .eos_token_id = eot};
    int rc = ckpt_save(out, &m, &so, err, sizeof err);
    char shape[160];
    init_describe(&c, shape, sizeof shape);
    if (!rc)
        fprintf(stderr, "rlhf init: %s: %zu parameters (%s) written\n", out, m.num_params, shape);
    model_free(&m);
    if (rc) FAIL("rlhf init: %s", err);
    return 0;
}

static const char *info_usage =
    "usage: rlhf info CKPT [--batch B] [--seq T]\n"
    "       rlhf info --system\n"
    "CKPT is a checkpoint or a LoRA adapter directory (PEFT's adapter_config.json): then the\n"
    "adapter (r, alpha, targets, bias, base, parameters) comes first, and the rest is its base's.\n"
    "Prints the architecture (block kind, family, heads and KV heads, head width, MLP, positions,\n"
    "tied or untied head), the parameter count and the memory needed to train (weights,\n"
    "gradients, AdamW moments, activations at B x T) and to sample (weights, KV cache for B x T),\n"
    "after loading the weights (every dtype, shape and value checked: a checkpoint info accepts\n"
    "loads). Defaults: B = 8, T = the model's context, at most 2048.\n"
    "--system: the CPU and its vector extensions, the OpenBLAS kernel (and whether it was\n"
    "selected at startup), OpenBLAS's configuration, the thread counts and the variables that\n"
    "set them.\n";

static const char *const info_family_names[] = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};

// The architecture lines of `rlhf info`: block kind and family, attention, MLP, heads.
static void info_print_arch(const ModelConfig *c) {
    int fam = c->family >= 0 && c->family <= MODEL_FAMILY_QWEN3 ? c->family : 0;
    int kvh = model_kv_heads(c), hd = model_head_dim(c);
    if (c->arch == MODEL_ARCH_GPT2) {
        printf("model        GPT-2, %d layers, %d heads, %d channels, context %d, vocabulary %d\n",
               c->n_layer, c->n_head, c->n_embd, c->max_seq_len, c->vocab_size);
        printf("attention    %d heads of %d, learned positions (wpe), LayerNorm eps %g\n",
               c->n_head, hd, (double)c->ln_eps);
        printf("mlp          GELU(tanh) %d\n", model_ff(c));
    } else {
        printf("model        Llama-style (%s), %d layers, %d heads, %d channels, context %d, "
               "vocabulary %d\n", info_family_names[fam], c->n_layer, c->n_head, c->n_embd,
               c->max_seq_len, c->vocab_size);
        printf("attention    %d heads of %d, %d KV head%s (%s)%s%s, RMSNorm eps %g\n", c->n_head,
               hd, kvh, kvh == 1 ? "" : "s",
               kvh == c->n_head ? "multi-head" : kvh == 1 ? "multi-query" : "grouped-query",
               c->qkv_bias ? ", q/k/v biases" : "", c->qk_norm ? ", q/k RMSNorm" : "",
               (double)c->ln_eps);
        if (c->rope_scaling == MODEL_ROPE_LLAMA3)
            printf("rope         theta %g, llama3 scaling (factor %g, low %g, high %g, original "
                   "context %d)\n", (double)c->rope_theta, (double)c->rope_factor,
                   (double)c->rope_low_freq_factor, (double)c->rope_high_freq_factor,
                   c->rope_original_max_pos);
        else
            printf("rope         theta %g\n", (double)c->rope_theta);
        printf("mlp          SwiGLU %d\n", model_ff(c));
    }
    const char *lm = c->untied ? "LM (untied lm_head)" : "LM (tied)";
    printf("heads        %s%s%s\n", c->lm_head ? lm : "", c->lm_head && c->score_head ? " + " : "",
           c->score_head ? "scalar score" : "");
}

// The memory lines: training (weights, gradients, AdamW moments, activations) and sampling
// (weights and the KV cache of `rlhf generate`) at B x T, for P parameters.
static void info_print_memory(const ModelConfig *c, size_t P, int64_t B, int64_t T) {
    double w = (double)P * sizeof(float);
    double train = (double)model_memory_bytes(c, (int)B, (int)T, 1);
    int64_t prefill = B * (T < 256 ? T : 256);
    double kv = (double)kv_memory_bytes(c, (int)B, (int)T, (int)prefill);
    double sample_w = (double)model_memory_bytes(c, 1, 1, 0);
    char a[32], s[32], ws[32], act[32], kvs[32], wf[32];
    util_format_bytes(a, sizeof a, train);
    util_format_bytes(ws, sizeof ws, 4 * w);
    util_format_bytes(act, sizeof act, train - 4 * w);
    util_format_bytes(s, sizeof s, sample_w + kv);
    util_format_bytes(wf, sizeof wf, sample_w);
    util_format_bytes(kvs, sizeof kvs, kv);
    printf("memory       train at B=%lld T=%lld: %s (weights+grads+AdamW %s, activations %s)\n",
           (long long)B, (long long)T, a, ws, act);
    printf("             sample at B=%lld T=%lld: %s (weights %s, KV cache %s)\n", (long long)B,
           (long long)T, s, wf, kvs);
}

// The adapter lines of `rlhf info` on an adapter directory: its LoRA settings, its base, its
// parameters and the memory to train it beside the frozen base at B x T.
static void info_print_adapter(const LoraConfig *lc, const ModelConfig *c, const char *base,
                               int64_t B, int64_t T) {
    char targets[LORA_MAX_TARGETS * 34] = "";
    for (int i = 0; i < lc->n_targets; i++) {
        size_t len = strlen(targets);
        snprintf(targets + len, sizeof targets - len, "%s%s", i ? ", " : "", lc->targets[i]);
    }
    char saved[160] = "";   // modules_to_save
    if (lc->train_score) snprintf(saved, sizeof saved, " + the score head");
    for (int bit = 1; bit <= LORA_NORM_LAST; bit <<= 1)
        if (lc->norms & bit) {
            size_t len = strlen(saved);
            snprintf(saved + len, sizeof saved - len, " + %s", lora_norm_name(c->arch, bit));
        }
    printf("adapter      LoRA r %d, alpha %g (scale %g), dropout %g, bias %s, on %s%s\n", lc->r,
           (double)lc->alpha, (double)(lc->alpha / (float)lc->r), (double)lc->dropout,
           lora_bias_name(lc->bias), targets, saved);
    printf("adapter base %s%s\n", base,
           adapter_is_dir(base) ? " (itself an adapter, merged in)" : "");
    size_t np = lora_param_count(lc, c);
    int64_t N = B * T;
    char tr[32];
    util_format_bytes(tr, sizeof tr,
                      (double)model_memory_bytes(c, (int)B, (int)T, MODEL_TRAIN_FROZEN) +
                          (double)lora_memory_bytes(lc, c, N, 1));
    printf("adapter size %zu parameters; training it at B=%lld T=%lld beside the frozen base: "
           "%s\n", np, (long long)B, (long long)T, tr);
}

// A checkpoint's tokenizer must fit its model, as every program requires.
static int info_check_tokenizer(const char *dir, const CkptInfo *ci, const ModelConfig *c,
                                char *err, size_t errlen) {
    if (!ci->has_tokenizer) return 0;
    Tokenizer *t;
    char tdir[4200];   // where the config was read: DIR, or DIR.old while DIR is being replaced
    snprintf(tdir, sizeof tdir, "%s%s", dir, ci->from_old ? ".old" : "");
    if (tok_load(&t, tdir, err, errlen)) return -1;
    int bad = ckpt_check_tokenizer(tdir, c->vocab_size, tdir, tok_vocab_size(t), err, errlen);
    tok_free(t);
    return bad;
}

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    int64_t B = 8, T = 0;
    int system = 0, status;
    char err[512];
    CliOption opts[] = {
        CLI_FLAG("--system", &system),
        CLI_INT("--batch", &B, 1, 1 << 20),
        CLI_INT("--seq", &T, 1, 1 << 20),
        {0}};
    CliCommand cmd = {.prog = "rlhf info", .usage = info_usage, .opts = opts, .arg_name = "CKPT",
                      .arg = &dir};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (system && argc > 1) return cli_usage_error(&cmd, "--system takes no other arguments");
    if (system) {
        blas_print_system(stdout);
        lowp_print_system(stdout);
        return 0;
    }
    if (!dir) return cli_usage_error(&cmd, "missing CKPT");
    ModelConfig c;
    CkptInfo ci;
    if (adapter_load_config(dir, &c, &ci, err, sizeof err)) FAIL("rlhf info: %s", err);
    if (!T) T = c.max_seq_len < 2048 ? c.max_seq_len : 2048;
    if (T > c.max_seq_len)
        FAIL("rlhf info: --seq %lld exceeds the context of %d", (long long)T, c.max_seq_len);
    LoraConfig lc = {0};
    char base[4200];
    int is_adapter = adapter_is_dir(dir);
    if (is_adapter && adapter_describe(dir, &c, &lc, base, sizeof base, err, sizeof err))
        FAIL("rlhf info: %s", err);
    // the weights too: info on a checkpoint says it loads (every dtype, shape, offset, finite
    // value); an adapter's base with it merged in
    Model m;
    if (is_adapter ? model_init(&m, &c, 1, 1, 0, 0, err, sizeof err) ||
                         adapter_load_weights(dir, &m, CKPT_ALLOW_MISSING_SCORE, err, sizeof err)
                   : ckpt_load_model(dir, &m, 1, 1, 0, 0, err, sizeof err))
        FAIL("rlhf info: %s", err);
    size_t P = m.num_params;
    model_free(&m);
    if (info_check_tokenizer(dir, &ci, &c, err, sizeof err)) FAIL("rlhf info: %s", err);
    char w[32];
    util_format_bytes(w, sizeof w, (double)P * sizeof(float));
    printf("checkpoint   %s%s\n", dir,
           ci.from_old ? " (read from the .old copy of an interrupted save)" : "");
    if (is_adapter) info_print_adapter(&lc, &c, base, B, T);
    info_print_arch(&c);
    printf("parameters   %zu (%s in fp32)%s\n", P, w, is_adapter ? ", the base's" : "");
    printf("tokenizer    %s\n",
           !ci.has_tokenizer                      ? "none (pass --tokenizer where needed)"
           : fio_exists(dir, "tokenizer.json") ? "tokenizer.json"
                                                   : "vocab.json + merges.txt");
    if (ci.eos_token_id >= 0) printf("eos token    %d\n", ci.eos_token_id);
    if (ci.has_trainer_state) {
        CkptTrainerState st;
        if (!ckpt_load_trainer_state(dir, NULL, &st, err, sizeof err))
            printf("trainer      step %lld (resumable)\n", (long long)st.step);
    }
    info_print_memory(&c, P, B, T);
    return 0;
}

// Loads the tokenizer of a checkpoint, or the one named explicitly.
static int load_tokenizer(Tokenizer **t, const char *ckpt, const char *explicit_dir, char *err,
                          size_t errlen) {
    return tok_load(t, explicit_dir ? explicit_dir : ckpt, err, errlen);
}

int rlhf_window_loss(Model *m, const int32_t *ids, size_t n, int64_t W, int64_t B,
                     CliProgress *progress, double *total, char *err, size_t errlen) {
    int64_t nwin = ((int64_t)n - 1 + W - 1) / W;
    int32_t *tok = CALLOC_CHECK((size_t)(B * W), sizeof(int32_t));
    int32_t *tgt = CALLOC_CHECK((size_t)(B * W), sizeof(int32_t));
    int32_t *lens = CALLOC_CHECK((size_t)B, sizeof(int32_t));
    int rc = 0;
    for (int64_t w0 = 0; w0 < nwin; w0 += B) {
        int nb = (int)(nwin - w0 < B ? nwin - w0 : B);
        for (int b = 0; b < nb; b++) {   // positions past a window's length are not read
            int64_t s = (w0 + b) * W, l = (int64_t)n - 1 - s < W ? (int64_t)n - 1 - s : W;
            lens[b] = (int32_t)l;
            for (int64_t t = 0; t < l; t++) {
                tok[b * W + t] = ids[s + t];
                tgt[b * W + t] = ids[s + t + 1];
            }
        }
        ModelBatch mb = {
            .B = nb, .T = (int)W, .tokens = tok, .lengths = lens, .targets = tgt, .weights = NULL};
        if (model_forward(m, &mb, 0, err, errlen)) {
            rc = -1;
            break;
        }
        *total += m->loss;
        if (progress) cli_progress_update(progress, w0 + nb, "");
    }
    free(tok);
    free(tgt);
    free(lens);
    return rc;
}

int64_t rlhf_eval_window(const ModelConfig *c, size_t n) {
    int64_t W = c->max_seq_len < RLHF_EVAL_WINDOW_MAX ? c->max_seq_len : RLHF_EVAL_WINDOW_MAX;
    return (int64_t)n - 1 < W ? (int64_t)n - 1 : W;
}

static const char *eval_usage =
    "usage: rlhf eval CKPT (--text FILE | --ids FILE) [--tokenizer DIR] [--batch B]\n"
    "Mean next-token cross-entropy over the whole input, in consecutive windows of the model's\n"
    "context, at most 1024 tokens (every token after the first is predicted once). Prints\n"
    "'loss <value>' and\n"
    "'perplexity <value>'. --ids takes whitespace-separated token ids; --text is tokenized with\n"
    "the checkpoint's tokenizer (or --tokenizer DIR). FILE '-' reads stdin.\n";

int cmd_eval(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *idsf = NULL, *tokdir = NULL;
    int64_t batch = 4;
    int status;
    char err[512];
    CliOption opts[] = {
        CLI_STRING("--text", &text),
        CLI_STRING("--ids", &idsf),
        CLI_STRING("--tokenizer", &tokdir),
        CLI_INT("--batch", &batch, 1, 4096),
        {0}};
    CliCommand cmd = {.prog = "rlhf eval", .usage = eval_usage, .opts = opts, .arg_name = "CKPT",
                      .arg = &dir};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!dir || (!text == !idsf))
        return cli_usage_error(&cmd, "needs CKPT and exactly one of --text / --ids");
    ModelConfig c;
    CkptInfo ci;
    if (adapter_load_config(dir, &c, &ci, err, sizeof err)) FAIL("rlhf eval: %s", err);
    if (!c.lm_head) FAIL("rlhf eval: %s is a reward/value model without an LM head", dir);
    char *data; size_t len;
    if (cli_read_file(text ? text : idsf, &data, &len, err, sizeof err)) FAIL("rlhf eval: %s", err);
    int32_t *ids = NULL; size_t n = 0;
    if (idsf) {
        int rc = cli_parse_ids(idsf, data, c.vocab_size - 1, &ids, &n, err, sizeof err);
        free(data);
        if (rc) FAIL("rlhf eval: %s", err);
    } else {
        Tokenizer *t;
        if (load_tokenizer(&t, dir, tokdir, err, sizeof err)) {
            free(data);
            FAIL("rlhf eval: %s", err);
        }
        TokIds ti = {0};
        int rc = tok_encode(t, data, len, 0, &ti, err, sizeof err);
        free(data);
        int64_t tv = tok_vocab_size(t);
        tok_free(t);
        if (rc) { tok_ids_free(&ti); FAIL("rlhf eval: %s", err); }
        if (ckpt_check_tokenizer(dir, c.vocab_size, tokdir ? tokdir : dir, tv, err, sizeof err)) {
            tok_ids_free(&ti);
            FAIL("rlhf eval: %s", err);
        }
        ids = ti.ids; n = ti.n;
    }
    if (n < 2) { free(ids); FAIL("rlhf eval: need at least 2 tokens (got %zu)", n); }
    int64_t W = rlhf_eval_window(&c, n);
    int64_t nwin = ((int64_t)n - 1 + W - 1) / W;
    if (batch > nwin) batch = nwin;
    Model m;
    c.score_head = 0;
    if (model_init(&m, &c, (int)batch, (int)W, 0, 0, err, sizeof err) ||
        adapter_load_weights(dir, &m, CKPT_IGNORE_SCORE, err, sizeof err)) {
        free(ids);
        model_free(&m);
        FAIL("rlhf eval: %s", err);
    }
    double total = 0;
    CliProgress pr;
    cli_progress_start(&pr, stderr, "eval", nwin);
    CliProgress *shown = nwin > batch ? &pr : NULL;
    if (rlhf_window_loss(&m, ids, n, W, batch, shown, &total, err, sizeof err)) {
        fprintf(stderr, "rlhf eval: %s\n", err);
        total = NAN;
    }
    if (nwin > batch) cli_progress_end(&pr);
    double loss = total / (double)(n - 1);
    fprintf(stderr, "rlhf eval: %zu tokens, %lld window(s) of up to %lld\n", n, (long long)nwin,
            (long long)W);
    printf("loss %.6f\nperplexity %.6f\n", loss, exp(loss));
    free(ids);
    model_free(&m);
    return isfinite(loss) ? 0 : 1;
}

static const char *gen_usage =
    "usage: rlhf generate CKPT (--prompt TEXT | --prompts FILE) [options]\n"
    "  --max-new N         new tokens per prompt (default 64)\n"
    "  --temperature T     sampling temperature (default 1; 0 = greedy)\n"
    "  --greedy            same as --temperature 0\n"
    "  --top-k K           keep the K most likely tokens (default 0 = all)\n"
    "  --top-p P           nucleus sampling mass (default 1 = all)\n"
    "  --seed S            sampling seed (default 1234)\n"
    "  --batch B           prompts decoded together with --prompts (default 8)\n"
    "  --no-stop           do not stop at the end token\n"
    "  --precision P       weights decoding reads: fp32 (default), bf16 or int8 copies\n"
    "  --tokenizer DIR     tokenizer files if the checkpoint has none\n"
    "--prompt streams the continuation to stdout as it is sampled. --prompts FILE reads one\n"
    "prompt per line (a line starting with '{' is JSON with a \"prompt\" string) and prints one\n"
    "JSON line {\"prompt\", \"completion\"} per prompt.\n";

typedef struct { const Tokenizer *t; const GenConfig *stop; } StreamCtx;

static void stream_cb(void *u, int b, int32_t tok) {
    StreamCtx *s = u;
    (void)b;
    if (gen_is_stop(s->stop, tok)) return;
    size_t len;
    const char *bytes = tok_token(s->t, tok, &len);
    if (bytes) { fwrite(bytes, 1, len, stdout); fflush(stdout); }
}

// What `rlhf generate` was asked for.
typedef struct {
    const char *dir, *prompt, *pfile, *tokdir;
    int64_t max_new, topk, seed, batch;
    double temp, topp;
    int nostop;
    LowpFormat prec;   // --precision: the weights decoding reads
} GenArgs;

// The prompts, their tokens and what decodes them.
typedef struct {
    char **texts;        // (np) owned
    TokIds *ids;         // (np) owned
    size_t np;
    int64_t maxlen;      // the longest prompt's tokens
    Tokenizer *t;
    int32_t eot;         // -1 with --no-stop
    GenConfig stop;      // eot and the stop tokens (chat_stop_ids; none with --no-stop)
    ModelConfig c;
} GenPrompts;

static void gen_prompts_free(GenPrompts *g) {
    for (size_t i = 0; i < g->np; i++) {
        free(g->texts[i]);
        if (g->ids) tok_ids_free(&g->ids[i]);
    }
    free(g->texts);
    free(g->ids);
    tok_free(g->t);
}

// The prompts of a --prompts file: one per line, a line starting with '{' is JSON with a
// "prompt" string. Fills g->texts (np of them) or prints the error and returns 1.
static int gen_read_prompt_file(const char *pfile, GenPrompts *g) {
    char *data, err[512];
    size_t len;
    if (cli_read_lines_file(pfile, &data, &len, err, sizeof err)) FAIL("rlhf generate: %s", err);
    size_t nlines = 1;   // one pointer per line, not per byte
    for (const char *q = data; (q = memchr(q, '\n', len - (size_t)(q - data))) != NULL; q++)
        nlines++;
    g->texts = MALLOC_CHECK((nlines + 1) * sizeof(char *));
    int64_t line = 0;
    for (char *s = data; s && *s;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        line++;
        if (*s == '{') {
            cJSON *j = cJSON_Parse(s);
            cJSON *pj = j ? cJSON_GetObjectItemCaseSensitive(j, "prompt") : NULL;
            if (!cJSON_IsString(pj)) {
                cJSON_Delete(j);
                free(data);
                FAIL("rlhf generate: %s:%lld: not a JSON object with a \"prompt\" string", pfile,
                     (long long)line);
            }
            g->texts[g->np++] = STRDUP_CHECK(pj->valuestring);
            cJSON_Delete(j);
        } else if (*s) g->texts[g->np++] = STRDUP_CHECK(s);
        s = nl ? nl + 1 : NULL;
    }
    free(data);
    if (g->np == 0) FAIL("rlhf generate: %s holds no prompts", pfile);
    return 0;
}

// Checks the checkpoint, loads its tokenizer, reads and tokenizes every prompt (each must fit
// the context with --max-new tokens after it). Prints the error and returns 1.
static int gen_load_prompts(const GenArgs *a, GenPrompts *g) {
    char err[512];
    CkptInfo ci;
    if (adapter_load_config(a->dir, &g->c, &ci, err, sizeof err)) FAIL("rlhf generate: %s", err);
    if (!g->c.lm_head) FAIL("rlhf generate: %s is a reward/value model without an LM head", a->dir);
    if (load_tokenizer(&g->t, a->dir, a->tokdir, err, sizeof err)) FAIL("rlhf generate: %s", err);
    if (ckpt_check_tokenizer(a->dir, g->c.vocab_size, a->tokdir ? a->tokdir : a->dir,
                             tok_vocab_size(g->t), err, sizeof err))
        FAIL("rlhf generate: %s", err);
    if (a->prompt) {
        g->texts = MALLOC_CHECK(sizeof(char *));
        g->texts[g->np++] = STRDUP_CHECK(a->prompt);
    } else if (gen_read_prompt_file(a->pfile, g)) return 1;
    g->eot = a->nostop ? -1 : (ci.eos_token_id >= 0 ? ci.eos_token_id : tok_eot(g->t));
    g->stop.eot_id = g->eot;
    ChatTemplate *ct = NULL;   // its end-of-turn token, generation_config.json's eos ids
    int bad = !a->nostop && (chat_template_load(&ct, a->tokdir ? a->tokdir : a->dir, NULL, err,
                                                sizeof err) ||
                             chat_stop_ids(ct, g->t, a->dir, g->stop.stop_ids, GEN_MAX_STOP,
                                           &g->stop.n_stop, err, sizeof err));
    chat_template_free(ct);
    if (bad) FAIL("rlhf generate: %s", err);
    g->ids = CALLOC_CHECK(g->np, sizeof(TokIds));
    for (size_t i = 0; i < g->np; i++) {
        TokIds *p = &g->ids[i];
        if (tok_encode(g->t, g->texts[i], strlen(g->texts[i]), 0, p, err, sizeof err))
            FAIL("rlhf generate: %s", err);
        if (p->n == 0) FAIL("rlhf generate: prompt %zu is empty", i + 1);
        if ((int64_t)p->n + a->max_new > g->c.max_seq_len)
            FAIL("rlhf generate: prompt %zu has %zu tokens; with --max-new %lld it exceeds the "
                 "context of %d",
                 i + 1, p->n, (long long)a->max_new, g->c.max_seq_len);
        if ((int64_t)p->n > g->maxlen) g->maxlen = (int64_t)p->n;
    }
    return 0;
}

// One JSON line {"prompt", "completion"} per prompt of a batch (the end token left out).
static void gen_print_batch(const GenPrompts *g, size_t p0, int nb, const int32_t *out,
                            const int32_t *ol, int64_t max_new) {
    char err[512];
    for (int b = 0; b < nb; b++) {
        int n = ol[b];
        if (n > 0 && gen_is_stop(&g->stop, out[b * max_new + n - 1])) n--;
        TokBytes tb = {0};
        tok_decode(g->t, out + b * max_new, (size_t)n, &tb, err, sizeof err);
        char *cp = utf8_clean(g->texts[p0 + b], strlen(g->texts[p0 + b]));
        char *cc = utf8_clean(tb.data ? tb.data : "", tb.n);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", cp);
        cJSON_AddStringToObject(o, "completion", cc);
        char *js = cJSON_PrintUnformatted(o);
        printf("%s\n", js);
        cJSON_free(js);
        cJSON_Delete(o);
        free(cp);
        free(cc);
        tok_bytes_free(&tb);
    }
}

// Decodes the prompts in batches of a->batch: streamed with --prompt, JSON lines with --prompts.
static int gen_decode(const GenArgs *a, const GenPrompts *g, Model *m, KVCache *kv, Sampler *s) {
    char err[512];
    int64_t batch = a->batch, max_new = a->max_new;
    Rng rng;
    rng_init(&rng, (uint64_t)a->seed);
    GenConfig gc = g->stop;
    gc.max_new_tokens = (int)max_new;
    gc.sampler = (SamplerConfig){.temperature = (float)a->temp, .top_k = (int)a->topk,
                                 .top_p = (float)a->topp};
    int32_t *pr = MALLOC_CHECK((size_t)(batch * g->maxlen) * sizeof(int32_t));
    int32_t *pl = MALLOC_CHECK((size_t)batch * sizeof(int32_t));
    int32_t *out = MALLOC_CHECK((size_t)(batch * max_new) * sizeof(int32_t));
    int32_t *ol = MALLOC_CHECK((size_t)batch * sizeof(int32_t));
    StreamCtx sc = {g->t, &g->stop};
    CliProgress prog;   // prompts from a file: k/N prompts, rate and ETA on stderr
    cli_progress_start(&prog, stderr, "rlhf generate", (int64_t)g->np);
    int show = !a->prompt && (int64_t)g->np > batch, rc = 0;
    for (size_t p0 = 0; p0 < g->np; p0 += (size_t)batch) {
        int nb = (int)(g->np - p0 < (size_t)batch ? g->np - p0 : (size_t)batch);
        int64_t tp = 0;
        for (int b = 0; b < nb; b++) {
            pl[b] = (int32_t)g->ids[p0 + b].n;
            if (pl[b] > tp) tp = pl[b];
        }
        for (int b = 0; b < nb; b++)
            memcpy(pr + b * tp, g->ids[p0 + b].ids, (size_t)pl[b] * sizeof(int32_t));
        if (gen_generate(m, kv, s, &gc, &rng, pr, pl, nb, (int)tp, out, ol,
                         a->prompt ? stream_cb : NULL, &sc, err, sizeof err)) {
            fprintf(stderr, "rlhf generate: %s\n", err);
            rc = 1;
            break;
        }
        if (a->prompt) {
            printf("\n");
            continue;
        }
        gen_print_batch(g, p0, nb, out, ol, max_new);
        fflush(stdout);
        if (show) cli_progress_update(&prog, (int64_t)(p0 + (size_t)nb), "prompts");
    }
    if (show) cli_progress_end(&prog);
    free(pr);
    free(pl);
    free(out);
    free(ol);
    return rc;
}

int cmd_generate(int argc, char **argv) {
    GenArgs a = {.max_new = 64, .seed = 1234, .batch = 8, .temp = 1.0, .topp = 1.0};
    int status;
    char err[512];
    CliOption opts[] = {
        CLI_STRING("--prompt", &a.prompt),
        CLI_STRING("--prompts", &a.pfile),
        CLI_STRING("--tokenizer", &a.tokdir),
        CLI_INT("--max-new", &a.max_new, 1, 1 << 20),
        CLI_INT("--top-k", &a.topk, 0, 1 << 24),
        CLI_INT("--seed", &a.seed, 0, INT64_MAX),
        CLI_INT("--batch", &a.batch, 1, 4096),
        CLI_DOUBLE("--temperature", &a.temp, 0, 100),
        CLI_DOUBLE("--top-p", &a.topp, 0, 1),
        CLI_CONST("--greedy", &a.temp, 0),
        CLI_FLAG("--no-stop", &a.nostop),
        CLI_CUSTOM("--precision", lowp_cli_precision, &a.prec),
        {0}};
    CliCommand cmd = {.prog = "rlhf generate", .usage = gen_usage, .opts = opts,
                      .arg_name = "CKPT", .arg = &a.dir};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!a.dir || (!a.prompt == !a.pfile))
        return cli_usage_error(&cmd, "needs CKPT and exactly one of --prompt / --prompts");
    GenPrompts g = {0};
    Model m = {0};
    KVCache kv = {0};
    Sampler s = {0};
    int rc = gen_load_prompts(&a, &g);
    if (a.batch > (int64_t)g.np) a.batch = (int64_t)g.np;
    if (!rc) {
        g.c.score_head = 0;
        int kv_len = (int)(g.maxlen + a.max_new);
        int kv_prefill = (int)(a.batch * (g.maxlen < 256 ? g.maxlen : 256));
        if (model_init(&m, &g.c, 1, 1, 0, 0, err, sizeof err) ||
            adapter_load_weights(a.dir, &m, CKPT_IGNORE_SCORE, err, sizeof err) ||
            model_lowp_attach(&m, a.prec, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, err,
                              sizeof err) ||   // decoding alone: the fp32 matrices go
            kv_init(&kv, &m, (int)a.batch, kv_len, kv_prefill, err, sizeof err)) {
            fprintf(stderr, "rlhf generate: %s\n", err);
            rc = 1;
        }
    }
    if (!rc) {
        sampler_init(&s, g.c.vocab_size);
        rc = gen_decode(&a, &g, &m, &kv, &s);
    }
    gen_prompts_free(&g);
    sampler_free(&s);
    kv_free(&kv);
    model_free(&m);
    return rc;
}
