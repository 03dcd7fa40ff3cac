// The shared training setup (common/trainer.h): the shared config entries give the same --help
// lines and config hash as the tables the programs wrote out before (so runs made before still
// resume), the optimizer and schedule built from them, the first checks of a run in their order,
// the paths, resume from a trainer state of this config only, and the run's record: begun,
// resumed, and recorded anew when the database was replaced.
#include "checkpoint.h"
#include "config.h"
#include "dist.h"
#include "model.h"
#include "store.h"
#include "testlib.h"
#include "trainer.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[] = "/tmp/rlhf_test_trainer_XXXXXX";

// What the tables of these keys as sft and ppo wrote them out before the shared entries
// (94c2116) gave: the --help lines, and the config hash of the defaults and of the overrides
// below. Runs made before record those hashes; a resume compares them.
static const char SFT_HELP_BEFORE[] =
    "  model.init          string  \"\"            checkpoint to start from (required)\n"
    "  out.dir             string  \"\"            output directory\n"
    "  workspace           string  \"\"            workspace database\n"
    "  train.epochs        int     1             passes over the training data (when train.steps is 0) [>= 1]\n"
    "  train.steps         int     0             optimizer steps (0: from epochs) [>= 0]\n"
    "  train.lr            double  0.0001        peak learning rate [0 .. 10]\n"
    "  train.schedule      enum    \"cosine\"      learning-rate schedule after warmup (cosine|constant)\n"
    "  train.warmup_steps  int     0             linear warmup steps [>= 0]\n"
    "  train.min_lr_frac   double  0.1           cosine floor as a fraction of the peak [0 .. 1]\n"
    "  train.weight_decay  double  0             AdamW decay on matrices [0 .. 10]\n"
    "  train.beta1         double  0.9           AdamW beta1 [0 .. 1]\n"
    "  train.beta2         double  0.95          AdamW beta2 [0 .. 1]\n"
    "  train.eps           double  1e-08         AdamW epsilon [0 .. 1]\n"
    "  train.grad_clip     double  1             global gradient-norm clip (0: off) [>= 0]\n"
    "  train.seed          int     1234          data order and sampling seed [>= 0]\n"
    "  train.threads       int     0             OpenMP threads (0: OMP_NUM_THREADS or all cores) [0 .. 4096]\n"
    "  eval.every          int     100           evaluate every N steps (and at the end) [>= 1]\n"
    "  save.every          int     0             save last/ every N steps (0: at each evaluation) [>= 0]\n"
    "  train.resume        bool    true          continue from OUT.DIR/last when it holds this config's run\n"
    "  log.every           int     10            log a line every N steps when not on a terminal [>= 1]\n";
static const char PPO_HELP_BEFORE[] =
    "  out.dir             string  \"\"            output directory\n"
    "  train.policy_lr     double  1e-05         policy learning rate [0 .. 10]\n"
    "  train.value_lr      double  1e-05         value model learning rate [0 .. 10]\n"
    "  train.schedule      enum    \"constant\"    learning-rate schedule after warmup (constant|cosine)\n"
    "  train.warmup_steps  int     0             linear warmup (optimizer steps) [>= 0]\n"
    "  train.min_lr_frac   double  0.1           cosine floor as a fraction of the peak [0 .. 1]\n"
    "  train.weight_decay  double  0             AdamW decay on matrices [0 .. 10]\n"
    "  train.beta1         double  0.9           AdamW beta1 [0 .. 1]\n"
    "  train.beta2         double  0.95          AdamW beta2 [0 .. 1]\n"
    "  train.eps           double  1e-08         AdamW epsilon [0 .. 1]\n"
    "  train.grad_clip     double  1             global gradient-norm clip per model (0: off) [>= 0]\n"
    "  train.seed          int     1234          prompt order, sampling and minibatch seed [>= 0]\n"
    "  train.threads       int     0             OpenMP threads (0: OMP_NUM_THREADS or all cores) [0 .. 4096]\n"
    "  train.resume        bool    true          continue from OUT.DIR/last when it holds this config's run\n"
    "  save.every          int     10            save OUT.DIR/last every N iterations (and at the end) [>= 1]\n"
    "  log.every           int     1             print a line every N iterations [>= 1]\n";
static const char *const SFT_SETS[] = {
    "train.lr=3e-3", "train.schedule=constant", "train.warmup_steps=5", "train.min_lr_frac=0.2",
    "train.weight_decay=0.1", "train.beta1=0.8", "train.beta2=0.99", "train.eps=1e-6",
    "train.grad_clip=0.5", "train.seed=7", "train.threads=2", "save.every=7", "log.every=1",
    "train.resume=false", "train.steps=30", "eval.every=10", NULL};
static const char *const PPO_SETS[] = {"train.policy_lr=2e-3", "train.value_lr=3e-3",
                                       "train.schedule=cosine", "save.every=2", "train.seed=11",
                                       NULL};

// sft's keys (a subset) through the shared entries, in sft's order.
static const ConfigEntry SFT_NOW[] = {
    CONFIG_ENTRY("model.init", CONFIG_STRING, "", "checkpoint to start from (required)"),
    CONFIG_ENTRY("out.dir", CONFIG_STRING, "", "output directory"),
    CONFIG_ENTRY("workspace", CONFIG_STRING, "", "workspace database", .flags = CONFIG_NO_HASH),
    TRAINER_ENTRIES_LENGTH("passes over the training data (when train.steps is 0)"),
    TRAINER_ENTRIES_OPTIM("1e-4"),
    TRAINER_ENTRY_SEED("data order and sampling seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_EVAL_EVERY("100", "evaluate every N steps (and at the end)"),
    TRAINER_ENTRIES_CADENCE,
    {0}};

// ppo's optimizer and cadence keys (two learning rates, another schedule default, saves by
// iterations) through the shared entries.
static const ConfigEntry PPO_NOW[] = {
    CONFIG_ENTRY("out.dir", CONFIG_STRING, "", "output directory"),
    TRAINER_ENTRY_LR("train.policy_lr", "1e-5", "policy learning rate"),
    TRAINER_ENTRY_LR("train.value_lr", "1e-5", "value model learning rate"),
    TRAINER_ENTRY_SCHEDULE("constant", "constant|cosine"),
    TRAINER_ENTRY_WARMUP("linear warmup (optimizer steps)"),
    TRAINER_ENTRIES_ADAMW,
    TRAINER_ENTRY_GRAD_CLIP("global gradient-norm clip per model (0: off)"),
    TRAINER_ENTRY_SEED("prompt order, sampling and minibatch seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_RESUME,
    TRAINER_ENTRY_SAVE_EVERY("10", "1", "save OUT.DIR/last every N iterations (and at the end)"),
    TRAINER_ENTRY_LOG_EVERY("1", "print a line every N iterations"),
    {0}};

static Config *make(const ConfigEntry *schema, const char *const *sets) {
    Config *c;
    char err[512];
    if (config_new(&c, schema, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (; sets && *sets; sets++)
        if (config_set(c, *sets, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", *sets, err);
            exit(1);
        }
    return c;
}

static char *help_of(const Config *c) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    config_help(c, f);
    fclose(f);
    return buf;
}

// The same help lines (keys, defaults, bounds, help texts, order) and the same hashes as before.
static void same_as_before(const ConfigEntry *now, const char *help, const char *const *sets,
                           const char *hash_defaults, const char *hash_sets, const char *what) {
    Config *a = make(now, NULL), *b = make(now, sets);
    char *h = help_of(a);
    CHECK_MSG(!strcmp(h, help), "%s: --help differs:\n%s---\n%s", what, h, help);
    char xa[CONFIG_HASH_HEX], xb[CONFIG_HASH_HEX];
    config_hash(a, xa);
    config_hash(b, xb);
    CHECK_MSG(!strcmp(xa, hash_defaults), "%s: config hash %s, before %s", what, xa, hash_defaults);
    CHECK_MSG(!strcmp(xb, hash_sets), "%s, keys set: config hash %s, before %s", what, xb,
              hash_sets);
    free(h);
    config_free(a);
    config_free(b);
}

static void test_entries_as_before(void) {
    same_as_before(SFT_NOW, SFT_HELP_BEFORE, SFT_SETS, "164fa69234d7e130", "849279db6a4725a3",
                   "sft");
    same_as_before(PPO_NOW, PPO_HELP_BEFORE, PPO_SETS, "b8f9bac3af9f33a8", "3eadf576ecef0e82",
                   "ppo");
}

static void test_optimizer_from_config(void) {
    const char *sets[] = {"train.lr=3e-3", "train.beta1=0.8", "train.beta2=0.99", "train.eps=1e-6",
                          "train.weight_decay=0.1", "train.grad_clip=0.5", "train.warmup_steps=5",
                          "train.min_lr_frac=0.2", NULL};
    Config *c = make(SFT_NOW, sets);
    AdamWConfig o = trainer_adamw(c, "train.lr");
    CHECK(o.lr == 3e-3f && o.beta1 == 0.8f && o.beta2 == 0.99f && o.eps == 1e-6f);
    CHECK(o.weight_decay == 0.1f && o.grad_clip == 0.5f);
    LrSchedule s = trainer_schedule(c, 30);
    CHECK(s.kind == LR_COSINE && s.warmup_steps == 5 && s.total_steps == 30 &&
          s.min_lr_frac == 0.2f);
    CHECK(trainer_save_every(c) == 100);   // save.every 0: at each evaluation
    char err[256];
    CHECK(config_set(c, "train.schedule=constant", err, sizeof err) == 0);
    CHECK(config_set(c, "save.every=7", err, sizeof err) == 0);
    CHECK(trainer_schedule(c, 30).kind == LR_CONSTANT && trainer_save_every(c) == 7);
    config_free(c);
    Config *p = make(PPO_NOW, (const char *const[]){"train.value_lr=3e-3", NULL});
    CHECK(trainer_adamw(p, "train.policy_lr").lr == 1e-5f &&
          trainer_adamw(p, "train.value_lr").lr == 3e-3f);
    CHECK(trainer_schedule(p, 8).kind == LR_CONSTANT);
    config_free(p);
}

static const TrainerSpec SPEC = {.stage = "sft", .program = "sft", .result = "best",
                                 .required = {{"model.init", "a checkpoint"}}};

// init's message for a config with these overrides ("" when it succeeds).
static const char *init_error(const char *const *sets, Trainer *t, Dist *d, char *err,
                              size_t errlen) {
    Config *c = make(SFT_NOW, sets);
    memset(t, 0, sizeof *t);
    int rc = trainer_init(t, c, d, &SPEC, err, errlen);
    if (rc == 0) err[0] = 0;
    config_free(c);
    return err;
}

static void test_init_checks_and_paths(void) {
    Dist d = {.size = 1};
    Trainer t;
    char err[512], out[600], dir[700];
    // the checks come in the programs' order: AdamW, out.dir, then the required keys
    init_error(NULL, &t, &d, err, sizeof err);
    CHECK_MSG(strstr(err, "out.dir is required"), "%s", err);
    init_error((const char *const[]){"train.beta1=1", NULL}, &t, &d, err, sizeof err);
    CHECK_MSG(strstr(err, "train.beta1"), "%s", err);
    snprintf(out, sizeof out, "out.dir=%s/run", tmpdir);
    init_error((const char *const[]){out, NULL}, &t, &d, err, sizeof err);
    CHECK_MSG(!strcmp(err, "model.init is required (a checkpoint)"), "%s", err);
    snprintf(dir, sizeof dir, "%s/run", tmpdir);
    CHECK_MSG(access(dir, F_OK) != 0, "out.dir made before the checks passed");
    // then OUT.DIR, its last/ and result names, the default workspace, the hash
    init_error((const char *const[]){out, "model.init=base", NULL}, &t, &d, err, sizeof err);
    CHECK_MSG(!err[0], "%s", err);
    CHECK(access(dir, F_OK) == 0);
    snprintf(out, sizeof out, "%s/run/last", tmpdir);
    CHECK_MSG(!strcmp(t.last_dir, out), "%s", t.last_dir);
    snprintf(out, sizeof out, "%s/run/best", tmpdir);
    CHECK_MSG(!strcmp(t.final_dir, out), "%s", t.final_dir);
    snprintf(out, sizeof out, "%s/run/workspace.db", tmpdir);
    CHECK_MSG(!strcmp(t.db_path, out), "%s", t.db_path);
    CHECK(strlen(t.hash) == 16);
    snprintf(out, sizeof out, "out.dir=%s/run", tmpdir);
    init_error((const char *const[]){out, "model.init=base", "workspace=ws.db", NULL}, &t, &d, err,
               sizeof err);
    CHECK_MSG(!strcmp(t.db_path, "ws.db"), "%s", t.db_path);
}

// A tiny trainable model saved with a trainer state holding config_hash.
static void save_state(const char *dir, int64_t config_hash, int64_t run_id) {
    ModelConfig c = {.max_seq_len = 8, .vocab_size = 11, .n_layer = 1, .n_head = 1, .n_embd = 4,
                     .ln_eps = 1e-5f, .lm_head = 1};
    Model m;
    char err[512];
    if (model_init(&m, &c, 1, 8, 1, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    CkptTrainerState st;
    Rng r;
    rng_init(&r, 3);
    trainer_state_init(&st, 12, &r);
    CHECK(st.step == 12);
    CHECK(ckpt_state_set_int(&st, "config_hash", config_hash, err, sizeof err) == 0);
    CHECK(ckpt_state_set_int(&st, "run_id", run_id, err, sizeof err) == 0);
    CkptSaveOptions so = {.state = &st};
    CHECK_MSG(ckpt_save(dir, &m, &so, err, sizeof err) == 0, "%s", err);
    model_free(&m);
}

static void test_resume_and_record(void) {
    Dist d = {.size = 1};
    Trainer t;
    char err[512], out[600], ws[700];
    snprintf(out, sizeof out, "out.dir=%s/rec", tmpdir);
    Config *c = make(SFT_NOW, (const char *const[]){out, "model.init=base", NULL});
    CHECK_MSG(trainer_init(&t, c, &d, &SPEC, err, sizeof err) == 0, "%s", err);
    CkptTrainerState st;
    CHECK(trainer_try_resume(&t, t.last_dir, &st, err, sizeof err) == 0);   // nothing there
    // a fresh run: a row, running
    CHECK_MSG(trainer_open_store(&t, 0, NULL, NULL, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(trainer_begin_run(&t, 0, NULL, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(trainer_begin_run(&t, 0, NULL, err, sizeof err) == 0, "%s", err);
    int64_t first = t.run_id;   // the second run of this database
    CHECK(first == 2);
    // OUT.DIR/last of this config resumes; of another config it is refused
    save_state(t.last_dir, (int64_t)trainer_hash_u64(&t), first);
    CHECK(trainer_try_resume(&t, t.last_dir, &st, err, sizeof err) == 1 && st.step == 12);
    CHECK(trainer_begin_run(&t, 1, t.last_dir, err, sizeof err) == 0 && t.run_id == first);
    save_state(t.last_dir, (int64_t)trainer_hash_u64(&t) ^ 1, first);
    CHECK(trainer_try_resume(&t, t.last_dir, &st, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "holds a run with another configuration"), "%s", err);
    CHECK(config_set(c, "train.resume=false", err, sizeof err) == 0);
    CHECK(trainer_try_resume(&t, t.last_dir, &st, err, sizeof err) == 0);
    // the database replaced: the resumed run is recorded anew, with its checkpoint
    trainer_close(&t);
    snprintf(ws, sizeof ws, "%s/rec/workspace.db", tmpdir);
    CHECK(unlink(ws) == 0);
    CHECK(trainer_open_store(&t, 0, NULL, NULL, err, sizeof err) == 0);
    t.run_id = first;   // as read from the trainer state
    CHECK_MSG(trainer_begin_run(&t, 1, t.last_dir, err, sizeof err) == 0, "%s", err);
    CHECK_MSG(t.run_id == 1, "run %lld", (long long)t.run_id);
    StoreRun r;
    CHECK(store_get_run(t.db, t.run_id, &r, err, sizeof err) == 0);
    CHECK_MSG(!strcmp(r.checkpoint, t.last_dir) && r.status == STORE_RUN_RUNNING &&
                  !strcmp(r.stage, "sft") && !strcmp(r.config_hash, t.hash),
              "%s %d %s", r.checkpoint, (int)r.status, r.stage);
    store_run_free(&r);
    CHECK(trainer_finish(&t, 0, "") == 0);
    CHECK(store_get_run(t.db, t.run_id, &r, err, sizeof err) == 0 && r.status == STORE_RUN_DONE);
    store_run_free(&r);
    trainer_close(&t);
    config_free(c);
}

int main(void) {
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_case("trainer: shared entries give the same --help and config hash as before",
              test_entries_as_before);
    test_case("trainer: AdamW, schedule and save cadence from the config",
              test_optimizer_from_config);
    test_case("trainer: checks in order, nothing made before they pass; paths",
              test_init_checks_and_paths);
    test_case("trainer: resume only this config's state; the run recorded anew in a new database",
              test_resume_and_record);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", tmpdir);
    return test_summary();
}
