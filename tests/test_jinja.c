// Tests for common/jinja: real chat templates (Llama 3, Llama 3.1, Qwen2.5, Qwen3, Mistral v0.3,
// Mistral Instruct, SmolLM2, Zephyr) rendered byte for byte as the npm @huggingface/jinja
// renders them (tests/fixtures/chat_templates/renderings.json, written by
// tests/ref/jinja_ref.js), then one hand-worked case per construct (outputs as Python's Jinja
// with transformers' trim_blocks + lstrip_blocks gives them), then every error path with its line
// and column.
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "testlib.h"

// Renders src with the JSON context ctx_json; *out is malloc'd (NULL on error, err then set).
static int render_str(const char *src, const char *ctx_json, char **out, char *err, size_t errlen) {
    JinjaTemplate *t;
    *out = NULL;
    if (jinja_parse(src, &t, err, errlen)) return -1;
    cJSON *ctx = ctx_json ? cJSON_Parse(ctx_json) : NULL;
    if (ctx_json && !ctx) {
        jinja_free(t);
        snprintf(err, errlen, "test bug: bad context JSON %s", ctx_json);
        return -2;
    }
    int rc = jinja_render(t, ctx, out, err, errlen);
    cJSON_Delete(ctx);
    jinja_free(t);
    return rc;
}

// Where two renderings first differ, for the failure message.
static void show_diff(const char *what, const char *got, const char *want) {
    size_t i = 0;
    while (got[i] && got[i] == want[i]) i++;
    size_t from = i > 30 ? i - 30 : 0;
    test_fail_at(__FILE__, __LINE__,
                 "%s: first difference at byte %zu:\n  got  ...%.60s\n  want ...%.60s", what, i,
                 got + from, want + from);
}

static const cJSON *find_named(const cJSON *list, const char *name) {
    for (const cJSON *c = list ? list->child : NULL; c; c = c->next) {
        const cJSON *n = cJSON_GetObjectItemCaseSensitive(c, "name");
        if (cJSON_IsString(n) && !strcmp(n->valuestring, name)) return c;
    }
    return NULL;
}

// The keys of a and then of b (b wins) in a new object (either may be NULL).
static cJSON *merged(const cJSON *a, const cJSON *b) {
    cJSON *m = cJSON_CreateObject();
    const cJSON *parts[2] = {a, b};
    for (int i = 0; i < 2; i++)
        for (const cJSON *c = parts[i] ? parts[i]->child : NULL; c; c = c->next) {
            cJSON_DeleteItemFromObjectCaseSensitive(m, c->string);
            cJSON_AddItemToObject(m, c->string, cJSON_Duplicate(c, 1));
        }
    return m;
}

// One recorded case: 1 when C agrees with the reference, 0 when it does not (a failed check), -1
// when the case is not compared (the reference is known to differ from Python's Jinja there).
static int check_reference_case(const cJSON *c, const cJSON *tinfo, const cJSON *conv,
                                const char *what) {
    const cJSON *quirk = cJSON_GetObjectItemCaseSensitive(c, "not_compared");
    const cJSON *want = cJSON_GetObjectItemCaseSensitive(c, "output");
    int raised = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "raised"));
    if (quirk || (!cJSON_IsString(want) && !raised)) return -1;
    char path[1024], err[512], *out = NULL;
    snprintf(path, sizeof path, "%s/fixtures/chat_templates/%s", test_data_dir(),
             cJSON_GetObjectItemCaseSensitive(tinfo, "file")->valuestring);
    char *src = test_read_file(path, NULL);
    JinjaTemplate *t;
    int rc = src ? jinja_parse(src, &t, err, sizeof err) : -1;
    free(src);
    CHECK_MSG(rc == 0, "%s: %s", path, src ? err : "cannot read it");
    if (rc) return 0;
    cJSON *extra = merged(cJSON_GetObjectItemCaseSensitive(tinfo, "context"),
                          cJSON_GetObjectItemCaseSensitive(conv, "extra"));
    cJSON *ctx = jinja_chat_context(
        tinfo, cJSON_GetObjectItemCaseSensitive(conv, "messages"),
        cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")), extra);
    rc = jinja_render(t, ctx, &out, err, sizeof err);
    int ok;
    if (raised) {   // the template's raise_exception: the same message
        const char *msg = cJSON_GetObjectItemCaseSensitive(c, "error")->valuestring;
        ok = rc == -1 && strstr(err, msg);
        CHECK_MSG(ok, "%s: %s, expected the template's error '%s'", what,
                  rc ? err : "rendered", msg);
    } else {
        ok = rc == 0 && !strcmp(out, want->valuestring);
        CHECK_MSG(rc == 0, "%s: %s", what, err);
        if (rc == 0 && !ok) show_diff(what, out, want->valuestring);
    }
    free(out);
    cJSON_Delete(ctx);
    cJSON_Delete(extra);
    jinja_free(t);
    return ok;
}

// Every recorded case: the same output, or the same raise_exception message where the template
// refuses the conversation.
static void test_reference_renderings(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/fixtures/chat_templates/renderings.json", test_data_dir());
    char *text = test_read_file(path, NULL);
    CHECK_MSG(text != NULL, "cannot read %s", path);
    cJSON *doc = text ? cJSON_Parse(text) : NULL;
    free(text);
    CHECK(doc != NULL);
    if (!doc) return;
    const cJSON *templates = cJSON_GetObjectItemCaseSensitive(doc, "templates");
    const cJSON *convs = cJSON_GetObjectItemCaseSensitive(doc, "conversations");
    const cJSON *cases = cJSON_GetObjectItemCaseSensitive(doc, "cases");
    int n = 0, same = 0, skipped = 0;
    for (const cJSON *c = cases ? cases->child : NULL; c; c = c->next) {
        const char *tname = cJSON_GetObjectItemCaseSensitive(c, "template")->valuestring;
        const char *cname = cJSON_GetObjectItemCaseSensitive(c, "conversation")->valuestring;
        const cJSON *tinfo = find_named(templates, tname), *conv = find_named(convs, cname);
        CHECK_MSG(tinfo && conv, "case %s/%s: template or conversation missing", tname, cname);
        if (!tinfo || !conv) continue;
        char what[256];
        snprintf(what, sizeof what, "%s on %s (add_generation_prompt=%d)", tname, cname,
                 cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(c, "add_generation_prompt")));
        int r = check_reference_case(c, tinfo, conv, what);
        if (r < 0) skipped++;
        else n++, same += r;
    }
    CHECK_MSG(n >= 700, "only %d reference cases", n);
    printf("  %d templates: %d of %d reference renderings identical (%d not compared: the JS "
           "reference differs from Python's Jinja there)\n",
           cJSON_GetArraySize(templates), same, n, skipped);
    cJSON_Delete(doc);
}

typedef struct {
    const char *src;
    const char *ctx;    // JSON object, or NULL
    const char *want;
} Case;

static void run_cases(const Case *cases, size_t n) {
    char err[512], *out;
    for (size_t i = 0; i < n; i++) {
        int rc = render_str(cases[i].src, cases[i].ctx, &out, err, sizeof err);
        CHECK_MSG(rc == 0, "template %s: %s", cases[i].src, err);
        if (rc == 0)
            CHECK_MSG(!strcmp(out, cases[i].want), "template %s\n  got  [%s]\n  want [%s]",
                      cases[i].src, out, cases[i].want);
        free(out);
    }
}

#define RUN(cases) run_cases(cases, sizeof cases / sizeof cases[0])

static void test_whitespace(void) {
    static const Case cases[] = {
        {"a {{- ' b ' -}} c", NULL, "a b c"},
        {"a\n  {%- if true %}x{% endif -%}  \n b", NULL, "axb"},
        // trim_blocks: the newline after %} and #} goes, not after }}
        {"{% if true %}\nyes\n{% endif %}\nend", NULL, "yes\nend"},
        {"{# note #}\nafter", NULL, "after"},
        {"{{ 'x' }}\nafter", NULL, "x\nafter"},
        // lstrip_blocks: indentation before a block tag at a line's start goes; not mid-line
        {"  {% if true %}\n    in\n  {% endif %}\nout", NULL, "    in\nout"},
        {"a  {% if true %}b{% endif %}", NULL, "a  b"},
        {"  {%+ if true %}b{% endif %}", NULL, "  b"},
        {"x\n\t{# c #}\ny", NULL, "x\ny"},
        {"{#- c -#}  \n  z", NULL, "z"},
        // '-' wins over lstrip: all whitespace before, newlines included
        {"a\n\n   {%- set x = 1 %}b", NULL, "ab"},
        {"{% generation %}kept{% endgeneration %}", NULL, "kept"},
        // the source as Jinja reads it: CRLF is LF, one final newline is dropped
        {"a\n", NULL, "a"},
        {"a\n\n", NULL, "a\n"},
        {"{% if true %}\r\nx\r\ny\r{% endif %}\r\n", NULL, "x\ny\n"},
    };
    RUN(cases);
}

static void test_expressions(void) {
    static const Case cases[] = {
        {"{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }}",
         NULL, "7 9 3 -4 1 2"},
        {"{{ 7 / 2 }} {{ 6 / 2 }} {{ 2 ** 10 }} {{ 1.5 + 1 }} {{ 0.1 + 0.2 }} {{ 1e20 }} {{ "
         "1e-5 }}",
         NULL, "3.5 3.0 1024 2.5 0.30000000000000004 1e+20 1e-05"},
        {"{{ 'a' ~ 1 ~ none ~ true }} {{ 'ab' + 'cd' }} {{ 'ab' * 3 }} {{ [1] + [2, 3] }}", NULL,
         "a1NoneTrue abcd ababab [1, 2, 3]"},
        {"{{ 1 < 2 }} {{ 2 <= 1 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'a' != 'a' }} {{ [1, 2] == "
         "[1, 2] }}",
         NULL, "True False True True False True"},
        {"{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ "
         "'x' in u }}",
         NULL, "True True True True False"},
        {"{{ not 0 }} {{ 0 or 'x' }} {{ 1 and 'y' }} {{ '' and 'z' }}|{{ none or [] }}", NULL,
         "True x y |[]"},
        {"{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 1 < 3 == 3 }} {{ 0 < 1 in [1] }}", NULL,
         "True False True True"},
        {"{{ 'yes' if 1 > 0 else 'no' }} {{ 'yes' if 0 else 'no' }} [{{ 'only' if false }}]", NULL,
         "yes no []"},
        {"{{ s[0] }} {{ s[-1] }} {{ s[1:3] }} {{ s[::-1] }} {{ s[::2] }} {{ s[10] }}|{{ s[-2:] }}",
         "{\"s\": \"héllo\"}", "h o él olléh hlo |lo"},
        {"{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[5:] }} {{ l[-1] }} {{ l.0 }}",
         "{\"l\": [1, 2, 3]}", "[2, 3] [1, 2] [3, 2, 1] [] 3 1"},
        {"{{ m.role }} {{ m['content'] }} {{ m.missing }}|{{ m.missing.deeper }}|{{ none }}",
         "{\"m\": {\"role\": \"user\", \"content\": \"hi\"}}", "user hi ||None"},
        {"{{ {'a': 1, 'b': [true, none]} }} {{ ['x', \"it's\"] }} {{ (1, 2) }}", NULL,
         "{'a': 1, 'b': [True, None]} ['x', \"it's\"] [1, 2]"},
        {"{{ 'a\\nb\\t\\'q\\' \\u00e9' }}", NULL, "a\nb\t'q' \xc3\xa9"},
        {"{{ 'con' 'cat' }} {{ +3 }} {{ -(2) }} {{ 1_000 }}", NULL, "concat 3 -2 1000"},
        {"{{ x }}|{{ x is defined }}|{{ y is defined }}", "{\"y\": null}", "|False|True"},
    };
    RUN(cases);
}

static void test_statements(void) {
    static const Case cases[] = {
        {"{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"a\": 0, \"b\": 1}", "B"},
        {"{% if a %}A{% elif b %}B{% else %}C{% endif %}", "{\"a\": 0, \"b\": 0}", "C"},
        {"{% for x in xs %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
         "{{ loop.first|int }}{{ loop.last|int }}{{ loop.length }} {% endfor %}",
         "{\"xs\": [\"a\", \"b\", \"c\"]}", "1032103 2121003 3210013 "},
        {"{% for x in xs %}{{ loop.previtem }}<{{ x }}>{{ loop.nextitem }} {% endfor %}",
         "{\"xs\": [1, 2, 3]}", "<1>2 1<2>3 2<3> "},
        {"{% for x in [] %}x{% else %}empty{% endfor %}", NULL, "empty"},
        {"{% for x in range(10) if x is odd %}{{ x }}/{{ loop.length }} {% endfor %}", NULL,
         "1/5 3/5 5/5 7/5 9/5 "},
        {"{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% "
         "endfor %}",
         "{\"d\": {\"b\": 1, \"a\": 2}}", "b=1;a=2;ba"},
        {"{% for x in range(5) %}{% if x == 1 %}{% continue %}{% endif %}{% if x == 3 %}{% break %}"
         "{% endif %}{{ x }}{% endfor %}",
         NULL, "02"},
        {"{% for i in range(2, 8, 3) %}{{ i }}{% endfor %}{% for i in range(3, 0, -1) %}{{ i "
         "}}{% endfor %}",
         NULL, "25321"},
        // set inside a loop does not leak out; a namespace carries values across
        {"{% set n = 0 %}{% set ns = namespace(c=0) %}{% for x in [1, 2, 3] %}{% set n = n + x %}"
         "{% set ns.c = ns.c + x %}{% endfor %}{{ n }} {{ ns.c }}",
         NULL, "0 6"},
        {"{% set a, b = 1, 2 %}{{ b }}{{ a }}{% set (c, d) = ['x', 'y'] %}{{ c }}{{ d }}", NULL,
         "21xy"},
        {"{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]", NULL, "[inner 2]"},
        {"{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}"
         "{{ greet('Ann') }} {{ greet('Bob', punct='?') }} {{ greet(name='Cy', punct='.') }}",
         NULL, "Hi Ann! Hi Bob? Hi Cy."},
        {"{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% "
         "endmacro %}"
         "{{ fact(5) }}",
         NULL, "120"},
        {"{% macro box(t) %}[{{ t }}|{{ caller() }}]{% endmacro %}"
         "{% for x in [1, 2] %}{% call box('b') %}in {{ x }}{% endcall %}{% endfor %}", NULL,
         "[b|in 1][b|in 2]"},
        {"{% macro each(xs) %}{% for x in xs %}{{ caller(x) }}{% endfor %}{% endmacro %}"
         "{% call(v) each([1, 2]) %}<{{ v }}>{% endcall %}", NULL, "<1><2>"},
        // a macro sees the scope it was defined in, even called from elsewhere
        {"{% set ns = namespace() %}{% for x in ['a'] %}{% macro m() %}{{ x }}{% endmacro %}"
         "{% set ns.m = m %}{% endfor %}{{ ns.m() }}", NULL, "a"},
        {"{% for m in messages %}{{ m.role }}{% if not loop.last %},{% endif %}{% endfor %}",
         "{\"messages\": [{\"role\": \"system\"}, {\"role\": \"user\"}]}", "system,user"},
    };
    RUN(cases);
}

static void test_filters(void) {
    static const Case cases[] = {
        {"[{{ '  x \\n'|trim }}] [{{ 'xxaxx'|trim('x') }}] [{{ ' y '|strip }}]", NULL,
         "[x] [a] [y]"},
        {"{{ 'hello wORLD'|upper }} {{ 'ABC'|lower }} {{ 'hello wORLD'|capitalize }} {{ "
         "'hello-big wORLD'|title }}",
         NULL, "HELLO WORLD abc Hello world Hello-Big World"},
        {"{{ [1, 2, 3]|length }} {{ 'héllo'|length }} {{ {'a': 1}|count }} {{ u|length }}", NULL,
         "3 5 1 0"},
        {"{{ u|default('d') }} {{ ''|default('e') }} {{ ''|default('f', true) }} {{ none|d('g') }}",
         NULL, "d  f None"},
        {"{{ [1, 2, 3]|join(', ') }} {{ ['a', 'b']|join }} {{ l|join('-', attribute='n') }}",
         "{\"l\": [{\"n\": 1}, {\"n\": 2}]}", "1, 2, 3 ab 1-2"},
        {"{{ [4, 5]|first }} {{ [4, 5]|last }} {{ 'abc'|first }} {{ 'abc'|list }} {{ {'k': "
         "1}|list }}",
         NULL, "4 5 a ['a', 'b', 'c'] ['k']"},
        {"{{ 42|string ~ '!' }} {{ '12'|int + 1 }} {{ '3.9'|int }} {{ 'x'|int(7) }} {{ 2|float "
         "}} {{ '2.5'|float }}",
         NULL, "42! 13 3 7 2.0 2.5"},
        {"{{ 'a-b-c'|replace('-', '+') }} {{ 'aaa'|replace('a', 'b', 2) }}", NULL, "a+b+c bba"},
        {"{% for k, v in {'x': 1, 'y': 2}|items %}{{ k }}{{ v }}{% endfor %}", NULL, "x1y2"},
        {"{{ ms|selectattr('role', 'equalto', 'user')|map(attribute='c')|join }}"
         " {{ ms|rejectattr('role', 'eq', 'user')|map(attribute='c')|list }} {{ "
         "ms|selectattr('flag')|length }}",
         "{\"ms\": [{\"role\": \"user\", \"c\": \"a\"}, {\"role\": \"bot\", \"c\": \"b\", "
         "\"flag\": true},"
         " {\"role\": \"user\", \"c\": \"d\"}]}",
         "ad ['b'] 1"},
        {"{{ ['a', 'B']|map('upper')|join }} {{ [1, 2, 1, 3]|unique|list }} {{ [1, "
         "2]|reverse|list }}"
         " {{ 'abc'|reverse }} {{ -3|abs }} {{ [1, 'x']|select('string')|list }}",
         NULL, "AB [1, 2, 3] [2, 1] cba 3 ['x']"},
        {"{{ d|tojson }}",
         "{\"d\": {\"a\": [1, 2.5, \"q\\\"\\n\\u00e9\"], \"b\": null, \"c\": true, \"e\": {}}}",
         "{\"a\": [1, 2.5, \"q\\\"\\n\xc3\xa9\"], \"b\": null, \"c\": true, \"e\": {}}"},
        {"{{ d|tojson(indent=2) }}", "{\"d\": {\"a\": [1, 2], \"b\": {}, \"c\": []}}",
         "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": {},\n  \"c\": []\n}"},
        {"{{ '<b>'|safe }} {{ 'x'|tojson }} {{ none|tojson }}", NULL, "<b> \"x\" null"},
        {"{{ d|tojson(separators=(',', ':'), sort_keys=true) }} {{ "
         "'e\u00e9\U0001F600'|tojson(ensure_ascii=true) }}",
         "{\"d\": {\"b\": 1, \"a\": [1, \"\u00e9\"]}}",
         "{\"a\":[1,\"\xc3\xa9\"],\"b\":1} \"e\\u00e9\\ud83d\\ude00\""},
        {"[{{ 'a\nb\n\nc'|indent(2) }}] [{{ 'a\nb'|indent(2, true) }}] [{{ 'x\n'|indent('>', "
         "blank=true) }}]",
         NULL, "[a\n  b\n\n  c] [  a\n  b] [x\n>]"},
    };
    RUN(cases);
}

static void test_tests_and_methods(void) {
    static const Case cases[] = {
        {"{{ u is undefined }} {{ none is none }} {{ 'x' is string }} {{ {} is mapping }} {{ [] "
         "is iterable }}"
         " {{ [] is sequence }} {{ 1.5 is number }} {{ 1 is integer }} {{ 1.0 is float }}",
         NULL, "True True True True True True True True True"},
        {"{{ true is true }} {{ 0 is false }} {{ false is false }} {{ 3 is odd }} {{ 4 is even "
         "}} {{ 9 is divisibleby 3 }}"
         " {{ 'a' is equalto 'a' }} {{ 2 is eq(3) }} {{ 'x' is not none }} {{ 'ab' is lower }} "
         "{{ 3 is gt 2 }}"
         " {{ 2 is in [1, 2] }}",
         NULL, "True False True True True True True False True True True True"},
        {"[{{ ' x '.strip() }}] [{{ 'xyx'.strip('x') }}] [{{ '\\n a'.lstrip() }}] [{{ 'a "
         "\\n'.rstrip() }}]"
         " [{{ '--a--'.lstrip('-') }}] [{{ '--a--'.rstrip('-') }}]",
         NULL, "[x] [y] [a] [a] [a--] [--a]"},
        {"{{ 'a,b,,c'.split(',') }} {{ ' a  b '.split() }} {{ 'a b c'.split(' ', 1) }} {{ "
         "'x</t>y'.split('</t>')[-1] }}",
         NULL, "['a', 'b', '', 'c'] ['a', 'b'] ['a', 'b c'] y"},
        {"{{ 'abc'.startswith('ab') }} {{ 'abc'.endswith('bc') }} {{ 'abc'.startswith(('x', "
         "'a')) }}"
         " {{ 'abc'.endswith('x') }}",
         NULL, "True True True False"},
        {"{{ 'aB'.upper() }} {{ 'aB'.lower() }} {{ 'hello wORLD2x'.title() }} {{ "
         "'aB'.capitalize() }}"
         " {{ 'a.b'.replace('.', '!') }} {{ ', '.join(['x', 'y']) }}",
         NULL, "AB ab Hello World2X Ab a!b x, y"},
        {"{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 0) }} {{ d.keys()|list }} {{ "
         "d.values()|list }}"
         " {{ d.items()|list }}",
         "{\"d\": {\"a\": 1, \"b\": \"x\"}}",
         "1 None 0 ['a', 'b'] [1, 'x'] [['a', 1], ['b', 'x']]"},
        {"{{ dict(a=1)['a'] }} {{ namespace(x=2).x }} {{ range(3)|list }} {{ strftime_now('%%') }}",
         NULL, "1 2 [0, 1, 2] %"},
    };
    RUN(cases);
}

// An error: rc -1, a one-line message with the position and the words given.
typedef struct {
    const char *src;
    const char *ctx;
    const char *pos;    // "line L column C"
    const char *what;
} ErrCase;

static void test_errors(void) {
    static const ErrCase cases[] = {
        // parse errors
        {"{{ x ", NULL, "line 1 column 1", "unclosed '{{' tag"},
        {"ab\n{% if x %}", NULL, "line 2 column 4", "'if' is never closed (expected 'endif')"},
        {"{% for x in y %}{% endif %}", NULL, "line 1 column 20", "unexpected 'endif' in for"},
        {"{% endfor %}", NULL, "line 1 column 4", "unexpected 'endfor'"},
        {"{% include 'x.j2' %}", NULL, "line 1 column 4", "unsupported construct 'include'"},
        {"{% extends 'b' %}", NULL, "line 1 column 4", "unsupported construct 'extends'"},
        {"{% for x in y recursive %}{% endfor %}", NULL, "line 1 column 15",
         "unsupported construct 'recursive'"},
        {"{% break %}", NULL, "line 1 column 4", "'break' outside a for loop"},
        {"{{ 'abc }}", NULL, "line 1 column 4", "unterminated string literal"},
        {"{# never closed", NULL, "line 1 column 1", "unclosed comment"},
        {"{{ 1 + }}", NULL, "line 1 column 8", "expected an expression, got '}}'"},
        {"{{ a b }}", NULL, "line 1 column 6", "expected '}}'"},
        {"x\n  {{ a $ b }}", NULL, "line 2 column 8", "unexpected character '$'"},
        {"{{ x|}}", NULL, "line 1 column 6", "expected a filter name"},
        {"{% set %}", NULL, "line 1 column 8", "expected a variable name"},
        {"{{ 99999999999999999999 }}", NULL, "line 1 column 4", "number literal out of range"},
        {"{{ '\\u12' }}", NULL, "line 1 column 5", "bad \\u escape"},
        {"{{ x[] }}", NULL, "line 1 column 5", "empty subscript"},
        {"{% frobnicate %}", NULL, "line 1 column 4", "unsupported construct 'frobnicate'"},
        {"{% call 1 %}{% endcall %}", NULL, "line 1 column 9", "a call block needs a macro call"},
        {"{% call foo() %}x{% endcall %}", NULL, "line 1 column 12",
         "calls a macro, not an undefined value"},
        // render errors
        {"{{ raise_exception('Roles must alternate') }}", NULL, "line 1 column 19",
         "Roles must alternate"},
        {"\n\n   {{ x|wordwrap }}", NULL, "line 3 column 9", "unknown filter 'wordwrap'"},
        {"{{ x is prime }}", NULL, "line 1 column 9", "unknown test 'prime'"},
        {"{{ 'a {}'.format(1) }}", NULL, "line 1 column 11", "unknown method 'format' of a string"},
        {"{{ [].append(1) }}", NULL, "line 1 column 7", "unknown method 'append' of a list"},
        {"{{ foo() }}", NULL, "line 1 column 7", "'foo' is undefined, not a function"},
        {"{{ 1 / 0 }}", NULL, "line 1 column 6", "division by zero"},
        {"{{ 1 + none }}", NULL, "line 1 column 6",
         "unsupported operand types for +: integer and none"},
        {"{{ 'a' + u }}", NULL, "line 1 column 8",
         "unsupported operand types for +: string and undefined"},
        {"{{ 'n: ' + 1 }}", NULL, "line 1 column 10",
         "unsupported operand types for +: string and integer"},
        {"{{ 1 < 'a' }}", NULL, "line 1 column 6", "cannot compare an integer with a string"},
        {"{% for x in 5 %}{% endfor %}", NULL, "line 1 column 13", "cannot loop over an integer"},
        {"{% set x.y = 1 %}", "{\"x\": {}}", "line 1 column 10", "only of a namespace()"},
        {"{% set a, b = [1] %}", NULL, "line 1 column 8", "cannot unpack 1 values into 2 names"},
        {"{{ 9223372036854775807 + 1 }}", NULL, "line 1 column 24", "integer overflow"},
        {"{{ range(10000000)|length }}", NULL, "line 1 column 9", "range of more than"},
        {"{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}", NULL, "column 20",
         "macro calls nested deeper than 64"},
        {"{% for a in range(100000) %}{% for b in range(100) %}{{ '' }}{% endfor %}{% endfor %}",
         NULL, "line 1 column", "the render took more than 2000000 steps"},
        {"{% set s = 'xxxxxxxxxxxxxxxx' %}{% for i in range(30) %}{% set s = s ~ s %}{% endfor %}",
         NULL, "line 1 column", "MiB"},
        {"{{ x|tojson }}", "{\"x\": 1}", NULL, NULL}, // a control: no error
        {"{% set ns = namespace(a=1) %}{% set ns.self = ns %}{{ ns|tojson }}", NULL,
         "line 1 column 58", "nested deeper than"},
        {"{{ x }}", "[1]", NULL, "the template's context must be a JSON object"},
    };
    char err[512], *out;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ErrCase *c = &cases[i];
        err[0] = 0;
        int rc = render_str(c->src, c->ctx, &out, err, sizeof err);
        free(out);
        if (!c->what) {
            CHECK_MSG(rc == 0, "template %s: %s", c->src, err);
            continue;
        }
        CHECK_MSG(rc == -1 && out == NULL, "template %s: rc %d, expected an error", c->src, rc);
        CHECK_MSG(strstr(err, c->what) != NULL, "template %s: error \"%s\" lacks \"%s\"", c->src,
                  err, c->what);
        if (c->pos)
            CHECK_MSG(strstr(err, c->pos) != NULL, "template %s: error \"%s\" lacks \"%s\"", c->src,
                      err, c->pos);
        CHECK_MSG(strchr(err, '\n') == NULL, "error is not one line: %s", err);
    }
}

// Deep nesting in the source is refused at parse time, not by running out of stack.
static void test_nesting_limit(void) {
    char err[512], *src = malloc(300000);   // the largest text below is 200,001 bytes
    JinjaTemplate *t;
    size_t k = 0;
    k += (size_t)sprintf(src, "{{ ");
    for (int i = 0; i < 50000; i++) src[k++] = '(';
    strcpy(src + k, "1 }}");
    CHECK_ERR(jinja_parse(src, &t, err, sizeof err), err, "nesting deeper than 200 levels",
              "line 1 column");
    k = 0;
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(src + k, "{%% if x %%}");
    src[k] = 0;
    CHECK_ERR(jinja_parse(src, &t, err, sizeof err), err, "nesting deeper than 200 levels", NULL);
    k = (size_t)sprintf(src, "{{ x");
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(src + k, "|trim");
    strcpy(src + k, " }}");
    CHECK(jinja_parse(src, &t, err, sizeof err) == 0);   // long flat chains parse...
    char *out;
    CHECK_ERR(jinja_render(t, NULL, &out, err, sizeof err), err,   // ...but render deep
              "nested deeper than 1000 levels while rendering", "line 1 column");
    jinja_free(t);
    k = (size_t)sprintf(src, "{{ 0");
    for (int i = 0; i < 20000; i++) k += (size_t)sprintf(src + k, " + 1");
    strcpy(src + k, " }}");
    CHECK(jinja_parse(src, &t, err, sizeof err) == 0);
    CHECK_ERR(jinja_render(t, NULL, &out, err, sizeof err), err, "nested deeper than 1000", NULL);
    jinja_free(t);
    free(src);
}

// A parsed template keeps nothing of the text it was parsed from (names, literals, operators).
static void test_template_owns_its_text(void) {
    static const char text[] = "{% set x = 'lit' %}{{ x ~ name }} {{ 3 is >= 2 }} {{ m.role }}"
                               "{% macro f(a=1) %}{{ a }}{% endmacro %}{{ f() }}{{ f(a=2) }}";
    char err[256], *src = malloc(sizeof text), *out;
    memcpy(src, text, sizeof text);
    JinjaTemplate *t;
    CHECK(jinja_parse(src, &t, err, sizeof err) == 0);
    memset(src, 'X', sizeof text - 1);   // freed only at the end: a store before free is dead
    cJSON *ctx = cJSON_Parse("{\"name\": \"!\", \"m\": {\"role\": \"user\"}}");
    CHECK(jinja_render(t, ctx, &out, err, sizeof err) == 0);
    CHECK_MSG(out && !strcmp(out, "lit! True user12"), "got %s", out ? out : err);
    free(out);
    free(src);
    cJSON_Delete(ctx);
    jinja_free(t);
}

static void test_chat_helpers(void) {
    char err[256];
    cJSON *cfg = cJSON_Parse(
        "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"},"
        " {\"name\": \"default\", \"template\": \"D\"}],"
        " \"bos_token\": {\"content\": \"<s>\", \"lstrip\": false}, \"eos_token\": \"</s>\"}");
    CHECK(!strcmp(jinja_chat_template(cfg, NULL, err, sizeof err), "D"));
    CHECK(!strcmp(jinja_chat_template(cfg, "O", err, sizeof err), "O"));
    cJSON *msgs = cJSON_Parse("[{\"role\": \"user\", \"content\": \"hi\"}]");
    cJSON *extra = cJSON_Parse("{\"eos_token\": \"<end>\", \"tools\": []}");
    cJSON *ctx = jinja_chat_context(cfg, msgs, 1, extra);
    JinjaTemplate *t;
    char *out;
    CHECK(jinja_parse(
              "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}{{ add_generation_prompt }}"
              "{{ tools|length }}",
              &t, err, sizeof err) == 0);
    CHECK(jinja_render(t, ctx, &out, err, sizeof err) == 0);
    CHECK_MSG(!strcmp(out, "<s>hi<end>True0"), "got %s", out);
    free(out);
    jinja_free(t);
    cJSON_Delete(ctx);
    cJSON_Delete(extra);
    cJSON_Delete(msgs);
    cJSON_Delete(cfg);
    cfg = cJSON_Parse("{\"bos_token\": null}");
    CHECK_MSG(jinja_chat_template(cfg, NULL, err, sizeof err) == NULL &&
                  strstr(err, "no 'chat_template'"),
              "%s", err);
    cJSON_Delete(cfg);
    cfg = cJSON_Parse("{\"chat_template\": 3}");
    CHECK_MSG(jinja_chat_template(cfg, NULL, err, sizeof err) == NULL &&
                  strstr(err, "'chat_template' is neither"),
              "%s", err);
    cJSON_Delete(cfg);
    cfg = cJSON_Parse("{\"chat_template\": [{\"name\": \"x\", \"template\": \"T\"}]}");
    CHECK_MSG(jinja_chat_template(cfg, NULL, err, sizeof err) == NULL && strstr(err, "\"default\""),
              "%s", err);
    cJSON_Delete(cfg);
}

int main(void) {
    test_case("jinja: real chat templates render as @huggingface/jinja does, byte for byte",
              test_reference_renderings);
    test_case("jinja: whitespace control, trim_blocks and lstrip_blocks", test_whitespace);
    test_case("jinja: expressions (arithmetic, strings, comparisons, indexing, slicing)",
              test_expressions);
    test_case("jinja: if/elif/else, for + loop + else + filter, set, namespace, macro",
              test_statements);
    test_case("jinja: filters", test_filters);
    test_case("jinja: tests, methods and global functions", test_tests_and_methods);
    test_case("jinja: every error names the construct at its line and column", test_errors);
    test_case("jinja: deep nesting is an error, not a stack overflow", test_nesting_limit);
    test_case("jinja: a parsed template keeps nothing of its source "
              "text", test_template_owns_its_text);
    test_case("jinja: chat template choice and context from tokenizer_config.json",
              test_chat_helpers);
    return test_summary();
}
