#!/bin/sh
# Makes sure the Debian packages rlhf.c needs are installed.
#   scripts/deps.sh build   -- compiler and libraries (make runs this)
#   scripts/deps.sh test    -- plus what the reference scripts need (python3-torch)
#   scripts/deps.sh bench   -- plus node/npm for the tokenizer reference
# As root it installs what is missing; otherwise it prints the exact apt-get line and fails.
set -e
want="gcc make pkg-config libopenblas-openmp-dev libsqlite3-dev libyaml-dev libpcre2-dev libcjson-dev"
if [ "$1" = "test" ] || [ "$1" = "bench" ]; then want="$want python3 python3-torch valgrind sqlite3 libopenmpi-dev openmpi-bin"; fi
if [ "$1" = "bench" ]; then want="$want nodejs npm"; fi
missing=""
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = "0" ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || true
    apt-get install -y -qq --no-install-recommends $missing >&2
else
    echo "deps: missing packages; run as root:" >&2
    echo "  apt-get install -y$missing" >&2
    exit 1
fi
