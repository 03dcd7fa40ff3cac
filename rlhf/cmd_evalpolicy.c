// rlhf eval-policy: the final evaluation of the demo (and of any two policies): on held-out
// prompts, each policy answers; the judge compares the answers pairwise (win rate of A over B,
// ties split, with a bootstrap 95% interval over prompts); optionally the reward model scores
// them, their KL to a reference model is measured, and each policy's loss on pretraining text
// shows the alignment tax. Task accuracy by task type comes from data/demo/tasks.h.
//
// Recipe: parse, load the tokenizer and prompts, then per policy: load, generate, measure (KL,
// pretraining loss), free; then score with the reward model, judge, bootstrap, print, record.
// A and B sample with the same random numbers (the batch seeds depend only on --seed and the
// batch), so a policy compared with itself gives identical answers: exactly 50%.
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "data.h"
#include "dataset.h"
#include "generate.h"
#include "model.h"
#include "store.h"
#include "tasks.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ep_usage =
    "usage: rlhf eval-policy --a CKPT --b CKPT --prompts FILE [options]\n"
    "Compares policy A with policy B on held-out prompts (JSONL with a \"prompt\" string per line,\n"
    "e.g. eval_prompts.jsonl of `rlhf data demo`; other keys ignored). Each policy answers every\n"
    "prompt (rendered \"Human: {prompt}\\n\\nAssistant:\", the response after a space, up to the end\n"
    "token); by default answers are sampled at temperature 1, the distribution PPO optimises.\n"
    "Reported for A and B: the judge's preference (win rate of A over B, ties counted 1/2, with a\n"
    "bootstrap 95% interval over prompts), task accuracy overall and by task type, mean response\n"
    "length and end-token rate, and with the options below the mean reward-model score, the KL to\n"
    "a reference and the loss on pretraining text.\n"
    "  --reward CKPT         reward model: mean score (scalar head at the last token of prompt+response;\n"
    "                        an answer cut off by --max-new is scored with the end token appended)\n"
    "  --reference CKPT      reference policy: KL = mean over responses of sum over response tokens\n"
    "                        of log pi(token) - log pi_ref(token) (the end token included)\n"
    "  --pretrain-text FILE  mean next-token loss of each policy on this text (documents separated\n"
    "                        by <|endoftext|>, each followed by the end token; windows of the context)\n"
    "  --samples N           answers per prompt and policy (default 1)\n"
    "  --max-new N           new tokens per answer (default 48)\n"
    "  --temperature T       sampling temperature (default 1; 0 = greedy)\n"
    "  --greedy              same as --temperature 0\n"
    "  --judge-noise P       the judge's label noise (default 0: the noiseless judge)\n"
    "  --seed S              sampling, noise and bootstrap seed (default 1234)\n"
    "  --bootstrap N         bootstrap resamples (default 2000)\n"
    "  --batch B             answers generated / scored together (default 16)\n"
    "  --max-prompts N       use only the first N prompts\n"
    "  --tokenizer DIR       tokenizer when A's checkpoint has none\n"
    "  --responses FILE      also write every answer with its grade as JSONL\n"
    "  --workspace DB        record a run (stage \"eval\") and every figure as a metric in DB\n"
    "  --name NAME           the recorded run's name (default eval-policy)\n"
    "  --json                print one JSON object instead of the table\n"
    "Targets (each optional; with any of them each figure is printed against its target, unless --json, and the\n"
    "command exits 1, naming each miss, when one is missed: a failed alignment fails the pipeline):\n"
    "  --target-win-rate X   A preferred to B at least X\n"
    "  --target-win-lo X     the 95% interval's lower end above X\n"
    "  --target-accuracy-drop D  A's task accuracy at most D below B's (0: not below)\n"
    "  --target-end-rate X   A's answers end with the end token at least X of the time\n"
    "  --target-rm-accuracy X  the reward model's held-out accuracy at least X (needs --reward and\n"
    "                        --workspace: the last valid/accuracy of the workspace's reward run\n"
    "                        whose checkpoint is --reward)\n";

typedef struct {
    // settings
    const char *a, *b, *prompts_path, *reward, *reference, *pretrain, *tokdir, *responses_path,
        *workspace, *name;
    int64_t samples, max_new, seed, bootstrap, batch, max_prompts;
    double temperature, judge_noise;
    int json;
    // targets (NAN: not set)
    double t_win, t_win_lo, t_acc_drop, t_end, t_rm_acc;
    // data
    Tokenizer *tok;
    int32_t eot;
    int64_t n_prompts, n_resp;          // R = n_prompts * samples answers per policy
    char **prompts;
    int *kind;                          // task kind per prompt, -1 unknown
    TokIds *prompt_ids;
    int64_t longest_prompt;
} Eval;

typedef struct {
    const char *dir;
    int32_t *tok;        // (R, max_new) generated tokens
    int32_t *len;        // (R) how many (the end token included when produced)
    char **text;         // (R) decoded answer (end token and the response prefix removed)
    int *correct;        // (R) task_check (0 for unknown prompts)
    double *rm, *kl;     // (R) or NULL
    double pretrain_loss;   // NAN when not measured
    int64_t pretrain_tokens;
} PolicyOut;

#define EFAIL(...)                                                                                 \
    do {                                                                                           \
        fprintf(stderr, "rlhf eval-policy: " __VA_ARGS__);                                         \
        fputc('\n', stderr);                                                                       \
        return -1;                                                                                 \
    } while (0)

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

static int load_prompts(Eval *e) {
    char *data, err[512];
    size_t len;
    if (cli_read_lines_file(e->prompts_path, &data, &len, err, sizeof err)) EFAIL("%s", err);
    size_t cap = 64;
    e->prompts = MALLOC_CHECK(cap * sizeof(char *));
    int64_t line = 0;
    int rc = 0;
    for (char *s = data; s && *s && !rc;) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        line++;
        size_t sp = strspn(s, " \t\r");
        if (s[sp]) {
            cJSON *j = cJSON_Parse(s);
            cJSON *p = j ? cJSON_GetObjectItemCaseSensitive(j, "prompt") : NULL;
            if (!cJSON_IsString(p) || !*p->valuestring) {
                fprintf(stderr, "rlhf eval-policy: %s:%lld: %s\n", e->prompts_path, (long long)line,
                        !j ? "invalid JSON"
                           : "expected an object with a non-empty \"prompt\" string");
                rc = -1;
            } else if (!e->max_prompts || e->n_prompts < e->max_prompts) {
                if ((size_t)e->n_prompts == cap) {
                    cap *= 2;
                    e->prompts = REALLOC_ARRAY(e->prompts, cap, sizeof(char *));
                }
                e->prompts[e->n_prompts++] = STRDUP_CHECK(p->valuestring);
            }
            cJSON_Delete(j);
        }
        s = nl ? nl + 1 : NULL;
    }
    free(data);
    if (rc) return -1;
    if (e->n_prompts == 0) EFAIL("%s holds no prompts", e->prompts_path);
    e->n_resp = e->n_prompts * e->samples;
    e->kind = MALLOC_CHECK((size_t)e->n_prompts * sizeof(int));
    for (int64_t i = 0; i < e->n_prompts; i++) {
        Task t;
        e->kind[i] = task_parse(e->prompts[i], &t) ? -1 : (int)t.kind;
    }
    return 0;
}

// Renders and tokenizes the prompts exactly as SFT trained on them (dataset.h).
static int encode_prompts(Eval *e) {
    char err[512];
    Dataset *ds;
    DatasetOptions o = {.max_tokens = 1 << 20};
    if (dataset_create(&ds, e->tok, &o, err, sizeof err)) EFAIL("%s", err);
    e->prompt_ids = CALLOC_CHECK((size_t)e->n_prompts, sizeof(TokIds));
    for (int64_t i = 0; i < e->n_prompts; i++) {
        if (dataset_encode_prompt(ds, e->prompts[i], &e->prompt_ids[i], err, sizeof err)) {
            dataset_free(ds);
            EFAIL("%s: prompt %lld: %s", e->prompts_path, (long long)i + 1, err);
        }
        if ((int64_t)e->prompt_ids[i].n > e->longest_prompt)
            e->longest_prompt = (int64_t)e->prompt_ids[i].n;
    }
    dataset_free(ds);
    return 0;
}

// Loads an LM checkpoint for batches of up to max_B x its context (no score head).
static int load_lm(const char *dir, Model *m, int max_B, const Eval *e, const char *role) {
    char err[512];
    ModelConfig c;
    if (ckpt_load_config(dir, &c, NULL, err, sizeof err)) EFAIL("%s: %s", role, err);
    if (!c.lm_head) EFAIL("%s: %s is a reward/value model without an LM head", role, dir);
    if (ckpt_check_tokenizer(dir, c.vocab_size, e->tokdir ? e->tokdir : e->a, tok_vocab_size(e->tok), err, sizeof err)) EFAIL("%s: %s", role, err);
    c.score_head = 0;
    if (model_init(m, &c, max_B, c.max_seq_len, 0, 0, err, sizeof err) ||
        ckpt_load_weights(dir, m, CKPT_IGNORE_SCORE, err, sizeof err)) {
        model_free(m);
        EFAIL("%s: %s", role, err);
    }
    return 0;
}

// Checks a policy's config before any work starts, so a wrong path fails at once.
static int check_lm(const char *dir, const Eval *e, const char *role) {
    char err[512];
    ModelConfig c;
    if (ckpt_load_config(dir, &c, NULL, err, sizeof err)) EFAIL("%s: %s", role, err);
    if (!c.lm_head) EFAIL("%s: %s is a reward/value model without an LM head", role, dir);
    if (e->longest_prompt + e->max_new > c.max_seq_len)
        EFAIL(
            "%s: a prompt of %lld tokens plus --max-new %lld exceeds the context of %d; lower --max-new",
            role, (long long)e->longest_prompt, (long long)e->max_new, c.max_seq_len);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Generation and measurements
// ---------------------------------------------------------------------------------------------

static int generate(const Eval *e, const Model *m, PolicyOut *po) {
    char err[512];
    int T = m->config.max_seq_len;
    if (e->longest_prompt + e->max_new > T)
        EFAIL(
            "%s: a prompt of %lld tokens plus --max-new %lld exceeds the context of %d; lower --max-new",
            po->dir, (long long)e->longest_prompt, (long long)e->max_new, T);
    int B = (int)e->batch, Tp = (int)e->longest_prompt, maxrows = B * (Tp < 256 ? Tp : 256);
    KVCache kv;
    if (kv_init(&kv, m, B, Tp + (int)e->max_new, maxrows, err, sizeof err))
        EFAIL("%s: %s", po->dir, err);
    Sampler s;
    sampler_init(&s, m->config.vocab_size);
    GenConfig g = {.max_new_tokens = (int)e->max_new, .eot_id = e->eot,
                   .sampler = {.temperature = (float)e->temperature, .top_k = 0, .top_p = 1.0f}};
    int64_t R = e->n_resp, MN = e->max_new;
    po->tok = MALLOC_CHECK((size_t)(R * MN) * sizeof(int32_t));
    po->len = MALLOC_CHECK((size_t)R * sizeof(int32_t));
    po->text = CALLOC_CHECK((size_t)R, sizeof(char *));
    po->correct = CALLOC_CHECK((size_t)R, sizeof(int));
    int32_t *pr = MALLOC_CHECK((size_t)B * Tp * sizeof(int32_t)), pl[B];
    int rc = 0;
    CliProgress prog;
    cli_progress_start(&prog, stderr, "generate", R);
    for (int64_t r0 = 0, bi = 0; r0 < R && !rc; r0 += B, bi++) {
        int nb = (int)(R - r0 < B ? R - r0 : B);
        for (int b = 0; b < nb; b++) {
            const TokIds *p = &e->prompt_ids[(r0 + b) / e->samples];
            pl[b] = (int32_t)p->n;
            memcpy(pr + (size_t)b * Tp, p->ids, p->n * sizeof(int32_t));
        }
        // the same random numbers for A and B: the batch's seed depends only on --seed and the
        // batch
        Rng rng;
        rng_init(&rng, data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, (uint64_t)e->seed),
                                                   (uint64_t)bi)));
        if (gen_generate(m, &kv, &s, &g, &rng, pr, pl, nb, Tp, po->tok + r0 * MN, po->len + r0,
                         NULL, NULL, err, sizeof err)) {
            fprintf(stderr, "rlhf eval-policy: %s: %s\n", po->dir, err);
            rc = -1;
        }
        cli_progress_update(&prog, r0 + nb, po->dir);
    }
    cli_progress_end(&prog);
    for (int64_t r = 0; r < R && !rc; r++) {
        int n = po->len[r];
        if (n > 0 && po->tok[r * MN + n - 1] == e->eot) n--;
        TokBytes tb = {0};
        if (tok_decode(e->tok, po->tok + r * MN, (size_t)n, &tb, err, sizeof err)) { fprintf(stderr, "rlhf eval-policy: %s\n", err); rc = -1; break; }
        const char *txt = tb.data ? tb.data : "";
        if (*txt == ' ') txt++;   // the response prefix
        po->text[r] = utf8_clean(txt, strlen(txt));
        tok_bytes_free(&tb);
        Task t;
        po->correct[r] = !task_parse(e->prompts[r / e->samples], &t) && task_check(&t, po->text[r]);
    }
    free(pr);
    sampler_free(&s);
    kv_free(&kv);
    return rc;
}

static int answer_ended(const Eval *e, const PolicyOut *po, int64_t r) {
    return po->len[r] > 0 && po->tok[r * e->max_new + po->len[r] - 1] == e->eot;
}

// Fills a batch of prompt+answer sequences for answers r0 .. r0+nb-1 of po. With targets, row t
// predicts token t+1 on the answer's positions only; inputs then exclude the last token. With
// close (no targets), an answer cut off by --max-new gets the end token appended (its last token
// replaced when the row would not fit T), as reward train scores every completion.
static int fill_rows(const Eval *e, const PolicyOut *po, int64_t r0, int nb, int with_targets,
                     int close, int32_t *tok, int32_t *tgt, int32_t *lens, int T) {
    int Tb = 0;
    for (int b = 0; b < nb; b++) {
        const TokIds *p = &e->prompt_ids[(r0 + b) / e->samples];
        int n = (int)p->n + po->len[r0 + b] - (with_targets ? 1 : 0);
        if (close && !answer_ended(e, po, r0 + b) && n < T) n++;
        if (n > Tb) Tb = n;
    }
    if (Tb > T) return -1;
    for (int b = 0; b < nb; b++) {
        const TokIds *p = &e->prompt_ids[(r0 + b) / e->samples];
        const int32_t *ans = po->tok + (r0 + b) * e->max_new;
        int P = (int)p->n, L = po->len[r0 + b], n = P + L - (with_targets ? 1 : 0);
        int add = close && !answer_ended(e, po, r0 + b);
        for (int t = 0; t < Tb; t++) {
            int32_t v = t < P ? p->ids[t] : t < P + L ? ans[t - P] : 0;
            tok[b * Tb + t] = t < n ? v : 0;
            if (with_targets)
                tgt[b * Tb + t] =
                    t >= P - 1 && t < n ? (t + 1 < P ? p->ids[t + 1] : ans[t + 1 - P]) : -1;
        }
        if (add && n < T) n++;
        if (add) tok[b * Tb + n - 1] = e->eot;
        lens[b] = n;
    }
    return Tb;
}

// Runs m on answers r0 .. r0+nb-1 of po: with tgt, prompt+answer predicting the answer's
// tokens (for log p); without, each answer closed by the end token (for the reward model's
// score). Returns the batch's time steps, or -1 with the message printed (what: "" or
// "reward model: ", whose: whose context it is).
static int forward_answers(const Eval *e, Model *m, const PolicyOut *po, int64_t r0, int nb,
                           int32_t *tok, int32_t *tgt, int32_t *lens, const char *what,
                           const char *whose) {
    char err[512];
    int T = m->config.max_seq_len;
    int Tb = fill_rows(e, po, r0, nb, tgt != NULL, tgt == NULL, tok, tgt, lens, T);
    if (Tb < 0) {
        fprintf(stderr, "rlhf eval-policy: an answer of %s is longer than %s context %d\n", po->dir,
                whose, T);
        return -1;
    }
    ModelBatch mb = {
        .B = nb, .T = Tb, .tokens = tok, .lengths = lens, .targets = tgt, .weights = NULL};
    if (model_forward(m, &mb, 0, err, sizeof err)) {
        fprintf(stderr, "rlhf eval-policy: %s%s\n", what, err);
        return -1;
    }
    return Tb;
}

// Sum over each answer's tokens of log p under m, into out[R].
static int answer_logp(const Eval *e, Model *m, const PolicyOut *po, double *out) {
    int B = (int)e->batch, T = m->config.max_seq_len;
    int32_t *tok = MALLOC_CHECK((size_t)B * T * sizeof(int32_t));
    int32_t *tgt = MALLOC_CHECK((size_t)B * T * sizeof(int32_t)), lens[B];
    float *lp = MALLOC_CHECK((size_t)B * T * sizeof(float));
    int rc = 0;
    for (int64_t r0 = 0; r0 < e->n_resp && !rc; r0 += B) {
        int nb = (int)(e->n_resp - r0 < B ? e->n_resp - r0 : B);
        int Tb = forward_answers(e, m, po, r0, nb, tok, tgt, lens, "", "the");
        if (Tb < 0) {
            rc = -1;
            break;
        }
        model_get_logp(m, lp);
        for (int b = 0; b < nb; b++) {
            double s = 0;
            for (int t = 0; t < Tb; t++)
                if (tgt[b * Tb + t] >= 0) s += lp[b * Tb + t];
            out[r0 + b] = s;
        }
    }
    free(tok);
    free(tgt);
    free(lp);
    return rc;
}

// Reward-model score of every answer: the scalar head at the last token of prompt + answer (the
// end token appended to an answer cut off by --max-new).
static int reward_scores(const Eval *e, Model *rm, PolicyOut *po) {
    int B = (int)e->batch, T = rm->config.max_seq_len;
    int32_t *tok = MALLOC_CHECK((size_t)B * T * sizeof(int32_t)), lens[B];
    float *val = MALLOC_CHECK((size_t)B * T * sizeof(float));
    po->rm = MALLOC_CHECK((size_t)e->n_resp * sizeof(double));
    int rc = 0;
    for (int64_t r0 = 0; r0 < e->n_resp && !rc; r0 += B) {
        int nb = (int)(e->n_resp - r0 < B ? e->n_resp - r0 : B);
        int Tb = forward_answers(e, rm, po, r0, nb, tok, NULL, lens, "reward model: ",
                                 "the reward model's");
        if (Tb < 0) {
            rc = -1;
            break;
        }
        model_get_values(rm, val);
        for (int b = 0; b < nb; b++) po->rm[r0 + b] = val[b * Tb + lens[b] - 1];
    }
    free(tok);
    free(val);
    return rc;
}

// Pretraining text as the token stream PPO-ptx and sft train on: each <|endoftext|>-separated
// document encoded, followed by the end token; empty documents skipped.
static int encode_text(const Eval *e, int32_t **ids, size_t *n) {
    char *data, err[512];
    size_t len;
    if (cli_read_file(e->pretrain, &data, &len, err, sizeof err)) EFAIL("%s", err);
    TokIds out = {0};
    static const char sep[] = "<|endoftext|>";
    for (char *s = data; s;) {
        char *nx = strstr(s, sep);
        size_t k = nx ? (size_t)(nx - s) : strlen(s);
        if (strspn(s, " \t\r\n") < k) {
            if (tok_encode(e->tok, s, k, 0, &out, err, sizeof err)) { free(data); tok_ids_free(&out); EFAIL("%s: %s", e->pretrain, err); }
            if (out.n + 1 > out.cap) {
                out.cap = out.cap * 2 + 16;
                out.ids = REALLOC_ARRAY(out.ids, out.cap, sizeof(int32_t));
            }
            out.ids[out.n++] = e->eot;
        }
        s = nx ? nx + sizeof sep - 1 : NULL;
    }
    free(data);
    if (out.n < 2) { tok_ids_free(&out); EFAIL("%s: need at least 2 tokens of text", e->pretrain); }
    *ids = out.ids; *n = out.n;
    return 0;
}

// Mean next-token loss over consecutive windows of the context (as `rlhf eval` computes it).
static int text_loss(const Eval *e, Model *m, const int32_t *ids, size_t n, double *loss) {
    char err[512];
    int64_t W = (int64_t)n - 1 < m->config.max_seq_len ? (int64_t)n - 1 : m->config.max_seq_len;
    double total = 0;
    int rc = rlhf_window_loss(m, ids, n, W, e->batch, NULL, &total, err, sizeof err);
    if (rc) fprintf(stderr, "rlhf eval-policy: %s\n", err);
    *loss = total / (double)(n - 1);
    return rc;
}

// Loads a policy, generates its answers, and measures what needs its weights.
static int run_policy(const Eval *e, PolicyOut *po, const char *role, Model *ref,
                      const int32_t *text, size_t ntext) {
    Model m;
    if (load_lm(po->dir, &m, (int)e->batch, e, role)) return -1;
    int rc = generate(e, &m, po);
    if (!rc && ref) {
        po->kl = MALLOC_CHECK((size_t)e->n_resp * sizeof(double));
        double *lr = MALLOC_CHECK((size_t)e->n_resp * sizeof(double));
        rc = answer_logp(e, &m, po, po->kl) || answer_logp(e, ref, po, lr);
        for (int64_t r = 0; !rc && r < e->n_resp; r++) po->kl[r] -= lr[r];
        free(lr);
    }
    po->pretrain_loss = NAN;
    if (!rc && text) {
        rc = text_loss(e, &m, text, ntext, &po->pretrain_loss);
        po->pretrain_tokens = (int64_t)ntext;
    }
    model_free(&m);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Statistics and reports
// ---------------------------------------------------------------------------------------------

typedef struct {
    int64_t a_wins, b_wins, ties;
    double win_rate, lo, hi;
    double *outcome;     // (R) 1, 0.5 or 0
} Verdict;

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

static void judge_all(const Eval *e, const PolicyOut *A, const PolicyOut *B, Verdict *v) {
    memset(v, 0, sizeof *v);
    v->outcome = MALLOC_CHECK((size_t)e->n_resp * sizeof(double));
    double sum = 0;
    for (int64_t r = 0; r < e->n_resp; r++) {
        const char *pair[2] = {A->text[r], B->text[r]};
        int rank[2], ended[2] = {answer_ended(e, A, r), answer_ended(e, B, r)};
        task_rank(e->prompts[r / e->samples], pair, ended, 2, e->judge_noise, (uint64_t)e->seed,
                  rank);
        double o = rank[0] < rank[1] ? 1.0 : rank[0] > rank[1] ? 0.0 : 0.5;
        v->outcome[r] = o;
        if (o == 1.0) v->a_wins++; else if (o == 0.0) v->b_wins++; else v->ties++;
        sum += o;
    }
    v->win_rate = sum / (double)e->n_resp;
    // percentile bootstrap over prompts (a prompt's samples stay together)
    int64_t P = e->n_prompts, S = e->samples;
    double *per = MALLOC_CHECK((size_t)P * sizeof(double)),
           *stat = MALLOC_CHECK((size_t)e->bootstrap * sizeof(double));
    for (int64_t p = 0; p < P; p++) {
        double s = 0;
        for (int64_t k = 0; k < S; k++) s += v->outcome[p * S + k];
        per[p] = s / (double)S;
    }
    Rng rng;
    rng_init(&rng, data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, (uint64_t)e->seed),
                                               0xb0075ull)));
    for (int64_t i = 0; i < e->bootstrap; i++) {
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += per[rng_below(&rng, (uint64_t)P)];
        stat[i] = s / (double)P;
    }
    qsort(stat, (size_t)e->bootstrap, sizeof(double), cmp_double);
    int64_t lo = (int64_t)floor(0.025 * (double)(e->bootstrap - 1)),
            hi = (int64_t)ceil(0.975 * (double)(e->bootstrap - 1));
    v->lo = stat[lo];
    v->hi = stat[hi];
    free(per); free(stat);
}

typedef struct {
    double accuracy, reward, kl, pretrain_loss, tokens, end_rate;
    double acc_kind[TASK_NUM_KINDS];
    int64_t n_kind[TASK_NUM_KINDS], n_known;
} Summary;

static void summarise(const Eval *e, const PolicyOut *po, Summary *s) {
    memset(s, 0, sizeof *s);
    double rm = 0, kl = 0, tokens = 0, ended = 0, correct = 0;
    for (int64_t r = 0; r < e->n_resp; r++) {
        int k = e->kind[r / e->samples];
        if (k >= 0) {
            s->n_kind[k]++;
            s->acc_kind[k] += po->correct[r];
            s->n_known++;
            correct += po->correct[r];
        }
        if (po->rm) rm += po->rm[r];
        if (po->kl) kl += po->kl[r];
        tokens += po->len[r];
        ended += answer_ended(e, po, r);
    }
    double R = (double)e->n_resp;
    for (int k = 0; k < TASK_NUM_KINDS; k++)
        s->acc_kind[k] = s->n_kind[k] ? s->acc_kind[k] / (double)s->n_kind[k] : NAN;
    s->accuracy = s->n_known ? correct / (double)s->n_known : NAN;
    s->reward = po->rm ? rm / R : NAN;
    s->kl = po->kl ? kl / R : NAN;
    s->pretrain_loss = po->pretrain_loss;
    s->tokens = tokens / R;
    s->end_rate = ended / R;
}

static void print_row(const char *label, double a, double b, int decimals) {
    char x[32], y[32];
    if (isnan(a)) snprintf(x, sizeof x, "-"); else snprintf(x, sizeof x, "%.*f", decimals, a);
    if (isnan(b)) snprintf(y, sizeof y, "-"); else snprintf(y, sizeof y, "%.*f", decimals, b);
    printf("  %-28s %10s %10s\n", label, x, y);
}

static void print_table(const Eval *e, const Verdict *v, const Summary *sa, const Summary *sb) {
    printf("eval-policy: A = %s, B = %s\n", e->a, e->b);
    char how[64];
    if (e->temperature > 0) snprintf(how, sizeof how, "sampled at temperature %g", e->temperature);
    else snprintf(how, sizeof how, "greedy");
    printf(
        "  %lld prompts x %lld answer(s) each, %s, at most %lld new tokens, seed %lld, judge noise %g\n",
        (long long)e->n_prompts, (long long)e->samples, how, (long long)e->max_new,
        (long long)e->seed, e->judge_noise);
    printf("  %-28s %10s %10s\n", "", "A", "B");
    printf("  %-28s %10.3f   95%% CI [%.3f, %.3f]  (A %lld, B %lld, ties %lld)\n",
           "judge: A preferred to B", v->win_rate, v->lo, v->hi, (long long)v->a_wins,
           (long long)v->b_wins, (long long)v->ties);
    if (e->reward) print_row("reward-model score", sa->reward, sb->reward, 4);
    if (e->reference) print_row("KL to reference", sa->kl, sb->kl, 4);
    print_row("task accuracy", sa->accuracy, sb->accuracy, 3);
    for (int k = 0; k < TASK_NUM_KINDS; k++) {
        if (!sa->n_kind[k]) continue;
        char lab[64];
        snprintf(lab, sizeof lab, "  %s (%lld)", task_kind_name(k), (long long)sa->n_kind[k]);
        print_row(lab, sa->acc_kind[k], sb->acc_kind[k], 3);
    }
    if (e->pretrain) {
        print_row("pretraining loss", sa->pretrain_loss, sb->pretrain_loss, 4);
        printf("  %-28s %10.4f\n", "  ratio A/B (alignment tax)",
               sa->pretrain_loss / sb->pretrain_loss);
    }
    print_row("answer tokens (mean)", sa->tokens, sb->tokens, 2);
    print_row("ended with the end token", sa->end_rate, sb->end_rate, 3);
}

static void json_num(cJSON *o, const char *k, double v) {
    if (isnan(v)) cJSON_AddNullToObject(o, k); else cJSON_AddNumberToObject(o, k, v);
}

static cJSON *json_policy(const char *dir, const Summary *s) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "checkpoint", dir);
    json_num(o, "reward", s->reward);
    json_num(o, "kl", s->kl);
    json_num(o, "accuracy", s->accuracy);
    cJSON *k = cJSON_AddObjectToObject(o, "accuracy_by_task");
    for (int i = 0; i < TASK_NUM_KINDS; i++)
        if (s->n_kind[i]) json_num(k, task_kind_name(i), s->acc_kind[i]);
    json_num(o, "pretrain_loss", s->pretrain_loss);
    json_num(o, "answer_tokens", s->tokens);
    json_num(o, "end_rate", s->end_rate);
    return o;
}

static void print_json(const Eval *e, const Verdict *v, const Summary *sa, const Summary *sb) {
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompts", (double)e->n_prompts);
    cJSON_AddNumberToObject(o, "samples", (double)e->samples);
    cJSON_AddNumberToObject(o, "comparisons", (double)e->n_resp);
    cJSON_AddNumberToObject(o, "win_rate", v->win_rate);
    cJSON *ci = cJSON_AddArrayToObject(o, "win_rate_ci");
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(v->lo));
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(v->hi));
    cJSON_AddNumberToObject(o, "a_wins", (double)v->a_wins);
    cJSON_AddNumberToObject(o, "b_wins", (double)v->b_wins);
    cJSON_AddNumberToObject(o, "ties", (double)v->ties);
    cJSON_AddItemToObject(o, "a", json_policy(e->a, sa));
    cJSON_AddItemToObject(o, "b", json_policy(e->b, sb));
    if (e->pretrain) json_num(o, "pretrain_loss_ratio", sa->pretrain_loss / sb->pretrain_loss);
    cJSON *st = cJSON_AddObjectToObject(o, "settings");
    cJSON_AddNumberToObject(st, "temperature", e->temperature);
    cJSON_AddNumberToObject(st, "max_new", (double)e->max_new);
    cJSON_AddNumberToObject(st, "seed", (double)e->seed);
    cJSON_AddNumberToObject(st, "judge_noise", e->judge_noise);
    cJSON_AddNumberToObject(st, "bootstrap", (double)e->bootstrap);
    char *s = cJSON_PrintUnformatted(o);
    printf("%s\n", s);
    cJSON_free(s);
    cJSON_Delete(o);
}

static int write_responses(const Eval *e, const PolicyOut *A, const PolicyOut *B,
                           const Verdict *v) {
    FILE *f = fopen(e->responses_path, "wb");
    if (!f) EFAIL("%s: cannot write", e->responses_path);
    for (int64_t r = 0; r < e->n_resp; r++) {
        int64_t p = r / e->samples;
        cJSON *o = cJSON_CreateObject();
        char *pc = utf8_clean(e->prompts[p], strlen(e->prompts[p]));
        cJSON_AddStringToObject(o, "prompt", pc);
        free(pc);
        cJSON_AddStringToObject(o, "task", task_kind_name(e->kind[p]));
        cJSON_AddStringToObject(o, "a", A->text[r]);
        cJSON_AddStringToObject(o, "b", B->text[r]);
        cJSON_AddBoolToObject(o, "a_correct", A->correct[r]);
        cJSON_AddBoolToObject(o, "b_correct", B->correct[r]);
        cJSON_AddStringToObject(o, "preferred",
                                v->outcome[r] == 1.0   ? "a"
                                : v->outcome[r] == 0.0 ? "b"
                                                       : "tie");
        if (A->rm) {
            cJSON_AddNumberToObject(o, "a_reward", A->rm[r]);
            cJSON_AddNumberToObject(o, "b_reward", B->rm[r]);
        }
        char *s = cJSON_PrintUnformatted(o);
        fprintf(f, "%s\n", s);
        cJSON_free(s);
        cJSON_Delete(o);
    }
    int bad = ferror(f);
    if (fclose(f) || bad) EFAIL("%s: write error", e->responses_path);
    return 0;
}

static int add_metrics(Store *db, int64_t run, const char *who, const Summary *s, char *err,
                       size_t errlen) {
    char name[96];
#define M(n, v)                                                                                    \
    do {                                                                                           \
        snprintf(name, sizeof name, "%s/%s", who, n);                                              \
        if (!isnan(v) && store_add_metric(db, run, 0, name, (v), err, errlen)) return -1;          \
    } while (0)
    M("reward", s->reward);
    M("kl", s->kl);
    M("accuracy", s->accuracy);
    for (int k = 0; k < TASK_NUM_KINDS; k++) {
        char n[64];
        snprintf(n, sizeof n, "accuracy/%s", task_kind_name(k));
        if (s->n_kind[k]) M(n, s->acc_kind[k]);
    }
    M("pretrain_loss", s->pretrain_loss);
    M("answer_tokens", s->tokens);
    M("end_rate", s->end_rate);
#undef M
    return 0;
}

static int record(const Eval *e, int argc, char **argv, const Verdict *v, const Summary *sa,
                  const Summary *sb) {
    char err[512];
    Store *db;
    if (store_open(&db, e->workspace, err, sizeof err)) EFAIL("%s", err);
    size_t cap = 64;
    for (int i = 0; i < argc; i++) cap += strlen(argv[i]) + 3;
    char *prog = MALLOC_CHECK(cap);
    strcpy(prog, "rlhf eval-policy");
    for (int i = 0; i < argc; i++) { strcat(prog, " "); strcat(prog, argv[i]); }
    StoreRunInfo info = {
        .stage = "eval", .name = e->name, .program = prog, .config = prog, .checkpoint = e->a};
    int64_t run;
    int rc = store_add_run(db, &info, &run, err, sizeof err);
    if (!rc) rc = store_begin(db, err, sizeof err);
    if (!rc) {
        rc = store_add_metric(db, run, 0, "win_rate", v->win_rate, err, sizeof err) ||
             store_add_metric(db, run, 0, "win_rate_lo", v->lo, err, sizeof err) ||
             store_add_metric(db, run, 0, "win_rate_hi", v->hi, err, sizeof err) ||
             store_add_metric(db, run, 0, "a_wins", (double)v->a_wins, err, sizeof err) ||
             store_add_metric(db, run, 0, "b_wins", (double)v->b_wins, err, sizeof err) ||
             store_add_metric(db, run, 0, "ties", (double)v->ties, err, sizeof err) ||
             store_add_metric(db, run, 0, "comparisons", (double)e->n_resp, err, sizeof err) ||
             add_metrics(db, run, "a", sa, err, sizeof err) ||
             add_metrics(db, run, "b", sb, err, sizeof err) ||
             (e->pretrain &&
              store_add_metric(db, run, 0, "pretrain_loss_ratio",
                               sa->pretrain_loss / sb->pretrain_loss, err, sizeof err));
        if (rc) store_rollback(db, NULL, 0);
        else rc = store_commit(db, err, sizeof err);
        char e2[512];
        if (store_set_run_status(db, run, rc ? STORE_RUN_FAILED : STORE_RUN_DONE, rc ? 1 : 0, e2,
                                 sizeof e2) &&
            !rc) {
            snprintf(err, sizeof err, "%s", e2);
            rc = -1;
        }
    }
    free(prog);
    store_close(db);
    if (rc) EFAIL("%s", err);
    if (!e->json)
        printf("  recorded as run %lld (stage eval) in %s\n", (long long)run, e->workspace);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------------

typedef struct {
    char path[4096];     // the reward checkpoint, resolved
    int64_t run;         // newest finished reward run with that checkpoint
} RmFind;

static int find_rm_run(const StoreRun *r, void *ctx) {
    RmFind *f = ctx;
    char p[4096];
    if (r->status == STORE_RUN_DONE && r->checkpoint && realpath(r->checkpoint, p) &&
        !strcmp(p, f->path))
        f->run = r->id;
    return 0;
}

static int last_metric(const StoreMetric *m, void *ctx) {
    double *v = ctx;
    v[0] = m->value;   // by step: the last one stays
    v[1] = 1;
    return 0;
}

// The held-out accuracy of the reward model --reward: the last valid/accuracy of the newest
// finished reward run of the workspace whose checkpoint is that directory.
static int rm_heldout_accuracy(const Eval *e, double *acc) {
    char err[512];
    RmFind f = {.run = 0};
    if (!realpath(e->reward, f.path)) EFAIL("--reward %s: no such directory", e->reward);
    Store *db;
    if (store_open(&db, e->workspace, err, sizeof err)) EFAIL("%s", err);
    double v[2] = {NAN, 0};
    int rc = store_each_run(db, "reward", find_rm_run, &f, err, sizeof err) < 0;
    if (!rc && f.run)
        rc = store_each_metric(db, f.run, "valid/accuracy", last_metric, v, err, sizeof err) < 0;
    store_close(db);
    if (rc) EFAIL("%s", err);
    if (!f.run)
        EFAIL("--target-rm-accuracy: %s records no finished reward run whose checkpoint is %s",
              e->workspace, e->reward);
    if (!v[1])
        EFAIL(
            "--target-rm-accuracy: reward run %lld in %s has no held-out accuracy (valid/accuracy)",
            (long long)f.run, e->workspace);
    *acc = v[0];
    return 0;
}

// One target, met when value >= target (> when strict): prints "figure value op target ok|MISSED"
// (when print), and on a miss appends the reason to why.
static int check_target(int print, const char *figure, double value, double target, int strict,
                        char *why, size_t n) {
    const char *op = strict ? ">" : ">=";
    int ok = strict ? value > target : value >= target;   // false for NaN
    if (print)
        printf("  %-28s %10.3f %-2s %.3f  %s\n", figure, value, op, target, ok ? "ok" : "MISSED");
    if (!ok) {
        size_t l = strlen(why);
        snprintf(why + l, n - l, "%s%s %.3f, target %s %.3f", l ? "; " : "",
                 figure + strspn(figure, " "), value, op, target);
    }
    return ok;
}

// Every target set, against its figure (printed unless --json, whose output stays one object).
// 0 when all are met (or none is set), 1 when one is missed (the reasons in why).
static int check_targets(const Eval *e, const Verdict *v, const Summary *sa, const Summary *sb,
                         double rm_acc, char *why, size_t n) {
    why[0] = 0;
    if (isnan(e->t_win) && isnan(e->t_win_lo) && isnan(e->t_acc_drop) && isnan(e->t_end) &&
        isnan(e->t_rm_acc))
        return 0;
    int ok = 1, p = !e->json;
    if (p) printf("targets:\n");
    if (!isnan(e->t_win))
        ok &= check_target(p, "A preferred to B", v->win_rate, e->t_win, 0, why, n);
    if (!isnan(e->t_win_lo))
        ok &= check_target(p, "  its 95% interval's low end", v->lo, e->t_win_lo, 1, why, n);
    if (!isnan(e->t_acc_drop))
        ok &= check_target(p, "task accuracy of A", sa->accuracy, sb->accuracy - e->t_acc_drop, 0,
                           why, n);
    if (!isnan(e->t_end))
        ok &= check_target(p, "A's end-token rate", sa->end_rate, e->t_end, 0, why, n);
    if (!isnan(e->t_rm_acc))
        ok &= check_target(p, "reward-model accuracy", rm_acc, e->t_rm_acc, 0, why, n);
    if (p) printf("%s\n", ok ? "targets: all met" : "targets: MISSED (alignment failed)");
    return ok ? 0 : 1;
}

// The reward model of --reward: a score head, the tokenizer of the policies.
static int load_reward_model(const Eval *e, Model *rm) {
    char err[512];
    ModelConfig c;
    if (ckpt_load_config(e->reward, &c, NULL, err, sizeof err)) EFAIL("--reward: %s", err);
    if (!c.score_head) EFAIL("--reward: %s has no score head (score.weight)", e->reward);
    if (ckpt_check_tokenizer(e->reward, c.vocab_size, e->tokdir ? e->tokdir : e->a,
                             tok_vocab_size(e->tok), err, sizeof err))
        EFAIL("--reward: %s", err);
    c.lm_head = 0;
    if (model_init(rm, &c, (int)e->batch, c.max_seq_len, 0, 0, err, sizeof err) ||
        ckpt_load_weights(e->reward, rm, 0, err, sizeof err)) {
        model_free(rm);
        EFAIL("--reward: %s", err);
    }
    return 0;
}

// The verdict and summaries printed, the answers written, the run recorded, the targets checked
// (*missed: one was missed).
static int report(const Eval *e, const PolicyOut *A, const PolicyOut *B, double rm_acc, int argc,
                  char **argv, int *missed) {
    Verdict v;
    Summary sa, sb;
    judge_all(e, A, B, &v);
    summarise(e, A, &sa);
    summarise(e, B, &sb);
    if (e->json) print_json(e, &v, &sa, &sb);
    else print_table(e, &v, &sa, &sb);
    fflush(stdout);
    int rc = 0;
    if (e->responses_path) rc = write_responses(e, A, B, &v);
    if (!rc && e->workspace) rc = record(e, argc, argv, &v, &sa, &sb);
    char why[1024];
    if (!rc && check_targets(e, &v, &sa, &sb, rm_acc, why, sizeof why)) {
        fflush(stdout);
        fprintf(stderr, "rlhf eval-policy: alignment failed: %s\n", why);
        *missed = 1;
    }
    free(v.outcome);
    return rc;
}

static void policy_free(const Eval *e, PolicyOut *po) {
    if (po->text) for (int64_t r = 0; r < e->n_resp; r++) free(po->text[r]);
    free(po->text); free(po->tok); free(po->len); free(po->correct); free(po->rm); free(po->kl);
}

int cmd_eval_policy(int argc, char **argv) {
    Eval e = {.samples = 1, .max_new = 48, .seed = 1234, .bootstrap = 2000, .batch = 16,
              .temperature = 1.0, .name = "eval-policy", .t_win = NAN, .t_win_lo = NAN,
              .t_acc_drop = NAN, .t_end = NAN, .t_rm_acc = NAN};
    int status;
    CliOption opts[] = {
        CLI_STRING("--a", &e.a, .required = 1),
        CLI_STRING("--b", &e.b, .required = 1),
        CLI_STRING("--prompts", &e.prompts_path, .required = 1),
        CLI_STRING("--reward", &e.reward),
        CLI_STRING("--reference", &e.reference),
        CLI_STRING("--pretrain-text", &e.pretrain),
        CLI_STRING("--tokenizer", &e.tokdir),
        CLI_STRING("--responses", &e.responses_path),
        CLI_STRING("--workspace", &e.workspace),
        CLI_STRING("--name", &e.name),
        CLI_INT("--samples", &e.samples, 1, 1000),
        CLI_INT("--max-new", &e.max_new, 1, 1 << 16),
        CLI_INT("--seed", &e.seed, 0, INT64_MAX),
        CLI_INT("--bootstrap", &e.bootstrap, 10, 1000000),
        CLI_INT("--batch", &e.batch, 1, 1024),
        CLI_INT("--max-prompts", &e.max_prompts, 1, INT64_MAX),
        CLI_DOUBLE("--temperature", &e.temperature, 0, 100),
        CLI_DOUBLE("--judge-noise", &e.judge_noise, 0, TASK_MAX_NOISE),
        CLI_DOUBLE("--target-win-rate", &e.t_win, 0, 1),
        CLI_DOUBLE("--target-win-lo", &e.t_win_lo, 0, 1),
        CLI_DOUBLE("--target-accuracy-drop", &e.t_acc_drop, 0, 1),
        CLI_DOUBLE("--target-end-rate", &e.t_end, 0, 1),
        CLI_DOUBLE("--target-rm-accuracy", &e.t_rm_acc, 0, 1),
        CLI_CONST("--greedy", &e.temperature, 0),
        CLI_FLAG("--json", &e.json),
        {0}};
    CliCommand cmd = {.prog = "rlhf eval-policy", .usage = ep_usage, .opts = opts};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!isnan(e.t_rm_acc) && (!e.reward || !e.workspace)) {
        fprintf(stderr, "rlhf eval-policy: --target-rm-accuracy needs --reward and --workspace "
                        "(where its held-out accuracy is recorded)\n");
        return 2;
    }

    char err[512];
    if (tok_load(&e.tok, e.tokdir ? e.tokdir : e.a, err, sizeof err)) {
        fprintf(stderr, "rlhf eval-policy: %s\n", err);
        return 1;
    }
    e.eot = tok_eot(e.tok);
    int rc = 0;
    if (e.eot < 0) {
        fprintf(stderr, "rlhf eval-policy: the tokenizer has no <|endoftext|> token\n");
        rc = -1;
    }
    if (!rc) rc = load_prompts(&e);
    if (!rc) rc = encode_prompts(&e);
    if (!rc)
        rc = check_lm(e.a, &e, "--a") || check_lm(e.b, &e, "--b") ||
             (e.reference && check_lm(e.reference, &e, "--reference"));
    int32_t *text = NULL;
    size_t ntext = 0;
    if (!rc && e.pretrain) rc = encode_text(&e, &text, &ntext);
    Model ref = {0}, rm = {0};
    int have_ref = 0, have_rm = 0;
    if (!rc && e.reference) {
        rc = load_lm(e.reference, &ref, (int)e.batch, &e, "--reference");
        have_ref = !rc;
    }
    if (!rc && e.reward) {
        rc = load_reward_model(&e, &rm);
        have_rm = !rc;
    }
    double rm_acc = NAN;
    if (!rc && !isnan(e.t_rm_acc)) rc = rm_heldout_accuracy(&e, &rm_acc);
    PolicyOut A = {.dir = e.a}, B = {.dir = e.b};
    int missed = 0;
    if (!rc) rc = run_policy(&e, &A, "--a", have_ref ? &ref : NULL, text, ntext);
    if (!rc) rc = run_policy(&e, &B, "--b", have_ref ? &ref : NULL, text, ntext);
    if (!rc && have_rm) rc = reward_scores(&e, &rm, &A) || reward_scores(&e, &rm, &B);
    if (!rc) rc = report(&e, &A, &B, rm_acc, argc, argv, &missed);
    policy_free(&e, &A);
    policy_free(&e, &B);
    if (have_ref) model_free(&ref);
    if (have_rm) model_free(&rm);
    free(text);
    for (int64_t i = 0; i < e.n_prompts; i++) { free(e.prompts[i]); if (e.prompt_ids) tok_ids_free(&e.prompt_ids[i]); }
    free(e.prompts); free(e.prompt_ids); free(e.kind);
    tok_free(e.tok);
    return rc || missed ? 1 : 0;
}
