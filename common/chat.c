// chat: chat templates applied to conversations (rules in chat.h).
#include "chat.h"
#include "fileio.h"
#include "jinja.h"
#include "utf8.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CHAT_TEMPLATE_MAX (4u << 20)   // a template file (real ones are a few KiB)
#define CHAT_END_MARK "\x01chat-end-of-turn\x01"

struct ChatTemplate {
    JinjaTemplate *tmpl;
    cJSON *config;   // tokenizer_config.json (an empty object when there is none)
    char *origin;    // where the template came from, for messages
};

void chat_template_free(ChatTemplate *ct) {
    if (!ct) return;
    jinja_free(ct->tmpl);
    cJSON_Delete(ct->config);
    free(ct->origin);
    free(ct);
}

const char *chat_template_origin(const ChatTemplate *ct) { return ct->origin; }

// dir/tokenizer_config.json into *config (an empty object when the file is absent).
static int chat_read_config(const char *dir, cJSON **config, char *path, size_t pathlen,
                            char *err, size_t errlen) {
    *config = NULL;
    path[0] = 0;
    if (dir && fio_exists(dir, "tokenizer_config.json")) {
        snprintf(path, pathlen, "%s/tokenizer_config.json", dir);
        *config = fio_read_json(path, err, errlen);
        if (!*config) return -1;
    } else *config = cJSON_CreateObject();
    return 0;
}

int chat_template_load(ChatTemplate **out, const char *dir, const char *override, char *err,
                       size_t errlen) {
    *out = NULL;
    char path[4200], jerr[512];
    cJSON *config;
    if (chat_read_config(dir, &config, path, sizeof path, err, errlen)) return -1;
    if (override && !override[0]) override = NULL;
    char *file_text = NULL, *origin;
    const char *text;
    if (override && !strstr(override, "{{") && !strstr(override, "{%")) {
        size_t len;
        if (fio_read_small(override, CHAT_TEMPLATE_MAX, &file_text, &len, err, errlen)) {
            cJSON_Delete(config);
            return util_err_prefix(err, errlen, "data.chat_template: ");
        }
        text = file_text;
        origin = STRDUP_CHECK(override);
    } else if (override) {
        text = override;
        origin = STRDUP_CHECK("data.chat_template");
    } else {
        if (!cJSON_GetObjectItemCaseSensitive(config, "chat_template")) {
            cJSON_Delete(config);
            return 0;   // no template: the caller's built-in format
        }
        text = jinja_chat_template(config, NULL, jerr, sizeof jerr);
        if (!text) {
            cJSON_Delete(config);
            return util_err(err, errlen, "%s: %s", path, jerr);
        }
        origin = STRDUP_CHECK(path);
    }
    JinjaTemplate *t;
    int rc = jinja_parse(text, &t, jerr, sizeof jerr);
    free(file_text);
    if (rc) {
        util_err(err, errlen, "%s: chat template: %s", origin, jerr);
        free(origin);
        cJSON_Delete(config);
        return -1;
    }
    ChatTemplate *ct = CALLOC_CHECK(1, sizeof *ct);
    ct->tmpl = t;
    ct->config = config;
    ct->origin = origin;
    *out = ct;
    return 0;
}

int chat_render(const ChatTemplate *ct, const DatasetMessage *m, int n, int add_gen, char **out,
                char *err, size_t errlen) {
    cJSON *msgs = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "role", m[i].role);
        cJSON_AddStringToObject(o, "content", m[i].content);
        cJSON_AddItemToArray(msgs, o);
    }
    cJSON *ctx = jinja_chat_context(ct->config, msgs, add_gen, NULL);
    char jerr[512];
    int rc = jinja_render(ct->tmpl, ctx, out, jerr, sizeof jerr);
    cJSON_Delete(ctx);
    cJSON_Delete(msgs);
    if (rc) return util_err(err, errlen, "%s: chat template: %s", ct->origin, jerr);
    return 0;
}

// The first byte where a and b differ (their common length when one is a prefix of the other).
static size_t chat_diff_at(const char *a, const char *b) {
    size_t i = 0;
    while (a[i] && a[i] == b[i]) i++;
    return i;
}

static void chat_push_segment(ChatSegment **segs, int *n, int *cap, size_t start, size_t end,
                              int assistant) {
    if (end <= start) return;
    if (*n == *cap) {
        *cap = *cap ? 2 * *cap : 8;
        *segs = REALLOC_ARRAY(*segs, (size_t)*cap, sizeof(ChatSegment));
    }
    (*segs)[(*n)++] = (ChatSegment){start, end, assistant};
}

// Checks that prefix is a prefix of whole; what names the two renderings in the message.
static int chat_check_prefix(const ChatTemplate *ct, const char *prefix, const char *whole,
                             const char *what, int i, char *err, size_t errlen) {
    size_t at = chat_diff_at(prefix, whole);
    if (prefix[at] == 0) return 0;
    return util_err(err, errlen, "%s: the chat template breaks the prefix property at "
                    "messages[%d]: %s differ at byte %zu, so the assistant turn cannot be found by "
                    "rendering", ct->origin, i, what, at + 1);
}

int chat_segments(const ChatTemplate *ct, const DatasetMessage *m, int n, char **text,
                  ChatSegment **segs, int *n_segs, char *err, size_t errlen) {
    *text = NULL;
    *segs = NULL;
    *n_segs = 0;
    char *full = NULL;
    if (chat_render(ct, m, n, 0, &full, err, errlen)) return -1;
    int cap = 0, rc = 0;
    size_t prev = 0;
    for (int i = 0; i < n && !rc; i++) {
        if (strcmp(m[i].role, "assistant")) continue;
        char *a = NULL, *b = NULL;
        rc = chat_render(ct, m, i, 1, &a, err, errlen) ||
             chat_render(ct, m, i + 1, 0, &b, err, errlen) ||
             chat_check_prefix(ct, a, b, "messages[0..i) with the generation prompt and "
                               "messages[0..i]", i, err, errlen) ||
             chat_check_prefix(ct, b, full, "messages[0..i] and the whole conversation", i, err,
                               errlen);
        if (!rc && strlen(a) < prev)
            rc = util_err(err, errlen, "%s: the chat template breaks the prefix property at "
                          "messages[%d]: its prompt ends before the previous turn does",
                          ct->origin, i);
        if (!rc) {
            chat_push_segment(segs, n_segs, &cap, prev, strlen(a), 0);
            chat_push_segment(segs, n_segs, &cap, strlen(a), strlen(b), 1);
            prev = strlen(b);
        }
        free(a);
        free(b);
    }
    if (rc) {
        free(full);
        free(*segs);
        *segs = NULL;
        *n_segs = 0;
        return -1;
    }
    chat_push_segment(segs, n_segs, &cap, prev, strlen(full), 0);
    *text = full;
    return 0;
}

int chat_encode_prompt(const ChatTemplate *ct, const Tokenizer *tok, const DatasetMessage *m,
                       int n, TokIds *out, char *err, size_t errlen) {
    char *text;
    if (chat_render(ct, m, n, 1, &text, err, errlen)) return -1;
    int rc = tok_encode(tok, text, strlen(text), TOK_ALLOW_SPECIAL, out, err, errlen);
    free(text);
    return rc;
}

ChatRole chat_role(const char *r) {
    if (!r) return CHAT_BAD;
    if (!strcmp(r, "system")) return CHAT_SYSTEM;
    if (!strcmp(r, "user")) return CHAT_USER;
    if (!strcmp(r, "assistant")) return CHAT_ASSISTANT;
    return CHAT_BAD;
}

int chat_check_messages(const DatasetMessage *m, int n, int final_assistant, const char *where,
                        char *err, size_t errlen) {
    if (n < 1) return util_err(err, errlen, "%s: messages is empty", where);
    int first = chat_role(m[0].role) == CHAT_SYSTEM;   // messages before the first user turn
    for (int i = 0; i < n; i++) {
        ChatRole r = chat_role(m[i].role);
        if (r == CHAT_BAD)
            return util_err(err, errlen, "%s: messages[%d].role must be \"system\", \"user\" or "
                            "\"assistant\" (got \"%.40s\")", where, i,
                            m[i].role ? m[i].role : "(null)");
        if (!m[i].content)
            return util_err(err, errlen, "%s: messages[%d] has no content", where, i);
        size_t len = strlen(m[i].content);
        size_t ok = utf8_valid_len(m[i].content, len);
        if (ok != len)
            return util_err(err, errlen, "%s: messages[%d].content has invalid UTF-8 at byte %zu",
                            where, i, ok + 1);
        if (r == CHAT_SYSTEM && i > 0)
            return util_err(err, errlen, "%s: messages[%d]: a system message may only come first",
                            where, i);
        if (r != CHAT_SYSTEM) {
            ChatRole want = ((i - first) % 2 == 0) ? CHAT_USER : CHAT_ASSISTANT;
            if (r != want)
                return util_err(err, errlen, "%s: messages[%d] is a%s %s message where a%s %s "
                                "message must come (turns alternate user, assistant)", where, i,
                                r == CHAT_USER ? "" : "n", m[i].role, want == CHAT_USER ? "" : "n",
                                want == CHAT_USER ? "user" : "assistant");
        }
        if (r == CHAT_ASSISTANT && len == 0)
            return util_err(err, errlen, "%s: messages[%d]: empty assistant content", where, i);
    }
    ChatRole last = chat_role(m[n - 1].role);
    if (final_assistant && last != CHAT_ASSISTANT)
        return util_err(err, errlen, "%s: the last message must be from the assistant (it is %s)",
                        where, m[n - 1].role);
    if (!final_assistant && last != CHAT_USER)
        return util_err(err, errlen,
                        "%s: a prompt conversation must end with a user message (it ends with %s)",
                        where, m[n - 1].role);
    return 0;
}

int chat_messages_from_json(const cJSON *arr, const char *key, DatasetMessage **msgs, int *n,
                            const char *where, char *err, size_t errlen) {
    *msgs = NULL;
    *n = 0;
    if (!cJSON_IsArray(arr))
        return util_err(err, errlen, "%s: \"%s\" must be a list of messages", where, key);
    int count = cJSON_GetArraySize(arr);
    if (count == 0) return util_err(err, errlen, "%s: \"%s\" is empty", where, key);
    DatasetMessage *m = CALLOC_CHECK((size_t)count, sizeof *m);
    int i = 0;
    for (const cJSON *o = arr->child; o; o = o->next, i++) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(o, "role");
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(o, "content");
        if (!cJSON_IsObject(o) || !cJSON_IsString(r) || !cJSON_IsString(c)) {
            free(m);
            return util_err(err, errlen, "%s: %s[%d] must be an object with \"role\" and "
                            "\"content\" strings", where, key, i);
        }
        m[i] = (DatasetMessage){r->valuestring, c->valuestring};
    }
    *msgs = m;
    *n = count;
    return 0;
}

static void chat_add_stop(int32_t *ids, int max, int *n, int64_t id) {
    if (id < 0 || id > INT32_MAX || *n >= max) return;
    for (int i = 0; i < *n; i++)
        if (ids[i] == (int32_t)id) return;
    ids[(*n)++] = (int32_t)id;
}

// eos_token_id (an id or a list of ids) of dir/name, when that file exists.
static int chat_stops_from_file(const char *dir, const char *name, int32_t *ids, int max, int *n,
                                char *err, size_t errlen) {
    if (!dir || !fio_exists(dir, name)) return 0;
    char path[4200];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    cJSON *j = fio_read_json(path, err, errlen);
    if (!j) return -1;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "eos_token_id");
    if (cJSON_IsNumber(e)) chat_add_stop(ids, max, n, (int64_t)e->valuedouble);
    for (const cJSON *c = cJSON_IsArray(e) ? e->child : NULL; c; c = c->next)
        if (cJSON_IsNumber(c)) chat_add_stop(ids, max, n, (int64_t)c->valuedouble);
    cJSON_Delete(j);
    return 0;
}

// The first special token the template writes after an assistant message's content.
static int chat_end_of_turn(const ChatTemplate *ct, const Tokenizer *tok, int32_t *id,
                            char *err, size_t errlen) {
    *id = -1;
    DatasetMessage m[2] = {{"user", "hi"}, {"assistant", CHAT_END_MARK}};
    char *text;
    if (chat_render(ct, m, 2, 0, &text, err, errlen)) return -1;
    const char *after = strstr(text, CHAT_END_MARK);
    TokIds ids = {0};
    int rc = 0;
    if (after) {
        after += strlen(CHAT_END_MARK);
        rc = tok_encode(tok, after, strlen(after), TOK_ALLOW_SPECIAL, &ids, err, errlen);
        for (size_t i = 0; !rc && i < ids.n && *id < 0; i++)
            if (tok_is_special(tok, ids.ids[i])) *id = ids.ids[i];
    }
    tok_ids_free(&ids);
    free(text);
    return rc;
}

int chat_stop_ids(const ChatTemplate *ct, const Tokenizer *tok, const char *dir, int32_t *ids,
                  int max, int *n, char *err, size_t errlen) {
    *n = 0;
    if (tok) chat_add_stop(ids, max, n, tok_eos(tok));
    if (chat_stops_from_file(dir, "config.json", ids, max, n, err, errlen) ||
        chat_stops_from_file(dir, "generation_config.json", ids, max, n, err, errlen))
        return -1;
    if (ct && tok) {
        int32_t eot;
        if (chat_end_of_turn(ct, tok, &eot, err, errlen)) return -1;
        chat_add_stop(ids, max, n, eot);
    }
    return 0;
}
