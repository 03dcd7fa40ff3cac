#!/bin/sh
# The demo's data generator, judge and evaluation end to end (`rlhf data demo`, `rlhf judge`,
# `rlhf eval-policy`): the generator is deterministic (same seed, byte-identical files) with
# disjoint prompt sets; the judge ranks by correctness without noise, agrees with its noiseless
# self on about 1-P of the pairs with noise P, and answers every malformed line with an error
# line; eval-policy on tiny models prints a complete table and parsable JSON, a policy against
# itself wins exactly half, figures land in the workspace database, bad arguments are errors.
. "$PWD/tests/lib.sh"
# tiny models: one thread is fastest, and spinning OpenMP threads crawl on a busy machine
export OMP_NUM_THREADS=1
lib_workspace
cd "$W" || exit 1
for c in data judge eval-policy; do
    "$R" $c --help > out 2>err && grep -q "usage: rlhf $c" out && ok "rlhf $c --help" ||
        bad "rlhf $c --help"
done
"$R" --help | grep -q "eval-policy" && ok "rlhf --help lists data, judge and eval-policy" ||
    bad "rlhf --help"
SIZES="--n-pretrain 300 --n-sft 400 --n-rm 60 --n-prompts 120 --n-eval 40"

# 1. deterministic and disjoint
"$R" data demo --out d1 --seed 7 $SIZES 2>err && "$R" data demo --out d2 --seed 7 $SIZES 2>>err &&
    "$R" data demo --out d3 --seed 8 $SIZES 2>>err || bad "data demo runs"
same=1
for f in pretrain.txt pretrain_valid.txt sft.jsonl rm_prompts.jsonl ppo_prompts.jsonl \
    eval_prompts.jsonl; do
    [ -s "d1/$f" ] && cmp -s "d1/$f" "d2/$f" || same=0
done
[ $same -eq 1 ] && ! cmp -s d1/sft.jsonl d3/sft.jsonl && ! cmp -s d1/pretrain.txt d3/pretrain.txt &&
    ok "same seed: byte-identical files; another seed: other files" || bad "determinism"
"$R" data demo --out d4 --seed 7 --n-pretrain 300 --n-sft 50 --n-rm 60 --n-prompts 120 \
    --n-eval 40 2>/dev/null
cmp -s d1/pretrain.txt d4/pretrain.txt && cmp -s d1/eval_prompts.jsonl d4/eval_prompts.jsonl &&
    ok "each file has its own random stream (changing --n-sft leaves the others)" ||
        bad "independent streams"
ls d1 | grep -q tmp && bad "temporary files left behind" || ok "no temporary files left behind"
python3 - d1 > out 2>err <<'PY' && ok "sizes, JSON, disjoint prompt sets, no eval prompt in the pretraining text: $(cat out)" || bad "data checks: $(cat out)"
import json, sys
d = sys.argv[1]
def load(name):
    return [json.loads(l) for l in open(f"{d}/{name}", encoding="utf-8")]
sft, rm, ppo, ev = load("sft.jsonl"), load("rm_prompts.jsonl"), load("ppo_prompts.jsonl"), load("eval_prompts.jsonl")
assert (len(sft), len(rm), len(ppo), len(ev)) == (400, 60, 120, 40), (len(sft), len(rm), len(ppo), len(ev))
assert all(set(x) == {"prompt", "response", "task", "style"} and x["response"] for x in sft)
assert all(set(x) == {"prompt", "task"} for x in rm + ppo) and all(set(x) == {"prompt", "task", "answer"} for x in ev)
sets = {"sft": {x["prompt"] for x in sft}, "rm": {x["prompt"] for x in rm}, "ppo": {x["prompt"] for x in ppo}, "eval": {x["prompt"] for x in ev}}
names = list(sets)
for i in range(4):
    for j in range(i + 1, 4):
        common = sets[names[i]] & sets[names[j]]
        assert not common, (names[i], names[j], sorted(common)[:3])
assert len(sets["eval"]) == 40 and len(sets["rm"]) == 60, "eval and rm prompts are distinct"
styles = {x["style"] for x in sft}
assert styles == {"concise", "verbose", "rambling", "wrong"}, styles
tasks = {x["task"] for x in sft}
assert tasks == {"add", "sub", "reverse", "sort", "count", "case", "fact"}, tasks
text = open(f"{d}/pretrain.txt", encoding="utf-8").read()
docs = text.split("<|endoftext|>")
assert len(docs) == 301 and docs[-1] == "", len(docs)
for x in ev:
    assert x["prompt"] not in text, x["prompt"]
print(f"{len(docs) - 1} documents, {len(text)} bytes")
PY

# 2. bad arguments
expect_fail "data demo without --out" 2 "out is required" "$R" data demo
expect_fail "data demo with --n-sft 0" 2 "n-sft" "$R" data demo --out x --n-sft 0
expect_fail "data demo with a bad --mix" 2 "mix" "$R" data demo --out x --mix 50,50
expect_fail "data with an unknown subcommand" 2 "unknown subcommand" "$R" data frob
touch notadir
expect_fail "data demo into a path that is a file" 1 "notadir" "$R" data demo --out notadir/sub

# 3. the judge
printf '%s\n' \
    '{"prompt":"What is 3 plus 4?","completions":["8","Sure! The answer is 7.","7","seven"]}' > req1
[ "$("$R" judge --noise 0 < req1)" = "3>2>1=4" ] &&
    ok "judge without noise: correct and short first, wrong ones tied last" || bad "judge ranking"
printf '%s\n' \
    '{"prompt":"Human: Write '"'"'cat'"'"' backwards.\n\nAssistant:","completions":["cat","tac","tac"],"id":5}' > req2
[ "$("$R" judge --noise 0 < req2)" = "2=3>1" ] &&
    ok "judge: rendered prompt recognised, identical answers tied, extra keys ignored" ||
    bad "judge ties"
printf '%s\n' \
    '{"prompt":"What is 1 plus 1?","completions":["2","2","3"],"ended":[false,true,true]}' > req3
[ "$("$R" judge --noise 0 < req3)" = "2>1>3" ] &&
    ok "judge: a completion cut off by the length limit ranks below the same text that ended" ||
    bad "judge ended"
# malformed lines: one error line each (stdout and stderr), blank lines skipped, the session goes on
printf '%s\n' 'not json' '' '{"prompt": 3, "completions": ["a"]}' '{"prompt":"x"}' '[1]' \
    '{"prompt":"x","completions":[]}' '{"prompt":"x","completions":["a",2]}' '{"prompt":"x","completions":["a"]} junk' \
    '{"prompt":"x","completions":["a","b"],"ended":[true]}' '{"prompt":"x","completions":["a"],"ended":[1]}' \
    '{"prompt":"What is 2 plus 2?","completions":["4","A very long joke that goes on and on."]}' > reqbad
"$R" judge < reqbad > out 2> err; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < out)" -eq 10 ] && [ "$(grep -c '^error: line' out)" -eq 9 ] &&
    [ "$(tail -1 out)" = "1>2" ] &&
    grep -q "stdin:4: \"completions\"" err && grep -q "stdin:1: invalid JSON" err &&
    ok "judge: each malformed line gets an error line and the next request is still ranked (exit 1)" ||
        bad "judge malformed input (exit $rc)"
python3 -c 'import sys; sys.stdout.write("{\"prompt\": \"" + "a" * (17 << 20) + "\"}\n")' > huge
printf '%s\n' '{"prompt":"What is 1 plus 1?","completions":["2","3"]}' >> huge
"$R" judge < huge > out 2>err; rc=$?
[ $rc -eq 1 ] && [ "$(head -1 out | cut -c1-20)" = "error: line 1: longe" ] &&
    [ "$(tail -1 out)" = "1>2" ] &&
    ok "judge: a 17 MB line is refused without reading it whole" || bad "judge huge line"
printf '{"prompt":"x","completions":["a\\u0000b","c"]}\n\000\n' > nul
"$R" judge < nul > out 2>err; [ "$(sed -n 2p out | cut -c1-7)" = "error: " ] &&
    ok "judge: NUL bytes are errors, escaped NULs are text" || bad "judge NUL"
expect_fail "judge with noise outside 0..0.4" 2 "noise" "$R" judge --noise 0.9
expect_fail "judge with an unknown option" 2 "unknown option" "$R" judge --frob
# noise: agreement with the noiseless judge is about 1 - P; two judges at the default agree ~73%
python3 - > reqs <<'PY'
import json, random
r = random.Random(3)
for q in range(1500):
    a, b = r.randrange(21), r.randrange(21)
    s = a + b
    comps = [str(s), f"The answer is {s}.", str(s + 1), "I do not know, sorry about that."]
    r.shuffle(comps)
    print(json.dumps({"prompt": f"What is {a} plus {b}?", "completions": comps}))
PY
"$R" judge --noise 0 < reqs > r0 && "$R" judge --noise 0.2 --seed 1 < reqs > r1 &&
    "$R" judge --noise 0.2 --seed 2 < reqs > r2 &&
    "$R" judge --seed 1 < reqs > d1r && "$R" judge --seed 2 < reqs > d2r &&
        "$R" judge --noise 0.2 --seed 1 < reqs > r1b
python3 - r0 r1 r2 d1r d2r > out 2>&1 <<'PY' && ok "judge noise: $(cat out)" || bad "judge noise: $(cat out)"
import sys
def ranks(line):
    out, g = {}, 1
    for grp in line.strip().split(">"):
        for i in grp.split("="): out[int(i)] = g
        g += 1
    return out
def agree(f1, f2):
    a = n = 0
    for l1, l2 in zip(open(f1), open(f2)):
        x, y = ranks(l1), ranks(l2)
        for i in range(1, 5):
            for j in range(i + 1, 5):
                sx, sy = (x[i] > x[j]) - (x[i] < x[j]), (y[i] > y[j]) - (y[i] < y[j])
                a += sx == sy; n += 1
    return a / n
t02, b02, t_def, b_def = agree(*sys.argv[1:3]), agree(*sys.argv[2:4]), agree(sys.argv[1], sys.argv[4]), agree(*sys.argv[4:6])
print(f"agreement with noiseless {t02:.3f} at P=0.2 (want 0.80), {t_def:.3f} at the default (want 0.825); two default judges {b_def:.3f} (want ~0.73)")
assert abs(t02 - 0.80) < 0.02 and abs(t_def - 0.825) < 0.02 and abs(b_def - 0.73) < 0.025
PY
cmp -s r1 r1b && ok "judge: same seed, same noisy rankings" || bad "judge determinism"
# the judge refuses prompts of no demo task (tests/test_eval_policy.sh); the demo pipeline never
# sends it one: every prompt `rlhf data demo` writes, at the sizes of pipelines/demo.yaml, is one
"$R" data demo --out dp --seed 1234 --n-rm 900 2>err &&
    python3 - dp/sft.jsonl dp/rm_prompts.jsonl dp/ppo_prompts.jsonl dp/eval_prompts.jsonl \
        > allreq <<'PY' || bad "demo prompts as judge requests"
import json, sys
for f in sys.argv[1:]:
    for line in open(f, encoding="utf-8"):
        print(json.dumps({"prompt": json.loads(line)["prompt"], "completions": ["1", "2"]}))
PY
"$R" judge --noise 0 < allreq > out 2>err; rc=$?
[ $rc -eq 0 ] && [ "$(wc -l < out)" -eq "$(wc -l < allreq)" ] && ! grep -q error out &&
    ok "every prompt of the demo's data ($(wc -l < allreq): sft, rm, ppo, eval) is a task the judge knows" ||
        bad "demo prompts the judge does not know (exit $rc)"

# 4. eval-policy on tiny models
"$R" tokenizer train --vocab-size 300 --out tok d1/pretrain.txt d1/sft.jsonl 2>/dev/null
"$R" init --preset tiny --n-embd 32 --n-positions 96 --tokenizer tok --seed 1 --out m1 2>/dev/null
"$R" init --preset tiny --n-embd 32 --n-positions 96 --tokenizer tok --seed 2 --out m2 2>/dev/null
"$R" init --preset tiny --n-embd 32 --n-positions 96 --tokenizer tok --seed 3 \
    --score-head --no-lm-head --out rm 2>/dev/null
EP="--prompts d1/eval_prompts.jsonl --max-new 12 --max-prompts 24 --batch 5"
"$R" eval-policy --a m1 --b m2 $EP --reward rm --reference m1 \
    --pretrain-text d1/pretrain_valid.txt > table 2>err
rc=$?
if [ $rc -eq 0 ] && grep -q "judge: A preferred to B" table && grep -q "reward-model score" table &&
    grep -q "KL to reference" table &&
   grep -q "task accuracy" table && grep -q "pretraining loss" table &&
       grep -q "alignment tax" table && grep -q "  add (" table &&
   grep -q "ended with the end token" \
       table; then ok "eval-policy prints a complete table"; else bad "eval-policy table (exit $rc)"; cat table; fi
"$R" eval-policy --a m1 --b m2 $EP --reward rm --reference m1 --pretrain-text d1/pretrain_valid.txt --json --workspace ws.db \
    --responses resp.jsonl > j12 2>err || bad "eval-policy --json"
"$R" eval-policy --a m1 --b m1 $EP --samples 2 --reference m1 \
    --pretrain-text d1/pretrain_valid.txt --json > j11 2>err ||
    bad "eval-policy self"
python3 - j12 j11 ws.db resp.jsonl > out 2>&1 <<'PY' && ok "eval-policy --json parses; A vs itself 0.5 inside its CI, KL to itself 0; run and metrics stored: $(cat out)" || bad "eval-policy json/db: $(cat out)"
import json, sqlite3, sys, math
j = json.load(open(sys.argv[1]))
for k in ("win_rate", "win_rate_ci", "a_wins", "b_wins", "ties", "a", "b", "comparisons", "pretrain_loss_ratio", "settings"):
    assert k in j, k
for p in ("a", "b"):
    for k in ("reward", "kl", "accuracy", "accuracy_by_task", "pretrain_loss", "answer_tokens", "end_rate", "checkpoint"):
        assert k in j[p] and j[p][k] is not None, (p, k)
lo, hi = j["win_rate_ci"]
assert 0 <= lo <= j["win_rate"] <= hi <= 1 and j["comparisons"] == 24 and j["a_wins"] + j["b_wins"] + j["ties"] == 24
assert j["a"]["kl"] == 0, j["a"]["kl"]
s = json.load(open(sys.argv[2]))
lo, hi = s["win_rate_ci"]
assert s["win_rate"] == 0.5 and lo <= 0.5 <= hi and s["comparisons"] == 48, s
assert s["a"]["kl"] == 0 and s["b"]["kl"] == 0 and s["a"]["pretrain_loss"] == s["b"]["pretrain_loss"]
db = sqlite3.connect(sys.argv[3])
runs = db.execute("select id, stage, status, checkpoint from runs").fetchall()
assert len(runs) == 1 and runs[0][1:] == ("eval", "done", "m1"), runs
m = dict(db.execute("select name, value from metrics where run_id = ?", (runs[0][0],)).fetchall())
assert abs(m["win_rate"] - j["win_rate"]) < 1e-12 and abs(m["a/kl"]) < 1e-12 and "b/pretrain_loss" in m and "a/accuracy/add" in m, sorted(m)
lines = [json.loads(l) for l in open(sys.argv[4])]
assert len(lines) == 48 and all(l["preferred"] in ("a", "b", "tie") for l in lines)
assert [l["generator"] for l in lines[:4]] == ["m1", "m2", "m1", "m2"], lines[:2]
assert all(l["dataset"] == "eval_prompts" and l["instruction"] and "output" in l and "task" in l and
           "correct" in l and "reward" in l for l in lines), lines[0]
assert lines[0]["instruction"] == lines[1]["instruction"] and lines[0]["preferred"] == lines[1]["preferred"]
print(f"win rate {j['win_rate']:.3f} [{j['win_rate_ci'][0]:.3f}, {j['win_rate_ci'][1]:.3f}], {len(m)} metrics")
PY
"$R" eval-policy --a m1 --b m2 $EP --json > j12b 2>/dev/null &&
    "$R" eval-policy --a m1 --b m2 $EP --json > j12c 2>/dev/null &&
    cmp -s j12b j12c && ok "eval-policy: same seed, same result" || bad "eval-policy determinism"

# 5. eval-policy errors
expect_fail "eval-policy without --b" 2 "required" "$R" eval-policy --a m1 \
    --prompts d1/eval_prompts.jsonl
expect_fail "eval-policy with --samples 0" 2 "samples" "$R" eval-policy --a m1 --b m2 \
    --prompts d1/eval_prompts.jsonl --samples 0
expect_fail "eval-policy with a missing checkpoint" 1 "nope" "$R" eval-policy --a m1 --b nope $EP
printf '{"prompt": "What is 1 plus 1?"}\n{"promt": "x"}\n' > badp.jsonl
expect_fail "eval-policy with a bad prompts line names file:line" 1 "badp.jsonl:2" "$R" \
    eval-policy --a m1 --b m2 --prompts badp.jsonl
: > empty.jsonl
expect_fail "eval-policy with no prompts" 1 "no prompts" "$R" eval-policy --a m1 --b m2 \
    --prompts empty.jsonl
expect_fail "eval-policy with a reward model without a score head" 1 "score head" "$R" eval-policy \
    --a m1 --b m2 $EP --reward m2
expect_fail "eval-policy with a reward model as a policy" 1 "without an LM head" "$R" eval-policy \
    --a rm --b m2 $EP --tokenizer tok
expect_fail "eval-policy past the context" 1 "exceeds the context" "$R" eval-policy --a m1 --b m2 \
    --prompts d1/eval_prompts.jsonl --max-new 200
expect_fail "eval-policy with a missing text file" 1 "nothere.txt" "$R" eval-policy --a m1 --b m2 \
    $EP --pretrain-text nothere.txt

# 6. eval-policy targets: each figure against its target; a missed one exits 1 and names it
TG="--a m1 --b m1 $EP --reward rm"
"$R" eval-policy $TG --target-win-rate 0.4 --target-end-rate 0 \
    --target-accuracy-drop 0 > out 2>err &&
    grep -q "targets: all met" out && grep -q "A preferred to B .*0.500 >= *0.400  ok" out &&
    ok "eval-policy: targets met (A vs itself 0.5 >= 0.4): exit 0, each figure printed" ||
        bad "eval-policy targets met"
"$R" eval-policy $TG --target-win-rate 0.65 --target-end-rate 0 > out 2>err; rc=$?
[ $rc -eq 1 ] && grep -q "targets: MISSED" out &&
    [ "$(grep "^rlhf eval-policy:" err | grep -vc "^rlhf eval-policy: warning: 24 of 24 comparisons")" -eq 1 ] &&
    grep -q "^rlhf eval-policy: alignment failed: A preferred to B 0.500, target >= 0.650$" err &&
    ok "eval-policy: a missed target exits 1 with the reason on one line: $(grep alignment err)" ||
        bad "eval-policy missed target (exit $rc)"
"$R" eval-policy $TG --target-win-rate 0.65 --json > out 2>err; rc=$?
[ $rc -eq 1 ] && python3 -c "import json,sys; json.load(open(sys.argv[1]))" out &&
    grep -q "alignment failed" err &&
    ok "eval-policy --json with a missed target: stdout stays one JSON object, exit 1, the reason on stderr" ||
        bad "targets with --json (exit $rc)"
"$R" eval-policy $TG --target-win-lo 0.5 --target-end-rate 1.01 > out 2>err; rc=$?
[ $rc -eq 2 ] && grep -q "target-end-rate" err &&
    ok "eval-policy: a target out of range is an error" || bad "target range (exit $rc)"
"$R" eval-policy $TG --target-win-lo 0.5 > out 2>err; rc=$?
[ $rc -eq 1 ] && grep -q "alignment failed: its 95% interval's low end .*, target > 0.500$" err &&
    ok "eval-policy: the interval's lower end must be above its target" ||
    bad "eval-policy --target-win-lo (exit $rc)"
expect_fail "eval-policy --target-rm-accuracy without --workspace" 2 "needs --reward and --workspace" \
    "$R" eval-policy $TG --target-rm-accuracy 0.7
expect_fail "eval-policy --target-rm-accuracy with no reward run recorded" 1 "no finished reward run" \
    "$R" eval-policy $TG --target-rm-accuracy 0.7 --workspace ws.db
python3 - ws.db "$W/rm" <<'PY' 2>err || bad "recording a reward run"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
run = db.execute("INSERT INTO runs(stage, status, checkpoint, started, finished, exit_code) VALUES ('reward', 'done', ?, 0, 1, 0)",
                 (sys.argv[2],)).lastrowid
db.executemany("INSERT INTO metrics(run_id, name, step, value, time) VALUES (?, 'valid/accuracy', ?, ?, 0)", [(run, 10, 0.9), (run, 20, 0.6)])
db.commit()
PY
"$R" eval-policy $TG --target-rm-accuracy 0.7 --workspace ws.db > out 2>err; rc=$?
[ $rc -eq 1 ] && grep -q "reward-model accuracy 0.600, target >= 0.700" err &&
    ok "eval-policy: the reward model's held-out accuracy is its run's last valid/accuracy (0.6 < 0.7: exit 1)" ||
        bad "rm accuracy target (exit $rc)"
"$R" eval-policy $TG --target-rm-accuracy 0.55 --workspace ws.db > out 2>err &&
    grep -q "reward-model accuracy .*0.600 >= *0.550  ok" out &&
        ok "eval-policy: reward-model accuracy target met" || bad "rm accuracy target met"
lib_summary
