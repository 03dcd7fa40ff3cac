// Data parallelism across processes with MPI (Open MPI from Debian). Built with MPI when compiled
// with -DRLHF_MPI (`make MPI=1`, into build-mpi/); without it the same API is a single process,
// so the programs have one code path. Every rank runs the same program on the same data order;
// each takes its share of every optimizer step's micro-batches, and one allreduce over the flat
// gradient buffer per step makes every rank's gradient the global one. Rank 0 alone writes
// checkpoints, database rows and the progress display.
// Ownership: a Dist is a value; dist_finalize ends MPI. No global state beyond MPI's own.
#ifndef DIST_H
#define DIST_H
#include <stdint.h>

typedef struct {
    int rank, size;
    int mpi;              // MPI was initialised (an MPI build)
    double allreduce_s;   // seconds spent in allreduces so far
} Dist;

void dist_init(Dist *d, int *argc, char ***argv);
void dist_finalize(Dist *d);
static inline int dist_main(const Dist *d) { return d->rank == 0; }
// In place, over all ranks: x = sum_r x_r (also for n > INT_MAX).
void dist_allreduce_sum(Dist *d, float *x, int64_t n);
void dist_allreduce_sum_double(Dist *d, double *x, int64_t n);
// In place, over all ranks: x = max_r x_r.
void dist_allreduce_max_double(Dist *d, double *x, int64_t n);
// In place: x holds size blocks of `bytes` bytes; rank r's block r is sent to every rank, so all
// end with every rank's block (rollouts generated in shares, gathered for scoring and storing).
void dist_allgather(Dist *d, void *x, int64_t bytes);
// In place: rank 0's bytes of x to every rank (values only rank 0 may decide, such as what it
// read from a database that others may be writing to meanwhile).
void dist_broadcast(Dist *d, void *x, int64_t bytes);
void dist_barrier(Dist *d);
// Prints a rank's failure as "PROG: message", or with several ranks "PROG: rank N: message;
// stopping every rank" (then call dist_abort once the rank's own files are closed).
void dist_report_error(const Dist *d, const char *prog, const char *msg);
// Stops every rank (a failure on one rank must not leave the others waiting in an allreduce).
void dist_abort(Dist *d, int code) __attribute__((noreturn));
// 1 when x holds the same bytes on every rank (a 64-bit hash compared across ranks).
int dist_identical(Dist *d, const void *x, int64_t bytes);
#endif
