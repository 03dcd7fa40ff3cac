// Checkpoint tests: a Hugging Face-layout GPT-2 written by tests/ref/hf_interop.py (bare names,
// F16/BF16 tensors, mask buffers, tied lm_head) loads and reproduces PyTorch's loss; a save and
// reload is bit-identical (weights, AdamW moments, trainer state); PyTorch reads what we save and
// gets the same loss; reward-model head flags; every corrupt-file and bad-config path is a
// one-line error that leaves the model untouched; interrupted saves (leftovers, a process killed
// at random moments, a full disk) always leave a loadable checkpoint.
#define _GNU_SOURCE   // nftw
#include "checkpoint.h"
#include "fileio.h"
#include "ckpt_helpers.h"
#include "model.h"
#include "rng.h"
#include "testlib.h"
#include <cjson/cJSON.h>
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

static char fixture[512];   // tests/fixtures/hf_tiny

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

static void sibling(char *out, const char *a, const char *suffix) {
    if (snprintf(out, 1024, "%s%s", a, suffix) >= 1024) {
        fprintf(stderr, "path too long\n");
        exit(1);
    }
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
        fresh_dir(dir, "badcfg");
        copy_dir_file(good, dir, "model.safetensors");
        write_config(dir, c);
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
    write_config(dir, c);
    path(p, dir, "config.json");
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
    CHECK_ERR(ckpt_save(dir, &b, &ot, err, sizeof err), err, "no tokenizer.json", "emptytok");
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

// A tokenizer.json directory (a Hugging Face model's) travels with the checkpoint: every
// tokenizer file it has is copied verbatim, files it lacks are not made up, and the checkpoint
// has a tokenizer.
static void test_tokenizer_json_dir(void) {
    Model a;
    if (load_model(fixture, &a, 1, 0)) return;
    char dir[1024], tokdir[1024], err[512], p[1024], q[1024];
    static const char *files[] = {"tokenizer.json", "tokenizer_config.json",
                                  "special_tokens_map.json", "generation_config.json"};
    fresh_dir(tokdir, "hftok");
    for (int i = 0; i < 4; i++) {
        path(p, tokdir, files[i]);
        write_text(p, i == 3 ? "{\"eos_token_id\": [7, 9]}\n" : "{\"a\": \"\u00e9\"}\n");
    }
    path(dir, root, "hfck");
    test_rm_rf(dir);
    CkptSaveOptions opt = {.tokenizer_dir = tokdir};
    CHECK_MSG(ckpt_save(dir, &a, &opt, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < 4; i++) {
        path(p, tokdir, files[i]);
        path(q, dir, files[i]);
        size_t n1, n2;
        char *x = test_read_file(p, &n1), *y = test_read_file(q, &n2);
        CHECK_MSG(x && y && n1 == n2 && !memcmp(x, y, n1), "%s not copied verbatim", files[i]);
        free(x); free(y);
    }
    CHECK(!fio_exists(dir, "vocab.json") && !fio_exists(dir, "merges.txt"));
    ModelConfig c;
    CkptInfo info;
    CHECK_MSG(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0, "%s", err);
    CHECK(info.has_tokenizer);
    // only tokenizer.json: still a tokenizer; the optional files are left out
    path(p, tokdir, "tokenizer_config.json");
    remove(p);
    path(dir, root, "hfck2");
    test_rm_rf(dir);
    CHECK_MSG(ckpt_save(dir, &a, &opt, err, sizeof err) == 0, "%s", err);
    CHECK(fio_exists(dir, "tokenizer.json") && !fio_exists(dir, "tokenizer_config.json"));
    CHECK(ckpt_load_config(dir, &c, &info, err, sizeof err) == 0 && info.has_tokenizer);
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
    test_case("checkpoint: a tokenizer.json directory's files are copied", test_tokenizer_json_dir);
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
    test_rm_rf(root);
    return test_summary();
}
