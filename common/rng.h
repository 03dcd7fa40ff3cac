// Explicit random number state (no globals, no time-based seeds). xoshiro256** seeded through
// splitmix64: fast, good quality, and its whole state fits in a checkpoint (4 x u64).
#ifndef RNG_H
#define RNG_H
#include <stdint.h>

typedef struct { uint64_t s[4]; } Rng;

void     rng_init(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
float    rng_float(Rng *r);                    // uniform in [0, 1), 24 random bits
double   rng_double(Rng *r);                   // uniform in [0, 1), 53 random bits
float    rng_normal(Rng *r);                   // standard normal (Box-Muller)
uint64_t rng_below(Rng *r, uint64_t n);        // uniform in [0, n), unbiased; n > 0
void     rng_fill_normal(Rng *r, float *x, int64_t n, float mean, float std);
// Parallel and deterministic whatever the thread count: x is cut into fixed chunks, chunk i
// drawn from its own generator seeded by (seed, stream, i). For initialising large tensors.
void rng_fill_normal_chunked(uint64_t seed, uint64_t stream, float *x, int64_t n, float mean,
                             float std);
#endif
