// jinja: a small Jinja interpreter for chat templates (see jinja.h for the supported subset).
//
// Three stages: the lexer cuts the source into text and tag tokens, applying the whitespace rules
// (trim_blocks, lstrip_blocks, {%- -%}); the parser builds a tree of Nodes (statements and
// expressions, each with its line and column); the renderer walks the tree with a chain of
// variable frames. Every value made while rendering lives in one arena freed when the render
// ends, so values are passed around by copy without reference counts.
#define _GNU_SOURCE
#include "jinja.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "utf8.h"
#include "util.h"

#define JINJA_MAX_NEST    200                    // nesting of blocks and expressions in the source
#define JINJA_MAX_MACRO   64                     // nested macro calls while rendering
#define JINJA_MAX_STEPS   10000000LL             // evaluation steps per render
#define JINJA_MAX_BYTES   ((size_t)256 << 20)    // values and output per render
#define JINJA_MAX_RANGE   1000000                // items one range() may make

// ---------------------------------------------------------------------------------------------
// Arena: bump allocation in chunks, all freed at once. `used` counts bytes for the render limit.

typedef struct Chunk {
    struct Chunk *next;
    size_t cap, off;
    _Alignas(16) unsigned char data[];
} Chunk;

typedef struct {
    Chunk *head;
    size_t used;
} Arena;

static void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (!a->head || a->head->cap - a->head->off < n) {
        size_t cap = n > 65536 ? n : 65536;
        Chunk *c = MALLOC_CHECK(sizeof *c + cap);
        c->next = a->head;
        c->cap = cap;
        c->off = 0;
        a->head = c;
    }
    void *p = a->head->data + a->head->off;
    a->head->off += n;
    a->used += n;
    return p;
}

static char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static void arena_free(Arena *a) {
    for (Chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    a->head = NULL;
    a->used = 0;
}

// A growable byte string (malloc'd), for output and for building strings.
typedef struct {
    char *s;
    size_t n, cap;
} Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->s = REALLOC_CHECK(b->s, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
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

static int lex_err(Lexer *L, size_t off, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int lex_err(Lexer *L, size_t off, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    int line, col;
    src_pos(L->src, off, &line, &col);
    return util_err(L->err, L->errlen, "line %d column %d: %s", line, col, msg);
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

static int is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

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
                if ((unsigned char)c >= 0x80) return lex_err(L, L->pos, "unexpected non-ASCII character in a tag");
                return lex_err(L, L->pos, "unexpected character '%c' in a tag", c);
            }
            if (c == '{') braces++;
            if (c == '}' && braces > 0) braces--;
            Tok *t = lex_push(L, T_OP, L->pos);
            t->s = s;
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
            if (L->src[p] == '{' && (L->src[p + 1] == '{' || L->src[p + 1] == '%' || L->src[p + 1] == '#')) {
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

// ---------------------------------------------------------------------------------------------
// The tree.

typedef enum {
    // statements
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_MACRO, N_BREAK, N_CONTINUE,
    // expressions
    N_STR, N_INT, N_FLOAT, N_BOOL, N_NONE, N_LIST, N_DICT, N_PAIR, N_NAME, N_ATTR, N_INDEX,
    N_SLICE, N_CALL, N_KWARG, N_FILTER, N_TEST, N_BIN, N_NOT, N_NEG, N_POS, N_AND, N_OR, N_COND,
    N_PARAM
} NodeKind;

typedef enum {
    OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
    OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN
} BinOp;

typedef struct Node Node;
typedef struct {
    Node **v;
    size_t n, cap;
} NodeList;

struct Node {
    NodeKind kind;
    int op;            // BinOp; N_TEST: negated; N_LIST: 1 when written as a tuple
    int line, col;
    const char *s;     // N_TEXT, N_STR, N_NAME, N_ATTR, N_FILTER, N_TEST, N_KWARG, N_MACRO, N_PARAM
    size_t n;
    int64_t i;         // N_INT, N_BOOL
    double f;          // N_FLOAT
    Node *a, *b, *c, *d;
    NodeList list;     // bodies, items, arguments, parameters
    NodeList list2;    // else bodies, macro bodies
};
// Children by kind:
//   N_OUTPUT a=expr; N_IF a=cond list=body list2=else; N_FOR a=target b=iterable c=filter
//   list=body list2=else; N_SET a=target b=value (NULL: block set, list=body); N_MACRO s=name
//   list=N_PARAMs (a=default or NULL) list2=body; N_LIST list=items; N_DICT list=N_PAIRs (a, b);
//   N_ATTR a=object s=name; N_INDEX a=object b=index; N_SLICE a=object b,c,d=start,stop,step
//   (each may be NULL); N_CALL a=callee list=args (N_KWARG s=name a=value among them);
//   N_FILTER/N_TEST a=operand s=name list=args; N_BIN op a b; N_NOT/N_NEG/N_POS a;
//   N_AND/N_OR a b; N_COND a=then b=cond c=else (NULL: undefined).

struct JinjaTemplate {
    Arena arena;
    NodeList body;
};

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

static const Tok *peek(Parser *P) { return &P->t[P->pos]; }
static const Tok *peek2(Parser *P) { return P->t[P->pos].kind == T_EOF ? &P->t[P->pos] : &P->t[P->pos + 1]; }
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

static int perr(Parser *P, const Tok *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int perr(Parser *P, const Tok *at, const char *fmt, ...) {
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return util_err(P->err, P->errlen, "line %d column %d: %s", at->line, at->col, msg);
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
    if (++P->depth > JINJA_MAX_NEST) return perr(P, at, "nesting deeper than %d levels", JINJA_MAX_NEST);
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
            arg = node_new(P, N_KWARG, t);
            arg->s = t->s;
            arg->n = t->n;
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
        if (is_name(t, "true") || is_name(t, "True") || is_name(t, "false") || is_name(t, "False")) {
            n = node_new(P, N_BOOL, t);
            n->i = t->s[0] == 't' || t->s[0] == 'T';
        } else if (is_name(t, "none") || is_name(t, "None")) {
            n = node_new(P, N_NONE, t);
        } else {
            n = node_new(P, N_NAME, t);
            n->s = t->s;
            n->n = t->n;
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
            if (!(pair->a = parse_expr(P)) || expect_op(P, ":") || !(pair->b = parse_expr(P))) return NULL;
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
            Node *m = node_new(P, N_ATTR, name);
            m->a = n;
            m->s = name->s;
            m->n = name->n;
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
            Node *m = node_new(P, N_FILTER, name);
            m->a = n;
            m->s = name->s;
            m->n = name->n;
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
            if (name->kind == T_NAME || is_op(name, "==") || is_op(name, "!=") || is_op(name, "<") ||
                is_op(name, ">") || is_op(name, "<=") || is_op(name, ">=")) {
                next(P);
            } else {
                perr(P, name, "expected a test name after 'is'");
                return NULL;
            }
            m->a = n;
            m->op = neg;
            if (is_name(name, "none") || is_name(name, "true") || is_name(name, "false")) {
                m->s = name->s;   // `is none` etc.: names that are also literals
            } else {
                m->s = name->s;
            }
            m->n = name->n;
            const Tok *u = peek(P);
            if (is_op(u, "(")) {
                if (parse_args(P, &m->list)) return NULL;
            } else if (u->kind == T_STRING || u->kind == T_INT || u->kind == T_FLOAT || is_op(u, "[") ||
                       is_op(u, "{") ||
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

static Node *parse_compare(Parser *P) {
    Node *n = parse_math1(P);
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
        if (op < 0) return n;
        next(P);
        n = binary(P, t, op, n, parse_math1(P));
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

static Node *parse_and(Parser *P) {
    Node *n = parse_not(P);
    while (n && is_name(peek(P), "and")) {
        const Tok *t = next(P);
        Node *m = node_new(P, N_AND, t);
        m->a = n;
        if (!(m->b = parse_not(P))) return NULL;
        n = m;
    }
    return n;
}

static Node *parse_or(Parser *P) {
    Node *n = parse_and(P);
    while (n && is_name(peek(P), "or")) {
        const Tok *t = next(P);
        Node *m = node_new(P, N_OR, t);
        m->a = n;
        if (!(m->b = parse_and(P))) return NULL;
        n = m;
    }
    return n;
}

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
        Node *n = node_new(P, N_NAME, name);
        n->s = name->s;
        n->n = name->n;
        if (allow_attr && !paren && list->list.n == 0 && is_op(peek(P), ".")) {
            next(P);
            const Tok *attr = peek(P);
            if (expect_kind(P, T_NAME, "an attribute name")) return NULL;
            Node *m = node_new(P, N_ATTR, attr);
            m->a = n;
            m->s = attr->s;
            m->n = attr->n;
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
    if (is_name(end, "else")) {
        static const char *const endif[] = {"endif", NULL};
        if (parse_body(P, &n->list2, endif, kw, "if")) return NULL;
        next(P);
        if (expect_close(P)) return NULL;
    }
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
    if (is_name(end, "else")) {
        static const char *const endfor[] = {"endfor", NULL};
        if (parse_body(P, &n->list2, endfor, kw, "for")) return NULL;
        next(P);
        if (expect_close(P)) return NULL;
    }
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
    static const char *const ends[] = {"endset", NULL};
    if (expect_close(P) || parse_body(P, &n->list, ends, kw, "set")) return NULL;
    next(P);
    return expect_close(P) ? NULL : n;
}

static Node *parse_macro(Parser *P, const Tok *kw) {
    Node *n = node_new(P, N_MACRO, kw);
    const Tok *name = peek(P);
    if (expect_kind(P, T_NAME, "a macro name")) return NULL;
    n->s = name->s;
    n->n = name->n;
    if (expect_op(P, "(")) return NULL;
    while (!is_op(peek(P), ")")) {
        const Tok *p = peek(P);
        if (expect_kind(P, T_NAME, "a parameter name")) return NULL;
        Node *param = node_new(P, N_PARAM, p);
        param->s = p->s;
        param->n = p->n;
        if (is_op(peek(P), "=")) {
            next(P);
            if (!(param->a = parse_expr(P))) return NULL;
        }
        list_push(P->arena, &n->list, param);
        if (!is_op(peek(P), ",")) break;
        next(P);
    }
    static const char *const ends[] = {"endmacro", NULL};
    if (expect_op(P, ")") || expect_close(P)) return NULL;
    int loops = P->loops;   // a loop around the definition is not around the body
    P->loops = 0;
    int rc = parse_body(P, &n->list2, ends, kw, "macro");
    P->loops = loops;
    if (rc) return NULL;
    next(P);
    return expect_close(P) ? NULL : n;
}

// One {% ... %} statement after its opening; *n is NULL for statements that render nothing and
// need no node ({% generation %}).
static int parse_stmt(Parser *P, Node **n) {
    const Tok *kw = peek(P);
    char d[64];
    *n = NULL;
    if (kw->kind != T_NAME) return perr(P, kw, "expected a statement name, got %s", tok_desc(kw, d, sizeof d));
    next(P);
    if (is_name(kw, "if")) *n = parse_if(P, kw);
    else if (is_name(kw, "for")) *n = parse_for(P, kw);
    else if (is_name(kw, "set")) *n = parse_set(P, kw);
    else if (is_name(kw, "macro")) *n = parse_macro(P, kw);
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
            Node *n = node_new(P, N_TEXT, t);
            n->s = t->s;
            n->n = t->n;
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
            if (kw->kind == T_NAME && kw->n > 3 && !memcmp(kw->s, "end", 3) && !is_name(kw, "endgeneration"))
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

int jinja_parse(const char *text, JinjaTemplate **out, char *err, size_t errlen) {
    *out = NULL;
    if (!text) return util_err(err, errlen, "no template");
    JinjaTemplate *t = CALLOC_CHECK(1, sizeof *t);
    Lexer L = {.src = text, .len = strlen(text), .arena = &t->arena, .at_line = 1, .at_col = 1,
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

// ---------------------------------------------------------------------------------------------
// Values. Strings are (pointer, length) into the template, the context or the render's arena.

typedef enum { V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC } VKind;

typedef struct List List;
typedef struct Dict Dict;
typedef struct {
    VKind k;
    union {
        int64_t i;        // V_BOOL, V_INT, V_FUNC (which builtin)
        double f;
        struct {
            const char *s;
            size_t n;
        } str;
        List *l;
        Dict *d;          // V_DICT, V_NS
        const Node *m;    // V_MACRO
    };
} Value;

struct List {
    Value *v;
    size_t n, cap;
};

typedef struct {
    const char *s;
    size_t n;
} Str;

struct Dict {
    Str *keys;
    Value *vals;
    size_t n, cap;
};

typedef struct Frame {
    struct Frame *parent;
    Dict vars;
} Frame;

typedef struct {
    Arena arena;
    char *err;
    size_t errlen;
    int64_t steps;
    int macro_depth;
    size_t out_bytes;   // bytes in the output buffers now being written
    Frame *root;
} Render;

enum { FLOW_BREAK = 1, FLOW_CONTINUE = 2 };
enum { F_RANGE, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME };
static const char *const FUNC_NAMES[] = {"range", "namespace", "dict", "raise_exception", "strftime_now", NULL};

static Value v_undef(void) { return (Value){.k = V_UNDEF}; }
static Value v_none(void) { return (Value){.k = V_NONE}; }
static Value v_bool(int b) { return (Value){.k = V_BOOL, .i = !!b}; }
static Value v_int(int64_t i) { return (Value){.k = V_INT, .i = i}; }
static Value v_float(double f) { return (Value){.k = V_FLOAT, .f = f}; }
static Value v_str(const char *s, size_t n) { return (Value){.k = V_STR, .str = {s, n}}; }

static int rerr(Render *R, const Node *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int rerr(Render *R, const Node *at, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return util_err(R->err, R->errlen, "line %d column %d: %s", at->line, at->col, msg);
}

// Counts one evaluation step and checks the render's limits.
static int step(Render *R, const Node *at) {
    if (++R->steps > JINJA_MAX_STEPS)
        return rerr(R, at, "the render took more than %lld steps", (long long)JINJA_MAX_STEPS);
    if (R->arena.used + R->out_bytes > JINJA_MAX_BYTES)
        return rerr(R, at, "the render used more than %zu MiB", JINJA_MAX_BYTES >> 20);
    return 0;
}

static const char *kind_name(VKind k) {
    static const char *names[] = {"undefined", "none", "boolean", "integer", "float", "string",
                                  "list", "dict", "namespace", "macro", "function"};
    return names[k];
}

static List *list_new(Render *R, size_t cap) {
    List *l = arena_alloc(&R->arena, sizeof *l);
    l->n = 0;
    l->cap = cap ? cap : 4;
    l->v = arena_alloc(&R->arena, l->cap * sizeof *l->v);
    return l;
}

static void list_add(Render *R, List *l, Value v) {
    if (l->n == l->cap) {
        Value *nv = arena_alloc(&R->arena, 2 * l->cap * sizeof *nv);
        memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap *= 2;
    }
    l->v[l->n++] = v;
}

static Value v_list(List *l) { return (Value){.k = V_LIST, .l = l}; }

static Dict *dict_new(Render *R) {
    Dict *d = arena_alloc(&R->arena, sizeof *d);
    memset(d, 0, sizeof *d);
    return d;
}

static Value *dict_get(const Dict *d, const char *s, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i].n == n && !memcmp(d->keys[i].s, s, n)) return &d->vals[i];
    return NULL;
}

static void dict_set(Arena *a, Dict *d, const char *s, size_t n, Value v) {
    Value *old = dict_get(d, s, n);
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

static Value v_dict(Dict *d) { return (Value){.k = V_DICT, .d = d}; }

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
        List *l = list_new(R, (size_t)cJSON_GetArraySize(j));
        for (const cJSON *c = j->child; c; c = c->next) list_add(R, l, from_json(R, c));
        return v_list(l);
    }
    if (cJSON_IsObject(j)) {
        Dict *d = dict_new(R);
        for (const cJSON *c = j->child; c; c = c->next)
            if (c->string) dict_set(&R->arena, d, c->string, strlen(c->string), from_json(R, c));
        return v_dict(d);
    }
    return v_none();
}

static int truthy(Value v) {
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

static int is_num(Value v) { return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL; }
static double num(Value v) { return v.k == V_FLOAT ? v.f : (double)v.i; }

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
static int buf_value(Render *R, const Node *at, Buf *b, Value v) {
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
    if (depth > JINJA_MAX_NEST) return rerr(R, at, "a value nested deeper than %d levels", JINJA_MAX_NEST);
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

static void buf_json_str(Buf *b, const char *s, size_t n) {
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"') buf_str(b, "\\\"");
        else if (c == '\\') buf_str(b, "\\\\");
        else if (c == '\n') buf_str(b, "\\n");
        else if (c == '\r') buf_str(b, "\\r");
        else if (c == '\t') buf_str(b, "\\t");
        else if (c == '\b') buf_str(b, "\\b");
        else if (c == '\f') buf_str(b, "\\f");
        else if (c < 0x20) buf_printf(b, "\\u%04x", c);
        else buf_add(b, s + i, 1);
    }
    buf_add(b, "\"", 1);
}

static void buf_newline_indent(Buf *b, int indent, int depth) {
    buf_add(b, "\n", 1);
    for (int i = 0; i < indent * depth; i++) buf_add(b, " ", 1);
}

// json.dumps(v, ensure_ascii=False, indent=indent) as transformers' tojson writes it: ", " and
// ": " without indent, "," and ": " with it.
static int buf_json(Render *R, const Node *at, Buf *b, Value v, int indent, int depth) {
    if (depth > JINJA_MAX_NEST) return rerr(R, at, "a value nested deeper than %d levels", JINJA_MAX_NEST);
    switch (v.k) {
    case V_UNDEF: case V_NONE: buf_str(b, "null"); return 0;
    case V_BOOL: buf_str(b, v.i ? "true" : "false"); return 0;
    case V_INT: buf_printf(b, "%lld", (long long)v.i); return 0;
    case V_FLOAT:
        if (isnan(v.f)) buf_str(b, "NaN");
        else if (isinf(v.f)) buf_str(b, v.f < 0 ? "-Infinity" : "Infinity");
        else buf_float(b, v.f);
        return 0;
    case V_STR: buf_json_str(b, v.str.s, v.str.n); return 0;
    case V_LIST: case V_DICT: case V_NS: {
        int islist = v.k == V_LIST;
        size_t n = islist ? v.l->n : v.d->n;
        buf_add(b, islist ? "[" : "{", 1);
        for (size_t i = 0; i < n; i++) {
            if (i) buf_str(b, indent > 0 ? "," : ", ");
            if (indent > 0) buf_newline_indent(b, indent, depth + 1);
            if (!islist) {
                buf_json_str(b, v.d->keys[i].s, v.d->keys[i].n);
                buf_str(b, ": ");
            }
            if (buf_json(R, at, b, islist ? v.l->v[i] : v.d->vals[i], indent, depth + 1)) return -1;
        }
        if (indent > 0 && n) buf_newline_indent(b, indent, depth);
        buf_add(b, islist ? "]" : "}", 1);
        return 0;
    }
    default: return rerr(R, at, "a %s cannot be written as JSON", kind_name(v.k));
    }
}

// A finished Buf as a string value in the arena (the Buf is freed).
static Value buf_take(Render *R, Buf *b) {
    Value v = v_str(arena_strndup(&R->arena, b->s ? b->s : "", b->n), b->n);
    free(b->s);
    return v;
}

// Deep equality as Python's ==: numbers by value (True == 1), lists and dicts item by item.
static int val_eq(Value a, Value b, int depth) {
    if (depth > JINJA_MAX_NEST) return 0;
    if (is_num(a) && is_num(b)) return num(a) == num(b) && (a.k == V_FLOAT || b.k == V_FLOAT || a.i == b.i);
    if (a.k != b.k) return 0;
    switch (a.k) {
    case V_UNDEF: case V_NONE: return 1;
    case V_STR: return a.str.n == b.str.n && !memcmp(a.str.s, b.str.s, a.str.n);
    case V_LIST:
        if (a.l->n != b.l->n) return 0;
        for (size_t i = 0; i < a.l->n; i++)
            if (!val_eq(a.l->v[i], b.l->v[i], depth + 1)) return 0;
        return 1;
    case V_DICT: case V_NS:
        if (a.d->n != b.d->n) return 0;
        for (size_t i = 0; i < a.d->n; i++) {
            Value *o = dict_get(b.d, a.d->keys[i].s, a.d->keys[i].n);
            if (!o || !val_eq(a.d->vals[i], *o, depth + 1)) return 0;
        }
        return 1;
    case V_MACRO: return a.m == b.m;
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

static size_t value_length(Value v) {
    switch (v.k) {
    case V_STR: return utf8_count(v.str.s, v.str.n);
    case V_LIST: return v.l->n;
    case V_DICT: case V_NS: return v.d->n;
    default: return 0;
    }
}

// Python's slice indices for a sequence of n items: the positions it selects into idx (a
// caller's array of n), their count returned.
static size_t slice_indices(int64_t n, const Value *start, const Value *stop, int64_t stepv, int64_t *idx) {
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

// ---------------------------------------------------------------------------------------------
// Evaluation.

typedef struct {
    Value *pos;    // positional arguments
    size_t npos;
    Str *kwn;      // keyword arguments' names and values
    Value *kwv;
    size_t nkw;
} Args;

static int eval(Render *R, const Node *n, Frame *f, Value *out);
static int render_body(Render *R, const NodeList *body, Frame *f, Buf *out);

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
            if (eval(R, x->a, f, &a->kwv[a->nkw++])) return -1;
        } else {
            if (a->nkw) return rerr(R, x, "a positional argument after a keyword argument");
            if (eval(R, x, f, &a->pos[a->npos++])) return -1;
        }
    }
    return 0;
}

// Argument i (positional) or name (keyword), NULL when not given.
static const Value *arg(const Args *a, size_t i, const char *name) {
    if (i < a->npos) return &a->pos[i];
    for (size_t k = 0; name && k < a->nkw; k++)
        if (a->kwn[k].n == strlen(name) && !memcmp(a->kwn[k].s, name, a->kwn[k].n)) return &a->kwv[k];
    return NULL;
}

static int want_str(Render *R, const Node *at, const Value *v, const char *what) {
    if (!v || v->k != V_STR)
        return rerr(R, at, "%s expects a string, got %s", what, v ? kind_name(v->k) : "nothing");
    return 0;
}

static int want_int(Render *R, const Node *at, const Value *v, const char *what) {
    if (!v || (v->k != V_INT && v->k != V_BOOL))
        return rerr(R, at, "%s expects an integer, got %s", what, v ? kind_name(v->k) : "nothing");
    return 0;
}

static int lookup(Render *R, const Node *n, Frame *f, Value *out) {
    for (; f; f = f->parent) {
        Value *v = dict_get(&f->vars, n->s, n->n);
        if (v) {
            *out = *v;
            return 0;
        }
    }
    for (int i = 0; FUNC_NAMES[i]; i++)
        if (strlen(FUNC_NAMES[i]) == n->n && !memcmp(FUNC_NAMES[i], n->s, n->n)) {
            *out = (Value){.k = V_FUNC, .i = i};
            return 0;
        }
    *out = v_undef();
    return 0;
}

static int eval_index(Render *R, const Node *n, Value obj, Value idx, Value *out) {
    *out = v_undef();
    if ((obj.k == V_DICT || obj.k == V_NS) && idx.k == V_STR) {
        Value *v = dict_get(obj.d, idx.str.s, idx.str.n);
        if (v) *out = *v;
    } else if ((obj.k == V_LIST || obj.k == V_STR) && (idx.k == V_INT || idx.k == V_BOOL)) {
        int64_t len = (int64_t)value_length(obj), i = idx.i < 0 ? idx.i + len : idx.i;
        if (i < 0 || i >= len) return 0;
        if (obj.k == V_LIST) *out = obj.l->v[i];
        else {
            size_t a = utf8_offset(obj.str.s, obj.str.n, (size_t)i);
            size_t b = utf8_offset(obj.str.s, obj.str.n, (size_t)i + 1);
            *out = v_str(obj.str.s + a, b - a);
        }
    } else if ((obj.k == V_LIST || obj.k == V_STR) && idx.k != V_STR && idx.k != V_UNDEF) {
        return rerr(R, n, "a %s index must be an integer, got %s", kind_name(obj.k), kind_name(idx.k));
    }
    return 0;
}

static int eval_slice(Render *R, const Node *n, Frame *f, Value *out) {
    Value obj, parts[3];
    const Node *pn[3] = {n->b, n->c, n->d};
    if (eval(R, n->a, f, &obj)) return -1;
    for (int i = 0; i < 3; i++) {
        parts[i] = v_none();
        if (pn[i] && eval(R, pn[i], f, &parts[i])) return -1;
        if (parts[i].k != V_NONE && want_int(R, pn[i], &parts[i], "a slice")) return -1;
    }
    int64_t st = parts[2].k == V_NONE ? 1 : parts[2].i;
    if (st == 0) return rerr(R, n, "slice step cannot be zero");
    if (obj.k != V_LIST && obj.k != V_STR) {
        if (obj.k == V_UNDEF) { *out = obj; return 0; }
        return rerr(R, n, "cannot slice a %s", kind_name(obj.k));
    }
    int64_t len = (int64_t)value_length(obj);
    int64_t *idx = arena_alloc(&R->arena, (size_t)(len + 1) * sizeof *idx);
    size_t k = slice_indices(len, parts[0].k == V_NONE ? NULL : &parts[0],
                             parts[1].k == V_NONE ? NULL : &parts[1], st, idx);
    if (obj.k == V_LIST) {
        List *l = list_new(R, k);
        for (size_t i = 0; i < k; i++) list_add(R, l, obj.l->v[idx[i]]);
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
    *out = buf_take(R, &b);
    return 0;
}

static int str_concat(Render *R, const Node *n, Value a, Value b, Value *out) {
    Buf buf = {0};
    buf_add(&buf, "", 0);
    if (buf_value(R, n, &buf, a) || buf_value(R, n, &buf, b)) {
        free(buf.s);
        return -1;
    }
    *out = buf_take(R, &buf);
    return 0;
}

static int arith(Render *R, const Node *n, int op, Value a, Value b, Value *out) {
    if (a.k == V_FLOAT || b.k == V_FLOAT || op == OP_DIV) {
        double x = num(a), y = num(b), r;
        if ((op == OP_DIV || op == OP_FLOORDIV || op == OP_MOD) && y == 0)
            return rerr(R, n, "division by zero");
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
        if (y == 0) return rerr(R, n, "division by zero");
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
    if (bad) return rerr(R, n, "integer overflow");
    *out = v_int(r);
    return 0;
}

static int contains(Render *R, const Node *n, Value item, Value box, int *res) {
    *res = 0;
    if (box.k == V_UNDEF) return 0;
    if (box.k == V_STR) {
        if (item.k != V_STR) return rerr(R, n, "'in <string>' needs a string on the left, got %s", kind_name(item.k));
        *res = item.str.n == 0 || memmem(box.str.s, box.str.n, item.str.s, item.str.n) != NULL;
        return 0;
    }
    if (box.k == V_LIST) {
        for (size_t i = 0; i < box.l->n && !*res; i++) *res = val_eq(item, box.l->v[i], 0);
        return 0;
    }
    if (box.k == V_DICT || box.k == V_NS) {
        *res = item.k == V_STR && dict_get(box.d, item.str.s, item.str.n) != NULL;
        return 0;
    }
    return rerr(R, n, "'in' needs a string, list or dict on the right, got %s", kind_name(box.k));
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
        return rerr(R, n, "cannot compare %s with %s", kind_name(a.k), kind_name(b.k));
    }
    *out = v_bool(op == OP_LT ? c < 0 : op == OP_LE ? c <= 0 : op == OP_GT ? c > 0 : c >= 0);
    return 0;
}

static int binop(Render *R, const Node *n, Value a, Value b, Value *out) {
    int op = n->op, r;
    switch (op) {
    case OP_EQ: *out = v_bool(val_eq(a, b, 0)); return 0;
    case OP_NE: *out = v_bool(!val_eq(a, b, 0)); return 0;
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
        List *l = list_new(R, a.l->n + b.l->n);
        for (size_t i = 0; i < a.l->n; i++) list_add(R, l, a.l->v[i]);
        for (size_t i = 0; i < b.l->n; i++) list_add(R, l, b.l->v[i]);
        *out = v_list(l);
        return 0;
    }
    if (op == OP_ADD && (a.k == V_STR || b.k == V_STR) && a.k != V_NONE && b.k != V_NONE &&
        a.k != V_UNDEF && b.k != V_UNDEF)
        return str_concat(R, n, a, b, out);
    if (op == OP_MUL && ((a.k == V_STR && b.k == V_INT) || (a.k == V_INT && b.k == V_STR))) {
        Value s = a.k == V_STR ? a : b;
        int64_t k = a.k == V_INT ? a.i : b.i;
        if (k > 0 && s.str.n * (uint64_t)k > JINJA_MAX_BYTES) return rerr(R, n, "string repetition too long");
        Buf buf = {0};
        buf_add(&buf, "", 0);
        for (int64_t i = 0; i < k; i++) buf_add(&buf, s.str.s, s.str.n);
        *out = buf_take(R, &buf);
        return 0;
    }
    static const char *opnames[] = {"+", "-", "*", "/", "//", "%", "**"};
    return rerr(R, n, "unsupported operand types for %s: %s and %s", opnames[op], kind_name(a.k), kind_name(b.k));
}

static int call_value(Render *R, const Node *n, Value callee, const Args *a, Frame *f, Value *out);
static int call_method(Render *R, const Node *n, Value obj, const Args *a, Value *out, int *found);
static int apply_filter(Render *R, const Node *n, const char *name, size_t nlen, Value v, const Args *a,
                        Frame *f, Value *out);
static int apply_test(Render *R, const Node *n, const char *name, size_t nlen, Value v, const Args *a,
                      Frame *f, int *res);

static int eval_call(Render *R, const Node *n, Frame *f, Value *out) {
    Args a;
    const Node *c = n->a;
    if (c->kind == N_ATTR) {
        Value obj;
        if (eval(R, c->a, f, &obj) || eval_args(R, &n->list, f, &a)) return -1;
        Value *member = (obj.k == V_DICT || obj.k == V_NS) ? dict_get(obj.d, c->s, c->n) : NULL;
        if (member && (member->k == V_MACRO || member->k == V_FUNC)) return call_value(R, n, *member, &a, f, out);
        int found = 0;
        if (call_method(R, c, obj, &a, out, &found)) return -1;
        if (found) return 0;
        return rerr(R, c, "unknown method '%.*s' of a %s", (int)c->n, c->s, kind_name(obj.k));
    }
    Value callee;
    if (eval(R, c, f, &callee) || eval_args(R, &n->list, f, &a)) return -1;
    return call_value(R, n, callee, &a, f, out);
}

static int eval(Render *R, const Node *n, Frame *f, Value *out) {
    if (step(R, n)) return -1;
    Value a, b;
    switch (n->kind) {
    case N_STR: *out = v_str(n->s, n->n); return 0;
    case N_INT: *out = v_int(n->i); return 0;
    case N_FLOAT: *out = v_float(n->f); return 0;
    case N_BOOL: *out = v_bool((int)n->i); return 0;
    case N_NONE: *out = v_none(); return 0;
    case N_LIST: {
        List *l = list_new(R, n->list.n);
        for (size_t i = 0; i < n->list.n; i++) {
            if (eval(R, n->list.v[i], f, &a)) return -1;
            list_add(R, l, a);
        }
        *out = v_list(l);
        return 0;
    }
    case N_DICT: {
        Dict *d = dict_new(R);
        for (size_t i = 0; i < n->list.n; i++) {
            const Node *p = n->list.v[i];
            if (eval(R, p->a, f, &a) || eval(R, p->b, f, &b)) return -1;
            if (a.k != V_STR) return rerr(R, p, "dict keys must be strings, got %s", kind_name(a.k));
            dict_set(&R->arena, d, a.str.s, a.str.n, b);
        }
        *out = v_dict(d);
        return 0;
    }
    case N_NAME: return lookup(R, n, f, out);
    case N_ATTR:
        if (eval(R, n->a, f, &a)) return -1;
        *out = v_undef();
        if (a.k == V_DICT || a.k == V_NS) {
            Value *v = dict_get(a.d, n->s, n->n);
            if (v) *out = *v;
        }
        return 0;
    case N_INDEX:
        if (eval(R, n->a, f, &a) || eval(R, n->b, f, &b)) return -1;
        return eval_index(R, n, a, b, out);
    case N_SLICE: return eval_slice(R, n, f, out);
    case N_CALL: return eval_call(R, n, f, out);
    case N_FILTER: {
        Args args;
        if (eval(R, n->a, f, &a) || eval_args(R, &n->list, f, &args)) return -1;
        return apply_filter(R, n, n->s, n->n, a, &args, f, out);
    }
    case N_TEST: {
        Args args;
        int res;
        if (eval(R, n->a, f, &a) || eval_args(R, &n->list, f, &args)) return -1;
        if (apply_test(R, n, n->s, n->n, a, &args, f, &res)) return -1;
        *out = v_bool(n->op ? !res : res);
        return 0;
    }
    case N_BIN:
        if (eval(R, n->a, f, &a) || eval(R, n->b, f, &b)) return -1;
        return binop(R, n, a, b, out);
    case N_NOT:
        if (eval(R, n->a, f, &a)) return -1;
        *out = v_bool(!truthy(a));
        return 0;
    case N_NEG: case N_POS:
        if (eval(R, n->a, f, &a)) return -1;
        if (!is_num(a)) return rerr(R, n, "bad operand type for unary %c: %s", n->kind == N_NEG ? '-' : '+', kind_name(a.k));
        if (n->kind == N_POS) *out = a.k == V_BOOL ? v_int(a.i) : a;
        else if (a.k == V_FLOAT) *out = v_float(-a.f);
        else if (a.i == INT64_MIN) return rerr(R, n, "integer overflow");
        else *out = v_int(-a.i);
        return 0;
    case N_AND: case N_OR:
        if (eval(R, n->a, f, &a)) return -1;
        if (truthy(a) == (n->kind == N_OR)) { *out = a; return 0; }
        return eval(R, n->b, f, out);
    case N_COND:
        if (eval(R, n->b, f, &a)) return -1;
        if (truthy(a)) return eval(R, n->a, f, out);
        if (n->c) return eval(R, n->c, f, out);
        *out = v_undef();
        return 0;
    default:
        return rerr(R, n, "not an expression");
    }
}

// ---------------------------------------------------------------------------------------------
// Functions, methods, filters and tests.

static int call_macro(Render *R, const Node *n, const Node *m, const Args *a, Value *out) {
    if (R->macro_depth >= JINJA_MAX_MACRO)
        return rerr(R, n, "macro calls nested deeper than %d", JINJA_MAX_MACRO);
    if (a->npos > m->list.n)
        return rerr(R, n, "macro '%s' takes %zu arguments, got %zu", m->s, m->list.n, a->npos);
    Frame fr = {.parent = R->root};
    for (size_t k = 0; k < a->nkw; k++) {
        int known = 0;
        for (size_t i = 0; i < m->list.n; i++)
            known |= m->list.v[i]->n == a->kwn[k].n && !memcmp(m->list.v[i]->s, a->kwn[k].s, a->kwn[k].n);
        if (!known) return rerr(R, n, "macro '%s' has no parameter '%.*s'", m->s, (int)a->kwn[k].n, a->kwn[k].s);
    }
    for (size_t i = 0; i < m->list.n; i++) {
        const Node *p = m->list.v[i];
        const Value *v = arg(a, i, p->s);
        Value d = v_undef();
        if (!v && p->a && eval(R, p->a, &fr, &d)) return -1;
        dict_set(&R->arena, &fr.vars, p->s, p->n, v ? *v : d);
    }
    Buf b = {0};
    buf_add(&b, "", 0);
    R->macro_depth++;
    int rc = render_body(R, &m->list2, &fr, &b);
    R->macro_depth--;
    if (rc < 0) {
        free(b.s);
        return -1;
    }
    *out = buf_take(R, &b);
    return 0;
}

static int call_range(Render *R, const Node *n, const Args *a, Value *out) {
    for (size_t i = 0; i < a->npos; i++)
        if (want_int(R, n, &a->pos[i], "range")) return -1;
    if (a->npos < 1 || a->npos > 3) return rerr(R, n, "range takes 1 to 3 arguments, got %zu", a->npos);
    int64_t lo = a->npos > 1 ? a->pos[0].i : 0, hi = a->npos > 1 ? a->pos[1].i : a->pos[0].i;
    int64_t st = a->npos > 2 ? a->pos[2].i : 1;
    if (st == 0) return rerr(R, n, "range step cannot be zero");
    double count = ceil(((double)hi - (double)lo) / (double)st);
    if (count > JINJA_MAX_RANGE) return rerr(R, n, "range of more than %d items", JINJA_MAX_RANGE);
    List *l = list_new(R, count > 0 ? (size_t)count : 0);
    for (int64_t i = lo; st > 0 ? i < hi : i > hi; i += st) list_add(R, l, v_int(i));
    *out = v_list(l);
    return 0;
}

static int call_value(Render *R, const Node *n, Value callee, const Args *a, Frame *f, Value *out) {
    if (callee.k == V_MACRO) return call_macro(R, n, callee.m, a, out);
    if (callee.k != V_FUNC) {
        if (n->a->kind == N_NAME)
            return rerr(R, n, "'%.*s' is %s, not a function", (int)n->a->n, n->a->s,
                        callee.k == V_UNDEF ? "undefined" : kind_name(callee.k));
        return rerr(R, n, "a %s is not callable", kind_name(callee.k));
    }
    switch (callee.i) {
    case F_RANGE: return call_range(R, n, a, out);
    case F_NAMESPACE: case F_DICT: {
        Dict *d = dict_new(R);
        for (size_t i = 0; i < a->npos; i++) {
            if (a->pos[i].k != V_DICT && a->pos[i].k != V_NS)
                return rerr(R, n, "%s takes keyword arguments or a dict", FUNC_NAMES[callee.i]);
            for (size_t k = 0; k < a->pos[i].d->n; k++)
                dict_set(&R->arena, d, a->pos[i].d->keys[k].s, a->pos[i].d->keys[k].n, a->pos[i].d->vals[k]);
        }
        for (size_t k = 0; k < a->nkw; k++) dict_set(&R->arena, d, a->kwn[k].s, a->kwn[k].n, a->kwv[k]);
        *out = (Value){.k = callee.i == F_NAMESPACE ? V_NS : V_DICT, .d = d};
        return 0;
    }
    case F_RAISE: {
        const Value *m = arg(a, 0, "message");
        Buf b = {0};
        buf_add(&b, "", 0);
        if (m && buf_value(R, n, &b, *m)) { free(b.s); return -1; }
        rerr(R, n, "%s", b.s);
        free(b.s);
        return -1;
    }
    default: {   // F_STRFTIME
        const Value *fmt = arg(a, 0, "format");
        if (want_str(R, n, fmt, "strftime_now")) return -1;
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

static int is_ws(unsigned char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

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
        int up = how == CASE_UPPER || ((how == CASE_CAPITALIZE && i == 0) || (how >= CASE_TITLE_PY && start));
        o[i] = (char)(up ? toupper((unsigned char)c) : tolower((unsigned char)c));
        if ((unsigned char)c >= 0x80) o[i] = c;
        if (how == CASE_TITLE_PY) start = !isalpha((unsigned char)c);
        else if (how == CASE_TITLE_JINJA) start = is_ws((unsigned char)c) || (c && strchr("-({[<", c));
    }
    o[s.str.n] = 0;
    return v_str(o, s.str.n);
}

static int str_replace(Render *R, const Node *n, Value s, const Args *a, size_t first, Value *out) {
    const Value *old = arg(a, first, "old"), *new = arg(a, first + 1, "new"), *cnt = arg(a, first + 2, "count");
    if (want_str(R, n, old, "replace") || want_str(R, n, new, "replace")) return -1;
    if (cnt && want_int(R, n, cnt, "replace")) return -1;
    int64_t left = cnt ? cnt->i : -1;
    Buf b = {0};
    buf_add(&b, "", 0);
    size_t i = 0;
    while (i <= s.str.n) {
        const char *hit = left == 0 ? NULL : old->str.n ? memmem(s.str.s + i, s.str.n - i, old->str.s, old->str.n) : s.str.s + i;
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
    *out = buf_take(R, &b);
    return 0;
}

static int str_split(Render *R, const Node *n, Value s, const Args *a, Value *out) {
    const Value *sep = arg(a, 0, "sep"), *maxv = arg(a, 1, "maxsplit");
    if (sep && sep->k == V_NONE) sep = NULL;
    if (sep && want_str(R, n, sep, "split")) return -1;
    if (maxv && want_int(R, n, maxv, "split")) return -1;
    if (sep && !sep->str.n) return rerr(R, n, "split: empty separator");
    int64_t left = maxv ? maxv->i : -1;
    List *l = list_new(R, 4);
    const char *p = s.str.s, *end = s.str.s + s.str.n;
    if (sep) {
        for (;;) {
            const char *hit = left == 0 ? NULL : memmem(p, (size_t)(end - p), sep->str.s, sep->str.n);
            if (!hit) break;
            list_add(R, l, v_str(p, (size_t)(hit - p)));
            p = hit + sep->str.n;
            if (left > 0) left--;
        }
        list_add(R, l, v_str(p, (size_t)(end - p)));
    } else {
        for (;;) {
            while (p < end && is_ws((unsigned char)*p)) p++;
            if (p == end) break;
            if (left == 0) {
                const char *e = end;
                while (e > p && is_ws((unsigned char)e[-1])) e--;
                list_add(R, l, v_str(p, (size_t)(e - p)));
                break;
            }
            const char *q = p;
            while (q < end && !is_ws((unsigned char)*q)) q++;
            list_add(R, l, v_str(p, (size_t)(q - p)));
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
        if (want_str(R, n, &items[i], end ? "endswith" : "startswith")) return -1;
        Str p = {items[i].str.s, items[i].str.n};
        if (p.n <= s.str.n && !memcmp(s.str.s + (end ? s.str.n - p.n : 0), p.s, p.n)) hit = 1;
    }
    *out = v_bool(hit);
    return 0;
}

static Value dict_items(Render *R, const Dict *d) {
    List *l = list_new(R, d->n);
    for (size_t i = 0; i < d->n; i++) {
        List *pair = list_new(R, 2);
        list_add(R, pair, v_str(d->keys[i].s, d->keys[i].n));
        list_add(R, pair, d->vals[i]);
        list_add(R, l, v_list(pair));
    }
    return v_list(l);
}

static int join(Render *R, const Node *n, Value items, const Value *sep, const Value *attr, Value *out) {
    if (items.k == V_UNDEF) { *out = v_str("", 0); return 0; }
    if (items.k != V_LIST) return rerr(R, n, "join expects a list, got %s", kind_name(items.k));
    if (sep && want_str(R, n, sep, "join")) return -1;
    Buf b = {0};
    buf_add(&b, "", 0);
    for (size_t i = 0; i < items.l->n; i++) {
        Value v = items.l->v[i];
        if (attr && v.k == V_DICT && attr->k == V_STR) {
            Value *x = dict_get(v.d, attr->str.s, attr->str.n);
            v = x ? *x : v_undef();
        }
        if (i && sep) buf_add(&b, sep->str.s, sep->str.n);
        if (buf_value(R, n, &b, v)) { free(b.s); return -1; }
    }
    *out = buf_take(R, &b);
    return 0;
}

static int name_is(const char *name, size_t n, const char *s) { return strlen(s) == n && !memcmp(name, s, n); }

static int call_method(Render *R, const Node *n, Value obj, const Args *a, Value *out, int *found) {
    const char *m = n->s;
    size_t mn = n->n;
    *found = 1;
    if (obj.k == V_STR) {
        if (name_is(m, mn, "strip") || name_is(m, mn, "lstrip") || name_is(m, mn, "rstrip")) {
            const Value *chars = arg(a, 0, "chars");
            if (chars && chars->k == V_NONE) chars = NULL;
            if (chars && want_str(R, n, chars, m)) return -1;
            *out = strip(obj, chars, m[0] != 'r', m[0] != 'l');
            return 0;
        }
        if (name_is(m, mn, "split")) return str_split(R, n, obj, a, out);
        if (name_is(m, mn, "startswith") || name_is(m, mn, "endswith"))
            return str_affix(R, n, obj, arg(a, 0, "prefix"), m[0] == 'e', out);
        if (name_is(m, mn, "upper")) { *out = change_case(R, obj, CASE_UPPER); return 0; }
        if (name_is(m, mn, "lower")) { *out = change_case(R, obj, CASE_LOWER); return 0; }
        if (name_is(m, mn, "title")) { *out = change_case(R, obj, CASE_TITLE_PY); return 0; }
        if (name_is(m, mn, "capitalize")) { *out = change_case(R, obj, CASE_CAPITALIZE); return 0; }
        if (name_is(m, mn, "replace")) return str_replace(R, n, obj, a, 0, out);
        if (name_is(m, mn, "join")) {
            const Value *items = arg(a, 0, "iterable");
            return join(R, n, items ? *items : v_undef(), &obj, NULL, out);
        }
    } else if (obj.k == V_DICT || obj.k == V_NS) {
        if (name_is(m, mn, "items")) { *out = dict_items(R, obj.d); return 0; }
        if (name_is(m, mn, "keys") || name_is(m, mn, "values")) {
            List *l = list_new(R, obj.d->n);
            for (size_t i = 0; i < obj.d->n; i++)
                list_add(R, l, m[0] == 'k' ? v_str(obj.d->keys[i].s, obj.d->keys[i].n) : obj.d->vals[i]);
            *out = v_list(l);
            return 0;
        }
        if (name_is(m, mn, "get")) {
            const Value *k = arg(a, 0, "key"), *d = arg(a, 1, "default");
            if (want_str(R, n, k, "get")) return -1;
            Value *v = dict_get(obj.d, k->str.s, k->str.n);
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
        Value *x = dict_get(v.d, p, k);
        if (!x) return v_undef();
        v = *x;
        if (!dot) break;
        p = dot + 1;
    }
    return v;
}

static int value_to_list(Render *R, const Node *n, Value v, const char *what, Value *out) {
    if (v.k == V_LIST) { *out = v; return 0; }
    List *l = list_new(R, 4);
    if (v.k == V_DICT || v.k == V_NS) {
        for (size_t i = 0; i < v.d->n; i++) list_add(R, l, v_str(v.d->keys[i].s, v.d->keys[i].n));
    } else if (v.k == V_STR) {
        for (size_t i = 0, k; i < v.str.n; i += k) {
            cp_at(v.str.s + i, v.str.n - i, &k);
            list_add(R, l, v_str(v.str.s + i, k));
        }
    } else if (v.k != V_UNDEF) {
        return rerr(R, n, "%s expects a sequence, got %s", what, kind_name(v.k));
    }
    *out = v_list(l);
    return 0;
}

// selectattr / rejectattr (attr [, test, args...]) and select / reject ([test, args...]).
static int select_items(Render *R, const Node *n, Value v, const Args *a, Frame *f, int byattr, int keep, Value *out) {
    Value items;
    if (value_to_list(R, n, v, n->s, &items)) return -1;
    const Value *attr = byattr ? arg(a, 0, NULL) : NULL;
    if (byattr && want_str(R, n, attr, n->s)) return -1;
    size_t ti = byattr ? 1 : 0;
    const Value *test = arg(a, ti, NULL);
    if (test && want_str(R, n, test, n->s)) return -1;
    Args targs = *a;
    targs.pos += a->npos > ti + 1 ? ti + 1 : a->npos;
    targs.npos = a->npos > ti + 1 ? a->npos - ti - 1 : 0;
    List *l = list_new(R, items.l->n);
    for (size_t i = 0; i < items.l->n; i++) {
        Value x = byattr ? attr_path(items.l->v[i], attr) : items.l->v[i];
        int res = truthy(x);
        if (test && apply_test(R, n, test->str.s, test->str.n, x, &targs, f, &res)) return -1;
        if (res == keep) list_add(R, l, items.l->v[i]);
    }
    *out = v_list(l);
    return 0;
}

static int map_items(Render *R, const Node *n, Value v, const Args *a, Frame *f, Value *out) {
    Value items;
    if (value_to_list(R, n, v, "map", &items)) return -1;
    const Value *attr = arg(a, a->npos, "attribute"), *dflt = arg(a, a->npos, "default");
    const Value *filter = a->npos ? &a->pos[0] : NULL;
    if (!attr && want_str(R, n, filter, "map")) return -1;
    if (attr && want_str(R, n, attr, "map")) return -1;
    Args fargs = {.pos = a->npos ? a->pos + 1 : NULL, .npos = a->npos ? a->npos - 1 : 0};
    List *l = list_new(R, items.l->n);
    for (size_t i = 0; i < items.l->n; i++) {
        Value x;
        if (attr) {
            x = attr_path(items.l->v[i], attr);
            if (x.k == V_UNDEF && dflt) x = *dflt;
        } else if (apply_filter(R, n, filter->str.s, filter->str.n, items.l->v[i], &fargs, f, &x)) {
            return -1;
        }
        list_add(R, l, x);
    }
    *out = v_list(l);
    return 0;
}

static int to_number(Render *R, const Node *n, Value v, const Value *dflt, int as_int, Value *out) {
    *out = dflt ? *dflt : as_int ? v_int(0) : v_float(0);
    if (v.k == V_INT || v.k == V_BOOL) { *out = as_int ? v_int(v.i) : v_float((double)v.i); return 0; }
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
    (void)R; (void)n;
    return 0;
}

static int apply_filter(Render *R, const Node *n, const char *name, size_t nl, Value v, const Args *a,
                        Frame *f, Value *out) {
#define IS(s) name_is(name, nl, s)
    if (IS("safe")) { *out = v; return 0; }
    if (IS("length") || IS("count")) {
        if (v.k != V_STR && v.k != V_LIST && v.k != V_DICT && v.k != V_NS && v.k != V_UNDEF)
            return rerr(R, n, "length of a %s", kind_name(v.k));
        *out = v_int((int64_t)value_length(v));
        return 0;
    }
    if (IS("default") || IS("d")) {
        const Value *d = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        int use = v.k == V_UNDEF || (boolean && truthy(*boolean) && !truthy(v));
        *out = use ? (d ? *d : v_str("", 0)) : v;
        return 0;
    }
    if (IS("string")) {
        if (v.k == V_STR) { *out = v; return 0; }
        Buf b = {0};
        buf_add(&b, "", 0);
        if (buf_value(R, n, &b, v)) { free(b.s); return -1; }
        *out = buf_take(R, &b);
        return 0;
    }
    if (IS("tojson")) {
        const Value *ind = arg(a, 0, "indent");
        if (ind && ind->k != V_NONE && want_int(R, n, ind, "tojson")) return -1;
        Buf b = {0};
        buf_add(&b, "", 0);
        if (buf_json(R, n, &b, v, ind && ind->k != V_NONE ? (int)(ind->i > 64 ? 64 : ind->i) : 0, 0)) {
            free(b.s);
            return -1;
        }
        *out = buf_take(R, &b);
        return 0;
    }
    if (IS("items")) {
        if (v.k == V_UNDEF) { *out = v_list(list_new(R, 0)); return 0; }
        if (v.k != V_DICT && v.k != V_NS) return rerr(R, n, "items expects a dict, got %s", kind_name(v.k));
        *out = dict_items(R, v.d);
        return 0;
    }
    if (IS("join")) return join(R, n, v, arg(a, 0, "d"), arg(a, 1, "attribute"), out);
    if (IS("list")) return value_to_list(R, n, v, "list", out);
    if (IS("first") || IS("last")) {
        Value l;
        if (value_to_list(R, n, v, name, &l)) return -1;
        *out = l.l->n ? l.l->v[IS("first") ? 0 : l.l->n - 1] : v_undef();
        return 0;
    }
    if (IS("reverse") || IS("unique")) {
        Value l;
        if (value_to_list(R, n, v, name, &l)) return -1;
        List *r = list_new(R, l.l->n);
        for (size_t i = 0; i < l.l->n; i++) {
            if (IS("reverse")) { list_add(R, r, l.l->v[l.l->n - 1 - i]); continue; }
            int seen = 0;
            for (size_t k = 0; k < r->n && !seen; k++) seen = val_eq(r->v[k], l.l->v[i], 0);
            if (!seen) list_add(R, r, l.l->v[i]);
        }
        if (IS("reverse") && v.k == V_STR) return join(R, n, v_list(r), NULL, NULL, out);
        *out = v_list(r);
        return 0;
    }
    if (IS("selectattr") || IS("rejectattr")) return select_items(R, n, v, a, f, 1, IS("selectattr"), out);
    if (IS("select") || IS("reject")) return select_items(R, n, v, a, f, 0, IS("select"), out);
    if (IS("map")) return map_items(R, n, v, a, f, out);
    if (IS("int") || IS("float")) return to_number(R, n, v, arg(a, 0, "default"), IS("int"), out);
    if (IS("abs")) {
        if (!is_num(v)) return rerr(R, n, "abs of a %s", kind_name(v.k));
        if (v.k == V_FLOAT) *out = v_float(fabs(v.f));
        else if (v.i == INT64_MIN) return rerr(R, n, "integer overflow");
        else *out = v_int(v.i < 0 ? -v.i : v.i);
        return 0;
    }
    // the string filters
    int strf = IS("trim") || IS("strip") || IS("upper") || IS("lower") || IS("capitalize") || IS("title") ||
               IS("replace");
    if (!strf) return rerr(R, n, "unknown filter '%.*s'", (int)(nl > 40 ? 40 : nl), name);
    if (v.k == V_UNDEF) v = v_str("", 0);
    if (v.k != V_STR) {
        Args none = {0};
        if (apply_filter(R, n, "string", 6, v, &none, f, &v)) return -1;
    }
    if (IS("trim") || IS("strip")) {
        const Value *chars = arg(a, 0, "chars");
        if (chars && chars->k == V_NONE) chars = NULL;
        if (chars && want_str(R, n, chars, "trim")) return -1;
        *out = strip(v, chars, 1, 1);
        return 0;
    }
    if (IS("replace")) return str_replace(R, n, v, a, 0, out);
    *out = change_case(R, v, IS("upper") ? CASE_UPPER : IS("lower") ? CASE_LOWER
                             : IS("capitalize") ? CASE_CAPITALIZE : CASE_TITLE_JINJA);
    return 0;
#undef IS
}

static int apply_test(Render *R, const Node *n, const char *name, size_t nl, Value v, const Args *a,
                      Frame *f, int *res) {
#define IS(s) name_is(name, nl, s)
    const Value *x = arg(a, 0, NULL);
    (void)f;
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
            if (IS("lower") ? isupper((unsigned char)v.str.s[i]) : islower((unsigned char)v.str.s[i])) *res = 0;
    } else if (IS("odd") || IS("even") || IS("divisibleby")) {
        if (want_int(R, n, &v, name)) return -1;
        int64_t d = 2;
        if (IS("divisibleby")) {
            if (want_int(R, n, x, name)) return -1;
            d = x->i;
            if (d == 0) return rerr(R, n, "divisibleby 0");
        }
        int64_t r = d == -1 ? 0 : v.i % d;
        *res = IS("odd") ? r != 0 : r == 0;
    } else {
        int op = IS("eq") || IS("equalto") || IS("==") || IS("sameas") ? OP_EQ : IS("ne") || IS("!=") ? OP_NE
               : IS("lt") || IS("lessthan") || IS("<") ? OP_LT : IS("le") || IS("<=") ? OP_LE
               : IS("gt") || IS("greaterthan") || IS(">") ? OP_GT : IS("ge") || IS(">=") ? OP_GE
               : IS("in") ? OP_IN : -1;
        if (op < 0) return rerr(R, n, "unknown test '%.*s'", (int)(nl > 40 ? 40 : nl), name);
        if (!x) return rerr(R, n, "test '%.*s' needs an argument", (int)nl, name);
        Node tmp = *n;
        tmp.op = op;
        Value r;
        if (binop(R, &tmp, v, *x, &r)) return -1;
        *res = truthy(r);
    }
    return 0;
#undef IS
}

// ---------------------------------------------------------------------------------------------
// Statements.

static int bind(Render *R, const Node *target, Value v, Frame *f) {
    if (target->kind == N_NAME) {
        dict_set(&R->arena, &f->vars, target->s, target->n, v);
        return 0;
    }
    if (target->kind == N_ATTR) {
        Value ns;
        if (lookup(R, target->a, f, &ns)) return -1;
        if (ns.k != V_NS)
            return rerr(R, target, "cannot set attribute '%s' of a %s (only of a namespace())", target->s,
                        kind_name(ns.k));
        dict_set(&R->arena, ns.d, target->s, target->n, v);
        return 0;
    }
    if (v.k != V_LIST) return rerr(R, target, "cannot unpack a %s into %zu names", kind_name(v.k), target->list.n);
    if (v.l->n != target->list.n)
        return rerr(R, target, "cannot unpack %zu values into %zu names", v.l->n, target->list.n);
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
// is one object), so a long loop does not allocate per item.
static void loop_info(Render *R, Dict *d, const List *items, size_t i) {
    int64_t len = (int64_t)items->n, k = (int64_t)i;
    dict_set(&R->arena, d, "index", 5, v_int(k + 1));
    dict_set(&R->arena, d, "index0", 6, v_int(k));
    dict_set(&R->arena, d, "revindex", 8, v_int(len - k));
    dict_set(&R->arena, d, "revindex0", 9, v_int(len - k - 1));
    dict_set(&R->arena, d, "first", 5, v_bool(k == 0));
    dict_set(&R->arena, d, "last", 4, v_bool(k == len - 1));
    dict_set(&R->arena, d, "length", 6, v_int(len));
    dict_set(&R->arena, d, "depth", 5, v_int(1));
    dict_set(&R->arena, d, "depth0", 6, v_int(0));
    dict_set(&R->arena, d, "previtem", 8, i > 0 ? items->v[i - 1] : v_undef());
    dict_set(&R->arena, d, "nextitem", 8, i + 1 < items->n ? items->v[i + 1] : v_undef());
}

static int render_for(Render *R, const Node *n, Frame *parent, Buf *out) {
    Value it, items;
    if (eval(R, n->b, parent, &it)) return -1;
    if (it.k == V_NONE || (it.k != V_LIST && it.k != V_DICT && it.k != V_NS && it.k != V_STR && it.k != V_UNDEF))
        return rerr(R, n->b, "cannot loop over a %s", kind_name(it.k));
    if (value_to_list(R, n->b, it, "for", &items)) return -1;
    Frame fr = {.parent = parent};
    List *sel = items.l;
    if (n->c) {   // the loop's `if`: items are selected before the loop (loop.length counts them)
        sel = list_new(R, items.l->n);
        for (size_t i = 0; i < items.l->n; i++) {
            Value keep;
            if (bind(R, n->a, items.l->v[i], &fr) || eval(R, n->c, &fr, &keep)) return -1;
            if (truthy(keep)) list_add(R, sel, items.l->v[i]);
        }
    }
    Dict *loop = dict_new(R);
    dict_set(&R->arena, &fr.vars, "loop", 4, v_dict(loop));
    for (size_t i = 0; i < sel->n; i++) {
        loop_info(R, loop, sel, i);
        if (bind(R, n->a, sel->v[i], &fr)) return -1;
        int rc = render_body(R, &n->list, &fr, out);
        if (rc < 0) return -1;
        if (rc == FLOW_BREAK) break;
    }
    if (!sel->n) return render_body(R, &n->list2, parent, out) < 0 ? -1 : 0;
    return 0;
}

static int render_stmt(Render *R, const Node *n, Frame *f, Buf *out) {
    Value v;
    switch (n->kind) {
    case N_TEXT: return emit(R, out, n->s, n->n);
    case N_OUTPUT: {
        if (eval(R, n->a, f, &v)) return -1;
        size_t before = out->n;
        if (buf_value(R, n->a, out, v)) return -1;
        R->out_bytes += out->n - before;
        return 0;
    }
    case N_IF:
        if (eval(R, n->a, f, &v)) return -1;
        return render_body(R, truthy(v) ? &n->list : &n->list2, f, out);
    case N_FOR: return render_for(R, n, f, out);
    case N_SET:
        if (n->b) {
            if (eval(R, n->b, f, &v)) return -1;
        } else {
            Buf b = {0};
            buf_add(&b, "", 0);
            if (render_body(R, &n->list, f, &b) < 0) { free(b.s); return -1; }
            v = buf_take(R, &b);
        }
        return bind(R, n->a, v, f);
    case N_MACRO: {
        Value m = {.k = V_MACRO, .m = n};
        dict_set(&R->arena, &f->vars, n->s, n->n, m);
        return 0;
    }
    case N_BREAK: return FLOW_BREAK;
    case N_CONTINUE: return FLOW_CONTINUE;
    default: return rerr(R, n, "not a statement");
    }
}

// Renders the statements of body; returns 0, -1 on error, or FLOW_BREAK / FLOW_CONTINUE.
static int render_body(Render *R, const NodeList *body, Frame *f, Buf *out) {
    for (size_t i = 0; i < body->n; i++) {
        if (step(R, body->v[i])) return -1;
        int rc = render_stmt(R, body->v[i], f, out);
        if (rc) return rc;
    }
    return 0;
}

int jinja_render(const JinjaTemplate *t, const cJSON *ctx, char **out, char *err, size_t errlen) {
    *out = NULL;
    if (ctx && !cJSON_IsObject(ctx)) return util_err(err, errlen, "the template's context must be a JSON object");
    Render R = {.err = err, .errlen = errlen};
    Frame root = {0};
    R.root = &root;
    for (const cJSON *c = ctx ? ctx->child : NULL; c; c = c->next)
        if (c->string) dict_set(&R.arena, &root.vars, c->string, strlen(c->string), from_json(&R, c));
    Buf b = {0};
    buf_add(&b, "", 0);
    int rc = render_body(&R, &t->body, &root, &b);
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

const char *jinja_chat_template(const cJSON *config, const char *override, char *err, size_t errlen) {
    if (override) return override;
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(config, "chat_template");
    if (cJSON_IsString(t)) return t->valuestring;
    if (cJSON_IsArray(t)) {
        for (const cJSON *c = t->child; c; c = c->next) {
            const cJSON *name = cJSON_GetObjectItemCaseSensitive(c, "name");
            const cJSON *tmpl = cJSON_GetObjectItemCaseSensitive(c, "template");
            if (cJSON_IsString(name) && !strcmp(name->valuestring, "default") && cJSON_IsString(tmpl))
                return tmpl->valuestring;
        }
        util_err(err, errlen, "'chat_template' has no template named \"default\"");
        return NULL;
    }
    util_err(err, errlen, "%s", t ? "'chat_template' is neither a string nor a list of named templates"
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
