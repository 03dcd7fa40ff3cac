// trainer: the setup every training program shares (sft, reward train, ppo; dpo next). A training
// program is a recipe: parse its config, open its run, load, loop, save, finish. This module holds
// the parts of that recipe that are the same in every program, so that a new program adds only
// what is its own:
//   - config entries: the optimizer (learning rate, schedule, warmup, AdamW settings, gradient
//     clip), seed, threads, resume, save and log cadence, declared once here as TRAINER_ENTRY_*
//     macros that a program places in its own schema table where its --help lists them;
//   - the AdamWConfig and LrSchedule built from those entries;
//   - the command line (trainer_config) and the signals (cli_stop_install, see cli.h);
//   - the run's files and record (a Trainer): OUT.DIR/last and the result directory, the
//     workspace database, the config hash, resume from OUT.DIR/last, the run row in the store
//     (begun, resumed, or recorded anew when the database was replaced), and the exit status.
//
// Keys read here (a program's schema must hold those of the functions it calls): out.dir,
// workspace, train.threads, train.resume, train.beta1/beta2/eps/weight_decay/grad_clip,
// train.schedule, train.warmup_steps, train.min_lr_frac, save.every (and eval.every when
// save.every may be 0), eval.pretrain_text and eval.pretrain_max_windows (trainer_pretrain_open),
// and the checkpoint keys a program's TrainerSpec names as required. Key names, defaults and help texts are part of each program's interface
// (tests and stored configs rely on them): the macros keep them identical across programs. The
// config hash sorts keys (config.h), so the order of a schema's entries changes only --help.
//
// Errors: bad user input returns -1 with a one-line message in err (util_err); nothing is
// printed here except where a function says so. Ownership: a Trainer borrows the Config and the
// Dist (both outlive it) and owns its Store handle (closed by trainer_close). Not thread-safe;
// no global state beyond the process's signal settings (trainer_config: cli.h's stop flags,
// SIGXFSZ ignored).
#ifndef TRAINER_H
#define TRAINER_H
#include "checkpoint.h"
#include "config.h"
#include "dist.h"
#include "optim.h"
#include "store.h"
#include "tokenizer.h"
#include <stdint.h>

// ---------------------------------------------------------------------------------------------
// Config entries shared by the training programs. A program lists them in its schema:
//     TRAINER_ENTRY_LR("train.lr", "1e-4", "peak learning rate"),
//     TRAINER_ENTRY_SCHEDULE("cosine", "cosine|constant"),
//     TRAINER_ENTRY_WARMUP("linear warmup steps"),
//     TRAINER_ENTRIES_ADAMW,
//     TRAINER_ENTRY_GRAD_CLIP("global gradient-norm clip (0: off)"),
//     ...
// or, for a program with one learning rate and save/log by steps, TRAINER_ENTRIES_OPTIM(lr) and
// TRAINER_ENTRIES_CADENCE.
// Where a run writes: OUT.DIR (last/ and the result) and the workspace database.
#define TRAINER_ENTRY_OUT_DIR(help) CONFIG_ENTRY("out.dir", CONFIG_STRING, "", help)
#define TRAINER_ENTRY_WORKSPACE(help)                                                           \
    CONFIG_ENTRY("workspace", CONFIG_STRING, "", help, .flags = CONFIG_NO_HASH)
#define TRAINER_ENTRY_LR(key, def, help)                                                        \
    CONFIG_ENTRY(key, CONFIG_DOUBLE, def, help, .min = "0", .max = "10")
#define TRAINER_ENTRY_SCHEDULE(def, kinds)                                                    \
    CONFIG_ENTRY("train.schedule", CONFIG_ENUM, def, "learning-rate schedule after warmup",      \
                 .choices = kinds)
#define TRAINER_ENTRY_WARMUP(help)                                                              \
    CONFIG_ENTRY("train.warmup_steps", CONFIG_INT, "0", help, .min = "0")
// The cosine floor and the AdamW settings: the same in every program.
#define TRAINER_ENTRIES_ADAMW                                                                   \
    CONFIG_ENTRY("train.min_lr_frac", CONFIG_DOUBLE, "0.1",                                     \
                 "cosine floor as a fraction of the peak", .min = "0", .max = "1"),             \
    CONFIG_ENTRY("train.weight_decay", CONFIG_DOUBLE, "0.0", "AdamW decay on matrices",         \
                 .min = "0", .max = "10"),                                                      \
    CONFIG_ENTRY("train.beta1", CONFIG_DOUBLE, "0.9", "AdamW beta1", .min = "0", .max = "1"),   \
    CONFIG_ENTRY("train.beta2", CONFIG_DOUBLE, "0.95", "AdamW beta2", .min = "0", .max = "1"),  \
    CONFIG_ENTRY("train.eps", CONFIG_DOUBLE, "1e-8", "AdamW epsilon", .min = "0", .max = "1")
#define TRAINER_ENTRY_GRAD_CLIP(help)                                                           \
    CONFIG_ENTRY("train.grad_clip", CONFIG_DOUBLE, "1.0", help, .min = "0")
#define TRAINER_ENTRY_SEED(help) CONFIG_ENTRY("train.seed", CONFIG_INT, "1234", help, .min = "0")
#define TRAINER_ENTRY_THREADS                                                                   \
    CONFIG_ENTRY("train.threads", CONFIG_INT, "0",                                              \
                 "OpenMP threads (0: OMP_NUM_THREADS or all cores)", .min = "0", .max = "4096", \
                 .flags = CONFIG_NO_HASH)
#define TRAINER_ENTRY_RESUME                                                                    \
    CONFIG_ENTRY("train.resume", CONFIG_BOOL, "true",                                           \
                 "continue from OUT.DIR/last when it holds this config's run",                  \
                 .flags = CONFIG_NO_HASH)
#define TRAINER_ENTRY_SAVE_EVERY(def, lowest, help)                                                \
    CONFIG_ENTRY("save.every", CONFIG_INT, def, help, .min = lowest, .flags = CONFIG_NO_HASH)
#define TRAINER_ENTRY_LOG_EVERY(def, help)                                                      \
    CONFIG_ENTRY("log.every", CONFIG_INT, def, help, .min = "1", .flags = CONFIG_NO_HASH)

// How long a run is: passes over the data, or a number of optimizer steps.
#define TRAINER_ENTRIES_LENGTH(epochs_help)                                                     \
    CONFIG_ENTRY("train.epochs", CONFIG_INT, "1", epochs_help, .min = "1"),                     \
    CONFIG_ENTRY("train.steps", CONFIG_INT, "0", "optimizer steps (0: from epochs)", .min = "0")
#define TRAINER_ENTRY_EVAL_EVERY(def, help)                                                     \
    CONFIG_ENTRY("eval.every", CONFIG_INT, def, help, .min = "1")

// One peak learning rate train.lr (default lr_def), a cosine or constant schedule, warmup in
// steps, AdamW and the gradient clip: the optimizer entries of sft and reward train.
#define TRAINER_ENTRIES_OPTIM(lr_def)                                                           \
    TRAINER_ENTRY_LR("train.lr", lr_def, "peak learning rate"),                                 \
    TRAINER_ENTRY_SCHEDULE("cosine", "cosine|constant"),                                        \
    TRAINER_ENTRY_WARMUP("linear warmup steps"),                                                \
    TRAINER_ENTRIES_ADAMW,                                                                      \
    TRAINER_ENTRY_GRAD_CLIP("global gradient-norm clip (0: off)")
// Checkpoints at each evaluation unless save.every says otherwise, resume, log lines by steps.
#define TRAINER_ENTRIES_CADENCE                                                                 \
    TRAINER_ENTRY_SAVE_EVERY("0", "0", "save last/ every N steps (0: at each evaluation)"),      \
    TRAINER_ENTRY_RESUME,                                                                       \
    TRAINER_ENTRY_LOG_EVERY("10", "log a line every N steps when not on a terminal")

// How the program's result (best/, final/, policy/) is written: its weights' type and shards.
// OUT.DIR/last stays float32 in one file, so that a resume continues exactly.
#define TRAINER_ENTRIES_SAVE_FORMAT                                                             \
    CONFIG_ENTRY("save.dtype", CONFIG_ENUM, "float32",                                          \
                 "weights' type in the result checkpoint (last/ stays float32)",                \
                 .choices = "float32|bfloat16"),                                                \
    CONFIG_ENTRY("save.max_shard_bytes", CONFIG_INT, "0",                                       \
                 "result checkpoint in shards of at most N bytes with an index (0: one file)",  \
                 .min = "0")

// ---------------------------------------------------------------------------------------------
// Optimizer and schedule from the entries above.

// AdamW from train.beta1/beta2/eps/weight_decay/grad_clip, with the peak learning rate read from
// lr_key ("train.lr", "train.policy_lr", ...).
AdamWConfig trainer_adamw(const Config *cfg, const char *lr_key);
// The schedule of train.schedule, train.warmup_steps and train.min_lr_frac over total_steps.
LrSchedule trainer_schedule(const Config *cfg, int64_t total_steps);
// save.every, or eval.every when save.every is 0 (checkpoints at each evaluation).
int64_t trainer_save_every(const Config *cfg);
// Sets so->save_dtype and so->max_shard_bytes from save.dtype and save.max_shard_bytes
// (TRAINER_ENTRIES_SAVE_FORMAT), for the result checkpoint.
void trainer_save_format(const Config *cfg, CkptSaveOptions *so);

// ---------------------------------------------------------------------------------------------
// The command line and the run.

// Ignores SIGXFSZ (a write past a file-size limit then fails with a message instead of killing
// the process), makes *cfg from the schema (a bad schema: message, exit 2) and parses
// argv[0 .. argc) (no program name) as config_parse_args does. Returns -1 when the program should
// go on, with the stop signals installed (cli_stop_install(prog)); otherwise the exit status to
// return, with the Config freed and the ranks finalized (--help, --print-config, a bad file or
// override).
int trainer_config(Config **cfg, Dist *d, const ConfigEntry *schema, const char *prog,
                   const char *usage, int argc, char **argv);

// What a program tells trainer_init about its runs (a static table in the program).
typedef struct {
    const char *key, *what;         // a checkpoint key that must be set: "KEY is required (WHAT)"
} TrainerRequired;
typedef struct {
    const char *stage;              // the run row's stage: "sft", "reward", "ppo"
    const char *program;            // the run row's program and stop messages: "reward train"
    const char *result;             // the result's directory under OUT.DIR: "best", "final", ...
    TrainerRequired required[4];    // checked in this order; the list ends at a NULL key
} TrainerSpec;

typedef struct {
    Config *cfg;                    // borrowed: the program's configuration
    Dist *dist;                     // borrowed: rank 0 writes the store
    const TrainerSpec *spec;        // borrowed: stage, program, result directory
    char hash[CONFIG_HASH_HEX];     // config_hash of cfg: stored in the run and in checkpoints
    const char *out_dir;            // out.dir (owned by cfg)
    char last_dir[4096];            // OUT.DIR/last: the resumable state
    char final_dir[4096];           // OUT.DIR/<result>: what the program produces
    char db_path[4096];             // workspace, default OUT.DIR/workspace.db
    Store *db;                      // owned; opened by trainer_open_store (rank 0) or the program
    int64_t run_id;                 // the run's row (0 until begun or resumed)
} Trainer;

// The run's settings, checked before anything is written: the AdamW settings (train.beta1,
// beta2, eps; optim_adamw_validate), out.dir, then spec's required keys. Then makes OUT.DIR,
// names OUT.DIR/last, OUT.DIR/<result> and the workspace, computes the config hash and applies
// train.threads (when not 0). spec must outlive t.
int trainer_init(Trainer *t, Config *cfg, Dist *d, const TrainerSpec *spec, char *err,
                 size_t errlen);
// Opens the workspace: rank 0 opens it (creating or migrating it), marks the runs of dead
// processes (store_reap_runs), then calls prepare(ctx) when not NULL (imports, repairs); with
// all_ranks, the other ranks then open it too, to read, once rank 0 is done (a barrier).
int trainer_open_store(Trainer *t, int all_ranks,
                       int (*prepare)(void *ctx, char *err, size_t errlen), void *ctx, char *err,
                       size_t errlen);
// Whether to resume from the trainer state in dir (OUT.DIR/last, or a model directory under it):
// 0 start fresh (train.resume false, or no trainer state there), 1 resume with *st loaded
// (config and counters, no weights), -1 when dir holds a run of another configuration.
int trainer_try_resume(Trainer *t, const char *dir, CkptTrainerState *st, char *err,
                       size_t errlen);
// Records the run in the store (rank 0 with a store; others do nothing). Fresh: a new run row,
// t->run_id set. Resumed (t->run_id read from the trainer state): the run marked running again;
// when the database no longer holds it (replaced or deleted), a new row is added with checkpoint
// as its checkpoint and t->run_id changes to it.
int trainer_begin_run(Trainer *t, int resumed, const char *checkpoint, char *err, size_t errlen);
// Checkpoints: 1 when the model's weights are the same bytes on every rank (always 1 without MPI),
// checked before a save.
int trainer_same_weights(const Trainer *t, const Model *m);
// The weights that train: the model's, or with lo (not NULL: LoRA adapters, lora.h) the
// adapters'. same_trained: they are the same bytes on every rank; zero_grad, allreduce_grads (sum
// over the ranks) and adamw_step (one AdamW step, returning the gradient norm) act on them.
int trainer_same_trained(const Trainer *t, const Model *m, const struct Lora *lo);
void trainer_zero_grad(Model *m, struct Lora *lo);
void trainer_allreduce_grads(Dist *d, Model *m, struct Lora *lo);
float trainer_adamw_step(Model *m, struct Lora *lo, const AdamWConfig *c, float lr, int64_t t);
// A trainer state with the step and the random state; the program adds its own entries (the
// order they are added in is the order in trainer_state.json).
void trainer_state_init(CkptTrainerState *st, int64_t step, const Rng *rng);
// On rank 0, to stderr: "STAGE: resuming run ID at UNIT DONE of TOTAL from OUT.DIR/last" and
// extra (may be "").
void trainer_note_resumed(const Trainer *t, const char *unit, int64_t done, int64_t total,
                          const char *extra);
// The run begun from here on (a signal then saves last/ and marks it interrupted): fresh (resumed
// 0: *rng seeded from train.seed, a new run row) or resumed from OUT.DIR/last with st as
// trainer_try_resume read it: the weights and AdamW moments of m (with lo, the adapters' instead),
// *step, *rng and the run id, the run marked running again and noted (of total steps).
int trainer_begin_or_resume(Trainer *t, int resumed, CkptTrainerState *st, Model *m,
                            struct Lora *lo, int64_t *step, Rng *rng, int64_t total, char *err,
                            size_t errlen);
// After a stop request with OUT.DIR/last saved at UNIT DONE: on rank 0, "STAGE: interrupted by
// SIGNAL at UNIT DONE; saved OUT.DIR/last (rerun the same command to resume)". Returns the exit
// status (trainer_stop_status).
int trainer_stopped(const Trainer *t, const char *unit, int64_t done);
// The exit status of a run that stopped on a signal (cli_stop_signal, SIGINT when none was seen).
int trainer_stop_status(void);
// The end of a run: after a failure (rc < 0) err's message on stderr, from one rank
// (dist_report_error); the run marked done, failed or interrupted by rc (store_finish_run, rank
// 0); a run that succeeded records its process's peak resident memory as the metric
// run/peak_rss_bytes (step 0). Returns the process's exit status.
int trainer_finish(Trainer *t, int rc, const char *err);
void trainer_close(Trainer *t);   // closes the store; the Config is the program's to free

// The config hash as stored in trainer states (an int64 of its 64 bits).
uint64_t trainer_hash_u64(const Trainer *t);
// ---------------------------------------------------------------------------------------------
// Held-out pretraining loss (sft and ppo): the mean next-token loss of the model being trained on
// a fixed text, at each evaluation, to see what training costs the language model. The text is
// tokenized as sft's data.format text and ppo's ptx.data are (documents separated by
// "<|endoftext|>", each followed by the end token; tokfile.h) into OUT.DIR/pretrain_eval.tok at
// every start, then read as consecutive windows of W = min(tokens - 1, the model's batch length)
// positions, every token after the first predicted once: `rlhf eval CKPT --ids` on the same
// tokens gives the same number when the batch length is the model's context. Neither key changes
// training (not in the config hash).
#define TRAINER_ENTRIES_PRETRAIN_EVAL                                                           \
    CONFIG_ENTRY("eval.pretrain_text", CONFIG_STRING, "",                                       \
                 "held-out pretraining text: its loss is valid/pretrain_loss at each evaluation " \
                 "(empty: off)",                                                                \
                 .flags = CONFIG_NO_HASH),                                                      \
    CONFIG_ENTRY("eval.pretrain_max_windows", CONFIG_INT, "16",                                 \
                 "windows of eval.pretrain_text per evaluation (0: all)", .min = "0",          \
                 .flags = CONFIG_NO_HASH)
typedef struct {
    int32_t *ids;          // the tokens evaluated (owned; NULL when eval.pretrain_text is empty)
    int64_t n;             // how many (at most max_windows * W + 1 of the text's)
    int64_t W, windows;    // window length and count
} TrainerPretrain;
// Reads eval.pretrain_text and eval.pretrain_max_windows; rank 0 writes the token file, the
// others wait (a barrier). max_T: the model's batch length. p is zeroed first; off when the key
// is empty. A missing, unreadable or empty file is an error naming eval.pretrain_text.
int trainer_pretrain_open(TrainerPretrain *p, const Trainer *t, const Tokenizer *tok,
                          int64_t model_vocab, int max_T, char *err, size_t errlen);
// The mean next-token loss over p's windows, in batches of at most max_B rows (the model's).
int trainer_pretrain_loss(const TrainerPretrain *p, Model *m, int max_B, double *loss, char *err,
                          size_t errlen);
void trainer_pretrain_free(TrainerPretrain *p);   // leaves *p zeroed
#endif
