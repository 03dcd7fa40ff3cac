// Store tests: every function of store.h on a fresh workspace database; idempotent re-inserts;
// rankings with ties and every validation; transactions (rollback leaves nothing, a failed write
// inside a caller's transaction undoes only itself); label claims (leases, skips, overlap, resume)
// with one connection and with several processes at once; a writer and a reader at once under WAL;
// schema versions (a v1 database written by hand is migrated, a newer one is refused); files that
// are not workspaces and read-only workspaces are clear errors; SQL metacharacters and invalid
// UTF-8 come back byte-exact; PRAGMA integrity_check after everything.
#define _GNU_SOURCE   // nftw
#include "store.h"
#include "testlib.h"
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static char root[256];   // scratch directory for this run

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

static void db_path(char *out, size_t n, const char *name) {
    if (snprintf(out, n, "%s/%s", root, name) >= (int)n) {
        fprintf(stderr, "path too long\n");
        exit(1);
    }
}

static void remove_db(const char *path) {
    char p[600];
    unlink(path);
    snprintf(p, sizeof p, "%s-wal", path); unlink(p);
    snprintf(p, sizeof p, "%s-shm", path); unlink(p);
}

// A fresh database at root/name (any earlier one removed).
static Store *open_fresh(const char *name) {
    char path[512], err[512];
    db_path(path, sizeof path, name);
    remove_db(path);
    Store *s;
    if (store_open(&s, path, err, sizeof err)) {
        fprintf(stderr, "store_open: %s\n", err);
        exit(1);
    }
    return s;
}

// The single integer a query returns (-1 on error).
static int64_t query_int(Store *s, const char *sql) { return test_sql_int(store_sqlite(s), sql); }

static void check_integrity(Store *s, int line) {
    char err[512];
    if (store_check(s, err, sizeof err)) test_fail_at(__FILE__, line, "store_check: %s", err);
}
#define CHECK_INTEGRITY(s) check_integrity((s), __LINE__)

static int one_line(const char *s) { return !strchr(s, '\n'); }

static void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}


// Collects ids from a walk.
typedef struct { int64_t ids[64]; int n; int stop_after; } Ids;
static int collect_prompt(const StorePrompt *p, void *ctx) {
    Ids *v = ctx;
    if (v->n < 64) v->ids[v->n++] = p->id;
    return v->stop_after && v->n == v->stop_after ? 7 : 0;
}

// ---------------------------------------------------------------------------------------------

static void test_open(void) {
    Store *s = open_fresh("open.db");
    char err[512];
    int64_t v = 0;
    CHECK(store_schema_version(s, &v, err, sizeof err) == 0 && v == STORE_SCHEMA_VERSION);
    sqlite3_stmt *st;
    CHECK(sqlite3_prepare_v2(store_sqlite(s), "PRAGMA journal_mode", -1, &st, NULL) == SQLITE_OK);
    CHECK(sqlite3_step(st) == SQLITE_ROW &&
          !strcmp((const char *)sqlite3_column_text(st, 0), "wal"));
    sqlite3_finalize(st);
    CHECK(query_int(s, "PRAGMA foreign_keys") == 1);
    CHECK(query_int(s, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('meta', 'prompts', "
                       "'demonstrations', 'completions', 'labelers', 'rankings', 'ranking_items', 'claims', "
                       "'reward_scores', 'runs', 'metrics', 'rollouts', 'imports', 'users', 'sessions', "
                       "'ranking_flags')") == 16);
    CHECK(query_int(s, "SELECT count(*) FROM meta WHERE key = 'application' AND value = '" STORE_APPLICATION "'") == 1);
    CHECK(strstr(store_path(s), "open.db") != NULL);
    CHECK(!store_in_transaction(s));
    CHECK_INTEGRITY(s);
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(s));
    store_close(s);
    // Reopening an existing workspace changes nothing.
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_schema_version(s, &v, err, sizeof err) == 0 && v == STORE_SCHEMA_VERSION);
    store_close(s);
    store_close(NULL);
    CHECK(store_open(&s, "", err, sizeof err) == -1 && s == NULL);
}

static void test_prompts(void) {
    Store *s = open_fresh("prompts.db");
    char err[512];
    int64_t a, b, c, again, found;
    CHECK(store_add_prompt(s, "What is 2+2?", "train", "math.jsonl", &a, err, sizeof err) == 0 &&
          a > 0);
    CHECK(store_add_prompt(s, "Reverse 'abc'.", "valid", NULL, &b, err, sizeof err) == 0 && b > a);
    CHECK(store_add_prompt(s, "Sort 3 1 2.", NULL, "gen", &c, err, sizeof err) == 0 && c > b);
    // Idempotent: the same text gives the same id, and the first split and source are kept.
    CHECK(store_add_prompt(s, "What is 2+2?", "test", "other.jsonl", &again, err, sizeof err) == 0 && again == a);
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 3);
    StorePrompt p;
    CHECK(store_get_prompt(s, a, &p, err, sizeof err) == 0);
    CHECK(p.id == a && !strcmp(p.text, "What is 2+2?") && !strcmp(p.split, "train") &&
          !strcmp(p.source, "math.jsonl"));
    CHECK(p.created > 1.6e9);
    store_prompt_free(&p);
    CHECK(p.text == NULL);
    CHECK(store_get_prompt(s, c, &p, err, sizeof err) == 0 && !strcmp(p.split, "train") &&
          !strcmp(p.source, "gen"));
    store_prompt_free(&p);
    CHECK(store_get_prompt(s, 999, &p, err, sizeof err) == -1 &&
          strstr(err, "prompt 999 does not exist") && p.text == NULL);
    store_prompt_free(&p);
    CHECK(store_find_prompt(s, "Reverse 'abc'.", &found, err, sizeof err) == 0 && found == b);
    CHECK(store_find_prompt(s, "absent", &found, err, sizeof err) == 0 && found == 0);
    // Bad split: an error naming it; nothing stored.
    CHECK(store_add_prompt(s, "x", "dev", NULL, &found, err, sizeof err) == -1 && found == 0);
    CHECK_MSG(strstr(err, "unknown split 'dev' (expected train, valid or test)") &&
                  strstr(err, "prompts.db"),
              "%s", err);
    CHECK(store_add_prompt(s, NULL, "train", NULL, &found, err, sizeof err) == -1);
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 3);
    // Walks by split; a callback's non-zero value stops the walk and is returned.
    Ids ids = {0};
    CHECK(store_each_prompt(s, NULL, collect_prompt, &ids, err, sizeof err) == 0 && ids.n == 3);
    CHECK(ids.ids[0] == a && ids.ids[1] == b && ids.ids[2] == c);
    ids = (Ids){0};
    CHECK(store_each_prompt(s, "train", collect_prompt, &ids, err, sizeof err) == 0 && ids.n == 2 &&
          ids.ids[1] == c);
    ids = (Ids){.stop_after = 1};
    CHECK(store_each_prompt(s, NULL, collect_prompt, &ids, err, sizeof err) == 7 && ids.n == 1);
    CHECK(store_each_prompt(s, "bad", collect_prompt, &ids, err, sizeof err) == -1);
    // Splits by content: deterministic, about the fractions asked for.
    CHECK(store_split_valid("train") && store_split_valid("valid") && store_split_valid("test"));
    CHECK(!store_split_valid("Train") && !store_split_valid(NULL) && !store_split_valid(""));
    int counts[3] = {0};
    for (int i = 0; i < 20000; i++) {
        char t[32];
        snprintf(t, sizeof t, "prompt %d", i);
        const char *sp = store_split_for_text(t, 0.1, 0.05);
        CHECK(sp == store_split_for_text(t, 0.1, 0.05));
        counts[!strcmp(sp, "valid") ? 1 : !strcmp(sp, "test") ? 2 : 0]++;
    }
    CHECK_MSG(abs(counts[1] - 2000) < 200 && abs(counts[2] - 1000) < 150, "valid %d test %d",
              counts[1], counts[2]);
    CHECK(!strcmp(store_split_for_text("x", 0, 0), "train") &&
          !strcmp(store_split_for_text("x", 1, 0), "valid"));
    CHECK_INTEGRITY(s);
    store_close(s);
}

// Rows a walk reported, each as its id and four of its fields joined by '|': the first 8.
typedef struct { int n; char texts[8][64]; int64_t ids[8]; } Rows;
static void rows_add(Rows *r, int64_t id, const char *a, const char *b, const char *c,
                     const char *d) {
    if (r->n < 8) {
        snprintf(r->texts[r->n], 64, "%s|%s|%s|%s", a, b, c, d);
        r->ids[r->n++] = id;
    }
}
static int collect_demo(const StoreDemonstration *d, void *ctx) {
    rows_add(ctx, d->id, d->prompt, d->response, d->split, d->source);
    return 0;
}
static int collect_completion(const StoreCompletion *c, void *ctx) {
    rows_add(ctx, c->id, c->prompt, c->text, c->model, c->split);
    return 0;
}

static void test_demonstrations_completions_labelers(void) {
    Store *s = open_fresh("demos.db");
    char err[512];
    int64_t p1, p2, d1, d2, d3, again;
    CHECK(store_add_prompt(s, "P1", "train", "", &p1, err, sizeof err) == 0);
    CHECK(store_add_prompt(s, "P2", "test", "", &p2, err, sizeof err) == 0);
    CHECK(store_add_demonstration(s, p1, "R1", "human", &d1, err, sizeof err) == 0 && d1 > 0);
    CHECK(store_add_demonstration(s, p1, "R1b", NULL, &d2, err, sizeof err) == 0 && d2 > d1);
    CHECK(store_add_demonstration(s, p2, "R2", "human", &d3, err, sizeof err) == 0);
    CHECK(store_add_demonstration(s, p1, "R1", "other", &again, err, sizeof err) == 0 &&
          again == d1);
    CHECK(store_add_demonstration(s, 999, "R", NULL, &again, err, sizeof err) == -1 && again == 0 &&
          strstr(err, "add demonstration: prompt 999 does not exist"));
    Rows r = {0};
    CHECK(store_each_demonstration(s, NULL, collect_demo, &r, err, sizeof err) == 0 && r.n == 3);
    CHECK(!strcmp(r.texts[0], "P1|R1|train|human") && !strcmp(r.texts[1], "P1|R1b|train|") &&
          !strcmp(r.texts[2], "P2|R2|test|human"));
    r = (Rows){0};
    CHECK(store_each_demonstration(s, "test", collect_demo, &r, err, sizeof err) == 0 && r.n == 1 &&
          r.ids[0] == d3);

    int64_t c1, c2, c3, c4;
    CHECK(store_add_completion(s, p1, "A", "sft-v1", &c1, err, sizeof err) == 0 && c1 > 0);
    CHECK(store_add_completion(s, p1, "A", "sft-v2", &c2, err, sizeof err) == 0 &&
          c2 != c1); // another model
    CHECK(store_add_completion(s, p1, "B", NULL, &c3, err, sizeof err) == 0);
    CHECK(store_add_completion(s, p2, "A", "sft-v1", &c4, err, sizeof err) == 0 &&
          c4 != c1); // another prompt
    CHECK(store_add_completion(s, p1, "A", "sft-v1", &again, err, sizeof err) == 0 && again == c1);
    CHECK(store_add_completion(s, 0, "A", NULL, &again, err, sizeof err) == -1 && again == 0);
    CHECK(query_int(s, "SELECT count(*) FROM completions") == 4);
    r = (Rows){0};
    CHECK(store_each_completion(s, p1, NULL, collect_completion, &r, err, sizeof err) == 0 &&
          r.n == 3);
    CHECK(!strcmp(r.texts[0], "P1|A|sft-v1|train") && !strcmp(r.texts[1], "P1|A|sft-v2|train") &&
          !strcmp(r.texts[2], "P1|B||train"));
    r = (Rows){0};
    CHECK(store_each_completion(s, 0, NULL, collect_completion, &r, err, sizeof err) == 0 &&
          r.n == 4 && r.ids[3] == c4);

    int64_t l1, l2, lf;
    CHECK(store_add_labeler(s, "alice", &l1, err, sizeof err) == 0 && l1 > 0);
    CHECK(store_add_labeler(s, "bob", &l2, err, sizeof err) == 0 && l2 != l1);
    CHECK(store_add_labeler(s, "alice", &lf, err, sizeof err) == 0 && lf == l1);
    CHECK(store_find_labeler(s, "bob", &lf, err, sizeof err) == 0 && lf == l2);
    CHECK(store_find_labeler(s, "carol", &lf, err, sizeof err) == 0 && lf == 0);
    CHECK(store_add_labeler(s, "", &lf, err, sizeof err) == -1 && strstr(err, "the name is empty"));
    CHECK(store_add_labeler(s, NULL, &lf, err, sizeof err) == -1);
    CHECK_INTEGRITY(s);
    store_close(s);
}

typedef struct { int n; char desc[8][160]; } Rankings;
static int collect_ranking(const StoreRanking *r, void *ctx) {
    Rankings *v = ctx;
    if (v->n >= 8) return 0;
    int o = snprintf(v->desc[v->n], 160, "%s|%s|%s|%s|k%d:", r->prompt, r->split, r->labeler,
                     r->comment, r->k);
    for (int i = 0; i < r->k && o < 150; i++)
        o += snprintf(v->desc[v->n] + o, 160 - (size_t)o, " %s=%d", r->items[i].text,
                      r->items[i].rank);
    v->n++;
    return 0;
}

static void test_rankings(void) {
    Store *s = open_fresh("rankings.db");
    char err[512];
    int64_t c[4], d[3], lab, lab2, r1, r2, r3, rid;
    int64_t p = test_prompt_with(s, "P", "train", 4, c);
    int64_t q = test_prompt_with(s, "Q", "valid", 3, d);
    CHECK(store_add_labeler(s, "alice", &lab, err, sizeof err) == 0 &&
          store_add_labeler(s, "bob", &lab2, err, sizeof err) == 0);
    // "2>4>1=3": c1 best, then c3, then c0 and c2 tied.
    StoreRankItem items[4] = {{c[1], 1}, {c[3], 2}, {c[0], 3}, {c[2], 3}};
    CHECK_MSG(store_add_ranking(s, p, lab, items, 4, "c0 and c2 equally bad", &r1, err, sizeof err) == 0 && r1 > 0, "%s", err);
    StoreRankItem qi[3] = {{d[2], 1}, {d[0], 2}, {d[1], 3}};
    CHECK(store_add_ranking(s, q, lab2, qi, 3, NULL, &r2, err, sizeof err) == 0);
    StoreRankItem all_tied[2] = {{c[0], 1}, {c[1], 1}};
    CHECK(store_add_ranking(s, p, lab2, all_tied, 2, "", &r3, err, sizeof err) == 0);
    Rankings got = {0};
    CHECK(store_each_ranking(s, NULL, collect_ranking, &got, err, sizeof err) == 0 && got.n == 3);
    CHECK_MSG(!strcmp(got.desc[0], "P|train|alice|c0 and c2 equally bad|k4: c1=1 c3=2 c0=3 c2=3"),
              "%s", got.desc[0]);
    CHECK_MSG(!strcmp(got.desc[1], "Q|valid|bob||k3: c2=1 c0=2 c1=3"), "%s", got.desc[1]);
    CHECK_MSG(!strcmp(got.desc[2], "P|train|bob||k2: c0=1 c1=1"), "%s", got.desc[2]);
    got = (Rankings){0};
    CHECK(store_each_ranking(s, "valid", collect_ranking, &got, err, sizeof err) == 0 &&
          got.n == 1);
    got = (Rankings){0};
    CHECK(store_each_ranking(s, "test", collect_ranking, &got, err, sizeof err) == 0 && got.n == 0);

    // Every validation, each leaving nothing behind.
    int64_t n_rank = query_int(s, "SELECT count(*) FROM rankings"),
            n_items = query_int(s, "SELECT count(*) FROM ranking_items");
    struct { StoreRankItem it[3]; int k; int64_t prompt, labeler; const char *want; } bad[] = {
        {{{c[0], 1}}, 1, p, lab, "a ranking needs at least 2 completions, got 1"},
        {{{c[0], 1}, {c[1], 3}}, 2, p, lab, "rank 3 of completion"},
        {{{c[0], 0}, {c[1], 1}}, 2, p, lab, "rank 0 of completion"},
        {{{c[0], 1}, {c[0], 2}}, 2, p, lab, "appears twice"},
        {{{c[0], 1}, {d[0], 2}}, 2, p, lab, "belongs to prompt"},
        {{{c[0], 1}, {12345, 2}}, 2, p, lab, "completion 12345 does not exist"},
        {{{c[0], 1}, {c[1], 2}}, 2, 777, lab, "prompt 777 does not exist"},
        {{{c[0], 1}, {c[1], 2}}, 2, p, 555, "labeler 555 does not exist"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        rid = -5;
        int rc = store_add_ranking(s, bad[i].prompt, bad[i].labeler, bad[i].it, bad[i].k, NULL,
                                   &rid, err, sizeof err);
        CHECK_MSG(rc == -1 && rid == 0 && strstr(err, bad[i].want) && strstr(err, "rankings.db") &&
                      one_line(err),
                  "case %zu: rc %d: %s", i, rc, err);
    }
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == n_rank &&
          query_int(s, "SELECT count(*) FROM ranking_items") == n_items);
    CHECK(store_add_ranking(s, p, lab, NULL, 2, NULL, &rid, err, sizeof err) == -1);
    // Undo: delete a ranking and its items.
    CHECK(store_delete_ranking(s, r1, err, sizeof err) == 0);
    CHECK(query_int(s, "SELECT count(*) FROM ranking_items WHERE ranking_id = (SELECT max(id) FROM rankings) + 1000") == 0);
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == n_rank - 1 && query_int(s, "SELECT count(*) FROM ranking_items") == n_items - 4);
    CHECK(store_delete_ranking(s, r1, err, sizeof err) == -1 && strstr(err, "does not exist"));
    CHECK_INTEGRITY(s);
    store_close(s);
}

static void test_transactions(void) {
    Store *s = open_fresh("tx.db");
    char err[512];
    int64_t id, lab, c[2];
    // Rollback leaves nothing.
    CHECK(store_begin(s, err, sizeof err) == 0 && store_in_transaction(s));
    CHECK(store_begin(s, err, sizeof err) == -1 && strstr(err, "already open"));
    CHECK(store_add_prompt(s, "gone", "train", NULL, &id, err, sizeof err) == 0);
    CHECK(store_add_labeler(s, "ghost", &lab, err, sizeof err) == 0);
    CHECK(store_rollback(s, err, sizeof err) == 0 && !store_in_transaction(s));
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 0 &&
          query_int(s, "SELECT count(*) FROM labelers") == 0);
    CHECK(store_rollback(s, err, sizeof err) == 0);   // nothing open: fine
    CHECK(store_commit(s, err, sizeof err) == -1 && strstr(err, "no transaction"));
    // Commit keeps everything.
    CHECK(store_begin(s, err, sizeof err) == 0);
    int64_t p = test_prompt_with(s, "kept", "train", 2, c);
    CHECK(store_add_labeler(s, "alice", &lab, err, sizeof err) == 0);
    // A failing multi-statement write inside the caller's transaction undoes only itself.
    StoreRankItem bad[2] = {{c[0], 1}, {999, 2}};
    CHECK(store_add_ranking(s, p, lab, bad, 2, NULL, &id, err, sizeof err) == -1 &&
          store_in_transaction(s));
    StoreRankItem good[2] = {{c[0], 1}, {c[1], 2}};
    CHECK(store_add_ranking(s, p, lab, good, 2, NULL, &id, err, sizeof err) == 0);
    int64_t claimed;
    CHECK(store_claim_prompt(s, lab, NULL, &claimed, err, sizeof err) == 0 &&
          claimed == 0); // savepoint inside tx
    CHECK(store_commit(s, err, sizeof err) == 0 && !store_in_transaction(s));
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == 1 &&
          query_int(s, "SELECT count(*) FROM ranking_items") == 2);
    // Closing with an open transaction rolls it back.
    char path[512];
    snprintf(path, sizeof path, "%s", store_path(s));
    CHECK(store_begin(s, err, sizeof err) == 0 &&
          store_add_prompt(s, "unfinished", "train", NULL, &id, err, sizeof err) == 0);
    store_close(s);
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_find_prompt(s, "unfinished", &id, err, sizeof err) == 0 && id == 0);
    CHECK_INTEGRITY(s);
    store_close(s);
}

// The way `reward import` uses the store: hash the file; if imported before, add nothing; else
// one transaction for the whole file, rolled back on the first bad line. Lines: "prompt\tanswer".
static int import_file(Store *s, const char *path, int64_t *added, char *err, size_t errlen) {
    char hash[STORE_HASH_HEX], line[512];
    int64_t id;
    *added = 0;
    if (store_hash_file(path, hash, err, errlen)) return -1;
    if (store_find_import(s, hash, &id, err, errlen)) return -1;
    if (id) return 0;
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    if (store_begin(s, err, errlen)) { fclose(f); return -1; }
    int64_t n = 0, lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char *tab = strchr(line, '\t'), *nl = strchr(line, '\n');
        if (nl) *nl = 0;
        int64_t p, d;
        if (!tab) {
            snprintf(err, errlen, "%s:%lld: expected prompt<TAB>answer", path, (long long)lineno);
            fclose(f);
            store_rollback(s, NULL, 0);
            return -1;
        }
        *tab = 0;
        if (store_add_prompt(s, line, store_split_for_text(line, 0.2, 0), path, &p, err, errlen) ||
            store_add_demonstration(s, p, tab + 1, path, &d, err, errlen)) {
            fclose(f);
            store_rollback(s, NULL, 0);
            return -1;
        }
        n++;
    }
    fclose(f);
    if (store_add_import(s, path, hash, "tsv", n, &id, err, errlen) ||
        store_commit(s, err, errlen)) {
        store_rollback(s, NULL, 0);
        return -1;
    }
    *added = n;
    return 0;
}

static void test_imports(void) {
    Store *s = open_fresh("imports.db");
    char err[512], hex[STORE_HASH_HEX], path[512], copy[512], badp[512];
    // SHA-256 against the FIPS 180-2 examples.
    store_hash_bytes("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    store_hash_bytes("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    store_hash_bytes(two, strlen(two), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    store_hash_bytes(million, 1000000, hex);
    CHECK(!strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"));
    db_path(path, sizeof path, "million.txt");
    FILE *f = fopen(path, "wb");
    fwrite(million, 1, 1000000, f);
    fclose(f);
    free(million);
    char hex2[STORE_HASH_HEX];
    CHECK(store_hash_file(path, hex2, err, sizeof err) == 0 && !strcmp(hex, hex2));
    unlink(path);
    CHECK(store_hash_file("/nonexistent/file", hex2, err, sizeof err) == -1 &&
          strstr(err, "/nonexistent/file"));

    db_path(path, sizeof path, "demos.tsv");
    f = fopen(path, "w");
    for (int i = 0; i < 50; i++) fprintf(f, "prompt %d\tanswer %d\n", i, i);
    fclose(f);
    db_path(copy, sizeof copy, "demos-renamed.tsv");
    f = fopen(copy, "w");
    for (int i = 0; i < 50; i++) fprintf(f, "prompt %d\tanswer %d\n", i, i);
    fclose(f);
    db_path(badp, sizeof badp, "bad.tsv");
    f = fopen(badp, "w");
    for (int i = 0; i < 30; i++) fprintf(f, "new prompt %d\tanswer\n", i);
    fprintf(f, "no tab on this line\n");
    fclose(f);
    int64_t added;
    CHECK(import_file(s, path, &added, err, sizeof err) == 0 && added == 50);
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 50 &&
          query_int(s, "SELECT count(*) FROM demonstrations") == 50);
    int64_t train = query_int(s, "SELECT count(*) FROM prompts WHERE split = 'train'");
    CHECK(train > 25 && train < 50);
    // The same file again, or a copy under another name: nothing added.
    CHECK(import_file(s, path, &added, err, sizeof err) == 0 && added == 0);
    CHECK(import_file(s, copy, &added, err, sizeof err) == 0 && added == 0);
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 50 &&
          query_int(s, "SELECT count(*) FROM imports") == 1);
    // A bad line: nothing from that file is stored.
    CHECK(import_file(s, badp, &added, err, sizeof err) == -1 && strstr(err, "bad.tsv:31:"));
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == 50 &&
          query_int(s, "SELECT count(*) FROM imports") == 1);
    CHECK(!store_in_transaction(s));
    // Recording the same hash twice is an error naming the earlier file.
    CHECK(store_hash_file(path, hex, err, sizeof err) == 0);
    int64_t id;
    CHECK(store_add_import(s, copy, hex, "tsv", 50, &id, err, sizeof err) == -1 && id == 0);
    CHECK_MSG(strstr(err, "demos-renamed.tsv has the same contents as") && strstr(err, "demos.tsv"),
              "%s", err);
    CHECK(store_find_import(s, hex, &id, err, sizeof err) == 0 && id > 0);
    CHECK(store_find_import(s, "0000", &id, err, sizeof err) == 0 && id == 0);
    CHECK(store_add_import(s, path, "", "tsv", 0, &id, err, sizeof err) == -1);
    unlink(path); unlink(copy); unlink(badp);
    CHECK_INTEGRITY(s);
    store_close(s);
}

// (id, value) pairs a walk reported (reward scores, run statuses): the first 16 are kept.
typedef struct { int n; int64_t ids[16]; double values[16]; } IdValues;
static void id_values_add(IdValues *v, int64_t id, double value) {
    if (v->n < 16) { v->ids[v->n] = id; v->values[v->n] = value; v->n++; }
}
static int collect_score(const StoreRewardScore *r, void *ctx) {
    id_values_add(ctx, r->completion_id, r->score);
    return 0;
}
typedef struct { Store *s; const char *model; int n; } Scorer;
static int score_it(const StoreCompletion *c, void *ctx) {   // writes while walking
    Scorer *sc = ctx;
    char err[256];
    sc->n++;
    return store_set_reward_score(sc->s, sc->model, c->id, (double)c->id / 10, err, sizeof err);
}

static void test_reward_scores(void) {
    Store *s = open_fresh("scores.db");
    char err[512];
    int64_t c[3], c2[2];
    test_prompt_with(s, "P", "train", 3, c);
    test_prompt_with(s, "Q", "test", 2, c2);
    double v;
    int found;
    CHECK(store_set_reward_score(s, "rm-1", c[0], 1.5, err, sizeof err) == 0);
    CHECK(store_set_reward_score(s, "rm-1", c[1], -0.25, err, sizeof err) == 0);
    CHECK(store_set_reward_score(s, "rm-2", c[0], 9, err, sizeof err) == 0);
    CHECK(store_get_reward_score(s, "rm-1", c[0], &v, &found, err, sizeof err) == 0 && found && v == 1.5);
    CHECK(store_set_reward_score(s, "rm-1", c[0], 2.5, err, sizeof err) == 0);   // re-scoring replaces
    CHECK(store_get_reward_score(s, "rm-1", c[0], &v, &found, err, sizeof err) == 0 && found && v == 2.5);
    CHECK(store_get_reward_score(s, "rm-1", c[2], &v, &found, err, sizeof err) == 0 && !found);
    CHECK(store_set_reward_score(s, "rm-1", 999, 1, err, sizeof err) == -1 &&
          strstr(err, "completion 999 does not exist"));
    CHECK(store_set_reward_score(s, "rm-1", c[0], NAN, err, sizeof err) == -1 &&
          strstr(err, "not finite"));
    CHECK(store_set_reward_score(s, "rm-1", c[0], INFINITY, err, sizeof err) == -1);
    CHECK(store_set_reward_score(s, "", c[0], 1, err, sizeof err) == -1);
    IdValues got = {0};
    CHECK(store_each_reward_score(s, "rm-1", collect_score, &got, err, sizeof err) == 0 &&
          got.n == 2);
    CHECK(got.ids[0] == c[0] && got.values[0] == 2.5 && got.ids[1] == c[1] &&
          got.values[1] == -0.25);
    // Scoring what rm-1 has not scored yet, writing each score from inside the walk.
    Scorer sc = {s, "rm-1", 0};
    CHECK(store_each_completion(s, 0, "rm-1", score_it, &sc, err, sizeof err) == 0 && sc.n == 3);
    sc.n = 0;
    CHECK(store_each_completion(s, 0, "rm-1", score_it, &sc, err, sizeof err) == 0 && sc.n == 0);
    CHECK(query_int(s, "SELECT count(*) FROM reward_scores WHERE model = 'rm-1'") == 5);
    CHECK(!store_in_transaction(s));
    CHECK_INTEGRITY(s);
    store_close(s);
}

static int collect_run(const StoreRun *r, void *ctx) {
    id_values_add(ctx, r->id, r->status);
    return 0;
}

static void test_runs(void) {
    Store *s = open_fresh("runs.db");
    char err[512];
    int64_t pipe_run, r1, r2, r3;
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "pipeline", .name = "demo"}, &pipe_run, err,
                        sizeof err) == 0);
    StoreRunInfo info = {.stage = "sft", .name = "sft-small", .program = "sft -c sft.yaml",
                         .config = "train:\n  lr: 3e-05\n", .config_hash = "00112233aabbccdd",
                         .parent_id = pipe_run};
    CHECK(store_add_run(s, &info, &r1, err, sizeof err) == 0 && r1 > pipe_run);
    StoreRun r;
    CHECK(store_get_run(s, r1, &r, err, sizeof err) == 0);
    CHECK(r.id == r1 && !strcmp(r.stage, "sft") && !strcmp(r.name, "sft-small") &&
          !strcmp(r.program, "sft -c sft.yaml"));
    CHECK(!strcmp(r.config, info.config) && !strcmp(r.config_hash, info.config_hash) &&
          !strcmp(r.checkpoint, ""));
    CHECK(r.status == STORE_RUN_RUNNING && r.pid == getpid() && r.finished == 0 &&
          !r.has_exit_code && r.parent_id == pipe_run);
    CHECK(r.started > 1.6e9 && strlen(r.host) > 0);
    store_run_free(&r);
    CHECK(store_set_run_checkpoint(s, r1, "ws/sft/last", err, sizeof err) == 0);
    CHECK(store_set_run_status(s, r1, STORE_RUN_INTERRUPTED, 137, err, sizeof err) == 0);
    CHECK(store_get_run(s, r1, &r, err, sizeof err) == 0 && r.status == STORE_RUN_INTERRUPTED &&
          r.has_exit_code && r.exit_code == 137 && r.finished >= r.started &&
          !strcmp(r.checkpoint, "ws/sft/last"));
    store_run_free(&r);
    // Resume, then finish.
    CHECK(store_set_run_status(s, r1, STORE_RUN_RUNNING, 0, err, sizeof err) == 0);
    CHECK(store_get_run(s, r1, &r, err, sizeof err) == 0 && r.status == STORE_RUN_RUNNING &&
          !r.has_exit_code && r.finished == 0);
    store_run_free(&r);
    CHECK(store_set_run_status(s, r1, STORE_RUN_DONE, 0, err, sizeof err) == 0);
    info.config_hash = "ffff";
    CHECK(store_add_run(s, &info, &r2, err, sizeof err) == 0);
    CHECK(store_set_run_status(s, r2, STORE_RUN_FAILED, 1, err, sizeof err) == 0);
    info.stage = "reward";
    CHECK(store_add_run(s, &info, &r3, err, sizeof err) == 0);
    // Finding the last run of a stage, by hash and status.
    CHECK(store_find_last_run(s, "sft", NULL, -1, &r, err, sizeof err) == 0 && r.id == r2);
    store_run_free(&r);
    CHECK(store_find_last_run(s, "sft", "00112233aabbccdd", -1, &r, err, sizeof err) == 0 &&
          r.id == r1 && r.status == STORE_RUN_DONE);
    store_run_free(&r);
    CHECK(store_find_last_run(s, "sft", NULL, STORE_RUN_DONE, &r, err, sizeof err) == 0 &&
          r.id == r1);
    store_run_free(&r);
    CHECK(store_find_last_run(s, "sft", "ffff", STORE_RUN_DONE, &r, err, sizeof err) == 0 &&
          r.id == 0 && r.stage == NULL);
    store_run_free(&r);
    CHECK(store_find_last_run(s, "ppo", NULL, -1, &r, err, sizeof err) == 0 && r.id == 0);
    CHECK(store_find_last_run(s, "sft", NULL, 9, &r, err, sizeof err) == -1);
    IdValues list = {0};
    CHECK(store_each_run(s, NULL, collect_run, &list, err, sizeof err) == 0 && list.n == 4 &&
          list.ids[3] == r3);
    list = (IdValues){0};
    CHECK(store_each_run(s, "sft", collect_run, &list, err, sizeof err) == 0 && list.n == 2 &&
          list.values[0] == STORE_RUN_DONE && list.values[1] == STORE_RUN_FAILED);
    // The end of a program's run: status and exit code from its result, the exit code returned.
    int want_code[3] = {143, 1, 0}, rcs[3] = {15, -1, 0};   // rc > 0: the signal's number
    int64_t r4;
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "finish"}, &r4, err, sizeof err) == 0);
    StoreRunStatus want_st[3] = {STORE_RUN_INTERRUPTED, STORE_RUN_FAILED, STORE_RUN_DONE};
    for (int i = 0; i < 3; i++) {
        CHECK(store_finish_run(s, r4, rcs[i], "test") == want_code[i]);
        CHECK(store_get_run(s, r4, &r, err, sizeof err) == 0 && r.status == want_st[i] &&
              r.has_exit_code && r.exit_code == want_code[i]);
        store_run_free(&r);
    }
    CHECK(store_finish_run(NULL, 0, -1, "test") == 1 &&
          store_finish_run(NULL, 0, 2, "test") == 130 &&
          store_finish_run(NULL, 0, 1, "test") == 129);
    // Errors.
    CHECK(store_get_run(s, 999, &r, err, sizeof err) == -1 &&
          strstr(err, "run 999 does not exist"));
    CHECK(store_set_run_status(s, 999, STORE_RUN_DONE, 0, err, sizeof err) == -1 &&
          strstr(err, "run 999 does not exist"));
    CHECK(store_set_run_status(s, r1, (StoreRunStatus)7, 0, err, sizeof err) == -1);
    CHECK(store_set_run_checkpoint(s, 999, "x", err, sizeof err) == -1);
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = ""}, &r2, err, sizeof err) == -1);
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "x", .parent_id = 999}, &r2, err, sizeof err) == -1 && strstr(err, "999"));
    StoreRunStatus st;
    CHECK(store_run_status_parse("interrupted", &st) == 0 && st == STORE_RUN_INTERRUPTED);
    CHECK(store_run_status_parse("paused", &st) == -1 &&
          !strcmp(store_run_status_name(STORE_RUN_FAILED), "failed"));
    // Reaping: a run whose process is gone becomes 'interrupted'; ours stays 'running'.
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "ppo"}, &r2, err, sizeof err) == 0);
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE runs SET pid = %d WHERE id = %lld", (int)child,
             (long long)r2);
    CHECK(sqlite3_exec(store_sqlite(s), sql, NULL, NULL, NULL) == SQLITE_OK);
    int64_t reaped;
    CHECK(store_reap_runs(s, &reaped, err, sizeof err) == 0 &&
          reaped == 1); // r3 and pipe_run are this process's: they stay
    CHECK(store_get_run(s, r2, &r, err, sizeof err) == 0 && r.status == STORE_RUN_INTERRUPTED);
    store_run_free(&r);
    CHECK(store_get_run(s, r3, &r, err, sizeof err) == 0 && r.status == STORE_RUN_RUNNING);
    store_run_free(&r);
    CHECK_INTEGRITY(s);
    store_close(s);
}

typedef struct { int n; int64_t steps[8]; double values[8]; char names[8][16]; } Metrics;
static int collect_metric(const StoreMetric *m, void *ctx) {
    Metrics *v = ctx;
    if (v->n < 8) {
        v->steps[v->n] = m->step;
        v->values[v->n] = m->value;
        snprintf(v->names[v->n], 16, "%s", m->name);
    }
    v->n++;
    return 0;
}
typedef struct {
    int n;
    double score_sum;
    int nan_scores;
    int64_t iters[8];
    int64_t prompt_ids[8];
} Rollouts;
static int collect_rollout(const StoreRollout *r, void *ctx) {
    Rollouts *v = ctx;
    if (v->n < 8) { v->iters[v->n] = r->iteration; v->prompt_ids[v->n] = r->prompt_id; }
    if (isnan(r->score)) v->nan_scores++; else v->score_sum += r->score;
    v->n++;
    return 0;
}

static void test_metrics_rollouts(void) {
    Store *s = open_fresh("metrics.db");
    char err[512];
    int64_t run, p;
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "ppo"}, &run, err, sizeof err) == 0);
    CHECK(store_add_metric(s, run, 1, "loss", 2.5, err, sizeof err) == 0);
    CHECK(store_add_metric(s, run, 2, "loss", 2.0, err, sizeof err) == 0);
    CHECK(store_add_metric(s, run, 1, "kl", NAN, err, sizeof err) == 0);
    CHECK(store_add_metric(s, run, 2, "loss", 1.75, err, sizeof err) == 0);   // a resumed run re-logs step 2
    CHECK(store_add_metric(s, 999, 1, "loss", 1, err, sizeof err) == -1 && strstr(err, "run 999 does not exist"));
    CHECK(store_add_metric(s, run, 1, "", 1, err, sizeof err) == -1);
    Metrics m = {0};
    CHECK(store_each_metric(s, run, NULL, collect_metric, &m, err, sizeof err) == 0 && m.n == 3);
    CHECK(!strcmp(m.names[0], "kl") && isnan(m.values[0]));
    CHECK(!strcmp(m.names[1], "loss") && m.steps[1] == 1 && m.values[1] == 2.5 && m.steps[2] == 2 &&
          m.values[2] == 1.75);
    m = (Metrics){0};
    CHECK(store_each_metric(s, run, "loss", collect_metric, &m, err, sizeof err) == 0 && m.n == 2);
    // Many metrics: one reused statement; with and without a surrounding transaction.
    double t0 = (double)clock() / CLOCKS_PER_SEC;
    CHECK(store_begin(s, err, sizeof err) == 0);
    int ok = 1;
    static const char *const names[4] = {"m0", "m1", "m2", "m3"};
    for (int i = 0; i < 20000 && ok; i++)
        ok = store_add_metric(s, run, 100 + i / 4, names[i % 4], i * 0.5, err, sizeof err) == 0;
    CHECK(ok && store_commit(s, err, sizeof err) == 0);
    for (int i = 0; i < 500 && ok; i++)
        ok = store_add_metric(s, run, 100000 + i, "solo", i, err, sizeof err) == 0;
    CHECK(ok);
    double t1 = (double)clock() / CLOCKS_PER_SEC;
    CHECK_MSG(t1 - t0 < 5.0, "20500 metrics took %.2f s of CPU", t1 - t0);
    CHECK(query_int(s, "SELECT count(*) FROM metrics") == 3 + 20000 + 500);

    CHECK(store_add_prompt(s, "Count to 3.", "train", NULL, &p, err, sizeof err) == 0);
    for (int it = 0; it < 3; it++)
        for (int j = 0; j < 4; j++) {
            StoreRollout r = {.run_id = run, .iteration = it, .prompt_id = j % 2 ? p : 0,
                              .prompt = "Count to 3.",
                              .response = j == 3 ? "1 2 3 3 3 3 3" : "1 2 3",
                              .score = j == 2 ? NAN : it + 0.25 * j, .reward = it - 0.1,
                              .kl = 0.01 * j, .response_tokens = 5 + j, .ended = j != 3};
            int64_t id;
            CHECK(store_add_rollout(s, &r, &id, err, sizeof err) == 0 && id > 0);
        }
    StoreRollout orphan = {.run_id = 999, .prompt = "x", .response = "y"};
    CHECK(store_add_rollout(s, &orphan, NULL, err, sizeof err) == -1 &&
          strstr(err, "does not exist"));
    StoreRollout no_text = {.run_id = run};
    CHECK(store_add_rollout(s, &no_text, NULL, err, sizeof err) == -1);
    Rollouts ro = {0};
    CHECK(store_each_rollout(s, run, -1, collect_rollout, &ro, err, sizeof err) == 0 &&
          ro.n == 12 && ro.nan_scores == 3);
    ro = (Rollouts){0};
    CHECK(store_each_rollout(s, run, 1, collect_rollout, &ro, err, sizeof err) == 0 && ro.n == 4 &&
          ro.iters[0] == 1);
    CHECK(ro.prompt_ids[0] == 0 && ro.prompt_ids[1] == p &&
          fabs(ro.score_sum - (1 + 1.25 + 1.75)) < 1e-12);
    // Reward hacking is a query away: long responses that did not end, by iteration.
    CHECK(query_int(s, "SELECT count(*) FROM rollouts WHERE ended = 0 AND response_tokens > 7 "
                       "AND score >= (SELECT avg(score) FROM rollouts)") == 2);
    CHECK_INTEGRITY(s);
    store_close(s);
}

// SQL metacharacters and bytes that are not UTF-8 are stored and read back byte-exact.
static const char *const NASTY[] = {
    "'; DROP TABLE prompts; --", "Robert'); DELETE FROM labelers WHERE ('1'='1", "\"double\" and `back` quotes",
    "?1 ?2 :name @x $y %s %n", "back\\slash\\", "\xff\xfe invalid", "\xc3\x28 bad continuation", "\xc0\xaf overlong",
    "\xed\xa0\x80 surrogate", "tail byte \xe2\x82", "tabs\tand\nnewlines\r\n", "\x01\x02\x7f controls",
    "caf\xc3\xa9 \xf0\x9f\x98\x80", "%", "",
};

typedef struct { const char *want; int seen; } Exact;
static int exact_prompt(const StorePrompt *p, void *ctx) {
    Exact *e = ctx;
    if (!strcmp(p->text, e->want)) e->seen++;
    return 0;
}

static void test_bytes_exact(void) {
    Store *s = open_fresh("bytes.db");
    char err[512];
    size_t n = sizeof NASTY / sizeof *NASTY;
    for (size_t i = 0; i < n; i++) {
        int64_t p, c1, c2, lab, rid, again;
        char label[64];
        snprintf(label, sizeof label, "%s#%zu", NASTY[i], i);
        CHECK_MSG(store_add_prompt(s, NASTY[i], "train", NASTY[i], &p, err, sizeof err) == 0,
                  "%zu: %s", i, err);
        CHECK(store_add_prompt(s, NASTY[i], "train", NULL, &again, err, sizeof err) == 0 &&
              again == p);
        CHECK(store_add_completion(s, p, NASTY[i], NASTY[i], &c1, err, sizeof err) == 0);
        CHECK(store_add_completion(s, p, "plain", NASTY[i], &c2, err, sizeof err) == 0);
        CHECK(store_add_labeler(s, label, &lab, err, sizeof err) == 0);
        StoreRankItem it[2] = {{c1, 1}, {c2, 2}};
        CHECK(store_add_ranking(s, p, lab, it, 2, NASTY[i], &rid, err, sizeof err) == 0);
        StorePrompt got;
        CHECK(store_get_prompt(s, p, &got, err, sizeof err) == 0);
        CHECK_MSG(!strcmp(got.text, NASTY[i]) && !strcmp(got.source, NASTY[i]),
                  "prompt %zu differs", i);
        store_prompt_free(&got);
        int64_t found;
        CHECK(store_find_prompt(s, NASTY[i], &found, err, sizeof err) == 0 && found == p);
        CHECK(store_find_labeler(s, label, &found, err, sizeof err) == 0 && found == lab);
        Exact e = {NASTY[i], 0};
        CHECK(store_each_prompt(s, NULL, exact_prompt, &e, err, sizeof err) == 0 && e.seen == 1);
        // Byte lengths in SQL agree with C's.
        sqlite3_stmt *st;
        sqlite3_prepare_v2(
            store_sqlite(s),
            "SELECT length(CAST(text AS BLOB)), length(CAST(model AS BLOB)) FROM completions WHERE id = ?1",
            -1, &st, NULL);
        sqlite3_bind_int64(st, 1, c1);
        CHECK(sqlite3_step(st) == SQLITE_ROW &&
              sqlite3_column_int64(st, 0) == (int64_t)strlen(NASTY[i]) &&
              sqlite3_column_int64(st, 1) == (int64_t)strlen(NASTY[i]));
        sqlite3_finalize(st);
    }
    Rankings r = {0};
    CHECK(store_each_ranking(s, NULL, collect_ranking, &r, err, sizeof err) == 0);
    CHECK(query_int(s, "SELECT count(*) FROM prompts") == (int64_t)n &&
          query_int(s, "SELECT count(*) FROM labelers") == (int64_t)n);
    CHECK(query_int(s, "SELECT count(*) FROM sqlite_master WHERE name = 'prompts'") == 1);
    CHECK_INTEGRITY(s);
    store_close(s);
}

static void test_claims(void) {
    Store *s = open_fresh("claims.db");
    char err[512];
    int64_t c[8][3], p[8], a, b, got, rid;
    for (int i = 0; i < 6; i++) {
        char t[32];
        snprintf(t, sizeof t, "prompt %d", i);
        p[i] = test_prompt_with(s, t, i == 5 ? "test" : "train", i == 4 ? 1 : 3, c[i]);
    }
    CHECK(store_add_labeler(s, "alice", &a, err, sizeof err) == 0 &&
          store_add_labeler(s, "bob", &b, err, sizeof err) == 0);
    StoreClaimOptions o = {.split = "train", .min_completions = 2};
    CHECK(store_claim_prompt(s, a, &o, &got, err, sizeof err) == 0 && got == p[0]);
    CHECK(store_claim_prompt(s, b, &o, &got, err, sizeof err) == 0 && got == p[1]);   // not alice's
    CHECK(store_claim_prompt(s, a, &o, &got, err, sizeof err) == 0 &&
          got == p[0]); // resume own claim
    StoreRankItem it[2] = {{c[0][0], 1}, {c[0][1], 2}};
    CHECK(store_add_ranking(s, p[0], a, it, 2, NULL, &rid, err, sizeof err) == 0);
    CHECK(query_int(s, "SELECT count(*) FROM claims WHERE labeler_id = 1") == 0);     // the ranking ended the claim
    CHECK(store_claim_prompt(s, a, &o, &got, err, sizeof err) == 0 && got == p[2]);
    // Skip: never again for alice, free for others; release: back to anyone.
    CHECK(store_release_prompt(s, a, p[2], 1, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, a, &o, &got, err, sizeof err) == 0 && got == p[3]);
    CHECK(store_release_prompt(s, a, p[3], 0, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, b, &o, &got, err, sizeof err) == 0 &&
          got == p[1]); // bob still holds p1
    StoreRankItem itb[2] = {{c[1][0], 1}, {c[1][1], 1}};
    CHECK(store_add_ranking(s, p[1], b, itb, 2, NULL, &rid, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, b, &o, &got, err, sizeof err) == 0 &&
          got == p[2]); // skipped by alice, not by bob
    CHECK(store_claim_prompt(s, a, &o, &got, err, sizeof err) == 0 &&
          got == p[3]); // released, so alice again
    // p4 has 1 completion (< min 2), p5 is a test prompt: nothing else for a new labeler.
    int64_t carol;
    CHECK(store_add_labeler(s, "carol", &carol, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, carol, &o, &got, err, sizeof err) == 0 && got == 0);
    // Overlap 2: carol may take prompts ranked (or held) by one other labeler.
    StoreClaimOptions o2 = o;
    o2.overlap = 2;
    CHECK(store_claim_prompt(s, carol, &o2, &got, err, sizeof err) == 0 && got == p[0]);
    CHECK(store_release_prompt(s, carol, p[0], 1, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, carol, &o2, &got, err, sizeof err) == 0 && got == p[1]);
    // Without filters p4 (one completion) and p5 (test) are available.
    CHECK(store_claim_prompt(s, carol, NULL, &got, err, sizeof err) == 0 &&
          got == p[1]); // her own claim first
    CHECK(store_release_prompt(s, carol, p[1], 1, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, carol, NULL, &got, err, sizeof err) == 0 && got == p[4]);
    CHECK(store_claim_prompt(s, carol, &(StoreClaimOptions){.split = "test"}, &got, err,
                             sizeof err) == 0 &&
          got == p[5]);
    // Leases expire: bob's claim on p2 lapses and alice can take it... unless she skipped it.
    int64_t dave;
    CHECK(store_add_labeler(s, "dave", &dave, err, sizeof err) == 0);
    StoreClaimOptions quick = {.lease_s = 0.2};
    int64_t p6 = test_prompt_with(s, "prompt 6", "train", 2, c[6]);
    CHECK(store_claim_prompt(s, dave, &quick, &got, err, sizeof err) == 0 && got == p6);
    CHECK(store_claim_prompt(s, a, &(StoreClaimOptions){.split = "train"}, &got, err, sizeof err) == 0 && got == p[3]);
    CHECK(store_release_prompt(s, a, p[3], 1, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, a, &(StoreClaimOptions){.split = "train"}, &got, err, sizeof err) == 0 && got == 0);
    sleep_s(0.3);
    CHECK(store_claim_prompt(s, a, &(StoreClaimOptions){.split = "train"}, &got, err, sizeof err) == 0 && got == p6);
    // Errors.
    CHECK(store_claim_prompt(s, 999, NULL, &got, err, sizeof err) == -1 && strstr(err, "labeler 999 does not exist"));
    CHECK(store_claim_prompt(s, a, &(StoreClaimOptions){.split = "nope"}, &got, err, sizeof err) == -1);
    CHECK(store_release_prompt(s, a, 999, 0, err, sizeof err) == -1 && strstr(err, "prompt 999"));
    CHECK(!store_in_transaction(s));
    CHECK_INTEGRITY(s);
    store_close(s);
}

// A labeler process: opens its own connection, claims and ranks until nothing is left.
static void labeler_child(const char *path, const char *name, int overlap, int kill_after) {
    Store *s;
    char err[512];
    int64_t lab, p;
    if (store_open(&s, path, err, sizeof err) ||
        store_add_labeler(s, name, &lab, err, sizeof err)) {
        fprintf(stderr, "child %s: %s\n", name, err);
        _exit(3);
    }
    StoreClaimOptions o = {.overlap = overlap};
    int done_n = 0;
    for (;;) {
        if (store_claim_prompt(s, lab, &o, &p, err, sizeof err)) {
            fprintf(stderr, "child %s: %s\n", name, err);
            _exit(4);
        }
        if (!p) break;
        if (kill_after && done_n == kill_after) { raise(SIGKILL); }
        int64_t ids[2] = {0, 0};
        sqlite3_stmt *st;
        sqlite3_prepare_v2(store_sqlite(s),
                           "SELECT id FROM completions WHERE prompt_id = ?1 ORDER BY id", -1, &st,
                           NULL);
        sqlite3_bind_int64(st, 1, p);
        for (int i = 0; i < 2 && sqlite3_step(st) == SQLITE_ROW; i++)
            ids[i] = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        StoreRankItem it[2] = {{ids[0], 1}, {ids[1], 2}};
        int64_t rid;
        if (store_add_ranking(s, p, lab, it, 2, name, &rid, err, sizeof err)) {
            fprintf(stderr, "child %s: %s\n", name, err);
            _exit(5);
        }
        done_n++;
        sleep_s(0.001); // let the others in: on a busy machine one labeler could take every prompt
    }
    store_close(s);
    _exit(0);
}

static void test_concurrent_labelers(void) {
    char path[512], err[512];
    db_path(path, sizeof path, "concurrent.db");
    remove_db(path);
    Store *s;
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    enum { N_PROMPTS = 120, N_LABELERS = 4 };
    CHECK(store_begin(s, err, sizeof err) == 0);
    for (int i = 0; i < N_PROMPTS; i++) {
        char t[32];
        int64_t c[2];
        snprintf(t, sizeof t, "concurrent prompt %d", i);
        test_prompt_with(s, t, "train", 2, c);
    }
    CHECK(store_commit(s, err, sizeof err) == 0);
    store_close(s);   // never carry a connection across fork()
    for (int phase = 0; phase < 2; phase++) {
        int overlap = phase ? 2 : 1;
        pid_t kids[N_LABELERS];
        fflush(stdout);
        fflush(stderr);
        for (int k = 0; k < N_LABELERS; k++) {
            char name[32];
            snprintf(name, sizeof name, "%s%d", phase ? "pair" : "solo", k);
            if ((kids[k] = fork()) == 0) labeler_child(path, name, overlap, 0);
        }
        int all_ok = 1;
        for (int k = 0; k < N_LABELERS; k++) {
            int st;
            waitpid(kids[k], &st, 0);
            all_ok &= WIFEXITED(st) && WEXITSTATUS(st) == 0;
        }
        CHECK(all_ok);
        CHECK(store_open(&s, path, err, sizeof err) == 0);
        const char *like = phase ? "pair%" : "solo%";
        sqlite3_stmt *st;
        sqlite3_prepare_v2(
            store_sqlite(s),
            "SELECT count(*), count(DISTINCT r.prompt_id), count(DISTINCT r.labeler_id) "
            "FROM rankings r JOIN labelers l ON l.id = r.labeler_id WHERE l.name LIKE ?1",
            -1, &st, NULL);
        sqlite3_bind_text(st, 1, like, -1, SQLITE_STATIC);
        CHECK(sqlite3_step(st) == SQLITE_ROW);
        int64_t n = sqlite3_column_int64(st, 0), distinct = sqlite3_column_int64(st, 1),
                labelers = sqlite3_column_int64(st, 2);
        sqlite3_finalize(st);
        if (phase == 0) {
            // Each prompt exactly once, spread over the labelers.
            CHECK_MSG(n == N_PROMPTS && distinct == N_PROMPTS,
                      "phase 0: %lld rankings of %lld prompts", (long long)n, (long long)distinct);
        } else {
            // Overlap 2 on prompts already ranked once (phase 0): exactly one more ranking each.
            CHECK_MSG(n == N_PROMPTS && distinct == N_PROMPTS, "phase 1: %lld rankings of %lld prompts", (long long)n, (long long)distinct);
            CHECK(query_int(s, "SELECT max(c) FROM (SELECT count(DISTINCT labeler_id) AS c FROM rankings GROUP BY prompt_id)") == 2);
        }
        CHECK(labelers >= 2);   // more than one labeler got work
        CHECK(query_int(s, "SELECT count(*) FROM claims") == 0);
        CHECK_INTEGRITY(s);
        store_close(s);
    }
    // A labeler killed in the middle loses nothing it committed; restarted, it resumes its claim.
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_begin(s, err, sizeof err) == 0);
    for (int i = 0; i < 10; i++) {
        char t[32];
        int64_t c[2];
        snprintf(t, sizeof t, "late prompt %d", i);
        test_prompt_with(s, t, "train", 2, c);
    }
    CHECK(store_commit(s, err, sizeof err) == 0);
    store_close(s);
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) labeler_child(path, "killed", 1, 4);
    int st;
    waitpid(kid, &st, 0);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    int64_t lab, held;
    CHECK(store_find_labeler(s, "killed", &lab, err, sizeof err) == 0 && lab > 0);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM rankings WHERE labeler_id = %lld",
             (long long)lab);
    CHECK(query_int(s, sql) == 4);
    snprintf(sql, sizeof sql, "SELECT prompt_id FROM claims WHERE labeler_id = %lld",
             (long long)lab);
    int64_t claim = query_int(s, sql);
    CHECK(claim > 0);
    CHECK(store_claim_prompt(s, lab, NULL, &held, err, sizeof err) == 0 && held == claim);
    CHECK_INTEGRITY(s);
    store_close(s);
}

static void test_wal_reader_writer(void) {
    char path[512], err[512];
    db_path(path, sizeof path, "wal.db");
    remove_db(path);
    Store *w, *r;
    CHECK(store_open(&w, path, err, sizeof err) == 0 && store_open(&r, path, err, sizeof err) == 0);
    int64_t id;
    CHECK(store_add_prompt(w, "first", "train", NULL, &id, err, sizeof err) == 0);
    CHECK(store_begin(w, err, sizeof err) == 0);
    CHECK(store_add_prompt(w, "second", "train", NULL, &id, err, sizeof err) == 0);
    // The reader is not blocked by the open write transaction and sees the last commit.
    double t0 = (double)time(NULL);
    Ids ids = {0};
    CHECK(store_each_prompt(r, NULL, collect_prompt, &ids, err, sizeof err) == 0 && ids.n == 1);
    CHECK(store_find_prompt(r, "second", &id, err, sizeof err) == 0 && id == 0);
    CHECK((double)time(NULL) - t0 < 2);
    // A second writer waits for the lock; with a short timeout it gets a clear error.
    store_set_busy_timeout(r, 50);
    CHECK(store_add_prompt(r, "third", "train", NULL, &id, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "wal.db") && strstr(err, "locked") && one_line(err), "%s", err);
    CHECK(store_begin(r, err, sizeof err) == -1 && !store_in_transaction(r));
    CHECK(store_commit(w, err, sizeof err) == 0);
    CHECK(store_find_prompt(r, "second", &id, err, sizeof err) == 0 && id > 0);
    CHECK(store_add_prompt(r, "third", "train", NULL, &id, err, sizeof err) == 0);
    store_set_busy_timeout(r, STORE_BUSY_TIMEOUT_MS);
    // A walk on one connection while the other writes: the walk keeps its snapshot.
    ids = (Ids){0};
    CHECK(query_int(r, "SELECT count(*) FROM prompts") == 3);
    CHECK_INTEGRITY(w);
    store_close(w);
    store_close(r);
}

// The v1 layout, written here by hand (not by store.c), as a v1 program left it.
static const char *V1_SQL =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY) STRICT;"
    "CREATE TABLE prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE, split TEXT NOT NULL "
    "  CHECK (split IN ('train', 'valid', 'test')), source TEXT NOT NULL DEFAULT '', created REAL NOT NULL) STRICT;"
    "CREATE INDEX prompts_split ON prompts(split, id);"
    "CREATE TABLE demonstrations (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  response TEXT NOT NULL, source TEXT NOT NULL DEFAULT '', created REAL NOT NULL, UNIQUE (prompt_id, response)) STRICT;"
    "CREATE TABLE completions (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  text TEXT NOT NULL, model TEXT NOT NULL DEFAULT '', created REAL NOT NULL, UNIQUE (prompt_id, text, model)) STRICT;"
    "CREATE TABLE labelers (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE CHECK (length(CAST(name AS BLOB)) > 0),"
    "  created REAL NOT NULL) STRICT;"
    "CREATE TABLE rankings (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL REFERENCES prompts(id),"
    "  labeler_id INTEGER NOT NULL REFERENCES labelers(id), created REAL NOT NULL, comment TEXT NOT NULL DEFAULT '') STRICT;"
    "CREATE INDEX rankings_prompt ON rankings(prompt_id, labeler_id);"
    "CREATE INDEX rankings_labeler ON rankings(labeler_id);"
    "CREATE TABLE ranking_items (ranking_id INTEGER NOT NULL REFERENCES rankings(id) ON DELETE CASCADE,"
    "  completion_id INTEGER NOT NULL REFERENCES completions(id), rank INTEGER NOT NULL CHECK (rank >= 1),"
    "  PRIMARY KEY (ranking_id, completion_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX ranking_items_completion ON ranking_items(completion_id);"
    "CREATE TABLE reward_scores (model TEXT NOT NULL, completion_id INTEGER NOT NULL REFERENCES completions(id),"
    "  score REAL NOT NULL, created REAL NOT NULL, PRIMARY KEY (model, completion_id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX reward_scores_completion ON reward_scores(completion_id);"
    "CREATE TABLE runs (id INTEGER PRIMARY KEY, stage TEXT NOT NULL, name TEXT NOT NULL DEFAULT '',"
    "  program TEXT NOT NULL DEFAULT '', config TEXT NOT NULL DEFAULT '', config_hash TEXT NOT NULL DEFAULT '',"
    "  status TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'interrupted')),"
    "  checkpoint TEXT NOT NULL DEFAULT '', started REAL NOT NULL, finished REAL, exit_code INTEGER) STRICT;"
    "CREATE INDEX runs_stage ON runs(stage, config_hash, id);"
    "CREATE TABLE metrics (run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE, name TEXT NOT NULL,"
    "  step INTEGER NOT NULL, value REAL, time REAL NOT NULL, PRIMARY KEY (run_id, name, step)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE imports (id INTEGER PRIMARY KEY, path TEXT NOT NULL, hash TEXT NOT NULL UNIQUE,"
    "  kind TEXT NOT NULL DEFAULT '', rows INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL) STRICT;"
    "INSERT INTO meta VALUES ('application', 'rlhf.c workspace'), ('schema_version', 1), ('created', 1700000000.0);"
    "INSERT INTO prompts VALUES (1, 'old prompt', 'valid', 'v1.jsonl', 1700000000.0);"
    "INSERT INTO completions VALUES (1, 1, 'old a', 'm', 1700000000.0), (2, 1, 'old b', 'm', 1700000000.0);"
    "INSERT INTO labelers VALUES (1, 'veteran', 1700000000.0);"
    "INSERT INTO rankings VALUES (1, 1, 1, 1700000000.0, 'from v1');"
    "INSERT INTO ranking_items VALUES (1, 2, 1), (1, 1, 2);"
    "INSERT INTO runs VALUES (1, 'sft', 'old run', 'sft', 'a: 1', 'abcd', 'done', 'ckpt', 1700000000.0, 1700000100.0, 0);"
    "INSERT INTO metrics VALUES (1, 'loss', 10, 0.5, 1700000050.0);";

static int raw_exec(const char *path, const char *sql) {
    sqlite3 *db;
    int rc = sqlite3_open(path, &db);
    if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK) fprintf(stderr, "raw_exec: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc;
}

static void test_migration(void) {
    char path[512], err[512];
    db_path(path, sizeof path, "v1.db");
    remove_db(path);
    CHECK(raw_exec(path, V1_SQL) == SQLITE_OK);
    Store *s;
    CHECK_MSG(store_open(&s, path, err, sizeof err) == 0, "%s", err);
    int64_t v;
    CHECK(store_schema_version(s, &v, err, sizeof err) == 0 && v == STORE_SCHEMA_VERSION);
    // The v1 data is intact and readable through the v2 API.
    Rankings got = {0};
    CHECK(store_each_ranking(s, "valid", collect_ranking, &got, err, sizeof err) == 0 &&
          got.n == 1);
    CHECK_MSG(!strcmp(got.desc[0], "old prompt|valid|veteran|from v1|k2: old b=1 old a=2"), "%s",
              got.desc[0]);
    StoreRun r;
    CHECK(store_get_run(s, 1, &r, err, sizeof err) == 0 && r.status == STORE_RUN_DONE &&
          r.pid == 0 && !strcmp(r.host, "") && r.parent_id == 0 && !strcmp(r.config_hash, "abcd") &&
          r.has_exit_code && r.exit_code == 0);
    store_run_free(&r);
    // What v2 added works on the migrated file.
    int64_t lab, p, run, rid;
    CHECK(store_find_labeler(s, "veteran", &lab, err, sizeof err) == 0 && lab == 1);
    CHECK(store_add_prompt(s, "new prompt", "train", NULL, &p, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, lab, NULL, &rid, err, sizeof err) == 0 && rid == p);
    CHECK(store_add_run(s, &(StoreRunInfo){.stage = "ppo", .parent_id = 1}, &run, err,
                        sizeof err) == 0);
    CHECK(store_add_rollout(
              s, &(StoreRollout){.run_id = run, .prompt = "x", .response = "y", .score = 1}, NULL,
              err, sizeof err) == 0);
    CHECK_INTEGRITY(s);
    store_close(s);
    // A migration that fails leaves the v1 file as it was: simulate with a v1 file where the
    // step cannot apply (a table 'claims' already there).
    remove_db(path);
    CHECK(raw_exec(path, V1_SQL) == SQLITE_OK);
    CHECK(raw_exec(path, "CREATE TABLE claims (x INTEGER)") == SQLITE_OK);
    CHECK(store_open(&s, path, err, sizeof err) == -1 && s == NULL);
    CHECK_MSG(strstr(err, "migrating the schema from version 1 to 2") && strstr(err, "v1.db"), "%s", err);
    CHECK(store_open(&s, path, err, sizeof err) == -1);   // still refused the same way, nothing half-done
    sqlite3 *db;
    sqlite3_open(path, &db);
    sqlite3_stmt *st;
    sqlite3_prepare_v2(db,
                       "SELECT (SELECT value FROM meta WHERE key = 'schema_version'), "
                       "(SELECT count(*) FROM pragma_table_info('runs') WHERE name = 'pid')",
                       -1, &st, NULL);
    CHECK(sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 1 &&
          sqlite3_column_int(st, 1) == 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    // An empty file is a version-0 database: it becomes a fresh workspace.
    remove_db(path);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    close(fd);
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    CHECK(store_schema_version(s, &v, err, sizeof err) == 0 && v == STORE_SCHEMA_VERSION);
    store_close(s);
}

static void test_refused_files(void) {
    char path[512], err[512];
    Store *s = (Store *)1;
    // store_check reports a row that breaks a foreign key (written behind the store's back).
    s = open_fresh("broken.db");
    CHECK(store_check(s, err, sizeof err) == 0);
    CHECK(raw_exec(store_path(s), "INSERT INTO completions(prompt_id, text, model, created) VALUES (999, 'x', '', 0)") == SQLITE_OK);
    CHECK(store_check(s, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "broken.db: foreign key check: table completions row 1 refers to a missing prompts row"), "%s", err);
    store_close(s);
    // A newer schema: refused, and the file is left as it was.
    s = open_fresh("newer.db");
    char newer[512];
    snprintf(newer, sizeof newer, "%s", store_path(s));
    store_close(s);
    CHECK(raw_exec(newer, "UPDATE meta SET value = 99 WHERE key = 'schema_version'") == SQLITE_OK);
    CHECK(store_open(&s, newer, err, sizeof err) == -1 && s == NULL);
    CHECK_MSG(
        strstr(err, "newer.db: workspace schema version 99 is newer than this program's (6)") &&
            one_line(err),
        "%s", err);
    // Not a database at all.
    db_path(path, sizeof path, "text.db");
    FILE *f = fopen(path, "w");
    fputs("this is not a database, just some text that is long enough to look like a header...\n",
          f);
    fclose(f);
    CHECK(store_open(&s, path, err, sizeof err) == -1);
    CHECK_MSG(strstr(err, "text.db: not a SQLite database") && one_line(err), "%s", err);
    f = fopen(path, "r");
    char back[32] = "";
    CHECK(f && fgets(back, sizeof back, f) && !strncmp(back, "this is not", 11));   // untouched
    if (f) fclose(f);
    unlink(path);
    // A SQLite database of another program, and one whose meta names another application.
    db_path(path, sizeof path, "other.db");
    remove_db(path);
    CHECK(raw_exec(path, "CREATE TABLE notes (x TEXT)") == SQLITE_OK);
    CHECK(store_open(&s, path, err, sizeof err) == -1 &&
          strstr(err, "other.db: not an rlhf.c workspace database"));
    remove_db(path);
    CHECK(raw_exec(path, "CREATE TABLE meta (key TEXT PRIMARY KEY, value ANY); INSERT INTO meta VALUES ('application', 'x')") == SQLITE_OK);
    CHECK(store_open(&s, path, err, sizeof err) == -1 && strstr(err, "meta application is 'x'"));
    remove_db(path);
    // A path in a missing directory, and a directory.
    CHECK(store_open(&s, "/nonexistent/dir/ws.db", err, sizeof err) == -1);
    CHECK_MSG(!strcmp(err, "/nonexistent/dir/ws.db: cannot create the database: directory /nonexistent/dir does not exist"),
              "%s", err);
    CHECK(store_open(&s, root, err, sizeof err) == -1 && strstr(err, root) && strstr(err, "is a directory") && one_line(err));
}

// Read-only workspaces: a write-protected file, and a file in a write-protected directory. As
// root permissions do not bind, so the check runs in a child that drops to 'nobody'.
static void test_read_only(void) {
    char dir[512], path[600], err[512];
    db_path(dir, sizeof dir, "ro");
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/ws.db", dir);
    Store *s;
    CHECK(store_open(&s, path, err, sizeof err) == 0);
    int64_t id;
    CHECK(store_add_prompt(s, "kept", "train", NULL, &id, err, sizeof err) == 0);
    store_close(s);   // closing the last connection checkpoints and removes -wal / -shm
    chmod(root, 0755);
    chmod(path, 0444);
    int fds[2];
    CHECK(pipe(fds) == 0);
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) {
        close(fds[0]);
        if (geteuid() == 0 && (setgid(65534) || setuid(65534))) _exit(9);
        char msg[2][512] = {"", ""};
        Store *t;
        int rc0 = store_open(&t, path, msg[0], sizeof msg[0]);           // file read-only
        char fresh_path[600];
        snprintf(fresh_path, sizeof fresh_path, "%s/new.db", dir);        // directory not ours
        int rc1 = store_open(&t, fresh_path, msg[1], sizeof msg[1]);
        dprintf(fds[1], "%d\n%s\n%d\n%s\n", rc0, msg[0], rc1, msg[1]);
        _exit(0);
    }
    close(fds[1]);
    char buf[2048] = "";
    ssize_t n = read(fds[0], buf, sizeof buf - 1), k;
    while (n > 0 && (k = read(fds[0], buf + n, sizeof buf - 1 - (size_t)n)) > 0) n += k;
    close(fds[0]);
    int st;
    waitpid(kid, &st, 0);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    if (n > 0) buf[n] = 0;
    char *line[4] = {0};
    char *save = NULL, *tok = strtok_r(buf, "\n", &save);
    for (int i = 0; i < 4 && tok; i++, tok = strtok_r(NULL, "\n", &save)) line[i] = tok;
    CHECK(line[3] != NULL);
    if (line[3]) {
        CHECK_MSG(!strcmp(line[0], "-1") && strstr(line[1], "ws.db") &&
                      strstr(line[1], "read-only"),
                  "%s", line[1]);
        CHECK_MSG(!strcmp(line[2], "-1") && strstr(line[3], "new.db") &&
                      strstr(line[3], "cannot open"),
                  "%s", line[3]);
    }
    chmod(path, 0644);
    chmod(root, 0700);
    // The data is still there.
    CHECK(store_open(&s, path, err, sizeof err) == 0 &&
          store_find_prompt(s, "kept", &id, err, sizeof err) == 0 && id > 0);
    store_close(s);
}

// Every prompt labeler `who` may claim under o, in order (each skipped once claimed).
static int claimable(Store *s, const char *who, const StoreClaimOptions *o, int64_t *ids, int max) {
    char err[512];
    int64_t lab, p;
    int n = 0;
    if (store_add_labeler(s, who, &lab, err, sizeof err)) return -1;
    while (n < max && store_claim_prompt(s, lab, o, &p, err, sizeof err) == 0 && p) {
        ids[n++] = p;
        if (store_release_prompt(s, lab, p, 1, err, sizeof err)) return -1;
    }
    return n;
}

static void test_prompt_choice(void) {
    Store *s = open_fresh("choice.db");
    char err[512];
    int64_t q1, d1, d2, again, n, got[8];
    CHECK(store_add_prompt_from(s, "Q1", "train", "a", 1, &q1, err, sizeof err) == 0);
    CHECK(store_add_prompt_from(s, "D1", "train", "demo", 0, &d1, err, sizeof err) == 0);
    CHECK(store_add_prompt_from(s, "D2", "valid", "demo", 0, &d2, err, sizeof err) == 0);
    CHECK(store_add_prompt_from(s, "Q1", "train", "demo", 0, &again, err, sizeof err) == 0 &&
          again == q1);
    CHECK(store_add_prompt_from(s, "D2", "train", "b", 1, &again, err, sizeof err) == 0 &&
          again == d2);
    CHECK(query_int(s, "SELECT count(*) FROM prompt_sources") == 5);
    CHECK(query_int(s, "SELECT to_label FROM prompt_sources WHERE prompt_id = 1 "
                       "AND source = 'demo'") == 0);
    // queued: by one of its sources (Q1 by a, D2 by b); D1 only by name
    CHECK(claimable(s, "l1", NULL, got, 8) == 2 && got[0] == q1 && got[1] == d2);
    CHECK(claimable(s, "l2", &(StoreClaimOptions){.source = "demo"}, got, 8) == 3 && got[1] == d1);
    StoreClaimOptions demo_valid = {.source = "demo", .split = "valid"};
    CHECK(claimable(s, "l3", &demo_valid, got, 8) == 1 && got[0] == d2);
    char ids[64];
    snprintf(ids, sizeof ids, "[%lld]", (long long)d1);
    CHECK(claimable(s, "l4", &(StoreClaimOptions){.only_ids = ids}, got, 8) == 1 && got[0] == d1);
    CHECK(claimable(s, "l5", &(StoreClaimOptions){.only_ids = ids, .source = "a"}, got, 8) == 0);
    CHECK(claimable(s, "l6", &(StoreClaimOptions){.unqueued = 1}, got, 8) == 3);
    CHECK(store_count_source(s, "demo", &n, err, sizeof err) == 0 && n == 3);
    CHECK(store_count_source(s, "a", &n, err, sizeof err) == 0 && n == 1);
    CHECK(store_count_source(s, "nope", &n, err, sizeof err) == 0 && n == 0);
    // rankings keyed to a policy's contents: ranked for H1 is done for H1 only
    int64_t lab, c[2], rid, p;
    int found;
    CHECK(store_add_labeler(s, "judge", &lab, err, sizeof err) == 0);
    CHECK(store_add_completion(s, q1, "x", "pol", &c[0], err, sizeof err) == 0);
    CHECK(store_add_completion(s, q1, "y", "pol", &c[1], err, sizeof err) == 0);
    CHECK(store_add_completion_policy(s, c[0], "H1", err, sizeof err) == 0);
    CHECK(store_add_completion_policy(s, c[0], "H1", err, sizeof err) == 0);   // idempotent
    CHECK(store_add_completion_policy(s, c[1], "H1", err, sizeof err) == 0);
    CHECK(store_completion_has_policy(s, c[0], "H1", &found, err, sizeof err) == 0 && found == 1);
    CHECK(store_completion_has_policy(s, c[0], "H2", &found, err, sizeof err) == 0 && found == 0);
    CHECK(store_add_completion_policy(s, 999, "H1", err, sizeof err) == -1 &&
          strstr(err, "completion 999 does not exist"));
    CHECK(store_add_completion_policy(s, c[0], "", err, sizeof err) == -1 &&
          strstr(err, "empty policy hash"));
    StoreRankItem it[2] = {{c[0], 1}, {c[1], 2}};
    CHECK(store_add_policy_ranking(s, q1, lab, it, 2, NULL, "H1", &rid, err, sizeof err) == 0 &&
          rid > 0);
    CHECK(query_int(s, "SELECT count(*) FROM rankings WHERE policy_hash = 'H1'") == 1);
    StoreClaimOptions h1 = {.policy_hash = "H1", .source = "a"},
                      h2 = {.policy_hash = "H2", .source = "a"};
    CHECK(store_claim_prompt(s, lab, &h1, &p, err, sizeof err) == 0 && p == 0);
    StoreClaimOptions any = {.source = "a"};
    CHECK(store_claim_prompt(s, lab, &any, &p, err, sizeof err) == 0 && p == 0);
    CHECK(store_claim_prompt(s, lab, &h2, &p, err, sizeof err) == 0 && p == q1);
    // another labeler: H1's ranking fills the overlap of 1 for H1, not for H2
    int64_t other;
    CHECK(store_add_labeler(s, "other", &other, err, sizeof err) == 0);
    CHECK(store_release_prompt(s, lab, q1, 0, err, sizeof err) == 0);
    CHECK(store_claim_prompt(s, other, &h1, &p, err, sizeof err) == 0 && p == 0);
    CHECK(store_claim_prompt(s, other, &h2, &p, err, sizeof err) == 0 && p == q1);
    CHECK_INTEGRITY(s);
    store_close(s);
}

// A workspace made before schema 3 (the v1 file above, migrated through every step): its prompts
// are queued from their source, its rankings belong to unknown policy contents ('').
static void test_migration_v3(void) {
    char path[512], err[512];
    db_path(path, sizeof path, "v1to3.db");
    remove_db(path);
    CHECK(raw_exec(path, V1_SQL) == SQLITE_OK);
    Store *s;
    CHECK_MSG(store_open(&s, path, err, sizeof err) == 0, "%s", err);
    CHECK(query_int(s, "SELECT count(*) FROM prompt_sources WHERE prompt_id = 1 "
                       "AND source = 'v1.jsonl' AND to_label = 1") == 1);
    CHECK(query_int(s, "SELECT count(*) FROM rankings WHERE policy_hash = ''") == 1);
    CHECK(query_int(s, "SELECT count(*) FROM completion_policies") == 0);
    int64_t lab, p, n;
    CHECK(store_count_source(s, "v1.jsonl", &n, err, sizeof err) == 0 && n == 1);
    CHECK(store_find_labeler(s, "veteran", &lab, err, sizeof err) == 0 && lab == 1);
    CHECK(store_claim_prompt(s, lab, &(StoreClaimOptions){.min_completions = 2}, &p, err,
                             sizeof err) == 0 &&
          p == 0);
    CHECK(store_claim_prompt(s, lab, &(StoreClaimOptions){.policy_hash = "H"}, &p, err,
                             sizeof err) == 0 &&
          p == 1);
    CHECK_INTEGRITY(s);
    store_close(s);
}

static int note_demo_rendered(const StoreDemonstration *d, void *ctx) {
    int *out = ctx;
    out[d->prompt_id == 1 ? 0 : 1] = d->prompt_rendered;
    return 0;
}

static int note_ranking_rendered(const StoreRanking *r, void *ctx) {
    *(int *)ctx = r->prompt_rendered;
    return 0;
}

static int note_prompt_rendered(const StorePrompt *p, void *ctx) {
    int *out = ctx;
    out[p->id == 1 ? 0 : 1] = p->rendered;
    return 0;
}

// Schema 4: a prompt says whether its text was rendered with a chat template. Prompts of an older
// workspace (the v1 file, migrated through every step) are plain text; marking one is seen by
// every walk that reads prompts.
static void test_prompt_rendered(void) {
    char path[512], err[512];
    db_path(path, sizeof path, "v1to4.db");
    remove_db(path);
    CHECK(raw_exec(path, V1_SQL) == SQLITE_OK);
    Store *s;
    CHECK_MSG(store_open(&s, path, err, sizeof err) == 0, "%s", err);
    StorePrompt p;
    CHECK(store_get_prompt(s, 1, &p, err, sizeof err) == 0 && p.rendered == 0 &&
          !strcmp(p.text, "old prompt"));
    store_prompt_free(&p);
    int64_t id, d1, d2, lab;
    const char *chat = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    CHECK(store_add_prompt(s, chat, "valid", "chat.jsonl", &id, err, sizeof err) == 0 && id == 2);
    CHECK(store_get_prompt(s, id, &p, err, sizeof err) == 0 && p.rendered == 0);
    store_prompt_free(&p);
    CHECK_MSG(store_set_prompt_rendered(s, id, err, sizeof err) == 0, "%s", err);
    CHECK(store_get_prompt(s, id, &p, err, sizeof err) == 0 && p.rendered == 1);
    store_prompt_free(&p);
    CHECK(store_set_prompt_rendered(s, 99, err, sizeof err) == -1 &&
          strstr(err, "prompt 99 does not exist"));
    int pr[2] = {-1, -1}, dr[2] = {-1, -1}, rr = -1;
    CHECK(store_each_prompt(s, NULL, note_prompt_rendered, pr, err, sizeof err) == 0 &&
          pr[0] == 0 && pr[1] == 1);
    CHECK(store_add_demonstration(s, 1, "r", "d", &d1, err, sizeof err) == 0 &&
          store_add_demonstration(s, id, "r", "d", &d2, err, sizeof err) == 0);
    CHECK(store_each_demonstration(s, NULL, note_demo_rendered, dr, err, sizeof err) == 0 &&
          dr[0] == 0 && dr[1] == 1);
    CHECK(store_each_ranking(s, "valid", note_ranking_rendered, &rr, err, sizeof err) == 0 &&
          rr == 0);
    CHECK(store_find_labeler(s, "veteran", &lab, err, sizeof err) == 0);
    CHECK(query_int(s, "SELECT count(*) FROM prompts WHERE rendered = 1") == 1);
    CHECK_INTEGRITY(s);
    store_close(s);
}

int main(void) {
    snprintf(root, sizeof root, "/tmp/rlhf_test_store.XXXXXX");
    if (!mkdtemp(root)) { perror("mkdtemp"); return 1; }
    test_case("store: open a fresh workspace (WAL, foreign keys, every table)", test_open);
    test_case("store: prompts are idempotent; splits; walks", test_prompts);
    test_case("store: demonstrations, completions, labelers",
              test_demonstrations_completions_labelers);
    test_case("store: rankings with ties; every validation; undo", test_rankings);
    test_case("store: transactions and rollback leave nothing", test_transactions);
    test_case("store: importing a file twice adds nothing; a bad line adds nothing", test_imports);
    test_case("store: reward scores (written during a walk)", test_reward_scores);
    test_case("store: runs, status, last run by config hash, reaping", test_runs);
    test_case("store: metrics and rollouts", test_metrics_rollouts);
    test_case("store: SQL metacharacters and invalid UTF-8 byte-exact", test_bytes_exact);
    test_case("store: label claims (leases, skips, overlap, resume)", test_claims);
    test_case("store: concurrent labelers never collide; a killed one loses nothing",
              test_concurrent_labelers);
    test_case("store: a writer and a reader at once under WAL", test_wal_reader_writer);
    test_case("store: a v1 database is migrated; a failed migration changes nothing",
              test_migration);
    test_case("store: newer schemas, non-databases and foreign databases are refused",
              test_refused_files);
    test_case("store: read-only workspaces are clear errors", test_read_only);
    test_case("store: which prompts a claim gives (sources, queued, ids); policy-keyed rankings",
              test_prompt_choice);
    test_case("store: a workspace from before schema 3 is queued as it was; its rankings keyed ''",
              test_migration_v3);
    test_case("store: prompts rendered with a chat template (schema 5; older prompts plain)",
              test_prompt_rendered);
    test_rm_rf(root);
    return test_summary();
}
