// store_users: the part of the store `rlhf serve` adds (see store.h): rankings for one's own
// claims with their flags, undo, labeling progress; users and sessions. Helpers in store_impl.h.
#include "store_impl.h"
#include <stdlib.h>

// ---------------------------------------------------------------------------------------------
// Labeling through `rlhf serve`
// ---------------------------------------------------------------------------------------------

int store_has_claim(Store *s, int64_t labeler_id, int64_t prompt_id, int *active, char *err,
                    size_t errlen) {
    *active = 0;
    sqlite3_stmt *st = q(s, Q_CLAIM_ACTIVE, err, errlen);
    if (!st) return -1;
    int64_t found;
    sqlite3_bind_int64(st, 1, prompt_id); sqlite3_bind_int64(st, 2, labeler_id);
    sqlite3_bind_double(st, 3, now_s());
    if (step_id(s, st, &found, "check claim", err, errlen)) return -1;
    *active = found != 0;
    return 0;
}

static int add_ranking_flags(Store *s, int64_t rid, const StoreRankItem *items, int k,
                             const StoreRankFlag *flags, int n, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_RANKING_FLAG_ADD, err, errlen);
    if (!st) return -1;
    for (int i = 0; i < n; i++) {
        int in = 0;
        for (int j = 0; j < k; j++) in |= items[j].completion_id == flags[i].completion_id;
        if (!in)
            return util_err(err, errlen, "%s: add ranking: flagged completion %lld is not ranked",
                            s->path, (long long)flags[i].completion_id);
        sqlite3_bind_int64(st, 1, rid); sqlite3_bind_int64(st, 2, flags[i].completion_id);
        bind_text(st, 3, flags[i].flag);
        if (step_write(s, st, "add ranking flag", err, errlen)) return -1;
    }
    return 0;
}

int store_add_claimed_ranking(Store *s, int64_t prompt_id, int64_t labeler_id,
                              const StoreRankItem *items, int k, const char *comment,
                              const StoreRankFlag *flags, int n, int64_t *id, char *err,
                              size_t errlen) {
    if (id) *id = 0;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    int ok = 0, active = 0, rc = -1;
    int64_t rid = 0;
    if (store_has_claim(s, labeler_id, prompt_id, &active, err, errlen)) goto end;
    if (!active) {
        util_err(err, errlen, "%s: add ranking: labeler %lld holds no claim on prompt %lld",
                 s->path, (long long)labeler_id, (long long)prompt_id);
        rc = -2;
        goto end;
    }
    if (store_add_ranking(s, prompt_id, labeler_id, items, k, comment, &rid, err, errlen))
        goto end;
    if (add_ranking_flags(s, rid, items, k, flags, n, err, errlen)) goto end;
    ok = 1;
end:
    if (op_end(s, began_tx, ok, err, errlen)) return ok ? -1 : rc;
    if (id) *id = rid;
    return 0;
}

int store_undo_ranking(Store *s, int64_t labeler_id, int64_t ranking_id, double since,
                       double lease_s, int64_t *ranking_id_out, int64_t *prompt_id, char *err,
                       size_t errlen) {
    if (ranking_id_out) *ranking_id_out = 0;
    if (prompt_id) *prompt_id = 0;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    int ok = 0, rc = -1;
    int64_t rid = ranking_id, owner = 0, pid = 0;
    sqlite3_stmt *last = q(s, Q_RANKING_LAST, err, errlen),
                 *who = q(s, Q_RANKING_OWNER, err, errlen);
    if (!last || !who) goto end;
    if (rid == 0) {
        sqlite3_bind_int64(last, 1, labeler_id);
        sqlite3_bind_double(last, 2, since);
        if (step_id(s, last, &rid, "undo ranking", err, errlen)) goto end;
        if (rid == 0) { ok = 1; goto end; }
    }
    sqlite3_bind_int64(who, 1, rid);
    int step = sqlite3_step(who);
    if (step == SQLITE_ROW) {
        owner = sqlite3_column_int64(who, 0);
        pid = sqlite3_column_int64(who, 1);
    }
    done(who);
    if (step != SQLITE_ROW && step != SQLITE_DONE) {
        fail(s, err, errlen, "undo ranking");
        goto end;
    }
    if (owner != labeler_id) {
        util_err(err, errlen, "%s: undo ranking: ranking %lld is not labeler %lld's", s->path,
                 (long long)rid, (long long)labeler_id);
        rc = -2;
        goto end;
    }
    if (store_delete_ranking(s, rid, err, errlen) ||
        store_claim_prompt_id(s, labeler_id, pid, lease_s, err, errlen))
        goto end;
    ok = 1;
end:
    if (op_end(s, began_tx, ok, err, errlen)) return ok ? -1 : rc;
    if (ranking_id_out) *ranking_id_out = pid ? rid : 0;
    if (prompt_id) *prompt_id = pid;
    return 0;
}

int store_label_progress(Store *s, int64_t labeler_id, int overlap, StoreLabelProgress *p,
                         char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    sqlite3_stmt *st = q(s, Q_LABEL_PROGRESS, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, labeler_id);
    sqlite3_bind_int(st, 2, overlap < 1 ? 1 : overlap);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        p->mine = sqlite3_column_int64(st, 0);
        p->done = sqlite3_column_int64(st, 1);
        p->queued = sqlite3_column_int64(st, 2);
    }
    done(st);
    return rc == SQLITE_ROW ? 0 : fail(s, err, errlen, "labeling progress");
}

int store_count_rankings(Store *s, int64_t labeler_id, int64_t *n, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_LABELER_RANKINGS, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, labeler_id);
    return step_id(s, st, n, "count rankings", err, errlen);
}

// ---------------------------------------------------------------------------------------------
// Users and sessions
// ---------------------------------------------------------------------------------------------

static const char *const ROLE_NAME[2] = {"labeler", "admin"};
const char *store_role_name(StoreRole r) { return ROLE_NAME[r == STORE_ROLE_ADMIN]; }
int store_role_parse(const char *name, StoreRole *r) {
    for (int i = 0; i < 2; i++)
        if (name && !strcmp(name, ROLE_NAME[i])) { *r = (StoreRole)i; return 0; }
    return -1;
}

int store_add_user(Store *s, const char *name, StoreRole role, const char *salt, const char *hash,
                   int64_t iterations, int64_t *id, char *err, size_t errlen) {
    if (id) *id = 0;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    int ok = 0;
    int64_t lid = 0;
    StoreUser u = {0};
    if (store_find_user(s, name, &u, err, errlen)) goto end;
    if (u.id) {
        util_err(err, errlen, "%s: add user: user '%s' exists (rlhf users remove it first)",
                 s->path, name);
        goto end;
    }
    if (store_add_labeler(s, name, &lid, err, errlen)) goto end;
    sqlite3_stmt *st = q(s, Q_USER_ADD, err, errlen);
    if (!st) goto end;
    sqlite3_bind_int64(st, 1, lid); bind_text(st, 2, store_role_name(role));
    bind_text(st, 3, salt); bind_text(st, 4, hash);
    sqlite3_bind_int64(st, 5, iterations); sqlite3_bind_double(st, 6, now_s());
    if (step_write(s, st, "add user", err, errlen)) goto end;
    if (id) *id = sqlite3_last_insert_rowid(s->db);
    ok = 1;
end:
    store_user_free(&u);
    return op_end(s, began_tx, ok, err, errlen);
}

static void read_user(sqlite3_stmt *st, StoreUser *u) {
    StoreRole role = STORE_ROLE_LABELER;
    store_role_parse(col_text(st, 3), &role);
    *u = (StoreUser){.id = sqlite3_column_int64(st, 0), .labeler_id = sqlite3_column_int64(st, 1),
                     .name = col_dup(st, 2), .role = role, .salt = col_dup(st, 4),
                     .hash = col_dup(st, 5), .iterations = sqlite3_column_int64(st, 6),
                     .created = sqlite3_column_double(st, 7),
                     .rankings = sqlite3_column_int64(st, 8)};
}

int store_find_user(Store *s, const char *name, StoreUser *u, char *err, size_t errlen) {
    memset(u, 0, sizeof *u);
    if (need_text(s, name, "find user", err, errlen)) return -1;
    sqlite3_stmt *st = q(s, Q_USER_FIND, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, name);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) read_user(st, u);
    done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, err, errlen, "find user");
}

void store_user_free(StoreUser *u) {
    free(u->name); free(u->salt); free(u->hash);
    memset(u, 0, sizeof *u);
}

int store_each_user(Store *s, StoreUserFn fn, void *ctx, char *err, size_t errlen) {
    sqlite3_stmt *st = prepare(s, "SELECT " USER_COLUMNS " FROM users u "
                                  "JOIN labelers l ON l.id = u.labeler_id ORDER BY l.name",
                               err, errlen);
    if (!st) return -1;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        StoreUser u;
        read_user(st, &u);
        int stop = fn(&u, ctx);
        store_user_free(&u);
        if (stop) return walk_end(s, st, stop, 1, "", err, errlen);
    }
    return walk_end(s, st, rc, 0, "list users", err, errlen);
}

int store_delete_user(Store *s, const char *name, char *err, size_t errlen) {
    if (need_text(s, name, "remove user", err, errlen)) return -1;
    sqlite3_stmt *st = q(s, Q_USER_DELETE, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, name);
    if (step_write(s, st, "remove user", err, errlen)) return -1;
    if (sqlite3_changes(s->db) == 0)
        return util_err(err, errlen, "%s: remove user: no user '%s'", s->path, name);
    return 0;
}

int store_add_session(Store *s, const char *id_hash, int64_t user_id, const char *csrf,
                      double expires, char *err, size_t errlen) {
    sqlite3_stmt *old = q(s, Q_SESSION_EXPIRE, err, errlen),
                 *add = q(s, Q_SESSION_ADD, err, errlen);
    if (!old || !add) return -1;
    int began_tx = sqlite3_get_autocommit(s->db);
    if (op_begin(s, err, errlen)) return -1;
    double now = now_s();
    sqlite3_bind_double(old, 1, now);
    int ok = step_write(s, old, "drop expired sessions", err, errlen) == 0;
    if (ok) {
        bind_text(add, 1, id_hash); sqlite3_bind_int64(add, 2, user_id); bind_text(add, 3, csrf);
        sqlite3_bind_double(add, 4, now); sqlite3_bind_double(add, 5, expires);
        ok = step_write(s, add, "add session", err, errlen) == 0;
    }
    return op_end(s, began_tx, ok, err, errlen);
}

int store_get_session(Store *s, const char *id_hash, StoreSession *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = q(s, Q_SESSION_GET, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, id_hash); sqlite3_bind_double(st, 2, now_s());
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        StoreRole role = STORE_ROLE_LABELER;
        store_role_parse(col_text(st, 3), &role);
        *out = (StoreSession){.user_id = sqlite3_column_int64(st, 0),
                              .labeler_id = sqlite3_column_int64(st, 1), .name = col_dup(st, 2),
                              .role = role, .csrf = col_dup(st, 4),
                              .expires = sqlite3_column_double(st, 5),
                              .created = sqlite3_column_double(st, 6)};
    }
    done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail(s, err, errlen, "find session");
}

void store_session_free(StoreSession *ss) {
    free(ss->name); free(ss->csrf);
    memset(ss, 0, sizeof *ss);
}

int store_delete_session(Store *s, const char *id_hash, char *err, size_t errlen) {
    sqlite3_stmt *st = q(s, Q_SESSION_DELETE, err, errlen);
    if (!st) return -1;
    bind_text(st, 1, id_hash);
    return step_write(s, st, "delete session", err, errlen);
}
