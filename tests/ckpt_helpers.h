// Helpers the checkpoint tests share (test_checkpoint.c: GPT-2 and the file rules,
// test_checkpoint_llama.c: the Llama family): paths in the scratch directory `root` (each test
// program sets it), small files, the loss of a file of ids, models filled with a sentinel, a
// safetensors file taken apart into its header (cJSON) and data so a case can change and rewrite
// it, and a trainer state filled with awkward values.
#ifndef CKPT_HELPERS_H
#define CKPT_HELPERS_H
#include "checkpoint.h"
#include "model.h"
#include "rng.h"
#include "testlib.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char root[512];      // scratch directory for this run

// out[1024] = a/b, or a + suffix (the names here are short: a longer one is a broken setup)
static inline void path(char *out, const char *a, const char *b) {
    if (snprintf(out, 1024, "%s/%s", a, b) >= 1024) { fprintf(stderr, "path too long\n"); exit(1); }
}

static inline int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }

static inline void write_text(const char *p, const char *s) { test_write_file(p, s, strlen(s)); }

// Writes the JSON tree j into dir/config.json and deletes j.
static inline void write_config(const char *dir, cJSON *j) {
    char p[1024], *s = cJSON_Print(j);
    cJSON_Delete(j);
    path(p, dir, "config.json");
    write_text(p, s);
    free(s);
}

static inline void copy_dir_file(const char *src_dir, const char *dst_dir, const char *name) {
    char a[1024], b[1024];
    path(a, src_dir, name);
    path(b, dst_dir, name);
    size_t n;
    char *d = test_read_file(a, &n);
    if (!d) { fprintf(stderr, "cannot read %s\n", a); exit(1); }
    test_write_file(b, d, n);
    free(d);
}

static inline void fresh_dir(char *out, const char *name) {
    path(out, root, name);
    test_rm_rf(out);
    mkdir(out, 0777);
}

static inline double read_number_file(const char *p) {
    char *s = test_read_file(p, NULL);
    if (!s) { fprintf(stderr, "cannot read %s\n", p); exit(1); }
    double v = atof(s);
    free(s);
    return v;
}

// The whitespace-separated ids of file p (at most max).
static inline int read_tokens(const char *p, int32_t *tok, int max) {
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
static inline float file_loss(Model *m, const char *p) {
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

static inline void check_rel(double got, double want, double rel, const char *what) {
    CHECK_MSG(fabs(got - want) <= rel * fabs(want), "%s: %.9g vs %.9g (rel tol %g)", what, got,
              want, rel);
}

static inline int load_model(const char *dir, Model *m, int trainable, int flags) {
    char err[512];
    if (ckpt_load_model(dir, m, 1, 16, trainable, flags, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "load %s: %s", dir, err);
        return -1;
    }
    return 0;
}

static inline void fill_sentinel(Model *m) {
    for (size_t i = 0; i < m->num_params; i++) m->params_memory[i] = 7.0f;
}

static inline int is_sentinel(const Model *m) {
    for (size_t i = 0; i < m->num_params; i++) if (m->params_memory[i] != 7.0f) return 0;
    return 1;
}

// safetensors pieces: parse a file into (header JSON, data) so a case can mutate and rewrite it
typedef struct { cJSON *h; char *raw; const char *data; size_t data_len; } StParts;

static inline int st_split(const char *p, StParts *s) {
    size_t n;
    memset(s, 0, sizeof(*s));
    s->raw = test_read_file(p, &n);
    if (!s->raw) return -1;
    uint64_t hl;
    memcpy(&hl, s->raw, 8);
    s->h = cJSON_ParseWithLength(s->raw + 8, (size_t)hl);
    s->data = s->raw + 8 + hl;
    s->data_len = n - 8 - (size_t)hl;
    return s->h ? 0 : -1;
}

static inline void st_join(const char *p, const char *header, const char *data,
                           size_t data_len, size_t extra) {
    size_t hl = strlen(header);
    FILE *f = fopen(p, "wb");
    uint64_t h64 = hl;
    fwrite(&h64, 8, 1, f);
    fwrite(header, 1, hl, f);
    fwrite(data, 1, data_len, f);
    for (size_t i = 0; i < extra; i++) fputc(0, f);
    fclose(f);
}

static inline void st_free(StParts *s) { cJSON_Delete(s->h); free(s->raw); }

// Rewrites p with header h (deleted after) in front of s's data.
static inline void st_join_json(const char *p, cJSON *h, const StParts *s) {
    char *txt = cJSON_PrintUnformatted(h);
    st_join(p, txt, s->data, s->data_len, 0);
    free(txt);
    cJSON_Delete(h);
}

static inline void set_offsets(cJSON *h, const char *name, double b, double e) {
    cJSON *t = cJSON_GetObjectItemCaseSensitive(h, name);
    cJSON *o = cJSON_CreateArray();
    cJSON_AddItemToArray(o, cJSON_CreateNumber(b));
    cJSON_AddItemToArray(o, cJSON_CreateNumber(e));
    cJSON_ReplaceItemInObjectCaseSensitive(t, "data_offsets", o);
}

static inline double offset_of(cJSON *h, const char *name, int which) {
    cJSON *o =
        cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(h, name), "data_offsets");
    return cJSON_GetArrayItem(o, which)->valuedouble;
}

static inline void fill_state(Model *m, CkptTrainerState *st, uint64_t seed) {
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

static inline int states_equal(const CkptTrainerState *a, const CkptTrainerState *b) {
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
#endif
