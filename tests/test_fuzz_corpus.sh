#!/bin/sh
# Replays every fuzz target's corpus (seeds and every crash ever found) through a plain driver
# build, so inputs that once broke a parser stay fixed. (make fuzz runs the fuzzers themselves.)
. "$PWD/tests/lib.sh"
lib_workspace
for d in tests/fuzz/corpus/*/; do
    t=$(basename "$d")
    bin="$BUILD/fuzz/$t"
    if [ ! -x "$bin" ]; then bad "$t: $bin was not built"; continue; fi
    n=$(ls "$d" | wc -l)
    if OMP_NUM_THREADS=1 "$bin" "$d"* > "$W/err" 2>&1; then ok "fuzz corpus $t ($n inputs)"
    else bad "fuzz corpus $t"; fi
done
lib_summary
