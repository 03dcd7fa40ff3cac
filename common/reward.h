// reward: what a reward model does with the engine, shared by the `reward` program and PPO.
//
//   - The K-wise ranking loss of InstructGPT (Ouyang et al. 2022, eq. 1) for one ranking of k
//     completions of a prompt with scores r[0..k) and ranks (1 = best, equal ranks = ties):
//
//         loss = -1/P * sum over pairs (w, l) with rank_w < rank_l of log sigmoid(r_w - r_l)
//
//     P = number of such (non-tied) pairs; tied pairs are dropped (C(k,2) pairs without ties).
//     So the loss of a ranking is the mean of its pairwise losses, and one ranking is one batch
//     element however large k is. A pure forward/backward pair on plain arrays (no model).
//   - Rankings as people type them: "2>4>1=3" (1-based item numbers, best first, '=' ties) or a
//     JSON array of ranks ("[3, 1, 3, 2]": the rank of each item); parsed into dense ranks.
//   - Scores from a model with a score head: the scalar head read at the last real token of
//     each sequence, its backward (the gradient only at that token), and folding a constant into
//     the scores exactly through ln_f.bias (the model has no LM head, so ln_f's output feeds only
//     the score: score = w . ln_f(x), and ln_f.bias += c * w / |w|^2 adds exactly c).
//   - The rendering of (prompt, response) for a reward model: the prompt segment exactly as SFT
//     renders it (dataset_encode_prompt: the prompt template), then encode(response_prefix +
//     response), then <|endoftext|> by id. Too long: the last max_len tokens are kept, so the
//     end of the response (where the score is read) is always seen.
//
// Errors: 0, or -1 with a one-line message in err (err may be NULL). No global state.
#ifndef REWARD_H
#define REWARD_H
#include "dataset.h"
#include "model.h"
#include "tokenizer.h"
#include <stddef.h>
#include <stdint.h>

#define REWARD_MAX_K 64   // most completions in one ranking

// Non-tied pairs of a ranking of k items.
int64_t reward_num_pairs(const int *ranks, int k);

// Forward and backward of the K-wise loss of one ranking. r (k) scores, ranks (k). Returns the
// loss (0 when no pair is untied); when dr is not NULL it is overwritten with d loss / d r (k).
// *n_pairs (may be NULL) receives P. Computed in double with a stable log sigmoid.
double reward_kwise_loss(const float *r, const int *ranks, int k, float *dr, int64_t *n_pairs);

// Pair statistics of one ranking: *correct += pairs with r_w > r_l (1/2 for r_w == r_l),
// *margin += sum of r_w - r_l, over non-tied pairs; returns their number.
int64_t reward_pair_stats(const float *r, const int *ranks, int k, double *correct, double *margin);

// Agreement of two rankings of the same prompt (two labelers, or a labeler and a model) over the
// completions both ranked (ids_a (ka) with ranks_a, ids_b (kb) with ranks_b; ids unique within
// each): adds to c every pair of common completions (pairs), those ordered the same way by both
// (concordant) or the other way (discordant), and those tied by a (tied_a) or by b (tied_b); a
// pair tied by both counts in both. Used by `reward inspect` and the agreement page of `rlhf
// serve` / `rlhf report`.
typedef struct { int64_t pairs, concordant, discordant, tied_a, tied_b; } RewardConcordance;
void reward_concordance(const int64_t *ids_a, const int *ranks_a, int ka, const int64_t *ids_b,
                        const int *ranks_b, int kb, RewardConcordance *c);
// Kendall's tau-b of the counts: (C - D) / sqrt((P - Ta) (P - Tb)); NaN when either ranking ties
// every pair (or there is no pair).
double reward_kendall_tau_b(const RewardConcordance *c);

// Calibration of a reward model against labelers: the model's confidence in the order of a pair
// whose score margin is r_w - r_l is p = sigmoid(|margin|) in [0.5, 1), bucketed into
// REWARD_CAL_BUCKETS equal buckets (0.5-0.6, ..., 0.9-1.0). Returns the bucket and sets *p.
#define REWARD_CAL_BUCKETS 5
int reward_calibration_bucket(double margin, double *p);

// Parses a ranking of k items (2 <= k <= REWARD_MAX_K) into ranks (k), dense (1, 2, ... with no
// gaps; equal = tie). Accepted: "2>4>1=3" (every item 1..k exactly once, spaces allowed) or a
// JSON array of k integer ranks in 1..k ("[2,1,3,1]"). Messages say what is wrong.
int reward_parse_ranking(const char *text, int k, int *ranks, char *err, size_t errlen);
// Formats ranks (k) as "2>4>1=3" into buf (n bytes).
void reward_format_ranking(const int *ranks, int k, char *buf, size_t n);

// One answer of a labeler for a prompt of k completions, as `reward label` reads it.
typedef enum {
    REWARD_ANSWER_NONE,      // a blank line (ask again)
    REWARD_ANSWER_RANKING,   // ranks and comment are set
    REWARD_ANSWER_SKIP,      // "s", "skip"
    REWARD_ANSWER_UNDO,      // "u", "undo" (people only)
    REWARD_ANSWER_QUIT,      // "q", "quit" (people only)
    REWARD_ANSWER_HELP,      // "?", "h", "help" (people only)
} RewardAnswerKind;
typedef struct {
    RewardAnswerKind kind;
    int ranks[REWARD_MAX_K];  // (k) dense ranks, for REWARD_ANSWER_RANKING
    char *comment;            // malloc'd copy, or NULL; reward_answer_free releases it
} RewardAnswer;

// Parses one line a person typed (judge = 0: a ranking optionally followed by "# comment", or a
// command: s, u, q, ?) or one line a judge program answered (judge = 1: a ranking, a JSON array
// of ranks, {"ranking": .., "comment": ..}, or "skip"). Pure: no terminal, no database. 0, or -1
// with a one-line message saying what is wrong with the line (a is then zeroed).
int reward_parse_answer(const char *line, int k, int judge, RewardAnswer *a, char *err,
                        size_t errlen);
void reward_answer_free(RewardAnswer *a);

// Appends the tokens of (prompt, response) as described above; keeps only the last max_len
// (> 0) of them. *truncated (may be NULL) is set to 1 when tokens were dropped, else 0. The
// prompt must be valid UTF-8; the response may be any bytes.
int reward_encode(const Dataset *ds, const Tokenizer *tok, const char *response_prefix,
                  const char *prompt, const char *response, int max_len, TokIds *out,
                  int *truncated, char *err, size_t errlen);
// As reward_encode for a prompt already rendered with a chat template (StorePrompt.rendered):
// its special tokens are tokens (dataset_encode_rendered_prompt) and the response follows it
// with no prefix (the template's generation prompt ends the prompt).
int reward_encode_rendered(const Dataset *ds, const Tokenizer *tok, const char *prompt,
                           const char *response, int max_len, TokIds *out, int *truncated,
                           char *err, size_t errlen);

// Forward of a model with a score head: scores (B) = the scalar head at position lengths[b]-1.
// values (B*T) is caller scratch (model_get_values). 0 or -1 (bad batch) with a message.
int reward_forward(Model *m, const ModelBatch *b, float *values, float *scores, char *err,
                   size_t errlen);
// Backward of sum_b dscores[b] * scores[b] after reward_forward on the same batch (gradients
// accumulate). dvalues (B*T) is caller scratch.
void reward_backward(Model *m, const ModelBatch *b, const float *dscores, float *dvalues);

// Adds c to every score the model computes, exactly: ln_f.bias += c * w / |w|^2 (w =
// score.weight). Needs a model with a score head and no LM head (else ln_f feeds the logits too)
// and a final norm with a bias (GPT-2's LayerNorm: reward_can_fold_bias); -1 when w is zero.
int reward_fold_bias(Model *m, double c, char *err, size_t errlen);
// Whether the model's final norm has a bias to carry a constant shift of the scores. The
// Llama-style block kind has none: RMSNorm normalises away any shift before score.weight, which
// has no bias either (LlamaForSequenceClassification), so its scores cannot be shifted exactly.
int reward_can_fold_bias(const Model *m);

// Whether a model checkpoint (a reward, value or reference model: role names it in messages)
// reads token ids as the policy's tokenizer `tok` (loaded from tokdir) writes them, so that one
// may score or judge the other's tokens whatever their block kinds. c is the model's config,
// policy the policy's. Agreement: the same vocabulary size; and when the checkpoint holds
// tokenizer files (vocab.json + merges.txt), the same bytes for every id and the same merges in
// the same order. A checkpoint without tokenizer files is taken on its vocabulary size only when
// it has the policy's block kind; a GPT-2 model beside a Llama-style policy (or the reverse)
// must carry its tokenizer to show that it agrees. 0, or -1 with a message naming both.
int reward_check_tokenizer(const char *role, const char *dir, const ModelConfig *c,
                           const ModelConfig *policy, const char *tokdir, const Tokenizer *tok,
                           char *err, size_t errlen);
#endif
