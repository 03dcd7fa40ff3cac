// reward train: the reward model (InstructGPT step 2). Reads like a recipe: parse the config,
// load the SFT model with a scalar head in place of the unembedding, load the workspace's
// rankings (train split to learn, valid split to measure), loop (step, log, evaluate, save), then
// shift the scores so that the demonstrations score 0 on average and write the final model.
//
// One optimizer step takes train.batch_size rankings. A ranking of K completions is K sequences
// in one forward pass (micro-batches pack whole rankings, up to train.micro_batch sequences) and
// one batch element: its loss is the mean over its non-tied pairs of -log sigmoid(r_w - r_l)
// (reward.h), and the step's loss is the mean over its rankings. The ranking order of epoch e is
// a shuffle seeded by (train.seed, e), so step s always sees the same rankings: resuming needs
// only the step count. The rankings used are fixed when the run starts (ranking ids up to the
// highest one then; their fingerprint is checked on resume), so labeling may go on meanwhile.
//
// Outputs: OUT.DIR/last (resumable: weights as trained, AdamW moments, step, the bias in
// trainer_state.json as reward_bias) and OUT.DIR/final (the reward model: last's weights with
// the bias folded exactly into ln_f.bias; a plain Hugging Face GPT2ForSequenceClassification,
// or for a Llama-style model, whose RMSNorm has no bias, last's weights unshifted: a
// LlamaForSequenceClassification or Qwen2/Qwen3 one).
// Killed at any moment, the same command resumes and ends with the same weights.
//
// Under MPI (make MPI=1, mpirun -np N reward train ...) every rank loads the same rankings and
// takes a contiguous share of each step's rankings (whole rankings, all their completions); one
// allreduce over the flat gradient buffer per step sums the shares, and the step's statistics
// (loss, accuracy, ...) are summed too, so each rank holds one process's result for the same
// global batch. Held-out evaluation and the bias are split the same way. Rank 0 alone writes the
// database, the checkpoints and the progress display.
#include "checkpoint.h"
#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "data.h"
#include "dataset.h"
#include "dist.h"
#include "adapter.h"
#include "model.h"
#include "optim.h"
#include "reward.h"
#include "store.h"
#include "tokenizer.h"
#include "trainer.h"
#include "util.h"
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ConfigEntry RM_SCHEMA[] = {
    CONFIG_ENTRY("model.init", CONFIG_STRING, "",
                 "SFT checkpoint to start from (required); its LM head is dropped"),
    CONFIG_ENTRY("model.tokenizer", CONFIG_STRING, "",
                 "tokenizer directory when model.init has none"),
    CONFIG_ENTRY("model.score_init", CONFIG_ENUM, "normal",
                 "score.weight when model.init has none: normal = N(0, 1/sqrt(C)), or zeros",
                 .choices = "normal|zeros"),
    TRAINER_ENTRY_OUT_DIR(
        "output directory: last/ (resumable) and final/ (the reward model) (required)"),
    TRAINER_ENTRY_WORKSPACE("workspace database with the rankings (default: OUT.DIR/workspace.db)"),
    CONFIG_ENTRY(
        "data.import", CONFIG_LIST, NULL,
        "JSONL ranking files imported into the workspace first (as `reward import`; a file imported before adds nothing)"),
    CONFIG_ENTRY("data.valid_percent", CONFIG_DOUBLE, "5",
                 "share of newly imported prompts put in the valid split", .min = "0", .max = "50"),
    CONFIG_ENTRY("data.prompt_template", CONFIG_STRING, DATASET_DEFAULT_PROMPT_TEMPLATE,
                 "prompt rendering (as SFT); exactly one {prompt}"),
    CONFIG_ENTRY("data.response_prefix", CONFIG_STRING, DATASET_DEFAULT_RESPONSE_PREFIX,
                 "text before each response (as SFT)"),
    CONFIG_ENTRY("train.batch_size", CONFIG_INT, "8",
                 "rankings per optimizer step (InstructGPT: 64)", .min = "1", .max = "65536"),
    CONFIG_ENTRY("train.micro_batch", CONFIG_INT, "16",
                 "sequences per forward pass (whole rankings; at least the largest K)", .min = "1",
                 .max = "65536"),
    CONFIG_ENTRY(
        "train.seq_len", CONFIG_INT, "0",
        "tokens per sequence, longer ones keep their end (0: the longest, up to the context)",
        .min = "0"),
    TRAINER_ENTRIES_LENGTH(
        "passes over the rankings when train.steps is 0 (InstructGPT: 1; more overfit)"),
    TRAINER_ENTRIES_OPTIM("1e-5"),
    TRAINER_ENTRY_SEED("ranking order and score-head initialisation seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_EVAL_EVERY("50", "held-out evaluation every N steps (and at the end)"),
    CONFIG_ENTRY("eval.max_rankings", CONFIG_INT, "0", "held-out rankings per evaluation (0: all)",
                 .min = "0"),
    CONFIG_ENTRY(
        "bias.source", CONFIG_ENUM, "auto",
        "what scores 0 on average after training: demonstrations, the training completions, "
        "none, or auto (demonstrations when the workspace has some)",
        .choices = "auto|demonstrations|completions|none"),
    CONFIG_ENTRY("bias.max_examples", CONFIG_INT, "2000",
                 "at most this many examples (the first by id) for the bias", .min = "1"),
    TRAINER_ENTRIES_CADENCE,
    TRAINER_ENTRIES_SAVE_FORMAT,
    ADAPTER_ENTRIES,
    {0}};

static const char *usage =
    "usage: reward train -c CONFIG.yaml [--set KEY=VALUE ...] [--print-config]\n"
    "Trains a reward model from an SFT checkpoint on the workspace's rankings (train split; the\n"
    "valid split is held out). Writes OUT.DIR/last (resumable) and OUT.DIR/final (the reward model,\n"
    "its scores shifted so that the demonstrations score 0 on average), and records the run and its\n"
    "metrics in the workspace. Rerun the same command after an interruption to resume.\n"
    "With lora.r > 0 model.init stays frozen and LoRA adapters train with the score head (PEFT's\n"
    "modules_to_save score): last/ is an adapter directory; final/ the merged reward model\n"
    "(the bias is folded into its weights). Keys:\n";

// Rankings tokenized: ranking i has items [first, first+k); item j's tokens are toks[off, off+len).
typedef struct { int64_t id; int k; int64_t first, pairs; } RmRank;
typedef struct { int64_t off; int32_t len; int rank; } RmItem;
typedef struct {
    RmRank *r;  int64_t n, cap;
    RmItem *it; int64_t ni, capi;
    TokIds toks;
    int64_t n_tied;          // rankings without a single non-tied pair (skipped)
    int64_t pairs;           // non-tied pairs in all
    int max_k, max_len;
    uint64_t hash;           // fingerprint of ids, completions, ranks and tokens
} RmSet;

typedef struct {
    Dist dist;               // rank 0 writes; every rank computes its share of each step
    Config *cfg;
    Trainer tr;              // OUT.DIR/last and final/ (tr.final_dir), the workspace, the run
    int bs, micro, T, max_rows;
    int64_t total_steps;
    Model model;                // with lora.r > 0 the frozen base
    Lora lora;                  // lora.r > 0: the adapters and the score copy that train
    int use_lora;
    char base_name[4096];       // the adapters' base_model_name_or_path (model.init, absolute)
    Tokenizer *tok;
    Dataset *ds;             // prompt rendering
    int64_t max_ranking_id;  // rankings used: ids up to this one
    RmSet train, valid;
    int64_t step;
    Rng rng;
    int64_t *perm, perm_epoch;
    int32_t *tokens, *lengths;   // (max_rows, T), (max_rows): one micro-batch
    float *values, *dvalues, *scores, *dscores;
    double bias;
    int has_bias;
} Rm;

static void set_free(RmSet *s) {
    free(s->r); free(s->it); tok_ids_free(&s->toks);
    memset(s, 0, sizeof *s);
}

// Appends one item (its tokens already appended to s->toks from off on).
static void set_push_item(RmSet *s, int64_t off, int rank) {
    if (s->ni == s->capi) {
        s->capi = s->capi ? 2 * s->capi : 256;
        s->it = REALLOC_ARRAY(s->it, (size_t)s->capi, sizeof(RmItem));
    }
    int32_t len = (int32_t)((int64_t)s->toks.n - off);
    s->it[s->ni++] = (RmItem){off, len, rank};
    if (len > s->max_len) s->max_len = len;
}

typedef struct { Rm *rm; RmSet *set; char *err; size_t errlen; } LoadCtx;

static int load_ranking(const StoreRanking *r, void *ctx) {
    LoadCtx *c = ctx;
    Rm *rm = c->rm;
    RmSet *s = c->set;
    if (r->id > rm->max_ranking_id) return 0;   // added after this run started
    if (r->k > REWARD_MAX_K)
        return util_err(c->err, c->errlen, "%s: ranking %lld has %d completions, more than %d",
                        rm->tr.db_path, (long long)r->id, r->k, REWARD_MAX_K);
    int ranks[REWARD_MAX_K];
    for (int i = 0; i < r->k; i++) ranks[i] = r->items[i].rank;
    int64_t pairs = reward_num_pairs(ranks, r->k);
    if (pairs == 0) { s->n_tied++; return 0; }
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->r = REALLOC_ARRAY(s->r, (size_t)s->cap, sizeof(RmRank));
    }
    s->r[s->n++] = (RmRank){r->id, r->k, s->ni, pairs};
    s->pairs += pairs;
    if (r->k > s->max_k) s->max_k = r->k;
    s->hash = data_hash_u64(data_hash_u64(s->hash, (uint64_t)r->id), (uint64_t)r->k);
    const char *prefix = config_get_string(rm->cfg, "data.response_prefix");
    for (int i = 0; i < r->k; i++) {
        int64_t off = (int64_t)s->toks.n;
        char e[512];
        int T = rm->model.config.max_seq_len;   // a prompt rendered at import is not wrapped
        if (r->prompt_rendered ? reward_encode_rendered(rm->ds, rm->tok, r->prompt,
                                                        r->items[i].text, T, &s->toks, NULL, e,
                                                        sizeof e)
                               : reward_encode(rm->ds, rm->tok, prefix, r->prompt,
                                               r->items[i].text, T, &s->toks, NULL, e, sizeof e))
            return util_err(c->err, c->errlen, "%s: ranking %lld (prompt %lld): %s", rm->tr.db_path,
                            (long long)r->id, (long long)r->prompt_id, e);
        set_push_item(s, off, ranks[i]);
        s->hash = data_hash_u64(data_hash_u64(s->hash, (uint64_t)r->items[i].completion_id),
                                (uint64_t)ranks[i]);
        s->hash = data_hash_bytes(s->hash, s->toks.ids + off,
                                  (size_t)(s->toks.n - (size_t)off) * sizeof(int32_t));
    }
    return 0;
}

static int load_split(Rm *rm, const char *split, RmSet *set, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    set->hash = DATA_HASH_INIT;
    LoadCtx c = {rm, set, err, errlen};
    int rc = store_each_ranking(rm->tr.db, split, load_ranking, &c, err, errlen);
    return rc ? -1 : 0;
}

static int query_max_ranking_id(Rm *rm, int64_t *out, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    sqlite3 *db = store_sqlite(rm->tr.db);
    *out = 0;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM rankings", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        util_err(err, errlen, "%s: reading rankings: %s", rm->tr.db_path, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

// Ranking index at global position p (epoch p / n, a fixed shuffle per epoch).
static int64_t ranking_at(Rm *rm, int64_t p) {
    int64_t n = rm->train.n, e = p / n, i = p % n;
    if (e != rm->perm_epoch) {
        Rng r;
        rng_init(&r, data_hash_u64(data_hash_u64(DATA_HASH_INIT,
                                                 (uint64_t)config_get_int(rm->cfg, "train.seed")),
                                   (uint64_t)e));
        for (int64_t j = 0; j < n; j++) rm->perm[j] = j;
        for (int64_t j = n - 1; j > 0; j--) {
            int64_t q = (int64_t)rng_below(&r, (uint64_t)j + 1), t = rm->perm[j];
            rm->perm[j] = rm->perm[q]; rm->perm[q] = t;
        }
        rm->perm_epoch = e;
    }
    return rm->perm[i];
}

// Fills the micro-batch with the items of rankings idx[0..nr) (their sequences' last T tokens).
static ModelBatch fill_batch(Rm *rm, const RmSet *s, const int64_t *idx, int nr) {
    int B = 0, T = 1;
    for (int j = 0; j < nr; j++) {
        const RmRank *r = &s->r[idx[j]];
        for (int i = 0; i < r->k; i++) {
            int len = s->it[r->first + i].len;
            if (len > rm->T) len = rm->T;
            if (len > T) T = len;
        }
    }
    for (int j = 0; j < nr; j++) {
        const RmRank *r = &s->r[idx[j]];
        for (int i = 0; i < r->k; i++, B++) {
            const RmItem *it = &s->it[r->first + i];
            int len = it->len > rm->T ? rm->T : it->len;
            int32_t *row = rm->tokens + (size_t)B * T;
            memcpy(row, s->toks.ids + it->off + (it->len - len), (size_t)len * sizeof(int32_t));
            memset(row + len, 0, (size_t)(T - len) * sizeof(int32_t));
            rm->lengths[B] = len;
        }
    }
    return (ModelBatch){.B = B, .T = T, .tokens = rm->tokens, .lengths = rm->lengths};
}

typedef struct {
    double loss;             // sum over rankings
    int64_t rankings, pairs;
    double correct, margin;
    int64_t pairs_k[REWARD_MAX_K + 1];
    double correct_k[REWARD_MAX_K + 1];
} Stats;

static void stats_add(Stats *st, const RmSet *s, const RmRank *r, const float *scores,
                      double loss) {
    int ranks[REWARD_MAX_K];
    for (int i = 0; i < r->k; i++) ranks[i] = s->it[r->first + i].rank;
    double c = 0, m = 0;
    int64_t p = reward_pair_stats(scores, ranks, r->k, &c, &m);
    st->loss += loss; st->rankings++; st->pairs += p; st->correct += c; st->margin += m;
    st->pairs_k[r->k] += p; st->correct_k[r->k] += c;
}

// Sums the ranks' statistics (and their stop flags) so that every rank holds the global ones.
static void stats_reduce(Dist *d, Stats *st, int *stop) {
    if (d->size == 1) return;
    enum { K1 = REWARD_MAX_K + 1 };
    double x[6 + 2 * K1];
    x[0] = st->loss;
    x[1] = (double)st->rankings;
    x[2] = (double)st->pairs;
    x[3] = st->correct;
    x[4] = st->margin;
    x[5] = stop ? *stop : 0;
    for (int k = 0; k < K1; k++) {
        x[6 + k] = (double)st->pairs_k[k];
        x[6 + K1 + k] = st->correct_k[k];
    }
    dist_allreduce_sum_double(d, x, 6 + 2 * K1);
    st->loss = x[0];
    st->rankings = (int64_t)x[1];
    st->pairs = (int64_t)x[2];
    st->correct = x[3];
    st->margin = x[4];
    if (stop) *stop = x[5] > 0;
    for (int k = 0; k < K1; k++) {
        st->pairs_k[k] = (int64_t)x[6 + k];
        st->correct_k[k] = x[6 + K1 + k];
    }
}

// This rank's share [*lo, *hi) of n items: contiguous, sizes differ by at most one.
static void rank_share(const Dist *d, int64_t n, int64_t *lo, int64_t *hi) {
    *lo = n * d->rank / d->size;
    *hi = n * (d->rank + 1) / d->size;
}

// Runs the rankings idx[0..nr) of set s in micro-batches. With grad_scale > 0 also the backward of
// grad_scale * (sum of their losses), and then a stop request (cli_stop_signal) ends it between
// two micro-batches: 1, the gradients incomplete. Adds to *st. 0 done, -1 error.
static int run_rankings(Rm *rm, const RmSet *s, const int64_t *idx, int64_t nr, double grad_scale,
                        Stats *st, char *err, size_t errlen) {
    int64_t j0 = 0;
    while (j0 < nr) {
        if (grad_scale > 0 && cli_stop_signal()) return 1;   // training: a stop drops the step
        int rows = 0, cnt = 0;
        while (j0 + cnt < nr && rows + s->r[idx[j0 + cnt]].k <= rm->max_rows)
            rows += s->r[idx[j0 + cnt++]].k;
        if (cnt == 0)
            return util_err(err, errlen, "ranking %lld has %d completions, more than a batch of %d",
                            (long long)s->r[idx[j0]].id, s->r[idx[j0]].k, rm->max_rows);
        ModelBatch mb = fill_batch(rm, s, idx + j0, cnt);
        if (reward_forward(&rm->model, &mb, rm->values, rm->scores, err, errlen)) return -1;
        int row = 0;
        for (int j = 0; j < cnt; j++) {
            const RmRank *r = &s->r[idx[j0 + j]];
            int ranks[REWARD_MAX_K];
            for (int i = 0; i < r->k; i++) ranks[i] = s->it[r->first + i].rank;
            double loss = reward_kwise_loss(rm->scores + row, ranks, r->k, rm->dscores + row, NULL);
            for (int i = 0; i < r->k; i++) rm->dscores[row + i] *= (float)grad_scale;
            stats_add(st, s, r, rm->scores + row, loss);
            row += r->k;
        }
        if (grad_scale > 0) reward_backward(&rm->model, &mb, rm->dscores, rm->dvalues);
        j0 += cnt;
    }
    return 0;
}

static int evaluate(Rm *rm, const RmSet *s, Stats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    int64_t n = s->n, maxr = config_get_int(rm->cfg, "eval.max_rankings"), lo, hi;
    if (maxr && n > maxr) n = maxr;
    rank_share(&rm->dist, n, &lo, &hi);   // each rank scores its share; the sums are reduced
    int64_t *idx = MALLOC_CHECK((size_t)(hi > lo ? hi - lo : 1) * sizeof(int64_t));
    for (int64_t i = lo; i < hi; i++) idx[i - lo] = i;
    int rc = run_rankings(rm, s, idx, hi - lo, 0.0, st, err, errlen);
    free(idx);
    if (rc == 0) stats_reduce(&rm->dist, st, NULL);
    return rc;
}

static int log_stats(Rm *rm, const char *prefix, const Stats *st, int64_t step, char *err,
                     size_t errlen) {
    if (!dist_main(&rm->dist)) return 0;
    char name[64];
    double acc = st->pairs ? st->correct / st->pairs : NAN;
    snprintf(name, sizeof name, "%s/loss", prefix);
    if (store_add_metric(rm->tr.db, rm->tr.run_id, step, name,
                         st->rankings ? st->loss / st->rankings : NAN, err, errlen))
        return -1;
    snprintf(name, sizeof name, "%s/accuracy", prefix);
    if (store_add_metric(rm->tr.db, rm->tr.run_id, step, name, acc, err, errlen)) return -1;
    snprintf(name, sizeof name, "%s/margin", prefix);
    if (store_add_metric(rm->tr.db, rm->tr.run_id, step, name,
                         st->pairs ? st->margin / st->pairs : NAN, err, errlen))
        return -1;
    for (int k = 2; k <= REWARD_MAX_K; k++) {
        if (!st->pairs_k[k]) continue;
        snprintf(name, sizeof name, "%s/accuracy_k%d", prefix, k);
        if (store_add_metric(rm->tr.db, rm->tr.run_id, step, name,
                             st->correct_k[k] / st->pairs_k[k], err, errlen))
            return -1;
    }
    return 0;
}

static void print_stats(const char *what, const Stats *st, int64_t step) {
    char byk[512] = "";
    size_t o = 0;
    int kinds = 0;
    for (int k = 2; k <= REWARD_MAX_K; k++) kinds += st->pairs_k[k] > 0;
    if (kinds > 1)
        for (int k = 2; k <= REWARD_MAX_K && o + 32 < sizeof byk; k++)
            if (st->pairs_k[k])
                o += (size_t)snprintf(byk + o, sizeof byk - o, " K=%d %.3f", k,
                                      st->correct_k[k] / st->pairs_k[k]);
    fprintf(stderr, "reward: step %lld: %s loss %.4f accuracy %.4f margin %.3f (%lld rankings, "
            "%lld pairs)%s%s\n",
            (long long)step, what, st->rankings ? st->loss / st->rankings : NAN,
            st->pairs ? st->correct / st->pairs : NAN, st->pairs ? st->margin / st->pairs : NAN,
            (long long)st->rankings, (long long)st->pairs, kinds > 1 ? "; by K:" : "", byk);
}

static const char *tokenizer_dir(Rm *rm) {
    const char *t = config_get_string(rm->cfg, "model.tokenizer");
    return t[0] ? t : config_get_string(rm->cfg, "model.init");
}

// The adapters that train, or NULL when the whole model does.
static Lora *lora_of(Rm *rm) { return rm->use_lora ? &rm->lora : NULL; }

static int save_last(Rm *rm, char *err, size_t errlen) {
    if (!trainer_same_trained(&rm->tr, &rm->model, lora_of(rm)))
        return util_err(err, errlen, "step %lld: the ranks' weights differ", (long long)rm->step);
    if (!dist_main(&rm->dist)) return 0;
    CkptTrainerState st;
    trainer_state_init(&st, rm->step, &rm->rng);
    if (ckpt_state_set_int(&st, "config_hash", (int64_t)trainer_hash_u64(&rm->tr), err, errlen) ||
        ckpt_state_set_int(&st, "run_id", rm->tr.run_id, err, errlen) ||
        ckpt_state_set_int(&st, "data.max_ranking_id", rm->max_ranking_id, err, errlen) ||
        ckpt_state_set_int(&st, "data.fingerprint", (int64_t)rm->train.hash, err, errlen) ||
        ckpt_state_set_int(&st, "data.train_rankings", rm->train.n, err, errlen) ||
        (rm->has_bias && ckpt_state_set_float(&st, "reward_bias", rm->bias, err, errlen)))
        return -1;
    int32_t eot = tok_eot(rm->tok);
    CkptSaveOptions so = {.tokenizer_dir = tokenizer_dir(rm),
                          .state = &st,
                          .has_token_ids = eot >= 0,
                          .bos_token_id = eot,
                          .eos_token_id = eot};
    if (rm->use_lora)
        return adapter_save(rm->tr.last_dir, &rm->lora, rm->base_name, 1, tokenizer_dir(rm), &st,
                            err, errlen);
    return ckpt_save(rm->tr.last_dir, &rm->model, &so, err, errlen);
}

static int import_files(void *ctx, char *err, size_t errlen) {
    Rm *rm = ctx;
    const char *const *files;
    int64_t n = config_get_list(rm->cfg, "data.import", &files);
    ImportOptions o = {.valid_frac = config_get_double(rm->cfg, "data.valid_percent") / 100.0};
    for (int64_t i = 0; i < n && dist_main(&rm->dist); i++) {
        ImportResult r;
        if (rm_import_file(rm->tr.db, files[i], &o, &r, err, errlen)) return -1;
        if (!r.already)
            fprintf(stderr, "reward: imported %lld rankings from %s\n", (long long)r.rankings,
                    files[i]);
    }
    return 0;
}


// The settings read once: paths, batch shapes, threads; the workspace opened and data.import
// imported by rank 0, then opened by the other ranks to read.
static int setup_run(Rm *rm, char *err, size_t errlen) {
    static const TrainerSpec spec = {.stage = "reward",
                                     .program = "reward train",
                                     .result = "final",
                                     .required = {{"model.init", "an SFT checkpoint"}}};
    if (trainer_init(&rm->tr, rm->cfg, &rm->dist, &spec, err, errlen)) return -1;
    rm->bs = (int)config_get_int(rm->cfg, "train.batch_size");
    rm->micro = (int)config_get_int(rm->cfg, "train.micro_batch");
    rm->total_steps = config_get_int(rm->cfg, "train.steps");
    rm->perm_epoch = -1;
    return trainer_open_store(&rm->tr, 1, import_files, rm, err, errlen);
}

// The model's shape from `from` (its LM head dropped, a score head added), the tokenizer and
// the prompt rendering. *had_score: `from` holds a score head.
static int load_model_config(Rm *rm, const char *from, ModelConfig *c, int *had_score, char *err,
                             size_t errlen) {
    if (adapter_load_config(from, c, NULL, err, errlen)) return -1;
    *had_score = c->score_head;
    c->lm_head = 0;      // the unembedding is removed: ln_f's output feeds only the score
    c->score_head = 1;
    if (tok_load(&rm->tok, tokenizer_dir(rm), err, errlen)) return -1;
    if (ckpt_check_tokenizer(from, c->vocab_size, tokenizer_dir(rm), tok_vocab_size(rm->tok), err,
                             errlen))
        return -1;
    DatasetOptions dopt = {.prompt_template = config_get_string(rm->cfg, "data.prompt_template"),
                           .response_prefix = config_get_string(rm->cfg, "data.response_prefix"),
                           .max_tokens = c->max_seq_len};
    return dataset_create(&rm->ds, rm->tok, &dopt, err, errlen);
}

// The rankings, fixed at the first start (ranking ids up to the highest one then; resuming checks
// their fingerprint).
static int load_rankings(Rm *rm, int resumed, const CkptTrainerState *st, char *err,
                         size_t errlen) {
    if (resumed) {
        if (ckpt_state_get_int(st, "data.max_ranking_id", &rm->max_ranking_id, err, errlen))
            return -1;
    } else if (dist_main(&rm->dist) && query_max_ranking_id(rm, &rm->max_ranking_id, err, errlen))
        return -1;
    // rank 0's view: labeling may add rankings while the ranks read
    if (!resumed) dist_broadcast(&rm->dist, &rm->max_ranking_id, sizeof rm->max_ranking_id);
    if (load_split(rm, "train", &rm->train, err, errlen) ||
        load_split(rm, "valid", &rm->valid, err, errlen))
        return -1;
    if (!dist_identical(&rm->dist, &rm->train.hash, sizeof rm->train.hash))
        return util_err(err, errlen, "the ranks read different training rankings from %s",
                        rm->tr.db_path);
    if (rm->train.n == 0)
        return util_err(err, errlen,
                        "%s has no training rankings (rankings of prompts in the train split with "
                        "at least one untied pair)%s",
                        rm->tr.db_path,
                        rm->train.n_tied ? "; every ranking there is all ties" : "");
    int64_t fp;
    if (!resumed) return 0;
    if (ckpt_state_get_int(st, "data.fingerprint", &fp, err, errlen)) return -1;
    if ((uint64_t)fp != rm->train.hash)
        return util_err(err, errlen,
                        "the training rankings in %s changed since this run started (deleted or "
                        "edited): --set train.resume=false to start over",
                        rm->tr.db_path);
    return 0;
}

// The sequence length, the rows of a micro-batch and the step count, from the rankings.
static int setup_shapes(Rm *rm, const ModelConfig *c, char *err, size_t errlen) {
    int max_len = rm->train.max_len > rm->valid.max_len ? rm->train.max_len : rm->valid.max_len;
    int64_t T = config_get_int(rm->cfg, "train.seq_len");
    if (T == 0) T = max_len;
    if (T > c->max_seq_len)
        return util_err(err, errlen, "train.seq_len %lld exceeds the model's context %d",
                        (long long)T, c->max_seq_len);
    rm->T = (int)T;
    int max_k = rm->train.max_k > rm->valid.max_k ? rm->train.max_k : rm->valid.max_k;
    rm->max_rows = rm->micro > max_k ? rm->micro : max_k;
    if (!rm->total_steps)
        rm->total_steps =
            (config_get_int(rm->cfg, "train.epochs") * rm->train.n + rm->bs - 1) / rm->bs;
    return 0;
}

static void init_score(Rm *rm, const ModelConfig *c);

// The model's weights from `from`; a score head `from` lacks starts as model.score_init says.
static int init_model(Rm *rm, const char *from, const ModelConfig *c, int resumed, int had_score,
                      char *err, size_t errlen) {
    LoraConfig lc;
    if (adapter_settings(rm->cfg, c, 1, &lc, err, errlen)) return -1;
    rm->use_lora = lc.r > 0;
    if (rm->use_lora && config_get_double(rm->cfg, "lora.dropout") != 0.0)
        return util_err(err, errlen, "lora.dropout: reward train applies no dropout; set it to 0");
    if (model_init(&rm->model, c, rm->max_rows, rm->T, rm->use_lora ? MODEL_TRAIN_FROZEN : 1,
                   dist_main(&rm->dist), err, errlen))
        return -1;
    if (adapter_load_base(from, &rm->model, resumed && !rm->use_lora ? 0 : CKPT_ALLOW_MISSING_SCORE,
                          rm->use_lora ? adapter_base_dtype(rm->cfg) : LOWP_FP32, err, errlen))
        return -1;
    if (!(resumed && !rm->use_lora) && !had_score) init_score(rm, c);
    if (!rm->use_lora) return 0;
    // the adapters, and the score head as a trained copy (B = 0: the model is the base); a
    // resume loads last/'s
    lc.train_score = 1;
    adapter_base_name(config_get_string(rm->cfg, "model.init"), rm->base_name,
                      sizeof rm->base_name);
    if (lora_init(&rm->lora, &lc, c, (int64_t)rm->max_rows * rm->T, 1, err, errlen) ||
        lora_attach(&rm->model, &rm->lora, err, errlen))
        return -1;
    lora_init_weights(&rm->lora, (uint64_t)config_get_int(rm->cfg, "train.seed"),
                      rm->model.params.scorew);
    lora_bias_from_base(&rm->lora, &rm->model);
    return 0;
}

// A bf16 base (lora.base_dtype) has freed its fp32 matrices: the merged reward model is
// model.init's fp32 weights with the adapter folded in, as PEFT's merge does (the score head is
// the adapter's trained copy). Nothing for a float32 base.
static int reload_fp32_base(Rm *rm, char *err, size_t errlen) {
    if (model_lowp_format(&rm->model) == LOWP_FP32) return 0;
    ModelConfig c = rm->model.config;
    model_free(&rm->model);
    if (model_init(&rm->model, &c, rm->max_rows, rm->T, 0, 0, err, errlen) ||
        adapter_load_weights(config_get_string(rm->cfg, "model.init"), &rm->model,
                             CKPT_ALLOW_MISSING_SCORE, err, errlen))
        return -1;
    return 0;
}

// A score head model.init lacks: model.score_init's.
static void init_score(Rm *rm, const ModelConfig *c) {
    if (!strcmp(config_get_string(rm->cfg, "model.score_init"), "normal")) {
        Rng r;
        rng_init(&r,
                 data_hash_u64(DATA_HASH_INIT, (uint64_t)config_get_int(rm->cfg, "train.seed")));
        rng_fill_normal(&r, rm->model.params.scorew, c->n_embd, 0.0f,
                        1.0f / sqrtf((float)c->n_embd));
    } else memset(rm->model.params.scorew, 0, (size_t)c->n_embd * sizeof(float));
}

// One micro-batch's tokens, values and scores with their gradients, and the ranking order.
static void alloc_buffers(Rm *rm) {
    size_t rows = (size_t)rm->max_rows;
    rm->tokens = CALLOC_CHECK(rows * (size_t)rm->T, sizeof(int32_t));
    rm->lengths = CALLOC_CHECK(rows, sizeof(int32_t));
    rm->values = CALLOC_CHECK(rows * (size_t)rm->T, sizeof(float));
    rm->dvalues = CALLOC_CHECK(rows * (size_t)rm->T, sizeof(float));
    rm->scores = CALLOC_CHECK(rows, sizeof(float));
    rm->dscores = CALLOC_CHECK(rows, sizeof(float));
    rm->perm = CALLOC_CHECK((size_t)rm->train.n, sizeof(int64_t));
}

static void print_data_summary(const Rm *rm) {
    int64_t ntr = 0;
    for (int64_t i = 0; i < rm->train.ni; i++) ntr += rm->train.it[i].len > rm->T;
    fprintf(stderr, "reward: %lld training rankings (%lld pairs, K up to %d), %lld held out "
            "(%lld pairs)%s%s\n",
            (long long)rm->train.n, (long long)rm->train.pairs, rm->train.max_k,
            (long long)rm->valid.n, (long long)rm->valid.pairs,
            rm->train.n_tied + rm->valid.n_tied ? "; rankings that are all ties skipped" : "",
            ntr ? "; some sequences longer than train.seq_len keep their end" : "");
    if (rm->valid.n == 0)
        fprintf(stderr, "reward: warning: no held-out rankings (no prompts in the valid split): no "
                        "held-out accuracy\n");
}

static int setup(Rm *rm, char *err, size_t errlen) {
    if (setup_run(rm, err, errlen)) return -1;
    CkptTrainerState st;
    int resumed = trainer_try_resume(&rm->tr, rm->tr.last_dir, &st, err, errlen);
    if (resumed < 0) return -1;
    // with adapters the base is always model.init (a resume loads last/'s adapters)
    const char *from = resumed && !adapter_on(rm->cfg) ? rm->tr.last_dir
                                                       : config_get_string(rm->cfg, "model.init");
    ModelConfig c;
    int had_score;
    if (load_model_config(rm, from, &c, &had_score, err, errlen)) return -1;
    rm->model.config = c;   // read by the loader (context length)
    if (load_rankings(rm, resumed, &st, err, errlen) || setup_shapes(rm, &c, err, errlen) ||
        init_model(rm, from, &c, resumed, had_score, err, errlen))
        return -1;
    alloc_buffers(rm);
    if (trainer_begin_or_resume(&rm->tr, resumed, &st, &rm->model, lora_of(rm), &rm->step,
                                &rm->rng, rm->total_steps, err, errlen))
        return -1;
    if (dist_main(&rm->dist)) print_data_summary(rm);
    return 0;
}

static void teardown(Rm *rm) {
    set_free(&rm->train);
    set_free(&rm->valid);
    void *bufs[] = {rm->perm, rm->tokens, rm->lengths, rm->values, rm->dvalues, rm->scores,
                    rm->dscores};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    dataset_free(rm->ds);
    tok_free(rm->tok);
    model_free(&rm->model);
    lora_free(&rm->lora);
    trainer_close(&rm->tr);
    config_free(rm->cfg);
}

// Mean score of the bias examples under the current weights: demonstrations, or the completions
// of the training rankings. *n receives how many were scored (0: none, no bias).
typedef struct { Rm *rm; RmSet *set; int64_t max; char *err; size_t errlen; } DemoCtx;
static int add_demo(const StoreDemonstration *d, void *ctx) {
    DemoCtx *c = ctx;
    if (c->set->ni >= c->max) return 1;
    int64_t off = (int64_t)c->set->toks.n;
    char e[512];
    int T = c->rm->model.config.max_seq_len;
    if (d->prompt_rendered ? reward_encode_rendered(c->rm->ds, c->rm->tok, d->prompt, d->response,
                                                    T, &c->set->toks, NULL, e, sizeof e)
                           : reward_encode(c->rm->ds, c->rm->tok,
                                           config_get_string(c->rm->cfg, "data.response_prefix"),
                                           d->prompt, d->response, T, &c->set->toks, NULL, e,
                                           sizeof e))
        return util_err(c->err, c->errlen, "%s: demonstration %lld: %s", c->rm->tr.db_path,
                        (long long)d->id, e);
    set_push_item(c->set, off, 1);
    return 0;
}

static int mean_score(Rm *rm, const char **what, double *mean, int64_t *n, char *err,
                      size_t errlen) {
    const char *src = config_get_string(rm->cfg, "bias.source");
    int64_t maxn = config_get_int(rm->cfg, "bias.max_examples");
    *n = 0; *mean = 0;
    if (!strcmp(src, "none")) return 0;
    RmSet demos = {0};
    const RmSet *s = &demos;
    if (!strcmp(src, "auto") || !strcmp(src, "demonstrations")) {
        DemoCtx c = {rm, &demos, maxn, err, errlen};
        if (store_each_demonstration(rm->tr.db, NULL, add_demo, &c, err, errlen) < 0) {
            set_free(&demos);
            return -1;
        }
        *what = "demonstrations";
        if (demos.ni == 0 && !strcmp(src, "demonstrations")) {
            set_free(&demos);
            return util_err(err, errlen, "bias.source is demonstrations but %s has none",
                            rm->tr.db_path);
        }
    }
    if (demos.ni == 0) { s = &rm->train; *what = "training completions"; }
    int64_t cnt = s->ni < maxn ? s->ni : maxn, lo, hi;
    rank_share(&rm->dist, cnt, &lo, &hi);   // each rank scores its share; the sum is reduced
    double sum = 0;
    for (int64_t i0 = lo; i0 < hi; i0 += rm->max_rows) {
        int b = (int)(hi - i0 < rm->max_rows ? hi - i0 : rm->max_rows), T = 1;
        for (int j = 0; j < b; j++) {
            int l = s->it[i0 + j].len > rm->T ? rm->T : s->it[i0 + j].len;
            if (l > T) T = l;
        }
        for (int j = 0; j < b; j++) {
            const RmItem *it = &s->it[i0 + j];
            int len = it->len > rm->T ? rm->T : it->len;
            int32_t *row = rm->tokens + (size_t)j * T;
            memcpy(row, s->toks.ids + it->off + (it->len - len), (size_t)len * sizeof(int32_t));
            memset(row + len, 0, (size_t)(T - len) * sizeof(int32_t));
            rm->lengths[j] = len;
        }
        ModelBatch mb = {.B = b, .T = T, .tokens = rm->tokens, .lengths = rm->lengths};
        if (reward_forward(&rm->model, &mb, rm->values, rm->scores, err, errlen)) {
            set_free(&demos);
            return -1;
        }
        for (int j = 0; j < b; j++) sum += rm->scores[j];
    }
    set_free(&demos);
    dist_allreduce_sum_double(&rm->dist, &sum, 1);
    *n = cnt;
    *mean = cnt ? sum / (double)cnt : 0.0;
    return 0;
}

static int finish(Rm *rm, char *err, size_t errlen) {
    int main_rank = dist_main(&rm->dist);
    // held-out test split, when there is one
    RmSet test;
    if (load_split(rm, "test", &test, err, errlen)) { set_free(&test); return -1; }
    if (test.n) {
        if (test.max_k > rm->max_rows) {
            if (main_rank)
                fprintf(stderr,
                        "reward: test rankings with K=%d exceed the batch (%d): not evaluated\n",
                        test.max_k, rm->max_rows);
        } else {
            Stats st;
            if (evaluate(rm, &test, &st, err, errlen) ||
                log_stats(rm, "test", &st, rm->step, err, errlen)) {
                set_free(&test);
                return -1;
            }
            if (main_rank) print_stats("test", &st, rm->step);
        }
    }
    set_free(&test);
    // the bias: demonstrations (or the training completions) score 0 on average
    const char *what = "";
    double mean;
    int64_t n;
    if (mean_score(rm, &what, &mean, &n, err, errlen)) return -1;
    // Llama-style: no bias anywhere after the final RMSNorm; a constant reward offset does not
    // change PPO's advantages (the value model absorbs it), so the scores stay as trained
    int foldable = reward_can_fold_bias(&rm->model);
    rm->bias = n && foldable ? -mean : 0.0;
    rm->has_bias = 1;
    if (save_last(rm, err, errlen)) return -1;
    if (rm->use_lora) {   // final/ is the merged reward model: the bias goes into its weights
        if (lora_attach(&rm->model, NULL, err, errlen) || reload_fp32_base(rm, err, errlen))
            return -1;
        lora_merge(&rm->lora, &rm->model);
    }
    if (n && !foldable) {
        if (main_rank)
            fprintf(stderr, "reward: no bias folded: the model's final RMSNorm and score.weight "
                    "have no bias to carry it (the %lld %s have mean score %.6f)\n",
                    (long long)n, what, mean);
    } else if (n) {
        if (reward_fold_bias(&rm->model, rm->bias, err, errlen)) return -1;
        if (main_rank)
            fprintf(stderr,
                    "reward: bias %+.6f folded into ln_f.bias: the %lld %s had mean score %.6f\n",
                    rm->bias, (long long)n, what, mean);
    } else if (main_rank)
        fprintf(stderr, "reward: no bias applied (bias.source %s)\n",
                config_get_string(rm->cfg, "bias.source"));
    if (main_rank && (store_add_metric(rm->tr.db, rm->tr.run_id, rm->step, "final/bias", rm->bias,
                                       err, errlen) ||
                      store_add_metric(rm->tr.db, rm->tr.run_id, rm->step, "final/bias_examples",
                                       (double)n, err, errlen)))
        return -1;
    int32_t eot = tok_eot(rm->tok);
    CkptSaveOptions so = {.tokenizer_dir = tokenizer_dir(rm),
                          .has_token_ids = eot >= 0,
                          .bos_token_id = eot,
                          .eos_token_id = eot};
    trainer_save_format(rm->cfg, &so);
    if (main_rank && ckpt_save(rm->tr.final_dir, &rm->model, &so, err, errlen)) return -1;
    if (n && foldable) {   // the check: the same examples now score 0 on average (float rounding)
        double after;
        int64_t n2;
        if (mean_score(rm, &what, &after, &n2, err, errlen)) return -1;
        if (main_rank)
            fprintf(stderr, "reward: after the bias the %s score %.6f on average\n", what, after);
    }
    return main_rank
               ? store_set_run_checkpoint(rm->tr.db, rm->tr.run_id, rm->tr.final_dir, err, errlen)
               : 0;
}

// The step's metrics in the workspace (rank 0); dt: the step's seconds.
static int record_step(Rm *rm, const Stats *st, double loss, double acc, float lr, float norm,
                       double dt, char *err, size_t errlen) {
    Store *db = rm->tr.db;
    int64_t id = rm->tr.run_id, step = rm->step;
    if (store_add_metric(db, id, step, "train/loss", loss, err, errlen) ||
        store_add_metric(db, id, step, "train/accuracy", acc, err, errlen) ||
        store_add_metric(db, id, step, "train/margin", st->pairs ? st->margin / st->pairs : NAN,
                         err, errlen) ||
        store_add_metric(db, id, step, "train/lr", lr, err, errlen) ||
        store_add_metric(db, id, step, "train/grad_norm", norm, err, errlen) ||
        store_add_metric(db, id, step, "train/comparisons_per_s", (double)st->pairs / dt, err,
                         errlen))
        return -1;
    if (rm->dist.size > 1 &&
        store_add_metric(db, id, step, "train/allreduce_s", rm->dist.allreduce_s, err, errlen))
        return -1;
    return 0;
}

static int train(Rm *rm, char *err, size_t errlen) {
    Config *cfg = rm->cfg;
    AdamWConfig oc = trainer_adamw(cfg, "train.lr");
    LrSchedule sch = trainer_schedule(cfg, rm->total_steps);
    int64_t eval_every = config_get_int(cfg, "eval.every"), save_every = trainer_save_every(cfg);
    int64_t log_every = config_get_int(cfg, "log.every");
    CliProgress pr;
    cli_progress_start(&pr, stderr, "reward", rm->total_steps);
    cli_progress_resume(&pr, rm->step);
    double t_start = util_time_s();
    int64_t pairs_since = 0, tokens_since = 0, first_step = rm->step;
    int64_t *idx = MALLOC_CHECK((size_t)rm->bs * sizeof(int64_t)), lo, hi;
    int rc = 0, main_rank = dist_main(&rm->dist);
    // the ranks agree on stopping: a signal seen by any rank drops the same step on all
    int stop = rm->dist.size == 1 && cli_stop_signal();
    rank_share(&rm->dist, rm->bs, &lo, &hi);
    while (rm->step < rm->total_steps && !stop) {
        double t0 = util_time_s();
        for (int j = 0; j < rm->bs; j++) {
            idx[j] = ranking_at(rm, rm->step * rm->bs + j);
            // tokens through the model (global: every rank knows them)
            const RmRank *r = &rm->train.r[idx[j]];
            for (int i = 0; i < r->k; i++) {
                int32_t len = rm->train.it[r->first + i].len;
                tokens_since += len < rm->T ? len : rm->T;
            }
        }
        trainer_zero_grad(&rm->model, lora_of(rm));
        Stats st = {0};
        // the step's loss is the mean over its rankings: each ranking's gradient scaled by 1/bs;
        // this rank computes rankings [lo, hi) of the step, one allreduce sums the shares
        // A stop request is looked at between micro-batches (rm->max_rows rows each), so that a
        // step of any size ends within one: the unfinished step is dropped, redone on resume
        // (its rankings follow from the step number). A signal seen by any rank stops all.
        if (run_rankings(rm, &rm->train, idx + lo, hi - lo, 1.0 / rm->bs, &st, err, errlen) < 0) {
            rc = -1;
            break;
        }
        stop = cli_stop_signal() != 0;
        if (rm->dist.size > 1) {
            trainer_allreduce_grads(&rm->dist, &rm->model, lora_of(rm));
            stats_reduce(&rm->dist, &st, &stop);
        }
        if (stop) break;   // the step is not applied
        double loss = st.loss / st.rankings, acc = st.pairs ? st.correct / st.pairs : NAN;
        float lr = lr_at(&sch, oc.lr, rm->step);
        float norm = trainer_adamw_step(&rm->model, lora_of(rm), &oc, lr, rm->step + 1);
        rm->step++;
        if (!isfinite(loss) || !isfinite(norm)) {
            rc = util_err(err, errlen, "step %lld: the loss or gradient is not finite (loss %g, "
                          "grad norm %g); lower train.lr",
                          (long long)rm->step, loss, (double)norm);
            break;
        }
        double dt = util_time_s() - t0;
        pairs_since += st.pairs;
        if (main_rank && record_step(rm, &st, loss, acc, lr, norm, dt, err, errlen)) {
            rc = -1;
            break;
        }
        char extra[160];
        double el = util_time_s() - t_start;
        snprintf(extra, sizeof extra, "loss %.4f acc %.3f lr %.2e %.0f comparisons/s", loss, acc,
                 lr, el > 0 ? pairs_since / el : 0.0);
        if (!main_rank) {}
        else if (pr.tty) cli_progress_update(&pr, rm->step, extra);
        else if (rm->step % log_every == 0 || rm->step == rm->total_steps ||
                 rm->step == first_step + 1) {
            char f[160];
            cli_progress_format(&pr, rm->step, f, sizeof f);
            fprintf(stderr, "reward: step %s %s\n", f, extra);
        }
        int last = rm->step == rm->total_steps;
        if ((rm->step % eval_every == 0 || last) && rm->valid.n) {
            Stats vs;
            if (evaluate(rm, &rm->valid, &vs, err, errlen) ||
                log_stats(rm, "valid", &vs, rm->step, err, errlen)) {
                rc = -1;
                break;
            }
            if (pr.tty && main_rank) cli_progress_end(&pr);
            if (main_rank) print_stats("held-out", &vs, rm->step);
        }
        // the last step's save comes after the bias (finish), with the bias in the trainer state
        if (rm->step % save_every == 0 && !last && save_last(rm, err, errlen)) { rc = -1; break; }
    }
    free(idx);
    if (pr.tty && main_rank) cli_progress_end(&pr);
    if (rc) return rc;
    double el = util_time_s() - t_start;
    if (main_rank && rm->step > first_step)
        fprintf(stderr, "reward: trained %lld steps, %lld tokens in %.2f s: %.1f tokens/s\n",
                (long long)(rm->step - first_step), (long long)tokens_since, el,
                el > 0 ? (double)tokens_since / el : 0.0);
    if (stop) return save_last(rm, err, errlen) ? -1 : trainer_stopped(&rm->tr, "step", rm->step);
    return finish(rm, err, errlen);
}

int cmd_train(int argc, char **argv) {
    Rm rm;
    memset(&rm, 0, sizeof rm);
    dist_init(&rm.dist, &argc, &argv);
    int early = trainer_config(&rm.cfg, &rm.dist, RM_SCHEMA, "reward train", usage, argc, argv);
    if (early >= 0) return early;
    char err[1024];
    int rc = setup(&rm, err, sizeof err), main_rank = dist_main(&rm.dist);
    if (rc == 0) {
        if (main_rank && rm.dist.size > 1)
            fprintf(stderr,
                    "reward: %d ranks, each computing %s%d of the %d rankings of every step\n",
                    rm.dist.size, rm.bs % rm.dist.size ? "up to " : "",
                    (rm.bs + rm.dist.size - 1) / rm.dist.size, rm.bs);
        if (main_rank)
            fprintf(stderr, "reward: run %lld, %lld steps of %d rankings (micro-batches of up to "
                    "%d sequences of up to %d tokens), config %s\n",
                    (long long)rm.tr.run_id, (long long)rm.total_steps, rm.bs, rm.max_rows, rm.T,
                    rm.tr.hash);
        rc = train(&rm, err, sizeof err);
    }
    int code = trainer_finish(&rm.tr, rc, err);
    if (rc == 0 && main_rank) {
        if (rm.dist.size > 1)
            fprintf(stderr, "reward: %d ranks, weights identical on every rank at every save; "
                    "%.3f s in allreduce (%.4f s per step)\n",
                    rm.dist.size, rm.dist.allreduce_s,
                    rm.step ? rm.dist.allreduce_s / (double)rm.step : 0.0);
        fprintf(stderr, "reward: done: %s (the reward model), %s (resumable state)\n",
                rm.tr.final_dir, rm.tr.last_dir);
    }
    teardown(&rm);
    // the others may wait in an allreduce
    if (rc < 0 && rm.dist.size > 1) dist_abort(&rm.dist, 1);
    dist_finalize(&rm.dist);
    return code;
}
