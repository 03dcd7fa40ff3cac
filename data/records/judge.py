#!/usr/bin/env python3
"""judge.py: ranks completions of records prompts like a labeler, for
`reward label --judge "python3 data/records/judge.py --noise 0.1 --seed 7"`.

Protocol (reward/README.md, "The judge protocol"): one JSON request per line on stdin,
{"prompt_id", "prompt", "completions": [...], "ended": [...]} ("ended" optional; the prompt raw
or rendered as "Human: ...\\n\\nAssistant:"); one reply line per request on stdout, flushed before
the next line is read: {"ranking": [r1, ...], "comment": ...} with 1 = best and equal ranks for
ties, or "skip" for a prompt of no records task (another labeler may take it). A malformed request
is answered "skip" too, named on stderr, and the exit status is then 1. Blank lines get no reply.

Ranking: correctness first, then form (fewer extra words, no leaked "Human:", no junk bytes, not
empty), a completion cut off at the length limit loses 10 (recordtasks.grade, .rank). Label noise
(--noise P, 0..0.4): one pass over the ranked groups swapping neighbours with probability
P * groups / 2, a function of (--seed, request), so a rerun gives the same labels.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recordtasks as rt  # noqa: E402


def noise_value(s):
    try:
        v = float(s)
    except ValueError:
        v = -1.0
    if not 0 <= v <= rt.MAX_NOISE:
        raise argparse.ArgumentTypeError("'%s' is not a number in 0..%g" % (s, rt.MAX_NOISE))
    return v


def reply(req, noise, seed):
    """The answer line for one request (a dict already parsed)."""
    prompt, comps = req["prompt"], req["completions"]
    if not isinstance(prompt, str) or not isinstance(comps, list) or not comps \
            or not all(isinstance(c, str) for c in comps):
        raise ValueError("prompt must be a string and completions a non-empty list of strings")
    ended = req.get("ended")
    if ended is not None and (not isinstance(ended, list) or len(ended) != len(comps)):
        raise ValueError("ended must be a list as long as completions")
    ranks = rt.rank(prompt, comps, ended, noise, seed)
    if ranks is None:
        return "skip"
    task = rt.parse(prompt)
    comment = "records judge: %s/%s" % (task.kind, task.variant)
    return json.dumps({"ranking": ranks, "comment": comment})


def main():
    ap = argparse.ArgumentParser(
        description="Ranks completions of records prompts (reward label --judge).")
    ap.add_argument("--noise", type=noise_value, default=0.0,
                    help="label noise in 0..0.4 (default 0)")
    ap.add_argument("--seed", type=int, default=1, help="noise seed (default 1)")
    a = ap.parse_args()
    bad = 0
    for n, line in enumerate(sys.stdin, 1):     # one request per line, as it arrives
        if not line.strip():
            continue
        try:
            out = reply(json.loads(line), a.noise, a.seed)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print("judge.py: stdin:%d: %s" % (n, e), file=sys.stderr, flush=True)
            bad += 1
            out = "skip"
        print(out, flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
