#!/bin/sh
# bench/bench_web.py in miniature: 4 labelers submit 10 rankings each at once through rlhf serve;
# none is lost or duplicated, each is stored under the labeler who sent it, and the database
# passes integrity_check. (The full load, 32 x 200, is the benchmark, not a test.) A few seconds.
. "$PWD/tests/lib.sh"
lib_workspace
if /usr/bin/python3 "$ROOT/bench/bench_web.py" --labelers 4 --rankings 10 --build "$BUILD" \
        > "$W/out" 2> "$W/err"; then
    ok "4 labelers x 10 rankings at once: none lost or duplicated, integrity ok"
else
    cat "$W/out" >> "$W/err"; bad "4 labelers x 10 rankings at once"
fi
grep -q "rankings stored: 40 of 40, distinct prompts 40, integrity_check ok" "$W/out" &&
    ok "the bench reports what it checked" || bad "the bench reports what it checked"
lib_summary
