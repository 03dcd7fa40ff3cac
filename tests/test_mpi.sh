#!/bin/sh
# Data parallelism with MPI (make MPI=1), for sft, reward train and ppo: one step (one PPO
# iteration) on 2 ranks equals 1 rank on the same global batch (sft on a Llama-style model too);
# every rank holds identical weights after several steps (checked at every save); a rank that
# dies, or fails on its own bad input, stops the whole job instead of hanging; kill and rerun
# resumes under MPI.
#
# Tolerances: 2 ranks sum the same gradients in another order than 1 rank, so the weights differ
# by rounding amplified by AdamW where a gradient is near its epsilon (1e-8): measured about 3e-6
# after one step at lr 3e-3, hence 1e-5 (5e-5 for a PPO iteration of 8 steps: 7e-6 measured).
# Left out of the weight comparisons (safetensors_diff.py): weights whose gradient is 0 in exact
# arithmetic, where AdamW turns pure rounding noise into steps of up to the learning rate: the key
# third of the attention biases, and a reward model's ln_f.bias (the ranking loss depends only on
# score differences); the reward models after the bias are compared by their scores instead.
#
# The MPI variant is one build (build-mpi: MPI=1 wins over DEBUG=1, so its programs are never
# sanitized): under `make DEBUG=1 test` this test would run the very same programs again, and it
# runs once, in `make test` (the sanitized build's own programs, used here only for setup, are
# tested everywhere else).
. "$PWD/tests/lib.sh"
. "$TESTS/procs.sh"
if lib_sanitized; then
    ok "not run again on a sanitizer build: build-mpi's programs are the ones make test ran"
    lib_summary; exit
fi
lib_workspace
# every path out ends the jobs this test started (mpirun, its ranks), then removes the folder
AT_EXIT='procs_kill_in "$W"'
trap 'exit 1' INT TERM HUP
MB="$ROOT/build-mpi/bin"
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
# BUILD named: a `make test BUILD=...` passes its BUILD down to every make it starts, over MPI=1's
if ! lib_make -s -j"$jobs" MPI=1 BUILD=build-mpi build-mpi/bin/sft build-mpi/bin/reward \
    build-mpi/bin/ppo > "$W/err" 2>&1; then
    bad "cannot build the MPI variant"; lib_summary; exit
fi
MPIRUN="timeout 120 mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1"
DIFF="python3 $ROOT/tests/safetensors_diff.py"
# rank_killed LABEL MATCH CMD...: CMD (mpirun, 2 ranks) running, the rank whose command line starts
# with MATCH gets SIGKILL once both ranks have run 2 s (waiting for them to start: on a slow or
# loaded machine mpirun takes seconds): the whole job must end within 30 s, with a failure status
rank_killed() {
    label=$1; match=$2; shift 2
    "$@" > out 2> err &
    mp=$!
    t=0
    while [ "$(procs_started_with "$match" | wc -l)" -lt 2 ] && [ $t -lt 600 ]; do
        sleep 0.1; t=$((t + 1))
    done
    sleep 2
    victim=$(procs_started_with "$match" | head -1)
    if [ -z "$victim" ] || ! kill -9 "$victim" 2>/dev/null; then
        kill -9 $mp; procs_kill_in "$W"; bad "${label}no rank to kill: the job did not start in 60 s"
        return
    fi
    t=0
    while kill -0 $mp 2>/dev/null && [ $t -lt 30 ]; do sleep 1; t=$((t + 1)); done
    if kill -0 $mp 2>/dev/null; then
        kill -9 $mp; procs_kill_in "$W"; bad "${label}a killed rank left the job hanging"
    else
        wait $mp; rc=$?
        [ $rc -ne 0 ] && ok "${label}a rank killed with SIGKILL ends the whole job within ${t}s (exit $rc)" ||
            bad "${label}killed rank: exit $rc"
    fi
    procs_kill_in "$W"
}
cd "$W" || exit 1
sums 200 "$SUM_DEMO" > train.jsonl
sums 200 "$SUM_TEXT" > corpus.txt
tiny_tok 300
"$R" init --preset tiny --n-positions 32 --tokenizer tok --seed 3 --out base 2>/dev/null
cat > mpi.yaml <<'YAML'
model: {init: base}
data: {format: jsonl, train: [train.jsonl]}
train: {batch_size: 8, grad_accum: 2, lr: 3e-3, threads: 1}
eval: {every: 1000}
YAML

# 1. one step: 2 ranks (one micro-batch each) = 1 rank (both micro-batches)
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set out.dir=one --set train.steps=1 > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=two --set train.steps=1 > out 2> err
d=$($DIFF one/last/model.safetensors two/last/model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-5) }' &&
    ok "one step on 2 ranks = 1 rank on the same global batch (max |diff| $d < 1e-5)" ||
    bad "2 ranks vs 1: $d"

# 1b. the same on a Llama-style model (llama-tiny: RMSNorm, RoPE, SwiGLU, grouped-query attention)
"$R" init --preset llama-tiny --n-positions 32 --tokenizer tok --seed 3 --out lbase 2>/dev/null
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set model.init=lbase --set out.dir=lone \
    --set train.steps=1 > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set model.init=lbase --set out.dir=ltwo \
    --set train.steps=1 > out 2> err
d=$($DIFF lone/last/model.safetensors ltwo/last/model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-5) }' &&
    ok "llama-tiny: one step on 2 ranks = 1 rank on the same global batch (max |diff| $d < 1e-5)" ||
    bad "llama-tiny 2 ranks vs 1: $d"

# 1c. the same with LoRA adapters (biases and a norm trained too, the base in bf16): the adapters'
# gradients are what the ranks sum
set -- --set lora.r=4 --set lora.bias=all --set lora.modules_to_save=ln_f \
    --set lora.base_dtype=bfloat16 --set train.steps=1
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set out.dir=aone "$@" > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=atwo "$@" > out 2> err
d=$($DIFF aone/last/adapter_model.safetensors atwo/last/adapter_model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-5) }' &&
    ok "LoRA: one step on 2 ranks = 1 rank on the same global batch (max |diff| $d < 1e-5)" ||
    bad "LoRA 2 ranks vs 1: $d"

# 2. several steps, a save every step: the ranks' weights are compared at each save
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=many --set train.steps=12 \
    --set save.every=1 > out 2> err &&
    grep -q "weights identical on every rank" err &&
        ok "12 steps on 2 ranks: identical weights on both at every save" || bad "identical weights"
d=$($DIFF many/last/model.safetensors one/last/model.safetensors 2>/dev/null)
OMP_NUM_THREADS=1 "$MB/sft" -c mpi.yaml --set out.dir=many1 --set train.steps=12 > out 2> err
d=$($DIFF many/last/model.safetensors many1/last/model.safetensors 2>&1)
awk -v d="$d" 'BEGIN { exit !(d != "" && d + 0 < 1e-4) }' &&
    ok "12 steps: 2 ranks track 1 rank (max |diff| $d < 1e-4)" || bad "12 steps 2 vs 1: $d"

# 3. an odd split is refused on every rank, and the job ends
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=odd --set train.grad_accum=3 \
    --set train.steps=1 > out 2> err; rc=$?
[ $rc -ne 0 ] && grep -q "multiple of the number of ranks" err &&
    ok "grad_accum not a multiple of the ranks: a clear error" || bad "odd split (exit $rc)"

# B. the OpenBLAS kernel under mpirun: each rank re-executes itself before MPI_Init onto the same
# kernel (the library's choice pretended to be Prescott, made without OPENBLAS_CORETYPE: a
# caller's, which would override it, is unset), rank 0 alone says so, the job runs
env -u OPENBLAS_CORETYPE RLHF_BLAS_TEST_CORE=Prescott $MPIRUN -x RLHF_BLAS_TEST_CORE -np 2 \
    "$MB/sft" -c mpi.yaml --set out.dir=blas --set train.steps=1 > out 2> err; rc=$?
[ $rc -eq 0 ] && [ "$(grep -c 'OpenBLAS chose its Prescott kernel but this CPU has' err)" -eq 1 ] &&
    grep -q "2 ranks, each computing 1 of the 2" err &&
    ok "under mpirun: both ranks re-executed onto the better kernel before MPI_Init, one line from rank 0 (exit $rc)" ||
        bad "BLAS kernel under mpirun (exit $rc)"

# 4. a rank killed mid-run stops the whole job (no hang)
rank_killed "" "$MB/sft -c mpi.yaml --set out.dir=dies" \
    $MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=dies --set train.steps=100000

# 5. kill the job, rerun the same command: it resumes and ends with the uninterrupted run's weights
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=full --set train.steps=60 \
    --set save.every=5 > out 2> err
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=res --set train.steps=60 \
    --set save.every=5 > out 2> err &
mp=$!
t=0
while [ ! -d res/last ] && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
kill -9 $mp 2>/dev/null; procs_kill_in "$W"; wait $mp 2>/dev/null
$MPIRUN -np 2 "$MB/sft" -c mpi.yaml --set out.dir=res --set train.steps=60 \
    --set save.every=5 > out 2> err
grep -q "resuming run" err && cmp -s full/last/model.safetensors res/last/model.safetensors &&
    ok "killed under MPI and rerun: resumes and ends with the uninterrupted run's weights" ||
        bad "MPI resume"

# ---------------------------------------------------------------------------------------------
# reward train: K = 4 completions per prompt, two with "sunny" (better) and two without
python3 - <<'PY'
import json, random
r = random.Random(7)
words = "the a river stone cloud apple green quiet fast slow house light dark tree bird song water".split()
with open("rank.jsonl", "w") as out, open("rcorpus.txt", "w") as corpus, open("demos.jsonl", "w") as demos:
    for i in range(120):
        p = f"Write line {i} about the {r.choice(words)}"
        flags = [1, 1, 0, 0]; r.shuffle(flags)
        comps = [" ".join(r.choice(words) for _ in range(r.randint(3, 7))) + (" sunny" if f else "") for f in flags]
        out.write(json.dumps({"prompt": p, "completions": comps, "ranking": [1 if f else 2 for f in flags]}) + "\n")
        corpus.write(p + "\n" + "\n".join(comps) + "\n")
        if i < 20:
            demos.write(json.dumps({"prompt": p, "response": comps[0]}) + "\n")
PY
"$R" tokenizer train --vocab-size 300 --out rtok rcorpus.txt 2>/dev/null
"$R" init --preset tiny --n-positions 64 --n-embd 32 --tokenizer rtok --seed 5 \
    --out rbase 2>/dev/null
cat > rm.yaml <<'YAML'
model: {init: rbase}
data: {import: [rank.jsonl, demos.jsonl]}
train: {batch_size: 8, micro_batch: 16, lr: 3e-3, threads: 1}
eval: {every: 5}
YAML

# R1. one step: 2 ranks (4 rankings each) = 1 rank (all 8); also the bias and the final model
OMP_NUM_THREADS=1 "$MB/reward" train -c rm.yaml --set out.dir=r1 --set train.steps=1 > out 2> err
$MPIRUN -np 2 "$MB/reward" train -c rm.yaml --set out.dir=r2 --set train.steps=1 > out 2> err
d=$($DIFF --no-key-bias --skip transformer.ln_f.bias r1/last/model.safetensors r2/last/model.safetensors 2>&1)
python3 -c "
import json
for l in open('rank.jsonl').readlines()[:30]:
    o = json.loads(l)
    for c in o['completions']: print(json.dumps({'prompt': o['prompt'], 'completion': c}))" > score.jsonl
"$B/reward" score r1/final --input score.jsonl > s1.jsonl 2>/dev/null
"$B/reward" score r2/final --input score.jsonl > s2.jsonl 2>/dev/null
ds=$(python3 -c "
import json
a, b = ([json.loads(l)['score'] for l in open(f)] for f in ('s1.jsonl', 's2.jsonl'))
assert len(a) == len(b) == 120
print(max(abs(x - y) for x, y in zip(a, b)))" 2>&1)
below "$d" 1e-5 && below "$ds" 1e-5 && grep -q "each computing 4 of the 8 rankings" err &&
    [ "$(grep -c 'step 1/1' err)" -eq 1 ] &&
    ok "reward train: one step on 2 ranks = 1 rank on the same 8 rankings (weights max |diff| $d; final models' scores of 120 completions, bias included, $ds; < 1e-5)" ||
        bad "reward 2 ranks vs 1: $d / $ds"
python3 - r1/workspace.db r2/workspace.db > out 2> err2 <<'PY' && ok "reward train on 2 ranks: one run, its metrics equal to 1 rank's (loss, accuracy, margin, held-out; 1e-5)" || { cat err2 >> err; bad "reward metrics 2 vs 1: $(cat out)"; }
import sqlite3, sys
a, b = (sqlite3.connect(p) for p in sys.argv[1:3])
assert b.execute("select count(*), min(status) from runs").fetchone() == (1, "done")
# final/bias moves with ln_f.bias (see the top): the final models' scores are compared instead
q = "select name, step, value from metrics where name not like '%per_s' and name not like '%allreduce%' and name != 'final/bias' and name not like 'run/%' order by name, step"
ma, mb = a.execute(q).fetchall(), b.execute(q).fetchall()
assert [x[:2] for x in ma] == [x[:2] for x in mb], "different metrics"
worst = max((abs(x[2] - y[2]), x[0]) for x, y in zip(ma, mb))
print(len(ma), worst)
assert worst[0] < 1e-5
PY

# R2. several steps, saves every 2: every rank's weights compared at each save; 2 ranks track 1
$MPIRUN -np 2 "$MB/reward" train -c rm.yaml --set out.dir=r3 --set train.steps=10 \
    --set save.every=2 > out 2> err &&
    grep -q "weights identical on every rank at every save" err &&
        ok "reward train: 10 steps on 2 ranks, identical weights on both at every save" ||
        bad "reward identical weights"

# R3. kill the job, rerun the same command: it resumes and ends with the uninterrupted run's weights
$MPIRUN -np 2 "$MB/reward" train -c rm.yaml --set out.dir=rres --set train.steps=10 \
    --set save.every=2 > out 2> err &
mp=$!
t=0
while [ ! -d rres/last ] && [ $t -lt 200 ]; do sleep 0.05; t=$((t + 1)); done
kill -9 $mp 2>/dev/null; procs_kill_in "$W"; wait $mp 2>/dev/null
$MPIRUN -np 2 "$MB/reward" train -c rm.yaml --set out.dir=rres --set train.steps=10 \
    --set save.every=2 > out 2> err
grep -q "resuming run" err && cmp -s r3/final/model.safetensors rres/final/model.safetensors &&
    ok "reward train killed under MPI and rerun: resumes and ends with the uninterrupted run's weights" ||
        bad "reward MPI resume"

# ---------------------------------------------------------------------------------------------
# ppo: a tiny policy and a random reward model (equivalence, not learning, is tested here)
i=0; : > prompts.jsonl
while [ $i -lt 64 ]; do printf '{"prompt": "What is %d plus %d?"}\n' $((i % 19)) \
    $((i % 17)) >> prompts.jsonl; i=$((i + 1)); done
"$R" init --preset tiny --n-layer 2 --n-positions 48 --n-embd 32 --tokenizer tok --seed 5 \
    --out pol 2>/dev/null
"$R" init --preset tiny --n-layer 1 --n-positions 48 --n-embd 32 --tokenizer tok --seed 6 \
    --score-head --no-lm-head --out prm 2>/dev/null
cat > ppo.yaml <<'YAML'
model: {policy: pol, reward: prm}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 16, max_new_tokens: 12}
ppo: {minibatch_size: 4, epochs: 2}
ptx: {coef: 1, data: [corpus.txt], batch_size: 4, seq_len: 32}
kl: {beta: 0.1, controller: adaptive, target: 1, horizon: 200}
train: {iterations: 1, policy_lr: 2e-3, value_lr: 3e-3, ema: 0.9, threads: 1}
save: {every: 1}
YAML

# P1. one iteration (2 epochs x 4 minibatches, pretraining mix on): 2 ranks = 1 rank
OMP_NUM_THREADS=1 "$MB/ppo" -c ppo.yaml --set out.dir=p1 > out 2> err
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=p2 > out 2> err
dp=$($DIFF --no-key-bias p1/last/policy/model.safetensors p2/last/policy/model.safetensors 2>&1)
dv=$($DIFF --no-key-bias p1/last/value/model.safetensors p2/last/value/model.safetensors 2>&1)
below "$dp" 5e-5 && below "$dv" 5e-5 &&
    grep -q "each generating 8 of the 16 rollouts and computing 2 of the 4" err &&
    [ "$(grep -c 'memory plan' err)" -eq 1 ] && [ "$(grep -c 'ppo: iter 1/1' err)" -eq 1 ] &&
    ok "ppo: one iteration on 2 ranks = 1 rank (8 optimizer steps; max |diff| policy $dp, value $dv; < 5e-5), rank 1 quiet" ||
        bad "ppo 2 ranks vs 1: policy $dp value $dv"
# P1b. grpo (no value model, KL as a k3 loss term) with a second reward model and a reward program:
# 2 ranks = 1 rank
printf '#!/bin/sh\ncat > /dev/null; yes 0.5 | head -n 16\n' > half.sh && chmod +x half.sh
G="--set algorithm=grpo --set rollout.group_size=4 --set kl.mode=loss --set reward.models=[prm] --set reward.programs=[./half.sh]"
OMP_NUM_THREADS=1 "$MB/ppo" -c ppo.yaml --set out.dir=g1 $G > out 2> err
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=g2 $G > out 2>> err
dp=$($DIFF --no-key-bias g1/last/policy/model.safetensors g2/last/policy/model.safetensors 2>&1)
below "$dp" 5e-5 && [ ! -e g2/last/value ] && [ "$(grep -c 'critic-free: no value model' err)" -eq 2 ] &&
    ok "grpo with an ensemble and a reward program: one iteration on 2 ranks = 1 rank (max |diff| policy $dp < 5e-5)" ||
        bad "grpo 2 ranks vs 1: policy $dp"
python3 - p1/workspace.db p2/workspace.db > out 2> err2 <<'PY' && ok "ppo on 2 ranks: the same 16 rollouts stored once (text identical, score/KL/reward within 1e-5), statistics within 1e-5 ($(cat out))" || { cat err2 >> err; bad "ppo rollouts 2 vs 1: $(cat out)"; }
import sqlite3, sys
a, b = (sqlite3.connect(p) for p in sys.argv[1:3])
q = "select iteration, prompt, response, response_tokens, ended, score, kl, reward from rollouts order by iteration, id"
ra, rb = a.execute(q).fetchall(), b.execute(q).fetchall()
assert len(ra) == 16 and len(rb) == 16, (len(ra), len(rb))
assert [x[:5] for x in ra] == [x[:5] for x in rb], "sampled text differs"
wr = max(abs(x[i] - y[i]) for x, y in zip(ra, rb) for i in (5, 6, 7))
q = "select name, value from metrics where name like 'ppo/%' order by name"
ma, mb = a.execute(q).fetchall(), b.execute(q).fetchall()
assert [x[0] for x in ma] == [x[0] for x in mb]
wm = max((abs(x[1] - y[1]), x[0]) for x, y in zip(ma, mb))
print(f"rollouts {wr:.1e}, {wm[1]} {wm[0]:.1e}")
assert wr < 1e-5 and wm[0] < 1e-5
assert b.execute("select count(*), min(status) from runs").fetchone() == (1, "done")
PY

# P2. several iterations, a save at each: the ranks' policy, value and EMA compared every time
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=p3 --set train.iterations=6 > out 2> err &&
    grep -q "weights identical on every rank at every save" err &&
        ok "ppo: 6 iterations on 2 ranks, identical policy, value and EMA on both at every save" ||
        bad "ppo identical weights"

# P3. kill the job mid-run, rerun: resumes, ends bit-identical to the uninterrupted 2-rank run
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=pres --set train.iterations=6 > out 2> err &
mp=$!
t=0
while [ ! -d pres/last ] && [ $t -lt 200 ]; do sleep 0.05; t=$((t + 1)); done
kill -9 $mp 2>/dev/null; procs_kill_in "$W"; wait $mp 2>/dev/null
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=pres --set train.iterations=6 > out 2> err
same=1
for f in last/policy/model.safetensors last/policy/trainer_state.safetensors \
    last/value/model.safetensors last/ema/model.safetensors policy/model.safetensors; do
    cmp -s "p3/$f" "pres/$f" || same=0
done
grep -q "resuming run" err && [ $same -eq 1 ] &&
    ok "ppo killed under MPI and rerun: resumes, policy, value, moments and EMA bit-identical to the uninterrupted run" ||
    bad "ppo MPI resume (same=$same)"

# P4. a minibatch the ranks cannot share equally is refused with a clear message
$MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=p5 --set ppo.minibatch_size=1 \
    --set rollout.batch_size=3 > out 2> err; rc=$?
[ $rc -ne 0 ] && grep -q "multiple of the number of ranks" err &&
    ok "ppo: a minibatch not a multiple of the ranks: a clear error" ||
    bad "ppo odd split (exit $rc)"

# F. a rank that fails on its own bad input (rank 1 gets a missing checkpoint) stops the job
for prog in reward ppo; do
    if [ $prog = reward \
        ]; then cmd="$MB/reward train -c rm.yaml --set out.dir=f$prog --set train.steps=50"; \
        badset="model.init=nope"
    else cmd="$MB/ppo -c ppo.yaml --set out.dir=f$prog --set train.iterations=50"; \
        badset="model.reward=nope"; fi
    t0=$(date +%s)
    $MPIRUN -np 1 $cmd : -np 1 $cmd --set $badset > out 2> err; rc=$?
    dt=$(( $(date +%s) - t0 ))
    [ $rc -ne 0 ] && [ $rc -ne 124 ] && grep -q "rank 1: .*nope.*stopping every rank" err &&
        ok "$prog: bad input on rank 1 alone ends the whole job with its message (exit $rc, ${dt}s)" ||
            bad "$prog: failing rank (exit $rc)"
done

# K. a rank killed mid-run stops the whole ppo job (no hang)
rank_killed "ppo: " "$MB/ppo -c ppo.yaml --set out.dir=pdies" \
    $MPIRUN -np 2 "$MB/ppo" -c ppo.yaml --set out.dir=pdies --set train.iterations=100000 \
        --set save.every=1000
lib_summary
