// Choosing the next token from a row of logits: greedy, temperature, top-k and top-p (nucleus),
// always driven by an explicit Rng so that the same seed gives the same samples.
// A Sampler owns scratch space for one vocabulary row (and, once sampler_sample_rows has run,
// one per thread); sampler_free releases it.
#ifndef SAMPLER_H
#define SAMPLER_H
#include "rng.h"
#include <stdint.h>

typedef struct {
    float temperature;   // <= 0: greedy (argmax); 1: the model's distribution
    int top_k;           // keep the k most likely tokens; <= 0: all
    float top_p;         // keep the smallest set whose mass reaches top_p; >= 1: all
} SamplerConfig;

typedef struct {
    int vocab_size;
    float *probs;        // (V) scratch
    int32_t *idx;        // (V) scratch
    int nrows;           // rows of the threads' scratch below (0 until sampler_sample_rows)
    float *row_probs;    // (nrows, V) scratch, one row per thread past the first
    int32_t *row_idx;    // (nrows, V)
} Sampler;

void    sampler_init(Sampler *s, int vocab_size);
void    sampler_free(Sampler *s);
int32_t sampler_sample(Sampler *s, const SamplerConfig *c, const float *logits, Rng *rng);
// out[i] = sampler_sample(s, c, logits[i], rngs[i]) for the n rows, in parallel over the rows
// (OpenMP; each thread in its own scratch): the same tokens on any number of threads, as the
// rows take no randomness from each other. Not from inside another parallel region.
void    sampler_sample_rows(Sampler *s, const SamplerConfig *c, const float *const *logits,
                            Rng *const *rngs, int n, int32_t *out);
int32_t sampler_argmax(const float *logits, int V);
#endif
