// Guards: after each iteration, the run is stopped (guards.action stop) or rolled back to the last
// good checkpoint (rollback) when a figure users watch for trouble leaves its band:
//   guards.kl_max / guards.kl_min     the mean KL per episode (sum over a response of
//                                     log pi - log pi_ref): drifting away, or turning negative
//   guards.len_min / guards.len_max   the mean response length (tokens): collapse or explosion
// A guard fires when its figure is outside the band for guards.patience iterations in a row. It is
// reported on stderr with the figure and the threshold and recorded as the run's metric
// guard/<name> (the figure) at that iteration. The reward-hacking guard is at the end of the file.
#include "cli.h"
#include "extprog.h"
#include "ppo_train.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name, *key, *what;
    double value, limit;
    int above;   // fires above the limit (else below)
} Guard;

int ppo_guards_check(Ppo *s, const PpoStats *st, char *why, size_t whylen, char *err,
                     size_t errlen) {
    Config *c = s->cfg;
    Guard g[] = {
        {"kl_max", "guards.kl_max", "mean KL per episode", st->kl,
         config_get_double(c, "guards.kl_max"), 1},
        {"kl_min", "guards.kl_min", "mean KL per episode", st->kl,
         config_get_double(c, "guards.kl_min"), 0},
        {"len_max", "guards.len_max", "mean response length", st->resp_len,
         config_get_double(c, "guards.len_max"), 1},
        {"len_min", "guards.len_min", "mean response length", st->resp_len,
         config_get_double(c, "guards.len_min"), 0},
    };
    // off: kl_max, len_max and len_min at 0; kl_min at its default (-1e9)
    int on[4] = {g[0].limit > 0, g[1].limit > -1e9, g[2].limit > 0, g[3].limit > 0};
    int out = 0;
    for (int i = 0; i < 4 && !out; i++) {
        if (!on[i]) continue;
        int bad = g[i].above ? !(g[i].value <= g[i].limit) : !(g[i].value >= g[i].limit);
        if (!bad) continue;
        out = 1;
        int main_rank = dist_main(&s->dist);
        if (++s->guard_streak < config_get_int(c, "guards.patience")) {
            long long pat = (long long)config_get_int(c, "guards.patience");
            if (main_rank)
                fprintf(stderr, "ppo: guard: iteration %lld: %s %.4g %s %s %.4g (%lld of %lld "
                        "iterations in a row)\n",
                        (long long)s->iteration, g[i].what, g[i].value,
                        g[i].above ? "above" : "below", g[i].key, g[i].limit,
                        (long long)s->guard_streak, pat);
            return 0;
        }
        char name[64];
        snprintf(name, sizeof name, "guard/%s", g[i].name);
        if (main_rank &&
            store_add_metric(s->tr.db, s->tr.run_id, s->iteration, name, g[i].value, err, errlen))
            return -1;
        snprintf(why, whylen, "guard %s fired at iteration %lld: %s %.4g %s %s %.4g", g[i].key,
                 (long long)s->iteration, g[i].what, g[i].value,
                 g[i].above ? "above" : "below", g[i].key, g[i].limit);
        if (main_rank) fprintf(stderr, "ppo: %s\n", why);
        return 1;
    }
    if (!out) s->guard_streak = 0;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Reward hacking: every guards.hack_every iterations the policy answers the held-out prompts of
// guards.hack_prompts greedily, and the judge guards.hack_judge (reward label's judge protocol, as
// `rlhf eval-policy --judge`) compares each answer with the starting policy's answer to the same
// prompt (made once, before the first update, kept in OUT.DIR/hack_reference.jsonl for resumes).
// The starting point: the mean score of the first iteration's rollouts (sampled by the starting
// policy) and a win rate of 1/2 (the starting policy's answers against themselves: ties). The
// guard fires at a check where the mean score is above the starting one while the judge's win
// rate (ties 1/2) is below 1/2 - guards.hack_margin: the reward model is pleased, the judge is
// not. Rank 0 generates and asks; the ranks agree.

// The held-out prompts, rendered and tokenized; those longer than the rollouts' prompts dropped.
static int hack_load(Ppo *s, char *err, size_t errlen) {
    PpoHack *h = &s->hack;
    const char *path = config_get_string(s->cfg, "guards.hack_prompts");
    char *data;
    size_t len;
    if (cli_read_lines_file(path, &data, &len, err, errlen))
        return util_err_prefix(err, errlen, "guards.hack_prompts: ");
    int line = 0, rc = 0;
    for (size_t i = 0; i < len && rc == 0;) {
        size_t j = i;
        while (j < len && data[j] != '\n') j++;
        line++;
        cJSON *o = cJSON_ParseWithLength(data + i, j - i);
        const cJSON *p = o ? cJSON_GetObjectItemCaseSensitive(o, "prompt") : NULL;
        if (j > i && !cJSON_IsString(p))
            rc = util_err(err, errlen, "guards.hack_prompts: %s:%d: expected a JSON object with "
                          "a \"prompt\" string", path, line);
        TokIds ids = {0};
        char e[512];
        if (rc == 0 && p) {
            if (dataset_encode_prompt(s->ds, p->valuestring, &ids, e, sizeof e))
                rc = util_err(err, errlen, "guards.hack_prompts: %s:%d: %s", path, line, e);
            else if (ids.n > 0 && ids.n <= (size_t)s->Tp) {
                h->prompts = REALLOC_ARRAY(h->prompts, (size_t)h->n + 1, sizeof(PpoPrompt));
                PpoPrompt *pp = &h->prompts[h->n++];
                pp->ids = MALLOC_CHECK(ids.n * sizeof(int32_t));
                memcpy(pp->ids, ids.ids, ids.n * sizeof(int32_t));
                pp->len = (int32_t)ids.n;
                pp->prompt_id = h->n;
                pp->text = STRDUP_CHECK(p->valuestring);
            }
        }
        tok_ids_free(&ids);
        cJSON_Delete(o);
        i = j + 1;
    }
    free(data);
    if (rc == 0 && h->n == 0)
        rc = util_err(err, errlen, "guards.hack_prompts: %s: no prompt of at most %d tokens", path,
                      s->Tp);
    return rc;
}

// The policy's greedy answers to the held-out prompts (malloc'd texts, ended flags).
static int hack_answers(Ppo *s, char **text, int *ended, char *err, size_t errlen) {
    PpoHack *h = &s->hack;
    GenConfig g = s->gen;
    g.sampler.temperature = 0.0f;
    for (int c0 = 0; c0 < h->n; c0 += s->gen_B) {
        int n = h->n - c0 < s->gen_B ? h->n - c0 : s->gen_B, Tp = 0;
        for (int i = 0; i < n; i++)
            if (h->prompts[c0 + i].len > Tp) Tp = h->prompts[c0 + i].len;
        for (int i = 0; i < n; i++) {
            const PpoPrompt *p = &h->prompts[c0 + i];
            int32_t *row = s->g_prompts + (size_t)i * Tp;
            memcpy(row, p->ids, (size_t)p->len * sizeof(int32_t));
            for (int t = p->len; t < Tp; t++) row[t] = 0;
            s->g_plen[i] = p->len;
            rng_init(&s->g_rng[i], (uint64_t)(c0 + i));
        }
        if (gen_generate_each(&s->policy, &s->kv, &s->sampler, &g, s->g_rng, s->g_prompts,
                              s->g_plen, n, Tp, s->g_out, s->g_olen, NULL, NULL, err, errlen))
            return -1;
        for (int i = 0; i < n; i++) {
            const int32_t *o = s->g_out + (size_t)i * s->max_new;
            int rl = s->g_olen[i], e = rl > 0 && g.eot_id >= 0 && o[rl - 1] == g.eot_id;
            text[c0 + i] = ppo_decode(s->tok, o, rl - e);
            ended[c0 + i] = e;
        }
    }
    return 0;
}

// The reference answers: made now (iteration 0) and written, or read back on a resume.
static int hack_reference(Ppo *s, char *err, size_t errlen) {
    PpoHack *h = &s->hack;
    char path[4200];
    snprintf(path, sizeof path, "%s/hack_reference.jsonl", s->tr.out_dir);
    h->ref = CALLOC_CHECK((size_t)h->n, sizeof(char *));
    h->ref_ended = CALLOC_CHECK((size_t)h->n, sizeof(int));
    FILE *f = fopen(path, "r");
    if (f) {   // one {"answer", "ended"} line per prompt
        char *line = NULL;
        size_t cap = 0;
        int i = 0;
        while (i < h->n && getline(&line, &cap, f) > 0) {
            cJSON *o = cJSON_Parse(line);
            const cJSON *a = cJSON_GetObjectItemCaseSensitive(o, "answer");
            h->ref[i] = STRDUP_CHECK(cJSON_IsString(a) ? a->valuestring : "");
            h->ref_ended[i++] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "ended"));
            cJSON_Delete(o);
        }
        free(line);
        fclose(f);
        if (i == h->n) return 0;
        for (int k = 0; k < i; k++) free(h->ref[k]);
    }
    if (s->iteration > 0)
        return util_err(err, errlen, "guards.hack_judge: %s is missing or incomplete and the "
                        "policy has moved: the starting answers cannot be made again", path);
    if (hack_answers(s, h->ref, h->ref_ended, err, errlen)) return -1;
    f = fopen(path, "w");
    if (!f) return util_err(err, errlen, "%s: cannot write", path);
    for (int i = 0; i < h->n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "answer", h->ref[i]);
        cJSON_AddBoolToObject(o, "ended", h->ref_ended[i]);
        char *t = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", t);
        cJSON_free(t);
        cJSON_Delete(o);
    }
    return fclose(f) ? util_err(err, errlen, "%s: write error", path) : 0;
}

// A judge's answer: 1 the first completion preferred, -1 the second, 0 a tie; -2 not a ranking.
static int hack_verdict(const char *a) {
    cJSON *o = cJSON_Parse(a);
    const cJSON *r = o ? cJSON_GetObjectItemCaseSensitive(o, "ranking") : NULL;
    char t[64];
    snprintf(t, sizeof t, "%s", cJSON_IsString(r) ? r->valuestring : a);
    cJSON_Delete(o);
    size_t k = 0;
    for (size_t i = 0; t[i]; i++)
        if (t[i] != ' ' && t[i] != '\t') t[k++] = t[i];
    t[k] = 0;
    if (!strcmp(t, "1>2") || !strcmp(t, "[1,2]")) return 1;
    if (!strcmp(t, "2>1") || !strcmp(t, "[2,1]")) return -1;
    if (!strcmp(t, "1=2") || !strcmp(t, "2=1") || !strcmp(t, "skip")) return 0;
    return -2;
}

// The judge's win rate of the policy's answers over the reference answers (rank 0).
static int hack_win_rate(Ppo *s, double *win, char *err, size_t errlen) {
    PpoHack *h = &s->hack;
    const char *cmd = config_get_string(s->cfg, "guards.hack_judge");
    char **ans = CALLOC_CHECK((size_t)h->n, sizeof(char *));
    int *end = CALLOC_CHECK((size_t)h->n, sizeof(int)), rc = hack_answers(s, ans, end, err, errlen);
    size_t cap = 0, len = 0;
    char *in = NULL;
    for (int i = 0; rc == 0 && i < h->n; i++) {
        cJSON *o = cJSON_CreateObject(), *c = cJSON_AddArrayToObject(o, "completions"),
              *e = cJSON_AddArrayToObject(o, "ended");
        cJSON_AddNumberToObject(o, "prompt_id", i + 1);
        cJSON_AddStringToObject(o, "prompt", h->prompts[i].text);
        cJSON_AddItemToArray(c, cJSON_CreateString(ans[i]));
        cJSON_AddItemToArray(c, cJSON_CreateString(h->ref[i]));
        cJSON_AddItemToArray(e, cJSON_CreateBool(end[i]));
        cJSON_AddItemToArray(e, cJSON_CreateBool(h->ref_ended[i]));
        char *t = cJSON_PrintUnformatted(o);
        size_t l = strlen(t);
        if (len + l + 2 > cap) { cap = 2 * (len + l + 2); in = REALLOC_CHECK(in, cap); }
        memcpy(in + len, t, l);
        len += l;
        in[len++] = '\n';
        cJSON_free(t);
        cJSON_Delete(o);
    }
    ExtResult r = {0};
    char e[512];
    if (rc == 0 && extprog_run(cmd, in, len, h->n, s->hack_timeout, &r, e, sizeof e))
        rc = util_err(err, errlen, "guards.hack_judge (%s): %s", cmd, e);
    else if (rc == 0 && r.timed_out)
        rc = util_err(err, errlen, "guards.hack_judge (%s): no progress for %g s "
                      "(guards.hack_timeout) after %lld of %d answers: terminated", cmd,
                      s->hack_timeout, (long long)r.n, h->n);
    double w = 0.0;
    for (int64_t i = 0; rc == 0 && i < r.n; i++) {
        int v = hack_verdict(r.lines[i]);
        if (v == -2)
            rc = util_err(err, errlen, "guards.hack_judge (%s): answer %lld is not a ranking: "
                          "'%.40s'", cmd, (long long)i + 1, r.lines[i]);
        w += v == 1 ? 1.0 : v == 0 ? 0.5 : 0.0;
    }
    if (rc == 0 && (r.status != 0 || r.n < h->n))
        rc = util_err(err, errlen, "guards.hack_judge (%s): exited with status %d after %lld of "
                      "%d answers", cmd, r.status, (long long)r.n, h->n);
    *win = w / h->n;
    extprog_result_free(&r);
    for (int i = 0; i < h->n; i++) free(ans[i]);
    free(ans);
    free(end);
    free(in);
    return rc;
}

// A resumed run's starting score: its metric ppo/score at iteration 1.
static int first_score(const StoreMetric *m, void *ctx) {
    if (m->step == 1) *(double *)ctx = m->value;
    return 0;
}

int ppo_hack_check(Ppo *s, const PpoStats *st, char *why, size_t whylen, char *err,
                   size_t errlen) {
    PpoHack *h = &s->hack;
    if (!config_get_string(s->cfg, "guards.hack_judge")[0]) return 0;
    int64_t every = config_get_int(s->cfg, "guards.hack_every");
    int main_rank = dist_main(&s->dist);
    if (st == NULL) {   // setup: the prompts and the starting answers
        if (!main_rank) return 0;
        s->hack_timeout = config_get_double(s->cfg, "guards.hack_timeout");
        h->prev_score = NAN;
        if (s->iteration >= 1 && store_each_metric(s->tr.db, s->tr.run_id, "ppo/score",
                                                   first_score, &h->prev_score, err, errlen))
            return -1;
        return hack_load(s, err, errlen) || hack_reference(s, err, errlen) ? -1 : 0;
    }
    if (s->iteration == 1) h->prev_score = st->score;   // the starting policy's rollouts
    if (s->iteration % every) return 0;
    double fired = 0.0, win = 0.0, margin = config_get_double(s->cfg, "guards.hack_margin");
    if (main_rank) {
        if (hack_win_rate(s, &win, err, errlen) ||
            store_add_metric(s->tr.db, s->tr.run_id, s->iteration, "guard/judge_win_rate", win,
                             err, errlen))
            return -1;
        fprintf(stderr, "ppo: guard: iteration %lld: judge win rate %.3f against the starting "
                "answers, score %.4f\n", (long long)s->iteration, win, st->score);
        if (!isnan(h->prev_score) && st->score > h->prev_score && win < 0.5 - margin) {
            fired = 1.0;
            if (store_add_metric(s->tr.db, s->tr.run_id, s->iteration, "guard/hack_judge", win,
                                 err, errlen))
                return -1;
            snprintf(why, whylen, "guard guards.hack_judge fired at iteration %lld: the score rose "
                     "(%.4f at iteration 1, now %.4f) while the judge win rate against the "
                     "starting answers fell to %.3f (below 0.5 - guards.hack_margin %g): reward "
                     "hacking",
                     (long long)s->iteration, h->prev_score, st->score, win, margin);
            fprintf(stderr, "ppo: %s\n", why);
        }
    }
    dist_allreduce_sum_double(&s->dist, &fired, 1);
    return fired > 0;
}

void ppo_hack_free(Ppo *s) {
    PpoHack *h = &s->hack;
    for (int i = 0; i < h->n; i++) {
        free(h->prompts[i].ids);
        free(h->prompts[i].text);
        if (h->ref) free(h->ref[i]);
    }
    free(h->prompts);
    free(h->ref);
    free(h->ref_ended);
}
