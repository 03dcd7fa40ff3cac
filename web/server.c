// server: see server.h. The order of a request: the first call checks the header count and the
// announced body size; the next calls collect the body (bounded); the last one routes it: static
// files, login and logout, the labeling page and API (web/label), the admin pages (web/views).
// Each worker thread of libmicrohttpd's pool borrows one database connection (a Store) from a
// pool of as many for the time of a request.
#define _GNU_SOURCE
#include "server.h"
#include "assets.h"
#include "auth.h"
#include "cli.h"
#include "commands.h"
#include "html.h"
#include "label.h"
#include "store.h"
#include "util.h"
#include "views.h"
#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define WEB_SESSION_COOKIE "rlhf_session"
#define WEB_LOGIN_COOKIE   "rlhf_login"   // the login form's pre-session CSRF token
#define WEB_CSP "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

typedef struct {
    Store **stores;           // [n] one connection each
    int *free_ix, nfree, n;   // the stores not lent out
    pthread_mutex_t mu;
    pthread_cond_t cv;
} StorePool;

typedef struct {
    const char *path;         // the workspace
    LabelOptions lo;
    double session_s;         // how long a login lasts
    StorePool pool;
    AuthLimiter lim;
    // Held around every write transaction of this process: its threads then queue here, woken
    // the moment the writer before ends, instead of polling SQLite's lock in its busy handler
    // (which sleeps up to 100 ms between tries). Other processes still meet the busy timeout.
    pthread_mutex_t write_mu;
    LabelTotals totals;       // the progress totals, read now and then (web/label.h)
} Server;

typedef struct {              // one request's body, collected across calls
    char *body;
    size_t n;
    int too_big;
} Req;

typedef struct {              // what a route needs
    Server *srv;
    struct MHD_Connection *con;
    Store *db;
    StoreSession ss;          // ss.user_id 0: not logged in
    const char *body;         // the request body, NUL-terminated ("" when none)
} Ctx;

// ---------------------------------------------------------------------------------------------
// the store pool

// n connections to workspace ws (a directory holding workspace.db, or the database file, which
// must exist).
static int pool_open(StorePool *p, const char *ws, int n, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    p->stores = CALLOC_CHECK((size_t)n, sizeof *p->stores);
    p->free_ix = CALLOC_CHECK((size_t)n, sizeof *p->free_ix);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (rlhf_workspace_open(ws, &p->stores[0], err, errlen)) return -1;
    for (p->n = 1, p->nfree = 1; p->n < n; p->n++) {   // the others on the file the first opened
        if (store_open(&p->stores[p->n], store_path(p->stores[0]), err, errlen)) return -1;
        p->free_ix[p->nfree++] = p->n;
    }
    return 0;
}

static void pool_close(StorePool *p) {
    for (int i = 0; i < p->n; i++) store_close(p->stores[i]);
    free(p->stores);
    free(p->free_ix);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

static Store *pool_get(StorePool *p) {
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0) pthread_cond_wait(&p->cv, &p->mu);
    Store *s = p->stores[p->free_ix[--p->nfree]];
    pthread_mutex_unlock(&p->mu);
    return s;
}

static void pool_put(StorePool *p, Store *s) {
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->n; i++)
        if (p->stores[i] == s) p->free_ix[p->nfree++] = i;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

// ---------------------------------------------------------------------------------------------
// responses

// Sends body (malloc'd; taken) with the security headers and up to two extra header pairs
// (name, value; NULL names end them).
static enum MHD_Result web_send(struct MHD_Connection *con, unsigned status, const char *type,
                                char *body, const char *h1, const char *v1, const char *h2,
                                const char *v2) {
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) { free(body); return MHD_NO; }
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (h1) MHD_add_response_header(r, h1, v1);
    if (h2) MHD_add_response_header(r, h2, v2);
    enum MHD_Result ret = MHD_queue_response(con, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result web_json(struct MHD_Connection *con, unsigned status, char *json) {
    return web_send(con, status, "application/json", json, NULL, NULL, NULL, NULL);
}

// {"error": msg} with status.
static enum MHD_Result web_json_error(struct MHD_Connection *con, unsigned status,
                                      const char *msg) {
    HtmlBuf b = {0};
    html_put(&b, "{\"error\": \"");
    for (const char *p = msg; *p; p++) {   // our own messages: printable ASCII
        if (*p == '"' || *p == '\\') html_putn(&b, "\\", 1);
        html_putn(&b, p, 1);
    }
    html_put(&b, "\"}");
    return web_json(con, status, html_take(&b));
}

static enum MHD_Result web_redirect(struct MHD_Connection *con, const char *to,
                                    const char *cookie) {
    return web_send(con, 303, "text/plain; charset=utf-8", STRDUP_CHECK("see other\n"),
                    "Location", to, cookie ? "Set-Cookie" : NULL, cookie);
}

// A whole page: the layout (header with the user and the navigation) around main_html (trusted
// HTML: escaped by whoever made it). script: the name of a file of web/static to load, or NULL.
static char *web_page(const char *title, const StoreSession *ss, const char *main_html,
                      const char *script) {
    HtmlBuf b = {0};
    html_put(&b, "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                 "<title>");
    html_esc(&b, title);
    html_put(&b, " · rlhf.c</title><link rel=\"stylesheet\" href=\"/static/views.css\">"
                 "<link rel=\"stylesheet\" href=\"/static/style.css\">"
                 "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">");
    if (ss && ss->user_id) {
        html_put(&b, "<meta name=\"csrf-token\" content=\"");
        html_esc(&b, ss->csrf);
        html_put(&b, "\">");
    }
    html_put(&b, "</head><body><header><span class=\"brand\">rlhf.c</span><nav>");
    if (ss && ss->user_id) {
        html_put(&b, "<a href=\"/\">Label</a>");
        if (ss->role == STORE_ROLE_ADMIN)
            html_put(&b, "<a href=\"/admin/\">Dashboard</a><a href=\"/admin/progress\">Progress"
                         "</a><a href=\"/admin/reward\">Reward model</a><a href=\"/admin/runs\">"
                         "Runs</a><a href=\"/admin/rollouts\">Rollouts</a><a href=\"/admin/"
                         "pipeline\">Pipeline</a>");
        html_put(&b, "</nav><form class=\"logout\" method=\"post\" action=\"/logout\">"
                     "<span class=\"user\" id=\"user\">");
        html_esc(&b, ss->name);
        html_printf(&b, " (%s)</span><input type=\"hidden\" name=\"csrf\" value=\"",
                    store_role_name(ss->role));
        html_esc(&b, ss->csrf);
        html_put(&b, "\"><button type=\"submit\">Log out</button></form>");
    } else html_put(&b, "</nav>");
    html_put(&b, "</header><main>");
    html_put(&b, main_html);
    html_put(&b, "</main>");
    if (script) html_printf(&b, "<script src=\"/static/%s\"></script>", script);
    html_put(&b, "</body></html>\n");
    return html_take(&b);
}

static enum MHD_Result web_html(struct MHD_Connection *con, unsigned status, char *page,
                                const char *cookie) {
    return web_send(con, status, "text/html; charset=utf-8", page,
                    cookie ? "Set-Cookie" : NULL, cookie, NULL, NULL);
}

static enum MHD_Result web_error_page(Ctx *c, unsigned status, const char *msg) {
    HtmlBuf b = {0};
    html_printf(&b, "<h1>%u</h1><p class=\"error\">", status);
    html_esc(&b, msg);
    html_put(&b, "</p>");
    char *inner = html_take(&b);
    char *page = web_page("Error", &c->ss, inner, NULL);
    free(inner);
    return web_html(c->con, status, page, NULL);
}

// ---------------------------------------------------------------------------------------------
// requests

static const char *web_header(struct MHD_Connection *con, const char *name) {
    return MHD_lookup_connection_value(con, MHD_HEADER_KIND, name);
}

// The client's address as text, for the login rate limit.
static void web_client_addr(struct MHD_Connection *con, char *out, size_t n) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(con, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    snprintf(out, n, "?");
    if (!ci || !ci->client_addr) return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)n);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)n);
}

// The CSRF token of a state-changing request (the X-CSRF-Token header, or a form's "csrf" field)
// matches the session's.
static int web_csrf_ok(Ctx *c) {
    const char *h = web_header(c->con, "X-CSRF-Token");
    if (h) return auth_equal(h, c->ss.csrf);
    char *f = html_query_get(c->body, "csrf");
    int ok = f && auth_equal(f, c->ss.csrf);
    free(f);
    return ok;
}

// A constant file: the bytes stay where they are (MHD_RESPMEM_PERSISTENT).
static enum MHD_Result web_file(Ctx *c, const void *data, size_t n, const char *type) {
    struct MHD_Response *r = MHD_create_response_from_buffer(n, (void *)data,
                                                             MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    MHD_add_response_header(r, "Content-Security-Policy", WEB_CSP);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    enum MHD_Result ret = MHD_queue_response(c->con, 200, r);
    MHD_destroy_response(r);
    return ret;
}

// /static/NAME: a file of web/static, or the views' style sheet (web/views: its charts' classes).
static enum MHD_Result web_static(Ctx *c, const char *name) {
    if (!strcmp(name, "views.css"))
        return web_file(c, views_css(), strlen(views_css()), "text/css; charset=utf-8");
    for (const WebAsset *a = WEB_ASSETS; a->name; a++)
        if (!strcmp(a->name, name)) return web_file(c, a->data, a->n, a->type);
    return web_error_page(c, 404, "no such file");
}

// The login page with a fresh pre-session CSRF token (in a cookie and in the form).
static enum MHD_Result web_login_page(Ctx *c, unsigned status, const char *msg) {
    char tok[AUTH_HEX], err[256], cookie[256];
    if (auth_random_hex(AUTH_TOKEN_BYTES, tok, err, sizeof err))
        return web_error_page(c, 500, err);
    HtmlBuf b = {0};
    html_put(&b, "<h1>Log in</h1>");
    if (msg) {
        html_put(&b, "<p class=\"error\" id=\"login-error\">");
        html_esc(&b, msg);
        html_put(&b, "</p>");
    }
    html_printf(&b, "<form method=\"post\" action=\"/login\" class=\"login\">"
                    "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
                    "<label>Name <input name=\"name\" id=\"name\" autocomplete=\"username\" "
                    "required></label><label>Login token <input name=\"token\" id=\"token\" "
                    "type=\"password\" autocomplete=\"current-password\" required></label>"
                    "<button type=\"submit\" id=\"login\">Log in</button></form>"
                    "<p class=\"hint\">An admin gives you a token: <code>rlhf users add "
                    "WORKSPACE NAME --role labeler</code>.</p>", tok);
    char *inner = html_take(&b);
    char *page = web_page("Log in", NULL, inner, NULL);
    free(inner);
    snprintf(cookie, sizeof cookie,
             WEB_LOGIN_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/login; Max-Age=3600", tok);
    return web_html(c->con, status, page, cookie);
}

static int web_start_session(Ctx *c, int64_t uid, char cookie[AUTH_HEX], char *err,
                             size_t errlen) {
    pthread_mutex_lock(&c->srv->write_mu);
    int rc = auth_start_session(c->db, uid, c->srv->session_s, cookie, err, errlen);
    pthread_mutex_unlock(&c->srv->write_mu);
    return rc;
}

static enum MHD_Result web_login(Ctx *c) {
    char addr[64], err[1024], cookie[AUTH_HEX], set[256];
    web_client_addr(c->con, addr, sizeof addr);
    const char *pre = MHD_lookup_connection_value(c->con, MHD_COOKIE_KIND, WEB_LOGIN_COOKIE);
    char *csrf = html_query_get(c->body, "csrf"), *name = html_query_get(c->body, "name"),
         *token = html_query_get(c->body, "token");
    enum MHD_Result ret;
    double now = auth_now(), retry;
    int64_t uid = 0;
    if (!pre || !csrf || strlen(pre) != AUTH_HEX - 1 || !auth_equal(pre, csrf))
        ret = web_login_page(c, 403, "The form expired or did not come from this site: try again.");
    else if (!auth_limiter_allow(&c->srv->lim, addr, now, &retry)) {
        snprintf(set, sizeof set, "%.0f", retry + 1);
        ret = web_send(c->con, 429, "text/plain; charset=utf-8",
                       STRDUP_CHECK("too many failed logins: wait a minute\n"), "Retry-After", set,
                       NULL, NULL);
    } else if (!name || !token ||
               auth_check_token(c->db, name, token, &uid, err, sizeof err))
        ret = name && token ? web_error_page(c, 500, err)
                            : web_login_page(c, 400, "Give a name and a login token.");
    else if (!uid) {
        auth_limiter_record(&c->srv->lim, addr, now, 0);
        ret = web_login_page(c, 401, "Wrong name or login token.");
    } else if (web_start_session(c, uid, cookie, err, sizeof err))
        ret = web_error_page(c, 500, err);
    else {
        auth_limiter_record(&c->srv->lim, addr, now, 1);
        snprintf(set, sizeof set,
                 WEB_SESSION_COOKIE "=%s; HttpOnly; SameSite=Strict; Path=/; Max-Age=%.0f",
                 cookie, c->srv->session_s);
        ret = web_redirect(c->con, "/", set);
    }
    free(csrf); free(name); free(token);
    return ret;
}

static enum MHD_Result web_logout(Ctx *c) {
    char err[512];
    const char *cookie = MHD_lookup_connection_value(c->con, MHD_COOKIE_KIND, WEB_SESSION_COOKIE);
    pthread_mutex_lock(&c->srv->write_mu);
    int rc = auth_end_session(c->db, cookie, err, sizeof err);
    pthread_mutex_unlock(&c->srv->write_mu);
    if (rc) return web_error_page(c, 500, err);
    return web_redirect(c->con, "/login",
                        WEB_SESSION_COOKIE "=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
}

static const char WEB_LABEL_MAIN[] =
    "<section id=\"label\"><div class=\"status\"><span id=\"progress\"></span>"
    "<span id=\"message\" role=\"status\"></span></div>"
    "<h2>Prompt</h2><pre id=\"prompt\" class=\"prompt\"></pre>"
    "<h2>Completions <small>best first: drag, or type their numbers (1..K); = ties the next one "
    "with the one before; Enter submits</small></h2><ol id=\"cards\" class=\"cards\"></ol>"
    "<label class=\"note\">Note <input id=\"note\" maxlength=\"2000\"></label>"
    "<div class=\"actions\"><button id=\"submit\">Submit (Enter)</button>"
    "<button id=\"reset\">Reset (Esc)</button><button id=\"skip\">Skip (S)</button>"
    "<button id=\"undo\">Undo last (U)</button></div></section>"
    "<p id=\"done\" hidden>Nothing left to label. Thank you.</p>";

// Appends the query string of the request (its GET arguments, encoded again) to b.
static enum MHD_Result web_query_arg(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value) {
    HtmlBuf *b = cls;
    if (b->n) html_put(b, "&");
    html_url_esc(b, key);
    html_put(b, "=");
    html_url_esc(b, value ? value : "");
    return MHD_YES;
}

// /admin/ (the dashboard) and /admin/VIEW; /admin goes to /admin/ (the views' links are relative).
static enum MHD_Result web_admin(Ctx *c, const char *url) {
    if (c->ss.role != STORE_ROLE_ADMIN)
        return web_error_page(c, 403, "The admin pages are for admins.");
    if (!url[6]) return web_redirect(c->con, "/admin/", NULL);
    const char *view = url + 7;
    HtmlBuf q = {0};
    MHD_get_connection_values(c->con, MHD_GET_ARGUMENT_KIND, web_query_arg, &q);
    char *query = html_take(&q), *frag = NULL, err[1024];
    int rc = views_render(store_sqlite(c->db), view, query, &frag, err, sizeof err);
    free(query);
    if (rc) {
        free(frag);
        return web_error_page(c, rc == -2 ? 404 : 500, err);
    }
    char *page = web_page(*view ? view : "Dashboard", &c->ss, frag, NULL);
    free(frag);
    return web_html(c->con, 200, page, NULL);
}

// The writes of the labeling API: /api/next's claim (GET), /api/rank, /api/skip, /api/undo
// (POST). *pid: the prompt claimed (next).
static int web_api_call(Ctx *c, const char *what, int post, const LabelOptions *o, int64_t me,
                        int64_t *pid, char **json) {
    *json = NULL;
    if (!strcmp(what, "next")) {   // a GET, but it claims a prompt: the CSRF token too
        if (post) return 405;
        if (!web_csrf_ok(c)) return 403;
        const char *want = MHD_lookup_connection_value(c->con, MHD_GET_ARGUMENT_KIND, "prompt");
        return label_claim(c->db, o, me, want ? strtoll(want, NULL, 10) : 0, pid, json);
    }
    if (strcmp(what, "rank") && strcmp(what, "skip") && strcmp(what, "undo")) return 404;
    if (!post) return 405;
    if (!web_csrf_ok(c)) return 403;
    if (!strcmp(what, "rank")) return label_rank(c->db, o, me, c->body, json);
    if (!strcmp(what, "skip")) return label_skip(c->db, o, me, c->body, json);
    return label_undo(c->db, o, me, c->ss.created, json);
}

static enum MHD_Result web_api(Ctx *c, const char *what, int post) {
    if (!c->ss.user_id)
        return web_json_error(c->con, 401, "not logged in (or the session expired)");
    char *json = NULL;
    const LabelOptions *o = &c->srv->lo;
    int64_t me = c->ss.labeler_id;
    int64_t pid = -1;
    pthread_mutex_lock(&c->srv->write_mu);   // each call is one write transaction (a claim too)
    int status = web_api_call(c, what, post, o, me, &pid, &json);
    pthread_mutex_unlock(&c->srv->write_mu);
    if (status == 200 && !json) status = label_show(c->db, o, me, pid, &json);   // reads only
    if (json) return web_json(c->con, (unsigned)status, json);
    return web_json_error(c->con, (unsigned)status,
                          status == 403   ? "missing or wrong CSRF token"
                          : status == 405 ? "wrong method: GET /api/next, POST the others"
                                          : "no such call");
}

static enum MHD_Result web_route(Ctx *c, const char *method, const char *url) {
    int get = !strcmp(method, "GET") || !strcmp(method, "HEAD"), post = !strcmp(method, "POST");
    if (!get && !post) return web_error_page(c, 405, "only GET and POST");
    if (!strncmp(url, "/static/", 8)) {
        if (!get) return web_error_page(c, 405, "GET only");
        return web_static(c, url + 8);
    }
    if (!strcmp(url, "/login")) return post ? web_login(c) : web_login_page(c, 200, NULL);
    const char *cookie = MHD_lookup_connection_value(c->con, MHD_COOKIE_KIND, WEB_SESSION_COOKIE);
    char err[1024];
    if (auth_find_session(c->db, cookie, &c->ss, err, sizeof err))
        return web_error_page(c, 500, err);
    if (!strncmp(url, "/api/", 5)) return web_api(c, url + 5, post);
    int page = !strcmp(url, "/") || !strcmp(url, "/admin") || !strncmp(url, "/admin/", 7);
    if (!page && strcmp(url, "/logout")) return web_error_page(c, 404, "no such page");
    if (!c->ss.user_id) {
        if (post) return web_error_page(c, 401, "not logged in (or the session expired)");
        return web_redirect(c->con, "/login", NULL);
    }
    if (post && !web_csrf_ok(c)) return web_error_page(c, 403, "missing or wrong CSRF token");
    if (!strcmp(url, "/logout")) return post ? web_logout(c) : web_error_page(c, 405, "POST");
    if (post) return web_error_page(c, 405, "GET only");
    if (!strcmp(url, "/"))
        return web_html(c->con, 200, web_page("Label", &c->ss, WEB_LABEL_MAIN, "label.js"), NULL);
    return web_admin(c, url);
}

// libmicrohttpd's access handler (see the file's opening comment for the order of calls).
static enum MHD_Result web_handle(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    Server *srv = cls;
    Req *r = *con_cls;
    Ctx c = {.srv = srv, .con = con};
    if (!r) {
        *con_cls = r = CALLOC_CHECK(1, sizeof *r);
        if (MHD_get_connection_values(con, MHD_HEADER_KIND, NULL, NULL) > WEB_MAX_HEADERS)
            return web_error_page(&c, 431, "too many header lines");
        const char *cl = web_header(con, "Content-Length");
        if (cl && (strlen(cl) > 9 || strtoll(cl, NULL, 10) > WEB_MAX_BODY))
            return web_error_page(&c, 413, "the request body is too large");
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->too_big || r->n + n > WEB_MAX_BODY) {
            r->too_big = 1;
            return MHD_YES;
        }
        r->body = REALLOC_CHECK(r->body, r->n + n + 1);
        memcpy(r->body + r->n, upload_data, n);
        r->n += n;
        r->body[r->n] = 0;
        return MHD_YES;
    }
    if (r->too_big) return web_error_page(&c, 413, "the request body is too large");
    if (r->n && memchr(r->body, 0, r->n))
        return web_error_page(&c, 400, "the request body holds a NUL byte");
    c.body = r->body ? r->body : "";
    c.db = pool_get(&srv->pool);
    enum MHD_Result ret = web_route(&c, method, url);
    pool_put(&srv->pool, c.db);
    store_session_free(&c.ss);
    return ret;
}

static void web_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                          enum MHD_RequestTerminationCode toe) {
    Req *r = *con_cls;
    if (!r) return;
    free(r->body);
    free(r);
    *con_cls = NULL;
}

// ---------------------------------------------------------------------------------------------
// rlhf serve

// A listening socket on "HOST:PORT" ("[v6]:PORT" for IPv6; port 0: any free one). *loopback = 1
// when HOST is a loopback address; addr_text receives "HOST:PORT" with the port bound.
static int web_listen(const char *spec, int *fd, int *loopback, char *addr_text, size_t n,
                      char *err, size_t errlen) {
    char host[256];
    const char *colon = strrchr(spec, ':');
    if (!colon || colon == spec || !colon[1] || (size_t)(colon - spec) >= sizeof host)
        return util_err(err, errlen, "--listen '%s': expected HOST:PORT (127.0.0.1:8080)", spec);
    const char *h = spec;
    size_t hn = (size_t)(colon - spec);
    if (h[0] == '[' && hn >= 2 && h[hn - 1] == ']') { h++; hn -= 2; }
    memcpy(host, h, hn);
    host[hn] = 0;
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICSERV | AI_PASSIVE}, *ai;
    int g = getaddrinfo(host, colon + 1, &hints, &ai);
    if (g) return util_err(err, errlen, "--listen '%s': %s", spec, gai_strerror(g));
    *fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1, rc = -1;
    if (*fd < 0) util_err(err, errlen, "--listen '%s': socket: %s", spec, strerror(errno));
    else if (setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
             bind(*fd, ai->ai_addr, ai->ai_addrlen) || listen(*fd, 128))
        util_err(err, errlen, "--listen '%s': %s", spec, strerror(errno));
    else rc = 0;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (rc == 0 && getsockname(*fd, (struct sockaddr *)&ss, &sl) == 0) {
        char ip[INET6_ADDRSTRLEN] = "?";
        int port = 0;
        if (ss.ss_family == AF_INET) {
            const struct sockaddr_in *s4 = (const struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
            port = ntohs(s4->sin_port);
            *loopback = (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
            snprintf(addr_text, n, "%s:%d", ip, port);
        } else {
            const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
            port = ntohs(s6->sin6_port);
            *loopback = IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr);
            snprintf(addr_text, n, "[%s]:%d", ip, port);
        }
    }
    if (rc && *fd >= 0) close(*fd);
    freeaddrinfo(ai);
    return rc;
}

static const char *serve_usage =
    "usage: rlhf serve WORKSPACE [--listen 127.0.0.1:8080] [options]\n"
    "WORKSPACE: a workspace directory (its workspace.db) or the database file.\n"
    "Serves the workspace in a browser: a labeling page for the users of `rlhf users add` (each\n"
    "logs in with the token it printed) and, for admins, the dashboards (labeling progress, the\n"
    "reward model, runs, rollouts, the pipeline). Stop it with Ctrl-C.\n"
    "  --listen HOST:PORT    address to listen on (default 127.0.0.1:8080: this machine only;\n"
    "                        port 0 picks a free one). Another address serves other machines\n"
    "                        in clear text: put a TLS proxy in front.\n"
    "  --overlap N           labelers wanted per prompt (default 1; as reward label --overlap)\n"
    "  --lease SECONDS       how long a shown prompt is kept from other labelers (default 1800)\n"
    "  --split S             only prompts of split S (train, valid, test)\n"
    "  --session-hours H     how long a login lasts (default 12)\n"
    "  --threads N           worker threads, each with its own database connection (default 4)\n";

typedef struct {
    const char *path, *listen;
    int64_t threads;
    double hours;
} ServeArgs;

static int serve_parse(int argc, char **argv, ServeArgs *a, Server *srv, int *status) {
    int64_t overlap = 1;
    a->listen = "127.0.0.1:8080";
    a->threads = 4;
    a->hours = 12;
    srv->lo.co.lease_s = 1800;
    CliOption opts[] = {
        CLI_STRING("--listen", &a->listen),
        CLI_INT("--overlap", &overlap, 1, 1000),
        CLI_DOUBLE("--lease", &srv->lo.co.lease_s, 1, 1e9),
        CLI_STRING("--split", &srv->lo.co.split),
        CLI_DOUBLE("--session-hours", &a->hours, 0.001, 24 * 365),
        CLI_INT("--threads", &a->threads, 1, 64),
        {0}};
    CliCommand cmd = {.prog = "rlhf serve", .usage = serve_usage, .opts = opts,
                      .arg_name = "WORKSPACE", .arg = &a->path, .args_min = 1, .value_status = 1};
    if (cli_parse(&cmd, argc, argv, status)) return 1;
    if (srv->lo.co.split && !store_split_valid(srv->lo.co.split)) {
        fprintf(stderr, "rlhf serve: --split '%s': expected train, valid or test\n",
                srv->lo.co.split);
        *status = 1;
        return 1;
    }
    srv->lo.co.overlap = (int)overlap;
    srv->session_s = a->hours * 3600;
    srv->path = a->path;
    return 0;
}

static int serve_count_user(const StoreUser *u, void *ctx) {
    (*(int64_t *)ctx)++;
    return 0;
}

int server_cmd_serve(int argc, char **argv) {
    Server srv;
    memset(&srv, 0, sizeof srv);
    ServeArgs a = {0};
    int status, fd = -1, loopback = 0;
    if (serve_parse(argc, argv, &a, &srv, &status)) return status;
    char err[1024], addr[128];
    int64_t users = 0;
    if (pool_open(&srv.pool, a.path, (int)a.threads, err, sizeof err) ||
        store_each_user(srv.pool.stores[0], serve_count_user, &users, err, sizeof err) ||
        web_listen(a.listen, &fd, &loopback, addr, sizeof addr, err, sizeof err)) {
        fprintf(stderr, "rlhf serve: %s\n", err);
        pool_close(&srv.pool);
        return 1;
    }
    auth_limiter_init(&srv.lim);
    pthread_mutex_init(&srv.write_mu, NULL);
    pthread_mutex_init(&srv.totals.mu, NULL);
    srv.lo.totals = &srv.totals;
    struct MHD_Daemon *d = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO, 0, NULL, NULL, web_handle, &srv,
        MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)a.threads,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)WEB_MAX_CONNECTIONS,
        MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)WEB_MAX_PER_ADDRESS,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)WEB_CONN_TIMEOUT_S,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)WEB_CONN_MEMORY,
        MHD_OPTION_NOTIFY_COMPLETED, web_completed, NULL,
        MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "rlhf serve: libmicrohttpd could not start on %s\n", addr);
        close(fd);
        auth_limiter_free(&srv.lim);
        pthread_mutex_destroy(&srv.write_mu);
        pthread_mutex_destroy(&srv.totals.mu);
        pool_close(&srv.pool);
        return 1;
    }
    cli_stop_defer();
    if (loopback)
        fprintf(stderr, "rlhf serve: %s on http://%s/ (loopback only: other machines cannot "
                        "connect; --listen chooses another address)\n", a.path, addr);
    else
        fprintf(stderr, "rlhf serve: %s on http://%s/ -- NOT loopback: other machines can "
                        "connect, and logins travel in clear text unless a TLS proxy is in "
                        "front\n", a.path, addr);
    if (!users)
        fprintf(stderr, "rlhf serve: the workspace has no users yet: rlhf users add %s NAME "
                        "--role admin\n", a.path);
    while (!cli_stop_signal()) usleep(100 * 1000);
    MHD_stop_daemon(d);   // closes the listening socket too
    auth_limiter_free(&srv.lim);
    pthread_mutex_destroy(&srv.write_mu);
    pthread_mutex_destroy(&srv.totals.mu);
    pool_close(&srv.pool);
    fprintf(stderr, "rlhf serve: stopped by %s\n", cli_stop_name());
    return 0;
}
