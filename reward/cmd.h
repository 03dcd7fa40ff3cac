// The subcommands of the `reward` program and what they share: importing a rankings file
// (also used by `reward train` for data.import) and scoring (prompt, response) texts with a
// reward model in length-sorted batches (score, inspect, and the bias at the end of training).
// Each cmd_* takes the arguments after its name and returns the exit status: 0 success, 1 bad
// input or failure (message on stderr), 2 usage error, 130 interrupted.
#ifndef REWARD_CMD_H
#define REWARD_CMD_H
#include "dataset.h"
#include "model.h"
#include "store.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

int cmd_import(int argc, char **argv);
int cmd_label(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_inspect(int argc, char **argv);

// ---------------------------------------------------------------------------------------------
// import (import.c)

typedef struct {
    const char *labeler;     // labeler of lines without "labeler"; NULL: the file's base name
    const char *source;      // prompts' source; NULL: the file's base name
    const char *model;       // completions' model when a line has none; NULL: ''
    const char *split;       // every prompt in this split; NULL: by "split" or the hash rule
    double valid_frac, test_frac;   // the hash rule (store_split_for_text)
    int label_demos;         // queue the demonstrations' prompts for `reward label` too
    const struct ChatTemplate *chat;   // renders message-list prompts (chat.h); NULL: none
} ImportOptions;

typedef struct {
    int already;             // the file's contents were imported before: nothing added
    int64_t import_id;
    int64_t rankings;        // rankings added
    int64_t skipped;         // pair lines whose chosen and rejected are the same text
    int64_t prompts;         // prompt-only lines: prompts to label or to use in PPO
    int64_t demonstrations;  // {"prompt", "response"} lines: demonstrations (the reward bias)
    int64_t lines;           // non-blank lines read
} ImportResult;

// Imports one JSONL file of rankings into s in one transaction: all of it, or nothing with a
// "FILE:LINE: ..." message. A file whose contents (SHA-256) were imported before adds nothing.
int rm_import_file(Store *s, const char *path, const ImportOptions *o, ImportResult *res,
                   char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// scoring (score.c)

typedef struct {
    Model own;                // the model when the scorer loaded it
    Model *m;                 // the model used (own, or a caller's)
    int loaded;               // own is initialised
    char ckpt[4096];          // where own's weights come from ('' for a caller's model)
    Tokenizer *tok;           // owned when tok_owned
    int tok_owned;
    Dataset *ds;              // owned: the prompt rendering
    char *prefix;             // owned copy of the response prefix
    int B;                    // sequences per forward pass
    int verbose;
    LowpFormat prec;          // own's weights in every forward (--precision): fp32, bf16 or int8
} RmScorer;

// Opens a reward checkpoint (score head required; an LM head is ignored). tokdir NULL or '':
// the checkpoint's own tokenizer files. tmpl / prefix NULL: the SFT defaults.
int rm_scorer_open(RmScorer *s, const char *ckpt, const char *tokdir, const char *tmpl,
                   const char *prefix, int B, char *err, size_t errlen);
// A scorer over a caller's model and tokenizer (borrowed: they must outlive the scorer);
// sequences longer than the model's max_T keep their last max_T tokens.
int rm_scorer_wrap(RmScorer *s, Model *m, Tokenizer *tok, const char *tmpl, const char *prefix,
                   char *err, size_t errlen);
void rm_scorer_close(RmScorer *s);
// Scores n (prompt, response) pairs into out (n). *n_truncated (may be NULL) counts sequences
// longer than the context (their last tokens are scored). Progress on stderr when n is large.
// rendered (n, may be NULL: none): the prompt was rendered with a chat template at import
// (reward_encode_rendered).
int rm_score_texts(RmScorer *s, int64_t n, const char *const *prompts, const char *const *responses,
                   const int *rendered, double *out, int64_t *n_truncated, char *err,
                   size_t errlen);

// Completions of the workspace whose prompt is in split (NULL: all), by id; only those without
// a score from `unscored_by` when it is not NULL. Owned copies; rm_comp_list_free releases them.
typedef struct {
    int64_t n, cap;
    int64_t *cid, *pid;       // (n) completion and prompt ids
    char **prompt, **text;    // (n)
    int *rendered;            // (n) the prompt was rendered with a chat template
} CompList;
int rm_list_completions(Store *st, const char *split, const char *unscored_by, CompList *l,
                        char *err, size_t errlen);
void rm_comp_list_free(CompList *l);
// Stores scores[i] (l->n of them) as the model's score of completion l->cid[i], in one
// transaction: all of them or none.
int rm_store_scores(Store *st, const char *model, const CompList *l, const double *scores,
                    char *err, size_t errlen);

// The name a reward model's scores are stored under: name when given, else ckpt's absolute path.
int rm_model_name(const char *ckpt, const char *name, char *out, size_t n);

// Text made safe to show or to put in JSON: invalid UTF-8 bytes become U+FFFD and control
// characters other than newline and tab (all of them when oneline) become '?' or ' '. Malloc'd.
char *rm_text_clean(const char *s, int oneline);
// Bytes of s[0..n) that are well-formed UTF-8 from the start (n when all of it is).
size_t rm_utf8_valid_len(const char *s, size_t n);
// The base name of a path (a pointer into it).
const char *rm_basename(const char *path);
#endif
