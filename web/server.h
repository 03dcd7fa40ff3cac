// server: `rlhf serve WORKSPACE`, the workspace in a browser. An HTTP server on libmicrohttpd
// (a thread pool, connection limits, timeouts and a per-connection memory limit built in) that
// serves the labeling page and its JSON API (web/label) to labelers logged in with their tokens
// (web/auth), and the admin pages (web/views) to admins. Pages, script and style sheet are in the
// binary (web/static, web/assets.h): nothing is fetched from elsewhere.
//
// Security model: binds to loopback unless --listen says otherwise (and says so on startup);
// sessions are HttpOnly SameSite=Strict cookies; every state-changing request (the POSTs, and
// GET /api/next, which claims a prompt) carries the session's CSRF token (login: a pre-session
// token in a cookie and the form); failed logins are rate-limited per address; request bodies,
// headers and their count are bounded; responses carry a Content-Security-Policy of
// default-src 'self' (no inline script) and every text from the database is escaped (pages) or
// JSON-encoded and shown as text (script).
#ifndef SERVER_H
#define SERVER_H

#define WEB_MAX_BODY        (64 * 1024)   // bytes of a request body (413 beyond)
#define WEB_MAX_HEADERS     64            // header lines of a request (431 beyond)
#define WEB_CONN_MEMORY     (32 * 1024)   // per-connection buffer: the request line and headers
#define WEB_CONN_TIMEOUT_S  15            // an idle or stalled connection is closed after this
#define WEB_MAX_CONNECTIONS 512
#define WEB_MAX_PER_ADDRESS 128           // connections from one address at once

int server_cmd_serve(int argc, char **argv);   // rlhf serve
#endif
