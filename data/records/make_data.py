#!/usr/bin/env python3
"""make_data.py: the records task family's data set, offline and deterministic.

    python3 data/records/make_data.py --out DIR [--seed S] [--n-pretrain N] [--n-valid N]
        [--n-sft N] [--n-rm N] [--n-ppo N] [--n-eval N] [--mix C,V,R,W]

Writes into DIR (each file to a temporary name, then renamed):
  pretrain.txt        plain text, documents separated by <|endoftext|>: the facts records are
                      made of in prose, record lines, questions with short answers (never an
                      eval prompt), comparisons and plain sentences
  pretrain_valid.txt  held-out documents of the same kind (the alignment-tax text)
  sft.jsonl           {"prompt", "response", "task", "style"} demonstrations
  sft_prompts.jsonl   {"prompt", "task"}: the demonstrations' prompts alone
  rm_prompts.jsonl    {"prompt", "task"}: prompts whose K sampled completions the judge ranks
  ppo_prompts.jsonl   {"prompt", "task"}: PPO's prompts (may repeat)
  eval_prompts.jsonl  {"prompt", "task", "answer"}: held-out evaluation prompts
The prompt sets are disjoint: a prompt's split is a function of its text (recordtasks.split_of).
Each file has its own random stream of the seed, so changing one size leaves the others as they
were; the same seed gives byte-identical files. Python 3 standard library only.
"""
import argparse
import json
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import recordtasks as rt  # noqa: E402

STYLES = ["concise", "verbose", "rambling", "wrong"]
PLACES = ["the market", "the station", "the library", "the park", "the river", "the old bridge",
          "the bakery", "the harbour"]
VERBS = ["walked to", "looked at", "waited at", "sat near", "painted", "visited"]
TIMES = ["in the morning", "on Sunday", "after lunch", "in the evening", "every day"]


def stream(seed, name):
    """The random stream of one file: a function of the seed and the file's name."""
    return random.Random("records/%d/%s" % (seed, name))


def draw(rng, split, kind, seen=None, exhausted=None, tries=300):
    """A task whose prompt falls in split (and, with seen, is new): of kind while its share of the
    prompt space lasts (a single record has few questions), else of the next kinds in turn.
    exhausted (a set) remembers the kinds whose share ran out, so later draws skip them."""
    start = rt.TASKS.index(kind)
    for j in range(len(rt.TASKS)):
        k = rt.TASKS[(start + j) % len(rt.TASKS)]
        if exhausted is not None and k in exhausted:
            continue
        for _ in range(tries):
            prompt, task = rt.sample(rng, k)
            if rt.split_of(prompt) != split or (seen is not None and prompt in seen):
                continue
            if seen is not None:
                seen.add(prompt)
            return prompt, task
        if exhausted is not None:
            exhausted.add(k)
    raise SystemExit("make_data.py: could not draw a new %s prompt: the sizes asked for exceed the "
                     "prompt space" % split)


def wrong_answer(rng, task):
    """A plausible wrong answer: another person's field, a wrong order, an age off by one."""
    recs = task.records
    if task.kind in ("field", "format"):
        f, l, c, a = recs[0]
        other = (rng.choice([x for x in rt.FIRST if x != f]),
                 rng.choice([x for x in rt.LAST if x != l]),
                 rng.choice([x for x in rt.CITIES if x != c]), a + rng.choice([-1, 1]))
        mixed = [other[i] if rng.random() < 0.6 else recs[0][i] for i in range(4)]
        if tuple(mixed) == recs[0]:
            mixed[2] = other[2]
        ans = rt.solve([tuple(mixed)], task.kind, task.variant, None)
        if ans == task.answer:
            ans = rt.solve([other], task.kind, task.variant, None)
        return ans
    if task.kind == "alpha":
        items = task.answer.split(", ")
        while True:
            rng.shuffle(items)
            if ", ".join(items) != task.answer:
                return ", ".join(items)
    names = [r[0] + " " + r[1] for r in recs]
    if task.kind == "oldest":
        return rng.choice([n for n in names if n != task.answer])
    if task.variant == "who_city":
        return rng.choice([n for n in names if n != task.answer])
    if task.variant == "age_of":
        return str(int(task.answer) + rng.choice([-1, 1]))
    return rng.choice([c for c in rt.CITIES if c != task.answer])


def sentence(rng):
    f, l, _, _ = rng.choice(rt.PEOPLE)
    return "%s %s %s %s %s." % (f, l, rng.choice(VERBS), rng.choice(PLACES), rng.choice(TIMES))


def response(rng, task, style):
    if style == "wrong":
        ans = wrong_answer(rng, task)
        if rng.random() < 0.4:
            return ans
        return "%s %s %s." % (rng.choice(rt.OPENERS), rng.choice(rt.INTROS), ans)
    if style == "concise":
        return task.answer
    if style == "verbose":
        parts = []
        if rng.random() < 0.7:
            parts.append(rng.choice(rt.OPENERS))
        parts.append("%s %s." % (rng.choice(rt.INTROS), task.answer))
        if rng.random() < 0.7:
            parts.append(rng.choice(rt.TAILS))
        return " ".join(parts)
    # rambling: the answer, then a line that should not be there
    u = rng.random()
    if u < 0.35:
        extra = sentence(rng)
    elif u < 0.65:
        _, other = rt.sample(rng)
        extra = rt.record_line(other.records[0])
    else:
        p, _ = rt.sample(rng)
        extra = "Human: " + p.split("\n")[-1]
    return task.answer + "\n" + extra


def pick_style(rng, mix):
    u = rng.randrange(100)
    for s, m in zip(STYLES, mix):
        if u < m:
            return s
        u -= m
    return STYLES[-1]


def prose(rng):
    """A statement of the facts a record is made of, in prose."""
    f, l, c, a = rng.choice(rt.PEOPLE)
    forms = ["%s %s lives in %s and is %d years old." % (f, l, c, a),
             "%s %s is %d years old and lives in %s." % (f, l, a, c),
             "%s %s lives in %s." % (f, l, c),
             "%s %s is %d." % (f, l, a),
             "%s is the first name of %s %s, who lives in %s." % (f, f, l, c),
             "%s is the surname of %s %s, who is %d." % (l, f, l, a),
             "The record of %s %s says %s, age %d." % (f, l, c, a)]
    return rng.choice(forms)


def record_with_prose(rng):
    f, l, c, a = r = rng.choice(rt.PEOPLE)
    tail = rng.choice(["So %s %s lives in %s and is %d years old." % (f, l, c, a),
                       "This record is about %s %s from %s, aged %d." % (f, l, c, a),
                       "Written short: %s, %s (%d)." % (l, f, a)])
    return rt.record_line(r) + "\n" + tail


def comparison(rng):
    people = rng.sample(rt.PEOPLE, rng.choice([2, 3]))
    u = rng.random()
    if u < 0.4:
        x, y = sorted(people[:2], key=lambda p: -p[3])
        return "%s %s (%d) is older than %s %s (%d)." % (x[0], x[1], x[3], y[0], y[1], y[3])
    if u < 0.7:
        return "In alphabetical order: %s." % ", ".join(sorted(p[0] for p in people))
    return "Sorted by surname: %s." % ", ".join(sorted(p[1] for p in people))


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    os.replace(tmp, path)


def make_pretrain(seed, name, n):
    rng = stream(seed, name)
    docs = []
    for _ in range(n):
        lines = []
        for _ in range(rng.randint(3, 8)):
            u = rng.randrange(100)
            if u < 30:
                lines.append(prose(rng))
            elif u < 45:
                lines.append(record_with_prose(rng))
            elif u < 85:
                while True:
                    p, t = rt.sample(rng)
                    if rt.split_of(p) != "eval":
                        break
                lines.append("Question: %s\nAnswer: %s" % (p, t.answer))
            elif u < 95:
                lines.append(comparison(rng))
            else:
                lines.append(sentence(rng))
        docs.append("\n".join(lines) + "\n<|endoftext|>")
    return "".join(docs)


def jsonl(rows):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def make_prompts(seed, name, split, n, distinct, with_answer=False):
    rng = stream(seed, name)
    seen, exhausted = (set(), set()) if distinct else (None, None)
    rows = []
    for i in range(n):
        p, t = draw(rng, split, rt.TASKS[i % len(rt.TASKS)], seen, exhausted)
        row = {"prompt": p, "task": t.kind}
        if with_answer:
            row["answer"] = t.answer
        rows.append(row)
    return rows


def make_sft(seed, n, mix):
    rng = stream(seed, "sft.jsonl")
    seen, exhausted, rows = set(), set(), []
    for i in range(n):
        p, t = draw(rng, "sft", rt.TASKS[i % len(rt.TASKS)], seen, exhausted)
        style = pick_style(rng, mix)
        rows.append({"prompt": p, "response": response(rng, t, style), "task": t.kind,
                     "style": style})
    return rows


def parse_mix(s):
    try:
        mix = [int(x) for x in s.split(",")]
    except ValueError:
        mix = []
    if len(mix) != 4 or any(m < 0 for m in mix) or sum(mix) != 100:
        raise argparse.ArgumentTypeError(
            "'%s' is not 4 percentages that add up to 100 (concise,verbose,rambling,wrong)" % s)
    return mix


def positive(s):
    try:
        v = int(s)
    except ValueError:
        v = 0
    if v < 1 or v > 10000000:
        raise argparse.ArgumentTypeError("'%s' is not a whole number in 1..10000000" % s)
    return v


def main():
    ap = argparse.ArgumentParser(description="The records task family's data set (deterministic).")
    ap.add_argument("--out", required=True, help="output directory (made if missing)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n-pretrain", type=positive, default=6000, help="pretraining documents")
    ap.add_argument("--n-valid", type=positive, default=300, help="held-out pretraining documents")
    ap.add_argument("--n-sft", type=positive, default=3000, help="demonstrations")
    ap.add_argument("--n-rm", type=positive, default=900, help="reward-model prompts")
    ap.add_argument("--n-ppo", type=positive, default=1000, help="PPO prompts")
    ap.add_argument("--n-eval", type=positive, default=200, help="evaluation prompts")
    ap.add_argument("--mix", type=parse_mix, default=[20, 55, 20, 5],
                    help="percent of demonstrations concise,verbose,rambling,wrong (20,55,20,5)")
    a = ap.parse_args()
    try:
        os.makedirs(a.out, exist_ok=True)
    except OSError as e:
        sys.exit("make_data.py: --out %s: %s" % (a.out, e.strerror))
    sft = make_sft(a.seed, a.n_sft, a.mix)
    files = {
        "pretrain.txt": make_pretrain(a.seed, "pretrain.txt", a.n_pretrain),
        "pretrain_valid.txt": make_pretrain(a.seed, "pretrain_valid.txt", a.n_valid),
        "sft.jsonl": jsonl(sft),
        "sft_prompts.jsonl": jsonl({"prompt": r["prompt"], "task": r["task"]} for r in sft),
        "rm_prompts.jsonl": jsonl(make_prompts(a.seed, "rm_prompts.jsonl", "rm", a.n_rm, True)),
        "ppo_prompts.jsonl": jsonl(make_prompts(a.seed, "ppo_prompts.jsonl", "ppo", a.n_ppo,
                                                False)),
        "eval_prompts.jsonl": jsonl(make_prompts(a.seed, "eval_prompts.jsonl", "eval", a.n_eval,
                                                 True, with_answer=True)),
    }
    for name, text in files.items():
        try:
            write_atomic(os.path.join(a.out, name), text)
        except OSError as e:
            sys.exit("make_data.py: %s: %s" % (os.path.join(a.out, name), e.strerror))
        print("  %-19s %d bytes" % (name, len(text.encode("utf-8"))), file=sys.stderr)


if __name__ == "__main__":
    main()
