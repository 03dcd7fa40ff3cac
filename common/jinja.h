// jinja: the subset of Jinja that Hugging Face chat templates use (tokenizer_config.json's
// `chat_template`), parsed once into a tree and rendered against a context of JSON values.
//
// Whitespace is handled as transformers renders chat templates: trim_blocks (the first newline
// after a {% %} or {# #} tag is dropped) and lstrip_blocks (spaces and tabs before a {% or {# that
// starts a line are dropped), plus the explicit {{- -}} {%- -%} {#- -#} markers; the source's
// CRLF and CR read as LF and one newline at its very end is dropped, as Jinja does.
//
// Supported: {{ }}, {% %}, {# #}; if/elif/else; for (one name or a tuple of names, `if` filter,
// else, loop.index/index0/revindex/revindex0/first/last/length/previtem/nextitem, break,
// continue); set (a name, a tuple of names, ns.attr, and the block form {% set x %}..{% endset %});
// macro with defaults (it sees the scope it was defined in), call blocks ({% call m() %} with
// caller(), parameters too); literals (strings, ints, floats, true/false/none, lists, tuples,
// dicts);
// operators + - * / // % ** ~, comparisons, and/or/not, in/not in, `a if c else b`, indexing,
// slicing ([a:b:c], [::-1]) and attribute access; filters abs, capitalize, count, default (d),
// first, float, indent, int, items, join, last, length, list, lower, map, reject, rejectattr,
// replace, reverse, safe, select, selectattr, string, strip, title, tojson (indent, separators,
// sort_keys, ensure_ascii), trim, unique, upper;
// tests boolean, callable, defined, divisibleby, eq/equalto/==, even, false, float, ge, gt, in,
// integer, iterable, le, lower, lt, mapping, ne, none, number, odd, sequence, string, true,
// undefined, upper;
// methods on strings (strip lstrip rstrip split startswith endswith upper lower title capitalize
// replace join), dicts (items get keys values); functions range, namespace, dict,
// raise_exception(msg) (the render fails with msg) and strftime_now(format) (local time).
// Anything else (include, extends, block, filter blocks, *args, str.format, list.append...) is an
// error naming the construct. Case changes (upper, lower, title, capitalize) change ASCII letters
// only. Values print as Python does (True, None, 1.0, ['a', 1], {'k': 'v'}); + joins two strings
// only (~ converts); undefined prints as nothing and an attribute of undefined is undefined.
//
// Limits (hostile templates end with an error, never a crash or a hang): 200 levels of nesting
// in the source, 1,000 levels of recursion while rendering (a chain like x|f|f|f... or 1+1+1...
// is deep though flat in the source), 64 nested macro calls, 2 million evaluation steps (a real
// chat template takes about 60 per message) and 256 MiB of values and output per render.
//
// Errors: jinja_parse and jinja_render return 0, or -1 with one line in err[errlen] (util_err;
// err may be NULL) that starts "line L column C: " (1-based; columns count characters) and
// names the construct, e.g. "line 3 column 12: unknown filter 'wordwrap'", or carries the
// template's own raise_exception message.
//
// Ownership: jinja_parse copies what it needs from text; the JinjaTemplate is the caller's, freed
// by jinja_free (NULL is fine). jinja_render only reads the template and the context, so one
// template may be rendered by several threads at once; *out is a malloc'd NUL-terminated string
// the caller frees (NULL after an error). No global state.
//
// Files: jinja_parse.c (lexer and parser), jinja.c (values, evaluation, statements, this API),
// jinja_lib.c (functions, methods, filters, tests), jinja_impl.h (what they share, private).
#ifndef JINJA_H
#define JINJA_H
#include <stddef.h>

#include <cjson/cJSON.h>

typedef struct JinjaTemplate JinjaTemplate;

// Parses text[0..strlen) into *out.
int  jinja_parse(const char *text, JinjaTemplate **out, char *err, size_t errlen);
// Renders tmpl with the variables of ctx (a JSON object, or NULL for none) into *out.
int  jinja_render(const JinjaTemplate *tmpl, const cJSON *ctx, char **out, char *err,
                  size_t errlen);
void jinja_free(JinjaTemplate *tmpl);

// The chat template to use: override when not NULL, else tokenizer_config.json's
// "chat_template" (a string, or a list of {"name", "template"} from which "default" is taken).
// The result points into override or config. NULL with a message naming the key when absent.
const char *jinja_chat_template(const cJSON *config, const char *override, char *err,
                                size_t errlen);
// A render context for a chat: {"messages": messages (copied), "add_generation_prompt",
// "bos_token" and "eos_token" from config (a string or an {"content": ...} object; "" when
// absent)} plus every member of extra (an object or NULL: tools, enable_thinking, ...), which
// wins over the others. The caller frees it with cJSON_Delete.
cJSON *jinja_chat_context(const cJSON *config, const cJSON *messages, int add_generation_prompt,
                          const cJSON *extra);
#endif
