// Checkpoint directories: config.json, model.safetensors, tokenizer files, trainer state.
// See checkpoint.h for the layout, the atomic-save protocol and the reader rule.
#include "checkpoint.h"
#include "fileio.h"
#include "safetensors.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIR_CAP         (FIO_PATH_CAP - 64)   // a checkpoint path leaves room for ".tmp.<pid>.<n>"
#define EXACT_INT_MAX   9007199254740992.0  // 2^53: JSON numbers are exact integers up to here
#define STATE_FORMAT    "rlhf.c trainer state"
#define STATE_VERSION   1

// ---------------------------------------------------------------------------------------------
// Paths and small file-system helpers
// ---------------------------------------------------------------------------------------------

// Copies dir without trailing slashes into out[DIR_CAP] ("/" stays "/").
static int norm_dir(const char *dir, char *out, char *err, size_t errlen) {
    if (!dir || !dir[0]) return util_err(err, errlen, "checkpoint: empty directory path");
    size_t n = strlen(dir);
    while (n > 1 && dir[n - 1] == '/') n--;
    if (n >= DIR_CAP) return util_err(err, errlen, "checkpoint: path too long: %.80s...", dir);
    memcpy(out, dir, n);
    out[n] = 0;
    return 0;
}


// Parent directory of a normalised path, and the last component.
static void path_split(const char *d, char *parent, char *base) {
    const char *slash = strrchr(d, '/');
    if (!slash) { strcpy(parent, "."); strcpy(base, d); return; }
    if (slash == d) strcpy(parent, "/");
    else { memcpy(parent, d, (size_t)(slash - d)); parent[slash - d] = 0; }
    strcpy(base, slash + 1);
}

enum { PK_ABSENT = 0, PK_DIR = 1, PK_OTHER = 2 };
static int path_kind(const char *p) {
    struct stat st;
    if (lstat(p, &st)) return errno == ENOENT || errno == ENOTDIR ? PK_ABSENT : PK_OTHER;
    if (S_ISLNK(st.st_mode)) { if (stat(p, &st)) return PK_OTHER; }   // follow a link to a dir
    return S_ISDIR(st.st_mode) ? PK_DIR : PK_OTHER;
}










// Removes a directory that holds only plain files (a checkpoint or a temporary one), removing
// config.json (an adapter checkpoint's adapter_config.json) last so that a half-removed directory never looks like a complete checkpoint to
// anything but the reader rule. Refuses (touching nothing) if it holds a subdirectory.
static int remove_flat_dir(const char *path, char *err, size_t errlen) {
    for (int pass = 0; pass < 3;
         pass++) { // 0: check, 1: everything but config.json, 2: config.json
        DIR *d = opendir(path);
        if (!d)
            return util_err(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
        struct dirent *e;
        int rc = 0;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            int is_config = !strcmp(e->d_name, "config.json") ||
                            !strcmp(e->d_name, "adapter_config.json");
            if (pass == 2 && !is_config) continue;
            if (pass == 1 && is_config) continue;
            char p[FIO_PATH_CAP];
            if (snprintf(p, sizeof p, "%s/%s", path, e->d_name) >= (int)sizeof p) {
                rc = util_err(err, errlen, "%s: name too long", path);
                break;
            }
            struct stat st;
            if (pass == 0) {
                if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode)) {
                    rc = util_err(err, errlen, "not removing %s: it holds a directory (%s)", path,
                                  e->d_name);
                    break;
                }
            } else if (unlink(p) && errno != ENOENT) {
                rc = util_err(err, errlen, "%s: cannot remove: %s", p, strerror(errno));
                break;
            }
        }
        closedir(d);
        if (rc) return -1;
    }
    if (rmdir(path))
        return util_err(err, errlen, "%s: cannot remove directory: %s", path, strerror(errno));
    return 0;
}

// The reader rule: DIR if it exists, else DIR.old if that exists.
static int resolve_dir(const char *dir, char *out, int *from_old, char *err, size_t errlen) {
    char d[DIR_CAP];
    if (norm_dir(dir, d, err, errlen)) return -1;
    *from_old = 0;
    int k = path_kind(d);
    if (k == PK_DIR) { strcpy(out, d); return 0; }
    if (k == PK_OTHER) return util_err(err, errlen, "%s: not a checkpoint directory", d);
    snprintf(out, FIO_PATH_CAP, "%s.old", d);
    if (path_kind(out) == PK_DIR) { *from_old = 1; return 0; }
    return util_err(err, errlen, "%s: no such checkpoint directory", d);
}

int ckpt_recover(const char *dir, char *err, size_t errlen) {
    char d[DIR_CAP], old[FIO_PATH_CAP], parent[FIO_PATH_CAP], base[FIO_PATH_CAP];
    if (norm_dir(dir, d, err, errlen)) return -1;
    snprintf(old, sizeof old, "%s.old", d);
    path_split(d, parent, base);
    int kd = path_kind(d), ko = path_kind(old);
    if (kd == PK_ABSENT && ko == PK_DIR) {
        // crashed between "DIR -> DIR.old" and "DIR.tmp -> DIR": DIR.old is complete
        if (rename(old, d))
            return util_err(err, errlen, "%s: cannot rename to %s: %s", old, d, strerror(errno));
        if (fio_fsync_dir(parent, err, errlen)) return -1;
    } else if (kd == PK_DIR && ko == PK_DIR) {
        // crashed after the new DIR was in place: DIR.old is garbage
        if (remove_flat_dir(old, err, errlen)) return -1;
    }
    DIR *pd = opendir(parent);
    if (!pd) return 0;   // no parent: nothing to clean (a save reports the real problem)
    char prefix[FIO_PATH_CAP + 8];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    size_t pl = strlen(prefix);
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(pd))) {
        if (strncmp(e->d_name, prefix, pl)) continue;
        char p[FIO_PATH_CAP];
        if (snprintf(p, sizeof p, "%s/%s", parent, e->d_name) >= (int)sizeof p) continue;
        if (path_kind(p) != PK_DIR) continue;
        if (remove_flat_dir(p, err, errlen)) { rc = -1; break; }
    }
    closedir(pd);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Half precision (the public names of safetensors.h's conversions)
// ---------------------------------------------------------------------------------------------

float ckpt_f16_to_f32(uint16_t h) { return st_f16_to_f32(h); }
float ckpt_bf16_to_f32(uint16_t b) { return st_bf16_to_f32(b); }
uint16_t ckpt_f32_to_bf16(float x) { return st_f32_to_bf16(x); }

int ckpt_parse_dtype(const char *s, int *dtype, char *err, size_t errlen) {
    if (s && !strcmp(s, "float32")) *dtype = CKPT_DTYPE_FLOAT32;
    else if (s && !strcmp(s, "bfloat16")) *dtype = CKPT_DTYPE_BFLOAT16;
    else
        return util_err(err, errlen, "save_dtype must be float32 or bfloat16 (got \"%.40s\")",
                        s ? s : "");
    return 0;
}

// ---------------------------------------------------------------------------------------------
// JSON helpers (cJSON)
// ---------------------------------------------------------------------------------------------

// JSON value it (named key) as an integral number in [lo, hi]: 1, or -1 with a message.
static int json_int_item(const cJSON *it, const char *key, int64_t lo, int64_t hi, int64_t *out,
                         const char *path, char *err, size_t errlen) {
    double v = it->valuedouble;
    if (!cJSON_IsNumber(it) || !isfinite(v) || v != floor(v) || fabs(v) > EXACT_INT_MAX)
        return util_err(err, errlen, "%s: \"%s\" must be an integer", path, key);
    if (v < (double)lo || v > (double)hi)
        return util_err(err, errlen, "%s: \"%s\" is %.0f, outside %" PRId64 "..%" PRId64, path, key,
                        v, lo, hi);
    *out = (int64_t)v;
    return 1;
}

// An integral JSON number in [lo, hi]. Returns 1 found, 0 absent (or null when null_ok), -1 bad.
static int json_get_int(const cJSON *obj, const char *key, int64_t lo, int64_t hi, int null_ok,
                        int64_t *out, const char *path, char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!it) return 0;
    if (null_ok && cJSON_IsNull(it)) return 0;
    return json_int_item(it, key, lo, hi, out, path, err, errlen);
}

// A finite JSON number; absent or null: *out = def. Returns 1 found, 0 default, -1 bad.
static int json_get_num(const cJSON *obj, const char *key, double def, double *out,
                        const char *path, char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = def;
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsNumber(it) || !isfinite(it->valuedouble))
        return util_err(err, errlen, "%s: \"%s\" must be a number", path, key);
    *out = it->valuedouble;
    return 1;
}

// A JSON boolean; absent or null: *out = def. Returns 1 found, 0 default, -1 bad.
static int json_get_bool(const cJSON *obj, const char *key, int def, int *out, const char *path,
                         char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = def;
    if (!it || cJSON_IsNull(it)) return 0;
    if (!cJSON_IsBool(it))
        return util_err(err, errlen, "%s: \"%s\" must be true or false", path, key);
    *out = cJSON_IsTrue(it);
    return 1;
}


// Decimal string -> u64 / i64, the whole string, no sign for u64.
static int parse_u64(const char *s, uint64_t *out) {
    if (!s || !s[0] || s[0] < '0' || s[0] > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}

static int parse_i64(const char *s, int64_t *out) {
    if (!s || !s[0] || !(s[0] == '-' || (s[0] >= '0' && s[0] <= '9'))) return 0;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return 0;
    *out = v;
    return 1;
}



// ---------------------------------------------------------------------------------------------
// config.json
// ---------------------------------------------------------------------------------------------

// The Hugging Face model_type of each family, the prefix of its architectures and the default
// max_position_embeddings of its config class (used when config.json has none).
typedef struct { const char *model_type, *prefix; int family, max_pos; } CkptFamily;
static const CkptFamily ckpt_families[] = {
    {"gpt2", "GPT2", MODEL_FAMILY_GPT2, 1024},
    {"llama", "Llama", MODEL_FAMILY_LLAMA, 2048},
    {"mistral", "Mistral", MODEL_FAMILY_MISTRAL, 131072},
    {"qwen2", "Qwen2", MODEL_FAMILY_QWEN2, 32768},
    {"qwen3", "Qwen3", MODEL_FAMILY_QWEN3, 32768}};
#define CKPT_NUM_FAMILIES ((int)(sizeof ckpt_families / sizeof ckpt_families[0]))

static const CkptFamily *family_by_id(int family) {
    for (int i = 0; i < CKPT_NUM_FAMILIES; i++)
        if (ckpt_families[i].family == family) return &ckpt_families[i];
    return NULL;
}

// A model's config can be written in its family's config.json: the block kind goes with the
// family, and what the family implies (Qwen2's q/k/v biases, Qwen3's q/k norms) holds.
static int config_check_family(const ModelConfig *c, char *err, size_t errlen) {
    const CkptFamily *f = family_by_id(c->family);
    int gpt2 = c->arch == MODEL_ARCH_GPT2;
    if (!f || (c->arch != MODEL_ARCH_GPT2 && c->arch != MODEL_ARCH_LLAMA) ||
        gpt2 != (c->family == MODEL_FAMILY_GPT2))
        return util_err(err, errlen, "family %d does not go with architecture %d",
                        c->family, c->arch);
    if (gpt2) return 0;
    if (c->qkv_bias != (c->family == MODEL_FAMILY_QWEN2))
        return util_err(err, errlen, "%s q/k/v biases: model_type %s %s them",
                        c->qkv_bias ? "with" : "without", f->model_type,
                        c->qkv_bias ? "cannot express" : "implies");
    if (c->qk_norm != (c->family == MODEL_FAMILY_QWEN3))
        return util_err(err, errlen, "%s q/k norms: model_type %s %s them",
                        c->qk_norm ? "with" : "without", f->model_type,
                        c->qk_norm ? "cannot express" : "implies");
    return 0;
}

// Shortest decimal that reads back as the same float ("1e-05" for 1e-5f).
static void float_short(char *buf, size_t n, float x) {
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, n, "%.*g", prec, (double)x);
        if (strtof(buf, NULL) == x) break;
    }
}

static double float_as_short_double(float x) {
    char buf[48];
    float_short(buf, sizeof buf, x);
    return strtod(buf, NULL);
}

// A float the way Python's json writes one: shortest digits, always with '.' or an exponent
// ("10000.0", "1e-05"), so that transformers reads back a float where it expects one.
static void add_float(cJSON *r, const char *key, float x) {
    char buf[48];
    float_short(buf, sizeof buf, x);
    if (!strpbrk(buf, ".e")) strcat(buf, ".0");
    cJSON_AddItemToObject(r, key, cJSON_CreateRaw(buf));
}

static int config_write_gpt2(const char *path, const ModelConfig *c, const CkptSaveOptions *opt,
                             char *err, size_t errlen) {
    cJSON *r = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    if (c->lm_head) cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2LMHeadModel"));
    if (c->score_head)
        cJSON_AddItemToArray(arch, cJSON_CreateString("GPT2ForSequenceClassification"));
    cJSON_AddItemToObject(r, "architectures", arch);
    cJSON_AddStringToObject(r, "model_type", "gpt2");
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    cJSON_AddNumberToObject(r, "n_positions", c->max_seq_len);
    cJSON_AddNumberToObject(r, "n_ctx", c->max_seq_len);
    cJSON_AddNumberToObject(r, "n_embd", c->n_embd);
    cJSON_AddNumberToObject(r, "n_layer", c->n_layer);
    cJSON_AddNumberToObject(r, "n_head", c->n_head);
    cJSON_AddNumberToObject(r, "layer_norm_epsilon", float_as_short_double(c->ln_eps));
    cJSON_AddStringToObject(r, "activation_function", "gelu_new");
    cJSON_AddTrueToObject(r, "tie_word_embeddings");
    if (c->score_head) cJSON_AddNumberToObject(r, "num_labels", 1);
    if (opt && opt->has_token_ids) {
        cJSON_AddNumberToObject(r, "bos_token_id", opt->bos_token_id);
        cJSON_AddNumberToObject(r, "eos_token_id", opt->eos_token_id);
    }
    int bf16 = opt && opt->save_dtype == CKPT_DTYPE_BFLOAT16;
    cJSON_AddStringToObject(r, "torch_dtype", bf16 ? "bfloat16" : "float32");
    if (!r || !arch) DIE("cJSON: out of memory");
    int rc = fio_write_json(path, r, err, errlen);
    cJSON_Delete(r);
    return rc;
}

// rope_scaling of type llama3, keys sorted.
static cJSON *rope_scaling_json(const ModelConfig *c) {
    cJSON *s = cJSON_CreateObject();
    add_float(s, "factor", c->rope_factor);
    add_float(s, "high_freq_factor", c->rope_high_freq_factor);
    add_float(s, "low_freq_factor", c->rope_low_freq_factor);
    cJSON_AddNumberToObject(s, "original_max_position_embeddings", c->rope_original_max_pos);
    cJSON_AddStringToObject(s, "rope_type", "llama3");
    return s;
}

// The keys of LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config in the sorted order of
// transformers' to_json_string, with the values our model runs with.
static int config_write_llama(const char *path, const ModelConfig *c, const CkptSaveOptions *opt,
                              char *err, size_t errlen) {
    const CkptFamily *f = family_by_id(c->family);
    int fam = c->family, llama = fam == MODEL_FAMILY_LLAMA, mistral = fam == MODEL_FAMILY_MISTRAL;
    int qwen = fam == MODEL_FAMILY_QWEN2 || fam == MODEL_FAMILY_QWEN3;
    int ids = opt && opt->has_token_ids, hd = model_head_dim(c);
    int hd_implied = c->n_embd % c->n_head == 0 && hd == c->n_embd / c->n_head;
    char name[64];
    cJSON *r = cJSON_CreateObject(), *arch = cJSON_CreateArray();
    if (c->lm_head) {
        snprintf(name, sizeof name, "%sForCausalLM", f->prefix);
        cJSON_AddItemToArray(arch, cJSON_CreateString(name));
    }
    if (c->score_head) {
        snprintf(name, sizeof name, "%sForSequenceClassification", f->prefix);
        cJSON_AddItemToArray(arch, cJSON_CreateString(name));
    }
    cJSON_AddItemToObject(r, "architectures", arch);
    if (llama || fam == MODEL_FAMILY_QWEN3) cJSON_AddFalseToObject(r, "attention_bias");
    add_float(r, "attention_dropout", 0.0f);
    if (ids) cJSON_AddNumberToObject(r, "bos_token_id", opt->bos_token_id);
    if (ids) cJSON_AddNumberToObject(r, "eos_token_id", opt->eos_token_id);
    if (fam != MODEL_FAMILY_QWEN2 || !hd_implied) cJSON_AddNumberToObject(r, "head_dim", hd);
    cJSON_AddStringToObject(r, "hidden_act", "silu");
    cJSON_AddNumberToObject(r, "hidden_size", c->n_embd);
    if (c->score_head) {   // num_labels 1, the way PretrainedConfig serialises it
        cJSON *id2 = cJSON_CreateObject();
        cJSON_AddStringToObject(id2, "0", "LABEL_0");
        cJSON_AddItemToObject(r, "id2label", id2);
    }
    add_float(r, "initializer_range", 0.02f);
    cJSON_AddNumberToObject(r, "intermediate_size", model_ff(c));
    if (c->score_head) {
        cJSON *l2 = cJSON_CreateObject();
        cJSON_AddNumberToObject(l2, "LABEL_0", 0);
        cJSON_AddItemToObject(r, "label2id", l2);
    }
    cJSON_AddNumberToObject(r, "max_position_embeddings", c->max_seq_len);
    if (qwen) cJSON_AddNumberToObject(r, "max_window_layers", c->n_layer);
    if (llama) cJSON_AddFalseToObject(r, "mlp_bias");
    cJSON_AddStringToObject(r, "model_type", f->model_type);
    cJSON_AddNumberToObject(r, "num_attention_heads", c->n_head);
    cJSON_AddNumberToObject(r, "num_hidden_layers", c->n_layer);
    cJSON_AddNumberToObject(r, "num_key_value_heads", model_kv_heads(c));
    if (llama) cJSON_AddNumberToObject(r, "pretraining_tp", 1);
    add_float(r, "rms_norm_eps", c->ln_eps);
    if (c->rope_scaling == MODEL_ROPE_LLAMA3)
        cJSON_AddItemToObject(r, "rope_scaling", rope_scaling_json(c));
    else if (!mistral) cJSON_AddNullToObject(r, "rope_scaling");
    add_float(r, "rope_theta", c->rope_theta);
    if (mistral || qwen) cJSON_AddNullToObject(r, "sliding_window");
    cJSON_AddBoolToObject(r, "tie_word_embeddings", !c->untied);
    int bf16 = opt && opt->save_dtype == CKPT_DTYPE_BFLOAT16;
    cJSON_AddStringToObject(r, "torch_dtype", bf16 ? "bfloat16" : "float32");
    cJSON_AddTrueToObject(r, "use_cache");
    if (qwen) cJSON_AddFalseToObject(r, "use_sliding_window");
    cJSON_AddNumberToObject(r, "vocab_size", c->vocab_size);
    if (!r || !arch) DIE("cJSON: out of memory");
    int rc = fio_write_json(path, r, err, errlen);
    cJSON_Delete(r);
    return rc;
}

static int config_write(const char *path, const ModelConfig *c, const CkptSaveOptions *opt,
                        char *err, size_t errlen) {
    return c->arch == MODEL_ARCH_GPT2 ? config_write_gpt2(path, c, opt, err, errlen)
                                      : config_write_llama(path, c, opt, err, errlen);
}

// GPT2Config keys into *c.
static int config_parse_gpt2(const cJSON *r, ModelConfig *c, const char *path, char *err,
                             size_t errlen) {
    static const char *required[] = {"n_layer", "n_head", "n_embd", "vocab_size"};
    int64_t v[4], npos = -1, nctx = -1;
    for (int i = 0; i < 4; i++) {
        int got = json_get_int(r, required[i], INT32_MIN, INT32_MAX, 0, &v[i], path, err, errlen);
        if (got < 0) return -1;
        if (!got) return util_err(err, errlen, "%s: missing key \"%s\"", path, required[i]);
    }
    c->n_layer = (int)v[0]; c->n_head = (int)v[1]; c->n_embd = (int)v[2]; c->vocab_size = (int)v[3];
    if (json_get_int(r, "n_positions", INT32_MIN, INT32_MAX, 0, &npos, path, err, errlen) < 0 ||
        json_get_int(r, "n_ctx", INT32_MIN, INT32_MAX, 0, &nctx, path, err, errlen) < 0)
        return -1;
    if (npos < 0 && nctx < 0) return util_err(err, errlen, "%s: missing key \"n_positions\"", path);
    if (npos >= 0 && nctx >= 0 && npos != nctx)
        return util_err(err, errlen, "%s: n_positions (%" PRId64 ") and n_ctx (%" PRId64 ") differ",
                        path, npos, nctx);
    c->max_seq_len = (int)(npos >= 0 ? npos : nctx);
    double eps;
    if (json_get_num(r, "layer_norm_epsilon", 1e-5, &eps, path, err, errlen) < 0) return -1;
    c->ln_eps = (float)eps;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "activation_function");
    if (it && (!cJSON_IsString(it) || (strcmp(it->valuestring, "gelu_new") &&
                                       strcmp(it->valuestring, "gelu_pytorch_tanh"))))
        return util_err(err, errlen,
                        "%s: activation_function must be \"gelu_new\" (GELU, tanh approximation)",
                        path);
    int64_t ninner;
    int got = json_get_int(r, "n_inner", INT32_MIN, INT32_MAX, 1, &ninner, path, err, errlen);
    if (got < 0) return -1;
    if (got && ninner != 4 * (int64_t)c->n_embd)
        return util_err(err, errlen, "%s: n_inner must be 4 * n_embd or null", path);
    static const struct { const char *key; int want;
    } flags[] = {{"tie_word_embeddings", 1},
                 {"scale_attn_weights", 1},
                 {"scale_attn_by_inverse_layer_idx", 0},
                 {"add_cross_attention", 0}};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        it = cJSON_GetObjectItemCaseSensitive(r, flags[i].key);
        if (it && (!cJSON_IsBool(it) || cJSON_IsTrue(it) != flags[i].want))
            return util_err(err, errlen, "%s: \"%s\" must be %s (GPT-2 as this engine runs it)",
                            path, flags[i].key, flags[i].want ? "true" : "false");
    }
    return 0;
}

// rope_theta and rope_scaling (or transformers 5's rope_parameters, which holds both) into *c.
static int config_parse_rope(const cJSON *r, ModelConfig *c, const char *path, char *err,
                             size_t errlen) {
    const char *key = "rope_parameters";
    const cJSON *s = cJSON_GetObjectItemCaseSensitive(r, key);
    if (!s || cJSON_IsNull(s)) {
        key = "rope_scaling";
        s = cJSON_GetObjectItemCaseSensitive(r, key);
    }
    double theta;
    if (json_get_num(r, "rope_theta", 10000.0, &theta, path, err, errlen) < 0) return -1;
    if (cJSON_IsObject(s) && !strcmp(key, "rope_parameters") &&
        json_get_num(s, "rope_theta", theta, &theta, path, err, errlen) < 0)
        return -1;
    if (!(theta > 0) || theta > 3e38)
        return util_err(err, errlen, "%s: \"rope_theta\" must be positive (got %g)", path, theta);
    c->rope_theta = (float)theta;
    if (!s || cJSON_IsNull(s)) return 0;
    if (!cJSON_IsObject(s))
        return util_err(err, errlen, "%s: \"%s\" must be null or an object", path, key);
    const cJSON *ty = cJSON_GetObjectItemCaseSensitive(s, "rope_type");
    if (!ty) ty = cJSON_GetObjectItemCaseSensitive(s, "type");
    if (!cJSON_IsString(ty))
        return util_err(err, errlen, "%s: \"%s\" needs a string rope_type", path, key);
    if (!strcmp(ty->valuestring, "default")) return 0;
    if (strcmp(ty->valuestring, "llama3"))
        return util_err(err, errlen, "%s: \"%s\" of type \"%.40s\" is not supported (only llama3)",
                        path, key, ty->valuestring);
    static const char *known[] = {"rope_type", "type", "factor", "low_freq_factor",
                                  "high_freq_factor", "original_max_position_embeddings",
                                  "rope_theta"};
    for (const cJSON *k = s->child; k; k = k->next) {
        size_t i = 0;
        while (i < sizeof known / sizeof known[0] && strcmp(k->string, known[i])) i++;
        if (i == sizeof known / sizeof known[0])
            return util_err(err, errlen, "%s: \"%s\" has an unsupported key \"%.40s\"", path, key,
                            k->string);
    }
    static const char *need[] = {"factor", "low_freq_factor", "high_freq_factor"};
    double v[3];
    for (int i = 0; i < 3; i++) {
        int got = json_get_num(s, need[i], 0, &v[i], path, err, errlen);
        if (got <= 0)
            return got < 0 ? -1 : util_err(err, errlen, "%s: \"%s\" of type llama3 needs \"%s\"",
                                           path, key, need[i]);
    }
    if (!(v[0] >= 1) || !(v[1] > 0) || !(v[2] > v[1]))
        return util_err(err, errlen, "%s: \"%s\": llama3 needs factor >= 1 and high_freq_factor > "
                        "low_freq_factor > 0", path, key);
    int64_t om;
    int got = json_get_int(s, "original_max_position_embeddings", 1, INT32_MAX, 0, &om, path, err,
                           errlen);
    if (got <= 0)
        return got < 0 ? -1 : util_err(err, errlen, "%s: \"%s\" of type llama3 needs "
                                       "\"original_max_position_embeddings\"", path, key);
    c->rope_scaling = MODEL_ROPE_LLAMA3;
    c->rope_factor = (float)v[0];
    c->rope_low_freq_factor = (float)v[1];
    c->rope_high_freq_factor = (float)v[2];
    c->rope_original_max_pos = (int)om;
    return 0;
}

// What the family's classes would run that this engine does not: refused, naming the key.
static int config_refuse_unsupported(const cJSON *r, const ModelConfig *c, const char *path,
                                     char *err, size_t errlen) {
    static const char *moe[] = {"num_experts", "num_local_experts", "num_experts_per_tok",
                                "n_routed_experts", "n_shared_experts", "moe_intermediate_size",
                                "shared_expert_intermediate_size"};
    for (size_t i = 0; i < sizeof moe / sizeof moe[0]; i++) {
        const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, moe[i]);
        if (it && !cJSON_IsNull(it) && !(cJSON_IsNumber(it) && it->valuedouble == 0))
            return util_err(err, errlen, "%s: \"%s\" is set: mixture-of-experts models are not "
                            "supported", path, moe[i]);
    }
    int fam = c->family, qwen = fam == MODEL_FAMILY_QWEN2 || fam == MODEL_FAMILY_QWEN3, on;
    int64_t win;
    int got = json_get_int(r, "sliding_window", 0, INT32_MAX, 1, &win, path, err, errlen);
    if (got < 0) return -1;
    int short_window = got && win < c->max_seq_len;   // a window as long as the context is none
    if (fam == MODEL_FAMILY_MISTRAL && short_window)
        return util_err(err, errlen, "%s: \"sliding_window\" is %" PRId64 ", below "
                        "max_position_embeddings %d: sliding-window attention is not supported",
                        path, win, c->max_seq_len);
    if (qwen && json_get_bool(r, "use_sliding_window", 0, &on, path, err, errlen) < 0) return -1;
    if (qwen && on && short_window)
        return util_err(err, errlen, "%s: \"use_sliding_window\" is true (window %" PRId64 "): "
                        "sliding-window attention is not supported", path, win);
    const cJSON *lt = cJSON_GetObjectItemCaseSensitive(r, "layer_types");
    for (const cJSON *a = cJSON_IsArray(lt) ? lt->child : NULL; a; a = a->next)
        if (!cJSON_IsString(a) || strcmp(a->valuestring, "full_attention"))
            return util_err(err, errlen, "%s: \"layer_types\" lists a layer of type %s%.40s%s: "
                            "only full_attention is supported", path, cJSON_IsString(a) ? "\"" : "",
                            cJSON_IsString(a) ? a->valuestring : "(not a string)",
                            cJSON_IsString(a) ? "\"" : "");
    if (lt && !cJSON_IsNull(lt) && !cJSON_IsArray(lt))
        return util_err(err, errlen, "%s: \"layer_types\" must be a list", path);
    // biases the family's classes read: Llama's attention_bias / mlp_bias, Qwen3's attention_bias
    // (Qwen2's q/k/v biases are implied by its model_type; Mistral and Qwen2 have no such keys)
    static const struct { const char *key; int family; const char *what; } bias[] = {
        {"attention_bias", MODEL_FAMILY_LLAMA, "attention projection biases"},
        {"mlp_bias", MODEL_FAMILY_LLAMA, "MLP biases"},
        {"attention_bias", MODEL_FAMILY_QWEN3, "attention projection biases"}};
    for (size_t i = 0; i < sizeof bias / sizeof bias[0]; i++) {
        if (bias[i].family != fam) continue;
        if (json_get_bool(r, bias[i].key, 0, &on, path, err, errlen) < 0) return -1;
        if (on)
            return util_err(err, errlen, "%s: \"%s\" is true: %s are not supported", path,
                            bias[i].key, bias[i].what);
    }
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(r, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return util_err(err, errlen, "%s: \"hidden_act\" is %s%.40s%s: only silu (SwiGLU) is "
                        "supported", path, cJSON_IsString(act) ? "\"" : "",
                        cJSON_IsString(act) ? act->valuestring : "not a string",
                        cJSON_IsString(act) ? "\"" : "");
    return 0;
}

// LlamaConfig / MistralConfig / Qwen2Config / Qwen3Config keys into *c (see checkpoint.h).
static int config_parse_llama(const cJSON *r, const CkptFamily *f, ModelConfig *c,
                              const char *path, char *err, size_t errlen) {
    c->arch = MODEL_ARCH_LLAMA;
    c->family = f->family;
    static const char *required[] = {"num_hidden_layers", "num_attention_heads", "hidden_size",
                                     "vocab_size", "intermediate_size"};
    int64_t v[5], x;
    for (int i = 0; i < 5; i++) {
        int got = json_get_int(r, required[i], i == 4 ? 1 : INT32_MIN, INT32_MAX, 0, &v[i], path,
                               err, errlen);
        if (got < 0) return -1;
        if (!got) return util_err(err, errlen, "%s: missing key \"%s\"", path, required[i]);
    }
    c->n_layer = (int)v[0]; c->n_head = (int)v[1]; c->n_embd = (int)v[2];
    c->vocab_size = (int)v[3]; c->d_ff = (int)v[4];
    int got = json_get_int(r, "num_key_value_heads", 1, INT32_MAX, 1, &x, path, err, errlen);
    if (got < 0) return -1;
    c->n_kv_head = got ? (int)x : c->n_head;
    if ((got = json_get_int(r, "head_dim", 1, INT32_MAX, 1, &x, path, err, errlen)) < 0) return -1;
    c->head_dim = got ? (int)x : 0;
    got = json_get_int(r, "max_position_embeddings", INT32_MIN, INT32_MAX, 0, &x, path, err,
                       errlen);
    if (got < 0) return -1;
    c->max_seq_len = got ? (int)x : f->max_pos;
    double eps;
    int tie;
    if (json_get_num(r, "rms_norm_eps", 1e-6, &eps, path, err, errlen) < 0 ||
        json_get_bool(r, "tie_word_embeddings", 0, &tie, path, err, errlen) < 0)
        return -1;
    c->ln_eps = (float)eps;
    c->untied = !tie;
    c->qkv_bias = f->family == MODEL_FAMILY_QWEN2;
    c->qk_norm = f->family == MODEL_FAMILY_QWEN3;
    if (config_parse_rope(r, c, path, err, errlen)) return -1;
    return config_refuse_unsupported(r, c, path, err, errlen);
}

// architectures: the family's LM and sequence-classification classes set lm_head / score_head
// (absent: an LM).
static int config_parse_arch(const cJSON *r, const CkptFamily *f, ModelConfig *c,
                             const char *path, char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "architectures");
    if (!it || cJSON_IsNull(it)) { c->lm_head = 1; return 0; }
    if (!cJSON_IsArray(it) || !it->child)
        return util_err(err, errlen, "%s: \"architectures\" must be a non-empty array of names",
                        path);
    int gpt2 = f->family == MODEL_FAMILY_GPT2;
    char lm[64], bare[64], score[64];
    snprintf(lm, sizeof lm, "%s%s", f->prefix, gpt2 ? "LMHeadModel" : "ForCausalLM");
    snprintf(bare, sizeof bare, "%s", gpt2 ? "GPT2Model" : "");  // GPT-2's head is the tied wte
    snprintf(score, sizeof score, "%sForSequenceClassification", f->prefix);
    for (const cJSON *a = it->child; a; a = a->next) {
        const char *s = cJSON_IsString(a) ? a->valuestring : NULL;
        if (s && (!strcmp(s, lm) || (bare[0] && !strcmp(s, bare)))) c->lm_head = 1;
        else if (s && !strcmp(s, score)) c->score_head = 1;
        else
            return util_err(err, errlen, "%s: unsupported architecture %s%.60s%s (%s, %s)", path,
                            s ? "\"" : "", s ? s : "(not a string)", s ? "\"" : "", lm, score);
    }
    return 0;
}

// A reward/value head has one label: num_labels (GPT-2's files) or id2label (what
// PretrainedConfig writes) must say 1 when present.
static int config_check_labels(const cJSON *r, const char *path, char *err, size_t errlen) {
    int64_t x;
    int got = json_get_int(r, "num_labels", INT32_MIN, INT32_MAX, 0, &x, path, err, errlen);
    if (got < 0) return -1;
    if (got && x != 1)
        return util_err(err, errlen, "%s: num_labels is %" PRId64 "; a reward/value head has 1",
                        path, x);
    const cJSON *id2 = cJSON_GetObjectItemCaseSensitive(r, "id2label");
    if (id2 && !cJSON_IsNull(id2) && (!cJSON_IsObject(id2) || cJSON_GetArraySize(id2) != 1))
        return util_err(err, errlen, "%s: \"id2label\" has %d labels; a reward/value head has 1",
                        path, cJSON_IsObject(id2) ? cJSON_GetArraySize(id2) : -1);
    return 0;
}

// bos_token_id / eos_token_id: an id of the vocabulary, null or absent (-1), or a list of them
// (Llama 3 lists several end-of-sequence ids): its first.
static int config_token_id(const cJSON *r, const char *key, int vocab, int *out, const char *path,
                           char *err, size_t errlen) {
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, key);
    *out = -1;
    if (cJSON_IsArray(it)) it = it->child;
    if (!it || cJSON_IsNull(it)) return 0;
    int64_t x;
    if (json_int_item(it, key, 0, (int64_t)vocab - 1, &x, path, err, errlen) < 0) return -1;
    *out = (int)x;
    return 0;
}

static int config_parse(const char *path, ModelConfig *c, CkptInfo *info, char *err,
                        size_t errlen) {
    cJSON *r = fio_read_json(path, err, errlen);
    if (!r) return -1;
    int rc = -1, ids[2];
    memset(c, 0, sizeof(*c));
    const CkptFamily *f = &ckpt_families[0];   // no model_type: GPT-2, as the old files
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "model_type");
    if (it) {
        f = NULL;
        for (int i = 0; cJSON_IsString(it) && i < CKPT_NUM_FAMILIES; i++)
            if (!strcmp(it->valuestring, ckpt_families[i].model_type)) f = &ckpt_families[i];
        if (!f) {
            util_err(err, errlen, "%s: model_type %s%.40s%s is not supported (gpt2, llama, "
                     "mistral, qwen2, qwen3)", path, cJSON_IsString(it) ? "\"" : "",
                     cJSON_IsString(it) ? it->valuestring : "(not a string)",
                     cJSON_IsString(it) ? "\"" : "");
            goto done;
        }
    }
    if (f->family == MODEL_FAMILY_GPT2 ? config_parse_gpt2(r, c, path, err, errlen)
                                       : config_parse_llama(r, f, c, path, err, errlen))
        goto done;
    if (config_parse_arch(r, f, c, path, err, errlen) ||
        (c->score_head && config_check_labels(r, path, err, errlen)) ||
        config_token_id(r, "bos_token_id", c->vocab_size, &ids[0], path, err, errlen) ||
        config_token_id(r, "eos_token_id", c->vocab_size, &ids[1], path, err, errlen))
        goto done;
    char verr[256];
    if (model_config_validate(c, verr, sizeof verr)) {
        util_err(err, errlen, "%s: %s", path, verr);
        goto done;
    }
    if (info) { info->bos_token_id = ids[0]; info->eos_token_id = ids[1]; }
    rc = 0;
done:
    cJSON_Delete(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Trainer state
// ---------------------------------------------------------------------------------------------

void ckpt_state_init(CkptTrainerState *st) { memset(st, 0, sizeof(*st)); }

static int state_name_ok(const char *name, char *err, size_t errlen) {
    if (!name || !name[0]) return util_err(err, errlen, "trainer state: empty entry name");
    if (strlen(name) >= CKPT_NAME_MAX)
        return util_err(err, errlen, "trainer state: entry name too long: %.80s", name);
    for (const char *p = name; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == '"' || *p == '\\')
            return util_err(err, errlen, "trainer state: entry name with a control, quote or "
                            "backslash character: %s", name);
    return 0;
}

// The trainer state's two tables (ints, floats) hold entries whose first member is the name:
// these helpers see a table as n entries of stride bytes and kind ("int" or "float").
static int state_find(const void *entries, int n, size_t stride, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp((const char *)entries + (size_t)i * stride, name)) return i;
    return -1;
}

// Index of the entry called name, added at the end when absent; -1 when the table is full.
static int state_slot(void *entries, int *n, size_t stride, const char *kind, const char *name,
                      char *err, size_t errlen) {
    int i = state_find(entries, *n, stride, name);
    if (i >= 0) return i;
    if (*n >= CKPT_MAX_ENTRIES)
        return util_err(err, errlen, "trainer state: more than %d %s entries", CKPT_MAX_ENTRIES,
                        kind);
    snprintf((char *)entries + (size_t)*n * stride, CKPT_NAME_MAX, "%s", name);
    return (*n)++;
}

int ckpt_state_set_int(CkptTrainerState *st, const char *name, int64_t value, char *err,
                       size_t errlen) {
    if (state_name_ok(name, err, errlen)) return -1;
    int i = state_slot(st->ints, &st->n_ints, sizeof st->ints[0], "int", name, err, errlen);
    if (i < 0) return -1;
    st->ints[i].value = value;
    return 0;
}

int ckpt_state_set_float(CkptTrainerState *st, const char *name, double value, char *err,
                         size_t errlen) {
    if (state_name_ok(name, err, errlen)) return -1;
    if (!isfinite(value)) return util_err(err, errlen, "trainer state: %s is not finite", name);
    int i = state_slot(st->floats, &st->n_floats, sizeof st->floats[0], "float", name, err,
                       errlen);
    if (i < 0) return -1;
    st->floats[i].value = value;
    return 0;
}

int ckpt_state_get_int(const CkptTrainerState *st, const char *name, int64_t *value, char *err,
                       size_t errlen) {
    int i = state_find(st->ints, st->n_ints, sizeof st->ints[0], name);
    if (i < 0) return util_err(err, errlen, "trainer state: no int entry \"%s\"", name);
    *value = st->ints[i].value;
    return 0;
}

int ckpt_state_get_float(const CkptTrainerState *st, const char *name, double *value, char *err,
                         size_t errlen) {
    int i = state_find(st->floats, st->n_floats, sizeof st->floats[0], name);
    if (i < 0) return util_err(err, errlen, "trainer state: no float entry \"%s\"", name);
    *value = st->floats[i].value;
    return 0;
}

// Entry i of a table the caller filled: its name is terminated and valid...
static int state_entry_name_ok(const void *entries, int i, size_t stride, const char *kind,
                               char *err, size_t errlen) {
    const char *name = (const char *)entries + (size_t)i * stride;
    if (!memchr(name, 0, CKPT_NAME_MAX) || state_name_ok(name, err, errlen))
        return util_err(err, errlen, "trainer state: bad %s entry name (#%d)", kind, i);
    return 0;
}

// ...and no entry before it has the same name.
static int state_entry_unique(const void *entries, int i, size_t stride, const char *kind,
                              char *err, size_t errlen) {
    const char *name = (const char *)entries + (size_t)i * stride;
    if (state_find(entries, i, stride, name) >= 0)
        return util_err(err, errlen, "trainer state: %s %s twice", kind, name);
    return 0;
}

static int state_validate(const CkptTrainerState *st, char *err, size_t errlen) {
    if (st->step < 0 || (double)st->step > EXACT_INT_MAX)
        return util_err(err, errlen, "trainer state: step %" PRId64 " outside 0..2^53", st->step);
    if (st->n_ints < 0 || st->n_ints > CKPT_MAX_ENTRIES || st->n_floats < 0 ||
        st->n_floats > CKPT_MAX_ENTRIES)
        return util_err(err, errlen, "trainer state: bad entry counts");
    size_t int_size = sizeof st->ints[0], float_size = sizeof st->floats[0];
    for (int i = 0; i < st->n_ints; i++)
        if (state_entry_name_ok(st->ints, i, int_size, "int", err, errlen) ||
            state_entry_unique(st->ints, i, int_size, "int", err, errlen))
            return -1;
    for (int i = 0; i < st->n_floats; i++) {
        if (state_entry_name_ok(st->floats, i, float_size, "float", err, errlen)) return -1;
        if (!isfinite(st->floats[i].value))
            return util_err(err, errlen, "trainer state: %s is not finite", st->floats[i].name);
        if (state_entry_unique(st->floats, i, float_size, "float", err, errlen)) return -1;
    }
    return 0;
}

static int state_write_json(const char *path, const CkptTrainerState *st, char *err,
                            size_t errlen) {
    if (state_validate(st, err, errlen)) return -1;
    cJSON *r = cJSON_CreateObject(), *rng = cJSON_CreateArray(), *ints = cJSON_CreateObject(),
          *fl = cJSON_CreateObject();
    char num[32];
    cJSON_AddStringToObject(r, "format", STATE_FORMAT);
    cJSON_AddNumberToObject(r, "version", STATE_VERSION);
    cJSON_AddNumberToObject(r, "step", (double)st->step);
    for (int i = 0; i < 4; i++) {
        snprintf(num, sizeof num, "%" PRIu64, st->rng.s[i]);
        cJSON_AddItemToArray(rng, cJSON_CreateString(num));
    }
    cJSON_AddItemToObject(r, "rng", rng);
    for (int i = 0; i < st->n_ints; i++) {
        snprintf(num, sizeof num, "%" PRId64, st->ints[i].value);
        cJSON_AddStringToObject(ints, st->ints[i].name, num);
    }
    cJSON_AddItemToObject(r, "ints", ints);
    for (int i = 0; i < st->n_floats; i++) {
        // cJSON prints a double with 15 digits whenever that is within an epsilon of it, which
        // loses the last bit (0.1 + 0.2 becomes 0.3): print the shortest exact form ourselves
        char buf[40];
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(buf, sizeof buf, "%.*g", prec, st->floats[i].value);
            if (strtod(buf, NULL) == st->floats[i].value) break;
        }
        cJSON_AddItemToObject(fl, st->floats[i].name, cJSON_CreateRaw(buf));
    }
    cJSON_AddItemToObject(r, "floats", fl);
    if (!r || !rng || !ints || !fl) DIE("cJSON: out of memory");
    int rc = fio_write_json(path, r, err, errlen);
    cJSON_Delete(r);
    return rc;
}

// Reads the object key ("ints" or "floats") of trainer_state.json into st.
static int state_read_entries(const cJSON *r, const char *key, const char *path,
                              CkptTrainerState *st, char *err, size_t errlen) {
    const cJSON *obj = cJSON_GetObjectItemCaseSensitive(r, key);
    if (!cJSON_IsObject(obj))
        return util_err(err, errlen, "%s: \"%s\" must be an object", path, key);
    int ints = !strcmp(key, "ints");
    char sub[256];
    for (const cJSON *a = obj->child; a; a = a->next) {
        int64_t iv = 0;
        if (ints ? !cJSON_IsString(a) || !parse_i64(a->valuestring, &iv) : !cJSON_IsNumber(a))
            return util_err(err, errlen, "%s: %s.%.60s is not a %s", path, key, a->string,
                            ints ? "64-bit decimal string" : "number");
        int found = ints ? state_find(st->ints, st->n_ints, sizeof st->ints[0], a->string)
                         : state_find(st->floats, st->n_floats, sizeof st->floats[0], a->string);
        if (found >= 0)
            return util_err(err, errlen, "%s: %s.%.60s appears twice", path, key, a->string);
        if (ints ? ckpt_state_set_int(st, a->string, iv, sub, sizeof sub)
                 : ckpt_state_set_float(st, a->string, a->valuedouble, sub, sizeof sub))
            return util_err(err, errlen, "%s: %s", path, sub);
    }
    return 0;
}

static int state_parse_json(const char *path, CkptTrainerState *out, char *err, size_t errlen) {
    cJSON *r = fio_read_json(path, err, errlen);
    if (!r) return -1;
    CkptTrainerState *st = CALLOC_CHECK(1, sizeof(*st));
    int rc = -1;
    for (const cJSON *k = r->child; k; k = k->next)
        if (strcmp(k->string, "format") && strcmp(k->string, "version") &&
            strcmp(k->string, "step") && strcmp(k->string, "rng") && strcmp(k->string, "ints") &&
            strcmp(k->string, "floats")) {
            util_err(err, errlen, "%s: unknown key \"%.60s\"", path, k->string);
            goto done;
        }
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(r, "format");
    if (!cJSON_IsString(it) || strcmp(it->valuestring, STATE_FORMAT)) {
        util_err(err, errlen, "%s: \"format\" must be \"%s\"", path, STATE_FORMAT);
        goto done;
    }
    int64_t x;
    int got = json_get_int(r, "version", 0, INT32_MAX, 0, &x, path, err, errlen);
    if (got < 0) goto done;
    if (!got || x != STATE_VERSION) {
        util_err(err, errlen, "%s: \"version\" must be %d", path, STATE_VERSION);
        goto done;
    }
    got = json_get_int(r, "step", 0, INT64_MAX, 0, &st->step, path, err, errlen);
    if (got < 0) goto done;
    if (!got) { util_err(err, errlen, "%s: missing key \"step\"", path); goto done; }
    it = cJSON_GetObjectItemCaseSensitive(r, "rng");
    if (!cJSON_IsArray(it) || cJSON_GetArraySize(it) != 4) {
        util_err(err, errlen, "%s: \"rng\" must be 4 decimal strings", path);
        goto done;
    }
    int i = 0;
    for (const cJSON *a = it->child; a; a = a->next, i++)
        if (!cJSON_IsString(a) || !parse_u64(a->valuestring, &st->rng.s[i])) {
            util_err(err, errlen, "%s: rng[%d] is not an unsigned 64-bit decimal string", path, i);
            goto done;
        }
    if (!(st->rng.s[0] | st->rng.s[1] | st->rng.s[2] | st->rng.s[3])) {
        util_err(err, errlen, "%s: rng state is all zero", path);
        goto done;
    }
    if (state_read_entries(r, "ints", path, st, err, errlen) ||
        state_read_entries(r, "floats", path, st, err, errlen))
        goto done;
    *out = *st;
    rc = 0;
done:
    free(st);
    cJSON_Delete(r);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Save
// ---------------------------------------------------------------------------------------------

// Tensor list of a model for the writer: GPT-2's transformer gets the prefix "transformer." (HF
// save_pretrained naming), the Llama family's names are the HF ones already, "score.weight" is
// bare; src selects params (0), m (1) or v (2).
static StOut *model_outputs(const Model *m, int src, int *n) {
    int cnt = model_tensor_count(m), gpt2 = m->config.arch == MODEL_ARCH_GPT2;
    StOut *o = CALLOC_CHECK((size_t)cnt, sizeof(StOut));
    for (int i = 0; i < cnt; i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        if (src == 0)
            snprintf(o[i].name, sizeof o[i].name, "%s%s",
                     gpt2 && strcmp(t.name, "score.weight") ? "transformer." : "", t.name);
        else snprintf(o[i].name, sizeof o[i].name, "%s.%s", src == 1 ? "m" : "v", t.name);
        o[i].ndim = t.ndim;
        o[i].shape[0] = t.shape[0];
        o[i].shape[1] = t.shape[1];
        ptrdiff_t off = t.data - m->params_memory;
        o[i].data = src == 0 ? t.data : (src == 1 ? m->m_memory : m->v_memory) + off;
    }
    *n = cnt;
    return o;
}




int ckpt_dir_has_tokenizer(const char *dir) {
    return fio_exists(dir, "tokenizer.json") ||
           (fio_exists(dir, "vocab.json") && fio_exists(dir, "merges.txt"));
}

// Copies the tokenizer files that src has into dst (checkpoint.h); src must hold a tokenizer.
int ckpt_copy_tokenizer(const char *src, const char *dst, char *err, size_t errlen) {
    static const char *files[] = {"tokenizer.json",        "tokenizer_config.json",
                                  "special_tokens_map.json", "generation_config.json",
                                  "vocab.json",             "merges.txt"};
    if (!ckpt_dir_has_tokenizer(src))
        return util_err(err, errlen, "%s: no tokenizer.json, nor vocab.json + merges.txt", src);
    char a[FIO_PATH_CAP], b[FIO_PATH_CAP];
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        if (fio_exists(src, files[i]) &&
            (fio_path_join(a, src, files[i], err, errlen) ||
             fio_path_join(b, dst, files[i], err, errlen) || fio_copy_file(a, b, err, errlen)))
            return -1;
    return 0;
}

static int save_contents(const char *tmp, const Model *m, const CkptSaveOptions *opt, char *err,
                         size_t errlen) {
    char p[FIO_PATH_CAP];
    if (fio_path_join(p, tmp, "config.json", err, errlen) ||
        config_write(p, &m->config, opt, err, errlen))
        return -1;
    int n, rc, bf16 = opt && opt->save_dtype == CKPT_DTYPE_BFLOAT16;
    uint64_t cap = opt && opt->max_shard_bytes > 0 ? (uint64_t)opt->max_shard_bytes : 0;
    StOut *w = model_outputs(m, 0, &n);
    rc = st_write_weights(tmp, w, n, bf16, cap, err, errlen);
    free(w);
    if (rc) return -1;
    if (opt && opt->tokenizer_dir && ckpt_copy_tokenizer(opt->tokenizer_dir, tmp, err, errlen))
        return -1;
    if (opt && opt->state) {
        StOut *mv = CALLOC_CHECK(2 * (size_t)model_tensor_count(m), sizeof(StOut));
        StOut *a = model_outputs(m, 1, &n), *b = model_outputs(m, 2, &n);
        memcpy(mv, a, (size_t)n * sizeof(StOut));
        memcpy(mv + n, b, (size_t)n * sizeof(StOut));
        free(a); free(b);
        rc = fio_path_join(p, tmp, "trainer_state.safetensors", err, errlen) ||
             st_write(p, mv, 2 * n, 0, err, errlen);
        free(mv);
        if (rc) return -1;
        if (fio_path_join(p, tmp, "trainer_state.json", err, errlen) ||
            state_write_json(p, opt->state, err, errlen))
            return -1;
    }
    return fio_fsync_dir(tmp, err, errlen);
}

// What ckpt_save can check before touching the file system (d names the checkpoint).
static int save_check(const char *d, const Model *m, const CkptSaveOptions *opt, char *err,
                      size_t errlen) {
    char sub[256];
    if (config_check_family(&m->config, sub, sizeof sub))
        return util_err(err, errlen, "%s: %s", d, sub);
    if (!opt) return 0;
    if (opt->save_dtype != CKPT_DTYPE_FLOAT32 && opt->save_dtype != CKPT_DTYPE_BFLOAT16)
        return util_err(err, errlen, "%s: unknown save_dtype %d", d, opt->save_dtype);
    if (opt->max_shard_bytes < 0)
        return util_err(err, errlen, "%s: max_shard_bytes is negative", d);
    if (opt->state) {
        if (!m->m_memory || !m->v_memory)
            return util_err(err, errlen,
                            "%s: a trainer state needs a trainable model (AdamW moments)", d);
        if (opt->save_dtype != CKPT_DTYPE_FLOAT32)
            return util_err(err, errlen, "%s: save_dtype bfloat16 with a trainer state: an exact "
                            "resume needs the float32 weights", d);
        if (state_validate(opt->state, err, errlen)) return -1;
    }
    if (opt->has_token_ids &&
        (opt->bos_token_id < 0 || opt->bos_token_id >= m->config.vocab_size ||
         opt->eos_token_id < 0 || opt->eos_token_id >= m->config.vocab_size))
        return util_err(err, errlen, "%s: bos/eos token ids %d/%d outside the vocabulary", d,
                        opt->bos_token_id, opt->eos_token_id);
    return 0;
}

// ckpt_save's files, for ckpt_save_files.
typedef struct { const Model *m; const CkptSaveOptions *opt; } ModelSave;
static int model_save_fn(const char *tmp, void *ctx, char *err, size_t errlen) {
    const ModelSave *ms = ctx;
    return save_contents(tmp, ms->m, ms->opt, err, errlen);
}

int ckpt_save(const char *dir, const Model *m, const CkptSaveOptions *opt, char *err,
              size_t errlen) {
    char d[DIR_CAP];
    if (norm_dir(dir, d, err, errlen) || save_check(d, m, opt, err, errlen)) return -1;
    ModelSave ms = {m, opt};
    return ckpt_save_files(d, model_save_fn, &ms, err, errlen);
}

int ckpt_save_files(const char *dir, CkptWriteFn write, void *ctx, char *err, size_t errlen) {
    char d[DIR_CAP], old[FIO_PATH_CAP], tmp[FIO_PATH_CAP], parent[FIO_PATH_CAP], base[FIO_PATH_CAP],
        scratch[256];
    if (norm_dir(dir, d, err, errlen)) return -1;
    snprintf(old, sizeof old, "%s.old", d);
    path_split(d, parent, base);
    if (ckpt_recover(d, err, errlen)) return -1;
    int kd = path_kind(d);
    if (kd == PK_OTHER)
        return util_err(err, errlen, "%s: exists and is not a directory; not replacing it", d);
    if (kd == PK_DIR && !fio_exists(d, "config.json") && !fio_exists(d, "adapter_config.json")) {
        DIR *dd = opendir(d);
        int empty = 1;
        struct dirent *e;
        while (dd && (e = readdir(dd)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
        if (dd) closedir(dd);
        if (!empty)
            return util_err(err, errlen,
                            "%s: exists and is not a checkpoint (no config.json); not replacing it",
                            d);
    }
    int made = 0, moved = 0;
    for (int i = 0; i < 1000 && !made; i++) {
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld.%d", d, (long)getpid(), i);
        if (mkdir(tmp, 0777) == 0) made = 1;
        else if (errno != EEXIST)
            return util_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    }
    if (!made) return util_err(err, errlen, "%s: cannot find a free temporary name", d);
    if (write(tmp, ctx, err, errlen) || fio_fsync_dir(tmp, err, errlen)) goto fail;
    if (kd == PK_DIR) {
        if (rename(d, old)) {
            util_err(err, errlen, "%s: cannot rename to %s: %s", d, old, strerror(errno));
            goto fail;
        }
        moved = 1;
        if (fio_fsync_dir(parent, err, errlen)) goto undo;
    }
    if (rename(tmp, d)) {
        util_err(err, errlen, "%s: cannot rename to %s: %s", tmp, d, strerror(errno));
        goto undo;
    }
    if (fio_fsync_dir(parent, err, errlen)) return -1; // the new checkpoint is in place either way
    if (moved && remove_flat_dir(old, scratch, sizeof scratch) == 0)
        fio_fsync_dir(parent, scratch, sizeof scratch);
    return 0; // a DIR.old that could not be removed is harmless (reader rule); the next save
              // retries
undo:
    if (moved && path_kind(d) == PK_ABSENT && rename(old, d) == 0)
        fio_fsync_dir(parent, scratch, sizeof scratch);
fail:
    remove_flat_dir(tmp, scratch, sizeof scratch);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

int ckpt_load_config(const char *dir, ModelConfig *c, CkptInfo *info, char *err, size_t errlen) {
    char d[FIO_PATH_CAP], p[FIO_PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen) ||
        fio_path_join(p, d, "config.json", err, errlen))
        return -1;
    CkptInfo tmp = {0};
    if (config_parse(p, c, &tmp, err, errlen)) return -1;
    tmp.from_old = from_old;
    tmp.has_tokenizer = ckpt_dir_has_tokenizer(d);
    tmp.has_trainer_state =
        fio_exists(d, "trainer_state.json") && fio_exists(d, "trainer_state.safetensors");
    if (info) *info = tmp;
    return 0;
}

// "h.<digits>.attn.bias" / "h.<digits>.attn.masked_bias": attention-mask buffers of old exports.
static int is_mask_buffer(const char *n) {
    if (strncmp(n, "h.", 2)) return 0;
    n += 2;
    if (*n < '0' || *n > '9') return 0;
    while (*n >= '0' && *n <= '9') n++;
    return !strcmp(n, ".attn.bias") || !strcmp(n, ".attn.masked_bias");
}

// "model.[layers.N.self_attn.]rotary_emb.inv_freq": RoPE frequency buffers of old Llama exports.
static int is_rotary_buffer(const char *n) {
    size_t len = strlen(n), sl = strlen("rotary_emb.inv_freq");
    return !strncmp(n, "model.", 6) && len >= sl && !strcmp(n + len - sl, "rotary_emb.inv_freq") &&
           (len == 6 + sl || n[len - sl - 1] == '.');
}

// The file's config (f, read from p) against the model's (m): what the weights were made for.
static int config_check_same(const char *p, const ModelConfig *f, const ModelConfig *m, char *err,
                             size_t errlen) {
    if (f->arch != m->arch || f->family != m->family) {
        const CkptFamily *a = family_by_id(f->family), *b = family_by_id(m->family);
        return util_err(err, errlen, "%s: model_type is %s but the model is %s", p,
                        a ? a->model_type : "?", b ? b->model_type : "?");
    }
    int llama = f->arch == MODEL_ARCH_LLAMA, l3 = llama && f->rope_scaling == MODEL_ROPE_LLAMA3;
    const struct { const char *gpt2, *llama; int64_t fv, mv; } ints[] = {
        {"n_layer", "num_hidden_layers", f->n_layer, m->n_layer},
        {"n_head", "num_attention_heads", f->n_head, m->n_head},
        {"n_embd", "hidden_size", f->n_embd, m->n_embd},
        {"vocab_size", "vocab_size", f->vocab_size, m->vocab_size},
        {"n_positions", "max_position_embeddings", f->max_seq_len, m->max_seq_len},
        {NULL, "num_key_value_heads", model_kv_heads(f), model_kv_heads(m)},
        {NULL, "head_dim", model_head_dim(f), model_head_dim(m)},
        {NULL, "intermediate_size", model_ff(f), model_ff(m)},
        {NULL, "tie_word_embeddings", !f->untied, !m->untied},
        {NULL, "q/k/v biases", f->qkv_bias, m->qkv_bias},
        {NULL, "q/k norms", f->qk_norm, m->qk_norm},
        {NULL, "rope_scaling (1 = llama3)", f->rope_scaling, m->rope_scaling},
        {NULL, l3 ? "original_max_position_embeddings" : NULL, f->rope_original_max_pos,
         m->rope_original_max_pos}};
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        const char *k = llama ? ints[i].llama : ints[i].gpt2;
        if (k && ints[i].fv != ints[i].mv)
            return util_err(err, errlen, "%s: %s is %" PRId64 " but the model has %" PRId64, p, k,
                            ints[i].fv, ints[i].mv);
    }
    const struct { const char *key; float fv, mv; } fl[] = {
        {llama ? "rms_norm_eps" : "layer_norm_epsilon", f->ln_eps, m->ln_eps},
        {llama ? "rope_theta" : NULL, f->rope_theta, m->rope_theta},
        {l3 ? "rope_scaling factor" : NULL, f->rope_factor, m->rope_factor},
        {l3 ? "low_freq_factor" : NULL, f->rope_low_freq_factor, m->rope_low_freq_factor},
        {l3 ? "high_freq_factor" : NULL, f->rope_high_freq_factor, m->rope_high_freq_factor}};
    for (size_t i = 0; i < sizeof fl / sizeof fl[0]; i++)
        if (fl[i].key && fl[i].fv != fl[i].mv)
            return util_err(err, errlen, "%s: %s is %g but the model has %g", p, fl[i].key,
                            (double)fl[i].fv, (double)fl[i].mv);
    return 0;
}

// The file entry of model tensor t (NULL when absent). GPT-2: bare or "transformer."-prefixed,
// not both; the Llama family: the name as it is.
static int find_tensor(StSet *s, const Model *m, const ModelTensor *t, StEntry **out, char *err,
                       size_t errlen) {
    *out = st_set_find(s, t->name);
    if (m->config.arch != MODEL_ARCH_GPT2 || !strcmp(t->name, "score.weight")) return 0;
    char pref[96];
    snprintf(pref, sizeof pref, "transformer.%s", t->name);
    StEntry *b = st_set_find(s, pref);
    if (*out && b)
        return util_err(err, errlen, "%s: holds both %s and %s", b->file->path, t->name, pref);
    if (b) *out = b;
    return 0;
}

// Matches every model tensor with its file entry (src[i], NULL where a flag or a missing LM head
// allows it) and checks shapes and dtypes.
static int match_tensors(StSet *s, const Model *m, int flags, StEntry **src, const char *where,
                         char *err, size_t errlen) {
    int n = model_tensor_count(m), missing = 0;
    char first_missing[96] = "";
    for (int i = 0; i < n; i++) {
        ModelTensor t;
        model_tensor(m, i, &t);
        if (find_tensor(s, m, &t, &src[i], err, errlen)) return -1;
        if (!src[i]) {
            if (!strcmp(t.name, "score.weight") && (flags & CKPT_ALLOW_MISSING_SCORE)) continue;
            if (!strcmp(t.name, "lm_head.weight") && !m->config.lm_head) continue;  // reward model
            if (!missing++) snprintf(first_missing, sizeof first_missing, "%s", t.name);
            continue;
        }
        if (st_check(src[i], t.ndim, t.shape, err, errlen)) return -1;
        src[i]->used = 1;
    }
    if (!missing) return 0;
    if (!strcmp(first_missing, "score.weight"))
        return util_err(err, errlen, "%s: missing tensor score.weight (a reward/value head; pass "
                        "CKPT_ALLOW_MISSING_SCORE to initialise it yourself)", where);
    if (missing == 1) return util_err(err, errlen, "%s: missing tensor %s", where, first_missing);
    return util_err(err, errlen, "%s: missing tensor %s and %d more", where, first_missing,
                    missing - 1);
}

// The file entries no model tensor claimed: buffers of old exports (skipped), a tied
// lm_head.weight (returned in *lm_head to compare with the embeddings), score.weight with
// CKPT_IGNORE_SCORE, an untied lm_head.weight the model has no head for; anything else is an
// error.
static int check_leftovers(StSet *s, const Model *m, int flags, StEntry **lm_head, char *err,
                           size_t errlen) {
    const ModelConfig *mc = &m->config;
    *lm_head = NULL;
    for (int k = 0; k < s->nf; k++)
        for (int i = 0; i < s->f[k].n; i++) {
            StEntry *e = &s->f[k].e[i];
            if (e->used) continue;
            const char *bare = !strncmp(e->name, "transformer.", 12) ? e->name + 12 : e->name;
            if (mc->arch == MODEL_ARCH_GPT2 ? is_mask_buffer(bare) : is_rotary_buffer(e->name))
                continue;
            if (!strcmp(e->name, "lm_head.weight") && mc->untied) continue;   // no LM head here
            if (!strcmp(e->name, "lm_head.weight")) {
                int64_t shape[2] = {mc->vocab_size, mc->n_embd};
                if (st_check(e, 2, shape, err, errlen)) return -1;
                *lm_head = e;
                continue;
            }
            if (!strcmp(e->name, "score.weight") && !mc->score_head) {
                if (flags & CKPT_IGNORE_SCORE) continue;
                return util_err(err, errlen, "%s: holds score.weight (a reward/value model) but "
                                "the model has no score head (pass CKPT_IGNORE_SCORE to drop it)",
                                e->file->path);
            }
            return util_err(err, errlen, "%s: unexpected tensor %s", e->file->path, e->name);
        }
    return 0;
}

// A tied lm_head.weight must equal the embeddings (entry emb, model tensor name emb_name) after
// conversion.
static int check_tied_head(const StEntry *lm_head, const StEntry *emb, const Model *m,
                           const char *emb_name, char *err, size_t errlen) {
    size_t cnt = (size_t)m->config.vocab_size * (size_t)m->config.n_embd, block = 1 << 16;
    float *x = MALLOC_CHECK(block * sizeof(float)), *y = MALLOC_CHECK(block * sizeof(float));
    int same = 1;
    for (size_t i = 0; same && i < cnt; i += block) {   // a block at a time: V x C can be large
        size_t k = cnt - i < block ? cnt - i : block;
        st_read_f32_range(lm_head, i, k, x);
        st_read_f32_range(emb, i, k, y);
        same = memcmp(x, y, k * sizeof(float)) == 0;
    }
    free(x);
    free(y);
    if (same) return 0;
    if (m->config.arch == MODEL_ARCH_GPT2)
        return util_err(err, errlen, "%s: lm_head.weight differs from %s (untied output heads "
                        "are not supported)", lm_head->file->path, emb_name);
    return util_err(err, errlen, "%s: lm_head.weight differs from %s but tie_word_embeddings is "
                    "true", lm_head->file->path, emb_name);
}

// Reads entry e into tensor t, refusing a NaN or Inf (it would poison every output), and gives
// the entry's mapped pages back.
static int read_tensor(const StEntry *e, const ModelTensor *t, char *err, size_t errlen) {
    st_read_f32(e, t->data);
    st_release(e);
    int64_t cnt = t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
    for (int64_t j = 0; j < cnt; j++)
        if (!isfinite(t->data[j]))
            return util_err(err, errlen, "%s: tensor %s holds %s at element %lld (a diverged or "
                            "corrupt checkpoint)", e->file->path, e->name,
                            isnan(t->data[j]) ? "NaN" : "Inf", (long long)j);
    return 0;
}

// After tensor t is read: when it completes a layer matrix (filled counts each one's floats read
// so far), fn on it.
static int matrix_done(Model *m, const ModelTensor *t, int64_t *filled, CkptMatrixFn fn,
                       void *ctx, char *err, size_t errlen) {
    int l, w;
    if (!fn || !model_matrix_of(m, t->data, &l, &w)) return 0;
    int64_t *f = &filled[(size_t)l * (MODEL_NUM_W + 1) + (size_t)w];
    *f += t->shape[0] * (t->ndim == 2 ? t->shape[1] : 1);
    return *f == model_matrix_floats(m, w) ? fn(m, l, w, ctx, err, errlen) : 0;
}

int ckpt_load_weights(const char *dir, Model *m, int flags, char *err, size_t errlen) {
    return ckpt_load_weights_each(dir, m, flags, NULL, NULL, err, errlen);
}

int ckpt_load_weights_each(const char *dir, Model *m, int flags, CkptMatrixFn fn, void *ctx,
                           char *err, size_t errlen) {
    char d[FIO_PATH_CAP], p[FIO_PATH_CAP], where[FIO_PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen) ||
        fio_path_join(p, d, "config.json", err, errlen))
        return -1;
    ModelConfig fc;
    if (config_parse(p, &fc, NULL, err, errlen) ||
        config_check_same(p, &fc, &m->config, err, errlen))
        return -1;
    StSet set;
    if (st_set_open(&set, d, err, errlen)) return -1;
    // missing tensors are named against model.safetensors or the index
    if (fio_path_join(where, d, fio_exists(d, ST_SINGLE) ? ST_SINGLE : ST_INDEX, err, errlen)) {
        st_set_close(&set);
        return -1;
    }
    int n = model_tensor_count(m), rc = -1, emb = 0;
    StEntry **src = CALLOC_CHECK((size_t)n, sizeof(StEntry *)), *lm_head;
    int64_t *filled = CALLOC_CHECK((size_t)m->config.n_layer * (MODEL_NUM_W + 1), sizeof *filled);
    if (match_tensors(&set, m, flags, src, where, err, errlen) ||
        check_leftovers(&set, m, flags, &lm_head, err, errlen))
        goto done;
    ModelTensor t;
    for (int i = 0; i < n; i++) {
        model_tensor(m, i, &t);
        if (t.data == m->params.wte) emb = i;
    }
    model_tensor(m, emb, &t);
    if (lm_head && check_tied_head(lm_head, src[emb], m, t.name, err, errlen)) goto done;
    for (int i = 0; i < n; i++) {
        if (!src[i]) continue;
        model_tensor(m, i, &t);
        if (read_tensor(src[i], &t, err, errlen) ||
            matrix_done(m, &t, filled, fn, ctx, err, errlen))
            goto done;
    }
    rc = 0;
done:
    free(filled);
    free(src);
    st_set_close(&set);
    return rc;
}

int ckpt_model_files(const char *dir, CkptFileFn fn, void *ctx, char *err, size_t errlen) {
    char d[FIO_PATH_CAP], p[FIO_PATH_CAP];
    int from_old, rc = 0;
    if (resolve_dir(dir, d, &from_old, err, errlen)) return -1;
    int single = fio_exists(d, ST_SINGLE) || !fio_exists(d, ST_INDEX);
    const char *first[2] = {"config.json", single ? ST_SINGLE : ST_INDEX};
    for (int i = 0; i < 2; i++)
        if (fio_path_join(p, d, first[i], err, errlen) || (rc = fn(p, first[i], ctx)))
            return rc ? rc : -1;
    if (single) return 0;
    cJSON *r = fio_read_json(p, err, errlen);
    const char **names = NULL;
    int n = 0;
    rc = !r || st_index_shards(r, p, &names, &n, err, errlen) ? -1 : 0;
    for (int i = 0; !rc && i < n; i++)
        if (fio_path_join(p, d, names[i], err, errlen)) rc = -1;
        else rc = fn(p, names[i], ctx);
    free(names);
    cJSON_Delete(r);
    return rc;
}

int ckpt_load_model(const char *dir, Model *m, int max_B, int max_T, int trainable, int flags,
                    char *err, size_t errlen) {
    ModelConfig c;
    memset(m, 0, sizeof(*m));
    if (ckpt_load_config(dir, &c, NULL, err, errlen)) return -1;
    if (model_init(m, &c, max_B, max_T, trainable, 0, err, errlen)) return -1;
    if (ckpt_load_weights(dir, m, flags, err, errlen)) { model_free(m); return -1; }
    return 0;
}

int ckpt_load_trainer_state(const char *dir, Model *m, CkptTrainerState *st, char *err,
                            size_t errlen) {
    char d[FIO_PATH_CAP], p[FIO_PATH_CAP];
    int from_old;
    if (resolve_dir(dir, d, &from_old, err, errlen)) return -1;
    if (!fio_exists(d, "trainer_state.json"))
        return util_err(err, errlen, "%s: no trainer state (trainer_state.json) to resume from", d);
    if (fio_path_join(p, d, "trainer_state.json", err, errlen)) return -1;
    CkptTrainerState *tmp = MALLOC_CHECK(sizeof(*tmp));
    if (state_parse_json(p, tmp, err, errlen)) { free(tmp); return -1; }
    int rc = -1;
    if (m) {
        if (!m->m_memory || !m->v_memory) {
            util_err(err, errlen, "%s: loading moments needs a trainable model", d);
            goto out;
        }
        if (fio_path_join(p, d, "trainer_state.safetensors", err, errlen)) goto out;
        StFile f;
        if (st_open(&f, p, err, errlen)) goto out;
        int n = model_tensor_count(m);
        StEntry **src = CALLOC_CHECK(2 * (size_t)n, sizeof(StEntry *));
        int ok = 1;
        for (int i = 0; ok && i < 2 * n; i++) {
            ModelTensor t;
            model_tensor(m, i % n, &t);
            char nm[96];
            snprintf(nm, sizeof nm, "%s.%s", i < n ? "m" : "v", t.name);
            src[i] = st_find(&f, nm);
            if (!src[i]) { util_err(err, errlen, "%s: missing tensor %s", p, nm); ok = 0; }
            else if (st_check(src[i], t.ndim, t.shape, err, errlen)) ok = 0;
            else src[i]->used = 1;
        }
        for (int i = 0; ok && i < f.n; i++)
            if (!f.e[i].used) {
                util_err(err, errlen, "%s: unexpected tensor %s", p, f.e[i].name);
                ok = 0;
            }
        for (int i = 0; ok && i < 2 * n; i++) {
            ModelTensor t;
            model_tensor(m, i % n, &t);
            st_read_f32(src[i],
                        (i < n ? m->m_memory : m->v_memory) + (t.data - m->params_memory));
        }
        free(src);
        st_close(&f);
        if (!ok) goto out;
    }
    *st = *tmp;
    rc = 0;
out:
    free(tmp);
    return rc;
}

int ckpt_check_tokenizer(const char *ckpt, int64_t vocab_size, const char *tokdir,
                         int64_t tok_vocab, char *err, size_t errlen) {
    if (tok_vocab <= vocab_size) return 0;
    return util_err(err, errlen, "the tokenizer in %s has %lld tokens, more than the %lld of the "
                    "model in %s (config.json): they do not belong together (give the model's own "
                    "tokenizer, or a model made for this one)", tokdir, (long long)tok_vocab,
                    (long long)vocab_size, ckpt);
}

// ---------------------------------------------------------------------------------------------
// Directories of other writers (adapter checkpoints: peft.h)
// ---------------------------------------------------------------------------------------------

int ckpt_write_trainer_state(const char *dir, const CkptTrainerState *st, char *err,
                             size_t errlen) {
    char p[FIO_PATH_CAP];
    if (fio_path_join(p, dir, "trainer_state.json", err, errlen)) return -1;
    return state_write_json(p, st, err, errlen);
}

int ckpt_resolve(const char *dir, char *out, size_t outlen, int *from_old, char *err,
                 size_t errlen) {
    char d[FIO_PATH_CAP];
    int old;
    if (resolve_dir(dir, d, &old, err, errlen)) return -1;
    if (snprintf(out, outlen, "%s", d) >= (int)outlen)
        return util_err(err, errlen, "checkpoint: path too long: %.80s...", d);
    if (from_old) *from_old = old;
    return 0;
}
