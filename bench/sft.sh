#!/bin/sh
# SFT throughput against the engine's bare training step, same shapes (the small config: L4 H4
# C256 V8192, B=16, T=128, 2 threads): sft on plain text (every token a target) through its whole
# data path, against bench_model's step on random tokens. The issue's bound: data handling costs
# at most 10% (ratio >= 0.9). Prints RESULT lines (bench/run_bench.py).
BUILD=${1:-build}
ROOT=$PWD
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
cat /usr/share/common-licenses/* data/gpt2/README.md 2>/dev/null > "$W/corpus.txt"
for i in 1 2 3; do cat "$W/corpus.txt" "$W/corpus.txt" > "$W/c2" && mv "$W/c2" "$W/corpus.txt"; done
"$BUILD/bin/rlhf" tokenizer train --vocab-size 8192 --max-bytes 2000000 --out "$W/tok" "$W/corpus.txt" \
    >/dev/null 2>&1 || exit 1
V=$(python3 -c "import json; print(len(json.load(open('$W/tok/vocab.json'))))")
"$BUILD/bin/rlhf" init --preset small --vocab-size 8192 --n-positions 256 --tokenizer "$W/tok" \
    --out "$W/base" >/dev/null 2>&1 || exit 1
cd "$W" || exit 1
"$ROOT/$BUILD/bin/sft" --set model.init=base --set out.dir=run --set data.format=text --set 'data.train=[corpus.txt]' \
    --set train.batch_size=16 --set train.seq_len=128 --set train.steps=25 --set eval.every=100000 \
    --set log.every=1000 > out 2> err || { tail -3 err >&2; exit 1; }
sft=$(sed -n 's/.*: \([0-9.]*\) tokens\/s$/\1/p' err | tail -1)
cd "$ROOT" || exit 1
eng=$("$BUILD/bench/bench_model" --mode train --preset small --B 16 --T 128 --steps 20 2>/dev/null |
    sed -n 's/.*"tokens_per_s":\([0-9.]*\).*/\1/p')
echo "RESULT {\"name\": \"sft small B=16 T=128 (text, V=$V) tokens/s\", \"value\": $sft, \"unit\": \"tok/s\", \"ref_name\": \"engine step (bench_model)\", \"ref_value\": $eng, \"ratio\": $(awk -v a="$sft" -v b="$eng" 'BEGIN{printf "%.3f", a/b}')}"
