// The ppo program's state and its parts: setup.c (configuration, models, data, memory plan,
// checkpoints and resume), iteration.c (one iteration: rollouts, scoring, advantages (PPO's GAE
// or the critic-free GRPO / RLOO), minibatch updates), rewards.c (the reward's parts besides
// model.reward: more reward models, reward programs, penalties, normalisation), guards.c (KL and
// length bands, reward hacking) and main.c (the recipe: parse, set up, loop, log, save).
//
// Letters: R rollouts per iteration (rollout.batch_size), mb sequences per minibatch, Tseq the
// longest prompt + response (tokens), Tpos = Tseq - 1 the positions the policy sees (the last
// token is only a target). Per-token rollout arrays are (R, Tpos) with row stride Tpos: response
// token j of rollout b is predicted at position plen[b] - 1 + j.
//
// Under MPI (mpirun -np N ppo ...; N divides ppo.minibatch_size) rank r generates rollouts
// [r R/N, (r+1) R/N) and they are gathered, so that every rank holds the whole rollout batch;
// scoring and every update take rank r's mbl = mb/N rows of each minibatch (the same rows in
// scoring and in the first update) and the pretraining chunks r, r+N, ...; one allreduce per
// model and optimizer step sums the gradients. Rank 0 alone writes.
#ifndef PPO_TRAIN_H
#define PPO_TRAIN_H
#include "checkpoint.h"
#include "lora.h"
#include "config.h"
#include "data.h"
#include "dataset.h"
#include "dist.h"
#include "generate.h"
#include "model.h"
#include "optim.h"
#include "ppo.h"
#include "sampler.h"
#include "store.h"
#include "tokfile.h"
#include "tokenizer.h"
#include "trainer.h"
#include <signal.h>
#include <stdint.h>

typedef struct {
    int32_t *ids;           // rendered prompt tokens (prompt template applied)
    int32_t len;
    int64_t prompt_id;      // the workspace's prompt row, 0 when it has none
    char *text;             // the prompt as given
} PpoPrompt;

// What one iteration measured: means over its rollouts, response tokens or minibatches.
typedef struct {
    double score, score_std;        // raw reward-model score of the responses
    double reward;                  // shaped score + non-score reward, per episode
    double kl, kl_k3;               // sum over a response of log pi - log pi_ref (k1), and of k3
    double nonscore;                // sum over a response of -beta (log pi - log pi_ref)
    double beta;                    // the KL coefficient used for this iteration's rewards
    double entropy;                 // policy entropy per response token
    double resp_len, end_rate;      // response tokens; share that ended with the end token
    double policy_loss, clip_frac, approx_kl, ratio_mean;
    double value_loss, value_clip_frac, explained_var;
    double kl_loss;                 // kl.mode loss: the k3 term beta * mean_t k3 (NaN otherwise)
    double adv_abs;                 // mean |advantage| per episode (critic-free algorithms)
    double ptx_loss;                // mean LM loss (per token, before ptx.coef) of the ptx batches
    double first_ratio_dev; // max |ratio - 1| on the iteration's first minibatch (0 expected)
    double grad_norm, value_grad_norm;
    double t_gen, t_policy, t_ref, t_value, t_reward;   // generation, the four scoring passes
    double t_refresh;               // the sampling copy's refresh after the updates
    double t_train_ppo,
        t_train_ptx; // update: policy + value (with the optimizer steps), pretraining
    double t_up_policy, t_up_value,
        t_up_optim;                 // t_train_ppo split: forward+backward each, AdamW + EMA
    double t_allreduce;             // in t_train_ppo: the gradient allreduces (MPI)
    double t_start;                 // when the iteration began (util_time_s)
    int64_t faults;                 // minor page faults: at the start, then during the iteration
    double t_db, t_total;           // ppo_record: storing the rollouts; the iteration until then
    int64_t gen_tokens;             // tokens generated
    int64_t seq_tokens;             // policy positions of the rollouts (one scoring pass)
    int64_t ppo_tokens, ptx_tokens; // positions through training forward+backward
    int64_t minibatches, skipped;
} PpoStats;

enum { PPO_ALGO = 0 };   // algorithm ppo; grpo and rloo are PPO_ADV_GRPO and PPO_ADV_RLOO

// The reward's parts besides model.reward's score (rewards.c). Off by default: the reward is then
// that score alone, as it always was.
typedef struct {
    int on;                         // any part below is in use
    int n_rm;                       // reward models: model.reward and reward.models
    Model *rm;                      // (n_rm - 1) reward.models
    ModelConfig *rm_config;         // (n_rm - 1)
    const char *const *rm_dirs;     // (n_rm - 1) the config's list
    int combine_min;                // reward.combine min (else mean)
    int n_prog;
    const char *const *prog_cmd;    // (n_prog) the config's list
    double *prog_w;                 // (n_prog)
    double prog_timeout;
    double len_coef, over_coef;
    int over_zone;
    int normalize;
    PpoRunningMoments norm;         // saved in checkpoints when normalize is on
    float *rm_score;                // (n_rm, R) each model's score
    float *prog_score;              // (n_prog, R)
    float *len_pen, *over_pen;      // (R)
    float *raw, *total;             // (R) the sum of the parts; after normalisation
} PpoRewardParts;

// The reward-hacking guard's held-out prompts and starting answers (guards.c, rank 0).
typedef struct {
    PpoPrompt *prompts;
    int n;
    char **ref;                     // (n) the starting policy's greedy answers
    int *ref_ended;
    double prev_score;              // the first iteration's mean score (NaN: not yet seen)
} PpoHack;

typedef struct Ppo {
    Dist dist;                      // rank 0 writes; every rank computes its share
    // configuration
    Config *cfg;
    Trainer tr; // OUT.DIR/last and policy/ (tr.final_dir), the workspace, the run
    char tok_dir[4096];
    int R, gen_B, mb, epochs, max_new, Tp, Tseq, Tpos;
    int Trw;              // longest reward-model row: Tseq + 1 (a cut-off response is scored
                          // with the end token appended), at most the reward model's context
    int close_unfinished; // reward.score_unfinished: 1 append the end token, 0 score as is
    int mbl;                        // rows of each minibatch this rank computes (mb / ranks)
    int64_t iterations;
    float clip, value_clip, gamma, lam, ema_decay;
    float eos_penalty, score_clip;
    int whiten, max_bad;
    // algorithm: PPO_ALGO (the value model and GAE) or critic-free, PPO_ADV_GRPO / PPO_ADV_RLOO
    // (ppo.h): rollout.group_size completions per prompt, one advantage per completion from its
    // group's rewards, no value model loaded, trained or saved
    int algo, group, scale_std;
    int has_value;                  // algo == PPO_ALGO
    int kl_loss;                    // kl.mode loss: k3 * beta in the policy loss, not the reward
    PpoRewardParts parts;           // reward models beyond model.reward, programs, penalties
    int64_t nan_from;               // debug.nan_from_iteration (fault injection for tests)
    GenConfig gen;
    AdamWConfig opt_policy, opt_value;
    LrSchedule sched;
    // models and tools
    Model policy, ref, reward, value, ema;
    int has_ema;
    // adapters (lora.r > 0, adapter.h): policy is a frozen base with `lora` attached, and the
    // reference is that base with the adapters off (ref unused). With value_on_reward the value
    // model is the reward model's frozen base with `value_lora` attached (a trained score copy),
    // the reward model that base with the adapters off (value unused). sample: the merged copy
    // rollouts sample from with lora.sample merged.
    Lora lora, value_lora;
    int use_lora, value_on_reward, sample_merged;
    Model sample;
    char policy_base[4096], value_base[4096];   // base_model_name_or_path of the adapters
    // precision.*: the policy's sampling copy (refreshed after every iteration's updates), the
    // frozen models (reference, reward models: every forward narrow), the KV cache
    LowpFormat prec_sample, prec_frozen, prec_kv;
    LowpFormat base_dtype;       // lora.base_dtype: the policy's and the value's frozen bases
    KVCache kv;
    Sampler sampler;
    Tokenizer *tok;
    Dataset *ds;                    // prompt rendering only (the SFT template)
    struct ChatTemplate *chat;      // the tokenizer's chat template (data.chat_template), or NULL
    // prompts: shuffled per epoch by an Rng seeded from (seed, epoch)
    PpoPrompt *prompts;
    int64_t n_prompts, prompt_epoch, prompt_index;
    int64_t *order;                 // (n_prompts) this epoch's order
    uint64_t prompt_seed, prompt_fp;
    // pretraining mix
    int has_ptx;
    float ptx_coef;
    int ptx_B, ptx_T, ptx_chunk;
    TokFile ptx_file;
    TokfileIter ptx_it;
    DataBatch ptx_batch;
    TrainerPretrain pre;   // eval.pretrain_text, on the policy
    // training state (saved in checkpoints)
    PpoKlController kl;
    Rng rng;
    int64_t iteration, policy_steps, value_steps;
    int64_t bad_streak;             // minibatches skipped in a row (NaN / Inf guard)
    int64_t guard_streak;           // iterations in a row outside a guard's band (guards.c)
    PpoHack hack;
    double hack_timeout;
    int64_t saved_iteration;        // iteration of OUT.DIR/last (-1: none yet)
    double t_allreduce;             // seconds in gradient allreduces this run (MPI)
    int64_t run_steps;              // optimizer steps this run (not counting those before a resume)
    // rollout buffers
    int32_t *seq;                   // (R, Tseq) prompt + response tokens
    int32_t *plen, *rlen, *ended;   // (R)
    int64_t *pidx;                  // (R) prompt index
    float *score, *shaped;          // (R) raw and shaped reward-model score
    float *ep_reward, *ep_adv;      // (R) critic-free: each episode's reward and advantage
    float *old_logp, *ref_logp, *old_values, *rewards, *adv, *ret, *entropy;   // (R, Tpos)
    uint8_t *mask;                  // (R, Tpos) 1 on response positions
    int32_t *perm;                  // (R) minibatch order of the current epoch
    int scored_first;               // the policy and value models still hold their scoring
                                    // forwards of the first update's rows (iteration.c)
    // minibatch scratch (mb rows)
    int32_t *b_tok, *b_tgt, *b_len; // (mb, Tseq)
    // (mbl, Tseq + 1) floats each. One allocation per line; the names on a line alias it, one
    // name for each thing it holds in turn: scoring reads each model's output through the first
    // line's names, the policy update uses the log-prob names, the value update the value names.
    union { float *b_logp, *b_entropy, *b_values; };   // a model's output at each position
    union { float *b_old_logp, *b_old_values; };       // the rollout's, for the ratio / value clip
    union { float *b_adv, *b_returns; };               // what the update moves toward
    float *b_weights; // per-token loss weights (1 / response tokens)
    float *b_ref;     // kl.mode loss: the reference's log-probs of the minibatch
    union { float *b_dlogp, *b_dvalues; };             // the loss's gradient, fed to backward
    // generation scratch
    int32_t *g_prompts, *g_plen, *g_out, *g_olen;
    Rng *g_rng;                     // (gen_B) one sampling stream per rollout
} Ppo;


// rewards.c: the reward's parts (see PpoRewardParts). config: reads the settings and the extra
// reward models' configs (before the memory plan); plan_bytes: their memory; load: the models;
// score: their scores of a reward minibatch (rb, rows idx, b_len their lengths); total: after
// scoring, every part and the total of each episode; components: episode b's parts as a JSON
// object (malloc'd; NULL when off); metrics: the iteration's means (reward/...); state: the
// normalisation moments into / out of a checkpoint's trainer state.
// A frozen model's planned memory with its matrices in fmt (setup.c; rewards.c plans with it too)
size_t ppo_frozen_bytes(const ModelConfig *c, LowpFormat fmt, int B, int T);
int    ppo_parts_config(Ppo *s, const ModelConfig *policy, char *err, size_t errlen);
size_t ppo_parts_plan_bytes(const Ppo *s);
int    ppo_parts_load(Ppo *s, char *err, size_t errlen);
int    ppo_parts_score(Ppo *s, const ModelBatch *rb, const int32_t *idx, int n, char *err,
                       size_t errlen);
int    ppo_parts_total(Ppo *s, char *err, size_t errlen);
char  *ppo_parts_components(const Ppo *s, int b);
int    ppo_parts_metrics(Ppo *s, int64_t step, char *err, size_t errlen);
int    ppo_parts_save_state(const Ppo *s, CkptTrainerState *st, char *err, size_t errlen);
int    ppo_parts_load_state(Ppo *s, const CkptTrainerState *st, char *err, size_t errlen);
void   ppo_parts_free(Ppo *s);
// guards.c: after iteration s->iteration (recorded): 1 when a guard fired (why says which, with the
// figure and the threshold; recorded as metric guard/<name>), 0 when none did, -1 on an error.
int ppo_guards_check(Ppo *s, const PpoStats *st, char *why, size_t whylen, char *err,
                     size_t errlen);
// The reward-hacking guard: st NULL at setup (after the models: loads the prompts and makes or
// reads the starting answers), then after each iteration like ppo_guards_check.
int ppo_hack_check(Ppo *s, const PpoStats *st, char *why, size_t whylen, char *err,
                   size_t errlen);
void ppo_hack_free(Ppo *s);
// setup.c, for iteration.c: the models and steps of each role with or without adapters.
Model *ppo_reference(Ppo *s, int *flags);      // the reference and its forward flags
Model *ppo_value_model(Ppo *s);
int    ppo_reward_flags(const Ppo *s);         // model.reward's forward flags
void   ppo_zero_grads(Ppo *s);                 // policy and value
void   ppo_allreduce_grads(Ppo *s);            // MPI: sums policy and value gradients
void   ppo_grad_norms(Ppo *s, float *gp, float *gv);
float  ppo_adamw(Ppo *s, int value, float lr, int64_t t);   // one AdamW step (value: 1)
// The model rollouts sample from: the policy (unmerged adapters), or with lora.sample merged its
// merged copy, made anew (once per iteration, before the rollouts).
Model *ppo_sampling_model(Ppo *s, char *err, size_t errlen);
// iteration.c: a response as clean UTF-8 text (malloc'd)
char *ppo_decode(const Tokenizer *tok, const int32_t *ids, int n);

// setup.c
int  ppo_setup(Ppo *s, char *err, size_t errlen);
void ppo_teardown(Ppo *s);
int  ppo_save_last(Ppo *s, char *err, size_t errlen);    // OUT.DIR/last: policy, value, ema, state
int ppo_save_final(Ppo *s, char *err,
                   size_t errlen); // OUT.DIR/policy: the trained policy (EMA if on)
// After the NaN guard gave up: reloads the policy and value weights of OUT.DIR/last into memory
// (the state to continue from) and says which iteration that is. -1 when there is none.
int  ppo_restore_last(Ppo *s, char *err, size_t errlen);

// iteration.c: one iteration. 0 done; 1 stopped by the NaN/Inf guard (err says why); -1 error;
// PPO_ITER_STOPPED: a stop request (one process only, not under MPI) dropped the unfinished
// iteration before any weight changed: the state is that of its start, fit to save;
// PPO_ITER_STOPPED_DIRTY: dropped after some minibatches were applied: the weights, moments and
// ptx cursor are half-updated and must not be saved (OUT.DIR/last stays what it was).
enum { PPO_ITER_STOPPED = 2, PPO_ITER_STOPPED_DIRTY = 3 };
int  ppo_iteration(Ppo *s, PpoStats *st, char *err, size_t errlen);
// Stores the iteration's rollouts and metrics in one transaction.
// Sets st->t_db and st->t_total (for ppo_time_parts) before it stores the metrics.
int  ppo_record(Ppo *s, PpoStats *st, char *err, size_t errlen);
// Where an iteration's time went, in seconds, after ppo_record: t[i] is part PPO_TIME_NAMES[i]
// (stored as the metric time/<name>), the last, "other", being t_total less the others.
enum { PPO_TIME_PARTS = 12 };
extern const char *const PPO_TIME_NAMES[PPO_TIME_PARTS];
void ppo_time_parts(const PpoStats *st, double *t);
// The prompt order of epoch s->prompt_epoch (a shuffle seeded by train.seed and the epoch).
void ppo_prompt_order(Ppo *s);
#endif
