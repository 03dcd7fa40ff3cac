// The reward's parts besides model.reward's score, each measured per episode, logged per
// iteration (reward/... metrics) and stored with each rollout (rollouts.components, JSON):
//   reward models   model.reward and reward.models, their scores combined by reward.combine
//                   (mean, or min: an ensemble a policy cannot please by fooling one model)
//   programs        reward.programs: each command runs once per iteration through /bin/sh (the
//                   line filter of rlhf/extprog.c, as `rlhf eval-policy --score`): one JSON line
//                   {"prompt": ..., "completion": ...} per episode on its standard input, one
//                   number per line back, in order; times reward.program_weights
//   penalties       reward.length_penalty per response token; reward.overlong_penalty, rising
//                   over the last reward.overlong_tokens tokens before rollout.max_new_tokens
//   normalisation   reward.normalize: (total - mean) / std over every episode seen so far
// The total then takes the missing-end penalty and reward.clip as the score alone did.
// A program that exits with an error, stops answering for reward.program_timeout seconds,
// answers too few or too many lines, or a line that is not a finite number stops the run with a
// message naming the program and the answer.
#include "extprog.h"
#include "ppo_train.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ppo_parts_config(Ppo *s, const ModelConfig *policy, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    Config *c = s->cfg;
    int64_t nm = config_get_list(c, "reward.models", &p->rm_dirs);
    p->n_rm = 1 + (int)nm;
    p->combine_min = !strcmp(config_get_string(c, "reward.combine"), "min");
    p->n_prog = (int)config_get_list(c, "reward.programs", &p->prog_cmd);
    const char *const *w;
    int64_t nw = config_get_list(c, "reward.program_weights", &w);
    if (nw != 0 && nw != p->n_prog)
        return util_err(err, errlen, "reward.program_weights has %lld weights for %d "
                        "reward.programs: give one per program, or none (1 each)",
                        (long long)nw, p->n_prog);
    p->prog_w = CALLOC_CHECK((size_t)p->n_prog + 1, sizeof(double));
    for (int j = 0; j < p->n_prog; j++) {
        char *end = NULL;
        p->prog_w[j] = nw ? strtod(w[j], &end) : 1.0;
        if (nw && (end == w[j] || *end || !isfinite(p->prog_w[j])))
            return util_err(err, errlen, "reward.program_weights[%d]: '%s' is not a number", j,
                            w[j]);
    }
    p->prog_timeout = config_get_double(c, "reward.program_timeout");
    p->len_coef = config_get_double(c, "reward.length_penalty");
    p->over_coef = config_get_double(c, "reward.overlong_penalty");
    p->over_zone = (int)config_get_int(c, "reward.overlong_tokens");
    if (p->over_zone > s->max_new)
        return util_err(err, errlen, "reward.overlong_tokens (%d) exceeds rollout.max_new_tokens "
                        "(%d)", p->over_zone, s->max_new);
    p->normalize = config_get_bool(c, "reward.normalize");
    p->on = p->n_rm > 1 || p->n_prog > 0 || p->len_coef != 0 || p->over_coef != 0 || p->normalize;
    p->rm_config = CALLOC_CHECK((size_t)p->n_rm, sizeof(ModelConfig));
    for (int k = 0; k + 1 < p->n_rm; k++) {
        ModelConfig *mc = &p->rm_config[k];
        char e[1024];
        if (ckpt_load_config(p->rm_dirs[k], mc, NULL, e, sizeof e))
            return util_err(err, errlen, "reward.models[%d]: %s", k, e);
        if (!mc->score_head)
            return util_err(err, errlen, "reward.models[%d]: %s has no score head "
                            "(score.weight): it is not a reward model", k, p->rm_dirs[k]);
        if (mc->vocab_size != policy->vocab_size)
            return util_err(err, errlen, "reward.models[%d]: a vocabulary of %d tokens, "
                            "model.policy %d: every model must share the tokenizer",
                            k, mc->vocab_size, policy->vocab_size);
        if (mc->max_seq_len < s->Trw)
            return util_err(err, errlen, "reward.models[%d]: a context of %d tokens, shorter "
                            "than the %d of a prompt and response", k, mc->max_seq_len, s->Trw);
        mc->lm_head = 0;
    }
    return 0;
}

size_t ppo_parts_plan_bytes(const Ppo *s) {
    size_t b = 0;
    for (int k = 0; k + 1 < s->parts.n_rm; k++)
        b += ppo_frozen_bytes(&s->parts.rm_config[k], s->prec_frozen, s->mbl, s->Trw);
    return b;
}

int ppo_parts_load(Ppo *s, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    size_t R = (size_t)s->R;
    p->rm = CALLOC_CHECK((size_t)p->n_rm, sizeof(Model));
    for (int k = 0; k + 1 < p->n_rm; k++) {
        char e[1024];
        if (model_init(&p->rm[k], &p->rm_config[k], s->mbl, s->Trw, 0, 0, e, sizeof e) ||
            ckpt_load_weights(p->rm_dirs[k], &p->rm[k], 0, e, sizeof e) ||
            model_lowp_attach(&p->rm[k], s->prec_frozen, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32,
                              e, sizeof e))   // precision.frozen: as model.reward
            return util_err(err, errlen, "reward.models[%d]: %s", k, e);
    }
    p->rm_score = CALLOC_CHECK(R * (size_t)p->n_rm, sizeof(float));
    p->prog_score = CALLOC_CHECK(R * ((size_t)p->n_prog + 1), sizeof(float));
    float **f[4] = {&p->len_pen, &p->over_pen, &p->raw, &p->total};
    for (int i = 0; i < 4; i++) *f[i] = CALLOC_CHECK(R, sizeof(float));
    return 0;
}

void ppo_parts_free(Ppo *s) {
    PpoRewardParts *p = &s->parts;
    for (int k = 0; p->rm && k + 1 < p->n_rm; k++) model_free(&p->rm[k]);
    void *b[] = {p->rm, p->rm_config, p->prog_w, p->rm_score, p->prog_score,
                 p->len_pen, p->over_pen, p->raw, p->total};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) free(b[i]);
}

int ppo_parts_score(Ppo *s, const ModelBatch *rb, const int32_t *idx, int n, char *err,
                    size_t errlen) {
    PpoRewardParts *p = &s->parts;
    for (int i = 0; i < n; i++) p->rm_score[idx[i]] = s->score[idx[i]];
    for (int k = 0; k + 1 < p->n_rm; k++) {
        char e[512];
        if (model_forward(&p->rm[k], rb, 0, e, sizeof e))
            return util_err(err, errlen, "reward.models[%d]: %s", k, e);
        model_get_values(&p->rm[k], s->b_values);
        float *row = p->rm_score + (size_t)(k + 1) * s->R;
        for (int i = 0; i < n; i++) row[idx[i]] = s->b_values[(size_t)i * rb->T + s->b_len[i] - 1];
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// programs

// The iteration's requests: one JSON line per episode.
static char *program_input(const Ppo *s, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = MALLOC_CHECK(cap);
    for (int b = 0; b < s->R; b++) {
        char *resp = ppo_decode(s->tok, s->seq + (size_t)b * s->Tseq + s->plen[b],
                                s->rlen[b] - (s->ended[b] ? 1 : 0));
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "prompt", s->prompts[s->pidx[b]].text);
        cJSON_AddStringToObject(o, "completion", resp);
        char *line = cJSON_PrintUnformatted(o);
        if (!line) DIE("out of memory");
        size_t l = strlen(line);
        if (n + l + 2 > cap) {
            while (n + l + 2 > cap) cap *= 2;
            buf = REALLOC_CHECK(buf, cap);
        }
        memcpy(buf + n, line, l);
        n += l;
        buf[n++] = '\n';
        cJSON_free(line);
        cJSON_Delete(o);
        free(resp);
    }
    *len = n;
    return buf;
}

// One finite number, spaces around it allowed.
static int parse_number(const char *t, float *v) {
    char *end;
    while (*t == ' ' || *t == '\t') t++;
    double d = strtod(t, &end);
    if (end == t) return -1;
    while (*end == ' ' || *end == '\t') end++;
    if (*end || !isfinite(d)) return -1;
    *v = (float)d;
    return 0;
}

static int run_program(Ppo *s, int j, const char *input, size_t len, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    const char *cmd = p->prog_cmd[j];
    ExtResult r;
    char e[1024];
    if (extprog_run(cmd, input, len, s->R, p->prog_timeout, &r, e, sizeof e))
        return util_err(err, errlen, "reward.programs[%d] (%s): %s", j, cmd, e);
    int rc = 0;
    if (r.timed_out)
        rc = util_err(err, errlen, "reward.programs[%d] (%s): no progress for %g s "
                      "(reward.program_timeout) after %lld of %d answers: terminated; a reward "
                      "program must answer one number per line",
                      j, cmd, p->prog_timeout, (long long)r.n, s->R);
    else if (r.status != 0)
        rc = util_err(err, errlen, "reward.programs[%d] (%s): exited with %s %d after %lld of %d "
                      "answers",
                      j, cmd, r.status < 0 ? "a signal, status" : "status", r.status,
                      (long long)r.n, s->R);
    else if (r.n < s->R || r.extra)
        rc = util_err(err, errlen, "reward.programs[%d] (%s): answered %lld lines for %d "
                      "completions: it must answer exactly one number per line",
                      j, cmd, (long long)(r.n + r.extra), s->R);
    for (int64_t i = 0; rc == 0 && i < r.n; i++)
        if (parse_number(r.lines[i], &p->prog_score[(size_t)j * s->R + i]))
            rc = util_err(err, errlen, "reward.programs[%d] (%s): answer %lld is not a finite "
                          "number: '%.60s'", j, cmd, (long long)i + 1, r.lines[i]);
    extprog_result_free(&r);
    return rc;
}

int ppo_parts_total(Ppo *s, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    if (!p->on) return 0;
    int R = s->R;
    if (p->n_rm > 1) ppo_combine_scores(p->rm_score, p->n_rm, R, R, p->combine_min, s->score);
    if (p->n_prog > 0) {
        memset(p->prog_score, 0, (size_t)p->n_prog * R * sizeof(float));
        if (dist_main(&s->dist)) {   // rank 0 asks, the others receive the answers
            size_t len;
            char *in = program_input(s, &len);
            int rc = 0;
            for (int j = 0; j < p->n_prog && rc == 0; j++)
                rc = run_program(s, j, in, len, err, errlen);
            free(in);
            if (rc) return -1;
        }
        dist_allreduce_sum(&s->dist, p->prog_score, (int64_t)p->n_prog * R);
    }
    for (int b = 0; b < R; b++) {
        double t = s->score[b];
        for (int j = 0; j < p->n_prog; j++) t += p->prog_w[j] * p->prog_score[(size_t)j * R + b];
        p->len_pen[b] = (float)(p->len_coef * s->rlen[b]);
        p->over_pen[b] = (float)ppo_overlong_penalty(s->rlen[b], s->max_new, p->over_zone,
                                                     p->over_coef);
        p->raw[b] = (float)(t - p->len_pen[b] - p->over_pen[b]);
    }
    if (p->normalize) ppo_running_normalize(&p->norm, p->raw, R, p->total);
    else memcpy(p->total, p->raw, (size_t)R * sizeof(float));
    return 0;
}

char *ppo_parts_components(const Ppo *s, int b) {
    const PpoRewardParts *p = &s->parts;
    if (!p->on) return NULL;
    int R = s->R;
    cJSON *o = cJSON_CreateObject(), *rm = cJSON_AddArrayToObject(o, "reward_models");
    for (int k = 0; k < p->n_rm; k++)
        cJSON_AddItemToArray(rm, cJSON_CreateNumber(p->rm_score[(size_t)k * R + b]));
    cJSON_AddNumberToObject(o, "score", s->score[b]);
    cJSON *pr = cJSON_AddArrayToObject(o, "programs");
    for (int j = 0; j < p->n_prog; j++)
        cJSON_AddItemToArray(pr, cJSON_CreateNumber(p->prog_score[(size_t)j * R + b]));
    cJSON_AddNumberToObject(o, "length_penalty", p->len_pen[b]);
    cJSON_AddNumberToObject(o, "overlong_penalty", p->over_pen[b]);
    cJSON_AddNumberToObject(o, "total", p->raw[b]);
    if (p->normalize) cJSON_AddNumberToObject(o, "normalized", p->total[b]);
    char *t = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!t) DIE("out of memory");
    char *out = STRDUP_CHECK(t);
    cJSON_free(t);
    return out;
}

static double mean_of(const float *x, int n) {
    double a = 0.0;
    for (int i = 0; i < n; i++) a += x[i];
    return n ? a / n : NAN;
}

int ppo_parts_metrics(Ppo *s, int64_t step, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    if (!p->on) return 0;
    int R = s->R;
    char name[64];
    for (int k = 0; k < p->n_rm; k++) {
        snprintf(name, sizeof name, "reward/model_%d", k);
        if (store_add_metric(s->tr.db, s->tr.run_id, step, name,
                             mean_of(p->rm_score + (size_t)k * R, R), err, errlen))
            return -1;
    }
    for (int j = 0; j < p->n_prog; j++) {
        snprintf(name, sizeof name, "reward/program_%d", j);
        if (store_add_metric(s->tr.db, s->tr.run_id, step, name,
                             mean_of(p->prog_score + (size_t)j * R, R), err, errlen))
            return -1;
    }
    struct { const char *n; double v; } m[] = {
        {"reward/length_penalty", mean_of(p->len_pen, R)},
        {"reward/overlong_penalty", mean_of(p->over_pen, R)},
        {"reward/total", mean_of(p->raw, R)},
        {"reward/normalized", p->normalize ? mean_of(p->total, R) : NAN},
        {"reward/norm_mean", p->normalize ? p->norm.mean : NAN},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (store_add_metric(s->tr.db, s->tr.run_id, step, m[i].n, m[i].v, err, errlen))
            return -1;
    return 0;
}

int ppo_parts_save_state(const Ppo *s, CkptTrainerState *st, char *err, size_t errlen) {
    const PpoRewardParts *p = &s->parts;
    if (!p->normalize) return 0;
    return ckpt_state_set_float(st, "reward.norm_count", p->norm.count, err, errlen) ||
                   ckpt_state_set_float(st, "reward.norm_mean", p->norm.mean, err, errlen) ||
                   ckpt_state_set_float(st, "reward.norm_m2", p->norm.m2, err, errlen)
               ? -1
               : 0;
}

int ppo_parts_load_state(Ppo *s, const CkptTrainerState *st, char *err, size_t errlen) {
    PpoRewardParts *p = &s->parts;
    if (!p->normalize) return 0;
    return ckpt_state_get_float(st, "reward.norm_count", &p->norm.count, err, errlen) ||
                   ckpt_state_get_float(st, "reward.norm_mean", &p->norm.mean, err, errlen) ||
                   ckpt_state_get_float(st, "reward.norm_m2", &p->norm.m2, err, errlen)
               ? -1
               : 0;
}
