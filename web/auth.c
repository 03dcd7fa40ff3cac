// auth: see auth.h. Why PBKDF2-HMAC-SHA256 over common/sha256 rather than a crypto library: it is
// a standard KDF (RFC 8018) that needs no new dependency, and login tokens are 256 random bits
// (not passwords a person chose), so the salted, iterated hash is there so that a copied
// database does not let anyone log in; no dictionary can guess a token.
#include "auth.h"
#include "cli.h"
#include "commands.h"
#include "sha256.h"
#include "util.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

int auth_random_hex(size_t nbytes, char *hex, char *err, size_t errlen) {
    uint8_t buf[64];
    if (nbytes > sizeof buf) return util_err(err, errlen, "random: %zu bytes asked", nbytes);
    size_t got = 0;
    while (got < nbytes) {
        ssize_t k = getrandom(buf + got, nbytes - got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return util_err(err, errlen, "getrandom: %s", strerror(errno));
        got += (size_t)k;
    }
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < nbytes; i++) {
        hex[2 * i] = digits[buf[i] >> 4];
        hex[2 * i + 1] = digits[buf[i] & 15];
    }
    hex[2 * nbytes] = 0;
    return 0;
}

int auth_equal(const char *a, const char *b) {
    // every byte of a is compared (with b's, or b's NUL past its end): the time depends on a's
    // length only, never on where they differ
    size_t na = strlen(a), nb = strlen(b);
    unsigned diff = na != nb;
    for (size_t i = 0; i < na; i++)
        diff |= (unsigned char)a[i] ^ (unsigned char)(i < nb ? b[i] : 0);
    return diff == 0;
}

// hex = PBKDF2-HMAC-SHA256(token, salt, iterations), 32 bytes as 64 hex digits.
static void auth_hash(const char *token, const char *salt, int64_t iterations, char hex[65]) {
    uint8_t d[32];
    sha256_pbkdf2(token, strlen(token), salt, strlen(salt), (uint64_t)iterations, d, sizeof d);
    sha256_hex(d, hex);
}

int auth_add_user(Store *db, const char *name, StoreRole role, char token[AUTH_HEX], char *err,
                  size_t errlen) {
    char salt[2 * AUTH_SALT_BYTES + 1], hash[65];
    if (!name || !*name) return util_err(err, errlen, "the user name is empty");
    if (auth_random_hex(AUTH_TOKEN_BYTES, token, err, errlen) ||
        auth_random_hex(AUTH_SALT_BYTES, salt, err, errlen))
        return -1;
    auth_hash(token, salt, AUTH_KDF_ITERATIONS, hash);
    return store_add_user(db, name, role, salt, hash, AUTH_KDF_ITERATIONS, NULL, err, errlen);
}

int auth_check_token(Store *db, const char *name, const char *token, int64_t *user_id, char *err,
                     size_t errlen) {
    *user_id = 0;
    StoreUser u;
    if (store_find_user(db, name, &u, err, errlen)) return -1;
    // an unknown name costs the same rounds as a known one: timing does not tell names apart
    char hash[65];
    auth_hash(token, u.id ? u.salt : "", u.id ? u.iterations : AUTH_KDF_ITERATIONS, hash);
    if (u.id && auth_equal(hash, u.hash)) *user_id = u.id;
    store_user_free(&u);
    return 0;
}

// The database's key for a cookie secret: its SHA-256 (a read of the database gives no session).
static void auth_session_key(const char *cookie, char key[65]) {
    uint8_t d[32];
    sha256(cookie, strlen(cookie), d);
    sha256_hex(d, key);
}

double auth_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int auth_start_session(Store *db, int64_t user_id, double lifetime_s, char cookie[AUTH_HEX],
                       char *err, size_t errlen) {
    char csrf[AUTH_HEX], key[65];
    if (auth_random_hex(AUTH_TOKEN_BYTES, cookie, err, errlen) ||
        auth_random_hex(AUTH_TOKEN_BYTES, csrf, err, errlen))
        return -1;
    auth_session_key(cookie, key);
    return store_add_session(db, key, user_id, csrf, auth_now() + lifetime_s, err, errlen);
}

// A cookie secret as auth_start_session makes them: 64 lowercase hex digits.
static int auth_cookie_valid(const char *cookie) {
    if (!cookie || strlen(cookie) != AUTH_HEX - 1) return 0;
    for (const char *p = cookie; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

int auth_find_session(Store *db, const char *cookie, StoreSession *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!auth_cookie_valid(cookie)) return 0;
    char key[65];
    auth_session_key(cookie, key);
    return store_get_session(db, key, out, err, errlen);
}

int auth_end_session(Store *db, const char *cookie, char *err, size_t errlen) {
    if (!auth_cookie_valid(cookie)) return 0;
    char key[65];
    auth_session_key(cookie, key);
    return store_delete_session(db, key, err, errlen);
}

// ---------------------------------------------------------------------------------------------
// login rate limit

void auth_limiter_init(AuthLimiter *l) {
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->mu, NULL);
}
void auth_limiter_free(AuthLimiter *l) { pthread_mutex_destroy(&l->mu); }

// The slot of addr (a window that ended is started again), or a free or the oldest slot taken
// for it. Called with the lock held.
static AuthLimitSlot *auth_limiter_slot(AuthLimiter *l, const char *addr, double now) {
    AuthLimitSlot *free_slot = NULL, *oldest = &l->slot[0];
    for (int i = 0; i < AUTH_LIMITER_SLOTS; i++) {
        AuthLimitSlot *s = &l->slot[i];
        if (s->addr[0] && !strcmp(s->addr, addr)) {
            if (now - s->since >= AUTH_LOGIN_WINDOW_S) { s->since = now; s->fails = 0; }
            return s;
        }
        if (!s->addr[0] && !free_slot) free_slot = s;
        if (s->since < oldest->since) oldest = s;
    }
    AuthLimitSlot *s = free_slot ? free_slot : oldest;
    snprintf(s->addr, sizeof s->addr, "%s", addr);
    s->since = now;
    s->fails = 0;
    return s;
}

int auth_limiter_allow(AuthLimiter *l, const char *addr, double now, double *retry_s) {
    pthread_mutex_lock(&l->mu);
    AuthLimitSlot *s = auth_limiter_slot(l, addr, now);
    int ok = s->fails < AUTH_LOGIN_FAILS;
    *retry_s = ok ? 0 : s->since + AUTH_LOGIN_WINDOW_S - now;
    pthread_mutex_unlock(&l->mu);
    return ok;
}

void auth_limiter_record(AuthLimiter *l, const char *addr, double now, int ok) {
    pthread_mutex_lock(&l->mu);
    AuthLimitSlot *s = auth_limiter_slot(l, addr, now);
    if (ok) s->fails = 0;
    else s->fails++;
    pthread_mutex_unlock(&l->mu);
}

// ---------------------------------------------------------------------------------------------
// rlhf users

static const char *users_usage =
    "usage: rlhf users add WORKSPACE NAME --role labeler|admin\n"
    "       rlhf users list WORKSPACE\n"
    "       rlhf users remove WORKSPACE NAME\n"
    "WORKSPACE: a workspace directory (its workspace.db) or the database file (add creates it\n"
    "when absent, as reward import does).\n"
    "The logins of `rlhf serve`. add prints the new user's login token once (the workspace\n"
    "keeps only a salted hash of it: a lost token is replaced by remove, then add). A labeler\n"
    "labels; an admin labels and sees the admin pages. NAME is the labeler's name in the\n"
    "rankings: one who ranked in the terminal (reward label --labeler NAME) keeps those\n"
    "rankings. remove ends the user's sessions at once; the rankings stay.\n";

// Parses "WORKSPACE [NAME]" (nargs of them) and the options, opens the workspace.
static int users_open(const char *prog, int argc, char **argv, int nargs, const char **role,
                      Store **db, const char **name, int *status) {
    CliList args = {0};
    CliOption opts[] = {CLI_STRING("--role", role, .required = 1), {0}};
    CliCommand cmd = {.prog = prog, .usage = users_usage, .opts = role ? opts : NULL,
                      .arg_name = nargs == 1 ? "WORKSPACE" : "WORKSPACE NAME", .arg_list = &args,
                      .args_min = nargs, .args_max = nargs, .value_status = 1};
    if (cli_parse(&cmd, argc, argv, status)) return 1;
    const char *path = args.items[0];
    *name = nargs > 1 ? args.items[1] : NULL;
    cli_list_free(&args);
    char err[1024];
    // add may start a workspace (as reward import does); list and remove need one that exists
    int rc = role && access(path, F_OK) ? store_open(db, path, err, sizeof err)
                                        : rlhf_workspace_open(path, db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "%s: %s\n", prog, err);
        *status = 1;
        return 1;
    }
    return 0;
}

static int users_add(int argc, char **argv) {
    const char *role_name = NULL, *name;
    Store *db;
    int status;
    StoreRole role;
    if (users_open("rlhf users add", argc, argv, 2, &role_name, &db, &name, &status))
        return status;
    char err[1024], token[AUTH_HEX];
    int rc = 1;
    if (store_role_parse(role_name, &role))
        snprintf(err, sizeof err, "--role '%s': expected labeler or admin", role_name);
    else if (auth_add_user(db, name, role, token, err, sizeof err) == 0) {
        printf("%s\n", token);
        fprintf(stderr,
                "rlhf users add: %s '%s' added; the line above is the login token, shown only "
                "this once\n", store_role_name(role), name);
        rc = 0;
    }
    if (rc) fprintf(stderr, "rlhf users add: %s\n", err);
    store_close(db);
    return rc;
}

static int users_print(const StoreUser *u, void *ctx) {
    (void)ctx;
    char when[32];
    time_t t = (time_t)u->created;
    struct tm tm;
    strftime(when, sizeof when, "%Y-%m-%d %H:%M", gmtime_r(&t, &tm));
    printf("%-20s %-8s %8lld rankings   added %s UTC\n", u->name, store_role_name(u->role),
           (long long)u->rankings, when);
    return 0;
}

static int users_list(int argc, char **argv) {
    const char *name;
    Store *db;
    int status;
    if (users_open("rlhf users list", argc, argv, 1, NULL, &db, &name, &status)) return status;
    char err[1024];
    int rc = store_each_user(db, users_print, NULL, err, sizeof err) ? 1 : 0;
    if (rc) fprintf(stderr, "rlhf users list: %s\n", err);
    store_close(db);
    return rc;
}

static int users_remove(int argc, char **argv) {
    const char *name;
    Store *db;
    int status;
    if (users_open("rlhf users remove", argc, argv, 2, NULL, &db, &name, &status)) return status;
    char err[1024];
    int rc = store_delete_user(db, name, err, sizeof err) ? 1 : 0;
    if (rc) fprintf(stderr, "rlhf users remove: %s\n", err);
    else fprintf(stderr, "rlhf users remove: '%s' removed (the rankings stay)\n", name);
    store_close(db);
    return rc;
}

int auth_cmd_users(int argc, char **argv) {
    static const CliSubcommand cmds[] = {
        {"add", users_add, "WORKSPACE NAME --role labeler|admin   a login; prints its token once"},
        {"list", users_list, "WORKSPACE                     the logins, roles, rankings made"},
        {"remove", users_remove, "WORKSPACE NAME                remove a login (rankings stay)"},
        {0}};
    if (argc < 1 || cli_is_help(argv[0])) {
        fputs(users_usage, argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    for (const CliSubcommand *c = cmds; c->name; c++)
        if (!strcmp(c->name, argv[0])) return c->run(argc - 1, argv + 1);
    fprintf(stderr, "rlhf users: unknown command '%s' (add, list, remove)\n%s", argv[0],
            users_usage);
    return 2;
}
