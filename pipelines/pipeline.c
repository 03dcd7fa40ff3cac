// Pipeline files: see pipeline.h.
#include "pipeline.h"
#include "util.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

int pipeline_error(Pipeline *p, int line, int col, const char *fmt, ...) {
    char msg[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(p->err, sizeof p->err, "%s:%d:%d: %s", p->file, line, col, msg);
    return -1;
}

static char *xstrdup(const char *s) { return STRDUP_CHECK(s ? s : ""); }   // NULL: ''

// Makes room for one more element in *arr (of *cap, n used); doubling.
static void *grow(void *arr, int *cap, int n, size_t size) {
    if (n < *cap) return arr;
    int c = *cap ? 2 * *cap : 8;
    *cap = c;
    return REALLOC_ARRAY(arr, (size_t)c, size);
}

static int mark_line(const yaml_node_t *n) { return (int)n->start_mark.line + 1; }
static int mark_col(const yaml_node_t *n) { return (int)n->start_mark.column + 1; }

// a, b and c in one new string
static char *join3(const char *a, const char *b, const char *c) {
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c);
    char *s = MALLOC_CHECK(la + lb + lc + 1);
    memcpy(s, a, la); memcpy(s + la, b, lb); memcpy(s + la + lb, c, lc + 1);
    return s;
}

static Str str_of(yaml_node_t *n) {
    Str s = {xstrdup((const char *)n->data.scalar.value), (int)n->start_mark.line + 1,
             (int)n->start_mark.column + 1};
    return s;
}

static int expect(Pipeline *p, yaml_node_t *n, yaml_node_type_t t, const char *what) {
    static const char *names[] = {"nothing", "a scalar", "a list", "a mapping"};
    if (n->type == t) return 0;
    return pipeline_error(p, (int)n->start_mark.line + 1, (int)n->start_mark.column + 1,
                          "%s must be %s, not %s", what, names[t], names[n->type]);
}

#define PIPELINE_MAX_NAME 100   // a stage name's length: its label "pipeline/NAME" must fit

static int valid_name(const char *s) {
    if (!*s || strlen(s) > PIPELINE_MAX_NAME) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

// Settings: a nested mapping flattened to dotted keys; scalar values as is, lists as "[a, b]".
static int parse_settings(Pipeline *p, Stage *st, yaml_document_t *d, yaml_node_t *n,
                          const char *prefix) {
    if (expect(p, n, YAML_MAPPING_NODE, "settings")) return -1;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key),
                    *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a settings key")) return -1;
        char key[512];
        if ((size_t)snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "",
                             (const char *)k->data.scalar.value) >= sizeof key)
            return pipeline_error(p, mark_line(k), mark_col(k),
                                  "a settings key longer than %d characters", (int)sizeof key - 1);
        if (v->type == YAML_MAPPING_NODE) {
            if (parse_settings(p, st, d, v, key)) return -1;
            continue;
        }
        if (st->n_settings == PIPELINE_MAX_ITEMS)
            return pipeline_error(p, mark_line(k), mark_col(k),
                                  "too many settings (more than %d in one stage)",
                                  PIPELINE_MAX_ITEMS);
        for (int i = 0; i < st->n_settings; i++)
            if (!strcmp(st->settings[i].key, key))
                return pipeline_error(p, (int)k->start_mark.line + 1, (int)k->start_mark.column + 1,
                                      "setting '%s' given twice (first at line %d)", key,
                                      st->settings[i].line);
        st->settings = grow(st->settings, &st->cap_settings, st->n_settings, sizeof *st->settings);
        Setting *s = &st->settings[st->n_settings++];
        s->value = NULL;
        s->key = xstrdup(key);
        s->line = (int)k->start_mark.line + 1; s->col = (int)k->start_mark.column + 1;
        if (v->type == YAML_SCALAR_NODE) s->value = xstrdup((const char *)v->data.scalar.value);
        else {   // a list of scalars, in flow style
            size_t cap = 64, len = 0;
            char *buf = MALLOC_CHECK(cap);
            buf[len++] = '[';
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                yaml_node_t *e = yaml_document_get_node(d, *it);
                if (expect(p, e, YAML_SCALAR_NODE, "a list item in settings")) {
                    free(buf);
                    return -1;
                }
                const char *t = (const char *)e->data.scalar.value;
                size_t need = len + strlen(t) * 2 + 8;
                if (need > cap) {
                    while (cap < need) cap *= 2;
                    buf = REALLOC_CHECK(buf, cap);
                }
                if (it > v->data.sequence.items.start) { buf[len++] = ','; buf[len++] = ' '; }
                buf[len++] = '"';
                for (; *t; t++) { if (*t == '"' || *t == '\\') buf[len++] = '\\'; buf[len++] = *t; }
                buf[len++] = '"';
            }
            buf[len++] = ']';
            buf[len] = 0;
            s->value = buf;
        }
    }
    return 0;
}

// A list of scalars (or one scalar, a list of one) into a new array *out of *count items.
static int parse_list(Pipeline *p, yaml_document_t *d, yaml_node_t *n, Str **out, int *count,
                      const char *what) {
    if (n->type == YAML_SCALAR_NODE) {
        *out = CALLOC_CHECK(1, sizeof(Str));
        (*out)[0] = str_of(n);
        *count = 1;
        return 0;
    }
    // *count follows the items stored, so that an error part-way leaves nothing unfreed
    if (expect(p, n, YAML_SEQUENCE_NODE, what)) return -1;
    ptrdiff_t items = n->data.sequence.items.top - n->data.sequence.items.start;
    if (items > PIPELINE_MAX_ITEMS)
        return pipeline_error(p, mark_line(n), mark_col(n),
                              "too many items in %s (%lld, at most %d)", what, (long long)items,
                              PIPELINE_MAX_ITEMS);
    *out = CALLOC_CHECK((size_t)items + 1, sizeof(Str));
    *count = 0;
    for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top;
         it++) {
        yaml_node_t *e = yaml_document_get_node(d, *it);
        if (expect(p, e, YAML_SCALAR_NODE, what)) return -1;
        (*out)[(*count)++] = str_of(e);
    }
    return 0;
}

// The stage keys that hold a list or a mapping, each a bit of parse_stage's `seen` (0: none).
static int stage_key_bit(const char *key) {
    static const char *const keys[] = {"needs", "args", "settings", "inputs", "outputs", "require"};
    for (int i = 0; i < 6; i++)
        if (!strcmp(key, keys[i])) return 1 << i;
    return 0;
}

// inputs or outputs: a list of paths (or one), none of them empty.
static int parse_paths(Pipeline *p, yaml_document_t *d, yaml_node_t *n, Str **out, int *count,
                       const char *what) {
    if (parse_list(p, d, n, out, count, what)) return -1;
    for (int i = 0; i < *count; i++)
        if (!(*out)[i].text[0])
            return pipeline_error(p, (*out)[i].line, (*out)[i].col, "an empty path in %s", what);
    return 0;
}

const char *pipeline_gate_op(GateOp op) {
    static const char *const names[] = {">=", ">", "<=", "<", "=="};
    return names[op];
}

// One condition "METRIC OP NUMBER" into g (its metric, operator and threshold).
static int parse_condition(Pipeline *p, Gate *g) {
    const char *t = g->cond.text;
    int line = g->cond.line, col = g->cond.col;
    const char *o = t + strcspn(t, "<>=!");
    const char *m = t;
    while (*m == ' ') m++;
    size_t ml = (size_t)(o - m);
    while (ml && m[ml - 1] == ' ') ml--;
    if (!*o || !ml || memchr(m, ' ', ml))
        return pipeline_error(p, line, col,
                              "malformed condition '%s': expected METRIC OP NUMBER, e.g. "
                              "\"valid/accuracy >= 0.6\"", t);
    size_t ol = strspn(o, "<>=!");
    static const char *const ops[] = {">=", ">", "<=", "<", "=="};
    int op = -1;
    for (int i = 0; i < 5; i++)
        if (strlen(ops[i]) == ol && !strncmp(o, ops[i], ol)) op = i;
    if (op < 0)
        return pipeline_error(p, line, col, "unknown operator '%.*s' in '%s' (>=, >, <=, <, ==)",
                              (int)ol, o, t);
    const char *num = o + ol;
    while (*num == ' ') num++;
    char *end;
    errno = 0;
    double v = strtod(num, &end);
    while (*end == ' ') end++;
    if (end == num || *end || errno || v != v || v - v != 0)
        return pipeline_error(p, line, col, "condition '%s': '%s' is not a finite number", t, num);
    g->metric = MALLOC_CHECK(ml + 1);
    memcpy(g->metric, m, ml);
    g->metric[ml] = 0;
    g->op = (GateOp)op;
    g->threshold = v;
    return 0;
}

// require: {STAGE: CONDITION or [CONDITION, ...]}; each condition checked as it is read, the
// stages when the references are resolved.
static int parse_require(Pipeline *p, Stage *st, yaml_document_t *d, yaml_node_t *n) {
    if (expect(p, n, YAML_MAPPING_NODE, "require")) return -1;
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key),
                    *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a require key (a stage)")) return -1;
        Str *conds = NULL;
        int nc = 0;
        if (parse_list(p, d, v, &conds, &nc, "require's conditions")) {
            for (int i = 0; i < nc; i++) free(conds[i].text);
            free(conds);
            return -1;
        }
        int rc = 0;
        if (nc == 0)
            rc = pipeline_error(p, mark_line(v), mark_col(v), "an empty list of conditions");
        if (!rc && st->n_gates + nc > PIPELINE_MAX_ITEMS)
            rc = pipeline_error(p, mark_line(k), mark_col(k), "too many conditions (more than %d)",
                                PIPELINE_MAX_ITEMS);
        if (!rc) st->gates = REALLOC_ARRAY(st->gates, (size_t)(st->n_gates + nc), sizeof(Gate));
        for (int i = 0; i < nc; i++) {
            if (rc) { free(conds[i].text); continue; }
            Gate *g = &st->gates[st->n_gates++];
            memset(g, 0, sizeof *g);
            g->stage = str_of(k);
            g->cond = conds[i];
            g->dep = -1;
            rc = parse_condition(p, g);
        }
        free(conds);
        if (rc) return -1;
    }
    return 0;
}

static int parse_stage(Pipeline *p, yaml_document_t *d, yaml_node_t *n) {
    if (expect(p, n, YAML_MAPPING_NODE, "a stage")) return -1;
    Stage *st = &p->stages[p->n_stages++];   // allocated for every item of `stages`
    memset(st, 0, sizeof *st);
    st->line = (int)n->start_mark.line + 1; st->col = (int)n->start_mark.column + 1;
    st->outcome = "not run";
    int seen = 0;   // needs, args, settings
    for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
        yaml_node_t *k = yaml_document_get_node(d, pr->key),
                    *v = yaml_document_get_node(d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a stage key")) return -1;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        Str *dst = !strcmp(key, "name")       ? &st->name
                   : !strcmp(key, "run")      ? &st->run
                   : !strcmp(key, "out")      ? &st->out
                   : !strcmp(key, "launcher") ? &st->launcher
                                              : NULL;
        if (dst) {
            if (dst->text) return pipeline_error(p, kl, kc, "stage key '%s' given twice", key);
            if (expect(p, v, YAML_SCALAR_NODE, key)) return -1;
            *dst = str_of(v);
        } else if (stage_key_bit(key)) {
            int bit = stage_key_bit(key);
            if (seen & bit) return pipeline_error(p, kl, kc, "stage key '%s' given twice", key);
            seen |= bit;
            if (bit == 1 && parse_list(p, d, v, &st->needs, &st->n_needs, "needs")) return -1;
            if (bit == 2 && parse_list(p, d, v, &st->args, &st->n_args, "args")) return -1;
            if (bit == 4 && parse_settings(p, st, d, v, "")) return -1;
            if (bit == 8 && parse_paths(p, d, v, &st->inputs, &st->n_inputs, "inputs")) return -1;
            if (bit == 16 && parse_paths(p, d, v, &st->outputs, &st->n_outputs, "outputs"))
                return -1;
            if (bit == 32 && parse_require(p, st, d, v)) return -1;
        } else {
            return pipeline_error(p, kl, kc,
                                  "unknown stage key '%s' (name, run, needs, settings, args, "
                                  "inputs, outputs, require, out, launcher)",
                                  key);
        }
    }
    if (!st->name.text) return pipeline_error(p, st->line, st->col, "a stage needs a name");
    if (!valid_name(st->name.text))
        return pipeline_error(p, st->name.line, st->name.col,
                              "stage name '%s' must use a-z, 0-9, '_' and '-' (at most %d of them)",
                              st->name.text, PIPELINE_MAX_NAME);
    // WORKSPACE/logs holds every stage's log; ${vars.out} would read as a variable
    if (!strcmp(st->name.text, PIPELINE_LOGS) || !strcmp(st->name.text, "vars"))
        return pipeline_error(p, st->name.line, st->name.col,
                              "stage name '%s' is reserved (the runner uses it); choose another",
                              st->name.text);
    if (!st->run.text)
        return pipeline_error(
            p, st->line, st->col,
            "stage '%s' needs 'run' (sft, ppo, dpo, reward SUBCOMMAND or rlhf SUBCOMMAND)",
            st->name.text);
    for (int i = 0; i < p->n_stages - 1; i++)
        if (!strcmp(p->stages[i].name.text, st->name.text))
            return pipeline_error(p, st->name.line, st->name.col,
                                  "stage name '%s' is used twice (first at line %d)", st->name.text,
                                  p->stages[i].name.line);
    return 0;
}

static void add_var(Pipeline *p, Str key, Str val) {
    int cap = p->cap_vars;
    p->var_keys = grow(p->var_keys, &cap, p->n_vars, sizeof(Str));
    cap = p->cap_vars;
    p->var_vals = grow(p->var_vals, &cap, p->n_vars, sizeof(Str));
    p->cap_vars = cap;
    p->var_keys[p->n_vars] = key;
    p->var_vals[p->n_vars++] = val;
}

// Reads the whole file (at most PIPELINE_MAX_FILE bytes) into a new buffer.
static unsigned char *read_file(Pipeline *p, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(p->err, sizeof p->err, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 4096, n = 0;
    unsigned char *buf = MALLOC_CHECK(cap);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            buf = REALLOC_CHECK(buf, cap);
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (n > PIPELINE_MAX_FILE) {
            snprintf(p->err, sizeof p->err, "%s: larger than %d bytes; not a pipeline file", path,
                     PIPELINE_MAX_FILE);
            break;
        }
        if (r == 0) {
            if (ferror(f)) snprintf(p->err, sizeof p->err, "%s: %s", path, strerror(errno));
            else { fclose(f); *len = n; return buf; }
            break;
        }
    }
    fclose(f);
    free(buf);
    return NULL;
}

// One anchor (&name) seen so far: how many nodes an alias to it repeats, and how deep it nests.
typedef struct { char *name; int64_t size; int height, open; } Anchor;
// One open mapping or list: the node count when it began, its deepest child, its anchor (or -1).
typedef struct { int64_t start; int child_height, anchor; } OpenNode;

#define EV_LINE(ev) ((int)(ev)->start_mark.line + 1)
#define EV_COL(ev)  ((int)(ev)->start_mark.column + 1)

// Walks the events of the file's first document before it is loaded: nesting deeper than
// PIPELINE_MAX_DEPTH, more than PIPELINE_MAX_NODES nodes once every alias is expanded, and an
// alias inside the node it names (a cycle) are errors at the event that crosses the limit, so
// neither the loader nor the walks over the tree meet them. Cost: one pass, linear in the text.
static int check_limits(Pipeline *p, const unsigned char *text, size_t n) {
    yaml_parser_t ps;
    yaml_event_t ev;
    if (!yaml_parser_initialize(&ps)) DIE("out of memory (libyaml)");
    yaml_parser_set_input_string(&ps, text, n);
    OpenNode open[PIPELINE_MAX_DEPTH + 1];
    int depth = 0, n_anchors = 0, cap_anchors = 0, rc = 0, done = 0;
    Anchor *anchors = NULL;
    int64_t total = 0;   // nodes so far, aliases expanded
    while (!done && !rc) {
        if (!yaml_parser_parse(&ps, &ev)) {
            rc = pipeline_error(p, (int)ps.problem_mark.line + 1, (int)ps.problem_mark.column + 1,
                                "YAML: %s%s%s", ps.problem ? ps.problem : "syntax error",
                                ps.context ? " " : "", ps.context ? ps.context : "");
            break;
        }
        const yaml_char_t *anchor = NULL;
        int height = -1;   // of a node that ends here
        switch (ev.type) {
        case YAML_SCALAR_EVENT:
            total++;
            height = 0;
            anchor = ev.data.scalar.anchor;
            break;
        case YAML_SEQUENCE_START_EVENT:
        case YAML_MAPPING_START_EVENT:
            anchor = ev.type == YAML_SEQUENCE_START_EVENT ? ev.data.sequence_start.anchor
                                                          : ev.data.mapping_start.anchor;
            if (depth == PIPELINE_MAX_DEPTH) {
                rc = pipeline_error(p, EV_LINE(&ev), EV_COL(&ev),
                                    "nesting deeper than %d levels (mappings and lists)",
                                    PIPELINE_MAX_DEPTH);
                break;
            }
            open[depth] = (OpenNode){total, 0, -1};
            total++;
            if (anchor) {
                anchors = grow(anchors, &cap_anchors, n_anchors, sizeof *anchors);
                anchors[n_anchors] = (Anchor){xstrdup((const char *)anchor), 0, 0, 1};
                open[depth].anchor = n_anchors++;
                anchor = NULL;
            }
            depth++;
            break;
        case YAML_SEQUENCE_END_EVENT:
        case YAML_MAPPING_END_EVENT: {
            OpenNode *o = &open[--depth];
            height = o->child_height + 1;
            if (o->anchor >= 0) {
                Anchor *a = &anchors[o->anchor];
                a->size = total - o->start; a->height = height; a->open = 0;
            }
            break;
        }
        case YAML_ALIAS_EVENT: {
            const char *name = (const char *)ev.data.alias.anchor;
            int i = n_anchors - 1;
            while (i >= 0 && strcmp(anchors[i].name, name)) i--;   // the latest definition counts
            if (i < 0) {
                rc = pipeline_error(p, EV_LINE(&ev), EV_COL(&ev),
                                    "alias '*%s' names no anchor defined before it", name);
                break;
            }
            if (anchors[i].open) {
                rc = pipeline_error(p, EV_LINE(&ev), EV_COL(&ev),
                                    "alias '*%s' is inside the node it names (a cycle)", name);
                break;
            }
            if (depth + anchors[i].height > PIPELINE_MAX_DEPTH) {
                rc = pipeline_error(p, EV_LINE(&ev), EV_COL(&ev),
                                    "alias '*%s' makes the nesting deeper than %d levels", name,
                                    PIPELINE_MAX_DEPTH);
                break;
            }
            total += anchors[i].size;
            height = anchors[i].height;
            break;
        }
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
            done = 1;   // the loader reads the first document only
            break;
        default:
            break;
        }
        if (!rc && total > PIPELINE_MAX_NODES)
            rc = pipeline_error(
                p, EV_LINE(&ev), EV_COL(&ev),
                "more than %d YAML nodes (each alias counts as every node it repeats)",
                PIPELINE_MAX_NODES);
        if (!rc && anchor) {   // a scalar's anchor
            anchors = grow(anchors, &cap_anchors, n_anchors, sizeof *anchors);
            anchors[n_anchors++] = (Anchor){xstrdup((const char *)anchor), 1, 0, 0};
        }
        if (!rc && height >= 0 && depth > 0 && open[depth - 1].child_height < height)
            open[depth - 1].child_height = height;
        yaml_event_delete(&ev);
    }
    for (int i = 0; i < n_anchors; i++) free(anchors[i].name);
    free(anchors);
    yaml_parser_delete(&ps);
    return rc;
}

static int parse_file(Pipeline *p, const char *path) {
    size_t len = 0;
    unsigned char *text = read_file(p, path, &len);
    if (!text) return -1;
    if (check_limits(p, text, len)) { free(text); return -1; }
    yaml_parser_t parser;
    yaml_document_t d;
    if (!yaml_parser_initialize(&parser)) DIE("out of memory (libyaml)");
    yaml_parser_set_input_string(&parser, text, len);
    int rc = -1;
    if (!yaml_parser_load(&parser, &d)) {
        pipeline_error(p, (int)parser.problem_mark.line + 1, (int)parser.problem_mark.column + 1,
                       "YAML: %s%s%s", parser.problem ? parser.problem : "syntax error",
                       parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        free(text);
        return -1;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    if (!root) { pipeline_error(p, 1, 1, "the pipeline file is empty"); goto done; }
    if (expect(p, root, YAML_MAPPING_NODE, "the top level")) goto done;
    yaml_node_t *stages = NULL;
    int top_seen = 0;
    for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top;
         pr++) {
        yaml_node_t *k = yaml_document_get_node(&d, pr->key),
                    *v = yaml_document_get_node(&d, pr->value);
        if (expect(p, k, YAML_SCALAR_NODE, "a key")) goto done;
        const char *key = (const char *)k->data.scalar.value;
        int kl = (int)k->start_mark.line + 1, kc = (int)k->start_mark.column + 1;
        static const char *const top_keys[] = {"workspace", "launcher", "seed", "vars", "stages"};
        for (int t = 0; t < 5; t++)
            if (!strcmp(key, top_keys[t])) {
                if (top_seen & (1 << t)) {
                    pipeline_error(p, kl, kc, "key '%s' given twice", key);
                    goto done;
                }
                top_seen |= 1 << t;
            }
        if (!strcmp(key, "workspace") || !strcmp(key, "launcher")) {
            if (expect(p, v, YAML_SCALAR_NODE, key)) goto done;
            *(!strcmp(key, "workspace") ? &p->workspace : &p->launcher) = str_of(v);
        } else if (!strcmp(key, "seed")) {
            if (expect(p, v, YAML_SCALAR_NODE, "seed")) goto done;
            char *end;
            errno = 0;
            long long s = strtoll((const char *)v->data.scalar.value, &end, 10);
            if (errno || *end || s < 0 || end == (char *)v->data.scalar.value) {
                pipeline_error(p, (int)v->start_mark.line + 1, (int)v->start_mark.column + 1,
                               "seed must be a non-negative integer, got '%s'",
                               v->data.scalar.value);
                goto done;
            }
            p->seed = s; p->has_seed = 1;
        } else if (!strcmp(key, "vars")) {
            if (expect(p, v, YAML_MAPPING_NODE, "vars")) goto done;
            for (yaml_node_pair_t *q = v->data.mapping.pairs.start; q < v->data.mapping.pairs.top;
                 q++) {
                yaml_node_t *vk = yaml_document_get_node(&d, q->key),
                            *vv = yaml_document_get_node(&d, q->value);
                if (expect(p, vk, YAML_SCALAR_NODE, "a vars key") ||
                    expect(p, vv, YAML_SCALAR_NODE, "a vars value"))
                    goto done;
                if (p->n_vars == PIPELINE_MAX_ITEMS) {
                    pipeline_error(p, kl, kc, "too many vars (more than %d)", PIPELINE_MAX_ITEMS);
                    goto done;
                }
                add_var(p, str_of(vk), str_of(vv));
            }
        } else if (!strcmp(key, "stages")) {
            if (expect(p, v, YAML_SEQUENCE_NODE, "stages")) goto done;
            stages = v;
        } else {
            pipeline_error(p, kl, kc, "unknown key '%s' (workspace, seed, launcher, vars, stages)",
                           key);
            goto done;
        }
    }
    if (!p->workspace.text) {
        pipeline_error(p, 1, 1, "the pipeline needs 'workspace' (a directory)");
        goto done;
    }
    if (!stages || stages->data.sequence.items.start == stages->data.sequence.items.top) {
        pipeline_error(p, 1, 1, "the pipeline needs a non-empty 'stages' list");
        goto done;
    }
    ptrdiff_t n_items = stages->data.sequence.items.top - stages->data.sequence.items.start;
    if (n_items > PIPELINE_MAX_STAGES) {
        pipeline_error(p, mark_line(stages), mark_col(stages), "too many stages (%lld, at most %d)",
                       (long long)n_items, PIPELINE_MAX_STAGES);
        goto done;
    }
    p->stages = CALLOC_CHECK((size_t)n_items, sizeof(Stage));
    for (yaml_node_item_t *it = stages->data.sequence.items.start;
         it < stages->data.sequence.items.top; it++)
        if (parse_stage(p, &d, yaml_document_get_node(&d, *it))) goto done;
    rc = 0;
done:
    yaml_document_delete(&d);
    yaml_parser_delete(&parser);
    free(text);
    return rc;
}

int pipeline_stage_index(const Pipeline *p, const char *name) {
    for (int i = 0; i < p->n_stages; i++) if (!strcmp(p->stages[i].name.text, name)) return i;
    return -1;
}

// Is stage `dep` among the stages `s` needs, directly or through others? A walk that visits
// each stage once (a diamond-shaped graph has exponentially many paths).
int pipeline_depends_on(const Pipeline *p, int s, int dep) {
    if (p->reach) return p->reach[(size_t)s * (size_t)p->n_stages + (size_t)dep];
    char *seen = CALLOC_CHECK((size_t)p->n_stages + 1, 1);
    int *todo = CALLOC_CHECK((size_t)p->n_stages + 1, sizeof(int));
    int n = 0, found = 0;
    todo[n++] = s;
    seen[s] = 1;
    while (n && !found) {
        const Stage *st = &p->stages[todo[--n]];
        for (int i = 0; i < st->n_needs && st->need_idx; i++) {
            int d = st->need_idx[i];
            if (d == dep) { found = 1; break; }
            if (!seen[d]) { seen[d] = 1; todo[n++] = d; }
        }
    }
    free(seen);
    free(todo);
    return found;
}

const char *pipeline_stage_out(const Pipeline *p, const Stage *st, char *buf, size_t n) {
    if (st->out.text) return st->out.text;   // already resolved
    snprintf(buf, n, "%s/%s", p->workspace.text, st->name.text);
    return buf;
}

// Expands ${workspace}, ${seed}, ${vars.NAME} and ${STAGE.out} in s (at line:col, for stage si).
static char *expand(Pipeline *p, int si, const Str *s) {
    size_t cap = strlen(s->text) + 256, len = 0;
    char *out = MALLOC_CHECK(cap);
    for (const char *c = s->text; *c;) {
        if (c[0] == '$' && c[1] == '{') {
            const char *e = strchr(c, '}');
            if (!e) {
                pipeline_error(p, s->line, s->col, "unterminated '${' in '%s'", s->text);
                free(out);
                return NULL;
            }
            char ref[256];
            snprintf(ref, sizeof ref, "%.*s", (int)(e - c - 2), c + 2);
            char val_buf[PATH_MAX + 64];
            const char *val = NULL;
            if (!strcmp(ref, "workspace")) val = p->workspace.text;
            else if (!strcmp(ref, "bin"))
                val = p->bindir; // the programs' directory (e.g. for a judge command)
            else if (!strcmp(ref, "seed")) {
                snprintf(val_buf, sizeof val_buf, "%lld", (long long)p->seed);
                val = val_buf;
            } else if (!strncmp(ref, "vars.", 5)) {
                for (int i = 0; i < p->n_vars; i++)
                    if (!strcmp(p->var_keys[i].text, ref + 5)) val = p->var_vals[i].text;
                if (!val) {
                    pipeline_error(p, s->line, s->col, "unknown variable '${%s}' (not in vars)",
                                   ref);
                    free(out);
                    return NULL;
                }
            } else {
                char *dot = strrchr(ref, '.');
                if (!dot || strcmp(dot, ".out")) {
                    pipeline_error(
                        p, s->line, s->col,
                        "unknown reference '${%s}' (workspace, seed, bin, vars.NAME or STAGE.out)",
                        ref);
                    free(out); return NULL;
                }
                *dot = 0;
                int d = pipeline_stage_index(p, ref);
                if (d < 0) {
                    pipeline_error(p, s->line, s->col, "'${%s.out}' names no stage", ref);
                    free(out);
                    return NULL;
                }
                if (si >= 0 && d != si && !pipeline_depends_on(p, si, d)) {
                    pipeline_error(
                        p, s->line, s->col,
                        "stage '%s' uses '${%s.out}' but does not need '%s' (add it to needs)",
                        p->stages[si].name.text, ref, ref);
                    free(out); return NULL;
                }
                val = pipeline_stage_out(p, &p->stages[d], val_buf, sizeof val_buf);
            }
            size_t vl = strlen(val);
            if (len + vl + 1 > cap) {
                cap = (len + vl + 1) * 2;
                out = REALLOC_CHECK(out, cap);
            }
            memcpy(out + len, val, vl);
            len += vl;
            c = e + 1;
        } else {
            if (len + 2 > cap) {
                cap *= 2;
                out = REALLOC_CHECK(out, cap);
            }
            out[len++] = *c++;
        }
    }
    out[len] = 0;
    return out;
}

static int topo_sort(Pipeline *p) {
    int state[PIPELINE_MAX_STAGES] = {0}, n = 0;   // 0 new, 1 on the stack, 2 done
    int stack[PIPELINE_MAX_STAGES], it[PIPELINE_MAX_STAGES];
    p->order = CALLOC_CHECK((size_t)p->n_stages + 1, sizeof(int));
    for (int root = 0; root < p->n_stages; root++) {
        if (state[root]) continue;
        int sp = 0;
        stack[sp] = root; it[sp] = 0; state[root] = 1;
        while (sp >= 0) {
            int s = stack[sp];
            if (it[sp] < p->stages[s].n_needs) {
                int d = p->stages[s].need_idx[it[sp]++];
                if (state[d] == 1) {
                    char path[2048] = "";
                    for (int i = 0; i <= sp; i++) {
                        if (path[0] || stack[i] == d) {
                            strncat(path, p->stages[stack[i]].name.text,
                                    sizeof path - strlen(path) - 8);
                            strcat(path, " -> ");
                        }
                    }
                    strncat(path, p->stages[d].name.text, sizeof path - strlen(path) - 1);
                    return pipeline_error(p, p->stages[s].line, p->stages[s].col,
                                          "the stages' needs form a cycle: %s", path);
                }
                if (state[d] == 0) { sp++; stack[sp] = d; it[sp] = 0; state[d] = 1; }
            } else {
                state[s] = 2;
                p->order[n++] = s;
                sp--;
            }
        }
    }
    return 0;
}

// Validation: references, program names, cycles; resolves each stage's argv.
// Each need by its stage's index; a need that names no stage, or the stage itself, is an error.
static int resolve_needs(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        st->need_idx = CALLOC_CHECK((size_t)st->n_needs + 1, sizeof(int));
        for (int i = 0; i < st->n_needs; i++) {
            int d = pipeline_stage_index(p, st->needs[i].text);
            if (d < 0)
                return pipeline_error(p, st->needs[i].line, st->needs[i].col,
                                      "stage '%s' needs '%s', which is not a stage", st->name.text,
                                      st->needs[i].text);
            if (d == s)
                return pipeline_error(p, st->needs[i].line, st->needs[i].col,
                                      "stage '%s' needs itself", st->name.text);
            st->need_idx[i] = d;
        }
    }
    return 0;
}

// Which stages each one needs, directly or not: in dependency order, each row is the union of
// its needs' rows (n^2 bytes; a reference or a selection asks it in constant time).
static void resolve_reach(Pipeline *p) {
    size_t ns = (size_t)p->n_stages;
    char *reach = CALLOC_CHECK(ns * ns + 1, 1);
    for (int k = 0; k < p->n_stages; k++) {
        size_t s = (size_t)p->order[k];
        const Stage *st = &p->stages[s];
        for (int i = 0; i < st->n_needs; i++) {
            size_t d = (size_t)st->need_idx[i];
            if (reach[s * ns + d]) continue;
            reach[s * ns + d] = 1;
            for (size_t j = 0; j < ns; j++) reach[s * ns + j] |= reach[d * ns + j];
        }
    }
    p->reach = reach;
}

// Outputs: the default ones first, then the given ones in dependency order, so that a
// ${STAGE.out} in an out always reads a final path.
static int resolve_outputs(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        if (!st->out.text)
            st->out = (Str){join3(p->workspace.text, "/", st->name.text), st->name.line, st->name.col};
        else st->out_given = 1;
    }
    for (int k = 0; k < p->n_stages; k++) {
        int s = p->order[k];
        Stage *st = &p->stages[s];
        if (!st->out_given) continue;
        char self[PIPELINE_MAX_NAME + 8];
        snprintf(self, sizeof self, "${%s.out}", st->name.text);
        if (strstr(st->out.text, self))
            return pipeline_error(p, st->out.line, st->out.col,
                                  "stage '%s': its out refers to itself", st->name.text);
        char *o = expand(p, s, &st->out);
        if (!o) return -1;
        if (!o[0]) {
            free(o);
            return pipeline_error(p, st->out.line, st->out.col, "stage '%s': out is empty",
                                  st->name.text);
        }
        free(st->out.text);
        st->out.text = o;
    }
    return 0;
}

// Appends one owned argument to the stage's command (argc follows, so an error part-way leaves
// nothing unfreed).
static void stage_push_arg(Stage *st, char *arg) { st->argv[st->argc++] = arg; }

// Checks the program words of a stage's run (sft | ppo | dpo | reward SUB | rlhf SUB...).
static int check_program(Pipeline *p, const Stage *st, char **words, int nw) {
    if (nw == 1 && !strcmp(words[0], "command")) {
        if (st->n_args == 0)
            return pipeline_error(p, st->run.line, st->run.col,
                                  "stage '%s': run: command needs args: [PROGRAM, ARG, ...]",
                                  st->name.text);
        return 0;
    }
    if (nw == 0 || !(!strcmp(words[0], "sft") || !strcmp(words[0], "ppo") ||
                     !strcmp(words[0], "dpo") || !strcmp(words[0], "reward") ||
                     !strcmp(words[0], "rlhf")))
        return pipeline_error(p, st->run.line, st->run.col,
                              "stage '%s': unknown program '%s' (sft, ppo, dpo, reward SUBCOMMAND, "
                              "rlhf SUBCOMMAND, command)",
                              st->name.text, st->run.text);
    if ((!strcmp(words[0], "reward") || !strcmp(words[0], "rlhf")) && nw < 2)
        return pipeline_error(p, st->run.line, st->run.col, "stage '%s': '%s' needs a subcommand",
                              st->name.text, words[0]);
    if (!strcmp(words[0], "rlhf") && !strcmp(words[1], "run"))
        return pipeline_error(p, st->run.line, st->run.col,
                              "stage '%s': a pipeline cannot run a pipeline", st->name.text);
    return 0;
}

// The stage's program and the start of its command: the program's path and its words.
static int stage_program(Pipeline *p, Stage *st) {
    char *runcopy = xstrdup(st->run.text);
    // every other character a word at most
    char **words = CALLOC_CHECK(strlen(runcopy) / 2 + 2, sizeof(char *));
    int nw = 0;
    for (char *tok = strtok(runcopy, " \t"); tok; tok = strtok(NULL, " \t")) words[nw++] = tok;
    int rc = check_program(p, st, words, nw);
    if (!rc) {
        st->program = xstrdup(words[0]);
        st->command = !strcmp(words[0], "command");
        st->config_program = !strcmp(words[0], "sft") || !strcmp(words[0], "ppo") ||
                             !strcmp(words[0], "dpo") ||
                             (!strcmp(words[0], "reward") && (!strcmp(words[1], "train")));
        if (st->n_settings && !st->config_program)
            rc = pipeline_error(p, st->settings[0].line, st->settings[0].col,
                                "stage '%s': '%s' takes args, not settings", st->name.text,
                                st->run.text);
    }
    if (!rc) {
        // the program's words, out.dir and workspace, each setting as --set K=V, the args, NULL
        st->argv = CALLOC_CHECK((size_t)nw + 5 + 2 * (size_t)st->n_settings + (size_t)st->n_args,
                                sizeof(char *));
        if (!st->command) stage_push_arg(st, join3(p->bindir, "/", words[0]));
        for (int i = 1; i < nw && !st->command; i++) stage_push_arg(st, xstrdup(words[i]));
    }
    free(runcopy);
    free(words);
    return rc;
}

// A config program's settings: out.dir and workspace unless given, then each as --set K=V.
static int stage_settings(Pipeline *p, int s, const char *out) {
    Stage *st = &p->stages[s];
    int has_out = 0, has_ws = 0;
    for (int i = 0; i < st->n_settings; i++) {
        has_out |= !strcmp(st->settings[i].key, "out.dir");
        has_ws |= !strcmp(st->settings[i].key, "workspace");
    }
    if (!has_out) {
        stage_push_arg(st, xstrdup("--set"));
        stage_push_arg(st, join3("out.dir=", out, ""));
    }
    if (!has_ws) {
        stage_push_arg(st, xstrdup("--set"));
        stage_push_arg(st, join3("workspace=", p->workspace.text, "/" PIPELINE_DB));
    }
    for (int i = 0; i < st->n_settings; i++) {
        Str v = {st->settings[i].value, st->settings[i].line, st->settings[i].col};
        char *ev = expand(p, s, &v);
        if (!ev) return -1;
        size_t n = strlen(st->settings[i].key) + strlen(ev) + 2;
        char *set = MALLOC_CHECK(n);
        snprintf(set, n, "%s=%s", st->settings[i].key, ev);
        free(ev);
        stage_push_arg(st, xstrdup("--set"));
        stage_push_arg(st, set);
    }
    return 0;
}

// Declared paths (inputs or outputs) with their references expanded, into a new array *out.
static int stage_paths(Pipeline *p, int s, const Str *paths, int n, char ***out) {
    *out = CALLOC_CHECK((size_t)n + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        if (!((*out)[i] = expand(p, s, &paths[i]))) return -1;
        if (!(*out)[i][0])
            return pipeline_error(p, paths[i].line, paths[i].col,
                                  "stage '%s': path '%s' is empty once expanded",
                                  p->stages[s].name.text, paths[i].text);
    }
    return 0;
}

// Each gate's stage must be one the gated stage needs, directly or not.
static int resolve_gates(Pipeline *p) {
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        for (int i = 0; i < st->n_gates; i++) {
            Gate *g = &st->gates[i];
            g->dep = pipeline_stage_index(p, g->stage.text);
            if (g->dep < 0)
                return pipeline_error(p, g->stage.line, g->stage.col,
                                      "stage '%s' requires a metric of '%s', which is not a stage",
                                      st->name.text, g->stage.text);
            if (!pipeline_depends_on(p, s, g->dep))
                return pipeline_error(p, g->stage.line, g->stage.col,
                                      "stage '%s' requires a metric of '%s' but does not need it "
                                      "(add it to needs)",
                                      st->name.text, g->stage.text);
        }
    }
    return 0;
}

// The stage's whole command: program, settings, args (each with its references expanded).
static int stage_command(Pipeline *p, int s) {
    Stage *st = &p->stages[s];
    char outbuf[PATH_MAX];
    const char *out = pipeline_stage_out(p, st, outbuf, sizeof outbuf);
    if (stage_program(p, st)) return -1;
    if (st->config_program && stage_settings(p, s, out)) return -1;
    for (int i = 0; i < st->n_args; i++) {
        char *ev = expand(p, s, &st->args[i]);
        if (!ev) return -1;
        stage_push_arg(st, ev);
    }
    st->argv[st->argc] = NULL;
    if (st->command && !st->argv[0][0])
        return pipeline_error(p, st->args[0].line, st->args[0].col,
                              "stage '%s': the command's program is empty", st->name.text);
    return stage_paths(p, s, st->inputs, st->n_inputs, &st->in_paths) ||
           stage_paths(p, s, st->outputs, st->n_outputs, &st->out_paths);
}

static int resolve(Pipeline *p) {
    if (resolve_needs(p) || topo_sort(p)) return -1;
    resolve_reach(p);
    if (resolve_gates(p) || resolve_outputs(p)) return -1;
    for (int s = 0; s < p->n_stages; s++)
        if (stage_command(p, s)) return -1;
    return 0;
}

// An override refused: its value freed, the message in p->err; returns -1.
__attribute__((format(printf, 3, 4))) static int refuse_override(Pipeline *p, char *value,
                                                                 const char *fmt, ...) {
    free(value);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof p->err, fmt, ap);
    va_end(ap);
    return -1;
}

static int apply_override(Pipeline *p, const char *kv) {
    const char *eq = strchr(kv, '=');
    if (!eq) { snprintf(p->err, sizeof p->err, "--set %s: expected KEY=VALUE", kv); return -1; }
    char key[512];
    if (eq - kv >= (ptrdiff_t)sizeof key) {
        snprintf(p->err, sizeof p->err, "--set: a key longer than %d characters",
                 (int)sizeof key - 1);
        return -1;
    }
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv), kv);
    const char *val = eq + 1;
    Str v = {xstrdup(val), 0, 0};
    if (!strcmp(key, "workspace")) { free(p->workspace.text); p->workspace = v; return 0; }
    if (!strcmp(key, "launcher")) { free(p->launcher.text); p->launcher = v; return 0; }
    if (!strcmp(key, "seed")) {
        char *end;
        long long s = strtoll(val, &end, 10);
        free(v.text);
        if (*end || s < 0 || end == val) {
            snprintf(p->err, sizeof p->err, "--set seed=%s: not a non-negative integer", val);
            return -1;
        }
        p->seed = s; p->has_seed = 1;
        return 0;
    }
    if (!strncmp(key, "vars.", 5)) {
        for (int i = 0; i < p->n_vars; i++)
            if (!strcmp(p->var_keys[i].text, key + 5)) {
                free(p->var_vals[i].text);
                p->var_vals[i] = v;
                return 0;
            }
        if (p->n_vars == PIPELINE_MAX_ITEMS)
            return refuse_override(p, v.text, "--set %s: too many vars (more than %d)", key,
                                   PIPELINE_MAX_ITEMS);
        add_var(p, (Str){xstrdup(key + 5), 0, 0}, v);
        return 0;
    }
    char *dot = strchr(key, '.');
    int s = -1;
    if (dot) { *dot = 0; s = pipeline_stage_index(p, key); }
    if (s < 0)
        return refuse_override(
            p, v.text,
            "--set %s: no such key or stage (workspace, seed, launcher, vars.NAME, STAGE.KEY)", kv);
    Stage *st = &p->stages[s];
    for (int i = 0; i < st->n_settings; i++)
        if (!strcmp(st->settings[i].key, dot + 1)) {
            free(st->settings[i].value);
            st->settings[i].value = v.text;
            return 0;
        }
    if (st->n_settings == PIPELINE_MAX_ITEMS)
        return refuse_override(p, v.text, "--set %s: too many settings (more than %d)", key,
                               PIPELINE_MAX_ITEMS);
    st->settings = grow(st->settings, &st->cap_settings, st->n_settings, sizeof *st->settings);
    st->settings[st->n_settings++] = (Setting){xstrdup(dot + 1), v.text, st->line, st->col};
    return 0;
}

void pipeline_free(Pipeline *p) {
    free(p->workspace.text); free(p->launcher.text);
    for (int i = 0; i < p->n_vars; i++) { free(p->var_keys[i].text); free(p->var_vals[i].text); }
    free(p->var_keys); free(p->var_vals);
    for (int s = 0; s < p->n_stages; s++) {
        Stage *st = &p->stages[s];
        free(st->name.text);
        free(st->run.text);
        free(st->out.text);
        free(st->launcher.text);
        free(st->program);
        for (int i = 0; i < st->n_needs; i++) free(st->needs[i].text);
        for (int i = 0; i < st->n_args; i++) free(st->args[i].text);
        for (int i = 0; i < st->n_settings; i++) {
            free(st->settings[i].key);
            free(st->settings[i].value);
        }
        for (int i = 0; i < st->argc; i++) free(st->argv[i]);
        for (int i = 0; i < st->n_inputs; i++) free(st->inputs[i].text);
        for (int i = 0; i < st->n_outputs; i++) free(st->outputs[i].text);
        for (int i = 0; st->in_paths && st->in_paths[i]; i++) free(st->in_paths[i]);
        for (int i = 0; st->out_paths && st->out_paths[i]; i++) free(st->out_paths[i]);
        for (int i = 0; i < st->n_gates; i++) {
            free(st->gates[i].stage.text);
            free(st->gates[i].cond.text);
            free(st->gates[i].metric);
        }
        free(st->inputs); free(st->outputs); free(st->in_paths); free(st->out_paths);
        free(st->gates);
        free(st->needs);
        free(st->args);
        free(st->settings);
        free(st->argv);
        free(st->need_idx);
        free(st->out_real);
    }
    free(p->stages); free(p->order); free(p->reach);
    p->stages = NULL; p->order = NULL; p->reach = NULL; p->var_keys = p->var_vals = NULL;
    p->n_stages = p->n_vars = 0;
}

// Appends name to the resolved directory path in *cur (len bytes used of cap), as a component.
static int path_push(char **cur, size_t *len, size_t *cap, const char *name, size_t n) {
    if (*len + n + 2 > *cap) {
        *cap = (*len + n + 2) * 2;
        *cur = REALLOC_CHECK(*cur, *cap);
    }
    if (*len > 1 || (*cur)[0] != '/') (*cur)[(*len)++] = '/';
    memcpy(*cur + *len, name, n);
    *len += n;
    (*cur)[*len] = 0;
    return 0;
}

char *pipeline_resolve_path(const char *path) {
    if (!path || !path[0]) { errno = ENOENT; return NULL; }
    char *cur;
    if (path[0] == '/') cur = xstrdup("/");
    else if (!(cur = realpath(".", NULL))) return NULL;
    size_t len = strlen(cur), cap = len + 1;
    int exists = 1;   // cur exists (and is resolved); once a component is missing, the rest is text
    for (const char *c = path; *c;) {
        while (*c == '/') c++;
        const char *e = c;
        while (*e && *e != '/') e++;
        size_t n = (size_t)(e - c);
        if (n == 0 || (n == 1 && c[0] == '.')) { c = e; continue; }
        if (n == 2 && c[0] == '.' &&
            c[1] == '.') { // cur has no links in it: its parent is its text's
            char *slash = strrchr(cur, '/');
            len = slash == cur ? 1 : (size_t)(slash - cur);
            cur[len] = 0;
            struct stat sb;
            exists = lstat(cur, &sb) == 0;
            c = e;
            continue;
        }
        path_push(&cur, &len, &cap, c, n);
        struct stat sb;
        if (exists && lstat(cur, &sb) == 0) {
            char *r = realpath(cur, NULL);   // a link followed to its end
            if (!r) { int en = errno; free(cur); errno = en; return NULL; }
            free(cur);
            cur = r;
            len = strlen(cur); cap = len + 1;
        } else {
            exists = 0;
        }
        c = e;
    }
    return cur;
}

int pipeline_path_within(const char *inner, const char *outer) {
    size_t n = strlen(outer);
    if (n == 1 && outer[0] == '/') return inner[0] == '/';
    return !strncmp(inner, outer, n) && (inner[n] == 0 || inner[n] == '/');
}

int pipeline_load(Pipeline *p, const char *path, const char *const *overrides, int n_overrides) {
    p->file = path;
    if (!p->has_seed) p->seed = 1234;
    if (parse_file(p, path)) return -1;
    for (int i = 0; i < n_overrides; i++) if (apply_override(p, overrides[i])) return -1;
    return resolve(p);
}
