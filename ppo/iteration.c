// One PPO-ptx iteration, in this order:
//   1. prompts    the next R prompts of the shuffled prompt order (a new order every epoch)
//   2. generate   responses with the KV cache in generation_batch slots (gen_generate_queue:
//                 continuous batching, a rollout that ends hands its slot to the next prompt),
//                 sampling from the policy (rollout.temperature / top_k / top_p), stopping at
//                 the end token or after max_new_tokens. Rollout b samples from its own stream,
//                 seeded by (a draw from the run's Rng, b): its text does not depend on how the
//                 batch is cut (generation_batch, or the ranks' shares under MPI)
//   3. order      the first epoch's minibatch order (a shuffle of the R rollouts, from the run's
//   Rng)
//   4. score      in those minibatches: the policy (log-probs of the response tokens, entropy),
//                 the reference (log-probs), the value model (V at every response position) and
//                 the reward model (its score at the last token of prompt + response, the end token
//                 appended to a response cut off by the length limit). Scoring in
//                 the same batches the first update uses makes that update's ratio exactly 1.
//   5. advantages score shaped (missing-end penalty, clip); per-token reward -beta*(logp - ref)
//                 plus the score at the last token; GAE (gamma, lambda); returns = A + V;
//                 advantages whitened over the iteration's response tokens
//   6. update     ppo.epochs passes, each over R/mb minibatches (epochs after the first reshuffle):
//                 policy forward -> clipped surrogate and its d/dlogp -> backward; value forward
//                 -> clipped value loss and its d/dv -> backward; then ptx.batch_size pretraining
//                 windows (in chunks of at most mb) with weights ptx.coef / (their tokens), whose
//                 LM loss backward accumulates into the same policy gradients; then one AdamW step
//                 for each model (and the EMA of the policy). A NaN or Inf in a loss, a ratio or
//                 a gradient norm skips the minibatch (no step); ppo.max_bad_minibatches in a row
//                 stop the run.
//   7. KL         the adaptive controller (if on) updates beta from the iteration's mean KL.
// A stop request (SIGTERM, SIGINT, SIGHUP) is looked at between decoding steps, scoring
// minibatches and update minibatches when the run is one process (under MPI the ranks agree on
// stopping between iterations, in main.c): the unfinished iteration is dropped and redone on
// resume from the last saved state (see PPO_ITER_STOPPED in ppo_train.h).
#include "ppo_train.h"
#include "cli.h"
#include "utf8.h"
#include "util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ppo_prompt_order(Ppo *s) {
    Rng r;
    rng_init(&r, data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, s->prompt_seed),
                                             (uint64_t)s->prompt_epoch)));
    for (int64_t i = 0; i < s->n_prompts; i++) s->order[i] = i;
    for (int64_t i = s->n_prompts - 1; i > 0; i--) {
        int64_t j = (int64_t)rng_below(&r, (uint64_t)i + 1), t = s->order[i];
        s->order[i] = s->order[j];
        s->order[j] = t;
    }
}

static int64_t next_prompt(Ppo *s) {
    if (s->prompt_index >= s->n_prompts) {
        s->prompt_epoch++;
        s->prompt_index = 0;
        ppo_prompt_order(s);
    }
    return s->order[s->prompt_index++];
}

// 1 when a stop request should end this iteration now (one process only: ranks under MPI do not
// synchronise between these points, so they look between iterations).
static int stop_now(const Ppo *s) {
    return s->dist.size == 1 && cli_stop_signal() != 0;
}

static void shuffle(int32_t *p, int n, Rng *r) {
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(r, (uint64_t)i + 1);
        int32_t t = p[i]; p[i] = p[j]; p[j] = t;
    }
}

// ---------------------------------------------------------------------------------------------
// 2. generation

// The most memory that generation and scoring make resident, one at a time, before the policy's
// and value model's next forwards: the KV cache, or one frozen model's activations (each is
// released after its forward). A model that is the policy or the value model (the adapters'
// base as the reference, the reward model as the value's base) adds nothing: its activations
// are theirs; nor does what works inside the policy's activations (setup.c, share_scratch:
// model_activation_bytes and kv_cache_bytes are 0 for them), which is all of it unless a model
// outgrows them.
static size_t rollout_transient_bytes(Ppo *s) {
    size_t need = kv_cache_bytes(&s->kv);
    int rf;
    const Model *ref = ppo_reference(s, &rf), *value = s->has_value ? ppo_value_model(s) : NULL;
    const Model *frozen[2] = {ref, &s->reward};
    for (int i = 0; i < 2; i++)
        if (frozen[i] != &s->policy && frozen[i] != value &&
            model_activation_bytes(frozen[i]) > need)
            need = model_activation_bytes(frozen[i]);
    for (int k = 0; k + 1 < s->parts.n_rm; k++)
        if (model_activation_bytes(&s->parts.rm[k]) > need)
            need = model_activation_bytes(&s->parts.rm[k]);
    return need;
}

// The trained models' activations are dead from here until their scoring forwards, and the
// process's peak is reached in training, where they are all resident. Released whole, every
// iteration's scoring faulted them back in, zeroed page by page (GPT-2 124M, B=16: 1.8 GiB,
// 450,000 page faults, about 0.2 s for each model). So only as many bytes go back as the phases
// until then take (rollout_transient_bytes), from the policy's end and then the value model's:
// the peak stays the training's, and the rest is not faulted again (ppo/README.md, step 4).
static void release_for_rollouts(Ppo *s) {
    size_t need = rollout_transient_bytes(s);
    need -= model_release_activations_tail(&s->policy, need);
    if (s->has_value) model_release_activations_tail(ppo_value_model(s), need);
}

static int generate(Ppo *s, PpoStats *st, char *err, size_t errlen) {
    double t0 = util_time_s();
    uint64_t seed = rng_u64(&s->rng);   // every rank draws the same
    // this rank's rollouts: a contiguous share (all of them in one process)
    int lo = (int)((int64_t)s->R * s->dist.rank / s->dist.size),
        hi = (int)((int64_t)s->R * (s->dist.rank + 1) / s->dist.size), n = hi - lo, Tp = 0;
    if (stop_now(s)) return PPO_ITER_STOPPED;
    Model *sm = ppo_sampling_model(s, err, errlen);   // the policy, or its merged copy (lora)
    if (!sm) return -1;
    for (int i = 0; i < n; i++) {
        int len = s->prompts[s->pidx[lo + i]].len;
        if (len > Tp) Tp = len;
    }
    for (int i = 0; i < n; i++) {
        const PpoPrompt *p = &s->prompts[s->pidx[lo + i]];
        int32_t *row = s->g_prompts + (size_t)i * Tp;
        memcpy(row, p->ids, (size_t)p->len * sizeof(int32_t));
        for (int t = p->len; t < Tp; t++) row[t] = 0;
        s->g_plen[i] = p->len;
        rng_init(&s->g_rng[i], data_hash_mix(data_hash_u64(data_hash_u64(DATA_HASH_INIT, seed),
                                                           (uint64_t)(lo + i))));
    }
    release_for_rollouts(s);
    // continuous batching: gen_B slots, a rollout that ends hands its slot to the next one
    int rc = gen_generate_queue(sm, &s->kv, &s->sampler, &s->gen, s->g_rng, s->g_prompts,
                                s->g_plen, n, Tp, s->gen_B, s->g_out, s->g_olen, NULL, NULL, err,
                                errlen);
    if (rc) return rc < 0 ? -1 : PPO_ITER_STOPPED;   // 1: s->gen.cancel saw a stop request
    kv_release(&s->kv);   // idle until the next iteration: not resident while the models train
    for (int i = 0; i < n; i++) {
        int b = lo + i, pl = s->g_plen[i], rl = s->g_olen[i];
        int32_t *row = s->seq + (size_t)b * s->Tseq;
        memcpy(row, s->g_prompts + (size_t)i * Tp, (size_t)pl * sizeof(int32_t));
        memcpy(row + pl, s->g_out + (size_t)i * s->max_new, (size_t)rl * sizeof(int32_t));
        s->plen[b] = pl;
        s->rlen[b] = rl;
        // ended: the last token is one the generation stops at (the end token, or a chat
        // template's end of turn), not a cut by the length limit
        s->ended[b] = rl > 0 && gen_is_stop(&s->gen, row[pl + rl - 1]);
    }
    st->t_gen = util_time_s() - t0;
    // every rank gets every rank's rollouts (equal shares: N divides R)
    int64_t share = s->R / s->dist.size;
    dist_allgather(&s->dist, s->seq, share * s->Tseq * (int64_t)sizeof(int32_t));
    dist_allgather(&s->dist, s->plen, share * (int64_t)sizeof(int32_t));
    dist_allgather(&s->dist, s->rlen, share * (int64_t)sizeof(int32_t));
    dist_allgather(&s->dist, s->ended, share * (int64_t)sizeof(int32_t));
    memset(s->mask, 0, (size_t)s->R * s->Tpos);
    for (int b = 0; b < s->R; b++) {
        memset(s->mask + (size_t)b * s->Tpos + s->plen[b] - 1, 1, (size_t)s->rlen[b]);
        st->gen_tokens += s->rlen[b];
        st->seq_tokens += s->plen[b] + s->rlen[b] - 1;
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// batches

// The policy/value batch of rollouts idx[0..n): prompt + response without the last token, targets
// (the next token) on the response positions only. Returns T, the batch's padded length.
static int batch_policy(Ppo *s, const int32_t *idx, int n, ModelBatch *b) {
    int T = 0;
    for (int i = 0; i < n; i++) {
        int len = s->plen[idx[i]] + s->rlen[idx[i]] - 1;
        s->b_len[i] = len;
        if (len > T) T = len;
    }
    for (int i = 0; i < n; i++) {
        const int32_t *row = s->seq + (size_t)idx[i] * s->Tseq;
        int len = s->b_len[i], first = s->plen[idx[i]] - 1;
        for (int t = 0; t < T; t++) {
            s->b_tok[(size_t)i * T + t] = t < len ? row[t] : 0;
            s->b_tgt[(size_t)i * T + t] = t < len && t >= first ? row[t + 1] : -1;
        }
    }
    *b = (ModelBatch){.B = n,
                      .T = T,
                      .tokens = s->b_tok,
                      .lengths = s->b_len,
                      .targets = s->b_tgt,
                      .weights = NULL};
    return T;
}

// The reward batch: whole sequences (prompt + response), no targets. A response cut off by the
// length limit gets the end token appended (reward.score_unfinished: end_token), as reward train
// scores every completion, so the reward model reads it where it was taught to; its last token is
// replaced instead when the row fills the reward model's context.
static int batch_reward(Ppo *s, const int32_t *idx, int n, ModelBatch *b) {
    int T = 0, eot = s->gen.eot_id, close = s->close_unfinished && eot >= 0;
    for (int i = 0; i < n; i++) {
        int len = s->plen[idx[i]] + s->rlen[idx[i]];
        if (close && !s->ended[idx[i]] && len < s->Trw) len++;
        s->b_len[i] = len;
        if (len > T) T = len;
    }
    for (int i = 0; i < n; i++) {
        const int32_t *row = s->seq + (size_t)idx[i] * s->Tseq;
        int len = s->plen[idx[i]] + s->rlen[idx[i]];
        int32_t *out = s->b_tok + (size_t)i * T;
        for (int t = 0; t < T; t++) out[t] = t < len ? row[t] : 0;
        if (close && !s->ended[idx[i]]) out[s->b_len[i] - 1] = eot;
    }
    *b = (ModelBatch){
        .B = n, .T = T, .tokens = s->b_tok, .lengths = s->b_len, .targets = NULL, .weights = NULL};
    return T;
}

// (R, Tpos) rollout array <-> (n, T) minibatch array
static void gather(const Ppo *s, const float *src, const int32_t *idx, int n, int T, float *dst) {
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)i * T, src + (size_t)idx[i] * s->Tpos, (size_t)T * sizeof(float));
}
static void scatter(const Ppo *s, float *dst, const int32_t *idx, int n, int T, const float *src) {
    for (int i = 0; i < n; i++)
        memcpy(dst + (size_t)idx[i] * s->Tpos, src + (size_t)i * T, (size_t)T * sizeof(float));
}

// ---------------------------------------------------------------------------------------------
// 4. scoring

// One scoring minibatch, this rank's rows idx (n): the reward model(s) first, then the
// reference, the policy and the value model, so that the last forwards the policy and value
// models ran are theirs on these rows (whatever models the roles share).
// The forwards of the reward, reference, policy and value models take row-invariant products
// (model.h: MODEL_FIXED_ROWS): a policy equal to its reference gives a KL of exactly 0 and a
// ratio of exactly 1 on every BLAS, and a sequence's numbers do not depend on its minibatch
// company. (The pretraining mix's forwards keep the plain products.)
#define PPO_FWD MODEL_FIXED_ROWS

static int score_minibatch(Ppo *s, PpoStats *st, const int32_t *idx, int n, char *err,
                           size_t errlen) {
    char e[512];
    double t0 = util_time_s();
    ModelBatch rb;
    int Tr = batch_reward(s, idx, n, &rb);
    if (model_forward(&s->reward, &rb, ppo_reward_flags(s) | PPO_FWD, e, sizeof e))
        return util_err(err, errlen, "reward: %s", e);
    model_get_values(&s->reward, s->b_values);
    for (int i = 0; i < n; i++) s->score[idx[i]] = s->b_values[(size_t)i * Tr + s->b_len[i] - 1];
    if (s->parts.n_rm > 1 && ppo_parts_score(s, &rb, idx, n, err, errlen)) return -1;
    // a frozen model's activations are dead once read: not resident beside the next models'
    model_release_activations(&s->reward);
    for (int k = 0; k + 1 < s->parts.n_rm; k++) model_release_activations(&s->parts.rm[k]);
    double t1 = util_time_s();
    ModelBatch b;
    int T = batch_policy(s, idx, n, &b);
    int rf;
    Model *ref = ppo_reference(s, &rf);   // with adapters: the policy's base, adapters off
    if (model_forward(ref, &b, rf | PPO_FWD, e, sizeof e))
        return util_err(err, errlen, "reference: %s", e);
    model_get_logp(ref, s->b_logp);
    scatter(s, s->ref_logp, idx, n, T, s->b_logp);
    model_release_activations(ref);
    double t2 = util_time_s();
    if (model_forward(&s->policy, &b, MODEL_ENTROPY | PPO_FWD, e, sizeof e))
        return util_err(err, errlen, "policy: %s", e);
    model_get_logp(&s->policy, s->b_logp);
    scatter(s, s->old_logp, idx, n, T, s->b_logp);
    model_get_entropy(&s->policy, s->b_entropy);
    scatter(s, s->entropy, idx, n, T, s->b_entropy);
    double t3 = util_time_s();
    if (s->has_value) {
        ModelBatch vb = b;
        vb.targets = NULL;
        if (model_forward(ppo_value_model(s), &vb, PPO_FWD, e, sizeof e))
            return util_err(err, errlen, "value: %s", e);
        model_get_values(ppo_value_model(s), s->b_values);
        scatter(s, s->old_values, idx, n, T, s->b_values);
    }
    double t4 = util_time_s();
    st->t_reward += t1 - t0;
    st->t_ref += t2 - t1;
    st->t_policy += t3 - t2;
    st->t_value += t4 - t3;
    return 0;
}

// The minibatches in reverse order: the last one scored is the first update's (minibatch 0 of
// the first epoch), whose policy and value forwards the update then reuses (s->scored_first).
static int score(Ppo *s, PpoStats *st, char *err, size_t errlen) {
    size_t RT = (size_t)s->R * s->Tpos;
    if (s->dist.size > 1) {   // each row is written by one rank, the others add zeros
        float *f[4] = {s->old_logp, s->entropy, s->ref_logp, s->old_values};
        for (int i = 0; i < 4; i++) memset(f[i], 0, RT * sizeof(float));
        memset(s->score, 0, (size_t)s->R * sizeof(float));
        if (s->parts.n_rm > 1)
            memset(s->parts.rm_score, 0, (size_t)s->parts.n_rm * s->R * sizeof(float));
    }
    for (int k = s->R / s->mb - 1; k >= 0; k--) {
        if (stop_now(s)) return PPO_ITER_STOPPED;
        // this rank's rows of minibatch k: the rows it will train on in the first epoch
        const int32_t *idx = s->perm + (size_t)k * s->mb + (size_t)s->dist.rank * s->mbl;
        if (score_minibatch(s, st, idx, s->mbl, err, errlen)) return -1;
    }
    s->scored_first = 1;
    if (s->dist.size > 1) {   // gathered by summing: x + 0 is exact
        float *f[4] = {s->old_logp, s->entropy, s->ref_logp, s->old_values};
        for (int i = 0; i < 4; i++) dist_allreduce_sum(&s->dist, f[i], (int64_t)RT);
        dist_allreduce_sum(&s->dist, s->score, s->R);
        if (s->parts.n_rm > 1)
            dist_allreduce_sum(&s->dist, s->parts.rm_score, (int64_t)s->parts.n_rm * s->R);
    }
    return 0;
}

// ---------------------------------------------------------------------------------------------
// 5. rewards and advantages

// Critic-free (grpo, rloo): each episode's reward (the shaped score, plus the non-score reward
// when the KL is in the reward) against the other completions of its prompt; the episode's
// advantage is given to every response token.
static void group_advantages(Ppo *s, PpoStats *st) {
    ppo_group_advantages(s->ep_reward, s->R / s->group, s->group, s->algo, s->scale_std, s->ep_adv);
    double a = 0.0;
    for (int b = 0; b < s->R; b++) {
        size_t o = (size_t)b * s->Tpos + s->plen[b] - 1;
        for (int t = 0; t < s->rlen[b]; t++) s->adv[o + t] = s->ep_adv[b];
        a += fabs((double)s->ep_adv[b]);
    }
    st->adv_abs = a / s->R;
    st->explained_var = NAN;
}

static void advantages(Ppo *s, PpoStats *st) {
    // kl.mode loss: the KL is a term of the policy loss, not of the reward
    float beta = s->kl_loss ? 0.0f : (float)s->kl.beta;
    double ssum = 0, ssq = 0, ent = 0;
    int64_t ntok = 0;
    st->beta = s->kl.beta;
    for (int b = 0; b < s->R; b++) {
        size_t o = (size_t)b * s->Tpos + s->plen[b] - 1;
        int n = s->rlen[b];
        float total = s->parts.on ? s->parts.total[b] : s->score[b];
        s->shaped[b] = ppo_shape_score(total, s->ended[b], s->eos_penalty, s->score_clip);
        double nonscore =
            ppo_rewards(s->old_logp + o, s->ref_logp + o, n, beta, s->shaped[b], s->rewards + o);
        double k1 = 0, k3 = 0;
        for (int t = 0; t < n; t++) {
            k1 += ppo_kl_k1(s->old_logp[o + t], s->ref_logp[o + t]);
            k3 += ppo_kl_k3(s->old_logp[o + t], s->ref_logp[o + t]);
            ent += s->entropy[o + t];
        }
        ntok += n;
        s->ep_reward[b] = (float)(s->shaped[b] + nonscore);
        if (s->has_value)
            ppo_gae(s->rewards + o, s->old_values + o, n, s->gamma, s->lam, s->adv + o, s->ret + o);
        st->kl += k1;
        st->kl_k3 += k3;
        st->nonscore += nonscore;
        st->reward += nonscore + s->shaped[b];
        st->resp_len += n;
        st->end_rate += s->ended[b];
        ssum += s->score[b];
        ssq += (double)s->score[b] * s->score[b];
    }
    double R = s->R;
    st->score = ssum / R;
    st->score_std = R > 1 ? sqrt(fmax(0.0, (ssq - ssum * ssum / R) / (R - 1))) : 0.0;
    st->kl /= R;
    st->kl_k3 /= R;
    st->nonscore /= R;
    st->reward /= R;
    st->resp_len /= R;
    st->end_rate /= R;
    st->entropy = ntok ? ent / (double)ntok : 0.0;
    if (!s->has_value) { group_advantages(s, st); return; }
    int64_t RT = (int64_t)s->R * s->Tpos;
    st->explained_var = ppo_explained_variance(s->old_values, s->ret, s->mask, RT);
    if (s->whiten) ppo_whiten(s->adv, s->mask, RT, 1);
}

// ---------------------------------------------------------------------------------------------
// 6. one minibatch update: 0 stepped, 1 skipped (why says why), -1 error

// What one minibatch update reduces over the ranks: flags (a NaN or Inf found by any rank skips
// the minibatch on all) and the statistics' sums.
enum {
    BAD_POLICY, BAD_VALUE, BAD_PTX,
    P_LOSS, P_CLIP, P_AKL, P_RATIO, P_NTOK, P_NONFIN, P_KL,
    V_LOSS, V_CLIP, V_NTOK, V_NONFIN,
    PTX, NRED
};

// Policy: the clipped surrogate's gradient from this rank's rows (b), when its loss is finite.
// reuse: the policy's last forward was scoring's on these rows with these weights (the same
// computation, entropies besides), so backward follows it without a second forward.
static int update_policy(Ppo *s, const ModelBatch *b, const int32_t *idx, int n, int T, int reuse,
                         double *red, PpoPolicyStats *ps, char *err, size_t errlen) {
    char e[512];
    int64_t NT = (int64_t)n * T;
    if (!reuse && model_forward(&s->policy, b, PPO_FWD, e, sizeof e))
        return util_err(err, errlen, "policy: %s", e);
    float *new_logp = s->b_logp, *old_logp = s->b_old_logp, *adv = s->b_adv, *dlogp = s->b_dlogp;
    model_get_logp(&s->policy, new_logp);
    gather(s, s->old_logp, idx, n, T, old_logp);
    gather(s, s->adv, idx, n, T, adv);
    ppo_policy_loss(new_logp, old_logp, adv, s->b_weights, NT, s->clip, dlogp, ps);
    if (s->kl_loss) {   // + beta k3 per token, in the same per-token mean
        gather(s, s->ref_logp, idx, n, T, s->b_ref);
        double kl = ppo_kl_loss(new_logp, s->b_ref, s->b_weights, NT, (float)s->kl.beta, dlogp);
        red[P_KL] = kl;
        ps->loss += kl;
        if (!isfinite(kl)) ps->n_nonfinite++;
    }
    if (s->nan_from > 0 && s->iteration + 1 >= s->nan_from) {   // fault injection
        ps->loss = NAN;
        ps->n_nonfinite++;
    }
    red[P_LOSS] = ps->loss;
    red[P_NTOK] = (double)ps->n_tokens;
    red[P_NONFIN] = (double)ps->n_nonfinite;
    // the ratios' means weighted by this rank's tokens: the sums over ranks are the minibatch's
    red[P_CLIP] = ps->clip_frac * ps->n_tokens;
    red[P_AKL] = ps->approx_kl * ps->n_tokens;
    red[P_RATIO] = ps->ratio_mean * ps->n_tokens;
    red[BAD_POLICY] = ps->n_nonfinite || !isfinite(ps->loss);
    if (!red[BAD_POLICY]) model_backward(&s->policy, b, dlogp, NULL);
    return 0;
}

// Value: the clipped regression to the returns, from the same rows (reuse: as update_policy).
static int update_value(Ppo *s, const ModelBatch *b, const int32_t *idx, int n, int T, int reuse,
                        double *red, char *err, size_t errlen) {
    char e[512];
    ModelBatch vb = *b;
    vb.targets = NULL;
    if (!reuse && model_forward(ppo_value_model(s), &vb, PPO_FWD, e, sizeof e))
        return util_err(err, errlen, "value: %s", e);
    float *values = s->b_values, *old_values = s->b_old_values, *returns = s->b_returns;
    model_get_values(ppo_value_model(s), values);
    gather(s, s->old_values, idx, n, T, old_values);
    gather(s, s->ret, idx, n, T, returns);
    PpoValueStats vs;
    ppo_value_loss(values, old_values, returns, s->b_weights, (int64_t)n * T, s->value_clip,
                   s->b_dvalues, &vs);
    red[V_LOSS] = vs.loss;
    red[V_CLIP] = vs.clip_frac * vs.n_tokens;
    red[V_NTOK] = (double)vs.n_tokens;
    red[V_NONFIN] = (double)vs.n_nonfinite;
    red[BAD_VALUE] = vs.n_nonfinite || !isfinite(vs.loss);
    if (!red[BAD_VALUE]) model_backward(ppo_value_model(s), &vb, NULL, s->b_dvalues);
    return 0;
}

// Pretraining mix: LM loss * ptx.coef, accumulated into the same policy gradients; chunk c on
// rank c mod N, every rank reading every chunk so that the data cursors stay equal.
static int update_ptx(Ppo *s, double *red, char *err, size_t errlen) {
    char e[512];
    float w = (float)((double)s->ptx_coef / ((double)s->ptx_B * s->ptx_T));
    for (int c = 0; c < s->ptx_B / s->ptx_chunk; c++) {
        tokfile_iter_next(&s->ptx_it, &s->ptx_batch, w);
        if (c % s->dist.size != s->dist.rank || red[BAD_POLICY] || red[BAD_VALUE] || red[BAD_PTX])
            continue;
        ModelBatch pb = data_batch_model(&s->ptx_batch);
        if (model_forward(&s->policy, &pb, 0, e, sizeof e))
            return util_err(err, errlen, "ptx: %s", e);
        red[PTX] += s->policy.loss;
        if (!isfinite(s->policy.loss)) {
            red[BAD_PTX] = 1;
            continue;
        }
        model_backward(&s->policy, &pb, NULL, NULL);
    }
    return 0;
}

// 1 with the reason in why when the reduced flags say the minibatch is to be skipped.
static int update_bad(const double *red, char *why, size_t whylen) {
    if (red[BAD_POLICY]) {
        snprintf(why, whylen, "policy loss %g: %lld of %lld ratios or loss terms are NaN/Inf",
                 red[P_LOSS], (long long)red[P_NONFIN], (long long)red[P_NTOK]);
        return 1;
    }
    if (red[BAD_VALUE]) {
        snprintf(why, whylen, "value loss %g: %lld of %lld terms are NaN/Inf", red[V_LOSS],
                 (long long)red[V_NONFIN], (long long)red[V_NTOK]);
        return 1;
    }
    if (red[BAD_PTX]) {
        snprintf(why, whylen, "pretraining loss %g", red[PTX]);
        return 1;
    }
    return 0;
}

// The minibatch's statistics added to the iteration's sums.
static void update_stats(Ppo *s, PpoStats *st, const double *red, float gp, float gv) {
    if (s->has_ptx) st->ptx_tokens += (int64_t)s->ptx_B * s->ptx_T;
    st->policy_loss += red[P_LOSS];
    st->kl_loss += red[P_KL];
    st->clip_frac += red[P_NTOK] > 0 ? red[P_CLIP] / red[P_NTOK] : 0.0;
    st->approx_kl += red[P_NTOK] > 0 ? red[P_AKL] / red[P_NTOK] : 0.0;
    st->ratio_mean += red[P_NTOK] > 0 ? red[P_RATIO] / red[P_NTOK] : 0.0;
    st->value_loss += red[V_LOSS];
    st->value_clip_frac += red[V_NTOK] > 0 ? red[V_CLIP] / red[V_NTOK] : 0.0;
    st->ptx_loss += s->has_ptx ? red[PTX] / s->ptx_coef : 0.0;
    st->grad_norm += gp;
    st->value_grad_norm += gv;
    st->minibatches++;
}

// One minibatch update of the policy and value models (and the EMA). 0 applied; 1 skipped by
// the NaN/Inf guard (why says what was not finite); -1 on an error.
static int update(Ppo *s, const int32_t *idx_mb, int first, PpoStats *st, char *why, size_t whylen,
                  char *err, size_t errlen) {
    // idx_mb: the minibatch's mb rows; this rank computes its mbl of them, weighted by the whole
    // minibatch's token count, so that the ranks' gradients add up to one process's
    const int32_t *idx = idx_mb + (size_t)s->dist.rank * s->mbl;
    int n = s->mbl;
    ModelBatch b;
    int T = batch_policy(s, idx, n, &b);
    int64_t NT = (int64_t)n * T, ntok = 0, mbtok = 0;
    for (int i = 0; i < s->mb; i++) ntok += s->rlen[idx_mb[i]];
    for (int i = 0; i < s->mb; i++) mbtok += s->plen[idx_mb[i]] + s->rlen[idx_mb[i]] - 1;
    for (int64_t j = 0; j < NT; j++)
        s->b_weights[j] = s->b_tgt[j] >= 0 ? (float)(1.0 / (double)ntok) : 0.0f;
    // each rank does its share (what it can), then one small reduction decides
    double red[NRED] = {0};
    double t0 = util_time_s();
    // the first minibatch of the first epoch: score() left its forwards in the models. Not with
    // adapters, where the value's base is the reward model's too (its forward is not the last)
    int reuse = first && s->scored_first && !s->use_lora && !s->value_on_reward;
    s->scored_first = 0;
    ppo_zero_grads(s);
    PpoPolicyStats ps;
    if (update_policy(s, &b, idx, n, T, reuse, red, &ps, err, errlen)) return -1;
    double tv = util_time_s();
    if (s->has_value && !red[BAD_POLICY] &&
        update_value(s, &b, idx, n, T, reuse, red, err, errlen))
        return -1;
    double t1 = util_time_s();
    if (s->has_ptx && update_ptx(s, red, err, errlen)) return -1;
    double t2 = util_time_s();
    dist_allreduce_sum_double(&s->dist, red, NRED);
    if (first) {
        double dev = ps.max_ratio_dev;
        dist_allreduce_max_double(&s->dist, &dev, 1);
        st->first_ratio_dev = dev;
    }
    if (update_bad(red, why, whylen)) return 1;
    if (s->dist.size > 1) {   // one allreduce per model and optimizer step
        double ta = util_time_s();
        ppo_allreduce_grads(s);
        st->t_allreduce += util_time_s() - ta;
    }
    double t2b = util_time_s();
    float gp, gv;
    ppo_grad_norms(s, &gp, &gv);
    if (!isfinite(gp) || !isfinite(gv)) {
        snprintf(why, whylen, "gradient norm not finite (policy %g, value %g)", (double)gp,
                 (double)gv);
        return 1;
    }
    float lr = lr_at(&s->sched, s->opt_policy.lr, s->policy_steps);
    ppo_adamw(s, 0, lr, ++s->policy_steps);
    if (s->has_value) {
        float lrv = lr_at(&s->sched, s->opt_value.lr, s->value_steps);
        ppo_adamw(s, 1, lrv, ++s->value_steps);
    }
    if (s->has_ema)
        ppo_ema_update(s->ema.params_memory, s->policy.params_memory, (int64_t)s->policy.num_params,
                       s->ema_decay);
    double t3 = util_time_s();
    st->t_train_ppo += (t1 - t0) + (t3 - t2);
    st->t_up_policy += tv - t0;
    st->t_up_value += t1 - tv;
    st->t_up_optim += t3 - t2b;
    st->t_train_ptx += t2 - t1;
    st->ppo_tokens += mbtok;
    update_stats(s, st, red, gp, gv);
    return 0;
}

int ppo_iteration(Ppo *s, PpoStats *st, char *err, size_t errlen) {
    memset(st, 0, sizeof *st);
    st->t_start = util_time_s();
    st->faults = util_minor_faults();
    s->scored_first = 0;
    int64_t it = s->iteration + 1;
    // what generation and scoring change besides scratch buffers: put back when a stop drops
    // the iteration before the first update, so that the state saved is that of its start
    Rng rng0 = s->rng;
    int64_t epoch0 = s->prompt_epoch, index0 = s->prompt_index;
    // rollout.group_size completions of each prompt, side by side (each its own sampling stream)
    for (int b = 0; b < s->R; b++) s->pidx[b] = b % s->group ? s->pidx[b - 1] : next_prompt(s);
    int rc = generate(s, st, err, errlen);
    for (int b = 0; b < s->R && rc == 0; b++) s->perm[b] = b;
    if (rc == 0) shuffle(s->perm, s->R, &s->rng);
    if (rc == 0) rc = score(s, st, err, errlen);
    if (rc == 0 && stop_now(s)) rc = PPO_ITER_STOPPED;
    if (rc == PPO_ITER_STOPPED) {
        s->rng = rng0;
        s->prompt_index = index0;
        if (s->prompt_epoch != epoch0) { s->prompt_epoch = epoch0; ppo_prompt_order(s); }
    }
    if (rc) return rc;
    double tp = util_time_s();
    if (ppo_parts_total(s, err, errlen)) return -1;   // reward programs run here
    st->t_reward += util_time_s() - tp;
    advantages(s, st);
    int nmb = s->R / s->mb;
    for (int ep = 0; ep < s->epochs; ep++) {
        if (ep > 0) shuffle(s->perm, s->R, &s->rng);
        for (int k = 0; k < nmb; k++) {
            char why[256];
            // (before the first minibatch the check after scoring just looked)
            if ((ep > 0 || k > 0) && stop_now(s))
                return PPO_ITER_STOPPED_DIRTY;   // some were applied
            rc = update(s, s->perm + (size_t)k * s->mb, ep == 0 && k == 0, st, why, sizeof why, err,
                        errlen);
            if (rc < 0) return -1;
            if (rc == 0) { s->bad_streak = 0; continue; }
            st->skipped++;
            s->bad_streak++;
            if (dist_main(&s->dist))
                fprintf(stderr,
                        "ppo: warning: iteration %lld, epoch %d, minibatch %d skipped: %s\n",
                        (long long)it, ep + 1, k + 1, why);
            if (s->bad_streak >= s->max_bad) {
                util_err(err, errlen,
                         "iteration %lld: %lld minibatches in a row had a NaN or Inf (last: %s)",
                         (long long)it, (long long)s->bad_streak, why);
                return 1;
            }
        }
    }
    // the next iteration samples from the updated weights (precision.sample's copy); adapters
    // leave the base as it was (a bf16 base is read directly)
    double t0 = util_time_s();
    if (!s->use_lora && model_lowp_refresh(&s->policy, err, errlen)) return -1;
    st->t_refresh = util_time_s() - t0;
    if (st->minibatches > 0) {
        double m = (double)st->minibatches;
        st->policy_loss /= m; st->kl_loss /= m; st->clip_frac /= m; st->approx_kl /= m;
        st->ratio_mean /= m;
        st->value_loss /= m; st->value_clip_frac /= m; st->ptx_loss /= m;
        st->grad_norm /= m; st->value_grad_norm /= m;
    } else {
        st->policy_loss = st->clip_frac = st->approx_kl = st->ratio_mean = NAN;
        st->value_loss = st->value_clip_frac = st->ptx_loss = st->grad_norm = st->value_grad_norm =
            NAN;
    }
    if (!s->has_ptx) st->ptx_loss = NAN;
    if (!s->kl_loss) st->kl_loss = NAN;
    if (!s->has_value) st->value_loss = st->value_clip_frac = st->value_grad_norm = NAN;
    ppo_kl_update(&s->kl, st->kl, s->R);
    return 0;
}

// ---------------------------------------------------------------------------------------------
// recording

// A response as text for the store: UTF-8, with every byte that is not part of valid UTF-8 (a
// sampled sequence of byte-level tokens can cut a character) and every NUL replaced by U+FFFD,
// so that the rollouts table reads cleanly from any SQL client.
char *ppo_decode(const Tokenizer *tok, const int32_t *ids, int n) {
    TokBytes tb = {0};
    tok_decode(tok, ids, (size_t)n, &tb, NULL, 0);
    char *out = utf8_clean(tb.data, tb.n);
    tok_bytes_free(&tb);
    return out;
}

const char *const PPO_TIME_NAMES[PPO_TIME_PARTS] = {
    "generation", "scoring", "reference", "logprobs", "value", "train_policy", "train_value",
    "train_ptx", "optimizer", "allreduce", "database", "other"};

void ppo_time_parts(const PpoStats *st, double *t) {
    double parts[PPO_TIME_PARTS - 1] = {
        st->t_gen, st->t_reward, st->t_ref, st->t_policy, st->t_value, st->t_up_policy,
        st->t_up_value, st->t_train_ptx, st->t_up_optim, st->t_allreduce, st->t_db};
    double other = st->t_total;
    for (int i = 0; i < PPO_TIME_PARTS - 1; i++) { t[i] = parts[i]; other -= parts[i]; }
    t[PPO_TIME_PARTS - 1] = other > 0 ? other : 0.0;
}

// The iteration's times (time/<part>, time/iteration) and token counts as metrics.
static int record_times(Ppo *s, const PpoStats *st, int64_t it, char *err, size_t errlen) {
    double t[PPO_TIME_PARTS];
    char name[64];
    ppo_time_parts(st, t);
    for (int i = 0; i < PPO_TIME_PARTS; i++) {
        snprintf(name, sizeof name, "time/%s", PPO_TIME_NAMES[i]);
        if (store_add_metric(s->tr.db, s->tr.run_id, it, name, t[i], err, errlen)) return -1;
    }
    return store_add_metric(s->tr.db, s->tr.run_id, it, "time/iteration", st->t_total, err,
                            errlen);
}

int ppo_record(Ppo *s, PpoStats *st, char *err, size_t errlen) {
    int64_t it = s->iteration;
    double t0 = util_time_s();
    if (store_begin(s->tr.db, err, errlen)) return -1;
    for (int b = 0; b < s->R; b++) {
        const PpoPrompt *p = &s->prompts[s->pidx[b]];
        size_t o = (size_t)b * s->Tpos + s->plen[b] - 1;
        double kl = 0.0;
        for (int t = 0; t < s->rlen[b]; t++)
            kl += ppo_kl_k1(s->old_logp[o + t], s->ref_logp[o + t]);
        double nonscore = -st->beta * kl;
        char *resp = ppo_decode(s->tok, s->seq + (size_t)b * s->Tseq + s->plen[b],
                            s->rlen[b] - (s->ended[b] ? 1 : 0));
        StoreRollout r = {.run_id = s->tr.run_id,
                          .iteration = it,
                          .prompt_id = p->prompt_id,
                          .prompt = p->text,
                          .response = resp,
                          .score = s->score[b],
                          .reward = s->kl_loss ? s->shaped[b] : s->shaped[b] + nonscore,
                          .kl = kl,
                          .response_tokens = s->rlen[b],
                          .ended = s->ended[b],
                          .components = ppo_parts_components(s, b)};
        int rc = store_add_rollout(s->tr.db, &r, NULL, err, errlen);
        free((char *)r.components);
        free(resp);
        if (rc) { store_rollback(s->tr.db, NULL, 0); return -1; }
    }
    st->t_db = util_time_s() - t0;   // the rollouts (the metrics below are few rows)
    st->t_total = util_time_s() - st->t_start;
    st->faults = util_minor_faults() - st->faults;
    if (record_times(s, st, it, err, errlen)) {
        store_rollback(s->tr.db, NULL, 0);
        return -1;
    }
    double tscore = st->t_policy + st->t_ref + st->t_value + st->t_reward,
           ttrain = st->t_train_ppo + st->t_train_ptx;
    struct { const char *name; double v;
    } m[] = {
        {"ppo/score", st->score},
        {"ppo/score_std", st->score_std},
        {"ppo/reward", st->reward},
        {"ppo/kl", st->kl},
        {"ppo/kl_k3", st->kl_k3},
        {"ppo/non_score_reward", st->nonscore},
        {"ppo/beta", st->beta},
        {"ppo/entropy", st->entropy},
        {"ppo/response_len", st->resp_len},
        {"ppo/end_rate", st->end_rate},
        {"ppo/policy_loss", st->policy_loss},
        {"ppo/clip_frac", st->clip_frac},
        {"ppo/approx_kl", st->approx_kl},
        {"ppo/ratio_mean", st->ratio_mean},
        {"ppo/first_ratio_dev", st->first_ratio_dev},
        {"ppo/value_loss", st->value_loss},
        {"ppo/value_clip_frac", st->value_clip_frac},
        {"ppo/explained_variance", st->explained_var},
        {"ppo/ptx_loss", st->ptx_loss},
        {"ppo/grad_norm", st->grad_norm},
        {"ppo/value_grad_norm", st->value_grad_norm},
        {"ppo/skipped_minibatches", (double)st->skipped},
        {"speed/gen_tokens_per_s", st->t_gen > 0 ? st->gen_tokens / st->t_gen : NAN},
        {"speed/score_tokens_per_s", tscore > 0 ? 4.0 * st->seq_tokens / tscore : NAN},
        {"speed/train_tokens_per_s", ttrain > 0 ? (st->ppo_tokens + st->ptx_tokens) / ttrain : NAN},
        {"count/gen_tokens", (double)st->gen_tokens},
        {"count/sequence_tokens", (double)st->seq_tokens},
        {"count/reward_tokens", (double)(st->seq_tokens + s->R)},
        {"count/train_ppo_tokens", (double)st->ppo_tokens},
        {"count/train_ptx_tokens", (double)st->ptx_tokens},
        {"count/page_faults", (double)st->faults},
    };
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++)
        if (store_add_metric(s->tr.db, s->tr.run_id, it, m[i].name, m[i].v, err, errlen)) {
            store_rollback(s->tr.db, NULL, 0);
            return -1;
        }
    // what only the other modes measure (PPO's default records stay as they were)
    if (ppo_parts_metrics(s, it, err, errlen) ||
        (s->kl_loss &&
         store_add_metric(s->tr.db, s->tr.run_id, it, "ppo/kl_loss", st->kl_loss, err, errlen)) ||
        (!s->has_value && store_add_metric(s->tr.db, s->tr.run_id, it, "ppo/advantage_abs",
                                           st->adv_abs, err, errlen)) ||
        (s->prec_sample && store_add_metric(s->tr.db, s->tr.run_id, it, "time/sample_refresh_s",
                                            st->t_refresh, err, errlen))) {
        store_rollback(s->tr.db, NULL, 0);
        return -1;
    }
    return store_commit(s->tr.db, err, errlen);
}
