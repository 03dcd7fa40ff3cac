// PEFT adapter files: adapter_config.json and adapter_model.safetensors. See peft.h.
#include "peft.h"
#include "checkpoint.h"
#include "fileio.h"
#include "safetensors.h"
#include "util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// The tensor name PEFT gives A (which 0) or B (1) of site s in layer l.
static void peft_name(char *out, size_t n, const char *prefix, const Lora *lo, int l, int s,
                      int which) {
    const char *stem = lo->base.arch == MODEL_ARCH_GPT2 ? "transformer.h" : "model.layers";
    snprintf(out, n, "%sbase_model.model.%s.%d.%s.lora_%c.weight", prefix, stem, l,
             lo->site[s].name, which ? 'B' : 'A');
}
#define PEFT_SCORE "base_model.model.score.weight"

// The tensors of buffer buf (params, or the moments laid out as they are) under PEFT's names,
// each with prefix in front; *n of them (malloc'd).
static StOut *peft_outs(const Lora *lo, const float *buf, const char *prefix, int *n) {
    int L = lo->base.n_layer, k = 0;
    StOut *o = CALLOC_CHECK((size_t)(2 * L * lo->nsite + 1 + L * lo->nbias), sizeof *o);
    for (int l = 0; l < L; l++)
        for (int s = 0; s < lo->nsite; s++)
            for (int w = 0; w < 2; w++) {
                StOut *x = &o[k++];
                peft_name(x->name, sizeof x->name, prefix, lo, l, s, w);
                x->ndim = 2;
                x->shape[0] = w ? lo->site[s].out : lo->cfg.r;
                x->shape[1] = w ? lo->cfg.r : lo->site[s].in;
                x->data = buf + ((w ? lora_b(lo, l, s, 0) : lora_a(lo, l, s, 0)) - lo->params);
            }
    if (lo->score) {
        StOut *x = &o[k++];
        snprintf(x->name, sizeof x->name, "%s%s", prefix, PEFT_SCORE);
        x->ndim = 2; x->shape[0] = 1; x->shape[1] = lo->base.n_embd;
        x->data = buf + (lo->score - lo->params);
    }
    // trained biases under the base model's own names (PEFT's bias "all" / "lora_only")
    const char *stem = lo->base.arch == MODEL_ARCH_GPT2 ? "transformer.h" : "model.layers";
    for (int b = 0; b < lo->nbias; b++) {
        const LoraBias *lb = &lo->bias[b];
        const float *v = buf + (lora_bias_values(lo, b, 0) - lo->params);
        for (int l = 0; l < (lb->layered ? L : 1); l++) {
            StOut *x = &o[k++];
            if (lb->layered)
                snprintf(x->name, sizeof x->name, "%sbase_model.model.%s.%d.%s", prefix, stem, l,
                         lb->name);
            else
                snprintf(x->name, sizeof x->name, "%sbase_model.model.%s", prefix, lb->name);
            x->ndim = 1;
            x->shape[0] = lb->n;
            x->data = v + (size_t)l * (size_t)lb->n;
        }
    }
    *n = k;
    return o;
}

int peft_save(const Lora *lo, const char *dir, const char *base_name, int seq_cls, char *err,
              size_t errlen) {
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return util_err(err, errlen, "%s: cannot make the directory: %s", dir, strerror(errno));
    char path[FIO_PATH_CAP];
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "peft_type", "LORA");
    cJSON_AddStringToObject(r, "task_type", seq_cls ? "SEQ_CLS" : "CAUSAL_LM");
    cJSON_AddStringToObject(r, "base_model_name_or_path", base_name ? base_name : "");
    cJSON_AddNumberToObject(r, "r", lo->cfg.r);
    cJSON_AddNumberToObject(r, "lora_alpha", (double)lo->cfg.alpha);
    // the float's shortest decimal (0.1f as 0.1, not 0.10000000149011612)
    char num[32];
    snprintf(num, sizeof num, "%.9g", (double)lo->cfg.dropout);
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(num, sizeof num, "%.*g", prec, (double)lo->cfg.dropout);
        if ((float)strtod(num, NULL) == lo->cfg.dropout) break;
    }
    cJSON_AddNumberToObject(r, "lora_dropout", strtod(num, NULL));
    cJSON *t = cJSON_AddArrayToObject(r, "target_modules");
    for (int i = 0; i < lo->cfg.n_targets; i++)
        cJSON_AddItemToArray(t, cJSON_CreateString(lo->cfg.targets[i]));
    cJSON_AddStringToObject(r, "bias", lora_bias_name(lo->cfg.bias));
    cJSON_AddBoolToObject(r, "fan_in_fan_out", lo->base.arch == MODEL_ARCH_GPT2);
    if (lo->score || lo->cfg.norms) {
        cJSON *ms = cJSON_AddArrayToObject(r, "modules_to_save");
        if (lo->score) cJSON_AddItemToArray(ms, cJSON_CreateString("score"));
        for (int bit = 1; bit <= LORA_NORM_LAST; bit <<= 1)
            if (lo->cfg.norms & bit)
                cJSON_AddItemToArray(ms, cJSON_CreateString(lora_norm_name(lo->base.arch, bit)));
    } else {
        cJSON_AddNullToObject(r, "modules_to_save");
    }
    cJSON_AddBoolToObject(r, "inference_mode", 1);
    cJSON_AddBoolToObject(r, "init_lora_weights", 1);
    cJSON_AddBoolToObject(r, "use_rslora", 0);
    cJSON_AddBoolToObject(r, "use_dora", 0);
    cJSON_AddObjectToObject(r, "rank_pattern");
    cJSON_AddObjectToObject(r, "alpha_pattern");
    cJSON_AddNullToObject(r, "layers_to_transform");
    cJSON_AddNullToObject(r, "layers_pattern");
    int rc = fio_path_join(path, dir, PEFT_CONFIG, err, errlen);
    if (!rc) rc = fio_write_json(path, r, err, errlen);
    cJSON_Delete(r);
    if (rc) return -1;
    int n;
    StOut *o = peft_outs(lo, lo->params, "", &n);
    rc = fio_path_join(path, dir, PEFT_WEIGHTS, err, errlen);
    if (!rc) rc = st_write(path, o, n, 0, err, errlen);
    free(o);
    return rc ? -1 : fio_fsync_dir(dir, err, errlen);
}

static int peft_config_fields(LoraConfig *cfg, const cJSON *r, const char *path,
                              const ModelConfig *base, char *err, size_t errlen) {
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(r, "peft_type");
    if (!cJSON_IsString(pt) || strcmp(pt->valuestring, "LORA"))
        return util_err(err, errlen, "%s: peft_type must be \"LORA\"", path);
    const cJSON *rr = cJSON_GetObjectItemCaseSensitive(r, "r");
    const cJSON *al = cJSON_GetObjectItemCaseSensitive(r, "lora_alpha");
    const cJSON *dr = cJSON_GetObjectItemCaseSensitive(r, "lora_dropout");
    if (!cJSON_IsNumber(rr) || rr->valuedouble != (double)(int)rr->valuedouble)
        return util_err(err, errlen, "%s: r must be an integer", path);
    if (!cJSON_IsNumber(al)) return util_err(err, errlen, "%s: lora_alpha must be a number", path);
    if (dr && !cJSON_IsNumber(dr))
        return util_err(err, errlen, "%s: lora_dropout must be a number", path);
    cfg->r = (int)rr->valuedouble;
    cfg->alpha = (float)al->valuedouble;
    cfg->dropout = dr ? (float)dr->valuedouble : 0.0f;
    const cJSON *bias = cJSON_GetObjectItemCaseSensitive(r, "bias");
    char e1[128];
    cfg->bias = LORA_BIAS_NONE;
    if (bias && (!cJSON_IsString(bias) ||
                 lora_parse_bias(bias->valuestring, &cfg->bias, e1, sizeof e1)))
        return util_err(err, errlen, "%s: bias must be \"none\", \"all\" or \"lora_only\"", path);
    static const char *const unsupported[] = {"use_dora", "use_rslora"};
    for (int i = 0; i < 2; i++)
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(r, unsupported[i])))
            return util_err(err, errlen, "%s: %s is not supported", path, unsupported[i]);
    // per-module ranks, scales or layers: every adapted layer here has the one r and alpha
    static const char *const per_module[] = {"rank_pattern", "alpha_pattern",
                                             "layers_to_transform", "layers_pattern"};
    for (int i = 0; i < 4; i++) {
        const cJSON *x = cJSON_GetObjectItemCaseSensitive(r, per_module[i]);
        if (x && !cJSON_IsNull(x) && !(cJSON_IsObject(x) && !x->child) &&
            !(cJSON_IsArray(x) && !x->child))
            return util_err(err, errlen, "%s: %s is not supported (one r and alpha everywhere)",
                            path, per_module[i]);
    }
    const cJSON *fif = cJSON_GetObjectItemCaseSensitive(r, "fan_in_fan_out");
    int want = base->arch == MODEL_ARCH_GPT2;
    if (fif && cJSON_IsBool(fif) && cJSON_IsTrue(fif) != want)
        return util_err(err, errlen, "%s: fan_in_fan_out is %s, a %s base needs %s", path,
                        cJSON_IsTrue(fif) ? "true" : "false", model_kind_name(base),
                        want ? "true" : "false");
    const cJSON *tm = cJSON_GetObjectItemCaseSensitive(r, "target_modules");
    if (!cJSON_IsArray(tm))
        return util_err(err, errlen,
                        "%s: target_modules must be a list of names (a regular expression is not "
                        "supported)",
                        path);
    cfg->n_targets = 0;
    const cJSON *x;
    cJSON_ArrayForEach(x, tm) {
        if (!cJSON_IsString(x) || strlen(x->valuestring) >= sizeof cfg->targets[0] ||
            cfg->n_targets == LORA_MAX_TARGETS)
            return util_err(err, errlen, "%s: target_modules: a name is not a short string", path);
        snprintf(cfg->targets[cfg->n_targets++], sizeof cfg->targets[0], "%s", x->valuestring);
    }
    if (cfg->n_targets == 0) return util_err(err, errlen, "%s: target_modules is empty", path);
    cfg->train_score = 0;
    cfg->norms = 0;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(r, "modules_to_save");
    if (cJSON_IsArray(ms)) {
        cJSON_ArrayForEach(x, ms) {
            char e3[256];
            if (!cJSON_IsString(x))
                return util_err(err, errlen, "%s: modules_to_save: a name is not a string", path);
            if (lora_add_module(cfg, base->arch, x->valuestring, e3, sizeof e3))
                return util_err(err, errlen, "%s: %s", path, e3);
        }
    }
    char e2[256];
    if (lora_validate(cfg, base, e2, sizeof e2))
        return util_err(err, errlen, "%s: %s", path, e2);
    return 0;
}

int peft_read_config(LoraConfig *cfg, const char *dir, const ModelConfig *base, char *err,
                     size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    char path[FIO_PATH_CAP];
    if (fio_path_join(path, dir, PEFT_CONFIG, err, errlen)) return -1;
    cJSON *r = fio_read_json(path, err, errlen);
    if (!r) return -1;
    int rc = peft_config_fields(cfg, r, path, base, err, errlen);
    cJSON_Delete(r);
    return rc;
}

// One tensor of the file into dst, checked against its shape (ndim 1: d0 floats).
static int peft_take(StFile *f, const char *name, int ndim, int64_t d0, int64_t d1, float *dst,
                     const char *path, char *err, size_t errlen) {
    StEntry *e = st_find(f, name);
    if (!e) return util_err(err, errlen, "%s: tensor %s is missing", path, name);
    int64_t shape[2] = {d0, d1};
    char e2[256];
    if (st_check(e, ndim, shape, e2, sizeof e2))
        return util_err(err, errlen, "%s: %s (an adapter for another base shape?)", path, e2);
    st_read_f32(e, dst);
    e->used = 1;
    return 0;
}

int peft_load(Lora *lo, const char *dir, const ModelConfig *base, int64_t max_N, int trainable,
              char *err, size_t errlen) {
    LoraConfig cfg;
    memset(lo, 0, sizeof *lo);
    if (peft_read_config(&cfg, dir, base, err, errlen)) return -1;
    if (lora_init(lo, &cfg, base, max_N, trainable, err, errlen)) return -1;
    char path[FIO_PATH_CAP];
    StFile f;
    if (fio_path_join(path, dir, PEFT_WEIGHTS, err, errlen) || st_open(&f, path, err, errlen)) {
        lora_free(lo);
        return -1;
    }
    int rc = 0, n;
    StOut *o = peft_outs(lo, lo->params, "", &n);   // every tensor the config implies
    for (int i = 0; i < n && !rc; i++)
        rc = peft_take(&f, o[i].name, o[i].ndim, o[i].shape[0], o[i].shape[1],
                       lo->params + (o[i].data - lo->params), path, err, errlen);
    free(o);
    for (int i = 0; i < f.n && !rc; i++)
        if (!f.e[i].used)
            rc = util_err(err, errlen, "%s: tensor %s is no adapter of this base (%s, %d layers)",
                          path, f.e[i].name, model_kind_name(base), base->n_layer);
    st_close(&f);
    if (rc) lora_free(lo);
    return rc;
}

int peft_save_moments(const Lora *lo, const char *dir, char *err, size_t errlen) {
    if (!lo->m) return util_err(err, errlen, "lora: adapters without moments (not trainable)");
    int nm, nv;
    StOut *m = peft_outs(lo, lo->m, "m.", &nm), *v = peft_outs(lo, lo->v, "v.", &nv);
    StOut *all = CALLOC_CHECK((size_t)(nm + nv), sizeof *all);
    memcpy(all, m, (size_t)nm * sizeof *all);
    memcpy(all + nm, v, (size_t)nv * sizeof *all);
    char path[FIO_PATH_CAP];
    int rc = fio_path_join(path, dir, PEFT_MOMENTS, err, errlen);
    if (!rc) rc = st_write(path, all, nm + nv, 0, err, errlen);
    free(m); free(v); free(all);
    return rc ? -1 : 0;
}

int peft_load_moments(Lora *lo, const char *dir, char *err, size_t errlen) {
    if (!lo->m) return util_err(err, errlen, "lora: adapters without moments (not trainable)");
    char path[FIO_PATH_CAP];
    StFile f;
    if (fio_path_join(path, dir, PEFT_MOMENTS, err, errlen) || st_open(&f, path, err, errlen))
        return -1;
    int rc = 0;
    for (int which = 0; which < 2 && !rc; which++) {
        int n;
        float *buf = which ? lo->v : lo->m;
        StOut *o = peft_outs(lo, buf, which ? "v." : "m.", &n);
        for (int i = 0; i < n && !rc; i++)
            rc = peft_take(&f, o[i].name, o[i].ndim, o[i].shape[0], o[i].shape[1],
                           buf + (o[i].data - buf), path, err, errlen);
        free(o);
    }
    for (int i = 0; i < f.n && !rc; i++)
        if (!f.e[i].used)
            rc = util_err(err, errlen, "%s: tensor %s is no moment of these adapters", path,
                          f.e[i].name);
    st_close(&f);
    return rc;
}

int peft_state_put(const Lora *lo, CkptTrainerState *st, char *err, size_t errlen) {
    if (ckpt_state_set_int(st, "lora.seed", (int64_t)lo->seed, err, errlen) ||
        ckpt_state_set_int(st, "lora.dropout_call", (int64_t)lo->dropout_call, err, errlen))
        return -1;
    return 0;
}

int peft_state_get(Lora *lo, const CkptTrainerState *st, char *err, size_t errlen) {
    int64_t seed, call;
    if (ckpt_state_get_int(st, "lora.seed", &seed, err, errlen) ||
        ckpt_state_get_int(st, "lora.dropout_call", &call, err, errlen))
        return -1;
    if (call < 0) return util_err(err, errlen, "trainer state: lora.dropout_call is negative");
    lo->seed = (uint64_t)seed;
    lo->dropout_call = (uint64_t)call;
    return 0;
}
