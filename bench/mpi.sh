#!/bin/sh
# Data parallelism (make MPI=1) for the three training programs: tokens/s on 1 and 2 ranks with one
# thread each (mpirun), and the gradient allreduce time per optimizer step, on the small config
# with GPT-2's vocabulary (L4 H4 C256 V50257). Tokens are positions through the models: sft and
# reward train count every sequence's tokens once per step; ppo counts generated tokens, the four
# scoring passes, the policy and value training passes and the pretraining windows.
# Prints RESULT lines (see bench/run_bench.py). On a bigger machine:
#   NP="1 2 4 8" sh bench/mpi.sh     (one thread per rank; see the README)
BUILD=${1:-build}
NP=${NP:-"1 2"}
ROOT=$PWD
make -s MPI=1 build-mpi/bin/sft build-mpi/bin/reward build-mpi/bin/ppo >&2 || exit 1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
python3 - <<'PY'
import json, random
r = random.Random(0)
words = "the a of to in and is was for on that with as it by at from this be are or an have".split()
s = lambda lo, hi: " ".join(r.choice(words) for _ in range(r.randint(lo, hi)))
with open("train.jsonl", "w") as f:
    for i in range(4000):
        f.write(json.dumps({"prompt": s(8, 40), "response": s(8, 60)}) + "\n")
with open("rank.jsonl", "w") as f:   # K = 4 rankings, the reward model's data
    for i in range(400):
        f.write(json.dumps({"prompt": s(8, 30), "completions": [s(8, 60) for _ in range(4)], "ranking": [1, 2, 3, 4]}) + "\n")
with open("prompts.jsonl", "w") as f, open("ptx.txt", "w") as g:
    for i in range(400):
        f.write(json.dumps({"prompt": s(8, 30)}) + "\n")
        g.write(s(50, 200) + "\n")
PY
init() {
    "$ROOT/$BUILD/bin/rlhf" init --preset small --n-positions 128 --tokenizer "$ROOT/data/gpt2" "$@" \
        >/dev/null 2>&1
}
init --out base
init --score-head --no-lm-head --seed 2 --out rm
cat > sft.yaml <<'YAML'
model: {init: base}
data: {format: jsonl, train: [train.jsonl], truncation: drop}
train: {batch_size: 8, grad_accum: 8, steps: 12, threads: 1}
eval: {every: 100000}
YAML
cat > rm.yaml <<'YAML'
model: {init: base}
data: {import: [rank.jsonl]}
train: {batch_size: 16, micro_batch: 16, steps: 8, threads: 1}
eval: {every: 100000}
bias: {source: none}
YAML
cat > ppo.yaml <<'YAML'
model: {policy: base, reward: rm}
data: {prompts: [prompts.jsonl]}
rollout: {batch_size: 16, max_new_tokens: 32}
ppo: {minibatch_size: 8, epochs: 2}
ptx: {coef: 1, data: [ptx.txt], batch_size: 8, seq_len: 64}
train: {iterations: 3, threads: 1}
save: {every: 1000}
YAML
for prog in sft reward ppo; do
    base=""
    for np in $NP; do
        case $prog in
            sft) cmd="sft -c sft.yaml";;
            reward) cmd="reward train -c rm.yaml";;
            ppo) cmd="ppo -c ppo.yaml";;
        esac
        mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -np "$np" "$ROOT/build-mpi/bin/"$cmd --set out.dir=$prog$np > out 2> err ||
            { tail -3 err >&2; exit 1; }
        tps=$(sed -n 's/.*: \([0-9.]*\) tokens\/s$/\1/p' err | tail -1)
        ar=$(sed -n 's/.*(\([0-9.]*\) s per step).*/\1/p' err | tail -1)
        [ -z "$base" ] && base=$tps
        echo "RESULT {\"name\": \"$prog small, $np rank(s) x 1 thread, tokens/s\", \"value\": $tps, \"unit\": \"tok/s\", \"ref_name\": \"1 rank\", \"ref_value\": $base, \"ratio\": $(awk -v a="$tps" -v b="$base" 'BEGIN{printf "%.3f", a/b}')}"
        [ -n "$ar" ] && echo "RESULT {\"name\": \"$prog small, $np ranks, allreduce per step\", \"value\": $ar, \"unit\": \"s\", \"ref_name\": null, \"ref_value\": null, \"ratio\": null}"
    done
done
