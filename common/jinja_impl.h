// jinja_impl.h: the private parts of the chat-template interpreter (common/jinja.h is its public
// face), shared by jinja_parse.c (lexer and parser), jinja.c (values, evaluation, statements) and
// jinja_lib.c (functions, methods, filters, tests). Nothing here is for other modules.
//
// Memory: a template's nodes and strings live in its arena (JinjaTemplate.arena); every value made
// while rendering lives in the render's arena (Render.arena), freed when the render ends, so values
// are passed by copy without reference counts. Strings are (pointer, length): into the template,
// the context's cJSON tree (which outlives the render) or the render's arena.
#ifndef JINJA_IMPL_H
#define JINJA_IMPL_H
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jinja.h"
#include "util.h"

#define JINJA_MAX_NEST    200                    // nesting of blocks and expressions in the source
#define JINJA_MAX_MACRO   64                     // nested macro calls while rendering
#define JINJA_MAX_STEPS   2000000LL              // evaluation steps per render (~60 a message)
#define JINJA_MAX_BYTES   ((size_t)256 << 20)    // values and output per render
#define JINJA_MAX_RANGE   1000000                // items one range() may make
#define JINJA_MAX_DEPTH   1000                   // recursion while rendering (a chat: under 50)

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

static inline void *arena_alloc(Arena *a, size_t n) {
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

static inline char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

static inline void arena_free(Arena *a) {
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

static inline void buf_add(Buf *b, const char *s, size_t n) {
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

static inline void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static inline void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, n < 0 ? 0 : (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

// ---------------------------------------------------------------------------------------------
// The tree.

typedef enum {
    // statements
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_MACRO, N_CALLBLOCK, N_BREAK, N_CONTINUE,
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
//   list=N_PARAMs (a=default or NULL) list2=body; N_CALLBLOCK a=the N_CALL list=N_PARAMs
//   list2=body; N_LIST list=items; N_DICT list=N_PAIRs (a, b);
//   N_ATTR a=object s=name; N_INDEX a=object b=index; N_SLICE a=object b,c,d=start,stop,step
//   (each may be NULL); N_CALL a=callee list=args (N_KWARG s=name a=value among them);
//   N_FILTER/N_TEST a=operand s=name list=args; N_BIN op a b; N_NOT/N_NEG/N_POS a;
//   N_AND/N_OR a b; N_COND a=then b=cond c=else (NULL: undefined).

struct JinjaTemplate {
    Arena arena;
    NodeList body;
};
// ---------------------------------------------------------------------------------------------
// Values. Strings are (pointer, length) into the template, the context or the render's arena.

typedef enum {
    V_UNDEF, V_NONE, V_BOOL, V_INT, V_FLOAT, V_STR, V_LIST, V_DICT, V_NS, V_MACRO, V_FUNC
} VKind;

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
        struct {
            const Node *node;   // N_MACRO, or the N_CALLBLOCK of a `caller`
            struct Frame *env;  // the frame it was defined in (its body sees that scope)
        } mac;                  // V_MACRO
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
    int depth;          // recursion of evaluation and rendering now
    size_t out_bytes;   // bytes in the output buffers now being written
    Frame *root;
} Render;

enum { FLOW_BREAK = 1, FLOW_CONTINUE = 2 };
enum { F_RANGE, F_NAMESPACE, F_DICT, F_RAISE, F_STRFTIME };

static inline Value v_undef(void) { return (Value){.k = V_UNDEF}; }
static inline Value v_none(void) { return (Value){.k = V_NONE}; }
static inline Value v_bool(int b) { return (Value){.k = V_BOOL, .i = !!b}; }
static inline Value v_int(int64_t i) { return (Value){.k = V_INT, .i = i}; }
static inline Value v_float(double f) { return (Value){.k = V_FLOAT, .f = f}; }
static inline Value v_str(const char *s, size_t n) { return (Value){.k = V_STR, .str = {s, n}}; }

static inline Value v_list(List *l) { return (Value){.k = V_LIST, .l = l}; }

static inline Value v_dict(Dict *d) { return (Value){.k = V_DICT, .d = d}; }

static inline int is_num(Value v) { return v.k == V_INT || v.k == V_FLOAT || v.k == V_BOOL; }

static inline double num(Value v) { return v.k == V_FLOAT ? v.f : (double)v.i; }
// ---------------------------------------------------------------------------------------------
// Evaluation.

typedef struct {
    Value *pos;    // positional arguments
    size_t npos;
    Str *kwn;      // keyword arguments' names and values
    Value *kwv;
    size_t nkw;
} Args;

// The one error format: "line L column C: message" into err (util_err: one line).
void jinja_verr(char *err, size_t errlen, int line, int col, const char *fmt, va_list ap)
    __attribute__((format(printf, 5, 0)));

// What the renderer (jinja.c) and the library of filters, tests and functions (jinja_lib.c)
// share. Functions returning int give 0, or -1 with the message in R->err (jinja_rerr: "line L
// column C: ..." at the node).
int jinja_rerr(Render *R, const Node *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *jinja_kind_name(VKind k);   // "integer"
const char *jinja_kind_a(VKind k);      // "an integer"
List *jinja_list_new(Render *R, size_t cap);
void  jinja_list_add(Render *R, List *l, Value v);
Dict *jinja_dict_new(Render *R);
Value *jinja_dict_get(const Dict *d, const char *s, size_t n);   // NULL when absent
void  jinja_dict_set(Arena *a, Dict *d, const char *s, size_t n, Value v);
int   jinja_truthy(Value v);
int   jinja_val_eq(Value a, Value b, int depth);                  // Python's ==, deep
size_t jinja_value_length(Value v);                               // code points, items or keys
int   jinja_buf_value(Render *R, const Node *at, Buf *b, Value v); // as {{ v }} prints it
// How tojson writes: indent (0: one line), the separators between items and after keys,
// sort_keys, ensure_ascii (non-ASCII as \uXXXX).
typedef struct {
    int indent;
    Str item_sep, key_sep;
    int sort_keys, ensure_ascii;
} JsonStyle;
int   jinja_buf_json(Render *R, const Node *at, Buf *b, Value v, const JsonStyle *st, int depth);
Value jinja_buf_take(Render *R, Buf *b);                          // b's text in the arena; b freed
int   jinja_eval(Render *R, const Node *n, Frame *f, Value *out);
// Renders body; 0, -1 on error, or FLOW_BREAK / FLOW_CONTINUE.
int   jinja_render_body(Render *R, const NodeList *body, Frame *f, Buf *out);
int   jinja_binop(Render *R, const Node *n, Value a, Value b, Value *out);   // n->op applied
const Value *jinja_arg(const Args *a, size_t i, const char *name);  // argument i or name, or NULL
int   jinja_want_str(Render *R, const Node *at, const Value *v, const char *what);
int   jinja_want_int(Render *R, const Node *at, const Value *v, const char *what);

// A new frame in the render's arena (frames outlive their block: a macro keeps its own).
Frame *jinja_frame_new(Render *R, Frame *parent);

// jinja_lib.c: the builtins.
int   jinja_func_lookup(const char *name, size_t n);   // a global function's id, or -1
// Calls a macro value with arguments a; caller (NULL: none) is bound as `caller` in its body.
int   jinja_call_macro(Render *R, const Node *n, Value macro, const Args *a, const Value *caller,
                       Value *out);
int   jinja_call_value(Render *R, const Node *n, Value callee, const Args *a, Frame *f, Value *out);
// A method of a string or dict (obj.name(args)); *found is 0 when there is no such method.
int   jinja_call_method(Render *R, const Node *n, Value obj, const Args *a, Value *out, int *found);
int jinja_apply_filter(Render *R, const Node *n, const char *name, size_t nlen, Value v,
                       const Args *a, Frame *f, Value *out);
int jinja_apply_test(Render *R, const Node *n, const char *name, size_t nlen, Value v,
                     const Args *a, Frame *f, int *res);
// A list of v's items: a list itself, a dict's keys, a string's characters, [] for undefined.
int   jinja_value_to_list(Render *R, const Node *n, Value v, const char *what, Value *out);

#endif
