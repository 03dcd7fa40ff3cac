// rlhf eval-policy: the final evaluation of the demo (and of any two policies): on held-out
// prompts, each policy answers; a judge compares the answers pairwise (win rate of A over B,
// ties split, with a bootstrap 95% interval over prompts); optionally a gold-score program
// scores them, the reward model scores them, their KL to a reference model is measured, and each
// policy's loss on pretraining text shows the alignment tax. The judge is the demo's (task_rank,
// data/demo/tasks.h, which knows only the demo's tasks and so refuses other prompts) or an
// external program speaking reward label's judge protocol (--judge), asked about every pair in
// both orders to cancel position bias. Task accuracy comes from data/demo/tasks.h, on the
// prompts that are demo tasks.
//
// Recipe: parse, load the tokenizer and prompts, then per policy: load, generate, measure (KL,
// pretraining loss), free; then score with the reward model, judge, score with --score,
// bootstrap, print, record.
// A and B sample with the same random numbers (the batch seeds depend only on --seed and the
// batch), so a policy compared with itself gives identical answers: exactly 50%.
#include "chat.h"
#include "adapter.h"
#include "checkpoint.h"
#include "cli.h"
#include "commands.h"
#include "data.h"
#include "dataset.h"
#include "extprog.h"
#include "generate.h"
#include "model.h"
#include "reward.h"
#include "store.h"
#include "tasks.h"
#include "tokenizer.h"
#include "utf8.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
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
    "bootstrap 95% interval over prompts), task accuracy on the prompts that are demo tasks, mean\n"
    "response length and end-token rate, and with the options below a gold score, the mean\n"
    "reward-model score, the KL to a reference and the loss on pretraining text.\n"
    "  --judge CMD           judge with a program (run once by /bin/sh) speaking reward label's judge\n"
    "                        protocol: one JSON line {\"prompt_id\", \"prompt\", \"completions\": [X, Y],\n"
    "                        \"ended\": [..]} per pair on stdin, one answer line (1>2, 2>1, 1=2,\n"
    "                        [1,2], {\"ranking\": ..}, or skip = a tie) on stdout. Each pair is asked\n"
    "                        twice, A first then B first: A wins when preferred in both orders, B\n"
    "                        when it is, a tie otherwise. Without --judge the demo's judge ranks,\n"
    "                        which knows only the demo's tasks: other prompts are then an error\n"
    "  --score CMD           gold score: CMD (run once by /bin/sh) gets one JSON line {\"prompt\": P,\n"
    "                        \"completion\": C} per answer (A's, then B's) on stdin and prints one\n"
    "                        number per line on stdout; each policy's mean and A - B with a paired\n"
    "                        bootstrap 95% interval over prompts\n"
    "  --judge-timeout S     seconds --judge or --score may go without reading or answering\n"
    "                        (default 60)\n"
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
    "  --judge-noise P       the demo judge's label noise (default 0: the noiseless judge)\n"
    "  --seed S              sampling, noise and bootstrap seed (default 1234)\n"
    "  --bootstrap N         bootstrap resamples (default 2000)\n"
    "  --batch B             answers generated / scored together (default 16)\n"
    "  --precision P         weights the policies sample with and --reward scores with: fp32\n"
    "                        (default), bf16 or int8 (KL and pretraining loss stay fp32)\n"
    "  --max-prompts N       use only the first N prompts\n"
    "  --tokenizer DIR       tokenizer when A's checkpoint has none\n"
    "  --chat-template T     chat template for message-list prompts instead of the tokenizer's\n"
    "                        tokenizer_config.json one (a file, or inline text)\n"
    "  --responses FILE      also write every answer as JSONL, one line per prompt and policy, with\n"
    "                        AlpacaEval's fields (instruction, output, generator = the checkpoint,\n"
    "                        dataset = the prompts file's name) and its grades\n"
    "  --workspace DB        record a run (stage \"eval\") and every figure as a metric in DB\n"
    "  --name NAME           the recorded run's name (default eval-policy)\n"
    "  --json                print one JSON object instead of the table\n"
    "More than 20% of ties is warned about (stderr and the output): the judge then tells little.\n"
    "Targets (each optional; with any of them each figure is printed against its target, unless\n"
    "--json, and the command exits 1, naming each miss, when one is missed: a failed alignment\n"
    "fails the pipeline):\n"
    "  --target-win-rate X   A preferred to B at least X\n"
    "  --target-win-lo X     the 95% interval's lower end above X\n"
    "  --target-score-gain X A's mean gold score minus B's at least X (needs --score)\n"
    "  --target-accuracy-drop D  A's task accuracy at most D below B's (0: not below; needs demo tasks)\n"
    "  --target-end-rate X   A's answers end with the end token at least X of the time\n"
    "  --target-rm-accuracy X  the reward model's held-out accuracy at least X (needs --reward and\n"
    "                        --workspace: the last valid/accuracy of the workspace's reward run\n"
    "                        whose checkpoint is --reward)\n";

typedef struct {
    // settings
    const char *a, *b, *prompts_path, *reward, *reference, *pretrain, *tokdir, *responses_path,
        *workspace, *name, *judge, *score, *tmpl;
    int64_t samples, max_new, seed, bootstrap, batch, max_prompts;
    double temperature, judge_noise, timeout;
    int json;
    // targets (NAN: not set)
    double t_win, t_win_lo, t_acc_drop, t_end, t_rm_acc, t_gain;
    // data
    Tokenizer *tok;
    int32_t eot;
    ChatTemplate *chat;                 // A's chat template (or --chat-template), NULL: none
    GenConfig stops;                    // eot_id and the chat's stop ids (chat_stop_ids)
    int64_t n_prompts, n_resp;          // R = n_prompts * samples answers per policy
    char **prompts;
    int64_t *line;                      // each prompt's line in --prompts
    int *kind;                          // task kind per prompt, -1 unknown
    int64_t n_demo;                     // prompts that are demo tasks (kind >= 0)
    TokIds *prompt_ids;
    int64_t longest_prompt;
    LowpFormat prec;                    // --precision: sampling copies, reward-model weights
} Eval;

typedef struct {
    const char *dir;
    int32_t *tok;        // (R, max_new) generated tokens
    int32_t *len;        // (R) how many (the end token included when produced)
    char **text;         // (R) decoded answer (end token and the response prefix removed)
    int *correct;        // (R) task_check (0 for unknown prompts)
    double *rm, *kl;     // (R) or NULL
    double *score;       // (R) the --score program's, or NULL
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
    Dataset *ds;   // renders and tokenizes the prompts exactly as SFT trained on them (dataset.h)
    DatasetOptions o = {.max_tokens = 1 << 20, .chat = e->chat};
    if (dataset_create(&ds, e->tok, &o, err, sizeof err)) EFAIL("%s", err);
    if (cli_read_lines_file(e->prompts_path, &data, &len, err, sizeof err)) {
        dataset_free(ds);
        EFAIL("%s", err);
    }
    size_t cap = 64;
    e->prompts = MALLOC_CHECK(cap * sizeof(char *));
    e->line = MALLOC_CHECK(cap * sizeof(int64_t));
    e->prompt_ids = MALLOC_CHECK(cap * sizeof(TokIds));
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
            if (!j || (cJSON_IsString(p) && !*p->valuestring)) {
                fprintf(stderr, "rlhf eval-policy: %s:%lld: %s\n", e->prompts_path, (long long)line,
                        !j ? "invalid JSON"
                           : "expected an object with a non-empty \"prompt\" string");
                rc = -1;
            } else if (!e->max_prompts || e->n_prompts < e->max_prompts) {
                if ((size_t)e->n_prompts == cap) {
                    cap *= 2;
                    e->prompts = REALLOC_ARRAY(e->prompts, cap, sizeof(char *));
                    e->line = REALLOC_ARRAY(e->line, cap, sizeof(int64_t));
                    e->prompt_ids = REALLOC_ARRAY(e->prompt_ids, cap, sizeof(TokIds));
                }
                // a string, or a message list (dataset_prompt_json)
                char where[600], *text;
                snprintf(where, sizeof where, "%s:%lld", e->prompts_path, (long long)line);
                TokIds ids = {0};
                if (dataset_prompt_json(ds, j, &text, &ids, where, err, sizeof err)) {
                    fprintf(stderr, "rlhf eval-policy: %s\n", err);
                    tok_ids_free(&ids);
                    rc = -1;
                } else {
                    e->line[e->n_prompts] = line;
                    e->prompt_ids[e->n_prompts] = ids;
                    e->prompts[e->n_prompts++] = text;
                }
            }
            cJSON_Delete(j);
        }
        s = nl ? nl + 1 : NULL;
    }
    free(data);
    dataset_free(ds);
    if (rc) return -1;
    if (e->n_prompts == 0) EFAIL("%s holds no prompts", e->prompts_path);
    e->n_resp = e->n_prompts * e->samples;
    e->kind = MALLOC_CHECK((size_t)e->n_prompts * sizeof(int));
    for (int64_t i = 0; i < e->n_prompts; i++) {
        Task t;
        e->kind[i] = task_parse(e->prompts[i], &t) ? -1 : (int)t.kind;
        e->n_demo += e->kind[i] >= 0;
    }
    return 0;
}

// Names prompt p for messages: "FILE:LINE (\"the prompt, shortened\")".
static void prompt_name(const Eval *e, int64_t p, char *out, size_t n) {
    const char *s = e->prompts[p];
    size_t len = strlen(s);
    int cut = len > 60;
    char *clean = utf8_clean(s, cut ? 57 : len);
    for (char *c = clean; *c; c++)
        if (*c == '\n' || *c == '\r' || *c == '\t') *c = ' ';
    snprintf(out, n, "%s:%lld (\"%s%s\")", e->prompts_path, (long long)e->line[p], clean,
             cut ? "..." : "");
    free(clean);
}

// The demo's judge knows only the demo's tasks: on any other prompt it would rank a right and a
// wrong answer by their form alone. Without --judge every prompt must be a demo task.
static int check_judge_fits(const Eval *e) {
    if (e->judge || e->n_demo == e->n_prompts) return 0;
    int64_t p = 0;
    while (e->kind[p] >= 0) p++;
    char name[256];
    prompt_name(e, p, name, sizeof name);
    EFAIL("%s is not one of the demo's tasks (%lld of %lld prompts are not): the built-in judge "
          "knows only those; pass --judge CMD (a program ranking two answers, reward label's judge "
          "protocol), and --score CMD for a gold score",
          name, (long long)(e->n_prompts - e->n_demo), (long long)e->n_prompts);
}

// The longest prompt's tokens (load_prompts tokenized them).
static int encode_prompts(Eval *e) {
    for (int64_t i = 0; i < e->n_prompts; i++)
        if ((int64_t)e->prompt_ids[i].n > e->longest_prompt)
            e->longest_prompt = (int64_t)e->prompt_ids[i].n;
    return 0;
}

// The rows a model needs: a prompt, its answer and the end token (and with text, the windows of
// the pretraining loss), within its context. Not the whole context: a Llama-family model's
// 32k positions would need gigabytes of attention rows.
static int work_len(const Eval *e, const ModelConfig *c, int text) {
    int64_t n = e->longest_prompt + e->max_new + 1;
    if (text && e->pretrain && n < RLHF_EVAL_WINDOW_MAX) n = RLHF_EVAL_WINDOW_MAX;
    return n < c->max_seq_len ? (int)n : c->max_seq_len;
}

// Loads an LM checkpoint for batches of up to max_B x work_len (no score head), with a sampling
// copy in prec (LOWP_FP32: none).
static int load_lm(const char *dir, Model *m, int max_B, const Eval *e, const char *role,
                   LowpFormat prec) {
    char err[512];
    ModelConfig c;
    if (adapter_load_config(dir, &c, NULL, err, sizeof err)) EFAIL("%s: %s", role, err);
    if (!c.lm_head) EFAIL("%s: %s is a reward/value model without an LM head", role, dir);
    if (ckpt_check_tokenizer(dir, c.vocab_size, e->tokdir ? e->tokdir : e->a, tok_vocab_size(e->tok), err, sizeof err)) EFAIL("%s: %s", role, err);
    c.score_head = 0;
    if (model_init(m, &c, max_B, work_len(e, &c, 1), 0, 0, err, sizeof err) ||
        adapter_load_weights(dir, m, CKPT_IGNORE_SCORE, err, sizeof err) ||
        model_lowp_attach(m, prec, 0, err, sizeof err)) {
        model_free(m);
        EFAIL("%s: %s", role, err);
    }
    return 0;
}

// Checks a policy's config before any work starts, so a wrong path fails at once.
static int check_lm(const char *dir, const Eval *e, const char *role) {
    char err[512];
    ModelConfig c;
    if (adapter_load_config(dir, &c, NULL, err, sizeof err)) EFAIL("%s: %s", role, err);
    if (!c.lm_head) EFAIL("%s: %s is a reward/value model without an LM head", role, dir);
    ModelConfig ac;   // --b and --reference read --a's tokens: their tokenizers must agree
    if (strcmp(dir, e->a) &&
        (adapter_load_config(e->a, &ac, NULL, err, sizeof err) ||
         reward_check_tokenizer(role, dir, &c, &ac, e->tokdir ? e->tokdir : e->a, e->tok, err,
                                sizeof err)))
        EFAIL("%s", err);
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
    GenConfig g = e->stops;
    g.max_new_tokens = (int)e->max_new;
    g.sampler = (SamplerConfig){.temperature = (float)e->temperature, .top_k = 0, .top_p = 1.0f};
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
        if (n > 0 && gen_is_stop(&e->stops, po->tok[r * MN + n - 1])) n--;
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
    return po->len[r] > 0 && gen_is_stop(&e->stops, po->tok[r * e->max_new + po->len[r] - 1]);
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
    int T = m->max_T;
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
    int B = (int)e->batch, T = m->max_T;
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
    int B = (int)e->batch, T = rm->max_T;
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
    int64_t W = rlhf_eval_window(&m->config, n);
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
    if (load_lm(po->dir, &m, (int)e->batch, e, role, e->prec)) return -1;
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
    // --judge: the preference in each order ('a', 'b' or '=') and how the judge behaved
    char *first_a, *first_b;   // (R) A shown first, B shown first; NULL for the demo's judge
    int64_t consistent;        // pairs given the same non-tie verdict in both orders
    int64_t first_preferred;   // answers preferred while shown first (of 2R orders)
    int64_t skipped;           // orders the judge answered "skip" (counted as ties)
} Verdict;

static void verdict_free(Verdict *v) {
    free(v->outcome);
    free(v->first_a);
    free(v->first_b);
}

static int cmp_double(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return (a > b) - (a < b);
}

// Percentile bootstrap 95% interval of the mean over prompts of x[R] (a prompt's samples stay
// together), resampled with a generator seeded by (--seed, salt).
static void bootstrap_ci(const Eval *e, const double *x, uint64_t salt, double *lo, double *hi) {
    int64_t P = e->n_prompts, S = e->samples;
    double *per = MALLOC_CHECK((size_t)P * sizeof(double)),
           *stat = MALLOC_CHECK((size_t)e->bootstrap * sizeof(double));
    for (int64_t p = 0; p < P; p++) {
        double s = 0;
        for (int64_t k = 0; k < S; k++) s += x[p * S + k];
        per[p] = s / (double)S;
    }
    Rng rng;
    rng_init(&rng, data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, (uint64_t)e->seed),
                                               salt)));
    for (int64_t i = 0; i < e->bootstrap; i++) {
        double s = 0;
        for (int64_t p = 0; p < P; p++) s += per[rng_below(&rng, (uint64_t)P)];
        stat[i] = s / (double)P;
    }
    qsort(stat, (size_t)e->bootstrap, sizeof(double), cmp_double);
    *lo = stat[(int64_t)floor(0.025 * (double)(e->bootstrap - 1))];
    *hi = stat[(int64_t)ceil(0.975 * (double)(e->bootstrap - 1))];
    free(per);
    free(stat);
}

// The counts, win rate and its interval from the outcomes.
static void verdict_finish(const Eval *e, Verdict *v) {
    double sum = 0;
    for (int64_t r = 0; r < e->n_resp; r++) {
        double o = v->outcome[r];
        if (o == 1.0) v->a_wins++; else if (o == 0.0) v->b_wins++; else v->ties++;
        sum += o;
    }
    v->win_rate = sum / (double)e->n_resp;
    bootstrap_ci(e, v->outcome, 0xb0075ull, &v->lo, &v->hi);
}

// The demo's judge (task_rank): every prompt is a demo task (check_judge_fits).
static void judge_builtin(const Eval *e, const PolicyOut *A, const PolicyOut *B, Verdict *v) {
    memset(v, 0, sizeof *v);
    v->outcome = MALLOC_CHECK((size_t)e->n_resp * sizeof(double));
    for (int64_t r = 0; r < e->n_resp; r++) {
        const char *pair[2] = {A->text[r], B->text[r]};
        int rank[2], ended[2] = {answer_ended(e, A, r), answer_ended(e, B, r)};
        task_rank(e->prompts[r / e->samples], pair, ended, 2, e->judge_noise, (uint64_t)e->seed,
                  rank);
        v->outcome[r] = rank[0] < rank[1] ? 1.0 : rank[0] > rank[1] ? 0.0 : 0.5;
    }
    verdict_finish(e, v);
}

// Appends one line (without its line end: cJSON escapes newlines inside strings) to buf.
static void append_line(cJSON *o, char **buf, size_t *len, size_t *cap) {
    char *line = cJSON_PrintUnformatted(o);
    if (!line) DIE("out of memory");
    size_t n = strlen(line);
    if (*len + n + 1 > *cap) {
        *cap = (*len + n + 1) * 2;
        *buf = REALLOC_CHECK(*buf, *cap);
    }
    memcpy(*buf + *len, line, n);
    (*buf)[*len + n] = '\n';
    *len += n + 1;
    cJSON_free(line);
}

// Appends one request of reward label's judge protocol: the prompt of answer r and the two
// policies' answers, X's first.
static void judge_request(const Eval *e, int64_t r, const PolicyOut *X, const PolicyOut *Y,
                          char **buf, size_t *len, size_t *cap) {
    int64_t p = r / e->samples;
    cJSON *o = cJSON_CreateObject(), *c = cJSON_CreateArray(), *en = cJSON_CreateArray();
    char *pc = utf8_clean(e->prompts[p], strlen(e->prompts[p]));
    cJSON_AddNumberToObject(o, "prompt_id", (double)(p + 1));
    cJSON_AddStringToObject(o, "prompt", pc);
    free(pc);
    cJSON_AddItemToArray(c, cJSON_CreateString(X->text[r]));
    cJSON_AddItemToArray(c, cJSON_CreateString(Y->text[r]));
    cJSON_AddItemToObject(o, "completions", c);
    cJSON_AddItemToArray(en, cJSON_CreateBool(answer_ended(e, X, r)));
    cJSON_AddItemToArray(en, cJSON_CreateBool(answer_ended(e, Y, r)));
    cJSON_AddItemToObject(o, "ended", en);
    append_line(o, buf, len, cap);
    cJSON_Delete(o);
}

// Why a program's answers ended short: it stopped (or timed out) before answering request
// `what` about prompt p.
static int extprog_fail(const Eval *e, const char *who, const char *cmd, const ExtResult *x,
                        int64_t p, const char *what) {
    char name[256];
    prompt_name(e, p, name, sizeof name);
    if (x->timed_out)
        EFAIL("%s (%s) gave no answer for %s (%s) within %g s (--judge-timeout)", who, cmd, name,
              what, e->timeout);
    if (x->status > 0)
        EFAIL("%s (%s) exited with status %d without answering %s (%s)", who, cmd, x->status,
              name, what);
    EFAIL("%s (%s) %s without answering %s (%s): %lld answer lines", who, cmd,
          x->status < 0 ? "was killed by a signal" : "ended its output", name, what,
          (long long)x->n);
}

// A program that answered every request but exited badly, or answered too much.
static int extprog_status(const char *who, const char *cmd, const ExtResult *x, int64_t want) {
    if (x->status != 0)
        EFAIL("%s (%s) exited with status %d after answering all %lld requests", who, cmd,
              x->status, (long long)want);
    if (x->extra)
        EFAIL("%s (%s) answered %lld lines more than the %lld requests", who, cmd,
              (long long)x->extra, (long long)want);
    return 0;
}

// One answer of the judge about (X, Y) for answer r: 'x', 'y' or '=' (a tie or "skip").
static int judge_parse(const Eval *e, const char *line, int64_t r, const char *order, char *pref,
                       int64_t *skipped) {
    RewardAnswer a;
    char perr[512], name[256];
    int rc = reward_parse_answer(line, 2, 1, &a, perr, sizeof perr);
    if (!rc && a.kind == REWARD_ANSWER_NONE) {
        reward_answer_free(&a);
        snprintf(perr, sizeof perr, "an empty line");
        rc = -1;
    }
    if (rc) {
        prompt_name(e, r / e->samples, name, sizeof name);
        EFAIL("the judge's answer for %s (%s): %s", name, order, perr);
    }
    if (a.kind == REWARD_ANSWER_SKIP) (*skipped)++;
    *pref = a.kind != REWARD_ANSWER_RANKING ? '='
            : a.ranks[0] < a.ranks[1]        ? 'x'
            : a.ranks[0] > a.ranks[1]        ? 'y'
                                             : '=';
    reward_answer_free(&a);
    return 0;
}

// --judge: each pair asked A first, then B first; A wins when preferred in both orders, B
// likewise, a tie otherwise.
static int judge_external(const Eval *e, const PolicyOut *A, const PolicyOut *B, Verdict *v) {
    memset(v, 0, sizeof *v);
    int64_t R = e->n_resp, want = 2 * R;
    char *buf = NULL, err[512];
    size_t len = 0, cap = 0;
    for (int64_t r = 0; r < R; r++) {
        judge_request(e, r, A, B, &buf, &len, &cap);
        judge_request(e, r, B, A, &buf, &len, &cap);
    }
    ExtResult x;
    fprintf(stderr, "rlhf eval-policy: judging %lld pairs in both orders with %s\n", (long long)R,
            e->judge);
    int rc = extprog_run(e->judge, buf, len, want, e->timeout, &x, err, sizeof err);
    free(buf);
    if (rc) EFAIL("the judge (%s): %s", e->judge, err);
    if (x.n < want)
        rc = extprog_fail(e, "the judge", e->judge, &x, (x.n / 2) / e->samples,
                          x.n % 2 ? "B first" : "A first");
    else rc = extprog_status("the judge", e->judge, &x, want);
    v->outcome = MALLOC_CHECK((size_t)R * sizeof(double));
    v->first_a = MALLOC_CHECK((size_t)R);
    v->first_b = MALLOC_CHECK((size_t)R);
    for (int64_t r = 0; r < R && !rc; r++) {
        char pa, pb;   // 'x': the answer shown first preferred, 'y': the second, '=': neither
        rc = judge_parse(e, x.lines[2 * r], r, "A first", &pa, &v->skipped) ||
             judge_parse(e, x.lines[2 * r + 1], r, "B first", &pb, &v->skipped);
        if (rc) break;
        char a = pa == 'x' ? 'a' : pa == 'y' ? 'b' : '=';
        char b = pb == 'x' ? 'b' : pb == 'y' ? 'a' : '=';
        v->first_a[r] = a;
        v->first_b[r] = b;
        v->outcome[r] = a == 'a' && b == 'a' ? 1.0 : a == 'b' && b == 'b' ? 0.0 : 0.5;
        v->consistent += a == b && a != '=';
        v->first_preferred += (pa == 'x') + (pb == 'x');
    }
    extprog_result_free(&x);
    if (!rc) verdict_finish(e, v);
    return rc;
}

// One gold score line: finite, nothing after it but blanks. 0, or -1 with the message printed.
static int score_parse(const Eval *e, const char *s, int64_t i, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end != s && !end[strspn(end, " \t")] && isfinite(v) && errno != ERANGE) {
        *out = v;
        return 0;
    }
    int64_t R = e->n_resp;
    size_t n = strlen(s);
    char name[256], *sc = utf8_clean(s, n > 40 ? 40 : n);
    prompt_name(e, (i % R) / e->samples, name, sizeof name);
    fprintf(stderr,
            "rlhf eval-policy: the scorer's answer for %s (%s) is not a finite number: \"%s\"\n",
            name, i < R ? "A's answer" : "B's answer", sc);
    free(sc);
    return -1;
}

// --score: one request per answer, A's then B's; one finite number back for each.
static int score_external(const Eval *e, PolicyOut *A, PolicyOut *B) {
    int64_t R = e->n_resp, want = 2 * R;
    char *buf = NULL, err[512];
    size_t len = 0, cap = 0;
    for (int64_t i = 0; i < want; i++) {
        int64_t p = (i % R) / e->samples;
        cJSON *o = cJSON_CreateObject();
        char *pc = utf8_clean(e->prompts[p], strlen(e->prompts[p]));
        cJSON_AddStringToObject(o, "prompt", pc);
        free(pc);
        cJSON_AddStringToObject(o, "completion", (i < R ? A : B)->text[i % R]);
        append_line(o, &buf, &len, &cap);
        cJSON_Delete(o);
    }
    ExtResult x;
    fprintf(stderr, "rlhf eval-policy: scoring %lld answers with %s\n", (long long)want, e->score);
    int rc = extprog_run(e->score, buf, len, want, e->timeout, &x, err, sizeof err);
    free(buf);
    if (rc) EFAIL("the scorer (%s): %s", e->score, err);
    if (x.n < want)
        rc = extprog_fail(e, "the scorer", e->score, &x, (x.n % R) / e->samples,
                          x.n < R ? "A's answer" : "B's answer");
    else rc = extprog_status("the scorer", e->score, &x, want);
    A->score = MALLOC_CHECK((size_t)R * sizeof(double));
    B->score = MALLOC_CHECK((size_t)R * sizeof(double));
    for (int64_t i = 0; i < want && !rc; i++)
        rc = score_parse(e, x.lines[i], i, &(i < R ? A : B)->score[i % R]);
    extprog_result_free(&x);
    return rc;
}

// The gold score's difference A - B over answers, with its paired bootstrap interval.
typedef struct {
    double gain, lo, hi;   // NAN without --score
} Gain;

static void score_gain(const Eval *e, const PolicyOut *A, const PolicyOut *B, Gain *g) {
    g->gain = g->lo = g->hi = NAN;
    if (!A->score) return;
    double *d = MALLOC_CHECK((size_t)e->n_resp * sizeof(double)), s = 0;
    for (int64_t r = 0; r < e->n_resp; r++) s += d[r] = A->score[r] - B->score[r];
    g->gain = s / (double)e->n_resp;
    bootstrap_ci(e, d, 0x5c04eull, &g->lo, &g->hi);
    free(d);
}

typedef struct {
    double accuracy, reward, kl, pretrain_loss, tokens, end_rate, score;
    double acc_kind[TASK_NUM_KINDS];
    int64_t n_kind[TASK_NUM_KINDS], n_known;
} Summary;

static void summarise(const Eval *e, const PolicyOut *po, Summary *s) {
    memset(s, 0, sizeof *s);
    double rm = 0, kl = 0, tokens = 0, ended = 0, correct = 0, score = 0;
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
        if (po->score) score += po->score[r];
        tokens += po->len[r];
        ended += answer_ended(e, po, r);
    }
    double R = (double)e->n_resp;
    for (int k = 0; k < TASK_NUM_KINDS; k++)
        s->acc_kind[k] = s->n_kind[k] ? s->acc_kind[k] / (double)s->n_kind[k] : NAN;
    s->accuracy = s->n_known ? correct / (double)s->n_known : NAN;
    s->reward = po->rm ? rm / R : NAN;
    s->kl = po->kl ? kl / R : NAN;
    s->score = po->score ? score / R : NAN;
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

// Everything reported: the verdict, each policy's summary, the gold score's gain.
typedef struct {
    Verdict v;
    Summary a, b;
    Gain g;
    double rm_acc;         // the reward model's held-out accuracy (--target-rm-accuracy), or NAN
    char warning[256];     // "" or the ties warning
} Results;

// More than 20% ties: the verdict tells little, whatever the win rate.
static void ties_warning(const Eval *e, Results *res) {
    const Verdict *v = &res->v;
    res->warning[0] = 0;
    if ((double)v->ties <= 0.2 * (double)e->n_resp) return;
    snprintf(res->warning, sizeof res->warning,
             "%lld of %lld comparisons (%.1f%%) are ties, more than 20%%: the judge tells these "
             "answers apart too rarely for the win rate to mean much%s",
             (long long)v->ties, (long long)e->n_resp, 100.0 * (double)v->ties / (double)e->n_resp,
             e->judge ? " (--responses shows its verdict in each order)" : "");
    fprintf(stderr, "rlhf eval-policy: warning: %s\n", res->warning);
}

static void print_accuracy(const Eval *e, const Summary *sa, const Summary *sb) {
    if (!e->n_demo) {
        printf("  %-28s %s\n", "task accuracy", "not demo tasks; use --score");
        return;
    }
    char lab[64];
    if (e->n_demo == e->n_prompts) snprintf(lab, sizeof lab, "task accuracy");
    else
        snprintf(lab, sizeof lab, "task accuracy (%lld demo)", (long long)e->n_demo);
    print_row(lab, sa->accuracy, sb->accuracy, 3);
    if (e->n_demo < e->n_prompts)
        printf("  %-28s %lld of %lld prompts are demo tasks; the others are not counted\n", "",
               (long long)e->n_demo, (long long)e->n_prompts);
    for (int k = 0; k < TASK_NUM_KINDS; k++) {
        if (!sa->n_kind[k]) continue;
        snprintf(lab, sizeof lab, "  %s (%lld)", task_kind_name(k), (long long)sa->n_kind[k]);
        print_row(lab, sa->acc_kind[k], sb->acc_kind[k], 3);
    }
}

static void print_table(const Eval *e, const Results *res) {
    const Verdict *v = &res->v;
    const Summary *sa = &res->a, *sb = &res->b;
    printf("eval-policy: A = %s, B = %s\n", e->a, e->b);
    char how[64];
    if (e->temperature > 0) snprintf(how, sizeof how, "sampled at temperature %g", e->temperature);
    else snprintf(how, sizeof how, "greedy");
    printf(
        "  %lld prompts x %lld answer(s) each, %s, at most %lld new tokens, seed %lld, judge noise %g\n",
        (long long)e->n_prompts, (long long)e->samples, how, (long long)e->max_new,
        (long long)e->seed, e->judge_noise);
    if (e->judge)
        printf("  judge: %s, each pair in both orders (A wins when preferred in both)\n", e->judge);
    printf("  %-28s %10s %10s\n", "", "A", "B");
    printf("  %-28s %10.3f   95%% CI [%.3f, %.3f]  (A %lld, B %lld, ties %lld)\n",
           "judge: A preferred to B", v->win_rate, v->lo, v->hi, (long long)v->a_wins,
           (long long)v->b_wins, (long long)v->ties);
    if (e->judge)
        printf("  %-28s %lld of %lld pairs the same in both orders; the answer shown first won "
               "%lld of %lld orders%s\n",
               "  judge consistency", (long long)v->consistent, (long long)e->n_resp,
               (long long)v->first_preferred, (long long)(2 * e->n_resp),
               v->skipped ? ", some skipped (ties)" : "");
    if (res->warning[0]) printf("  warning: %s\n", res->warning);
    if (e->score) {
        print_row("gold score (--score)", sa->score, sb->score, 4);
        printf("  %-28s %10.4f   95%% CI [%.4f, %.4f]\n", "  difference A - B", res->g.gain,
               res->g.lo, res->g.hi);
    }
    if (e->reward) print_row("reward-model score", sa->reward, sb->reward, 4);
    if (e->reference) print_row("KL to reference", sa->kl, sb->kl, 4);
    print_accuracy(e, sa, sb);
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
    json_num(o, "score", s->score);
    json_num(o, "accuracy", s->accuracy);
    cJSON *k = cJSON_AddObjectToObject(o, "accuracy_by_task");
    for (int i = 0; i < TASK_NUM_KINDS; i++)
        if (s->n_kind[i]) json_num(k, task_kind_name(i), s->acc_kind[i]);
    json_num(o, "pretrain_loss", s->pretrain_loss);
    json_num(o, "answer_tokens", s->tokens);
    json_num(o, "end_rate", s->end_rate);
    return o;
}

static void print_json(const Eval *e, const Results *res) {
    const Verdict *v = &res->v;
    const Summary *sa = &res->a, *sb = &res->b;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "prompts", (double)e->n_prompts);
    cJSON_AddNumberToObject(o, "demo_prompts", (double)e->n_demo);
    cJSON_AddNumberToObject(o, "samples", (double)e->samples);
    cJSON_AddNumberToObject(o, "comparisons", (double)e->n_resp);
    cJSON_AddStringToObject(o, "judge", e->judge ? e->judge : "rlhf judge (built in)");
    cJSON_AddNumberToObject(o, "win_rate", v->win_rate);
    cJSON *ci = cJSON_AddArrayToObject(o, "win_rate_ci");
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(v->lo));
    cJSON_AddItemToArray(ci, cJSON_CreateNumber(v->hi));
    cJSON_AddNumberToObject(o, "a_wins", (double)v->a_wins);
    cJSON_AddNumberToObject(o, "b_wins", (double)v->b_wins);
    cJSON_AddNumberToObject(o, "ties", (double)v->ties);
    if (e->judge) {
        cJSON_AddNumberToObject(o, "judge_consistent", (double)v->consistent);
        cJSON_AddNumberToObject(o, "judge_first_preferred", (double)v->first_preferred);
        cJSON_AddNumberToObject(o, "judge_skipped", (double)v->skipped);
    }
    if (e->score) {
        json_num(o, "score_gain", res->g.gain);
        cJSON *gi = cJSON_AddArrayToObject(o, "score_gain_ci");
        cJSON_AddItemToArray(gi, cJSON_CreateNumber(res->g.lo));
        cJSON_AddItemToArray(gi, cJSON_CreateNumber(res->g.hi));
    }
    cJSON *w = cJSON_AddArrayToObject(o, "warnings");
    if (res->warning[0]) cJSON_AddItemToArray(w, cJSON_CreateString(res->warning));
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

static const char *pref_name(char c) { return c == 'a' ? "a" : c == 'b' ? "b" : "tie"; }

// One answer of one policy as a --responses line: AlpacaEval's fields, then its grades.
static cJSON *response_line(const Eval *e, const PolicyOut *po, const char *who, int64_t r,
                            const Verdict *v, const char *dataset) {
    int64_t p = r / e->samples;
    cJSON *o = cJSON_CreateObject();
    char *pc = utf8_clean(e->prompts[p], strlen(e->prompts[p]));
    cJSON_AddStringToObject(o, "instruction", pc);
    free(pc);
    cJSON_AddStringToObject(o, "output", po->text[r]);
    cJSON_AddStringToObject(o, "generator", po->dir);
    cJSON_AddStringToObject(o, "dataset", dataset);
    cJSON_AddStringToObject(o, "policy", who);
    cJSON_AddNumberToObject(o, "prompt_line", (double)e->line[p]);
    cJSON_AddNumberToObject(o, "sample", (double)(r % e->samples));
    cJSON_AddBoolToObject(o, "ended", answer_ended(e, po, r));
    if (e->kind[p] >= 0) {
        cJSON_AddStringToObject(o, "task", task_kind_name(e->kind[p]));
        cJSON_AddBoolToObject(o, "correct", po->correct[r]);
    }
    if (po->rm) cJSON_AddNumberToObject(o, "reward", po->rm[r]);
    if (po->score) cJSON_AddNumberToObject(o, "score", po->score[r]);
    double out = v->outcome[r];
    cJSON_AddStringToObject(o, "preferred", out == 1.0 ? "a" : out == 0.0 ? "b" : "tie");
    if (v->first_a) {
        cJSON_AddStringToObject(o, "preferred_a_first", pref_name(v->first_a[r]));
        cJSON_AddStringToObject(o, "preferred_b_first", pref_name(v->first_b[r]));
    }
    return o;
}

// --responses: one line per answer and policy (A's, then B's, for each prompt).
static int write_responses(const Eval *e, const PolicyOut *A, const PolicyOut *B,
                           const Verdict *v) {
    FILE *f = fopen(e->responses_path, "wb");
    if (!f) EFAIL("%s: cannot write", e->responses_path);
    const char *base = strrchr(e->prompts_path, '/');
    char *dataset = STRDUP_CHECK(base ? base + 1 : e->prompts_path), *dot = strrchr(dataset, '.');
    if (dot && dot != dataset) *dot = 0;   // eval_prompts.jsonl -> eval_prompts
    for (int64_t r = 0; r < e->n_resp; r++) {
        for (int i = 0; i < 2; i++) {
            cJSON *o = response_line(e, i ? B : A, i ? "b" : "a", r, v, dataset);
            char *s = cJSON_PrintUnformatted(o);
            fprintf(f, "%s\n", s);
            cJSON_free(s);
            cJSON_Delete(o);
        }
    }
    free(dataset);
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
    M("score", s->score);
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

// The run's own figures (those of neither policy alone); NAN ones are not stored.
static int add_run_metrics(Store *db, int64_t run, const Eval *e, const Results *res, char *err,
                           size_t errlen) {
    const Verdict *v = &res->v;
    struct { const char *name; double value; } m[] = {
        {"win_rate", v->win_rate}, {"win_rate_lo", v->lo}, {"win_rate_hi", v->hi},
        {"a_wins", (double)v->a_wins}, {"b_wins", (double)v->b_wins}, {"ties", (double)v->ties},
        {"comparisons", (double)e->n_resp}, {"demo_prompts", (double)e->n_demo},
        {"judge_consistent", e->judge ? (double)v->consistent : NAN},
        {"score_gain", res->g.gain}, {"score_gain_lo", res->g.lo}, {"score_gain_hi", res->g.hi},
        {"pretrain_loss_ratio", e->pretrain ? res->a.pretrain_loss / res->b.pretrain_loss : NAN}};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (!isnan(m[i].value) && store_add_metric(db, run, 0, m[i].name, m[i].value, err, errlen))
            return -1;
    return add_metrics(db, run, "a", &res->a, err, errlen) ||
           add_metrics(db, run, "b", &res->b, err, errlen);
}

static int record(const Eval *e, int argc, char **argv, const Results *res) {
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
        rc = add_run_metrics(db, run, e, res, err, sizeof err);
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
static int check_targets(const Eval *e, const Results *res, char *why, size_t n) {
    const Verdict *v = &res->v;
    const Summary *sa = &res->a, *sb = &res->b;
    why[0] = 0;
    if (isnan(e->t_win) && isnan(e->t_win_lo) && isnan(e->t_acc_drop) && isnan(e->t_end) &&
        isnan(e->t_rm_acc) && isnan(e->t_gain))
        return 0;
    int ok = 1, p = !e->json;
    if (p) printf("targets:\n");
    if (!isnan(e->t_win))
        ok &= check_target(p, "A preferred to B", v->win_rate, e->t_win, 0, why, n);
    if (!isnan(e->t_win_lo))
        ok &= check_target(p, "  its 95% interval's low end", v->lo, e->t_win_lo, 1, why, n);
    if (!isnan(e->t_gain))
        ok &= check_target(p, "gold score gain A - B", res->g.gain, e->t_gain, 0, why, n);
    if (!isnan(e->t_acc_drop))
        ok &= check_target(p, "task accuracy of A", sa->accuracy, sb->accuracy - e->t_acc_drop, 0,
                           why, n);
    if (!isnan(e->t_end))
        ok &= check_target(p, "A's end-token rate", sa->end_rate, e->t_end, 0, why, n);
    if (!isnan(e->t_rm_acc))
        ok &= check_target(p, "reward-model accuracy", res->rm_acc, e->t_rm_acc, 0, why, n);
    if (p) printf("%s\n", ok ? "targets: all met" : "targets: MISSED (alignment failed)");
    return ok ? 0 : 1;
}

// The reward model of --reward: a score head, the tokenizer of the policies.
static int load_reward_model(const Eval *e, Model *rm) {
    char err[512];
    ModelConfig c;
    if (adapter_load_config(e->reward, &c, NULL, err, sizeof err)) EFAIL("--reward: %s", err);
    if (!c.score_head) EFAIL("--reward: %s has no score head (score.weight)", e->reward);
    ModelConfig pc;   // any block kind may score the policies when it reads their token ids
    if (adapter_load_config(e->a, &pc, NULL, err, sizeof err) ||
        reward_check_tokenizer("--reward", e->reward, &c, &pc, e->tokdir ? e->tokdir : e->a,
                               e->tok, err, sizeof err))
        EFAIL("%s", err);
    c.lm_head = 0;
    if (model_init(rm, &c, (int)e->batch, work_len(e, &c, 0), 0, 0, err, sizeof err) ||
        adapter_load_weights(e->reward, rm, 0, err, sizeof err) ||
        model_lowp_attach(rm, e->prec, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32, err, sizeof err)) {
        model_free(rm);
        EFAIL("--reward: %s", err);
    }
    return 0;
}

// The summaries printed, the answers written, the run recorded, the targets checked (*missed:
// one was missed).
static int report(const Eval *e, const PolicyOut *A, const PolicyOut *B, Results *res, int argc,
                  char **argv, int *missed) {
    summarise(e, A, &res->a);
    summarise(e, B, &res->b);
    score_gain(e, A, B, &res->g);
    ties_warning(e, res);
    if (e->json) print_json(e, res);
    else print_table(e, res);
    fflush(stdout);
    int rc = 0;
    if (e->responses_path) rc = write_responses(e, A, B, &res->v);
    if (!rc && e->workspace) rc = record(e, argc, argv, res);
    char why[1024];
    if (!rc && check_targets(e, res, why, sizeof why)) {
        fflush(stdout);
        fprintf(stderr, "rlhf eval-policy: alignment failed: %s\n", why);
        *missed = 1;
    }
    return rc;
}

static void policy_free(const Eval *e, PolicyOut *po) {
    if (po->text) for (int64_t r = 0; r < e->n_resp; r++) free(po->text[r]);
    free(po->text); free(po->tok); free(po->len); free(po->correct); free(po->rm); free(po->kl);
    free(po->score);
}

// The options naming programs: not empty, and --target-score-gain only with --score.
static int check_programs(const Eval *e) {
    if (e->judge && !*e->judge) EFAIL("--judge is empty");
    if (e->score && !*e->score) EFAIL("--score is empty");
    if (!isnan(e->t_gain) && !e->score)
        EFAIL("--target-score-gain needs --score (the gold scorer)");
    return 0;
}

int cmd_eval_policy(int argc, char **argv) {
    Eval e = {.samples = 1, .max_new = 48, .seed = 1234, .bootstrap = 2000, .batch = 16,
              .temperature = 1.0, .name = "eval-policy", .t_win = NAN, .t_win_lo = NAN,
              .t_acc_drop = NAN, .t_end = NAN, .t_rm_acc = NAN, .t_gain = NAN, .timeout = 60};
    int status;
    CliOption opts[] = {
        CLI_STRING("--a", &e.a, .required = 1),
        CLI_STRING("--b", &e.b, .required = 1),
        CLI_STRING("--prompts", &e.prompts_path, .required = 1),
        CLI_STRING("--reward", &e.reward),
        CLI_STRING("--reference", &e.reference),
        CLI_STRING("--pretrain-text", &e.pretrain),
        CLI_STRING("--tokenizer", &e.tokdir),
        CLI_STRING("--chat-template", &e.tmpl),
        CLI_STRING("--responses", &e.responses_path),
        CLI_STRING("--workspace", &e.workspace),
        CLI_STRING("--name", &e.name),
        CLI_STRING("--judge", &e.judge),
        CLI_STRING("--score", &e.score),
        CLI_DOUBLE("--judge-timeout", &e.timeout, 0.001, 1e9),
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
        CLI_DOUBLE("--target-score-gain", &e.t_gain, -1e300, 1e300),
        CLI_CONST("--greedy", &e.temperature, 0),
        CLI_FLAG("--json", &e.json),
        CLI_CUSTOM("--precision", lowp_cli_precision, &e.prec),
        {0}};
    CliCommand cmd = {.prog = "rlhf eval-policy", .usage = ep_usage, .opts = opts};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (check_programs(&e)) return 2;
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
    e.stops.eot_id = e.eot;
    int rc = 0;
    const char *tdir = e.tokdir ? e.tokdir : e.a;
    if (chat_template_load(&e.chat, tdir, e.tmpl, err, sizeof err) ||
        chat_stop_ids(e.chat, e.tok, e.a, e.stops.stop_ids, GEN_MAX_STOP, &e.stops.n_stop, err,
                      sizeof err)) {
        fprintf(stderr, "rlhf eval-policy: %s\n", err);
        rc = -1;
    }
    if (!rc && e.eot < 0) {
        fprintf(stderr, "rlhf eval-policy: the tokenizer has no <|endoftext|> token\n");
        rc = -1;
    }
    if (!rc) rc = load_prompts(&e);
    if (!rc) rc = check_judge_fits(&e);
    if (!rc && !isnan(e.t_acc_drop) && !e.n_demo) {
        fprintf(stderr, "rlhf eval-policy: --target-accuracy-drop: none of the prompts is a "
                        "demo task, so there is no task accuracy; use --score and "
                        "--target-score-gain\n");
        rc = -1;
    }
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
        rc = load_lm(e.reference, &ref, (int)e.batch, &e, "--reference", LOWP_FP32);
        have_ref = !rc;
    }
    if (!rc && e.reward) {
        rc = load_reward_model(&e, &rm);
        have_rm = !rc;
    }
    Results res = {.rm_acc = NAN};
    if (!rc && !isnan(e.t_rm_acc)) rc = rm_heldout_accuracy(&e, &res.rm_acc);
    PolicyOut A = {.dir = e.a}, B = {.dir = e.b};
    int missed = 0;
    if (!rc) rc = run_policy(&e, &A, "--a", have_ref ? &ref : NULL, text, ntext);
    if (!rc) rc = run_policy(&e, &B, "--b", have_ref ? &ref : NULL, text, ntext);
    if (!rc && have_rm) rc = reward_scores(&e, &rm, &A) || reward_scores(&e, &rm, &B);
    if (have_ref) model_free(&ref);
    if (have_rm) model_free(&rm);
    have_ref = have_rm = 0;   // the judge and the scorer may need the memory
    if (!rc && e.judge) rc = judge_external(&e, &A, &B, &res.v);
    else if (!rc) judge_builtin(&e, &A, &B, &res.v);
    if (!rc && e.score) rc = score_external(&e, &A, &B);
    if (!rc) rc = report(&e, &A, &B, &res, argc, argv, &missed);
    verdict_free(&res.v);
    policy_free(&e, &A);
    policy_free(&e, &B);
    if (have_ref) model_free(&ref);
    if (have_rm) model_free(&rm);
    free(text);
    for (int64_t i = 0; i < e.n_prompts; i++) { free(e.prompts[i]); if (e.prompt_ids) tok_ids_free(&e.prompt_ids[i]); }
    free(e.prompts); free(e.prompt_ids); free(e.kind); free(e.line);
    tok_free(e.tok);
    chat_template_free(e.chat);
    return rc || missed ? 1 : 0;
}
