// LoRA in the training programs: the lora.* keys, adapter model directories, adapter
// checkpoints. See adapter.h.
#include "adapter.h"
#include "fileio.h"
#include "peft.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int adapter_on(const Config *c) { return config_get_int(c, "lora.r") > 0; }

LowpFormat adapter_base_dtype(const Config *c) {
    const char *s = config_get_string(c, "lora.base_dtype");
    return !strcmp(s, "bfloat16") ? LOWP_BF16 : !strcmp(s, "int8") ? LOWP_INT8 : LOWP_FP32;
}

const char *adapter_dtype_name(LowpFormat fmt) {
    return fmt == LOWP_BF16 ? "bfloat16" : fmt == LOWP_INT8 ? "int8" : "float32";
}

int adapter_narrow_base(Model *m, LowpFormat fmt, char *err, size_t errlen) {
    if (fmt == LOWP_FP32) return 0;
    char e[512];
    if (model_lowp_attach(m, fmt, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, e, sizeof e))
        return util_err(err, errlen, "lora.base_dtype %s: %s", adapter_dtype_name(fmt), e);
    return 0;
}

size_t adapter_base_bytes(const ModelConfig *c, int B, int T, LowpFormat fmt) {
    size_t fp32 = model_memory_bytes(c, B, T, MODEL_TRAIN_FROZEN);
    if (fmt == LOWP_FP32) return fp32;
    return fp32 - (size_t)model_lowp_dropped_bytes(c) + (size_t)model_lowp_bytes(c, fmt);
}

// Every linear layer of the architecture (PEFT's names).
static const char *adapter_default_targets(const ModelConfig *base) {
    return base->arch == MODEL_ARCH_GPT2
               ? "c_attn,c_proj,c_fc"
               : "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj";
}

int adapter_settings(const Config *c, const ModelConfig *base, int score_ok, LoraConfig *cfg,
                     char *err, size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (!adapter_on(c)) return 0;
    cfg->r = (int)config_get_int(c, "lora.r");
    cfg->alpha = (float)config_get_double(c, "lora.alpha");
    cfg->dropout = (float)config_get_double(c, "lora.dropout");
    if (lora_parse_bias(config_get_string(c, "lora.bias"), &cfg->bias, err, errlen)) return -1;
    // modules_to_save: comma-separated PEFT names (the score head, norms)
    const char *p = config_get_string(c, "lora.modules_to_save");
    while (*p) {
        while (*p == ',' || *p == ' ') p++;
        size_t n = strcspn(p, ", ");
        if (!n) break;
        char name[64], e[256];
        snprintf(name, sizeof name, "%.*s", (int)(n < sizeof name ? n : sizeof name - 1), p);
        p += n;
        if (!strcmp(name, "score") && !score_ok)
            return util_err(err, errlen, "lora.modules_to_save: 'score' needs a model with a "
                            "score head (reward and value models); this one is a language model");
        if (lora_add_module(cfg, base->arch, name, e, sizeof e))
            return util_err(err, errlen, "lora.%s", e);
        if ((!strcmp(name, "q_norm") || !strcmp(name, "k_norm")) && !base->qk_norm)
            return util_err(err, errlen, "lora.modules_to_save: '%s' needs a base with per-head "
                            "q/k norms (Qwen3's); this %s model has none", name,
                            model_kind_name(base));
    }
    const char *t = config_get_string(c, "lora.target_modules");
    char e[512];
    if (lora_parse_targets(cfg, t[0] ? t : adapter_default_targets(base), e, sizeof e) ||
        lora_validate(cfg, base, e, sizeof e))
        return util_err(err, errlen, "lora.*: %s", e);
    return 0;
}

int adapter_is_dir(const char *dir) {
    char d[FIO_PATH_CAP];
    return ckpt_resolve(dir, d, sizeof d, NULL, NULL, 0) == 0 && fio_exists(d, PEFT_CONFIG);
}

// base_model_name_or_path of the adapter directory d (resolved).
static int adapter_base_of(const char *d, char *out, size_t n, char *err, size_t errlen) {
    char p[FIO_PATH_CAP];
    if (fio_path_join(p, d, PEFT_CONFIG, err, errlen)) return -1;
    cJSON *r = fio_read_json(p, err, errlen);
    if (!r) return -1;
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(r, "base_model_name_or_path");
    int rc = 0;
    if (!cJSON_IsString(b) || !b->valuestring[0])
        rc = util_err(err, errlen, "%s: base_model_name_or_path is missing or empty: the adapter "
                      "does not say which model it adapts", p);
    else if (snprintf(out, n, "%s", b->valuestring) >= (int)n)
        rc = util_err(err, errlen, "%s: base_model_name_or_path is too long", p);
    cJSON_Delete(r);
    return rc;
}

// The chain of model directories of dir: chain[0] the plain checkpoint at its root, then the
// adapters in the order they apply (chain[n-1] is dir). Returns n, or -1.
static int adapter_chain(const char *dir, char chain[][FIO_PATH_CAP], char *err, size_t errlen) {
    char cur[FIO_PATH_CAP];
    snprintf(cur, sizeof cur, "%s", dir);
    int n = 0;
    char tmp[ADAPTER_MAX_DEPTH + 1][FIO_PATH_CAP];
    for (;;) {
        if (n > ADAPTER_MAX_DEPTH)
            return util_err(err, errlen, "%s: adapters on adapters more than %d deep (a loop in "
                            "base_model_name_or_path?)", dir, ADAPTER_MAX_DEPTH);
        char d[FIO_PATH_CAP];
        if (ckpt_resolve(cur, d, sizeof d, NULL, err, errlen)) return -1;
        snprintf(tmp[n++], FIO_PATH_CAP, "%s", d);
        if (!fio_exists(d, PEFT_CONFIG)) break;
        if (adapter_base_of(d, cur, sizeof cur, err, errlen)) return -1;
    }
    for (int i = 0; i < n; i++) memcpy(chain[i], tmp[n - 1 - i], FIO_PATH_CAP);
    return n;
}

int adapter_load_config(const char *dir, ModelConfig *c, CkptInfo *info, char *err,
                        size_t errlen) {
    char (*chain)[FIO_PATH_CAP] = MALLOC_CHECK((ADAPTER_MAX_DEPTH + 1) * FIO_PATH_CAP);
    int n = adapter_chain(dir, chain, err, errlen);
    // a plain checkpoint is read by its own name, so that the reader rule's from_old says
    // whether DIR.old was read (chain[0] is the resolved directory)
    int rc = n < 0 ? -1 : ckpt_load_config(n == 1 ? dir : chain[0], c, info, err, errlen);
    if (rc == 0 && info && n > 1) {   // the tokenizer and state are the adapter directory's
        info->has_tokenizer = ckpt_dir_has_tokenizer(chain[n - 1]);
        info->has_trainer_state = fio_exists(chain[n - 1], "trainer_state.json");
    }
    free(chain);
    return rc;
}

int adapter_load_weights(const char *dir, Model *m, int flags, char *err, size_t errlen) {
    char (*chain)[FIO_PATH_CAP] = MALLOC_CHECK((ADAPTER_MAX_DEPTH + 1) * FIO_PATH_CAP);
    int n = adapter_chain(dir, chain, err, errlen);
    int rc = n < 0 ? -1 : ckpt_load_weights(chain[0], m, flags, err, errlen);
    for (int i = 1; rc == 0 && i < n; i++) {
        Lora lo;
        char e[768];
        // the adapter's score copy (modules_to_save) replaces the head only where m has one
        ModelConfig bc = m->config;
        if (peft_load(&lo, chain[i], &bc, 1, 0, e, sizeof e)) {
            rc = util_err(err, errlen, "%s", e);
            break;
        }
        lora_merge(&lo, m);
        lora_free(&lo);
    }
    free(chain);
    return rc;
}

// The adapters merged into a base loaded matrix by matrix (adapter_load_base).
typedef struct {
    const Lora *lo;
    int n;
    LowpFormat fmt;
} AdapterStream;

_Static_assert((int)LORA_AT_QKV == (int)MODEL_W_QKV && (int)LORA_AT_O == (int)MODEL_W_ATTPROJ &&
                   (int)LORA_AT_FC == (int)MODEL_W_FC && (int)LORA_AT_DOWN == (int)MODEL_W_FCPROJ,
               "a product's adapters merge into the matrix of the same number");

// layer l's matrix w is read: the chain's adapters into it, then its copy (ckpt_load_weights_each)
static int adapter_stream_matrix(Model *m, int l, int w, void *ctx, char *err, size_t errlen) {
    const AdapterStream *a = ctx;
    for (int i = 0; w < MODEL_NUM_W && i < a->n; i++) lora_merge_matrix(&a->lo[i], m, l, w);
    char e[512];
    if (model_lowp_stream_matrix(m, l, w, e, sizeof e))
        return util_err(err, errlen, "lora.base_dtype %s: %s", adapter_dtype_name(a->fmt), e);
    return 0;
}

int adapter_load_base(const char *dir, Model *m, int flags, LowpFormat fmt, char *err,
                      size_t errlen) {
    if (fmt == LOWP_FP32) return adapter_load_weights(dir, m, flags, err, errlen);
    char (*chain)[FIO_PATH_CAP] = MALLOC_CHECK((ADAPTER_MAX_DEPTH + 1) * FIO_PATH_CAP);
    int n = adapter_chain(dir, chain, err, errlen), k = 0, rc = n < 0 ? -1 : 0;
    Lora *lo = CALLOC_CHECK(ADAPTER_MAX_DEPTH, sizeof *lo);
    char e[768];
    while (rc == 0 && k < n - 1) {   // the adapters first: small, merged as the base arrives
        ModelConfig bc = m->config;
        if (peft_load(&lo[k], chain[k + 1], &bc, 1, 0, e, sizeof e))
            rc = util_err(err, errlen, "%s", e);
        else k++;
    }
    AdapterStream a = {lo, k, fmt};
    if (rc == 0 && model_lowp_stream_begin(m, fmt, e, sizeof e))
        rc = util_err(err, errlen, "lora.base_dtype %s: %s", adapter_dtype_name(fmt), e);
    if (rc == 0)
        rc = ckpt_load_weights_each(chain[0], m, flags, adapter_stream_matrix, &a, err, errlen);
    for (int i = 0; rc == 0 && i < k; i++) lora_merge_vectors(&lo[i], m);
    if (rc == 0 && model_lowp_stream_end(m, e, sizeof e))
        rc = util_err(err, errlen, "lora.base_dtype %s: %s", adapter_dtype_name(fmt), e);
    for (int i = 0; i < k; i++) lora_free(&lo[i]);
    free(lo);
    free(chain);
    return rc;
}

int adapter_describe(const char *dir, ModelConfig *base, LoraConfig *cfg, char *base_name,
                     size_t n, char *err, size_t errlen) {
    char d[FIO_PATH_CAP];
    if (ckpt_resolve(dir, d, sizeof d, NULL, err, errlen) ||
        adapter_base_of(d, base_name, n, err, errlen))
        return -1;
    ModelConfig with_score = *base;
    with_score.score_head = 1;
    char e[512];
    if (!peft_read_config(cfg, d, base, e, sizeof e)) return 0;
    if (base->score_head || peft_read_config(cfg, d, &with_score, err, errlen))
        return util_err(err, errlen, "%s", e);
    *base = with_score;   // a reward / value adapter (modules_to_save score) on a language model
    return 0;
}

void adapter_base_name(const char *dir, char *out, size_t n) {
    char buf[PATH_MAX];
    snprintf(out, n, "%s", realpath(dir, buf) ? buf : dir);
}

typedef struct {
    const Lora *lo;
    const char *base_name, *tok_dir;
    int seq_cls;
    const CkptTrainerState *st;
} AdapterSave;

static int adapter_write(const char *tmp, void *ctx, char *err, size_t errlen) {
    const AdapterSave *a = ctx;
    if (peft_save(a->lo, tmp, a->base_name, a->seq_cls, err, errlen)) return -1;
    if (a->tok_dir && ckpt_copy_tokenizer(a->tok_dir, tmp, err, errlen)) return -1;
    if (!a->st) return 0;
    CkptTrainerState *st = MALLOC_CHECK(sizeof *st);
    *st = *a->st;
    int rc = peft_save_moments(a->lo, tmp, err, errlen) ||
             peft_state_put(a->lo, st, err, errlen) ||
             ckpt_write_trainer_state(tmp, st, err, errlen);
    free(st);
    return rc ? -1 : 0;
}

int adapter_save(const char *dir, const Lora *lo, const char *base_name, int seq_cls,
                 const char *tokenizer_dir, const CkptTrainerState *st, char *err,
                 size_t errlen) {
    AdapterSave a = {lo, base_name, tokenizer_dir, seq_cls, st};
    return ckpt_save_files(dir, adapter_write, &a, err, errlen);
}

int adapter_resume(const char *dir, Lora *lo, CkptTrainerState *st, char *err, size_t errlen) {
    char d[FIO_PATH_CAP];
    if (ckpt_resolve(dir, d, sizeof d, NULL, err, errlen)) return -1;
    Lora in;
    if (peft_load(&in, d, &lo->base, 1, 0, err, errlen)) return -1;
    int same = in.num_params == lo->num_params && in.cfg.r == lo->cfg.r &&
               in.cfg.bias == lo->cfg.bias &&
               in.cfg.alpha == lo->cfg.alpha && in.nsite == lo->nsite;
    for (int i = 0; same && i < in.nsite; i++)
        same = !strcmp(in.site[i].name, lo->site[i].name) && in.site[i].col0 == lo->site[i].col0;
    if (same) memcpy(lo->params, in.params, lo->num_params * sizeof(float));
    lora_free(&in);
    if (!same)
        return util_err(err, errlen, "%s: the adapter's rank, alpha, target modules or bias are "
                        "not this run's", d);
    if (peft_load_moments(lo, d, err, errlen) ||
        ckpt_load_trainer_state(d, NULL, st, err, errlen) || peft_state_get(lo, st, err, errlen))
        return -1;
    return 0;
}
