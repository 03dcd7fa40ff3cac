#!/usr/bin/env python3
"""score.py: the records family's gold scorer.

stdin: one JSON object per line, {"prompt": P, "completion": C} ("response" is accepted for
"completion"; other keys, e.g. rlhf generate's, are ignored; the prompt raw or rendered).
stdout: one number per line, in order, flushed: 1 when the completion's answer is correct, 0 when
it is not, "nan" when the prompt is of no records task (named on stderr). Blank lines get no
reply. A malformed line is an error naming its line number: "nan" is printed for it and the exit
status is 1. --detail prints the whole grade as a JSON object instead of the number.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recordtasks as rt  # noqa: E402


def main():
    ap = argparse.ArgumentParser(
        description="Gold score of records completions: JSON lines in, numbers out.")
    ap.add_argument("--detail", action="store_true", help="print each grade as a JSON object")
    a = ap.parse_args()
    bad = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            prompt = obj["prompt"]
            comp = obj["completion"] if "completion" in obj else obj["response"]
            if not isinstance(prompt, str) or not isinstance(comp, str):
                raise TypeError("prompt and completion must be strings")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            print("score.py: stdin:%d: %s" % (n, e), file=sys.stderr, flush=True)
            bad += 1
            print("nan", flush=True)
            continue
        task = rt.parse(prompt)
        if task is None:
            print("score.py: stdin:%d: not a records prompt" % n, file=sys.stderr, flush=True)
            print("nan", flush=True)
            continue
        g = rt.grade(task, comp)
        print(json.dumps(g) if a.detail else g["correct"], flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
