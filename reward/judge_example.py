#!/usr/bin/env python3
"""An example judge for `reward label --judge "python3 reward/judge_example.py"`.

The protocol (reward/README.md): one JSON request per line on stdin, one answer line on stdout,
flushed, before the next request is read. Never read stdin to its end first: the next request
only comes after this answer, so such a judge waits forever (reward label stops it after
--judge-timeout seconds, naming this cause).

This judge ranks completions of "What is A plus B?" prompts by whether they hold the sum, then
by whether they ended with the end token (when "ended" is sent), then shorter first; equal keys
tie. Replace `key` with your own preference (a call to a model, a rubric, ...).
"""
import json
import re
import sys


def key(prompt, text, ended):
    m = re.search(r"(-?\d+)\s*(?:plus|\+|and)\s*(-?\d+)", prompt)
    right = bool(m) and str(int(m.group(1)) + int(m.group(2))) in re.findall(r"-?\d+", text)
    return (not right, ended is False, len(text))


def answer(req):
    comps = req["completions"]
    ended = req.get("ended", [None] * len(comps))
    keys = [key(req["prompt"], c, e) for c, e in zip(comps, ended)]
    order = sorted(set(keys))
    ranks = [order.index(k) + 1 for k in keys]      # 1 = best; equal keys share a rank
    return {"ranking": ranks, "comment": "example judge"}


def main():
    for line in sys.stdin:                          # one request per line, as it arrives
        line = line.strip()
        if not line:
            continue
        try:
            out = answer(json.loads(line))
        except (ValueError, KeyError, TypeError):
            out = "skip"                            # a request this judge cannot rank
        print(out if isinstance(out, str) else json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
