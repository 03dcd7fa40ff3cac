// Checked wrappers for resource and programmer errors, and small helpers shared by every module.
// Resource failures (out of memory, an unwritable file we created) print file:line and exit:
// there is nothing sensible to continue with. Bad *user input* never goes through here: it is
// returned as a status with a message so that callers and tests can handle it.
#ifndef UTIL_H
#define UTIL_H
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

void *util_malloc(size_t size, const char *file, int line);
void *util_calloc(size_t n, size_t size, const char *file, int line);
void *util_realloc(void *p, size_t size, const char *file, int line);
void *util_realloc_array(void *p, size_t n, size_t size, const char *file, int line);  // n * size
char *util_strdup(const char *s, const char *file, int line);
// s[0..n) and a NUL (s may hold NULs; s may be NULL when n is 0)
char *util_strndup(const char *s, size_t n, const char *file, int line);
void *util_aligned_alloc(size_t size, const char *file, int line);  // 64-byte aligned, zeroed
void util_die(const char *file, int line, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 3, 4)));

#define MALLOC_CHECK(size)      util_malloc((size), __FILE__, __LINE__)
#define CALLOC_CHECK(n, size)   util_calloc((n), (size), __FILE__, __LINE__)
#define ALIGNED_CHECK(size)     util_aligned_alloc((size), __FILE__, __LINE__)
// p = REALLOC_CHECK(p, bytes) or REALLOC_ARRAY(p, n, sizeof *p): never NULL, the old block is
// released by the move (on failure the process ends, so nothing leaks into a caller).
#define REALLOC_CHECK(p, size)      util_realloc((p), (size), __FILE__, __LINE__)
#define REALLOC_ARRAY(p, n, size)   util_realloc_array((p), (n), (size), __FILE__, __LINE__)
#define STRDUP_CHECK(s)             util_strdup((s), __FILE__, __LINE__)
#define STRNDUP_CHECK(s, n)         util_strndup((s), (n), __FILE__, __LINE__)
#define DIE(...)                util_die(__FILE__, __LINE__, __VA_ARGS__)
// Writes "<prefix>file:line: <message>\n" to stderr (util_die's line; the test harness's too).
void util_vreport(const char *prefix, const char *file, int line, const char *fmt, va_list ap)
    __attribute__((format(printf, 4, 0)));

// Formats a message into err (which may be NULL) and returns -1, for `return util_err(...)`.
// The message is one line: control characters in it (from quoted input) become ' ' or '?'.
int util_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Puts the formatted text before the message already in err (e.g. "where: "), returns -1: for a
// callee's message that the caller places, `return util_err_prefix(err, errlen, "%s: ", path)`.
int util_err_prefix(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

// Creates path and its missing parents (like mkdir -p); 0 or -1 with a message.
int    util_mkdir_p(const char *path, char *err, size_t errlen);
double util_time_s(void);                  // monotonic seconds
// The process's minor page faults so far (getrusage): pages the system gave it, zeroed, on a
// first touch or a touch after release (util_release_pages); load-independent, unlike time.
int64_t util_minor_faults(void);
void   util_format_bytes(char *buf, size_t n, double bytes);  // "1.23 GiB"
// Bytes this process may still allocate: the smaller of MemAvailable (/proc/meminfo) and the
// address-space limit (ulimit -v) when one is set; 0 when neither is known.
double util_mem_available(void);
// Gives the whole pages inside p[0..bytes) back to the system (madvise MADV_DONTNEED): they read
// as zeros when next touched, as after util_aligned_alloc. For large buffers whose contents are
// dead between uses (activations, caches), so that they do not count in the resident memory while
// other work runs. p NULL or bytes 0: nothing.
void   util_release_pages(void *p, size_t bytes);
// bytes of zeros, page-aligned, in a mapping of their own whose pages the system gives only when
// first touched (not written here, unlike util_aligned_alloc): a block filled part by part, each
// part released after use (util_release_pages), never holds the whole. The process ends, as with
// MALLOC_CHECK, when memory cannot be had. util_pages_free(p, bytes) unmaps it (p NULL: nothing).
// From 2 MiB on the block starts on a 2 MiB boundary and is advised for transparent huge pages.
#define PAGES_CHECK(size) util_pages_alloc((size), __FILE__, __LINE__)
void  *util_pages_alloc(size_t bytes, const char *file, int line);
void   util_pages_free(void *p, size_t bytes);
// the block p of util_pages_alloc in small pages from now on (pages not yet touched): for a block
// written and released part by part, where a 2 MiB page would hold its neighbours resident
void   util_pages_small(void *p, size_t bytes);
#endif
