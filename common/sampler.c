#define _GNU_SOURCE   // qsort_r
#include "sampler.h"
#include "util.h"
#include <math.h>
#include <omp.h>
#include <stdlib.h>

void sampler_init(Sampler *s, int vocab_size) {
    s->vocab_size = vocab_size;
    s->probs = MALLOC_CHECK((size_t)vocab_size * sizeof(float));
    s->idx = MALLOC_CHECK((size_t)vocab_size * sizeof(int32_t));
    s->nrows = 0;
    s->row_probs = NULL;
    s->row_idx = NULL;
}

void sampler_free(Sampler *s) {
    free(s->probs);
    free(s->idx);
    free(s->row_probs);
    free(s->row_idx);
    s->probs = s->row_probs = NULL;
    s->idx = s->row_idx = NULL;
    s->nrows = 0;
}

int32_t sampler_argmax(const float *logits, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
    return best;
}

// Ties sort by index so that the order, and thus the sample, is fully determined.
static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *p = ctx;
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (p[i] > p[j]) return -1;
    if (p[i] < p[j]) return 1;
    return (i > j) - (i < j);
}

int32_t sampler_sample(Sampler *s, const SamplerConfig *c, const float *logits, Rng *rng) {
    int V = s->vocab_size;
    float u = rng_float(rng);   // one draw per sample, whatever the settings
    if (!(c->temperature > 0.0f)) return sampler_argmax(logits, V);
    float mx = -INFINITY;
    for (int i = 0; i < V; i++) mx = logits[i] > mx ? logits[i] : mx;
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        s->probs[i] = expf((logits[i] - mx) / c->temperature);
        sum += s->probs[i];
    }
    float inv = (float)(1.0 / sum);
    for (int i = 0; i < V; i++) s->probs[i] *= inv;
    int k = (c->top_k > 0 && c->top_k < V) ? c->top_k : V;
    int truncate = k < V || c->top_p < 1.0f;
    if (!truncate) {   // plain inverse-CDF draw
        float cdf = 0.0f;
        for (int i = 0; i < V; i++) { cdf += s->probs[i]; if (u < cdf) return i; }
        return sampler_argmax(logits, V);   // rounding left u above the last cdf
    }
    // Only tokens that could be in the kept set need sorting: with top-p, a token below
    // (1-top_p)/(V-1) can never be needed to reach the mass (llama2.c's trick).
    int n = 0;
    float cut = c->top_p < 1.0f ? (1.0f - c->top_p) / (float)(V - 1) : 0.0f;
    for (int i = 0; i < V; i++) if (s->probs[i] >= cut) s->idx[n++] = i;
    if (n == 0) return sampler_argmax(logits, V);
    qsort_r(s->idx, (size_t)n, sizeof(int32_t), cmp_desc, s->probs);
    if (k > n) k = n;
    double mass = 0.0;
    int keep = 0;
    for (int j = 0; j < k; j++) {
        mass += s->probs[s->idx[j]];
        keep = j + 1;
        if (c->top_p < 1.0f && mass >= c->top_p) break;
    }
    float r = u * (float)mass, cdf = 0.0f;
    for (int j = 0; j < keep; j++) { cdf += s->probs[s->idx[j]]; if (r < cdf) return s->idx[j]; }
    return s->idx[keep - 1];
}

void sampler_sample_rows(Sampler *s, const SamplerConfig *c, const float *const *logits,
                         Rng *const *rngs, int n, int32_t *out) {
    int V = s->vocab_size, nt = omp_get_max_threads();
    if (n <= 1 || nt <= 1) {   // one row (or one thread): no region to start
        for (int i = 0; i < n; i++) out[i] = sampler_sample(s, c, logits[i], rngs[i]);
        return;
    }
    if (s->nrows < nt - 1) {   // thread 0 draws in s's own scratch
        free(s->row_probs);
        free(s->row_idx);
        s->row_probs = MALLOC_CHECK((size_t)(nt - 1) * V * sizeof(float));
        s->row_idx = MALLOC_CHECK((size_t)(nt - 1) * V * sizeof(int32_t));
        s->nrows = nt - 1;
    }
    // a row's draw is a full pass over V (exp, sum, scan): rows are shared out one at a time
    #pragma omp parallel num_threads(nt < n ? nt : n)
    {
        int t = omp_get_thread_num();
        Sampler mine = *s;
        if (t > 0) {
            mine.probs = s->row_probs + (size_t)(t - 1) * V;
            mine.idx = s->row_idx + (size_t)(t - 1) * V;
        }
        #pragma omp for schedule(dynamic, 1)
        for (int i = 0; i < n; i++) out[i] = sampler_sample(&mine, c, logits[i], rngs[i]);
    }
}
