// What every benchmark program shares (bench/benchlib.c, linked into each bench/bench_*): its
// peak memory, the median of its timings, reading a whole file. Only benchmarks use it.
#ifndef BENCHLIB_H
#define BENCHLIB_H
#include <stddef.h>

// the process's peak resident memory so far, in MiB
double bench_peak_rss_mb(void);
// the median of v[0..n) (n >= 1); sorts v in place
double bench_median(double *v, int n);
// the whole file at path (cli_read_file), NUL-terminated, its length in *len; the caller frees
// it. NULL when it cannot be opened or read.
char *bench_read_file(const char *path, size_t *len);
#endif
