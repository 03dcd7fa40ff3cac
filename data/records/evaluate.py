#!/usr/bin/env python3
"""evaluate.py: compares policy A with policy B on records prompts, with any judge and scorer.

    python3 data/records/evaluate.py --a PPO_CKPT --b SFT_CKPT --prompts eval_prompts.jsonl
        [--reward RM_CKPT] [--reference SFT_CKPT] [--pretrain-text pretrain_valid.txt]
        [--judge CMD] [--score CMD] [--rlhf PATH] [--max-new N] [--temperature T | --greedy]
        [--samples N] [--seed S] [--judge-noise P] [--out FILE.json] [--responses FILE.jsonl]
        [--target-win-rate X] [--target-win-lo X] [--target-accuracy-drop D]
        [--target-pretrain-ratio R]

1. `rlhf eval-policy` samples both policies on the prompts with the same settings and random
   numbers and gives what it measures for any prompt: the reward-model score, the KL to the
   reference, the loss on the pretraining text, answer length and end-token rate; its
   `--responses` file holds both answers to each prompt.
2. The judge (default: this folder's judge.py, noise 0) ranks each pair twice, A first and B
   first, speaking the `reward label --judge` protocol (one JSON request per line, one ranking
   line back); a pair's outcome for A is the mean of the two orders (1 win, 1/2 tie, 0 loss), so a
   judge with a position bias cannot favour either. The win rate of A has a percentile bootstrap
   95% interval over prompts and a Wilson 95% interval (ties counted half).
3. The gold scorer (default: this folder's score.py; one JSON object {"prompt", "completion"}
   per line in, one number per line out) gives each answer's score; its mean is the accuracy,
   overall and by task (the prompts file's "task" key).
Prints a table (or --out FILE writes every figure as JSON); with any target set, exits 1 naming
each missed target. Python 3 standard library only.
"""
import argparse
import json
import math
import os
import random
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def die(msg):
    print("evaluate.py: " + msg, file=sys.stderr)
    sys.exit(1)


class LineProgram:
    """A program that answers one line on stdout for each line written to its stdin."""

    def __init__(self, cmd, what):
        self.what, self.cmd = what, cmd
        try:
            self.p = subprocess.Popen(cmd, shell=True, stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, encoding="utf-8",
                                      bufsize=1)
        except OSError as e:
            die("%s '%s': %s" % (what, cmd, e.strerror))

    def ask(self, obj):
        try:
            self.p.stdin.write(json.dumps(obj, ensure_ascii=False) + "\n")
            self.p.stdin.flush()
        except BrokenPipeError:
            die("%s '%s' exited before answering" % (self.what, self.cmd))
        line = self.p.stdout.readline()
        if not line:
            die("%s '%s' exited or closed its output before answering" % (self.what, self.cmd))
        return line.strip()

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def parse_ranking(ans, k):
    """Ranks (1 = best) from a judge answer: '2>1=3', [2,1,3], {"ranking": ...}; None for skip."""
    if ans == "skip":
        return None
    if ans.startswith("{") or ans.startswith("["):
        v = json.loads(ans)
        if isinstance(v, dict):
            v = v["ranking"]
        if isinstance(v, str):
            ans = v
        else:
            if len(v) != k:
                raise ValueError("ranking of %d items for %d completions" % (len(v), k))
            return [int(x) for x in v]
    ranks, group = [0] * k, 1
    for grp in ans.split(">"):
        for item in grp.split("="):
            ranks[int(item) - 1] = group
        group += 1
    if 0 in ranks:
        raise ValueError("ranking '%s' leaves an item out" % ans)
    return ranks


def outcome(ranks):
    """A's result from the ranks of (A, B): 1 win, 0.5 tie, 0 loss."""
    return 1.0 if ranks[0] < ranks[1] else 0.5 if ranks[0] == ranks[1] else 0.0


def bootstrap(values, n, seed):
    rng = random.Random(seed)
    m = len(values)
    means = sorted(sum(values[rng.randrange(m)] for _ in range(m)) / m for _ in range(n))
    return means[int(0.025 * n)], means[min(n - 1, int(0.975 * n))]


def wilson(p, n, z=1.959964):
    if n == 0:
        return float("nan"), float("nan")
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return c - h, c + h


def run_eval_policy(a, tmp):
    """rlhf eval-policy's figures (JSON) and its answers."""
    resp = os.path.join(tmp, "responses.jsonl")
    cmd = [a.rlhf, "eval-policy", "--a", a.a, "--b", a.b, "--prompts", a.prompts, "--json",
           "--responses", resp, "--max-new", str(a.max_new), "--temperature", str(a.temperature),
           "--samples", str(a.samples), "--seed", str(a.seed)]
    for opt, v in (("--reward", a.reward), ("--reference", a.reference),
                   ("--pretrain-text", a.pretrain_text)):
        if v:
            cmd += [opt, v]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
    if r.returncode != 0:
        die("%s exited with status %d" % (" ".join(shlex.quote(c) for c in cmd), r.returncode))
    figures = json.loads(r.stdout)
    with open(resp, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return figures, rows


def load_tasks(path):
    tasks = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                o = json.loads(line)
                tasks[o["prompt"]] = o.get("task", "-")
            except (ValueError, KeyError, TypeError) as e:
                die("%s:%d: %s" % (path, n, e))
    return tasks


def judge_pairs(rows, cmd):
    judge = LineProgram(cmd, "judge")
    out, skipped = [], 0
    for i, r in enumerate(rows):
        res = []
        for order, comps in enumerate(([r["a"], r["b"]], [r["b"], r["a"]])):
            ans = judge.ask({"prompt_id": i + 1, "prompt": r["prompt"], "completions": comps})
            try:
                ranks = parse_ranking(ans, 2)
            except (ValueError, KeyError, TypeError, IndexError) as e:
                die("judge '%s': answer '%s' to prompt %d: %s" % (cmd, ans, i + 1, e))
            if ranks is None:
                break
            res.append(ranks if order == 0 else ranks[::-1])
        if len(res) < 2:
            skipped += 1
            out.append(None)
        else:
            out.append((outcome(res[0]) + outcome(res[1])) / 2)
    judge.close()
    return out, skipped


def gold_scores(rows, cmd, key):
    scorer = LineProgram(cmd, "scorer")
    out = []
    for r in rows:
        ans = scorer.ask({"prompt": r["prompt"], "completion": r[key]})
        try:
            out.append(float(ans))
        except ValueError:
            die("scorer '%s': '%s' is not a number" % (cmd, ans))
    scorer.close()
    return out


def mean(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(
        description="PPO against SFT on records prompts: judge, gold score, KL.")
    ap.add_argument("--a", required=True, help="policy A (e.g. the PPO policy)")
    ap.add_argument("--b", required=True, help="policy B (e.g. the SFT policy)")
    ap.add_argument("--prompts", required=True, help="JSONL with prompt (and task) keys")
    ap.add_argument("--reward", help="reward model: mean score of each policy's answers")
    ap.add_argument("--reference", help="reference policy for the KL (usually B)")
    ap.add_argument("--pretrain-text", help="held-out pretraining text: each policy's loss")
    ap.add_argument("--judge", default="python3 %s" % shlex.quote(os.path.join(HERE, "judge.py")),
                    help="judge command (reward label's protocol); default this folder's judge.py")
    ap.add_argument("--judge-noise", type=float, default=0.0, help="--noise for the default judge")
    ap.add_argument("--score", default="python3 %s" % shlex.quote(os.path.join(HERE, "score.py")),
                    help="gold scorer command; default this folder's score.py")
    ap.add_argument("--rlhf", default="build/bin/rlhf", help="the rlhf program")
    ap.add_argument("--max-new", type=int, default=24)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--greedy", action="store_true", help="temperature 0")
    ap.add_argument("--samples", type=int, default=1, help="answers per prompt and policy")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--out", help="write every figure here as one JSON object")
    ap.add_argument("--responses", help="write both answers, outcome and scores here (JSONL)")
    ap.add_argument("--target-win-rate", type=float)
    ap.add_argument("--target-win-lo", type=float)
    ap.add_argument("--target-accuracy-drop", type=float)
    ap.add_argument("--target-pretrain-ratio", type=float,
                    help="A's pretraining loss / B's at most R")
    a = ap.parse_args()
    if a.greedy:
        a.temperature = 0.0
    if a.judge_noise and "--noise" not in a.judge:
        a.judge += " --noise %g --seed %d" % (a.judge_noise, a.seed)
    tasks = load_tasks(a.prompts)
    with tempfile.TemporaryDirectory() as tmp:
        figures, rows = run_eval_policy(a, tmp)
    wins, skipped = judge_pairs(rows, a.judge)
    sa, sb = gold_scores(rows, a.score, "a"), gold_scores(rows, a.score, "b")
    decided = [w for w in wins if w is not None]
    if not decided:
        die("the judge skipped every prompt: are these prompts of its task family?")
    win = mean(decided)
    lo, hi = bootstrap(decided, a.bootstrap, a.seed)
    wlo, whi = wilson(win, len(decided))
    ties = sum(1 for w in decided if w == 0.5)
    res = {"prompts": len(rows), "judged": len(decided), "judge_skipped": skipped,
           "win_rate": win, "win_ci_bootstrap": [lo, hi], "win_ci_wilson": [wlo, whi],
           "a_wins": sum(1 for w in decided if w == 1.0),
           "b_wins": sum(1 for w in decided if w == 0.0),
           "ties": ties, "split_decisions": sum(1 for w in decided if w in (0.25, 0.75)),
           "a_accuracy": mean(sa), "b_accuracy": mean(sb), "by_task": {},
           "settings": {"temperature": a.temperature, "max_new": a.max_new, "samples": a.samples,
                        "seed": a.seed, "judge": a.judge, "score": a.score}}
    for t in sorted(set(tasks.values())):
        idx = [i for i, r in enumerate(rows) if tasks.get(r["prompt"]) == t]
        res["by_task"][t] = {"n": len(idx), "a_accuracy": mean([sa[i] for i in idx]),
                             "b_accuracy": mean([sb[i] for i in idx]),
                             "win_rate": mean([wins[i] for i in idx])}
    for side in ("a", "b"):
        f = figures[side]
        for k in ("reward", "kl", "pretrain_loss", "answer_tokens", "end_rate"):
            if k in f:
                res["%s_%s" % (side, k)] = f[k]
    if res.get("a_pretrain_loss") and res.get("b_pretrain_loss"):
        res["pretrain_loss_ratio"] = res["a_pretrain_loss"] / res["b_pretrain_loss"]
    res["eval_policy"] = figures
    if a.responses:
        with open(a.responses, "w", encoding="utf-8") as f:
            for r, w, x, y in zip(rows, wins, sa, sb):
                f.write(json.dumps({"prompt": r["prompt"], "task": tasks.get(r["prompt"], "-"),
                                    "a": r["a"], "b": r["b"], "outcome_a": w, "a_score": x,
                                    "b_score": y}, ensure_ascii=False) + "\n")
    print_table(res)
    if ties > 0.2 * len(decided):
        print("warning: %d of %d comparisons are ties" % (ties, len(decided)), file=sys.stderr)
    if a.out:
        with open(a.out, "w", encoding="utf-8") as f:
            json.dump(res, f, indent=1, sort_keys=True)
    misses = check_targets(a, res)
    for m in misses:
        print("evaluate.py: target missed: " + m, file=sys.stderr)
    return 1 if misses else 0


def check_targets(a, res):
    misses = []
    if a.target_win_rate is not None and not res["win_rate"] >= a.target_win_rate:
        misses.append("win rate %.3f < %.3f" % (res["win_rate"], a.target_win_rate))
    if a.target_win_lo is not None and not res["win_ci_bootstrap"][0] > a.target_win_lo:
        misses.append("win rate interval's lower end %.3f <= %.3f"
                      % (res["win_ci_bootstrap"][0], a.target_win_lo))
    drop = a.target_accuracy_drop
    if drop is not None and not res["a_accuracy"] >= res["b_accuracy"] - drop:
        misses.append("accuracy %.3f below B's %.3f by more than %g"
                      % (res["a_accuracy"], res["b_accuracy"], drop))
    r = res.get("pretrain_loss_ratio")
    if a.target_pretrain_ratio is not None and not (r is not None and r <= a.target_pretrain_ratio):
        misses.append("pretraining loss ratio %s > %g" % (r, a.target_pretrain_ratio))
    return misses


def fmt(v):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else "%.3f" % v


def print_table(res):
    lo, hi = res["win_ci_bootstrap"]
    wlo, whi = res["win_ci_wilson"]
    print("A preferred to B  %s  (bootstrap 95%% %s-%s, Wilson %s-%s; %d judged, %d wins, "
          "%d losses, %d ties, %d split by order)"
          % (fmt(res["win_rate"]), fmt(lo), fmt(hi), fmt(wlo), fmt(whi), res["judged"],
             res["a_wins"], res["b_wins"], res["ties"], res["split_decisions"]))
    print("%-16s %8s %8s" % ("", "A", "B"))
    print("%-16s %8s %8s" % ("accuracy", fmt(res["a_accuracy"]), fmt(res["b_accuracy"])))
    for t, v in res["by_task"].items():
        print("%-16s %8s %8s   (n %d, A preferred %s)"
              % ("  " + t, fmt(v["a_accuracy"]), fmt(v["b_accuracy"]),
                                                       v["n"], fmt(v["win_rate"])))
    for k in ("reward", "kl", "pretrain_loss", "answer_tokens", "end_rate"):
        if "a_" + k in res:
            print("%-16s %8s %8s" % (k, fmt(res["a_" + k]), fmt(res.get("b_" + k))))
    if "pretrain_loss_ratio" in res:
        print("%-16s %8s" % ("pretrain A/B", fmt(res["pretrain_loss_ratio"])))


if __name__ == "__main__":
    sys.exit(main())
