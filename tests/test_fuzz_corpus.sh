#!/bin/sh
# Replays every fuzz target's corpus (seeds and every crash ever found) through a plain driver
# build, so inputs that once broke a parser stay fixed. (make fuzz runs the fuzzers themselves.)
BUILD=${BUILD:-build}
pass=0; fail=0
for d in tests/fuzz/corpus/*/; do
    t=$(basename "$d")
    bin="$BUILD/fuzz/$t"
    if [ ! -x "$bin" ]; then echo "FAIL $t: $bin was not built"; fail=$((fail + 1)); continue; fi
    n=$(ls "$d" | wc -l)
    if OMP_NUM_THREADS=1 "$bin" "$d"* > /tmp/fuzz-replay.$$ 2>&1; then echo "ok   fuzz corpus $t ($n inputs)"; pass=$((pass + 1))
    else echo "FAIL fuzz corpus $t"; tail -5 /tmp/fuzz-replay.$$; fail=$((fail + 1)); fi
done
rm -f /tmp/fuzz-replay.$$
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
