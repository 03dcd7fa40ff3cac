#!/bin/sh
# `rlhf eval-policy` on prompts of any task: an external judge (reward label's judge protocol,
# each pair asked in both orders: A wins only when preferred in both), an external gold scorer
# (one number per answer: means and A - B with its interval, --target-score-gain), task accuracy
# only on the prompts that are demo tasks, the warning when ties pass 20%, the --responses file
# in AlpacaEval's fields, the demo's judge refusing prompts it does not know, and every way a
# judge or a scorer can fail: one line naming the prompt, exit 1. Tiny models, a few seconds.
. "$PWD/tests/lib.sh"
export OMP_NUM_THREADS=1
lib_workspace
cd "$W" || exit 1
PY=python3
JUDGE="$PY $FIX/eval_judge.py"
SCORE="$PY $FIX/eval_score.py"

"$R" data demo --out d --seed 7 --n-pretrain 300 --n-sft 400 --n-rm 60 --n-prompts 120 \
    --n-eval 40 2>err || bad "data demo"
"$R" tokenizer train --vocab-size 300 --out tok d/pretrain.txt d/sft.jsonl 2>/dev/null
for s in 1 2; do
    "$R" init --preset tiny --n-embd 32 --n-positions 96 --tokenizer tok --seed $s --out m$s \
        2>/dev/null || bad "init m$s"
done
# prompts of no demo task (the first two), and a file mixing them with demo tasks
cat > mine.jsonl <<'EOF'
{"prompt": "Tell me about the sea."}
{"prompt": "Write a line about a cat."}
{"prompt": "Name a colour you like."}

{"prompt": "Describe a small town."}
{"prompt": "Give me a word that rhymes with moon."}
{"prompt": "What do birds eat?"}
EOF
{ grep . mine.jsonl | head -4; head -3 d/eval_prompts.jsonl; } > mixed.jsonl
EP="--max-new 10 --batch 4"

# 1. the demo's judge refuses prompts it does not know, naming the first one and --judge
expect_fail "eval-policy on prompts of no demo task without --judge: refused, naming --judge" 1 \
    "mine.jsonl:1 (\"Tell me about the sea.\") is not one of the demo's tasks (6 of 6 prompts.*--judge" \
    "$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP
expect_fail "...and on a file where only some are demo tasks" 1 "(4 of 7 prompts are not)" \
    "$R" eval-policy --a m1 --b m2 --prompts mixed.jsonl $EP
printf '%s\n' '{"messages": [{"role": "user", "content": "Tell me about the sea."}]}' > conv.jsonl
expect_fail "prompts as message lists are read (here refused by the demo's judge)" 1 \
    "conv.jsonl:1 (.*Tell me about the sea.*) is not one of the demo's tasks (1 of 1 prompts" \
    "$R" eval-policy --a m1 --b m2 --prompts conv.jsonl $EP
printf '%s\n' '{"prompt": "x"}' '{"prompt": [{"role": "bot", "content": "x"}]}' > role.jsonl
expect_fail "a message-list prompt with an unknown role names file:line" 1 \
    "role.jsonl:2: messages\[0\].role must be" "$R" eval-policy --a m1 --b m2 --prompts role.jsonl $EP
printf '%s\n' '{"prompt":"Tell me a joke.","completions":["Ha.","A very long joke."]}' \
    '{"prompt":"What is 1 plus 1?","completions":["3","2"]}' > jreq
"$R" judge --noise 0 < jreq > out 2>err; rc=$?
[ $rc -eq 1 ] && [ "$(head -1 out | cut -c1-20)" = "error: line 1: the p" ] &&
    grep -q "stdin:1: the prompt \"Tell me a joke.\" is not one of the demo's tasks" err &&
    [ "$(tail -1 out)" = "2>1" ] &&
    ok "rlhf judge on a prompt of no demo task: an error line naming it, exit 1 (the next is ranked)" ||
        bad "rlhf judge on an unknown prompt (exit $rc)"
"$R" judge --explain < jreq > out 2>err
grep -q "line 2: add, answer 2 -> 2>1" err && ok "rlhf judge --explain still explains demo tasks" ||
    bad "rlhf judge --explain"

# 2. an external judge: both orders asked, the verdict as worked out by hand from the answers
"$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP --judge "$JUDGE longer j1.log" \
    --score "$SCORE len s1.log" --json --responses resp.jsonl --workspace ws.db > j1 2>err ||
    bad "eval-policy --judge --score --json"
$PY - j1 j1.log resp.jsonl s1.log ws.db > out 2>&1 <<'PY' && ok "external judge: each pair asked A first then B first; verdict, win rate and gold scores as computed by hand, and recorded: $(cat out)" || bad "external judge: $(cat out)"
import json, sys
j = json.load(open(sys.argv[1]))
reqs = [json.loads(l) for l in open(sys.argv[2])]
resp = [json.loads(l) for l in open(sys.argv[3])]
sreq = [json.loads(l) for l in open(sys.argv[4])]
assert len(resp) == 12 and len(reqs) == 12 and len(sreq) == 12, (len(resp), len(reqs), len(sreq))
a = [r for r in resp if r["policy"] == "a"]
b = [r for r in resp if r["policy"] == "b"]
assert [r["generator"] for r in a] == ["m1"] * 6 and [r["generator"] for r in b] == ["m2"] * 6
assert all(set(("instruction", "output", "generator", "dataset")) <= set(r) for r in resp)
assert all(r["dataset"] == "mine" for r in resp)
assert all("task" not in r and "correct" not in r for r in resp), "no demo grades on other prompts"
assert [r["instruction"] for r in a][:2] == ["Tell me about the sea.", "Write a line about a cat."]
assert [r["prompt_line"] for r in a] == [1, 2, 3, 5, 6, 7]
wins = 0.0
for i in range(6):
    x, y = a[i]["output"], b[i]["output"]
    r1, r2 = reqs[2 * i], reqs[2 * i + 1]
    assert r1["completions"] == [x, y] and r2["completions"] == [y, x], i   # both orders
    assert r1["prompt"] == a[i]["instruction"] and r1["prompt_id"] == i + 1
    assert r1["ended"] == [a[i]["ended"], b[i]["ended"]]
    # "longer", equal lengths to the one shown first: A wins when strictly longer
    want = 1.0 if len(x) > len(y) else 0.0 if len(y) > len(x) else 0.5
    got = {"a": 1.0, "b": 0.0, "tie": 0.5}[a[i]["preferred"]]
    assert got == want == {"a": 1.0, "b": 0.0, "tie": 0.5}[b[i]["preferred"]], (i, x, y, got)
    assert (a[i]["preferred_a_first"], a[i]["preferred_b_first"]) == (
        ("a", "a") if want == 1 else ("b", "b") if want == 0 else ("a", "b")), i
    wins += want
assert abs(j["win_rate"] - wins / 6) < 1e-12, (j["win_rate"], wins)
ties = sum(1 for r in a if r["preferred"] == "tie")
assert j["ties"] == ties and j["judge_consistent"] == 6 - ties, j
lo, hi = j["win_rate_ci"]
assert lo <= j["win_rate"] <= hi
# the scorer: A's answers, then B's, each scored by its length
assert [s["completion"] for s in sreq] == [r["output"] for r in a] + [r["output"] for r in b]
ma = sum(len(r["output"]) for r in a) / 6
mb = sum(len(r["output"]) for r in b) / 6
assert abs(j["a"]["score"] - ma) < 1e-9 and abs(j["b"]["score"] - mb) < 1e-9, (j["a"]["score"], ma)
assert abs(j["score_gain"] - (ma - mb)) < 1e-9 and all(r["score"] == len(r["output"]) for r in resp)
glo, ghi = j["score_gain_ci"]
assert glo <= j["score_gain"] <= ghi
assert j["demo_prompts"] == 0 and j["a"]["accuracy"] is None
import sqlite3
m = dict(sqlite3.connect(sys.argv[5]).execute("select name, value from metrics").fetchall())
assert m["win_rate"] == j["win_rate"] and m["a/score"] == j["a"]["score"], m
assert m["score_gain"] == j["score_gain"] and m["judge_consistent"] == 6 - ties and m["demo_prompts"] == 0
assert "a/accuracy" not in m, "no accuracy recorded without demo tasks"
print(f"win rate {j['win_rate']:.3f} ({ties} ties), scores {ma:.2f} vs {mb:.2f}")
PY

# 3. the table: no demo accuracy on other prompts; accuracy on the demo tasks of a mixed file
"$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP --judge "$JUDGE longer j2.log" \
    --score "$SCORE len" > table 2>err
grep -q "task accuracy  *not demo tasks; use --score" table && ! grep -q "task accuracy  *- *-" table &&
    grep -q "gold score (--score)" table && grep -q "difference A - B" table &&
    grep -q "judge consistency" table &&
    ok "table: a gold score with its difference, no demo accuracy ('not demo tasks; use --score')" ||
        bad "table on other prompts: $(cat table)"
"$R" eval-policy --a m1 --b m2 --prompts mixed.jsonl $EP --judge "$JUDGE longer j3.log" \
    --json > jm 2>err
"$R" eval-policy --a m1 --b m2 --prompts mixed.jsonl $EP --judge "$JUDGE longer j3.log" \
    > table 2>err
$PY -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["demo_prompts"] == 3 and j["a"]["accuracy"] is not None' jm &&
    grep -q "task accuracy (3 demo)" table && grep -q "3 of 7 prompts are demo tasks" table &&
    ok "table: demo accuracy on the 3 demo tasks of 7 prompts, saying how many" ||
        bad "mixed prompts: $(cat table)"
expect_fail "--target-accuracy-drop on prompts of no demo task: an error" 1 \
    "none of the prompts is a demo task" "$R" eval-policy --a m1 --b m2 --prompts mine.jsonl \
    $EP --judge "$JUDGE longer j.log" --target-accuracy-drop 0

# 4. the demo's judge as an external judge gives the built-in verdict (noiseless, no position
# bias: both orders agree)
"$R" eval-policy --a m1 --b m2 --prompts d/eval_prompts.jsonl $EP --json > jb 2>err &&
    "$R" eval-policy --a m1 --b m2 --prompts d/eval_prompts.jsonl $EP --json \
        --judge "$R judge --noise 0" > je 2>err &&
$PY - jb je > out 2>&1 <<'PY' && ok "rlhf judge through --judge agrees with the built-in judge: $(cat out)" || bad "built-in vs external: $(cat out)"
import json, sys
b, e = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
for k in ("win_rate", "win_rate_ci", "a_wins", "b_wins", "ties"):
    assert b[k] == e[k], (k, b[k], e[k])
assert e["judge_consistent"] == e["a_wins"] + e["b_wins"]
print(f"win rate {b['win_rate']:.3f}, ties {b['ties']} of {b['comparisons']}")
PY

# 5. ties: a judge that always prefers the answer shown first ties every pair (both orders);
# more than 20% ties is warned about on stderr and in the output
"$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP --judge "$JUDGE first j4.log" \
    > table 2>err
grep -q "warning: 6 of 6 comparisons (100.0%) are ties" err &&
    grep -q "^  warning: 6 of 6 comparisons (100.0%) are ties, more than 20%" table &&
    grep -q "judge: A preferred to B *0.500 .*ties 6" table &&
    grep -q "0 of 6 pairs the same in both orders; the answer shown first won 12 of 12" table &&
    ok "a judge with position bias only: every pair a tie (0.5), the ties warning on stderr and in the table" ||
        bad "ties warning: $(cat table)"
"$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP --judge "$JUDGE first j5.log" --json \
    > out 2>err
$PY -c 'import json,sys; j=json.load(open(sys.argv[1])); assert len(j["warnings"]) == 1 and "ties" in j["warnings"][0]' out &&
    ok "--json: the ties warning in \"warnings\"" || bad "ties warning in JSON"

# 6. targets on the gold score
"$R" eval-policy --a m1 --b m1 --prompts mine.jsonl $EP --judge "$JUDGE longer j.log" \
    --score "$SCORE len" --target-score-gain 0 > out 2>err &&
    grep -q "gold score gain A - B *0.000 >= 0.000  ok" out &&
    ok "--target-score-gain met (A against itself: gain 0 >= 0)" || bad "score target met"
"$R" eval-policy --a m1 --b m1 --prompts mine.jsonl $EP --judge "$JUDGE longer j.log" \
    --score "$SCORE len" --target-score-gain 0.5 > out 2>err; rc=$?
[ $rc -eq 1 ] &&
    grep -q "^rlhf eval-policy: alignment failed: gold score gain A - B 0.000, target >= 0.500$" err &&
    ok "--target-score-gain missed: exit 1 naming it" || bad "score target missed (exit $rc)"
expect_fail "--target-score-gain without --score" 2 "needs --score" "$R" eval-policy --a m1 \
    --b m2 --prompts mine.jsonl --judge "$JUDGE longer j.log" --target-score-gain 0

# 7. every way a judge or a scorer fails: one line naming the prompt (FILE:LINE), exit 1
fails() {   # NAME PATTERN ARGS...: exit 1, one "rlhf eval-policy:" error line matching PATTERN
    name=$1; pat=$2; shift 2
    "$R" eval-policy --a m1 --b m2 --prompts mine.jsonl $EP "$@" > out 2> err; rc=$?
    n=$(grep "^rlhf eval-policy: " err | grep -vc "^rlhf eval-policy: judging\|^rlhf eval-policy: scoring")
    if [ $rc -eq 1 ] && [ "$n" -eq 1 ] && tail -1 err | grep -q -- "^rlhf eval-policy: $pat"; then
        ok "$name: $(tail -1 err | cut -c1-150)"
    else echo "    exit $rc, $n lines"; bad "$name"; fi
}
fails "a judge that exits 1" \
    "the judge (.*) exited with status 1 without answering mine.jsonl:2 (\"Write a line about a cat.\") (B first)" \
    --judge "$JUDGE exit3 j.log"
fails "a judge answering garbage" \
    "the judge's answer for mine.jsonl:1 (\"Tell me about the sea.\") (A first): " \
    --judge "$JUDGE garbage j.log"
fails "a judge answering an index out of range" "the judge's answer for mine.jsonl:1 .*(A first)" \
    --judge "$JUDGE range j.log"
fails "a judge that stops answering (--judge-timeout)" \
    "the judge (.*) gave no answer for mine.jsonl:2 (.*) (A first) within 1 s" \
    --judge "$JUDGE sleep jsleep-$$.log" --judge-timeout 1
ps -eo args | grep -q "[e]val_judge.py sleep jsleep-$$.log" &&
    bad "the timed-out judge still runs (the shell's child outlived it)" ||
    ok "the timed-out judge is terminated with what its shell started (its process group)"
fails "a judge that cannot start" "the judge (/nonexistent/judge) exited with status 127" \
    --judge /nonexistent/judge
fails "a scorer with fewer lines than answers" \
    "the scorer (.*) ended its output without answering mine.jsonl:7 (\"What do birds eat?\") (B's answer)" \
    --judge "$JUDGE longer j.log" --score "$SCORE short"
fails "a scorer answering a word" \
    "the scorer's answer for mine.jsonl:3 (.*) (A's answer) is not a finite number: \"abc\"" \
    --judge "$JUDGE longer j.log" --score "$SCORE word"
fails "a scorer that exits 1" "the scorer (.*) exited with status 1 after answering all 12" \
    --judge "$JUDGE longer j.log" --score "$SCORE exit1"
fails "a scorer answering nan" "the scorer's answer for mine.jsonl:1 .* is not a finite number: \"nan\"" \
    --judge "$JUDGE longer j.log" --score "while read -r l; do echo nan; done"
expect_fail "an empty --judge" 2 "judge is empty" "$R" eval-policy --a m1 --b m2 \
    --prompts mine.jsonl --judge ""
lib_summary
