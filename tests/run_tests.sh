#!/bin/sh
# Runs every test binary in BUILD/tests and every tests/test_*.sh, and prints one closing line
# "N passed, N failed". Each test prints "ok"/"FAIL" per case and its own "N passed, N failed"
# line; the runner adds each test's wall time, so the slow ones are easy to find.
# TEST_ONLY, when set, names the ones to run (e.g. TEST_ONLY="test_mpi.sh test_kernels").
# TEST_JOBS tests run at once (default 2, 1 on a one-core machine): each is a separate process
# tree in a scratch folder of its own, and most spend their time in one thread or waiting on
# another process, so two share two cores well. A test's lines come out together when it ends
# (in the order tests end). The shell tests, the long ones, start first; stdin is /dev/null, and
# each test is a session of its own (Ctrl-C ends them all through the runner).
BUILD=${1:-build}
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
JOBS=${TEST_JOBS:-$([ "$cores" -ge 2 ] && echo 2 || echo 1)}
Q=$(mktemp -d) || exit 1
lanes=""
# interrupted (Ctrl-C): every running test's whole process group, then the lanes
trap 'for p in $(cat "$Q"/pid.* 2>/dev/null); do kill -TERM -"$p" 2>/dev/null; done
      kill $lanes 2>/dev/null; rm -rf "$Q"; exit 130' INT TERM HUP

# run_test N PATH: runs test N, records "passed failed" in Q/N.res, prints its block
run_test() {
    t=$2; name=$(basename "$t")
    case "$t" in *.sh) run="sh $t";; *) run="$t";; esac
    t0=$(date +%s)
    # a session (and process group) of its own, its pid the group's id
    BUILD="$BUILD" setsid $run > "$Q/$1.out" 2>&1 < /dev/null &
    echo $! > "$Q/pid.$1"
    wait $!; rc=$?
    rm -f "$Q/pid.$1"
    secs=$(($(date +%s) - t0))
    line=$(grep '^[0-9]* passed, [0-9]* failed$' "$Q/$1.out" | tail -1)
    if [ -z "$line" ]; then p=0; f=1; note="FAIL $name: exited $rc without a summary"
    else
        p=${line%% passed*}; f=${line#*passed, }; f=${f%% failed*}; note=""
        if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; note="FAIL $name: exited $rc"; fi
    fi
    echo "$p $f" > "$Q/$1.res"
    # one test's block at a time (mkdir is atomic: the lock)
    until mkdir "$Q/lock" 2>/dev/null; do sleep 0.1; done
    echo "== $name"
    echo "   ($name: $secs s)"
    grep -v '^[0-9]* passed, [0-9]* failed$' "$Q/$1.out"
    [ -z "$note" ] || echo "$note"
    rmdir "$Q/lock"
}
# a lane takes the next test no other lane has claimed (mkdir again), until none is left
lane() {
    n=0
    for t in $TESTS_LIST; do
        n=$((n + 1))
        mkdir "$Q/claim.$n" 2>/dev/null && run_test $n "$t"
    done
}

TESTS_LIST=""
for t in tests/test_*.sh "$BUILD"/tests/test_*; do
    case "$t" in *.o|*.d) continue;; esac
    case " ${TEST_ONLY:-$(basename "$t")} " in *" $(basename "$t") "*) ;; *) continue;; esac
    case "$t" in *.sh) [ -f "$t" ] || continue;; *) [ -x "$t" ] || continue;; esac
    TESTS_LIST="$TESTS_LIST $t"
done
j=0
while [ $j -lt "$JOBS" ]; do lane & lanes="$lanes $!"; j=$((j + 1)); done
wait

total_pass=0; total_fail=0; n=0
for t in $TESTS_LIST; do
    n=$((n + 1))
    if [ -f "$Q/$n.res" ]; then read -r p f < "$Q/$n.res"
    else p=0; f=1; echo "FAIL $(basename "$t"): not run"; fi
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f))
done
rm -rf "$Q"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
