// ppo: InstructGPT step 3. Optimises the policy (from the SFT checkpoint) against the reward
// model with PPO, a per-token KL penalty to the frozen SFT model and, mixed into the same
// gradients, the language-model loss on pretraining text (PPO-ptx). Reads like a recipe: parse
// the config, set up the four models and the data, loop over iterations (rollouts, scoring,
// updates; see iteration.c), log to the terminal and the workspace database, save. Killed at any
// moment, the same command resumes from OUT.DIR/last and ends with the same weights as an
// uninterrupted run (same thread count).
//
// Under MPI (make MPI=1; mpirun -np N ppo ...) the ranks share every iteration's work (see
// ppo_train.h) and end with one process's result for the same rollout batch; rank 0 alone writes
// the checkpoints, the database rows and the progress lines; a rank that fails stops them all.
#include "adapter.h"
#include "blas.h"
#include "cli.h"
#include "ppo_train.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const ConfigEntry PPO_SCHEMA[] = {
    CONFIG_ENTRY("algorithm", CONFIG_ENUM, "ppo",
                 "ppo: clipped PPO with a value model and GAE (InstructGPT); grpo: group-relative "
                 "advantages (r - group mean) / group std, no value model; rloo: r minus the mean "
                 "of the other completions of the prompt, no value model",
                 .choices = "ppo|grpo|rloo", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("model.policy", CONFIG_STRING, "",
                 "the SFT checkpoint the policy starts from (required)"),
    CONFIG_ENTRY("model.reference", CONFIG_STRING, "",
                 "frozen reference for the KL penalty (default: model.policy)"),
    CONFIG_ENTRY("model.reward", CONFIG_STRING, "", "the reward model checkpoint (required)"),
    CONFIG_ENTRY("model.value", CONFIG_STRING, "",
                 "where the value model starts (default: model.reward)"),
    CONFIG_ENTRY("model.tokenizer", CONFIG_STRING, "",
                 "tokenizer directory (default: model.policy's)"),
    TRAINER_ENTRY_OUT_DIR(
        "output directory: last/ (resumable) and policy/ (the result) (required)"),
    TRAINER_ENTRY_WORKSPACE("workspace database (default: OUT.DIR/workspace.db)"),
    CONFIG_ENTRY("data.format", CONFIG_ENUM, "jsonl",
                 "jsonl: {\"prompt\": ...} lines in data.prompts; db: the workspace's prompts",
                 .choices = "jsonl|db"),
    CONFIG_ENTRY("data.prompts", CONFIG_LIST, NULL, "prompt files (JSONL)"),
    CONFIG_ENTRY("data.split", CONFIG_ENUM, "train", "the workspace split used with data.format db",
                 .choices = "train|valid|test"),
    CONFIG_ENTRY("data.prompt_template", CONFIG_STRING, DATASET_DEFAULT_PROMPT_TEMPLATE,
                 "prompt rendering (as in SFT); exactly one {prompt}"),
    CONFIG_ENTRY("data.chat_template", CONFIG_STRING, "",
                 "chat template for message-list prompts instead of the tokenizer's "
                 "tokenizer_config.json one (a file, or the template itself)"),
    CONFIG_ENTRY("data.max_prompt_tokens", CONFIG_INT, "0",
                 "longest prompt (0: the context minus rollout.max_new_tokens)", .min = "0"),
    CONFIG_ENTRY("data.truncation", CONFIG_ENUM, "drop",
                 "prompts longer than that: drop, keep the last tokens (left), or error",
                 .choices = "drop|left|error"),
    CONFIG_ENTRY("rollout.batch_size", CONFIG_INT, "64", "episodes (prompts) per iteration",
                 .min = "1", .max = "1048576"),
    CONFIG_ENTRY("rollout.generation_batch", CONFIG_INT, "0",
                 "rollouts decoded at once (KV-cache slots; one that ends hands its slot to "
                 "the next prompt; 0: the whole rollout batch)",
                 .min = "0", .max = "1048576"),
    CONFIG_ENTRY("rollout.group_size", CONFIG_INT, "1",
                 "completions sampled per prompt (rollout.batch_size / group_size prompts per "
                 "iteration); grpo and rloo need 2 or more",
                 .min = "1", .max = "65536", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("grpo.scale_std", CONFIG_BOOL, "true",
                 "grpo: divide by the group's standard deviation (false: r - group mean only)",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("rollout.max_new_tokens", CONFIG_INT, "64", "longest response", .min = "1",
                 .max = "1048576"),
    CONFIG_ENTRY("rollout.temperature", CONFIG_DOUBLE, "1.0",
                 "sampling temperature (InstructGPT: 1)", .min = "0", .max = "100"),
    CONFIG_ENTRY("rollout.top_k", CONFIG_INT, "0", "sample from the k most likely tokens (0: all)",
                 .min = "0"),
    CONFIG_ENTRY("rollout.top_p", CONFIG_DOUBLE, "1.0", "nucleus sampling mass (1: all)",
                 .min = "0", .max = "1"),
    CONFIG_ENTRY(
        "reward.missing_eos_penalty", CONFIG_DOUBLE, "1",
        "subtracted from the score of a response cut off without the end token "
        "(0: off; 1: as if labelers preferred the finished answer 73% of the time, a reward model's scores being logits)"),
    CONFIG_ENTRY(
        "reward.score_unfinished", CONFIG_ENUM, "end_token",
        "a response cut off by rollout.max_new_tokens is scored with the "
        "end token appended, as reward train scores every completion (end_token), or at its last token (as_is)",
        .choices = "end_token|as_is"),
    CONFIG_ENTRY("reward.clip", CONFIG_DOUBLE, "0", "clip scores to [-clip, clip] (0: off)",
                 .min = "0"),
    CONFIG_ENTRY("reward.models", CONFIG_LIST, NULL,
                 "more reward model checkpoints, scored with model.reward and combined by "
                 "reward.combine (an ensemble against reward hacking)", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.combine", CONFIG_ENUM, "mean",
                 "how the reward models' scores combine: their mean, or their minimum",
                 .choices = "mean|min", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.programs", CONFIG_LIST, NULL,
                 "reward programs (run through /bin/sh once per iteration): a JSON line "
                 "{\"prompt\": ..., \"completion\": ...} per episode on stdin, one number per line "
                 "back, added to the score times its weight", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.program_weights", CONFIG_LIST, NULL,
                 "one weight per reward program (default 1 each)", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.program_timeout", CONFIG_DOUBLE, "60",
                 "seconds a reward program may go without reading or answering before it is "
                 "stopped and the run with it", .min = "0.01", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("reward.length_penalty", CONFIG_DOUBLE, "0",
                 "subtracted from the reward per response token (0: off)",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.overlong_penalty", CONFIG_DOUBLE, "0",
                 "subtracted from the reward of a response running into rollout.max_new_tokens "
                 "(0: off), rising linearly over the last reward.overlong_tokens tokens",
                 .min = "0", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.overlong_tokens", CONFIG_INT, "0",
                 "the zone before rollout.max_new_tokens where reward.overlong_penalty rises (0: "
                 "only a response of max_new_tokens is penalised)", .min = "0",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("reward.normalize", CONFIG_BOOL, "false",
                 "normalise the reward by the running mean and std of every reward so far",
                 .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("kl.beta", CONFIG_DOUBLE, "0.02",
                 "KL penalty coefficient (the start value with the adaptive controller)",
                 .min = "0", .max = "1000"),
    CONFIG_ENTRY("kl.mode", CONFIG_ENUM, "reward",
                 "reward: -beta (log pi - log pi_ref) per token in the reward (InstructGPT); loss: "
                 "beta times the k3 estimator (e^(ref-logp) - 1 - (ref-logp)) per token added to "
                 "the policy loss (GRPO)",
                 .choices = "reward|loss", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("kl.controller", CONFIG_ENUM, "fixed",
                 "fixed beta, or adaptive toward kl.target (Ziegler et al. 2019)",
                 .choices = "fixed|adaptive"),
    CONFIG_ENTRY("kl.target", CONFIG_DOUBLE, "6.0", "adaptive: target KL per episode (nats)",
                 .min = "0"),
    CONFIG_ENTRY("kl.horizon", CONFIG_DOUBLE, "10000", "adaptive: episodes over which beta moves",
                 .min = "1"),
    CONFIG_ENTRY("ppo.epochs", CONFIG_INT, "4", "passes over each rollout batch", .min = "1",
                 .max = "1000"),
    CONFIG_ENTRY("ppo.minibatch_size", CONFIG_INT, "8",
                 "episodes per update (divides rollout.batch_size)", .min = "1", .max = "65536"),
    CONFIG_ENTRY("ppo.clip", CONFIG_DOUBLE, "0.2", "ratio clip epsilon", .min = "0", .max = "10"),
    CONFIG_ENTRY("ppo.value_clip", CONFIG_DOUBLE, "0.2",
                 "value clip range around the rollout's values (0: unclipped)", .min = "0"),
    CONFIG_ENTRY("ppo.gamma", CONFIG_DOUBLE, "1.0", "discount", .min = "0", .max = "1"),
    CONFIG_ENTRY("ppo.lambda", CONFIG_DOUBLE, "0.95", "GAE lambda", .min = "0", .max = "1"),
    CONFIG_ENTRY("ppo.whiten_advantages", CONFIG_BOOL, "true",
                 "whiten advantages over each rollout batch"),
    CONFIG_ENTRY("ppo.max_bad_minibatches", CONFIG_INT, "3",
                 "NaN/Inf minibatches in a row before the run stops", .min = "1"),
    CONFIG_ENTRY("ptx.coef", CONFIG_DOUBLE, "27.8",
                 "pretraining LM loss weight (InstructGPT's gamma; 0: plain PPO)", .min = "0"),
    CONFIG_ENTRY("ptx.data", CONFIG_LIST, NULL,
                 "pretraining text files (tokenized once into OUT.DIR/ptx.tok)"),
    CONFIG_ENTRY("ptx.tokens", CONFIG_STRING, "", "an existing token file instead of ptx.data"),
    CONFIG_ENTRY("ptx.batch_size", CONFIG_INT, "0",
                 "pretraining windows per minibatch (0: 8 x ppo.minibatch_size, as InstructGPT)",
                 .min = "0", .max = "1048576"),
    CONFIG_ENTRY("ptx.seq_len", CONFIG_INT, "0",
                 "tokens per pretraining window (0: the longest rollout)", .min = "0"),
    CONFIG_ENTRY("train.iterations", CONFIG_INT, "100", "PPO iterations (rollout batches)",
                 .min = "1"),
    TRAINER_ENTRY_LR("train.policy_lr", "1e-5", "policy learning rate"),
    TRAINER_ENTRY_LR("train.value_lr", "1e-5", "value model learning rate"),
    TRAINER_ENTRY_SCHEDULE("constant", "constant|cosine"),
    TRAINER_ENTRY_WARMUP("linear warmup (optimizer steps)"),
    TRAINER_ENTRIES_ADAMW,
    TRAINER_ENTRY_GRAD_CLIP("global gradient-norm clip per model (0: off)"),
    CONFIG_ENTRY("train.ema", CONFIG_DOUBLE, "0",
                 "EMA decay of the policy weights, saved as the result (0: off; InstructGPT 0.992)",
                 .min = "0", .max = "0.999999"),
    TRAINER_ENTRY_SEED("prompt order, sampling and minibatch seed"),
    TRAINER_ENTRY_THREADS,
    TRAINER_ENTRY_RESUME,
    TRAINER_ENTRY_SAVE_EVERY("10", "1", "save OUT.DIR/last every N iterations (and at the end)"),
    TRAINER_ENTRIES_SAVE_FORMAT,
    TRAINER_ENTRY_LOG_EVERY("1", "print a line every N iterations"),
    CONFIG_ENTRY("guards.action", CONFIG_ENUM, "stop",
                 "when a guard fires: stop the run (OUT.DIR/last keeps the last good "
                 "checkpoint), or rollback: the last good checkpoint becomes the result",
                 .choices = "stop|rollback", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.kl_max", CONFIG_DOUBLE, "0",
                 "fire when the mean KL per episode rises above this (0: off)", .min = "0",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.kl_min", CONFIG_DOUBLE, "-1e9",
                 "fire when the mean KL per episode falls below this (e.g. -0.5: a negative "
                 "KL; -1e9: off)", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.len_min", CONFIG_DOUBLE, "0",
                 "fire when the mean response length (tokens) falls below this: collapse "
                 "(0: off)", .min = "0", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.len_max", CONFIG_DOUBLE, "0",
                 "fire when the mean response length rises above this: explosion (0: off)",
                 .min = "0", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.patience", CONFIG_INT, "1",
                 "iterations in a row outside a band before its guard fires", .min = "1",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.hack_judge", CONFIG_STRING, "",
                 "reward-hacking guard: a judge program (reward label's judge protocol, as rlhf "
                 "eval-policy --judge) comparing the policy's greedy answers to "
                 "guards.hack_prompts with the starting policy's; fires when the score is above "
                 "the first iteration's while the win rate is below 0.5 - guards.hack_margin "
                 "(empty: off)", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.hack_prompts", CONFIG_STRING, "",
                 "held-out prompts for guards.hack_judge (JSONL {\"prompt\": ...})",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.hack_every", CONFIG_INT, "5", "guards.hack_judge: check every N "
                 "iterations", .min = "1", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.hack_margin", CONFIG_DOUBLE, "0.05",
                 "guards.hack_judge: how far below 0.5 the win rate may fall", .min = "0",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("guards.hack_timeout", CONFIG_DOUBLE, "60",
                 "guards.hack_judge: seconds without progress before the judge is stopped",
                 .min = "0.01", .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("eval.every", CONFIG_INT, "10",
                 "with eval.pretrain_text: its loss every N iterations (and at the end)",
                 .min = "1", .flags = CONFIG_NO_HASH),
    TRAINER_ENTRIES_PRETRAIN_EVAL,
    CONFIG_ENTRY("precision.sample", CONFIG_ENUM, "fp32",
                 "the policy's weights for sampling: fp32, or a bf16 / int8 copy refreshed after "
                 "every iteration's updates (training and log-probs stay fp32)",
                 .choices = "fp32|bf16|int8", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("precision.frozen", CONFIG_ENUM, "fp32",
                 "the reference and reward models' weights in every forward: fp32, bf16 or int8",
                 .choices = "fp32|bf16|int8", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("precision.kv_cache", CONFIG_ENUM, "fp32",
                 "keys and values cached during generation: fp32, or bf16 (half the memory)",
                 .choices = "fp32|bf16", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("memory.limit_gb", CONFIG_DOUBLE, "0",
                 "refuse a memory plan above this (0: MemAvailable)", .min = "0",
                 .flags = CONFIG_NO_HASH),
    CONFIG_ENTRY("debug.nan_from_iteration", CONFIG_INT, "0",
                 "tests: make every policy loss NaN from this iteration on (0: off)", .min = "0",
                 .flags = CONFIG_NO_HASH),
    ADAPTER_ENTRIES,
    CONFIG_ENTRY("lora.value", CONFIG_ENUM, "adapter",
                 "with lora.r > 0: adapter: the value model is the reward model's frozen base with "
                 "its own adapters and a trained score head; full: a whole trainable value model",
                 .choices = "adapter|full", .flags = CONFIG_HASH_IF_SET),
    CONFIG_ENTRY("lora.sample", CONFIG_ENUM, "unmerged",
                 "with lora.r > 0: rollouts sample with the adapters unmerged, or from a copy of "
                 "the policy with them merged (once per iteration; one more copy of the weights)",
                 .choices = "unmerged|merged", .flags = CONFIG_HASH_IF_SET),
    {0}};

static const char *usage =
    "usage: ppo -c CONFIG.yaml [--set KEY=VALUE ...] [--print-config]\n"
    "PPO-ptx (InstructGPT step 3): optimises model.policy against model.reward with a per-token KL\n"
    "penalty to the SFT model and the pretraining LM loss mixed in. Writes OUT.DIR/last (resumable:\n"
    "rerun the same command after an interruption) and OUT.DIR/policy (the result), and records the\n"
    "run, its metrics and every rollout in the workspace database. Keys:\n";

static void log_line(const Ppo *s, const PpoStats *st, const CliProgress *pr) {
    char f[160];
    cli_progress_format(pr, s->iteration, f, sizeof f);
    fprintf(stderr, "ppo: iteration %s\n", f);
    double ttrain = st->t_train_ppo + st->t_train_ptx;
    fprintf(stderr, "ppo: iter %lld/%lld score %.4f kl %.4f (k3 %.4f) nsr %.4f beta %.4g ent "
            "%.3f len %.1f end %.2f | pg %.4f clip %.3f akl %.2e vf %.4f ev %.3f ptx %.4f | gen "
            "%.0f tok/s train %.0f tok/s%s\n",
            (long long)s->iteration, (long long)s->iterations, st->score, st->kl, st->kl_k3,
            st->nonscore, st->beta, st->entropy, st->resp_len, st->end_rate, st->policy_loss,
            st->clip_frac, st->approx_kl, st->value_loss, st->explained_var, st->ptx_loss,
            st->t_gen > 0 ? st->gen_tokens / st->t_gen : 0.0,
            ttrain > 0 ? (st->ppo_tokens + st->ptx_tokens) / ttrain : 0.0,
            st->skipped ? " (minibatches skipped)" : "");
    // where the iteration's time went (the same figures as the time/* metrics)
    static const char *const shown[PPO_TIME_PARTS] = {
        "gen", "score", "ref", "logp", "value", "| train policy", "value", "ptx", "adam",
        "allreduce", "| db", "other"};
    double t[PPO_TIME_PARTS];
    char line[512];
    size_t n = 0;
    ppo_time_parts(st, t);
    n += (size_t)snprintf(line, sizeof line, "ppo: time %.2f s:", st->t_total);
    for (int i = 0; i < PPO_TIME_PARTS && n < sizeof line; i++)
        if (t[i] > 0 || i != PPO_TIME_PARTS - 3)   // allreduce only under MPI
            n += (size_t)snprintf(line + n, sizeof line - n, " %s %.2f", shown[i], t[i]);
    fprintf(stderr, "%s\n", line);
}

// A stop inside an iteration, after some of its updates: OUT.DIR/last (if any) holds an earlier
// iteration, which a rerun resumes from.
static void note_dirty_stop(const Ppo *s) {
    long long now = (long long)s->iteration + 1, saved = (long long)s->saved_iteration;
    if (s->saved_iteration < 0) {
        fprintf(stderr, "ppo: interrupted by %s during iteration %lld, after some of its updates; "
                        "nothing saved yet (rerun the same command to start again)\n",
                cli_stop_name(), now);
        return;
    }
    char redo[64];
    if (saved == now - 1) snprintf(redo, sizeof redo, "iteration %lld is", now);
    else snprintf(redo, sizeof redo, "iterations %lld to %lld are", saved + 1, now);
    fprintf(stderr, "ppo: interrupted by %s during iteration %lld, after some of its updates; %s "
                    "holds iteration %lld (rerun the same command to resume: %s redone)\n",
            cli_stop_name(), now, s->tr.last_dir, saved, redo);
}

// The policy's loss on eval.pretrain_text (rank 0), recorded as valid/pretrain_loss and printed.
static int evaluate_pretrain(Ppo *s, CliProgress *pr, char *err, size_t errlen) {
    double pl;
    if (!s->pre.ids || !dist_main(&s->dist)) return 0;
    if (trainer_pretrain_loss(&s->pre, &s->policy, s->policy.max_B, &pl, err, errlen)) return -1;
    if (pr->tty) cli_progress_end(pr);
    fprintf(stderr, "ppo: iteration %lld: pretraining loss %.4f\n", (long long)s->iteration, pl);
    return store_add_metric(s->tr.db, s->tr.run_id, s->iteration, "valid/pretrain_loss", pl, err,
                            errlen);
}

// The guards after an iteration (every rank computes the same figures): 0 on; 1 the run ended
// cleanly by a rollback (the last good checkpoint saved as the result); -1 stopped or an error.
static int guard(Ppo *s, const PpoStats *st, char *err, size_t errlen) {
    char why[512], e2[512];
    int rc = ppo_guards_check(s, st, why, sizeof why, err, errlen);
    if (rc == 0) rc = ppo_hack_check(s, st, why, sizeof why, err, errlen);
    if (rc <= 0) return rc;
    if (strcmp(config_get_string(s->cfg, "guards.action"), "rollback"))
        return util_err(err, errlen, "%s; stopped (guards.action stop)%s%s", why,
                        s->saved_iteration >= 0 ? ": the last good checkpoint is " : "",
                        s->saved_iteration >= 0 ? s->tr.last_dir : "");
    char ema[4300];
    snprintf(ema, sizeof ema, "%s/ema", s->tr.last_dir);
    if (ppo_restore_last(s, e2, sizeof e2) ||
        (s->has_ema && ckpt_load_weights(ema, &s->ema, 0, e2, sizeof e2)))
        return util_err(err, errlen, "%s; no checkpoint to roll back to yet: stopped", why);
    if (dist_main(&s->dist))
        fprintf(stderr, "ppo: rolled back to the last good checkpoint %s (iteration %lld): it is "
                "the result\n", s->tr.last_dir, (long long)s->iteration);
    return ppo_save_final(s, err, errlen) ? -1 : 1;
}

static int train(Ppo *s, char *err, size_t errlen) {
    int64_t save_every = config_get_int(s->cfg, "save.every"),
            log_every = config_get_int(s->cfg, "log.every");
    int main_rank = dist_main(&s->dist);
    // the ranks agree on stopping: a signal seen by any rank stops all after the same iteration
    int stop = s->dist.size == 1 && cli_stop_signal();
    int dirty = 0;   // a stop inside an iteration left the weights half-updated: not saved
    double t_start = util_time_s();
    int64_t first = s->iteration, tokens = 0;
    CliProgress pr;
    cli_progress_start(&pr, stderr, "ppo", s->iterations);
    cli_progress_resume(&pr, first);
    int64_t eval_every = config_get_int(s->cfg, "eval.every");
    if (first == 0 && evaluate_pretrain(s, &pr, err, errlen)) return -1;   // the starting point
    while (s->iteration < s->iterations && !stop) {
        PpoStats st;
        int rc = ppo_iteration(s, &st, err, errlen);
        if (rc < 0) return -1;
        if (rc == PPO_ITER_STOPPED || rc == PPO_ITER_STOPPED_DIRTY) {   // dropped, redone on resume
            dirty = rc == PPO_ITER_STOPPED_DIRTY;
            stop = 1;
            break;
        }
        if (rc == 1) {   // the NaN/Inf guard gave up: nothing of this iteration is saved
            char why[2048], e2[512];
            snprintf(why, sizeof why, "%s", err);
            if (ppo_restore_last(s, e2, sizeof e2) == 0)
                return util_err(err, errlen, "%s; stopped and restored the last good checkpoint "
                                "%s (iteration %lld), which this run did not change. Lower "
                                "train.policy_lr / train.value_lr or check the reward model; to "
                                "continue from it with other settings, start a new out.dir with "
                                "model.policy=%s/policy",
                                why, s->tr.last_dir, (long long)s->iteration, s->tr.last_dir);
            return util_err(err, errlen, "%s; stopped. No checkpoint had been saved yet (nothing "
                            "written); lower train.policy_lr / train.value_lr or check the "
                            "reward model",
                            why);
        }
        s->iteration++;
        double flag = cli_stop_signal();
        dist_allreduce_sum_double(&s->dist, &flag, 1);
        stop = flag > 0;
        // tokens through the models: generated, scored (policy, reference, value, reward), trained
        tokens += st.gen_tokens + 4 * st.seq_tokens + s->R + 2 * st.ppo_tokens + st.ptx_tokens;
        s->t_allreduce += st.t_allreduce;
        s->run_steps += st.minibatches;
        if (main_rank && ppo_record(s, &st, err, errlen)) return -1;
        int g = guard(s, &st, err, errlen);
        if (g) return g < 0 ? -1 : 0;
        if (main_rank &&
            (s->iteration % log_every == 0 || s->iteration == s->iterations || s->iteration == 1))
            log_line(s, &st, &pr);
        if ((s->iteration % eval_every == 0 || s->iteration == s->iterations) &&
            evaluate_pretrain(s, &pr, err, errlen))
            return -1;
        if (s->iteration % save_every == 0 || s->iteration == s->iterations || stop)
            if (ppo_save_last(s, err, errlen)) return -1;
    }
    double el = util_time_s() - t_start;
    if (main_rank && s->iteration > first)
        fprintf(stderr, "ppo: trained %lld iterations, %lld tokens in %.2f s: %.1f tokens/s\n",
                (long long)(s->iteration - first), (long long)tokens, el,
                el > 0 ? (double)tokens / el : 0.0);
    if (stop && s->iteration < s->iterations) {
        if (!dirty && s->saved_iteration != s->iteration && ppo_save_last(s, err, errlen))
            return -1;
        if (!dirty) return trainer_stopped(&s->tr, "iteration", s->iteration);
        if (main_rank) note_dirty_stop(s);
        return trainer_stop_status();
    }
    return ppo_save_final(s, err, errlen);
}

int main(int argc, char **argv) {
    blas_startup("ppo", argv);   // the best OpenBLAS kernel for this CPU (may re-execute)
    Ppo s;
    memset(&s, 0, sizeof s);
    dist_init(&s.dist, &argc, &argv);
    int early = trainer_config(&s.cfg, &s.dist, PPO_SCHEMA, "ppo", usage, argc - 1, argv + 1);
    if (early >= 0) return early;
    char err[2048];
    int rc = ppo_setup(&s, err, sizeof err), main_rank = dist_main(&s.dist);
    if (rc == 0) {
        if (main_rank && s.dist.size > 1)
            fprintf(stderr, "ppo: %d ranks, each generating %d of the %d rollouts and computing "
                    "%d of the %d episodes of every minibatch\n",
                    s.dist.size, s.R / s.dist.size, s.R, s.mbl, s.mb);
        if (main_rank)
            fprintf(stderr, "ppo: run %lld, %lld iterations of %d episodes (%d epochs of %d "
                    "minibatches), responses up to %d tokens, ptx %s, config %s\n",
                    (long long)s.tr.run_id, (long long)s.iterations, s.R, s.epochs, s.R / s.mb,
                    s.max_new, s.has_ptx ? "on" : "off", s.tr.hash);
        rc = ppo_hack_check(&s, NULL, NULL, 0, err, sizeof err);
        if (rc == 0) rc = train(&s, err, sizeof err);
    }
    int code = trainer_finish(&s.tr, rc, err);
    if (rc == 0 && main_rank) {
        if (s.dist.size > 1)
            fprintf(stderr, "ppo: %d ranks, weights identical on every rank at every save; %.3f "
                    "s in gradient allreduces (%.4f s per step), %.3f s in all allreduces\n",
                    s.dist.size, s.t_allreduce,
                    s.run_steps ? s.t_allreduce / (double)s.run_steps : 0.0, s.dist.allreduce_s);
        fprintf(stderr, "ppo: done: %s (the policy%s), %s (resumable state)\n", s.tr.final_dir,
                s.has_ema ? ", EMA weights" : "", s.tr.last_dir);
    }
    ppo_teardown(&s);
    if (rc < 0 && s.dist.size > 1) dist_abort(&s.dist, 1);   // the others may wait in an allreduce
    dist_finalize(&s.dist);
    return code;
}
