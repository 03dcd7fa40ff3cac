// Reward-model speed on the small config (L4 H4 C256 V8192, no LM head, score head): training
// comparisons per second and scoring completions per second, through the same calls `reward
// train` and `reward score` make (reward_forward / reward_kwise_loss / reward_backward /
// optim_adamw_step). bench/bench_reward.sh runs it beside bench/bench_reward_torch.py (the same
// model and step in PyTorch) and prints the RESULT lines. One JSON line on stdout:
//   bench_reward --mode train [--rankings 8 --K 4 --T 128 --steps 8]
//       one optimizer step = `rankings` rankings of K completions of T tokens (no ties: C(K,2)
//       comparisons each) in one batch of rankings*K sequences; the median step after 2 warmups
//       {"mode":"train",...,"comparisons_per_s":..,"step_s":..}
//   bench_reward --mode score [--B 16 --T 128 --steps 8]
//       forward passes of B completions of T tokens on a model without gradients
//       {"mode":"score",...,"completions_per_s":..,"batch_s":..}
#include "benchlib.h"
#include "blas.h"
#include "model.h"
#include "optim.h"
#include "reward.h"
#include "rng.h"
#include "util.h"
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    blas_startup("bench_reward",
                 argv); // the best OpenBLAS kernel for this CPU, as the programs run
    const char *mode = NULL;
    int R = 8, K = 4, T = 128, steps = 8, Bs = 16;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) mode = argv[++i];
        else if (!strcmp(argv[i], "--rankings") && i + 1 < argc) R = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--K") && i + 1 < argc) K = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--T") && i + 1 < argc) T = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--B") && i + 1 < argc) Bs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc) steps = atoi(argv[++i]);
        else {
            fprintf(
                stderr,
                "usage: %s --mode train|score [--rankings N] [--K N] [--B N] [--T N] [--steps N]\n",
                argv[0]);
            return 2;
        }
    }
    if (!mode || (strcmp(mode, "train") && strcmp(mode, "score")) || R < 1 || K < 2 ||
        K > REWARD_MAX_K || T < 1 || T > 256 || steps < 1 || Bs < 1) {
        fprintf(stderr, "bench_reward: --mode train|score is required; K in 2..%d, T in 1..256\n",
                REWARD_MAX_K);
        return 2;
    }
    ModelConfig c = {.max_seq_len = 256, .vocab_size = 8192, .n_layer = 4, .n_head = 4,
                     .n_embd = 256, .ln_eps = 1e-5f, .lm_head = 0, .score_head = 1};
    int train = !strcmp(mode, "train"), B = train ? R * K : Bs;
    char err[256];
    Model m;
    if (model_init(&m, &c, B, T, train, 1, err, sizeof err)) {
        fprintf(stderr, "bench_reward: %s\n", err);
        return 1;
    }
    model_init_weights(&m, 1234);
    int32_t *tok = MALLOC_CHECK((size_t)B * T * sizeof(int32_t)),
            *len = MALLOC_CHECK((size_t)B * sizeof(int32_t));
    float *values = MALLOC_CHECK((size_t)B * T * sizeof(float)),
          *dvalues = MALLOC_CHECK((size_t)B * T * sizeof(float));
    float *scores = MALLOC_CHECK((size_t)B * sizeof(float)),
          *dscores = MALLOC_CHECK((size_t)B * sizeof(float));
    int *ranks = MALLOC_CHECK((size_t)R * K * sizeof(int));
    Rng r;
    rng_init(&r, 1);
    for (int i = 0; i < B * T; i++) tok[i] = (int32_t)rng_below(&r, (uint64_t)c.vocab_size);
    for (int i = 0; i < B; i++) len[i] = T;
    for (int j = 0; j < R; j++) {   // a random order of K distinct ranks per ranking
        for (int i = 0; i < K; i++) ranks[j * K + i] = i + 1;
        for (int i = K - 1; i > 0; i--) {
            int q = (int)rng_below(&r, (uint64_t)i + 1), t = ranks[j * K + i];
            ranks[j * K + i] = ranks[j * K + q]; ranks[j * K + q] = t;
        }
    }
    ModelBatch b = {.B = B, .T = T, .tokens = tok, .lengths = len};
    AdamWConfig oc = {.lr = 1e-5f, .beta1 = 0.9f, .beta2 = 0.95f, .eps = 1e-8f,
                      .weight_decay = 0.0f, .grad_clip = 1.0f};
    double *times = MALLOC_CHECK((size_t)(steps + 2) * sizeof(double)), loss = 0;
    int64_t pairs = 0;
    for (int s = 0; s < steps + 2; s++) {
        double t0 = util_time_s();
        if (reward_forward(&m, &b, values, scores, err, sizeof err)) {
            fprintf(stderr, "bench_reward: %s\n", err);
            return 1;
        }
        if (train) {
            loss = 0;
            pairs = 0;
            for (int j = 0; j < R; j++) {
                int64_t np;
                loss +=
                    reward_kwise_loss(scores + j * K, ranks + j * K, K, dscores + j * K, &np) / R;
                pairs += np;
                for (int i = 0; i < K; i++) dscores[j * K + i] /= (float)R;
            }
            model_zero_grad(&m);
            reward_backward(&m, &b, dscores, dvalues);
            optim_adamw_step(&m, &oc, oc.lr, s + 1);
        }
        times[s] = util_time_s() - t0;
        fprintf(stderr, "%s %d: %.3f s%s\n", mode, s, times[s], s < 2 ? " (warmup)" : "");
    }
    double step_s = bench_median(times + 2, steps);
    if (train)
        printf(
            "{\"impl\":\"rlhf.c\",\"mode\":\"train\",\"rankings\":%d,\"K\":%d,\"T\":%d,\"threads\":%d,\"comparisons_per_s\":%.1f,"
            "\"step_s\":%.4f,\"loss\":%.4f,\"peak_rss_mb\":%.1f}\n",
            R, K, T, omp_get_max_threads(), (double)pairs / step_s, step_s, loss,
            bench_peak_rss_mb());
    else
        printf(
            "{\"impl\":\"rlhf.c\",\"mode\":\"score\",\"B\":%d,\"T\":%d,\"threads\":%d,\"completions_per_s\":%.1f,\"batch_s\":%.4f,"
            "\"peak_rss_mb\":%.1f}\n",
            B, T, omp_get_max_threads(), B / step_s, step_s, bench_peak_rss_mb());
    free(times);
    free(tok);
    free(len);
    free(values);
    free(dvalues);
    free(scores);
    free(dscores);
    free(ranks);
    model_free(&m);
    return 0;
}
