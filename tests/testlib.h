// A tiny test harness: each test binary registers cases with test_case(), checks numbers with
// test_close_*, and ends with test_summary() which prints "N passed, N failed" and returns the
// exit status. A case fails if any check inside it fails; failures print file:line and values.
#ifndef TESTLIB_H
#define TESTLIB_H
#include <stddef.h>
#include <stdint.h>

typedef void (*TestFn)(void);

void test_case(const char *name, TestFn fn);   // runs fn now, records pass/fail
int  test_summary(void);                       // prints the closing line; 0 when all passed
void test_fail_at(const char *file, int line, const char *fmt, ...);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, "check failed: %s", #cond);                  \
    } while (0)
#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) test_fail_at(__FILE__, __LINE__, __VA_ARGS__);                                \
    } while (0)
// |a-b| <= atol + rtol*|b| for every element; prints the worst element on failure.
#define CHECK_CLOSE(a, b, n, atol, rtol, what) \
    test_check_close(__FILE__, __LINE__, (a), (b), (n), (atol), (rtol), (what))
int test_check_close(const char *file, int line, const float *a, const float *b, size_t n,
                     double atol, double rtol, const char *what);

// An expected failure: rc -1 and a one-line message containing want (and want2 when not NULL).
#define CHECK_ERR(rc, err, want, want2) do { \
        int rc_ = (rc); \
        CHECK_MSG(rc_ == -1, "expected an error containing \"%s\", got rc %d", want, rc_); \
        if (rc_ == -1) { \
            CHECK_MSG(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want); \
            CHECK_MSG(strchr(err, '\n') == NULL, "error is not one line: %s", err); \
            CHECK_MSG(!(want2) || strstr(err, (want2) ? (want2) : "") != NULL, \
                      "error \"%s\" lacks \"%s\"", err, (want2) ? (want2) : ""); \
        } \
    } while (0)

// Files for tests. test_read_file: the whole file, malloc'd with a NUL after it (*len, when not
// NULL, without it), or NULL when it cannot be read. test_write_file writes data[0..n) or ends
// the test program. test_rm_rf removes path and everything below it.
void *test_read_file(const char *path, size_t *len);
void  test_write_file(const char *path, const void *data, size_t n);
void  test_rm_rf(const char *path);
// The single integer an SQL query returns on db (a sqlite3 *, e.g. store_sqlite's); -1 when it
// fails or returns no row (the message on stderr).
struct sqlite3;
int64_t test_sql_int(struct sqlite3 *db, const char *sql);
// A prompt TEXT in SPLIT of source "test" with k completions "c0".."c{k-1}" by model "m", their
// ids into out; returns the prompt's id (exits on a store error: a broken fixture, not a case).
struct Store;
int64_t test_prompt_with(struct Store *s, const char *text, const char *split, int k,
                         int64_t *out);
// A fresh scratch directory $TMPDIR/PREFIX_XXXXXX (/tmp without TMPDIR) in dir[0..n); when it
// cannot be made, prints a failed summary and returns -1 (main returns 1).
int   test_scratch_dir(char *dir, size_t n, const char *prefix);

// Named-tensor fixture files written by tests/ref/*.py (format in tests/ref/fixture.py).
typedef struct {
    char name[128];
    int dtype;           // 0 = float32, 1 = int32
    int ndim;
    int64_t dims[8];
    int64_t numel;
    void *data;          // owned by the Fixture
} FixtureTensor;
typedef struct {
    FixtureTensor *t;
    int n;
} Fixture;
int  fixture_load(Fixture *f, const char *path);        // 0 on success
const FixtureTensor *fixture_get(const Fixture *f, const char *name);  // NULL if absent
void fixture_free(Fixture *f);
const char *test_data_dir(void);  // folder of the repo's tests/ (env RLHF_TEST_DIR or "tests")
#endif
