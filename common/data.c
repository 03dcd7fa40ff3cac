// data: batch buffers, loss normalisation over micro-batches, cursors, hashing (see data.h).
#include "data.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void data_batch_init(DataBatch *b, int max_B, int max_T) {
    if (max_B < 1 || max_T < 1) DIE("data_batch_init: bad capacity %d x %d", max_B, max_T);
    memset(b, 0, sizeof *b);
    size_t n = (size_t)max_B * (size_t)max_T;
    b->max_B = max_B;
    b->max_T = max_T;
    b->tokens = MALLOC_CHECK(n * sizeof(int32_t));
    b->targets = MALLOC_CHECK(n * sizeof(int32_t));
    b->weights = MALLOC_CHECK(n * sizeof(float));
    b->lengths = MALLOC_CHECK((size_t)max_B * sizeof(int32_t));
    b->source = MALLOC_CHECK((size_t)max_B * sizeof(int64_t));
}

void data_batch_free(DataBatch *b) {
    free(b->tokens);
    free(b->targets);
    free(b->weights);
    free(b->lengths);
    free(b->source);
    memset(b, 0, sizeof *b);
}

ModelBatch data_batch_model(const DataBatch *b) {
    ModelBatch m = {.B = b->B, .T = b->T, .tokens = b->tokens, .lengths = b->lengths,
                    .targets = b->targets, .weights = b->weights};
    return m;
}

void data_batch_set_weight(DataBatch *b, float w) {
    size_t n = (size_t)b->B * (size_t)b->T;
    for (size_t i = 0; i < n; i++) b->weights[i] = b->targets[i] >= 0 ? w : 0.0f;
}

int64_t data_batch_normalise(DataBatch *batches, int n) {
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += batches[i].n_targets;
    float w = total > 0 ? (float)(1.0 / (double)total) : 0.0f;
    for (int i = 0; i < n; i++) data_batch_set_weight(&batches[i], w);
    return total;
}

// ---------------------------------------------------------------------------------------------
// cursors

#define CURSOR_PREFIX_MAX 40

int data_cursor_save(const DataCursor *c, CkptTrainerState *st, const char *prefix,
                     char *err, size_t errlen) {
    if (strlen(prefix) > CURSOR_PREFIX_MAX)
        return util_err(err, errlen, "cursor name '%s' is longer than %d characters", prefix,
                        CURSOR_PREFIX_MAX);
    const char *names[4] = {"epoch", "index", "seed", "fingerprint"};
    int64_t vals[4] = {c->epoch, c->index, (int64_t)c->seed, (int64_t)c->fingerprint};
    for (int i = 0; i < 4; i++) {
        char name[CKPT_NAME_MAX];
        snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
        if (ckpt_state_set_int(st, name, vals[i], err, errlen)) return -1;
    }
    return 0;
}

int data_cursor_load(DataCursor *c, const CkptTrainerState *st, const char *prefix,
                     char *err, size_t errlen) {
    if (strlen(prefix) > CURSOR_PREFIX_MAX)
        return util_err(err, errlen, "cursor name '%s' is longer than %d characters", prefix,
                        CURSOR_PREFIX_MAX);
    const char *names[4] = {"epoch", "index", "seed", "fingerprint"};
    int64_t vals[4];
    for (int i = 0; i < 4; i++) {
        char name[CKPT_NAME_MAX];
        snprintf(name, sizeof name, "%s.%s", prefix, names[i]);
        if (ckpt_state_get_int(st, name, &vals[i], err, errlen)) return -1;
    }
    if (vals[0] < 0 || vals[1] < 0)
        return util_err(err, errlen, "cursor %s: negative epoch or index (%lld, %lld)", prefix,
                        (long long)vals[0], (long long)vals[1]);
    c->epoch = vals[0];
    c->index = vals[1];
    c->seed = (uint64_t)vals[2];
    c->fingerprint = (uint64_t)vals[3];
    return 0;
}
