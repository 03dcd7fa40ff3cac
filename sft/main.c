// sft: supervised fine-tuning (InstructGPT step 1) on prompt/response or chat demonstrations,
// and plain-text pretraining (SFT without a prompt mask), with an optional share of each step's
// loss from pretraining text (data.mix). Reads like a recipe: parse the config,
// load the model and the data, loop (step, log, evaluate, save), record everything in the
// workspace database. Killed at any moment, the same command resumes from the last checkpoint and
// ends with the same weights as an uninterrupted run (same thread count).
#include "adapter.h"
#include "blas.h"
#include "chat.h"
#include "checkpoint.h"
#include "cli.h"
#include "config.h"
#include "dataset.h"
#include "dist.h"
#include "generate.h"
#include "model.h"
#include "optim.h"
#include "store.h"
#include "tokfile.h"
#include "tokenizer.h"
#include "trainer.h"
#include "util.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const ConfigEntry SFT_SCHEMA[] = {
    CONFIG_ENTRY("model.init", CONFIG_STRING, "", "checkpoint to start from (required)"),
    CONFIG_ENTRY("model.tokenizer", CONFIG_STRING, "",
                 "tokenizer directory when model.init has none"),
    TRAINER_ENTRY_OUT_DIR("output directory: last/ and best/ checkpoints (required)"),
    TRAINER_ENTRY_WORKSPACE("workspace database (default: OUT.DIR/workspace.db)"),
    CONFIG_ENTRY(
        "data.format", CONFIG_ENUM, "jsonl",
        "jsonl: prompt/response or chat lines; db: the workspace's demonstrations; text: plain-text pretraining",
        .choices = "jsonl|db|text"),
    CONFIG_ENTRY("data.train", CONFIG_LIST, NULL, "training files (jsonl or text)"),
    CONFIG_ENTRY("data.valid", CONFIG_LIST, NULL,
                 "held-out files (default: a share of data.train, see valid_percent)"),
    CONFIG_ENTRY("data.valid_percent", CONFIG_DOUBLE, "5",
                 "share of jsonl/db examples held out when data.valid is empty", .min = "0",
                 .max = "50"),
    CONFIG_ENTRY("data.prompt_template", CONFIG_STRING, DATASET_DEFAULT_PROMPT_TEMPLATE,
                 "prompt rendering; exactly one {prompt}"),
    CONFIG_ENTRY("data.response_prefix", CONFIG_STRING, DATASET_DEFAULT_RESPONSE_PREFIX,
                 "text before each response"),
    CONFIG_ENTRY("data.chat_template", CONFIG_STRING, "",
                 "chat template (a file, or inline text) instead of tokenizer_config.json's",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("data.truncation", CONFIG_ENUM, "error", "examples longer than the context",
                 .choices = "error|truncate_prompt_left|drop"),
    CONFIG_ENTRY("data.train_on_all", CONFIG_BOOL, "false", "loss on prompt tokens too"),
    CONFIG_ENTRY("data.mix.text", CONFIG_STRING, "",
                 "pretraining text mixed into every step (tokenized into OUT.DIR/mix.tok)",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("data.mix.weight", CONFIG_DOUBLE, "0",
                 "share of each step's loss from data.mix.text, in (0, 1) (0 without it: no mix)",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("train.batch_size", CONFIG_INT, "8", "sequences per micro-batch", .min = "1",
                 .max = "65536"),
    CONFIG_ENTRY("train.grad_accum", CONFIG_INT, "1", "micro-batches per optimizer step",
                 .min = "1", .max = "65536"),
    CONFIG_ENTRY("train.seq_len", CONFIG_INT, "0",
                 "positions per sequence (0: the model's context, at most 2048)", .min = "0"),
    TRAINER_ENTRIES_LENGTH("passes over the training data (when train.steps is 0)"),
    TRAINER_ENTRIES_OPTIM("1e-4"),
    TRAINER_ENTRY_SEED("data order and sampling seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_EVAL_EVERY("100", "evaluate every N steps (and at the end)"),
    CONFIG_ENTRY("eval.max_batches", CONFIG_INT, "0", "held-out batches per evaluation (0: all)",
                 .min = "0"),
    CONFIG_ENTRY("eval.prompts", CONFIG_LIST, NULL,
                 "prompts sampled (greedy) and logged at each evaluation", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("eval.max_new", CONFIG_INT, "32", "new tokens per evaluation prompt", .min = "1",
                 .flags = CONFIG_NO_HASH),
    TRAINER_ENTRIES_PRETRAIN_EVAL,
    TRAINER_ENTRIES_CADENCE,
    TRAINER_ENTRIES_SAVE_FORMAT,
    ADAPTER_ENTRIES,
    {0}};

static const char *usage =
    "usage: sft -c CONFIG.yaml [--set KEY=VALUE ...] [--print-config]\n"
    "Supervised fine-tuning on demonstrations (data.format jsonl or db) or plain-text pretraining\n"
    "(data.format text). Writes OUT.DIR/last (resumable) and OUT.DIR/best (lowest held-out loss),\n"
    "and records the run and its metrics in the workspace database. Rerun the same command after\n"
    "an interruption to resume. With lora.r > 0 the model.init weights stay frozen and LoRA\n"
    "adapters train: last/ and best/ are then PEFT adapter directories (model.init their base).\n"
    "Keys:\n";

typedef struct {
    Dist dist;                 // rank 0 writes; every rank computes its share of each step
    // configuration
    Config *cfg;
    Trainer tr;                // OUT.DIR/last and best/ (tr.final_dir), the workspace, the run
    int text;                  // plain-text pretraining
    int B, T, accum;
    int64_t total_steps;
    // state
    Model model;
    Lora lora;                 // lora.r > 0: the adapters that train (model is the frozen base)
    int use_lora;
    char base_name[4096];      // the adapters' base_model_name_or_path: model.init, absolute
    Tokenizer *tok;
    ChatTemplate *chat;        // the tokenizer directory's chat template, or NULL
    Dataset *ds;
    DatasetIter *train_it;
    TokFile tf_train, tf_valid;
    TokfileIter tf_it;
    int has_valid;
    DataBatch *micro;          // (accum) micro-batches
    // the pretraining mix (data.mix): a text micro-batch beside each micro-batch, its tokens
    // weighted so that mix_w of the step's loss is theirs
    double mix_w;              // 0: no mix
    TokFile tf_mix;
    TokfileIter mix_it;
    DataBatch *mix;            // (accum) text micro-batches, NULL without a mix
    TrainerPretrain pre;       // eval.pretrain_text
    int64_t step;              // optimizer steps done
    double best_val;
    Rng rng;
} Sft;

// The adapters that train, or NULL when the whole model does.
static Lora *lora_of(Sft *s) { return s->use_lora ? &s->lora : NULL; }

typedef struct { Dataset *ds; char *err; size_t errlen; } DemoCtx;

static int add_demo(const StoreDemonstration *d, void *ctx) {
    DemoCtx *c = ctx;
    // the database's test split is never trained on; its valid split is the held-out set
    DatasetSplit sp = !strcmp(d->split, "train")   ? DATASET_SPLIT_TRAIN
                      : !strcmp(d->split, "valid") ? DATASET_SPLIT_VALID
                                                   : -1;
    if ((int)sp < 0) return 0;
    return (d->prompt_rendered ? dataset_add_rendered_pair : dataset_add_pair)(
               c->ds, d->prompt, d->response, "workspace", d->id, sp, c->err, c->errlen)
               ? -1
               : 0;
}

static int load_data(Sft *s, char *err, size_t errlen) {
    const char *fmt = config_get_string(s->cfg, "data.format");
    const char *const *train, *const *valid;
    int64_t ntrain = config_get_list(s->cfg, "data.train", &train),
            nvalid = config_get_list(s->cfg, "data.valid", &valid);
    if (!strcmp(fmt, "text")) {
        s->text = 1;
        if (ntrain == 0) return util_err(err, errlen, "data.train: no text files given");
        char path[4200];
        snprintf(path, sizeof path, "%s/train.tok", s->tr.out_dir);
        struct stat st;
        if (stat(path, &st)) {   // tokenized once, then memory-mapped on every run
            TokfileStats ts;
            // rank 0 writes the token file; the others wait for it
            if (dist_main(&s->dist)) {
                fprintf(stderr, "sft: tokenizing %lld text file(s) into %s\n", (long long)ntrain,
                        path);
                if (tokfile_write_text(path, s->tok, train, (size_t)ntrain, NULL, &ts, err, errlen))
                    return -1;
            }
        }
        dist_barrier(&s->dist);
        if (tokfile_open(&s->tf_train, path, s->tok, s->model.config.vocab_size, err, errlen))
            return -1;
        TokfileIterOptions o = {.batch_size = s->B, .seq_len = s->T, .order = TOKFILE_SHUFFLED,
                                .seed = (uint64_t)config_get_int(s->cfg, "train.seed")};
        if (tokfile_iter_init(&s->tf_it, &s->tf_train, &o, err, errlen)) return -1;
        if (nvalid > 0) {
            snprintf(path, sizeof path, "%s/valid.tok", s->tr.out_dir);
            if (stat(path, &st) && dist_main(&s->dist) &&
                tokfile_write_text(path, s->tok, valid, (size_t)nvalid, NULL, NULL, err, errlen))
                return -1;
            dist_barrier(&s->dist);
            if (tokfile_open(&s->tf_valid, path, s->tok, s->model.config.vocab_size, err, errlen))
                return -1;
            s->has_valid = 1;
        }
        int64_t per_step = (int64_t)s->B * s->accum;
        if (!s->total_steps)
            s->total_steps =
                (config_get_int(s->cfg, "train.epochs") * tokfile_iter_windows(&s->tf_it) +
                 per_step - 1) /
                per_step;
        return 0;
    }
    DatasetOptions o = {.prompt_template = config_get_string(s->cfg, "data.prompt_template"),
                        .response_prefix = config_get_string(s->cfg, "data.response_prefix"),
                        .max_tokens = s->T,
                        .chat = s->chat,
                        .train_on_all = config_get_bool(s->cfg, "data.train_on_all"),
                        .valid_percent =
                            nvalid > 0 ? 0.0 : config_get_double(s->cfg, "data.valid_percent")};
    if (dataset_truncation_parse(config_get_string(s->cfg, "data.truncation"), &o.truncation, err,
                                 errlen) ||
        dataset_create(&s->ds, s->tok, &o, err, errlen))
        return -1;
    if (!strcmp(fmt, "jsonl")) {
        if (ntrain == 0) return util_err(err, errlen, "data.train: no JSONL files given");
        for (int64_t i = 0; i < ntrain; i++)
            if (dataset_load_jsonl(s->ds, train[i], DATASET_SPLIT_AUTO, err, errlen)) return -1;
        for (int64_t i = 0; i < nvalid; i++)
            if (dataset_load_jsonl(s->ds, valid[i], DATASET_SPLIT_VALID, err, errlen)) return -1;
    } else {   // db: the workspace's demonstrations, with the database's own split
        DemoCtx dc = {s->ds, err, errlen};
        if (store_each_demonstration(s->tr.db, NULL, add_demo, &dc, err, errlen)) return -1;
    }
    DatasetStats st;
    dataset_stats(s->ds, &st);
    if (st.n_train == 0) return util_err(err, errlen, "the data set has no training examples");
    if (dist_main(&s->dist))
        fprintf(stderr, "sft: %lld examples (%lld train, %lld held out), %lld tokens, longest "
                "%d%s\n",
                (long long)st.n_examples, (long long)st.n_train, (long long)st.n_valid,
                (long long)st.n_tokens, st.max_len,
                st.n_dropped ? " (some dropped: too long)" : "");
    s->has_valid = st.n_valid > 0;
    DatasetIterOptions io = {.batch_size = s->B,
                             .bucket_batches = 50,
                             .shuffle = 1,
                             .seed = (uint64_t)config_get_int(s->cfg, "train.seed")};
    if (dataset_iter_create(&s->train_it, s->ds, DATASET_SPLIT_TRAIN, &io, err, errlen)) return -1;
    if (!s->total_steps)
        s->total_steps =
            (config_get_int(s->cfg, "train.epochs") * dataset_iter_batches_per_epoch(s->train_it) +
             s->accum - 1) /
            s->accum;
    return 0;
}

// data.mix's two keys: off (no text, weight 0), or a text and a weight in (0, 1).
static int mix_settings(const Config *cfg, double *w, char *err, size_t errlen) {
    const char *text = config_get_string(cfg, "data.mix.text");
    *w = config_get_double(cfg, "data.mix.weight");
    if (!text[0] && *w == 0) return 0;
    if (!text[0])
        return util_err(err, errlen, "data.mix.weight is %g but data.mix.text is not set: name the "
                        "pretraining text to mix in", *w);
    if (!(*w > 0 && *w < 1))
        return util_err(err, errlen, "data.mix.weight must be in (0, 1), the share of each step's "
                        "loss that comes from data.mix.text (got %g)", *w);
    return 0;
}

// The pretraining mix: data.mix.text tokenized into OUT.DIR/mix.tok (anew on a fresh start; kept
// on resume, so that the windows read again are the same), shuffled windows of train.seq_len.
static int load_mix(Sft *s, int resumed, char *err, size_t errlen) {
    if (mix_settings(s->cfg, &s->mix_w, err, errlen)) return -1;
    if (s->mix_w == 0) return 0;
    const char *text = config_get_string(s->cfg, "data.mix.text");
    char path[4200], e[1024];
    snprintf(path, sizeof path, "%s/mix.tok", s->tr.out_dir);
    struct stat st;
    int rc = 0;
    if ((!resumed || stat(path, &st)) && dist_main(&s->dist))
        rc = tokfile_write_text(path, s->tok, &text, 1, NULL, NULL, e, sizeof e);
    dist_barrier(&s->dist);
    if (rc || tokfile_open(&s->tf_mix, path, s->tok, s->model.config.vocab_size, e, sizeof e))
        return util_err(err, errlen, "data.mix.text: %s", e);
    if (s->tf_mix.n_tokens < (int64_t)s->T + 1)
        return util_err(err, errlen, "data.mix.text: %s has %lld tokens, fewer than one window of "
                        "train.seq_len + 1 = %d", text, (long long)s->tf_mix.n_tokens, s->T + 1);
    TokfileIterOptions o = {.batch_size = s->B, .seq_len = s->T, .order = TOKFILE_SHUFFLED,
                            .seed = (uint64_t)config_get_int(s->cfg, "train.seed")};
    if (tokfile_iter_init(&s->mix_it, &s->tf_mix, &o, e, sizeof e))
        return util_err(err, errlen, "data.mix.text: %s", e);
    s->mix = CALLOC_CHECK((size_t)s->accum, sizeof(DataBatch));
    for (int a = 0; a < s->accum; a++) data_batch_init(&s->mix[a], s->B, s->T);
    return 0;
}

// Mean next-token loss over the held-out data (all of it, or eval.max_batches batches).
static double eval_loss(Sft *s) {
    int64_t maxb = config_get_int(s->cfg, "eval.max_batches");
    double total = 0;
    int64_t ntok = 0;
    char err[512];
    DataBatch *b = &s->micro[0];
    if (s->text) {
        TokfileIterOptions o = {.batch_size = s->B, .seq_len = s->T, .order = TOKFILE_SEQUENTIAL};
        TokfileIter it;
        if (tokfile_iter_init(&it, &s->tf_valid, &o, err, sizeof err)) {
            fprintf(stderr, "sft: valid: %s\n", err);
            return NAN;
        }
        int64_t n = (tokfile_iter_windows(&it) + s->B - 1) / s->B;
        if (maxb && n > maxb) n = maxb;
        for (int64_t i = 0; i < n; i++) {
            tokfile_iter_next(&it, b, 1.0f);
            ModelBatch mb = {b->B, b->T, b->tokens, b->lengths, b->targets, b->weights};
            if (model_forward(&s->model, &mb, 0, err, sizeof err)) {
                fprintf(stderr, "sft: %s\n", err);
                return NAN;
            }
            total += s->model.loss;
            ntok += b->n_targets;
        }
    } else {
        DatasetIterOptions io = {.batch_size = s->B, .bucket_batches = 1, .shuffle = 0};
        DatasetIter *it;
        if (dataset_iter_create(&it, s->ds, DATASET_SPLIT_VALID, &io, err, sizeof err)) {
            fprintf(stderr, "sft: valid: %s\n", err);
            return NAN;
        }
        int64_t n = dataset_iter_batches_per_epoch(it);
        if (maxb && n > maxb) n = maxb;
        for (int64_t i = 0; i < n; i++) {
            dataset_iter_next(it, b, 1.0f);
            ModelBatch mb = {b->B, b->T, b->tokens, b->lengths, b->targets, b->weights};
            if (model_forward(&s->model, &mb, 0, err, sizeof err)) {
                fprintf(stderr, "sft: %s\n", err);
                dataset_iter_free(it);
                return NAN;
            }
            total += s->model.loss;
            ntok += b->n_targets;
        }
        dataset_iter_free(it);
    }
    return ntok ? total / (double)ntok : NAN;
}

// Greedy samples of the fixed evaluation prompts, so that progress can be read, not just plotted.
static void eval_samples(Sft *s) {
    const char *const *prompts;
    int64_t np = config_get_list(s->cfg, "eval.prompts", &prompts);
    if (np == 0 || s->text) return;
    int max_new = (int)config_get_int(s->cfg, "eval.max_new");
    char err[512];
    Sampler sm;
    sampler_init(&sm, s->model.config.vocab_size);
    GenConfig g = {.max_new_tokens = max_new,
                   .eot_id = tok_eot(s->tok),
                   .sampler = {.temperature = 0.0f, .top_k = 0, .top_p = 1.0f}};
    if (chat_stop_ids(s->chat, s->tok, NULL, g.stop_ids, GEN_MAX_STOP, &g.n_stop, err, sizeof err))
        g.n_stop = 0;
    Rng r;
    rng_init(&r, 0);
    for (int64_t i = 0; i < np; i++) {
        TokIds ids = {0};
        int32_t out[4096], ol = 0;
        if (dataset_encode_prompt(s->ds, prompts[i], &ids, err, sizeof err) == 0 &&
            (int64_t)ids.n + max_new <= s->model.config.max_seq_len && max_new <= 4096) {
            int32_t len = (int32_t)ids.n;
            KVCache kv = {0};   // this prompt's length, not the context (32k for some models)
            int rc = kv_init(&kv, &s->model, 1, len + max_new, len, err, sizeof err) ||
                     gen_generate(&s->model, &kv, &sm, &g, &r, ids.ids, &len, 1, len, out, &ol,
                                  NULL, NULL, err, sizeof err);
            kv_free(&kv);
            if (rc == 0) {
                if (ol > 0 && gen_is_stop(&g, out[ol - 1])) ol--;
                TokBytes tb = {0};
                tok_decode(s->tok, out, (size_t)ol, &tb, err, sizeof err);
                fprintf(stderr, "sft: sample %lld: %s ->%s\n", (long long)i + 1, prompts[i],
                        tb.data ? tb.data : "");
                tok_bytes_free(&tb);
            }
        }
        tok_ids_free(&ids);
    }
    sampler_free(&sm);
}

// The tokenizer a checkpoint copies: model.tokenizer, else model.init's.
static const char *tokenizer_dir(const Sft *s) {
    const char *t = config_get_string(s->cfg, "model.tokenizer");
    return t[0] ? t : config_get_string(s->cfg, "model.init");
}

static int save_last(Sft *s, char *err, size_t errlen) {
    if (!trainer_same_trained(&s->tr, &s->model, lora_of(s)))
        return util_err(err, errlen, "step %lld: the ranks' weights differ", (long long)s->step);
    if (!dist_main(&s->dist)) return 0;
    CkptTrainerState st;
    trainer_state_init(&st, s->step, &s->rng);
    DataCursor cur;
    if (s->text) tokfile_iter_cursor(&s->tf_it, &cur); else dataset_iter_cursor(s->train_it, &cur);
    if (data_cursor_save(&cur, &st, "train", err, errlen)) return -1;
    if (s->mix) tokfile_iter_cursor(&s->mix_it, &cur);
    if ((s->mix && data_cursor_save(&cur, &st, "mix", err, errlen)) ||
        ckpt_state_set_int(&st, "config_hash", (int64_t)trainer_hash_u64(&s->tr), err, errlen) ||
        ckpt_state_set_int(&st, "run_id", s->tr.run_id, err, errlen) ||
        (isfinite(s->best_val) &&
         ckpt_state_set_float(&st, "best_val_loss", s->best_val, err, errlen)))
        return -1;
    if (s->use_lora) {
        if (adapter_save(s->tr.last_dir, &s->lora, s->base_name, 0, tokenizer_dir(s), &st, err,
                         errlen))
            return -1;
        return store_set_run_checkpoint(s->tr.db, s->tr.run_id, s->tr.last_dir, err, errlen);
    }
    CkptSaveOptions so = {.tokenizer_dir = NULL,
                          .state = &st,
                          .has_token_ids = tok_eot(s->tok) >= 0,
                          .bos_token_id = tok_eot(s->tok),
                          .eos_token_id = tok_eot(s->tok)};
    so.tokenizer_dir = config_get_string(s->cfg, "model.tokenizer")[0]
                           ? config_get_string(s->cfg, "model.tokenizer")
                           : config_get_string(s->cfg, "model.init");
    if (ckpt_save(s->tr.last_dir, &s->model, &so, err, errlen)) return -1;
    return store_set_run_checkpoint(s->tr.db, s->tr.run_id, s->tr.last_dir, err, errlen);
}

static int save_best(Sft *s, char *err, size_t errlen) {
    if (!dist_main(&s->dist)) return 0;
    if (s->use_lora)
        return adapter_save(s->tr.final_dir, &s->lora, s->base_name, 0, tokenizer_dir(s), NULL,
                            err, errlen);
    CkptSaveOptions so = {.has_token_ids = tok_eot(s->tok) >= 0,
                          .bos_token_id = tok_eot(s->tok),
                          .eos_token_id = tok_eot(s->tok)};
    so.tokenizer_dir = config_get_string(s->cfg, "model.tokenizer")[0]
                           ? config_get_string(s->cfg, "model.tokenizer")
                           : config_get_string(s->cfg, "model.init");
    trainer_save_format(s->cfg, &so);
    return ckpt_save(s->tr.final_dir, &s->model, &so, err, errlen);
}

// The batch shapes against the memory this process may use, before anything of that size is
// allocated: the model (weights, gradients, moments, activations for B x T) and the grad_accum
// micro-batches of B x T tokens held for one step.
static int memory_check(const Sft *s, const ModelConfig *c, const LoraConfig *lc, char *err,
                        size_t errlen) {
    double bt = (double)s->B * s->T;
    double mix_w;   // the mix's text micro-batches are as many and as large
    int batches = mix_settings(s->cfg, &mix_w, NULL, 0) == 0 && mix_w > 0 ? 2 : 1;
    int64_t N = (int64_t)s->B * s->T;
    double need = (double)(lc->r ? adapter_base_bytes(c, s->B, s->T,
                                                      adapter_base_dtype(s->cfg))
                                 : model_memory_bytes(c, s->B, s->T, 1)) +
                  (lc->r ? (double)lora_memory_bytes(lc, c, N, 1) : 0.0) +
                  (double)batches * s->accum * (bt * 12.0 + s->B * 12.0);
    double avail = util_mem_available();
    if (avail > 0 && need > avail) {
        char n[32], a[32];
        util_format_bytes(n, sizeof n, need);
        util_format_bytes(a, sizeof a, avail);
        return util_err(err, errlen, "train.batch_size %d x train.grad_accum %d sequences of %d "
                        "tokens need %s but only %s is available: lower train.batch_size, "
                        "train.grad_accum or train.seq_len",
                        s->B, s->accum, s->T, n, a);
    }
    return 0;
}

// The settings read once: paths, batch shapes, threads; the workspace opened (rank 0 only).
static int setup_run(Sft *s, char *err, size_t errlen) {
    static const TrainerSpec spec = {
        .stage = "sft", .program = "sft", .result = "best",
        .required = {{"model.init", "a checkpoint; `rlhf init` makes one"}}};
    if (trainer_init(&s->tr, s->cfg, &s->dist, &spec, err, errlen)) return -1;
    s->B = (int)config_get_int(s->cfg, "train.batch_size");
    s->accum = (int)config_get_int(s->cfg, "train.grad_accum");
    s->total_steps = config_get_int(s->cfg, "train.steps");
    s->best_val = INFINITY;
    if (s->accum % s->dist.size)
        return util_err(err, errlen,
                        "train.grad_accum (%d) must be a multiple of the number of ranks (%d): "
                        "each rank takes an equal share of every step",
                        s->accum, s->dist.size);
    double mix_w;   // data.mix checked before anything is loaded: its text readable, not empty
    if (mix_settings(s->cfg, &mix_w, err, errlen)) return -1;
    const char *mix = config_get_string(s->cfg, "data.mix.text");
    struct stat st;
    FILE *f = mix[0] ? fopen(mix, "rb") : NULL;
    if (f) fclose(f);
    if (mix[0] && (!f || stat(mix, &st)))
        return util_err(err, errlen, "data.mix.text: cannot read %s: %s", mix, strerror(errno));
    if (mix[0] && st.st_size == 0) return util_err(err, errlen, "data.mix.text: %s is empty", mix);
    return trainer_open_store(&s->tr, 0, NULL, NULL, err, errlen);
}

// The model from `from` (model.init, or OUT.DIR/last when resuming), its tokenizer, the data, the
// pretraining mix and held-out text, and the micro-batches.
static int setup_model(Sft *s, const char *from, int resumed, char *err, size_t errlen) {
    const char *init = config_get_string(s->cfg, "model.init");
    ModelConfig c;
    if (adapter_load_config(from, &c, NULL, err, errlen)) return -1;
    if (!c.lm_head)
        return util_err(err, errlen, "%s has no LM head: sft needs a language model", from);
    c.score_head = 0;
    int64_t T = config_get_int(s->cfg, "train.seq_len");
    if (T == 0) T = c.max_seq_len < 2048 ? c.max_seq_len : 2048;   // Llama-family: 32k and more
    if (T > c.max_seq_len)
        return util_err(err, errlen, "train.seq_len %lld exceeds the model's context %d",
                        (long long)T, c.max_seq_len);
    s->T = (int)T;
    LoraConfig lc;
    if (adapter_settings(s->cfg, &c, 0, &lc, err, errlen)) return -1;
    s->use_lora = lc.r > 0;
    if (memory_check(s, &c, &lc, err, errlen)) return -1;
    if (model_init(&s->model, &c, s->B, s->T, s->use_lora ? MODEL_TRAIN_FROZEN : 1,
                   dist_main(&s->dist), err, errlen) ||
        adapter_load_base(from, &s->model, CKPT_IGNORE_SCORE,
                          s->use_lora ? adapter_base_dtype(s->cfg) : LOWP_FP32, err, errlen))
        return -1;
    if (s->use_lora) {   // fresh adapters (B = 0: exactly the base); a resume loads last/'s
        adapter_base_name(init, s->base_name, sizeof s->base_name);
        if (lora_init(&s->lora, &lc, &c, (int64_t)s->B * s->T, 1, err, errlen) ||
            lora_attach(&s->model, &s->lora, err, errlen))
            return -1;
        lora_init_weights(&s->lora, (uint64_t)config_get_int(s->cfg, "train.seed"), NULL);
        lora_bias_from_base(&s->lora, &s->model);
    }
    const char *tokdir = config_get_string(s->cfg, "model.tokenizer");
    if (tok_load(&s->tok, tokdir[0] ? tokdir : init, err, errlen) ||
        chat_template_load(&s->chat, tokdir[0] ? tokdir : init,
                           config_get_string(s->cfg, "data.chat_template"), err, errlen))
        return -1;
    if (ckpt_check_tokenizer(from, c.vocab_size, tokdir[0] ? tokdir : init, tok_vocab_size(s->tok),
                             err, errlen))
        return -1;
    if (load_data(s, err, errlen) || load_mix(s, resumed, err, errlen) ||
        trainer_pretrain_open(&s->pre, &s->tr, s->tok, c.vocab_size, s->T, err, errlen))
        return -1;
    s->micro = CALLOC_CHECK((size_t)s->accum, sizeof(DataBatch));
    for (int a = 0; a < s->accum; a++) data_batch_init(&s->micro[a], s->B, s->T);
    return 0;
}

// Resuming: the weights, moments, step, data cursor and best held-out loss of OUT.DIR/last.
static int resume_state(Sft *s, CkptTrainerState *st, char *err, size_t errlen) {
    DataCursor cur;
    if ((s->use_lora ? adapter_resume(s->tr.last_dir, &s->lora, st, err, errlen)
                     : ckpt_load_trainer_state(s->tr.last_dir, &s->model, st, err, errlen)) ||
        data_cursor_load(&cur, st, "train", err, errlen) ||
        (s->text ? tokfile_iter_seek(&s->tf_it, &cur, err, errlen)
                 : dataset_iter_seek(s->train_it, &cur, err, errlen)) ||
        ckpt_state_get_int(st, "run_id", &s->tr.run_id, err, errlen))
        return -1;
    if (s->mix && (data_cursor_load(&cur, st, "mix", err, errlen) ||
                   tokfile_iter_seek(&s->mix_it, &cur, err, errlen)))
        return -1;
    s->step = st->step;
    s->rng = st->rng;
    double bv;
    if (ckpt_state_get_float(st, "best_val_loss", &bv, NULL, 0) == 0) s->best_val = bv;
    return 0;
}

static int setup(Sft *s, char *err, size_t errlen) {
    if (setup_run(s, err, errlen)) return -1;
    CkptTrainerState st;
    int resumed = trainer_try_resume(&s->tr, s->tr.last_dir, &st, err, errlen);
    if (resumed < 0) return -1;
    const char *init = config_get_string(s->cfg, "model.init");
    if (setup_model(s, resumed && !adapter_on(s->cfg) ? s->tr.last_dir : init, resumed, err,
                    errlen))
        return -1;
    cli_stop_defer();   // from here on a signal saves last/ and marks the run interrupted
    if (!resumed) {
        rng_init(&s->rng, (uint64_t)config_get_int(s->cfg, "train.seed"));
        return trainer_begin_run(&s->tr, 0, NULL, err, errlen);
    }
    if (resume_state(s, &st, err, errlen) ||
        trainer_begin_run(&s->tr, 1, s->tr.last_dir, err, errlen))
        return -1;
    trainer_note_resumed(&s->tr, "step", s->step, s->total_steps, "");
    return 0;
}

static void teardown(Sft *s) {
    if (s->micro) for (int a = 0; a < s->accum; a++) data_batch_free(&s->micro[a]);
    free(s->micro);
    if (s->mix) for (int a = 0; a < s->accum; a++) data_batch_free(&s->mix[a]);
    free(s->mix);
    tokfile_close(&s->tf_mix);
    trainer_pretrain_free(&s->pre);
    dataset_iter_free(s->train_it);
    dataset_free(s->ds);
    tokfile_close(&s->tf_train);
    tokfile_close(&s->tf_valid);
    tok_free(s->tok);
    chat_template_free(s->chat);
    model_free(&s->model);
    lora_free(&s->lora);
    trainer_close(&s->tr);
    config_free(s->cfg);
}

// One optimizer step's gradients: accum micro-batches, the loss a mean over all their target
// tokens. Every rank reads every micro-batch (cheap) so that all agree on the normaliser and the
// data order; rank r computes micro-batches r, r + size, ...; one allreduce sums them. A stop
// request is looked at between micro-batches, so that a step of any size ends within one
// micro-batch. With a pretraining mix, each micro-batch has a text micro-batch beside it; the
// weights make the step's loss (1 - W) x the mean over the data's target tokens + W x the mean
// over the text's. *ntgt: the step's target tokens (the data's); *mix_loss: the text's mean loss
// (0 without a mix). Returns 0, 1 when a stop cut the step short (not to be applied: its data
// cursors are put back, read again on resume), -1 on an error.
static int step_gradients(Sft *s, double *loss, double *mix_loss, int64_t *ntgt, char *err,
                          size_t errlen) {
    DataCursor cur0, mcur0;
    if (s->text) tokfile_iter_cursor(&s->tf_it, &cur0);
    else dataset_iter_cursor(s->train_it, &cur0);
    if (s->mix) tokfile_iter_cursor(&s->mix_it, &mcur0);
    for (int a = 0; a < s->accum && !cli_stop_signal(); a++) {
        if (s->text) tokfile_iter_next(&s->tf_it, &s->micro[a], 1.0f);
        else dataset_iter_next(s->train_it, &s->micro[a], 1.0f);
        if (s->mix) tokfile_iter_next(&s->mix_it, &s->mix[a], 1.0f);
    }
    *ntgt = data_batch_normalise(s->micro, s->accum);
    if (s->mix) {   // normalised weights are all 1/N: the shares replace them
        int64_t nmix = data_batch_normalise(s->mix, s->accum);
        for (int a = 0; a < s->accum; a++) {
            data_batch_set_weight(&s->micro[a], (float)((1.0 - s->mix_w) / (double)*ntgt));
            data_batch_set_weight(&s->mix[a], (float)(s->mix_w / (double)nmix));
        }
    }
    trainer_zero_grad(&s->model, lora_of(s));
    *loss = *mix_loss = 0;
    for (int a = s->dist.rank; a < s->accum; a += s->dist.size) {
        for (int k = 0; k < (s->mix ? 2 : 1); k++) {
            DataBatch *b = k ? &s->mix[a] : &s->micro[a];
            ModelBatch mb = {b->B, b->T, b->tokens, b->lengths, b->targets, b->weights};
            if (model_forward(&s->model, &mb, s->use_lora ? MODEL_DROPOUT : 0, err, errlen))
                return -1;
            model_backward(&s->model, &mb, NULL, NULL);
            *(k ? mix_loss : loss) += s->model.loss;
        }
        if (cli_stop_signal()) break;
    }
    int partial = cli_stop_signal() != 0;
    if (s->dist.size > 1) {
        trainer_allreduce_grads(&s->dist, &s->model, lora_of(s));
        // a signal seen by any rank stops all
        double red[3] = {*loss, (double)partial, *mix_loss};
        dist_allreduce_sum_double(&s->dist, red, 3);
        *loss = red[0];
        partial = red[1] > 0;
        *mix_loss = red[2];
    }
    if (s->mix) {   // each part as a mean over its own tokens
        *loss /= 1.0 - s->mix_w;
        *mix_loss /= s->mix_w;
    }
    if (!partial) return 0;
    if ((s->text ? tokfile_iter_seek(&s->tf_it, &cur0, err, errlen)
                 : dataset_iter_seek(s->train_it, &cur0, err, errlen)) ||
        (s->mix && tokfile_iter_seek(&s->mix_it, &mcur0, err, errlen)))
        return -1;
    return 1;
}

// The share of the step's loss weight on the mix's text tokens (the batches as they were fed).
static double mix_share(const Sft *s) {
    double w[2] = {0, 0};
    for (int k = 0; k < 2; k++)
        for (int a = 0; a < s->accum; a++) {
            const DataBatch *b = k ? &s->mix[a] : &s->micro[a];
            for (int64_t i = 0; i < (int64_t)b->B * b->T; i++) w[k] += b->weights[i];
        }
    return w[1] / (w[0] + w[1]);
}

// The step's metrics in the workspace (rank 0).
static int record_step(Sft *s, double loss, double mix_loss, float lr, float norm,
                       double tokens_per_s, char *err, size_t errlen) {
    Store *db = s->tr.db;
    int64_t id = s->tr.run_id, step = s->step;
    if (!db) return 0;
    if (store_add_metric(db, id, step, "train/loss", loss, err, errlen) ||
        store_add_metric(db, id, step, "train/lr", lr, err, errlen) ||
        store_add_metric(db, id, step, "train/grad_norm", norm, err, errlen) ||
        store_add_metric(db, id, step, "train/tokens_per_s", tokens_per_s, err, errlen))
        return -1;
    if (s->mix && (store_add_metric(db, id, step, "train/mix_loss", mix_loss, err, errlen) ||
                   store_add_metric(db, id, step, "train/mix_share", mix_share(s), err, errlen)))
        return -1;
    if (s->dist.size > 1 &&
        store_add_metric(db, id, step, "train/allreduce_s", s->dist.allreduce_s, err, errlen))
        return -1;
    return 0;
}

// The loss on eval.pretrain_text (rank 0), recorded as valid/pretrain_loss; "" when it is off.
static int evaluate_pretrain(Sft *s, char *line, size_t n, char *err, size_t errlen) {
    line[0] = '\0';
    if (!s->pre.ids) return 0;
    double pl;
    if (trainer_pretrain_loss(&s->pre, &s->model, s->B, &pl, err, errlen)) return -1;
    snprintf(line, n, "pretraining loss %.4f", pl);
    return store_add_metric(s->tr.db, s->tr.run_id, s->step, "valid/pretrain_loss", pl, err,
                            errlen);
}

// Held-out loss (rank 0): logged and recorded, best/ saved when it is the lowest yet, samples;
// the pretraining loss. Without held-out data (eval.pretrain_text only), the pretraining loss.
static int evaluate(Sft *s, CliProgress *pr, char *err, size_t errlen) {
    char pre[64];
    if (evaluate_pretrain(s, pre, sizeof pre, err, errlen)) return -1;
    if (pr->tty) cli_progress_end(pr);
    if (!s->has_valid) {
        fprintf(stderr, "sft: step %lld: %s\n", (long long)s->step, pre);
        return 0;
    }
    double vl = eval_loss(s);
    fprintf(stderr, "sft: step %lld: held-out loss %.4f%s%s%s\n", (long long)s->step, vl,
            vl < s->best_val ? " (best)" : "", pre[0] ? ", " : "", pre);
    if (store_add_metric(s->tr.db, s->tr.run_id, s->step, "valid/loss", vl, err, errlen)) return -1;
    if (vl < s->best_val) {
        s->best_val = vl;
        if (save_best(s, err, errlen)) return -1;
    }
    eval_samples(s);
    return 0;
}

static int train(Sft *s, char *err, size_t errlen) {
    AdamWConfig oc = trainer_adamw(s->cfg, "train.lr");
    LrSchedule sch = trainer_schedule(s->cfg, s->total_steps);
    int64_t eval_every = config_get_int(s->cfg, "eval.every");
    int64_t save_every = trainer_save_every(s->cfg);
    int64_t log_every = config_get_int(s->cfg, "log.every");
    CliProgress pr;
    cli_progress_start(&pr, stderr, "sft", s->total_steps);
    cli_progress_resume(&pr, s->step);
    double t_start = util_time_s();
    int64_t tokens_since = 0, first_step = s->step;
    int stop = 0;
    char pre[64] = "";   // the starting point of the pretraining loss
    if (s->step == 0 && dist_main(&s->dist) && evaluate_pretrain(s, pre, sizeof pre, err, errlen))
        return -1;
    if (s->step == 0 && pre[0] && dist_main(&s->dist))
        fprintf(stderr, "sft: step 0: %s\n", pre);
    while (s->step < s->total_steps && !stop) {
        double t0 = util_time_s(), loss, mix_loss;
        int64_t ntgt;
        int rc = step_gradients(s, &loss, &mix_loss, &ntgt, err, errlen);
        tokens_since += ntgt;
        if (rc < 0) return -1;
        if (rc == 1) {   // the step was cut short: not applied
            stop = 1;
            break;
        }
        float lr = lr_at(&sch, oc.lr, s->step);
        float norm = trainer_adamw_step(&s->model, lora_of(s), &oc, lr, s->step + 1);
        s->step++;
        if (!isfinite(loss) || !isfinite(norm))
            return util_err(err, errlen,
                            "step %lld: the loss or gradient is not finite (loss %g, grad norm %g); "
                            "lower train.lr",
                            (long long)s->step, loss, (double)norm);
        if (record_step(s, loss, mix_loss, lr, norm, (double)ntgt / (util_time_s() - t0), err,
                        errlen))
            return -1;
        char extra[128];
        double el = util_time_s() - t_start;
        int k = snprintf(extra, sizeof extra, "loss %.4f", loss);
        if (s->mix) k += snprintf(extra + k, sizeof extra - (size_t)k, " mix %.4f", mix_loss);
        snprintf(extra + k, sizeof extra - (size_t)k, " lr %.2e %.0f tok/s", lr,
                 el > 0 ? tokens_since / el : 0.0);
        if (!dist_main(&s->dist)) {}
        else if (pr.tty) cli_progress_update(&pr, s->step, extra);
        else if (s->step % log_every == 0 || s->step == s->total_steps ||
                 s->step == first_step + 1) {
            char f[160];
            cli_progress_format(&pr, s->step, f, sizeof f);
            fprintf(stderr, "sft: step %s %s\n", f, extra);
        }
        int last = s->step == s->total_steps;
        if ((s->step % eval_every == 0 || last) && (s->has_valid || s->pre.ids) &&
            dist_main(&s->dist) && evaluate(s, &pr, err, errlen))
            return -1;
        if ((s->step % save_every == 0 || last) && save_last(s, err, errlen)) return -1;
        stop = cli_stop_signal() != 0;
        if (s->dist.size > 1) {
            double f = stop;
            dist_allreduce_sum_double(&s->dist, &f, 1);
            stop = f > 0;
        }
    }
    if (pr.tty && dist_main(&s->dist)) cli_progress_end(&pr);
    double el = util_time_s() - t_start;
    if (dist_main(&s->dist) && s->step > first_step)
        fprintf(stderr, "sft: trained %lld steps, %lld target tokens in %.2f s: %.1f tokens/s\n",
                (long long)(s->step - first_step), (long long)tokens_since, el,
                el > 0 ? (double)tokens_since / el : 0.0);
    if (stop) return save_last(s, err, errlen) ? -1 : trainer_stopped(&s->tr, "step", s->step);
    // without held-out data, best = last
    if (!s->has_valid && save_best(s, err, errlen)) return -1;
    return 0;
}

int main(int argc, char **argv) {
    blas_startup("sft", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    Sft s;
    memset(&s, 0, sizeof s);
    dist_init(&s.dist, &argc, &argv);
    int early = trainer_config(&s.cfg, &s.dist, SFT_SCHEMA, "sft", usage, argc - 1, argv + 1);
    if (early >= 0) return early;
    char err[1024];
    int rc = setup(&s, err, sizeof err);
    if (rc == 0 && dist_main(&s.dist)) {
        if (s.dist.size > 1)
            fprintf(stderr,
                    "sft: %d ranks, each computing %d of the %d micro-batches of every step\n",
                    s.dist.size, s.accum / s.dist.size, s.accum);
        fprintf(stderr,
                "sft: run %lld, %lld steps of %d x %d sequences of up to %d tokens, config %s\n",
                (long long)s.tr.run_id, (long long)s.total_steps, s.accum, s.B, s.T, s.tr.hash);
    }
    if (rc == 0) rc = train(&s, err, sizeof err);
    int code = trainer_finish(&s.tr, rc, err);
    if (rc == 0 && dist_main(&s.dist)) {
        if (s.dist.size > 1)
            fprintf(stderr, "sft: %d ranks, weights identical on every rank at every save; %.3f "
                    "s in allreduce (%.4f s per step)\n",
                    s.dist.size, s.dist.allreduce_s,
                    s.step ? s.dist.allreduce_s / (double)s.step : 0.0);
        fprintf(stderr, "sft: done: %s (last), %s (best)\n", s.tr.last_dir, s.tr.final_dir);
    }
    teardown(&s);
    if (rc < 0 && s.dist.size > 1) dist_abort(&s.dist, 1);   // the others may wait in an allreduce
    dist_finalize(&s.dist);
    return code;
}
