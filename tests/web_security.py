"""The HTTP security matrix of `rlhf serve` (run by tests/test_web_security.sh): every attack
gets the right status and leaves the database as it was (a dump before and after), and texts with
SQL metacharacters and HTML are stored byte for byte and come back as data, never as markup."""
import os
import re
import secrets
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_lib as W  # noqa: E402

check = W.check


def unchanged(name, db, fn, want):
    """Runs fn() (a request) and checks its status is in want and the database is unchanged."""
    before = W.dump(db)
    r = fn()
    after = W.dump(db)
    status = r.status if hasattr(r, "status") else r
    check("%s: %s" % (name, "/".join(map(str, want))), status in want,
          "got %s: %s" % (status, getattr(r, "text", "")[:200]))
    check(name + ": database unchanged", before == after)
    return r


EVIL_PROMPT = "Robert'); DROP TABLE rankings;-- <script>alert('p')</script> \"q\" & é"
EVIL_COMP = ["<img src=x onerror=alert(1)>", "'; DELETE FROM users; --",
             "</pre><b>bold</b>\t\u00a0"]
EVIL_NOTE = "note'); DROP TABLE claims;-- <script>alert(2)</script>"


def raw(port, data, read=True, timeout=10):
    """Sends raw bytes on a fresh connection; returns the status line's code (0: closed)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(data)
        if not read:
            return s
        got = b""
        while b"\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        parts = got.split(b" ")
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
    except (ConnectionResetError, BrokenPipeError):
        return 0
    finally:
        if read:
            s.close()


def main():
    with tempfile.TemporaryDirectory() as tmp:
        return matrix(W.rlhf_path(), os.path.join(tmp, "ws.db"))


def matrix(rlhf, db):
    tok = {n: W.add_user(rlhf, db, n, r)
           for n, r in [("ann", "labeler"), ("ben", "labeler"), ("ada", "admin"),
                        ("<b>eve</b>", "labeler")]}
    W.add_prompts(db, [(EVIL_PROMPT, EVIL_COMP)] +
                  [("prompt %d" % i, ["a%d" % i, "b%d" % i, "c%d" % i]) for i in range(4)])
    srv = W.Server(rlhf, db)
    port = srv.port
    check("startup says it binds to loopback only", "loopback only" in srv.banner, srv.banner)
    try:
        run(db, port, tok)
    finally:
        rc, log = srv.stop()
    check("stops cleanly on SIGINT", rc == 0, log[-300:])
    # the login rate limit, on a server of its own (every client here is 127.0.0.1)
    srv = W.Server(rlhf, db)
    try:
        c = W.Client(srv.port)
        codes = [c.login("ann", "0" * 64).status for _ in range(5)]
        check("wrong login token: 401 each time", codes == [401] * 5, str(codes))
        r = unchanged("6th login within the minute, even with the right token", db,
                      lambda: c.login("ann", tok["ann"]), [429])
        check("429 says when to retry", (r.header("Retry-After") or "0").isdigit())
    finally:
        srv.stop()
    ic = W.query(db, "PRAGMA integrity_check")[0][0]
    check("integrity_check ok", ic == "ok", ic)
    overlap(rlhf, db + "-overlap")
    return W.summary()


def overlap(rlhf, db):
    """--overlap 2: two labelers get the same prompt, a third does not; both rankings count."""
    tok = {n: W.add_user(rlhf, db, n, "labeler") for n in ("o1", "o2", "o3")}
    W.add_prompts(db, [("only prompt", ["x", "y"])])
    srv = W.Server(rlhf, db, "--overlap", "2")
    try:
        c = {n: W.Client(srv.port) for n in tok}
        for n, t in tok.items():
            c[n].login(n, t)
        got = {n: c[n].get("/api/next").json()["prompt_id"] for n in tok}
        check("--overlap 2: two labelers share the prompt, the third gets none",
              got == {"o1": 1, "o2": 1, "o3": 0}, got)
        n1 = c["o1"].get("/api/next").json()
        n2 = c["o2"].get("/api/next").json()
        ok = W.rank_all(c["o1"], n1).status == 200 and W.rank_all(c["o2"], n2).status == 200
        check("--overlap 2: both rank it", ok and W.query(
            db, "SELECT count(DISTINCT labeler_id) FROM rankings WHERE prompt_id = 1") == [(2,)])
    finally:
        srv.stop()


def run(db, port, tok):
    anon = W.Client(port)
    # 1. no cookie
    unchanged("no cookie: GET /api/next", db, lambda: anon.get("/api/next"), [401])
    unchanged("no cookie: POST /api/rank", db,
              lambda: anon.post_json("/api/rank", {"prompt_id": 1, "items": []}), [401])
    r = unchanged("no cookie: GET / redirects to the login", db, lambda: anon.get("/"), [303])
    check("  ... to /login", r.header("Location") == "/login")
    unchanged("no cookie: GET /admin", db, lambda: anon.get("/admin"), [303])
    # 2. wrong and expired sessions, wrong tokens
    for name, cookie in [("random", secrets.token_hex(32)), ("malformed", "../../x'--"),
                         ("empty", "")]:
        bad = W.Client(port)
        bad.cookies = {"rlhf_session": cookie}
        unchanged("%s session cookie: GET /api/next" % name, db, lambda: bad.get("/api/next"),
                  [401])
    bad = W.Client(port)
    unchanged("wrong login token", db, lambda: bad.login("ann", secrets.token_hex(32)), [401])
    unchanged("unknown user", db, lambda: bad.login("nobody", tok["ann"]), [401])
    unchanged("another user's token", db, lambda: bad.login("ann", tok["ben"]), [401])
    ann, ben, ada, eve = (W.Client(port) for _ in range(4))
    check("ann logs in: 303 and a session cookie", ann.login("ann", tok["ann"]).status == 303)
    r = ann.get("/")
    form_cookie = W.Client(port).get("/login").header("Set-Cookie") or ""
    check("login form cookie is HttpOnly and SameSite=Strict",
          "HttpOnly" in form_cookie and "SameSite=Strict" in form_cookie, form_cookie)
    check("pages carry CSP default-src 'self'",
          (r.header("Content-Security-Policy") or "").startswith("default-src 'self'"))
    check("the page has no inline script", "<script>" not in r.text and "onload" not in r.text)
    ben.login("ben", tok["ben"])
    ada.login("ada", tok["ada"])
    # the session cookie's attributes
    c2 = W.Client(port)
    page = c2.get("/login")
    form_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
    c2.cookies.update(page.cookies())
    r = c2.request("POST", "/login", body=urllib.parse.urlencode(
        {"csrf": form_csrf, "name": "ben", "token": tok["ben"]}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    sc = r.header("Set-Cookie") or ""
    check("session cookie: HttpOnly, SameSite=Strict, Path=/",
          "HttpOnly" in sc and "SameSite=Strict" in sc and "Path=/" in sc, sc)
    # login without the form's CSRF cookie
    nocsrf = W.Client(port)
    unchanged("login POST without the form's CSRF token", db, lambda: nocsrf.request(
        "POST", "/login", body=b"name=ann&token=" + tok["ann"].encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"}), [403])
    # 3. claims: ann's prompt is not ben's
    unchanged("GET /api/next (it claims) without the CSRF token", db,
              lambda: ann.get("/api/next", csrf=False), [403])
    nxt = ann.get("/api/next").json()
    check("ann gets a prompt", nxt["prompt_id"] > 0)
    check("  completions shown without their sources",
          all(set(c) == {"id", "text"} for c in nxt["completions"]))
    nben = ben.get("/api/next").json()
    check("ben gets another prompt", nben["prompt_id"] not in (0, nxt["prompt_id"]))
    unchanged("ben submits a ranking for ann's claim", db, lambda: W.rank_all(ben, nxt), [403])
    unchanged("ben skips ann's claim", db,
              lambda: ben.post_json("/api/skip", {"prompt_id": nxt["prompt_id"]}), [403])
    unchanged("ben ranks a prompt nobody claimed", db,
              lambda: W.rank_all(ben, dict(nxt, prompt_id=5)), [403])
    # 4. a labeler on the admin pages
    for path in ["/admin", "/admin/", "/admin/progress", "/admin/reward", "/admin/runs",
                 "/admin/rollouts", "/admin/pipeline", "/admin/nope"]:
        unchanged("labeler opens " + path, db, lambda: ann.get(path), [403])
    r = ada.get("/admin")
    check("admin: /admin goes to /admin/", r.status == 303 and r.header("Location") == "/admin/")
    r = ada.get("/admin/")
    check("admin opens /admin/: 200", r.status == 200, str(r.status))
    check("admin: unknown view is 404", ada.get("/admin/nope").status == 404)
    # 5. CSRF
    unchanged("rank without a CSRF token", db,
              lambda: ann.post_json("/api/rank", {"prompt_id": nxt["prompt_id"]}, csrf=False),
              [403])
    unchanged("rank with a wrong CSRF token", db,
              lambda: ann.post_json("/api/rank", {"prompt_id": nxt["prompt_id"]},
                                    csrf=secrets.token_hex(32)), [403])
    unchanged("rank with another session's CSRF token", db,
              lambda: ann.post_json("/api/rank", {"prompt_id": nxt["prompt_id"]},
                                    csrf=ben.csrf), [403])
    unchanged("undo without a CSRF token", db,
              lambda: ann.post_json("/api/undo", {}, csrf=False), [403])
    unchanged("logout without a CSRF token", db, lambda: ann.request("POST", "/logout"), [403])
    # 6. oversized bodies and headers
    big = b'{"prompt_id": 1, "note": "' + b"x" * (200 * 1024) + b'"}'
    unchanged("200 KiB body (Content-Length)", db, lambda: ann.request(
        "POST", "/api/rank", body=big, headers={"Content-Type": "application/json",
                                                  "X-CSRF-Token": ann.csrf}), [413])
    ann.close()

    def chunked():
        head = ("POST /api/rank HTTP/1.1\r\nHost: x\r\nCookie: rlhf_session=%s\r\n"
                "X-CSRF-Token: %s\r\nTransfer-Encoding: chunked\r\n\r\n"
                % (ann.cookies["rlhf_session"], ann.csrf)).encode()
        chunk = b"x" * 32768
        body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(4)) + b"0\r\n\r\n"
        return raw(port, head + body)
    unchanged("128 KiB chunked body (no Content-Length)", db, chunked, [413])
    unchanged("one 40 KiB header", db, lambda: raw(
        port, b"GET /api/next HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40960 + b"\r\n\r\n"),
        [431])
    unchanged("a 40 KiB URL", db, lambda: raw(
        port, b"GET /api/next?" + b"a" * 40960 + b" HTTP/1.1\r\nHost: x\r\n\r\n"), [414])
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    unchanged("200 header lines", db, lambda: raw(
        port, b"GET /api/next HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"), [431])
    # 7. slow clients: a dozen connections that send a byte now and then; others are served
    slow = [raw(port, b"GET / HTTP/1.1\r\n", read=False) for _ in range(12)]
    stop = threading.Event()

    def dribble():
        while not stop.is_set():
            for s in slow:
                try:
                    s.send(b"X")
                except OSError:
                    pass
            time.sleep(0.5)
    t = threading.Thread(target=dribble)
    t.start()
    times = []
    for _ in range(10):
        t0 = time.time()
        r = ben.get("/api/next")
        times.append(time.time() - t0)
    stop.set()
    t.join()
    for s in slow:
        s.close()
    check("slow clients: others are still served (10 requests, slowest %.3f s)" % max(times),
          r.status == 200 and max(times) < 2.0)
    # 8. path traversal in static paths
    for path in ["/static/../../../../etc/passwd", "/static/%2e%2e/%2e%2e/etc/passwd",
                 "/static/..%2f..%2fweb%2fserver.c", "/static/", "/static/label.js/../server.c",
                 "/static//etc/passwd", "/../../etc/passwd"]:
        r = anon.get(path)
        check("static path %s: 404, no file" % path,
              r.status in (404, 400) and "root:" not in r.text and "#include" not in r.text,
              str(r.status))
    check("static /static/label.js: 200 as JavaScript",
          anon.get("/static/label.js").header("Content-Type").startswith("text/javascript"))
    unchanged("PUT is not allowed", db, lambda: ann.request("PUT", "/api/rank", body=b"{}"),
              [405])
    # 9. SQL metacharacters and HTML: stored byte for byte, shown escaped
    evil = None
    for c in (ann, ben):
        for _ in range(6):
            n = c.get("/api/next").json()
            if n["prompt_id"] == 0 or n["prompt"] == EVIL_PROMPT:
                evil = (c, n) if n["prompt"] == EVIL_PROMPT else evil
                break
            W.rank_all(c, n)
        if evil:
            break
    check("the prompt with SQL and HTML comes back byte for byte (JSON)", evil is not None)
    c, n = evil
    check("its completions come back byte for byte",
          sorted(x["text"] for x in n["completions"]) == sorted(EVIL_COMP))
    r = W.rank_all(c, n, note=EVIL_NOTE,
                   flags=[{"id": n["completions"][0]["id"], "flag": "unsafe"}])
    check("ranking it: 200", r.status == 200, r.text)
    rows = W.query(db, "SELECT comment FROM rankings WHERE id = ?", (r.json()["ranking_id"],))
    check("the note is stored byte for byte", rows == [(EVIL_NOTE,)], repr(rows))
    check("the prompt is stored byte for byte",
          W.query(db, "SELECT count(*) FROM prompts WHERE text = ?", (EVIL_PROMPT,)) == [(1,)])
    check("no table was dropped",
          W.query(db, "SELECT count(*) FROM sqlite_master WHERE name IN "
                      "('rankings', 'claims', 'users')") == [(3,)])
    check("the flag is stored", W.query(db, "SELECT flag FROM ranking_flags") == [("unsafe",)])
    who = "ann" if c is ann else "ben"
    again = W.Client(port)
    again.login(who, tok[who])
    unchanged("undo in a new session: rankings of earlier sessions stay", db,
              lambda: again.post_json("/api/undo", {}), [409])
    eve.login("<b>eve</b>", tok["<b>eve</b>"])
    unchanged("undo with no ranking", db, lambda: eve.post_json("/api/undo", {}), [409])
    page = eve.get("/").text
    check("a user name with HTML is shown escaped",
          "&lt;b&gt;eve&lt;/b&gt;" in page and "<b>eve</b>" not in page)
    adm = ada.get("/admin/progress").text + ada.get("/admin/").text + \
        ada.get("/admin/rollouts?q=" + "%3Cscript%3E").text
    check("admin pages show no raw markup from the data",
          "<script>alert" not in adm and "<img src=x" not in adm)
    # 10. expired session: its row says it ended a second ago
    con = sqlite3.connect(db)
    with con:
        con.execute("UPDATE sessions SET expires = strftime('%s', 'now') - 1 WHERE user_id = "
                    "(SELECT u.id FROM users u JOIN labelers l ON l.id = u.labeler_id "
                    "WHERE l.name = 'ben')")
    con.close()
    unchanged("expired session: GET /api/next", db, lambda: ben.get("/api/next"), [401])
    unchanged("expired session: POST /api/undo", db,
              lambda: ben.post_json("/api/undo", {}), [401])
    # 11. logout ends the session
    r = ann.request("POST", "/logout", body=("csrf=" + ann.csrf).encode(),
                    headers={"Content-Type": "application/x-www-form-urlencoded"})
    check("logout: 303", r.status == 303, str(r.status))
    check("after logout the cookie is refused", ann.get("/api/next").status == 401)
    removed = W.Client(port)
    removed.login("ada", tok["ada"])
    subprocess.run([W.rlhf_path(), "users", "remove", db, "ada"], check=True,
                   capture_output=True)
    check("a removed user's session is refused", removed.get("/admin").status == 303)


if __name__ == "__main__":
    sys.exit(main())
