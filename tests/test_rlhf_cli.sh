#!/bin/sh
# End-to-end tests of the `rlhf` tool: init/info/eval/generate/tokenizer, the Hugging Face
# interop in both directions (tests/ref/hf_interop.py, PyTorch), and the error path of each bad
# input. Prints "ok"/"FAIL" per case and "N passed, N failed"; exits non-zero on failure.
. "$PWD/tests/lib.sh"
lib_workspace

"$R" --help >"$W/out" 2>"$W/err" && grep -q "generate" "$W/out" && ok "rlhf --help" ||
    bad "rlhf --help"
for c in init info eval generate tokenizer; do
    "$R" $c --help >"$W/out" 2>"$W/err" && grep -q "usage" "$W/out" && ok "rlhf $c --help" ||
        bad "rlhf $c --help"
done
expect_fail "unknown command is a usage error" 2 "unknown command" "$R" frobnicate

# Hugging Face -> rlhf: a tiny HF-layout GPT-2 (bare names, F16/BF16 tensors) and its PyTorch loss
F=tests/fixtures/hf_tiny
loss=$("$R" eval $F --ids $F/tokens.txt 2>"$W/err" | sed -n 's/^loss //p')
want=$(cat $F/expected_loss.txt)
close "$loss" "$want" 1e-4 &&
    ok "eval of a Hugging Face checkpoint matches PyTorch ($loss vs $want)" ||
    bad "eval of HF checkpoint: $loss vs $want"

# rlhf -> Hugging Face: a checkpoint initialised here, evaluated here and by the PyTorch script
if "$R" init --preset tiny --n-layer 2 --n-head 3 --n-embd 24 --n-positions 16 --vocab-size 101 \
    --seed 7 --out "$W/mine" 2>"$W/err"; then
    ours=$("$R" eval "$W/mine" --ids $F/tokens.txt 2>"$W/err" | sed -n 's/^loss //p')
    theirs=$(/usr/bin/python3 tests/ref/hf_interop.py check "$W/mine" 2>"$W/err" | sed -n 's/^loss //p')
    close "$ours" "$theirs" 1e-4 &&
        ok "checkpoint saved here loads in PyTorch with the same loss ($ours vs $theirs)" ||
        bad "reverse interop: $ours vs $theirs"
else bad "init for reverse interop"; fi

# init + info with odd sizes, a score head and the GPT-2 tokenizer
if "$R" init --preset tiny --n-head 3 --n-embd 48 --score-head --tokenizer data/gpt2 \
    --out "$W/t" 2>"$W/err" &&
   "$R" info "$W/t" >"$W/out" 2>"$W/err" && grep -q "3 heads, 48 channels" "$W/out" &&
       grep -q "scalar score" "$W/out" &&
   grep -q "eos token    50256" \
       "$W/out"; then ok "init with a tokenizer and a score head; info reports it"; else bad "init/info"; fi

# eval of text through the checkpoint's tokenizer: loss of a random model is near log(V)
printf 'The quick brown fox jumps over the lazy dog. It was a bright cold day in April.\n' > "$W/text.txt"
l=$("$R" eval "$W/t" --text "$W/text.txt" 2>"$W/err" | sed -n 's/^loss //p')
awk -v l="$l" 'BEGIN { exit !(l > 9.5 && l < 12.5) }' &&
    ok "eval --text on a random model gives ~log(50257) ($l)" || bad "eval --text: $l"
# long input: windows of the context, same loss as a single pass when the context allows it
"$R" init --preset tiny --n-positions 8 --tokenizer data/gpt2 --seed 3 --out "$W/short" 2>/dev/null
"$R" init --preset tiny --n-positions 64 --tokenizer data/gpt2 --seed 3 --out "$W/long" 2>/dev/null
"$R" tokenizer encode data/gpt2 --text "$W/text.txt" > "$W/ids.txt"
# windows of 8 predictions: the whole-file loss is the token-weighted mean of each window's loss
l8=$("$R" eval "$W/short" --ids "$W/ids.txt" 2>/dev/null | sed -n 's/^loss //p')
tr ' ' '\n' < "$W/ids.txt" | grep . > "$W/col.txt"
n=$(wc -l < "$W/col.txt"); sum=0; k=0
while [ $((k * 8 + 1)) -lt "$n" ]; do
    sed -n "$((k * 8 + 1)),$((k * 8 + 9))p" "$W/col.txt" > "$W/win.txt"
    cnt=$(($(wc -l < "$W/win.txt") - 1))
    lk=$("$R" eval "$W/short" --ids "$W/win.txt" 2>/dev/null | sed -n 's/^loss //p')
    sum=$(awk -v s="$sum" -v l="$lk" -v c="$cnt" 'BEGIN { printf "%.9f", s + l * c }')
    k=$((k + 1))
done
mean=$(awk -v s="$sum" -v n="$n" 'BEGIN { printf "%.9f", s / (n - 1) }')
[ "$k" -gt 2 ] && close "$l8" "$mean" 1e-5 &&
    ok "eval over $k context windows equals the mean of the windows ($l8 vs $mean)" ||
    bad "eval windows: $l8 vs $mean ($k windows)"

# tokenizer: exact GPT-2 ids, and byte-exact round trip including invalid UTF-8
printf 'Hello world' > "$W/hw.txt"
[ "$("$R" tokenizer encode data/gpt2 --text "$W/hw.txt")" = "15496 995" ] &&
    ok "tokenizer encode gives GPT-2's ids" || bad "tokenizer encode"
printf 'caf\303\251 \344\275\240\345\245\275 \360\237\230\200 \377\376 tabs\t\tand\n\n  spaces' > "$W/rt.bin"
"$R" tokenizer encode data/gpt2 --text "$W/rt.bin" | "$R" tokenizer decode \
    data/gpt2 > "$W/rt.out" &&
    cmp -s "$W/rt.bin" "$W/rt.out" && ok "tokenizer encode | decode is byte-exact" ||
        bad "tokenizer round trip"
yes 'the cat sat on the mat while the dog sat on the log' | head -200 > "$W/corpus.txt"
if "$R" tokenizer train --vocab-size 300 --out "$W/tok" "$W/corpus.txt" 2>"$W/err" &&
    [ -f "$W/tok/vocab.json" ] &&
   "$R" tokenizer encode "$W/tok" --text "$W/hw.txt" | "$R" tokenizer decode \
       "$W/tok" | cmp -s - "$W/hw.txt"; then
    ok "tokenizer train writes a usable vocabulary"; else bad "tokenizer train"; fi

# generate: deterministic for a seed, greedy is seed-independent, JSONL out for a prompt file
a=$("$R" generate "$W/t" --prompt "Once upon a time" --max-new 12 --seed 5 2>/dev/null)
b=$("$R" generate "$W/t" --prompt "Once upon a time" --max-new 12 --seed 5 2>/dev/null)
c=$("$R" generate "$W/t" --prompt "Once upon a time" --max-new 12 --seed 6 2>/dev/null)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" != "$c" ] &&
    ok "generate: same seed same text, other seed other text" || bad "generate seeds"
g1=$("$R" generate "$W/t" --prompt "Hi" --max-new 8 --greedy --seed 1 2>/dev/null)
g2=$("$R" generate "$W/t" --prompt "Hi" --max-new 8 --greedy --seed 2 2>/dev/null)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && ok "generate --greedy ignores the seed" || bad "greedy"
printf 'first prompt\n{"prompt": "second \\"quoted\\" prompt"}\nthird\n' > "$W/prompts.txt"
"$R" generate "$W/t" --prompts "$W/prompts.txt" --max-new 4 --batch 2 >"$W/out" 2>"$W/err" &&
    [ "$(wc -l < "$W/out")" -eq 3 ] && grep -q '"prompt":"second \\"quoted\\" prompt"' "$W/out" &&
    ok "generate --prompts prints one JSON line per prompt" || bad "generate --prompts"

# bad inputs: a clear message and a non-zero exit
expect_fail "eval of a missing checkpoint" 1 "no such checkpoint" "$R" eval "$W/nope" \
    --ids "$W/ids.txt"
printf '1 2 x3 4\n' > "$W/badids.txt"
expect_fail "eval --ids with a bad token names file and line" 1 "badids.txt:1" "$R" eval "$W/t" \
    --ids "$W/badids.txt"
printf '1 2 50257\n' > "$W/bigid.txt"
expect_fail "eval --ids with an id outside the vocabulary" 1 "not a token id" "$R" eval "$W/t" \
    --ids "$W/bigid.txt"
printf '7\n' > "$W/one.txt"
expect_fail "eval of a single token" 1 "at least 2 tokens" "$R" eval "$W/t" --ids "$W/one.txt"
expect_fail "eval needs exactly one input" 2 "exactly one" "$R" eval "$W/t"
expect_fail "init with n_embd not divisible by n_head" 1 "divisible" "$R" init --preset tiny \
    --n-head 5 --out "$W/x"
expect_fail "init with an unknown preset" 2 "unknown preset" "$R" init --preset huge --out "$W/x"
expect_fail "init with a non-numeric size" 2 "not an integer" "$R" init --preset tiny \
    --n-layer two --out "$W/x"
expect_fail "generate past the context" 1 "exceeds the context" "$R" generate "$W/short" \
    --prompt "Hello there" --max-new 50
expect_fail "generate with top-p outside 0..1" 2 "top-p" "$R" generate "$W/t" --prompt "Hi" \
    --top-p 1.5
mkdir -p "$W/corrupt" && cp "$W/t/config.json" "$W/corrupt/" &&
    head -c 100 "$W/t/model.safetensors" > "$W/corrupt/model.safetensors"
expect_fail "eval of a truncated model.safetensors" 1 "model.safetensors" "$R" eval "$W/corrupt" \
    --ids "$W/ids.txt" --tokenizer data/gpt2
expect_fail "tokenizer with a missing directory" 1 "vocab" "$R" tokenizer encode "$W/nope" \
    --text "$W/hw.txt"
# --out in a folder that does not exist yet (the README's first example): made as mkdir -p would
"$R" init --preset tiny --n-layer 1 --n-embd 32 --n-head 2 --vocab-size 300 \
    --out "$W/fresh/ws/base" >"$W/out" 2>"$W/err" &&
    [ -f "$W/fresh/ws/base/model.safetensors" ] &&
        "$R" info "$W/fresh/ws/base" >"$W/out" 2>"$W/err" &&
    ok "init --out ws/base where ws does not exist: the parent is made" ||
        bad "init into a new parent"
: > "$W/plainfile"
expect_fail "init --out under a regular file" 1 "plainfile is not a directory" "$R" init \
    --preset tiny --out "$W/plainfile/base"
lib_summary
