#!/usr/bin/env python3
"""diagnose.py: what a labeler's rankings in a workspace can teach a reward model.

    python3 data/records/diagnose.py --workspace WS/workspace.db [--labeler judge]
        [--noise 0.1] [--seeds 1,2] [--json]

For the records family, from the completions and rankings stored in the database (read only):
- rankings by split and by prompt source (which file queued the prompt), and the number of
  distinct completions ranked (K);
- the sampled completions: share correct, with extra words, with a leaked "Human:", by task;
- the pairs of each ranking as the noiseless judge orders them: decided by correctness, decided
  by form only, or tied. A reward model can only learn what decides pairs: a family where
  correctness decides most pairs needs a reward model that can tell right from wrong;
- the judge's agreement: the stored rankings against the noiseless judge, and two noisy judges
  (--noise, with each seed of --seeds) against each other, on the same pairs.
- with --reward CKPT: the reward model's accuracy on the held-out (valid) rankings' pairs, by
  what decides each pair for the noiseless judge (correctness or form), against the stored
  (noisy) labels and against the noiseless judge; the completions are scored by
  `reward score CKPT --input` (--reward-bin), nothing is written to the database.
"Ended" is not stored with completions, so the recomputed rankings ignore the cut-off penalty.
Python 3 standard library only.
"""
import argparse
import collections
import itertools
import json
import os
import sqlite3
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recordtasks as rt  # noqa: E402


def load(db, labeler):
    q = """SELECT r.id, p.text, p.split, p.source, c.text, ri.rank
           FROM rankings r JOIN labelers l ON l.id = r.labeler_id
           JOIN prompts p ON p.id = r.prompt_id
           JOIN ranking_items ri ON ri.ranking_id = r.id
           JOIN completions c ON c.id = ri.completion_id
           WHERE l.name = ? ORDER BY r.id, c.id"""
    out = collections.OrderedDict()
    for rid, prompt, split, source, text, rank in db.execute(q, (labeler,)):
        r = out.setdefault(rid, {"prompt": prompt, "split": split, "source": source,
                                 "c": [], "rank": []})
        r["c"].append(text)
        r["rank"].append(rank)
    return list(out.values())


def pair_agree(r1, r2):
    """Agreement of two rankings of the same items on the pairs r1 orders (ties in r2 count 1/2)."""
    n = a = 0.0
    for i, j in itertools.combinations(range(len(r1)), 2):
        if r1[i] == r1[j]:
            continue
        n += 1
        s1, s2 = r1[i] < r1[j], r2[i] < r2[j]
        a += 0.5 if r2[i] == r2[j] else float(s1 == s2)
    return a, n


def reward_scores(rows, ckpt, reward_bin):
    """Scores of every completion of rows (a list per row), by `reward score --input`."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", encoding="utf-8", delete=False) as f:
        for r in rows:
            for c in r["c"]:
                f.write(json.dumps({"prompt": r["prompt"], "completion": c}) + "\n")
        path = f.name
    try:
        out = subprocess.run([reward_bin, "score", ckpt, "--input", path], stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, text=True)
    finally:
        os.unlink(path)
    if out.returncode != 0:
        sys.exit("diagnose.py: %s score %s failed (exit %d)" % (reward_bin, ckpt, out.returncode))
    scores = [json.loads(line)["score"] for line in out.stdout.splitlines() if line.strip()]
    res, k = [], 0
    for r in rows:
        res.append(scores[k:k + len(r["c"])])
        k += len(r["c"])
    return res


def rm_accuracy(rows, scores):
    """Reward-model accuracy on pairs, by what decides the pair for the noiseless judge."""
    acc = collections.Counter()
    for r, sc in zip(rows, scores):
        t = rt.parse(r["prompt"])
        if t is None:
            continue
        grades = [rt.grade(t, c) for c in r["c"]]
        for i, j in itertools.combinations(range(len(sc)), 2):
            gi, gj = grades[i], grades[j]
            kind = ("correctness" if gi["correct"] != gj["correct"] else
                    "form" if gi["score"] != gj["score"] else None)
            if r["rank"][i] != r["rank"][j]:        # the stored (noisy) label
                acc["labels/n"] += 1
                acc["labels/ok"] += (sc[i] > sc[j]) == (r["rank"][i] < r["rank"][j])
            if kind:
                acc[kind + "/n"] += 1
                acc[kind + "/ok"] += (sc[i] > sc[j]) == (gi["score"] > gj["score"])
    return {k: acc[k + "/ok"] / acc[k + "/n"]
            for k in ("labels", "correctness", "form") if acc[k + "/n"]}


def main():
    ap = argparse.ArgumentParser(description="What the rankings of a records workspace can teach.")
    ap.add_argument("--workspace", required=True)
    ap.add_argument("--labeler", default="judge")
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seeds", default="1,2")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--reward", help="a reward model: its accuracy on the valid pairs by kind")
    ap.add_argument("--reward-bin", default="build/bin/reward", help="the reward program")
    a = ap.parse_args()
    if not os.path.isfile(a.workspace):
        sys.exit("diagnose.py: %s: no such file" % a.workspace)
    db = sqlite3.connect("file:%s?mode=ro" % a.workspace, uri=True)
    rows = load(db, a.labeler)
    if not rows:
        sys.exit("diagnose.py: %s holds no rankings by labeler '%s'" % (a.workspace, a.labeler))
    s1, s2 = [int(x) for x in a.seeds.split(",")][:2]
    res = {"rankings": len(rows), "by_split": collections.Counter(r["split"] for r in rows),
           "by_source": collections.Counter(r["source"] for r in rows),
           "by_k": collections.Counter(len(r["c"]) for r in rows)}
    comp = collections.defaultdict(lambda: collections.Counter())
    pairs = collections.Counter()
    agree = collections.Counter()
    for r in rows:
        t = rt.parse(r["prompt"])
        if t is None:
            pairs["unknown prompt"] += 1
            continue
        grades = [rt.grade(t, c) for c in r["c"]]
        for g in grades:
            for key in ("all", t.kind):
                comp[key]["n"] += 1
                comp[key]["correct"] += g["correct"]
                comp[key]["extra_words"] += g["extra_words"] > 0
                comp[key]["leak"] += g["leak"]
        for i, j in itertools.combinations(range(len(grades)), 2):
            gi, gj = grades[i], grades[j]
            kind = ("correctness" if gi["correct"] != gj["correct"] else
                    "form" if gi["score"] != gj["score"] else "tie")
            pairs[kind] += 1
            pairs[kind + "/" + r["source"]] += 1
        clean = rt.rank(r["prompt"], r["c"])
        n1 = rt.rank(r["prompt"], r["c"], noise=a.noise, seed=s1)
        n2 = rt.rank(r["prompt"], r["c"], noise=a.noise, seed=s2)
        for name, x, y in (("stored_vs_noiseless", clean, r["rank"]),
                           ("noisy_seed_vs_seed", n1, n2),
                           ("noisy_vs_noiseless", clean, n1)):
            ok, n = pair_agree(x, y)
            agree[name + "/agree"] += ok
            agree[name + "/pairs"] += n
    res["completions"] = {k: {"n": v["n"], "correct": v["correct"] / v["n"],
                              "extra_words": v["extra_words"] / v["n"], "leak": v["leak"] / v["n"]}
                          for k, v in comp.items()}
    total = pairs["correctness"] + pairs["form"] + pairs["tie"]
    res["pairs"] = {"total": total,
                    **{k: v / total for k, v in pairs.items() if "/" not in k and total}}
    res["pairs_by_source"] = {k: v for k, v in pairs.items() if "/" in k}
    res["judge_agreement"] = {k: agree[k + "/agree"] / agree[k + "/pairs"] for k in
                              ("stored_vs_noiseless", "noisy_seed_vs_seed", "noisy_vs_noiseless")
                              if agree[k + "/pairs"]}
    res["judge_agreement"]["noise"] = a.noise
    if a.reward:
        valid = [r for r in rows if r["split"] == "valid"]
        scores = reward_scores(valid, a.reward, a.reward_bin)
        res["reward_model_valid_accuracy"] = rm_accuracy(valid, scores)
    if a.json:
        print(json.dumps(res, indent=1, sort_keys=True))
        return
    print("rankings %d  by split %s  by source %s  by K %s" % (
        len(rows), dict(res["by_split"]), dict(res["by_source"]),
        dict(sorted(res["by_k"].items()))))
    print("completions      n   correct  extra-words  leak")
    for k, v in sorted(res["completions"].items()):
        print("  %-10s %6d   %.3f    %.3f        %.3f"
              % (k, v["n"], v["correct"], v["extra_words"], v["leak"]))
    print("pairs %d: by correctness %.3f, by form only %.3f, tied %.3f" % (
        total, res["pairs"].get("correctness", 0), res["pairs"].get("form", 0),
        res["pairs"].get("tie", 0)))
    for k, v in sorted(res["pairs_by_source"].items()):
        print("  %-40s %d" % (k, v))
    print("judge agreement on ordered pairs: " + ", ".join(
        "%s %.3f" % (k, v) for k, v in res["judge_agreement"].items() if k != "noise")
        + " (noise %g)" % a.noise)
    if a.reward:
        print("reward model on the valid pairs: " + ", ".join(
            "%s %.3f" % (k, v) for k, v in res["reward_model_valid_accuracy"].items())
            + " (labels: the stored noisy ranks; correctness, form: pairs the noiseless judge"
            " orders so)")


if __name__ == "__main__":
    main()
