// reward label: rankings from a person at the terminal, or from a judge program.
//
// The loop: claim the next prompt that needs a ranking (store_claim_prompt: two labelers at once
// never get the same prompt unless --overlap asks for it), gather its completions (the ones in
// the workspace, or K sampled on the spot from --policy and stored with model = that path), show
// them numbered, read a ranking and commit it at once (one transaction per ranking: a session
// killed at any moment loses nothing already entered).
//
// Interactive (no --judge): reads lines from standard input: a ranking "2>4>1=3" (optionally
// followed by "# comment"), "s" skip (never shown to this labeler again), "u" undo the last
// ranking of this session (deleted, and its prompt comes back), "q" quit (end of input too).
//
// --judge CMD: CMD runs once, through /bin/sh, for the whole session; for each prompt one JSON
// line {"prompt_id": N, "prompt": P, "completions": [C1, ...]} goes to its standard input (plus
// "ended": [true, false, ...] when the completions were sampled just now: which stopped at the
// end token rather than at --max-new) and it
// answers with one line: a ranking ("2>4>1=3" or a JSON array of ranks [2,1,3,1]), a JSON object
// {"ranking": ..., "comment": ...}, or "skip". Texts are sent as valid UTF-8 (invalid bytes as
// U+FFFD). A judge that exits or answers nonsense stops the session with an error (the rankings
// stored so far stay).
//
// Which prompts: those queued for labeling (imported as prompt lines or with rankings; the
// prompts of demonstrations only with `reward import --label-demos`); --source NAME (those a
// source gave, queued or not), --prompts FILE (those whose text the file holds) and --split S
// narrow that choice and combine. With --policy, completions and rankings are keyed to the
// policy's contents (SHA-256 of config.json and the weights' files), not its path: a prompt
// ranked for other contents is sampled and ranked again, one ranked for these is not.
#include "chat.h"
#include "checkpoint.h"
#include "cli.h"
#include "cmd.h"
#include "data.h"
#include "generate.h"
#include "tokenizer.h"
#include "reward.h"
#include "utf8.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define REWARD_JUDGE_MAX_ANSWER ((size_t)1 << 20)   // longest answer line from a judge

typedef struct {
    Store *db;
    const char *db_path, *labeler;
    int64_t labeler_id;
    StoreClaimOptions co;
    int64_t limit;
    // --policy: K completions sampled on the spot
    const char *policy;
    char policy_hash[STORE_HASH_HEX];   // of the policy's contents ('' without --policy)
    Model pol;
    int has_policy;
    Tokenizer *tok;
    Dataset *ds;
    KVCache kv;
    Sampler sm;
    GenConfig g;
    int k;
    uint64_t seed;
    const char *prefix;
    // --judge: one process for the session
    const char *judge;
    pid_t jpid;
    int jin, jout;            // the judge's standard input and output (-1: closed)
    char *jbuf;               // bytes read from the judge, not yet used
    size_t jlen, jcap;
    double jtimeout;          // seconds for one answer (--judge-timeout)
    // this session
    int64_t *undo_rank, *undo_prompt;
    int nundo, capundo;
    int64_t ranked, skipped;
    char *only_ids;           // --prompts: the chosen prompts' ids (JSON array)
    int prompt_rendered;      // the prompt being labeled was rendered with a chat template
    ChatTemplate *chat;       // the policy's chat template (or --chat-template), NULL: none
    LowpFormat prec;          // --precision: the policy's sampling copy (LOWP_FP32: none)
} Label;

typedef struct {
    int n;
    int64_t id[REWARD_MAX_K];
    char *text[REWARD_MAX_K];
    signed char
        ended[REWARD_MAX_K];  // sampled just now: 1 stopped at the end token, 0 cut off; -1 unknown
    int more;                 // the prompt has more completions than REWARD_MAX_K
} Comps;

static void comps_free(Comps *c) {
    for (int i = 0; i < c->n; i++) free(c->text[i]);
    memset(c, 0, sizeof *c);
}

typedef struct {
    Comps *c;
    Store *db;
    const char *policy_hash;  // only completions these policy contents sampled; NULL: all
    char *err;
    size_t errlen;
} CompCtx;
static int collect(const StoreCompletion *sc, void *ctx) {
    CompCtx *x = ctx;
    if (x->policy_hash) {
        int mine;
        if (store_completion_has_policy(x->db, sc->id, x->policy_hash, &mine, x->err, x->errlen))
            return -1;
        if (!mine) return 0;
    }
    if (x->c->n == REWARD_MAX_K) { x->c->more = 1; return 1; }
    x->c->id[x->c->n] = sc->id;
    x->c->ended[x->c->n] = -1;
    x->c->text[x->c->n] = STRDUP_CHECK(sc->text);
    x->c->n++;
    return 0;
}

// ---------------------------------------------------------------------------------------------
// completions

// The KV cache holds K sequences of at least n positions: grown (doubling, up to the context)
// when a prompt needs more, so that it is sized by the prompts, not by a context of 32k.
static int label_kv_reserve(Label *L, int n, char *err, size_t errlen) {
    if (L->kv.memory && L->kv.max_T >= n) return 0;
    int ctx = L->pol.config.max_seq_len, T = L->kv.max_T ? L->kv.max_T : 256;
    while (T < n) T *= 2;
    if (T > ctx) T = ctx;
    kv_free(&L->kv);
    return kv_init(&L->kv, &L->pol, L->k, T, L->k * 64, err, errlen);
}

// K samples of the policy for the prompt, stored as completions with model = the policy's path
// and keyed to its contents (completion_policies), in one transaction.
// ended[b] (K) receives whether sample b stopped at the end token; cids[b] its completion id.
static int sample_completions(Label *L, int64_t pid, const char *prompt, int64_t *cids,
                              signed char *ended, char *err, size_t errlen) {
    TokIds ids = {0};
    if ((L->prompt_rendered ? dataset_encode_rendered_prompt : dataset_encode_prompt)(
            L->ds, prompt, &ids, err, errlen)) { tok_ids_free(&ids); return -1; }
    int ctx = L->pol.config.max_seq_len, Tp = (int)ids.n;
    GenConfig g = L->g;
    if (Tp + g.max_new_tokens > ctx) g.max_new_tokens = ctx - Tp;
    if (g.max_new_tokens <= 0) {
        tok_ids_free(&ids);
        return util_err(err, errlen,
                        "prompt %lld has %d tokens: no room left in the policy's context of %d",
                        (long long)pid, Tp, ctx);
    }
    int K = L->k;
    int32_t *prompts = MALLOC_CHECK((size_t)K * Tp * sizeof(int32_t)),
            *lens = MALLOC_CHECK((size_t)K * sizeof(int32_t));
    int32_t *out = MALLOC_CHECK((size_t)K * g.max_new_tokens * sizeof(int32_t)),
            *olen = MALLOC_CHECK((size_t)K * sizeof(int32_t));
    for (int b = 0; b < K; b++) {
        memcpy(prompts + (size_t)b * Tp, ids.ids, (size_t)Tp * sizeof(int32_t));
        lens[b] = Tp;
    }
    Rng r;   // the same prompt gets the same samples whenever it is labeled
    rng_init(&r, data_hash_u64(data_hash_u64(DATA_HASH_INIT, L->seed), (uint64_t)pid));
    int rc = label_kv_reserve(L, Tp + g.max_new_tokens, err, errlen);
    if (rc == 0)
        rc = gen_generate(&L->pol, &L->kv, &L->sm, &g, &r, prompts, lens, K, Tp, out, olen, NULL,
                          NULL, err, errlen);
    size_t lp = strlen(L->prefix);
    int tx = rc == 0 && store_begin(L->db, err, errlen) == 0;   // all K samples, or none
    if (rc == 0 && !tx) rc = -1;
    for (int b = 0; rc == 0 && b < K; b++) {
        int n = olen[b];
        ended[b] = n > 0 && gen_is_stop(&g, out[(size_t)b * g.max_new_tokens + n - 1]);
        if (ended[b]) n--;
        TokBytes tb = {0};
        if (tok_decode(L->tok, out + (size_t)b * g.max_new_tokens, (size_t)n, &tb, err, errlen)) { rc = -1; break; }
        char *clean = utf8_clean(tb.data ? tb.data : "", tb.n);   // a sample can cut a character
        const char *text = clean;
        if (lp && !L->chat && !L->prompt_rendered && !strncmp(text, L->prefix, lp))
            text += lp;   // the prefix belongs to the built-in rendering
        rc = store_add_completion(L->db, pid, text, L->policy, &cids[b], err, errlen);
        if (rc == 0) rc = store_add_completion_policy(L->db, cids[b], L->policy_hash, err, errlen);
        free(clean);
        tok_bytes_free(&tb);
    }
    if (tx && rc == 0) rc = store_commit(L->db, err, errlen);
    if (tx && rc) store_rollback(L->db, NULL, 0);
    free(prompts); free(lens); free(out); free(olen);
    tok_ids_free(&ids);
    return rc;
}

// The completions to rank for a prompt: with --policy, those its contents sampled (sampled now
// when there are fewer than two); else every completion of the prompt.
static int gather(Label *L, int64_t pid, const char *prompt, Comps *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    CompCtx x = {c, L->db, L->policy ? L->policy_hash : NULL, err, errlen};
    if (store_each_completion(L->db, pid, NULL, collect, &x, err, errlen) < 0) return -1;
    if (L->policy && c->n < 2) {
        comps_free(c);
        int64_t ids[REWARD_MAX_K];
        signed char ended[REWARD_MAX_K];
        if (sample_completions(L, pid, prompt, ids, ended, err, errlen)) return -1;
        x.c = c;
        if (store_each_completion(L->db, pid, NULL, collect, &x, err, errlen) < 0) return -1;
        for (int i = 0; i < c->n; i++)
            for (int b = 0; b < L->k; b++)
                if (ids[b] == c->id[i]) c->ended[i] = ended[b];
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// the judge

static int judge_start(Label *L, char *err, size_t errlen) {
    int in[2], out[2];
    if (pipe(in) || pipe(out)) return util_err(err, errlen, "pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) return util_err(err, errlen, "fork: %s", strerror(errno));
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execl("/bin/sh", "sh", "-c", L->judge, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    fcntl(out[0], F_SETFD, FD_CLOEXEC);
    fcntl(in[1], F_SETFL,
          fcntl(in[1], F_GETFL) | O_NONBLOCK); // writes and reads wait in poll, with the timeout
    fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
    L->jpid = pid;
    L->jin = in[1];
    L->jout = out[0];
    return 0;
}

// Closes the judge's input and waits for it (a judge still running 5 s after its input ended, 0.5 s
// when a signal stops the session, gets SIGTERM); returns its exit status (-1: killed by a signal).
static int judge_stop(Label *L) {
    if (!L->jpid) return 0;
    if (L->jin >= 0) close(L->jin);
    if (L->jout >= 0) close(L->jout);
    L->jin = L->jout = -1;
    int st = 0;
    pid_t got = 0;
    int tries = cli_stop_signal() ? 50 : 500;   // stopping on a signal: 0.5 s, not 5
    for (int i = 0; i < tries && (got = waitpid(L->jpid, &st, WNOHANG)) == 0; i++) usleep(10000);
    if (got == 0) {
        fprintf(stderr,
                "reward label: the judge did not exit when its input ended: terminating it\n");
        kill(L->jpid, SIGTERM);
        while (waitpid(L->jpid, &st, 0) < 0 && errno == EINTR) {}
    }
    L->jpid = 0;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Waits until fd is ready for ev (POLLIN or POLLOUT) or the deadline passes: 1 ready, 0 timed
// out, -1 a stop signal arrived (cli_stop_signal).
static int judge_wait(int fd, short ev, double deadline) {
    for (;;) {
        if (cli_stop_signal()) return -1;
        double left = deadline - util_time_s();
        if (left <= 0) return 0;
        struct pollfd p = {.fd = fd, .events = ev};
        int ms = left > 1.0 ? 1000 : (int)(left * 1000) + 1;
        int r = poll(&p, 1, ms);
        if (r > 0) return 1;
        if (r < 0 && errno != EINTR) return 1;   // the read or write that follows reports it
    }
}

static int judge_timeout_err(const Label *L, int64_t pid, const char *doing, char *err,
                             size_t errlen) {
    return util_err(
        err, errlen,
        "the judge (%s) %s prompt %lld within %g s (--judge-timeout): a judge must answer each request "
        "line as it arrives (one JSON line in, one line out, flushed), not read its input to the end first",
        L->judge, doing, (long long)pid, L->jtimeout);
}

static int judge_write(Label *L, int64_t pid, const char *buf, size_t n, double deadline, char *err,
                       size_t errlen) {
    while (n > 0) {
        int w8 = judge_wait(L->jin, POLLOUT, deadline);
        if (w8 < 0) return util_err(err, errlen, "interrupted by %s while sending prompt %lld to the judge", cli_stop_name(), (long long)pid);
        if (w8 == 0) return judge_timeout_err(L, pid, "did not read", err, errlen);
        ssize_t k = write(L->jin, buf, n);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (k < 0)
            return util_err(
                err, errlen,
                "the judge (%s) stopped reading (prompt %lld): %s; it exited or closed its input",
                L->judge, (long long)pid, strerror(errno));
        buf += k;
        n -= (size_t)k;
    }
    return 0;
}

// Reads one line (at most REWARD_JUDGE_MAX_ANSWER bytes) from the judge into *reply (malloc'd,
// without the line end).
static int judge_read_line(Label *L, int64_t pid, char **reply, double deadline, char *err,
                           size_t errlen) {
    for (;;) {
        char *nl = L->jlen ? memchr(L->jbuf, '\n', L->jlen) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - L->jbuf);
            if (memchr(L->jbuf, 0, n))
                return util_err(
                    err, errlen,
                    "the judge's answer for prompt %lld holds a NUL byte: not a text line",
                    (long long)pid);
            char *r = MALLOC_CHECK(n + 1);
            memcpy(r, L->jbuf, n);
            r[n] = 0;
            while (n > 0 && r[n - 1] == '\r') r[--n] = 0;
            L->jlen -= (size_t)(nl - L->jbuf) + 1;
            memmove(L->jbuf, nl + 1, L->jlen);
            *reply = r;
            return 0;
        }
        if (L->jlen > REWARD_JUDGE_MAX_ANSWER || (L->jlen && memchr(L->jbuf, 0, L->jlen)))
            return util_err(
                err, errlen,
                "the judge's answer for prompt %lld is %s (%zu bytes read): not a ranking line",
                (long long)pid,
                L->jlen > REWARD_JUDGE_MAX_ANSWER ? "longer than 1 MiB" : "binary, with NUL bytes",
                L->jlen);
        int w8 = judge_wait(L->jout, POLLIN, deadline);
        if (w8 < 0) return util_err(err, errlen, "interrupted by %s while waiting for the judge's answer to prompt %lld", cli_stop_name(), (long long)pid);
        if (w8 == 0) return judge_timeout_err(L, pid, "did not answer", err, errlen);
        if (L->jcap - L->jlen < 65536) {
            L->jcap = L->jcap ? 2 * L->jcap : 65536 * 2;
            L->jbuf = REALLOC_CHECK(L->jbuf, L->jcap);
        }
        ssize_t k = read(L->jout, L->jbuf + L->jlen, L->jcap - L->jlen);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (k <= 0)
            return util_err(err, errlen, "the judge (%s) %s without answering prompt %lld (%s)",
                            L->judge, k == 0 ? "exited" : "could not be read", (long long)pid,
                            k < 0     ? strerror(errno)
                            : L->jlen ? "its last output had no line end"
                                      : "it exited or closed its output");
        L->jlen += (size_t)k;
    }
}

// Sends the prompt and reads the reply line into *reply (malloc'd, without the newline).
static int judge_ask(Label *L, int64_t pid, const char *prompt, const Comps *c, char **reply,
                     char *err, size_t errlen) {
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    char *p = rm_text_clean(prompt, 0);
    cJSON_AddNumberToObject(o, "prompt_id", (double)pid);
    cJSON_AddStringToObject(o, "prompt", p);
    free(p);
    for (int i = 0; i < c->n; i++) {
        char *t = rm_text_clean(c->text[i], 0);
        cJSON_AddItemToArray(arr, cJSON_CreateString(t));
        free(t);
    }
    cJSON_AddItemToObject(o, "completions", arr);
    int known = 1;   // "ended" only when it is known for every completion (sampled just now)
    for (int i = 0; i < c->n; i++) known &= c->ended[i] >= 0;
    if (known) {
        cJSON *e = cJSON_CreateArray();
        for (int i = 0; i < c->n; i++) cJSON_AddItemToArray(e, cJSON_CreateBool(c->ended[i]));
        cJSON_AddItemToObject(o, "ended", e);
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) DIE("out of memory");
    size_t n = strlen(line);
    line[n] = '\n';   // the request is one line: cJSON escapes every newline inside strings
    double deadline = util_time_s() + L->jtimeout;
    int rc = judge_write(L, pid, line, n + 1, deadline, err, errlen);
    free(line);
    if (rc == 0) rc = judge_read_line(L, pid, reply, deadline, err, errlen);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// one prompt

static void show(Label *L, int64_t pid, const StorePrompt *p, const Comps *c) {
    char *t = rm_text_clean(p->text, 0);
    printf("\n---- prompt %lld (%s) -- %lld ranked, %lld skipped this session ----\n%s\n\n",
           (long long)pid, p->split, (long long)L->ranked, (long long)L->skipped, t);
    free(t);
    for (int i = 0; i < c->n; i++) {
        char *x = rm_text_clean(c->text[i], 0);
        printf("[%d] ", i + 1);
        for (const char *q = x; *q; q++) {
            putchar(*q);
            if (*q == '\n') fputs("    ", stdout);
        }
        if (c->ended[i] == 0) fputs("  (cut off: no end token within --max-new)", stdout);
        putchar('\n');
        free(x);
    }
    if (c->more) printf("(only the first %d completions of this prompt are shown)\n", REWARD_MAX_K);
}

static int push_undo(Label *L, int64_t rid, int64_t pid) {
    if (L->nundo == L->capundo) {
        L->capundo = L->capundo ? 2 * L->capundo : 16;
        L->undo_rank = REALLOC_ARRAY(L->undo_rank, (size_t)L->capundo, sizeof(int64_t));
        L->undo_prompt = REALLOC_ARRAY(L->undo_prompt, (size_t)L->capundo, sizeof(int64_t));
    }
    L->undo_rank[L->nundo] = rid;
    L->undo_prompt[L->nundo++] = pid;
    return 0;
}

static int commit(Label *L, int64_t pid, const Comps *c, const int *ranks, const char *comment,
                  int64_t *rid, char *err, size_t errlen) {
    StoreRankItem items[REWARD_MAX_K];
    for (int i = 0; i < c->n; i++) { items[i].completion_id = c->id[i]; items[i].rank = ranks[i]; }
    if (store_add_policy_ranking(L->db, pid, L->labeler_id, items, c->n, comment,
                                 L->policy ? L->policy_hash : NULL, rid, err, errlen))
        return -1;
    push_undo(L, *rid, pid);
    L->ranked++;
    return 0;
}

enum { NEXT = 0, QUIT = 1 };

// Interactive: reads commands until the prompt is ranked, skipped or the session ends.
static int ask_person(Label *L, int64_t pid, const Comps *c, char *err, size_t errlen) {
    char *line = NULL;
    size_t cap = 0;
    int rc = NEXT;
    for (;;) {
        printf("rank (e.g. 2>1=3), s skip, u undo, q quit> ");
        fflush(stdout);
        // wait for input in poll (which a signal interrupts) rather than in read (which it does not)
        struct pollfd pf = {.fd = 0, .events = POLLIN};
        while (!cli_stop_signal() && poll(&pf, 1, 1000) == 0) {}
        if (cli_stop_signal()) { putchar('\n'); rc = QUIT; break; }
        ssize_t n = getline(&line, &cap, stdin);
        if (n < 0) { putchar('\n'); rc = QUIT; break; }
        RewardAnswer a;
        char perr[512];
        if (reward_parse_answer(line, c->n, 0, &a, perr, sizeof perr)) {
            printf("%s\n", perr);
            continue;
        }
        if (a.kind == REWARD_ANSWER_NONE) continue;
        if (a.kind == REWARD_ANSWER_QUIT) { rc = QUIT; break; }
        if (a.kind == REWARD_ANSWER_HELP) {
            printf(
                "Rank the completions best first: 2>1>3; '=' marks a tie (2>1=3); '# text' adds a comment.\n"
                "s: skip this prompt (you will not see it again)  u: undo your last ranking  q: quit\n"
                "Each ranking is saved the moment you press Enter.\n");
            continue;
        }
        if (a.kind == REWARD_ANSWER_SKIP) {
            if (store_release_prompt(L->db, L->labeler_id, pid, 1, err, errlen)) { rc = -1; break; }
            L->skipped++;
            printf("skipped prompt %lld\n", (long long)pid);
            break;
        }
        if (a.kind == REWARD_ANSWER_UNDO) {
            if (!L->nundo) { printf("nothing to undo in this session\n"); continue; }
            int64_t rid = L->undo_rank[L->nundo - 1], upid = L->undo_prompt[L->nundo - 1];
            // deleted and claimed back in one transaction: nobody else can take the prompt
            if (store_undo_ranking(L->db, L->labeler_id, rid, 0, L->co.lease_s, NULL, NULL, err,
                                   errlen)) { rc = -1; break; }
            L->nundo--;
            L->ranked--;
            printf("undone: ranking %lld of prompt %lld; it comes back\n", (long long)rid,
                   (long long)upid);
            break;   // this prompt stays claimed: both come back, the lower id first
        }
        int64_t rid;
        int crc = commit(L, pid, c, a.ranks, a.comment, &rid, err, errlen);
        if (crc == 0) {
            char f[512];
            reward_format_ranking(a.ranks, c->n, f, sizeof f);
            printf("saved: %s (ranking %lld)\n", f, (long long)rid);
        }
        reward_answer_free(&a);
        if (crc) rc = -1;
        break;
    }
    fflush(stdout);
    free(line);
    return rc;
}

static int ask_judge(Label *L, int64_t pid, const char *prompt, const Comps *c, char *err,
                     size_t errlen) {
    char *reply = NULL;
    if (judge_ask(L, pid, prompt, c, &reply, err, errlen)) return -1;
    RewardAnswer a;
    char perr[512];
    int rc = -1;
    if (reward_parse_answer(reply, c->n, 1, &a, perr, sizeof perr))
        util_err(err, errlen, "the judge's answer for prompt %lld: %s", (long long)pid, perr);
    else if (a.kind == REWARD_ANSWER_NONE)
        util_err(err, errlen, "the judge's answer for prompt %lld is an empty line",
                 (long long)pid);
    else if (a.kind == REWARD_ANSWER_SKIP) {
        if (store_release_prompt(L->db, L->labeler_id, pid, 1, err, errlen) == 0) {
            L->skipped++;
            rc = NEXT;
        }
    } else {
        int64_t rid;
        if (commit(L, pid, c, a.ranks, a.comment, &rid, err, errlen) == 0) rc = NEXT;
    }
    reward_answer_free(&a);
    free(reply);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// the session

static int session(Label *L, char *err, size_t errlen) {
    int interactive = !L->judge;
    if (interactive)
        printf(
            "Labeling as %s in %s. Rank the completions best first (2>1=3); s skip, u undo, q quit, ? help.\n"
            "Each ranking is saved the moment you press Enter.\n",
            L->labeler, L->db_path);
    CliProgress pr;
    cli_progress_start(&pr, stderr, "reward label", L->limit);
    for (;;) {
        if (L->limit && L->ranked >= L->limit) break;
        if (cli_stop_signal()) break;
        if (!interactive) {
            char extra[64];
            snprintf(extra, sizeof extra, "ranked, %lld skipped", (long long)L->skipped);
            cli_progress_update(&pr, L->ranked, extra);
        }
        int64_t pid;
        if (store_claim_prompt(L->db, L->labeler_id, &L->co, &pid, err, errlen)) return -1;
        if (!pid) {
            if (interactive) printf("nothing left to label\n");
            break;
        }
        StorePrompt p = {0};
        Comps c;
        char e2[512];
        if (store_get_prompt(L->db, pid, &p, err, errlen)) {
            store_release_prompt(L->db, L->labeler_id, pid, 0, e2, sizeof e2);
            return -1;
        }
        L->prompt_rendered = p.rendered;
        if (gather(L, pid, p.text, &c, err, errlen)) {
            comps_free(&c);
            store_prompt_free(&p);
            if (!L->policy) {
                store_release_prompt(L->db, L->labeler_id, pid, 0, e2, sizeof e2);
                return -1;
            }
            // a prompt the policy cannot answer (too long, not UTF-8): not this labeler's to rank
            fprintf(stderr, "reward label: prompt %lld skipped: %s\n", (long long)pid, err);
            if (store_release_prompt(L->db, L->labeler_id, pid, 1, err, errlen)) return -1;
            L->skipped++;
            continue;
        }
        int rc;
        if (c.n < 2) {
            fprintf(stderr,
                    "reward label: prompt %lld has fewer than 2 distinct completions: skipped\n",
                    (long long)pid);
            rc = store_release_prompt(L->db, L->labeler_id, pid, 1, err, errlen) ? -1 : NEXT;
            L->skipped++;
        } else if (interactive) {
            show(L, pid, &p, &c);
            rc = ask_person(L, pid, &c, err, errlen);
        } else rc = ask_judge(L, pid, p.text, &c, err, errlen);
        comps_free(&c);
        store_prompt_free(&p);
        if (rc != NEXT) {
            // give the prompt back so that another session can take it at once
            if (store_release_prompt(L->db, L->labeler_id, pid, 0, e2, sizeof e2) && rc >= 0) {
                snprintf(err, errlen, "%s", e2);
                return -1;
            }
            if (rc < 0) return -1;
            break;
        }
    }
    if (!interactive) cli_progress_end(&pr);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// which prompts, and the policy's identity

// What label_policy_hash gathers: "name=sha256\n" per file of the model, and where errors go.
typedef struct {
    char *text;
    size_t n, cap;
    char *err;
    size_t errlen;
} PolicyFiles;

static int policy_files_add(const char *path, const char *name, void *ctx) {
    PolicyFiles *pf = ctx;
    char hex[STORE_HASH_HEX];
    if (store_hash_file(path, hex, pf->err, pf->errlen)) return -1;
    size_t need = strlen(name) + STORE_HASH_HEX + 3;
    if (pf->n + need > pf->cap) {
        pf->cap = 2 * (pf->n + need);
        pf->text = REALLOC_CHECK(pf->text, pf->cap);
    }
    pf->n += (size_t)snprintf(pf->text + pf->n, pf->cap - pf->n, "%s=%s\n", name, hex);
    return 0;
}

// The policy's contents: SHA-256 over the hashes of the files its model comes from, in
// ckpt_model_files' order (config.json and model.safetensors, or the index and its shards; in
// DIR.old when DIR is absent, as the checkpoint loaders read it).
static int label_policy_hash(const char *dir, char out[STORE_HASH_HEX], char *err, size_t errlen) {
    PolicyFiles pf = {.err = err, .errlen = errlen};
    int rc = ckpt_model_files(dir, policy_files_add, &pf, err, errlen);
    if (rc == 0) store_hash_bytes(pf.text, pf.n, out);
    free(pf.text);
    return rc ? -1 : 0;
}

// The text of one line of a prompts file: a JSONL line's "prompt" (FILE ends in .jsonl), else
// the line itself. NULL with a message on a bad JSONL line; *json receives what to free.
static const char *prompts_line_text(const char *path, int64_t lineno, char *line, int jsonl,
                                     cJSON **json, char *err, size_t errlen) {
    *json = NULL;
    if (lineno == 1 && !strncmp(line, "\xEF\xBB\xBF", 3)) line += 3;   // a byte order mark
    if (!jsonl) return line;
    *json = cJSON_Parse(line);
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(*json, "prompt");
    if (!cJSON_IsString(v)) {
        util_err(err, errlen, "%s:%lld: expected a JSON object with a \"prompt\" string", path,
                 (long long)lineno);
        return NULL;
    }
    return v->valuestring;
}

// --prompts FILE: the ids of the workspace's prompts whose text the file holds, as a JSON array
// (malloc'd) for the claim. A file none of whose prompts is in the workspace is an error.
static int prompts_file_ids(Store *db, const char *path, char **ids_json, char *err,
                            size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "--prompts %s: %s", path, strerror(errno));
    size_t n = strlen(path);
    int jsonl = n >= 6 && !strcmp(path + n - 6, ".jsonl");
    size_t cap = 64, len = 1;
    char *out = MALLOC_CHECK(cap);
    strcpy(out, "[");
    CliLines lr = {0};
    int64_t got, known = 0, unknown = 0;
    int rc = 0;
    while (rc == 0 && (got = cli_getline(&lr, f, path, err, errlen)) >= 0) {
        size_t m = (size_t)got;
        while (m && (lr.buf[m - 1] == '\n' || lr.buf[m - 1] == '\r')) lr.buf[--m] = 0;
        if (!m) continue;
        cJSON *j;
        const char *text = prompts_line_text(path, lr.line, lr.buf, jsonl, &j, err, errlen);
        int64_t id = 0;
        if (!text || store_find_prompt(db, text, &id, err, errlen)) rc = -1;
        cJSON_Delete(j);
        if (rc || !id) { unknown += !rc; continue; }
        while (cap - len < 24) out = REALLOC_CHECK(out, cap *= 2);
        len += (size_t)snprintf(out + len, cap - len, "%s%lld", known++ ? "," : "", (long long)id);
    }
    if (rc == 0 && got < -1) rc = -1;
    cli_lines_free(&lr);
    fclose(f);
    strcpy(out + len, "]");
    if (rc == 0 && known == 0)
        rc = util_err(err, errlen,
                      "--prompts %s: none of its %lld prompts is in the workspace (reward import "
                      "them first; %s)",
                      path, (long long)unknown,
                      jsonl ? "a .jsonl file's lines are {\"prompt\": ...}"
                            : "one prompt per line; a .jsonl file for prompts with line ends");
    if (rc == 0 && unknown)
        fprintf(stderr, "reward label: --prompts %s: %lld of its prompts are not in the workspace "
                        "(not labeled)\n", path, (long long)unknown);
    if (rc) { free(out); out = NULL; }
    *ids_json = out;
    return rc;
}

// Checks the choice of prompts against the workspace: a source that gave no prompt, a prompts
// file with none of the workspace's, are errors.
static int label_choose(Label *L, const char *prompts_file, char *err, size_t errlen) {
    if (L->co.source) {
        int64_t n;
        if (store_count_source(L->db, L->co.source, &n, err, errlen)) return -1;
        if (n == 0)
            return util_err(err, errlen,
                            "--source '%s': no prompt of the workspace came from it (a source is "
                            "an import's --source, else the imported file's name)",
                            L->co.source);
    }
    if (prompts_file && prompts_file_ids(L->db, prompts_file, &L->only_ids, err, errlen)) return -1;
    L->co.only_ids = L->only_ids;
    return 0;
}

static const char *label_usage =
    "usage: reward label --workspace DB --labeler NAME [options]\n"
    "Shows the prompts that need rankings with their completions, numbered, and stores the ranking\n"
    "typed for each (best first: 2>4>1=3, '=' for ties, '# text' adds a comment; s skip, u undo the\n"
    "last ranking, q quit). Each ranking is committed the moment it is entered. Several labelers may\n"
    "work on one workspace at once: they never get the same prompt unless --overlap asks for it.\n"
    "  --judge CMD           rank with a program instead of a person: CMD (run once, by /bin/sh) gets\n"
    "                        one JSON line {\"prompt_id\", \"prompt\", \"completions\": [...]} per prompt on\n"
    "                        stdin and answers one line: 2>1=3, [2,1,3,1], {\"ranking\": .., \"comment\": ..}\n"
    "                        or skip\n"
    "  --policy CKPT         sample --k completions of each prompt from CKPT (stored, model = CKPT,\n"
    "                        keyed to CKPT's contents: a prompt ranked for other contents is\n"
    "                        sampled and ranked again); without it, the prompts' completions in\n"
    "                        the workspace are ranked\n"
    "    --k K               completions per prompt (default 4)\n"
    "    --max-new N         new tokens per completion (default 64)\n"
    "    --temperature T     (default 1)   --top-k K (default 0 = all)   --top-p P (default 1)\n"
    "    --seed S            sampling seed (default 1234; a prompt always gets the same samples)\n"
    "    --precision P       weights sampled from: fp32 (default), bf16 or int8 copies\n"
    "    --tokenizer DIR     tokenizer files when CKPT has none\n"
    "    --prompt-template T / --response-prefix P   rendering (defaults as SFT)\n"
    "    --chat-template T   chat template instead of the policy's tokenizer_config.json one\n"
    "  --overlap N           labelers wanted per prompt (default 1; 2+ measures agreement)\n"
    "Which prompts: those imported to be labeled (prompt lines, rankings; demonstrations only with\n"
    "reward import --label-demos); these narrow the choice and combine:\n"
    "  --source NAME         only prompts imported from source NAME (import --source, else the\n"
    "                        file's name), queued or not\n"
    "  --prompts FILE        only prompts whose text is in FILE (.jsonl: {\"prompt\"} lines; else one\n"
    "                        prompt per line), queued or not\n"
    "  --split S             only prompts of split S (train, valid, test)\n"
    "  --limit N             stop after N rankings\n"
    "  --lease SECONDS       how long a shown prompt is kept from other labelers (default 3600)\n";

static void label_free(Label *L) {
    if (L->has_policy) {
        kv_free(&L->kv);
        sampler_free(&L->sm);
        model_free(&L->pol);
    }
    dataset_free(L->ds);
    chat_template_free(L->chat);
    tok_free(L->tok);
    free(L->undo_rank);
    free(L->undo_prompt);
    free(L->jbuf);
    free(L->only_ids);
    store_close(L->db);
}

// --policy: the model completions are sampled from, its tokenizer, chat template and stop ids,
// and the hash its completions are stored under.
static int label_load_policy(Label *L, const char *tokdir, const char *tmpl, const char *ctmpl,
                             char *err, size_t errlen) {
    if (ckpt_load_model(L->policy, &L->pol, 1, 1, 0, CKPT_IGNORE_SCORE, err, errlen) ||
        model_lowp_attach(&L->pol, L->prec, 0, err, errlen))
        return -1;
    L->has_policy = 1;
    if (!L->pol.config.lm_head)
        return util_err(err, errlen, "%s has no LM head: --policy needs a language model",
                        L->policy);
    const char *td = tokdir ? tokdir : L->policy;
    if (tok_load(&L->tok, td, err, errlen) ||
        chat_template_load(&L->chat, td, ctmpl, err, errlen))
        return -1;
    DatasetOptions o = {.prompt_template = tmpl, .chat = L->chat,
                        .response_prefix = L->prefix,
                        .max_tokens = L->pol.config.max_seq_len};
    if (dataset_create(&L->ds, L->tok, &o, err, errlen)) return -1;
    sampler_init(&L->sm, L->pol.config.vocab_size);
    L->g.eot_id = tok_eot(L->tok);
    if (chat_stop_ids(L->chat, L->tok, L->policy, L->g.stop_ids, GEN_MAX_STOP, &L->g.n_stop, err,
                      errlen) ||
        label_policy_hash(L->policy, L->policy_hash, err, errlen))
        return -1;
    L->co.policy_hash = L->policy_hash;
    return 0;
}

int cmd_label(int argc, char **argv) {
    Label L;
    memset(&L, 0, sizeof L);
    L.k = 4;
    L.seed = 1234;
    L.g = (GenConfig){.max_new_tokens = 64,
                      .sampler = {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f}};
    const char *tokdir = NULL, *tmpl = NULL, *prompts_file = NULL, *ctmpl = NULL;
    L.prefix = DATASET_DEFAULT_RESPONSE_PREFIX;
    L.jin = L.jout = -1;
    L.jtimeout = 60;
    char err[1024];
    int rc = 1, started = 0, status;
    int64_t k = L.k, max_new = L.g.max_new_tokens, top_k = L.g.sampler.top_k,
            seed = (int64_t)L.seed;
    int64_t overlap = 0;
    double temperature = L.g.sampler.temperature, top_p = L.g.sampler.top_p;
    CliOption opts[] = {
        CLI_STRING("--workspace", &L.db_path, .required = 1),
        CLI_STRING("--labeler", &L.labeler, .required = 1),
        CLI_STRING("--judge", &L.judge),
        CLI_STRING("--policy", &L.policy),
        CLI_STRING("--tokenizer", &tokdir),
        CLI_STRING("--prompt-template", &tmpl),
        CLI_STRING("--chat-template", &ctmpl),
        CLI_STRING("--response-prefix", &L.prefix),
        CLI_STRING("--split", &L.co.split),
        CLI_STRING("--source", &L.co.source),
        CLI_STRING("--prompts", &prompts_file),
        CLI_INT("--k", &k, 2, REWARD_MAX_K),
        CLI_INT("--max-new", &max_new, 1, 1 << 20),
        CLI_DOUBLE("--temperature", &temperature, 0, 100),
        CLI_INT("--top-k", &top_k, 0, 1 << 30),
        CLI_DOUBLE("--top-p", &top_p, 0, 1),
        CLI_INT("--seed", &seed, 0, INT64_MAX),
        CLI_INT("--overlap", &overlap, 1, 1000),
        CLI_INT("--limit", &L.limit, 1, INT64_MAX),
        CLI_DOUBLE("--judge-timeout", &L.jtimeout, 0.001, 1e9),
        CLI_DOUBLE("--lease", &L.co.lease_s, 1, 1e9),
        CLI_CUSTOM("--precision", lowp_cli_precision, &L.prec),
        {0}};
    CliCommand cmd = {
        .prog = "reward label", .usage = label_usage, .opts = opts, .value_status = 1};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    L.k = (int)k;
    L.g.max_new_tokens = (int)max_new;
    L.g.sampler.temperature = (float)temperature;
    L.g.sampler.top_k = (int)top_k;
    L.g.sampler.top_p = (float)top_p;
    L.seed = (uint64_t)seed;
    L.co.overlap = (int)overlap;
    if (!*L.labeler) { snprintf(err, sizeof err, "--labeler is empty"); goto bad; }
    if (L.co.split && !store_split_valid(L.co.split)) {
        snprintf(err, sizeof err, "--split '%s': expected train, valid or test", L.co.split);
        goto bad;
    }
    if (L.judge && !*L.judge) { snprintf(err, sizeof err, "--judge is empty"); goto bad; }
    if (L.prec && !L.policy) {
        snprintf(err, sizeof err, "--precision needs --policy (the model it samples from)");
        goto bad;
    }
    if (L.co.source && !*L.co.source) { snprintf(err, sizeof err, "--source is empty"); goto bad; }
    L.co.min_completions = L.policy ? 0 : 2;
    signal(SIGPIPE, SIG_IGN);   // a judge that dies shows up as a write error, not a silent exit
    // the judge first, while this process holds no database and no model
    if (L.judge && judge_start(&L, err, sizeof err)) goto bad;
    if (store_open(&L.db, L.db_path, err, sizeof err) ||
        store_add_labeler(L.db, L.labeler, &L.labeler_id, err, sizeof err) ||
        label_choose(&L, prompts_file, err, sizeof err))
        goto out;
    if (L.policy && label_load_policy(&L, tokdir, tmpl, ctmpl, err, sizeof err)) goto out;
    started = 1;
    cli_stop_defer();   // from here on a signal ends the session cleanly: the prompt given back
    if (!L.judge) setvbuf(stdin, NULL, _IONBF, 0); // poll on fd 0 then sees every byte not yet read
    if (session(&L, err, sizeof err) == 0) rc = cli_stop_signal() ? cli_stop_code() : 0;
out:
    if (L.judge) {
        int js = judge_stop(&L);
        if (js != 0 && rc == 0)
            fprintf(stderr, "reward label: warning: the judge exited with status %d\n", js);
    }
    if (started)
        fprintf(stderr, "reward label: %lld rankings saved, %lld prompts skipped in this session\n",
                (long long)L.ranked, (long long)L.skipped);
    if (rc == cli_stop_code() && cli_stop_signal()) {
        fprintf(stderr, "reward label: interrupted by %s; the rankings entered are saved\n", cli_stop_name());
        rc = -rc;   // not an error message
    }
    if (rc > 0)
        fprintf(stderr, "reward label: %s\n", err); // the error last: one line, what went wrong
    if (rc < 0) rc = -rc;
    if (rc == 1 && cli_stop_signal()) rc = cli_stop_code();
    label_free(&L);
    return rc;
bad:
    fprintf(stderr, "reward label: %s\n", err);
    if (L.judge) judge_stop(&L);
    return 1;
}
