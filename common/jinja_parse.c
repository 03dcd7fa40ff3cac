// jinja_parse: the chat-template interpreter's first two stages. The lexer cuts the source into
// text and tag tokens, applying the whitespace rules (trim_blocks, lstrip_blocks, {%- -%}); the
// parser builds a tree of Nodes (statements and expressions, each with its line and column) in the
// template's arena. Rendering is jinja.c's.
#define _GNU_SOURCE   // memmem
#include <ctype.h>
#include <errno.h>

#include "jinja_impl.h"

void jinja_verr(char *err, size_t errlen, int line, int col, const char *fmt, va_list ap) {
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    util_err(err, errlen, "line %d column %d: %s", line, col, msg);
}

// Characters before s[off] on its line, plus one: the column of s[off] (UTF-8 aware).
static void src_pos(const char *s, size_t off, int *line, int *col) {
    int l = 1, c = 1;
    for (size_t i = 0; i < off; i++) {
        if (s[i] == '\n') {
            l++;
            c = 1;
        } else if (((unsigned char)s[i] & 0xC0) != 0x80) {
            c++;
        }
    }
    *line = l;
    *col = c;
}
// ---------------------------------------------------------------------------------------------
// Lexer: text tokens between tags, and the tokens inside {{ }} and {% %}.

typedef enum {
    T_EOF, T_TEXT, T_EXPR_OPEN, T_EXPR_CLOSE, T_STMT_OPEN, T_STMT_CLOSE,
    T_NAME, T_STRING, T_INT, T_FLOAT, T_OP
} TokKind;

typedef struct {
    TokKind kind;
    int line, col;
    const char *s;   // T_TEXT, T_NAME, T_STRING (arena copy, unescaped), T_OP (the operator)
    size_t n;
    int64_t i;
    double f;
} Tok;

typedef struct {
    const char *src;
    size_t len, pos;
    Arena *arena;
    Tok *toks;
    size_t ntok, cap;
    size_t at_off;       // the last token's offset, line and column: tokens come in source order,
    int at_line, at_col; // so each position is counted on from the previous one
    char *err;
    size_t errlen;
} Lexer;

static int lex_err(Lexer *L, size_t off, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lex_err(Lexer *L, size_t off, const char *fmt, ...) {
    int line, col;
    src_pos(L->src, off, &line, &col);
    va_list ap;
    va_start(ap, fmt);
    jinja_verr(L->err, L->errlen, line, col, fmt, ap);
    va_end(ap);
    return -1;
}

static Tok *lex_push(Lexer *L, TokKind kind, size_t off) {
    if (L->ntok == L->cap) {
        L->cap = L->cap ? 2 * L->cap : 256;
        L->toks = REALLOC_ARRAY(L->toks, L->cap, sizeof *L->toks);
    }
    Tok *t = &L->toks[L->ntok++];
    memset(t, 0, sizeof *t);
    t->kind = kind;
    if (off < L->at_off) {
        L->at_off = 0;
        L->at_line = L->at_col = 1;
    }
    for (size_t i = L->at_off; i < off; i++) {
        if (L->src[i] == '\n') {
            L->at_line++;
            L->at_col = 1;
        } else if (((unsigned char)L->src[i] & 0xC0) != 0x80) {
            L->at_col++;
        }
    }
    L->at_off = off;
    t->line = L->at_line;
    t->col = L->at_col;
    return t;
}

static int is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

// Emits the text src[a..b) as a T_TEXT token (nothing when empty).
static void lex_text(Lexer *L, size_t a, size_t b) {
    if (b <= a) return;
    Tok *t = lex_push(L, T_TEXT, a);
    t->s = arena_strndup(L->arena, L->src + a, b - a);
    t->n = b - a;
}

// Appends the UTF-8 encoding of code point cp to b.
static void buf_utf8(Buf *b, uint32_t cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 63)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | ((cp >> 6) & 63));
        u[2] = (char)(0x80 | (cp & 63)); n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | ((cp >> 12) & 63));
        u[2] = (char)(0x80 | ((cp >> 6) & 63)); u[3] = (char)(0x80 | (cp & 63)); n = 4;
    }
    buf_add(b, u, n);
}

static int hex_value(const char *s, int n, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < n; i++) {
        int c = (unsigned char)s[i], d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        *v = *v * 16 + (uint32_t)d;
    }
    return 0;
}

// A string literal at L->pos (its quote), with Python's escapes.
static int lex_string(Lexer *L) {
    size_t start = L->pos;
    char q = L->src[L->pos++];
    Buf b = {0};
    buf_add(&b, "", 0);
    for (;;) {
        if (L->pos >= L->len) {
            free(b.s);
            return lex_err(L, start, "unterminated string literal");
        }
        char c = L->src[L->pos++];
        if (c == q) break;
        if (c != '\\') { buf_add(&b, &c, 1); continue; }
        if (L->pos >= L->len) continue;
        char e = L->src[L->pos++];
        const char *simple = "n\nt\tr\rb\bf\fv\va\a0\0\\\\''\"\"";
        const char *m = NULL;
        for (const char *p = simple; *p; p += 2)
            if (*p == e) { m = p; break; }
        if (m) { buf_add(&b, m + 1, 1); continue; }
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        uint32_t cp;
        if (digits && L->pos + digits <= L->len && !hex_value(L->src + L->pos, digits, &cp) &&
            cp <= 0x10FFFF && (cp < 0xD800 || cp > 0xDFFF)) {
            L->pos += digits;
            buf_utf8(&b, cp);
            continue;
        }
        if (digits) {
            free(b.s);
            return lex_err(L, L->pos - 2, "bad \\%c escape in a string literal", e);
        }
        buf_add(&b, "\\", 1);   // Python keeps unknown escapes as they are
        buf_add(&b, &e, 1);
    }
    Tok *t = lex_push(L, T_STRING, start);
    t->s = arena_strndup(L->arena, b.s, b.n);
    t->n = b.n;
    free(b.s);
    return 0;
}

static int lex_number(Lexer *L) {
    size_t start = L->pos, p = L->pos;
    int isfloat = 0;
    while (p < L->len && (isdigit((unsigned char)L->src[p]) || L->src[p] == '_')) p++;
    if (p + 1 < L->len && L->src[p] == '.' && isdigit((unsigned char)L->src[p + 1])) {
        isfloat = 1;
        p++;
        while (p < L->len && isdigit((unsigned char)L->src[p])) p++;
    }
    if (p < L->len && (L->src[p] == 'e' || L->src[p] == 'E')) {
        size_t q = p + 1;
        if (q < L->len && (L->src[q] == '+' || L->src[q] == '-')) q++;
        if (q < L->len && isdigit((unsigned char)L->src[q])) {
            isfloat = 1;
            p = q;
            while (p < L->len && isdigit((unsigned char)L->src[p])) p++;
        }
    }
    char tmp[64];
    size_t k = 0;
    for (size_t i = start; i < p; i++)
        if (L->src[i] != '_') {
            if (k + 1 >= sizeof tmp) return lex_err(L, start, "number literal too long");
            tmp[k++] = L->src[i];
        }
    tmp[k] = 0;
    L->pos = p;
    Tok *t = lex_push(L, isfloat ? T_FLOAT : T_INT, start);
    errno = 0;
    if (isfloat) t->f = strtod(tmp, NULL);
    else t->i = strtoll(tmp, NULL, 10);
    if (errno == ERANGE) return lex_err(L, start, "number literal out of range: %s", tmp);
    return 0;
}

// The tokens of one tag, from L->pos (after its opening) to its closing ("}}" or "%}"),
// which is consumed; *trim_after is set when the closing has a '-'.
static int lex_tag(Lexer *L, char close, size_t open_off, int *trim_after) {
    static const char *ops2[] = {"//", "**", "==", "!=", "<=", ">=", NULL};
    int braces = 0;   // open '{' inside the tag: "}}" closes the tag only outside them
    for (;;) {
        while (L->pos < L->len && is_space(L->src[L->pos])) L->pos++;
        if (L->pos >= L->len)
            return lex_err(L, open_off, "unclosed '%s' tag", close == '}' ? "{{" : "{%");
        const char *s = L->src + L->pos;
        size_t left = L->len - L->pos;
        if (braces == 0 || close == '%') {
            if (left >= 3 && s[0] == '-' && s[1] == close && s[2] == '}') {
                L->pos += 3;
                *trim_after = 1;
                break;
            }
            if (left >= 2 && s[0] == close && s[1] == '}') {
                L->pos += 2;
                *trim_after = 0;
                break;
            }
        }
        char c = s[0];
        if (c == '\'' || c == '"') {
            if (lex_string(L)) return -1;
        } else if (isdigit((unsigned char)c)) {
            if (lex_number(L)) return -1;
        } else if (isalpha((unsigned char)c) || c == '_') {
            size_t n = 1;
            while (n < left && (isalnum((unsigned char)s[n]) || s[n] == '_')) n++;
            Tok *t = lex_push(L, T_NAME, L->pos);
            t->s = arena_strndup(L->arena, s, n);
            t->n = n;
            L->pos += n;
        } else {
            size_t n = 0;
            for (int i = 0; ops2[i]; i++)
                if (left >= 2 && !memcmp(s, ops2[i], 2)) n = 2;
            if (!n && strchr("+-*/%~<>=()[]{}.,:|", c) && c) n = 1;
            if (!n) {
                if ((unsigned char)c >= 0x80)
                    return lex_err(L, L->pos, "unexpected non-ASCII character in a tag");
                return lex_err(L, L->pos, "unexpected character '%c' in a tag", c);
            }
            if (c == '{') braces++;
            if (c == '}' && braces > 0) braces--;
            Tok *t = lex_push(L, T_OP, L->pos);
            t->s = arena_strndup(L->arena, s, n);   // a test may be named by one (`is >=`)
            t->n = n;
            L->pos += n;
        }
    }
    return 0;
}

// Cuts the whole source into tokens. Whitespace rules: a '-' after an opening strips the
// whitespace before it; a '-' before a closing strips the whitespace after it; lstrip_blocks drops
// spaces and tabs between a line's start and a {% or {# (not {%+); trim_blocks drops the first
// newline after a %} or #}.
static int lex_all(Lexer *L) {
    size_t text_start = 0;
    int skip_ws = 0, skip_nl = 0;
    for (;;) {
        if (skip_ws)
            while (L->pos < L->len && is_space(L->src[L->pos])) L->pos++;
        if (skip_nl && L->pos < L->len && L->src[L->pos] == '\n') L->pos++;
        skip_ws = skip_nl = 0;
        text_start = L->pos;
        const char *open = NULL;
        size_t p = L->pos;
        for (; p + 1 < L->len; p++)
            if (L->src[p] == '{' &&
                (L->src[p + 1] == '{' || L->src[p + 1] == '%' || L->src[p + 1] == '#')) {
                open = L->src + p;
                break;
            }
        if (!open) {
            lex_text(L, text_start, L->len);
            break;
        }
        char kind = open[1];
        char mark = p + 2 < L->len ? open[2] : 0;
        size_t text_end = p;
        if (mark == '-') {
            while (text_end > text_start && is_space(L->src[text_end - 1])) text_end--;
        } else if (kind != '{' && mark != '+') {   // lstrip_blocks
            size_t q = text_end;
            while (q > text_start && (L->src[q - 1] == ' ' || L->src[q - 1] == '\t')) q--;
            if (q == 0 || L->src[q - 1] == '\n') text_end = q;
        }
        lex_text(L, text_start, text_end);
        L->pos = p + 2 + (mark == '-' || mark == '+');
        if (kind == '#') {
            const char *end = NULL;
            for (size_t q = L->pos; q + 1 < L->len; q++)
                if (L->src[q] == '#' && L->src[q + 1] == '}') { end = L->src + q; break; }
            if (!end) return lex_err(L, p, "unclosed comment '{#'");
            size_t q = (size_t)(end - L->src);
            skip_ws = q > L->pos && L->src[q - 1] == '-';
            skip_nl = !skip_ws;
            L->pos = q + 2;
            continue;
        }
        lex_push(L, kind == '{' ? T_EXPR_OPEN : T_STMT_OPEN, p);
        int trim = 0;
        if (lex_tag(L, kind == '{' ? '}' : '%', p, &trim)) return -1;
        lex_push(L, kind == '{' ? T_EXPR_CLOSE : T_STMT_CLOSE, L->pos - 2);
        skip_ws = trim;
        skip_nl = !trim && kind == '%';
    }
    lex_push(L, T_EOF, L->len);
    return 0;
}
typedef struct {
    Tok *t;
    size_t pos;
    Arena *arena;
    int depth;
    int loops;      // for-loop bodies being parsed (break and continue need one)
    char *err;
    size_t errlen;
} Parser;

static void list_push(Arena *a, NodeList *l, Node *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 4;
        Node **v = arena_alloc(a, cap * sizeof *v);
        if (l->n) memcpy(v, l->v, l->n * sizeof *v);
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = n;
}

static Node *node_new(Parser *P, NodeKind kind, const Tok *at) {
    Node *n = arena_alloc(P->arena, sizeof *n);
    memset(n, 0, sizeof *n);
    n->kind = kind;
    n->line = at->line;
    n->col = at->col;
    return n;
}

// A node over operand a (may be NULL) named by the token name (may be NULL).
static Node *node_on(Parser *P, NodeKind kind, const Tok *at, Node *a, const Tok *name) {
    Node *n = node_new(P, kind, at);
    n->a = a;
    if (name) {
        n->s = name->s;
        n->n = name->n;
    }
    return n;
}

static const Tok *peek(Parser *P) { return &P->t[P->pos]; }
static const Tok *peek2(Parser *P) {
    return P->t[P->pos].kind == T_EOF ? &P->t[P->pos] : &P->t[P->pos + 1];
}
static const Tok *next(Parser *P) {
    const Tok *t = &P->t[P->pos];
    if (t->kind != T_EOF) P->pos++;
    return t;
}

static int tok_is(const Tok *t, TokKind k, const char *s) {
    if (t->kind != k) return 0;
    return !s || (t->n == strlen(s) && !memcmp(t->s, s, t->n));
}
static int is_op(const Tok *t, const char *s) { return tok_is(t, T_OP, s); }
static int is_name(const Tok *t, const char *s) { return tok_is(t, T_NAME, s); }

static const char *tok_desc(const Tok *t, char *buf, size_t n) {
    switch (t->kind) {
    case T_EOF: return "the end of the template";
    case T_TEXT: return "text";
    case T_EXPR_OPEN: return "'{{'";
    case T_EXPR_CLOSE: return "'}}'";
    case T_STMT_OPEN: return "'{%'";
    case T_STMT_CLOSE: return "'%}'";
    case T_STRING: return "a string";
    case T_INT: case T_FLOAT: return "a number";
    default: snprintf(buf, n, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->s); return buf;
    }
}

static int perr(Parser *P, const Tok *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int perr(Parser *P, const Tok *at, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    jinja_verr(P->err, P->errlen, at->line, at->col, fmt, ap);
    va_end(ap);
    return -1;
}

static int expect_op(Parser *P, const char *op) {
    const Tok *t = peek(P);
    char d[64];
    if (!is_op(t, op)) return perr(P, t, "expected '%s', got %s", op, tok_desc(t, d, sizeof d));
    next(P);
    return 0;
}

static int expect_kind(Parser *P, TokKind k, const char *what) {
    const Tok *t = peek(P);
    char d[64];
    if (t->kind != k) return perr(P, t, "expected %s, got %s", what, tok_desc(t, d, sizeof d));
    next(P);
    return 0;
}

static int nest_in(Parser *P, const Tok *at) {
    if (++P->depth > JINJA_MAX_NEST)
        return perr(P, at, "nesting deeper than %d levels", JINJA_MAX_NEST);
    return 0;
}

static Node *parse_expr(Parser *P);
static Node *parse_or(Parser *P);
static Node *parse_unary(Parser *P, int with_filter);

// Arguments "(a, b, name=c)" after the '(' has been seen; pushed into l.
static int parse_args(Parser *P, NodeList *l) {
    if (expect_op(P, "(")) return -1;
    while (!is_op(peek(P), ")")) {
        const Tok *t = peek(P);
        Node *arg;
        if (t->kind == T_NAME && is_op(peek2(P), "=")) {
            next(P);
            next(P);
            arg = node_on(P, N_KWARG, t, NULL, t);
            if (!(arg->a = parse_expr(P))) return -1;
        } else if (!(arg = parse_expr(P))) {
            return -1;
        }
        list_push(P->arena, l, arg);
        if (!is_op(peek(P), ",")) break;
        next(P);
    }
    return expect_op(P, ")");
}

static Node *parse_primary(Parser *P) {
    const Tok *t = peek(P);
    char d[64];
    Node *n;
    if (nest_in(P, t)) return NULL;
    if (t->kind == T_STRING) {
        Buf b = {0};
        buf_add(&b, "", 0);
        while (peek(P)->kind == T_STRING) {   // adjacent literals are one string
            const Tok *s = next(P);
            buf_add(&b, s->s, s->n);
        }
        n = node_new(P, N_STR, t);
        n->s = arena_strndup(P->arena, b.s, b.n);
        n->n = b.n;
        free(b.s);
    } else if (t->kind == T_INT || t->kind == T_FLOAT) {
        next(P);
        n = node_new(P, t->kind == T_INT ? N_INT : N_FLOAT, t);
        n->i = t->i;
        n->f = t->f;
    } else if (t->kind == T_NAME) {
        next(P);
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") ||
            is_name(t, "False")) {
            n = node_new(P, N_BOOL, t);
            n->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n = node_new(P, N_NONE, t);
        } else {
            n = node_on(P, N_NAME, t, NULL, t);
        }
    } else if (is_op(t, "(") || is_op(t, "[")) {
        int paren = is_op(t, "(");
        const char *close = paren ? ")" : "]";
        next(P);
        n = node_new(P, N_LIST, t);
        int commas = 0;
        while (!is_op(peek(P), close)) {
            Node *item = parse_expr(P);
            if (!item) return NULL;
            list_push(P->arena, &n->list, item);
            if (!is_op(peek(P), ",")) break;
            next(P);
            commas++;
        }
        if (expect_op(P, close)) return NULL;
        if (paren && n->list.n == 1 && !commas) n = n->list.v[0];   // (x) is x
        else if (paren) n->op = 1;
    } else if (is_op(t, "{")) {
        next(P);
        n = node_new(P, N_DICT, t);
        while (!is_op(peek(P), "}")) {
            Node *pair = node_new(P, N_PAIR, peek(P));
            if (!(pair->a = parse_expr(P)) || expect_op(P, ":") || !(pair->b = parse_expr(P)))
                return NULL;
            list_push(P->arena, &n->list, pair);
            if (!is_op(peek(P), ",")) break;
            next(P);
        }
        if (expect_op(P, "}")) return NULL;
    } else {
        perr(P, t, "expected an expression, got %s", tok_desc(t, d, sizeof d));
        return NULL;
    }
    P->depth--;
    return n;
}

// Subscript "[...]" after the object: an index or a slice a:b:c.
static Node *parse_subscript(Parser *P, Node *obj) {
    const Tok *t = next(P);   // '['
    Node *parts[3] = {NULL, NULL, NULL};
    int k = 0;
    for (;;) {
        if (!is_op(peek(P), ":") && !is_op(peek(P), "]"))
            if (!(parts[k] = parse_expr(P))) return NULL;
        if (!is_op(peek(P), ":") || k == 2) break;
        next(P);
        k++;
    }
    if (expect_op(P, "]")) return NULL;
    Node *n = node_new(P, k ? N_SLICE : N_INDEX, t);
    n->a = obj;
    if (!k && !parts[0]) {
        perr(P, t, "empty subscript '[]'");
        return NULL;
    }
    n->b = parts[0];
    n->c = parts[1];
    n->d = parts[2];
    return n;
}

static Node *parse_postfix(Parser *P, Node *n) {
    for (;;) {
        const Tok *t = peek(P);
        if (is_op(t, ".")) {
            next(P);
            const Tok *name = next(P);
            if (name->kind == T_INT) {   // x.0 is x[0]
                Node *idx = node_new(P, N_INT, name);
                idx->i = name->i;
                Node *m = node_new(P, N_INDEX, t);
                m->a = n;
                m->b = idx;
                n = m;
                continue;
            }
            if (name->kind != T_NAME) {
                perr(P, name, "expected an attribute name after '.'");
                return NULL;
            }
            Node *m = node_on(P, N_ATTR, name, n, name);
            n = m;
        } else if (is_op(t, "[")) {
            if (!(n = parse_subscript(P, n))) return NULL;
        } else if (is_op(t, "(")) {
            Node *m = node_new(P, N_CALL, t);
            m->a = n;
            if (parse_args(P, &m->list)) return NULL;
            n = m;
        } else {
            return n;
        }
    }
}

// "x | f(args)" and "x is [not] t(args)" after a unary expression.
static Node *parse_filters(Parser *P, Node *n) {
    for (;;) {
        const Tok *t = peek(P);
        if (is_op(t, "|")) {
            next(P);
            const Tok *name = peek(P);
            if (expect_kind(P, T_NAME, "a filter name")) return NULL;
            Node *m = node_on(P, N_FILTER, name, n, name);
            if (is_op(peek(P), "(") && parse_args(P, &m->list)) return NULL;
            n = m;
        } else if (is_name(t, "is")) {
            next(P);
            int neg = 0;
            if (is_name(peek(P), "not")) {
                next(P);
                neg = 1;
            }
            const Tok *name = peek(P);
            Node *m = node_new(P, N_TEST, name);
            if (name->kind == T_NAME || is_op(name, "==") || is_op(name, "!=") ||
                is_op(name, "<") || is_op(name, ">") || is_op(name, "<=") || is_op(name, ">=")) {
                next(P);
            } else {
                perr(P, name, "expected a test name after 'is'");
                return NULL;
            }
            m->a = n;
            m->op = neg;
            m->s = name->s;   // a name, or an operator (`is ==`, `is >=`)
            m->n = name->n;
            const Tok *u = peek(P);
            if (is_op(u, "(")) {
                if (parse_args(P, &m->list)) return NULL;
            } else if (u->kind == T_STRING || u->kind == T_INT || u->kind == T_FLOAT ||
                       is_op(u, "[") || is_op(u, "{") ||
                       (u->kind == T_NAME && !is_name(u, "and") && !is_name(u, "or") &&
                        !is_name(u, "else") && !is_name(u, "if") && !is_name(u, "in") &&
                        !is_name(u, "is") && !is_name(u, "not"))) {
                Node *arg = parse_primary(P);   // `is divisibleby 3`, `is equalto 'x'`
                if (!arg) return NULL;
                list_push(P->arena, &m->list, arg);
            }
            n = m;
        } else {
            return n;
        }
    }
}

static Node *parse_unary(Parser *P, int with_filter) {
    const Tok *t = peek(P);
    Node *n;
    if (nest_in(P, t)) return NULL;
    if (is_op(t, "-") || is_op(t, "+")) {
        next(P);
        n = node_new(P, is_op(t, "-") ? N_NEG : N_POS, t);
        if (!(n->a = parse_unary(P, 0))) return NULL;
    } else {
        Node *p = parse_primary(P);
        if (!p || !(n = parse_postfix(P, p))) return NULL;
    }
    if (with_filter && !(n = parse_filters(P, n))) return NULL;
    P->depth--;
    return n;
}

static Node *binary(Parser *P, const Tok *at, int op, Node *a, Node *b) {
    if (!a || !b) return NULL;
    Node *n = node_new(P, N_BIN, at);
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static Node *parse_pow(Parser *P) {
    Node *n = parse_unary(P, 1);
    while (n && is_op(peek(P), "**")) {
        const Tok *t = next(P);
        n = binary(P, t, OP_POW, n, parse_unary(P, 1));
    }
    return n;
}

static Node *parse_math2(Parser *P) {
    Node *n = parse_pow(P);
    for (;;) {
        const Tok *t = peek(P);
        int op = is_op(t, "*") ? OP_MUL : is_op(t, "/") ? OP_DIV : is_op(t, "//") ? OP_FLOORDIV
               : is_op(t, "%") ? OP_MOD : -1;
        if (!n || op < 0) return n;
        next(P);
        n = binary(P, t, op, n, parse_pow(P));
    }
}

static Node *parse_concat(Parser *P) {
    Node *n = parse_math2(P);
    while (n && is_op(peek(P), "~")) {
        const Tok *t = next(P);
        n = binary(P, t, OP_CONCAT, n, parse_math2(P));
    }
    return n;
}

static Node *parse_math1(Parser *P) {
    Node *n = parse_concat(P);
    for (;;) {
        const Tok *t = peek(P);
        int op = is_op(t, "+") ? OP_ADD : is_op(t, "-") ? OP_SUB : -1;
        if (!n || op < 0) return n;
        next(P);
        n = binary(P, t, op, n, parse_concat(P));
    }
}

static int peek_is_compare(Parser *P) {
    const Tok *t = peek(P);
    return is_op(t, "==") || is_op(t, "!=") || is_op(t, "<") || is_op(t, "<=") || is_op(t, ">") ||
           is_op(t, ">=") || is_name(t, "in") || (is_name(t, "not") && is_name(peek2(P), "in"));
}

// Comparisons chain as in Python: a < b <= c is (a < b) and (b <= c).
static Node *parse_compare(Parser *P) {
    Node *n = parse_math1(P), *chain = NULL;
    for (;;) {
        const Tok *t = peek(P);
        int op = is_op(t, "==") ? OP_EQ : is_op(t, "!=") ? OP_NE : is_op(t, "<") ? OP_LT
               : is_op(t, "<=") ? OP_LE : is_op(t, ">") ? OP_GT : is_op(t, ">=") ? OP_GE
               : is_name(t, "in") ? OP_IN : -1;
        if (!n) return NULL;
        if (op < 0 && is_name(t, "not") && is_name(peek2(P), "in")) {
            next(P);
            op = OP_NOTIN;
        }
        if (op < 0) return chain ? chain : n;
        next(P);
        Node *left = chain ? n->b : n;
        n = binary(P, t, op, left, parse_math1(P));
        if (!n) return NULL;
        if (chain) {
            Node *both = node_new(P, N_AND, t);
            both->a = chain;
            both->b = n;
            chain = both;
        } else if (peek_is_compare(P)) {
            chain = n;
        }
    }
}

static Node *parse_not(Parser *P) {
    const Tok *t = peek(P);
    if (!is_name(t, "not")) return parse_compare(P);
    next(P);
    if (nest_in(P, t)) return NULL;
    Node *n = node_new(P, N_NOT, t);
    if (!(n->a = parse_not(P))) return NULL;
    P->depth--;
    return n;
}

// `a and b and ...` over the `not` level (or = 0), `a or b or ...` over the `and` level (or = 1).
static Node *parse_logical(Parser *P, int or) {
    Node *n = or ? parse_logical(P, 0) : parse_not(P);
    while (n && is_name(peek(P), or ? "or" : "and")) {
        const Tok *t = next(P);
        Node *m = node_new(P, or ? N_OR : N_AND, t);
        m->a = n;
        if (!(m->b = or ? parse_logical(P, 0) : parse_not(P))) return NULL;
        n = m;
    }
    return n;
}

static Node *parse_or(Parser *P) { return parse_logical(P, 1); }

static Node *parse_expr(Parser *P) {
    const Tok *t0 = peek(P);
    if (nest_in(P, t0)) return NULL;
    Node *n = parse_or(P);
    while (n && is_name(peek(P), "if")) {
        const Tok *t = next(P);
        Node *m = node_new(P, N_COND, t);
        m->a = n;
        if (!(m->b = parse_or(P))) return NULL;
        if (is_name(peek(P), "else")) {
            next(P);
            if (!(m->c = parse_expr(P))) return NULL;
        }
        n = m;
    }
    P->depth--;
    return n;
}

// Assignment and loop targets: a name, "a, b" or "(a, b)"; with allow_attr, also "ns.attr".
static Node *parse_target(Parser *P, int allow_attr) {
    const Tok *t = peek(P);
    int paren = is_op(t, "(");
    if (paren) next(P);
    Node *list = node_new(P, N_LIST, t);
    for (;;) {
        const Tok *name = peek(P);
        if (expect_kind(P, T_NAME, "a variable name")) return NULL;
        Node *n = node_on(P, N_NAME, name, NULL, name);
        if (allow_attr && !paren && list->list.n == 0 && is_op(peek(P), ".")) {
            next(P);
            const Tok *attr = peek(P);
            if (expect_kind(P, T_NAME, "an attribute name")) return NULL;
            Node *m = node_on(P, N_ATTR, attr, n, attr);
            return m;
        }
        list_push(P->arena, &list->list, n);
        if (!is_op(peek(P), ",")) break;
        next(P);
    }
    if (paren && expect_op(P, ")")) return NULL;
    return list->list.n == 1 && !paren ? list->list.v[0] : list;
}

static int parse_body(Parser *P, NodeList *body, const char *const *ends, const Tok *opened,
                      const char *what);

static int expect_close(Parser *P) { return expect_kind(P, T_STMT_CLOSE, "'%}'"); }

// The statements up to {% END %} and that tag, consumed.
static int parse_closed_body(Parser *P, NodeList *body, const char *end, const Tok *opened,
                             const char *what) {
    const char *const ends[] = {end, NULL};
    if (parse_body(P, body, ends, opened, what)) return -1;
    next(P);
    return expect_close(P);
}

// {% if %}: the elif chain becomes nested ifs in the else bodies.
static Node *parse_if(Parser *P, const Tok *kw) {
    static const char *const ends[] = {"elif", "else", "endif", NULL};
    Node *n = node_new(P, N_IF, kw);
    if (!(n->a = parse_expr(P)) || expect_close(P)) return NULL;
    if (parse_body(P, &n->list, ends, kw, "if")) return NULL;
    const Tok *end = next(P);   // elif / else / endif
    if (is_name(end, "elif")) {
        Node *m = parse_if(P, end);
        if (!m) return NULL;
        list_push(P->arena, &n->list2, m);
        return n;
    }
    if (expect_close(P)) return NULL;
    if (is_name(end, "else") && parse_closed_body(P, &n->list2, "endif", kw, "if")) return NULL;
    return n;
}

static Node *parse_for(Parser *P, const Tok *kw) {
    static const char *const ends[] = {"else", "endfor", NULL};
    Node *n = node_new(P, N_FOR, kw);
    if (!(n->a = parse_target(P, 0))) return NULL;
    if (!is_name(peek(P), "in")) {
        perr(P, peek(P), "expected 'in' in a for loop");
        return NULL;
    }
    next(P);
    if (!(n->b = parse_or(P))) return NULL;
    if (is_name(peek(P), "if")) {
        next(P);
        if (!(n->c = parse_or(P))) return NULL;
    }
    if (is_name(peek(P), "recursive")) {
        perr(P, peek(P), "unsupported construct 'recursive' loops");
        return NULL;
    }
    if (expect_close(P)) return NULL;
    P->loops++;
    int rc = parse_body(P, &n->list, ends, kw, "for");
    P->loops--;
    if (rc) return NULL;
    const Tok *end = next(P);
    if (expect_close(P)) return NULL;
    if (is_name(end, "else") && parse_closed_body(P, &n->list2, "endfor", kw, "for")) return NULL;
    return n;
}

static Node *parse_set(Parser *P, const Tok *kw) {
    Node *n = node_new(P, N_SET, kw);
    if (!(n->a = parse_target(P, 1))) return NULL;
    if (is_op(peek(P), "=")) {
        next(P);
        const Tok *t = peek(P);
        if (!(n->b = parse_expr(P))) return NULL;
        if (is_op(peek(P), ",")) {   // set a, b = x, y
            Node *tuple = node_new(P, N_LIST, t);
            list_push(P->arena, &tuple->list, n->b);
            while (is_op(peek(P), ",")) {
                next(P);
                Node *item = parse_expr(P);
                if (!item) return NULL;
                list_push(P->arena, &tuple->list, item);
            }
            n->b = tuple;
        }
        return expect_close(P) ? NULL : n;
    }
    if (n->a->kind != N_NAME) {
        perr(P, peek(P), "a block set assigns one plain name");
        return NULL;
    }
    if (expect_close(P) || parse_closed_body(P, &n->list, "endset", kw, "set")) return NULL;
    return n;
}

// "(a, b=default, ...)": a macro's or a call block's parameters into l.
static int parse_params(Parser *P, NodeList *l) {
    if (expect_op(P, "(")) return -1;
    while (!is_op(peek(P), ")")) {
        const Tok *p = peek(P);
        if (expect_kind(P, T_NAME, "a parameter name")) return -1;
        Node *param = node_on(P, N_PARAM, p, NULL, p);
        if (is_op(peek(P), "=")) {
            next(P);
            if (!(param->a = parse_expr(P))) return -1;
        }
        list_push(P->arena, l, param);
        if (!is_op(peek(P), ",")) break;
        next(P);
    }
    return expect_op(P, ")");
}

// The body of a macro or call block, up to its end tag: a loop around it is not around the body.
static int parse_macro_body(Parser *P, Node *n, const char *end, const Tok *kw) {
    int loops = P->loops;
    P->loops = 0;
    int rc = parse_closed_body(P, &n->list2, end, kw, kw->s);
    P->loops = loops;
    return rc;
}

static Node *parse_macro(Parser *P, const Tok *kw) {
    Node *n = node_new(P, N_MACRO, kw);
    const Tok *name = peek(P);
    if (expect_kind(P, T_NAME, "a macro name")) return NULL;
    n->s = name->s;
    n->n = name->n;
    if (parse_params(P, &n->list) || expect_close(P) || parse_macro_body(P, n, "endmacro", kw))
        return NULL;
    return n;
}

// {% call [(params)] macro(args) %}body{% endcall %}: the macro is called with `caller`, a macro
// whose body is this one (seeing the variables around the block).
static Node *parse_call_block(Parser *P, const Tok *kw) {
    Node *n = node_new(P, N_CALLBLOCK, kw);
    n->s = "caller";
    n->n = 6;
    if (is_op(peek(P), "(") && parse_params(P, &n->list)) return NULL;
    const Tok *at = peek(P);
    if (!(n->a = parse_expr(P))) return NULL;
    if (n->a->kind != N_CALL) {
        perr(P, at, "a call block needs a macro call after 'call'");
        return NULL;
    }
    if (expect_close(P) || parse_macro_body(P, n, "endcall", kw)) return NULL;
    return n;
}

// One {% ... %} statement after its opening; *n is NULL for statements that render nothing and
// need no node ({% generation %}).
static int parse_stmt(Parser *P, Node **n) {
    const Tok *kw = peek(P);
    char d[64];
    *n = NULL;
    if (kw->kind != T_NAME)
        return perr(P, kw, "expected a statement name, got %s", tok_desc(kw, d, sizeof d));
    next(P);
    if (is_name(kw, "if")) *n = parse_if(P, kw);
    else if (is_name(kw, "for")) *n = parse_for(P, kw);
    else if (is_name(kw, "set")) *n = parse_set(P, kw);
    else if (is_name(kw, "macro")) *n = parse_macro(P, kw);
    else if (is_name(kw, "call")) *n = parse_call_block(P, kw);
    else if (is_name(kw, "break") || is_name(kw, "continue")) {
        if (!P->loops) return perr(P, kw, "'%s' outside a for loop", kw->s);
        *n = node_new(P, is_name(kw, "break") ? N_BREAK : N_CONTINUE, kw);
        if (expect_close(P)) return -1;
        return 0;
    } else if (is_name(kw, "generation") || is_name(kw, "endgeneration")) {
        return expect_close(P);   // transformers' assistant-mask markers: no output
    } else {
        return perr(P, kw, "unsupported construct '%.*s'", (int)(kw->n > 40 ? 40 : kw->n), kw->s);
    }
    return *n ? 0 : -1;
}

// Statements up to a {% NAME %} whose NAME is in ends (left unconsumed, after its '{%'), or to
// the end of the template when ends is NULL.
static int parse_body(Parser *P, NodeList *body, const char *const *ends, const Tok *opened,
                      const char *what) {
    if (nest_in(P, opened)) return -1;
    for (;;) {
        const Tok *t = peek(P);
        if (t->kind == T_EOF) {
            if (!ends) break;
            size_t last = 0;
            while (ends[last + 1]) last++;
            return perr(P, opened, "'%s' is never closed (expected '%s')", what, ends[last]);
        }
        if (t->kind == T_TEXT) {
            next(P);
            Node *n = node_on(P, N_TEXT, t, NULL, t);
            list_push(P->arena, body, n);
        } else if (t->kind == T_EXPR_OPEN) {
            next(P);
            Node *n = node_new(P, N_OUTPUT, t);
            if (!(n->a = parse_expr(P)) || expect_kind(P, T_EXPR_CLOSE, "'}}'")) return -1;
            list_push(P->arena, body, n);
        } else if (t->kind == T_STMT_OPEN) {
            const Tok *kw = peek2(P);
            for (int i = 0; ends && ends[i]; i++)
                if (is_name(kw, ends[i])) {
                    next(P);
                    P->depth--;
                    return 0;
                }
            if (kw->kind == T_NAME && kw->n > 3 && !memcmp(kw->s, "end", 3) &&
                !is_name(kw, "endgeneration"))
                return perr(P, kw, "unexpected '%.*s'%s%s", (int)(kw->n > 40 ? 40 : kw->n), kw->s,
                            ends ? " in " : "", ends ? what : "");
            if (is_name(kw, "else") || is_name(kw, "elif"))
                return perr(P, kw, "unexpected '%.*s'", (int)kw->n, kw->s);
            next(P);
            Node *n;
            if (parse_stmt(P, &n)) return -1;
            if (n) list_push(P->arena, body, n);
        } else {
            char d[64];
            return perr(P, t, "unexpected %s", tok_desc(t, d, sizeof d));
        }
    }
    P->depth--;
    return 0;
}

// The source as Jinja reads it: every \r\n and \r is \n, and one newline at the very end is dropped
// (keep_trailing_newline is off in transformers, as by default).
static const char *normalize_newlines(Arena *a, const char *text, size_t *len) {
    size_t n = strlen(text), k = 0;
    char *s = arena_alloc(a, n + 1);
    for (size_t i = 0; i < n; i++) {
        if (text[i] == '\r' && i + 1 < n && text[i + 1] == '\n') continue;
        s[k++] = text[i] == '\r' ? '\n' : text[i];
    }
    if (k && s[k - 1] == '\n') k--;
    s[k] = 0;
    *len = k;
    return s;
}

int jinja_parse(const char *text, JinjaTemplate **out, char *err, size_t errlen) {
    *out = NULL;
    if (!text) return util_err(err, errlen, "no template");
    JinjaTemplate *t = CALLOC_CHECK(1, sizeof *t);
    size_t len;
    const char *src = normalize_newlines(&t->arena, text, &len);
    Lexer L = {.src = src, .len = len, .arena = &t->arena, .at_line = 1, .at_col = 1,
               .err = err, .errlen = errlen};
    int rc = lex_all(&L);
    if (rc == 0) {
        Parser P = {.t = L.toks, .arena = &t->arena, .err = err, .errlen = errlen};
        rc = parse_body(&P, &t->body, NULL, &L.toks[0], "template");
    }
    free(L.toks);
    if (rc) {
        jinja_free(t);
        return -1;
    }
    *out = t;
    return 0;
}

void jinja_free(JinjaTemplate *t) {
    if (!t) return;
    arena_free(&t->arena);
    free(t);
}
