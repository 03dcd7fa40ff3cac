#!/bin/sh
# Quick start on a fresh Debian 12 or Ubuntu machine, from nothing but this checkout:
#   sh quickstart.sh demo   installs what is missing, builds, and runs the main job (make demo)
#   sh quickstart.sh test   installs what is missing, builds, and runs every test twice: as built
#                           (make test), then under AddressSanitizer + UBSan (make DEBUG=1 test)
# As root it installs the missing Debian packages itself (apt-get, no questions asked); otherwise
# it prints the exact apt-get line to run as root and stops. Needs only a POSIX sh and apt.
set -e
cd "$(dirname "$0")"
case "${1:-}" in
    demo|test) ;;
    *) echo "usage: sh quickstart.sh demo|test" >&2; exit 2;;
esac
sh scripts/deps.sh "$1"
# Open MPI refuses to start as root unless told it may (the MPI tests, MPI pipeline stages)
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
jobs=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 1)
if [ "$1" = demo ]; then
    make -j"$jobs" all
    exec make demo
fi
# both halves run even when the first has failures; the exit status says whether either had any
make -j"$jobs" all
make -j"$jobs" DEBUG=1 all
t0=$(date +%s)
plain=0; make test || plain=$?
t1=$(date +%s)
sanitized=0; make DEBUG=1 test || sanitized=$?
t2=$(date +%s)
echo "quickstart: make test $([ $plain = 0 ] && echo passed || echo FAILED) ($((t1 - t0)) s)," \
    "make DEBUG=1 test $([ $sanitized = 0 ] && echo passed || echo FAILED) ($((t2 - t1)) s)"
[ $plain = 0 ] && [ $sanitized = 0 ]
