#!/bin/sh
# Makes sure what rlhf.c needs is on this machine (Debian 12 or Ubuntu), checking the commands,
# headers and libraries themselves rather than package names (a nodejs from another source that
# carries npm, a compiler built by hand: whatever works is fine).
#   scripts/deps.sh build   make, a C compiler, OpenBLAS (OpenMP build), SQLite, libyaml, PCRE2,
#                           cJSON, utf8proc, libmicrohttpd (every `make` runs this; quiet when all
#                           is there)
#   scripts/deps.sh demo    the same (the demo needs nothing more)
#   scripts/deps.sh test    plus Python 3 with PyTorch (reference checks), valgrind, the sqlite3
#                           shell, Open MPI (the MPI tests), Chromium, its driver and Selenium
#                           (rlhf serve's browser test)
#   scripts/deps.sh bench   plus Node.js and npm (the tokenizer benchmark's references)
#   scripts/deps.sh fuzz    plus clang with libFuzzer (make fuzz)
# As root it installs the Debian packages for what is missing (apt-get update, then apt-get
# install without questions); otherwise it prints the exact apt-get line to run as root and fails.
mode=${1:-build}
case "$mode" in
    build|demo|test|bench|fuzz) ;;
    *) echo "deps: unknown mode '$mode' (build, demo, test, bench, fuzz)" >&2; exit 2;;
esac
CC=${CC:-gcc}
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
missing=""
need() { case " $missing " in *" $1 "*) ;; *) missing="$missing $1";; esac; }
have() { command -v "$1" >/dev/null 2>&1; }

# C program $2 (a file's text) compiles and links with flags $3 and, when $4 is given, prints $4
c_works() {
    printf '%s\n' "$1" > "$tmp/t.c"
    "$CC" "$tmp/t.c" -o "$tmp/t" $2 >/dev/null 2>&1 || return 1
    [ -z "$3" ] || [ "$("$tmp/t" 2>/dev/null)" = "$3" ]
}

have make || need make
if ! have "$CC" || ! c_works 'int main(void) { return 0; }' ''; then
    need gcc; need libc6-dev                       # gcc recommends libc6-dev: not installed with it
fi
if have "$CC" && c_works 'int main(void) { return 0; }' ''; then
    c_works '#include <omp.h>
int main(void) { return omp_get_max_threads() < 1; }' '-fopenmp' || need gcc
    # the OpenMP build of OpenBLAS (openblas_get_parallel() = 2): its threads and ours are one pool
    c_works '#include <cblas.h>
#include <stdio.h>
int main(void) { printf("%d\n", openblas_get_parallel()); return 0; }' '-lopenblas' 2 || need libopenblas-openmp-dev
    c_works '#include <sqlite3.h>
int main(void) { return sqlite3_libversion_number() < 3000000; }' '-lsqlite3' || need libsqlite3-dev
    c_works '#include <yaml.h>
int main(void) { yaml_parser_t p; return !yaml_parser_initialize(&p); }' '-lyaml' || need libyaml-dev
    c_works '#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
int main(void) { return pcre2_compile((PCRE2_SPTR)"a", 1, 0, &(int){0}, &(PCRE2_SIZE){0}, NULL) == NULL; }' '-lpcre2-8' || need libpcre2-dev
    c_works '#include <cjson/cJSON.h>
int main(void) { cJSON *j = cJSON_Parse("1"); cJSON_Delete(j); return j == NULL; }' '-lcjson' || need libcjson-dev
    c_works '#include <utf8proc.h>
int main(void) { return utf8proc_version() == NULL; }' '-lutf8proc' || need libutf8proc-dev
    # rlhf serve's HTTP server
    c_works '#include <microhttpd.h>
int main(void) { return MHD_get_version() == NULL; }' '-lmicrohttpd' || need libmicrohttpd-dev
else
    for p in libopenblas-openmp-dev libsqlite3-dev libyaml-dev libpcre2-dev libcjson-dev libutf8proc-dev \
             libmicrohttpd-dev; do
        need $p
    done
fi

if [ "$mode" = test ] || [ "$mode" = bench ]; then
    # the reference scripts run as /usr/bin/python3 (Debian's torch, not a virtual environment's)
    /usr/bin/python3 -c 'import torch' >/dev/null 2>&1 || { need python3; need python3-torch; }
    have valgrind || need valgrind
    have sqlite3 || need sqlite3
    have mpicc || need libopenmpi-dev
    have mpirun || need openmpi-bin
    # rlhf serve's browser test: headless Chromium driven by Selenium
    have chromium || need chromium
    have chromedriver || need chromium-driver
    /usr/bin/python3 -c 'import selenium' >/dev/null 2>&1 || need python3-selenium
fi
if [ "$mode" = bench ]; then
    have node || need nodejs
    have npm || need npm
fi
if [ "$mode" = fuzz ]; then
    have clang || need clang
    if have clang; then
        printf 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }\n' > "$tmp/f.c"
        if ! clang -fsanitize=fuzzer,address "$tmp/f.c" -o "$tmp/f" >/dev/null 2>&1; then
            # libFuzzer: Debian 12 packs it in libclang-rt-N-dev, Ubuntu 22.04 in libclang-common-N-dev
            v=$(clang -dumpversion | cut -d. -f1)
            if apt-cache show "libclang-rt-$v-dev" >/dev/null 2>&1; then need "libclang-rt-$v-dev"
            else need "libclang-common-$v-dev"; fi
        fi
    fi
fi

[ -z "$missing" ] && exit 0
if [ -n "$DEPS_RECHECK" ]; then
    echo "deps: still missing after the install:$missing" >&2; exit 1
fi
if [ "$(id -u)" = 0 ]; then
    echo "deps: installing$missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 || echo "deps: apt-get update failed; trying the install anyway" >&2
    apt-get install -y -qq --no-install-recommends $missing < /dev/null >&2 || {
        echo "deps: apt-get install$missing failed (see above)" >&2; exit 1; }
    # check again: what was installed works, and what only shows once it is there (libFuzzer's
    # package is named after clang's version) is installed now
    rm -rf "$tmp"
    DEPS_RECHECK=1 exec sh "$0" "$mode"
else
    echo "deps: missing:$missing; run as root:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi
