#!/bin/sh
# rlhf serve's HTTP security matrix (tests/web_security.py, Python's standard library): no cookie,
# wrong or expired sessions and tokens, a labeler submitting another's claim or opening the admin
# pages, missing or wrong CSRF tokens, oversized bodies, headers and URLs, slow clients, path
# traversal, SQL metacharacters and HTML in the data; each with its status and the database
# unchanged; the login rate limit. Before it, the bad inputs of rlhf serve and rlhf users: one
# line, exit 1 (2 for usage). About 15 seconds.
. "$PWD/tests/lib.sh"
lib_workspace
db="$W/ws.db"
expect_fail "serve: a missing workspace" 1 "workspace $W/none: No such file" "$R" serve "$W/none"
expect_fail "users list: a folder without workspace.db" 1 "no workspace.db in it" \
    "$R" users list "$W"
"$R" users add "$db" ann --role labeler > "$W/token" 2> "$W/err" &&
    [ "$(wc -c < "$W/token")" = 65 ] && grep -q "shown only this once" "$W/err" &&
    ok "users add prints a 64-digit token once" || bad "users add prints a 64-digit token once"
expect_fail "users add: an unknown role" 1 "\-\-role 'boss': expected labeler or admin" \
    "$R" users add "$db" bob --role boss
expect_fail "users add: a name taken" 1 "user 'ann' exists" "$R" users add "$db" ann --role admin
expect_fail "users add: an empty name" 1 "the user name is empty" \
    "$R" users add "$db" "" --role admin
expect_fail "users add: no role" 2 "\-\-role is required" "$R" users add "$db" bob
expect_fail "users remove: an unknown user" 1 "no user 'bob'" "$R" users remove "$db" bob
expect_fail "users: an unknown command" 2 "unknown command 'delete'" "$R" users delete "$db" ann
sqlite3 "$db" "SELECT hash FROM users" | grep -q "$(cat "$W/token")" &&
    bad "only a hash of the token is stored" || ok "only a hash of the token is stored"
expect_fail "serve: --listen without a port" 1 "expected HOST:PORT" \
    "$R" serve "$db" --listen 127.0.0.1
expect_fail "serve: --listen on a name that is no address" 1 "\-\-listen 'no.such.host.invalid:1'" \
    "$R" serve "$db" --listen no.such.host.invalid:1
expect_fail "serve: a bad split" 1 "\-\-split 'dev': expected train, valid or test" \
    "$R" serve "$db" --split dev
expect_fail "serve: --overlap 0" 1 "\-\-overlap: '0' is not an integer in 1..1000" \
    "$R" serve "$db" --overlap 0
# a port already taken: a clear message, not a silent exit
/usr/bin/python3 -c 'import socket, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); print(s.getsockname()[1], flush=True)
time.sleep(30)' > "$W/port" & holder=$!
i=0; while [ ! -s "$W/port" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
expect_fail "serve: a port in use" 1 "Address already in use" \
    "$R" serve "$db" --listen "127.0.0.1:$(cat "$W/port")"
kill $holder 2>/dev/null; wait $holder 2>/dev/null
ROOT="$ROOT" BUILD="$BUILD" /usr/bin/python3 "$TESTS/web_security.py" > "$W/py" 2>&1; rc=$?
grep -v '^[0-9]* passed, [0-9]* failed$' "$W/py"
p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$W/py")
f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$W/py")
pass=$((pass + ${p:-0})); fail=$((fail + ${f:-1}))
[ "$rc" -eq 0 ] || [ "${f:-1}" -gt 0 ] || bad "web_security.py exited $rc"
lib_summary
