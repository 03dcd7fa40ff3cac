// Chat templates applied to conversations (common/chat.h) with a tiny byte-level tokenizer.json
// whose tokenizer_config.json carries Qwen2.5's ChatML template (tests/fixtures/chat_tiny):
// assistant spans found by rendering equal hand-computed ones, SFT masks follow them, templates
// that break the prefix property are a clear error, prompt message lists render with the
// generation prompt, and the end-of-turn token <|im_end|> is a stop token.
#include "chat.h"
#include "dataset.h"
#include "generate.h"
#include "rng.h"
#include "testlib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char root[1024];
static char fixdir[1024];
static Tokenizer *tok;

#define QWEN_SYS "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful " \
                 "assistant.<|im_end|>\n"

static ChatTemplate *load(const char *override) {
    char err[512];
    ChatTemplate *ct = NULL;
    CHECK_MSG(chat_template_load(&ct, fixdir, override, err, sizeof err) == 0, "%s", err);
    CHECK(ct != NULL);
    return ct;
}

static void test_segments(void) {
    ChatTemplate *ct = load(NULL);
    if (!ct) return;
    DatasetMessage m[5] = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"},
                           {"assistant", "A2"}};
    char *text, err[512];
    ChatSegment *sg;
    int ns;
    CHECK_MSG(chat_segments(ct, m, 5, &text, &sg, &ns, err, sizeof err) == 0, "%s", err);
    const char *want[4] = {"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n"
                           "<|im_start|>assistant\n",
                           "A1<|im_end|>\n",
                           "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n",
                           "A2<|im_end|>\n"};
    CHECK_MSG(ns == 4, "%d segments", ns);
    for (int i = 0; i < ns && i < 4; i++) {
        size_t n = sg[i].end - sg[i].start;
        CHECK_MSG(n == strlen(want[i]) && !memcmp(text + sg[i].start, want[i], n),
                  "segment %d: %.*s", i, (int)n, text + sg[i].start);
        CHECK(sg[i].assistant == (i % 2 == 1));
    }
    free(text);
    free(sg);
    // a template that rewrites earlier turns (here: the message count in front) breaks the
    // prefix property: a clear error naming the message
    chat_template_free(ct);
    ct = load("{{ messages|length }}{% for m in messages %}{{ m.content }}{% endfor %}");
    CHECK_ERR(chat_segments(ct, m, 5, &text, &sg, &ns, err, sizeof err), err, "prefix property",
              "messages[2]");
    chat_template_free(ct);
    // a template's own error
    ct = load("{{ raise_exception('no system messages') }}");
    CHECK_ERR(chat_segments(ct, m, 5, &text, &sg, &ns, err, sizeof err), err,
              "no system messages", "data.chat_template");
    chat_template_free(ct);
}

// The tokens of a text as one piece (special tokens recognised).
static void encode(const char *s, TokIds *ids) {
    char err[256];
    CHECK(tok_encode(tok, s, strlen(s), TOK_ALLOW_SPECIAL, ids, err, sizeof err) == 0);
}

static void test_sft_masks(void) {
    ChatTemplate *ct = load(NULL);
    char err[512], path[1200];
    DatasetOptions o = {.max_tokens = 200, .chat = ct};
    Dataset *ds = NULL;
    CHECK_MSG(dataset_create(&ds, tok, &o, err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof path, "%s/chat.jsonl", root);
    const char *jl = "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": "
                     "\"assistant\", \"content\": \"yo\"}, {\"role\": \"user\", \"content\": "
                     "\"ok\"}, {\"role\": \"assistant\", \"content\": \"k\"}]}\n"
                     "{\"prompt\": \"p\", \"response\": \"r\"}\n";
    test_write_file(path, jl, strlen(jl));
    CHECK_MSG(dataset_load_jsonl(ds, path, DATASET_SPLIT_TRAIN, err, sizeof err) == 0, "%s", err);
    // hand-computed: prompt pieces mask 0, "yo<|im_end|>\n" and "k<|im_end|>\n" mask 1
    const char *pieces[] = {QWEN_SYS "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                            "yo<|im_end|>\n",
                            "<|im_start|>user\nok<|im_end|>\n<|im_start|>assistant\n",
                            "k<|im_end|>\n"};
    TokIds ids = {0};
    uint8_t mask[400];
    for (int i = 0; i < 4; i++) {
        size_t before = ids.n;
        encode(pieces[i], &ids);
        memset(mask + before, i % 2, ids.n - before);
    }
    DatasetExample ex;
    CHECK(dataset_example(ds, 0, &ex) == 0);
    CHECK_MSG((size_t)ex.len == ids.n, "%d tokens, want %zu", ex.len, ids.n);
    if ((size_t)ex.len == ids.n) {
        CHECK(!memcmp(ex.tokens, ids.ids, ids.n * sizeof(int32_t)));
        CHECK(!memcmp(ex.mask, mask, ids.n));
    }
    CHECK(ex.n_targets == (int32_t)(strlen("yo") + strlen("k") + 4));   // + <|im_end|> \n twice
    // a pair is the one-turn chat [user P, assistant R]
    CHECK(dataset_example(ds, 1, &ex) == 0);
    ids.n = 0;
    encode(QWEN_SYS "<|im_start|>user\np<|im_end|>\n<|im_start|>assistant\nr<|im_end|>\n", &ids);
    CHECK((size_t)ex.len == ids.n && !memcmp(ex.tokens, ids.ids, ids.n * sizeof(int32_t)));
    // the prompt for generation: the same prefix with the generation prompt
    TokIds p = {0};
    DatasetMessage pm[1] = {{"user", "p"}};
    CHECK(dataset_encode_chat_prompt(ds, pm, 1, &p, err, sizeof err) == 0);
    ids.n = 0;
    encode(QWEN_SYS "<|im_start|>user\np<|im_end|>\n<|im_start|>assistant\n", &ids);
    CHECK(p.n == ids.n && !memcmp(p.ids, ids.ids, ids.n * sizeof(int32_t)));
    // bad lines name file:line
    const char *bad[][2] = {
        {"{\"messages\": [{\"role\": \"robot\", \"content\": \"x\"}]}\n", "role must be"},
        {"{\"messages\": []}\n", "empty"},
    };
    for (int i = 0; i < 2; i++) {
        test_write_file(path, bad[i][0], strlen(bad[i][0]));
        CHECK_ERR(dataset_load_jsonl(ds, path, DATASET_SPLIT_TRAIN, err, sizeof err), err,
                  bad[i][1], "chat.jsonl:1");
    }
    dataset_free(ds);
    chat_template_free(ct);
    // a template error names file:line too
    ct = load("{{ raise_exception('bad turn') }}");
    o.chat = ct;
    CHECK(dataset_create(&ds, tok, &o, err, sizeof err) == 0);
    test_write_file(path, jl, strlen(jl));
    CHECK_ERR(dataset_load_jsonl(ds, path, DATASET_SPLIT_TRAIN, err, sizeof err), err, "bad turn",
              "chat.jsonl:1");
    dataset_free(ds);
    chat_template_free(ct);
    tok_ids_free(&ids);
    tok_ids_free(&p);
}

// The tokens of a prompt-file line through dataset_prompt_json equal the tokens of want (special
// tokens recognised), and its text is want.
static void check_prompt(const Dataset *ds, const char *line, const char *want) {
    char err[512], *text = NULL;
    TokIds got = {0}, ids = {0};
    cJSON *j = cJSON_Parse(line);
    CHECK_MSG(dataset_prompt_json(ds, j, &text, &got, "p.jsonl:1", err, sizeof err) == 0, "%s",
              err);
    encode(want, &ids);
    CHECK_MSG(text && !strcmp(text, want), "%s -> %s", line, text ? text : "(null)");
    CHECK(got.n == ids.n && !memcmp(got.ids, ids.ids, ids.n * sizeof(int32_t)));
    free(text);
    tok_ids_free(&got);
    tok_ids_free(&ids);
    cJSON_Delete(j);
}

static void test_prompts(void) {
    ChatTemplate *ct = load(NULL);
    char err[512], *text;
    DatasetOptions o = {.max_tokens = 200, .chat = ct};
    Dataset *ds = NULL, *plain = NULL;
    CHECK_MSG(dataset_create(&ds, tok, &o, err, sizeof err) == 0, "%s", err);
    const char *conv = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
                       "{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
                       "\"content\": \"b\"}, {\"role\": \"user\", \"content\": \"c\"}]}";
    check_prompt(ds, "{\"prompt\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
                 QWEN_SYS "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n");
    check_prompt(ds, conv,
                 "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\na<|im_end|>\n"
                 "<|im_start|>assistant\nb<|im_end|>\n<|im_start|>user\nc<|im_end|>\n"
                 "<|im_start|>assistant\n");
    // a string prompt is the user's message: its tokens are the rendered conversation's, its
    // text the string
    TokIds a = {0}, b = {0};
    cJSON *j = cJSON_Parse("{\"prompt\": \"hi\"}");
    CHECK(dataset_prompt_json(ds, j, &text, &a, "p.jsonl:1", err, sizeof err) == 0);
    CHECK(text && !strcmp(text, "hi"));
    free(text);
    cJSON_Delete(j);
    encode(QWEN_SYS "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", &b);
    CHECK(a.n == b.n && !memcmp(a.ids, b.ids, a.n * sizeof(int32_t)));
    tok_ids_free(&a);
    tok_ids_free(&b);
    // without a template: the built-in format
    o.chat = NULL;
    CHECK_MSG(dataset_create(&plain, tok, &o, err, sizeof err) == 0, "%s", err);
    check_prompt(plain, conv, "System: Be brief.\n\nHuman: a\n\nAssistant: b<|endoftext|>Human: c"
                 "\n\nAssistant:");
    const char *bad[][2] = {
        {"{\"prompt\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"assistant\", "
         "\"content\": \"b\"}]}", "must end with a user message"},
        {"{\"messages\": []}", "is empty"},
        {"{\"prompt\": [{\"role\": \"boss\", \"content\": \"a\"}]}", "role must be"},
        {"{\"prompt\": [{\"role\": \"user\"}]}", "\"role\" and \"content\""},
        {"{\"text\": \"x\"}", "no \"prompt\""},
        {"{\"prompt\": 3}", "list of messages"},
    };
    for (int i = 0; i < 6; i++) {
        j = cJSON_Parse(bad[i][0]);
        CHECK_ERR(dataset_prompt_json(ds, j, &text, &a, "p.jsonl:7", err, sizeof err), err,
                  bad[i][1], "p.jsonl:7");
        cJSON_Delete(j);
    }
    dataset_free(ds);
    dataset_free(plain);
    chat_template_free(ct);
}

static void test_stops(void) {
    ChatTemplate *ct = load(NULL);
    char err[512], path[1200];
    int32_t ids[8];
    int n;
    // the tokenizer's EOS (<|endoftext|> 256) and the template's end of turn (<|im_end|> 258)
    CHECK_MSG(chat_stop_ids(ct, tok, NULL, ids, 8, &n, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(n == 2 && ids[0] == 256 && ids[1] == 258, "n %d", n);
    // plus eos_token_id lists of config.json / generation_config.json, without repeats
    snprintf(path, sizeof path, "%s/generation_config.json", root);
    test_write_file(path, "{\"eos_token_id\": [258, 7, 256]}", 31);
    snprintf(path, sizeof path, "%s/config.json", root);
    test_write_file(path, "{\"eos_token_id\": 9}", 19);
    CHECK(chat_stop_ids(ct, tok, root, ids, 8, &n, err, sizeof err) == 0);
    CHECK_MSG(n == 4 && ids[0] == 256 && ids[1] == 9 && ids[2] == 258 && ids[3] == 7, "n %d", n);
    // without a template: the EOS only
    CHECK(chat_stop_ids(NULL, tok, NULL, ids, 8, &n, err, sizeof err) == 0 && n == 1);
    // no tokenizer_config.json and no override: no template, no error
    ChatTemplate *none = ct;
    CHECK(chat_template_load(&none, root, NULL, err, sizeof err) == 0 && none == NULL);
    CHECK_ERR(chat_template_load(&none, root, "/nonexistent/t.jinja", err, sizeof err), err,
              "data.chat_template", "t.jinja");
    CHECK_ERR(chat_template_load(&none, root, "{% if %}", err, sizeof err), err,
              "data.chat_template", "line 1");
    chat_template_free(ct);
}

// Generation stops at the template's end of turn: a tiny random GPT-2 of 259 tokens whose
// <|im_end|> embedding is made twice the embedding of its first greedy token (tied head: twice
// the logit), so that <|im_end|> is chosen first; with chat_stop_ids the answer is that one
// token, without stop ids generation runs on to max_new_tokens.
static void test_stop_at_im_end(void) {
    ModelConfig c = {.max_seq_len = 32, .vocab_size = 259, .n_layer = 1, .n_head = 2,
                     .n_embd = 16, .ln_eps = 1e-5f, .lm_head = 1};
    Model m;
    char err[512];
    if (model_init(&m, &c, 1, 32, 0, 0, err, sizeof err)) {
        CHECK_MSG(0, "%s", err);
        return;
    }
    model_init_weights(&m, 3);
    KVCache kv;
    Sampler sm;
    CHECK(kv_init(&kv, &m, 1, 32, 32, err, sizeof err) == 0);
    sampler_init(&sm, 259);
    GenConfig g = {.max_new_tokens = 8, .eot_id = -1, .sampler = {.temperature = 0.0f,
                                                                  .top_p = 1.0f}};
    int32_t prompt[3] = {'h', 'i', '?'}, len = 3, out[8], ol = 0;
    Rng r;
    rng_init(&r, 1);
    CHECK(gen_generate(&m, &kv, &sm, &g, &r, prompt, &len, 1, 3, out, &ol, NULL, NULL, err,
                       sizeof err) == 0);
    int32_t first = out[0];
    CHECK(first != 258);
    float *e = m.params.wte;
    for (int k = 0; k < c.n_embd; k++) e[258 * c.n_embd + k] = 2.0f * e[first * c.n_embd + k];
    ChatTemplate *ct = load(NULL);
    CHECK(chat_stop_ids(ct, tok, NULL, g.stop_ids, GEN_MAX_STOP, &g.n_stop, err, sizeof err) == 0);
    kv_reset(&kv);
    CHECK(gen_generate(&m, &kv, &sm, &g, &r, prompt, &len, 1, 3, out, &ol, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK_MSG(ol == 1 && out[0] == 258, "%d tokens, the first %d", ol, out[0]);
    g.n_stop = 0;
    kv_reset(&kv);
    CHECK(gen_generate(&m, &kv, &sm, &g, &r, prompt, &len, 1, 3, out, &ol, NULL, NULL, err,
                       sizeof err) == 0);
    CHECK(ol == 8 && out[0] == 258);
    chat_template_free(ct);
    sampler_free(&sm);
    kv_free(&kv);
    model_free(&m);
}

// The tokens of example i equal the tokens of prompt (special tokens recognised, mask 0) then
// resp (mask 1).
static void check_example(const Dataset *ds, int64_t i, const char *prompt, const char *resp) {
    TokIds a = {0}, b = {0};
    encode(prompt, &a);
    encode(resp, &b);
    DatasetExample ex;
    CHECK(dataset_example(ds, i, &ex) == 0);
    CHECK_MSG((size_t)ex.len == a.n + b.n, "%d tokens, want %zu + %zu", ex.len, a.n, b.n);
    for (size_t t = 0; t < a.n + b.n && (int32_t)t < ex.len; t++) {
        int32_t want = t < a.n ? a.ids[t] : b.ids[t - a.n];
        CHECK_MSG(ex.tokens[t] == want && ex.mask[t] == (t >= a.n), "token %zu", t);
    }
    tok_ids_free(&a);
    tok_ids_free(&b);
}

// A workspace prompt rendered at import (StorePrompt.rendered) is read as it is: its special
// tokens are tokens, and no prompt format wraps it again (with or without a template); the same
// text typed by a user stays plain text.
static void test_rendered_prompts(void) {
    ChatTemplate *ct = load(NULL);
    char err[512];
    const char *r = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    DatasetOptions o = {.max_tokens = 200, .chat = ct};
    Dataset *ds = NULL, *plain = NULL;
    CHECK_MSG(dataset_create(&ds, tok, &o, err, sizeof err) == 0, "%s", err);
    o.chat = NULL;
    CHECK_MSG(dataset_create(&plain, tok, &o, err, sizeof err) == 0, "%s", err);
    TokIds got = {0}, want = {0}, typed = {0};
    encode(r, &want);
    CHECK(want.n < strlen(r));   // <|im_start|> is one token here
    CHECK_MSG(dataset_encode_rendered_prompt(ds, r, &got, err, sizeof err) == 0, "%s", err);
    CHECK(got.n == want.n && !memcmp(got.ids, want.ids, want.n * sizeof(int32_t)));
    got.n = 0;
    CHECK(dataset_encode_rendered_prompt(plain, r, &got, err, sizeof err) == 0);
    CHECK(got.n == want.n && !memcmp(got.ids, want.ids, want.n * sizeof(int32_t)));
    CHECK(dataset_encode_prompt(plain, r, &typed, err, sizeof err) == 0);
    CHECK(typed.n > strlen(r));   // typed text: "Human: " around it, every byte a token
    CHECK_ERR(dataset_encode_rendered_prompt(ds, "bad \xff", &got, err, sizeof err), err,
              "invalid UTF-8", "byte 5");
    // pairs: the response's turn as the template writes it, or the response and the end token
    CHECK_MSG(dataset_add_rendered_pair(ds, r, "yo", "db", 1, DATASET_SPLIT_TRAIN, err,
                                        sizeof err) == 0, "%s", err);
    check_example(ds, 0, r, "yo<|im_end|>\n");
    CHECK_MSG(dataset_add_rendered_pair(plain, r, "yo", "db", 1, DATASET_SPLIT_TRAIN, err,
                                        sizeof err) == 0, "%s", err);
    check_example(plain, 0, r, "yo<|endoftext|>");
    tok_ids_free(&got);
    tok_ids_free(&want);
    tok_ids_free(&typed);
    dataset_free(ds);
    dataset_free(plain);
    chat_template_free(ct);
}

int main(void) {
    if (test_scratch_dir(root, sizeof root, "rlhf_chat")) return 1;
    snprintf(fixdir, sizeof fixdir, "%s/fixtures/chat_tiny", test_data_dir());
    char err[512];
    if (tok_load(&tok, fixdir, err, sizeof err)) {
        printf("FAIL cannot load %s: %s\n0 passed, 1 failed\n", fixdir, err);
        return 1;
    }
    test_case("chat: assistant spans by rendering; prefix-property and template errors",
              test_segments);
    test_case("chat: SFT masks on assistant turns only; pairs; prompts; bad lines file:line",
              test_sft_masks);
    test_case("chat: prompt message lists: the template's generation prompt or the built-in format",
              test_prompts);
    test_case("chat: prompts rendered at import are read as they are (no second wrapping)",
              test_rendered_prompts);
    test_case("chat: stop ids: EOS, config eos_token_id lists, the template's end of turn",
              test_stops);
    test_case("chat: generation stops at the template's end of turn (<|im_end|>)",
              test_stop_at_im_end);
    tok_free(tok);
    test_rm_rf(root);
    return test_summary();
}
