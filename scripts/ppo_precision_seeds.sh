#!/bin/sh
# The demo's PPO stage with narrow weights, at several seeds, each judged against SFT:
#   sh scripts/ppo_precision_seeds.sh DEMO_WS OUT SAMPLE FROZEN SEED...
# DEMO_WS: a workspace where `make demo` (pipelines/demo.yaml) ran (its sft/best, rm/final, data/);
# OUT: a new folder for the runs; SAMPLE, FROZEN: precision.sample and precision.frozen (fp32,
# bf16, int8). Each seed runs `ppo` with the demo stage's settings and train.seed SEED, then
# `rlhf eval-policy` against SFT as the demo's eval stage does, and prints its figures on one line.
# BUILD (default build) names the build folder.
set -e
usage="usage: sh scripts/ppo_precision_seeds.sh DEMO_WS OUT SAMPLE FROZEN SEED..."
[ $# -ge 5 ] || { echo "$usage" >&2; exit 1; }
[ -d "$1" ] || { echo "ppo_precision_seeds: $1: no such folder" >&2; exit 1; }
ws=$(cd "$1" && pwd) out=$2 sample=$3 frozen=$4
shift 4
for f in sft/best rm/final data/ppo_prompts.jsonl data/eval_prompts.jsonl data/pretrain.txt; do
    [ -e "$ws/$f" ] || { echo "ppo_precision_seeds: $ws/$f: no such file (run make demo)" >&2; exit 1; }
done
for s in "$@"; do
    case $s in *[!0-9]*|"") echo "ppo_precision_seeds: seed '$s' is not a non-negative integer" >&2; exit 1;; esac
done
bin=$(cd "${BUILD:-build}/bin" && pwd)
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
mkdir -p "$out"
cd "$out"
# the settings of pipelines/demo.yaml's ppo stage
cat > ppo.yaml <<YAML
model: {policy: "$ws/sft/best", reward: "$ws/rm/final"}
data: {format: jsonl, prompts: ["$ws/data/ppo_prompts.jsonl"]}
rollout: {batch_size: 64, max_new_tokens: 24}
ppo: {epochs: 2, minibatch_size: 8}
kl.beta: 0.1
ptx: {coef: 1.0, data: ["$ws/data/pretrain.txt"], batch_size: 8, seq_len: 64}
train: {iterations: 60, policy_lr: 1e-4, value_lr: 1e-4}
YAML
for s in "$@"; do
    run=ppo_${sample}_${frozen}_$s
    "$bin/ppo" -c ppo.yaml --set train.seed="$s" --set out.dir="$run" \
        --set precision.sample="$sample" --set precision.frozen="$frozen" > "$run.log" 2>&1 ||
        { echo "ppo_precision_seeds: ppo failed, see $out/$run.log" >&2; exit 1; }
    "$bin/rlhf" eval-policy --a "$run/policy" --b "$ws/sft/best" \
        --prompts "$ws/data/eval_prompts.jsonl" --reward "$ws/rm/final" \
        --reference "$ws/sft/best" --pretrain-text "$ws/data/pretrain_valid.txt" \
        --seed 1234 > "eval_$run.log" 2>&1 ||
        { echo "ppo_precision_seeds: eval failed, see $out/eval_$run.log" >&2; exit 1; }
    echo "seed $s: $(grep -E 'preferred to B|task accuracy  |KL to reference|pretraining loss  ' \
        "eval_$run.log" | tr -s ' ' | tr '\n' ';')"
done
