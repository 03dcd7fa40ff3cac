// jinja: rendering a parsed chat template (jinja_parse.c makes the tree; jinja_lib.c holds the
// filters, tests, methods and functions). The renderer walks the tree with a chain of variable
// frames: the context's variables and top-level sets in the root frame, one frame per for loop
// (so a set inside a loop does not leak out: namespace() is for that) and per macro call.
#define _GNU_SOURCE   // memmem
#include <ctype.h>
#include <cjson/cJSON.h>
#include <math.h>

#include "jinja_impl.h"
#include "utf8.h"

int jinja_rerr(Render *R, const Node *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jinja_verr(R->err, R->errlen, at->line, at->col, fmt, ap);
    va_end(ap);
    return -1;
}

// Counts one evaluation step and checks the render's limits.
static int step(Render *R, const Node *at) {
    if (++R->steps > JINJA_MAX_STEPS)
        return jinja_rerr(R, at, "the render took more than %lld steps",
                          (long long)JINJA_MAX_STEPS);
    if (R->arena.used + R->out_bytes > JINJA_MAX_BYTES)
        return jinja_rerr(R, at, "the render used more than %zu MiB", JINJA_MAX_BYTES >> 20);
    return 0;
}

const char *jinja_kind_name(VKind k) {
    static const char *names[] = {"undefined", "none", "boolean", "integer", "float", "string",
                                  "list", "dict", "namespace", "macro", "function"};
    return names[k];
}

const char *jinja_kind_a(VKind k) {
    static const char *names[] = {"an undefined value", "none", "a boolean", "an integer",
                                  "a float", "a string", "a list", "a dict", "a namespace",
                                  "a macro", "a function"};
    return names[k];
}

List *jinja_list_new(Render *R, size_t cap) {
    List *l = arena_alloc(&R->arena, sizeof *l);
    l->n = 0;
    l->cap = cap ? cap : 4;
    l->v = arena_alloc(&R->arena, l->cap * sizeof *l->v);
    return l;
}

void jinja_list_add(Render *R, List *l, Value v) {
    if (l->n == l->cap) {
        Value *nv = arena_alloc(&R->arena, 2 * l->cap * sizeof *nv);
        memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
}


Dict *jinja_dict_new(Render *R) {
    Dict *d = arena_alloc(&R->arena, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

Value *jinja_dict_get(const Dict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].n == n && !memcmp(d->keys[i].s, s, n)) return &d->vals[i];
    return NULL;
}

void jinja_dict_set(Arena *a, Dict *d, const char *s, size_t n, Value v) {
    Value *old = jinja_dict_get(d, s, n);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? 2 * d->cap : 8;
        Str *k = arena_alloc(a, cap * sizeof *k);
        Value *vals = arena_alloc(a, cap * sizeof *vals);
        if (d->n) {
            memcpy(k, d->keys, d->n * sizeof *k);
            memcpy(vals, d->vals, d->n * sizeof *vals);
        }
        d->keys = k;
        d->vals = vals;
        d->cap = cap;
    }
    d->keys[d->n] = (Str){s, n};
    d->vals[d->n++] = v;
}


// The context's JSON as values (strings stay in the cJSON tree, which outlives the render).
static Value from_json(Render *R, const cJSON *j) {
    if (cJSON_IsString(j)) return v_str(j->valuestring, strlen(j->valuestring));
    if (cJSON_IsBool(j)) return v_bool(cJSON_IsTrue(j));
    if (cJSON_IsNumber(j)) {
        double x = j->valuedouble;
        if (x == floor(x) && fabs(x) < 9007199254740992.0) return v_int((int64_t)x);
        return v_float(x);
    }
    if (cJSON_IsArray(j)) {
        List *l = jinja_list_new(R, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) jinja_list_add(R, l, from_json(R, c));
        return v_list(l);
    }
    if (cJSON_IsObject(j)) {
        Dict *d = jinja_dict_new(R);
        for (const cJSON *c = j->child; c; c = c->next)
            if (c->string)
                jinja_dict_set(&R->arena, d, c->string, strlen(c->string), from_json(R, c));
        return v_dict(d);
    }
    return v_none();
}

int jinja_truthy(Value v) {
    switch (v.k) {
    case V_UNDEF: case V_NONE: return 0;
    case V_BOOL: case V_INT: return v.i != 0;
    case V_FLOAT: return v.f != 0;
    case V_STR: return v.str.n > 0;
    case V_LIST: return v.l->n > 0;
    case V_DICT: return v.d->n > 0;
    default: return 1;
    }
}


// Python's repr of a float: the shortest digits that read back the same, "1.0" for integers,
// exponent form outside 1e-4 <= |x| < 1e16.
static void buf_float(Buf *b, double x) {
    if (isnan(x)) { buf_str(b, "nan"); return; }
    if (isinf(x)) { buf_str(b, x < 0 ? "-inf" : "inf"); return; }
    char tmp[40];
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
        if (strtod(tmp, NULL) == x) break;
    }
    snprintf(tmp, sizeof tmp, "%.*e", prec - 1, x);
    char digits[24];
    size_t nd = 0;
    const char *p = tmp;
    if (*p == '-') { buf_add(b, "-", 1); p++; }
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p)) digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (exp >= -5 + 1 && exp < 16) {
        if (exp < 0) {
            buf_str(b, "0.");
            for (int i = 0; i < -exp - 1; i++) buf_add(b, "0", 1);
            buf_add(b, digits, nd);
        } else {
            for (int i = 0; i <= exp; i++) buf_add(b, i < (int)nd ? &digits[i] : "0", 1);
            buf_add(b, ".", 1);
            if ((int)nd > exp + 1) buf_add(b, digits + exp + 1, nd - (size_t)exp - 1);
            else buf_add(b, "0", 1);
        }
    } else {
        buf_add(b, digits, 1);
        if (nd > 1) {
            buf_add(b, ".", 1);
            buf_add(b, digits + 1, nd - 1);
        }
        buf_printf(b, "e%c%02d", exp < 0 ? '-' : '+', abs(exp));
    }
}

static int buf_repr(Render *R, const Node *at, Buf *b, Value v, int depth);

// The text a value prints as ({{ v }}, |string, ~).
int jinja_buf_value(Render *R, const Node *at, Buf *b, Value v) {
    switch (v.k) {
    case V_UNDEF: return 0;
    case V_STR: buf_add(b, v.str.s, v.str.n); return 0;
    default: return buf_repr(R, at, b, v, 0);
    }
}

static void buf_repr_str(Buf *b, const char *s, size_t n) {
    char q = memchr(s, '\'', n) && !memchr(s, '"', n) ? '"' : '\'';
    buf_add(b, &q, 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' || c == (unsigned char)q) { buf_add(b, "\\", 1); buf_add(b, s + i, 1); }
        else if (c == '\n') buf_str(b, "\\n");
        else if (c == '\r') buf_str(b, "\\r");
        else if (c == '\t') buf_str(b, "\\t");
        else if (c < 0x20 || c == 0x7f) buf_printf(b, "\\x%02x", c);
        else buf_add(b, s + i, 1);
    }
    buf_add(b, &q, 1);
}

// Python's repr, as lists and dicts print.
static int buf_repr(Render *R, const Node *at, Buf *b, Value v, int depth) {
    if (depth > JINJA_MAX_NEST)
        return jinja_rerr(R, at, "a value nested deeper than %d levels", JINJA_MAX_NEST);
    switch (v.k) {
    case V_UNDEF: return 0;
    case V_NONE: buf_str(b, "None"); return 0;
    case V_BOOL: buf_str(b, v.i ? "True" : "False"); return 0;
    case V_INT: buf_printf(b, "%lld", (long long)v.i); return 0;
    case V_FLOAT: buf_float(b, v.f); return 0;
    case V_STR: buf_repr_str(b, v.str.s, v.str.n); return 0;
    case V_LIST:
        buf_add(b, "[", 1);
        for (size_t i = 0; i < v.l->n; i++) {
            if (i) buf_str(b, ", ");
            if (buf_repr(R, at, b, v.l->v[i], depth + 1)) return -1;
        }
        buf_add(b, "]", 1);
        return 0;
    case V_DICT: case V_NS:
        buf_str(b, v.k == V_NS ? "<Namespace {" : "{");
        for (size_t i = 0; i < v.d->n; i++) {
            if (i) buf_str(b, ", ");
            buf_repr_str(b, v.d->keys[i].s, v.d->keys[i].n);
            buf_str(b, ": ");
            if (buf_repr(R, at, b, v.d->vals[i], depth + 1)) return -1;
        }
        buf_str(b, v.k == V_NS ? "}>" : "}");
        return 0;
    case V_MACRO: buf_str(b, "<macro>"); return 0;
    case V_FUNC: buf_str(b, "<function>"); return 0;
    }
    return 0;
}

static void buf_json_str(Buf *b, const char *s, size_t n, int ensure_ascii) {
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        uint32_t cp;
        int k;
        if (c == '"') buf_str(b, "\\\"");
        else if (c == '\\') buf_str(b, "\\\\");
        else if (c == '\n') buf_str(b, "\\n");
        else if (c == '\r') buf_str(b, "\\r");
        else if (c == '\t') buf_str(b, "\\t");
        else if (c == '\b') buf_str(b, "\\b");
        else if (c == '\f') buf_str(b, "\\f");
        else if (c < 0x20) buf_printf(b, "\\u%04x", c);
        else if (c >= 0x80 && ensure_ascii && (k = utf8_decode(s + i, n - i, &cp)) > 0) {
            if (cp >= 0x10000)   // a surrogate pair, as Python writes it
                buf_printf(b, "\\u%04x\\u%04x", 0xD800 + ((cp - 0x10000) >> 10),
                           0xDC00 + ((cp - 0x10000) & 0x3FF));
            else
                buf_printf(b, "\\u%04x", cp);
            i += (size_t)k - 1;
        } else {
            buf_add(b, s + i, 1);
        }
    }
    buf_add(b, "\"", 1);
}

static void buf_newline_indent(Buf *b, int indent, int depth) {
    buf_add(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++) buf_add(b, " ", 1);
}

typedef struct {
    Str key;
    Value val;
} Entry;

static int entry_cmp(const void *x, const void *y) {
    const Str *a = &((const Entry *)x)->key, *b = &((const Entry *)y)->key;
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

// json.dumps(v, ...) as transformers' tojson calls it: ensure_ascii off, no indent, separators
// ", " and ": " (with an indent: "," and ": ") unless given, keys in order unless sort_keys.
int jinja_buf_json(Render *R, const Node *at, Buf *b, Value v, const JsonStyle *st, int depth) {
    if (depth > JINJA_MAX_NEST)
        return jinja_rerr(R, at, "a value nested deeper than %d levels", JINJA_MAX_NEST);
    switch (v.k) {
    case V_UNDEF: case V_NONE: buf_str(b, "null"); return 0;
    case V_BOOL: buf_str(b, v.i ? "true" : "false"); return 0;
    case V_INT: buf_printf(b, "%lld", (long long)v.i); return 0;
    case V_FLOAT:
        if (isnan(v.f)) buf_str(b, "NaN");
        else if (isinf(v.f)) buf_str(b, v.f < 0 ? "-Infinity" : "Infinity");
        else buf_float(b, v.f);
        return 0;
    case V_STR: buf_json_str(b, v.str.s, v.str.n, st->ensure_ascii); return 0;
    case V_LIST: case V_DICT: case V_NS: {
        int islist = v.k == V_LIST;
        size_t n = islist ? v.l->n : v.d->n;
        Entry *e = NULL;
        if (!islist) {
            e = arena_alloc(&R->arena, (n ? n : 1) * sizeof *e);
            for (size_t i = 0; i < n; i++) e[i] = (Entry){v.d->keys[i], v.d->vals[i]};
            if (st->sort_keys && n > 1) qsort(e, n, sizeof *e, entry_cmp);
        }
        buf_add(b, islist ? "[" : "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_add(b, st->item_sep.s, st->item_sep.n);
            if (st->indent > 0) buf_newline_indent(b, st->indent, depth + 1);
            if (!islist) {
                buf_json_str(b, e[i].key.s, e[i].key.n, st->ensure_ascii);
                buf_add(b, st->key_sep.s, st->key_sep.n);
            }
            if (jinja_buf_json(R, at, b, islist ? v.l->v[i] : e[i].val, st, depth + 1)) return -1;
        }
        if (st->indent > 0 && n) buf_newline_indent(b, st->indent, depth);
        buf_add(b, islist ? "]" : "}", 1);
        return 0;
    }
    default: return jinja_rerr(R, at, "%s cannot be written as JSON", jinja_kind_a(v.k));
    }
}

// A finished Buf as a string value in the arena (the Buf is freed).
Value jinja_buf_take(Render *R, Buf *b) {
    Value v = v_str(arena_strndup(&R->arena, b->s ? b->s : "", b->n), b->n);
    free(b->s);
    return v;
}

// Deep equality as Python's ==: numbers by value (True == 1), lists and dicts item by item.
int jinja_val_eq(Value a, Value b, int depth) {
    if (depth > JINJA_MAX_NEST) return 0;
    if (is_num(a) && is_num(b))
        return num(a) == num(b) && (a.k == V_FLOAT || b.k == V_FLOAT || a.i == b.i);
    if (a.k != b.k) return 0;
    switch (a.k) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a.str.n == b.str.n && !memcmp(a.str.s, b.str.s, a.str.n);
    case V_LIST:
        if (a.l->n != b.l->n) return 0;
        for (size_t i = 0; i < a.l->n; i++)
            if (!jinja_val_eq(a.l->v[i], b.l->v[i], depth + 1)) return 0;
        return 1;
    case V_DICT: case V_NS:
        if (a.d->n != b.d->n) return 0;
        for (size_t i = 0; i < a.d->n; i++) {
            Value *o = jinja_dict_get(b.d, a.d->keys[i].s, a.d->keys[i].n);
            if (!o || !jinja_val_eq(a.d->vals[i], *o, depth + 1)) return 0;
        }
        return 1;
    case V_MACRO: return a.mac.node == b.mac.node && a.mac.env == b.mac.env;
    case V_FUNC: return a.i == b.i;
    default: return 0;
    }
}

// Code point count and the byte offset of code point i (i == count: the length).
static size_t utf8_count(const char *s, size_t n) {
    size_t c = 0;
    for (size_t i = 0; i < n; i++) c += ((unsigned char)s[i] & 0xC0) != 0x80;
    return c;
}

static size_t utf8_offset(const char *s, size_t n, size_t cp) {
    size_t c = 0, i = 0;
    for (; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80 && c++ == cp) return i;
    return n;
}

size_t jinja_value_length(Value v) {
    switch (v.k) {
    case V_STR: return utf8_count(v.str.s, v.str.n);
    case V_LIST: return v.l->n;
    case V_DICT: case V_NS: return v.d->n;
    default: return 0;
    }
}

// Python's slice indices for a sequence of n items: the positions it selects into idx (a
// caller's array of n), their count returned.
static size_t slice_indices(int64_t n, const Value *start, const Value *stop, int64_t stepv,
                            int64_t *idx) {
    int64_t lo, hi;
    if (stepv > 0) {
        lo = start ? start->i : 0;
        hi = stop ? stop->i : n;
        if (lo < 0) lo += n;
        if (hi < 0) hi += n;
        lo = lo < 0 ? 0 : lo > n ? n : lo;
        hi = hi < 0 ? 0 : hi > n ? n : hi;
    } else {
        lo = start ? start->i : n - 1;
        hi = stop ? stop->i : -1;
        if (start && lo < 0) lo += n;
        if (stop && hi < 0) hi += n;
        lo = lo < -1 ? -1 : lo > n - 1 ? n - 1 : lo;
        hi = hi < -1 ? -1 : hi > n - 1 ? n - 1 : hi;
    }
    size_t k = 0;
    for (int64_t i = lo; stepv > 0 ? i < hi : i > hi; i += stepv) idx[k++] = i;
    return k;
}

static int eval_args(Render *R, const NodeList *l, Frame *f, Args *a) {
    memset(a, 0, sizeof *a);
    if (!l->n) return 0;
    a->pos = arena_alloc(&R->arena, l->n * sizeof *a->pos);
    a->kwn = arena_alloc(&R->arena, l->n * sizeof *a->kwn);
    a->kwv = arena_alloc(&R->arena, l->n * sizeof *a->kwv);
    for (size_t i = 0; i < l->n; i++) {
        const Node *x = l->v[i];
        if (x->kind == N_KWARG) {
            a->kwn[a->nkw] = (Str){x->s, x->n};
            if (jinja_eval(R, x->a, f, &a->kwv[a->nkw++])) return -1;
        } else {
            if (a->nkw) return jinja_rerr(R, x, "a positional argument after a keyword argument");
            if (jinja_eval(R, x, f, &a->pos[a->npos++])) return -1;
        }
    }
    return 0;
}

// Argument i (positional) or name (keyword), NULL when not given.
const Value *jinja_arg(const Args *a, size_t i, const char *name) {
    if (i < a->npos) return &a->pos[i];
    for (size_t k = 0; name && k < a->nkw; k++)
        if (a->kwn[k].n == strlen(name) && !memcmp(a->kwn[k].s, name, a->kwn[k].n))
            return &a->kwv[k];
    return NULL;
}

int jinja_want_str(Render *R, const Node *at, const Value *v, const char *what) {
    if (!v || v->k != V_STR)
        return jinja_rerr(R, at, "%s expects a string, got %s", what,
                          v ? jinja_kind_a(v->k) : "nothing");
    return 0;
}

int jinja_want_int(Render *R, const Node *at, const Value *v, const char *what) {
    if (!v || (v->k != V_INT && v->k != V_BOOL))
        return jinja_rerr(R, at, "%s expects an integer, got %s", what,
                          v ? jinja_kind_a(v->k) : "nothing");
    return 0;
}

static int lookup(Render *R, const Node *n, Frame *f, Value *out) {
    for (; f; f = f->parent) {
        Value *v = jinja_dict_get(&f->vars, n->s, n->n);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    int fn = jinja_func_lookup(n->s, n->n);
    *out = fn < 0 ? v_undef() : (Value){.k = V_FUNC, .i = fn};
    return 0;
}

static int eval_index(Render *R, const Node *n, Value obj, Value idx, Value *out) {
    *out = v_undef();
    if ((obj.k == V_DICT || obj.k == V_NS) && idx.k == V_STR) {
        Value *v = jinja_dict_get(obj.d, idx.str.s, idx.str.n);
        if (v) *out = *v;
    } else if ((obj.k == V_LIST || obj.k == V_STR) && (idx.k == V_INT || idx.k == V_BOOL)) {
        int64_t len = (int64_t)jinja_value_length(obj), i = idx.i < 0 ? idx.i + len : idx.i;
        if (i < 0 || i >= len) return 0;
        if (obj.k == V_LIST) *out = obj.l->v[i];
        else {
            size_t a = utf8_offset(obj.str.s, obj.str.n, (size_t)i);
            size_t b = utf8_offset(obj.str.s, obj.str.n, (size_t)i + 1);
            *out = v_str(obj.str.s + a, b - a);
        }
    } else if ((obj.k == V_LIST || obj.k == V_STR) && idx.k != V_STR && idx.k != V_UNDEF) {
        return jinja_rerr(R, n, "%s index must be an integer, got %s", jinja_kind_a(obj.k),
                          jinja_kind_a(idx.k));
    }
    return 0;
}

static int eval_slice(Render *R, const Node *n, Frame *f, Value *out) {
    Value obj, parts[3];
    const Node *pn[3] = {n->b, n->c, n->d};
    if (jinja_eval(R, n->a, f, &obj)) return -1;
    for (int i = 0; i < 3; i++) {
        parts[i] = v_none();
        if (pn[i] && jinja_eval(R, pn[i], f, &parts[i])) return -1;
        if (parts[i].k != V_NONE && jinja_want_int(R, pn[i], &parts[i], "a slice")) return -1;
    }
    int64_t st = parts[2].k == V_NONE ? 1 : parts[2].i;
    if (st == 0) return jinja_rerr(R, n, "slice step cannot be zero");
    if (obj.k != V_LIST && obj.k != V_STR) {
        if (obj.k == V_UNDEF) { *out = obj; return 0; }
        return jinja_rerr(R, n, "cannot slice %s", jinja_kind_a(obj.k));
    }
    int64_t len = (int64_t)jinja_value_length(obj);
    int64_t *idx = arena_alloc(&R->arena, (size_t)(len + 1) * sizeof *idx);
    size_t k = slice_indices(len, parts[0].k == V_NONE ? NULL : &parts[0],
                             parts[1].k == V_NONE ? NULL : &parts[1], st, idx);
    if (obj.k == V_LIST) {
        List *l = jinja_list_new(R, k);
        for (size_t i = 0; i < k; i++) jinja_list_add(R, l, obj.l->v[idx[i]]);
        *out = v_list(l);
        return 0;
    }
    Buf b = {0};
    buf_add(&b, "", 0);
    for (size_t i = 0; i < k; i++) {
        size_t a = utf8_offset(obj.str.s, obj.str.n, (size_t)idx[i]);
        size_t e = utf8_offset(obj.str.s, obj.str.n, (size_t)idx[i] + 1);
        buf_add(&b, obj.str.s + a, e - a);
    }
    *out = jinja_buf_take(R, &b);
    return 0;
}

static int str_concat(Render *R, const Node *n, Value a, Value b, Value *out) {
    Buf buf = {0};
    buf_add(&buf, "", 0);
    if (jinja_buf_value(R, n, &buf, a) || jinja_buf_value(R, n, &buf, b)) {
        free(buf.s);
        return -1;
    }
    *out = jinja_buf_take(R, &buf);
    return 0;
}

static int arith(Render *R, const Node *n, int op, Value a, Value b, Value *out) {
    if (a.k == V_FLOAT || b.k == V_FLOAT || op == OP_DIV) {
        double x = num(a), y = num(b), r;
        if ((op == OP_DIV || op == OP_FLOORDIV || op == OP_MOD) && y == 0)
            return jinja_rerr(R, n, "division by zero");
        switch (op) {
        case OP_ADD: r = x + y; break;
        case OP_SUB: r = x - y; break;
        case OP_MUL: r = x * y; break;
        case OP_DIV: r = x / y; break;
        case OP_FLOORDIV: r = floor(x / y); break;
        case OP_MOD: r = fmod(x, y); if (r != 0 && (r < 0) != (y < 0)) r += y; break;
        default: r = pow(x, y); break;
        }
        *out = v_float(r);
        return 0;
    }
    int64_t x = a.i, y = b.i, r = 0;
    int bad = 0;
    switch (op) {
    case OP_ADD: bad = __builtin_add_overflow(x, y, &r); break;
    case OP_SUB: bad = __builtin_sub_overflow(x, y, &r); break;
    case OP_MUL: bad = __builtin_mul_overflow(x, y, &r); break;
    case OP_FLOORDIV: case OP_MOD:
        if (y == 0) return jinja_rerr(R, n, "division by zero");
        if (x == INT64_MIN && y == -1) { bad = 1; break; }
        r = op == OP_FLOORDIV ? x / y : x % y;
        if (op == OP_FLOORDIV && (x % y != 0) && ((x < 0) != (y < 0))) r--;
        if (op == OP_MOD && r != 0 && ((r < 0) != (y < 0))) r += y;
        break;
    default:   // OP_POW
        if (y < 0) { *out = v_float(pow((double)x, (double)y)); return 0; }
        r = 1;
        for (int64_t i = 0; i < y && !bad; i++) {
            bad = __builtin_mul_overflow(r, x, &r);
            if (r == 0 || r == 1) break;
            if (r == -1 && i + 1 < y) { r = ((y - i - 1) % 2) ? -r : r; break; }
        }
    }
    if (bad) return jinja_rerr(R, n, "integer overflow");
    *out = v_int(r);
    return 0;
}

static int contains(Render *R, const Node *n, Value item, Value box, int *res) {
    *res = 0;
    if (box.k == V_UNDEF) return 0;
    if (box.k == V_STR) {
        if (item.k != V_STR)
            return jinja_rerr(R, n, "'in <string>' needs a string on the left, got %s",
                              jinja_kind_a(item.k));
        *res = item.str.n == 0 || memmem(box.str.s, box.str.n, item.str.s, item.str.n) != NULL;
        return 0;
    }
    if (box.k == V_LIST) {
        for (size_t i = 0; i < box.l->n && !*res; i++) *res = jinja_val_eq(item, box.l->v[i], 0);
        return 0;
    }
    if (box.k == V_DICT || box.k == V_NS) {
        *res = item.k == V_STR && jinja_dict_get(box.d, item.str.s, item.str.n) != NULL;
        return 0;
    }
    return jinja_rerr(R, n, "'in' needs a string, list or dict on the right, got %s",
                      jinja_kind_a(box.k));
}

static int compare(Render *R, const Node *n, int op, Value a, Value b, Value *out) {
    int c;
    if (is_num(a) && is_num(b)) {
        double x = num(a), y = num(b);
        if (a.k != V_FLOAT && b.k != V_FLOAT) c = a.i < b.i ? -1 : a.i > b.i;
        else c = x < y ? -1 : x > y;
    } else if (a.k == V_STR && b.k == V_STR) {
        size_t m = a.str.n < b.str.n ? a.str.n : b.str.n;
        c = memcmp(a.str.s, b.str.s, m);
        if (!c) c = a.str.n < b.str.n ? -1 : a.str.n > b.str.n;
    } else {
        return jinja_rerr(R, n, "cannot compare %s with %s", jinja_kind_a(a.k),
                          jinja_kind_a(b.k));
    }
    *out = v_bool(op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0);
    return 0;
}

int jinja_binop(Render *R, const Node *n, Value a, Value b, Value *out) {
    int op = n->op, r;
    switch (op) {
    case OP_EQ: *out = v_bool(jinja_val_eq(a, b, 0)); return 0;
    case OP_NE: *out = v_bool(!jinja_val_eq(a, b, 0)); return 0;
    case OP_IN: case OP_NOTIN:
        if (contains(R, n, a, b, &r)) return -1;
        *out = v_bool(op == OP_IN ? r : !r);
        return 0;
    case OP_LT: case OP_LE: case OP_GT: case OP_GE: return compare(R, n, op, a, b, out);
    case OP_CONCAT: return str_concat(R, n, a, b, out);
    default: break;
    }
    if (is_num(a) && is_num(b)) return arith(R, n, op, a, b, out);
    if (op == OP_ADD && a.k == V_LIST && b.k == V_LIST) {
        List *l = jinja_list_new(R, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; i++) jinja_list_add(R, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) jinja_list_add(R, l, b.l->v[i]);
        *out = v_list(l);
        return 0;
    }
    if (op == OP_ADD && a.k == V_STR && b.k == V_STR)   // as Python: str + 1 is an error (use ~)
        return str_concat(R, n, a, b, out);
    if (op == OP_MUL && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
        Value s = a.k == V_STR ? a : b;
        int64_t k = a.k == V_INT ? a.i : b.i;
        if (k > 0 && s.str.n * (uint64_t)k > JINJA_MAX_BYTES)
            return jinja_rerr(R, n, "string repetition too long");
        Buf buf = {0};
        buf_add(&buf, "", 0);
        for (int64_t i = 0; i < k; i++) buf_add(&buf, s.str.s, s.str.n);
        *out = jinja_buf_take(R, &buf);
        return 0;
    }
    static const char *opnames[] = {"+", "-", "*", "/", "//", "%", "**"};
    return jinja_rerr(R, n, "unsupported operand types for %s: %s and %s", opnames[op],
                      jinja_kind_name(a.k), jinja_kind_name(b.k));
}


static int eval_call(Render *R, const Node *n, Frame *f, Value *out) {
    Args a;
    const Node *c = n->a;
    if (c->kind == N_ATTR) {
        Value obj;
        if (jinja_eval(R, c->a, f, &obj) || eval_args(R, &n->list, f, &a)) return -1;
        Value *member =
            (obj.k == V_DICT || obj.k == V_NS) ? jinja_dict_get(obj.d, c->s, c->n) : NULL;
        if (member && (member->k == V_MACRO || member->k == V_FUNC))
            return jinja_call_value(R, n, *member, &a, f, out);
        int found = 0;
        if (jinja_call_method(R, c, obj, &a, out, &found)) return -1;
        if (found) return 0;
        return jinja_rerr(R, c, "unknown method '%.*s' of %s", (int)c->n, c->s,
                          jinja_kind_a(obj.k));
    }
    Value callee;
    if (jinja_eval(R, c, f, &callee) || eval_args(R, &n->list, f, &a)) return -1;
    return jinja_call_value(R, n, callee, &a, f, out);
}

static int eval_node(Render *R, const Node *n, Frame *f, Value *out) {
    Value a, b;
    switch (n->kind) {
    case N_STR: *out = v_str(n->s, n->n); return 0;
    case N_INT: *out = v_int(n->i); return 0;
    case N_FLOAT: *out = v_float(n->f); return 0;
    case N_BOOL: *out = v_bool((int)n->i); return 0;
    case N_NONE: *out = v_none(); return 0;
    case N_LIST: {
        List *l = jinja_list_new(R, n->list.n);
        for (size_t i = 0; i < n->list.n; i++) {
            if (jinja_eval(R, n->list.v[i], f, &a)) return -1;
            jinja_list_add(R, l, a);
        }
        *out = v_list(l);
        return 0;
    }
    case N_DICT: {
        Dict *d = jinja_dict_new(R);
        for (size_t i = 0; i < n->list.n; i++) {
            const Node *p = n->list.v[i];
            if (jinja_eval(R, p->a, f, &a) || jinja_eval(R, p->b, f, &b)) return -1;
            if (a.k != V_STR)
                return jinja_rerr(R, p, "dict keys must be strings, got %s", jinja_kind_a(a.k));
            jinja_dict_set(&R->arena, d, a.str.s, a.str.n, b);
        }
        *out = v_dict(d);
        return 0;
    }
    case N_NAME: return lookup(R, n, f, out);
    case N_ATTR:
        if (jinja_eval(R, n->a, f, &a)) return -1;
        *out = v_undef();
        if (a.k == V_DICT || a.k == V_NS) {
            Value *v = jinja_dict_get(a.d, n->s, n->n);
            if (v) *out = *v;
        }
        return 0;
    case N_INDEX:
        if (jinja_eval(R, n->a, f, &a) || jinja_eval(R, n->b, f, &b)) return -1;
        return eval_index(R, n, a, b, out);
    case N_SLICE: return eval_slice(R, n, f, out);
    case N_CALL: return eval_call(R, n, f, out);
    case N_FILTER: {
        Args args;
        if (jinja_eval(R, n->a, f, &a) || eval_args(R, &n->list, f, &args)) return -1;
        return jinja_apply_filter(R, n, n->s, n->n, a, &args, f, out);
    }
    case N_TEST: {
        Args args;
        int res;
        if (jinja_eval(R, n->a, f, &a) || eval_args(R, &n->list, f, &args)) return -1;
        if (jinja_apply_test(R, n, n->s, n->n, a, &args, f, &res)) return -1;
        *out = v_bool(n->op ? !res : res);
        return 0;
    }
    case N_BIN:
        if (jinja_eval(R, n->a, f, &a) || jinja_eval(R, n->b, f, &b)) return -1;
        return jinja_binop(R, n, a, b, out);
    case N_NOT:
        if (jinja_eval(R, n->a, f, &a)) return -1;
        *out = v_bool(!jinja_truthy(a));
        return 0;
    case N_NEG: case N_POS:
        if (jinja_eval(R, n->a, f, &a)) return -1;
        if (!is_num(a))
            return jinja_rerr(R, n, "bad operand type for unary %c: %s",
                              n->kind == N_NEG ? '-' : '+', jinja_kind_name(a.k));
        if (n->kind == N_POS) *out = a.k == V_BOOL ? v_int(a.i) : a;
        else if (a.k == V_FLOAT) *out = v_float(-a.f);
        else if (a.i == INT64_MIN) return jinja_rerr(R, n, "integer overflow");
        else *out = v_int(-a.i);
        return 0;
    case N_AND: case N_OR:
        if (jinja_eval(R, n->a, f, &a)) return -1;
        if (jinja_truthy(a) == (n->kind == N_OR)) { *out = a; return 0; }
        return jinja_eval(R, n->b, f, out);
    case N_COND:
        if (jinja_eval(R, n->b, f, &a)) return -1;
        if (jinja_truthy(a)) return jinja_eval(R, n->a, f, out);
        if (n->c) return jinja_eval(R, n->c, f, out);
        *out = v_undef();
        return 0;
    default:
        return jinja_rerr(R, n, "not an expression");
    }
}
// ---------------------------------------------------------------------------------------------
// Statements.

static int bind(Render *R, const Node *target, Value v, Frame *f) {
    if (target->kind == N_NAME) {
        jinja_dict_set(&R->arena, &f->vars, target->s, target->n, v);
        return 0;
    }
    if (target->kind == N_ATTR) {
        Value ns;
        if (lookup(R, target->a, f, &ns)) return -1;
        if (ns.k != V_NS)
            return jinja_rerr(R, target,
                              "cannot set attribute '%s' of %s (only of a namespace())",
                              target->s, jinja_kind_a(ns.k));
        jinja_dict_set(&R->arena, ns.d, target->s, target->n, v);
        return 0;
    }
    if (v.k != V_LIST)
        return jinja_rerr(R, target, "cannot unpack %s into %zu names", jinja_kind_a(v.k),
                          target->list.n);
    if (v.l->n != target->list.n)
        return jinja_rerr(R, target, "cannot unpack %zu values into %zu names", v.l->n,
                          target->list.n);
    for (size_t i = 0; i < v.l->n; i++)
        if (bind(R, target->list.v[i], v.l->v[i], f)) return -1;
    return 0;
}

static int emit(Render *R, Buf *out, const char *s, size_t n) {
    buf_add(out, s, n);
    R->out_bytes += n;
    return 0;
}

// The loop variable: one dict per loop, updated in place each iteration (as Jinja's LoopContext
// is one object). Its keys are set once, in this order, then only the values change: a long loop
// neither allocates nor searches per item.
static void loop_info(Render *R, Dict *d, const List *items, size_t i) {
    static const char *const keys[] = {"index", "index0", "revindex", "revindex0", "first", "last",
                                       "length", "depth", "depth0", "previtem", "nextitem"};
    int64_t len = (int64_t)items->n, k = (int64_t)i;
    Value vals[] = {v_int(k + 1),
                    v_int(k),
                    v_int(len - k),
                    v_int(len - k - 1),
                    v_bool(k == 0),
                    v_bool(k == len - 1),
                    v_int(len),
                    v_int(1),
                    v_int(0),
                    i > 0 ? items->v[i - 1] : v_undef(),
                    i + 1 < items->n ? items->v[i + 1] : v_undef()};
    size_t n = sizeof keys / sizeof keys[0];
    for (size_t j = 0; j < n; j++) {
        if (d->n == n) d->vals[j] = vals[j];
        else jinja_dict_set(&R->arena, d, keys[j], strlen(keys[j]), vals[j]);
    }
}

static int render_for(Render *R, const Node *n, Frame *parent, Buf *out) {
    Value it, items;
    if (jinja_eval(R, n->b, parent, &it)) return -1;
    if (it.k == V_NONE ||
        (it.k != V_LIST && it.k != V_DICT && it.k != V_NS && it.k != V_STR && it.k != V_UNDEF))
        return jinja_rerr(R, n->b, "cannot loop over %s", jinja_kind_a(it.k));
    if (jinja_value_to_list(R, n->b, it, "for", &items)) return -1;
    Frame *fr = jinja_frame_new(R, parent);
    List *sel = items.l;
    if (n->c) {   // the loop's `if`: items are selected before the loop (loop.length counts them)
        sel = jinja_list_new(R, items.l->n);
        for (size_t i = 0; i < items.l->n; i++) {
            Value keep;
            if (bind(R, n->a, items.l->v[i], fr) || jinja_eval(R, n->c, fr, &keep)) return -1;
            if (jinja_truthy(keep)) jinja_list_add(R, sel, items.l->v[i]);
        }
    }
    Dict *loop = jinja_dict_new(R);
    jinja_dict_set(&R->arena, &fr->vars, "loop", 4, v_dict(loop));
    for (size_t i = 0; i < sel->n; i++) {
        loop_info(R, loop, sel, i);
        if (bind(R, n->a, sel->v[i], fr)) return -1;
        int rc = jinja_render_body(R, &n->list, fr, out);
        if (rc < 0) return -1;
        if (rc == FLOW_BREAK) break;
    }
    if (!sel->n) return jinja_render_body(R, &n->list2, parent, out) < 0 ? -1 : 0;
    return 0;
}

Frame *jinja_frame_new(Render *R, Frame *parent) {
    Frame *f = arena_alloc(&R->arena, sizeof *f);
    memset(f, 0, sizeof *f);
    f->parent = parent;
    return f;
}

// {% call m(args) %}body{% endcall %}: m's output, with `caller` rendering body here.
static int render_call_block(Render *R, const Node *n, Frame *f, Buf *out) {
    Value callee, res;
    Args a;
    if (jinja_eval(R, n->a->a, f, &callee) || eval_args(R, &n->a->list, f, &a)) return -1;
    if (callee.k != V_MACRO)
        return jinja_rerr(R, n->a, "a call block calls a macro, not %s",
                          jinja_kind_a(callee.k));
    Value caller = {.k = V_MACRO, .mac = {n, f}};
    if (jinja_call_macro(R, n->a, callee, &a, &caller, &res)) return -1;
    return emit(R, out, res.str.s, res.str.n);
}

static int render_stmt(Render *R, const Node *n, Frame *f, Buf *out) {
    Value v;
    switch (n->kind) {
    case N_TEXT: return emit(R, out, n->s, n->n);
    case N_OUTPUT: {
        if (jinja_eval(R, n->a, f, &v)) return -1;
        size_t before = out->n;
        if (jinja_buf_value(R, n->a, out, v)) return -1;
        R->out_bytes += out->n - before;
        return 0;
    }
    case N_IF:
        if (jinja_eval(R, n->a, f, &v)) return -1;
        return jinja_render_body(R, jinja_truthy(v) ? &n->list : &n->list2, f, out);
    case N_FOR: return render_for(R, n, f, out);
    case N_SET:
        if (n->b) {
            if (jinja_eval(R, n->b, f, &v)) return -1;
        } else {
            Buf b = {0};
            buf_add(&b, "", 0);
            if (jinja_render_body(R, &n->list, f, &b) < 0) { free(b.s); return -1; }
            v = jinja_buf_take(R, &b);
        }
        return bind(R, n->a, v, f);
    case N_MACRO: {
        Value m = {.k = V_MACRO, .mac = {n, f}};
        jinja_dict_set(&R->arena, &f->vars, n->s, n->n, m);
        return 0;
    }
    case N_CALLBLOCK: return render_call_block(R, n, f, out);
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: return jinja_rerr(R, n, "not a statement");
    }
}

// Renders the statements of body; returns 0, -1 on error, or FLOW_BREAK / FLOW_CONTINUE.
// Evaluation and rendering recurse along the tree; the depth of that recursion is bounded (a
// chain like x|trim|trim|... or 1+1+1+... is deep though its source is flat).
static int enter(Render *R, const Node *at) {
    if (++R->depth > JINJA_MAX_DEPTH)
        return jinja_rerr(R, at, "expressions and blocks nested deeper than %d levels while "
                          "rendering", JINJA_MAX_DEPTH);
    return step(R, at);
}

int jinja_eval(Render *R, const Node *n, Frame *f, Value *out) {
    int rc = enter(R, n) ? -1 : eval_node(R, n, f, out);
    R->depth--;
    return rc;
}

int jinja_render_body(Render *R, const NodeList *body, Frame *f, Buf *out) {
    int rc = 0;
    for (size_t i = 0; i < body->n && !rc; i++) {
        rc = enter(R, body->v[i]) ? -1 : render_stmt(R, body->v[i], f, out);
        R->depth--;
    }
    return rc;
}

int jinja_render(const JinjaTemplate *t, const cJSON *ctx, char **out, char *err, size_t errlen) {
    *out = NULL;
    if (ctx && !cJSON_IsObject(ctx))
        return util_err(err, errlen, "the template's context must be a JSON object");
    Render R = {.err = err, .errlen = errlen};
    Frame root = {0};
    R.root = &root;
    for (const cJSON *c = ctx ? ctx->child : NULL; c; c = c->next)
        if (c->string)
            jinja_dict_set(&R.arena, &root.vars, c->string, strlen(c->string), from_json(&R, c));
    Buf b = {0};
    buf_add(&b, "", 0);
    int rc = jinja_render_body(&R, &t->body, &root, &b);
    arena_free(&R.arena);
    if (rc < 0) {
        free(b.s);
        return -1;
    }
    *out = b.s;
    return 0;
}
// ---------------------------------------------------------------------------------------------
// Chat helpers.

const char *jinja_chat_template(const cJSON *config, const char *override, char *err,
                                size_t errlen) {
    if (override) return override;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(config, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    if (cJSON_IsArray(t)) {
        for (const cJSON *c = t->child; c; c = c->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(c, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") &&
                cJSON_IsString(tmpl))
                return tmpl->valuestring;
        }
        util_err(err, errlen, "'chat_template' has no template named \"default\"");
        return NULL;
    }
    util_err(err, errlen, "%s",
             t ? "'chat_template' is neither a string nor a list of named templates"
               : "no 'chat_template' in the tokenizer config");
    return NULL;
}

static const char *config_token(const cJSON *config, const char *key) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(config, key);
    if (cJSON_IsObject(t)) t = cJSON_GetObjectItemCaseSensitive(t, "content");
    return cJSON_IsString(t) ? t->valuestring : "";
}

cJSON *jinja_chat_context(const cJSON *config, const cJSON *messages, int add_generation_prompt,
                          const cJSON *extra) {
    cJSON *ctx = cJSON_CreateObject();
    if (!ctx) DIE("out of memory");
    cJSON *m = messages ? cJSON_Duplicate(messages, 1) : cJSON_CreateArray();
    if (!m) DIE("out of memory");
    cJSON_AddItemToObject(ctx, "messages", m);
    cJSON_AddBoolToObject(ctx, "add_generation_prompt", add_generation_prompt);
    cJSON_AddStringToObject(ctx, "bos_token", config_token(config, "bos_token"));
    cJSON_AddStringToObject(ctx, "eos_token", config_token(config, "eos_token"));
    for (const cJSON *c = extra ? extra->child : NULL; c; c = c->next) {
        if (!c->string) continue;
        cJSON *dup = cJSON_Duplicate(c, 1);
        if (!dup) DIE("out of memory");
        cJSON_DeleteItemFromObjectCaseSensitive(ctx, c->string);
        cJSON_AddItemToObject(ctx, c->string, dup);
    }
    return ctx;
}
