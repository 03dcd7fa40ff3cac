// store_impl: what the files of the store module share (store.c: the schema, prompts to rollouts;
// store_users.c: the logins and sessions of `rlhf serve` and its labeling calls): the Store
// itself and the small helpers every query goes through. Private to common/store*.c.
#ifndef STORE_IMPL_H
#define STORE_IMPL_H
#include "store.h"
#include "store_sql.h"
#include "util.h"
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct Store {
    sqlite3 *db;
    char *path;                   // as given to store_open
    sqlite3_stmt *q[Q_COUNT];     // reused statements; NULL until first use
    int user_tx;                  // inside store_begin .. store_commit/rollback
    int busy_ms;
    int64_t claim_hint; // the prompt this connection claimed last (claims scan on from it)
};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// "PATH: what: sqlite's message"
static inline int fail(Store *s, char *err, size_t errlen, const char *what) {
    return util_err(err, errlen, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
}

// The reused statement `id`, prepared on first use; NULL with a message on failure.
static inline sqlite3_stmt *q(Store *s, int id, char *err, size_t errlen) {
    if (!s->q[id] && sqlite3_prepare_v3(s->db, STORE_QUERY_SQL[id], -1, SQLITE_PREPARE_PERSISTENT,
                                        &s->q[id], NULL) != SQLITE_OK) {
        fail(s, err, errlen, "preparing a statement");
        s->q[id] = NULL;
    }
    return s->q[id];
}

// Resets a reused statement so that it holds no lock and no bound pointer.
static inline void done(sqlite3_stmt *st) {
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

// Binds text (NULL: '') without copying: the statement is stepped before the caller returns.
static inline void bind_text(sqlite3_stmt *st, int i, const char *t) {
    sqlite3_bind_text(st, i, t ? t : "", -1, SQLITE_STATIC);
}
static inline void bind_text_or_null(sqlite3_stmt *st, int i, const char *t) {
    if (t) sqlite3_bind_text(st, i, t, -1, SQLITE_STATIC);
    else sqlite3_bind_null(st, i);
}
static inline void bind_id_or_null(sqlite3_stmt *st, int i, int64_t id) {
    if (id > 0) sqlite3_bind_int64(st, i, id);
    else sqlite3_bind_null(st, i);
}
static inline void bind_real_or_null(sqlite3_stmt *st, int i, double v) {
    if (isnan(v)) sqlite3_bind_null(st, i);
    else sqlite3_bind_double(st, i, v);
}

// Column text, '' for NULL; valid until the statement is stepped or reset.
static inline const char *col_text(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return t ? (const char *)t : "";
}
static inline char *col_dup(sqlite3_stmt *st, int i) {
    const unsigned char *t = sqlite3_column_text(st, i);
    return STRNDUP_CHECK(t ? (const char *)t : "", t ? (size_t)sqlite3_column_bytes(st, i) : 0);
}
static inline double col_real_or_nan(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? NAN : sqlite3_column_double(st, i);
}

// Steps a write statement to completion; resets it either way.
static inline int step_write(Store *s, sqlite3_stmt *st, const char *what, char *err,
                             size_t errlen) {
    int rc = sqlite3_step(st);
    int ret = rc == SQLITE_DONE ? 0 : fail(s, err, errlen, what);
    done(st);
    return ret;
}

// Steps a statement that returns at most one integer: *out = its first column, or 0 when there is
// no row. Resets it either way.
static inline int step_id(Store *s, sqlite3_stmt *st, int64_t *out, const char *what, char *err,
                          size_t errlen) {
    int rc = sqlite3_step(st);
    int ret = 0;
    *out = 0;
    if (rc == SQLITE_ROW) *out = sqlite3_column_int64(st, 0);
    else if (rc != SQLITE_DONE) ret = fail(s, err, errlen, what);
    done(st);
    return ret;
}

static inline int need_text(Store *s, const char *t, const char *what, char *err, size_t errlen) {
    if (!t) return util_err(err, errlen, "%s: %s: NULL text", s->path, what);
    return 0;
}

// *id of the row that query `query` finds for text (0 when none): 0, or -1 with a message.
static inline int find_id_by_text(Store *s, int query, const char *text, int64_t *id,
                                  const char *what, char *err, size_t errlen) {
    *id = 0;
    if (need_text(s, text, what, err, errlen)) return -1;
    sqlite3_stmt *st = q(s, query, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, text);
    return step_id(s, st, id, what, err, errlen);
}

static inline int exec(Store *s, const char *sql, const char *what, char *err, size_t errlen) {
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        util_err(err, errlen, "%s: %s: %s", s->path, what, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

// A write of several statements as one unit: its own BEGIN IMMEDIATE transaction, or a savepoint
// when a transaction is already open (the caller's store_begin, or an enclosing walk's writes).
static inline int op_begin(Store *s, char *err, size_t errlen) {
    if (sqlite3_get_autocommit(s->db)) return exec(s, "BEGIN IMMEDIATE", "begin", err, errlen);
    return exec(s, "SAVEPOINT store_op", "savepoint", err, errlen);
}
// ok: commit (or release); else undo. Returns ok ? 0 : -1 (the commit's own failure included).
static inline int op_end(Store *s, int began_tx, int ok, char *err, size_t errlen) {
    if (began_tx) {
        if (ok) {
            if (exec(s, "COMMIT", "commit", err, errlen) == 0) return 0;
        }
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (ok) return exec(s, "RELEASE store_op", "release savepoint", err, errlen);
    sqlite3_exec(s->db, "ROLLBACK TO store_op; RELEASE store_op", NULL, NULL, NULL);
    return -1;
}

// Prepares a walk's statement (not cached: see above).
static inline sqlite3_stmt *prepare(Store *s, const char *sql, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        fail(s, err, errlen, "preparing a query");
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

// The end of a walk: its statement finalized; the callback's stop value, or 0 / an error.
static inline int walk_end(Store *s, sqlite3_stmt *st, int rc, int stopped, const char *what,
                           char *err, size_t errlen) {
    int ret = stopped ? rc : (rc == SQLITE_DONE ? 0 : fail(s, err, errlen, what));
    sqlite3_finalize(st);
    return ret;
}
#endif
