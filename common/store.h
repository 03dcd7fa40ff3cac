// store: the workspace database (SQLite). One file per workspace holds what people label
// (prompts, demonstrations, completions, K-wise rankings with ties) and what runs produce (runs,
// metrics, reward scores, PPO rollouts), so that sft, reward, ppo and the pipeline runner share
// one record and people can query it with the sqlite3 shell.
//
// Schema (version STORE_SCHEMA_VERSION = 6; every table STRICT; times are REAL Unix seconds, so
// `datetime(created, 'unixepoch')` reads them; texts are stored byte-exact, any bytes but NUL):
//
//   meta(key TEXT PRIMARY KEY, value)         'application' = 'rlhf.c workspace',
//                                             'schema_version' = '3', 'created'
//   prompts(id, text UNIQUE, split, source, created, rendered)
//       rendered 1: text is a conversation rendered with a chat template at import (its special
//       tokens are tokens; readers add no prompt format); 0: plain text a person wrote.
//       split is 'train' | 'valid' | 'test'. Unique on the text alone: the same prompt imported
//       from two files is one row, so it cannot sit in two splits (no train/test leakage). The
//       first insert's split and source are kept.
//   prompt_sources(prompt_id -> prompts, source, to_label)          PRIMARY KEY(prompt_id, source)
//       every source that gave the prompt (an import's --source, else the file's name); to_label 1
//       when that source queued it for `reward label` (a prompt line, a ranking; not a
//       demonstration unless asked). A prompt is queued when one of its sources queued it, or
//       when none is recorded (a row written without the store).
//   demonstrations(id, prompt_id -> prompts, response, source, created)    UNIQUE(prompt_id,
//   response) completions(id, prompt_id -> prompts, text, model, created) UNIQUE(prompt_id, text,
//   model)
//       model: what produced the text ('' when unknown: an imported data set, a human).
//   labelers(id, name UNIQUE, created)
//   rankings(id, prompt_id -> prompts, labeler_id -> labelers, created, comment, policy_hash)
//       policy_hash: the contents of the policy whose samples were ranked (`reward label
//       --policy`); '' for rankings imported, typed over stored completions, or made before v3.
//   completion_policies(policy_hash, completion_id -> completions)        PRIMARY KEY(both)
//       which policy contents sampled a completion (one text may come from several).
//   ranking_items(ranking_id -> rankings ON DELETE CASCADE, completion_id -> completions, rank)
//       PRIMARY KEY(ranking_id, completion_id); rank 1 is best, equal ranks are ties; every
//       completion of a ranking belongs to the ranking's prompt (checked on insert).
//   claims(prompt_id -> prompts, labeler_id -> labelers, claimed, expires, skipped)
//       PRIMARY KEY(prompt_id, labeler_id): label assignments. An active claim (skipped = 0,
//       expires > now) keeps the prompt from other labelers; a skipped row only keeps it from
//       that labeler. A ranking by the labeler deletes its claim on that prompt.
//   reward_scores(model, completion_id -> completions, score, created)     PRIMARY KEY(model,
//   completion_id)
//       model: the reward model's identity (its checkpoint path, or a name); re-scoring replaces.
//   runs(id, stage, name, program, config, config_hash, status, checkpoint, started, finished,
//        exit_code, pid, host, parent_id -> runs)
//       status is 'running' | 'done' | 'failed' | 'interrupted'; INDEX(stage, config_hash).
//   metrics(run_id -> runs ON DELETE CASCADE, name, step, value, time)     PRIMARY KEY(run_id,
//   name, step)
//       one value per (run, name, step): a resumed run re-logging a step replaces it. A NaN is
//       stored as NULL (SQLite has no NaN).
//   rollouts(id, run_id -> runs ON DELETE CASCADE, iteration, prompt_id -> prompts (NULL when the
//       prompt did not come from the store), prompt, response, score, reward, kl, response_tokens,
//       ended, components)                                                 INDEX(run_id, iteration)
//       components: the parts of the reward as a JSON object (ppo's reward models, reward
//       programs, penalties, normalisation); '' when the reward is the reward model's score alone.
//   users(id, labeler_id -> labelers UNIQUE, role, salt, hash, iterations, created)
//       a login of `rlhf serve`: role 'labeler' | 'admin'; hash = PBKDF2-HMAC-SHA256 of the login
//       token with salt and iterations (hex); the token itself is never stored.
//   sessions(id, user_id -> users ON DELETE CASCADE, csrf, created, expires)
//       id: SHA-256 (hex) of the session cookie's secret; csrf: the token every state-changing
//       request of that session carries.
//   ranking_flags(ranking_id -> rankings ON DELETE CASCADE, completion_id -> completions, flag)
//       PRIMARY KEY(all three); flag 'unsafe' | 'broken': what a labeler marked on a completion
//       while ranking it.
//   imports(id, path, hash UNIQUE, kind, rows, created)
//       hash: SHA-256 of the file's contents (store_hash_file), so a file imported twice, under
//       any name, is recognised.
//
// Schema history (each step is one migration, run inside one transaction on open):
//   1  prompts, demonstrations, completions, labelers, rankings, ranking_items, reward_scores,
//      runs (without pid, host, parent_id), metrics, imports
//   2  claims, rollouts; runs.pid, runs.host, runs.parent_id
//   3  prompt_sources (every prompt of an older workspace: its source, queued),
//      completion_policies, rankings.policy_hash ('' on older rows: contents unknown, so a `reward label --policy` rerun
//      samples and ranks those prompts once more for the policy's current contents)
//   4  rollouts.components ('' on older rows)
//   5  prompts.rendered (0 on older rows: plain text)
//   6  users, sessions, ranking_flags
// Opening a database whose version is newer than STORE_SCHEMA_VERSION is an error (nothing is
// touched); an older one is migrated step by step inside one BEGIN IMMEDIATE transaction.
//
// Concurrency: several processes may use one database at once (a labeler, a training run, the
// pipeline runner): WAL journal, foreign keys on, a busy timeout (STORE_BUSY_TIMEOUT_MS; change
// with store_set_busy_timeout), synchronous=NORMAL (a killed process loses nothing committed; a
// power cut may lose the last transactions but never corrupts). Every write is one transaction:
// each store_add_* function is atomic on its own, and store_begin / store_commit group several
// into one (an import of a whole file: a bad line, store_rollback, and nothing of that file is
// stored). store_begin takes the write lock at once (BEGIN IMMEDIATE) so two writers queue rather
// than fail. A Store (one connection) is used by one thread at a time; never share one across
// fork(): open a new one in the child.
//
// SQL is only ever built from constant strings; user data goes through bound parameters.
//
// Returned data and ownership:
//   - ids are positive int64; 0 means "none" (a find that found nothing sets *id = 0, returns 0).
//   - store_get_* / store_find_* fill a caller's struct whose strings are malloc'd copies owned by
//     that struct; release them with the matching store_*_free (safe on a zeroed struct, and it
//     zeroes the struct again).
//   - store_each_* walk rows in a stable order (ids ascending unless said otherwise) and call
//     fn(row, ctx) per row; the row and its strings are valid only during the call. fn returns 0
//     to go on; any other value stops the walk and is returned by store_each_* as is (so fn can
//     write its own message and return -1, or return 1 to stop early). fn may call other store
//     functions on the same Store; writes made during a walk outside store_begin/commit are
//     committed when the walk ends (SQLite holds the read transaction until then).
//   - Text arguments are NUL-terminated; NULL for an optional text means ''.
//
// Errors: functions return 0, or -1 with a one-line message naming the database file and the
// problem in err (err may be NULL). Invalid arguments from user data (an unknown split, a
// completion of another prompt, a rank out of range) are such errors too. Out-of-memory aborts
// with file:line (util.h). Nothing here keeps global state.
#ifndef STORE_H
#define STORE_H
#include <stddef.h>
#include <stdint.h>

typedef struct sqlite3 sqlite3;

#define STORE_SCHEMA_VERSION  6
#define STORE_APPLICATION     "rlhf.c workspace"
#define STORE_BUSY_TIMEOUT_MS 30000
#define STORE_HASH_HEX        65      // SHA-256 as 64 lowercase hex digits + NUL

typedef struct Store Store;

// ---------------------------------------------------------------------------------------------
// Opening, transactions
// ---------------------------------------------------------------------------------------------

// Opens (creating when absent) the workspace database at path, switches it to WAL and migrates
// an older schema. Errors name the file: not a SQLite database, not an rlhf.c workspace, a
// schema newer than this program, read-only (file or directory), cannot be opened. On success
// *out owns a new Store (close with store_close); on error *out is NULL.
int  store_open(Store **out, const char *path, char *err, size_t errlen);
void store_close(Store *s);                        // NULL is fine; rolls back an open transaction
const char *store_path(const Store *s);            // the path given to store_open
int  store_schema_version(Store *s, int64_t *version, char *err, size_t errlen);
void store_set_busy_timeout(Store *s, int ms);     // how long to wait for another writer's lock
// The SQLite connection, for read-only ad-hoc queries (reports, tests) with prepared statements.
// Do not close it or change its settings.
sqlite3 *store_sqlite(Store *s);

// One transaction around several writes. store_begin fails inside an open transaction.
int  store_begin(Store *s, char *err, size_t errlen);     // BEGIN IMMEDIATE
int  store_commit(Store *s, char *err, size_t errlen);    // a commit that fails rolls back
int  store_rollback(Store *s, char *err, size_t errlen);  // 0 also when none is open
int store_in_transaction(Store *s); // 1 between store_begin and commit/rollback

// PRAGMA integrity_check and foreign_key_check: 0 when both are clean, else -1 naming the first
// problem.
int  store_check(Store *s, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// Prompts, demonstrations, completions, labelers
// ---------------------------------------------------------------------------------------------

// Splits: "train", "valid", "test". store_split_valid: 1 when s is one of them.
int store_split_valid(const char *split);
// A deterministic split for a prompt text from its content (SHA-256), so that independent imports
// agree: "valid" with probability valid_frac, "test" with test_frac, else "train".
const char *store_split_for_text(const char *text, double valid_frac, double test_frac);

// Adds a prompt, or finds it when the same text is already stored (then its stored split and
// source are kept). *id receives its id. split: NULL means "train".
int store_add_prompt(Store *s, const char *text, const char *split, const char *source,
                     int64_t *id, char *err, size_t errlen);
// As store_add_prompt (which is to_label = 1), and records that source gave the prompt and whether
// it queued it for labeling (prompt_sources). A prompt queued by one source stays queued.
int store_add_prompt_from(Store *s, const char *text, const char *split, const char *source,
                          int to_label, int64_t *id, char *err, size_t errlen);
// *n = how many prompts came from source (0 when it gave none).
int store_count_source(Store *s, const char *source, int64_t *n, char *err, size_t errlen);
// *id = the prompt with exactly this text, or 0.
int store_find_prompt(Store *s, const char *text, int64_t *id, char *err, size_t errlen);
// Marks prompt id as rendered: its text is a conversation already rendered with a chat template
// (its special tokens, such as <|im_start|>, are tokens, and readers add no prompt format).
int store_set_prompt_rendered(Store *s, int64_t id, char *err, size_t errlen);

typedef struct {
    int64_t id;
    char *text, *split, *source;
    double created;
    int rendered;   // 1: text was rendered with a chat template (store_set_prompt_rendered)
} StorePrompt;
// Fills *p (owned strings; store_prompt_free). Not found is an error naming the id.
int  store_get_prompt(Store *s, int64_t id, StorePrompt *p, char *err, size_t errlen);
void store_prompt_free(StorePrompt *p);
// Every prompt of a split (NULL: all), by id. Row strings valid during the call only.
typedef int (*StorePromptFn)(const StorePrompt *p, void *ctx);
int store_each_prompt(Store *s, const char *split, StorePromptFn fn, void *ctx, char *err,
                      size_t errlen);

// Adds a demonstration (idempotent on prompt + response).
int store_add_demonstration(Store *s, int64_t prompt_id, const char *response, const char *source,
                            int64_t *id, char *err, size_t errlen);
typedef struct {
    int64_t id, prompt_id;
    const char *prompt, *response, *split, *source;
    int prompt_rendered;   // StorePrompt.rendered of the prompt
} StoreDemonstration;
typedef int (*StoreDemonstrationFn)(const StoreDemonstration *d, void *ctx);
// Demonstrations whose prompt is in split (NULL: all), by id.
int store_each_demonstration(Store *s, const char *split, StoreDemonstrationFn fn, void *ctx,
                             char *err, size_t errlen);

// Adds a completion (idempotent on prompt + text + model). model NULL means ''.
int store_add_completion(Store *s, int64_t prompt_id, const char *text, const char *model,
                         int64_t *id, char *err, size_t errlen);
// Records that the policy whose contents hash to policy_hash (non-empty) sampled the completion
// (idempotent). store_completion_has_policy: *found = 1 when that was recorded.
int store_add_completion_policy(Store *s, int64_t completion_id, const char *policy_hash,
                                char *err, size_t errlen);
int store_completion_has_policy(Store *s, int64_t completion_id, const char *policy_hash,
                                int *found, char *err, size_t errlen);
typedef struct {
    int64_t id, prompt_id;
    const char *prompt, *text, *model, *split;
    double created;
    int prompt_rendered;   // StorePrompt.rendered of the prompt
} StoreCompletion;
typedef int (*StoreCompletionFn)(const StoreCompletion *c, void *ctx);
// Completions of one prompt (prompt_id > 0) or of all prompts (0), by id. When unscored_by is not
// NULL, only completions that have no reward score from that reward model (to score them).
int store_each_completion(Store *s, int64_t prompt_id, const char *unscored_by,
                          StoreCompletionFn fn, void *ctx, char *err, size_t errlen);

// Adds a labeler, or finds one with this name (names are unique, any bytes but NUL, non-empty).
int store_add_labeler(Store *s, const char *name, int64_t *id, char *err, size_t errlen);
int store_find_labeler(Store *s, const char *name, int64_t *id, char *err,
                       size_t errlen); // 0 when absent

// ---------------------------------------------------------------------------------------------
// Rankings
// ---------------------------------------------------------------------------------------------

typedef struct {
    int64_t completion_id;
    int rank;                 // 1 = best; equal ranks are ties; 1..k for a ranking of k items
} StoreRankItem;

// Adds a ranking of k >= 2 distinct completions of prompt_id by labeler_id, atomically, and
// removes the labeler's claim on that prompt. Checked: the prompt and labeler exist, every
// completion exists and belongs to the prompt, no completion twice, every rank in 1..k. comment
// NULL means ''. *id (may be NULL) receives the ranking id.
int store_add_ranking(Store *s, int64_t prompt_id, int64_t labeler_id, const StoreRankItem *items,
                      int k, const char *comment, int64_t *id, char *err, size_t errlen);
// As store_add_ranking, recording the contents hash of the policy whose samples were ranked
// (NULL: '').
int store_add_policy_ranking(Store *s, int64_t prompt_id, int64_t labeler_id,
                             const StoreRankItem *items, int k, const char *comment,
                             const char *policy_hash, int64_t *id, char *err, size_t errlen);
// Deletes a ranking and its items (undo). Deleting an absent ranking is an error.
int store_delete_ranking(Store *s, int64_t ranking_id, char *err, size_t errlen);

typedef struct {
    int64_t completion_id;
    int rank;
    const char *text, *model;
} StoreRankedCompletion;
typedef struct {
    int64_t id, prompt_id, labeler_id;
    const char *prompt, *split, *source, *labeler, *comment;
    double created;
    int prompt_rendered;   // StorePrompt.rendered of the prompt
    int k;
    const StoreRankedCompletion *items;   // [k], best first (rank, then completion id)
} StoreRanking;
typedef int (*StoreRankingFn)(const StoreRanking *r, void *ctx);
// Every ranking whose prompt is in split (NULL: all), by ranking id: the training data of the
// reward model (one batch element per ranking).
int store_each_ranking(Store *s, const char *split, StoreRankingFn fn, void *ctx, char *err,
                       size_t errlen);

// ---------------------------------------------------------------------------------------------
// Labeling assignments
// ---------------------------------------------------------------------------------------------

typedef struct {
    int overlap;             // distinct labelers wanted per prompt; 0 or 1: each prompt once
    double lease_s;          // how long a claim keeps a prompt from others; 0: 3600 s
    const char *split;       // only prompts of this split; NULL: any
    int min_completions;     // only prompts with at least this many completions; 0: any
    const char *policy_hash; // a prompt counts as ranked (by this labeler, toward the overlap)
                             // only by rankings of this policy's samples; NULL: any ranking
    const char *source;      // only prompts that came from this source (queued or not); NULL: any
    const char *only_ids;    // only these prompts: a JSON array of ids ("[3,7]"); NULL: any
    int unqueued;            // also prompts no source queued (implied by source or only_ids)
} StoreClaimOptions;

// Gives labeler_id the next prompt to rank, inside one BEGIN IMMEDIATE transaction (or a
// savepoint of the caller's), so two labelers at once never get the same prompt unless overlap
// asks for it. First the labeler's own unexpired claim on a prompt it has not ranked (a session
// restarted after a crash resumes), refreshed; else the next prompt, in id order, that this
// labeler has neither ranked nor skipped and for which (distinct labelers who ranked it) +
// (others' active claims) < overlap. "Next" starts after the prompt this Store claimed last and
// wraps around to the lowest id (so a session does not rescan the prompts done before; a prompt
// given back is offered again once the ones after it are taken). Without source, only_ids or
// unqueued, only prompts queued for labeling (prompt_sources.to_label). *prompt_id = the claimed
// prompt, or 0 when nothing is left. opt may be NULL.
int store_claim_prompt(Store *s, int64_t labeler_id, const StoreClaimOptions *opt,
                       int64_t *prompt_id, char *err, size_t errlen);
// Ends the labeler's claim on a prompt: skip = 0 gives it back (anyone, this labeler included,
// may get it next); skip = 1 gives it to others but never again to this labeler.
int store_release_prompt(Store *s, int64_t labeler_id, int64_t prompt_id, int skip, char *err,
                         size_t errlen);

// ---------------------------------------------------------------------------------------------
// Reward scores
// ---------------------------------------------------------------------------------------------

// Stores (or replaces) reward model `model`'s score of a completion. score must be finite.
int store_set_reward_score(Store *s, const char *model, int64_t completion_id, double score,
                           char *err, size_t errlen);
// *found = 1 and *score set when present, else *found = 0.
int store_get_reward_score(Store *s, const char *model, int64_t completion_id, double *score,
                           int *found, char *err, size_t errlen);
typedef struct {
    int64_t completion_id, prompt_id;
    double score;
    const char *prompt, *text, *completion_model, *split, *source;
} StoreRewardScore;
typedef int (*StoreRewardScoreFn)(const StoreRewardScore *r, void *ctx);
// Every score by reward model `model`, by completion id.
int store_each_reward_score(Store *s, const char *model, StoreRewardScoreFn fn, void *ctx,
                            char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// Runs, metrics, rollouts
// ---------------------------------------------------------------------------------------------

typedef enum {
    STORE_RUN_RUNNING = 0,
    STORE_RUN_DONE,
    STORE_RUN_FAILED,
    STORE_RUN_INTERRUPTED,
} StoreRunStatus;
const char *store_run_status_name(StoreRunStatus st);            // "running", ...
int store_run_status_parse(const char *name, StoreRunStatus *st); // 0, or -1 when unknown

typedef struct {
    const char *stage;        // required: "sft", "reward", "ppo", or a pipeline stage's name
    const char *name;         // a label for people; NULL: ''
    const char *program;      // the command line or program; NULL: ''
    const char *config;       // config_dump text; NULL: ''
    const char *config_hash;  // config_hash text; NULL: ''
    const char *checkpoint;   // NULL: '' (set later with store_set_run_checkpoint)
    int64_t parent_id;        // the pipeline run that launched this one; 0: none
} StoreRunInfo;
// Records a new run: status 'running', started now, this process's pid and host name.
int store_add_run(Store *s, const StoreRunInfo *info, int64_t *id, char *err, size_t errlen);
// Sets the status. RUNNING (a resumed run): pid = this process, finished and exit_code cleared.
// Any other: finished = now and exit_code as given.
int store_set_run_status(Store *s, int64_t run_id, StoreRunStatus st, int exit_code, char *err,
                         size_t errlen);
// The end of a training program's run: rc 0 done (exit 0), rc > 0 interrupted by signal rc
// (exit 128 + rc: 130 SIGINT, 143 SIGTERM, 129 SIGHUP), rc < 0 failed (1). Marks run_id (when s and
// run_id are set) and returns that exit status. A failure to mark it is printed as "PROG: message"
// only after a success or an interruption: after a failure the program's own message is the one to
// read (often the same cause, e.g. a full disk).
int store_finish_run(Store *s, int64_t run_id, int rc, const char *prog);
int store_set_run_checkpoint(Store *s, int64_t run_id, const char *checkpoint, char *err,
                             size_t errlen);

typedef struct {
    int64_t id, parent_id;    // parent_id 0: none
    char *stage, *name, *program, *config, *config_hash, *checkpoint, *host;
    StoreRunStatus status;
    double started, finished; // finished 0 while running
    int has_exit_code, exit_code;
    int64_t pid;              // 0 when unknown
} StoreRun;
int store_get_run(Store *s, int64_t run_id, StoreRun *r, char *err, size_t errlen); // absent: error
// The newest run (highest id) of a stage, with this config hash when config_hash is not NULL, and
// with this status when status >= 0 (pass -1 for any). r->id = 0 when there is none.
int store_find_last_run(Store *s, const char *stage, const char *config_hash, int status,
                        StoreRun *r, char *err, size_t errlen);
void store_run_free(StoreRun *r);
typedef int (*StoreRunFn)(const StoreRun *r, void *ctx);
// Every run of a stage (NULL: all), by id.
int store_each_run(Store *s, const char *stage, StoreRunFn fn, void *ctx, char *err, size_t errlen);
// Marks runs still 'running' whose process is gone (same host, pid no longer alive) as
// 'interrupted' (a kill -9 leaves them so). *n (may be NULL) receives how many were changed.
int store_reap_runs(Store *s, int64_t *n, char *err, size_t errlen);

// Records metric `name` at `step` (replaces a value logged before at the same step). A reused
// prepared statement: cheap enough for many per second; wrap many in store_begin/commit to save
// the per-transaction cost.
int store_add_metric(Store *s, int64_t run_id, int64_t step, const char *name, double value,
                     char *err, size_t errlen);
typedef struct {
    int64_t run_id, step;
    const char *name;
    double value;             // NaN when stored as NULL
    double time;
} StoreMetric;
typedef int (*StoreMetricFn)(const StoreMetric *m, void *ctx);
// A run's metrics named `name` (NULL: all names), by name then step.
int store_each_metric(Store *s, int64_t run_id, const char *name, StoreMetricFn fn, void *ctx,
                      char *err, size_t errlen);

typedef struct {
    int64_t id, run_id, iteration;
    int64_t prompt_id;        // 0: the prompt did not come from the store
    const char *prompt, *response;
    double score;             // reward-model score of the whole response
    double reward;            // total reward: score - beta * kl (and any penalties)
    double kl;                // sum over response tokens of log pi - log pi_ref
    int64_t response_tokens;
    int ended;                // 1 when the response ended with the end token
    const char *components;   // the reward's parts, a JSON object (NULL: stored as '')
} StoreRollout;
// Stores one rollout (id ignored). NaN score/reward/kl are stored as NULL.
int store_add_rollout(Store *s, const StoreRollout *r, int64_t *id, char *err, size_t errlen);
typedef int (*StoreRolloutFn)(const StoreRollout *r, void *ctx);
// A run's rollouts of one iteration (iteration >= 0) or all (-1), by id.
int store_each_rollout(Store *s, int64_t run_id, int64_t iteration, StoreRolloutFn fn, void *ctx,
                       char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// Imports
// ---------------------------------------------------------------------------------------------

// SHA-256 of a file's contents as lowercase hex into hex[STORE_HASH_HEX]; of bytes in memory.
int  store_hash_file(const char *path, char hex[STORE_HASH_HEX], char *err, size_t errlen);
void store_hash_bytes(const void *data, size_t n, char hex[STORE_HASH_HEX]);
// *id = the import recorded with this content hash, or 0.
int store_find_import(Store *s, const char *hash, int64_t *id, char *err, size_t errlen);
// Records an import (call inside the import's transaction, just before store_commit). A second
// import with the same hash is an error naming the earlier file.
int store_add_import(Store *s, const char *path, const char *hash, const char *kind, int64_t rows,
                     int64_t *id, char *err, size_t errlen);

// Deletes a run's rollouts of the iterations after `after_iteration` (a resumed PPO run redoes
// the iterations after its checkpoint and stores their rollouts again). *n (may be NULL)
// receives how many rows were deleted.
int store_delete_rollouts(Store *s, int64_t run_id, int64_t after_iteration, int64_t *n, char *err,
                          size_t errlen);

// ---------------------------------------------------------------------------------------------
// Labeling through `rlhf serve`: rankings for one's own claims, flags, undo, progress
// ---------------------------------------------------------------------------------------------

typedef struct {
    int64_t completion_id;
    const char *flag;         // "unsafe" or "broken"
} StoreRankFlag;

// As store_add_ranking, in one transaction, and only for a prompt labeler_id holds an active
// claim on (unexpired, not skipped): returns -2 with a message when it holds none (another
// labeler's prompt, an expired lease, a prompt never given), and nothing is stored. flags[n]
// (may be NULL when n = 0) are stored with the ranking; each names one of its completions.
int store_add_claimed_ranking(Store *s, int64_t prompt_id, int64_t labeler_id,
                              const StoreRankItem *items, int k, const char *comment,
                              const StoreRankFlag *flags, int n, int64_t *id, char *err,
                              size_t errlen);
// *active = 1 when labeler_id holds an active claim on prompt_id.
int store_has_claim(Store *s, int64_t labeler_id, int64_t prompt_id, int *active, char *err,
                    size_t errlen);
// Undoes a ranking of labeler_id in one transaction: deletes it (items and flags with it) and
// claims its prompt back for lease_s seconds (<= 0: 3600), so that nobody else takes the prompt
// meanwhile. ranking_id 0: the labeler's newest ranking made at `since` (Unix seconds) or later;
// *ranking_id_out and *prompt_id (may be NULL) receive what was undone, 0 when there is none. A
// ranking of another labeler is an error (-2), and nothing changes.
int store_undo_ranking(Store *s, int64_t labeler_id, int64_t ranking_id, double since,
                       double lease_s, int64_t *ranking_id_out, int64_t *prompt_id, char *err,
                       size_t errlen);

typedef struct {
    int64_t mine;             // rankings by this labeler
    int64_t done;             // prompts ranked by at least `overlap` distinct labelers
    int64_t queued;           // prompts queued for labeling
} StoreLabelProgress;
// The three counts (done and queued scan the rankings and the prompts: on a large workspace,
// read them now and then rather than per request); store_count_rankings: mine alone (an index).
int store_label_progress(Store *s, int64_t labeler_id, int overlap, StoreLabelProgress *p,
                         char *err, size_t errlen);
int store_count_rankings(Store *s, int64_t labeler_id, int64_t *n, char *err, size_t errlen);

// ---------------------------------------------------------------------------------------------
// Users and sessions of `rlhf serve`
// ---------------------------------------------------------------------------------------------

typedef enum { STORE_ROLE_LABELER = 0, STORE_ROLE_ADMIN } StoreRole;
const char *store_role_name(StoreRole r);                // "labeler", "admin"
int store_role_parse(const char *name, StoreRole *r);    // 0, or -1 when unknown

typedef struct {
    int64_t id, labeler_id;   // id 0: no such user
    char *name, *salt, *hash; // the labeler's name; the token's salt and PBKDF2 hash (hex)
    StoreRole role;
    int64_t iterations, rankings;   // rankings: how many the labeler has made
    double created;
} StoreUser;
// Adds a user for labeler NAME (created when absent: one already labeling in the terminal keeps
// its rankings). A second user for one name is an error.
int store_add_user(Store *s, const char *name, StoreRole role, const char *salt, const char *hash,
                   int64_t iterations, int64_t *id, char *err, size_t errlen);
int store_find_user(Store *s, const char *name, StoreUser *u, char *err, size_t errlen);
void store_user_free(StoreUser *u);
typedef int (*StoreUserFn)(const StoreUser *u, void *ctx);
int store_each_user(Store *s, StoreUserFn fn, void *ctx, char *err, size_t errlen);   // by name
// Removes user NAME and its sessions (the labeler and its rankings stay). Absent: an error.
int store_delete_user(Store *s, const char *name, char *err, size_t errlen);

typedef struct {
    int64_t user_id, labeler_id;   // user_id 0: no such session, or it expired
    char *name, *csrf;
    StoreRole role;
    double expires, created;
} StoreSession;
// Adds a session (id_hash: SHA-256 hex of the cookie's secret), dropping expired ones.
int store_add_session(Store *s, const char *id_hash, int64_t user_id, const char *csrf,
                      double expires, char *err, size_t errlen);
int store_get_session(Store *s, const char *id_hash, StoreSession *out, char *err, size_t errlen);
void store_session_free(StoreSession *ss);
int store_delete_session(Store *s, const char *id_hash, char *err, size_t errlen);

// Claims one given prompt for labeler_id for lease_s seconds (<= 0: 3600), refreshing its own
// claim, without the overlap rule of store_claim_prompt: for a labeler going back to a prompt
// (`reward label`'s undo deletes the ranking and claims its prompt in one transaction, so that no
// other labeler takes it meanwhile).
int store_claim_prompt_id(Store *s, int64_t labeler_id, int64_t prompt_id, double lease_s,
                          char *err, size_t errlen);
#endif
