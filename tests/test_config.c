// Config tests: every type with its defaults, nested and dotted keys from a YAML file, --set
// overrides, every error path with its exact file:line:column message, all-or-nothing loads, the
// canonical dump (exact text, reload gives the same values and hash, odd strings and doubles
// round-trip), the hash (NO_HASH keys and schema order do not change it), help, schema checks,
// and hostile inputs (garbage, deep nesting, huge scalars, invalid UTF-8) that must be errors,
// never crashes.
#define _GNU_SOURCE
#include "config.h"
#include "rng.h"
#include "testlib.h"
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const ConfigEntry SCHEMA[] = {
    CONFIG_ENTRY("model.init", CONFIG_STRING, NULL, "checkpoint to start from"),
    CONFIG_ENTRY("model.n_ctx", CONFIG_INT, "128", "context length", .min = "1", .max = "4096"),
    CONFIG_ENTRY("data.path", CONFIG_STRING, "data.jsonl", "training data"),
    CONFIG_ENTRY("data.files", CONFIG_LIST, "[x.jsonl]", "more data files"),
    CONFIG_ENTRY("data.template", CONFIG_STRING, "{prompt}", "prompt template"),
    CONFIG_ENTRY("train.lr", CONFIG_DOUBLE, "1e-4", "peak learning rate", .min = "0", .max = "1"),
    CONFIG_ENTRY("train.steps", CONFIG_INT, "100", "optimizer steps", .min = "1"),
    CONFIG_ENTRY("train.shuffle", CONFIG_BOOL, "false", "shuffle the examples"),
    CONFIG_ENTRY("train.schedule", CONFIG_ENUM, "cosine", "learning-rate schedule",
                 .choices = "cosine|linear|constant"),
    CONFIG_ENTRY("train.warmup", CONFIG_DOUBLE, "0", "warmup fraction", .min = "0", .max = "1"),
    CONFIG_ENTRY("train.clip", CONFIG_DOUBLE, "1", "gradient clipping norm"),
    CONFIG_ENTRY("log.every", CONFIG_INT, "10", "log every N steps", .min = "1",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("log.tags", CONFIG_LIST, NULL, "labels for the run", .flags = CONFIG_NO_HASH),
    {0}};

static char tmpdir[256];

static Config *fresh(void) {
    Config *c;
    char err[512];
    if (config_new(&c, SCHEMA, err, sizeof err)) {
        fprintf(stderr, "config_new: %s\n", err);
        exit(1);
    }
    return c;
}


static void fixture(char *out, size_t n, const char *name) {
    snprintf(out, n, "%s/fixtures/%s", test_data_dir(), name);
}

static int one_line(const char *s) { return strchr(s, '\n') == NULL && strchr(s, '\r') == NULL; }

// Loads yaml (named "t.yaml"): must fail with exactly `want`, and change nothing.
#define EXPECT_LOAD_ERR(yaml, want) expect_load_err(__LINE__, (yaml), sizeof(yaml) - 1, (want))
static void expect_load_err(int line, const char *yaml, size_t n, const char *want) {
    Config *c = fresh();
    char err[1024] = "", before[CONFIG_HASH_HEX], after[CONFIG_HASH_HEX];
    char *dump0 = config_dump_string(c);
    config_hash(c, before);
    int rc = config_load_string(c, "t.yaml", yaml, n, err, sizeof err);
    config_hash(c, after);
    char *dump1 = config_dump_string(c);
    if (rc != -1) test_fail_at(__FILE__, line, "load succeeded, wanted error: %s", want);
    else if (strcmp(err, want))
        test_fail_at(__FILE__, line, "error\n      got:  %s\n      want: %s", err, want);
    if (strcmp(before, after) || strcmp(dump0, dump1))
        test_fail_at(__FILE__, line, "a failed load changed values");
    if (!one_line(err)) test_fail_at(__FILE__, line, "message is not one line: %s", err);
    free(dump0); free(dump1);
    config_free(c);
}

// Same for one --set override.
static void expect_set_err(int line, const char *assignment, const char *want) {
    Config *c = fresh();
    char err[1024] = "";
    char *dump0 = config_dump_string(c);
    int rc = config_set(c, assignment, err, sizeof err);
    char *dump1 = config_dump_string(c);
    if (rc != -1)
        test_fail_at(__FILE__, line, "--set %s succeeded, wanted error: %s", assignment, want);
    else if (strcmp(err, want))
        test_fail_at(__FILE__, line, "error\n      got:  %s\n      want: %s", err, want);
    if (strcmp(dump0, dump1)) test_fail_at(__FILE__, line, "a failed --set changed values");
    free(dump0); free(dump1);
    config_free(c);
}
#define EXPECT_SET_ERR(a, want) expect_set_err(__LINE__, (a), (want))

// ---------------------------------------------------------------------------------------------

static void test_defaults(void) {
    Config *c = fresh();
    CHECK(!strcmp(config_get_string(c, "model.init"), ""));
    CHECK(config_get_int(c, "model.n_ctx") == 128);
    CHECK(!strcmp(config_get_string(c, "data.path"), "data.jsonl"));
    const char *const *items;
    CHECK(config_get_list(c, "data.files", &items) == 1 && !strcmp(items[0], "x.jsonl"));
    CHECK(config_get_list(c, "log.tags", NULL) == 0);
    CHECK(config_get_double(c, "train.lr") == 1e-4);
    CHECK(config_get_bool(c, "train.shuffle") == 0);
    CHECK(!strcmp(config_get_string(c, "train.schedule"), "cosine") &&
          config_get_enum(c, "train.schedule") == 0);
    CHECK(config_get_double(c, "train.clip") == 1.0);
    CHECK(!config_is_set(c, "train.lr"));
    CHECK(config_has_key(c, "train.lr") && !config_has_key(c, "train") &&
          !config_has_key(c, "train.lrr"));
    config_free(c);
}

static void test_load_file(void) {
    Config *c = fresh();
    char path[512], err[512] = "";
    fixture(path, sizeof path, "config_full.yaml");
    CHECK_MSG(config_load_file(c, path, err, sizeof err) == 0, "%s", err);
    CHECK(!strcmp(config_get_string(c, "model.init"), "checkpoints/sft"));
    CHECK(config_get_int(c, "model.n_ctx") == 256);
    CHECK(!strcmp(config_get_string(c, "data.path"), "data/demo.jsonl"));
    const char *const *items;
    CHECK(config_get_list(c, "data.files", &items) == 3);
    CHECK(!strcmp(items[0], "a.jsonl") && !strcmp(items[1], "b c.jsonl") &&
          !strcmp(items[2], "d\te.jsonl"));
    CHECK(!strcmp(config_get_string(c, "data.template"), "Human: {prompt}\n\nAssistant:"));
    CHECK(config_get_double(c, "train.lr") == 3.0e-5);
    CHECK(config_get_int(c, "train.steps") == 2000);
    CHECK(config_get_bool(c, "train.shuffle") == 1);
    CHECK(config_get_enum(c, "train.schedule") == 1);
    CHECK(config_get_double(c, "train.warmup") == 0.05);
    CHECK(config_get_double(c, "train.clip") == 1.5);
    CHECK(config_get_int(c, "log.every") == 50);
    CHECK(config_get_list(c, "log.tags", &items) == 3);
    CHECK(!strcmp(items[0], "alpha") && !strcmp(items[1], "beta gamma") && !strcmp(items[2], ""));
    CHECK(config_is_set(c, "train.lr") && config_is_set(c, "train.clip"));
    // A second file overrides only what it names.
    const char *more = "train:\n  steps: 7\n";
    CHECK(config_load_string(c, "more.yaml", more, strlen(more), err, sizeof err) == 0);
    CHECK(config_get_int(c, "train.steps") == 7 && config_get_double(c, "train.lr") == 3.0e-5);
    // Missing files and directories are one-line errors naming the path.
    CHECK(config_load_file(c, "/nonexistent/x.yaml", err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/x.yaml: "));
    CHECK(config_load_file(c, tmpdir, err, sizeof err) == -1 &&
          !strncmp(err, tmpdir, strlen(tmpdir)) && one_line(err));
    // The fixture files with errors name themselves.
    fixture(path, sizeof path, "config_bad_type.yaml");
    CHECK(config_load_file(c, path, err, sizeof err) == -1);
    char want[1024];
    snprintf(want, sizeof want, "%s:2:7: train.lr: expected a number, got 'abc'", path);
    CHECK_MSG(!strcmp(err, want), "got %s", err);
    fixture(path, sizeof path, "config_bad_syntax.yaml");
    CHECK(config_load_file(c, path, err, sizeof err) == -1);
    snprintf(want, sizeof want, "%s:4:1: YAML syntax error: did not find expected ',' or ']' "
                                "(while parsing a flow sequence at line 3, column 10)", path);
    CHECK_MSG(!strcmp(err, want), "got %s", err);
    config_free(c);
}

static void test_empty_inputs(void) {
    const char *cases[] = {"", "\n\n", "# only a comment\n", "---\n", "--- ~\n", "null\n"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Config *c = fresh();
        char err[512] = "", h0[CONFIG_HASH_HEX], h1[CONFIG_HASH_HEX];
        config_hash(c, h0);
        CHECK_MSG(config_load_string(c, "e.yaml", cases[i], strlen(cases[i]), err, sizeof err) == 0,
                  "case %zu: %s", i, err);
        config_hash(c, h1);
        CHECK(!strcmp(h0, h1));
        config_free(c);
    }
    // An empty section is allowed and sets nothing.
    Config *c = fresh();
    char err[512];
    CHECK(config_load_string(c, "e.yaml", "train:\n", 7, err, sizeof err) == 0 &&
          !config_is_set(c, "train.lr"));
    config_free(c);
}

static void test_overrides(void) {
    Config *c = fresh();
    char err[512] = "";
    const char *const *items;
    CHECK(config_set(c, "train.lr=3e-5", err, sizeof err) == 0 &&
          config_get_double(c, "train.lr") == 3e-5);
    CHECK(config_set(c, "train.steps=-0", err, sizeof err) == -1);   // below min 1
    CHECK(config_set(c, "train.steps=+42", err, sizeof err) == 0 &&
          config_get_int(c, "train.steps") == 42);
    CHECK(config_set(c, "train.shuffle=on", err, sizeof err) == 0 &&
          config_get_bool(c, "train.shuffle") == 1);
    CHECK(config_set(c, "train.shuffle=FALSE", err, sizeof err) == 0 &&
          config_get_bool(c, "train.shuffle") == 0);
    CHECK(config_set(c, "train.schedule=constant", err, sizeof err) == 0 &&
          config_get_enum(c, "train.schedule") == 2);
    // Strings are verbatim: '=', ':', '#', quotes and spaces kept.
    CHECK(config_set(c, "data.path=my file=1: #x \"q\"", err, sizeof err) == 0);
    CHECK(!strcmp(config_get_string(c, "data.path"), "my file=1: #x \"q\""));
    CHECK(config_set(c, "model.init=", err, sizeof err) == 0 &&
          !strcmp(config_get_string(c, "model.init"), ""));
    // Lists: flow sequence, single item, empty.
    CHECK(config_set(c, "data.files=[a.jsonl, 'b c', \"d,e\"]", err, sizeof err) == 0);
    CHECK(config_get_list(c, "data.files", &items) == 3 && !strcmp(items[1], "b c") &&
          !strcmp(items[2], "d,e"));
    CHECK(config_set(c, "data.files=one.jsonl", err, sizeof err) == 0);
    CHECK(config_get_list(c, "data.files", &items) == 1 && !strcmp(items[0], "one.jsonl"));
    CHECK(config_set(c, "data.files=", err, sizeof err) == 0 &&
          config_get_list(c, "data.files", NULL) == 0);
    CHECK(config_set(c, "data.files=[]", err, sizeof err) == 0 &&
          config_get_list(c, "data.files", NULL) == 0);
    // An override after a file wins; a file after an override wins too (order of calls).
    const char *y = "train:\n  lr: 0.5\n";
    CHECK(config_load_string(c, "y.yaml", y, strlen(y), err, sizeof err) == 0 &&
          config_get_double(c, "train.lr") == 0.5);
    CHECK(config_set(c, "train.lr=0.25", err, sizeof err) == 0 &&
          config_get_double(c, "train.lr") == 0.25);
    // config_set_value with a caller's location.
    CHECK(config_set_value(c, "train.steps", "x", "pipe.yaml:12:7", err, sizeof err) == -1);
    CHECK_MSG(!strcmp(err, "pipe.yaml:12:7: train.steps: expected an integer, got 'x'"), "%s", err);
    config_free(c);

    EXPECT_SET_ERR("train.lr=abc", "--set train.lr=abc: train.lr: expected a number, got 'abc'");
    EXPECT_SET_ERR("train.lrr=1",
                   "--set train.lrr=1: unknown key 'train.lrr' (did you mean 'train.lr'?)");
    EXPECT_SET_ERR("lr=1", "--set lr=1: unknown key 'lr' (did you mean 'train.lr'?)");
    EXPECT_SET_ERR("bogus=1", "--set bogus=1: unknown key 'bogus'");
    EXPECT_SET_ERR("train=1",
                   "--set train=1: train is a section, not a key (keys: train.lr, train.steps, "
                   "train.shuffle, train.schedule ...)");
    EXPECT_SET_ERR("train.lr", "--set 'train.lr': expected KEY=VALUE (e.g. --set train.lr=3e-5)");
    EXPECT_SET_ERR("=3", "--set '=3': expected KEY=VALUE (e.g. --set train.lr=3e-5)");
    EXPECT_SET_ERR("train.lr=2", "--set train.lr=2: train.lr: 2 is above the maximum 1");
    EXPECT_SET_ERR("train.lr=-0.1", "--set train.lr=-0.1: train.lr: -0.1 is below the minimum 0");
    EXPECT_SET_ERR("train.lr=", "--set train.lr=: train.lr: expected a number, got null");
    EXPECT_SET_ERR("train.lr= 1", "--set train.lr= 1: train.lr: expected a number, got ' 1'");
    EXPECT_SET_ERR("train.lr=nan", "--set train.lr=nan: train.lr: expected a number, got 'nan'");
    EXPECT_SET_ERR("train.lr=1e999",
                   "--set train.lr=1e999: train.lr: '1e999' is out of range for a double");
    EXPECT_SET_ERR("train.steps=0", "--set train.steps=0: train.steps: 0 is below the minimum 1");
    EXPECT_SET_ERR("train.steps=1.5",
                   "--set train.steps=1.5: train.steps: expected an integer, got '1.5'");
    EXPECT_SET_ERR(
        "train.steps=9223372036854775808",
        "--set train.steps=9223372036854775808: train.steps: '9223372036854775808' is out of range for "
        "a 64-bit integer");
    EXPECT_SET_ERR("train.shuffle=maybe",
                   "--set train.shuffle=maybe: train.shuffle: expected true or false, got 'maybe'");
    EXPECT_SET_ERR("train.schedule=cosin",
                   "--set train.schedule=cosin: train.schedule: expected one of cosine, linear, "
                   "constant; got 'cosin' (did you mean 'cosine'?)");
    EXPECT_SET_ERR(
        "data.files=[a, [b]]",
        "--set data.files=[a, [b]]: data.files: expected a list of strings such as [a, b]");
    EXPECT_SET_ERR(
        "data.files=[a",
        "--set data.files=[a: data.files: expected a list such as [a, b]: YAML syntax error: "
        "did not find expected ',' or ']'");
    EXPECT_SET_ERR("data.path=\xff\xfe",
                   "--set data.path=\\xFF\\xFE: data.path: the value is not valid UTF-8");
    // Extreme but valid int64 bounds.
    c = fresh();
    CHECK(config_set(c, "train.steps=9223372036854775807", err, sizeof err) == 0 &&
          config_get_int(c, "train.steps") == INT64_MAX);
    CHECK(config_set(c, "train.steps=000000000000000000000000000005", err, sizeof err) == 0 &&
          config_get_int(c, "train.steps") == 5);
    config_free(c);
}

static void test_file_errors(void) {
    EXPECT_LOAD_ERR("train:\n  lrr: 1\n",
                    "t.yaml:2:3: unknown key 'train.lrr' (did you mean 'train.lr'?)");
    EXPECT_LOAD_ERR("lr: 1\n", "t.yaml:1:1: unknown key 'lr' (did you mean 'train.lr'?)");
    EXPECT_LOAD_ERR("train:\n  schedul: cosine\n",
                    "t.yaml:2:3: unknown key 'train.schedul' (did you mean 'train.schedule'?)");
    EXPECT_LOAD_ERR("zzz:\n  q: 1\n", "t.yaml:1:1: unknown key 'zzz'");
    EXPECT_LOAD_ERR("train:\n  lr: abc\n", "t.yaml:2:7: train.lr: expected a number, got 'abc'");
    EXPECT_LOAD_ERR(
        "train:\n  lr: \"3e-5\"\n",
        "t.yaml:2:7: train.lr: expected a number, got the quoted string \"3e-5\" (write it without quotes)");
    EXPECT_LOAD_ERR("train:\n  lr:\n", "t.yaml:2:6: train.lr: expected a number, got null");
    EXPECT_LOAD_ERR("train:\n  lr: ~\n", "t.yaml:2:7: train.lr: expected a number, got null");
    EXPECT_LOAD_ERR("train:\n  lr: 2\n", "t.yaml:2:7: train.lr: 2 is above the maximum 1");
    EXPECT_LOAD_ERR("model.n_ctx: 0\n", "t.yaml:1:14: model.n_ctx: 0 is below the minimum 1");
    EXPECT_LOAD_ERR(
        "model.n_ctx: 99999999999999999999\n",
        "t.yaml:1:14: model.n_ctx: '99999999999999999999' is out of range for a 64-bit integer");
    EXPECT_LOAD_ERR("train:\n  shuffle: 1\n",
                    "t.yaml:2:12: train.shuffle: expected true or false, got '1'");
    EXPECT_LOAD_ERR(
        "train:\n  schedule: cosin\n",
        "t.yaml:2:13: train.schedule: expected one of cosine, linear, constant; got 'cosin' (did you mean 'cosine'?)");
    EXPECT_LOAD_ERR("train:\n  steps: [1]\n",
                    "t.yaml:2:10: train.steps: expected an integer, got a sequence");
    EXPECT_LOAD_ERR("train:\n  lr: {a: 1}\n",
                    "t.yaml:2:7: train.lr: expected a number, got a mapping");
    EXPECT_LOAD_ERR("data:\n  path: [a]\n",
                    "t.yaml:2:9: data.path: expected a string, got a sequence");
    EXPECT_LOAD_ERR(
        "data:\n  files:\n    - a\n    - {b: 1}\n",
        "t.yaml:4:7: data.files: expected a list of strings, got a mapping inside the list");
    EXPECT_LOAD_ERR("train: 5\n",
                    "t.yaml:1:8: train is a section (keys: train.lr, train.steps, train.shuffle, "
                    "train.schedule ...): expected a mapping, got a scalar");
    EXPECT_LOAD_ERR(
        "log: [1]\n",
        "t.yaml:1:6: log is a section (keys: log.every, log.tags): expected a mapping, got a sequence");
    // Duplicates, in every spelling.
    EXPECT_LOAD_ERR("train:\n  lr: 0.1\n  lr: 0.2\n",
                    "t.yaml:3:3: duplicate key 'train.lr' (first at line 2, column 3)");
    EXPECT_LOAD_ERR("train:\n  lr: 0.1\ntrain.lr: 0.2\n",
                    "t.yaml:3:1: duplicate key 'train.lr' (first at line 2, column 3)");
    EXPECT_LOAD_ERR("train:\n  lr: 0.1\ntrain:\n  steps: 2\n",
                    "t.yaml:3:1: duplicate key 'train' (first at line 1, column 1)");
    // YAML structure.
    EXPECT_LOAD_ERR("- a\n- b\n",
                    "t.yaml:1:1: the top level must be a mapping of keys, got a sequence");
    EXPECT_LOAD_ERR("hello\n", "t.yaml:1:1: the top level must be a mapping of keys, got a scalar");
    EXPECT_LOAD_ERR("train: {lr: 0.1}\n---\ntrain: {lr: 0.2}\n",
                    "t.yaml:2:1: only one YAML document is allowed (found a second '---')");
    EXPECT_LOAD_ERR("train:\n  lr: &x 0.1\n", "t.yaml:2:7: anchors (&name) are not supported");
    EXPECT_LOAD_ERR("train:\n  lr: 0.1\n  warmup: *x\n",
                    "t.yaml:3:11: aliases (*name) are not supported");
    EXPECT_LOAD_ERR("train:\n  lr: !!float 0.1\n", "t.yaml:2:7: tags (!tag) are not supported");
    EXPECT_LOAD_ERR("? [a]\n: 1\n", "t.yaml:1:3: keys must be scalars, got a sequence as a key");
    EXPECT_LOAD_ERR(
        "train:\n  lr: 0.1\n lr: 2\n",
        "t.yaml:3:2: YAML syntax error: did not find expected key (while parsing a block mapping at line 1, column 1)");
    EXPECT_LOAD_ERR("train:\n\tlr: 1\n",
                    "t.yaml:2:1: YAML syntax error: found character that cannot start any token "
                    "(while scanning for the next token at line 2, column 1)");
    EXPECT_LOAD_ERR("data:\n  path: \"a\\0b\"\n",
                    "t.yaml:2:9: data.path: the value contains a NUL character");
    EXPECT_LOAD_ERR("data:\n  path: \"\\x01\\x02\x01\"\n",
                    "t.yaml:2:18: YAML error: control characters are not allowed (byte 0x01)");
    EXPECT_LOAD_ERR("data:\n  path: ab\xff\n",
                    "t.yaml:2:11: YAML error: invalid leading UTF-8 octet (byte 0xFF)");
    EXPECT_LOAD_ERR("data:\n  path: \xc3\xa9\xed\xa0\x80\n",
                    "t.yaml:2:10: YAML error: invalid Unicode character (U+D800)");
    // A failed load leaves every earlier value of the same file unapplied.
    EXPECT_LOAD_ERR("train:\n  lr: 0.5\n  steps: 5\n  shuffle: 3\n",
                    "t.yaml:4:12: train.shuffle: expected true or false, got '3'");
}

static void test_dump_and_hash(void) {
    Config *c = fresh();
    char err[512];
    const char *want =
        "data:\n"
        "  files: [\"x.jsonl\"]\n"
        "  path: \"data.jsonl\"\n"
        "  template: \"{prompt}\"\n"
        "log:\n"
        "  every: 10\n"
        "  tags: []\n"
        "model:\n"
        "  init: \"\"\n"
        "  n_ctx: 128\n"
        "train:\n"
        "  clip: 1\n"
        "  lr: 0.0001\n"
        "  schedule: \"cosine\"\n"
        "  shuffle: false\n"
        "  steps: 100\n"
        "  warmup: 0\n";
    char *d = config_dump_string(c);
    CHECK_MSG(!strcmp(d, want), "dump:\n%s", d);
    free(d);
    char h0[CONFIG_HASH_HEX], h1[CONFIG_HASH_HEX], h2[CONFIG_HASH_HEX];
    config_hash(c, h0);
    CHECK(strlen(h0) == 16);
    // NO_HASH keys do not change the hash; others do.
    CHECK(config_set(c, "log.every=99", err, sizeof err) == 0 &&
          config_set(c, "log.tags=[x]", err, sizeof err) == 0);
    config_hash(c, h1);
    CHECK(!strcmp(h0, h1));
    CHECK(config_set(c, "train.lr=0.00010000000000000002", err, sizeof err) == 0);
    config_hash(c, h2);
    CHECK(strcmp(h0, h2) != 0);

    // Odd values: every escape, non-ASCII, doubles at the edges; dump -> reload gives the same
    // values and hash.
    static const char *odd_strings[] = {
        "quote \" backslash \\ slash /", "tab\there\nnewline\r\n", "\x01\x02\x1f\x7f", "\xc2\x80\xc2\x85\xc2\x9f\xc2\xa0",
        "\xe2\x80\xa8\xe2\x80\xa9", "\xef\xbb\xbf bom \xef\xbf\xbe\xef\xbf\xbf", "caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80",
        "  leading and trailing  ", "- not a list", "#not a comment", "key: value", "'single'", "~", "null", "true", "",
        "\xf4\x8f\xbf\xbf",
    };
    static const double odd_doubles[] = {0.0, -0.0, 1e-300, 4.9406564584124654e-324, 0.1, 1.0 / 3.0, 0.30000000000000004,
                                         1e-5, 0.9999999999999999};
    for (size_t i = 0; i < sizeof odd_strings / sizeof *odd_strings; i++) {
        Config *a = fresh(), *b = fresh();
        char as[1024], ha[CONFIG_HASH_HEX], hb[CONFIG_HASH_HEX];
        snprintf(as, sizeof as, "data.template=%s", odd_strings[i]);
        CHECK_MSG(config_set(a, as, err, sizeof err) == 0, "%s", err);
        double dv = odd_doubles[i % (sizeof odd_doubles / sizeof *odd_doubles)];
        char dtext[64];
        snprintf(dtext, sizeof dtext, "train.warmup=%.17g", fabs(dv));
        CHECK_MSG(config_set(a, dtext, err, sizeof err) == 0, "%s", err);
        char *dump = config_dump_string(a);
        CHECK_MSG(config_load_string(b, "dump.yaml", dump, strlen(dump), err, sizeof err) == 0,
                  "string %zu: %s\n%s", i, err, dump);
        CHECK_MSG(!strcmp(config_get_string(b, "data.template"), odd_strings[i]),
                  "string %zu differs after reload", i);
        double back = config_get_double(b, "train.warmup"), want_d = fabs(dv);
        CHECK(memcmp(&back, &want_d, sizeof back) == 0);
        config_hash(a, ha);
        config_hash(b, hb);
        CHECK(!strcmp(ha, hb));
        char *dump2 = config_dump_string(b);
        CHECK(!strcmp(dump, dump2));
        free(dump); free(dump2);
        config_free(a); config_free(b);
    }
    // Lists with odd items and negative zero / extreme doubles round-trip through the dump too.
    static const ConfigEntry S2[] = {
        CONFIG_ENTRY("x", CONFIG_DOUBLE, "0", "any double"),
        CONFIG_ENTRY("l", CONFIG_LIST, NULL, "a list"),
        CONFIG_ENTRY("i", CONFIG_INT, "0", "an int"),
        {0}};
    for (size_t i = 0; i < sizeof odd_doubles / sizeof *odd_doubles + 2; i++) {
        Config *a, *b;
        CHECK(config_new(&a, S2, err, sizeof err) == 0 && config_new(&b, S2, err, sizeof err) == 0);
        double dv = i < sizeof odd_doubles / sizeof *odd_doubles ? odd_doubles[i]
                    : i % 2                                      ? DBL_MAX
                                                                 : -DBL_MIN;
        char t[64];
        snprintf(t, sizeof t, "x=%.17g", dv);
        if (signbit(dv) && dv == 0) snprintf(t, sizeof t, "x=-0");
        CHECK_MSG(config_set(a, t, err, sizeof err) == 0, "%s", err);
        CHECK(config_set(a, "l=[\"a\\\"b\", \"c\\\\d\", \"\\u2028\", \"\\t\"]", err, sizeof err) == 0);
        CHECK(config_set(a, i % 2 ? "i=-9223372036854775808" : "i=9223372036854775807", err, sizeof err) == 0);
        char *dump = config_dump_string(a);
        CHECK_MSG(config_load_string(b, "d.yaml", dump, strlen(dump), err, sizeof err) == 0,
                  "%s\n%s", err, dump);
        double back = config_get_double(b, "x");
        CHECK_MSG(memcmp(&back, &dv, sizeof dv) == 0, "double %.17g came back as %.17g", dv, back);
        const char *const *la, *const *lb;
        int64_t na = config_get_list(a, "l", &la), nb = config_get_list(b, "l", &lb);
        CHECK(na == 4 && nb == 4);
        for (int64_t k = 0; k < na && k < nb; k++) CHECK(!strcmp(la[k], lb[k]));
        CHECK(config_get_int(a, "i") == config_get_int(b, "i"));
        free(dump);
        config_free(a); config_free(b);
    }
    // The same keys declared in another order: the same dump and hash.
    static const ConfigEntry R1[] = {
        CONFIG_ENTRY("b.y", CONFIG_INT, "1", ""),     CONFIG_ENTRY("a", CONFIG_INT, "2", ""),
        CONFIG_ENTRY("b.x", CONFIG_BOOL, "true", ""), CONFIG_ENTRY("b_c", CONFIG_INT, "3", ""),
        CONFIG_ENTRY("b.z.w", CONFIG_INT, "4", ""),   {0}};
    static const ConfigEntry R2[] = {
        CONFIG_ENTRY("b.z.w", CONFIG_INT, "4", ""),   CONFIG_ENTRY("b_c", CONFIG_INT, "3", ""),
        CONFIG_ENTRY("b.x", CONFIG_BOOL, "true", ""), CONFIG_ENTRY("a", CONFIG_INT, "2", ""),
        CONFIG_ENTRY("b.y", CONFIG_INT, "1", ""),     {0}};
    Config *r1, *r2;
    CHECK(config_new(&r1, R1, err, sizeof err) == 0 && config_new(&r2, R2, err, sizeof err) == 0);
    char *d1 = config_dump_string(r1), *d2 = config_dump_string(r2);
    CHECK_MSG(!strcmp(d1, "a: 2\nb:\n  x: true\n  y: 1\n  z:\n    w: 4\nb_c: 3\n"), "%s", d1);
    CHECK(!strcmp(d1, d2));
    config_hash(r1, h1);
    config_hash(r2, h2);
    CHECK(!strcmp(h1, h2));
    // A dump of the full fixture reloads to the same hash.
    Config *f1 = fresh(), *f2 = fresh();
    char path[512];
    fixture(path, sizeof path, "config_full.yaml");
    CHECK(config_load_file(f1, path, err, sizeof err) == 0);
    char *df = config_dump_string(f1);
    char dpath[512];
    snprintf(dpath, sizeof dpath, "%s/dump.yaml", tmpdir);
    FILE *fp = fopen(dpath, "w");
    CHECK(fp && config_dump(f1, fp) == 0);
    if (fp) fclose(fp);
    CHECK_MSG(config_load_file(f2, dpath, err, sizeof err) == 0, "%s", err);
    config_hash(f1, h1);
    config_hash(f2, h2);
    CHECK(!strcmp(h1, h2));
    char *df2 = config_dump_string(f2);
    CHECK(!strcmp(df, df2));
    free(df); free(df2); free(d1); free(d2);
    config_free(f1); config_free(f2); config_free(r1); config_free(r2);
    config_free(c);
}

static void test_help(void) {
    Config *c = fresh();
    char *buf = NULL;
    size_t n = 0;
    FILE *f = open_memstream(&buf, &n);
    config_help(c, f);
    fclose(f);
    for (int i = 0; SCHEMA[i].key; i++) {
        CHECK_MSG(strstr(buf, SCHEMA[i].key) && strstr(buf, SCHEMA[i].help), "help lacks %s",
                  SCHEMA[i].key);
    }
    CHECK(strstr(buf, "train.lr") && strstr(buf, "double") && strstr(buf, "0.0001") &&
          strstr(buf, "[0 .. 1]"));
    CHECK(strstr(buf, "(cosine|linear|constant)"));
    int lines = 0;
    for (char *p = buf; *p; p++) lines += *p == '\n';
    CHECK(lines == 13);
    free(buf);
    config_free(c);
}

static void test_schema_errors(void) {
    struct { ConfigEntry e[3]; const char *want;
    } cases[] = {
        {{CONFIG_ENTRY("Train.lr", CONFIG_DOUBLE, "1", "")},
         "schema: key 'Train.lr': use dotted parts of a-z, 0-9 and _"},
        {{CONFIG_ENTRY("train..lr", CONFIG_DOUBLE, "1", "")},
         "schema: key 'train..lr': use dotted parts of a-z, 0-9 and _"},
        {{CONFIG_ENTRY("a", CONFIG_INT, "1", ""), CONFIG_ENTRY("a", CONFIG_INT, "1", "")},
         "schema: a: declared twice"},
        {{CONFIG_ENTRY("a", CONFIG_INT, "1", ""), CONFIG_ENTRY("a.b", CONFIG_INT, "1", "")},
         "schema: a is both a key and the section of a.b"},
        {{CONFIG_ENTRY("a", CONFIG_INT, NULL, "")}, "schema: a: a int key needs a default"},
        {{CONFIG_ENTRY("a", CONFIG_INT, "x", "")},
         "schema: a: bad default: expected an integer, got 'x'"},
        {{CONFIG_ENTRY("a", CONFIG_INT, "0", "", .min = "1")},
         "schema: a: bad default: 0 is below the minimum 1"},
        {{CONFIG_ENTRY("a", CONFIG_DOUBLE, "0", "", .min = "1", .max = "0")},
         "schema: a: min 1 is above max 0"},
        {{CONFIG_ENTRY("a", CONFIG_DOUBLE, "0", "", .min = "zero")}, "schema: a: bad min 'zero'"},
        {{CONFIG_ENTRY("a", CONFIG_STRING, "", "", .min = "0")},
         "schema: a: bounds on a string key"},
        {{CONFIG_ENTRY("a", CONFIG_ENUM, "x", "")}, "schema: a: an enum needs choices"},
        {{CONFIG_ENTRY("a", CONFIG_ENUM, "x", "", .choices = "x||y")},
         "schema: a: empty choice in 'x||y'"},
        {{CONFIG_ENTRY("a", CONFIG_ENUM, "x", "", .choices = "x|y|x")},
         "schema: a: choice 'x' twice"},
        {{CONFIG_ENTRY("a", CONFIG_ENUM, "z", "", .choices = "x|y")},
         "schema: a: bad default: expected one of x, y; got 'z'"},
        {{CONFIG_ENTRY("a", CONFIG_INT, "1", NULL)}, "schema: a: no help text"},
        {{CONFIG_ENTRY("a", (ConfigType)99, "1", "")}, "schema: a: unknown type 99"},
        {{CONFIG_ENTRY("a", CONFIG_LIST, "[x", "")},
         "schema: a: bad default: expected a list such as [a, b]: YAML syntax error: "
         "did not find expected ',' or ']'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        Config *c = (Config *)1;
        char err[512] = "";
        CHECK_MSG(config_new(&c, cases[i].e, err, sizeof err) == -1 && c == NULL,
                  "case %zu accepted", i);
        CHECK_MSG(!strcmp(err, cases[i].want), "case %zu:\n      got:  %s\n      want: %s", i, err,
                  cases[i].want);
    }
    // An empty schema is fine: every key is unknown.
    static const ConfigEntry none[] = {{0}};
    Config *c;
    char err[512];
    CHECK(config_new(&c, none, err, sizeof err) == 0);
    CHECK(config_load_string(c, "n.yaml", "a: 1\n", 5, err, sizeof err) == -1 &&
          !strcmp(err, "n.yaml:1:1: unknown key 'a'"));
    char *d = config_dump_string(c);
    CHECK(d && !strcmp(d, ""));
    free(d);
    config_free(c);
}

// A getter called with a key that is not in the schema (or of another type) is a programmer
// error: it exits with a message naming the key.
static void test_getter_misuse(void) {
    for (int which = 0; which < 2; which++) {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            freopen("/dev/null", "w", stderr);
            Config *c = fresh();
            if (which == 0) (void)config_get_int(c, "train.nope");
            else (void)config_get_int(c, "train.lr");
            _exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    }
}

// Hostile inputs: each is an error (or, for garbage that happens to be valid, a success), never a
// crash or a hang; messages stay one line.
static void test_hostile(void) {
    char err[1024];
    // Deep nesting, flow and block.
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 16);
    size_t n = 0;
    n += (size_t)sprintf(deep, "data:\n  files: ");
    for (size_t i = 0; i < depth; i++) deep[n++] = '[';
    for (size_t i = 0; i < depth; i++) deep[n++] = ']';
    deep[n] = 0;
    Config *c = fresh();
    CHECK(config_load_string(c, "deep.yaml", deep, n, err, sizeof err) == -1 && one_line(err));
    CHECK_MSG(!strcmp(err, "deep.yaml:2:11: data.files: expected a list of strings, got a sequence inside the list"), "%s", err);
    n = 0;
    for (size_t i = 0; i < depth; i++) deep[n++] = '[';
    CHECK(config_load_string(c, "deep.yaml", deep, n, err, sizeof err) == -1 && one_line(err));
    free(deep);
    {
        size_t levels = 5000,
               cap = levels * (levels + 8) / 2 + 64; // "a:\n" indented deeper each time
        char *b = malloc(cap);
        size_t k = 0;
        for (size_t i = 0; i < levels && k + i + 8 < cap; i++) {
            memset(b + k, ' ', i); k += i;
            memcpy(b + k, "t:\n", 3); k += 3;
        }
        CHECK(config_load_string(c, "block.yaml", b, k, err, sizeof err) == -1);
        CHECK_MSG(!strcmp(err, "block.yaml:1:1: unknown key 't' (did you mean 'train.lr'?)") ||
                  !strncmp(err, "block.yaml:1:1: unknown key 't'", 31), "%s", err);
        free(b);
    }
    // A huge scalar: fine for a string key, an error (shown cut) for an unknown key.
    size_t big = 8u << 20;
    char *huge = malloc(big + 64);
    n = (size_t)sprintf(huge, "data:\n  path: ");
    memset(huge + n, 'x', big);
    n += big;
    huge[n++] = '\n';
    CHECK_MSG(config_load_string(c, "huge.yaml", huge, n, err, sizeof err) == 0, "%s", err);
    CHECK(strlen(config_get_string(c, "data.path")) == big);
    memcpy(huge, "data:\n  pbth: ", 14);
    CHECK(config_load_string(c, "huge.yaml", huge, n, err, sizeof err) == -1 && one_line(err));
    memset(huge, 'k', big);
    memcpy(huge + big, ": 1\n", 4);
    CHECK(config_load_string(c, "huge.yaml", huge, big + 4, err, sizeof err) == -1 &&
          one_line(err) && strlen(err) < 200);
    free(huge);
    // Over the size limit: refused before parsing.
    char path[512];
    snprintf(path, sizeof path, "%s/big.yaml", tmpdir);
    char *over = calloc(1, (size_t)CONFIG_MAX_FILE + 1);
    memset(over, '#', (size_t)CONFIG_MAX_FILE);
    test_write_file(path, over, (size_t)CONFIG_MAX_FILE + 1);
    free(over);
    CHECK(config_load_file(c, path, err, sizeof err) == -1 && strstr(err, "larger than"));
    unlink(path);
    // Invalid UTF-8, NUL bytes, UTF-16 with a BOM (libyaml reads it), a lone BOM.
    const char nul[] = "train:\n  lr: 0.1\0\n";
    CHECK(config_load_string(c, "nul.yaml", nul, sizeof nul - 1, err, sizeof err) == -1 &&
          one_line(err));
    const char utf16[] = "\xff\xfet\0r\0a\0i\0n\0.\0s\0t\0e\0p\0s\0:\0 \0""9\0\n\0";
    CHECK_MSG(config_load_string(c, "u16.yaml", utf16, sizeof utf16 - 1, err, sizeof err) == 0,
              "%s", err);
    CHECK(config_get_int(c, "train.steps") == 9);
    CHECK(config_load_string(c, "bom.yaml", "\xef\xbb\xbf", 3, err, sizeof err) == 0);
    config_free(c);
    // Random garbage and random mutations of a valid file.
    char fpath[512];
    fixture(fpath, sizeof fpath, "config_full.yaml");
    FILE *f = fopen(fpath, "rb");
    char base[4096];
    size_t bn = f ? fread(base, 1, sizeof base, f) : 0;
    if (f) fclose(f);
    CHECK(bn > 100);
    Rng rng;
    rng_init(&rng, 1234);
    int errors = 0, oks = 0;
    for (int it = 0; it < 3000; it++) {
        char buf[4096];
        size_t len;
        if (it % 3 == 0) {
            len = rng_u64(&rng) % 512;
            for (size_t i = 0; i < len; i++) buf[i] = (char)(rng_u64(&rng) & 0xFF);
        } else {
            memcpy(buf, base, bn);
            len = bn;
            int muts = 1 + (int)(rng_u64(&rng) % 4);
            for (int m = 0; m < muts; m++) {
                size_t at = rng_u64(&rng) % len;
                static const char pool[] = "[]{}:-,&*!|>'\"#\n \t\\%@`?~\x00\xff\xc3";
                buf[at] = (rng_u64(&rng) & 1) ? (char)(rng_u64(&rng) & 0xFF)
                                              : pool[rng_u64(&rng) % (sizeof pool - 1)];
            }
        }
        Config *g = fresh();
        err[0] = 0;
        int rc = config_load_string(g, "fuzz.yaml", buf, len, err, sizeof err);
        if (rc) {
            errors++;
            if (!one_line(err) || strncmp(err, "fuzz.yaml:", 10)) {
                CHECK_MSG(0, "bad message: %s", err);
                break;
            }
        } else oks++;
        config_free(g);
    }
    CHECK(errors > 1000 && oks > 10);
}

// A key added later with CONFIG_HASH_IF_SET: at its default the hash is the one of the schema
// without it (configs written before keep their hash); set to anything else it counts.
static void test_hash_if_set(void) {
    static const ConfigEntry OLD[] = {
        CONFIG_ENTRY("train.lr", CONFIG_DOUBLE, "0.001", "rate"),
        CONFIG_ENTRY("data.path", CONFIG_STRING, "a.jsonl", "data"),
        {0}};
    static const ConfigEntry NEW[] = {
        CONFIG_ENTRY("train.lr", CONFIG_DOUBLE, "0.001", "rate"),
        CONFIG_ENTRY("data.mix.text", CONFIG_STRING, "", "text", .flags = CONFIG_HASH_IF_SET),
        CONFIG_ENTRY("data.mix.weight", CONFIG_DOUBLE, "0", "w", .flags = CONFIG_HASH_IF_SET),
        CONFIG_ENTRY("data.path", CONFIG_STRING, "a.jsonl", "data"),
        {0}};
    char err[256], ho[CONFIG_HASH_HEX], hn[CONFIG_HASH_HEX], hs[CONFIG_HASH_HEX];
    Config *o = NULL, *n = NULL;
    CHECK_MSG(config_new(&o, OLD, err, sizeof err) == 0 && config_new(&n, NEW, err, sizeof err) == 0,
              "%s", err);
    config_hash(o, ho);
    config_hash(n, hn);
    CHECK_MSG(!strcmp(ho, hn), "default-valued new keys changed the hash: %s vs %s", ho, hn);
    CHECK(config_set(n, "data.mix.weight=0.25", err, sizeof err) == 0);
    config_hash(n, hs);
    CHECK(strcmp(ho, hs) != 0);
    CHECK(config_set(n, "data.mix.weight=0", err, sizeof err) == 0 &&
          config_set(n, "data.mix.text=t.txt", err, sizeof err) == 0);
    config_hash(n, hs);
    CHECK(strcmp(ho, hs) != 0);
    char *d = config_dump_string(n);   // the dump still shows every key
    CHECK(strstr(d, "weight: 0") != NULL && strstr(d, "text: \"t.txt\"") != NULL);
    free(d);
    config_free(o);
    config_free(n);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/rlhf_test_config.XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_case("config: defaults of every type", test_defaults);
    test_case("config: nested and dotted keys from a YAML file", test_load_file);
    test_case("config: empty files are all defaults", test_empty_inputs);
    test_case("config: --set overrides and their errors", test_overrides);
    test_case("config: file errors with exact line and column", test_file_errors);
    test_case("config: canonical dump, reload, hash", test_dump_and_hash);
    test_case("config: a key added later leaves old hashes alone at its default", test_hash_if_set);
    test_case("config: help lists every key", test_help);
    test_case("config: bad schemas are refused", test_schema_errors);
    test_case("config: getter misuse exits with the key", test_getter_misuse);
    test_case("config: hostile inputs are errors, not crashes", test_hostile);
    char p[512];
    snprintf(p, sizeof p, "%s/dump.yaml", tmpdir);
    unlink(p);
    rmdir(tmpdir);
    return test_summary();
}
