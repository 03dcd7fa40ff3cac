#!/bin/sh
# Tokenizer speed, ours next to well-known JavaScript tokenizers on the same ~4 MiB corpus:
# bench_tokenizer (C, one thread) and node (bench/tokenizer_ref.js) running, for GPT-2, the npm
# packages gpt-3-encoder and gpt-tokenizer; for Llama 3's tokenizer.json (the vendored
# tests/fixtures/tokenizers/llama3), tiktoken's cl100k_base (WASM) and @lenml/tokenizers (the
# JavaScript HF tokenizers, whose ids must equal ours). Prints one line
#   RESULT {"name":..,"value":..,"unit":"MB/s","ref_name":..,"ref_value":..,"ratio":..}
# per figure and reference (ratio = ours / ref), and checks that both sides produced the same ids.
#   sh bench/tokenizer.sh [BUILD]        (from the repo root; BUILD defaults to build)
# (the Llama 3 figures are named tokenizer_llama3_*)
# The npm packages go into TOKREF_DIR (default /tmp/tokref, outside the repo) when absent; without
# node or the registry the C figures are printed alone. Never fails on time.
BUILD=${1:-build}
# our CHECK line ($out) against each JavaScript package's ($js)
compare_ids() {
    ours=$(printf '%s\n' "$out" | sed -n 's/^CHECK \(tokens=.*\)$/\1/p')
    printf '%s\n' "$js" | sed -n 's/^CHECK \([^ ]*\) \(tokens=.*\)$/\1 \2/p' | while read -r name check; do
        if [ "$check" = "$ours" ]; then echo "same ids as $name ($check)"
        else echo "WARNING: ids differ from $name: ours $ours, theirs $check"; fi
    done
}
REF=${TOKREF_DIR:-/tmp/tokref}
BIN="$BUILD/bench/bench_tokenizer"
[ -x "$BIN" ] || make "$BIN" >&2 || { echo "tokenizer.sh: cannot build $BIN" >&2; exit 1; }
CORPUS="$BUILD/bench_tokenizer_corpus.txt"
"$BIN" --write-corpus "$CORPUS" >&2 || exit 1

refs=""
if command -v node >/dev/null 2>&1; then
    if ! TOKREF_DIR="$REF" node -e "require(require.resolve('gpt-3-encoder',{paths:['$REF']}))" 2>/dev/null ||
       ! TOKREF_DIR="$REF" node -e "require(require.resolve('gpt-tokenizer',{paths:['$REF']}))" 2>/dev/null; then
        mkdir -p "$REF" && { [ -f "$REF/package.json" ] || echo '{}' > "$REF/package.json"; }
        echo "tokenizer.sh: installing gpt-3-encoder gpt-tokenizer into $REF" >&2
        npm install --no-audit --no-fund --prefix "$REF" gpt-3-encoder >&2 || true
        npm install --no-audit --no-fund --prefix "$REF" gpt-tokenizer >&2 || true
    fi
    js=$(TOKREF_DIR="$REF" node bench/tokenizer_ref.js "$CORPUS" 3)
    printf '%s\n' "$js" | grep '^{' >&2
    refs=$(printf '%s\n' "$js" | sed -n 's/^REF \(.*\)$/--ref \1/p' | tr '\n' ' ')
else
    echo "tokenizer.sh: node not found; C figures only" >&2
fi
# shellcheck disable=SC2086
out=$("$BIN" --corpus "$CORPUS" $refs) || exit 1
printf '%s\n' "$out"
compare_ids

# Llama 3's tokenizer.json
L3="$BUILD/bench_tokenizer_llama3"
mkdir -p "$L3" &&
    gzip -dc tests/fixtures/tokenizers/llama3/tokenizer.json.gz > "$L3/tokenizer.json" &&
    gzip -dc tests/fixtures/tokenizers/llama3/tokenizer_config.json.gz > "$L3/tokenizer_config.json" ||
    { echo "tokenizer.sh: cannot unpack the Llama 3 tokenizer" >&2; exit 1; }
refs=""
js=""
if command -v node >/dev/null 2>&1; then
    for p in tiktoken @lenml/tokenizers; do
        node -e "require(require.resolve('$p',{paths:['$REF']}))" 2>/dev/null && continue
        mkdir -p "$REF" && { [ -f "$REF/package.json" ] || echo '{}' > "$REF/package.json"; }
        echo "tokenizer.sh: installing $p into $REF" >&2
        npm install --no-audit --no-fund --prefix "$REF" "$p" >&2 || true
    done
    js=$(TOKREF_DIR="$REF" node bench/tokenizer_ref.js "$CORPUS" 3 llama3 "$L3")
    printf '%s\n' "$js" | grep '^{' >&2
    refs=$(printf '%s\n' "$js" | sed -n 's/^REF \(.*\)$/--ref \1/p' | tr '\n' ' ')
fi
# shellcheck disable=SC2086
out=$("$BIN" --vocab "$L3" --label llama3 --corpus "$CORPUS" $refs) || exit 1
printf '%s\n' "$out"
compare_ids
