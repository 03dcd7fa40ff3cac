#define _GNU_SOURCE   // nftw
#include "testlib.h"
#include "cli.h"
#include "store.h"
#include "util.h"
#include <ftw.h>
#include <sqlite3.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int n_pass, n_fail, cur_failed;   // test-harness state only; the library has no globals

void test_fail_at(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    util_vreport("    ", file, line, fmt, ap);
    va_end(ap);
    cur_failed = 1;
}

void test_case(const char *name, TestFn fn) {
    cur_failed = 0;
    fn();
    if (cur_failed) { n_fail++; printf("FAIL %s\n", name); }
    else            { n_pass++; printf("ok   %s\n", name); }
    fflush(stdout);
}

int test_summary(void) {
    printf("%d passed, %d failed\n", n_pass, n_fail);
    return n_fail ? 1 : 0;
}

int test_check_close(const char *file, int line, const float *a, const float *b, size_t n,
                     double atol, double rtol, const char *what) {
    size_t worst = 0, bad = 0;
    double worst_excess = -1;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double lim = atol + rtol * fabs((double)b[i]);
        if (!(d <= lim)) {   // also catches NaN
            bad++;
            double ex = isnan(d) ? INFINITY : d - lim;
            if (ex > worst_excess) { worst_excess = ex; worst = i; }
        }
    }
    if (bad) {
        test_fail_at(
            file, line,
            "%s: %zu of %zu elements differ; worst [%zu]: got %.8g want %.8g (atol %g rtol %g)",
            what, bad, n, worst, a[worst], b[worst], atol, rtol);
        return 0;
    }
    return 1;
}

const char *test_data_dir(void) {
    const char *d = getenv("RLHF_TEST_DIR");
    return d ? d : "tests";
}

// Format: "RLHFFIX1", u32 count, then per tensor: u32 name_len, name, u32 dtype, u32 ndim,
// i64 dims[ndim], raw little-endian data.
int fixture_load(Fixture *f, const char *path) {
    memset(f, 0, sizeof(*f));
    FILE *fp = fopen(path, "rb");
    if (!fp) { fprintf(stderr, "fixture: cannot open %s\n", path); return -1; }
    char magic[8];
    uint32_t count;
    if (fread(magic, 1, 8, fp) != 8 || memcmp(magic, "RLHFFIX1", 8) ||
        fread(&count, 4, 1, fp) != 1 || count > 100000) {
        fprintf(stderr, "fixture: %s: bad header\n", path); fclose(fp); return -1;
    }
    f->t = calloc(count, sizeof(FixtureTensor));
    for (uint32_t i = 0; i < count; i++) {
        FixtureTensor *t = &f->t[i];
        uint32_t nl, dt, nd;
        if (fread(&nl, 4, 1, fp) != 1 || nl >= sizeof(t->name) || fread(t->name, 1, nl, fp) != nl ||
            fread(&dt, 4, 1, fp) != 1 || fread(&nd, 4, 1, fp) != 1 || nd > 8 || dt > 1) goto bad;
        t->dtype = (int)dt; t->ndim = (int)nd; t->numel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if (fread(&t->dims[d], 8, 1, fp) != 1 || t->dims[d] < 0) goto bad;
            t->numel *= t->dims[d];
        }
        t->data = malloc((size_t)t->numel * 4 + 1);
        if ((int64_t)fread(t->data, 4, (size_t)t->numel, fp) != t->numel) goto bad;
        f->n = (int)i + 1;
    }
    fclose(fp);
    return 0;
bad:
    fprintf(stderr, "fixture: %s: truncated or corrupt\n", path);
    fclose(fp);
    fixture_free(f);
    return -1;
}

const FixtureTensor *fixture_get(const Fixture *f, const char *name) {
    for (int i = 0; i < f->n; i++) if (!strcmp(f->t[i].name, name)) return &f->t[i];
    return NULL;
}

void fixture_free(Fixture *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].data);
    free(f->t);
    memset(f, 0, sizeof(*f));
}

int test_scratch_dir(char *dir, size_t n, const char *prefix) {
    const char *tmpdir = getenv("TMPDIR");
    snprintf(dir, n, "%s/%s_XXXXXX", tmpdir && tmpdir[0] ? tmpdir : "/tmp", prefix);
    if (mkdtemp(dir)) return 0;
    printf("FAIL cannot create a scratch directory %s\n0 passed, 1 failed\n", dir);
    return -1;
}

void *test_read_file(const char *path, size_t *len) {
    char *data, err[512];
    size_t n;
    if (cli_read_file(path, &data, &n, err, sizeof err)) return NULL;
    if (len) *len = n;
    return data;
}

void test_write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(1);
    }
    fclose(f);
}

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(p);
}

void test_rm_rf(const char *path) { nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS); }

int64_t test_sql_int(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "query %s: %s\n", sql, sqlite3_errmsg(db));
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int64_t test_prompt_with(Store *s, const char *text, const char *split, int k, int64_t *out) {
    char err[512];
    int64_t p;
    if (store_add_prompt(s, text, split, "test", &p, err, sizeof err)) {
        fprintf(stderr, "%s\n", err);
        exit(1);
    }
    for (int i = 0; i < k; i++) {
        char t[32];
        snprintf(t, sizeof t, "c%d", i);
        if (store_add_completion(s, p, t, "m", &out[i], err, sizeof err)) {
            fprintf(stderr, "%s\n", err);
            exit(1);
        }
    }
    return p;
}
