// reward: the K-wise ranking loss, ranking parsing, reward-model scoring and bias folding. See
// reward.h for the definitions.
#include "reward.h"
#include "checkpoint.h"
#include "cli.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// The K-wise loss
// ---------------------------------------------------------------------------------------------

int64_t reward_num_pairs(const int *ranks, int k) {
    int64_t n = 0;
    for (int i = 0; i < k; i++)
        for (int j = 0; j < k; j++) n += ranks[i] < ranks[j];
    return n;
}

// log sigmoid(d) = -softplus(-d), without overflow for large |d|.
static double log_sigmoid(double d) { return d >= 0 ? -log1p(exp(-d)) : d - log1p(exp(d)); }
static double sigmoid(double d) { return d >= 0 ? 1.0 / (1.0 + exp(-d)) : exp(d) / (1.0 + exp(d)); }

double reward_kwise_loss(const float *r, const int *ranks, int k, float *dr, int64_t *n_pairs) {
    int64_t P = reward_num_pairs(ranks, k);
    if (n_pairs) *n_pairs = P;
    if (dr) memset(dr, 0, (size_t)k * sizeof(float));
    if (P == 0) return 0.0;
    double loss = 0.0, g[REWARD_MAX_K] = {0};
    if (k > REWARD_MAX_K) DIE("reward_kwise_loss: k = %d exceeds REWARD_MAX_K", k);
    for (int w = 0; w < k; w++)
        for (int l = 0; l < k; l++) {
            if (ranks[w] >= ranks[l]) continue;   // w strictly better than l
            double d = (double)r[w] - (double)r[l];
            loss -= log_sigmoid(d);
            // d/dd [-log sigmoid(d)] = -(1 - sigmoid(d)) = -sigmoid(-d)
            double s = sigmoid(-d);
            g[w] -= s;
            g[l] += s;
        }
    if (dr)
        for (int i = 0; i < k; i++) dr[i] = (float)(g[i] / (double)P);
    return loss / (double)P;
}

int64_t reward_pair_stats(const float *r, const int *ranks, int k, double *correct,
                          double *margin) {
    int64_t n = 0;
    for (int w = 0; w < k; w++)
        for (int l = 0; l < k; l++) {
            if (ranks[w] >= ranks[l]) continue;
            n++;
            *correct += r[w] > r[l] ? 1.0 : r[w] == r[l] ? 0.5 : 0.0;
            *margin += (double)r[w] - (double)r[l];
        }
    return n;
}

void reward_concordance(const int64_t *ids_a, const int *ranks_a, int ka, const int64_t *ids_b,
                        const int *ranks_b, int kb, RewardConcordance *c) {
    for (int i = 0; i < ka; i++)
        for (int j = i + 1; j < ka; j++) {
            int bi = -1, bj = -1;
            for (int q = 0; q < kb; q++) {
                if (ids_b[q] == ids_a[i]) bi = q;
                if (ids_b[q] == ids_a[j]) bj = q;
            }
            if (bi < 0 || bj < 0) continue;
            int da = ranks_a[i] - ranks_a[j], db = ranks_b[bi] - ranks_b[bj];
            c->pairs++;
            c->tied_a += !da;
            c->tied_b += !db;
            if (!da || !db) continue;
            if ((da < 0) == (db < 0)) c->concordant++;
            else c->discordant++;
        }
}

double reward_kendall_tau_b(const RewardConcordance *c) {
    double d = (double)(c->pairs - c->tied_a) * (double)(c->pairs - c->tied_b);
    return d > 0 ? (double)(c->concordant - c->discordant) / sqrt(d) : NAN;
}

int reward_calibration_bucket(double margin, double *p) {
    *p = 1.0 / (1.0 + exp(-fabs(margin)));
    int b = (int)((*p - 0.5) * 2 * REWARD_CAL_BUCKETS);
    return b >= REWARD_CAL_BUCKETS ? REWARD_CAL_BUCKETS - 1 : b < 0 ? 0 : b;
}

// ---------------------------------------------------------------------------------------------
// Rankings as text
// ---------------------------------------------------------------------------------------------

// Replaces ranks by their dense ranks (the distinct values in order become 1, 2, ...).
static void densify(int *ranks, int k) {
    int out[REWARD_MAX_K];
    for (int i = 0; i < k; i++) {
        int below = 0;   // distinct values smaller than ranks[i]
        for (int j = 0; j < k; j++) {
            if (ranks[j] >= ranks[i]) continue;
            int first = 1;
            for (int q = 0; q < j; q++) if (ranks[q] == ranks[j]) { first = 0; break; }
            below += first;
        }
        out[i] = below + 1;
    }
    memcpy(ranks, out, (size_t)k * sizeof(int));
}

static int parse_json_ranks(const char *text, int k, int *ranks, char *err, size_t errlen) {
    cJSON *a = cJSON_Parse(text);
    int rc = -1;
    if (!a || !cJSON_IsArray(a)) {
        util_err(err, errlen, "ranking '%.80s': not a JSON array of ranks", text);
        goto done;
    }
    if (cJSON_GetArraySize(a) != k) {
        util_err(err, errlen, "ranking '%.80s': %d ranks for %d completions", text,
                 cJSON_GetArraySize(a), k);
        goto done;
    }
    int i = 0;
    for (cJSON *e = a->child; e; e = e->next, i++) {
        double v = cJSON_IsNumber(e) ? e->valuedouble : NAN;
        if (!(v >= 1 && v <= k) || v != floor(v)) {
            util_err(err, errlen, "ranking '%.80s': rank %d is not an integer in 1..%d", text,
                     i + 1, k);
            goto done;
        }
        ranks[i] = (int)v;
    }
    densify(ranks, k);
    rc = 0;
done:
    cJSON_Delete(a);
    return rc;
}

int reward_parse_ranking(const char *text, int k, int *ranks, char *err, size_t errlen) {
    if (k < 2 || k > REWARD_MAX_K)
        return util_err(err, errlen, "a ranking needs 2..%d completions, got %d", REWARD_MAX_K, k);
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return util_err(err, errlen, "empty ranking (expected e.g. 2>1=3 or [2,1,3])");
    if (*p == '[') return parse_json_ranks(p, k, ranks, err, errlen);
    for (int i = 0; i < k; i++) ranks[i] = 0;
    int group = 1, seen = 0;
    for (;;) {
        while (isspace((unsigned char)*p)) p++;
        if (!isdigit((unsigned char)*p))
            return util_err(err, errlen, "ranking '%.80s': expected a completion number at '%.20s'",
                            text, *p ? p : "(end)");
        long v = 0;
        while (isdigit((unsigned char)*p)) { if (v < 100000) v = v * 10 + (*p - '0'); p++; }
        if (v < 1 || v > k)
            return util_err(err, errlen, "ranking '%.80s': %ld is not a completion number in 1..%d",
                            text, v, k);
        if (ranks[v - 1])
            return util_err(err, errlen, "ranking '%.80s': completion %ld appears twice", text, v);
        ranks[v - 1] = group;
        seen++;
        while (isspace((unsigned char)*p)) p++;
        if (!*p) break;
        if (*p == '>') group++;
        else if (*p != '=')
            return util_err(err, errlen, "ranking '%.80s': expected '>' or '=' at '%.20s'", text,
                            p);
        p++;
    }
    if (seen != k) {
        char miss[256] = "";
        size_t o = 0;
        for (int i = 0; i < k && o + 8 < sizeof miss; i++)
            if (!ranks[i])
                o += (size_t)snprintf(miss + o, sizeof miss - o, "%s%d", o ? ", " : "", i + 1);
        return util_err(err, errlen,
                        "ranking '%.80s': every completion 1..%d must be ranked; missing %s", text,
                        k, miss);
    }
    densify(ranks, k);
    return 0;
}

void reward_format_ranking(const int *ranks, int k, char *buf, size_t n) {
    size_t o = 0;
    int prev = 0;
    if (n) buf[0] = 0;
    // items by rank, then by number
    for (int r = 1; r <= k; r++)
        for (int i = 0; i < k; i++) {
            if (ranks[i] != r) continue;
            const char *sep = o == 0 ? "" : r == prev ? "=" : ">";
            int w = snprintf(buf + o, o < n ? n - o : 0, "%s%d", sep, i + 1);
            if (w > 0) o += (size_t)w;
            prev = r;
        }
}

// Copy of s[0..n) (malloc'd), without leading and trailing white space when trim.
static char *copy_text(const char *s, size_t n, int trim) {
    while (trim && n && isspace((unsigned char)*s)) { s++; n--; }
    while (trim && n && isspace((unsigned char)s[n - 1])) n--;
    return STRNDUP_CHECK(s, n);
}

void reward_answer_free(RewardAnswer *a) {
    free(a->comment);
    memset(a, 0, sizeof *a);
}

int reward_parse_answer(const char *line, int k, int judge, RewardAnswer *a, char *err,
                        size_t errlen) {
    memset(a, 0, sizeof *a);
    const char *hash = judge ? NULL : strchr(line, '#');   // a person's "# comment"
    char *cmd = copy_text(line, hash ? (size_t)(hash - line) : strlen(line), 1), *rtext = NULL;
    cJSON *o = NULL;
    int rc = 0;
    if (!*cmd) a->kind = REWARD_ANSWER_NONE;
    else if (!strcmp(cmd, "s") || !strcmp(cmd, "skip")) a->kind = REWARD_ANSWER_SKIP;
    else if (!judge && (!strcmp(cmd, "u") || !strcmp(cmd, "undo"))) a->kind = REWARD_ANSWER_UNDO;
    else if (!judge && (!strcmp(cmd, "q") || !strcmp(cmd, "quit"))) a->kind = REWARD_ANSWER_QUIT;
    else if (!judge && (!strcmp(cmd, "?") || !strcmp(cmd, "h") || !strcmp(cmd, "help")))
        a->kind = REWARD_ANSWER_HELP;
    else {
        const char *comment = NULL;
        if (judge && cmd[0] == '{') {
            o = cJSON_Parse(cmd);
            const cJSON *jr = cJSON_GetObjectItemCaseSensitive(o, "ranking"),
                        *jc = cJSON_GetObjectItemCaseSensitive(o, "comment");
            if (cJSON_IsString(jr)) rtext = STRDUP_CHECK(jr->valuestring);
            else if (cJSON_IsArray(jr)) rtext = cJSON_PrintUnformatted(jr);
            if (!rtext) { rc = util_err(err, errlen, "not a ranking: '%.200s'", cmd); goto done; }
            if (cJSON_IsString(jc)) comment = jc->valuestring;
        } else if (hash) comment = hash + 1;
        if (reward_parse_ranking(rtext ? rtext : cmd, k, a->ranks, err, errlen)) {
            rc = -1;
            goto done;
        }
        a->kind = REWARD_ANSWER_RANKING;
        if (comment) a->comment = copy_text(comment, strlen(comment), !judge);
    }
done:
    if (rc) reward_answer_free(a);
    cJSON_Delete(o);
    free(rtext);
    free(cmd);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Rendering and scoring
// ---------------------------------------------------------------------------------------------

// reward_encode, or reward_encode_rendered when rendered is 1.
static int encode_pair(const Dataset *ds, const Tokenizer *tok, const char *response_prefix,
                       const char *prompt, int rendered, const char *response, int max_len,
                       TokIds *out, int *truncated, char *err, size_t errlen) {
    if (truncated) *truncated = 0;
    if (max_len <= 0) return util_err(err, errlen, "reward_encode: max_len %d", max_len);
    int32_t eot = tok_eot(tok);
    if (eot < 0) return util_err(err, errlen, "the tokenizer has no <|endoftext|> token");
    TokIds ids = {0};
    if (rendered ? dataset_encode_rendered_prompt(ds, prompt, &ids, err, errlen)
                 : dataset_encode_prompt(ds, prompt, &ids, err, errlen)) {
        tok_ids_free(&ids);
        return -1;
    }
    if (rendered) response_prefix = "";
    size_t lp = strlen(response_prefix), lr = strlen(response);
    char *text = MALLOC_CHECK(lp + lr + 1);
    memcpy(text, response_prefix, lp);
    memcpy(text + lp, response, lr + 1);
    int rc = tok_encode(tok, text, lp + lr, 0, &ids, err, errlen);
    free(text);
    if (rc) {
        tok_ids_free(&ids);
        return util_err_prefix(err, errlen, "response: ");
    }
    size_t n = ids.n + 1, start = n > (size_t)max_len ? n - (size_t)max_len : 0;
    if (truncated) *truncated = start > 0;
    for (size_t i = start; i < n; i++) {
        int32_t t = i < ids.n ? ids.ids[i] : eot;
        if (out->n == out->cap) {
            size_t cap = out->cap ? 2 * out->cap : 64;
            out->ids = REALLOC_ARRAY(out->ids, cap, sizeof(int32_t));
            out->cap = cap;
        }
        out->ids[out->n++] = t;
    }
    tok_ids_free(&ids);
    return 0;
}

int reward_encode(const Dataset *ds, const Tokenizer *tok, const char *response_prefix,
                  const char *prompt, const char *response, int max_len, TokIds *out,
                  int *truncated, char *err, size_t errlen) {
    return encode_pair(ds, tok, response_prefix, prompt, 0, response, max_len, out, truncated,
                       err, errlen);
}

int reward_encode_rendered(const Dataset *ds, const Tokenizer *tok, const char *prompt,
                           const char *response, int max_len, TokIds *out, int *truncated,
                           char *err, size_t errlen) {
    return encode_pair(ds, tok, "", prompt, 1, response, max_len, out, truncated, err, errlen);
}

int reward_forward(Model *m, const ModelBatch *b, float *values, float *scores, char *err,
                   size_t errlen) {
    if (!m->config.score_head)
        return util_err(err, errlen,
                        "the model has no score head (score.weight): not a reward model");
    if (model_forward(m, b, 0, err, errlen)) return -1;
    model_get_values(m, values);
    for (int i = 0; i < b->B; i++) scores[i] = values[(size_t)i * b->T + b->lengths[i] - 1];
    return 0;
}

void reward_backward(Model *m, const ModelBatch *b, const float *dscores, float *dvalues) {
    memset(dvalues, 0, (size_t)b->B * b->T * sizeof(float));
    for (int i = 0; i < b->B; i++) dvalues[(size_t)i * b->T + b->lengths[i] - 1] = dscores[i];
    model_backward(m, b, NULL, dvalues);
}

int reward_fold_bias(Model *m, double c, char *err, size_t errlen) {
    const ModelConfig *cf = &m->config;
    if (!cf->score_head || cf->lm_head)
        return util_err(err, errlen,
                        "folding a bias into ln_f needs a model with a score head and no LM head");
    if (!reward_can_fold_bias(m))
        return util_err(err, errlen, "the model's final RMSNorm has no bias: a constant cannot be "
                        "folded into its scores");
    int C = cf->n_embd;
    const float *w = m->params.scorew;
    double ww = 0;
    for (int i = 0; i < C; i++) ww += (double)w[i] * w[i];
    if (!(ww > 0))
        return util_err(err, errlen,
                        "score.weight is zero: a bias cannot be folded into ln_f.bias");
    for (int i = 0; i < C; i++) m->params.lnfb[i] += (float)(c * w[i] / ww);
    return 0;
}

int reward_can_fold_bias(const Model *m) { return m->param_sizes[P_LNFB] > 0; }

// ---------------------------------------------------------------------------------------------
// Tokenizer agreement between a policy and another model
// ---------------------------------------------------------------------------------------------

// The merges of a tokenizer directory (merges.txt, else the older vocab.bpe) without the
// "#version" line, malloc'd into *out (*n bytes); -1 when neither file can be read.
// What decides how a directory's tokenizer splits text: tokenizer.json whole (its merges, its
// pre-tokenizer, its normalizer; *json = 1), else the merges of GPT-2's two files (without the
// "#version" line).
static int read_merges(const char *dir, char **out, size_t *n, int *json) {
    static const char *const names[] = {"tokenizer.json", "merges.txt", "vocab.bpe"};
    for (int i = 0; i < 3; i++) {
        *json = i == 0;
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        char *buf;
        size_t len, skip = 0;
        if (cli_read_file(path, &buf, &len, NULL, 0)) continue;
        if (len >= 8 && !memcmp(buf, "#version", 8)) {
            const char *nl = memchr(buf, '\n', len);
            skip = nl ? (size_t)(nl - buf) + 1 : len;
        }
        memmove(buf, buf + skip, len - skip);
        *out = buf;
        *n = len - skip;
        return 0;
    }
    return -1;
}

// The first id whose bytes differ between a and b (same size), or -1.
static int64_t first_different_token(const Tokenizer *a, const Tokenizer *b) {
    for (int64_t id = 0; id < tok_vocab_size(a); id++) {
        size_t la, lb;
        const char *ta = tok_token(a, (int32_t)id, &la), *tb = tok_token(b, (int32_t)id, &lb);
        if (la != lb || memcmp(ta, tb, la)) return id;
    }
    return -1;
}

// The tokenizer files of dir (or dir.old while dir is being replaced) against the policy's.
static int compare_tokenizer_files(const char *role, const char *dir, const char *tokdir,
                                   const Tokenizer *tok, char *err, size_t errlen) {
    char e[512];
    Tokenizer *own;
    if (tok_load(&own, dir, e, sizeof e)) return util_err(err, errlen, "%s: %s", role, e);
    int64_t bad = tok_vocab_size(own) != tok_vocab_size(tok) ? -2 : first_different_token(own, tok);
    tok_free(own);
    if (bad == -2)
        return util_err(err, errlen, "%s: the tokenizer of %s and the policy's (%s) differ in "
                        "size: they do not agree", role, dir, tokdir);
    if (bad >= 0)
        return util_err(err, errlen, "%s: the tokenizer of %s and the policy's (%s) disagree on "
                        "token id %lld: a model cannot read another tokenizer's ids",
                        role, dir, tokdir, (long long)bad);
    char *ma = NULL, *mb = NULL;
    size_t na = 0, nb = 0;
    int ja = 0, jb = 0;
    int ra = read_merges(dir, &ma, &na, &ja), rb = read_merges(tokdir, &mb, &nb, &jb);
    int same = !ra && !rb && ja == jb && na == nb && !memcmp(ma, mb, na);
    free(ma);
    free(mb);
    if (!ra && !rb && ja != jb)
        return util_err(err, errlen, "%s: %s and the policy's tokenizer (%s) are of two kinds "
                        "(tokenizer.json and vocab.json + merges.txt): nothing shows they split "
                        "text alike; give both models the same tokenizer files", role, dir, tokdir);
    if (!same)
        return util_err(err, errlen, "%s: the tokenizer of %s and the policy's (%s) have the "
                        "same tokens but %s: they split text differently", role, dir, tokdir,
                        ja ? "a different tokenizer.json (merges, pre-tokenizer or normalizer)"
                           : "different merges");
    return 0;
}

int reward_check_tokenizer(const char *role, const char *dir, const ModelConfig *c,
                           const ModelConfig *policy, const char *tokdir, const Tokenizer *tok,
                           char *err, size_t errlen) {
    if (c->vocab_size != policy->vocab_size)
        return util_err(err, errlen, "%s: %s has a vocabulary of %d tokens, the policy %d: their "
                        "tokenizers do not agree", role, dir, c->vocab_size, policy->vocab_size);
    CkptInfo ci;
    char e[512];
    ModelConfig tmp;
    if (ckpt_load_config(dir, &tmp, &ci, e, sizeof e))
        return util_err(err, errlen, "%s: %s", role, e);
    char tdir[4200];
    snprintf(tdir, sizeof tdir, "%s%s", dir, ci.from_old ? ".old" : "");
    if (ci.has_tokenizer) return compare_tokenizer_files(role, tdir, tokdir, tok, err, errlen);
    if (c->arch != policy->arch)
        return util_err(err, errlen, "%s: %s is a %s model without tokenizer files beside a %s "
                        "policy: nothing shows that their tokenizers agree; copy the vocab.json "
                        "and merges.txt it was trained with into %s", role, dir,
                        c->arch == MODEL_ARCH_GPT2 ? "GPT-2" : "Llama-style",
                        policy->arch == MODEL_ARCH_GPT2 ? "GPT-2" : "Llama-style", dir);
    return 0;
}
