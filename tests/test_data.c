// Data tests: the prompt/response and chat formats give hand-written GPT-2 ids and loss masks
// (ids checked with `rlhf tokenizer encode data/gpt2`), the prompt/response boundary is exact,
// every truncation rule, malformed JSONL lines are errors naming file:line with nothing from the
// file kept, file quirks (CRLF, BOM, blank and very long lines), the deterministic split,
// bucketed batches, exact resume from a cursor, loss weights over micro-batches, and token files:
// text -> ids exactly as whole-document encoding, mmap round trips, windows, resume, and every
// corrupt-file path as a one-line error.
// Run from the repo root (it reads data/gpt2/ and tests/fixtures/data_*).
#define _GNU_SOURCE   // nftw
#include "data.h"
#include "dataset.h"
#include "model.h"
#include "rng.h"
#include "testlib.h"
#include "tokenizer.h"
#include "tokfile.h"
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[512];        // scratch directory for this run
static Tokenizer *gpt2;       // data/gpt2, loaded once in main

// ---------------------------------------------------------------------------------------------
// helpers

static void path(char *out, const char *name) {
    if (snprintf(out, 1024, "%s/%s", root, name) >= 1024) {
        fprintf(stderr, "path too long\n");
        exit(1);
    }
}

static void write_text(const char *p, const char *s) { test_write_file(p, s, strlen(s)); }


static int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }

static int same_i32(const int32_t *a, const int32_t *b, size_t n) {
    return n == 0 || memcmp(a, b, n * sizeof(int32_t)) == 0;
}

static void print_ids(const char *what, const int32_t *ids, size_t n) {
    fprintf(stderr, "      %s (%zu):", what, n);
    for (size_t i = 0; i < n && i < 48; i++) fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, n > 48 ? " ...\n" : "\n");
}

static DatasetOptions default_opts(int max_tokens) {
    DatasetOptions o = {
        .max_tokens = max_tokens, .truncation = DATASET_TRUNCATE_ERROR, .valid_percent = 0};
    return o;
}

static Dataset *make_ds(const DatasetOptions *o) {
    Dataset *ds = NULL;
    char err[512];
    if (dataset_create(&ds, gpt2, o, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "dataset_create: %s", err);
        return NULL;
    }
    return ds;
}

// Checks example i against hand-written ids and mask.
static void check_example(const Dataset *ds, int64_t i, const int32_t *ids, const uint8_t *mask,
                          int n, const char *what) {
    DatasetExample ex;
    if (dataset_example(ds, i, &ex)) {
        test_fail_at(__FILE__, __LINE__, "%s: no example %lld", what, (long long)i);
        return;
    }
    int ok =
        ex.len == n && same_i32(ex.tokens, ids, (size_t)n) && memcmp(ex.mask, mask, (size_t)n) == 0;
    CHECK_MSG(ok, "%s: tokens or mask differ", what);
    if (!ok) {
        print_ids("got ", ex.tokens, (size_t)ex.len);
        print_ids("want", ids, (size_t)n);
        int32_t m[64];
        for (int t = 0; t < ex.len && t < 64; t++) m[t] = ex.mask[t];
        print_ids("got mask", m, (size_t)(ex.len < 64 ? ex.len : 64));
    }
}

// The hand-written examples (tests/fixtures/data_sft_pairs.jsonl, data_sft_chat.jsonl).
// "Human: What is 2+2?\n\nAssistant:" | " It is 4." | <|endoftext|>
static const int32_t PAIR_IDS[17] = {20490, 25, 1867, 318, 362, 10, 17, 30, 198, 198, 48902, 25,
                                     632, 318, 604, 13, 50256};
static const uint8_t PAIR_MASK[17] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1};
// "System: Be brief.\n\n" | "Human: Hi\n\nAssistant:" | " Hello!" <eot> | "Human:
// Bye\n\nAssistant:" | " Goodbye." <eot>   (the system segment alone ends in "\n\n" = 628)
static const int32_t CHAT_IDS[26] = {11964, 25, 1355, 4506, 13, 628,
                                     20490, 25, 15902, 198, 198, 48902, 25,
                                     18435, 0, 50256,
                                     20490, 25, 47843, 198, 198, 48902, 25,
                                     44442, 13, 50256};
static const uint8_t CHAT_MASK[26] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1,
                                      0, 0, 0, 0, 0, 0, 0, 1, 1, 1};

static void fixture_path(char *out, const char *name) {
    snprintf(out, 1024, "%s/fixtures/%s", test_data_dir(), name);
}

// ---------------------------------------------------------------------------------------------
// formats

// A data set made with o holding the JSONL file at path.
static Dataset *jsonl_ds(const DatasetOptions *o, const char *path) {
    Dataset *ds = make_ds(o);
    if (!ds) return NULL;
    char err[512];
    CHECK_MSG(dataset_load_jsonl(ds, path, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    return ds;
}

// A data set made with o holding the pair "What is 2+2?" / "It is 4." (source "db", item 1).
static Dataset *pair_ds(const DatasetOptions *o) {
    Dataset *ds = make_ds(o);
    if (!ds) return NULL;
    char err[512];
    CHECK_MSG(dataset_add_pair(ds, "What is 2+2?", "It is 4.", "db", 1, DATASET_SPLIT_AUTO, err,
                               sizeof err) == 0,
              "%s", err);
    return ds;
}

// A data set (default options, max_tokens 64) holding the JSONL fixture `name`; its path into p.
static Dataset *fixture_ds(const char *name, char p[1024]) {
    DatasetOptions o = default_opts(64);
    fixture_path(p, name);
    return jsonl_ds(&o, p);
}

static void test_pair_format(void) {
    char p[1024], err[512];
    Dataset *ds = fixture_ds("data_sft_pairs.jsonl", p);
    if (!ds) return;
    DatasetOptions o = default_opts(64);
    CHECK(dataset_size(ds) == 1);
    check_example(ds, 0, PAIR_IDS, PAIR_MASK, 17, "pair from JSONL");
    DatasetExample ex;
    CHECK(dataset_example(ds, 0, &ex) == 0 && ex.n_targets == 5 && ex.item == 1 &&
          !strcmp(ex.source, p));
    // the same pair from memory
    CHECK_MSG(dataset_add_pair(ds, "What is 2+2?", "It is 4.", "db", 7, DATASET_SPLIT_AUTO, err,
                               sizeof err) == 0,
              "%s", err);
    check_example(ds, 1, PAIR_IDS, PAIR_MASK, 17, "pair from memory");
    CHECK(dataset_example(ds, 1, &ex) == 0 && ex.item == 7 && !strcmp(ex.source, "db"));
    // generation sees exactly the prompt segment
    TokIds ids = {0};
    CHECK_MSG(dataset_encode_prompt(ds, "What is 2+2?", &ids, err, sizeof err) == 0, "%s", err);
    CHECK(ids.n == 12 && same_i32(ids.ids, PAIR_IDS, 12));
    tok_ids_free(&ids);
    DatasetStats st;
    dataset_stats(ds, &st);
    CHECK(st.n_examples == 2 && st.n_tokens == 34 && st.n_targets == 10 && st.max_len == 17 &&
          st.n_train == 2);
    dataset_free(ds);
    // train_on_all: every token carries a loss
    o.train_on_all = 1;
    ds = pair_ds(&o);
    if (!ds) return;
    uint8_t ones[17];
    memset(ones, 1, sizeof ones);
    check_example(ds, 0, PAIR_IDS, ones, 17, "train_on_all");
    CHECK(dataset_example(ds, 0, &ex) == 0 && ex.n_targets == 16);
    dataset_free(ds);
}

static void test_chat_format(void) {
    char p[1024], err[512];
    Dataset *ds = fixture_ds("data_sft_chat.jsonl", p);
    if (!ds) return;
    CHECK(dataset_size(ds) == 2);
    check_example(ds, 0, CHAT_IDS, CHAT_MASK, 26, "chat from JSONL");
    // a one-turn chat is exactly the pair
    check_example(ds, 1, PAIR_IDS, PAIR_MASK, 17, "one-turn chat");
    DatasetExample ex;
    CHECK(dataset_example(ds, 0, &ex) == 0 && ex.n_targets == 6);
    DatasetMessage m[5] = {{"system", "Be brief."},
                           {"user", "Hi"},
                           {"assistant", "Hello!"},
                           {"user", "Bye"},
                           {"assistant", "Goodbye."}};
    CHECK_MSG(dataset_add_chat(ds, m, 5, "mem", -1, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s",
              err);
    check_example(ds, 2, CHAT_IDS, CHAT_MASK, 26, "chat from memory");
    // the prompt of the next turn: everything before " Goodbye."
    TokIds ids = {0};
    CHECK_MSG(dataset_encode_chat_prompt(ds, m, 4, &ids, err, sizeof err) == 0, "%s", err);
    CHECK(ids.n == 23 && same_i32(ids.ids, CHAT_IDS, 23));
    CHECK_ERR(dataset_encode_chat_prompt(ds, m, 5, &ids, err, sizeof err), err,
              "must end with a user message", NULL);
    tok_ids_free(&ids);
    // bad conversations from memory
    DatasetMessage bad1[2] = {{"assistant", "Hi"}, {"user", "x"}};
    CHECK_ERR(dataset_add_chat(ds, bad1, 2, "mem", 3, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "mem:3: messages[0] is an assistant message where a user message must come", NULL);
    DatasetMessage bad2[3] = {{"user", "Hi"}, {"assistant", "x"}, {"system", "late"}};
    CHECK_ERR(dataset_add_chat(ds, bad2, 3, "mem", 4, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "mem:4: messages[2]: a system message may only come first", NULL);
    DatasetMessage bad3[2] = {{"user", "Hi"}, {"bot", "x"}};
    CHECK_ERR(dataset_add_chat(ds, bad3, 2, "mem", 5, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "messages[1].role must be", NULL);
    DatasetMessage bad4[1] = {{"user", "Hi"}};
    CHECK_ERR(dataset_add_chat(ds, bad4, 1, "mem", 6, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "the last message must be from the assistant", NULL);
    CHECK_ERR(dataset_add_pair(ds, "Hi", "", "mem", 8, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "mem:8: empty response", NULL);
    CHECK_ERR(
        dataset_add_pair(ds, "Hi", "bad \xff byte", "mem", 9, DATASET_SPLIT_AUTO, err, sizeof err),
        err, "mem:9: the response has invalid UTF-8 at byte 5", NULL);
    CHECK(dataset_size(ds) == 3);
    dataset_free(ds);
}

// The prompt/response boundary is exact even where one string would merge across it, and text
// that looks like a special token is ordinary text.
static void test_boundary(void) {
    DatasetOptions o = default_opts(64);
    o.prompt_template = "Human: {prompt}\n\nAssistant: ";
    o.response_prefix = "";
    Dataset *ds = make_ds(&o);
    if (!ds) return;
    char err[512];
    CHECK_MSG(dataset_add_pair(ds, "hi", "Hello", "mem", 1, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    // one string "...Assistant: Hello" would end in 25 18435 (" Hello"), half prompt, half response
    static const int32_t want[10] = {20490, 25, 23105, 198, 198, 48902, 25, 220, 15496, 50256};
    static const uint8_t mask[10] = {0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    check_example(ds, 0, want, mask, 10, "boundary after a trailing space");
    dataset_free(ds);

    o.prompt_template = "{prompt}";
    o.response_prefix = NULL;   // the default " "
    ds = make_ds(&o);
    if (!ds) return;
    CHECK_MSG(dataset_add_pair(ds, "Q: <|endoftext|>\nA:", "ok", "mem", 2, DATASET_SPLIT_AUTO, err,
                               sizeof err) == 0,
              "%s", err);
    static const int32_t want2[14] = {48, 25, 1279, 91, 437, 1659,  5239,
                                      91, 29, 198,  32, 25,  12876, 50256};
    static const uint8_t mask2[14] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
    check_example(ds, 0, want2, mask2, 14, "special-token text inside a prompt");
    dataset_free(ds);

    // template errors
    Dataset *bad;
    o.prompt_template = "no placeholder";
    CHECK_ERR(dataset_create(&bad, gpt2, &o, err, sizeof err), err, "lacks {prompt}", NULL);
    o.prompt_template = "{prompt}{prompt}";
    CHECK_ERR(dataset_create(&bad, gpt2, &o, err, sizeof err), err, "more than once", NULL);
    o.prompt_template = NULL;
    o.system_template = "System:";
    CHECK_ERR(dataset_create(&bad, gpt2, &o, err, sizeof err), err, "lacks {system}", NULL);
    o.system_template = NULL;
    o.max_tokens = 0;
    CHECK_ERR(dataset_create(&bad, gpt2, &o, err, sizeof err), err, "max_tokens", NULL);
    o.max_tokens = 8;
    o.valid_percent = 101;
    CHECK_ERR(dataset_create(&bad, gpt2, &o, err, sizeof err), err, "valid_percent", NULL);
    DatasetTruncation t;
    CHECK(dataset_truncation_parse("drop", &t, err, sizeof err) == 0 && t == DATASET_TRUNCATE_DROP);
    CHECK(dataset_truncation_parse("truncate_prompt_left", &t, err, sizeof err) == 0 &&
          t == DATASET_TRUNCATE_PROMPT_LEFT);
    CHECK_ERR(dataset_truncation_parse("truncate", &t, err, sizeof err), err,
              "unknown truncation rule 'truncate'", NULL);
}

// ---------------------------------------------------------------------------------------------
// truncation

static void test_truncation(void) {
    char p[1024], err[512];
    path(p, "trunc.jsonl");
    write_text(p, "{\"prompt\": \"Hi\", \"response\": \"x\"}\n"
                  "{\"prompt\": \"What is 2+2?\", \"response\": \"It is 4.\"}\n");
    // error: names file:line and both lengths; nothing from the file is kept
    DatasetOptions o = default_opts(10);
    Dataset *ds = make_ds(&o);
    if (!ds) return;
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "trunc.jsonl:2: example is 17 tokens", "(11 = max_tokens 10 + 1)");
    CHECK(dataset_size(ds) == 0);
    CHECK_ERR(dataset_add_pair(ds, "What is 2+2?", "It is 4.", "db", 42, DATASET_SPLIT_AUTO, err,
                               sizeof err),
              err, "db:42: example is 17 tokens", NULL);
    dataset_free(ds);
    // an example of exactly T+1 tokens fits (T positions, the last token only a target)
    o = default_opts(16);
    ds = jsonl_ds(&o, p);
    if (ds) {
        check_example(ds, 1, PAIR_IDS, PAIR_MASK, 17, "T+1 tokens fit");
        dataset_free(ds);
    }
    // truncate_prompt_left: the last T+1 tokens, the whole response
    o = default_opts(10);
    o.truncation = DATASET_TRUNCATE_PROMPT_LEFT;
    ds = jsonl_ds(&o, p);
    if (!ds) return;
    CHECK(dataset_size(ds) == 2);
    check_example(ds, 1, PAIR_IDS + 6, PAIR_MASK + 6, 11, "truncate_prompt_left");
    DatasetStats st;
    dataset_stats(ds, &st);
    CHECK(st.n_truncated == 1 && st.n_dropped == 0 && st.max_len == 11);
    dataset_free(ds);
    // ... down to one prompt token in front of the response
    o.max_tokens = 5;
    ds = pair_ds(&o);
    if (!ds) return;
    check_example(ds, 0, PAIR_IDS + 11, PAIR_MASK + 11, 6,
                  "truncate_prompt_left, one prompt token left");
    dataset_free(ds);
    // ... and a response that cannot fit is dropped and counted
    o.max_tokens = 4;
    ds = pair_ds(&o);
    if (!ds) return;
    dataset_stats(ds, &st);
    CHECK(dataset_size(ds) == 0 && st.n_dropped == 1 && st.n_truncated == 0);
    DatasetIter *it;
    DatasetIterOptions io = {.batch_size = 2, .seed = 1};
    CHECK_ERR(dataset_iter_create(&it, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err), err,
              "all 1 examples were dropped", NULL);
    dataset_free(ds);
    // chat: earlier turns are cut, kept tokens keep their masks
    o.max_tokens = 12;
    ds = make_ds(&o);
    if (!ds) return;
    DatasetMessage m[5] = {{"system", "Be brief."},
                           {"user", "Hi"},
                           {"assistant", "Hello!"},
                           {"user", "Bye"},
                           {"assistant", "Goodbye."}};
    CHECK_MSG(dataset_add_chat(ds, m, 5, "mem", 1, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s",
              err);
    check_example(ds, 0, CHAT_IDS + 13, CHAT_MASK + 13, 13, "truncate_prompt_left, chat");
    dataset_free(ds);
    // drop: skipped and counted
    o = default_opts(10);
    o.truncation = DATASET_TRUNCATE_DROP;
    ds = jsonl_ds(&o, p);
    if (!ds) return;
    dataset_stats(ds, &st);
    CHECK(dataset_size(ds) == 1 && st.n_dropped == 1 && st.n_truncated == 0);
    dataset_free(ds);
}

// ---------------------------------------------------------------------------------------------
// malformed input

static void test_malformed_lines(void) {
    static const struct { const char *line; const char *want;
    } cases[] = {
        {"{\"prompt\": \"a\", \"response\": }", "bad JSON at column 29"},
        {"{\"prompt\": \"a\", \"response\": \"b\"} trailing", "bad JSON at column 34"},
        {"{\"prompt\": \"a\"}", "missing key \"response\""},
        {"{\"response\": \"a\"}", "missing key \"prompt\""},
        {"{\"id\": 3}", "missing key \"prompt\" and \"response\" (or \"messages\")"},
        {"{\"prompt\": 5, \"response\": \"b\"}", "\"prompt\" must be a string, got a number"},
        {"{\"prompt\": \"a\", \"response\": null}", "\"response\" must be a string, got null"},
        {"{\"prompt\": \"a\", \"response\": \"\"}", "empty response"},
        {"[1, 2]", "expected a JSON object, got an array"},
        {"{\"prompt\": \"a\", \"prompt\": \"b\", \"response\": \"c\"}", "duplicate key \"prompt\""},
        {"{\"prompt\": \"a\", \"response\": \"b \xc3\x28\"}", "invalid UTF-8 at column 32"},
        {"{\"prompt\": \"a\\u0000b\", \"response\": \"c\"}", "\\u0000"},
        {"{\"prompt\": \"\\ud800\", \"response\": \"c\"}", "bad JSON"},
        {"{\"messages\": {}}", "\"messages\" must be an array, got an object"},
        {"{\"messages\": []}", "\"messages\" is empty"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}]}",
         "the last message must be from the assistant"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"robot\", \"content\": \"b\"}]}",
         "messages[1].role must be"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\"}]}",
         "messages[1] lacks \"content\""},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": 1}]}",
         "messages[1].content must be a string, got a number"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"b\"}]}",
         "messages[1] is a user message where an assistant message must come"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"\"}]}",
         "empty assistant content"},
        {"{\"messages\": [\"hi\"]}", "messages[0] must be an object, got a string"},
        {"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", \"content\": \"b\"}], \"prompt\": \"c\"}",
         "has both \"messages\" and \"prompt\""},
    };
    DatasetOptions o = default_opts(64);
    Dataset *ds = make_ds(&o);
    if (!ds) return;
    char good[1024], p[1024], err[512];
    // one good file first: a failing file must not take it away
    path(good, "good.jsonl");
    write_text(good, "{\"prompt\": \"What is 2+2?\", \"response\": \"It is 4.\"}\n");
    CHECK_MSG(dataset_load_jsonl(ds, good, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    path(p, "bad.jsonl");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[2048];
        snprintf(
            text, sizeof text,
            "{\"prompt\": \"one\", \"response\": \"two\"}\n\n{\"prompt\": \"three\", \"response\": \"four\"}\n%s\n"
            "{\"prompt\": \"five\", \"response\": \"six\"}\n",
            cases[i].line);
        write_text(p, text);
        CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
                  "bad.jsonl:4: ", cases[i].want);
        CHECK_MSG(dataset_size(ds) == 1, "case %zu: %lld examples after a failed load", i,
                  (long long)dataset_size(ds));
    }
    // a NUL byte inside a line
    static const char nul[] =
        "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"a\0\", \"response\": \"b\"}\n";
    test_write_file(p, nul, sizeof nul - 1);
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "bad.jsonl:2: NUL byte at column 14", NULL);
    // a bad line after several thousand good ones (examples already tokenized and committed in
    // chunks) still leaves nothing from the file
    FILE *f = fopen(p, "wb");
    for (int i = 0; i < 5000; i++)
        fprintf(f, "{\"prompt\": \"q%d\", \"response\": \"a%d\"}\n", i, i);
    fprintf(f, "{\"prompt\": \"q\", \"response\": 1}\n");
    fclose(f);
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "bad.jsonl:5001: \"response\" must be a string", NULL);
    CHECK(dataset_size(ds) == 1);
    DatasetStats st;
    dataset_stats(ds, &st);
    CHECK(st.n_tokens == 17);
    // the earliest error is reported: line 2 is too long (checked after tokenizing), line 3 is bad
    // JSON
    Dataset *small = NULL;
    DatasetOptions so = default_opts(12);
    if (dataset_create(&small, gpt2, &so, err, sizeof err) == 0) {
        write_text(p, "{\"prompt\": \"a\", \"response\": \"b\"}\n{\"prompt\": \"What is 2+2?\", \"response\": \"It is 4.\"}\n{oops\n");
        CHECK_ERR(dataset_load_jsonl(small, p, DATASET_SPLIT_AUTO, err, sizeof err), err, "bad.jsonl:2: example is 17 tokens", NULL);
        CHECK(dataset_size(small) == 0);
        dataset_free(small);
    }
    // missing, empty and blank files
    path(p, "missing.jsonl");
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err, "cannot open",
              "missing.jsonl");
    path(p, "empty.jsonl");
    write_text(p, "");
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "empty.jsonl: no examples", NULL);
    write_text(p, "\n  \r\n\t\n");
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "empty.jsonl: no examples", NULL);
    CHECK(dataset_size(ds) == 1);
    // an empty data set cannot be iterated
    Dataset *empty = make_ds(&o);
    if (empty) {
        DatasetIter *it;
        DatasetIterOptions io = {.batch_size = 2, .seed = 1};
        CHECK_ERR(dataset_iter_create(&it, empty, DATASET_SPLIT_TRAIN, &io, err, sizeof err), err,
                  "the data set is empty", NULL);
        CHECK_ERR(dataset_iter_create(&it, ds, DATASET_SPLIT_VALID, &io, err, sizeof err), err,
                  "the valid split is empty", NULL);
        dataset_free(empty);
    }
    // mark / rollback for callers adding groups from memory
    DatasetMark mark = dataset_mark(ds);
    CHECK(dataset_add_pair(ds, "a", "b", "db", 1, DATASET_SPLIT_AUTO, err, sizeof err) == 0);
    CHECK(dataset_add_pair(ds, "c", "d", "db2", 2, DATASET_SPLIT_AUTO, err, sizeof err) == 0);
    CHECK(dataset_size(ds) == 3);
    dataset_rollback(ds, &mark);
    dataset_stats(ds, &st);
    CHECK(dataset_size(ds) == 1 && st.n_tokens == 17);
    DatasetExample ex;
    CHECK(dataset_example(ds, 0, &ex) == 0 && !strcmp(ex.source, good));
    dataset_free(ds);
}

static void test_file_quirks(void) {
    DatasetOptions o = default_opts(1 << 20);
    Dataset *ds = make_ds(&o);
    if (!ds) return;
    char p[1024], err[512];
    path(p, "quirks.jsonl");
    // BOM, CRLF, blank lines (with spaces and a lone CR), unicode, escapes
    write_text(p, "\xEF\xBB\xBF{\"prompt\": \"What is 2+2?\", \"response\": \"It is 4.\"}\r\n"
                  "\r\n   \n"
                  "{\"prompt\": \"What is 2+2?\", \"response\": \"It is \\u0034.\", \"id\": 17}\r\n"
                  "\n");
    CHECK_MSG(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    CHECK(dataset_size(ds) == 2);
    check_example(ds, 0, PAIR_IDS, PAIR_MASK, 17, "BOM + CRLF");
    check_example(ds, 1, PAIR_IDS, PAIR_MASK, 17, "escaped response after blank lines");
    DatasetExample ex;
    CHECK(dataset_example(ds, 1, &ex) == 0 && ex.item == 4);
    // a very long line (4 MB): read whole, tokenized like the same text from memory
    size_t n = 4u << 20;
    char *big = malloc(n + 100), *resp = malloc(n / 4 + 1);
    for (size_t i = 0; i < n / 4; i++) resp[i] = "abc "[i % 4];
    resp[n / 4] = 0;
    int len = snprintf(big, n + 100, "{\"prompt\": \"long\", \"response\": \"%s\"}\n", resp);
    test_write_file(p, big, (size_t)len);
    CHECK_MSG(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(dataset_add_pair(ds, "long", resp, "mem", 1, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    DatasetExample a, b;
    CHECK(dataset_example(ds, 2, &a) == 0 && dataset_example(ds, 3, &b) == 0);
    CHECK(a.len == b.len && a.len > 500000 && same_i32(a.tokens, b.tokens, (size_t)a.len) &&
          memcmp(a.mask, b.mask, (size_t)a.len) == 0);
    free(big);
    free(resp);
    // a file that is not UTF-8 (UTF-16 with its BOM)
    test_write_file(p, "\xFF\xFE{\0\"\0", 6);
    CHECK_ERR(dataset_load_jsonl(ds, p, DATASET_SPLIT_AUTO, err, sizeof err), err,
              "quirks.jsonl:1: invalid UTF-8 at column 1", NULL);
    CHECK(dataset_size(ds) == 4);
    dataset_free(ds);
}

// ---------------------------------------------------------------------------------------------
// splits

// The documented rule, written out independently: FNV-1a 64 over role\0content\0 per message,
// MurmurHash3's finalizer, modulo 10000, against valid_percent in basis points.
static int expect_valid(const char *prompt, const char *response, double valid_percent) {
    const char *parts[4] = {"user", prompt, "assistant", response};
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < 4; i++) {
        const unsigned char *s = (const unsigned char *)parts[i];
        size_t n = strlen(parts[i]) + 1;
        for (size_t k = 0; k < n; k++) { h ^= s[k]; h *= 0x100000001b3ULL; }
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 33;
    return (int64_t)(h % 10000) < (int64_t)(valid_percent * 100 + 0.5);
}

static void test_split(void) {
    DatasetOptions o = default_opts(64);
    o.valid_percent = 20;
    Dataset *a = make_ds(&o), *b = make_ds(&o);
    if (!a || !b) { dataset_free(a); dataset_free(b); return; }
    char p[1024], q[1024], err[512];
    path(p, "split_fwd.jsonl");
    path(q, "split_rev.jsonl");
    FILE *f = fopen(p, "wb"), *g = fopen(q, "wb");
    enum { N = 300 };
    for (int i = 0; i < N; i++)
        fprintf(f, "{\"prompt\": \"question %d\", \"response\": \"answer %d\"}\n", i, i);
    for (int i = N - 1; i >= 0; i--)
        fprintf(g, "{\"prompt\": \"question %d\", \"response\": \"answer %d\"}\n", i, i);
    fclose(f);
    fclose(g);
    CHECK_MSG(dataset_load_jsonl(a, p, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(dataset_load_jsonl(b, q, DATASET_SPLIT_AUTO, err, sizeof err) == 0, "%s", err);
    int n_valid = 0, mismatch = 0, rule = 0;
    for (int i = 0; i < N; i++) {
        DatasetExample x, y;
        dataset_example(a, i, &x);
        dataset_example(b, N - 1 - i, &y);
        char pr[64], re[64];
        snprintf(pr, sizeof pr, "question %d", i);
        snprintf(re, sizeof re, "answer %d", i);
        n_valid += x.split == DATASET_SPLIT_VALID;
        mismatch += x.split != y.split;
        rule += (x.split == DATASET_SPLIT_VALID) != expect_valid(pr, re, 20);
    }
    CHECK_MSG(mismatch == 0, "%d examples change split with file order", mismatch);
    CHECK_MSG(rule == 0, "%d examples differ from the documented hash rule", rule);
    CHECK_MSG(n_valid > N / 10 && n_valid < 3 * N / 10, "%d of %d in valid at 20%%", n_valid, N);
    DatasetStats st;
    dataset_stats(a, &st);
    CHECK(st.n_valid == n_valid && st.n_train == N - n_valid);
    // a pair and the same one-turn chat share a split; so do duplicates
    int agree = 1;
    for (int i = 0; i < 40; i++) {
        char pr[64], re[64];
        snprintf(pr, sizeof pr, "question %d", i);
        snprintf(re, sizeof re, "answer %d", i);
        DatasetMessage m[2] = {{"user", pr}, {"assistant", re}};
        dataset_add_chat(b, m, 2, "mem", i, DATASET_SPLIT_AUTO, err, sizeof err);
        DatasetExample x, y;
        dataset_example(a, i, &x);
        dataset_example(b, dataset_size(b) - 1, &y);
        agree &= x.split == y.split;
    }
    CHECK(agree);
    // an explicit split file
    CHECK_MSG(dataset_load_jsonl(b, p, DATASET_SPLIT_VALID, err, sizeof err) == 0, "%s", err);
    int all_valid = 1;
    for (int64_t i = dataset_size(b) - N; i < dataset_size(b); i++) {
        DatasetExample x;
        dataset_example(b, i, &x);
        all_valid &= x.split == DATASET_SPLIT_VALID;
    }
    CHECK(all_valid);
    dataset_free(a);
    dataset_free(b);
    // 0% and 100%
    for (int k = 0; k < 2; k++) {
        o.valid_percent = k ? 100 : 0;
        Dataset *c = jsonl_ds(&o, p);
        if (!c) return;
        dataset_stats(c, &st);
        CHECK(k ? st.n_valid == N : st.n_train == N);
        dataset_free(c);
    }
}

// ---------------------------------------------------------------------------------------------
// batches

// A data set of n examples with varied lengths, all in train.
static Dataset *varied_ds(int n) {
    DatasetOptions o = default_opts(128);
    Dataset *ds = make_ds(&o);
    if (!ds) return NULL;
    char pr[512], re[512], err[512];
    for (int i = 0; i < n; i++) {
        int a = snprintf(pr, sizeof pr, "Question %d:", i);
        for (int k = 0; k < (i * 7) % 11; k++)
            a += snprintf(pr + a, sizeof pr - (size_t)a, " word%d", k);
        int b = snprintf(re, sizeof re, "Answer %d.", i);
        for (int k = 0; k < (i * 5) % 7; k++) b += snprintf(re + b, sizeof re - (size_t)b, " more");
        if (dataset_add_pair(ds, pr, re, "mem", i, DATASET_SPLIT_AUTO, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err);
            dataset_free(ds);
            return NULL;
        }
    }
    return ds;
}

// Checks that b's rows are exactly the examples they claim to be, padded as documented.
static int check_batch_rows(const Dataset *ds, const DataBatch *b, float w) {
    int64_t nt = 0;
    int T = 0;
    for (int r = 0; r < b->B; r++) {
        DatasetExample ex;
        if (dataset_example(ds, b->source[r], &ex)) return 0;
        int L = ex.len - 1;
        if (b->lengths[r] != L) return 0;
        if (L > T) T = L;
        for (int t = 0; t < b->T; t++) {
            int32_t tok = b->tokens[r * b->T + t], tgt = b->targets[r * b->T + t];
            float wt = b->weights[r * b->T + t];
            if (t < L) {
                int32_t want = ex.mask[t + 1] ? ex.tokens[t + 1] : -1;
                if (tok != ex.tokens[t] || tgt != want || wt != (want >= 0 ? w : 0.0f)) return 0;
                nt += want >= 0;
            } else if (tok != 0 || tgt != -1 || wt != 0.0f) return 0;
        }
    }
    return T == b->T && nt == b->n_targets;
}

static int64_t padded_size(const Dataset *ds, int bucket, uint64_t seed) {
    DatasetIter *it;
    char err[512];
    DatasetIterOptions io = {.batch_size = 4, .bucket_batches = bucket, .shuffle = 1, .seed = seed};
    if (dataset_iter_create(&it, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err)) return -1;
    DataBatch b;
    data_batch_init(&b, 4, dataset_iter_max_len(it));
    int64_t total = 0;
    for (int64_t i = 0; i < dataset_iter_batches_per_epoch(it); i++) {
        dataset_iter_next(it, &b, 1.0f);
        total += (int64_t)b.B * b.T;
    }
    data_batch_free(&b);
    dataset_iter_free(it);
    return total;
}

// varied_ds(n) and a training-split iterator over it with options io; -1 (test failed, nothing
// left to free) when either cannot be made.
static int varied_iter(int n, const DatasetIterOptions *io, Dataset **ds, DatasetIter **it) {
    *ds = varied_ds(n);
    if (!*ds) return -1;
    char err[512];
    if (dataset_iter_create(it, *ds, DATASET_SPLIT_TRAIN, io, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        dataset_free(*ds);
        return -1;
    }
    return 0;
}

static void test_batches(void) {
    enum { N = 50, B = 4 };
    char err[512];
    Dataset *ds;
    DatasetIter *it;
    DatasetIterOptions io = {.batch_size = B, .bucket_batches = 3, .shuffle = 1, .seed = 1234};
    if (varied_iter(N, &io, &ds, &it)) return;
    CHECK(dataset_iter_examples(it) == N && dataset_iter_batches_per_epoch(it) == (N + B - 1) / B);
    DatasetStats st;
    dataset_stats(ds, &st);
    CHECK(dataset_iter_max_len(it) == st.max_len - 1);
    DataBatch b;
    data_batch_init(&b, B, dataset_iter_max_len(it));
    int64_t nb = dataset_iter_batches_per_epoch(it);
    int seen[N], rows_ok = 1, short_batches = 0;
    int64_t first_epoch[N];
    for (int e = 0; e < 2; e++) {
        memset(seen, 0, sizeof seen);
        int k = 0;
        for (int64_t i = 0; i < nb; i++) {
            DataCursor c;
            dataset_iter_cursor(it, &c);
            CHECK(c.epoch == e && c.index == i);
            dataset_iter_next(it, &b, 0.5f);
            rows_ok &= check_batch_rows(ds, &b, 0.5f);
            short_batches += b.B < B;
            for (int r = 0; r < b.B; r++) {
                seen[b.source[r]]++;
                if (e == 0) first_epoch[k] = b.source[r];
                else CHECK(k < N);
                k++;
            }
        }
        int once = 1;
        for (int i = 0; i < N; i++) once &= seen[i] == 1;
        CHECK_MSG(once, "epoch %d does not serve every example exactly once", e);
    }
    CHECK_MSG(rows_ok,
              "a batch row differs from its example (tokens, targets, weights or padding)");
    CHECK(short_batches == 2);   // N % B = 2: one short batch per epoch
    DataCursor c;
    dataset_iter_cursor(it, &c);
    CHECK(c.epoch == 2 && c.index == 0);
    // the same seed gives the same order; another seed another
    DatasetIter *it2;
    CHECK(dataset_iter_create(&it2, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
    int same = 1;
    for (int k = 0; k < N;) {
        dataset_iter_next(it2, &b, 1.0f);
        for (int r = 0; r < b.B; r++, k++) same &= b.source[r] == first_epoch[k];
    }
    CHECK(same);
    dataset_iter_free(it2);
    io.seed = 99;
    CHECK(dataset_iter_create(&it2, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
    same = 1;
    for (int k = 0; k < N;) {
        dataset_iter_next(it2, &b, 1.0f);
        for (int r = 0; r < b.B; r++, k++) same &= b.source[r] == first_epoch[k];
    }
    CHECK(!same);
    dataset_iter_free(it2);
    // bucketing: less padding than plain shuffling, the full sort least
    int64_t none = padded_size(ds, 0, 5), some = padded_size(ds, 3, 5),
            full = padded_size(ds, 1000, 5);
    CHECK_MSG(full <= some && some < none && full < none,
              "padded sizes: none %lld, windows of 3 %lld, full sort %lld", (long long)none,
              (long long)some, (long long)full);
    // without shuffle: dataset order, sorted by length within windows of 2 batches (stable)
    DatasetIterOptions seq = {.batch_size = B, .bucket_batches = 2, .shuffle = 0, .seed = 0};
    CHECK(dataset_iter_create(&it2, ds, DATASET_SPLIT_TRAIN, &seq, err, sizeof err) == 0);
    int64_t want[N];
    for (int w = 0; w < N; w += 2 * B) {
        int m = N - w < 2 * B ? N - w : 2 * B;
        for (int i = 0; i < m; i++) want[w + i] = w + i;
        for (int i = 1; i < m; i++)   // insertion sort by length: stable
            for (int j = i; j > 0; j--) {
                DatasetExample x, y;
                dataset_example(ds, want[w + j - 1], &x);
                dataset_example(ds, want[w + j], &y);
                if (x.len <= y.len) break;
                int64_t t = want[w + j]; want[w + j] = want[w + j - 1]; want[w + j - 1] = t;
            }
    }
    same = 1;
    for (int k = 0; k < N;) {
        dataset_iter_next(it2, &b, 1.0f);
        for (int r = 0; r < b.B; r++, k++) same &= b.source[r] == want[k];
    }
    CHECK_MSG(same, "unshuffled bucketed order differs from the documented rule");
    dataset_iter_free(it2);
    data_batch_free(&b);
    dataset_iter_free(it);
    dataset_free(ds);
}

static int batches_equal(const DataBatch *a, const DataBatch *b) {
    size_t n = (size_t)a->B * (size_t)a->T;
    return a->B == b->B && a->T == b->T && a->n_targets == b->n_targets &&
           same_i32(a->tokens, b->tokens, n) && same_i32(a->targets, b->targets, n) &&
           memcmp(a->weights, b->weights, n * sizeof(float)) == 0 &&
           same_i32(a->lengths, b->lengths, (size_t)a->B) &&
           memcmp(a->source, b->source, (size_t)a->B * sizeof(int64_t)) == 0;
}

static void test_resume(void) {
    char err[512];
    Dataset *ds;
    DatasetIter *a, *b;
    DatasetIterOptions io = {.batch_size = 5, .bucket_batches = 2, .shuffle = 1, .seed = 77};
    if (varied_iter(37, &io, &ds, &a)) return;
    DataBatch x, y;
    data_batch_init(&x, 5, dataset_iter_max_len(a));
    data_batch_init(&y, 5, dataset_iter_max_len(a));
    for (int i = 0; i < 11; i++)
        dataset_iter_next(a, &x, 1.0f); // into the second epoch (8 per epoch)
    DataCursor c, c2;
    dataset_iter_cursor(a, &c);
    CHECK(c.epoch == 1 && c.index == 3 && c.seed == 77);
    // through a trainer state, as a checkpoint would carry it
    CkptTrainerState st;
    ckpt_state_init(&st);
    CHECK_MSG(data_cursor_save(&c, &st, "train_data", err, sizeof err) == 0, "%s", err);
    CHECK_MSG(data_cursor_load(&c2, &st, "train_data", err, sizeof err) == 0, "%s", err);
    CHECK(memcmp(&c, &c2, sizeof c) == 0);
    CHECK_ERR(data_cursor_load(&c2, &st, "valid_data", err, sizeof err), err, "valid_data.epoch",
              NULL);
    // a fresh iterator with another seed, restored, serves the same batches
    io.seed = 5;
    CHECK(dataset_iter_create(&b, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
    CHECK_MSG(dataset_iter_seek(b, &c2, err, sizeof err) == 0, "%s", err);
    int same = 1;
    for (int i = 0; i < 30; i++) {
        int64_t pa = dataset_iter_peek_targets(a, 3), pb = dataset_iter_peek_targets(b, 3);
        dataset_iter_next(a, &x, 0.25f);
        dataset_iter_next(b, &y, 0.25f);
        same &= batches_equal(&x, &y) && pa == pb;
    }
    CHECK_MSG(same, "batches differ after restoring the cursor");
    dataset_iter_free(b);
    // other settings or data: the cursor is refused
    io.batch_size = 4;
    CHECK(dataset_iter_create(&b, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
    CHECK_ERR(dataset_iter_seek(b, &c2, err, sizeof err), err, "does not match", NULL);
    dataset_iter_free(b);
    io.batch_size = 5;
    Dataset *other = varied_ds(38);
    if (other) {
        CHECK(dataset_iter_create(&b, other, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
        CHECK_ERR(dataset_iter_seek(b, &c2, err, sizeof err), err, "does not match", NULL);
        dataset_iter_free(b);
        dataset_free(other);
    }
    c2.index = 8;
    CHECK(dataset_iter_create(&b, ds, DATASET_SPLIT_TRAIN, &io, err, sizeof err) == 0);
    CHECK_ERR(dataset_iter_seek(b, &c2, err, sizeof err), err, "out of range", NULL);
    dataset_iter_free(b);
    data_batch_free(&x);
    data_batch_free(&y);
    dataset_iter_free(a);
    dataset_free(ds);
}

// The loss of a step of A micro-batches is the mean over all their target tokens.
static void test_weights(void) {
    Dataset *ds;
    DatasetIter *it;
    DatasetIterOptions io = {.batch_size = 3, .bucket_batches = 1, .shuffle = 1, .seed = 3};
    if (varied_iter(23, &io, &ds, &it)) return;
    enum { A = 4 };
    DataBatch mb[A];
    for (int i = 0; i < A; i++) data_batch_init(&mb[i], 3, dataset_iter_max_len(it));
    for (int step = 0; step < 5; step++) {   // 20 micro-batches: crosses the 8-batch epochs
        int64_t N = dataset_iter_peek_targets(it, A);
        float w = (float)(1.0 / (double)N);
        int64_t count = 0;
        double wsum = 0, weighted = 0, plain = 0;
        for (int i = 0; i < A; i++) {
            dataset_iter_next(it, &mb[i], w);
            count += mb[i].n_targets;
            for (int k = 0; k < mb[i].B * mb[i].T; k++) {
                wsum += mb[i].weights[k];
                // a stand-in for the per-token loss: any value per target
                if (mb[i].targets[k] >= 0) {
                    weighted += (double)mb[i].weights[k] * mb[i].targets[k];
                    plain += mb[i].targets[k];
                }
            }
        }
        CHECK_MSG(count == N, "step %d: peek said %lld targets, the batches hold %lld", step,
                  (long long)N, (long long)count);
        CHECK_MSG(wsum > 1 - 1e-5 && wsum < 1 + 1e-5, "step %d: weights sum to %.8f", step, wsum);
        CHECK_MSG(weighted > plain / (double)N * (1 - 1e-5) &&
                      weighted < plain / (double)N * (1 + 1e-5),
                  "step %d: weighted sum %.6f vs mean %.6f", step, weighted, plain / (double)N);
        // normalising filled batches gives the same weights
        float keep = mb[1].weights[mb[1].T - 1];
        CHECK(data_batch_normalise(mb, A) == N);
        CHECK(mb[1].weights[mb[1].T - 1] == keep);
    }
    for (int i = 0; i < A; i++) data_batch_free(&mb[i]);
    dataset_iter_free(it);
    dataset_free(ds);
}

// ---------------------------------------------------------------------------------------------
// token files

// Expected ids of text files: per file, documents cut at "<|endoftext|>", each encoded whole and
// followed by the end token, blank documents skipped.
static void expected_ids(const char *const *texts, const size_t *lens, int n, TokIds *out,
                         int64_t *n_docs) {
    char err[256];
    *n_docs = 0;
    for (int i = 0; i < n; i++) {
        const char *s = texts[i], *end = texts[i] + lens[i];
        for (;;) {
            const char *sep = memmem(s, (size_t)(end - s), "<|endoftext|>", 13);
            const char *e = sep ? sep : end;
            int blank = 1;
            for (const char *q = s; q < e && blank; q++) blank = strchr(" \t\n\r\v\f", *q) && *q;
            if (!blank) {
                tok_encode(gpt2, s, (size_t)(e - s), 0, out, err, sizeof err);
                int32_t eot = 50256;
                TokIds one = {&eot, 1, 1};
                for (size_t k = 0; k < one.n; k++) {
                    if (out->n == out->cap) {
                        out->cap = out->cap ? 2 * out->cap : 64;
                        out->ids = realloc(out->ids, out->cap * sizeof(int32_t));
                    }
                    out->ids[out->n++] = one.ids[k];
                }
                (*n_docs)++;
            }
            if (!sep) break;
            s = sep + 13;
        }
    }
}

// Pseudo-random text: words, numbers, punctuation, unicode, runs of spaces and newlines,
// separators, and one long stretch without a safe cut point.
static char *random_text(uint64_t seed, size_t n, size_t *len) {
    static const char *words[] = {"the", "model", " ", "  ", "\n", "\n\n", "café", "日本語", "😀", "2024", "3.14", "don't",
                                  "it's", "(x)", "--", "\t", "Hello", "WORLD", ",", ".", "!", "?", "<|endoftext|>", "a\r\nb",
                                  "\xff", " 's"};
    Rng r;
    rng_init(&r, seed);
    char *s = malloc(n + 8192);
    size_t k = 0;
    while (k < n) {
        if (rng_below(&r, 500) == 0) {   // a 3000-byte word: no safe cut inside
            for (int i = 0; i < 3000; i++) s[k++] = "xyz"[i % 3];
            continue;
        }
        const char *w = words[rng_below(&r, sizeof words / sizeof words[0])];
        size_t wl = strlen(w);
        memcpy(s + k, w, wl);
        k += wl;
        if (rng_below(&r, 3)) s[k++] = ' ';
    }
    *len = k;
    return s;
}

static void test_tokfile_text_roundtrip(void) {
    char p1[1024], p2[1024], p3[1024], p4[1024], out[1024], err[512];
    path(p1, "t1.txt");
    path(p2, "t2.txt");
    path(p3, "t3.txt");
    path(p4, "t4.txt");
    path(out, "corpus.tok");
    const char *t1 =
        "Hello world.\nThis is doc one.<|endoftext|>Second doc, with unicode: café, 日本語 and 😀.\r\n"
        "Line two.<|endoftext|>\n  \n<|endoftext|>Third doc ends the file";
    const char *t3 = "   \n";
    size_t l4;
    char *t4 = random_text(11, 200000, &l4);
    write_text(p1, t1);
    write_text(p2, "");
    write_text(p3, t3);
    test_write_file(p4, t4, l4);
    const char *texts[4] = {t1, "", t3, t4};
    size_t lens[4] = {strlen(t1), 0, strlen(t3), l4};
    TokIds want = {0};
    int64_t want_docs;
    expected_ids(texts, lens, 4, &want, &want_docs);
    const char *paths[4] = {p1, p2, p3, p4};
    int64_t chunks[4] = {64, 333, 4096, 0};
    for (int c = 0; c < 4; c++) {
        TokfileTextOptions o = {.chunk_bytes = chunks[c]};
        TokfileStats st;
        if (tokfile_write_text(out, gpt2, paths, 4, &o, &st, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err);
            break;
        }
        CHECK(st.n_files == 4 && st.n_docs == want_docs && st.n_tokens == (int64_t)want.n &&
              st.n_bytes == (int64_t)(lens[0] + lens[2] + l4));
        TokFile f;
        if (tokfile_open(&f, out, gpt2, 50257, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "%s", err);
            break;
        }
        CHECK(f.token_bytes == 2 && f.vocab_size == 50257 && f.n_docs == want_docs &&
              f.vocab_hash == tokfile_vocab_hash(gpt2));
        int32_t *got = malloc((size_t)f.n_tokens * sizeof(int32_t) + 4);
        tokfile_read(&f, 0, f.n_tokens, got);
        int ok = f.n_tokens == (int64_t)want.n && same_i32(got, want.ids, want.n);
        CHECK_MSG(ok, "chunk_bytes %lld: the file's ids differ from encoding each document whole",
                  (long long)chunks[c]);
        if (!ok) {
            size_t i = 0;
            while (i < want.n && (int64_t)i < f.n_tokens && got[i] == want.ids[i]) i++;
            fprintf(stderr, "      first difference at token %zu of %zu (file %lld)\n", i, want.n,
                    (long long)f.n_tokens);
        }
        CHECK(tokfile_get(&f, 3) == want.ids[3]);
        free(got);
        tokfile_close(&f);
        char tmp[1100];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, (long)getpid());
        CHECK(!exists(tmp));
    }
    // the first ids, by hand: "Hello world.\nThis is doc one." <eot>
    static const int32_t head[10] = {15496, 995, 13, 198, 1212, 318, 2205, 530, 13, 50256};
    CHECK(want.n > 10 && same_i32(want.ids, head, 10));
    tok_ids_free(&want);
    free(t4);
    // a missing input: error, nothing written
    const char *bad[2] = {p1, "/nonexistent/x.txt"};
    remove(out);
    CHECK_ERR(tokfile_write_text(out, gpt2, bad, 2, NULL, NULL, err, sizeof err), err,
              "cannot open /nonexistent/x.txt", NULL);
    CHECK(!exists(out));
}

// Writes ids to path with the low-level writer.
static int write_ids(const char *p, const int32_t *ids, size_t n, int64_t V, uint64_t vocab_hash) {
    TokfileWriter *w;
    char err[512];
    if (tokfile_writer_open(&w, p, V, vocab_hash, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    if (tokfile_writer_add(w, ids, n, err, sizeof err) ||
        tokfile_writer_end_doc(w, -1, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        tokfile_writer_abort(w);
        return -1;
    }
    if (tokfile_writer_commit(w, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        return -1;
    }
    return 0;
}

static void put64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i));
}
static void put32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}
// The documented header checksum over bytes 0..56.
static void reseal(unsigned char *h) {
    put64(h + 56, data_hash_mix(data_hash_bytes(DATA_HASH_INIT, h, 56)));
}

static void test_tokfile_errors(void) {
    char good[1024], p[1024], err[512];
    path(good, "small.tok");
    path(p, "broken.tok");
    enum { N = 3000 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 37) % 1000;
    if (write_ids(good, ids, N, 1000, 0)) return;
    TokFile f;
    CHECK_MSG(tokfile_open(&f, good, NULL, 0, err, sizeof err) == 0, "%s", err);
    int32_t back[N];
    tokfile_read(&f, 0, N, back);
    CHECK(f.n_tokens == N && f.n_docs == 1 && f.token_bytes == 2 && same_i32(back, ids, N));
    tokfile_close(&f);
    size_t n;
    unsigned char *raw = test_read_file(good, &n);
    CHECK(n == 64 + 2 * N);
    unsigned char *m = malloc(n + 8);
#define MUTATE(code, want)                                                                         \
    do {                                                                                           \
        memcpy(m, raw, n);                                                                         \
        size_t len_ = n;                                                                           \
        (void)len_;                                                                                \
        code;                                                                                      \
        test_write_file(p, m, len_);                                                               \
        CHECK_ERR(tokfile_open(&f, p, NULL, 0, err, sizeof err), err, want, "broken.tok");         \
    } while (0)
    MUTATE(len_ = n - 3,
           "truncated: the header says 3000 tokens (6000 bytes) but the file holds 5997 bytes");
    MUTATE(len_ = n - 2, "truncated");
    MUTATE(len_ = 40, "too short");
    MUTATE(len_ = 0, "too short");
    MUTATE(m[n] = 0; len_ = n + 1, "wrong size");
    MUTATE(m[0] = 'X', "bad magic");
    MUTATE(put32(m + 8, 2); reseal(m), "version 2");
    MUTATE(m[30] ^= 1, "header checksum mismatch");
    MUTATE(put64(m + 24, 3001); reseal(m), "header says 3001 tokens");
    MUTATE(put64(m + 24, UINT64_MAX / 2); reseal(m), "truncated");
    MUTATE(put64(m + 32, 3001); reseal(m), "3001 documents in 3000 tokens");
    MUTATE(put32(m + 12, 4); reseal(m), "do not match the vocabulary size");
    MUTATE(put32(m + 12, 3); reseal(m), "bad token size 3");
    MUTATE(put64(m + 16, 0); reseal(m), "bad vocabulary size 0");
    MUTATE(put64(m + 16, 500); reseal(m), "token 14 is id 518, outside the vocabulary (V = 500)");
    MUTATE(m[64 + 2 * 100] ^= 0x40, "token checksum mismatch");
#undef MUTATE
    free(m);
    free(raw);
    // vocabulary checks against a tokenizer and a model
    CHECK_ERR(tokfile_open(&f, good, gpt2, 0, err, sizeof err), err,
              "vocabulary of 1000 tokens, the tokenizer has 50257", "small.tok");
    CHECK_ERR(tokfile_open(&f, good, NULL, 999, err, sizeof err), err,
              "does not fit the model's 999", NULL);
    CHECK_MSG(tokfile_open(&f, good, NULL, 1000, err, sizeof err) == 0, "%s", err);
    tokfile_close(&f);
    int32_t g[4] = {1, 2, 3, 50256};
    if (write_ids(p, g, 4, 50257, 12345) == 0)
        CHECK_ERR(tokfile_open(&f, p, gpt2, 0, err, sizeof err), err, "different vocabulary", NULL);
    if (write_ids(p, g, 4, 50257, 0) == 0) {   // unknown hash: checked by size only
        CHECK_MSG(tokfile_open(&f, p, gpt2, 50257, err, sizeof err) == 0, "%s", err);
        tokfile_close(&f);
    }
    CHECK_ERR(tokfile_open(&f, "/nonexistent.tok", NULL, 0, err, sizeof err), err,
              "cannot open /nonexistent.tok", NULL);
    CHECK_ERR(tokfile_open(&f, root, NULL, 0, err, sizeof err), err, "is not a regular file", NULL);
    // 4-byte ids when V > 65536
    int32_t big[5] = {0, 65536, 69999, 7, 65535};
    if (write_ids(p, big, 5, 70000, 0) == 0) {
        CHECK_MSG(tokfile_open(&f, p, NULL, 0, err, sizeof err) == 0, "%s", err);
        int32_t b2[5];
        tokfile_read(&f, 0, 5, b2);
        CHECK(f.token_bytes == 4 && same_i32(b2, big, 5) && tokfile_get(&f, 2) == 69999);
        tokfile_close(&f);
    }
    // writer: ids outside the vocabulary; an aborted write leaves the old file; bad paths
    TokfileWriter *w;
    write_text(p, "old");
    CHECK(tokfile_writer_open(&w, p, 1000, 0, err, sizeof err) == 0);
    int32_t bad_id = 1000;
    CHECK_ERR(tokfile_writer_add(w, &bad_id, 1, err, sizeof err), err,
              "id 1000 is outside the vocabulary", NULL);
    CHECK(tokfile_writer_tokens(w) == 0);
    tokfile_writer_abort(w);
    size_t ln;
    unsigned char *old = test_read_file(p, &ln);
    CHECK(old && ln == 3 && !memcmp(old, "old", 3));
    free(old);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", p, (long)getpid());
    CHECK(!exists(tmp));
    CHECK_ERR(tokfile_writer_open(&w, "/nonexistent/dir/x.tok", 1000, 0, err, sizeof err), err,
              "cannot create /nonexistent/dir/x.tok", NULL);
}

static void test_tokfile_windows(void) {
    char p[1024], err[512];
    path(p, "win.tok");
    enum { N = 1000, T = 10, B = 4 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (i * 7) % 1000;
    if (write_ids(p, ids, N, 1000, 0)) return;
    TokFile f;
    if (tokfile_open(&f, p, NULL, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        return;
    }
    DataBatch b;
    data_batch_init(&b, B, T);
    // sequential: windows [10k, 10k+11), 99 per epoch, batches run on into the next epoch
    TokfileIter it;
    TokfileIterOptions o = {.batch_size = B, .seq_len = T, .order = TOKFILE_SEQUENTIAL};
    CHECK_MSG(tokfile_iter_init(&it, &f, &o, err, sizeof err) == 0, "%s", err);
    CHECK(tokfile_iter_windows(&it) == 99);
    int ok = 1;
    int64_t w = 0;
    for (int k = 0; k < 30; k++) {
        tokfile_iter_next(&it, &b, 0.5f);
        ok &= b.B == B && b.T == T && b.n_targets == B * T;
        for (int r = 0; r < B; r++, w++) {
            int64_t s = (w % 99) * T;
            ok &= b.source[r] == s && b.lengths[r] == T;
            for (int t = 0; t < T; t++)
                ok &= b.tokens[r * T + t] == ids[s + t] && b.targets[r * T + t] == ids[s + t + 1] &&
                      b.weights[r * T + t] == 0.5f;
        }
    }
    CHECK_MSG(ok, "sequential windows differ from the file");
    DataCursor c;
    tokfile_iter_cursor(&it, &c);
    CHECK(c.epoch == 1 && c.index == 120 - 99);
    // shuffled: every window of an epoch once, all at the epoch's phase
    o.order = TOKFILE_SHUFFLED;
    o.seed = 2024;
    o.batch_size = 1;
    CHECK(tokfile_iter_init(&it, &f, &o, err, sizeof err) == 0);
    int64_t phases[3];
    for (int e = 0; e < 3; e++) {
        int64_t K = tokfile_iter_windows(&it), phase = -1;
        char *seen = calloc((size_t)K, 1);
        int once = 1;
        for (int64_t k = 0; k < K; k++) {
            DataBatch one;
            data_batch_init(&one, 1, T);
            tokfile_iter_next(&it, &one, 1.0f);
            int64_t s = one.source[0];
            if (phase < 0) phase = s % T;
            once &= s % T == phase && s + T < N && !seen[(s - phase) / T];
            if (s % T == phase && (s - phase) / T < K) seen[(s - phase) / T] = 1;
            for (int t = 0; t < T; t++)
                once &= one.tokens[t] == ids[s + t] && one.targets[t] == ids[s + t + 1];
            data_batch_free(&one);
        }
        CHECK_MSG(once, "shuffled epoch %d does not serve each window once", e);
        CHECK(K == (N - 1 - phase) / T);
        phases[e] = phase;
        free(seen);
    }
    CHECK_MSG(phases[0] != phases[1] || phases[1] != phases[2],
              "the phase never changes between epochs");
    // resume: a fresh iterator with another seed continues exactly
    o.batch_size = B;
    TokfileIter a, a2;
    CHECK(tokfile_iter_init(&a, &f, &o, err, sizeof err) == 0);
    for (int k = 0; k < 37; k++) tokfile_iter_next(&a, &b, 1.0f);   // 148 windows: into epoch 1
    tokfile_iter_cursor(&a, &c);
    CHECK(c.epoch == 1);
    TokfileIterOptions o2 = o;
    o2.seed = 1;
    CHECK(tokfile_iter_init(&a2, &f, &o2, err, sizeof err) == 0);
    CHECK_MSG(tokfile_iter_seek(&a2, &c, err, sizeof err) == 0, "%s", err);
    DataBatch b2;
    data_batch_init(&b2, B, T);
    int same = 1;
    for (int k = 0; k < 60; k++) {
        tokfile_iter_next(&a, &b, 1.0f);
        tokfile_iter_next(&a2, &b2, 1.0f);
        same &= batches_equal(&b, &b2);
    }
    CHECK_MSG(same, "windows differ after restoring the cursor");
    o2.seq_len = T - 1;
    CHECK(tokfile_iter_init(&a2, &f, &o2, err, sizeof err) == 0);
    CHECK_ERR(tokfile_iter_seek(&a2, &c, err, sizeof err), err, "does not match", "win.tok");
    c.index = 1000;
    CHECK(tokfile_iter_init(&a2, &f, &o, err, sizeof err) == 0);
    CHECK_ERR(tokfile_iter_seek(&a2, &c, err, sizeof err), err, "out of range", NULL);
    // too short for one window
    o.seq_len = N;
    CHECK_ERR(tokfile_iter_init(&it, &f, &o, err, sizeof err), err, "fewer than one window of 1001",
              NULL);
    o.seq_len = N - 1;   // exactly one window
    CHECK(tokfile_iter_init(&it, &f, &o, err, sizeof err) == 0 && tokfile_iter_windows(&it) == 1);
    data_batch_free(&b);
    data_batch_free(&b2);
    tokfile_close(&f);
}

// The batches satisfy the model's contract: model_forward accepts them, the loss is sum w * CE
// over the targets only, and the losses of a step's micro-batches add up to the mean CE over all
// of the step's target tokens (computed here from the per-token log-probabilities).
static void test_model_contract(void) {
    char err[512];
    Dataset *ds;
    DatasetIter *it;
    DatasetIterOptions io = {.batch_size = 4, .bucket_batches = 2, .shuffle = 1, .seed = 8};
    if (varied_iter(19, &io, &ds, &it)) return;
    int maxT = dataset_iter_max_len(it);
    ModelConfig cfg = {.max_seq_len = maxT, .vocab_size = 50257, .n_layer = 1, .n_head = 2,
                       .n_embd = 8, .ln_eps = 1e-5f, .lm_head = 1, .score_head = 0};
    Model m;
    if (model_init(&m, &cfg, 4, maxT, 0, 0, err, sizeof err)) {
        test_fail_at(__FILE__, __LINE__, "%s", err);
        dataset_iter_free(it);
        dataset_free(ds);
        return;
    }
    model_init_weights(&m, 1);
    enum { A = 3 };
    DataBatch b;
    data_batch_init(&b, 4, maxT);
    float *logp = malloc((size_t)4 * maxT * sizeof(float));
    int64_t N = dataset_iter_peek_targets(it, A);
    double step_loss = 0, ce_sum = 0;
    for (int i = 0; i < A; i++) {
        dataset_iter_next(it, &b, (float)(1.0 / (double)N));
        ModelBatch mb = data_batch_model(&b);
        if (model_forward(&m, &mb, 0, err, sizeof err)) {
            test_fail_at(__FILE__, __LINE__, "model_forward: %s", err);
            break;
        }
        step_loss += m.loss;
        model_get_logp(&m, logp);
        double mine = 0;
        for (int k = 0; k < b.B * b.T; k++)
            if (b.targets[k] >= 0) { ce_sum -= logp[k]; mine -= (double)b.weights[k] * logp[k]; }
        CHECK_MSG(fabs(mine - m.loss) <= 1e-5 * fabs(mine),
                  "micro-batch %d: loss %.8g, sum w*CE %.8g", i, m.loss, mine);
    }
    CHECK_MSG(fabs(step_loss - ce_sum / (double)N) <= 1e-5 * ce_sum / (double)N,
              "step loss %.8g vs mean CE %.8g", step_loss, ce_sum / (double)N);
    CHECK(step_loss > 5 && step_loss < 20);   // about log(50257) = 10.8 for a random model
    // a token-file batch too
    char p[1024];
    path(p, "contract.tok");
    int32_t ids[200];
    for (int i = 0; i < 200; i++) ids[i] = (i * 131) % 50257;
    TokFile f;
    if (write_ids(p, ids, 200, 50257, 0) == 0 &&
        tokfile_open(&f, p, gpt2, 50257, err, sizeof err) == 0) {
        TokfileIter ti;
        TokfileIterOptions to = {.batch_size = 4, .seq_len = maxT < 16 ? maxT : 16,
                                 .order = TOKFILE_SHUFFLED, .seed = 3};
        CHECK(tokfile_iter_init(&ti, &f, &to, err, sizeof err) == 0);
        tokfile_iter_next(&ti, &b, 1.0f / (float)(4 * to.seq_len));
        ModelBatch mb = data_batch_model(&b);
        CHECK_MSG(model_forward(&m, &mb, 0, err, sizeof err) == 0, "model_forward: %s", err);
        CHECK(m.loss > 5 && m.loss < 20);
        tokfile_close(&f);
    } else
        test_fail_at(__FILE__, __LINE__, "token file: %s", err);
    free(logp);
    data_batch_free(&b);
    model_free(&m);
    dataset_iter_free(it);
    dataset_free(ds);
}

int main(void) {
    if (test_scratch_dir(root, sizeof root, "rlhf_data")) return 1;
    char dir[1024], err[256];
    snprintf(dir, sizeof dir, "%s/../data/gpt2", test_data_dir());
    if (tok_load(&gpt2, dir, err, sizeof err)) {
        printf("FAIL cannot load the GPT-2 tokenizer: %s\n0 passed, 1 failed\n", err);
        return 1;
    }
    test_case(
        "data: prompt/response format: hand-written ids and mask, train_on_all, prompt encoding",
        test_pair_format);
    test_case("data: chat format: hand-written ids and mask, one turn == pair, bad conversations",
              test_chat_format);
    test_case("data: exact prompt/response boundary; special-token text; template errors",
              test_boundary);
    test_case("data: truncation rules: error (file:line, lengths), truncate_prompt_left, drop",
              test_truncation);
    test_case("data: malformed JSONL lines name file:line, nothing from the file is kept",
              test_malformed_lines);
    test_case("data: BOM, CRLF, blank lines, a 4 MB line, non-UTF-8 files", test_file_quirks);
    test_case("data: the valid split follows the hash rule, not file order; explicit split files",
              test_split);
    test_case("data: batches: every example once per epoch, exact rows and padding, bucketing",
              test_batches);
    test_case("data: resume: a restored cursor serves the same batches; mismatches refused",
              test_resume);
    test_case("data: loss weights: 1/N over the target tokens of all micro-batches of a step",
              test_weights);
    test_case("data: token files from text: exactly whole-document encoding, any chunk size",
              test_tokfile_text_roundtrip);
    test_case("data: token files: corrupt, truncated, bad headers, ids >= V, vocabulary mismatches",
              test_tokfile_errors);
    test_case("data: token windows: sequential, shuffled epochs, exact resume",
              test_tokfile_windows);
    test_case(
        "data: batches meet model_forward's contract; micro-batch losses add up to the mean CE",
        test_model_contract);
    tok_free(gpt2);
    test_rm_rf(root);
    return test_summary();
}
