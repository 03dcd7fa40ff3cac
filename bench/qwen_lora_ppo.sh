#!/bin/sh
# A Qwen2.5-0.5B-shaped policy (random weights, 494M parameters, vocabulary 151936) through PPO
# with LoRA on a machine the size of a laptop. First the memory plans at a working size (8
# rollouts of up to 128 new tokens, minibatch 8): full PPO (policy, reference, reward and value
# all whole models) is refused above memory.limit_gb (24 GiB by default) before anything is
# allocated; LoRA r=16 (policy and reference one frozen base, value and reward a second) is
# planned (and stopped right after, with a tiny limit). Then one LoRA iteration at tiny shapes (2
# rollouts, 8 new tokens) that 2 cores finish in about a minute, and its measured peak RSS. Not
# part of `make test` (minutes, ~6 GiB). Usage: sh bench/qwen_lora_ppo.sh [BUILD] [LIMIT_GB]
BUILD=${1:-build}
LIMIT=${2:-24}
ROOT=$PWD
B="$ROOT/$BUILD/bin"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cd "$W" || exit 1
echo "qwen_lora_ppo: writing two random Qwen2.5-0.5B-shaped checkpoints in $W" >&2
"$B/rlhf" init --preset qwen2.5-0.5b --vocab-size 151936 --tokenizer "$ROOT/data/gpt2" \
    --out policy >/dev/null 2>&1 &&
    "$B/rlhf" init --preset qwen2.5-0.5b --vocab-size 151936 --tokenizer "$ROOT/data/gpt2" \
        --score-head --no-lm-head --seed 7 --out rm >/dev/null 2>&1 || exit 1
for i in 1 2 3 4; do echo "{\"prompt\": \"Question $i: what is $i plus $i?\"}"; done \
    > prompts.jsonl
cat > ppo.yaml <<YAML
model: {policy: policy, reward: rm}
data: {prompts: [prompts.jsonl], prompt_template: "{prompt}"}
rollout: {batch_size: 8, max_new_tokens: 128}
ppo: {minibatch_size: 8, epochs: 1}
ptx: {coef: 0}
train: {iterations: 1}
memory: {limit_gb: $LIMIT}
YAML
echo "== full PPO, 8 rollouts of up to 128 new tokens, minibatch 8 ==" >&2
"$B/ppo" -c ppo.yaml --set out.dir=full 2>&1 | grep "^ppo:  \|memory plan\|needs" >&2
echo "== LoRA r=16, the same shapes (the plan only) ==" >&2
"$B/ppo" -c ppo.yaml --set out.dir=plan --set lora.r=16 --set lora.alpha=32 \
    --set memory.limit_gb=0.001 2>&1 | grep "^ppo:  \|memory plan" | grep -v "^ppo:   total" >&2
echo "== LoRA r=16, one iteration: 2 rollouts of 8 new tokens, minibatch 1 ==" >&2
/usr/bin/time -v "$B/ppo" -c ppo.yaml --set out.dir=lora --set lora.r=16 --set lora.alpha=32 \
    --set rollout.batch_size=2 --set rollout.max_new_tokens=8 --set ppo.minibatch_size=1 \
    > lora.out 2>&1
rc=$?
grep "^ppo:  \|memory plan\|iter 1/1\|done\|trained\|Maximum resident" lora.out >&2
exit $rc
