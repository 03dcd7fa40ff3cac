#!/bin/sh
# The dpo program end to end on a tiny model and 3-wise rankings of sums ("a + b" first, then
# "a + b + 1", then "no"): --help lists every key; at step 0 (policy = reference) the held-out
# loss is log 2 with zero margins; training raises the held-out preference accuracy; TRL's
# metrics are in the workspace; the pairs of the 3-wise rankings train exactly as the same pairs
# imported from a pairwise file; IPO, cDPO, SimPO and listwise runs; kill -9 and resume to
# bit-identical weights, the reference log-probabilities read back, not recomputed; a dpo stage
# in a pipeline; bad inputs; 2 MPI ranks equal 1 (when mpicc is there).
. "$PWD/tests/lib.sh"
. "$TESTS/procs.sh"
PY=/usr/bin/python3
lib_workspace
AT_EXIT='procs_kill_in "$W"'
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
ERR_LINES=8
sql() { sqlite3 -batch "$1" "$2"; }   # the sqlite3 shell (scripts/deps.sh test installs it)
cd "$W" || exit 1
tiny_data 200
# the same pairs as rank.jsonl's rankings give, one line each, in the order dpo takes them
sums 200 '{"prompt": "What is %d plus %d?", "chosen": "%d", "rejected": "%d"}' > p1.jsonl
awk -F'"' '{ print "{\"prompt\": \"" $4 "\", \"chosen\": \"" $8 "\", \"rejected\": \"" $10 "\"}";
             print "{\"prompt\": \"" $4 "\", \"chosen\": \"" $8 "\", \"rejected\": \"no\"}";
             print "{\"prompt\": \"" $4 "\", \"chosen\": \"" $10 "\", \"rejected\": \"no\"}" }' \
    rank.jsonl > pairs.jsonl
tiny_tok 300
"$R" init --preset tiny --n-positions 32 --tokenizer tok --seed 5 --out base 2>/dev/null
[ -f base/model.safetensors ] ||
    { echo "FAIL setup: no base model"; echo "0 passed, 1 failed"; exit 1; }
cat > dpo.yaml <<'YAML'
model: {init: base}
out: {dir: run}
workspace: ws.db
data: {import: [rank.jsonl], valid_percent: 20}
train: {batch_size: 8, steps: 30, lr: 1e-3}
eval: {every: 10}
YAML

# ---------------------------------------------------------------------------------------------
# help: every key with its help
"$B/dpo" --help > out 2>&1
missing=""
for k in model.init model.ref model.tokenizer out.dir workspace data.import data.valid_percent \
         data.pairs data.prompt_template data.response_prefix loss.type loss.beta \
         loss.label_smoothing loss.simpo_gamma train.batch_size train.micro_batch train.epochs \
         train.steps train.lr train.schedule train.warmup_steps train.grad_clip train.seed \
         train.threads train.resume eval.every eval.max_groups save.every log.every; do
    grep -q "$k" out || missing="$missing $k"
done
[ -z "$missing" ] && grep -q "usage: dpo" out && ok "dpo --help lists every key" ||
    bad "dpo --help lacks:$missing"

# ---------------------------------------------------------------------------------------------
# a run: log 2 at the start, accuracy after, TRL's metrics
"$B/dpo" -c dpo.yaml > out 2> err || bad "dpo run"
m() {   # m NAME STEP: the run's metric NAME at STEP
    sql ws.db "select value from metrics m join runs r on r.id = m.run_id where r.stage = 'dpo'
               and r.checkpoint like '%run/final' and m.name = '$1' and m.step = $2"
}
l0=$(m valid/loss 0); m0=$(m valid/rewards/margins 0); a30=$(m valid/rewards/accuracies 30)
close "$l0" 0.69314718 1e-7 && [ "$m0" = 0.0 ] && [ "$(m valid/rewards/chosen 0)" = 0.0 ] &&
    ok "policy = reference at step 0: held-out loss $l0 = log 2, margins $m0" ||
    bad "step 0: loss $l0 margins $m0"
# the step-0 evaluation reuses the reference pass (model.ref unset: the reference is the starting
# policy); with the same checkpoint named as model.ref it runs its own pass: the same numbers
"$B/dpo" -c dpo.yaml --set out.dir=run_ref --set model.ref=base --set train.steps=1 > /dev/null 2> err_ref ||
    bad "dpo run with model.ref"
m_ref() { sql ws.db "select value from metrics m join runs r on r.id = m.run_id where r.stage = 'dpo'
                      and r.checkpoint like '%run_ref/final' and m.name = '$1' and m.step = 0"; }
lc=$(m valid/logps/chosen 0); lr=$(m valid/logps/rejected 0)
grep -q "step 0: the policy is the reference" err && ! grep -q "step 0: the policy is" err_ref &&
    [ -n "$lc" ] && [ "$lc" = "$(m_ref valid/logps/chosen)" ] && [ "$lr" = "$(m_ref valid/logps/rejected)" ] &&
    ok "step 0 reuses the reference pass: held-out logps $lc / $lr, equal to a pass of its own" ||
    bad "step-0 reuse: logps $lc / $lr vs $(m_ref valid/logps/chosen) / $(m_ref valid/logps/rejected)"
below 0.7 "$a30" && below "$(m valid/loss 30)" 0.6 &&
    ok "30 steps: held-out preference accuracy $a30, loss $(m valid/loss 30)" ||
    bad "held-out accuracy $a30"
missing=""
for p in train valid; do
    for n in loss rewards/chosen rewards/rejected rewards/margins rewards/accuracies \
             logps/chosen logps/rejected; do
        [ -n "$(m "$p/$n" 30)" ] || missing="$missing $p/$n"
    done
done
c=$(m train/rewards/chosen 30); r=$(m train/rewards/rejected 30); g=$(m train/rewards/margins 30)
diff=$(awk -v a="$c" -v b="$r" 'BEGIN { printf "%.12g", a - b }')
[ -z "$missing" ] && close "$g" "$diff" 1e-9 &&
    [ -f run/final/model.safetensors ] && [ -f run/reference_logps.bin ] &&
    ok "TRL's metrics under train/ and valid/ (margins = chosen - rejected), final/ written" ||
    bad "metrics missing:$missing (margins $g, chosen $c, rejected $r)"

# reference_logps.bin's training and held-out numbers (for the checks below)
cat > refnums.py <<'PY'
import struct
def read(p):
    b = open(p, "rb").read()
    nt, nv = struct.unpack_from("<qq", b, 24)
    x = struct.unpack_from("<%dd" % (nt + nv), b, 40)
    return x[:nt], x[nt:]
PY
# a run shorter than an epoch (30 steps of 8 of the 480 training pairs) runs the reference over
# the training sequences its steps draw only (the others stay 0); a run of a whole epoch over all:
# the same numbers where both have one, every held-out one in both
"$B/dpo" -c dpo.yaml --set out.dir=epoch --set train.steps=60 > /dev/null 2> err_full ||
    bad "dpo run of an epoch"
python3 - run/reference_logps.bin epoch/reference_logps.bin > out 2>&1 <<'PY' &&
import sys
sys.path.insert(0, ".")
from refnums import read
(t, v), (ft, fv) = read(sys.argv[1]), read(sys.argv[2])
assert len(t) == len(ft) and all(x != 0 for x in ft), "the epoch's run has every training number"
skipped = sum(1 for x in t if x == 0)
assert 0 < skipped < len(t), "skipped %d of %d" % (skipped, len(t))
assert all(x == 0 or abs(x - y) <= 1e-9 * abs(y) for x, y in zip(t, ft)), "numbers differ"
assert v == fv, "held-out numbers differ"
print("%d of %d training sequences" % (len(t) - skipped, len(t)))
PY
    grep -q "the training ones its steps use" err && ! grep -q "the training ones its steps use" err_full &&
    ok "the reference runs over the training sequences the steps use only: $(cat out), the same numbers" ||
    bad "reference of the used sequences: $(cat out)"

# eval.max_groups: the held-out evaluations take the first 10 pairs, and the reference runs over
# their sequences only (the other held-out ones stay 0), with the same numbers; step 0 still
# takes the policy's from that pass: log 2 over those 10 pairs
m_maxg() { sql ws.db "select value from metrics m join runs r on r.id = m.run_id where
                       r.stage = 'dpo' and r.checkpoint like '%maxg/final' and m.name = '$1'
                       and m.step = 0"; }
"$B/dpo" -c dpo.yaml --set out.dir=maxg --set eval.max_groups=10 --set train.steps=1 \
    > /dev/null 2> err_maxg || bad "dpo run with eval.max_groups"
python3 - run/reference_logps.bin maxg/reference_logps.bin > out 2>&1 <<'PY' &&
import sys
sys.path.insert(0, ".")
from refnums import read
(t, v), (mt, mv) = read(sys.argv[1]), read(sys.argv[2])
covered = sum(1 for x in mv if x != 0)
assert len(mv) == len(v) and 0 < covered < len(v), "covered %d of %d" % (covered, len(v))
assert all(x == 0 or abs(x - y) <= 1e-9 * abs(y) for x, y in zip(mv, v)), "numbers differ"
print("%d of %d held-out sequences" % (covered, len(v)))
PY
    grep -q "step 0: the policy is the reference" err_maxg &&
    close "$(m_maxg valid/loss)" 0.69314718 1e-7 &&
    ok "eval.max_groups 10: the reference over the evaluated held-out sequences only: $(cat out)" ||
    bad "eval.max_groups and the reference: $(cat out), step 0 loss $(m_maxg valid/loss)"

# ---------------------------------------------------------------------------------------------
# the pairs of K-wise rankings = the same pairs imported pairwise
sed 's/rank.jsonl/pairs.jsonl/; s/dir: run/dir: pw/; s/ws.db/pw.db/' dpo.yaml > pw.yaml
"$B/dpo" -c pw.yaml > /dev/null 2> pw.err || { cp pw.err err; bad "pairwise run"; }
fp() { sed -n 's/.*data fingerprint \([0-9a-f]*\).*/\1/p' "$1"; }
[ -n "$(fp err)" ] && [ "$(fp err)" = "$(fp pw.err)" ] &&
    grep -q "200 rankings" err && grep -q "600 rankings" pw.err &&
    cmp -s run/final/model.safetensors pw/final/model.safetensors &&
    ok "200 3-wise rankings and their 600 pairs imported pairwise: the same pairs, weights" ||
    bad "K-wise vs pairwise (fingerprints $(fp err) / $(fp pw.err))"

# conversational pairs (Anthropic-HH transcripts): the earlier turns become the prompt
$PY - <<'PY'
import json
with open("rank.jsonl") as f, open("hh.jsonl", "w") as out:
    for line in f:
        r = json.loads(line)
        conv = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: " + r["prompt"] + "\n\nAssistant: "
        pair = {"chosen": conv + r["completions"][0], "rejected": conv + "no"}
        out.write(json.dumps(pair) + "\n")
PY
"$B/dpo" -c dpo.yaml --set out.dir=hh --set workspace=hh.db --set "data.import=[hh.jsonl]" \
    --set train.steps=10 > /dev/null 2> err &&
    grep -q "imported 200 rankings from hh.jsonl" err && [ -f hh/final/model.safetensors ] &&
    [ "$(sql hh.db "select count(*) from prompts where text like 'hi' || char(10) || char(10) ||
        'Assistant: hello' || char(10) || char(10) || 'Human: What is %'")" = 200 ] &&
    ok "conversational (HH) pairs: the earlier turns are the prompt, 10 steps" || bad "HH pairs"

# ---------------------------------------------------------------------------------------------
# the other losses train too
for v in "ipo:loss.type=ipo" "cdpo:loss.label_smoothing=0.1" "simpo:loss.type=simpo" \
         "listwise:data.pairs=listwise"; do
    name=${v%%:*}
    "$B/dpo" -c dpo.yaml --set out.dir="$name" --set "${v#*:}" --set train.steps=20 \
        > /dev/null 2> err
    a=$(sql ws.db "select value from metrics m join runs r on r.id = m.run_id where
        r.checkpoint like '%$name/final' and m.name = 'valid/rewards/accuracies' and m.step = 20")
    below 0.6 "$a" && ok "$name: 20 steps, held-out accuracy $a" || bad "$name (accuracy '$a')"
done
"$B/dpo" -c dpo.yaml --set out.dir=simpo2 --set loss.type=simpo --set train.steps=1 \
    > /dev/null 2> err
! grep -q "reference log-probabilities" err && [ ! -f simpo2/reference_logps.bin ] &&
    ok "simpo: reference-free, no reference pass" || bad "simpo ran a reference"

# ---------------------------------------------------------------------------------------------
# kill -9 at random moments, rerun: the same weights as an uninterrupted run; the reference
# log-probabilities read back
sed 's/dir: run/dir: full/; s/steps: 30/steps: 60/' dpo.yaml > full.yaml
printf 'save: {every: 2}\n' >> full.yaml
t0=$(date +%s.%N)
"$B/dpo" -c full.yaml > /dev/null 2>&1
T=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { print b - a }')
sed 's/dir: full/dir: killed/' full.yaml > killed.yaml
kills=0
# moments as shares of an uninterrupted run (the startup and the reference pass come first)
for f in 0.5 0.3 0.6 0.7 0.45 0.8; do
    delay=$(awk -v t="$T" -v f="$f" 'BEGIN { printf "%.3f", t * f }')
    "$B/dpo" -c killed.yaml > /dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 $pid 2>/dev/null && kills=$((kills + 1))
    wait $pid 2>/dev/null
    [ -f killed/final/model.safetensors ] && break
done
"$B/dpo" -c killed.yaml > /dev/null 2> err
[ $kills -ge 2 ] && grep -q "resuming run" err && grep -q "read from killed/reference" err &&
    cmp -s full/last/model.safetensors killed/last/model.safetensors &&
    cmp -s full/last/trainer_state.safetensors killed/last/trainer_state.safetensors &&
    cmp -s full/final/model.safetensors killed/final/model.safetensors &&
    ok "killed $kills times with SIGKILL and resumed: bit-identical weights and moments" ||
    bad "kill/resume (kills $kills)"
# SIGINT (Ctrl-C) mid-run: last/ saved, exit 130, the run interrupted; the rerun ends the same
sed 's/dir: full/dir: stopped/' full.yaml > stopped.yaml
"$B/dpo" -c stopped.yaml > /dev/null 2> stop.err &
pid=$!
sleep "$(awk -v t="$T" 'BEGIN { printf "%.3f", t * 0.6 }')"
kill -INT $pid 2>/dev/null
wait $pid
rc=$?
st=$(sql ws.db "select status from runs where stage = 'dpo' and checkpoint like '%stopped/last'")
"$B/dpo" -c stopped.yaml > /dev/null 2> err
[ "$rc" = 130 ] && grep -q "interrupted by SIGINT at step" stop.err && [ "$st" = interrupted ] &&
    cmp -s full/final/model.safetensors stopped/final/model.safetensors &&
    ok "SIGINT: last/ saved, exit 130, run interrupted; the rerun ends bit-identical" ||
    { cp stop.err err; bad "SIGINT (exit $rc, status '$st')"; }
# the stored reference lost: computed again from model.init, the same numbers
cp killed/reference_logps.bin ref.keep
rm killed/reference_logps.bin
rm -rf killed/final
"$B/dpo" -c killed.yaml > /dev/null 2> err
grep -q "reference log-probabilities of" err && cmp -s ref.keep killed/reference_logps.bin &&
    cmp -s full/final/model.safetensors killed/final/model.safetensors &&
    ok "reference_logps.bin deleted: recomputed from model.init, byte-identical" ||
    bad "reference recomputed"
printf 'x' >> killed/reference_logps.bin
expect_fail "a damaged reference_logps.bin is refused" 1 "reference_logps.bin does not hold" \
    "$B/dpo" -c killed.yaml

# ---------------------------------------------------------------------------------------------
# bad inputs
"$R" init --preset tiny --n-positions 32 --tokenizer tok --seed 6 --out other 2>/dev/null
printf '{"prompt": "What is 1 plus 2?"}\n' > prompts_only.jsonl
printf '{"prompt": "What is 1 plus 2?", "chosen": 3}\n' > bad.jsonl
expect_fail "no rankings: names the workspace" 1 "empty.db has no training rankings" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set workspace=empty.db \
    --set "data.import=[prompts_only.jsonl]"
expect_fail "unknown loss: names loss.type" 1 "loss.type" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set loss.type=hinge
expect_fail "beta 0 refused" 1 "loss.beta must be > 0 (got 0)" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set loss.beta=0
expect_fail "beta < 0 refused" 1 "loss.beta must be > 0 (got -0.5)" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set loss.beta=-0.5
expect_fail "a missing reference: names model.ref" 1 "model.ref: .*nowhere" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set model.ref=nowhere
expect_fail "model.init is required" 1 "model.init is required" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set model.init=
expect_fail "listwise with ipo refused" 1 "listwise" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set data.pairs=listwise --set loss.type=ipo
expect_fail "a bad import line: FILE:LINE" 1 "bad.jsonl:1" \
    "$B/dpo" -c dpo.yaml --set out.dir=e --set workspace=bad.db --set "data.import=[bad.jsonl]"
# a reference of its own: another model (the same shapes) changes the reference numbers
"$B/dpo" -c dpo.yaml --set out.dir=withref --set model.ref=other --set train.steps=1 \
    > /dev/null 2> err
grep -q "(other)" err && ! cmp -s run/reference_logps.bin withref/reference_logps.bin &&
    ok "model.ref: the reference pass runs the given checkpoint" || bad "model.ref"

# ---------------------------------------------------------------------------------------------
# a dpo stage in a pipeline
cat > pipe.yaml <<'YAML'
workspace: pws
stages:
  - name: dpo
    run: dpo
    settings:
      model.init: base
      data: {import: [rank.jsonl], valid_percent: 20}
      train: {batch_size: 8, steps: 5, lr: 1e-3}
    outputs: ["${dpo.out}/final/model.safetensors"]
  - name: gate
    run: rlhf info
    needs: [dpo]
    args: ["${dpo.out}/final"]
    require: {dpo: "valid/rewards/accuracies >= 0.5"}
YAML
"$R" run pipe.yaml > out 2> err && [ -f pws/dpo/final/model.safetensors ] &&
    [ -f pws/dpo/reference_logps.bin ] && "$R" run pipe.yaml > out 2> err &&
    grep -q "skipped" err &&
    ok "a dpo stage: settings, outputs, a gate on its metrics, skipped when unchanged" ||
    bad "dpo pipeline stage"
sed 's/steps: 5/stepz: 5/' pipe.yaml > badpipe.yaml
expect_fail "a dpo stage's bad setting is found before anything runs" 1 "stepz" \
    "$R" run badpipe.yaml --dry-run

# ---------------------------------------------------------------------------------------------
# MPI: one step on 2 ranks equals one on 1 rank (the gradients summed in another order)
MB="$ROOT/build-mpi/bin"
# (BUILD named: a `make test BUILD=...` passes its BUILD down, over MPI=1's)
if command -v mpicc > /dev/null && lib_make -s MPI=1 BUILD=build-mpi build-mpi/bin/dpo > mpi.err 2>&1
then
    MPIRUN="timeout 120 mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
    "$MB/dpo" -c dpo.yaml --set out.dir=m1 --set train.steps=1 > /dev/null 2>&1
    $MPIRUN -np 2 "$MB/dpo" -c dpo.yaml --set out.dir=m2 --set train.steps=1 > /dev/null 2> err
    d=$($PY "$TESTS/safetensors_diff.py" --no-key-bias m1/final/model.safetensors \
        m2/final/model.safetensors 2>> err)
    below "$d" 1e-5 && cmp -s m1/reference_logps.bin m2/reference_logps.bin &&
        grep -q "2 rank(s)" err &&
        ok "2 MPI ranks = 1: the same reference numbers, weights within $d after a step" ||
        bad "MPI 2 ranks vs 1 (largest difference '$d')"
else
    cp mpi.err err 2>/dev/null
    bad "cannot build the MPI variant of dpo"
fi
lib_summary
