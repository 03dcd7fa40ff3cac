#!/bin/sh
# The reward program end to end on a tiny model and a synthetic preference (completions that
# contain the word "sunny" are better): import (formats, idempotence, all or nothing on a bad
# line), training to >= 95% held-out pairwise accuracy, the bias (demonstrations score 0 on
# average, also in an independent float64 PyTorch forward of the saved HF checkpoint), kill -9 and
# resume to bit-identical weights, scoring, inspection, labeling with a judge program and through
# a pseudo-terminal (scripted keystrokes, undo, skip, quit, kill -9 mid-session), two labelers at
# once getting disjoint prompts, and bad inputs for every subcommand.
. "$PWD/tests/lib.sh"
PY=/usr/bin/python3
lib_workspace
# a tiny model: one thread is faster than two fighting over barriers (and the machine)
export OMP_NUM_THREADS=1
ERR_LINES=8
sql() { $PY - "$@" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for row in db.execute(sys.argv[2], sys.argv[3:]):
    print("|".join(str(x) for x in row))
PY
}
cd "$W" || exit 1

# ---------------------------------------------------------------------------------------------
# data: K = 4 completions per prompt, two with "sunny" (tied best) and two without (tied worst)
$PY - <<'PY'
import json, random
r = random.Random(7)
words = ("the a river stone cloud apple green quiet fast slow house light dark tree bird song water "
         "fire small large old new red blue cold warm road hill moon star").split()
topics = "river stone cloud apple house tree bird song water fire road hill moon star".split()
def sent(n, sunny):
    w = [r.choice(words) for _ in range(n)]
    if sunny:
        w.insert(r.randrange(len(w) + 1), "sunny")
    return " ".join(w)
with open("rank.jsonl", "w") as out, open("corpus.txt", "w") as corpus, open("demos.jsonl", "w") as demos:
    for i in range(300):
        p = f"Write line {i} about the {r.choice(topics)}"
        flags = [1, 1, 0, 0]
        r.shuffle(flags)
        comps = [sent(r.randint(3, 7), f) for f in flags]
        ranks = [1 if f else 2 for f in flags]
        # both ranking forms of the K-wise format
        ranking = ranks if i % 3 else "=".join(str(j + 1) for j in range(4) if flags[j]) + ">" + "=".join(str(j + 1) for j in range(4) if not flags[j])
        out.write(json.dumps({"prompt": p, "completions": comps, "ranking": ranking}) + "\n")
        corpus.write(p + "\n" + "\n".join(comps) + "\n")
        if i < 40:
            demos.write(json.dumps({"prompt": p, "completion": sent(r.randint(3, 7), i % 2)}) + "\n")
    # pairwise and Anthropic-HH lines
    with open("pairs.jsonl", "w") as f:
        for i in range(20):
            f.write(json.dumps({"prompt": f"Pair prompt {i}", "chosen": sent(4, 1), "rejected": sent(4, 0)}) + "\n")
        f.write(json.dumps({"prompt": "Same twice", "chosen": "stone", "rejected": "stone"}) + "\n")
    with open("hh.jsonl", "w") as f:
        conv = "\n\nHuman: hi there\n\nAssistant: hello\n\nHuman: name a star"
        f.write(json.dumps({"chosen": conv + "\n\nAssistant: sunny moon star", "rejected": conv + "\n\nAssistant: dark road"}) + "\n")
PY
"$B/rlhf" tokenizer train --vocab-size 300 --out tok corpus.txt 2>/dev/null
"$B/rlhf" init --preset tiny --n-positions 64 --n-embd 32 --tokenizer tok --seed 5 \
    --out base 2>/dev/null
[ -f base/model.safetensors ] ||
    { echo "FAIL setup: no base model"; echo "0 passed, 1 failed"; exit 1; }

# ---------------------------------------------------------------------------------------------
# help
"$B/reward" --help > out 2>&1 && grep -q "inspect" out &&
    ok "reward --help lists the subcommands" || bad "reward --help"
allhelp=1
for c in import label train score inspect; do "$B/reward" $c --help > out 2>&1 &&
    grep -q "usage: reward $c" out || allhelp=0; done
"$B/reward" train --help | grep -q "train.batch_size" || allhelp=0
[ $allhelp -eq 1 ] && ok "every subcommand has --help (train lists its config keys)" ||
    bad "subcommand --help"

# ---------------------------------------------------------------------------------------------
# import
"$B/reward" import --workspace ws.db --valid-percent 20 rank.jsonl pairs.jsonl \
    hh.jsonl > out 2> err &&
    [ "$(sql ws.db 'select count(*) from rankings')" = 321 ] && grep -q "1 pairs skipped" err &&
    ok "import: K-wise (both ranking forms), pairwise and HH lines; an equal pair is skipped" ||
        bad "import"
cp rank.jsonl renamed.jsonl
"$B/reward" import --workspace ws.db rank.jsonl renamed.jsonl > out 2> err &&
    [ "$(sql ws.db 'select count(*) from rankings')" = 321 ] &&
        [ "$(grep -c 'already imported' err)" = 2 ] &&
    ok "import twice (and under another name): nothing added" || bad "import idempotence"
$PY - "$W/ws.db" > out 2> err <<'PY' && ok "import: ties, ranks, HH prompt/response split, labelers, splits as expected" || bad "import contents: $(cat out)"
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
# the K-wise ranks: sunny ones rank 1, others 2, for every ranking of rank.jsonl
bad = db.execute("""select count(*) from ranking_items i join completions c on c.id = i.completion_id
                    join rankings r on r.id = i.ranking_id join labelers l on l.id = r.labeler_id
                    where l.name = 'rank.jsonl' and i.rank != (case when c.text like '%sunny%' then 1 else 2 end)""").fetchone()[0]
assert bad == 0, bad
p, = db.execute("select p.text from prompts p where p.source = 'hh.jsonl'").fetchone()
assert p == "hi there\n\nAssistant: hello\n\nHuman: name a star", repr(p)
texts = [t for (t,) in db.execute("select c.text from ranking_items i join completions c on c.id = i.completion_id join rankings r on r.id = i.ranking_id join prompts p on p.id = r.prompt_id where p.source = 'hh.jsonl' order by i.rank")]
assert texts == ["sunny moon star", "dark road"], texts
splits = dict(db.execute("select split, count(*) from prompts where source = 'rank.jsonl' group by split").fetchall())
assert set(splits) == {"train", "valid"} and 30 <= splits["valid"] <= 90, splits
assert db.execute("select count(*) from imports").fetchone()[0] == 3
PY

# all or nothing: a bad line 3 (after two good ones)
before=$(sql ws.db 'select count(*) from prompts')
printf '%s\n%s\n{"prompt": "x", "completions": ["a", "b"]\n' "$(sed -n 1p pairs.jsonl | sed 's/Pair prompt 0/New prompt A/')" \
    "$(sed -n 2p pairs.jsonl | sed 's/Pair prompt 1/New prompt B/')" > bad.jsonl
expect_fail "import: a bad line is an error naming file:line" 1 "bad.jsonl:3" "$B/reward" import \
    --workspace ws.db bad.jsonl
[ "$(sql ws.db 'select count(*) from prompts')" = "$before" ] &&
    [ "$(sql ws.db "select count(*) from prompts where text like 'New prompt%'")" = 0 ] &&
    [ "$(sql ws.db 'select count(*) from imports')" = 3 ] &&
        ok "import: nothing of the bad file was stored" || bad "import all or nothing"
i=0
while IFS='|' read -r line pat; do
    i=$((i + 1))
    printf '{"prompt": "ok", "chosen": "a", "rejected": "b"}\n%s\n' "$line" > bad$i.jsonl
    expect_fail "import: bad line: $pat" 1 "bad$i.jsonl:2: .*$pat" "$B/reward" import \
        --workspace ws.db bad$i.jsonl
done <<'EOF'
{"prompt": "p", "completions": ["a", "b"], "ranking": [1, 2, 3]}|3 ranks for 2
{"prompt": "p", "completions": ["a", "b"], "ranking": "1>1"}|appears twice
{"prompt": "p", "completions": ["a", "b"]}|missing key "ranking"
{"prompt": "p", "completions": ["a", 3], "ranking": [1, 2]}|completion 2 is not a string
{"prompt": "p", "completions": ["a", "a"], "ranking": [1, 2]}|the same text
{"prompt": "p", "completions": ["a"], "ranking": [1]}|a ranking needs 2
{"prompt": "p", "chosen": "a\u0000b", "rejected": "c"}|NUL
{"prompt": "p", "chosen": "a", "rejected": "c", "split": "dev"}|expected train, valid or test
{"chosen": "no assistant turn", "rejected": "x"}|Assistant
{"prompt": "p", "chosen": 1, "rejected": "c"}|must be a string
{"prompt": "p", "chosen": "a", "chosen": "b", "rejected": "c"}|duplicate key
{"prompt": "p", "chosen": "a"}|expected {"prompt", "chosen", "rejected"}
[1, 2]|expected a JSON object
{"prompt": "p", "chosen": "a", "rejected": "b",|bad JSON at column
EOF

# ---------------------------------------------------------------------------------------------
# demonstrations (for the bias) straight into the workspace, as an SFT import would store them
$PY - "$W/ws.db" <<'PY'
import sqlite3, sys, json, time
db = sqlite3.connect(sys.argv[1])
for l in open("demos.jsonl"):
    d = json.loads(l)
    db.execute("insert or ignore into prompts(text, split, source, created) values (?, 'train', 'demos', ?)", (d["prompt"], time.time()))
    pid, = db.execute("select id from prompts where text = ?", (d["prompt"],)).fetchone()
    db.execute("insert into demonstrations(prompt_id, response, source, created) values (?, ?, 'demos', ?)", (pid, d["completion"], time.time()))
db.commit()
PY

# ---------------------------------------------------------------------------------------------
# train
cat > rm.yaml <<'YAML'
model: {init: base}
out: {dir: run}
workspace: ws.db
train: {batch_size: 8, epochs: 3, lr: 3e-3, warmup_steps: 5}
eval: {every: 20}
YAML
"$B/reward" train -c rm.yaml > out 2> err; rc=$?
acc=$(grep "held-out loss" err | tail -1 | sed 's/.*accuracy \([0-9.]*\).*/\1/')
[ $rc -eq 0 ] && awk -v a="$acc" 'BEGIN { exit !(a != "" && a >= 0.95) }' &&
    [ -f run/final/model.safetensors ] && [ -f run/last/trainer_state.json ] &&
    ok "train: held-out pairwise accuracy $acc >= 0.95; final/ and last/ written" ||
        bad "train (exit $rc, held-out accuracy '$acc')"
grep -q "the 40 demonstrations had mean score" err &&
    ok "train: the bias comes from the workspace's demonstrations" || bad "bias source"
$PY - "$W/ws.db" "$W/run" > out 2> err <<'PY' && ok "train: run done, checkpoint final/, a metric row per step, valid/accuracy(_k4), final/bias = trainer state" || bad "train record: $(cat out)"
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
status, ckpt = db.execute("select status, checkpoint from runs where stage = 'reward'").fetchone()
assert status == "done" and ckpt.endswith("run/final"), (status, ckpt)
n, hi = db.execute("select count(*), max(step) from metrics where name = 'train/loss'").fetchone()
assert n == hi and n > 50, (n, hi)
names = {r[0] for r in db.execute("select distinct name from metrics")}
for k in ("valid/loss", "valid/accuracy", "valid/accuracy_k4", "valid/margin", "train/comparisons_per_s", "final/bias"):
    assert k in names, (k, names)
bias, = db.execute("select value from metrics where name = 'final/bias'").fetchone()
st = json.load(open(sys.argv[2] + "/last/trainer_state.json"))
assert abs(st["floats"]["reward_bias"] - bias) < 1e-12, (st["floats"], bias)
cfg = json.load(open(sys.argv[2] + "/final/config.json"))
assert cfg["architectures"] == ["GPT2ForSequenceClassification"] and cfg["num_labels"] == 1, cfg
PY

# scores of the final model from C, and from an independent float64 PyTorch forward of the HF
# checkpoint: the same numbers, and the demonstrations score 0 on average
"$B/reward" score run/final --input demos.jsonl > demo_scores.jsonl 2> err
$PY - "$B/rlhf" > demo_tokens.txt <<'PY'
# the tokens as the reward model reads them: encode("Human: P\n\nAssistant:") encode(" C") <|endoftext|>
import json, subprocess, sys
eot = json.load(open("tok/vocab.json"))["<|endoftext|>"]
def enc(text):
    return subprocess.run([sys.argv[1], "tokenizer", "encode", "tok"], input=text.encode(), stdout=subprocess.PIPE, check=True).stdout.split()
for l in open("demos.jsonl"):
    d = json.loads(l)
    print(" ".join(x.decode() for x in enc(f"Human: {d['prompt']}\n\nAssistant:") + enc(" " + d["completion"])), eot)
PY
$PY - "$ROOT/tests/ref" run/final demo_tokens.txt demo_scores.jsonl > out 2> err <<'PY' && ok "final/ in a float64 PyTorch forward: same scores as C, demonstrations mean $(cat out)" || bad "PyTorch check: $(cat out)"
import json, sys
sys.path.insert(0, sys.argv[1])
import torch
from hf_interop import read_safetensors, final_hidden
P, _ = read_safetensors(sys.argv[2] + "/model.safetensors", strict=True)
P = {k[len("transformer."):] if k.startswith("transformer.") else k: v for k, v in P.items()}
cfg = json.load(open(sys.argv[2] + "/config.json"))
L, NH, eps = cfg["n_layer"], cfg["n_head"], cfg["layer_norm_epsilon"]
assert "lm_head.weight" not in P and P["score.weight"].shape == (1, cfg["n_embd"])
def score(tokens):   # GPT2ForSequenceClassification: score head at the last token
    return (final_hidden(P, tokens, L, NH, eps)[-1] @ P["score.weight"][0]).item()
ours = [json.loads(l)["score"] for l in open(sys.argv[4])]
ref = [score([int(t) for t in l.split()]) for l in open(sys.argv[3])]
assert len(ours) == len(ref) == 40
worst = max(abs(a - b) for a, b in zip(ours, ref))
mean = sum(ref) / len(ref)
assert worst < 1e-3, worst
assert abs(mean) < 1e-3, mean
assert max(ref) - min(ref) > 1, "the scores should differ"
print(f"{mean:+.1e} (max |C - PyTorch| {worst:.1e})")
PY

# ---------------------------------------------------------------------------------------------
# kill -9 at a random moment, rerun: the same weights as an uninterrupted run
sed 's/epochs: 3/epochs: 4/; s/dir: run/dir: full/' rm.yaml > long.yaml
printf 'save: {every: 4}\n' >> long.yaml
"$B/reward" train -c long.yaml > /dev/null 2>&1
sed 's/dir: full/dir: killed/' long.yaml > killed.yaml
killed=0
for delay in 0.8 0.5 1.2 0.3 1.6 2.4 0.15; do
    rm -rf killed
    "$B/reward" train -c killed.yaml > /dev/null 2>&1 &
    pid=$!
    sleep $delay
    if kill -9 $pid 2>/dev/null; then wait $pid 2>/dev/null; [ -f killed/last/trainer_state.json \
        ] &&
        { killed=1; break; }; fi
    wait $pid 2>/dev/null
done
# a slow machine (sanitizers, load) may not reach the first checkpoint within the delays above:
# then kill it right after a checkpoint has appeared, however long that takes
if [ $killed -eq 0 ]; then
    rm -rf killed
    "$B/reward" train -c killed.yaml > /dev/null 2>&1 &
    pid=$!
    n=0
    while [ ! -f killed/last/trainer_state.json ] && [ $n -lt 1200 ] && kill -0 $pid 2>/dev/null
    do sleep 0.1; n=$((n + 1)); done
    kill -9 $pid 2>/dev/null && { wait $pid 2>/dev/null; [ -f killed/last/trainer_state.json ] &&
        killed=1; }
    wait $pid 2>/dev/null
fi
"$B/reward" train -c killed.yaml > /dev/null 2> err
if [ $killed -eq 1 ] && grep -q "resuming run" err &&
    cmp -s full/last/model.safetensors killed/last/model.safetensors &&
   cmp -s full/last/trainer_state.safetensors killed/last/trainer_state.safetensors &&
       cmp -s full/final/model.safetensors killed/final/model.safetensors; then
    ok "kill -9 and resume: last/ (weights, moments) and final/ bit-identical to the uninterrupted run"
else bad "kill/resume (killed=$killed)"; fi
[ "$(sql ws.db "select count(*) from metrics m join runs r on r.id = m.run_id where r.checkpoint like '%killed/final' and m.name = 'train/loss'")" = \
  "$(sql ws.db "select max(m.step) from metrics m join runs r on r.id = m.run_id where \
      r.checkpoint like '%killed/final' and m.name = 'train/loss'")" ] &&
    ok "after kill and resume: one run, every step logged once" || bad "metrics after resume"

# ---------------------------------------------------------------------------------------------
# score
"$B/reward" score run/final --workspace ws.db --print > scores.jsonl 2> err &&
    [ "$(sql ws.db 'select count(*) from reward_scores')" = \
        "$(sql ws.db 'select count(*) from completions')" ] &&
    [ "$(wc -l < scores.jsonl)" = "$(sql ws.db 'select count(*) from completions')" ] &&
    $PY -c 'import json,sys; [json.loads(l)["score"] for l in open("scores.jsonl")]' &&
    ok "score --workspace: every completion scored, stored and printed as JSONL" ||
        bad "score workspace"
"$B/reward" score run/final --workspace ws.db > out 2> err && grep -q "nothing to score" err &&
    ok "score again: nothing left to score" || bad "score again"
sunny=$(sql ws.db "select avg(s.score) from reward_scores s join completions c on c.id = s.completion_id where c.text like '%sunny%'")
other=$(sql ws.db "select avg(s.score) from reward_scores s join completions c on c.id = s.completion_id where c.text not like '%sunny%'")
awk -v a="$sunny" -v b="$other" 'BEGIN { exit !(a > b + 1) }' &&
    ok "stored scores: sunny completions $sunny, others $other" ||
    bad "score values ($sunny vs $other)"
printf '{"id": 7, "prompt": "Write line 1 about the moon", "completion": "sunny moon"}\n\n{"prompt": "Write line 1 about the moon", "response": "dark moon"}\n' |
    "$B/reward" score run/final --input - > out 2> err &&
    $PY - > /dev/null <<'PY' && ok "score --input -: the input lines with \"score\" added, in order" || bad "score --input: $(cat out)"
import json
a, b = [json.loads(l) for l in open("out")]
assert a["id"] == 7 and a["completion"] == "sunny moon" and b["response"] == "dark moon"
assert a["score"] > b["score"]
PY

# ---------------------------------------------------------------------------------------------
# inspect
"$B/reward" inspect run/final --workspace ws.db --top 3 > out 2> err &&
    grep -q "accuracy against" out && grep -q "histogram\|##" out &&
    grep -q "most confident mistakes" out && grep -q "calibration" out &&
        ok "inspect: the report runs" || bad "inspect"
"$B/reward" inspect run/final --workspace ws.db --json --split valid > out 2> err && $PY - > inspect.txt 2> err <<'PY' && ok "inspect --json parses: $(cat inspect.txt)" || bad "inspect --json: $(cat inspect.txt)"
import json
d = json.load(open("out"))
a = d["accuracy"]
assert d["split"] == "valid" and a["overall"]["accuracy"] >= 0.95, a["overall"]
assert "4" in a["by_k"] and set(a["by_split"]) == {"valid"}, a
s = d["scores"]
assert s["count"] > 0 and sum(h["count"] for h in s["histogram"]) == s["count"]
assert s["quantiles"]["p05"] <= s["quantiles"]["p50"] <= s["quantiles"]["p95"]
assert len(d["top"]) == 5 and d["top"][0]["score"] >= d["bottom"][0]["score"]
assert sum(c["pairs"] for c in d["calibration"]) == a["overall"]["pairs"]
print(f'held-out accuracy {a["overall"]["accuracy"]:.3f} over {a["overall"]["pairs"]} pairs')
PY

# ---------------------------------------------------------------------------------------------
# labeling: prompts with completions and no rankings yet (as sampling by a pipeline leaves them)
cat > judge.py <<'PY'
# ranks by length (longer better, equal lengths tied); answers in the three accepted forms
import json, sys, time
delay = float(sys.argv[1]); mode = sys.argv[2]; log = open(sys.argv[3], "a")
for i, line in enumerate(sys.stdin):
    req = json.loads(line)
    c = req["completions"]
    lens = sorted(set(len(x) for x in c), reverse=True)
    ranks = [lens.index(len(x)) + 1 for x in c]
    time.sleep(delay)
    if mode == "bad" and i == 2: print("1>1", flush=True); continue
    if mode == "die" and i == 2: sys.exit(3)
    if mode == "skip" and i == 0:
        log.write(json.dumps({"prompt_id": req["prompt_id"], "skip": True}) + "\n"); log.flush()
        print("skip", flush=True); continue
    log.write(json.dumps({"prompt_id": req["prompt_id"], "ranks": ranks, "ended": req.get("ended")}) + "\n"); log.flush()
    if i % 3 == 0: print(json.dumps(ranks), flush=True)
    elif i % 3 == 1: print(json.dumps({"ranking": ranks, "comment": "by length"}), flush=True)
    else:
        groups = sorted(set(ranks))
        print(">".join("=".join(str(j + 1) for j in range(len(c)) if ranks[j] == g) for g in groups), flush=True)
PY
mkws() {   # mkws DB N K: N prompts with K completions each, no rankings
    "$B/reward" import --workspace "$1" --labeler seed --split test pairs.jsonl > /dev/null 2>&1
    $PY - "$@" <<'PY'
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1]); n, k = int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    cur = db.execute("insert into prompts(text, split, source, created) values (?, 'train', 'sampled', ?)", (f"Label prompt {i}", time.time()))
    for j in range(k):
        db.execute("insert into completions(prompt_id, text, model, created) values (?, ?, 'm', ?)", (cur.lastrowid, "w" * (1 + (i * 7 + j * 3) % 5) + f" {j}", time.time()))
db.commit()
PY
}
checklog() {   # checklog DB LABELER LOG: the stored rankings are exactly the judge's answers
    $PY - "$@" <<'PY'
import sqlite3, sys, json
db = sqlite3.connect(sys.argv[1])
want = {}
for l in open(sys.argv[3]):
    d = json.loads(l)
    if "ranks" in d: want[d["prompt_id"]] = d["ranks"]
got = {}
for rid, pid in db.execute("select r.id, r.prompt_id from rankings r join labelers l on l.id = r.labeler_id where l.name = ?", (sys.argv[2],)):
    got[pid] = [rk for (rk,) in db.execute("select rank from ranking_items where ranking_id = ? order by completion_id", (rid,))]
assert got == want, (got, want)
print(len(got))
PY
}
mkws lab.db 12 3
"$B/reward" label --workspace lab.db --labeler judge1 \
    --judge "$PY judge.py 0 skip j1.log" > out 2> err &&
    [ "$(checklog lab.db judge1 j1.log)" = 11 ] &&
        [ "$(sql lab.db "select count(*) from claims where skipped = 1")" = 1 ] &&
    [ "$(sql lab.db "select count(*) from rankings where comment = 'by length'")" -ge 3 ] &&
    ok "label --judge: every answer stored exactly (JSON ranks, objects with comments, 2>1=3), a skip remembered" ||
        bad "label --judge: $(checklog lab.db judge1 j1.log 2>&1 | tail -1)"
"$B/reward" label --workspace lab.db --labeler judge1 \
    --judge "$PY judge.py 0 len j1b.log" > out 2> err &&
    [ ! -s j1b.log ] &&
    ok "label again: nothing left for this labeler (ranked and skipped prompts are not offered)" ||
        bad "label again"
mkws bad.db 6 3
expect_fail "label: a judge's invalid ranking stops the session, naming the prompt" 1 "judge's answer for prompt .*twice" \
    "$B/reward" label --workspace bad.db --labeler j --judge "$PY judge.py 0 bad jb.log"
[ "$(checklog bad.db j jb.log)" = 2 ] && ok "label: the rankings before the bad answer are kept" ||
    bad "rankings before the bad answer"
expect_fail "label: a judge that exits is an error" 1 "exited without answering" \
    "$B/reward" label --workspace bad.db --labeler j2 --judge "$PY judge.py 0 die jd.log"
expect_fail "label: a judge that cannot start is an error" 1 "the judge (/nonexistent/judge)" \
    "$B/reward" label --workspace bad.db --labeler j3 --judge "/nonexistent/judge"

# two labelers at once: disjoint prompts, all of them labeled
mkws two.db 30 3
"$B/reward" label --workspace two.db --labeler ann \
    --judge "$PY judge.py 0.1 len ann.log" > /dev/null 2> ann.err &
p1=$!
"$B/reward" label --workspace two.db --labeler bob \
    --judge "$PY judge.py 0.1 len bob.log" > /dev/null 2> bob.err &
p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
na=$(checklog two.db ann ann.log 2>/dev/null); nb=$(checklog two.db bob bob.log 2>/dev/null)
both=$(sql two.db "select count(*) from (select prompt_id from rankings group by prompt_id having count(*) > 1)")
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ -n "$na" ] && [ -n "$nb" ] && [ "$na" -gt 0 ] &&
    [ "$nb" -gt 0 ] && [ $((na + nb)) -eq 30 ] && [ "$both" = 0 ] &&
    ok "two labelers at once: disjoint prompts ($na + $nb = 30), none ranked twice" ||
        bad "concurrent labelers ($r1 $r2: '$na' '$nb' $both)"
# overlap 2: both rank every prompt; inspect measures their agreement
"$B/reward" label --workspace two.db --labeler ann --overlap 2 \
    --judge "$PY judge.py 0 len ann2.log" > /dev/null 2>&1
"$B/reward" label --workspace two.db --labeler bob --overlap 2 \
    --judge "$PY judge.py 0 len bob2.log" > /dev/null 2>&1
[ "$(sql two.db "select count(*) from \
    (select prompt_id from rankings where prompt_id in (select id from prompts where source = 'sampled') group by prompt_id having count(distinct labeler_id) = 2)")" = 30 ] &&
    ok "--overlap 2: every prompt ranked by both labelers" || bad "overlap"
"$B/reward" inspect run/final --workspace two.db --json > out 2> err && $PY - > agree.txt 2> err <<'PY' && ok "inspect: labeler agreement where rankings overlap ($(cat agree.txt))" || bad "inspect agreement: $(cat agree.txt)"
import json
g = json.load(open("out"))["agreement"]
pairs = [p for p in g["by_pair"] if p["labelers"] == "ann / bob"]
assert g["agreement"] == 1 and len(pairs) == 1 and pairs[0]["pairs"] == 90, g   # 30 prompts, 3 pairs each
print(f'ann / bob: {pairs[0]["pairs"]} pairs, agreement {pairs[0]["agreement"]}')
PY

# --policy: K completions sampled on the spot and stored with model = the checkpoint
mkws pol.db 4 0
"$B/reward" label --workspace pol.db --labeler p --policy base --k 3 --max-new 6 --split train \
    --judge "$PY judge.py 0 len pol.log" > out 2> err &&
    [ "$(checklog pol.db p pol.log)" = 4 ] &&
        [ "$(sql pol.db "select count(distinct prompt_id) from completions where model = 'base'")" \
            = 4 ] &&
    $PY -c 'import json; e = [json.loads(l)["ended"] for l in open("pol.log")]; assert all(isinstance(x, list) and all(isinstance(b, bool) for b in x) for x in e), e' &&
    grep -q '"ended": null' j1.log &&
    ok "label --policy: completions sampled from the checkpoint, stored with its path, ranked; the judge is told which ended" ||
        bad "label --policy"

# ---------------------------------------------------------------------------------------------
# which prompts reward label chooses: demonstrations are not queued unless asked; --source,
# --split and --prompts narrow the choice and combine
$PY - <<'PY'
import json
with open("qa.jsonl", "w") as f:
    for i in range(4): f.write(json.dumps({"prompt": f"Q prompt {i}", "split": "valid" if i % 2 else "train"}) + "\n")
with open("qb.jsonl", "w") as f:
    for i in range(3): f.write(json.dumps({"prompt": f"B prompt {i}"}) + "\n")
with open("qd.jsonl", "w") as f:
    for i in range(3): f.write(json.dumps({"prompt": f"D prompt {i}", "response": f"answer {i}"}) + "\n")
    f.write(json.dumps({"prompt": "Q prompt 0", "response": "both"}) + "\n")   # also a queued prompt
with open("pick.jsonl", "w") as f:
    for t in ("B prompt 2", "Q prompt 1", "D prompt 0", "Not imported"): f.write(json.dumps({"prompt": t}) + "\n")
open("pick.txt", "w").write("Q prompt 3\n\nD prompt 1\nNot imported either\n")
open("none.txt", "w").write("Nothing here\nNor here\n")
open("badpick.jsonl", "w").write('{"prompt": "Q prompt 0"}\n{"text": "no prompt key"}\n')
PY
labeled() {   # labeled DB LABELER: the texts of the prompts the labeler ranked, sorted, one line
    sql "$1" "select p.text from rankings r join prompts p on p.id = r.prompt_id
        join labelers l on l.id = r.labeler_id where l.name = ? order by p.text" "$2" |
        tr '\n' ',' | sed 's/,$//'
}
qlabel() {   # qlabel DB LABELER ARGS...: label with the base policy (2 samples, 4 tokens); every
    db=$1; who=$2; shift 2   # labeler sees every prompt chosen (--overlap)
    "$B/reward" label --workspace "$db" --labeler "$who" --policy base --k 2 --max-new 4 --overlap 99 \
        --judge "$PY judge.py 0 len $who.log" "$@" > out 2> err
}
"$B/reward" import --workspace q.db qa.jsonl qd.jsonl > out 2> err &&
    grep -q "qd.jsonl: the demonstrations' prompts are not queued" err &&
    "$B/reward" import --workspace q.db --source bsrc qb.jsonl > out 2> err &&
    qlabel q.db all && [ "$(labeled q.db all)" = \
        "B prompt 0,B prompt 1,B prompt 2,Q prompt 0,Q prompt 1,Q prompt 2,Q prompt 3" ] &&
    ok "import: demonstrations' prompts are not queued for labeling (a prompt line queues its prompt)" ||
        bad "import: demonstrations queued: $(labeled q.db all)"
"$B/reward" import --workspace qd.db --label-demos qd.jsonl > out 2> err &&
    ! grep -q "not queued" err && qlabel qd.db all &&
    [ "$(labeled qd.db all)" = "D prompt 0,D prompt 1,D prompt 2,Q prompt 0" ] &&
    ok "import --label-demos: the demonstrations' prompts are queued" || bad "import --label-demos"
qlabel q.db src --source bsrc && [ "$(labeled q.db src)" = "B prompt 0,B prompt 1,B prompt 2" ] &&
    qlabel q.db demo --source qd.jsonl &&
    [ "$(labeled q.db demo)" = "D prompt 0,D prompt 1,D prompt 2,Q prompt 0" ] &&
    ok "label --source: only that source's prompts (import --source, else the file's name; queued or not)" ||
        bad "label --source: $(labeled q.db src) / $(labeled q.db demo)"
qlabel q.db sp --source qa.jsonl --split valid && [ "$(labeled q.db sp)" = "Q prompt 1,Q prompt 3" ] &&
    qlabel q.db v --split valid && [ "$(labeled q.db v)" = "Q prompt 1,Q prompt 3" ] &&
    ok "label --split, alone and with --source: only that split's prompts" ||
        bad "label --split: $(labeled q.db sp) / $(labeled q.db v)"
qlabel q.db pj --prompts pick.jsonl && [ "$(labeled q.db pj)" = "B prompt 2,D prompt 0,Q prompt 1" ] &&
    grep -q "pick.jsonl: 1 of its prompts are not in the workspace" err &&
    qlabel q.db pt --prompts pick.txt && [ "$(labeled q.db pt)" = "D prompt 1,Q prompt 3" ] &&
    qlabel q.db pand --prompts pick.jsonl --source qa.jsonl --split valid &&
    [ "$(labeled q.db pand)" = "Q prompt 1" ] &&
    ok "label --prompts FILE (.jsonl or one per line): only its prompts; with --source and --split: all three" ||
        bad "label --prompts: $(labeled q.db pj) / $(labeled q.db pt) / $(labeled q.db pand)"
expect_fail "label --source that gave no prompt" 1 "source 'nope': no prompt of the workspace" \
    "$B/reward" label --workspace q.db --labeler x --source nope --judge true
expect_fail "label --source ''" 1 "source is empty" "$B/reward" label --workspace q.db \
    --labeler x --source "" --judge true
expect_fail "label --prompts with no prompt of the workspace" 1 \
    "none.txt: none of its 2 prompts is in the workspace" "$B/reward" label --workspace q.db \
    --labeler x --prompts none.txt --judge true
expect_fail "label --prompts that does not exist" 1 "prompts nope.txt: No such file" \
    "$B/reward" label --workspace q.db --labeler x --prompts nope.txt --judge true
expect_fail "label --prompts: a .jsonl line without \"prompt\"" 1 "badpick.jsonl:2: expected" \
    "$B/reward" label --workspace q.db --labeler x --prompts badpick.jsonl --judge true
expect_fail "import --source ''" 1 "source is empty" "$B/reward" import --workspace q.db \
    --source "" qb.jsonl
[ "$(labeled q.db x)" = "" ] && ok "label: a bad choice of prompts ranks nothing" ||
    bad "label: bad choice ranked $(labeled q.db x)"

# rankings keyed to the policy's contents: a rerun with the same contents samples nothing new; a
# policy retrained at the same path gets its own completions and rankings; nothing is lost
cat > kp.yaml <<'YAML'
model: {init: base}
out: {dir: kp}
data: {format: jsonl, train: [qd.jsonl, qd.jsonl, qd.jsonl], valid_percent: 0}
train: {batch_size: 4, steps: 2, lr: 1e-2, seed: 1}
eval: {every: 100}
YAML
count_k() { sql k.db "select (select count(*) from completions), (select count(*) from rankings)" |
    tr '|' ' ' ; }
klabel() { "$B/reward" label --workspace k.db --labeler kj --policy kp/last --k 3 --max-new 6 \
    --temperature 2 --judge "$PY judge.py 0 len k.log" > out 2> err; }
"$B/sft" -c kp.yaml > out 2> err && "$B/reward" import --workspace k.db qb.jsonl > out 2> err &&
    klabel && first=$(count_k) && [ "$first" = "9 3" ] &&
    klabel && [ "$(count_k)" = "$first" ] && [ "$(wc -l < k.log)" = 3 ] &&
    ok "label --policy rerun with the same contents: nothing sampled, nothing ranked again" ||
        bad "label --policy rerun: $first then $(count_k)"
rm -rf kp && "$B/sft" -c kp.yaml --set train.seed=2 --set train.lr=3e-2 > out 2> err &&
    klabel && second=$(count_k) && set -- $second && [ "$1" -gt 9 ] && [ "$2" = 6 ] &&
    [ "$(wc -l < k.log)" = 6 ] && klabel && [ "$(count_k)" = "$second" ] &&
    ok "label --policy after the policy was retrained at the same path: new completions sampled and ranked, the old kept" ||
        bad "label --policy retrained: $first then $second then $(count_k)"
# each ranking ranks completions its policy's contents sampled; two contents, three rankings each
[ "$(sql k.db "select count(*) from rankings r where r.policy_hash <> '' and not exists
    (select 1 from ranking_items i where i.ranking_id = r.id and not exists (select 1 from
    completion_policies c where c.completion_id = i.completion_id and c.policy_hash =
    r.policy_hash))")" = 6 ] &&
    [ "$(sql k.db "select count(*) from (select policy_hash from rankings group by policy_hash
        having count(*) = 3)")" = 2 ] &&
    [ "$(sql k.db "select count(*) from completion_policies")" = 18 ] &&
    ok "label --policy: completions and rankings record the policy's contents hash" ||
        bad "label --policy: contents hash rows"

# ---------------------------------------------------------------------------------------------
# the terminal: a pseudo-terminal with scripted keystrokes
cat > ptydrive.py <<'PY'
# ptydrive.py SCRIPT.json CMD...: runs CMD on a pseudo-terminal; SCRIPT is [[expect, send], ...]; send
# "KILL" kills it with SIGKILL. Prints the transcript; exit 1 when an expected text never comes.
import json, os, pty, select, signal, sys, time
steps = json.load(open(sys.argv[1]))
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
buf, pos, rc = b"", 0, 0
def expect(pat, timeout=20):
    global buf, pos
    end = time.time() + timeout
    while True:
        i = buf.find(pat.encode(), pos)
        if i >= 0:
            pos = i + len(pat); return True
        r, _, _ = select.select([fd], [], [], max(0, end - time.time()))
        if not r: return False
        try: data = os.read(fd, 4096)
        except OSError: return False
        if not data: return False
        buf += data
for pat, send in steps:
    if not expect(pat):
        sys.stderr.write("never saw %r\n" % pat); rc = 1; os.kill(pid, signal.SIGKILL); break
    if send == "KILL":
        os.kill(pid, signal.SIGKILL); break
    os.write(fd, send.encode())
try:
    while True:
        r, _, _ = select.select([fd], [], [], 5)
        if not r: break
        data = os.read(fd, 4096)
        if not data: break
        buf += data
except OSError: pass
_, status = os.waitpid(pid, 0)
sys.stdout.write(buf.decode("utf-8", "replace"))
sys.exit(rc)
PY
mkws tty.db 5 3
P="q quit> "
cat > keys.json <<EOF
[["$P", "2>1=3\n"], ["saved: 2>1=3", ""], ["$P", "x\n"], ["expected a completion number", ""], ["$P", "3>2>1 # wrong\n"],
 ["saved: 3>2>1", ""], ["$P", "u\n"], ["undone", ""], ["$P", "1>2>3 # nice\n"], ["saved: 1>2>3", ""], ["$P", "s\n"],
 ["skipped", ""], ["$P", "q\n"]]
EOF
$PY ptydrive.py keys.json "$B/reward" label --workspace tty.db \
    --labeler alice > transcript 2> err &&
    grep -q "\[3\] www" transcript &&
$PY - "$W/tty.db" > out 2>&1 <<'PY' && ok "terminal: exactly what was typed is stored (ranking, bad input re-asked, undo, re-rank, comment, skip, quit)" || bad "terminal: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
q = """select p.text, r.comment, group_concat(i.rank, ',') from rankings r join labelers l on l.id = r.labeler_id
       join prompts p on p.id = r.prompt_id join ranking_items i on i.ranking_id = r.id
       where l.name = 'alice' group by r.id order by r.id"""
got = [(p, c, [int(x) for x in ranks.split(",")]) for p, c, ranks in db.execute(q)]
# group_concat follows the items' order; compare by completion id instead
got = []
for rid, p, c in db.execute("select r.id, p.text, r.comment from rankings r join labelers l on l.id = r.labeler_id join prompts p on p.id = r.prompt_id where l.name = 'alice' order by r.id"):
    got.append((p, c, [rk for (rk,) in db.execute("select rank from ranking_items where ranking_id = ? order by completion_id", (rid,))]))
want = [("Label prompt 0", "", [2, 1, 2]), ("Label prompt 1", "nice", [1, 2, 3])]
assert got == want, got
skips = db.execute("select p.text from claims c join prompts p on p.id = c.prompt_id join labelers l on l.id = c.labeler_id where l.name = 'alice' and skipped = 1").fetchall()
assert skips == [("Label prompt 2",)], skips
active = db.execute("select count(*) from claims c join labelers l on l.id = c.labeler_id where l.name = 'alice' and skipped = 0").fetchone()[0]
assert active == 0, active   # quit gave prompt 3 back
print("ok")
PY

# killed mid-session: what was committed stays; the next session resumes with the claimed prompt
cat > keys2.json <<EOF
[["$P", "1>2>3\n"], ["saved: 1>2>3", ""], ["$P", "3=2>1\n"], ["saved: 2=3>1", ""], ["$P", "KILL"]]
EOF
$PY ptydrive.py keys2.json "$B/reward" label --workspace tty.db --labeler carol > transcript2 2> err
[ "$(sql tty.db "select count(*) from rankings r join labelers l on l.id = r.labeler_id where \
    l.name = 'carol'")" = 2 ] &&
    [ "$(sql tty.db "select group_concat(rank, '') from \
        (select i.rank from rankings r join labelers l on l.id = r.labeler_id join ranking_items i on i.ranking_id = r.id where l.name = 'carol' order by r.id, i.completion_id)")" = 123211 ] &&
    [ "$(sql tty.db 'pragma integrity_check')" = ok ] &&
        ok "terminal killed with SIGKILL: both rankings entered before it are stored" ||
        bad "killed labeler"
shown=$(sql tty.db "select p.text from claims c join prompts p on p.id = c.prompt_id join labelers l on l.id = c.labeler_id where l.name = 'carol' and skipped = 0")
cat > keys3.json <<EOF
[["$P", "q\n"]]
EOF
$PY ptydrive.py keys3.json "$B/reward" label --workspace tty.db --labeler carol > transcript3 2> err
grep -q "$shown" transcript3 &&
    ok "the next session of that labeler starts with the prompt it was shown ($shown)" ||
    bad "resumed claim ($shown)"

# training on a terminal draws a progress bar
cat > keys4.json <<EOF
[["reward [", ""], ["held-out loss", ""], ["done:", ""]]
EOF
$PY ptydrive.py keys4.json "$B/reward" train -c rm.yaml --set out.dir=ttyrun --set train.steps=12 \
    --set eval.every=6 > transcript4 2> err &&
    ok "train on a terminal: a progress bar, then the held-out lines" ||
        bad "progress bar on a terminal"

# ---------------------------------------------------------------------------------------------
# bad inputs
expect_fail "reward without a command" 2 "usage" "$B/reward"
expect_fail "an unknown command" 2 "unknown command" "$B/reward" frobnicate
expect_fail "import without --workspace" 2 "required" "$B/reward" import rank.jsonl
expect_fail "import of a missing file" 1 "nope.jsonl" "$B/reward" import --workspace ws.db \
    nope.jsonl
expect_fail "import with an unknown option" 2 "unknown option" "$B/reward" import \
    --workspace ws.db --frob rank.jsonl
expect_fail "import --split bogus" 1 "expected train, valid or test" "$B/reward" import \
    --workspace ws.db --split dev rank.jsonl
expect_fail "import --valid-percent 200" 1 "valid-percent" "$B/reward" import --workspace ws.db \
    --valid-percent 200 rank.jsonl
: > empty.jsonl
expect_fail "import of an empty file" 1 "no rankings" "$B/reward" import --workspace ws.db \
    empty.jsonl
echo "not a database" > notdb.db
expect_fail "import into a file that is not a database" 1 "notdb.db" "$B/reward" import \
    --workspace notdb.db rank.jsonl
expect_fail "label without --labeler" 2 "required" "$B/reward" label --workspace lab.db
expect_fail "label --split bogus" 1 "expected train, valid or test" "$B/reward" label \
    --workspace lab.db --labeler x --split dev
expect_fail "label --k 1" 1 "--k" "$B/reward" label --workspace lab.db --labeler x --k 1 \
    --policy base
expect_fail "label --policy that does not exist" 1 "nope" "$B/reward" label --workspace lab.db \
    --labeler x --policy nope --judge true
expect_fail "label --policy that is a reward model" 1 "no LM head" "$B/reward" label \
    --workspace lab.db --labeler x --policy run/final --judge true
expect_fail "train without a config" 2 "usage" "$B/reward" train
expect_fail "train without model.init" 1 "model.init is required" "$B/reward" train -c rm.yaml \
    --set model.init= --set out.dir=o1
printf 'trian: {lr: 0.1}\n' > badkey.yaml
expect_fail "train: an unknown key is an error" 1 "trian" "$B/reward" train -c badkey.yaml
printf 'train: {lr: fast}\n' > badcfg.yaml
expect_fail "train: a wrong type names file:line:column" 1 "badcfg.yaml:1:" "$B/reward" \
    train -c badcfg.yaml
expect_fail "train: a bad --set names the override" 1 "train.batch_size" "$B/reward" \
    train -c rm.yaml --set train.batch_size=0
expect_fail "train: a workspace without rankings" 1 "no training rankings" "$B/reward" \
    train -c rm.yaml --set workspace=empty.db --set out.dir=o9
expect_fail "train: a missing checkpoint" 1 "nope" "$B/reward" train -c rm.yaml \
    --set model.init=nope --set out.dir=o3
expect_fail "train: resuming into another configuration is refused" 1 "another configuration" \
    "$B/reward" train -c rm.yaml --set train.lr=1e-3
expect_fail "train: seq_len beyond the context" 1 "exceeds the model's context" "$B/reward" \
    train -c rm.yaml --set train.seq_len=100 --set out.dir=o4
expect_fail "train: bias.source demonstrations without any" 1 "has none" "$B/reward" \
    train -c rm.yaml --set workspace=two.db --set out.dir=o5 --set bias.source=demonstrations \
    --set train.steps=2
expect_fail "score without a checkpoint" 2 "CKPT is required" "$B/reward" score --workspace ws.db
expect_fail "score with both --workspace and --input" 2 "one of them" "$B/reward" score run/final \
    --workspace ws.db --input demos.jsonl
expect_fail "score with a model that has no score head" 1 "no score head" "$B/reward" score base \
    --input demos.jsonl
expect_fail "score with a missing checkpoint" 1 "nope" "$B/reward" score nope --input demos.jsonl
printf '{"prompt": "a", "completion": "b"}\n{"prompt": "a"}\n' > badin.jsonl
expect_fail "score: a bad input line names file:line" 1 "badin.jsonl:2" "$B/reward" score \
    run/final --input badin.jsonl
expect_fail "score --batch 0" 1 "--batch" "$B/reward" score run/final --input demos.jsonl --batch 0
expect_fail "inspect without --workspace" 2 "required" "$B/reward" inspect run/final
expect_fail "inspect with a model that has no score head" 1 "no score head" "$B/reward" inspect \
    base --workspace ws.db
expect_fail "inspect --top -1" 1 "--top" "$B/reward" inspect run/final --workspace ws.db --top -1
# prompt-only and {"prompt", "response"} lines: prompts to label and demonstrations for the bias
printf '{"prompt": "Label me"}\n{"prompt": "Teach me", "response": "like this"}\n' > pd.jsonl
"$B/reward" import --workspace pd.db pd.jsonl > out 2> err &&
    grep -q "0 rankings, 1 prompts, 1 demonstrations" err &&
    [ "$(python3 -c "import sqlite3; d = sqlite3.connect('pd.db'); \
        print(d.execute('select count(*) from prompts').fetchone()[0], d.execute('select count(*) from demonstrations').fetchone()[0])")" = "2 1" ] &&
    ok "import: prompt-only and demonstration lines" ||
        bad "import: prompt-only and demonstration lines"
lib_summary
