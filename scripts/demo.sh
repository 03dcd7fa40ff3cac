#!/bin/sh
# The main job (`make demo`). Until the pipeline runner lands (pipelines/demo.yaml), it shows
# the engine end to end on the shipped GPT-2 tokenizer: a small model is initialised, inspected,
# evaluated on text and sampled from. Everything goes to a workspace folder (default demo-ws/).
set -e
BUILD=${1:-build}
WS=${DEMO_WS:-demo-ws}
R="$BUILD/bin/rlhf"
mkdir -p "$WS"
echo "== rlhf init: a small GPT-2 with the GPT-2 tokenizer"
"$R" init --preset small --tokenizer data/gpt2 --seed 1234 --out "$WS/base"
echo "== rlhf info"
"$R" info "$WS/base" --batch 8 --seq 256
echo "== rlhf eval on the tokenizer's licence text (a random model: loss ~ log 50257 = 10.8)"
"$R" eval "$WS/base" --text data/gpt2/README.md
echo "== rlhf generate (random weights: random text)"
"$R" generate "$WS/base" --prompt "Human: What is 2+2?

Assistant:" --max-new 16 --seed 1
echo "== done; the workspace is in $WS/"
