// Checkpoint tests: a Hugging Face-layout GPT-2 written by tests/ref/hf_interop.py (bare names,
// F16/BF16 tensors, mask buffers, tied lm_head) loads and reproduces PyTorch's loss; a save and
// reload is bit-identical (weights, AdamW moments, trainer state); PyTorch reads what we save and
// gets the same loss; reward-model head flags; every corrupt-file and bad-config path is a
// one-line error that leaves the model untouched; interrupted saves (leftovers, a process killed
// at random moments, a full disk) always leave a loadable checkpoint.
#define _GNU_SOURCE   // nftw
#include "checkpoint.h"
#include "model.h"
#include "rng.h"
#include "testlib.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[512];      // scratch directory for this run
static char fixture[512];   // tests/fixtures/hf_tiny

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

// out[1024] = a/b, or a + suffix (the names here are short: a longer one is a broken setup)
static void path(char *out, const char *a, const char *b) {
    if (snprintf(out, 1024, "%s/%s", a, b) >= 1024) { fprintf(stderr, "path too long\n"); exit(1); }
}
static void sibling(char *out, const char *a, const char *suffix) {
    if (snprintf(out, 1024, "%s%s", a, suffix) >= 1024) {
        fprintf(stderr, "path too long\n");
        exit(1);
    }
}


static int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }


static void write_text(const char *p, const char *s) { test_write_file(p, s, strlen(s)); }


static void copy_dir_file(const char *src_dir, const char *dst_dir, const char *name) {
    char a[1024], b[1024];
    path(a, src_dir, name);
    path(b, dst_dir, name);
    size_t n;
    char *d = test_read_file(a, &n);
    if (!d) { fprintf(stderr, "cannot read %s\n", a); exit(1); }
    test_write_file(b, d, n);
    free(d);
}

static void fresh_dir(char *out, const char *name) {
    path(out, root, name);
    test_rm_rf(out);
    mkdir(out, 0777);
}

static double read_number_file(const char *p) {
    char *s = test_read_file(p, NULL);
    if (!s) { fprintf(stderr, "cannot read %s\n", p); exit(1); }
    double v = atof(s);
    free(s);
    return v;
}

// The whitespace-separated ids of file p (at most max).
static int read_tokens(const char *p, int32_t *tok, int max) {
    char *s = test_read_file(p, NULL);
    if (!s) { fprintf(stderr, "cannot read %s\n", p); exit(1); }
    int n = 0;
    char *q = s, *end;
    for (long v = strtol(q, &end, 10); end != q && n < max; v = strtol(q, &end, 10)) {
        tok[n++] = (int32_t)v;
        q = end;
    }
    free(s);
    return n;
}

// Mean next-token cross-entropy of the ids in file p (at most 64).
static float file_loss(Model *m, const char *p) {
    int32_t tok[64], tgt[64], len;
    float w[64];
    int T = read_tokens(p, tok, 64);
    for (int t = 0; t < T; t++) {
        tgt[t] = t + 1 < T ? tok[t + 1] : -1;
        w[t] = t + 1 < T ? 1.0f / (float)(T - 1) : 0.0f;
    }
    len = T;
    ModelBatch b = {.B = 1, .T = T, .tokens = tok, .lengths = &len, .targets = tgt, .weights = w};
    char err[256];
    if (model_forward(m, &b, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "forward: %s", err);
        return NAN;
    }
    return m->loss;
}

// ... of the fixture's token sequence.
static float sequence_loss(Model *m) {
    char p[1024];
    path(p, fixture, "tokens.txt");
    return file_loss(m, p);
}

// Runs hf_interop.py check on dir; returns the printed loss or NAN (and fails the case).
static double python_check_loss(const char *dir) {
    char cmd[2048], line[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/ref/hf_interop.py check '%s' 2>&1",
             test_data_dir(), dir);
    FILE *p = popen(cmd, "r");
    if (!p) { test_fail_at(__FILE__, __LINE__, "cannot run %s", cmd); return NAN; }
    double loss = NAN;
    while (fgets(line, sizeof line, p)) {
        if (!strncmp(line, "loss ", 5)) loss = atof(line + 5);
        else fprintf(stderr, "    python: %s", line);
    }
    int st = pclose(p);
    if (st != 0)
        test_fail_at(__FILE__, __LINE__, "%s exited with status %d (python3-torch missing?)", cmd,
                     st);
    if (isnan(loss)) test_fail_at(__FILE__, __LINE__, "%s printed no loss", cmd);
    return st == 0 ? loss : NAN;
}

static void check_rel(double got, double want, double rel, const char *what) {
    CHECK_MSG(fabs(got - want) <= rel * fabs(want), "%s: %.9g vs %.9g (rel tol %g)", what, got,
              want, rel);
}

static int load_model(const char *dir, Model *m, int trainable, int flags) {
    char err[512];
    if (ckpt_load_model(dir, m, 1, 16, trainable, flags, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "load %s: %s", dir, err);
        return -1;
    }
    return 0;
}


// The small model the error-path tests corrupt: L=1, NH=2, C=4, V=5, T=3.
static const ModelConfig small_cfg = {.max_seq_len = 3, .vocab_size = 5, .n_layer = 1, .n_head = 2,
                                      .n_embd = 4, .ln_eps = 1e-5f, .lm_head = 1, .score_head = 0};

static void small_model(Model *m, int trainable, uint64_t seed) {
    char err[256];
    if (model_init(m, &small_cfg, 1, 3, trainable, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    model_init_weights(m, seed);
}

static void fill_sentinel(Model *m) {
    for (size_t i = 0; i < m->num_params; i++) m->params_memory[i] = 7.0f;
}
static int is_sentinel(const Model *m) {
    for (size_t i = 0; i < m->num_params; i++) if (m->params_memory[i] != 7.0f) return 0;
    return 1;
}

// safetensors pieces: parse a file into (header JSON, data) so a case can mutate and rewrite it
typedef struct { cJSON *h; char *raw; const char *data; size_t data_len; } StParts;

static int st_split(const char *p, StParts *s) {
    size_t n;
    s->raw = test_read_file(p, &n);
    if (!s->raw) return -1;
    uint64_t hl;
    memcpy(&hl, s->raw, 8);
    s->h = cJSON_ParseWithLength(s->raw + 8, (size_t)hl);
    s->data = s->raw + 8 + hl;
    s->data_len = n - 8 - (size_t)hl;
    return s->h ? 0 : -1;
}

static void st_join(const char *p, const char *header, const char *data, size_t data_len,
                    size_t extra) {
    size_t hl = strlen(header);
    FILE *f = fopen(p, "wb");
    uint64_t h64 = hl;
    fwrite(&h64, 8, 1, f);
    fwrite(header, 1, hl, f);
    fwrite(data, 1, data_len, f);
    for (size_t i = 0; i < extra; i++) fputc(0, f);
    fclose(f);
}

static void st_free(StParts *s) { cJSON_Delete(s->h); free(s->raw); }

// Rewrites p with header h (deleted after) in front of s's data.
static void st_join_json(const char *p, cJSON *h, const StParts *s) {
    char *txt = cJSON_PrintUnformatted(h);
    st_join(p, txt, s->data, s->data_len, 0);
    free(txt);
    cJSON_Delete(h);
}

static void set_offsets(cJSON *h, const char *name, double b, double e) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    cJSON *o = cJSON_CreateArray();
    cJSON_AddItemToArray(o, cJSON_CreateNumber(b));
    cJSON_AddItemToArray(o, cJSON_CreateNumber(e));
    cJSON_ReplaceItemInObjectCaseSensitive(t, "data_offsets", o);
}

static void set_shape(cJSON *h, const char *name, int n, const double *dims) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    cJSON *s = cJSON_CreateArray();
    for (int i = 0; i < n; i++) cJSON_AddItemToArray(s, cJSON_CreateNumber(dims[i]));
    cJSON_ReplaceItemInObjectCaseSensitive(t, "shape", s);
}

static void set_dtype(cJSON *h, const char *name, const char *dt) {
    cJSON_ReplaceItemInObjectCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, name), "dtype",
                                           cJSON_CreateString(dt));
}

static double offset_of(cJSON *h, const char *name, int which) {
    cJSON *o =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, name), "data_offsets");
    return cJSON_GetArrayItem(o, which)->valuedouble;
}

// ---------------------------------------------------------------------------------------------
// cases
// ---------------------------------------------------------------------------------------------

static void test_hf_fixture_loss(void) {
    ModelConfig c;
    CkptInfo info;
    char err[512], p[1024];
    CHECK_MSG(ckpt_load_config(fixture, &c, &info, err, sizeof err) == 0, "%s", err);
    CHECK(c.vocab_size == 101 && c.n_head == 3 && c.n_embd == 24 && c.n_layer == 2 &&
          c.max_seq_len == 16);
    CHECK(c.ln_eps == 1e-5f && c.lm_head == 1 && c.score_head == 0);
    CHECK(info.bos_token_id == 100 && info.eos_token_id == 100 && !info.has_tokenizer &&
          !info.has_trainer_state && !info.from_old);
    Model m;
    if (load_model(fixture, &m, 0, 0)) return;
    path(p, fixture, "expected_loss.txt");
    check_rel(sequence_loss(&m), read_number_file(p), 1e-4, "loss of the HF fixture vs PyTorch");
    model_free(&m);
}

static void fill_state(Model *m, CkptTrainerState *st, uint64_t seed) {
    Rng r;
    rng_init(&r, seed);
    rng_fill_normal(&r, m->m_memory, (int64_t)m->num_params, 0.0f, 1e-3f);
    for (size_t i = 0; i < m->num_params; i++) m->v_memory[i] = rng_float(&r) * 1e-6f;
    ckpt_state_init(st);
    st->step = 1234567 + (int64_t)seed;
    rng_init(&st->rng, seed * 7 + 1);
    for (int i = 0; i < 5; i++) rng_u64(&st->rng);
    char err[256];
    CHECK(ckpt_state_set_int(st, "data.cursor", ((int64_t)1 << 62) + 5, err, sizeof err) == 0);
    CHECK(ckpt_state_set_int(st, "data.min", INT64_MIN, err, sizeof err) == 0);
    CHECK(ckpt_state_set_int(st, "data.max", INT64_MAX, err, sizeof err) == 0);
    CHECK(ckpt_state_set_float(st, "kl.beta", 0.02, err, sizeof err) == 0);
    CHECK(ckpt_state_set_float(st, "third", 1.0 / 3.0, err, sizeof err) == 0);
    CHECK(ckpt_state_set_float(st, "tiny", 1e-300, err, sizeof err) == 0);
    CHECK(ckpt_state_set_float(st, "huge", -1.7976931348623157e308, err, sizeof err) == 0);
    CHECK(ckpt_state_set_float(st, "sum", 0.1 + 0.2, err, sizeof err) == 0);
}

static int states_equal(const CkptTrainerState *a, const CkptTrainerState *b) {
    if (a->step != b->step || memcmp(&a->rng, &b->rng, sizeof a->rng) || a->n_ints != b->n_ints ||
        a->n_floats != b->n_floats)
        return 0;
    for (int i = 0; i < a->n_ints; i++) {
        int64_t v;
        if (ckpt_state_get_int(b, a->ints[i].name, &v, NULL, 0) || v != a->ints[i].value) return 0;
    }
    for (int i = 0; i < a->n_floats; i++) {
        double v;
        if (ckpt_state_get_float(b, a->floats[i].name, &v, NULL, 0) ||
            memcmp(&v, &a->floats[i].value, sizeof v))
            return 0;
    }
    return 1;
}

static void make_tokenizer_dir(char *tokdir) {
    char p[1024];
    fresh_dir(tokdir, "tok");
    path(p, tokdir, "vocab.json");
    write_text(p, "{\"!\": 0, \"\\u0120the\": 1}\n");
    path(p, tokdir, "merges.txt");
    write_text(p, "#version: 0.2\n\xc4\xa0 t\n");
}

static void test_roundtrip(void) {
    Model a, b;
    if (load_model(fixture, &a, 1, 0)) return;
    CkptTrainerState st, st2;
    fill_state(&a, &st, 1);
    char dir[1024], tokdir[1024], err[512], p[1024], q[1024];
    make_tokenizer_dir(tokdir);
    path(dir, root, "rt");
    test_rm_rf(dir);
    CkptSaveOptions opt = {.tokenizer_dir = tokdir, .has_token_ids = 1, .bos_token_id = 100,
                           .eos_token_id = 99, .state = &st};
    CHECK_MSG(ckpt_save(dir, &a, &opt, err, sizeof err) == 0, "%s", err);
    // saving again over it replaces it and leaves no sibling behind
    CHECK_MSG(ckpt_save(dir, &a, &opt, err, sizeof err) == 0, "%s", err);
    sibling(p, dir, ".old");
    CHECK(!exists(p));
    ModelConfig c;
    CkptInfo info;
    CHECK_MSG(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0, "%s", err);
    CHECK(info.bos_token_id == 100 && info.eos_token_id == 99 && info.has_tokenizer &&
          info.has_trainer_state && !info.from_old);
    CHECK(c.lm_head == 1 && c.score_head == 0 && c.ln_eps == a.config.ln_eps &&
          c.max_seq_len == a.config.max_seq_len);
    CHECK(model_init(&b, &c, 1, 16, 1, 0, err, sizeof err) == 0);
    CHECK_MSG(ckpt_load_weights(dir, &b, 0, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(ckpt_load_trainer_state(dir, &b, &st2, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(memcmp(a.params_memory, b.params_memory, a.num_params * sizeof(float)) == 0,
              "params differ after reload");
    CHECK_MSG(memcmp(a.m_memory, b.m_memory, a.num_params * sizeof(float)) == 0,
              "first moments differ after reload");
    CHECK_MSG(memcmp(a.v_memory, b.v_memory, a.num_params * sizeof(float)) == 0,
              "second moments differ after reload");
    CHECK_MSG(states_equal(&st, &st2), "trainer state differs after reload");
    int64_t cur;
    CHECK(ckpt_state_get_int(&st2, "data.cursor", &cur, err, sizeof err) == 0 &&
          cur == ((int64_t)1 << 62) + 5);
    // the JSON carries the u64 Rng words as exact decimal strings
    path(p, dir, "trainer_state.json");
    char *js = test_read_file(p, NULL), num[32];
    snprintf(num, sizeof num, "\"%llu\"", (unsigned long long)st2.rng.s[0]);
    CHECK_MSG(js && strstr(js, num), "trainer_state.json lacks %s", num);
    free(js);
    // the Rng continues exactly where it was
    CHECK(rng_u64(&st.rng) == rng_u64(&st2.rng));
    for (int i = 0; i < 2; i++) {
        const char *f = i ? "merges.txt" : "vocab.json";
        path(p, tokdir, f);
        path(q, dir, f);
        size_t n1, n2;
        char *x = test_read_file(p, &n1), *y = test_read_file(q, &n2);
        CHECK_MSG(x && y && n1 == n2 && !memcmp(x, y, n1), "%s not copied verbatim", f);
        free(x); free(y);
    }
    // a weights-only save drops the trainer state
    CHECK_MSG(ckpt_save(dir, &a, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && !info.has_trainer_state &&
          !info.has_tokenizer);
    CHECK_ERR(ckpt_load_trainer_state(dir, &b, &st2, err, sizeof err), err, "no trainer state",
              "rt");
    model_free(&a);
    model_free(&b);
}

static void test_python_reads_ours(void) {
    Model a;
    if (load_model(fixture, &a, 1, 0)) return;
    CkptTrainerState st;
    fill_state(&a, &st, 2);
    char dir[1024], err[512], p[1024];
    path(dir, root, "py");
    test_rm_rf(dir);
    CkptSaveOptions opt = {.state = &st};
    CHECK_MSG(ckpt_save(dir, &a, &opt, err, sizeof err) == 0, "%s", err);
    path(p, fixture, "expected_loss.txt");
    double want = read_number_file(p);
    check_rel(python_check_loss(dir), want, 1e-4, "PyTorch loss of the checkpoint we saved");
    check_rel(sequence_loss(&a), want, 1e-4, "our loss");
    model_free(&a);
}

static void test_score_head(void) {
    char dir[1024], err[512], p[1024];
    ModelConfig c;
    CkptInfo info;
    CHECK_MSG(ckpt_load_config(fixture, &c, NULL, err, sizeof err) == 0, "%s", err);
    // reward model initialised from an LM checkpoint: the head is the caller's
    c.lm_head = 0;
    c.score_head = 1;
    Model rm, lm;
    CHECK(model_init(&rm, &c, 1, 16, 0, 0, err, sizeof err) == 0);
    CHECK_ERR(ckpt_load_weights(fixture, &rm, 0, err, sizeof err), err,
              "missing tensor score.weight", "model.safetensors");
    for (int i = 0; i < c.n_embd; i++) rm.params.scorew[i] = 0.5f + (float)i;
    CHECK_MSG(ckpt_load_weights(fixture, &rm, CKPT_ALLOW_MISSING_SCORE, err, sizeof err) == 0, "%s",
              err);
    int untouched = 1;
    for (int i = 0; i < c.n_embd; i++) untouched &= rm.params.scorew[i] == 0.5f + (float)i;
    CHECK_MSG(untouched, "score.weight was modified by a load that lacked it");
    path(dir, root, "rm");
    test_rm_rf(dir);
    CHECK_MSG(ckpt_save(dir, &rm, NULL, err, sizeof err) == 0, "%s", err);
    path(p, dir, "config.json");
    char *js = test_read_file(p, NULL);
    CHECK(js && strstr(js, "GPT2ForSequenceClassification") && strstr(js, "\"num_labels\":") &&
          !strstr(js, "GPT2LMHeadModel"));
    free(js);
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && c.lm_head == 0 &&
          c.score_head == 1 && info.bos_token_id == -1);
    path(p, fixture, "expected_loss.txt");
    check_rel(python_check_loss(dir), read_number_file(p), 1e-4,
              "PyTorch loss of the reward checkpoint's transformer");
    // an LM reading a reward checkpoint drops the head only when asked
    if (load_model(fixture, &lm, 0, 0)) { model_free(&rm); return; }
    fill_sentinel(&lm);
    CHECK_ERR(ckpt_load_weights(dir, &lm, 0, err, sizeof err), err, "CKPT_IGNORE_SCORE",
              "model.safetensors");
    CHECK(is_sentinel(&lm));
    CHECK_MSG(ckpt_load_weights(dir, &lm, CKPT_IGNORE_SCORE, err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(lm.params_memory, rm.params_memory, lm.num_params * sizeof(float)) == 0);
    // a reward model with its head reloads it exactly
    Model rm2;
    CHECK(ckpt_load_model(dir, &rm2, 1, 16, 0, 0, err, sizeof err) == 0);
    CHECK(rm2.config.score_head &&
          memcmp(rm2.params.scorew, rm.params.scorew, (size_t)c.n_embd * sizeof(float)) == 0);
    model_free(&rm2);
    // a model with both heads records both architectures
    c.lm_head = 1;
    Model both;
    CHECK(model_init(&both, &c, 1, 16, 0, 0, err, sizeof err) == 0);
    CHECK_MSG(ckpt_load_weights(dir, &both, 0, err, sizeof err) == 0, "%s", err);
    path(dir, root, "both");
    test_rm_rf(dir);
    CHECK_MSG(ckpt_save(dir, &both, NULL, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && c.lm_head == 1 &&
          c.score_head == 1);
    model_free(&both);
    model_free(&lm);
    model_free(&rm);
}

// One corrupt-file case: rewrite model.safetensors of `dir`, expect a load error naming it.
typedef void (*Mutate)(StParts *s, char **header, size_t *extra);

static void corrupt_case(const char *good, const char *want, Mutate mut, int line) {
    char dir[1024], p[1024], err[512];
    fresh_dir(dir, "bad");
    copy_dir_file(good, dir, "config.json");
    path(p, good, "model.safetensors");
    StParts s;
    if (st_split(p, &s)) { test_fail_at(__FILE__, line, "cannot split %s", p); return; }
    char *header = NULL;
    size_t extra = 0;
    mut(&s, &header, &extra);
    if (!header) header = cJSON_PrintUnformatted(s.h);
    path(p, dir, "model.safetensors");
    st_join(p, header, s.data, s.data_len, extra);
    free(header);
    st_free(&s);
    Model m;
    small_model(&m, 0, 1);
    fill_sentinel(&m);
    int rc = ckpt_load_weights(dir, &m, 0, err, sizeof err);
    if (rc != -1 || !strstr(err, want) || !strstr(err, "model.safetensors") || strchr(err, '\n'))
        test_fail_at(
            __FILE__, line,
            "expected a one-line error naming model.safetensors with \"%s\"; rc %d, err \"%s\"",
            want, rc, rc ? err : "");
    if (!is_sentinel(&m)) test_fail_at(__FILE__, line, "a failed load modified the model");
    model_free(&m);
}

static void mut_unknown_dtype(StParts *s, char **h, size_t *x) {
    set_dtype(s->h, "transformer.wte.weight", "F99");
}
static void mut_int_dtype(StParts *s, char **h, size_t *x) {
    set_dtype(s->h, "transformer.ln_f.bias", "I32");
}
static void mut_transposed(StParts *s, char **h, size_t *x) {
    double d[2] = {4, 5};
    set_shape(s->h, "transformer.wte.weight", 2, d);
}
static void mut_wrong_numel(StParts *s, char **h, size_t *x) {
    double d[1] = {3};
    set_shape(s->h, "transformer.ln_f.bias", 1, d);
}
static void mut_negative_dim(StParts *s, char **h, size_t *x) {
    double d[2] = {-5, -4};
    set_shape(s->h, "transformer.wte.weight", 2, d);
}
static void mut_fraction_dim(StParts *s, char **h, size_t *x) {
    double d[1] = {3.5};
    set_shape(s->h, "transformer.ln_f.bias", 1, d);
}
static void mut_huge_shape(StParts *s, char **h, size_t *x) {
    double d[3] = {1e15, 1e15, 1e15};
    set_shape(s->h, "transformer.ln_f.bias", 3, d);
}
static void mut_outside(StParts *s, char **h, size_t *x) {
    set_offsets(s->h, "transformer.ln_f.bias", (double)s->data_len - 8, (double)s->data_len + 8);
}
static void mut_reversed(StParts *s, char **h, size_t *x) {
    double b = offset_of(s->h, "transformer.ln_f.bias", 0),
           e = offset_of(s->h, "transformer.ln_f.bias", 1);
    set_offsets(s->h, "transformer.ln_f.bias", e, b);
}
static void mut_overlap(StParts *s, char **h,
                        size_t *x) { // ln_f.weight and ln_f.bias have the same size
    set_offsets(s->h, "transformer.ln_f.bias", offset_of(s->h, "transformer.ln_f.weight", 0) + 4,
                offset_of(s->h, "transformer.ln_f.weight", 1) + 4);
}
static void mut_missing(StParts *s, char **h, size_t *x) {
    cJSON_DeleteItemFromObjectCaseSensitive(s->h, "transformer.h.0.ln_2.bias");
}
static void mut_missing_many(StParts *s, char **h, size_t *x) {
    cJSON_DeleteItemFromObjectCaseSensitive(s->h, "transformer.h.0.ln_2.bias");
    cJSON_DeleteItemFromObjectCaseSensitive(s->h, "transformer.ln_f.weight");
}
static void add_tensor(StParts *s, const char *name, const char *dtype, int nd, const double *dims,
                       double b, double e) {
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "dtype", dtype);
    cJSON_AddItemToObject(t, "shape", cJSON_CreateArray());
    cJSON_AddItemToObject(t, "data_offsets", cJSON_CreateArray());
    cJSON_AddItemToObject(s->h, name, t);
    set_shape(s->h, name, nd, dims);
    set_offsets(s->h, name, b, e);
}
static void mut_unexpected(StParts *s, char **h, size_t *x) {
    double d[1] = {4};
    add_tensor(s, "transformer.h.1.ln_1.weight", "F32", 1, d, (double)s->data_len,
               (double)s->data_len + 16);
    *x = 16;
}
static void mut_both_spellings(StParts *s, char **h, size_t *x) {
    double d[1] = {4};
    add_tensor(s, "ln_f.bias", "F32", 1, d, (double)s->data_len, (double)s->data_len + 16);
    *x = 16;
}
static void mut_lm_head_differs(StParts *s, char **h, size_t *x) {
    double d[2] = {5, 4};
    add_tensor(s, "lm_head.weight", "F32", 2, d, (double)s->data_len, (double)s->data_len + 80);
    *x = 80;   // zeros, unlike wte
}
static void mut_bad_buffer_dtype(StParts *s, char **h,
                                 size_t *x) { // ignored tensors are still validated
    double d[4] = {1, 1, 3, 3};
    add_tensor(s, "h.0.attn.bias", "X8", 4, d, (double)s->data_len, (double)s->data_len + 9);
    *x = 9;
}
static void mut_bad_json(StParts *s, char **h, size_t *x) {
    char *t = cJSON_PrintUnformatted(s->h);
    *strchr(t, ':') = ';';
    *h = t;
}
static void mut_not_object(StParts *s, char **h, size_t *x) { *h = strdup("[1, 2, 3]"); }
static void mut_entry_not_object(StParts *s, char **h, size_t *x) {
    cJSON_ReplaceItemInObjectCaseSensitive(s->h, "transformer.ln_f.bias", cJSON_CreateNumber(3));
}
static void mut_unknown_key(StParts *s, char **h, size_t *x) {
    cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(s->h, "transformer.ln_f.bias"),
                            "stride", 1);
}
static void mut_trailing(StParts *s, char **h, size_t *x) {
    char *t = cJSON_PrintUnformatted(s->h);
    size_t n = strlen(t);
    t = realloc(t, n + 8);
    memcpy(t + n, "  xyz  ", 8);
    *h = t;
}
static void mut_duplicate(StParts *s, char **h, size_t *x) {
    // the same key twice (cJSON keeps both; the loader must notice)
    char *t = cJSON_PrintUnformatted(s->h);
    char *ent = strstr(t, "\"transformer.ln_f.bias\"");
    char *close = strchr(strchr(ent, '}') + 1, '}'); // end of the header object (ln_f.bias is last)
    size_t n = strlen(t), elen = (size_t)(strchr(ent, '}') + 1 - ent);
    char *u = malloc(n + elen + 2);
    size_t pre = (size_t)(close - t);
    memcpy(u, t, pre);
    u[pre] = ',';
    memcpy(u + pre + 1, ent, elen);
    strcpy(u + pre + 1 + elen, close);
    free(t);
    *h = u;
}

#define CORRUPT(good, want, mut) corrupt_case(good, want, mut, __LINE__)

// Saves the small model (seed 3) as root/name, a fresh folder; its path into good.
static void save_small_model(char *good, const char *name) {
    char err[512];
    Model m;
    small_model(&m, 0, 3);
    path(good, root, name);
    test_rm_rf(good);
    CHECK_MSG(ckpt_save(good, &m, NULL, err, sizeof err) == 0, "%s", err);
    model_free(&m);
}

static void test_corrupt_safetensors(void) {
    char good[1024], dir[1024], p[1024], err[512];
    save_small_model(good, "small");
    // the last tensor in the file must be ln_f.bias for mut_duplicate
    CORRUPT(good, "unknown dtype \"F99\"", mut_unknown_dtype);
    CORRUPT(good, "only F32, F16 and BF16", mut_int_dtype);
    CORRUPT(good, "has shape [4, 5], expected [5, 4]", mut_transposed);
    CORRUPT(good, "needs a different number of bytes", mut_wrong_numel);
    CORRUPT(good, "non-negative integers", mut_negative_dim);
    CORRUPT(good, "non-negative integers", mut_fraction_dim);
    CORRUPT(good, "more than the file's", mut_huge_shape);
    CORRUPT(good, "outside the data area", mut_outside);
    CORRUPT(good, "outside the data area", mut_reversed);
    CORRUPT(good, "overlap", mut_overlap);
    CORRUPT(good, "missing tensor h.0.ln_2.bias", mut_missing);
    CORRUPT(good, "and 1 more", mut_missing_many);
    CORRUPT(good, "unexpected tensor transformer.h.1.ln_1.weight", mut_unexpected);
    CORRUPT(good, "holds both ln_f.bias and transformer.ln_f.bias", mut_both_spellings);
    CORRUPT(good, "lm_head.weight differs from wte.weight", mut_lm_head_differs);
    CORRUPT(good, "unknown dtype \"X8\"", mut_bad_buffer_dtype);
    CORRUPT(good, "not valid JSON", mut_bad_json);
    CORRUPT(good, "not a JSON object", mut_not_object);
    CORRUPT(good, "is not an object", mut_entry_not_object);
    CORRUPT(good, "unknown key \"stride\"", mut_unknown_key);
    CORRUPT(good, "unexpected bytes after the header", mut_trailing);
    CORRUPT(good, "appears twice", mut_duplicate);

    // byte-level damage
    size_t n;
    path(p, good, "model.safetensors");
    char *raw = test_read_file(p, &n);
    Model m;
    small_model(&m, 0, 1);
    fill_sentinel(&m);
    struct { size_t keep; const char *want; } cuts[] = {
        {0, "too short"}, {5, "too short"}, {8, "empty header"}, {100, "exceeds the file size"},
        {n / 2 + 200, "outside the data area"}, {n - 1, "outside the data area"}};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        fresh_dir(dir, "cut");
        copy_dir_file(good, dir, "config.json");
        path(p, dir, "model.safetensors");
        if (cuts[i].keep == 8) { uint64_t z = 0; test_write_file(p, &z, 8); }
        else test_write_file(p, raw, cuts[i].keep);
        CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, cuts[i].want,
                  "model.safetensors");
    }
    // a lying header length: far beyond the file (no allocation may follow it)
    fresh_dir(dir, "lie");
    copy_dir_file(good, dir, "config.json");
    path(p, dir, "model.safetensors");
    uint64_t lie = (uint64_t)1 << 62;
    memcpy(raw, &lie, 8);
    test_write_file(p, raw, n);
    CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, "exceeds the file size",
              "model.safetensors");
    // missing file
    unlink(p);
    CHECK_ERR(ckpt_load_weights(dir, &m, 0, err, sizeof err), err, "cannot open",
              "model.safetensors");
    CHECK(is_sentinel(&m));
    free(raw);
    model_free(&m);
}

static void test_half_precision(void) {
    // every half value against ldexp arithmetic
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        int e = (int)((h >> 10) & 31), mant = (int)(h & 1023);
        double want = e == 31 ? (mant ? NAN : INFINITY)
                      : e     ? ldexp(1024 + mant, e - 25)
                              : ldexp(mant, -24);
        if (h & 0x8000) want = -want;
        float got = ckpt_f16_to_f32((uint16_t)h);
        if (isnan(want) ? !isnan(got) : (got != (float)want || !signbit(got) != !signbit(want))) {
            if (!bad++)
                test_fail_at(__FILE__, __LINE__, "f16 0x%04x: got %g want %g", h, got, want);
        }
    }
    CHECK(bad == 0);
    CHECK(ckpt_f16_to_f32(0x3c00) == 1.0f && ckpt_f16_to_f32(0xc000) == -2.0f &&
          ckpt_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(ckpt_f16_to_f32(0x0001) == 0x1p-24f && ckpt_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    CHECK(ckpt_bf16_to_f32(0x3f80) == 1.0f && ckpt_bf16_to_f32(0xc000) == -2.0f &&
          isinf(ckpt_bf16_to_f32(0x7f80)));
    CHECK(isnan(ckpt_bf16_to_f32(0x7fc0)) && ckpt_bf16_to_f32(0x0001) == 0x1p-133f &&
          ckpt_bf16_to_f32(0x3e80) == 0.25f);
}

static void test_bad_config(void) {
    char good[1024], dir[1024], p[1024], err[512];
    save_small_model(good, "small_cfg");
    path(p, good, "config.json");
    char *txt = test_read_file(p, NULL);
    cJSON *base = cJSON_Parse(txt ? txt : "{}");
    free(txt);
    struct { const char *key; const char *json; const char *want;
    } cases[] = {
        {"n_embd", NULL, "missing key \"n_embd\""},
        {"n_layer", NULL, "missing key \"n_layer\""},
        {"vocab_size", NULL, "missing key \"vocab_size\""},
        {"n_embd", "5", "divisible by n_head"},
        {"n_head", "\"2\"", "\"n_head\" must be an integer"},
        {"n_layer", "1.5", "\"n_layer\" must be an integer"},
        {"n_layer", "-1", "n_layer must be in"},
        {"n_layer", "1e300", "\"n_layer\" must be an integer"},
        {"vocab_size", "1e12", "outside"},
        {"n_ctx", "4", "n_positions (3) and n_ctx (4) differ"},
        {"architectures", "[\"GPT2DoubleHeadsModel\"]",
         "unsupported architecture \"GPT2DoubleHeadsModel\""},
        {"architectures", "[]", "non-empty array"},
        {"architectures", "[3]", "unsupported architecture"},
        {"model_type", "\"gpt3\"", "model_type \"gpt3\" is not supported"},
        {"activation_function", "\"relu\"", "activation_function"},
        {"tie_word_embeddings", "false", "tie_word_embeddings"},
        {"scale_attn_by_inverse_layer_idx", "true", "scale_attn_by_inverse_layer_idx"},
        {"layer_norm_epsilon", "0", "layer_norm_epsilon must be in"},
        {"layer_norm_epsilon", "\"x\"", "layer_norm_epsilon\" must be a number"},
        {"n_inner", "7", "n_inner"},
        {"bos_token_id", "5", "\"bos_token_id\" is 5, outside 0..4"},
        {"num_labels", "2", NULL}, // fine for an LM (only checked with a score head)
    };
    Model probe;
    small_model(&probe, 0, 1);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cJSON *c = cJSON_Duplicate(base, 1);
        cJSON_DeleteItemFromObjectCaseSensitive(c, cases[i].key);
        if (cases[i].json) cJSON_AddItemToObject(c, cases[i].key, cJSON_Parse(cases[i].json));
        char *s = cJSON_Print(c);
        cJSON_Delete(c);
        fresh_dir(dir, "badcfg");
        copy_dir_file(good, dir, "model.safetensors");
        path(p, dir, "config.json");
        write_text(p, s);
        free(s);
        ModelConfig mc;
        int rc = ckpt_load_config(dir, &mc, NULL, err, sizeof err);
        if (!cases[i].want) { CHECK_MSG(rc == 0, "case %zu: %s", i, err); continue; }
        CHECK_ERR(rc, err, cases[i].want, "config.json");
        fill_sentinel(&probe);
        CHECK_ERR(ckpt_load_weights(dir, &probe, 0, err, sizeof err), err, cases[i].want,
                  "config.json");
        CHECK(is_sentinel(&probe));
    }
    // a score head needs num_labels 1
    cJSON *c = cJSON_Duplicate(base, 1);
    cJSON_ReplaceItemInObjectCaseSensitive(c, "architectures",
                                           cJSON_Parse("[\"GPT2ForSequenceClassification\"]"));
    cJSON_AddNumberToObject(c, "num_labels", 2);
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    path(p, dir, "config.json");
    write_text(p, s);
    free(s);
    ModelConfig mc;
    CHECK_ERR(ckpt_load_config(dir, &mc, NULL, err, sizeof err), err, "num_labels is 2",
              "config.json");
    // not JSON, not an object, trailing junk, missing file
    const char *texts[][2] = {{"{\"n_layer\": 1,", "invalid JSON"},
                              {"[1]", "expected a JSON object"},
                              {"{} x", "unexpected data after"},
                              {"", "invalid JSON"}};
    for (int i = 0; i < 4; i++) {
        write_text(p, texts[i][0]);
        CHECK_ERR(ckpt_load_config(dir, &mc, NULL, err, sizeof err), err, texts[i][1],
                  "config.json");
    }
    unlink(p);
    CHECK_ERR(ckpt_load_config(dir, &mc, NULL, err, sizeof err), err, "cannot open", "config.json");
    path(p, root, "no_such_ckpt");
    CHECK_ERR(ckpt_load_config(p, &mc, NULL, err, sizeof err), err, "no such checkpoint directory",
              "no_such_ckpt");
    // config.json fine but the model differs
    ModelConfig other = small_cfg;
    other.n_embd = 8;
    Model o;
    CHECK(model_init(&o, &other, 1, 3, 0, 0, err, sizeof err) == 0);
    CHECK_ERR(ckpt_load_weights(good, &o, 0, err, sizeof err), err,
              "n_embd is 4 but the model has 8", "config.json");
    model_free(&o);
    cJSON_Delete(base);
    model_free(&probe);
}

static void test_bad_trainer_state(void) {
    char good[1024], dir[1024], p[1024], err[512];
    Model m;
    small_model(&m, 1, 3);
    CkptTrainerState st, got;
    fill_state(&m, &st, 3);
    path(good, root, "small_state");
    test_rm_rf(good);
    CkptSaveOptions opt = {.state = &st};
    CHECK_MSG(ckpt_save(good, &m, &opt, err, sizeof err) == 0, "%s", err);
    const char *files[] = {"config.json", "model.safetensors", "trainer_state.safetensors"};
    const char *jsons[][2] = {
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"abc\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "rng[1]"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"18446744073709551616\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "rng[1]"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[1,2,3,4],\"ints\":{},\"floats\":{}}",
         "rng[0]"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\"],\"ints\":{},\"floats\":{}}",
         "4 decimal strings"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"0\",\"0\",\"0\",\"0\"],\"ints\":{},\"floats\":{}}",
         "all zero"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":-1,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "\"step\" is -1"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "missing key \"step\""},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":2,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "\"version\" must be 1"},
        {"{\"format\":\"other\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{}}",
         "\"format\" must be"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{},\"lr\":1}",
         "unknown key \"lr\""},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{\"a\":5},\"floats\":{}}",
         "ints.a"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{\"a\":\"9223372036854775808\"},\"floats\":{}}",
         "ints.a"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{\"a\":\"1\",\"a\":\"2\"},\"floats\":{}}",
         "appears twice"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{},\"floats\":{\"b\":\"x\"}}",
         "floats.b"},
        {"{\"format\":\"rlhf.c trainer state\",\"version\":1,\"step\":3,\"rng\":[\"1\",\"2\",\"3\",\"4\"],\"ints\":{}}",
         "\"floats\" must be an object"},
        {"{\"format\":\"rlhf.c trainer state\",", "invalid JSON"},
    };
    memset(&got, 0x5a, sizeof got);
    CkptTrainerState sentinel = got;
    for (size_t i = 0; i < sizeof jsons / sizeof jsons[0]; i++) {
        fresh_dir(dir, "badstate");
        for (int k = 0; k < 3; k++) copy_dir_file(good, dir, files[k]);
        path(p, dir, "trainer_state.json");
        write_text(p, jsons[i][0]);
        CHECK_ERR(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err), err, jsons[i][1],
                  "trainer_state.json");
        CHECK(memcmp(&got, &sentinel, sizeof got) == 0);
    }
    // moments: a missing tensor, a wrong shape, an extra one, a non-trainable model, no file
    fresh_dir(dir, "badstate");
    for (int k = 0; k < 3; k++) copy_dir_file(good, dir, files[k]);
    copy_dir_file(good, dir, "trainer_state.json");
    CHECK_MSG(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err) == 0, "%s", err);
    CHECK(states_equal(&st, &got));
    path(p, dir, "trainer_state.safetensors");
    StParts s;
    CHECK(st_split(p, &s) == 0);
    cJSON *h = cJSON_Duplicate(s.h, 1);
    cJSON_DeleteItemFromObjectCaseSensitive(h, "v.h.0.mlp.c_fc.bias");
    st_join_json(p, h, &s);
    CHECK_ERR(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err), err,
              "missing tensor v.h.0.mlp.c_fc.bias", "trainer_state.safetensors");
    h = cJSON_Duplicate(s.h, 1);
    double dims[2] = {4, 5};
    set_shape(h, "m.wte.weight", 2, dims);
    st_join_json(p, h, &s);
    CHECK_ERR(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err), err,
              "m.wte.weight has shape [4, 5]", "trainer_state.safetensors");
    h = cJSON_Duplicate(s.h, 1);
    cJSON *extra = cJSON_Parse("{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]}");
    cJSON_AddItemToObject(h, "m.score.weight", extra);
    st_join_json(p, h, &s);
    CHECK_ERR(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err), err,
              "unexpected tensor m.score.weight", "trainer_state.safetensors");
    st_free(&s);
    CHECK(memcmp(&got, &st, sizeof got) == 0);   // failures after the good load left it alone
    Model inf;
    small_model(&inf, 0, 1);
    CHECK_ERR(ckpt_load_trainer_state(good, &inf, &got, err, sizeof err), err, "trainable",
              "small_state");
    model_free(&inf);
    path(p, dir, "trainer_state.json");
    unlink(p);
    CHECK_ERR(ckpt_load_trainer_state(dir, &m, &got, err, sizeof err), err, "no trainer state",
              "badstate");
    // the entry API
    CkptTrainerState e;
    ckpt_state_init(&e);
    char longname[100];
    memset(longname, 'a', 99);
    longname[99] = 0;
    CHECK_ERR(ckpt_state_set_int(&e, longname, 1, err, sizeof err), err, "too long", NULL);
    CHECK_ERR(ckpt_state_set_int(&e, "", 1, err, sizeof err), err, "empty", NULL);
    CHECK_ERR(ckpt_state_set_float(&e, "x", NAN, err, sizeof err), err, "not finite", NULL);
    CHECK_ERR(ckpt_state_set_float(&e, "quote\"d", 1, err, sizeof err), err, "quote", NULL);
    for (int i = 0; i < CKPT_MAX_ENTRIES; i++) {
        char nm[16];
        snprintf(nm, sizeof nm, "k%d", i);
        CHECK(ckpt_state_set_int(&e, nm, i, err, sizeof err) == 0);
    }
    CHECK_ERR(ckpt_state_set_int(&e, "one.more", 1, err, sizeof err), err, "more than", NULL);
    CHECK(ckpt_state_set_int(&e, "k3", 33, err, sizeof err) == 0);   // replacing needs no room
    int64_t v;
    CHECK(ckpt_state_get_int(&e, "k3", &v, err, sizeof err) == 0 && v == 33);
    CHECK_ERR(ckpt_state_get_int(&e, "nope", &v, err, sizeof err), err, "no int entry \"nope\"",
              NULL);
    double dv;
    CHECK_ERR(ckpt_state_get_float(&e, "k3", &dv, err, sizeof err), err, "no float entry", NULL);
    model_free(&m);
}

static int params_equal(const Model *a, const Model *b) {
    return a->num_params == b->num_params &&
           memcmp(a->params_memory, b->params_memory, a->num_params * sizeof(float)) == 0;
}

static void test_interrupted_saves(void) {
    char dir[1024], old[1024], tmp[1024], p[1024], err[512];
    Model a, b, r;
    small_model(&a, 1, 11);
    small_model(&b, 1, 12);
    CkptTrainerState sa, sb, got;
    fill_state(&a, &sa, 11);
    fill_state(&b, &sb, 12);
    CkptSaveOptions oa = {.state = &sa}, ob = {.state = &sb};
    path(dir, root, "crash");
    test_rm_rf(dir);
    sibling(old, dir, ".old");
    sibling(tmp, dir, ".tmp.999999.0");
    CHECK_MSG(ckpt_save(dir, &a, &oa, err, sizeof err) == 0, "%s", err);
    // crash after the swap: DIR complete, DIR.old half removed, a stale temporary directory
    mkdir(old, 0777);
    path(p, old, "model.safetensors");
    write_text(p, "junk");
    mkdir(tmp, 0777);
    path(p, tmp, "model.safetensors");
    write_text(p, "partial");
    CkptInfo info;
    ModelConfig c;
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && !info.from_old);
    small_model(&r, 1, 99);
    CHECK_MSG(ckpt_load_weights(dir, &r, 0, err, sizeof err) == 0, "%s", err);
    CHECK(params_equal(&r, &a));
    CHECK_MSG(ckpt_recover(dir, err, sizeof err) == 0, "%s", err);
    CHECK(!exists(old) && !exists(tmp) && exists(dir));
    // crash between the renames: DIR absent, DIR.old complete, DIR.tmp.* partial
    CHECK(rename(dir, old) == 0);
    mkdir(tmp, 0777);
    path(p, tmp, "config.json");
    write_text(p, "{");
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && info.from_old &&
          info.has_trainer_state);
    CHECK_MSG(ckpt_load_weights(dir, &r, 0, err, sizeof err) == 0, "%s", err);
    CHECK(params_equal(&r, &a));
    CHECK_MSG(ckpt_load_trainer_state(dir, &r, &got, err, sizeof err) == 0, "%s", err);
    CHECK(states_equal(&got, &sa));
    CHECK(!exists(dir));   // loading does not modify the file system
    // the next save recovers and replaces
    CHECK_MSG(ckpt_save(dir, &b, &ob, err, sizeof err) == 0, "%s", err);
    CHECK(!exists(old) && !exists(tmp));
    CHECK(ckpt_load_weights(dir, &r, 0, err, sizeof err) == 0 && params_equal(&r, &b));
    // ckpt_recover alone renames DIR.old back
    CHECK(rename(dir, old) == 0);
    CHECK_MSG(ckpt_recover(dir, err, sizeof err) == 0, "%s", err);
    CHECK(exists(dir) && !exists(old));

    // a process killed at random moments while saving: DIR (or DIR.old) is always complete and
    // is exactly one of the two models, with its own trainer state
    // the kill delay is uniform in [0, 1.2 x the time a child's save takes (largest of 3)]
    double t_save = 0;
    Rng rng;
    rng_init(&rng, 5);
    int kills = 0, mid_swap = 0, leftovers = 0;
    for (int it = -3; it < 60; it++) {   // it < 0: calibration, not killed
        int which = it % 2 ? 0 : 1;
        int fds[2];
        if (pipe(fds)) { CHECK_MSG(0, "pipe: %s", strerror(errno)); break; }
        pid_t pid = fork();
        if (pid == 0) {
            char e2[512];
            close(fds[0]);
            if (write(fds[1], "s", 1) != 1) _exit(4);   // tell the parent the save starts now
            _exit(ckpt_save(dir, which ? &b : &a, which ? &ob : &oa, e2, sizeof e2) ? 3 : 0);
        }
        close(fds[1]);
        char go;
        if (read(fds[0], &go, 1) != 1) CHECK_MSG(0, "child did not start");
        close(fds[0]);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (it >= 0) {
            struct timespec delay = {0, (long)(rng_double(&rng) * 1.2 * t_save * 1e9)};
            nanosleep(&delay, NULL);
            kill(pid, SIGKILL);
        }
        int status;
        waitpid(pid, &status, 0);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (it < 0)
            t_save = fmin(0.5, fmax(t_save, (double)(t1.tv_sec - t0.tv_sec) +
                                                1e-9 * (double)(t1.tv_nsec - t0.tv_nsec)));
        if (WIFSIGNALED(status)) kills += it >= 0;
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            CHECK_MSG(0, "child save failed with status %d", status);
        if (!exists(dir)) mid_swap++;
        if (exists(old)) leftovers++;
        if (ckpt_load_weights(dir, &r, 0, err, sizeof err)) {
            CHECK_MSG(0, "iteration %d: %s", it, err);
            break;
        }
        if (ckpt_load_trainer_state(dir, &r, &got, err, sizeof err)) {
            CHECK_MSG(0, "iteration %d: %s", it, err);
            break;
        }
        int is_a = params_equal(&r, &a), is_b = params_equal(&r, &b);
        CHECK_MSG(is_a || is_b, "iteration %d: the checkpoint is neither model", it);
        CHECK_MSG(states_equal(&got, is_a ? &sa : &sb),
                  "iteration %d: weights and trainer state from different saves", it);
        if (WIFEXITED(status))
            CHECK_MSG(which ? is_b : is_a, "iteration %d: a finished save is not visible", it);
    }
    fprintf(
        stderr,
        "    kill test: save takes %.2f ms; %d of 60 saves killed, %d left DIR absent (read DIR.old), %d left DIR.old\n",
        t_save * 1e3, kills, mid_swap, leftovers);
    CHECK_MSG(ckpt_recover(dir, err, sizeof err) == 0, "%s", err);
    CHECK(exists(dir) && !exists(old));
    model_free(&a);
    model_free(&b);
    model_free(&r);
}

static void test_save_failures(void) {
    char dir[1024], p[1024], err[512], tokdir[1024];
    Model a, b, r, inf;
    small_model(&a, 1, 21);
    if (load_model(fixture, &b, 0, 0)) { model_free(&a); return; }
    path(dir, root, "full");
    test_rm_rf(dir);
    CkptTrainerState st;
    fill_state(&a, &st, 21);
    CkptSaveOptions oa = {.state = &st};
    CHECK_MSG(ckpt_save(dir, &a, &oa, err, sizeof err) == 0, "%s", err);
    // a full disk: the file-size limit makes writes fail with EFBIG part way through
    struct rlimit keep, lim;
    getrlimit(RLIMIT_FSIZE, &keep);
    lim = keep;
    lim.rlim_cur = 20000;   // the fixture's model.safetensors is ~74 KB
    signal(SIGXFSZ, SIG_IGN);
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
    int rc = ckpt_save(dir, &b, NULL, err, sizeof err);
    setrlimit(RLIMIT_FSIZE, &keep);
    CHECK_ERR(rc, err, "write failed", "model.safetensors");
    small_model(&r, 1, 99);
    CkptTrainerState got;
    CHECK_MSG(ckpt_load_weights(dir, &r, 0, err, sizeof err) == 0, "%s", err);
    CHECK(params_equal(&r, &a));
    CHECK(ckpt_load_trainer_state(dir, &r, &got, err, sizeof err) == 0 && states_equal(&got, &st));
    sibling(p, dir, ".old");
    CHECK(!exists(p));
    char suffix[64];
    snprintf(suffix, sizeof suffix, ".tmp.%ld.0", (long)getpid());
    sibling(p, dir, suffix);
    CHECK_MSG(!exists(p), "temporary directory left behind");
    // unwritable places
    CHECK_ERR(ckpt_save("/nonexistent_rlhf_dir/sub/ckpt", &a, NULL, err, sizeof err), err,
              "cannot create", "/nonexistent_rlhf_dir/sub/ckpt");
    path(p, root, "plainfile");
    write_text(p, "x");
    char sub[1100];
    snprintf(sub, sizeof sub, "%s/ckpt", p);
    CHECK_ERR(ckpt_save(sub, &a, NULL, err, sizeof err), err, "cannot create", "plainfile");
    CHECK_ERR(ckpt_save(p, &a, NULL, err, sizeof err), err, "not a directory", "plainfile");
    // an existing directory that is not a checkpoint is never replaced
    char other[1024];
    fresh_dir(other, "notckpt");
    path(p, other, "precious.txt");
    write_text(p, "keep me");
    CHECK_ERR(ckpt_save(other, &a, NULL, err, sizeof err), err, "not a checkpoint", "notckpt");
    CHECK(exists(p));
    // a tokenizer directory without the files, a trainer state without moments, bad token ids
    fresh_dir(tokdir, "emptytok");
    CkptSaveOptions ot = {.tokenizer_dir = tokdir};
    CHECK_ERR(ckpt_save(dir, &b, &ot, err, sizeof err), err, "vocab.json", "emptytok");
    small_model(&inf, 0, 1);
    CHECK_ERR(ckpt_save(dir, &inf, &oa, err, sizeof err), err, "trainable", "full");
    CkptSaveOptions oi = {.has_token_ids = 1, .bos_token_id = 5, .eos_token_id = 0};
    CHECK_ERR(ckpt_save(dir, &a, &oi, err, sizeof err), err, "outside the vocabulary", "full");
    CkptTrainerState badst = st;
    badst.floats[0].value = NAN;
    CkptSaveOptions ob = {.state = &badst};
    CHECK_ERR(ckpt_save(dir, &a, &ob, err, sizeof err), err, "not finite", NULL);
    CHECK(ckpt_load_weights(dir, &r, 0, err, sizeof err) == 0 && params_equal(&r, &a));
    CHECK_ERR(ckpt_save("", &a, NULL, err, sizeof err), err, "empty", NULL);
    // a trailing slash names the same checkpoint
    char slash[1100];
    snprintf(slash, sizeof slash, "%s//", dir);
    CHECK_MSG(ckpt_save(slash, &a, &oa, err, sizeof err) == 0, "%s", err);
    CHECK(ckpt_load_weights(slash, &r, 0, err, sizeof err) == 0 && params_equal(&r, &a));
    model_free(&a);
    model_free(&b);
    model_free(&r);
    model_free(&inf);
}

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
    char good[5][1024], dir[1024], p[1024], err[512];
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
        char *s = cJSON_Print(c);
        cJSON_Delete(c);
        fresh_dir(dir, "llama_badcfg");
        copy_dir_file(good[k->fam], dir, "model.safetensors");
        path(p, dir, "config.json");
        write_text(p, s);
        free(s);
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
    char *s = cJSON_Print(c);
    cJSON_Delete(c);
    path(p, dir, "config.json");
    write_text(p, s);
    free(s);
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
    s = cJSON_Print(c);
    cJSON_Delete(c);
    write_text(p, s);
    free(s);
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
    if (test_scratch_dir(root, sizeof root, "rlhf_ckpt")) return 1;
    snprintf(fixture, sizeof fixture, "%s/fixtures/hf_tiny", test_data_dir());
    test_case(
        "checkpoint: HF fixture (bare names, F16/BF16, buffers, tied head) matches PyTorch's loss",
        test_hf_fixture_loss);
    test_case(
        "checkpoint: save + reload is bit-identical (weights, moments, trainer state, tokenizer)",
        test_roundtrip);
    test_case("checkpoint: PyTorch reads what we save (hf_interop.py check) and gets the same loss",
              test_python_reads_ours);
    test_case("checkpoint: score head: reward model from an LM, LM from a reward model, both heads",
              test_score_head);
    test_case("checkpoint: corrupt or truncated safetensors are one-line errors, model untouched",
              test_corrupt_safetensors);
    test_case("checkpoint: F16 / BF16 conversion (all 65536 halves)", test_half_precision);
    test_case("checkpoint: bad config.json keys and mismatched models are errors", test_bad_config);
    test_case("checkpoint: bad trainer state and the trainer-state entry API",
              test_bad_trainer_state);
    test_case("checkpoint: interrupted saves (leftovers, processes killed mid-save) stay loadable",
              test_interrupted_saves);
    test_case("checkpoint: disk full and unwritable paths keep the old checkpoint",
              test_save_failures);
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
