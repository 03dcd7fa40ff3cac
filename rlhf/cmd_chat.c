// rlhf chat: a small interactive chat with a checkpoint in the terminal. Each line read is a user
// turn; the whole conversation is rendered with the model's chat template (or the built-in
// "Human: ... Assistant:" format without one), the answer is sampled and streamed token by
// token until an end-of-turn token, and it joins the history. /reset forgets the history, /quit
// (or the end of input) ends. Without a terminal it reads lines from stdin alike (tests, pipes).
#include "chat.h"
#include "adapter.h"
#include "checkpoint.h"
#include "commands.h"
#include "dataset.h"
#include "generate.h"
#include "sampler.h"
#include "utf8.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *chat_usage =
    "usage: rlhf chat CKPT [options]\n"
    "  --tokenizer DIR       tokenizer (and tokenizer_config.json) when CKPT has none\n"
    "  --chat-template T     chat template instead of tokenizer_config.json's (a file or text)\n"
    "  --system TEXT         a system message at the start of the conversation\n"
    "  --max-new-tokens N    longest answer in tokens (default 256)\n"
    "  --temperature T       sampling temperature (default 0.7; 0 = greedy)\n"
    "  --top-p P             nucleus sampling mass (default 0.9)\n"
    "  --top-k K             keep the K most likely tokens (default 0 = all)\n"
    "  --seed S              sampling seed (default 1234)\n"
    "Each input line is a user message; the answer is streamed as it is sampled and ends at the\n"
    "template's end-of-turn token (or the tokenizer's end token). /reset starts a new\n"
    "conversation (the sampler restarts from --seed); /quit (or the end of input) ends.\n"
    "Without a terminal, lines come from stdin.\n"
    "When the conversation outgrows the context, its oldest turns are left out.\n";

typedef struct {
    const char *dir, *tokdir, *tmpl, *system;
    int64_t max_new, topk, seed;
    double temp, topp;
} ChatArgs;

// What a chat holds: the model and what renders, samples and stops.
typedef struct {
    Model m;
    KVCache kv;
    Sampler s;
    Tokenizer *tok;
    ChatTemplate *ct;
    Dataset *ds;       // renders the conversation (the template, or the built-in format)
    GenConfig g;
    Rng rng;
    DatasetMessage *hist;   // (n) contents owned (roles are literals)
    int n, cap;
} Chat;

static void chat_history_clear(Chat *c) {
    for (int i = 0; i < c->n; i++) free((char *)c->hist[i].content);
    c->n = 0;
}

static void chat_history_add(Chat *c, const char *role, const char *content) {
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 16;
        c->hist = REALLOC_ARRAY(c->hist, (size_t)c->cap, sizeof(DatasetMessage));
    }
    c->hist[c->n++] = (DatasetMessage){role, STRDUP_CHECK(content)};
}

static void chat_free(Chat *c) {
    chat_history_clear(c);
    free(c->hist);
    dataset_free(c->ds);
    chat_template_free(c->ct);
    tok_free(c->tok);
    sampler_free(&c->s);
    kv_free(&c->kv);
    model_free(&c->m);
}

static int chat_open(Chat *c, const ChatArgs *a, char *err, size_t errlen) {
    ModelConfig mc;
    CkptInfo ci;
    const char *tokdir = a->tokdir ? a->tokdir : a->dir;
    if (adapter_load_config(a->dir, &mc, &ci, err, errlen)) return -1;
    if (!mc.lm_head)
        return util_err(err, errlen, "%s is a reward/value model without an LM head", a->dir);
    mc.score_head = 0;
    if (tok_load(&c->tok, tokdir, err, errlen) ||
        ckpt_check_tokenizer(a->dir, mc.vocab_size, tokdir, tok_vocab_size(c->tok), err, errlen) ||
        chat_template_load(&c->ct, tokdir, a->tmpl, err, errlen))
        return -1;
    DatasetOptions o = {.max_tokens = mc.max_seq_len, .chat = c->ct};
    if (dataset_create(&c->ds, c->tok, &o, err, errlen)) return -1;
    c->g = (GenConfig){.max_new_tokens = (int)a->max_new, .eot_id = ci.eos_token_id,
                       .sampler = {.temperature = (float)a->temp, .top_k = (int)a->topk,
                                   .top_p = (float)a->topp}};
    if (chat_stop_ids(c->ct, c->tok, a->dir, c->g.stop_ids, GEN_MAX_STOP, &c->g.n_stop, err,
                      errlen))
        return -1;
    if (a->max_new >= mc.max_seq_len)
        return util_err(err, errlen, "--max-new-tokens %lld leaves no room for a prompt in the "
                        "context of %d", (long long)a->max_new, mc.max_seq_len);
    if (model_init(&c->m, &mc, 1, 1, 0, 0, err, errlen) ||
        adapter_load_weights(a->dir, &c->m, CKPT_IGNORE_SCORE, err, errlen) ||
        kv_init(&c->kv, &c->m, 1, mc.max_seq_len, mc.max_seq_len, err, errlen))
        return -1;
    sampler_init(&c->s, mc.vocab_size);
    rng_init(&c->rng, (uint64_t)a->seed);
    if (a->system) chat_history_add(c, "system", a->system);
    return 0;
}

typedef struct {
    const Chat *c;
} StreamCtx;

static void chat_stream(void *u, int b, int32_t t) {
    const StreamCtx *s = u;
    (void)b;
    if (gen_is_stop(&s->c->g, t)) return;
    size_t len;
    const char *bytes = tok_token(s->c->tok, t, &len);
    if (bytes) {
        fwrite(bytes, 1, len, stdout);
        fflush(stdout);
    }
}

// The prompt tokens of the history (which ends with a user turn): the oldest turns after the
// system message are left out until the answer fits the context. -1 when even the last user
// message does not fit.
static int chat_prompt(Chat *c, TokIds *ids, char *err, size_t errlen) {
    int first = c->n > 0 && !strcmp(c->hist[0].role, "system");
    int skip = 0;   // user/assistant messages left out
    int limit = c->m.config.max_seq_len - c->g.max_new_tokens;
    for (;;) {
        DatasetMessage *m = MALLOC_CHECK((size_t)c->n * sizeof *m);
        int n = 0;
        if (first) m[n++] = c->hist[0];
        for (int i = first + skip; i < c->n; i++) m[n++] = c->hist[i];
        ids->n = 0;
        int rc = dataset_encode_chat_prompt(c->ds, m, n, ids, err, errlen);
        free(m);
        if (rc) return -1;
        if ((int64_t)ids->n <= limit) return 0;
        if (first + skip + 1 >= c->n)
            return util_err(err, errlen, "the message is %zu tokens with the conversation's start;"
                            " with --max-new-tokens %d it exceeds the context of %d", ids->n,
                            c->g.max_new_tokens, c->m.config.max_seq_len);
        skip += 2;
    }
}

// Answers the history's last user message: streamed to stdout, then added to the history.
static int chat_answer(Chat *c, char *err, size_t errlen) {
    TokIds ids = {0};
    if (chat_prompt(c, &ids, err, errlen)) {
        tok_ids_free(&ids);
        return -1;
    }
    int32_t *out = MALLOC_CHECK((size_t)c->g.max_new_tokens * sizeof(int32_t));
    int32_t len = (int32_t)ids.n, ol = 0;
    StreamCtx sc = {c};
    kv_reset(&c->kv);
    int rc = gen_generate(&c->m, &c->kv, &c->s, &c->g, &c->rng, ids.ids, &len, 1, len, out, &ol,
                          chat_stream, &sc, err, errlen);
    printf("\n");
    fflush(stdout);
    if (!rc) {
        if (ol > 0 && gen_is_stop(&c->g, out[ol - 1])) ol--;
        TokBytes tb = {0};
        rc = tok_decode(c->tok, out, (size_t)ol, &tb, err, errlen);
        char *clean = rc ? NULL : utf8_clean(tb.data ? tb.data : "", tb.n);
        if (clean) chat_history_add(c, "assistant", clean);
        free(clean);
        tok_bytes_free(&tb);
    }
    free(out);
    tok_ids_free(&ids);
    return rc;
}

// Reads lines until /quit or the end of input.
static int chat_loop(Chat *c, const ChatArgs *a) {
    int tty = isatty(0) && isatty(1);
    char *line = NULL, err[1024];
    size_t cap = 0;
    int rc = 0;
    for (;;) {
        if (tty) { fputs("> ", stdout); fflush(stdout); }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        if (!strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            chat_history_clear(c);
            rng_init(&c->rng, (uint64_t)a->seed);   // as if started afresh: reproducible
            if (a->system) chat_history_add(c, "system", a->system);
            fprintf(stderr, "rlhf chat: new conversation\n");
            continue;
        }
        if (!line[0]) continue;
        char *clean = utf8_clean(line, (size_t)n);
        chat_history_add(c, "user", clean);
        free(clean);
        if (chat_answer(c, err, sizeof err)) {
            fprintf(stderr, "rlhf chat: %s\n", err);
            free((char *)c->hist[--c->n].content);   // forget the turn that failed
            if (!tty) { rc = 1; break; }
        }
    }
    free(line);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    ChatArgs a = {.max_new = 256, .seed = 1234, .temp = 0.7, .topp = 0.9};
    int status;
    CliOption opts[] = {
        CLI_STRING("--tokenizer", &a.tokdir),
        CLI_STRING("--chat-template", &a.tmpl),
        CLI_STRING("--system", &a.system),
        CLI_INT("--max-new-tokens", &a.max_new, 1, 1 << 20),
        CLI_INT("--top-k", &a.topk, 0, 1 << 24),
        CLI_INT("--seed", &a.seed, 0, INT64_MAX),
        CLI_DOUBLE("--temperature", &a.temp, 0, 100),
        CLI_DOUBLE("--top-p", &a.topp, 0, 1),
        {0}};
    CliCommand cmd = {.prog = "rlhf chat", .usage = chat_usage, .opts = opts, .arg_name = "CKPT",
                      .arg = &a.dir};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (!a.dir) return cli_usage_error(&cmd, "needs CKPT");
    Chat c = {0};
    char err[1024];
    int rc = 0;
    if (chat_open(&c, &a, err, sizeof err)) {
        fprintf(stderr, "rlhf chat: %s\n", err);
        rc = 1;
    } else rc = chat_loop(&c, &a);
    chat_free(&c);
    return rc;
}
