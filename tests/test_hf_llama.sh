#!/bin/sh
# Hugging Face checkpoints of the Llama family (tests/ref/hf_llama_interop.py, PyTorch float64):
# checkpoints laid out as transformers writes them (llama with Llama 3 rope scaling, 3 shards,
# F16/BF16, RoPE buffers and a stored tied head; qwen2 with biases, BF16, an eos list; qwen3 with
# q/k norms and head_dim != hidden/heads, 2 shards; mistral multi-query, untied, F16) evaluate
# here (`rlhf eval`) to the loss the script computes. Needs python3 with torch (python3-torch),
# like the GPT-2 interop in test_checkpoint; without it, says so and checks nothing.
. "$PWD/tests/lib.sh"
lib_workspace

if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
    echo "python3-torch is not installed: the Llama-family interop checks need it"
    lib_summary
    exit $?
fi
if /usr/bin/python3 tests/ref/hf_llama_interop.py write "$W/llama" llama "$W/qwen2" qwen2 \
    "$W/qwen3" qwen3 "$W/mistral" mistral >"$W/out" 2>"$W/err"; then
    for v in llama qwen2 qwen3 mistral; do
        want=$(cat "$W/$v/expected_loss.txt")
        loss=$("$R" eval "$W/$v" --ids "$W/$v/tokens.txt" 2>"$W/err" | sed -n 's/^loss //p')
        close "$loss" "$want" 1e-5 &&
            ok "$v in transformers' layout: rlhf eval loss $loss = PyTorch's $want" ||
            bad "$v: rlhf eval loss '$loss' vs PyTorch $want"
    done
else bad "hf_llama_interop.py write"; fi
# a shard the index lists but the directory lacks: one line naming it, exit 1
rm "$W/llama/model-00002-of-00003.safetensors"
expect_fail "a missing shard is named" 1 "shard model-00002-of-00003.safetensors.*missing" \
    "$R" eval "$W/llama" --ids "$W/llama/tokens.txt"
lib_summary
