"""rlhf serve in a real browser (run by tests/test_web_browser.sh): headless Chromium driven by
Selenium. Two labelers log in at once and get different prompts; they rank with the keyboard
(numbers, "=" for a tie) and the mouse (the tie button, a flag, a note), skip and undo; the rows in
the database are exactly what was clicked. Texts with HTML run no script (the page sets them as
text). An admin sees the dashboard. Screenshots go to BUILD/web-screenshots/."""
import os
import sqlite3
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import web_chrome  # noqa: E402
import web_lib as W  # noqa: E402

check = W.check

# Drags the card numbered arguments[0] onto the first card, as a mouse drag would.
DRAG = """
const cards = [...document.querySelectorAll('#cards .card')];
const src = cards.find((c) => c.querySelector('.key').textContent === arguments[0]);
const dt = new DataTransfer();
const ev = (type, el) => el.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true,
                                                                cancelable: true}));
ev('dragstart', src); ev('dragover', cards[0]); ev('drop', cards[0]); ev('dragend', src);
"""
SHOTS = os.path.join(os.environ.get("ROOT", "."), os.environ.get("BUILD", "build"),
                     "web-screenshots")
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


def browser(tmp, name):
    o = webdriver.ChromeOptions()
    o.binary_location = "/usr/bin/chromium"
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--window-size=1200,900", "--user-data-dir=" + os.path.join(tmp, "chrome-" + name)]:
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = web_chrome.chrome(o)
    d.set_page_load_timeout(30)
    return d


def login(d, port, name, token):
    d.get("http://127.0.0.1:%d/login" % port)
    d.find_element(By.ID, "name").send_keys(name)
    d.find_element(By.ID, "token").send_keys(token)
    d.find_element(By.ID, "login").click()
    WebDriverWait(d, 20).until(lambda d: d.find_elements(By.ID, "user"))


class Page:
    """The labeling page of one browser."""

    def __init__(self, d):
        self.d = d

    def wait_prompt(self, not_id=None):
        """Waits for a prompt (other than not_id) to be shown; returns its id and the cards'
        texts by key number (1..K)."""
        def ready(d):
            pid = d.find_element(By.ID, "label").get_attribute("data-prompt-id")
            cards = d.find_elements(By.CSS_SELECTOR, "#cards .card")
            return pid and pid != str(not_id) and cards and pid
        pid = int(WebDriverWait(self.d, 20).until(ready))
        return pid, self.texts()

    def texts(self):
        out = {}
        for c in self.d.find_elements(By.CSS_SELECTOR, "#cards .card"):
            key = int(c.find_element(By.CSS_SELECTOR, ".key").text)
            out[key] = c.find_element(By.CSS_SELECTOR, "pre").get_property("textContent")
        return out

    def keys(self, s):
        body = self.d.find_element(By.TAG_NAME, "body")
        for ch in s:
            body.send_keys(ch)

    def message(self, want):
        WebDriverWait(self.d, 20).until(
            lambda d: want in d.find_element(By.ID, "message").text)


def ranking_rows(db, labeler):
    """{prompt_id: {completion text: rank}} of the labeler's rankings, and their notes."""
    rows = W.query(db, "SELECT r.prompt_id, c.text, i.rank, r.comment FROM rankings r "
                       "JOIN labelers l ON l.id = r.labeler_id "
                       "JOIN ranking_items i ON i.ranking_id = r.id "
                       "JOIN completions c ON c.id = i.completion_id WHERE l.name = ?",
                   (labeler,))
    out, notes = {}, {}
    for pid, text, rank, note in rows:
        out.setdefault(pid, {})[text] = rank
        notes[pid] = note
    return out, notes


def main():
    with tempfile.TemporaryDirectory() as tmp:
        return run(tmp)


def run(tmp):
    rlhf = W.rlhf_path()
    shots = SHOTS
    os.makedirs(shots, exist_ok=True)
    db = os.path.join(tmp, "ws.db")
    tok = {n: W.add_user(rlhf, db, n, r)
           for n, r in [("lia", "labeler"), ("leo", "labeler"), ("ada", "admin")]}
    W.add_prompts(db, [("Say hi <b>" + XSS, ["hello " + XSS, "hi there", "good day"])] +
                  [("Question %d?" % i, ["answer %d-a" % i, "answer %d-b" % i,
                                         "answer %d-c" % i]) for i in range(1, 6)])
    srv = W.Server(rlhf, db)
    drivers = []
    try:
        lia, leo = browser(tmp, "lia"), browser(tmp, "leo")
        drivers += [lia, leo]
        login(lia, srv.port, "lia", tok["lia"])
        login(leo, srv.port, "leo", tok["leo"])
        pl, pe = Page(lia), Page(leo)
        p1, t1 = pl.wait_prompt()
        q1, u1 = pe.wait_prompt()
        check("two labelers at once get different prompts", p1 != q1, (p1, q1))
        check("HTML in the prompt and completions is shown as text",
              "<img src=x" in lia.find_element(By.ID, "prompt").text and
              any(XSS in t for t in t1.values()), t1)
        check("no script from the data ran", lia.execute_script("return window.__xss") is None)
        lia.save_screenshot(os.path.join(shots, "label.png"))
        expect_lia, expect_leo = {}, {}
        # lia: keys 2 = 1 (a tie at the top), Enter
        pl.keys("2=1")
        pl.keys("\n")
        pl.message("Saved")
        expect_lia[p1] = {t1[2]: 1, t1[1]: 1, t1[3]: 2}
        # lia: skips the next prompt
        p2, t2 = pl.wait_prompt(not_id=p1)
        pl.keys("s")
        pl.message("Skipped")
        # lia: ranks the next one 3 > 1 > 2 with a flag and a note, then undoes it
        p3, t3 = pl.wait_prompt(not_id=p2)
        pl.keys("31")
        lia.find_elements(By.CSS_SELECTOR, "#cards .card .flag-broken")[0].click()
        lia.find_element(By.ID, "note").send_keys("first try")
        lia.find_element(By.ID, "submit").click()
        pl.message("Saved")
        p4, _ = pl.wait_prompt(not_id=p3)
        pl.keys("u")
        pl.message("Undone")
        # the message shows before the page has asked for its next prompt: wait for a change
        p3b, t3b = pl.wait_prompt(not_id=p4)
        check("undo brings the prompt back", p3b == p3, (p3b, p3))
        # ... and ranks it again: 1 > 2 = 3 with the mouse (the tie button on the last card)
        pl.keys("12")
        lia.find_elements(By.CSS_SELECTOR, "#cards .card")[2].find_element(
            By.CSS_SELECTOR, ".tie").click()
        lia.find_elements(By.CSS_SELECTOR, "#cards .card")[0].find_element(
            By.CSS_SELECTOR, ".flag-unsafe").click()
        lia.find_element(By.ID, "submit").click()
        pl.message("Saved")
        expect_lia[p3] = {t3b[1]: 1, t3b[2]: 2, t3b[3]: 2}
        # leo: drags card 3 to the top (the page's drag and drop handlers, with the events a
        # drag fires), then Enter: 3 > 1 > 2
        leo.execute_script(DRAG, "3")
        order = [c.find_element(By.CSS_SELECTOR, ".key").text
                 for c in leo.find_elements(By.CSS_SELECTOR, "#cards .card")]
        check("drag and drop moves a card", order == ["3", "1", "2"], order)
        pe.keys("\n")
        pe.message("Saved")
        expect_leo[q1] = {u1[3]: 1, u1[1]: 2, u1[2]: 3}
        leo.save_screenshot(os.path.join(shots, "label-leo.png"))
        got_lia, notes_lia = ranking_rows(db, "lia")
        got_leo, _ = ranking_rows(db, "leo")
        check("lia's rankings in the database are what was typed and clicked",
              got_lia == expect_lia, (got_lia, expect_lia))
        check("leo's rankings in the database are what was typed",
              got_leo == expect_leo, (got_leo, expect_leo))
        check("the undone ranking is gone with its note",
              "first try" not in notes_lia.values(), notes_lia)
        skipped = W.query(db, "SELECT c.prompt_id FROM claims c JOIN labelers l "
                              "ON l.id = c.labeler_id WHERE l.name = 'lia' AND c.skipped = 1")
        check("the skip is recorded for lia only", skipped == [(p2,)], skipped)
        flags = W.query(db, "SELECT c.text, f.flag FROM ranking_flags f JOIN completions c "
                            "ON c.id = f.completion_id")
        check("only the flag of the kept ranking is stored",
              flags == [(t3b[1], "unsafe")], flags)
        count = lia.find_element(By.ID, "progress").text
        check("the page shows the labeler's count", "Your rankings: 2" in count, count)
        # the admin
        adm = browser(tmp, "ada")
        drivers.append(adm)
        login(adm, srv.port, "ada", tok["ada"])
        adm.get("http://127.0.0.1:%d/admin" % srv.port)
        check("the admin sees the dashboard", adm.find_elements(By.ID, "view-dashboard"),
              adm.page_source[:300])
        adm.save_screenshot(os.path.join(shots, "admin.png"))
        check_charts(adm, srv.port, db)
        for name, d in [("lia", lia), ("leo", leo), ("ada", adm)]:
            errs = [e for e in d.get_log("browser") if e["level"] == "SEVERE"]
            check("no console errors in %s's browser" % name, not errs, errs[:3])
    finally:
        for d in drivers:
            d.quit()
        rc, log = srv.stop()
    check("the server stops cleanly (no sanitizer report)", rc == 0, log[-300:])
    print("screenshots in " + shots)
    return W.summary()


def check_charts(d, port, db):
    """The admin pages' charts render: their SVG elements exist, as many as the data says."""
    con = sqlite3.connect(db)
    with con:   # two runs with a loss curve each, one of them with a KL curve too
        for rid, stage in [(1, "sft"), (2, "ppo")]:
            con.execute("INSERT INTO runs(id, stage, status, started) VALUES (?, ?, 'done', 0)",
                        (rid, stage))
            for step in range(1, 11):
                con.execute("INSERT INTO metrics VALUES (?, 'train/loss', ?, ?, 0)",
                            (rid, step, 3.0 / step + rid))
                if rid == 2:
                    con.execute("INSERT INTO metrics VALUES (2, 'ppo/kl', ?, ?, 0)",
                                (step, 0.01 * step))
    con.close()
    base = "http://127.0.0.1:%d" % port
    d.get(base + "/admin/")
    rankings = d.find_element(By.XPATH, "//table[@class='counts']//tr[th='rankings']/td").text
    check("dashboard: the rankings count", rankings == "3", rankings)
    d.find_element(By.CSS_SELECTOR, "ul.views a[href='progress']").click()
    WebDriverWait(d, 20).until(lambda d: d.current_url.endswith("/admin/progress"))
    labelers = W.query(db, "SELECT count(*) FROM labelers")[0][0]
    bars = d.find_elements(By.CSS_SELECTOR, "svg.chart-bars")
    nbar = len(bars[0].find_elements(By.CSS_SELECTOR, ".bar")) if bars else -1
    check("progress: one bar per labeler in the first chart (%d)" % labelers, nbar == labelers,
          nbar)
    d.save_screenshot(os.path.join(SHOTS, "admin-progress.png"))
    d.get(base + "/admin/runs?run=1,2")
    figs = {f.get_attribute("data-metric"): len(f.find_elements(By.CSS_SELECTOR, ".series"))
            for f in d.find_elements(By.CSS_SELECTOR, "figure.metric")}
    check("runs: one chart per metric, one series per run", figs == {"train/loss": 2, "ppo/kl": 1},
          figs)
    d.save_screenshot(os.path.join(SHOTS, "admin-runs.png"))


if __name__ == "__main__":
    sys.exit(main())
