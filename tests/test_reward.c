// Reward-model pieces (common/reward.h): the K-wise loss and its gradient against hand-computed
// values and central finite differences, and its equality with the mean of its pairwise losses;
// ranking parsing and formatting; the rendering of (prompt, response); scores read at the last
// real token (padding-invariant); the gradient of the loss through a whole tiny model against
// finite differences; folding a bias into ln_f.bias shifts every score by exactly that bias.
// Run from the repo root (it reads data/gpt2/).
#include "reward.h"
#include "rng.h"
#include "testlib.h"
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// -log sigmoid(d), written out differently from the library (log1p(exp(-d))), in double
static double nls(double d) { return d > 30 ? exp(-d) : log1p(exp(-d)); }
static double sig(double d) { return 1.0 / (1.0 + exp(-d)); }

static void test_hand_values(void) {
    float r2[2] = {1.0f, 0.0f}, dr[3];
    int k2[2] = {1, 2};
    int64_t np;
    double L = reward_kwise_loss(r2, k2, 2, dr, &np);
    // -log sigmoid(1) = log(1 + e^-1)
    CHECK(np == 1);
    CHECK(fabs(L - 0.31326168751822286) < 1e-12);
    CHECK(fabs(dr[0] - -0.2689414213699951) < 1e-7 && fabs(dr[1] - 0.2689414213699951) < 1e-7);
    // the better one second: -log sigmoid(-1) = log(1 + e)
    int k2b[2] = {2, 1};
    L = reward_kwise_loss(r2, k2b, 2, dr, &np);
    CHECK(fabs(L - 1.3132616875182228) < 1e-12);
    CHECK(fabs(dr[0] - 0.7310585786300049) < 1e-7 && fabs(dr[1] - -0.7310585786300049) < 1e-7);
    // K = 3 with a tie: item 0 best, items 1 and 2 tied (their pair dropped), P = 2:
    // loss = (-log s(0.5 - -1) - log s(0.5 - 2)) / 2 = (0.20141327798275246 + 1.7014132779827524) /
    // 2
    float r3[3] = {0.5f, -1.0f, 2.0f};
    int k3[3] = {1, 2, 2};
    L = reward_kwise_loss(r3, k3, 3, dr, &np);
    CHECK(np == 2);
    CHECK(fabs(L - 0.9514132779827524) < 1e-12);
    // d/dr0 = (-s(-1.5) - s(1.5)) / 2 = -0.5; d/dr1 = s(-1.5)/2; d/dr2 = s(1.5)/2
    CHECK(fabs(dr[0] - -0.5) < 1e-7);
    CHECK(fabs(dr[1] - 0.09121276190317817) < 1e-7);
    CHECK(fabs(dr[2] - 0.40878723809682184) < 1e-7);
    // all tied: nothing to compare
    int kt[3] = {1, 1, 1};
    L = reward_kwise_loss(r3, kt, 3, dr, &np);
    CHECK(L == 0.0 && np == 0 && dr[0] == 0 && dr[1] == 0 && dr[2] == 0);
    // large margins: finite, no NaN
    float big[2] = {100.0f, -100.0f};
    L = reward_kwise_loss(big, k2b, 2, dr, NULL);
    CHECK(fabs(L - 200.0) < 1e-9 && fabs(dr[0] - 1.0) < 1e-7 && fabs(dr[1] + 1.0) < 1e-7);
    L = reward_kwise_loss(big, k2, 2, dr, NULL);
    CHECK(L >= 0 && L < 1e-80 && isfinite(dr[0]));
    // pair statistics: equal scores count half
    float eq[3] = {1.0f, 1.0f, 0.0f};
    int ke[3] = {1, 2, 3};
    double c = 0, m = 0;
    CHECK(reward_pair_stats(eq, ke, 3, &c, &m) == 3);
    CHECK(fabs(c - 2.5) < 1e-12 && fabs(m - 2.0) < 1e-12);
}

// A random ranking: k = 2 + rng_below(span) completions, each a score scale * N(0, 1) then a rank
// in 1..k (ties likely), drawn in that order; returns k.
static int random_ranking(Rng *rng, uint64_t span, float scale, float *r, int *ranks) {
    int k = 2 + (int)rng_below(rng, span);
    for (int i = 0; i < k; i++) {
        r[i] = scale * rng_normal(rng);
        ranks[i] = 1 + (int)rng_below(rng, (uint64_t)k);
    }
    return k;
}

// Calls check on `trials` random rankings (random_ranking with span and scale) from one seed.
static void each_random_ranking(uint64_t seed, int trials, uint64_t span, float scale,
                                void (*check)(float *r, const int *ranks, int k)) {
    Rng rng;
    rng_init(&rng, seed);
    for (int trial = 0; trial < trials; trial++) {
        int ranks[16];
        float r[16];
        int k = random_ranking(&rng, span, scale, r, ranks);
        check(r, ranks, k);
    }
}

// The K-wise loss of a ranking is the mean of the pairwise losses of its non-tied pairs, and its
// gradient the mean of theirs.
static void check_mean_over_pairs(float *r, const int *ranks, int k) {
    float dr[16];
    double g[16] = {0}, sum = 0;
    int64_t P = 0;
    double L = reward_kwise_loss(r, ranks, k, dr, &P);
    int64_t count = 0;
    for (int w = 0; w < k; w++)
        for (int l = 0; l < k; l++) {
            if (ranks[w] >= ranks[l]) continue;
            float pr[2] = {r[w], r[l]}, pd[2];
            int pk[2] = {1, 2};
            sum += reward_kwise_loss(pr, pk, 2, pd, NULL);
            CHECK(fabs(reward_kwise_loss(pr, pk, 2, NULL, NULL) - nls((double)r[w] - r[l])) <
                  1e-12);
            g[w] += pd[0]; g[l] += pd[1];
            count++;
        }
    CHECK(count == P && P == reward_num_pairs(ranks, k));
    if (!P) { CHECK(L == 0); return; }
    CHECK_MSG(fabs(L - sum / P) < 1e-12, "K=%d: loss %.17g, mean over pairs %.17g", k, L, sum / P);
    for (int i = 0; i < k; i++) CHECK(fabs(dr[i] - g[i] / P) < 1e-6);
}
static void test_mean_over_pairs(void) {   // random K and ties
    each_random_ranking(11, 200, 9, 3, check_mean_over_pairs);
}

// Central finite differences of the loss (computed in double from float scores).
static void check_finite_differences(float *r, const int *ranks, int k) {
    float dr[8];
    reward_kwise_loss(r, ranks, k, dr, NULL);
    for (int i = 0; i < k; i++) {
        float save = r[i], h = 1.0f / 256;   // exact in float
        r[i] = save + h; double lp = reward_kwise_loss(r, ranks, k, NULL, NULL);
        r[i] = save - h; double lm = reward_kwise_loss(r, ranks, k, NULL, NULL);
        r[i] = save;
        double fd = (lp - lm) / (2.0 * h);
        CHECK_MSG(fabs(fd - dr[i]) < 2e-5, "K=%d item %d: analytic %.8f, finite difference %.8f",
                  k, i, dr[i], fd);
    }
}
static void test_finite_differences(void) {
    each_random_ranking(5, 50, 7, 2, check_finite_differences);
}

static void test_parse(void) {
    int r[16];
    char err[256], buf[128];
    CHECK(reward_parse_ranking("2>4>1=3", 4, r, err, sizeof err) == 0);
    CHECK(r[0] == 3 && r[1] == 1 && r[2] == 3 && r[3] == 2);
    reward_format_ranking(r, 4, buf, sizeof buf);
    CHECK_MSG(!strcmp(buf, "2>4>1=3"), "formatted '%s'", buf);
    CHECK(reward_parse_ranking(" 1 = 2 ", 2, r, err, sizeof err) == 0 && r[0] == 1 && r[1] == 1);
    reward_format_ranking(r, 2, buf, sizeof buf);
    CHECK(!strcmp(buf, "1=2"));
    CHECK(reward_parse_ranking("3>1>2", 3, r, err, sizeof err) == 0 && r[0] == 2 && r[1] == 3 &&
          r[2] == 1);
    CHECK(reward_parse_ranking("10>1>2>3>4>5>6>7>8>9", 10, r, err, sizeof err) == 0);
    // JSON ranks: made dense, order kept
    CHECK(reward_parse_ranking("[2, 1, 3, 1]", 4, r, err, sizeof err) == 0 && r[0] == 2 &&
          r[1] == 1 && r[2] == 3 && r[3] == 1);
    CHECK(reward_parse_ranking("[4,1,4,2]", 4, r, err, sizeof err) == 0 && r[0] == 3 && r[1] == 1 &&
          r[2] == 3 && r[3] == 2);
    CHECK(reward_parse_ranking("[1,1]", 2, r, err, sizeof err) == 0 && r[0] == 1 && r[1] == 1);
    struct { const char *s; int k; const char *msg;
    } bad[] = {{"1>1", 2, "twice"},
               {"1>5", 3, "1..3"},
               {"1>2", 3, "missing 3"},
               {"1>>2", 2, "expected a completion"},
               {"", 2, "empty"},
               {"   ", 2, "empty"},
               {"abc", 2, "expected a completion"},
               {"1,2", 2, "expected '>'"},
               {"0>1", 2, "1..2"},
               {"[1,2]", 3, "2 ranks for 3"},
               {"[0,1]", 2, "not an integer in 1..2"},
               {"[1.5,1]", 2, "not an integer"},
               {"[1,\"a\"]", 2, "not an integer"},
               {"[1,2", 2, "not a JSON array"},
               {"1>2", 1, "2..64"},
               {"1>2>", 2, "expected a completion"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        int rc = reward_parse_ranking(bad[i].s, bad[i].k, r, err, sizeof err);
        CHECK_MSG(rc == -1 && strstr(err, bad[i].msg), "'%s' (k=%d): rc %d, message '%s'", bad[i].s,
                  bad[i].k, rc, err);
    }
}

static void test_encode(void) {
    Tokenizer *tok;
    char err[512];
    if (tok_load(&tok, "data/gpt2", err, sizeof err)) { CHECK_MSG(0, "%s", err); return; }
    DatasetOptions o = {.max_tokens = 1024};
    Dataset *ds;
    CHECK(dataset_create(&ds, tok, &o, err, sizeof err) == 0);
    TokIds want = {0}, got = {0};
    CHECK(dataset_encode_prompt(ds, "Name a colour.", &want, err, sizeof err) == 0);
    CHECK(tok_encode(tok, " Blue, like the sky.", 20, 0, &want, err, sizeof err) == 0);
    int32_t eot = tok_eot(tok);
    int trunc = -1;
    CHECK(reward_encode(ds, tok, " ", "Name a colour.", "Blue, like the sky.", 1024, &got, &trunc,
                        err, sizeof err) == 0);
    CHECK(got.n == want.n + 1 && trunc == 0);
    CHECK(got.n == want.n + 1 && !memcmp(got.ids, want.ids, want.n * sizeof(int32_t)) &&
          got.ids[want.n] == eot);
    // too long: the last max_len tokens, the end token included
    TokIds cut = {0};
    CHECK(reward_encode(ds, tok, " ", "Name a colour.", "Blue, like the sky.", 5, &cut, &trunc, err,
                        sizeof err) == 0);
    CHECK(cut.n == 5 && trunc == 1 && !memcmp(cut.ids, got.ids + got.n - 5, 5 * sizeof(int32_t)));
    // appends; bad prompt UTF-8 is an error
    CHECK(reward_encode(ds, tok, " ", "x", "y", 1024, &cut, NULL, err, sizeof err) == 0 &&
          cut.n > 5);
    CHECK(reward_encode(ds, tok, " ", "bad \xff prompt", "y", 1024, &cut, NULL, err, sizeof err) ==
              -1 &&
          strstr(err, "UTF-8"));
    tok_ids_free(&want); tok_ids_free(&got); tok_ids_free(&cut);
    dataset_free(ds);
    tok_free(tok);
}

// A tiny reward model: GPT-2 weights at random, score head, no LM head.
static void tiny_model(Model *m, int B, int T, int trainable) {
    ModelConfig c = {.max_seq_len = 16, .vocab_size = 37, .n_layer = 2, .n_head = 2, .n_embd = 16,
                     .ln_eps = 1e-5f, .lm_head = 0, .score_head = 1};
    char err[256];
    if (model_init(m, &c, B, T, trainable, 0, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    model_init_weights(m, 77);
    // score head and ln_f not at their defaults, so that every term matters
    Rng r;
    rng_init(&r, 3);
    rng_fill_normal(&r, m->params.scorew, 16, 0.0f, 0.5f);
    rng_fill_normal(&r, m->params.lnfb, 16, 0.0f, 0.1f);
}

#define TB 5
#define TT 9
static const int32_t LENS[TB] = {9, 4, 7, 1, 6};
static int32_t TOKS[TB * TT];
static void make_tokens(void) {
    Rng r;
    rng_init(&r, 9);
    for (int b = 0; b < TB; b++)
        for (int t = 0; t < TT; t++)
            TOKS[b * TT + t] = t < LENS[b] ? (int32_t)rng_below(&r, 37) : 0;
}

static void test_scores_last_token(void) {
    Model m;
    tiny_model(&m, TB, TT, 0);
    make_tokens();
    ModelBatch b = {.B = TB, .T = TT, .tokens = TOKS, .lengths = LENS};
    float values[TB * TT], scores[TB], all[TB * TT];
    char err[256];
    CHECK(reward_forward(&m, &b, values, scores, err, sizeof err) == 0);
    model_get_values(&m, all);
    for (int i = 0; i < TB; i++) {
        CHECK(scores[i] == all[i * TT + LENS[i] - 1]);
        // the same sequence alone (no padding, no neighbours)
        float v1[TT], s1;
        ModelBatch one = {.B = 1, .T = LENS[i], .tokens = TOKS + i * TT, .lengths = &LENS[i]};
        CHECK(reward_forward(&m, &one, v1, &s1, err, sizeof err) == 0);
        CHECK_MSG(fabsf(s1 - scores[i]) < 1e-5f, "sequence %d: %g alone, %g in the batch", i, s1,
                  scores[i]);
    }
    // a model without a score head is refused
    Model lm;
    ModelConfig c = m.config;
    c.lm_head = 1; c.score_head = 0;
    CHECK(model_init(&lm, &c, 1, 4, 0, 0, err, sizeof err) == 0);
    CHECK(reward_forward(&lm, &b, values, scores, err, sizeof err) == -1 &&
          strstr(err, "score head"));
    CHECK(reward_fold_bias(&lm, 1.0, err, sizeof err) == -1);
    model_free(&lm);
    model_free(&m);
}

// K-wise loss over two rankings in one batch (items 0-2 and 3-4), as `reward train` builds it.
static double batch_loss(Model *m, const ModelBatch *b, float *dscores) {
    static const int RANKS[TB] = {2, 1, 3, 1, 2};
    float values[TB * TT], scores[TB];
    char err[256];
    if (reward_forward(m, b, values, scores, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    double L = 0.5 * reward_kwise_loss(scores, RANKS, 3, dscores, NULL);
    L += 0.5 * reward_kwise_loss(scores + 3, RANKS + 3, 2, dscores ? dscores + 3 : NULL, NULL);
    if (dscores) for (int i = 0; i < TB; i++) dscores[i] *= 0.5f;
    return L;
}

static void test_model_gradient(void) {
    Model m;
    tiny_model(&m, TB, TT, 1);
    make_tokens();
    ModelBatch b = {.B = TB, .T = TT, .tokens = TOKS, .lengths = LENS};
    float ds[TB], dv[TB * TT];
    model_zero_grad(&m);
    batch_loss(&m, &b, ds);
    reward_backward(&m, &b, ds, dv);
    for (int i = 0; i < TB; i++)
        for (int t = 0; t < TT; t++) CHECK(dv[i * TT + t] == (t == LENS[i] - 1 ? ds[i] : 0.0f));
    // a sample of parameters of every kind against central differences of the float model
    static const char *names[] = {"score.weight",
                                  "ln_f.bias",
                                  "ln_f.weight",
                                  "wte.weight",
                                  "wpe.weight",
                                  "h.0.attn.c_attn.weight",
                                  "h.1.mlp.c_proj.weight",
                                  "h.0.ln_1.bias"};
    int checked = 0, bad = 0;
    for (int ti = 0; ti < model_tensor_count(&m); ti++) {
        ModelTensor t;
        model_tensor(&m, ti, &t);
        int want = 0;
        for (size_t j = 0; j < sizeof names / sizeof names[0]; j++)
            want |= !strcmp(t.name, names[j]);
        if (!want) continue;
        int64_t n = t.ndim == 2 ? t.shape[0] * t.shape[1] : t.shape[0];
        for (int64_t e = 0; e < n; e += 1 + n / 7) {
            float save = t.data[e], h = 1e-2f;
            t.data[e] = save + h; double lp = batch_loss(&m, &b, NULL);
            t.data[e] = save - h; double lm = batch_loss(&m, &b, NULL);
            t.data[e] = save;
            double fd = (lp - lm) / (2.0 * h), an = t.grad[e];
            checked++;
            if (fabs(fd - an) > 2e-3 + 2e-2 * fabs(fd)) {
                bad++;
                if (bad < 5)
                    test_fail_at(__FILE__, __LINE__,
                                 "%s[%lld]: analytic %.6f, finite difference %.6f", t.name,
                                 (long long)e, an, fd);
            }
        }
    }
    CHECK(checked > 40 && bad == 0);
    model_free(&m);
}

static void test_fold_bias(void) {
    Model m;
    tiny_model(&m, TB, TT, 0);
    make_tokens();
    ModelBatch b = {.B = TB, .T = TT, .tokens = TOKS, .lengths = LENS};
    float v[TB * TT], s0[TB], s1[TB];
    char err[256];
    CHECK(reward_forward(&m, &b, v, s0, err, sizeof err) == 0);
    double sum = 0;
    for (int i = 0; i < TB; i++) sum += s0[i];
    double c = -sum / TB;   // makes the batch score 0 on average
    CHECK(reward_fold_bias(&m, c, err, sizeof err) == 0);
    CHECK(reward_forward(&m, &b, v, s1, err, sizeof err) == 0);
    double after = 0;
    for (int i = 0; i < TB; i++) {
        CHECK_MSG(fabs(s1[i] - (s0[i] + c)) < 1e-5 * (1 + fabs(s0[i])), "score %d: %g + %g != %g",
                  i, s0[i], c, s1[i]);
        after += s1[i];
    }
    CHECK(fabs(after / TB) < 1e-5);
    memset(m.params.scorew, 0, 16 * sizeof(float));
    CHECK(reward_fold_bias(&m, 1.0, err, sizeof err) == -1 && strstr(err, "zero"));
    model_free(&m);
}

int main(void) {
    omp_set_num_threads(1);
    test_case("reward: K-wise loss and gradient, hand-computed values", test_hand_values);
    test_case("reward: K-wise loss is the mean of its pairwise losses (random K, ties)",
              test_mean_over_pairs);
    test_case("reward: K-wise gradient against central finite differences",
              test_finite_differences);
    test_case("reward: ranking parsing (2>4>1=3, JSON ranks) and every error", test_parse);
    test_case("reward: (prompt, response) rendering and truncation keep the end", test_encode);
    test_case("reward: score at the last real token, padding-invariant", test_scores_last_token);
    test_case("reward: loss gradient through the whole model vs finite differences",
              test_model_gradient);
    test_case("reward: a bias folded into ln_f.bias shifts every score by exactly it",
              test_fold_bias);
    (void)sig;
    return test_summary();
}
