#!/bin/sh
# Data parallelism with MPI (make MPI=1): one SFT step on 2 ranks equals 1 rank on the same global
# batch; every rank holds identical weights after several steps (checked at every save); a rank
# that dies stops the whole job instead of hanging; kill and rerun resumes under MPI.
BUILD=${BUILD:-build}
ROOT=$PWD
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ -f "$W/err" ] && sed 's/^/    /' "$W/err" | tail -5; }
MB="$ROOT/build-mpi/bin"
make -s MPI=1 "build-mpi/bin/sft" > "$W/build.log" 2>&1 || { echo "FAIL cannot build the MPI variant"; cat "$W/build.log" | tail -5; echo "0 passed, 1 failed"; exit 1; }
MPIRUN="mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
cd "$W" || exit 1
i=0; : > train.jsonl; : > corpus.txt
while [ $i -lt 200 ]; do
    a=$((i * 7 % 19)); b=$((i * 11 % 17))
    printf '{"prompt": "What is %d plus %d?", "response": "%d"}\n' $a $b $((a + b)) >> train.jsonl
    printf 'What is %d plus %d? %d\n' $a $b $((a + b)) >> corpus.txt
    i=$((i + 1))
done
"$ROOT/$BUILD/bin/rlhf" tokenizer train --vocab-size 300 --out tok corpus.txt 2>/dev/null
"$ROOT/$BUILD/bin/rlhf" init --preset tiny --n-positions 32 --tokenizer tok --seed 3 --out base 2>/dev/null
cat > mpi.yaml <<'YAML'
model: {init: base}
data: {format: jsonl, train: [train.jsonl]}
train: {batch_size: 8, grad_accum: 2, lr: 3e-3, threads: 1}
eval: {every: 1000}
YAML

# 1. one step: 2 ranks (one micro-batch each) = 1 rank (both micro-batches)
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set out.dir=one --set train.steps=1 > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=two --set train.steps=1 > out 2> err
d=$(python3 "$ROOT/tests/safetensors_diff.py" one/last/model.safetensors two/last/model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-5) }' && ok "one step on 2 ranks = 1 rank on the same global batch (max |diff| $d < 1e-5)" || bad "2 ranks vs 1: $d"

# 2. several steps, a save every step: the ranks' weights are compared at each save
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=many --set train.steps=12 --set save.every=1 > out 2> err &&
    grep -q "weights identical on every rank" err && ok "12 steps on 2 ranks: identical weights on both at every save" || bad "identical weights"
d=$(python3 "$ROOT/tests/safetensors_diff.py" many/last/model.safetensors one/last/model.safetensors 2>/dev/null)
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set out.dir=many1 --set train.steps=12 > out 2> err
d=$(python3 "$ROOT/tests/safetensors_diff.py" many/last/model.safetensors many1/last/model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-4) }' && ok "12 steps: 2 ranks track 1 rank (max |diff| $d < 1e-4)" || bad "12 steps 2 vs 1: $d"

# 3. an odd split is refused on every rank, and the job ends
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=odd --set train.grad_accum=3 --set train.steps=1 > out 2> err; rc=$?
[ $rc -ne 0 ] && grep -q "multiple of the number of ranks" err && ok "grad_accum not a multiple of the ranks: a clear error" || bad "odd split (exit $rc)"

# 4. a rank killed mid-run stops the whole job (no hang)
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=dies --set train.steps=100000 > out 2> err &
mp=$!
sleep 3
victim=$(pgrep -f "out.dir=dies" | grep -v "^$mp$" | tail -1)
kill -9 "$victim" 2>/dev/null
t=0
while kill -0 $mp 2>/dev/null && [ $t -lt 30 ]; do sleep 1; t=$((t + 1)); done
if kill -0 $mp 2>/dev/null; then kill -9 $mp; pkill -9 -f "out.dir=dies"; bad "a killed rank left the job hanging"
else wait $mp; rc=$?; [ $rc -ne 0 ] && ok "a rank killed with SIGKILL ends the whole job within ${t}s (exit $rc)" || bad "killed rank: exit $rc"; fi
pkill -9 -f "out.dir=dies" 2>/dev/null

# 5. kill the job, rerun the same command: it resumes and ends with the uninterrupted run's weights
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=full --set train.steps=60 --set save.every=5 > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=res --set train.steps=60 --set save.every=5 > out 2> err &
mp=$!
t=0
while [ ! -d res/last ] && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
kill -9 $mp 2>/dev/null; pkill -9 -f "out.dir=res" 2>/dev/null; wait $mp 2>/dev/null
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=res --set train.steps=60 --set save.every=5 > out 2> err
grep -q "resuming run" err && cmp -s full/last/model.safetensors res/last/model.safetensors &&
    ok "killed under MPI and rerun: resumes and ends with the uninterrupted run's weights" || bad "MPI resume"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
