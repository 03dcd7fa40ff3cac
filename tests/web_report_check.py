#!/usr/bin/python3
"""Checks of `rlhf report` and `rlhf metrics export` against the workspace database, with tools
independent of the C code: Python's sqlite3 for the expected values, headless Chromium (Debian's
chromium + chromium-driver, through python3-selenium) for the report, and a TensorBoard event-file
reader written here (its own CRC-32C and protocol-buffer decoding).

  web_report_check.py report REPORT.html DB RUNS SHOTDIR   RUNS: the charted run ids, "3,4,5"
  web_report_check.py tensorboard DIR DB [RUN_ID...]        every run with metrics when none given
  web_report_check.py csv|jsonl FILE DB [RUN_ID...]

Prints one line per failed check and exits 1 when any failed."""
import csv
import glob
import json
import math
import os
import sqlite3
import struct
import sys

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL " + what)


# ---------------------------------------------------------------------------------------------
# TensorBoard event files
# ---------------------------------------------------------------------------------------------

def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked(crc):
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return value, i


def fields(buf):
    """The (field number, wire type, value) of a protocol buffer message, in order."""
    i, out = 0, []
    while i < len(buf):
        key, i = varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(buf, i)
        elif wt == 1:
            v, i = buf[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wt == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    check(i == len(buf), "protobuf message ends inside a field")
    return out


def records(path):
    data = open(path, "rb").read()
    i = 0
    while i < len(data):
        head = data[i:i + 8]
        (n,) = struct.unpack("<Q", head)
        (hc,) = struct.unpack("<I", data[i + 8:i + 12])
        check(hc == masked(crc32c(head)), "%s: length CRC of the record at %d" % (path, i))
        body = data[i + 12:i + 12 + n]
        (dc,) = struct.unpack("<I", data[i + 12 + n:i + 16 + n])
        check(len(body) == n and dc == masked(crc32c(body)),
              "%s: data CRC of the record at %d" % (path, i))
        yield body
        i += 16 + n


def decode_event(body):
    ev = {"values": []}
    for num, wt, v in fields(body):
        if num == 1 and wt == 1:
            ev["wall_time"] = struct.unpack("<d", v)[0]
        elif num == 2 and wt == 0:
            ev["step"] = v - (1 << 64) if v >= 1 << 63 else v
        elif num == 3 and wt == 2:
            ev["file_version"] = v.decode()
        elif num == 5 and wt == 2:
            for snum, _, sv in fields(v):
                if snum != 1:
                    continue
                tag = val = None
                for vnum, vwt, vv in fields(sv):
                    if vnum == 1:
                        tag = vv.decode()
                    elif vnum == 2 and vwt == 5:
                        val = struct.unpack("<f", vv)[0]
                ev["values"].append((tag, val))
    return ev


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def same_f32(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def metric_rows(db, run_ids):
    sql = ("SELECT m.run_id, r.stage, r.name, m.name, m.step, m.value, m.time FROM metrics m"
           " JOIN runs r ON r.id = m.run_id ORDER BY m.run_id, m.name, m.step")
    rows = db.execute(sql).fetchall()
    return [r for r in rows if not run_ids or r[0] in run_ids]


def check_tensorboard(out, db, run_ids):
    check(crc32c(b"123456789") == 0xE3069283, "the reader's own CRC-32C")
    want = metric_rows(db, run_ids)
    runs = sorted({r[0] for r in want})
    dirs = sorted(os.listdir(out))
    check(dirs == sorted("%d-%s" % (r, db.execute("SELECT stage FROM runs WHERE id = ?",
                                                  (r,)).fetchone()[0]) for r in runs),
          "one directory per run with metrics: %s" % dirs)
    got = []
    for d in dirs:
        files = glob.glob(os.path.join(out, d, "*tfevents*"))
        check(len(files) == 1, "%s: one events file" % d)
        run = int(d.split("-")[0])
        events = [decode_event(b) for b in records(files[0])]
        check(events and events[0].get("file_version") == "brain.Event:2",
              "%s: the first event is file_version brain.Event:2" % d)
        for ev in events[1:]:
            check(len(ev["values"]) == 1, "%s: one value per event" % d)
            for tag, val in ev["values"]:
                got.append((run, tag, ev["step"], val, ev["wall_time"]))
    check(len(got) == len(want), "%d scalars read back, %d rows in the database" % (len(got),
                                                                                   len(want)))
    for g, w in zip(got, want):
        value = float("nan") if w[5] is None else f32(w[5])
        ok = g[0] == w[0] and g[1] == w[3] and g[2] == w[4] and same_f32(g[3], value) \
            and g[4] == w[6]
        check(ok, "scalar %r against row %r" % (g, w))
    print("tensorboard: %d scalars in %d runs checked" % (len(got), len(dirs)))


def check_text(fmt, path, db, run_ids):
    want = metric_rows(db, run_ids)
    got = []
    if fmt == "csv":
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        check(rows and rows[0] == ["run_id", "stage", "run_name", "name", "step", "value",
                                   "time"], "csv header: %s" % (rows[:1],))
        for r in rows[1:]:
            got.append((int(r[0]), r[1], r[2], r[3], int(r[4]), None if r[5] == "" else
                        float(r[5]), float(r[6])))
    else:
        for line in open(path):
            o = json.loads(line)
            got.append((o["run_id"], o["stage"], o["run_name"], o["name"], o["step"], o["value"],
                        o["time"]))
    check(len(got) == len(want), "%s: %d rows, %d in the database" % (fmt, len(got), len(want)))
    for g, w in zip(got, want):
        ok = g[:6] == w[:6] and abs(g[6] - w[6]) <= 1e-6
        check(ok, "%s row %r against %r" % (fmt, g, w))
    print("%s: %d rows checked" % (fmt, len(got)))


# ---------------------------------------------------------------------------------------------
# The report in a browser
# ---------------------------------------------------------------------------------------------

def bins_with_data(values, bins, lo=None, hi=None):
    if not values:
        return 0
    lo = min(values) if lo is None else lo
    hi = max(values) if hi is None else hi
    if hi <= lo:
        hi = lo + 1
    w = (hi - lo) / bins
    used = set()
    for x in values:
        b = int((x - lo) / w)
        used.add(min(max(b, 0), bins - 1))
    return len(used)


def expected_reward(db):
    model = db.execute("SELECT model FROM reward_scores GROUP BY model"
                       " ORDER BY count(*) DESC, max(created) DESC").fetchone()[0]
    scores = [r[0] for r in db.execute("SELECT score FROM reward_scores WHERE model = ?",
                                       (model,))]
    lo, hi = min(scores), max(scores)
    by_source, by_rank = {}, {}
    for src, s in db.execute("SELECT p.source, s.score FROM reward_scores s JOIN completions c"
                             " ON c.id = s.completion_id JOIN prompts p ON p.id = c.prompt_id"
                             " WHERE s.model = ?", (model,)):
        by_source.setdefault(src, []).append(s)
    for rank, s in db.execute("SELECT i.rank, s.score FROM ranking_items i JOIN reward_scores s"
                              " ON s.completion_id = i.completion_id AND s.model = ?", (model,)):
        by_rank.setdefault(rank, []).append(s)
    rlo = min(min(v) for v in by_rank.values())
    rhi = max(max(v) for v in by_rank.values())
    # pairs of fully scored rankings, the model's calibration buckets and its mistakes
    pairs = db.execute(
        "SELECT sw.score - sx.score FROM rankings r JOIN ranking_items w ON w.ranking_id = r.id"
        " JOIN ranking_items x ON x.ranking_id = r.id AND w.rank < x.rank"
        " JOIN reward_scores sw ON sw.model = ?1 AND sw.completion_id = w.completion_id"
        " JOIN reward_scores sx ON sx.model = ?1 AND sx.completion_id = x.completion_id"
        " WHERE NOT EXISTS (SELECT 1 FROM ranking_items i WHERE i.ranking_id = r.id AND NOT"
        " EXISTS (SELECT 1 FROM reward_scores s WHERE s.model = ?1"
        " AND s.completion_id = i.completion_id))", (model,)).fetchall()
    buckets = set()
    for (d,) in pairs:
        p = 1 / (1 + math.exp(-abs(d)))
        buckets.add(min(int((p - 0.5) * 2 * 5), 4))
    return {
        "all": bins_with_data(scores, 20),
        "source": sorted(bins_with_data(v, 20, lo, hi) for v in by_source.values()),
        "rank": sorted(bins_with_data(v, 20, rlo, rhi) for v in by_rank.values()),
        "points": len(buckets),
        "mistakes": min(5, sum(1 for (d,) in pairs if d < 0)),
    }


def check_report(path, db, run_ids, shots):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import web_chrome
    from selenium.webdriver.common.by import By

    opts = Options()
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600",
              "--disable-dev-shm-usage"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = web_chrome.chrome(opts)
    try:
        drv.get("file://" + os.path.abspath(path))
        q = drv.find_elements
        logs = [e for e in drv.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
        check(not logs, "console messages: %s" % logs)
        check(len(q(By.TAG_NAME, "script")) == 0, "the report has no script element")
        # what `rlhf serve` shows of the same views passes a CSP of default-src 'self': no
        # style attribute and no event handler on any element (the report's one <style> aside)
        inline = drv.execute_script(
            "return Array.from(document.querySelectorAll('*')).filter(e => e.hasAttribute("
            "'style') || Array.from(e.attributes).some(a => a.name.startsWith('on'))).length")
        check(inline == 0, "%d elements with a style attribute or an event handler" % inline)
        text = drv.execute_script("return document.body.textContent")
        for (p,) in db.execute("SELECT text FROM prompts WHERE text LIKE '%<%'"):
            check(p in text, "the prompt %r is shown as text" % p)
        for sec in ("dashboard", "progress", "reward", "runs", "rollouts", "pipeline"):
            check(len(q(By.ID, "view-" + sec)) == 1, "section %s" % sec)

        def count(css, root=None):
            return len((root or drv).find_elements(By.CSS_SELECTOR, css))

        # labeling: one bar per labeler, one agreement row per pair of labelers who overlap
        labelers = db.execute("SELECT count(*) FROM labelers").fetchone()[0]
        prog = drv.find_element(By.ID, "view-progress")
        check(count("svg.chart-bars", prog) >= 1, "progress: a bar chart")
        check(count("svg.chart-bars .bar", prog) >= labelers, "progress: bars per labeler")
        first = prog.find_elements(By.CSS_SELECTOR, "svg.chart-bars")[0]
        check(count(".bar", first) == labelers, "progress: %d labeler bars, want %d"
              % (count(".bar", first), labelers))
        check(count("tr.labeler", prog) == labelers, "progress: one row per labeler")
        pairs = db.execute(
            "SELECT count(*) FROM (SELECT DISTINCT min(a.labeler_id, b.labeler_id),"
            " max(a.labeler_id, b.labeler_id) FROM rankings a JOIN rankings b"
            " ON a.prompt_id = b.prompt_id AND a.labeler_id < b.labeler_id)").fetchone()[0]
        check(count("tr.agreement-pair", prog) == pairs, "progress: %d agreement rows, want %d"
              % (count("tr.agreement-pair", prog), pairs))

        # reward: histograms (bars = bins holding data), calibration points, mistakes
        want = expected_reward(db)
        rew = drv.find_element(By.ID, "view-reward")
        hists = rew.find_elements(By.CSS_SELECTOR, "svg.chart-histogram")
        check(hists and count(".bar", hists[0]) == want["all"],
              "reward: %s bars in the histogram of all scores, want %d"
              % (hists and count(".bar", hists[0]), want["all"]))

        def group(by):
            div = rew.find_element(By.CSS_SELECTOR, "div.small-multiples[data-by='%s']" % by)
            return sorted(count(".bar", h) for h in div.find_elements(By.CSS_SELECTOR, "svg"))
        check(group("source") == want["source"], "reward: bars by source %s, want %s"
              % (group("source"), want["source"]))
        check(group("rank") == want["rank"], "reward: bars by rank %s, want %s"
              % (group("rank"), want["rank"]))
        check(count("svg.chart-calibration .diagonal", rew) == 1, "reward: the diagonal")
        check(count("svg.chart-calibration .point", rew) == want["points"],
              "reward: %d calibration points, want %d"
              % (count("svg.chart-calibration .point", rew), want["points"]))
        check(count("tr.mistake", rew) == want["mistakes"], "reward: %d mistakes, want %d"
              % (count("tr.mistake", rew), want["mistakes"]))

        # runs: one chart per metric, one series per asked run with a value of it
        runs = drv.find_element(By.ID, "view-runs")
        check(count("tr.run.selected", runs) == len(run_ids), "runs: %d selected, want %d"
              % (count("tr.run.selected", runs), len(run_ids)))
        names = [r[0] for r in db.execute(
            "SELECT DISTINCT name FROM metrics WHERE run_id IN (%s) ORDER BY name"
            % ",".join(str(r) for r in run_ids))]
        figs = runs.find_elements(By.CSS_SELECTOR, "figure.metric")
        check([f.get_attribute("data-metric") for f in figs] == names,
              "runs: charts %s, want %s" % ([f.get_attribute("data-metric") for f in figs], names))
        for f in figs:
            name = f.get_attribute("data-metric")
            series = db.execute(
                "SELECT count(DISTINCT run_id) FROM metrics WHERE name = ? AND value IS NOT NULL"
                " AND run_id IN (%s)" % ",".join(str(r) for r in run_ids), (name,)).fetchone()[0]
            logged = db.execute(
                "SELECT count(DISTINCT run_id) FROM metrics WHERE name = ? AND run_id IN (%s)"
                % ",".join(str(r) for r in run_ids), (name,)).fetchone()[0]
            check(count(".series", f) == series, "runs: %s has %d series, want %d"
                  % (name, count(".series", f), series))
            check(count(".legend-item", f) == logged, "runs: %s legend" % name)

        # rollouts: the first page, highest score first; pipeline: its stages
        total = db.execute("SELECT count(*) FROM rollouts").fetchone()[0]
        roll = drv.find_element(By.ID, "view-rollouts")
        check(count("tr.rollout", roll) == min(total, 25), "rollouts: first page rows")
        top = db.execute("SELECT id FROM rollouts ORDER BY score IS NULL, score DESC, id"
                         " LIMIT 1").fetchone()
        if top:
            first_id = roll.find_element(By.CSS_SELECTOR, "tr.rollout td").text
            check(first_id == str(top[0]), "rollouts: highest score first (%s, want %s)"
                  % (first_id, top[0]))
        pipe = drv.find_element(By.ID, "view-pipeline")
        stages = db.execute("SELECT count(*) FROM runs WHERE parent_id IN"
                            " (SELECT id FROM runs WHERE stage = 'pipeline'"
                            "  ORDER BY id DESC LIMIT 20)").fetchone()[0]
        check(count("tr.stage", pipe) == stages, "pipeline: %d stage rows, want %d"
              % (count("tr.stage", pipe), stages))
        os.makedirs(shots, exist_ok=True)
        for sec in q(By.CSS_SELECTOR, "section.view"):
            sec.screenshot(os.path.join(shots, sec.get_attribute("id") + ".png"))
        print("report: %d charts checked" % len(q(By.CSS_SELECTOR, "svg.chart")))
    finally:
        drv.quit()


def main():
    if len(sys.argv) < 4:
        print(__doc__)
        return 2
    mode, path, dbpath = sys.argv[1:4]
    db = sqlite3.connect("file:%s?mode=ro" % dbpath, uri=True)
    if mode == "report":
        check_report(path, db, [int(x) for x in sys.argv[4].split(",")], sys.argv[5])
    elif mode == "tensorboard":
        check_tensorboard(path, db, [int(x) for x in sys.argv[4:]])
    elif mode in ("csv", "jsonl"):
        check_text(mode, path, db, [int(x) for x in sys.argv[4:]])
    else:
        print(__doc__)
        return 2
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
