#!/bin/sh
# Runs every test binary in BUILD/tests and prints one closing line "N passed, N failed".
# Each binary prints "ok"/"FAIL" per case and its own "N passed, N failed" line; the runner adds
# each test's wall time, so the slow ones are easy to find.
BUILD=${1:-build}
total_pass=0; total_fail=0
for t in "$BUILD"/tests/test_* tests/test_*.sh; do
    case "$t" in *.o|*.d) continue;; esac
    case "$t" in
        *.sh) run="sh $t";;
        *) [ -x "$t" ] || continue; run="$t";;
    esac
    echo "== $(basename "$t")"
    t0=$(date +%s)
    out=$(BUILD="$BUILD" $run 2>&1); rc=$?
    echo "   ($(basename "$t"): $(( $(date +%s) - t0 )) s)"
    printf '%s\n' "$out" | grep -v '^[0-9]* passed, [0-9]* failed$'
    line=$(printf '%s\n' "$out" | grep '^[0-9]* passed, [0-9]* failed$' | tail -1)
    if [ -z "$line" ]; then
        echo "FAIL $(basename "$t"): exited $rc without a summary"
        total_fail=$((total_fail + 1)); continue
    fi
    p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        echo "FAIL $(basename "$t"): exited $rc"; total_fail=$((total_fail + 1))
    fi
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
