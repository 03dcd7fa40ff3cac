// trainer: the setup the training programs share (see trainer.h).
#include "trainer.h"
#include "adapter.h"
#include "fileio.h"
#include "cli.h"
#include "tokfile.h"
#include "util.h"
#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

AdamWConfig trainer_adamw(const Config *cfg, const char *lr_key) {
    AdamWConfig o = {.lr = (float)config_get_double(cfg, lr_key),
                     .beta1 = (float)config_get_double(cfg, "train.beta1"),
                     .beta2 = (float)config_get_double(cfg, "train.beta2"),
                     .eps = (float)config_get_double(cfg, "train.eps"),
                     .weight_decay = (float)config_get_double(cfg, "train.weight_decay"),
                     .grad_clip = (float)config_get_double(cfg, "train.grad_clip")};
    return o;
}

LrSchedule trainer_schedule(const Config *cfg, int64_t total_steps) {
    int cosine = !strcmp(config_get_string(cfg, "train.schedule"), "cosine");
    LrSchedule s = {.kind = cosine ? LR_COSINE : LR_CONSTANT,
                    .warmup_steps = config_get_int(cfg, "train.warmup_steps"),
                    .total_steps = total_steps,
                    .min_lr_frac = (float)config_get_double(cfg, "train.min_lr_frac")};
    return s;
}

int64_t trainer_save_every(const Config *cfg) {
    int64_t every = config_get_int(cfg, "save.every");
    return every ? every : config_get_int(cfg, "eval.every");
}

void trainer_save_format(const Config *cfg, CkptSaveOptions *so) {
    so->save_dtype = strcmp(config_get_string(cfg, "save.dtype"), "bfloat16") ? CKPT_DTYPE_FLOAT32
                                                                              : CKPT_DTYPE_BFLOAT16;
    so->max_shard_bytes = config_get_int(cfg, "save.max_shard_bytes");
}

int trainer_config(Config **cfg, Dist *d, const ConfigEntry *schema, const char *prog,
                   const char *usage, int argc, char **argv) {
    // past a file-size limit a write fails (EFBIG: a message, the old files kept) instead of
    // killing us
    signal(SIGXFSZ, SIG_IGN);
    char err[1024];
    if (config_new(cfg, schema, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", prog, err);
        dist_abort(d, 2);
    }
    int early = config_parse_args(*cfg, argc, argv, prog, usage);
    if (early >= 0) {
        config_free(*cfg);
        *cfg = NULL;
        dist_finalize(d);
        return early;
    }
    cli_stop_install(prog);
    return -1;
}

static int trainer_check(Trainer *t, char *err, size_t errlen) {
    const Config *cfg = t->cfg;
    if (optim_adamw_validate(config_get_double(cfg, "train.beta1"),
                             config_get_double(cfg, "train.beta2"),
                             config_get_double(cfg, "train.eps"), err, errlen))
        return -1;
    t->out_dir = config_get_string(cfg, "out.dir");
    if (!t->out_dir[0]) return util_err(err, errlen, "out.dir is required");
    for (const TrainerRequired *r = t->spec->required; r->key; r++)
        if (!config_get_string(cfg, r->key)[0])
            return util_err(err, errlen, "%s is required (%s)", r->key, r->what);
    return 0;
}

int trainer_init(Trainer *t, Config *cfg, Dist *d, const TrainerSpec *spec, char *err,
                 size_t errlen) {
    t->cfg = cfg;
    t->dist = d;
    t->spec = spec;
    if (trainer_check(t, err, errlen) || util_mkdir_p(t->out_dir, err, errlen)) return -1;
    snprintf(t->last_dir, sizeof t->last_dir, "%s/last", t->out_dir);
    snprintf(t->final_dir, sizeof t->final_dir, "%s/%s", t->out_dir, spec->result);
    const char *ws = config_get_string(cfg, "workspace");
    if (ws[0]) snprintf(t->db_path, sizeof t->db_path, "%s", ws);
    else snprintf(t->db_path, sizeof t->db_path, "%s/workspace.db", t->out_dir);
    config_hash(cfg, t->hash);
    int64_t threads = config_get_int(cfg, "train.threads");
    if (threads > 0) omp_set_num_threads((int)threads);
    return 0;
}

int trainer_open_store(Trainer *t, int all_ranks,
                       int (*prepare)(void *ctx, char *err, size_t errlen), void *ctx, char *err,
                       size_t errlen) {
    if (dist_main(t->dist) &&
        (store_open(&t->db, t->db_path, err, errlen) || store_reap_runs(t->db, NULL, err, errlen) ||
         (prepare && prepare(ctx, err, errlen))))
        return -1;
    if (!all_ranks) return 0;
    dist_barrier(t->dist);
    if (!dist_main(t->dist) && store_open(&t->db, t->db_path, err, errlen)) return -1;
    return 0;
}

uint64_t trainer_hash_u64(const Trainer *t) { return strtoull(t->hash, NULL, 16); }

int trainer_try_resume(Trainer *t, const char *dir, CkptTrainerState *st, char *err,
                       size_t errlen) {
    if (!config_get_bool(t->cfg, "train.resume")) return 0;
    ModelConfig c;
    CkptInfo info;
    // an adapter checkpoint (adapter.h) has no config.json, its moments are the adapter's
    if (adapter_is_dir(dir)) {
        char d[4096];
        if (ckpt_resolve(dir, d, sizeof d, NULL, NULL, 0) ||
            !fio_exists(d, "trainer_state.json"))
            return 0;
    } else if (ckpt_load_config(dir, &c, &info, NULL, 0) || !info.has_trainer_state) {
        return 0;
    }
    if (ckpt_load_trainer_state(dir, NULL, st, err, errlen)) return -1;
    int64_t h;
    if (ckpt_state_get_int(st, "config_hash", &h, err, errlen) ||
        (uint64_t)h != trainer_hash_u64(t))
        return util_err(err, errlen,
                        "%s holds a run with another configuration: use another out.dir, or "
                        "--set train.resume=false to start over",
                        t->last_dir);
    return 1;
}

int trainer_begin_run(Trainer *t, int resumed, const char *checkpoint, char *err,
                      size_t errlen) {
    if (!dist_main(t->dist) || !t->db) return 0;
    char *dump = config_dump_string(t->cfg);
    StoreRunInfo ri = {.stage = t->spec->stage, .program = t->spec->program, .config = dump,
                       .config_hash = t->hash};
    int rc = 0;
    if (!resumed) {
        rc = store_add_run(t->db, &ri, &t->run_id, err, errlen);
    } else {
        StoreRun r;
        if (store_get_run(t->db, t->run_id, &r, NULL, 0) == 0) store_run_free(&r);
        else {   // the database was replaced: record the run anew
            ri.checkpoint = checkpoint;
            rc = store_add_run(t->db, &ri, &t->run_id, err, errlen);
        }
        if (!rc) rc = store_set_run_status(t->db, t->run_id, STORE_RUN_RUNNING, 0, err, errlen);
    }
    free(dump);
    return rc ? -1 : 0;
}

void trainer_note_resumed(const Trainer *t, const char *unit, int64_t done, int64_t total,
                          const char *extra) {
    if (!dist_main(t->dist)) return;
    fprintf(stderr, "%s: resuming run %lld at %s %lld of %lld from %s%s\n", t->spec->stage,
            (long long)t->run_id, unit, (long long)done, (long long)total, t->last_dir, extra);
}

int trainer_begin_or_resume(Trainer *t, int resumed, CkptTrainerState *st, Model *m, Lora *lo,
                            int64_t *step, Rng *rng, int64_t total, char *err, size_t errlen) {
    cli_stop_defer();   // from here on a signal saves last/ and marks the run interrupted
    if (!resumed) {
        rng_init(rng, (uint64_t)config_get_int(t->cfg, "train.seed"));
        return trainer_begin_run(t, 0, NULL, err, errlen);
    }
    if ((lo ? adapter_resume(t->last_dir, lo, st, err, errlen)
            : ckpt_load_trainer_state(t->last_dir, m, st, err, errlen)) ||
        ckpt_state_get_int(st, "run_id", &t->run_id, err, errlen))
        return -1;
    *step = st->step;
    *rng = st->rng;
    if (trainer_begin_run(t, 1, t->last_dir, err, errlen)) return -1;
    trainer_note_resumed(t, "step", *step, total, "");
    return 0;
}

int trainer_same_weights(const Trainer *t, const Model *m) {
    return dist_identical(t->dist, m->params_memory, (int64_t)(m->num_params * sizeof(float)));
}

int trainer_same_trained(const Trainer *t, const Model *m, const Lora *lo) {
    if (!lo) return trainer_same_weights(t, m);
    return dist_identical(t->dist, lo->params, (int64_t)(lo->num_params * sizeof(float)));
}

void trainer_zero_grad(Model *m, Lora *lo) {
    if (lo) lora_zero_grad(lo);
    else model_zero_grad(m);
}

void trainer_allreduce_grads(Dist *d, Model *m, Lora *lo) {
    if (lo) dist_allreduce_sum(d, lo->grads, (int64_t)lo->num_params);
    else dist_allreduce_sum(d, m->grads_memory, (int64_t)m->num_params);
}

float trainer_adamw_step(Model *m, Lora *lo, const AdamWConfig *c, float lr, int64_t t) {
    return lo ? lora_adamw_step(lo, c, lr, t) : optim_adamw_step(m, c, lr, t);
}

void trainer_state_init(CkptTrainerState *st, int64_t step, const Rng *rng) {
    ckpt_state_init(st);
    st->step = step;
    st->rng = *rng;
}

int trainer_stop_status(void) { return cli_stop_signal() ? cli_stop_signal() : SIGINT; }

int trainer_stopped(const Trainer *t, const char *unit, int64_t done) {
    if (dist_main(t->dist))
        fprintf(stderr, "%s: interrupted by %s at %s %lld; saved %s (rerun the same command to "
                        "resume)\n",
                t->spec->stage, cli_stop_name(), unit, (long long)done, t->last_dir);
    return trainer_stop_status();
}

int trainer_finish(Trainer *t, int rc, const char *err) {
    if (rc < 0) dist_report_error(t->dist, t->spec->program, err);
    // the process's peak resident memory (this process only: a resumed run's is its last part's),
    // for comparing methods (pipelines/demo-methods.yaml)
    struct rusage ru;
    char e[256];
    if (rc == 0 && t->db && t->dist && dist_main(t->dist) && getrusage(RUSAGE_SELF, &ru) == 0)
        store_add_metric(t->db, t->run_id, 0, "run/peak_rss_bytes", (double)ru.ru_maxrss * 1024.0,
                         e, sizeof e);
    return store_finish_run(t->dist && dist_main(t->dist) ? t->db : NULL, t->run_id, rc,
                            t->spec ? t->spec->program : "");
}

void trainer_close(Trainer *t) {
    store_close(t->db);
    t->db = NULL;
}

// ---------------------------------------------------------------------------------------------
// Held-out pretraining loss

int trainer_pretrain_open(TrainerPretrain *p, const Trainer *t, const Tokenizer *tok,
                          int64_t model_vocab, int max_T, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    const char *text = config_get_string(t->cfg, "eval.pretrain_text");
    if (!text[0]) return 0;
    char path[4200], e[1024];
    snprintf(path, sizeof path, "%s/pretrain_eval.tok", t->out_dir);
    int rc = 0;
    if (dist_main(t->dist)) rc = tokfile_write_text(path, tok, &text, 1, NULL, NULL, e, sizeof e);
    dist_barrier(t->dist);
    if (rc) return util_err(err, errlen, "eval.pretrain_text: %s", e);
    TokFile f;
    memset(&f, 0, sizeof f);
    if (tokfile_open(&f, path, tok, model_vocab, e, sizeof e))
        return util_err(err, errlen, "eval.pretrain_text: %s", e);
    if (f.n_tokens < 2) {
        tokfile_close(&f);
        return util_err(err, errlen, "eval.pretrain_text: %s has no text (at least 2 tokens are "
                        "needed)", text);
    }
    p->W = f.n_tokens - 1 < max_T ? f.n_tokens - 1 : max_T;
    p->windows = (f.n_tokens - 1 + p->W - 1) / p->W;
    int64_t maxw = config_get_int(t->cfg, "eval.pretrain_max_windows");
    if (maxw && p->windows > maxw) p->windows = maxw;
    p->n = p->windows * p->W + 1 < f.n_tokens ? p->windows * p->W + 1 : f.n_tokens;
    p->ids = MALLOC_CHECK((size_t)p->n * sizeof(int32_t));
    tokfile_read(&f, 0, p->n, p->ids);
    tokfile_close(&f);
    return 0;
}

int trainer_pretrain_loss(const TrainerPretrain *p, Model *m, int max_B, double *loss, char *err,
                          size_t errlen) {
    int64_t W = p->W;
    int32_t *tok = CALLOC_CHECK((size_t)(max_B * W), sizeof(int32_t));
    int32_t *tgt = CALLOC_CHECK((size_t)(max_B * W), sizeof(int32_t));
    int32_t *len = CALLOC_CHECK((size_t)max_B, sizeof(int32_t));
    double total = 0;
    int rc = 0;
    for (int64_t w0 = 0; w0 < p->windows && !rc; w0 += max_B) {
        int rows = (int)(p->windows - w0 < max_B ? p->windows - w0 : max_B);
        for (int r = 0; r < rows; r++) {   // window w predicts ids[w W + 1 ..] from ids[w W ..]
            int64_t start = (w0 + r) * W, left = p->n - 1 - start;
            len[r] = (int32_t)(left < W ? left : W);
            memcpy(tok + r * W, p->ids + start, (size_t)len[r] * sizeof(int32_t));
            memcpy(tgt + r * W, p->ids + start + 1, (size_t)len[r] * sizeof(int32_t));
        }
        ModelBatch mb = {.B = rows, .T = (int)W, .tokens = tok, .lengths = len, .targets = tgt};
        rc = model_forward(m, &mb, 0, err, errlen);
        total += m->loss;
    }
    free(tok);
    free(tgt);
    free(len);
    *loss = rc ? NAN : total / (double)(p->n - 1);
    return rc;
}

void trainer_pretrain_free(TrainerPretrain *p) {
    free(p->ids);
    memset(p, 0, sizeof *p);
}
