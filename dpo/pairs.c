// Preference data from the workspace's rankings, and the stored reference log-probabilities
// (pairs.h).
#include "pairs.h"
#include "hash.h"
#include "reward.h"
#include "util.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void dpo_set_free(DpoSet *s) {
    free(s->seq); free(s->it); free(s->g); free(s->ref);
    tok_ids_free(&s->toks);
    memset(s, 0, sizeof *s);
}

int64_t dpo_group_pairs(const DpoSet *s, const DpoGroup *g) {
    int64_t p = 0;
    for (int i = 0; i < g->k; i++)
        for (int j = 0; j < g->k; j++) p += s->it[g->first + i].rank < s->it[g->first + j].rank;
    return p;
}

// Appends one completion's sequence: the tokens as reward_encode renders them, the start of the
// response from the prompt's own encoding; longer than max_len: the last max_len tokens.
// rendered: the prompt was rendered with a chat template when imported (StorePrompt.rendered).
static int push_seq(DpoSet *s, const DpoLoadOptions *o, const char *prompt, int rendered,
                    const char *text, char *err, size_t errlen) {
    TokIds p = {0};
    int64_t off = (int64_t)s->toks.n;
    if (rendered ? dataset_encode_rendered_prompt(o->ds, prompt, &p, err, errlen) ||
                       reward_encode_rendered(o->ds, o->tok, prompt, text, INT_MAX, &s->toks,
                                              NULL, err, errlen)
                 : dataset_encode_prompt(o->ds, prompt, &p, err, errlen) ||
                       reward_encode(o->ds, o->tok, o->response_prefix, prompt, text, INT_MAX,
                                     &s->toks, NULL, err, errlen)) {
        tok_ids_free(&p);
        return -1;
    }
    int64_t len = (int64_t)s->toks.n - off, start = (int64_t)p.n;
    tok_ids_free(&p);
    if (len > o->max_len) {   // keep the end: the response (and its end token) matter most
        int64_t cut = len - o->max_len;
        memmove(s->toks.ids + off, s->toks.ids + off + cut, (size_t)o->max_len * sizeof(int32_t));
        s->toks.n = (size_t)(off + o->max_len);
        len = o->max_len;
        start = start - cut < 1 ? 1 : start - cut;
        s->truncated++;
    }
    if (s->nseq == s->capseq) {
        s->capseq = s->capseq ? 2 * s->capseq : 256;
        s->seq = REALLOC_ARRAY(s->seq, (size_t)s->capseq, sizeof(DpoSeq));
    }
    s->seq[s->nseq++] = (DpoSeq){off, (int32_t)len, (int32_t)start};
    if (len > s->max_len) s->max_len = (int)len;
    return 0;
}

// Appends a group of k items (sequences seq[i], ranks[i]) and adds it to the fingerprint.
static void push_group(DpoSet *s, int k, const int64_t *seq, const int *ranks) {
    if (s->ng == s->capg) {
        s->capg = s->capg ? 2 * s->capg : 256;
        s->g = REALLOC_ARRAY(s->g, (size_t)s->capg, sizeof(DpoGroup));
    }
    s->g[s->ng++] = (DpoGroup){s->ni, k};
    s->hash = data_hash_u64(s->hash, (uint64_t)k);
    for (int i = 0; i < k; i++) {
        if (s->ni == s->capi) {
            s->capi = s->capi ? 2 * s->capi : 512;
            s->it = REALLOC_ARRAY(s->it, (size_t)s->capi, sizeof(DpoItem));
        }
        s->it[s->ni++] = (DpoItem){seq[i], ranks[i]};
        const DpoSeq *q = &s->seq[seq[i]];
        s->hash = data_hash_u64(data_hash_u64(s->hash, (uint64_t)ranks[i]), (uint64_t)q->start);
        s->hash = data_hash_bytes(s->hash, s->toks.ids + q->off, (size_t)q->len * sizeof(int32_t));
    }
    if (k > s->max_k) s->max_k = k;
}

typedef struct { DpoSet *s; const DpoLoadOptions *o; char *err; size_t errlen; } LoadCtx;

static int load_ranking(const StoreRanking *r, void *ctx) {
    LoadCtx *c = ctx;
    DpoSet *s = c->s;
    if (r->id > c->o->max_ranking_id) return 0;   // added after this run began
    if (r->k > DPO_MAX_K)
        return util_err(c->err, c->errlen, "%s: ranking %lld has %d completions, more than %d",
                        c->o->db_path, (long long)r->id, r->k, DPO_MAX_K);
    int ranks[DPO_MAX_K];
    for (int i = 0; i < r->k; i++) ranks[i] = r->items[i].rank;
    int64_t pairs = reward_num_pairs(ranks, r->k);
    if (pairs == 0) { s->n_tied++; return 0; }
    int64_t seq[DPO_MAX_K];
    for (int i = 0; i < r->k; i++) {
        char e[512];
        seq[i] = s->nseq;
        if (push_seq(s, c->o, r->prompt, r->prompt_rendered, r->items[i].text, e, sizeof e))
            return util_err(c->err, c->errlen, "%s: ranking %lld (prompt %lld): %s", c->o->db_path,
                            (long long)r->id, (long long)r->prompt_id, e);
    }
    s->rankings++;
    if (r->k > s->max_ranking_k) s->max_ranking_k = r->k;
    s->pairs += pairs;
    if (c->o->listwise) {
        push_group(s, r->k, seq, ranks);
        return 0;
    }
    for (int i = 0; i < r->k; i++)   // items are best first: i before j means rank_i <= rank_j
        for (int j = i + 1; j < r->k; j++) {
            if (ranks[i] == ranks[j]) continue;
            int64_t pq[2] = {seq[i], seq[j]};
            push_group(s, 2, pq, (const int[]){1, 2});
        }
    return 0;
}

int dpo_set_load(DpoSet *s, const DpoLoadOptions *o, const char *split, char *err,
                 size_t errlen) {
    memset(s, 0, sizeof *s);
    s->hash = DATA_HASH_INIT;
    LoadCtx c = {s, o, err, errlen};
    return store_each_ranking(o->db, split, load_ranking, &c, err, errlen) ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Reference log-probabilities

#define REF_MAGIC "RLHFDPO1"

typedef struct {
    char magic[8];
    uint64_t train_hash, valid_hash;
    int64_t train_seqs, valid_seqs;
} RefHeader;

static RefHeader ref_header(const DpoSet *train, const DpoSet *valid) {
    RefHeader h;
    memcpy(h.magic, REF_MAGIC, 8);
    h.train_hash = train->hash;
    h.valid_hash = valid->hash;
    h.train_seqs = train->nseq;
    h.valid_seqs = valid->nseq;
    return h;
}

int dpo_ref_write(const char *path, const DpoSet *train, const DpoSet *valid, char *err,
                  size_t errlen) {
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return util_err(err, errlen, "%s: %s", tmp, strerror(errno));
    RefHeader h = ref_header(train, valid);
    int ok = fwrite(&h, sizeof h, 1, f) == 1 &&
             fwrite(train->ref, sizeof(double), (size_t)train->nseq, f) == (size_t)train->nseq &&
             fwrite(valid->ref, sizeof(double), (size_t)valid->nseq, f) == (size_t)valid->nseq &&
             fflush(f) == 0 && fsync(fileno(f)) == 0;
    int e = errno;
    if (fclose(f) != 0 && ok) { ok = 0; e = errno; }
    if (!ok || rename(tmp, path) != 0) {
        if (ok) e = errno;
        unlink(tmp);
        return util_err(err, errlen, "%s: cannot write the reference log-probabilities: %s", path,
                        strerror(e));
    }
    return 0;
}

int dpo_ref_read(const char *path, DpoSet *train, DpoSet *valid, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT) return 1;
        return util_err(err, errlen, "%s: %s", path, strerror(errno));
    }
    RefHeader want = ref_header(train, valid), h;
    int ok = fread(&h, sizeof h, 1, f) == 1 && !memcmp(&h, &want, sizeof h);
    if (ok) {
        train->ref = CALLOC_CHECK((size_t)train->nseq + 1, sizeof(double));
        valid->ref = CALLOC_CHECK((size_t)valid->nseq + 1, sizeof(double));
        ok = fread(train->ref, sizeof(double), (size_t)train->nseq, f) == (size_t)train->nseq &&
             fread(valid->ref, sizeof(double), (size_t)valid->nseq, f) == (size_t)valid->nseq &&
             fgetc(f) == EOF;
    }
    fclose(f);
    if (!ok)
        return util_err(err, errlen, "%s does not hold the reference log-probabilities of this "
                        "run's data (another data set, or a damaged file): delete it to compute "
                        "them again", path);
    return 0;
}

uint64_t dpo_ref_fingerprint(const DpoSet *train, const DpoSet *valid) {
    uint64_t h = data_hash_bytes(DATA_HASH_INIT, train->ref, (size_t)train->nseq * sizeof(double));
    return data_hash_bytes(h, valid->ref, (size_t)valid->nseq * sizeof(double));
}
