"""rlhf serve under load, on loopback only: L labelers (threads, one HTTP connection each) log in
and each submits R rankings through the labeling API (GET /api/next, POST /api/rank) at once.
Checks that no ranking is lost or duplicated (L*R rows, every prompt ranked once, each by the
labeler who claimed it) and PRAGMA integrity_check; reports throughput, p50/p99 latency and the
server's resident memory sampled over the run (it should stay flat). Exits 1 when a check fails,
never on time.

    /usr/bin/python3 bench/bench_web.py [--labelers 32] [--rankings 200] [--build build]
"""
import argparse
import os
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import web_lib as W  # noqa: E402

K = 4   # completions per prompt


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_s(pid):
    """User + system CPU seconds of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def labeler(port, name, token, n, lat_next, lat_rank, errors, done, ready):
    c = W.Client(port)
    try:
        try:
            ok = c.login(name, token).status == 303 and c.csrf
        except Exception as e:  # reported below; the others must not wait for this one
            ok = False
            errors.append("%s: login: %r" % (name, e))
        ready.wait()   # every labeler logged in (PBKDF2 takes its time): the clock starts
        if not ok:
            errors.append(name + ": login failed")
            return
        for i in range(n):
            t0 = time.perf_counter()
            r = c.get("/api/next")
            t1 = time.perf_counter()
            nxt = r.json()
            if r.status != 200 or not nxt["prompt_id"]:
                errors.append("%s: /api/next gave %d %s" % (name, r.status, r.text[:100]))
                return
            ranks = [1 + (j + i) % K for j in range(K)]
            r = W.rank_all(c, nxt, ranks=ranks)
            t2 = time.perf_counter()
            if r.status != 200:
                errors.append("%s: /api/rank gave %d %s" % (name, r.status, r.text[:100]))
                return
            lat_next.append(t1 - t0)
            lat_rank.append(t2 - t1)
            done.append((name, nxt["prompt_id"]))
    except Exception as e:  # a failed request is a finding, reported with the others
        errors.append("%s: %r" % (name, e))
    finally:
        c.close()


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100.0 * len(xs)))] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--labelers", type=int, default=32)
    ap.add_argument("--rankings", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4, help="rlhf serve --threads")
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    ap.add_argument("--dir", default=None, help="where the workspace goes (default: a temporary "
                    "folder in TMPDIR); /dev/shm takes the disk out of the figures")
    a = ap.parse_args()
    if not (1 <= a.labelers <= 256 and 1 <= a.rankings <= 10000):
        ap.error("--labelers 1..256, --rankings 1..10000 (the bench is bounded)")
    os.environ["BUILD"] = a.build
    rlhf = W.rlhf_path()
    with tempfile.TemporaryDirectory(dir=a.dir) as tmp:
        return run(a, rlhf, os.path.join(tmp, "ws.db"))


def run(a, rlhf, db):
    L, R = a.labelers, a.rankings
    tokens = {"lab%02d" % i: W.add_user(rlhf, db, "lab%02d" % i, "labeler") for i in range(L)}
    W.add_prompts(db, [("prompt %d: what is %d + %d?" % (i, i, 2 * i),
                        ["answer %d.%d" % (i, j) for j in range(K)]) for i in range(L * R)])
    srv = W.Server(rlhf, db, "--threads", str(a.threads))
    lat_next, lat_rank, errors, done, rss = [], [], [], [], []
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            rss.append(rss_kib(srv.proc.pid))
            time.sleep(0.2)
    sampler = threading.Thread(target=sample)
    sampler.start()
    ready = threading.Barrier(L + 1, timeout=600)
    threads = [threading.Thread(target=labeler, args=(srv.port, n, t, R, lat_next, lat_rank,
                                                      errors, done, ready))
               for n, t in tokens.items()]
    for t in threads:
        t.start()
    ready.wait()
    t0, cpu0 = time.perf_counter(), cpu_s(srv.proc.pid)
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, cpu_s(srv.proc.pid) - cpu0
    stop.set()
    sampler.join()
    srv.stop()
    rows = W.query(db, "SELECT count(*), count(DISTINCT prompt_id) FROM rankings")[0]
    items = W.query(db, "SELECT count(*) FROM ranking_items")[0][0]
    mismatched = W.query(db, "SELECT count(*) FROM rankings r JOIN labelers l "
                             "ON l.id = r.labeler_id")[0][0]
    by_client = {}
    for name, pid in done:
        by_client[pid] = by_client.get(pid, 0) + 1
    owners = dict(((p, n) for n, p in done))
    wrong_owner = sum(1 for p, n in W.query(db, "SELECT r.prompt_id, l.name FROM rankings r "
                                                 "JOIN labelers l ON l.id = r.labeler_id")
                      if owners.get(p) != n)
    ic = W.query(db, "PRAGMA integrity_check")[0][0]
    want = L * R
    fails = list(errors[:5])
    if rows[0] != want:
        fails.append("rankings: %d, want %d (lost or duplicated)" % (rows[0], want))
    if rows[1] != want or any(v != 1 for v in by_client.values()):
        fails.append("a prompt ranked twice: %d distinct prompts for %d rankings"
                     % (rows[1], rows[0]))
    if items != want * K or mismatched != want:
        fails.append("ranking items: %d, want %d" % (items, want * K))
    if wrong_owner:
        fails.append("%d rankings stored under another labeler than the one who sent them"
                     % wrong_owner)
    if ic != "ok":
        fails.append("integrity_check: " + ic)
    q = max(1, len(rss) // 4)
    early, late = rss[:q], rss[-q:]
    print("bench_web: %d labelers x %d rankings through HTTP on loopback (rlhf serve --threads "
          "%d, %d CPUs, load average %.1f, workspace in %s)"
          % (L, R, a.threads, os.cpu_count(), os.getloadavg()[0], os.path.dirname(db)))
    print("  rankings stored: %d of %d, distinct prompts %d, integrity_check %s"
          % (rows[0], want, rows[1], ic))
    print("  throughput: %.0f rankings/s (%.0f requests/s), wall %.1f s, server CPU %.1f s"
          % (want / wall, 2 * want / wall, wall, cpu))
    print("  latency GET /api/next: p50 %.1f ms, p99 %.1f ms; POST /api/rank: p50 %.1f ms, "
          "p99 %.1f ms" % (1e3 * pct(lat_next, 50), 1e3 * pct(lat_next, 99),
                           1e3 * pct(lat_rank, 50), 1e3 * pct(lat_rank, 99)))
    if rss:
        print("  server RSS: %d samples, first quarter mean %.1f MiB, last quarter mean %.1f MiB, "
              "max %.1f MiB" % (len(rss), sum(early) / len(early) / 1024,
                                sum(late) / len(late) / 1024, max(rss) / 1024))
    for f in fails:
        print("FAIL " + f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
