// dataset: supervised fine-tuning examples. Prompt/response pairs and chat conversations, from
// JSONL files or from memory (e.g. the workspace database), rendered with a prompt template,
// tokenized with an exact prompt/response boundary, given a loss mask, truncated by a chosen
// rule, split into train and valid by a rule that does not depend on file order, and served as
// length-bucketed, right-padded batches in a per-epoch shuffled order that resumes exactly.
//
// Rendering. With the default options a pair (prompt P, response R) is the token sequence
//     encode("Human: " P "\n\nAssistant:")   mask 0   (the prompt segment: prompt_template)
//     encode(" " R)                          mask 1   (the response segment: response_prefix + R)
//     <|endoftext|>                          mask 1   (the end token, by id)
// A chat {"messages": [...]} is [system] (user assistant)+, each message one segment:
//     system     encode("System: " S "\n\n")          mask 0   (system_template, {system} -> S)
//     user       encode("Human: " U "\n\nAssistant:") mask 0   (prompt_template, {prompt} -> U)
//     assistant  encode(" " A) <|endoftext|>          mask 1   (response_prefix + A, end token)
// so a one-turn chat [user P, assistant R] gives exactly the tokens and mask of the pair (P, R),
// and a longer conversation is the concatenation of its turns (every assistant turn ends with the
// end token: generation stops there, in both formats). Contents are used verbatim: no stripping,
// no escaping; text that looks like a special token ("<|endoftext|>") is ordinary text, and the
// only end tokens are the ones added by id. With train_on_all every mask is 1.
//
// With a chat template (DatasetOptions.chat; chat.h) a conversation is instead rendered by the
// template and cut into pieces by rendering: prompt text (mask 0, 1 with train_on_all) and
// assistant turns (mask 1: the turn's text and what the template writes after it up to the next
// turn, e.g. "answer<|im_end|>\n"); no end token is added by id (the template writes its own),
// and <|endoftext|> is not required. Each piece is tokenized alone with special tokens
// recognised. A pair is the chat [user P, assistant R]; a prompt gets the generation prompt.
//
// Why segments are tokenized separately and concatenated, never as one string: BPE pieces can
// cross the boundary. With a template ending in "Assistant: " and a response "Hello", one string
// would give the token " Hello" that is half prompt and half response, so no mask could be exact;
// and a joint encoding can differ from what the model sees when it generates: then the prompt is
// encoded alone (dataset_encode_prompt) and the response is what the model samples after it.
// Encoding segments separately makes training and generation see the same prompt tokens, and the
// default response_prefix " " puts the space in front of the response's first word, where GPT-2's
// tokens have it (" Hello"), instead of leaving a lone space token at the end of the prompt.
//
// Length and truncation. With max_tokens = T (the model's positions), an example of n tokens
// becomes a row of n-1 positions (data.h), so it fits when n <= T + 1. Longer examples follow
// the truncation rule:
//   DATASET_TRUNCATE_ERROR        an error naming the file:line (or source:item) and both lengths
//   DATASET_TRUNCATE_PROMPT_LEFT  keep the last T+1 tokens when the final response (its segment and
//                                 end token) fits in T of them, so at least one prompt token is
//                                 left and every response token is a target; tokens are cut from
//                                 the start of the prompt (for a chat: from the earliest turns,
//                                 kept tokens keep their masks). When the response alone does not
//                                 fit, the example is dropped and counted in n_dropped.
//   DATASET_TRUNCATE_DROP         skip the example; counted in n_dropped
//
// JSONL. One JSON object per line: {"prompt": str, "response": str} or {"messages": [{"role":
// "system"|"user"|"assistant", "content": str}, ...]}; other keys are ignored (ids, metadata).
// Blank lines are skipped; CRLF line ends and a UTF-8 byte order mark are accepted; lines may be
// of any length. Errors name file:line and what is wrong: bad JSON (with the column), invalid
// UTF-8 (column), a NUL byte or \u0000, not an object, a missing key, a duplicate key, a wrong
// type, an unknown role, a bad turn order, an empty response or assistant turn, both "messages" and
// "prompt"/"response", an example too long under the error rule. An empty prompt is allowed. A
// file with no examples at all is an error. On any error nothing from that file stays in the
// data set (all or nothing: see dataset_mark / dataset_rollback, which the loader uses itself).
//
// Splits. DATASET_SPLIT_AUTO puts an example in valid when
//     data_hash_mix(FNV-1a over, for each message: role, '\0', content, '\0') % 10000
//         < llround(valid_percent * 100)
// with role "user"/"assistant" for a pair's prompt/response (so a pair and the equal one-turn
// chat land in the same split). The rule depends only on the example's text: not on file order,
// file name, template or tokenizer, and exact duplicates always share a split. TRAIN / VALID put
// every example of a file (an explicit split file) or call in that split.
//
// Batches (DatasetIter). Per epoch e, with an Rng seeded from (seed, e): shuffle the split's
// examples; cut the order into windows of bucket_batches * B examples and sort each window by
// length (stable: ties keep the shuffled order); cut windows into batches of B consecutive
// examples; shuffle the order of the batches. Only the epoch's last batch may have fewer than B
// rows. Each batch is right-padded to its longest row. Without shuffle: dataset order (still
// bucketed when bucket_batches > 1) and batches in order. The order is a pure function of the
// split's examples (in dataset order), B, bucket_batches, shuffle, seed and the epoch, so the
// cursor (epoch, batch index, seed, fingerprint) restores it exactly.
//
// Ownership: a Dataset is made by dataset_create and freed by dataset_free; it copies the option
// strings and every example, and keeps a pointer to the Tokenizer, which must outlive it. A
// DatasetIter keeps a pointer to its Dataset (which must outlive it) and a copy of its split's
// example list: examples added later are not in it. Loading uses OpenMP threads to tokenize;
// one Dataset must not be used from two threads at once.
//
// Errors: 0, or -1 with a one-line message in err naming the file and line (or the source and
// item of in-memory examples) and the problem. Out-of-memory and programmer errors (a batch too
// small for the iterator) abort with file:line. No global state.
#ifndef DATASET_H
#define DATASET_H
#include "data.h"
#include "tokenizer.h"
#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define DATASET_DEFAULT_PROMPT_TEMPLATE "Human: {prompt}\n\nAssistant:"
#define DATASET_DEFAULT_RESPONSE_PREFIX " "
#define DATASET_DEFAULT_SYSTEM_TEMPLATE "System: {system}\n\n"

typedef enum {
    DATASET_TRUNCATE_ERROR = 0,
    DATASET_TRUNCATE_PROMPT_LEFT,
    DATASET_TRUNCATE_DROP,
} DatasetTruncation;

typedef enum {
    DATASET_SPLIT_AUTO = 0,   // by the hash rule above (for loading and adding)
    DATASET_SPLIT_TRAIN,
    DATASET_SPLIT_VALID,
} DatasetSplit;

typedef struct {
    const char *prompt_template;   // NULL: DATASET_DEFAULT_PROMPT_TEMPLATE; exactly one "{prompt}"
    const char *response_prefix;   // NULL: DATASET_DEFAULT_RESPONSE_PREFIX (may be "")
    const char *system_template;   // NULL: DATASET_DEFAULT_SYSTEM_TEMPLATE; exactly one "{system}"
    int max_tokens;                // T in 1..2^30: positions per row; examples of up to T+1 tokens
    DatasetTruncation truncation;
    int train_on_all;              // 1: loss on every token (prompt and template too)
    double valid_percent;          // 0..100: share of AUTO examples held out
    // NULL: the built-in format above. Else chats and pairs (as [user P, assistant R]) are
    // rendered with this chat template (chat.h; borrowed: it must outlive the Dataset), the loss
    // on the assistant turns found by rendering; prompts get the generation prompt.
    const struct ChatTemplate *chat;
} DatasetOptions;

// A chat message; role is "system", "user" or "assistant".
typedef struct {
    const char *role;
    const char *content;
} DatasetMessage;

typedef struct Dataset Dataset;

// "error", "truncate_prompt_left", "drop" (config strings) -> *out; -1 naming the bad value.
int dataset_truncation_parse(const char *s, DatasetTruncation *out, char *err, size_t errlen);

// Checks the options (templates, max_tokens, valid_percent; the tokenizer needs <|endoftext|>).
int  dataset_create(Dataset **out, const Tokenizer *tok, const DatasetOptions *opt,
                    char *err, size_t errlen);
void dataset_free(Dataset *ds);   // NULL is fine

// Adds every example of a JSONL file, all or nothing (see above).
int dataset_load_jsonl(Dataset *ds, const char *path, DatasetSplit split, char *err, size_t errlen);
// Adds one example from memory. source and item name it in messages ("source:item: ..."; item < 0:
// "source: ..."), e.g. source "workspace.db demonstrations", item the row id. Strings must be
// valid UTF-8 (as JSONL strings are). An example dropped by the truncation rule returns 0.
int dataset_add_pair(Dataset *ds, const char *prompt, const char *response, const char *source,
                     int64_t item, DatasetSplit split, char *err, size_t errlen);
int dataset_add_chat(Dataset *ds, const DatasetMessage *msgs, int n_msgs, const char *source,
                     int64_t item, DatasetSplit split, char *err, size_t errlen);
// As dataset_add_pair, for a prompt already rendered with a chat template (a workspace prompt
// with StorePrompt.rendered): its text is tokenized as it is, special tokens recognised
// (TOK_ALLOW_SPECIAL), no prompt format around it. The response follows: with this Dataset's chat
// template, the assistant turn as the template writes it (its end-of-turn tokens included);
// without one, the response and the end token. Split hash as for the pair.
int dataset_add_rendered_pair(Dataset *ds, const char *prompt, const char *response,
                              const char *source, int64_t item, DatasetSplit split, char *err,
                              size_t errlen);

// All-or-nothing groups of adds: take a mark, add, and on failure roll back to it (examples,
// tokens and counters return to what they were at the mark).
typedef struct {
    int64_t n_examples, n_tokens, n_sources, n_truncated, n_dropped;
} DatasetMark;
DatasetMark dataset_mark(const Dataset *ds);
void dataset_rollback(Dataset *ds, const DatasetMark *mark);

typedef struct {
    int64_t n_examples;       // examples stored (train + valid)
    int64_t n_train, n_valid;
    int64_t n_tokens;         // tokens stored
    int64_t n_targets;        // positions with a loss (mask 1 on a token after the first)
    int64_t n_truncated;      // examples shortened by truncate_prompt_left
    int64_t n_dropped;        // examples skipped by drop (or whose response alone is too long)
    int32_t max_len;          // longest example in tokens (<= max_tokens + 1)
} DatasetStats;
void dataset_stats(const Dataset *ds, DatasetStats *st);

typedef struct {
    const int32_t *tokens;    // [len] (pointers into the Dataset: valid until the next add)
    const uint8_t *mask;      // [len] 1: the token is a target with a loss
    int32_t len;
    int32_t n_targets;        // mask-1 tokens at positions >= 1
    DatasetSplit split;       // TRAIN or VALID
    const char *source;       // file or source name
    int64_t item;             // line or item (-1: none)
} DatasetExample;
int64_t dataset_size(const Dataset *ds);
// Example i (0 .. dataset_size-1, in the order added); -1 when out of range.
int dataset_example(const Dataset *ds, int64_t i, DatasetExample *ex);

// Generation uses the same rendering as training. Appends the tokens of the prompt segment of
// `prompt` (prompt_template applied); the model's answer is then sampled after them.
int dataset_encode_prompt(const Dataset *ds, const char *prompt, TokIds *out, char *err,
                          size_t errlen);
// Appends the tokens of a prompt already rendered with a chat template (see
// dataset_add_rendered_pair): no format around it, special tokens recognised. Plain text that a
// user typed never goes through here: its "<|im_start|>" stays text (dataset_encode_prompt).
int dataset_encode_rendered_prompt(const Dataset *ds, const char *text, TokIds *out, char *err,
                                   size_t errlen);
// Appends the tokens of a conversation that ends with a user message (the turns rendered as for
// training, assistant turns with their end tokens), ready for the next assistant turn.
int dataset_encode_chat_prompt(const Dataset *ds, const DatasetMessage *msgs, int n_msgs,
                               TokIds *out, char *err, size_t errlen);

// A prompt from a prompts-file JSON object (ppo, dpo, eval and generation prompts): "prompt" as a
// string is one user message (dataset_encode_prompt); "prompt" as a message list, or "messages"
// ([{"role", "content"}, ...] ending with a user turn), is a conversation for the next assistant
// turn (dataset_encode_chat_prompt: the chat template with its generation prompt, or the
// built-in format). Appends the tokens to *ids and sets *text (malloc'd) to the prompt's text:
// the string itself, or the decoded tokens of a conversation. where ("file:line") starts every
// message.
int dataset_prompt_json(const Dataset *ds, const cJSON *obj, char **text, TokIds *ids,
                        const char *where, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// batches

typedef struct {
    int batch_size;       // B >= 1: examples per batch (the last batch of an epoch may have fewer)
    int bucket_batches;   // sort by length within windows of this many batches (0 or 1: none)
    int shuffle;          // 1: shuffle examples and batch order every epoch; 0: dataset order
    uint64_t seed;        // e.g. rng_u64 of the run's Rng, or a config value
} DatasetIterOptions;

typedef struct DatasetIter DatasetIter;

// An iterator over the TRAIN or VALID examples; -1 when that split is empty (the message counts
// what was dropped) or the options are bad.
int  dataset_iter_create(DatasetIter **out, const Dataset *ds, DatasetSplit split,
                         const DatasetIterOptions *opt, char *err, size_t errlen);
void dataset_iter_free(DatasetIter *it);   // NULL is fine
int64_t dataset_iter_examples(const DatasetIter *it);           // examples per epoch
int64_t dataset_iter_batches_per_epoch(const DatasetIter *it);  // ceil(examples / B)
// The largest padded length any batch can have (the longest example of the split, minus one):
// the max_T a DataBatch needs.
int dataset_iter_max_len(const DatasetIter *it);
// Target tokens of the next n batches, without moving: the N whose 1/N makes the loss of a step
// of n micro-batches the mean over its tokens. Crosses epoch ends like dataset_iter_next does.
int64_t dataset_iter_peek_targets(DatasetIter *it, int n);
// Fills b with the next batch (weight w where targets >= 0) and moves on; after the last batch of
// an epoch the next epoch begins. b needs max_B >= B and max_T >= dataset_iter_max_len.
void dataset_iter_next(DatasetIter *it, DataBatch *b, float w);
void dataset_iter_cursor(const DatasetIter *it, DataCursor *c);
// Continues from c (taken from an iterator over the same data with the same settings, possibly in
// another process): the next batches are the ones that iterator would have served. The cursor's
// seed replaces this iterator's. -1 when the fingerprint differs (other data or settings) or the
// index is past the end of the epoch.
int dataset_iter_seek(DatasetIter *it, const DataCursor *c, char *err, size_t errlen);
#endif
