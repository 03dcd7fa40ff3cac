// tasks: the demo's family of instruction tasks with checkable answers -- addition and
// subtraction of small numbers, reversing a word, sorting digits or letters, counting letters or
// words, changing case, and a small table of made-up facts (capitals of invented countries,
// colours of things). It is shared by the demo-data generator (`rlhf data demo`), the judge that
// stands in for human labelers (`rlhf judge`) and the evaluation (`rlhf eval-policy`).
//
// One table of prompt templates is used both ways: a task is drawn by filling a template's slots
// at random and solving it, and recognised by matching a prompt against the templates, reading
// the slots back and solving it. So the generator, the judge and the evaluation cannot disagree
// about what a prompt asks or what its answer is.
//
// Templates (slots: {a} {b} numbers, {w} a word, {s} a phrase, {l} a list, {c} a country,
// {t} a thing), 38 in all:
//   add      "What is {a} plus {b}?"  "Add {a} and {b}."  "What is the sum of {a} and {b}?"
//            "How much is {a} plus {b}?"
//   sub      "What is {a} minus {b}?"  "Subtract {b} from {a}."  "What is {a} take away {b}?"
//            "How much is {a} minus {b}?"
//   reverse  "Reverse the word '{w}'."  "Write '{w}' backwards."  "Spell '{w}' backwards."
//            "What is '{w}' spelled backwards?"  "Reverse '{w}'."
//   sort     "Sort these numbers: {l}."  "Put these numbers in order: {l}."
//            "Sort these letters: {l}."  "Put these letters in alphabetical order: {l}."
//   count    "How many letters are in the word '{w}'?"  "Count the letters in '{w}'."
//            "How many letters does '{w}' have?"  "How many words are in '{s}'?"
//            "Count the words in '{s}'."
//   case     "Write '{w}' in capital letters."  "Change '{w}' to upper case."  "Make '{w}' upper
//            case."  and the same three for small letters / lower case
//   fact     "What is the capital of {c}?" and 4 more phrasings; "What colour is {t}?" and 4 more
// Drawn instances are deliberately few, so that a model of a few million parameters trained for
// minutes can know them: numbers 0..10 (subtraction never goes below 0), 40 words of 3-5
// letters, 3 distinct digits or letters a..j, phrases of 2-5 of those words, 20 made-up
// countries with capitals and 20 things with colours.
// Recognition is wider: any digits, any letters, any list of 2-10 single digits or letters; a
// country or thing must be in the tables. A prompt may also be given rendered
// ("Human: {prompt}\n\nAssistant:", surrounding whitespace ignored).
//
// Grading a response (task_grade). The response is trimmed; leading filler phrases that the
// demonstrations use ("Sure!", "Of course!", "The answer is", "It is", ... : task_filler) are
// skipped; the answer is what remains up to the first sentence end (". ", "! ", "? ", a line
// break or the end), without quotes and final punctuation. It is correct when it equals the
// task's answer: numbers by value, lists item by item (", ", "," or " " between items; letters
// ignoring case), words ignoring case, except that a change-of-case task compares exactly.
// Form: extra words = the response's whitespace-separated words beyond the answer's own count;
// leak = the response carries on the dialogue ("Human:" or "Assistant:"); junk = control
// characters (other than tab/newline) or bytes outside printable ASCII; empty = nothing but
// whitespace. The judge's score is
//     1000 * correct - extra_words - 20 * leak - 5 * junk - 100 * empty
// so correctness comes first, then short and clean answers. For a prompt that is not one of the
// family's (t == NULL) correctness is unknown and the same form terms rank the responses (an
// answer of one word counts as no extra words).
//
// Ranking with label noise (task_rank). Responses with equal scores are tied (identical texts
// always are); the groups are ordered by score. Noise P then makes one pass over the m groups,
// top to bottom, and swaps the group at each boundary with the next one with probability
// s = min(1, P * m / 2) (a group carried down by one swap can be carried further by the next:
// a labeler mixing up neighbours). Each swap reverses exactly the pairs between the two groups,
// and without ties the expected share of reversed pairs is s * (m-1) / C(m,2) = P: agreement with
// the noiseless ranking is 1 - P. This is exact while s <= 1, i.e. P <= 2/m (any P up to
// TASK_MAX_NOISE = 0.4 for the demo's K = 4); with more groups the pass saturates and the share
// of reversed pairs stays at most 2/m. Two independent noisy judges agree less:
// for K = 4 distinct completions about 73% at P = 0.175, InstructGPT's inter-labeler agreement
// (72.6%), which is why TASK_DEFAULT_NOISE is 0.175; agreement with the noiseless ranking is then
// 82.5%. Ties are never broken by noise (a labeler cannot order two equal texts). The noise is
// drawn from an Rng seeded with a hash of (seed, prompt, responses), so the same request always
// gets the same ranking for a given seed, whatever the order or the session it comes in.
//
// Ownership: everything is in caller-provided buffers; no allocation survives a call, no global
// mutable state. Text buffers hold TASK_TEXT_MAX bytes.
#ifndef TASKS_H
#define TASKS_H
#include "rng.h"
#include <stddef.h>
#include <stdint.h>

#define TASK_TEXT_MAX      256     // prompt and answer buffers, terminator included
#define TASK_DEFAULT_NOISE 0.175   // judge label noise: ~73% agreement between two judges (K = 4)
#define TASK_MAX_NOISE     0.4     // the most label noise task_rank accepts
#define TASK_MAX_K         64      // most responses task_rank ranks at once

typedef enum {
    TASK_ADD = 0, TASK_SUB, TASK_REVERSE, TASK_SORT, TASK_COUNT, TASK_CASE, TASK_FACT,
    TASK_NUM_KINDS
} TaskKind;

typedef struct {
    TaskKind kind;
    int template_id;               // index into the template table
    char prompt[TASK_TEXT_MAX];    // the raw prompt ("What is 3 plus 4?")
    char answer[TASK_TEXT_MAX];    // the canonical correct response: short and clean ("7")
} Task;

const char *task_kind_name(int kind);        // "add", "sub", ...; "unknown" when out of range
int task_kind_from_name(const char *name);   // the kind, or -1
int task_template_count(void);

// Draws a task of the given kind (-1: a kind uniformly at random, then a template of it).
void task_sample(Rng *rng, int kind, Task *t);
// Recognises a prompt (raw or rendered, see above). 0 and *t filled, or -1 when it is not one of
// the family's (then *t is zeroed).
int task_parse(const char *prompt, Task *t);

// Demonstration styles: the shapes of response the demo's SFT data mixes.
typedef enum {
    TASK_STYLE_CONCISE = 0,   // just the answer: "7"
    TASK_STYLE_VERBOSE,       // filler around it: "Sure! The answer is 7. I hope this helps!"
    TASK_STYLE_RAMBLING,      // the answer, then a line it should not have written
    TASK_STYLE_WRONG,         // a plausible wrong answer, stated plainly
    TASK_NUM_STYLES
} TaskStyle;
const char *task_style_name(int style);      // "concise", ...
// Writes a response of the given style to out (n bytes, truncated safely).
void task_response(Rng *rng, const Task *t, TaskStyle style, char *out, size_t n);
// A sentence of a small grammar ("The red cat sat on the old mat.").
void task_sentence(Rng *rng, char *out, size_t n);
// A plain-text statement of a fact of the family ("3 plus 4 is 7.", "The capital of Zorbia is
// Mipton."); kind -1: any. For the pretraining corpus.
void task_statement(Rng *rng, int kind, char *out, size_t n);
// The filler phrases skipped before an answer (i < task_filler_count()).
int task_filler_count(void);
const char *task_filler(int i);

typedef struct {
    int known;         // t was given (the prompt is one of the family's)
    int correct;       // the answer is right (0 when unknown)
    int extra_words;   // words beyond the answer's
    int leak;          // carries on the dialogue
    int junk;          // control characters or non-printable-ASCII bytes
    int empty;         // only whitespace
    int score;         // the judge's key (see above): higher is better
} TaskGrade;
void task_grade(const Task *t, const char *response, TaskGrade *g);
// 1 when the response answers t correctly (task_grade's rule), else 0.
int task_check(const Task *t, const char *response);

// Ranks k responses (1 <= k <= TASK_MAX_K) to a prompt: rank[i] = 1 + the number of groups
// ranked above response i, so 1 is best and equal ranks are ties. noise in [0, TASK_MAX_NOISE].
// Returns 1 when the prompt was recognised, 0 when it was ranked by form only, -1 on bad
// arguments.
// ended (may be NULL: all ended) marks responses that stopped with the end token; one cut off
// by the length limit loses TASK_UNFINISHED_PENALTY (text alone cannot show it).
#define TASK_UNFINISHED_PENALTY 10
int task_rank(const char *prompt, const char *const *responses, const int *ended, int k, double noise,
              uint64_t seed, int *rank);
// "2>4>1=3": 1-based indices, best first, '>' between groups, '=' inside a group (ascending).
// 0, or -1 when out (n bytes) is too small.
int task_ranking_format(const int *rank, int k, char *out, size_t n);
// Parses such a line into rank[k]: every index 1..k exactly once. 0, or -1 with a message.
int task_ranking_parse(const char *s, int k, int *rank, char *err, size_t errlen);
#endif
