// label: see label.h.
#include "label.h"
#include "hash.h"
#include "reward.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// The completions of a prompt the labeler ranks: the first REWARD_MAX_K, as `reward label` shows.
typedef struct {
    int n;
    int64_t id[REWARD_MAX_K];
    char *text[REWARD_MAX_K];
    uint64_t key[REWARD_MAX_K];   // the shuffle's sort key
} LabelComps;

static int label_collect(const StoreCompletion *c, void *ctx) {
    LabelComps *lc = ctx;
    if (lc->n == REWARD_MAX_K) return 1;
    lc->id[lc->n] = c->id;
    lc->text[lc->n++] = STRDUP_CHECK(c->text);
    return 0;
}

static void label_comps_free(LabelComps *lc) {
    for (int i = 0; i < lc->n; i++) free(lc->text[i]);
    lc->n = 0;
}

static int label_gather(Store *db, int64_t pid, LabelComps *lc, char *err, size_t errlen) {
    memset(lc, 0, sizeof *lc);
    return store_each_completion(db, pid, NULL, label_collect, lc, err, errlen) < 0 ? -1 : 0;
}

// Orders the completions by a hash of (labeler, prompt, completion): shuffled, so position says
// nothing of the source, and the same on every reload for that labeler.
static void label_shuffle(LabelComps *lc, int64_t labeler_id, int64_t pid) {
    uint64_t h = data_hash_u64(data_hash_u64(DATA_HASH_INIT, (uint64_t)labeler_id), (uint64_t)pid);
    for (int i = 0; i < lc->n; i++) lc->key[i] = data_hash_u64(h, (uint64_t)lc->id[i]);
    for (int i = 1; i < lc->n; i++)   // insertion sort: K is small
        for (int j = i; j > 0 && lc->key[j] < lc->key[j - 1]; j--) {
            uint64_t k = lc->key[j]; lc->key[j] = lc->key[j - 1]; lc->key[j - 1] = k;
            int64_t id = lc->id[j]; lc->id[j] = lc->id[j - 1]; lc->id[j - 1] = id;
            char *t = lc->text[j]; lc->text[j] = lc->text[j - 1]; lc->text[j - 1] = t;
        }
}

static int label_reply(cJSON *o, int status, char **json) {
    *json = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!*json) DIE("out of memory");
    return status;
}

static int label_error(int status, const char *msg, char **json) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "error", msg);
    return label_reply(o, status, json);
}

// The labeler's count (always now), and the totals (at most LABEL_TOTALS_S old with o->totals).
static int label_progress(Store *db, const LabelOptions *o, int64_t labeler_id,
                          StoreLabelProgress *p, char *err, size_t errlen) {
    LabelTotals *t = o->totals;
    if (!t) return store_label_progress(db, labeler_id, o->co.overlap, p, err, errlen);
    if (store_count_rankings(db, labeler_id, &p->mine, err, errlen)) return -1;
    pthread_mutex_lock(&t->mu);
    double now = util_time_s();
    int rc = 0;
    StoreLabelProgress all;
    if (t->at == 0 || now - t->at >= LABEL_TOTALS_S) {
        rc = store_label_progress(db, labeler_id, o->co.overlap, &all, err, errlen);
        if (rc == 0) { t->done = all.done; t->queued = all.queued; t->at = now; }
    }
    p->done = t->done;
    p->queued = t->queued;
    pthread_mutex_unlock(&t->mu);
    return rc;
}

static void label_add_progress(Store *db, const LabelOptions *o, int64_t labeler_id, cJSON *out) {
    StoreLabelProgress p;
    char err[512];
    if (label_progress(db, o, labeler_id, &p, err, sizeof err)) return;
    cJSON *j = cJSON_AddObjectToObject(out, "progress");
    cJSON_AddNumberToObject(j, "mine", (double)p.mine);
    cJSON_AddNumberToObject(j, "done", (double)p.done);
    cJSON_AddNumberToObject(j, "queued", (double)p.queued);
    cJSON_AddNumberToObject(j, "overlap", o->co.overlap < 1 ? 1 : o->co.overlap);
}

int label_claim(Store *db, const LabelOptions *o, int64_t labeler_id, int64_t want,
                int64_t *pid, char **json) {
    StoreClaimOptions co = o->co;
    co.min_completions = 2;
    char err[1024];
    int mine = 0;
    *pid = 0;
    *json = NULL;
    if (want > 0 && store_has_claim(db, labeler_id, want, &mine, err, sizeof err))
        return label_error(500, err, json);
    if (mine) *pid = want;
    else if (store_claim_prompt(db, labeler_id, &co, pid, err, sizeof err))
        return label_error(500, err, json);
    return 200;
}

int label_show(Store *db, const LabelOptions *o, int64_t labeler_id, int64_t pid, char **json) {
    char err[1024];
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "prompt_id", (double)pid);
    if (pid) {
        StorePrompt p = {0};
        LabelComps lc;
        if (store_get_prompt(db, pid, &p, err, sizeof err) ||
            label_gather(db, pid, &lc, err, sizeof err)) {
            store_prompt_free(&p);
            cJSON_Delete(out);
            return label_error(500, err, json);
        }
        label_shuffle(&lc, labeler_id, pid);
        cJSON_AddStringToObject(out, "prompt", p.text);
        cJSON *arr = cJSON_AddArrayToObject(out, "completions");
        for (int i = 0; i < lc.n; i++) {
            cJSON *c = cJSON_CreateObject();
            cJSON_AddNumberToObject(c, "id", (double)lc.id[i]);
            cJSON_AddStringToObject(c, "text", lc.text[i]);
            cJSON_AddItemToArray(arr, c);
        }
        label_comps_free(&lc);
        store_prompt_free(&p);
    }
    label_add_progress(db, o, labeler_id, out);
    return label_reply(out, 200, json);
}

// An integer member of a JSON object (a whole number in 1..max): 0, or -1 with a message.
static int label_int(const cJSON *o, const char *key, int64_t max, int64_t *v, char *err,
                     size_t errlen) {
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(j) || j->valuedouble < 1 || j->valuedouble > (double)max ||
        j->valuedouble != (double)(int64_t)j->valuedouble)
        return util_err(err, errlen, "\"%s\" must be a whole number in 1..%lld", key,
                        (long long)max);
    *v = (int64_t)j->valuedouble;
    return 0;
}

// The ranking in a request: every completion of lc exactly once, ranks in 1..k; flags of ranked
// completions, "unsafe" or "broken".
static int label_parse_items(const cJSON *req, const LabelComps *lc, StoreRankItem *items,
                             StoreRankFlag *flags, int *nflags, char *err, size_t errlen) {
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(req, "items");
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) != lc->n)
        return util_err(err, errlen, "\"items\" must rank all %d completions shown", lc->n);
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        int64_t id, rank;
        if (label_int(it, "id", INT64_MAX / 2, &id, err, errlen) ||
            label_int(it, "rank", lc->n, &rank, err, errlen))
            return -1;
        int shown = 0;
        for (int j = 0; j < lc->n; j++) shown |= lc->id[j] == id;
        if (!shown) return util_err(err, errlen, "completion %lld was not shown", (long long)id);
        items[i].completion_id = id;
        items[i++].rank = (int)rank;
    }
    *nflags = 0;
    const cJSON *fl = cJSON_GetObjectItemCaseSensitive(req, "flags");
    if (fl && !cJSON_IsArray(fl)) return util_err(err, errlen, "\"flags\" must be an array");
    cJSON_ArrayForEach(it, fl) {
        int64_t id;
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(it, "flag");
        if (label_int(it, "id", INT64_MAX / 2, &id, err, errlen)) return -1;
        if (!cJSON_IsString(f) ||
            (strcmp(f->valuestring, "unsafe") && strcmp(f->valuestring, "broken")))
            return util_err(err, errlen, "a flag is \"unsafe\" or \"broken\"");
        if (*nflags == 2 * REWARD_MAX_K) return util_err(err, errlen, "too many flags");
        flags[*nflags].completion_id = id;
        flags[(*nflags)++].flag = f->valuestring;
    }
    return 0;
}

// Parses a request body that must be a JSON object with a "prompt_id"; NULL and a 400 reply
// otherwise.
static cJSON *label_request(const char *body, int64_t *pid, int *status, char **json) {
    char err[256];
    cJSON *req = cJSON_Parse(body ? body : "");
    if (!cJSON_IsObject(req)) {
        cJSON_Delete(req);
        *status = label_error(400, "the request body must be a JSON object", json);
        return NULL;
    }
    if (pid && label_int(req, "prompt_id", INT64_MAX / 2, pid, err, sizeof err)) {
        cJSON_Delete(req);
        *status = label_error(400, err, json);
        return NULL;
    }
    return req;
}

int label_rank(Store *db, const LabelOptions *o, int64_t labeler_id, const char *body,
               char **json) {
    int64_t pid;
    int status, active, nflags = 0;
    cJSON *req = label_request(body, &pid, &status, json);
    if (!req) return status;
    char err[1024];
    LabelComps lc = {0};
    StoreRankItem items[REWARD_MAX_K];
    StoreRankFlag flags[2 * REWARD_MAX_K];
    const cJSON *note = cJSON_GetObjectItemCaseSensitive(req, "note");
    if (store_has_claim(db, labeler_id, pid, &active, err, sizeof err)) status = 500;
    else if (!active) {
        status = 403;
        snprintf(err, sizeof err, "prompt %lld is not claimed by you (taken, skipped or expired)",
                 (long long)pid);
    } else if (label_gather(db, pid, &lc, err, sizeof err)) status = 500;
    else if (label_parse_items(req, &lc, items, flags, &nflags, err, sizeof err)) status = 400;
    else if (note && !cJSON_IsString(note)) {
        status = 400;
        snprintf(err, sizeof err, "\"note\" must be a string");
    } else {
        int64_t rid;
        int rc = store_add_claimed_ranking(db, pid, labeler_id, items, lc.n,
                                           note ? note->valuestring : NULL, flags, nflags, &rid,
                                           err, sizeof err);
        status = rc == -2 ? 403 : rc ? 400 : 200;
        if (rc == 0) {
            cJSON *out = cJSON_CreateObject();
            cJSON_AddNumberToObject(out, "ranking_id", (double)rid);
            label_comps_free(&lc);
            cJSON_Delete(req);
            return label_reply(out, 200, json);
        }
    }
    label_comps_free(&lc);
    cJSON_Delete(req);
    return label_error(status, err, json);
}

int label_skip(Store *db, const LabelOptions *o, int64_t labeler_id, const char *body,
               char **json) {
    int64_t pid;
    int status, active;
    cJSON *req = label_request(body, &pid, &status, json);
    if (!req) return status;
    cJSON_Delete(req);
    char err[1024];
    if (store_begin(db, err, sizeof err)) return label_error(500, err, json);
    if (store_has_claim(db, labeler_id, pid, &active, err, sizeof err) ||
        (active && store_release_prompt(db, labeler_id, pid, 1, err, sizeof err)) ||
        store_commit(db, err, sizeof err)) {
        store_rollback(db, NULL, 0);
        return label_error(500, err, json);
    }
    if (!active) {
        snprintf(err, sizeof err, "prompt %lld is not claimed by you", (long long)pid);
        return label_error(403, err, json);
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "skipped", (double)pid);
    return label_reply(out, 200, json);
}

int label_undo(Store *db, const LabelOptions *o, int64_t labeler_id, double since, char **json) {
    char err[1024];
    int64_t rid, pid;
    if (store_undo_ranking(db, labeler_id, 0, since, o->co.lease_s, &rid, &pid, err, sizeof err))
        return label_error(500, err, json);
    if (!rid) return label_error(409, "nothing to undo: no ranking of yours since you logged in",
                                 json);
    cJSON *out = cJSON_CreateObject();
    cJSON_AddNumberToObject(out, "undone", (double)rid);
    cJSON_AddNumberToObject(out, "prompt_id", (double)pid);
    return label_reply(out, 200, json);
}
