// reward inspect: what a reward model thinks of a workspace. The score distribution (with a
// histogram drawn in the terminal), pairwise accuracy against the stored rankings (overall, by
// K, by split, by source, by labeler), agreement between labelers where their rankings overlap,
// the top and bottom completions, the pairs the model gets most confidently wrong, and
// calibration (the model's P(preferred) = sigmoid(r_a - r_b) in buckets against how often the
// labelers agreed). Scores already stored for the model are reused; the missing ones are computed
// and stored (reward_scores), so a second inspect is fast. --json prints one JSON object instead.
#include "cli.h"
#include "cmd.h"
#include "reward.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int64_t id; double score; } IdScore;
static int by_id(const void *a, const void *b) {
    int64_t x = ((const IdScore *)a)->id, y = ((const IdScore *)b)->id;
    return (x > y) - (x < y);
}

typedef struct { IdScore *v; int64_t n, cap; } ScoreMap;
static int collect_score(const StoreRewardScore *r, void *ctx) {
    ScoreMap *m = ctx;
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 256;
        m->v = REALLOC_ARRAY(m->v, (size_t)m->cap, sizeof(IdScore));
    }
    m->v[m->n++] = (IdScore){r->completion_id, r->score};
    return 0;
}
static const IdScore *score_find(const ScoreMap *m, int64_t id) {
    IdScore key = {id, 0};
    return m->n ? bsearch(&key, m->v, (size_t)m->n, sizeof(IdScore), by_id) : NULL;
}

// Accuracy per group (a K, a split, a source, a labeler, a pair of labelers).
typedef struct { char name[128]; int64_t pairs; double correct, margin; } Group;
typedef struct { Group *g; int n, cap; } Groups;
static Group *group(Groups *gs, const char *name) {
    for (int i = 0; i < gs->n; i++) if (!strcmp(gs->g[i].name, name)) return &gs->g[i];
    if (gs->n == gs->cap) {
        gs->cap = gs->cap ? 2 * gs->cap : 8;
        gs->g = REALLOC_ARRAY(gs->g, (size_t)gs->cap, sizeof(Group));
    }
    Group *g = &gs->g[gs->n++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

// A ranking with its scores, kept for the agreement between labelers.
typedef struct {
    int64_t id, prompt_id, labeler_id;
    char *labeler;
    int k;
    int64_t cid[REWARD_MAX_K];
    int rank[REWARD_MAX_K];
} Ranked;

typedef struct { int64_t ranking_id, prompt_id, win, lose; double rw, rl; char *labeler; } Mistake;

#define CAL_BUCKETS REWARD_CAL_BUCKETS   // model confidence 0.5-0.6, ..., 0.9-1.0

typedef struct {
    const ScoreMap *sm;
    Group all;
    Groups by_k, by_split, by_source, by_labeler;
    Ranked *r; int64_t nr, capr;
    Mistake *mis; int64_t nmis, capmis;
    int64_t cal_n[CAL_BUCKETS];
    double cal_p[CAL_BUCKETS], cal_obs[CAL_BUCKETS];
    int64_t unscored;          // rankings with a completion that has no score (split filter)
} Acc;

static void add_pair(Group *g, double c, double m) { g->pairs++; g->correct += c; g->margin += m; }

static int visit_ranking(const StoreRanking *r, void *ctx) {
    Acc *a = ctx;
    if (r->k > REWARD_MAX_K) return 0;
    double s[REWARD_MAX_K];
    for (int i = 0; i < r->k; i++) {
        const IdScore *f = score_find(a->sm, r->items[i].completion_id);
        if (!f) { a->unscored++; return 0; }
        s[i] = f->score;
    }
    if (a->nr == a->capr) {
        a->capr = a->capr ? 2 * a->capr : 256;
        a->r = REALLOC_ARRAY(a->r, (size_t)a->capr, sizeof(Ranked));
    }
    Ranked *rk = &a->r[a->nr++];
    rk->id = r->id; rk->prompt_id = r->prompt_id; rk->labeler_id = r->labeler_id; rk->k = r->k;
    rk->labeler = STRDUP_CHECK(r->labeler);
    char kname[32];
    snprintf(kname, sizeof kname, "%d", r->k);
    Group *gk = group(&a->by_k, kname), *gs = group(&a->by_split, r->split),
          *gsrc = group(&a->by_source, r->source), *gl = group(&a->by_labeler, r->labeler);
    for (int i = 0; i < r->k; i++) {
        rk->cid[i] = r->items[i].completion_id;
        rk->rank[i] = r->items[i].rank;
    }
    for (int w = 0; w < r->k; w++)
        for (int l = 0; l < r->k; l++) {
            if (r->items[w].rank >= r->items[l].rank) continue;
            double d = s[w] - s[l], c = d > 0 ? 1.0 : d == 0 ? 0.5 : 0.0;
            add_pair(&a->all, c, d);
            add_pair(gk, c, d);
            add_pair(gs, c, d);
            add_pair(gsrc, c, d);
            add_pair(gl, c, d);
            // calibration: the model's confidence in its own preference, against the labeler
            double p;
            int b = reward_calibration_bucket(d, &p);
            a->cal_n[b]++; a->cal_p[b] += p; a->cal_obs[b] += c;
            if (d < 0) {
                if (a->nmis == a->capmis) {
                    a->capmis = a->capmis ? 2 * a->capmis : 256;
                    a->mis = REALLOC_ARRAY(a->mis, (size_t)a->capmis, sizeof(Mistake));
                }
                a->mis[a->nmis++] = (Mistake){
                    r->id, r->prompt_id, r->items[w].completion_id, r->items[l].completion_id, s[w],
                    s[l],  rk->labeler};
            }
        }
    return 0;
}

static int by_margin(const void *a, const void *b) {   // most negative r_w - r_l first
    const Mistake *x = a, *y = b;
    double dx = x->rw - x->rl, dy = y->rw - y->rl;
    return dx < dy   ? -1
           : dx > dy ? 1
                     : (x->ranking_id > y->ranking_id) - (x->ranking_id < y->ranking_id);
}
static int by_prompt(const void *a, const void *b) {
    const Ranked *x = a, *y = b;
    return x->prompt_id != y->prompt_id
               ? (x->prompt_id > y->prompt_id) - (x->prompt_id < y->prompt_id)
               : (x->id > y->id) - (x->id < y->id);
}
static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

// Agreement of two labelers on one prompt: pairs of completions both ranked, untied by both.
static void agree(const Ranked *x, const Ranked *y, Groups *pairs, Group *all) {
    const Ranked *a = strcmp(x->labeler, y->labeler) <= 0 ? x : y, *b = a == x ? y : x;
    char name[128];
    snprintf(name, sizeof name, "%.60s / %.60s", a->labeler, b->labeler);
    Group *g = group(pairs, name);
    RewardConcordance c = {0};
    reward_concordance(a->cid, a->rank, a->k, b->cid, b->rank, b->k, &c);
    int64_t untied = c.concordant + c.discordant;
    g->pairs += untied; g->correct += (double)c.concordant;
    all->pairs += untied; all->correct += (double)c.concordant;
}

static double quantile(const double *sorted, int64_t n, double q) {
    if (n == 0) return NAN;
    double pos = q * (double)(n - 1);
    int64_t i = (int64_t)floor(pos);
    double f = pos - (double)i;
    return i + 1 < n ? sorted[i] * (1 - f) + sorted[i + 1] * f : sorted[i];
}

static cJSON *group_json(const Group *g) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "pairs", (double)g->pairs);
    if (g->pairs) cJSON_AddNumberToObject(o, "accuracy", g->correct / g->pairs);
    else cJSON_AddNullToObject(o, "accuracy");
    if (g->pairs) cJSON_AddNumberToObject(o, "mean_margin", g->margin / g->pairs);
    else cJSON_AddNullToObject(o, "mean_margin");
    return o;
}
static cJSON *groups_json(const Groups *gs) {
    cJSON *o = cJSON_CreateObject();
    for (int i = 0; i < gs->n; i++) cJSON_AddItemToObject(o, gs->g[i].name, group_json(&gs->g[i]));
    return o;
}
static void print_groups(const char *title, const Groups *gs) {
    if (gs->n == 0) return;
    printf("  by %s:\n", title);
    for (int i = 0; i < gs->n; i++)
        printf("    %-28.28s %8lld pairs  accuracy %.4f  mean margin %+.3f\n", gs->g[i].name,
               (long long)gs->g[i].pairs, gs->g[i].pairs ? gs->g[i].correct / gs->g[i].pairs : NAN,
               gs->g[i].pairs ? gs->g[i].margin / gs->g[i].pairs : NAN);
}
static int cmp_group_name(const void *a, const void *b) {
    const Group *x = a, *y = b;
    // numbers (K) in numeric order, names alphabetically
    long nx = strtol(x->name, NULL, 10), ny = strtol(y->name, NULL, 10);
    if (nx && ny && nx != ny) return (nx > ny) - (nx < ny);
    return strcmp(x->name, y->name);
}
static void sort_groups(Groups *gs) {
    if (gs->n) qsort(gs->g, (size_t)gs->n, sizeof(Group), cmp_group_name);
}

// A line of text for the terminal: one line, at most w characters (UTF-8 aware, roughly).
static void print_short(const char *label, const char *s, int w) {
    char *c = rm_text_clean(s, 1);
    int chars = 0;
    size_t i = 0;
    for (; c[i] && chars < w; i++) if (((unsigned char)c[i] & 0xC0) != 0x80) chars++;
    while (c[i] && ((unsigned char)c[i] & 0xC0) == 0x80) i++;
    printf("%s%.*s%s\n", label, (int)i, c, c[i] ? "..." : "");
    free(c);
}

typedef struct { double s; int64_t i; } ScoreIdx;
static int by_score_desc(const void *a, const void *b) {
    const ScoreIdx *x = a, *y = b;
    return x->s != y->s ? (x->s < y->s) - (x->s > y->s) : (x->i > y->i) - (x->i < y->i);
}

// Index of completion id in the list (sorted by id), or -1.
static int64_t comp_index(const CompList *l, int64_t id) {
    int64_t lo = 0, hi = l->n - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        if (l->cid[mid] == id) return mid;
        if (l->cid[mid] < id) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
}

static cJSON *comp_json(const CompList *l, int64_t i, double score) {
    cJSON *o = cJSON_CreateObject();
    char *p = rm_text_clean(l->prompt[i], 0), *t = rm_text_clean(l->text[i], 0);
    cJSON_AddNumberToObject(o, "completion_id", (double)l->cid[i]);
    cJSON_AddNumberToObject(o, "prompt_id", (double)l->pid[i]);
    cJSON_AddNumberToObject(o, "score", score);
    cJSON_AddStringToObject(o, "prompt", p);
    cJSON_AddStringToObject(o, "completion", t);
    free(p); free(t);
    return o;
}

static const char *inspect_usage =
    "usage: reward inspect CKPT --workspace DB [options]\n"
    "What the reward model in CKPT thinks of the workspace: score distribution and histogram,\n"
    "accuracy against the stored rankings (overall, by K, split, source and labeler), agreement\n"
    "between labelers where rankings overlap, top and bottom completions, the most confident\n"
    "mistakes, and calibration. Missing scores are computed and stored (as `reward score`).\n"
    "  --json                one JSON object on stdout instead of the report\n"
    "  --top N               completions and mistakes listed (default 5)\n"
    "  --bins N              histogram bins (default 20)\n"
    "  --split S             only prompts of split S (train, valid, test)\n"
    "  --name NAME           the model's name in the database (default: CKPT's absolute path)\n"
    "  --batch N             sequences per forward pass (default 16)\n"
    "  --tokenizer DIR / --prompt-template T / --response-prefix P   as for `reward score`\n"
    "  --threads N           OpenMP threads\n";

// What `reward inspect` was asked for.
typedef struct {
    const char *ckpt, *ws, *split, *name, *tokdir, *tmpl, *prefix;
    int json;
    int64_t top, bins, B, threads;
} InspectArgs;

static const double INSPECT_QS[] = {0.05, 0.25, 0.5, 0.75, 0.95};
static const char *INSPECT_QN[] = {"p05", "p25", "p50", "p75", "p95"};

// Everything the report shows, computed before it is printed.
typedef struct {
    char mname[4096];          // the name the model's scores are stored under
    CompList all;              // the completions (of the split), by id
    ScoreMap sm;               // the model's stored scores, by completion id
    double *vals;              // (all.n) each completion's score
    double *sorted;            // (all.n) the scores in increasing order
    ScoreIdx *order;           // (all.n) the completions by decreasing score
    int64_t *hist;             // (bins) completions per histogram bin
    int64_t bins;
    double mean, sd, lo, hi, width;   // the distribution; width: a histogram bin's
    Acc acc;                   // accuracy against the rankings, mistakes, calibration
    Groups agree_pairs;        // agreement per pair of labelers
    Group agree_all;
    int64_t ntop, nmis;        // completions and mistakes listed
} Inspection;

static void inspection_free(Inspection *I) {
    for (int64_t i = 0; i < I->acc.nr; i++) free(I->acc.r[i].labeler);
    free(I->acc.r);
    free(I->acc.mis);
    free(I->acc.by_k.g);
    free(I->acc.by_split.g);
    free(I->acc.by_source.g);
    free(I->acc.by_labeler.g);
    free(I->agree_pairs.g);
    free(I->sm.v);
    free(I->vals);
    free(I->sorted);
    free(I->order);
    free(I->hist);
    rm_comp_list_free(&I->all);
}

// Scores the completions that have no score from this model yet and stores them.
static int inspect_score_missing(const InspectArgs *a, RmScorer *sc, Store *st, const char *mname,
                                 char *err, size_t errlen) {
    CompList todo = {0};
    double *fresh = NULL;
    int rc = -1;
    if (rm_list_completions(st, a->split, mname, &todo, err, errlen)) goto out;
    if (todo.n) {
        fresh = MALLOC_CHECK((size_t)todo.n * sizeof(double));
        if (!a->json)
            fprintf(
                stderr,
                "reward inspect: scoring %lld completions that have no score from this model yet\n",
                (long long)todo.n);
        if (rm_score_texts(sc, todo.n, (const char *const *)todo.prompt,
                           (const char *const *)todo.text, todo.rendered, fresh, NULL, err,
                           errlen))
            goto out;
        if (rm_store_scores(st, mname, &todo, fresh, err, errlen)) goto out;
    }
    rc = 0;
out:
    free(fresh);
    rm_comp_list_free(&todo);
    return rc;
}

// The scores of every completion, their distribution and histogram.
static int inspect_distribution(Inspection *I, Store *st, const char *split, char *err,
                                size_t errlen) {
    if (store_each_reward_score(st, I->mname, collect_score, &I->sm, err, errlen)) return -1;
    if (I->sm.n) qsort(I->sm.v, (size_t)I->sm.n, sizeof(IdScore), by_id);
    if (rm_list_completions(st, split, NULL, &I->all, err, errlen)) return -1;
    int64_t n = I->all.n, bins = I->bins;
    size_t n1 = (size_t)(n ? n : 1);
    I->vals = MALLOC_CHECK(n1 * sizeof(double));
    I->sorted = MALLOC_CHECK(n1 * sizeof(double));
    I->order = MALLOC_CHECK(n1 * sizeof(ScoreIdx));
    I->hist = CALLOC_CHECK((size_t)bins, sizeof(int64_t));
    for (int64_t i = 0; i < n; i++) {
        const IdScore *f = score_find(&I->sm, I->all.cid[i]);
        I->vals[i] = I->sorted[i] = f ? f->score : 0.0;
        I->order[i] = (ScoreIdx){I->vals[i], i};
    }
    if (n) qsort(I->sorted, (size_t)n, sizeof(double), cmp_double);
    if (n) qsort(I->order, (size_t)n, sizeof(ScoreIdx), by_score_desc);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) sum += I->vals[i];
    I->mean = n ? sum / n : NAN;
    for (int64_t i = 0; i < n; i++) sq += (I->vals[i] - I->mean) * (I->vals[i] - I->mean);
    I->sd = n ? sqrt(sq / n) : NAN;
    I->lo = n ? I->sorted[0] : NAN;
    I->hi = n ? I->sorted[n - 1] : NAN;
    I->width = n && I->hi > I->lo ? (I->hi - I->lo) / (double)bins : 1.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t b = I->hi > I->lo ? (int64_t)((I->vals[i] - I->lo) / I->width) : 0;
        I->hist[b >= bins ? bins - 1 : b < 0 ? 0 : b]++;
    }
    return 0;
}

// Accuracy against the rankings, then agreement: rankings of one prompt by different labelers.
static int inspect_accuracy(Inspection *I, Store *st, const char *split, char *err, size_t errlen) {
    Acc *acc = &I->acc;
    acc->sm = &I->sm;
    snprintf(acc->all.name, sizeof acc->all.name, "all");
    if (store_each_ranking(st, split, visit_ranking, acc, err, errlen)) return -1;
    sort_groups(&acc->by_k);
    sort_groups(&acc->by_split);
    sort_groups(&acc->by_source);
    sort_groups(&acc->by_labeler);
    if (acc->nmis) qsort(acc->mis, (size_t)acc->nmis, sizeof(Mistake), by_margin);
    if (acc->nr) qsort(acc->r, (size_t)acc->nr, sizeof(Ranked), by_prompt);
    for (int64_t i = 0; i < acc->nr;) {
        int64_t j = i;
        while (j < acc->nr && acc->r[j].prompt_id == acc->r[i].prompt_id) j++;
        for (int64_t x = i; x < j; x++)
            for (int64_t y = x + 1; y < j; y++)
                if (acc->r[x].labeler_id != acc->r[y].labeler_id)
                    agree(&acc->r[x], &acc->r[y], &I->agree_pairs, &I->agree_all);
        i = j;
    }
    sort_groups(&I->agree_pairs);
    return 0;
}

static double bin_hi(const Inspection *I, int64_t b) {
    return b == I->bins - 1 ? I->hi : I->lo + (b + 1) * I->width;
}

static double p_chosen(const Mistake *m) { return 1.0 / (1.0 + exp(-(m->rw - m->rl))); }

static cJSON *json_scores(const Inspection *I) {
    cJSON *S = cJSON_CreateObject(), *Q = cJSON_CreateObject(), *H = cJSON_CreateArray();
    cJSON_AddNumberToObject(S, "count", (double)I->all.n);
    if (I->all.n) {
        cJSON_AddNumberToObject(S, "mean", I->mean);
        cJSON_AddNumberToObject(S, "std", I->sd);
        cJSON_AddNumberToObject(S, "min", I->lo);
        cJSON_AddNumberToObject(S, "max", I->hi);
        for (int q = 0; q < 5; q++)
            cJSON_AddNumberToObject(Q, INSPECT_QN[q], quantile(I->sorted, I->all.n, INSPECT_QS[q]));
        for (int64_t b = 0; b < I->bins; b++) {
            cJSON *h = cJSON_CreateObject();
            cJSON_AddNumberToObject(h, "lo", I->lo + b * I->width);
            cJSON_AddNumberToObject(h, "hi", bin_hi(I, b));
            cJSON_AddNumberToObject(h, "count", (double)I->hist[b]);
            cJSON_AddItemToArray(H, h);
        }
    }
    cJSON_AddItemToObject(S, "quantiles", Q);
    cJSON_AddItemToObject(S, "histogram", H);
    return S;
}

static cJSON *json_accuracy(const Acc *acc) {
    cJSON *A = cJSON_CreateObject();
    cJSON_AddNumberToObject(A, "rankings", (double)acc->nr);
    cJSON_AddItemToObject(A, "overall", group_json(&acc->all));
    cJSON_AddItemToObject(A, "by_k", groups_json(&acc->by_k));
    cJSON_AddItemToObject(A, "by_split", groups_json(&acc->by_split));
    cJSON_AddItemToObject(A, "by_source", groups_json(&acc->by_source));
    cJSON_AddItemToObject(A, "by_labeler", groups_json(&acc->by_labeler));
    return A;
}

static cJSON *json_agreement(const Inspection *I) {
    cJSON *G = cJSON_CreateObject(), *GP = cJSON_CreateArray();
    const Group *all = &I->agree_all;
    cJSON_AddNumberToObject(G, "pairs", (double)all->pairs);
    if (all->pairs) cJSON_AddNumberToObject(G, "agreement", all->correct / all->pairs);
    else cJSON_AddNullToObject(G, "agreement");
    for (int i = 0; i < I->agree_pairs.n; i++) {
        const Group *g = &I->agree_pairs.g[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "labelers", g->name);
        cJSON_AddNumberToObject(o, "pairs", (double)g->pairs);
        cJSON_AddNumberToObject(o, "agreement", g->correct / g->pairs);
        cJSON_AddItemToArray(GP, o);
    }
    cJSON_AddItemToObject(G, "by_pair", GP);
    return G;
}

static cJSON *json_mistakes(const Inspection *I) {
    cJSON *M = cJSON_CreateArray();
    for (int64_t i = 0; i < I->nmis; i++) {
        const Mistake *m = &I->acc.mis[i];
        int64_t wi = comp_index(&I->all, m->win), li = comp_index(&I->all, m->lose);
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "ranking_id", (double)m->ranking_id);
        cJSON_AddNumberToObject(o, "prompt_id", (double)m->prompt_id);
        cJSON_AddStringToObject(o, "labeler", m->labeler);
        cJSON_AddNumberToObject(o, "p_chosen", p_chosen(m));
        if (wi >= 0 && li >= 0) {
            char *p = rm_text_clean(I->all.prompt[wi], 0);
            cJSON_AddStringToObject(o, "prompt", p);
            free(p);
            cJSON_AddItemToObject(o, "chosen", comp_json(&I->all, wi, m->rw));
            cJSON_AddItemToObject(o, "rejected", comp_json(&I->all, li, m->rl));
        }
        cJSON_AddItemToArray(M, o);
    }
    return M;
}

static cJSON *json_calibration(const Acc *acc) {
    cJSON *C = cJSON_CreateArray();
    for (int b = 0; b < CAL_BUCKETS; b++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "lo", 0.5 + 0.5 * b / CAL_BUCKETS);
        cJSON_AddNumberToObject(o, "hi", 0.5 + 0.5 * (b + 1) / CAL_BUCKETS);
        cJSON_AddNumberToObject(o, "pairs", (double)acc->cal_n[b]);
        if (acc->cal_n[b]) {
            cJSON_AddNumberToObject(o, "predicted", acc->cal_p[b] / acc->cal_n[b]);
            cJSON_AddNumberToObject(o, "observed", acc->cal_obs[b] / acc->cal_n[b]);
        } else {
            cJSON_AddNullToObject(o, "predicted");
            cJSON_AddNullToObject(o, "observed");
        }
        cJSON_AddItemToArray(C, o);
    }
    return C;
}

static void inspect_print_json(const Inspection *I, const InspectArgs *a) {
    cJSON *J = cJSON_CreateObject();
    cJSON_AddStringToObject(J, "model", I->mname);
    cJSON_AddStringToObject(J, "workspace", a->ws);
    if (a->split) cJSON_AddStringToObject(J, "split", a->split);
    else cJSON_AddNullToObject(J, "split");
    cJSON_AddItemToObject(J, "scores", json_scores(I));
    cJSON_AddItemToObject(J, "accuracy", json_accuracy(&I->acc));
    cJSON_AddItemToObject(J, "agreement", json_agreement(I));
    cJSON *T = cJSON_CreateArray(), *Bo = cJSON_CreateArray();
    for (int64_t i = 0; i < I->ntop; i++) {
        const ScoreIdx *t = &I->order[i], *b = &I->order[I->all.n - 1 - i];
        cJSON_AddItemToArray(T, comp_json(&I->all, t->i, t->s));
        cJSON_AddItemToArray(Bo, comp_json(&I->all, b->i, b->s));
    }
    cJSON_AddItemToObject(J, "top", T);
    cJSON_AddItemToObject(J, "bottom", Bo);
    cJSON_AddItemToObject(J, "confident_mistakes", json_mistakes(I));
    cJSON_AddItemToObject(J, "calibration", json_calibration(&I->acc));
    char *text = cJSON_Print(J);
    if (!text) DIE("out of memory");
    puts(text);
    free(text);
    cJSON_Delete(J);
}

static void text_scores(const Inspection *I) {
    printf("scores of %lld completions\n", (long long)I->all.n);
    if (!I->all.n) return;
    printf("  mean %+.4f  std %.4f  min %+.4f  max %+.4f\n  quantiles", I->mean, I->sd, I->lo,
           I->hi);
    for (int q = 0; q < 5; q++)
        printf("  %s %+.4f", INSPECT_QN[q], quantile(I->sorted, I->all.n, INSPECT_QS[q]));
    printf("\n");
    int64_t most = 1;
    for (int64_t b = 0; b < I->bins; b++)
        if (I->hist[b] > most) most = I->hist[b];
    for (int64_t b = 0; b < I->bins; b++) {
        int w = (int)((I->hist[b] * 50 + most - 1) / most);
        printf("  [%+8.3f, %+8.3f%c %-50.*s %lld\n", I->lo + b * I->width, bin_hi(I, b),
               b == I->bins - 1 ? ']' : ')', w,
               "##################################################", (long long)I->hist[b]);
    }
}

static void text_accuracy(const Inspection *I) {
    const Acc *acc = &I->acc;
    printf("\naccuracy against %lld rankings (%lld pairs; ties dropped)%s\n", (long long)acc->nr,
           (long long)acc->all.pairs,
           acc->unscored ? " -- some rankings skipped: completions without a score" : "");
    if (acc->all.pairs) {
        printf("  overall %.4f  mean margin (chosen - rejected) %+.4f\n",
               acc->all.correct / acc->all.pairs, acc->all.margin / acc->all.pairs);
        print_groups("K", &acc->by_k);
        print_groups("split", &acc->by_split);
        print_groups("source", &acc->by_source);
        print_groups("labeler", &acc->by_labeler);
    }
    printf("\nlabeler agreement where rankings overlap\n");
    const Group *all = &I->agree_all;
    if (all->pairs) {
        printf("  overall %.4f over %lld pairs\n", all->correct / all->pairs,
               (long long)all->pairs);
        for (int i = 0; i < I->agree_pairs.n; i++) {
            const Group *g = &I->agree_pairs.g[i];
            printf("    %-44.44s %8lld pairs  agreement %.4f\n", g->name, (long long)g->pairs,
                   g->correct / g->pairs);
        }
    } else printf("  none: no two labelers ranked the same completions of a prompt\n");
    printf(
        "\ncalibration: the model's P(its preferred completion is better) against the labelers\n");
    for (int b = 0; b < CAL_BUCKETS; b++)
        if (acc->cal_n[b])
            printf("  %.1f-%.1f  %8lld pairs  predicted %.3f  observed %.3f\n",
                   0.5 + 0.5 * b / CAL_BUCKETS, 0.5 + 0.5 * (b + 1) / CAL_BUCKETS,
                   (long long)acc->cal_n[b], acc->cal_p[b] / acc->cal_n[b],
                   acc->cal_obs[b] / acc->cal_n[b]);
}

static void text_examples(const Inspection *I) {
    const CompList *all = &I->all;
    for (int part = 0; part < 2 && I->ntop; part++) {
        printf("\n%s %lld completions\n", part ? "bottom" : "top", (long long)I->ntop);
        for (int64_t i = 0; i < I->ntop; i++) {
            const ScoreIdx *o = &I->order[part ? all->n - 1 - i : i];
            char label[96];
            snprintf(label, sizeof label, "  %+9.4f  completion %lld  prompt: ", o->s,
                     (long long)all->cid[o->i]);
            print_short(label, all->prompt[o->i], 60);
            print_short("                     completion: ", all->text[o->i], 60);
        }
    }
    printf("\nmost confident mistakes (%lld of %lld pairs ranked the other way by the model)\n",
           (long long)I->nmis, (long long)I->acc.nmis);
    for (int64_t i = 0; i < I->nmis; i++) {
        const Mistake *m = &I->acc.mis[i];
        int64_t wi = comp_index(all, m->win), li = comp_index(all, m->lose);
        char label[160];
        snprintf(label, sizeof label, "  P(chosen) %.3f  ranking %lld by %.40s  prompt: ",
                 p_chosen(m), (long long)m->ranking_id, m->labeler);
        if (wi < 0 || li < 0) continue;
        print_short(label, all->prompt[wi], 50);
        snprintf(label, sizeof label, "      chosen   %+9.4f: ", m->rw);
        print_short(label, all->text[wi], 70);
        snprintf(label, sizeof label, "      rejected %+9.4f: ", m->rl);
        print_short(label, all->text[li], 70);
    }
}

static void inspect_print_text(const Inspection *I, const InspectArgs *a) {
    printf("reward model  %s\nworkspace     %s%s%s\n\n", I->mname, a->ws,
           a->split ? ", split " : "", a->split ? a->split : "");
    text_scores(I);
    text_accuracy(I);
    text_examples(I);
}

// The report: missing scores computed and stored, then everything computed, then printed.
static int inspect_run(const InspectArgs *a, char *err, size_t errlen) {
    Inspection I;
    memset(&I, 0, sizeof I);
    I.bins = a->bins;
    rm_model_name(a->ckpt, a->name, I.mname, sizeof I.mname);
    RmScorer sc;
    memset(&sc, 0, sizeof sc);
    Store *st = NULL;
    int rc = -1;
    if (rm_scorer_open(&sc, a->ckpt, a->tokdir, a->tmpl, a->prefix, (int)a->B, err, errlen))
        goto out;
    sc.verbose = !a->json;
    if (store_open(&st, a->ws, err, errlen) ||
        inspect_score_missing(a, &sc, st, I.mname, err, errlen) ||
        inspect_distribution(&I, st, a->split, err, errlen) ||
        inspect_accuracy(&I, st, a->split, err, errlen))
        goto out;
    I.ntop = a->top < I.all.n ? a->top : I.all.n;
    I.nmis = a->top < I.acc.nmis ? a->top : I.acc.nmis;
    if (a->json) inspect_print_json(&I, a);
    else inspect_print_text(&I, a);
    rc = 0;
out:
    inspection_free(&I);
    store_close(st);
    rm_scorer_close(&sc);
    return rc;
}

int cmd_inspect(int argc, char **argv) {
    InspectArgs a = {.top = 5, .bins = 20, .B = 16};
    char err[1024];
    int status;
    CliOption opts[] = {
        CLI_FLAG("--json", &a.json),
        CLI_STRING("--workspace", &a.ws, .required = 1),
        CLI_STRING("--split", &a.split),
        CLI_STRING("--name", &a.name),
        CLI_STRING("--tokenizer", &a.tokdir),
        CLI_STRING("--prompt-template", &a.tmpl),
        CLI_STRING("--response-prefix", &a.prefix),
        CLI_INT("--top", &a.top, 0, 100000),
        CLI_INT("--bins", &a.bins, 1, 1000),
        CLI_INT("--batch", &a.B, 1, 4096),
        CLI_INT("--threads", &a.threads, 0, 4096),
        {0}};
    CliCommand cmd = {.prog = "reward inspect", .usage = inspect_usage, .opts = opts,
                      .arg_name = "CKPT", .arg = &a.ckpt, .args_min = 1, .value_status = 1};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (a.split && !store_split_valid(a.split)) {
        fprintf(stderr, "reward inspect: --split '%s': expected train, valid or test\n", a.split);
        return 1;
    }
    if (a.threads > 0) omp_set_num_threads((int)a.threads);
    if (inspect_run(&a, err, sizeof err)) {
        fprintf(stderr, "reward inspect: %s\n", err);
        return 1;
    }
    return 0;
}
