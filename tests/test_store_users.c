// The part of the store `rlhf serve` adds (schema 6; common/store_users.c): users and sessions,
// rankings only for one's own claim with their flags, undo in one transaction (since a time),
// labeling progress; and the PBKDF2 the login tokens are hashed with (common/sha256.c).
#include "sha256.h"
#include "store.h"
#include "testlib.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char root[256];   // scratch directory for this run

// A new workspace in the scratch directory.
static Store *open_fresh(const char *name) {
    char path[512], err[512];
    Store *s = NULL;
    snprintf(path, sizeof path, "%s/%s", root, name);
    if (store_open(&s, path, err, sizeof err)) fprintf(stderr, "store_open: %s\n", err);
    if (!s) exit(1);
    return s;
}

static int64_t query_int(Store *s, const char *sql) { return test_sql_int(store_sqlite(s), sql); }

static int one_line(const char *s) { return !strchr(s, '\n'); }

#define CHECK_INTEGRITY(s) CHECK(store_check((s), err, sizeof err) == 0)

// Schema 6: users (a labeler's login), sessions, and rankings for one's own claims with flags,
// undone in one transaction.
static void test_users_sessions(void) {
    Store *s = open_fresh("users.db");
    char err[512];
    int64_t uid, lab, id;
    CHECK(store_add_labeler(s, "term", &lab, err, sizeof err) == 0);
    CHECK(store_add_user(s, "term", STORE_ROLE_ADMIN, "salt", "hash", 7, &uid, err,
                         sizeof err) == 0);
    StoreUser u;
    CHECK(store_find_user(s, "term", &u, err, sizeof err) == 0 && u.id == uid &&
          u.labeler_id == lab && u.role == STORE_ROLE_ADMIN && !strcmp(u.salt, "salt") &&
          !strcmp(u.hash, "hash") && u.iterations == 7);
    store_user_free(&u);
    CHECK(store_add_user(s, "term", STORE_ROLE_LABELER, "s", "h", 1, &id, err, sizeof err) == -1 &&
          strstr(err, "user 'term' exists") && one_line(err));
    CHECK(store_find_user(s, "nobody", &u, err, sizeof err) == 0 && u.id == 0);
    CHECK(store_add_session(s, "k1", uid, "csrf1", 1e12, err, sizeof err) == 0);
    CHECK(store_add_session(s, "old", uid, "csrf0", 1.0, err, sizeof err) == 0);
    StoreSession ss;
    CHECK(store_get_session(s, "k1", &ss, err, sizeof err) == 0 && ss.user_id == uid &&
          ss.labeler_id == lab && !strcmp(ss.name, "term") && !strcmp(ss.csrf, "csrf1") &&
          ss.role == STORE_ROLE_ADMIN);
    store_session_free(&ss);
    CHECK(store_get_session(s, "old", &ss, err, sizeof err) == 0 && ss.user_id == 0);
    CHECK(store_delete_user(s, "term", err, sizeof err) == 0);
    CHECK(store_get_session(s, "k1", &ss, err, sizeof err) == 0 && ss.user_id == 0);
    CHECK(query_int(s, "SELECT count(*) FROM sessions") == 0);
    CHECK(query_int(s, "SELECT count(*) FROM labelers WHERE name = 'term'") == 1);
    CHECK(store_delete_user(s, "term", err, sizeof err) == -1 && strstr(err, "no user 'term'"));
    StoreRole r;
    CHECK(store_role_parse("admin", &r) == 0 && r == STORE_ROLE_ADMIN &&
          store_role_parse("root", &r) == -1);
    // claimed rankings: only for one's own active claim; flags; undo claims the prompt back
    int64_t a, b, pid, got, c[3], rid, rid2, upid;
    CHECK(store_add_labeler(s, "a", &a, err, sizeof err) == 0);
    CHECK(store_add_labeler(s, "b", &b, err, sizeof err) == 0);
    pid = test_prompt_with(s, "claimed?", "train", 3, c);
    StoreRankItem items[3] = {{c[0], 1}, {c[1], 1}, {c[2], 2}};
    StoreRankFlag flags[1] = {{c[1], "unsafe"}};
    CHECK(store_claim_prompt(s, a, NULL, &got, err, sizeof err) == 0 && got == pid);
    CHECK(store_add_claimed_ranking(s, pid, b, items, 3, NULL, NULL, 0, &rid, err,
                                    sizeof err) == -2 && strstr(err, "holds no claim"));
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == 0);
    StoreRankFlag stray[1] = {{999, "broken"}};
    CHECK(store_add_claimed_ranking(s, pid, a, items, 3, "n", stray, 1, &rid, err,
                                    sizeof err) == -1 && strstr(err, "not ranked"));
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == 0);   // the ranking rolled back too
    CHECK(store_add_claimed_ranking(s, pid, a, items, 3, "n", flags, 1, &rid, err,
                                    sizeof err) == 0 && rid > 0);
    CHECK(query_int(s, "SELECT count(*) FROM ranking_flags WHERE flag = 'unsafe'") == 1);
    int active;
    CHECK(store_has_claim(s, a, pid, &active, err, sizeof err) == 0 && !active);
    StoreLabelProgress pr;
    CHECK(store_label_progress(s, a, 1, &pr, err, sizeof err) == 0 && pr.mine == 1 &&
          pr.done == 1 && pr.queued == 1);
    int64_t n;
    CHECK(store_count_rankings(s, a, &n, err, sizeof err) == 0 && n == 1 &&
          store_count_rankings(s, b, &n, err, sizeof err) == 0 && n == 0);
    CHECK(store_label_progress(s, a, 2, &pr, err, sizeof err) == 0 && pr.done == 0);
    CHECK(store_undo_ranking(s, b, rid, 0, 0, &rid2, &upid, err, sizeof err) == -2 &&
          strstr(err, "is not labeler"));
    CHECK(store_undo_ranking(s, a, 0, 4e9, 60, &rid2, &upid, err, sizeof err) == 0 &&
          rid2 == 0);   // none made since then: nothing undone
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == 1);
    CHECK(store_undo_ranking(s, a, 0, 0, 60, &rid2, &upid, err, sizeof err) == 0 && rid2 == rid &&
          upid == pid);
    CHECK(query_int(s, "SELECT count(*) FROM rankings") == 0 &&
          query_int(s, "SELECT count(*) FROM ranking_flags") == 0);
    CHECK(store_has_claim(s, a, pid, &active, err, sizeof err) == 0 && active);
    CHECK(store_undo_ranking(s, a, 0, 0, 60, &rid2, &upid, err, sizeof err) == 0 && rid2 == 0);
    CHECK_INTEGRITY(s);
    store_close(s);
}

// PBKDF2-HMAC-SHA256 against the published vectors (RFC 7914 section 11 and the widely used
// "password"/"salt" set), HMAC-SHA256 against RFC 4231 case 2.
static void test_pbkdf2(void) {
    uint8_t d[64];
    char hex[65];
    sha256_hmac("Jefe", 4, "what do ya want for nothing?", 28, d);
    sha256_hex(d, hex);
    CHECK(!strcmp(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    sha256_pbkdf2("password", 8, "salt", 4, 1, d, 32);
    sha256_hex(d, hex);
    CHECK(!strcmp(hex, "120fb6cffcf8b32c43e7225256c4f837a86548c92ccc35480805987cb70be17b"));
    sha256_pbkdf2("password", 8, "salt", 4, 4096, d, 32);
    sha256_hex(d, hex);
    CHECK(!strcmp(hex, "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"));
    sha256_pbkdf2("passwd", 6, "salt", 4, 1, d, 64);   // two blocks
    sha256_hex(d, hex);
    CHECK(!strcmp(hex, "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"));
    sha256_hex(d + 32, hex);
    CHECK(!strcmp(hex, "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783"));
}

int main(void) {
    if (test_scratch_dir(root, sizeof root, "rlhf_test_store_users")) return 1;
    test_case("store: users, sessions, rankings for one's own claims with flags, undo (schema 6)",
              test_users_sessions);
    test_case("sha256: HMAC and PBKDF2 against published vectors", test_pbkdf2);
    test_rm_rf(root);
    return test_summary();
}
