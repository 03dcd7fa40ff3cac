// dpo: a policy trained straight from preference rankings, without a reward model (Rafailov et
// al. 2023), and its relatives: IPO, conservative DPO (label smoothing) and the reference-free,
// length-normalised SimPO. Reads like a recipe: parse the config, load the policy and the
// workspace's rankings (train split to learn, valid split to measure), compute the frozen
// reference's log-probabilities once and store them, loop (step, log, evaluate, save), write the
// final policy.
//
// One optimizer step takes train.batch_size groups: pairs (a K-wise ranking gives its C(K,2)
// ordered pairs, ties skipped) or, with data.pairs listwise, whole rankings (a Plackett-Luce
// loss). A group's sequences go through the policy in one forward pass (micro-batches pack whole
// groups, up to train.micro_batch sequences); each sequence's log-probability is the sum over its
// response tokens, and the step's loss is the mean over its groups (loss.h). The group order of
// epoch e is a shuffle seeded by (train.seed, e), so step s always sees the same groups: resuming
// needs only the step count. The rankings used are fixed when the run starts (ids up to the
// highest one then; their fingerprint is checked on resume).
//
// The reference (model.ref, default model.init) is run once at a fresh start over every held-out
// completion the evaluations use (all, or those of the first eval.max_groups groups) and every
// training completion the run's steps draw (all of them from one epoch on; the group order is
// known in advance); its log-probabilities go to OUT.DIR/reference_logps.bin,
// which a resumed run reads back (checked against the fingerprint saved in last/), so the
// reference is never loaded again. SimPO needs no reference. Held-out evaluation runs each
// completion once too, then computes the pairs' losses from those numbers.
//
// Outputs: OUT.DIR/last (resumable: weights, AdamW moments, step) and OUT.DIR/final (the policy).
// Metrics, with TRL's names under train/ and valid/: loss, rewards/chosen, rewards/rejected,
// rewards/margins, rewards/accuracies, logps/chosen, logps/rejected. Killed at any moment, the
// same command resumes and ends with the same weights (same thread count). Under MPI every rank
// takes a contiguous share of each step's groups; one allreduce sums the gradients and the
// statistics.
#include "adapter.h"
#include "blas.h"
#include "chat.h"
#include "checkpoint.h"
#include "cli.h"
#include "cmd.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "hash.h"
#include "loss.h"
#include "model.h"
#include "optim.h"
#include "pairs.h"
#include "store.h"
#include "tokenizer.h"
#include "trainer.h"
#include "util.h"
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ConfigEntry DPO_SCHEMA[] = {
    CONFIG_ENTRY("model.init", CONFIG_STRING, "",
                 "policy to start from, usually the SFT model (required)"),
    CONFIG_ENTRY("model.ref", CONFIG_STRING, "",
                 "frozen reference checkpoint (default: model.init; unused by loss.type simpo)"),
    CONFIG_ENTRY("model.tokenizer", CONFIG_STRING, "",
                 "tokenizer directory when model.init has none"),
    TRAINER_ENTRY_OUT_DIR("output directory: last/ (resumable), final/ (the policy) and "
                          "reference_logps.bin (required)"),
    TRAINER_ENTRY_WORKSPACE("workspace database with the rankings (default: OUT.DIR/workspace.db)"),
    CONFIG_ENTRY("data.import", CONFIG_LIST, NULL,
                 "JSONL files imported into the workspace first, as `reward import` reads them: "
                 "pairs {prompt, chosen, rejected}, HH transcripts, K-wise rankings"),
    CONFIG_ENTRY("data.valid_percent", CONFIG_DOUBLE, "5",
                 "share of newly imported prompts put in the valid split", .min = "0", .max = "50"),
    CONFIG_ENTRY("data.pairs", CONFIG_ENUM, "pairwise",
                 "pairwise: every ranking's C(K,2) ordered pairs (ties skipped); listwise: a "
                 "Plackett-Luce loss over each whole ranking",
                 .choices = "pairwise|listwise"),
    CONFIG_ENTRY("data.prompt_template", CONFIG_STRING, DATASET_DEFAULT_PROMPT_TEMPLATE,
                 "prompt rendering (as SFT); exactly one {prompt}"),
    CONFIG_ENTRY("data.chat_template", CONFIG_STRING, "",
                 "chat template for message-list prompts instead of the tokenizer's "
                 "tokenizer_config.json one (a file, or the template itself)"),
    CONFIG_ENTRY("data.response_prefix", CONFIG_STRING, DATASET_DEFAULT_RESPONSE_PREFIX,
                 "text before each response (as SFT)"),
    CONFIG_ENTRY("loss.type", CONFIG_ENUM, "sigmoid",
                 "sigmoid (DPO; cDPO with loss.label_smoothing), ipo, or simpo (reference-free, "
                 "length-normalised)",
                 .choices = "sigmoid|ipo|simpo"),
    CONFIG_ENTRY("loss.beta", CONFIG_DOUBLE, "0.1",
                 "> 0: the implicit reward is beta * (log pi - log pi_ref) (SimPO: beta * mean "
                 "log pi); IPO's target margin is 1/(2 beta)"),
    CONFIG_ENTRY("loss.label_smoothing", CONFIG_DOUBLE, "0",
                 "cDPO: the share of pairs assumed mislabeled, in [0, 0.5) (sigmoid, simpo)"),
    CONFIG_ENTRY("loss.simpo_gamma", CONFIG_DOUBLE, "0.5",
                 "SimPO's target reward margin gamma (loss.type simpo)"),
    CONFIG_ENTRY("train.batch_size", CONFIG_INT, "8",
                 "groups per optimizer step: pairs, or rankings when listwise", .min = "1",
                 .max = "65536"),
    CONFIG_ENTRY("train.micro_batch", CONFIG_INT, "16",
                 "sequences per forward pass (whole groups; at least a group's size)", .min = "1",
                 .max = "65536"),
    TRAINER_ENTRIES_LENGTH("passes over the training pairs when train.steps is 0"),
    TRAINER_ENTRIES_OPTIM("1e-6"),
    TRAINER_ENTRY_SEED("pair order seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_EVAL_EVERY("50", "held-out evaluation every N steps (and at the start and end)"),
    CONFIG_ENTRY("eval.max_groups", CONFIG_INT, "0",
                 "held-out groups (pairs, or rankings) per evaluation (0: all)", .min = "0"),
    TRAINER_ENTRIES_CADENCE,
    ADAPTER_ENTRIES,
    {0}};

static const char *usage =
    "usage: dpo -c CONFIG.yaml [--set KEY=VALUE ...] [--print-config]\n"
    "Trains a policy from the workspace's rankings (train split; the valid split is held out)\n"
    "with DPO, IPO, conservative DPO or SimPO, without a reward model. Writes OUT.DIR/last\n"
    "(resumable), OUT.DIR/final (the policy) and OUT.DIR/reference_logps.bin (the reference's\n"
    "log-probabilities, computed once), and records the run and its metrics in the workspace.\n"
    "Rerun the same command after an interruption to resume. With lora.r > 0 model.init stays\n"
    "frozen and LoRA adapters train (last/ and final/ are PEFT adapter directories). Keys:\n";

typedef struct {
    Dist dist;               // rank 0 writes; every rank computes its share of each step
    Config *cfg;
    Trainer tr;              // OUT.DIR/last and final/ (tr.final_dir), the workspace, the run
    DpoLossConfig loss;
    int bs, max_rows, T;
    int64_t total_steps;
    Model model;             // the policy (with lora.r > 0 its frozen base)
    Lora lora;               // lora.r > 0: the adapters that train
    int use_lora;
    char base_name[4096];    // the adapters' base_model_name_or_path (model.init, absolute)
    Tokenizer *tok;
    Dataset *ds;             // prompt rendering
    ChatTemplate *chat;      // the tokenizer's chat template (data.chat_template), NULL: none
    int chat_loaded;         // chat was looked for (it may be NULL)
    int64_t max_ranking_id;  // rankings used: ids up to this one
    DpoSet train, valid;
    char ref_path[4200];     // OUT.DIR/reference_logps.bin
    int ref_is_start;        // the reference pass just ran the starting policy (model.ref unset)
    int64_t step;
    Rng rng;
    int64_t *perm, perm_epoch;
    int32_t *tokens, *lengths, *targets;   // (max_rows, T), (max_rows), (max_rows, T)
    int64_t *rowseq;                       // (max_rows) the sequence of each row
    float *logp, *dlogp;                   // (max_rows, T)
} Dpo;

// ---------------------------------------------------------------------------------------------
// Running groups through a model

// Fills the micro-batch with sequences seq[0..n) of s: tokens, lengths, and the next-token
// targets over each response.
static ModelBatch fill_batch(Dpo *d, const DpoSet *s, const int64_t *seq, int n) {
    int B = 0, T = 1;
    for (int j = 0; j < n; j++)
        if (s->seq[seq[j]].len > T) T = s->seq[seq[j]].len;
    for (; B < n; B++) {
        const DpoSeq *q = &s->seq[seq[B]];
        int32_t *row = d->tokens + (size_t)B * T, *tg = d->targets + (size_t)B * T;
        memcpy(row, s->toks.ids + q->off, (size_t)q->len * sizeof(int32_t));
        memset(row + q->len, 0, (size_t)(T - q->len) * sizeof(int32_t));
        for (int t = 0; t < T; t++) tg[t] = t >= q->start - 1 && t < q->len - 1 ? row[t + 1] : -1;
        d->lengths[B] = q->len;
    }
    return (ModelBatch){.B = B, .T = T, .tokens = d->tokens, .lengths = d->lengths,
                        .targets = d->targets};
}

// The statistics as one array of doubles (for the allreduce), and back.
enum { STATS_N = 9 };
static void stats_pack(const DpoStats *st, double stop, double *x) {
    double v[STATS_N] = {st->loss, (double)st->groups, (double)st->pairs, st->chosen,
                         st->rejected, st->correct, st->logp_chosen, st->logp_rejected, stop};
    memcpy(x, v, sizeof v);
}
static void stats_unpack(DpoStats *st, const double *x) {
    *st = (DpoStats){.loss = x[0], .groups = (int64_t)x[1], .pairs = (int64_t)x[2],
                     .chosen = x[3], .rejected = x[4], .correct = x[5], .logp_chosen = x[6],
                     .logp_rejected = x[7]};
}
// Sums the ranks' statistics (and their stop flags) so that every rank holds the global ones.
static void stats_reduce(Dist *dist, DpoStats *st, int *stop) {
    if (dist->size == 1) return;
    double x[STATS_N];
    stats_pack(st, stop ? *stop : 0, x);
    dist_allreduce_sum_double(dist, x, STATS_N);
    stats_unpack(st, x);
    if (stop) *stop = x[STATS_N - 1] > 0;
}

// What run_groups does with the groups it runs (training).
typedef struct {
    double grad_scale;       // > 0: the backward of grad_scale * (sum of their losses)
    DpoStats *st;            // statistics added to
} RunSpec;

// A sequence's log-probability: the sum over its response tokens of row's log-probs.
static double seq_logp(const Dpo *d, const DpoSeq *q, int row, int T) {
    const float *l = d->logp + (size_t)row * T;
    double lp = 0;
    for (int t = q->start - 1; t < q->len - 1; t++) lp += l[t];
    return lp;
}

// The loss of one group and d loss / d logp of its items; statistics added to st.
static double group_loss(const Dpo *d, const DpoSet *s, const DpoGroup *g, const double *lp,
                         const int64_t *n, double *dl, DpoStats *st) {
    double ref[DPO_MAX_K] = {0};
    int ranks[DPO_MAX_K];
    for (int i = 0; i < g->k; i++) {
        ranks[i] = s->it[g->first + i].rank;
        if (s->ref) ref[i] = s->ref[s->it[g->first + i].seq];
    }
    double loss = d->loss.listwise ? dpo_listwise_loss(&d->loss, g->k, lp, ref, n, ranks, dl)
                                   : dpo_pair_loss(&d->loss, lp, ref, n, dl);
    st->loss += loss;
    st->groups++;
    dpo_stats_add_pairs(st, &d->loss, g->k, lp, ref, n, ranks);
    return loss;
}

// Runs the groups idx[0..ng) of set s in micro-batches, as rs says. While training (grad_scale >
// 0) a stop request (cli_stop_signal) ends it between two micro-batches: 1, the gradients
// incomplete. 0 done, -1 error.
static int run_groups(Dpo *d, const DpoSet *s, const int64_t *idx, int64_t ng, const RunSpec *rs,
                      char *err, size_t errlen) {
    int64_t j0 = 0;
    while (j0 < ng) {
        if (rs->grad_scale > 0 && cli_stop_signal()) return 1;
        int rows = 0, cnt = 0;
        while (j0 + cnt < ng && rows + s->g[idx[j0 + cnt]].k <= d->max_rows)
            rows += s->g[idx[j0 + cnt++]].k;
        if (cnt == 0)
            return util_err(err, errlen, "a group of %d sequences does not fit "
                            "train.micro_batch %d", s->g[idx[j0]].k, d->max_rows);
        for (int j = 0, b = 0; j < cnt; j++)
            for (int i = 0; i < s->g[idx[j0 + j]].k; i++)
                d->rowseq[b++] = s->it[s->g[idx[j0 + j]].first + i].seq;
        ModelBatch mb = fill_batch(d, s, d->rowseq, rows);
        // row-invariant products: a group's log-probabilities are the same whatever groups
        // share its micro-batch (K-wise rankings train exactly as their pairs, MPI as 1 rank)
        int fl = (d->use_lora && rs->grad_scale > 0 ? MODEL_DROPOUT : 0) | MODEL_FIXED_ROWS;
        if (model_forward(&d->model, &mb, fl, err, errlen)) return -1;
        model_get_logp(&d->model, d->logp);
        if (rs->grad_scale > 0) memset(d->dlogp, 0, (size_t)mb.B * mb.T * sizeof(float));
        int row = 0;
        for (int j = 0; j < cnt; j++) {
            const DpoGroup *g = &s->g[idx[j0 + j]];
            double lp[DPO_MAX_K], dl[DPO_MAX_K];
            int64_t n[DPO_MAX_K];
            for (int i = 0; i < g->k; i++) {
                const DpoSeq *q = &s->seq[s->it[g->first + i].seq];
                lp[i] = seq_logp(d, q, row + i, mb.T);
                n[i] = q->len - q->start;
            }
            group_loss(d, s, g, lp, n, dl, rs->st);
            if (rs->grad_scale > 0)
                for (int i = 0; i < g->k; i++) {
                    const DpoSeq *q = &s->seq[s->it[g->first + i].seq];
                    float *dr = d->dlogp + (size_t)(row + i) * mb.T;
                    for (int t = q->start - 1; t < q->len - 1; t++)
                        dr[t] = (float)(rs->grad_scale * dl[i]);
                }
            row += g->k;
        }
        if (rs->grad_scale > 0) model_backward(&d->model, &mb, d->dlogp, NULL);
        j0 += cnt;
    }
    return 0;
}

// This rank's share [*lo, *hi) of n items: contiguous, sizes differ by at most one.
static void rank_share(const Dist *dist, int64_t n, int64_t *lo, int64_t *hi) {
    *lo = n * dist->rank / dist->size;
    *hi = n * (dist->rank + 1) / dist->size;
}

// The log-probabilities of sequences list[0..n) of s (NULL: sequences [0, n)) under the model now
// loaded, into out (indexed by sequence, n of them without a list, s->nseq with one; the others
// 0): each rank runs its share, one allreduce gathers them (the others' entries are 0). A
// completion in several pairs is run once.
static int seq_pass(Dpo *d, const DpoSet *s, const int64_t *list, int64_t n, double *out,
                    char *err, size_t errlen) {
    int64_t lo, hi, len = list ? s->nseq : n;
    memset(out, 0, (size_t)len * sizeof(double));
    rank_share(&d->dist, n, &lo, &hi);
    for (int64_t i0 = lo; i0 < hi; i0 += d->max_rows) {
        int b = (int)(hi - i0 < d->max_rows ? hi - i0 : d->max_rows);
        for (int j = 0; j < b; j++) d->rowseq[j] = list ? list[i0 + j] : i0 + j;
        ModelBatch mb = fill_batch(d, s, d->rowseq, b);
        if (model_forward(&d->model, &mb, MODEL_FIXED_ROWS, err, errlen)) return -1;
        model_get_logp(&d->model, d->logp);
        for (int j = 0; j < b; j++)
            out[d->rowseq[j]] = seq_logp(d, &s->seq[d->rowseq[j]], j, mb.T);
    }
    dist_allreduce_sum_double(&d->dist, out, len);
    return 0;
}

static int64_t group_at(Dpo *d, int64_t p);

// The training sequences the run's steps use, in order, into *list (NULL when the steps go
// through every group, a whole epoch or more): a run shorter than an epoch needs the reference
// of the groups it draws only. The count of them, or -1 when all.
static int64_t used_sequences(Dpo *d, int64_t **list) {
    const DpoSet *s = &d->train;
    *list = NULL;
    if (d->total_steps * d->bs >= s->ng) return -1;
    char *used = CALLOC_CHECK((size_t)s->nseq + 1, 1);
    for (int64_t p = 0; p < d->total_steps * d->bs; p++) {
        const DpoGroup *g = &s->g[group_at(d, p)];
        for (int i = 0; i < g->k; i++) used[s->it[g->first + i].seq] = 1;
    }
    int64_t n = 0;
    for (int64_t q = 0; q < s->nseq; q++) n += used[q];
    *list = MALLOC_CHECK((size_t)n * sizeof(int64_t) + 1);
    for (int64_t q = 0, j = 0; q < s->nseq; q++)
        if (used[q]) (*list)[j++] = q;
    free(used);
    return n;
}

// The log-probability under the model now loaded (the reference) of every sequence of s, or of
// those list[0..n) only (the others stay 0), into s->ref.
static int reference_pass(Dpo *d, DpoSet *s, const int64_t *list, int64_t n, char *err,
                          size_t errlen) {
    free(s->ref);
    s->ref = CALLOC_CHECK((size_t)s->nseq + 1, sizeof(double));
    return list ? seq_pass(d, s, list, n, s->ref, err, errlen)
                : seq_pass(d, s, NULL, n < 0 ? s->nseq : n, s->ref, err, errlen);
}

// The groups an evaluation of s takes (its first ones: all, or eval.max_groups) into *ng, and
// the sequences they use: [0, the return value).
static int64_t eval_extent(const Dpo *d, const DpoSet *s, int64_t *ng) {
    int64_t maxg = config_get_int(d->cfg, "eval.max_groups"), nseq = 0;
    *ng = maxg && s->ng > maxg ? maxg : s->ng;
    for (int64_t j = 0; j < *ng; j++)
        for (int i = 0; i < s->g[j].k; i++)
            if (s->it[s->g[j].first + i].seq >= nseq) nseq = s->it[s->g[j].first + i].seq + 1;
    return nseq;
}

// The statistics of s's first groups (all, or eval.max_groups) under the policy: one pass over
// the sequences they use, then the losses from those numbers (so that at step 0 the policy's
// numbers are the reference's, bit for bit). At step 0 of a run whose reference pass has just run
// the starting policy over the same sequences in the same micro-batches, that pass's numbers
// are the policy's: no second pass.
static int evaluate(Dpo *d, const DpoSet *s, DpoStats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    int64_t ng, nseq = eval_extent(d, s, &ng);
    double *lps = MALLOC_CHECK((size_t)(nseq + 1) * sizeof(double));
    int rc = 0;
    if (d->step == 0 && d->ref_is_start) {
        memcpy(lps, s->ref, (size_t)nseq * sizeof(double));
        if (dist_main(&d->dist))
            fprintf(stderr, "dpo: step 0: the policy is the reference: its held-out "
                    "log-probabilities are the reference pass's\n");
    } else {
        rc = seq_pass(d, s, NULL, nseq, lps, err, errlen);
    }
    for (int64_t j = 0; j < ng && rc == 0; j++) {
        const DpoGroup *g = &s->g[j];
        double lp[DPO_MAX_K], dl[DPO_MAX_K];
        int64_t n[DPO_MAX_K];
        for (int i = 0; i < g->k; i++) {
            const DpoSeq *q = &s->seq[s->it[g->first + i].seq];
            lp[i] = lps[s->it[g->first + i].seq];
            n[i] = q->len - q->start;
        }
        group_loss(d, s, g, lp, n, dl, st);
    }
    free(lps);
    return rc;
}

// ---------------------------------------------------------------------------------------------
// Metrics

// The means TRL logs, under prefix ("train", "valid"), at the run's current step (rank 0).
static int record_stats(Dpo *d, const char *prefix, const DpoStats *st, char *err,
                        size_t errlen) {
    if (!dist_main(&d->dist)) return 0;
    double p = st->pairs ? (double)st->pairs : NAN;
    struct { const char *name; double v; } m[] = {
        {"loss", st->groups ? st->loss / (double)st->groups : NAN},
        {"rewards/chosen", st->chosen / p},
        {"rewards/rejected", st->rejected / p},
        {"rewards/margins", (st->chosen - st->rejected) / p},
        {"rewards/accuracies", st->correct / p},
        {"logps/chosen", st->logp_chosen / p},
        {"logps/rejected", st->logp_rejected / p},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s/%s", prefix, m[i].name);
        if (store_add_metric(d->tr.db, d->tr.run_id, d->step, name, m[i].v, err, errlen))
            return -1;
    }
    return 0;
}

static void print_stats(const Dpo *d, const char *what, const DpoStats *st) {
    double p = st->pairs ? (double)st->pairs : NAN;
    fprintf(stderr, "dpo: step %lld: %s loss %.4f accuracy %.4f margin %.4f chosen %.4f rejected "
            "%.4f (%lld pairs)\n",
            (long long)d->step, what, st->groups ? st->loss / (double)st->groups : NAN,
            st->correct / p, (st->chosen - st->rejected) / p, st->chosen / p, st->rejected / p,
            (long long)st->pairs);
}

// Held-out evaluation: recorded as valid/... and printed (rank 0).
static int evaluate_valid(Dpo *d, char *err, size_t errlen) {
    if (!d->valid.ng) return 0;
    DpoStats vs;
    if (evaluate(d, &d->valid, &vs, err, errlen) || record_stats(d, "valid", &vs, err, errlen))
        return -1;
    if (dist_main(&d->dist)) print_stats(d, "held-out", &vs);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

static const char *tokenizer_dir(const Dpo *d) {
    const char *t = config_get_string(d->cfg, "model.tokenizer");
    return t[0] ? t : config_get_string(d->cfg, "model.init");
}

// The chat template (once): data.chat_template, else the tokenizer directory's.
static int load_chat(Dpo *d, char *err, size_t errlen) {
    if (d->chat_loaded) return 0;
    d->chat_loaded = 1;
    return chat_template_load(&d->chat, tokenizer_dir(d),
                              config_get_string(d->cfg, "data.chat_template"), err, errlen);
}

static CkptSaveOptions save_options(const Dpo *d, const CkptTrainerState *st) {
    int32_t eot = tok_eot(d->tok);
    return (CkptSaveOptions){.tokenizer_dir = tokenizer_dir(d), .state = st,
                             .has_token_ids = eot >= 0, .bos_token_id = eot, .eos_token_id = eot};
}

// The adapters that train, or NULL when the whole model does.
static Lora *lora_of(Dpo *d) { return d->use_lora ? &d->lora : NULL; }

static int save_last(Dpo *d, char *err, size_t errlen) {
    if (!trainer_same_trained(&d->tr, &d->model, lora_of(d)))
        return util_err(err, errlen, "step %lld: the ranks' weights differ", (long long)d->step);
    if (!dist_main(&d->dist)) return 0;
    CkptTrainerState st;
    trainer_state_init(&st, d->step, &d->rng);
    if (ckpt_state_set_int(&st, "config_hash", (int64_t)trainer_hash_u64(&d->tr), err, errlen) ||
        ckpt_state_set_int(&st, "run_id", d->tr.run_id, err, errlen) ||
        ckpt_state_set_int(&st, "data.max_ranking_id", d->max_ranking_id, err, errlen) ||
        ckpt_state_set_int(&st, "data.fingerprint", (int64_t)d->train.hash, err, errlen) ||
        ckpt_state_set_int(&st, "reference.fingerprint",
                           (int64_t)dpo_ref_fingerprint(&d->train, &d->valid), err, errlen))
        return -1;
    CkptSaveOptions so = save_options(d, &st);
    if (d->use_lora ? adapter_save(d->tr.last_dir, &d->lora, d->base_name, 0, tokenizer_dir(d),
                                   &st, err, errlen)
                    : ckpt_save(d->tr.last_dir, &d->model, &so, err, errlen))
        return -1;
    return store_set_run_checkpoint(d->tr.db, d->tr.run_id, d->tr.last_dir, err, errlen);
}

static int save_final(Dpo *d, char *err, size_t errlen) {
    if (!dist_main(&d->dist)) return 0;
    CkptSaveOptions so = save_options(d, NULL);
    if (d->use_lora ? adapter_save(d->tr.final_dir, &d->lora, d->base_name, 0, tokenizer_dir(d),
                                   NULL, err, errlen)
                    : ckpt_save(d->tr.final_dir, &d->model, &so, err, errlen))
        return -1;
    return store_set_run_checkpoint(d->tr.db, d->tr.run_id, d->tr.final_dir, err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Setup

static int import_files(void *ctx, char *err, size_t errlen) {
    Dpo *d = ctx;
    const char *const *files;
    int64_t n = config_get_list(d->cfg, "data.import", &files);
    if (n > 0 && load_chat(d, err, errlen)) return -1;   // renders message-list prompts
    ImportOptions o = {.valid_frac = config_get_double(d->cfg, "data.valid_percent") / 100.0,
                       .chat = d->chat};
    for (int64_t i = 0; i < n && dist_main(&d->dist); i++) {
        ImportResult r;
        if (rm_import_file(d->tr.db, files[i], &o, &r, err, errlen)) return -1;
        if (!r.already)
            fprintf(stderr, "dpo: imported %lld rankings from %s\n", (long long)r.rankings,
                    files[i]);
    }
    return 0;
}

// The loss settings (loss.*, data.pairs), checked before anything is written.
static int read_loss(Dpo *d, char *err, size_t errlen) {
    DpoLossConfig *l = &d->loss;
    if (dpo_loss_parse(config_get_string(d->cfg, "loss.type"), &l->kind))
        return util_err(err, errlen, "loss.type: unknown loss '%s' (sigmoid, ipo, simpo)",
                        config_get_string(d->cfg, "loss.type"));
    l->beta = config_get_double(d->cfg, "loss.beta");
    l->label_smoothing = config_get_double(d->cfg, "loss.label_smoothing");
    l->gamma = config_get_double(d->cfg, "loss.simpo_gamma");
    l->listwise = !strcmp(config_get_string(d->cfg, "data.pairs"), "listwise");
    return dpo_loss_check(l, err, errlen);
}

// The settings read once: the loss, paths, batch shapes, threads; the workspace opened and
// data.import imported by rank 0, then opened by the other ranks to read.
static int setup_run(Dpo *d, char *err, size_t errlen) {
    static const TrainerSpec spec = {.stage = "dpo",
                                     .program = "dpo",
                                     .result = "final",
                                     .required = {{"model.init", "the policy to start from, "
                                                   "usually the SFT model"}}};
    if (trainer_init(&d->tr, d->cfg, &d->dist, &spec, err, errlen) || read_loss(d, err, errlen))
        return -1;
    d->bs = (int)config_get_int(d->cfg, "train.batch_size");
    d->max_rows = (int)config_get_int(d->cfg, "train.micro_batch");
    d->total_steps = config_get_int(d->cfg, "train.steps");
    d->perm_epoch = -1;
    snprintf(d->ref_path, sizeof d->ref_path, "%s/reference_logps.bin", d->tr.out_dir);
    return trainer_open_store(&d->tr, 1, import_files, d, err, errlen);
}

// The policy's shape (an LM head, no score head), the tokenizer and the prompt rendering.
static int load_config(Dpo *d, const char *from, ModelConfig *c, char *err, size_t errlen) {
    if (adapter_load_config(from, c, NULL, err, errlen)) return -1;
    if (!c->lm_head)
        return util_err(err, errlen, "%s has no LM head: dpo trains a language model", from);
    c->score_head = 0;
    if (tok_load(&d->tok, tokenizer_dir(d), err, errlen) ||
        ckpt_check_tokenizer(from, c->vocab_size, tokenizer_dir(d), tok_vocab_size(d->tok), err,
                             errlen) ||
        load_chat(d, err, errlen))
        return -1;
    DatasetOptions o = {.prompt_template = config_get_string(d->cfg, "data.prompt_template"),
                        .response_prefix = config_get_string(d->cfg, "data.response_prefix"),
                        .max_tokens = c->max_seq_len,
                        .chat = d->chat};
    return dataset_create(&d->ds, d->tok, &o, err, errlen);
}

static int query_max_ranking_id(Dpo *d, int64_t *out, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    sqlite3 *db = store_sqlite(d->tr.db);
    *out = 0;
    if (sqlite3_prepare_v2(db, "SELECT coalesce(max(id), 0) FROM rankings", -1, &st, NULL) !=
            SQLITE_OK ||
        sqlite3_step(st) != SQLITE_ROW) {
        util_err(err, errlen, "%s: reading rankings: %s", d->tr.db_path, sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return -1;
    }
    *out = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return 0;
}

// The rankings as groups, fixed at the first start (ranking ids up to the highest one then;
// resuming checks their fingerprint).
static int load_pairs(Dpo *d, const ModelConfig *c, int resumed, const CkptTrainerState *st,
                      char *err, size_t errlen) {
    if (resumed) {
        if (ckpt_state_get_int(st, "data.max_ranking_id", &d->max_ranking_id, err, errlen))
            return -1;
    } else if (dist_main(&d->dist) && query_max_ranking_id(d, &d->max_ranking_id, err, errlen))
        return -1;
    // rank 0's view: labeling may add rankings while the ranks read
    if (!resumed) dist_broadcast(&d->dist, &d->max_ranking_id, sizeof d->max_ranking_id);
    // with a chat template the answer follows its generation prompt as it is
    DpoLoadOptions o = {.db = d->tr.db, .db_path = d->tr.db_path, .ds = d->ds, .tok = d->tok,
                        .response_prefix = d->chat ? ""
                                                   : config_get_string(d->cfg,
                                                                       "data.response_prefix"),
                        .max_len = c->max_seq_len, .listwise = d->loss.listwise,
                        .max_ranking_id = d->max_ranking_id};
    if (dpo_set_load(&d->train, &o, "train", err, errlen) ||
        dpo_set_load(&d->valid, &o, "valid", err, errlen))
        return -1;
    if (!dist_identical(&d->dist, &d->train.hash, sizeof d->train.hash))
        return util_err(err, errlen, "the ranks read different training rankings from %s",
                        d->tr.db_path);
    if (d->train.ng == 0)
        return util_err(err, errlen, "%s has no training rankings (rankings of prompts in the "
                        "train split with at least one untied pair)%s: label or import some "
                        "first (reward label, reward import, or data.import)",
                        d->tr.db_path, d->train.n_tied ? "; every ranking there is all ties" : "");
    int64_t fp;
    if (!resumed) return 0;
    if (ckpt_state_get_int(st, "data.fingerprint", &fp, err, errlen)) return -1;
    if ((uint64_t)fp != d->train.hash)
        return util_err(err, errlen, "the training rankings in %s changed since this run started "
                        "(deleted or edited): --set train.resume=false to start over",
                        d->tr.db_path);
    return 0;
}

// The sequence length, the rows of a micro-batch and the step count, from the groups.
static void setup_shapes(Dpo *d) {
    d->T = d->train.max_len > d->valid.max_len ? d->train.max_len : d->valid.max_len;
    int max_k = d->train.max_k > d->valid.max_k ? d->train.max_k : d->valid.max_k;
    if (d->max_rows < max_k) d->max_rows = max_k;
    if (!d->total_steps)
        d->total_steps =
            (config_get_int(d->cfg, "train.epochs") * d->train.ng + d->bs - 1) / d->bs;
}

static void alloc_buffers(Dpo *d) {
    size_t rows = (size_t)d->max_rows, bt = rows * (size_t)d->T;
    d->tokens = CALLOC_CHECK(bt, sizeof(int32_t));
    d->targets = CALLOC_CHECK(bt, sizeof(int32_t));
    d->lengths = CALLOC_CHECK(rows, sizeof(int32_t));
    d->rowseq = CALLOC_CHECK(rows, sizeof(int64_t));
    d->logp = CALLOC_CHECK(bt, sizeof(float));
    d->dlogp = CALLOC_CHECK(bt, sizeof(float));
    d->perm = CALLOC_CHECK((size_t)d->train.ng, sizeof(int64_t));
}

// The reference's log-probabilities: read back from OUT.DIR/reference_logps.bin when resuming
// (checked against the fingerprint saved in last/), else computed by a pass of the reference
// (model.ref, or the policy as loaded from model.init) and stored. SimPO needs none.
static int setup_reference(Dpo *d, int resumed, const CkptTrainerState *st, char *err,
                           size_t errlen) {
    if (d->loss.kind == DPO_LOSS_SIMPO) {
        d->train.ref = CALLOC_CHECK((size_t)d->train.nseq + 1, sizeof(double));
        d->valid.ref = CALLOC_CHECK((size_t)d->valid.nseq + 1, sizeof(double));
        return 0;
    }
    const char *ref = config_get_string(d->cfg, "model.ref");
    if (resumed) {
        int rc = dpo_ref_read(d->ref_path, &d->train, &d->valid, err, errlen);
        if (rc < 0) return -1;
        int64_t fp;
        if (rc == 0) {
            if (ckpt_state_get_int(st, "reference.fingerprint", &fp, err, errlen)) return -1;
            if ((uint64_t)fp == dpo_ref_fingerprint(&d->train, &d->valid)) {
                if (dist_main(&d->dist))
                    fprintf(stderr, "dpo: reference log-probabilities read from %s\n",
                            d->ref_path);
                return 0;
            }
            return util_err(err, errlen, "%s differs from the reference log-probabilities this "
                            "run trained with: --set train.resume=false to start over",
                            d->ref_path);
        }
        if (!ref[0]) ref = config_get_string(d->cfg, "model.init");   // gone: computed again
    }
    Model policy = d->model;
    if (ref[0]) {   // the reference in the policy's place for the pass
        ModelConfig c;
        if (adapter_load_config(ref, &c, NULL, err, errlen))
            return util_err_prefix(err, errlen, "model.ref: ");
        c.score_head = 0;
        if (model_init(&d->model, &c, d->max_rows, d->T, 0, 0, err, errlen) ||
            adapter_load_weights(ref, &d->model, CKPT_IGNORE_SCORE, err, errlen)) {
            model_free(&d->model);
            d->model = policy;
            return util_err_prefix(err, errlen, "model.ref: ");
        }
        if (c.vocab_size != policy.config.vocab_size) {
            model_free(&d->model);
            d->model = policy;
            return util_err(err, errlen, "model.ref: %s has a vocabulary of %d, the policy %d",
                            ref, c.vocab_size, policy.config.vocab_size);
        }
    }
    double t0 = util_time_s();
    int64_t *list, n_used = used_sequences(d, &list), ng;
    // held out: the sequences the evaluations use (eval.max_groups), the others' stay 0
    int64_t n_valid = eval_extent(d, &d->valid, &ng);
    int rc = reference_pass(d, &d->train, list, n_used, err, errlen) ||
                     reference_pass(d, &d->valid, NULL, n_valid, err, errlen)
                 ? -1
                 : 0;
    free(list);
    if (ref[0]) {
        model_free(&d->model);
        d->model = policy;
    }
    if (rc) return -1;
    d->ref_is_start = !ref[0];
    if (dist_main(&d->dist)) {
        fprintf(stderr, "dpo: reference log-probabilities of %lld sequences%s in %.1f s (%s), "
                "stored in %s\n",
                (long long)((n_used < 0 ? d->train.nseq : n_used) + n_valid),
                n_used < 0 ? "" : " (the training ones its steps use, and the held-out ones)",
                util_time_s() - t0, ref[0] ? ref : "the starting policy", d->ref_path);
        if (dpo_ref_write(d->ref_path, &d->train, &d->valid, err, errlen)) return -1;
    }
    int64_t fp;   // computed again on resume: the numbers the run trained with?
    if (resumed && dist_main(&d->dist) &&
        ckpt_state_get_int(st, "reference.fingerprint", &fp, NULL, 0) == 0 &&
        (uint64_t)fp != dpo_ref_fingerprint(&d->train, &d->valid))
        fprintf(stderr, "dpo: warning: the reference log-probabilities computed again differ from "
                "those this run trained with (%s changed, or another thread count): the resumed "
                "run will not match an uninterrupted one bit for bit\n", ref);
    return 0;
}

static void print_data_summary(const Dpo *d) {
    fprintf(stderr, "dpo: %lld training rankings (%lld pairs, %lld %s, K up to %d), %lld held out "
            "(%lld pairs), data fingerprint %016llx%s%s\n",
            (long long)d->train.rankings, (long long)d->train.pairs, (long long)d->train.ng,
            d->loss.listwise ? "rankings listwise" : "pairs pairwise", d->train.max_ranking_k,
            (long long)d->valid.rankings, (long long)d->valid.pairs,
            (unsigned long long)d->train.hash,
            d->train.n_tied + d->valid.n_tied ? "; rankings that are all ties skipped" : "",
            d->train.truncated + d->valid.truncated
                ? "; some sequences longer than the context keep their end" : "");
    if (d->valid.ng == 0)
        fprintf(stderr, "dpo: warning: no held-out rankings (no prompts in the valid split): no "
                        "held-out accuracy\n");
}

static int setup(Dpo *d, char *err, size_t errlen) {
    if (setup_run(d, err, errlen)) return -1;
    CkptTrainerState st;
    int resumed = trainer_try_resume(&d->tr, d->tr.last_dir, &st, err, errlen);
    if (resumed < 0) return -1;
    // with adapters the base is always model.init (a resume loads last/'s adapters)
    const char *init = config_get_string(d->cfg, "model.init");
    const char *from = resumed && !adapter_on(d->cfg) ? d->tr.last_dir : init;
    ModelConfig c;
    LoraConfig lc;
    if (load_config(d, from, &c, err, errlen) ||
        adapter_settings(d->cfg, &c, 0, &lc, err, errlen) ||
        load_pairs(d, &c, resumed, &st, err, errlen))
        return -1;
    d->use_lora = lc.r > 0;
    setup_shapes(d);
    if (model_init(&d->model, &c, d->max_rows, d->T, d->use_lora ? MODEL_TRAIN_FROZEN : 1,
                   dist_main(&d->dist), err, errlen) ||
        adapter_load_base(from, &d->model, CKPT_IGNORE_SCORE,
                          d->use_lora ? adapter_base_dtype(d->cfg) : LOWP_FP32, err, errlen))
        return -1;
    if (d->use_lora) {   // fresh adapters (B = 0): the reference pass below sees the base
        adapter_base_name(init, d->base_name, sizeof d->base_name);
        if (lora_init(&d->lora, &lc, &c, (int64_t)d->max_rows * d->T, 1, err, errlen) ||
            lora_attach(&d->model, &d->lora, err, errlen))
            return -1;
        lora_init_weights(&d->lora, (uint64_t)config_get_int(d->cfg, "train.seed"), NULL);
        lora_bias_from_base(&d->lora, &d->model);
    }
    alloc_buffers(d);
    if (dist_main(&d->dist)) print_data_summary(d);
    if (setup_reference(d, resumed, &st, err, errlen)) return -1;
    return trainer_begin_or_resume(&d->tr, resumed, &st, &d->model, lora_of(d), &d->step, &d->rng,
                                   d->total_steps, err, errlen);
}

static void teardown(Dpo *d) {
    dpo_set_free(&d->train);
    dpo_set_free(&d->valid);
    void *bufs[] = {d->perm, d->tokens, d->targets, d->lengths, d->rowseq, d->logp, d->dlogp};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    dataset_free(d->ds);
    chat_template_free(d->chat);
    tok_free(d->tok);
    model_free(&d->model);
    lora_free(&d->lora);
    trainer_close(&d->tr);
    config_free(d->cfg);
}

// ---------------------------------------------------------------------------------------------
// Training

// Group index at global position p (epoch p / n, a fixed shuffle per epoch).
static int64_t group_at(Dpo *d, int64_t p) {
    int64_t n = d->train.ng, e = p / n, i = p % n;
    if (e != d->perm_epoch) {
        Rng r;
        rng_init(&r, data_hash_u64(data_hash_u64(DATA_HASH_INIT,
                                                 (uint64_t)config_get_int(d->cfg, "train.seed")),
                                   (uint64_t)e));
        for (int64_t j = 0; j < n; j++) d->perm[j] = j;
        for (int64_t j = n - 1; j > 0; j--) {
            int64_t q = (int64_t)rng_below(&r, (uint64_t)j + 1), t = d->perm[j];
            d->perm[j] = d->perm[q]; d->perm[q] = t;
        }
        d->perm_epoch = e;
    }
    return d->perm[i];
}

// One optimizer step's gradients over groups idx[lo..hi) of the step (this rank's share), the
// loss a mean over the step's groups. Returns 0, 1 when a stop request (seen by any rank) cut
// it short (not to be applied; redone on resume), -1 on an error.
static int step_gradients(Dpo *d, const int64_t *idx, int64_t lo, int64_t hi, DpoStats *st,
                          char *err, size_t errlen) {
    trainer_zero_grad(&d->model, lora_of(d));
    memset(st, 0, sizeof *st);
    RunSpec rs = {.grad_scale = 1.0 / d->bs, .st = st};
    if (run_groups(d, &d->train, idx + lo, hi - lo, &rs, err, errlen) < 0) return -1;
    int stop = cli_stop_signal() != 0;
    if (d->dist.size > 1) {
        trainer_allreduce_grads(&d->dist, &d->model, lora_of(d));
        stats_reduce(&d->dist, st, &stop);
    }
    return stop;
}

static int record_step(Dpo *d, const DpoStats *st, float lr, float norm, double dt, char *err,
                       size_t errlen) {
    if (!dist_main(&d->dist)) return 0;
    Store *db = d->tr.db;
    int64_t id = d->tr.run_id, step = d->step;
    if (record_stats(d, "train", st, err, errlen) ||
        store_add_metric(db, id, step, "train/lr", lr, err, errlen) ||
        store_add_metric(db, id, step, "train/grad_norm", norm, err, errlen) ||
        store_add_metric(db, id, step, "train/pairs_per_s", (double)st->pairs / dt, err, errlen))
        return -1;
    if (d->dist.size > 1 &&
        store_add_metric(db, id, step, "train/allreduce_s", d->dist.allreduce_s, err, errlen))
        return -1;
    return 0;
}

static void print_step(Dpo *d, CliProgress *pr, const DpoStats *st, float lr, int64_t first_step,
                       double pairs_per_s) {
    if (!dist_main(&d->dist)) return;
    char extra[160];
    double p = st->pairs ? (double)st->pairs : NAN;
    snprintf(extra, sizeof extra, "loss %.4f acc %.3f margin %.4f lr %.2e %.1f pairs/s",
             st->loss / (double)st->groups, st->correct / p, (st->chosen - st->rejected) / p, lr,
             pairs_per_s);
    int64_t log_every = config_get_int(d->cfg, "log.every");
    if (pr->tty) cli_progress_update(pr, d->step, extra);
    else if (d->step % log_every == 0 || d->step == d->total_steps || d->step == first_step + 1) {
        char f[160];
        cli_progress_format(pr, d->step, f, sizeof f);
        fprintf(stderr, "dpo: step %s %s\n", f, extra);
    }
}

static int train(Dpo *d, char *err, size_t errlen) {
    AdamWConfig oc = trainer_adamw(d->cfg, "train.lr");
    LrSchedule sch = trainer_schedule(d->cfg, d->total_steps);
    int64_t eval_every = config_get_int(d->cfg, "eval.every");
    int64_t save_every = trainer_save_every(d->cfg);
    CliProgress pr;
    cli_progress_start(&pr, stderr, "dpo", d->total_steps);
    cli_progress_resume(&pr, d->step);
    double t_start = util_time_s();
    int64_t pairs_since = 0, first_step = d->step, lo, hi;
    int64_t *idx = MALLOC_CHECK((size_t)d->bs * sizeof(int64_t));
    int rc = 0, main_rank = dist_main(&d->dist), stop = 0;
    rank_share(&d->dist, d->bs, &lo, &hi);
    if (d->step == 0) rc = evaluate_valid(d, err, errlen);   // the starting point
    while (rc == 0 && d->step < d->total_steps) {
        double t0 = util_time_s();
        for (int j = 0; j < d->bs; j++) idx[j] = group_at(d, d->step * d->bs + j);
        DpoStats st;
        rc = step_gradients(d, idx, lo, hi, &st, err, errlen);
        if (rc) break;
        float lr = lr_at(&sch, oc.lr, d->step);
        float norm = trainer_adamw_step(&d->model, lora_of(d), &oc, lr, d->step + 1);
        d->step++;
        double loss = st.loss / (double)st.groups;
        if (!isfinite(loss) || !isfinite(norm)) {
            rc = util_err(err, errlen, "step %lld: the loss or gradient is not finite (loss %g, "
                          "grad norm %g); lower train.lr", (long long)d->step, loss, (double)norm);
            break;
        }
        pairs_since += st.pairs;
        double el = util_time_s() - t_start;
        if (record_step(d, &st, lr, norm, util_time_s() - t0, err, errlen)) { rc = -1; break; }
        print_step(d, &pr, &st, lr, first_step, el > 0 ? (double)pairs_since / el : 0.0);
        int last = d->step == d->total_steps;
        if (pr.tty && main_rank && (d->step % eval_every == 0 || last)) cli_progress_end(&pr);
        if ((d->step % eval_every == 0 || last) && evaluate_valid(d, err, errlen)) {
            rc = -1;
            break;
        }
        if ((d->step % save_every == 0 || last) && save_last(d, err, errlen)) { rc = -1; break; }
    }
    free(idx);
    if (pr.tty && main_rank) cli_progress_end(&pr);
    if (rc == 1) stop = 1, rc = 0;
    if (rc) return rc;
    double el = util_time_s() - t_start;
    if (main_rank && d->step > first_step)
        fprintf(stderr, "dpo: trained %lld steps, %lld pairs in %.2f s\n",
                (long long)(d->step - first_step), (long long)pairs_since, el);
    if (stop) return save_last(d, err, errlen) ? -1 : trainer_stopped(&d->tr, "step", d->step);
    return save_final(d, err, errlen);
}

int main(int argc, char **argv) {
    blas_startup("dpo", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    Dpo d;
    memset(&d, 0, sizeof d);
    dist_init(&d.dist, &argc, &argv);
    int early = trainer_config(&d.cfg, &d.dist, DPO_SCHEMA, "dpo", usage, argc - 1, argv + 1);
    if (early >= 0) return early;
    char err[1024];
    int rc = setup(&d, err, sizeof err), main_rank = dist_main(&d.dist);
    if (rc == 0 && main_rank)
        fprintf(stderr, "dpo: run %lld, %lld steps of %d %s (micro-batches of up to %d sequences "
                "of up to %d tokens), loss %s, beta %g, %d rank(s), config %s\n",
                (long long)d.tr.run_id, (long long)d.total_steps, d.bs,
                d.loss.listwise ? "rankings" : "pairs", d.max_rows, d.T,
                config_get_string(d.cfg, "loss.type"), d.loss.beta, d.dist.size, d.tr.hash);
    if (rc == 0) rc = train(&d, err, sizeof err);
    int code = trainer_finish(&d.tr, rc, err);
    if (rc == 0 && main_rank)
        fprintf(stderr, "dpo: done: %s (the policy), %s (resumable state)\n", d.tr.final_dir,
                d.tr.last_dir);
    teardown(&d);
    if (rc < 0 && d.dist.size > 1) dist_abort(&d.dist, 1);   // the others may wait in an allreduce
    dist_finalize(&d.dist);
    return code;
}
