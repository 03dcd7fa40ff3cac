#!/bin/sh
# SFT data parallelism: tokens/s on 1 and 2 ranks with one thread each (mpirun, make MPI=1), and the
# allreduce time per step, on the small config with GPT-2's vocabulary (L4 H4 C256 V50257, T 128).
# Prints RESULT lines (see bench/run_bench.py). On a bigger machine:
#   NP="1 2 4 8" sh bench/mpi.sh     (one thread per rank; see the README)
BUILD=${1:-build}
NP=${NP:-"1 2"}
ROOT=$PWD
make -s MPI=1 build-mpi/bin/sft >&2 || exit 1
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
python3 - <<'PY'
import json, random
r = random.Random(0)
words = "the a of to in and is was for on that with as it by at from this be are or an have".split()
with open("train.jsonl", "w") as f:
    for i in range(4000):
        p = " ".join(r.choice(words) for _ in range(r.randint(8, 40)))
        q = " ".join(r.choice(words) for _ in range(r.randint(8, 60)))
        f.write(json.dumps({"prompt": p, "response": q}) + "\n")
PY
"$ROOT/$BUILD/bin/rlhf" init --preset small --n-positions 128 --tokenizer "$ROOT/data/gpt2" --out base >/dev/null 2>&1
cat > b.yaml <<'YAML'
model: {init: base}
data: {format: jsonl, train: [train.jsonl], truncation: drop}
train: {batch_size: 8, grad_accum: 8, steps: 12, threads: 1}
eval: {every: 100000}
YAML
base=""
for np in $NP; do
    mpirun --allow-run-as-root --oversubscribe -x OMP_NUM_THREADS=1 -np "$np" "$ROOT/build-mpi/bin/sft" -c b.yaml --set out.dir=o$np > out 2> err || { tail -3 err >&2; exit 1; }
    tps=$(sed -n 's/.*: \([0-9.]*\) tokens\/s$/\1/p' err | tail -1)
    ar=$(sed -n 's/.*(\([0-9.]*\) s per step).*/\1/p' err | tail -1)
    [ -z "$base" ] && base=$tps
    echo "RESULT {\"name\": \"sft small, $np rank(s) x 1 thread, tokens/s\", \"value\": $tps, \"unit\": \"tok/s\", \"ref_name\": \"1 rank\", \"ref_value\": $base, \"ratio\": $(awk -v a="$tps" -v b="$base" 'BEGIN{printf "%.3f", a/b}')}"
    [ -n "$ar" ] && echo "RESULT {\"name\": \"sft small, $np ranks, allreduce per step\", \"value\": $ar, \"unit\": \"s\", \"ref_name\": null, \"ref_value\": null, \"ratio\": null}"
done
