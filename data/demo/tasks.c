// tasks: the demo's instruction tasks (see tasks.h). One template table, read in both directions:
// task_sample fills a template's slots and solves it, task_parse matches a prompt against the
// templates and solves what it read, so a drawn task is always recognised with the same answer.
#include "tasks.h"
#include "data.h"
#include "util.h"
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define NELEM(a) ((int)(sizeof(a) / sizeof((a)[0])))

// ---------------------------------------------------------------------------------------------
// Fixed tables
// ---------------------------------------------------------------------------------------------

// Words of 3-5 lowercase letters: reversing, counting letters, changing case, phrases. Few on
// purpose: a model of a few million parameters trained for minutes can learn these by heart.
static const char *const WORDS[] = {
    "cat",  "dog",  "sun",  "hat",  "cup",  "pen",  "box",   "bed",   "egg",   "fox",
    "owl",  "bee",  "ant",  "pig",  "cow",  "hen",  "map",   "key",   "car",   "bus",
    "tree", "fish", "bird", "frog", "star", "moon", "rain",  "snow",  "milk",  "cake",
    "book", "ship", "lamp", "door", "ring", "bell", "apple", "house", "water", "bread",
};

// Made-up countries and their capitals: facts a model can only know from the pretraining text.
static const char *const COUNTRIES[][2] = {
    {"Zorbia", "Mipton"}, {"Galdor", "Fennick"}, {"Quessa", "Lorbin"}, {"Vantia", "Drell"},
    {"Morvania", "Pellis"}, {"Tarkland", "Oskar"}, {"Belloria", "Standa"}, {"Ostrel", "Varn"},
    {"Pemberia", "Kolt"}, {"Ulvania", "Rissen"}, {"Dornica", "Ambel"}, {"Feldaria", "Trosk"},
    {"Hesperin", "Calo"}, {"Ixland", "Murra"}, {"Jorvia", "Tellis"}, {"Kelmar", "Brisk"},
    {"Lunaria", "Obb"}, {"Nestoria", "Gaff"}, {"Orvenia", "Plume"}, {"Rastland", "Yelm"},
};

// Things and their colours. The first field is written as the prompt uses it ("the sky").
static const char *const THINGS[][2] = {
    {"grass", "green"}, {"the sky", "blue"}, {"snow", "white"}, {"coal", "black"},
    {"a banana", "yellow"}, {"a tomato", "red"}, {"a carrot", "orange"}, {"milk", "white"},
    {"the sea", "blue"}, {"a frog", "green"}, {"a crow", "black"}, {"chocolate", "brown"},
    {"a cherry", "red"}, {"a lemon", "yellow"}, {"a leaf", "green"}, {"a pumpkin", "orange"},
    {"soot", "black"}, {"a plum", "purple"}, {"a grape", "purple"}, {"a strawberry", "red"},
};
static const char *const COLOURS[] = {"green", "blue", "white", "black", "yellow", "red", "orange",
                                      "brown", "purple", "pink"};

// Filler the demonstrations put around answers; the grader skips leading ones.
static const char *const OPENERS[] = {"Sure!",          "Of course!",    "Okay.",
                                      "Good question!", "Let me think.", "Well,",
                                      "Happy to help.", "Hmm."};
static const char *const INTROS[] = {"The answer is",  "I think the answer is", "It is",
                                     "That would be",  "Here is the answer:",   "Answer:",
                                     "I believe it is"};
static const char *const TAILS[] = {"I hope this helps!", "Let me know if you need anything else.",
                                    "Is there anything else?", "That was a fun one.",
                                    "Have a nice day!"};

// A small grammar for plain sentences (pretraining text, rambling answers).
static const char *const NAMES[] = {"Tom",  "Ann", "Sam", "Mia", "Ben",
                                    "Lucy", "Max", "Zoe", "Leo", "Ivy"};
static const char *const ADJS[] = {"red", "big", "small", "soft", "new", "happy", "little", "tall",
                                   "quiet", "sleepy", "green", "blue"};
static const char *const NOUNS[] = {"cat", "dog",  "bird", "fish", "tree", "house",
                                    "car", "ball", "book", "cup",  "boat", "hat",
                                    "box", "bed",  "mat",  "hill", "duck", "frog"};
static const char *const PLURALS[] = {"apples", "books", "cups",  "balls",
                                      "hats",   "toys",  "coins", "shells"};
static const char *const VERBS[] = {"sat on", "ran to", "looked at", "walked past", "jumped over",
                                    "slept under", "sang to", "hid behind"};

typedef enum { SLOT_A, SLOT_B, SLOT_W, SLOT_S, SLOT_L, SLOT_C, SLOT_T, NUM_SLOTS } SlotId;
static const char SLOT_NAMES[NUM_SLOTS] = {'a', 'b', 'w', 's', 'l', 'c', 't'};

// variant: sort 0 digits / 1 letters; count 0 letters / 1 words; case 0 upper / 1 lower;
// fact 0 capital / 1 colour.
typedef struct { TaskKind kind; int variant; const char *fmt; } TaskTemplate;
static const TaskTemplate TEMPLATES[] = {
    {TASK_ADD, 0, "What is {a} plus {b}?"},
    {TASK_ADD, 0, "Add {a} and {b}."},
    {TASK_ADD, 0, "What is the sum of {a} and {b}?"},
    {TASK_ADD, 0, "How much is {a} plus {b}?"},
    {TASK_SUB, 0, "What is {a} minus {b}?"},
    {TASK_SUB, 0, "Subtract {b} from {a}."},
    {TASK_SUB, 0, "What is {a} take away {b}?"},
    {TASK_SUB, 0, "How much is {a} minus {b}?"},
    {TASK_REVERSE, 0, "Reverse the word '{w}'."},
    {TASK_REVERSE, 0, "Write '{w}' backwards."},
    {TASK_REVERSE, 0, "Spell '{w}' backwards."},
    {TASK_REVERSE, 0, "What is '{w}' spelled backwards?"},
    {TASK_REVERSE, 0, "Reverse '{w}'."},
    {TASK_SORT, 0, "Sort these numbers: {l}."},
    {TASK_SORT, 0, "Put these numbers in order: {l}."},
    {TASK_SORT, 1, "Sort these letters: {l}."},
    {TASK_SORT, 1, "Put these letters in alphabetical order: {l}."},
    {TASK_COUNT, 0, "How many letters are in the word '{w}'?"},
    {TASK_COUNT, 0, "Count the letters in '{w}'."},
    {TASK_COUNT, 0, "How many letters does '{w}' have?"},
    {TASK_COUNT, 1, "How many words are in '{s}'?"},
    {TASK_COUNT, 1, "Count the words in '{s}'."},
    {TASK_CASE, 0, "Write '{w}' in capital letters."},
    {TASK_CASE, 0, "Change '{w}' to upper case."},
    {TASK_CASE, 0, "Make '{w}' upper case."},
    {TASK_CASE, 1, "Write '{w}' in small letters."},
    {TASK_CASE, 1, "Change '{w}' to lower case."},
    {TASK_CASE, 1, "Make '{w}' lower case."},
    {TASK_FACT, 0, "What is the capital of {c}?"},
    {TASK_FACT, 0, "Name the capital of {c}."},
    {TASK_FACT, 0, "Which city is the capital of {c}?"},
    {TASK_FACT, 0, "Tell me the capital of {c}."},
    {TASK_FACT, 0, "What city is the capital of {c}?"},
    {TASK_FACT, 1, "What colour is {t}?"},
    {TASK_FACT, 1, "What is the colour of {t}?"},
    {TASK_FACT, 1, "Tell me the colour of {t}."},
    {TASK_FACT, 1, "Which colour is {t}?"},
    {TASK_FACT, 1, "Name the colour of {t}."},
};

static const char *const KIND_NAMES[TASK_NUM_KINDS] = {"add",   "sub",  "reverse", "sort",
                                                       "count", "case", "fact"};
static const char *const STYLE_NAMES[TASK_NUM_STYLES] = {"concise", "verbose", "rambling", "wrong"};

const char *task_kind_name(int kind) {
    return kind >= 0 && kind < TASK_NUM_KINDS ? KIND_NAMES[kind] : "unknown";
}
const char *task_style_name(int style) {
    return style >= 0 && style < TASK_NUM_STYLES ? STYLE_NAMES[style] : "unknown";
}
int task_template_count(void) { return NELEM(TEMPLATES); }

int task_kind_from_name(const char *name) {
    for (int k = 0; k < TASK_NUM_KINDS; k++) if (name && !strcmp(name, KIND_NAMES[k])) return k;
    return -1;
}

int task_filler_count(void) { return NELEM(OPENERS) + NELEM(INTROS); }
const char *task_filler(int i) {
    if (i < 0 || i >= task_filler_count()) return NULL;
    return i < NELEM(OPENERS) ? OPENERS[i] : INTROS[i - NELEM(OPENERS)];
}

// ---------------------------------------------------------------------------------------------
// Small string helpers (bounded writes: every output is truncated to its buffer)
// ---------------------------------------------------------------------------------------------

typedef struct { char *p; size_t n, len; } Buf;   // NUL-terminated, never overflows

static void buf_put(Buf *b, const char *s, size_t k) {
    if (!b->n) return;
    size_t room = b->n - 1 - b->len;
    if (k > room) k = room;
    memcpy(b->p + b->len, s, k);
    b->len += k;
    b->p[b->len] = 0;
}
static void buf_puts(Buf *b, const char *s) { buf_put(b, s, strlen(s)); }
static void buf_printf(Buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(Buf *b, const char *fmt, ...) {
    char tmp[TASK_TEXT_MAX * 2];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (k > 0) buf_put(b, tmp, (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1);
}
static Buf buf_init(char *p, size_t n) { Buf b = {p, n, 0}; if (n) p[0] = 0; return b; }

static const char *pick(Rng *rng, const char *const *list, int n) {
    return list[rng_below(rng, (uint64_t)n)];
}
#define PICK(rng, list) pick((rng), (list), NELEM(list))

static int is_ws(int c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static int count_words(const char *s, size_t n) {
    int w = 0, in = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_ws((unsigned char)s[i])) in = 0;
        else if (!in) { in = 1; w++; }
    }
    return w;
}

// ---------------------------------------------------------------------------------------------
// Slots: filled by sampling or read back by matching; solve() turns them into the answer
// ---------------------------------------------------------------------------------------------

#define SLOT_MAX 128
typedef struct { char v[NUM_SLOTS][SLOT_MAX]; } Slots;

static int slot_index(char c) {
    for (int i = 0; i < NUM_SLOTS; i++) if (SLOT_NAMES[i] == c) return i;
    return -1;
}

static int all_of(const char *s, int (*pred)(int), size_t maxlen) {
    size_t n = strlen(s);
    if (n == 0 || n > maxlen) return 0;
    for (size_t i = 0; i < n; i++) if (!pred((unsigned char)s[i])) return 0;
    return 1;
}
static int is_digit(int c) { return c >= '0' && c <= '9'; }
static int is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// A list slot: 2..10 items, each one digit (variant 0) or one letter (variant 1), ", " between.
static int read_list(const char *s, int variant, char *items, int *n) {
    *n = 0;
    for (size_t i = 0;; ) {
        int c = (unsigned char)s[i];
        if (variant == 0 ? !is_digit(c) : !is_alpha(c)) return -1;
        if (*n == 10) return -1;
        items[(*n)++] = (char)c;
        i++;
        if (!s[i]) break;
        if (s[i] != ',' || s[i + 1] != ' ') return -1;
        i += 2;
    }
    return *n >= 2 ? 0 : -1;
}

static int cmp_char(const void *a, const void *b) {
    int x = tolower(*(const unsigned char *)a), y = tolower(*(const unsigned char *)b);
    return x != y ? x - y : *(const unsigned char *)a - *(const unsigned char *)b;
}

// Validates the slots the template uses and writes the answer; -1 when a slot is not valid.
static int solve(const TaskTemplate *tp, const Slots *sl, char *answer, size_t n) {
    Buf out = buf_init(answer, n);
    const char *a = sl->v[SLOT_A], *b = sl->v[SLOT_B], *w = sl->v[SLOT_W];
    switch (tp->kind) {
    case TASK_ADD: case TASK_SUB: {
        if (!all_of(a, is_digit, 6) || !all_of(b, is_digit, 6)) return -1;
        long x = atol(a), y = atol(b);
        buf_printf(&out, "%ld", tp->kind == TASK_ADD ? x + y : x - y);
        return 0;
    }
    case TASK_REVERSE:
        if (!all_of(w, is_alpha, 40)) return -1;
        for (size_t i = strlen(w); i > 0; i--) buf_put(&out, &w[i - 1], 1);
        return 0;
    case TASK_SORT: {
        char items[10];
        int k;
        if (read_list(sl->v[SLOT_L], tp->variant, items, &k)) return -1;
        qsort(items, (size_t)k, 1, cmp_char);
        for (int i = 0; i < k; i++) { if (i) buf_puts(&out, ", "); buf_put(&out, &items[i], 1); }
        return 0;
    }
    case TASK_COUNT:
        if (tp->variant == 0) {
            if (!all_of(w, is_alpha, 40)) return -1;
            buf_printf(&out, "%zu", strlen(w));
        } else {
            const char *s = sl->v[SLOT_S];
            // words of letters with single spaces between
            int words = 0;
            for (size_t i = 0; s[i]; ) {
                size_t j = i;
                while (is_alpha((unsigned char)s[j])) j++;
                if (j == i || j - i > 40) return -1;
                words++;
                if (!s[j]) break;
                if (s[j] != ' ') return -1;
                i = j + 1;
            }
            if (words < 1 || words > 12) return -1;
            buf_printf(&out, "%d", words);
        }
        return 0;
    case TASK_CASE:
        if (!all_of(w, is_alpha, 40)) return -1;
        for (size_t i = 0; w[i]; i++) {
            char c = (char)(tp->variant == 0 ? toupper((unsigned char)w[i])
                                             : tolower((unsigned char)w[i]));
            buf_put(&out, &c, 1);
        }
        return 0;
    case TASK_FACT:
        if (tp->variant == 0) {
            for (int i = 0; i < NELEM(COUNTRIES); i++)
                if (!strcmp(sl->v[SLOT_C], COUNTRIES[i][0])) {
                    buf_puts(&out, COUNTRIES[i][1]);
                    return 0;
                }
        } else {
            for (int i = 0; i < NELEM(THINGS); i++)
                if (!strcmp(sl->v[SLOT_T], THINGS[i][0])) {
                    buf_puts(&out, THINGS[i][1]);
                    return 0;
                }
        }
        return -1;
    default:
        return -1;
    }
}

static void fill(const char *fmt, const Slots *sl, char *out, size_t n) {
    Buf b = buf_init(out, n);
    for (const char *p = fmt; *p; p++) {
        int si;
        if (p[0] == '{' && p[1] && p[2] == '}' && (si = slot_index(p[1])) >= 0) {
            buf_puts(&b, sl->v[si]);
            p += 2;
        } else
            buf_put(&b, p, 1);
    }
}

// Matches text against fmt, reading the slots; 0 on a full match. A slot ends at the first
// occurrence of the literal after it, or, for the last slot, where the template's tail begins.
static int match(const char *fmt, const char *text, Slots *sl) {
    memset(sl, 0, sizeof *sl);
    const char *f = fmt, *t = text;
    while (*f) {
        int si;
        if (f[0] == '{' && f[1] && f[2] == '}' && (si = slot_index(f[1])) >= 0) {
            const char *lit = f + 3, *next = strchr(lit, '{');
            size_t litlen = next ? (size_t)(next - lit) : strlen(lit);
            const char *end;
            if (!next) {                         // the last slot: the rest minus the tail
                size_t tl = strlen(t);
                if (tl < litlen || strcmp(t + tl - litlen, lit)) return -1;
                end = t + tl - litlen;
            } else if (litlen == 0) {
                return -1;                       // two adjacent slots: not in our table
            } else {
                char tmp[TASK_TEXT_MAX];
                if (litlen >= sizeof tmp) return -1;
                memcpy(tmp, lit, litlen); tmp[litlen] = 0;
                end = strstr(t, tmp);
                if (!end) return -1;
            }
            size_t k = (size_t)(end - t);
            if (k == 0 || k >= SLOT_MAX) return -1;
            memcpy(sl->v[si], t, k); sl->v[si][k] = 0;
            t = end;
            f += 3;
        } else {
            if (*f != *t) return -1;
            f++; t++;
        }
    }
    return *t ? -1 : 0;
}

// ---------------------------------------------------------------------------------------------
// Drawing and recognising tasks
// ---------------------------------------------------------------------------------------------

static void sample_slots(Rng *rng, const TaskTemplate *tp, Slots *sl) {
    memset(sl, 0, sizeof *sl);
    switch (tp->kind) {
    case TASK_ADD: {
        int a = (int)rng_below(rng, 11), b = (int)rng_below(rng, 11);
        snprintf(sl->v[SLOT_A], SLOT_MAX, "%d", a);
        snprintf(sl->v[SLOT_B], SLOT_MAX, "%d", b);
        break;
    }
    case TASK_SUB: {
        int a = (int)rng_below(rng, 11), b = (int)rng_below(rng, (uint64_t)a + 1);
        snprintf(sl->v[SLOT_A], SLOT_MAX, "%d", a);
        snprintf(sl->v[SLOT_B], SLOT_MAX, "%d", b);
        break;
    }
    case TASK_REVERSE:
        snprintf(sl->v[SLOT_W], SLOT_MAX, "%s", PICK(rng, WORDS));
        break;
    case TASK_SORT: {
        int k = 3;
        const char *alphabet = tp->variant == 0 ? "0123456789" : "abcdefghij";
        int na = (int)strlen(alphabet);
        char used[10] = {0}, items[3];
        for (int i = 0; i < k; i++) {
            int c;
            do c = (int)rng_below(rng, (uint64_t)na); while (used[c]);
            used[c] = 1;
            items[i] = alphabet[c];
        }
        Buf b = buf_init(sl->v[SLOT_L], SLOT_MAX);
        for (int i = 0; i < k; i++) { if (i) buf_puts(&b, ", "); buf_put(&b, &items[i], 1); }
        break;
    }
    case TASK_COUNT:
        if (tp->variant == 0) snprintf(sl->v[SLOT_W], SLOT_MAX, "%s", PICK(rng, WORDS));
        else {
            int k = 2 + (int)rng_below(rng, 4);
            Buf b = buf_init(sl->v[SLOT_S], SLOT_MAX);
            for (int i = 0; i < k; i++) {
                if (i) buf_puts(&b, " ");
                buf_puts(&b, PICK(rng, WORDS));
            }
        }
        break;
    case TASK_CASE: {
        const char *w = PICK(rng, WORDS);
        for (size_t i = 0; w[i] && i + 1 < SLOT_MAX; i++)
            sl->v[SLOT_W][i] = (char)(tp->variant == 0 ? w[i] : toupper((unsigned char)w[i]));
        break;
    }
    case TASK_FACT:
        if (tp->variant == 0)
            snprintf(sl->v[SLOT_C], SLOT_MAX, "%s", COUNTRIES[rng_below(rng, NELEM(COUNTRIES))][0]);
        else snprintf(sl->v[SLOT_T], SLOT_MAX, "%s", THINGS[rng_below(rng, NELEM(THINGS))][0]);
        break;
    default:
        break;
    }
}

void task_sample(Rng *rng, int kind, Task *t) {
    memset(t, 0, sizeof *t);
    if (kind < 0 || kind >= TASK_NUM_KINDS) kind = (int)rng_below(rng, TASK_NUM_KINDS);
    int ids[NELEM(TEMPLATES)], n = 0;
    for (int i = 0; i < NELEM(TEMPLATES); i++) if ((int)TEMPLATES[i].kind == kind) ids[n++] = i;
    int id = ids[rng_below(rng, (uint64_t)n)];
    Slots sl;
    sample_slots(rng, &TEMPLATES[id], &sl);
    t->kind = TEMPLATES[id].kind;
    t->template_id = id;
    fill(TEMPLATES[id].fmt, &sl, t->prompt, sizeof t->prompt);
    if (solve(&TEMPLATES[id], &sl, t->answer, sizeof t->answer)) abort();   // our own draw: a bug
}

// Strips surrounding whitespace and the default rendering "Human: ...\n\nAssistant:".
static int normalise_prompt(const char *in, char *out, size_t n) {
    const char *s = in, *e = in + strlen(in);
    while (s < e && is_ws((unsigned char)*s)) s++;
    while (e > s && is_ws((unsigned char)e[-1])) e--;
    static const char head[] = "Human:", tail[] = "Assistant:";
    if ((size_t)(e - s) >= sizeof head - 1 && !strncmp(s, head, sizeof head - 1)) {
        const char *s2 = s + sizeof head - 1, *e2 = e;
        if ((size_t)(e2 - s2) >= sizeof tail - 1 &&
            !strncmp(e2 - (sizeof tail - 1), tail, sizeof tail - 1)) {
            e2 -= sizeof tail - 1;
            s = s2; e = e2;
            while (s < e && is_ws((unsigned char)*s)) s++;
            while (e > s && is_ws((unsigned char)e[-1])) e--;
        }
    }
    size_t k = (size_t)(e - s);
    if (k == 0 || k >= n) return -1;
    memcpy(out, s, k); out[k] = 0;
    return 0;
}

int task_parse(const char *prompt, Task *t) {
    memset(t, 0, sizeof *t);
    char p[TASK_TEXT_MAX];
    if (!prompt || normalise_prompt(prompt, p, sizeof p)) return -1;
    for (int i = 0; i < NELEM(TEMPLATES); i++) {
        Slots sl;
        if (match(TEMPLATES[i].fmt, p, &sl)) continue;
        if (solve(&TEMPLATES[i], &sl, t->answer, sizeof t->answer)) continue;
        t->kind = TEMPLATES[i].kind;
        t->template_id = i;
        memcpy(t->prompt, p, sizeof p);
        return 0;
    }
    memset(t, 0, sizeof *t);
    return -1;
}

// ---------------------------------------------------------------------------------------------
// Responses, sentences, statements
// ---------------------------------------------------------------------------------------------

// A plausible wrong answer: off by one or two, the word unchanged, the list unsorted, a neighbour
// in the fact table.
static void wrong_answer(Rng *rng, const Task *t, char *out, size_t n) {
    Buf b = buf_init(out, n);
    const TaskTemplate *tp = &TEMPLATES[t->template_id];
    Slots sl;
    match(tp->fmt, t->prompt, &sl);
    switch (t->kind) {
    case TASK_ADD: case TASK_SUB: case TASK_COUNT: {
        long v = atol(t->answer), d = 1 + (long)rng_below(rng, 2);
        long w = (rng_below(rng, 2) && v - d >= 0) || v + d > 99 ? v - d : v + d;
        if (w < 0) w = v + d;
        buf_printf(&b, "%ld", w);
        return;
    }
    case TASK_REVERSE: case TASK_CASE: {
        const char *w = sl.v[SLOT_W];
        if (strcmp(w, t->answer)) { buf_puts(&b, w); return; }
        // a palindrome or a word already in the asked case: swap two letters, or add one
        char tmp[SLOT_MAX];
        snprintf(tmp, sizeof tmp, "%s", w);
        size_t k = strlen(tmp);
        if (k >= 2 && tmp[0] != tmp[1]) { char c = tmp[0]; tmp[0] = tmp[1]; tmp[1] = c; }
        else if (k + 1 < sizeof tmp) { tmp[k] = tmp[k - 1] == 's' ? 'x' : 's'; tmp[k + 1] = 0; }
        buf_puts(&b, tmp);
        return;
    }
    case TASK_SORT: {
        if (strcmp(sl.v[SLOT_L], t->answer)) { buf_puts(&b, sl.v[SLOT_L]); return; }
        char tmp[TASK_TEXT_MAX];
        snprintf(tmp, sizeof tmp, "%s", t->answer);   // "a, b, c": swap the first two items
        char c = tmp[0]; tmp[0] = tmp[3]; tmp[3] = c;
        buf_puts(&b, tmp);
        return;
    }
    case TASK_FACT: {
        const char *w;
        do
            w = tp->variant == 0 ? COUNTRIES[rng_below(rng, NELEM(COUNTRIES))][1]
                                 : PICK(rng, COLOURS);
        while (!strcmp(w, t->answer));
        buf_puts(&b, w);
        return;
    }
    default:
        buf_puts(&b, "I don't know");
    }
}

void task_response(Rng *rng, const Task *t, TaskStyle style, char *out, size_t n) {
    Buf b = buf_init(out, n);
    switch (style) {
    case TASK_STYLE_CONCISE:
        buf_puts(&b, t->answer);
        return;
    case TASK_STYLE_VERBOSE: {
        // at least one of opener / intro, the answer as a sentence, often a closing line
        int form = (int)rng_below(rng, 3);   // 0 opener, 1 intro, 2 both
        if (form != 1) { buf_puts(&b, PICK(rng, OPENERS)); buf_puts(&b, " "); }
        if (form != 0) { buf_puts(&b, PICK(rng, INTROS)); buf_puts(&b, " "); }
        buf_puts(&b, t->answer);
        buf_puts(&b, rng_below(rng, 4) ? "." : "!");
        if (rng_below(rng, 10) < 7) { buf_puts(&b, " "); buf_puts(&b, PICK(rng, TAILS)); }
        return;
    }
    case TASK_STYLE_RAMBLING: {
        // the answer, then more: a sentence, another question answered, or the next turn
        buf_puts(&b, t->answer);
        int form = (int)rng_below(rng, 3);
        char more[TASK_TEXT_MAX];
        if (form == 0) {
            task_sentence(rng, more, sizeof more);
            buf_puts(&b, "\n"); buf_puts(&b, more);
        } else {
            Task u;
            task_sample(rng, -1, &u);
            if (form == 1) buf_printf(&b, "\n%s %s", u.prompt, u.answer);
            else buf_printf(&b, "\n\nHuman: %s", u.prompt);
        }
        return;
    }
    case TASK_STYLE_WRONG:
        wrong_answer(rng, t, out, n);
        return;
    default:
        buf_puts(&b, t->answer);
    }
}

void task_sentence(Rng *rng, char *out, size_t n) {
    Buf b = buf_init(out, n);
    const char *name = PICK(rng, NAMES), *name2;
    do name2 = PICK(rng, NAMES); while (name2 == name);
    switch (rng_below(rng, 6)) {
    case 0:
        buf_printf(&b, "The %s %s %s the %s %s.", PICK(rng, ADJS), PICK(rng, NOUNS),
                   PICK(rng, VERBS), PICK(rng, ADJS), PICK(rng, NOUNS));
        break;
    case 1:
        buf_printf(&b, "%s has a %s %s.", name, PICK(rng, ADJS), PICK(rng, NOUNS));
        break;
    case 2:
        buf_printf(&b, "%s and %s %s the %s.", name, name2, PICK(rng, VERBS), PICK(rng, NOUNS));
        break;
    case 3: {
        int x = (int)rng_below(rng, 11), y = 1 + (int)rng_below(rng, 9);
        const char *pl = PICK(rng, PLURALS);
        buf_printf(&b, "%s has %d %s and finds %d more, so now %s has %d %s.", name, x, pl, y, name,
                   x + y, pl);
        break;
    }
    case 4: {
        int x = 2 + (int)rng_below(rng, 15), y = 1 + (int)rng_below(rng, (uint64_t)x - 1);
        buf_printf(&b, "%s had %d %s and gave %d to %s, so %s has %d left.", name, x,
                   PICK(rng, PLURALS), y, name2, name, x - y);
        break;
    }
    default:
        buf_printf(&b, "It was a %s day, and the %s was %s.", PICK(rng, ADJS), PICK(rng, NOUNS),
                   PICK(rng, ADJS));
    }
}

void task_statement(Rng *rng, int kind, char *out, size_t n) {
    Task t;
    task_sample(rng, kind, &t);
    const TaskTemplate *tp = &TEMPLATES[t.template_id];
    Slots sl;
    match(tp->fmt, t.prompt, &sl);
    Buf b = buf_init(out, n);
    int form = (int)rng_below(rng, 3);
    const char *a = sl.v[SLOT_A], *bb = sl.v[SLOT_B], *w = sl.v[SLOT_W], *r = t.answer;
    switch (t.kind) {
    case TASK_ADD:
        if (form == 0) buf_printf(&b, "%s plus %s is %s.", a, bb, r);
        else if (form == 1) buf_printf(&b, "%s + %s = %s", a, bb, r);
        else buf_printf(&b, "The sum of %s and %s is %s.", a, bb, r);
        break;
    case TASK_SUB:
        if (form == 0) buf_printf(&b, "%s minus %s is %s.", a, bb, r);
        else if (form == 1) buf_printf(&b, "%s - %s = %s", a, bb, r);
        else buf_printf(&b, "If you take %s away from %s, you get %s.", bb, a, r);
        break;
    case TASK_REVERSE:
        if (form == 0) buf_printf(&b, "The word %s backwards is %s.", w, r);
        else if (form == 1) buf_printf(&b, "%s reversed is %s.", w, r);
        else buf_printf(&b, "Spelled backwards, %s is %s.", w, r);
        break;
    case TASK_SORT:
        if (form == 0) buf_printf(&b, "In order, %s is %s.", sl.v[SLOT_L], r);
        else buf_printf(&b, "Sorted, %s becomes %s.", sl.v[SLOT_L], r);
        break;
    case TASK_COUNT:
        if (tp->variant == 0) {
            if (form == 0) buf_printf(&b, "The word %s has %s letters.", w, r);
            else buf_printf(&b, "%s is spelled with %s letters.", w, r);
        } else buf_printf(&b, "The phrase '%s' has %s words.", sl.v[SLOT_S], r);
        break;
    case TASK_CASE:
        if (tp->variant == 0) buf_printf(&b, "%s in capital letters is %s.", w, r);
        else buf_printf(&b, "%s in small letters is %s.", w, r);
        break;
    case TASK_FACT:
        if (tp->variant == 0) {
            if (form == 0) buf_printf(&b, "The capital of %s is %s.", sl.v[SLOT_C], r);
            else if (form == 1) buf_printf(&b, "%s is the capital of %s.", r, sl.v[SLOT_C]);
            else buf_printf(&b, "%s has its capital in %s.", sl.v[SLOT_C], r);
        } else {
            char thing[SLOT_MAX];
            snprintf(thing, sizeof thing, "%s", sl.v[SLOT_T]);
            if (form == 0) {
                thing[0] = (char)toupper((unsigned char)thing[0]);
                buf_printf(&b, "%s is %s.", thing, r);
            } else
                buf_printf(&b, "The colour of %s is %s.", thing, r);
        }
        break;
    default:
        break;
    }
}

// ---------------------------------------------------------------------------------------------
// Grading and ranking
// ---------------------------------------------------------------------------------------------

// Skips leading filler phrases (case-insensitive, each followed by whitespace or the end, or
// ending in punctuation itself) and the whitespace after them.
static const char *skip_filler(const char *p) {
    for (int again = 1; again; ) {
        again = 0;
        while (is_ws((unsigned char)*p)) p++;
        for (int i = 0; i < task_filler_count(); i++) {
            const char *f = task_filler(i);
            size_t k = strlen(f);
            if (strncasecmp(p, f, k)) continue;
            if (!(is_ws((unsigned char)p[k]) || !p[k] || ispunct((unsigned char)f[k - 1])))
                continue;
            p += k;
            again = 1;
            break;
        }
    }
    return p;
}

// The answer part: after the filler, up to the first sentence end or line break; quotes and
// final punctuation removed. Writes it to out (n bytes).
static void extract_answer(const char *r, char *out, size_t n) {
    const char *s = skip_filler(r), *e = s;
    while (*e && *e != '\n' &&
           !((*e == '.' || *e == '!' || *e == '?') && (!e[1] || is_ws((unsigned char)e[1]))))
        e++;
    while (e > s && (is_ws((unsigned char)e[-1]) || strchr(".!?,;:\"'", e[-1]))) e--;
    while (s < e && (is_ws((unsigned char)*s) || *s == '"' || *s == '\'')) s++;
    size_t k = (size_t)(e - s);
    if (k >= n) k = n - 1;
    memcpy(out, s, k); out[k] = 0;
}

static int parse_int(const char *s, long *v) {
    const char *p = s;
    if (*p == '-') p++;
    if (!all_of(p, is_digit, 9)) return -1;
    *v = atol(s);
    return 0;
}

// Compares the extracted answer with the task's.
static int answer_matches(const Task *t, const char *core) {
    switch (t->kind) {
    case TASK_ADD: case TASK_SUB: case TASK_COUNT: {
        long x, y;
        return !parse_int(core, &x) && !parse_int(t->answer, &y) && x == y;
    }
    case TASK_SORT: {
        // items separated by commas and/or spaces, letters ignoring case
        const char *p = core, *q = t->answer;
        for (;;) {
            while (*p == ',' || is_ws((unsigned char)*p)) p++;
            while (*q == ',' || *q == ' ') q++;
            if (!*p || !*q) return !*p && !*q;
            size_t kp = strcspn(p, ", \t\n"), kq = strcspn(q, ", ");
            if (kp != kq || strncasecmp(p, q, kp)) return 0;
            p += kp; q += kq;
        }
    }
    case TASK_CASE:
        return !strcmp(core, t->answer);
    case TASK_REVERSE: case TASK_FACT:
        return !strcasecmp(core, t->answer);
    default:
        return 0;
    }
}

void task_grade(const Task *t, const char *r, TaskGrade *g) {
    memset(g, 0, sizeof *g);
    g->known = t != NULL;
    size_t n = strlen(r);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r[i];
        if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c >= 0x7f) { g->junk = 1; break; }
    }
    g->leak = strstr(r, "Human:") || strstr(r, "Assistant:");
    int words = count_words(r, n);
    g->empty = words == 0;
    int want = t ? count_words(t->answer, strlen(t->answer)) : 1;
    g->extra_words = words > want ? words - want : 0;
    if (t && !g->empty) {
        char core[TASK_TEXT_MAX];
        extract_answer(r, core, sizeof core);
        g->correct = answer_matches(t, core);
    }
    g->score = 1000 * g->correct - g->extra_words - 20 * g->leak - 5 * g->junk - 100 * g->empty;
}

int task_check(const Task *t, const char *response) {
    TaskGrade g;
    task_grade(t, response, &g);
    return g.correct;
}

int task_rank(const char *prompt, const char *const *responses, const int *ended, int k,
              double noise, uint64_t seed, int *rank) {
    if (k < 1 || k > TASK_MAX_K || !responses || !rank || !(noise >= 0 && noise <= TASK_MAX_NOISE))
        return -1;
    Task t;
    int known = prompt && !task_parse(prompt, &t);
    int score[TASK_MAX_K], order[TASK_MAX_K];
    for (int i = 0; i < k; i++) {
        if (!responses[i]) return -1;
        TaskGrade g;
        task_grade(known ? &t : NULL, responses[i], &g);
        score[i] = g.score - (ended && !ended[i] ? TASK_UNFINISHED_PENALTY : 0);
    }
    // groups: distinct scores, best first
    int m = 0;
    for (int i = 0; i < k; i++) {
        int seen = 0;
        for (int j = 0; j < m; j++) if (order[j] == score[i]) seen = 1;
        if (!seen) order[m++] = score[i];
    }
    for (int i = 1; i < m; i++)   // insertion sort, descending
        for (int j = i; j > 0 && order[j] > order[j - 1]; j--) {
            int x = order[j];
            order[j] = order[j - 1];
            order[j - 1] = x;
        }
    if (noise > 0 && m > 1) {
        uint64_t h = data_hash_u64(DATA_HASH_INIT, seed);
        const char *pp = prompt ? prompt : "";
        h = data_hash_bytes(h, pp, strlen(pp) + 1);
        for (int i = 0; i < k; i++) h = data_hash_bytes(h, responses[i], strlen(responses[i]) + 1);
        Rng rng;
        rng_init(&rng, data_hash_mix(h));
        double s = noise * m / 2;
        for (int i = 0; i + 1 < m; i++)
            if (rng_double(&rng) < s) {
                int x = order[i];
                order[i] = order[i + 1];
                order[i + 1] = x;
            }
    }
    for (int i = 0; i < k; i++)
        for (int j = 0; j < m; j++) if (order[j] == score[i]) { rank[i] = j + 1; break; }
    return known;
}

int task_ranking_format(const int *rank, int k, char *out, size_t n) {
    Buf b = buf_init(out, n);
    int maxr = 0;
    for (int i = 0; i < k; i++) if (rank[i] > maxr) maxr = rank[i];
    int first = 1;
    for (int r = 1; r <= maxr; r++) {
        int in_group = 0;
        for (int i = 0; i < k; i++) {
            if (rank[i] != r) continue;
            if (!first) buf_puts(&b, in_group ? "=" : ">");
            buf_printf(&b, "%d", i + 1);
            first = 0; in_group = 1;
        }
    }
    // a full buffer means the line may have been cut
    return b.len + 1 >= n ? -1 : 0;
}

int task_ranking_parse(const char *s, int k, int *rank, char *err, size_t errlen) {
    if (k < 1 || k > TASK_MAX_K)
        return util_err(err, errlen, "k = %d outside 1..%d", k, TASK_MAX_K);
    for (int i = 0; i < k; i++) rank[i] = 0;
    int group = 1, seen = 0;
    const char *p = s;
    for (;;) {
        while (*p == ' ') p++;
        if (!is_digit((unsigned char)*p))
            return util_err(err, errlen, "expected an index at column %d of '%s'", (int)(p - s) + 1,
                            s);
        long v = 0;
        while (is_digit((unsigned char)*p)) { if (v < 1000) v = v * 10 + (*p - '0'); p++; }
        if (v < 1 || v > k)
            return util_err(err, errlen, "index %ld outside 1..%d in '%s'", v, k, s);
        if (rank[v - 1]) return util_err(err, errlen, "index %ld appears twice in '%s'", v, s);
        rank[v - 1] = group;
        seen++;
        while (*p == ' ') p++;
        if (!*p || *p == '\n') break;
        if (*p == '>') group++;
        else if (*p != '=')
            return util_err(err, errlen, "unexpected '%c' at column %d of '%s'", *p,
                            (int)(p - s) + 1, s);
        p++;
    }
    if (seen != k) return util_err(err, errlen, "'%s' ranks %d of %d items", s, seen, k);
    return 0;
}
