// What every benchmark program shares: see benchlib.h.
#include "benchlib.h"
#include "cli.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>

double bench_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}

static int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

char *bench_read_file(const char *path, size_t *len) {
    char *data, err[512];
    return cli_read_file(path, &data, len, err, sizeof err) ? NULL : data;
}
