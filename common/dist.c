#include "dist.h"
#include "hash.h"
#include "util.h"
#include <stdio.h>
#include <stdlib.h>
#ifdef RLHF_MPI
#include <mpi.h>
#endif

void dist_init(Dist *d, int *argc, char ***argv) {
    d->rank = 0; d->size = 1; d->mpi = 0; d->allreduce_s = 0;
#ifdef RLHF_MPI
    // Open MPI 4.1 picks, for a large allreduce, an algorithm that took 0.17-0.20 s for a 13M-float
    // gradient between two ranks of one machine; its ring takes 0.015 s (bandwidth-optimal, and
    // every rank receives the same reduced bytes). Set before MPI_Init reads its parameters, and
    // only when the user chose nothing (`mpirun --mca ...` arrives as these same variables).
    if (!getenv("OMPI_MCA_coll_tuned_use_dynamic_rules") &&
        !getenv("OMPI_MCA_coll_tuned_allreduce_algorithm") &&
        !getenv("OMPI_MCA_coll_tuned_dynamic_rules_filename")) {
        setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", 0);
        setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", "4", 0);
    }
    int inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init(argc, argv) != MPI_SUCCESS) DIE("MPI_Init failed");
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    d->mpi = 1;
#else
    (void)argc; (void)argv;
#endif
}

void dist_report_error(const Dist *d, const char *prog, const char *msg) {
    if (d->size > 1) fprintf(stderr, "%s: rank %d: %s; stopping every rank\n", prog, d->rank, msg);
    else fprintf(stderr, "%s: %s\n", prog, msg);
}

void dist_finalize(Dist *d) {
#ifdef RLHF_MPI
    if (d->mpi) MPI_Finalize();
#endif
    d->mpi = 0;
}

// MPI counts are int: large buffers go in chunks.
#define DIST_CHUNK ((int64_t)1 << 30)

#ifdef RLHF_MPI
// In-place allreduce of x[0..n) (elements of elem bytes, MPI type `type`) in chunks of DIST_CHUNK.
static void allreduce_chunks(Dist *d, void *x, int64_t n, size_t elem, MPI_Datatype type,
                             MPI_Op op) {
    for (int64_t i = 0; i < n; i += DIST_CHUNK) {
        int cnt = (int)(n - i < DIST_CHUNK ? n - i : DIST_CHUNK);
        char *at = (char *)x + i * (int64_t)elem;
        if (MPI_Allreduce(MPI_IN_PLACE, at, cnt, type, op, MPI_COMM_WORLD) != MPI_SUCCESS)
            dist_abort(d, 1);
    }
}

// Broadcast of x[0..bytes) from rank root in chunks of DIST_CHUNK.
static void bcast_chunks(Dist *d, char *x, int64_t bytes, int root) {
    for (int64_t o = 0; o < bytes; o += DIST_CHUNK) {
        int cnt = (int)(bytes - o < DIST_CHUNK ? bytes - o : DIST_CHUNK);
        if (MPI_Bcast(x + o, cnt, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS) dist_abort(d, 1);
    }
}
#endif

void dist_allreduce_sum(Dist *d, float *x, int64_t n) {
    if (d->size == 1) return;
#ifdef RLHF_MPI
    double t0 = util_time_s();
    allreduce_chunks(d, x, n, sizeof *x, MPI_FLOAT, MPI_SUM);
    d->allreduce_s += util_time_s() - t0;
#else
    (void)x; (void)n;
#endif
}

// The sum (take_max 0) or the maximum (1) of x[0..n) over the ranks, in place.
static void allreduce_double(Dist *d, double *x, int64_t n, int take_max) {
    if (d->size == 1) return;
#ifdef RLHF_MPI
    allreduce_chunks(d, x, n, sizeof *x, MPI_DOUBLE, take_max ? MPI_MAX : MPI_SUM);
#else
    (void)x; (void)n; (void)take_max;
#endif
}

void dist_allreduce_sum_double(Dist *d, double *x, int64_t n) { allreduce_double(d, x, n, 0); }
void dist_allreduce_max_double(Dist *d, double *x, int64_t n) { allreduce_double(d, x, n, 1); }

void dist_allgather(Dist *d, void *x, int64_t bytes) {
    if (d->size == 1) return;
#ifdef RLHF_MPI
    // MPI counts are int: blocks over 2 GiB go as one broadcast per rank, in chunks
    if (bytes <= INT32_MAX) {
        if (MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, (int)bytes, MPI_BYTE,
                          MPI_COMM_WORLD) != MPI_SUCCESS)
            dist_abort(d, 1);
        return;
    }
    for (int r = 0; r < d->size; r++) bcast_chunks(d, (char *)x + (int64_t)r * bytes, bytes, r);
#else
    (void)x; (void)bytes;
#endif
}

void dist_broadcast(Dist *d, void *x, int64_t bytes) {
    if (d->size == 1) return;
#ifdef RLHF_MPI
    bcast_chunks(d, x, bytes, 0);
#else
    (void)x; (void)bytes;
#endif
}

void dist_barrier(Dist *d) {
#ifdef RLHF_MPI
    if (d->size > 1) MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)d;
#endif
}

void dist_abort(Dist *d, int code) {
#ifdef RLHF_MPI
    if (d->mpi && d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
#endif
    exit(code);
}

int dist_identical(Dist *d, const void *x, int64_t bytes) {
    if (d->size == 1) return 1;
    uint64_t h = data_hash_bytes(DATA_HASH_INIT, x, (size_t)bytes);
#ifdef RLHF_MPI
    uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
#else
    (void)h;
    return 1;
#endif
}
