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
#include "cli.h"
#include "model.h"
#include "optim.h"
#include "reward.h"
#include "rng.h"
#include "util.h"
#include <limits.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char bench_reward_usage[] =
    "usage: bench_reward --mode train|score [--rankings N] [--K N] [--B N] [--T N] [--steps N]\n";

int main(int argc, char **argv) {
    blas_startup("bench_reward",
                 argv); // the best OpenBLAS kernel for this CPU, as the programs run
    const char *mode = NULL;
    int64_t rankings = 8, k_opt = 4, t_opt = 128, steps_opt = 8, b_opt = 16;
    CliOption opts[] = {CLI_STRING("--mode", &mode, .required = 1),
                        CLI_INT("--rankings", &rankings, 1, INT_MAX),
                        CLI_INT("--K", &k_opt, 2, REWARD_MAX_K),
                        CLI_INT("--T", &t_opt, 1, 256),
                        CLI_INT("--B", &b_opt, 1, INT_MAX),
                        CLI_INT("--steps", &steps_opt, 1, INT_MAX),
                        {0}};
    CliCommand cmd = {.prog = "bench_reward", .usage = bench_reward_usage, .opts = opts};
    int status;
    if (cli_parse(&cmd, argc - 1, argv + 1, &status)) return status;
    if (strcmp(mode, "train") && strcmp(mode, "score"))
        return cli_usage_error(&cmd, "--mode must be train or score, not '%s'", mode);
    int R = (int)rankings, K = (int)k_opt, T = (int)t_opt, steps = (int)steps_opt, Bs = (int)b_opt;
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
