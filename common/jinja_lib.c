// jinja_lib: the builtins of the chat-template interpreter: global functions (range, namespace,
// dict, raise_exception, strftime_now), macro calls, string and dict methods, filters and tests.
#define _GNU_SOURCE   // memmem
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <time.h>

#include "jinja_impl.h"
#include "utf8.h"

static const char *const FUNC_NAMES[] = {"range",           "namespace",    "dict",
                                         "raise_exception", "strftime_now", NULL};

int jinja_func_lookup(const char *name, size_t n) {
    for (int i = 0; FUNC_NAMES[i]; i++)
        if (strlen(FUNC_NAMES[i]) == n && !memcmp(FUNC_NAMES[i], name, n)) return i;
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Functions, methods, filters and tests.

// Binds a macro's parameters in fr: positional, then by name, then defaults (evaluated in fr).
static int bind_params(Render *R, const Node *n, const Node *m, const Args *a, Frame *fr) {
    if (a->npos > m->list.n)
        return jinja_rerr(R, n, "macro '%s' takes %zu arguments, got %zu", m->s, m->list.n,
                          a->npos);
    for (size_t k = 0; k < a->nkw; k++) {
        int known = 0;
        for (size_t i = 0; i < m->list.n; i++)
            known |= m->list.v[i]->n == a->kwn[k].n &&
                     !memcmp(m->list.v[i]->s, a->kwn[k].s, a->kwn[k].n);
        if (!known)
            return jinja_rerr(R, n, "macro '%s' has no parameter '%.*s'", m->s, (int)a->kwn[k].n,
                              a->kwn[k].s);
    }
    for (size_t i = 0; i < m->list.n; i++) {
        const Node *p = m->list.v[i];
        const Value *v = jinja_arg(a, i, p->s);
        Value d = v_undef();
        if (!v && p->a && jinja_eval(R, p->a, fr, &d)) return -1;
        jinja_dict_set(&R->arena, &fr->vars, p->s, p->n, v ? *v : d);
    }
    return 0;
}

int jinja_call_macro(Render *R, const Node *n, Value macro, const Args *a, const Value *caller,
                     Value *out) {
    const Node *m = macro.mac.node;
    if (R->macro_depth >= JINJA_MAX_MACRO)
        return jinja_rerr(R, n, "macro calls nested deeper than %d", JINJA_MAX_MACRO);
    Frame *fr = jinja_frame_new(R, macro.mac.env);
    if (bind_params(R, n, m, a, fr)) return -1;
    if (caller) jinja_dict_set(&R->arena, &fr->vars, "caller", 6, *caller);
    Buf b = {0};
    buf_add(&b, "", 0);
    R->macro_depth++;
    int rc = jinja_render_body(R, &m->list2, fr, &b);
    R->macro_depth--;
    if (rc < 0) {
        free(b.s);
        return -1;
    }
    *out = jinja_buf_take(R, &b);
    return 0;
}

static int call_range(Render *R, const Node *n, const Args *a, Value *out) {
    for (size_t i = 0; i < a->npos; i++)
        if (jinja_want_int(R, n, &a->pos[i], "range")) return -1;
    if (a->npos < 1 || a->npos > 3)
        return jinja_rerr(R, n, "range takes 1 to 3 arguments, got %zu", a->npos);
    int64_t lo = a->npos > 1 ? a->pos[0].i : 0, hi = a->npos > 1 ? a->pos[1].i : a->pos[0].i;
    int64_t st = a->npos > 2 ? a->pos[2].i : 1;
    if (st == 0) return jinja_rerr(R, n, "range step cannot be zero");
    double count = ceil(((double)hi - (double)lo) / (double)st);
    if (count > JINJA_MAX_RANGE)
        return jinja_rerr(R, n, "range of more than %d items", JINJA_MAX_RANGE);
    List *l = jinja_list_new(R, count > 0 ? (size_t)count : 0);
    for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) jinja_list_add(R, l, v_int(i));
    *out = v_list(l);
    return 0;
}

int jinja_call_value(Render *R, const Node *n, Value callee, const Args *a, Frame *f, Value *out) {
    if (callee.k == V_MACRO) return jinja_call_macro(R, n, callee, a, NULL, out);
    if (callee.k != V_FUNC) {
        if (n->a->kind == N_NAME)
            return jinja_rerr(R, n, "'%.*s' is %s, not a function", (int)n->a->n, n->a->s,
                        callee.k == V_UNDEF ? "undefined" : jinja_kind_name(callee.k));
        return jinja_rerr(R, n, "%s is not callable", jinja_kind_a(callee.k));
    }
    switch (callee.i) {
    case F_RANGE: return call_range(R, n, a, out);
    case F_NAMESPACE: case F_DICT: {
        Dict *d = jinja_dict_new(R);
        for (size_t i = 0; i < a->npos; i++) {
            if (a->pos[i].k != V_DICT && a->pos[i].k != V_NS)
                return jinja_rerr(R, n, "%s takes keyword arguments or a dict",
                                  FUNC_NAMES[callee.i]);
            for (size_t k = 0; k < a->pos[i].d->n; k++)
                jinja_dict_set(&R->arena, d, a->pos[i].d->keys[k].s, a->pos[i].d->keys[k].n,
                               a->pos[i].d->vals[k]);
        }
        for (size_t k = 0; k < a->nkw; k++)
            jinja_dict_set(&R->arena, d, a->kwn[k].s, a->kwn[k].n, a->kwv[k]);
        *out = (Value){.k = callee.i == F_NAMESPACE ? V_NS : V_DICT, .d = d};
        return 0;
    }
    case F_RAISE: {
        const Value *m = jinja_arg(a, 0, "message");
        Buf b = {0};
        buf_add(&b, "", 0);
        if (m && jinja_buf_value(R, n, &b, *m)) { free(b.s); return -1; }
        jinja_rerr(R, n, "%s", b.s);
        free(b.s);
        return -1;
    }
    default: {   // F_STRFTIME
        const Value *fmt = jinja_arg(a, 0, "format");
        if (jinja_want_str(R, n, fmt, "strftime_now")) return -1;
        char *cfmt = arena_strndup(&R->arena, fmt->str.s, fmt->str.n), tmp[256];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"   // the template's own format, as in Python
        size_t k = strftime(tmp, sizeof tmp, cfmt, &tm);
#pragma GCC diagnostic pop
        *out = v_str(arena_strndup(&R->arena, tmp, k), k);
        return 0;
    }
    }
}

static int is_ws(unsigned char c) {
    return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f);
}

// The code point at s[0..n) (invalid bytes stand for themselves), its length in *len.
static uint32_t cp_at(const char *s, size_t n, size_t *len) {
    uint32_t cp;
    int k = utf8_decode(s, n, &cp);
    if (k <= 0) { *len = 1; return 0x110000u + (unsigned char)s[0]; }
    *len = (size_t)k;
    return cp;
}

static int cp_in(uint32_t cp, const Value *chars) {
    if (!chars) return cp < 0x80 && is_ws((unsigned char)cp);
    for (size_t i = 0, k; i < chars->str.n; i += k)
        if (cp_at(chars->str.s + i, chars->str.n - i, &k) == cp) return 1;
    return 0;
}

// str.strip/lstrip/rstrip: chars (NULL: whitespace) removed from the left and/or right.
static Value strip(Value s, const Value *chars, int left, int right) {
    size_t a = 0, b = s.str.n, k;
    while (left && a < b && cp_in(cp_at(s.str.s + a, b - a, &k), chars)) a += k;
    while (right && b > a) {
        size_t p = b - 1;
        while (p > a && b - p < 4 && ((unsigned char)s.str.s[p] & 0xC0) == 0x80) p--;
        uint32_t cp = cp_at(s.str.s + p, b - p, &k);
        if (p + k != b) {   // not one whole sequence: the last byte stands alone
            p = b - 1;
            cp = cp_at(s.str.s + p, 1, &k);
        }
        if (!cp_in(cp, chars)) break;
        b = p;
    }
    return v_str(s.str.s + a, b - a);
}

enum { CASE_UPPER, CASE_LOWER, CASE_CAPITALIZE, CASE_TITLE_PY, CASE_TITLE_JINJA };

// Case changes of ASCII letters: upper, lower, capitalize, Python's str.title (a letter after a
// non-letter starts a word) and Jinja's title filter (words start after spaces, - ( { [ <).
static Value change_case(Render *R, Value s, int how) {
    char *o = arena_alloc(&R->arena, s.str.n + 1);
    int start = 1;
    for (size_t i = 0; i < s.str.n; i++) {
        char c = s.str.s[i];
        int up = how == CASE_UPPER ||
                 ((how == CASE_CAPITALIZE && i == 0) || (how >= CASE_TITLE_PY && start));
        o[i] = (char)(up ? toupper((unsigned char)c) : tolower((unsigned char)c));
        if ((unsigned char)c >= 0x80) o[i] = c;
        if (how == CASE_TITLE_PY) start = !isalpha((unsigned char)c);
        else if (how == CASE_TITLE_JINJA)
            start = is_ws((unsigned char)c) || (c && strchr("-({[<", c));
    }
    o[s.str.n] = 0;
    return v_str(o, s.str.n);
}

static int str_replace(Render *R, const Node *n, Value s, const Args *a, size_t first, Value *out) {
    const Value *old = jinja_arg(a, first, "old"), *new = jinja_arg(a, first + 1, "new"),
                *cnt = jinja_arg(a, first + 2, "count");
    if (jinja_want_str(R, n, old, "replace") || jinja_want_str(R, n, new, "replace")) return -1;
    if (cnt && jinja_want_int(R, n, cnt, "replace")) return -1;
    int64_t left = cnt ? cnt->i : -1;
    Buf b = {0};
    buf_add(&b, "", 0);
    size_t i = 0;
    while (i <= s.str.n) {
        const char *hit = left == 0    ? NULL
                          : old->str.n ? memmem(s.str.s + i, s.str.n - i, old->str.s, old->str.n)
                                       : s.str.s + i;
        if (!hit) break;
        size_t at = (size_t)(hit - s.str.s);
        buf_add(&b, s.str.s + i, at - i);
        buf_add(&b, new->str.s, new->str.n);
        if (left > 0) left--;
        if (old->str.n) i = at + old->str.n;
        else {   // "" matches before every character and at the end
            if (at == s.str.n) { i = s.str.n + 1; break; }
            size_t k;
            cp_at(s.str.s + at, s.str.n - at, &k);
            buf_add(&b, s.str.s + at, k);
            i = at + k;
        }
    }
    if (i <= s.str.n) buf_add(&b, s.str.s + i, s.str.n - i);
    *out = jinja_buf_take(R, &b);
    return 0;
}

static int str_split(Render *R, const Node *n, Value s, const Args *a, Value *out) {
    const Value *sep = jinja_arg(a, 0, "sep"), *maxv = jinja_arg(a, 1, "maxsplit");
    if (sep && sep->k == V_NONE) sep = NULL;
    if (sep && jinja_want_str(R, n, sep, "split")) return -1;
    if (maxv && jinja_want_int(R, n, maxv, "split")) return -1;
    if (sep && !sep->str.n) return jinja_rerr(R, n, "split: empty separator");
    int64_t left = maxv ? maxv->i : -1;
    List *l = jinja_list_new(R, 4);
    const char *p = s.str.s, *end = s.str.s + s.str.n;
    if (sep) {
        for (;;) {
            const char *hit =
                left == 0 ? NULL : memmem(p, (size_t)(end - p), sep->str.s, sep->str.n);
            if (!hit) break;
            jinja_list_add(R, l, v_str(p, (size_t)(hit - p)));
            p = hit + sep->str.n;
            if (left > 0) left--;
        }
        jinja_list_add(R, l, v_str(p, (size_t)(end - p)));
    } else {
        for (;;) {
            while (p < end && is_ws((unsigned char)*p)) p++;
            if (p == end) break;
            if (left == 0) {
                const char *e = end;
                while (e > p && is_ws((unsigned char)e[-1])) e--;
                jinja_list_add(R, l, v_str(p, (size_t)(e - p)));
                break;
            }
            const char *q = p;
            while (q < end && !is_ws((unsigned char)*q)) q++;
            jinja_list_add(R, l, v_str(p, (size_t)(q - p)));
            p = q;
            if (left > 0) left--;
        }
    }
    *out = v_list(l);
    return 0;
}

// startswith/endswith with a string or a list (tuple) of strings.
static int str_affix(Render *R, const Node *n, Value s, const Value *x, int end, Value *out) {
    const Value *items = x;
    size_t count = 1;
    if (x && x->k == V_LIST) {
        items = x->l->v;
        count = x->l->n;
    }
    int hit = 0;
    for (size_t i = 0; i < count; i++) {
        if (jinja_want_str(R, n, &items[i], end ? "endswith" : "startswith")) return -1;
        Str p = {items[i].str.s, items[i].str.n};
        if (p.n <= s.str.n && !memcmp(s.str.s + (end ? s.str.n - p.n : 0), p.s, p.n)) hit = 1;
    }
    *out = v_bool(hit);
    return 0;
}

static Value dict_items(Render *R, const Dict *d) {
    List *l = jinja_list_new(R, d->n);
    for (size_t i = 0; i < d->n; i++) {
        List *pair = jinja_list_new(R, 2);
        jinja_list_add(R, pair, v_str(d->keys[i].s, d->keys[i].n));
        jinja_list_add(R, pair, d->vals[i]);
        jinja_list_add(R, l, v_list(pair));
    }
    return v_list(l);
}

static int join(Render *R, const Node *n, Value items, const Value *sep, const Value *attr,
                Value *out) {
    if (items.k == V_UNDEF) { *out = v_str("", 0); return 0; }
    if (items.k != V_LIST)
        return jinja_rerr(R, n, "join expects a list, got %s", jinja_kind_a(items.k));
    if (sep && jinja_want_str(R, n, sep, "join")) return -1;
    Buf b = {0};
    buf_add(&b, "", 0);
    for (size_t i = 0; i < items.l->n; i++) {
        Value v = items.l->v[i];
        if (attr && v.k == V_DICT && attr->k == V_STR) {
            Value *x = jinja_dict_get(v.d, attr->str.s, attr->str.n);
            v = x ? *x : v_undef();
        }
        if (i && sep) buf_add(&b, sep->str.s, sep->str.n);
        if (jinja_buf_value(R, n, &b, v)) { free(b.s); return -1; }
    }
    *out = jinja_buf_take(R, &b);
    return 0;
}

// Jinja's indent(width=4, first=False, blank=False): every line but the first (and the first
// when first) gets width spaces (or the width string); empty lines only when blank.
static int indent(Render *R, const Node *n, Value s, const Args *a, Value *out) {
    const Value *w = jinja_arg(a, 0, "width"), *first = jinja_arg(a, 1, "first"),
                *blank = jinja_arg(a, 2, "blank");
    Buf pad = {0}, b = {0};
    buf_add(&pad, "", 0);
    buf_add(&b, "", 0);
    if (w && w->k == V_STR) buf_add(&pad, w->str.s, w->str.n);
    else if (w && jinja_want_int(R, n, w, "indent")) { free(pad.s); free(b.s); return -1; }
    else for (int64_t i = 0; i < (w ? (w->i > 256 ? 256 : w->i) : 4); i++) buf_add(&pad, " ", 1);
    const char *p = s.str.s, *end = s.str.s + s.str.n;
    for (int line = 0; p < end || line == 0; line++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl ? nl : end;
        if (line > 0) buf_add(&b, "\n", 1);
        int want =
            line == 0 ? first && jinja_truthy(*first) : (e > p || (blank && jinja_truthy(*blank)));
        if (want) buf_add(&b, pad.s, pad.n);
        buf_add(&b, p, (size_t)(e - p));
        if (!nl) break;
        p = nl + 1;
        if (p == end) break;   // a final newline ends the text, it does not start a line
    }
    if (s.str.n && end[-1] == '\n') {
        buf_add(&b, "\n", 1);
        if (blank && jinja_truthy(*blank)) buf_add(&b, pad.s, pad.n);   // as Python's splitlines
    }
    free(pad.s);
    *out = jinja_buf_take(R, &b);
    return 0;
}

static int name_is(const char *name, size_t n, const char *s) {
    return strlen(s) == n && !memcmp(name, s, n);
}

int jinja_call_method(Render *R, const Node *n, Value obj, const Args *a, Value *out, int *found) {
    const char *m = n->s;
    size_t mn = n->n;
    *found = 1;
    if (obj.k == V_STR) {
        if (name_is(m, mn, "strip") || name_is(m, mn, "lstrip") || name_is(m, mn, "rstrip")) {
            const Value *chars = jinja_arg(a, 0, "chars");
            if (chars && chars->k == V_NONE) chars = NULL;
            if (chars && jinja_want_str(R, n, chars, m)) return -1;
            *out = strip(obj, chars, m[0] != 'r', m[0] != 'l');
            return 0;
        }
        if (name_is(m, mn, "split")) return str_split(R, n, obj, a, out);
        if (name_is(m, mn, "startswith") || name_is(m, mn, "endswith"))
            return str_affix(R, n, obj, jinja_arg(a, 0, "prefix"), m[0] == 'e', out);
        if (name_is(m, mn, "upper")) { *out = change_case(R, obj, CASE_UPPER); return 0; }
        if (name_is(m, mn, "lower")) { *out = change_case(R, obj, CASE_LOWER); return 0; }
        if (name_is(m, mn, "title")) { *out = change_case(R, obj, CASE_TITLE_PY); return 0; }
        if (name_is(m, mn, "capitalize")) { *out = change_case(R, obj, CASE_CAPITALIZE); return 0; }
        if (name_is(m, mn, "replace")) return str_replace(R, n, obj, a, 0, out);
        if (name_is(m, mn, "join")) {
            const Value *items = jinja_arg(a, 0, "iterable");
            return join(R, n, items ? *items : v_undef(), &obj, NULL, out);
        }
    } else if (obj.k == V_DICT || obj.k == V_NS) {
        if (name_is(m, mn, "items")) { *out = dict_items(R, obj.d); return 0; }
        if (name_is(m, mn, "keys") || name_is(m, mn, "values")) {
            List *l = jinja_list_new(R, obj.d->n);
            for (size_t i = 0; i < obj.d->n; i++)
                jinja_list_add(
                    R, l, m[0] == 'k' ? v_str(obj.d->keys[i].s, obj.d->keys[i].n) : obj.d->vals[i]);
            *out = v_list(l);
            return 0;
        }
        if (name_is(m, mn, "get")) {
            const Value *k = jinja_arg(a, 0, "key"), *d = jinja_arg(a, 1, "default");
            if (jinja_want_str(R, n, k, "get")) return -1;
            Value *v = jinja_dict_get(obj.d, k->str.s, k->str.n);
            *out = v ? *v : d ? *d : v_none();
            return 0;
        }
    }
    *found = 0;
    return 0;
}

// The attribute path "a.b" of an item (selectattr, map, join): undefined when absent.
static Value attr_path(Value v, const Value *path) {
    const char *p = path->str.s, *end = p + path->str.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        size_t k = dot ? (size_t)(dot - p) : (size_t)(end - p);
        if (v.k != V_DICT && v.k != V_NS) return v_undef();
        Value *x = jinja_dict_get(v.d, p, k);
        if (!x) return v_undef();
        v = *x;
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

int jinja_value_to_list(Render *R, const Node *n, Value v, const char *what, Value *out) {
    if (v.k == V_LIST) { *out = v; return 0; }
    List *l = jinja_list_new(R, 4);
    if (v.k == V_DICT || v.k == V_NS) {
        for (size_t i = 0; i < v.d->n; i++)
            jinja_list_add(R, l, v_str(v.d->keys[i].s, v.d->keys[i].n));
    } else if (v.k == V_STR) {
        for (size_t i = 0, k; i < v.str.n; i += k) {
            cp_at(v.str.s + i, v.str.n - i, &k);
            jinja_list_add(R, l, v_str(v.str.s + i, k));
        }
    } else if (v.k != V_UNDEF) {
        return jinja_rerr(R, n, "%s expects a sequence, got %s", what, jinja_kind_a(v.k));
    }
    *out = v_list(l);
    return 0;
}

// selectattr / rejectattr (attr [, test, args...]) and select / reject ([test, args...]).
static int select_items(Render *R, const Node *n, Value v, const Args *a, Frame *f, int byattr,
                        int keep, Value *out) {
    Value items;
    if (jinja_value_to_list(R, n, v, n->s, &items)) return -1;
    const Value *attr = byattr ? jinja_arg(a, 0, NULL) : NULL;
    if (byattr && jinja_want_str(R, n, attr, n->s)) return -1;
    size_t ti = byattr ? 1 : 0;
    const Value *test = jinja_arg(a, ti, NULL);
    if (test && jinja_want_str(R, n, test, n->s)) return -1;
    Args targs = *a;   // the test's own arguments: those after the test's name
    targs.npos = a->npos > ti + 1 ? a->npos - ti - 1 : 0;
    targs.pos = targs.npos ? a->pos + ti + 1 : NULL;
    List *l = jinja_list_new(R, items.l->n);
    for (size_t i = 0; i < items.l->n; i++) {
        Value x = byattr ? attr_path(items.l->v[i], attr) : items.l->v[i];
        int res = jinja_truthy(x);
        if (test && jinja_apply_test(R, n, test->str.s, test->str.n, x, &targs, f, &res)) return -1;
        if (res == keep) jinja_list_add(R, l, items.l->v[i]);
    }
    *out = v_list(l);
    return 0;
}

static int map_items(Render *R, const Node *n, Value v, const Args *a, Frame *f, Value *out) {
    Value items;
    if (jinja_value_to_list(R, n, v, "map", &items)) return -1;
    const Value *attr = jinja_arg(a, a->npos, "attribute"),
                *dflt = jinja_arg(a, a->npos, "default");
    const Value *filter = a->npos ? &a->pos[0] : NULL;
    if (!attr && jinja_want_str(R, n, filter, "map")) return -1;
    if (attr && jinja_want_str(R, n, attr, "map")) return -1;
    Args fargs = {.pos = a->npos ? a->pos + 1 : NULL, .npos = a->npos ? a->npos - 1 : 0};
    List *l = jinja_list_new(R, items.l->n);
    for (size_t i = 0; i < items.l->n; i++) {
        Value x;
        if (attr) {
            x = attr_path(items.l->v[i], attr);
            if (x.k == V_UNDEF && dflt) x = *dflt;
        } else if (jinja_apply_filter(R, n, filter->str.s, filter->str.n, items.l->v[i], &fargs, f,
                                      &x)) {
            return -1;
        }
        jinja_list_add(R, l, x);
    }
    *out = v_list(l);
    return 0;
}

static int to_number(Render *R, const Node *n, Value v, const Value *dflt, int as_int, Value *out) {
    *out = dflt ? *dflt : as_int ? v_int(0) : v_float(0);
    if (v.k == V_INT || v.k == V_BOOL) {
        *out = as_int ? v_int(v.i) : v_float((double)v.i);
        return 0;
    }
    if (v.k == V_FLOAT) {
        if (!as_int) *out = v;
        else if (isfinite(v.f) && fabs(v.f) < 9.2e18) *out = v_int((int64_t)v.f);
        return 0;
    }
    if (v.k != V_STR || v.str.n >= 64) return 0;
    char tmp[64], *end;
    memcpy(tmp, v.str.s, v.str.n);
    tmp[v.str.n] = 0;
    errno = 0;
    long long i = strtoll(tmp, &end, 10);
    while (is_ws((unsigned char)*end)) end++;
    if (end != tmp && !*end && !errno) { *out = as_int ? v_int(i) : v_float((double)i); return 0; }
    double d = strtod(tmp, &end);
    while (is_ws((unsigned char)*end)) end++;
    if (end != tmp && !*end && isfinite(d)) {
        if (!as_int) *out = v_float(d);
        else if (fabs(d) < 9.2e18) *out = v_int((int64_t)d);
    }
    return 0;
}

// tojson(indent=None, separators=None, sort_keys=False, ensure_ascii=False), transformers' own.
static int tojson(Render *R, const Node *n, Value v, const Args *a, Value *out) {
    const Value *ind = jinja_arg(a, 0, "indent"), *seps = jinja_arg(a, a->npos, "separators");
    const Value *sort = jinja_arg(a, a->npos, "sort_keys"),
                *ascii = jinja_arg(a, a->npos, "ensure_ascii");
    JsonStyle st = {.item_sep = {", ", 2}, .key_sep = {": ", 2}};
    if (ind && ind->k != V_NONE) {
        if (jinja_want_int(R, n, ind, "tojson's indent")) return -1;
        st.indent = (int)(ind->i > 64 ? 64 : ind->i < 0 ? 0 : ind->i);
        if (st.indent > 0) st.item_sep = (Str){",", 1};
    }
    if (seps && seps->k != V_NONE) {
        if (seps->k != V_LIST || seps->l->n != 2 || seps->l->v[0].k != V_STR ||
            seps->l->v[1].k != V_STR)
            return jinja_rerr(R, n, "tojson's separators must be two strings");
        st.item_sep = (Str){seps->l->v[0].str.s, seps->l->v[0].str.n};
        st.key_sep = (Str){seps->l->v[1].str.s, seps->l->v[1].str.n};
    }
    st.sort_keys = sort && jinja_truthy(*sort);
    st.ensure_ascii = ascii && jinja_truthy(*ascii);
    Buf b = {0};
    buf_add(&b, "", 0);
    if (jinja_buf_json(R, n, &b, v, &st, 0)) {
        free(b.s);
        return -1;
    }
    *out = jinja_buf_take(R, &b);
    return 0;
}

int jinja_apply_filter(Render *R, const Node *n, const char *name, size_t nl, Value v,
                       const Args *a, Frame *f, Value *out) {
#define IS(s) name_is(name, nl, s)
    if (IS("safe")) { *out = v; return 0; }
    if (IS("length") || IS("count")) {
        if (v.k != V_STR && v.k != V_LIST && v.k != V_DICT && v.k != V_NS && v.k != V_UNDEF)
            return jinja_rerr(R, n, "length of %s", jinja_kind_a(v.k));
        *out = v_int((int64_t)jinja_value_length(v));
        return 0;
    }
    if (IS("default") || IS("d")) {
        const Value *d = jinja_arg(a, 0, "default_value"), *boolean = jinja_arg(a, 1, "boolean");
        int use = v.k == V_UNDEF || (boolean && jinja_truthy(*boolean) && !jinja_truthy(v));
        *out = use ? (d ? *d : v_str("", 0)) : v;
        return 0;
    }
    if (IS("string")) {
        if (v.k == V_STR) { *out = v; return 0; }
        Buf b = {0};
        buf_add(&b, "", 0);
        if (jinja_buf_value(R, n, &b, v)) { free(b.s); return -1; }
        *out = jinja_buf_take(R, &b);
        return 0;
    }
    if (IS("tojson")) return tojson(R, n, v, a, out);
    if (IS("items")) {
        if (v.k == V_UNDEF) { *out = v_list(jinja_list_new(R, 0)); return 0; }
        if (v.k != V_DICT && v.k != V_NS)
            return jinja_rerr(R, n, "items expects a dict, got %s", jinja_kind_a(v.k));
        *out = dict_items(R, v.d);
        return 0;
    }
    if (IS("join")) return join(R, n, v, jinja_arg(a, 0, "d"), jinja_arg(a, 1, "attribute"), out);
    if (IS("list")) return jinja_value_to_list(R, n, v, "list", out);
    if (IS("first") || IS("last")) {
        Value l;
        if (jinja_value_to_list(R, n, v, name, &l)) return -1;
        *out = l.l->n ? l.l->v[IS("first") ? 0 : l.l->n - 1] : v_undef();
        return 0;
    }
    if (IS("reverse") || IS("unique")) {
        Value l;
        if (jinja_value_to_list(R, n, v, name, &l)) return -1;
        List *r = jinja_list_new(R, l.l->n);
        for (size_t i = 0; i < l.l->n; i++) {
            if (IS("reverse")) { jinja_list_add(R, r, l.l->v[l.l->n - 1 - i]); continue; }
            int seen = 0;
            for (size_t k = 0; k < r->n && !seen; k++) seen = jinja_val_eq(r->v[k], l.l->v[i], 0);
            if (!seen) jinja_list_add(R, r, l.l->v[i]);
        }
        if (IS("reverse") && v.k == V_STR) return join(R, n, v_list(r), NULL, NULL, out);
        *out = v_list(r);
        return 0;
    }
    if (IS("selectattr") || IS("rejectattr"))
        return select_items(R, n, v, a, f, 1, IS("selectattr"), out);
    if (IS("select") || IS("reject")) return select_items(R, n, v, a, f, 0, IS("select"), out);
    if (IS("map")) return map_items(R, n, v, a, f, out);
    if (IS("int") || IS("float"))
        return to_number(R, n, v, jinja_arg(a, 0, "default"), IS("int"), out);
    if (IS("abs")) {
        if (!is_num(v)) return jinja_rerr(R, n, "abs of %s", jinja_kind_a(v.k));
        if (v.k == V_FLOAT) *out = v_float(fabs(v.f));
        else if (v.i == INT64_MIN) return jinja_rerr(R, n, "integer overflow");
        else *out = v_int(v.i < 0 ? -v.i : v.i);
        return 0;
    }
    // the string filters
    int strf = IS("trim") || IS("strip") || IS("upper") || IS("lower") || IS("capitalize") ||
               IS("indent") || IS("title") || IS("replace");
    if (!strf) return jinja_rerr(R, n, "unknown filter '%.*s'", (int)(nl > 40 ? 40 : nl), name);
    if (v.k == V_UNDEF) v = v_str("", 0);
    if (v.k != V_STR) {
        Args none = {0};
        if (jinja_apply_filter(R, n, "string", 6, v, &none, f, &v)) return -1;
    }
    if (IS("trim") || IS("strip")) {
        const Value *chars = jinja_arg(a, 0, "chars");
        if (chars && chars->k == V_NONE) chars = NULL;
        if (chars && jinja_want_str(R, n, chars, "trim")) return -1;
        *out = strip(v, chars, 1, 1);
        return 0;
    }
    if (IS("replace")) return str_replace(R, n, v, a, 0, out);
    if (IS("indent")) return indent(R, n, v, a, out);
    *out = change_case(R, v, IS("upper") ? CASE_UPPER : IS("lower") ? CASE_LOWER
                             : IS("capitalize") ? CASE_CAPITALIZE : CASE_TITLE_JINJA);
    return 0;
#undef IS
}

int jinja_apply_test(Render *R, const Node *n, const char *name, size_t nl, Value v, const Args *a,
                      Frame *f, int *res) {
#define IS(s) name_is(name, nl, s)
    const Value *x = jinja_arg(a, 0, NULL);
    if (IS("defined")) *res = v.k != V_UNDEF;
    else if (IS("undefined")) *res = v.k == V_UNDEF;
    else if (IS("none")) *res = v.k == V_NONE;
    else if (IS("string")) *res = v.k == V_STR;
    else if (IS("mapping")) *res = v.k == V_DICT || v.k == V_NS;
    else if (IS("iterable")) *res = v.k == V_LIST || v.k == V_DICT || v.k == V_STR || v.k == V_NS;
    else if (IS("sequence")) *res = v.k == V_LIST || v.k == V_DICT || v.k == V_STR || v.k == V_NS;
    else if (IS("number")) *res = is_num(v);
    else if (IS("integer")) *res = v.k == V_INT;
    else if (IS("float")) *res = v.k == V_FLOAT;
    else if (IS("boolean")) *res = v.k == V_BOOL;
    else if (IS("true")) *res = v.k == V_BOOL && v.i;
    else if (IS("false")) *res = v.k == V_BOOL && !v.i;
    else if (IS("callable")) *res = v.k == V_MACRO || v.k == V_FUNC;
    else if (IS("lower") || IS("upper")) {
        *res = v.k == V_STR;
        for (size_t i = 0; *res && i < v.str.n; i++)
            if (IS("lower") ? isupper((unsigned char)v.str.s[i])
                            : islower((unsigned char)v.str.s[i]))
                *res = 0;
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        if (jinja_want_int(R, n, &v, name)) return -1;
        int64_t d = 2;
        if (IS("divisibleby")) {
            if (jinja_want_int(R, n, x, name)) return -1;
            d = x->i;
            if (d == 0) return jinja_rerr(R, n, "divisibleby 0");
        }
        int64_t r = d == -1 ? 0 : v.i % d;
        *res = IS("odd") ? r != 0 : r == 0;
    } else {
        int op = IS("eq") || IS("equalto") || IS("==") || IS("sameas") ? OP_EQ
                 : IS("ne") || IS("!=")                                ? OP_NE
                 : IS("lt") || IS("lessthan") || IS("<")               ? OP_LT
                 : IS("le") || IS("<=")                                ? OP_LE
                 : IS("gt") || IS("greaterthan") || IS(">")            ? OP_GT
                 : IS("ge") || IS(">=")                                ? OP_GE
                 : IS("in")                                            ? OP_IN
                                                                       : -1;
        if (op < 0) return jinja_rerr(R, n, "unknown test '%.*s'", (int)(nl > 40 ? 40 : nl), name);
        if (!x) return jinja_rerr(R, n, "test '%.*s' needs an argument", (int)nl, name);
        Node tmp = *n;
        tmp.op = op;
        Value r;
        if (jinja_binop(R, &tmp, v, *x, &r)) return -1;
        *res = jinja_truthy(r);
    }
    return 0;
#undef IS
}
