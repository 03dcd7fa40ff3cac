// Checkpoint tests of the Llama family (llama, mistral, qwen2, qwen3): round trips of every family
// with each head, bfloat16 and shards, and the trainer state; the PyTorch script
// (tests/ref/hf_llama_interop.py) reading what we save with the same loss, and writing
// checkpoints as transformers lays them out that load here with its loss; F16/BF16 input; the
// bfloat16 rounding; sharded loads and every bad index; each refusal naming its key; tied,
// untied and reward-model heads.
#include "checkpoint.h"
#include "ckpt_helpers.h"
#include "model.h"
#include "rng.h"
#include "testlib.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

// ---------------------------------------------------------------------------------------------
// The Llama family (llama, mistral, qwen2, qwen3)
// ---------------------------------------------------------------------------------------------

static const char *family_name[] = {"gpt2", "llama", "mistral", "qwen2", "qwen3"};

// A tiny config of each family with the shapes nobody tunes for: grouped-query and multi-query
// attention, head_dim != hidden / heads (qwen3), Llama 3 rope scaling, tied and untied heads.
static ModelConfig llama_cfg(int family) {
    ModelConfig c = {.arch = MODEL_ARCH_LLAMA, .family = family, .max_seq_len = 64,
                     .vocab_size = 37, .n_layer = 2, .n_head = 4, .n_embd = 32, .ln_eps = 1e-5f,
                     .lm_head = 1, .n_kv_head = 2, .d_ff = 40, .rope_theta = 10000.0f};
    switch (family) {
        case MODEL_FAMILY_LLAMA:
            c.rope_theta = 500000.0f;
            c.rope_scaling = MODEL_ROPE_LLAMA3;
            c.rope_factor = 8.0f;
            c.rope_low_freq_factor = 1.0f;
            c.rope_high_freq_factor = 4.0f;
            c.rope_original_max_pos = 8;
            break;
        case MODEL_FAMILY_MISTRAL: c.n_kv_head = 1; c.untied = 1; break;
        case MODEL_FAMILY_QWEN2:
            c.n_head = 3; c.n_kv_head = 1; c.n_embd = 24; c.qkv_bias = 1; c.untied = 1;
            c.rope_theta = 1e6f; c.ln_eps = 1e-6f;
            break;
        default:   // qwen3
            c.n_head = 3; c.n_kv_head = 3; c.n_embd = 24; c.head_dim = 16; c.qk_norm = 1;
            c.rope_theta = 1e6f;
            break;
    }
    return c;
}

// Every parameter random (norms, biases and q/k norms included), so a slot that is not saved or
// not loaded shows up as a difference.
static void llama_model(Model *m, const ModelConfig *c, int trainable, uint64_t seed) {
    char err[256];
    if (model_init(m, c, 1, 32, trainable, 0, err, sizeof err)) {
        fprintf(stderr, "llama_model: %s\n", err);
        exit(1);
    }
    Rng r;
    rng_init(&r, seed);
    rng_fill_normal(&r, m->params_memory, (int64_t)m->num_params, 0.0f, 0.2f);
}

static int config_same(const ModelConfig *a, const ModelConfig *b) {
    return a->arch == b->arch && a->family == b->family && a->max_seq_len == b->max_seq_len &&
           a->vocab_size == b->vocab_size && a->n_layer == b->n_layer &&
           a->n_head == b->n_head && a->n_embd == b->n_embd && a->ln_eps == b->ln_eps &&
           a->lm_head == b->lm_head && a->score_head == b->score_head &&
           model_kv_heads(a) == model_kv_heads(b) && model_head_dim(a) == model_head_dim(b) &&
           model_ff(a) == model_ff(b) && a->rope_theta == b->rope_theta &&
           a->rope_scaling == b->rope_scaling && a->rope_factor == b->rope_factor &&
           a->rope_low_freq_factor == b->rope_low_freq_factor &&
           a->rope_high_freq_factor == b->rope_high_freq_factor &&
           a->rope_original_max_pos == b->rope_original_max_pos && a->qkv_bias == b->qkv_bias &&
           a->qk_norm == b->qk_norm && a->untied == b->untied;
}

// config.json of dir parsed with cJSON (NULL when unreadable; the caller deletes it).
static cJSON *read_config_json(const char *dir) {
    char p[1024];
    path(p, dir, "config.json");
    char *s = test_read_file(p, NULL);
    cJSON *j = s ? cJSON_Parse(s) : NULL;
    free(s);
    return j;
}

// Saves m to dir with opt, reloads config and weights into a fresh model: 0 when both equal.
static int reload_same(const char *dir, const Model *m, const CkptSaveOptions *opt, Model *b) {
    char err[512];
    ModelConfig c;
    test_rm_rf(dir);
    if (ckpt_save(dir, m, opt, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "save %s: %s", dir, err);
        return -1;
    }
    if (ckpt_load_config(dir, &c, NULL, err, sizeof err) ||
        model_init(b, &c, 1, 32, m->trainable, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "reload %s: %s", dir, err);
        return -1;
    }
    if (ckpt_load_weights(dir, b, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "load weights %s: %s", dir, err);
        model_free(b);
        return -1;
    }
    CHECK_MSG(config_same(&c, &m->config), "%s: config differs after the round trip", dir);
    return 0;
}

// ckpt_model_files callbacks: append the name to ctx (a char[1024]); stop at the index (7).
static int collect_name(const char *p, const char *name, void *ctx) {
    size_t k = strlen(ctx);
    snprintf((char *)ctx + k, 1024 - k, "%s ", name);
    return exists(p) ? 0 : 1;
}
static int stop_at_index(const char *p, const char *name, void *ctx) {
    (void)p; (void)ctx;
    return strstr(name, "index") ? 7 : 0;
}

static void test_llama_roundtrip(void) {
    char dir[1024], err[512], want[96];
    for (int fam = MODEL_FAMILY_LLAMA; fam <= MODEL_FAMILY_QWEN3; fam++)
        for (int heads = 1; heads <= 3; heads++) {   // 1 LM, 2 reward/value, 3 both
            ModelConfig c = llama_cfg(fam);
            c.lm_head = heads & 1;
            c.score_head = heads >> 1;
            Model a, b;
            llama_model(&a, &c, 0, 10 + (uint64_t)fam);
            path(dir, root, "llama_rt");
            if (reload_same(dir, &a, NULL, &b)) { model_free(&a); continue; }
            CHECK_MSG(memcmp(a.params_memory, b.params_memory, a.num_params * 4) == 0,
                      "%s heads %d: weights differ after the round trip", family_name[fam], heads);
            cJSON *j = read_config_json(dir);
            cJSON *mt = cJSON_GetObjectItem(j, "model_type");
            cJSON *ar = cJSON_GetObjectItem(j, "architectures");
            CHECK(cJSON_IsString(mt) && !strcmp(mt->valuestring, family_name[fam]));
            const char *prefix[] = {"", "Llama", "Mistral", "Qwen2", "Qwen3"};
            snprintf(want, sizeof want, "%s%s", prefix[fam],
                     heads == 2 ? "ForSequenceClassification" : "ForCausalLM");
            CHECK_MSG(cJSON_IsArray(ar) && cJSON_GetArraySize(ar) == (heads == 3 ? 2 : 1) &&
                      !strcmp(ar->child->valuestring, want), "%s: architectures", want);
            cJSON_Delete(j);
            model_free(&a);
            model_free(&b);
        }
    // bfloat16: every weight rounded to nearest even, torch_dtype says so
    ModelConfig c = llama_cfg(MODEL_FAMILY_QWEN2);
    Model a, b;
    llama_model(&a, &c, 0, 21);
    CkptSaveOptions bf = {.save_dtype = CKPT_DTYPE_BFLOAT16};
    path(dir, root, "llama_bf16");
    if (!reload_same(dir, &a, &bf, &b)) {
        size_t diff = 0;
        for (size_t i = 0; i < a.num_params; i++)
            diff += b.params_memory[i] != ckpt_bf16_to_f32(ckpt_f32_to_bf16(a.params_memory[i]));
        CHECK_MSG(diff == 0, "bf16 save: %zu weights are not the rounded values", diff);
        cJSON *j = read_config_json(dir);
        cJSON *td = cJSON_GetObjectItem(j, "torch_dtype");
        CHECK(cJSON_IsString(td) && !strcmp(td->valuestring, "bfloat16"));
        cJSON_Delete(j);
        model_free(&b);
    }
    // sharded: shards of at most 4 KiB and the index, no model.safetensors
    CkptSaveOptions sh = {.max_shard_bytes = 4096};
    path(dir, root, "llama_shards");
    if (!reload_same(dir, &a, &sh, &b)) {
        CHECK(memcmp(a.params_memory, b.params_memory, a.num_params * 4) == 0);
        char p[1024];
        path(p, dir, "model.safetensors.index.json");
        CHECK(exists(p));
        path(p, dir, "model.safetensors");
        CHECK(!exists(p));
        int shards = 0;
        DIR *d = opendir(dir);
        struct dirent *e;
        while (d && (e = readdir(d))) shards += !strncmp(e->d_name, "model-000", 9);
        if (d) closedir(d);
        CHECK_MSG(shards > 2, "only %d shards", shards);
        // the files of the model, in order: config, index, shards
        char names[1024] = "";
        CHECK_MSG(ckpt_model_files(dir, collect_name, names, err, sizeof err) == 0, "%s", err);
        char files[1024];
        int k = snprintf(files, sizeof files, "config.json model.safetensors.index.json ");
        for (int i = 1; i <= shards; i++)
            k += snprintf(files + k, sizeof files - (size_t)k, "model-%05d-of-%05d.safetensors ",
                          i, shards);
        CHECK_MSG(!strcmp(names, files), "model files: %s", names);
        names[0] = 0;
        path(p, root, "llama_bf16");
        CHECK(ckpt_model_files(p, collect_name, names, err, sizeof err) == 0 &&
              !strcmp(names, "config.json model.safetensors "));
        CHECK(ckpt_model_files(dir, stop_at_index, NULL, err, sizeof err) == 7);
        model_free(&b);
    }
    // the trainer state of a Llama model: weights, moments and state bit-identical
    model_free(&a);
    c = llama_cfg(MODEL_FAMILY_QWEN3);
    llama_model(&a, &c, 1, 22);
    CkptTrainerState st, st2;
    fill_state(&a, &st, 3);
    CkptSaveOptions so = {.state = &st, .max_shard_bytes = 8192};
    path(dir, root, "llama_state");
    if (!reload_same(dir, &a, &so, &b)) {
        CHECK_MSG(ckpt_load_trainer_state(dir, &b, &st2, err, sizeof err) == 0, "%s", err);
        CHECK(memcmp(a.params_memory, b.params_memory, a.num_params * 4) == 0);
        CHECK(memcmp(a.m_memory, b.m_memory, a.num_params * 4) == 0);
        CHECK(memcmp(a.v_memory, b.v_memory, a.num_params * 4) == 0);
        CHECK(states_equal(&st, &st2));
        model_free(&b);
    }
    // bf16 weights cannot resume exactly: refused with a trainer state
    so.save_dtype = CKPT_DTYPE_BFLOAT16;
    CHECK_ERR(ckpt_save(dir, &a, &so, err, sizeof err), err, "save_dtype bfloat16", "trainer");
    model_free(&a);
}

// Runs "hf_llama_interop.py ARGS" (one python run for several checkpoints) and reads the
// losses it prints, "loss <value>" or "loss -" (NAN), into loss[0..n). Returns 0, or -1 (and
// fails the case) when it fails or prints another number of losses.
static int python_llama(const char *args, double *loss, int n) {
    char cmd[8192], line[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/ref/hf_llama_interop.py %s 2>&1",
             test_data_dir(), args);
    FILE *p = popen(cmd, "r");
    if (!p) { test_fail_at(__FILE__, __LINE__, "cannot run %s", cmd); return -1; }
    int got = 0;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "loss ", 5) && got < n)
            loss[got++] = line[5] == '-' ? NAN : atof(line + 5);
        else fprintf(stderr, "    python: %s", line);
    }
    int st = pclose(p);
    if (st != 0 || got != n) {
        test_fail_at(__FILE__, __LINE__, "%s exited with status %d after %d of %d losses "
                     "(python3-torch missing?)", cmd, st, got, n);
        return -1;
    }
    return 0;
}

static void test_llama_python_reads_ours(void) {
    char dir[1024], tok[1024], args[4096] = "check";
    path(tok, root, "llama_tokens.txt");
    write_text(tok, "1 17 3 36 0 5 5 22 31 9 2 14 30 7 11 35\n");
    // each family in another layout: float32 / bfloat16, one file / shards; then a reward model
    // (ForSequenceClassification: score.weight, no lm_head)
    const struct { int fam, bf16; int64_t shard; } cases[] = {
        {MODEL_FAMILY_LLAMA, 1, 6000}, {MODEL_FAMILY_MISTRAL, 0, 0},
        {MODEL_FAMILY_QWEN2, 0, 5000}, {MODEL_FAMILY_QWEN3, 1, 0}, {MODEL_FAMILY_MISTRAL, 0, 0}};
    enum { N = sizeof cases / sizeof cases[0] };
    double ours[N], theirs[N];
    for (int i = 0; i < N; i++) {
        ModelConfig c = llama_cfg(cases[i].fam);
        c.lm_head = i < N - 1;
        c.score_head = i == N - 1;
        Model a, b;
        llama_model(&a, &c, 0, 30 + (uint64_t)i);
        CkptSaveOptions o = {.save_dtype = cases[i].bf16, .max_shard_bytes = cases[i].shard,
                             .has_token_ids = 1, .bos_token_id = 1, .eos_token_id = 2};
        char nm[32];
        snprintf(nm, sizeof nm, "llama_py%d", i);
        path(dir, root, nm);
        ours[i] = NAN;
        if (!reload_same(dir, &a, &o, &b)) {   // the loss of what was written (bf16 rounded)
            if (c.lm_head) ours[i] = file_loss(&b, tok);
            model_free(&b);
        }
        size_t k = strlen(args);
        snprintf(args + k, sizeof args - k, " '%s' '%s'", dir, tok);
        model_free(&a);
    }
    if (python_llama(args, theirs, N)) return;
    for (int i = 0; i < N - 1; i++) check_rel(ours[i], theirs[i], 1e-5, family_name[cases[i].fam]);
    CHECK(isnan(theirs[N - 1]));
}

// Checkpoints written by the PyTorch script the way transformers lays them out.
static void test_llama_hf_written(void) {
    static const char *variants[] = {"llama", "qwen2", "qwen3", "mistral"};
    char dir[1024], p[1024], err[512], args[4096] = "write";
    double printed[4];
    for (int i = 0; i < 4; i++) {
        path(dir, root, variants[i]);
        size_t k = strlen(args);
        snprintf(args + k, sizeof args - k, " '%s' %s", dir, variants[i]);
    }
    if (python_llama(args, printed, 4)) return;
    for (int i = 0; i < 4; i++) {
        path(dir, root, variants[i]);
        ModelConfig c;
        CkptInfo info;
        CHECK_MSG(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0, "%s", err);
        switch (i) {
            case 0: CHECK(c.rope_scaling == MODEL_ROPE_LLAMA3 && c.rope_factor == 8.0f &&
                          c.rope_original_max_pos == 8 && c.n_kv_head == 2 && !c.untied); break;
            case 1: CHECK(c.qkv_bias && c.untied && info.eos_token_id == 2 && c.ln_eps == 1e-6f);
                    break;
            case 2: CHECK(c.qk_norm && c.head_dim == 16 && c.rope_theta == 1e6f); break;
            default: CHECK(c.n_kv_head == 1 && c.untied && c.head_dim == 0);
        }
        Model m;
        if (ckpt_load_model(dir, &m, 1, 32, 0, 0, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s: %s", variants[i], err);
            continue;
        }
        path(p, dir, "tokens.txt");
        double ours = file_loss(&m, p);
        path(p, dir, "expected_loss.txt");
        check_rel(ours, read_number_file(p), 1e-5, variants[i]);
        check_rel(ours, printed[i], 1e-5, variants[i]);
        model_free(&m);
    }
}

// An F32 safetensors file rewritten with tensor i stored as dtype kind (i % 3): F32, BF16, F16
// (the values must be exact in both: the caller's multiples of 1/256 below 1).
static uint16_t f16_exact(float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    if (!(u & 0x7fffffffu)) return (uint16_t)(u >> 16);
    uint32_t sign = (u >> 16) & 0x8000u, man = (u >> 13) & 0x3ffu;
    uint32_t ex = ((u >> 23) & 0xffu) - 127 + 15;
    return (uint16_t)(sign | ex << 10 | man);
}

static void rewrite_mixed_dtypes(const char *p) {
    StParts s;
    if (st_split(p, &s)) { test_fail_at(__FILE__, __LINE__, "cannot read %s", p); return; }
    char *data = MALLOC_CHECK(s.data_len);
    size_t off = 0;
    int i = 0;
    for (cJSON *e = s.h->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        cJSON *o = cJSON_GetObjectItem(e, "data_offsets");
        size_t b = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        size_t n = ((size_t)cJSON_GetArrayItem(o, 1)->valuedouble - b) / 4;
        const float *x = (const float *)(s.data + b);
        int kind = i++ % 3;
        size_t bytes = n * (kind ? 2 : 4);
        for (size_t j = 0; j < n; j++) {
            uint16_t h = kind == 1 ? ckpt_f32_to_bf16(x[j]) : f16_exact(x[j]);
            if (kind) memcpy(data + off + 2 * j, &h, 2);
            else memcpy(data + off + 4 * j, &x[j], 4);
        }
        cJSON_ReplaceItemInObject(e, "dtype", cJSON_CreateString(kind == 0 ? "F32" :
                                                                  kind == 1 ? "BF16" : "F16"));
        cJSON *no = cJSON_CreateArray();
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)off));
        cJSON_AddItemToArray(no, cJSON_CreateNumber((double)(off + bytes)));
        cJSON_ReplaceItemInObject(e, "data_offsets", no);
        off += bytes;
    }
    char *txt = cJSON_PrintUnformatted(s.h);
    st_join(p, txt, data, off, 0);
    free(txt);
    free(data);
    st_free(&s);
}

static void test_llama_half_input(void) {
    char dir[1024], p[1024], err[512];
    ModelConfig c = llama_cfg(MODEL_FAMILY_QWEN3);
    Model a, b;
    llama_model(&a, &c, 0, 50);
    for (size_t i = 0; i < a.num_params; i++)   // exact in F16 and BF16: k / 256, |k| < 256
        a.params_memory[i] = (float)((int)(a.params_memory[i] * 1000.0f) % 256) / 256.0f;
    path(dir, root, "llama_half");
    test_rm_rf(dir);
    CHECK_MSG(ckpt_save(dir, &a, NULL, err, sizeof err) == 0, "%s", err);
    path(p, dir, "model.safetensors");
    rewrite_mixed_dtypes(p);
    StParts s;
    if (!st_split(p, &s)) {
        char *h = cJSON_PrintUnformatted(s.h);
        CHECK(strstr(h, "\"F16\"") && strstr(h, "\"BF16\"") && strstr(h, "\"F32\""));
        free(h);
        st_free(&s);
    }
    if (ckpt_load_model(dir, &b, 1, 8, 0, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
    } else {
        CHECK_MSG(memcmp(a.params_memory, b.params_memory, a.num_params * 4) == 0,
                  "F16 / BF16 tensors did not load to their values");
        model_free(&b);
    }
    model_free(&a);
}

// float32 -> bfloat16 against round-to-nearest-even done in double arithmetic.
static void test_bf16_rounding(void) {
    Rng r;
    rng_init(&r, 77);
    int bad = 0;
    for (int i = 0; i < 2000000 && bad < 3; i++) {
        uint32_t u = (uint32_t)rng_u64(&r);
        if (i < 65536) u = ((uint32_t)i << 16) | (i & 1 ? 0x8000u : 0x7fffu);   // near ties
        if (i < 1024) u = ((uint32_t)(i * 64) << 16) | 0x8000u;                  // exact ties
        float x;
        memcpy(&x, &u, 4);
        if (!isfinite(x)) continue;
        uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1), want;
        double dl = fabs((double)x - (double)ckpt_bf16_to_f32(lo));
        double dh = fabs((double)ckpt_bf16_to_f32(hi) - (double)x);
        if ((hi & 0x7fff) == 0x7f80) dh = ldexp(1.0, 128) - fabs((double)x);   // next: infinity
        if ((u & 0xffffu) == 0) want = lo;
        else if (dl < dh) want = lo;
        else if (dh < dl) want = hi;
        else want = (lo & 1) ? hi : lo;
        uint16_t got = ckpt_f32_to_bf16(x);
        if (got != want) {
            bad++;
            test_fail_at(__FILE__, __LINE__, "bf16 of %a (0x%08x): got 0x%04x want 0x%04x", x, u,
                         got, want);
        }
    }
    CHECK(ckpt_f32_to_bf16(1.0f) == 0x3f80 && ckpt_f32_to_bf16(-2.0f) == 0xc000);
    CHECK(ckpt_f32_to_bf16(INFINITY) == 0x7f80 && ckpt_f32_to_bf16(-INFINITY) == 0xff80);
    CHECK(ckpt_f32_to_bf16(3.4028235e38f) == 0x7f80);   // past the largest bf16: infinity
    CHECK(isnan(ckpt_bf16_to_f32(ckpt_f32_to_bf16(NAN))));
    int d;
    char err[256];
    CHECK(ckpt_parse_dtype("bfloat16", &d, err, sizeof err) == 0 && d == CKPT_DTYPE_BFLOAT16);
    CHECK(ckpt_parse_dtype("float32", &d, err, sizeof err) == 0 && d == CKPT_DTYPE_FLOAT32);
    CHECK_ERR(ckpt_parse_dtype("float16", &d, err, sizeof err), err, "float16", "save_dtype");
}

// A saved Llama checkpoint split by hand into two shards (tensors alternate) with the index
// save_pretrained writes; extra (may be NULL) is a tensor added to shard 2 and the index.
static void write_two_shards(const char *good, const char *dir, const char *extra) {
    char p[1024];
    StParts s;
    path(p, good, "model.safetensors");
    if (st_split(p, &s)) { test_fail_at(__FILE__, __LINE__, "cannot read %s", p); return; }
    test_rm_rf(dir);
    mkdir(dir, 0777);
    copy_dir_file(good, dir, "config.json");
    cJSON *h[2] = {cJSON_CreateObject(), cJSON_CreateObject()}, *wm = cJSON_CreateObject();
    char *data[2] = {MALLOC_CHECK(s.data_len + 64), MALLOC_CHECK(s.data_len + 64)};
    size_t off[2] = {0, 0};
    int i = 0;
    for (cJSON *e = s.h->child; e; e = e->next) {
        if (!strcmp(e->string, "__metadata__")) continue;
        int k = i++ % 2;
        cJSON *o = cJSON_GetObjectItem(e, "data_offsets");
        size_t b = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        size_t n = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble - b;
        memcpy(data[k] + off[k], s.data + b, n);
        cJSON_AddItemToObject(h[k], e->string, cJSON_Duplicate(e, 1));
        set_offsets(h[k], e->string, (double)off[k], (double)(off[k] + n));
        off[k] += n;
        cJSON_AddStringToObject(wm, e->string, k ? "model-00002-of-00002.safetensors"
                                                 : "model-00001-of-00002.safetensors");
    }
    if (extra) {   // a (1) F32 tensor
        float z = 0.5f;
        memcpy(data[1] + off[1], &z, 4);
        cJSON_AddItemToObject(
            h[1], extra, cJSON_Parse("{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,0]}"));
        set_offsets(h[1], extra, (double)off[1], (double)(off[1] + 4));
        off[1] += 4;
        cJSON_AddStringToObject(wm, extra, "model-00002-of-00002.safetensors");
    }
    for (int k = 0; k < 2; k++) {
        char nm[64];
        snprintf(nm, sizeof nm, "model-%05d-of-00002.safetensors", k + 1);
        path(p, dir, nm);
        char *txt = cJSON_PrintUnformatted(h[k]);
        st_join(p, txt, data[k], off[k], 0);
        free(txt);
        cJSON_Delete(h[k]);
        free(data[k]);
    }
    cJSON *idx = cJSON_CreateObject();
    cJSON_AddItemToObject(idx, "metadata", cJSON_Parse("{\"total_size\": 1}"));
    cJSON_AddItemToObject(idx, "weight_map", wm);
    char *txt = cJSON_Print(idx);
    path(p, dir, "model.safetensors.index.json");
    write_text(p, txt);
    free(txt);
    cJSON_Delete(idx);
    st_free(&s);
}

// Rewrites the index of dir: weight_map[name] = value (JSON; NULL deletes the entry).
static void edit_index(const char *dir, const char *name, const char *value) {
    char p[1024];
    path(p, dir, "model.safetensors.index.json");
    char *s = test_read_file(p, NULL);
    cJSON *idx = cJSON_Parse(s ? s : "{}"), *wm = cJSON_GetObjectItem(idx, "weight_map");
    free(s);
    cJSON_DeleteItemFromObjectCaseSensitive(wm, name);
    if (value) cJSON_AddItemToObject(wm, name, cJSON_Parse(value));
    char *txt = cJSON_Print(idx);
    write_text(p, txt);
    free(txt);
    cJSON_Delete(idx);
}

static void test_llama_sharded_load(void) {
    char good[1024], dir[1024], p[1024], err[512];
    ModelConfig c = llama_cfg(MODEL_FAMILY_QWEN2);
    Model a, m;
    llama_model(&a, &c, 0, 60);
    path(good, root, "shard_src");
    test_rm_rf(good);
    CHECK_MSG(ckpt_save(good, &a, NULL, err, sizeof err) == 0, "%s", err);
    path(dir, root, "shards");
    write_two_shards(good, dir, NULL);
    if (load_model(dir, &m, 0, 0) == 0) {
        CHECK_MSG(memcmp(a.params_memory, m.params_memory, a.num_params * 4) == 0,
                  "sharded load differs from the single file");
        model_free(&m);
    }
    llama_model(&m, &c, 0, 61);
    struct { const char *extra, *name, *value, *remove, *want; } cases[] = {
        {NULL, NULL, NULL, "model-00002-of-00002.safetensors",
         "shard model-00002-of-00002.safetensors (listed in weight_map) is missing"},
        {NULL, "model.norm.weight", "\"model-00001-of-00002.safetensors\"", NULL,
         "which does not hold it"},
        {"model.layers.0.mlp.extra.weight", NULL, NULL, NULL,
         "unexpected tensor model.layers.0.mlp.extra.weight"},
        {NULL, "model.embed_tokens.weight", NULL, NULL, "holds tensor model.embed_tokens.weight, "
         "which"},
        {NULL, "model.embed_tokens.weight", "\"../x.safetensors\"", NULL, "must be a file name"},
        {NULL, "model.embed_tokens.weight", "7", NULL, "must be a file name"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_two_shards(good, dir, cases[i].extra);
        if (cases[i].name) edit_index(dir, cases[i].name, cases[i].value);
        if (cases[i].remove) { path(p, dir, cases[i].remove); unlink(p); }
        fill_sentinel(&m);
        CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, cases[i].want, NULL);
        CHECK(is_sentinel(&m));
    }
    // one tensor in both shards, the index naming one of them
    write_two_shards(good, dir, NULL);
    char src_name[1024];
    path(p, dir, "model-00001-of-00002.safetensors");
    StParts s1, s2;
    path(src_name, dir, "model-00002-of-00002.safetensors");
    if (!st_split(p, &s1) && !st_split(src_name, &s2)) {
        // shard 2 gains shard 1's first tensor (its bytes appended)
        cJSON *e = s1.h->child;
        cJSON *o = cJSON_GetObjectItem(e, "data_offsets");
        size_t b = (size_t)cJSON_GetArrayItem(o, 0)->valuedouble;
        size_t n = (size_t)cJSON_GetArrayItem(o, 1)->valuedouble - b;
        char *data = MALLOC_CHECK(s2.data_len + n);
        memcpy(data, s2.data, s2.data_len);
        memcpy(data + s2.data_len, s1.data + b, n);
        cJSON *h = cJSON_Duplicate(s2.h, 1);
        cJSON_AddItemToObject(h, e->string, cJSON_Duplicate(e, 1));
        set_offsets(h, e->string, (double)s2.data_len, (double)(s2.data_len + n));
        char *txt = cJSON_PrintUnformatted(h);
        st_join(src_name, txt, data, s2.data_len + n, 0);
        free(txt);
        cJSON_Delete(h);
        free(data);
        fill_sentinel(&m);
        CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, "is in two shards",
                  e->string);
        CHECK(is_sentinel(&m));
        st_free(&s1);
        st_free(&s2);
    }
    // the index itself: not JSON, no weight_map, an empty one
    const char *idx[][2] = {{"{\"weight_map\": ", "invalid JSON"},
                            {"{\"metadata\": {}}", "\"weight_map\" must be a non-empty object"},
                            {"{\"weight_map\": {}}", "\"weight_map\" must be a non-empty object"}};
    for (int i = 0; i < 3; i++) {
        path(p, dir, "model.safetensors.index.json");
        write_text(p, idx[i][0]);
        CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, idx[i][1],
                  "model.safetensors.index.json");
    }
    // a damaged shard is named
    write_two_shards(good, dir, NULL);
    path(p, dir, "model-00002-of-00002.safetensors");
    test_write_file(p, "abc", 3);
    CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, "too short",
              "model-00002-of-00002.safetensors");
    CHECK(is_sentinel(&m));
    model_free(&m);
    model_free(&a);
}

// config.json of a saved family member with up to two keys replaced (json NULL: deleted).
typedef struct { int fam; const char *key, *json, *key2, *json2, *want; } ConfigCase;

static void test_llama_bad_config(void) {
    char good[5][1024], dir[1024], err[512];
    Model probe[5];
    for (int f = MODEL_FAMILY_LLAMA; f <= MODEL_FAMILY_QWEN3; f++) {
        ModelConfig c = llama_cfg(f);
        llama_model(&probe[f], &c, 0, 70);
        path(good[f], root, family_name[f]);
        test_rm_rf(good[f]);
        CHECK_MSG(ckpt_save(good[f], &probe[f], NULL, err, sizeof err) == 0, "%s", err);
    }
    const int L = MODEL_FAMILY_LLAMA, M = MODEL_FAMILY_MISTRAL, Q2 = MODEL_FAMILY_QWEN2,
              Q3 = MODEL_FAMILY_QWEN3;
    const ConfigCase cases[] = {
        // sliding windows: refused when in use, accepted when as long as the context or off
        {M, "sliding_window", "16", NULL, NULL,
         "\"sliding_window\" is 16, below "
         "max_position_embeddings 64: sliding-window attention is not supported"},
        {M, "sliding_window", "64", NULL, NULL, NULL},
        {M, "sliding_window", "4096", NULL, NULL, NULL},
        {Q2, "use_sliding_window", "true", "sliding_window", "16",
         "\"use_sliding_window\" is true"},
        {Q2, "use_sliding_window", "false", "sliding_window", "16", NULL},
        {Q3, "use_sliding_window", "true", "sliding_window", "16",
         "\"use_sliding_window\" is true"},
        {Q3, "layer_types", "[\"full_attention\", \"sliding_attention\"]", NULL, NULL,
         "\"layer_types\" lists a layer of type \"sliding_attention\""},
        {Q3, "layer_types", "[\"full_attention\", \"full_attention\"]", NULL, NULL, NULL},
        // mixture of experts
        {L, "num_experts", "8", NULL, NULL, "\"num_experts\" is set: mixture-of-experts"},
        {M, "num_local_experts", "8", NULL, NULL, "\"num_local_experts\" is set"},
        {Q2, "num_experts_per_tok", "2", NULL, NULL, "\"num_experts_per_tok\" is set"},
        {Q3, "moe_intermediate_size", "64", NULL, NULL, "\"moe_intermediate_size\" is set"},
        // rope scalings other than llama3
        {L, "rope_scaling", "{\"type\": \"linear\", \"factor\": 2.0}", NULL, NULL,
         "\"rope_scaling\" of type \"linear\" is not supported"},
        {Q2, "rope_scaling", "{\"rope_type\": \"dynamic\", \"factor\": 2.0}", NULL, NULL,
         "\"rope_scaling\" of type \"dynamic\""},
        {Q3, "rope_scaling",
         "{\"rope_type\": \"yarn\", \"factor\": 4.0, "
         "\"original_max_position_embeddings\": 32768}",
         NULL, NULL, "\"rope_scaling\" of type \"yarn\""},
        {L, "rope_parameters", "{\"rope_type\": \"longrope\", \"rope_theta\": 10000.0}", NULL, NULL,
         "\"rope_parameters\" of type \"longrope\""},
        {L, "rope_scaling",
         "{\"rope_type\": \"llama3\", \"low_freq_factor\": 1.0, "
         "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8}",
         NULL, NULL, "needs \"factor\""},
        {L, "rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": "
         "1.0, \"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8, \"beta\": 1}",
         NULL, NULL, "unsupported key \"beta\""},
        {L, "rope_scaling",
         "{\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": "
         "4.0, \"high_freq_factor\": 1.0, \"original_max_position_embeddings\": 8}",
         NULL, NULL, "high_freq_factor > low_freq_factor"},
        {L, "rope_scaling", "3", NULL, NULL, "\"rope_scaling\" must be null or an object"},
        {L, "rope_theta", "0", NULL, NULL, "\"rope_theta\" must be positive"},
        // biases and activations these classes would run
        {L, "attention_bias", "true", NULL, NULL, "\"attention_bias\" is true"},
        {L, "mlp_bias", "true", NULL, NULL, "\"mlp_bias\" is true"},
        {Q3, "attention_bias", "true", NULL, NULL, "\"attention_bias\" is true"},
        {L, "hidden_act", "\"gelu\"", NULL, NULL, "\"hidden_act\" is \"gelu\": only silu"},
        {Q2, "hidden_act", "\"relu\"", NULL, NULL, "\"hidden_act\" is \"relu\""},
        // model types and architectures
        {L, "model_type", "\"mixtral\"", NULL, NULL, "model_type \"mixtral\" is not supported"},
        {Q2, "model_type", "\"qwen2_moe\"", NULL, NULL, "model_type \"qwen2_moe\""},
        {L, "model_type", "7", NULL, NULL, "model_type (not a string) is not supported"},
        {Q2, "architectures", "[\"LlamaForCausalLM\"]", NULL, NULL,
         "unsupported architecture \"LlamaForCausalLM\" (Qwen2ForCausalLM, "
         "Qwen2ForSequenceClassification)"},
        {L, "architectures", "[\"LlamaModel\"]", NULL, NULL, "unsupported architecture"},
        // keys and values
        {L, "hidden_size", NULL, NULL, NULL, "missing key \"hidden_size\""},
        {M, "intermediate_size", NULL, NULL, NULL, "missing key \"intermediate_size\""},
        {Q3, "num_hidden_layers", NULL, NULL, NULL, "missing key \"num_hidden_layers\""},
        {L, "num_key_value_heads", "3", NULL, NULL, "must divide num_attention_heads"},
        {L, "num_key_value_heads", "0", NULL, NULL, "\"num_key_value_heads\" is 0, outside"},
        {Q3, "head_dim", "7", NULL, NULL, "head_dim must be even"},
        {L, "tie_word_embeddings", "\"yes\"", NULL, NULL, "must be true or false"},
        {L, "rms_norm_eps", "\"x\"", NULL, NULL, "\"rms_norm_eps\" must be a number"},
        {L, "eos_token_id", "[99]", NULL, NULL, "\"eos_token_id\" is 99, outside 0..36"},
        {L, "eos_token_id", "[2, 5]", NULL, NULL, NULL},
        {L, "eos_token_id", "null", NULL, NULL, NULL},
        {L, "rope_scaling", "{\"rope_type\": \"default\"}", "rope_theta", "5e5", NULL},
        {M, "attention_bias", "true", NULL, NULL, NULL}, // MistralAttention has no biases
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ConfigCase *k = &cases[i];
        cJSON *c = read_config_json(good[k->fam]);
        const char *keys[2] = {k->key, k->key2}, *vals[2] = {k->json, k->json2};
        for (int j = 0; j < 2 && keys[j]; j++) {
            cJSON_DeleteItemFromObjectCaseSensitive(c, keys[j]);
            if (vals[j]) cJSON_AddItemToObject(c, keys[j], cJSON_Parse(vals[j]));
        }
        fresh_dir(dir, "llama_badcfg");
        copy_dir_file(good[k->fam], dir, "model.safetensors");
        write_config(dir, c);
        ModelConfig mc;
        CkptInfo info;
        int rc = ckpt_load_config(dir, &mc, &info, err, sizeof err);
        if (!k->want) {
            CHECK_MSG(rc == 0, "case %zu (%s): %s", i, k->key, err);
            if (!strcmp(k->key, "eos_token_id"))
                CHECK(info.eos_token_id == (k->json[0] == '[' ? 2 : -1));
            continue;
        }
        CHECK_ERR(rc, err, k->want, "config.json");
        fill_sentinel(&probe[k->fam]);
        CHECK_ERR(ckpt_load_weights(dir, &probe[k->fam], 0, err, sizeof err), err, k->want,
                  "config.json");
        CHECK(is_sentinel(&probe[k->fam]));
    }
    // defaults of the config classes: no num_key_value_heads (= heads), no tie_word_embeddings
    // (untied), no rms_norm_eps (1e-6), rope_theta (10000), max_position_embeddings (2048)
    cJSON *c = read_config_json(good[L]);
    const char *drop[] = {"num_key_value_heads", "tie_word_embeddings", "rms_norm_eps",
                          "rope_theta", "max_position_embeddings", "head_dim", "rope_scaling"};
    for (size_t i = 0; i < sizeof drop / sizeof drop[0]; i++)
        cJSON_DeleteItemFromObjectCaseSensitive(c, drop[i]);
    write_config(dir, c);
    ModelConfig mc;
    CHECK_MSG(ckpt_load_config(dir, &mc, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(mc.n_kv_head == 4 && mc.untied == 1 && mc.ln_eps == 1e-6f && mc.rope_theta == 10000.0f &&
          mc.max_seq_len == 2048 && model_head_dim(&mc) == 8 && mc.rope_scaling == 0);
    // transformers 5: rope_theta and rope_type inside rope_parameters
    c = read_config_json(good[L]);
    cJSON_DeleteItemFromObjectCaseSensitive(c, "rope_scaling");
    cJSON_DeleteItemFromObjectCaseSensitive(c, "rope_theta");
    cJSON_AddItemToObject(c, "rope_parameters", cJSON_Parse(
        "{\"rope_type\": \"llama3\", \"rope_theta\": 500000.0, \"factor\": 8.0, "
        "\"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0, "
        "\"original_max_position_embeddings\": 8}"));
    write_config(dir, c);
    CHECK_MSG(ckpt_load_config(dir, &mc, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(config_same(&mc, &probe[L].config));
    // a model that differs from the file is named by the HF key
    const struct { int fam; const char *want; } diffs[] = {
        {L, "num_key_value_heads is 2 but the model has 4"}, {M, "tie_word_embeddings is 0"},
        {Q3, "head_dim is 16 but the model has 8"}, {L, "rope_theta is 500000 but the model has"},
        {Q2, "model_type is qwen2 but the model is qwen3"}};
    for (int i = 0; i < 5; i++) {
        ModelConfig o = probe[diffs[i].fam].config;
        switch (i) {
            case 0: o.n_kv_head = 4; break;
            case 1: o.untied = 0; break;
            case 2: o.head_dim = 0; break;
            case 3: o.rope_theta = 1e4f; break;
            default: o = llama_cfg(Q3); o.n_embd = 24;
        }
        Model x;
        if (model_init(&x, &o, 1, 8, 0, 0, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err);
            continue;
        }
        CHECK_ERR(ckpt_load_weights(good[diffs[i].fam], &x, 0, err, sizeof err), err,
                  diffs[i].want, "config.json");
        model_free(&x);
    }
    for (int f = L; f <= Q3; f++) model_free(&probe[f]);
}

// lm_head.weight: tied (absent, or equal to the embeddings), untied (required), no LM head
// (skipped); RoPE buffers skipped; configs a family cannot express are not saved.
static void test_llama_heads(void) {
    char good[1024], dir[1024], p[1024], err[512];
    ModelConfig c = llama_cfg(MODEL_FAMILY_LLAMA);   // tied
    Model a, m;
    llama_model(&a, &c, 0, 80);
    path(good, root, "llama_tied");
    test_rm_rf(good);
    CHECK_MSG(ckpt_save(good, &a, NULL, err, sizeof err) == 0, "%s", err);
    llama_model(&m, &c, 0, 81);
    for (int k = 0; k < 3; k++) {   // 0: lm_head = embeddings, 1: differs, 2: + RoPE buffers
        fresh_dir(dir, "llama_head");
        copy_dir_file(good, dir, "config.json");
        copy_dir_file(good, dir, "model.safetensors");
        path(p, dir, "model.safetensors");
        StParts s;
        if (st_split(p, &s)) continue;
        cJSON *h = cJSON_Duplicate(s.h, 1),
              *e = cJSON_GetObjectItem(h, "model.embed_tokens.weight");
        size_t b = (size_t)offset_of(h, "model.embed_tokens.weight", 0);
        size_t n = (size_t)offset_of(h, "model.embed_tokens.weight", 1) - b;
        char *data = MALLOC_CHECK(s.data_len + n + 64);
        memcpy(data, s.data, s.data_len);
        size_t len = s.data_len;
        const char *name =
            k < 2 ? "lm_head.weight" : "model.layers.1.self_attn.rotary_emb.inv_freq";
        if (k < 2) {
            memcpy(data + len, s.data + b, n);
            if (k == 1) data[len + 5] ^= 0x40;
            cJSON_AddItemToObject(h, name, cJSON_Duplicate(e, 1));
            set_offsets(h, name, (double)len, (double)(len + n));
            len += n;
        } else {
            memset(data + len, 0, 16);
            cJSON_AddItemToObject(
                h, name, cJSON_Parse("{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,0]}"));
            set_offsets(h, name, (double)len, (double)(len + 16));
            len += 16;
        }
        char *txt = cJSON_PrintUnformatted(h);
        st_join(p, txt, data, len, 0);
        free(txt);
        cJSON_Delete(h);
        free(data);
        st_free(&s);
        fill_sentinel(&m);
        int rc = ckpt_load_weights(dir, &m, 0, err, sizeof err);
        if (k == 1) {
            CHECK_ERR(rc, err, "lm_head.weight differs from model.embed_tokens.weight but "
                      "tie_word_embeddings is true", NULL);
            CHECK(is_sentinel(&m));
        } else {
            CHECK_MSG(rc == 0, "case %d: %s", k, err);
            CHECK(memcmp(a.params_memory, m.params_memory, a.num_params * 4) == 0);
        }
    }
    model_free(&m);
    model_free(&a);
    // untied: lm_head.weight is required; a reward model made from the LM does without it
    c = llama_cfg(MODEL_FAMILY_MISTRAL);
    llama_model(&a, &c, 0, 82);
    path(good, root, "llama_untied");
    test_rm_rf(good);
    CHECK_MSG(ckpt_save(good, &a, NULL, err, sizeof err) == 0, "%s", err);
    ModelConfig rc = c;
    rc.lm_head = 0;
    rc.score_head = 1;
    CHECK(model_init(&m, &rc, 1, 8, 0, 0, err, sizeof err) == 0);
    CHECK_MSG(ckpt_load_weights(good, &m, CKPT_ALLOW_MISSING_SCORE, err, sizeof err) == 0, "%s",
              err);
    model_free(&m);
    fresh_dir(dir, "llama_nohead");
    copy_dir_file(good, dir, "config.json");
    copy_dir_file(good, dir, "model.safetensors");
    path(p, dir, "model.safetensors");
    StParts s;
    if (!st_split(p, &s)) {
        cJSON *h = cJSON_Duplicate(s.h, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(h, "lm_head.weight");
        st_join_json(p, h, &s);
        st_free(&s);
        llama_model(&m, &c, 0, 83);
        CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err,
                  "missing tensor lm_head.weight", "model.safetensors");
        model_free(&m);
    }
    // a config the family's config.json cannot express is not saved
    ModelConfig bad = llama_cfg(MODEL_FAMILY_LLAMA);
    bad.qkv_bias = 1;
    CHECK(model_init(&m, &bad, 1, 8, 0, 0, err, sizeof err) == 0);
    path(dir, root, "llama_cannot");
    CHECK_ERR(ckpt_save(dir, &m, NULL, err, sizeof err), err,
              "with q/k/v biases: model_type llama cannot express them", "llama_cannot");
    CHECK(!exists(dir));
    model_free(&m);
    model_free(&a);
}

int main(void) {
    if (test_scratch_dir(root, sizeof root, "rlhf_ckpt_llama")) return 1;
    test_case("checkpoint: Llama family round trips (4 families x LM / reward / both heads, bf16, "
              "shards, trainer state)", test_llama_roundtrip);
    test_case("checkpoint: PyTorch reads our Llama-family checkpoints (bf16, shards) with the same "
              "loss", test_llama_python_reads_ours);
    test_case("checkpoint: Llama-family checkpoints written as transformers does load with "
              "PyTorch's loss", test_llama_hf_written);
    test_case("checkpoint: Llama-family F16 / BF16 tensors load exactly", test_llama_half_input);
    test_case("checkpoint: float32 -> bfloat16 rounds to nearest even", test_bf16_rounding);
    test_case("checkpoint: sharded load and every bad index (missing shard, two shards, unknown "
              "tensor, unlisted tensor, bad names)", test_llama_sharded_load);
    test_case("checkpoint: Llama-family refusals name the key (sliding window, MoE, rope "
              "scalings, biases, hidden_act, model_type) and defaults", test_llama_bad_config);
    test_case("checkpoint: Llama-family lm_head (tied, untied, reward model), RoPE buffers, "
              "configs a family cannot express", test_llama_heads);
    test_rm_rf(root);
    return test_summary();
}
