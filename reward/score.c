// reward score: a reward model's scores of completions, in batches of similar length. From the
// workspace (stored in reward_scores under the model's name) or from a JSONL file / stdin
// (printed as JSONL). Also the scorer the other subcommands use (RmScorer, cmd.h).
#include "checkpoint.h"
#include "cli.h"
#include "cmd.h"
#include "reward.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// ---------------------------------------------------------------------------------------------
// The scorer
// ---------------------------------------------------------------------------------------------

static int make_dataset(RmScorer *s, const char *tmpl, const char *prefix, int max_tokens,
                        char *err, size_t errlen) {
    s->prefix = STRDUP_CHECK(prefix ? prefix : DATASET_DEFAULT_RESPONSE_PREFIX);
    DatasetOptions o = {
        .prompt_template = tmpl, .response_prefix = s->prefix, .max_tokens = max_tokens};
    return dataset_create(&s->ds, s->tok, &o, err, errlen);
}

int rm_scorer_open(RmScorer *s, const char *ckpt, const char *tokdir, const char *tmpl,
                   const char *prefix, int B, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->B = B;
    snprintf(s->ckpt, sizeof s->ckpt, "%s", ckpt);
    ModelConfig c;
    if (ckpt_load_config(ckpt, &c, NULL, err, errlen)) return -1;
    if (!c.score_head)
        return util_err(err, errlen, "%s has no score head (score.weight): not a reward model",
                        ckpt);
    const char *dir = tokdir && *tokdir ? tokdir : ckpt;
    if (tok_load(&s->tok, dir, err, errlen)) return -1;
    s->tok_owned = 1;
    if (ckpt_check_tokenizer(ckpt, c.vocab_size, dir, tok_vocab_size(s->tok), err, errlen))
        return -1;
    if (make_dataset(s, tmpl, prefix, c.max_seq_len, err, errlen)) return -1;
    // the model itself is made at the first rm_score_texts, for the longest sequence it needs
    s->own.config = c;
    s->own.config.lm_head = 0;
    return 0;
}

int rm_scorer_wrap(RmScorer *s, Model *m, Tokenizer *tok, const char *tmpl, const char *prefix, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    s->m = m;
    s->tok = tok;
    s->B = m->max_B;
    if (!m->config.score_head) return util_err(err, errlen, "the model has no score head");
    return make_dataset(s, tmpl, prefix, m->config.max_seq_len, err, errlen);
}

void rm_scorer_close(RmScorer *s) {
    if (s->loaded) model_free(&s->own);
    if (s->tok_owned) tok_free(s->tok);
    dataset_free(s->ds);
    free(s->prefix);
    memset(s, 0, sizeof *s);
}

// (Re)makes the scorer's own model for sequences of up to T tokens.
static int ensure_model(RmScorer *s, int T, char *err, size_t errlen) {
    if (s->loaded && s->own.max_T >= T) return 0;
    ModelConfig c = s->own.config;
    if (s->loaded) model_free(&s->own);
    s->loaded = 0;
    if (model_init(&s->own, &c, s->B, T, 0, 0, err, errlen)) { s->own.config = c; return -1; }
    s->loaded = 1;
    if (ckpt_load_weights(s->ckpt, &s->own, 0, err, errlen) ||
        model_lowp_attach(&s->own, s->prec, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, err, errlen))
        return -1;
    s->m = &s->own;
    return 0;
}

// Longest first (the first batch shows at once whether memory suffices), then by index.
typedef struct { int32_t len; int64_t idx; } LenIdx;
static int by_len(const void *a, const void *b) {
    const LenIdx *x = a, *y = b;
    return x->len != y->len ? (x->len < y->len) - (x->len > y->len)
                            : (x->idx > y->idx) - (x->idx < y->idx);
}

int rm_score_texts(RmScorer *s, int64_t n, const char *const *prompts, const char *const *responses,
                   const int *rendered, double *out, int64_t *n_truncated, char *err,
                   size_t errlen) {
    if (n_truncated) *n_truncated = 0;
    if (n == 0) return 0;
    int max_len = s->m ? s->m->max_T : s->own.config.max_seq_len;
    int64_t *off = MALLOC_CHECK((size_t)(n + 1) * sizeof(int64_t)),
            *order = MALLOC_CHECK((size_t)n * sizeof(int64_t));
    LenIdx *li = MALLOC_CHECK((size_t)n * sizeof(LenIdx));
    int32_t *len = MALLOC_CHECK((size_t)n * sizeof(int32_t));
    TokIds all = {0};
    int rc = -1, longest = 1;
    for (int64_t i = 0; i < n; i++) {
        int trunc;
        off[i] = (int64_t)all.n;
        char e[512];
        if (rendered && rendered[i]
                ? reward_encode_rendered(s->ds, s->tok, prompts[i], responses[i], max_len, &all,
                                         &trunc, e, sizeof e)
                : reward_encode(s->ds, s->tok, s->prefix, prompts[i], responses[i], max_len, &all,
                                &trunc, e, sizeof e)) {
            util_err(err, errlen, "item %lld: %s", (long long)i + 1, e);
            goto done;
        }
        len[i] = (int32_t)((int64_t)all.n - off[i]);
        if (len[i] > longest) longest = len[i];
        if (trunc && n_truncated) (*n_truncated)++;
    }
    off[n] = (int64_t)all.n;
    if (!s->m || s->m == &s->own) {
        if (ensure_model(s, longest, err, errlen)) goto done;
    }
    for (int64_t i = 0; i < n; i++) li[i] = (LenIdx){len[i], i};
    qsort(li, (size_t)n, sizeof(LenIdx), by_len);
    for (int64_t i = 0; i < n; i++) order[i] = li[i].idx;
    Model *m = s->m;
    int B = m->max_B, T = m->max_T;
    int32_t *tokens = MALLOC_CHECK((size_t)B * T * sizeof(int32_t)),
            *lengths = MALLOC_CHECK((size_t)B * sizeof(int32_t));
    float *values = MALLOC_CHECK((size_t)B * T * sizeof(float)),
          *scores = MALLOC_CHECK((size_t)B * sizeof(float));
    CliProgress pr;
    int show = s->verbose && n >= 2000;
    if (show) cli_progress_start(&pr, stderr, "scoring", n);
    for (int64_t i0 = 0; i0 < n; i0 += B) {
        int b = (int)(n - i0 < B ? n - i0 : B), Tb = 1;
        for (int j = 0; j < b; j++) if (len[order[i0 + j]] > Tb) Tb = len[order[i0 + j]];
        memset(tokens, 0, (size_t)b * Tb * sizeof(int32_t));
        for (int j = 0; j < b; j++) {
            int64_t it = order[i0 + j];
            lengths[j] = len[it];
            memcpy(tokens + (size_t)j * Tb, all.ids + off[it], (size_t)len[it] * sizeof(int32_t));
        }
        ModelBatch mb = {.B = b, .T = Tb, .tokens = tokens, .lengths = lengths};
        if (reward_forward(m, &mb, values, scores, err, errlen)) {
            free(tokens);
            free(lengths);
            free(values);
            free(scores);
            goto done;
        }
        for (int j = 0; j < b; j++) out[order[i0 + j]] = scores[j];
        if (show) cli_progress_update(&pr, i0 + b, NULL);
    }
    if (show) cli_progress_end(&pr);
    free(tokens); free(lengths); free(values); free(scores);
    rc = 0;
done:
    tok_ids_free(&all);
    free(off); free(order); free(len); free(li);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// reward score
// ---------------------------------------------------------------------------------------------

static const char *score_usage =
    "usage: reward score CKPT (--workspace DB | --input FILE.jsonl|-) [options]\n"
    "Scores completions with the reward model in CKPT, in batches of similar length.\n"
    "  --workspace DB        score the workspace's completions that have no score from this model\n"
    "                        yet and store them (reward_scores, under --name)\n"
    "    --all               re-score every completion\n"
    "    --split S           only completions of prompts in split S (train, valid, test)\n"
    "    --print             also print {\"completion_id\", \"prompt_id\", \"score\"} JSONL to stdout\n"
    "    --name NAME         the model's name in the database (default: CKPT's absolute path)\n"
    "  --input FILE          JSONL lines {\"prompt\": P, \"completion\": C} (or \"response\"); prints each\n"
    "                        line's object with \"score\" added, in order; '-' reads stdin\n"
    "  --batch N             sequences per forward pass (default 16)\n"
    "  --tokenizer DIR       tokenizer files when CKPT has none\n"
    "  --prompt-template T   prompt rendering (default \"Human: {prompt}\\n\\nAssistant:\", as SFT)\n"
    "  --response-prefix P   text before each response (default \" \")\n"
    "  --threads N           OpenMP threads (default: OMP_NUM_THREADS or all cores)\n"
    "  --precision P         the model's weights: fp32 (default), bf16 or int8; with --workspace\n"
    "                        and no --name the scores are stored as CKPT's path + @bf16 (@int8)\n";

static int collect_completion(const StoreCompletion *c, void *ctx) {
    CompList *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 256;
        l->cid = REALLOC_ARRAY(l->cid, (size_t)l->cap, sizeof(int64_t));
        l->pid = REALLOC_ARRAY(l->pid, (size_t)l->cap, sizeof(int64_t));
        l->prompt = REALLOC_ARRAY(l->prompt, (size_t)l->cap, sizeof(char *));
        l->text = REALLOC_ARRAY(l->text, (size_t)l->cap, sizeof(char *));
        l->rendered = REALLOC_ARRAY(l->rendered, (size_t)l->cap, sizeof(int));
    }
    l->rendered[l->n] = c->prompt_rendered;
    l->cid[l->n] = c->id; l->pid[l->n] = c->prompt_id;
    l->prompt[l->n] = STRDUP_CHECK(c->prompt);
    l->text[l->n] = STRDUP_CHECK(c->text);
    l->n++;
    return 0;
}

void rm_comp_list_free(CompList *l) {
    for (int64_t i = 0; i < l->n; i++) { free(l->prompt[i]); free(l->text[i]); }
    free(l->cid); free(l->pid); free(l->prompt); free(l->text); free(l->rendered);
    memset(l, 0, sizeof *l);
}

int rm_list_completions(Store *st, const char *split, const char *unscored_by, CompList *l,
                        char *err, size_t errlen) {
    memset(l, 0, sizeof *l);
    if (!split)
        return store_each_completion(st, 0, unscored_by, collect_completion, l, err, errlen);
    CompList all = {0};
    if (store_each_completion(st, 0, unscored_by, collect_completion, &all, err, errlen)) {
        rm_comp_list_free(&all);
        return -1;
    }
    // keep those whose prompt is in the split
    StorePrompt p = {0};
    int64_t keep = 0;
    for (int64_t i = 0; i < all.n; i++) {
        if (p.id != all.pid[i]) {
            store_prompt_free(&p);
            if (store_get_prompt(st, all.pid[i], &p, err, errlen)) {
                rm_comp_list_free(&all);
                return -1;
            }
        }
        if (!strcmp(p.split, split)) {
            all.cid[keep] = all.cid[i]; all.pid[keep] = all.pid[i];
            all.rendered[keep] = all.rendered[i];
            char *a = all.prompt[keep], *b = all.text[keep];
            all.prompt[keep] = all.prompt[i]; all.text[keep] = all.text[i];
            all.prompt[i] = a; all.text[i] = b;
            keep++;
        }
    }
    store_prompt_free(&p);
    for (int64_t i = keep; i < all.n; i++) { free(all.prompt[i]); free(all.text[i]); }
    all.n = keep;
    *l = all;
    return 0;
}

int rm_model_name(const char *ckpt, const char *name, char *out, size_t n) {
    if (name && *name) { snprintf(out, n, "%s", name); return 0; }
    char *rp = realpath(ckpt, NULL);
    snprintf(out, n, "%s", rp ? rp : ckpt);
    free(rp);
    return 0;
}

static int score_file(RmScorer *sc, const char *path, char *err, size_t errlen) {
    char *data;
    size_t len;
    if (cli_read_lines_file(path, &data, &len, err, errlen)) return -1;
    const char *name = strcmp(path, "-") ? path : "stdin";
    int64_t n = 0, cap = 0;
    cJSON **objs = NULL;
    const char **pr = NULL, **rs = NULL;
    int rc = -1;
    int64_t lineno = 0;
    for (char *p = data, *next; p && p < data + len; p = next) {
        char *nl = memchr(p, '\n', (size_t)(data + len - p));
        next = nl ? nl + 1 : NULL;
        if (nl) *nl = 0;
        lineno++;
        size_t l = strlen(p);
        if ((size_t)((nl ? nl : data + len) - p) != l) {
            util_err(err, errlen, "%s:%lld: a NUL byte in the line", name, (long long)lineno);
            goto done;
        }
        while (l && p[l - 1] == '\r') p[--l] = 0;
        if (lineno == 1 && !strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (!*q) continue;
        const char *eptr = NULL;
        cJSON *o = cJSON_ParseWithOpts(p, &eptr, 1);
        if (!o || !cJSON_IsObject(o)) {
            cJSON_Delete(o);
            util_err(err, errlen, "%s:%lld: %s", name, (long long)lineno,
                     o ? "expected a JSON object" : "bad JSON");
            goto done;
        }
        const cJSON *jp = cJSON_GetObjectItemCaseSensitive(o, "prompt"),
                    *jc = cJSON_GetObjectItemCaseSensitive(o, "completion");
        if (!jc) jc = cJSON_GetObjectItemCaseSensitive(o, "response");
        if (!cJSON_IsString(jp) || !cJSON_IsString(jc)) {
            cJSON_Delete(o);
            util_err(err, errlen, "%s:%lld: expected {\"prompt\": string, \"completion\": string}",
                     name, (long long)lineno);
            goto done;
        }
        size_t lp = strlen(jp->valuestring);
        if (rm_utf8_valid_len(jp->valuestring, lp) != lp) {
            cJSON_Delete(o);
            util_err(err, errlen, "%s:%lld: \"prompt\" is not valid UTF-8", name,
                     (long long)lineno);
            goto done;
        }
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            objs = REALLOC_ARRAY(objs, (size_t)cap, sizeof(*objs));
            pr = REALLOC_ARRAY(pr, (size_t)cap, sizeof(*pr));
            rs = REALLOC_ARRAY(rs, (size_t)cap, sizeof(*rs));
        }
        objs[n] = o; pr[n] = jp->valuestring; rs[n] = jc->valuestring;
        n++;
    }
    if (n == 0) {
        util_err(err, errlen, "%s: no lines to score (expected {\"prompt\", \"completion\"} lines)",
                 name);
        goto done;
    }
    double *scores = MALLOC_CHECK((size_t)n * sizeof(double));
    int64_t ntr;
    if (rm_score_texts(sc, n, pr, rs, NULL, scores, &ntr, err, errlen)) { free(scores); goto done; }
    for (int64_t i = 0; i < n; i++) {
        cJSON_DeleteItemFromObjectCaseSensitive(objs[i], "score");
        cJSON_AddNumberToObject(objs[i], "score", scores[i]);
        char *s = cJSON_PrintUnformatted(objs[i]);
        if (!s) DIE("out of memory");
        puts(s);
        free(s);
    }
    free(scores);
    fprintf(stderr, "reward score: %lld completions scored%s\n", (long long)n,
            ntr ? " (some longer than the context: their last tokens were scored)" : "");
    rc = 0;
done:
    for (int64_t i = 0; i < n; i++) cJSON_Delete(objs[i]);
    free(objs); free(pr); free(rs);
    free(data);
    return rc;
}

int rm_store_scores(Store *st, const char *model, const CompList *l, const double *scores,
                    char *err, size_t errlen) {
    if (store_begin(st, err, errlen)) return -1;
    for (int64_t i = 0; i < l->n; i++)
        if (store_set_reward_score(st, model, l->cid[i], scores[i], err, errlen)) {
            store_rollback(st, NULL, 0);
            return -1;
        }
    return store_commit(st, err, errlen);
}

// Scores the workspace's completions (those without a score from this model unless all), stores
// the scores, prints them as JSONL with print, and their mean and spread on stderr.
static int score_workspace(RmScorer *sc, const char *ws, const char *split, const char *name,
                           const char *ckpt, int all, int print, char *err, size_t errlen) {
    Store *st = NULL;
    char mname[4096];
    rm_model_name(ckpt, name, mname, sizeof mname);
    size_t n = strlen(mname);   // narrow weights score differently: their scores apart
    if (!name && sc->prec && n + 6 < sizeof mname)
        snprintf(mname + n, sizeof mname - n, "@%s", lowp_format_name(sc->prec));
    CompList l = {0};
    double *scores = NULL;
    int rc = 1;
    if (store_open(&st, ws, err, errlen) ||
        rm_list_completions(st, split, all ? NULL : mname, &l, err, errlen))
        goto out;
    scores = MALLOC_CHECK((size_t)(l.n ? l.n : 1) * sizeof(double));
    int64_t ntr;
    if (rm_score_texts(sc, l.n, (const char *const *)l.prompt, (const char *const *)l.text,
                       l.rendered, scores, &ntr, err, errlen) ||
        rm_store_scores(st, mname, &l, scores, err, errlen))
        goto out;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < l.n; i++) {
        sum += scores[i];
        sq += scores[i] * scores[i];
        if (print)
            printf("{\"completion_id\":%lld,\"prompt_id\":%lld,\"score\":%.9g}\n",
                   (long long)l.cid[i], (long long)l.pid[i], scores[i]);
    }
    double mean = l.n ? sum / l.n : 0, sd = l.n ? sqrt(fmax(0, sq / l.n - mean * mean)) : 0;
    fprintf(stderr,
            "reward score: %lld completions scored and stored as '%s' (mean %.4f, std %.4f)%s\n",
            (long long)l.n, mname, mean, sd,
            ntr ? "; some were longer than the context (their last tokens were scored)" : "");
    if (l.n == 0)
        fprintf(stderr, "reward score: nothing to score%s\n",
                all ? "" : " (every completion has a score from this model; --all re-scores)");
    rc = 0;
out:
    free(scores);
    rm_comp_list_free(&l);
    store_close(st);
    return rc;
}

int cmd_score(int argc, char **argv) {
    const char *ckpt = NULL, *ws = NULL, *input = NULL, *split = NULL, *name = NULL, *tokdir = NULL;
    const char *tmpl = NULL, *prefix = NULL;
    int all = 0, print = 0;
    int64_t B = 16, threads = 0;
    LowpFormat prec = LOWP_FP32;
    char err[1024];
    int status;
    CliOption opts[] = {
        CLI_FLAG("--all", &all),
        CLI_FLAG("--print", &print),
        CLI_STRING("--workspace", &ws),
        CLI_STRING("--input", &input),
        CLI_STRING("--split", &split),
        CLI_STRING("--name", &name),
        CLI_STRING("--tokenizer", &tokdir),
        CLI_STRING("--prompt-template", &tmpl),
        CLI_STRING("--response-prefix", &prefix),
        CLI_INT("--batch", &B, 1, 4096),
        CLI_INT("--threads", &threads, 0, 4096),
        CLI_CUSTOM("--precision", lowp_cli_precision, &prec),
        {0}};
    CliCommand cmd = {.prog = "reward score",
                      .usage = score_usage,
                      .opts = opts,
                      .arg_name = "CKPT",
                      .arg = &ckpt,
                      .args_min = 1,
                      .value_status = 1};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!ws == !input)
        return cli_usage_error(&cmd, "give --workspace DB or --input FILE (one of them)");
    if (split && !store_split_valid(split)) {
        snprintf(err, sizeof err, "--split '%s': expected train, valid or test", split);
        goto bad;
    }
    if (threads > 0) omp_set_num_threads((int)threads);
    RmScorer sc;
    if (rm_scorer_open(&sc, ckpt, tokdir, tmpl, prefix, (int)B, err, sizeof err)) {
        rm_scorer_close(&sc);
        goto bad;
    }
    sc.verbose = 1;
    sc.prec = prec;
    int rc = 1;
    if (input) {
        rc = score_file(&sc, input, err, sizeof err) ? 1 : 0;
        if (rc) fprintf(stderr, "reward score: %s\n", err);
        rm_scorer_close(&sc);
        return rc;
    }
    rc = score_workspace(&sc, ws, split, name, ckpt, all, print, err, sizeof err);
    if (rc) fprintf(stderr, "reward score: %s\n", err);
    rm_scorer_close(&sc);
    return rc;
bad:
    fprintf(stderr, "reward score: %s\n", err);
    return 1;
}
