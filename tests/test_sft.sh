#!/bin/sh
# The sft program end to end on a tiny model: the loss falls (demonstrations and plain text),
# kill -9 at a random moment and the same command resumes to bit-identical weights with the
# database consistent, and every bad input gives a clear message and a non-zero exit.
. "$PWD/tests/lib.sh"
lib_workspace
cd "$W" || exit 1
# data: sums of small numbers, as demonstrations and as text
sums 300 "$SUM_DEMO" > train.jsonl
sums 300 "$SUM_TEXT" > corpus.txt
tiny_tok 300
"$B/rlhf" init --preset tiny --n-positions 32 --n-embd 32 --tokenizer tok --seed 5 \
    --out base 2>/dev/null
cat > sft.yaml <<'YAML'
model: {init: base}
out: {dir: run}
data: {format: jsonl, train: [train.jsonl], valid_percent: 10}
train: {batch_size: 8, epochs: 4, lr: 3e-3, warmup_steps: 5}
eval: {every: 50, max_new: 3, prompts: ["What is 2 plus 3?"]}
YAML

"$B/sft" --help > out 2>&1 && grep -q "train.lr" out && ok "sft --help lists every key" ||
    bad "sft --help"

# 1. the loss falls on demonstrations
"$B/sft" -c sft.yaml > out 2>err
first=$(grep -m1 "step 1/" err | sed 's/.*loss \([0-9.]*\).*/\1/')
last=$(grep "held-out loss" err | tail -1 | sed 's/.*held-out loss \([0-9.]*\).*/\1/')
awk -v a="$first" -v b="$last" 'BEGIN { exit !(a != "" && b != "" && b < a * 0.5) }' &&
    [ -f run/last/model.safetensors ] && [ -f run/best/model.safetensors ] &&
    ok "loss falls (first step $first -> held-out $last); last/ and best/ written" ||
        bad "sft loss: $first -> $last"

# 2. the run is recorded: status done, one metric row per step
python3 - "$W/run/workspace.db" > out 2>err <<'PY' && ok "run recorded: done, a train/loss row per step, integrity ok" || bad "run record: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
(status,) = db.execute("select status from runs where stage='sft'").fetchone()
n, lo, hi = db.execute("select count(*), min(step), max(step) from metrics where name='train/loss'").fetchone()
print(status, n, lo, hi)
assert status == "done" and n == hi and lo == 1, (status, n, lo, hi)
PY

# 3. kill -9 at a random moment, rerun: the same weights as the uninterrupted run
sed 's/epochs: 4/epochs: 12/; s/dir: run/dir: full/' sft.yaml > long.yaml
printf 'save: {every: 7}\n' >> long.yaml
"$B/sft" -c long.yaml > /dev/null 2>&1
sed 's/dir: full/dir: killed/' long.yaml > killed.yaml
# kill once a first checkpoint exists, at a random later moment (possibly mid-save)
killed=0
for delay in 0.1 0.3 0.05 0.2; do
    rm -rf killed
    "$B/sft" -c killed.yaml > /dev/null 2>&1 &
    pid=$!
    t=0
    while [ ! -d killed/last ] && [ $t -lt 600 ] &&
        kill -0 $pid 2>/dev/null; do sleep 0.05; t=$((t + 1)); done
    sleep $delay
    if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
    wait $pid 2>/dev/null
done
"$B/sft" -c killed.yaml > /dev/null 2> err
if [ $killed -eq 1 ] && grep -q "resuming run" err &&
    cmp -s full/last/model.safetensors killed/last/model.safetensors &&
   cmp -s full/last/trainer_state.safetensors killed/last/trainer_state.safetensors; then
    ok "kill -9 and resume: weights and optimizer state bit-identical to the uninterrupted run"
else bad "kill/resume (killed=$killed)"; fi
python3 - "$W/killed/workspace.db" > out 2>err <<'PY' && ok "after kill and resume: one run, done, every step logged once, integrity ok" || bad "db after resume: $(cat out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
runs = db.execute("select status from runs").fetchall()
n, hi = db.execute("select count(*), max(step) from metrics where name='train/loss'").fetchone()
print(runs, n, hi)
assert runs == [("done",)] and n == hi
PY

# 4. plain-text pretraining (loss on every token)
cat > pre.yaml <<'YAML'
model: {init: base}
out: {dir: pre}
data: {format: text, train: [corpus.txt], valid: [corpus.txt]}
train: {batch_size: 8, seq_len: 32, steps: 60, lr: 3e-3}
eval: {every: 30, max_batches: 4}
YAML
"$B/sft" -c pre.yaml > out 2>err
l0=$(grep -m1 "step 1/" err | sed 's/.*loss \([0-9.]*\).*/\1/'); \
    l1=$(grep "held-out loss" err | tail -1 | sed 's/.*loss \([0-9.]*\).*/\1/')
awk -v a="$l0" -v b="$l1" 'BEGIN { exit !(a != "" && b != "" && b < a * 0.7) }' &&
    [ -f pre/train.tok ] &&
    ok "text pretraining: token file written once, loss falls ($l0 -> $l1)" ||
        bad "text pretraining: $l0 -> $l1"

# 5. bad inputs
printf '{"prompt": "a", "response": "b"}\n{"prompt": "c", "respons": "d"}\n' > bad.jsonl
expect_fail "malformed JSONL line names file and line" 1 "bad.jsonl:2" "$B/sft" -c sft.yaml \
    --set data.train=bad.jsonl --set out.dir=o1
: > empty.jsonl
expect_fail "empty data set" 1 "no training examples\|empty" "$B/sft" -c sft.yaml \
    --set data.train=empty.jsonl --set out.dir=o2
long=$(printf 'word %.0s' $(seq 1 80))
printf '{"prompt": "%s", "response": "x"}\n' "$long" > long.jsonl
expect_fail "an example longer than the context" 1 "long.jsonl:1" "$B/sft" -c sft.yaml \
    --set data.train=long.jsonl --set out.dir=o3
expect_fail "a missing checkpoint" 1 "nope" "$B/sft" -c sft.yaml --set model.init=nope \
    --set out.dir=o4
printf 'train: {lr: fast}\n' > badcfg.yaml
expect_fail "a wrong type in the config names file:line:column" 1 "badcfg.yaml:1:" \
    "$B/sft" -c badcfg.yaml
printf 'trian: {lr: 0.1}\n' > badkey.yaml
expect_fail "an unknown key is an error" 1 "trian" "$B/sft" -c badkey.yaml
expect_fail "a bad --set names the override" 1 "train.batch_size" "$B/sft" -c sft.yaml \
    --set train.batch_size=0
expect_fail "resuming into another configuration is refused" 1 "another configuration" \
    "$B/sft" -c sft.yaml --set train.lr=1e-3
lib_summary
