#!/bin/sh
# `rlhf tokenizer encode|decode` on a directory with a Hugging Face tokenizer.json (the vendored
# Llama 3 and SentencePiece-style files): ids as the JavaScript reference recorded them, BOS with
# --add-special, byte-exact round trips, and the error naming the key of an unsupported file.
. "$PWD/tests/lib.sh"
lib_workspace

for n in llama3 llama2; do
    mkdir -p "$W/$n"
    gzip -dc tests/fixtures/tokenizers/$n/tokenizer.json.gz > "$W/$n/tokenizer.json"
    gzip -dc tests/fixtures/tokenizers/$n/tokenizer_config.json.gz > "$W/$n/tokenizer_config.json"
done
printf 'Hello, world!' > "$W/hw.txt"
[ "$("$R" tokenizer encode "$W/llama3" --text "$W/hw.txt")" = "9906 11 1917 0" ] &&
    ok "encode with Llama 3's tokenizer.json" || bad "encode llama3"
[ "$("$R" tokenizer encode "$W/llama2" --text "$W/hw.txt" --add-special)" = "1 22557 28725 1526 28808" ] &&
    ok "encode --add-special puts the template's BOS first" || bad "encode --add-special"
printf 'caf\303\251 \344\275\240\345\245\275 \360\237\230\200 \377\376 1234567 tabs\t\tand\n\n  spaces' > "$W/rt.bin"
for n in llama3 llama2; do
    "$R" tokenizer encode "$W/$n" --text "$W/rt.bin" | "$R" tokenizer decode "$W/$n" > "$W/rt.out" &&
        cmp -s "$W/rt.bin" "$W/rt.out" && ok "$n: encode | decode is byte-exact" ||
        bad "$n: round trip"
done
mkdir -p "$W/bad"
printf '{"model": {"type": "Unigram", "vocab": []}}' > "$W/bad/tokenizer.json"
expect_fail "an unsupported tokenizer.json names the key" 1 "model.type" \
    "$R" tokenizer encode "$W/bad" --text "$W/hw.txt"
lib_summary
