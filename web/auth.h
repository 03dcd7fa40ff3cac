// auth: who may use `rlhf serve`. Users (a labeler's login with a role) get a random login token
// once; the workspace keeps only a salted PBKDF2-HMAC-SHA256 hash of it (common/sha256). A login
// starts a session: a random cookie secret (the database keeps its SHA-256) and a CSRF token that
// every state-changing request of the session must carry. Failed logins are rate-limited per
// client address. Also the `rlhf users` command (add, list, remove).
//
// Ownership: strings filled into caller buffers; AuthLimiter is the caller's (auth_limiter_init /
// auth_limiter_free), safe to share between threads. No global state.
#ifndef AUTH_H
#define AUTH_H
#include "store.h"
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#define AUTH_TOKEN_BYTES   32         // login tokens, session secrets, CSRF tokens: 256 bits
#define AUTH_HEX           (2 * AUTH_TOKEN_BYTES + 1)
#define AUTH_SALT_BYTES    16
#define AUTH_KDF_ITERATIONS 100000    // PBKDF2 rounds for a new user's token hash
#define AUTH_LOGIN_FAILS   5          // failed logins allowed per address per window...
#define AUTH_LOGIN_WINDOW_S 60.0      // ...of this many seconds; then 429 until it passes
#define AUTH_LIMITER_SLOTS 256        // addresses tracked at once (the oldest is forgotten)

// nbytes random bytes (getrandom) as 2 * nbytes lowercase hex digits and a NUL into hex.
int auth_random_hex(size_t nbytes, char *hex, char *err, size_t errlen);
// Constant-time comparison of two NUL-terminated strings: 1 equal, 0 not.
int auth_equal(const char *a, const char *b);

// Creates user NAME with ROLE and a fresh login token, written into token[AUTH_HEX] (shown once;
// only its salted hash is stored).
int auth_add_user(Store *db, const char *name, StoreRole role, char token[AUTH_HEX], char *err,
                  size_t errlen);
// Checks NAME's login token: *user_id and *labeler_id set when it is right, 0 when the user is
// unknown or the token wrong (the same work is done either way).
int auth_check_token(Store *db, const char *name, const char *token, int64_t *user_id, char *err,
                     size_t errlen);
double auth_now(void);   // wall-clock Unix seconds (session expiry is stored as such)
// Starts a session for user_id lasting lifetime_s: the cookie's secret into cookie[AUTH_HEX].
int auth_start_session(Store *db, int64_t user_id, double lifetime_s, char cookie[AUTH_HEX],
                       char *err, size_t errlen);
// The session whose cookie secret is `cookie` (NULL or malformed: none): out->user_id 0 when
// there is none or it expired. Release with store_session_free.
int auth_find_session(Store *db, const char *cookie, StoreSession *out, char *err, size_t errlen);
int auth_end_session(Store *db, const char *cookie, char *err, size_t errlen);

typedef struct {
    char addr[64];            // the client's address ("" : free slot)
    double since;             // start of its window
    int fails;                // failed logins in the window
} AuthLimitSlot;
typedef struct {
    pthread_mutex_t mu;
    AuthLimitSlot slot[AUTH_LIMITER_SLOTS];
} AuthLimiter;
void auth_limiter_init(AuthLimiter *l);
void auth_limiter_free(AuthLimiter *l);
// 1 when addr may try to log in now; else 0 and *retry_s the seconds until it may.
int auth_limiter_allow(AuthLimiter *l, const char *addr, double now, double *retry_s);
// Records the outcome of a login from addr: a failure counts; a success clears the count.
void auth_limiter_record(AuthLimiter *l, const char *addr, double now, int ok);

// `rlhf users add NAME --role labeler|admin | list | remove NAME`, on --workspace DB.
int auth_cmd_users(int argc, char **argv);
#endif
