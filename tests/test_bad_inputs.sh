#!/bin/sh
# The bad-input matrix: every program against every kind of bad input that reaches it (empty
# files, binary garbage, truncated files, safetensors with a wrong dtype or shape, NaN weights, a
# huge header length, unknown YAML keys, a database of a newer schema, a read-only workspace),
# and SQL metacharacters in prompts and labeler names, which must be stored verbatim and work.
# A bad input must end the program with exit status 1 and one line on stderr, its last, naming
# the input; a database given to the program must keep every row it held (compared as a
# sorted .dump before and after). MATRIX_OUT=FILE writes the matrix (row, program, result).
. "$PWD/tests/lib.sh"
lib_workspace
export OMP_NUM_THREADS=1 OMP_WAIT_POLICY=passive
ERR_LINES=4
cd "$W" || exit 1
: > matrix

# ro DIR CMD...: runs CMD while DIR is read-only. Root ignores permission bits, so as root DIR is
# bind-mounted read-only in a private mount namespace (unshare -m); otherwise chmod a-w.
ro() {
    d=$1; shift
    if [ "$(id -u)" = 0 ]; then
        unshare -m sh -c 'd=$1; shift; mount --bind "$d" "$d" && mount -o remount,bind,ro "$d" "$d" && exec timeout 120 "$@"' sh "$d" "$@"
    else
        chmod -R a-w "$d"; timeout 120 "$@"; r=$?; chmod -R u+w "$d"; return $r
    fi
}

# cell ROW PROGRAM EXPECT PATTERN CMD...: EXPECT "error" (exit 1, the last stderr line matches
# PATTERN and is the only line that does, no crash or usage text) or "works" (exit 0). DB, when
# set, names a database that must keep every row.
DB=""
cell() {
    row=$1; prog=$2; want=$3; pat=$4; shift 4
    [ -n "$DB" ] && sqlite3 -batch "$DB" .dump 2>/dev/null | sort > db.before
    case $1 in ro|fsize|capped) "$@" > out 2> err;; *) timeout 120 "$@" > out 2> err;; esac; rc=$?
    why=""
    if [ "$want" = error ]; then
        last=$(tail -n 1 err)
        [ $rc -eq 1 ] || why="exit $rc"
        printf '%s\n' "$last" | grep -aq -- "$pat" || why="$why; last line does not name '$pat'"
        [ "$(grep -ac -- "$pat" err)" -le 1 ] || why="$why; more than one line names '$pat'"
        grep -aq "usage:\|Sanitizer\|runtime error\|Segmentation\|Assertion\|dumped" err &&
            why="$why; crash or usage text"
    else
        [ $rc -eq 0 ] || why="exit $rc"
    fi
    if [ -n "$DB" ]; then
        sqlite3 -batch "$DB" .dump 2>/dev/null | sort > db.after
        lost=$(comm -23 db.before db.after | wc -l)
        [ "$lost" -eq 0 ] || why="$why; $lost database rows lost or changed"
    fi
    if [ -z "$why" ]; then
        ok "$row: $prog: $want"
        [ "$want" = error ] && res="error" || res="works"
        printf '%s\t%s\t%s\t%s\n' "$row" "$prog" "$res" "$(tail -n 1 err)" >> matrix
    else
        bad "$row: $prog: want $want:$why"
        printf '%s\t%s\t%s\n' "$row" "$prog" "FAIL" >> matrix
    fi
}

# ---------------------------------------------------------------------------------------------
# good inputs: a tokenizer, a language model, a reward model, a workspace with rankings
tiny_data 24
"$B/rlhf" tokenizer train --vocab-size 280 --out tok corpus.txt 2> err &&
"$B/rlhf" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 --tokenizer tok --seed 5 \
    --out lm 2> err &&
"$B/rlhf" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 --tokenizer tok --seed 6 \
    --score-head --no-lm-head --out rm 2> err &&
"$B/reward" import --workspace ws.db rank.jsonl prompts.jsonl demos.jsonl 2> err ||
    { bad "setup"; echo "$pass passed, $fail failed"; exit 1; }
# the broken files, from the good ones
python3 - <<'PY' || bad "making the broken files"
import json, os, random, shutil, struct
r = random.Random(1)
garbage = bytes(r.randrange(256) for _ in range(3000))
def files(name, data):
    with open(name, "wb") as f: f.write(data)
for ext in ("jsonl", "yaml", "txt"):
    files("empty." + ext, b"")
    files("garbage." + ext, garbage)
files("truncated.jsonl", open("rank.jsonl", "rb").read()[:-25])
files("truncated.yaml", b"model: {init: lm}\nout: {dir: o\ntrain: {st")
def ckpt(name, src, edit):
    shutil.copytree(src, name)
    p = os.path.join(name, "model.safetensors")
    raw = open(p, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    h = json.loads(raw[8:8 + n])
    out = edit(raw, n, h)
    open(p, "wb").write(out)
def rehead(h, raw, n):
    b = json.dumps(h).encode()
    b += b" " * (n - len(b)) if len(b) <= n else b""
    return struct.pack("<Q", len(b)) + b + raw[8 + n:]
def dtype(raw, n, h):
    k = next(k for k in h if k.endswith("wte.weight")); h[k]["dtype"] = "I32"; return rehead(h, raw, n)
def shape(raw, n, h):
    k = next(k for k in h if k.endswith("wte.weight")); h[k]["shape"] = h[k]["shape"][::-1]; return rehead(h, raw, n)
def nan(raw, n, h):
    k = next(k for k in h if k.endswith("ln_f.weight")); o = 8 + n + h[k]["data_offsets"][0]
    return raw[:o] + struct.pack("<f", float("nan")) + raw[o + 4:]
for src in ("lm", "rm"):
    ckpt(src + "-empty", src, lambda raw, n, h: b"")
    ckpt(src + "-garbage", src, lambda raw, n, h: garbage)
    ckpt(src + "-truncated", src, lambda raw, n, h: raw[:len(raw) // 2])
    ckpt(src + "-dtype", src, dtype)
    ckpt(src + "-shape", src, shape)
    ckpt(src + "-nan", src, nan)
    ckpt(src + "-hugeheader", src, lambda raw, n, h: struct.pack("<Q", 0x7fffffffffffff00) + raw[8:])
# tokenizer directories
for kind in ("empty", "garbage", "truncated"):
    os.makedirs("tok-" + kind)
    for f in ("vocab.json", "merges.txt"):
        src = open(os.path.join("tok", f), "rb").read()
        files(os.path.join("tok-" + kind, f), {"empty": b"", "garbage": garbage, "truncated": src[:len(src) // 2]}[kind])
PY
# a workspace of a newer schema, one of garbage, the configs
cp ws.db newer.db && sqlite3 newer.db "update meta set value = '99' where key = 'schema_version'"
cp garbage.txt garbage.db
printf 'model: {init: lm}\nout: {dir: o-sft}\ndata: {format: jsonl, train: [demos.jsonl]}\ntrain: {batch_size: 4, steps: 2}\neval: {every: 100}\n' > sft.yaml
printf 'model: {init: lm}\nout: {dir: o-rm}\nworkspace: ws.db\ntrain: {batch_size: 4, steps: 1}\neval: {every: 100}\n' > rm.yaml
printf 'model: {policy: lm, reward: rm}\nout: {dir: o-ppo}\ndata: {prompts: [prompts.jsonl]}\nrollout: {batch_size: 4, max_new_tokens: 3}\nppo: {minibatch_size: 2, epochs: 1}\nptx: {coef: 0}\ntrain: {iterations: 1}\n' > ppo.yaml
printf 'workspace: wsp\nstages:\n  - {name: info, run: rlhf info, args: [lm]}\n' > pipe.yaml
printf 'workspace: wsp\nstages:\n  - {name: info, run: rlhf info, args: [lm]}\nwat: 1\n' > pipe-unknown.yaml
printf 'workspace: wsp\nstages:\n  - {name: info, run: rlhf info, args: [lm]\n' > pipe-truncated.yaml
mkdir -p rodir && cp ws.db rodir/ws.db && cp -r lm rodir/lm

# ---------------------------------------------------------------------------------------------
# empty, garbage and truncated files, each where a program reads it
for k in empty garbage truncated; do
    row="$k file"
    [ $k = truncated ] && y=truncated.yaml || y=$k.yaml
    cell "$row" "sft (config)" error "$y" "$B/sft" -c $y
    [ $k = truncated ] ||
        cell "$row" "sft (data)" error "$k.jsonl" "$B/sft" -c sft.yaml --set data.train=$k.jsonl \
            --set out.dir=o-$k
    [ $k = truncated ] &&
        cell "$row" "sft (data)" error "truncated.jsonl" "$B/sft" -c sft.yaml \
            --set data.train=truncated.jsonl --set out.dir=o-$k
    cp ws.db w-$k.db; DB=w-$k.db
    cell "$row" "reward import" error "$k.jsonl" "$B/reward" import --workspace w-$k.db $k.jsonl
    # what a judge program answers: an empty line, garbage, a ranking cut short ("1>2" of 3)
    case $k in empty) a='echo';; garbage) a='cat garbage.txt; echo';; truncated) a='echo "1>2"';; esac
    printf 'read -r line; %s; cat > /dev/null\n' "$a" > answers-$k.sh
    j="sh answers-$k.sh"
    cell "$row" "reward label (judge's answer)" error "judge" "$B/reward" label \
        --workspace w-$k.db --labeler j-$k --policy lm --k 3 --max-new 3 --judge "$j"
    cell "$row" "reward train (config)" error "$y" "$B/reward" train -c $y
    cell "$row" "reward score (input)" error "$k.jsonl" "$B/reward" score rm --input $k.jsonl
    cell "$row" "ppo (config)" error "$y" "$B/ppo" -c $y
    cell "$row" "ppo (prompts)" error "$k.jsonl" "$B/ppo" -c ppo.yaml \
        --set "data.prompts=[$k.jsonl]" --set out.dir=o-ppo-$k
    DB=""
    cell "$row" "rlhf init (tokenizer)" error "tok-$k" "$B/rlhf" init --preset tiny \
        --tokenizer tok-$k --out i-$k
    cell "$row" "rlhf tokenizer (vocabulary)" error "tok-$k" "$B/rlhf" tokenizer encode tok-$k \
        --text corpus.txt
    # any bytes are text to a byte-level tokenizer: they encode and decode back exactly
    [ $k = garbage ] &&
        cell "$row" "rlhf tokenizer (text)" works "" \
            sh -c '"$0" tokenizer encode tok --text garbage.txt > ids && "$0" tokenizer decode tok --ids ids > back && cmp garbage.txt back' "$B/rlhf"
    cell "$row" "rlhf info" error "lm-$k" "$B/rlhf" info lm-$k
    cell "$row" "rlhf eval" error "lm-$k" "$B/rlhf" eval lm-$k --text corpus.txt
    cell "$row" "rlhf generate" error "lm-$k" "$B/rlhf" generate lm-$k --prompt hi --max-new 2
    [ $k = truncated ] && p=pipe-truncated.yaml || p=$k.yaml
    cell "$row" "rlhf run" error "$p" "$B/rlhf" run $p
done
# checkpoint damage, for every program that loads a model
for k in empty garbage truncated dtype shape nan hugeheader; do
    case $k in dtype) row="safetensors: wrong dtype";; shape) row="safetensors: wrong shape";; nan) row="NaN in weights";;
                hugeheader) row="safetensors: huge header length";; *) row="$k model.safetensors";; esac
    cp ws.db c-$k.db; DB=c-$k.db
    cell "$row" "sft" error "lm-$k" "$B/sft" -c sft.yaml --set model.init=lm-$k \
        --set out.dir=o-c-$k --set workspace=c-$k.db
    cell "$row" "reward train" error "lm-$k" "$B/reward" train -c rm.yaml --set model.init=lm-$k \
        --set out.dir=o-rc-$k --set workspace=c-$k.db
    cell "$row" "reward score" error "rm-$k" "$B/reward" score rm-$k --workspace c-$k.db
    cell "$row" "reward inspect" error "rm-$k" "$B/reward" inspect rm-$k --workspace c-$k.db
    cell "$row" "reward label (--policy)" error "lm-$k" "$B/reward" label --workspace c-$k.db \
        --labeler x --policy lm-$k --judge "cat"
    cell "$row" "ppo (policy)" error "lm-$k" "$B/ppo" -c ppo.yaml --set model.policy=lm-$k \
        --set out.dir=o-pc-$k --set workspace=c-$k.db
    cell "$row" "ppo (reward)" error "rm-$k" "$B/ppo" -c ppo.yaml --set model.reward=rm-$k \
        --set out.dir=o-pr-$k --set workspace=c-$k.db
    DB=""
    cell "$row" "rlhf info" error "lm-$k" "$B/rlhf" info lm-$k
    cell "$row" "rlhf eval" error "lm-$k" "$B/rlhf" eval lm-$k --text corpus.txt
    cell "$row" "rlhf generate" error "lm-$k" "$B/rlhf" generate lm-$k --prompt hi --max-new 2
done
# unknown keys
printf 'model: {init: lm}\nout: {dir: o-u}\ntrain: {stepz: 3}\n' > unknown.yaml
cell "unknown YAML key" "sft" error "unknown.yaml:3" "$B/sft" -c unknown.yaml
cell "unknown YAML key" "reward train" error "unknown.yaml:3" "$B/reward" train -c unknown.yaml
printf 'model: {policy: lm, reward: rm}\nout: {dir: o-u}\ntrain: {iterationz: 1}\n' > unknown-ppo.yaml
cell "unknown YAML key" "ppo" error "unknown-ppo.yaml:3" "$B/ppo" -c unknown-ppo.yaml
cell "unknown YAML key" "rlhf run" error "pipe-unknown.yaml:4" "$B/rlhf" run pipe-unknown.yaml

# a workspace database of a newer schema, and one that is not a database
for k in newer garbage; do
    [ $k = newer ] && row="database of a newer schema" || row="database file of garbage"
    [ $k = newer ] && DB=$k.db || DB=""
    cell "$row" "sft" error "$k.db" "$B/sft" -c sft.yaml --set workspace=$k.db --set out.dir=o-db-$k
    cell "$row" "reward import" error "$k.db" "$B/reward" import --workspace $k.db rank.jsonl
    cell "$row" "reward label" error "$k.db" "$B/reward" label --workspace $k.db --labeler x \
        --judge cat
    cell "$row" "reward train" error "$k.db" "$B/reward" train -c rm.yaml --set workspace=$k.db \
        --set out.dir=o-rdb-$k
    cell "$row" "reward score" error "$k.db" "$B/reward" score rm --workspace $k.db
    cell "$row" "reward inspect" error "$k.db" "$B/reward" inspect rm --workspace $k.db
    cell "$row" "ppo" error "$k.db" "$B/ppo" -c ppo.yaml --set workspace=$k.db \
        --set out.dir=o-pdb-$k
    mkdir -p wsdb-$k && cp $k.db wsdb-$k/workspace.db
    sed "s/workspace: wsp/workspace: wsdb-$k/" pipe.yaml > pipe-$k.yaml
    cell "$row" "rlhf run" error "wsdb-$k/workspace.db" "$B/rlhf" run pipe-$k.yaml
done
DB=""

# a read-only workspace (a read-only mount as root)
DB=rodir/ws.db
cell "read-only workspace" "sft" error "rodir" ro rodir "$B/sft" -c sft.yaml \
    --set workspace=rodir/ws.db --set out.dir=rodir/o
cell "read-only workspace" "reward import" error "rodir/ws.db" ro rodir "$B/reward" import \
    --workspace rodir/ws.db rank.jsonl
cell "read-only workspace" "reward label" error "rodir/ws.db" ro rodir "$B/reward" label \
    --workspace rodir/ws.db --labeler x --judge cat
cell "read-only workspace" "reward train" error "rodir" ro rodir "$B/reward" train -c rm.yaml \
    --set workspace=rodir/ws.db --set out.dir=rodir/o
cell "read-only workspace" "reward score" error "rodir/ws.db" ro rodir "$B/reward" score rm \
    --workspace rodir/ws.db
cell "read-only workspace" "reward inspect" error "rodir/ws.db" ro rodir "$B/reward" inspect rm \
    --workspace rodir/ws.db
cell "read-only workspace" "ppo" error "rodir" ro rodir "$B/ppo" -c ppo.yaml \
    --set workspace=rodir/ws.db --set out.dir=rodir/o
# the outputs writable, only the database read-only
cell "read-only workspace" "sft (database only)" error "rodir/ws.db" ro rodir "$B/sft" -c sft.yaml \
    --set workspace=rodir/ws.db --set out.dir=o-rodb
cell "read-only workspace" "reward train (database only)" error "rodir/ws.db" ro rodir "$B/reward" \
    train -c rm.yaml --set workspace=rodir/ws.db --set out.dir=o-rrodb
cell "read-only workspace" "ppo (database only)" error "rodir/ws.db" ro rodir "$B/ppo" -c ppo.yaml \
    --set workspace=rodir/ws.db --set out.dir=o-prodb
DB=""
cell "read-only workspace" "rlhf init" error "rodir/new" ro rodir "$B/rlhf" init --preset tiny \
    --tokenizer tok --out rodir/new
cell "read-only workspace" "rlhf tokenizer train" error "rodir/tok" ro rodir "$B/rlhf" tokenizer \
    train --vocab-size 280 --out rodir/tok corpus.txt
sed "s/workspace: wsp/workspace: rodir\/wsp/" pipe.yaml > pipe-ro.yaml
cell "read-only workspace" "rlhf run" error "rodir/wsp" ro rodir "$B/rlhf" run pipe-ro.yaml
# reading from a read-only place works
cell "read-only workspace" "rlhf info" works "" ro rodir "$B/rlhf" info rodir/lm
cell "read-only workspace" "rlhf eval" works "" ro rodir "$B/rlhf" eval rodir/lm --text corpus.txt
cell "read-only workspace" "rlhf generate" works "" ro rodir "$B/rlhf" generate rodir/lm \
    --prompt hi --max-new 2

# a full disk: a file-size limit (ulimit -f, 512-byte blocks; 340 lets the databases grow and stops
# the 180 KB trainer state) makes writes fail with EFBIG (the
# programs ignore SIGXFSZ); the database keeps what it held, the old checkpoint stays
python3 - <<'PY'
import json
with open("big.jsonl", "w") as f:
    for i in range(2000):
        f.write(json.dumps({"prompt": f"big prompt {i}", "completions": [f"a {i} " * 20, f"b {i} " * 20], "ranking": [1, 2]}) + "\n")
PY
fsize() { lim=$1; shift; sh -c 'ulimit -f "$0" && exec timeout 120 "$@"' "$lim" "$@"; }
cp ws.db fs.db; DB=fs.db
lim=$(( $(wc -c < fs.db) / 512 + 40 ))
cell "disk full (file-size limit)" "reward import" error "fs.db" fsize $lim "$B/reward" import \
    --workspace fs.db big.jsonl
DB=""
[ "$(sqlite3 fs.db "pragma integrity_check")" = ok ] &&
    ok "disk full: the database passes integrity_check" || bad "disk full: integrity"
cell "disk full (file-size limit)" "sft" error "o-fs" fsize 340 "$B/sft" -c sft.yaml \
    --set out.dir=o-fs
cp ws.db rfs.db
cell "disk full (file-size limit)" "reward train" error "o-rfs\|rfs.db" fsize 340 "$B/reward" \
    train -c rm.yaml --set out.dir=o-rfs --set workspace=rfs.db
cell "disk full (file-size limit)" "rlhf init" error "i-fs" fsize 60 "$B/rlhf" init --preset tiny \
    --tokenizer tok --out i-fs
"$B/sft" -c sft.yaml --set out.dir=o-prev > /dev/null 2>&1 &&
    cp o-prev/last/model.safetensors prev.safetensors
cell "disk full (file-size limit)" "sft (saving over a checkpoint)" error "o-prev" fsize 340 \
    "$B/sft" -c sft.yaml --set out.dir=o-prev --set train.steps=4 --set train.resume=false
"$B/rlhf" info o-prev/last > /dev/null 2> err &&
    cmp -s prev.safetensors o-prev/last/model.safetensors &&
    ok "disk full: the previous checkpoint is intact and loads" ||
        bad "disk full: the previous checkpoint"

# SQL metacharacters in prompts, completions and labeler names: stored verbatim, and they work
python3 - <<'PY'
import json
hostile = ["Robert'); DROP TABLE rankings;--", "a\" OR \"1\"=\"1", "50% _off_ \\ ; -- /* */", "' OR 1=1 --"]
with open("sql.jsonl", "w") as f:
    for i, h in enumerate(hostile):
        f.write(json.dumps({"prompt": f"{h} #{i}", "completions": [h + " yes", h + " no", "plain"], "ranking": [1, 2, 3], "labeler": h}) + "\n")
    f.write(json.dumps({"prompt": "What is 1 plus 1? '; DELETE FROM prompts; --"}) + "\n")
PY
cp ws.db sql.db; DB=sql.db
cell "SQL metacharacters" "reward import" works "" "$B/reward" import --workspace sql.db sql.jsonl
python3 - sql.db > out 2> err <<'PY' && ok "SQL metacharacters: stored verbatim" || bad "SQL metacharacters verbatim: $(cat out)"
import json, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
for line in open("sql.jsonl"):
    d = json.loads(line)
    assert db.execute("select count(*) from prompts where text = ?", (d["prompt"],)).fetchone()[0] == 1, d["prompt"]
    if "labeler" in d:
        assert db.execute("select count(*) from labelers where name = ?", (d["labeler"],)).fetchone()[0] == 1, d["labeler"]
        for c in d["completions"]:
            assert db.execute("select count(*) from completions where text = ?", (c,)).fetchone()[0] >= 1, c
assert db.execute("pragma integrity_check").fetchone()[0] == "ok"
PY
printf 'while read -r l; do echo "1>2>3"; done\n' > judge.sh
cell "SQL metacharacters" "reward label" works "" "$B/reward" label --workspace sql.db \
    --labeler "x'; DROP TABLE labelers;--" --limit 2 --judge "sh judge.sh"
cell "SQL metacharacters" "reward train" works "" "$B/reward" train -c rm.yaml \
    --set workspace=sql.db --set out.dir=o-sql
cell "SQL metacharacters" "reward score" works "" "$B/reward" score o-sql/final --workspace sql.db \
    --name "m'; --"
cell "SQL metacharacters" "reward inspect" works "" "$B/reward" inspect o-sql/final \
    --workspace sql.db
cell "SQL metacharacters" "ppo" works "" "$B/ppo" -c ppo.yaml --set workspace=sql.db \
    --set data.format=db --set out.dir=o-psql
cell "SQL metacharacters" "sft" works "" "$B/sft" -c sft.yaml --set workspace=sql.db \
    --set data.format=db --set out.dir=o-ssql
DB=""
[ "$(sqlite3 sql.db "select count(*) from labelers where name = 'x''; DROP TABLE labelers;--'")" = \
    1 ] &&
    ok "SQL metacharacters: a labeler named with them labels" || bad "hostile labeler name"

# endless and huge inputs, under a memory cap (ulimit -v, 2 GB): a clear error within seconds,
# exit 1, never an abort, a kill by the kernel or "fatal: out of memory" (exit 2)
# A sanitizer build cannot run under ulimit -v (its shadow memory is a huge reservation): there
# the input bound stands in for the cap.
if ldd "$B/sft" 2>/dev/null | grep -q libasan; then
    capped() { RLHF_MAX_FILE_BYTES=256M timeout 60 "$@"; }
else
    capped() { sh -c 'ulimit -v 2000000 && exec timeout 60 "$@"' sh "$@"; }
fi
cell "endless input (/dev/zero)" "sft (jsonl)" error "/dev/zero:1: a line longer" capped \
    "$B/sft" -c sft.yaml --set 'data.train=[/dev/zero]' --set out.dir=o-z1
cell "endless input (/dev/zero)" "sft (text)" error "/dev/zero: a NUL byte" capped \
    "$B/sft" -c sft.yaml --set data.format=text --set 'data.train=[/dev/zero]' --set out.dir=o-z2
cell "endless input (/dev/zero)" "rlhf generate --prompts" error "/dev/zero:1: a line longer" \
    capped "$B/rlhf" generate lm --prompts /dev/zero
cell "endless input (/dev/zero)" "rlhf tokenizer encode" error \
    "/dev/zero: out of memory\|/dev/zero: more than" capped "$B/rlhf" tokenizer encode tok \
    --text /dev/zero
cell "endless input (/dev/zero)" "rlhf eval" error \
    "/dev/zero: out of memory\|/dev/zero: more than" capped "$B/rlhf" eval lm --text /dev/zero
cp ws.db z.db; DB=z.db
cell "endless input (/dev/zero)" "reward import" error "/dev/zero: not a regular file" capped \
    "$B/reward" import --workspace z.db /dev/zero
DB=""
cell "endless input (/dev/zero)" "rlhf eval (RLHF_MAX_FILE_BYTES=1K)" error "RLHF_MAX_FILE_BYTES" \
    env RLHF_MAX_FILE_BYTES=1K "$B/rlhf" eval lm --text /dev/zero
head -c 3000 /dev/zero | tr '\0' 'x' > longline.txt
cell "endless input (/dev/zero)" "sft (RLHF_MAX_LINE_BYTES=1K)" error \
    "longline.txt:1: a line longer" env RLHF_MAX_LINE_BYTES=1K "$B/sft" -c sft.yaml \
    --set 'data.train=[longline.txt]' --set out.dir=o-ll
# batch shapes beyond memory: refused before allocating, naming the settings
cell "batch beyond memory" "sft" error "train.batch_size 65536 x train.grad_accum 65536" capped \
    "$B/sft" -c sft.yaml --set train.batch_size=65536 --set train.grad_accum=65536 \
    --set out.dir=o-huge

# AdamW settings that cannot train: named at setup, not blamed on the learning rate later
cell "AdamW eps 0, beta2 0" "sft" error "train.eps 0" "$B/sft" -c sft.yaml --set train.eps=0 \
    --set train.beta2=0 --set out.dir=o-eps
cell "AdamW beta1 1, beta2 1" "sft" error "train.beta1 1" "$B/sft" -c sft.yaml --set train.beta1=1 \
    --set train.beta2=1 --set out.dir=o-b1
cell "AdamW eps 0" "reward train" error "train.eps 0" "$B/reward" train -c rm.yaml \
    --set train.eps=0 --set out.dir=o-reps
cell "AdamW beta2 1" "ppo" error "train.beta2 1" "$B/ppo" -c ppo.yaml --set train.beta2=1 \
    --set out.dir=o-peps
# a tokenizer larger than the model's vocabulary: both named, and rlhf info refuses it too
cp -r lm lm-bigvocab
python3 -c "
import json; v = json.load(open('lm-bigvocab/vocab.json')); n = max(v.values())
v.update({'zz%d' % i: n + 1 + i for i in range(300)}); json.dump(v, open('lm-bigvocab/vocab.json', 'w'))"
cell "tokenizer larger than the model" "rlhf info" error \
    "the tokenizer in lm-bigvocab has 580 tokens, more than the 280 of the model in lm-bigvocab" \
    "$B/rlhf" info lm-bigvocab
cell "tokenizer larger than the model" "sft" error "the tokenizer in lm-bigvocab has 580 tokens" \
    "$B/sft" -c sft.yaml --set model.init=lm-bigvocab --set out.dir=o-bv
cell "tokenizer larger than the model" "rlhf generate" error "the tokenizer in tok has 280 tokens, more than the 100 of the model in lm-small" \
    sh -c '"$1" init --preset tiny --n-layer 1 --n-positions 32 --n-embd 32 --vocab-size 100 --out lm-small 2>/dev/null; exec "$1" generate lm-small --tokenizer tok --prompt hi' sh "$B/rlhf"

# judges that misbehave: each a one-line error naming the judge and the cause, within the
# --judge-timeout, and the claimed prompt given back (no claim left in the database)
"$B/reward" import --workspace jw.db prompts.jsonl 2> err
printf 'import sys\nsys.stdin.read()\nprint("1>2")\n' > judge_readall.py
head -c 200000000 /dev/zero > nul.bin
for j in "sleep 60|did not answer prompt" "python3 judge_readall.py|not read its input to the end" \
    "cat nul.bin|NUL bytes" "true|exited or closed its"; do
    cmd=${j%%|*}; pat=${j#*|}
    cell "judge: $cmd" "reward label" error "$pat" "$B/reward" label --workspace jw.db \
        --labeler "j-$cmd" --policy lm --k 2 --max-new 3 --judge-timeout 2 --judge "$cmd"
    [ "$(sqlite3 -batch jw.db "SELECT count(*) FROM claims WHERE skipped = 0")" = 0 ] &&
        ok "judge '$cmd': the claimed prompt was given back" || bad "judge '$cmd': a claim is left"
done
rm -f nul.bin
# the example judge in reward/README.md works as documented
cell "judge: reward/judge_example.py" "reward label" works "" "$B/reward" label --workspace jw.db \
    --labeler py --policy lm --k 2 --max-new 3 --limit 3 \
    --judge "python3 $TESTS/../reward/judge_example.py"
[ "$(sqlite3 -batch jw.db "SELECT count(*) FROM rankings r JOIN labelers l ON l.id = r.labeler_id \
    WHERE l.name = 'py'")" = 3 ] &&
    ok "the example judge ranked 3 prompts" || bad "the example judge did not rank 3 prompts"

# completions sampled by a model that cuts characters (byte-level tokens of a 3-byte character)
# are stored as valid UTF-8: Python's sqlite3 reads every text column of every table
cp ws.db u8.db
cell "completions that cut UTF-8 characters" "reward label --policy" works "" "$B/reward" label \
    --workspace u8.db --labeler u --policy lm --k 8 --max-new 20 --temperature 2 --limit 4 \
    --judge "python3 $TESTS/../reward/judge_example.py"
/usr/bin/python3 - u8.db > out 2>&1 <<'PY' && ok "UTF-8: Python's sqlite3 reads every stored text ($(cat out))" || bad "UTF-8: $(tail -1 out)"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
n = 0
for (t,) in db.execute("select name from sqlite_master where type = 'table'").fetchall():
    for row in db.execute(f"select * from {t}"):
        n += 1
bad = db.execute("select count(*) from completions where instr(text, char(65533)) > 0").fetchone()[0]
assert bad > 0, "no completion cut a character: the test proves nothing"
print(f"{n} rows, {bad} completions with U+FFFD")
PY

[ -n "$MATRIX_OUT" ] && cp matrix "$MATRIX_OUT"
lib_summary
