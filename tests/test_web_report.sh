#!/bin/sh
# rlhf report and rlhf metrics export on a small workspace (tests/fixtures/web: two labelers'
# overlapping rankings, one with HTML and quotes in its texts, made by `reward import`; then
# reward scores of two models, runs of a pipeline and outside it, metrics with a NULL, rollouts
# and a claim, inserted with the sqlite3 shell). The report opens in headless Chromium with no
# console message and no script, and its SVG element counts match the database; the TensorBoard
# event files are read back by an independent reader (tests/web_report_check.py: its own CRC-32C
# and protobuf decoding) with every step and value equal to the database's; csv and jsonl equal
# the metrics rows; bad inputs are one-line errors, exit 1, leaving earlier files whole; the
# database is read, never changed (its sorted .dump is the same after every command). Section
# screenshots go to BUILD/screenshots/report/. About 15 s.
. "$PWD/tests/lib.sh"
export OMP_NUM_THREADS=1
lib_workspace
PY=/usr/bin/python3
CHECK="$TESTS/web_report_check.py"
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
WS="$W/ws"
DB="$WS/workspace.db"
mkdir -p "$WS"
for f in alice bob; do
    "$B/reward" import --workspace "$DB" --source "$f" "$FIX/web/$f.jsonl" 2>"$W/err" ||
        bad "import $f"
done
echo '{"prompt": "Add 3 and 4"}' > "$W/queued.jsonl"
"$B/reward" import --workspace "$DB" "$W/queued.jsonl" 2>"$W/err" || bad "import a prompt"
sqlite3 "$DB" < "$FIX/web/fill.sql" 2>"$W/err" || bad "fill the workspace"
sqlite3 "$DB" .dump | sort > "$W/before.dump"

# 1. the report: every view, charts counted against the database in a browser
check "report with --run 3 --run ppo" \
    "'$R' report '$WS' --out '$W/report.html' --run 3 --run ppo 2>'$W/err'"
if $PY "$CHECK" report "$W/report.html" "$DB" 3,4,5 "$ROOT/$BUILD/screenshots/report" \
    >"$W/out" 2>"$W/err"; then ok "report in Chromium: counts match the database"
else cat "$W/out"; bad "report in Chromium: counts match the database"; fi
check "report given the database file, default runs" \
    "'$R' report '$DB' --out '$W/default.html' 2>'$W/err' && \
     grep -q 'class=\"run selected\"' '$W/default.html'"
check "the prompt with HTML is escaped in the file" \
    "grep -q '&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;' '$W/report.html' && \
     ! grep -q '<script' '$W/report.html'"

# 2. metrics export: TensorBoard, csv and jsonl read back
check "tensorboard export" "'$R' metrics export '$WS' --format tensorboard --out '$W/tb' \
    2>'$W/err'"
if $PY "$CHECK" tensorboard "$W/tb" "$DB" >"$W/out" 2>"$W/err"; then
    ok "tensorboard files read back: CRCs, steps and values"
else cat "$W/out"; bad "tensorboard files read back: CRCs, steps and values"; fi
check "tensorboard export of one run" "'$R' metrics export '$WS' --format tensorboard \
    --run 5 --out '$W/tb5' 2>'$W/err' && $PY '$CHECK' tensorboard '$W/tb5' '$DB' 5 >'$W/out'"
check "csv export equals the metrics rows" "'$R' metrics export '$WS' --format csv \
    --out '$W/m.csv' 2>'$W/err' && $PY '$CHECK' csv '$W/m.csv' '$DB' >'$W/out'"
check "jsonl export to stdout, --run by stage" "'$R' metrics export '$WS' --format jsonl \
    --run sft > '$W/m.jsonl' 2>'$W/err' && $PY '$CHECK' jsonl '$W/m.jsonl' '$DB' 2 3 >'$W/out'"

# 3. bad inputs: one line, exit 1, nothing earlier lost
one_line() { [ "$(wc -l < "$W/err")" -eq 1 ]; }
expect_fail "missing workspace" 1 "workspace $W/none: No such file" \
    "$R" report "$W/none" --out "$W/x.html"
check "  in one line" one_line
mkdir -p "$W/empty"
expect_fail "a folder without a database" 1 "no workspace.db in it" \
    "$R" metrics export "$W/empty" --format csv
cp "$W/report.html" "$W/keep.html"
expect_fail "unknown run" 1 "unknown run 'nope'" \
    "$R" report "$WS" --out "$W/report.html" --run nope
check "  in one line, the earlier report kept" "one_line && cmp -s '$W/report.html' '$W/keep.html'"
expect_fail "unknown run (export)" 1 "unknown run '42'" \
    "$R" metrics export "$WS" --format csv --run 42
expect_fail "unknown format" 1 "--format 'parquet': expected csv, jsonl or tensorboard" \
    "$R" metrics export "$WS" --format parquet
check "  in one line" one_line
expect_fail "tensorboard without --out" 1 "needs --out DIR" \
    "$R" metrics export "$WS" --format tensorboard
touch "$W/file"
expect_fail "unwritable report" 1 "$W/file/r.html" "$R" report "$WS" --out "$W/file/r.html"
check "  in one line" one_line
expect_fail "unwritable csv" 1 "$W/file/m.csv" \
    "$R" metrics export "$WS" --format csv --out "$W/file/m.csv"
expect_fail "unwritable tensorboard folder" 1 "$W/file/tb" \
    "$R" metrics export "$WS" --format tensorboard --out "$W/file/tb"
check "  in one line" one_line
check "no temporary file left" "[ -z \"\$(find '$W' -name '*.tmp*')\" ]"
sqlite3 "$DB" .dump | sort > "$W/after.dump"
check "the database is as it was (reads only)" "cmp -s '$W/before.dump' '$W/after.dump'"
lib_summary
