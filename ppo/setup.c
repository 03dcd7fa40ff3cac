// ppo setup: configuration, prompts, pretraining tokens, the memory plan, the four models, and
// checkpoints with exact resume.
//
// OUT.DIR/last is one checkpoint of the whole training state, written as a group so that the
// policy, the value model and the EMA weights always belong to the same iteration:
//   last/policy   the policy, its AdamW moments and the trainer state (iteration, optimizer
//                 steps, RNG, prompt and pretraining cursors, KL coefficient, NaN-guard streak)
//   last/value    the value model, its moments and its optimizer step count
//   last/ema      the EMA of the policy weights (train.ema > 0 only)
// The group is written like a single checkpoint (checkpoint.h): into last.tmp.<pid>, then
// last -> last.old, last.tmp.<pid> -> last, remove last.old, fsyncing the directory between
// steps. A crash leaves last (complete), or only last.old (complete, restored on the next start),
// plus garbage that the next start removes.
// With adapters (lora.r > 0) last/policy and last/value are adapter checkpoints (adapter.h): the
// adapters, their moments and the same trainer state; the frozen bases are not rewritten.
#define _GNU_SOURCE   // nftw
#include "adapter.h"
#include "chat.h"
#include "cli.h"
#include "ppo_train.h"
#include "reward.h"
#include "util.h"
#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}
static int exists(const char *p) { struct stat st; return lstat(p, &st) == 0; }
// GenConfig.cancel: a pending stop request (SIGTERM, SIGINT, SIGHUP) ends generation.
static int stop_requested(void *unused) { (void)unused; return cli_stop_signal() != 0; }

static int fsync_dir(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return util_err(err, errlen, "%s: cannot open directory: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    return rc ? util_err(err, errlen, "%s: fsync: %s", path, strerror(errno)) : 0;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *f) {
    (void)sb; (void)flag; (void)f;
    return remove(p) && errno != ENOENT ? -1 : 0;
}
// Removes a directory tree this program wrote (last.old, last.tmp.*): files and directories only.
static int remove_tree(const char *path, char *err, size_t errlen) {
    if (!exists(path)) return 0;
    if (nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS))
        return util_err(err, errlen, "%s: cannot remove: %s", path, strerror(errno));
    return 0;
}

// Repairs OUT.DIR/last after an interrupted group save (see the top of the file).
static int group_recover(void *ctx, char *err, size_t errlen) {
    Ppo *s = ctx;
    char old[4200];
    snprintf(old, sizeof old, "%s.old", s->tr.last_dir);
    if (!exists(s->tr.last_dir) && is_dir(old)) {
        if (rename(old, s->tr.last_dir))
            return util_err(err, errlen, "%s: cannot rename to %s: %s", old, s->tr.last_dir,
                            strerror(errno));
        if (fsync_dir(s->tr.out_dir, err, errlen)) return -1;
    } else if (is_dir(s->tr.last_dir) && is_dir(old)) {
        if (remove_tree(old, err, errlen)) return -1;
    }
    DIR *d = opendir(s->tr.out_dir);
    if (!d)
        return util_err(err, errlen, "%s: cannot open directory: %s", s->tr.out_dir,
                        strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "last.tmp.", 9)) continue;
        char p[4400];
        snprintf(p, sizeof p, "%s/%s", s->tr.out_dir, e->d_name);
        if (is_dir(p) && remove_tree(p, err, errlen)) { rc = -1; break; }
    }
    closedir(d);
    return rc;
}


// ---------------------------------------------------------------------------------------------
// prompts

typedef struct {
    Ppo *s;
    int Tlimit;
    int trunc;               // 0 drop, 1 left, 2 error
    int64_t n_dropped, n_cut;
    char *err; size_t errlen;
} PromptCtx;

// (pre: the prompt's tokens when already encoded, taken over; NULL: encode text)
static int add_prompt(PromptCtx *c, const char *text, TokIds *pre, int64_t prompt_id,
                      const char *where) {
    Ppo *s = c->s;
    TokIds ids = {0};
    char e[512];
    if (pre) ids = *pre;
    else if (dataset_encode_prompt(s->ds, text, &ids, e, sizeof e)) {
        tok_ids_free(&ids);
        return util_err(c->err, c->errlen, "%s: %s", where, e);
    }
    if (ids.n == 0) {
        tok_ids_free(&ids);
        return util_err(c->err, c->errlen, "%s: the prompt renders to no tokens", where);
    }
    int32_t *p = ids.ids;
    size_t n = ids.n;
    if (n > (size_t)c->Tlimit) {
        if (c->trunc == 2) {
            tok_ids_free(&ids);
            return util_err(c->err, c->errlen, "%s: the prompt is %zu tokens, more than the %d "
                            "allowed (data.max_prompt_tokens, or the context minus "
                            "rollout.max_new_tokens); set data.truncation to drop or left",
                            where, n, c->Tlimit);
        }
        if (c->trunc == 0) { c->n_dropped++; tok_ids_free(&ids); return 0; }
        p += n - (size_t)c->Tlimit;   // left: keep the end, which the response continues
        n = (size_t)c->Tlimit;
        c->n_cut++;
    }
    if (s->n_prompts % 1024 == 0)
        s->prompts = REALLOC_ARRAY(s->prompts, (size_t)(s->n_prompts + 1024), sizeof(PpoPrompt));
    PpoPrompt *pp = &s->prompts[s->n_prompts++];
    pp->ids = MALLOC_CHECK(n * sizeof(int32_t));
    memcpy(pp->ids, p, n * sizeof(int32_t));
    pp->len = (int32_t)n;
    pp->prompt_id = prompt_id;
    pp->text = STRDUP_CHECK(text);
    tok_ids_free(&ids);
    return 0;
}

static int load_jsonl_prompts(PromptCtx *c, const char *path) {
    char *data;
    size_t len;
    if (cli_read_lines_file(path, &data, &len, c->err, c->errlen)) return -1;
    size_t i = 0;
    if (len >= 3 && (unsigned char)data[0] == 0xEF && (unsigned char)data[1] == 0xBB &&
        (unsigned char)data[2] == 0xBF)
        i = 3;
    int line = 0, rc = 0;
    int64_t before = c->s->n_prompts;
    while (i < len && rc == 0) {
        size_t j = i;
        while (j < len && data[j] != '\n') j++;
        line++;
        size_t e = j;
        if (e > i && data[e - 1] == '\r') e--;
        size_t k = i;
        while (k < e && (data[k] == ' ' || data[k] == '\t')) k++;
        char where[4200];
        snprintf(where, sizeof where, "%s:%d", path, line);
        if (k < e) {
            if (memchr(data + i, 0, e - i)) {
                rc = util_err(c->err, c->errlen, "%s: a NUL byte in the line", where);
                break;
            }
            const char *end = NULL;
            cJSON *o = cJSON_ParseWithLengthOpts(data + i, e - i, &end, 0);
            if (!o)
                rc = util_err(c->err, c->errlen, "%s: bad JSON near column %ld", where,
                              end ? (long)(end - (data + i)) + 1 : 1L);
            else if (!cJSON_IsObject(o))
                rc = util_err(c->err, c->errlen,
                              "%s: expected a JSON object with a \"prompt\" string", where);
            else {   // a string, or a message list (dataset_prompt_json)
                char *text = NULL;
                TokIds ids = {0};
                int64_t id = 0;
                char e2[512];
                rc = dataset_prompt_json(c->s->ds, o, &text, &ids, where, c->err, c->errlen);
                if (!rc && store_find_prompt(c->s->tr.db, text, &id, e2, sizeof e2))
                    rc = util_err(c->err, c->errlen, "%s", e2);
                if (!rc) rc = add_prompt(c, text, &ids, id, where);
                else tok_ids_free(&ids);
                free(text);
            }
            cJSON_Delete(o);
        }
        i = j + 1;
    }
    free(data);
    if (rc == 0 && c->s->n_prompts == before && c->n_dropped == 0)
        return util_err(c->err, c->errlen, "%s: no prompts in the file", path);
    return rc;
}

static int add_db_prompt(const StorePrompt *p, void *ctx) {
    PromptCtx *c = ctx;
    char where[128];
    snprintf(where, sizeof where, "workspace prompt %lld", (long long)p->id);
    TokIds ids = {0};   // a prompt rendered at import keeps its template's tokens, unwrapped
    if (p->rendered && dataset_encode_rendered_prompt(c->s->ds, p->text, &ids, c->err, c->errlen))
        return util_err_prefix(c->err, c->errlen, "%s: ", where), tok_ids_free(&ids), -1;
    return add_prompt(c, p->text, p->rendered ? &ids : NULL, p->id, where) ? -1 : 0;
}

static int load_prompts(Ppo *s, int context, char *err, size_t errlen) {
    DatasetOptions o = {.prompt_template = config_get_string(s->cfg, "data.prompt_template"),
                        .response_prefix = "",
                        .max_tokens = context,
                        .chat = s->chat,
                        .truncation = DATASET_TRUNCATE_ERROR};
    if (dataset_create(&s->ds, s->tok, &o, err, errlen)) return -1;
    int64_t mp = config_get_int(s->cfg, "data.max_prompt_tokens");
    PromptCtx c = {.s = s, .Tlimit = context - s->max_new, .err = err, .errlen = errlen};
    if (mp > 0 && mp < c.Tlimit) c.Tlimit = (int)mp;
    if (c.Tlimit < 1)
        return util_err(err, errlen, "rollout.max_new_tokens %d leaves no room for a prompt in "
                        "the context of %d tokens",
                        s->max_new, context);
    const char *tr = config_get_string(s->cfg, "data.truncation");
    c.trunc = !strcmp(tr, "drop") ? 0 : !strcmp(tr, "left") ? 1 : 2;
    if (!strcmp(config_get_string(s->cfg, "data.format"), "jsonl")) {
        const char *const *files;
        int64_t nf = config_get_list(s->cfg, "data.prompts", &files);
        if (nf == 0)
            return util_err(err, errlen, "data.prompts: no prompt files given (JSONL lines "
                            "{\"prompt\": ...}), or set data.format=db");
        for (int64_t i = 0; i < nf; i++)
            if (load_jsonl_prompts(&c, files[i])) return -1;
    } else if (store_each_prompt(s->tr.db, config_get_string(s->cfg, "data.split"), add_db_prompt,
                                 &c, err, errlen)) {
        return -1;
    }
    if (s->n_prompts == 0 && c.n_dropped)
        return util_err(err, errlen, "no prompts to train on: all %lld were longer than %d "
                        "tokens (see data.max_prompt_tokens, data.truncation)",
                        (long long)c.n_dropped, c.Tlimit);
    if (s->n_prompts == 0)
        return util_err(err, errlen, "no prompts to train on: %s has none in the %s split "
                        "(import some, or use data.format=jsonl)",
                        s->tr.db_path, config_get_string(s->cfg, "data.split"));
    s->Tp = 0;
    uint64_t fp = DATA_HASH_INIT;
    for (int64_t i = 0; i < s->n_prompts; i++) {
        if (s->prompts[i].len > s->Tp) s->Tp = s->prompts[i].len;
        fp = data_hash_u64(fp, (uint64_t)s->prompts[i].len);
        fp = data_hash_bytes(fp, s->prompts[i].ids, (size_t)s->prompts[i].len * sizeof(int32_t));
    }
    s->prompt_fp = data_hash_mix(fp);
    if (dist_main(&s->dist))
        fprintf(stderr, "ppo: %lld prompts, longest %d tokens; %lld dropped and %lld cut on the "
                "left as longer than %d\n",
                (long long)s->n_prompts, s->Tp, (long long)c.n_dropped, (long long)c.n_cut,
                c.Tlimit);
    s->order = MALLOC_CHECK((size_t)s->n_prompts * sizeof(int64_t));
    return 0;
}

// ---------------------------------------------------------------------------------------------
// pretraining tokens

// Before the models are allocated: tokenizing a text file holds the text and its tokens for a
// while, a transient that would otherwise add to the models' memory at the run's peak.
static int load_ptx(Ppo *s, int vocab_size, char *err, size_t errlen) {
    s->ptx_coef = (float)config_get_double(s->cfg, "ptx.coef");
    const char *const *files;
    int64_t nf = config_get_list(s->cfg, "ptx.data", &files);
    const char *tokpath = config_get_string(s->cfg, "ptx.tokens");
    if (s->ptx_coef == 0.0f) return 0;   // plain PPO
    if (nf == 0 && !tokpath[0])
        return util_err(err, errlen, "ptx.coef is %g (PPO-ptx) but no pretraining text is given: "
                        "set ptx.data (text files) or ptx.tokens (a token file), or ptx.coef=0 "
                        "for PPO without the pretraining mix",
                        (double)s->ptx_coef);
    if (nf > 0 && tokpath[0]) return util_err(err, errlen, "set ptx.data or ptx.tokens, not both");
    char path[4200];
    if (nf > 0) {
        snprintf(path, sizeof path, "%s/ptx.tok", s->tr.out_dir);
        // tokenized once (by rank 0), then memory-mapped on every run
        if (dist_main(&s->dist) && !exists(path)) {
            fprintf(stderr, "ppo: tokenizing %lld pretraining file(s) into %s\n", (long long)nf,
                    path);
            if (tokfile_write_text(path, s->tok, files, (size_t)nf, NULL, NULL, err, errlen))
                return -1;
        }
        dist_barrier(&s->dist);
        tokpath = path;
    }
    if (tokfile_open(&s->ptx_file, tokpath, s->tok, vocab_size, err, errlen))
        return -1;
    s->has_ptx = 1;
    TokfileIterOptions o = {.batch_size = s->ptx_chunk,
                            .seq_len = s->ptx_T,
                            .order = TOKFILE_SHUFFLED,
                            .seed = (uint64_t)config_get_int(s->cfg, "train.seed")};
    if (tokfile_iter_init(&s->ptx_it, &s->ptx_file, &o, err, errlen)) return -1;
    data_batch_init(&s->ptx_batch, s->ptx_chunk, s->ptx_T);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// models

// Reads a checkpoint's config for one of the four roles and checks it can play it.
static int role_config(const char *key, const char *dir, int want_lm, ModelConfig *c, char *err,
                       size_t errlen) {
    char e[1024];
    if (adapter_load_config(dir, c, NULL, e, sizeof e))
        return util_err(err, errlen, "%s: %s", key, e);
    if (want_lm) {
        if (!c->lm_head)
            return util_err(err, errlen, "%s: %s has no LM head: the policy and reference must "
                            "be language models (the SFT checkpoint)",
                            key, dir);
        c->score_head = 0;
    } else {
        if (!c->score_head)
            return util_err(err, errlen, "%s: %s has no score head (score.weight): it is not a "
                            "reward model; train one with the reward program",
                            key, dir);
        c->lm_head = 0;   // the value and reward models only read the scalar head
    }
    return 0;
}

// dir's weights into m, a base in fmt (adapter_load_base: converted as they are read)
static int load_role(const char *key, const char *dir, Model *m, int flags, LowpFormat fmt,
                     char *err, size_t errlen) {
    char e[1024];
    if (adapter_load_base(dir, m, flags, fmt, e, sizeof e))
        return util_err(err, errlen, "%s: %s", key, e);
    return 0;
}

// A frozen model's memory with its matrices in fmt (their fp32 freed: MODEL_LOWP_DROP_FP32).
size_t ppo_frozen_bytes(const ModelConfig *c, LowpFormat fmt, int B, int T) {
    size_t fp32 = model_memory_bytes(c, B, T, 0);
    if (fmt == LOWP_FP32) return fp32;
    return fp32 - (size_t)model_lowp_dropped_bytes(c) + (size_t)model_lowp_bytes(c, fmt);
}

typedef struct { const char *what; size_t bytes; char detail[160]; } PlanRow;

static int memory_plan(Ppo *s, const ModelConfig *pc, const ModelConfig *rc, const ModelConfig *wc,
                       const ModelConfig *vc, int max_rows, char *err, size_t errlen) {
    int pT = s->Tpos > s->ptx_T ? s->Tpos : s->ptx_T;
    PlanRow rows[10];
    int n = 0;
#define ROW(w, b, ...)                                                                             \
    do {                                                                                           \
        rows[n].what = (w);                                                                        \
        rows[n].bytes = (b);                                                                       \
        snprintf(rows[n].detail, sizeof rows[n].detail, __VA_ARGS__);                              \
        n++;                                                                                       \
    } while (0)
    const char *fz = s->prec_frozen ? lowp_format_name(s->prec_frozen) : "fp32";
    int64_t vT = s->Trw > s->Tpos ? s->Trw : s->Tpos;
    // what works in the policy's activations (share_scratch) takes no memory of its own
    size_t host = model_activation_bytes_for(pc, s->mbl, pT, s->use_lora ? MODEL_TRAIN_FROZEN : 1);
    size_t ref_acts = model_activation_bytes_for(rc, s->mbl, s->Tpos, 0);
    size_t rw_acts = model_activation_bytes_for(wc, s->mbl, s->Trw, 0);
    size_t kv_acts = kv_shared_bytes(pc, s->gen_B, s->Tseq, max_rows, s->prec_kv);
    ref_acts = ref_acts <= host ? ref_acts : 0;
    rw_acts = rw_acts <= host ? rw_acts : 0;
    kv_acts = kv_acts <= host ? kv_acts : 0;
    if (s->use_lora) {
        ROW("policy", adapter_base_bytes(pc, s->mbl, pT, s->base_dtype) +
                          lora_memory_bytes(&s->lora.cfg, pc, (int64_t)s->mbl * pT, 1),
            "frozen base (matrices in %s, activations for %d x %d) + LoRA r=%d adapters trained",
            lowp_format_name(s->base_dtype), s->mbl, pT, s->lora.cfg.r);
        ROW("reference", 0, "the policy's base with the adapters off: no copy");
    } else {
        ROW("policy", model_memory_bytes(pc, s->mbl, pT, 1),
            "trainable: weights, gradients, AdamW moments, activations for %d x %d", s->mbl, pT);
        ROW("reference", ppo_frozen_bytes(rc, s->prec_frozen, s->mbl, s->Tpos) - ref_acts,
            "frozen: weights (matrices in %s), one layer of activations for %d x %d%s", fz,
            s->mbl, s->Tpos, ref_acts ? " (in the policy's)" : "");
    }
    if (s->value_on_reward) {
        ROW("reward", adapter_base_bytes(wc, s->mbl, (int)vT, s->base_dtype),
            "frozen, score head: matrices in %s, activations for %d x %lld (the value's base "
            "too)", lowp_format_name(s->base_dtype), s->mbl, (long long)vT);
        ROW("value", lora_memory_bytes(&s->value_lora.cfg, wc, (int64_t)s->mbl * vT, 1),
            "LoRA r=%d adapters + score head on the reward model's base", s->value_lora.cfg.r);
    } else {
        ROW("reward", ppo_frozen_bytes(wc, s->prec_frozen, s->mbl, s->Trw) - rw_acts,
            "frozen, score head: weights (matrices in %s), one layer of activations for %d x %d%s",
            fz, s->mbl, s->Trw, rw_acts ? " (in the policy's)" : "");
    }
    if (s->prec_sample)
        ROW("sampling", model_lowp_bytes(pc, s->prec_sample), "the policy's %s copy",
            lowp_format_name(s->prec_sample));
    if (s->sample_merged)
        ROW("sampling", model_memory_bytes(pc, 1, 1, 0),
            "lora.sample merged: the policy with its adapters merged, for the rollouts");
    if (s->has_value && !s->value_on_reward)
        ROW("value", model_memory_bytes(vc, s->mbl, s->Tpos, 1),
            "trainable, score head: weights, gradients, moments, activations for %d x %d", s->mbl,
            s->Tpos);
    if (s->parts.n_rm > 1)
        ROW("reward+", ppo_parts_plan_bytes(s), "reward.models: %d more frozen reward models",
            s->parts.n_rm - 1);
    if (s->has_ema)
        ROW("ema", model_memory_bytes(pc, 1, 1, 0), "EMA of the policy weights (decay %g)",
            (double)s->ema_decay);
    ROW("kv cache", kv_memory_bytes_as(pc, s->gen_B, s->Tseq, max_rows, s->prec_kv) - kv_acts,
        "generation: %d sequences x %d positions, %s%s", s->gen_B, s->Tseq,
        lowp_format_name(s->prec_kv), kv_acts ? " (in the policy's activations)" : "");
    size_t R = (size_t)s->R, rollout = R * s->Tseq * 4 + R * s->Tpos * (7 * 4 + 1) + R * 40 +
                                       (size_t)s->mbl * (s->Tseq + 1) * (3 * 4 + 5 * 4) +
                                       R / s->dist.size * ((size_t)s->Tp + s->max_new + 2) * 4 +
                                       (size_t)pc->vocab_size * 8 +
                                       (size_t)s->ptx_chunk * s->ptx_T * 20;
    ROW("buffers", rollout, "%d rollouts, minibatch, generation and ptx batches", s->R);
#undef ROW
    size_t total = 0;
    for (int i = 0; i < n; i++) total += rows[i].bytes;
    double lim = config_get_double(s->cfg, "memory.limit_gb") * 1073741824.0;
    int from_config = lim > 0;
    if (!from_config) lim = util_mem_available();
    char b[32], t[32], l[32];
    util_format_bytes(t, sizeof t, (double)total);
    util_format_bytes(l, sizeof l, lim);
    if (dist_main(&s->dist)) {
        fprintf(stderr, "ppo: memory plan (%d rollouts of up to %d tokens, minibatch %d, "
                "generation batch %d)%s%s:\n",
                s->R, s->Tseq, s->mb, s->gen_B, s->dist.size > 1 ? ", per rank" : "",
                s->has_value ? "" : ", critic-free: no value model");
        for (int i = 0; i < n; i++) {
            util_format_bytes(b, sizeof b, (double)rows[i].bytes);
            fprintf(stderr, "ppo:   %-10s %10s  %s\n", rows[i].what, b, rows[i].detail);
        }
        fprintf(stderr, "ppo:   %-10s %10s  of %s %s\n", "total", t, l,
                from_config ? "(memory.limit_gb)"
                : lim > 0   ? "available (MemAvailable, ulimit -v)"
                            : "(unknown: not checked)");
    }
    if (lim > 0 && (double)total > lim)
        return util_err(err, errlen, "the memory plan needs %s but only %s is %s: lower "
                        "ppo.minibatch_size (activations of all four models), "
                        "rollout.generation_batch (KV cache), rollout.max_new_tokens or "
                        "data.max_prompt_tokens (sequence length)%s, or use smaller models",
                        t, l, from_config ? "allowed (memory.limit_gb)" : "available",
                        s->has_ema ? ", set train.ema=0" : "");
    return 0;
}

// ---------------------------------------------------------------------------------------------
// checkpoints

static int fill_state(Ppo *s, CkptTrainerState *st, int64_t step, int full, char *err,
                      size_t errlen) {
    trainer_state_init(st, step, &s->rng);
    if (ckpt_state_set_int(st, "config_hash", (int64_t)trainer_hash_u64(&s->tr), err, errlen) ||
        ckpt_state_set_int(st, "iteration", s->iteration, err, errlen)) return -1;
    if (!full) return 0;
    if (ckpt_state_set_int(st, "run_id", s->tr.run_id, err, errlen) ||
        ckpt_state_set_int(st, "value_steps", s->value_steps, err, errlen) ||
        ckpt_state_set_int(st, "prompts.epoch", s->prompt_epoch, err, errlen) ||
        ckpt_state_set_int(st, "prompts.index", s->prompt_index, err, errlen) ||
        ckpt_state_set_int(st, "prompts.fingerprint", (int64_t)s->prompt_fp, err, errlen) ||
        ckpt_state_set_int(st, "bad_streak", s->bad_streak, err, errlen) ||
        ckpt_state_set_float(st, "kl.beta", s->kl.beta, err, errlen) ||
        ppo_parts_save_state(s, st, err, errlen)) return -1;
    if (s->has_ptx) {
        DataCursor c;
        tokfile_iter_cursor(&s->ptx_it, &c);
        if (data_cursor_save(&c, st, "ptx", err, errlen)) return -1;
    }
    return 0;
}

// The adapters that train the policy and the value model, or NULL where the whole model does.
static Lora *policy_lora(Ppo *s) { return s->use_lora ? &s->lora : NULL; }
static Lora *value_lora(Ppo *s) { return s->value_on_reward ? &s->value_lora : NULL; }

// 1 when the policy, value and EMA weights are the same bytes on every rank.
static int ranks_identical(Ppo *s) {
    int same = trainer_same_trained(&s->tr, &s->policy, policy_lora(s));
    if (s->has_value) same &= trainer_same_trained(&s->tr, ppo_value_model(s), value_lora(s));
    if (s->has_ema) same &= trainer_same_weights(&s->tr, &s->ema);
    return same;
}

int ppo_save_last(Ppo *s, char *err, size_t errlen) {
    if (!ranks_identical(s))
        return util_err(err, errlen, "iteration %lld: the ranks' weights differ",
                        (long long)s->iteration);
    if (!dist_main(&s->dist)) { s->saved_iteration = s->iteration; return 0; }
    char tmp[4200], old[4200], p[4300], e2[256];
    if (group_recover(s, err, errlen)) return -1;
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", s->tr.last_dir, (long)getpid());
    snprintf(old, sizeof old, "%s.old", s->tr.last_dir);
    if (remove_tree(tmp, err, errlen)) return -1;
    if (mkdir(tmp, 0777))
        return util_err(err, errlen, "%s: cannot create: %s", tmp, strerror(errno));
    CkptTrainerState pst, vst;
    int eot = tok_eot(s->tok);
    CkptSaveOptions so = {.tokenizer_dir = s->tok_dir,
                          .has_token_ids = eot >= 0,
                          .bos_token_id = eot,
                          .eos_token_id = eot};
    CkptSaveOptions sp = so, sv = so;
    sp.state = &pst;
    sv.state = &vst;
    sv.tokenizer_dir = NULL;
    int moved = 0;
    if (fill_state(s, &pst, s->policy_steps, 1, err, errlen) ||
        fill_state(s, &vst, s->value_steps, 0, err, errlen))
        goto fail;
    snprintf(p, sizeof p, "%s/policy", tmp);
    if (s->use_lora ? adapter_save(p, &s->lora, s->policy_base, 0, s->tok_dir, &pst, err, errlen)
                    : ckpt_save(p, &s->policy, &sp, err, errlen))
        goto fail;
    snprintf(p, sizeof p, "%s/value", tmp);
    if (s->value_on_reward
            ? adapter_save(p, &s->value_lora, s->value_base, 1, NULL, &vst, err, errlen)
            : s->has_value && ckpt_save(p, &s->value, &sv, err, errlen))
        goto fail;
    if (s->has_ema) {
        snprintf(p, sizeof p, "%s/ema", tmp);
        if (ckpt_save(p, &s->ema, &so, err, errlen)) goto fail;
    }
    if (fsync_dir(tmp, err, errlen)) goto fail;
    if (is_dir(s->tr.last_dir)) {
        if (rename(s->tr.last_dir, old)) {
            util_err(err, errlen, "%s: cannot rename to %s: %s", s->tr.last_dir, old,
                     strerror(errno));
            goto fail;
        }
        moved = 1;
        if (fsync_dir(s->tr.out_dir, err, errlen)) goto fail;
    }
    if (rename(tmp, s->tr.last_dir)) {
        util_err(err, errlen, "%s: cannot rename to %s: %s", tmp, s->tr.last_dir, strerror(errno));
        goto fail;
    }
    if (fsync_dir(s->tr.out_dir, err, errlen)) return -1;
    if (moved && remove_tree(old, e2, sizeof e2) == 0) fsync_dir(s->tr.out_dir, e2, sizeof e2);
    s->saved_iteration = s->iteration;
    snprintf(p, sizeof p, "%s/policy", s->tr.last_dir);
    return store_set_run_checkpoint(s->tr.db, s->tr.run_id, p, err, errlen);
fail:
    if (moved && !exists(s->tr.last_dir)) rename(old, s->tr.last_dir);
    remove_tree(tmp, e2, sizeof e2);
    return -1;
}

int ppo_save_final(Ppo *s, char *err, size_t errlen) {
    if (!ranks_identical(s)) return util_err(err, errlen, "the ranks' final weights differ");
    if (!dist_main(&s->dist)) return 0;
    int eot = tok_eot(s->tok);
    CkptSaveOptions so = {.tokenizer_dir = s->tok_dir,
                          .has_token_ids = eot >= 0,
                          .bos_token_id = eot,
                          .eos_token_id = eot};
    trainer_save_format(s->cfg, &so);
    if (s->use_lora ? adapter_save(s->tr.final_dir, &s->lora, s->policy_base, 0, s->tok_dir, NULL,
                                   err, errlen)
                    : ckpt_save(s->tr.final_dir, s->has_ema ? &s->ema : &s->policy, &so, err,
                                errlen))
        return -1;
    return store_set_run_checkpoint(s->tr.db, s->tr.run_id, s->tr.final_dir, err, errlen);
}

int ppo_restore_last(Ppo *s, char *err, size_t errlen) {
    char p[4300];
    snprintf(p, sizeof p, "%s/policy", s->tr.last_dir);
    CkptTrainerState st;
    if (!is_dir(s->tr.last_dir) || ckpt_load_trainer_state(p, NULL, &st, NULL, 0)) return -1;
    int64_t it;
    if (ckpt_state_get_int(&st, "iteration", &it, err, errlen) ||
        (s->use_lora ? adapter_resume(p, &s->lora, &st, err, errlen)
                     : load_role("last/policy", p, &s->policy, CKPT_IGNORE_SCORE, LOWP_FP32,
                                 err, errlen)))
        return -1;
    snprintf(p, sizeof p, "%s/value", s->tr.last_dir);
    if (s->value_on_reward
            ? adapter_resume(p, &s->value_lora, &st, err, errlen)
            : s->has_value && load_role("last/value", p, &s->value, 0, LOWP_FP32, err, errlen))
        return -1;
    if (!s->use_lora && model_lowp_refresh(&s->policy, err, errlen)) return -1;
    s->iteration = it;
    return 0;
}

static void read_settings(Ppo *s) {
    Config *c = s->cfg;
    s->R = (int)config_get_int(c, "rollout.batch_size");
    s->gen_B = (int)config_get_int(c, "rollout.generation_batch");
    if (s->gen_B == 0 || s->gen_B > s->R / s->dist.size)
        s->gen_B = s->R / s->dist.size;   // each rank generates R/N
    if (s->gen_B < 1) s->gen_B = 1;
    s->max_new = (int)config_get_int(c, "rollout.max_new_tokens");
    // the enums' choices are in LowpFormat's order (fp32, bf16, int8)
    s->prec_sample = (LowpFormat)config_get_enum(c, "precision.sample");
    s->prec_frozen = (LowpFormat)config_get_enum(c, "precision.frozen");
    s->prec_kv = (LowpFormat)config_get_enum(c, "precision.kv_cache");
    s->mb = (int)config_get_int(c, "ppo.minibatch_size");
    s->mbl = s->mb / s->dist.size;
    s->epochs = (int)config_get_int(c, "ppo.epochs");
    s->iterations = config_get_int(c, "train.iterations");
    s->clip = (float)config_get_double(c, "ppo.clip");
    s->value_clip = (float)config_get_double(c, "ppo.value_clip");
    s->gamma = (float)config_get_double(c, "ppo.gamma");
    s->lam = (float)config_get_double(c, "ppo.lambda");
    s->whiten = config_get_bool(c, "ppo.whiten_advantages");
    const char *algo = config_get_string(c, "algorithm");
    s->algo = !strcmp(algo, "grpo")   ? PPO_ADV_GRPO
              : !strcmp(algo, "rloo") ? PPO_ADV_RLOO
                                      : PPO_ALGO;
    s->has_value = s->algo == PPO_ALGO;
    s->group = (int)config_get_int(c, "rollout.group_size");
    s->scale_std = config_get_bool(c, "grpo.scale_std");
    s->kl_loss = !strcmp(config_get_string(c, "kl.mode"), "loss");
    s->max_bad = (int)config_get_int(c, "ppo.max_bad_minibatches");
    s->eos_penalty = (float)config_get_double(c, "reward.missing_eos_penalty");
    s->score_clip = (float)config_get_double(c, "reward.clip");
    s->close_unfinished = !strcmp(config_get_string(c, "reward.score_unfinished"), "end_token");
    s->ema_decay = (float)config_get_double(c, "train.ema");
    s->has_ema = s->ema_decay > 0.0f;
    s->nan_from = config_get_int(c, "debug.nan_from_iteration");
    s->gen.max_new_tokens = s->max_new;
    s->gen.sampler.temperature = (float)config_get_double(c, "rollout.temperature");
    s->gen.sampler.top_k = (int)config_get_int(c, "rollout.top_k");
    s->gen.sampler.top_p = (float)config_get_double(c, "rollout.top_p");
    s->gen.share_prompts = s->group > 1;   // a group's completions prefill its prompt once
    s->opt_policy = trainer_adamw(c, "train.policy_lr");
    s->opt_value = trainer_adamw(c, "train.value_lr");
    // total_steps is known once the iterations' minibatch count is (setup_lengths)
    s->sched = trainer_schedule(c, 0);
    s->kl.beta = config_get_double(c, "kl.beta");
    s->kl.adaptive = !strcmp(config_get_string(c, "kl.controller"), "adaptive");
    s->kl.target = config_get_double(c, "kl.target");
    s->kl.horizon = config_get_double(c, "kl.horizon");
    s->prompt_seed = (uint64_t)config_get_int(c, "train.seed");
}

static void alloc_buffers(Ppo *s) {
    size_t R = (size_t)s->R, RT = R * (size_t)s->Tpos, M = (size_t)s->mbl * (s->Tseq + 1);
    s->seq = CALLOC_CHECK(R * s->Tseq, sizeof(int32_t));
    s->plen = CALLOC_CHECK(R, sizeof(int32_t));
    s->rlen = CALLOC_CHECK(R, sizeof(int32_t));
    s->ended = CALLOC_CHECK(R, sizeof(int32_t));
    s->pidx = CALLOC_CHECK(R, sizeof(int64_t));
    s->score = CALLOC_CHECK(R, sizeof(float));
    s->ep_reward = CALLOC_CHECK(R, sizeof(float));
    s->ep_adv = CALLOC_CHECK(R, sizeof(float));
    s->shaped = CALLOC_CHECK(R, sizeof(float));
    float **f[7] = {&s->old_logp, &s->ref_logp, &s->old_values, &s->rewards,
                    &s->adv,      &s->ret,      &s->entropy};
    for (int i = 0; i < 7; i++) *f[i] = CALLOC_CHECK(RT, sizeof(float));
    s->mask = CALLOC_CHECK(RT, 1);
    s->perm = CALLOC_CHECK(R, sizeof(int32_t));
    s->b_tok = CALLOC_CHECK(M, sizeof(int32_t));
    s->b_tgt = CALLOC_CHECK(M, sizeof(int32_t));
    s->b_len = CALLOC_CHECK((size_t)s->mbl, sizeof(int32_t));
    float **g[6] = {&s->b_logp, &s->b_old_logp, &s->b_adv, &s->b_weights, &s->b_dlogp, &s->b_ref};
    for (int i = 0; i < 6; i++) *g[i] = CALLOC_CHECK(M, sizeof(float));
    // this rank's rollouts queue for gen_B slots (continuous batching): buffers for all of them
    size_t share = (size_t)(s->R / s->dist.size);
    s->g_prompts = CALLOC_CHECK(share * s->Tp, sizeof(int32_t));
    s->g_plen = CALLOC_CHECK(share, sizeof(int32_t));
    s->g_out = CALLOC_CHECK(share * s->max_new, sizeof(int32_t));
    s->g_olen = CALLOC_CHECK(share, sizeof(int32_t));
    s->g_rng = CALLOC_CHECK(share, sizeof(Rng));
}

// The four models' checkpoints: where each starts (policy and value from OUT.DIR/last when
// resuming), in the order of PPO_ROLE_NAMES.
enum { ROLE_POLICY, ROLE_REFERENCE, ROLE_REWARD, ROLE_VALUE, N_ROLES };
static const char *const PPO_ROLE_NAMES[N_ROLES] = {"model.policy", "model.reference",
                                                     "model.reward", "model.value"};
typedef struct {
    const char *dir[N_ROLES];       // where each model's weights come from
    ModelConfig config[N_ROLES];
    char last_policy[4300], last_value[4300], last_ema[4300];   // under OUT.DIR/last
    int context;                    // the shortest context of the four
} PpoRoles;

// ---------------------------------------------------------------------------------------------
// adapters (lora.r > 0)

// What lora.* asks of ppo, before anything is loaded: the reference is the policy's base, and
// the value model the reward model's base with its own adapters unless lora.value is full.
static int adapter_settings_check(Ppo *s, const PpoRoles *m, char *err, size_t errlen) {
    Config *c = s->cfg;
    s->use_lora = adapter_on(c);
    if (!s->use_lora) return 0;
    if (strcmp(m->dir[ROLE_REFERENCE], m->dir[ROLE_POLICY]))
        return util_err(err, errlen, "model.reference: with lora.r > 0 the reference is the "
                        "policy's base with the adapters off; leave model.reference empty");
    if (config_get_double(c, "lora.dropout") != 0.0)
        return util_err(err, errlen, "lora.dropout must be 0 in ppo: dropout would make the "
                        "policy's training forwards differ from its rollouts' log-probs");
    if (s->has_ema)
        return util_err(err, errlen, "train.ema: an EMA of the weights with lora.r > 0 is not "
                        "supported; set train.ema=0");
    int full = !strcmp(config_get_string(c, "lora.value"), "full");
    if (s->has_value && !full && strcmp(m->dir[ROLE_VALUE], m->dir[ROLE_REWARD]))
        return util_err(err, errlen, "model.value: lora.value adapter trains the value on the "
                        "reward model's base; leave model.value empty or set lora.value=full");
    s->value_on_reward = s->has_value && !full;
    s->sample_merged = !strcmp(config_get_string(c, "lora.sample"), "merged");
    s->base_dtype = adapter_base_dtype(c);
    if (s->sample_merged && s->base_dtype != LOWP_FP32)
        return util_err(err, errlen, "lora.sample merged: a merged copy needs the base's fp32 "
                        "weights, which lora.base_dtype %s frees; use lora.sample=unmerged",
                        adapter_dtype_name(s->base_dtype));
    // the rollouts read the policy's base and the reference is that base: a narrow copy of
    // either is the base stored in that format (lora.base_dtype), nothing beside it
    for (int k = 0; k < 2; k++) {
        LowpFormat f = k ? s->prec_frozen : s->prec_sample;
        if (f != LOWP_FP32 && f != s->base_dtype)
            return util_err(err, errlen, "precision.%s %s with lora.r > 0: the policy's frozen "
                            "base is %s (lora.base_dtype); set precision.%s to fp32 or "
                            "lora.base_dtype to %s", k ? "frozen" : "sample", lowp_format_name(f),
                            adapter_dtype_name(s->base_dtype), k ? "frozen" : "sample",
                            adapter_dtype_name(f));
    }
    s->prec_sample = LOWP_FP32;   // no copy: the rollouts read the base as stored
    return 0;
}

// The adapters' configs once the models' are known (the memory plan reads them).
static int adapter_configs(Ppo *s, const PpoRoles *m, char *err, size_t errlen) {
    if (!s->use_lora) return 0;
    LoraConfig lc;
    if (adapter_settings(s->cfg, &m->config[ROLE_POLICY], 0, &lc, err, errlen)) return -1;
    s->lora.cfg = lc;   // lora_init fills the rest
    adapter_base_name(m->dir[ROLE_POLICY], s->policy_base, sizeof s->policy_base);
    if (!s->value_on_reward) return 0;
    // the value trains its score head (a copy of the reward model's) beside its adapters
    if (adapter_settings(s->cfg, &m->config[ROLE_REWARD], 1, &lc, err, errlen)) return -1;
    lc.train_score = 1;
    s->value_lora.cfg = lc;
    adapter_base_name(m->dir[ROLE_REWARD], s->value_base, sizeof s->value_base);
    return 0;
}

// Fresh adapters (B = 0: the policy starts as its base, the value as the reward model), attached;
// a resume then loads last/'s. reward_T: the rows of the reward model (the value's base).
static int init_adapters(Ppo *s, int reward_T, char *err, size_t errlen) {
    if (!s->use_lora) return 0;
    LoraConfig lc = s->lora.cfg;
    uint64_t seed = (uint64_t)config_get_int(s->cfg, "train.seed");
    if (lora_init(&s->lora, &lc, &s->policy.config,
                  (int64_t)s->policy.max_B * s->policy.max_T, 1, err, errlen) ||
        lora_attach(&s->policy, &s->lora, err, errlen))
        return util_err_prefix(err, errlen, "model.policy: ");
    lora_init_weights(&s->lora, seed, NULL);
    lora_bias_from_base(&s->lora, &s->policy);
    if (s->sample_merged) {
        char e[512];
        if (model_init(&s->sample, &s->policy.config, 1, 1, 0, 0, e, sizeof e))
            return util_err(err, errlen, "lora.sample merged: %s", e);
    }
    if (!s->value_on_reward) return 0;
    lc = s->value_lora.cfg;
    if (lora_init(&s->value_lora, &lc, &s->reward.config, (int64_t)s->mbl * reward_T, 1, err,
                  errlen) ||
        lora_attach(&s->reward, &s->value_lora, err, errlen))
        return util_err_prefix(err, errlen, "value adapters: ");
    lora_init_weights(&s->value_lora, seed + 1, s->reward.params.scorew);
    lora_bias_from_base(&s->value_lora, &s->reward);
    return 0;
}

Model *ppo_reference(Ppo *s, int *flags) {
    *flags = s->use_lora ? MODEL_NO_LORA : 0;
    return s->use_lora ? &s->policy : &s->ref;
}

Model *ppo_value_model(Ppo *s) { return s->value_on_reward ? &s->reward : &s->value; }

int ppo_reward_flags(const Ppo *s) { return s->value_on_reward ? MODEL_NO_LORA : 0; }

void ppo_zero_grads(Ppo *s) {
    trainer_zero_grad(&s->policy, policy_lora(s));
    if (s->has_value) trainer_zero_grad(ppo_value_model(s), value_lora(s));
}

void ppo_allreduce_grads(Ppo *s) {
    trainer_allreduce_grads(&s->dist, &s->policy, policy_lora(s));
    if (s->has_value) trainer_allreduce_grads(&s->dist, ppo_value_model(s), value_lora(s));
}

void ppo_grad_norms(Ppo *s, float *gp, float *gv) {
    *gp = s->use_lora ? lora_grad_norm(&s->lora) : optim_grad_norm(&s->policy);
    *gv = s->value_on_reward ? lora_grad_norm(&s->value_lora)
          : s->has_value     ? optim_grad_norm(&s->value)
                             : 0.0f;
}

float ppo_adamw(Ppo *s, int value, float lr, int64_t t) {
    if (value) return trainer_adamw_step(ppo_value_model(s), value_lora(s), &s->opt_value, lr, t);
    return trainer_adamw_step(&s->policy, policy_lora(s), &s->opt_policy, lr, t);
}

Model *ppo_sampling_model(Ppo *s, char *err, size_t errlen) {
    if (!s->sample_merged) return &s->policy;
    return lora_merge_copy(&s->lora, &s->policy, &s->sample, err, errlen) ? NULL : &s->sample;
}

// The settings read once, the paths, and the workspace: opened (and OUT.DIR/last repaired) by
// rank 0, then opened by the other ranks to read.
static int setup_run(Ppo *s, PpoRoles *m, char *err, size_t errlen) {
    Config *cfg = s->cfg;
    static const TrainerSpec spec = {.stage = "ppo", .program = "ppo", .result = "policy",
                                     .required = {{"model.policy", "the SFT checkpoint"},
                                                  {"model.reward", "a reward model checkpoint"}}};
    if (trainer_init(&s->tr, cfg, &s->dist, &spec, err, errlen)) return -1;
    const char *pol = config_get_string(cfg, "model.policy");
    const char *ref = config_get_string(cfg, "model.reference");
    const char *rew = config_get_string(cfg, "model.reward"),
               *val = config_get_string(cfg, "model.value");
    const char *tokd = config_get_string(cfg, "model.tokenizer");
    m->dir[ROLE_POLICY] = pol;
    m->dir[ROLE_REFERENCE] = ref[0] ? ref : pol;
    m->dir[ROLE_REWARD] = rew;
    m->dir[ROLE_VALUE] = val[0] ? val : rew;
    snprintf(s->tok_dir, sizeof s->tok_dir, "%s", tokd[0] ? tokd : pol);
    read_settings(s);
    s->saved_iteration = -1;
    if (s->R % s->mb)
        return util_err(err, errlen,
                        "rollout.batch_size (%d) must be a multiple of ppo.minibatch_size (%d)",
                        s->R, s->mb);
    if (s->R % s->group)
        return util_err(err, errlen, "rollout.batch_size (%d) must be a multiple of "
                        "rollout.group_size (%d)", s->R, s->group);
    if (!s->has_value && s->group < 2)
        return util_err(err, errlen, "algorithm %s compares each completion with the others of "
                        "its prompt: set rollout.group_size to 2 or more (it is %d)",
                        config_get_string(cfg, "algorithm"), s->group);
    if (s->mb % s->dist.size)
        return util_err(err, errlen, "ppo.minibatch_size (%d) must be a multiple of the number "
                        "of ranks (%d): each rank takes an equal share of every minibatch",
                        s->mb, s->dist.size);
    if (adapter_settings_check(s, m, err, errlen)) return -1;
    return trainer_open_store(&s->tr, 1, group_recover, s, err, errlen);
}

static int setup_tokenizer(Ppo *s, char *err, size_t errlen) {
    if (tok_load(&s->tok, s->tok_dir, err, errlen)) return util_err_prefix(err, errlen, "tokenizer: ");
    s->gen.eot_id = tok_eot(s->tok);
    if (chat_template_load(&s->chat, s->tok_dir, config_get_string(s->cfg, "data.chat_template"),
                           err, errlen) ||
        chat_stop_ids(s->chat, s->tok, s->tok_dir, s->gen.stop_ids, GEN_MAX_STOP, &s->gen.n_stop,
                      err, errlen))
        return -1;
    // a stop ends generation between decoding steps
    if (s->dist.size == 1) s->gen.cancel = stop_requested;
    if (s->gen.eot_id < 0 && dist_main(&s->dist))
        fprintf(stderr, "ppo: warning: the tokenizer has no <|endoftext|>: responses always run to "
                        "rollout.max_new_tokens\n");
    return 0;
}

// Each role's config, checked for its part; one vocabulary, the shortest context.
static int load_role_configs(Ppo *s, PpoRoles *m, char *err, size_t errlen) {
    static const int want_lm[N_ROLES] = {1, 1, 0, 0};
    int roles = s->has_value ? N_ROLES : ROLE_VALUE;   // critic-free: no value model
    for (int i = 0; i < roles; i++)
        if (role_config(PPO_ROLE_NAMES[i], m->dir[i], want_lm[i], &m->config[i], err, errlen))
            return -1;
    const ModelConfig *pc = &m->config[ROLE_POLICY];
    m->context = pc->max_seq_len;
    // any block kinds may meet (a GPT-2 reward model scoring a Llama-style policy) as long as
    // every model reads the policy tokenizer's ids as their own
    for (int i = 1; i < roles; i++) {
        if (m->config[i].vocab_size != pc->vocab_size)
            return util_err(err, errlen, "%s has a vocabulary of %d tokens, model.policy %d: all "
                            "four models must share the tokenizer",
                            PPO_ROLE_NAMES[i], m->config[i].vocab_size, pc->vocab_size);
        if (strcmp(m->dir[i], m->dir[ROLE_POLICY]) &&
            reward_check_tokenizer(PPO_ROLE_NAMES[i], m->dir[i], &m->config[i], pc, s->tok_dir,
                                   s->tok, err, errlen))
            return -1;
        if (m->config[i].max_seq_len < m->context) m->context = m->config[i].max_seq_len;
    }
    return ckpt_check_tokenizer(config_get_string(s->cfg, "model.policy"), pc->vocab_size,
                                s->tok_dir, tok_vocab_size(s->tok), err, errlen);
}

// Sequence lengths from the prompts: Tseq, Tpos, the reward model's rows, and the pretraining
// batches (ptx.batch_size windows per minibatch, in chunks of at most mbl rows).
static int setup_lengths(Ppo *s, const PpoRoles *m, char *err, size_t errlen) {
    const ModelConfig *pc = &m->config[ROLE_POLICY];
    int reward_context = m->config[ROLE_REWARD].max_seq_len;
    s->Tseq = s->Tp + s->max_new;
    s->Tpos = s->Tseq - 1;
    if (s->Tpos < 1) s->Tpos = 1;
    s->Trw = s->Tseq + 1 <= reward_context ? s->Tseq + 1 : reward_context;
    s->ptx_T = (int)config_get_int(s->cfg, "ptx.seq_len");
    if (s->ptx_T == 0) s->ptx_T = s->Tpos;
    if (s->ptx_T > pc->max_seq_len)
        return util_err(err, errlen, "ptx.seq_len %d exceeds the policy's context %d", s->ptx_T,
                        pc->max_seq_len);
    s->ptx_B = (int)config_get_int(s->cfg, "ptx.batch_size");
    // InstructGPT: 8x as much pretraining data as episodes
    if (s->ptx_B == 0) s->ptx_B = 8 * s->mb;
    s->ptx_chunk = s->ptx_B < s->mbl ? s->ptx_B : s->mbl;
    if (s->ptx_B % s->ptx_chunk)
        return util_err(err, errlen, "ptx.batch_size (%d) must be a multiple of "
                        "ppo.minibatch_size (%d)%s when larger",
                        s->ptx_B, s->mb, s->dist.size > 1 ? " divided by the number of ranks" : "");
    if (config_get_double(s->cfg, "ptx.coef") == 0.0) {   // plain PPO
        s->ptx_T = 0;
        s->ptx_chunk = 0;
    }
    s->sched.total_steps = s->iterations * s->epochs * (s->R / s->mb);
    return 0;
}

// The frozen models and the KV cache work in the policy's activations, which are dead from the
// policy's last update of an iteration to its next scoring forward: that forward rewrites all it
// reads, and generation and the frozen models' forwards come before it (the update's first
// minibatch reuses it, and no frozen model runs between). So they have no pages of their own to
// fault in again every iteration (GPT-2 124M, B=16: 190,000 faults an iteration) and add nothing
// to the peak. One whose activations outgrow the policy's keeps its own, released after each
// use; so does the reward model that is the value's base (its activations are the value's).
// The memory plan counts the same (memory_plan).
static void share_scratch(Ppo *s) {
    Model *host = &s->policy;
    if (!s->use_lora) model_share_activations(&s->ref, host);
    if (!s->value_on_reward) model_share_activations(&s->reward, host);
    for (int k = 0; k + 1 < s->parts.n_rm; k++) model_share_activations(&s->parts.rm[k], host);
    kv_share_memory(&s->kv, host, host->acts_memory, model_activation_bytes(host));
}

// The four models (and the EMA) at their shapes, their weights loaded; the KV cache and sampler.
static int init_models(Ppo *s, const PpoRoles *m, int resumed, int max_rows, char *err,
                       size_t errlen) {
    int trainable[N_ROLES] = {1, 0, 0, 1};
    static const int load_flags[N_ROLES] = {CKPT_IGNORE_SCORE, CKPT_IGNORE_SCORE, 0, 0};
    Model *models[N_ROLES] = {&s->policy, &s->ref, &s->reward, &s->value};
    int pT = s->Tpos > s->ptx_T ? s->Tpos : s->ptx_T;
    int rows_T[N_ROLES] = {pT, s->Tpos, s->Trw, s->Tpos};
    int used[N_ROLES] = {1, !s->use_lora, 1, s->has_value && !s->value_on_reward};
    if (s->use_lora) trainable[ROLE_POLICY] = MODEL_TRAIN_FROZEN;
    if (s->value_on_reward) {   // the reward model is the value's base too
        trainable[ROLE_REWARD] = MODEL_TRAIN_FROZEN;
        if (s->Tpos > rows_T[ROLE_REWARD]) rows_T[ROLE_REWARD] = s->Tpos;
    }
    char e[1024];
    for (int i = 0; i < N_ROLES; i++)
        if (used[i] &&
            model_init(models[i], &m->config[i], s->mbl, rows_T[i], trainable[i], 0, e, sizeof e))
            return util_err(err, errlen, "%s: %s", PPO_ROLE_NAMES[i], e);
    // adapters: each base in lora.base_dtype, converted matrix by matrix as it is read (a bf16
    // base never holds its fp32 model)
    int base[N_ROLES] = {s->use_lora, 0, s->value_on_reward, 0};
    for (int i = 0; i < N_ROLES; i++)
        if (used[i] && load_role(PPO_ROLE_NAMES[i], m->dir[i], models[i], load_flags[i],
                                 base[i] ? s->base_dtype : LOWP_FP32, err, errlen))
            return -1;
    if (init_adapters(s, rows_T[ROLE_REWARD], err, errlen)) return -1;
    const ModelConfig *pc = &m->config[ROLE_POLICY];
    if (s->has_ema) {
        if (model_init(&s->ema, pc, 1, 1, 0, 0, e, sizeof e))
            return util_err(err, errlen, "ema: %s", e);
        if (resumed) {
            if (load_role("last/ema", m->last_ema, &s->ema, 0, LOWP_FP32, err, errlen)) return -1;
        } else
            memcpy(s->ema.params_memory, s->policy.params_memory,
                   s->policy.num_params * sizeof(float));
    }
    // a reward model that is no adapters' base: precision.frozen
    for (int i = ROLE_REFERENCE; i <= ROLE_REWARD; i++)
        if (used[i] && !base[i] &&
            model_lowp_attach(models[i], s->prec_frozen, MODEL_LOWP_FULL | MODEL_LOWP_DROP_FP32,
                              e, sizeof e))
            return util_err(err, errlen, "%s: precision.frozen %s: %s", PPO_ROLE_NAMES[i],
                            lowp_format_name(s->prec_frozen), e);
    if (kv_init_as(&s->kv, &s->policy, s->gen_B, s->Tseq, max_rows, s->prec_kv, e, sizeof e))
        return util_err(err, errlen, "KV cache: %s", e);
    sampler_init(&s->sampler, pc->vocab_size);
    return 0;
}

// Resuming: the trainer state of OUT.DIR/last (weights and moments of policy and value, counters,
// prompt and ptx cursors, the KL coefficient), with the prompts' fingerprint checked.
static int resume_state(Ppo *s, const PpoRoles *m, CkptTrainerState *st, char *err,
                        size_t errlen) {
    CkptTrainerState vst;
    int64_t fp;
    double beta;
    if ((s->use_lora ? adapter_resume(m->last_policy, &s->lora, st, err, errlen)
                     : ckpt_load_trainer_state(m->last_policy, &s->policy, st, err, errlen)) ||
        (s->value_on_reward ? adapter_resume(m->last_value, &s->value_lora, &vst, err, errlen)
                            : s->has_value && ckpt_load_trainer_state(m->last_value, &s->value,
                                                                      &vst, err, errlen)) ||
        ckpt_state_get_int(st, "iteration", &s->iteration, err, errlen) ||
        ckpt_state_get_int(st, "run_id", &s->tr.run_id, err, errlen) ||
        ckpt_state_get_int(st, "value_steps", &s->value_steps, err, errlen) ||
        ckpt_state_get_int(st, "prompts.epoch", &s->prompt_epoch, err, errlen) ||
        ckpt_state_get_int(st, "prompts.index", &s->prompt_index, err, errlen) ||
        ckpt_state_get_int(st, "prompts.fingerprint", &fp, err, errlen) ||
        ckpt_state_get_int(st, "bad_streak", &s->bad_streak, err, errlen) ||
        ckpt_state_get_float(st, "kl.beta", &beta, err, errlen) ||
        ppo_parts_load_state(s, st, err, errlen))
        return -1;
    if ((uint64_t)fp != s->prompt_fp)
        return util_err(err, errlen, "%s: the prompts changed since this checkpoint (other "
                        "files, template or tokenizer): use another out.dir, or --set "
                        "train.resume=false to start over",
                        s->tr.last_dir);
    if (s->has_ptx) {
        DataCursor cur;
        if (data_cursor_load(&cur, st, "ptx", err, errlen) ||
            tokfile_iter_seek(&s->ptx_it, &cur, err, errlen))
            return -1;
    }
    s->policy_steps = st->step;
    s->rng = st->rng;
    s->kl.beta = beta;
    s->saved_iteration = s->iteration;
    return 0;
}

// The run begun, or resumed (the rollouts of the iterations to redo removed from the store).
static int begin_run(Ppo *s, const PpoRoles *m, int resumed, CkptTrainerState *st, char *err,
                     size_t errlen) {
    cli_stop_defer();   // from here on a signal saves last/ and marks the run interrupted
    if (!resumed) {
        rng_init(&s->rng, (uint64_t)config_get_int(s->cfg, "train.seed"));
        return trainer_begin_run(&s->tr, 0, NULL, err, errlen);
    }
    if (resume_state(s, m, st, err, errlen)) return -1;
    if (!dist_main(&s->dist)) return 0;
    int64_t gone = 0;
    if (trainer_begin_run(&s->tr, 1, m->last_policy, err, errlen) ||
        store_delete_rollouts(s->tr.db, s->tr.run_id, s->iteration, &gone, err, errlen))
        return -1;
    trainer_note_resumed(&s->tr, "iteration", s->iteration, s->iterations,
                         gone ? " (rollouts of the redone iterations removed)" : "");
    return 0;
}

int ppo_setup(Ppo *s, char *err, size_t errlen) {
    PpoRoles m;
    memset(&m, 0, sizeof m);
    if (setup_run(s, &m, err, errlen)) return -1;
    snprintf(m.last_policy, sizeof m.last_policy, "%s/policy", s->tr.last_dir);
    snprintf(m.last_value, sizeof m.last_value, "%s/value", s->tr.last_dir);
    snprintf(m.last_ema, sizeof m.last_ema, "%s/ema", s->tr.last_dir);
    CkptTrainerState st;
    int resumed = trainer_try_resume(&s->tr, m.last_policy, &st, err, errlen);
    if (resumed < 0) return -1;
    if (resumed && !s->use_lora) m.dir[ROLE_POLICY] = m.last_policy;   // adapters: base + last/
    if (resumed && !s->value_on_reward) m.dir[ROLE_VALUE] = m.last_value;
    if (setup_tokenizer(s, err, errlen) || load_role_configs(s, &m, err, errlen) ||
        adapter_configs(s, &m, err, errlen) ||
        load_prompts(s, m.context, err, errlen))
        return -1;
    if (!dist_identical(&s->dist, &s->prompt_fp, sizeof s->prompt_fp))
        return util_err(err, errlen, "the ranks read different prompts (data.format db: was the "
                                     "workspace changed meanwhile?)");
    if (setup_lengths(s, &m, err, errlen) ||
        ppo_parts_config(s, &m.config[ROLE_POLICY], err, errlen) ||
        load_ptx(s, m.config[ROLE_POLICY].vocab_size, err, errlen))
        return -1;
    // rows per decoding call: every slot's prompt at once; with groups (grpo, rloo) one prompt
    // per group, the others copy its cache (GenConfig.share_prompts), so a first fill of the
    // slots needs gen_B / group prompts' rows (one that does not fit goes on in the next call)
    int prefills = (s->gen_B + s->group - 1) / s->group;
    int max_rows = prefills * s->Tp < s->gen_B ? s->gen_B : prefills * s->Tp;
    if (max_rows > 4096) max_rows = s->gen_B > 4096 ? s->gen_B : 4096;
    const ModelConfig *c = m.config;
    if (memory_plan(s, &c[ROLE_POLICY], &c[ROLE_REFERENCE], &c[ROLE_REWARD], &c[ROLE_VALUE],
                    max_rows, err, errlen) ||
        init_models(s, &m, resumed, max_rows, err, errlen) || ppo_parts_load(s, err, errlen) ||
        trainer_pretrain_open(&s->pre, &s->tr, s->tok, s->policy.config.vocab_size,
                              s->policy.max_T, err, errlen))
        return -1;
    share_scratch(s);
    alloc_buffers(s);
    if (begin_run(s, &m, resumed, &st, err, errlen)) return -1;
    // the sampling copy of the weights the run starts from (resumed ones included)
    char e[1024];
    if (!s->use_lora && model_lowp_attach(&s->policy, s->prec_sample, 0, e, sizeof e))
        return util_err(err, errlen, "policy: precision.sample %s: %s",
                        lowp_format_name(s->prec_sample), e);
    ppo_prompt_order(s);
    return 0;
}

void ppo_teardown(Ppo *s) {
    for (int64_t i = 0; i < s->n_prompts; i++) {
        free(s->prompts[i].ids);
        free(s->prompts[i].text);
    }
    free(s->prompts);
    free(s->order);
    void *bufs[] = {s->ep_reward, s->ep_adv, s->b_ref,
                    s->seq,        s->plen,   s->rlen,      s->ended,    s->pidx,
                    s->score,      s->shaped, s->old_logp,  s->ref_logp, s->old_values,
                    s->rewards,    s->adv,    s->ret,       s->entropy,  s->mask,
                    s->perm,       s->b_tok,  s->b_tgt,     s->b_len,    s->b_logp,
                    s->b_old_logp, s->b_adv,  s->b_weights, s->b_dlogp,  s->g_prompts,
                    s->g_plen,     s->g_out,  s->g_olen,    s->g_rng};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    data_batch_free(&s->ptx_batch);
    tokfile_close(&s->ptx_file);
    trainer_pretrain_free(&s->pre);
    if (s->sampler.probs) sampler_free(&s->sampler);
    if (s->kv.memory) kv_free(&s->kv);
    model_free(&s->policy);
    model_free(&s->ref);
    model_free(&s->reward);
    model_free(&s->value);
    model_free(&s->ema);
    model_free(&s->sample);
    lora_free(&s->lora);
    lora_free(&s->value_lora);
    ppo_parts_free(s);
    ppo_hack_free(s);
    dataset_free(s->ds);
    chat_template_free(s->chat);
    tok_free(s->tok);
    trainer_close(&s->tr);
    config_free(s->cfg);
}
