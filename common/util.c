#include "util.h"
#include <stdarg.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <string.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

void util_vreport(const char *prefix, const char *file, int line, const char *fmt, va_list ap) {
    fprintf(stderr, "%s%s:%d: ", prefix, file, line);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
}

void util_die(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    util_vreport("fatal: ", file, line, fmt, ap);
    va_end(ap);
    exit(2);
}

void *util_malloc(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) util_die(file, line, "out of memory allocating %zu bytes", size);
    return p;
}

void *util_calloc(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) util_die(file, line, "out of memory allocating %zu x %zu bytes", n, size);
    return p;
}

void *util_realloc(void *p, size_t size, const char *file, int line) {
    void *q = realloc(p, size ? size : 1);
    if (!q) util_die(file, line, "out of memory growing a block to %zu bytes", size);
    return q;
}

void *util_realloc_array(void *p, size_t n, size_t size, const char *file, int line) {
    if (size && n > SIZE_MAX / size)
        util_die(file, line, "array of %zu x %zu bytes overflows", n, size);
    return util_realloc(p, n * size, file, line);
}

char *util_strdup(const char *s, const char *file, int line) {
    size_t n = strlen(s) + 1;
    return memcpy(util_malloc(n, file, line), s, n);
}

char *util_strndup(const char *s, size_t n, const char *file, int line) {
    char *d = util_malloc(n + 1, file, line);
    if (n) memcpy(d, s, n);
    d[n] = 0;
    return d;
}

void *util_aligned_alloc(size_t size, const char *file, int line) {
    void *p = NULL;
    size_t rounded = (size + 63) & ~(size_t)63;
    if (posix_memalign(&p, 64, rounded ? rounded : 64))
        util_die(file, line, "out of memory allocating %zu bytes", size);
    memset(p, 0, rounded);
    return p;
}

// One line, whatever the quoted input held: control characters become '?' (line breaks and tabs
// a space), so a message is always a single line on the terminal and in logs.
static void err_one_line(char *err) {
    for (unsigned char *p = (unsigned char *)err; *p; p++)
        if (*p < 0x20 || *p == 0x7F) *p = *p == '\n' || *p == '\r' || *p == '\t' ? ' ' : '?';
}

int util_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        err_one_line(err);
    }
    return -1;
}

int util_err_prefix(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || !errlen) return -1;
    char *msg = util_strdup(err, __FILE__, __LINE__);
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    if (k >= 0 && (size_t)k < errlen) snprintf(err + k, errlen - (size_t)k, "%s", msg);
    free(msg);
    err_one_line(err);
    return -1;
}

double util_time_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int64_t util_minor_faults(void) {
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? (int64_t)ru.ru_minflt : 0;
}

void util_format_bytes(char *buf, size_t n, double bytes) {
    const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (bytes >= 1024.0 && u < 4) { bytes /= 1024.0; u++; }
    snprintf(buf, n, u ? "%.2f %s" : "%.0f %s", bytes, unit[u]);
}

int util_mkdir_p(const char *path, char *err, size_t errlen) {
    size_t n = strlen(path);
    if (n == 0 || n >= 4096) return util_err(err, errlen, "bad directory path '%s'", path);
    char buf[4096];
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char keep = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0777) && errno != EEXIST)
            return util_err(err, errlen, "cannot create directory %s: %s", buf, strerror(errno));
        buf[i] = keep;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode))
        return util_err(err, errlen, "%s is not a directory", path);
    return 0;
}

double util_mem_available(void) {
    double avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        double kb = 0;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lf kB", &kb) == 1) break;
        fclose(f);
        avail = kb * 1024.0;
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (avail == 0 || (double)rl.rlim_cur < avail))
        avail = (double)rl.rlim_cur;
    return avail;
}

void util_release_pages(void *p, size_t bytes) {
    long page = sysconf(_SC_PAGESIZE);
    if (!p || page <= 0) return;
    uintptr_t lo = ((uintptr_t)p + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t hi = ((uintptr_t)p + bytes) & ~((uintptr_t)page - 1);
    if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);   // advice: failure changes nothing
}

#define UTIL_HUGE ((size_t)2 << 20)

void *util_pages_alloc(size_t bytes, const char *file, int line) {
    size_t len = (bytes + 4095) & ~(size_t)4095;
    if (len == 0) len = 4096;
    // from 2 MiB on: a 2 MiB-aligned start advised for transparent huge pages. Weights are read
    // as streams, and through 4 KiB pages on a virtual machine every page costs a two-level TLB
    // walk and stops the hardware prefetchers
    size_t span = len >= UTIL_HUGE ? len + UTIL_HUGE : len;
    char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) util_die(file, line, "out of memory mapping %zu bytes", bytes);
    if (span == len) return p;
    char *base = (char *)(((uintptr_t)p + UTIL_HUGE - 1) & ~(uintptr_t)(UTIL_HUGE - 1));
    if (base > p) munmap(p, (size_t)(base - p));   // keep the aligned len bytes, give back the rest
    if (p + span > base + len) munmap(base + len, (size_t)(p + span - (base + len)));
#ifdef MADV_HUGEPAGE
    madvise(base, len, MADV_HUGEPAGE);   // advice only: small pages where the kernel says no
#endif
    return base;
}

void util_pages_small(void *p, size_t bytes) {
#ifdef MADV_NOHUGEPAGE
    if (p && bytes) madvise(p, bytes, MADV_NOHUGEPAGE);   // advice: failure changes nothing
#else
    (void)p;
    (void)bytes;
#endif
}

void util_pages_free(void *p, size_t bytes) {
    if (p) munmap(p, bytes ? bytes : 1);
}
