// dataset: SFT examples (JSONL or memory) -> tokens + loss masks -> splits -> bucketed batches.
// The rules (rendering, masks, truncation, splits, batch order) are stated in dataset.h.
#define _GNU_SOURCE   // getline
#include "dataset.h"
#include "chat.h"
#include "cli.h"
#include "rng.h"
#include "utf8.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WHERE_LEN 600         // "source:item" prefix of messages
#define CHUNK_LINES 2048      // JSONL lines parsed before they are tokenized (in parallel)
#define CHUNK_BYTES (16 << 20)
#define PLACEHOLDER_LEN 8     // strlen("{prompt}") == strlen("{system}")

typedef struct {
    int64_t off;         // first token in Dataset.tokens
    int32_t len;         // tokens
    int32_t n_targets;   // mask-1 tokens at positions >= 1
    int64_t item;        // line / item, -1: none
    uint64_t tok_hash;   // hash of tokens and mask (for iterator fingerprints)
    int32_t source;      // index into Dataset.sources
    uint8_t split;       // DATASET_SPLIT_TRAIN or DATASET_SPLIT_VALID
} Example;

struct Dataset {
    const Tokenizer *tok;
    int32_t eot;
    DatasetOptions opt;             // string pointers point at the copies below
    char *prompt_tpl, *response_prefix, *system_tpl;
    size_t prompt_at, system_at;    // offsets of "{prompt}" and "{system}" in their templates
    int64_t valid_bp;               // valid share in basis points (of 10000)
    int32_t *tokens;                // [n_tokens] all examples, concatenated
    uint8_t *mask;                  // [n_tokens]
    int64_t n_tokens, cap_tokens;
    Example *ex;
    int64_t n_ex, cap_ex;
    char **sources;                 // file names and in-memory source names, interned
    int64_t n_sources, cap_sources;
    int64_t n_truncated, n_dropped;
};

// A rendered, tokenized example before truncation.
typedef struct {
    TokIds ids;
    uint8_t *mask;       // [ids.n]
    size_t mask_cap;
    size_t resp_start;   // first token of the final assistant segment
} Encoded;

static void encoded_free(Encoded *e) {
    tok_ids_free(&e->ids);
    free(e->mask);
    memset(e, 0, sizeof *e);
}


static void where_str(char *buf, const char *source, int64_t item) {
    if (item >= 0) snprintf(buf, WHERE_LEN, "%s:%lld", source, (long long)item);
    else snprintf(buf, WHERE_LEN, "%s", source);
}

// ---------------------------------------------------------------------------------------------
// options

int dataset_truncation_parse(const char *s, DatasetTruncation *out, char *err, size_t errlen) {
    if (!strcmp(s, "error")) *out = DATASET_TRUNCATE_ERROR;
    else if (!strcmp(s, "truncate_prompt_left")) *out = DATASET_TRUNCATE_PROMPT_LEFT;
    else if (!strcmp(s, "drop")) *out = DATASET_TRUNCATE_DROP;
    else
        return util_err(err, errlen, "unknown truncation rule '%s' (expected error, "
                        "truncate_prompt_left or drop)", s);
    return 0;
}

// Offset of the one occurrence of key in tpl; -1 with a message when it occurs 0 or 2+ times.
static int find_placeholder(const char *what, const char *tpl, const char *key, size_t *at,
                            char *err, size_t errlen) {
    const char *p = strstr(tpl, key);
    if (!p) return util_err(err, errlen, "%s \"%s\" lacks %s", what, tpl, key);
    if (strstr(p + 1, key))
        return util_err(err, errlen, "%s \"%s\" has %s more than once", what, tpl, key);
    *at = (size_t)(p - tpl);
    return 0;
}

int dataset_create(Dataset **out, const Tokenizer *tok, const DatasetOptions *opt,
                   char *err, size_t errlen) {
    *out = NULL;
    const char *pt = opt->prompt_template ? opt->prompt_template : DATASET_DEFAULT_PROMPT_TEMPLATE;
    const char *rp = opt->response_prefix ? opt->response_prefix : DATASET_DEFAULT_RESPONSE_PREFIX;
    const char *st = opt->system_template ? opt->system_template : DATASET_DEFAULT_SYSTEM_TEMPLATE;
    size_t pat, sat;
    if (find_placeholder("prompt template", pt, "{prompt}", &pat, err, errlen)) return -1;
    if (find_placeholder("system template", st, "{system}", &sat, err, errlen)) return -1;
    const char *strs[3] = {pt, rp, st};
    for (int i = 0; i < 3; i++)
        if (utf8_valid_len(strs[i], strlen(strs[i])) != strlen(strs[i]))
            return util_err(err, errlen, "template \"%s\" is not valid UTF-8", strs[i]);
    if (opt->max_tokens < 1 || opt->max_tokens > (1 << 30))
        return util_err(err, errlen, "max_tokens must be in 1..%d (got %d)", 1 << 30,
                        opt->max_tokens);
    if (!(opt->valid_percent >= 0.0 && opt->valid_percent <= 100.0))
        return util_err(err, errlen, "valid_percent must be in 0..100 (got %g)",
                        opt->valid_percent);
    if (opt->truncation != DATASET_TRUNCATE_ERROR &&
        opt->truncation != DATASET_TRUNCATE_PROMPT_LEFT && opt->truncation != DATASET_TRUNCATE_DROP)
        return util_err(err, errlen, "unknown truncation rule %d", (int)opt->truncation);
    if (!opt->chat && tok_eot(tok) < 0)
        return util_err(err, errlen,
                        "the tokenizer has no <|endoftext|> token to end responses with");
    Dataset *ds = CALLOC_CHECK(1, sizeof *ds);
    ds->tok = tok;
    ds->eot = tok_eot(tok);
    ds->opt = *opt;
    ds->prompt_tpl = STRDUP_CHECK(pt);
    ds->response_prefix = STRDUP_CHECK(rp);
    ds->system_tpl = STRDUP_CHECK(st);
    ds->opt.prompt_template = ds->prompt_tpl;
    ds->opt.response_prefix = ds->response_prefix;
    ds->opt.system_template = ds->system_tpl;
    ds->prompt_at = pat;
    ds->system_at = sat;
    ds->valid_bp = llround(opt->valid_percent * 100.0);
    *out = ds;
    return 0;
}

void dataset_free(Dataset *ds) {
    if (!ds) return;
    free(ds->prompt_tpl);
    free(ds->response_prefix);
    free(ds->system_tpl);
    free(ds->tokens);
    free(ds->mask);
    free(ds->ex);
    for (int64_t i = 0; i < ds->n_sources; i++) free(ds->sources[i]);
    free(ds->sources);
    free(ds);
}

// ---------------------------------------------------------------------------------------------
// rendering and tokenization

static void ids_push(TokIds *ids, int32_t id) {
    if (ids->n == ids->cap) {
        ids->cap = ids->cap ? 2 * ids->cap : 64;
        ids->ids = REALLOC_ARRAY(ids->ids, ids->cap, sizeof(int32_t));
    }
    ids->ids[ids->n++] = id;
}

// Makes room for mask[0..n).
static void mask_reserve(Encoded *e, size_t n) {
    if (n <= e->mask_cap) return;
    size_t cap = e->mask_cap ? e->mask_cap : 64;
    while (cap < n) cap *= 2;
    e->mask = REALLOC_CHECK(e->mask, cap);
    e->mask_cap = cap;
}

// Appends encode(a + b + c) to e with mask value v.
static int encode_segment(const Dataset *ds, Encoded *e, const char *a, size_t na, const char *b,
                          size_t nb, const char *c, size_t nc, uint8_t v, char *err,
                          size_t errlen) {
    size_t n = na + nb + nc;
    char *s = MALLOC_CHECK(n + 1);
    memcpy(s, a, na);
    memcpy(s + na, b, nb);
    memcpy(s + na + nb, c, nc);
    size_t before = e->ids.n;
    int rc = tok_encode(ds->tok, s, n, 0, &e->ids, err, errlen);
    free(s);
    if (rc) return -1;
    mask_reserve(e, e->ids.n);
    memset(e->mask + before, v, e->ids.n - before);
    return 0;
}

// Appends encode(tpl with its placeholder, at byte `at`, replaced by c[0..nc)) with mask value v.
static int encode_in_template(const Dataset *ds, Encoded *e, const char *tpl, size_t at,
                              const char *c, size_t nc, uint8_t v, char *err, size_t errlen) {
    const char *rest = tpl + at + PLACEHOLDER_LEN;
    return encode_segment(ds, e, tpl, at, c, nc, rest, strlen(rest), v, err, errlen);
}

// Appends the tokens of text[0..n) with mask value v; TOK_ALLOW_SPECIAL (text a template wrote).
static int encode_special(const Dataset *ds, Encoded *e, const char *text, size_t n, uint8_t v,
                          char *err, size_t errlen) {
    size_t before = e->ids.n;
    if (tok_encode(ds->tok, text, n, TOK_ALLOW_SPECIAL, &e->ids, err, errlen)) return -1;
    mask_reserve(e, e->ids.n);
    memset(e->mask + before, v, e->ids.n - before);
    return 0;
}

// Renders a checked conversation with the chat template and tokenizes its segments (chat.h):
// assistant turns mask 1, the rest mask 0 (1 with train_on_all).
static int encode_with_template(const Dataset *ds, const DatasetMessage *m, int n, Encoded *e,
                                char *err, size_t errlen) {
    char *text;
    ChatSegment *sg;
    int ns;
    if (chat_segments(ds->opt.chat, m, n, &text, &sg, &ns, err, errlen)) return -1;
    int rc = 0;
    for (int i = 0; i < ns && !rc; i++) {
        if (sg[i].assistant) e->resp_start = e->ids.n;
        rc = encode_special(ds, e, text + sg[i].start, sg[i].end - sg[i].start,
                            sg[i].assistant || ds->opt.train_on_all, err, errlen);
    }
    free(text);
    free(sg);
    return rc;
}

// A prompt already rendered with a chat template, then its response (see dataset.h): with a
// template, the response's turn as the template writes it (the segments from the assistant turn
// of [user "", assistant response] on); without, the response and the end token.
static int encode_rendered_pair(const Dataset *ds, const char *prompt, const char *response,
                                Encoded *e, char *err, size_t errlen) {
    uint8_t pm = ds->opt.train_on_all ? 1 : 0;
    e->ids.n = 0;
    if (encode_special(ds, e, prompt, strlen(prompt), pm, err, errlen)) return -1;
    e->resp_start = e->ids.n;
    if (!ds->opt.chat) {
        if (encode_segment(ds, e, response, strlen(response), "", 0, "", 0, 1, err, errlen))
            return -1;
        ids_push(&e->ids, ds->eot);
        mask_reserve(e, e->ids.n);
        e->mask[e->ids.n - 1] = 1;
        return 0;
    }
    DatasetMessage m[2] = {{"user", ""}, {"assistant", response}};
    char *text;
    ChatSegment *sg;
    int ns, rc = 0, seen = 0;
    if (chat_segments(ds->opt.chat, m, 2, &text, &sg, &ns, err, errlen)) return -1;
    for (int i = 0; i < ns && !rc; i++) {
        seen |= sg[i].assistant;
        if (seen)
            rc = encode_special(ds, e, text + sg[i].start, sg[i].end - sg[i].start,
                                sg[i].assistant || pm, err, errlen);
    }
    free(text);
    free(sg);
    return rc;
}

// Renders and tokenizes a checked conversation (see dataset.h).
static int encode_messages(const Dataset *ds, const DatasetMessage *m, int n, Encoded *e,
                           char *err, size_t errlen) {
    uint8_t pm = ds->opt.train_on_all ? 1 : 0;
    e->ids.n = 0;
    e->resp_start = 0;
    if (ds->opt.chat) return encode_with_template(ds, m, n, e, err, errlen);
    for (int i = 0; i < n; i++) {
        const char *c = m[i].content;
        size_t nc = strlen(c);
        int rc = 0;
        switch (chat_role(m[i].role)) {
        case CHAT_SYSTEM:
            rc = encode_in_template(ds, e, ds->system_tpl, ds->system_at, c, nc, pm, err, errlen);
            break;
        case CHAT_USER:
            rc = encode_in_template(ds, e, ds->prompt_tpl, ds->prompt_at, c, nc, pm, err, errlen);
            break;
        case CHAT_ASSISTANT:
            e->resp_start = e->ids.n;
            rc = encode_segment(ds, e, ds->response_prefix, strlen(ds->response_prefix), c, nc, "",
                                0, 1, err, errlen);
            if (!rc) {
                ids_push(&e->ids, ds->eot);
                mask_reserve(e, e->ids.n);
                e->mask[e->ids.n - 1] = 1;
            }
            break;
        case CHAT_BAD:
            rc = util_err(err, errlen, "unknown role");
            break;
        }
        if (rc) return -1;
    }
    return 0;
}

// The split hash of a conversation (dataset.h).
static uint64_t messages_hash(const DatasetMessage *m, int n) {
    uint64_t h = DATA_HASH_INIT;
    for (int i = 0; i < n; i++) {
        h = data_hash_bytes(h, m[i].role, strlen(m[i].role) + 1);
        h = data_hash_bytes(h, m[i].content, strlen(m[i].content) + 1);
    }
    return data_hash_mix(h);
}

static int32_t source_index(Dataset *ds, const char *name) {
    if (ds->n_sources > 0 && !strcmp(ds->sources[ds->n_sources - 1], name))
        return (int32_t)(ds->n_sources - 1);
    if (ds->n_sources == ds->cap_sources) {
        ds->cap_sources = ds->cap_sources ? 2 * ds->cap_sources : 8;
        ds->sources = REALLOC_ARRAY(ds->sources, (size_t)ds->cap_sources, sizeof(char *));
    }
    ds->sources[ds->n_sources] = STRDUP_CHECK(name);
    return (int32_t)ds->n_sources++;
}

// Applies the truncation rule to e and appends the result. 0 (added or dropped) or -1.
static int commit_encoded(Dataset *ds, const Encoded *e, uint64_t text_hash, int32_t source,
                          int64_t item, DatasetSplit split, const char *where, char *err,
                          size_t errlen) {
    size_t n = e->ids.n, cap = (size_t)ds->opt.max_tokens + 1, start = 0;
    if (n > cap) {
        switch (ds->opt.truncation) {
        case DATASET_TRUNCATE_ERROR:
            return util_err(err, errlen, "%s: example is %zu tokens, longer than the context "
                            "allows (%zu = max_tokens %d + 1); set truncation to "
                            "truncate_prompt_left or drop", where, n, cap, ds->opt.max_tokens);
        case DATASET_TRUNCATE_DROP:
            ds->n_dropped++;
            return 0;
        case DATASET_TRUNCATE_PROMPT_LEFT:
            if (n - e->resp_start + 1 > cap) { ds->n_dropped++; return 0; }
            start = n - cap;
            ds->n_truncated++;
            break;
        }
    }
    size_t len = n - start;
    if (ds->n_tokens + (int64_t)len > ds->cap_tokens) {
        int64_t c = ds->cap_tokens ? ds->cap_tokens : 4096;
        while (c < ds->n_tokens + (int64_t)len) c *= 2;
        ds->tokens = REALLOC_ARRAY(ds->tokens, (size_t)c, sizeof(int32_t));
        ds->mask = REALLOC_CHECK(ds->mask, (size_t)c);
        ds->cap_tokens = c;
    }
    if (ds->n_ex == ds->cap_ex) {
        ds->cap_ex = ds->cap_ex ? 2 * ds->cap_ex : 256;
        ds->ex = REALLOC_ARRAY(ds->ex, (size_t)ds->cap_ex, sizeof(Example));
    }
    Example *x = &ds->ex[ds->n_ex++];
    x->off = ds->n_tokens;
    x->len = (int32_t)len;
    x->item = item;
    x->source = source;
    if (split == DATASET_SPLIT_AUTO)
        split =
            (int64_t)(text_hash % 10000) < ds->valid_bp ? DATASET_SPLIT_VALID : DATASET_SPLIT_TRAIN;
    x->split = (uint8_t)split;
    memcpy(ds->tokens + ds->n_tokens, e->ids.ids + start, len * sizeof(int32_t));
    memcpy(ds->mask + ds->n_tokens, e->mask + start, len);
    int32_t nt = 0;
    uint64_t h = DATA_HASH_INIT;
    for (size_t t = 0; t < len; t++) {
        if (t > 0 && e->mask[start + t]) nt++;
        h = data_hash_u64(h, (uint64_t)(uint32_t)e->ids.ids[start + t] |
                                 (uint64_t)e->mask[start + t] << 32);
    }
    x->n_targets = nt;
    x->tok_hash = h;
    ds->n_tokens += (int64_t)len;
    return 0;
}

// Checks, encodes and commits one conversation (pair: is_pair, messages user + assistant).
static int add_messages(Dataset *ds, const DatasetMessage *m, int n, int is_pair, int rendered,
                        const char *source, int64_t item, DatasetSplit split, char *err,
                        size_t errlen) {
    char where[WHERE_LEN];
    where_str(where, source, item);
    if (split != DATASET_SPLIT_AUTO && split != DATASET_SPLIT_TRAIN && split != DATASET_SPLIT_VALID)
        return util_err(err, errlen, "%s: unknown split %d", where, (int)split);
    if (is_pair) {
        for (int i = 0; i < 2; i++) {
            const char *what = i ? "response" : "prompt";
            if (!m[i].content) return util_err(err, errlen, "%s: no %s", where, what);
            size_t len = strlen(m[i].content), ok = utf8_valid_len(m[i].content, len);
            if (ok != len)
                return util_err(err, errlen, "%s: the %s has invalid UTF-8 at byte %zu", where,
                                what, ok + 1);
        }
        if (!m[1].content[0]) return util_err(err, errlen, "%s: empty response", where);
    } else if (chat_check_messages(m, n, 1, where, err, errlen)) return -1;
    Encoded e = {0};
    if (rendered ? encode_rendered_pair(ds, m[0].content, m[1].content, &e, err, errlen)
                 : encode_messages(ds, m, n, &e, err, errlen)) {
        encoded_free(&e);
        return util_err_prefix(err, errlen, "%s: ", where);
    }
    DatasetMark mark = dataset_mark(ds);
    int rc = commit_encoded(ds, &e, messages_hash(m, n), source_index(ds, source), item, split,
                            where, err, errlen);
    if (rc) dataset_rollback(ds, &mark);   // forget the interned source name too
    encoded_free(&e);
    return rc;
}

int dataset_add_pair(Dataset *ds, const char *prompt, const char *response, const char *source,
                     int64_t item, DatasetSplit split, char *err, size_t errlen) {
    DatasetMessage m[2] = {{"user", prompt}, {"assistant", response}};
    return add_messages(ds, m, 2, 1, 0, source ? source : "(memory)", item, split, err, errlen);
}

int dataset_add_rendered_pair(Dataset *ds, const char *prompt, const char *response,
                              const char *source, int64_t item, DatasetSplit split, char *err,
                              size_t errlen) {
    DatasetMessage m[2] = {{"user", prompt}, {"assistant", response}};
    return add_messages(ds, m, 2, 1, 1, source ? source : "(memory)", item, split, err, errlen);
}

int dataset_add_chat(Dataset *ds, const DatasetMessage *msgs, int n_msgs, const char *source,
                     int64_t item, DatasetSplit split, char *err, size_t errlen) {
    return add_messages(ds, msgs, n_msgs, 0, 0, source ? source : "(memory)", item, split, err,
                        errlen);
}

DatasetMark dataset_mark(const Dataset *ds) {
    DatasetMark m = {ds->n_ex, ds->n_tokens, ds->n_sources, ds->n_truncated, ds->n_dropped};
    return m;
}

void dataset_rollback(Dataset *ds, const DatasetMark *m) {
    ds->n_ex = m->n_examples;
    ds->n_tokens = m->n_tokens;
    while (ds->n_sources > m->n_sources) free(ds->sources[--ds->n_sources]);
    ds->n_truncated = m->n_truncated;
    ds->n_dropped = m->n_dropped;
}

// ---------------------------------------------------------------------------------------------
// JSONL

typedef struct {
    cJSON *root;                 // owns the strings msgs point into
    DatasetMessage pair[2];
    DatasetMessage *msgs;        // pair, or a malloc'd array
    int n_msgs;
    int64_t line;
    Encoded enc;
    int rc;
    char err[256];               // the message when rc != 0 (lines are encoded in parallel)
} Pending;

static void pending_clear(Pending *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        cJSON_Delete(p[i].root);
        if (p[i].msgs != p[i].pair) free(p[i].msgs);
        encoded_free(&p[i].enc);
        memset(&p[i], 0, sizeof p[i]);
    }
}

// Tokenizes the pending lines in parallel, then commits them in line order.
static int flush_pending(Dataset *ds, Pending *p, int64_t n, const char *path, int32_t source,
                         DatasetSplit split, char *err, size_t errlen) {
    #pragma omp parallel for schedule(dynamic, 4)
    for (int64_t i = 0; i < n; i++)
        p[i].rc = encode_messages(ds, p[i].msgs, p[i].n_msgs, &p[i].enc, p[i].err, sizeof p[i].err);
    for (int64_t i = 0; i < n; i++) {
        char where[WHERE_LEN];
        where_str(where, path, p[i].line);
        if (p[i].rc) {   // the message before pending_clear wipes it
            util_err(err, errlen, "%s: %s", where, p[i].err);
            pending_clear(p, n);
            return -1;
        }
        if (commit_encoded(ds, &p[i].enc, messages_hash(p[i].msgs, p[i].n_msgs), source, p[i].line,
                           split, where, err, errlen)) {
            pending_clear(p, n);
            return -1;
        }
    }
    pending_clear(p, n);
    return 0;
}

static const char *json_type(const cJSON *j) {
    if (cJSON_IsString(j)) return "a string";
    if (cJSON_IsNumber(j)) return "a number";
    if (cJSON_IsBool(j)) return "a boolean";
    if (cJSON_IsNull(j)) return "null";
    if (cJSON_IsArray(j)) return "an array";
    if (cJSON_IsObject(j)) return "an object";
    return "invalid";
}

// The member `key` of object o: NULL when absent; -1 (message) when it occurs twice.
static int member(const cJSON *o, const char *key, cJSON **out, const char *where, char *err,
                  size_t errlen) {
    *out = NULL;
    for (cJSON *c = o->child; c; c = c->next) {
        if (!c->string || strcmp(c->string, key)) continue;
        if (*out) return util_err(err, errlen, "%s: duplicate key \"%s\"", where, key);
        *out = c;
    }
    return 0;
}

// Checks that the line's strings hold no \u0000 escape (cJSON would cut the string there).
// Returns the byte offset of the escape, or -1.
static int64_t find_nul_escape(const char *s, size_t n) {
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        if (!in_str) { if (s[i] == '"') in_str = 1; continue; }
        if (s[i] == '"') in_str = 0;
        else if (s[i] == '\\' && i + 1 < n) {
            if (s[i + 1] == 'u' && i + 5 < n && !memcmp(s + i + 2, "0000", 4)) return (int64_t)i;
            i++;
        }
    }
    return -1;
}

// Parses one non-blank line into p (p->root owns the strings). col0: column of s[0] in the file.
static int parse_line(Pending *p, char *s, size_t n, size_t col0, const char *where, char *err,
                      size_t errlen) {
    size_t ok = utf8_valid_len(s, n);
    if (ok != n)
        return util_err(err, errlen, "%s: invalid UTF-8 at column %zu (JSONL must be UTF-8)", where,
                        col0 + ok + 1);
    if (strlen(s) != n)
        return util_err(err, errlen, "%s: NUL byte at column %zu", where, col0 + strlen(s) + 1);
    int64_t z = find_nul_escape(s, n);
    if (z >= 0)
        return util_err(err, errlen, "%s: \\u0000 (a NUL character) in a string at column %zu",
                        where, col0 + (size_t)z + 1);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(s, &end, 1);
    if (!root) {
        size_t col = end && end >= s && end <= s + n ? (size_t)(end - s) : 0;
        return util_err(err, errlen, "%s: bad JSON at column %zu", where, col0 + col + 1);
    }
    p->root = root;
    if (!cJSON_IsObject(root))
        return util_err(err, errlen, "%s: expected a JSON object, got %s", where, json_type(root));
    cJSON *msgs, *prompt, *resp;
    if (member(root, "messages", &msgs, where, err, errlen) ||
        member(root, "prompt", &prompt, where, err, errlen) ||
        member(root, "response", &resp, where, err, errlen))
        return -1;
    if (msgs) {
        if (prompt || resp)
            return util_err(err, errlen, "%s: has both \"messages\" and \"%s\" (one example is "
                            "either a chat or a prompt/response pair)", where,
                            prompt ? "prompt" : "response");
        if (!cJSON_IsArray(msgs))
            return util_err(err, errlen, "%s: \"messages\" must be an array, got %s", where,
                            json_type(msgs));
        int n_msgs = cJSON_GetArraySize(msgs);
        if (n_msgs == 0) return util_err(err, errlen, "%s: \"messages\" is empty", where);
        p->msgs = CALLOC_CHECK((size_t)n_msgs, sizeof(DatasetMessage));
        p->n_msgs = n_msgs;
        int i = 0;
        for (cJSON *m = msgs->child; m; m = m->next, i++) {
            if (!cJSON_IsObject(m))
                return util_err(err, errlen, "%s: messages[%d] must be an object, got %s", where, i,
                                json_type(m));
            cJSON *role, *content;
            if (member(m, "role", &role, where, err, errlen) ||
                member(m, "content", &content, where, err, errlen))
                return -1;
            if (!role) return util_err(err, errlen, "%s: messages[%d] lacks \"role\"", where, i);
            if (!content)
                return util_err(err, errlen, "%s: messages[%d] lacks \"content\"", where, i);
            if (!cJSON_IsString(role))
                return util_err(err, errlen, "%s: messages[%d].role must be a string, got %s",
                                where, i, json_type(role));
            if (!cJSON_IsString(content))
                return util_err(err, errlen, "%s: messages[%d].content must be a string, got %s",
                                where, i, json_type(content));
            p->msgs[i].role = role->valuestring;
            p->msgs[i].content = content->valuestring;
        }
        return chat_check_messages(p->msgs, p->n_msgs, 1, where, err, errlen);
    }
    if (!prompt && !resp)
        return util_err(err, errlen,
                        "%s: missing key \"prompt\" and \"response\" (or \"messages\")", where);
    if (!prompt) return util_err(err, errlen, "%s: missing key \"prompt\"", where);
    if (!resp) return util_err(err, errlen, "%s: missing key \"response\"", where);
    if (!cJSON_IsString(prompt))
        return util_err(err, errlen, "%s: \"prompt\" must be a string, got %s", where,
                        json_type(prompt));
    if (!cJSON_IsString(resp))
        return util_err(err, errlen, "%s: \"response\" must be a string, got %s", where,
                        json_type(resp));
    if (!resp->valuestring[0]) return util_err(err, errlen, "%s: empty response", where);
    p->pair[0].role = "user";
    p->pair[0].content = prompt->valuestring;
    p->pair[1].role = "assistant";
    p->pair[1].content = resp->valuestring;
    p->msgs = p->pair;
    p->n_msgs = 2;
    return 0;
}

int dataset_load_jsonl(Dataset *ds, const char *path, DatasetSplit split, char *err,
                       size_t errlen) {
    if (split != DATASET_SPLIT_AUTO && split != DATASET_SPLIT_TRAIN && split != DATASET_SPLIT_VALID)
        return util_err(err, errlen, "%s: unknown split %d", path, (int)split);
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "cannot open %s: %s", path, strerror(errno));
    DatasetMark mark = dataset_mark(ds);
    int32_t source = source_index(ds, path);
    Pending *pend = CALLOC_CHECK(CHUNK_LINES, sizeof(Pending));
    int64_t n_pend = 0, pend_bytes = 0, line = 0, n_examples = 0;
    CliLines lr = {0};
    int64_t got;
    int rc = 0;
    while ((got = cli_getline(&lr, f, path, err, errlen)) >= 0) {
        line++;
        size_t n = (size_t)got, col0 = 0;
        char *s = lr.buf;
        if (line == 1 && n >= 3 && !memcmp(s, "\xEF\xBB\xBF", 3)) { s += 3; n -= 3; col0 = 3; }
        if (n && s[n - 1] == '\n') s[--n] = 0;
        if (n && s[n - 1] == '\r') s[--n] = 0;
        size_t k = 0;
        while (k < n && (s[k] == ' ' || s[k] == '\t' || s[k] == '\r')) k++;
        if (k == n) continue;
        char where[WHERE_LEN];
        where_str(where, path, line);
        Pending *p = &pend[n_pend];
        p->line = line;
        char perr[1024];
        if (parse_line(p, s, n, col0, where, perr, sizeof perr)) {
            // report the earliest error: the pending lines before this one come first
            pending_clear(p, 1);
            if (flush_pending(ds, pend, n_pend, path, source, split, err, errlen) == 0)
                util_err(err, errlen, "%s", perr);
            n_pend = 0;
            rc = -1;
            break;
        }
        n_pend++;
        n_examples++;
        pend_bytes += (int64_t)n;
        if (n_pend == CHUNK_LINES || pend_bytes >= CHUNK_BYTES) {
            if (flush_pending(ds, pend, n_pend, path, source, split, err, errlen)) {
                n_pend = 0;
                rc = -1;
                break;
            }
            n_pend = 0;
            pend_bytes = 0;
        }
    }
    if (!rc && got < -1) rc = -1;   // cli_getline's message: too long a line or file, a read error
    if (!rc && n_pend) rc = flush_pending(ds, pend, n_pend, path, source, split, err, errlen);
    if (!rc && n_examples == 0)
        rc = util_err(err, errlen, "%s: no examples (the file is empty or holds only blank lines)",
                      path);
    cli_lines_free(&lr);
    free(pend);
    fclose(f);
    if (rc) dataset_rollback(ds, &mark);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// access

void dataset_stats(const Dataset *ds, DatasetStats *st) {
    memset(st, 0, sizeof *st);
    st->n_examples = ds->n_ex;
    st->n_tokens = ds->n_tokens;
    st->n_truncated = ds->n_truncated;
    st->n_dropped = ds->n_dropped;
    for (int64_t i = 0; i < ds->n_ex; i++) {
        const Example *x = &ds->ex[i];
        if (x->split == DATASET_SPLIT_VALID) st->n_valid++;
        else st->n_train++;
        st->n_targets += x->n_targets;
        if (x->len > st->max_len) st->max_len = x->len;
    }
}

int64_t dataset_size(const Dataset *ds) { return ds->n_ex; }

int dataset_example(const Dataset *ds, int64_t i, DatasetExample *out) {
    if (i < 0 || i >= ds->n_ex) return -1;
    const Example *x = &ds->ex[i];
    out->tokens = ds->tokens + x->off;
    out->mask = ds->mask + x->off;
    out->len = x->len;
    out->n_targets = x->n_targets;
    out->split = (DatasetSplit)x->split;
    out->source = ds->sources[x->source];
    out->item = x->item;
    return 0;
}

int dataset_encode_prompt(const Dataset *ds, const char *prompt, TokIds *out, char *err,
                          size_t errlen) {
    size_t len = strlen(prompt), ok = utf8_valid_len(prompt, len);
    if (ok != len) return util_err(err, errlen, "prompt has invalid UTF-8 at byte %zu", ok + 1);
    DatasetMessage m = {"user", prompt};
    return dataset_encode_chat_prompt(ds, &m, 1, out, err, errlen);
}

int dataset_encode_rendered_prompt(const Dataset *ds, const char *text, TokIds *out, char *err,
                                   size_t errlen) {
    size_t len = strlen(text), ok = utf8_valid_len(text, len);
    if (ok != len) return util_err(err, errlen, "prompt has invalid UTF-8 at byte %zu", ok + 1);
    return tok_encode(ds->tok, text, len, TOK_ALLOW_SPECIAL, out, err, errlen);
}

int dataset_encode_chat_prompt(const Dataset *ds, const DatasetMessage *msgs, int n_msgs,
                               TokIds *out, char *err, size_t errlen) {
    if (chat_check_messages(msgs, n_msgs, 0, "prompt", err, errlen)) return -1;
    if (ds->opt.chat) {
        if (chat_encode_prompt(ds->opt.chat, ds->tok, msgs, n_msgs, out, err, errlen))
            return util_err_prefix(err, errlen, "prompt: ");
        return 0;
    }
    Encoded e = {0};
    if (encode_messages(ds, msgs, n_msgs, &e, err, errlen)) {
        encoded_free(&e);
        return util_err_prefix(err, errlen, "prompt: ");
    }
    for (size_t i = 0; i < e.ids.n; i++) ids_push(out, e.ids.ids[i]);
    encoded_free(&e);
    return 0;
}

int dataset_prompt_json(const Dataset *ds, const cJSON *obj, char **text, TokIds *ids,
                        const char *where, char *err, size_t errlen) {
    *text = NULL;
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(obj, "prompt");
    if (cJSON_IsString(p)) {
        if (dataset_encode_prompt(ds, p->valuestring, ids, err, errlen))
            return util_err_prefix(err, errlen, "%s: ", where);
        *text = STRDUP_CHECK(p->valuestring);
        return 0;
    }
    const char *key = p ? "prompt" : "messages";
    if (!p) p = cJSON_GetObjectItemCaseSensitive(obj, "messages");
    if (!p)
        return util_err(err, errlen, "%s: no \"prompt\" (a string or a message list) and no "
                        "\"messages\"", where);
    DatasetMessage *m;
    int n;
    if (chat_messages_from_json(p, key, &m, &n, where, err, errlen)) return -1;
    size_t before = ids->n;
    int rc = chat_check_messages(m, n, 0, where, err, errlen);
    if (!rc && dataset_encode_chat_prompt(ds, m, n, ids, err, errlen))
        rc = util_err_prefix(err, errlen, "%s: ", where);
    free(m);
    TokBytes tb = {0};
    if (!rc) rc = tok_decode(ds->tok, ids->ids + before, ids->n - before, &tb, err, errlen);
    if (!rc) *text = utf8_clean(tb.data ? tb.data : "", tb.n);
    tok_bytes_free(&tb);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// batches

typedef struct {
    int64_t start;   // first entry in Plan.order
    int32_t count;   // rows
} BatchRef;

typedef struct {
    int64_t epoch;      // -1: empty
    int64_t *order;     // [n] example indices
    BatchRef *batches;  // [n_batches]
} Plan;

struct DatasetIter {
    const Dataset *ds;
    DatasetIterOptions opt;     // bucket_batches normalised to >= 1
    int64_t *idx;               // [n] the split's examples, dataset order
    int64_t n, n_batches;
    int max_len;                // longest row (example length - 1)
    uint64_t fingerprint;
    int64_t epoch, index;
    Plan cur, next;
};

typedef struct { int32_t len; int64_t pos; int64_t ex; } SortKey;

static int sortkey_cmp(const void *a, const void *b) {
    const SortKey *x = a, *y = b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static void build_plan(const DatasetIter *it, int64_t epoch, Plan *p) {
    const Dataset *ds = it->ds;
    int64_t n = it->n, B = it->opt.batch_size;
    Rng r;
    rng_init(&r, data_hash_mix(
                     data_hash_u64(data_hash_u64(DATA_HASH_INIT, it->opt.seed), (uint64_t)epoch)));
    memcpy(p->order, it->idx, (size_t)n * sizeof(int64_t));
    if (it->opt.shuffle) {
        for (int64_t i = n - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = p->order[i];
            p->order[i] = p->order[j];
            p->order[j] = t;
        }
    }
    int64_t W = (int64_t)it->opt.bucket_batches * B;
    if (it->opt.bucket_batches > 1) {
        SortKey *k = MALLOC_CHECK((size_t)(W < n ? W : n) * sizeof(SortKey));
        for (int64_t w = 0; w < n; w += W) {
            int64_t m = n - w < W ? n - w : W;
            for (int64_t i = 0; i < m; i++)
                k[i] = (SortKey){ds->ex[p->order[w + i]].len, i, p->order[w + i]};
            qsort(k, (size_t)m, sizeof(SortKey), sortkey_cmp);
            for (int64_t i = 0; i < m; i++) p->order[w + i] = k[i].ex;
        }
        free(k);
    }
    int64_t nb = 0;
    for (int64_t s = 0; s < n; s += B)
        p->batches[nb++] = (BatchRef){s, (int32_t)(n - s < B ? n - s : B)};
    if (it->opt.shuffle) {
        for (int64_t i = nb - 1; i > 0; i--) {
            int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1);
            BatchRef t = p->batches[i];
            p->batches[i] = p->batches[j];
            p->batches[j] = t;
        }
    }
    p->epoch = epoch;
}

// The plan of epoch e: the current one, the cached next one, or a new one built into `next`.
static const Plan *plan_for(DatasetIter *it, int64_t e) {
    if (it->cur.epoch == e) return &it->cur;
    if (it->next.epoch != e) build_plan(it, e, &it->next);
    return &it->next;
}

int dataset_iter_create(DatasetIter **out, const Dataset *ds, DatasetSplit split,
                        const DatasetIterOptions *opt, char *err, size_t errlen) {
    *out = NULL;
    if (split != DATASET_SPLIT_TRAIN && split != DATASET_SPLIT_VALID)
        return util_err(err, errlen, "an iterator needs the train or the valid split (got %d)",
                        (int)split);
    if (opt->batch_size < 1)
        return util_err(err, errlen, "batch size must be at least 1 (got %d)", opt->batch_size);
    if (opt->bucket_batches < 0)
        return util_err(err, errlen, "bucket_batches must be >= 0 (got %d)", opt->bucket_batches);
    int64_t n = 0;
    for (int64_t i = 0; i < ds->n_ex; i++) n += ds->ex[i].split == split;
    const char *name = split == DATASET_SPLIT_TRAIN ? "train" : "valid";
    if (n == 0) {
        if (ds->n_ex == 0 && ds->n_dropped > 0)
            return util_err(err, errlen, "the data set is empty: all %lld examples were dropped as "
                            "longer than the context (max_tokens %d)", (long long)ds->n_dropped,
                            ds->opt.max_tokens);
        if (ds->n_ex == 0) return util_err(err, errlen, "the data set is empty");
        return util_err(err, errlen, "the %s split is empty (%lld examples in the other split, "
                        "%lld dropped as too long)", name, (long long)ds->n_ex,
                        (long long)ds->n_dropped);
    }
    DatasetIter *it = CALLOC_CHECK(1, sizeof *it);
    it->ds = ds;
    it->opt = *opt;
    if (it->opt.bucket_batches < 1) it->opt.bucket_batches = 1;
    it->opt.shuffle = opt->shuffle ? 1 : 0;
    it->n = n;
    it->idx = MALLOC_CHECK((size_t)n * sizeof(int64_t));
    uint64_t h = DATA_HASH_INIT;
    h = data_hash_u64(h, (uint64_t)n);
    h = data_hash_u64(h, (uint64_t)it->opt.batch_size);
    h = data_hash_u64(h, (uint64_t)it->opt.bucket_batches);
    h = data_hash_u64(h, (uint64_t)it->opt.shuffle);
    int64_t k = 0;
    for (int64_t i = 0; i < ds->n_ex; i++) {
        if (ds->ex[i].split != split) continue;
        it->idx[k++] = i;
        if (ds->ex[i].len - 1 > it->max_len) it->max_len = ds->ex[i].len - 1;
        h = data_hash_u64(h, ds->ex[i].tok_hash);
    }
    it->fingerprint = data_hash_mix(h);
    it->n_batches = (n + opt->batch_size - 1) / opt->batch_size;
    for (int i = 0; i < 2; i++) {
        Plan *p = i ? &it->next : &it->cur;
        p->epoch = -1;
        p->order = MALLOC_CHECK((size_t)n * sizeof(int64_t));
        p->batches = MALLOC_CHECK((size_t)it->n_batches * sizeof(BatchRef));
    }
    *out = it;
    return 0;
}

void dataset_iter_free(DatasetIter *it) {
    if (!it) return;
    free(it->idx);
    free(it->cur.order);
    free(it->cur.batches);
    free(it->next.order);
    free(it->next.batches);
    free(it);
}

int64_t dataset_iter_examples(const DatasetIter *it) { return it->n; }
int64_t dataset_iter_batches_per_epoch(const DatasetIter *it) { return it->n_batches; }
int dataset_iter_max_len(const DatasetIter *it) { return it->max_len; }

int64_t dataset_iter_peek_targets(DatasetIter *it, int n) {
    int64_t e = it->epoch, i = it->index, total = 0;
    for (int k = 0; k < n; k++) {
        const Plan *p = plan_for(it, e);
        BatchRef b = p->batches[i];
        for (int32_t r = 0; r < b.count; r++) total += it->ds->ex[p->order[b.start + r]].n_targets;
        if (++i == it->n_batches) { e++; i = 0; }
    }
    return total;
}

void dataset_iter_next(DatasetIter *it, DataBatch *b, float w) {
    if (it->cur.epoch != it->epoch) {
        if (it->next.epoch == it->epoch) { Plan t = it->cur; it->cur = it->next; it->next = t; }
        else build_plan(it, it->epoch, &it->cur);
    }
    const Dataset *ds = it->ds;
    BatchRef br = it->cur.batches[it->index];
    const int64_t *order = it->cur.order + br.start;
    int T = 1;
    for (int32_t r = 0; r < br.count; r++)
        if (ds->ex[order[r]].len - 1 > T) T = ds->ex[order[r]].len - 1;
    if (br.count > b->max_B || T > b->max_T)
        DIE("dataset_iter_next: batch of %d x %d does not fit the DataBatch (%d x %d)", br.count, T,
            b->max_B, b->max_T);
    b->B = br.count;
    b->T = T;
    b->n_targets = 0;
    for (int32_t r = 0; r < br.count; r++) {
        const Example *x = &ds->ex[order[r]];
        const int32_t *tok = ds->tokens + x->off;
        const uint8_t *mask = ds->mask + x->off;
        int32_t L = x->len - 1;
        int32_t *bt = b->tokens + (size_t)r * T, *tg = b->targets + (size_t)r * T;
        float *bw = b->weights + (size_t)r * T;
        for (int32_t t = 0; t < L; t++) {
            bt[t] = tok[t];
            int has = mask[t + 1] != 0;
            tg[t] = has ? tok[t + 1] : -1;
            bw[t] = has ? w : 0.0f;
        }
        for (int32_t t = L; t < T; t++) { bt[t] = 0; tg[t] = -1; bw[t] = 0.0f; }
        b->lengths[r] = L;
        b->source[r] = order[r];
        b->n_targets += x->n_targets;
    }
    if (++it->index == it->n_batches) { it->epoch++; it->index = 0; }
}

void dataset_iter_cursor(const DatasetIter *it, DataCursor *c) {
    *c = (DataCursor){.epoch = it->epoch, .index = it->index, .seed = it->opt.seed,
                      .fingerprint = it->fingerprint};
}

int dataset_iter_seek(DatasetIter *it, const DataCursor *c, char *err, size_t errlen) {
    if (c->fingerprint != it->fingerprint)
        return util_err(err, errlen, "the data cursor does not match this data set and batch "
                        "settings (fingerprint %016llx, expected %016llx): the examples, their "
                        "order, the template, max_tokens, batch size or bucketing changed",
                        (unsigned long long)c->fingerprint, (unsigned long long)it->fingerprint);
    if (c->epoch < 0 || c->index < 0 || c->index >= it->n_batches)
        return util_err(err, errlen, "data cursor out of range (epoch %lld, batch %lld of %lld)",
                        (long long)c->epoch, (long long)c->index, (long long)it->n_batches);
    it->opt.seed = c->seed;
    it->epoch = c->epoch;
    it->index = c->index;
    it->cur.epoch = -1;
    it->next.epoch = -1;
    return 0;
}
