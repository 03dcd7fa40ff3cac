// config: typed YAML configuration with command-line overrides. See config.h for the rules.
// Layout: values and their text forms (parse, check, format), the schema check, the YAML loader
// (libyaml's event API: one pass, values staged and applied only when the whole file is valid),
// overrides, getters, dump/hash/help.
#define _GNU_SOURCE   // memrchr, qsort_r
#include "config.h"
#include "hash.h"
#include "utf8.h"
#include "util.h"
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

typedef struct {
    int64_t i;
    double d;
    int b;
    char *s;            // string, enum
    char **items;       // list [n_items]
    int64_t n_items;
} Value;

struct Config {
    const ConfigEntry *schema;   // borrowed, [n]
    int n;
    Value *val;                  // [n] effective values
    Value *def;                  // [n] parsed defaults (for help)
    unsigned char *set;          // [n] 1 when set by a file or an override
    int *sorted;                 // [n] entry indices sorted by key (dump order)
};

// ---------------------------------------------------------------------------------------------
// Small helpers: growable text, UTF-8, showing user text in one-line messages
// ---------------------------------------------------------------------------------------------
typedef struct { char *p; size_t n, cap; } Buf;

static void buf_add(Buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        b->p = REALLOC_CHECK(b->p, cap);
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}
static void buf_str(Buf *b, const char *s) { buf_add(b, s, strlen(s)); }
static void buf_fmt(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_fmt(Buf *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) buf_add(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}

// User text for a one-line message: about 48 bytes, cut at a character boundary ("..." when
// cut), control characters and bytes that are not UTF-8 written as \xNN.
static const char *show(const char *s, size_t n, char *out, size_t outlen) {
    size_t o = 0, i = 0;
    while (i < n && i < 48 && o + 8 < outlen) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (k > 1 && o + (size_t)k + 4 < outlen) {
            memcpy(out + o, s + i, (size_t)k);
            o += (size_t)k;
            i += (size_t)k;
            continue;
        }
        unsigned char ch = (unsigned char)s[i++];
        if (k == 0 || ch < 0x20 || ch == 0x7F)
            o += (size_t)snprintf(out + o, outlen - o, "\\x%02X", ch);
        else out[o++] = (char)ch;
    }
    if (i < n && o + 4 < outlen) { memcpy(out + o, "...", 3); o += 3; }
    out[o] = 0;
    return out;
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

static void value_free(Value *v) {
    free(v->s);
    for (int64_t i = 0; i < v->n_items; i++) free(v->items[i]);
    free(v->items);
    memset(v, 0, sizeof(*v));
}

static void value_copy(Value *dst, const Value *src) {
    *dst = *src;
    dst->s = src->s ? STRDUP_CHECK(src->s) : NULL;
    dst->items = src->n_items ? MALLOC_CHECK((size_t)src->n_items * sizeof(char *)) : NULL;
    for (int64_t i = 0; i < src->n_items; i++) dst->items[i] = STRDUP_CHECK(src->items[i]);
}

static void list_push(Value *v, const char *s, size_t n) {
    if ((v->n_items & (v->n_items - 1)) == 0) {   // grow at powers of two
        v->items = REALLOC_ARRAY(v->items, (size_t)(v->n_items ? 2 * v->n_items : 1),
                                 sizeof(char *));
    }
    v->items[v->n_items++] = STRNDUP_CHECK(s, n);
}

static const char *type_name(ConfigType t) {
    switch (t) {
    case CONFIG_INT: return "int";
    case CONFIG_DOUBLE: return "double";
    case CONFIG_BOOL: return "bool";
    case CONFIG_STRING: return "string";
    case CONFIG_ENUM: return "enum";
    case CONFIG_LIST: return "list";
    }
    return "?";
}

static int is_null_text(const char *s, size_t n) {
    return n == 0 || (n == 1 && s[0] == '~') ||
           (n == 4 && (!memcmp(s, "null", 4) || !memcmp(s, "Null", 4) || !memcmp(s, "NULL", 4)));
}

// Plain decimal integer: [+-]?[0-9]+ within int64. 0 ok, 1 not an integer, 2 out of range.
static int parse_int(const char *s, size_t n, int64_t *out) {
    size_t i = 0;
    int neg = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
    if (i == n) return 1;
    for (size_t j = i; j < n; j++) if (s[j] < '0' || s[j] > '9') return 1;
    while (i < n - 1 && s[i] == '0') i++;   // leading zeros
    if (n - i > 19) return 2;
    char tmp[24];
    tmp[0] = neg ? '-' : '+';
    memcpy(tmp + 1, s + i, n - i);
    tmp[1 + n - i] = 0;
    errno = 0;
    long long v = strtoll(tmp, NULL, 10);
    if (errno == ERANGE) return 2;
    *out = v;
    return 0;
}

// Plain decimal number: [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?; finite.
// 0 ok, 1 not a number, 2 out of range (overflows to infinity).
static int parse_double(const char *s, size_t n, double *out) {
    size_t i = 0, digits = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) i++;
    while (i < n && s[i] >= '0' && s[i] <= '9') { i++; digits++; }
    if (i < n && s[i] == '.') {
        i++;
        while (i < n && s[i] >= '0' && s[i] <= '9') {
            i++;
            digits++;
        }
    }
    if (!digits) return 1;
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) i++;
        size_t e = 0;
        while (i < n && s[i] >= '0' && s[i] <= '9') { i++; e++; }
        if (!e) return 1;
    }
    if (i != n) return 1;
    char *tmp = STRNDUP_CHECK(s, n), *end;
    double v = strtod(tmp, &end);
    free(tmp);
    if (!isfinite(v)) return 2;
    *out = v;
    return 0;
}

static int parse_bool(const char *s, size_t n, int *out) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes",
                                      "YES",  "on",   "On",   "ON"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No",
                                     "NO",    "off",   "Off",   "OFF"};
    for (int i = 0; i < 9; i++) {
        if (strlen(yes[i]) == n && !memcmp(s, yes[i], n)) { *out = 1; return 0; }
        if (strlen(no[i]) == n && !memcmp(s, no[i], n)) { *out = 0; return 0; }
    }
    return 1;
}

// Edit distance (for "did you mean"); strings of at most CONFIG_MAX_KEY bytes.
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb) {
    size_t row[CONFIG_MAX_KEY + 1];
    if (na > CONFIG_MAX_KEY || nb > CONFIG_MAX_KEY) return (size_t)-1;
    for (size_t j = 0; j <= nb; j++) row[j] = j;
    for (size_t i = 1; i <= na; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[nb];
}

// The i-th choice of an enum entry ("a|b|c"): pointer and length; 0 when there is none.
static int enum_choice(const ConfigEntry *e, int i, const char **p, size_t *n) {
    const char *s = e->choices;
    for (int k = 0; k < i; k++) {
        s = strchr(s, '|');
        if (!s) return 0;
        s++;
    }
    const char *bar = strchr(s, '|');
    *p = s;
    *n = bar ? (size_t)(bar - s) : strlen(s);
    return 1;
}

static int enum_index(const ConfigEntry *e, const char *s, size_t n) {
    const char *p;
    size_t k;
    for (int i = 0; enum_choice(e, i, &p, &k); i++)
        if (k == n && !memcmp(p, s, n)) return i;
    return -1;
}

// How a scalar was written.
typedef enum { TEXT_PLAIN, TEXT_QUOTED, TEXT_VERBATIM } TextKind;

// Parses text[0..n) as entry e's value into *v (a list gets one item, or none for null). On
// error writes the message (without location or key) into msg and returns -1.
static int parse_scalar(const ConfigEntry *e, const char *text, size_t n, TextKind kind, Value *v,
                        char *msg, size_t msglen) {
    char shown[256];
    memset(v, 0, sizeof(*v));
    if (memchr(text, 0, n)) return util_err(msg, msglen, "the value contains a NUL character");
    int plain = kind != TEXT_QUOTED;
    int null = kind == TEXT_PLAIN && is_null_text(text, n);
    switch (e->type) {
    case CONFIG_INT:
    case CONFIG_DOUBLE:
    case CONFIG_BOOL: {
        const char *want = e->type == CONFIG_INT      ? "an integer"
                           : e->type == CONFIG_DOUBLE ? "a number"
                                                      : "true or false";
        if (null) return util_err(msg, msglen, "expected %s, got null", want);
        if (!plain)
            return util_err(msg, msglen,
                            "expected %s, got the quoted string \"%s\" (write it without quotes)",
                            want, show(text, n, shown, sizeof shown));
        int rc = e->type == CONFIG_INT      ? parse_int(text, n, &v->i)
                 : e->type == CONFIG_DOUBLE ? parse_double(text, n, &v->d)
                                            : parse_bool(text, n, &v->b);
        if (rc == 2)
            return util_err(msg, msglen, "'%s' is out of range for %s",
                            show(text, n, shown, sizeof shown),
                            e->type == CONFIG_INT ? "a 64-bit integer" : "a double");
        if (rc)
            return util_err(msg, msglen, "expected %s, got '%s'", want,
                            show(text, n, shown, sizeof shown));
        return 0;
    }
    case CONFIG_STRING:
        v->s = null ? STRNDUP_CHECK("", 0) : STRNDUP_CHECK(text, n);
        return 0;
    case CONFIG_ENUM: {
        if (enum_index(e, text, n) >= 0) { v->s = STRNDUP_CHECK(text, n); return 0; }
        Buf b = {0};
        const char *p;
        size_t k, best = (size_t)-1;
        int best_i = -1;
        for (int i = 0; enum_choice(e, i, &p, &k); i++) {
            if (i) buf_str(&b, ", ");
            buf_add(&b, p, k);
            size_t d = n <= CONFIG_MAX_KEY && k <= CONFIG_MAX_KEY ? edit_distance(text, n, p, k)
                                                                  : (size_t)-1;
            if (d < best) { best = d; best_i = i; }
        }
        char hint[160] = "";
        if (best_i >= 0 && best > 0 && best < n && best <= (n / 3 > 1 ? n / 3 : 1)) {
            enum_choice(e, best_i, &p, &k);
            snprintf(hint, sizeof hint, " (did you mean '%.*s'?)", (int)(k < 100 ? k : 100), p);
        }
        if (null) util_err(msg, msglen, "expected one of %.300s; got null", b.p);
        else
            util_err(msg, msglen, "expected one of %.300s; got '%s'%s", b.p,
                     show(text, n, shown, sizeof shown), hint);
        free(b.p);
        return -1;
    }
    case CONFIG_LIST:
        if (!null) list_push(v, text, n);
        return 0;
    }
    return util_err(msg, msglen, "unknown type");
}

// The shortest %.{1..17}g text that reads back as exactly d.
static void format_double(char *out, size_t n, double d) {
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(out, n, "%.*g", prec, d);
        double back = strtod(out, NULL);
        if (memcmp(&back, &d, sizeof d) == 0) break;
    }
}

// Bounds of int and double entries (text in the schema, checked by config_new).
static int check_range(const ConfigEntry *e, const Value *v, char *msg, size_t msglen) {
    if (e->type != CONFIG_INT && e->type != CONFIG_DOUBLE) return 0;
    const char *bound[2] = {e->min, e->max};
    for (int side = 0; side < 2; side++) {
        if (!bound[side]) continue;
        int out;
        char now[40];
        if (e->type == CONFIG_INT) {
            int64_t b = 0;
            parse_int(bound[side], strlen(bound[side]), &b);
            out = side == 0 ? v->i < b : v->i > b;
            snprintf(now, sizeof now, "%lld", (long long)v->i);
        } else {
            double b = 0;
            parse_double(bound[side], strlen(bound[side]), &b);
            out = side == 0 ? v->d < b : v->d > b;
            format_double(now, sizeof now, v->d);
        }
        if (out) return util_err(msg, msglen, "%s is %s the %s %s", now, side ? "above" : "below",
                                 side ? "maximum" : "minimum", bound[side]);
    }
    return 0;
}

// Parses a flow sequence of scalars ("[a, 'b c']") into list *v; -1 with a message otherwise.
static int parse_flow_list(const char *text, size_t n, Value *v, char *msg, size_t msglen) {
    // The only event sequence accepted, in order; SCALAR repeats inside the sequence.
    static const yaml_event_type_t want[] = {YAML_STREAM_START_EVENT, YAML_DOCUMENT_START_EVENT,
                                             YAML_SEQUENCE_START_EVENT, YAML_SEQUENCE_END_EVENT,
                                             YAML_DOCUMENT_END_EVENT, YAML_STREAM_END_EVENT};
    yaml_parser_t p;
    yaml_event_t ev;
    memset(v, 0, sizeof(*v));
    if (!yaml_parser_initialize(&p)) DIE("out of memory (libyaml)");
    yaml_parser_set_input_string(&p, (const unsigned char *)text, n);
    int state = 0, ret = -1;
    while (state < 6) {
        if (!yaml_parser_parse(&p, &ev)) {
            if (p.error == YAML_MEMORY_ERROR) DIE("out of memory (libyaml)");
            util_err(msg, msglen, "expected a list such as [a, b]: YAML syntax error: %s",
                     p.problem ? p.problem : "?");
            break;
        }
        int ok;
        if (state == 3 && ev.type == YAML_SCALAR_EVENT && v->n_items >= CONFIG_MAX_ITEMS) {
            yaml_event_delete(&ev);
            util_err(msg, msglen, "more than %d items in the list", CONFIG_MAX_ITEMS);
            break;
        }
        if (state == 3 && ev.type == YAML_SCALAR_EVENT) {
            ok = !ev.data.scalar.anchor && !ev.data.scalar.tag &&
                 !memchr(ev.data.scalar.value, 0, ev.data.scalar.length);
            if (ok) list_push(v, (const char *)ev.data.scalar.value, ev.data.scalar.length);
        } else {
            ok = ev.type == want[state] &&
                 !(ev.type == YAML_SEQUENCE_START_EVENT &&
                   (ev.data.sequence_start.anchor || ev.data.sequence_start.tag));
            state++;
        }
        yaml_event_delete(&ev);
        if (!ok) { util_err(msg, msglen, "expected a list of strings such as [a, b]"); break; }
        if (state == 6) ret = 0;
    }
    yaml_parser_delete(&p);
    if (ret) value_free(v);
    return ret;
}

// Parses a --set value (or a default) for entry e: verbatim for string and enum, plain for
// numbers and bools, a flow sequence / empty / one item for lists.
static int parse_text_value(const ConfigEntry *e, const char *text, Value *v, char *msg,
                            size_t msglen) {
    size_t n = strlen(text);
    if (utf8_valid_len(text, n) != n) {
        memset(v, 0, sizeof(*v));
        return util_err(msg, msglen, "the value is not valid UTF-8");
    }
    if (e->type == CONFIG_LIST) {
        memset(v, 0, sizeof(*v));
        if (n == 0) return 0;
        if (text[0] == '[') return parse_flow_list(text, n, v, msg, msglen);
        list_push(v, text, n);
        return 0;
    }
    int rc = parse_scalar(
        e, text, n, e->type == CONFIG_STRING || e->type == CONFIG_ENUM ? TEXT_VERBATIM : TEXT_PLAIN,
        v, msg, msglen);
    if (rc == 0 && check_range(e, v, msg, msglen)) { value_free(v); return -1; }
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Keys and the schema
// ---------------------------------------------------------------------------------------------

static int find_key(const Config *c, const char *key, size_t n) {
    for (int i = 0; i < c->n; i++) {
        const char *k = c->schema[i].key;
        if (strlen(k) == n && !memcmp(k, key, n)) return i;
    }
    return -1;
}

// 1 when key[0..n) is a section: some schema key starts with it followed by '.'.
static int is_section(const Config *c, const char *key, size_t n) {
    if (n == 0) return 0;
    for (int i = 0; i < c->n; i++) {
        const char *k = c->schema[i].key;
        if (strlen(k) > n && !memcmp(k, key, n) && k[n] == '.') return 1;
    }
    return 0;
}

// " (did you mean 'x'?)" or "".
static void suggest(const Config *c, const char *key, size_t n, char *out, size_t outlen) {
    out[0] = 0;
    if (n == 0 || n >= CONFIG_MAX_KEY) return;
    const char *last = memrchr(key, '.', n);
    last = last ? last + 1 : key;
    size_t nlast = n - (size_t)(last - key);
    int best = -1;
    size_t best_d = (size_t)-1;
    for (int i = 0; i < c->n; i++) {   // same last part in another section: a misplaced key
        const char *k = c->schema[i].key, *kl = strrchr(k, '.');
        kl = kl ? kl + 1 : k;
        if (strlen(kl) == nlast && !memcmp(kl, last, nlast)) { best = i; best_d = 0; break; }
    }
    if (best < 0)
        for (int i = 0; i < c->n; i++) {
            const char *k = c->schema[i].key;
            size_t d = edit_distance(key, n, k, strlen(k));
            if (d < best_d) { best_d = d; best = i; }
        }
    if (best >= 0 && (best_d == 0 || (best_d < n && best_d <= 2 + n / 5)))
        snprintf(out, outlen, " (did you mean '%s'?)", c->schema[best].key);
}

// "; keys: train.lr, train.steps, ..." for a section, at most a few.
static void section_keys(const Config *c, const char *key, size_t n, char *out, size_t outlen) {
    size_t o = (size_t)snprintf(out, outlen, " (keys:");
    int shown = 0;
    for (int i = 0; i < c->n && o < outlen; i++) {
        const char *k = c->schema[i].key;
        if (strlen(k) > n && !memcmp(k, key, n) && k[n] == '.') {
            if (shown == 4) { o += (size_t)snprintf(out + o, outlen - o, " ..."); break; }
            o += (size_t)snprintf(out + o, outlen - o, "%s %s", shown ? "," : "", k);
            shown++;
        }
    }
    if (o < outlen) snprintf(out + o, outlen - o, ")");
}

static int key_chars_ok(const char *k) {
    size_t n = strlen(k);
    if (n == 0 || n >= CONFIG_MAX_KEY || k[0] == '.' || k[n - 1] == '.' || strstr(k, ".."))
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= '0' && k[i] <= '9') || k[i] == '_' ||
              k[i] == '.'))
            return 0;
    return 1;
}

static int cmp_key_of(const void *a, const void *b, void *ctx) {
    const ConfigEntry *s = ctx;
    return strcmp(s[*(const int *)a].key, s[*(const int *)b].key);
}

static int schema_check(const ConfigEntry *schema, int n, char *err, size_t errlen) {
    char msg[512];
    for (int i = 0; i < n; i++) {
        const ConfigEntry *e = &schema[i];
        if (!key_chars_ok(e->key))
            return util_err(err, errlen, "schema: key '%.100s': use dotted parts of a-z, 0-9 and _",
                            e->key);
        if (e->type < CONFIG_INT || e->type > CONFIG_LIST)
            return util_err(err, errlen, "schema: %s: unknown type %d", e->key, (int)e->type);
        if (!e->help) return util_err(err, errlen, "schema: %s: no help text", e->key);
        if (e->flags & ~(CONFIG_NO_HASH | CONFIG_HASH_IF_SET))
            return util_err(err, errlen, "schema: %s: unknown flags", e->key);
        size_t kn = strlen(e->key);
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            const char *o = schema[j].key;
            if (j < i && !strcmp(o, e->key))
                return util_err(err, errlen, "schema: %s: declared twice", e->key);
            if (strlen(o) > kn && !memcmp(o, e->key, kn) && o[kn] == '.')
                return util_err(err, errlen, "schema: %s is both a key and the section of %s",
                                e->key, o);
        }
        if (e->type == CONFIG_ENUM) {
            if (!e->choices || !*e->choices)
                return util_err(err, errlen, "schema: %s: an enum needs choices", e->key);
            const char *p, *q;
            size_t k, kq;
            for (int a = 0; enum_choice(e, a, &p, &k); a++) {
                if (!k)
                    return util_err(err, errlen, "schema: %s: empty choice in '%s'", e->key,
                                    e->choices);
                for (int b = 0; b < a; b++) {
                    enum_choice(e, b, &q, &kq);
                    if (k == kq && !memcmp(p, q, k))
                        return util_err(err, errlen, "schema: %s: choice '%.*s' twice", e->key,
                                        (int)k, p);
                }
            }
        } else if (e->choices)
            return util_err(err, errlen, "schema: %s: choices on a non-enum key", e->key);
        const char *bound[2] = {e->min, e->max};
        Value bv[2];
        memset(bv, 0, sizeof bv);
        for (int side = 0; side < 2; side++) {
            if (!bound[side]) continue;
            if (e->type != CONFIG_INT && e->type != CONFIG_DOUBLE)
                return util_err(err, errlen, "schema: %s: bounds on a %s key", e->key,
                                type_name(e->type));
            int rc = e->type == CONFIG_INT
                         ? parse_int(bound[side], strlen(bound[side]), &bv[side].i)
                         : parse_double(bound[side], strlen(bound[side]), &bv[side].d);
            if (rc)
                return util_err(err, errlen, "schema: %s: bad %s '%.40s'", e->key,
                                side ? "max" : "min", bound[side]);
        }
        if (e->min && e->max && (e->type == CONFIG_INT ? bv[0].i > bv[1].i : bv[0].d > bv[1].d))
            return util_err(err, errlen, "schema: %s: min %s is above max %s", e->key, e->min,
                            e->max);
        if (!e->def && e->type != CONFIG_STRING && e->type != CONFIG_LIST)
            return util_err(err, errlen, "schema: %s: a %s key needs a default", e->key,
                            type_name(e->type));
        Value v;
        if (parse_text_value(e, e->def ? e->def : "", &v, msg, sizeof msg))
            return util_err(err, errlen, "schema: %s: bad default: %s", e->key, msg);
        value_free(&v);
    }
    return 0;
}

int config_new(Config **out, const ConfigEntry *schema, char *err, size_t errlen) {
    *out = NULL;
    int n = 0;
    while (schema[n].key) {
        if (++n > 100000)
            return util_err(err, errlen, "schema: more than 100000 keys (no NULL-key end?)");
    }
    if (schema_check(schema, n, err, errlen)) return -1;
    Config *c = CALLOC_CHECK(1, sizeof(Config));
    c->schema = schema;
    c->n = n;
    c->val = CALLOC_CHECK((size_t)n, sizeof(Value));
    c->def = CALLOC_CHECK((size_t)n, sizeof(Value));
    c->set = CALLOC_CHECK((size_t)n, 1);
    c->sorted = CALLOC_CHECK((size_t)n, sizeof(int));
    char msg[16];
    for (int i = 0; i < n; i++) {
        parse_text_value(&schema[i], schema[i].def ? schema[i].def : "", &c->def[i], msg,
                         sizeof msg); // checked above
        value_copy(&c->val[i], &c->def[i]);
        c->sorted[i] = i;
    }
    qsort_r(c->sorted, (size_t)n, sizeof(int), cmp_key_of, (void *)schema);
    *out = c;
    return 0;
}

void config_free(Config *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) { value_free(&c->val[i]); value_free(&c->def[i]); }
    free(c->val); free(c->def); free(c->set); free(c->sorted);
    free(c);
}

// ---------------------------------------------------------------------------------------------
// The YAML loader
// ---------------------------------------------------------------------------------------------
typedef struct { int idx; Value v; } Pending;
typedef struct { char *key; int line, col; } Seen;

typedef struct {
    Config *c;
    yaml_parser_t p;
    const char *name;          // file name for messages
    const char *text;          // the input (for reader-error positions)
    size_t len;
    Pending *pend; int n_pend, cap_pend;
    Seen *seen; int n_seen, cap_seen;
    char *err; size_t errlen;
} Loader;

static int lerr(Loader *L, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int lerr(Loader *L, yaml_mark_t m, const char *fmt, ...) {
    if (!L->err || !L->errlen) return -1;
    int k = snprintf(L->err, L->errlen, "%s:%d:%d: ", L->name, (int)m.line + 1, (int)m.column + 1);
    if (k >= 0 && (size_t)k < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + k, L->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

// Line and column (1-based, characters) of byte offset off in the input.
static void offset_position(const Loader *L, size_t off, int *line, int *col) {
    *line = 1; *col = 1;
    for (size_t i = 0; i < off && i < L->len; i++) {
        unsigned char ch = (unsigned char)L->text[i];
        if (ch == '\n') { (*line)++; *col = 1; }
        else if ((ch & 0xC0) != 0x80) (*col)++;
    }
}

static int next_event(Loader *L, yaml_event_t *ev) {
    if (yaml_parser_parse(&L->p, ev)) return 0;
    yaml_parser_t *p = &L->p;
    if (p->error == YAML_MEMORY_ERROR) DIE("out of memory (libyaml) reading %s", L->name);
    if (p->error == YAML_READER_ERROR) {
        int line, col;
        offset_position(L, p->problem_offset, &line, &col);
        if (p->problem_value >= 0)   // a byte, or a code point for "invalid Unicode character"
            util_err(L->err, L->errlen,
                     p->problem_value > 0xFF ? "%s:%d:%d: YAML error: %s (U+%04X)"
                                             : "%s:%d:%d: YAML error: %s (byte 0x%02X)",
                     L->name, line, col, p->problem ? p->problem : "cannot read",
                     (unsigned)p->problem_value);
        else
            util_err(L->err, L->errlen, "%s:%d:%d: YAML error: %s", L->name, line, col,
                     p->problem ? p->problem : "cannot read");
        return -1;
    }
    if (p->context)
        return lerr(L, p->problem_mark, "YAML syntax error: %s (%s at line %d, column %d)",
                    p->problem ? p->problem : "?", p->context, (int)p->context_mark.line + 1,
                    (int)p->context_mark.column + 1);
    return lerr(L, p->problem_mark, "YAML syntax error: %s", p->problem ? p->problem : "?");
}

// "a mapping", "a sequence", ... for messages about an event in the wrong place.
static const char *event_kind(const yaml_event_t *ev) {
    switch (ev->type) {
    case YAML_MAPPING_START_EVENT: return "a mapping";
    case YAML_SEQUENCE_START_EVENT: return "a sequence";
    case YAML_ALIAS_EVENT: return "an alias";
    case YAML_SCALAR_EVENT: return "a scalar";
    default: return "something else";
    }
}

// Anchors, aliases and tags are refused wherever they appear.
static int check_node(Loader *L, const yaml_event_t *ev) {
    const yaml_char_t *anchor = NULL, *tag = NULL;
    if (ev->type == YAML_ALIAS_EVENT)
        return lerr(L, ev->start_mark, "aliases (*name) are not supported");
    if (ev->type == YAML_SCALAR_EVENT) {
        anchor = ev->data.scalar.anchor;
        tag = ev->data.scalar.tag;
    }
    if (ev->type == YAML_MAPPING_START_EVENT) {
        anchor = ev->data.mapping_start.anchor;
        tag = ev->data.mapping_start.tag;
    }
    if (ev->type == YAML_SEQUENCE_START_EVENT) {
        anchor = ev->data.sequence_start.anchor;
        tag = ev->data.sequence_start.tag;
    }
    if (anchor) return lerr(L, ev->start_mark, "anchors (&name) are not supported");
    if (tag) return lerr(L, ev->start_mark, "tags (!tag) are not supported");
    return 0;
}

static void stage(Loader *L, int idx, Value *v) {
    if (L->n_pend == L->cap_pend) {
        L->cap_pend = L->cap_pend ? 2 * L->cap_pend : 16;
        L->pend = REALLOC_ARRAY(L->pend, (size_t)L->cap_pend, sizeof(Pending));
    }
    L->pend[L->n_pend].idx = idx;
    L->pend[L->n_pend].v = *v;
    L->n_pend++;
}

// Records key as seen at mark m; -1 (duplicate message) when it was seen before in this file.
static int see(Loader *L, const char *key, yaml_mark_t m) {
    for (int i = 0; i < L->n_seen; i++)
        if (!strcmp(L->seen[i].key, key))
            return lerr(L, m, "duplicate key '%s' (first at line %d, column %d)", key,
                        L->seen[i].line, L->seen[i].col);
    if (L->n_seen == L->cap_seen) {
        L->cap_seen = L->cap_seen ? 2 * L->cap_seen : 16;
        L->seen = REALLOC_ARRAY(L->seen, (size_t)L->cap_seen, sizeof(Seen));
    }
    L->seen[L->n_seen].key = STRDUP_CHECK(key);
    L->seen[L->n_seen].line = (int)m.line + 1;
    L->seen[L->n_seen].col = (int)m.column + 1;
    L->n_seen++;
    return 0;
}

// Reads the value of leaf entry idx, whose first event is *ev (the caller deletes it; the events
// of a sequence are read and deleted here).
static int load_leaf(Loader *L, int idx, yaml_event_t *ev) {
    const ConfigEntry *e = &L->c->schema[idx];
    char msg[512];
    Value v;
    memset(&v, 0, sizeof v);
    if (ev->type == YAML_SCALAR_EVENT) {
        TextKind kind = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE ? TEXT_PLAIN : TEXT_QUOTED;
        if (parse_scalar(e, (const char *)ev->data.scalar.value, ev->data.scalar.length, kind, &v,
                         msg, sizeof msg) ||
            check_range(e, &v, msg, sizeof msg)) {
            value_free(&v);
            return lerr(L, ev->start_mark, "%s: %s", e->key, msg);
        }
        stage(L, idx, &v);
        return 0;
    }
    const char *want = e->type == CONFIG_INT ? "an integer" : e->type == CONFIG_DOUBLE ? "a number"
                     : e->type == CONFIG_BOOL ? "true or false" : e->type == CONFIG_ENUM ? "one of "
                     : e->type == CONFIG_LIST ? "a list of strings" : "a string";
    if (ev->type != YAML_SEQUENCE_START_EVENT || e->type != CONFIG_LIST)
        return lerr(L, ev->start_mark, "%s: expected %s%s, got %s", e->key, want,
                    e->type == CONFIG_ENUM ? e->choices : "", event_kind(ev));
    for (;;) {
        yaml_event_t it;
        if (next_event(L, &it)) { value_free(&v); return -1; }
        if (it.type == YAML_SEQUENCE_END_EVENT) { yaml_event_delete(&it); break; }
        int bad = check_node(L, &it);
        if (!bad && it.type != YAML_SCALAR_EVENT)
            bad = lerr(L, it.start_mark, "%s: expected a list of strings, got %s inside the list",
                       e->key, event_kind(&it));
        if (!bad && memchr(it.data.scalar.value, 0, it.data.scalar.length))
            bad = lerr(L, it.start_mark, "%s: the value contains a NUL character", e->key);
        if (!bad && v.n_items >= CONFIG_MAX_ITEMS)
            bad = lerr(L, it.start_mark, "%s: more than %d items in the list", e->key,
                       CONFIG_MAX_ITEMS);
        if (!bad) {
            int null = it.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                       is_null_text((const char *)it.data.scalar.value, it.data.scalar.length);
            list_push(&v, null ? "" : (const char *)it.data.scalar.value,
                      null ? 0 : it.data.scalar.length);
        }
        yaml_event_delete(&it);
        if (bad) { value_free(&v); return -1; }
    }
    stage(L, idx, &v);
    return 0;
}

// Reads the pairs of a mapping whose MAPPING_START was consumed; prefix is its dotted path ("" at
// the top), depth its nesting (1 at the top). Recursion only follows schema sections, so its
// depth is bounded by the schema's; CONFIG_MAX_DEPTH bounds it whatever the schema.
static int load_mapping(Loader *L, const char *prefix, int depth) {
    for (;;) {
        yaml_event_t kev, vev;
        if (next_event(L, &kev)) return -1;
        if (kev.type == YAML_MAPPING_END_EVENT) { yaml_event_delete(&kev); return 0; }
        if (check_node(L, &kev)) { yaml_event_delete(&kev); return -1; }
        if (kev.type != YAML_SCALAR_EVENT) {
            lerr(L, kev.start_mark, "keys must be scalars, got %s as a key", event_kind(&kev));
            yaml_event_delete(&kev);
            return -1;
        }
        yaml_mark_t km = kev.start_mark;
        size_t plen = strlen(prefix), klen = kev.data.scalar.length,
               n = plen + (plen ? 1 : 0) + klen;
        char *full = MALLOC_CHECK(n + 1);
        memcpy(full, prefix, plen);
        if (plen) full[plen] = '.';
        memcpy(full + plen + (plen ? 1 : 0), kev.data.scalar.value, klen);
        full[n] = 0;
        yaml_event_delete(&kev);
        int idx = memchr(full, 0, n) ? -1 : find_key(L->c, full, n);
        int section = idx < 0 && !memchr(full, 0, n) && is_section(L->c, full, n);
        int rc = 0;
        if (idx < 0 && !section) {
            char hint[CONFIG_MAX_KEY + 40], shown[256];
            suggest(L->c, full, n, hint, sizeof hint);
            rc = lerr(L, km, "unknown key '%s'%s", show(full, n, shown, sizeof shown), hint);
        }
        if (!rc) rc = see(L, full, km);
        if (!rc) rc = next_event(L, &vev);
        if (!rc) {
            rc = check_node(L, &vev);
            if (!rc && idx >= 0) rc = load_leaf(L, idx, &vev);
            else if (!rc && vev.type == YAML_MAPPING_START_EVENT && depth >= CONFIG_MAX_DEPTH)
                rc = lerr(L, vev.start_mark, "%s: nesting deeper than %d levels", full,
                          CONFIG_MAX_DEPTH);
            else if (!rc && vev.type == YAML_MAPPING_START_EVENT)
                rc = load_mapping(L, full, depth + 1);
            else if (!rc &&
                     !(vev.type == YAML_SCALAR_EVENT &&
                       vev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                       is_null_text((const char *)vev.data.scalar.value, vev.data.scalar.length))) {
                char keys[400];
                section_keys(L->c, full, n, keys, sizeof keys);
                rc = lerr(L, vev.start_mark, "%s is a section%s: expected a mapping, got %s", full,
                          keys, event_kind(&vev));
            }
            yaml_event_delete(&vev);
        }
        free(full);
        if (rc) return -1;
    }
}

static int load_stream(Loader *L) {
    yaml_event_t ev;
    if (next_event(L, &ev)) return -1;   // STREAM_START
    yaml_event_delete(&ev);
    int docs = 0;
    for (;;) {
        if (next_event(L, &ev)) return -1;
        if (ev.type == YAML_STREAM_END_EVENT) { yaml_event_delete(&ev); return 0; }
        if (ev.type != YAML_DOCUMENT_START_EVENT) {
            lerr(L, ev.start_mark, "unexpected YAML event");
            yaml_event_delete(&ev);
            return -1;
        }
        if (docs++) {
            lerr(L, ev.start_mark, "only one YAML document is allowed (found a second '---')");
            yaml_event_delete(&ev);
            return -1;
        }
        yaml_event_delete(&ev);
        if (next_event(L, &ev)) return -1;
        int rc = check_node(L, &ev);
        if (!rc && ev.type == YAML_MAPPING_START_EVENT) rc = load_mapping(L, "", 1);
        else if (!rc && !(ev.type == YAML_SCALAR_EVENT &&
                          ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
                          is_null_text((const char *)ev.data.scalar.value, ev.data.scalar.length)))
            rc = lerr(L, ev.start_mark, "the top level must be a mapping of keys, got %s",
                      event_kind(&ev));
        yaml_event_delete(&ev);
        if (rc) return -1;
        if (next_event(L, &ev)) return -1;   // DOCUMENT_END
        yaml_event_delete(&ev);
    }
}

int config_load_string(Config *c, const char *name, const char *text, size_t len, char *err,
                       size_t errlen) {
    if (len > CONFIG_MAX_FILE)
        return util_err(err, errlen, "%s: the file is larger than %d bytes", name, CONFIG_MAX_FILE);
    if (!text) { text = ""; len = 0; }
    Loader L = {.c = c, .name = name, .text = text, .len = len, .err = err, .errlen = errlen};
    if (!yaml_parser_initialize(&L.p)) DIE("out of memory (libyaml)");
    yaml_parser_set_input_string(&L.p, (const unsigned char *)text, len);
    int rc = load_stream(&L);
    yaml_parser_delete(&L.p);
    for (int i = 0; i < L.n_pend; i++) {
        if (rc == 0) {
            int idx = L.pend[i].idx;
            value_free(&c->val[idx]);
            c->val[idx] = L.pend[i].v;
            c->set[idx] = 1;
        } else value_free(&L.pend[i].v);
    }
    for (int i = 0; i < L.n_seen; i++) free(L.seen[i].key);
    free(L.pend);
    free(L.seen);
    return rc;
}

int config_load_file(Config *c, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) return util_err(err, errlen, "%s: %s", path, strerror(errno));
    size_t cap = 4096, n = 0;
    char *buf = MALLOC_CHECK(cap);
    for (;;) {
        if (n == cap) {
            if (cap > CONFIG_MAX_FILE) break;
            cap *= 2;
            buf = REALLOC_CHECK(buf, cap);
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    int saved = errno;
    fclose(f);
    int rc;
    if (bad) rc = util_err(err, errlen, "%s: cannot read: %s", path, strerror(saved));
    else if (n > CONFIG_MAX_FILE)
        rc = util_err(err, errlen, "%s: the file is larger than %d bytes", path, CONFIG_MAX_FILE);
    else rc = config_load_string(c, path, buf, n, err, errlen);
    free(buf);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Overrides
// ---------------------------------------------------------------------------------------------

int config_set_value(Config *c, const char *key, const char *value, const char *where, char *err,
                     size_t errlen) {
    char shown[256], msg[512];
    const char *w = where ? where : "config";
    size_t n = strlen(key);
    int idx = find_key(c, key, n);
    if (idx < 0) {
        if (is_section(c, key, n)) {
            char keys[400];
            section_keys(c, key, n, keys, sizeof keys);
            return util_err(err, errlen, "%s: %s is a section, not a key%s", w, key, keys);
        }
        char hint[CONFIG_MAX_KEY + 40];
        suggest(c, key, n, hint, sizeof hint);
        return util_err(err, errlen, "%s: unknown key '%s'%s", w, show(key, n, shown, sizeof shown),
                        hint);
    }
    Value v;
    if (parse_text_value(&c->schema[idx], value, &v, msg, sizeof msg))
        return util_err(err, errlen, "%s: %s: %s", w, key, msg);
    value_free(&c->val[idx]);
    c->val[idx] = v;
    c->set[idx] = 1;
    return 0;
}

int config_set(Config *c, const char *assignment, char *err, size_t errlen) {
    char shown[256], where[320], key[CONFIG_MAX_KEY];
    size_t n = strlen(assignment);
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return util_err(err, errlen, "--set '%s': expected KEY=VALUE (e.g. --set train.lr=3e-5)",
                        show(assignment, n, shown, sizeof shown));
    snprintf(where, sizeof where, "--set %s", show(assignment, n, shown, sizeof shown));
    size_t kn = (size_t)(eq - assignment);
    if (kn >= sizeof key)
        return util_err(err, errlen, "%s: unknown key (longer than %d bytes)", where,
                        CONFIG_MAX_KEY - 1);
    memcpy(key, assignment, kn);
    key[kn] = 0;
    return config_set_value(c, key, eq + 1, where, err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Getters (a wrong key or type is a programmer error)
// ---------------------------------------------------------------------------------------------

static int entry_of(const Config *c, const char *key, ConfigType t1, ConfigType t2,
                    const char *fn) {
    int i = find_key(c, key, strlen(key));
    if (i < 0) DIE("%s: no key '%s' in the schema", fn, key);
    if (c->schema[i].type != t1 && c->schema[i].type != t2)
        DIE("%s: key '%s' is a %s", fn, key, type_name(c->schema[i].type));
    return i;
}

int64_t config_get_int(const Config *c, const char *key) {
    return c->val[entry_of(c, key, CONFIG_INT, CONFIG_INT, "config_get_int")].i;
}
double config_get_double(const Config *c, const char *key) {
    return c->val[entry_of(c, key, CONFIG_DOUBLE, CONFIG_DOUBLE, "config_get_double")].d;
}
int config_get_bool(const Config *c, const char *key) {
    return c->val[entry_of(c, key, CONFIG_BOOL, CONFIG_BOOL, "config_get_bool")].b;
}
const char *config_get_string(const Config *c, const char *key) {
    return c->val[entry_of(c, key, CONFIG_STRING, CONFIG_ENUM, "config_get_string")].s;
}
int config_get_enum(const Config *c, const char *key) {
    int i = entry_of(c, key, CONFIG_ENUM, CONFIG_ENUM, "config_get_enum");
    return enum_index(&c->schema[i], c->val[i].s, strlen(c->val[i].s));
}
int64_t config_get_list(const Config *c, const char *key, const char *const **items) {
    int i = entry_of(c, key, CONFIG_LIST, CONFIG_LIST, "config_get_list");
    if (items) *items = (const char *const *)c->val[i].items;
    return c->val[i].n_items;
}
int config_is_set(const Config *c, const char *key) {
    int i = find_key(c, key, strlen(key));
    if (i < 0) DIE("config_is_set: no key '%s' in the schema", key);
    return c->set[i];
}
int config_has_key(const Config *c, const char *key) { return find_key(c, key, strlen(key)) >= 0; }

// ---------------------------------------------------------------------------------------------
// Dump, hash, help
// ---------------------------------------------------------------------------------------------

// A YAML double-quoted scalar. The text is valid UTF-8 (files are checked by libyaml, overrides
// and defaults by us); everything libyaml would not read back verbatim is escaped.
static void put_quoted(Buf *b, const char *s) {
    size_t n = strlen(s);
    buf_add(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode(s + i, n - i, &cp);
        if (!k) { buf_fmt(b, "\\x%02X", (unsigned char)s[i]); i++; continue; }   // not reached
        if (cp == '"') buf_str(b, "\\\"");
        else if (cp == '\\') buf_str(b, "\\\\");
        else if (cp == '\n') buf_str(b, "\\n");
        else if (cp == '\t') buf_str(b, "\\t");
        else if (cp == '\r') buf_str(b, "\\r");
        else if (cp == 0x85) buf_str(b, "\\N");
        else if (cp == 0x2028) buf_str(b, "\\L");
        else if (cp == 0x2029) buf_str(b, "\\P");
        else if (cp < 0x20 || (cp >= 0x7F && cp < 0xA0)) buf_fmt(b, "\\x%02X", (unsigned)cp);
        else if (cp == 0xFEFF || cp == 0xFFFE || cp == 0xFFFF) buf_fmt(b, "\\u%04X", (unsigned)cp);
        else buf_add(b, s + i, (size_t)k);
        i += (size_t)k;
    }
    buf_add(b, "\"", 1);
}

static void put_double(Buf *b, double d) {
    char tmp[40];
    format_double(tmp, sizeof tmp, d);
    buf_str(b, tmp);
}

static void put_value(Buf *b, const ConfigEntry *e, const Value *v) {
    switch (e->type) {
    case CONFIG_INT: buf_fmt(b, "%lld", (long long)v->i); break;
    case CONFIG_DOUBLE: put_double(b, v->d); break;
    case CONFIG_BOOL: buf_str(b, v->b ? "true" : "false"); break;
    case CONFIG_STRING:
    case CONFIG_ENUM: put_quoted(b, v->s); break;
    case CONFIG_LIST:
        buf_str(b, "[");
        for (int64_t i = 0; i < v->n_items; i++) {
            if (i) buf_str(b, ", ");
            put_quoted(b, v->items[i]);
        }
        buf_str(b, "]");
        break;
    }
}

// 1 when entry i holds its default value (compared as they are dumped).
static int is_default(const Config *c, int i) {
    Buf v = {0}, d = {0};
    buf_add(&v, "", 0);
    buf_add(&d, "", 0);
    put_value(&v, &c->schema[i], &c->val[i]);
    put_value(&d, &c->schema[i], &c->def[i]);
    int same = v.n == d.n && !memcmp(v.p, d.p, v.n);
    free(v.p);
    free(d.p);
    return same;
}

// Nested YAML of the entries in sorted order; with_all = 0 leaves out CONFIG_NO_HASH entries
// and CONFIG_HASH_IF_SET entries at their default.
static void dump_into(const Config *c, Buf *b, int with_all) {
    const char *prev = "";   // previous key written
    buf_add(b, "", 0);
    for (int s = 0; s < c->n; s++) {
        int i = c->sorted[s];
        const ConfigEntry *e = &c->schema[i];
        if (!with_all && (e->flags & CONFIG_NO_HASH)) continue;
        if (!with_all && (e->flags & CONFIG_HASH_IF_SET) && is_default(c, i)) continue;
        // Sections shared with the previous key are open already; open the rest.
        const char *k = e->key;
        size_t common = 0;   // length of the shared section prefix, ending at a '.'
        for (size_t j = 0; k[j] && k[j] == prev[j]; j++)
            if (k[j] == '.') common = j + 1;
        int depth = 0;
        for (size_t j = 0; j < common; j++) depth += k[j] == '.';
        const char *part = k + common;
        for (const char *dot; (dot = strchr(part, '.')); part = dot + 1) {
            for (int d = 0; d < depth; d++) buf_str(b, "  ");
            buf_add(b, part, (size_t)(dot - part));
            buf_str(b, ":\n");
            depth++;
        }
        for (int d = 0; d < depth; d++) buf_str(b, "  ");
        buf_str(b, part);
        buf_str(b, ": ");
        put_value(b, e, &c->val[i]);
        buf_str(b, "\n");
        prev = k;
    }
}

char *config_dump_string(const Config *c) {
    Buf b = {0};
    dump_into(c, &b, 1);
    return b.p;
}

int config_dump(const Config *c, FILE *out) {
    char *s = config_dump_string(c);
    size_t n = strlen(s);
    int rc = fwrite(s, 1, n, out) == n ? 0 : -1;
    free(s);
    return rc;
}

void config_hash(const Config *c, char hex[CONFIG_HASH_HEX]) {
    Buf b = {0};
    dump_into(c, &b, 0);
    uint64_t h = data_hash_bytes(DATA_HASH_INIT, b.p, b.n);
    free(b.p);
    snprintf(hex, CONFIG_HASH_HEX, "%016llx", (unsigned long long)h);
}

void config_help(const Config *c, FILE *out) {
    size_t w = 0;
    for (int i = 0; i < c->n; i++) if (strlen(c->schema[i].key) > w) w = strlen(c->schema[i].key);
    for (int i = 0; i < c->n; i++) {
        const ConfigEntry *e = &c->schema[i];
        Buf d = {0};
        put_value(&d, e, &c->def[i]);
        fprintf(out, "  %-*s  %-6s  %-12s  %s", (int)w, e->key, type_name(e->type), d.p, e->help);
        if (e->type == CONFIG_ENUM) fprintf(out, " (%s)", e->choices);
        if (e->min && e->max) fprintf(out, " [%s .. %s]", e->min, e->max);
        else if (e->min) fprintf(out, " [>= %s]", e->min);
        else if (e->max) fprintf(out, " [<= %s]", e->max);
        fprintf(out, "\n");
        free(d.p);
    }
}

// 1 when the file holds nothing but blank lines and comments (0 when it cannot be read: the
// loader says why).
static int file_is_blank(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    int ch, blank = 1, comment = 0;
    while (blank && (ch = fgetc(f)) != EOF) {
        if (ch == '\n') comment = 0;
        else if (ch == '#') comment = 1;
        else if (!comment && !isspace(ch)) blank = 0;
    }
    fclose(f);
    return blank;
}

int config_parse_args(Config *c, int argc, char **argv, const char *prog, const char *usage) {
    const char *cfile = NULL;
    int print = 0;
    char err[2048];
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") || !strcmp(argv[i], "help")) {
            fputs(usage, stdout);
            config_help(c, stdout);
            return 0;
        }
        else if (!strcmp(argv[i], "-c") && i + 1 < argc) cfile = argv[++i];
        else if (!strcmp(argv[i], "--set") && i + 1 < argc) i++;   // applied after the file
        else if (!strcmp(argv[i], "--print-config")) print = 1;
        else {
            fprintf(stderr, "%s: unexpected argument '%s'\n%s", prog, argv[i], usage);
            return 2;
        }
    }
    if (argc == 0) { fputs(usage, stderr); return 2; }
    if (cfile && config_load_file(c, cfile, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    // an empty file is a mistake (a wrong path, a file cut short), not a request for the defaults
    if (cfile && file_is_blank(cfile)) {
        fprintf(stderr, "%s: %s: the configuration file is empty\n", prog, cfile);
        return 1;
    }
    for (int i = 0; i < argc; i++)
        if (!strcmp(argv[i], "--set") && i + 1 < argc &&
            config_set(c, argv[++i], err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return 1;
        }
    if (print) { config_dump(c, stdout); return 0; }
    return -1;
}
