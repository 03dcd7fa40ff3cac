// LoRA adapters beside a frozen base: sites, allocation, forward, backward, AdamW, merge.
// See lora.h.
#include "lora.h"
#include "rng.h"
#include "util.h"
#include <cblas.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Every adaptable layer kind of an architecture, in the order adapters are laid out.
static int lora_all_sites(const ModelConfig *c, LoraSite *s) {
    int64_t C = c->n_embd;
    if (c->arch == MODEL_ARCH_GPT2) {
        s[0] = (LoraSite){"attn.c_attn", LORA_AT_QKV, 0, 3 * C, C, 1};
        s[1] = (LoraSite){"attn.c_proj", LORA_AT_O, 0, C, C, 1};
        s[2] = (LoraSite){"mlp.c_fc", LORA_AT_FC, 0, 4 * C, C, 1};
        s[3] = (LoraSite){"mlp.c_proj", LORA_AT_DOWN, 0, C, 4 * C, 1};
        return 4;
    }
    int64_t hd = model_head_dim(c), q = (int64_t)c->n_head * hd, kv = model_kv_heads(c) * hd;
    int64_t F = model_ff(c);
    s[0] = (LoraSite){"self_attn.q_proj", LORA_AT_QKV, 0, q, C, 0};
    s[1] = (LoraSite){"self_attn.k_proj", LORA_AT_QKV, q, kv, C, 0};
    s[2] = (LoraSite){"self_attn.v_proj", LORA_AT_QKV, q + kv, kv, C, 0};
    s[3] = (LoraSite){"self_attn.o_proj", LORA_AT_O, 0, C, q, 0};
    s[4] = (LoraSite){"mlp.gate_proj", LORA_AT_FC, 0, F, C, 0};
    s[5] = (LoraSite){"mlp.up_proj", LORA_AT_FC, F, F, C, 0};
    s[6] = (LoraSite){"mlp.down_proj", LORA_AT_DOWN, 0, C, F, 0};
    return 7;
}

// PEFT matches a target against the end of a module's name, at a dot.
static int lora_matches(const char *module, const char *target) {
    size_t n = strlen(module), k = strlen(target);
    if (k == 0 || k > n || strcmp(module + n - k, target)) return 0;
    return k == n || module[n - k - 1] == '.';
}

int lora_parse_targets(LoraConfig *cfg, const char *list, char *err, size_t errlen) {
    cfg->n_targets = 0;
    const char *p = list;
    while (*p) {
        while (*p == ',' || isspace((unsigned char)*p)) p++;
        if (!*p) break;
        const char *e = p;
        while (*e && *e != ',' && !isspace((unsigned char)*e)) e++;
        if (cfg->n_targets == LORA_MAX_TARGETS)
            return util_err(err, errlen, "lora target_modules: more than %d names",
                            LORA_MAX_TARGETS);
        if ((size_t)(e - p) >= sizeof cfg->targets[0])
            return util_err(err, errlen, "lora target_modules: name '%.*s' is too long",
                            (int)(e - p), p);
        snprintf(cfg->targets[cfg->n_targets++], sizeof cfg->targets[0], "%.*s", (int)(e - p), p);
        p = e;
    }
    if (cfg->n_targets == 0) return util_err(err, errlen, "lora target_modules is empty");
    return 0;
}

// The sites cfg chooses (in table order); -1 with a message when a target matches nothing.
static int lora_sites(const LoraConfig *cfg, const ModelConfig *c, LoraSite *out, char *err,
                      size_t errlen) {
    LoraSite all[LORA_MAX_SITES];
    int n = lora_all_sites(c, all), k = 0, used[LORA_MAX_SITES] = {0};
    for (int t = 0; t < cfg->n_targets; t++) {
        int hit = 0;
        for (int i = 0; i < n; i++)
            if (lora_matches(all[i].name, cfg->targets[t])) { used[i] = 1; hit = 1; }
        if (!hit) {
            char names[256] = "";
            for (int i = 0; i < n; i++) {
                const char *dot = strchr(all[i].name, '.');
                size_t len = strlen(names);
                snprintf(names + len, sizeof names - len, "%s%s", i ? ", " : "",
                         c->arch == MODEL_ARCH_GPT2 ? all[i].name : dot + 1);
            }
            return util_err(err, errlen,
                            "lora target_modules: '%s' is no linear layer of a %s model (%s)",
                            cfg->targets[t], model_kind_name(c), names);
        }
    }
    for (int i = 0; i < n; i++)
        if (used[i]) out[k++] = all[i];
    return k;
}

int lora_parse_bias(const char *s, int *bias, char *err, size_t errlen) {
    static const char *const names[] = {"none", "all", "lora_only"};
    for (int i = 0; i < 3; i++)
        if (!strcmp(s, names[i])) {
            *bias = i;
            return 0;
        }
    return util_err(err, errlen, "bias '%s' is none of none, all, lora_only", s);
}

const char *lora_bias_name(int bias) {
    return bias == LORA_BIAS_ALL ? "all" : bias == LORA_BIAS_LORA_ONLY ? "lora_only" : "none";
}

static int lora_bias_list(const LoraConfig *cfg, const ModelConfig *c, const LoraSite *sites,
                          int nsite, LoraBias *out);

const char *lora_norm_name(int arch, int bit) {
    static const char *const gpt2[] = {"ln_1", "ln_2", "ln_f", NULL, NULL};
    static const char *const llama[] = {"input_layernorm", "post_attention_layernorm", "norm",
                                        "q_norm", "k_norm"};
    int i = 0;
    while (i < 4 && bit != 1 << i) i++;
    return arch == MODEL_ARCH_GPT2 ? gpt2[i] : llama[i];
}

int lora_add_module(LoraConfig *cfg, int arch, const char *name, char *err, size_t errlen) {
    if (!strcmp(name, "score")) {
        cfg->train_score = 1;
        return 0;
    }
    for (int bit = 1; bit <= LORA_NORM_LAST; bit <<= 1)
        if (lora_norm_name(arch, bit) && !strcmp(name, lora_norm_name(arch, bit))) {
            cfg->norms |= bit;
            return 0;
        }
    return util_err(err, errlen, "modules_to_save: '%s' is not supported (score, or the norms %s, "
                    "%s, %s%s)", name, lora_norm_name(arch, LORA_NORM_1),
                    lora_norm_name(arch, LORA_NORM_2), lora_norm_name(arch, LORA_NORM_F),
                    arch == MODEL_ARCH_GPT2 ? "" : ", q_norm, k_norm");
}

// The norms' weights (and GPT-2's biases of them) that modules_to_save trains, into out.
static int lora_norm_vecs(const LoraConfig *cfg, const ModelConfig *c, LoraBias *out) {
    int64_t C = c->n_embd, hd = c->arch == MODEL_ARCH_GPT2 ? 0 : model_head_dim(c);
    int k = 0, gpt2 = c->arch == MODEL_ARCH_GPT2;
    static const int wslot[5] = {P_LN1W, P_LN2W, P_LNFW, P_QNORMW, P_KNORMW},
                     bslot[3] = {P_LN1B, P_LN2B, P_LNFB};
    for (int i = 0; i < 5; i++) {
        if (!(cfg->norms & (1 << i))) continue;
        const char *nm = lora_norm_name(c->arch, 1 << i);
        const char *pre = i == 2 ? gpt2 ? "transformer." : "model." : i > 2 ? "self_attn." : "";
        int64_t w = i > 2 ? hd : C;   // q/k norms: one head's width
        for (int b = 0; b < (gpt2 ? 2 : 1); b++) {
            LoraBias v = {"", b ? bslot[i] : wslot[i], i != 2, w, 0, w};
            snprintf(v.name, sizeof v.name, "%s%s.%s", pre, nm, b ? "bias" : "weight");
            out[k++] = v;
        }
    }
    return k;
}

// The vectors cfg trains on base c (sites: the adapted layers): biases (cfg->bias) in the
// base's order, then the norms of modules_to_save (a bias both name is listed once). Returns
// their number.
static int lora_biases(const LoraConfig *cfg, const ModelConfig *c, const LoraSite *sites,
                       int nsite, LoraBias *out) {
    LoraBias norms[8];
    int nn = lora_norm_vecs(cfg, c, norms), k = 0;
    if (cfg->bias != LORA_BIAS_NONE) k = lora_bias_list(cfg, c, sites, nsite, out);
    for (int i = 0; i < nn; i++) {
        int dup = 0;
        for (int j = 0; j < k; j++) dup |= !strcmp(out[j].name, norms[i].name);
        if (!dup) out[k++] = norms[i];
    }
    return k;
}

// The biases cfg->bias trains (sites: the adapted layers), in the base's order.
static int lora_bias_list(const LoraConfig *cfg, const ModelConfig *c, const LoraSite *sites,
                          int nsite, LoraBias *out) {
    LoraSite all[LORA_MAX_SITES];
    int na = lora_all_sites(c, all), k = 0;
    int64_t C = c->n_embd;
    LoraBias cand[LORA_MAX_BIAS];
    int nc = 0;
    if (c->arch == MODEL_ARCH_GPT2) {
        // the norms' biases (no layer of their own: "all" only), then the four products'
        cand[nc++] = (LoraBias){"ln_1.bias", P_LN1B, 1, C, 0, C};
        cand[nc++] = (LoraBias){"attn.c_attn.bias", P_QKVB, 1, 3 * C, 0, 3 * C};
        cand[nc++] = (LoraBias){"attn.c_proj.bias", P_ATTPROJB, 1, C, 0, C};
        cand[nc++] = (LoraBias){"ln_2.bias", P_LN2B, 1, C, 0, C};
        cand[nc++] = (LoraBias){"mlp.c_fc.bias", P_FCB, 1, 4 * C, 0, 4 * C};
        cand[nc++] = (LoraBias){"mlp.c_proj.bias", P_FCPROJB, 1, C, 0, C};
        cand[nc++] = (LoraBias){"transformer.ln_f.bias", P_LNFB, 0, C, 0, C};
    } else if (c->qkv_bias) {   // q/k/v: slices of the fused bias; nothing else has one
        int64_t QKV = all[0].out + all[1].out + all[2].out;
        for (int i = 0; i < 3; i++) {
            LoraBias b = {"", P_QKVB, 1, QKV, all[i].col0, all[i].out};
            snprintf(b.name, sizeof b.name, "%s.bias", all[i].name);
            cand[nc++] = b;
        }
    }
    (void)na;
    for (int i = 0; i < nc; i++) {
        int keep = cfg->bias == LORA_BIAS_ALL;
        for (int s = 0; s < nsite && !keep; s++) {
            size_t n = strlen(sites[s].name);
            keep = !strncmp(cand[i].name, sites[s].name, n) && !strcmp(cand[i].name + n, ".bias");
        }
        if (keep) out[k++] = cand[i];
    }
    return k;
}

static size_t lora_bias_floats(const LoraBias *b, int n, int L) {
    size_t f = 0;
    for (int i = 0; i < n; i++) f += (size_t)(b[i].layered ? L : 1) * (size_t)b[i].n;
    return f;
}

int lora_validate(const LoraConfig *cfg, const ModelConfig *base, char *err, size_t errlen) {
    if (cfg->r <= 0 || cfg->r > 65536)
        return util_err(err, errlen, "lora r must be in 1..65536 (got %d)", cfg->r);
    if (!(cfg->alpha > 0.0f) || !isfinite(cfg->alpha))
        return util_err(err, errlen, "lora_alpha must be positive (got %g)", (double)cfg->alpha);
    if (!(cfg->dropout >= 0.0f && cfg->dropout < 1.0f))
        return util_err(err, errlen, "lora_dropout must be in [0, 1) (got %g)",
                        (double)cfg->dropout);
    if (cfg->train_score && !base->score_head)
        return util_err(err, errlen, "lora modules_to_save score: the base has no score head");
    if ((cfg->norms & (LORA_NORM_Q | LORA_NORM_K)) && !base->qk_norm)
        return util_err(err, errlen, "lora modules_to_save %s: the base has no per-head q/k norms "
                        "(Qwen3's q_norm, k_norm)", cfg->norms & LORA_NORM_Q ? "q_norm" : "k_norm");
    LoraSite s[LORA_MAX_SITES];
    return lora_sites(cfg, base, s, err, errlen) < 0 ? -1 : 0;
}

static size_t lora_layer_floats(const LoraSite *s, int n, int r) {
    size_t f = 0;
    for (int i = 0; i < n; i++) f += (size_t)r * (size_t)(s[i].in + s[i].out);
    return f;
}

static int64_t lora_max_in(const LoraSite *s, int n) {
    int64_t m = 0;
    for (int i = 0; i < n; i++) m = s[i].in > m ? s[i].in : m;
    return m;
}

size_t lora_param_count(const LoraConfig *cfg, const ModelConfig *base) {
    LoraSite s[LORA_MAX_SITES];
    LoraBias b[LORA_MAX_BIAS];
    char err[8];
    int n = lora_sites(cfg, base, s, err, sizeof err);
    if (n < 0) return 0;
    int nb = lora_biases(cfg, base, s, n, b);
    return (size_t)base->n_layer * lora_layer_floats(s, n, cfg->r) +
           (cfg->train_score ? (size_t)base->n_embd : 0) + lora_bias_floats(b, nb, base->n_layer);
}

// Floats of the slots' gradient buffers (a whole slot for every slot a trained bias is in).
static size_t lora_bias_grad_floats(const LoraBias *b, int n, const ModelConfig *c) {
    int seen[MODEL_NUM_PARAMS] = {0};
    size_t f = 0;
    for (int i = 0; i < n; i++)
        if (!seen[b[i].slot]++) f += (size_t)(b[i].layered ? c->n_layer : 1) * (size_t)b[i].width;
    return f;
}

// Activation floats as lora_init allocates them: u for every (layer, site) kept, the dropped
// inputs (with dropout), the scratch du and dx.
static size_t lora_act_floats(const LoraConfig *cfg, const LoraSite *s, int n, int L,
                              int64_t max_N, int trainable) {
    size_t N = (size_t)max_N, r = (size_t)cfg->r, per = 0;
    for (int i = 0; i < n; i++) per += (size_t)s[i].in;
    size_t La = trainable ? (size_t)L : 1;
    return La * (size_t)n * N * r + (cfg->dropout > 0.0f ? La * N * per : 0) + N * r +
           N * (size_t)lora_max_in(s, n);
}

size_t lora_memory_bytes(const LoraConfig *cfg, const ModelConfig *base, int64_t max_N,
                         int trainable) {
    LoraSite s[LORA_MAX_SITES];
    char err[8];
    int n = lora_sites(cfg, base, s, err, sizeof err);
    if (n < 0) return 0;
    size_t np = lora_param_count(cfg, base);
    LoraBias b[LORA_MAX_BIAS];
    int nb = lora_biases(cfg, base, s, n, b);
    size_t bias = lora_bias_floats(b, nb, base->n_layer) +
                  (trainable ? lora_bias_grad_floats(b, nb, base) : 0);
    return (np * (trainable ? 4 : 1) + bias +
            lora_act_floats(cfg, s, n, base->n_layer, max_N, trainable)) * sizeof(float);
}

int lora_init(Lora *lo, const LoraConfig *cfg, const ModelConfig *base, int64_t max_N,
              int trainable, char *err, size_t errlen) {
    memset(lo, 0, sizeof *lo);
    if (lora_validate(cfg, base, err, errlen)) return -1;
    if (max_N <= 0) return util_err(err, errlen, "lora: batch rows must be positive");
    lo->cfg = *cfg;
    lo->base = *base;
    lo->scale = cfg->alpha / (float)cfg->r;
    lo->nsite = lora_sites(cfg, base, lo->site, err, errlen);
    lo->per_layer = lora_layer_floats(lo->site, lo->nsite, cfg->r);
    lo->num_params = lora_param_count(cfg, base);
    lo->trainable = trainable;
    lo->max_N = max_N;
    lo->params = CALLOC_CHECK(lo->num_params, sizeof(float));
    if (trainable) {
        lo->grads = CALLOC_CHECK(lo->num_params, sizeof(float));
        lo->m = CALLOC_CHECK(lo->num_params, sizeof(float));
        lo->v = CALLOC_CHECK(lo->num_params, sizeof(float));
    }
    if (cfg->train_score) {
        size_t at = (size_t)base->n_layer * lo->per_layer;
        lo->score = lo->params + at;
        lo->dscore = lo->grads ? lo->grads + at : NULL;
    }
    lo->nbias = lora_biases(cfg, base, lo->site, lo->nsite, lo->bias);
    lo->bias_at = (size_t)base->n_layer * lo->per_layer + (cfg->train_score ? base->n_embd : 0);
    if (lo->nbias) {
        lo->bias_orig = CALLOC_CHECK(lora_bias_floats(lo->bias, lo->nbias, base->n_layer),
                                     sizeof(float));
        for (int i = 0; trainable && i < lo->nbias; i++) {
            const LoraBias *b = &lo->bias[i];
            if (!lo->bias_grad[b->slot])
                lo->bias_grad[b->slot] = CALLOC_CHECK(
                    (size_t)(b->layered ? base->n_layer : 1) * (size_t)b->width, sizeof(float));
        }
    }
    size_t N = (size_t)max_N, r = (size_t)cfg->r, La = trainable ? (size_t)base->n_layer : 1;
    int64_t mi = lora_max_in(lo->site, lo->nsite);
    lo->u = CALLOC_CHECK(La * lo->nsite * N * r, sizeof(float));
    lo->du = CALLOC_CHECK(N * r, sizeof(float));
    lo->dx = CALLOC_CHECK(N * (size_t)mi, sizeof(float));
    if (cfg->dropout > 0.0f) {
        size_t per = 0;
        for (int i = 0; i < lo->nsite; i++) per += (size_t)lo->site[i].in;
        // inference keeps one layer's dropped inputs (dropout only runs when training, but the
        // buffer is what the forward writes into)
        lo->xd = CALLOC_CHECK(La * N * per, sizeof(float));
    }
    return 0;
}

void lora_free(Lora *lo) {
    free(lo->params); free(lo->grads); free(lo->m); free(lo->v);
    free(lo->u); free(lo->xd); free(lo->du); free(lo->dx);
    free(lo->bias_orig);
    for (int i = 0; i < MODEL_NUM_PARAMS; i++) free(lo->bias_grad[i]);
    memset(lo, 0, sizeof *lo);
}

static size_t lora_site_off(const Lora *lo, int l, int s) {
    size_t off = (size_t)l * lo->per_layer, r = (size_t)lo->cfg.r;
    for (int i = 0; i < s; i++) off += r * (size_t)(lo->site[i].in + lo->site[i].out);
    return off;
}

float *lora_a(const Lora *lo, int l, int s, int grad) {
    return (grad ? lo->grads : lo->params) + lora_site_off(lo, l, s);
}

float *lora_b(const Lora *lo, int l, int s, int grad) {
    return lora_a(lo, l, s, grad) + (size_t)lo->cfg.r * (size_t)lo->site[s].in;
}

void lora_init_weights(Lora *lo, uint64_t seed, const float *base_score) {
    memset(lo->params, 0, lo->num_params * sizeof(float));
    // kaiming_uniform_(a=sqrt(5)) on A (r,in): bound = 1/sqrt(in)
    for (int l = 0; l < lo->base.n_layer; l++)
        for (int s = 0; s < lo->nsite; s++) {
            Rng g;
            rng_init(&g, seed ^ (0x10a0000ULL + (uint64_t)l * 64 + (uint64_t)s) * 0x9e3779b9ULL);
            float *a = lora_a(lo, l, s, 0), bound = 1.0f / sqrtf((float)lo->site[s].in);
            size_t n = (size_t)lo->cfg.r * (size_t)lo->site[s].in;
            for (size_t i = 0; i < n; i++) a[i] = (2.0f * rng_float(&g) - 1.0f) * bound;
        }
    if (lo->score && base_score)
        memcpy(lo->score, base_score, (size_t)lo->base.n_embd * sizeof(float));
    lo->seed = seed;
    lo->dropout_call = 0;
}

int lora_attach(Model *base, Lora *lo, char *err, size_t errlen) {
    if (lo) {
        const ModelConfig *a = &base->config, *b = &lo->base;
        if (a->arch != b->arch || a->n_layer != b->n_layer || a->n_embd != b->n_embd ||
            a->n_head != b->n_head || model_kv_heads(a) != model_kv_heads(b) ||
            model_head_dim(a) != model_head_dim(b) || model_ff(a) != model_ff(b) ||
            a->score_head != b->score_head)
            return util_err(err, errlen,
                            "lora adapter is for another base shape (%s L=%d C=%d) than the model "
                            "(%s L=%d C=%d)",
                            model_kind_name(b), b->n_layer, b->n_embd, model_kind_name(a),
                            a->n_layer, a->n_embd);
        if ((int64_t)base->max_B * base->max_T > lo->max_N)
            return util_err(err, errlen, "lora adapter holds %lld rows, the model %lld",
                            (long long)lo->max_N, (long long)base->max_B * base->max_T);
    }
    if (base->lora != lo) lora_bias_install(base, NULL);   // the base's own biases back
    base->lora = lo;
    return 0;
}

// Dropout mask bit of element i: a hash of (seed, call, layer, site, i), so backward recomputes it
// and the result does not depend on the thread count.
static inline int lora_keep(uint64_t key, uint64_t i, float p) {
    uint64_t z = key + (i + 1) * 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f) >= p;
}

static uint64_t lora_key(const Lora *lo, int l, int s) {
    return (lo->seed * 0x2545f4914f6cdd1dULL) ^ (lo->dropout_call << 20) ^ ((uint64_t)l << 8) ^
           (uint64_t)s;
}

// Dropped inputs of (l, s) (one layer's worth when not training).
static float *lora_xd(const Lora *lo, int l, int s) {
    size_t N = (size_t)lo->max_N, per = 0, off = 0;
    for (int i = 0; i < lo->nsite; i++) {
        if (i < s) off += (size_t)lo->site[i].in;
        per += (size_t)lo->site[i].in;
    }
    return lo->xd + (size_t)(lo->trainable ? l : 0) * N * per + N * off;
}

static float *lora_u(const Lora *lo, int l, int s) {
    size_t N = (size_t)lo->max_N, r = (size_t)lo->cfg.r;
    return lo->u + ((size_t)(lo->trainable ? l : 0) * lo->nsite + s) * N * r;
}

void lora_begin(Lora *lo, int drop) {
    lo->last_drop = drop && lo->cfg.dropout > 0.0f;
    if (lo->last_drop) lo->dropout_call++;
}

void lora_forward(Lora *lo, int l, int at, const float *in, float *out, int64_t ld_out, int64_t N,
                  int drop) {
    int r = lo->cfg.r;
    float p = lo->cfg.dropout;
    drop = drop && lo->last_drop;
    for (int s = 0; s < lo->nsite; s++) {
        const LoraSite *st = &lo->site[s];
        if (st->at != at) continue;
        int64_t K = st->in;
        const float *x = in;
        if (lo->xd) {   // the adapter reads dropout(x); without dropout (or not training) x
            float *xd = lora_xd(lo, l, s), keep = 1.0f / (1.0f - p);
            uint64_t key = lora_key(lo, l, s);
            #pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < N * K; i++)
                xd[i] = !drop || lora_keep(key, (uint64_t)i, p) ? in[i] * (drop ? keep : 1.0f)
                                                                : 0.0f;
            x = xd;
        }
        float *u = lora_u(lo, l, s);
        // u (N,r) = x (N,in) A^T; out[:, col0..] += scale u B^T
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, r, (blasint)K, 1.0f, x,
                    (blasint)K, lora_a(lo, l, s, 0), (blasint)K, 0.0f, u, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)N, (blasint)st->out, r,
                    lo->scale, u, r, lora_b(lo, l, s, 0), r, 1.0f, out + st->col0,
                    (blasint)ld_out);
    }
}

void lora_apply(const Lora *lo, int l, int at, const float *in, float *out, int64_t ld_out,
                int64_t N) {
    int r = lo->cfg.r;
    for (int s = 0; s < lo->nsite; s++) {
        const LoraSite *st = &lo->site[s];
        if (st->at != at) continue;
        int64_t K = st->in;
        for (int64_t i0 = 0; i0 < N; i0 += lo->max_N) {   // du holds max_N rows
            int64_t n = N - i0 < lo->max_N ? N - i0 : lo->max_N;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, r, (blasint)K, 1.0f,
                        in + i0 * K, (blasint)K, lora_a(lo, l, s, 0), (blasint)K, 0.0f, lo->du,
                        r);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (blasint)n, (blasint)st->out, r,
                        lo->scale, lo->du, r, lora_b(lo, l, s, 0), r, 1.0f,
                        out + i0 * ld_out + st->col0, (blasint)ld_out);
        }
    }
}

void lora_backward(Lora *lo, int l, int at, const float *in, const float *dout, int64_t ld_out,
                   float *dinp, int64_t N) {
    if (!lo->grads) DIE("lora backward on adapters initialised without gradients");
    int r = lo->cfg.r;
    float p = lo->cfg.dropout;
    for (int s = 0; s < lo->nsite; s++) {
        const LoraSite *st = &lo->site[s];
        if (st->at != at) continue;
        int64_t K = st->in, O = st->out;
        const float *x = lo->xd ? lora_xd(lo, l, s) : in, *u = lora_u(lo, l, s);
        const float *d = dout + st->col0;
        // dB (O,r) += scale d^T u; du (N,r) = scale d B; dA (r,K) += du^T x
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (blasint)O, r, (blasint)N, lo->scale,
                    d, (blasint)ld_out, u, r, 1.0f, lora_b(lo, l, s, 1), r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, r, (blasint)O,
                    lo->scale, d, (blasint)ld_out, lora_b(lo, l, s, 0), r, 0.0f, lo->du, r);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, (blasint)K, (blasint)N, 1.0f,
                    lo->du, r, x, (blasint)K, 1.0f, lora_a(lo, l, s, 1), (blasint)K);
        if (!lo->xd) {   // dinp (N,K) += du A
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)K, r,
                        1.0f, lo->du, r, lora_a(lo, l, s, 0), (blasint)K, 1.0f, dinp, (blasint)K);
            continue;
        }
        // through the dropout: the mask of this forward, recomputed (dropped x is 0 only where
        // dropped or where x was 0, so the key is used, not x)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)N, (blasint)K, r, 1.0f,
                    lo->du, r, lora_a(lo, l, s, 0), (blasint)K, 0.0f, lo->dx, (blasint)K);
        uint64_t key = lora_key(lo, l, s);
        float keep = 1.0f / (1.0f - p);
        int drop = lo->last_drop;
        #pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < N * K; i++)
            if (!drop) dinp[i] += lo->dx[i];
            else if (lora_keep(key, (uint64_t)i, p)) dinp[i] += lo->dx[i] * keep;
    }
}

void lora_zero_grad(Lora *lo) {
    if (lo->grads) memset(lo->grads, 0, lo->num_params * sizeof(float));
    for (int i = 0; i < lo->nbias; i++) {
        const LoraBias *b = &lo->bias[i];
        if (lo->bias_grad[b->slot])
            memset(lo->bias_grad[b->slot], 0,
                   (size_t)(b->layered ? lo->base.n_layer : 1) * (size_t)b->width * sizeof(float));
    }
}

// ---- trained biases ----

static size_t lora_bias_off(const Lora *lo, int k) {
    return lora_bias_floats(lo->bias, k, lo->base.n_layer);
}

float *lora_bias_values(const Lora *lo, int k, int grad) {
    return (grad ? lo->grads : lo->params) + lo->bias_at + lora_bias_off(lo, k);
}

// Copies bias k between its values v (layer-major, n a layer) and the slot memory w (width a
// layer): to_slot 1 writes w from v, 0 reads v from w.
static void lora_bias_copy(const LoraBias *b, int L, float *v, float *w, int to_slot) {
    int layers = b->layered ? L : 1;
    for (int l = 0; l < layers; l++) {
        float *sl = w + (size_t)l * (size_t)b->width + b->c0, *vl = v + (size_t)l * (size_t)b->n;
        memcpy(to_slot ? sl : vl, to_slot ? vl : sl, (size_t)b->n * sizeof(float));
    }
}

void lora_bias_install(const Model *base, const Lora *lo) {
    if (!base->bias_in) {   // a Model not made by model_init holds no trained biases
        if (lo && lo->nbias) DIE("lora: trained biases on a model without model_init");
        return;
    }
    const Lora *cur = *base->bias_in;
    int L = base->config.n_layer;
    if (cur == lo && !lo) return;
    if (cur && cur != lo)   // the base's own values back
        for (int k = 0; k < cur->nbias; k++)
            lora_bias_copy(&cur->bias[k], L, cur->bias_orig + lora_bias_off(cur, k),
                           model_slot(base, cur->bias[k].slot, NULL), 1);
    *base->bias_in = NULL;
    if (!lo || !lo->nbias) return;
    for (int k = 0; k < lo->nbias; k++) {
        float *w = model_slot(base, lo->bias[k].slot, NULL);
        if (cur != lo) lora_bias_copy(&lo->bias[k], L, lo->bias_orig + lora_bias_off(lo, k), w, 0);
        lora_bias_copy(&lo->bias[k], L, lora_bias_values(lo, k, 0), w, 1);
    }
    *base->bias_in = lo;
}

void lora_bias_gather(Lora *lo) {
    if (!lo->grads) return;
    for (int k = 0; k < lo->nbias; k++)
        lora_bias_copy(&lo->bias[k], lo->base.n_layer, lora_bias_values(lo, k, 1),
                       lo->bias_grad[lo->bias[k].slot], 0);
}

void lora_bias_from_base(Lora *lo, const Model *base) {
    for (int k = 0; k < lo->nbias; k++) {
        const LoraBias *b = &lo->bias[k];
        float *src = *base->bias_in == lo ? lo->bias_orig + lora_bias_off(lo, k) : NULL;
        if (src)
            memcpy(lora_bias_values(lo, k, 0), src,
                   (size_t)(b->layered ? lo->base.n_layer : 1) * (size_t)b->n * sizeof(float));
        else
            lora_bias_copy(b, lo->base.n_layer, lora_bias_values(lo, k, 0),
                           model_slot(base, b->slot, NULL), 0);
    }
}

float lora_grad_norm(const Lora *lo) {
    double s = 0.0;
    for (size_t i = 0; i < lo->num_params; i++) s += (double)lo->grads[i] * lo->grads[i];
    return (float)sqrt(s);
}

float lora_adamw_step(Lora *lo, const AdamWConfig *c, float lr, int64_t t) {
    if (!lo->trainable) DIE("optimizer step on adapters without gradients");
    float norm = lora_grad_norm(lo);
    float gscale = 1.0f;
    if (c->grad_clip > 0.0f && norm > c->grad_clip) gscale = c->grad_clip / (norm + 1e-6f);
    // A and B are matrices: they decay; the score copy (a (1,C) matrix in HF) decays too
    optim_adamw_update(lo->params, lo->grads, lo->m, lo->v, (int64_t)lo->num_params, c, lr, t,
                       gscale, 1);
    return norm;
}

void lora_merge_matrix(const Lora *lo, Model *base, int l, int at) {
    const ModelConfig *c = &base->config;
    int r = lo->cfg.r;
    ModelParams *p = &base->params;
    float *w;
    int64_t ld = 0;
    switch (at) {
        case LORA_AT_QKV: {
            size_t QKV = base->param_sizes[P_QKVW] / (size_t)c->n_layer;
            w = p->qkvw + (size_t)l * QKV;
            ld = (int64_t)(QKV / (size_t)c->n_embd);
            break;
        }
        case LORA_AT_O:
            w = p->attprojw + (size_t)l * (base->param_sizes[P_ATTPROJW] / c->n_layer);
            break;
        case LORA_AT_FC:
            w = p->fcw + (size_t)l * (base->param_sizes[P_FCW] / c->n_layer);
            ld = (int64_t)(base->param_sizes[P_FCW] / c->n_layer / c->n_embd);
            break;
        default:
            w = p->fcprojw + (size_t)l * (base->param_sizes[P_FCPROJW] / c->n_layer);
            break;
    }
    for (int s = 0; s < lo->nsite; s++) {
        const LoraSite *st = &lo->site[s];
        if (st->at != at) continue;
        const float *A = lora_a(lo, l, s, 0), *B = lora_b(lo, l, s, 0);
        if (st->fan_in_fan_out) {   // W (in, ld) [:, col0..] += scale A^T B^T
            int64_t cols = ld ? ld : st->out;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (blasint)st->in, (blasint)st->out,
                        r, lo->scale, A, (blasint)st->in, B, r, 1.0f, w + st->col0,
                        (blasint)cols);
        } else {                    // W (rows, in) rows col0.. += scale B A
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (blasint)st->out,
                        (blasint)st->in, r, lo->scale, B, r, A, (blasint)st->in, 1.0f,
                        w + (size_t)st->col0 * (size_t)st->in, (blasint)st->in);
        }
    }
}

void lora_merge_vectors(const Lora *lo, Model *base) {
    const ModelConfig *c = &base->config;
    if (lo->score) memcpy(base->params.scorew, lo->score, (size_t)c->n_embd * sizeof(float));
    // the trained biases replace the base's (a plain model afterwards: nothing to restore)
    lora_bias_install(base, NULL);
    for (int k = 0; k < lo->nbias; k++)
        lora_bias_copy(&lo->bias[k], c->n_layer, lora_bias_values(lo, k, 0),
                       model_slot(base, lo->bias[k].slot, NULL), 1);
}

void lora_merge(const Lora *lo, Model *base) {
    for (int l = 0; l < base->config.n_layer; l++)
        for (int at = LORA_AT_QKV; at <= LORA_AT_DOWN; at++) lora_merge_matrix(lo, base, l, at);
    lora_merge_vectors(lo, base);
}

int lora_merge_copy(const Lora *lo, const Model *base, Model *dst, char *err, size_t errlen) {
    if (dst->num_params != base->num_params ||
        memcmp(dst->param_sizes, base->param_sizes, sizeof base->param_sizes))
        return util_err(err, errlen, "lora merge: the copy's shapes are not the base's");
    memcpy(dst->params_memory, base->params_memory, base->num_params * sizeof(float));
    lora_merge(lo, dst);
    return 0;
}
