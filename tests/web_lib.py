"""What the tests of `rlhf serve` share (tests/web_security.py, tests/web_browser.py and
bench/bench_web.py): a workspace with prompts and completions, users, a server on a free loopback
port, and an HTTP client that logs in the way a browser does (the login form's CSRF cookie, the
session cookie, the page's CSRF token). Python's standard library only."""
import http.client
import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.parse


def add_user(rlhf, db, name, role):
    """Adds a user with `rlhf users add` and returns its login token (the one line on stdout)."""
    out = subprocess.run([rlhf, "users", "add", db, name, "--role", role], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def add_prompts(db, prompts, source="web-test"):
    """Stores prompts queued for labeling with their completions: prompts is a list of
    (text, [completion texts]); the workspace's schema must exist (a user added first)."""
    con = sqlite3.connect(db)
    ids = []
    with con:
        for i, (text, comps) in enumerate(prompts):
            cur = con.execute("INSERT INTO prompts(text, split, source, created) "
                              "VALUES (?, 'train', ?, 0)", (text, source))
            pid = cur.lastrowid
            con.execute("INSERT INTO prompt_sources(prompt_id, source, to_label) VALUES (?, ?, 1)",
                        (pid, source))
            for j, c in enumerate(comps):
                con.execute("INSERT INTO completions(prompt_id, text, model, created) "
                            "VALUES (?, ?, ?, 0)", (pid, c, "model-%d" % j))
            ids.append(pid)
    con.close()
    return ids


def dump(db):
    """The database's contents as SQL text, to compare before and after a request."""
    con = sqlite3.connect(db)
    text = "\n".join(con.iterdump())
    con.close()
    return text


def query(db, sql, args=()):
    con = sqlite3.connect(db)
    rows = con.execute(sql, args).fetchall()
    con.close()
    return rows


class Server:
    """`rlhf serve DB --listen 127.0.0.1:0 ARGS...`; .port once it listens; stop() with SIGINT."""

    def __init__(self, rlhf, db, *args):
        self.proc = subprocess.Popen([rlhf, "serve", db, "--listen", "127.0.0.1:0"] + list(args),
                                     stderr=subprocess.PIPE, text=True)
        self.banner = ""
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.banner += line
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
            if m:
                self.port = int(m.group(1))
                return
        self.proc.kill()
        raise RuntimeError("rlhf serve did not start: " + self.banner)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rest = self.proc.stderr.read()
        self.proc.stderr.close()
        return self.proc.returncode, self.banner + rest


class Response:
    def __init__(self, r):
        self.status = r.status
        self.headers = r.getheaders()
        self.body = r.read()
        self.text = self.body.decode("utf-8", "replace")

    def header(self, name):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return None

    def cookies(self):
        out = {}
        for k, v in self.headers:
            if k.lower() == "set-cookie":
                name, _, rest = v.partition("=")
                out[name] = rest.split(";")[0]
        return out

    def json(self):
        return json.loads(self.text)


class Client:
    """One user's connection to the server: keeps its cookies and the page's CSRF token."""

    def __init__(self, port, timeout=30):
        self.port = port
        self.timeout = timeout
        self.cookies = {}
        self.csrf = None
        self.conn = None

    def request(self, method, path, body=None, headers=None, cookies=True):
        h = dict(headers or {})
        if cookies and self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        for attempt in range(2):   # a kept-alive connection the server closed: once again
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                       timeout=self.timeout)
            try:
                self.conn.request(method, path, body=body, headers=h)
                r = Response(self.conn.getresponse())
                break
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        if r.header("Connection") == "close":
            self.conn.close()
            self.conn = None
        return r

    def get(self, path, csrf=True, **kw):
        """A GET; the page's CSRF token as the script sends it (for /api/next, which claims)."""
        h = dict(kw.pop("headers", None) or {})
        if csrf is True and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        return self.request("GET", path, headers=h, **kw)

    def post_json(self, path, obj, csrf=True):
        h = {"Content-Type": "application/json"}
        if csrf is True and self.csrf:
            h["X-CSRF-Token"] = self.csrf
        elif isinstance(csrf, str):
            h["X-CSRF-Token"] = csrf
        return self.request("POST", path, body=json.dumps(obj).encode(), headers=h)

    def login(self, name, token):
        """The browser's login: the form (its CSRF token, also in a cookie), the POST, the
        session cookie; then the labeling page's CSRF token. Returns the POST's response."""
        page = self.get("/login")
        form_csrf = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text).group(1)
        self.cookies.update(page.cookies())
        body = urllib.parse.urlencode({"csrf": form_csrf, "name": name, "token": token})
        r = self.request("POST", "/login", body=body.encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        c = r.cookies()
        if r.status == 303 and c.get("rlhf_session"):
            self.cookies = {"rlhf_session": c["rlhf_session"]}
            main = self.get("/")
            self.csrf = re.search(r'name="csrf-token" content="([0-9a-f]+)"', main.text).group(1)
        return r

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None


def rank_all(client, nxt, ranks=None, flags=(), note=""):
    """POSTs a ranking of the prompt /api/next gave (nxt): ranks[i] for its i-th completion
    (default: in the order shown, no ties)."""
    comps = nxt["completions"]
    ranks = ranks or list(range(1, len(comps) + 1))
    items = [{"id": c["id"], "rank": r} for c, r in zip(comps, ranks)]
    return client.post_json("/api/rank", {"prompt_id": nxt["prompt_id"], "items": items,
                                          "flags": list(flags), "note": note})


TALLY = {"passed": 0, "failed": 0}


def check(name, cond, detail=""):
    """Counts a check and prints "ok   NAME" or "FAIL NAME  (detail)", as the shell tests do."""
    if cond:
        TALLY["passed"] += 1
        print("ok   " + name)
    else:
        TALLY["failed"] += 1
        print("FAIL " + name + ("  (" + str(detail) + ")" if detail else ""))


def summary():
    """The closing line "N passed, N failed"; the exit status (1 when a check failed)."""
    print("%d passed, %d failed" % (TALLY["passed"], TALLY["failed"]))
    return 1 if TALLY["failed"] else 0


def rlhf_path():
    return os.path.join(os.environ.get("ROOT", os.getcwd()), os.environ.get("BUILD", "build"),
                        "bin", "rlhf")
