#!/bin/sh
# The sft program end to end on a tiny model: the loss falls (demonstrations and plain text),
# kill -9 at a random moment and the same command resumes to bit-identical weights with the
# database consistent (with and without a pretraining mix), the mix takes the share of the loss
# asked and keeps the language model, the held-out pretraining loss equals `rlhf eval`'s, and
# every bad input gives a clear message and a non-zero exit.
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
# kill_resume CONFIG DIR: runs CONFIG (out.dir DIR), kills it with -9 once a first checkpoint
# exists, at a random later moment (possibly mid-save), and reruns it; killed=1 when a kill landed
kill_resume() {
    killed=0
    for delay in 0.1 0.3 0.05 0.2; do
        rm -rf "$2"
        "$B/sft" -c "$1" > /dev/null 2>&1 &
        pid=$!
        t=0
        while [ ! -d "$2/last" ] && [ $t -lt 600 ] &&
            kill -0 $pid 2>/dev/null; do sleep 0.05; t=$((t + 1)); done
        sleep $delay
        if kill -9 $pid 2>/dev/null; then killed=1; wait $pid 2>/dev/null; break; fi
        wait $pid 2>/dev/null
    done
    "$B/sft" -c "$1" > /dev/null 2> err
}
kill_resume killed.yaml killed
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

# 5. the pretraining mix: text the demonstrations never show (data.mix), and other held-out text
# whose loss is logged (eval.pretrain_text)
sums 300 'Add %d and %d to get %d, not %d.' > mix.txt
sums 40 'Take %d from %d: %d is left, and %d more.' > held.txt
sed '/^eval:/d' sft.yaml > pl.yaml
printf 'eval: {every: 50, pretrain_text: held.txt, pretrain_max_windows: 4}\n' >> pl.yaml
"$B/sft" -c pl.yaml --set out.dir=nomix > /dev/null 2> err &&
"$B/sft" -c pl.yaml --set out.dir=mix --set data.mix.text=mix.txt --set data.mix.weight=0.5 \
    > /dev/null 2> err || bad "sft with data.mix"
python3 - nomix/workspace.db mix/workspace.db > out 2>&1 <<'PY' && ok "data.mix: the text's share of every step's loss is 0.5, its loss logged; held-out pretraining loss $(cat out)" || bad "data.mix: $(cat out)"
import sqlite3, sys
a, b = (sqlite3.connect(p) for p in sys.argv[1:3])
q = "select step, value from metrics where name=? order by step"
m = lambda db, n: db.execute(q, (n,)).fetchall()
steps = [s for s, _ in m(b, "train/loss")]
share, mixl = m(b, "train/mix_share"), m(b, "train/mix_loss")
assert [s for s, _ in share] == steps == [s for s, _ in mixl] and len(steps) > 100, "each step"
assert all(abs(v - 0.5) < 1e-6 for _, v in share), share[:3]
assert not m(a, "train/mix_share") and not m(a, "train/mix_loss"), "no mix, no mix metrics"
pa, pb = m(a, "valid/pretrain_loss"), m(b, "valid/pretrain_loss")
assert [s for s, _ in pa] == [s for s, _ in pb] and pa[0][0] == 0 and pa[0] == pb[0], (pa, pb)
assert len(pa) == len(m(a, "valid/loss")) + 1, "step 0, then at each evaluation"
print(f"{pa[0][1]:.3f} at the start, {pa[-1][1]:.3f} after SFT, {pb[-1][1]:.3f} with the mix")
assert pb[-1][1] < pa[-1][1] - 0.2, "the mix keeps the language model"
PY
grep -q "^sft: step 0: pretraining loss [0-9.]*$" err &&
    grep -q "held-out loss [0-9.]*\( (best)\)*, pretraining loss [0-9.]*$" err &&
    grep -q "step 1/.* loss [0-9.]* mix [0-9.]* lr" err &&
    ok "the eval lines print the pretraining loss, the step lines the mix's loss" ||
        bad "eval lines: $(grep -m2 'pretraining' err)"
# the same number from `rlhf eval` on the same windows: held.txt's tokens and the end token (as
# sft tokenizes text), the first 4 windows of the context (32)
{ cat held.txt; printf '<|endoftext|>'; } | "$R" tokenizer encode tok --special |
    tr -s ' \n' '\n' | head -n $((4 * 32 + 1)) > held.ids
for run in nomix mix; do
    want=$("$R" eval $run/last --ids held.ids 2> /dev/null | sed -n 's/^loss //p')
    got=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute(
        \"select value from metrics where name = 'valid/pretrain_loss' order by step desc\"
        ).fetchone()[0])" $run/workspace.db)
    close "$got" "$want" 1e-5 &&
        ok "$run: valid/pretrain_loss $got equals rlhf eval's $want on the same 4 windows" ||
            bad "$run: valid/pretrain_loss $got, rlhf eval $want"
done
# without held-out demonstrations the pretraining loss is still evaluated
"$B/sft" -c pl.yaml --set out.dir=nv --set data.valid_percent=0 --set train.steps=5 \
    --set eval.every=5 > /dev/null 2> err &&
    grep -q "^sft: step 5: pretraining loss [0-9.]*$" err &&
    ok "no held-out demonstrations: the pretraining loss alone at each evaluation" ||
        bad "pretraining loss without held-out data"
# kill -9 and resume with the mix: bit-identical to the uninterrupted run
sed 's/dir: full/dir: mixfull/; s/^data: {\(.*\)}$/data: {\1, mix: {text: mix.txt, weight: 0.3}}/' \
    long.yaml > mixfull.yaml
"$B/sft" -c mixfull.yaml > /dev/null 2>&1 || bad "uninterrupted run with the mix"
sed 's/dir: mixfull/dir: mixkilled/' mixfull.yaml > mixkilled.yaml
kill_resume mixkilled.yaml mixkilled
if [ $killed -eq 1 ] && grep -q "resuming run" err &&
    cmp -s mixfull/last/model.safetensors mixkilled/last/model.safetensors &&
    cmp -s mixfull/last/trainer_state.safetensors mixkilled/last/trainer_state.safetensors &&
    ! cmp -s mixfull/last/model.safetensors full/last/model.safetensors; then
    ok "kill -9 and resume with data.mix: weights and optimizer state bit-identical"
else bad "kill/resume with the mix (killed=$killed)"; fi
# bad mix settings: one line naming the key
: > empty.txt
for bad_mix in "weight 0:mix.txt:0:data.mix.weight" "weight 1:mix.txt:1:data.mix.weight" \
    "a negative weight:mix.txt:-0.2:data.mix.weight" "a weight without text::0.5:data.mix.text" \
    "a missing file:nope.txt:0.5:data.mix.text" "an empty file:empty.txt:0.5:data.mix.text"; do
    what=${bad_mix%%:*}; rest=${bad_mix#*:}; text=${rest%%:*}; rest=${rest#*:}
    w=${rest%%:*}; key=${rest#*:}
    expect_fail "data.mix with $what: one line naming $key" 1 "^sft: .*$key" "$B/sft" -c sft.yaml \
        --set out.dir=badmix --set "data.mix.text=$text" --set "data.mix.weight=$w"
    [ "$(wc -l < err)" -eq 1 ] || bad "data.mix with $what: $(wc -l < err) lines"
done
expect_fail "a missing eval.pretrain_text is named" 1 "^sft: eval.pretrain_text" "$B/sft" \
    -c sft.yaml --set out.dir=badpre --set eval.pretrain_text=nope.txt

# 6. bad inputs
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
