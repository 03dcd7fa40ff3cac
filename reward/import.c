// reward import: rankings from JSONL files into the workspace database, one transaction per file.
//
// One JSON object per line (blank lines skipped; CRLF and a UTF-8 byte order mark accepted):
//   pairwise   {"prompt": P, "chosen": A, "rejected": B}                   -> ranking A > B
//   HH         {"chosen": TRANSCRIPT, "rejected": TRANSCRIPT}               (Anthropic HH-RLHF)
//              each transcript is cut at its last "\n\nAssistant:"; the parts before must be equal
//              and become the prompt (a leading "\n\nHuman: " removed, so that the default
//              template "Human: {prompt}\n\nAssistant:" renders the conversation as it was), the
//              parts after are the responses (one leading space removed: the response prefix
//              " " puts it back)
//   K-wise     {"prompt": P, "completions": [C1, ..., Ck], "ranking": R}   2 <= k <= 64
//              R: the rank of each completion ([2, 1, 3, 1]: 1 = best, equal = tie) or the typed
//              form "2>4>1=3" (completion numbers, best first)
//   prompt     {"prompt": P}                                 -> a prompt without completions, for
//              `reward label` (which samples completions) and PPO (data.format db)
//   demo       {"prompt": P, "response": R}                  -> a prompt and its demonstration (SFT
//              data): the bias that makes demonstrations score 0 uses them. Its prompt is not
//              queued for `reward label` unless --label-demos (label --source still reaches it)
// Conversational lines (TRL's format): "prompt" may be a message list ({"role", "content"}, ending
// with a user turn), rendered with the chat template and the generation prompt (--tokenizer DIR's
// tokenizer_config.json, or --chat-template; without one, a lone user message is its content);
//   {"prompt": [messages], "chosen": [assistant message], "rejected": [assistant message]}
//   {"chosen": [messages], "rejected": [messages]}   the same conversation up to the last message
//              (the prompt), then one assistant message each (the completions)
// Every prompt's source (--source, else the file's base name) is recorded (prompt_sources), so
// that `reward label --source` can choose a file's prompts.
// Optional keys on any line: "labeler" (default: --labeler, else the file's base name), "split"
// (train|valid|test; default: --split, else by the prompt's hash), "comment", "model" (what
// produced the completions; default --model, else ''). Other keys are ignored.
// A line whose chosen and rejected are the same text compares nothing: it is skipped and counted.
// Any bad line (JSON, UTF-8, a missing or mistyped key, a bad ranking, a NUL character) is an
// error "FILE:LINE: ..." and nothing of that file is stored.
#include "chat.h"
#include "cli.h"
#include "cmd.h"
#include "reward.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>

typedef struct {
    Store *s;
    const ImportOptions *o;
    const char *path, *source, *labeler;
    int64_t labeler_id;       // of the default labeler
    int64_t lineno;
    char *err;
    size_t errlen;
} Ctx;

#define LINE_ERR(c, ...) line_err((c), __VA_ARGS__)
__attribute__((format(printf, 2, 3))) static int line_err(Ctx *c, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return util_err(c->err, c->errlen, "%s:%lld: %s", c->path, (long long)c->lineno, msg);
}

// A JSON string may hold \u0000, which a C string cannot: find it in the raw line.
static int has_nul_escape(const char *line) {
    for (const char *p = line; *p; p++)
        if (*p == '\\') {
            if (p[1] == 'u' && !strncmp(p + 2, "0000", 4)) return 1;
            if (p[1]) p++;
        }
    return 0;
}

// The string value of key, or NULL when absent (*bad = 1 when present but not a string).
static const char *get_str(Ctx *c, const cJSON *o, const char *key, int required, int *bad) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!v) {
        if (required) { LINE_ERR(c, "missing key \"%s\"", key); *bad = 1; }
        return NULL;
    }
    if (!cJSON_IsString(v)) { LINE_ERR(c, "\"%s\" must be a string", key); *bad = 1; return NULL; }
    size_t n = strlen(v->valuestring);
    if (rm_utf8_valid_len(v->valuestring, n) != n) {
        LINE_ERR(c, "\"%s\" is not valid UTF-8", key);
        *bad = 1;
        return NULL;
    }
    return v->valuestring;
}

// HH transcript: prompt and response of one side. Returns malloc'd prompt and a pointer into t.
static int split_hh(Ctx *c, const char *t, const char *side, char **prompt, const char **resp) {
    const char *mark = "\n\nAssistant:", *last = NULL;
    for (const char *p = strstr(t, mark); p; p = strstr(p + 1, mark)) last = p;
    if (!last)
        return LINE_ERR(
            c, "\"%s\" has no \"\\n\\nAssistant:\" turn (an Anthropic HH transcript was expected)",
            side);
    const char *start = t;
    if (!strncmp(start, "\n\nHuman: ", 9)) start += 9;
    else if (!strncmp(start, "Human: ", 7)) start += 7;
    size_t n = start <= last ? (size_t)(last - start) : 0;
    *prompt = MALLOC_CHECK(n + 1);
    memcpy(*prompt, start, n);
    (*prompt)[n] = 0;
    *resp = last + strlen(mark);
    if (**resp == ' ') (*resp)++;
    return 0;
}

// One line's ranking as read, before it is stored.
typedef struct {
    const char *prompt, *split, *labeler, *comment, *model;
    const char *texts[REWARD_MAX_K];   // (k) the completions
    int ranks[REWARD_MAX_K];           // (k) 1 best, equal = tie
    int k;
    char *hh_prompt, *hh_prompt2, *rtext;   // owned: an HH line's prompts, the ranking's text
    int rendered;   // the prompt is a message list rendered with the chat template
} LineRanking;

// A K-wise line: "completions" (2..REWARD_MAX_K strings) and "ranking" (ranks or "2>1=3").
static int read_kwise(Ctx *c, const cJSON *o, const cJSON *comps, LineRanking *l) {
    int bad = 0;
    if (!l->prompt) {
        get_str(c, o, "prompt", 1, &bad);
        return -1;
    }
    if (!cJSON_IsArray(comps)) return LINE_ERR(c, "\"completions\" must be an array of strings");
    l->k = cJSON_GetArraySize(comps);
    if (l->k < 2 || l->k > REWARD_MAX_K)
        return LINE_ERR(c, "\"completions\" has %d items; a ranking needs 2..%d", l->k, REWARD_MAX_K);
    int i = 0;
    for (const cJSON *e = comps->child; e; e = e->next, i++) {
        if (!cJSON_IsString(e)) return LINE_ERR(c, "completion %d is not a string", i + 1);
        size_t n = strlen(e->valuestring);
        if (rm_utf8_valid_len(e->valuestring, n) != n)
            return LINE_ERR(c, "completion %d is not valid UTF-8", i + 1);
        l->texts[i] = e->valuestring;
    }
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "ranking");
    if (!r) return LINE_ERR(c, "missing key \"ranking\"");
    if (cJSON_IsString(r)) l->rtext = STRDUP_CHECK(r->valuestring);
    else if (cJSON_IsArray(r)) l->rtext = cJSON_PrintUnformatted(r);
    else return LINE_ERR(c, "\"ranking\" must be an array of ranks or a string like \"2>1=3\"");
    if (!l->rtext) DIE("out of memory");
    char perr[512];
    if (reward_parse_ranking(l->rtext, l->k, l->ranks, perr, sizeof perr))
        return LINE_ERR(c, "%s", perr);
    return 0;
}

// A prompt alone, or a prompt with its demonstration ("response"): stored at once.
static int import_prompt(Ctx *c, const cJSON *o, const LineRanking *l, ImportResult *res) {
    int bad = 0;
    const char *resp = get_str(c, o, "response", 0, &bad);
    if (bad) return -1;
    const char *split = l->split;
    if (!split)
        split = c->o->split ? c->o->split
                            : store_split_for_text(l->prompt, c->o->valid_frac, c->o->test_frac);
    char perr2[768];
    int64_t pid2, did;
    int to_label = !resp || c->o->label_demos;
    if (store_add_prompt_from(c->s, l->prompt, split, c->source, to_label, &pid2, perr2,
                              sizeof perr2) ||
        (l->rendered && store_set_prompt_rendered(c->s, pid2, perr2, sizeof perr2)))
        return LINE_ERR(c, "%s", perr2);
    if (resp) {
        if (store_add_demonstration(c->s, pid2, resp, c->source, &did, perr2, sizeof perr2))
            return LINE_ERR(c, "%s", perr2);
        res->demonstrations++;
    } else res->prompts++;
    return 0;
}

// A pair's ranking: texts[0] better than texts[1]; 1 (nothing to store) when they are equal.
static int pair_ranking(LineRanking *l) {
    if (!strcmp(l->texts[0], l->texts[1])) return 1;
    l->k = 2;
    l->ranks[0] = 1;
    l->ranks[1] = 2;
    return 0;
}

// The text of a message-list prompt (messages ending with a user turn): rendered with the chat
// template and its generation prompt (*rendered = 1: stored as such, see store.h); without a
// template, a lone user message's content (*rendered = 0: plain text).
static int render_prompt(Ctx *c, const cJSON *arr, const char *key, char **out, int *rendered) {
    char where[600], cerr[768];
    snprintf(where, sizeof where, "%s:%lld", c->path, (long long)c->lineno);
    DatasetMessage *m;
    int n, rc;
    if (chat_messages_from_json(arr, key, &m, &n, where, c->err, c->errlen)) return -1;
    rc = chat_check_messages(m, n, 0, where, c->err, c->errlen);
    if (!rc && c->o->chat) {
        rc = chat_render(c->o->chat, m, n, 1, out, cerr, sizeof cerr);
        if (rc) LINE_ERR(c, "%s", cerr);
        *rendered = !rc;
    } else if (!rc && n == 1) *out = STRDUP_CHECK(m[0].content);
    else if (!rc)
        rc = LINE_ERR(c, "a conversation of %d messages as a prompt needs a chat template "
                         "(--tokenizer DIR with a tokenizer_config.json, or --chat-template)", n);
    free(m);
    return rc ? -1 : 0;
}

// The content of the assistant message that ends list (at index n - 1).
static const char *last_assistant(Ctx *c, const cJSON *list, const char *key) {
    const cJSON *last = cJSON_GetArrayItem(list, cJSON_GetArraySize(list) - 1);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(last, "role");
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(last, "content");
    if (!cJSON_IsString(r) || strcmp(r->valuestring, "assistant") || !cJSON_IsString(t)) {
        LINE_ERR(c, "\"%s\" must end with an assistant message {\"role\": \"assistant\", "
                    "\"content\": str}", key);
        return NULL;
    }
    size_t len = strlen(t->valuestring);
    if (rm_utf8_valid_len(t->valuestring, len) != len) {
        LINE_ERR(c, "\"%s\": the assistant message is not valid UTF-8", key);
        return NULL;
    }
    return t->valuestring;
}

// A conversational pair: with a "prompt" (read already), chosen and rejected are one assistant
// message each; without, two conversations equal up to their last (assistant) messages.
static int read_chat_pair(Ctx *c, const cJSON *o, LineRanking *l) {
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(o, "chosen");
    const cJSON *rj = cJSON_GetObjectItemCaseSensitive(o, "rejected");
    if (!cJSON_IsArray(rj))
        return LINE_ERR(c, "\"rejected\" must be a message list as \"chosen\" is");
    int nc = cJSON_GetArraySize(ch), nr = cJSON_GetArraySize(rj);
    if (nc == 0 || nr == 0) return LINE_ERR(c, "\"%s\" is empty", nc ? "rejected" : "chosen");
    if (!(l->texts[0] = last_assistant(c, ch, "chosen")) ||
        !(l->texts[1] = last_assistant(c, rj, "rejected")))
        return -1;
    if (l->prompt) {
        if (nc != 1 || nr != 1)
            return LINE_ERR(c, "with a \"prompt\", \"chosen\" and \"rejected\" hold one "
                               "assistant message each");
    } else {
        int same = nc == nr;
        for (int i = 0; same && i < nc - 1; i++)
            same = cJSON_Compare(cJSON_GetArrayItem(ch, i), cJSON_GetArrayItem(rj, i), 1);
        if (!same)
            return LINE_ERR(c, "chosen and rejected differ before their last message (not one "
                               "conversation)");
        if (nc < 2) return LINE_ERR(c, "\"chosen\" has no prompt before its assistant message");
        cJSON *prompt = cJSON_CreateArray();
        for (int i = 0; i < nc - 1; i++)
            cJSON_AddItemToArray(prompt, cJSON_Duplicate(cJSON_GetArrayItem(ch, i), 1));
        int rc = render_prompt(c, prompt, "chosen", &l->hh_prompt, &l->rendered);
        cJSON_Delete(prompt);
        if (rc) return -1;
        l->prompt = l->hh_prompt;
    }
    return pair_ranking(l);
}

// A pair line: {"prompt", "chosen", "rejected"}, or HH transcripts {"chosen", "rejected"} cut at
// the last "\n\nAssistant:". Returns 1 when chosen and rejected are the same text (skipped).
static int read_pair(Ctx *c, const cJSON *o, LineRanking *l) {
    if (!cJSON_GetObjectItemCaseSensitive(o, "chosen") ||
        !cJSON_GetObjectItemCaseSensitive(o, "rejected"))
        return LINE_ERR(c, "expected {\"prompt\", \"chosen\", \"rejected\"}, {\"chosen\", "
                           "\"rejected\"} (HH), {\"prompt\", \"completions\", \"ranking\"}, "
                           "{\"prompt\"} or {\"prompt\", \"response\"}");
    int bad = 0;
    if (cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(o, "chosen")))
        return read_chat_pair(c, o, l);
    const char *ch = get_str(c, o, "chosen", 1, &bad);
    const char *rj = bad ? NULL : get_str(c, o, "rejected", 1, &bad);
    if (bad) return -1;
    if (l->prompt) {
        l->texts[0] = ch;
        l->texts[1] = rj;
    } else {
        if (split_hh(c, ch, "chosen", &l->hh_prompt, &l->texts[0]) ||
            split_hh(c, rj, "rejected", &l->hh_prompt2, &l->texts[1]))
            return -1;
        if (strcmp(l->hh_prompt, l->hh_prompt2))
            return LINE_ERR(c, "chosen and rejected differ before their last "
                               "\"\\n\\nAssistant:\" (not one conversation)");
        l->prompt = l->hh_prompt;
    }
    return pair_ranking(l);
}

// Stores the line's prompt, labeler, completions and ranking.
static int store_line_ranking(Ctx *c, const LineRanking *l) {
    const char *split = l->split, *model = l->model ? l->model : c->o->model;
    if (!split)
        split = c->o->split ? c->o->split
                            : store_split_for_text(l->prompt, c->o->valid_frac, c->o->test_frac);
    char serr[768];
    int64_t pid, lid = c->labeler_id, cid[REWARD_MAX_K];
    if (store_add_prompt(c->s, l->prompt, split, c->source, &pid, serr, sizeof serr) ||
        (l->rendered && store_set_prompt_rendered(c->s, pid, serr, sizeof serr)))
        return LINE_ERR(c, "%s", serr);
    if (l->labeler && strcmp(l->labeler, c->labeler) &&
        store_add_labeler(c->s, l->labeler, &lid, serr, sizeof serr))
        return LINE_ERR(c, "%s", serr);
    StoreRankItem items[REWARD_MAX_K];
    for (int i = 0; i < l->k; i++) {
        if (store_add_completion(c->s, pid, l->texts[i], model, &cid[i], serr, sizeof serr))
            return LINE_ERR(c, "%s", serr);
        for (int j = 0; j < i; j++)
            if (cid[j] == cid[i])
                return LINE_ERR(c, "completions %d and %d are the same text", j + 1, i + 1);
        items[i].completion_id = cid[i];
        items[i].rank = l->ranks[i];
    }
    if (store_add_ranking(c->s, pid, lid, items, l->k, l->comment, NULL, serr, sizeof serr))
        return LINE_ERR(c, "%s", serr);
    return 0;
}

// The keys every line may have, checked: one JSON object, no NUL, no duplicate key.
static int read_common(Ctx *c, const char *line, const cJSON *o, LineRanking *l) {
    if (!cJSON_IsObject(o)) return LINE_ERR(c, "expected a JSON object");
    if (has_nul_escape(line)) return LINE_ERR(c, "a string holds a NUL character (\\u0000)");
    for (const cJSON *a = o->child; a; a = a->next)
        for (const cJSON *b = a->next; b; b = b->next)
            if (!strcmp(a->string, b->string)) return LINE_ERR(c, "duplicate key \"%s\"", a->string);
    int bad = 0;
    const cJSON *pl = cJSON_GetObjectItemCaseSensitive(o, "prompt");
    if (cJSON_IsArray(pl)) {
        if (render_prompt(c, pl, "prompt", &l->hh_prompt, &l->rendered)) return -1;
        l->prompt = l->hh_prompt;
    } else l->prompt = get_str(c, o, "prompt", 0, &bad);
    l->labeler = get_str(c, o, "labeler", 0, &bad);
    l->split = get_str(c, o, "split", 0, &bad);
    l->comment = get_str(c, o, "comment", 0, &bad);
    l->model = get_str(c, o, "model", 0, &bad);
    if (bad) return -1;
    if (l->labeler && !*l->labeler) return LINE_ERR(c, "\"labeler\" is empty");
    if (l->split && !store_split_valid(l->split))
        return LINE_ERR(c, "\"split\" is '%.40s'; expected train, valid or test", l->split);
    return 0;
}

// The line by its kind: K-wise, a prompt (with its demonstration), or a pair. Returns 0 with a
// ranking in l to store, 1 when there is nothing more to store (a prompt line, stored at once; a
// pair of one text twice, skipped), -1 on error.
static int read_by_kind(Ctx *c, const cJSON *o, LineRanking *l, ImportResult *res) {
    const cJSON *comps = cJSON_GetObjectItemCaseSensitive(o, "completions");
    if (comps) return read_kwise(c, o, comps, l);
    if (l->prompt && !cJSON_GetObjectItemCaseSensitive(o, "chosen") &&
        !cJSON_GetObjectItemCaseSensitive(o, "rejected"))
        return import_prompt(c, o, l, res) ? -1 : 1;
    int rc = read_pair(c, o, l);
    if (rc == 1) res->skipped++;
    return rc;
}

static int import_line(Ctx *c, const char *line, ImportResult *res) {
    const char *eptr = NULL;
    cJSON *o = cJSON_ParseWithOpts(line, &eptr, 1);
    if (!o)
        return LINE_ERR(c, "bad JSON at column %lld",
                        (long long)(eptr && eptr >= line ? eptr - line + 1 : 1));
    LineRanking l;
    memset(&l, 0, sizeof l);
    int rc = read_common(c, line, o, &l);
    if (rc == 0) rc = read_by_kind(c, o, &l, res);
    if (rc == 0) rc = store_line_ranking(c, &l);
    if (rc == 0) res->rankings++;
    free(l.hh_prompt);
    free(l.hh_prompt2);
    free(l.rtext);
    cJSON_Delete(o);
    return rc < 0 ? -1 : 0;
}

int rm_import_file(Store *s, const char *path, const ImportOptions *o, ImportResult *res, char *err,
                   size_t errlen) {
    memset(res, 0, sizeof *res);
    char hash[STORE_HASH_HEX];
    // read twice (fingerprinted, then parsed): a regular file of bounded size, never a device or
    // FIFO
    struct stat sb;
    if (stat(path, &sb)) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return util_err(
            err, errlen,
            "%s: not a regular file (an import is read twice: fingerprinted, then parsed)", path);
    if ((int64_t)sb.st_size > cli_max_file_bytes())
        return util_err(err, errlen, "%s: %lld bytes, more than RLHF_MAX_FILE_BYTES (%lld)", path,
                        (long long)sb.st_size, (long long)cli_max_file_bytes());
    if (store_hash_file(path, hash, err, errlen)) return -1;
    if (store_find_import(s, hash, &res->import_id, err, errlen)) return -1;
    if (res->import_id) { res->already = 1; return 0; }
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    Ctx c = {.s = s, .o = o, .path = path, .err = err, .errlen = errlen};
    c.source = o->source ? o->source : rm_basename(path);
    c.labeler = o->labeler ? o->labeler : rm_basename(path);
    if (store_begin(s, err, errlen)) { fclose(f); return -1; }
    int rc = -1;
    if (store_add_labeler(s, c.labeler, &c.labeler_id, err, errlen)) goto done;
    CliLines lr = {0};
    int64_t got;
    char *line;
    while ((got = cli_getline(&lr, f, path, err, errlen)) >= 0) {
        line = lr.buf;
        c.lineno++;
        size_t n = (size_t)got;
        if (memchr(line, 0, n)) {
            line_err(&c, "a NUL byte in the line");
            cli_lines_free(&lr);
            goto done;
        }
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = 0;
        char *p = line;
        if (c.lineno == 1 && !strncmp(p, "\xEF\xBB\xBF", 3)) p += 3;
        const char *q = p;
        while (*q == ' ' || *q == '\t') q++;
        if (!*q) continue;
        res->lines++;
        if (import_line(&c, p, res)) { cli_lines_free(&lr); goto done; }
    }
    cli_lines_free(&lr);
    if (got < -1) goto done;   // cli_getline's message: too long a line or file, a read error
    if (res->rankings == 0 && res->prompts == 0 && res->demonstrations == 0) {
        util_err(err, errlen, "%s: no rankings, prompts or demonstrations in the file%s", path,
                 res->skipped ? " (every pair compares a text with itself)" : "");
        goto done;
    }
    if (store_add_import(s, path, hash, "rankings",
                         res->rankings + res->prompts + res->demonstrations, &res->import_id, err,
                         errlen) ||
        store_commit(s, err, errlen))
        goto done;
    rc = 0;
done:
    fclose(f);
    if (rc) store_rollback(s, NULL, 0);
    return rc;
}

static const char *import_usage =
    "usage: reward import --workspace DB [options] FILE.jsonl...\n"
    "Adds the rankings of each file to the workspace, one transaction per file: a bad line is an\n"
    "error FILE:LINE and nothing of that file is stored; a file imported before (same contents,\n"
    "any name) adds nothing. Line formats:\n"
    "  {\"prompt\": P, \"chosen\": A, \"rejected\": B}                 a pair: A better than B\n"
    "  {\"chosen\": T1, \"rejected\": T2}                             Anthropic HH transcripts, cut at the\n"
    "                                                              last \"\\n\\nAssistant:\"\n"
    "  {\"prompt\": P, \"completions\": [..], \"ranking\": [2,1,3,1]}  K-wise: the rank of each completion\n"
    "                                                              (1 best, equal = tie), or \"2>4>1=3\"\n"
    "  {\"prompt\": P}                                               a prompt to label (reward label)\n"
    "  {\"prompt\": P, \"response\": R}                                a demonstration (its prompt is not\n"
    "                                                              queued for labeling: --label-demos)\n"
    "  {\"prompt\": [messages], \"chosen\": [message], \"rejected\": [message]}\n"
    "  {\"chosen\": [messages], \"rejected\": [messages]}               conversational (TRL): the prompt\n"
    "                                                              (\"prompt\", or the messages shared)\n"
    "                                                              rendered with the chat template\n"
    "  optional keys: \"labeler\", \"split\" (train|valid|test), \"comment\", \"model\"\n"
    "options:\n"
    "  --workspace DB        the workspace database (created when absent)\n"
    "  --labeler NAME        labeler of lines without \"labeler\" (default: the file's name)\n"
    "  --source NAME         the prompts' source, for reward label --source (default: file name)\n"
    "  --label-demos         queue the demonstrations' prompts for reward label too\n"
    "  --model NAME          what produced the completions (default: '')\n"
    "  --split S             put every new prompt in split S (train, valid or test)\n"
    "  --valid-percent P     else: share of new prompts held out, by a hash of the prompt (default 5)\n"
    "  --test-percent P      and put in the test split (default 0)\n"
    "  --tokenizer DIR       the chat template of DIR/tokenizer_config.json renders message lists\n"
    "  --chat-template T     that template instead (a file, or inline text)\n";

int cmd_import(int argc, char **argv) {
    const char *ws = NULL, *tokdir = NULL, *tmpl = NULL;
    ImportOptions o = {.valid_frac = 0.05};
    double vp = 5, tp = 0;
    char err[1024];
    CliList files = {0};
    int status;
    CliOption opts[] = {
        CLI_STRING("--workspace", &ws, .required = 1),
        CLI_STRING("--labeler", &o.labeler),
        CLI_STRING("--source", &o.source),
        CLI_STRING("--model", &o.model),
        CLI_STRING("--split", &o.split),
        CLI_FLAG("--label-demos", &o.label_demos),
        CLI_DOUBLE("--valid-percent", &vp, 0, 100),
        CLI_DOUBLE("--test-percent", &tp, 0, 100),
        CLI_STRING("--tokenizer", &tokdir),
        CLI_STRING("--chat-template", &tmpl),
        {0}};
    CliCommand cmd = {.prog = "reward import", .usage = import_usage, .opts = opts,
                      .arg_name = "FILE", .arg_list = &files, .args_min = 1, .value_status = 1};
    if (cli_parse(&cmd, argc, argv, &status)) return status;
    if (o.split && !store_split_valid(o.split)) {
        snprintf(err, sizeof err, "--split '%s': expected train, valid or test", o.split);
        goto bad;
    }
    if (vp + tp > 100) {
        snprintf(err, sizeof err, "--valid-percent + --test-percent exceed 100");
        goto bad;
    }
    if (o.labeler && !*o.labeler) { snprintf(err, sizeof err, "--labeler is empty"); goto bad; }
    if (o.source && !*o.source) { snprintf(err, sizeof err, "--source is empty"); goto bad; }
    o.valid_frac = vp / 100; o.test_frac = tp / 100;
    ChatTemplate *chat = NULL;
    if ((tokdir || tmpl) && chat_template_load(&chat, tokdir, tmpl, err, sizeof err)) goto bad;
    if (tokdir && !tmpl && !chat) {
        snprintf(err, sizeof err, "--tokenizer %s: no tokenizer_config.json with a chat_template",
                 tokdir);
        goto bad;
    }
    o.chat = chat;
    Store *s;
    if (store_open(&s, ws, err, sizeof err)) {
        chat_template_free(chat);
        goto bad;
    }
    int rc = 0;
    for (int i = 0; i < files.n; i++) {
        ImportResult r;
        if (rm_import_file(s, files.items[i], &o, &r, err, sizeof err)) {
            fprintf(stderr, "reward import: %s (nothing from this file was stored)\n", err);
            rc = 1;
            break;
        }
        if (r.already)
            fprintf(stderr, "reward import: %s: already imported (import %lld); nothing added\n",
                    files.items[i], (long long)r.import_id);
        else
            fprintf(
                stderr,
                "reward import: %s: %lld rankings, %lld prompts, %lld demonstrations from %lld lines (import %lld)\n",
                files.items[i], (long long)r.rankings, (long long)r.prompts,
                (long long)r.demonstrations, (long long)r.lines, (long long)r.import_id);
        if (!r.already && r.demonstrations && !o.label_demos)
            fprintf(stderr,
                    "reward import: %s: the demonstrations' prompts are not queued for reward "
                    "label (--label-demos queues them)\n",
                    files.items[i]);
        if (!r.already && r.skipped)
            fprintf(
                stderr,
                "reward import: %s: %lld pairs skipped: chosen and rejected are the same text\n",
                files.items[i], (long long)r.skipped);
    }
    store_close(s);
    chat_template_free(chat);
    cli_list_free(&files);
    return rc;
bad:
    fprintf(stderr, "reward import: %s\n", err);
    cli_list_free(&files);
    return 1;
}
